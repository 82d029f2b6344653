/*
 * control_cmd.c - the command table of the control socket and its handlers.
 *
 * Each handler validates its arguments (types are checked explicitly,
 * unknown members refused) and answers exactly once, either at once or,
 * for session-outgoing, when the link is up or has failed
 * (control_session_answer()).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl_json.h"
#include "migrelayd.h"
#include "xport.h"

struct ctl_cmd {
	const char		*name;
	const char *const	*args;
	void			(*fn)(struct ctl_client *, json_object *,
				    json_object *);
};

static void	 ctl_cmd_query_daemon(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_session_incoming(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_session_outgoing(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_query_sessions(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_session_cancel(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_session_remove(struct ctl_client *, json_object *,
		    json_object *);
static void	 ctl_cmd_reload(struct ctl_client *, json_object *,
		    json_object *);

static const char *const no_args[] = { NULL };
static const char *const incoming_args[] = { "id", "qemu", "peer-identity",
    NULL };
static const char *const outgoing_args[] = { "id", "peer", "listen",
    "channels", NULL };
static const char *const id_args[] = { "id", NULL };

static const struct ctl_cmd ctl_cmds[] = {
	{ .name = "query-daemon", .args = no_args,
	  .fn = ctl_cmd_query_daemon },
	{ .name = "query-sessions", .args = id_args,
	  .fn = ctl_cmd_query_sessions },
	{ .name = "session-cancel", .args = id_args,
	  .fn = ctl_cmd_session_cancel },
	{ .name = "session-incoming", .args = incoming_args,
	  .fn = ctl_cmd_session_incoming },
	{ .name = "session-outgoing", .args = outgoing_args,
	  .fn = ctl_cmd_session_outgoing },
	{ .name = "reload", .args = no_args,
	  .fn = ctl_cmd_reload },
	{ .name = "session-remove", .args = id_args,
	  .fn = ctl_cmd_session_remove },
};

static void
ctl_error(struct ctl_client *c, json_object *id, const char *class,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
ctl_error(struct ctl_client *c, json_object *id, const char *class,
    const char *fmt, ...)
{
	char	 desc[600];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	control_reply(c, ctl_error_new(class, desc, id));
}

/* One request line from client c. */
void
control_dispatch(struct ctl_client *c, const char *line, size_t len)
{
	struct ctl_req	 req;
	const char	*class, *unknown;
	char		 err[256], esc[128];
	size_t		 i;

	if (ctl_req_parse(line, len, &req, &class, err, sizeof(err)) != 0) {
		control_reply(c, ctl_error_new(class, err, req.id));
		ctl_req_clear(&req);
		return;
	}
	for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (strcmp(ctl_cmds[i].name, req.execute) == 0)
			break;
	if (i == sizeof(ctl_cmds) / sizeof(ctl_cmds[0])) {
		str_escape(esc, sizeof(esc), req.execute);
		ctl_error(c, req.id, EC_GENERIC, "the command %s has not been "
		    "found", esc);
		ctl_req_clear(&req);
		return;
	}
	if (ctl_args_check(req.arguments, ctl_cmds[i].args, &unknown) != 0) {
		str_escape(esc, sizeof(esc), unknown);
		ctl_error(c, req.id, EC_INVALID, "%s: unexpected argument '%s'",
		    ctl_cmds[i].name, esc);
		ctl_req_clear(&req);
		return;
	}
	log_debug("control: %s", ctl_cmds[i].name);
	ctl_cmds[i].fn(c, req.arguments, req.id);
	ctl_req_clear(&req);
}

/* Required string argument; replies with an error and returns -1 if bad. */
static int
ctl_need_string(struct ctl_client *c, json_object *id, json_object *args,
    const char *cmd, const char *name, const char **ret)
{
	int	 r = ctl_arg_string(args, name, ret);

	if (r == -ENOENT) {
		ctl_error(c, id, EC_INVALID, "%s: missing argument '%s'", cmd,
		    name);
		return -1;
	}
	if (r != 0) {
		ctl_error(c, id, EC_INVALID, "%s: argument '%s' must be a "
		    "string", cmd, name);
		return -1;
	}
	return 0;
}

static int
ctl_need_id(struct ctl_client *c, json_object *id, json_object *args,
    const char *cmd, const char **ret)
{
	char	 esc[300];

	if (ctl_need_string(c, id, args, cmd, "id", ret) != 0)
		return -1;
	if (!session_id_is_valid(*ret)) {
		str_escape(esc, sizeof(esc), *ret);
		ctl_error(c, id, EC_INVALID, "%s: invalid session id '%s' (1-64 "
		    "characters of A-Z a-z 0-9 _ . -)", cmd, esc);
		return -1;
	}
	return 0;
}

static void
ctl_cmd_query_daemon(struct ctl_client *c, json_object *args, json_object *id)
{
	json_object	*o = json_object_new_object();
	json_object	*f = json_object_new_array();
	char		 v[32];

	snprintf(v, sizeof(v), "%d.%d.%d", MIGRELAY_VERSION_MAJOR,
	    MIGRELAY_VERSION_MINOR, MIGRELAY_VERSION_MICRO);
	json_object_object_add(o, "version", json_object_new_string(v));
	json_object_object_add(o, "listen", listener_addresses());
	json_object_array_add(f, json_object_new_string(FEAT_MULTICHANNEL));
	if (g_conf.insecure_plaintext)
		json_object_array_add(f, json_object_new_string(FEAT_PLAINTEXT));
	if (g_tls != NULL)
		json_object_array_add(f, json_object_new_string(FEAT_TLS));
	json_object_object_add(o, "features", f);
	json_object_object_add(o, "sessions",
	    json_object_new_int((int)session_count()));
	json_object_object_add(o, "stats", metrics_json());
	control_reply(c, ctl_reply_new(o, id));
}

static int
ctl_check_new(struct ctl_client *c, json_object *id, const char *sid)
{
	if (g_draining) {
		ctl_error(c, id, EC_GENERIC, "the relay is shutting down: no new "
		    "sessions");
		return -1;
	}
	if (session_find(sid) != NULL) {
		ctl_error(c, id, EC_EXISTS, "session '%s' already exists", sid);
		return -1;
	}
	if (session_count() >= MAX_SESSIONS) {
		ctl_error(c, id, EC_GENERIC, "too many sessions (limit %d); "
		    "remove finished ones", MAX_SESSIONS);
		return -1;
	}
	return 0;
}

static void
ctl_cmd_session_incoming(struct ctl_client *c, json_object *args,
    json_object *id)
{
	const char	*sid, *qemu, *ident = NULL, *errstr;
	struct mig_uri	 u;
	struct session	*se;
	int		 r;

	if (ctl_need_id(c, id, args, "session-incoming", &sid) != 0 ||
	    ctl_need_string(c, id, args, "session-incoming", "qemu",
	    &qemu) != 0)
		return;
	r = ctl_arg_string(args, "peer-identity", &ident);
	if (r == -EINVAL || (r == 0 && (strlen(ident) == 0 ||
	    strlen(ident) >= sizeof(se->se_peer_identity)))) {
		ctl_error(c, id, EC_INVALID, "session-incoming: 'peer-identity' "
		    "must be a non-empty string of at most 127 bytes");
		return;
	}
	if (uri_parse(qemu, &u, &errstr) != 0) {
		ctl_error(c, id, EC_INVALID, "session-incoming: invalid 'qemu' "
		    "URI: %s", errstr);
		return;
	}
	if (ctl_check_new(c, id, sid) != 0)
		return;
	if ((se = session_new(sid, ROLE_DESTINATION)) == NULL) {
		ctl_error(c, id, EC_INTERNAL, "out of memory");
		return;
	}
	se->se_uri = u;
	if (uri_format(&u, se->se_endpoint, sizeof(se->se_endpoint)) != 0)
		snprintf(se->se_endpoint, sizeof(se->se_endpoint), "%s", "?");
	if (r == 0)
		snprintf(se->se_peer_identity, sizeof(se->se_peer_identity),
		    "%s", ident);
	if ((r = stream_qemu_lookup(se)) != 0) {
		session_fail(se, SE_FAILED, EC_INTERNAL, "cannot look up %s: "
		    "%s", se->se_endpoint, strerror(-r));
		ctl_error(c, id, EC_INTERNAL, "session-incoming: cannot look "
		    "up %s: %s", se->se_endpoint, strerror(-r));
		return;
	}
	log_info("session %s: waiting for the source relay (destination QEMU "
	    "at %s)", sid, se->se_endpoint);
	control_reply(c, ctl_reply_new(session_to_json(se), id));
}

static void
ctl_cmd_session_outgoing(struct ctl_client *c, json_object *args,
    json_object *id)
{
	const char	*sid, *peer, *listen, *errstr;
	char		 host[256], port[16];
	struct mig_uri	 u;
	struct session	*se;
	int64_t		 nch = 1;
	int		 r;

	if (ctl_need_id(c, id, args, "session-outgoing", &sid) != 0 ||
	    ctl_need_string(c, id, args, "session-outgoing", "peer",
	    &peer) != 0 ||
	    ctl_need_string(c, id, args, "session-outgoing", "listen",
	    &listen) != 0)
		return;
	r = ctl_arg_int(args, "channels", &nch);
	if (r == -EINVAL || nch < 1 || nch > PROTO_MAX_CHANNELS) {
		ctl_error(c, id, EC_INVALID, "session-outgoing: 'channels' must "
		    "be an integer from 1 to %d", PROTO_MAX_CHANNELS);
		return;
	}
	if (hostport_parse(peer, host, sizeof(host), port, sizeof(port),
	    &errstr) != 0 || strlen(peer) >= 300) {
		ctl_error(c, id, EC_INVALID, "session-outgoing: invalid 'peer': "
		    "%s", strlen(peer) >= 300 ? "too long" : errstr);
		return;
	}
	if (strcmp(port, "0") == 0) {
		ctl_error(c, id, EC_INVALID, "session-outgoing: invalid 'peer': "
		    "port 0");
		return;
	}
	if (uri_parse(listen, &u, &errstr) != 0) {
		ctl_error(c, id, EC_INVALID, "session-outgoing: invalid "
		    "'listen' URI: %s", errstr);
		return;
	}
	if (ctl_check_new(c, id, sid) != 0)
		return;
	if ((se = session_new(sid, ROLE_SOURCE)) == NULL) {
		ctl_error(c, id, EC_INTERNAL, "out of memory");
		return;
	}
	se->se_uri = u;
	if (uri_format(&u, se->se_endpoint, sizeof(se->se_endpoint)) != 0)
		snprintf(se->se_endpoint, sizeof(se->se_endpoint), "%s", "?");
	snprintf(se->se_peer, sizeof(se->se_peer), "%s", peer);
	se->se_nchannels = (unsigned int)nch;
	se->se_waiter = c;
	se->se_waiter_id = id != NULL ? json_object_get(id) : NULL;
	log_info("session %s: connecting to peer relay %s (%u channel%s)",
	    sid, peer, se->se_nchannels, se->se_nchannels == 1 ? "" : "s");
	r = channel_connect_first(se);
	if (r != 0)
		session_fail(se, SE_FAILED, EC_UNREACHABLE, "cannot connect to "
		    "peer relay %s: %s", peer, sock_strerror(-r));
}

/*
 * Answer the client waiting on session-outgoing, if any: the session
 * object once ready, an error once final.  A failed session stays in the
 * table (state failed, with its error) until session-remove.
 */
void
control_session_answer(struct session *se)
{
	struct ctl_client	*c = se->se_waiter;
	json_object		*id = se->se_waiter_id;

	if (c == NULL)
		return;
	se->se_waiter = NULL;
	se->se_waiter_id = NULL;
	if (se->se_state == SE_FAILED)
		control_reply(c, ctl_error_new(se->se_errclass, se->se_errdesc,
		    id));
	else if (se->se_state == SE_CANCELLED)
		control_reply(c, ctl_error_new(EC_GENERIC, "session cancelled "
		    "before the link was up", id));
	else
		control_reply(c, ctl_reply_new(session_to_json(se), id));
	if (id != NULL)
		json_object_put(id);
}

void
control_client_forget(struct ctl_client *c)
{
	struct session	*se;

	TAILQ_FOREACH(se, &g_sessions, se_entry) {
		if (se->se_waiter == c) {
			se->se_waiter = NULL;
			if (se->se_waiter_id != NULL)
				json_object_put(se->se_waiter_id);
			se->se_waiter_id = NULL;
		}
	}
}

static void
ctl_cmd_query_sessions(struct ctl_client *c, json_object *args,
    json_object *id)
{
	json_object	*a;
	struct session	*se;
	const char	*sid = NULL;
	int		 r;

	r = ctl_arg_string(args, "id", &sid);
	if (r == -EINVAL) {
		ctl_error(c, id, EC_INVALID, "query-sessions: argument 'id' "
		    "must be a string");
		return;
	}
	if (sid != NULL && session_find(sid) == NULL) {
		char esc[300];

		str_escape(esc, sizeof(esc), sid);
		ctl_error(c, id, EC_NOTFOUND, "no session '%s'", esc);
		return;
	}
	a = json_object_new_array();
	TAILQ_FOREACH(se, &g_sessions, se_entry)
		if (sid == NULL || strcmp(sid, se->se_id) == 0)
			json_object_array_add(a, session_to_json(se));
	control_reply(c, ctl_reply_new(a, id));
}

static struct session *
ctl_find(struct ctl_client *c, json_object *id, json_object *args,
    const char *cmd)
{
	const char	*sid;
	struct session	*se;

	if (ctl_need_id(c, id, args, cmd, &sid) != 0)
		return NULL;
	if ((se = session_find(sid)) == NULL)
		ctl_error(c, id, EC_NOTFOUND, "no session '%s'", sid);
	return se;
}

static void
ctl_cmd_session_cancel(struct ctl_client *c, json_object *args,
    json_object *id)
{
	struct session	*se;

	if ((se = ctl_find(c, id, args, "session-cancel")) == NULL)
		return;
	if (session_is_final(se)) {
		ctl_error(c, id, EC_GENERIC, "session '%s' already ended (%s)",
		    se->se_id, session_state_name(se->se_state));
		return;
	}
	session_fail(se, SE_CANCELLED, EC_GENERIC, "cancelled by request");
	control_reply(c, ctl_reply_new(NULL, id));
}

static void
ctl_cmd_session_remove(struct ctl_client *c, json_object *args,
    json_object *id)
{
	struct session	*se;

	if ((se = ctl_find(c, id, args, "session-remove")) == NULL)
		return;
	if (!session_is_final(se)) {
		ctl_error(c, id, EC_GENERIC, "session '%s' is %s; only finished "
		    "sessions can be removed (cancel it first)", se->se_id,
		    session_state_name(se->se_state));
		return;
	}
	log_debug("session %s: removed", se->se_id);
	session_free(se);
	control_reply(c, ctl_reply_new(NULL, id));
}

static void
ctl_cmd_reload(struct ctl_client *c, json_object *args, json_object *id)
{
	char	 err[1024];

	if (daemon_reload(err, sizeof(err)) != 0) {
		log_warnx("reload failed, keeping the old credentials: %s", err);
		ctl_error(c, id, EC_GENERIC, "reload failed, old settings "
		    "and credentials kept: %s", err);
		return;
	}
	control_reply(c, ctl_reply_new(NULL, id));
}
