/*
 * pipe_ring_event.c - the pipe ring on libevent (a persistent EV_READ
 * event).  The same work as pipe_ring_lw.c; see there and bench/README.md.
 */
#include "lib/bench.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <errno.h>
#include <unistd.h>

static struct event_base *base;
static int rd[BENCH_RING_PIPES], wr[BENCH_RING_PIPES];
static struct event evs[BENCH_RING_PIPES];
static size_t hops, target;

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	int i = (int)(intptr_t)arg;
	char c;

	(void)what;
	if (read(fd, &c, 1) != 1)
		bench_die("read", errno);
	if (++hops == target) {
		event_base_loopbreak(base);
		return;
	}
	if (write(wr[(i + 1) % BENCH_RING_PIPES], &c, 1) != 1)
		bench_die("write", errno);
}

int main(int argc, char **argv)
{
	bench_metric_t m_hop = { .name = "pipe_ring_hop" };
	struct event_config *cfg;
	bench_opts_t o;
	uint64_t t0, t1;
	int rep, i;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_RING_HOPS);
	bench_ring_pipes(rd, wr, BENCH_RING_PIPES);
	/* epoll, and no lock: the same set-up as timers_event.c. */
	cfg = event_config_new();
	if (cfg == NULL)
		bench_die("event_config_new", 0);
	event_config_avoid_method(cfg, "select");
	event_config_avoid_method(cfg, "poll");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	if (base == NULL)
		bench_die("event_base_new_with_config", 0);
	for (i = 0; i < BENCH_RING_PIPES; i++) {
		event_assign(&evs[i], base, rd[i], EV_READ | EV_PERSIST,
			     on_readable, (void *)(intptr_t)i);
		BENCH_CHECK(event_add(&evs[i], NULL), "event_add");
	}

	for (rep = 0; rep < o.reps; rep++) {
		hops = 0;
		t0 = bench_now_ns();
		if (write(wr[0], "t", 1) != 1)
			bench_die("write", errno);
		BENCH_CHECK(event_base_dispatch(base) < 0,
			    "event_base_dispatch");
		t1 = bench_now_ns();
		if (hops != target)
			bench_die("the token was lost", 0);
		bench_metric_add(&m_hop, (double)(t1 - t0) / (double)target);
	}

	for (i = 0; i < BENCH_RING_PIPES; i++)
		event_del(&evs[i]);
	event_base_free(base);
	event_config_free(cfg);
	bench_ring_close(rd, wr, BENCH_RING_PIPES);
	bench_metric_print(&m_hop);
	return 0;
}
