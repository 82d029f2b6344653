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
	OPT_DRAIN_TIMEOUT,
	OPT_METRICS_LISTEN,
	OPT_TLS_REKEY,
	OPT_PROGRESS_TIMEOUT,
	OPT_RECONNECT_TIMEOUT,
	OPT_DATA_THREADS,
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
	{ "drain-timeout",	required_argument, NULL, OPT_DRAIN_TIMEOUT },
	{ "metrics-listen",	required_argument, NULL, OPT_METRICS_LISTEN },
	{ "tls-rekey-bytes",	required_argument, NULL, OPT_TLS_REKEY },
	{ "progress-timeout",	required_argument, NULL, OPT_PROGRESS_TIMEOUT },
	{ "reconnect-timeout",	required_argument, NULL, OPT_RECONNECT_TIMEOUT },
	{ "data-threads",	required_argument, NULL, OPT_DATA_THREADS },
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
	    "                 [--reconnect-timeout ms] [--drain-timeout ms]\n"
	    "                 [--metrics-listen host:port] [--data-threads n]\n"
	    "                 [--log-level level] [--check-config] "
	    "[--version]\n"
	    "       migrelayd --make-verifier name\n");
	exit(1);
}

static void
sighup_cb(evutil_socket_t sig, short ev, void *arg)
{
	char	 err[1024];

	log_info("SIGHUP: reloading the configuration and credentials");
	systemd_notify("RELOADING=1");
	if (daemon_reload(err, sizeof(err)) != 0)
		log_warnx("reload failed, keeping the old configuration and "
		    "credentials: %s", err);
	systemd_notify("READY=1");
	systemd_status();
}

static struct event	*drain_ev;
static struct timespec	 drain_start;

/*
 * Leave the loop a little later, so that the ABORTs just queued reach the
 * peer relays: without them a peer that can re-establish channels would
 * wait out its reconnect-timeout instead of learning why.
 */
static void
loop_exit_soon(void)
{
	struct timeval	 tv;

	ms_to_tv(300, &tv);
	event_base_loopexit(g_base, &tv);
}

/* Sessions that are not migrating yet end at once when we stop. */
static void
drain_fail_idle(void)
{
	struct session	*se;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		if (!session_is_final(se) && se->se_state != SE_ACTIVE)
			session_fail(se, SE_FAILED, EC_GENERIC, "the relay is "
			    "shutting down");
}

static int
drain_running(void)
{
	struct session	*se;
	int		 n = 0;

	TAILQ_FOREACH(se, &g_sessions, se_entry)
		if (!session_is_final(se))
			n++;
	return n;
}

static void
drain_cb(evutil_socket_t fd, short ev, void *arg)
{
	int	 n = drain_running();

	if (n > 0 && mono_ms_since(&drain_start) < g_conf.drain_timeout_ms)
		return;
	if (n > 0) {
		log_warnx("drain period of %u ms over: failing %d running "
		    "migration%s", g_conf.drain_timeout_ms, n, n == 1 ? "" : "s");
		session_fail_all("the relay is shutting down (drain period "
		    "over)");
		event_del(drain_ev);
		loop_exit_soon();
		return;
	}
	event_base_loopexit(g_base, NULL);
}

/*
 * SIGTERM/SIGINT: refuse new sessions at once, let running migrations
 * finish for up to drain-timeout, then fail the rest cleanly (QEMU-facing
 * sockets closed, so source guests keep running) and exit.  A second
 * signal stops at once, the same clean way.
 */
static void
signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	struct timeval	 tv;

	if (g_draining) {
		log_info("signal %d again: stopping now", (int)sig);
		session_fail_all("the relay is shutting down");
		loop_exit_soon();
		return;
	}
	g_draining = 1;
	systemd_notify("STOPPING=1");
	drain_fail_idle();
	log_info("signal %d: stopping; %d running migration%s may finish "
	    "within %u ms", (int)sig, drain_running(),
	    drain_running() == 1 ? "" : "s", g_conf.drain_timeout_ms);
	mono_now(&drain_start);
	drain_ev = event_new(g_base, -1, EV_PERSIST, drain_cb, NULL);
	ms_to_tv(100, &tv);
	event_add(drain_ev, &tv);
	systemd_status();
}

int
main(int argc, char *argv[])
{
	struct conf	 conf;
	struct event	*sigterm, *sigint, *sighup;
	const char	*config = NULL;
	char		 err[1024] = "";
	int		 ch, check = 0, i;

	/* First pass: only find --config; options override the file. */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		if (ch == OPT_CONFIG)
			config = optarg;
	conf_remember_file(config ? config : DEFAULT_CONFIG, config != NULL);
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
		case OPT_DRAIN_TIMEOUT:
		case OPT_METRICS_LISTEN:
		case OPT_TLS_REKEY:
		case OPT_PROGRESS_TIMEOUT:
		case OPT_RECONNECT_TIMEOUT:
		case OPT_DATA_THREADS:
			if (conf_remember_override(key, optarg, err,
			    sizeof(err)) != 0) {
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
	if (auth_init() != 0)
		fatalx("no randomness");
	if (conf_build(&conf, err, sizeof(err)) != 0 || conf_validate(&conf, err,
	    sizeof(err)) != 0) {
		if (err[0] != '\0')
			fprintf(stderr, "migrelayd: %s\n", err);
		exit(1);
	}
	if (conf_load_credentials(&conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "migrelayd: %s\n", err);
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
	 * mem_trim_soon() trims once a session's buffers are gone.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
	/*
	 * One arena for all threads: frames are allocated by one thread and
	 * freed by another, a few thousand a second, and per-thread arenas
	 * would each keep megabytes after a session that malloc_trim() in the
	 * main arena does not return.
	 */
	mallopt(M_ARENA_MAX, 1);
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
	{
		char	 werr[256];
		long	 ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		int	 n = g_conf.data_threads;

		/*
		 * auto: one per CPU beyond two, up to 8.  The main thread
		 * and the QEMU beside the relay need a core each; on two
		 * CPUs a thread hop costs more return-path latency (B3:
		 * +173 against +87 us p50 for the pair) than the extra
		 * core it cannot have gains (docs/benchmarks.md).
		 */
		if (n < 0)
			n = ncpu <= 2 ? 0 : ncpu - 2 > 8 ? 8 : (int)ncpu - 2;
		if (worker_start_all((unsigned int)n, werr, sizeof(werr)) != 0)
			fatalx("%s", werr);
	}
	systemd_init();
	control_open(g_conf.control_path);
	listener_open_all();
	metrics_open();
	sigterm = evsignal_new(g_base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(g_base, SIGINT, signal_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	sighup = evsignal_new(g_base, SIGHUP, sighup_cb, NULL);
	event_add(sighup, NULL);
	log_info("migrelayd %d.%d.%d ready", MIGRELAY_VERSION_MAJOR,
	    MIGRELAY_VERSION_MINOR, MIGRELAY_VERSION_MICRO);
	systemd_notify("READY=1");
	systemd_status();
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
	mem_trim_fini();
	worker_stop_all();
	if (drain_ev != NULL)
		event_free(drain_ev);
	metrics_close();
	systemd_fini();
	tls_creds_free(g_tls);
	listener_close_all();
	control_close();
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(g_base);
	return 0;
}
