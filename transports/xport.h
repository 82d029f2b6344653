/*
 * xport.h - socket transports: listening and non-blocking connecting for
 * unix and TCP endpoints, socket options and address formatting.
 *
 * Conventions: functions return a file descriptor or 0 on success and
 * -errno on failure; they never log.  Every descriptor is created with
 * SOCK_CLOEXEC and SOCK_NONBLOCK.
 */
#ifndef MIGRELAY_XPORT_H
#define MIGRELAY_XPORT_H

#include <sys/socket.h>

#include "proto.h"

/*
 * The socket functions return -errno on failure, or -SOCK_ENORESOLVE when
 * a host name does not resolve (not an errno value: sock_strerror() names
 * it).
 */
#define SOCK_ENORESOLVE	10000

const char	*sock_strerror(int err);
int	 sock_listen_uri(const struct mig_uri *, int backlog);
int	 sock_listen_tcp(const char *host, const char *port, int backlog);
int	 sock_connect_uri(const struct mig_uri *, int *ret_fd);
int	 sock_connect_tcp(const char *host, const char *port, int *ret_fd);
struct addrinfo;
int	 sock_listen_ai(const struct addrinfo *, int backlog);
int	 sock_connect_ai(const struct addrinfo *, int *ret_fd,
	    const struct addrinfo **used);
int	 sock_connect_result(int fd);
int	 sock_accept(int lfd);
void	 sock_tune_link(int fd, unsigned int timeout_ms);
void	 sock_tune_qemu(int fd);
int	 sock_addr_format(const struct sockaddr *, socklen_t, char *, size_t);
int	 sock_local_name(int fd, char *, size_t);
int	 sock_peer_name(int fd, char *, size_t);

#endif /* MIGRELAY_XPORT_H */
