/*
 * config.c - settings of migrelayd: defaults, one setter shared by the
 * command line and the configuration file (so every option has a key of
 * the same name), the file parser and the effective-configuration dump.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	c->drain_timeout_ms = DRAIN_STOP_MS;
	c->tls_rekey_bytes = TLS_KEY_UPDATE_BYTES;
	c->progress_timeout_ms = PROGRESS_TIMEOUT_MS;
	c->reconnect_timeout_ms = RECONNECT_TIMEOUT_MS;
	c->data_threads = -1;
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
		if (val != NULL) {
			snprintf(err, errlen, "%s takes no value", key);
			return -1;
		}
		c->no_listen = 1;
	} else if (strcmp(key, "insecure-plaintext") == 0) {
		if (val != NULL) {
			snprintf(err, errlen, "%s takes no value", key);
			return -1;
		}
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
	    strcmp(key, "drain-timeout") == 0 ||
	    strcmp(key, "progress-timeout") == 0) {
		char *end;
		unsigned long v = val ? strtoul(val, &end, 10) : 0;
		unsigned long lo = key[0] == 'l' ? 3000 : key[0] == 'd' ? 0 : 100;

		if (val == NULL || *end != '\0' || v < lo || v > 3600000) {
			snprintf(err, errlen, "%s: milliseconds from %lu to "
			    "3600000", key, lo);
			return -1;
		}
		if (key[0] == 'h')
			c->handshake_timeout_ms = (unsigned int)v;
		else if (key[0] == 'd')
			c->drain_timeout_ms = (unsigned int)v;
		else if (key[0] == 'l')
			c->link_timeout_ms = (unsigned int)v;
		else
			c->progress_timeout_ms = (unsigned int)v;
	} else if (strcmp(key, "reconnect-timeout") == 0) {
		char *end;
		unsigned long v = val ? strtoul(val, &end, 10) : 0;

		if (val == NULL || *end != '\0' || (v != 0 && v < 1000) ||
		    v > 3600000) {
			snprintf(err, errlen, "reconnect-timeout: 0 (off) or "
			    "milliseconds from 1000 to 3600000");
			return -1;
		}
		c->reconnect_timeout_ms = (unsigned int)v;
	} else if (strcmp(key, "data-threads") == 0) {
		char *end;
		unsigned long v = val ? strtoul(val, &end, 10) : 0;

		if (val != NULL && strcmp(val, "auto") == 0) {
			c->data_threads = -1;
		} else if (val == NULL || *end != '\0' ||
		    v > MAX_DATA_THREADS) {
			snprintf(err, errlen, "data-threads: auto, or 0 (channel "
			    "I/O on the main thread) to %d", MAX_DATA_THREADS);
			return -1;
		} else {
			c->data_threads = (int)v;
		}
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
	} else if (strcmp(key, "metrics-listen") == 0) {
		if (val == NULL || hostport_parse(val, host, sizeof(host), port,
		    sizeof(port), &errstr) != 0 ||
		    strlen(val) >= sizeof(c->metrics_listen)) {
			snprintf(err, errlen, "metrics-listen %s: %s", val ?
			    val : "", val ? "expected HOST:PORT" :
			    "address missing");
			return -1;
		}
		snprintf(c->metrics_listen, sizeof(c->metrics_listen), "%s",
		    val);
	} else if (strcmp(key, "no-auth") == 0) {
		if (val != NULL) {
			snprintf(err, errlen, "%s takes no value", key);
			return -1;
		}
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
conf_load(struct conf *c, const char *path, int must_exist, char *first,
    size_t firstlen)
{
	FILE	*fp;
	char	 line[1024], err[1024];
	int	 lineno = 0, rc = 0;

	if ((fp = fopen(path, "r")) == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		snprintf(first, firstlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, sizeof(err), "%s:%d: line too long", path,
			    lineno);
			if (rc == 0)
				snprintf(first, firstlen, "%s", err);
			else
				log_warnx("%s", err);
			rc = -1;
			break;
		}
		if (conf_parse_line(c, path, lineno, line, err,
		    sizeof(err)) != 0) {
			/* The first error is returned, the others logged. */
			if (rc == 0)
				snprintf(first, firstlen, "%s", err);
			else
				log_warnx("%s", err);
			rc = -1;
		}
	}
	fclose(fp);
	return rc;
}

static char	 conf_path[4096];
static int	 conf_must_exist;
static struct {
	char	 key[32];
	char	*val;
} overrides[64];
static unsigned int noverrides;

/* The configuration file, read again on every reload. */
void
conf_remember_file(const char *path, int must_exist)
{
	snprintf(conf_path, sizeof(conf_path), "%s", path);
	conf_must_exist = must_exist;
}

/*
 * A command-line option: checked now, and applied over the file at startup
 * and on every reload.  Returns 0, or -1 with err set.
 */
int
conf_remember_override(const char *key, const char *val, char *err,
    size_t errlen)
{
	struct conf	 scratch;

	conf_defaults(&scratch);
	if (conf_set(&scratch, key, val, err, errlen) != 0)
		return -1;
	if (noverrides == sizeof(overrides) / sizeof(overrides[0])) {
		snprintf(err, errlen, "%s: too many options", key);
		return -1;
	}
	snprintf(overrides[noverrides].key, sizeof(overrides[0].key), "%s",
	    key);
	overrides[noverrides].val = val != NULL ? strdup(val) : NULL;
	noverrides++;
	return 0;
}

/*
 * The effective configuration: defaults, the file, then the command line
 * (whose --listen addresses replace the file's).  Returns 0, or -1 with
 * the first error in err (file:line for the file).
 */
int
conf_build(struct conf *c, char *err, size_t errlen)
{
	unsigned int	 i;
	int		 listen_reset = 0;
	const char	*cd;

	conf_defaults(c);
	err[0] = '\0';
	if (conf_load(c, conf_path, conf_must_exist, err, errlen) != 0)
		return -1;
	for (i = 0; i < noverrides; i++) {
		if (strcmp(overrides[i].key, "listen") == 0 && !listen_reset) {
			c->nlisten = 0;
			listen_reset = 1;
		}
		if (conf_set(c, overrides[i].key, overrides[i].val, err,
		    errlen) != 0)
			return -1;
	}
	if (c->nlisten == 0 && !c->no_listen) {
		snprintf(c->listen[0], sizeof(c->listen[0]), "[::]:4600");
		snprintf(c->listen[1], sizeof(c->listen[1]), "0.0.0.0:4600");
		c->nlisten = 2;
	}
	/* systemd credential, when no --auth-secret is given. */
	if (c->auth_secret[0] == '\0' &&
	    (cd = getenv("CREDENTIALS_DIRECTORY")) != NULL) {
		char	 cred[4096];

		snprintf(cred, sizeof(cred), "%s/migrelay-auth-secret", cd);
		if (access(cred, R_OK) == 0)
			snprintf(c->auth_secret, sizeof(c->auth_secret), "%s",
			    cred);
	}
	return 0;
}

/* Rules across settings.  Returns 0, or -1 with err set. */
int
conf_validate(const struct conf *c, char *err, size_t errlen)
{
	if (c->insecure_plaintext && c->tls_dir[0] != '\0') {
		snprintf(err, errlen, "--tls-dir and --insecure-plaintext "
		    "exclude each other");
		return -1;
	}
	if (!c->insecure_plaintext && c->tls_dir[0] == '\0') {
		snprintf(err, errlen, "no TLS credentials configured: give "
		    "--tls-dir DIR (ca-cert.pem, server-cert.pem, server-key.pem, "
		    "client-cert.pem, client-key.pem), or --insecure-plaintext on "
		    "both relays to run without encryption");
		return -1;
	}
	if (c->no_auth && c->auth_users[0] != '\0') {
		snprintf(err, errlen, "--no-auth and --auth-users exclude each "
		    "other");
		return -1;
	}
	return 0;
}

/*
 * Load the credentials c names into t and the SCRAM tables (startup).
 * Returns 0, or -1 with err set.
 */
int
conf_load_credentials(const struct conf *c, char *err, size_t errlen)
{
	if (c->tls_dir[0] != '\0' && tls_creds_load(c->tls_dir, &g_tls, err,
	    errlen) != 0)
		return -1;
	if (c->auth_users[0] != '\0' && auth_load_users(c->auth_users, err,
	    errlen) != 0)
		return -1;
	if (c->auth_secret[0] != '\0' && auth_load_secret(c->auth_secret, err,
	    errlen) != 0)
		return -1;
	if (g_tls != NULL && g_tls->server != NULL && !c->no_listen &&
	    !c->no_auth && c->auth_users[0] == '\0') {
		snprintf(err, errlen, "accepting links needs --auth-users FILE "
		    "(SCRAM-SHA-256 verifiers, see --make-verifier), or "
		    "--no-auth to rely on client certificates alone");
		return -1;
	}
	return 0;
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
	if (c->metrics_listen[0] != '\0')
		fprintf(fp, "metrics-listen %s\n", c->metrics_listen);
	fprintf(fp, "handshake-timeout %u\n", c->handshake_timeout_ms);
	fprintf(fp, "link-timeout %u\n", c->link_timeout_ms);
	fprintf(fp, "drain-timeout %u\n", c->drain_timeout_ms);
	fprintf(fp, "tls-rekey-bytes %llu\n",
	    (unsigned long long)c->tls_rekey_bytes);
	fprintf(fp, "progress-timeout %u\n", c->progress_timeout_ms);
	fprintf(fp, "reconnect-timeout %u\n", c->reconnect_timeout_ms);
	if (c->data_threads < 0)
		fprintf(fp, "data-threads auto\n");
	else
		fprintf(fp, "data-threads %d\n", c->data_threads);
	fprintf(fp, "log-level %s\n", log_level_name(c->log_level));
}


/*
 * Reload: build the configuration again from the file and the command
 * line, and reload the credentials it names, all or nothing.  Settings
 * that need new sockets (control, listen, no-listen, insecure-plaintext,
 * metrics-listen) keep their old values and are reported.  Running
 * sessions keep the TLS contexts they started with (OpenSSL reference
 * counts them).  Returns 0, or -1 with err set and nothing changed.
 */
int
daemon_reload(char *err, size_t errlen)
{
	struct tls_creds	*nt = NULL;
	struct conf		 nc;
	unsigned int		 i;
	int			 same;

	if (conf_build(&nc, err, errlen) != 0 ||
	    conf_validate(&nc, err, errlen) != 0)
		return -1;
	same = nc.nlisten == g_conf.nlisten;
	for (i = 0; same && i < nc.nlisten; i++)
		same = strcmp(nc.listen[i], g_conf.listen[i]) == 0;
	if (!same || nc.no_listen != g_conf.no_listen ||
	    strcmp(nc.control_path, g_conf.control_path) != 0 ||
	    nc.insecure_plaintext != g_conf.insecure_plaintext ||
	    strcmp(nc.metrics_listen, g_conf.metrics_listen) != 0 ||
	    nc.data_threads != g_conf.data_threads)
		log_warnx("reload: control, listen, no-listen, "
		    "insecure-plaintext, metrics-listen or data-threads changed; "
		    "they take effect after a restart");
	nc.data_threads = g_conf.data_threads;
	nc.nlisten = g_conf.nlisten;
	memcpy(nc.listen, g_conf.listen, sizeof(nc.listen));
	nc.no_listen = g_conf.no_listen;
	memcpy(nc.control_path, g_conf.control_path, sizeof(nc.control_path));
	nc.insecure_plaintext = g_conf.insecure_plaintext;
	memcpy(nc.metrics_listen, g_conf.metrics_listen,
	    sizeof(nc.metrics_listen));
	if (nc.tls_dir[0] != '\0' && tls_creds_load(nc.tls_dir, &nt, err,
	    errlen) != 0)
		return -1;
	if ((nt != NULL ? nt : g_tls) != NULL &&
	    (nt != NULL ? nt : g_tls)->server != NULL && !nc.no_listen &&
	    !nc.no_auth && nc.auth_users[0] == '\0') {
		snprintf(err, errlen, "accepting links needs auth-users FILE, or "
		    "no-auth to rely on client certificates alone");
		tls_creds_free(nt);
		return -1;
	}
	if (auth_reload(nc.auth_users, nc.auth_secret, err, errlen) != 0) {
		tls_creds_free(nt);
		return -1;
	}
	if (nt != NULL) {
		tls_creds_free(g_tls);
		g_tls = nt;
	}
	g_conf = nc;
	log_set_level(g_conf.log_level);
	log_info("configuration and credentials reloaded");
	return 0;
}
