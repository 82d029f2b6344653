/*
 * check_proto.c - frame header and handshake TLV codecs, version selection,
 * URI and session id parsing.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

START_TEST(frame_roundtrip)
{
	struct frame_hdr	 h = { .type = FRAME_DATA, .flags = 3,
	    .stream = 0x01020304, .seq = 0x1122334455667788ULL, .len = 4096 };
	struct frame_hdr	 d;
	uint8_t			 b[FRAME_HDR_LEN];

	frame_hdr_encode(b, &h);
	ck_assert_int_eq(b[0], FRAME_DATA);
	ck_assert_int_eq(b[4], 1);
	ck_assert_int_eq(b[8], 0x11);
	ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), 0);
	ck_assert_int_eq(d.type, h.type);
	ck_assert_int_eq(d.flags, h.flags);
	ck_assert_uint_eq(d.stream, h.stream);
	ck_assert(d.seq == h.seq);
	ck_assert_uint_eq(d.len, h.len);
}
END_TEST

START_TEST(frame_truncated)
{
	struct frame_hdr	 h = { .type = FRAME_ACK }, d = { .type = 99 };
	uint8_t			 b[FRAME_HDR_LEN];
	size_t			 i;

	frame_hdr_encode(b, &h);
	for (i = 0; i < FRAME_HDR_LEN; i++)
		ck_assert_int_eq(frame_hdr_decode(b, i, &d), -EAGAIN);
	ck_assert_int_eq(d.type, 99);	/* untouched on failure */
}
END_TEST

START_TEST(frame_oversized)
{
	struct frame_hdr	 h = { .type = FRAME_DATA,
	    .len = FRAME_MAX_PAYLOAD + 1 }, d;
	uint8_t			 b[FRAME_HDR_LEN];

	frame_hdr_encode(b, &h);
	ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), -EMSGSIZE);
	h.len = FRAME_MAX_PAYLOAD;
	frame_hdr_encode(b, &h);
	ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), 0);
	/* Handshake frames have a much smaller limit. */
	h.type = FRAME_HELLO;
	h.len = HS_MAX_PAYLOAD + 1;
	frame_hdr_encode(b, &h);
	ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), -EMSGSIZE);
	h.len = 0xffffffffu;
	frame_hdr_encode(b, &h);
	ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), -EMSGSIZE);
}
END_TEST

START_TEST(frame_unknown_types)
{
	struct frame_hdr	 h = { 0 }, d;
	uint8_t			 b[FRAME_HDR_LEN];
	unsigned int		 t;

	for (t = 0; t < 256; t++) {
		h.type = (uint8_t)t;
		frame_hdr_encode(b, &h);
		if (frame_type_is_known((uint8_t)t) || (t & FRAME_T_IGNORABLE))
			ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d), 0);
		else
			ck_assert_int_eq(frame_hdr_decode(b, sizeof(b), &d),
			    -EPROTO);
	}
	ck_assert_str_eq(frame_type_name(FRAME_CLOSE), "CLOSE");
	ck_assert_str_eq(frame_type_name(0x7f), "unknown");
}
END_TEST

START_TEST(frame_garbage)
{
	uint8_t			 b[FRAME_HDR_LEN];
	struct frame_hdr	 d;
	unsigned int		 i, j, ok = 0;

	srandom(1);
	for (i = 0; i < 100000; i++) {
		for (j = 0; j < sizeof(b); j++)
			b[j] = (uint8_t)random();
		if (frame_hdr_decode(b, sizeof(b), &d) == 0) {
			ok++;
			ck_assert_uint_le(d.len, FRAME_MAX_PAYLOAD);
		}
	}
	/* Random headers almost never carry a plausible length. */
	ck_assert_uint_lt(ok, 1000);
}
END_TEST

START_TEST(hs_roundtrip)
{
	struct hs_msg	 m, d;
	uint8_t		 buf[HS_MAX_PAYLOAD];
	ssize_t		 n;

	memset(&m, 0, sizeof(m));
	m.version_min = 1;
	m.version_max = 7;
	m.window = 4 << 20;
	snprintf(m.session, sizeof(m.session), "vm-1.a_b");
	m.channels = 8;
	memset(m.token, 0xab, LINK_TOKEN_LEN);
	m.present = 1u << HS_T_VERSION_MIN | 1u << HS_T_VERSION_MAX |
	    1u << HS_T_WINDOW | 1u << HS_T_SESSION | 1u << HS_T_CHANNELS |
	    1u << HS_T_TOKEN;
	ck_assert_int_eq(hs_add_feature(&m, "multichannel"), 0);
	ck_assert_int_eq(hs_add_feature(&m, "x-future"), 0);
	ck_assert_int_eq(hs_add_require(&m, "insecure-plaintext"), 0);
	n = hs_encode(buf, sizeof(buf), &m);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(hs_decode(buf, (size_t)n, &d), 0);
	ck_assert_int_eq(d.version_min, 1);
	ck_assert_int_eq(d.version_max, 7);
	ck_assert_uint_eq(d.window, 4 << 20);
	ck_assert_str_eq(d.session, "vm-1.a_b");
	ck_assert_int_eq(d.channels, 8);
	ck_assert(d.has_token);
	ck_assert_int_eq(memcmp(d.token, m.token, LINK_TOKEN_LEN), 0);
	ck_assert_uint_eq(d.nfeatures, 2);
	ck_assert(hs_has_feature(&d, "x-future"));
	ck_assert(!hs_has_feature(&d, "x-past"));
	ck_assert_uint_eq(d.nrequire, 1);
	ck_assert_str_eq(d.require[0], "insecure-plaintext");
	ck_assert(!(d.present & 1u << HS_T_ERRDESC));
}
END_TEST

START_TEST(hs_unknown_tag_skipped)
{
	/* tag 0x7777 with 3 bytes, then VERSION = 1 */
	uint8_t		 b[] = { 0x77, 0x77, 0, 3, 'a', 'b', 'c',
			    0, HS_T_VERSION, 0, 2, 0, 1 };
	struct hs_msg	 d;

	ck_assert_int_eq(hs_decode(b, sizeof(b), &d), 0);
	ck_assert_int_eq(d.version, 1);
	ck_assert(d.present & 1u << HS_T_VERSION);
}
END_TEST

START_TEST(hs_malformed)
{
	struct hs_msg	 d;
	uint8_t		 trunc[] = { 0, HS_T_VERSION, 0, 2, 0 };
	uint8_t		 badlen[] = { 0, HS_T_VERSION, 0, 3, 0, 1, 2 };
	uint8_t		 ctrl[] = { 0, HS_T_SESSION, 0, 2, 'a', '\n' };
	uint8_t		 longsess[4 + 65];
	uint8_t		 shorthdr[] = { 0, 1, 0 };
	uint8_t		 badtok[] = { 0, HS_T_TOKEN, 0, 1, 9 };
	uint8_t		 emptyfeat[] = { 0, HS_T_FEATURE, 0, 0 };
	uint8_t		 many[(PROTO_MAX_FEATURES + 1) * 5];
	unsigned int	 i;

	ck_assert_int_eq(hs_decode(trunc, sizeof(trunc), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(badlen, sizeof(badlen), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(ctrl, sizeof(ctrl), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(shorthdr, sizeof(shorthdr), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(badtok, sizeof(badtok), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(emptyfeat, sizeof(emptyfeat), &d), -EPROTO);
	longsess[0] = 0;
	longsess[1] = HS_T_SESSION;
	longsess[2] = 0;
	longsess[3] = 65;
	memset(longsess + 4, 'a', 65);
	ck_assert_int_eq(hs_decode(longsess, sizeof(longsess), &d), -EPROTO);
	for (i = 0; i <= PROTO_MAX_FEATURES; i++) {
		many[i * 5] = 0;
		many[i * 5 + 1] = HS_T_FEATURE;
		many[i * 5 + 2] = 0;
		many[i * 5 + 3] = 1;
		many[i * 5 + 4] = 'f';
	}
	ck_assert_int_eq(hs_decode(many, sizeof(many), &d), -EPROTO);
	ck_assert_int_eq(hs_decode(many, sizeof(many) - 5, &d), 0);
	ck_assert_int_eq(hs_decode(NULL, 0, &d), 0);
}
END_TEST

START_TEST(hs_garbage)
{
	uint8_t		 b[256];
	struct hs_msg	 d;
	unsigned int	 i, j;

	srandom(2);
	for (i = 0; i < 20000; i++) {
		size_t len = (size_t)random() % sizeof(b);

		for (j = 0; j < len; j++)
			b[j] = (uint8_t)(random() % 4 == 0 ? random() % 14 :
			    random());
		if (hs_decode(b, len, &d) == 0) {
			ck_assert_uint_le(d.nfeatures, PROTO_MAX_FEATURES);
			ck_assert_uint_le(strlen(d.session), SESSION_ID_MAX);
		}
	}
}
END_TEST

START_TEST(hs_encode_nospace)
{
	struct hs_msg	 m;
	uint8_t		 buf[8];

	memset(&m, 0, sizeof(m));
	snprintf(m.errdesc, sizeof(m.errdesc), "a long description");
	m.present = 1u << HS_T_ERRDESC;
	ck_assert_int_eq(hs_encode(buf, sizeof(buf), &m), -ENOSPC);
}
END_TEST

START_TEST(version_select)
{
	uint16_t	 v = 0;

	ck_assert_int_eq(hs_select_version(1, 1, 1, 1, &v), 0);
	ck_assert_int_eq(v, 1);
	/* A newer source talks to an older destination at the older version. */
	ck_assert_int_eq(hs_select_version(1, 3, 1, 2, &v), 0);
	ck_assert_int_eq(v, 2);
	/* And an older source to a newer destination at its own version. */
	ck_assert_int_eq(hs_select_version(1, 1, 1, 5, &v), 0);
	ck_assert_int_eq(v, 1);
	v = 9;
	ck_assert_int_eq(hs_select_version(1, 1, 2, 5, &v), -ENOTSUP);
	ck_assert_int_eq(hs_select_version(3, 4, 1, 2, &v), -ENOTSUP);
	ck_assert_int_eq(hs_select_version(1, 2, 0, 0, &v), -ENOTSUP);
	ck_assert_int_eq(hs_select_version(1, 2, 3, 1, &v), -ENOTSUP);
	ck_assert_int_eq(v, 9);
}
END_TEST

START_TEST(uri_good)
{
	struct mig_uri	 u;
	const char	*e;
	char		 buf[300];

	ck_assert_int_eq(uri_parse("unix:/run/x.sock", &u, &e), 0);
	ck_assert_int_eq(u.kind, URI_UNIX);
	ck_assert_str_eq(u.path, "/run/x.sock");
	ck_assert_int_eq(uri_parse("tcp:127.0.0.1:4444", &u, &e), 0);
	ck_assert_int_eq(u.kind, URI_TCP);
	ck_assert_str_eq(u.host, "127.0.0.1");
	ck_assert_str_eq(u.port, "4444");
	ck_assert_int_eq(uri_parse("tcp:[::1]:5", &u, &e), 0);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_str_eq(u.port, "5");
	ck_assert_int_eq(uri_format(&u, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "tcp:[::1]:5");
	ck_assert_int_eq(uri_parse("tcp:host.example:65535", &u, &e), 0);
	ck_assert_str_eq(u.host, "host.example");
}
END_TEST

START_TEST(uri_bad)
{
	struct mig_uri	 u;
	const char	*e = NULL;
	char		 lng[200];
	const char	*bad[] = { "", "unix:", "tcp:", "tcp:host", "tcp::1",
	    "tcp:host:", "tcp:host:65536", "tcp:host:-1", "tcp:host:12a",
	    "tcp:::1:5", "tcp:[::1]5", "tcp:[::1", "exec:cat", "fd:3",
	    "rdma:1.2.3.4:5", "tcp:h:1,ipv4", "unix:/x,y", "UNIX:/x",
	    "tcp:h:123456", "tcp:[[x]:80", "tcp:[a]b]:1", "tcp:a]:1", NULL };
	int		 i;

	for (i = 0; bad[i] != NULL; i++) {
		e = NULL;
		ck_assert_msg(uri_parse(bad[i], &u, &e) == -EINVAL, "%s", bad[i]);
		ck_assert_ptr_nonnull(e);
	}
	memset(lng, 'a', sizeof(lng) - 1);
	lng[sizeof(lng) - 1] = '\0';
	memcpy(lng, "unix:/", 6);
	ck_assert_int_eq(uri_parse(lng, &u, &e), -EINVAL);
	ck_assert_str_eq(e, "unix socket path too long");
}
END_TEST

START_TEST(hostport)
{
	char		 h[16], p[8];
	const char	*e;

	ck_assert_int_eq(hostport_parse("0.0.0.0:4600", h, sizeof(h), p,
	    sizeof(p), &e), 0);
	ck_assert_str_eq(h, "0.0.0.0");
	ck_assert_int_eq(hostport_parse("[::]:0", h, sizeof(h), p, sizeof(p),
	    &e), 0);
	ck_assert_str_eq(h, "::");
	ck_assert_str_eq(p, "0");
	ck_assert_int_eq(hostport_parse("averyveryverylonghostname:1", h,
	    sizeof(h), p, sizeof(p), &e), -EINVAL);
	ck_assert_int_eq(hostport_parse(":1", h, sizeof(h), p, sizeof(p), &e),
	    -EINVAL);
}
END_TEST

START_TEST(session_ids)
{
	char	 id[66];

	ck_assert(session_id_is_valid("vm1"));
	ck_assert(session_id_is_valid("A.b-c_9"));
	ck_assert(!session_id_is_valid(""));
	ck_assert(!session_id_is_valid("a b"));
	ck_assert(!session_id_is_valid("a/b"));
	ck_assert(!session_id_is_valid("\xc3\xa9"));
	memset(id, 'x', 64);
	id[64] = '\0';
	ck_assert(session_id_is_valid(id));
	id[64] = 'x';
	id[65] = '\0';
	ck_assert(!session_id_is_valid(id));
}
END_TEST

/* RFC 3720 appendix B.4 vectors and the usual check value. */
static void
crc_vectors(void)
{
	uint8_t		 buf[32];
	unsigned int	 i;

	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x62A8AB43u);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x46DD794Eu);
	ck_assert_uint_eq(crc32c(0, NULL, 0), 0);
}

START_TEST(crc_table)
{
	crc32c_use_hw(0);
	crc_vectors();
}
END_TEST

START_TEST(crc_cpu)
{
	crc32c_use_hw(1);
	crc_vectors();
}
END_TEST

/* Both versions agree, and pieces chain, at every length and alignment. */
START_TEST(crc_chain)
{
	static uint8_t	 buf[3 * 3 * 4096 + 64];	/* several lane runs */
	uint32_t	 whole, sw, part;
	size_t		 len, off, cut;

	for (len = 0; len < sizeof(buf); len++)
		buf[len] = (uint8_t)(len * 131 + 7);
	for (len = 0; len + 8 <= sizeof(buf);
	    len += len < 64 ? 1 : len < 12288 ? 509 : 1021) {
		for (off = 0; off < 8; off++) {
			crc32c_use_hw(1);
			whole = crc32c(0, buf + off, len);
			cut = len / 3;
			part = crc32c(crc32c(0, buf + off, cut), buf + off + cut,
			    len - cut);
			crc32c_use_hw(0);
			sw = crc32c(0, buf + off, len);
			ck_assert_uint_eq(whole, sw);
			ck_assert_uint_eq(whole, part);
		}
	}
	crc32c_use_hw(1);
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite	*s = suite_create("proto");
	TCase	*tc = tcase_create("frame");

	tcase_add_test(tc, frame_roundtrip);
	tcase_add_test(tc, frame_truncated);
	tcase_add_test(tc, frame_oversized);
	tcase_add_test(tc, frame_unknown_types);
	tcase_add_test(tc, frame_garbage);
	suite_add_tcase(s, tc);
	tc = tcase_create("handshake");
	tcase_add_test(tc, hs_roundtrip);
	tcase_add_test(tc, hs_unknown_tag_skipped);
	tcase_add_test(tc, hs_malformed);
	tcase_add_test(tc, hs_garbage);
	tcase_add_test(tc, hs_encode_nospace);
	tcase_add_test(tc, version_select);
	suite_add_tcase(s, tc);
	tc = tcase_create("uri");
	tcase_add_test(tc, uri_good);
	tcase_add_test(tc, uri_bad);
	tcase_add_test(tc, hostport);
	tcase_add_test(tc, session_ids);
	suite_add_tcase(s, tc);
	tc = tcase_create("crc32c");
	tcase_add_test(tc, crc_table);
	tcase_add_test(tc, crc_cpu);
	tcase_add_test(tc, crc_chain);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(proto_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
