/*
 * mrbench - synthetic endpoints and a reference forwarder for the migrelay
 * benchmarks (the bench scripts compile it with `cc -O2 -pthread`; not installed).
 *
 *   mrbench sink    HOST:PORT CONNS              accept CONNS connections, read each
 *                                                to EOF, close; JSON on stdout
 *   mrbench source  HOST:PORT CONNS SECONDS [IDLE]
 *                                                CONNS connections writing 256 KiB
 *                                                writes for SECONDS (after IDLE
 *                                                seconds connected), then half-close
 *                                                and wait for the peer's EOF; JSON
 *   mrbench pingsrv HOST:PORT SIZE COUNT WARMUP  accept one connection, send SIZE
 *                                                bytes and wait for them back, COUNT
 *                                                times after WARMUP; RTT percentiles
 *   mrbench echocli HOST:PORT                    connect and echo until EOF
 *   mrbench fwd     HOST:PORT TARGET             plain forwarder: for every accepted
 *                                                connection, connect TARGET and
 *                                                splice() both ways through 1 MiB
 *                                                pipes, half-close passed on
 *
 * Listeners print "PORT n" (port 0 picks one) on stdout once listening.
 * Timestamps are CLOCK_MONOTONIC seconds (Python's time.monotonic()).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)
#define MAXCONN 64

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "mrbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in
parse_addr(const char *s)
{
	struct sockaddr_in sa;
	char host[64];
	const char *colon = strrchr(s, ':');

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "mrbench: bad address %s\n", s);
		exit(2);
	}
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "mrbench: bad host %s\n", host);
		exit(2);
	}
	sa.sin_port = htons(atoi(colon + 1));
	return sa;
}

static void
nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int
listen_on(const char *addr)
{
	struct sockaddr_in sa = parse_addr(addr);
	socklen_t len = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, 128) < 0)
		die("listen");
	getsockname(fd, (struct sockaddr *)&sa, &len);
	printf("PORT %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

static int
connect_to(const char *addr)
{
	struct sockaddr_in sa = parse_addr(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	nodelay(fd);
	return fd;
}

static int
accept_one(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		die("accept");
	nodelay(fd);
	return fd;
}

static double
cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* --- sink / source ------------------------------------------------------ */

struct conn {
	pthread_t th;
	int fd;
	uint64_t bytes;
	double t_first, t_last, deadline;
	char *buf;
};

static void *
sink_conn(void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	for (;;) {
		n = read(c->fd, c->buf, BUFSZ);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (c->bytes == 0)
			c->t_first = now();
		c->bytes += n;
	}
	c->t_last = now();
	close(c->fd);
	return NULL;
}

static int
cmd_sink(int argc, char **argv)
{
	struct conn c[MAXCONN];
	int lfd, n, i;
	uint64_t total = 0;
	double tf = 0, tl = 0;

	if (argc != 2)
		return 2;
	n = atoi(argv[1]);
	if (n < 1 || n > MAXCONN)
		return 2;
	lfd = listen_on(argv[0]);
	memset(c, 0, sizeof(c));
	for (i = 0; i < n; i++) {
		c[i].fd = accept_one(lfd);
		c[i].buf = malloc(BUFSZ);
		pthread_create(&c[i].th, NULL, sink_conn, &c[i]);
	}
	for (i = 0; i < n; i++) {
		pthread_join(c[i].th, NULL);
		total += c[i].bytes;
		if (c[i].bytes && (tf == 0 || c[i].t_first < tf))
			tf = c[i].t_first;
		if (c[i].t_last > tl)
			tl = c[i].t_last;
	}
	printf("{\"bytes\": %llu, \"t_first\": %.6f, \"t_last\": %.6f, "
	    "\"conns\": %d, \"cpu\": %.4f}\n", (unsigned long long)total,
	    tf, tl, n, cpu_self());
	return 0;
}

static void *
source_conn(void *arg)
{
	struct conn *c = arg;
	ssize_t n;
	size_t off;

	while (now() < c->deadline) {
		for (off = 0; off < BUFSZ; off += n) {
			n = write(c->fd, c->buf + off, BUFSZ - off);
			if (n < 0 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n < 0)
				die("write");
		}
		c->bytes += BUFSZ;
	}
	shutdown(c->fd, SHUT_WR);
	while ((n = read(c->fd, c->buf, BUFSZ)) > 0 ||
	    (n < 0 && errno == EINTR))
		;
	c->t_last = now();
	close(c->fd);
	return NULL;
}

static int
cmd_source(int argc, char **argv)
{
	struct conn c[MAXCONN];
	int n, i;
	uint64_t total = 0, x = 0x9E3779B97F4A7C15ull;
	double t0, tl = 0, idle;
	char *buf;
	struct timespec ts;

	if (argc != 3 && argc != 4)
		return 2;
	n = atoi(argv[1]);
	if (n < 1 || n > MAXCONN)
		return 2;
	idle = argc == 4 ? atof(argv[3]) : 0;
	/* incompressible, never QEMU's file magic */
	buf = malloc(BUFSZ);
	for (i = 0; i < BUFSZ; i += 8) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
	buf[0] = 'x';
	memset(c, 0, sizeof(c));
	for (i = 0; i < n; i++) {
		c[i].fd = connect_to(argv[0]);
		c[i].buf = buf;
	}
	if (idle > 0) {
		ts.tv_sec = (time_t)idle;
		ts.tv_nsec = (long)((idle - ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
	}
	t0 = now();
	for (i = 0; i < n; i++)
		c[i].deadline = t0 + atof(argv[2]);
	for (i = 0; i < n; i++)
		pthread_create(&c[i].th, NULL, source_conn, &c[i]);
	for (i = 0; i < n; i++) {
		pthread_join(c[i].th, NULL);
		total += c[i].bytes;
		if (c[i].t_last > tl)
			tl = c[i].t_last;
	}
	printf("{\"bytes\": %llu, \"t_start\": %.6f, \"t_last\": %.6f, "
	    "\"cpu\": %.4f}\n", (unsigned long long)total, t0, tl, cpu_self());
	return 0;
}

/* --- ping-pong ----------------------------------------------------------- */

static int
full(int fd, char *p, size_t len, int wr)
{
	ssize_t n;

	while (len > 0) {
		n = wr ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
cmd_pingsrv(int argc, char **argv)
{
	int lfd, fd, size, count, warm, i;
	double *rtt, t, sum = 0;
	char *buf;

	if (argc != 4)
		return 2;
	size = atoi(argv[1]);
	count = atoi(argv[2]);
	warm = atoi(argv[3]);
	lfd = listen_on(argv[0]);
	fd = accept_one(lfd);
	buf = calloc(1, size);
	rtt = calloc(count, sizeof(*rtt));
	buf[0] = 'x';
	for (i = 0; i < warm + count; i++) {
		t = now();
		if (full(fd, buf, size, 1) < 0 || full(fd, buf, size, 0) < 0) {
			fprintf(stderr, "mrbench: ping connection lost at %d\n", i);
			return 1;
		}
		if (i >= warm)
			rtt[i - warm] = (now() - t) * 1e6;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, size) > 0)
		;
	close(fd);
	for (i = 0; i < count; i++)
		sum += rtt[i];
	qsort(rtt, count, sizeof(*rtt), dcmp);
	printf("{\"size\": %d, \"count\": %d, \"p50\": %.2f, \"p90\": %.2f, "
	    "\"p99\": %.2f, \"max\": %.2f, \"mean\": %.2f}\n", size, count,
	    rtt[count / 2], rtt[count * 9 / 10], rtt[count * 99 / 100],
	    rtt[count - 1], sum / count);
	return 0;
}

static int
cmd_echocli(int argc, char **argv)
{
	char buf[65536];
	ssize_t n;
	int fd;

	if (argc != 1)
		return 2;
	fd = connect_to(argv[0]);
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (full(fd, buf, n, 1) < 0)
			break;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
	return 0;
}

/* --- splice forwarder ---------------------------------------------------- */

struct half {
	pthread_t th;
	int from, to;
	struct pair *p;
};

struct pair {
	struct half h[2];
	pthread_mutex_t mu;
	int done;
};

static void *
half_run(void *arg)
{
	struct half *h = arg;
	struct pair *p = h->p;
	int pfd[2], last;
	ssize_t n, m;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe");
	fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);
	for (;;) {
		n = splice(h->from, NULL, pfd[1], NULL, 256 * 1024,
		    SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		while (n > 0) {
			/* no SPLICE_F_MORE: it corks small messages */
			m = splice(pfd[0], NULL, h->to, NULL, n,
			    SPLICE_F_MOVE);
			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0)
				goto out;
			n -= m;
		}
	}
out:
	shutdown(h->to, SHUT_WR);
	close(pfd[0]);
	close(pfd[1]);
	pthread_mutex_lock(&p->mu);
	last = ++p->done == 2;
	pthread_mutex_unlock(&p->mu);
	if (last) {
		close(p->h[0].from);
		close(p->h[1].from);
		free(p);
	}
	return NULL;
}

static int
cmd_fwd(int argc, char **argv)
{
	int lfd, a, b, i;
	struct pair *p;

	if (argc != 2)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_on(argv[0]);
	for (;;) {
		a = accept_one(lfd);
		b = connect_to(argv[1]);
		p = calloc(1, sizeof(*p));
		pthread_mutex_init(&p->mu, NULL);
		p->h[0].from = a; p->h[0].to = b;
		p->h[1].from = b; p->h[1].to = a;
		for (i = 0; i < 2; i++) {
			p->h[i].p = p;
			pthread_create(&p->h[i].th, NULL, half_run, &p->h[i]);
			pthread_detach(p->h[i].th);
		}
	}
}

int
main(int argc, char **argv)
{
	int rc = 2;

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2) {
		if (strcmp(argv[1], "sink") == 0)
			rc = cmd_sink(argc - 2, argv + 2);
		else if (strcmp(argv[1], "source") == 0)
			rc = cmd_source(argc - 2, argv + 2);
		else if (strcmp(argv[1], "pingsrv") == 0)
			rc = cmd_pingsrv(argc - 2, argv + 2);
		else if (strcmp(argv[1], "echocli") == 0)
			rc = cmd_echocli(argc - 2, argv + 2);
		else if (strcmp(argv[1], "fwd") == 0)
			rc = cmd_fwd(argc - 2, argv + 2);
	}
	if (rc == 2)
		fprintf(stderr, "usage: see the comment at the top of mrbench.c\n");
	return rc;
}
