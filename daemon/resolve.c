/*
 * Host name lookups off the event loop.
 *
 * getaddrinfo() can block for seconds (a DNS server that does not answer
 * costs its timeout times its attempts), and every session of the daemon
 * shares the main thread: a lookup made there would stop heartbeats,
 * control replies and other sessions' migrations.  So a peer given by
 * name is looked up by a short-lived thread of its own, which hands the
 * answer back through an eventfd; the main thread reads it on its next
 * turn.  A numeric address needs no thread: it is parsed at once and
 * answered on the next loop turn, so callers see one behaviour.
 *
 * A request belongs to the main thread except for the lookup thread's
 * fields (res, gai, err), which the thread writes before its eventfd
 * write and the main thread reads only after the eventfd said so.  Only
 * the completion callback frees a request; resolve_cancel() just makes
 * it forget its caller, so a cancelled lookup still running in its thread
 * cannot write into freed memory.  At most RESOLVE_MAX lookups run at
 * once.
 */

#include <sys/types.h>
#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "migrelayd.h"
#include "xport.h"

#define RESOLVE_MAX	32

struct resolve {
	LIST_ENTRY(resolve)	 rs_entry;
	char			 rs_host[256];
	char			 rs_port[16];
	int			 rs_efd;	/* -1: numeric, no thread */
	struct event		*rs_ev;
	resolve_cb		 rs_cb;		/* NULL once cancelled */
	void			*rs_arg;
	/* Written by the lookup thread before it signals rs_efd. */
	struct addrinfo		*rs_res;
	int			 rs_gai;
	int			 rs_errno;
};

/* Every request not yet completed: bounded, and reachable at exit. */
static LIST_HEAD(, resolve)	 pending = LIST_HEAD_INITIALIZER(pending);
static unsigned int		 npending;

static void
resolve_hints(struct addrinfo *hints, int numeric)
{
	memset(hints, 0, sizeof(*hints));
	hints->ai_family = AF_UNSPEC;
	hints->ai_socktype = SOCK_STREAM;
	hints->ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
}

static void *
resolve_thread(void *arg)
{
	struct resolve	*rs = arg;
	struct addrinfo	 hints;
	uint64_t	 one = 1;
	ssize_t		 n;

	resolve_hints(&hints, 0);
	rs->rs_gai = getaddrinfo(rs->rs_host, rs->rs_port, &hints,
	    &rs->rs_res);
	rs->rs_errno = errno;
	do {
		n = write(rs->rs_efd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
	return NULL;
}

static void
resolve_done_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct resolve	*rs = arg;
	uint64_t	 v;
	ssize_t		 n;
	int		 r;

	if (rs->rs_efd >= 0) {
		n = read(rs->rs_efd, &v, sizeof(v));
		if (n < 0 && errno == EAGAIN)
			return;		/* not yet (spurious wake) */
		close(rs->rs_efd);
	}
	LIST_REMOVE(rs, rs_entry);
	npending--;
	event_free(rs->rs_ev);
	if (rs->rs_gai == 0)
		r = 0;
	else if (rs->rs_gai == EAI_SYSTEM)
		r = rs->rs_errno != 0 ? -rs->rs_errno : -EIO;
	else
		r = -SOCK_ENORESOLVE;
	if (rs->rs_cb != NULL) {
		log_debug("lookup of %s: %s", rs->rs_host, r == 0 ? "done" :
		    rs->rs_gai == EAI_SYSTEM ? strerror(-r) :
		    gai_strerror(rs->rs_gai));
		rs->rs_cb(r, r == 0 ? rs->rs_res : NULL, rs->rs_gai,
		    rs->rs_arg);
	} else if (rs->rs_res != NULL) {
		freeaddrinfo(rs->rs_res);
	}
	free(rs);
}

/*
 * Look up host:port (a numeric port) for a TCP connection.  cb(0, res,
 * 0, arg) receives the addresses (the callee frees them with
 * freeaddrinfo()), or cb(-errno or -SOCK_ENORESOLVE, NULL, gai, arg) with
 * getaddrinfo's code in gai for resolve_strerror().  The callback always
 * runs later from the event loop, never inside resolve_start().  Returns
 * the request (for resolve_cancel()) or NULL with errno set: EAGAIN when
 * RESOLVE_MAX lookups are already under way.
 */
struct resolve *
resolve_start(const char *host, const char *port, resolve_cb cb, void *arg)
{
	struct resolve	*rs;
	struct addrinfo	 hints;
	pthread_attr_t	 attr;
	pthread_t	 tid;
	sigset_t	 all, old;
	int		 r;

	if (npending >= RESOLVE_MAX) {
		errno = EAGAIN;
		return NULL;
	}
	if ((rs = calloc(1, sizeof(*rs))) == NULL)
		return NULL;
	if (snprintf(rs->rs_host, sizeof(rs->rs_host), "%s", host) >=
	    (int)sizeof(rs->rs_host) ||
	    snprintf(rs->rs_port, sizeof(rs->rs_port), "%s", port) >=
	    (int)sizeof(rs->rs_port)) {
		free(rs);
		errno = ENAMETOOLONG;
		return NULL;
	}
	rs->rs_cb = cb;
	rs->rs_arg = arg;
	rs->rs_efd = -1;

	/* A numeric address: no lookup, answer on the next loop turn. */
	resolve_hints(&hints, 1);
	rs->rs_gai = getaddrinfo(host, port, &hints, &rs->rs_res);
	rs->rs_errno = errno;
	if (rs->rs_gai != EAI_NONAME) {
		if ((rs->rs_ev = event_new(g_base, -1, 0, resolve_done_cb,
		    rs)) == NULL) {
			if (rs->rs_res != NULL)
				freeaddrinfo(rs->rs_res);
			free(rs);
			errno = ENOMEM;
			return NULL;
		}
		event_active(rs->rs_ev, 0, 0);
		goto queued;
	}
	rs->rs_gai = 0;
	rs->rs_res = NULL;

	/* A name: a detached thread looks it up, with every signal blocked. */
	if ((rs->rs_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		r = errno;
		free(rs);
		errno = r;
		return NULL;
	}
	if ((rs->rs_ev = event_new(g_base, rs->rs_efd, EV_READ | EV_PERSIST,
	    resolve_done_cb, rs)) == NULL || event_add(rs->rs_ev, NULL) != 0) {
		if (rs->rs_ev != NULL)
			event_free(rs->rs_ev);
		close(rs->rs_efd);
		free(rs);
		errno = ENOMEM;
		return NULL;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&tid, &attr, resolve_thread, rs);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		event_free(rs->rs_ev);
		close(rs->rs_efd);
		free(rs);
		errno = r;
		return NULL;
	}
	log_debug("looking up %s", host);
queued:
	LIST_INSERT_HEAD(&pending, rs, rs_entry);
	npending++;
	return rs;
}

/* The caller no longer wants the answer; the request frees itself. */
void
resolve_cancel(struct resolve *rs)
{
	if (rs != NULL)
		rs->rs_cb = NULL;
}

/* Text for a failed lookup: getaddrinfo's own words, or errno's. */
const char *
resolve_strerror(int r, int gai)
{
	if (r == -SOCK_ENORESOLVE && gai != 0)
		return gai_strerror(gai);
	return sock_strerror(-r);
}
