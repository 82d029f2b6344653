/*
 * sock.c - unix and TCP sockets for QEMU legs and relay channels.
 *
 * Relay channels get TCP_NODELAY (the relay batches with writev itself, and
 * the return path and postcopy page requests are latency bound) and TCP
 * keepalive.  QEMU legs over TCP get TCP_NODELAY for the same reason.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "xport.h"

static int
sock_unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/* Listen on a unix path; a stale socket file at that path is replaced. */
static int
sock_listen_unix(const char *path, int backlog)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, r;

	if ((r = sock_unix_addr(path, &sun)) != 0)
		return r;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(fd, backlog) != 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Describe an error returned (negated) by the functions in this file. */
const char *
sock_strerror(int err)
{
	if (err == SOCK_ENORESOLVE)
		return "host name does not resolve";
	return strerror(err);
}

int
sock_listen_tcp(const char *host, const char *port, int backlog)
{
	struct addrinfo	 hints, *res;
	int		 r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0)
		return r == EAI_SYSTEM ? -errno : -SOCK_ENORESOLVE;
	r = sock_listen_ai(res, backlog);
	freeaddrinfo(res);
	return r;
}

/* sock_listen_tcp() on addresses already looked up: the first that binds. */
int
sock_listen_ai(const struct addrinfo *res, int backlog)
{
	const struct addrinfo	*ai;
	int			 fd = -1, r = -EADDRNOTAVAIL, one = 1;

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, backlog) == 0)
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	return fd >= 0 ? fd : r;
}

int
sock_listen_uri(const struct mig_uri *u, int backlog)
{
	if (u->kind == URI_UNIX)
		return sock_listen_unix(u->path, backlog);
	return sock_listen_tcp(u->host, u->port, backlog);
}

/*
 * Start a non-blocking connect.  Returns 0 when connected at once,
 * -EINPROGRESS when the caller must wait for writability and then call
 * sock_connect_result(), or another -errno.  *ret_fd is set in the first
 * two cases only.
 */
int
sock_connect_tcp(const char *host, const char *port, int *ret_fd)
{
	struct addrinfo	 hints, *res;
	int		 r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0)
		return r == EAI_SYSTEM ? -errno : -SOCK_ENORESOLVE;
	r = sock_connect_ai(res, ret_fd, NULL);
	freeaddrinfo(res);
	return r;
}

/*
 * sock_connect_tcp() for addresses already looked up: the first address
 * whose connect does not fail at once; *used (if not NULL) is set to it,
 * so that the caller can go on with the next one when the connection is
 * refused later.
 */
int
sock_connect_ai(const struct addrinfo *res, int *ret_fd,
    const struct addrinfo **used)
{
	const struct addrinfo	*ai;
	int			 fd, r = -EHOSTUNREACH;

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			r = 0;
		} else if (errno == EINPROGRESS) {
			r = -EINPROGRESS;
		} else {
			r = -errno;
			close(fd);
			continue;
		}
		*ret_fd = fd;
		if (used != NULL)
			*used = ai;
		break;
	}
	return r;
}

int
sock_connect_uri(const struct mig_uri *u, int *ret_fd)
{
	struct sockaddr_un	 sun;
	int			 fd, r;

	if (u->kind == URI_TCP)
		return sock_connect_tcp(u->host, u->port, ret_fd);
	if ((r = sock_unix_addr(u->path, &sun)) != 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		*ret_fd = fd;
		return 0;
	}
	r = -errno;
	if (r == -EINPROGRESS || r == -EAGAIN) {
		/* A full unix backlog: wait for writability like TCP. */
		*ret_fd = fd;
		return -EINPROGRESS;
	}
	close(fd);
	return r;
}

/* After writability: 0 when connected, else -errno of the failure. */
int
sock_connect_result(int fd)
{
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -errno;
	return -err;
}

int
sock_accept(int lfd)
{
	int	 fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int
sock_is_tcp(int fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	return ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
}

/*
 * Relay channels: no Nagle (the relay batches itself), and a dead peer is
 * noticed within timeout_ms even when no data moves (keepalive) or when
 * sent data is never acknowledged (TCP_USER_TIMEOUT).
 */
void
sock_tune_link(int fd, unsigned int timeout_ms)
{
	int	 one = 1, idle, intvl = 1, cnt;
	unsigned int ut = timeout_ms;

	idle = (int)(timeout_ms / 2000);
	if (idle < 1)
		idle = 1;
	cnt = (int)(timeout_ms / 1000) - idle;
	if (cnt < 1)
		cnt = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
}

void
sock_tune_qemu(int fd)
{
	int	 one = 1;

	if (sock_is_tcp(fd))
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* "ADDR:PORT", "[V6]:PORT" or "unix:PATH"; returns 0 or -ENOSPC. */
int
sock_addr_format(const struct sockaddr *sa, socklen_t salen, char *buf,
    size_t len)
{
	char	 host[INET6_ADDRSTRLEN];
	int	 n;

	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		n = snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		n = snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const void *)sa;

		if (salen <= sizeof(sa_family_t))
			n = snprintf(buf, len, "unix:");
		else
			n = snprintf(buf, len, "unix:%.*s",
			    (int)(salen - sizeof(sa_family_t)), sun->sun_path);
		break;
	}
	default:
		n = snprintf(buf, len, "?");
		break;
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int
sock_local_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -errno;
	return sock_addr_format((struct sockaddr *)&ss, sl, buf, len);
}

int
sock_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -errno;
	return sock_addr_format((struct sockaddr *)&ss, sl, buf, len);
}
