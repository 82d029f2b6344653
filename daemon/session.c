/*
 * session.c - one migration: its state machine, its table, its one close
 * path and its JSON view.
 *
 * A session ends in exactly one final state.  session_fail() is the close
 * path for failed and cancelled sessions: it tells the peer relay (ABORT),
 * closes every QEMU-facing socket at once so that the source QEMU sees the
 * failure and keeps running its guest, drains and closes the channels and
 * answers a waiting control client.  session_check_complete() is the only
 * way to `completed`: every stream finished in both directions with every
 * byte acknowledged by the far relay, and both relays agreed (CLOSE).
 * Sessions stay in the table, in their final state, until session-remove.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_json.h"
#include "migrelayd.h"

struct sessionq	 g_sessions = TAILQ_HEAD_INITIALIZER(g_sessions);

static const char *const se_state_names[_SE_STATE_MAX] = {
	[SE_CONNECTING] = "connecting",
	[SE_WAITING] = "waiting",
	[SE_READY] = "ready",
	[SE_ACTIVE] = "active",
	[SE_COMPLETED] = "completed",
	[SE_FAILED] = "failed",
	[SE_CANCELLED] = "cancelled",
};

#define FINAL	(1u << SE_FAILED | 1u << SE_CANCELLED)
static const uint32_t se_allowed[_SE_STATE_MAX] = {
	[SE_CONNECTING] = 1u << SE_READY | FINAL,
	[SE_WAITING] = 1u << SE_READY | FINAL,
	[SE_READY] = 1u << SE_ACTIVE | 1u << SE_COMPLETED | FINAL,
	[SE_ACTIVE] = 1u << SE_COMPLETED | FINAL,
	[SE_COMPLETED] = 0,
	[SE_FAILED] = 0,
	[SE_CANCELLED] = 0,
};
#undef FINAL

static void	 session_ack_cb(evutil_socket_t, short, void *);
static void	 session_timer_cb(evutil_socket_t, short, void *);
static void	 session_progress_cb(evutil_socket_t, short, void *);
static void	 session_close_link(struct session *, int);

const char *
session_state_name(enum se_state s)
{
	return s < _SE_STATE_MAX ? se_state_names[s] : "?";
}

int
session_is_final(const struct session *se)
{
	return se->se_state == SE_COMPLETED || se->se_state == SE_FAILED ||
	    se->se_state == SE_CANCELLED;
}

struct session *
session_find(const char *id)
{
	struct session	*se;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		if (strcmp(se->se_id, id) == 0)
			return se;
	return NULL;
}

/* Constant time per candidate: tokens are secrets. */
struct session *
session_find_token(const uint8_t *token)
{
	struct session	*se, *found = NULL;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		if (se->se_has_token && se->se_role == ROLE_DESTINATION &&
		    ct_memeq(se->se_token, token, LINK_TOKEN_LEN))
			found = se;
	return found;
}

unsigned int
session_count(void)
{
	struct session	*se;
	unsigned int	 n = 0;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		n++;
	return n;
}

/* A new session in the table; the caller sets role-specific fields. */
struct session *
session_new(const char *id, enum se_role role)
{
	struct session	*se;
	struct timeval	 tv;
	json_object	*d;

	if ((se = calloc(1, sizeof(*se))) == NULL)
		return NULL;
	snprintf(se->se_id, sizeof(se->se_id), "%s", id);
	se->se_role = role;
	se->se_state = role == ROLE_SOURCE ? SE_CONNECTING : SE_WAITING;
	se->se_lfd = -1;
	se->se_next_stream = 1;
	TAILQ_INIT(&se->se_streams);
	mono_now(&se->se_start);
	se->se_ackev = evtimer_new(g_base, session_ack_cb, se);
	se->se_timer = evtimer_new(g_base, session_timer_cb, se);
	se->se_progev = event_new(g_base, -1, EV_PERSIST, session_progress_cb,
	    se);
	if (se->se_ackev == NULL || se->se_timer == NULL ||
	    se->se_progev == NULL || link_init_session(se) != 0) {
		link_fini_session(se);
		if (se->se_progev)
			event_free(se->se_progev);
		if (se->se_ackev)
			event_free(se->se_ackev);
		if (se->se_timer)
			event_free(se->se_timer);
		free(se);
		return NULL;
	}
	if (role == ROLE_SOURCE) {
		ms_to_tv(CONNECT_TIMEOUT_MS + HANDSHAKE_TIMEOUT_MS, &tv);
		evtimer_add(se->se_timer, &tv);
	}
	TAILQ_INSERT_TAIL(&g_sessions, se, se_entry);
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(se->se_id));
	json_object_object_add(d, "state",
	    json_object_new_string(se_state_names[se->se_state]));
	control_broadcast(ctl_event_new("SESSION_STATE", d));
	return se;
}

/* Only for sessions in a final state (or never started). */
void
session_free(struct session *se)
{
	struct stream	*st;
	unsigned int	 i;

	if (se == NULL)
		return;
	TAILQ_REMOVE(&g_sessions, se, se_entry);
	for (i = 0; i < PROTO_MAX_CHANNELS; i++)
		if (se->se_ch[i] != NULL)
			channel_close(se->se_ch[i], "session removed");
	while ((st = TAILQ_FIRST(&se->se_streams)) != NULL) {
		TAILQ_REMOVE(&se->se_streams, st, st_entry);
		stream_free(st);
	}
	if (se->se_lev != NULL)
		event_free(se->se_lev);
	if (se->se_lfd >= 0)
		close(se->se_lfd);
	if (se->se_waiter_id != NULL)
		json_object_put(se->se_waiter_id);
	resolve_cancel(se->se_lookup);
	if (se->se_addrs != NULL)
		freeaddrinfo(se->se_addrs);
	if (se->se_listen_addrs != NULL)
		freeaddrinfo(se->se_listen_addrs);
	event_free(se->se_ackev);
	event_free(se->se_timer);
	event_free(se->se_progev);
	link_fini_session(se);
	free(se);
	mem_trim_soon();
}

static void
session_ack_cb(evutil_socket_t fd, short ev, void *arg)
{
	stream_flush_acks(arg);
}

/*
 * Bytes this relay has moved for the session, in both directions, plus
 * acknowledgements received: anything that changes when the migration
 * makes progress.
 */
static uint64_t
session_moved(const struct session *se)
{
	const struct stream	*st;
	uint64_t		 n = se->se_bytes_s2d + se->se_bytes_d2s;

	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		n += st->st_out_acked;
	return n;
}

/* Is something waiting to move (so that standing still is a stall)? */
static int
session_has_pending(const struct session *se)
{
	const struct stream	*st;

	if (se->se_inflight > 0)
		return 1;
	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		if (!TAILQ_EMPTY(&st->st_inq) || !TAILQ_EMPTY(&st->st_reorder))
			return 1;
	return 0;
}

/*
 * Once a second: a session with data waiting that has not moved a byte for
 * progress_timeout_ms has a live-but-hung peer (relay or QEMU).  QEMU
 * itself would wait forever, so the relay fails the session.
 */
static void
session_progress_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session	*se = arg;
	uint64_t	 moved, idle;

	if (session_is_final(se)) {
		event_del(se->se_progev);
		return;
	}
	if (se->se_resuming) {
		/* The grace period of the lost channels rules meanwhile. */
		mono_now(&se->se_last_progress);
		return;
	}
	moved = session_moved(se);
	if (moved != se->se_progress || !session_has_pending(se)) {
		se->se_progress = moved;
		mono_now(&se->se_last_progress);
		return;
	}
	idle = mono_ms_since(&se->se_last_progress);
	if (idle >= g_conf.progress_timeout_ms)
		session_fail(se, SE_FAILED, EC_TIMEOUT, "no progress for %llu "
		    "ms with %llu bytes in flight: the peer relay or a QEMU "
		    "stopped moving data", (unsigned long long)idle,
		    (unsigned long long)se->se_inflight);
}

static void
session_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session	*se = arg;

	if (se->se_state == SE_CONNECTING)
		session_fail(se, SE_FAILED, EC_TIMEOUT, "link to peer relay %s "
		    "not established within %d ms", se->se_peer,
		    CONNECT_TIMEOUT_MS + HANDSHAKE_TIMEOUT_MS);
}

void
session_set_state(struct session *se, enum se_state st)
{
	json_object	*d;

	if (!(se_allowed[se->se_state] & (1u << st))) {
		log_warnx("BUG: session %s: transition %s -> %s refused",
		    se->se_id, se_state_names[se->se_state],
		    se_state_names[st]);
		return;
	}
	log_debug("session %s: %s -> %s", se->se_id,
	    se_state_names[se->se_state], se_state_names[st]);
	se->se_state = st;
	if (session_is_final(se)) {
		mono_now(&se->se_end);
		if (st == SE_COMPLETED)
			g_stats.st_completed++;
		else if (st == SE_CANCELLED)
			g_stats.st_cancelled++;
		else {
			g_stats.st_failed++;
			metrics_count_error(se->se_errclass);
		}
	}
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(se->se_id));
	json_object_object_add(d, "state",
	    json_object_new_string(se_state_names[st]));
	if (st == SE_FAILED) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "class",
		    json_object_new_string(se->se_errclass));
		json_object_object_add(e, "desc",
		    json_object_new_string(se->se_errdesc));
		json_object_object_add(d, "error", e);
	}
	control_broadcast(ctl_event_new("SESSION_STATE", d));
	systemd_status();
}

static void
session_close_qemu(struct session *se)
{
	struct stream	*st;

	if (se->se_lev != NULL) {
		event_free(se->se_lev);
		se->se_lev = NULL;
	}
	if (se->se_lfd >= 0) {
		close(se->se_lfd);
		se->se_lfd = -1;
		if (se->se_uri.kind == URI_UNIX)
			unlink(se->se_uri.path);
	}
	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		stream_close_fd(st);
}

static void
session_close_link(struct session *se, int linger)
{
	unsigned int	 i;

	for (i = 0; i < PROTO_MAX_CHANNELS; i++)
		if (se->se_ch[i] != NULL)
			channel_drain_close(se->se_ch[i], linger);
}

static void
session_summary(struct session *se)
{
	log_ctx(LOG_LVL_INFO, se->se_id, se->se_peer, -1,
	    session_state_name(se->se_state), "session %s (%s) %s after %llu "
	    "ms: %llu bytes to the "
	    "destination, %llu bytes back, %u stream%s, link %llu sent / %llu "
	    "received%s%s", se->se_id, se->se_role == ROLE_SOURCE ? "source" :
	    "destination", session_state_name(se->se_state),
	    (unsigned long long)mono_ms_since(&se->se_start),
	    (unsigned long long)se->se_bytes_s2d,
	    (unsigned long long)se->se_bytes_d2s, se->se_nstreams,
	    se->se_nstreams == 1 ? "" : "s",
	    (unsigned long long)se->se_link_sent,
	    (unsigned long long)se->se_link_recv,
	    se->se_errdesc[0] ? ": " : "", se->se_errdesc);
	/* Give buffer memory of the finished session back to the system. */
	mem_trim_soon();
}

/*
 * The close path of a session that did not complete: final is SE_FAILED or
 * SE_CANCELLED.  Idempotent: a session already final is left alone.
 */
void
session_fail(struct session *se, enum se_state final, const char *class,
    const char *fmt, ...)
{
	va_list	 ap;

	/*
	 * Re-entry: telling the peer (ABORT) can fail the write, and the
	 * write failure fails the session again.  The first call wins.
	 */
	if (session_is_final(se) || se->se_closing)
		return;
	se->se_closing = 1;
	va_start(ap, fmt);
	vsnprintf(se->se_errdesc, sizeof(se->se_errdesc), fmt, ap);
	va_end(ap);
	snprintf(se->se_errclass, sizeof(se->se_errclass), "%s", class);
	evtimer_del(se->se_timer);
	event_del(se->se_progev);
	evtimer_del(se->se_resumeev);
	resolve_cancel(se->se_lookup);
	se->se_lookup = NULL;
	link_send_abort(se, class, final == SE_CANCELLED ?
	    "session cancelled on the peer relay" : se->se_errdesc);
	session_close_qemu(se);
	session_close_link(se, 0);
	session_set_state(se, final);
	if (final == SE_CANCELLED)
		log_ctx(LOG_LVL_INFO, se->se_id, se->se_peer, -1, "cancelled",
		    "session %s: cancelled", se->se_id);
	else
		log_ctx(LOG_LVL_WARN, se->se_id, se->se_peer, -1, class,
		    "session %s failed: %s: %s", se->se_id, class,
		    se->se_errdesc);
	session_summary(se);
	control_session_answer(se);
}

/* All channels of the link are up. */
void
session_link_up(struct session *se)
{
	const char	*errstr;

	struct timeval	 tv;

	evtimer_del(se->se_timer);
	se->se_link_was_up = 1;
	ms_to_tv(1000, &tv);
	mono_now(&se->se_last_progress);
	event_add(se->se_progev, &tv);
	if (se->se_role == ROLE_SOURCE) {
		if (stream_qemu_listen(se, &errstr) != 0) {
			session_fail(se, SE_FAILED, EC_INVALID, "cannot listen "
			    "for the source QEMU on %s: %s", se->se_endpoint,
			    errstr);
			return;
		}
	}
	session_set_state(se, SE_READY);
	log_info("session %s: ready (%s %s, %u channel%s)", se->se_id,
	    se->se_role == ROLE_SOURCE ? "source QEMU connects to" :
	    "destination QEMU at", se->se_endpoint, se->se_nchannels,
	    se->se_nchannels == 1 ? "" : "s");
	control_session_answer(se);
}

/* Re-enable reading on streams that waited for link-wide credit. */
void
session_kick_reads(struct session *se)
{
	struct stream	*st;

	se->se_blocked = 0;
	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		stream_update_reading(st);
}

static int
session_all_done(struct session *se)
{
	struct stream	*st;

	if (se->se_nstreams == 0)
		return 0;
	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		if (st->st_state != ST_DONE)
			return 0;
	return 1;
}

/*
 * Completion handshake: the source sends CLOSE once all its streams are
 * done; the destination checks the same and answers CLOSE; each side is
 * completed once it has both sent and received CLOSE.
 */
void
session_check_complete(struct session *se)
{
	struct frame	*f;
	struct stream	*st;
	const char	*why;
	int		 done;

	if (session_is_final(se))
		return;
	done = session_all_done(se);
	if (se->se_close_rcvd && !done) {
		session_fail(se, SE_FAILED, EC_GENERIC, "protocol error from "
		    "peer relay: CLOSE while streams are still open");
		return;
	}
	if (!done)
		return;
	if (se->se_role == ROLE_DESTINATION && !se->se_close_rcvd)
		return;
	if ((st = stream_find(se, 1)) != NULL &&
	    (why = stream_qemu_verdict(st)) != NULL) {
		/* Every connection closed cleanly, but QEMU says it failed. */
		session_fail(se, SE_FAILED, EC_GENERIC, "migration failed: %s",
		    why);
		return;
	}
	if (!se->se_close_sent) {
		stream_flush_acks(se);
		if ((f = frame_new(FRAME_CLOSE, 0, 0, 0, 0)) != NULL)
			link_send_ctrl(se, f);
		se->se_close_sent = 1;
	}
	if (!se->se_close_rcvd)
		return;
	event_del(se->se_progev);
	session_close_qemu(se);
	/* The source closes the link; the destination waits for it. */
	session_close_link(se, se->se_role == ROLE_DESTINATION);
	session_set_state(se, SE_COMPLETED);
	session_summary(se);
}

/* Shutdown: fail every running session cleanly. */
void
session_fail_all(const char *why)
{
	struct session	*se;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		session_fail(se, SE_FAILED, EC_GENERIC, "%s", why);
}

/*
 * The common start of a callback for a lookup of se_endpoint's host
 * (resolve.c): the lookup is over; a failed one fails the session as
 * InvalidArgument, "cannot look up WHAT URI: reason".  Returns 0 when the
 * addresses may be used.
 */
int
session_lookup_done(struct session *se, int r, int gai, const char *what)
{
	se->se_lookup = NULL;
	if (r == 0)
		return 0;
	session_fail(se, SE_FAILED, EC_INVALID, "cannot look up %s %s: %s",
	    what, se->se_endpoint, resolve_strerror(r, gai));
	return -1;
}

/*
 * Bytes of channel index i of se's link over the session's life: its
 * closed channels (re-established ones, and all once the session ended)
 * plus the current one.  Returns 0 when the link never had that channel.
 */
int
session_channel_bytes(const struct session *se, unsigned int i,
    uint64_t *sent, uint64_t *recv)
{
	const struct channel	*ch;

	if (i >= PROTO_MAX_CHANNELS || !(se->se_ch_seen & UINT64_C(1) << i))
		return 0;
	ch = se->se_ch[i];
	*sent = se->se_ch_sent[i] + (ch != NULL ? ch->ch_bytes_sent : 0);
	*recv = se->se_ch_recv[i] + (ch != NULL ? ch->ch_bytes_recv : 0);
	return 1;
}

/* Milliseconds from creation to the final state (or to now). */
uint64_t
session_duration_ms(const struct session *se)
{
	int64_t	 d;

	if (!session_is_final(se))
		return mono_ms_since(&se->se_start);
	d = (int64_t)(se->se_end.tv_sec - se->se_start.tv_sec) * 1000 +
	    (se->se_end.tv_nsec - se->se_start.tv_nsec) / 1000000;
	return d < 0 ? 0 : (uint64_t)d;
}

/* New reference: the session object of interface.md. */
json_object *
session_to_json(const struct session *se)
{
	json_object	*o = json_object_new_object();
	json_object	*b, *l, *fe, *cs;
	unsigned int	 i, nch = 0;
	uint64_t	 ms;

	json_object_object_add(o, "id", json_object_new_string(se->se_id));
	json_object_object_add(o, "role", json_object_new_string(
	    se->se_role == ROLE_SOURCE ? "source" : "destination"));
	json_object_object_add(o, "state",
	    json_object_new_string(session_state_name(se->se_state)));
	json_object_object_add(o, "peer", json_object_new_string(se->se_peer));
	json_object_object_add(o, "endpoint",
	    json_object_new_string(se->se_endpoint));
	for (i = 0; i < PROTO_MAX_CHANNELS; i++)
		if (se->se_ch[i] != NULL && se->se_ch[i]->ch_state == CH_UP)
			nch++;
	json_object_object_add(o, "channels", json_object_new_int(
	    session_is_final(se) || se->se_state == SE_CONNECTING ||
	    se->se_state == SE_WAITING ? (int)se->se_nchannels : (int)nch));
	fe = json_object_new_array();
	for (i = 0; i < se->se_nfeatures; i++)
		json_object_array_add(fe,
		    json_object_new_string(se->se_features[i]));
	json_object_object_add(o, "features", fe);
	json_object_object_add(o, "streams",
	    json_object_new_int((int)se->se_nstreams));
	b = json_object_new_object();
	json_object_object_add(b, "source-to-destination",
	    json_object_new_int64((int64_t)se->se_bytes_s2d));
	json_object_object_add(b, "destination-to-source",
	    json_object_new_int64((int64_t)se->se_bytes_d2s));
	json_object_object_add(o, "bytes", b);
	l = json_object_new_object();
	json_object_object_add(l, "sent",
	    json_object_new_int64((int64_t)se->se_link_sent));
	json_object_object_add(l, "received",
	    json_object_new_int64((int64_t)se->se_link_recv));
	json_object_object_add(o, "link-bytes", l);
	ms = session_duration_ms(se);
	json_object_object_add(o, "duration-ms",
	    json_object_new_int64((int64_t)ms));
	json_object_object_add(o, "reconnects",
	    json_object_new_int64((int64_t)se->se_reconnects));
	json_object_object_add(o, "resuming",
	    json_object_new_boolean(se->se_resuming &&
	    !session_is_final(se)));
	cs = json_object_new_array();
	for (i = 0; i < PROTO_MAX_CHANNELS; i++) {
		const struct channel *ch = se->se_ch[i];
		json_object *c;
		uint64_t sent, recv;

		if (!session_channel_bytes(se, i, &sent, &recv))
			continue;
		c = json_object_new_object();
		json_object_object_add(c, "index", json_object_new_int((int)i));
		json_object_object_add(c, "up", json_object_new_boolean(
		    ch != NULL && ch->ch_state == CH_UP));
		json_object_object_add(c, "sent",
		    json_object_new_int64((int64_t)sent));
		json_object_object_add(c, "received",
		    json_object_new_int64((int64_t)recv));
		json_object_object_add(c, "reconnects",
		    json_object_new_int64((int64_t)se->se_ch_reconnects[i]));
		json_object_array_add(cs, c);
	}
	json_object_object_add(o, "channel-stats", cs);
	if (se->se_state == SE_FAILED) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "class",
		    json_object_new_string(se->se_errclass));
		json_object_object_add(e, "desc",
		    json_object_new_string(se->se_errdesc));
		json_object_object_add(o, "error", e);
	}
	return o;
}
