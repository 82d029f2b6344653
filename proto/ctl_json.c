/*
 * ctl_json.c - parse control requests and build replies, errors and events.
 *
 * json-c coerces types silently, so every getter checks the type first.
 * Nesting depth is limited in the tokenizer itself, before objects exist.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "ctl_json.h"

/*
 * Parse one request line (without its newline).  On success returns 0 and
 * fills *req (caller calls ctl_req_clear()).  On failure returns -EINVAL,
 * sets *ret_class to an error class and writes a description into errbuf;
 * req->id is set to a borrowed id when one could be recovered, so that the
 * error reply can carry it (req->root then owns it and must be cleared).
 */
int
ctl_req_parse(const char *line, size_t len, struct ctl_req *req,
    const char **ret_class, char *errbuf, size_t errlen)
{
	struct json_tokener	*tok;
	json_object		*root, *v;
	enum json_tokener_error	 jerr;

	memset(req, 0, sizeof(*req));
	*ret_class = "GenericError";
	if (len > CTL_MAX_LINE) {
		snprintf(errbuf, errlen, "request longer than %d bytes",
		    CTL_MAX_LINE);
		return -EINVAL;
	}
	tok = json_tokener_new_ex(CTL_MAX_DEPTH);
	if (tok == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return -EINVAL;
	}
	root = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	if (root != NULL && jerr == json_tokener_success &&
	    json_tokener_get_parse_end(tok) < len) {
		/* Trailing garbage after a complete value. */
		size_t	 i;

		for (i = json_tokener_get_parse_end(tok); i < len; i++)
			if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
				break;
		if (i < len) {
			json_object_put(root);
			json_tokener_free(tok);
			snprintf(errbuf, errlen,
			    "JSON parse error: trailing characters");
			return -EINVAL;
		}
	}
	if (root == NULL || jerr != json_tokener_success) {
		if (jerr == json_tokener_continue)
			snprintf(errbuf, errlen, "JSON parse error: incomplete "
			    "value");
		else
			snprintf(errbuf, errlen, "JSON parse error: %s",
			    json_tokener_error_desc(jerr));
		json_object_put(root);
		json_tokener_free(tok);
		return -EINVAL;
	}
	json_tokener_free(tok);
	req->root = root;
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(errbuf, errlen, "request must be a JSON object");
		return -EINVAL;
	}
	if (json_object_object_get_ex(root, "id", &v))
		req->id = v;
	json_object_object_foreach(root, key, val) {
		(void)val;
		if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 &&
		    strcmp(key, "id") != 0) {
			snprintf(errbuf, errlen, "unexpected member '%.32s' in "
			    "request", key);
			return -EINVAL;
		}
	}
	if (!json_object_object_get_ex(root, "execute", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		snprintf(errbuf, errlen, "request needs an 'execute' string");
		return -EINVAL;
	}
	req->execute = json_object_get_string(v);
	if (json_object_object_get_ex(root, "arguments", &v)) {
		if (!json_object_is_type(v, json_type_object)) {
			*ret_class = "InvalidArgument";
			snprintf(errbuf, errlen, "'arguments' must be an object");
			return -EINVAL;
		}
		req->arguments = v;
	}
	return 0;
}

void
ctl_req_clear(struct ctl_req *req)
{
	json_object_put(req->root);
	memset(req, 0, sizeof(*req));
}

int
ctl_arg_string(json_object *args, const char *name, const char **ret)
{
	json_object	*v;

	if (args == NULL || !json_object_object_get_ex(args, name, &v))
		return -ENOENT;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	*ret = json_object_get_string(v);
	return 0;
}

int
ctl_arg_int(json_object *args, const char *name, int64_t *ret)
{
	json_object	*v;

	if (args == NULL || !json_object_object_get_ex(args, name, &v))
		return -ENOENT;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	errno = 0;
	*ret = json_object_get_int64(v);
	if (errno != 0)
		return -EINVAL;
	return 0;
}

/* Every member of args must be in the NULL-terminated allowed list. */
int
ctl_args_check(json_object *args, const char *const *allowed,
    const char **ret_unknown)
{
	const char *const	*a;

	if (args == NULL)
		return 0;
	json_object_object_foreach(args, key, val) {
		(void)val;
		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (*a == NULL) {
			*ret_unknown = key;
			return -EINVAL;
		}
	}
	return 0;
}

json_object *
ctl_reply_new(json_object *value, json_object *id)
{
	json_object	*o = json_object_new_object();

	json_object_object_add(o, "return", value != NULL ? value :
	    json_object_new_object());
	if (id != NULL)
		json_object_object_add(o, "id", json_object_get(id));
	return o;
}

json_object *
ctl_error_new(const char *class, const char *desc, json_object *id)
{
	json_object	*o = json_object_new_object();
	json_object	*e = json_object_new_object();

	json_object_object_add(e, "class", json_object_new_string(class));
	json_object_object_add(e, "desc", json_object_new_string(desc));
	json_object_object_add(o, "error", e);
	if (id != NULL)
		json_object_object_add(o, "id", json_object_get(id));
	return o;
}

json_object *
ctl_event_new(const char *name, json_object *data)
{
	json_object	*o = json_object_new_object();
	json_object	*ts = json_object_new_object();
	struct timeval	 tv;

	gettimeofday(&tv, NULL);
	json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
	json_object_object_add(ts, "microseconds",
	    json_object_new_int64(tv.tv_usec));
	json_object_object_add(o, "event", json_object_new_string(name));
	json_object_object_add(o, "data", data != NULL ? data :
	    json_object_new_object());
	json_object_object_add(o, "timestamp", ts);
	return o;
}

json_object *
ctl_greeting_new(int major, int minor, int micro)
{
	json_object	*o = json_object_new_object();
	json_object	*m = json_object_new_object();
	json_object	*v = json_object_new_object();

	json_object_object_add(v, "major", json_object_new_int(major));
	json_object_object_add(v, "minor", json_object_new_int(minor));
	json_object_object_add(v, "micro", json_object_new_int(micro));
	json_object_object_add(m, "version", v);
	json_object_object_add(m, "capabilities", json_object_new_array());
	json_object_object_add(o, "migrelay", m);
	return o;
}
