/*
 * ring_ab_lw.c - the ring on and off in one process, alternating every few
 * milliseconds: the next_tick storm of ring_cost_lw.c and the pipe ring of
 * pipe_ring_lw.c.  See bench/README.md ("The ring's cost").
 *
 * The ring adds about as much to a storm tick (or a pipe hop) as the
 * machine's noise moves it between two runs, so run.sh's pairs of whole
 * runs (with and without LOOPWATCH=off) need many pairs to say anything.
 * Here two loops live side by side, one with a ring and one made with
 * no_ring (the code path LOOPWATCH=off takes: the loop's ring pointer is
 * NULL), each with its own pipes, and each workload runs in chunks, one
 * chunk on each loop in turn (which one goes first alternates):
 *
 *   storm  BENCH_AB_TICKS ticks per loop in chunks of BENCH_AB_CHUNK: a
 *          tick that queues the next, one per loop iteration.
 *   pipe   BENCH_AB_HOPS hops per loop in chunks of BENCH_AB_HOP_CHUNK:
 *          the token ring of BENCH_RING_PIPES pipes.
 *
 * A burst of noise then lands on one chunk pair, not on one whole run, and
 * the median of the per-pair differences discounts it.  For each workload
 * it prints the medians of both sides (ring_ab_W_on, ring_ab_W_off), the
 * median of the pairwise differences (ring_ab_W_diff) and their quartiles
 * (_q1, _q3), all in ns per tick or hop, and the median of the pairwise
 * ratios on/off (ring_ab_W_ratio).  With LOOPWATCH=off in the environment
 * both loops lack a ring and the differences are the method's own bias,
 * which should be about 0.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BENCH_AB_TICKS 10000000 /* per loop */
#define BENCH_AB_CHUNK 100000 /* ticks per chunk: about 30 ms */
#define BENCH_AB_HOPS 2000000 /* per loop */
#define BENCH_AB_HOP_CHUNK 20000 /* hops per chunk: about 30 ms */

struct ab_side {
	lw_loop_t *loop;
	size_t ticks, target;
	int rd[BENCH_RING_PIPES], wr[BENCH_RING_PIPES];
	lw_io_t ios[BENCH_RING_PIPES];
};

static void on_tick(lw_loop_t *loop, void *arg)
{
	struct ab_side *s = arg;
	if (++s->ticks == s->target) {
		lw_stop(loop);
		return;
	}
	if (lw_next_tick(loop, on_tick, s) != 0)
		bench_die("lw_next_tick", ENOMEM);
}

static void on_readable(lw_io_t *io, int events)
{
	struct ab_side *s = io->data;
	int i = (int)(io - s->ios);
	char c;

	(void)events;
	if (read(s->rd[i], &c, 1) != 1)
		bench_die("read", errno);
	if (++s->ticks == s->target) {
		lw_stop(s->loop);
		return;
	}
	if (write(s->wr[(i + 1) % BENCH_RING_PIPES], &c, 1) != 1)
		bench_die("write", errno);
}

static void side_init(struct ab_side *s, const lw_loop_options_t *lo)
{
	BENCH_CHECK(lw_loop_new(&s->loop, lo), "lw_loop_new");
	bench_ring_pipes(s->rd, s->wr, BENCH_RING_PIPES);
	for (int i = 0; i < BENCH_RING_PIPES; i++) {
		BENCH_CHECK(lw_io_init(s->loop, &s->ios[i], s->rd[i]),
			    "lw_io_init");
		s->ios[i].data = s;
	}
}

static void side_free(struct ab_side *s)
{
	lw_loop_free(s->loop);
	bench_ring_close(s->rd, s->wr, BENCH_RING_PIPES);
}

/* One chunk of the storm on one loop: ns per tick. */
static double chunk_storm(struct ab_side *s, size_t n)
{
	s->ticks = 0;
	s->target = n;
	uint64_t t0 = bench_now_ns();
	BENCH_CHECK(lw_next_tick(s->loop, on_tick, s), "lw_next_tick");
	BENCH_CHECK(lw_run(s->loop), "lw_run");
	uint64_t t1 = bench_now_ns();
	if (s->ticks != n)
		bench_die("the storm stopped early", 0);
	return (double)(t1 - t0) / (double)n;
}

/* One chunk of the pipe ring on one loop: ns per hop.  The watchers are
 * started for the chunk only, so the other loop's chunk runs alone. */
static double chunk_pipe(struct ab_side *s, size_t n)
{
	for (int i = 0; i < BENCH_RING_PIPES; i++)
		BENCH_CHECK(lw_io_start(&s->ios[i], LW_READABLE, on_readable),
			    "lw_io_start");
	s->ticks = 0;
	s->target = n;
	uint64_t t0 = bench_now_ns();
	if (write(s->wr[0], "t", 1) != 1)
		bench_die("write", errno);
	BENCH_CHECK(lw_run(s->loop), "lw_run");
	uint64_t t1 = bench_now_ns();
	if (s->ticks != n)
		bench_die("the token was lost", 0);
	for (int i = 0; i < BENCH_RING_PIPES; i++)
		lw_io_stop(&s->ios[i]);
	return (double)(t1 - t0) / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of v[0..n-1] (sorted here), between ranks. */
static double quantile(double *v, size_t n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	double x = (double)(n - 1) * q;
	size_t i = (size_t)x;
	return i + 1 >= n ? v[n - 1]
			  : v[i] + (x - (double)i) * (v[i + 1] - v[i]);
}

static void print(const char *w, const char *what, const char *unit, double v)
{
	printf("ring_ab_%s_%s %s %.3f\n", w, what, unit, v);
}

/* Run `chunk` `pairs` times on each side, alternating, and print. */
static void ab(const char *w, double (*chunk)(struct ab_side *, size_t),
	       struct ab_side *on, struct ab_side *off, size_t per,
	       size_t pairs)
{
	double *von = calloc(pairs, sizeof(double));
	double *voff = calloc(pairs, sizeof(double));
	double *vd = calloc(pairs, sizeof(double));
	double *vr = calloc(pairs, sizeof(double));
	if (von == NULL || voff == NULL || vd == NULL || vr == NULL)
		bench_die("calloc", ENOMEM);
	/* A warm-up chunk each: arrays grow, pages fault in. */
	chunk(on, per);
	chunk(off, per);
	for (size_t i = 0; i < pairs; i++) {
		if (i % 2 == 0) {
			von[i] = chunk(on, per);
			voff[i] = chunk(off, per);
		} else {
			voff[i] = chunk(off, per);
			von[i] = chunk(on, per);
		}
		vd[i] = von[i] - voff[i];
		vr[i] = von[i] / voff[i];
	}
	printf("# %s: %zu pairs of %zu\n", w, pairs, per);
	print(w, "pairs", "count", (double)pairs);
	print(w, "on", "ns_per_op", quantile(von, pairs, 0.5));
	print(w, "off", "ns_per_op", quantile(voff, pairs, 0.5));
	print(w, "diff", "ns_per_op", quantile(vd, pairs, 0.5));
	print(w, "diff_q1", "ns_per_op", quantile(vd, pairs, 0.25));
	print(w, "diff_q3", "ns_per_op", quantile(vd, pairs, 0.75));
	print(w, "ratio", "ratio", quantile(vr, pairs, 0.5));
	print(w, "ratio_q1", "ratio", quantile(vr, pairs, 0.25));
	print(w, "ratio_q3", "ratio", quantile(vr, pairs, 0.75));
	free(von);
	free(voff);
	free(vd);
	free(vr);
}

int main(int argc, char **argv)
{
	lw_loop_options_t on_opts = { .name = "ab-on", .defer_threads = 1 };
	lw_loop_options_t off_opts = { .name = "ab-off",
				       .defer_threads = 1,
				       .no_ring = 1 };
	struct ab_side on = { 0 }, off = { 0 };
	bench_opts_t o;

	bench_init(argc, argv, &o);
	side_init(&on, &on_opts);
	side_init(&off, &off_opts);
	if (lw_loop_ring_fd(off.loop) >= 0)
		bench_die("the no_ring loop has a ring", 0);
	printf("# ring %s\n",
	       lw_loop_ring_fd(on.loop) >= 0
		       ? "on"
		       : "off (LOOPWATCH=off: both sides are off)");

	size_t total = bench_count(&o, BENCH_AB_TICKS);
	size_t per = total < BENCH_AB_CHUNK ? total : BENCH_AB_CHUNK;
	ab("storm", chunk_storm, &on, &off, per, total / per);
	total = bench_count(&o, BENCH_AB_HOPS);
	per = total < BENCH_AB_HOP_CHUNK ? total : BENCH_AB_HOP_CHUNK;
	ab("pipe", chunk_pipe, &on, &off, per, total / per);

	side_free(&on);
	side_free(&off);
	return 0;
}
