/*
 * fuzz/budget.c - libFuzzer target for the budget file (agent/budget.c)
 * and the duration parser (agent/duration.c).
 *
 * The input is the text of a budget file.  A text that fails must give a
 * one-line reason in the NAME:LINE:COL form and leave the budget empty; a
 * text that parses must survive a round trip: formatted, parsed again, and
 * formatted again to the same text, with the same defaults and the same
 * limits for a few site names.  Each line is also tried as a duration
 * (whatever parses formats back exactly), and when the input holds a NUL,
 * the bytes before it are a glob and those after it a site name: the
 * linear matcher must agree with fnmatch(3).
 *
 *   make fuzz-build && build/fuzz/budget fuzz/corpus/budget
 */
#include "budget.h"
#include "duration.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fmt1[1 << 18], fmt2[1 << 18];

static void check_why(const char *why)
{
	if (why[0] == '\0' || strchr(why, '\n') != NULL ||
	    strncmp(why, "f:", 2) != 0)
		abort();
}

/* Does this glob have a bracket without its ']' or a trailing '\'?  Those
 * the file refuses, and there glibc's own rules take over. */
static int odd_glob(const char *g)
{
	for (const char *p = g; *p; p++) {
		if (*p == '\\') {
			if (p[1] == '\0')
				return 1;
			p++;
		} else if (*p == '[') {
			const char *q = p + 1;
			if (*q == '!' || *q == '^')
				q++;
			if (*q == ']')
				q++;
			for (; *q != ']'; q++) {
				if (*q == '\0' ||
				    (*q == '[' && (q[1] == ':' || q[1] == '.' ||
						   q[1] == '=')))
					return 1;
				if (*q == '\\' && q[1] != '\0')
					q++;
			}
			p = q;
		}
	}
	return 0;
}

static void glob_differential(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	char pat[256], str[256];
	size_t pn, sn;

	if (nul == NULL)
		return;
	pn = (size_t)(nul - data);
	sn = size - pn - 1;
	if (pn >= sizeof(pat) || sn >= sizeof(str))
		return;
	memcpy(pat, data, pn);
	pat[pn] = '\0';
	memcpy(str, nul + 1, sn);
	str[sn] = '\0';
	if (strlen(str) != sn || odd_glob(pat))
		return;
	if (lw_budget_glob_match(pat, str) != (fnmatch(pat, str, 0) == 0))
		abort();
}

static void durations(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char why[256], buf[64];
	uint64_t ns, back;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		why[0] = '\0';
		if (lw_duration_parse(p, n, &ns, why, sizeof(why)) == 0) {
			if (ns > LW_DURATION_MAX)
				abort();
			lw_duration_format_exact(ns, buf, sizeof(buf));
			if (lw_duration_parse_str(buf, &back, why,
						  sizeof(why)) != 0 ||
			    back != ns)
				abort();
			if (lw_duration_format(ns, buf, sizeof(buf)) >=
			    sizeof(buf))
				abort();
		} else if (why[0] == '\0' || strchr(why, '\n') != NULL) {
			abort();
		}
		p = nl ? nl + 1 : end;
	}
}

static void same_values(const lw_budget_t *a, const lw_budget_t *b)
{
	lw_budget_values_t va, vb;

	lw_budget_get(a, &va);
	lw_budget_get(b, &vb);
	if (va.callback_max_ns != vb.callback_max_ns ||
	    va.site_p99_ns != vb.site_p99_ns ||
	    va.syscall_max_ns != vb.syscall_max_ns ||
	    va.lag_p99_ns != vb.lag_p99_ns ||
	    va.util_max_ppm != vb.util_max_ppm)
		abort();
	if (va.util_max_ppm != LW_BUDGET_UTIL_NONE && va.util_max_ppm > 1000000)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const sites[] = {
		"",	   "a", "GET /report/1", "checkpoint_7",
		"startup", "*", "[x]",		 "\\"
	};
	lw_budget_t *b = lw_budget_new(), *b2 = lw_budget_new();
	char why[512];

	glob_differential(data, size);
	durations(data, size);
	if (b == NULL || b2 == NULL)
		abort();
	why[0] = '\0';
	if (lw_budget_parse(b, "f", (const char *)data, size, why,
			    sizeof(why)) != 0) {
		check_why(why);
		if (lw_budget_nsites(b) != 0 || lw_budget_nallows(b) != 0)
			abort();
		goto out;
	}
	size_t n1 = lw_budget_format(b, fmt1, sizeof(fmt1));
	if (n1 >= sizeof(fmt1))
		goto out; /* too long to check here; format still bounded */
	if (lw_budget_parse(b2, "f", fmt1, n1, why, sizeof(why)) != 0)
		abort();
	size_t n2 = lw_budget_format(b2, fmt2, sizeof(fmt2));
	if (n1 != n2 || memcmp(fmt1, fmt2, n1) != 0)
		abort();
	same_values(b, b2);
	for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
		lw_budget_limits_t l1, l2;
		lw_budget_for_site(b, sites[i], &l1);
		lw_budget_for_site(b2, sites[i], &l2);
		if (l1.max_ns != l2.max_ns || l1.p99_ns != l2.p99_ns)
			abort();
		if (lw_budget_allowed(b, sites[i], "fsync") !=
		    lw_budget_allowed(b2, sites[i], "fsync"))
			abort();
	}
out:
	lw_budget_free(b);
	lw_budget_free(b2);
	return 0;
}
