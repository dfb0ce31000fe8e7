/*
 * budget.h - the budgets of `loopwatch check`: what a run may not exceed,
 * from a budget file and from flags.  The format is told in full, with
 * examples and every error message, in docs/budgets.md; in short:
 *
 *     # loopwatch budgets
 *     callback.max     50ms     # no single callback longer (every site)
 *     site.p99         10ms     # every site's p99
 *     syscall.max      20ms     # no blocking syscall on a loop thread longer
 *     lag.p99          5ms      # timer lateness p99
 *     utilization.max  80%      # busy / (busy + idle) of each loop
 *
 *     site "GET /report*"  p99 200ms  max 1s   # overrides for sites by glob
 *     allow fsync in "checkpoint_*"             # a syscall allowed there
 *     allow * in "startup"                      # any syscall
 *
 * Precedence: for each limit of a site, the LAST site line whose glob
 * matches and that sets that limit wins (general lines first, specific ones
 * below, as in .gitignore); a limit no line sets comes from the defaults.
 * Flags (lw_budget_set) win over every file, whatever the order of the
 * calls: a default set by a flag is not replaced by a file, and site lines
 * from flags are looked at after all site lines from files.
 *
 * Globs are fnmatch(3) patterns without flags ('*' also matches '/'):
 * '*', '?', '[a-z]', '[!x]' and '\' escapes, matched in linear time.
 *
 * A budget is built by one thread and then only read: the lookups may run
 * from any number of threads at once.
 */
#ifndef LW_BUDGET_H
#define LW_BUDGET_H

#include <stddef.h>
#include <stdint.h>

/* "No limit": what an unset budget or "off" is. */
#define LW_BUDGET_NONE UINT64_MAX
/* The same for utilization, in parts per million. */
#define LW_BUDGET_UTIL_NONE UINT32_MAX

/* Bounds on what a file (hostile or mistaken) can make the agent hold. */
#define LW_BUDGET_LINE_MAX 4096 /* bytes of one line, without the newline */
#define LW_BUDGET_FILE_MAX (1u << 20) /* bytes lw_budget_load reads */
#define LW_BUDGET_RULES_MAX 1024 /* site lines; and allow lines, apart */

typedef struct lw_budget lw_budget_t;

/* The defaults, one per key of the file. */
typedef struct lw_budget_values {
	uint64_t callback_max_ns; /* callback.max: every site's max */
	uint64_t site_p99_ns; /* site.p99: every site's p99 */
	uint64_t syscall_max_ns; /* syscall.max */
	uint64_t lag_p99_ns; /* lag.p99 */
	uint32_t util_max_ppm; /* utilization.max, 800000 = 80% */
	double util_max; /* the same as a fraction; 2.0 when none */
} lw_budget_values_t;

/* What applies to one site, and where each limit was set, for the evidence
 * a failed check prints: "budgets.conf:12", "flag site", "flag
 * callback.max", or NULL when nothing set it (the value is then
 * LW_BUDGET_NONE; a line that says "off" keeps its origin).  The strings
 * live as long as the budget is not changed or freed. */
typedef struct lw_budget_limits {
	uint64_t max_ns, p99_ns;
	const char *max_from, *p99_from;
} lw_budget_limits_t;

/* A new, empty budget (nothing limited), or NULL when out of memory. */
lw_budget_t *lw_budget_new(void);
/* Free a budget; NULL does nothing. */
void lw_budget_free(lw_budget_t *b);

/* Parse a whole file's text (len bytes, no NUL needed); name is what the
 * errors call it.  0, or -EINVAL with why = "NAME:LINE:COL: what is wrong
 * (hint)" for the first bad line, or -ENOMEM.  On an error nothing of the
 * text is applied: b is as it was before the call.  A key set twice in one
 * text is an error; a second text may set a key the first one set. */
int lw_budget_parse(lw_budget_t *b, const char *name, const char *text,
		    size_t len, char *why, size_t whylen);

/* Read a file (at most LW_BUDGET_FILE_MAX bytes, or it is an error), then
 * parse it.  0 or a negative errno; why = "PATH: No such file or
 * directory" and the like, or a parse error. */
int lw_budget_load(lw_budget_t *b, const char *path, char *why, size_t whylen);

/* A flag: key as in the file ("callback.max", "site.p99", "syscall.max",
 * "lag.p99", "utilization.max", "site", "allow"), and the rest of such a
 * line as value ("50ms", "off", "\"GET *\" p99 20ms", "fsync in \"x*\"").
 * Flags win over files.  0, or -EINVAL with why = "flag KEY: what is wrong
 * (hint)", or -ENOMEM; on an error b is unchanged. */
int lw_budget_set(lw_budget_t *b, const char *key, const char *value, char *why,
		  size_t whylen);

/* The same from one "KEY=VALUE" word (--budget callback.max=50ms). */
int lw_budget_set_flag(lw_budget_t *b, const char *kv, char *why,
		       size_t whylen);

/* The defaults in force. */
void lw_budget_get(const lw_budget_t *b, lw_budget_values_t *out);

/* The limits for a site name (see the precedence above). */
void lw_budget_for_site(const lw_budget_t *b, const char *site,
			lw_budget_limits_t *out);

/* 1 if syscall (its name, "fsync") is allowed inside site, else 0. */
int lw_budget_allowed(const lw_budget_t *b, const char *site,
		      const char *syscall);

/* Site lines and allow lines held (files and flags together). */
size_t lw_budget_nsites(const lw_budget_t *b);
size_t lw_budget_nallows(const lw_budget_t *b);

/* The budget in force written back in the file format, the defaults first,
 * then site lines in precedence order, then allow lines; parsing it gives
 * the same limits.  Like snprintf: the length the whole text needs, and
 * buf (if len > 0) is always NUL-terminated. */
size_t lw_budget_format(const lw_budget_t *b, char *buf, size_t len);

/* fnmatch(pattern, s, 0) in O(len(pattern) * len(s)) with no recursion:
 * 1 on a match, else 0.  Exposed for the tests and the fuzz target. */
int lw_budget_glob_match(const char *pattern, const char *s);

#endif /* LW_BUDGET_H */
