/*
 * metrics.c - counters of the relay, and their Prometheus endpoint.
 *
 * The counters live in g_stats and are updated where things happen
 * (handshakes, authentication, refusals, session ends).  With
 * metrics-listen HOST:PORT, libevent's evhttp serves them at /metrics in
 * the Prometheus text format, together with per-session and per-channel
 * figures; query-daemon and query-sessions carry the same numbers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "migrelayd.h"

struct stats		 g_stats;
static struct evhttp	*http;

static const char *const error_classes[] = {
	EC_GENERIC, EC_INVALID, EC_NOTFOUND, EC_EXISTS, EC_UNREACHABLE,
	EC_AUTH, EC_TLS, EC_VERSION, EC_REJECTED, EC_TIMEOUT, EC_INTERNAL,
};
#define N_CLASSES	(sizeof(error_classes) / sizeof(error_classes[0]))

/* Count a failed session by its error class. */
void
metrics_count_error(const char *class)
{
	unsigned int	 i;

	for (i = 0; i < N_CLASSES && i < STATS_MAX_CLASSES; i++)
		if (strcmp(error_classes[i], class) == 0) {
			g_stats.st_errors[i]++;
			return;
		}
}

/* New reference: the daemon-wide counters as JSON (query-daemon). */
json_object *
metrics_json(void)
{
	json_object	*o = json_object_new_object();
	json_object	*e = json_object_new_object();
	unsigned int	 i;

#define ADD(k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
	ADD("handshakes-accepted", g_stats.st_hs_accepted);
	ADD("handshakes-rejected", g_stats.st_hs_rejected);
	ADD("auth-failures", g_stats.st_auth_failures);
	ADD("connections-refused", g_stats.st_conn_refused);
	ADD("sessions-completed", g_stats.st_completed);
	ADD("sessions-failed", g_stats.st_failed);
	ADD("sessions-cancelled", g_stats.st_cancelled);
#undef ADD
	for (i = 0; i < N_CLASSES && i < STATS_MAX_CLASSES; i++)
		json_object_object_add(e, error_classes[i],
		    json_object_new_int64((int64_t)g_stats.st_errors[i]));
	json_object_object_add(o, "errors", e);
	return o;
}

static void
metric(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* Session ids are [A-Za-z0-9_.-]: safe inside a label value as they are. */
static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*b;
	struct session	*se;
	uint64_t	 sent, recv;
	unsigned int	 i, counts[_SE_STATE_MAX] = { 0 };
	uint64_t	 ms;
	const char	*role;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "only GET");
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	TAILQ_FOREACH(se, &g_sessions, se_entry)
		counts[se->se_state]++;
	metric(b, "migrelay_sessions", "gauge", "Sessions by state.");
	for (i = 0; i < _SE_STATE_MAX; i++)
		evbuffer_add_printf(b, "migrelay_sessions{state=\"%s\"} %u\n",
		    session_state_name(i), counts[i]);
	metric(b, "migrelay_handshakes_total", "counter",
	    "Relay handshakes accepted and rejected on the listeners.");
	evbuffer_add_printf(b, "migrelay_handshakes_total{result=\"accepted\"} "
	    "%llu\nmigrelay_handshakes_total{result=\"rejected\"} %llu\n",
	    (unsigned long long)g_stats.st_hs_accepted,
	    (unsigned long long)g_stats.st_hs_rejected);
	metric(b, "migrelay_auth_failures_total", "counter",
	    "Failed SCRAM authentications.");
	evbuffer_add_printf(b, "migrelay_auth_failures_total %llu\n",
	    (unsigned long long)g_stats.st_auth_failures);
	metric(b, "migrelay_connections_refused_total", "counter",
	    "Connections closed at once by the pending-handshake limits.");
	evbuffer_add_printf(b, "migrelay_connections_refused_total %llu\n",
	    (unsigned long long)g_stats.st_conn_refused);
	metric(b, "migrelay_session_errors_total", "counter",
	    "Failed sessions by error class.");
	for (i = 0; i < N_CLASSES && i < STATS_MAX_CLASSES; i++)
		evbuffer_add_printf(b, "migrelay_session_errors_total{class="
		    "\"%s\"} %llu\n", error_classes[i],
		    (unsigned long long)g_stats.st_errors[i]);
	metric(b, "migrelay_session_bytes_total", "counter",
	    "QEMU payload bytes carried, by session and direction.");
	TAILQ_FOREACH(se, &g_sessions, se_entry)
		evbuffer_add_printf(b, "migrelay_session_bytes_total{session="
		    "\"%s\",direction=\"source-to-destination\"} %llu\n"
		    "migrelay_session_bytes_total{session=\"%s\",direction="
		    "\"destination-to-source\"} %llu\n", se->se_id,
		    (unsigned long long)se->se_bytes_s2d, se->se_id,
		    (unsigned long long)se->se_bytes_d2s);
	metric(b, "migrelay_session_link_bytes_total", "counter",
	    "Bytes on the link between the relays, by session and direction.");
	TAILQ_FOREACH(se, &g_sessions, se_entry)
		evbuffer_add_printf(b, "migrelay_session_link_bytes_total{"
		    "session=\"%s\",direction=\"sent\"} %llu\n"
		    "migrelay_session_link_bytes_total{session=\"%s\","
		    "direction=\"received\"} %llu\n", se->se_id,
		    (unsigned long long)se->se_link_sent, se->se_id,
		    (unsigned long long)se->se_link_recv);
	metric(b, "migrelay_session_throughput_bytes_per_second", "gauge",
	    "Average QEMU payload rate of the session so far.");
	TAILQ_FOREACH(se, &g_sessions, se_entry) {
		ms = session_duration_ms(se);
		evbuffer_add_printf(b, "migrelay_session_throughput_bytes_per_"
		    "second{session=\"%s\"} %.0f\n", se->se_id, ms == 0 ? 0.0 :
		    (double)(se->se_bytes_s2d + se->se_bytes_d2s) * 1000.0 /
		    (double)ms);
	}
	metric(b, "migrelay_session_state", "gauge",
	    "1 for the state each session is in.");
	TAILQ_FOREACH(se, &g_sessions, se_entry) {
		role = se->se_role == ROLE_SOURCE ? "source" : "destination";
		evbuffer_add_printf(b, "migrelay_session_state{session=\"%s\","
		    "role=\"%s\",state=\"%s\"} 1\n", se->se_id, role,
		    session_state_name(se->se_state));
	}
	metric(b, "migrelay_session_reconnects_total", "counter",
	    "Relay channels re-established after they broke, per session.");
	TAILQ_FOREACH(se, &g_sessions, se_entry)
		evbuffer_add_printf(b, "migrelay_session_reconnects_total{"
		    "session=\"%s\"} %llu\n", se->se_id,
		    (unsigned long long)se->se_reconnects);
	metric(b, "migrelay_channel_bytes_total", "counter",
	    "Bytes on each relay channel index of the sessions in the table, "
	    "by direction (re-established channels included).");
	TAILQ_FOREACH(se, &g_sessions, se_entry) {
		for (i = 0; i < PROTO_MAX_CHANNELS; i++) {
			if (!session_channel_bytes(se, i, &sent, &recv))
				continue;
			evbuffer_add_printf(b, "migrelay_channel_bytes_total{"
			    "session=\"%s\",channel=\"%u\",direction=\"sent\"} "
			    "%llu\nmigrelay_channel_bytes_total{session="
			    "\"%s\",channel=\"%u\",direction=\"received\"} "
			    "%llu\n", se->se_id, i, (unsigned long long)sent,
			    se->se_id, i, (unsigned long long)recv);
		}
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

static void
metrics_other_cb(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, 404, "try /metrics");
}

/* Serve /metrics on metrics-listen; fatal at startup if it cannot bind. */
void
metrics_open(void)
{
	char		 host[256], port[16];
	const char	*errstr;

	if (g_conf.metrics_listen[0] == '\0')
		return;
	if (hostport_parse(g_conf.metrics_listen, host, sizeof(host), port,
	    sizeof(port), &errstr) != 0)
		fatalx("metrics-listen %s: %s", g_conf.metrics_listen, errstr);
	if ((http = evhttp_new(g_base)) == NULL)
		fatalx("metrics: cannot create the HTTP server");
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, 10);
	evhttp_set_cb(http, "/metrics", metrics_cb, NULL);
	evhttp_set_gencb(http, metrics_other_cb, NULL);
	if (evhttp_bind_socket(http, host, (uint16_t)atoi(port)) != 0)
		fatal("metrics: cannot listen on %s", g_conf.metrics_listen);
	log_info("metrics on http://%s/metrics", g_conf.metrics_listen);
}

void
metrics_close(void)
{
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
}
