/*
 * clock.h - cheap CLOCK_MONOTONIC timestamps for timing callbacks.
 *
 * Reading CLOCK_MONOTONIC through the vDSO costs about 23 ns here, rdtsc
 * about 10 ns (shared/field-notes.md).  Timing every callback with two clock
 * reads would cost ~50 ns per callback, so where the TSC is invariant
 * (constant_tsc, nonstop_tsc, and the kernel's clocksource is tsc) raw TSC
 * values are taken and converted to CLOCK_MONOTONIC nanoseconds:
 *
 *   ns = base_ns + ((tsc - base_tsc) * mult) >> shift
 *
 * The loop rebases (base_ns, base_tsc) from a fresh clock_gettime() after
 * every wait, once per iteration, so conversion error stays within the
 * iteration: CLOCK_MONOTONIC is slewed by NTP (at most 500 ppm), which over a
 * 10 ms iteration is at most 5 us.  `mult` is calibrated at start from a
 * short interval and refined from ever longer ones as the loop runs.
 *
 * Without an invariant TSC, or with LOOPWATCH_CLOCK=monotonic in the
 * environment, raw values are CLOCK_MONOTONIC nanoseconds and conversion is
 * the identity.
 */
#ifndef LW_CLOCK_H
#define LW_CLOCK_H

#include <stdint.h>
#include <time.h>

typedef struct lw__clock {
	int tsc; /* raw values are TSC ticks (else CLOCK_MONOTONIC ns) */
	uint32_t shift;
	uint64_t mult; /* ns per tick << shift */
	uint64_t base_raw, base_ns; /* the last rebase */
	uint64_t cal_raw, cal_ns; /* the calibration origin */
	/* Raw intervals longer than this (about 100 us) are timed with
	 * clock_gettime() instead: the rate's small error grows with the
	 * interval, and one more clock read is nothing next to 100 us. */
	uint64_t long_raw;
	uint64_t tight_raw; /* a sample bracket wider than this was preempted */
} lw__clock_t;

static inline uint64_t lw__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t lw__rdtsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
#else
	return 0;
#endif
}

/* A raw timestamp: TSC ticks or ns, per c->tsc. */
static inline uint64_t lw__clock_raw(const lw__clock_t *c)
{
	return c->tsc ? lw__rdtsc() : lw__mono_ns();
}

/* A raw interval in ns. */
static inline uint64_t lw__clock_delta_ns(const lw__clock_t *c, uint64_t d)
{
	if (!c->tsc)
		return d;
	return (uint64_t)(((unsigned __int128)d * c->mult) >> c->shift);
}

/* A raw timestamp as CLOCK_MONOTONIC ns.  Timestamps taken before the last
 * rebase (a callback that started before the wait) convert too. */
static inline uint64_t lw__clock_ns(const lw__clock_t *c, uint64_t raw)
{
	if (!c->tsc)
		return raw;
	if (raw >= c->base_raw)
		return c->base_ns + lw__clock_delta_ns(c, raw - c->base_raw);
	return c->base_ns - lw__clock_delta_ns(c, c->base_raw - raw);
}

/*
 * The ns from a timestamp taken earlier (`raw`, which was `raw_ns`) to now
 * (`*now_raw`).  A short interval is converted.  A long one reads the clock
 * and makes that reading the new conversion base, so the interval is exact
 * and whatever is converted after it (the next callback's start) agrees with
 * it; *now_raw becomes the raw value paired with that reading.
 */
static inline uint64_t lw__clock_since_ns(lw__clock_t *c, uint64_t raw,
					  uint64_t *now_raw, uint64_t raw_ns)
{
	uint64_t d = *now_raw - raw;
	if (c->tsc && d > c->long_raw) {
		uint64_t ns = lw__mono_ns();
		uint64_t after = lw__rdtsc();
		*now_raw += (after - *now_raw) / 2;
		c->base_raw = *now_raw;
		c->base_ns = ns;
		return ns > raw_ns ? ns - raw_ns : 0;
	}
	return lw__clock_delta_ns(c, d);
}

/* Set up: decide TSC or not, calibrate.  Never fails. */
void lw__clock_init(lw__clock_t *c);

/* Take a fresh (raw, ns) pair as the new base, refining mult on the way.
 * Returns the ns; *raw gets the raw value. */
uint64_t lw__clock_rebase(lw__clock_t *c, uint64_t *raw);

/* 1 if this process may use the TSC (checked once per process). */
int lw__clock_tsc_usable(void);

#endif /* LW_CLOCK_H */
