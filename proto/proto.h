/*
 * proto.h - wire formats of migrelay: the relay-to-relay link protocol
 * (frames and handshake messages), migration URIs and session ids.
 *
 * This directory depends on libc (and json-c for ctl_json.c) only.  Nothing
 * here logs or allocates without a caller-visible bound; decoders return
 * -errno style errors and never trust a length they have not checked.
 *
 * The normative description of the link protocol is migrelay-protocol(7).
 */
#ifndef MIGRELAY_PROTO_H
#define MIGRELAY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Limits and protocol constants. */
#define PROTO_MAGIC		"\x89MGRLY\r\n"	/* 8 bytes, sent first by both sides */
#define PROTO_MAGIC_LEN		8
#define PROTO_VERSION_MIN	1
#define PROTO_VERSION_MAX	1
#define FRAME_HDR_LEN		20
#define FRAME_MAX_PAYLOAD	(1024 * 1024)	/* checked before any allocation */
#define HS_MAX_PAYLOAD		4096		/* handshake messages are small */
#define LINK_TOKEN_LEN		32
#define SESSION_ID_MAX		64
#define PROTO_MAX_CHANNELS	64
#define PROTO_MAX_FEATURES	32
#define PROTO_FEATURE_MAX	64		/* bytes of one feature name */
#define PROTO_ERRDESC_MAX	256

/*
 * Frame types.  Append only; never renumber.  A receiver that meets an
 * unknown type with FRAME_T_IGNORABLE set skips the frame; any other unknown
 * type is a protocol error.
 */
enum frame_type {
	FRAME_GREETING	= 0x01,	/* accepting side: versions, features */
	FRAME_HELLO	= 0x02,	/* connecting side: open a link for a session */
	FRAME_JOIN	= 0x03,	/* connecting side: add a channel to a link */
	FRAME_WELCOME	= 0x04,	/* accepting side: HELLO or JOIN accepted */
	FRAME_REJECT	= 0x05,	/* either side: refused, with class and text */
	FRAME_AUTH	= 0x06,	/* either side: a SCRAM message (HS_T_AUTH) */
	FRAME_OPEN	= 0x10,	/* source relay: a new QEMU connection (stream) */
	FRAME_DATA	= 0x11,	/* payload bytes of one stream direction */
	FRAME_FIN	= 0x12,	/* end of one stream direction (half-close) */
	FRAME_ACK	= 0x13,	/* bytes delivered to the local QEMU (credit) */
	FRAME_ABORT	= 0x14,	/* session failed or cancelled; TLV error */
	FRAME_CLOSE	= 0x15,	/* session completed on the sender's side */
	FRAME_T_IGNORABLE = 0x80,
	FRAME_PING	= 0x81,	/* heartbeat on an idle channel (ignorable) */
};

/* Frame flags. */
#define FRAME_F_OPEN_NOW	0x01	/* OPEN: connect the leg before data */
#define FRAME_F_ACK_FIN		0x01	/* ACK: the FIN was delivered too */
#define FRAME_F_CRC		0x80	/* any type: payload ends with CRC-32C */
#define FRAME_CRC_LEN		4	/* be32 CRC-32C of header and payload */

/* Decoded frame header (wire: type, flags, be16 0, be32 stream, be64 seq, be32 len). */
struct frame_hdr {
	uint8_t		 type;
	uint8_t		 flags;
	uint32_t	 stream;
	uint64_t	 seq;
	uint32_t	 len;
};

/* Handshake TLV tags (u16 tag, u16 length, value).  Unknown tags are ignored. */
enum hs_tag {
	HS_T_VERSION_MIN = 1,	/* u16 */
	HS_T_VERSION_MAX = 2,	/* u16 */
	HS_T_VERSION	 = 3,	/* u16: the version the connecting side selected */
	HS_T_FEATURE	 = 4,	/* string, repeatable: offered / selected feature */
	HS_T_SESSION	 = 5,	/* string: session id */
	HS_T_CHANNELS	 = 6,	/* u16: number of channels of the link */
	HS_T_TOKEN	 = 7,	/* LINK_TOKEN_LEN bytes */
	HS_T_CHANNEL	 = 8,	/* u16: index of a joining channel */
	HS_T_ERRCLASS	 = 9,	/* string */
	HS_T_ERRDESC	 = 10,	/* string */
	HS_T_REQUIRE	 = 11,	/* string, repeatable: feature the peer must have */
	HS_T_SOFTWARE	 = 12,	/* string: implementation name and version */
	HS_T_WINDOW	 = 13,	/* u32: sender's receive window per stream, bytes */
	HS_T_AUTH	 = 14,	/* string: a SCRAM-SHA-256 message */
};
#define HS_AUTH_MAX	1024

/* A decoded handshake message (any of GREETING..REJECT). */
struct hs_msg {
	uint16_t	 version_min, version_max, version;
	unsigned int	 nfeatures;
	char		 features[PROTO_MAX_FEATURES][PROTO_FEATURE_MAX + 1];
	unsigned int	 nrequire;
	char		 require[PROTO_MAX_FEATURES][PROTO_FEATURE_MAX + 1];
	char		 session[SESSION_ID_MAX + 1];
	uint16_t	 channels;
	uint16_t	 channel;
	int		 has_token;
	uint8_t		 token[LINK_TOKEN_LEN];
	uint32_t	 window;
	char		 errclass[32];
	char		 errdesc[PROTO_ERRDESC_MAX + 1];
	char		 software[64];
	char		 auth[HS_AUTH_MAX + 1];
	unsigned int	 present;	/* bit (1 << tag) for each tag seen */
};

/* crc32c.c */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
int	 crc32c_use_hw(int on);

/* frame.c */
void	 frame_hdr_encode(uint8_t *buf, const struct frame_hdr *);
int	 frame_hdr_decode(const uint8_t *buf, size_t len, struct frame_hdr *);
int	 frame_type_is_known(uint8_t type);
const char *frame_type_name(uint8_t type);

/* hs.c */
ssize_t	 hs_encode(uint8_t *buf, size_t buflen, const struct hs_msg *);
int	 hs_decode(const uint8_t *buf, size_t len, struct hs_msg *);
int	 hs_select_version(uint16_t lmin, uint16_t lmax, uint16_t pmin,
	    uint16_t pmax, uint16_t *ret_version);
int	 hs_has_feature(const struct hs_msg *, const char *);
int	 hs_add_feature(struct hs_msg *, const char *);
int	 hs_add_require(struct hs_msg *, const char *);

/* uri.c */
enum uri_kind { URI_UNIX = 1, URI_TCP = 2 };
struct mig_uri {
	enum uri_kind	 kind;
	char		 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char		 host[256];
	char		 port[16];
};
int	 uri_parse(const char *, struct mig_uri *, const char **errstr);
int	 hostport_parse(const char *, char *host, size_t hostlen, char *port,
	    size_t portlen, const char **errstr);
int	 uri_format(const struct mig_uri *, char *buf, size_t len);
int	 session_id_is_valid(const char *);

/* Byte order helpers. */
static inline void
put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t
get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t
get_be64(const uint8_t *p)
{
	return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

#endif /* MIGRELAY_PROTO_H */
