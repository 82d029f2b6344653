/*
 * auth.c - relay authentication material and helpers.
 *
 * Accepting side: SCRAM-SHA-256 verifiers from --auth-users (one
 * "name:SCRAM-SHA-256$iter:salt$StoredKey:ServerKey" line per user; never
 * passwords).  Connecting side: "name:password" from --auth-secret, or
 * from the systemd credential "migrelay-auth-secret".  A random key, made
 * at startup, derives stable fake salts for unknown users (mock
 * authentication: an unknown user gets the same answers and timing as a
 * wrong password).
 *
 * Extra channels of a link prove they belong to it with
 * HMAC-SHA-256(link token, "migrelay join" || channel index || exporter),
 * where exporter is the channel's own TLS exporter (RFC 9266): the proof
 * is useless on any other TLS connection, and the token never travels
 * after WELCOME.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "migrelayd.h"
#include "scram.h"

#define AUTH_MAX_USERS	1024

static struct scram_verifier	*users;
static unsigned int		 nusers;
static int			 users_loaded;
static char			 secret_user[SCRAM_USER_MAX + 1];
static char			 secret_password[SCRAM_PASSWORD_MAX + 1];
static int			 secret_loaded;
static uint8_t			 mock_key[32];

int
auth_init(void)
{
	return random_bytes(mock_key, sizeof(mock_key));
}

const uint8_t *
auth_mock_key(void)
{
	return mock_key;
}

static int
auth_check_secrecy(const char *path, char *err, size_t errlen)
{
	struct stat	 st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "%s: readable by others (chmod 600 or "
		    "640)", path);
		return -1;
	}
	return 0;
}

/*
 * Read a verifier file into a new table (*ret, *ret_n).  Returns 0, or -1
 * with err naming the file and line.
 */
static int
auth_read_users(const char *path, struct scram_verifier **ret,
    unsigned int *ret_n, char *err, size_t errlen)
{
	FILE			*fp;
	struct scram_verifier	*t;
	char			 line[1024];
	const char		*errstr;
	unsigned int		 n = 0, i;
	int			 lineno = 0;

	if (auth_check_secrecy(path, err, errlen) != 0)
		return -1;
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((t = calloc(AUTH_MAX_USERS, sizeof(*t))) == NULL) {
		fclose(fp);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (n == AUTH_MAX_USERS) {
			snprintf(err, errlen, "%s:%d: more than %d users", path,
			    lineno, AUTH_MAX_USERS);
			goto fail;
		}
		if (scram_verifier_parse(line, &t[n], &errstr) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, errstr);
			goto fail;
		}
		for (i = 0; i < n; i++)
			if (strcmp(t[i].user, t[n].user) == 0) {
				snprintf(err, errlen, "%s:%d: user '%s' appears "
				    "twice", path, lineno, t[n].user);
				goto fail;
			}
		n++;
	}
	fclose(fp);
	if (n == 0) {
		snprintf(err, errlen, "%s: no users", path);
		OPENSSL_cleanse(t, AUTH_MAX_USERS * sizeof(*t));
		free(t);
		return -1;
	}
	*ret = t;
	*ret_n = n;
	return 0;
 fail:
	fclose(fp);
	OPENSSL_cleanse(t, AUTH_MAX_USERS * sizeof(*t));
	free(t);
	return -1;
}

static void
auth_set_users(struct scram_verifier *t, unsigned int n)
{
	if (users != NULL) {
		OPENSSL_cleanse(users, AUTH_MAX_USERS * sizeof(*users));
		free(users);
	}
	users = t;
	nusers = n;
	users_loaded = t != NULL;
}

/* Load the verifier file; on failure the old table stays. */
int
auth_load_users(const char *path, char *err, size_t errlen)
{
	struct scram_verifier	*t;
	unsigned int		 n;

	if (auth_read_users(path, &t, &n, err, errlen) != 0)
		return -1;
	auth_set_users(t, n);
	return 0;
}

/*
 * Reload both files named in the configuration, all or nothing: if either
 * is broken nothing changes.  Returns 0 or -1 with err set.
 */
int
auth_reload(const char *users_path, const char *secret_path, char *err,
    size_t errlen)
{
	struct scram_verifier	*t = NULL;
	unsigned int		 n = 0;
	char			 su[sizeof(secret_user)];
	char			 sp[sizeof(secret_password)];
	int			 had = secret_loaded;

	if (users_path[0] != '\0' && auth_read_users(users_path, &t, &n, err,
	    errlen) != 0)
		return -1;
	if (secret_path[0] == '\0') {
		/* The configuration no longer names a secret: forget it. */
		OPENSSL_cleanse(secret_password, sizeof(secret_password));
		secret_user[0] = '\0';
		secret_loaded = 0;
	}
	if (secret_path[0] != '\0') {
		memcpy(su, secret_user, sizeof(su));
		memcpy(sp, secret_password, sizeof(sp));
		if (auth_load_secret(secret_path, err, errlen) != 0) {
			memcpy(secret_user, su, sizeof(su));
			memcpy(secret_password, sp, sizeof(sp));
			secret_loaded = had;
			OPENSSL_cleanse(sp, sizeof(sp));
			if (t != NULL) {
				OPENSSL_cleanse(t, AUTH_MAX_USERS * sizeof(*t));
				free(t);
			}
			return -1;
		}
		OPENSSL_cleanse(sp, sizeof(sp));
	}
	/* A configuration without auth-users stops requiring SCRAM. */
	auth_set_users(t, n);
	return 0;
}

/* Load "name:password" (first line; a trailing newline is not part of it). */
int
auth_load_secret(const char *path, char *err, size_t errlen)
{
	FILE	*fp;
	char	 line[SCRAM_USER_MAX + SCRAM_PASSWORD_MAX + 4], *colon;

	if (auth_check_secrecy(path, err, errlen) != 0)
		return -1;
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), fp) == NULL) {
		fclose(fp);
		snprintf(err, errlen, "%s: empty", path);
		return -1;
	}
	fclose(fp);
	line[strcspn(line, "\r\n")] = '\0';
	colon = strchr(line, ':');
	if (colon == NULL || colon == line || colon[1] == '\0' ||
	    (size_t)(colon - line) > SCRAM_USER_MAX) {
		OPENSSL_cleanse(line, sizeof(line));
		snprintf(err, errlen, "%s: expected one line name:password",
		    path);
		return -1;
	}
	*colon = '\0';
	memcpy(secret_user, line, (size_t)(colon - line) + 1);
	snprintf(secret_password, sizeof(secret_password), "%s", colon + 1);
	OPENSSL_cleanse(line, sizeof(line));
	secret_loaded = 1;
	return 0;
}

int
auth_users_loaded(void)
{
	return users_loaded;
}

int
auth_secret_loaded(void)
{
	return secret_loaded;
}

const char *
auth_secret_user(void)
{
	return secret_user;
}

const char *
auth_secret_password(void)
{
	return secret_password;
}

/* scram_lookup_fn over the loaded table. */
int
auth_lookup(void *arg, const char *user, struct scram_verifier *ret)
{
	unsigned int	 i;

	for (i = 0; i < nusers; i++)
		if (strcmp(users[i].user, user) == 0) {
			*ret = users[i];
			return 0;
		}
	return -ENOENT;
}

/* The JOIN proof of channel index (see the top of this file). */
void
auth_join_proof(const uint8_t *token, const uint8_t *exporter,
    unsigned int channel, uint8_t out[32])
{
	uint8_t		 msg[13 + 2 + 32];
	unsigned int	 len = 32, n = 13;

	memcpy(msg, "migrelay join", 13);
	msg[n++] = (uint8_t)(channel >> 8);
	msg[n++] = (uint8_t)channel;
	if (exporter != NULL) {
		memcpy(msg + n, exporter, 32);
		n += 32;
	}
	HMAC(EVP_sha256(), token, LINK_TOKEN_LEN, msg, n, out, &len);
}

/* --make-verifier NAME: password on stdin, verifier line on stdout. */
int
auth_make_verifier(const char *name)
{
	char	 pw[SCRAM_PASSWORD_MAX + 2], out[SCRAM_VERIFIER_MAX];
	int	 r;

	if (isatty(STDIN_FILENO))
		fprintf(stderr, "password for %s: ", name);
	if (fgets(pw, sizeof(pw), stdin) == NULL) {
		fprintf(stderr, "migrelayd: no password on standard input\n");
		return 1;
	}
	pw[strcspn(pw, "\r\n")] = '\0';
	if (pw[0] == '\0') {
		fprintf(stderr, "migrelayd: empty password\n");
		return 1;
	}
	r = scram_verifier_make(name, pw, SCRAM_ITER_DEFAULT, NULL, 0, out,
	    sizeof(out));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (r != 0) {
		fprintf(stderr, "migrelayd: cannot make a verifier for '%s': "
		    "%s\n", name, r == -EINVAL ? "invalid user name (1-64 "
		    "characters of A-Z a-z 0-9 _ . @ -)" : strerror(-r));
		return 1;
	}
	printf("%s\n", out);
	return 0;
}
