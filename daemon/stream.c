/*
 * stream.c - one QEMU connection carried by a session, both directions.
 *
 * Source relay: every connection QEMU makes to the session's listen URI is
 * a stream, numbered 1, 2, ... in accept order.  An OPEN frame announces it
 * when its first bytes (or EOF) arrive, or after OPEN_IDLE_MS of silence
 * with FRAME_F_OPEN_NOW (the postcopy preempt channel carries nothing
 * until a page is urgent, yet QEMU waits for it to be connected).
 *
 * Destination relay: streams are connected to QEMU strictly in id order,
 * each only once the previous connect() completed and once it has bytes to
 * write (or EOF, or OPEN_NOW), because QEMU's destination identifies
 * channels by accept order and blocks while peeking at first bytes.
 *
 * Flow control: a sender may have at most the peer's window (per stream)
 * of unacknowledged bytes; the receiver acknowledges bytes once written to
 * its QEMU.  A link-wide cap limits the sum, but every stream may always
 * have STREAM_MIN_WINDOW in flight, so one stream that QEMU stops reading
 * (multifd after a SYNC) can never starve the one QEMU waits for.
 * Acknowledgements are also the end-to-end proof of delivery that
 * completion relies on.
 *
 * Copies per payload byte, source QEMU to destination QEMU (the data
 * path starts in stream_read_cb):
 *   plaintext: read() from QEMU into the frame (1), writev() of header and
 *     payload to the channel (2); on the far side a frame's payload is
 *     read straight into its frame buffer when it does not fit the channel
 *     buffer (3; small frames take one more memcpy), writev() to QEMU (4).
 *     The CRC-32C of "crc32c" reads each byte once more on both sides.
 *   TLS: as plaintext, but OpenSSL encrypts each payload straight from
 *     the frame into its record buffer and the record is appended to the
 *     connection's output buffer (tls_buffer_output: so a 256 KiB batch
 *     leaves in one write()), and on the receiving side decrypts into our
 *     buffer: 6 (small pieces below CH_TLS_SMALL take one more memcpy,
 *     into a staging buffer, so that a small frame is one record).
 * With data threads (worker.c) frames change threads by pointer, no copy.
 * No copy is made to resend: a frame kept for replay is the same buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migrelayd.h"
#include "xport.h"

static void	 stream_read_cb(evutil_socket_t, short, void *);
static void	 stream_write_cb(evutil_socket_t, short, void *);
static void	 stream_open_timer_cb(evutil_socket_t, short, void *);
static void	 stream_accept_cb(evutil_socket_t, short, void *);
static int	 stream_attach(struct stream *, int fd);
static void	 stream_send_open(struct stream *, uint8_t flags);
static void	 stream_send_ack(struct stream *);
static int	 stream_can_read(struct stream *);
static const char *stream_qemu_side(const struct stream *);
static void	 stream_watch(struct stream *, int from_qemu,
		    const uint8_t *, size_t);

/*
 * A new stream with id in se, not yet connected when fd is -1.  Returns a
 * borrowed pointer (the session owns it) or NULL.
 */
struct stream *
stream_new(struct session *se, uint32_t id, int fd)
{
	struct stream	*st, *it;
	unsigned int	 n = 0;

	TAILQ_FOREACH(it, &se->se_streams, st_entry)
		n++;
	if (n >= MAX_STREAMS)
		return NULL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->st_se = se;
	st->st_id = id;
	st->st_fd = -1;
	st->st_state = ST_ANNOUNCED;
	TAILQ_INIT(&st->st_inq);
	TAILQ_INIT(&st->st_reorder);
	TAILQ_INIT(&st->st_replay);
	/* Keep the list sorted by id. */
	TAILQ_FOREACH_REVERSE(it, &se->se_streams, streamq, st_entry)
		if (it->st_id < id)
			break;
	if (it == NULL)
		TAILQ_INSERT_HEAD(&se->se_streams, st, st_entry);
	else
		TAILQ_INSERT_AFTER(&se->se_streams, it, st, st_entry);
	if (fd >= 0 && stream_attach(st, fd) != 0) {
		TAILQ_REMOVE(&se->se_streams, st, st_entry);
		free(st);
		return NULL;
	}
	return st;
}

static int
stream_attach(struct stream *st, int fd)
{
	st->st_fd = fd;
	st->st_rev = event_new(g_base, fd, EV_READ | EV_PERSIST,
	    stream_read_cb, st);
	st->st_wev = event_new(g_base, fd, EV_WRITE | EV_PERSIST,
	    stream_write_cb, st);
	if (st->st_rev == NULL || st->st_wev == NULL)
		return -ENOMEM;
	sock_tune_qemu(fd);
	return 0;
}

struct stream *
stream_find(struct session *se, uint32_t id)
{
	struct stream	*st;

	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		if (st->st_id == id)
			return st;
	return NULL;
}

static const char *
stream_qemu_side(const struct stream *st)
{
	return st->st_se->se_role == ROLE_SOURCE ? "source QEMU" :
	    "destination QEMU";
}

/* Close the QEMU-facing socket and drop queued data (failure or done). */
void
stream_close_fd(struct stream *st)
{
	struct frame	*f;

	if (st->st_rev != NULL) {
		event_free(st->st_rev);
		st->st_rev = NULL;
	}
	if (st->st_wev != NULL) {
		event_free(st->st_wev);
		st->st_wev = NULL;
	}
	if (st->st_timer != NULL) {
		event_free(st->st_timer);
		st->st_timer = NULL;
	}
	if (st->st_fd >= 0)
		close(st->st_fd);
	st->st_fd = -1;
	st->st_reading = 0;
	if (st->st_state == ST_OPEN || st->st_state == ST_CONNECTING)
		st->st_state = ST_DONE;
	frameq_free(&st->st_inq);
	frameq_free(&st->st_reorder);
	while ((f = TAILQ_FIRST(&st->st_replay)) != NULL) {
		TAILQ_REMOVE(&st->st_replay, f, f_rentry);
		frame_free(f);
	}
}

void
stream_free(struct stream *st)
{
	if (st == NULL)
		return;
	stream_close_fd(st);
	free(st);
}

static int
stream_can_read(struct stream *st)
{
	struct session	*se = st->st_se;
	uint64_t	 inflight = st->st_out_bytes - st->st_out_acked;

	if (st->st_state != ST_OPEN || st->st_out_eof ||
	    session_is_final(se) || se->se_state == SE_WAITING)
		return 0;
	if (inflight >= se->se_peer_window)
		return 0;
	if (inflight < STREAM_MIN_WINDOW)
		return 1;
	if (se->se_inflight >= LINK_INFLIGHT_CAP) {
		se->se_blocked = 1;
		return 0;
	}
	return 1;
}

/* Start or stop reading from QEMU according to the credit left. */
void
stream_update_reading(struct stream *st)
{
	int	 can = stream_can_read(st);

	if (can && !st->st_reading) {
		event_add(st->st_rev, NULL);
		st->st_reading = 1;
	} else if (!can && st->st_reading) {
		event_del(st->st_rev);
		st->st_reading = 0;
	}
}

static void
stream_send_open(struct stream *st, uint8_t flags)
{
	struct frame	*f;

	if (st->st_opened)
		return;
	st->st_opened = 1;
	st->st_open_flags = flags;
	if (st->st_timer != NULL)
		evtimer_del(st->st_timer);
	if ((f = frame_new(FRAME_OPEN, flags, st->st_id, 0, 0)) != NULL)
		link_send_ctrl(st->st_se, f);
}

static void
stream_open_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct stream	*st = arg;

	log_debug("session %s: stream %u silent for %d ms, opening it now",
	    st->st_se->se_id, st->st_id, OPEN_IDLE_MS);
	stream_send_open(st, FRAME_F_OPEN_NOW);
}

static void
stream_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct stream	*st = arg;
	struct session	*se = st->st_se;
	struct frame	*f, *g;
	size_t		 want, budget = 0;
	uint64_t	 inflight;
	ssize_t		 n;
	int		 drained = 0;

	/*
	 * A short read means the socket was empty just then: stop there
	 * rather than ask again only to hear EAGAIN (the level-triggered
	 * event comes back if more arrived).
	 */
	while (!drained && budget < CALLBACK_BUDGET && stream_can_read(st)) {
		inflight = st->st_out_bytes - st->st_out_acked;
		want = se->se_peer_window - inflight;
		if (want > READ_CHUNK)
			want = READ_CHUNK;
		f = frame_new(FRAME_DATA, 0, st->st_id, st->st_out_seq, want);
		if (f == NULL) {
			session_fail(se, SE_FAILED, EC_INTERNAL, "out of memory "
			    "reading from the %s", stream_qemu_side(st));
			return;
		}
		n = read(fd, f->f_data, want);
		if (n < 0) {
			frame_free(f);
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			session_fail(se, SE_FAILED, EC_GENERIC, "connection %u "
			    "of the %s failed: %s", st->st_id,
			    stream_qemu_side(st), strerror(errno));
			return;
		}
		if (n == 0) {
			frame_free(f);
			log_debug("session %s: stream %u: EOF from the %s after "
			    "%llu bytes", se->se_id, st->st_id,
			    stream_qemu_side(st),
			    (unsigned long long)st->st_out_bytes);
			st->st_out_eof = 1;
			if (se->se_role == ROLE_SOURCE)
				stream_send_open(st, 0);
			f = frame_new(FRAME_FIN, 0, st->st_id, st->st_out_seq, 0);
			if (f != NULL)
				link_send_ctrl(se, f);
			break;
		}
		budget += (size_t)n;
		drained = (size_t)n < want;
		stream_watch(st, 1, f->f_data, (size_t)n);
		if ((size_t)n < want && want - (size_t)n >= 64 * 1024) {
			g = realloc(f, sizeof(*f) + (size_t)n);
			if (g != NULL)
				f = g;
		}
		f->f_len = (uint32_t)n;
		frame_seal(f);
		if (se->se_role == ROLE_SOURCE) {
			stream_send_open(st, 0);
			se->se_bytes_s2d += (uint64_t)n;
		} else {
			se->se_bytes_d2s += (uint64_t)n;
		}
		st->st_out_seq++;
		st->st_out_bytes += (uint64_t)n;
		se->se_inflight += (uint64_t)n;
		if (se->se_resume)
			link_retain(st, f);
		link_send_data(se, f);
		if (session_is_final(se))
			return;
	}
	stream_update_reading(st);
}

/* Write queued in-order data to QEMU. */
void
stream_deliver(struct stream *st)
{
	struct session	*se = st->st_se;
	struct iovec	 iov[CH_IOV_MAX];
	struct frame	*f;
	unsigned int	 n;
	ssize_t		 w;
	size_t		 left;

	if (st->st_state != ST_OPEN)
		return;
	while (!TAILQ_EMPTY(&st->st_inq)) {
		n = 0;
		TAILQ_FOREACH(f, &st->st_inq, f_entry) {
			if (n == CH_IOV_MAX)
				break;
			iov[n].iov_base = f->f_data + f->f_off;
			iov[n++].iov_len = f->f_len - f->f_off;
		}
		w = writev(st->st_fd, iov, (int)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				event_add(st->st_wev, NULL);
				return;
			}
			session_fail(se, SE_FAILED, EC_GENERIC, "writing to "
			    "connection %u of the %s failed: %s", st->st_id,
			    stream_qemu_side(st), strerror(errno));
			return;
		}
		st->st_in_delivered += (uint64_t)w;
		if (se->se_role == ROLE_SOURCE)
			se->se_bytes_d2s += (uint64_t)w;
		else
			se->se_bytes_s2d += (uint64_t)w;
		while ((f = TAILQ_FIRST(&st->st_inq)) != NULL && w > 0) {
			left = f->f_len - f->f_off;
			if ((size_t)w < left) {
				f->f_off += (size_t)w;
				break;
			}
			w -= (ssize_t)left;
			TAILQ_REMOVE(&st->st_inq, f, f_entry);
			frame_free(f);
		}
	}
	event_del(st->st_wev);
	if (st->st_in_fin && st->st_in_seq == st->st_in_fin_seq &&
	    !st->st_in_fin_done) {
		shutdown(st->st_fd, SHUT_WR);
		st->st_in_fin_done = 1;
		log_debug("session %s: stream %u: EOF delivered to the %s after "
		    "%llu bytes", se->se_id, st->st_id, stream_qemu_side(st),
		    (unsigned long long)st->st_in_delivered);
		stream_send_ack(st);
		stream_check_done(st);
		return;
	}
	/*
	 * Bulk data is acknowledged every quarter window.  Below that the
	 * ACK waits up to ACK_DELAY_MS and covers whatever was delivered by
	 * then: small messages (the return path) do not each cost the peer
	 * relay a wake-up for an ACK frame.
	 */
	if (st->st_in_delivered - st->st_in_acked >= STREAM_WINDOW / 4) {
		stream_send_ack(st);
	} else if (st->st_in_delivered != st->st_in_acked) {
		st->st_ack_pending = 1;
		if (!evtimer_pending(se->se_ackev, NULL)) {
			struct timeval	tv;

			ms_to_tv(ACK_DELAY_MS, &tv);
			evtimer_add(se->se_ackev, &tv);
		}
	}
}

static void
stream_send_ack(struct stream *st)
{
	struct frame	*f;
	uint8_t		 flags = 0;

	if (st->st_in_fin_done) {
		if (st->st_in_fin_acked && st->st_in_acked ==
		    st->st_in_delivered)
			return;
		flags = FRAME_F_ACK_FIN;
		st->st_in_fin_acked = 1;
	}
	st->st_ack_pending = 0;
	st->st_in_acked = st->st_in_delivered;
	f = frame_new(FRAME_ACK, flags, st->st_id, st->st_in_delivered, 0);
	if (f != NULL)
		link_send_ctrl(st->st_se, f);
}

/* Delayed ACKs: the timer fired. */
void
stream_flush_acks(struct session *se)
{
	struct stream	*st;

	if (session_is_final(se))
		return;
	TAILQ_FOREACH(st, &se->se_streams, st_entry)
		if (st->st_ack_pending)
			stream_send_ack(st);
}

/*
 * Destination: the connection to st->st_ai was refused; go on with the
 * QEMU host's next address.  Returns 0 (connected), -EINPROGRESS, or -1
 * when there is none left.
 */
static int
stream_connect_again(struct stream *st, int err)
{
	const struct addrinfo	*ai = NULL;
	int			 fd = -1, r;

	if (st->st_ai == NULL || st->st_ai->ai_next == NULL)
		return -1;
	r = sock_connect_ai(st->st_ai->ai_next, &fd, &ai);
	if (r != 0 && r != -EINPROGRESS)
		return -1;
	log_debug("session %s: stream %u: %s, trying the next address of %s",
	    st->st_se->se_id, st->st_id, strerror(-err),
	    st->st_se->se_endpoint);
	close(st->st_fd);
	st->st_fd = fd;
	st->st_ai = ai;
	event_move_fd(st->st_rev, fd);
	event_move_fd(st->st_wev, fd);
	sock_tune_qemu(fd);
	if (r == -EINPROGRESS)
		event_add(st->st_wev, NULL);
	return r;
}

static void
stream_write_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct stream	*st = arg;
	struct session	*se = st->st_se;
	int		 r;

	if (st->st_state == ST_CONNECTING) {
		event_del(st->st_wev);
		if ((r = sock_connect_result(fd)) != 0) {
			switch (stream_connect_again(st, r)) {
			case 0:
				break;		/* connected at once */
			case -EINPROGRESS:
				return;
			default:
				session_fail(se, SE_FAILED, EC_GENERIC, "cannot "
				    "connect to the destination QEMU at %s: %s",
				    se->se_endpoint, sock_strerror(-r));
				return;
			}
		}
		if (st->st_ai != NULL)
			se->se_addr_ok = st->st_ai;
		st->st_state = ST_OPEN;
		se->se_nstreams++;
		log_debug("session %s: stream %u connected to %s", se->se_id,
		    st->st_id, se->se_endpoint);
		if (se->se_state == SE_READY)
			session_set_state(se, SE_ACTIVE);
		stream_update_reading(st);
		stream_deliver(st);
		if (!session_is_final(se))
			stream_connect_next(se);
		return;
	}
	stream_deliver(st);
}

static void
stream_qemu_found(int r, struct addrinfo *res, int gai, void *arg)
{
	struct session	*se = arg;

	if (session_lookup_done(se, r, gai, "the destination QEMU at") != 0)
		return;
	se->se_addrs = res;
	stream_connect_next(se);
}

/*
 * Destination: look up the host of a TCP QEMU URI once, off the event
 * loop (resolve.c); streams wait for the answer.  Returns 0 or -errno.
 */
int
stream_qemu_lookup(struct session *se)
{
	if (se->se_uri.kind != URI_TCP)
		return 0;
	se->se_lookup = resolve_start(se->se_uri.host, se->se_uri.port,
	    stream_qemu_found, se);
	return se->se_lookup != NULL ? 0 : -errno;
}

/* Destination: connect the next streams to QEMU, in order. */
void
stream_connect_next(struct session *se)
{
	struct stream		*st;
	const struct addrinfo	*ai;
	int			 fd = -1, r;

	if (se->se_uri.kind == URI_TCP && se->se_addrs == NULL)
		return;		/* the lookup is under way */
	while (!session_is_final(se)) {
		st = stream_find(se, se->se_next_stream);
		if (st == NULL || !st->st_announced)
			return;
		if (st->st_state == ST_CONNECTING)
			return;
		if (st->st_state != ST_ANNOUNCED) {
			se->se_next_stream++;
			continue;
		}
		if (!st->st_open_now && TAILQ_EMPTY(&st->st_inq) &&
		    !st->st_in_fin)
			return;
		ai = NULL;
		if (se->se_uri.kind == URI_TCP)
			r = sock_connect_ai(se->se_addr_ok != NULL ?
			    se->se_addr_ok : se->se_addrs, &fd, &ai);
		else
			r = sock_connect_uri(&se->se_uri, &fd);
		if (r != 0 && r != -EINPROGRESS) {
			session_fail(se, SE_FAILED, EC_GENERIC, "cannot connect "
			    "to the destination QEMU at %s: %s",
			    se->se_endpoint, sock_strerror(-r));
			return;
		}
		if (stream_attach(st, fd) != 0) {
			close(fd);
			st->st_fd = -1;
			session_fail(se, SE_FAILED, EC_INTERNAL, "out of memory");
			return;
		}
		st->st_ai = ai;
		if (r == -EINPROGRESS) {
			st->st_state = ST_CONNECTING;
			event_add(st->st_wev, NULL);
			return;
		}
		if (ai != NULL)
			se->se_addr_ok = ai;
		st->st_state = ST_OPEN;
		se->se_nstreams++;
		log_debug("session %s: stream %u connected to %s", se->se_id,
		    st->st_id, se->se_endpoint);
		if (se->se_state == SE_READY)
			session_set_state(se, SE_ACTIVE);
		stream_update_reading(st);
		stream_deliver(st);
		se->se_next_stream++;
	}
}

/*
 * Completion proof.  The relay is transparent and never parses QEMU's
 * stream, but it keeps two small facts about each connection: the first
 * bytes of the forward direction (source QEMU to destination QEMU) and the
 * last bytes of the reverse one.  On QEMU's main connection
 * (QEMU_VM_FILE_MAGIC "QEVM" first) with a return path, the destination's
 * last message is MIG_RP_MSG_SHUT with value 0 once it has loaded
 * everything; a destination that fails or dies closes without it.
 */
static void
stream_watch(struct stream *st, int from_qemu, const uint8_t *p, size_t n)
{
	int	 forward = (st->st_se->se_role == ROLE_SOURCE) == from_qemu;
	size_t	 k, keep;

	if (forward) {
		while (n > 0 && st->st_fwd_headlen < sizeof(st->st_fwd_head)) {
			st->st_fwd_head[st->st_fwd_headlen++] = *p++;
			n--;
		}
		return;
	}
	st->st_rev_bytes += n;
	if (n >= sizeof(st->st_rev_tail)) {
		memcpy(st->st_rev_tail, p + n - sizeof(st->st_rev_tail),
		    sizeof(st->st_rev_tail));
		return;
	}
	keep = sizeof(st->st_rev_tail) - n;
	for (k = 0; k < keep; k++)
		st->st_rev_tail[k] = st->st_rev_tail[k + n];
	memcpy(st->st_rev_tail + keep, p, n);
}

/*
 * NULL when the stream ended as QEMU ends a successful migration, or when
 * the relay cannot tell (not a QEMU main stream, QEMU's own TLS, no return
 * path); otherwise why the migration did not succeed.
 */
const char *
stream_qemu_verdict(const struct stream *st)
{
	static const uint8_t	 magic[4] = { 'Q', 'E', 'V', 'M' };
	static const uint8_t	 shut_ok[8] = { 0, 1, 0, 4, 0, 0, 0, 0 };

	if (st->st_fwd_headlen < sizeof(magic) ||
	    memcmp(st->st_fwd_head, magic, sizeof(magic)) != 0 ||
	    st->st_rev_bytes == 0)
		return NULL;
	if (st->st_rev_bytes >= sizeof(shut_ok) &&
	    memcmp(st->st_rev_tail, shut_ok, sizeof(shut_ok)) == 0)
		return NULL;
	if (st->st_rev_bytes >= sizeof(shut_ok) &&
	    memcmp(st->st_rev_tail, shut_ok, 4) == 0)
		return "the destination QEMU reported an error at the end "
		    "(return path SHUT with a non-zero value)";
	return "the destination QEMU closed its return path without "
	    "reporting success (no SHUT): it did not load the migration";
}

/* Has this stream received DATA frame seq already? */
static int
stream_have_seq(const struct stream *st, uint64_t seq)
{
	const struct frame	*it;

	if (seq < st->st_in_seq)
		return 1;
	TAILQ_FOREACH(it, &st->st_reorder, f_entry) {
		if (it->f_seq == seq)
			return 1;
		if (it->f_seq > seq)
			break;
	}
	return 0;
}

/* A DATA frame (stolen) for this stream.  Returns 0 or -1 (failed). */
int
stream_on_data(struct stream *st, struct frame *f)
{
	struct session	*se = st->st_se;
	struct frame	*it;
	const char	*why = NULL;

	if (f->f_len == 0) {
		why = "empty DATA frame";
	} else if (stream_have_seq(st, f->f_seq)) {
		if (se->se_resume) {
			/* Sent again after a lost channel; we have it. */
			frame_free(f);
			return 0;
		}
		why = "duplicate DATA frame";
	} else if (st->st_in_fin && f->f_seq >= st->st_in_fin_seq)
		why = "DATA after FIN";
	else if (st->st_in_bytes + f->f_len - st->st_in_delivered >
	    STREAM_WINDOW)
		why = "peer exceeded the flow-control window";
	if (why != NULL) {
		session_fail(se, SE_FAILED, EC_GENERIC, "protocol error from "
		    "peer relay: %s (stream %u, seq %llu)", why, st->st_id,
		    (unsigned long long)f->f_seq);
		frame_free(f);
		return -1;
	}
	st->st_in_bytes += f->f_len;
	if (f->f_seq == st->st_in_seq) {
		TAILQ_INSERT_TAIL(&st->st_inq, f, f_entry);
		stream_watch(st, 0, f->f_data, f->f_len);
		st->st_in_seq++;
		while ((it = TAILQ_FIRST(&st->st_reorder)) != NULL &&
		    it->f_seq == st->st_in_seq) {
			TAILQ_REMOVE(&st->st_reorder, it, f_entry);
			TAILQ_INSERT_TAIL(&st->st_inq, it, f_entry);
			stream_watch(st, 0, it->f_data, it->f_len);
			st->st_in_seq++;
		}
	} else {
		/* Sorted by seq; stream_have_seq() excluded an equal one. */
		TAILQ_FOREACH(it, &st->st_reorder, f_entry)
			if (it->f_seq > f->f_seq)
				break;
		if (it == NULL)
			TAILQ_INSERT_TAIL(&st->st_reorder, f, f_entry);
		else
			TAILQ_INSERT_BEFORE(it, f, f_entry);
	}
	if (st->st_state == ST_OPEN && !event_pending(st->st_wev, EV_WRITE,
	    NULL))
		stream_deliver(st);
	else if (st->st_state == ST_ANNOUNCED)
		stream_connect_next(se);
	return session_is_final(se) ? -1 : 0;
}

/* FIN: the peer's QEMU will send no more after DATA seq - 1. */
int
stream_on_fin(struct stream *st, uint64_t seq)
{
	struct session	*se = st->st_se;
	struct frame	*last = TAILQ_LAST(&st->st_reorder, frameq);

	if (se->se_resume && st->st_in_fin && seq == st->st_in_fin_seq)
		return 0;		/* sent again after a lost channel */
	if (st->st_in_fin || seq < st->st_in_seq ||
	    (last != NULL && last->f_seq >= seq)) {
		session_fail(se, SE_FAILED, EC_GENERIC, "protocol error from "
		    "peer relay: misplaced FIN (stream %u)", st->st_id);
		return -1;
	}
	st->st_in_fin = 1;
	st->st_in_fin_seq = seq;
	if (st->st_state == ST_OPEN) {
		if (!event_pending(st->st_wev, EV_WRITE, NULL))
			stream_deliver(st);
	} else if (st->st_state == ST_ANNOUNCED) {
		stream_connect_next(se);
	}
	return session_is_final(se) ? -1 : 0;
}

/* ACK: the peer's QEMU has received `bytes` of this direction. */
int
stream_on_ack(struct stream *st, uint64_t bytes, int fin)
{
	struct session	*se = st->st_se;

	/* After a lost channel, an older ACK may arrive after a newer one. */
	if (se->se_resume && bytes < st->st_out_acked && !fin)
		return 0;
	if (bytes < st->st_out_acked || bytes > st->st_out_bytes ||
	    (fin && (!st->st_out_eof || bytes != st->st_out_bytes))) {
		session_fail(se, SE_FAILED, EC_GENERIC, "protocol error from "
		    "peer relay: ACK out of range (stream %u)", st->st_id);
		return -1;
	}
	se->se_inflight -= bytes - st->st_out_acked;
	st->st_out_acked = bytes;
	if (fin)
		st->st_out_fin_acked = 1;
	link_release_acked(st);
	stream_update_reading(st);
	if (se->se_blocked && se->se_inflight < LINK_INFLIGHT_CAP)
		session_kick_reads(se);
	stream_check_done(st);
	return 0;
}

/* Both directions finished: close the QEMU socket, maybe complete. */
void
stream_check_done(struct stream *st)
{
	struct session	*se = st->st_se;

	if (st->st_state != ST_OPEN || !st->st_out_eof ||
	    !st->st_out_fin_acked || !st->st_in_fin_done)
		return;
	log_debug("session %s: stream %u done (%llu bytes out, %llu in)",
	    se->se_id, st->st_id, (unsigned long long)st->st_out_bytes,
	    (unsigned long long)st->st_in_delivered);
	stream_close_fd(st);
	session_check_complete(se);
}

static void
stream_accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
	struct session	*se = arg;
	struct stream	*st;
	struct timeval	 tv;
	int		 fd;

	for (;;) {
		fd = sock_accept(lfd);
		if (fd < 0) {
			if (fd != -EAGAIN && fd != -EINTR &&
			    fd != -ECONNABORTED) {
				errno = -fd;
				log_warn("session %s: accept on %s", se->se_id,
				    se->se_endpoint);
			}
			return;
		}
		if (session_is_final(se)) {
			close(fd);
			continue;
		}
		st = stream_new(se, se->se_next_stream, fd);
		if (st == NULL) {
			close(fd);
			session_fail(se, SE_FAILED, EC_GENERIC, "too many "
			    "connections from the source QEMU (limit %d)",
			    MAX_STREAMS);
			return;
		}
		se->se_next_stream++;
		se->se_nstreams++;
		st->st_state = ST_OPEN;
		log_debug("session %s: stream %u accepted from the source QEMU",
		    se->se_id, st->st_id);
		st->st_timer = evtimer_new(g_base, stream_open_timer_cb, st);
		if (st->st_timer != NULL) {
			ms_to_tv(OPEN_IDLE_MS, &tv);
			evtimer_add(st->st_timer, &tv);
		}
		if (se->se_state == SE_READY)
			session_set_state(se, SE_ACTIVE);
		stream_update_reading(st);
	}
}

/* Source: listen where the source QEMU will connect. */
int
stream_qemu_listen(struct session *se, const char **errstr)
{
	int	 fd;

	if (se->se_uri.kind == URI_TCP && se->se_listen_addrs != NULL)
		fd = sock_listen_ai(se->se_listen_addrs, 64);
	else
		fd = sock_listen_uri(&se->se_uri, 64);
	if (fd < 0) {
		*errstr = sock_strerror(-fd);
		return fd;
	}
	se->se_lfd = fd;
	se->se_lev = event_new(g_base, fd, EV_READ | EV_PERSIST,
	    stream_accept_cb, se);
	if (se->se_lev == NULL) {
		close(fd);
		se->se_lfd = -1;
		*errstr = "out of memory";
		return -ENOMEM;
	}
	event_add(se->se_lev, NULL);
	return 0;
}
