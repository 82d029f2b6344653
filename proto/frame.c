/*
 * frame.c - the fixed 20-byte frame header of the link protocol.
 *
 * Every message between two relays, handshake included, is a frame:
 *
 *	u8 type, u8 flags, be16 reserved (sent 0, ignored), be32 stream,
 *	be64 seq, be32 len, then len bytes of payload.
 *
 * The decoder checks the length against FRAME_MAX_PAYLOAD before the caller
 * allocates anything, and classifies the type so that the caller can skip
 * unknown frames marked ignorable.
 */
#include <errno.h>
#include <string.h>

#include "proto.h"

void
frame_hdr_encode(uint8_t *buf, const struct frame_hdr *h)
{
	buf[0] = h->type;
	buf[1] = h->flags;
	buf[2] = 0;
	buf[3] = 0;
	put_be32(buf + 4, h->stream);
	put_be64(buf + 8, h->seq);
	put_be32(buf + 16, h->len);
}

/*
 * Decode a header from buf (len bytes available).  Returns 0 on success,
 * -EAGAIN if fewer than FRAME_HDR_LEN bytes are available, -EMSGSIZE if the
 * payload length exceeds FRAME_MAX_PAYLOAD (or HS_MAX_PAYLOAD for a
 * handshake frame), -EPROTO for an unknown type that is not ignorable.
 * On failure *h is left untouched.
 */
int
frame_hdr_decode(const uint8_t *buf, size_t len, struct frame_hdr *h)
{
	struct frame_hdr	 t;

	if (len < FRAME_HDR_LEN)
		return -EAGAIN;
	t.type = buf[0];
	t.flags = buf[1];
	t.stream = get_be32(buf + 4);
	t.seq = get_be64(buf + 8);
	t.len = get_be32(buf + 16);
	if (t.len > FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (t.type >= FRAME_GREETING && t.type <= FRAME_AUTH &&
	    t.len > HS_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (!frame_type_is_known(t.type) && !(t.type & FRAME_T_IGNORABLE))
		return -EPROTO;
	*h = t;
	return 0;
}

int
frame_type_is_known(uint8_t type)
{
	switch (type) {
	case FRAME_GREETING:
	case FRAME_HELLO:
	case FRAME_JOIN:
	case FRAME_WELCOME:
	case FRAME_REJECT:
	case FRAME_AUTH:
	case FRAME_OPEN:
	case FRAME_DATA:
	case FRAME_FIN:
	case FRAME_ACK:
	case FRAME_ABORT:
	case FRAME_CLOSE:
		return 1;
	default:
		return 0;
	}
}

const char *
frame_type_name(uint8_t type)
{
	switch (type) {
	case FRAME_GREETING:
		return "GREETING";
	case FRAME_HELLO:
		return "HELLO";
	case FRAME_JOIN:
		return "JOIN";
	case FRAME_WELCOME:
		return "WELCOME";
	case FRAME_REJECT:
		return "REJECT";
	case FRAME_AUTH:
		return "AUTH";
	case FRAME_OPEN:
		return "OPEN";
	case FRAME_DATA:
		return "DATA";
	case FRAME_FIN:
		return "FIN";
	case FRAME_ACK:
		return "ACK";
	case FRAME_ABORT:
		return "ABORT";
	case FRAME_CLOSE:
		return "CLOSE";
	case FRAME_PING:
		return "PING";
	default:
		return "unknown";
	}
}
