/*
 * check_ctl_json.c - control request parsing: framing limits, depth limit,
 * type checks, and the reply/error/event builders.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_json.h"

static int
parse(const char *s, struct ctl_req *r, const char **cls, char *err)
{
	return ctl_req_parse(s, strlen(s), r, cls, err, 256);
}

START_TEST(req_good)
{
	struct ctl_req	 r;
	const char	*cls, *v;
	char		 err[256];
	int64_t		 n;

	ck_assert_int_eq(parse("{\"execute\":\"session-outgoing\",\"arguments\""
	    ":{\"id\":\"vm1\",\"channels\":4},\"id\":{\"x\":[1]}}", &r, &cls,
	    err), 0);
	ck_assert_str_eq(r.execute, "session-outgoing");
	ck_assert_ptr_nonnull(r.arguments);
	ck_assert_ptr_nonnull(r.id);
	ck_assert_int_eq(ctl_arg_string(r.arguments, "id", &v), 0);
	ck_assert_str_eq(v, "vm1");
	ck_assert_int_eq(ctl_arg_int(r.arguments, "channels", &n), 0);
	ck_assert(n == 4);
	/* json-c would coerce; we do not. */
	ck_assert_int_eq(ctl_arg_string(r.arguments, "channels", &v), -EINVAL);
	ck_assert_int_eq(ctl_arg_int(r.arguments, "id", &n), -EINVAL);
	ck_assert_int_eq(ctl_arg_int(r.arguments, "nope", &n), -ENOENT);
	ctl_req_clear(&r);
	ck_assert_int_eq(parse("{\"execute\":\"query-daemon\"}  ", &r, &cls,
	    err), 0);
	ck_assert_ptr_null(r.arguments);
	ck_assert_ptr_null(r.id);
	ctl_req_clear(&r);
}
END_TEST

START_TEST(req_bad)
{
	struct ctl_req	 r;
	const char	*cls;
	char		 err[256];
	const char	*bad[] = { "", "{", "[]", "\"x\"", "42", "{}",
	    "{\"execute\":1}", "{\"execute\":\"a\",\"arguments\":[]}",
	    "{\"execute\":\"a\"} x", "{\"execute\":\"a\",\"bogus\":1}",
	    "{\"execute\":\"a\"}{\"execute\":\"b\"}", "nul\x01", NULL };
	int		 i;

	for (i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		ck_assert_msg(parse(bad[i], &r, &cls, err) == -EINVAL, "%s",
		    bad[i]);
		ck_assert(err[0] != '\0');
		ck_assert_ptr_nonnull(cls);
		ctl_req_clear(&r);
	}
	/* The id survives a bad request so that the error can carry it. */
	ck_assert_int_eq(parse("{\"id\":7,\"execute\":3}", &r, &cls, err),
	    -EINVAL);
	ck_assert_ptr_nonnull(r.id);
	ck_assert_int_eq(json_object_get_int(r.id), 7);
	ctl_req_clear(&r);
	ck_assert_int_eq(parse("{\"execute\":\"a\",\"arguments\":5}", &r, &cls,
	    err), -EINVAL);
	ck_assert_str_eq(cls, "InvalidArgument");
	ctl_req_clear(&r);
}
END_TEST

START_TEST(req_depth)
{
	char		 buf[512];
	struct ctl_req	 r;
	const char	*cls;
	char		 err[256];
	int		 i, n = 0, depth;

	for (depth = CTL_MAX_DEPTH - 2; depth <= CTL_MAX_DEPTH + 2; depth++) {
		n = snprintf(buf, sizeof(buf), "{\"execute\":\"a\",\"id\":");
		for (i = 0; i < depth; i++)
			buf[n++] = '[';
		for (i = 0; i < depth; i++)
			buf[n++] = ']';
		buf[n++] = '}';
		buf[n] = '\0';
		if (depth + 1 <= CTL_MAX_DEPTH)
			ck_assert_int_eq(parse(buf, &r, &cls, err), 0);
		else
			ck_assert_int_eq(parse(buf, &r, &cls, err), -EINVAL);
		ctl_req_clear(&r);
	}
}
END_TEST

START_TEST(req_too_long)
{
	struct ctl_req	 r;
	const char	*cls;
	char		 err[256];
	char		*big = malloc(CTL_MAX_LINE + 2);

	memset(big, ' ', CTL_MAX_LINE + 1);
	big[CTL_MAX_LINE + 1] = '\0';
	ck_assert_int_eq(ctl_req_parse(big, CTL_MAX_LINE + 1, &r, &cls, err,
	    sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "longer"));
	ctl_req_clear(&r);
	free(big);
}
END_TEST

START_TEST(args_check)
{
	json_object	*a = json_tokener_parse("{\"id\":\"x\",\"qemu\":\"y\"}");
	const char *const ok[] = { "id", "qemu", NULL };
	const char *const strict[] = { "id", NULL };
	const char	*u = NULL;

	ck_assert_int_eq(ctl_args_check(a, ok, &u), 0);
	ck_assert_int_eq(ctl_args_check(a, strict, &u), -EINVAL);
	ck_assert_str_eq(u, "qemu");
	ck_assert_int_eq(ctl_args_check(NULL, strict, &u), 0);
	json_object_put(a);
}
END_TEST

START_TEST(builders)
{
	json_object	*id = json_object_new_int(3);
	json_object	*o, *v, *w;

	o = ctl_reply_new(NULL, id);
	ck_assert(json_object_object_get_ex(o, "return", &v));
	ck_assert(json_object_is_type(v, json_type_object));
	ck_assert(json_object_object_get_ex(o, "id", &v));
	ck_assert_int_eq(json_object_get_int(v), 3);
	json_object_put(o);
	o = ctl_error_new("NotFound", "no session 'x'", id);
	ck_assert(json_object_object_get_ex(o, "error", &v));
	ck_assert(json_object_object_get_ex(v, "class", &w));
	ck_assert_str_eq(json_object_get_string(w), "NotFound");
	json_object_put(o);
	o = ctl_event_new("SESSION_STATE", NULL);
	ck_assert(json_object_object_get_ex(o, "timestamp", &v));
	ck_assert(json_object_object_get_ex(v, "microseconds", &w));
	json_object_put(o);
	o = ctl_greeting_new(1, 2, 3);
	ck_assert(json_object_object_get_ex(o, "migrelay", &v));
	ck_assert(json_object_object_get_ex(v, "capabilities", &w));
	json_object_put(o);
	/* id is copied, not stolen: still ours to release. */
	json_object_put(id);
}
END_TEST

static Suite *
ctl_json_suite(void)
{
	Suite	*s = suite_create("ctl_json");
	TCase	*tc = tcase_create("parse");

	tcase_add_test(tc, req_good);
	tcase_add_test(tc, req_bad);
	tcase_add_test(tc, req_depth);
	tcase_add_test(tc, req_too_long);
	tcase_add_test(tc, args_check);
	tcase_add_test(tc, builders);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(ctl_json_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
