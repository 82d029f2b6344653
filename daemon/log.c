/*
 * log.c - logging to stderr.  Under systemd (JOURNAL_STREAM set) each line
 * carries an sd-daemon "<N>" priority prefix; otherwise lines are prefixed
 * with the program name and level.  errno is preserved across calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "migrelayd.h"

static int	 log_lvl = LOG_LVL_INFO;
static int	 log_sd;

static void	 log_vwrite(int, const char *, const char *, va_list)
		    __attribute__((format(printf, 3, 0)));

void
log_init(int level)
{
	log_lvl = level;
	log_sd = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_level(int level)
{
	log_lvl = level;
}

int
log_level_parse(const char *s)
{
	if (strcasecmp(s, "error") == 0)
		return LOG_LVL_ERR;
	if (strcasecmp(s, "warning") == 0 || strcasecmp(s, "warn") == 0)
		return LOG_LVL_WARN;
	if (strcasecmp(s, "info") == 0)
		return LOG_LVL_INFO;
	if (strcasecmp(s, "debug") == 0)
		return LOG_LVL_DEBUG;
	return -1;
}

const char *
log_level_name(int l)
{
	static const char *const names[] = { "error", "warning", "info",
	    "debug" };

	return l >= 0 && l <= LOG_LVL_DEBUG ? names[l] : "?";
}

static void
log_vwrite(int lvl, const char *suffix, const char *fmt, va_list ap)
{
	static const int	 sdprio[] = { 3, 4, 6, 7 };
	char			 msg[2048];
	int			 saved = errno;

	if (lvl > log_lvl) {
		errno = saved;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_sd)
		fprintf(stderr, "<%d>%s%s%s\n", sdprio[lvl], msg,
		    suffix ? ": " : "", suffix ? suffix : "");
	else
		fprintf(stderr, "migrelayd: %s: %s%s%s\n", log_level_name(lvl),
		    msg, suffix ? ": " : "", suffix ? suffix : "");
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	 e[128];

	snprintf(e, sizeof(e), "%s", strerror(errno));
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARN, e, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARN, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	 e[128];

	snprintf(e, sizeof(e), "%s", strerror(errno));
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/*
 * A line about a session: under the journal with structured fields
 * (SESSION=, PEER=, CHANNEL=, REASON=), otherwise as a plain line.
 * channel < 0 and NULL strings mean "not applicable".
 */
void
log_ctx(int lvl, const char *session, const char *peer, int channel,
    const char *reason, const char *fmt, ...)
{
	static const int	 sdprio[] = { 3, 4, 6, 7 };
	char			 msg[2048];
	va_list			 ap;
	int			 saved = errno;

	if (lvl > log_lvl)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!log_sd || systemd_journal(sdprio[lvl], session, peer, channel,
	    reason, msg) != 0) {
		if (log_sd)
			fprintf(stderr, "<%d>%s\n", sdprio[lvl], msg);
		else
			fprintf(stderr, "migrelayd: %s: %s\n",
			    log_level_name(lvl), msg);
	}
	errno = saved;
}

/* Copy src to dst escaping non-printable bytes as \xNN (peer strings). */
void
str_escape(char *dst, size_t dstlen, const char *src)
{
	size_t	 o = 0;

	if (dstlen == 0)
		return;
	for (; *src != '\0' && o + 5 < dstlen; src++) {
		unsigned char c = (unsigned char)*src;

		if (c >= 0x20 && c < 0x7f && c != '\\')
			dst[o++] = (char)c;
		else
			o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", c);
	}
	dst[o] = '\0';
}
