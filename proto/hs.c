/*
 * hs.c - handshake messages: a list of TLV items (be16 tag, be16 length,
 * value) carried as the payload of GREETING, HELLO, JOIN, WELCOME, REJECT and
 * ABORT frames.
 *
 * Unknown tags are skipped so that later versions can add items without a
 * version change.  Known tags with a wrong length, strings with NUL or
 * control bytes, and truncated items are errors.
 */
#include <errno.h>
#include <string.h>

#include "proto.h"

static int	 hs_put(uint8_t *, size_t, size_t *, uint16_t, const void *,
		    size_t);
static int	 hs_put_str(uint8_t *, size_t, size_t *, uint16_t,
		    const char *);
static int	 hs_get_str(char *, size_t, const uint8_t *, size_t);
static int	 hs_str_is_valid(const uint8_t *, size_t);

static int
hs_put(uint8_t *buf, size_t buflen, size_t *off, uint16_t tag,
    const void *val, size_t len)
{
	if (len > 0xffff || buflen - *off < 4 + len)
		return -ENOSPC;
	put_be16(buf + *off, tag);
	put_be16(buf + *off + 2, (uint16_t)len);
	if (len > 0)
		memcpy(buf + *off + 4, val, len);
	*off += 4 + len;
	return 0;
}

static int
hs_put_str(uint8_t *buf, size_t buflen, size_t *off, uint16_t tag,
    const char *s)
{
	return hs_put(buf, buflen, off, tag, s, strlen(s));
}

static int
hs_put_u16(uint8_t *buf, size_t buflen, size_t *off, uint16_t tag,
    uint16_t v)
{
	uint8_t	 b[2];

	put_be16(b, v);
	return hs_put(buf, buflen, off, tag, b, sizeof(b));
}

/*
 * Encode every item of m that is marked present (bit 1 << tag in
 * m->present; features and requirements are written when non-empty).
 * Returns the number of bytes written or -ENOSPC.
 */
ssize_t
hs_encode(uint8_t *buf, size_t buflen, const struct hs_msg *m)
{
	size_t		 off = 0;
	unsigned int	 i;
	uint8_t		 w[4];
	int		 r = 0;

#define HAS(t)	(m->present & (1u << (t)))
	if (HAS(HS_T_VERSION_MIN))
		r |= hs_put_u16(buf, buflen, &off, HS_T_VERSION_MIN,
		    m->version_min);
	if (HAS(HS_T_VERSION_MAX))
		r |= hs_put_u16(buf, buflen, &off, HS_T_VERSION_MAX,
		    m->version_max);
	if (HAS(HS_T_VERSION))
		r |= hs_put_u16(buf, buflen, &off, HS_T_VERSION, m->version);
	for (i = 0; i < m->nfeatures; i++)
		r |= hs_put_str(buf, buflen, &off, HS_T_FEATURE,
		    m->features[i]);
	for (i = 0; i < m->nrequire; i++)
		r |= hs_put_str(buf, buflen, &off, HS_T_REQUIRE,
		    m->require[i]);
	if (HAS(HS_T_SESSION))
		r |= hs_put_str(buf, buflen, &off, HS_T_SESSION, m->session);
	if (HAS(HS_T_CHANNELS))
		r |= hs_put_u16(buf, buflen, &off, HS_T_CHANNELS,
		    m->channels);
	if (HAS(HS_T_TOKEN))
		r |= hs_put(buf, buflen, &off, HS_T_TOKEN, m->token,
		    LINK_TOKEN_LEN);
	if (HAS(HS_T_CHANNEL))
		r |= hs_put_u16(buf, buflen, &off, HS_T_CHANNEL, m->channel);
	if (HAS(HS_T_WINDOW)) {
		put_be32(w, m->window);
		r |= hs_put(buf, buflen, &off, HS_T_WINDOW, w, sizeof(w));
	}
	if (HAS(HS_T_ERRCLASS))
		r |= hs_put_str(buf, buflen, &off, HS_T_ERRCLASS, m->errclass);
	if (HAS(HS_T_ERRDESC))
		r |= hs_put_str(buf, buflen, &off, HS_T_ERRDESC, m->errdesc);
	if (HAS(HS_T_SOFTWARE))
		r |= hs_put_str(buf, buflen, &off, HS_T_SOFTWARE, m->software);
	if (HAS(HS_T_AUTH))
		r |= hs_put_str(buf, buflen, &off, HS_T_AUTH, m->auth);
#undef HAS
	if (r != 0)
		return -ENOSPC;
	return (ssize_t)off;
}

/* Printable ASCII only: peer strings end up in logs and JSON. */
static int
hs_str_is_valid(const uint8_t *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return 0;
	return 1;
}

static int
hs_get_str(char *dst, size_t dstlen, const uint8_t *p, size_t len)
{
	if (len >= dstlen || !hs_str_is_valid(p, len))
		return -EINVAL;
	memcpy(dst, p, len);
	dst[len] = '\0';
	return 0;
}

/*
 * Decode a TLV list.  Returns 0, or -EPROTO for a malformed list (the
 * message is then unusable as a whole).  Strings longer than their field,
 * more than PROTO_MAX_FEATURES features, and wrong fixed lengths are
 * malformed.
 */
int
hs_decode(const uint8_t *buf, size_t len, struct hs_msg *ret)
{
	struct hs_msg	*m = ret;
	size_t		 off = 0;
	uint16_t	 tag, l;
	const uint8_t	*v;

	memset(m, 0, sizeof(*m));
	while (off < len) {
		if (len - off < 4)
			return -EPROTO;
		tag = get_be16(buf + off);
		l = get_be16(buf + off + 2);
		if (len - off - 4 < l)
			return -EPROTO;
		v = buf + off + 4;
		off += 4 + (size_t)l;
		switch (tag) {
		case HS_T_VERSION_MIN:
		case HS_T_VERSION_MAX:
		case HS_T_VERSION:
		case HS_T_CHANNELS:
		case HS_T_CHANNEL:
			if (l != 2)
				return -EPROTO;
			if (tag == HS_T_VERSION_MIN)
				m->version_min = get_be16(v);
			else if (tag == HS_T_VERSION_MAX)
				m->version_max = get_be16(v);
			else if (tag == HS_T_VERSION)
				m->version = get_be16(v);
			else if (tag == HS_T_CHANNELS)
				m->channels = get_be16(v);
			else
				m->channel = get_be16(v);
			break;
		case HS_T_WINDOW:
			if (l != 4)
				return -EPROTO;
			m->window = get_be32(v);
			break;
		case HS_T_FEATURE:
			if (m->nfeatures >= PROTO_MAX_FEATURES || l == 0 ||
			    hs_get_str(m->features[m->nfeatures],
			    PROTO_FEATURE_MAX + 1, v, l) != 0)
				return -EPROTO;
			m->nfeatures++;
			break;
		case HS_T_REQUIRE:
			if (m->nrequire >= PROTO_MAX_FEATURES || l == 0 ||
			    hs_get_str(m->require[m->nrequire],
			    PROTO_FEATURE_MAX + 1, v, l) != 0)
				return -EPROTO;
			m->nrequire++;
			break;
		case HS_T_SESSION:
			if (hs_get_str(m->session, sizeof(m->session), v, l) != 0)
				return -EPROTO;
			break;
		case HS_T_TOKEN:
			if (l != LINK_TOKEN_LEN)
				return -EPROTO;
			memcpy(m->token, v, LINK_TOKEN_LEN);
			m->has_token = 1;
			break;
		case HS_T_ERRCLASS:
			if (hs_get_str(m->errclass, sizeof(m->errclass), v, l) != 0)
				return -EPROTO;
			break;
		case HS_T_ERRDESC:
			if (hs_get_str(m->errdesc, sizeof(m->errdesc), v, l) != 0)
				return -EPROTO;
			break;
		case HS_T_SOFTWARE:
			if (hs_get_str(m->software, sizeof(m->software), v, l) != 0)
				return -EPROTO;
			break;
		case HS_T_AUTH:
			if (hs_get_str(m->auth, sizeof(m->auth), v, l) != 0)
				return -EPROTO;
			break;
		default:
			/* Unknown item: skipped, by design. */
			continue;
		}
		m->present |= 1u << tag;
	}
	return 0;
}

/*
 * Pick the highest version both ranges contain.  Returns 0 and sets
 * *ret_version, or -ENOTSUP if the ranges do not overlap (or are empty).
 */
int
hs_select_version(uint16_t lmin, uint16_t lmax, uint16_t pmin, uint16_t pmax,
    uint16_t *ret_version)
{
	uint16_t	 hi, lo;

	if (lmin > lmax || pmin > pmax || pmin == 0)
		return -ENOTSUP;
	hi = lmax < pmax ? lmax : pmax;
	lo = lmin > pmin ? lmin : pmin;
	if (hi < lo)
		return -ENOTSUP;
	*ret_version = hi;
	return 0;
}

int
hs_has_feature(const struct hs_msg *m, const char *name)
{
	unsigned int	 i;

	for (i = 0; i < m->nfeatures; i++)
		if (strcmp(m->features[i], name) == 0)
			return 1;
	return 0;
}

static int
hs_add_name(char list[][PROTO_FEATURE_MAX + 1], unsigned int *n,
    const char *name)
{
	size_t	 len = strlen(name);

	if (*n >= PROTO_MAX_FEATURES || len == 0 || len > PROTO_FEATURE_MAX ||
	    !hs_str_is_valid((const uint8_t *)name, len))
		return -EINVAL;
	memcpy(list[*n], name, len + 1);
	(*n)++;
	return 0;
}

int
hs_add_feature(struct hs_msg *m, const char *name)
{
	return hs_add_name(m->features, &m->nfeatures, name);
}

int
hs_add_require(struct hs_msg *m, const char *name)
{
	return hs_add_name(m->require, &m->nrequire, name);
}
