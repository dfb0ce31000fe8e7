/*
 * report.c - the summary and the JSON of report.h.
 */
#include "report.h"

#include "duration.h"
#include "kevent.h"
#include "ring_reader.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TOP_DEFAULT 20
#define STACK_SHOWN 8 /* frames of a stack in the text */

static const char *dur(uint64_t ns, char *buf, size_t len)
{
	lw_duration_format(ns, buf, len);
	return buf;
}

static const char *kind_name(uint16_t kind)
{
	return kind == LW_MODEL_KIND_ITERATION ? "iteration"
					       : lw_rr_kind_name(kind);
}

void lw_report_loop_label(const lw_model_loop_t *l, char *buf, size_t len)
{
	if (l->has_ring)
		snprintf(buf, len, "%.100s (tid %" PRId32 ")", l->name, l->tid);
	else
		snprintf(buf, len, "%.100s", l->name);
}

static const char *sources(const lw_model_info_t *i)
{
	int rings = i->sources & LW_REC_SRC_RINGS;
	int kp = i->sources & LW_REC_SRC_KPROBES;

	return rings && kp ? "rings + kernel probes"
	       : rings	   ? "rings only"
	       : kp	   ? "kernel probes only"
			   : "nothing";
}

/* The slow threshold marks sites when no budget does. */
static int marked(const lw_model_t *m, const struct lw_report_opts *o,
		  const lw_model_site_t *s)
{
	if (o->check != NULL)
		return lw_check_site_over(o->check, s);
	uint64_t min = lw_model_info(m)->min_ns;
	return min > 0 && lw_hist_max(&s->hist) >= min;
}

static void loop_line(const lw_model_t *m, const lw_model_loop_t *l, FILE *out)
{
	char label[160], a[32], b[32], c[32];
	double u = lw_model_utilization(l);

	(void)m;
	lw_report_loop_label(l, label, sizeof(label));
	fprintf(out, "loop %s: ", label);
	if (u >= 0)
		fprintf(out, "utilization %.1f%%", u * 100);
	else
		fprintf(out, "utilization n/a");
	if (l->has_ring)
		fprintf(out,
			", %" PRIu64 " callbacks, %" PRIu64 " records lost",
			l->records,
			l->have_counters ? l->last.lost_records : 0);
	if (l->lag->count > 0)
		fprintf(out, ", lag p50 %s p99 %s max %s",
			dur(lw_hist_quantile(l->lag, 0.5), a, sizeof(a)),
			dur(lw_hist_quantile(l->lag, 0.99), b, sizeof(b)),
			dur(lw_hist_max(l->lag), c, sizeof(c)));
	if (l->have_counters && l->last.pool_threads > 0) {
		fprintf(out,
			"; defer pool: %" PRIu32 " threads, queue max %" PRIu32
			", %" PRIu64 " jobs done",
			l->last.pool_threads, l->pool_queued_max,
			l->last.pool_completed);
		if (l->pool_longest_ns > 0)
			fprintf(out, ", longest job seen %s",
				dur(l->pool_longest_ns, a, sizeof(a)));
	}
	fputc('\n', out);
}

static void print_stack(const lw_model_stack_t *st, const char *indent,
			FILE *out)
{
	for (uint32_t i = 0; i < st->n && i < STACK_SHOWN; i++)
		fprintf(out, "%s#%-2u %s\n", indent, i, st->frames[i]);
	if (st->n > STACK_SHOWN)
		fprintf(out, "%s... %u more frames\n", indent,
			st->n - STACK_SHOWN);
}

static int call_by_total(const void *a, const void *b)
{
	const lw_model_call_t *x = *(const lw_model_call_t *const *)a;
	const lw_model_call_t *y = *(const lw_model_call_t *const *)b;
	uint64_t tx = lw_model_call_total(x), ty = lw_model_call_total(y);
	return (tx < ty) - (tx > ty);
}

/* The blocking calls of one site, the costliest first, each with its
 * stack. */
static void site_calls(const lw_model_site_t *s, FILE *out)
{
	const lw_model_call_t *calls[LW_MODEL_CALLS];
	char a[32], b[32];

	for (size_t i = 0; i < s->ncalls; i++)
		calls[i] = &s->calls[i];
	qsort(calls, s->ncalls, sizeof(calls[0]), call_by_total);
	for (size_t i = 0; i < s->ncalls; i++) {
		const lw_model_call_t *k = calls[i];
		const char *fk = lw_kev_fd_kind_name(k->fd_kind);
		uint64_t count = lw_model_call_count(k);
		fprintf(out,
			"    %s%s%s%s%s: %" PRIu64 " call%s, total %s, max %s",
			k->syscall, fk[0] ? " on " : "", fk,
			k->fd_path[0] ? " " : "", k->fd_path, count,
			count == 1 ? "" : "s",
			dur(lw_model_call_total(k), a, sizeof(a)),
			dur(lw_model_call_max(k), b, sizeof(b)));
		if (k->slow > 0)
			fprintf(out, ", %" PRIu64 " slow", k->slow);
		fputc('\n', out);
		print_stack(&k->stack, "        ", out);
	}
	if (s->calls_dropped > 0)
		fprintf(out, "    (%" PRIu64 " events of other calls)\n",
			s->calls_dropped);
}

void lw_report_text(const lw_model_t *m, const struct lw_report_opts *o,
		    FILE *out)
{
	const lw_model_info_t *info = lw_model_info(m);
	size_t top = o->top ? o->top : TOP_DEFAULT;
	size_t n = lw_model_nsites(m);
	const lw_model_site_t **sorted = malloc((n ? n : 1) * sizeof(*sorted));
	uint64_t end = o->now_ns ? o->now_ns : lw_model_end_ns(m);
	char a[32], b[32], c[32], d[32], e[32], f[32];

	if (sorted == NULL)
		return;
	n = lw_model_sorted(m, sorted, n);
	fprintf(out, "\n%s: PID %d (%s), %.1f s, %s\n",
		o->now_ns ? "so far" : "summary", (int)info->pid, info->comm,
		end > info->start_ns ? (double)(end - info->start_ns) / 1e9 : 0,
		sources(info));
	for (size_t i = 0; i < lw_model_nloops(m); i++)
		loop_line(m, lw_model_loop_at(m, i), out);
	if (n == 0) {
		fprintf(out, "no callbacks seen\n");
		free(sorted);
		return;
	}
	fprintf(out, "\n  %-28s %-10s %8s %9s %6s %9s %9s %9s %9s %9s\n",
		"SITE", "KIND", "CALLS", "TOTAL", "SHARE", "P50", "P90", "P99",
		"P99.9", "MAX");
	size_t shown = 0, empty = 0, flagged = 0;
	for (size_t i = 0; i < n && shown < top; i++) {
		const lw_model_site_t *s = sorted[i];
		/* A site known only from the kernel's blocking counts (a
		 * loop without rings and no slow iteration yet) has no
		 * callbacks to show here; its calls come below. */
		if (lw_hist_count(&s->hist) == 0) {
			empty++;
			continue;
		}
		shown++;
		uint64_t q[4];
		static const double qs[4] = { 0.5, 0.9, 0.99, 0.999 };
		double share = lw_model_share(m, s);
		char sh[16];
		lw_hist_quantiles(&s->hist, qs, q, 4);
		if (share >= 0)
			snprintf(sh, sizeof(sh), "%.1f%%", share * 100);
		else
			snprintf(sh, sizeof(sh), "-");
		bool mark = marked(m, o, s);
		flagged += mark;
		fprintf(out,
			"%c %-28.28s %-10s %8" PRIu64
			" %9s %6s %9s %9s %9s %9s %9s\n",
			mark ? '!' : ' ', s->name, kind_name(s->kind),
			lw_hist_count(&s->hist),
			dur(lw_hist_sum(&s->hist), a, sizeof(a)), sh,
			dur(q[0], b, sizeof(b)), dur(q[1], c, sizeof(c)),
			dur(q[2], d, sizeof(d)), dur(q[3], e, sizeof(e)),
			dur(lw_hist_max(&s->hist), f, sizeof(f)));
	}
	if (n > shown + empty)
		fprintf(out, "  (and %zu more sites)\n", n - shown - empty);
	/* The key to the mark, when a row has it. */
	if (flagged)
		fprintf(out, "  %s\n",
			o->check ? "! broke a budget"
				 : "! its longest callback reached the slow "
				   "threshold");

	/* What held up the worst sites. */
	size_t told = 0;
	for (size_t i = 0; i < n && told < top; i++) {
		const lw_model_site_t *s = sorted[i];
		if (s->ncalls == 0 && s->sample.n == 0 && s->offcpu_ns == 0)
			continue;
		if (told++ == 0)
			fprintf(out, "\nwhat held them up:\n");
		fprintf(out, "  %s:\n", s->name);
		site_calls(s, out);
		if (s->offcpu_ns > 0)
			fprintf(out, "    off CPU outside syscalls: %s\n",
				dur(s->offcpu_ns, a, sizeof(a)));
		if (s->sample.n > 0) {
			fprintf(out,
				"    on CPU: %" PRIu64 " stack sample%s, the "
				"latest of its longest:\n",
				s->samples, s->samples == 1 ? "" : "s");
			print_stack(&s->sample, "        ", out);
		}
	}
	if (info->records_lost > 0 || info->kernel_lost > 0)
		fprintf(out,
			"\nlost: %" PRIu64 " ring records (read too late), "
			"%" PRIu64 " kernel events (ring buffer full)\n",
			info->records_lost, info->kernel_lost);
	free(sorted);
}

/* ---- JSON ---- */

static void json_stack(lw_json_t *j, const char *key,
		       const lw_model_stack_t *st)
{
	lw_json_key(j, key);
	lw_json_strs(j, (const char *const *)st->frames, st->n);
}

static void json_loop(const lw_model_t *m, const lw_model_loop_t *l,
		      lw_json_t *j)
{
	double u = lw_model_utilization(l);

	(void)m;
	lw_json_obj(j);
	lw_json_ku64(j, "id", l->id);
	lw_json_kstr(j, "name", l->name);
	lw_json_ki64(j, "tid", l->tid);
	lw_json_kbool(j, "ring", l->has_ring);
	lw_json_ku64(j, "records", l->records);
	lw_json_ku64(j, "records_lost",
		     l->have_counters ? l->last.lost_records : 0);
	lw_json_key(j, "utilization");
	if (u >= 0)
		lw_json_num(j, u);
	else
		lw_json_null(j);
	lw_json_ku64(j, "busy_ns", lw_model_busy_ns(l));
	lw_json_ku64(j, "iterations",
		     l->have_counters ? l->last.iterations - l->first.iterations
				      : 0);
	lw_json_key(j, "lag");
	lw_json_obj(j);
	lw_json_ku64(j, "count", l->lag->count);
	lw_json_ku64(j, "p50_ns", lw_hist_quantile(l->lag, 0.5));
	lw_json_ku64(j, "p99_ns", lw_hist_quantile(l->lag, 0.99));
	lw_json_ku64(j, "max_ns", lw_hist_max(l->lag));
	lw_json_obj_end(j);
	lw_json_key(j, "pool");
	lw_json_obj(j);
	lw_json_ku64(j, "threads", l->have_counters ? l->last.pool_threads : 0);
	lw_json_ku64(j, "queued", l->have_counters ? l->last.pool_queued : 0);
	lw_json_ku64(j, "queued_max", l->pool_queued_max);
	lw_json_ku64(j, "completed",
		     l->have_counters ? l->last.pool_completed : 0);
	lw_json_ku64(j, "longest_job_ns", l->pool_longest_ns);
	lw_json_obj_end(j);
	lw_json_ku64(j, "syscall_max_ns", l->syscall_max_ns);
	lw_json_ku64(j, "slow_events_outside_callbacks", l->slow_outside);
	lw_json_obj_end(j);
}

static void json_site(const lw_model_t *m, const struct lw_report_opts *o,
		      const lw_model_site_t *s, lw_json_t *j)
{
	static const double qs[4] = { 0.5, 0.9, 0.99, 0.999 };
	uint64_t q[4];
	double share = lw_model_share(m, s);

	lw_hist_quantiles(&s->hist, qs, q, 4);
	lw_json_obj(j);
	lw_json_ku64(j, "loop", s->loop_id);
	lw_json_ku64(j, "id", s->site_id);
	lw_json_kstr(j, "name", s->name);
	lw_json_kstr(j, "func", s->func);
	lw_json_kstr(j, "kind", kind_name(s->kind));
	lw_json_ku64(j, "count", lw_hist_count(&s->hist));
	lw_json_ku64(j, "total_ns", lw_hist_sum(&s->hist));
	lw_json_ku64(j, "mean_ns", lw_hist_mean(&s->hist));
	lw_json_ku64(j, "p50_ns", q[0]);
	lw_json_ku64(j, "p90_ns", q[1]);
	lw_json_ku64(j, "p99_ns", q[2]);
	lw_json_ku64(j, "p999_ns", q[3]);
	lw_json_ku64(j, "max_ns", lw_hist_max(&s->hist));
	lw_json_key(j, "share");
	if (share >= 0)
		lw_json_num(j, share);
	else
		lw_json_null(j);
	lw_json_kbool(j, "over_budget",
		      o->check ? lw_check_site_over(o->check, s) : 0);
	lw_json_ku64(j, "offcpu_ns", s->offcpu_ns);
	lw_json_ku64(j, "samples", s->samples);
	json_stack(j, "sample_stack", &s->sample);
	lw_json_key(j, "blocking");
	lw_json_arr(j);
	for (size_t i = 0; i < s->ncalls; i++) {
		const lw_model_call_t *k = &s->calls[i];
		lw_json_obj(j);
		lw_json_kstr(j, "syscall", k->syscall);
		lw_json_ku64(j, "nr", k->nr);
		lw_json_kstr(j, "fd_kind", lw_kev_fd_kind_name(k->fd_kind));
		lw_json_kstr(j, "fd_path", k->fd_path);
		lw_json_ku64(j, "count", k->count);
		lw_json_ku64(j, "total_ns", k->total_ns);
		lw_json_ku64(j, "max_ns", k->max_ns);
		lw_json_ku64(j, "slow", k->slow);
		lw_json_ku64(j, "slow_total_ns", k->slow_total_ns);
		lw_json_ku64(j, "slow_max_ns", k->slow_max_ns);
		json_stack(j, "stack", &k->stack);
		lw_json_obj_end(j);
	}
	lw_json_arr_end(j);
	lw_json_obj_end(j);
}

void lw_report_json(const lw_model_t *m, const struct lw_report_opts *o,
		    const char *type, uint64_t seq, lw_json_t *j)
{
	const lw_model_info_t *info = lw_model_info(m);
	uint64_t end = o->now_ns ? o->now_ns : lw_model_end_ns(m);
	size_t n = lw_model_nsites(m);
	const lw_model_site_t **sorted = malloc((n ? n : 1) * sizeof(*sorted));

	n = sorted ? lw_model_sorted(m, sorted, n) : 0;
	lw_json_obj(j);
	lw_json_kstr(j, "schema", LW_REPORT_SCHEMA);
	lw_json_kstr(j, "type", type);
	lw_json_ku64(j, "seq", seq);
	lw_json_kstr(j, "loopwatch", info->version);
	lw_json_key(j, "process");
	lw_json_obj(j);
	lw_json_ki64(j, "pid", info->pid);
	lw_json_kstr(j, "comm", info->comm);
	/* How it ended while watched, null if it did not. */
	lw_json_key(j, "ended");
	if (info->fate[0]) {
		static const char *const how[] = { "?", "exited", "execed",
						   "pid_reused" };
		lw_json_obj(j);
		lw_json_kstr(j, "how",
			     how[info->fate_end <= 3 ? info->fate_end : 0]);
		lw_json_kbool(j, "failed",
			      info->fate_flags & LW_REC_FATE_FAILED);
		lw_json_kstr(j, "line", info->fate);
		lw_json_obj_end(j);
	} else {
		lw_json_str(j, NULL);
	}
	lw_json_obj_end(j);
	lw_json_key(j, "sources");
	lw_json_obj(j);
	lw_json_kbool(j, "rings", info->sources & LW_REC_SRC_RINGS);
	lw_json_kstr(j, "rings_why", info->rings_why);
	lw_json_kbool(j, "kernel", info->sources & LW_REC_SRC_KPROBES);
	lw_json_kstr(j, "kernel_why", info->kprobes_why);
	lw_json_obj_end(j);
	lw_json_key(j, "time");
	lw_json_obj(j);
	lw_json_ku64(j, "start_mono_ns", info->start_ns);
	lw_json_ku64(j, "end_mono_ns", end);
	lw_json_knum(j, "elapsed_s",
		     end > info->start_ns ? (double)(end - info->start_ns) / 1e9
					  : 0);
	lw_json_ku64(j, "start_real_ns", info->real_ns);
	lw_json_obj_end(j);
	lw_json_ku64(j, "slow_ns", info->min_ns);
	lw_json_key(j, "loops");
	lw_json_arr(j);
	for (size_t i = 0; i < lw_model_nloops(m); i++)
		json_loop(m, lw_model_loop_at(m, i), j);
	lw_json_arr_end(j);
	lw_json_key(j, "sites");
	lw_json_arr(j);
	for (size_t i = 0; i < n; i++)
		json_site(m, o, sorted[i], j);
	lw_json_arr_end(j);
	lw_json_key(j, "lost");
	lw_json_obj(j);
	lw_json_ku64(j, "records", info->records_lost);
	lw_json_ku64(j, "kernel_events", info->kernel_lost);
	lw_json_ku64(j, "sites_not_kept", info->sites_dropped);
	lw_json_obj_end(j);
	lw_json_key(j, "kernel");
	lw_json_obj(j);
	lw_json_ku64(j, "events_lost", info->kernel_lost);
	lw_json_obj_end(j);
	if (o->check != NULL) {
		lw_json_key(j, "check");
		lw_check_json(o->check, m, j);
	}
	lw_json_obj_end(j);
	free(sorted);
}
