/*
 * worker.c - data-plane threads.  Each worker runs its own event base and
 * owns whole channels once they are established: their socket, TLS state,
 * input buffer, output queues.  Everything else (sessions, streams, the
 * link logic, handshakes, control) stays on the main thread.
 *
 * Between the main thread and a worker, per channel (all under the
 * worker's mutex):
 *   main -> worker: ch_xq (frames to send) and ch_wcmd (W_ATTACH, W_SEND,
 *     W_TAKE), the channel put on the worker's to-do list;
 *   worker -> main: ch_nin (frames received, CRC checked), ch_ndone
 *     (frames written, to be released by the main thread, which owns the
 *     reference counts), byte counts, the first error; the channel put on
 *     the worker's news list.
 * A side wakes the other with an eventfd write only when a list goes from
 * empty to non-empty, and a worker batches its news: it wakes the main
 * thread once at the end of a callback.
 *
 * Taking a channel back (before draining or closing it) is synchronous:
 * the main thread asks with W_TAKE and waits on the condition variable
 * until the worker has deleted its events; worker callbacks are bounded
 * (CALLBACK_BUDGET), so the wait is short.  Frames received but not yet
 * handled are dropped then, as a draining or closed channel drops them.
 */
#include <sys/eventfd.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrelayd.h"

#define W_ATTACH	0x1
#define W_SEND		0x2
#define W_TAKE		0x4

TAILQ_HEAD(wchanq, channel);

struct worker {
	unsigned int		 w_index;
	pthread_t		 w_thread;
	struct event_base	*w_base;
	pthread_mutex_t		 w_mtx;
	pthread_cond_t		 w_cond;
	int			 w_tofd;	/* eventfd: main -> worker */
	int			 w_fromfd;	/* eventfd: worker -> main */
	struct event		*w_toev;	/* on w_base */
	struct event		*w_fromev;	/* on g_base */
	struct wchanq		 w_cmds;	/* locked */
	struct wchanq		 w_news;	/* locked */
	int			 w_stop;	/* locked */
	int			 w_wake;	/* worker: news posted, not signalled */
	unsigned int		 w_nchannels;	/* main */
};

static struct worker	*workers;
static unsigned int	 nworkers;
static __thread struct worker *current;

/* Channels that reached CH_UP, waiting for the attach callback. */
static struct wchanq	 attachq = TAILQ_HEAD_INITIALIZER(attachq);
static struct event	*attach_ev;

static void
efd_signal(int fd)
{
	uint64_t	 one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void
efd_clear(int fd)
{
	uint64_t	 v;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

int
worker_in_thread(void)
{
	return current != NULL;
}

unsigned int
worker_count(void)
{
	return nworkers;
}

/* Worker: post ch on the news list (locked); the wake comes later. */
static void
worker_news_locked(struct worker *w, struct channel *ch)
{
	if (!ch->ch_in_news) {
		ch->ch_in_news = 1;
		if (TAILQ_EMPTY(&w->w_news))
			w->w_wake = 1;
		TAILQ_INSERT_TAIL(&w->w_news, ch, ch_newsentry);
	}
}

/* Worker: end of a callback; wake the main thread if there is news. */
static void
worker_wake_main(struct worker *w)
{
	if (w->w_wake) {
		w->w_wake = 0;
		efd_signal(w->w_fromfd);
	}
}

void
worker_received(struct channel *ch, struct frame *f)
{
	struct worker	*w = ch->ch_worker;

	pthread_mutex_lock(&w->w_mtx);
	TAILQ_INSERT_TAIL(&ch->ch_nin, f, f_entry);
	worker_news_locked(w, ch);
	pthread_mutex_unlock(&w->w_mtx);
}

void
worker_written(struct channel *ch, struct frame *f)
{
	struct worker	*w = ch->ch_worker;

	pthread_mutex_lock(&w->w_mtx);
	TAILQ_INSERT_TAIL(&ch->ch_ndone, f, f_entry);
	worker_news_locked(w, ch);
	pthread_mutex_unlock(&w->w_mtx);
}

void
worker_count_io(struct channel *ch, uint64_t sent, uint64_t recv)
{
	struct worker	*w = ch->ch_worker;

	pthread_mutex_lock(&w->w_mtx);
	ch->ch_nsent += sent;
	ch->ch_nrecv += recv;
	worker_news_locked(w, ch);
	pthread_mutex_unlock(&w->w_mtx);
}

/* Worker: the channel broke.  Stop its I/O; the main thread decides. */
void
worker_fail(struct channel *ch, const char *class, const char *msg)
{
	struct worker	*w = ch->ch_worker;

	if (ch->ch_wdead)
		return;
	ch->ch_wdead = 1;
	if (ch->ch_rev != NULL)
		event_del(ch->ch_rev);
	if (ch->ch_wev != NULL)
		event_del(ch->ch_wev);
	pthread_mutex_lock(&w->w_mtx);
	snprintf(ch->ch_nclass, sizeof(ch->ch_nclass), "%s", class);
	snprintf(ch->ch_nmsg, sizeof(ch->ch_nmsg), "%s", msg);
	worker_news_locked(w, ch);
	pthread_mutex_unlock(&w->w_mtx);
}

static void
worker_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	channel_io_read(fd, ev, arg);
	worker_wake_main(current);
}

static void
worker_write_cb(evutil_socket_t fd, short ev, void *arg)
{
	channel_io_write(fd, ev, arg);
	worker_wake_main(current);
}

/* Worker: take over the channel's I/O. */
static void
worker_io_start(struct worker *w, struct channel *ch)
{
	ch->ch_rev = event_new(w->w_base, ch->ch_fd, EV_READ | EV_PERSIST,
	    worker_read_cb, ch);
	ch->ch_wev = event_new(w->w_base, ch->ch_fd, EV_WRITE | EV_PERSIST,
	    worker_write_cb, ch);
	if (ch->ch_rev == NULL || ch->ch_wev == NULL) {
		/* Events of a failed channel are never used, only freed. */
		worker_fail(ch, EC_INTERNAL, "out of memory");
		return;
	}
	event_add(ch->ch_rev, NULL);
	/* Bytes read before the hand-over may hold whole frames already. */
	channel_io_read(ch->ch_fd, EV_READ, ch);
}

/* Worker: let go of the channel; the main thread's events come back. */
static void
worker_io_stop(struct channel *ch)
{
	if (ch->ch_rev != NULL)
		event_free(ch->ch_rev);
	if (ch->ch_wev != NULL)
		event_free(ch->ch_wev);
	ch->ch_rev = ch->ch_mrev;
	ch->ch_wev = ch->ch_mwev;
	ch->ch_mrev = ch->ch_mwev = NULL;
}

/* Worker: the main thread asked for something. */
static void
worker_todo_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker	*w = arg;
	struct channel	*ch;
	struct frameq	 xq;
	struct frame	*f;
	unsigned int	 cmd;

	efd_clear(w->w_tofd);
	pthread_mutex_lock(&w->w_mtx);
	while ((ch = TAILQ_FIRST(&w->w_cmds)) != NULL) {
		TAILQ_REMOVE(&w->w_cmds, ch, ch_cmdentry);
		cmd = ch->ch_wcmd;
		ch->ch_wcmd = 0;
		TAILQ_INIT(&xq);
		TAILQ_CONCAT(&xq, &ch->ch_xq, f_entry);
		pthread_mutex_unlock(&w->w_mtx);

		if (cmd & W_ATTACH)
			worker_io_start(w, ch);
		while ((f = TAILQ_FIRST(&xq)) != NULL) {
			TAILQ_REMOVE(&xq, f, f_entry);
			TAILQ_INSERT_TAIL(f->f_urgent ? &ch->ch_urgent :
			    &ch->ch_bulk, f, f_entry);
		}
		if (cmd & W_TAKE) {
			worker_io_stop(ch);
			pthread_mutex_lock(&w->w_mtx);
			ch->ch_wtaken = 1;
			pthread_cond_broadcast(&w->w_cond);
			continue;
		}
		if (!ch->ch_wdead && !event_pending(ch->ch_wev, EV_WRITE, NULL))
			channel_io_write(ch->ch_fd, 0, ch);
		worker_wake_main(w);
		pthread_mutex_lock(&w->w_mtx);
	}
	if (w->w_stop)
		event_base_loopbreak(w->w_base);
	pthread_mutex_unlock(&w->w_mtx);
	worker_wake_main(w);
}

/* Main: ask the worker of ch for cmd (locked by the caller). */
static void
worker_ask_locked(struct worker *w, struct channel *ch, unsigned int cmd)
{
	if (ch->ch_wcmd == 0) {
		if (TAILQ_EMPTY(&w->w_cmds))
			efd_signal(w->w_tofd);
		TAILQ_INSERT_TAIL(&w->w_cmds, ch, ch_cmdentry);
	}
	ch->ch_wcmd |= cmd;
}

/* Main: news from a worker. */
static void
worker_news_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker	*w = arg;
	struct wchanq	 todo = TAILQ_HEAD_INITIALIZER(todo);
	struct channel	*ch;
	struct frameq	 in, done;
	uint64_t	 sent, recv;
	char		 class[32], msg[1024];

	efd_clear(w->w_fromfd);
	pthread_mutex_lock(&w->w_mtx);
	while ((ch = TAILQ_FIRST(&w->w_news)) != NULL) {
		TAILQ_REMOVE(&w->w_news, ch, ch_newsentry);
		ch->ch_in_news = 0;
		TAILQ_INSERT_TAIL(&todo, ch, ch_pentry);
	}
	pthread_mutex_unlock(&w->w_mtx);
	/*
	 * The worker may post news for these channels again meanwhile; each
	 * round takes what is there at that moment.  A channel closed by an
	 * earlier one in this batch (its worker let go of it) has nothing.
	 */
	while ((ch = TAILQ_FIRST(&todo)) != NULL) {
		TAILQ_REMOVE(&todo, ch, ch_pentry);
		if (ch->ch_worker != w)
			continue;
		TAILQ_INIT(&in);
		TAILQ_INIT(&done);
		pthread_mutex_lock(&w->w_mtx);
		TAILQ_CONCAT(&in, &ch->ch_nin, f_entry);
		TAILQ_CONCAT(&done, &ch->ch_ndone, f_entry);
		sent = ch->ch_nsent;
		recv = ch->ch_nrecv;
		ch->ch_nsent = ch->ch_nrecv = 0;
		snprintf(class, sizeof(class), "%s", ch->ch_nclass);
		snprintf(msg, sizeof(msg), "%s", ch->ch_nmsg);
		ch->ch_nclass[0] = '\0';
		pthread_mutex_unlock(&w->w_mtx);
		channel_news(ch, &in, &done, sent, recv,
		    class[0] ? class : NULL, msg);
	}
}

/* Main: hand established channels to the least loaded worker. */
static void
worker_attach_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct channel	*ch;
	struct worker	*w;
	unsigned int	 i;

	while ((ch = TAILQ_FIRST(&attachq)) != NULL) {
		TAILQ_REMOVE(&attachq, ch, ch_entry);
		ch->ch_attaching = 0;
		if (ch->ch_dead || ch->ch_state != CH_UP ||
		    ch->ch_worker != NULL)
			continue;
		w = &workers[0];
		for (i = 1; i < nworkers; i++)
			if (workers[i].w_nchannels < w->w_nchannels)
				w = &workers[i];
		event_del(ch->ch_rev);
		event_del(ch->ch_wev);
		ch->ch_mrev = ch->ch_rev;
		ch->ch_mwev = ch->ch_wev;
		ch->ch_rev = ch->ch_wev = NULL;
		ch->ch_wdead = 0;
		ch->ch_wtaken = 0;
		ch->ch_worker = w;
		w->w_nchannels++;
		pthread_mutex_lock(&w->w_mtx);
		worker_ask_locked(w, ch, W_ATTACH);
		pthread_mutex_unlock(&w->w_mtx);
	}
}

/*
 * Main: ch just became established.  It is handed over from a deferred
 * callback, never from inside its own read callback (which may still be
 * parsing its input buffer).
 */
void
worker_attach(struct channel *ch)
{
	if (nworkers == 0 || ch->ch_attaching || ch->ch_worker != NULL)
		return;
	ch->ch_attaching = 1;
	TAILQ_INSERT_TAIL(&attachq, ch, ch_entry);
	event_active(attach_ev, 0, 0);
}

/* Main: queue a frame (its accounting done) for the worker to send. */
void
worker_send(struct channel *ch, struct frame *f)
{
	struct worker	*w = ch->ch_worker;

	pthread_mutex_lock(&w->w_mtx);
	TAILQ_INSERT_TAIL(&ch->ch_xq, f, f_entry);
	worker_ask_locked(w, ch, W_SEND);
	pthread_mutex_unlock(&w->w_mtx);
}

/*
 * Main: take ch back from its worker (or off the attach list).  Written
 * frames are released, unsent ones stay queued on the channel, received
 * ones not handled yet are dropped.
 */
void
worker_detach(struct channel *ch)
{
	struct worker	*w = ch->ch_worker;
	struct frameq	 in, done;
	struct frame	*f;
	uint64_t	 sent, recv;

	if (ch->ch_attaching) {
		TAILQ_REMOVE(&attachq, ch, ch_entry);
		ch->ch_attaching = 0;
	}
	if (w == NULL)
		return;
	TAILQ_INIT(&in);
	TAILQ_INIT(&done);
	pthread_mutex_lock(&w->w_mtx);
	worker_ask_locked(w, ch, W_TAKE);
	while (!ch->ch_wtaken)
		pthread_cond_wait(&w->w_cond, &w->w_mtx);
	if (ch->ch_in_news) {
		TAILQ_REMOVE(&w->w_news, ch, ch_newsentry);
		ch->ch_in_news = 0;
	}
	/* Sent after the worker let go: queue them here. */
	while ((f = TAILQ_FIRST(&ch->ch_xq)) != NULL) {
		TAILQ_REMOVE(&ch->ch_xq, f, f_entry);
		TAILQ_INSERT_TAIL(f->f_urgent ? &ch->ch_urgent : &ch->ch_bulk,
		    f, f_entry);
	}
	TAILQ_CONCAT(&in, &ch->ch_nin, f_entry);
	TAILQ_CONCAT(&done, &ch->ch_ndone, f_entry);
	sent = ch->ch_nsent;
	recv = ch->ch_nrecv;
	ch->ch_nsent = ch->ch_nrecv = 0;
	ch->ch_nclass[0] = '\0';
	pthread_mutex_unlock(&w->w_mtx);
	ch->ch_worker = NULL;
	ch->ch_wdead = 0;
	w->w_nchannels--;
	frameq_free(&in);
	channel_news(ch, NULL, &done, sent, recv, NULL, NULL);
}

static void *
worker_main(void *arg)
{
	struct worker	*w = arg;

	current = w;
	event_base_dispatch(w->w_base);
	current = NULL;
	return NULL;
}

/* Start n workers (0: none, channels stay on the main thread). */
int
worker_start_all(unsigned int n, char *err, size_t errlen)
{
	struct worker	*w;
	sigset_t	 all, old;
	unsigned int	 i;
	int		 r;

	if (n == 0)
		return 0;
	if ((workers = calloc(n, sizeof(*workers))) == NULL ||
	    (attach_ev = event_new(g_base, -1, 0, worker_attach_cb,
	    NULL)) == NULL) {
		snprintf(err, errlen, "data threads: out of memory");
		return -1;
	}
	/* Signals are the main thread's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < n; i++) {
		w = &workers[i];
		w->w_index = i;
		TAILQ_INIT(&w->w_cmds);
		TAILQ_INIT(&w->w_news);
		pthread_mutex_init(&w->w_mtx, NULL);
		pthread_cond_init(&w->w_cond, NULL);
		w->w_tofd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		w->w_fromfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->w_tofd < 0 || w->w_fromfd < 0) {
			snprintf(err, errlen, "data threads: eventfd: %s",
			    strerror(errno));
			goto fail;
		}
		if ((w->w_base = event_base_new()) == NULL ||
		    (w->w_toev = event_new(w->w_base, w->w_tofd,
		    EV_READ | EV_PERSIST, worker_todo_cb, w)) == NULL ||
		    (w->w_fromev = event_new(g_base, w->w_fromfd,
		    EV_READ | EV_PERSIST, worker_news_cb, w)) == NULL) {
			snprintf(err, errlen, "data threads: cannot create an "
			    "event loop");
			goto fail;
		}
		event_add(w->w_toev, NULL);
		event_add(w->w_fromev, NULL);
		if ((r = pthread_create(&w->w_thread, NULL, worker_main,
		    w)) != 0) {
			snprintf(err, errlen, "data threads: cannot start "
			    "thread %u: %s", i, strerror(r));
			event_free(w->w_toev);
			event_free(w->w_fromev);
			event_base_free(w->w_base);
			goto fail;
		}
		nworkers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	log_debug("%u data thread%s started", n, n == 1 ? "" : "s");
	return 0;
fail:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (w->w_tofd >= 0)
		close(w->w_tofd);
	if (w->w_fromfd >= 0)
		close(w->w_fromfd);
	worker_stop_all();
	return -1;
}

/* Stop and join the workers.  Their channels must have been taken back. */
void
worker_stop_all(void)
{
	struct worker	*w;
	unsigned int	 i;

	for (i = 0; i < nworkers; i++) {
		w = &workers[i];
		pthread_mutex_lock(&w->w_mtx);
		w->w_stop = 1;
		efd_signal(w->w_tofd);
		pthread_mutex_unlock(&w->w_mtx);
		pthread_join(w->w_thread, NULL);
		event_free(w->w_toev);
		event_free(w->w_fromev);
		event_base_free(w->w_base);
		close(w->w_tofd);
		close(w->w_fromfd);
		pthread_mutex_destroy(&w->w_mtx);
		pthread_cond_destroy(&w->w_cond);
	}
	nworkers = 0;
	free(workers);
	workers = NULL;
	if (attach_ev != NULL)
		event_free(attach_ev);
	attach_ev = NULL;
}
