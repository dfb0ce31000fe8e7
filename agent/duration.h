/*
 * duration.h - durations as people write them ("50ms", "1.5s") and as
 * reports show them ("1.2 ms").
 *
 * The written form is a decimal number followed at once by a unit:
 *
 *     250ns  300us  300µs  50ms  1.5s  2m  1h  0
 *
 * Units are ns, us (or µs), ms, s, m (minutes) and h, lower case only, with
 * no space between number and unit.  A plain number is rejected, because a
 * budget of "50" is as likely to mean 50 ms as 50 s; the one exception is
 * "0", which is zero in every unit.  Fractions finer than 1 ns are rounded
 * down.  Negative numbers, "nan", "inf", exponents, a leading '+', and
 * anything of 2^64 - 1 ns (about 584 years) or more are rejected, each with
 * a one-line reason: UINT64_MAX is left free to mean "no limit".
 */
#ifndef LW_DURATION_H
#define LW_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* The largest duration that parses; UINT64_MAX means "no limit" to the
 * callers that store durations. */
#define LW_DURATION_MAX (UINT64_MAX - 1)

/* Parse len bytes at s (no NUL needed, nothing else around the duration).
 * 0 with *ns set, or -EINVAL with why = "bad duration '50': ..." (the caller
 * adds where it was). */
int lw_duration_parse(const char *s, size_t len, uint64_t *ns, char *why,
		      size_t whylen);

/* The same for a NUL-terminated string (a command-line flag). */
int lw_duration_parse_str(const char *s, uint64_t *ns, char *why,
			  size_t whylen);

/* For people: three significant digits without trailing zeros and a unit
 * after a space, "850 ns", "12.3 us", "1.2 ms", "150 ms", "2.5 s", "3600 s".
 * Like snprintf: the length the whole text needs, and buf (if len > 0) is
 * always NUL-terminated. */
size_t lw_duration_format(uint64_t ns, char *buf, size_t len);

/* Exact and parseable, in the largest unit that divides ns: "1500ms",
 * "2m", "7ns", "0".  Like snprintf.  (UINT64_MAX gives digits that do not
 * parse back; callers write "off" for it.) */
size_t lw_duration_format_exact(uint64_t ns, char *buf, size_t len);

#endif /* LW_DURATION_H */
