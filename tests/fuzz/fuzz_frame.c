/*
 * fuzz_frame.c - libFuzzer harness for the link protocol's framing: the
 * frame header decoder on arbitrary bytes, and a reassembler that cuts a
 * byte stream from a peer relay into frames with the daemon's rules
 * (channel_parse() and channel_read_cb() in daemon/channel.c): the 8-byte
 * magic first, then 20-byte headers checked by frame_hdr_decode() before
 * the payload is allocated, handshake payloads through hs_decode(), and
 * only handshake frames (GREETING..AUTH, ABORT) before the handshake ended.
 *
 * The input is the byte stream.  It is fed to the reassembler in one piece,
 * one byte at a time and in chunks whose sizes come from the stream itself;
 * every way must yield the same frames and the same verdict.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define RBUF_SIZE	256	/* small, to exercise the compaction paths */

/* Frames whose payload is a TLV list limited to HS_MAX_PAYLOAD. */
#define IS_HS_FRAME(t)	((t) >= FRAME_GREETING && (t) <= FRAME_AUTH)

enum rx_verdict {
	RX_OK = 0,		/* every byte consumed, maybe mid-frame */
	RX_BAD_MAGIC,
	RX_TOO_LARGE,
	RX_BAD_TYPE,
	RX_EARLY_FRAME,		/* data frame before the handshake ended */
};

struct rx {
	uint8_t		 rbuf[RBUF_SIZE];
	size_t		 rlen, rpos;
	int		 magic_seen;
	int		 up;
	enum rx_verdict	 verdict;
	/* Frame whose payload is still arriving. */
	struct frame_hdr fh;
	uint8_t		*fdata;
	size_t		 foff;
	/* What came out: a count and a running hash of every frame. */
	unsigned int	 nframes;
	uint64_t	 digest;
};

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static uint64_t
fnv(uint64_t h, const void *p, size_t len)
{
	const uint8_t	*b = p;
	size_t		 i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
fnv_u64(uint64_t h, uint64_t v)
{
	uint8_t	 b[8];

	put_be64(b, v);
	return fnv(h, b, sizeof(b));
}

/* One complete frame (payload owned by the caller). */
static void
rx_dispatch(struct rx *rx, const struct frame_hdr *h, const uint8_t *data)
{
	struct hs_msg	 m;
	uint16_t	 v;
	int		 r = 1;

	if (IS_HS_FRAME(h->type)) {
		if (h->len > HS_MAX_PAYLOAD)
			abort();	/* frame_hdr_decode() let it through */
		r = hs_decode(data, h->len, &m);
		if (r != 0 && r != -EPROTO)
			abort();
		if (r == 0 && (h->type == FRAME_GREETING ||
		    h->type == FRAME_HELLO))
			(void)hs_select_version(PROTO_VERSION_MIN,
			    PROTO_VERSION_MAX, m.version_min, m.version_max,
			    &v);
		if (r == 0 && (h->type == FRAME_HELLO ||
		    h->type == FRAME_JOIN || h->type == FRAME_WELCOME))
			rx->up = 1;
	} else if (h->type == FRAME_ABORT) {
		r = hs_decode(data, h->len, &m);
		if (r != 0 && r != -EPROTO)
			abort();
	}
	rx->nframes++;
	rx->digest = fnv_u64(rx->digest, h->type);
	rx->digest = fnv_u64(rx->digest, h->flags);
	rx->digest = fnv_u64(rx->digest, h->stream);
	rx->digest = fnv_u64(rx->digest, h->seq);
	rx->digest = fnv_u64(rx->digest, h->len);
	rx->digest = fnv_u64(rx->digest, (uint64_t)r);
	rx->digest = fnv(rx->digest, data, h->len);
}

/* Whole frames out of rbuf, as channel_parse() does. */
static void
rx_parse(struct rx *rx)
{
	struct frame_hdr	 h, g;
	uint8_t			 enc[FRAME_HDR_LEN];
	const uint8_t		*p;
	uint8_t			*data;
	size_t			 avail;
	int			 r;

	while (rx->verdict == RX_OK) {
		avail = rx->rlen - rx->rpos;
		p = rx->rbuf + rx->rpos;
		if (!rx->magic_seen) {
			if (avail < PROTO_MAGIC_LEN)
				return;
			if (memcmp(p, PROTO_MAGIC, PROTO_MAGIC_LEN) != 0) {
				rx->verdict = RX_BAD_MAGIC;
				return;
			}
			rx->magic_seen = 1;
			rx->rpos += PROTO_MAGIC_LEN;
			continue;
		}
		memset(&h, 0xa5, sizeof(h));
		memset(&g, 0xa5, sizeof(g));
		r = frame_hdr_decode(p, avail, &h);
		if (r != 0 && memcmp(&g, &h, sizeof(h)) != 0)
			abort();	/* *h must be untouched on failure */
		if (r == -EAGAIN) {
			if (avail >= FRAME_HDR_LEN)
				abort();
			return;
		}
		if (r == -EMSGSIZE) {
			rx->verdict = RX_TOO_LARGE;
			return;
		}
		if (r == -EPROTO) {
			rx->verdict = RX_BAD_TYPE;
			return;
		}
		if (r != 0)
			abort();
		/* The header must survive a round trip (reserved bytes aside). */
		frame_hdr_encode(enc, &h);
		if (enc[0] != p[0] || enc[1] != p[1] || enc[2] != 0 ||
		    enc[3] != 0 || memcmp(enc + 4, p + 4, FRAME_HDR_LEN - 4) != 0)
			abort();
		if (h.len > FRAME_MAX_PAYLOAD)
			abort();
		if (!frame_type_is_known(h.type) &&
		    !(h.type & FRAME_T_IGNORABLE))
			abort();
		if (frame_type_name(h.type) == NULL)
			abort();
		if (!rx->up && h.type != FRAME_GREETING &&
		    h.type != FRAME_HELLO && h.type != FRAME_JOIN &&
		    h.type != FRAME_WELCOME && h.type != FRAME_REJECT &&
		    h.type != FRAME_ABORT && h.type != FRAME_AUTH) {
			rx->verdict = RX_EARLY_FRAME;
			return;
		}
		/* Checked above, so this allocation is bounded. */
		if ((data = malloc(h.len > 0 ? h.len : 1)) == NULL)
			abort();
		rx->rpos += FRAME_HDR_LEN;
		avail -= FRAME_HDR_LEN;
		if (avail >= h.len) {
			memcpy(data, rx->rbuf + rx->rpos, h.len);
			rx->rpos += h.len;
			rx_dispatch(rx, &h, data);
			free(data);
			continue;
		}
		/* Partial payload: the rest goes straight into the frame. */
		memcpy(data, rx->rbuf + rx->rpos, avail);
		rx->rpos = rx->rlen = 0;
		rx->fh = h;
		rx->fdata = data;
		rx->foff = avail;
		return;
	}
}

/* Bytes as they come out of one recv(), as channel_read_cb() takes them. */
static void
rx_feed(struct rx *rx, const uint8_t *buf, size_t len)
{
	size_t	 n, need;

	while (len > 0 && rx->verdict == RX_OK) {
		if (rx->fdata != NULL) {
			need = rx->fh.len - rx->foff;
			n = len < need ? len : need;
			memcpy(rx->fdata + rx->foff, buf, n);
			rx->foff += n;
			buf += n;
			len -= n;
			if (rx->foff < rx->fh.len)
				return;
			rx_dispatch(rx, &rx->fh, rx->fdata);
			free(rx->fdata);
			rx->fdata = NULL;
			rx->foff = 0;
			continue;
		}
		if (rx->rpos > 0) {
			memmove(rx->rbuf, rx->rbuf + rx->rpos,
			    rx->rlen - rx->rpos);
			rx->rlen -= rx->rpos;
			rx->rpos = 0;
		}
		if (rx->rlen == RBUF_SIZE)
			abort();	/* the parser must always make room */
		n = RBUF_SIZE - rx->rlen;
		if (n > len)
			n = len;
		memcpy(rx->rbuf + rx->rlen, buf, n);
		rx->rlen += n;
		buf += n;
		len -= n;
		rx_parse(rx);
	}
}

static void
rx_init(struct rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->digest = 0xcbf29ce484222325ULL;
}

static void
rx_done(struct rx *rx)
{
	free(rx->fdata);
	rx->fdata = NULL;
}

static void
rx_compare(const struct rx *a, const struct rx *b)
{
	if (a->verdict != b->verdict || a->nframes != b->nframes ||
	    a->digest != b->digest || a->magic_seen != b->magic_seen ||
	    a->up != b->up) {
		fprintf(stderr, "fuzz_frame: chunking changed the result: "
		    "verdict %d/%d, frames %u/%u\n", a->verdict, b->verdict,
		    a->nframes, b->nframes);
		abort();
	}
}

/* The header decoder alone, on a prefix of every length. */
static void
hdr_check(const uint8_t *data, size_t size)
{
	struct frame_hdr	 h, g;
	size_t			 i;
	int			 r;

	for (i = 0; i <= size && i <= FRAME_HDR_LEN + 1; i++) {
		memset(&h, 0x5a, sizeof(h));
		memset(&g, 0x5a, sizeof(g));
		r = frame_hdr_decode(data, i, &h);
		if (i < FRAME_HDR_LEN && r != -EAGAIN)
			abort();
		if (r != 0 && r != -EAGAIN && r != -EMSGSIZE && r != -EPROTO)
			abort();
		if (r != 0 && memcmp(&g, &h, sizeof(h)) != 0)
			abort();
		if (r == 0 && (h.len > FRAME_MAX_PAYLOAD ||
		    (IS_HS_FRAME(h.type) && h.len > HS_MAX_PAYLOAD)))
			abort();
	}
	(void)frame_type_name(size > 0 ? data[0] : 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rx	*whole, *bytes, *chunks;
	size_t		 off, n;

	hdr_check(data, size);

	if ((whole = malloc(3 * sizeof(*whole))) == NULL)
		abort();
	bytes = whole + 1;
	chunks = whole + 2;
	rx_init(whole);
	rx_init(bytes);
	rx_init(chunks);

	rx_feed(whole, data, size);

	for (off = 0; off < size; off++)
		rx_feed(bytes, data + off, 1);

	/* Chunk sizes 1..511 taken from the stream, to hit every boundary. */
	for (off = 0; off < size; off += n) {
		n = 1 + (size_t)data[off] * 2;
		if (n > size - off)
			n = size - off;
		rx_feed(chunks, data + off, n);
	}

	rx_compare(whole, bytes);
	rx_compare(whole, chunks);
	rx_done(whole);
	rx_done(bytes);
	rx_done(chunks);
	free(whole);
	return 0;
}
