/*
 * pipe_ring_lw.c - the pipe ring on loopwatch (lw_io_t).  See
 * bench/README.md; pipe_ring_uv.c, _ev.c and _event.c do the same work.
 *
 * BENCH_RING_PIPES pipes form a ring.  One token (a byte) travels round it:
 * the readable callback of pipe i reads the byte and writes it into pipe
 * i + 1.  Each hop is one wake-up, one read and one write, the pattern of a
 * proxy or a pipeline of workers; the figure is the time per hop.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <unistd.h>

static lw_loop_t *loop;
static int rd[BENCH_RING_PIPES], wr[BENCH_RING_PIPES];
static lw_io_t ios[BENCH_RING_PIPES];
static size_t hops, target;

static void on_readable(lw_io_t *io, int events)
{
	int i = (int)(io - ios);
	char c;

	(void)events;
	if (read(rd[i], &c, 1) != 1)
		bench_die("read", errno);
	if (++hops == target) {
		lw_stop(loop);
		return;
	}
	if (write(wr[(i + 1) % BENCH_RING_PIPES], &c, 1) != 1)
		bench_die("write", errno);
}

int main(int argc, char **argv)
{
	bench_metric_t m_hop = { .name = "pipe_ring_hop" };
	lw_loop_options_t lo = { .name = "bench", .defer_threads = 1 };
	bench_opts_t o;
	uint64_t t0, t1;
	int rep, i;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_RING_HOPS);
	bench_ring_pipes(rd, wr, BENCH_RING_PIPES);
	BENCH_CHECK(lw_loop_new(&loop, &lo), "lw_loop_new");
	for (i = 0; i < BENCH_RING_PIPES; i++) {
		BENCH_CHECK(lw_io_init(loop, &ios[i], rd[i]), "lw_io_init");
		BENCH_CHECK(lw_io_start(&ios[i], LW_READABLE, on_readable),
			    "lw_io_start");
	}

	for (rep = 0; rep < o.reps; rep++) {
		hops = 0;
		t0 = bench_now_ns();
		if (write(wr[0], "t", 1) != 1)
			bench_die("write", errno);
		BENCH_CHECK(lw_run(loop), "lw_run");
		t1 = bench_now_ns();
		if (hops != target)
			bench_die("the token was lost", 0);
		bench_metric_add(&m_hop, (double)(t1 - t0) / (double)target);
	}

	for (i = 0; i < BENCH_RING_PIPES; i++)
		lw_io_stop(&ios[i]);
	lw_loop_free(loop);
	bench_ring_close(rd, wr, BENCH_RING_PIPES);
	bench_metric_print(&m_hop);
	return 0;
}
