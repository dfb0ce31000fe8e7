/*
 * check.h - `loopwatch check`: hold a model (model.h) against the budgets
 * (budget.h) and say what broke which budget, with the evidence: the site,
 * the value and the limit with where the limit was set, and the blocking
 * call or the stack sample behind it.  Writes the verdict as text, as
 * JUnit XML (one test case per budget key in force) and as JSON.
 */
#ifndef LW_CHECK_H
#define LW_CHECK_H

#include <stdio.h>

#include "budget.h"
#include "json.h"
#include "model.h"

enum lw_check_key {
	LW_CHECK_CALLBACK_MAX,
	LW_CHECK_SITE_P99,
	LW_CHECK_SYSCALL_MAX,
	LW_CHECK_LAG_P99,
	LW_CHECK_UTIL_MAX,
	LW_CHECK_NKEYS
};

/* One budget broken by one site (or loop). */
typedef struct lw_check_failure {
	enum lw_check_key key;
	const lw_model_loop_t *loop;
	const lw_model_site_t *site; /* NULL for a loop's budget */
	/* syscall.max: the call; callback.max and site.p99: the call that
	 * took longest inside the site, or NULL. */
	const lw_model_call_t *call;
	uint64_t value, limit; /* ns; utilization in parts per million */
	const char *limit_from; /* "budgets.conf:3", "flag callback.max" */
} lw_check_failure_t;

typedef struct lw_check {
	int active[LW_CHECK_NKEYS]; /* some limit of this key is in force */
	uint64_t checked[LW_CHECK_NKEYS]; /* sites, calls or loops held to it */
	size_t nfail;
	lw_check_failure_t *fail; /* worst first within each key */
	uint64_t allowed; /* blocking calls over syscall.max but allowed */
	/* Set by the caller when the process ended badly while watched (a
	 * signal, an exit status other than 0): the line that told it, e.g.
	 * "process 1234 was killed by SIGSEGV ...".  It fails the check as
	 * a broken budget does.  Not owned; NULL when it did not. */
	const char *ended_badly;
} lw_check_t;

/* Evaluate; NULL when out of memory.  The result points into m and b:
 * free it before them. */
lw_check_t *lw_check_eval(const lw_model_t *m, const lw_budget_t *b);
void lw_check_free(lw_check_t *c); /* NULL is fine */

/* "callback.max", ... */
const char *lw_check_key_name(enum lw_check_key k);

/* 1 if site s broke a budget (the summary marks it). */
int lw_check_site_over(const lw_check_t *c, const lw_model_site_t *s);

/* Whether the check passed: no budget broken, the process not ended
 * badly. */
int lw_check_passed(const lw_check_t *c);

/* The verdict for people: one line per budget key (and "exit" when the
 * process ended badly), then each failure with its evidence and stack. */
void lw_check_print(const lw_check_t *c, const lw_model_t *m, FILE *out);

/* JUnit XML: a <testsuite name="loopwatch check"> with one <testcase> per
 * budget key in force, and one named "exit" when the process ended badly,
 * failures carrying the evidence.  0, or -1 if out
 * fails to write (errno set). */
int lw_check_junit(const lw_check_t *c, const lw_model_t *m, FILE *out);

/* The verdict as one JSON value (an object) into j: see
 * docs/json-schema.md, "check". */
void lw_check_json(const lw_check_t *c, const lw_model_t *m, lw_json_t *j);

#endif /* LW_CHECK_H */
