/*
 * pipe_ring_uv.c - the pipe ring on libuv.  The same work as
 * pipe_ring_lw.c; see there and bench/README.md.
 *
 * uv_poll_t is libuv's fd watcher, the counterpart of lw_io_t, ev_io and a
 * persistent libevent event: every peer watches the same raw pipes and makes
 * the same read and write calls.
 */
#include "lib/bench.h"

#include <uv.h>

#include <errno.h>
#include <unistd.h>

static uv_loop_t loop;
static int rd[BENCH_RING_PIPES], wr[BENCH_RING_PIPES];
static uv_poll_t polls[BENCH_RING_PIPES];
static size_t hops, target;

static void on_readable(uv_poll_t *p, int status, int events)
{
	int i = (int)(p - polls);
	char c;

	(void)status;
	(void)events;
	if (read(rd[i], &c, 1) != 1)
		bench_die("read", errno);
	if (++hops == target) {
		uv_stop(&loop);
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
	BENCH_CHECK(uv_loop_init(&loop), "uv_loop_init");
	for (i = 0; i < BENCH_RING_PIPES; i++) {
		BENCH_CHECK(uv_poll_init(&loop, &polls[i], rd[i]),
			    "uv_poll_init");
		BENCH_CHECK(uv_poll_start(&polls[i], UV_READABLE, on_readable),
			    "uv_poll_start");
	}

	for (rep = 0; rep < o.reps; rep++) {
		hops = 0;
		t0 = bench_now_ns();
		if (write(wr[0], "t", 1) != 1)
			bench_die("write", errno);
		uv_run(&loop, UV_RUN_DEFAULT);
		t1 = bench_now_ns();
		if (hops != target)
			bench_die("the token was lost", 0);
		bench_metric_add(&m_hop, (double)(t1 - t0) / (double)target);
	}

	for (i = 0; i < BENCH_RING_PIPES; i++)
		uv_close((uv_handle_t *)&polls[i], NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	BENCH_CHECK(uv_loop_close(&loop), "uv_loop_close");
	bench_ring_close(rd, wr, BENCH_RING_PIPES);
	bench_metric_print(&m_hop);
	return 0;
}
