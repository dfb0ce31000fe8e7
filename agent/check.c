/*
 * check.c - the budgets of check.h held against a model.
 */
#include "check.h"

#include "duration.h"
#include "kevent.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const key_names[LW_CHECK_NKEYS] = {
	[LW_CHECK_CALLBACK_MAX] = "callback.max",
	[LW_CHECK_SITE_P99] = "site.p99",
	[LW_CHECK_SYSCALL_MAX] = "syscall.max",
	[LW_CHECK_LAG_P99] = "lag.p99",
	[LW_CHECK_UTIL_MAX] = "utilization.max",
};

static const char *const key_what[LW_CHECK_NKEYS] = {
	[LW_CHECK_CALLBACK_MAX] = "the longest single callback of each site",
	[LW_CHECK_SITE_P99] = "the p99 of each site's callbacks",
	[LW_CHECK_SYSCALL_MAX] = "the longest blocking syscall on a loop "
				 "thread",
	[LW_CHECK_LAG_P99] = "the p99 of timer lateness of each loop",
	[LW_CHECK_UTIL_MAX] = "the utilization of each loop",
};

const char *lw_check_key_name(enum lw_check_key k)
{
	return (unsigned)k < LW_CHECK_NKEYS ? key_names[k] : "?";
}

static int add_fail(lw_check_t *c, const lw_check_failure_t *f)
{
	lw_check_failure_t *n =
		realloc(c->fail, (c->nfail + 1) * sizeof(*c->fail));
	if (n == NULL)
		return -1;
	c->fail = n;
	c->fail[c->nfail++] = *f;
	return 0;
}

/* Hold one value to one limit: counted as checked, and a failure (f, with
 * the value and the limit filled in) when over.  -1 when out of memory. */
static int hold(lw_check_t *c, lw_check_failure_t f, uint64_t value,
		uint64_t limit)
{
	c->checked[f.key]++;
	if (value <= limit)
		return 0;
	f.value = value;
	f.limit = limit;
	return add_fail(c, &f);
}

lw_check_t *lw_check_eval(const lw_model_t *m, const lw_budget_t *b)
{
	lw_check_t *c = calloc(1, sizeof(*c));
	lw_budget_values_t v;
	int oom = 0;

	if (c == NULL)
		return NULL;
	lw_budget_get(b, &v);
	c->active[LW_CHECK_SYSCALL_MAX] = v.syscall_max_ns != LW_BUDGET_NONE;
	c->active[LW_CHECK_LAG_P99] = v.lag_p99_ns != LW_BUDGET_NONE;
	c->active[LW_CHECK_UTIL_MAX] = v.util_max_ppm != LW_BUDGET_UTIL_NONE;

	/* Per site: max, p99, and the syscalls inside. */
	for (size_t i = 0; i < lw_model_nsites(m); i++) {
		const lw_model_site_t *s = lw_model_site_at(m, i);
		lw_check_failure_t f = {
			.loop = lw_model_loop_by_id(m, s->loop_id),
			.site = s,
			.call = lw_model_longest_call(s),
		};
		lw_budget_limits_t lim;

		lw_budget_for_site(b, s->name, &lim);
		if (s->hist.count > 0 && lim.max_ns != LW_BUDGET_NONE) {
			f.key = LW_CHECK_CALLBACK_MAX;
			f.limit_from = lim.max_from;
			oom |= hold(c, f, lw_hist_max(&s->hist), lim.max_ns);
		}
		if (s->hist.count > 0 && lim.p99_ns != LW_BUDGET_NONE) {
			f.key = LW_CHECK_SITE_P99;
			f.limit_from = lim.p99_from;
			oom |= hold(c, f, lw_hist_quantile(&s->hist, 0.99),
				    lim.p99_ns);
		}
		if (v.syscall_max_ns == LW_BUDGET_NONE)
			continue;
		f.key = LW_CHECK_SYSCALL_MAX;
		f.limit_from = "syscall.max";
		for (size_t k = 0; k < s->ncalls; k++) {
			f.call = &s->calls[k];
			if (lw_model_call_max(f.call) > v.syscall_max_ns &&
			    lw_budget_allowed(b, s->name, f.call->syscall)) {
				c->checked[f.key]++;
				c->allowed++;
				continue;
			}
			oom |= hold(c, f, lw_model_call_max(f.call),
				    v.syscall_max_ns);
		}
	}
	/* Per loop: lag and utilization. */
	for (size_t i = 0; i < lw_model_nloops(m); i++) {
		lw_check_failure_t f = { .loop = lw_model_loop_at(m, i) };
		const lw_model_loop_t *l = f.loop;
		double u = lw_model_utilization(l);

		if (v.lag_p99_ns != LW_BUDGET_NONE && l->lag->count > 0) {
			f.key = LW_CHECK_LAG_P99;
			f.limit_from = "lag.p99";
			oom |= hold(c, f, lw_hist_quantile(l->lag, 0.99),
				    v.lag_p99_ns);
		}
		if (v.util_max_ppm != LW_BUDGET_UTIL_NONE && u >= 0) {
			f.key = LW_CHECK_UTIL_MAX;
			f.limit_from = "utilization.max";
			oom |= hold(c, f, (uint64_t)(u * 1e6 + 0.5),
				    v.util_max_ppm);
		}
	}
	if (oom) {
		lw_check_free(c);
		return NULL;
	}
	/* A site line may set a limit the defaults leave off: the key is in
	 * force when some site was held to it. */
	c->active[LW_CHECK_CALLBACK_MAX] =
		v.callback_max_ns != LW_BUDGET_NONE ||
		c->checked[LW_CHECK_CALLBACK_MAX];
	c->active[LW_CHECK_SITE_P99] = v.site_p99_ns != LW_BUDGET_NONE ||
				       c->checked[LW_CHECK_SITE_P99];
	/* Group by key, the worst (furthest over, as a ratio) first. */
	for (size_t i = 1; i < c->nfail; i++) {
		lw_check_failure_t f = c->fail[i];
		size_t j = i;
		while (j > 0 &&
		       (c->fail[j - 1].key > f.key ||
			(c->fail[j - 1].key == f.key &&
			 (double)c->fail[j - 1].value /
					 (double)(c->fail[j - 1].limit + 1) <
				 (double)f.value / (double)(f.limit + 1)))) {
			c->fail[j] = c->fail[j - 1];
			j--;
		}
		c->fail[j] = f;
	}
	return c;
}

void lw_check_free(lw_check_t *c)
{
	if (c == NULL)
		return;
	free(c->fail);
	free(c);
}

int lw_check_site_over(const lw_check_t *c, const lw_model_site_t *s)
{
	for (size_t i = 0; c && i < c->nfail; i++)
		if (c->fail[i].site == s)
			return 1;
	return 0;
}

/* ---- words ---- */

static const char *dur(uint64_t ns, char *buf, size_t len)
{
	lw_duration_format(ns, buf, len);
	return buf;
}

/* "85.0%" for parts per million. */
static const char *pct(uint64_t ppm, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f%%", (double)ppm / 1e4);
	return buf;
}

static const char *value_str(const lw_check_failure_t *f, uint64_t v, char *buf,
			     size_t len)
{
	return f->key == LW_CHECK_UTIL_MAX ? pct(v, buf, len)
					   : dur(v, buf, len);
}

/* "fsync (regular file /tmp/x)" */
static void call_str(const lw_model_call_t *k, char *buf, size_t len)
{
	const char *kind = lw_kev_fd_kind_name(k->fd_kind);

	if (k->fd_path[0])
		snprintf(buf, len, "%s (%s %s)", k->syscall, kind, k->fd_path);
	else if (kind[0])
		snprintf(buf, len, "%s (%s)", k->syscall, kind);
	else
		snprintf(buf, len, "%s", k->syscall);
}

/* The subject of a failure: "handle_sleep (loop main)" or "loop main". */
static void subject(const lw_check_failure_t *f, char *buf, size_t len)
{
	if (f->site != NULL)
		snprintf(buf, len, "%s", f->site->name);
	else
		snprintf(buf, len, "loop %s", f->loop ? f->loop->name : "?");
}

/* One failure as a line, without a newline. */
static void failure_line(const lw_check_failure_t *f, char *buf, size_t len)
{
	char who[LW_MODEL_NAME_MAX + 16], v[32], lim[32], call[256];

	subject(f, who, sizeof(who));
	value_str(f, f->value, v, sizeof(v));
	value_str(f, f->limit, lim, sizeof(lim));
	switch (f->key) {
	case LW_CHECK_SYSCALL_MAX:
		call_str(f->call, call, sizeof(call));
		snprintf(buf, len, "%s: %s took %s, over %s (%s)", who, call, v,
			 lim, f->limit_from ? f->limit_from : "?");
		break;
	case LW_CHECK_CALLBACK_MAX:
	case LW_CHECK_SITE_P99:
		snprintf(buf, len, "%s: %s %s, over %s (%s)", who,
			 f->key == LW_CHECK_SITE_P99 ? "p99" : "longest", v,
			 lim, f->limit_from ? f->limit_from : "?");
		break;
	default:
		snprintf(buf, len, "%s: %s %s, over %s (%s)", who,
			 f->key == LW_CHECK_LAG_P99 ? "lag p99" : "utilization",
			 v, lim, f->limit_from ? f->limit_from : "?");
	}
}

/* What held the site up: its longest call with the stack, or a sample. */
static void print_evidence(const lw_check_failure_t *f, FILE *out)
{
	char call[256], d[32];
	const lw_model_stack_t *st = NULL;

	if (f->call != NULL) {
		if (f->key != LW_CHECK_SYSCALL_MAX) {
			call_str(f->call, call, sizeof(call));
			fprintf(out, "      inside it: %s, longest %s\n", call,
				dur(lw_model_call_max(f->call), d, sizeof(d)));
		}
		st = &f->call->stack;
	} else if (f->site != NULL && f->site->sample.n > 0) {
		fprintf(out,
			"      on CPU: %" PRIu64 " stack sample%s, one "
			"of them:\n",
			f->site->samples, f->site->samples == 1 ? "" : "s");
		st = &f->site->sample;
	}
	for (uint32_t i = 0; st && i < st->n; i++)
		fprintf(out, "        #%-2u %s\n", i, st->frames[i]);
}

int lw_check_passed(const lw_check_t *c)
{
	return c->nfail == 0 && c->ended_badly == NULL;
}

void lw_check_print(const lw_check_t *c, const lw_model_t *m, FILE *out)
{
	char line[1024];
	size_t nact = 0, nbroke = 0;

	for (int k = 0; k < LW_CHECK_NKEYS; k++) {
		if (!c->active[k])
			continue;
		nact++;
		size_t n = 0;
		for (size_t i = 0; i < c->nfail; i++)
			n += c->fail[i].key == (enum lw_check_key)k;
		nbroke += n > 0;
		if (n == 0)
			fprintf(out, "ok    %-16s %" PRIu64 " checked\n",
				key_names[k], c->checked[k]);
		else
			fprintf(out,
				"FAIL  %-16s %zu of %" PRIu64 " over budget\n",
				key_names[k], n, c->checked[k]);
	}
	if (c->ended_badly != NULL)
		fprintf(out, "FAIL  %-16s %s\n", "exit", c->ended_badly);
	for (size_t i = 0; i < c->nfail; i++) {
		failure_line(&c->fail[i], line, sizeof(line));
		fprintf(out, "\n%s: %s\n", key_names[c->fail[i].key], line);
		print_evidence(&c->fail[i], out);
	}
	if (c->allowed > 0)
		fprintf(out,
			"\n(%" PRIu64 " blocking call%s over syscall.max "
			"allowed by an allow line)\n",
			c->allowed, c->allowed == 1 ? "" : "s");
	(void)m;
	fprintf(out, "\ncheck: %s: %zu of %zu budget%s broken%s\n",
		lw_check_passed(c) ? "passed" : "FAILED", nbroke, nact,
		nact == 1 ? "" : "s",
		c->ended_badly ? ", and the process ended badly" : "");
}

/* ---- JUnit ---- */

static void xml_escape(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '&':
			fputs("&amp;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		default:
			/* XML 1.0 allows no control characters but tab
			 * and newline: an untrusted name must not make the
			 * file unreadable. */
			if (*p < 0x20 && *p != '\n' && *p != '\t')
				fputc('?', out);
			else
				fputc(*p, out);
		}
	}
}

int lw_check_junit(const lw_check_t *c, const lw_model_t *m, FILE *out)
{
	const lw_model_info_t *info = lw_model_info(m);
	size_t ntests = 0, nfailures = 0;
	char line[1024], ts[32];
	double secs = info->end_ns > info->start_ns
			      ? (double)(info->end_ns - info->start_ns) / 1e9
			      : 0;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	for (int k = 0; k < LW_CHECK_NKEYS; k++) {
		if (!c->active[k])
			continue;
		ntests++;
		for (size_t i = 0; i < c->nfail; i++)
			if (c->fail[i].key == (enum lw_check_key)k) {
				nfailures++;
				break;
			}
	}
	if (c->ended_badly != NULL) {
		ntests++;
		nfailures++;
	}
	fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(out,
		"<testsuites name=\"loopwatch\" tests=\"%zu\" failures=\"%zu\">"
		"\n",
		ntests, nfailures);
	fprintf(out,
		"  <testsuite name=\"loopwatch check\" tests=\"%zu\" "
		"failures=\"%zu\" errors=\"0\" skipped=\"0\" time=\"%.3f\" "
		"timestamp=\"%s\">\n",
		ntests, nfailures, secs, ts);
	fprintf(out, "    <properties>\n");
	fprintf(out, "      <property name=\"pid\" value=\"%d\"/>\n",
		(int)info->pid);
	fprintf(out, "      <property name=\"command\" value=\"");
	xml_escape(out, info->comm);
	fprintf(out, "\"/>\n    </properties>\n");
	for (int k = 0; k < LW_CHECK_NKEYS; k++) {
		if (!c->active[k])
			continue;
		size_t n = 0;
		for (size_t i = 0; i < c->nfail; i++)
			n += c->fail[i].key == (enum lw_check_key)k;
		fprintf(out,
			"    <testcase classname=\"loopwatch.budget\" "
			"name=\"%s\" time=\"%.3f\"",
			key_names[k], secs);
		if (n == 0) {
			fprintf(out, "/>\n");
			continue;
		}
		fprintf(out, ">\n      <failure message=\"");
		snprintf(line, sizeof(line), "%zu over budget: %s", n,
			 key_what[k]);
		xml_escape(out, line);
		fprintf(out, "\" type=\"%s\">", key_names[k]);
		for (size_t i = 0; i < c->nfail; i++) {
			const lw_check_failure_t *f = &c->fail[i];
			if (f->key != (enum lw_check_key)k)
				continue;
			failure_line(f, line, sizeof(line));
			xml_escape(out, line);
			fputc('\n', out);
			const lw_model_stack_t *st = f->call ? &f->call->stack
						     : f->site
							     ? &f->site->sample
							     : NULL;
			for (uint32_t s = 0; st && s < st->n; s++) {
				fprintf(out, "  #%u ", s);
				xml_escape(out, st->frames[s]);
				fputc('\n', out);
			}
		}
		fprintf(out, "</failure>\n    </testcase>\n");
	}
	if (c->ended_badly != NULL) {
		fprintf(out,
			"    <testcase classname=\"loopwatch.process\" "
			"name=\"exit\" time=\"%.3f\">\n      <failure "
			"message=\"",
			secs);
		xml_escape(out, c->ended_badly);
		fprintf(out, "\" type=\"exit\">");
		xml_escape(out, c->ended_badly);
		fprintf(out, "\n</failure>\n    </testcase>\n");
	}
	fprintf(out, "  </testsuite>\n</testsuites>\n");
	if (fflush(out) != 0 || ferror(out))
		return -1;
	return 0;
}

/* ---- JSON ---- */

static void json_stack(lw_json_t *j, const lw_model_stack_t *st)
{
	lw_json_strs(j, (const char *const *)st->frames, st->n);
}

void lw_check_json(const lw_check_t *c, const lw_model_t *m, lw_json_t *j)
{
	(void)m;
	lw_json_obj(j);
	lw_json_key(j, "budgets");
	lw_json_arr(j);
	for (int k = 0; k < LW_CHECK_NKEYS; k++) {
		if (!c->active[k])
			continue;
		size_t n = 0;
		for (size_t i = 0; i < c->nfail; i++)
			n += c->fail[i].key == (enum lw_check_key)k;
		lw_json_obj(j);
		lw_json_kstr(j, "key", key_names[k]);
		lw_json_kstr(j, "what", key_what[k]);
		lw_json_kbool(j, "passed", n == 0);
		lw_json_ku64(j, "checked", c->checked[k]);
		lw_json_ku64(j, "failures", n);
		lw_json_obj_end(j);
	}
	lw_json_arr_end(j);
	lw_json_key(j, "failures");
	lw_json_arr(j);
	for (size_t i = 0; i < c->nfail; i++) {
		const lw_check_failure_t *f = &c->fail[i];
		char line[1024];
		lw_json_obj(j);
		lw_json_kstr(j, "key", key_names[f->key]);
		lw_json_kstr(j, "loop", f->loop ? f->loop->name : NULL);
		lw_json_key(j, "site");
		lw_json_str(j, f->site ? f->site->name : NULL);
		if (f->key == LW_CHECK_UTIL_MAX) {
			lw_json_knum(j, "value", (double)f->value / 1e6);
			lw_json_knum(j, "limit", (double)f->limit / 1e6);
		} else {
			lw_json_ku64(j, "value_ns", f->value);
			lw_json_ku64(j, "limit_ns", f->limit);
		}
		lw_json_kstr(j, "limit_from", f->limit_from);
		failure_line(f, line, sizeof(line));
		lw_json_kstr(j, "message", line);
		if (f->call != NULL) {
			lw_json_key(j, "syscall");
			lw_json_obj(j);
			lw_json_kstr(j, "name", f->call->syscall);
			lw_json_kstr(j, "fd_kind",
				     lw_kev_fd_kind_name(f->call->fd_kind));
			lw_json_kstr(j, "fd_path", f->call->fd_path);
			lw_json_ku64(j, "max_ns", lw_model_call_max(f->call));
			lw_json_obj_end(j);
			lw_json_key(j, "stack");
			json_stack(j, &f->call->stack);
		} else if (f->site != NULL && f->site->sample.n > 0) {
			lw_json_key(j, "stack");
			json_stack(j, &f->site->sample);
		}
		lw_json_obj_end(j);
	}
	lw_json_arr_end(j);
	lw_json_ku64(j, "allowed", c->allowed);
	lw_json_kstr(j, "ended_badly", c->ended_badly);
	lw_json_kbool(j, "passed", lw_check_passed(c));
	lw_json_obj_end(j);
}
