/*
 * migrelayd.h - table of contents of the daemon: limits, core structures
 * and the functions each file exports.
 *
 * Threads: the main thread runs everything on the main event base g_base:
 * control, handshakes, sessions, streams, the link logic.  With
 * data-threads > 0, an established channel (CH_UP) is handed to a worker
 * thread (worker.c), which then alone does its socket I/O, TLS, framing and
 * CRC; frames cross between the threads through locked queues (ch_xq
 * towards the worker, ch_nin/ch_ndone back), and the main thread takes the
 * channel back before it drains or closes it.  Objects reachable from
 * callbacks (channels, streams) are never freed inside their own
 * callbacks: closing marks them dead and hands them to the reaper, a
 * deferred event that frees them once the current callback has returned.
 * Sessions live until session-remove, which never runs inside a data-path
 * callback.
 */
#ifndef MIGRELAYD_H
#define MIGRELAYD_H

#include <sys/queue.h>
#include <sys/types.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <json-c/json.h>

#include "proto.h"

/* Limits and tunables. */
#define MAX_SESSIONS		256
#define MAX_STREAMS		1024	/* QEMU connections per session */
#define MAX_PENDING_CHANNELS	256	/* accepted, not yet in a session */
#define MAX_PENDING_PER_ADDR	32	/* ... from one source address */
#define CH_CONNECT_WAVE		8	/* channels a source opens at once */
#define MAX_CTL_CLIENTS		64
#define MAX_LISTENERS		8
#define HANDSHAKE_TIMEOUT_MS	10000
#define CONNECT_TIMEOUT_MS	10000
#define OPEN_IDLE_MS		50	/* silent QEMU connection: OPEN_NOW after */
#define HEARTBEAT_MS		1000	/* PING on a channel idle this long */
#define LINK_TIMEOUT_MS		10000	/* a channel silent this long is dead */
#define PROGRESS_TIMEOUT_MS	30000	/* pending data, nothing moves: fail */
#define RECONNECT_TIMEOUT_MS	30000	/* lost channels: grace to re-establish */
#define RECONNECT_MIN_MS	100	/* first re-dial delay, doubled ... */
#define RECONNECT_MAX_MS	2000	/* ... up to this */
#define DRAIN_STOP_MS		60000	/* SIGTERM: running migrations may finish */
#define DRAIN_TIMEOUT_MS	2000	/* flushing ABORT/CLOSE before close */
#define STREAM_WINDOW		(4u * 1024 * 1024)	/* bytes in flight per stream direction */
#define ACK_DELAY_MS		2	/* small deliveries: ACK within this */
#define STREAM_MIN_WINDOW	(512u * 1024)	/* always allowed, whatever the link cap */
#define LINK_INFLIGHT_CAP	(32u * 1024 * 1024)	/* bytes in flight per link direction */
#define READ_CHUNK		(256u * 1024)	/* largest DATA frame we build */
#define SMALL_FRAME		(16u * 1024)	/* DATA below this is urgent */
#define CH_RBUF_SIZE		(256u * 1024)
#define CH_RBUF_HS_SIZE		(8u * 1024)	/* before the channel is bound */
#define CH_IOV_MAX		64
#define CH_WBUF_SIZE		(16u * 1024)	/* TLS: small pieces, one record */
#define CH_TLS_SMALL		(4u * 1024)	/* ... pieces below this */
#define CH_TLS_BATCH		(256u * 1024)	/* TLS: plaintext per write batch */
#define CALLBACK_BUDGET		(2u * 1024 * 1024)	/* bytes per callback */
#define MAX_DATA_THREADS	16

#define MIGRELAY_VERSION_MAJOR	0
#define MIGRELAY_VERSION_MINOR	1
#define MIGRELAY_VERSION_MICRO	0

/* Features this implementation offers on the link (see migrelay-protocol(7)). */
#define FEAT_MULTICHANNEL	"multichannel"
#define FEAT_PLAINTEXT		"insecure-plaintext"
#define FEAT_TLS		"tls"
#define FEAT_SCRAM		"scram-sha-256"
#define FEAT_SCRAM_PLUS		"scram-sha-256-plus"
#define FEAT_HEARTBEAT		"heartbeat"
#define FEAT_RESUME		"resume"
#define FEAT_CRC		"crc32c"

/* Error classes of the control protocol. */
#define EC_GENERIC		"GenericError"
#define EC_INVALID		"InvalidArgument"
#define EC_NOTFOUND		"NotFound"
#define EC_EXISTS		"Exists"
#define EC_UNREACHABLE		"PeerUnreachable"
#define EC_AUTH			"AuthFailed"
#define EC_TLS			"TLSFailed"
#define EC_VERSION		"VersionMismatch"
#define EC_REJECTED		"PeerRejected"
#define EC_TIMEOUT		"Timeout"
#define EC_INTERNAL		"Internal"

struct session;
struct scram_verifier;
struct channel;
struct scram_server;
struct scram_client;
struct stream;
struct ctl_client;
struct worker;

/*
 * One frame buffer: header plus payload, in a queue.  Reference counted:
 * with "resume" a DATA frame sits in a channel's output queue and, until
 * the peer acknowledges it, in its stream's replay queue (f_rentry).
 */
struct frame {
	TAILQ_ENTRY(frame)	 f_entry;	/* channel queue, or inq/reorder */
	TAILQ_ENTRY(frame)	 f_rentry;	/* sender's replay queue */
	unsigned int		 f_refs;
	uint8_t			 f_queued;	/* in a channel output queue */
	uint8_t			 f_urgent;	/* ... the urgent one (ch_xq) */
	uint64_t		 f_chan;	/* ch_id it was last queued on */
	uint64_t		 f_end;		/* stream offset after it */
	uint8_t			 f_type;
	uint8_t			 f_flags;
	uint8_t			 f_raw;		/* no header: f_data only */
	uint8_t			 f_tl;		/* trailer bytes: 0 or CRC */
	uint8_t			 f_crc[FRAME_CRC_LEN];
	uint32_t		 f_stream;
	uint64_t		 f_seq;
	uint32_t		 f_len;		/* payload bytes */
	size_t			 f_off;		/* bytes of hdr+payload written */
	uint8_t			 f_hdr[FRAME_HDR_LEN];
	uint8_t			 f_data[];
};
TAILQ_HEAD(frameq, frame);

/* Session states (interface.md). */
enum se_state {
	SE_CONNECTING,
	SE_WAITING,
	SE_READY,
	SE_ACTIVE,
	SE_COMPLETED,
	SE_FAILED,
	SE_CANCELLED,
	_SE_STATE_MAX
};

enum se_role {
	ROLE_SOURCE,
	ROLE_DESTINATION
};

/* A relay-to-relay TCP connection. */
enum ch_state {
	CH_CONNECTING,		/* connecting side: TCP connect in progress */
	CH_TLS,			/* TLS handshake */
	CH_HANDSHAKE,		/* magic and handshake frames */
	CH_UP,			/* member of a link, carrying frames */
	CH_DRAINING,		/* flushing a last frame, then closed */
	CH_CLOSED,
	_CH_STATE_MAX
};

struct channel {
	TAILQ_ENTRY(channel)	 ch_entry;	/* pending list or reaper */
	struct session		*ch_se;		/* NULL until bound */
	uint64_t		 ch_id;		/* unique in this process */
	int			 ch_rejoin;	/* re-establishing a lost channel */
	enum ch_state		 ch_state;
	int			 ch_fd;
	int			 ch_accepted;	/* we are the accepting side */
	unsigned int		 ch_index;
	int			 ch_dead;
	int			 ch_hs_step;	/* handshake progress */
	int			 ch_linger;	/* draining: wait for the peer's EOF */
	char			 ch_peer[300];
	char			 ch_addr[64];	/* peer address without port */
	struct event		*ch_rev;
	struct event		*ch_wev;
	struct event		*ch_timer;
	struct event		*ch_hbev;	/* heartbeat tick (CH_UP) */
	struct timespec		 ch_last_recv;
	struct timespec		 ch_last_send;
	/* Input. */
	int			 ch_magic_seen;
	uint8_t			*ch_rbuf;
	size_t			 ch_rbuf_size;
	size_t			 ch_rlen;	/* valid bytes in ch_rbuf */
	size_t			 ch_rpos;	/* first unparsed byte */
	struct frame		*ch_rframe;	/* payload being read directly */
	/* Output. */
	struct frameq		 ch_urgent;
	struct frameq		 ch_bulk;
	size_t			 ch_outq_bytes;
	/* TLS (NULL in plaintext mode). */
	SSL			*ch_ssl;
	char			 ch_host[256];	/* dialled host, for SAN checks */
	const struct addrinfo	*ch_ai;		/* connecting: address tried */
	char			 ch_identity[256]; /* peer certificate subject */
	uint8_t			*ch_wbuf;	/* small pieces staged for SSL_write */
	int			 ch_read_wants_write;
	int			 ch_rerr;	/* TLS: end (1) or -errno held back */
	int			 ch_write_wants_read;
	uint64_t		 ch_since_rekey;
	uint64_t		 ch_rekey_bytes; /* g_conf's, copied: workers read it */
	/* Authentication (channel 0 only). */
	struct scram_server	*ch_scram_srv;
	struct scram_client	*ch_scram_cli;
	struct hs_msg		*ch_hello;	/* HELLO kept during SCRAM */
	uint64_t		 ch_bytes_sent;
	uint64_t		 ch_bytes_recv;
	/*
	 * Data-plane worker (worker.c).  While ch_worker is set, the worker
	 * owns the socket, TLS, input buffer and output queues; the main
	 * thread keeps ch_outq_bytes, the counters and the timestamps, and
	 * reaches the worker only through the fields marked "locked" (under
	 * the worker's mutex).
	 */
	struct worker		*ch_worker;
	int			 ch_attaching;	/* on the attach list (ch_entry) */
	int			 ch_wdead;	/* worker: I/O stopped on error */
	struct event		*ch_mrev;	/* main's events while attached */
	struct event		*ch_mwev;
	TAILQ_ENTRY(channel)	 ch_cmdentry;	/* locked: worker's to-do list */
	TAILQ_ENTRY(channel)	 ch_newsentry;	/* locked: worker's news list */
	TAILQ_ENTRY(channel)	 ch_pentry;	/* main: news being handled */
	unsigned int		 ch_wcmd;	/* locked: W_* requests */
	int			 ch_in_news;	/* locked */
	int			 ch_wtaken;	/* locked: worker let go */
	struct frameq		 ch_xq;		/* locked: frames to send */
	struct frameq		 ch_nin;	/* locked: frames received */
	struct frameq		 ch_ndone;	/* locked: frames written */
	uint64_t		 ch_nsent;	/* locked: bytes since last news */
	uint64_t		 ch_nrecv;
	char			 ch_nclass[32];	/* locked: the worker's error */
	char			 ch_nmsg[1024];
};

/* A QEMU connection carried by a session. */
enum st_state {
	ST_ANNOUNCED,		/* destination: known, leg not connected yet */
	ST_CONNECTING,		/* destination: connect() in progress */
	ST_OPEN,		/* QEMU-facing socket connected */
	ST_DONE,		/* both directions finished, socket closed */
	_ST_STATE_MAX
};

struct stream {
	TAILQ_ENTRY(stream)	 st_entry;
	struct session		*st_se;
	uint32_t		 st_id;
	enum st_state		 st_state;
	int			 st_fd;
	const struct addrinfo	*st_ai;		/* connecting: address tried */
	int			 st_announced;	/* destination: OPEN seen */
	int			 st_open_now;	/* destination: connect w/o data */
	int			 st_opened;	/* source: OPEN sent */
	uint8_t			 st_open_flags;	/* ... with these flags */
	struct event		*st_rev;
	struct event		*st_wev;
	struct event		*st_timer;
	int			 st_reading;	/* st_rev is added */
	/* Local QEMU -> peer. */
	uint64_t		 st_out_seq;
	uint64_t		 st_out_bytes;
	uint64_t		 st_out_acked;
	int			 st_out_eof;
	int			 st_out_fin_acked;
	struct frameq		 st_replay;	/* sent, not acknowledged (resume) */
	/* Peer -> local QEMU. */
	struct frameq		 st_inq;	/* in order, to write */
	struct frameq		 st_reorder;	/* ahead of st_in_seq, sorted */
	uint64_t		 st_in_seq;	/* next seq to queue */
	uint64_t		 st_in_bytes;	/* payload received */
	uint64_t		 st_in_delivered;
	uint64_t		 st_in_acked;	/* last ACK value sent */
	int			 st_in_fin;
	uint64_t		 st_in_fin_seq;
	int			 st_in_fin_done;
	int			 st_in_fin_acked; /* ACK_FIN sent */
	int			 st_ack_pending;
	/* What QEMU said, seen passing (stream.c, stream_watch). */
	uint8_t			 st_fwd_head[4];	/* first forward bytes */
	unsigned int		 st_fwd_headlen;
	uint8_t			 st_rev_tail[8];	/* last reverse bytes */
	uint64_t		 st_rev_bytes;
};
TAILQ_HEAD(streamq, stream);

struct session {
	TAILQ_ENTRY(session)	 se_entry;
	char			 se_id[SESSION_ID_MAX + 1];
	enum se_role		 se_role;
	enum se_state		 se_state;
	char			 se_peer[300];
	struct resolve		*se_lookup;	/* peer or QEMU host lookup */
	struct addrinfo		*se_addrs;	/* source: the peer relay's
						   addresses; destination:
						   the QEMU URI's (TCP) */
	struct addrinfo		*se_listen_addrs; /* source: tcp: listen URI */
	const struct addrinfo	*se_addr_ok;	/* of se_addrs, the one that
						   took (then tried first) */
	char			 se_endpoint[300];	/* the URI, canonical */
	struct mig_uri		 se_uri;
	char			 se_peer_identity[128];
	char			 se_identity[256];	/* authenticated peer */
	/* Link. */
	unsigned int		 se_nchannels;
	unsigned int		 se_channels_up;
	unsigned int		 se_ch_next;	/* source: next channel to open */
	struct channel		*se_ch[PROTO_MAX_CHANNELS];
	int			 se_has_token;
	uint8_t			 se_token[LINK_TOKEN_LEN];
	uint16_t		 se_version;
	unsigned int		 se_nfeatures;
	char			 se_features[PROTO_MAX_FEATURES][PROTO_FEATURE_MAX + 1];
	uint32_t		 se_peer_window;	/* we may send this per stream */
	unsigned int		 se_rr;		/* round-robin cursor */
	/* Streams. */
	struct streamq		 se_streams;
	unsigned int		 se_nstreams;
	uint32_t		 se_next_stream;	/* source: next id; dest: next to connect */
	uint64_t		 se_inflight;	/* unacked bytes we sent, all streams */
	int			 se_blocked;	/* some stream waits for link credit */
	/* QEMU listener (source). */
	int			 se_lfd;
	struct event		*se_lev;
	/* Completion. */
	int			 se_closing;	/* session_fail() under way */
	int			 se_close_sent;
	int			 se_close_rcvd;
	/* Counters. */
	uint64_t		 se_bytes_s2d;
	uint64_t		 se_bytes_d2s;
	uint64_t		 se_link_sent;
	uint64_t		 se_link_recv;
	struct timespec		 se_start;
	struct timespec		 se_end;
	char			 se_errclass[32];
	char			 se_errdesc[1024];
	/* A control client waiting for session-outgoing's answer. */
	struct ctl_client	*se_waiter;
	json_object		*se_waiter_id;
	struct event		*se_ackev;	/* delayed ACK timer */
	struct event		*se_timer;	/* connect/handshake deadline */
	struct event		*se_progev;	/* progress check, once a second */
	int			 se_heartbeat;	/* peer sends heartbeats */
	int			 se_crc;	/* frames carry a CRC-32C */
	/* Channel re-establishment ("resume", link.c). */
	int			 se_resume;	/* negotiated */
	int			 se_link_was_up; /* losses are resumable */
	int			 se_resuming;	/* some channel is lost */
	struct timespec		 se_lost_since;
	unsigned int		 se_redial_ms;	/* source: back-off */
	char			 se_lost_reason[512];
	uint64_t		 se_reconnects;
	uint32_t		 se_ch_reconnects[PROTO_MAX_CHANNELS];
	/* Per channel index: ever used, and bytes of its closed channels. */
	uint64_t		 se_ch_seen;
	uint64_t		 se_ch_sent[PROTO_MAX_CHANNELS];
	uint64_t		 se_ch_recv[PROTO_MAX_CHANNELS];
	struct event		*se_resumeev;	/* re-dial and grace timer */
	struct event		*se_replayev;	/* deferred replay */
	uint64_t		 se_progress;	/* bytes moved, last check */
	struct timespec		 se_last_progress;
};
TAILQ_HEAD(sessionq, session);

/* Daemon-wide configuration (from the command line and config file). */
struct conf {
	char			 control_path[108];
	unsigned int		 nlisten;
	char			 listen[MAX_LISTENERS][300];
	int			 no_listen;
	int			 insecure_plaintext;
	char			 tls_dir[4096];
	char			 auth_users[4096];
	char			 auth_secret[4096];
	int			 no_auth;
	unsigned int		 handshake_timeout_ms;
	unsigned int		 link_timeout_ms;
	uint64_t		 tls_rekey_bytes;
	unsigned int		 drain_timeout_ms;
	char			 metrics_listen[300];
	unsigned int		 progress_timeout_ms;
	unsigned int		 reconnect_timeout_ms;	/* 0: no resume */
	int			 data_threads;	/* 0: I/O on the main thread,
						   -1: auto */
	int			 log_level;
	char			 config_file[4096];
};

/* Daemon-wide counters (metrics.c). */
#define STATS_MAX_CLASSES	16
struct stats {
	uint64_t		 st_hs_accepted;	/* HELLO/JOIN accepted */
	uint64_t		 st_hs_rejected;	/* REJECT sent */
	uint64_t		 st_auth_failures;
	uint64_t		 st_conn_refused;	/* pending limits */
	uint64_t		 st_completed;
	uint64_t		 st_failed;
	uint64_t		 st_cancelled;
	uint64_t		 st_errors[STATS_MAX_CLASSES];
};

/* metrics.c */
extern struct stats	 g_stats;
void		 metrics_count_error(const char *class);
json_object	*metrics_json(void);
void		 metrics_open(void);
void		 metrics_close(void);

/* systemd.c */
void		 systemd_init(void);
void		 systemd_fini(void);
void		 systemd_notify(const char *);
void		 systemd_status(void);
int		 systemd_take_fds(const char *name, int *fds, int max);
int		 systemd_journal(int priority, const char *session,
		    const char *peer, int channel, const char *reason,
		    const char *msg);

/* util.c */
extern int			 g_draining;	/* SIGTERM: no new sessions */
extern struct event_base	*g_base;
extern struct conf		 g_conf;
extern struct tls_creds		*g_tls;		/* NULL: plaintext links */

/* auth.c */
int		 auth_init(void);
int		 auth_load_users(const char *path, char *err, size_t errlen);
int		 auth_load_secret(const char *path, char *err, size_t errlen);
int		 auth_reload(const char *users_path, const char *secret_path,
		    char *err, size_t errlen);
int		 auth_users_loaded(void);
int		 auth_secret_loaded(void);
const char	*auth_secret_user(void);
const char	*auth_secret_password(void);
int		 auth_lookup(void *arg, const char *user,
		    struct scram_verifier *ret);
const uint8_t	*auth_mock_key(void);
void		 auth_join_proof(const uint8_t *token, const uint8_t *exporter,
		    unsigned int channel, uint8_t out[32]);
int		 auth_make_verifier(const char *name);

/* config.c */
int		 daemon_reload(char *err, size_t errlen);
void		 conf_defaults(struct conf *);
int		 conf_set(struct conf *, const char *key, const char *val,
		    char *err, size_t errlen);
int		 conf_parse_line(struct conf *, const char *file, int lineno,
		    char *line, char *err, size_t errlen);
int		 conf_load(struct conf *, const char *path, int must_exist,
		    char *err, size_t errlen);
void		 conf_remember_file(const char *path, int must_exist);
int		 conf_remember_override(const char *key, const char *val,
		    char *err, size_t errlen);
int		 conf_build(struct conf *, char *err, size_t errlen);
int		 conf_validate(const struct conf *, char *err, size_t errlen);
int		 conf_load_credentials(const struct conf *, char *err,
		    size_t errlen);
void		 conf_print(const struct conf *, FILE *);

/* log.c */
enum { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
void		 log_init(int level);
void		 log_set_level(int level);
int		 log_level_parse(const char *);
const char	*log_level_name(int);
void		 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void		 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void		 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void		 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void		 fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void		 fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void		 str_escape(char *dst, size_t dstlen, const char *src);
void		 log_ctx(int lvl, const char *session, const char *peer,
		    int channel, const char *reason, const char *fmt, ...)
		    __attribute__((format(printf, 6, 7)));

/* util.c */
void		 mono_now(struct timespec *);
uint64_t	 mono_ms_since(const struct timespec *);
void		 ms_to_tv(unsigned int ms, struct timeval *);
void		 event_move_fd(struct event *, int fd);
int		 random_bytes(void *, size_t);
int		 ct_memeq(const void *, const void *, size_t);
struct frame	*frame_new(uint8_t type, uint8_t flags, uint32_t stream,
		    uint64_t seq, size_t len);
void		 frame_seal(struct frame *);
void		 frame_free(struct frame *);
void		 frameq_free(struct frameq *);
void		 mem_trim_soon(void);
void		 mem_trim_fini(void);

/* listener.c */
int		 listener_open_all(void);
json_object	*listener_addresses(void);
void		 listener_close_all(void);

/* resolve.c */
struct resolve;
struct addrinfo;
typedef void	 (*resolve_cb)(int r, struct addrinfo *res, int gai, void *arg);
struct resolve	*resolve_start(const char *host, const char *port, resolve_cb,
		    void *arg);
void		 resolve_cancel(struct resolve *);
const char	*resolve_strerror(int r, int gai);

/* channel.c */
struct channel	*channel_accept(int fd, const char *peer);
int		 channel_connect_first(struct session *);
int		 channel_connect(struct session *, unsigned int index);
void		 channel_close(struct channel *, const char *reason);
void		 channel_drain_close(struct channel *, int linger);
void		 channel_send(struct channel *, struct frame *, int urgent);
unsigned int	 channel_pending_count(const char *addr);
void		 channel_addr_of(const char *peer, char *buf, size_t len);
void		 channel_reap(void);

void		 channel_io_read(evutil_socket_t, short, void *);
void		 channel_io_write(evutil_socket_t, short, void *);
void		 channel_news(struct channel *, struct frameq *in,
		    struct frameq *done, uint64_t sent, uint64_t recv,
		    const char *errclass, const char *errmsg);

/* worker.c */
int		 worker_start_all(unsigned int n, char *err, size_t errlen);
void		 worker_stop_all(void);
unsigned int	 worker_count(void);
int		 worker_in_thread(void);
void		 worker_attach(struct channel *);
void		 worker_detach(struct channel *);
void		 worker_send(struct channel *, struct frame *);
void		 worker_received(struct channel *, struct frame *);
void		 worker_written(struct channel *, struct frame *);
void		 worker_count_io(struct channel *, uint64_t sent,
		    uint64_t recv);
void		 worker_fail(struct channel *, const char *class,
		    const char *msg);

/* link.c */
int		 link_init_session(struct session *);
void		 link_fini_session(struct session *);
int		 link_channel_lost(struct channel *, const char *class,
		    const char *msg);
void		 link_rejoin_failed(struct channel *, const char *class,
		    const char *msg, int fatal);
void		 link_channel_restored(struct session *, struct channel *);
void		 link_retain(struct stream *, struct frame *);
void		 link_release_acked(struct stream *);
void		 link_send_ctrl(struct session *, struct frame *);
void		 link_send_data(struct session *, struct frame *);
int		 link_frame_recv(struct session *, struct channel *,
		    const struct frame_hdr *, struct frame *);
void		 link_send_abort(struct session *, const char *class,
		    const char *desc);

/* stream.c */
struct stream	*stream_new(struct session *, uint32_t id, int fd);
void		 stream_free(struct stream *);
struct stream	*stream_find(struct session *, uint32_t id);
void		 stream_update_reading(struct stream *);
void		 stream_deliver(struct stream *);
int		 stream_on_data(struct stream *, struct frame *);
int		 stream_on_fin(struct stream *, uint64_t seq);
int		 stream_on_ack(struct stream *, uint64_t bytes, int fin);
void		 stream_check_done(struct stream *);
void		 stream_flush_acks(struct session *);
void		 stream_connect_next(struct session *);
int		 stream_qemu_lookup(struct session *);
int		 stream_qemu_listen(struct session *, const char **errstr);
void		 stream_close_fd(struct stream *);
const char	*stream_qemu_verdict(const struct stream *);

/* session.c */
extern struct sessionq	 g_sessions;
struct session	*session_find(const char *id);
struct session	*session_find_token(const uint8_t *token);
struct session	*session_new(const char *id, enum se_role);
void		 session_free(struct session *);
unsigned int	 session_count(void);
void		 session_set_state(struct session *, enum se_state);
void		 session_fail(struct session *, enum se_state final,
		    const char *class, const char *fmt, ...)
		    __attribute__((format(printf, 4, 5)));
void		 session_link_up(struct session *);
void		 session_check_complete(struct session *);
int		 session_is_final(const struct session *);
uint64_t	 session_duration_ms(const struct session *);
int		 session_lookup_done(struct session *, int r, int gai,
		    const char *what);
int		 session_channel_bytes(const struct session *, unsigned int,
		    uint64_t *sent, uint64_t *recv);
const char	*session_state_name(enum se_state);
json_object	*session_to_json(const struct session *);
void		 session_kick_reads(struct session *);
void		 session_fail_all(const char *why);

/* control.c */
int		 control_open(const char *path);
void		 control_close(void);
void		 control_broadcast(json_object *);	/* steals */
void		 control_reply(struct ctl_client *, json_object *); /* steals */
void		 control_client_forget(struct ctl_client *);

/* control_cmd.c */
void		 control_dispatch(struct ctl_client *, const char *line,
		    size_t len);
void		 control_session_answer(struct session *);

#endif /* MIGRELAYD_H */
