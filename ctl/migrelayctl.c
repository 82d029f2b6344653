/*
 * migrelayctl.c - command-line client of the migrelayd control socket.
 *
 * Every sub-command maps to one control command (see interface.md and
 * proto/PROTOCOL.control): connect to the unix socket, read the greeting
 * line, send one request line with a numeric id and read lines until the
 * reply carrying that id arrives.  Event lines ({"event": ...}) that the
 * daemon broadcasts to every client are skipped.  "watch" keeps the one
 * connection open and polls query-sessions every WATCH_INTERVAL_MS.
 *
 * Errors, whether they come from the daemon or happen here, are reported
 * as exactly one line "migrelayctl: CLASS: description" on stderr and exit
 * status 1.  Local failures use the same classes as the daemon:
 * InvalidArgument for misuse, GenericError for connection problems and
 * Timeout when the daemon does not answer in time.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#ifndef CTL_DEFAULT_PATH
#define CTL_DEFAULT_PATH	"/run/migrelay/control.sock"
#endif
#define CTL_ENV_PATH		"MIGRELAY_CONTROL"

#define CTL_MAX_LINE		(16 * 1024 * 1024)	/* reply line cap */
#define CTL_DEFAULT_TIMEOUT	120		/* seconds per reply */
#define SESSION_ID_MAX		64
#define CHANNELS_MIN		1
#define CHANNELS_MAX		64
#define WATCH_INTERVAL_MS	250
#define WATCH_PLAIN_MS		1000		/* one line per second */
#define WATCH_RATE_SAMPLES	5		/* rate window, ~1 s */
#define WATCH_BAR_WIDTH		16

/* One connection to the control socket. */
struct ctl_conn {
	int		 fd;
	const char	*path;
	char		*buf;		/* received, not yet consumed */
	size_t		 len;
	size_t		 cap;
	int64_t		 next_id;
	int		 timeout;	/* seconds per reply */
};

/* One progress sample of a watched session. */
struct watch_sample {
	double		 t;		/* monotonic seconds */
	int64_t		 s2d;
	int64_t		 d2s;
};

struct watch_state {
	struct watch_sample	 ring[WATCH_RATE_SAMPLES];
	size_t			 nsamples;
	size_t			 next;
	int			 bar_pos;
	int			 bar_dir;
	int64_t			 last_s2d;
};

struct cmd {
	const char	*name;
	const char	*synopsis;
	int		(*fn)(struct ctl_conn *, int, char **);
};

__attribute__((noreturn, format(printf, 2, 3)))
static void	 die(const char *, const char *, ...);
__attribute__((noreturn, format(printf, 2, 3)))
static void	 die_usage(const struct cmd *, const char *, ...);
__attribute__((noreturn))
static void	 usage(FILE *, int);
static double	 now_mono(void);
static void	 ctl_init(struct ctl_conn *, const char *, int);
static void	 ctl_open(struct ctl_conn *);
static void	 ctl_close(struct ctl_conn *);
static char	*ctl_read_line(struct ctl_conn *);
static json_object *ctl_read_json(struct ctl_conn *);
static json_object *ctl_call(struct ctl_conn *, const char *, json_object *);
static void	 ctl_send(struct ctl_conn *, json_object *);
static int	 session_id_is_valid(const char *);
static const char *fmt_bytes(int64_t, char *, size_t);
static const char *fmt_rate(double, char *, size_t);
static const char *fmt_duration(int64_t, char *, size_t);
static const char *obj_str(json_object *, const char *, const char *);
static int64_t	 obj_int(json_object *, const char *, const char *);
static int	 state_is_final(const char *);
static void	 print_state_line(json_object *);
static json_object *id_args(const char *);
static int	 split_args(const struct cmd *, int, char **, char **, int,
		    const char *const *, const char **);
static void	 check_id(const struct cmd *, const char *);
static double	 watch_rate(const struct watch_state *);
static void	 watch_bar(struct watch_state *, const char *, int64_t, char *);
static int	 cmd_info(struct ctl_conn *, int, char **);
static int	 cmd_incoming(struct ctl_conn *, int, char **);
static int	 cmd_outgoing(struct ctl_conn *, int, char **);
static int	 cmd_status(struct ctl_conn *, int, char **);
static int	 cmd_watch(struct ctl_conn *, int, char **);
static int	 cmd_cancel(struct ctl_conn *, int, char **);
static int	 cmd_remove(struct ctl_conn *, int, char **);
static void	 watch_sig_cb(int);

static const struct cmd cmds[] = {
	{ .name = "info", .synopsis = "info", .fn = cmd_info },
	{ .name = "incoming",
	  .synopsis = "incoming ID QEMU-URI [--peer-identity NAME]",
	  .fn = cmd_incoming },
	{ .name = "outgoing",
	  .synopsis = "outgoing ID PEER-HOST:PORT LISTEN-URI [--channels N]",
	  .fn = cmd_outgoing },
	{ .name = "status", .synopsis = "status [ID] [--json]",
	  .fn = cmd_status },
	{ .name = "watch", .synopsis = "watch ID", .fn = cmd_watch },
	{ .name = "cancel", .synopsis = "cancel ID", .fn = cmd_cancel },
	{ .name = "remove", .synopsis = "remove ID", .fn = cmd_remove },
};
#define NCMDS	(sizeof(cmds) / sizeof(cmds[0]))

static volatile sig_atomic_t	 interrupted;

/*
 * Print the one error line and exit 1.  The description never contains a
 * newline: the daemon's text is printed as it is, ours is one sentence.
 */
static void
die(const char *class, const char *fmt, ...)
{
	va_list	 ap;
	char	 desc[1024];
	char	*p;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	for (p = desc; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fflush(stdout);
	fprintf(stderr, "migrelayctl: %s: %s\n", class, desc);
	exit(1);
}

/* Misuse of a sub-command: the error line carries that command's synopsis. */
static void
die_usage(const struct cmd *c, const char *fmt, ...)
{
	va_list	 ap;
	char	 desc[512];

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	die("InvalidArgument", "%s (usage: migrelayctl [-s PATH] %s)", desc,
	    c->synopsis);
}

static void
usage(FILE *fp, int status)
{
	size_t	 i;

	fprintf(fp, "usage: migrelayctl [-s PATH | --control PATH] "
	    "[-t SECONDS] command [arguments]\n");
	fprintf(fp, "       migrelayctl -h | -V\n");
	fprintf(fp, "commands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(fp, "  %s\n", cmds[i].synopsis);
	fprintf(fp, "The control socket defaults to $%s or %s.\n",
	    CTL_ENV_PATH, CTL_DEFAULT_PATH);
	exit(status);
}

static double
now_mono(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
ctl_init(struct ctl_conn *conn, const char *path, int timeout)
{
	memset(conn, 0, sizeof(*conn));
	conn->fd = -1;
	conn->path = path;
	conn->next_id = 1;
	conn->timeout = timeout;
}

/*
 * Connect to the control socket and consume the greeting line.  Called on
 * the first request, so that misuse is reported without connecting.
 */
static void
ctl_open(struct ctl_conn *conn)
{
	struct sockaddr_un	 sun;
	const char		*path = conn->path;
	json_object		*greet, *v;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		die("GenericError", "cannot connect to %s: %s", path,
		    strerror(ENAMETOOLONG));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	conn->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (conn->fd == -1)
		die("GenericError", "socket: %s", strerror(errno));
	if (connect(conn->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		die("GenericError", "cannot connect to %s: %s", path,
		    strerror(errno));

	greet = ctl_read_json(conn);
	if (!json_object_is_type(greet, json_type_object) ||
	    !json_object_object_get_ex(greet, "migrelay", &v) ||
	    !json_object_is_type(v, json_type_object))
		die("GenericError", "unexpected greeting from %s", path);
	json_object_put(greet);
}

static void
ctl_close(struct ctl_conn *conn)
{
	if (conn->fd != -1)
		close(conn->fd);
	conn->fd = -1;
	free(conn->buf);
	conn->buf = NULL;
	conn->len = conn->cap = 0;
}

/*
 * Return the next complete line (without its newline) as a new string,
 * waiting at most conn->timeout seconds for it.  EOF, errors and the
 * timeout are fatal.
 */
static char *
ctl_read_line(struct ctl_conn *conn)
{
	struct pollfd	 pfd;
	double		 deadline;
	char		*nl, *line, *nbuf;
	size_t		 n, ncap;
	ssize_t		 r;
	int		 ms;

	deadline = now_mono() + conn->timeout;
	for (;;) {
		nl = conn->len > 0 ? memchr(conn->buf, '\n', conn->len) : NULL;
		if (nl != NULL) {
			n = (size_t)(nl - conn->buf);
			if ((line = malloc(n + 1)) == NULL)
				die("GenericError", "out of memory");
			memcpy(line, conn->buf, n);
			line[n] = '\0';
			conn->len -= n + 1;
			memmove(conn->buf, nl + 1, conn->len);
			return line;
		}
		if (conn->len >= CTL_MAX_LINE)
			die("GenericError", "line from %s longer than %d bytes",
			    conn->path, CTL_MAX_LINE);
		if (conn->cap - conn->len < 4096) {
			ncap = conn->cap == 0 ? 65536 : conn->cap * 2;
			if ((nbuf = realloc(conn->buf, ncap)) == NULL)
				die("GenericError", "out of memory");
			conn->buf = nbuf;
			conn->cap = ncap;
		}

		ms = (int)((deadline - now_mono()) * 1000);
		if (ms <= 0)
			die("Timeout", "no answer from %s within %d seconds",
			    conn->path, conn->timeout);
		pfd.fd = conn->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, ms) == -1) {
			if (errno == EINTR) {
				if (interrupted)
					die("GenericError", "interrupted");
				continue;
			}
			die("GenericError", "poll: %s", strerror(errno));
		}
		if (pfd.revents == 0)
			continue;
		r = read(conn->fd, conn->buf + conn->len,
		    conn->cap - conn->len);
		if (r == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("GenericError", "read from %s: %s", conn->path,
			    strerror(errno));
		}
		if (r == 0)
			die("GenericError", "connection to %s closed by the "
			    "daemon", conn->path);
		conn->len += (size_t)r;
	}
}

/* Read one line and parse it as JSON (new reference). */
static json_object *
ctl_read_json(struct ctl_conn *conn)
{
	enum json_tokener_error	 jerr;
	json_object		*obj;
	char			*line;

	line = ctl_read_line(conn);
	obj = json_tokener_parse_verbose(line, &jerr);
	if (obj == NULL)
		die("GenericError", "malformed line from %s: %s", conn->path,
		    json_tokener_error_desc(jerr));
	free(line);
	return obj;
}

static void
ctl_send(struct ctl_conn *conn, json_object *req)
{
	const char	*s;
	char		*line;
	size_t		 len, off;
	ssize_t		 w;

	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(s);
	if ((line = malloc(len + 1)) == NULL)
		die("GenericError", "out of memory");
	memcpy(line, s, len);
	line[len++] = '\n';
	for (off = 0; off < len; off += (size_t)w) {
		w = send(conn->fd, line + off, len - off, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR) {
				w = 0;
				continue;
			}
			die("GenericError", "write to %s: %s", conn->path,
			    strerror(errno));
		}
	}
	free(line);
}

/*
 * Execute one command and return its "return" value (new reference).
 * "args" is stolen (may be NULL).  An error reply is fatal: its class and
 * description become the error line.
 */
static json_object *
ctl_call(struct ctl_conn *conn, const char *name, json_object *args)
{
	json_object	*req, *reply, *v, *err, *ret;
	int64_t		 id;

	if (conn->fd == -1)
		ctl_open(conn);
	id = conn->next_id++;
	req = json_object_new_object();
	json_object_object_add(req, "execute", json_object_new_string(name));
	if (args != NULL)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_int64(id));
	ctl_send(conn, req);
	json_object_put(req);

	for (;;) {
		reply = ctl_read_json(conn);
		if (!json_object_is_type(reply, json_type_object) ||
		    json_object_object_get_ex(reply, "event", NULL) ||
		    !json_object_object_get_ex(reply, "id", &v) ||
		    !json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) != id) {
			json_object_put(reply);
			continue;
		}
		break;
	}
	if (json_object_object_get_ex(reply, "error", &err)) {
		char	 cls[64], desc[1024];

		snprintf(cls, sizeof(cls), "%s", obj_str(err, "class",
		    "GenericError"));
		snprintf(desc, sizeof(desc), "%s", obj_str(err, "desc",
		    "unknown error"));
		json_object_put(reply);
		die(cls, "%s", desc);
	}
	if (!json_object_object_get_ex(reply, "return", &ret))
		die("GenericError", "reply from %s has neither return nor "
		    "error", conn->path);
	json_object_get(ret);
	json_object_put(reply);
	return ret;
}

static int
session_id_is_valid(const char *id)
{
	size_t	 i, len;
	char	 c;

	len = strlen(id);
	if (len < 1 || len > SESSION_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		    c == '-'))
			return 0;
	}
	return 1;
}

/* Binary (IEC) units: "512 B", "1.5 KiB", "12.3 GiB". */
static const char *
fmt_bytes(int64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
	    "PiB", "EiB" };
	double	 v;
	size_t	 u;

	if (n < 1024) {
		snprintf(buf, len, "%" PRId64 " B", n);
		return buf;
	}
	v = (double)n / 1024.0;
	for (u = 0; v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0]);
	    u++)
		v /= 1024.0;
	snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

static const char *
fmt_rate(double bps, char *buf, size_t len)
{
	size_t	 n;

	if (bps < 0)
		bps = 0;
	fmt_bytes((int64_t)bps, buf, len);
	n = strlen(buf);
	if (n + 3 <= len)
		memcpy(buf + n, "/s", 3);
	return buf;
}

/* "850ms", "12.3s", "4m05s", "2h03m09s". */
static const char *
fmt_duration(int64_t ms, char *buf, size_t len)
{
	int64_t	 s;

	if (ms < 0)
		ms = 0;
	s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%" PRId64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60,
		    s % 60);
	else
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m%02" PRId64 "s",
		    s / 3600, (s / 60) % 60, s % 60);
	return buf;
}

/* Borrowed string member of obj, or def when absent or not a string. */
static const char *
obj_str(json_object *obj, const char *key, const char *def)
{
	json_object	*v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return def;
	return json_object_get_string(v);
}

/*
 * Integer member of obj; key2 names a member of the object at key (e.g.
 * "bytes", "source-to-destination").  Absent values are 0.
 */
static int64_t
obj_int(json_object *obj, const char *key, const char *key2)
{
	json_object	*v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v))
		return 0;
	if (key2 != NULL && !json_object_object_get_ex(v, key2, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_int64(v);
}

static int
state_is_final(const char *state)
{
	return strcmp(state, "completed") == 0 ||
	    strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0;
}

/* The one line that incoming and outgoing print. */
static void
print_state_line(json_object *s)
{
	json_object	*feat;
	size_t		 i, n;

	printf("%s: %s %s", obj_str(s, "id", "?"), obj_str(s, "role", "?"),
	    obj_str(s, "state", "?"));
	if (strcmp(obj_str(s, "role", ""), "source") == 0)
		printf(", listen %s, peer %s, %" PRId64 " channel%s",
		    obj_str(s, "endpoint", "?"), obj_str(s, "peer", "?"),
		    obj_int(s, "channels", NULL),
		    obj_int(s, "channels", NULL) == 1 ? "" : "s");
	else
		printf(", qemu %s", obj_str(s, "endpoint", "?"));
	if (json_object_object_get_ex(s, "features", &feat) &&
	    json_object_is_type(feat, json_type_array) &&
	    (n = json_object_array_length(feat)) > 0) {
		printf(", features");
		for (i = 0; i < n; i++)
			printf("%s%s", i == 0 ? " " : ",", json_object_get_string(
			    json_object_array_get_idx(feat, i)));
	}
	printf("\n");
}

static json_object *
id_args(const char *id)
{
	json_object	*args;

	args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_string(id));
	return args;
}

/*
 * Split a sub-command's arguments into positionals (returned in pos[],
 * at most maxpos) and the long options it knows: each entry of opts is an
 * option name and the matching vals[] entry receives its value (or "" for
 * flags, marked by a trailing '!' in the name).
 */
static int
split_args(const struct cmd *c, int argc, char **argv, char **pos,
    int maxpos, const char *const *opts, const char **vals)
{
	const char	*a, *eq;
	size_t		 nlen;
	int		 i, j, npos, flag, dashdash;

	npos = 0;
	dashdash = 0;
	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (dashdash || a[0] != '-' || a[1] == '\0') {
			if (npos == maxpos)
				die_usage(c, "unexpected argument \"%s\"", a);
			pos[npos++] = argv[i];
			continue;
		}
		if (a[1] != '-')
			die_usage(c, "unknown option \"%s\"", a);
		a += 2;
		eq = strchr(a, '=');
		nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
		for (j = 0; opts != NULL && opts[j] != NULL; j++) {
			flag = opts[j][strlen(opts[j]) - 1] == '!';
			if (strlen(opts[j]) - (size_t)flag == nlen &&
			    strncmp(opts[j], a, nlen) == 0)
				break;
		}
		if (opts == NULL || opts[j] == NULL)
			die_usage(c, "unknown option \"%s\"", argv[i]);
		if (flag) {
			if (eq != NULL)
				die_usage(c, "option \"--%.*s\" takes no value",
				    (int)nlen, a);
			vals[j] = "";
		} else if (eq != NULL)
			vals[j] = eq + 1;
		else if (i + 1 < argc)
			vals[j] = argv[++i];
		else
			die_usage(c, "option \"%s\" needs a value", argv[i]);
	}
	return npos;
}

static void
check_id(const struct cmd *c, const char *id)
{
	if (!session_id_is_valid(id))
		die_usage(c, "invalid session id \"%s\": 1 to %d characters "
		    "of A-Z a-z 0-9 _ . -", id, SESSION_ID_MAX);
}

static int
cmd_info(struct ctl_conn *conn, int argc, char **argv)
{
	json_object	*ret, *v;
	char		*pos[1];
	size_t		 i, n;

	if (split_args(&cmds[0], argc, argv, pos, 0, NULL, NULL) != 0)
		die_usage(&cmds[0], "too many arguments");
	ret = ctl_call(conn, "query-daemon", NULL);
	printf("version:  %s\n", obj_str(ret, "version", "?"));
	printf("control:  %s\n", conn->path);
	printf("listen:  ");
	n = 0;
	if (json_object_object_get_ex(ret, "listen", &v) &&
	    json_object_is_type(v, json_type_array))
		n = json_object_array_length(v);
	for (i = 0; i < n; i++)
		printf(" %s", json_object_get_string(
		    json_object_array_get_idx(v, i)));
	printf("%s\n", n == 0 ? " none" : "");
	printf("features:");
	n = 0;
	if (json_object_object_get_ex(ret, "features", &v) &&
	    json_object_is_type(v, json_type_array))
		n = json_object_array_length(v);
	for (i = 0; i < n; i++)
		printf(" %s", json_object_get_string(
		    json_object_array_get_idx(v, i)));
	printf("%s\n", n == 0 ? " none" : "");
	printf("sessions: %" PRId64 "\n", obj_int(ret, "sessions", NULL));
	json_object_put(ret);
	return 0;
}

static int
cmd_incoming(struct ctl_conn *conn, int argc, char **argv)
{
	static const char *const opts[] = { "peer-identity", NULL };
	const struct cmd	*c = &cmds[1];
	const char		*vals[1] = { NULL };
	json_object		*args, *ret;
	char			*pos[2];

	if (split_args(c, argc, argv, pos, 2, opts, vals) != 2)
		die_usage(c, "missing arguments");
	check_id(c, pos[0]);
	if (vals[0] != NULL && vals[0][0] == '\0')
		die_usage(c, "empty peer identity");
	args = id_args(pos[0]);
	json_object_object_add(args, "qemu", json_object_new_string(pos[1]));
	if (vals[0] != NULL)
		json_object_object_add(args, "peer-identity",
		    json_object_new_string(vals[0]));
	ret = ctl_call(conn, "session-incoming", args);
	print_state_line(ret);
	json_object_put(ret);
	return 0;
}

static int
cmd_outgoing(struct ctl_conn *conn, int argc, char **argv)
{
	static const char *const opts[] = { "channels", NULL };
	const struct cmd	*c = &cmds[2];
	const char		*vals[1] = { NULL };
	json_object		*args, *ret;
	char			*pos[3], *end;
	long			 channels = 0;

	if (split_args(c, argc, argv, pos, 3, opts, vals) != 3)
		die_usage(c, "missing arguments");
	check_id(c, pos[0]);
	if (vals[0] != NULL) {
		errno = 0;
		channels = strtol(vals[0], &end, 10);
		if (vals[0][0] == '\0' || *end != '\0' || errno != 0 ||
		    channels < CHANNELS_MIN || channels > CHANNELS_MAX)
			die_usage(c, "invalid channel count \"%s\": must be "
			    "%d to %d", vals[0], CHANNELS_MIN, CHANNELS_MAX);
	}
	args = id_args(pos[0]);
	json_object_object_add(args, "peer", json_object_new_string(pos[1]));
	json_object_object_add(args, "listen", json_object_new_string(pos[2]));
	if (vals[0] != NULL)
		json_object_object_add(args, "channels",
		    json_object_new_int((int)channels));
	ret = ctl_call(conn, "session-outgoing", args);
	print_state_line(ret);
	json_object_put(ret);
	return 0;
}

static int
cmd_status(struct ctl_conn *conn, int argc, char **argv)
{
	static const char *const opts[] = { "json!", NULL };
	const struct cmd	*c = &cmds[3];
	const char		*vals[1] = { NULL };
	json_object		*ret, *s, *err;
	char			*pos[1];
	char			 b1[32], b2[32], d[32];
	size_t			 i, n, w, idw;
	int			 npos;

	npos = split_args(c, argc, argv, pos, 1, opts, vals);
	if (npos == 1)
		check_id(c, pos[0]);
	ret = ctl_call(conn, "query-sessions", npos == 1 ? id_args(pos[0]) :
	    NULL);
	if (!json_object_is_type(ret, json_type_array))
		die("GenericError", "query-sessions did not return a list");
	if (vals[0] != NULL) {
		printf("%s\n", json_object_to_json_string_ext(ret,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(ret);
		return 0;
	}

	n = json_object_array_length(ret);
	idw = 2;
	for (i = 0; i < n; i++) {
		w = strlen(obj_str(json_object_array_get_idx(ret, i), "id",
		    "?"));
		if (w > idw)
			idw = w;
	}
	printf("%-*s %-11s %-10s %8s %7s %11s %11s %9s\n", (int)idw, "ID",
	    "ROLE", "STATE", "CHANNELS", "STREAMS", "BYTES(s->d)",
	    "BYTES(d->s)", "DURATION");
	for (i = 0; i < n; i++) {
		s = json_object_array_get_idx(ret, i);
		printf("%-*s %-11s %-10s %8" PRId64 " %7" PRId64
		    " %11s %11s %9s\n", (int)idw, obj_str(s, "id", "?"),
		    obj_str(s, "role", "?"), obj_str(s, "state", "?"),
		    obj_int(s, "channels", NULL), obj_int(s, "streams", NULL),
		    fmt_bytes(obj_int(s, "bytes", "source-to-destination"),
		    b1, sizeof(b1)),
		    fmt_bytes(obj_int(s, "bytes", "destination-to-source"),
		    b2, sizeof(b2)),
		    fmt_duration(obj_int(s, "duration-ms", NULL), d,
		    sizeof(d)));
	}
	/* Failed sessions: say why, below the table; also link trouble. */
	for (i = 0; i < n; i++) {
		json_object	*rs;

		s = json_object_array_get_idx(ret, i);
		if (json_object_object_get_ex(s, "resuming", &rs) &&
		    json_object_get_boolean(rs))
			printf("%s: resuming: lost relay channels are being "
			    "re-established (%" PRId64 " reconnects so far)\n",
			    obj_str(s, "id", "?"), obj_int(s, "reconnects", NULL));
		else if (obj_int(s, "reconnects", NULL) > 0)
			printf("%s: %" PRId64 " relay channel reconnect%s\n",
			    obj_str(s, "id", "?"), obj_int(s, "reconnects", NULL),
			    obj_int(s, "reconnects", NULL) == 1 ? "" : "s");
		if (json_object_object_get_ex(s, "error", &err) &&
		    json_object_is_type(err, json_type_object))
			printf("%s: %s: %s\n", obj_str(s, "id", "?"),
			    obj_str(err, "class", "?"),
			    obj_str(err, "desc", ""));
	}
	json_object_put(ret);
	return 0;
}

static void
watch_sig_cb(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Rate over the samples in the window (oldest to newest). */
static double
watch_rate(const struct watch_state *ws)
{
	const struct watch_sample	*old, *cur;
	size_t				 io, ic;

	if (ws->nsamples < 2)
		return 0;
	ic = (ws->next + WATCH_RATE_SAMPLES - 1) % WATCH_RATE_SAMPLES;
	io = ws->nsamples < WATCH_RATE_SAMPLES ? 0 : ws->next;
	cur = &ws->ring[ic];
	old = &ws->ring[io];
	if (cur->t - old->t <= 0)
		return 0;
	return (double)(cur->s2d - old->s2d) / (cur->t - old->t);
}

/*
 * An activity bar: no total is known, so a block moves back and forth
 * while bytes flow and stands still while they do not; a completed session
 * shows a full bar.
 */
static void
watch_bar(struct watch_state *ws, const char *state, int64_t s2d, char *bar)
{
	int	 i;

	if (strcmp(state, "completed") == 0) {
		memset(bar, '=', WATCH_BAR_WIDTH);
		bar[WATCH_BAR_WIDTH] = '\0';
		return;
	}
	if (s2d != ws->last_s2d) {
		ws->bar_pos += ws->bar_dir;
		if (ws->bar_pos <= 0 || ws->bar_pos >= WATCH_BAR_WIDTH - 3)
			ws->bar_dir = -ws->bar_dir;
		ws->last_s2d = s2d;
	}
	for (i = 0; i < WATCH_BAR_WIDTH; i++)
		bar[i] = (i >= ws->bar_pos && i < ws->bar_pos + 3) ?
		    '=' : ' ';
	if (strcmp(state, "active") != 0 && s2d == 0)
		memset(bar, ' ', WATCH_BAR_WIDTH);
	bar[WATCH_BAR_WIDTH] = '\0';
}

static int
cmd_watch(struct ctl_conn *conn, int argc, char **argv)
{
	const struct cmd	*c = &cmds[4];
	struct watch_state	 ws;
	struct watch_sample	*smp;
	struct sigaction	 sa;
	struct winsize		 wsz;
	struct timespec		 ts;
	json_object		*ret, *s, *err;
	const char		*state, *shown;
	json_object		*rs;
	char			*pos[1];
	char			 line[512], bar[WATCH_BAR_WIDTH + 1];
	char			 b1[32], b2[32], b3[32], r[32], d[32];
	double			 t, last_plain, secs;
	int64_t			 s2d, d2s, link, dur;
	int			 tty, cols, printed;

	if (split_args(c, argc, argv, pos, 1, NULL, NULL) != 1)
		die_usage(c, "missing session id");
	check_id(c, pos[0]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watch_sig_cb;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	tty = isatty(STDOUT_FILENO);
	memset(&ws, 0, sizeof(ws));
	ws.bar_dir = 1;
	last_plain = -1e9;
	printed = 0;
	for (;;) {
		ret = ctl_call(conn, "query-sessions", id_args(pos[0]));
		if (!json_object_is_type(ret, json_type_array) ||
		    json_object_array_length(ret) < 1)
			die("NotFound", "session \"%s\" not found", pos[0]);
		s = json_object_array_get_idx(ret, 0);
		state = obj_str(s, "state", "?");
		shown = state;
		if (json_object_object_get_ex(s, "resuming", &rs) &&
		    json_object_get_boolean(rs))
			shown = "resuming";
		s2d = obj_int(s, "bytes", "source-to-destination");
		d2s = obj_int(s, "bytes", "destination-to-source");
		link = obj_int(s, "link-bytes", "sent") +
		    obj_int(s, "link-bytes", "received");
		dur = obj_int(s, "duration-ms", NULL);

		t = now_mono();
		smp = &ws.ring[ws.next];
		smp->t = t;
		smp->s2d = s2d;
		smp->d2s = d2s;
		ws.next = (ws.next + 1) % WATCH_RATE_SAMPLES;
		if (ws.nsamples < WATCH_RATE_SAMPLES)
			ws.nsamples++;

		if (tty) {
			watch_bar(&ws, state, s2d, bar);
			snprintf(line, sizeof(line), "%s: %-10s [%s] %s  %s  "
			    "link %s  channels %" PRId64 "  streams %" PRId64,
			    pos[0], shown, bar, fmt_bytes(s2d, b1, sizeof(b1)),
			    fmt_rate(watch_rate(&ws), r, sizeof(r)),
			    fmt_bytes(link, b3, sizeof(b3)),
			    obj_int(s, "channels", NULL),
			    obj_int(s, "streams", NULL));
			cols = 0;
			if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &wsz) == 0)
				cols = wsz.ws_col;
			if (cols > 1 && strlen(line) >= (size_t)cols)
				line[cols - 1] = '\0';
			printf("\r%s\033[K", line);
			fflush(stdout);
			printed = 1;
		} else if (t - last_plain >= WATCH_PLAIN_MS / 1000.0 - 0.05 ||
		    state_is_final(state)) {
			printf("%s: %s s->d %s d->s %s rate %s link %s "
			    "channels %" PRId64 " streams %" PRId64 "\n",
			    pos[0], shown, fmt_bytes(s2d, b1, sizeof(b1)),
			    fmt_bytes(d2s, b2, sizeof(b2)),
			    fmt_rate(watch_rate(&ws), r, sizeof(r)),
			    fmt_bytes(link, b3, sizeof(b3)),
			    obj_int(s, "channels", NULL),
			    obj_int(s, "streams", NULL));
			fflush(stdout);
			last_plain = t;
		}

		if (state_is_final(state))
			break;
		json_object_put(ret);

		ts.tv_sec = WATCH_INTERVAL_MS / 1000;
		ts.tv_nsec = (WATCH_INTERVAL_MS % 1000) * 1000000L;
		while (!interrupted && nanosleep(&ts, &ts) == -1 &&
		    errno == EINTR)
			;
		if (interrupted) {
			if (printed)
				printf("\n");
			die("GenericError", "interrupted");
		}
	}

	if (printed)
		printf("\n");
	secs = (double)dur / 1000.0;
	printf("%s: %s: %s source-to-destination, %s destination-to-source "
	    "in %s, average %s\n", pos[0], state,
	    fmt_bytes(s2d, b1, sizeof(b1)), fmt_bytes(d2s, b2, sizeof(b2)),
	    fmt_duration(dur, d, sizeof(d)),
	    fmt_rate(secs > 0 ? (double)s2d / secs : 0, r, sizeof(r)));
	fflush(stdout);
	if (strcmp(state, "completed") == 0) {
		json_object_put(ret);
		return 0;
	}
	/* Copy what the error line needs, so the reply can be released. */
	snprintf(b1, sizeof(b1), "GenericError");
	snprintf(line, sizeof(line), "session \"%s\" ended %s", pos[0], state);
	if (strcmp(state, "failed") == 0 &&
	    json_object_object_get_ex(s, "error", &err)) {
		snprintf(b1, sizeof(b1), "%s", obj_str(err, "class",
		    "GenericError"));
		snprintf(line, sizeof(line), "%s", obj_str(err, "desc",
		    "session failed"));
	}
	json_object_put(ret);
	die(b1, "%s", line);
}

static int
cmd_cancel(struct ctl_conn *conn, int argc, char **argv)
{
	const struct cmd	*c = &cmds[5];
	char			*pos[1];

	if (split_args(c, argc, argv, pos, 1, NULL, NULL) != 1)
		die_usage(c, "missing session id");
	check_id(c, pos[0]);
	json_object_put(ctl_call(conn, "session-cancel", id_args(pos[0])));
	return 0;
}

static int
cmd_remove(struct ctl_conn *conn, int argc, char **argv)
{
	const struct cmd	*c = &cmds[6];
	char			*pos[1];

	if (split_args(c, argc, argv, pos, 1, NULL, NULL) != 1)
		die_usage(c, "missing session id");
	check_id(c, pos[0]);
	json_object_put(ctl_call(conn, "session-remove", id_args(pos[0])));
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "control",	required_argument,	NULL,	's' },
		{ "timeout",	required_argument,	NULL,	't' },
		{ "help",	no_argument,		NULL,	'h' },
		{ "version",	no_argument,		NULL,	'V' },
		{ NULL,		0,			NULL,	0 }
	};
	struct ctl_conn	 conn;
	const char	*path = NULL, *env;
	char		*end;
	long		 timeout = CTL_DEFAULT_TIMEOUT;
	size_t		 i;
	int		 ch, ret;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:s:t:hV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			if (optarg[0] == '\0')
				die("InvalidArgument", "empty control socket "
				    "path");
			path = optarg;
			break;
		case 't':
			errno = 0;
			timeout = strtol(optarg, &end, 10);
			if (optarg[0] == '\0' || *end != '\0' || errno != 0 ||
			    timeout < 1 || timeout > 86400)
				die("InvalidArgument", "invalid timeout \"%s\"",
				    optarg);
			break;
		case 'h':
			usage(stdout, 0);
			break;
		case 'V':
			printf("migrelayctl %s\n", PACKAGE_VERSION);
			return 0;
		case ':':
			die("InvalidArgument", "option \"%s\" needs a value "
			    "(see migrelayctl -h)", argv[optind - 1]);
		default:
			if (optopt != 0)
				die("InvalidArgument", "unknown option \"-%c\" "
				    "(see migrelayctl -h)", optopt);
			die("InvalidArgument", "unknown option \"%s\" (see "
			    "migrelayctl -h)", argv[optind - 1]);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		die("InvalidArgument", "no command given (commands: info, "
		    "incoming, outgoing, status, watch, cancel, remove; see "
		    "migrelayctl -h)");
	for (i = 0; i < NCMDS; i++)
		if (strcmp(argv[0], cmds[i].name) == 0)
			break;
	if (i == NCMDS)
		die("InvalidArgument", "unknown command \"%s\" (commands: "
		    "info, incoming, outgoing, status, watch, cancel, remove; "
		    "see migrelayctl -h)", argv[0]);
	if (path == NULL && (env = getenv(CTL_ENV_PATH)) != NULL &&
	    env[0] != '\0')
		path = env;
	if (path == NULL)
		path = CTL_DEFAULT_PATH;

	signal(SIGPIPE, SIG_IGN);
	ctl_init(&conn, path, (int)timeout);
	ret = cmds[i].fn(&conn, argc, argv);
	ctl_close(&conn);
	return ret;
}
