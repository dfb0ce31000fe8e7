/*
 * clock.h - the one clock of the agent: CLOCK_MONOTONIC in nanoseconds,
 * the clock of the rings and of the kernel's events, so that every time
 * the agent compares is on it.
 */
#ifndef LW_CLOCK_H
#define LW_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t lw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* LW_CLOCK_H */
