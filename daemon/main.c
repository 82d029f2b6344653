/*
 * main.c - migrelayd: options, configuration file, startup and the event
 * loop.
 *
 * Startup order: parse options and the configuration file, refuse insecure
 * settings that were not asked for explicitly, open the control socket and
 * the relay listeners, then run the loop.  SIGTERM and SIGINT fail every
 * running session cleanly (QEMU-facing sockets closed) and exit.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrelayd.h"
#include "tls.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG	SYSCONFDIR "/migrelay/migrelayd.conf"

static void	 usage(void) __attribute__((noreturn));

enum {
	OPT_CONFIG = 256,
	OPT_CONTROL,
	OPT_LISTEN,
	OPT_NO_LISTEN,
	OPT_TLS_DIR,
	OPT_INSECURE,
	OPT_LOG_LEVEL,
	OPT_CHECK_CONFIG,
	OPT_AUTH_USERS,
	OPT_AUTH_SECRET,
	OPT_NO_AUTH,
	OPT_MAKE_VERIFIER,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_LINK_TIMEOUT,
	OPT_TLS_REKEY,
	OPT_PROGRESS_TIMEOUT,
	OPT_HELP,
	OPT_VERSION,
};

static const struct option longopts[] = {
	{ "config",		required_argument, NULL, OPT_CONFIG },
	{ "control",		required_argument, NULL, OPT_CONTROL },
	{ "listen",		required_argument, NULL, OPT_LISTEN },
	{ "no-listen",		no_argument,	   NULL, OPT_NO_LISTEN },
	{ "tls-dir",		required_argument, NULL, OPT_TLS_DIR },
	{ "insecure-plaintext",	no_argument,	   NULL, OPT_INSECURE },
	{ "log-level",		required_argument, NULL, OPT_LOG_LEVEL },
	{ "check-config",	no_argument,	   NULL, OPT_CHECK_CONFIG },
	{ "auth-users",		required_argument, NULL, OPT_AUTH_USERS },
	{ "auth-secret",	required_argument, NULL, OPT_AUTH_SECRET },
	{ "no-auth",		no_argument,	   NULL, OPT_NO_AUTH },
	{ "make-verifier",	required_argument, NULL, OPT_MAKE_VERIFIER },
	{ "handshake-timeout",	required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "link-timeout",	required_argument, NULL, OPT_LINK_TIMEOUT },
	{ "tls-rekey-bytes",	required_argument, NULL, OPT_TLS_REKEY },
	{ "progress-timeout",	required_argument, NULL, OPT_PROGRESS_TIMEOUT },
	{ "help",		no_argument,	   NULL, OPT_HELP },
	{ "version",		no_argument,	   NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 }
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: migrelayd [--config file] [--control path] "
	    "[--listen host:port ...]\n"
	    "                 [--no-listen] [--tls-dir dir] "
	    "[--insecure-plaintext]\n"
	    "                 [--auth-users file] [--auth-secret file] "
	    "[--no-auth]\n"
	    "                 [--tls-rekey-bytes n]\n"
	    "                 [--handshake-timeout ms] [--link-timeout ms] "
	    "[--progress-timeout ms]\n"
	    "                 [--log-level level] [--check-config] "
	    "[--version]\n"
	    "       migrelayd --make-verifier name\n");
	exit(1);
}

static void
sighup_cb(evutil_socket_t sig, short ev, void *arg)
{
	char	 err[1024];

	log_info("SIGHUP: reloading credentials");
	if (daemon_reload(err, sizeof(err)) != 0)
		log_warnx("reload failed, keeping the old credentials: %s", err);
}

static void
signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	log_info("received signal %d, shutting down", (int)sig);
	session_fail_all("the relay is shutting down");
	event_base_loopexit(g_base, NULL);
}

int
main(int argc, char *argv[])
{
	struct conf	 cmdline, conf;
	struct event	*sigterm, *sigint, *sighup;
	const char	*config = NULL;
	char		 err[512];
	int		 ch, check = 0, i;

	conf_defaults(&cmdline);
	/* First pass: only find --config; options override the file. */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		if (ch == OPT_CONFIG)
			config = optarg;
	conf_defaults(&conf);
	if (conf_load(&conf, config ? config : DEFAULT_CONFIG,
	    config != NULL) != 0)
		exit(1);
	optind = 1;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const char *key = NULL;

		for (i = 0; longopts[i].name != NULL; i++)
			if (longopts[i].val == ch)
				key = longopts[i].name;
		switch (ch) {
		case OPT_CONFIG:
			break;
		case OPT_LISTEN:
			/* Command-line addresses replace the file's. */
			if (!cmdline.nlisten)
				conf.nlisten = 0;
			cmdline.nlisten = 1;
			/* FALLTHROUGH */
		case OPT_CONTROL:
		case OPT_NO_LISTEN:
		case OPT_TLS_DIR:
		case OPT_INSECURE:
		case OPT_LOG_LEVEL:
		case OPT_AUTH_USERS:
		case OPT_AUTH_SECRET:
		case OPT_NO_AUTH:
		case OPT_HANDSHAKE_TIMEOUT:
		case OPT_LINK_TIMEOUT:
		case OPT_TLS_REKEY:
		case OPT_PROGRESS_TIMEOUT:
			if (conf_set(&conf, key, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "migrelayd: --%s\n", err);
				exit(1);
			}
			break;
		case OPT_CHECK_CONFIG:
			check = 1;
			break;
		case OPT_MAKE_VERIFIER:
			exit(auth_make_verifier(optarg));
		case OPT_VERSION:
			printf("migrelayd %d.%d.%d\n", MIGRELAY_VERSION_MAJOR,
			    MIGRELAY_VERSION_MINOR, MIGRELAY_VERSION_MICRO);
			exit(0);
		case OPT_HELP:
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (conf.nlisten == 0 && !conf.no_listen) {
		snprintf(conf.listen[0], sizeof(conf.listen[0]), "[::]:4600");
		snprintf(conf.listen[1], sizeof(conf.listen[1]), "0.0.0.0:4600");
		conf.nlisten = 2;
	}
	if (conf.insecure_plaintext && conf.tls_dir[0] != '\0') {
		fprintf(stderr, "migrelayd: --tls-dir and --insecure-plaintext "
		    "exclude each other\n");
		exit(1);
	}
	if (!conf.insecure_plaintext && conf.tls_dir[0] == '\0') {
		fprintf(stderr, "migrelayd: no TLS credentials configured: give "
		    "--tls-dir DIR (ca-cert.pem, server-cert.pem, server-key.pem, "
		    "client-cert.pem, client-key.pem), or --insecure-plaintext on "
		    "both relays to run without encryption\n");
		exit(1);
	}
	if (conf.tls_dir[0] != '\0' && tls_creds_load(conf.tls_dir, &g_tls,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "migrelayd: %s\n", err);
		exit(1);
	}
	if (conf.auth_secret[0] == '\0' && getenv("CREDENTIALS_DIRECTORY")) {
		char	 cred[4096];

		snprintf(cred, sizeof(cred), "%s/migrelay-auth-secret",
		    getenv("CREDENTIALS_DIRECTORY"));
		if (access(cred, R_OK) == 0)
			snprintf(conf.auth_secret, sizeof(conf.auth_secret), "%s",
			    cred);
	}
	if (auth_init() != 0)
		fatalx("no randomness");
	if (conf.no_auth && conf.auth_users[0] != '\0') {
		fprintf(stderr, "migrelayd: --no-auth and --auth-users exclude "
		    "each other\n");
		exit(1);
	}
	if (conf.auth_users[0] != '\0' && auth_load_users(conf.auth_users,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "migrelayd: %s\n", err);
		exit(1);
	}
	if (conf.auth_secret[0] != '\0' && auth_load_secret(conf.auth_secret,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "migrelayd: %s\n", err);
		exit(1);
	}
	if (g_tls != NULL && g_tls->server != NULL && !conf.no_listen &&
	    !conf.no_auth && conf.auth_users[0] == '\0') {
		fprintf(stderr, "migrelayd: accepting links needs --auth-users "
		    "FILE (SCRAM-SHA-256 verifiers, see --make-verifier), or "
		    "--no-auth to rely on client certificates alone\n");
		exit(1);
	}
	if (check) {
		conf_print(&conf, stdout);
		exit(0);
	}
	g_conf = conf;
	log_init(g_conf.log_level);
	/*
	 * Frame buffers of up to 256 KiB come and go at link speed.  Keep
	 * them on the heap and do not give the heap top back to the kernel
	 * after every frame (each round trip costs brk() and 64 page faults);
	 * session_summary() trims once a session ends.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
	signal(SIGPIPE, SIG_IGN);
	if ((g_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if (g_conf.insecure_plaintext)
		log_warnx("running with --insecure-plaintext: migrations are "
		    "neither encrypted nor authenticated");
	else
		log_info("TLS credentials from %s (%s%s%s)", g_conf.tls_dir,
		    g_tls->server ? "server" : "", g_tls->server &&
		    g_tls->client ? " and " : "", g_tls->client ? "client" : "");
	control_open(g_conf.control_path);
	listener_open_all();
	sigterm = evsignal_new(g_base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(g_base, SIGINT, signal_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	sighup = evsignal_new(g_base, SIGHUP, sighup_cb, NULL);
	event_add(sighup, NULL);
	log_info("migrelayd %d.%d.%d ready", MIGRELAY_VERSION_MAJOR,
	    MIGRELAY_VERSION_MINOR, MIGRELAY_VERSION_MICRO);
	event_base_dispatch(g_base);

	/* Let ABORT frames of failed sessions leave, briefly. */
	{
		struct timeval tv = { 0, 200000 };

		event_base_loopexit(g_base, &tv);
		event_base_dispatch(g_base);
	}
	while (!TAILQ_EMPTY(&g_sessions))
		session_free(TAILQ_FIRST(&g_sessions));
	channel_reap();
	tls_creds_free(g_tls);
	listener_close_all();
	control_close();
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(g_base);
	return 0;
}
