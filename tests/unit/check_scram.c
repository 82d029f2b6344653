/*
 * check_scram.c - SCRAM-SHA-256(-PLUS): the RFC 7677 vector in both roles,
 * verifiers, channel binding (tls-exporter), mock authentication,
 * iteration bounds, parser rejects, a random fuzz loop and a timing sanity
 * check of wrong password against unknown user.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "scram.h"

/* RFC 7677 section 3, one message per line as on the wire. */
#define RFC_USER	"user"
#define RFC_PASS	"pencil"
#define RFC_CNONCE	"rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE	"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE	RFC_CNONCE RFC_SNONCE
#define RFC_C1		"n,,n=user,r=" RFC_CNONCE
#define RFC_S1		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_C2		"c=biws,r=" RFC_NONCE \
			",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_S2		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define RFC_VERIFIER	"user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" \
			"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
			"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define ZERO_PROOF	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

#define MSG_BUF		(SCRAM_MAX_MSG + 1)

static const uint8_t rfc_salt[16] = {
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
};
/* Intermediate values from the reference (reliability-tests.md 5.4). */
static const char rfc_stored_hex[] =
    "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6";
static const char rfc_server_hex[] =
    "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5";

static const uint8_t mock_key[SCRAM_KEY_LEN] = {
	0x6d, 0x6f, 0x63, 0x6b, 0x2d, 0x6b, 0x65, 0x79,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
	0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
};

/* A tiny user database for the lookup callback. */
struct userdb {
	struct scram_verifier	 v[4];
	size_t			 n;
	unsigned int		 calls;
};

static int
db_lookup(void *arg, const char *user, struct scram_verifier *ret)
{
	struct userdb	*db = arg;
	size_t		 i;

	db->calls++;
	for (i = 0; i < db->n; i++) {
		if (strcmp(db->v[i].user, user) == 0) {
			*ret = db->v[i];
			return 0;
		}
	}
	return -ENOENT;
}

static void
db_add(struct userdb *db, const char *user, const char *password,
    unsigned int iter)
{
	char		 line[SCRAM_VERIFIER_MAX];
	const char	*err = NULL;

	ck_assert_uint_lt(db->n, 4);
	ck_assert_int_eq(scram_verifier_make(user, password, iter, NULL, 0,
	    line, sizeof(line)), 0);
	ck_assert_int_eq(scram_verifier_parse(line, &db->v[db->n], &err), 0);
	db->n++;
}

/* The RFC 7677 user, with the RFC's salt, plus one more user. */
static void
db_rfc(struct userdb *db)
{
	const char	*err = NULL;

	memset(db, 0, sizeof(*db));
	ck_assert_int_eq(scram_verifier_parse(RFC_VERIFIER, &db->v[0], &err),
	    0);
	db->n = 1;
	db_add(db, "other", "other password", 5000);
}

static void
hex(const uint8_t *b, size_t len, char *out)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Whether needle occurs in the len bytes at hay (memmem is not portable). */
static const void *
has_bytes(const void *hay, size_t len, const void *needle, size_t nlen)
{
	const uint8_t	*h = hay;
	size_t		 i;

	for (i = 0; i + nlen <= len; i++)
		if (memcmp(h + i, needle, nlen) == 0)
			return h + i;
	return NULL;
}

static uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The value of attribute "s=" in a server-first-message. */
static void
salt_of(const char *first, char *out, size_t outlen)
{
	const char	*p = strstr(first, ",s=");
	size_t		 len;

	ck_assert_ptr_nonnull(p);
	p += 3;
	len = strcspn(p, ",");
	ck_assert_uint_lt(len, outlen);
	memcpy(out, p, len);
	out[len] = '\0';
}

/* One full exchange between our client and our server. */
struct xchg {
	int		 cinit, c1, s1, c2, s2, cv;
	char		 m1[MSG_BUF], m2[MSG_BUF], m3[MSG_BUF], m4[MSG_BUF];
	const char	*serr, *cerr;
	char		 user[SCRAM_USER_MAX + 1];
};

static void
exchange(struct userdb *db, const char *user, const char *password,
    const uint8_t *ccb, const uint8_t *scb, struct xchg *x)
{
	struct scram_client	 c;
	struct scram_server	 s;
	const char		*u;

	memset(x, 0, sizeof(*x));
	x->c1 = x->s1 = x->c2 = x->s2 = x->cv = 1;	/* not reached */
	x->cinit = scram_client_init(&c, user, password, ccb, NULL);
	ck_assert_int_eq(x->cinit, 0);
	ck_assert_int_eq(scram_server_init(&s, scb, mock_key, NULL), 0);
	if ((x->c1 = scram_client_first(&c, x->m1, sizeof(x->m1))) != 0)
		goto out;
	if ((x->s1 = scram_server_first(&s, x->m1, db_lookup, db, x->m2,
	    sizeof(x->m2), &x->serr)) != 0)
		goto out;
	if ((x->c2 = scram_client_final(&c, x->m2, x->m3, sizeof(x->m3),
	    &x->cerr)) != 0)
		goto out;
	x->s2 = scram_server_final(&s, x->m3, x->m4, sizeof(x->m4), &x->serr);
	if (x->s2 != 0 && x->s2 != -EACCES)
		goto out;
	x->cv = scram_client_verify(&c, x->m4, &x->cerr);
	if ((u = scram_server_user(&s)) != NULL)
		snprintf(x->user, sizeof(x->user), "%s", u);
 out:
	scram_client_clear(&c);
	scram_server_clear(&s);
}

START_TEST(rfc7677_client)
{
	struct scram_client	 c;
	char			 out[MSG_BUF];
	const char		*err = NULL;

	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
	ck_assert_str_eq(out, RFC_C1);
	ck_assert_int_eq(scram_client_final(&c, RFC_S1, out, sizeof(out),
	    &err), 0);
	ck_assert_str_eq(out, RFC_C2);
	/* The password is not needed any more and must be gone. */
	ck_assert_ptr_null(has_bytes(&c, sizeof(c), RFC_PASS, strlen(RFC_PASS)));
	ck_assert_int_eq(scram_client_verify(&c, RFC_S2, &err), 0);
	/* The exchange is over: nothing more is accepted. */
	ck_assert_int_eq(scram_client_verify(&c, RFC_S2, &err), -EINVAL);
	ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), -EINVAL);
	scram_client_clear(&c);
}
END_TEST

START_TEST(rfc7677_server)
{
	struct userdb		 db;
	struct scram_verifier	 v;
	struct scram_server	 s;
	char			 line[SCRAM_VERIFIER_MAX], out[MSG_BUF];
	char			 h[2 * SCRAM_KEY_LEN + 1];
	const char		*err = NULL;

	ck_assert_int_eq(scram_verifier_make(RFC_USER, RFC_PASS, 4096,
	    rfc_salt, sizeof(rfc_salt), line, sizeof(line)), 0);
	ck_assert_str_eq(line, RFC_VERIFIER);
	ck_assert_int_eq(scram_verifier_parse(line, &v, &err), 0);
	ck_assert_str_eq(v.user, RFC_USER);
	ck_assert_uint_eq(v.iter, 4096);
	ck_assert_uint_eq(v.saltlen, sizeof(rfc_salt));
	ck_assert_mem_eq(v.salt, rfc_salt, sizeof(rfc_salt));
	hex(v.stored_key, SCRAM_KEY_LEN, h);
	ck_assert_str_eq(h, rfc_stored_hex);
	hex(v.server_key, SCRAM_KEY_LEN, h);
	ck_assert_str_eq(h, rfc_server_hex);

	memset(&db, 0, sizeof(db));
	db.v[0] = v;
	db.n = 1;
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, RFC_SNONCE), 0);
	ck_assert_ptr_null(scram_server_user(&s));
	ck_assert_int_eq(scram_server_first(&s, RFC_C1, db_lookup, &db, out,
	    sizeof(out), &err), 0);
	ck_assert_str_eq(out, RFC_S1);
	ck_assert_ptr_null(scram_server_user(&s));
	ck_assert_int_eq(scram_server_final(&s, RFC_C2, out, sizeof(out),
	    &err), 0);
	ck_assert_str_eq(out, RFC_S2);
	ck_assert_str_eq(scram_server_user(&s), RFC_USER);
	ck_assert_int_eq(scram_server_final(&s, RFC_C2, out, sizeof(out),
	    &err), -EINVAL);
	scram_server_clear(&s);
	ck_assert_ptr_null(scram_server_user(&s));
	ck_assert_int_eq(scram_server_first(&s, RFC_C1, db_lookup, &db, out,
	    sizeof(out), &err), -EINVAL);
}
END_TEST

START_TEST(verifier_roundtrip)
{
	struct scram_verifier	 v, w;
	char			 line[SCRAM_VERIFIER_MAX], l2[SCRAM_VERIFIER_MAX];
	const char		*err = NULL;
	uint8_t			 salt[SCRAM_SALT_MAX];
	size_t			 i;

	/* Random salts differ; every field survives the round trip. */
	ck_assert_int_eq(scram_verifier_make("a.b@c-d_E9", "secret pw", 0,
	    NULL, 0, line, sizeof(line)), 0);
	ck_assert_int_eq(scram_verifier_make("a.b@c-d_E9", "secret pw", 0,
	    NULL, 0, l2, sizeof(l2)), 0);
	ck_assert_str_ne(line, l2);
	ck_assert_int_eq(scram_verifier_parse(line, &v, &err), 0);
	ck_assert_str_eq(v.user, "a.b@c-d_E9");
	ck_assert_uint_eq(v.iter, SCRAM_ITER_DEFAULT);
	ck_assert_uint_eq(v.saltlen, SCRAM_SALT_LEN);
	ck_assert_int_eq(scram_verifier_make("a.b@c-d_E9", "secret pw",
	    v.iter, v.salt, v.saltlen, l2, sizeof(l2)), 0);
	ck_assert_str_eq(line, l2);

	/* Extremes: the longest salt, the highest count, a long name. */
	for (i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)(i * 7 + 1);
	memset(l2, 'u', 64);
	l2[64] = '\0';
	ck_assert_int_eq(scram_verifier_make(l2, "x", SCRAM_ITER_MAX, salt,
	    sizeof(salt), line, sizeof(line)), 0);
	ck_assert_int_eq(scram_verifier_parse(line, &v, &err), 0);
	ck_assert_uint_eq(v.iter, SCRAM_ITER_MAX);
	ck_assert_uint_eq(v.saltlen, sizeof(salt));
	ck_assert_mem_eq(v.salt, salt, sizeof(salt));
	ck_assert_uint_eq(strlen(v.user), 64);

	/* A trailing newline from a line reader is tolerated. */
	snprintf(line, sizeof(line), "%s\n", RFC_VERIFIER);
	ck_assert_int_eq(scram_verifier_parse(line, &v, &err), 0);

	/* Making: argument checks; out is untouched on failure. */
	strcpy(l2, "untouched");
	ck_assert_int_eq(scram_verifier_make(RFC_USER, RFC_PASS, 4096,
	    rfc_salt, sizeof(rfc_salt), l2, strlen(RFC_VERIFIER)), -ENOSPC);
	ck_assert_str_eq(l2, "untouched");
	ck_assert_int_eq(scram_verifier_make(RFC_USER, RFC_PASS, 4096,
	    rfc_salt, sizeof(rfc_salt), l2, strlen(RFC_VERIFIER) + 1), 0);
	ck_assert_int_eq(scram_verifier_make("bad:name", "pw", 0, NULL, 0,
	    line, sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("", "pw", 0, NULL, 0, line,
	    sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("u", "", 0, NULL, 0, line,
	    sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("u", "p\xc3\xa4ss", 0, NULL, 0,
	    line, sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("u", "p\tw", 0, NULL, 0,
	    line, sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("u", "pw", 4095, NULL, 0, line,
	    sizeof(line)), -ERANGE);
	ck_assert_int_eq(scram_verifier_make("u", "pw", 100001, NULL, 0, line,
	    sizeof(line)), -ERANGE);
	ck_assert_int_eq(scram_verifier_make("u", "pw", 0, salt, 0, line,
	    sizeof(line)), -EINVAL);
	ck_assert_int_eq(scram_verifier_make("u", "pw", 0, salt, 65, line,
	    sizeof(line)), -EINVAL);

	/* Parsing: every field is checked and *ret is left alone. */
	memset(&w, 0x5a, sizeof(w));
	v = w;
	{
		static const struct {
			const char	*line;
			int		 rc;
		} bad[] = {
			{ "", -EINVAL },
			{ "user", -EINVAL },
			{ ":SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "us,er:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "us=3Der:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-256$04096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-256$4095:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -ERANGE },
			{ "user:SCRAM-SHA-256$100001:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -ERANGE },
			{ "user:SCRAM-SHA-256$99999999999999999999999:"
			  "W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -ERANGE },
			{ "user:SCRAM-SHA-256$4096:$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			/* Non-canonical base64: the unused bits are set. */
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", -EINVAL },
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=x", -EINVAL },
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n\n", -EINVAL },
			{ "user:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
			  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", -EINVAL },
		};
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			err = NULL;
			ck_assert_msg(scram_verifier_parse(bad[i].line, &v,
			    &err) == bad[i].rc, "bad verifier %zu", i);
			ck_assert_ptr_nonnull(err);
			ck_assert_mem_eq(&v, &w, sizeof(v));
		}
	}
	ck_assert_int_eq(scram_verifier_parse(NULL, &v, &err), -EINVAL);
}
END_TEST

START_TEST(exchange_plain)
{
	struct userdb	 db;
	struct xchg	 x;

	db_rfc(&db);
	exchange(&db, RFC_USER, RFC_PASS, NULL, NULL, &x);
	ck_assert_int_eq(x.s2, 0);
	ck_assert_int_eq(x.cv, 0);
	ck_assert_str_eq(x.user, RFC_USER);
	ck_assert(strncmp(x.m1, "n,,n=user,r=", 12) == 0);
	ck_assert(strncmp(x.m3, "c=biws,r=", 9) == 0);
	/* A random nonce is 24 bytes of base64. */
	ck_assert_uint_eq(strlen(x.m1), 12 + 32);
}
END_TEST

START_TEST(exchange_cbind)
{
	struct userdb	 db;
	struct xchg	 x;
	uint8_t		 cb[SCRAM_CBIND_LEN], other[SCRAM_CBIND_LEN];

	memset(cb, 0xa5, sizeof(cb));
	memcpy(other, cb, sizeof(other));
	other[31] ^= 1;
	db_rfc(&db);

	/* Same exporter on both sides: SCRAM-SHA-256-PLUS succeeds. */
	exchange(&db, RFC_USER, RFC_PASS, cb, cb, &x);
	ck_assert(strncmp(x.m1, "p=tls-exporter,,n=user,r=", 25) == 0);
	ck_assert(strncmp(x.m3, "c=cD10bHMtZXhwb3J0ZXIsL", 23) == 0);
	ck_assert_int_eq(x.s2, 0);
	ck_assert_int_eq(x.cv, 0);
	ck_assert_str_eq(x.user, RFC_USER);

	/* A man in the middle: two TLS connections, two exporters. */
	exchange(&db, RFC_USER, RFC_PASS, cb, other, &x);
	ck_assert_int_eq(x.s2, -EACCES);
	ck_assert_str_eq(x.m4, "e=channel-bindings-dont-match");
	ck_assert_ptr_nonnull(strstr(x.serr, "mismatch"));
	ck_assert_int_eq(x.cv, -EACCES);
	ck_assert_ptr_nonnull(strstr(x.cerr, "channel-bindings-dont-match"));
	ck_assert_str_eq(x.user, "");

	/* Downgrade: the client does not bind, the server has TLS. */
	exchange(&db, RFC_USER, RFC_PASS, NULL, cb, &x);
	ck_assert_int_eq(x.s1, 0);
	ck_assert_int_eq(x.s2, -EACCES);
	ck_assert_str_eq(x.m4, "e=channel-bindings-dont-match");
	ck_assert_ptr_nonnull(strstr(x.serr, "downgrade"));
	ck_assert_int_eq(x.cv, -EACCES);
	ck_assert_str_eq(x.user, "");

	/* The client binds, the server has no TLS: refused at once. */
	exchange(&db, RFC_USER, RFC_PASS, cb, NULL, &x);
	ck_assert_int_eq(x.s1, -EPROTO);
	ck_assert_ptr_nonnull(x.serr);
	ck_assert_str_eq(x.user, "");
}
END_TEST

/* The "y" flag (client could bind, thinks the server cannot). */
START_TEST(cbind_flag_y)
{
	struct userdb		 db;
	struct scram_server	 s;
	uint8_t			 cb[SCRAM_CBIND_LEN];
	char			 out[MSG_BUF];
	const char		*err = NULL;

	memset(cb, 7, sizeof(cb));
	db_rfc(&db);

	/* Server with binding: a downgrade, fails at the end. */
	ck_assert_int_eq(scram_server_init(&s, cb, mock_key, "SN"), 0);
	ck_assert_int_eq(scram_server_first(&s, "y,,n=user,r=CN", db_lookup,
	    &db, out, sizeof(out), &err), 0);
	ck_assert(strncmp(out, "r=CNSN,s=", 9) == 0);
	ck_assert_int_eq(scram_server_final(&s, "c=eSws,r=CNSN,p=" ZERO_PROOF,
	    out, sizeof(out), &err), -EACCES);
	ck_assert_str_eq(out, "e=channel-bindings-dont-match");
	scram_server_clear(&s);

	/* Server without binding: fine, and only the proof is wrong. */
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, "SN"), 0);
	ck_assert_int_eq(scram_server_first(&s, "y,,n=user,r=CN", db_lookup,
	    &db, out, sizeof(out), &err), 0);
	ck_assert_int_eq(scram_server_final(&s, "c=eSws,r=CNSN,p=" ZERO_PROOF,
	    out, sizeof(out), &err), -EACCES);
	ck_assert_str_eq(out, "e=invalid-proof");
	scram_server_clear(&s);

	/* "c=" must repeat the gs2 header that was actually sent. */
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, "SN"), 0);
	ck_assert_int_eq(scram_server_first(&s, "y,,n=user,r=CN", db_lookup,
	    &db, out, sizeof(out), &err), 0);
	ck_assert_int_eq(scram_server_final(&s, "c=biws,r=CNSN,p=" ZERO_PROOF,
	    out, sizeof(out), &err), -EACCES);
	ck_assert_str_eq(out, "e=channel-bindings-dont-match");
	scram_server_clear(&s);

	/* A binding type other than tls-exporter. */
	ck_assert_int_eq(scram_server_init(&s, cb, mock_key, "SN"), 0);
	ck_assert_int_eq(scram_server_first(&s,
	    "p=tls-server-end-point,,n=user,r=CN", db_lookup, &db, out,
	    sizeof(out), &err), -EPROTO);
	scram_server_clear(&s);
	ck_assert_int_eq(scram_server_init(&s, cb, mock_key, "SN"), 0);
	ck_assert_int_eq(scram_server_first(&s,
	    "p=tls-unique,,n=user,r=CN", db_lookup, &db, out,
	    sizeof(out), &err), -EPROTO);
	scram_server_clear(&s);
}
END_TEST

START_TEST(wrong_password_unknown_user)
{
	struct userdb	 db;
	struct xchg	 a, b, b2, d;
	char		 sa[128], sb[128], sb2[128], sd[128];
	uint8_t		 mac[EVP_MAX_MD_SIZE];
	unsigned char	 enc[64];
	unsigned int	 maclen = 0;

	db_rfc(&db);
	exchange(&db, RFC_USER, "pencil2", NULL, NULL, &a);
	exchange(&db, "ghost", RFC_PASS, NULL, NULL, &b);
	exchange(&db, "ghost", "anything", NULL, NULL, &b2);
	exchange(&db, "phantom", RFC_PASS, NULL, NULL, &d);

	/* Identical answers on the wire. */
	ck_assert_int_eq(a.s2, -EACCES);
	ck_assert_int_eq(b.s2, -EACCES);
	ck_assert_str_eq(a.m4, "e=invalid-proof");
	ck_assert_str_eq(b.m4, a.m4);
	ck_assert_int_eq(a.cv, -EACCES);
	ck_assert_int_eq(b.cv, -EACCES);
	ck_assert_str_eq(a.cerr, b.cerr);
	/* Only the server's log learns the difference. */
	ck_assert_str_ne(a.serr, b.serr);

	/* The same shape of server-first, with a stable salt per name. */
	salt_of(a.m2, sa, sizeof(sa));
	salt_of(b.m2, sb, sizeof(sb));
	salt_of(b2.m2, sb2, sizeof(sb2));
	salt_of(d.m2, sd, sizeof(sd));
	ck_assert_uint_eq(strlen(sa), strlen(sb));
	ck_assert_str_eq(sb, sb2);
	ck_assert_str_ne(sb, sd);
	ck_assert_ptr_nonnull(strstr(b.m2, ",i=4096"));
	ck_assert_ptr_nonnull(strstr(a.m2, ",i=4096"));

	/* The fake salt is HMAC-SHA-256(mock_key, user), first 16 bytes. */
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), mock_key, sizeof(mock_key),
	    (const unsigned char *)"ghost", 5, mac, &maclen));
	EVP_EncodeBlock(enc, mac, SCRAM_SALT_LEN);
	ck_assert_str_eq(sb, (char *)enc);
}
END_TEST

/* A verifier the client would refuse is treated like an unknown user. */
START_TEST(unusable_verifier)
{
	struct userdb	 db;
	struct xchg	 x;

	db_rfc(&db);
	db.v[0].iter = SCRAM_ITER_MAX + 1;
	exchange(&db, RFC_USER, RFC_PASS, NULL, NULL, &x);
	ck_assert_int_eq(x.s1, 0);
	ck_assert_ptr_nonnull(strstr(x.m2, ",i=4096"));
	ck_assert_ptr_null(strstr(x.m2, "W22ZaJ0SNY7soEsUEjb6gQ=="));
	ck_assert_int_eq(x.s2, -EACCES);
	ck_assert_str_eq(x.m4, "e=invalid-proof");
	ck_assert_str_eq(x.serr, "unknown user");

	db_rfc(&db);
	db.v[0].saltlen = 0;
	exchange(&db, RFC_USER, RFC_PASS, NULL, NULL, &x);
	ck_assert_int_eq(x.s2, -EACCES);
	ck_assert_str_eq(x.m4, "e=invalid-proof");
}
END_TEST

START_TEST(iteration_bounds)
{
	static const char *const bad[] = {
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100001",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967296",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,"
		    "i=99999999999999999999999999999999999999",
	};
	static const char *const malformed[] = {
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=+4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
	};
	struct scram_client	 c;
	char			 out[MSG_BUF];
	const char		*err;
	uint64_t		 t0, t1;
	size_t			 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS,
		    NULL, RFC_CNONCE), 0);
		ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
		strcpy(out, "untouched");
		err = NULL;
		t0 = now_ns();
		ck_assert_int_eq(scram_client_final(&c, bad[i], out,
		    sizeof(out), &err), -ERANGE);
		t1 = now_ns();
		ck_assert_msg(t1 - t0 < 50000000u, "i=%zu took %llu ns", i,
		    (unsigned long long)(t1 - t0));
		ck_assert_ptr_nonnull(strstr(err, "iteration"));
		ck_assert_str_eq(out, "untouched");
		scram_client_clear(&c);
	}
	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS,
		    NULL, RFC_CNONCE), 0);
		ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
		ck_assert_int_eq(scram_client_final(&c, malformed[i], out,
		    sizeof(out), &err), -EPROTO);
		scram_client_clear(&c);
	}
	/* Both ends of the range are accepted. */
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
	ck_assert_int_eq(scram_client_final(&c, "r=" RFC_NONCE
	    ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100000", out, sizeof(out), &err), 0);
	scram_client_clear(&c);
}
END_TEST

/* Feed one client-first-message to a fresh server. */
static int
server_first_rc(const uint8_t *cb, const char *msg, char *out,
    const char **err)
{
	struct userdb		 db;
	struct scram_server	 s;
	int			 rc;

	memset(&db, 0, sizeof(db));
	db.n = 0;
	ck_assert_int_eq(scram_server_init(&s, cb, mock_key, "SN"), 0);
	rc = scram_server_first(&s, msg, db_lookup, &db, out, MSG_BUF, err);
	if (rc != 0)
		ck_assert_uint_eq(db.calls, 0);
	scram_server_clear(&s);
	return rc;
}

START_TEST(server_first_rejects)
{
	static const char *const bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"x,,n=user,r=abc",
		"n,a=admin,n=user,r=abc",	/* authzid */
		"n,a=,n=user,r=abc",
		"n,,m=ext,n=user,r=abc",	/* mandatory extension */
		"n,,n=,r=abc",
		"n,,n=us,er,r=abc",
		"n,,n=us=2Cer,r=abc",		/* saslname escapes */
		"n,,n=us=3Der,r=abc",
		"n,,n=\xc3\xa9,r=abc",		/* non-ASCII */
		"n,,n=user name,r=abc",
		"n,,n=uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
		    "uuuuuuuuu,r=abc",		/* 65 characters */
		"n,,n=user",
		"n,,n=user,",
		"n,,n=user,r=",
		"n,,n=user,r=ab c",		/* space in the nonce */
		"n,,n=user,r=ab\x01" "c",	/* control character */
		"n,,n=user,r=ab\x7f" "c",
		"n,,n=user,r=abc,",
		"n,,n=user,r=abc,n=other",	/* repeated attributes */
		"n,,n=user,r=abc,r=def",
		"n,,n=user,r=abc,x=1,x=2",
		"n,,n=user,r=abc,x=",
		"n,,n=user,r=abc,1=2",
		"n,,r=abc,n=user",		/* order */
		" n,,n=user,r=abc",
		"n,,n=user,r=abc\n",
		"p,,n=user,r=abc",
		"p=,,n=user,r=abc",
		"p=tls-exporter",
		"p=tls-exporter,",
		"p=tls-exporterx,,n=user,r=abc",
	};
	char		 out[MSG_BUF], big[SCRAM_MAX_MSG + 64];
	uint8_t		 cb[SCRAM_CBIND_LEN];
	const char	*err;
	size_t		 i;

	memset(cb, 1, sizeof(cb));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		strcpy(out, "untouched");
		ck_assert_msg(server_first_rc(cb, bad[i], out, &err) ==
		    -EPROTO, "accepted bad client-first %zu", i);
		ck_assert_ptr_nonnull(err);
		ck_assert_str_eq(out, "untouched");
	}
	/* A nonce longer than SCRAM_NONCE_MAXLEN. */
	snprintf(big, sizeof(big), "n,,n=user,r=");
	memset(big + 12, 'x', SCRAM_NONCE_MAXLEN + 1);
	big[12 + SCRAM_NONCE_MAXLEN + 1] = '\0';
	ck_assert_int_eq(server_first_rc(cb, big, out, &err), -EPROTO);
	big[12 + SCRAM_NONCE_MAXLEN] = '\0';
	ck_assert_int_eq(server_first_rc(cb, big + 0, out, &err), 0);
	/* A message longer than SCRAM_MAX_MSG, even with a valid start. */
	snprintf(big, sizeof(big), "n,,n=user,r=abc,x=");
	memset(big + 18, 'y', sizeof(big) - 19);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(server_first_rc(NULL, big, out, &err), -EPROTO);
	big[SCRAM_MAX_MSG] = '\0';
	ck_assert_int_eq(server_first_rc(NULL, big, out, &err), 0);

	/* Accepted: optional extensions, and every allowed name byte. */
	ck_assert_int_eq(server_first_rc(NULL, "n,,n=user,r=abc,x=1,Y=a b",
	    out, &err), 0);
	ck_assert_int_eq(server_first_rc(NULL,
	    "n,,n=AZaz09_.@-,r=!\"#$%&'()*+-./09:;<=>?@AZ[\\]^_`az{|}~", out,
	    &err), 0);
	ck_assert_int_eq(server_first_rc(cb, "p=tls-exporter,,n=user,r=abc",
	    out, &err), 0);
	/* p=tls-exporter without TLS on the server's side. */
	ck_assert_int_eq(server_first_rc(NULL, "p=tls-exporter,,n=user,r=abc",
	    out, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "channel binding"));
	/* Argument checks. */
	ck_assert_int_eq(server_first_rc(NULL, NULL, out, &err), -EINVAL);
}
END_TEST

/* A server that has answered RFC_C1 with RFC_S1. */
static void
server_at_first(struct scram_server *s, struct userdb *db, const uint8_t *cb)
{
	char		 out[MSG_BUF];
	const char	*err = NULL;

	db_rfc(db);
	ck_assert_int_eq(scram_server_init(s, cb, mock_key, RFC_SNONCE), 0);
	ck_assert_int_eq(scram_server_first(s, RFC_C1, db_lookup, db, out,
	    sizeof(out), &err), 0);
	ck_assert_str_eq(out, RFC_S1);
}

START_TEST(server_final_rejects)
{
	static const struct {
		const char	*msg;
		int		 rc;
	} cases[] = {
		{ "", -EPROTO },
		{ "c=biws", -EPROTO },
		{ "c=biws,r=" RFC_NONCE, -EPROTO },
		{ "c=biws,r=" RFC_NONCE ",", -EPROTO },
		{ "c=biws,r=" RFC_NONCE ",p=", -EPROTO },
		/* Nonce: not the combined one. */
		{ "c=biws,r=" RFC_CNONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		{ "c=biws,r=" RFC_NONCE "x"
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		/* Proof: 31 and 33 bytes, bad base64, non-canonical. */
		{ "c=biws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndQ==", -EPROTO },
		{ "c=biws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQAAA==",
		    -EPROTO },
		{ "c=biws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ", -EPROTO },
		{ "c=biws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And!Q=", -EPROTO },
		{ "c=biws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=", -EPROTO },
		/* Trailing garbage after the proof. */
		{ RFC_C2 ",x=1", -EPROTO },
		{ RFC_C2 ",", -EPROTO },
		{ RFC_C2 " ", -EPROTO },
		{ RFC_C2 "\n", -EPROTO },
		/* Order and repetition. */
		{ "r=" RFC_NONCE ",c=biws"
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		{ "c=biws,r=" RFC_NONCE ",c=biws"
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		{ "c=biws,r=" RFC_NONCE ",x=1,x=2"
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		/* c= not base64 at all. */
		{ "c=biw,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EPROTO },
		/* Well formed but wrong: authentication failures. */
		{ "c=eSws,r=" RFC_NONCE
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EACCES },
		{ "c=biws,r=" RFC_NONCE ",p=" ZERO_PROOF, -EACCES },
		/* An extension is legal but changes AuthMessage. */
		{ "c=biws,r=" RFC_NONCE ",x=1"
		    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", -EACCES },
	};
	struct userdb		 db;
	struct scram_server	 s;
	char			 out[MSG_BUF];
	const char		*err;
	size_t			 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		server_at_first(&s, &db, NULL);
		strcpy(out, "untouched");
		err = NULL;
		ck_assert_msg(scram_server_final(&s, cases[i].msg, out,
		    sizeof(out), &err) == cases[i].rc, "client-final %zu", i);
		ck_assert_ptr_nonnull(err);
		if (cases[i].rc == -EPROTO)
			ck_assert_str_eq(out, "untouched");
		else
			ck_assert_str_eq(out, cases[i].msg[2] == 'e' ?
			    "e=channel-bindings-dont-match" :
			    "e=invalid-proof");
		ck_assert_ptr_null(scram_server_user(&s));
		/* A failed exchange stays failed. */
		ck_assert_int_eq(scram_server_final(&s, RFC_C2, out,
		    sizeof(out), &err), -EINVAL);
		scram_server_clear(&s);
	}

	/* Out of order: final before first. */
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, NULL), 0);
	ck_assert_int_eq(scram_server_final(&s, RFC_C2, out, sizeof(out),
	    &err), -EINVAL);
	scram_server_clear(&s);

	/* Output space: "v=" + 44 characters + NUL. */
	server_at_first(&s, &db, NULL);
	ck_assert_int_eq(scram_server_final(&s, RFC_C2, out, 46, &err),
	    -ENOSPC);
	scram_server_clear(&s);
	server_at_first(&s, &db, NULL);
	ck_assert_int_eq(scram_server_final(&s, RFC_C2, out, 47, &err), 0);
	ck_assert_str_eq(out, RFC_S2);
	scram_server_clear(&s);
}
END_TEST

START_TEST(client_rejects)
{
	static const struct {
		const char	*msg;
		int		 rc;
	} first[] = {
		{ "", -EPROTO },
		{ "m=x,r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		    -EPROTO },
		{ "e=other-error", -EPROTO },
		{ "r=" RFC_NONCE ",i=4096", -EPROTO },
		{ "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==", -EPROTO },
		{ "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=" RFC_NONCE ",i=4096", -EPROTO },
		/* The server nonce must extend ours, and be printable. */
		{ "r=" RFC_CNONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		    -EPROTO },
		{ "r=xOprNGfwEbeRWgbNEkqO" RFC_SNONCE
		    ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", -EPROTO },
		{ "r=rOprNGfwEbeRWgbNEkq" ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		    -EPROTO },
		{ "r=" RFC_CNONCE "a b,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		    -EPROTO },
		/* Salt: empty, bad base64, longer than 64 bytes. */
		{ "r=" RFC_NONCE ",s=,i=4096", -EPROTO },
		{ "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", -EPROTO },
		{ "r=" RFC_NONCE ",s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,i=4096",
		    -EPROTO },
		/* Repetition and trailing garbage. */
		{ RFC_S1 ",s=W22ZaJ0SNY7soEsUEjb6gQ==", -EPROTO },
		{ RFC_S1 ",i=4096", -EPROTO },
		{ RFC_S1 ",", -EPROTO },
		{ RFC_S1 " ", -EPROTO },
		/* Accepted: an optional extension. */
		{ RFC_S1 ",x=whatever", 0 },
	};
	static const struct {
		const char	*msg;
		int		 rc;
		const char	*err;
	} last[] = {
		{ RFC_S2, 0, NULL },
		{ "e=invalid-proof", -EACCES, "invalid-proof" },
		{ "e=channel-bindings-dont-match", -EACCES,
		    "channel-bindings-dont-match" },
		{ "e=something-new", -EACCES, "unrecognised" },
		{ "e=", -EPROTO, NULL },
		{ "", -EPROTO, NULL },
		{ "v=", -EPROTO, NULL },
		{ "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", -EPROTO, NULL },
		{ "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95A==", -EPROTO,
		    NULL },
		{ RFC_S2 ",v=x", -EPROTO, NULL },
		{ RFC_S2 ",e=invalid-proof", -EPROTO, NULL },
		{ RFC_S2 " ", -EPROTO, NULL },
		{ "v=" ZERO_PROOF, -EACCES, "signature" },
		{ RFC_S2 ",x=ext", 0, NULL },
	};
	struct scram_client	 c;
	char			 out[MSG_BUF];
	const char		*err;
	size_t			 i;

	for (i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
		ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS,
		    NULL, RFC_CNONCE), 0);
		ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
		err = NULL;
		ck_assert_msg(scram_client_final(&c, first[i].msg, out,
		    sizeof(out), &err) == first[i].rc, "server-first %zu", i);
		if (first[i].rc != 0) {
			ck_assert_ptr_nonnull(err);
			ck_assert_int_eq(scram_client_final(&c, RFC_S1, out,
			    sizeof(out), &err), -EINVAL);
		}
		scram_client_clear(&c);
	}
	for (i = 0; i < sizeof(last) / sizeof(last[0]); i++) {
		ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS,
		    NULL, RFC_CNONCE), 0);
		ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
		ck_assert_int_eq(scram_client_final(&c, RFC_S1, out,
		    sizeof(out), &err), 0);
		err = NULL;
		ck_assert_msg(scram_client_verify(&c, last[i].msg, &err) ==
		    last[i].rc, "server-final %zu", i);
		if (last[i].err != NULL)
			ck_assert_ptr_nonnull(strstr(err, last[i].err));
		scram_client_clear(&c);
	}

	/* Arguments and order. */
	ck_assert_int_eq(scram_client_init(&c, "bad,name", RFC_PASS, NULL,
	    NULL), -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, "", RFC_PASS, NULL, NULL),
	    -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, "", NULL, NULL),
	    -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, "\xff", NULL, NULL),
	    -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    "a,b"), -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    ""), -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    "a b"), -EINVAL);
	ck_assert_int_eq(scram_client_init(NULL, RFC_USER, RFC_PASS, NULL,
	    NULL), -EINVAL);
	ck_assert_int_eq(scram_client_final(&c, RFC_S1, out, sizeof(out),
	    &err), -EINVAL);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_final(&c, RFC_S1, out, sizeof(out),
	    &err), -EINVAL);
	ck_assert_int_eq(scram_client_verify(&c, RFC_S2, &err), -EINVAL);
	ck_assert_int_eq(scram_client_first(&c, out, strlen(RFC_C1)),
	    -ENOSPC);
	scram_client_clear(&c);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c, out, strlen(RFC_C1) + 1), 0);
	ck_assert_int_eq(scram_client_final(&c, RFC_S1, out, strlen(RFC_C2),
	    &err), -ENOSPC);
	scram_client_clear(&c);
	ck_assert_int_eq(scram_client_init(&c, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), 0);
	ck_assert_int_eq(scram_client_final(&c, RFC_S1, out,
	    strlen(RFC_C2) + 1, &err), 0);
	ck_assert_str_eq(out, RFC_C2);
	scram_client_clear(&c);
}
END_TEST

START_TEST(clear_wipes)
{
	struct scram_client	 c;
	struct scram_server	 s;
	struct userdb		 db;
	static const uint8_t	 zero[sizeof(struct scram_server)];
	char			 out[MSG_BUF];

	ck_assert_int_eq(scram_client_init(&c, RFC_USER, "Tr0ub4dor&3", NULL,
	    NULL), 0);
	ck_assert_ptr_nonnull(has_bytes(&c, sizeof(c), "Tr0ub4dor&3", 11));
	scram_client_clear(&c);
	ck_assert_ptr_null(has_bytes(&c, sizeof(c), "Tr0ub4dor&3", 11));
	ck_assert_int_eq(scram_client_first(&c, out, sizeof(out)), -EINVAL);
	scram_client_clear(NULL);

	server_at_first(&s, &db, NULL);
	scram_server_clear(&s);
	ck_assert_mem_eq(&s, zero, sizeof(s));
	scram_server_clear(NULL);
	ck_assert_int_eq(scram_server_init(&s, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, "a,b"),
	    -EINVAL);
}
END_TEST

/* Every proper prefix of a valid message is refused (or still valid). */
START_TEST(truncation)
{
	struct scram_client	 c, c0, c1;
	struct scram_server	 s, s0;
	struct userdb		 db;
	char			 msg[MSG_BUF], out[MSG_BUF];
	const char		*err;
	size_t			 i;
	int			 rc;

	ck_assert_int_eq(scram_client_init(&c0, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c0, out, sizeof(out)), 0);
	c1 = c0;
	ck_assert_int_eq(scram_client_final(&c1, RFC_S1, out, sizeof(out),
	    &err), 0);
	server_at_first(&s0, &db, NULL);

	for (i = 0; i < strlen(RFC_C1); i++) {
		snprintf(msg, sizeof(msg), "%.*s", (int)i, RFC_C1);
		rc = server_first_rc(NULL, msg, out, &err);
		/* "n,,n=user,r=r" and longer prefixes are valid messages. */
		ck_assert_int_eq(rc, i >= 13 ? 0 : -EPROTO);
	}
	for (i = 0; i < strlen(RFC_S1); i++) {
		snprintf(msg, sizeof(msg), "%.*s", (int)i, RFC_S1);
		c = c0;
		rc = scram_client_final(&c, msg, out, sizeof(out), &err);
		ck_assert(rc == -EPROTO || rc == -ERANGE);
	}
	for (i = 0; i < strlen(RFC_C2); i++) {
		snprintf(msg, sizeof(msg), "%.*s", (int)i, RFC_C2);
		s = s0;
		ck_assert_int_eq(scram_server_final(&s, msg, out, sizeof(out),
		    &err), -EPROTO);
	}
	for (i = 0; i < strlen(RFC_S2); i++) {
		snprintf(msg, sizeof(msg), "%.*s", (int)i, RFC_S2);
		c = c1;
		ck_assert_int_eq(scram_client_verify(&c, msg, &err), -EPROTO);
	}
	for (i = 0; i < strlen(RFC_VERIFIER); i++) {
		struct scram_verifier	 v;

		snprintf(msg, sizeof(msg), "%.*s", (int)i, RFC_VERIFIER);
		ck_assert_int_eq(scram_verifier_parse(msg, &v, &err), -EINVAL);
	}
}
END_TEST

/*
 * Random input for every parser: fresh garbage, mutated valid messages,
 * truncations and splices, some longer than SCRAM_MAX_MSG.
 */
static const char *
mutate(char *buf, size_t cap, const char *seed)
{
	static const char	 special[] = ",=anmrscipve\x01 \x7f\xff+/";
	size_t			 len = strlen(seed), i, n, pos;

	switch (random() % 6) {
	case 0:
		n = (size_t)random() % (cap - 1);
		for (i = 0; i < n; i++)
			buf[i] = (char)(0x20 + random() % 95);
		buf[n] = '\0';
		break;
	case 1:
		n = (size_t)random() % 64;
		for (i = 0; i < n; i++)
			buf[i] = (char)(1 + random() % 255);
		buf[n] = '\0';
		break;
	case 2:
		memcpy(buf, seed, len + 1);
		n = 1 + (size_t)random() % 4;
		for (i = 0; i < n && len > 0; i++) {
			pos = (size_t)random() % len;
			buf[pos] = random() % 2 ? special[random() %
			    (sizeof(special) - 1)] : (char)(0x20 + random() % 95);
		}
		break;
	case 3:
		n = len > 0 ? (size_t)random() % len : 0;
		memcpy(buf, seed, n);
		buf[n] = '\0';
		break;
	case 4:
		/* Insert a short run of special characters. */
		pos = len > 0 ? (size_t)random() % len : 0;
		n = 1 + (size_t)random() % 8;
		memcpy(buf, seed, pos);
		for (i = 0; i < n; i++)
			buf[pos + i] = special[random() % (sizeof(special) - 1)];
		memcpy(buf + pos + n, seed + pos, len - pos + 1);
		break;
	default:
		/* Repeat the message, or a tail of it, many times over. */
		n = 0;
		pos = len > 0 ? (size_t)random() % len : 0;
		memcpy(buf, seed, len);
		n = len;
		while (n + 1 + (len - pos) + 1 < cap && random() % 16 != 0) {
			buf[n++] = ',';
			memcpy(buf + n, seed + pos, len - pos);
			n += len - pos;
		}
		buf[n] = '\0';
		break;
	}
	return buf;
}

START_TEST(fuzz)
{
	struct scram_client	 c0, c1, c;
	struct scram_server	 s0, s;
	struct scram_verifier	 v;
	struct userdb		 db;
	char			 buf[2 * SCRAM_MAX_MSG + 64], out[MSG_BUF];
	const char		*err, *m;
	unsigned int		 iter, ok[5] = { 0 };
	int			 rc;

	srandom(0x5c7a3);
	ck_assert_int_eq(scram_client_init(&c0, RFC_USER, RFC_PASS, NULL,
	    RFC_CNONCE), 0);
	ck_assert_int_eq(scram_client_first(&c0, out, sizeof(out)), 0);
	c1 = c0;
	ck_assert_int_eq(scram_client_final(&c1, RFC_S1, out, sizeof(out),
	    &err), 0);
	server_at_first(&s0, &db, NULL);

	for (iter = 0; iter < 10000; iter++) {
		m = mutate(buf, sizeof(buf), RFC_VERIFIER);
		rc = scram_verifier_parse(m, &v, &err);
		ck_assert(rc == 0 || rc == -EINVAL || rc == -ERANGE);
		ok[0] += rc == 0;

		m = mutate(buf, sizeof(buf), iter % 2 ? RFC_C1 :
		    "p=tls-exporter,,n=user,r=" RFC_CNONCE);
		rc = server_first_rc(iter % 3 ? NULL : (const uint8_t *)
		    "0123456789abcdef0123456789abcdef", m, out, &err);
		ck_assert(rc == 0 || rc == -EPROTO);
		if (rc == 0)
			ck_assert_uint_le(strlen(out), SCRAM_MAX_MSG);
		ok[1] += rc == 0;

		m = mutate(buf, sizeof(buf), RFC_C2);
		s = s0;
		rc = scram_server_final(&s, m, out, sizeof(out), &err);
		ck_assert(rc == 0 || rc == -EPROTO || rc == -EACCES);
		/* Nothing but the genuine message authenticates. */
		if (rc == 0)
			ck_assert_str_eq(m, RFC_C2);
		ok[2] += rc == 0;

		m = mutate(buf, sizeof(buf), RFC_S1);
		c = c0;
		rc = scram_client_final(&c, m, out, sizeof(out), &err);
		ck_assert(rc == 0 || rc == -EPROTO || rc == -ERANGE);
		ok[3] += rc == 0;

		m = mutate(buf, sizeof(buf), RFC_S2);
		c = c1;
		rc = scram_client_verify(&c, m, &err);
		ck_assert(rc == 0 || rc == -EPROTO || rc == -EACCES);
		if (rc == 0)
			ck_assert(strncmp(m, RFC_S2, strlen(RFC_S2)) == 0);
		ok[4] += rc == 0;
	}
	/* The mutations must not all be trivially rejected or accepted. */
	ck_assert_uint_gt(ok[1], 0);
	ck_assert_uint_gt(ok[3], 0);
	ck_assert_uint_lt(ok[2], 10000 / 4);
	scram_client_clear(&c0);
	scram_client_clear(&c1);
	scram_server_clear(&s0);
}
END_TEST

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	 x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Client messages that make server_final fail, and the time it takes. */
struct timed_case {
	char		 c1[MSG_BUF], c2[MSG_BUF];
};

static void
timed_prepare(struct userdb *db, const char *user, const char *password,
    struct timed_case *tc)
{
	struct scram_client	 c;
	struct scram_server	 s;
	char			 s1[MSG_BUF];
	const char		*err = NULL;

	ck_assert_int_eq(scram_client_init(&c, user, password, NULL,
	    "timingclientnonce"), 0);
	ck_assert_int_eq(scram_client_first(&c, tc->c1, sizeof(tc->c1)), 0);
	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, "srv"), 0);
	ck_assert_int_eq(scram_server_first(&s, tc->c1, db_lookup, db, s1,
	    sizeof(s1), &err), 0);
	ck_assert_int_eq(scram_client_final(&c, s1, tc->c2, sizeof(tc->c2),
	    &err), 0);
	scram_client_clear(&c);
	scram_server_clear(&s);
}

static uint64_t
timed_final(struct userdb *db, const struct timed_case *tc, char *out)
{
	struct scram_server	 s;
	const char		*err = NULL;
	uint64_t		 t0, t1;
	int			 rc;

	ck_assert_int_eq(scram_server_init(&s, NULL, mock_key, "srv"), 0);
	ck_assert_int_eq(scram_server_first(&s, tc->c1, db_lookup, db, out,
	    MSG_BUF, &err), 0);
	/* No ck_assert in here: in fork mode each one writes to a pipe. */
	t0 = now_ns();
	rc = scram_server_final(&s, tc->c2, out, MSG_BUF, &err);
	t1 = now_ns();
	ck_assert_int_eq(rc, -EACCES);
	scram_server_clear(&s);
	return t1 - t0;
}

START_TEST(timing_sanity)
{
	struct userdb		 db;
	struct timed_case	 wrong, unknown;
	char			 oa[MSG_BUF], ob[MSG_BUF];
	uint64_t		 ta[20], tb[20], ma = 0, mb = 0, hi, lo;
	int			 i, round, ok = 0;

	db_rfc(&db);
	timed_prepare(&db, RFC_USER, "not-pencil", &wrong);
	timed_prepare(&db, "nobody", "not-pencil", &unknown);
	for (i = 0; i < 5; i++) {
		timed_final(&db, &wrong, oa);
		timed_final(&db, &unknown, ob);
	}
	/*
	 * A real difference shows in every round; a burst of load from
	 * other processes on a shared machine rarely lasts three.
	 */
	for (round = 0; round < 3 && !ok; round++) {
		/*
		 * Interleaved, and in alternating order, so that drift in
		 * clock speed and the cost of whatever ran just before hit
		 * both alike.
		 */
		for (i = 0; i < 20; i++) {
			if (i % 2 == 0) {
				ta[i] = timed_final(&db, &wrong, oa);
				tb[i] = timed_final(&db, &unknown, ob);
			} else {
				tb[i] = timed_final(&db, &unknown, ob);
				ta[i] = timed_final(&db, &wrong, oa);
			}
			ck_assert_str_eq(oa, "e=invalid-proof");
			ck_assert_str_eq(ob, oa);
		}
		qsort(ta, 20, sizeof(ta[0]), cmp_u64);
		qsort(tb, 20, sizeof(tb[0]), cmp_u64);
		ma = (ta[9] + ta[10]) / 2;
		mb = (tb[9] + tb[10]) / 2;
		hi = ma > mb ? ma : mb;
		lo = ma > mb ? mb : ma;
		ok = (hi - lo) * 4 < hi;
	}
	ck_assert_msg(ok,
	    "medians differ: wrong password %llu ns, unknown user %llu ns",
	    (unsigned long long)ma, (unsigned long long)mb);
}
END_TEST

static Suite *
scram_suite(void)
{
	Suite	*s = suite_create("scram");
	TCase	*tc = tcase_create("vector");

	/* PBKDF2 under the sanitizers on a loaded machine is slow. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, rfc7677_client);
	tcase_add_test(tc, rfc7677_server);
	tcase_add_test(tc, verifier_roundtrip);
	suite_add_tcase(s, tc);
	tc = tcase_create("exchange");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, exchange_plain);
	tcase_add_test(tc, exchange_cbind);
	tcase_add_test(tc, cbind_flag_y);
	tcase_add_test(tc, wrong_password_unknown_user);
	tcase_add_test(tc, unusable_verifier);
	tcase_add_test(tc, iteration_bounds);
	tcase_add_test(tc, clear_wipes);
	suite_add_tcase(s, tc);
	tc = tcase_create("parser");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, server_first_rejects);
	tcase_add_test(tc, server_final_rejects);
	tcase_add_test(tc, client_rejects);
	tcase_add_test(tc, truncation);
	tcase_add_test(tc, fuzz);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	tc = tcase_create("timing");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, timing_sanity);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(scram_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
