/*
 * scram.c - SCRAM-SHA-256(-PLUS) client and server (RFC 5802, RFC 7677),
 * channel binding "tls-exporter" (RFC 9266).
 *
 * The exchange is four messages:
 *
 *	C: gs2-header client-first-message-bare	"n,,n=user,r=<cnonce>"
 *	S: server-first-message			"r=<cnonce><snonce>,s=<salt>,i=<n>"
 *	C: client-final-message			"c=<b64 cbind>,r=<nonce>,p=<proof>"
 *	S: server-final-message			"v=<signature>" or "e=<reason>"
 *
 * and both sides sign AuthMessage, the concatenation of the bare first
 * message, the server-first message and the client-final message without
 * its proof, each taken verbatim as it went over the wire.  With a binding,
 * "c=" carries the TLS exporter value of the connection the client sees, so
 * a man in the middle who terminates TLS on both sides presents two
 * different values and the server notices.
 *
 * The parsers are strict, in the manner of PostgreSQL's auth-scram.c:
 * messages are bounded by SCRAM_MAX_MSG and printable ASCII, attributes
 * come in the order of the grammar, an unknown optional extension is
 * skipped but a reserved or repeated attribute name is an error, base64
 * must be canonical and padded, and nothing may follow the proof.
 *
 * Channel binding policy: a client on a TLS link always binds
 * ("p=tls-exporter"), and a server on a TLS link requires it.  A client
 * that does not bind ("n" or "y") to such a server is a downgrade, which
 * could only come from something terminating TLS in between; the server
 * lets the exchange run and answers "e=channel-bindings-dont-match" at the
 * end, so the client hears the reason in band, as it does for a binding
 * that does not match.  A client that binds to a server without TLS, or
 * asks for any other binding type, is refused at once with -EPROTO, since
 * the server has no value to compare with.
 *
 * Against probing, the server answers an unknown user with a stable fake
 * salt (HMAC of the name under a per-daemon secret) and the default
 * iteration count, computes and checks the proof as usual, and fails with
 * the same "e=invalid-proof" as for a wrong password.  StoredKey (server),
 * ServerSignature (client) and the channel binding are compared with
 * CRYPTO_memcmp(); secrets are wiped with OPENSSL_cleanse().
 *
 * The client refuses iteration counts outside SCRAM_ITER_MIN..MAX before
 * running PBKDF2, since a hostile server could otherwise make it burn CPU
 * (RFC 5802 section 9).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "scram.h"

#define SCRAM_GS2_N		"n,,"
#define SCRAM_GS2_Y		"y,,"
#define SCRAM_GS2_P		"p=tls-exporter,,"
#define SCRAM_CB_NAME		"tls-exporter"
#define SCRAM_VERIFIER_TAG	"SCRAM-SHA-256$"
#define SCRAM_GS2_MAX		(sizeof(SCRAM_GS2_P) - 1)
#define SCRAM_CBIND_MSG_MAX	(SCRAM_GS2_MAX + SCRAM_CBIND_LEN)
#define SCRAM_AUTHMSG_MAX	(3 * SCRAM_MAX_MSG + 2)
/* Attribute names RFC 5802 assigns; an extension must not reuse them. */
#define SCRAM_RESERVED_ATTRS	"aceimnprsv"

#define B64_LEN(n)		(4 * (((n) + 2) / 3))

static int	 b64_encode(const uint8_t *, size_t, char *, size_t);
static int	 b64_decode(const char *, size_t, uint8_t *, size_t, size_t *);
static int	 b64_value(int);
static int	 user_is_valid(const char *, size_t);
static int	 password_is_valid(const char *);
static int	 nonce_is_valid(const char *, size_t);
static int	 nonce_random(char *, size_t);
static int	 msg_check(const char *, size_t *);
static int	 attr_take(const char **, int, const char **, size_t *);
static int	 sep_take(const char **);
static int	 ext_take(const char **, unsigned int *);
static int	 ext_skip_to_end(const char **);
static int	 posnum_take(const char **, unsigned int *);
static int	 state_can(const unsigned int *, enum scram_state,
		    enum scram_state);
static int	 keys_derive(const char *, const uint8_t *, size_t,
		    unsigned int, uint8_t *, uint8_t *, uint8_t *);
static int	 hmac256(const uint8_t *, size_t, const void *, size_t,
		    uint8_t *);
static int	 cbind_b64(char, const uint8_t *, char *, size_t);
static size_t	 authmsg_build(char *, const char *, const char *,
		    const char *, size_t);
static const char *server_error_text(const char *, size_t);

/*
 * Allowed transitions of each role.  Failure is allowed from every live
 * state; a call that is not allowed from the current state is refused
 * with -EINVAL and changes nothing.
 */
#define SCRAM_BIT(s)	(1u << (s))
static const unsigned int scram_client_allowed[_SCRAM_ST_MAX] = {
	[SCRAM_ST_START]  = SCRAM_BIT(SCRAM_ST_FIRST) |
	    SCRAM_BIT(SCRAM_ST_FAILED),
	[SCRAM_ST_FIRST]  = SCRAM_BIT(SCRAM_ST_FINAL) |
	    SCRAM_BIT(SCRAM_ST_FAILED),
	[SCRAM_ST_FINAL]  = SCRAM_BIT(SCRAM_ST_DONE) |
	    SCRAM_BIT(SCRAM_ST_FAILED),
};
static const unsigned int scram_server_allowed[_SCRAM_ST_MAX] = {
	[SCRAM_ST_START]  = SCRAM_BIT(SCRAM_ST_FIRST) |
	    SCRAM_BIT(SCRAM_ST_FAILED),
	[SCRAM_ST_FIRST]  = SCRAM_BIT(SCRAM_ST_DONE) |
	    SCRAM_BIT(SCRAM_ST_FAILED),
};

/* The server-error-value names of RFC 5802, with what a log should say. */
static const struct {
	const char	*value;
	const char	*text;
} scram_server_errors[] = {
	{ .value = "invalid-encoding",
	    .text = "server error: invalid-encoding" },
	{ .value = "extensions-not-supported",
	    .text = "server error: extensions-not-supported" },
	{ .value = "invalid-proof",
	    .text = "server error: invalid-proof (wrong user name or password)" },
	{ .value = "channel-bindings-dont-match",
	    .text = "server error: channel-bindings-dont-match (TLS interception or downgrade)" },
	{ .value = "server-does-support-channel-binding",
	    .text = "server error: server-does-support-channel-binding" },
	{ .value = "channel-binding-not-supported",
	    .text = "server error: channel-binding-not-supported" },
	{ .value = "unsupported-channel-binding-type",
	    .text = "server error: unsupported-channel-binding-type" },
	{ .value = "unknown-user",
	    .text = "server error: unknown-user" },
	{ .value = "invalid-username-encoding",
	    .text = "server error: invalid-username-encoding" },
	{ .value = "no-resources",
	    .text = "server error: no-resources" },
	{ .value = "other-error",
	    .text = "server error: other-error" },
};

static int
state_can(const unsigned int *allowed, enum scram_state from,
    enum scram_state to)
{
	if ((unsigned int)from >= _SCRAM_ST_MAX)
		return 0;
	return (allowed[from] & SCRAM_BIT(to)) != 0;
}

/*
 * Base64 (RFC 4648, standard alphabet, padded).  Encoding writes a
 * NUL-terminated string and returns its length or -ENOSPC.
 */
static int
b64_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
	static const char	 tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t			 i, o = 0;
	uint32_t		 v;

	if (B64_LEN(len) >= outlen || B64_LEN(len) > INT_MAX)
		return -ENOSPC;
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = tab[(v >> 18) & 0x3f];
		out[o++] = tab[(v >> 12) & 0x3f];
		out[o++] = tab[(v >> 6) & 0x3f];
		out[o++] = tab[v & 0x3f];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = tab[(v >> 18) & 0x3f];
		out[o++] = tab[(v >> 12) & 0x3f];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = tab[(v >> 18) & 0x3f];
		out[o++] = tab[(v >> 12) & 0x3f];
		out[o++] = tab[(v >> 6) & 0x3f];
		out[o++] = '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int
b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict decoding of len characters: the length must be a multiple of
 * four, padding may only end the input, and the bits that padding leaves
 * over must be zero, so every byte string has exactly one accepted
 * encoding.  Returns 0 and the decoded length, or -EPROTO (also when the
 * result would not fit in outmax bytes).  out is scratch on failure.
 */
static int
b64_decode(const char *in, size_t len, uint8_t *out, size_t outmax,
    size_t *ret_len)
{
	size_t		 i, o = 0, pad = 0;
	int		 a, b, c, d;

	if (len % 4 != 0)
		return -EPROTO;
	if (len > 0 && in[len - 1] == '=')
		pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
	if (len / 4 * 3 - pad > outmax)
		return -EPROTO;
	for (i = 0; i < len; i += 4) {
		a = b64_value(in[i]);
		b = b64_value(in[i + 1]);
		if (a < 0 || b < 0)
			return -EPROTO;
		if (i + 4 == len && pad == 2) {
			if (in[i + 2] != '=' || in[i + 3] != '=' ||
			    (b & 0x0f) != 0)
				return -EPROTO;
			out[o++] = (uint8_t)(a << 2 | b >> 4);
			break;
		}
		c = b64_value(in[i + 2]);
		if (c < 0)
			return -EPROTO;
		if (i + 4 == len && pad == 1) {
			if (in[i + 3] != '=' || (c & 0x03) != 0)
				return -EPROTO;
			out[o++] = (uint8_t)(a << 2 | b >> 4);
			out[o++] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
			break;
		}
		d = b64_value(in[i + 3]);
		if (d < 0)
			return -EPROTO;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		out[o++] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
		out[o++] = (uint8_t)((c & 0x03) << 6 | d);
	}
	*ret_len = o;
	return 0;
}

/* 1..SCRAM_USER_MAX characters of [A-Za-z0-9_.@-]; never ',' or '='. */
static int
user_is_valid(const char *s, size_t len)
{
	size_t	 i;
	char	 c;

	if (len == 0 || len > SCRAM_USER_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		    c == '@' || c == '-'))
			return 0;
	}
	return 1;
}

/* 1..SCRAM_PASSWORD_MAX printable ASCII characters: SASLprep is a no-op. */
static int
password_is_valid(const char *s)
{
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i >= SCRAM_PASSWORD_MAX)
			return 0;
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	}
	return i > 0;
}

/* printable = %x21-2B / %x2D-7E, 1..SCRAM_NONCE_MAXLEN characters. */
static int
nonce_is_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len > SCRAM_NONCE_MAXLEN)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return 0;
	return 1;
}

/* SCRAM_NONCE_LEN random bytes in base64 (never contains ','). */
static int
nonce_random(char *out, size_t outlen)
{
	uint8_t	 raw[SCRAM_NONCE_LEN];
	int	 r;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	r = b64_encode(raw, sizeof(raw), out, outlen);
	OPENSSL_cleanse(raw, sizeof(raw));
	return r < 0 ? r : 0;
}

/* A peer message: 1..SCRAM_MAX_MSG characters of %x20-7E. */
static int
msg_check(const char *m, size_t *ret_len)
{
	size_t	 i, len;

	if (m == NULL)
		return -EINVAL;
	len = strnlen(m, SCRAM_MAX_MSG + 1);
	if (len == 0 || len > SCRAM_MAX_MSG)
		return -EPROTO;
	for (i = 0; i < len; i++)
		if (m[i] < 0x20 || m[i] > 0x7e)
			return -EPROTO;
	*ret_len = len;
	return 0;
}

/*
 * Take "<name>=<value>" at *pp; the value is non-empty and runs to the next
 * ',' or the end, where *pp is left.
 */
static int
attr_take(const char **pp, int name, const char **ret_val, size_t *ret_len)
{
	const char	*p = *pp;
	size_t		 len;

	if (p[0] != name || p[1] != '=')
		return -EPROTO;
	p += 2;
	len = strcspn(p, ",");
	if (len == 0)
		return -EPROTO;
	*ret_val = p;
	*ret_len = len;
	*pp = p + len;
	return 0;
}

static int
sep_take(const char **pp)
{
	if (**pp != ',')
		return -EPROTO;
	(*pp)++;
	return 0;
}

/*
 * Take one optional extension "<ALPHA>=<value>" at *pp.  Names RFC 5802
 * assigns, and names already seen in this message, are refused: a
 * repeated attribute is an error, not an extension.
 */
static int
ext_take(const char **pp, unsigned int *seen)
{
	const char	*val;
	size_t		 len;
	int		 c = (unsigned char)**pp, bit;

	if (c >= 'a' && c <= 'z')
		bit = c - 'a';
	else if (c >= 'A' && c <= 'Z')
		bit = c - 'A';
	else
		return -EPROTO;
	if (c >= 'a' && c <= 'z' && strchr(SCRAM_RESERVED_ATTRS, c) != NULL)
		return -EPROTO;
	/* Upper and lower case share a bit; both are rare enough. */
	if (*seen & (1u << bit))
		return -EPROTO;
	*seen |= 1u << bit;
	return attr_take(pp, c, &val, &len);
}

/* Skip ",ext" items until the end of the message; anything else is bad. */
static int
ext_skip_to_end(const char **pp)
{
	unsigned int	 seen = 0;
	int		 r;

	while (**pp == ',') {
		(*pp)++;
		if ((r = ext_take(pp, &seen)) != 0)
			return r;
	}
	return **pp == '\0' ? 0 : -EPROTO;
}

/*
 * posit-number = %x31-39 *DIGIT.  The value saturates at UINT_MAX so that
 * any overlong number is still out of range rather than malformed.
 */
static int
posnum_take(const char **pp, unsigned int *ret)
{
	const char	*p = *pp;
	unsigned int	 v = 0, d;

	if (*p < '1' || *p > '9')
		return -EPROTO;
	for (; *p >= '0' && *p <= '9'; p++) {
		d = (unsigned int)(*p - '0');
		v = v > (UINT_MAX - d) / 10 ? UINT_MAX : v * 10 + d;
	}
	*ret = v;
	*pp = p;
	return 0;
}

static int
hmac256(const uint8_t *key, size_t keylen, const void *data, size_t len,
    uint8_t *out)
{
	unsigned int	 outlen = 0;

	if (keylen > INT_MAX)
		return -EINVAL;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out,
	    &outlen) == NULL || outlen != SCRAM_KEY_LEN)
		return -EIO;
	return 0;
}

/*
 * SaltedPassword := PBKDF2-HMAC-SHA-256(password, salt, iter)
 * ClientKey      := HMAC(SaltedPassword, "Client Key")
 * StoredKey      := SHA-256(ClientKey)
 * ServerKey      := HMAC(SaltedPassword, "Server Key")
 * client_key may be NULL.  The caller range-checks iter first.
 */
static int
keys_derive(const char *password, const uint8_t *salt, size_t saltlen,
    unsigned int iter, uint8_t *client_key, uint8_t *stored_key,
    uint8_t *server_key)
{
	uint8_t		 salted[SCRAM_KEY_LEN], ck[SCRAM_KEY_LEN];
	size_t		 plen = strlen(password);
	int		 r = -EIO;

	if (plen > INT_MAX || saltlen > INT_MAX || iter > INT_MAX)
		return -EINVAL;
	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)saltlen,
	    (int)iter, EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if ((r = hmac256(salted, sizeof(salted), "Client Key", 10, ck)) != 0)
		goto out;
	if ((r = hmac256(salted, sizeof(salted), "Server Key", 10,
	    server_key)) != 0)
		goto out;
	if (SHA256(ck, sizeof(ck), stored_key) == NULL) {
		r = -EIO;
		goto out;
	}
	if (client_key != NULL)
		memcpy(client_key, ck, sizeof(ck));
	r = 0;
 out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ck, sizeof(ck));
	return r;
}

/* The expected "c=" value: base64(gs2 header [+ binding data]). */
static int
cbind_b64(char flag, const uint8_t *cbind, char *out, size_t outlen)
{
	uint8_t		 buf[SCRAM_CBIND_MSG_MAX];
	size_t		 len;
	int		 r;

	switch (flag) {
	case 'n':
		len = sizeof(SCRAM_GS2_N) - 1;
		memcpy(buf, SCRAM_GS2_N, len);
		break;
	case 'y':
		len = sizeof(SCRAM_GS2_Y) - 1;
		memcpy(buf, SCRAM_GS2_Y, len);
		break;
	case 'p':
		len = sizeof(SCRAM_GS2_P) - 1;
		memcpy(buf, SCRAM_GS2_P, len);
		memcpy(buf + len, cbind, SCRAM_CBIND_LEN);
		len += SCRAM_CBIND_LEN;
		break;
	default:
		return -EINVAL;
	}
	r = b64_encode(buf, len, out, outlen);
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

/*
 * AuthMessage := client-first-message-bare "," server-first-message ","
 * client-final-message-without-proof.  out holds SCRAM_AUTHMSG_MAX + 1
 * bytes, which the bounded inputs cannot exceed.  Returns the length.
 */
static size_t
authmsg_build(char *out, const char *bare, const char *first,
    const char *final, size_t finallen)
{
	size_t	 a = strlen(bare), b = strlen(first);

	memcpy(out, bare, a);
	out[a] = ',';
	memcpy(out + a + 1, first, b);
	out[a + 1 + b] = ',';
	memcpy(out + a + b + 2, final, finallen);
	out[a + b + 2 + finallen] = '\0';
	return a + b + 2 + finallen;
}

static const char *
server_error_text(const char *val, size_t len)
{
	size_t	 i;

	for (i = 0; i < sizeof(scram_server_errors) /
	    sizeof(scram_server_errors[0]); i++) {
		if (strlen(scram_server_errors[i].value) == len &&
		    memcmp(scram_server_errors[i].value, val, len) == 0)
			return scram_server_errors[i].text;
	}
	return "server error: unrecognised reason";
}

int
scram_verifier_parse(const char *line, struct scram_verifier *ret,
    const char **errstr)
{
	struct scram_verifier	 v;
	const char		*p = line, *err;
	size_t			 len, n;
	int			 r = -EINVAL;

	if (line == NULL || ret == NULL) {
		if (errstr != NULL)
			*errstr = "missing argument";
		return -EINVAL;
	}
	memset(&v, 0, sizeof(v));

	len = strcspn(p, ":");
	if (!user_is_valid(p, len)) {
		err = "bad user name (1-64 characters of A-Z a-z 0-9 _ . @ -)";
		goto out;
	}
	memcpy(v.user, p, len);
	p += len;
	if (*p++ != ':' || strncmp(p, SCRAM_VERIFIER_TAG,
	    sizeof(SCRAM_VERIFIER_TAG) - 1) != 0) {
		err = "expected SCRAM-SHA-256$ after the user name";
		goto out;
	}
	p += sizeof(SCRAM_VERIFIER_TAG) - 1;
	if (posnum_take(&p, &v.iter) != 0 || *p++ != ':') {
		err = "bad iteration count";
		goto out;
	}
	len = strcspn(p, "$");
	if (b64_decode(p, len, v.salt, sizeof(v.salt), &n) != 0 || n == 0) {
		err = "bad salt (base64 of 1-64 bytes)";
		goto out;
	}
	v.saltlen = n;
	p += len;
	if (*p++ != '$') {
		err = "expected $ after the salt";
		goto out;
	}
	len = strcspn(p, ":");
	if (b64_decode(p, len, v.stored_key, sizeof(v.stored_key), &n) != 0 ||
	    n != SCRAM_KEY_LEN) {
		err = "bad StoredKey (base64 of 32 bytes)";
		goto out;
	}
	p += len;
	if (*p++ != ':') {
		err = "expected : after the StoredKey";
		goto out;
	}
	len = strcspn(p, "\n");
	if (b64_decode(p, len, v.server_key, sizeof(v.server_key), &n) != 0 ||
	    n != SCRAM_KEY_LEN) {
		err = "bad ServerKey (base64 of 32 bytes)";
		goto out;
	}
	p += len;
	if (*p == '\n')
		p++;
	if (*p != '\0') {
		err = "trailing characters after the ServerKey";
		goto out;
	}
	if (v.iter < SCRAM_ITER_MIN || v.iter > SCRAM_ITER_MAX) {
		err = "iteration count out of range (4096-100000)";
		r = -ERANGE;
		goto out;
	}
	*ret = v;
	r = 0;
 out:
	OPENSSL_cleanse(&v, sizeof(v));
	if (r != 0 && errstr != NULL)
		*errstr = err;
	return r;
}

int
scram_verifier_make(const char *user, const char *password,
    unsigned int iter, const uint8_t *salt, size_t saltlen, char *out,
    size_t outlen)
{
	uint8_t		 rsalt[SCRAM_SALT_MAX];
	uint8_t		 stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	char		 bsalt[B64_LEN(SCRAM_SALT_MAX) + 1];
	char		 bstored[B64_LEN(SCRAM_KEY_LEN) + 1];
	char		 bserver[B64_LEN(SCRAM_KEY_LEN) + 1];
	char		 line[SCRAM_VERIFIER_MAX];
	int		 n, r;

	if (user == NULL || password == NULL || out == NULL)
		return -EINVAL;
	if (!user_is_valid(user, strnlen(user, SCRAM_USER_MAX + 1)) ||
	    !password_is_valid(password))
		return -EINVAL;
	if (iter == 0)
		iter = SCRAM_ITER_DEFAULT;
	if (iter < SCRAM_ITER_MIN || iter > SCRAM_ITER_MAX)
		return -ERANGE;
	if (salt == NULL) {
		if (saltlen == 0)
			saltlen = SCRAM_SALT_LEN;
		if (saltlen > sizeof(rsalt))
			return -EINVAL;
		if (RAND_bytes(rsalt, (int)saltlen) != 1)
			return -EIO;
		salt = rsalt;
	}
	if (saltlen == 0 || saltlen > SCRAM_SALT_MAX)
		return -EINVAL;

	if ((r = keys_derive(password, salt, saltlen, iter, NULL, stored,
	    server)) != 0)
		goto out;
	if ((r = b64_encode(salt, saltlen, bsalt, sizeof(bsalt))) < 0 ||
	    (r = b64_encode(stored, sizeof(stored), bstored,
	    sizeof(bstored))) < 0 ||
	    (r = b64_encode(server, sizeof(server), bserver,
	    sizeof(bserver))) < 0)
		goto out;
	n = snprintf(line, sizeof(line), "%s:%s%u:%s$%s:%s", user,
	    SCRAM_VERIFIER_TAG, iter, bsalt, bstored, bserver);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		r = -EIO;
		goto out;
	}
	if ((size_t)n >= outlen) {
		r = -ENOSPC;
		goto out;
	}
	memcpy(out, line, (size_t)n + 1);
	r = 0;
 out:
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	OPENSSL_cleanse(bstored, sizeof(bstored));
	OPENSSL_cleanse(bserver, sizeof(bserver));
	OPENSSL_cleanse(line, sizeof(line));
	return r;
}

int
scram_client_init(struct scram_client *c, const char *user,
    const char *password, const uint8_t *cbind, const char *nonce)
{
	size_t	 len;
	int	 r;

	if (c == NULL)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	if (user == NULL || password == NULL)
		return -EINVAL;
	len = strnlen(user, SCRAM_USER_MAX + 1);
	if (!user_is_valid(user, len) || !password_is_valid(password))
		return -EINVAL;
	if (nonce != NULL) {
		if (!nonce_is_valid(nonce, strnlen(nonce,
		    SCRAM_NONCE_MAXLEN + 1)))
			return -EINVAL;
		memcpy(c->sc_nonce, nonce, strlen(nonce) + 1);
	} else if ((r = nonce_random(c->sc_nonce, sizeof(c->sc_nonce))) != 0)
		return r;
	memcpy(c->sc_user, user, len + 1);
	memcpy(c->sc_password, password, strlen(password) + 1);
	if (cbind != NULL) {
		memcpy(c->sc_cbind, cbind, SCRAM_CBIND_LEN);
		c->sc_cbind_on = 1;
	}
	c->sc_state = SCRAM_ST_START;
	return 0;
}

int
scram_client_first(struct scram_client *c, char *out, size_t outlen)
{
	const char	*gs2;
	int		 n;

	if (c == NULL || out == NULL || !state_can(scram_client_allowed,
	    c->sc_state, SCRAM_ST_FIRST))
		return -EINVAL;
	gs2 = c->sc_cbind_on ? SCRAM_GS2_P : SCRAM_GS2_N;
	n = snprintf(c->sc_bare, sizeof(c->sc_bare), "n=%s,r=%s", c->sc_user,
	    c->sc_nonce);
	if (n < 0 || (size_t)n >= sizeof(c->sc_bare) ||
	    strlen(gs2) + (size_t)n >= outlen) {
		c->sc_state = SCRAM_ST_FAILED;
		return -ENOSPC;
	}
	snprintf(out, outlen, "%s%s", gs2, c->sc_bare);
	c->sc_state = SCRAM_ST_FIRST;
	return 0;
}

int
scram_client_final(struct scram_client *c, const char *server_first,
    char *out, size_t outlen, const char **errstr)
{
	uint8_t		 salt[SCRAM_SALT_MAX], ck[SCRAM_KEY_LEN];
	uint8_t		 stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	uint8_t		 sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char		 final[SCRAM_MAX_MSG + 1];
	char		 authmsg[SCRAM_AUTHMSG_MAX + 1];
	char		 cb[B64_LEN(SCRAM_CBIND_MSG_MAX) + 1];
	char		 bproof[B64_LEN(SCRAM_KEY_LEN) + 1];
	const char	*p, *nonce, *bsalt, *err = NULL;
	size_t		 len, nlen, blen, saltlen, cn, flen, alen, i;
	unsigned int	 iter;
	int		 n, r;

	if (c == NULL || out == NULL || server_first == NULL ||
	    !state_can(scram_client_allowed, c->sc_state, SCRAM_ST_FINAL))
		return -EINVAL;

	/* Parse completely, and check the bounds, before any PBKDF2 work. */
	r = -EPROTO;
	if (msg_check(server_first, &len) != 0) {
		err = "server-first-message is empty, too long or not printable";
		goto out;
	}
	p = server_first;
	if (p[0] == 'm' && p[1] == '=') {
		err = "server-first-message has a mandatory extension";
		goto out;
	}
	if (attr_take(&p, 'r', &nonce, &nlen) != 0 || sep_take(&p) != 0 ||
	    attr_take(&p, 's', &bsalt, &blen) != 0 || sep_take(&p) != 0 ||
	    p[0] != 'i' || p[1] != '=') {
		err = "malformed server-first-message";
		goto out;
	}
	p += 2;
	if (posnum_take(&p, &iter) != 0 || (*p != ',' && *p != '\0') ||
	    ext_skip_to_end(&p) != 0) {
		err = "malformed iteration count or extension in server-first-message";
		goto out;
	}
	cn = strlen(c->sc_nonce);
	if (nlen <= cn || nlen - cn > SCRAM_NONCE_MAXLEN ||
	    memcmp(nonce, c->sc_nonce, cn) != 0 ||
	    !nonce_is_valid(nonce + cn, nlen - cn)) {
		err = "server nonce does not extend the client nonce";
		goto out;
	}
	if (b64_decode(bsalt, blen, salt, sizeof(salt), &saltlen) != 0 ||
	    saltlen == 0) {
		err = "bad salt in server-first-message";
		goto out;
	}
	if (iter < SCRAM_ITER_MIN || iter > SCRAM_ITER_MAX) {
		err = "server iteration count out of range (4096-100000)";
		r = -ERANGE;
		goto out;
	}

	/* client-final-message-without-proof */
	if ((r = cbind_b64(c->sc_cbind_on ? 'p' : 'n', c->sc_cbind, cb,
	    sizeof(cb))) < 0)
		goto out;
	n = snprintf(final, sizeof(final), "c=%s,r=%.*s", cb, (int)nlen,
	    nonce);
	if (n < 0 || (size_t)n >= sizeof(final)) {
		r = -EIO;
		goto out;
	}
	flen = (size_t)n;

	if ((r = keys_derive(c->sc_password, salt, saltlen, iter, ck, stored,
	    server)) != 0) {
		err = "key derivation failed";
		goto out;
	}
	alen = authmsg_build(authmsg, c->sc_bare, server_first, final, flen);
	/* ClientProof := ClientKey XOR HMAC(StoredKey, AuthMessage) */
	if ((r = hmac256(stored, sizeof(stored), authmsg, alen, sig)) != 0 ||
	    (r = hmac256(server, sizeof(server), authmsg, alen,
	    c->sc_server_sig)) != 0) {
		err = "HMAC failed";
		goto out;
	}
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = ck[i] ^ sig[i];
	if ((r = b64_encode(proof, sizeof(proof), bproof,
	    sizeof(bproof))) < 0)
		goto out;
	if (flen + 3 + (size_t)r >= outlen) {
		err = "output buffer too small";
		r = -ENOSPC;
		goto out;
	}
	snprintf(out, outlen, "%s,p=%s", final, bproof);
	r = 0;
 out:
	OPENSSL_cleanse(salt, sizeof(salt));
	OPENSSL_cleanse(ck, sizeof(ck));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(c->sc_password, sizeof(c->sc_password));
	if (r != 0) {
		c->sc_state = SCRAM_ST_FAILED;
		if (errstr != NULL)
			*errstr = err != NULL ? err : "internal error";
	} else
		c->sc_state = SCRAM_ST_FINAL;
	return r;
}

int
scram_client_verify(struct scram_client *c, const char *server_final,
    const char **errstr)
{
	uint8_t		 sig[SCRAM_KEY_LEN];
	const char	*p, *val, *err;
	size_t		 len, vlen, n;
	int		 r = -EPROTO;

	if (c == NULL || server_final == NULL ||
	    !state_can(scram_client_allowed, c->sc_state, SCRAM_ST_DONE))
		return -EINVAL;

	if (msg_check(server_final, &len) != 0) {
		err = "server-final-message is empty, too long or not printable";
		goto out;
	}
	p = server_final;
	if (attr_take(&p, 'e', &val, &vlen) == 0) {
		if (ext_skip_to_end(&p) != 0) {
			err = "malformed server-final-message";
			goto out;
		}
		err = server_error_text(val, vlen);
		r = -EACCES;
		goto out;
	}
	if (attr_take(&p, 'v', &val, &vlen) != 0 ||
	    ext_skip_to_end(&p) != 0 ||
	    b64_decode(val, vlen, sig, sizeof(sig), &n) != 0 ||
	    n != SCRAM_KEY_LEN) {
		err = "malformed server-final-message";
		goto out;
	}
	if (CRYPTO_memcmp(sig, c->sc_server_sig, SCRAM_KEY_LEN) != 0) {
		err = "server signature does not match: the server does not know the verifier";
		r = -EACCES;
		goto out;
	}
	r = 0;
 out:
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(c->sc_server_sig, sizeof(c->sc_server_sig));
	if (r != 0) {
		c->sc_state = SCRAM_ST_FAILED;
		if (errstr != NULL)
			*errstr = err;
	} else
		c->sc_state = SCRAM_ST_DONE;
	return r;
}

void
scram_client_clear(struct scram_client *c)
{
	if (c == NULL)
		return;
	OPENSSL_cleanse(c, sizeof(*c));
	c->sc_state = SCRAM_ST_NONE;
}

int
scram_server_init(struct scram_server *s, const uint8_t *cbind,
    const uint8_t *mock_key, const char *nonce)
{
	int	 r;

	if (s == NULL)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	if (mock_key == NULL)
		return -EINVAL;
	if (nonce != NULL) {
		if (!nonce_is_valid(nonce, strnlen(nonce,
		    SCRAM_NONCE_MAXLEN + 1)))
			return -EINVAL;
		memcpy(s->ss_nonce, nonce, strlen(nonce) + 1);
	} else if ((r = nonce_random(s->ss_nonce, sizeof(s->ss_nonce))) != 0)
		return r;
	memcpy(s->ss_mock_key, mock_key, SCRAM_KEY_LEN);
	if (cbind != NULL) {
		memcpy(s->ss_cbind, cbind, SCRAM_CBIND_LEN);
		s->ss_cbind_on = 1;
	}
	s->ss_state = SCRAM_ST_START;
	return 0;
}

int
scram_server_first(struct scram_server *s, const char *client_first,
    scram_lookup_fn lookup, void *arg, char *out, size_t outlen,
    const char **errstr)
{
	struct scram_verifier	 v;
	uint8_t			 mock[SCRAM_KEY_LEN], fake_key[SCRAM_KEY_LEN];
	char			 first[SCRAM_MAX_MSG + 1];
	char			 bsalt[B64_LEN(SCRAM_SALT_MAX) + 1];
	char			 user[SCRAM_USER_MAX + 1];
	const char		*p, *bare, *name, *nonce, *err = NULL;
	size_t			 len, ulen, nlen;
	char			 flag;
	int			 n, r;

	if (s == NULL || lookup == NULL || out == NULL ||
	    client_first == NULL || !state_can(scram_server_allowed,
	    s->ss_state, SCRAM_ST_FIRST))
		return -EINVAL;
	memset(&v, 0, sizeof(v));

	r = -EPROTO;
	if (msg_check(client_first, &len) != 0) {
		err = "client-first-message is empty, too long or not printable";
		goto out;
	}

	/* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
	p = client_first;
	switch (p[0]) {
	case 'n':
	case 'y':
		flag = p[0];
		p++;
		break;
	case 'p':
		if (p[1] != '=') {
			err = "malformed gs2 header";
			goto out;
		}
		nlen = strcspn(p + 2, ",");
		if (nlen != strlen(SCRAM_CB_NAME) ||
		    memcmp(p + 2, SCRAM_CB_NAME, nlen) != 0) {
			err = "unsupported channel binding type (only tls-exporter)";
			goto out;
		}
		flag = 'p';
		p += 2 + nlen;
		break;
	default:
		err = "malformed gs2 header";
		goto out;
	}
	if (*p++ != ',') {
		err = "malformed gs2 header";
		goto out;
	}
	if (p[0] == 'a' && p[1] == '=') {
		err = "authorization identity (a=) is not supported";
		goto out;
	}
	if (*p++ != ',') {
		err = "malformed gs2 header";
		goto out;
	}

	/* client-first-message-bare */
	bare = p;
	if (p[0] == 'm' && p[1] == '=') {
		err = "mandatory extension (m=) is not supported";
		goto out;
	}
	if (attr_take(&p, 'n', &name, &ulen) != 0 || !user_is_valid(name,
	    ulen)) {
		err = "bad user name (1-64 characters of A-Z a-z 0-9 _ . @ -)";
		goto out;
	}
	if (sep_take(&p) != 0 || attr_take(&p, 'r', &nonce, &nlen) != 0 ||
	    !nonce_is_valid(nonce, nlen)) {
		err = "missing or bad client nonce";
		goto out;
	}
	if (ext_skip_to_end(&p) != 0) {
		err = "malformed or repeated attribute in client-first-message";
		goto out;
	}

	/* Channel binding policy. */
	if (flag == 'p' && !s->ss_cbind_on) {
		err = "client requires channel binding but the link has no TLS";
		goto out;
	}
	s->ss_downgrade = (flag != 'p' && s->ss_cbind_on);
	s->ss_gs2flag = flag;

	memcpy(user, name, ulen);
	user[ulen] = '\0';

	/*
	 * The mock salt and keys are derived for every user, known or not,
	 * so that this step costs the same either way.
	 */
	if ((r = hmac256(s->ss_mock_key, sizeof(s->ss_mock_key), user, ulen,
	    mock)) != 0 || SHA256(mock, sizeof(mock), fake_key) == NULL) {
		r = -EIO;
		err = "HMAC failed";
		goto out;
	}
	if (lookup(arg, user, &v) != 0 || v.iter < SCRAM_ITER_MIN ||
	    v.iter > SCRAM_ITER_MAX || v.saltlen == 0 ||
	    v.saltlen > SCRAM_SALT_MAX) {
		/*
		 * Mock authentication: a stable salt for this name, the
		 * default count, and keys that no proof matches (ss_mock makes
		 * sure of it).
		 */
		OPENSSL_cleanse(&v, sizeof(v));
		memcpy(v.salt, mock, SCRAM_SALT_LEN);
		v.saltlen = SCRAM_SALT_LEN;
		v.iter = SCRAM_ITER_DEFAULT;
		memcpy(v.stored_key, fake_key, sizeof(v.stored_key));
		memcpy(v.server_key, fake_key, sizeof(v.server_key));
		s->ss_mock = 1;
	}
	memcpy(v.user, user, ulen + 1);

	if ((r = b64_encode(v.salt, v.saltlen, bsalt, sizeof(bsalt))) < 0)
		goto out;
	n = snprintf(first, sizeof(first), "r=%.*s%s,s=%s,i=%u", (int)nlen,
	    nonce, s->ss_nonce, bsalt, v.iter);
	if (n < 0 || (size_t)n >= sizeof(first)) {
		r = -EIO;
		goto out;
	}
	if ((size_t)n >= outlen) {
		err = "output buffer too small";
		r = -ENOSPC;
		goto out;
	}
	memcpy(out, first, (size_t)n + 1);
	memcpy(s->ss_first, first, (size_t)n + 1);
	memcpy(s->ss_bare, bare, len - (size_t)(bare - client_first) + 1);
	snprintf(s->ss_combined, sizeof(s->ss_combined), "%.*s%s", (int)nlen,
	    nonce, s->ss_nonce);
	s->ss_ver = v;
	r = 0;
 out:
	OPENSSL_cleanse(&v, sizeof(v));
	OPENSSL_cleanse(mock, sizeof(mock));
	OPENSSL_cleanse(fake_key, sizeof(fake_key));
	if (r != 0) {
		s->ss_state = SCRAM_ST_FAILED;
		if (errstr != NULL)
			*errstr = err != NULL ? err : "internal error";
	} else
		s->ss_state = SCRAM_ST_FIRST;
	return r;
}

int
scram_server_final(struct scram_server *s, const char *client_final,
    char *out, size_t outlen, const char **errstr)
{
	uint8_t		 scratch[SCRAM_CBIND_MSG_MAX], proof[SCRAM_KEY_LEN];
	uint8_t		 sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN];
	uint8_t		 hkey[SCRAM_KEY_LEN], ssig[SCRAM_KEY_LEN];
	char		 authmsg[SCRAM_AUTHMSG_MAX + 1];
	char		 cb[B64_LEN(SCRAM_CBIND_MSG_MAX) + 1];
	char		 answer[B64_LEN(SCRAM_KEY_LEN) + 3];
	const char	*p, *cbv, *nonce, *bproof, *err = NULL;
	size_t		 len, cblen, nlen, plen, wplen, alen, n, i;
	unsigned int	 seen = 0;
	int		 r, cb_ok, proof_ok, cbn;

	if (s == NULL || out == NULL || client_final == NULL ||
	    !state_can(scram_server_allowed, s->ss_state, SCRAM_ST_DONE))
		return -EINVAL;

	r = -EPROTO;
	if (msg_check(client_final, &len) != 0) {
		err = "client-final-message is empty, too long or not printable";
		goto out;
	}
	p = client_final;
	if (attr_take(&p, 'c', &cbv, &cblen) != 0 ||
	    b64_decode(cbv, cblen, scratch, sizeof(scratch), &n) != 0) {
		err = "missing or malformed channel binding (c=)";
		goto out;
	}
	if (sep_take(&p) != 0 || attr_take(&p, 'r', &nonce, &nlen) != 0) {
		err = "missing nonce (r=) in client-final-message";
		goto out;
	}
	for (;;) {
		if (sep_take(&p) != 0) {
			err = "missing proof (p=) in client-final-message";
			goto out;
		}
		if (p[0] == 'p' && p[1] == '=')
			break;
		if (ext_take(&p, &seen) != 0) {
			err = "malformed or repeated attribute in client-final-message";
			goto out;
		}
	}
	wplen = (size_t)(p - 1 - client_final);
	if (attr_take(&p, 'p', &bproof, &plen) != 0 || *p != '\0') {
		err = "garbage after the proof in client-final-message";
		goto out;
	}
	if (b64_decode(bproof, plen, proof, sizeof(proof), &n) != 0 ||
	    n != SCRAM_KEY_LEN) {
		err = "proof is not base64 of 32 bytes";
		goto out;
	}
	if (nlen != strlen(s->ss_combined) ||
	    memcmp(nonce, s->ss_combined, nlen) != 0) {
		err = "nonce in client-final-message does not match";
		goto out;
	}

	/*
	 * Everything below runs in full whatever the outcome, so the time
	 * taken does not tell a mock user from a real one.
	 */
	if ((cbn = cbind_b64(s->ss_gs2flag, s->ss_cbind, cb, sizeof(cb))) < 0) {
		r = cbn;
		goto out;
	}
	cb_ok = (size_t)cbn == cblen &&
	    CRYPTO_memcmp(cb, cbv, cblen) == 0 && !s->ss_downgrade;

	alen = authmsg_build(authmsg, s->ss_bare, s->ss_first, client_final,
	    wplen);
	/* ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage) */
	if ((r = hmac256(s->ss_ver.stored_key, SCRAM_KEY_LEN, authmsg, alen,
	    sig)) != 0 ||
	    (r = hmac256(s->ss_ver.server_key, SCRAM_KEY_LEN, authmsg, alen,
	    ssig)) != 0) {
		err = "HMAC failed";
		goto out;
	}
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	if (SHA256(key, sizeof(key), hkey) == NULL) {
		r = -EIO;
		err = "SHA-256 failed";
		goto out;
	}
	proof_ok = CRYPTO_memcmp(hkey, s->ss_ver.stored_key,
	    SCRAM_KEY_LEN) == 0 && !s->ss_mock;

	if (!cb_ok) {
		snprintf(answer, sizeof(answer), "e=channel-bindings-dont-match");
		err = s->ss_downgrade ?
		    "channel binding downgrade: the link has TLS but the client did not bind to it" :
		    "channel binding mismatch: the client saw a different TLS connection";
		r = -EACCES;
	} else if (!proof_ok) {
		snprintf(answer, sizeof(answer), "e=invalid-proof");
		err = s->ss_mock ? "unknown user" :
		    "invalid proof (wrong password)";
		r = -EACCES;
	} else {
		memcpy(answer, "v=", 2);
		if ((r = b64_encode(ssig, sizeof(ssig), answer + 2,
		    sizeof(answer) - 2)) < 0)
			goto out;
		r = 0;
	}
	if (strlen(answer) >= outlen) {
		err = "output buffer too small";
		r = -ENOSPC;
		goto out;
	}
	memcpy(out, answer, strlen(answer) + 1);
 out:
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(hkey, sizeof(hkey));
	OPENSSL_cleanse(ssig, sizeof(ssig));
	/* The keys are not needed any more; the user name is. */
	OPENSSL_cleanse(s->ss_ver.stored_key, sizeof(s->ss_ver.stored_key));
	OPENSSL_cleanse(s->ss_ver.server_key, sizeof(s->ss_ver.server_key));
	if (r != 0) {
		s->ss_state = SCRAM_ST_FAILED;
		if (errstr != NULL)
			*errstr = err != NULL ? err : "internal error";
	} else
		s->ss_state = SCRAM_ST_DONE;
	return r;
}

const char *
scram_server_user(const struct scram_server *s)
{
	if (s == NULL || s->ss_state != SCRAM_ST_DONE)
		return NULL;
	return s->ss_ver.user;
}

void
scram_server_clear(struct scram_server *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, sizeof(*s));
	s->ss_state = SCRAM_ST_NONE;
}
