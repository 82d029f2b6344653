/*
 * tls.h - TLS 1.3 with mutual certificate authentication for relay
 * channels (OpenSSL 3), credentials in the QEMU/libvirt x509 layout.
 *
 * Conventions as in xport.h: 0 or a byte count on success, -errno style on
 * failure, never logging.  Errors meant for humans are written into a
 * caller-supplied buffer.
 */
#ifndef MIGRELAY_TLS_H
#define MIGRELAY_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define TLS_EXPORTER_LEN	32
#define TLS_KEY_UPDATE_BYTES	(32ULL << 30)	/* rekey every 32 GiB sent */

/* What an I/O call is waiting for. */
#define TLS_WANT_READ	1
#define TLS_WANT_WRITE	2

/* The credentials of a tls-dir: a server and/or a client context. */
struct tls_creds {
	SSL_CTX		*server;	/* NULL without server-cert.pem */
	SSL_CTX		*client;	/* NULL without client-cert.pem */
	char		 dir[4096];
};

int	 tls_creds_load(const char *dir, struct tls_creds **ret, char *err,
	    size_t errlen);
void	 tls_creds_free(struct tls_creds *);
SSL	*tls_conn_new(struct tls_creds *, int fd, int server,
	    const char *peer_host, char *err, size_t errlen);
int	 tls_handshake(SSL *, int *ret_want, char *err, size_t errlen);
ssize_t	 tls_read(SSL *, void *, size_t, int *ret_want);
ssize_t	 tls_write(SSL *, const void *, size_t, int *ret_want);
int	 tls_buffer_output(SSL *);
size_t	 tls_output_pending(SSL *);
ssize_t	 tls_flush_output(SSL *, int fd);
int	 tls_exporter(SSL *, uint8_t out[TLS_EXPORTER_LEN]);
int	 tls_peer_identity(SSL *, char *, size_t);
int	 tls_key_update(SSL *);
void	 tls_close(SSL *);
int	 tls_looks_like_client_hello(const uint8_t *, size_t);
const char *tls_last_error(void);

#endif /* MIGRELAY_TLS_H */
