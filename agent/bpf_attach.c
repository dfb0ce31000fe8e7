/*
 * bpf_attach.c - `loopwatch attach`: the rings say which callback ran when and
 * for how long; the kernel probes say what the loop thread did meanwhile:
 * the syscalls that were slow, the time it spent off CPU, the stacks it was
 * sampled in, and the calls that can block even when they were fast.
 * Joined by time (both sides are CLOCK_MONOTONIC), they say what each slow
 * callback was waiting for or computing.  A loop thread without rings (a
 * program that never linked libloopwatch, found by its waits or named with
 * --tid) is watched the same way, one loop iteration (a busy span between
 * two waits) standing for the callback.
 *
 * One thread does everything, alternately: wait up to a tick for kernel
 * events (buffered in the join), read the rings, take the kernel events
 * published meanwhile, then hand each slow record the events it contains
 * and expire the events no record will claim.  Reading the rings before
 * the last poll of a tick matters: a syscall's event is sent before its
 * callback ends, so every event of a record we hold is in the ring buffer
 * by then.  A span's events are always in the ring buffer before the span.
 */
#include "attach.h"
#include "bpf_load.h"

#include "join.h"
#include "kevent.h"
#include "loopwatch.h"
#include "proc.h"
#include "ring_reader.h"
#include "symbolize.h"
#include "threads.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define TICK_MS 10
/* How long an event that no running callback covers waits for its record
 * before it is called "outside callbacks": the record is written right
 * after the callback ends, so a few ticks are plenty. */
#define GRACE_NS (200ull * 1000000)
/* Buffered events; drop-oldest beyond.  A 1 s CPU-bound stall sends 250
 * samples at the default 4 ms. */
#define JOIN_CAP 2048
#define SITE_SYSCALLS 8 /* distinct syscalls remembered per site */
#define RECS_MAX 4096 /* ring records read per loop and tick */
#define SAMPLE_GROUPS 16 /* distinct sampled stacks told apart per stall */
#define SAMPLE_SHOWN 2 /* of which shown */
#define MAX_DETECTED 16 /* loop threads taken from detection */

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (p == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* ---- state ---- */

/* Totals of one syscall within one site. */
struct site_sys {
	uint32_t nr;
	uint64_t count, total_ns;
};

/* The summary of one site of one loop (site 0 of a loop without rings:
 * its iterations). */
struct site_sum {
	size_t loop; /* index into st->loops */
	uint32_t site;
	char name[LW_RING_NAME_MAX + 64];
	uint64_t count, total_ns, max_ns;
	uint64_t samples, offcpu_ns;
	struct site_sys sys[SITE_SYSCALLS];
	size_t nsys;
};

/* A loop thread: one with a ring, or one without (ring NULL) whose busy
 * spans the kernel reports. */
struct loop {
	lw_rr_ring_t *ring;
	lw_rr_cursor_t cur;
	uint32_t tid; /* 0 until the ring names its thread */
	uint32_t flags; /* what it is watched with (LW_BPF_WAIT_*, ...) */
	char comm[16];
	uint64_t lost_reported;
};

/* One line of the blocking-calls table. */
struct block_row {
	char where[LW_RING_NAME_MAX + 64]; /* the site, or the thread */
	uint32_t nr, fd_kind;
	uint64_t calls, total_ns, max_ns;
	char at[256]; /* the first caller outside libc */
	char *stack; /* a sample: the first stack counted, formatted */
};

struct state {
	const struct lw_attach_opts *o;
	FILE *out;
	lw_rr_proc_t *p;
	struct lw_bpf *bpf; /* NULL: rings alone */
	lw_kev_sym_t ks; /* ks.sym NULL: raw addresses */
	lw_join_t *join;
	struct loop *loops;
	size_t nloops, loops_cap;
	struct site_sum *sites;
	size_t nsites, sites_cap;
	struct block_row *rows;
	size_t nrows, rows_cap;
	uint64_t outside; /* events outside any callback */
	uint64_t samples_unclaimed; /* samples in no slow callback */
	uint64_t lost_reported; /* kernel events lost, as last said */
	lw_join_event_t buf[JOIN_CAP];
	struct lw_ring_record recs[RECS_MAX];
};

/* The loop whose thread is tid, or NULL. */
static struct loop *loop_of(struct state *st, uint32_t tid)
{
	for (size_t i = 0; i < st->nloops; i++)
		if (st->loops[i].tid != 0 && st->loops[i].tid == tid)
			return &st->loops[i];
	return NULL;
}

static struct loop *add_loop(struct state *st)
{
	if (st->nloops == st->loops_cap) {
		st->loops_cap = st->loops_cap ? 2 * st->loops_cap : 8;
		st->loops =
			xrealloc(st->loops, st->loops_cap * sizeof(*st->loops));
	}
	struct loop *l = &st->loops[st->nloops++];
	memset(l, 0, sizeof(*l));
	return l;
}

static const char *site_label(const lw_rr_ring_t *r, uint32_t id, char *buf,
			      size_t len)
{
	lw_rr_site_t s;

	if (id == 0)
		snprintf(buf, len, "(no site)");
	else if (lw_rr_site(r, id, &s) < 0)
		snprintf(buf, len, "site#%" PRIu32, id);
	else if (s.name[0] != '\0')
		snprintf(buf, len, "%s", s.name);
	else
		snprintf(buf, len, "0x%" PRIx64, s.fn);
	return buf;
}

/* "thread 1234 (redis-server)" */
static const char *thread_label(const struct loop *l, char *buf, size_t len)
{
	snprintf(buf, len, "thread %" PRIu32 " (%s)", l->tid,
		 l->comm[0] ? l->comm : "?");
	return buf;
}

static struct site_sum *site_sum(struct state *st, size_t loop, uint32_t site)
{
	for (size_t i = 0; i < st->nsites; i++)
		if (st->sites[i].loop == loop && st->sites[i].site == site)
			return &st->sites[i];
	if (st->nsites == st->sites_cap) {
		st->sites_cap = st->sites_cap ? 2 * st->sites_cap : 16;
		st->sites =
			xrealloc(st->sites, st->sites_cap * sizeof(*st->sites));
	}
	struct site_sum *s = &st->sites[st->nsites++];
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->site = site;
	if (st->loops[loop].ring != NULL) {
		site_label(st->loops[loop].ring, site, s->name,
			   sizeof(s->name));
	} else {
		char t[64];
		snprintf(s->name, sizeof(s->name), "%s iterations",
			 thread_label(&st->loops[loop], t, sizeof(t)));
	}
	return s;
}

static void count_sys(struct site_sum *s, const struct lw_bpf_syscall_event *ev)
{
	size_t i;

	for (i = 0; i < s->nsys; i++)
		if (s->sys[i].nr == ev->nr)
			break;
	if (i == s->nsys) {
		if (s->nsys == SITE_SYSCALLS)
			return;
		s->sys[s->nsys++] = (struct site_sys){ .nr = ev->nr };
	}
	s->sys[i].count++;
	s->sys[i].total_ns += ev->duration_ns;
}

/* ---- telling what a stall was made of ---- */

static void print_stack(struct state *st, const char *stack)
{
	if (stack != NULL)
		fputs(stack, st->out);
}

/* " [off CPU 12.0 ms, 3.0 ms of it preempted]" for a syscall, or "". */
static void offcpu_note(const struct lw_bpf_syscall_event *ev, char *buf,
			size_t len)
{
	buf[0] = '\0';
	if (ev->off_cpu_ns == 0)
		return;
	if (ev->preempt_ns > 0)
		snprintf(buf, len,
			 " [off CPU %.1f ms, %.1f ms of it preempted]",
			 ms(ev->off_cpu_ns), ms(ev->preempt_ns));
	else
		snprintf(buf, len, " [off CPU %.1f ms]", ms(ev->off_cpu_ns));
}

struct sample_group {
	const char *stack; /* the first sample's */
	char key[512]; /* its functions, innermost first */
	size_t count;
};

/* The functions of a formatted stack, without offsets and lines: the
 * samples of one loop are told apart by what they were in, not by the
 * instruction. */
static void stack_key(const char *stack, char *key, size_t len)
{
	size_t k = 0;

	key[0] = '\0';
	if (stack == NULL)
		return;
	for (const char *s = stack; *s && k + 1 < len;) {
		const char *eol = strchr(s, '\n');
		size_t n = eol ? (size_t)(eol - s) : strlen(s);
		const char *plus = memchr(s, '+', n);
		const char *sp = memchr(s + 3 < s + n ? s + 3 : s, ' ',
					n > 3 ? n - 3 : 0);
		size_t take = plus ? (size_t)(plus - s)
			      : sp ? (size_t)(sp - s)
				   : n;
		if (take > len - 1 - k)
			take = len - 1 - k;
		memcpy(key + k, s, take);
		k += take;
		if (k + 1 < len)
			key[k++] = ';';
		if (!eol)
			break;
		s = eol + 1;
	}
	key[k] = '\0';
}

static int by_count(const void *a, const void *b)
{
	const struct sample_group *x = a, *y = b;

	return (x->count < y->count) - (x->count > y->count);
}

/*
 * Tell what the n events of one stall (a callback, or an iteration of a
 * loop without rings) were: its slow syscalls with their stacks, its
 * off-CPU time outside syscalls, and its stack samples grouped by stack,
 * the most frequent first.  The line that introduces the stall has been
 * printed without its newline: the first part goes on it.  Takes the
 * events' stacks (frees them).
 */
static void tell(struct state *st, struct site_sum *s, lw_join_event_t *ev,
		 size_t n)
{
	struct sample_group groups[SAMPLE_GROUPS];
	size_t ngroups = 0, nsamples = 0, other = 0;
	const char *sep = ", of which ";
	char call[600], note[96];

	for (size_t i = 0; i < n; i++) {
		lw_join_event_t *e = &ev[i];
		if (e->h.kind == LW_BPF_EV_SYSCALL) {
			lw_kev_format_call(e, call, sizeof(call));
			offcpu_note(&e->u.sys, note, sizeof(note));
			fprintf(st->out, "%s%.1f ms in %s%s\n", sep,
				ms(e->h.duration_ns), call, note);
			print_stack(st, e->stack);
			count_sys(s, &e->u.sys);
			sep = "  and ";
		} else if (e->h.kind == LW_BPF_EV_OFFCPU) {
			int pre = e->u.off.flags & LW_BPF_OFF_PREEMPTED;
			fprintf(st->out,
				"%s%.1f ms off CPU outside syscalls (%s)\n",
				sep, ms(e->h.duration_ns),
				pre ? "preempted: runnable, another task "
				      "had the CPU"
				    : "asleep: a page fault or the like");
			print_stack(st, e->stack);
			s->offcpu_ns += e->h.duration_ns;
			sep = "  and ";
		}
	}
	for (size_t i = 0; i < n; i++) {
		lw_join_event_t *e = &ev[i];
		if (e->h.kind != LW_BPF_EV_SAMPLE)
			continue;
		char key[sizeof(groups[0].key)];
		size_t g;
		nsamples++;
		stack_key(e->stack, key, sizeof(key));
		for (g = 0; g < ngroups; g++)
			if (strcmp(key, groups[g].key) == 0)
				break;
		if (g < ngroups) {
			groups[g].count++;
		} else if (ngroups < SAMPLE_GROUPS) {
			groups[ngroups].stack = e->stack;
			memcpy(groups[ngroups].key, key, sizeof(key));
			groups[ngroups++].count = 1;
		} else {
			other++;
		}
	}
	if (nsamples > 0) {
		qsort(groups, ngroups, sizeof(groups[0]), by_count);
		fprintf(st->out, "%son CPU: %zu stack sample%s\n",
			sep[0] == ',' ? ", " : "  and ", nsamples,
			nsamples == 1 ? "" : "s");
		for (size_t g = 0; g < ngroups && g < SAMPLE_SHOWN; g++) {
			fprintf(st->out, "  %zu of them in:\n",
				groups[g].count);
			print_stack(st, groups[g].stack);
		}
		if (ngroups > SAMPLE_SHOWN || other > 0)
			fprintf(st->out, "  (and %zu in other stacks)\n",
				nsamples - groups[0].count -
					(ngroups > 1 ? groups[1].count : 0));
		s->samples += nsamples;
		sep = "  and ";
	}
	if (sep[0] == ',')
		fprintf(st->out, "%s\n",
			st->bpf ? ", in no slow syscall (on CPU or short waits)"
				: "");
	for (size_t i = 0; i < n; i++)
		free(ev[i].stack);
}

static void print_outside(struct state *st, lw_join_event_t *e)
{
	char call[600], note[96];

	if (e->h.kind == LW_BPF_EV_SYSCALL) {
		lw_kev_format_call(e, call, sizeof(call));
		offcpu_note(&e->u.sys, note, sizeof(note));
		fprintf(st->out,
			"outside callbacks: %.1f ms in %s%s on tid %" PRIu32
			"\n",
			ms(e->h.duration_ns), call, note, e->h.tid);
	} else if (e->h.kind == LW_BPF_EV_OFFCPU) {
		fprintf(st->out,
			"outside callbacks: %.1f ms off CPU (%s) on tid "
			"%" PRIu32 "\n",
			ms(e->h.duration_ns),
			(e->u.off.flags & LW_BPF_OFF_PREEMPTED) ? "preempted"
								: "asleep",
			e->h.tid);
	} else {
		/* A sample of a long span that no slow callback claimed:
		 * many short callbacks in one iteration. */
		st->samples_unclaimed++;
		free(e->stack);
		return;
	}
	print_stack(st, e->stack);
	free(e->stack);
	st->outside++;
}

/* ---- events ---- */

/* A long iteration of a loop without rings: tell what it was made of. */
static void on_span(struct state *st, struct loop *l,
		    const struct lw_bpf_span_event *sp)
{
	char t[64];
	size_t li = (size_t)(l - st->loops);
	struct site_sum *s = site_sum(st, li, 0);
	size_t n = lw_join_take(st->join, l->tid, sp->start_ns, sp->duration_ns,
				st->buf, JOIN_CAP);

	s->count++;
	s->total_ns += sp->duration_ns;
	if (sp->duration_ns > s->max_ns)
		s->max_ns = sp->duration_ns;
	fprintf(st->out, "loop %s: an iteration took %.1f ms",
		thread_label(l, t, sizeof(t)), ms(sp->duration_ns));
	if (sp->off_cpu_ns > 0)
		fprintf(st->out, " (off CPU %.1f ms)", ms(sp->off_cpu_ns));
	tell(st, s, st->buf, n);
}

static int on_event(void *ctx, const struct lw_bpf_event_head *ev, size_t size)
{
	struct state *st = ctx;
	struct loop *l = loop_of(st, ev->tid);
	lw_join_event_t e;

	if (l == NULL)
		return 0; /* a thread no longer watched */
	if (ev->kind == LW_BPF_EV_SPAN) {
		if (l->ring == NULL)
			on_span(st, l, (const struct lw_bpf_span_event *)ev);
		return 0;
	}
	if (lw_kev_from_raw(st->o->pid, &st->ks, ev, size, &e) == 0)
		lw_join_add(st->join, &e);
	return 0;
}

/* ---- records ---- */

/* A slow callback: tell it with the events it contains. */
static void on_record(struct state *st, size_t li,
		      const struct lw_ring_record *rec)
{
	struct loop *l = &st->loops[li];
	char label[LW_RING_NAME_MAX + 32];
	size_t n = 0;

	if (st->bpf != NULL && l->tid != 0)
		n = lw_join_take(st->join, l->tid, rec->start_ns,
				 rec->duration_ns, st->buf, JOIN_CAP);
	struct site_sum *s = site_sum(st, li, rec->site);
	s->count++;
	s->total_ns += rec->duration_ns;
	if (rec->duration_ns > s->max_ns)
		s->max_ns = rec->duration_ns;

	site_label(l->ring, rec->site, label, sizeof(label));
	fprintf(st->out, "callback %s (%s) took %.1f ms", label,
		lw_rr_kind_name(rec->kind), ms(rec->duration_ns));
	tell(st, s, st->buf, n);
}

/* Print the events that no record will claim: outside callbacks, or
 * (prefix set, the final flush) inside a callback still running. */
static void expire(struct state *st, struct loop *l, uint64_t now,
		   uint64_t grace, uint64_t running, const char *prefix)
{
	size_t n = lw_join_expire(st->join, l->tid, now, grace, running,
				  st->buf, JOIN_CAP);

	if (prefix && n > 0) {
		struct site_sum dummy;
		memset(&dummy, 0, sizeof(dummy));
		fputs(prefix, st->out);
		tell(st, &dummy, st->buf, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		print_outside(st, &st->buf[i]);
}

/* Read what is new in every ring and join the slow records. */
static void drain(struct state *st, int final)
{
	for (size_t li = 0; li < st->nloops; li++) {
		struct loop *l = &st->loops[li];
		uint64_t running = 0;

		if (l->ring == NULL) {
			/* Spans were told as they came; what is left after
			 * the grace is outside any long iteration, unless the
			 * iteration in progress may still claim it. */
			struct lw_bpf_thread kt;
			if (!final && st->bpf &&
			    lw_bpf_thread_read(st->bpf, l->tid, &kt) == 0)
				running = kt.span_start_ns;
			if (l->tid != 0)
				expire(st, l, final ? UINT64_MAX : now_ns(),
				       final ? 0 : GRACE_NS, running, NULL);
			continue;
		}
		lw_rr_current_t cur;
		/* The running callback as it was before this read: if it
		 * ends meanwhile, its record is in what we read below. */
		if (lw_rr_current(l->ring, &cur) == 0 && cur.running)
			running = cur.start_ns;

		/* Bounded per tick (the rest waits for the next), so a fast
		 * writer cannot starve the kernel events. */
		size_t got = 0, n;
		while (got < RECS_MAX &&
		       (n = lw_rr_read(l->ring, &l->cur, st->recs + got,
				       RECS_MAX - got)) > 0)
			got += n;
		/* The events of these records were sent before the records
		 * were written: collect them before joining. */
		if (st->bpf)
			lw_bpf_poll(st->bpf, 0, on_event, st);
		for (size_t k = 0; k < got; k++)
			if (st->recs[k].duration_ns >= st->o->min_ns)
				on_record(st, li, &st->recs[k]);
		if (l->cur.lost > l->lost_reported) {
			fprintf(st->out,
				"(loop %s: %" PRIu64
				" records lost, read too late)\n",
				lw_rr_name(l->ring),
				l->cur.lost - l->lost_reported);
			l->lost_reported = l->cur.lost;
		}
		if (l->tid == 0)
			continue;
		if (!final) {
			expire(st, l, now_ns(), GRACE_NS, running, NULL);
		} else {
			expire(st, l, UINT64_MAX, 0, running, NULL);
			expire(st, l, UINT64_MAX, 0, 0,
			       "in a callback still running");
		}
	}
}

/* ---- blocking calls, counted in the kernel ---- */

/* Which site of loop l has its function on this stack: the innermost
 * frame whose function starts at a site's fn.  0 if none. */
static uint32_t site_on_stack(struct state *st, struct loop *l,
			      const __u64 *frames, size_t n)
{
	uint32_t cap = lw_rr_site_capacity(l->ring);

	if (st->ks.sym == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		lw_sym_frame_t f;
		if (lw_sym_lookup(st->ks.sym, frames[i], i > 0, &f) != 0 ||
		    !(f.flags & LW_SYM_FUNC))
			continue;
		/* The function's start (func_off is from the address as
		 * given, even when a return address was looked up at -1). */
		uint64_t start = (uint64_t)frames[i] - f.func_off;
		for (uint32_t id = 1; id <= cap; id++) {
			lw_rr_site_t s;
			if (lw_rr_site(l->ring, id, &s) < 0)
				break;
			if (s.fn == start)
				return id;
		}
	}
	return 0;
}

static int on_block(void *ctx, const struct lw_bpf_block_key *k,
		    const struct lw_bpf_block_val *v)
{
	struct state *st = ctx;
	struct loop *l = loop_of(st, k->tid);
	__u64 frames[LW_BPF_STACK_DEPTH];
	char where[sizeof(st->rows[0].where)], t[64];
	int n;

	if (l == NULL)
		return 0;
	n = lw_bpf_stack(st->bpf, k->stack_id, frames, LW_BPF_STACK_DEPTH);
	if (n < 0)
		n = 0;
	if (l->ring != NULL) {
		/* The kernel read the running callback from the ring; a
		 * stack that names a site's function is the fallback. */
		uint32_t id = k->site ? k->site
				      : site_on_stack(st, l, frames, (size_t)n);
		if (id != 0)
			site_label(l->ring, id, where, sizeof(where));
		else
			snprintf(where, sizeof(where), "(outside callbacks)");
	} else {
		snprintf(where, sizeof(where), "%s",
			 thread_label(l, t, sizeof(t)));
	}
	size_t i;
	for (i = 0; i < st->nrows; i++)
		if (st->rows[i].nr == k->nr &&
		    st->rows[i].fd_kind == k->fd_kind &&
		    strcmp(st->rows[i].where, where) == 0)
			break;
	if (i == st->nrows) {
		if (st->nrows == st->rows_cap) {
			st->rows_cap = st->rows_cap ? 2 * st->rows_cap : 16;
			st->rows = xrealloc(st->rows,
					    st->rows_cap * sizeof(*st->rows));
		}
		memset(&st->rows[i], 0, sizeof(st->rows[i]));
		snprintf(st->rows[i].where, sizeof(st->rows[i].where), "%s",
			 where);
		st->rows[i].nr = k->nr;
		st->rows[i].fd_kind = k->fd_kind;
		if (n > 0) {
			lw_kev_caller(&st->ks, frames, (size_t)n,
				      st->rows[i].at, sizeof(st->rows[i].at));
			st->rows[i].stack =
				lw_kev_format_stack(&st->ks, frames, n * 8);
		} else
			snprintf(st->rows[i].at, sizeof(st->rows[i].at),
				 "(no stack: %s)", strerror(-k->stack_id));
		st->nrows++;
	}
	struct block_row *r = &st->rows[i];
	r->calls += v->calls;
	r->total_ns += v->total_ns;
	if (v->max_ns > r->max_ns)
		r->max_ns = v->max_ns;
	return 0;
}

static int by_total(const void *a, const void *b)
{
	const struct block_row *x = a, *y = b;

	return (x->total_ns < y->total_ns) - (x->total_ns > y->total_ns);
}

static void print_blocking(struct state *st)
{
	char nb[32];

	st->nrows = 0;
	if (lw_bpf_blocking_read(st->bpf, on_block, st) < 0 || st->nrows == 0)
		return;
	qsort(st->rows, st->nrows, sizeof(st->rows[0]), by_total);
	fprintf(st->out,
		"\ncalls that can block, on the loop threads (counted even "
		"when fast; a sample stack under each):\n");
	for (size_t i = 0; i < st->nrows; i++) {
		struct block_row *r = &st->rows[i];
		const char *kind = lw_kev_fd_kind_name(r->fd_kind);
		char call[96];
		snprintf(call, sizeof(call), "%s%s%s%s",
			 lw_kev_syscall_label(r->nr, nb, sizeof(nb)),
			 kind[0] ? " (" : "", kind, kind[0] ? ")" : "");
		fprintf(st->out,
			"  %-24s %-28s x%-6" PRIu64
			" total %.3f ms, max %.3f ms, at %s\n",
			r->where, call, r->calls, ms(r->total_ns),
			ms(r->max_ns),
			r->at[0] ? r->at
				 : "libc (the stack is cut there: no frame "
				   "pointers)");
		/* The sample stack, indented under its row. */
		for (const char *l = r->stack; l && *l;) {
			const char *eol = strchr(l, '\n');
			int len = eol ? (int)(eol - l) : (int)strlen(l);
			fprintf(st->out, "  %.*s\n", len, l);
			l = eol ? eol + 1 : NULL;
		}
		free(r->stack);
		r->stack = NULL;
	}
}

/* Say when the kernel dropped events since the last time: the ring buffer
 * was full (the agent fell behind) or the blocking-call table was. */
static void report_kernel_loss(struct state *st)
{
	struct lw_bpf_stats bs;

	if (st->bpf == NULL || lw_bpf_stats_read(st->bpf, &bs) < 0)
		return;
	if (bs.lost > st->lost_reported)
		fprintf(st->out,
			"(kernel: %" PRIu64
			" events lost, the ring buffer was full)\n",
			(uint64_t)bs.lost - st->lost_reported);
	st->lost_reported = bs.lost;
}

/* ---- setup and the summary ---- */

/* Watch the loop threads that the rings name by now. */
static void watch_new_threads(struct state *st)
{
	char why[256];

	for (size_t i = 0; i < st->nloops; i++) {
		struct loop *l = &st->loops[i];
		if (l->tid != 0 || l->ring == NULL)
			continue;
		pid_t tid = lw_rr_tid(l->ring);
		if (tid <= 0)
			continue;
		l->tid = (uint32_t)tid;
		l->flags = LW_BPF_WAIT_EPOLL;
		/* Where the target maps the ring: the kernel reads the
		 * running callback's site there at each blocking call. */
		uint64_t base = 0, site_addr = 0;
		if (lw_proc_map_of_inode(st->o->pid, lw_rr_inode(l->ring),
					 &base) == 0)
			site_addr = base +
				    offsetof(struct lw_ring_header, cur_site);
		if (st->bpf && lw_bpf_watch(st->bpf, l->tid, l->flags,
					    site_addr, why, sizeof(why)) < 0)
			fprintf(stderr,
				"loopwatch: cannot watch thread %d: %s\n",
				(int)tid, why);
	}
}

static void print_summary(struct state *st)
{
	char nb[32];

	fprintf(st->out, "\nsummary: %zu slow site%s\n", st->nsites,
		st->nsites == 1 ? "" : "s");
	for (size_t i = 0; i < st->nsites; i++) {
		struct site_sum *s = &st->sites[i];
		fprintf(st->out,
			"  %-24s %6" PRIu64 " slow, total %.1f ms, max %.1f "
			"ms",
			s->name, s->count, ms(s->total_ns), ms(s->max_ns));
		const char *sep = "; in ";
		for (size_t k = 0; k < s->nsys; k++) {
			fprintf(st->out, "%s%s x%" PRIu64 " %.1f ms", sep,
				lw_kev_syscall_label(s->sys[k].nr, nb,
						     sizeof(nb)),
				s->sys[k].count, ms(s->sys[k].total_ns));
			sep = ", ";
		}
		sep = s->nsys ? ", " : "; ";
		if (s->offcpu_ns > 0) {
			fprintf(st->out, "%soff CPU outside syscalls %.1f ms",
				sep, ms(s->offcpu_ns));
			sep = ", ";
		}
		if (s->samples > 0)
			fprintf(st->out, "%son CPU %" PRIu64 " stack sample%s",
				sep, s->samples, s->samples == 1 ? "" : "s");
		fputc('\n', st->out);
	}
	if (st->outside > 0)
		fprintf(st->out,
			"  %" PRIu64 " slow event%s outside callbacks\n",
			st->outside, st->outside == 1 ? "" : "s");
	if (st->bpf == NULL)
		return;
	print_blocking(st);

	struct lw_bpf_stats bs;
	if (lw_bpf_stats_read(st->bpf, &bs) == 0) {
		if (bs.lost > 0)
			fprintf(st->out,
				"loopwatch: %" PRIu64
				" kernel events lost (the ring buffer was "
				"full)\n",
				(uint64_t)bs.lost);
		if (bs.block_dropped > 0)
			fprintf(st->out,
				"loopwatch: %" PRIu64
				" blocking calls not counted (the table was "
				"full)\n",
				(uint64_t)bs.block_dropped);
	}
	if (lw_join_dropped(st->join) > 0)
		fprintf(st->out,
			"loopwatch: %" PRIu64
			" kernel events dropped unmatched (the join buffer "
			"was full)\n",
			lw_join_dropped(st->join));
	if (lw_bpf_bad_records(st->bpf) > 0)
		fprintf(st->out,
			"loopwatch: %lu kernel records of an unknown kind or "
			"size skipped\n",
			lw_bpf_bad_records(st->bpf));
}

/* Load and attach the probes; NULL (after one line on stderr) if the
 * kernel will not have them: the rings alone still tell a lot. */
static struct lw_bpf *open_probes(struct state *st)
{
	struct lw_bpf_opts bo = { .min_ns = st->o->min_ns };
	struct lw_bpf *b;
	char why[256];

	if (lw_bpf_open(&b, &bo, why, sizeof(why)) < 0)
		goto fail;
	if (lw_bpf_attach(b, why, sizeof(why)) < 0) {
		lw_bpf_free(b);
		goto fail;
	}
	return b;
fail:
	fprintf(stderr,
		"loopwatch: kernel probes unavailable (%s); continuing with "
		"the rings alone\n",
		why);
	return NULL;
}

/* Watch a loop thread that has no ring: its iterations stand for the
 * callbacks.  wait says which syscalls are its wait. */
static void add_thread(struct state *st, pid_t tid, uint32_t wait,
		       const char *how)
{
	char path[64], why[256];
	struct loop *l;

	if (loop_of(st, (uint32_t)tid) != NULL)
		return; /* a ring names it already */
	l = add_loop(st);
	l->tid = (uint32_t)tid;
	l->flags = wait | LW_BPF_SPANS;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)st->o->pid,
		 (int)tid);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		if (fgets(l->comm, sizeof(l->comm), f) != NULL)
			l->comm[strcspn(l->comm, "\n")] = '\0';
		fclose(f);
	}
	fprintf(st->out, "loop thread %d (%s): no ring, %s\n", (int)tid,
		l->comm[0] ? l->comm : "?", how);
	if (st->bpf &&
	    lw_bpf_watch(st->bpf, l->tid, l->flags, 0, why, sizeof(why)) < 0)
		fprintf(stderr, "loopwatch: cannot watch thread %d: %s\n",
			(int)tid, why);
}

/* The name of the syscalls a wait flag stands for. */
static const char *wait_name(uint32_t flags)
{
	if (flags & LW_BPF_WAIT_EPOLL)
		return "epoll_wait";
	if (flags & LW_BPF_WAIT_POLL)
		return "poll";
	if (flags & LW_BPF_WAIT_SELECT)
		return "select";
	if (flags & LW_BPF_WAIT_IO_URING)
		return "io_uring_enter";
	return "?";
}

/* The loop threads of a process without rings: --tid, or those seen in
 * an event wait.  Returns how many were added. */
static size_t find_threads(struct state *st)
{
	lw_loop_thread_t found[MAX_DETECTED];
	char why[256], how[128];
	size_t before = st->nloops;
	int n = lw_threads_detect(st->o->pid, 10, 10, found, MAX_DETECTED, why,
				  sizeof(why));

	if (n < 0) {
		fprintf(stderr,
			"loopwatch: cannot detect the loop threads: %s\n", why);
		n = 0;
	}
	if (st->o->tid > 0) {
		uint32_t wait = LW_BPF_WAIT_EPOLL;
		for (int i = 0; i < n; i++)
			if (found[i].tid == st->o->tid)
				wait = found[i].wait_flags;
		snprintf(how, sizeof(how),
			 "named by --tid, its wait taken to "
			 "be %s",
			 wait_name(wait));
		add_thread(st, st->o->tid, wait, how);
		return st->nloops - before;
	}
	for (int i = 0; i < n; i++) {
		snprintf(how, sizeof(how), "found waiting in %s",
			 wait_name(found[i].wait_flags));
		add_thread(st, found[i].tid, found[i].wait_flags, how);
	}
	return st->nloops - before;
}

static int cannot_attach(pid_t pid, int err, const char *why)
{
	fprintf(stderr, "loopwatch: cannot attach to PID %d: %s\n", (int)pid,
		why);
	if (err == -ESRCH)
		fprintf(stderr, "loopwatch: hint: check the pid with "
				"'loopwatch list' or ps\n");
	else if (err == -EACCES)
		fprintf(stderr, "loopwatch: hint: run loopwatch as the same "
				"user as the process, or as root\n");
	return EXIT_USAGE;
}

int lw_attach_run(const struct lw_attach_opts *o)
{
	/* Large (the buffers): on the heap. */
	struct state *st = xcalloc(1, sizeof(*st));
	char why[512];
	int rc = 0;

	st->o = o;
	st->out = o->out ? o->out : stdout;

	int r = lw_rr_attach(o->pid, &st->p, why, sizeof(why));
	if (r < 0) {
		free(st);
		return cannot_attach(o->pid, r, why);
	}
	st->bpf = open_probes(st);
	if (st->p->nrings == 0 && st->bpf == NULL) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings (%s) and no kernel probes: nothing to watch\n",
			(int)o->pid,
			st->p->nskipped ? st->p->skipped_why : "none found");
		lw_rr_detach(st->p);
		free(st);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < st->p->nrings; i++) {
		struct loop *l = add_loop(st);
		l->ring = st->p->rings[i];
		lw_rr_cursor_init(l->ring, &l->cur, 0);
	}
	/* The unwinder brings its symbolizer: one reading of the files. */
	if (st->bpf != NULL &&
	    lw_unwind_open(o->pid, &st->ks.uw, why, sizeof(why)) == 0) {
		st->ks.sym = lw_unwind_sym(st->ks.uw);
	} else if (lw_sym_open(o->pid, &st->ks.sym, why, sizeof(why)) < 0) {
		fprintf(stderr,
			"loopwatch: cannot read the symbols of PID %d: %s; "
			"stacks will be addresses\n",
			(int)o->pid, why);
		st->ks.sym = NULL;
	}
	st->join = lw_join_new(JOIN_CAP);
	if (st->join == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}

	char comm[64] = "?";
	lw_proc_comm(o->pid, comm, sizeof(comm));
	fprintf(st->out,
		"attached to PID %d (%s): %zu loop%s with rings, kernel probes "
		"%s, slow from %.1f ms\n",
		(int)o->pid, comm, st->p->nrings, st->p->nrings == 1 ? "" : "s",
		st->bpf ? "on" : "off", ms(o->min_ns));
	if ((st->p->nrings == 0 || o->tid > 0) && find_threads(st) == 0) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings (%s), and no thread of it waits in epoll, poll "
			"or select\n"
			"loopwatch: hint: name the loop thread with --tid "
			"TID\n",
			(int)o->pid,
			st->p->nskipped ? st->p->skipped_why : "none found");
		rc = EXIT_USAGE;
		goto out;
	}
	watch_new_threads(st);
	if (st->bpf) {
		const char *swhy;
		if (lw_bpf_sampling(st->bpf, &swhy) == 0 && swhy[0])
			fprintf(stderr,
				"loopwatch: no stack samples of CPU-bound "
				"stalls: %s\n",
				swhy);
	}
	fflush(st->out);

	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	uint64_t t0 = now_ns(), next_alive = t0;
	int exited = 0;
	while (!stop_signal) {
		uint64_t now = now_ns();
		if (o->duration_ns && now - t0 >= o->duration_ns)
			break;
		if (now >= next_alive) {
			if (!lw_rr_proc_alive(st->p)) {
				exited = 1;
				break;
			}
			next_alive = now + 100000000;
			watch_new_threads(st);
			report_kernel_loss(st);
		}
		if (st->bpf) {
			r = lw_bpf_poll(st->bpf, TICK_MS, on_event, st);
			if (r < 0 && r != -EINTR) {
				fprintf(stderr,
					"loopwatch: cannot read kernel events: "
					"%s\n",
					strerror(-r));
				rc = EXIT_USAGE;
				break;
			}
		} else {
			struct timespec ts = { 0, TICK_MS * 1000000L };
			nanosleep(&ts, NULL);
		}
		drain(st, 0);
		fflush(st->out);
	}
	/* Stop the probes first so that the last events are all in the
	 * ring buffer, then read everything once more. */
	if (st->bpf) {
		lw_bpf_detach(st->bpf);
		lw_bpf_poll(st->bpf, 0, on_event, st);
	}
	drain(st, 1);
	if (exited)
		fprintf(st->out, "loopwatch: process %d exited\n", (int)o->pid);
	print_summary(st);
	fflush(st->out);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
out:
	free(st->sites);
	free(st->rows);
	free(st->loops);
	lw_join_free(st->join);
	if (st->ks.uw != NULL)
		lw_unwind_close(st->ks.uw); /* and its symbolizer */
	else
		lw_sym_close(st->ks.sym);
	lw_bpf_free(st->bpf);
	lw_rr_detach(st->p);
	free(st);
	return rc;
}
