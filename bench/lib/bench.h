/*
 * bench.h - what every benchmark program shares: the workload sizes, the
 * deterministic timeout sequence, the clock, and the median report.
 *
 * Each benchmark exists once per peer (bench/NAME_lw.c, NAME_uv.c, NAME_ev.c,
 * NAME_event.c).  The sizes and the timeout sequence live here, and not in
 * the programs, so that the four programs of one benchmark cannot drift
 * apart: they do the same work by construction.  This file depends on libc
 * only; it must not include any event library.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Timers: how many are started, fired, and started+stopped per repetition. */
#define BENCH_TIMERS 1000000
/* Timeouts are whole milliseconds in [1, BENCH_TIMER_SPREAD_MS]: libuv only
 * has millisecond timers, so every peer gets the same millisecond values. */
#define BENCH_TIMER_SPREAD_MS 200
/* The fire phase sleeps this much past the last deadline before running the
 * loop, so that every timer is due in the first iteration even for a library
 * that reads a coarse clock (libevent's default has 4 ms resolution): the
 * phase then measures expiry and dispatch, never waiting. */
#define BENCH_FIRE_SLACK_MS 10
/* The churn phase runs with this many other timers pending (60 s away), as a
 * server with idle-connection timeouts would, so a start has a heap to sift
 * through instead of an empty one. */
#define BENCH_CHURN_BACKGROUND 10000
#define BENCH_CHURN_BACKGROUND_MS 60000

/* Pipe ring: pipes in the ring and token hops per repetition. */
#define BENCH_RING_PIPES 100
#define BENCH_RING_HOPS 200000

/* TCP ping-pong: round trips per repetition and the message size. */
#define BENCH_TCP_TRIPS 20000
#define BENCH_TCP_MSG 64

/* Repetitions inside one process; the median is reported. */
#define BENCH_REPS 5
#define BENCH_MAX_REPS 64

/* Run-time settings, from the command line (see bench_init()). */
typedef struct bench_opts {
	int reps; /* -r N: repetitions (default BENCH_REPS) */
	unsigned div; /* -q N: divide every count by N, for smoke runs */
} bench_opts_t;

/*
 * Parse `-r REPS` and `-q DIV` (also from the environment as BENCH_REPS and
 * BENCH_DIV, the command line winning) and fill *o.  Prints usage and exits
 * with 2 on a bad argument: these are programs, not library code.
 */
void bench_init(int argc, char **argv, bench_opts_t *o);

/* `count` divided by o->div, at least 1. */
size_t bench_count(const bench_opts_t *o, size_t count);

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/* Sleep (outside any loop) until CLOCK_MONOTONIC reaches `deadline_ns`. */
void bench_sleep_until(uint64_t deadline_ns);

/*
 * When every timer started at or before `started_ns` is due, with
 * BENCH_FIRE_SLACK_MS to spare: the fire phase sleeps until then.
 */
uint64_t bench_all_due_ns(uint64_t started_ns);

/*
 * The timeout of timer `i`, in ms, in [1, BENCH_TIMER_SPREAD_MS]: a fixed
 * pseudo-random sequence (a hash of i), identical for every peer and run.
 */
int64_t bench_timeout_ms(size_t i);

/*
 * Collects one metric's per-repetition figures and prints their median as
 * "NAME ns_per_op VALUE" on stdout.
 */
typedef struct bench_metric {
	const char *name;
	int n;
	double v[BENCH_MAX_REPS];
} bench_metric_t;

void bench_metric_add(bench_metric_t *m, double ns_per_op);
void bench_metric_print(const bench_metric_t *m);

/* Print "bench: WHAT: strerror(err)" on stderr and exit 1. */
void bench_die(const char *what, int err) __attribute__((noreturn));

/* A command-line number: s as a whole decimal number in [lo, hi], or a
 * "bad number" line on stderr and usage_of(argv0) (then exit 2). */
uint64_t bench_arg_u64(const char *argv0, const char *s, uint64_t lo,
		       uint64_t hi, void (*usage_of)(const char *argv0));

/* Die with `what` unless `rc` is 0 (rc is 0 or -errno, libuv style). */
#define BENCH_CHECK(rc, what)                                              \
	do {                                                               \
		int bench_rc_ = (rc);                                      \
		if (bench_rc_ != 0)                                        \
			bench_die((what), bench_rc_ < 0 ? -bench_rc_ : 0); \
	} while (0)

/*
 * Set up the ring's pipes: rd[i] and wr[i] are both ends of pipe i, non-
 * blocking and close-on-exec.
 */
void bench_ring_pipes(int *rd, int *wr, int n);
void bench_ring_close(int *rd, int *wr, int n);

#endif /* BENCH_H */
