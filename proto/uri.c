/*
 * uri.c - migration URIs in QEMU's spelling and relay addresses.
 *
 *	unix:PATH		an AF_UNIX stream socket
 *	tcp:HOST:PORT		HOST a name, an IPv4 address or [IPv6]
 *
 * QEMU's optional ",key=value" suffixes are not accepted: the relay only
 * needs the address, and silently dropping options would be surprising.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static int
port_is_valid(const char *p)
{
	char	*end;
	long	 v;

	if (*p == '\0' || strlen(p) > 5)
		return 0;
	for (end = (char *)p; *end; end++)
		if (*end < '0' || *end > '9')
			return 0;
	v = strtol(p, &end, 10);
	return v >= 0 && v <= 65535;
}

/*
 * Split "HOST:PORT" or "[V6]:PORT".  Returns 0 or -EINVAL with *errstr set
 * to a static message.
 */
int
hostport_parse(const char *s, char *host, size_t hostlen, char *port,
    size_t portlen, const char **errstr)
{
	const char	*colon, *h;
	size_t		 hl;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':') {
			*errstr = "IPv6 address must be written as [ADDR]:PORT";
			return -EINVAL;
		}
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*errstr = "address must be HOST:PORT";
			return -EINVAL;
		}
		h = s;
		hl = (size_t)(colon - s);
		if (memchr(h, ':', hl) != NULL) {
			*errstr = "IPv6 address must be written as [ADDR]:PORT";
			return -EINVAL;
		}
	}
	if (hl == 0) {
		*errstr = "empty host";
		return -EINVAL;
	}
	if (memchr(h, '[', hl) != NULL || memchr(h, ']', hl) != NULL) {
		*errstr = "brackets inside the host";
		return -EINVAL;
	}
	if (hl >= hostlen) {
		*errstr = "host name too long";
		return -EINVAL;
	}
	if (!port_is_valid(colon + 1) || strlen(colon + 1) >= portlen) {
		*errstr = "port must be a number from 0 to 65535";
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

int
uri_parse(const char *s, struct mig_uri *ret, const char **errstr)
{
	struct mig_uri	 u;
	size_t		 len;

	memset(&u, 0, sizeof(u));
	if (strncmp(s, "unix:", 5) == 0) {
		len = strlen(s + 5);
		if (len == 0) {
			*errstr = "empty unix socket path";
			return -EINVAL;
		}
		if (len >= sizeof(u.path)) {
			*errstr = "unix socket path too long";
			return -EINVAL;
		}
		if (strchr(s + 5, ',') != NULL) {
			*errstr = "URI options (',') are not supported";
			return -EINVAL;
		}
		u.kind = URI_UNIX;
		memcpy(u.path, s + 5, len + 1);
	} else if (strncmp(s, "tcp:", 4) == 0) {
		if (strchr(s + 4, ',') != NULL) {
			*errstr = "URI options (',') are not supported";
			return -EINVAL;
		}
		if (hostport_parse(s + 4, u.host, sizeof(u.host), u.port,
		    sizeof(u.port), errstr) != 0)
			return -EINVAL;
		u.kind = URI_TCP;
	} else {
		*errstr = "URI must start with unix: or tcp:";
		return -EINVAL;
	}
	*ret = u;
	return 0;
}

/* Writes the canonical spelling; returns 0 or -ENOSPC. */
int
uri_format(const struct mig_uri *u, char *buf, size_t len)
{
	int	 n;

	if (u->kind == URI_UNIX)
		n = snprintf(buf, len, "unix:%s", u->path);
	else if (strchr(u->host, ':') != NULL)
		n = snprintf(buf, len, "tcp:[%s]:%s", u->host, u->port);
	else
		n = snprintf(buf, len, "tcp:%s:%s", u->host, u->port);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return 0;
}

/* 1-64 characters of [A-Za-z0-9_.-]. */
int
session_id_is_valid(const char *id)
{
	size_t	 i, len = strlen(id);

	if (len == 0 || len > SESSION_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}
