/*
 * ring_micro_lw.c - the ring's own cost per callback, without a loop's
 * system calls around it.  See bench/README.md ("The ring's cost").
 *
 * The next_tick storm (ring_cost_lw.c) adds the ring to a ~300 ns iteration
 * made mostly of an epoll call, whose run-to-run noise is larger than the
 * ring's cost.  This program times only the instrumentation: a tight loop
 * of BENCH_MICRO_PAIRS (100 million) begin/end pairs around an empty
 * callback, called through a pointer as a loop calls one, so the compiler
 * can neither drop nor merge the iterations.  Run with the ring on and with
 * LOOPWATCH=off; the difference is the ring's cost per callback.  Two
 * paths:
 *
 *   ring_reactor_pair  what libloopwatch's own dispatch runs around every
 *                      callback: lw__call_begin_chained() + lw__call_end()
 *                      of probe/internal.h, inlined as in the loop, on a
 *                      real lw_loop_t.  A chained begin takes the previous
 *                      end as its start, so this is one timestamp per
 *                      callback.
 *   ring_probe_pair    the public lw_probe_begin() + lw_probe_end() that a
 *                      foreign loop calls: two out-of-line calls and two
 *                      timestamps per callback.
 *   ring_reactor_iter  a storm iteration's ring work without the wait:
 *                      the loop's clock reads around the wait (taken on
 *                      and off), the ring's per-iteration counters (on
 *                      only), and the callback's begin and end.
 *   ring_clock_read    the floor: the empty callback and one raw timestamp
 *                      (the TSC where it is usable), no ring; the same
 *                      with the ring on or off.
 *
 * To inline the reactor's path this file includes probe/internal.h: it is a
 * benchmark of the library's internals and is built against the static
 * library, which is what makes the lw__ symbols reachable.
 */
#include "lib/bench.h"

#include "../probe/internal.h"

#include <loopwatch.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_MICRO_PAIRS 100000000

static size_t calls;

/* The callback: empty but for a counter, which also proves it ran. */
static __attribute__((noinline)) void empty_cb(void)
{
	calls++;
	__asm__ __volatile__("" ::: "memory");
}

/* Called through this pointer, which the compiler cannot see through. */
static void (*volatile cb_ptr)(void) = empty_cb;

static double time_reactor(lw_loop_t *loop, lw__site_t *site, size_t n)
{
	void (*cb)(void) = cb_ptr;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		lw__call_begin_chained(loop, site, 0);
		cb();
		lw__call_end(loop, site);
	}
	uint64_t t1 = bench_now_ns();
	return (double)(t1 - t0) / (double)n;
}

/* One storm iteration's worth of ring work around the same callback: what
 * the loop adds around its wait (lw__poll() in probe/io.c: a timestamp
 * before, a rebase after, both taken with the ring on or off, and the
 * ring's counters with it on) and then the callback's begin and end.  The
 * wait itself is left out. */
static double time_iter(lw_loop_t *loop, lw__site_t *site, size_t n)
{
	void (*cb)(void) = cb_ptr;
	lw__clock_t *c = &loop->clock;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		uint64_t before = lw__clock_ns(c, lw__clock_raw(c));
		if (loop->ring != NULL)
			lw__ring_wait_enter(loop->ring, before);
		uint64_t raw = lw__clock_raw(c);
		uint64_t after = lw__clock_ns(c, raw);
		if (loop->ring != NULL)
			lw__ring_wait_exit(loop->ring, before, after, raw);
		lw__call_begin_chained(loop, site, 0);
		cb();
		lw__call_end(loop, site);
	}
	uint64_t t1 = bench_now_ns();
	return (double)(t1 - t0) / (double)n;
}

/* The floor: the one timestamp per callback that the reactor's path takes,
 * alone (no ring is touched, so it costs the same with LOOPWATCH=off). */
static double time_clock(lw_loop_t *loop, size_t n)
{
	void (*cb)(void) = cb_ptr;
	uint64_t sum = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		sum += lw__clock_raw(&loop->clock);
		cb();
	}
	uint64_t t1 = bench_now_ns();
	if (sum == 42)
		printf("#\n"); /* keeps the reads */
	return (double)(t1 - t0) / (double)n;
}

static double time_probe(lw_probe_t *p, uint32_t site, size_t n)
{
	void (*cb)(void) = cb_ptr;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		lw_probe_begin(p, site, 0);
		cb();
		lw_probe_end(p);
	}
	uint64_t t1 = bench_now_ns();
	return (double)(t1 - t0) / (double)n;
}

int main(int argc, char **argv)
{
	bench_metric_t m_reactor = { .name = "ring_reactor_pair" };
	bench_metric_t m_probe = { .name = "ring_probe_pair" };
	bench_metric_t m_iter = { .name = "ring_reactor_iter" };
	bench_metric_t m_clock = { .name = "ring_clock_read" };
	lw_loop_options_t lo = { .name = "micro", .defer_threads = 1 };
	lw_loop_t *loop;
	lw_probe_t *p;
	bench_opts_t o;

	bench_init(argc, argv, &o);
	size_t n = bench_count(&o, BENCH_MICRO_PAIRS);
	BENCH_CHECK(lw_loop_new(&loop, &lo), "lw_loop_new");
	BENCH_CHECK(lw_probe_new(&p, "micro", 0), "lw_probe_new");
	lw__site_t *site = lw__site_get(loop, LW_KIND_TICK, LW_FN(empty_cb));
	uint32_t psite =
		lw_probe_site(p, LW_KIND_PROBE, LW_FN(empty_cb), "empty");

	const char *env = getenv("LOOPWATCH");
	int want_off = env != NULL &&
		       (strcmp(env, "off") == 0 || strcmp(env, "0") == 0);
	int on = loop->ring != NULL;
	if (on == want_off || lw_probe_enabled(p) != on) {
		fprintf(stderr, "bench: the rings do not follow LOOPWATCH=%s\n",
			env ? env : "");
		return 1;
	}

	for (int rep = 0; rep < o.reps; rep++) {
		uint64_t head0 = on ? loop->ring->head : 0;
		calls = 0;
		bench_metric_add(&m_reactor, time_reactor(loop, site, n));
		bench_metric_add(&m_probe, time_probe(p, psite, n));
		bench_metric_add(&m_clock, time_clock(loop, n));
		bench_metric_add(&m_iter, time_iter(loop, site, n));
		if (calls != 4 * n)
			bench_die("the callback did not run every time", 0);
		if (on && loop->ring->head - head0 != 2 * n)
			bench_die("the ring missed records", 0);
	}
	printf("# ring %s\n", on ? "on" : "off");
	lw_probe_free(p);
	lw_loop_free(loop);
	bench_metric_print(&m_reactor);
	bench_metric_print(&m_probe);
	bench_metric_print(&m_iter);
	bench_metric_print(&m_clock);
	return 0;
}
