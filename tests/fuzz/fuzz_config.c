/*
 * fuzz_config.c - libFuzzer harness for migrelayd's configuration file:
 * the input is a file, read line by line the way conf_load() does (lines
 * of at most 1023 bytes with their newline; a longer line ends the file)
 * into a fresh struct conf through conf_parse_line().  What was accepted
 * must make sense to its users: every listen address parses again as the
 * listener parses it, every string is terminated inside its array, and
 * conf_print() can dump the result.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrelayd.h"

#define LINE_MAX_LEN	1023	/* conf_load(): char line[1024] and fgets() */

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static FILE	*devnull;

static void
check_conf(const struct conf *c)
{
	char		 host[256], port[16];
	const char	*errstr;
	unsigned int	 i;

	if (c->nlisten > MAX_LISTENERS)
		abort();
	if (memchr(c->control_path, '\0', sizeof(c->control_path)) == NULL ||
	    memchr(c->tls_dir, '\0', sizeof(c->tls_dir)) == NULL ||
	    memchr(c->auth_users, '\0', sizeof(c->auth_users)) == NULL ||
	    memchr(c->auth_secret, '\0', sizeof(c->auth_secret)) == NULL ||
	    memchr(c->config_file, '\0', sizeof(c->config_file)) == NULL)
		abort();
	if (c->control_path[0] == '\0')
		abort();
	for (i = 0; i < c->nlisten; i++) {
		if (memchr(c->listen[i], '\0', sizeof(c->listen[i])) == NULL)
			abort();
		/* listener.c parses the stored address again. */
		if (hostport_parse(c->listen[i], host, sizeof(host), port,
		    sizeof(port), &errstr) != 0) {
			fprintf(stderr, "fuzz_config: accepted listen address "
			    "\"%s\" does not parse: %s\n", c->listen[i],
			    errstr);
			abort();
		}
	}
	if (c->log_level < LOG_LVL_ERR || c->log_level > LOG_LVL_DEBUG)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf	*c;
	const uint8_t	*p, *end, *nl;
	char		*line, err[1024], esc[256];
	size_t		 len;
	int		 lineno = 0;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	if ((c = malloc(sizeof(*c))) == NULL)
		abort();
	conf_defaults(c);

	for (p = data, end = data + size; p < end; p += len) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		if (len > LINE_MAX_LEN)
			break;	/* "line too long": conf_load() stops */
		lineno++;
		/* fgets() stops at the newline; NULs in between stay. */
		if ((line = malloc(len + 1)) == NULL)
			abort();
		memcpy(line, p, len);
		line[len] = '\0';
		memset(err, 0x55, sizeof(err));
		if (conf_parse_line(c, "fuzz.conf", lineno, line, err,
		    sizeof(err)) != 0) {
			if (memchr(err, '\0', sizeof(err)) == NULL ||
			    strncmp(err, "fuzz.conf:", 10) != 0)
				abort();
			str_escape(esc, sizeof(esc), err);
			if (strlen(esc) >= sizeof(esc))
				abort();
		}
		free(line);
		check_conf(c);
	}
	conf_print(c, devnull);
	free(c);
	return 0;
}
