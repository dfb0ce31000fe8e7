/*
 * test_budget.c - budgets for `loopwatch check` (agent/budget.c) and
 * durations (agent/duration.c): every key, every error with its message and
 * position, globs against fnmatch, precedence, flags over files, bounds,
 * and the round trip through lw_budget_format.
 */
#include "lwtest.h"

#include "budget.h"
#include "duration.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>

#define MS 1000000ull
#define S 1000000000ull

static lw_budget_t *parse_ok(const char *text)
{
	lw_budget_t *b = lw_budget_new();
	char why[512] = "";

	ASSERT(b != NULL);
	if (lw_budget_parse(b, "b.conf", text, strlen(text), why,
			    sizeof(why)) != 0)
		LWT_FAIL("parse failed: %s", why);
	return b;
}

/* The text must fail with exactly this reason, and change nothing. */
static void parse_err_n(const char *text, size_t len, const char *want)
{
	lw_budget_t *b = lw_budget_new();
	lw_budget_values_t v;
	char why[512] = "";

	ASSERT(b != NULL);
	if (lw_budget_parse(b, "b.conf", text, len, why, sizeof(why)) !=
	    -EINVAL)
		LWT_FAIL("parse of \"%s\" did not fail", text);
	if (strcmp(why, want) != 0)
		LWT_FAIL("for \"%s\":\n  got  %s\n  want %s", text, why, want);
	ASSERT_EQ(lw_budget_nsites(b), 0);
	ASSERT_EQ(lw_budget_nallows(b), 0);
	lw_budget_get(b, &v);
	ASSERT(v.callback_max_ns == LW_BUDGET_NONE);
	lw_budget_free(b);
}

static void parse_err(const char *text, const char *want)
{
	parse_err_n(text, strlen(text), want);
}

static void dur_ok(const char *s, uint64_t want)
{
	uint64_t ns = 12345;
	char why[256] = "";

	if (lw_duration_parse_str(s, &ns, why, sizeof(why)) != 0)
		LWT_FAIL("'%s' did not parse: %s", s, why);
	if (ns != want)
		LWT_FAIL("'%s' = %llu ns, want %llu", s, (unsigned long long)ns,
			 (unsigned long long)want);
}

static void dur_err(const char *s, const char *want)
{
	uint64_t ns = 12345;
	char why[256] = "";

	ASSERT_EQ(lw_duration_parse_str(s, &ns, why, sizeof(why)), -EINVAL);
	ASSERT_EQ(ns, 12345);
	ASSERT_STREQ(why, want);
}

TEST(budget_duration_units)
{
	dur_ok("250ns", 250);
	dur_ok("300us", 300000);
	dur_ok("300\xc2\xb5s", 300000);
	dur_ok("50ms", 50 * MS);
	dur_ok("1.5s", 1500 * MS);
	dur_ok("2m", 120 * S);
	dur_ok("1h", 3600 * S);
	dur_ok("0", 0);
	dur_ok("0.0", 0);
	dur_ok("0ms", 0);
	dur_ok("0.1s", 100 * MS);
	dur_ok("1.0000000009s", 1000000000);
	dur_ok("0.0000000000000000009h", 0);
	dur_ok("18446744073709551614ns", UINT64_MAX - 1);
	dur_ok("5124095h", 5124095ull * 3600 * S);
}

TEST(budget_duration_errors)
{
	dur_err("", "empty duration (write one like 50ms)");
	dur_err("50", "bad duration '50': no unit (write it like 50ms; units "
		      "ns, us, ms, s, m, h)");
	dur_err("1.5", "bad duration '1.5': no unit (write it like 1.5ms; "
		       "units ns, us, ms, s, m, h)");
	dur_err("-5ms", "bad duration '-5ms': negative (a duration is 0 or "
			"more)");
	dur_err("+5ms", "bad duration '+5ms': expected a number first (like "
			"50ms)");
	dur_err("nan", "bad duration 'nan': expected a number first (like "
		       "50ms)");
	dur_err("inf", "bad duration 'inf': expected a number first (like "
		       "50ms)");
	dur_err(".5s", "bad duration '.5s': expected a number first (like "
		       "50ms)");
	dur_err("5.s", "bad duration '5.s': expected a digit after '.'");
	dur_err("50 ms", "bad duration '50 ms': unknown unit ' ms' (use ns, "
			 "us, ms, s, m, h)");
	dur_err("50MS", "bad duration '50MS': unknown unit 'MS' (use ns, us, "
			"ms, s, m, h)");
	dur_err("1e3ms", "bad duration '1e3ms': unknown unit 'e3ms' (use ns, "
			 "us, ms, s, m, h)");
	dur_err("18446744073709551615ns",
		"bad duration '18446744073709551615ns': too large (at most "
		"2^64-2 ns, about 584 years)");
	dur_err("99999999999999999999ns",
		"bad duration '99999999999999999999ns': too large (at most "
		"2^64-2 ns, about 584 years)");
	dur_err("5124096h", "bad duration '5124096h': too large (at most "
			    "2^64-2 ns, about 584 years)");
	dur_err("5\x01s", "bad duration '5\\x01s': unknown unit '\\x01s' (use "
			  "ns, us, ms, s, m, h)");
}

static void human(uint64_t ns, const char *want)
{
	char buf[32];

	ASSERT_EQ(lw_duration_format(ns, buf, sizeof(buf)), strlen(want));
	ASSERT_STREQ(buf, want);
}

TEST(budget_duration_format)
{
	char buf[32], small[4];

	human(0, "0 ns");
	human(999, "999 ns");
	human(1000, "1 us");
	human(12345, "12.3 us");
	human(999999, "1 ms");
	human(1200000, "1.2 ms");
	human(1234567, "1.23 ms");
	human(50 * MS, "50 ms");
	human(150 * MS, "150 ms");
	human(2500 * MS, "2.5 s");
	human(3600 * S, "3600 s");
	human(UINT64_MAX, "18446744074 s");
	/* Exact, and parseable. */
	ASSERT_EQ(lw_duration_format_exact(1500 * MS, buf, sizeof(buf)), 6);
	ASSERT_STREQ(buf, "1500ms");
	lw_duration_format_exact(120 * S, buf, sizeof(buf));
	ASSERT_STREQ(buf, "2m");
	lw_duration_format_exact(0, buf, sizeof(buf));
	ASSERT_STREQ(buf, "0");
	lw_duration_format_exact(7, buf, sizeof(buf));
	ASSERT_STREQ(buf, "7ns");
	/* Like snprintf when the buffer is short. */
	ASSERT_EQ(lw_duration_format(150 * MS, small, sizeof(small)), 6);
	ASSERT_STREQ(small, "150");
}

TEST(budget_every_key)
{
	lw_budget_t *b = parse_ok("# loopwatch budgets\n"
				  "callback.max        50ms  # comment\n"
				  "site.p99            10ms\n"
				  "\tsyscall.max\t20ms\n"
				  "lag.p99             5ms#tight\n"
				  "utilization.max     80%\n"
				  "\n"
				  "   \n"
				  "site \"GET /report*\"  p99 200ms  max 1s\n"
				  "allow fsync in \"checkpoint_*\"\n"
				  "allow * in \"startup\"\n"
				  "allow getrandom\n");
	lw_budget_values_t v;
	lw_budget_limits_t l;

	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 50 * MS);
	ASSERT_EQ(v.site_p99_ns, 10 * MS);
	ASSERT_EQ(v.syscall_max_ns, 20 * MS);
	ASSERT_EQ(v.lag_p99_ns, 5 * MS);
	ASSERT_EQ(v.util_max_ppm, 800000);
	ASSERT(v.util_max > 0.7999 && v.util_max < 0.8001);
	ASSERT_EQ(lw_budget_nsites(b), 1);
	ASSERT_EQ(lw_budget_nallows(b), 3);

	lw_budget_for_site(b, "GET /report/daily", &l);
	ASSERT_EQ(l.max_ns, 1 * S);
	ASSERT_EQ(l.p99_ns, 200 * MS);
	ASSERT_STREQ(l.max_from, "b.conf:9");
	ASSERT_STREQ(l.p99_from, "b.conf:9");
	lw_budget_for_site(b, "GET /", &l);
	ASSERT_EQ(l.max_ns, 50 * MS);
	ASSERT_EQ(l.p99_ns, 10 * MS);
	ASSERT_STREQ(l.max_from, "b.conf:2");
	ASSERT_STREQ(l.p99_from, "b.conf:3");

	ASSERT_EQ(lw_budget_allowed(b, "checkpoint_db", "fsync"), 1);
	ASSERT_EQ(lw_budget_allowed(b, "checkpoint_db", "fdatasync"), 0);
	ASSERT_EQ(lw_budget_allowed(b, "on_request", "fsync"), 0);
	ASSERT_EQ(lw_budget_allowed(b, "startup", "connect"), 1);
	ASSERT_EQ(lw_budget_allowed(b, "startup2", "connect"), 0);
	ASSERT_EQ(lw_budget_allowed(b, "anything", "getrandom"), 1);
	lw_budget_free(b);
}

TEST(budget_empty_and_off)
{
	lw_budget_t *b = parse_ok("");
	lw_budget_values_t v;
	lw_budget_limits_t l;

	lw_budget_get(b, &v);
	ASSERT(v.callback_max_ns == LW_BUDGET_NONE);
	ASSERT(v.site_p99_ns == LW_BUDGET_NONE);
	ASSERT(v.syscall_max_ns == LW_BUDGET_NONE);
	ASSERT(v.lag_p99_ns == LW_BUDGET_NONE);
	ASSERT_EQ(v.util_max_ppm, LW_BUDGET_UTIL_NONE);
	ASSERT(v.util_max > 1.0);
	lw_budget_for_site(b, "x", &l);
	ASSERT(l.max_ns == LW_BUDGET_NONE && l.p99_ns == LW_BUDGET_NONE);
	ASSERT(l.max_from == NULL && l.p99_from == NULL);
	ASSERT_EQ(lw_budget_allowed(b, "x", "fsync"), 0);
	lw_budget_free(b);

	b = parse_ok("callback.max off\nutilization.max none\n"
		     "site.p99 10ms\nsite \"slow_*\" p99 off\n");
	lw_budget_get(b, &v);
	ASSERT(v.callback_max_ns == LW_BUDGET_NONE);
	ASSERT_EQ(v.util_max_ppm, LW_BUDGET_UTIL_NONE);
	lw_budget_for_site(b, "slow_path", &l);
	ASSERT(l.p99_ns == LW_BUDGET_NONE);
	/* "off" keeps where it was said, for the evidence. */
	ASSERT_STREQ(l.p99_from, "b.conf:4");
	lw_budget_for_site(b, "fast_path", &l);
	ASSERT_EQ(l.p99_ns, 10 * MS);
	lw_budget_free(b);
}

TEST(budget_errors_keys)
{
	parse_err("calback.max 50ms\n",
		  "b.conf:1:1: unknown key 'calback.max' (did you mean "
		  "'callback.max'?)");
	parse_err("# ok\n  sitep99 5ms\n",
		  "b.conf:2:3: unknown key 'sitep99' (did you mean "
		  "'site.p99'?)");
	parse_err("budget 5ms\n",
		  "b.conf:1:1: unknown key 'budget' (keys: callback.max, "
		  "site.p99, syscall.max, lag.p99, utilization.max, site, "
		  "allow)");
	parse_err("callback.max=50ms\n",
		  "b.conf:1:13: '=' after 'callback.max' (in a file, a blank "
		  "separates key and value: callback.max 50ms)");
	parse_err("\"x\" 5ms\n", "b.conf:1:1: expected a key (like "
				 "callback.max) at the start of the line");
	parse_err("callback.max 5ms\ncallback.max 6ms\n",
		  "b.conf:2:1: 'callback.max' set twice (first on line 1)");
	parse_err("lag.p99 1ms\x01\n", "b.conf:1:12: control character 0x01 "
				       "(a budget file is text)");
	parse_err_n("lag.p99 1ms # \0\n", 16,
		    "b.conf:1:15: control character 0x00 (a budget file is "
		    "text)");
}

TEST(budget_errors_values)
{
	parse_err("callback.max\n", "b.conf:1:13: 'callback.max' needs a "
				    "duration (like 50ms, or off)");
	parse_err("callback.max   # none\n",
		  "b.conf:1:16: 'callback.max' needs a duration (like 50ms, "
		  "or off)");
	parse_err("\n\nsyscall.max 50\n",
		  "b.conf:3:13: syscall.max: bad duration '50': no unit "
		  "(write it like 50ms; units ns, us, ms, s, m, h)");
	parse_err("lag.p99 -1ms\n",
		  "b.conf:1:9: lag.p99: bad duration "
		  "'-1ms': negative (a duration is 0 or more)");
	parse_err("site.p99 5ms 6ms\n",
		  "b.conf:1:14: unexpected '6ms' after the value (a "
		  "comment starts with #)");
	parse_err("utilization.max\n",
		  "b.conf:1:16: 'utilization.max' needs a percentage (like "
		  "80%, or off)");
	parse_err("utilization.max 80\n",
		  "b.conf:1:17: utilization.max: bad percentage '80': no '%' "
		  "(write it like 80%)");
	parse_err("utilization.max 0.8\n",
		  "b.conf:1:17: utilization.max: bad percentage '0.8': no "
		  "'%' (write it like 80%)");
	parse_err("utilization.max 101%\n", "b.conf:1:17: utilization.max: "
					    "bad percentage '101%': above "
					    "100%");
	parse_err("utilization.max 100.5%\n",
		  "b.conf:1:17: utilization.max: bad percentage '100.5%': "
		  "above 100%");
	parse_err("utilization.max -5%\n",
		  "b.conf:1:17: utilization.max: bad percentage '-5%': "
		  "negative (0% to 100%)");
	parse_err("utilization.max 80%%\n",
		  "b.conf:1:17: utilization.max: bad percentage '80%%': "
		  "expected a number and '%' (like 80%)");
	parse_err("utilization.max 80.%\n",
		  "b.conf:1:17: utilization.max: bad percentage '80.%': "
		  "expected a digit after '.'");
	parse_err("utilization.max nan%\n",
		  "b.conf:1:17: utilization.max: bad percentage 'nan%': "
		  "expected a number first (like 80%)");
}

TEST(budget_errors_site)
{
	parse_err("site GET p99 5ms\n",
		  "b.conf:1:6: site needs a quoted site glob here (like "
		  "\"checkpoint_*\")");
	parse_err("site \"GET p99 5ms\n", "b.conf:1:6: unterminated string "
					  "(the closing \" is missing)");
	parse_err("site \"a\\nb\" p99 5ms\n",
		  "b.conf:1:8: unknown escape '\\n' in a string (only \\\" "
		  "and \\\\)");
	parse_err("site \"\" p99 5ms\n",
		  "b.conf:1:6: empty site glob (\"*\" matches every site)");
	parse_err("site \"x\"\n", "b.conf:1:9: site line sets no limit (add "
				  "p99 DURATION and/or max DURATION)");
	parse_err("site \"x\" p95 5ms\n",
		  "b.conf:1:10: unknown site limit 'p95' (use p99 or max)");
	parse_err("site \"x\" p99 5ms p99 6ms\n",
		  "b.conf:1:18: 'p99' given twice on this line");
	parse_err("site \"x\" max\n", "b.conf:1:13: 'max' needs a duration "
				      "(like 50ms, or off)");
	parse_err("site \"x\" max 5\n",
		  "b.conf:1:14: max: bad duration '5': no unit (write it "
		  "like 5ms; units ns, us, ms, s, m, h)");
	parse_err("site \"x\" \"y\"\n", "b.conf:1:10: unexpected '\"' after "
					"the glob (a comment starts with #)");
	parse_err("site \"ab[cd\" p99 1ms\n",
		  "b.conf:1:9: '[' without a closing ']' in glob (write \\\\[ "
		  "for a literal [)");
	parse_err("site \"ab\\\\\" p99 1ms\n",
		  "b.conf:1:9: glob ends in a lone '\\' (write \\\\\\\\ for a "
		  "literal \\)");
	parse_err("site \"[[:alpha:]]\" p99 1ms\n",
		  "b.conf:1:8: character classes like [:alpha:] are not "
		  "supported in globs (list the characters: [a-zA-Z])");
}

TEST(budget_errors_allow)
{
	parse_err("allow\n", "b.conf:1:6: 'allow' needs a syscall name or * "
			     "(like allow fsync in \"checkpoint_*\")");
	parse_err("allow FSYNC\n",
		  "b.conf:1:7: bad syscall name 'FSYNC' (lower-case letters, "
		  "digits and _, like fsync; or * for any)");
	parse_err("allow 9p\n",
		  "b.conf:1:7: bad syscall name '9p' (lower-case letters, "
		  "digits and _, like fsync; or * for any)");
	parse_err("allow fsync inside \"x\"\n",
		  "b.conf:1:13: expected 'in' and a quoted site glob after "
		  "the syscall, or the end of the line");
	parse_err("allow fsync in\n",
		  "b.conf:1:15: 'allow ... in' needs a quoted site glob here "
		  "(like \"checkpoint_*\")");
	parse_err("allow fsync in \"x\" y\n",
		  "b.conf:1:20: unexpected 'y' after the glob (a comment "
		  "starts with #)");
}

TEST(budget_errors_bounds)
{
	size_t n = LW_BUDGET_LINE_MAX + 1;
	char *big = malloc(n + 40);
	lw_budget_t *b = lw_budget_new();
	char why[512];

	ASSERT(big != NULL && b != NULL);
	strcpy(big, "lag.p99 1ms\n# ");
	memset(big + 14, 'x', n - 2);
	big[12 + n] = '\n';
	big[13 + n] = '\0';
	parse_err(big, "b.conf:2:1: line longer than 4096 bytes");
	/* Exactly the limit is fine. */
	big[11 + n] = '\n';
	big[12 + n] = '\0';
	lw_budget_free(parse_ok(big));
	free(big);

	/* 1024 site lines fit; the 1025th, from a second text or a flag,
	 * does not. */
	size_t cap = (LW_BUDGET_RULES_MAX + 1) * 32;
	char *text = malloc(cap), *p = text;
	ASSERT(text != NULL);
	for (int i = 0; i < LW_BUDGET_RULES_MAX; i++)
		p += sprintf(p, "site \"s%d\" p99 %dms\n", i, i + 1);
	ASSERT_OK(lw_budget_parse(b, "b.conf", text, (size_t)(p - text), why,
				  sizeof(why)));
	ASSERT_EQ(lw_budget_nsites(b), LW_BUDGET_RULES_MAX);
	ASSERT_EQ(lw_budget_parse(b, "c.conf", "site \"z\" p99 1ms\n", 18, why,
				  sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "c.conf:1:1: more than 1024 site lines (the most a "
			  "budget holds)");
	ASSERT_EQ(lw_budget_set(b, "site", "\"z\" p99 1ms", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag site: more than 1024 site lines (the most a "
			  "budget holds)");
	ASSERT_EQ(lw_budget_nsites(b), LW_BUDGET_RULES_MAX);

	lw_budget_limits_t l;
	lw_budget_for_site(b, "s1000", &l);
	ASSERT_EQ(l.p99_ns, 1001 * MS);
	free(text);
	lw_budget_free(b);
}

TEST(budget_error_applies_nothing)
{
	lw_budget_t *b = parse_ok("callback.max 5ms\nsite \"a\" p99 1ms\n");
	lw_budget_values_t v;
	char why[256];
	const char *bad = "callback.max 7ms\nsite \"b\" p99 2ms\n"
			  "allow fsync\nlag.p99 oops\nsite.p99 9ms\n";

	ASSERT_EQ(lw_budget_parse(b, "c.conf", bad, strlen(bad), why,
				  sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "c.conf:4:9: lag.p99: bad duration 'oops': "
			  "expected a number first (like 50ms)");
	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 5 * MS);
	ASSERT(v.lag_p99_ns == LW_BUDGET_NONE);
	ASSERT(v.site_p99_ns == LW_BUDGET_NONE);
	ASSERT_EQ(lw_budget_nsites(b), 1);
	ASSERT_EQ(lw_budget_nallows(b), 0);
	/* A second, good text may set what the first set. */
	ASSERT_OK(lw_budget_parse(b, "d.conf", "callback.max 9ms\n", 17, why,
				  sizeof(why)));
	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 9 * MS);
	lw_budget_free(b);
}

TEST(budget_crlf_and_no_final_newline)
{
	lw_budget_t *b = parse_ok("callback.max 5ms\r\nlag.p99 2ms\r\n"
				  "site \"x\" max 1s");
	lw_budget_values_t v;
	lw_budget_limits_t l;

	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 5 * MS);
	ASSERT_EQ(v.lag_p99_ns, 2 * MS);
	lw_budget_for_site(b, "x", &l);
	ASSERT_EQ(l.max_ns, 1 * S);
	lw_budget_free(b);
}

TEST(budget_glob_match)
{
	static const struct {
		const char *pat, *s;
		int want;
	} cases[] = {
		{ "*", "", 1 },
		{ "*", "anything/at all", 1 },
		{ "GET /report*", "GET /report/daily", 1 },
		{ "GET /report*", "GET /reports", 1 },
		{ "GET /report*", "POST /report", 0 },
		{ "checkpoint_*", "checkpoint_", 1 },
		{ "checkpoint_*", "checkpoint", 0 },
		{ "a?c", "abc", 1 },
		{ "a?c", "ac", 0 },
		{ "*a*b*c*", "xxaxxbxxcxx", 1 },
		{ "*a*b*c*", "xxaxxcxxbxx", 0 },
		{ "[a-c]x", "bx", 1 },
		{ "[a-c]x", "dx", 0 },
		{ "[!a-c]x", "dx", 1 },
		{ "[^a-c]x", "ax", 0 },
		{ "[]]", "]", 1 },
		{ "[!]]", "]", 0 },
		{ "[a-]", "-", 1 },
		{ "\\*", "*", 1 },
		{ "\\*", "x", 0 },
		{ "[\\]]", "]", 1 },
		{ "x[", "x[", 1 },
		{ "x\\", "x\\", 0 },
		{ "**x", "x", 1 },
		{ "*x", "yyxx", 1 },
		{ "on_*_done", "on__done", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = lw_budget_glob_match(cases[i].pat, cases[i].s);
		int ref = fnmatch(cases[i].pat, cases[i].s, 0) == 0;
		if (got != cases[i].want || ref != cases[i].want)
			LWT_FAIL("glob '%s' on '%s': got %d, fnmatch %d, want "
				 "%d",
				 cases[i].pat, cases[i].s, got, ref,
				 cases[i].want);
	}
}

/* The pattern that makes a recursive matcher take exponential time. */
TEST(budget_glob_linear)
{
	char pat[200], s[4001];
	size_t n = 0;
	double t0 = lwt_now_ms();

	for (int i = 0; i < 40; i++) {
		pat[n++] = '*';
		pat[n++] = 'a';
	}
	pat[n++] = 'b';
	pat[n] = '\0';
	memset(s, 'a', 4000);
	s[4000] = '\0';
	ASSERT_EQ(lw_budget_glob_match(pat, s), 0);
	printf("budget_glob_linear: 41-item glob on 4000 bytes: %.2f ms\n",
	       lwt_now_ms() - t0);
}

TEST(budget_precedence)
{
	lw_budget_t *b = parse_ok("callback.max 50ms\nsite.p99 10ms\n"
				  "site \"GET *\" p99 20ms max 100ms\n"
				  "site \"GET /report*\" max 1s\n"
				  "site \"GET /report/big\" p99 off\n"
				  "site \"GET *\" max 200ms\n");
	lw_budget_limits_t l;

	/* The later "GET *" line wins max over the /report* one. */
	lw_budget_for_site(b, "GET /report/x", &l);
	ASSERT_EQ(l.max_ns, 200 * MS);
	ASSERT_EQ(l.p99_ns, 20 * MS);
	ASSERT_STREQ(l.max_from, "b.conf:6");
	ASSERT_STREQ(l.p99_from, "b.conf:3");
	lw_budget_for_site(b, "GET /report/big", &l);
	ASSERT(l.p99_ns == LW_BUDGET_NONE);
	ASSERT_STREQ(l.p99_from, "b.conf:5");
	lw_budget_for_site(b, "POST /", &l);
	ASSERT_EQ(l.max_ns, 50 * MS);
	ASSERT_EQ(l.p99_ns, 10 * MS);
	lw_budget_free(b);
}

TEST(budget_flags_over_file)
{
	lw_budget_t *b = lw_budget_new();
	lw_budget_values_t v;
	lw_budget_limits_t l;
	char why[256];
	const char *file = "callback.max 50ms\nsite.p99 10ms\n"
			   "site \"GET *\" p99 20ms\n";

	/* Flags first, as a command line is read; the file after. */
	ASSERT_OK(lw_budget_set(b, "callback.max", "100ms", why, sizeof(why)));
	ASSERT_OK(lw_budget_set_flag(b, "site=\"GET /x\" p99 1ms", why,
				     sizeof(why)));
	ASSERT_OK(lw_budget_set_flag(b, "allow=fsync in \"GET *\"", why,
				     sizeof(why)));
	ASSERT_OK(lw_budget_set_flag(b, "utilization.max=95.5%", why,
				     sizeof(why)));
	ASSERT_OK(lw_budget_parse(b, "b.conf", file, strlen(file), why,
				  sizeof(why)));
	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 100 * MS);
	ASSERT_EQ(v.site_p99_ns, 10 * MS);
	ASSERT_EQ(v.util_max_ppm, 955000);
	lw_budget_for_site(b, "GET /x", &l);
	ASSERT_EQ(l.p99_ns, 1 * MS);
	ASSERT_STREQ(l.p99_from, "flag site");
	ASSERT_STREQ(l.max_from, "flag callback.max");
	lw_budget_for_site(b, "GET /y", &l);
	ASSERT_EQ(l.p99_ns, 20 * MS);
	ASSERT_EQ(lw_budget_allowed(b, "GET /y", "fsync"), 1);
	/* A flag given twice: the last wins. */
	ASSERT_OK(lw_budget_set_flag(b, "callback.max=off", why, sizeof(why)));
	lw_budget_get(b, &v);
	ASSERT(v.callback_max_ns == LW_BUDGET_NONE);
	lw_budget_free(b);
}

TEST(budget_flag_errors)
{
	lw_budget_t *b = lw_budget_new();
	char why[256];

	ASSERT_EQ(lw_budget_set_flag(b, "callback.max", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag 'callback.max': expected KEY=VALUE (like "
			  "callback.max=50ms)");
	ASSERT_EQ(lw_budget_set_flag(b, "=5ms", why, sizeof(why)), -EINVAL);
	ASSERT_STREQ(why, "flag '=5ms': expected KEY=VALUE (like "
			  "callback.max=50ms)");
	ASSERT_EQ(lw_budget_set_flag(b, "callback.max=50", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag callback.max: callback.max: bad duration "
			  "'50': no unit (write it like 50ms; units ns, us, "
			  "ms, s, m, h)");
	ASSERT_EQ(lw_budget_set_flag(b, "callback.max=", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag callback.max: 'callback.max' needs a duration "
			  "(like 50ms, or off)");
	ASSERT_EQ(lw_budget_set_flag(b, "lag.p99=1ms 2ms", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag lag.p99: unexpected '2ms' after the value (a "
			  "comment starts with #)");
	ASSERT_EQ(lw_budget_set_flag(b, "calback.max=5ms", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag calback.max: unknown key 'calback.max' (did "
			  "you mean 'callback.max'?)");
	ASSERT_EQ(lw_budget_set(b, "lag p99", "5ms", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag 'lag p99': not a key (keys: callback.max, "
			  "site.p99, syscall.max, lag.p99, utilization.max, "
			  "site, allow)");
	ASSERT_EQ(lw_budget_set(b, "lag.p99", "5ms\n", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag lag.p99: control character 0x0a (a budget "
			  "file is text)");
	ASSERT_EQ(lw_budget_set(b, "site", "\"x\" p99", why, sizeof(why)),
		  -EINVAL);
	ASSERT_STREQ(why, "flag site: 'p99' needs a duration (like 50ms, or "
			  "off)");
	ASSERT_EQ(lw_budget_nsites(b), 0);
	lw_budget_free(b);
}

static void round_trip(lw_budget_t *b)
{
	char f1[4096], f2[4096], why[256];
	size_t n1 = lw_budget_format(b, f1, sizeof(f1));
	lw_budget_t *c = lw_budget_new();

	ASSERT_LT(n1, sizeof(f1));
	if (lw_budget_parse(c, "fmt", f1, n1, why, sizeof(why)) != 0)
		LWT_FAIL("formatted text did not parse: %s\n%s", why, f1);
	ASSERT_EQ(lw_budget_format(c, f2, sizeof(f2)), n1);
	ASSERT_STREQ(f1, f2);
	lw_budget_free(c);
}

TEST(budget_round_trip)
{
	lw_budget_t *b = parse_ok("callback.max 1.5s\nsite.p99 250us\n"
				  "syscall.max 2m\nlag.p99 7ns\n"
				  "utilization.max 99.9999%\n"
				  "site \"a\\\"b\\\\*\" max off p99 1h\n"
				  "site \"GET /report*\" p99 200ms\n"
				  "allow * in \"startup\"\nallow fsync\n");
	char buf[4096], tiny[10];
	char why[256];

	ASSERT_OK(lw_budget_set(b, "site", "\"z*\" max 3ms", why, sizeof(why)));
	lw_budget_format(b, buf, sizeof(buf));
	ASSERT_STREQ(buf, "# loopwatch budgets\n"
			  "callback.max     1500ms\n"
			  "site.p99         250us\n"
			  "syscall.max      2m\n"
			  "lag.p99          7ns\n"
			  "utilization.max  99.9999%\n"
			  "site \"a\\\"b\\\\*\" p99 1h max off\n"
			  "site \"GET /report*\" p99 200ms\n"
			  "site \"z*\" max 3ms\n"
			  "allow * in \"startup\"\n"
			  "allow fsync\n");
	round_trip(b);
	/* Like snprintf on a short buffer. */
	ASSERT_EQ(lw_budget_format(b, tiny, sizeof(tiny)), strlen(buf));
	ASSERT_STREQ(tiny, "# loopwat");
	lw_budget_free(b);

	b = parse_ok("utilization.max 80%\n");
	lw_budget_format(b, buf, sizeof(buf));
	ASSERT_STREQ(buf, "# loopwatch budgets\nutilization.max  80%\n");
	round_trip(b);
	lw_budget_free(b);
}

TEST(budget_load)
{
	char dir[] = "/tmp/lw-budget-test-XXXXXX", path[128], why[512];
	lw_budget_t *b = lw_budget_new();
	lw_budget_values_t v;
	FILE *f;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/budgets.conf", dir);
	f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs("callback.max 50ms\nlag.p99 5\n", f);
	fclose(f);
	ASSERT_EQ(lw_budget_load(b, path, why, sizeof(why)), -EINVAL);
	char want[512];
	snprintf(want, sizeof(want),
		 "%s:2:9: lag.p99: bad duration '5': no unit (write it like "
		 "5ms; units ns, us, ms, s, m, h)",
		 path);
	ASSERT_STREQ(why, want);

	f = fopen(path, "w");
	fputs("callback.max 50ms\n", f);
	fclose(f);
	ASSERT_OK(lw_budget_load(b, path, why, sizeof(why)));
	lw_budget_get(b, &v);
	ASSERT_EQ(v.callback_max_ns, 50 * MS);

	snprintf(path, sizeof(path), "%s/missing.conf", dir);
	ASSERT_EQ(lw_budget_load(b, path, why, sizeof(why)), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	ASSERT_STREQ(why, want);

	ASSERT_EQ(lw_budget_load(b, dir, why, sizeof(why)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file", dir);
	ASSERT_STREQ(why, want);

	snprintf(path, sizeof(path), "%s/big.conf", dir);
	f = fopen(path, "w");
	ASSERT(f != NULL);
	for (size_t i = 0; i <= LW_BUDGET_FILE_MAX / 16; i++)
		fputs("# padding line.\n", f);
	fclose(f);
	ASSERT_EQ(lw_budget_load(b, path, why, sizeof(why)), -EFBIG);
	snprintf(want, sizeof(want),
		 "%s: larger than 1048576 bytes (a budget file is a few "
		 "lines)",
		 path);
	ASSERT_STREQ(why, want);
	unlink(path);
	snprintf(path, sizeof(path), "%s/budgets.conf", dir);
	unlink(path);
	rmdir(dir);
	lw_budget_free(b);
}

/* The example of docs/budgets.md, as written there. */
TEST(budget_docs_example)
{
	char path[512];
	lw_budget_t *b = lw_budget_new();
	lw_budget_limits_t l;
	char why[512];

	snprintf(path, sizeof(path), "%s/fuzz/corpus/budget/seed_full",
		 LW_SRC_DIR);
	if (lw_budget_load(b, path, why, sizeof(why)) != 0)
		LWT_FAIL("%s", why);
	lw_budget_for_site(b, "GET /report/2024", &l);
	ASSERT_EQ(l.p99_ns, 200 * MS);
	ASSERT_EQ(lw_budget_allowed(b, "checkpoint_wal", "fsync"), 1);
	lw_budget_free(b);
}
