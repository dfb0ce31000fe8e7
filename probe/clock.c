/*
 * clock.c - deciding whether the TSC may be used, and calibrating it.
 * See clock.h for why.
 */
#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIFT 32
/* The first calibration spins this long; later rebases refine it. */
#define CAL_SPIN_NS 200000
/* Refine mult once the calibration interval is at least this long. */
#define REFINE_NS 500000000ull

static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;
static int tsc_ok;

/* The TSC stands in for CLOCK_MONOTONIC only if it ticks at a constant rate
 * through every power state and the kernel itself trusts it as its
 * clocksource (so it is synchronised across CPUs). */
static void check_tsc(void)
{
#if defined(__x86_64__)
	const char *env = getenv("LOOPWATCH_CLOCK");
	if (env != NULL && strcmp(env, "monotonic") == 0)
		return;

	char buf[64] = "";
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
			"current_clocksource",
			"re");
	if (f == NULL)
		return;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = 0;
	fclose(f);
	if (strncmp(buf, "tsc", 3) != 0)
		return;

	f = fopen("/proc/cpuinfo", "re");
	if (f == NULL)
		return;
	char *line = NULL;
	size_t cap = 0;
	int constant = 0, nonstop = 0;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		constant = strstr(line, " constant_tsc") != NULL;
		nonstop = strstr(line, " nonstop_tsc") != NULL;
		break;
	}
	free(line);
	fclose(f);
	tsc_ok = constant && nonstop;
#endif
}

int lw__clock_tsc_usable(void)
{
	pthread_once(&tsc_once, check_tsc);
	return tsc_ok;
}

/* A (tsc, ns) pair taken as close together as possible: the TSC midway
 * between two reads that bracket the clock_gettime().  A bracket wider than
 * `tight` means the thread was preempted inside it (a VM's steal time, an
 * interrupt), and the pair may be off by half of that: take another, a few
 * times at most, keeping the tightest.  Returns the bracket's width. */
static uint64_t sample(uint64_t *tsc, uint64_t *ns, uint64_t tight)
{
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < 5; i++) {
		uint64_t a = lw__rdtsc();
		uint64_t n = lw__mono_ns();
		uint64_t b = lw__rdtsc();
		if (b - a < best) {
			best = b - a;
			*tsc = a + (b - a) / 2;
			*ns = n;
		}
		if (best <= tight)
			break;
	}
	return best;
}

static uint64_t compute_mult(uint64_t dtsc, uint64_t dns)
{
	if (dtsc == 0)
		return 0;
	return (uint64_t)(((unsigned __int128)dns << SHIFT) / dtsc);
}

void lw__clock_init(lw__clock_t *c)
{
	*c = (lw__clock_t){ 0 };
	if (!lw__clock_tsc_usable()) {
		c->base_raw = c->base_ns = lw__mono_ns();
		return;
	}
	/* How wide a clean bracket is on this machine: the narrowest of a
	 * few, with room for jitter. */
	uint64_t t0, n0, t1, n1, narrow = UINT64_MAX;
	for (int i = 0; i < 16; i++) {
		uint64_t w = sample(&t0, &n0, 0);
		if (w < narrow)
			narrow = w;
	}
	uint64_t tight = narrow * 4 + 64;
	sample(&t0, &n0, tight);
	do
		sample(&t1, &n1, tight);
	while (n1 - n0 < CAL_SPIN_NS);
	c->mult = compute_mult(t1 - t0, n1 - n0);
	if (c->mult == 0) {
		c->base_raw = c->base_ns = lw__mono_ns();
		return;
	}
	c->tsc = 1;
	c->shift = SHIFT;
	c->cal_raw = t0;
	c->cal_ns = n0;
	c->base_raw = t1;
	c->base_ns = n1;
	c->tight_raw = tight;
	/* 100 us in ticks: 100000 ns * ticks/ns = (100000 << shift) / mult */
	c->long_raw =
		(uint64_t)(((unsigned __int128)100000 << SHIFT) / c->mult);
}

uint64_t lw__clock_rebase(lw__clock_t *c, uint64_t *raw)
{
	if (!c->tsc) {
		uint64_t ns = lw__mono_ns();
		c->base_raw = c->base_ns = ns;
		*raw = ns;
		return ns;
	}
	uint64_t t, ns;
	sample(&t, &ns, c->tight_raw);
	/* Refine the rate from the longest interval seen, so its error
	 * shrinks as the loop runs; a TSC that went backwards (it cannot
	 * here) would leave the old rate. */
	if (ns - c->cal_ns >= REFINE_NS && t > c->cal_raw) {
		uint64_t m = compute_mult(t - c->cal_raw, ns - c->cal_ns);
		if (m != 0)
			c->mult = m;
	}
	c->base_raw = t;
	c->base_ns = ns;
	*raw = t;
	return ns;
}
