/*
 * control.c - the control socket: a unix stream socket speaking one JSON
 * object per line, shaped like QEMU's QMP (see interface.md and
 * migrelay-control in migrelayd(8)).
 *
 * Control traffic is small, so clients use libevent bufferevents.  Limits:
 * MAX_CTL_CLIENTS clients, CTL_MAX_LINE bytes per request (a longer line
 * closes that client only), CTL_MAX_OUTPUT bytes of unread replies and
 * events (a client that stops reading is dropped).  The socket is created
 * mode 0660 and each client's credentials are logged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "ctl_json.h"
#include "migrelayd.h"
#include "xport.h"

#define CTL_MAX_OUTPUT	(4 * 1024 * 1024)

struct ctl_client {
	TAILQ_ENTRY(ctl_client)	 c_entry;
	struct bufferevent	*c_bev;
	unsigned int		 c_num;
	int			 c_dead;
};

static TAILQ_HEAD(, ctl_client) clients = TAILQ_HEAD_INITIALIZER(clients);
static unsigned int	 nclients, client_serial;
static int		 ctl_fd = -1;
static int		 ctl_passed;	/* socket-activated: not ours to unlink */
static struct event	*ctl_ev;
static char		 ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void	 control_accept_cb(evutil_socket_t, short, void *);
static void	 control_read_cb(struct bufferevent *, void *);
static void	 control_event_cb(struct bufferevent *, short, void *);
static void	 control_client_close(struct ctl_client *, const char *);
static void	 control_write(struct ctl_client *, json_object *);

int
control_open(const char *path)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	int			 fd;

	/* Socket activation: systemd made the socket and set its mode. */
	if (systemd_take_fds("control", &fd, 1) == 1) {
		ctl_fd = fd;
		ctl_passed = 1;
		ctl_ev = event_new(g_base, fd, EV_READ | EV_PERSIST,
		    control_accept_cb, NULL);
		event_add(ctl_ev, NULL);
		log_info("control socket passed by systemd (fd %d)", fd);
		return 0;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		fatalx("control socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			fatalx("control socket path %s exists and is not a "
			    "socket", path);
		/* A live daemon still answers: refuse to steal its socket. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun,
		    sizeof(sun)) == 0)
			fatalx("control socket %s is in use by another "
			    "migrelayd", path);
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		fatal("control socket");
	old = umask(S_IXUSR | S_IXGRP | S_IRWXO);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		fatal("bind control socket %s", path);
	umask(old);
	if (chmod(path, 0660) != 0)
		fatal("chmod control socket %s", path);
	if (listen(fd, 16) != 0)
		fatal("listen on control socket %s", path);
	ctl_fd = fd;
	snprintf(ctl_path, sizeof(ctl_path), "%s", path);
	ctl_ev = event_new(g_base, fd, EV_READ | EV_PERSIST, control_accept_cb,
	    NULL);
	event_add(ctl_ev, NULL);
	log_info("control socket %s", path);
	return 0;
}

void
control_close(void)
{
	struct ctl_client	*c;

	/* Not inside a client callback here: free at once. */
	while ((c = TAILQ_FIRST(&clients)) != NULL) {
		TAILQ_REMOVE(&clients, c, c_entry);
		nclients--;
		control_client_forget(c);
		bufferevent_free(c->c_bev);
		free(c);
	}
	if (ctl_ev != NULL)
		event_free(ctl_ev);
	ctl_ev = NULL;
	if (ctl_fd >= 0) {
		close(ctl_fd);
		if (!ctl_passed)
			unlink(ctl_path);
	}
	ctl_fd = -1;
}


/*
 * Is the peer of the unix socket fd a member of gid through one of its
 * supplementary groups?  Operators are usually added to the relay's group
 * as a supplementary one.  SO_PEERGROUPS (Linux 4.13) reports the groups
 * the peer had when it connected.
 */
static int
peer_in_group(int fd, gid_t gid)
{
#ifdef SO_PEERGROUPS
	gid_t		 stack[64], *groups = stack;
	socklen_t	 len = sizeof(stack);
	size_t		 i, n;
	int		 found = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
		if (errno != ERANGE || len == 0 || len > 65536 * sizeof(gid_t))
			return 0;
		if ((groups = malloc(len)) == NULL)
			return 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) != 0) {
			free(groups);
			return 0;
		}
	}
	n = len / sizeof(gid_t);
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			found = 1;
	if (groups != stack)
		free(groups);
	return found;
#else
	(void)fd;
	(void)gid;
	return 0;
#endif
}
static void
control_accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
	struct ctl_client	*c;
	struct ucred		 cred;
	socklen_t		 len = sizeof(cred);
	int			 fd;

	if ((fd = sock_accept(lfd)) < 0)
		return;
	if (nclients >= MAX_CTL_CLIENTS) {
		log_warnx("control: too many clients (%d), refusing one",
		    MAX_CTL_CLIENTS);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->c_bev = bufferevent_socket_new(g_base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->c_bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->c_num = ++client_serial;
	/*
	 * The socket's mode already limits who can connect; check again
	 * (root, our own user, or our group), so that a socket passed in
	 * with looser permissions does not open the daemon to everyone.
	 */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    (cred.uid != 0 && cred.uid != geteuid() &&
	    cred.gid != getegid() && !peer_in_group(fd, getegid()))) {
		log_warnx("control: refusing client (pid %d, uid %u, gid %u): "
		    "not root, not uid %u, not in group %u", (int)cred.pid,
		    (unsigned)cred.uid, (unsigned)cred.gid,
		    (unsigned)geteuid(), (unsigned)getegid());
		bufferevent_free(c->c_bev);
		free(c);
		return;
	}
	log_info("control: client %u connected (pid %d, uid %u, gid %u)",
	    c->c_num, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
	TAILQ_INSERT_TAIL(&clients, c, c_entry);
	nclients++;
	bufferevent_setcb(c->c_bev, control_read_cb, NULL, control_event_cb, c);
	bufferevent_enable(c->c_bev, EV_READ | EV_WRITE);
	control_write(c, ctl_greeting_new(MIGRELAY_VERSION_MAJOR,
	    MIGRELAY_VERSION_MINOR, MIGRELAY_VERSION_MICRO));
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;

	if (c->c_dead)
		return;
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > CTL_MAX_LINE) {
			free(line);
			control_client_close(c, "request line too long");
			return;
		}
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (len > 0)
			control_dispatch(c, line, len);
		free(line);
		if (c->c_dead)
			return;
	}
	if (evbuffer_get_length(in) > CTL_MAX_LINE)
		control_client_close(c, "request line too long");
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client	*c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		control_client_close(c, NULL);
}

static void
control_client_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	free(arg);
}

/*
 * The close path of a client.  The struct itself is freed from a deferred
 * callback because we may be inside one of its callbacks.
 */
static void
control_client_close(struct ctl_client *c, const char *why)
{
	struct timeval	 tv = { 0, 0 };

	if (c->c_dead)
		return;
	if (why != NULL)
		log_warnx("control: closing client %u: %s", c->c_num, why);
	else
		log_info("control: client %u disconnected", c->c_num);
	c->c_dead = 1;
	control_client_forget(c);
	TAILQ_REMOVE(&clients, c, c_entry);
	nclients--;
	bufferevent_free(c->c_bev);
	c->c_bev = NULL;
	if (event_base_once(g_base, -1, EV_TIMEOUT, control_client_free_cb, c,
	    &tv) != 0)
		log_warnx("control: cannot schedule client free");
}

/* Write one JSON line (stolen) to a client, dropping slow readers. */
static void
control_write(struct ctl_client *c, json_object *o)
{
	const char	*s;
	struct evbuffer	*out;

	if (c->c_dead) {
		json_object_put(o);
		return;
	}
	out = bufferevent_get_output(c->c_bev);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	evbuffer_add(out, s, strlen(s));
	evbuffer_add(out, "\n", 1);
	json_object_put(o);
}

void
control_reply(struct ctl_client *c, json_object *o)
{
	control_write(c, o);
}

void
control_broadcast(json_object *o)
{
	struct ctl_client	*c, *t;
	const char		*s;
	size_t			 len;

	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	len = strlen(s);
	for (c = TAILQ_FIRST(&clients); c != NULL; c = t) {
		struct evbuffer *out = bufferevent_get_output(c->c_bev);

		t = TAILQ_NEXT(c, c_entry);
		if (evbuffer_get_length(out) > CTL_MAX_OUTPUT) {
			control_client_close(c, "client does not read its "
			    "events");
			continue;
		}
		evbuffer_add(out, s, len);
		evbuffer_add(out, "\n", 1);
	}
	json_object_put(o);
}
