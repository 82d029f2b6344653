/*
 * fuzz_scram.c - libFuzzer harness for SCRAM-SHA-256(-PLUS) (proto/scram.c):
 * both roles of the exchange with everything the peer sends coming from the
 * input, and the --auth-users verifier line parser.
 *
 * Input: one mode byte, then the peer's messages separated by '\n' (a NUL
 * ends a message early, as it would for a C string off the wire):
 *	's' / 'S'  server without / with a tls-exporter binding: message 1 is
 *		   client-first, message 2 client-final
 *	'c' / 'C'  client without / with a binding: message 1 is
 *		   server-first, message 2 server-final
 *	'v'	   the rest is one verifier line
 * Any other mode byte picks one of these by its value.  In both roles a
 * third message, if present, only sets the size of the output buffers
 * (its length modulo 160, plus one) to reach the -ENOSPC paths.
 *
 * Nonces, the binding and the one known user are fixed (see FUZZ_* below;
 * tests/fuzz/make-seeds.py uses the same values), so that a seed can
 * carry a complete, successful exchange for the fuzzer to mutate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

#define FUZZ_USER	"fuzzuser"
#define FUZZ_PASSWORD	"pencil"
#define FUZZ_SALT	"fuzz-salt-16byte"		/* SCRAM_SALT_LEN bytes */
#define FUZZ_ITER	4096
#define FUZZ_CNONCE	"fyko+d2lbbFgONRv9qkxdawL"	/* client's own part */
#define FUZZ_SNONCE	"3rfcNHYJY1ZVvWVs7j"		/* server's own part */
#define FUZZ_MAXMSG	4

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct scram_verifier	 fuzz_ver;
static uint8_t			 fuzz_cbind[SCRAM_CBIND_LEN];
static uint8_t			 fuzz_mock_key[SCRAM_KEY_LEN];

static void
fuzz_setup(void)
{
	static int	 done;
	char		 line[SCRAM_VERIFIER_MAX];
	const char	*errstr = NULL;
	size_t		 i;

	if (done)
		return;
	for (i = 0; i < sizeof(fuzz_cbind); i++)
		fuzz_cbind[i] = (uint8_t)i;
	memset(fuzz_mock_key, 0xa5, sizeof(fuzz_mock_key));
	if (scram_verifier_make(FUZZ_USER, FUZZ_PASSWORD, FUZZ_ITER,
	    (const uint8_t *)FUZZ_SALT, strlen(FUZZ_SALT), line,
	    sizeof(line)) != 0 ||
	    scram_verifier_parse(line, &fuzz_ver, &errstr) != 0) {
		fprintf(stderr, "fuzz_scram: cannot make the test verifier\n");
		abort();
	}
	done = 1;
}

/*
 * The server's user table: the one known user; "badsalt" has a verifier
 * the server must treat as missing; everyone else is unknown.
 */
static int
fuzz_lookup(void *arg, const char *user, struct scram_verifier *ret)
{
	if (strcmp(user, FUZZ_USER) == 0) {
		*ret = fuzz_ver;
		return 0;
	}
	if (strcmp(user, "badsalt") == 0) {
		*ret = fuzz_ver;
		ret->saltlen = 0;
		ret->iter = 1;
		return 0;
	}
	return -ENOENT;
}

/* Output the library wrote: terminated, printable, bounded. */
static void
check_out(const char *out, size_t outlen)
{
	size_t	 i, len;

	len = strnlen(out, outlen);
	if (len == 0 || len >= outlen || len > SCRAM_MAX_MSG)
		abort();
	for (i = 0; i < len; i++)
		if (out[i] < 0x20 || out[i] > 0x7e)
			abort();
}

/* Output buffers are written on success only (and for the server's e=). */
static int
untouched(const char *out, size_t outlen)
{
	size_t	 i;

	for (i = 0; i < outlen; i++)
		if (out[i] != 0x5a)
			return 0;
	return 1;
}

static int
is_failure(int r)
{
	return r == -EPROTO || r == -EACCES || r == -ENOSPC ||
	    r == -ERANGE || r == -EIO;
}

/* Exact-size output buffer, so that ASan sees any overflow. */
static char *
out_new(char **msg, size_t nmsg, size_t *ret_len)
{
	char	*out;

	*ret_len = nmsg >= 3 ? strlen(msg[2]) % 160 + 1 : SCRAM_MAX_MSG + 1;
	if ((out = malloc(*ret_len)) == NULL)
		abort();
	return out;
}

static void
fuzz_server(int cbind, char **msg, size_t nmsg)
{
	struct scram_server	*s;
	char			*out, tmp[SCRAM_MAX_MSG + 1];
	const char		*errstr, *user;
	size_t			 outlen;
	int			 r;

	if ((s = malloc(sizeof(*s))) == NULL)
		abort();
	out = out_new(msg, nmsg, &outlen);
	if (scram_server_init(s, cbind ? fuzz_cbind : NULL, fuzz_mock_key,
	    FUZZ_SNONCE) != 0)
		abort();
	/* Out of order. */
	if (scram_server_final(s, "c=biws", out, outlen, NULL) !=
	    -EINVAL || scram_server_user(s) != NULL)
		abort();
	if (nmsg < 1)
		goto out;

	errstr = NULL;
	memset(out, 0x5a, outlen);
	r = scram_server_first(s, msg[0], fuzz_lookup, NULL, out, outlen,
	    &errstr);
	if (r != 0) {
		if (!is_failure(r) || errstr == NULL || !untouched(out,
		    outlen))
			abort();
		goto failed;
	}
	check_out(out, outlen);
	if (strncmp(out, "r=", 2) != 0 || strstr(out, FUZZ_SNONCE ",s=") ==
	    NULL || strstr(out, ",i=") == NULL)
		abort();
	if (nmsg < 2)
		goto out;

	errstr = NULL;
	memset(out, 0x5a, outlen);
	r = scram_server_final(s, msg[1], out, outlen, &errstr);
	if (r == -EACCES) {
		/* The answer the client gets in band. */
		check_out(out, outlen);
		if (strcmp(out, "e=invalid-proof") != 0 &&
		    strcmp(out, "e=channel-bindings-dont-match") != 0)
			abort();
	} else if (r != 0 && !untouched(out, outlen))
		abort();
	if (r != 0) {
		if (!is_failure(r) || errstr == NULL)
			abort();
		goto failed;
	}
	check_out(out, outlen);
	if (strncmp(out, "v=", 2) != 0)
		abort();
	/* Only the known user, with the right password, gets here. */
	if ((user = scram_server_user(s)) == NULL ||
	    strcmp(user, FUZZ_USER) != 0)
		abort();
	if (scram_server_final(s, msg[1], out, outlen, NULL) != -EINVAL)
		abort();
	goto out;

 failed:
	/* A failed exchange stays failed. */
	if (scram_server_user(s) != NULL ||
	    scram_server_first(s, "n,,n=" FUZZ_USER ",r=x", fuzz_lookup,
	    NULL, tmp, sizeof(tmp), NULL) != -EINVAL ||
	    scram_server_final(s, "c=biws", tmp, sizeof(tmp), NULL) != -EINVAL)
		abort();
 out:
	scram_server_clear(s);
	if (scram_server_user(s) != NULL)
		abort();
	free(s);
	free(out);
}

static void
fuzz_client(int cbind, char **msg, size_t nmsg)
{
	struct scram_client	*c;
	char			*out, first[SCRAM_MAX_MSG + 1];
	const char		*errstr;
	size_t			 outlen;
	int			 r;

	if ((c = malloc(sizeof(*c))) == NULL)
		abort();
	out = out_new(msg, nmsg, &outlen);
	if (scram_client_init(c, FUZZ_USER, FUZZ_PASSWORD,
	    cbind ? fuzz_cbind : NULL, FUZZ_CNONCE) != 0)
		abort();
	if (scram_client_first(c, first, sizeof(first)) != 0)
		abort();
	if (strcmp(first, cbind ? "p=tls-exporter,,n=" FUZZ_USER ",r="
	    FUZZ_CNONCE : "n,,n=" FUZZ_USER ",r=" FUZZ_CNONCE) != 0)
		abort();
	if (nmsg < 1)
		goto out;

	errstr = NULL;
	memset(out, 0x5a, outlen);
	r = scram_client_final(c, msg[0], out, outlen, &errstr);
	if (r != 0) {
		if (!is_failure(r) || errstr == NULL || !untouched(out,
		    outlen))
			abort();
		if (scram_client_verify(c, "v=AAAA", NULL) != -EINVAL)
			abort();
		goto out;
	}
	check_out(out, outlen);
	if (strncmp(out, "c=", 2) != 0 || strstr(out, ",p=") == NULL)
		abort();
	if (nmsg < 2)
		goto out;

	errstr = NULL;
	r = scram_client_verify(c, msg[1], &errstr);
	if (r != 0 && (!is_failure(r) || errstr == NULL))
		abort();
	/* Done either way. */
	if (scram_client_verify(c, msg[1], NULL) != -EINVAL)
		abort();
 out:
	scram_client_clear(c);
	free(c);
	free(out);
}

static void
fuzz_verifier(const char *line)
{
	struct scram_verifier	 v, g;
	const char		*errstr = NULL;
	int			 r;

	memset(&v, 0x77, sizeof(v));
	memset(&g, 0x77, sizeof(g));
	r = scram_verifier_parse(line, &v, &errstr);
	if (r != 0) {
		if ((r != -EINVAL && r != -ERANGE) || errstr == NULL ||
		    memcmp(&v, &g, sizeof(v)) != 0)
			abort();
		return;
	}
	if (v.iter < SCRAM_ITER_MIN || v.iter > SCRAM_ITER_MAX ||
	    v.saltlen == 0 || v.saltlen > SCRAM_SALT_MAX ||
	    v.user[0] == '\0' ||
	    strnlen(v.user, sizeof(v.user)) > SCRAM_USER_MAX)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*msg[FUZZ_MAXMSG];
	const uint8_t	*nl;
	size_t		 nmsg = 0, off, len, i;
	int		 mode;

	fuzz_setup();
	if (size < 1)
		return 0;
	switch (data[0]) {
	case 's':
	case 'S':
	case 'c':
	case 'C':
	case 'v':
		mode = data[0];
		break;
	default:
		mode = "sScCv"[data[0] % 5];
		break;
	}

	/* Exact-size NUL-terminated copies of each message. */
	for (off = 1; nmsg < FUZZ_MAXMSG; off += len + 1) {
		nl = mode == 'v' ? NULL : memchr(data + off, '\n', size - off);
		len = nl != NULL ? (size_t)(nl - (data + off)) : size - off;
		if ((msg[nmsg] = malloc(len + 1)) == NULL)
			abort();
		memcpy(msg[nmsg], data + off, len);
		msg[nmsg][len] = '\0';
		nmsg++;
		if (nl == NULL)
			break;
	}

	switch (mode) {
	case 's':
	case 'S':
		fuzz_server(mode == 'S', msg, nmsg);
		break;
	case 'c':
	case 'C':
		fuzz_client(mode == 'C', msg, nmsg);
		break;
	default:
		fuzz_verifier(msg[0]);
		break;
	}
	for (i = 0; i < nmsg; i++)
		free(msg[i]);
	return 0;
}
