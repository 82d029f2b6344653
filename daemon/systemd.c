/*
 * systemd.c - every use of libsystemd: readiness, status, watchdog and
 * stopping notifications, sockets passed by socket activation, and
 * structured journal records.  Built without libsystemd, the same
 * functions do nothing (and no sockets are ever passed), so the daemon
 * runs the same way in tests and containers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrelayd.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

static struct event	*wd_ev;
static int		 journal;

static void
systemd_watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
	systemd_status();
}

/*
 * Start the watchdog keep-alive when the service manager asked for one:
 * WATCHDOG=1 at half the interval, from the event loop, so a wedged loop
 * stops it and gets the daemon restarted.
 */
void
systemd_init(void)
{
	uint64_t	 usec = 0;
	struct timeval	 tv;

	journal = getenv("JOURNAL_STREAM") != NULL;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		wd_ev = event_new(g_base, -1, EV_PERSIST, systemd_watchdog_cb,
		    NULL);
		tv.tv_sec = (time_t)(usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(usec / 2 % 1000000);
		if (wd_ev != NULL)
			event_add(wd_ev, &tv);
		log_info("systemd watchdog every %llu ms",
		    (unsigned long long)(usec / 2000));
	}
}

void
systemd_fini(void)
{
	if (wd_ev != NULL)
		event_free(wd_ev);
	wd_ev = NULL;
}

void
systemd_notify(const char *state)
{
	sd_notify(0, state);
}

/* STATUS= with the sessions and channels that are active. */
void
systemd_status(void)
{
	struct session	*se;
	unsigned int	 active = 0, chans = 0, total = 0, i;
	char		 buf[160];

	TAILQ_FOREACH(se, &g_sessions, se_entry) {
		total++;
		if (session_is_final(se))
			continue;
		if (se->se_state == SE_ACTIVE)
			active++;
		for (i = 0; i < PROTO_MAX_CHANNELS; i++)
			if (se->se_ch[i] != NULL)
				chans++;
	}
	snprintf(buf, sizeof(buf), "STATUS=%u active migration%s, %u "
	    "channel%s, %u session%s%s", active, active == 1 ? "" : "s", chans,
	    chans == 1 ? "" : "s", total, total == 1 ? "" : "s",
	    g_draining ? " (stopping: draining)" : "");
	sd_notify(0, buf);
}

/*
 * Sockets passed with FileDescriptorName=name.  Returns how many were put
 * into fds (at most max); they are made non-blocking and close-on-exec.
 */
int
systemd_take_fds(const char *name, int *fds, int max)
{
	static int	 n = -1;
	static char	**names;
	int		 i, k = 0;

	if (n < 0) {
		n = sd_listen_fds_with_names(1, &names);
		if (n < 0)
			n = 0;
	}
	for (i = 0; i < n && k < max; i++) {
		if (names == NULL || names[i] == NULL ||
		    strcmp(names[i], name) != 0)
			continue;
		fds[k++] = SD_LISTEN_FDS_START + i;
		evutil_make_socket_nonblocking(SD_LISTEN_FDS_START + i);
		evutil_make_socket_closeonexec(SD_LISTEN_FDS_START + i);
	}
	return k;
}

/*
 * A journal record with structured fields when running under systemd's
 * journal; returns 0 when written, -1 when the caller should log plainly.
 */
int
systemd_journal(int priority, const char *session, const char *peer,
    int channel, const char *reason, const char *msg)
{
	char	 ch[16];

	if (!journal)
		return -1;
	snprintf(ch, sizeof(ch), "%d", channel);
	return sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", priority,
	    "SYSLOG_IDENTIFIER=migrelayd", "SESSION=%s", session ? session : "",
	    "PEER=%s", peer ? peer : "", "CHANNEL=%s", channel >= 0 ? ch : "",
	    "REASON=%s", reason ? reason : "", NULL) == 0 ? 0 : -1;
}

#else /* !HAVE_SYSTEMD */

void
systemd_init(void)
{
}

void
systemd_fini(void)
{
}

void
systemd_notify(const char *state)
{
}

void
systemd_status(void)
{
}

int
systemd_take_fds(const char *name, int *fds, int max)
{
	return 0;
}

int
systemd_journal(int priority, const char *session, const char *peer,
    int channel, const char *reason, const char *msg)
{
	return -1;
}

#endif /* HAVE_SYSTEMD */
