/*
 * ring_cost_lw.c - the ring's cost on the worst case for it: a next_tick
 * storm.  See bench/README.md ("The ring's cost").
 *
 * One callback re-queues itself with lw_next_tick() BENCH_STORM_TICKS times
 * (10 million).  A tick queued from a tick runs on the next iteration, so
 * every tick is one whole loop iteration (an epoll_pwait2 with a zero
 * timeout, a clock rebase, the tick's dispatch): the callback does nothing,
 * and the loop's own work per callback is as small as it ever gets, so the
 * ring's share of it is as large as it ever gets.
 *
 * The program is run twice, as is: with the ring on (the default) and with
 * LOOPWATCH=off in the environment; run.sh interleaves the two many times
 * and reports the difference.  It checks which of the two it got (the
 * loop's ring fd) and, with the ring on, that the ring's head really moved
 * by one record per tick, so a build where the ring silently stayed off
 * cannot pass for a free one.  It prints "ring on" or "ring off" as a
 * comment line (run.sh reads only the ns_per_op lines).
 */
#include "lib/bench.h"

#include <loopwatch.h>
#include <loopwatch_ring.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_STORM_TICKS 10000000

static size_t ticks, target;

static void on_tick(lw_loop_t *loop, void *arg)
{
	if (++ticks == target) {
		lw_stop(loop);
		return;
	}
	if (lw_next_tick(loop, on_tick, arg) != 0)
		bench_die("lw_next_tick", ENOMEM);
}

/* The ring's head as a reader sees it: the records written so far. */
static uint64_t ring_head(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		bench_die("fstat ring", errno);
	void *map =
		mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		bench_die("mmap ring", errno);
	const struct lw_ring_header *h = map;
	uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
	munmap(map, (size_t)st.st_size);
	return head;
}

int main(int argc, char **argv)
{
	bench_metric_t m_tick = { .name = "ring_storm_tick" };
	lw_loop_options_t lo = { .name = "storm", .defer_threads = 1 };
	lw_loop_t *loop;
	bench_opts_t o;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_STORM_TICKS);
	BENCH_CHECK(lw_loop_new(&loop, &lo), "lw_loop_new");
	int fd = lw_loop_ring_fd(loop);
	const char *env = getenv("LOOPWATCH");
	int want_off = env != NULL &&
		       (strcmp(env, "off") == 0 || strcmp(env, "0") == 0);
	if ((fd < 0) != want_off) {
		fprintf(stderr, "bench: the ring is %s but LOOPWATCH=%s\n",
			fd < 0 ? "off" : "on", env ? env : "");
		return 1;
	}

	for (int rep = 0; rep < o.reps; rep++) {
		uint64_t head0 = fd >= 0 ? ring_head(fd) : 0;
		ticks = 0;
		uint64_t t0 = bench_now_ns();
		BENCH_CHECK(lw_next_tick(loop, on_tick, NULL), "lw_next_tick");
		BENCH_CHECK(lw_run(loop), "lw_run");
		uint64_t t1 = bench_now_ns();
		if (ticks != target)
			bench_die("the storm stopped early", 0);
		if (fd >= 0 && ring_head(fd) - head0 < target)
			bench_die("the ring holds fewer records than ticks", 0);
		bench_metric_add(&m_tick, (double)(t1 - t0) / (double)target);
	}
	printf("# ring %s\n", fd >= 0 ? "on" : "off");
	lw_loop_free(loop);
	bench_metric_print(&m_tick);
	return 0;
}
