/*
 * hist.c - the out-of-line part of the latency histograms (hist.h): merge,
 * bucket ranges, quantiles and the walk over buckets.  Adding a value is
 * inline in hist.h, since the aggregation loop calls it once per record.
 */
#include "hist.h"

#include <string.h>

_Static_assert(LW_HIST_OVERFLOW == 1216, "the layout documented in hist.h");
_Static_assert(LW_HIST_OVERFLOW_NS >= UINT64_C(3600000000000),
	       "the histogram covers at least one hour");

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t s;

	return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

void lw_hist_add_n(lw_hist_t *h, uint64_t ns, uint64_t n)
{
	uint64_t total;

	/* Zero times must not touch the minimum or the maximum. */
	if (n == 0)
		return;
	h->counts[lw_hist_bucket_index(ns)] += n;
	h->count += n;
	if (__builtin_mul_overflow(ns, n, &total))
		total = UINT64_MAX;
	h->sum = sat_add(h->sum, total);
	if (ns > h->max)
		h->max = ns;
	if (~ns > h->min_inv)
		h->min_inv = ~ns;
}

void lw_hist_reset(lw_hist_t *h)
{
	memset(h, 0, sizeof(*h));
}

void lw_hist_merge(lw_hist_t *dst, const lw_hist_t *src)
{
	/* A plain loop over the counts, which the compiler vectorizes. */
	for (size_t i = 0; i < LW_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->sum = sat_add(dst->sum, src->sum);
	if (src->max > dst->max)
		dst->max = src->max;
	/* An empty src has min_inv 0, which never wins. */
	if (src->min_inv > dst->min_inv)
		dst->min_inv = src->min_inv;
}

void lw_hist_bucket_range(size_t i, uint64_t *lo, uint64_t *hi)
{
	if (i >= LW_HIST_OVERFLOW) {
		*lo = LW_HIST_OVERFLOW_NS;
		*hi = UINT64_MAX;
		return;
	}
	if (i < LW_HIST_EXACT) {
		*lo = i;
		*hi = i + 1;
		return;
	}
	/* The inverse of lw_hist_bucket_index: bucket i holds the values
	 * whose top six bits are m, shifted left by s. */
	unsigned s = (unsigned)(i / LW_HIST_SUB) - 1;
	uint64_t m = i - (size_t)s * LW_HIST_SUB;
	*lo = m << s;
	*hi = (m + 1) << s;
}

size_t lw_hist_bucket_count(void)
{
	return LW_HIST_BUCKETS;
}

/*
 * The rank (1-based) of the q-quantile among count values: ceil(q * count),
 * in [1, count].  q * count is computed in double, where 0.07 * 100 comes
 * out as 7.000000000000001: a product within a relative 1e-12 above an
 * integer is taken as that integer, so that the rank is what a person
 * computing it by hand would expect.  count must not be 0; q is in (0, 1).
 */
static uint64_t hist_rank(uint64_t count, double q)
{
	double x = q * (double)count;
	uint64_t r;

	/* Also keeps the conversion below in range. */
	if (!(x < (double)count))
		return count;
	r = (uint64_t)x; /* floor, since x >= 0; libm is not linked */
	if (x - (double)r > x * 1e-12)
		r++;
	return r < 1 ? 1 : r > count ? count : r;
}

/* The reported value for bucket i: its inclusive upper bound, clamped to
 * the maximum (the quantile is in the bucket, and never above max). */
static uint64_t hist_report(const lw_hist_t *h, size_t i)
{
	uint64_t lo, hi;

	lw_hist_bucket_range(i, &lo, &hi);
	if (i < LW_HIST_OVERFLOW)
		hi--;
	return hi < h->max ? hi : h->max;
}

uint64_t lw_hist_quantile(const lw_hist_t *h, double q)
{
	uint64_t out;

	lw_hist_quantiles(h, &q, &out, 1);
	return out;
}

/* The answer for a q that needs no walk: the exact minimum or maximum.
 * Returns 1 with *out set, or 0 when the buckets must be walked. */
static int hist_edge(const lw_hist_t *h, double q, uint64_t *out)
{
	if (h->count == 0) {
		*out = 0;
		return 1;
	}
	if (!(q > 0)) { /* q <= 0, or NaN */
		*out = lw_hist_min(h);
		return 1;
	}
	if (q >= 1) {
		*out = h->max;
		return 1;
	}
	return 0;
}

void lw_hist_quantiles(const lw_hist_t *h, const double *qs, uint64_t *out,
		       size_t n)
{
	size_t i = 0; /* the bucket the walk is at */
	uint64_t below = 0; /* values in the buckets before i */
	uint64_t last_rank = 0;

	for (size_t k = 0; k < n; k++) {
		uint64_t rank;

		if (hist_edge(h, qs[k], &out[k]))
			continue;
		rank = hist_rank(h->count, qs[k]);
		/* Out of order: walk again from the first bucket. */
		if (rank < last_rank) {
			i = 0;
			below = 0;
		}
		last_rank = rank;
		/* The bucket in which the cumulative count reaches rank.
		 * count is the sum of counts[], so the walk ends there; the
		 * bound on i keeps an inconsistent struct (a caller that
		 * wrote into it) inside the array. */
		while (i < LW_HIST_OVERFLOW && below + h->counts[i] < rank) {
			below += h->counts[i];
			i++;
		}
		out[k] = hist_report(h, i);
	}
}

int lw_hist_each(const lw_hist_t *h,
		 int (*fn)(void *ctx, uint64_t lo, uint64_t hi, uint64_t count),
		 void *ctx)
{
	for (size_t i = 0; i < LW_HIST_BUCKETS; i++) {
		uint64_t lo, hi;
		int r;

		if (h->counts[i] == 0)
			continue;
		lw_hist_bucket_range(i, &lo, &hi);
		r = fn(ctx, lo, hi, h->counts[i]);
		if (r != 0)
			return r;
	}
	return 0;
}
