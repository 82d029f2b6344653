/*
 * tls.c - TLS for relay channels.
 *
 * Policy, the same on both ends: TLS 1.3 only, mutual authentication
 * against ca-cert.pem (plus ca-crl.pem when present), no session tickets
 * or resumption.  The accepting relay presents server-cert.pem and
 * requires a client certificate whose extended key usage allows TLS client
 * authentication; the connecting relay presents client-cert.pem and checks
 * that the server certificate allows TLS server authentication and names
 * the host or IP address it dialled (subjectAltName, RFC 6125: no
 * fallback to the common name).
 *
 * Non-blocking use: every call maps SSL_ERROR_WANT_READ/WRITE to -EAGAIN
 * and says which direction it waits for.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

static int	 tls_obuf_init(void);

static void
tls_err(char *err, size_t errlen, const char *what)
{
	unsigned long	 e = ERR_get_error();
	char		 buf[256];

	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s", what, buf);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

static int
tls_file_exists(const char *dir, const char *name, char *path, size_t len)
{
	struct stat	 st;

	snprintf(path, len, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/*
 * One context for one role.  Returns NULL (with err set) on failure, or
 * NULL with err empty when the role's certificate is absent.
 */
static SSL_CTX *
tls_ctx_new(const char *dir, int server, char *err, size_t errlen)
{
	SSL_CTX		*ctx;
	X509_STORE	*store;
	X509_CRL	*crl;
	FILE		*fp;
	char		 cert[4200], key[4200], ca[4200], crlpath[4200];
	struct stat	 st;

	err[0] = '\0';
	if (!tls_file_exists(dir, server ? "server-cert.pem" :
	    "client-cert.pem", cert, sizeof(cert)))
		return NULL;
	tls_file_exists(dir, server ? "server-key.pem" : "client-key.pem",
	    key, sizeof(key));
	if (!tls_file_exists(dir, "ca-cert.pem", ca, sizeof(ca))) {
		snprintf(err, errlen, "%s: missing (needed to verify peers)", ca);
		return NULL;
	}
	if (stat(key, &st) == 0 && (st.st_mode & S_IROTH)) {
		snprintf(err, errlen, "%s: private key is readable by others "
		    "(chmod 600 or 640)", key);
		return NULL;
	}
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		tls_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	/* AES-128-GCM first: as safe here and the fastest with AES-NI. */
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Small while handshaking; channels grow it once they are bound. */
	SSL_CTX_set_default_read_buffer_len(ctx, 16 * 1024 + 512);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_err(err, errlen, cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls_err(err, errlen, key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_err(err, errlen, "certificate and private key do not match");
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		tls_err(err, errlen, ca);
		goto fail;
	}
	store = SSL_CTX_get_cert_store(ctx);
	if (tls_file_exists(dir, "ca-crl.pem", crlpath, sizeof(crlpath))) {
		if ((fp = fopen(crlpath, "r")) == NULL) {
			snprintf(err, errlen, "%s: %s", crlpath, strerror(errno));
			goto fail;
		}
		crl = PEM_read_X509_CRL(fp, NULL, NULL, NULL);
		fclose(fp);
		if (crl == NULL || X509_STORE_add_crl(store, crl) != 1) {
			X509_CRL_free(crl);
			tls_err(err, errlen, crlpath);
			goto fail;
		}
		X509_CRL_free(crl);
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK |
		    X509_V_FLAG_CRL_CHECK_ALL);
	}
	/* The peer's certificate must be meant for the peer's role. */
	SSL_CTX_set_purpose(ctx, server ? X509_PURPOSE_SSL_CLIENT :
	    X509_PURPOSE_SSL_SERVER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return ctx;
 fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * Load a tls-dir.  At least one of the two roles must be present.
 * Returns 0 and a new object, or -EINVAL with err set; a broken file is
 * an error even when the other role loads.
 */
int
tls_creds_load(const char *dir, struct tls_creds **ret, char *err,
    size_t errlen)
{
	struct tls_creds	*c;

	struct stat		 st;

	if (tls_obuf_init() != 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: %s", dir, stat(dir, &st) != 0 ?
		    strerror(errno) : "not a directory");
		return -EINVAL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	c->server = tls_ctx_new(dir, 1, err, errlen);
	if (c->server == NULL && err[0] != '\0')
		goto fail;
	c->client = tls_ctx_new(dir, 0, err, errlen);
	if (c->client == NULL && err[0] != '\0')
		goto fail;
	if (c->server == NULL && c->client == NULL) {
		snprintf(err, errlen, "%s: neither server-cert.pem nor "
		    "client-cert.pem found", dir);
		goto fail;
	}
	*ret = c;
	return 0;
 fail:
	tls_creds_free(c);
	return -EINVAL;
}

/* Contexts are reference counted by OpenSSL: live connections keep theirs. */
void
tls_creds_free(struct tls_creds *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->server);
	SSL_CTX_free(c->client);
	free(c);
}

/*
 * A connection on fd.  A client checks the peer certificate against
 * peer_host: an IP address literal must be in an iPAddress SAN, a name in
 * a dNSName SAN.
 */
SSL *
tls_conn_new(struct tls_creds *c, int fd, int server, const char *peer_host,
    char *err, size_t errlen)
{
	SSL		*ssl;
	SSL_CTX		*ctx = server ? c->server : c->client;
	unsigned char	 addr[16];

	if (ctx == NULL) {
		snprintf(err, errlen, "no %s certificate in %s", server ?
		    "server-cert.pem" : "client-cert.pem", c->dir);
		return NULL;
	}
	if ((ssl = SSL_new(ctx)) == NULL) {
		tls_err(err, errlen, "SSL_new");
		return NULL;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		tls_err(err, errlen, "SSL_set_fd");
		SSL_free(ssl);
		return NULL;
	}
	if (server) {
		SSL_set_accept_state(ssl);
		return ssl;
	}
	SSL_set_connect_state(ssl);
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (inet_pton(AF_INET, peer_host, addr) == 1 ||
	    inet_pton(AF_INET6, peer_host, addr) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    peer_host) != 1) {
			tls_err(err, errlen, "bad peer address");
			SSL_free(ssl);
			return NULL;
		}
	} else {
		if (SSL_set1_host(ssl, peer_host) != 1 ||
		    SSL_set_tlsext_host_name(ssl, peer_host) != 1) {
			tls_err(err, errlen, "bad peer host name");
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/* The reason of the last -EPROTO from tls_read/tls_write (per thread). */
static __thread char tls_errbuf[256];

const char *
tls_last_error(void)
{
	return tls_errbuf;
}

static int
tls_want(SSL *ssl, int r, int *ret_want)
{
	unsigned long	 e;

	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*ret_want = TLS_WANT_READ;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*ret_want = TLS_WANT_WRITE;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		return errno != 0 ? -errno : -ECONNRESET;
	default:
		e = ERR_peek_last_error();
		if (e != 0)
			ERR_error_string_n(e, tls_errbuf, sizeof(tls_errbuf));
		else
			snprintf(tls_errbuf, sizeof(tls_errbuf), "TLS error");
		return -EPROTO;
	}
}

/*
 * Drive the handshake: 1 when done, 0 when waiting (*ret_want set), -1 on
 * failure with a description (certificate verification result included).
 */
int
tls_handshake(SSL *ssl, int *ret_want, char *err, size_t errlen)
{
	int		 r;
	long		 v;
	unsigned long	 e;
	char		 buf[256];

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(ssl);
	if (r == 1)
		return 1;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*ret_want = TLS_WANT_READ;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*ret_want = TLS_WANT_WRITE;
		return 0;
	default:
		break;
	}
	v = SSL_get_verify_result(ssl);
	e = ERR_peek_last_error();
	if (v != X509_V_OK) {
		snprintf(err, errlen, "certificate verification failed: %s",
		    X509_verify_cert_error_string(v));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		if (ERR_GET_REASON(e) == SSL_R_UNSUPPORTED_PROTOCOL ||
		    ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
			snprintf(err, errlen, "TLS handshake failed: the peer "
			    "does not speak TLS 1.3 (%s)", buf);
		else if (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
		    ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG ||
		    ERR_GET_REASON(e) == SSL_R_RECORD_LENGTH_MISMATCH)
			snprintf(err, errlen, "TLS handshake failed: the peer "
			    "does not speak TLS (is it in --insecure-plaintext "
			    "mode?) (%s)", buf);
		else
			snprintf(err, errlen, "TLS handshake failed: %s", buf);
	} else if (errno != 0) {
		snprintf(err, errlen, "TLS handshake failed: %s",
		    strerror(errno));
	} else {
		snprintf(err, errlen, "TLS handshake failed: connection "
		    "closed by the peer");
	}
	ERR_clear_error();
	return -1;
}

/* >0 bytes, 0 on EOF, -EAGAIN (*ret_want set) or another -errno. */
ssize_t
tls_read(SSL *ssl, void *buf, size_t len, int *ret_want)
{
	size_t	 n = 0;
	int	 r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read_ex(ssl, buf, len, &n);
	if (r == 1)
		return (ssize_t)n;
	r = tls_want(ssl, r, ret_want);
	ERR_clear_error();
	return r;
}

ssize_t
tls_write(SSL *ssl, const void *buf, size_t len, int *ret_want)
{
	size_t	 n = 0;
	int	 r;

	ERR_clear_error();
	errno = 0;
	r = SSL_write_ex(ssl, buf, len, &n);
	if (r == 1)
		return (ssize_t)n;
	r = tls_want(ssl, r, ret_want);
	ERR_clear_error();
	return r == 0 ? -EPIPE : r;
}

/*
 * Output buffering for established connections.  With partial writes,
 * OpenSSL hands every 16 KiB record to its write BIO at once; on a socket
 * BIO that is one write() per record.  tls_buffer_output() puts in a BIO
 * that only appends ciphertext to a heap buffer and never refuses (it
 * grows if it must), so SSL_write never waits and its "retry with the
 * same arguments" rule never applies; tls_flush_output() then sends the
 * records of a whole batch with few large write()s.  The socket BIO stays
 * for reading.  Handshake, KeyUpdate and close_notify records land in the
 * buffer too, once it is in place.
 */
struct tls_obuf {
	uint8_t		*buf;
	size_t		 len;		/* bytes in buf */
	size_t		 off;		/* bytes of them written */
	size_t		 cap;
};

static BIO_METHOD	*obuf_method;
static int		 obuf_type;

static int
obuf_write(BIO *b, const char *data, int dlen)
{
	struct tls_obuf	*o = BIO_get_data(b);
	size_t		 len = dlen > 0 ? (size_t)dlen : 0, ncap;
	uint8_t		*nb;

	BIO_clear_retry_flags(b);
	if (o->off == o->len)
		o->off = o->len = 0;
	if (o->len + len > o->cap) {
		ncap = o->cap > 0 ? o->cap : 64 * 1024;
		while (ncap < o->len + len)
			ncap *= 2;
		if ((nb = realloc(o->buf, ncap)) == NULL)
			return -1;
		o->buf = nb;
		o->cap = ncap;
	}
	memcpy(o->buf + o->len, data, len);
	o->len += len;
	return (int)len;
}

static long
obuf_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_obuf	*o = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_WPENDING:
		return o != NULL ? (long)(o->len - o->off) : 0;
	default:
		return 0;
	}
}

static int
obuf_create(BIO *b)
{
	BIO_set_data(b, NULL);
	BIO_set_init(b, 1);
	return 1;
}

static int
obuf_destroy(BIO *b)
{
	struct tls_obuf	*o = BIO_get_data(b);

	if (o != NULL) {
		free(o->buf);
		free(o);
	}
	BIO_set_data(b, NULL);
	return 1;
}

static struct tls_obuf *
tls_obuf_of(SSL *ssl)
{
	BIO	*b = SSL_get_wbio(ssl);

	if (b == NULL || obuf_method == NULL ||
	    BIO_method_type(b) != obuf_type)
		return NULL;
	return BIO_get_data(b);
}

/* Once, before threads start using it (tls_creds_load). */
static int
tls_obuf_init(void)
{
	BIO_METHOD	*m;

	if (obuf_method != NULL)
		return 0;
	obuf_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	m = BIO_meth_new(obuf_type, "migrelay output buffer");
	if (m == NULL || BIO_meth_set_write(m, obuf_write) != 1 ||
	    BIO_meth_set_ctrl(m, obuf_ctrl) != 1 ||
	    BIO_meth_set_create(m, obuf_create) != 1 ||
	    BIO_meth_set_destroy(m, obuf_destroy) != 1) {
		BIO_meth_free(m);
		return -1;
	}
	obuf_method = m;
	return 0;
}

/* Buffer the output of an established connection.  0, or -ENOMEM. */
int
tls_buffer_output(SSL *ssl)
{
	struct tls_obuf	*o;
	BIO		*b;

	if (obuf_method == NULL || (o = calloc(1, sizeof(*o))) == NULL)
		return -ENOMEM;
	if ((b = BIO_new(obuf_method)) == NULL) {
		free(o);
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(b, o);
	SSL_set0_wbio(ssl, b);
	return 0;
}

/* Ciphertext waiting to be written. */
size_t
tls_output_pending(SSL *ssl)
{
	struct tls_obuf	*o = tls_obuf_of(ssl);

	return o != NULL ? o->len - o->off : 0;
}

/*
 * Write buffered ciphertext to fd.  Returns the bytes still pending (0:
 * all written), -EAGAIN when the socket took nothing, or -errno.
 */
ssize_t
tls_flush_output(SSL *ssl, int fd)
{
	struct tls_obuf	*o = tls_obuf_of(ssl);
	ssize_t		 w;

	if (o == NULL)
		return 0;
	while (o->off < o->len) {
		w = write(fd, o->buf + o->off, o->len - o->off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -EAGAIN : -errno;
		}
		o->off += (size_t)w;
		if (o->off < o->len)
			return (ssize_t)(o->len - o->off);
	}
	o->off = o->len = 0;
	return 0;
}

/* RFC 9266 tls-exporter: label "EXPORTER-Channel-Binding", empty context. */
int
tls_exporter(SSL *ssl, uint8_t out[TLS_EXPORTER_LEN])
{
	static const char	 label[] = "EXPORTER-Channel-Binding";

	if (SSL_export_keying_material(ssl, out, TLS_EXPORTER_LEN, label,
	    sizeof(label) - 1, NULL, 0, 1) != 1) {
		ERR_clear_error();
		return -EPROTO;
	}
	return 0;
}

/* The peer certificate's subject, one line. */
int
tls_peer_identity(SSL *ssl, char *buf, size_t len)
{
	X509	*cert = SSL_get0_peer_certificate(ssl);

	if (cert == NULL || len == 0)
		return -ENOENT;
	X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
	return 0;
}

int
tls_key_update(SSL *ssl)
{
	if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
		ERR_clear_error();
		return -EPROTO;
	}
	return 0;
}

/* Best effort close_notify, then free. */
void
tls_close(SSL *ssl)
{
	if (ssl == NULL)
		return;
	if (SSL_is_init_finished(ssl)) {
		SSL_shutdown(ssl);
		/* The close_notify, if the socket takes it now. */
		if (tls_output_pending(ssl) > 0)
			(void)tls_flush_output(ssl, SSL_get_rfd(ssl));
	}
	ERR_clear_error();
	SSL_free(ssl);
}

/* A TLS record header of a handshake message: 0x16 0x03 0x0[0-4]. */
int
tls_looks_like_client_hello(const uint8_t *p, size_t len)
{
	return len >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04;
}
