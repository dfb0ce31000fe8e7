/*
 * pipe_ring_ev.c - the pipe ring on libev (ev_io).  The same work as
 * pipe_ring_lw.c; see there and bench/README.md.
 */
#include "lib/bench.h"

#include <ev.h>

#include <errno.h>
#include <unistd.h>

static struct ev_loop *loop;
static int rd[BENCH_RING_PIPES], wr[BENCH_RING_PIPES];
static ev_io ios[BENCH_RING_PIPES];
static size_t hops, target;

static void on_readable(struct ev_loop *l, ev_io *io, int revents)
{
	int i = (int)(io - ios);
	char c;

	(void)revents;
	if (read(rd[i], &c, 1) != 1)
		bench_die("read", errno);
	if (++hops == target) {
		ev_break(l, EVBREAK_ALL);
		return;
	}
	if (write(wr[(i + 1) % BENCH_RING_PIPES], &c, 1) != 1)
		bench_die("write", errno);
}

int main(int argc, char **argv)
{
	bench_metric_t m_hop = { .name = "pipe_ring_hop" };
	bench_opts_t o;
	uint64_t t0, t1;
	int rep, i;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_RING_HOPS);
	bench_ring_pipes(rd, wr, BENCH_RING_PIPES);
	loop = ev_loop_new(EVBACKEND_EPOLL);
	if (loop == NULL)
		bench_die("ev_loop_new", 0);
	for (i = 0; i < BENCH_RING_PIPES; i++) {
		ev_io_init(&ios[i], on_readable, rd[i], EV_READ);
		ev_io_start(loop, &ios[i]);
	}

	for (rep = 0; rep < o.reps; rep++) {
		hops = 0;
		t0 = bench_now_ns();
		if (write(wr[0], "t", 1) != 1)
			bench_die("write", errno);
		ev_run(loop, 0);
		t1 = bench_now_ns();
		if (hops != target)
			bench_die("the token was lost", 0);
		bench_metric_add(&m_hop, (double)(t1 - t0) / (double)target);
	}

	for (i = 0; i < BENCH_RING_PIPES; i++)
		ev_io_stop(loop, &ios[i]);
	ev_loop_destroy(loop);
	bench_ring_close(rd, wr, BENCH_RING_PIPES);
	bench_metric_print(&m_hop);
	return 0;
}
