/*
 * sustain_lw.c - the target of the sustained-load benchmark (bench/sustain.sh):
 * a loop that runs about RATE callbacks per second over SITES sites for
 * SECONDS, paced so that the rate holds, while loopwatch watches it.  See
 * bench/README.md ("Sustained load: the agent at 1 million
 * callbacks per second").
 *
 *   sustain_lw [-n RATE] [-k SITES] [-s SECONDS] [-p PERIOD_US] [-l SLOW_S]
 *
 * A repeating timer fires every PERIOD_US (1000) and queues, with
 * lw_next_tick(), as many ticks as the clock says are due since the start
 * (RATE x elapsed, minus those already queued), spread round-robin over the
 * sites; they all run in the next iteration.  Pacing by the clock and not
 * by a fixed batch keeps the rate when a timer fires late.  A loop that
 * falls more than 20 ms behind does not try to catch up: the ticks it could
 * not run are counted as "skipped", so the rate it prints is the one it
 * really ran.
 *
 * With -l SLOW_S, one more callback (a timer, its own site) busy-waits for
 * SLOW_MS every SLOW_S seconds: a slow callback for the agent to catch,
 * join with kernel events and symbolize all along, as in a real program,
 * and not only the fast path of reading and counting records.
 *
 * Each site is its own function (a site is a callback's address and kind),
 * each counting into its own slot so that the compiler cannot fold them
 * into one.  Every callback the loop runs writes one ring record, the pacing
 * timer's too; the counts printed are the loop's (lw_loop_stats), that is,
 * the records written, measured and not assumed.
 *
 * Output, on stdout, flushed line by line ("real" is CLOCK_REALTIME, for a
 * driver to match against its own clock; the site calls leave out the
 * timers' callbacks; "skipped" counts ticks due but dropped because the
 * loop fell behind):
 *
 *   # ready pid PID rate RATE sites SITES seconds SECONDS
 *   sec N real EPOCH_S callbacks TOTAL per_s RATE_OF_THIS_SECOND
 *   ...
 *   sustain_callbacks_per_s VALUE
 *   sustain_callbacks TOTAL
 *   sustain_site_calls N
 *   sustain_skipped N
 *
 * Exit status 0, or 1 if a call failed or a site never ran, 2 on bad usage.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITES_MAX 256
/* How far behind the clock the loop may fall before it stops catching up. */
#define CATCH_UP_NS (20ull * 1000000)
/* How long the slow callback (-l) runs: over the agent's default 1 ms, and
 * long enough for its CPU sampler (one sample per 4 ms) to catch it. */
#define SLOW_MS 10

/* One counter per site: distinct bodies, distinct addresses. */
static uint64_t site_calls[SITES_MAX];

/*
 * SITE1 defines one site, SITE16 sixteen; hexadecimal names make the 256
 * indexes 0x00..0xff.  clang-format cannot lay out macros that expand to
 * definitions, hence the fence.
 */
/* clang-format off */
#define SITE1(n)                                                        \
	static void site_##n(lw_loop_t *loop, void *arg)                \
	{                                                               \
		(void)loop;                                             \
		(void)arg;                                              \
		site_calls[n]++;                                        \
	}
#define SITE16(h)                                                       \
	SITE1(h##0) SITE1(h##1) SITE1(h##2) SITE1(h##3)                 \
	SITE1(h##4) SITE1(h##5) SITE1(h##6) SITE1(h##7)                 \
	SITE1(h##8) SITE1(h##9) SITE1(h##a) SITE1(h##b)                 \
	SITE1(h##c) SITE1(h##d) SITE1(h##e) SITE1(h##f)
SITE16(0x0) SITE16(0x1) SITE16(0x2) SITE16(0x3)
SITE16(0x4) SITE16(0x5) SITE16(0x6) SITE16(0x7)
SITE16(0x8) SITE16(0x9) SITE16(0xa) SITE16(0xb)
SITE16(0xc) SITE16(0xd) SITE16(0xe) SITE16(0xf)

#define REF1(n) site_##n,
#define REF16(h)                                                        \
	REF1(h##0) REF1(h##1) REF1(h##2) REF1(h##3)                     \
	REF1(h##4) REF1(h##5) REF1(h##6) REF1(h##7)                     \
	REF1(h##8) REF1(h##9) REF1(h##a) REF1(h##b)                     \
	REF1(h##c) REF1(h##d) REF1(h##e) REF1(h##f)
static const lw_cb site_fn[SITES_MAX] = {
	REF16(0x0) REF16(0x1) REF16(0x2) REF16(0x3)
	REF16(0x4) REF16(0x5) REF16(0x6) REF16(0x7)
	REF16(0x8) REF16(0x9) REF16(0xa) REF16(0xb)
	REF16(0xc) REF16(0xd) REF16(0xe) REF16(0xf)
};
/* clang-format on */

struct pace {
	lw_loop_t *loop;
	uint64_t rate, sites, seconds;
	uint64_t t0, t_end; /* CLOCK_MONOTONIC ns */
	uint64_t issued; /* ticks queued or skipped so far */
	uint64_t skipped;
	uint64_t next_site;
	uint64_t sec; /* seconds reported so far */
	uint64_t last_calls, last_ns;
	int ready;
	int failed;
};

static uint64_t loop_callbacks(lw_loop_t *loop)
{
	lw_loop_stats_t s;
	lw_loop_stats(loop, &s);
	return s.callbacks;
}

static double real_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_pace(lw_timer_t *timer)
{
	struct pace *p = timer->data;
	uint64_t now = bench_now_ns();

	if (!p->ready) {
		/* The loop is running and its ring exists: a driver may
		 * attach now. */
		printf("# ready pid %d rate %" PRIu64 " sites %" PRIu64
		       " seconds %" PRIu64 "\n",
		       (int)getpid(), p->rate, p->sites, p->seconds);
		fflush(stdout);
		p->ready = 1;
		p->t0 = p->last_ns = now;
		p->t_end = now + p->seconds * 1000000000ull;
		p->last_calls = loop_callbacks(p->loop);
		return;
	}
	if (now >= p->last_ns + 1000000000ull || now >= p->t_end) {
		uint64_t calls = loop_callbacks(p->loop);
		p->sec++;
		printf("sec %" PRIu64 " real %.3f callbacks %" PRIu64
		       " per_s %.0f\n",
		       p->sec, real_now(), calls,
		       (double)(calls - p->last_calls) * 1e9 /
			       (double)(now - p->last_ns));
		fflush(stdout);
		p->last_calls = calls;
		p->last_ns = now;
	}
	if (now >= p->t_end) {
		lw_stop(p->loop);
		return;
	}

	/* Due since the start, by the clock; 128 bits because rate x ns
	 * overflows 64 bits after a few seconds at a million per second. */
	uint64_t due = (uint64_t)((unsigned __int128)(now - p->t0) * p->rate /
				  1000000000u);
	uint64_t want = due > p->issued ? due - p->issued : 0;
	uint64_t cap = (uint64_t)((unsigned __int128)CATCH_UP_NS * p->rate /
				  1000000000u) +
		       1;
	if (want > cap) {
		p->skipped += want - cap;
		p->issued += want - cap;
		want = cap;
	}
	for (uint64_t i = 0; i < want; i++) {
		if (lw_next_tick(p->loop, site_fn[p->next_site], NULL) != 0) {
			fprintf(stderr, "bench: lw_next_tick failed\n");
			p->failed = 1;
			lw_stop(p->loop);
			return;
		}
		if (++p->next_site == p->sites)
			p->next_site = 0;
	}
	p->issued += want;
}

/* The slow callback: on CPU, as a callback that computes too long. */
static void on_slow(lw_timer_t *timer)
{
	uint64_t until = bench_now_ns() + SLOW_MS * 1000000ull;
	uint64_t *spins = timer->data;

	while (bench_now_ns() < until)
		(*spins)++;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-n RATE] [-k SITES] [-s SECONDS] [-p PERIOD_US] "
		"[-l SLOW_S]\n"
		"  -n RATE       callbacks per second (1000000)\n"
		"  -k SITES      distinct callbacks, 1..%d (16)\n"
		"  -s SECONDS    how long to run (60)\n"
		"  -p PERIOD_US  the pacing timer's period in us (1000)\n"
		"  -l SLOW_S     every SLOW_S s, one callback of %d ms (0: "
		"none)\n",
		argv0, SITES_MAX, SLOW_MS);
	exit(2);
}

int main(int argc, char **argv)
{
	struct pace p = { .rate = 1000000, .sites = 16, .seconds = 60 };
	uint64_t period_us = 1000, slow_s = 0, spins = 0;
	int c;

	while ((c = getopt(argc, argv, "n:k:s:p:l:h")) != -1) {
		switch (c) {
		case 'n':
			p.rate = bench_arg_u64(argv[0], optarg, 1, 100000000,
					       usage);
			break;
		case 'k':
			p.sites = bench_arg_u64(argv[0], optarg, 1, SITES_MAX,
						usage);
			break;
		case 's':
			p.seconds =
				bench_arg_u64(argv[0], optarg, 1, 86400, usage);
			break;
		case 'p':
			period_us = bench_arg_u64(argv[0], optarg, 10, 1000000,
						  usage);
			break;
		case 'l':
			slow_s = bench_arg_u64(argv[0], optarg, 0, 3600, usage);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);

	lw_loop_options_t lo = { .name = "sustain", .defer_threads = 1 };
	lw_timer_t pace, slow;
	BENCH_CHECK(lw_loop_new(&p.loop, &lo), "lw_loop_new");
	if (lw_loop_ring_fd(p.loop) < 0)
		fprintf(stderr, "bench: warning: this loop has no ring "
				"(LOOPWATCH=off?): nothing to watch\n");
	BENCH_CHECK(lw_timer_init(p.loop, &pace), "lw_timer_init");
	pace.data = &p;
	BENCH_CHECK(
		lw_timer_start_ns(&pace, on_pace, 0, (int64_t)period_us * 1000),
		"lw_timer_start_ns");
	BENCH_CHECK(lw_timer_init(p.loop, &slow), "lw_timer_init");
	slow.data = &spins;
	if (slow_s > 0)
		BENCH_CHECK(lw_timer_start(&slow, on_slow,
					   (int64_t)slow_s * 1000,
					   (int64_t)slow_s * 1000),
			    "lw_timer_start");
	BENCH_CHECK(lw_run(p.loop), "lw_run");
	lw_timer_stop(&pace);
	lw_timer_stop(&slow);

	uint64_t calls = loop_callbacks(p.loop);
	uint64_t ran = 0, idle_sites = 0;
	for (uint64_t i = 0; i < p.sites; i++) {
		ran += site_calls[i];
		idle_sites += site_calls[i] == 0;
	}
	uint64_t ns = bench_now_ns() - p.t0;
	printf("sustain_callbacks_per_s %.0f\n",
	       (double)calls * 1e9 / (double)(ns ? ns : 1));
	printf("sustain_callbacks %" PRIu64 "\n", calls);
	printf("sustain_site_calls %" PRIu64 "\n", ran);
	printf("sustain_skipped %" PRIu64 "\n", p.skipped);
	lw_loop_free(p.loop);
	if (p.failed)
		return 1;
	if (ran >= p.sites && idle_sites > 0) {
		fprintf(stderr, "bench: %" PRIu64 " sites never ran\n",
			idle_sites);
		return 1;
	}
	return 0;
}
