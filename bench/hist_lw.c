/*
 * hist_lw.c - how fast the agent aggregates: lw_hist_add() alone, and the
 * whole per-record aggregation loop the agent runs after draining a ring
 * (agent/hist.h).  The target of issue 5 is drain and aggregation at 20
 * million records per second or more; this program measures the
 * aggregation half (bench/ring_drain_lw.c measures the drain).
 *
 *   hist_add           one histogram, lw_hist_add() of a callback-like mix
 *                      of durations (below), taken from a 512 KiB array
 *                      that stays in cache: the add itself.
 *   hist_agg_sites16   the aggregation loop: an array of 32-byte
 *                      struct lw_ring_record, as lw_rr_read() fills it, read
 *                      in batches of HIST_BATCH; per record, the site id is
 *                      bounded (a hostile ring may write any), the site's
 *                      histogram is found by id in a flat array, the
 *                      duration added, and for timers the lateness added to
 *                      the loop's lag histogram.  16 sites.
 *   hist_agg_sites1000 the same with 1000 sites (9.8 MB of histograms,
 *                      past the caches): the worst case of a big server.
 *   model_agg_sites16, model_agg_sites1000
 *                      the agent's real aggregation (agent/model.h): every
 *                      record made a callback item and given to
 *                      lw_model_callback(), which finds the site in its
 *                      hash, adds to its histogram and the loop's lag and
 *                      busy time: what `loopwatch attach` does per record.
 *   hist_quantiles     p50, p90, p99, p99.9 and max of one site, in one
 *                      pass (lw_hist_quantiles), as a report does per site
 *                      per interval.
 *   hist_merge         lw_hist_merge() of one site's histogram into a
 *                      total, as the per-interval summary does.
 *
 * The mix: 2 % under 64 ns, 95 % between 200 ns and 20 us (log-like), 3 %
 * a tail up to 134 ms; a quarter of the records are timers with a lateness
 * up to 1 ms.  Sites are skewed: half the records go to the first eighth of
 * the sites.
 *
 * Prints "METRIC ns_per_op VALUE" (the median of the repetitions, per
 * record or per call) and "METRIC records_per_s VALUE" for the rates.
 * Checks that every record was counted once (the sum of all sites' counts
 * and the records refused equals the records read) and exits 1 if not.
 */
#include "lib/bench.h"

#include <loopwatch.h>
#include <loopwatch_ring.h>

#include "../agent/model.h"

#include "hist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIST_DURATIONS (1u << 16) /* the add's inputs: 512 KiB */
#define HIST_ADDS 50000000 /* adds per repetition */
#define HIST_RECORDS (1u << 20) /* the record array: 32 MiB */
#define HIST_PASSES 16 /* passes over it per repetition */
#define HIST_BATCH 4096 /* records per batch, as the drain reads them */
#define HIST_QUANTILE_CALLS 200000

static uint64_t hist_rng = 0x1234567;

/* splitmix64: deterministic, so every run does the same work. */
static uint64_t hist_rand(void)
{
	uint64_t z = (hist_rng += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform inside an octave chosen uniformly in [0, bits). */
static uint64_t hist_rand_log(unsigned bits)
{
	uint64_t lo = UINT64_C(1) << (hist_rand() % bits);

	return lo + hist_rand() % lo;
}

static uint64_t hist_duration(void)
{
	uint64_t r = hist_rand() % 100;

	if (r < 2)
		return hist_rand() % 64;
	if (r < 97)
		return 200 + hist_rand_log(15) % 20000;
	return hist_rand_log(27);
}

/* What the agent keeps per loop: a histogram per site id, the lag, and
 * what it refused. */
struct hist_agg {
	lw_hist_t *sites; /* sites[id - 1] */
	uint32_t nsites;
	lw_hist_t lag;
	uint64_t refused; /* records with a site id out of range */
};

/* The aggregation of one batch: the agent's inner loop. */
static void hist_agg_batch(struct hist_agg *a, const struct lw_ring_record *rec,
			   size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t site = rec[i].site;

		/* Site ids come from the target: 1-based, bounded here. */
		if (site - 1 >= a->nsites) {
			a->refused++;
			continue;
		}
		lw_hist_add(&a->sites[site - 1], rec[i].duration_ns);
		if (rec[i].kind == LW_KIND_TIMER)
			lw_hist_add(&a->lag, rec[i].lateness_ns);
	}
}

static void hist_fill_records(struct lw_ring_record *rec, size_t n,
			      uint32_t nsites)
{
	uint64_t t = 1000000000;

	for (size_t i = 0; i < n; i++) {
		uint64_t r = hist_rand();
		uint32_t hot = nsites / 8 ? nsites / 8 : 1;
		/* Half the records to the hot eighth of the sites; one in
		 * 100000 with a site id a corrupt ring could write. */
		uint32_t site = (r & 1) ? 1 + (uint32_t)((r >> 1) % hot)
					: 1 + (uint32_t)((r >> 1) % nsites);
		if ((r >> 40) % 100000 == 0)
			site = (r >> 20) & 1 ? 0 : nsites + 1;
		int timer = ((r >> 32) & 3) == 0;

		rec[i] = (struct lw_ring_record){
			.start_ns = t,
			.duration_ns = hist_duration(),
			.seq = (uint32_t)i,
			.site = site,
			.lateness_ns =
				timer ? (uint32_t)(hist_rand() % 1000000) : 0,
			.kind = timer ? LW_KIND_TIMER : LW_KIND_IO,
		};
		t += rec[i].duration_ns + 100;
	}
}

static double hist_bench_add(size_t adds)
{
	uint64_t *d = malloc(HIST_DURATIONS * sizeof(*d));
	lw_hist_t *h = calloc(1, sizeof(*h));

	if (d == NULL || h == NULL)
		bench_die("malloc", ENOMEM);
	for (size_t i = 0; i < HIST_DURATIONS; i++)
		d[i] = hist_duration();
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < adds; i++)
		lw_hist_add(h, d[i & (HIST_DURATIONS - 1)]);
	uint64_t t1 = bench_now_ns();
	if (lw_hist_count(h) != adds)
		bench_die("hist_add lost a value", 0);
	free(d);
	free(h);
	return (double)(t1 - t0) / (double)adds;
}

/* One repetition of the aggregation loop over `passes` passes of rec. */
static double hist_bench_agg(const struct lw_ring_record *rec, size_t n,
			     uint32_t nsites, int passes)
{
	struct hist_agg *a = calloc(1, sizeof(*a));
	uint64_t total = 0;

	if (a == NULL)
		bench_die("malloc", ENOMEM);
	a->nsites = nsites;
	a->sites = calloc(nsites, sizeof(*a->sites));
	if (a->sites == NULL)
		bench_die("malloc", ENOMEM);
	uint64_t t0 = bench_now_ns();
	for (int p = 0; p < passes; p++)
		for (size_t i = 0; i < n; i += HIST_BATCH)
			hist_agg_batch(a, rec + i,
				       n - i < HIST_BATCH ? n - i : HIST_BATCH);
	uint64_t t1 = bench_now_ns();
	for (uint32_t s = 0; s < nsites; s++)
		total += lw_hist_count(&a->sites[s]);
	if (total + a->refused != (uint64_t)n * (uint64_t)passes)
		bench_die("a record was not counted once", 0);
	free(a->sites);
	free(a);
	return (double)(t1 - t0) / ((double)n * passes);
}

/* One repetition of the agent's own aggregation: the model. */
static double hist_bench_model(const struct lw_ring_record *rec, size_t n,
			       int passes)
{
	lw_model_t *m = lw_model_new();
	lw_rec_loop_t loop = { .id = 1, .tid = 1, .ring_capacity = 65536 };
	uint64_t total = 0;

	if (m == NULL)
		bench_die("malloc", ENOMEM);
	lw_model_loop(m, &loop);
	uint64_t t0 = bench_now_ns();
	for (int p = 0; p < passes; p++)
		for (size_t i = 0; i < n; i++) {
			lw_rec_callback_t c = {
				.loop_id = 1,
				.site_id = rec[i].site,
				.kind = rec[i].kind,
				.flags = rec[i].flags,
				.lateness_ns = rec[i].lateness_ns,
				.start_ns = rec[i].start_ns,
				.duration_ns = rec[i].duration_ns,
			};
			lw_model_callback(m, &c);
		}
	uint64_t t1 = bench_now_ns();
	for (size_t s = 0; s < lw_model_nsites(m); s++)
		total += lw_hist_count(&lw_model_site_at(m, s)->hist);
	if (total != (uint64_t)n * (uint64_t)passes)
		bench_die("the model did not count every record once", 0);
	lw_model_free(m);
	return (double)(t1 - t0) / ((double)n * passes);
}

/* Quantiles and merge of one histogram of a million callback-like values. */
static void hist_bench_report(size_t calls, double *q_ns, double *merge_ns)
{
	static const double qs[] = { 0.5, 0.9, 0.99, 0.999, 1 };
	uint64_t out[5], sink = 0;
	lw_hist_t *h = calloc(1, sizeof(*h)), *total = calloc(1, sizeof(*h));

	if (h == NULL || total == NULL)
		bench_die("malloc", ENOMEM);
	for (int i = 0; i < 1000000; i++)
		lw_hist_add(h, hist_duration());
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < calls; i++) {
		lw_hist_quantiles(h, qs, out, 5);
		sink += out[2];
		/* Keep the calls from being folded into one. */
		__asm__ volatile("" : : "r"(h) : "memory");
	}
	uint64_t t1 = bench_now_ns();
	for (size_t i = 0; i < calls; i++)
		lw_hist_merge(total, h);
	uint64_t t2 = bench_now_ns();
	if (sink == 0 || lw_hist_count(total) != calls * lw_hist_count(h))
		bench_die("hist_quantiles or hist_merge went wrong", 0);
	*q_ns = (double)(t1 - t0) / (double)calls;
	*merge_ns = (double)(t2 - t1) / (double)calls;
	free(h);
	free(total);
}

static void hist_print_rate(const bench_metric_t *m)
{
	double v[BENCH_MAX_REPS], med;

	memcpy(v, m->v, (size_t)m->n * sizeof(v[0]));
	/* A small insertion sort: m->n is at most BENCH_MAX_REPS. */
	for (int i = 1; i < m->n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	med = m->n % 2 ? v[m->n / 2] : (v[m->n / 2 - 1] + v[m->n / 2]) / 2;
	printf("%s records_per_s %.3g\n", m->name, med > 0 ? 1e9 / med : 0);
}

int main(int argc, char **argv)
{
	bench_opts_t o;
	bench_metric_t add = { .name = "hist_add" };
	bench_metric_t agg16 = { .name = "hist_agg_sites16" };
	bench_metric_t agg1000 = { .name = "hist_agg_sites1000" };
	bench_metric_t model16 = { .name = "model_agg_sites16" };
	bench_metric_t model1000 = { .name = "model_agg_sites1000" };
	bench_metric_t quant = { .name = "hist_quantiles" };
	bench_metric_t merge = { .name = "hist_merge" };

	bench_init(argc, argv, &o);
	size_t adds = bench_count(&o, HIST_ADDS);
	size_t nrec = bench_count(&o, HIST_RECORDS);
	size_t calls = bench_count(&o, HIST_QUANTILE_CALLS);
	struct lw_ring_record *rec16 = malloc(nrec * sizeof(*rec16));
	struct lw_ring_record *rec1000 = malloc(nrec * sizeof(*rec1000));

	if (rec16 == NULL || rec1000 == NULL)
		bench_die("malloc", ENOMEM);
	hist_fill_records(rec16, nrec, 16);
	hist_fill_records(rec1000, nrec, 1000);

	for (int r = 0; r < o.reps; r++) {
		double q_ns, m_ns;

		bench_metric_add(&add, hist_bench_add(adds));
		bench_metric_add(&agg16,
				 hist_bench_agg(rec16, nrec, 16, HIST_PASSES));
		bench_metric_add(&agg1000, hist_bench_agg(rec1000, nrec, 1000,
							  HIST_PASSES));
		bench_metric_add(&model16,
				 hist_bench_model(rec16, nrec, HIST_PASSES));
		bench_metric_add(&model1000,
				 hist_bench_model(rec1000, nrec, HIST_PASSES));
		hist_bench_report(calls, &q_ns, &m_ns);
		bench_metric_add(&quant, q_ns);
		bench_metric_add(&merge, m_ns);
	}
	bench_metric_print(&add);
	bench_metric_print(&agg16);
	bench_metric_print(&agg1000);
	bench_metric_print(&model16);
	bench_metric_print(&model1000);
	bench_metric_print(&quant);
	bench_metric_print(&merge);
	hist_print_rate(&add);
	hist_print_rate(&agg16);
	hist_print_rate(&agg1000);
	hist_print_rate(&model16);
	hist_print_rate(&model1000);
	free(rec16);
	free(rec1000);
	return 0;
}
