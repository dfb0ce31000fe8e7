/*
 * sites_lw.c - a target with many sites, for the dashboard's benchmark
 * (bench/top.sh): loopwatch top must stay responsive with 10,000 sites,
 * and cost the target nothing beyond what the agent already reads.
 *
 *   sites_lw [-k SITES] [-n RATE] [-s SECONDS]
 *
 * A ring's site table holds LW_RING_DEFAULT_SITES (4096) entries, so the
 * sites are spread over as many loops as that takes, each on its own
 * thread and reporting through the probe API (lw_probe_*), as a server
 * with several event-loop threads would.  Each site is a distinct
 * (kind, address) pair with a name of its own ("site 00042"); the address
 * is inside this program's text, which is all a site needs.
 *
 * Each loop runs its sites round-robin: a callback is a short computation
 * whose length depends on the site (most take well under a microsecond,
 * one in a hundred ~20 us, one in a thousand ~200 us), so the histograms,
 * shares and sort orders differ from site to site.  Between batches the
 * loop waits in epoll_wait, as a loop waits for I/O: with -n RATE it is
 * paced to RATE callbacks per second in all (by the clock, each loop its
 * share); with -n 0 it runs flat out, waiting with a zero timeout, so its
 * rate is what the machine gives it: the figure that shows whether
 * something else on the machine (the agent, the dashboard) takes from it.
 *
 * Output on stdout, line by line ("real" is CLOCK_REALTIME, for a driver to
 * match the seconds against its own phases):
 *
 *   # ready pid PID sites SITES loops LOOPS rate RATE seconds SECONDS
 *   sec N real EPOCH_S callbacks TOTAL per_s RATE_OF_THIS_SECOND
 *   ...
 *   sites_callbacks TOTAL
 *
 * Exit status 0, 1 if a call failed, 2 on bad usage.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define SITES_MAX 65536
#define SITES_PER_LOOP 4000 /* under the ring's 4096 */
#define LOOPS_MAX (SITES_MAX / SITES_PER_LOOP + 1)
#define BATCH 256 /* callbacks between two waits when flat out */

/* What every callback computes into, so the compiler keeps the work. */
static volatile uint64_t sink;

/* The sites' code: one body; each site a distinct address inside it. */
static void __attribute__((noinline)) site_body(uint32_t spins)
{
	uint64_t x = spins;
	for (uint32_t i = 0; i < spins; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

struct worker {
	pthread_t thread;
	uint32_t first, n; /* its sites: first .. first + n - 1 */
	uint64_t rate; /* its callbacks per second; 0: flat out */
	uint64_t t_end;
	uint64_t done; /* callbacks run (read by main, relaxed) */
	int ready; /* its ring and sites exist (release) */
	int failed;
};

static uint32_t spins_of(uint32_t site)
{
	if (site % 1000 == 7)
		return 40000; /* ~200 us */
	if (site % 100 == 3)
		return 4000; /* ~20 us */
	return 20 + site % 50;
}

static void *run_loop(void *arg)
{
	struct worker *w = arg;
	uint32_t *ids = calloc(w->n, sizeof(*ids));
	char name[32];
	lw_probe_t *p;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ids == NULL || ep < 0) {
		w->failed = 1;
		__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
		goto out;
	}
	snprintf(name, sizeof(name), "sites-%u", w->first / SITES_PER_LOOP);
	if (lw_probe_new(&p, name, 0) != 0) {
		w->failed = 1;
		__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
		goto out;
	}
	for (uint32_t i = 0; i < w->n; i++) {
		uint32_t site = w->first + i;
		snprintf(name, sizeof(name), "site %05u", site);
		ids[i] = lw_probe_site(
			p, LW_KIND_TICK,
			(lw_fn)((uintptr_t)LW_FN(site_body) + site), name);
	}
	__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
	uint64_t t0 = bench_now_ns(), next = 0;
	while (bench_now_ns() < w->t_end) {
		uint64_t want = BATCH;
		int timeout = 0;
		if (w->rate) {
			uint64_t now = bench_now_ns();
			uint64_t due =
				(uint64_t)((unsigned __int128)(now - t0) *
					   w->rate / 1000000000u);
			want = due > w->done ? due - w->done : 0;
			if (want > w->rate / 50 + 1)
				want = w->rate / 50 + 1; /* no catch-up storm */
			timeout = 1;
		}
		for (uint64_t k = 0; k < want; k++) {
			uint32_t i = (uint32_t)(next++ % w->n);
			lw_probe_begin(p, ids[i], 0);
			site_body(spins_of(w->first + i));
			lw_probe_end(p);
		}
		__atomic_store_n(&w->done, w->done + want, __ATOMIC_RELAXED);
		struct epoll_event ev;
		lw_probe_wait_enter(p);
		epoll_wait(ep, &ev, 1, timeout);
		lw_probe_wait_exit(p);
	}
	lw_probe_free(p);
out:
	if (ep >= 0)
		close(ep);
	free(ids);
	return NULL;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-k SITES] [-n RATE] [-s SECONDS]\n"
		"  -k SITES    sites in all, 1..%d (10000), %d per loop "
		"thread\n"
		"  -n RATE     callbacks per second in all (100000); 0: flat "
		"out\n"
		"  -s SECONDS  how long to run (60)\n",
		argv0, SITES_MAX, SITES_PER_LOOP);
	exit(2);
}

static double real_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t total_done(const struct worker *w, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += __atomic_load_n(&w[i].done, __ATOMIC_RELAXED);
	return sum;
}

int main(int argc, char **argv)
{
	static struct worker w[LOOPS_MAX];
	uint64_t sites = 10000, rate = 100000, seconds = 60;
	int c, failed = 0;

	while ((c = getopt(argc, argv, "k:n:s:h")) != -1) {
		switch (c) {
		case 'k':
			sites = bench_arg_u64(argv[0], optarg, 1, SITES_MAX,
					      usage);
			break;
		case 'n':
			rate = bench_arg_u64(argv[0], optarg, 0, 100000000,
					     usage);
			break;
		case 's':
			seconds =
				bench_arg_u64(argv[0], optarg, 1, 86400, usage);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);

	size_t nloops = (sites + SITES_PER_LOOP - 1) / SITES_PER_LOOP;
	uint64_t t_end = bench_now_ns() + seconds * 1000000000ull;
	for (size_t i = 0; i < nloops; i++) {
		w[i].first = (uint32_t)(i * SITES_PER_LOOP);
		w[i].n = (uint32_t)(sites - w[i].first < SITES_PER_LOOP
					    ? sites - w[i].first
					    : SITES_PER_LOOP);
		/* Each loop's share of the rate, by its share of sites. */
		w[i].rate = rate ? (rate * w[i].n + sites - 1) / sites : 0;
		w[i].t_end = t_end;
		BENCH_CHECK(pthread_create(&w[i].thread, NULL, run_loop, &w[i]),
			    "pthread_create");
	}
	/* A driver may attach once every loop has its ring and sites. */
	for (size_t i = 0; i < nloops; i++)
		while (!__atomic_load_n(&w[i].ready, __ATOMIC_ACQUIRE))
			usleep(1000);
	printf("# ready pid %d sites %" PRIu64 " loops %zu rate %" PRIu64
	       " seconds %" PRIu64 "\n",
	       (int)getpid(), sites, nloops, rate, seconds);
	fflush(stdout);

	uint64_t sec = 0, last = total_done(w, nloops),
		 last_ns = bench_now_ns();
	while (last_ns < t_end) {
		bench_sleep_until(last_ns + 1000000000ull < t_end
					  ? last_ns + 1000000000ull
					  : t_end);
		uint64_t now = bench_now_ns(), done = total_done(w, nloops);
		printf("sec %" PRIu64 " real %.3f callbacks %" PRIu64
		       " per_s %.0f\n",
		       ++sec, real_now(), done,
		       (double)(done - last) * 1e9 / (double)(now - last_ns));
		fflush(stdout);
		last = done;
		last_ns = now;
	}
	for (size_t i = 0; i < nloops; i++) {
		pthread_join(w[i].thread, NULL);
		failed |= w[i].failed;
	}
	printf("sites_callbacks %" PRIu64 "\n", total_done(w, nloops));
	return failed;
}
