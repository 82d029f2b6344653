/*
 * crcspeed.c - throughput of migrelay's CRC-32C (proto/crc32c.c), the
 * CPU's instruction path and the table path, over 256 KiB buffers (the
 * relay's largest DATA frame).
 *
 *   cc -O2 -Iproto bench/tools/crcspeed.c proto/crc32c.c -o /tmp/crcspeed
 *   /tmp/crcspeed
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "proto.h"

#define BUF	(256 * 1024)
#define ROUNDS	4096

static double
gbps(const uint8_t *b)
{
	struct timespec	 t0, t1;
	volatile uint32_t sink = 0;
	int		 i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < ROUNDS; i++)
		sink ^= crc32c(0, b, BUF);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	(void)sink;
	return (double)ROUNDS * BUF / ((t1.tv_sec - t0.tv_sec) +
	    (t1.tv_nsec - t0.tv_nsec) / 1e9) / 1e9;
}

int
main(void)
{
	uint8_t	*b = malloc(BUF);
	size_t	 i;

	if (b == NULL)
		return 1;
	for (i = 0; i < BUF; i++)
		b[i] = (uint8_t)(i * 7);
	if (crc32c_use_hw(1))
		printf("crc32 instruction: %.2f GB/s\n", gbps(b));
	else
		printf("crc32 instruction: not available\n");
	crc32c_use_hw(0);
	printf("table:             %.2f GB/s\n", gbps(b));
	free(b);
	return 0;
}
