/*
 * check_session.c - the session state machine and per-stream reassembly,
 * flow-control and half-close rules, on a real event base with a real
 * socketpair standing in for QEMU.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrelayd.h"

static struct session	*se;
static struct stream	*st;
static int		 qemu_fd;	/* the fake QEMU's end */

static void
setup(void)
{
	int	 sv[2];

	g_base = event_base_new();
	g_conf.insecure_plaintext = 1;
	log_init(LOG_LVL_ERR);
	se = session_new("t1", ROLE_DESTINATION);
	ck_assert_ptr_nonnull(se);
	se->se_peer_window = STREAM_WINDOW;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
	qemu_fd = sv[1];
	st = stream_new(se, 1, sv[0]);
	ck_assert_ptr_nonnull(st);
	st->st_state = ST_OPEN;
	st->st_announced = 1;
	se->se_nstreams = 1;
	session_set_state(se, SE_READY);
	session_set_state(se, SE_ACTIVE);
}

static void
teardown(void)
{
	if (!session_is_final(se))
		session_fail(se, SE_FAILED, EC_GENERIC, "test over");
	session_free(se);
	channel_reap();
	close(qemu_fd);
	event_base_free(g_base);
	g_base = NULL;
}

static struct frame *
data(uint64_t seq, const char *s)
{
	struct frame	*f = frame_new(FRAME_DATA, 0, 1, seq, strlen(s));

	memcpy(f->f_data, s, strlen(s));
	return f;
}

static void
expect(const char *s)
{
	char	 buf[256];
	ssize_t	 n = read(qemu_fd, buf, sizeof(buf) - 1);

	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, s);
}

START_TEST(reorder)
{
	ck_assert_int_eq(stream_on_data(st, data(3, "d")), 0);
	ck_assert_int_eq(stream_on_data(st, data(1, "bb")), 0);
	ck_assert_int_eq(read(qemu_fd, (char[4]){0}, 4), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(stream_on_data(st, data(0, "a")), 0);
	expect("abb");
	ck_assert_int_eq(stream_on_data(st, data(2, "ccc")), 0);
	expect("cccd");
	ck_assert(st->st_in_delivered == 7);
	ck_assert(TAILQ_EMPTY(&st->st_reorder));
	ck_assert_int_eq(se->se_state, SE_ACTIVE);
}
END_TEST

START_TEST(duplicate)
{
	ck_assert_int_eq(stream_on_data(st, data(1, "x")), 0);
	ck_assert_int_eq(stream_on_data(st, data(1, "y")), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
	ck_assert_ptr_nonnull(strstr(se->se_errdesc, "duplicate"));
}
END_TEST

START_TEST(duplicate_delivered)
{
	ck_assert_int_eq(stream_on_data(st, data(0, "x")), 0);
	ck_assert_int_eq(stream_on_data(st, data(0, "x")), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
	/* The QEMU-facing socket is closed at once on failure. */
	expect("x");
	ck_assert_int_eq(read(qemu_fd, (char[4]){0}, 4), 0);
}
END_TEST

START_TEST(empty_data)
{
	ck_assert_int_eq(stream_on_data(st, data(0, "")), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

START_TEST(window)
{
	struct frame	*f;
	uint64_t	 seq = 0, sent = 0;
	size_t		 chunk = 256 * 1024;

	/* The fake QEMU reads nothing: everything beyond the socket buffer
	 * queues in the relay, up to the window and not one byte more. */
	while (sent + chunk <= STREAM_WINDOW) {
		f = frame_new(FRAME_DATA, 0, 1, seq++, chunk);
		memset(f->f_data, 'z', chunk);
		ck_assert_int_eq(stream_on_data(st, f), 0);
		sent += chunk;
	}
	ck_assert(!TAILQ_EMPTY(&st->st_inq));
	/* The socket buffer took some; the rest of the window is still open. */
	sent = st->st_in_bytes - st->st_in_delivered;
	if (sent < STREAM_WINDOW) {
		f = frame_new(FRAME_DATA, 0, 1, seq++, STREAM_WINDOW - sent);
		memset(f->f_data, 'z', f->f_len);
		ck_assert_int_eq(stream_on_data(st, f), 0);
	}
	f = frame_new(FRAME_DATA, 0, 1, seq++, 1);
	memset(f->f_data, 'z', f->f_len);
	ck_assert_int_eq(stream_on_data(st, f), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
	ck_assert_ptr_nonnull(strstr(se->se_errdesc, "window"));
}
END_TEST

START_TEST(fin_after_data)
{
	char	 c;

	ck_assert_int_eq(stream_on_data(st, data(0, "a")), 0);
	ck_assert_int_eq(stream_on_fin(st, 2), 0);
	ck_assert(!st->st_in_fin_done);
	ck_assert_int_eq(stream_on_data(st, data(1, "b")), 0);
	ck_assert(st->st_in_fin_done);
	expect("ab");
	ck_assert_int_eq(read(qemu_fd, &c, 1), 0);	/* half-close carried */
	/* The other direction is still open. */
	ck_assert_int_eq(write(qemu_fd, "r", 1), 1);
}
END_TEST

START_TEST(data_after_fin)
{
	ck_assert_int_eq(stream_on_fin(st, 1), 0);
	ck_assert_int_eq(stream_on_data(st, data(1, "late")), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

START_TEST(fin_misplaced)
{
	ck_assert_int_eq(stream_on_data(st, data(3, "x")), 0);
	ck_assert_int_eq(stream_on_fin(st, 2), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

START_TEST(ack_rules)
{
	st->st_out_bytes = 100;
	se->se_inflight = 100;
	ck_assert_int_eq(stream_on_ack(st, 40, 0), 0);
	ck_assert(se->se_inflight == 60);
	ck_assert_int_eq(stream_on_ack(st, 40, 0), 0);
	/* Backwards, beyond what was sent, or FIN before our EOF: errors. */
	ck_assert_int_eq(stream_on_ack(st, 101, 0), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

START_TEST(ack_fin_early)
{
	st->st_out_bytes = 10;
	ck_assert_int_eq(stream_on_ack(st, 10, 1), -1);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

START_TEST(stream_completes)
{
	char	 c;

	/* Peer direction: two bytes then FIN. */
	ck_assert_int_eq(stream_on_data(st, data(0, "hi")), 0);
	ck_assert_int_eq(stream_on_fin(st, 1), 0);
	expect("hi");
	ck_assert_int_eq(read(qemu_fd, &c, 1), 0);
	/* Local direction: QEMU closes its write side; the relay sees EOF. */
	stream_update_reading(st);
	shutdown(qemu_fd, SHUT_WR);
	event_base_loop(g_base, EVLOOP_NONBLOCK);
	ck_assert(st->st_out_eof);
	ck_assert_int_eq(st->st_state, ST_OPEN);
	ck_assert_int_eq(stream_on_ack(st, 0, 1), 0);
	ck_assert_int_eq(st->st_state, ST_DONE);
	/* All streams done, CLOSE not received yet: not completed. */
	ck_assert_int_eq(se->se_state, SE_ACTIVE);
	se->se_close_rcvd = 1;
	session_check_complete(se);
	ck_assert_msg(se->se_state == SE_COMPLETED, "%s", se->se_errdesc);
	ck_assert(se->se_bytes_s2d == 2);
}
END_TEST

START_TEST(close_too_early)
{
	se->se_close_rcvd = 1;
	session_check_complete(se);
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

/* With "resume", what a lost channel makes the peer send again is dropped. */
START_TEST(resume_duplicates)
{
	se->se_resume = 1;
	ck_assert_int_eq(stream_on_data(st, data(0, "ab")), 0);
	ck_assert_int_eq(stream_on_data(st, data(2, "e")), 0);
	ck_assert_int_eq(stream_on_data(st, data(0, "ab")), 0);	/* delivered */
	ck_assert_int_eq(stream_on_data(st, data(2, "e")), 0);	/* reordered */
	ck_assert_int_eq(stream_on_data(st, data(1, "cd")), 0);
	expect("abcde");
	ck_assert(st->st_in_bytes == 5);
	ck_assert_int_eq(stream_on_fin(st, 3), 0);
	ck_assert_int_eq(stream_on_fin(st, 3), 0);	/* FIN again */
	ck_assert_int_eq(stream_on_fin(st, 4), -1);	/* a different one */
	ck_assert_int_eq(se->se_state, SE_FAILED);
}
END_TEST

/* Sender side: kept frames go when an ACK covers them; old ACKs are moot. */
START_TEST(resume_replay_release)
{
	struct frame	*f[3];
	int		 i;

	se->se_resume = 1;
	for (i = 0; i < 3; i++) {
		f[i] = frame_new(FRAME_DATA, 0, 1, (uint64_t)i, 10);
		st->st_out_bytes += 10;
		se->se_inflight += 10;
		link_retain(st, f[i]);
		ck_assert_uint_eq(f[i]->f_refs, 2);
		frame_free(f[i]);	/* as if written out by a channel */
	}
	ck_assert_int_eq(stream_on_ack(st, 15, 0), 0);	/* covers frame 0 */
	ck_assert_ptr_eq(TAILQ_FIRST(&st->st_replay), f[1]);
	ck_assert_int_eq(stream_on_ack(st, 20, 0), 0);
	ck_assert_ptr_eq(TAILQ_FIRST(&st->st_replay), f[2]);
	ck_assert_int_eq(stream_on_ack(st, 10, 0), 0);	/* stale: ignored */
	ck_assert(st->st_out_acked == 20 && se->se_inflight == 10);
	ck_assert_int_eq(se->se_state, SE_ACTIVE);
	ck_assert_int_eq(stream_on_ack(st, 30, 0), 0);
	ck_assert(TAILQ_EMPTY(&st->st_replay));
	ck_assert(se->se_inflight == 0);
}
END_TEST

/*
 * Completion proof: a QEMU main stream (file magic first) whose return
 * path does not end with SHUT(0) fails instead of completing.
 */
static void
finish_stream(const char *rp, size_t rplen)
{
	static const char	 magic[] = "QEVM\0\0\0\3";
	struct frame		*f;
	char			 c;

	f = frame_new(FRAME_DATA, 0, 1, 0, 8);
	memcpy(f->f_data, magic, 8);
	ck_assert_int_eq(stream_on_data(st, f), 0);	/* source -> destination */
	ck_assert_int_eq(stream_on_fin(st, 1), 0);
	ck_assert_int_eq(read(qemu_fd, (char[16]){0}, 16), 8);
	ck_assert_int_eq(read(qemu_fd, &c, 1), 0);
	stream_update_reading(st);
	if (rplen > 0)		/* the destination QEMU's return path */
		ck_assert_int_eq(write(qemu_fd, rp, rplen), (ssize_t)rplen);
	shutdown(qemu_fd, SHUT_WR);
	event_base_loop(g_base, EVLOOP_NONBLOCK);
	event_base_loop(g_base, EVLOOP_NONBLOCK);
	ck_assert(st->st_out_eof);
	ck_assert_int_eq(stream_on_ack(st, st->st_out_bytes, 1), 0);
	ck_assert_int_eq(st->st_state, ST_DONE);
	se->se_close_rcvd = 1;
	session_check_complete(se);
}

START_TEST(verdict_shut_ok)
{
	/* PONG(1), then SHUT(0) */
	finish_stream("\0\3\0\4\0\0\0\1\0\1\0\4\0\0\0\0", 16);
	ck_assert_msg(se->se_state == SE_COMPLETED, "%s", se->se_errdesc);
}
END_TEST

START_TEST(verdict_no_shut)
{
	finish_stream("\0\3\0\4\0\0\0\1", 8);		/* PONG only */
	ck_assert_int_eq(se->se_state, SE_FAILED);
	ck_assert_ptr_nonnull(strstr(se->se_errdesc, "without reporting success"));
}
END_TEST

START_TEST(verdict_shut_error)
{
	finish_stream("\0\1\0\4\0\0\0\1", 8);		/* SHUT(1) */
	ck_assert_int_eq(se->se_state, SE_FAILED);
	ck_assert_ptr_nonnull(strstr(se->se_errdesc, "error"));
}
END_TEST

START_TEST(verdict_no_return_path)
{
	finish_stream(NULL, 0);		/* nothing to judge by: connections only */
	ck_assert_msg(se->se_state == SE_COMPLETED, "%s", se->se_errdesc);
}
END_TEST

START_TEST(state_machine)
{
	/* Final states are final. */
	session_fail(se, SE_CANCELLED, EC_GENERIC, "by test");
	ck_assert_int_eq(se->se_state, SE_CANCELLED);
	session_set_state(se, SE_ACTIVE);
	ck_assert_int_eq(se->se_state, SE_CANCELLED);
	session_fail(se, SE_FAILED, EC_GENERIC, "again");
	ck_assert_int_eq(se->se_state, SE_CANCELLED);
	ck_assert(session_is_final(se));
	ck_assert_str_eq(session_state_name(SE_WAITING), "waiting");
	ck_assert_str_eq(session_state_name(SE_COMPLETED), "completed");
}
END_TEST

START_TEST(json_view)
{
	json_object	*o = session_to_json(se), *v;

	ck_assert(json_object_object_get_ex(o, "role", &v));
	ck_assert_str_eq(json_object_get_string(v), "destination");
	ck_assert(json_object_object_get_ex(o, "state", &v));
	ck_assert_str_eq(json_object_get_string(v), "active");
	ck_assert(!json_object_object_get_ex(o, "error", &v));
	json_object_put(o);
	session_fail(se, SE_FAILED, EC_UNREACHABLE, "gone");
	o = session_to_json(se);
	ck_assert(json_object_object_get_ex(o, "error", &v));
	ck_assert(json_object_object_get_ex(v, "class", &v));
	ck_assert_str_eq(json_object_get_string(v), "PeerUnreachable");
	json_object_put(o);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite	*s = suite_create("session");
	TCase	*tc = tcase_create("stream");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, reorder);
	tcase_add_test(tc, duplicate);
	tcase_add_test(tc, duplicate_delivered);
	tcase_add_test(tc, empty_data);
	tcase_add_test(tc, window);
	tcase_add_test(tc, fin_after_data);
	tcase_add_test(tc, data_after_fin);
	tcase_add_test(tc, fin_misplaced);
	tcase_add_test(tc, ack_rules);
	tcase_add_test(tc, ack_fin_early);
	tcase_add_test(tc, stream_completes);
	tcase_add_test(tc, close_too_early);
	tcase_add_test(tc, state_machine);
	tcase_add_test(tc, resume_duplicates);
	tcase_add_test(tc, resume_replay_release);
	tcase_add_test(tc, verdict_shut_ok);
	tcase_add_test(tc, verdict_no_shut);
	tcase_add_test(tc, verdict_shut_error);
	tcase_add_test(tc, verdict_no_return_path);
	tcase_add_test(tc, json_view);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(session_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
