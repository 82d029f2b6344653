/*
 * config.c - settings of migrelayd: defaults, one setter shared by the
 * command line and the configuration file (so every option has a key of
 * the same name), the file parser and the effective-configuration dump.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrelayd.h"
#include "tls.h"

#define DEFAULT_CONTROL	"/run/migrelay/control.sock"

void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->control_path, sizeof(c->control_path), "%s",
	    DEFAULT_CONTROL);
	c->log_level = LOG_LVL_INFO;
	c->handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
	c->link_timeout_ms = LINK_TIMEOUT_MS;
	c->tls_rekey_bytes = TLS_KEY_UPDATE_BYTES;
	c->progress_timeout_ms = PROGRESS_TIMEOUT_MS;
}

/*
 * Apply one setting.  Used for both the file and the command line, so
 * every option has a configuration key of the same name.
 */
int
conf_set(struct conf *c, const char *key, const char *val, char *err,
    size_t errlen)
{
	char		 host[256], port[16];
	const char	*errstr;
	int		 l;

	if (strcmp(key, "control") == 0) {
		if (val == NULL || strlen(val) >= sizeof(c->control_path)) {
			snprintf(err, errlen, "control: path missing or too long");
			return -1;
		}
		snprintf(c->control_path, sizeof(c->control_path), "%s", val);
	} else if (strcmp(key, "listen") == 0) {
		if (val == NULL || hostport_parse(val, host, sizeof(host), port,
		    sizeof(port), &errstr) != 0) {
			snprintf(err, errlen, "listen %s: %s", val ? val : "",
			    val ? errstr : "address missing");
			return -1;
		}
		if (c->nlisten >= MAX_LISTENERS) {
			snprintf(err, errlen, "listen: at most %d addresses",
			    MAX_LISTENERS);
			return -1;
		}
		snprintf(c->listen[c->nlisten++], sizeof(c->listen[0]), "%s",
		    val);
	} else if (strcmp(key, "no-listen") == 0) {
		c->no_listen = 1;
	} else if (strcmp(key, "insecure-plaintext") == 0) {
		c->insecure_plaintext = 1;
	} else if (strcmp(key, "tls-dir") == 0) {
		if (val == NULL || strlen(val) >= sizeof(c->tls_dir)) {
			snprintf(err, errlen, "tls-dir: directory missing or "
			    "too long");
			return -1;
		}
		snprintf(c->tls_dir, sizeof(c->tls_dir), "%s", val);
	} else if (strcmp(key, "auth-users") == 0 ||
	    strcmp(key, "auth-secret") == 0) {
		char *dst = key[5] == 'u' ? c->auth_users : c->auth_secret;

		if (val == NULL || strlen(val) >= sizeof(c->auth_users)) {
			snprintf(err, errlen, "%s: file name missing or too long",
			    key);
			return -1;
		}
		snprintf(dst, sizeof(c->auth_users), "%s", val);
	} else if (strcmp(key, "handshake-timeout") == 0 ||
	    strcmp(key, "link-timeout") == 0 ||
	    strcmp(key, "progress-timeout") == 0) {
		char *end;
		unsigned long v = val ? strtoul(val, &end, 10) : 0;
		unsigned long lo = key[0] == 'l' ? 3000 : 100;

		if (val == NULL || *end != '\0' || v < lo || v > 3600000) {
			snprintf(err, errlen, "%s: milliseconds from %lu to "
			    "3600000", key, lo);
			return -1;
		}
		if (key[0] == 'h')
			c->handshake_timeout_ms = (unsigned int)v;
		else if (key[0] == 'l')
			c->link_timeout_ms = (unsigned int)v;
		else
			c->progress_timeout_ms = (unsigned int)v;
	} else if (strcmp(key, "tls-rekey-bytes") == 0) {
		char *end;
		unsigned long long v = val ? strtoull(val, &end, 10) : 0;

		if (val == NULL || *end != '\0' || v < (1ULL << 20) ||
		    v > (256ULL << 30)) {
			snprintf(err, errlen, "tls-rekey-bytes: bytes from 1 MiB "
			    "to 256 GiB");
			return -1;
		}
		c->tls_rekey_bytes = v;
	} else if (strcmp(key, "no-auth") == 0) {
		c->no_auth = 1;
	} else if (strcmp(key, "log-level") == 0) {
		if (val == NULL || (l = log_level_parse(val)) < 0) {
			snprintf(err, errlen, "log-level: expected error, "
			    "warning, info or debug");
			return -1;
		}
		c->log_level = l;
	} else {
		snprintf(err, errlen, "unknown option '%s'", key);
		return -1;
	}
	return 0;
}

/*
 * Parse one line of a configuration file: "key value", "key = value" or a
 * bare key; '#' starts a comment.  line is modified.  Returns 0, or -1 with
 * "file:line: message" in err.
 */
int
conf_parse_line(struct conf *c, const char *file, int lineno, char *line,
    char *err, size_t errlen)
{
	char	 msg[512], *p, *key, *val, *e;

	if ((p = strchr(line, '#')) != NULL)
		*p = '\0';
	p = line + strspn(line, " \t\r\n");
	if (*p == '\0')
		return 0;
	key = p;
	p += strcspn(p, " \t\r\n=");
	e = p;
	p += strspn(p, " \t");
	if (*p == '=')
		p++;
	*e = '\0';
	p += strspn(p, " \t");
	val = p;
	for (e = val + strlen(val); e > val && (e[-1] == ' ' ||
	    e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'); e--)
		;
	*e = '\0';
	if (conf_set(c, key, *val ? val : NULL, msg, sizeof(msg)) != 0) {
		snprintf(err, errlen, "%s:%d: %s", file, lineno, msg);
		return -1;
	}
	return 0;
}

/*
 * Read a configuration file into c.  Every error is printed with its file
 * and line.  Returns 0, or -1.
 */
int
conf_load(struct conf *c, const char *path, int must_exist)
{
	FILE	*fp;
	char	 line[1024], err[1024];
	int	 lineno = 0, rc = 0;

	if ((fp = fopen(path, "r")) == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		fprintf(stderr, "migrelayd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			fprintf(stderr, "migrelayd: %s:%d: line too long\n",
			    path, lineno);
			rc = -1;
			break;
		}
		if (conf_parse_line(c, path, lineno, line, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "migrelayd: %s\n", err);
			rc = -1;
		}
	}
	fclose(fp);
	return rc;
}

void
conf_print(const struct conf *c, FILE *fp)
{
	unsigned int	 i;

	fprintf(fp, "control %s\n", c->control_path);
	if (c->no_listen)
		fprintf(fp, "no-listen\n");
	for (i = 0; i < c->nlisten && !c->no_listen; i++)
		fprintf(fp, "listen %s\n", c->listen[i]);
	if (c->insecure_plaintext)
		fprintf(fp, "insecure-plaintext\n");
	if (c->tls_dir[0] != '\0')
		fprintf(fp, "tls-dir %s\n", c->tls_dir);
	if (c->auth_users[0] != '\0')
		fprintf(fp, "auth-users %s\n", c->auth_users);
	if (c->auth_secret[0] != '\0')
		fprintf(fp, "auth-secret %s\n", c->auth_secret);
	if (c->no_auth)
		fprintf(fp, "no-auth\n");
	fprintf(fp, "handshake-timeout %u\n", c->handshake_timeout_ms);
	fprintf(fp, "link-timeout %u\n", c->link_timeout_ms);
	fprintf(fp, "tls-rekey-bytes %llu\n",
	    (unsigned long long)c->tls_rekey_bytes);
	fprintf(fp, "progress-timeout %u\n", c->progress_timeout_ms);
	fprintf(fp, "log-level %s\n", log_level_name(c->log_level));
}


/*
 * Re-read the credentials the configuration names (TLS directory, SCRAM
 * verifiers and secret), all or nothing.  Running sessions keep the TLS
 * contexts they started with (OpenSSL reference counts them).  Returns 0,
 * or -1 with err set and the old credentials still in use.
 */
int
daemon_reload(char *err, size_t errlen)
{
	struct tls_creds	*nt = NULL;

	if (g_conf.tls_dir[0] != '\0' && tls_creds_load(g_conf.tls_dir, &nt,
	    err, errlen) != 0)
		return -1;
	if (auth_reload(g_conf.auth_users, g_conf.auth_secret, err,
	    errlen) != 0) {
		tls_creds_free(nt);
		return -1;
	}
	if (nt != NULL) {
		tls_creds_free(g_tls);
		g_tls = nt;
	}
	log_info("credentials reloaded%s%s", g_conf.tls_dir[0] ? " from " : "",
	    g_conf.tls_dir);
	return 0;
}
