/*
 * hist.h - per-site latency histograms: a log-linear (HDR-style) histogram
 * of nanosecond durations in a fixed-size struct, so that the agent's memory
 * is bounded by the number of sites, never by how long it runs.
 *
 * Layout.  Values below 64 ns have one bucket each (exact).  Above, every
 * power of two [2^e, 2^(e+1)) is cut into LW_HIST_SUB = 32 linear
 * sub-buckets of width 2^(e-5), up to 2^42 ns (73.3 minutes); everything
 * from 2^42 ns on shares one last bucket, [2^42, UINT64_MAX].
 *
 *     bucket index  range (ns)                      width
 *     0 .. 63       [0, 64)                         1
 *     64 .. 95      [64, 128)                       2
 *     96 .. 127     [128, 256)                      4
 *     ...
 *     32*(e-5) + 32 .. 32*(e-5) + 63
 *                   [2^e, 2^(e+1)), 6 <= e <= 41    2^(e-5)
 *     1216          [2^42, UINT64_MAX]              (overflow)
 *
 * A bucket's width is at most 1/32 of its lower bound, so a quantile, which
 * is reported as the upper bound of its bucket, is never below the true
 * value and at most 1/32 (3.125 %) above it; below 64 ns, and for the
 * minimum and the maximum, it is exact.  32 sub-buckets rather than 16:
 * 3 % is finer than anyone reads a p99, and the price (9.8 KB per site
 * instead of 5) is small beside one site's symbol and stack data.  The
 * range ends at 2^42 ns because a callback that runs for more than an hour
 * is reported by its exact maximum anyway; past it, quantiles that land in
 * the overflow bucket are reported as the maximum, still never below the
 * true value.
 *
 * Counts are uint64_t, exact.  The sum saturates at UINT64_MAX (584 years
 * of nanoseconds; only a corrupt ring can get there) instead of wrapping,
 * so a hostile record can inflate a total but never make it small.
 *
 * A zeroed struct (memset 0, or static storage) is an empty histogram: the
 * minimum is kept inverted (min_inv = ~min) so that 0 means "none yet".
 * No call allocates; adding is O(1), a count-leading-zeros and a few
 * conditional moves.  Not thread-safe: one writer, as in the agent's
 * aggregation loop; readers on other threads take a copy under the
 * caller's lock, or merge a snapshot.
 */
#ifndef LW_HIST_H
#define LW_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LW_HIST_SUB_BITS 5
#define LW_HIST_SUB (1u << LW_HIST_SUB_BITS) /* sub-buckets per power of 2 */
#define LW_HIST_EXACT (2u * LW_HIST_SUB) /* values below this are exact */
#define LW_HIST_TOP_BITS 42 /* 2^42 ns = 73.3 min: the overflow bucket */
#define LW_HIST_OVERFLOW_NS (UINT64_C(1) << LW_HIST_TOP_BITS)
/* The index of the overflow bucket, [2^42, UINT64_MAX], which is the last. */
#define LW_HIST_OVERFLOW \
	((LW_HIST_TOP_BITS - LW_HIST_SUB_BITS + 1) * LW_HIST_SUB) /* 1216 */
#define LW_HIST_BUCKETS (LW_HIST_OVERFLOW + 1) /* 1217 */

typedef struct lw_hist {
	uint64_t count; /* values added; equals the sum of counts[] */
	uint64_t sum; /* their sum in ns, saturating at UINT64_MAX */
	uint64_t min_inv; /* ~(smallest value): 0 when empty, as memset gives */
	uint64_t max; /* largest value (0 when empty) */
	uint64_t counts[LW_HIST_BUCKETS];
} lw_hist_t;

/*
 * The bucket of ns.  With e = the index of ns's top bit, taken as at least
 * 5: (e - 5) * 32 + (ns >> (e - 5)).  For ns < 64 that is ns itself;
 * above, ns >> (e - 5) is in [32, 64): 32 sub-buckets per power of two.
 * The formula grows with ns, so every value from 2^42 on maps at or past
 * LW_HIST_OVERFLOW and the clamp puts it there.
 */
static inline size_t lw_hist_bucket_index(uint64_t ns)
{
	unsigned e = 63u - (unsigned)__builtin_clzll(ns | 1);
	unsigned s = e > LW_HIST_SUB_BITS ? e - LW_HIST_SUB_BITS : 0;
	size_t i = (size_t)s * LW_HIST_SUB + (size_t)(ns >> s);
	return i < LW_HIST_OVERFLOW ? i : LW_HIST_OVERFLOW;
}

/* Add one duration: O(1), no allocation, no failure. */
static inline void lw_hist_add(lw_hist_t *h, uint64_t ns)
{
	uint64_t s;

	h->counts[lw_hist_bucket_index(ns)]++;
	h->count++;
	if (__builtin_add_overflow(h->sum, ns, &s))
		s = UINT64_MAX;
	h->sum = s;
	if (ns > h->max)
		h->max = ns;
	if (~ns > h->min_inv)
		h->min_inv = ~ns;
}

/* Add the same duration n times (n == 0 does nothing). */
void lw_hist_add_n(lw_hist_t *h, uint64_t ns, uint64_t n);

/* Empty h (the same as memset 0). */
void lw_hist_reset(lw_hist_t *h);

/* Add everything in src to dst: afterwards dst is what adding both sets of
 * values to one histogram would have given (the sum saturating alike). */
void lw_hist_merge(lw_hist_t *dst, const lw_hist_t *src);

/* The range of bucket i < LW_HIST_BUCKETS: [*lo, *hi), except for the last
 * (overflow) bucket, whose *hi is UINT64_MAX and inclusive. */
void lw_hist_bucket_range(size_t i, uint64_t *lo, uint64_t *hi);

/* LW_HIST_BUCKETS, for documentation and for sizing output. */
size_t lw_hist_bucket_count(void);

/*
 * The q-quantile, q in [0, 1], by the nearest-rank definition: the smallest
 * value v such that at least ceil(q * count) values are <= v (at least one).
 * Reported as the inclusive upper bound of v's bucket, clamped to the
 * maximum: never below the true value, and below 2^42 ns at most 1/32
 * above it (in the overflow bucket: the maximum).  q <= 0 (or
 * NaN) gives the exact minimum, q >= 1 the exact maximum; 0 when empty.
 */
uint64_t lw_hist_quantile(const lw_hist_t *h, double q);

/* Several quantiles in one pass over the buckets: out[i] is
 * lw_hist_quantile(h, qs[i]).  Fastest with qs ascending; any order works. */
void lw_hist_quantiles(const lw_hist_t *h, const double *qs, uint64_t *out,
		       size_t n);

static inline uint64_t lw_hist_count(const lw_hist_t *h)
{
	return h->count;
}

/* The sum of all values in ns, UINT64_MAX if it would not fit. */
static inline uint64_t lw_hist_sum(const lw_hist_t *h)
{
	return h->sum;
}

/* The exact smallest value; 0 when empty. */
static inline uint64_t lw_hist_min(const lw_hist_t *h)
{
	return h->count ? ~h->min_inv : 0;
}

/* The exact largest value; 0 when empty. */
static inline uint64_t lw_hist_max(const lw_hist_t *h)
{
	return h->max;
}

/* The mean in ns (rounded down); 0 when empty. */
static inline uint64_t lw_hist_mean(const lw_hist_t *h)
{
	return h->count ? h->sum / h->count : 0;
}

/*
 * Call fn for every non-empty bucket in ascending order with its range
 * [lo, hi) (for the overflow bucket hi is UINT64_MAX, inclusive) and its
 * count: for drawing bars and for JSON.  A non-zero return from fn stops
 * the walk and is returned; otherwise 0.
 */
int lw_hist_each(const lw_hist_t *h,
		 int (*fn)(void *ctx, uint64_t lo, uint64_t hi, uint64_t count),
		 void *ctx);

#endif /* LW_HIST_H */
