/*
 * listener.c - the relay-to-relay listeners (--listen).  Accepted
 * connections become pending channels that must complete the handshake
 * within HANDSHAKE_TIMEOUT_MS.  When too many are pending, new ones are
 * closed at once (and counted), so a flood cannot exhaust memory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migrelayd.h"
#include "xport.h"

struct listener {
	int		 lst_fd;
	struct event	*lst_ev;
	char		 lst_addr[300];
};

static struct listener	 listeners[MAX_LISTENERS];
static unsigned int	 nlisteners;
static struct event	*accept_pause_ev;

static void	 listener_accept_cb(evutil_socket_t, short, void *);

static void
listener_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	unsigned int	 i;

	for (i = 0; i < nlisteners; i++)
		event_add(listeners[i].lst_ev, NULL);
}

static void
listener_accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
	struct listener	*l = arg;
	static struct timespec last_warn;
	char		 peer[80], addr[64];
	int		 fd, i;

	for (i = 0; i < 16; i++) {
		fd = sock_accept(lfd);
		if (fd == -EAGAIN || fd == -EINTR || fd == -ECONNABORTED)
			return;
		if (fd == -EMFILE || fd == -ENFILE) {
			struct timeval	 tv;
			unsigned int	 j;

			log_warnx("listener %s: out of file descriptors, "
			    "pausing accept for 1 s", l->lst_addr);
			for (j = 0; j < nlisteners; j++)
				event_del(listeners[j].lst_ev);
			ms_to_tv(1000, &tv);
			event_add(accept_pause_ev, &tv);
			return;
		}
		if (fd < 0) {
			errno = -fd;
			log_warn("listener %s: accept", l->lst_addr);
			return;
		}
		if (sock_peer_name(fd, peer, sizeof(peer)) != 0)
			snprintf(peer, sizeof(peer), "?");
		channel_addr_of(peer, addr, sizeof(addr));
		if (channel_pending_count(NULL) >= MAX_PENDING_CHANNELS ||
		    channel_pending_count(addr) >= MAX_PENDING_PER_ADDR) {
			g_stats.st_conn_refused++;
			/* Say it once per burst, not once per connection. */
			if (mono_ms_since(&last_warn) >= 1000) {
				log_warnx("listener %s: too many pending "
				    "handshakes (%u in all, %u from %s), "
				    "refusing connections (%llu so far)",
				    l->lst_addr, channel_pending_count(NULL),
				    channel_pending_count(addr), addr,
				    (unsigned long long)g_stats.st_conn_refused);
				mono_now(&last_warn);
			}
			close(fd);
			continue;
		}
		sock_tune_link(fd, g_conf.link_timeout_ms);
		if (channel_accept(fd, peer) == NULL)
			close(fd);
	}
}

/* Bind every --listen address; fatal on failure (startup only). */
int
listener_open_all(void)
{
	unsigned int	 i;
	char		 host[256], port[16];
	const char	*errstr;
	int		 fd;

	int		 fds[MAX_LISTENERS], n, k;

	accept_pause_ev = evtimer_new(g_base, listener_resume_cb, NULL);
	/* Socket activation: use what systemd passed, create nothing. */
	n = systemd_take_fds("relay", fds, MAX_LISTENERS);
	for (k = 0; k < n; k++) {
		struct listener *l = &listeners[nlisteners++];

		l->lst_fd = fds[k];
		if (sock_local_name(fds[k], l->lst_addr,
		    sizeof(l->lst_addr)) != 0)
			snprintf(l->lst_addr, sizeof(l->lst_addr), "fd %d",
			    fds[k]);
		l->lst_ev = event_new(g_base, fds[k], EV_READ | EV_PERSIST,
		    listener_accept_cb, l);
		event_add(l->lst_ev, NULL);
		log_info("listening for relays on %s (passed by systemd)",
		    l->lst_addr);
	}
	if (n > 0 || g_conf.no_listen)
		return 0;
	for (i = 0; i < g_conf.nlisten; i++) {
		struct listener *l = &listeners[nlisteners];

		if (hostport_parse(g_conf.listen[i], host, sizeof(host), port,
		    sizeof(port), &errstr) != 0)
			fatalx("--listen %s: %s", g_conf.listen[i], errstr);
		fd = sock_listen_tcp(host, port, 128);
		if (fd < 0)
			fatalx("cannot listen on %s: %s", g_conf.listen[i],
			    sock_strerror(-fd));
		l->lst_fd = fd;
		if (sock_local_name(fd, l->lst_addr, sizeof(l->lst_addr)) != 0)
			snprintf(l->lst_addr, sizeof(l->lst_addr), "%s",
			    g_conf.listen[i]);
		l->lst_ev = event_new(g_base, fd, EV_READ | EV_PERSIST,
		    listener_accept_cb, l);
		event_add(l->lst_ev, NULL);
		nlisteners++;
		log_info("listening for relays on %s", l->lst_addr);
	}
	return 0;
}

/* New reference: the bound addresses as a JSON array of "HOST:PORT". */
json_object *
listener_addresses(void)
{
	json_object	*a = json_object_new_array();
	unsigned int	 i;

	for (i = 0; i < nlisteners; i++)
		json_object_array_add(a,
		    json_object_new_string(listeners[i].lst_addr));
	return a;
}

void
listener_close_all(void)
{
	unsigned int	 i;

	for (i = 0; i < nlisteners; i++) {
		event_free(listeners[i].lst_ev);
		close(listeners[i].lst_fd);
	}
	nlisteners = 0;
	if (accept_pause_ev != NULL)
		event_free(accept_pause_ev);
	accept_pause_ev = NULL;
}
