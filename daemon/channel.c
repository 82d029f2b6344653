/*
 * channel.c - one relay-to-relay TCP connection: the connection preface
 * (magic), the handshake that binds it to a session, and frame I/O.
 *
 * Input: bytes are read into ch_rbuf and parsed into frames.  A large
 * payload that is not yet complete in ch_rbuf gets its frame buffer at
 * once and the rest of it is read straight into that buffer (readv with
 * ch_rbuf as the second vector), so bulk data is not copied in user space.
 * Output: two queues, urgent (handshake, control frames, small DATA) and
 * bulk, written with writev; urgent frames always go first.
 *
 * Close path: channel_close() unlinks the channel from its session, deletes
 * its events, closes the socket and hands the struct to the reaper, which
 * frees it after the current callback.  channel_drain_close() first flushes
 * what is queued (an ABORT or CLOSE) for up to DRAIN_TIMEOUT_MS.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migrelayd.h"
#include "scram.h"
#include "tls.h"
#include "xport.h"

TAILQ_HEAD(channelq, channel);
static struct channelq	 pending = TAILQ_HEAD_INITIALIZER(pending);
static struct channelq	 reaped = TAILQ_HEAD_INITIALIZER(reaped);
static unsigned int	 npending;
static uint64_t		 next_channel_id = 1;
static struct event	*reap_ev;

static struct channel	*channel_new(int fd, int accepted);
static void		 channel_free_unlinked(struct channel *);
static void		 channel_greet(struct channel *);
static void		 channel_read_cb(evutil_socket_t, short, void *);
static void		 channel_listen_found(int, struct addrinfo *, int, void *);
static void		 channel_dial_first(struct session *);
static void		 channel_write_cb(evutil_socket_t, short, void *);
static void		 channel_timer_cb(evutil_socket_t, short, void *);
static void		 channel_connected(struct channel *);
static int		 channel_flush(struct channel *);
static int		 channel_parse(struct channel *);
static int		 channel_dispatch(struct channel *,
			    const struct frame_hdr *, struct frame *);
static int		 channel_hs_accepting(struct channel *,
			    const struct frame_hdr *, struct frame *);
static int		 channel_hs_connecting(struct channel *,
			    const struct frame_hdr *, struct frame *);
static void		 channel_send_magic(struct channel *);
static void		 channel_send_hs(struct channel *, uint8_t type,
			    const struct hs_msg *);
static void		 channel_reject(struct channel *, const char *class,
			    const char *desc);
static void		 channel_fail(struct channel *, const char *class,
			    const char *fmt, ...)
			    __attribute__((format(printf, 3, 4)));
static void		 channel_reap_cb(evutil_socket_t, short, void *);
static void		 channel_tls_step(struct channel *);
static void		 channel_hb_cb(evutil_socket_t, short, void *);
static int		 feature_is_supported(const char *);
static void		 channel_greeting_auth(struct hs_msg *);
static void		 channel_secured(struct channel *);
static ssize_t		 channel_recv(struct channel *, struct iovec *, int,
			    int *);
static void		 channel_recount(struct channel *);

static const char *const ch_state_names[_CH_STATE_MAX] = {
	[CH_CONNECTING] = "connecting",
	[CH_TLS] = "tls",
	[CH_HANDSHAKE] = "handshake",
	[CH_UP] = "up",
	[CH_DRAINING] = "draining",
	[CH_CLOSED] = "closed",
};

static const uint32_t ch_allowed[_CH_STATE_MAX] = {
	[CH_CONNECTING] = 1 << CH_TLS | 1 << CH_HANDSHAKE | 1 << CH_DRAINING |
	    1 << CH_CLOSED,
	[CH_TLS] = 1 << CH_HANDSHAKE | 1 << CH_CLOSED,
	[CH_HANDSHAKE] = 1 << CH_UP | 1 << CH_DRAINING | 1 << CH_CLOSED,
	[CH_UP] = 1 << CH_DRAINING | 1 << CH_CLOSED,
	[CH_DRAINING] = 1 << CH_CLOSED,
	[CH_CLOSED] = 0,
};

static void
channel_set_state(struct channel *ch, enum ch_state st)
{
	if (!(ch_allowed[ch->ch_state] & (1u << st))) {
		log_warnx("BUG: channel %s: transition %s -> %s refused",
		    ch->ch_peer, ch_state_names[ch->ch_state],
		    ch_state_names[st]);
		return;
	}
	log_debug("channel %s #%u: %s -> %s", ch->ch_peer, ch->ch_index,
	    ch_state_names[ch->ch_state], ch_state_names[st]);
	ch->ch_state = st;
	if (st == CH_UP) {
		struct timeval	 tv;

		ms_to_tv(HEARTBEAT_MS, &tv);
		event_add(ch->ch_hbev, &tv);
	} else {
		event_del(ch->ch_hbev);
	}
	if (st == CH_UP)
		worker_attach(ch);
	if (st == CH_UP && ch->ch_rbuf_size < CH_RBUF_SIZE) {
		uint8_t *nb = realloc(ch->ch_rbuf, CH_RBUF_SIZE);

		/* Without the large buffer the channel still works, slower. */
		if (nb != NULL) {
			ch->ch_rbuf = nb;
			ch->ch_rbuf_size = CH_RBUF_SIZE;
		}
		if (ch->ch_ssl != NULL)
			SSL_set_default_read_buffer_len(ch->ch_ssl,
			    CH_RBUF_SIZE);
	}
}

static struct channel *
channel_new(int fd, int accepted)
{
	struct channel	*ch;

	if ((ch = calloc(1, sizeof(*ch))) == NULL)
		return NULL;
	/* Small until the channel is bound: strangers get little memory. */
	ch->ch_rbuf_size = CH_RBUF_HS_SIZE;
	if ((ch->ch_rbuf = malloc(ch->ch_rbuf_size)) == NULL) {
		free(ch);
		return NULL;
	}
	ch->ch_fd = fd;
	ch->ch_id = next_channel_id++;
	ch->ch_accepted = accepted;
	TAILQ_INIT(&ch->ch_urgent);
	TAILQ_INIT(&ch->ch_bulk);
	TAILQ_INIT(&ch->ch_xq);
	TAILQ_INIT(&ch->ch_nin);
	TAILQ_INIT(&ch->ch_ndone);
	ch->ch_rev = event_new(g_base, fd, EV_READ | EV_PERSIST,
	    channel_read_cb, ch);
	ch->ch_wev = event_new(g_base, fd, EV_WRITE | EV_PERSIST,
	    channel_write_cb, ch);
	ch->ch_timer = evtimer_new(g_base, channel_timer_cb, ch);
	ch->ch_hbev = event_new(g_base, -1, EV_PERSIST, channel_hb_cb, ch);
	mono_now(&ch->ch_last_recv);
	ch->ch_last_send = ch->ch_last_recv;
	if (reap_ev == NULL)
		reap_ev = event_new(g_base, -1, 0, channel_reap_cb, NULL);
	if (ch->ch_rev == NULL || ch->ch_wev == NULL || ch->ch_timer == NULL ||
	    ch->ch_hbev == NULL) {
		if (ch->ch_hbev)
			event_free(ch->ch_hbev);
		if (ch->ch_rev)
			event_free(ch->ch_rev);
		if (ch->ch_wev)
			event_free(ch->ch_wev);
		if (ch->ch_timer)
			event_free(ch->ch_timer);
		free(ch->ch_rbuf);
		free(ch);
		return NULL;
	}
	return ch;
}

/* "ADDR:PORT" or "[V6]:PORT" -> "ADDR" / "V6". */
void
channel_addr_of(const char *peer, char *buf, size_t len)
{
	const char	*c;
	size_t		 n;

	if (peer[0] == '[' && (c = strchr(peer, ']')) != NULL) {
		peer++;
		n = (size_t)(c - peer);
	} else if ((c = strrchr(peer, ':')) != NULL) {
		n = (size_t)(c - peer);
	} else {
		n = strlen(peer);
	}
	if (n >= len)
		n = len - 1;
	memcpy(buf, peer, n);
	buf[n] = '\0';
}

/* Free a channel that was never linked anywhere (fd stays open). */
static void
channel_free_unlinked(struct channel *ch)
{
	event_free(ch->ch_hbev);
	event_free(ch->ch_rev);
	event_free(ch->ch_wev);
	event_free(ch->ch_timer);
	if (ch->ch_ssl != NULL)
		SSL_free(ch->ch_ssl);
	free(ch->ch_rbuf);
	free(ch);
}

/*
 * An accepted relay connection: send our preface and greeting, then wait
 * for HELLO or JOIN.  Returns the channel (owned by the pending list) or
 * NULL, in which case the caller closes fd.
 */
struct channel *
channel_accept(int fd, const char *peer)
{
	struct channel	*ch;
	struct timeval	 tv;
	char		 err[512];

	if ((ch = channel_new(fd, 1)) == NULL)
		return NULL;
	snprintf(ch->ch_peer, sizeof(ch->ch_peer), "%s", peer);
	channel_addr_of(peer, ch->ch_addr, sizeof(ch->ch_addr));
	if (g_tls != NULL) {
		ch->ch_ssl = tls_conn_new(g_tls, fd, 1, NULL, err, sizeof(err));
		if (ch->ch_ssl == NULL) {
			log_warnx("channel %s: %s", peer, err);
			channel_free_unlinked(ch);
			return NULL;
		}
		ch->ch_state = CH_TLS;
	} else {
		ch->ch_state = CH_HANDSHAKE;
	}
	TAILQ_INSERT_TAIL(&pending, ch, ch_entry);
	npending++;
	log_debug("channel %s: accepted", ch->ch_peer);
	event_add(ch->ch_rev, NULL);
	ms_to_tv(g_conf.handshake_timeout_ms, &tv);
	evtimer_add(ch->ch_timer, &tv);
	if (ch->ch_ssl != NULL)
		channel_tls_step(ch);
	else
		channel_greet(ch);
	return ch->ch_dead ? NULL : ch;
}

/* Accepting side: our preface and GREETING. */
static void
channel_greet(struct channel *ch)
{
	struct hs_msg	 m;

	memset(&m, 0, sizeof(m));
	m.version_min = PROTO_VERSION_MIN;
	m.version_max = PROTO_VERSION_MAX;
	m.window = STREAM_WINDOW;
	snprintf(m.software, sizeof(m.software), "migrelay %d.%d.%d",
	    MIGRELAY_VERSION_MAJOR, MIGRELAY_VERSION_MINOR,
	    MIGRELAY_VERSION_MICRO);
	m.present = 1u << HS_T_VERSION_MIN | 1u << HS_T_VERSION_MAX |
	    1u << HS_T_WINDOW | 1u << HS_T_SOFTWARE;
	hs_add_feature(&m, FEAT_MULTICHANNEL);
	if (g_conf.insecure_plaintext) {
		hs_add_feature(&m, FEAT_PLAINTEXT);
		hs_add_require(&m, FEAT_PLAINTEXT);
	}
	if (g_tls != NULL)
		hs_add_feature(&m, FEAT_TLS);
	hs_add_feature(&m, FEAT_HEARTBEAT);
	if (g_conf.reconnect_timeout_ms > 0)
		hs_add_feature(&m, FEAT_RESUME);
	if (g_conf.insecure_plaintext)
		hs_add_feature(&m, FEAT_CRC);
	channel_greeting_auth(&m);
	channel_send_magic(ch);
	channel_send_hs(ch, FRAME_GREETING, &m);
}

static void
channel_peer_found(int r, struct addrinfo *res, int gai, void *arg)
{
	struct session	*se = arg;

	se->se_lookup = NULL;
	if (r == -SOCK_ENORESOLVE && (gai == EAI_NONAME || gai == EAI_NODATA)) {
		session_fail(se, SE_FAILED, EC_UNREACHABLE, "cannot connect to "
		    "peer relay %s: host name does not resolve (%s)",
		    se->se_peer, resolve_strerror(r, gai));
		return;
	}
	if (r != 0) {
		session_fail(se, SE_FAILED, EC_UNREACHABLE, "cannot look up "
		    "peer relay %s: %s", se->se_peer, resolve_strerror(r, gai));
		return;
	}
	se->se_addrs = res;
	if (se->se_uri.kind == URI_TCP) {
		/* The listen URI's host too, for the link-up (stream.c). */
		se->se_lookup = resolve_start(se->se_uri.host,
		    se->se_uri.port, channel_listen_found, se);
		if (se->se_lookup == NULL)
			session_fail(se, SE_FAILED, EC_INTERNAL, "cannot look "
			    "up %s: %s", se->se_endpoint, strerror(errno));
		return;
	}
	channel_dial_first(se);
}

static void
channel_listen_found(int r, struct addrinfo *res, int gai, void *arg)
{
	struct session	*se = arg;

	if (session_lookup_done(se, r, gai, "the 'listen' address") != 0)
		return;
	se->se_listen_addrs = res;
	channel_dial_first(se);
}

static void
channel_dial_first(struct session *se)
{
	int	 r;

	if ((r = channel_connect(se, 0)) != 0)
		session_fail(se, SE_FAILED, EC_UNREACHABLE, "cannot connect to "
		    "peer relay %s: %s", se->se_peer, sock_strerror(-r));
}

/*
 * Source: look up se->se_peer (off the event loop when it is a name, see
 * resolve.c), then the host of a tcp: listen URI, then open channel 0.
 * The peer's addresses are kept: the other channels and every re-dial go
 * to the same host, which holds the session's other end.  Returns 0
 * (under way) or -errno.
 */
int
channel_connect_first(struct session *se)
{
	char		 host[256], port[16];
	const char	*errstr;

	if (hostport_parse(se->se_peer, host, sizeof(host), port,
	    sizeof(port), &errstr) != 0)
		return -EINVAL;
	se->se_lookup = resolve_start(host, port, channel_peer_found, se);
	return se->se_lookup != NULL ? 0 : -errno;
}

/*
 * Open channel number index of se's link towards se->se_peer, at the
 * addresses channel_connect_first() found.  Returns 0 (connect under way
 * or done) or -errno; the caller fails the session.
 */
int
channel_connect(struct session *se, unsigned int index)
{
	struct channel		*ch;
	const struct addrinfo	*ai = NULL;
	char			 host[256], port[16];
	const char		*errstr;
	int			 fd = -1, r;

	if (se->se_addrs == NULL || hostport_parse(se->se_peer, host,
	    sizeof(host), port, sizeof(port), &errstr) != 0)
		return -EINVAL;
	/* Start at the address a channel of this link reached, if any. */
	r = sock_connect_ai(se->se_addr_ok != NULL ? se->se_addr_ok :
	    se->se_addrs, &fd, &ai);
	if (r != 0 && r != -EINPROGRESS)
		return r;
	if ((ch = channel_new(fd, 0)) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(ch->ch_peer, sizeof(ch->ch_peer), "%s", se->se_peer);
	snprintf(ch->ch_host, sizeof(ch->ch_host), "%s", host);
	ch->ch_se = se;
	ch->ch_ai = ai;
	ch->ch_index = index;
	ch->ch_rejoin = se->se_link_was_up;
	se->se_ch[index] = ch;
	se->se_ch_seen |= UINT64_C(1) << index;
	sock_tune_link(fd, g_conf.link_timeout_ms);
	ch->ch_state = CH_CONNECTING;
	if (ch->ch_rejoin) {
		/* A first link has the session's deadline; a re-dial its own. */
		struct timeval	 tv;

		ms_to_tv(g_conf.handshake_timeout_ms, &tv);
		evtimer_add(ch->ch_timer, &tv);
	}
	if (r == 0)
		channel_connected(ch);
	else
		event_add(ch->ch_wev, NULL);
	return 0;
}

static void
channel_connected(struct channel *ch)
{
	char	 err[512];

	log_debug("session %s: channel #%u connected to %s", ch->ch_se->se_id,
	    ch->ch_index, ch->ch_peer);
	if (ch->ch_ai != NULL)
		ch->ch_se->se_addr_ok = ch->ch_ai;
	event_add(ch->ch_rev, NULL);
	if (g_tls == NULL) {
		channel_set_state(ch, CH_HANDSHAKE);
		channel_send_magic(ch);
		return;
	}
	ch->ch_ssl = tls_conn_new(g_tls, ch->ch_fd, 0, ch->ch_host, err,
	    sizeof(err));
	if (ch->ch_ssl == NULL) {
		channel_fail(ch, EC_TLS, "TLS with peer relay %s: %s",
		    ch->ch_peer, err);
		return;
	}
	channel_set_state(ch, CH_TLS);
	channel_tls_step(ch);
}

/* Advance the TLS handshake; on success continue with the preface. */
static void
channel_tls_step(struct channel *ch)
{
	char	 err[512];
	int	 want = 0, r;

	r = tls_handshake(ch->ch_ssl, &want, err, sizeof(err));
	if (r < 0) {
		channel_fail(ch, EC_TLS, "TLS with %s relay %s failed: %s",
		    ch->ch_accepted ? "connecting" : "peer", ch->ch_peer, err);
		return;
	}
	if (r == 0) {
		if (want == TLS_WANT_WRITE)
			event_add(ch->ch_wev, NULL);
		else
			event_del(ch->ch_wev);
		return;
	}
	event_del(ch->ch_wev);
	channel_secured(ch);
}

static void
channel_secured(struct channel *ch)
{
	if (tls_peer_identity(ch->ch_ssl, ch->ch_identity,
	    sizeof(ch->ch_identity)) != 0)
		snprintf(ch->ch_identity, sizeof(ch->ch_identity), "?");
	log_debug("channel %s: TLS established (%s), peer %s", ch->ch_peer,
	    SSL_get_cipher_name(ch->ch_ssl), ch->ch_identity);
	ch->ch_rekey_bytes = g_conf.tls_rekey_bytes;
	if ((ch->ch_wbuf = malloc(CH_WBUF_SIZE)) == NULL ||
	    tls_buffer_output(ch->ch_ssl) != 0) {
		channel_fail(ch, EC_INTERNAL, "out of memory");
		return;
	}
	channel_set_state(ch, CH_HANDSHAKE);
	if (ch->ch_accepted)
		channel_greet(ch);
	else
		channel_send_magic(ch);
}

/* Pending channels in all, or from one source address when addr is set. */
unsigned int
channel_pending_count(const char *addr)
{
	struct channel	*ch;
	unsigned int	 n = 0;

	if (addr == NULL)
		return npending;
	TAILQ_FOREACH(ch, &pending, ch_entry)
		if (strcmp(ch->ch_addr, addr) == 0)
			n++;
	return n;
}

static void
channel_send_magic(struct channel *ch)
{
	struct frame	*f;

	if ((f = frame_new(0, 0, 0, 0, PROTO_MAGIC_LEN)) == NULL)
		return;
	f->f_raw = 1;
	memcpy(f->f_data, PROTO_MAGIC, PROTO_MAGIC_LEN);
	channel_send(ch, f, 1);
}

static void
channel_send_hs(struct channel *ch, uint8_t type, const struct hs_msg *m)
{
	uint8_t		 buf[HS_MAX_PAYLOAD];
	ssize_t		 n;
	struct frame	*f;

	n = hs_encode(buf, sizeof(buf), m);
	if (n < 0) {
		log_warnx("BUG: handshake message does not fit");
		return;
	}
	if ((f = frame_new(type, 0, 0, 0, (size_t)n)) == NULL)
		return;
	memcpy(f->f_data, buf, (size_t)n);
	channel_send(ch, f, 1);
}

/* Features this relay can use on a link, given its configuration. */
static int
feature_is_supported(const char *name)
{
	if (strcmp(name, FEAT_MULTICHANNEL) == 0 ||
	    strcmp(name, FEAT_HEARTBEAT) == 0)
		return 1;
	if (strcmp(name, FEAT_PLAINTEXT) == 0)
		return g_conf.insecure_plaintext;
	if (strcmp(name, FEAT_RESUME) == 0)
		return g_conf.reconnect_timeout_ms > 0;
	if (strcmp(name, FEAT_CRC) == 0)
		return g_conf.insecure_plaintext;
	if (strcmp(name, FEAT_TLS) == 0)
		return g_tls != NULL;
	if (strcmp(name, FEAT_SCRAM) == 0)
		return auth_users_loaded() || auth_secret_loaded();
	if (strcmp(name, FEAT_SCRAM_PLUS) == 0)
		return g_tls != NULL && (auth_users_loaded() ||
		    auth_secret_loaded());
	return 0;
}

/* Send REJECT, then close once it is flushed. */
static void
channel_reject(struct channel *ch, const char *class, const char *desc)
{
	struct hs_msg	 m;

	memset(&m, 0, sizeof(m));
	snprintf(m.errclass, sizeof(m.errclass), "%s", class);
	snprintf(m.errdesc, sizeof(m.errdesc), "%s", desc);
	m.present = 1u << HS_T_ERRCLASS | 1u << HS_T_ERRDESC;
	channel_send_hs(ch, FRAME_REJECT, &m);
	if (ch->ch_accepted) {
		g_stats.st_hs_rejected++;
		if (strcmp(class, EC_AUTH) == 0)
			g_stats.st_auth_failures++;
	}
	channel_drain_close(ch, 0);
}

/*
 * Plaintext links with "crc32c": the header says FRAME_F_CRC and counts
 * the trailer, which is the CRC-32C of the header and the payload.  Done
 * once per frame; a frame sent again keeps it.
 */
static void
channel_seal_crc(struct frame *f)
{
	struct frame_hdr	 h = {
		.type = f->f_type,
		.flags = f->f_flags | FRAME_F_CRC,
		.stream = f->f_stream,
		.seq = f->f_seq,
		.len = f->f_len + FRAME_CRC_LEN,
	};

	frame_hdr_encode(f->f_hdr, &h);
	put_be32(f->f_crc, crc32c(crc32c(0, f->f_hdr, FRAME_HDR_LEN),
	    f->f_data, f->f_len));
	f->f_tl = FRAME_CRC_LEN;
}

/*
 * Check and strip the CRC-32C of a received frame (h and f describe it
 * with the trailer).  Returns 0, or -1 when it does not match.
 */
static int
channel_check_crc(struct frame_hdr *h, struct frame *f)
{
	uint8_t		 hdr[FRAME_HDR_LEN];
	uint32_t	 want;

	if (!(h->flags & FRAME_F_CRC) || h->len < FRAME_CRC_LEN)
		return -1;
	frame_hdr_encode(hdr, h);
	want = get_be32(f->f_data + h->len - FRAME_CRC_LEN);
	if (crc32c(crc32c(0, hdr, sizeof(hdr)), f->f_data,
	    h->len - FRAME_CRC_LEN) != want)
		return -1;
	h->len -= FRAME_CRC_LEN;
	h->flags &= ~FRAME_F_CRC;
	f->f_len = h->len;
	f->f_flags = h->flags;
	return 0;
}

/* Bytes of a frame on the wire: header, payload, trailer. */
static size_t
frame_wire_len(const struct frame *f)
{
	return (f->f_raw ? 0 : FRAME_HDR_LEN) + f->f_len + f->f_tl;
}

/* The channel is closing or its worker stopped its I/O. */
static int
channel_gone(const struct channel *ch)
{
	return ch->ch_dead || ch->ch_wdead;
}

/* A frame leaves this channel's output queue (written or dropped). */
static void
channel_release(struct frame *f)
{
	f->f_queued = 0;
	frame_free(f);
}

/*
 * Queue a frame (stolen) for writing and try to write at once.  Frames
 * queued on a closed channel are dropped.  A frame is in at most one
 * channel queue at a time; f_chan remembers which channel carried it last,
 * so that a lost channel's frames can be sent again (link.c).
 */
void
channel_send(struct channel *ch, struct frame *f, int urgent)
{
	if (ch->ch_dead || ch->ch_state == CH_CLOSED) {
		frame_free(f);
		return;
	}
	f->f_queued = 1;
	f->f_urgent = urgent != 0;
	f->f_chan = ch->ch_id;
	f->f_off = 0;
	if (ch->ch_state == CH_UP && ch->ch_se != NULL && ch->ch_se->se_crc &&
	    !f->f_raw && f->f_tl == 0)
		channel_seal_crc(f);
	ch->ch_outq_bytes += frame_wire_len(f);
	if (ch->ch_worker != NULL) {
		worker_send(ch, f);
		return;
	}
	TAILQ_INSERT_TAIL(urgent ? &ch->ch_urgent : &ch->ch_bulk, f, f_entry);
	if (ch->ch_state != CH_CONNECTING && ch->ch_state != CH_TLS &&
	    !event_pending(ch->ch_wev, EV_WRITE, NULL))
		channel_flush(ch);
}

/*
 * The frames to write next, in order.  At most one frame is ever partially
 * written, and it must be finished before anything else: if it is a bulk
 * frame, it goes first, then the urgent queue, then the rest of the bulk
 * queue.  Returns the number of frames in fs/fq (at most max).
 */
static unsigned int
channel_gather(struct channel *ch, struct frame **fs, struct frameq **fq,
    unsigned int max)
{
	struct frame	*f;
	unsigned int	 nf = 0;

	f = TAILQ_FIRST(&ch->ch_bulk);
	if (f != NULL && f->f_off > 0) {
		fq[nf] = &ch->ch_bulk;
		fs[nf++] = f;
	}
	TAILQ_FOREACH(f, &ch->ch_urgent, f_entry) {
		if (nf == max)
			return nf;
		fq[nf] = &ch->ch_urgent;
		fs[nf++] = f;
	}
	TAILQ_FOREACH(f, &ch->ch_bulk, f_entry) {
		if (nf == max)
			break;
		if (nf > 0 && fs[0] == f)
			continue;
		fq[nf] = &ch->ch_bulk;
		fs[nf++] = f;
	}
	return nf;
}

/* Account w bytes of the gathered frames as written; free whole ones. */
static void
channel_consume(struct channel *ch, struct frame **fs, struct frameq **fq,
    unsigned int nf, size_t w)
{
	struct frame	*f;
	unsigned int	 i;
	size_t		 left;

	if (ch->ch_worker != NULL) {
		/* A worker's: the main thread accounts and releases. */
		if (w > 0)
			worker_count_io(ch, w, 0);
		for (i = 0; i < nf && w > 0; i++) {
			f = fs[i];
			left = frame_wire_len(f) - f->f_off;
			if (w < left) {
				f->f_off += w;
				break;
			}
			w -= left;
			TAILQ_REMOVE(fq[i], f, f_entry);
			worker_written(ch, f);
		}
		return;
	}
	if (w > 0)
		mono_now(&ch->ch_last_send);
	ch->ch_bytes_sent += w;
	if (ch->ch_se != NULL)
		ch->ch_se->se_link_sent += w;
	for (i = 0; i < nf && w > 0; i++) {
		f = fs[i];
		left = frame_wire_len(f) - f->f_off;
		if (w < left) {
			f->f_off += w;
			ch->ch_outq_bytes -= w;
			break;
		}
		w -= left;
		ch->ch_outq_bytes -= left;
		TAILQ_REMOVE(fq[i], f, f_entry);
		channel_release(f);
	}
}

/* Build the iovecs of the gathered frames; returns their count. */
static unsigned int
channel_iov(struct frame **fs, unsigned int nf, struct iovec *iov)
{
	struct frame	*f;
	unsigned int	 i, n = 0;
	size_t		 hl, off;

	for (i = 0; i < nf; i++) {
		f = fs[i];
		hl = f->f_raw ? 0 : FRAME_HDR_LEN;
		off = f->f_off;
		if (off < hl) {
			iov[n].iov_base = f->f_hdr + off;
			iov[n++].iov_len = hl - off;
			off = hl;
		}
		if (off < hl + f->f_len) {
			iov[n].iov_base = f->f_data + (off - hl);
			iov[n++].iov_len = hl + f->f_len - off;
			off = hl + f->f_len;
		}
		if (off < hl + f->f_len + f->f_tl) {
			iov[n].iov_base = f->f_crc + (off - hl - f->f_len);
			iov[n++].iov_len = hl + f->f_len + f->f_tl - off;
		}
	}
	return n;
}

/* Encrypt len bytes into the output buffer.  0, or -1 (channel failed). */
static int
channel_encrypt(struct channel *ch, const uint8_t *p, size_t len)
{
	ssize_t	 w;
	int	 want = 0;

	while (len > 0) {
		/* The buffer BIO never refuses: no retry state to keep. */
		w = tls_write(ch->ch_ssl, p, len, &want);
		if (w <= 0) {
			channel_fail(ch, EC_UNREACHABLE, "write to peer relay "
			    "%s failed: %s%s%s", ch->ch_peer,
			    strerror(w < 0 ? (int)-w : EPIPE), w == -EPROTO ?
			    ": " : "", w == -EPROTO ? tls_last_error() : "");
			return -1;
		}
		p += w;
		len -= (size_t)w;
		ch->ch_since_rekey += (uint64_t)w;
	}
	return 0;
}

/*
 * TLS output.  Frames are encrypted straight from their buffers into the
 * connection's output buffer (tls_buffer_output), up to CH_TLS_BATCH
 * plaintext bytes at a time; pieces below CH_TLS_SMALL (frame headers,
 * small frames) are gathered in ch_wbuf first so that a small frame is
 * one record.  The ciphertext of the batch then leaves in one or a few
 * write()s.  Returns 1 when everything is written, 0 when waiting, -1
 * when the channel was closed.
 */
static int
channel_flush_tls(struct channel *ch)
{
	struct iovec	 iov[CH_IOV_MAX];
	struct frame	*fs[CH_IOV_MAX / 2];
	struct frameq	*fq[CH_IOV_MAX / 2];
	unsigned int	 nf, n, i;
	ssize_t		 r;
	size_t		 take, used, staged;

	for (;;) {
		if (tls_output_pending(ch->ch_ssl) > 0) {
			r = tls_flush_output(ch->ch_ssl, ch->ch_fd);
			if (r == -EAGAIN || r > 0) {
				event_add(ch->ch_wev, NULL);
				return 0;
			}
			if (r < 0) {
				channel_fail(ch, EC_UNREACHABLE, "write to peer "
				    "relay %s failed: %s", ch->ch_peer,
				    strerror((int)-r));
				return -1;
			}
		}
		if (ch->ch_since_rekey >= ch->ch_rekey_bytes) {
			if (tls_key_update(ch->ch_ssl) == 0)
				log_debug("channel %s #%u: TLS key update after "
				    "%llu bytes", ch->ch_peer, ch->ch_index,
				    (unsigned long long)ch->ch_since_rekey);
			ch->ch_since_rekey = 0;
		}
		nf = channel_gather(ch, fs, fq, CH_IOV_MAX / 3);
		if (nf == 0)
			return tls_output_pending(ch->ch_ssl) == 0 ? 1 : 0;
		n = channel_iov(fs, nf, iov);
		used = staged = 0;
		for (i = 0; i < n && used < CH_TLS_BATCH; i++) {
			take = iov[i].iov_len;
			if (take > CH_TLS_BATCH - used)
				take = CH_TLS_BATCH - used;
			if (take < CH_TLS_SMALL) {
				if (staged + take > CH_WBUF_SIZE) {
					if (channel_encrypt(ch, ch->ch_wbuf,
					    staged) != 0)
						return -1;
					staged = 0;
				}
				memcpy(ch->ch_wbuf + staged, iov[i].iov_base,
				    take);
				staged += take;
			} else {
				if (staged > 0 && channel_encrypt(ch,
				    ch->ch_wbuf, staged) != 0)
					return -1;
				staged = 0;
				if (channel_encrypt(ch, iov[i].iov_base,
				    take) != 0)
					return -1;
			}
			used += take;
		}
		if (staged > 0 && channel_encrypt(ch, ch->ch_wbuf, staged) != 0)
			return -1;
		/* Counted as sent when encrypted: the buffer is the channel's. */
		channel_consume(ch, fs, fq, nf, used);
	}
}

/* Write queued frames.  Returns 0, or -1 when the channel was closed. */
static int
channel_flush(struct channel *ch)
{
	struct iovec	 iov[CH_IOV_MAX];
	struct frame	*fs[CH_IOV_MAX / 2];
	struct frameq	*fq[CH_IOV_MAX / 2];
	unsigned int	 n, nf;
	ssize_t		 w;
	int		 r;

	if (ch->ch_ssl != NULL) {
		r = channel_flush_tls(ch);
		if (r <= 0)
			return r;
	} else {
		for (;;) {
			nf = channel_gather(ch, fs, fq, CH_IOV_MAX / 3);
			if (nf == 0)
				break;
			n = channel_iov(fs, nf, iov);
			w = writev(ch->ch_fd, iov, (int)n);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					event_add(ch->ch_wev, NULL);
					return 0;
				}
				channel_fail(ch, EC_UNREACHABLE, "write to peer "
				    "relay %s failed: %s", ch->ch_peer,
				    strerror(errno));
				return -1;
			}
			channel_consume(ch, fs, fq, nf, (size_t)w);
		}
	}
	event_del(ch->ch_wev);
	if (ch->ch_state == CH_DRAINING && !ch->ch_linger)
		channel_close(ch, NULL);
	return 0;
}

/*
 * The connection to ch->ch_ai failed: go on with the peer's next address
 * (a name with an IPv6 and an IPv4 address, a peer listening on one of
 * them).  Returns 0 when a new attempt is under way or done, else -1.
 */
static int
channel_connect_next(struct channel *ch, int err)
{
	const struct addrinfo	*ai = NULL;
	char			 addr[128];
	int			 fd = -1, r;

	if (ch->ch_se == NULL || ch->ch_ai == NULL ||
	    ch->ch_ai->ai_next == NULL)
		return -1;
	if (sock_addr_format(ch->ch_ai->ai_addr, ch->ch_ai->ai_addrlen, addr,
	    sizeof(addr)) != 0)
		snprintf(addr, sizeof(addr), "?");
	r = sock_connect_ai(ch->ch_ai->ai_next, &fd, &ai);
	if (r != 0 && r != -EINPROGRESS)
		return -1;
	log_debug("session %s: channel #%u: %s at %s, trying the next address",
	    ch->ch_se->se_id, ch->ch_index, strerror(-err), addr);
	close(ch->ch_fd);
	ch->ch_fd = fd;
	ch->ch_ai = ai;
	event_move_fd(ch->ch_rev, fd);
	event_move_fd(ch->ch_wev, fd);
	sock_tune_link(fd, g_conf.link_timeout_ms);
	if (r == 0)
		channel_connected(ch);
	else
		event_add(ch->ch_wev, NULL);
	return 0;
}

static void
channel_write_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct channel	*ch = arg;
	int		 r;

	if (ch->ch_state == CH_CONNECTING) {
		event_del(ch->ch_wev);
		if ((r = sock_connect_result(fd)) != 0 &&
		    channel_connect_next(ch, r) == 0)
			return;
		if (r != 0) {
			char	 msg[512];

			snprintf(msg, sizeof(msg), "cannot connect to peer "
			    "relay %s: %s", ch->ch_peer, strerror(-r));
			if (ch->ch_rejoin && ch->ch_se != NULL) {
				/* Refused: nothing listens, the session is gone. */
				link_rejoin_failed(ch, EC_UNREACHABLE, msg,
				    r == -ECONNREFUSED);
				return;
			}
			channel_fail(ch, EC_UNREACHABLE, "%s", msg);
			return;
		}
		channel_connected(ch);
		if (!ch->ch_dead && ch->ch_state == CH_HANDSHAKE &&
		    (!TAILQ_EMPTY(&ch->ch_urgent) || !TAILQ_EMPTY(&ch->ch_bulk)))
			channel_flush(ch);
		return;
	}
	if (ch->ch_state == CH_TLS) {
		channel_tls_step(ch);
		return;
	}
	if (ch->ch_read_wants_write) {
		ch->ch_read_wants_write = 0;
		channel_read_cb(fd, EV_READ, ch);
		if (ch->ch_dead)
			return;
	}
	channel_flush(ch);
}

static void
channel_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct channel	*ch = arg;

	if (ch->ch_state == CH_DRAINING) {
		channel_close(ch, "drain timeout");
		return;
	}
	channel_fail(ch, EC_TIMEOUT, "peer relay %s did not complete the "
	    "handshake within %u ms", ch->ch_peer, g_conf.handshake_timeout_ms);
}

/*
 * Read into the vectors: readv, or SSL_read into each vector in turn.
 * Returns a byte count, 0 on EOF, or -errno (-EAGAIN: nothing now).  With
 * bytes, *drained says whether the socket had no more just now (a short
 * readv, or OpenSSL wanting to read), so the caller need not ask again
 * only to hear EAGAIN: the level-triggered event comes back if more came.
 */
static ssize_t
channel_recv(struct channel *ch, struct iovec *iov, int cnt, int *drained)
{
	ssize_t	 n, total = 0;
	size_t	 off, room = 0;
	int	 i, want = 0;

	*drained = 0;
	if (ch->ch_ssl == NULL) {
		n = readv(ch->ch_fd, iov, cnt);
		if (n < 0)
			return -errno;
		for (i = 0; i < cnt; i++)
			room += iov[i].iov_len;
		*drained = (size_t)n < room;
		return n;
	}
	/* An end or error seen behind data last time: report it now. */
	if (ch->ch_rerr != 0 && ch->ch_rerr != -EAGAIN)
		return ch->ch_rerr == 1 ? 0 : ch->ch_rerr;
	for (i = 0; i < cnt; i++) {
		for (off = 0; off < iov[i].iov_len; off += (size_t)n) {
			n = tls_read(ch->ch_ssl, (uint8_t *)iov[i].iov_base +
			    off, iov[i].iov_len - off, &want);
			/*
			 * OpenSSL reads ahead what the socket has (up to its
			 * buffer): a short record and nothing buffered behind
			 * it mean the socket was empty.
			 */
			if (n > 0 && (size_t)n < iov[i].iov_len - off &&
			    !SSL_has_pending(ch->ch_ssl)) {
				*drained = 1;
				return total + (ssize_t)off + n;
			}
			if (n > 0)
				continue;
			if (total > 0 || off > 0) {
				/*
				 * Keep a fatal error (a bad record, say) for
				 * the next call: OpenSSL will not say it twice.
				 */
				if (n != -EAGAIN)
					ch->ch_rerr = n == 0 ? 1 : (int)n;
				else if (want == TLS_WANT_READ &&
				    !SSL_has_pending(ch->ch_ssl))
					*drained = 1;
				return total + (ssize_t)off;
			}
			if (n == -EAGAIN && want == TLS_WANT_WRITE) {
				ch->ch_read_wants_write = 1;
				event_add(ch->ch_wev, NULL);
			}
			return n;
		}
		total += (ssize_t)off;
	}
	return total;
}

static void
channel_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct channel	*ch = arg;
	struct iovec	 iov[2];
	size_t		 budget = 0, need;
	ssize_t		 n;
	struct frame	*f;
	int		 cnt, drained = 0;

	if (ch->ch_state == CH_TLS) {
		channel_tls_step(ch);
		return;
	}
	while (!drained && !channel_gone(ch) && budget < CALLBACK_BUDGET) {
		if ((f = ch->ch_rframe) != NULL) {
			need = f->f_len - f->f_off;
			iov[0].iov_base = f->f_data + f->f_off;
			iov[0].iov_len = need;
			iov[1].iov_base = ch->ch_rbuf;
			iov[1].iov_len = ch->ch_rbuf_size;
			ch->ch_rlen = ch->ch_rpos = 0;
			cnt = 2;
		} else {
			if (ch->ch_rpos > 0) {
				memmove(ch->ch_rbuf, ch->ch_rbuf + ch->ch_rpos,
				    ch->ch_rlen - ch->ch_rpos);
				ch->ch_rlen -= ch->ch_rpos;
				ch->ch_rpos = 0;
			}
			need = 0;
			iov[0].iov_base = ch->ch_rbuf + ch->ch_rlen;
			iov[0].iov_len = ch->ch_rbuf_size - ch->ch_rlen;
			cnt = 1;
		}
		n = channel_recv(ch, iov, cnt, &drained);
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			if (n == -EPROTO && ch->ch_ssl != NULL &&
			    ch->ch_state == CH_HANDSHAKE) {
				/*
				 * TLS 1.3: the connecting side finishes its
				 * handshake before the server has checked our
				 * certificate; a refusal arrives here, as an
				 * alert.
				 */
				channel_fail(ch, EC_TLS, "TLS with %s relay %s "
				    "failed: the peer refused this relay's "
				    "certificate or the connection (%s)",
				    ch->ch_accepted ? "connecting" : "peer",
				    ch->ch_peer, tls_last_error());
				return;
			}
			channel_fail(ch, ch->ch_state == CH_UP ? EC_UNREACHABLE :
			    EC_GENERIC, "link to peer relay %s lost: %s%s%s",
			    ch->ch_peer, strerror((int)-n), n == -EPROTO &&
			    ch->ch_ssl != NULL ? ": " : "", n == -EPROTO &&
			    ch->ch_ssl != NULL ? tls_last_error() : "");
			return;
		}
		if (n == 0) {
			if (ch->ch_state == CH_DRAINING) {
				channel_close(ch, NULL);
				return;
			}
			if (!ch->ch_magic_seen && !ch->ch_accepted &&
			    g_tls == NULL) {
				channel_fail(ch, EC_TLS, "peer relay %s closed "
				    "the connection without a greeting (does "
				    "it require TLS? this relay runs with "
				    "--insecure-plaintext)", ch->ch_peer);
				return;
			}
			channel_fail(ch, EC_UNREACHABLE, "link to peer relay "
			    "%s lost: connection closed", ch->ch_peer);
			return;
		}
		budget += (size_t)n;
		if (ch->ch_worker != NULL) {
			worker_count_io(ch, 0, (uint64_t)n);
		} else {
			mono_now(&ch->ch_last_recv);
			ch->ch_bytes_recv += (uint64_t)n;
			if (ch->ch_se != NULL)
				ch->ch_se->se_link_recv += (uint64_t)n;
		}
		if (f != NULL) {
			if ((size_t)n >= need) {
				f->f_off = f->f_len;
				ch->ch_rlen = (size_t)n - need;
				ch->ch_rframe = NULL;
				if (channel_dispatch(ch, NULL, f) != 0)
					return;
			} else {
				f->f_off += (size_t)n;
				continue;
			}
		} else {
			ch->ch_rlen += (size_t)n;
		}
		if (channel_parse(ch) != 0)
			return;
	}
	if (channel_gone(ch))
		return;
	/* Decrypted bytes OpenSSL holds raise no event: come back for them. */
	if (ch->ch_ssl != NULL && budget >= CALLBACK_BUDGET &&
	    SSL_has_pending(ch->ch_ssl))
		event_active(ch->ch_rev, EV_READ, 0);
	if (ch->ch_write_wants_read) {
		ch->ch_write_wants_read = 0;
		channel_flush(ch);
	} else if (ch->ch_ssl != NULL && tls_output_pending(ch->ch_ssl) > 0 &&
	    !event_pending(ch->ch_wev, EV_WRITE, NULL)) {
		/* SSL_read answered a KeyUpdate: send the reply. */
		channel_flush(ch);
	}
}

/*
 * Parse whole frames out of ch_rbuf.  Returns 0, or -1 when the channel
 * was closed.
 */
static int
channel_parse(struct channel *ch)
{
	struct frame_hdr	 h;
	struct frame		*f;
	size_t			 avail;
	int			 r;

	for (;;) {
		if (channel_gone(ch))
			return -1;
		avail = ch->ch_rlen - ch->ch_rpos;
		if (!ch->ch_magic_seen) {
			if (avail < PROTO_MAGIC_LEN)
				return 0;
			if (memcmp(ch->ch_rbuf + ch->ch_rpos, PROTO_MAGIC,
			    PROTO_MAGIC_LEN) != 0) {
				if (g_tls == NULL && tls_looks_like_client_hello(
				    ch->ch_rbuf + ch->ch_rpos, avail))
					channel_fail(ch, EC_TLS, "peer relay %s "
					    "speaks TLS, but this relay runs "
					    "with --insecure-plaintext",
					    ch->ch_peer);
				else
					channel_fail(ch, EC_VERSION, "peer %s is "
					    "not a migrelay relay (bad "
					    "connection preface)", ch->ch_peer);
				return -1;
			}
			ch->ch_magic_seen = 1;
			ch->ch_rpos += PROTO_MAGIC_LEN;
			continue;
		}
		r = frame_hdr_decode(ch->ch_rbuf + ch->ch_rpos, avail, &h);
		if (r == -EAGAIN)
			return 0;
		if (r == -EMSGSIZE) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: frame too large", ch->ch_peer);
			return -1;
		}
		if (r != 0) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: unknown frame type 0x%02x", ch->ch_peer,
			    ch->ch_rbuf[ch->ch_rpos]);
			return -1;
		}
		if (ch->ch_state != CH_UP && h.type != FRAME_GREETING &&
		    h.type != FRAME_HELLO && h.type != FRAME_JOIN &&
		    h.type != FRAME_WELCOME && h.type != FRAME_REJECT &&
		    h.type != FRAME_ABORT && h.type != FRAME_AUTH) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: %s frame before the handshake ended",
			    ch->ch_peer, frame_type_name(h.type));
			return -1;
		}
		if ((f = frame_new(h.type, h.flags, h.stream, h.seq, h.len))
		    == NULL) {
			channel_fail(ch, EC_INTERNAL, "out of memory");
			return -1;
		}
		ch->ch_rpos += FRAME_HDR_LEN;
		avail -= FRAME_HDR_LEN;
		if (avail >= h.len) {
			memcpy(f->f_data, ch->ch_rbuf + ch->ch_rpos, h.len);
			ch->ch_rpos += h.len;
			f->f_off = h.len;
			if (channel_dispatch(ch, &h, f) != 0)
				return -1;
			continue;
		}
		/* Partial payload: read the rest directly into the frame. */
		memcpy(f->f_data, ch->ch_rbuf + ch->ch_rpos, avail);
		f->f_off = avail;
		ch->ch_rpos = ch->ch_rlen = 0;
		ch->ch_rframe = f;
		return 0;
	}
}

/*
 * Handle one complete incoming frame (stolen).  h may be NULL, in which
 * case it is rebuilt from the frame.  Returns 0, or -1 when the channel
 * was closed.
 */
static int
channel_dispatch(struct channel *ch, const struct frame_hdr *h,
    struct frame *f)
{
	struct frame_hdr	 hh;
	struct session		*se;
	int			 r;

	if (h == NULL) {
		hh.type = f->f_type;
		hh.flags = f->f_flags;
		hh.stream = f->f_stream;
		hh.seq = f->f_seq;
		hh.len = f->f_len;
		h = &hh;
	}
	f->f_off = 0;
	if (ch->ch_worker != NULL) {
		/* A worker's channel: check, then hand to the main thread. */
		hh = *h;
		if (ch->ch_se->se_crc && channel_check_crc(&hh, f) != 0) {
			frame_free(f);
			channel_fail(ch, EC_UNREACHABLE, "a frame from peer "
			    "relay %s on channel %u failed its CRC-32C check "
			    "(data corrupted on the network)", ch->ch_peer,
			    ch->ch_index);
			return -1;
		}
		worker_received(ch, f);
		return 0;
	}
	if (ch->ch_state == CH_DRAINING) {
		frame_free(f);
		return 0;
	}
	if (ch->ch_state == CH_HANDSHAKE) {
		if (ch->ch_accepted)
			r = channel_hs_accepting(ch, h, f);
		else
			r = channel_hs_connecting(ch, h, f);
		frame_free(f);
		return ch->ch_dead ? -1 : r;
	}
	se = ch->ch_se;
	if (se == NULL || session_is_final(se)) {
		frame_free(f);
		return 0;
	}
	if (se->se_crc) {
		hh = *h;
		if (channel_check_crc(&hh, f) != 0) {
			frame_free(f);
			channel_fail(ch, EC_UNREACHABLE, "a frame from peer "
			    "relay %s on channel %u failed its CRC-32C check "
			    "(data corrupted on the network)", ch->ch_peer,
			    ch->ch_index);
			return -1;
		}
		h = &hh;
	}
	link_frame_recv(se, ch, h, f);
	return ch->ch_dead ? -1 : 0;
}

static void
channel_bind(struct channel *ch, struct session *se, unsigned int index)
{
	TAILQ_REMOVE(&pending, ch, ch_entry);
	npending--;
	ch->ch_se = se;
	ch->ch_index = index;
	se->se_ch[index] = ch;
	se->se_ch_seen |= UINT64_C(1) << index;
	se->se_channels_up++;
	evtimer_del(ch->ch_timer);
	channel_set_state(ch, CH_UP);
}

/* Accepting side: the features we offer and require in GREETING. */
static void
channel_greeting_auth(struct hs_msg *m)
{
	if (!auth_users_loaded())
		return;
	hs_add_feature(m, FEAT_SCRAM);
	if (g_tls != NULL) {
		hs_add_feature(m, FEAT_SCRAM_PLUS);
		hs_add_require(m, FEAT_SCRAM_PLUS);
	} else {
		hs_add_require(m, FEAT_SCRAM);
	}
}

/* The TLS exporter of this channel, or NULL in plaintext mode. */
static const uint8_t *
channel_exporter(struct channel *ch, uint8_t buf[TLS_EXPORTER_LEN])
{
	if (ch->ch_ssl == NULL || tls_exporter(ch->ch_ssl, buf) != 0)
		return NULL;
	return buf;
}

static void
channel_send_auth(struct channel *ch, const char *msg)
{
	struct hs_msg	 a;

	memset(&a, 0, sizeof(a));
	snprintf(a.auth, sizeof(a.auth), "%s", msg);
	a.present = 1u << HS_T_AUTH;
	channel_send_hs(ch, FRAME_AUTH, &a);
}

/*
 * Accepting side, after authentication (if any): bind a HELLO to its
 * session.  identity is the SCRAM user, else the certificate subject,
 * else empty; server_final is SCRAM's last message or NULL.
 */
static int
channel_accept_hello(struct channel *ch, const struct hs_msg *m,
    const char *identity, const char *server_final)
{
	struct hs_msg	 w;
	struct session	*se;
	char		 esc[SESSION_ID_MAX * 4 + 1], desc[1200], iesc[300];
	unsigned int	 i;

	str_escape(esc, sizeof(esc), m->session);
	se = session_find(m->session);
	if (se == NULL || se->se_role != ROLE_DESTINATION ||
	    se->se_state != SE_WAITING || se->se_has_token) {
		snprintf(desc, sizeof(desc), "no session '%s' is waiting for a "
		    "link on this relay", esc);
		channel_reject(ch, EC_REJECTED, desc);
		log_warnx("channel %s: %s", ch->ch_peer, desc);
		return -1;
	}
	if (se->se_peer_identity[0] != '\0' &&
	    strcmp(se->se_peer_identity, identity) != 0) {
		str_escape(iesc, sizeof(iesc), identity);
		snprintf(desc, sizeof(desc), "session '%s' accepts only peer "
		    "identity '%s', not '%s'", esc, se->se_peer_identity,
		    identity[0] ? iesc : "(unauthenticated)");
		channel_reject(ch, EC_AUTH, desc);
		log_warnx("channel %s: %s", ch->ch_peer, desc);
		return -1;
	}
	if (m->channels < 1 || m->channels > PROTO_MAX_CHANNELS ||
	    m->window < 65536 || m->window > (1u << 30)) {
		channel_reject(ch, EC_INVALID, "channel count or window out of "
		    "range");
		return -1;
	}
	if (random_bytes(se->se_token, LINK_TOKEN_LEN) != 0) {
		channel_reject(ch, EC_INTERNAL, "no randomness");
		return -1;
	}
	memset(&w, 0, sizeof(w));
	se->se_has_token = 1;
	se->se_nchannels = m->channels;
	se->se_version = m->version;
	se->se_peer_window = m->window;
	se->se_nfeatures = 0;
	for (i = 0; i < m->nfeatures; i++) {
		if (feature_is_supported(m->features[i]) &&
		    se->se_nfeatures < PROTO_MAX_FEATURES) {
			snprintf(se->se_features[se->se_nfeatures++],
			    PROTO_FEATURE_MAX + 1, "%s", m->features[i]);
			hs_add_feature(&w, m->features[i]);
		}
	}
	se->se_heartbeat = hs_has_feature(m, FEAT_HEARTBEAT);
	se->se_resume = hs_has_feature(m, FEAT_RESUME) &&
	    feature_is_supported(FEAT_RESUME);
	se->se_crc = hs_has_feature(m, FEAT_CRC) &&
	    feature_is_supported(FEAT_CRC);
	snprintf(se->se_peer, sizeof(se->se_peer), "%s", ch->ch_peer);
	snprintf(se->se_identity, sizeof(se->se_identity), "%s", identity);
	memcpy(w.token, se->se_token, LINK_TOKEN_LEN);
	w.version = se->se_version;
	w.channels = (uint16_t)se->se_nchannels;
	w.present = 1u << HS_T_TOKEN | 1u << HS_T_VERSION |
	    1u << HS_T_CHANNELS;
	if (server_final != NULL) {
		snprintf(w.auth, sizeof(w.auth), "%s", server_final);
		w.present |= 1u << HS_T_AUTH;
	}
	channel_send_hs(ch, FRAME_WELCOME, &w);
	channel_bind(ch, se, 0);
	g_stats.st_hs_accepted++;
	iesc[0] = '\0';
	str_escape(iesc, sizeof(iesc), identity);
	log_info("session %s: link from %s accepted (protocol %u, %u "
	    "channel%s, peer %s)", se->se_id, ch->ch_peer, se->se_version,
	    se->se_nchannels, se->se_nchannels == 1 ? "" : "s",
	    identity[0] ? iesc : "not authenticated");
	if (se->se_channels_up == se->se_nchannels)
		session_link_up(se);
	return 0;
}

/* Accepting side: HELLO (new link), AUTH (SCRAM) or JOIN (extra channel). */
static int
channel_hs_accepting(struct channel *ch, const struct frame_hdr *h,
    struct frame *f)
{
	struct hs_msg	 m, w;
	struct session	*se;
	char		 desc[512], out[SCRAM_MAX_MSG + 1];
	const char	*errstr = NULL;
	uint8_t		 exp[TLS_EXPORTER_LEN], proof[32];
	unsigned int	 i;
	int		 r;

	if (hs_decode(f->f_data, f->f_len, &m) != 0) {
		channel_reject(ch, EC_GENERIC, "malformed handshake message");
		log_warnx("channel %s: malformed %s", ch->ch_peer,
		    frame_type_name(h->type));
		return -1;
	}
	if (ch->ch_hs_step == 1) {
		/* SCRAM client-final for the HELLO kept in ch_hello. */
		if (h->type != FRAME_AUTH || !(m.present & 1u << HS_T_AUTH)) {
			channel_reject(ch, EC_AUTH, "expected the SCRAM "
			    "client-final message");
			return -1;
		}
		r = scram_server_final(ch->ch_scram_srv, m.auth, out,
		    sizeof(out), &errstr);
		if (r != 0) {
			channel_reject(ch, EC_AUTH, "authentication failed");
			log_warnx("channel %s: authentication failed: %s",
			    ch->ch_peer, errstr ? errstr : "invalid proof");
			return -1;
		}
		snprintf(ch->ch_identity, sizeof(ch->ch_identity), "%s",
		    scram_server_user(ch->ch_scram_srv));
		return channel_accept_hello(ch, ch->ch_hello, ch->ch_identity,
		    out);
	}
	if (h->type != FRAME_HELLO && h->type != FRAME_JOIN) {
		channel_fail(ch, EC_GENERIC, "protocol error from %s: "
		    "expected HELLO or JOIN, got %s", ch->ch_peer,
		    frame_type_name(h->type));
		return -1;
	}
	for (i = 0; i < m.nrequire; i++) {
		if (!feature_is_supported(m.require[i])) {
			snprintf(desc, sizeof(desc), "this relay does not "
			    "support the required feature '%s'", m.require[i]);
			channel_reject(ch, EC_VERSION, desc);
			log_warnx("channel %s: %s", ch->ch_peer, desc);
			return -1;
		}
	}
	if (g_conf.insecure_plaintext && !hs_has_feature(&m, FEAT_PLAINTEXT)) {
		channel_reject(ch, EC_TLS, "this relay only accepts plaintext "
		    "links (--insecure-plaintext)");
		return -1;
	}
	if (h->type == FRAME_JOIN) {
		char	 ended[SESSION_ID_MAX + sizeof(se->se_errdesc) + 64];
		int	 valid = 0, rejoin;

		se = m.present & 1u << HS_T_SESSION ? session_find(m.session) :
		    NULL;
		if (se != NULL && se->se_has_token &&
		    se->se_role == ROLE_DESTINATION && m.has_token &&
		    (m.present & 1u << HS_T_CHANNEL)) {
			auth_join_proof(se->se_token, channel_exporter(ch, exp),
			    m.channel, proof);
			valid = ct_memeq(proof, m.token, sizeof(proof));
		}
		/*
		 * A proven member of a link that has ended learns why, so
		 * that a source relay re-establishing a channel fails with
		 * the real reason rather than "unknown token".
		 */
		if (valid && session_is_final(se)) {
			snprintf(ended, sizeof(ended), "session '%s' has ended "
			    "on this relay (%s)%s%s", se->se_id,
			    session_state_name(se->se_state),
			    se->se_errdesc[0] ? ": " : "", se->se_errdesc);
			channel_reject(ch, EC_REJECTED, ended);
			log_info("channel %s: JOIN for ended session %s "
			    "refused", ch->ch_peer, se->se_id);
			return -1;
		}
		/* A channel of an established link may be re-established. */
		rejoin = valid && se->se_resume && se->se_link_was_up;
		if (!valid || m.channel >= se->se_nchannels ||
		    (m.channel == 0 && !rejoin) ||
		    (se->se_ch[m.channel] != NULL && !rejoin)) {
			channel_reject(ch, EC_REJECTED, "unknown link token or "
			    "channel");
			log_warnx("channel %s: JOIN refused (unknown link token "
			    "or channel)", ch->ch_peer);
			return -1;
		}
		if (rejoin && se->se_ch[m.channel] != NULL) {
			/* The source saw this channel die before we did. */
			link_channel_lost(se->se_ch[m.channel], EC_UNREACHABLE,
			    "replaced by a new connection from the source "
			    "relay");
			if (session_is_final(se) || se->se_ch[m.channel] != NULL) {
				channel_reject(ch, EC_REJECTED, "the session "
				    "cannot take this channel");
				return -1;
			}
		}
		memset(&w, 0, sizeof(w));
		w.channel = m.channel;
		w.present = 1u << HS_T_CHANNEL;
		channel_send_hs(ch, FRAME_WELCOME, &w);
		channel_bind(ch, se, m.channel);
		g_stats.st_hs_accepted++;
		log_debug("session %s: channel #%u %s from %s", se->se_id,
		    m.channel, rejoin ? "re-established" : "joined",
		    ch->ch_peer);
		if (rejoin)
			link_channel_restored(se, ch);
		else if (se->se_channels_up == se->se_nchannels)
			session_link_up(se);
		return 0;
	}
	if (!(m.present & 1u << HS_T_VERSION) ||
	    m.version < PROTO_VERSION_MIN || m.version > PROTO_VERSION_MAX) {
		snprintf(desc, sizeof(desc), "protocol version %u is not "
		    "supported (supported: %d-%d)", m.version,
		    PROTO_VERSION_MIN, PROTO_VERSION_MAX);
		channel_reject(ch, EC_VERSION, desc);
		return -1;
	}
	if (!auth_users_loaded())
		return channel_accept_hello(ch, &m, ch->ch_ssl != NULL ?
		    ch->ch_identity : "", NULL);
	/* Authenticate before revealing anything about sessions. */
	if (!(m.present & 1u << HS_T_AUTH)) {
		channel_reject(ch, EC_AUTH, "this relay requires SCRAM-SHA-256 "
		    "authentication (configure --auth-secret on the source "
		    "relay)");
		log_warnx("channel %s: HELLO without authentication refused",
		    ch->ch_peer);
		return -1;
	}
	ch->ch_scram_srv = calloc(1, sizeof(*ch->ch_scram_srv));
	ch->ch_hello = malloc(sizeof(*ch->ch_hello));
	if (ch->ch_scram_srv == NULL || ch->ch_hello == NULL ||
	    scram_server_init(ch->ch_scram_srv, channel_exporter(ch, exp),
	    auth_mock_key(), NULL) != 0) {
		channel_reject(ch, EC_INTERNAL, "cannot start authentication");
		return -1;
	}
	*ch->ch_hello = m;
	r = scram_server_first(ch->ch_scram_srv, m.auth, auth_lookup, NULL,
	    out, sizeof(out), &errstr);
	if (r != 0) {
		channel_reject(ch, EC_AUTH, "authentication failed");
		log_warnx("channel %s: authentication failed: %s", ch->ch_peer,
		    errstr ? errstr : "malformed message");
		return -1;
	}
	channel_send_auth(ch, out);
	ch->ch_hs_step = 1;
	return 0;
}

/* Connecting side: GREETING, then AUTH (SCRAM), WELCOME or REJECT. */
static int
channel_hs_connecting(struct channel *ch, const struct frame_hdr *h,
    struct frame *f)
{
	struct session	*se = ch->ch_se;
	struct hs_msg	 m, o;
	char		 cls[32], desc[PROTO_ERRDESC_MAX * 4 + 1];
	char		 out[SCRAM_MAX_MSG + 1];
	const char	*errstr = NULL;
	uint8_t		 exp[TLS_EXPORTER_LEN];
	unsigned int	 i;
	uint16_t	 v;
	int		 r, scram = 0;

	if (hs_decode(f->f_data, f->f_len, &m) != 0) {
		channel_fail(ch, EC_GENERIC, "protocol error from peer relay "
		    "%s: malformed %s", ch->ch_peer, frame_type_name(h->type));
		return -1;
	}
	if (h->type == FRAME_REJECT || h->type == FRAME_ABORT) {
		str_escape(desc, sizeof(desc), m.errdesc);
		snprintf(cls, sizeof(cls), "%s", m.errclass);
		if (strcmp(cls, EC_REJECTED) != 0 && strcmp(cls, EC_VERSION) &&
		    strcmp(cls, EC_AUTH) && strcmp(cls, EC_TLS) &&
		    strcmp(cls, EC_INVALID) && strcmp(cls, EC_TIMEOUT))
			snprintf(cls, sizeof(cls), "%s", EC_REJECTED);
		channel_fail(ch, cls, "peer relay %s refused: %s", ch->ch_peer,
		    desc);
		return -1;
	}
	if (ch->ch_hs_step == 0) {
		if (h->type != FRAME_GREETING) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: expected GREETING, got %s", ch->ch_peer,
			    frame_type_name(h->type));
			return -1;
		}
		if (hs_select_version(PROTO_VERSION_MIN, PROTO_VERSION_MAX,
		    m.version_min, m.version_max, &v) != 0) {
			channel_fail(ch, EC_VERSION, "peer relay %s speaks "
			    "protocol versions %u-%u, this relay %d-%d",
			    ch->ch_peer, m.version_min, m.version_max,
			    PROTO_VERSION_MIN, PROTO_VERSION_MAX);
			return -1;
		}
		for (i = 0; i < m.nrequire; i++) {
			if (feature_is_supported(m.require[i]))
				continue;
			str_escape(desc, sizeof(desc), m.require[i]);
			if (strcmp(m.require[i], FEAT_PLAINTEXT) == 0)
				channel_fail(ch, EC_TLS, "peer relay %s runs "
				    "with --insecure-plaintext, this relay "
				    "requires TLS", ch->ch_peer);
			else if (strncmp(m.require[i], FEAT_SCRAM,
			    strlen(FEAT_SCRAM)) == 0)
				channel_fail(ch, EC_AUTH, "peer relay %s "
				    "requires %s authentication; configure "
				    "--auth-secret on this relay", ch->ch_peer,
				    desc);
			else
				channel_fail(ch, EC_VERSION, "peer relay %s "
				    "requires feature '%s', which this relay "
				    "does not support", ch->ch_peer, desc);
			return -1;
		}
		if (g_conf.insecure_plaintext &&
		    !hs_has_feature(&m, FEAT_PLAINTEXT)) {
			channel_fail(ch, EC_TLS, "peer relay %s does not accept "
			    "plaintext links (it requires TLS)", ch->ch_peer);
			return -1;
		}
		if (se->se_nchannels > 1 &&
		    !hs_has_feature(&m, FEAT_MULTICHANNEL)) {
			channel_fail(ch, EC_VERSION, "peer relay %s does not "
			    "support multi-channel links; use channels=1",
			    ch->ch_peer);
			return -1;
		}
		if (m.window < 65536 || m.window > (1u << 30)) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: window %u out of range", ch->ch_peer,
			    m.window);
			return -1;
		}
		memset(&o, 0, sizeof(o));
		if (ch->ch_index > 0 || ch->ch_rejoin) {
			if (g_conf.insecure_plaintext)
				hs_add_feature(&o, FEAT_PLAINTEXT);
			snprintf(o.session, sizeof(o.session), "%s", se->se_id);
			auth_join_proof(se->se_token, channel_exporter(ch, exp),
			    ch->ch_index, o.token);
			o.channel = (uint16_t)ch->ch_index;
			o.present = 1u << HS_T_TOKEN | 1u << HS_T_CHANNEL |
			    1u << HS_T_SESSION;
			channel_send_hs(ch, FRAME_JOIN, &o);
			ch->ch_hs_step = 2;
			return 0;
		}
		se->se_version = v;
		se->se_peer_window = m.window;
		se->se_nfeatures = 0;
		if (se->se_nchannels > 1 || hs_has_feature(&m,
		    FEAT_MULTICHANNEL))
			hs_add_feature(&o, FEAT_MULTICHANNEL);
		if (g_conf.insecure_plaintext)
			hs_add_feature(&o, FEAT_PLAINTEXT);
		if (g_tls != NULL && hs_has_feature(&m, FEAT_TLS))
			hs_add_feature(&o, FEAT_TLS);
		if (hs_has_feature(&m, FEAT_HEARTBEAT)) {
			hs_add_feature(&o, FEAT_HEARTBEAT);
			se->se_heartbeat = 1;
		}
		if (hs_has_feature(&m, FEAT_RESUME) &&
		    g_conf.reconnect_timeout_ms > 0) {
			hs_add_feature(&o, FEAT_RESUME);
			se->se_resume = 1;
		}
		if (hs_has_feature(&m, FEAT_CRC) && g_conf.insecure_plaintext) {
			hs_add_feature(&o, FEAT_CRC);
			se->se_crc = 1;
		}
		for (i = 0; i < m.nrequire; i++)
			if (strncmp(m.require[i], FEAT_SCRAM,
			    strlen(FEAT_SCRAM)) == 0)
				scram = 1;
		if (scram) {
			hs_add_feature(&o, g_tls != NULL ? FEAT_SCRAM_PLUS :
			    FEAT_SCRAM);
			ch->ch_scram_cli = calloc(1, sizeof(*ch->ch_scram_cli));
			if (ch->ch_scram_cli == NULL ||
			    scram_client_init(ch->ch_scram_cli,
			    auth_secret_user(), auth_secret_password(),
			    channel_exporter(ch, exp), NULL) != 0 ||
			    scram_client_first(ch->ch_scram_cli, o.auth,
			    sizeof(o.auth)) != 0) {
				channel_fail(ch, EC_AUTH, "cannot start "
				    "authentication as '%s' (check "
				    "--auth-secret)", auth_secret_user());
				return -1;
			}
			o.present |= 1u << HS_T_AUTH;
		}
		for (i = 0; i < o.nfeatures; i++)
			snprintf(se->se_features[se->se_nfeatures++],
			    PROTO_FEATURE_MAX + 1, "%s", o.features[i]);
		if (se->se_nchannels > 1)
			hs_add_require(&o, FEAT_MULTICHANNEL);
		o.version = v;
		snprintf(o.session, sizeof(o.session), "%s", se->se_id);
		o.channels = (uint16_t)se->se_nchannels;
		o.window = STREAM_WINDOW;
		snprintf(o.software, sizeof(o.software), "migrelay %d.%d.%d",
		    MIGRELAY_VERSION_MAJOR, MIGRELAY_VERSION_MINOR,
		    MIGRELAY_VERSION_MICRO);
		o.present |= 1u << HS_T_VERSION | 1u << HS_T_SESSION |
		    1u << HS_T_CHANNELS | 1u << HS_T_WINDOW |
		    1u << HS_T_SOFTWARE;
		channel_send_hs(ch, FRAME_HELLO, &o);
		ch->ch_hs_step = 2;
		return 0;
	}
	if (h->type == FRAME_AUTH && ch->ch_index == 0 &&
	    ch->ch_scram_cli != NULL && ch->ch_hs_step == 2 &&
	    (m.present & 1u << HS_T_AUTH)) {
		r = scram_client_final(ch->ch_scram_cli, m.auth, out,
		    sizeof(out), &errstr);
		if (r != 0) {
			channel_fail(ch, EC_AUTH, "authentication with peer "
			    "relay %s failed: %s", ch->ch_peer, errstr ?
			    errstr : (r == -ERANGE ? "iteration count out of "
			    "range" : "malformed server message"));
			return -1;
		}
		channel_send_auth(ch, out);
		ch->ch_hs_step = 3;
		return 0;
	}
	if (h->type != FRAME_WELCOME) {
		channel_fail(ch, EC_GENERIC, "protocol error from peer relay "
		    "%s: unexpected %s", ch->ch_peer, frame_type_name(h->type));
		return -1;
	}
	if (ch->ch_rejoin) {
		if (m.channel != ch->ch_index) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: WELCOME for the wrong channel",
			    ch->ch_peer);
			return -1;
		}
		evtimer_del(ch->ch_timer);
		channel_set_state(ch, CH_UP);
		se->se_channels_up++;
		link_channel_restored(se, ch);
		return 0;
	}
	if (ch->ch_index == 0) {
		if (ch->ch_scram_cli != NULL && (ch->ch_hs_step != 3 ||
		    !(m.present & 1u << HS_T_AUTH) ||
		    scram_client_verify(ch->ch_scram_cli, m.auth,
		    &errstr) != 0)) {
			channel_fail(ch, EC_AUTH, "peer relay %s did not prove "
			    "that it knows this relay's verifier (wrong "
			    "verifier, or a man in the middle)", ch->ch_peer);
			return -1;
		}
		if (!m.has_token || m.version != se->se_version ||
		    m.channels != se->se_nchannels) {
			channel_fail(ch, EC_GENERIC, "protocol error from peer "
			    "relay %s: WELCOME does not match HELLO",
			    ch->ch_peer);
			return -1;
		}
		memcpy(se->se_token, m.token, LINK_TOKEN_LEN);
		se->se_has_token = 1;
	} else if (m.channel != ch->ch_index) {
		channel_fail(ch, EC_GENERIC, "protocol error from peer relay "
		    "%s: WELCOME for the wrong channel", ch->ch_peer);
		return -1;
	}
	channel_set_state(ch, CH_UP);
	se->se_channels_up++;
	log_debug("session %s: channel #%u up", se->se_id, ch->ch_index);
	if (ch->ch_index == 0) {
		log_info("session %s: link to %s negotiated (protocol %u, %u "
		    "channel%s%s)", se->se_id, ch->ch_peer, se->se_version,
		    se->se_nchannels, se->se_nchannels == 1 ? "" : "s",
		    ch->ch_scram_cli != NULL ? ", authenticated" : "");
		se->se_ch_next = 1;
	}
	/*
	 * Open the other channels a few at a time, so a wide link never
	 * looks like a flood to the peer's per-address handshake limit.
	 */
	while (se->se_ch_next < se->se_nchannels &&
	    se->se_ch_next - se->se_channels_up < CH_CONNECT_WAVE) {
		i = se->se_ch_next++;
		r = channel_connect(se, i);
		if (r != 0) {
			session_fail(se, SE_FAILED, EC_UNREACHABLE, "cannot "
			    "connect channel %u to peer relay %s: %s", i,
			    se->se_peer, sock_strerror(-r));
			return -1;
		}
	}
	if (se->se_channels_up == se->se_nchannels)
		session_link_up(se);
	return 0;
}

/*
 * A channel-level failure.  A bound channel fails its session (which
 * closes every channel); a pending one is just closed.
 */
static void
channel_fail(struct channel *ch, const char *class, const char *fmt, ...)
{
	char		 msg[2048];
	va_list		 ap;
	struct session	*se = ch->ch_se;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (worker_in_thread()) {
		/* The main thread decides, when it hears of it. */
		worker_fail(ch, class, msg);
		return;
	}
	if (se != NULL && !session_is_final(se) && ch->ch_rejoin &&
	    ch->ch_state != CH_UP && !ch->ch_dead) {
		/* A re-dial that did not make it: refusals are final. */
		link_rejoin_failed(ch, class, msg,
		    strcmp(class, EC_REJECTED) == 0 ||
		    strcmp(class, EC_AUTH) == 0 ||
		    strcmp(class, EC_VERSION) == 0 ||
		    strcmp(class, EC_INVALID) == 0);
		return;
	}
	if (se != NULL && !session_is_final(se) && ch->ch_state == CH_UP &&
	    !ch->ch_dead && link_channel_lost(ch, class, msg))
		return;
	if (se != NULL && !session_is_final(se)) {
		session_fail(se, SE_FAILED, class, "%s", msg);
		/* session_fail drains or closes ch with the rest of the link. */
		if (!ch->ch_dead && ch->ch_state != CH_DRAINING)
			channel_close(ch, msg);
		return;
	}
	if (se == NULL)
		log_ctx(LOG_LVL_WARN, NULL, ch->ch_peer, -1, class,
		    "channel %s: %s", ch->ch_peer, msg);
	channel_close(ch, msg);
}

/*
 * Heartbeat tick of an established channel: a PING when we have sent
 * nothing for a while (so an idle link is never mistaken for a dead one),
 * and the link timeout when the peer, which heartbeats too, has sent
 * nothing at all for link_timeout_ms.
 */
static void
channel_hb_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct channel	*ch = arg;
	struct session	*se = ch->ch_se;
	struct frame	*f;
	uint64_t	 silent;

	if (ch->ch_state != CH_UP || se == NULL)
		return;
	silent = mono_ms_since(&ch->ch_last_recv);
	if (se->se_heartbeat && silent >= g_conf.link_timeout_ms) {
		channel_fail(ch, EC_UNREACHABLE, "peer relay %s silent for %llu "
		    "ms on channel %u (link timeout %u ms)", ch->ch_peer,
		    (unsigned long long)silent, ch->ch_index,
		    g_conf.link_timeout_ms);
		return;
	}
	if (se->se_heartbeat && ch->ch_outq_bytes == 0 &&
	    mono_ms_since(&ch->ch_last_send) >= HEARTBEAT_MS &&
	    (f = frame_new(FRAME_PING, 0, 0, 0, 0)) != NULL)
		channel_send(ch, f, 1);
}

/*
 * Close after the output queue is flushed (or DRAIN_TIMEOUT_MS).  With
 * linger, wait for the peer to close first: the destination relay does
 * this after a completed session, so the source never sees a channel end
 * before it has read the CLOSE that completes its side.
 */
void
channel_drain_close(struct channel *ch, int linger)
{
	struct timeval	 tv;

	if (ch->ch_dead)
		return;
	if (ch->ch_worker != NULL || ch->ch_attaching) {
		/* Draining is the main thread's: take the channel back. */
		worker_detach(ch);
		channel_recount(ch);
		event_add(ch->ch_rev, NULL);
	}
	ch->ch_linger = linger && ch->ch_state == CH_UP;
	if (ch->ch_state == CH_CONNECTING || ch->ch_state == CH_TLS ||
	    (!ch->ch_linger && TAILQ_EMPTY(&ch->ch_urgent) &&
	    TAILQ_EMPTY(&ch->ch_bulk) && (ch->ch_ssl == NULL ||
	    tls_output_pending(ch->ch_ssl) == 0))) {
		channel_close(ch, NULL);
		return;
	}
	channel_set_state(ch, CH_DRAINING);
	/* Unsent bulk data is moot now; keep only the urgent frames. */
	while (!TAILQ_EMPTY(&ch->ch_bulk)) {
		struct frame *f = TAILQ_LAST(&ch->ch_bulk, frameq);

		if (f == TAILQ_FIRST(&ch->ch_bulk) && f->f_off > 0)
			break;
		TAILQ_REMOVE(&ch->ch_bulk, f, f_entry);
		ch->ch_outq_bytes -= FRAME_HDR_LEN + f->f_len + f->f_tl -
		    f->f_off;
		channel_release(f);
	}
	ms_to_tv(DRAIN_TIMEOUT_MS, &tv);
	evtimer_add(ch->ch_timer, &tv);
	if (!event_pending(ch->ch_wev, EV_WRITE, NULL))
		channel_flush(ch);
}

/* The one close path.  reason may be NULL (normal end). */
void
channel_close(struct channel *ch, const char *reason)
{
	struct session	*se = ch->ch_se;

	if (ch->ch_dead)
		return;
	worker_detach(ch);
	ch->ch_dead = 1;
	if (se == NULL) {
		TAILQ_REMOVE(&pending, ch, ch_entry);
		npending--;
	} else if (ch->ch_index < PROTO_MAX_CHANNELS &&
	    se->se_ch[ch->ch_index] == ch) {
		se->se_ch[ch->ch_index] = NULL;
		se->se_ch_sent[ch->ch_index] += ch->ch_bytes_sent;
		se->se_ch_recv[ch->ch_index] += ch->ch_bytes_recv;
	}
	log_debug("channel %s #%u closed (sent %llu, received %llu bytes)%s%s",
	    ch->ch_peer, ch->ch_index, (unsigned long long)ch->ch_bytes_sent,
	    (unsigned long long)ch->ch_bytes_recv, reason ? ": " : "",
	    reason ? reason : "");
	if (ch->ch_state != CH_CLOSED)
		ch->ch_state = CH_CLOSED;
	event_del(ch->ch_rev);
	event_del(ch->ch_wev);
	evtimer_del(ch->ch_timer);
	event_del(ch->ch_hbev);
	if (ch->ch_ssl != NULL) {
		tls_close(ch->ch_ssl);
		ch->ch_ssl = NULL;
	}
	close(ch->ch_fd);
	ch->ch_fd = -1;
	free(ch->ch_wbuf);
	ch->ch_wbuf = NULL;
	if (ch->ch_scram_srv != NULL) {
		scram_server_clear(ch->ch_scram_srv);
		free(ch->ch_scram_srv);
		ch->ch_scram_srv = NULL;
	}
	if (ch->ch_scram_cli != NULL) {
		scram_client_clear(ch->ch_scram_cli);
		free(ch->ch_scram_cli);
		ch->ch_scram_cli = NULL;
	}
	free(ch->ch_hello);
	ch->ch_hello = NULL;
	frameq_free(&ch->ch_urgent);
	frameq_free(&ch->ch_bulk);
	if (ch->ch_rframe != NULL) {
		frame_free(ch->ch_rframe);
		ch->ch_rframe = NULL;
	}
	ch->ch_se = NULL;
	TAILQ_INSERT_TAIL(&reaped, ch, ch_entry);
	event_active(reap_ev, 0, 0);
}

/* Output bytes still queued, after a worker gave the channel back. */
static void
channel_recount(struct channel *ch)
{
	struct frame	*f;

	ch->ch_outq_bytes = 0;
	TAILQ_FOREACH(f, &ch->ch_urgent, f_entry)
		ch->ch_outq_bytes += frame_wire_len(f) - f->f_off;
	TAILQ_FOREACH(f, &ch->ch_bulk, f_entry)
		ch->ch_outq_bytes += frame_wire_len(f) - f->f_off;
}

/*
 * Main thread: what the worker of ch reports.  Written frames are
 * released here, where reference counts live; the counters and times are
 * the main thread's; received frames (CRC checked already) are handled in
 * order, as if read here; an error comes last, as it came after them.
 * in is NULL when the channel is being taken back.
 */
void
channel_news(struct channel *ch, struct frameq *in, struct frameq *done,
    uint64_t sent, uint64_t recv, const char *errclass, const char *errmsg)
{
	struct frame_hdr	 h;
	struct frame		*f;
	size_t			 len;

	while ((f = TAILQ_FIRST(done)) != NULL) {
		TAILQ_REMOVE(done, f, f_entry);
		len = frame_wire_len(f);
		ch->ch_outq_bytes -= len < ch->ch_outq_bytes ? len :
		    ch->ch_outq_bytes;
		channel_release(f);
	}
	if (sent > 0) {
		mono_now(&ch->ch_last_send);
		ch->ch_bytes_sent += sent;
		if (ch->ch_se != NULL)
			ch->ch_se->se_link_sent += sent;
	}
	if (recv > 0) {
		mono_now(&ch->ch_last_recv);
		ch->ch_bytes_recv += recv;
		if (ch->ch_se != NULL)
			ch->ch_se->se_link_recv += recv;
	}
	if (in == NULL)
		return;
	while ((f = TAILQ_FIRST(in)) != NULL) {
		TAILQ_REMOVE(in, f, f_entry);
		if (ch->ch_dead || ch->ch_state != CH_UP || ch->ch_se == NULL ||
		    session_is_final(ch->ch_se)) {
			frame_free(f);
			continue;
		}
		h.type = f->f_type;
		h.flags = f->f_flags;
		h.stream = f->f_stream;
		h.seq = f->f_seq;
		h.len = f->f_len;
		link_frame_recv(ch->ch_se, ch, &h, f);
	}
	if (errclass != NULL && !ch->ch_dead)
		channel_fail(ch, errclass, "%s", errmsg);
}

/* Event callbacks of a channel handed to a worker (worker.c). */
void
channel_io_read(evutil_socket_t fd, short ev, void *arg)
{
	channel_read_cb(fd, ev, arg);
}

void
channel_io_write(evutil_socket_t fd, short ev, void *arg)
{
	channel_write_cb(fd, ev, arg);
}

static void
channel_reap_cb(evutil_socket_t fd, short ev, void *arg)
{
	channel_reap();
}

void
channel_reap(void)
{
	struct channel	*ch;

	while ((ch = TAILQ_FIRST(&reaped)) != NULL) {
		TAILQ_REMOVE(&reaped, ch, ch_entry);
		event_free(ch->ch_rev);
		event_free(ch->ch_wev);
		event_free(ch->ch_timer);
		event_free(ch->ch_hbev);
		free(ch->ch_rbuf);
		free(ch);
		mem_trim_soon();
	}
}
