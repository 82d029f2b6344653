/*
 * util.c - small helpers: monotonic time, randomness, constant-time
 * comparison, frame buffers and giving freed heap memory back.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "migrelayd.h"

struct event_base	*g_base;	/* the one event loop */
int			 g_draining;	/* stopping: sessions drain, none start */
struct conf		 g_conf;	/* effective configuration */
struct tls_creds	*g_tls;		/* link credentials, NULL in plaintext mode */

void
mono_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

uint64_t
mono_ms_since(const struct timespec *t0)
{
	struct timespec	 now;
	int64_t		 ms;

	mono_now(&now);
	ms = (int64_t)(now.tv_sec - t0->tv_sec) * 1000 +
	    (now.tv_nsec - t0->tv_nsec) / 1000000;
	return ms < 0 ? 0 : (uint64_t)ms;
}

void
ms_to_tv(unsigned int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

int
random_bytes(void *buf, size_t len)
{
	uint8_t	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Constant-time equality; returns 1 when equal. */
int
ct_memeq(const void *a, const void *b, size_t len)
{
	const volatile uint8_t	*x = a, *y = b;
	uint8_t			 d = 0;
	size_t			 i;

	for (i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/*
 * A frame with room for len payload bytes.  Returns a new frame or NULL on
 * allocation failure (data path: the caller fails the session, not the
 * daemon).  frame_seal() encodes the header once the payload is final.
 */
struct frame *
frame_new(uint8_t type, uint8_t flags, uint32_t stream, uint64_t seq,
    size_t len)
{
	struct frame	*f;

	f = malloc(sizeof(*f) + len);
	if (f == NULL)
		return NULL;
	f->f_type = type;
	f->f_flags = flags;
	f->f_stream = stream;
	f->f_seq = seq;
	f->f_len = (uint32_t)len;
	f->f_off = 0;
	f->f_raw = 0;
	f->f_tl = 0;
	f->f_refs = 1;
	f->f_queued = 0;
	f->f_chan = 0;
	f->f_end = 0;
	frame_seal(f);
	return f;
}

void
frame_seal(struct frame *f)
{
	struct frame_hdr	 h = {
		.type = f->f_type,
		.flags = f->f_flags,
		.stream = f->f_stream,
		.seq = f->f_seq,
		.len = f->f_len,
	};

	frame_hdr_encode(f->f_hdr, &h);
}

/* Drop one reference; the last one frees. */
void
frame_free(struct frame *f)
{
	if (f == NULL || --f->f_refs > 0)
		return;
	free(f);
}

/*
 * Empty a queue linked by f_entry (a channel's output queue, or a stream's
 * input queues): its frames are in no channel queue any more, though a
 * sender's replay queue may still hold them.
 */
void
frameq_free(struct frameq *q)
{
	struct frame	*f;

	while ((f = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, f, f_entry);
		f->f_queued = 0;
		frame_free(f);
	}
}


/*
 * Point an event that is not pending at another descriptor (same base,
 * flags and callback).
 */
void
event_move_fd(struct event *ev, int fd)
{
	event_assign(ev, event_get_base(ev), fd, event_get_events(ev),
	    event_get_callback(ev), event_get_callback_arg(ev));
}

/*
 * Freed frame buffers stay on the heap (main.c raises the trim threshold so
 * that bulk traffic does not brk() up and down).  When a session ends, its
 * buffers are freed over the next moments (channels drain and are reaped,
 * the record is removed later still), so the heap is trimmed once, a short
 * while after the last of such releases.
 */
static struct event	*trim_ev;

static void
mem_trim_cb(evutil_socket_t fd, short ev, void *arg)
{
	malloc_trim(0);
}

void
mem_trim_soon(void)
{
	struct timeval	 tv = { 0, 250000 };

	if (g_base == NULL || (trim_ev == NULL &&
	    (trim_ev = evtimer_new(g_base, mem_trim_cb, NULL)) == NULL)) {
		malloc_trim(0);
		return;
	}
	evtimer_add(trim_ev, &tv);	/* a later release postpones it */
}

void
mem_trim_fini(void)
{
	if (trim_ev != NULL)
		event_free(trim_ev);
	trim_ev = NULL;
}
