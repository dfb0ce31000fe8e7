/*
 * duration.c - durations parsed and formatted (see duration.h).
 *
 * The parser works in integers only: the whole part and up to 18 digits of
 * fraction are kept exactly and scaled by the unit in 128-bit arithmetic, so
 * "0.1s" is exactly 100000000 ns and no input can overflow on the way.
 */
#include "duration.h"
#include "why.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct unit {
	const char *name;
	uint64_t ns;
} units[] = {
	{ "ns", 1ull },		  { "us", 1000ull },
	{ "\xc2\xb5s", 1000ull }, /* µs, U+00B5 MICRO SIGN */
	{ "\xce\xbcs", 1000ull }, /* μs, U+03BC GREEK SMALL LETTER MU */
	{ "ms", 1000000ull },	  { "s", 1000000000ull },
	{ "m", 60000000000ull },  { "h", 3600000000000ull },
};

#define UNITS_HINT "ns, us, ms, s, m, h"

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int lw_duration_parse(const char *s, size_t len, uint64_t *ns, char *why,
		      size_t whylen)
{
	char q[64];
	uint64_t whole = 0, frac = 0, scale = 1;
	size_t i = 0, fdigits = 0;
	int all_zero = 1;

	lw_why_quote(s, len, q, sizeof(q));
	if (len == 0) {
		lw_why(why, whylen, "empty duration (write one like 50ms)");
		return -EINVAL;
	}
	if (s[0] == '-') {
		lw_why(why, whylen,
		       "bad duration '%s': negative (a duration is 0 or more)",
		       q);
		return -EINVAL;
	}
	if (!is_digit(s[0])) {
		lw_why(why, whylen,
		       "bad duration '%s': expected a number first (like 50ms)",
		       q);
		return -EINVAL;
	}
	for (; i < len && is_digit(s[i]); i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (whole > (UINT64_MAX - d) / 10)
			goto too_large;
		whole = whole * 10 + d;
		all_zero &= d == 0;
	}
	if (i < len && s[i] == '.') {
		i++;
		if (i >= len || !is_digit(s[i])) {
			lw_why(why, whylen,
			       "bad duration '%s': expected a digit after '.'",
			       q);
			return -EINVAL;
		}
		for (; i < len && is_digit(s[i]); i++) {
			/* Digits past the 18th are below 1 ns for every
			 * unit: they are dropped (rounded down). */
			if (fdigits < 18) {
				frac = frac * 10 + (uint64_t)(s[i] - '0');
				scale *= 10;
				fdigits++;
			}
			all_zero &= s[i] == '0';
		}
	}
	if (i == len) {
		if (all_zero) {
			*ns = 0;
			return 0;
		}
		lw_why(why, whylen,
		       "bad duration '%s': no unit (write it like %.*sms; "
		       "units " UNITS_HINT ")",
		       q, (int)(len < 20 ? len : 20), s);
		return -EINVAL;
	}
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t n = strlen(units[u].name);
		if (len - i != n || memcmp(s + i, units[u].name, n) != 0)
			continue;
		unsigned __int128 v =
			(unsigned __int128)whole * units[u].ns +
			(unsigned __int128)frac * units[u].ns / scale;
		if (v > LW_DURATION_MAX)
			goto too_large;
		*ns = (uint64_t)v;
		return 0;
	}
	{
		char uq[64];
		lw_why_quote(s + i, len - i, uq, sizeof(uq));
		lw_why(why, whylen,
		       "bad duration '%s': unknown unit '%s' (use " UNITS_HINT
		       ")",
		       q, uq);
	}
	return -EINVAL;
too_large:
	lw_why(why, whylen,
	       "bad duration '%s': too large (at most 2^64-2 ns, about 584 "
	       "years)",
	       q);
	return -EINVAL;
}

int lw_duration_parse_str(const char *s, uint64_t *ns, char *why, size_t whylen)
{
	return lw_duration_parse(s, strlen(s), ns, why, whylen);
}

/* snprintf that never returns a negative length. */
static size_t put(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static size_t put(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 ? 0 : (size_t)n;
}

size_t lw_duration_format(uint64_t ns, char *buf, size_t len)
{
	static const struct {
		const char *name;
		double ns;
	} hu[] = { { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 } };
	char num[48];

	if (ns < 1000)
		return put(buf, len, "%u ns", (unsigned)ns);
	for (size_t u = 0; u < 3; u++) {
		double v = (double)ns / hu[u].ns;
		int prec = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
		/* The largest unit that leaves 1 or more; 999.7 us would
		 * print as "1000 us": that is "1 ms". */
		if (u < 2 && v >= 999.5)
			continue;
		snprintf(num, sizeof(num), "%.*f", prec, v);
		if (strchr(num, '.') != NULL) {
			size_t n = strlen(num);
			while (num[n - 1] == '0')
				num[--n] = '\0';
			if (num[n - 1] == '.')
				num[--n] = '\0';
		}
		return put(buf, len, "%s %s", num, hu[u].name);
	}
	return put(buf, len, "? s"); /* not reached: seconds take the rest */
}

size_t lw_duration_format_exact(uint64_t ns, char *buf, size_t len)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} ex[] = { { "h", 3600000000000ull }, { "m", 60000000000ull },
		   { "s", 1000000000ull },    { "ms", 1000000ull },
		   { "us", 1000ull },	      { "ns", 1ull } };

	if (ns == 0)
		return put(buf, len, "0");
	for (size_t u = 0; u < sizeof(ex) / sizeof(ex[0]); u++)
		if (ns % ex[u].ns == 0)
			return put(buf, len, "%llu%s",
				   (unsigned long long)(ns / ex[u].ns),
				   ex[u].name);
	return 0; /* not reached: every ns divides by 1 */
}
