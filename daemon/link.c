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
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrelayd.h"

/* Queue a control frame (stolen) on channel 0. */
void
link_send_ctrl(struct session *se, struct frame *f)
{
	struct channel	*ch = se->se_ch[0];

	if (ch == NULL) {
		frame_free(f);
		return;
	}
	channel_send(ch, f, 1);
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

	memset(&m, 0, sizeof(m));
	snprintf(m.errclass, sizeof(m.errclass), "%s", class);
	snprintf(m.errdesc, sizeof(m.errdesc), "%s", desc);
	m.present = 1u << HS_T_ERRCLASS | 1u << HS_T_ERRDESC;
	if ((n = hs_encode(buf, sizeof(buf), &m)) < 0)
		return;
	if ((f = frame_new(FRAME_ABORT, 0, 0, 0, (size_t)n)) == NULL)
		return;
	memcpy(f->f_data, buf, (size_t)n);
	link_send_ctrl(se, f);
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
