/*
 * scram.h - SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) with
 * the tls-exporter channel binding (RFC 9266), used to authenticate the two
 * ends of a relay link.
 *
 * Both roles are plain state machines over NUL-terminated ASCII messages;
 * the caller moves the messages over the wire.  Nothing here does I/O,
 * logs or allocates: the session structs are public so that they can live
 * inside a larger object (or on the stack), but their members are private
 * to scram.c.  This file depends on libc and OpenSSL 3 libcrypto only.
 *
 * Return convention: 0 on success, a negative errno value on failure:
 *	-EINVAL	 bad argument, or a call out of order (the state is unchanged)
 *	-EPROTO	 malformed peer message
 *	-EACCES	 authentication failure
 *	-ENOSPC	 output buffer too small
 *	-ERANGE	 iteration count outside SCRAM_ITER_MIN..SCRAM_ITER_MAX
 *	-EIO	 the crypto library (or its random generator) failed
 * Every failure other than -EINVAL ends the exchange: further calls return
 * -EINVAL and the caller should clear the struct.  Where a function takes
 * "const char **errstr", a failure stores a pointer to a static string
 * there (never built from peer data, so it is safe to log); it is left
 * alone on success.  Output buffers are only written on success, except
 * that scram_server_final() writes the "e=..." answer for -EACCES.  An
 * output buffer of SCRAM_MAX_MSG + 1 bytes is always large enough.
 *
 * User names are restricted to 1..SCRAM_USER_MAX characters of
 * [A-Za-z0-9_.@-] and passwords to 1..SCRAM_PASSWORD_MAX printable ASCII
 * characters (0x20-0x7e), so SASLprep is the identity and verifiers made
 * by PostgreSQL for the same password are interchangeable with ours.
 */
#ifndef MIGRELAY_SCRAM_H
#define MIGRELAY_SCRAM_H

#include <stddef.h>
#include <stdint.h>

/* Limits and tunables. */
#define SCRAM_NONCE_LEN		24	/* random bytes before base64 */
#define SCRAM_NONCE_MAXLEN	128	/* characters of each nonce part */
#define SCRAM_SALT_LEN		16
#define SCRAM_SALT_MAX		64	/* longest salt a verifier may hold */
#define SCRAM_ITER_MIN		4096
#define SCRAM_ITER_MAX		100000
#define SCRAM_ITER_DEFAULT	4096
#define SCRAM_KEY_LEN		32	/* SHA-256 output */
#define SCRAM_CBIND_LEN		32	/* tls-exporter, RFC 9266 */
#define SCRAM_MAX_MSG		1024	/* longest message either side accepts */
#define SCRAM_USER_MAX		64
#define SCRAM_PASSWORD_MAX	1024
#define SCRAM_VERIFIER_MAX	512	/* longest line scram_verifier_make() writes */

/* The SASL mechanism names, for the caller's negotiation. */
#define SCRAM_MECH		"SCRAM-SHA-256"
#define SCRAM_MECH_PLUS		"SCRAM-SHA-256-PLUS"

/* Progress of one exchange.  Private to scram.c; listed for struct sizes. */
enum scram_state {
	SCRAM_ST_NONE = 0,	/* zeroed or cleared: every call but init fails */
	SCRAM_ST_START,		/* initialised, nothing sent or received */
	SCRAM_ST_FIRST,		/* first messages exchanged */
	SCRAM_ST_FINAL,		/* client only: client-final sent */
	SCRAM_ST_DONE,		/* authenticated */
	SCRAM_ST_FAILED,	/* over; only clear is useful */
	_SCRAM_ST_MAX
};

/* A stored verifier: never the password itself. */
struct scram_verifier {
	char		 user[SCRAM_USER_MAX + 1];
	unsigned int	 iter;
	uint8_t		 salt[SCRAM_SALT_MAX];
	size_t		 saltlen;
	uint8_t		 stored_key[SCRAM_KEY_LEN];
	uint8_t		 server_key[SCRAM_KEY_LEN];
};

/* Client session.  Members are private; use the functions below. */
struct scram_client {
	enum scram_state sc_state;
	int		 sc_cbind_on;
	uint8_t		 sc_cbind[SCRAM_CBIND_LEN];
	char		 sc_user[SCRAM_USER_MAX + 1];
	char		 sc_password[SCRAM_PASSWORD_MAX + 1];
	char		 sc_nonce[SCRAM_NONCE_MAXLEN + 1];
	char		 sc_bare[SCRAM_MAX_MSG + 1];	/* client-first-message-bare */
	uint8_t		 sc_server_sig[SCRAM_KEY_LEN];	/* expected in "v=" */
};

/* Server session.  Members are private; use the functions below. */
struct scram_server {
	enum scram_state ss_state;
	int		 ss_cbind_on;		/* the link has a tls-exporter value */
	uint8_t		 ss_cbind[SCRAM_CBIND_LEN];
	uint8_t		 ss_mock_key[SCRAM_KEY_LEN];
	char		 ss_nonce[SCRAM_NONCE_MAXLEN + 1];	/* server part */
	char		 ss_combined[2 * SCRAM_NONCE_MAXLEN + 1];
	char		 ss_gs2flag;		/* 'n', 'y' or 'p' as received */
	int		 ss_mock;		/* unknown user: must fail */
	int		 ss_downgrade;		/* binding available, client did not bind */
	struct scram_verifier ss_ver;
	char		 ss_bare[SCRAM_MAX_MSG + 1];	/* client-first-message-bare */
	char		 ss_first[SCRAM_MAX_MSG + 1];	/* server-first-message */
};

/* scram.c */

/*
 * Parse one line of an --auth-users file:
 *	name:SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>
 * that is, PostgreSQL's verifier format after "name:".  One trailing '\n'
 * is tolerated.  Fills *ret (left untouched on failure) and returns 0;
 * -EINVAL for a malformed line or bad name, -ERANGE for an iteration count
 * outside SCRAM_ITER_MIN..SCRAM_ITER_MAX.  *errstr says which field.
 */
int	 scram_verifier_parse(const char *line, struct scram_verifier *ret,
	    const char **errstr);

/*
 * Write a verifier line (with the "name:" prefix, without newline) for
 * user and password into out.  iter 0 means SCRAM_ITER_DEFAULT.  With salt
 * NULL, saltlen random bytes are used (saltlen 0 means SCRAM_SALT_LEN);
 * saltlen must be 1..SCRAM_SALT_MAX.  Returns 0; -EINVAL for a bad name,
 * password or salt length, -ERANGE for a bad iteration count, -ENOSPC if
 * out cannot hold the line (SCRAM_VERIFIER_MAX always can), -EIO.
 */
int	 scram_verifier_make(const char *user, const char *password,
	    unsigned int iter, const uint8_t *salt, size_t saltlen, char *out,
	    size_t outlen);

/*
 * Start a client exchange.  user and password are copied.  cbind is the
 * SCRAM_CBIND_LEN-byte tls-exporter value when the link runs over TLS (the
 * client then uses SCRAM-SHA-256-PLUS, gs2 header "p=tls-exporter,,") or
 * NULL (SCRAM-SHA-256, gs2 header "n,,").  nonce NULL means
 * SCRAM_NONCE_LEN random bytes in base64; tests pass a fixed printable
 * nonce without ','.  Returns 0, -EINVAL (bad name, password or nonce) or
 * -EIO.  On failure the struct is left cleared.
 */
int	 scram_client_init(struct scram_client *, const char *user,
	    const char *password, const uint8_t *cbind, const char *nonce);

/* Write client-first-message into out.  Returns 0, -EINVAL or -ENOSPC. */
int	 scram_client_first(struct scram_client *, char *out, size_t outlen);

/*
 * Parse server-first-message and write client-final-message (with the
 * proof) into out.  Refuses an iteration count outside
 * SCRAM_ITER_MIN..SCRAM_ITER_MAX with -ERANGE before doing any PBKDF2
 * work, and a nonce that does not extend the client nonce with -EPROTO.
 * Returns 0, -EINVAL, -EPROTO, -ERANGE, -ENOSPC or -EIO.  Unless the
 * result is -EINVAL, the password has been wiped when this returns.
 */
int	 scram_client_final(struct scram_client *, const char *server_first,
	    char *out, size_t outlen, const char **errstr);

/*
 * Check server-final-message.  "v=" must carry the expected server
 * signature (compared in constant time): 0, the server is authenticated.
 * "e=..." returns -EACCES with *errstr naming the server's reason; a wrong
 * signature returns -EACCES too; a malformed message -EPROTO.
 */
int	 scram_client_verify(struct scram_client *, const char *server_final,
	    const char **errstr);

/* Wipe every secret and return to SCRAM_ST_NONE.  NULL is allowed. */
void	 scram_client_clear(struct scram_client *);

/*
 * Find the verifier of user (a valid name, NUL-terminated) and copy it
 * into *ret; return 0 if found, -ENOENT if not.  Any other return, or a
 * verifier with an unusable salt or iteration count, counts as not found.
 * The "user" member of *ret need not be filled.
 */
typedef int (*scram_lookup_fn)(void *arg, const char *user,
	    struct scram_verifier *ret);

/*
 * Start a server exchange.  cbind is the server's view of the
 * SCRAM_CBIND_LEN-byte tls-exporter value, or NULL without TLS.  mock_key
 * (required, SCRAM_KEY_LEN secret bytes, stable for the life of the
 * daemon) derives the salt shown for unknown users as
 * HMAC-SHA-256(mock_key, user), so that repeated probes see a stable salt.
 * nonce NULL means random.  Both byte arrays are copied.  Returns 0,
 * -EINVAL or -EIO; on failure the struct is left cleared.
 */
int	 scram_server_init(struct scram_server *, const uint8_t *cbind,
	    const uint8_t *mock_key, const char *nonce);

/*
 * Parse client-first-message and write server-first-message into out.
 * Rejected with -EPROTO: an authorization identity ("a="), a mandatory
 * extension ("m="), a bad user name, a nonce that is empty, too long or
 * not printable, repeated attributes, a channel binding type other than
 * tls-exporter, and "p=tls-exporter" on a link without binding.
 *
 * Downgrade: when the server has a binding but the client sent "n" or "y",
 * the exchange continues and fails in scram_server_final() with
 * "e=channel-bindings-dont-match" (-EACCES), so that the client learns the
 * reason in band.
 *
 * Unknown user (lookup fails): mock authentication with the mock salt and
 * SCRAM_ITER_DEFAULT; the exchange continues and fails at the end exactly
 * like a wrong password.  Unknown users look like known ones only as long
 * as real verifiers also use SCRAM_SALT_LEN and SCRAM_ITER_DEFAULT, which
 * is what scram_verifier_make() does by default.  lookup is called once,
 * and only for a well-formed message.  Returns 0, -EINVAL, -EPROTO,
 * -ENOSPC or -EIO.
 */
int	 scram_server_first(struct scram_server *, const char *client_first,
	    scram_lookup_fn, void *arg, char *out, size_t outlen,
	    const char **errstr);

/*
 * Parse client-final-message: "c=" must equal base64(gs2 header + binding
 * data) byte for byte, "r=" the combined nonce, "p=" must decode to
 * exactly SCRAM_KEY_LEN bytes and end the message.  The proof is verified
 * in constant time, even for a mock user.
 *
 * Success: writes "v=..." into out and returns 0; scram_server_user() then
 * names the user.  A binding mismatch or downgrade writes
 * "e=channel-bindings-dont-match", a wrong password or an unknown user
 * writes "e=invalid-proof"; both return -EACCES, and *errstr tells the
 * server's log which case it was (the wire does not).  Malformed: -EPROTO,
 * nothing written.  Also -EINVAL, -ENOSPC, -EIO.
 */
int	 scram_server_final(struct scram_server *, const char *client_final,
	    char *out, size_t outlen, const char **errstr);

/*
 * The authenticated user name after scram_server_final() returned 0, else
 * NULL.  Borrowed: valid until scram_server_clear() or the next init.
 */
const char *scram_server_user(const struct scram_server *);

/* Wipe every secret and return to SCRAM_ST_NONE.  NULL is allowed. */
void	 scram_server_clear(struct scram_server *);

#endif /* MIGRELAY_SCRAM_H */
