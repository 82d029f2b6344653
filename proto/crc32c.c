/*
 * crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of plaintext links (feature "crc32c", migrelay-protocol(7)).
 *
 * x86-64 CPUs with SSE4.2 compute it with the crc32 instruction, 8 bytes
 * at a time (several GB/s per core); elsewhere a table-driven version
 * processes 8 bytes per step.  Both give the same result; the choice is
 * made once.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

#define CRC32C_POLY	0x82F63B78u

static uint32_t	 crc_table[8][256];
static int	 crc_ready;
static int	 crc_hw;

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
	uint64_t	 w, c64 = c;

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
