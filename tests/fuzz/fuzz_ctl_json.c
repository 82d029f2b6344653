/*
 * fuzz_ctl_json.c - libFuzzer harness for the control protocol: the input
 * is what a control client writes, cut into lines as control_read_cb()
 * does (LF, an optional CR before it, empty lines skipped), and each line
 * goes the way of control_dispatch(): ctl_req_parse(), the error reply
 * built around the recovered id, or the command table, ctl_args_check()
 * and the typed getters the command handlers use, then the reply.
 *
 * Every json-c object is released on every path: LeakSanitizer turns any
 * missed json_object_put() into a failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_json.h"
#include "proto.h"

struct fuzz_cmd {
	const char		*name;
	const char *const	*args;
};

static const char *const no_args[] = { NULL };
static const char *const incoming_args[] = { "id", "qemu", "peer-identity",
    NULL };
static const char *const outgoing_args[] = { "id", "peer", "listen",
    "channels", NULL };
static const char *const id_args[] = { "id", NULL };

/* The command table of daemon/control_cmd.c. */
static const struct fuzz_cmd fuzz_cmds[] = {
	{ "query-daemon", no_args },
	{ "query-sessions", id_args },
	{ "session-cancel", id_args },
	{ "session-incoming", incoming_args },
	{ "session-outgoing", outgoing_args },
	{ "reload", no_args },
	{ "session-remove", id_args },
};

/* String arguments and what the handlers check them with. */
static const char *const str_args[] = { "id", "qemu", "peer-identity",
    "peer", "listen", "execute", NULL };

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Serialise and release a reply, as control_reply() does. */
static void
reply(json_object *o)
{
	const char	*s;

	if (o == NULL)
		abort();
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (s == NULL || strchr(s, '\n') != NULL)
		abort();	/* one reply per line */
	json_object_put(o);
}

static void
check_string_arg(const char *name, const char *val)
{
	struct mig_uri	 u;
	char		 host[256], port[16], out[512];
	const char	*errstr = NULL;

	if (strcmp(name, "id") == 0)
		(void)session_id_is_valid(val);
	else if (strcmp(name, "qemu") == 0 || strcmp(name, "listen") == 0) {
		if (uri_parse(val, &u, &errstr) == 0)
			(void)uri_format(&u, out, sizeof(out));
		else if (errstr == NULL)
			abort();
	} else if (strcmp(name, "peer") == 0) {
		if (hostport_parse(val, host, sizeof(host), port, sizeof(port),
		    &errstr) != 0 && errstr == NULL)
			abort();
	}
}

static void
dispatch(const char *line, size_t len)
{
	struct ctl_req		 req;
	const char		*class = NULL, *unknown = NULL, *s;
	char			 err[256];
	json_object		*value;
	int64_t			 n;
	size_t			 i;
	int			 r;

	memset(err, 0x55, sizeof(err));
	if (ctl_req_parse(line, len, &req, &class, err, sizeof(err)) != 0) {
		if (class == NULL || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		reply(ctl_error_new(class, err, req.id));
		ctl_req_clear(&req);
		return;
	}
	if (req.root == NULL || req.execute == NULL ||
	    !json_object_is_type(req.root, json_type_object) ||
	    (req.arguments != NULL &&
	    !json_object_is_type(req.arguments, json_type_object)))
		abort();

	for (i = 0; i < sizeof(fuzz_cmds) / sizeof(fuzz_cmds[0]); i++)
		if (strcmp(fuzz_cmds[i].name, req.execute) == 0)
			break;
	/* Unknown commands get the full argument treatment too. */
	r = ctl_args_check(req.arguments, i < sizeof(fuzz_cmds) /
	    sizeof(fuzz_cmds[0]) ? fuzz_cmds[i].args : outgoing_args,
	    &unknown);
	if (r != 0 && (r != -EINVAL || unknown == NULL))
		abort();
	if (r != 0) {
		reply(ctl_error_new("InvalidArgument", unknown, req.id));
		ctl_req_clear(&req);
		return;
	}

	value = json_object_new_object();
	for (i = 0; str_args[i] != NULL; i++) {
		s = NULL;
		r = ctl_arg_string(req.arguments, str_args[i], &s);
		if (r == 0) {
			if (s == NULL)
				abort();
			check_string_arg(str_args[i], s);
			json_object_object_add(value, str_args[i],
			    json_object_new_string(s));
		} else if (r != -ENOENT && r != -EINVAL)
			abort();
	}
	r = ctl_arg_int(req.arguments, "channels", &n);
	if (r == 0)
		json_object_object_add(value, "channels",
		    json_object_new_int64(n));
	else if (r != -ENOENT && r != -EINVAL)
		abort();
	/* Getters on a missing object. */
	if (ctl_arg_string(NULL, "id", &s) != -ENOENT ||
	    ctl_arg_int(NULL, "channels", &n) != -ENOENT ||
	    ctl_args_check(NULL, no_args, &unknown) != 0)
		abort();

	reply(ctl_reply_new(value, req.id));
	if (req.arguments != NULL)
		reply(ctl_event_new(req.execute,
		    json_object_get(req.arguments)));
	ctl_req_clear(&req);
	if (req.root != NULL || req.execute != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*p, *nl;
	char		*line;
	size_t		 len;

	/* One greeting per connection. */
	reply(ctl_greeting_new(0, 1, 0));

	for (p = data; p < data + size; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(data + size - p));
		if (nl == NULL)
			break;	/* no LF: evbuffer_readln() keeps waiting */
		len = (size_t)(nl - p);
		if (len > CTL_MAX_LINE)
			break;	/* the daemon closes the client */
		/* NUL-terminated exact copy, as evbuffer_readln() returns. */
		if ((line = malloc(len + 1)) == NULL)
			abort();
		memcpy(line, p, len);
		line[len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (len > 0)
			dispatch(line, len);
		free(line);
	}
	/* Also the unterminated tail, as if the line ended at EOF. */
	if (p < data + size) {
		len = (size_t)(data + size - p);
		if ((line = malloc(len)) == NULL)
			abort();
		memcpy(line, p, len);	/* no NUL: the length must rule */
		dispatch(line, len);
		free(line);
	}
	return 0;
}
