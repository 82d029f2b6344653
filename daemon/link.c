/*
 * link.c - the set of channels of one session seen as one pipe of frames.
 *
 * Scheduling: control frames (OPEN, FIN, ACK, ABORT, CLOSE) always travel
 * on channel 0, so they stay in order with each other: an ACK carrying a
 * FIN acknowledgement is always seen before the CLOSE that follows it.
 * DATA frames are striped: each goes to the channel with the fewest queued
 * bytes (round robin among equals); small ones go to the urgent queue so
 * the return path and postcopy page traffic never wait behind bulk data.
 * Order inside a stream is restored by the receiver from the sequence
 * numbers.
 *
 * Resume (feature "resume"): a channel that breaks (reset, timeout, TLS
 * error) no longer fails the session.  The source relay dials it again
 * (JOIN with the link token, proven over the new TLS channel), both sides
 * send again every DATA frame the peer has not acknowledged and that was
 * on a lost channel, and when channel 0 comes back the control state
 * (OPEN, FIN, ACK, CLOSE) is sent again; receivers drop what they already
 * have.  Memory: a DATA frame is kept until the peer's ACK covers it, so
 * the replay buffers are bounded by the flow-control windows that already
 * bound the bytes in flight.  The session fails only when the channels
 * are not all back within reconnect-timeout, or when the peer relay
 * refuses (it no longer has the session).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrelayd.h"
#include "xport.h"

static void	 link_resume_cb(evutil_socket_t, short, void *);
static void	 link_replay_cb(evutil_socket_t, short, void *);

int
link_init_session(struct session *se)
{
	se->se_resumeev = evtimer_new(g_base, link_resume_cb, se);
	se->se_replayev = event_new(g_base, -1, 0, link_replay_cb, se);
	return se->se_resumeev != NULL && se->se_replayev != NULL ? 0 : -1;
}

void
link_fini_session(struct session *se)
{
	if (se->se_resumeev != NULL)
		event_free(se->se_resumeev);
	if (se->se_replayev != NULL)
		event_free(se->se_replayev);
	se->se_resumeev = se->se_replayev = NULL;
}

/* Queue a control frame (stolen) on channel 0; dropped while it is down. */
void
link_send_ctrl(struct session *se, struct frame *f)
{
	struct channel	*ch = se->se_ch[0];

	if (ch == NULL || ch->ch_state != CH_UP) {
		frame_free(f);
		return;
	}
	channel_send(ch, f, 1);
}

/* Sender: keep a DATA frame until the peer acknowledges it. */
void
link_retain(struct stream *st, struct frame *f)
{
	f->f_end = st->st_out_bytes;
	f->f_refs++;
	TAILQ_INSERT_TAIL(&st->st_replay, f, f_rentry);
}

/* Sender: drop kept frames the peer's ACK now covers. */
void
link_release_acked(struct stream *st)
{
	struct frame	*f;

	while ((f = TAILQ_FIRST(&st->st_replay)) != NULL &&
	    f->f_end <= st->st_out_acked) {
		TAILQ_REMOVE(&st->st_replay, f, f_rentry);
		frame_free(f);
	}
}

static int
link_channel_is_up(const struct session *se, uint64_t id)
{
	unsigned int	 i;

	for (i = 0; i < se->se_nchannels; i++)
		if (se->se_ch[i] != NULL && se->se_ch[i]->ch_id == id &&
		    se->se_ch[i]->ch_state == CH_UP)
			return 1;
	return 0;
}

static int
link_any_up(const struct session *se)
{
	unsigned int	 i;

	for (i = 0; i < se->se_nchannels; i++)
		if (se->se_ch[i] != NULL && se->se_ch[i]->ch_state == CH_UP)
			return 1;
	return 0;
}

/*
 * Send again every kept frame that is in no channel queue and whose last
 * channel is gone.  Deferred to its own callback: a send can fail another
 * channel, and that must not happen while we walk the queues.
 */
static void
link_replay_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session	*se = arg;
	struct stream	*st;
	struct frame	*f;
	uint64_t	 n = 0, bytes = 0;

	if (session_is_final(se) || !link_any_up(se))
		return;
	TAILQ_FOREACH(st, &se->se_streams, st_entry) {
		TAILQ_FOREACH(f, &st->st_replay, f_rentry) {
			if (f->f_queued || link_channel_is_up(se, f->f_chan))
				continue;
			f->f_refs++;
			n++;
			bytes += f->f_len;
			link_send_data(se, f);
			if (session_is_final(se))
				return;
		}
	}
	if (n > 0)
		log_info("session %s: %llu frame%s (%llu bytes) sent again "
		    "after a lost channel", se->se_id, (unsigned long long)n,
		    n == 1 ? "" : "s", (unsigned long long)bytes);
}

/*
 * Channel 0 is back: send the control state again.  Every control frame
 * is idempotent for a resuming receiver (OPEN and FIN once, ACK and CLOSE
 * by value), so what the lost channel did deliver does no harm.
 */
static void
link_resync_ctrl(struct session *se)
{
	struct stream	*st;
	struct frame	*f;

	TAILQ_FOREACH(st, &se->se_streams, st_entry) {
		if (se->se_role == ROLE_SOURCE && st->st_opened &&
		    (f = frame_new(FRAME_OPEN, st->st_open_flags, st->st_id, 0,
		    0)) != NULL)
			link_send_ctrl(se, f);
		if (st->st_out_eof && (f = frame_new(FRAME_FIN, 0, st->st_id,
		    st->st_out_seq, 0)) != NULL)
			link_send_ctrl(se, f);
		if ((st->st_in_acked > 0 || st->st_in_fin_acked) &&
		    (f = frame_new(FRAME_ACK, st->st_in_fin_acked ?
		    FRAME_F_ACK_FIN : 0, st->st_id, st->st_in_acked,
		    0)) != NULL)
			link_send_ctrl(se, f);
	}
	if (se->se_close_sent && (f = frame_new(FRAME_CLOSE, 0, 0, 0, 0)) !=
	    NULL)
		link_send_ctrl(se, f);
}

static void
link_resume_arm(struct session *se, unsigned int ms)
{
	struct timeval	 tv;
	uint64_t	 spent = mono_ms_since(&se->se_lost_since);
	uint64_t	 left = spent < g_conf.reconnect_timeout_ms ?
	    g_conf.reconnect_timeout_ms - spent : 0;

	if (ms > left)
		ms = (unsigned int)left;
	ms_to_tv(ms, &tv);
	evtimer_add(se->se_resumeev, &tv);
}

/*
 * A channel of an established link broke.  With resume negotiated, close
 * it, start (or continue) the outage, and return 1; otherwise return 0 and
 * let the caller fail the session.
 */
int
link_channel_lost(struct channel *ch, const char *class, const char *msg)
{
	struct session	*se = ch->ch_se;
	unsigned int	 index = ch->ch_index;

	if (se == NULL || !se->se_resume || !se->se_link_was_up ||
	    session_is_final(se) || se->se_closing ||
	    g_conf.reconnect_timeout_ms == 0 ||
	    (strcmp(class, EC_UNREACHABLE) != 0 &&
	    strcmp(class, EC_TLS) != 0 && strcmp(class, EC_TIMEOUT) != 0))
		return 0;
	if (ch->ch_state == CH_UP && se->se_channels_up > 0)
		se->se_channels_up--;
	log_ctx(LOG_LVL_WARN, se->se_id, se->se_peer, (int)index, class,
	    "session %s: channel #%u lost: %s; %s", se->se_id, index, msg,
	    se->se_role == ROLE_SOURCE ? "re-establishing it" :
	    "waiting for the source relay to re-establish it");
	channel_close(ch, msg);
	if (!se->se_resuming) {
		se->se_resuming = 1;
		mono_now(&se->se_lost_since);
		se->se_redial_ms = RECONNECT_MIN_MS;
		snprintf(se->se_lost_reason, sizeof(se->se_lost_reason), "%s",
		    msg);
		/* The source dials at once; both check the grace period. */
		link_resume_arm(se, se->se_role == ROLE_SOURCE ? 0 :
		    g_conf.reconnect_timeout_ms);
	}
	event_active(se->se_replayev, 0, 0);
	return 1;
}

/* The peer relay refused a re-dial: it no longer has the session. */
static void
link_give_up(struct session *se, const char *class, unsigned int index,
    const char *why)
{
	session_fail(se, SE_FAILED, class, "link to peer relay %s lost (%s) "
	    "and channel %u cannot be re-established: %s", se->se_peer,
	    se->se_lost_reason, index, why);
}

/* A re-dial failed: retry later, or fail the session when fatal. */
void
link_rejoin_failed(struct channel *ch, const char *class, const char *msg,
    int fatal)
{
	struct session	*se = ch->ch_se;
	unsigned int	 index = ch->ch_index;

	channel_close(ch, msg);
	if (se == NULL || session_is_final(se))
		return;
	/*
	 * The destination completed (it had our CLOSE and answered it) and
	 * only its CLOSE was lost with the channel: we are complete too.
	 */
	if (fatal && se->se_role == ROLE_SOURCE && se->se_close_sent &&
	    strcmp(class, EC_REJECTED) == 0 && strstr(msg, "(completed)")) {
		log_info("session %s: the peer relay completed the session "
		    "while channel %u was lost", se->se_id, index);
		se->se_close_rcvd = 1;
		session_check_complete(se);
		return;
	}
	if (fatal) {
		link_give_up(se, class, index, msg);
		return;
	}
	log_debug("session %s: re-dial of channel #%u failed: %s", se->se_id,
	    index, msg);
	snprintf(se->se_lost_reason, sizeof(se->se_lost_reason), "%s", msg);
}

/* Re-dial timer (source) and grace period (both sides). */
static void
link_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session	*se = arg;
	unsigned int	 i;
	uint64_t	 spent;
	int		 r;

	if (!se->se_resuming || session_is_final(se))
		return;
	spent = mono_ms_since(&se->se_lost_since);
	if (spent >= g_conf.reconnect_timeout_ms) {
		session_fail(se, SE_FAILED, EC_UNREACHABLE, "link to peer relay "
		    "%s lost and not re-established within %u ms "
		    "(reconnect-timeout): %s", se->se_peer,
		    g_conf.reconnect_timeout_ms, se->se_lost_reason);
		return;
	}
	if (se->se_role == ROLE_SOURCE) {
		for (i = 0; i < se->se_nchannels; i++) {
			if (se->se_ch[i] != NULL)
				continue;
			r = channel_connect(se, i);
			if (r == -ECONNREFUSED) {
				link_give_up(se, EC_UNREACHABLE, i,
				    "connection refused");
				return;
			}
			if (r != 0)
				snprintf(se->se_lost_reason,
				    sizeof(se->se_lost_reason), "cannot "
				    "connect to peer relay %s: %s",
				    se->se_peer, sock_strerror(-r));
			if (session_is_final(se))
				return;
		}
		link_resume_arm(se, se->se_redial_ms);
		if (se->se_redial_ms < RECONNECT_MAX_MS)
			se->se_redial_ms *= 2;
	} else {
		link_resume_arm(se, g_conf.reconnect_timeout_ms);
	}
}

/* A lost channel is back (source: WELCOME; destination: JOIN accepted). */
void
link_channel_restored(struct session *se, struct channel *ch)
{
	se->se_reconnects++;
	if (ch->ch_index < PROTO_MAX_CHANNELS)
		se->se_ch_reconnects[ch->ch_index]++;
	if (ch->ch_index == 0)
		link_resync_ctrl(se);
	event_active(se->se_replayev, 0, 0);
	if (se->se_channels_up < se->se_nchannels)
		return;
	log_ctx(LOG_LVL_INFO, se->se_id, se->se_peer, -1, "resumed",
	    "session %s: link to %s re-established after %llu ms (%llu "
	    "channel reconnect%s so far)", se->se_id, se->se_peer,
	    (unsigned long long)mono_ms_since(&se->se_lost_since),
	    (unsigned long long)se->se_reconnects,
	    se->se_reconnects == 1 ? "" : "s");
	se->se_resuming = 0;
	evtimer_del(se->se_resumeev);
	mono_now(&se->se_last_progress);
	session_kick_reads(se);
}

/* Queue a DATA frame (stolen) on the least loaded channel. */
void
link_send_data(struct session *se, struct frame *f)
{
	struct channel	*ch, *best = NULL;
	unsigned int	 i, k, n = se->se_nchannels;

	for (k = 0; k < n; k++) {
		i = (se->se_rr + k) % n;
		ch = se->se_ch[i];
		if (ch == NULL || ch->ch_state != CH_UP)
			continue;
		if (best == NULL || ch->ch_outq_bytes < best->ch_outq_bytes)
			best = ch;
	}
	se->se_rr++;
	if (best == NULL) {
		frame_free(f);
		return;
	}
	channel_send(best, f, f->f_len < SMALL_FRAME);
}

/* Tell the peer the session ended badly (TLV class + text). */
void
link_send_abort(struct session *se, const char *class, const char *desc)
{
	struct hs_msg	 m;
	uint8_t		 buf[HS_MAX_PAYLOAD];
	ssize_t		 n;
	struct frame	*f;
	unsigned int	 i;

	memset(&m, 0, sizeof(m));
	snprintf(m.errclass, sizeof(m.errclass), "%s", class);
	snprintf(m.errdesc, sizeof(m.errdesc), "%s", desc);
	m.present = 1u << HS_T_ERRCLASS | 1u << HS_T_ERRDESC;
	if ((n = hs_encode(buf, sizeof(buf), &m)) < 0)
		return;
	if ((f = frame_new(FRAME_ABORT, 0, 0, 0, (size_t)n)) == NULL)
		return;
	memcpy(f->f_data, buf, (size_t)n);
	/* Terminal, so any live channel will do (channel 0 may be lost). */
	for (i = 0; i < se->se_nchannels; i++) {
		if (se->se_ch[i] != NULL && se->se_ch[i]->ch_state == CH_UP) {
			channel_send(se->se_ch[i], f, 1);
			return;
		}
	}
	frame_free(f);
}

static struct stream *
link_stream_for(struct session *se, uint32_t id, const char **why)
{
	struct stream	*st = stream_find(se, id);

	if (st != NULL)
		return st;
	if (se->se_role == ROLE_SOURCE) {
		*why = "frame for a stream this relay never opened";
		return NULL;
	}
	if (id == 0 || id > MAX_STREAMS) {
		*why = "stream id out of range";
		return NULL;
	}
	if (id < se->se_next_stream) {
		*why = "frame for a finished stream";
		return NULL;
	}
	st = stream_new(se, id, -1);
	if (st == NULL)
		*why = "out of memory";
	return st;
}

/*
 * A frame (stolen) arrived on an established channel of se.  Protocol
 * violations fail the session.  Returns 0 or -1 (session failed).
 */
int
link_frame_recv(struct session *se, struct channel *ch,
    const struct frame_hdr *h, struct frame *f)
{
	struct stream	*st;
	struct hs_msg	 m;
	const char	*why = NULL;
	char		 desc[PROTO_ERRDESC_MAX * 4 + 1];
	int		 r = 0;

	switch (h->type) {
	case FRAME_OPEN:
		if (se->se_role != ROLE_DESTINATION) {
			why = "OPEN sent to the source relay";
			break;
		}
		if ((st = link_stream_for(se, h->stream, &why)) == NULL)
			break;
		if (st->st_announced) {
			if (se->se_resume)	/* sent again after a loss */
				break;
			why = "OPEN for an open stream";
			break;
		}
		st->st_announced = 1;
		st->st_open_now = (h->flags & FRAME_F_OPEN_NOW) != 0;
		frame_free(f);
		f = NULL;
		stream_connect_next(se);
		break;
	case FRAME_DATA:
		if ((st = link_stream_for(se, h->stream, &why)) == NULL)
			break;
		r = stream_on_data(st, f);
		f = NULL;
		if (r != 0)
			return -1;
		break;
	case FRAME_FIN:
		if ((st = link_stream_for(se, h->stream, &why)) == NULL)
			break;
		r = stream_on_fin(st, h->seq);
		if (r != 0) {
			frame_free(f);
			return -1;
		}
		break;
	case FRAME_ACK:
		if ((st = stream_find(se, h->stream)) == NULL) {
			why = "ACK for an unknown stream";
			break;
		}
		r = stream_on_ack(st, h->seq, h->flags & FRAME_F_ACK_FIN);
		if (r != 0) {
			frame_free(f);
			return -1;
		}
		break;
	case FRAME_ABORT:
		if (hs_decode(f->f_data, f->f_len, &m) != 0) {
			m.errdesc[0] = '\0';
		}
		str_escape(desc, sizeof(desc), m.errdesc);
		frame_free(f);
		session_fail(se, SE_FAILED, EC_GENERIC, "peer relay ended the "
		    "session: %s", desc[0] ? desc : "no reason given");
		return -1;
	case FRAME_CLOSE:
		if (se->se_close_rcvd) {
			if (!se->se_resume)
				why = "duplicate CLOSE";
			break;
		}
		se->se_close_rcvd = 1;
		frame_free(f);
		f = NULL;
		session_check_complete(se);
		break;
	default:
		if (h->type & FRAME_T_IGNORABLE)
			break;
		why = "unexpected frame type";
		break;
	}
	if (f != NULL)
		frame_free(f);
	if (why != NULL) {
		session_fail(se, SE_FAILED, EC_GENERIC, "protocol error from "
		    "peer relay %s on channel %u: %s (%s, stream %u)",
		    se->se_peer, ch->ch_index, why, frame_type_name(h->type),
		    h->stream);
		return -1;
	}
	return 0;
}
