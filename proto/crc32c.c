/*
 * crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of plaintext links (feature "crc32c", migrelay-protocol(7)).
 *
 * x86-64 CPUs with SSE4.2 compute it with the crc32 instruction, 8 bytes
 * at a time; elsewhere a table-driven version processes 8 bytes per step.
 * Both give the same result; the choice is made once.
 *
 * The instruction has a latency of about three cycles but can start one
 * per cycle, so long buffers are cut into runs of three lanes of LANE
 * bytes computed side by side, then joined: the CRC register is linear,
 * so crc(A|B) = shift(crc(A), |B|) ^ crc0(B), where crc0 starts from a
 * zero register and shift() multiplies by x^(8|B|) modulo the polynomial
 * (a table made once for |B| = LANE).  About three times faster.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

#define CRC32C_POLY	0x82F63B78u

#define LANE		4096

static uint32_t	 crc_table[8][256];
static uint32_t	 lane_shift[4][256];	/* register times x^(8 LANE) */
static int	 crc_ready;
static int	 crc_hw;

static uint32_t
shift_lane(uint32_t c)
{
	return lane_shift[0][c & 0xff] ^ lane_shift[1][(c >> 8) & 0xff] ^
	    lane_shift[2][(c >> 16) & 0xff] ^ lane_shift[3][c >> 24];
}

static void
crc32c_init(void)
{
	uint32_t	 c;
	unsigned int	 i, j;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^
			    crc_table[0][crc_table[j - 1][i] & 0xff];
	/* Where LANE zero bytes take each single-bit register. */
	{
		uint32_t	 bit[32];
		unsigned int	 b, k, v;

		for (b = 0; b < 32; b++) {
			c = 1u << b;
			for (k = 0; k < LANE; k++)
				c = (c >> 8) ^ crc_table[0][c & 0xff];
			bit[b] = c;
		}
		for (k = 0; k < 4; k++)
			for (v = 0; v < 256; v++) {
				c = 0;
				for (b = 0; b < 8; b++)
					if (v & (1u << b))
						c ^= bit[8 * k + b];
				lane_shift[k][v] = c;
			}
	}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
	crc_ready = 1;
}

static uint32_t
crc32c_sw(uint32_t c, const uint8_t *p, size_t n)
{
	uint64_t	 w;

	while (n >= 8) {
		memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		w = __builtin_bswap64(w);
#endif
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^
		    crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^
		    crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t c, const uint8_t *p, size_t n)
{
	uint64_t	 w, a, b, d, c64 = c;
	const uint8_t	*pb, *pd;
	size_t		 i;

	while (n >= 3 * LANE) {
		a = c64;
		b = d = 0;
		pb = p + LANE;
		pd = p + 2 * LANE;
		for (i = 0; i < LANE; i += 8) {
			memcpy(&w, p + i, 8);
			a = __builtin_ia32_crc32di(a, w);
			memcpy(&w, pb + i, 8);
			b = __builtin_ia32_crc32di(b, w);
			memcpy(&w, pd + i, 8);
			d = __builtin_ia32_crc32di(d, w);
		}
		c64 = shift_lane(shift_lane((uint32_t)a) ^ (uint32_t)b) ^
		    (uint32_t)d;
		p += 3 * LANE;
		n -= 3 * LANE;
	}
	while (n >= 8) {
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n-- > 0)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

/*
 * Continue a CRC-32C over n bytes: crc32c(0, ...) starts one, and
 * crc32c(crc32c(0, a), b) equals the CRC of a followed by b.
 */
uint32_t
crc32c(uint32_t crc, const void *buf, size_t n)
{
	uint32_t	 c = ~crc;

	if (!crc_ready)
		crc32c_init();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (crc_hw)
		return ~crc32c_hw(c, buf, n);
#endif
	return ~crc32c_sw(c, buf, n);
}

/* For tests: force the table version (0) or the CPU's (1) if it has one. */
int
crc32c_use_hw(int on)
{
	if (!crc_ready)
		crc32c_init();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	crc_hw = on && __builtin_cpu_supports("sse4.2");
#else
	(void)on;
#endif
	return crc_hw;
}
