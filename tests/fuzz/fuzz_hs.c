/*
 * fuzz_hs.c - libFuzzer harness for handshake messages: hs_decode() on
 * arbitrary TLV lists (the payload of GREETING..AUTH and ABORT frames).
 * A message that decodes must encode again into no more bytes than it came
 * in, that encoding must decode to the same message, and encoding that
 * message must give the same bytes (the encoding is canonical).  The first
 * eight bytes also drive hs_select_version(), whose answer is checked
 * against the intersection of the two ranges.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_select(uint16_t lmin, uint16_t lmax, uint16_t pmin, uint16_t pmax)
{
	uint16_t	 v = 0xbeef, want = 0, lo, hi;
	int		 r, ok = 0;

	r = hs_select_version(lmin, lmax, pmin, pmax, &v);
	if (r != 0 && r != -ENOTSUP)
		abort();
	/* The highest version in both ranges; version 0 never exists. */
	if (lmin <= lmax && pmin <= pmax && pmin != 0) {
		lo = lmin > pmin ? lmin : pmin;
		hi = lmax < pmax ? lmax : pmax;
		if (lo <= hi) {
			want = hi;
			ok = 1;
		}
	}
	if (ok != (r == 0))
		abort();
	if (r == 0 && (v != want || v < lmin || v > lmax || v < pmin ||
	    v > pmax))
		abort();
	if (r != 0 && v != 0xbeef)
		abort();	/* untouched on failure */
}

/* A decoded message must obey the limits the decoder promises. */
static void
check_msg(const struct hs_msg *m)
{
	unsigned int	 i;

	if (m->nfeatures > PROTO_MAX_FEATURES ||
	    m->nrequire > PROTO_MAX_FEATURES)
		abort();
	for (i = 0; i < m->nfeatures; i++)
		if (strnlen(m->features[i], sizeof(m->features[i])) == 0 ||
		    strnlen(m->features[i], sizeof(m->features[i])) >
		    PROTO_FEATURE_MAX)
			abort();
	for (i = 0; i < m->nrequire; i++)
		if (strnlen(m->require[i], sizeof(m->require[i])) == 0 ||
		    strnlen(m->require[i], sizeof(m->require[i])) >
		    PROTO_FEATURE_MAX)
			abort();
	if (strnlen(m->session, sizeof(m->session)) >= sizeof(m->session) ||
	    strnlen(m->errclass, sizeof(m->errclass)) >= sizeof(m->errclass) ||
	    strnlen(m->errdesc, sizeof(m->errdesc)) >= sizeof(m->errdesc) ||
	    strnlen(m->software, sizeof(m->software)) >= sizeof(m->software) ||
	    strnlen(m->auth, sizeof(m->auth)) > HS_AUTH_MAX)
		abort();
	if (m->has_token != ((m->present & (1u << HS_T_TOKEN)) != 0))
		abort();
}

/*
 * Field by field: a repeated string item leaves the bytes of a longer
 * earlier value behind its terminator, which is not a difference.
 */
static int
msg_equal(const struct hs_msg *a, const struct hs_msg *b)
{
	unsigned int	 i;

	if (a->version_min != b->version_min ||
	    a->version_max != b->version_max || a->version != b->version ||
	    a->nfeatures != b->nfeatures || a->nrequire != b->nrequire ||
	    a->channels != b->channels || a->channel != b->channel ||
	    a->has_token != b->has_token || a->window != b->window ||
	    a->present != b->present ||
	    memcmp(a->token, b->token, sizeof(a->token)) != 0 ||
	    strcmp(a->session, b->session) != 0 ||
	    strcmp(a->errclass, b->errclass) != 0 ||
	    strcmp(a->errdesc, b->errdesc) != 0 ||
	    strcmp(a->software, b->software) != 0 ||
	    strcmp(a->auth, b->auth) != 0)
		return 0;
	for (i = 0; i < a->nfeatures; i++)
		if (strcmp(a->features[i], b->features[i]) != 0)
			return 0;
	for (i = 0; i < a->nrequire; i++)
		if (strcmp(a->require[i], b->require[i]) != 0)
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs_msg	*m, *m2, *m3;
	uint8_t		*copy, *enc, *enc2;
	ssize_t		 n, n2;
	size_t		 i;
	int		 r;

	if (size >= 8)
		check_select(get_be16(data), get_be16(data + 2),
		    get_be16(data + 4), get_be16(data + 6));

	/* Exact-size copies, so that ASan sees any overread. */
	if ((m = calloc(3, sizeof(*m))) == NULL ||
	    (copy = malloc(size > 0 ? size : 1)) == NULL ||
	    (enc = malloc(size > 0 ? size : 1)) == NULL ||
	    (enc2 = malloc(size > 0 ? size : 1)) == NULL)
		abort();
	m2 = m + 1;
	m3 = m + 2;
	if (size > 0)
		memcpy(copy, data, size);

	r = hs_decode(copy, size, m);
	if (r != 0 && r != -EPROTO)
		abort();
	if (r != 0)
		goto out;
	check_msg(m);

	/* Unknown items are dropped, duplicates collapse: never longer. */
	n = hs_encode(enc, size, m);
	if (n < 0 || (size_t)n > size)
		abort();
	if (hs_decode(enc, (size_t)n, m2) != 0)
		abort();
	if (!msg_equal(m, m2)) {
		fprintf(stderr, "fuzz_hs: decode(encode(m)) != m\n");
		abort();
	}
	n2 = hs_encode(enc2, (size_t)n, m2);
	if (n2 != n || memcmp(enc, enc2, (size_t)n) != 0) {
		fprintf(stderr, "fuzz_hs: encoding is not canonical\n");
		abort();
	}
	/* One byte short must be refused, not overflow. */
	if (n > 0 && hs_encode(enc2, (size_t)n - 1, m2) != -ENOSPC)
		abort();

	/* The feature helpers on what the peer sent. */
	for (i = 0; i < m->nfeatures; i++)
		if (!hs_has_feature(m, m->features[i]))
			abort();
	memset(m3, 0, sizeof(*m3));
	for (i = 0; i < m->nfeatures; i++)
		if (hs_add_feature(m3, m->features[i]) != 0)
			abort();
	for (i = 0; i < m->nrequire; i++)
		if (hs_add_require(m3, m->require[i]) != 0)
			abort();
	if (hs_add_feature(m3, "") != -EINVAL)
		abort();
	if (m->present & (1u << HS_T_VERSION_MIN | 1u << HS_T_VERSION_MAX))
		check_select(PROTO_VERSION_MIN, PROTO_VERSION_MAX,
		    m->version_min, m->version_max);
 out:
	free(enc2);
	free(enc);
	free(copy);
	free(m);
	return 0;
}
