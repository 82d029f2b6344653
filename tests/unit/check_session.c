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
