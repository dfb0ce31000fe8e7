/*
 * test_hist.c - the per-site latency histograms (agent/hist.[ch]): the
 * bucket layout, exact small cases, quantiles against a sorted array,
 * merge, add_n and the walk over buckets.
 */
#include "lwtest.h"

#include "hist.h"

/* A deterministic generator (splitmix64), so a failure can be replayed. */
static uint64_t hist_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Log-uniform by octave over [1, 2^top_bits): an octave chosen uniformly,
 * then a value uniform inside it. */
static uint64_t hist_rand_log(uint64_t *s, unsigned top_bits)
{
	unsigned e = (unsigned)(hist_rand(s) % top_bits);
	uint64_t lo = UINT64_C(1) << e;

	return lo + hist_rand(s) % lo;
}

static int hist_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static lw_hist_t *hist_new(void)
{
	lw_hist_t *h = calloc(1, sizeof(*h));

	ASSERT(h != NULL);
	return h;
}

/* ASSERT_EQ compares as long long, which UINT64_MAX is not: these compare
 * as uint64_t and print both. */
#define ASSERT_U64_EQ(a, b)                                             \
	do {                                                            \
		uint64_t hist_a_ = (a), hist_b_ = (b);                  \
		if (hist_a_ != hist_b_)                                 \
			LWT_FAIL("assertion failed: %s == %s (%" PRIu64 \
				 " vs %" PRIu64 ")",                    \
				 #a, #b, hist_a_, hist_b_);             \
	} while (0)
#define ASSERT_U64_LE(a, b)                                             \
	do {                                                            \
		uint64_t hist_a_ = (a), hist_b_ = (b);                  \
		if (!(hist_a_ <= hist_b_))                              \
			LWT_FAIL("assertion failed: %s <= %s (%" PRIu64 \
				 " vs %" PRIu64 ")",                    \
				 #a, #b, hist_a_, hist_b_);             \
	} while (0)

TEST(hist_sizes)
{
	printf("sizeof(lw_hist_t) = %zu bytes, %zu buckets, exact below %u "
	       "ns, %u sub-buckets per power of two, overflow from %" PRIu64
	       " ns (%.1f min)\n",
	       sizeof(lw_hist_t), lw_hist_bucket_count(), LW_HIST_EXACT,
	       LW_HIST_SUB, LW_HIST_OVERFLOW_NS,
	       (double)LW_HIST_OVERFLOW_NS / 60e9);
	ASSERT_EQ(lw_hist_bucket_count(), LW_HIST_BUCKETS);
	ASSERT_EQ(sizeof(lw_hist_t), 4 * 8 + LW_HIST_BUCKETS * 8);
	/* One hour in ns is still in a bucket of its own size class. */
	ASSERT_LT(lw_hist_bucket_index(UINT64_C(3600000000000)),
		  LW_HIST_OVERFLOW);
}

/* Every bucket's range: contiguous from 0 to UINT64_MAX, each bound maps
 * back to its bucket, and widths are within 1/32 of the lower bound. */
TEST(hist_bucket_layout)
{
	uint64_t next = 0;

	for (size_t i = 0; i < LW_HIST_BUCKETS; i++) {
		uint64_t lo, hi;

		lw_hist_bucket_range(i, &lo, &hi);
		ASSERT_U64_EQ(lo, next);
		ASSERT_U64_LE(lo + 1, hi);
		ASSERT_EQ(lw_hist_bucket_index(lo), i);
		if (i == LW_HIST_OVERFLOW) {
			ASSERT_U64_EQ(hi, UINT64_MAX);
			ASSERT_EQ(lw_hist_bucket_index(UINT64_MAX), i);
			break;
		}
		ASSERT_EQ(lw_hist_bucket_index(hi - 1), i);
		ASSERT_EQ(lw_hist_bucket_index(hi), i + 1);
		if (lo < LW_HIST_EXACT)
			ASSERT_U64_EQ(hi - lo, 1);
		else
			ASSERT_U64_LE((hi - lo) * LW_HIST_SUB, lo);
		next = hi;
	}
	ASSERT_U64_EQ(next, LW_HIST_OVERFLOW_NS);
}

/* Random values of every magnitude fall inside their bucket's range. */
TEST(hist_bucket_random)
{
	uint64_t s = 1;

	for (int k = 0; k < 1000000; k++) {
		uint64_t v = hist_rand(&s) >> (hist_rand(&s) % 64);
		uint64_t lo, hi;
		size_t i = lw_hist_bucket_index(v);

		ASSERT_LT(i, LW_HIST_BUCKETS);
		lw_hist_bucket_range(i, &lo, &hi);
		ASSERT_U64_LE(lo, v);
		if (i < LW_HIST_OVERFLOW)
			ASSERT_LT(v - lo, hi - lo);
	}
}

static const double hist_all_q[] = { 0,	  0.001, 0.01,	0.1,	0.25, 0.5,
				     0.9, 0.99,	 0.999, 0.9999, 1 };
#define HIST_NQ (sizeof(hist_all_q) / sizeof(hist_all_q[0]))

TEST(hist_empty)
{
	lw_hist_t *h = hist_new(); /* zeroed: empty */

	ASSERT_U64_EQ(lw_hist_count(h), 0);
	ASSERT_U64_EQ(lw_hist_sum(h), 0);
	ASSERT_U64_EQ(lw_hist_min(h), 0);
	ASSERT_U64_EQ(lw_hist_max(h), 0);
	ASSERT_U64_EQ(lw_hist_mean(h), 0);
	for (size_t k = 0; k < HIST_NQ; k++)
		ASSERT_U64_EQ(lw_hist_quantile(h, hist_all_q[k]), 0);
	free(h);
}

/* One value, of every kind of magnitude: every quantile is that value,
 * exactly (the bucket's bound is clamped to the maximum). */
TEST(hist_one_value)
{
	static const uint64_t vals[] = { 0,
					 1,
					 63,
					 64,
					 65,
					 1000,
					 123456789,
					 UINT64_C(3600000000000),
					 LW_HIST_OVERFLOW_NS - 1,
					 LW_HIST_OVERFLOW_NS,
					 UINT64_MAX - 1,
					 UINT64_MAX };
	lw_hist_t *h = hist_new();

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		lw_hist_reset(h);
		lw_hist_add(h, vals[i]);
		ASSERT_U64_EQ(lw_hist_count(h), 1);
		ASSERT_U64_EQ(lw_hist_sum(h), vals[i]);
		ASSERT_U64_EQ(lw_hist_min(h), vals[i]);
		ASSERT_U64_EQ(lw_hist_max(h), vals[i]);
		ASSERT_U64_EQ(lw_hist_mean(h), vals[i]);
		for (size_t k = 0; k < HIST_NQ; k++)
			ASSERT_U64_EQ(lw_hist_quantile(h, hist_all_q[k]),
				      vals[i]);
		ASSERT_U64_EQ(h->counts[lw_hist_bucket_index(vals[i])], 1);
	}
	free(h);
}

TEST(hist_all_equal)
{
	lw_hist_t *h = hist_new();

	for (int i = 0; i < 1000; i++)
		lw_hist_add(h, 12345);
	ASSERT_U64_EQ(lw_hist_count(h), 1000);
	ASSERT_U64_EQ(lw_hist_sum(h), 12345000);
	ASSERT_U64_EQ(lw_hist_min(h), 12345);
	for (size_t k = 0; k < HIST_NQ; k++)
		ASSERT_U64_EQ(lw_hist_quantile(h, hist_all_q[k]), 12345);
	free(h);
}

/* Zero-length callbacks happen (a coarse clock): 0 is a value like any. */
TEST(hist_zero_ns)
{
	lw_hist_t *h = hist_new();

	lw_hist_add(h, 0);
	lw_hist_add(h, 0);
	lw_hist_add(h, 5);
	ASSERT_U64_EQ(lw_hist_count(h), 3);
	ASSERT_U64_EQ(lw_hist_min(h), 0);
	ASSERT_U64_EQ(lw_hist_max(h), 5);
	ASSERT_U64_EQ(lw_hist_sum(h), 5);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.5), 0);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.66), 0);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.67), 5);
	free(h);
}

/* Small values are exact, and the rank is the nearest rank: 0.07 * 100
 * is 7.000000000000001 in double, and still means the 7th value. */
TEST(hist_exact_small)
{
	lw_hist_t *h = hist_new();

	for (uint64_t v = 1; v <= 50; v++) {
		lw_hist_add(h, v);
		lw_hist_add(h, v);
	}
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.07), 4); /* rank 7 of 100 */
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.5), 25);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.51), 26);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.99), 50);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.001), 1);
	ASSERT_U64_EQ(lw_hist_quantile(h, -1), 1);
	ASSERT_U64_EQ(lw_hist_quantile(h, 2), 50);
	ASSERT_U64_EQ(lw_hist_quantile(h, __builtin_nan("")),
		      1); /* NaN: the min */
	free(h);
}

TEST(hist_uint64_max)
{
	lw_hist_t *h = hist_new();

	lw_hist_add(h, UINT64_MAX);
	lw_hist_add(h, UINT64_MAX);
	lw_hist_add(h, 1);
	ASSERT_U64_EQ(lw_hist_count(h), 3);
	ASSERT_U64_EQ(lw_hist_sum(h), UINT64_MAX); /* saturated */
	ASSERT_U64_EQ(lw_hist_min(h), 1);
	ASSERT_U64_EQ(lw_hist_max(h), UINT64_MAX);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.5), UINT64_MAX);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.3), 1);
	ASSERT_U64_EQ(h->counts[LW_HIST_OVERFLOW], 2);

	/* add_n saturates the product too. */
	lw_hist_reset(h);
	lw_hist_add_n(h, UINT64_C(1) << 40, UINT64_C(1) << 30);
	ASSERT_U64_EQ(lw_hist_sum(h), UINT64_MAX);
	ASSERT_U64_EQ(lw_hist_count(h), UINT64_C(1) << 30);
	free(h);
}

/* Past the overflow bound (2^42 ns), quantiles landing there are the
 * maximum, never below the true value. */
TEST(hist_overflow_bucket)
{
	lw_hist_t *h = hist_new();
	uint64_t big = LW_HIST_OVERFLOW_NS * 3;

	for (int i = 0; i < 90; i++)
		lw_hist_add(h, 1000);
	for (int i = 0; i < 10; i++)
		lw_hist_add(h, LW_HIST_OVERFLOW_NS + (uint64_t)i);
	lw_hist_add(h, big);
	/* 1000 is in [992, 1008): its bucket's bound is reported. */
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.5), 1007);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0.95), big);
	ASSERT_U64_EQ(lw_hist_quantile(h, 1), big);
	ASSERT_U64_EQ(h->counts[LW_HIST_OVERFLOW], 11);
	free(h);
}

/*
 * n values against the sorted array: for every q, the histogram's answer is
 * at least the true nearest-rank quantile and at most 1/32 above it (exact
 * below 64 ns, and exact at both ends).  The rank is computed here in
 * integers from q given in millionths, so the reference does not share
 * the code's floating-point path.
 */
static void hist_check_quantiles(uint64_t *v, size_t n, const char *what)
{
	static const uint32_t q_ppm[] = { 1,	  10,	  1000,	  10000,
					  100000, 250000, 500000, 750000,
					  900000, 990000, 999000, 999900,
					  999990, 999999, 1000000 };
	lw_hist_t *h = hist_new();
	double worst = 0;

	for (size_t i = 0; i < n; i++)
		lw_hist_add(h, v[i]);
	qsort(v, n, sizeof(v[0]), hist_cmp_u64);
	ASSERT_U64_EQ(lw_hist_count(h), n);
	ASSERT_U64_EQ(lw_hist_min(h), v[0]);
	ASSERT_U64_EQ(lw_hist_max(h), v[n - 1]);
	ASSERT_U64_EQ(lw_hist_quantile(h, 0), v[0]);
	for (size_t k = 0; k < sizeof(q_ppm) / sizeof(q_ppm[0]); k++) {
		uint64_t rank = ((uint64_t)q_ppm[k] * n + 999999) / 1000000;
		if (rank < 1)
			rank = 1;
		uint64_t truth = v[rank - 1];
		uint64_t got = lw_hist_quantile(h, q_ppm[k] / 1e6);

		if (got < truth || got - truth > truth / LW_HIST_SUB)
			LWT_FAIL("%s: q %.6f (rank %" PRIu64 " of %zu): got "
				 "%" PRIu64 ", true %" PRIu64,
				 what, q_ppm[k] / 1e6, rank, n, got, truth);
		if (truth < LW_HIST_EXACT)
			ASSERT_U64_EQ(got, truth);
		if (truth > 0 && (double)(got - truth) / truth > worst)
			worst = (double)(got - truth) / truth;
	}
	printf("%s: %zu values, worst relative error %.4f%% (bound %.4f%%)\n",
	       what, n, worst * 100, 100.0 / LW_HIST_SUB);
	free(h);
}

TEST_T(hist_quantiles_log_uniform, 60)
{
	size_t n = 1000000;
	uint64_t *v = malloc(n * sizeof(*v));
	uint64_t s = 42;

	ASSERT(v != NULL);
	for (size_t i = 0; i < n; i++)
		v[i] = hist_rand_log(&s, LW_HIST_TOP_BITS);
	hist_check_quantiles(v, n, "log-uniform [1 ns, 2^42 ns)");
	free(v);
}

/* Callback-like: most between 200 ns and 20 us, a tail to 100 ms, a few
 * sub-64 ns ones; every value a multiple of nothing in particular. */
TEST_T(hist_quantiles_callbacks, 60)
{
	size_t n = 1000000;
	uint64_t *v = malloc(n * sizeof(*v));
	uint64_t s = 7;

	ASSERT(v != NULL);
	for (size_t i = 0; i < n; i++) {
		uint64_t r = hist_rand(&s) % 1000;

		if (r < 20)
			v[i] = hist_rand(&s) % 64;
		else if (r < 970)
			v[i] = 200 + hist_rand_log(&s, 15) % 20000;
		else
			v[i] = hist_rand_log(&s, 27);
	}
	hist_check_quantiles(v, n, "callback mix");
	free(v);
}

/* Few values, so every rank boundary is exercised. */
TEST(hist_quantiles_small_n)
{
	uint64_t s = 3;
	uint64_t v[37];

	for (size_t n = 1; n <= 37; n++) {
		for (size_t i = 0; i < n; i++)
			v[i] = hist_rand_log(&s, 30);
		hist_check_quantiles(v, n, "small n");
	}
}

TEST(hist_quantiles_batch)
{
	static const double qs[] = { 0.5, 0.9, 0.99, 0.999, 1, 0.1, 0, 0.5 };
	uint64_t out[sizeof(qs) / sizeof(qs[0])];
	lw_hist_t *h = hist_new();
	uint64_t s = 11;

	for (int i = 0; i < 100000; i++)
		lw_hist_add(h, hist_rand_log(&s, 35));
	lw_hist_quantiles(h, qs, out, sizeof(qs) / sizeof(qs[0]));
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++)
		ASSERT_U64_EQ(out[k], lw_hist_quantile(h, qs[k]));
	free(h);
}

/* The struct is plain data: compare whole histograms with memcmp. */
static void hist_assert_same(const lw_hist_t *a, const lw_hist_t *b)
{
	ASSERT_U64_EQ(a->count, b->count);
	ASSERT_U64_EQ(a->sum, b->sum);
	ASSERT_U64_EQ(a->min_inv, b->min_inv);
	ASSERT_U64_EQ(a->max, b->max);
	ASSERT(memcmp(a, b, sizeof(*a)) == 0);
}

TEST(hist_merge)
{
	lw_hist_t *a = hist_new(), *b = hist_new(), *both = hist_new();
	lw_hist_t *empty = hist_new(), *c = hist_new();
	uint64_t s = 5;

	for (int i = 0; i < 100000; i++) {
		uint64_t v = hist_rand_log(&s, 40);

		lw_hist_add(i % 3 ? a : b, v);
		lw_hist_add(both, v);
	}
	lw_hist_add(b, UINT64_MAX); /* the sums saturate alike */
	lw_hist_add(both, UINT64_MAX);
	lw_hist_merge(a, b);
	hist_assert_same(a, both);

	/* Merging an empty one changes nothing (its min_inv is 0). */
	lw_hist_merge(a, empty);
	hist_assert_same(a, both);
	/* Into an empty one: a copy. */
	lw_hist_merge(c, both);
	hist_assert_same(c, both);
	ASSERT_U64_EQ(lw_hist_min(c), lw_hist_min(both));
	free(a);
	free(b);
	free(both);
	free(empty);
	free(c);
}

TEST(hist_add_n)
{
	lw_hist_t *a = hist_new(), *b = hist_new();

	lw_hist_add_n(a, 777, 0); /* nothing: min stays "none" */
	hist_assert_same(a, b);
	lw_hist_add_n(a, 777, 5);
	lw_hist_add_n(a, 3, 2);
	for (int i = 0; i < 5; i++)
		lw_hist_add(b, 777);
	lw_hist_add(b, 3);
	lw_hist_add(b, 3);
	hist_assert_same(a, b);
	free(a);
	free(b);
}

struct hist_each_ctx {
	uint64_t total, calls, prev_hi, stop_after;
	const lw_hist_t *h;
};

static int hist_each_fn(void *ctx, uint64_t lo, uint64_t hi, uint64_t count)
{
	struct hist_each_ctx *c = ctx;

	ASSERT(count > 0);
	ASSERT_U64_LE(c->prev_hi, lo); /* ascending, disjoint */
	ASSERT(lo < hi);
	ASSERT_U64_EQ(c->h->counts[lw_hist_bucket_index(lo)], count);
	c->prev_hi = hi;
	c->total += count;
	c->calls++;
	return c->calls == c->stop_after ? 42 : 0;
}

TEST(hist_each)
{
	lw_hist_t *h = hist_new();
	struct hist_each_ctx c = { .h = h };
	uint64_t s = 9, buckets = 0;

	ASSERT_EQ(lw_hist_each(h, hist_each_fn, &c), 0);
	ASSERT_U64_EQ(c.calls, 0);
	for (int i = 0; i < 200000; i++)
		lw_hist_add(h, hist_rand_log(&s, 44));
	lw_hist_add(h, 0);
	lw_hist_add(h, UINT64_MAX);
	for (size_t i = 0; i < LW_HIST_BUCKETS; i++)
		buckets += h->counts[i] != 0;
	ASSERT_EQ(lw_hist_each(h, hist_each_fn, &c), 0);
	ASSERT_U64_EQ(c.total, lw_hist_count(h));
	ASSERT_U64_EQ(c.calls, buckets);
	ASSERT_U64_EQ(c.prev_hi, UINT64_MAX);

	/* A non-zero return stops the walk and comes back. */
	c = (struct hist_each_ctx){ .h = h, .stop_after = 3 };
	ASSERT_EQ(lw_hist_each(h, hist_each_fn, &c), 42);
	ASSERT_U64_EQ(c.calls, 3);
	free(h);
}

TEST(hist_p100_is_max)
{
	lw_hist_t *h = hist_new();
	uint64_t s = 13, max = 0;

	for (int round = 0; round < 1000; round++) {
		uint64_t v = hist_rand_log(&s, 50);

		lw_hist_add(h, v);
		if (v > max)
			max = v;
		ASSERT_U64_EQ(lw_hist_quantile(h, 1.0), max);
		ASSERT_U64_EQ(lw_hist_max(h), max);
		/* Nothing reported above the max, whatever the q. */
		ASSERT_U64_LE(lw_hist_quantile(h, 0.999), max);
	}
	free(h);
}
