/*
 * fuzz_uri.c - libFuzzer harness for migration URIs ("unix:PATH",
 * "tcp:HOST:PORT"), relay addresses ("HOST:PORT", "[V6]:PORT") and session
 * ids, which arrive from control clients and the configuration file.
 *
 * The input, cut at its first NUL, is one string given to every parser.
 * A URI that parses must format and parse back to the same thing; an
 * address must fit the caller's buffers exactly (the buffers are as small
 * as the input allows, so that ASan sees a one-byte overflow).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_uri(const char *s)
{
	struct mig_uri	 u, u2;
	const char	*errstr = NULL;
	char		 buf[512];
	int		 r;

	memset(&u, 0x33, sizeof(u));
	r = uri_parse(s, &u, &errstr);
	if (r != 0) {
		if (r != -EINVAL || errstr == NULL)
			abort();
		return;
	}
	if (u.kind == URI_UNIX) {
		if (strncmp(s, "unix:", 5) != 0 || strcmp(u.path, s + 5) != 0 ||
		    u.path[0] == '\0' || strchr(u.path, ',') != NULL)
			abort();
	} else if (u.kind == URI_TCP) {
		if (strncmp(s, "tcp:", 4) != 0 || u.host[0] == '\0' ||
		    u.port[0] == '\0' || strchr(s, ',') != NULL ||
		    strnlen(u.host, sizeof(u.host)) >= sizeof(u.host) ||
		    strnlen(u.port, sizeof(u.port)) > 5)
			abort();
	} else
		abort();

	/* The canonical spelling parses back to the same address. */
	if (uri_format(&u, buf, sizeof(buf)) != 0)
		abort();
	memset(&u2, 0x33, sizeof(u2));
	if (uri_parse(buf, &u2, &errstr) != 0) {
		fprintf(stderr, "fuzz_uri: \"%s\" formats as \"%s\", which "
		    "does not parse: %s\n", s, buf, errstr);
		abort();
	}
	if (u2.kind != u.kind || strcmp(u2.path, u.path) != 0 ||
	    strcmp(u2.host, u.host) != 0 || strcmp(u2.port, u.port) != 0)
		abort();
	/* Too small a buffer is refused, never overrun. */
	if (uri_format(&u, buf, strlen(buf)) != -ENOSPC)
		abort();
}

static void
check_hostport(const char *s, size_t hostlen, size_t portlen)
{
	const char	*errstr = NULL;
	char		*host, *port;
	long		 v;
	int		 r;

	if ((host = malloc(hostlen)) == NULL ||
	    (port = malloc(portlen)) == NULL)
		abort();
	r = hostport_parse(s, host, hostlen, port, portlen, &errstr);
	if (r != 0) {
		if (r != -EINVAL || errstr == NULL)
			abort();
		goto out;
	}
	if (host[0] == '\0' || strlen(host) >= hostlen ||
	    port[0] == '\0' || strlen(port) >= portlen || strlen(port) > 5 ||
	    strspn(port, "0123456789") != strlen(port))
		abort();
	v = strtol(port, NULL, 10);
	if (v < 0 || v > 65535)
		abort();
	/* Bracketed or not, the host is what precedes the port. */
	if (s[0] == '[') {
		if (strncmp(s + 1, host, strlen(host)) != 0 ||
		    s[1 + strlen(host)] != ']')
			abort();
	} else if (strncmp(s, host, strlen(host)) != 0 ||
	    strchr(host, ':') != NULL)
		abort();
 out:
	free(port);
	free(host);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;
	size_t	 len, i;
	int	 valid;

	/* Exact-size NUL-terminated copy. */
	len = strnlen((const char *)data, size);
	if ((s = malloc(len + 1)) == NULL)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';

	check_uri(s);

	/* The daemon's buffers, then ones just big enough or one short. */
	check_hostport(s, 256, 16);
	check_hostport(s, len > 0 ? len : 1, 6);
	check_hostport(s, len / 2 + 1, len % 7 + 1);

	valid = session_id_is_valid(s);
	if (valid != (len >= 1 && len <= SESSION_ID_MAX &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.-") == len))
		abort();
	/* A valid id stays valid in every prefix. */
	for (i = 1; valid && i < len; i++) {
		char c = s[i];

		s[i] = '\0';
		if (!session_id_is_valid(s))
			abort();
		s[i] = c;
	}
	free(s);
	return 0;
}
