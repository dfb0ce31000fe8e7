/*
 * bpf_attach.c - the agent's watch of one process (attach.h).  The rings
 * say which callback ran when and for how long; the kernel probes say what
 * the loop thread did meanwhile: the syscalls that were slow, the time it
 * spent off CPU, the stacks it was sampled in, and the calls that can
 * block even when they were fast.  Joined by time (both sides are
 * CLOCK_MONOTONIC), they say what each slow callback was waiting for or
 * computing.  A loop thread without rings (a program that never linked
 * libloopwatch, found by its waits or named with --tid) is watched the same
 * way, one loop iteration (a busy span between two waits) standing for the
 * callback.
 *
 * Everything joined becomes an item of the recording's vocabulary
 * (lw_rec_*: loop, site, callback, kevent, counters, blocking): the model
 * aggregates the items, and `record` writes the same items to its file, so
 * `report` rebuilds the very model the live run had.
 *
 * One thread does everything, alternately: wait up to a tick for kernel
 * events (buffered in the join), read the rings, take the kernel events
 * published meanwhile, then hand each record the events it contains and
 * expire the events no record will claim.  Reading the rings before the
 * last poll of a tick matters: a syscall's event is sent before its
 * callback ends, so every event of a record we hold is in the ring buffer
 * by then.  A span's events are always in the ring buffer before the span.
 * Each tick also looks at every loop's current-callback slot, to report a
 * callback that is stuck while it still runs.
 */
#include "clock.h"
#include "attach.h"
#include "bpf_load.h"
#include "bpf_snap.h"

#include "check.h"
#include "fate.h"
#include "join.h"
#include "json.h"
#include "kevent.h"
#include "loopwatch.h"
#include "proc.h"
#include "recording.h"
#include "report.h"
#include "ring_reader.h"
#include "symbolize.h"
#include "threads.h"

#include <errno.h>
#include <fcntl.h>
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
/* Ring records read per loop and tick: at a million callbacks a second a
 * 10 ms tick brings 10,000; the bound keeps a runaway writer from starving
 * the kernel events, and the default ring (65,536) holds 6 ticks more. */
#define RECS_MAX 32768
#define RECS_CHUNK 4096
#define SAMPLE_GROUPS 16 /* distinct sampled stacks told apart per stall */
#define SAMPLE_SHOWN 2 /* of which shown */
#define MAX_DETECTED 16 /* loop threads taken from detection */
#define COUNTERS_NS (100ull * 1000000) /* loop counters read this often */
#define BLOCKING_NS (5ull * 1000000000) /* the kernel table, when recording */
/* The recording's buffer goes to the file at least this often, so that an
 * agent killed outright (SIGKILL, the OOM killer) leaves a file that holds
 * all but its last second; the buffer is written sooner when full. */
#define REC_FLUSH_NS (1ull * 1000000000)
/* The process's fds are looked through for new rings this often (a loop
 * made after the attach): a readlink per fd, so not every tick. */
#define RESCAN_NS (1ull * 1000000000)
#define PROGRESS_NS (1ull * 1000000000) /* record's progress line */

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

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
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

/* A loop thread: one with a ring, or one without (ring NULL) whose busy
 * spans the kernel reports. */
struct loop {
	uint32_t id; /* the recording's and the model's loop id, 1-based */
	lw_rr_ring_t *ring;
	lw_rr_cursor_t cur;
	uint32_t tid; /* 0 until the ring names its thread */
	uint32_t flags; /* what it is watched with (LW_BPF_WAIT_*, ...) */
	char comm[16];
	uint64_t lost_reported;
	uint8_t *site_sent; /* per site id: its site item was emitted */
	uint32_t site_cap;
	uint64_t stuck_start; /* the stuck callback already told, by start */
	/* When the kernel probes began to watch its thread, 0 before. */
	uint64_t kwatch_ns;
};

struct state {
	const struct lw_attach_opts *o;
	FILE *say; /* status lines: the report, or stderr beside JSON */
	FILE *ev; /* slow callbacks as they come; NULL: not told */
	lw_rr_proc_t *p;
	lw_fate_t *fate; /* what becomes of the process */
	struct lw_bpf *bpf; /* NULL: rings alone */
	lw_snap_t *snap; /* stacks of stuck threads; NULL: none */
	int snap_tried;
	char kprobes_why[256];
	lw_kev_sym_t ks; /* ks.sym NULL: raw addresses */
	lw_join_t *join;
	struct loop *loops;
	size_t nloops, loops_cap;
	lw_model_t *model;
	lw_rec_writer_t *rec; /* NULL unless recording */
	int rec_told; /* its write error has been said */
	uint64_t json_seq;
	uint64_t outside; /* events outside any callback */
	uint64_t lost_reported; /* kernel events lost, as last said */
	uint64_t kernel_lost;
	struct lw_attach_stuck stuck; /* the last stuck callback told */
	/* The loop of the stuck callback told, an index: loops grows when
	 * the process makes a loop (add_loop moves them). */
	size_t stuck_loop;
	uint64_t viewer_blocking_at; /* the viewer's next blocking read */
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
		struct loop *n =
			realloc(st->loops, st->loops_cap * sizeof(*st->loops));
		if (n == NULL) {
			fprintf(stderr, "loopwatch: cannot allocate memory\n");
			exit(EXIT_USAGE);
		}
		st->loops = n;
	}
	struct loop *l = &st->loops[st->nloops++];
	memset(l, 0, sizeof(*l));
	l->id = (uint32_t)st->nloops;
	return l;
}

/* "thread 1234 (redis-server)" */
static const char *thread_label(const struct loop *l, char *buf, size_t len)
{
	snprintf(buf, len, "thread %" PRIu32 " (%s)", l->tid,
		 l->comm[0] ? l->comm : "?");
	return buf;
}

/* ---- the joined stream: to the model, and to the recording ---- */

static void rec_failed(struct state *st)
{
	/* Once: every item after the first failure fails the same way. */
	if (st->rec_told++)
		return;
	fprintf(stderr, "loopwatch: cannot write the recording %s: %s\n",
		st->o->record_path, lw_rec_writer_why(st->rec));
	stop_signal = SIGTERM;
}

/* One item of the joined stream: to the model, and to the recording. */
static void emit(struct state *st, const lw_rec_item_t *it)
{
	lw_model_item(st->model, it);
	if (st->rec && lw_rec_write_item(st->rec, it) < 0)
		rec_failed(st);
}

static void emit_loop(struct state *st, const struct loop *l)
{
	char t[64];
	lw_rec_loop_t rl = {
		.id = l->id,
		.tid = (int32_t)l->tid,
		.ring_capacity = l->ring ? lw_rr_capacity(l->ring) : 0,
		.flags = l->ring ? lw_rr_flags(l->ring) : 0,
		.name = l->ring ? lw_rr_name(l->ring)
				: thread_label(l, t, sizeof(t)),
	};
	emit(st, &(lw_rec_item_t){ .type = LW_REC_LOOP, .u.loop = rl });
}

/* A site's item, the first time one of its callbacks comes: its name and
 * its function, symbolized while the target lives. */
static void emit_site(struct state *st, struct loop *l, uint32_t id)
{
	lw_rr_site_t s;

	/* Every record passes here: what a known site costs is these
	 * tests, nothing more. */
	if (id == 0 || l->ring == NULL)
		return;
	if (l->site_sent == NULL) {
		l->site_cap = lw_rr_site_capacity(l->ring) + 1;
		l->site_sent = xcalloc(l->site_cap, 1);
	}
	if (id >= l->site_cap || l->site_sent[id])
		return;
	if (lw_rr_site(l->ring, id, &s) < 0)
		return; /* not readable yet: site#N until it is */
	l->site_sent[id] = 1;
	char func[512] = "";
	if (st->ks.sym != NULL && s.fn != 0) {
		lw_sym_frame_t f;
		if (lw_sym_lookup(st->ks.sym, s.fn, 0, &f) == 0)
			lw_sym_format(&f, func, sizeof(func));
	}
	lw_rec_site_t rs = {
		.loop_id = l->id,
		.site_id = id,
		.kind = s.kind,
		.fn = s.fn,
		.name = s.name,
		.func = func,
	};
	emit(st, &(lw_rec_item_t){ .type = LW_REC_SITE, .u.site = rs });
}

static void emit_callback(struct state *st, struct loop *l,
			  const struct lw_ring_record *r)
{
	lw_rec_callback_t c = {
		.loop_id = l->id,
		.site_id = r->site,
		.kind = r->kind,
		.flags = r->flags,
		.lateness_ns = r->lateness_ns,
		.start_ns = r->start_ns,
		.duration_ns = r->duration_ns,
	};
	/* Every record comes through here, a million a second at full
	 * speed: straight to the model and the writer, without building an
	 * item (a union of ~150 bytes) for emit(). */
	emit_site(st, l, r->site);
	lw_model_callback(st->model, &c);
	if (st->rec && lw_rec_write_callback(st->rec, &c) < 0)
		rec_failed(st);
}

/* Split "  #0 frame\n  #1 frame\n" into frames (pointing into buf, which
 * is modified); lines that are not frames (a note that the stack was cut)
 * are left out, and set *cut. */
static uint32_t split_frames(char *buf, const char **frames, uint32_t max,
			     int *cut)
{
	uint32_t n = 0;

	for (char *s = buf; s && *s;) {
		char *eol = strchr(s, '\n');
		if (eol)
			*eol = '\0';
		char *p = s + strspn(s, " ");
		if (*p == '#' && n < max) {
			p += 1 + strspn(p + 1, "0123456789");
			frames[n++] = p + strspn(p, " ");
		} else if (*p != '\0') {
			*cut = 1;
		}
		s = eol ? eol + 1 : NULL;
	}
	return n;
}

/* A joined kernel event, attributed to site (0: outside callbacks, or the
 * iteration of a loop without rings).  Leaves e->stack alone. */
static void emit_kevent(struct state *st, const struct loop *l, uint32_t site,
			const lw_join_event_t *e)
{
	const char *frames[LW_REC_FRAMES_MAX];
	char *copy = e->stack ? strdup(e->stack) : NULL;
	int cut = 0;
	lw_rec_kevent_t k = {
		.loop_id = l->id,
		.site_id = site,
		.kind = e->h.kind,
		.tid = (int32_t)e->h.tid,
		.start_ns = e->h.start_ns,
		.duration_ns = e->h.duration_ns,
		.fd = -1,
		.syscall = "",
		.fd_path = e->fd_path,
		.frames = frames,
	};

	if (e->h.kind == LW_BPF_EV_SYSCALL) {
		char nb[32];
		const struct lw_bpf_syscall_event *sc = &e->u.sys;
		k.nr = sc->nr;
		k.fd = sc->fd;
		k.fd_kind = sc->fd_kind;
		k.ret = sc->ret;
		k.off_cpu_ns = sc->off_cpu_ns;
		k.preempt_ns = sc->preempt_ns;
		k.syscall = lw_kev_syscall_label(sc->nr, nb, sizeof(nb));
		if (sc->fd_flags & LW_BPF_FDF_NONBLOCK)
			k.flags |= LW_REC_KEV_NONBLOCK;
		k.nframes = copy ? split_frames(copy, frames, LW_REC_FRAMES_MAX,
						&cut)
				 : 0;
		if (cut)
			k.flags |= LW_REC_KEV_STACK_CUT;
		emit(st,
		     &(lw_rec_item_t){ .type = LW_REC_KEVENT, .u.kevent = k });
		free(copy);
		return;
	}
	if (e->h.kind == LW_BPF_EV_OFFCPU) {
		if (e->u.off.flags & LW_BPF_OFF_PREEMPTED)
			k.flags |= LW_REC_KEV_PREEMPTED;
		if (e->u.off.flags & LW_BPF_OFF_IN_SYSCALL)
			k.flags |= LW_REC_KEV_IN_SYSCALL;
		k.off_cpu_ns = e->h.duration_ns;
	} else if (e->h.kind == LW_BPF_EV_SAMPLE) {
		k.span_start_ns = e->u.smp.span_start_ns;
	}
	k.nframes =
		copy ? split_frames(copy, frames, LW_REC_FRAMES_MAX, &cut) : 0;
	if (cut)
		k.flags |= LW_REC_KEV_STACK_CUT;
	emit(st, &(lw_rec_item_t){ .type = LW_REC_KEVENT, .u.kevent = k });
	free(copy);
}

/* A span of a loop without rings: its iteration, the callback it has. */
static void emit_span(struct state *st, const struct loop *l,
		      const struct lw_bpf_span_event *sp)
{
	lw_rec_kevent_t k = {
		.loop_id = l->id,
		.kind = LW_BPF_EV_SPAN,
		.tid = (int32_t)l->tid,
		.start_ns = sp->start_ns,
		.duration_ns = sp->duration_ns,
		.fd = -1,
		.off_cpu_ns = sp->off_cpu_ns,
		.syscall = "",
		.fd_path = "",
	};
	emit(st, &(lw_rec_item_t){ .type = LW_REC_KEVENT, .u.kevent = k });
}

/* The loops' counters: utilization, the pool, the losses so far. */
static void emit_counters(struct state *st, uint64_t now)
{
	for (size_t i = 0; i < st->nloops; i++) {
		struct loop *l = &st->loops[i];
		lw_rr_counters_t c;
		if (l->ring == NULL)
			continue;
		lw_rr_counters(l->ring, &c);
		/* Idle time is booked when a wait returns: count the wait
		 * in progress up to now, so an idle loop reads idle. */
		uint64_t idle = c.idle_ns;
		if (c.wait_since_ns != 0 && now > c.wait_since_ns &&
		    now - c.wait_since_ns < (uint64_t)1 << 62)
			idle += now - c.wait_since_ns;
		lw_rec_counters_t rc = {
			.loop_id = l->id,
			.now_ns = now,
			.iterations = c.iterations,
			.busy_ns = c.busy_ns,
			.idle_ns = idle,
			.lost_records = l->cur.lost,
			.kernel_lost = st->kernel_lost,
			.pool_threads = c.pool_threads,
			.pool_busy = c.pool_busy,
			.pool_queued = c.pool_queued,
			.pool_completed = c.pool_completed,
			.pool_oldest_start_ns = c.pool_oldest_start_ns,
		};
		emit(st, &(lw_rec_item_t){ .type = LW_REC_COUNTERS,
					   .u.counters = rc });
	}
}
/* ---- telling what a stall was made of ---- */

static void print_stack(struct state *st, const char *stack)
{
	if (stack != NULL && st->ev != NULL)
		fputs(stack, st->ev);
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
 * events' stacks (frees them).  Says nothing when slow callbacks are not
 * told (st->ev NULL).
 */
static void tell(struct state *st, lw_join_event_t *ev, size_t n, int blind)
{
	struct sample_group groups[SAMPLE_GROUPS];
	size_t ngroups = 0, nsamples = 0, other = 0;
	const char *sep = ", of which ";
	char call[600], note[96];

	if (st->ev == NULL)
		goto out;

	for (size_t i = 0; i < n; i++) {
		lw_join_event_t *e = &ev[i];
		if (e->h.kind == LW_BPF_EV_SYSCALL) {
			lw_kev_format_call(e, call, sizeof(call));
			offcpu_note(&e->u.sys, note, sizeof(note));
			fprintf(st->ev, "%s%.1f ms in %s%s\n", sep,
				ms(e->h.duration_ns), call, note);
			print_stack(st, e->stack);
			sep = "  and ";
		}
	}
	/* Off-CPU stretches outside syscalls, told apart by cause: one line
	 * each, with the longest one's stack (a busy machine preempts a
	 * CPU-bound callback many times). */
	for (int pre = 1; pre >= 0; pre--) {
		uint64_t total = 0, count = 0;
		lw_join_event_t *longest = NULL;
		for (size_t i = 0; i < n; i++) {
			lw_join_event_t *e = &ev[i];
			if (e->h.kind != LW_BPF_EV_OFFCPU ||
			    !(e->u.off.flags & LW_BPF_OFF_PREEMPTED) != !pre)
				continue;
			count++;
			total += e->h.duration_ns;
			if (longest == NULL ||
			    e->h.duration_ns > longest->h.duration_ns)
				longest = e;
		}
		if (count == 0)
			continue;
		fprintf(st->ev, "%s%.1f ms off CPU outside syscalls (%s)", sep,
			ms(total),
			pre ? "preempted: runnable, another task had the CPU"
			    : "asleep: a page fault or the like");
		if (count > 1)
			fprintf(st->ev,
				", %" PRIu64 " times, the longest %.1f ms in:",
				count, ms(longest->h.duration_ns));
		fputc('\n', st->ev);
		print_stack(st, longest->stack);
		sep = "  and ";
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
		fprintf(st->ev, "%son CPU: %zu stack sample%s\n",
			sep[0] == ',' ? ", " : "  and ", nsamples,
			nsamples == 1 ? "" : "s");
		for (size_t g = 0; g < ngroups && g < SAMPLE_SHOWN; g++) {
			fprintf(st->ev, "  %zu of them in:\n", groups[g].count);
			print_stack(st, groups[g].stack);
		}
		if (ngroups > SAMPLE_SHOWN || other > 0)
			fprintf(st->ev, "  (and %zu in other stacks)\n",
				nsamples - groups[0].count -
					(ngroups > 1 ? groups[1].count : 0));
		sep = "  and ";
	}
	/* Nothing joined: the kernel saw no slow call, unless it was not
	 * watching the thread yet (a loop made after the attach). */
	if (sep[0] == ',')
		fprintf(st->ev, "%s\n",
			!st->bpf ? ""
			: blind	 ? ", before the kernel probes watched its "
				   "thread"
				 : ", in no slow syscall (on CPU or short "
				   "waits)");
out:
	for (size_t i = 0; i < n; i++)
		free(ev[i].stack);
}

/* ---- blocking calls, counted in the kernel ---- */

/* The kernel keeps one row per (thread, syscall, fd kind, stack, site);
 * the model wants one per (loop, site, syscall, fd kind): rows of one
 * reading are summed here first, then handed over as totals. */
struct block_sum {
	uint32_t loop, site, nr, fd_kind;
	uint64_t calls, total_ns, max_ns;
	__s32 stack_id;
};

struct block_read {
	struct state *st;
	struct block_sum *rows;
	size_t n, cap;
};

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
	struct block_read *br = ctx;
	struct state *st = br->st;
	struct loop *l = loop_of(st, k->tid);
	uint32_t site = 0;

	if (l == NULL)
		return 0;
	if (l->ring != NULL) {
		/* The kernel read the running callback from the ring; a
		 * stack that names a site's function is the fallback. */
		site = k->site;
		if (site == 0 && k->stack_id >= 0) {
			__u64 frames[LW_BPF_STACK_DEPTH];
			int n = lw_bpf_stack(st->bpf, k->stack_id, frames,
					     LW_BPF_STACK_DEPTH);
			if (n > 0)
				site = site_on_stack(st, l, frames, (size_t)n);
		}
	}
	size_t i;
	for (i = 0; i < br->n; i++)
		if (br->rows[i].loop == l->id && br->rows[i].site == site &&
		    br->rows[i].nr == k->nr &&
		    br->rows[i].fd_kind == k->fd_kind)
			break;
	if (i == br->n) {
		if (br->n == br->cap) {
			size_t cap = br->cap ? 2 * br->cap : 32;
			struct block_sum *n =
				realloc(br->rows, cap * sizeof(*n));
			if (n == NULL)
				return 0;
			br->rows = n;
			br->cap = cap;
		}
		br->rows[br->n++] = (struct block_sum){
			.loop = l->id,
			.site = site,
			.nr = k->nr,
			.fd_kind = k->fd_kind,
			.stack_id = k->stack_id,
		};
	}
	struct block_sum *r = &br->rows[i];
	r->calls += v->calls;
	r->total_ns += v->total_ns;
	if (v->max_ns > r->max_ns)
		r->max_ns = v->max_ns;
	if (r->stack_id < 0 && k->stack_id >= 0)
		r->stack_id = k->stack_id;
	return 0;
}

/* Read the kernel's table of blocking calls into the model (and the
 * recording). */
static void emit_blocking(struct state *st)
{
	struct block_read br = { .st = st };

	if (st->bpf == NULL || lw_bpf_blocking_read(st->bpf, on_block, &br) < 0)
		goto out;
	for (size_t i = 0; i < br.n; i++) {
		struct block_sum *r = &br.rows[i];
		const char *frames[LW_REC_FRAMES_MAX];
		char nb[32], *text = NULL;
		int cut = 0;
		uint32_t nframes = 0;
		if (r->stack_id >= 0) {
			__u64 f[LW_BPF_STACK_DEPTH];
			int n = lw_bpf_stack(st->bpf, r->stack_id, f,
					     LW_BPF_STACK_DEPTH);
			if (n > 0)
				text = lw_kev_format_stack(&st->ks, f, n * 8);
			if (text)
				nframes = split_frames(text, frames,
						       LW_REC_FRAMES_MAX, &cut);
		}
		lw_rec_blocking_t b = {
			.loop_id = r->loop,
			.site_id = r->site,
			.nr = r->nr,
			.fd_kind = r->fd_kind,
			.calls = r->calls,
			.total_ns = r->total_ns,
			.max_ns = r->max_ns,
			.syscall = lw_kev_syscall_label(r->nr, nb, sizeof(nb)),
			.nframes = nframes,
			.frames = frames,
		};
		emit(st, &(lw_rec_item_t){ .type = LW_REC_BLOCKING,
					   .u.blocking = b });
		free(text);
	}
out:
	free(br.rows);
}

/* Say when the kernel dropped events since the last time: the ring buffer
 * was full (the agent fell behind). */
static void report_kernel_loss(struct state *st)
{
	struct lw_bpf_stats bs;

	if (st->bpf == NULL || lw_bpf_stats_read(st->bpf, &bs) < 0)
		return;
	st->kernel_lost = bs.lost;
	if (bs.lost > st->lost_reported)
		fprintf(st->say,
			"(kernel: %" PRIu64
			" events lost, the ring buffer was full)\n",
			(uint64_t)bs.lost - st->lost_reported);
	st->lost_reported = bs.lost;
}

/* ---- events ---- */

/* A long iteration of a loop without rings: tell what it was made of. */
static void on_span(struct state *st, struct loop *l,
		    const struct lw_bpf_span_event *sp)
{
	char t[64];
	size_t n = lw_join_take(st->join, l->tid, sp->start_ns, sp->duration_ns,
				st->buf, JOIN_CAP);

	emit_span(st, l, sp);
	for (size_t i = 0; i < n; i++)
		emit_kevent(st, l, 0, &st->buf[i]);
	if (st->ev) {
		fprintf(st->ev, "loop %s: an iteration took %.1f ms",
			thread_label(l, t, sizeof(t)), ms(sp->duration_ns));
		if (sp->off_cpu_ns > 0)
			fprintf(st->ev, " (off CPU %.1f ms)",
				ms(sp->off_cpu_ns));
	}
	tell(st, st->buf, n, 0);
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
static void on_slow_record(struct state *st, struct loop *l,
			   const struct lw_ring_record *rec)
{
	char label[LW_RING_NAME_MAX + 32];
	size_t n = 0;

	if (st->bpf != NULL && l->tid != 0)
		n = lw_join_take(st->join, l->tid, rec->start_ns,
				 rec->duration_ns, st->buf, JOIN_CAP);
	for (size_t i = 0; i < n; i++)
		emit_kevent(st, l, rec->site, &st->buf[i]);
	if (st->ev) {
		lw_rr_site_label(l->ring, rec->site, label, sizeof(label));
		fprintf(st->ev, "callback %s (%s) took %.1f ms", label,
			lw_rr_kind_name(rec->kind), ms(rec->duration_ns));
	}
	/* Begun before its thread was watched in the kernel: what it did
	 * there is unknown, not nothing. */
	tell(st, st->buf, n, l->kwatch_ns == 0 || rec->start_ns < l->kwatch_ns);
}

static void print_outside(struct state *st, struct loop *l, lw_join_event_t *e)
{
	char call[600], note[96];

	emit_kevent(st, l, 0, e);
	if (e->h.kind == LW_BPF_EV_SAMPLE || st->ev == NULL) {
		/* A sample of a long span that no slow callback claimed:
		 * many short callbacks in one iteration. */
		free(e->stack);
		return;
	}
	if (e->h.kind == LW_BPF_EV_SYSCALL) {
		lw_kev_format_call(e, call, sizeof(call));
		offcpu_note(&e->u.sys, note, sizeof(note));
		fprintf(st->ev,
			"outside callbacks: %.1f ms in %s%s on tid %" PRIu32
			"\n",
			ms(e->h.duration_ns), call, note, e->h.tid);
	} else if (e->h.kind == LW_BPF_EV_OFFCPU) {
		fprintf(st->ev,
			"outside callbacks: %.1f ms off CPU (%s) on tid "
			"%" PRIu32 "\n",
			ms(e->h.duration_ns),
			(e->u.off.flags & LW_BPF_OFF_PREEMPTED) ? "preempted"
								: "asleep",
			e->h.tid);
	}
	print_stack(st, e->stack);
	free(e->stack);
	st->outside++;
}

/* Tell the events that no record will claim: outside callbacks, or
 * (prefix set, the final flush) inside a callback still running. */
static void expire(struct state *st, struct loop *l, uint64_t now,
		   uint64_t grace, uint64_t running, const char *prefix,
		   uint32_t running_site)
{
	size_t n = lw_join_expire(st->join, l->tid, now, grace, running,
				  st->buf, JOIN_CAP);

	if (prefix && n > 0) {
		for (size_t i = 0; i < n; i++)
			emit_kevent(st, l, running_site, &st->buf[i]);
		if (st->ev)
			fputs(prefix, st->ev);
		tell(st, st->buf, n, 0);
		return;
	}
	for (size_t i = 0; i < n; i++)
		print_outside(st, l, &st->buf[i]);
}

/* Read what is new in every ring: every record to the model, the slow
 * ones joined with their kernel events. */
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
				expire(st, l, final ? UINT64_MAX : lw_now_ns(),
				       final ? 0 : GRACE_NS, running, NULL, 0);
			continue;
		}
		lw_rr_current_t cur;
		uint32_t running_site = 0;
		/* The running callback as it was before this read: if it
		 * ends meanwhile, its record is in what we read below. */
		if (lw_rr_current(l->ring, &cur) == 0 && cur.running) {
			running = cur.start_ns;
			running_site = cur.site;
		}

		/* Bounded per tick (the rest waits for the next), so a fast
		 * writer cannot starve the kernel events. */
		size_t got = 0, n;
		while (got < RECS_MAX &&
		       (n = lw_rr_read(l->ring, &l->cur, st->recs + got,
				       RECS_MAX - got < RECS_CHUNK
					       ? RECS_MAX - got
					       : RECS_CHUNK)) > 0)
			got += n;
		/* The events of these records were sent before the records
		 * were written: collect them before joining. */
		if (st->bpf)
			lw_bpf_poll(st->bpf, 0, on_event, st);
		for (size_t k = 0; k < got; k++) {
			emit_callback(st, l, &st->recs[k]);
			if (st->recs[k].duration_ns >= st->o->min_ns)
				on_slow_record(st, l, &st->recs[k]);
		}
		if (l->cur.lost > l->lost_reported) {
			fprintf(st->say,
				"(loop %s: %" PRIu64
				" records lost, read too late)\n",
				lw_rr_name(l->ring),
				l->cur.lost - l->lost_reported);
			l->lost_reported = l->cur.lost;
		}
		if (l->tid == 0)
			continue;
		if (!final) {
			expire(st, l, lw_now_ns(), GRACE_NS, running, NULL, 0);
		} else {
			/* A callback that never ended (the process died or
			 * exec'd in it) has no record, but the events and
			 * blocking calls inside it name its site. */
			emit_site(st, l, running_site);
			expire(st, l, UINT64_MAX, 0, running, NULL, 0);
			expire(st, l, UINT64_MAX, 0, 0,
			       "in a callback still running", running_site);
		}
	}
}

/* ---- stuck now ---- */

/* The latest stack sample of a thread that the join holds, formatted, or
 * NULL. */
static const char *latest_sample(struct state *st, uint32_t tid, uint64_t since)
{
	return lw_join_latest_stack(st->join, tid, LW_BPF_EV_SAMPLE, since);
}

/* "nanosleep" when the thread sits in a syscall now, from
 * /proc/PID/task/TID/syscall; "" when running or unknown. */
static void in_syscall_now(pid_t pid, uint32_t tid, char *buf, size_t len)
{
	char path[64], line[256];
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/task/%" PRIu32 "/syscall",
		 (int)pid, tid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	if (fgets(line, sizeof(line), f) != NULL) {
		char *end;
		long nr = strtol(line, &end, 10);
		if (end != line && nr >= 0) {
			char nb[32];
			snprintf(buf, len, "%s",
				 lw_kev_syscall_label((uint32_t)nr, nb,
						      sizeof(nb)));
		}
	}
	fclose(f);
}

/* Where a stuck thread is now: when it sleeps, a snapshot of its
 * registers and stack taken by the kernel (bpf/snap.bpf.c) and unwound
 * here, with the syscall it sleeps in written into sys; NULL when it runs
 * on a CPU (its samples tell) or no snapshot can be had.  Without the
 * kernel probes, /proc names the syscall at least. */
/* The snapshot program, loaded once: at the attach when stuck callbacks
 * are to be told (its load takes a fifth of a second, which the first
 * report would otherwise wait for), else at the first one. */
static void open_snap(struct state *st)
{
	char why[256];

	if (st->snap != NULL || st->snap_tried || st->bpf == NULL ||
	    st->ks.uw == NULL)
		return;
	st->snap_tried = 1;
	if (lw_snap_open(&st->snap, why, sizeof(why)) < 0)
		fprintf(stderr,
			"loopwatch: no stacks of stuck callbacks that sleep: "
			"%s\n",
			why);
}

static char *snap_stack(struct state *st, uint32_t tid, char *sys, size_t len)
{
	struct lw_bpf_ustack *us;
	char why[256];
	long nr = -1;

	sys[0] = '\0';
	if (st->bpf == NULL || st->ks.uw == NULL) {
		in_syscall_now(st->o->pid, tid, sys, len);
		return NULL;
	}
	open_snap(st);
	if (st->snap == NULL) {
		in_syscall_now(st->o->pid, tid, sys, len);
		return NULL;
	}
	us = malloc(sizeof(*us));
	if (us == NULL)
		return NULL;
	if (lw_snap_take(st->snap, (pid_t)tid, us, &nr, why, sizeof(why)) < 0) {
		free(us);
		return NULL;
	}
	char *text = NULL;
	if (nr >= 0) {
		char nb[32];
		snprintf(sys, len, "%s",
			 lw_kev_syscall_label((uint32_t)nr, nb, sizeof(nb)));
	}
	uint64_t frames[LW_BPF_STACK_DEPTH];
	int n = lw_unwind_stack(st->ks.uw, (pid_t)tid, &us->regs, us->data,
				us->bytes, frames, LW_BPF_STACK_DEPTH);
	if (n > 0)
		text = lw_kev_format_stack(&st->ks, (const __u64 *)frames,
					   n * 8);
	free(us);
	return text;
}

/* The limit past which the callback running at site is stuck: --stuck-ms,
 * or the site's callback.max budget when lower. */
static uint64_t stuck_limit(struct state *st, struct loop *l, uint32_t site)
{
	uint64_t lim = st->o->stuck_ns ? st->o->stuck_ns : UINT64_MAX;

	if (st->o->budget != NULL) {
		char name[LW_RING_NAME_MAX + 32];
		lw_budget_limits_t b;
		lw_rr_site_label(l->ring, site, name, sizeof(name));
		lw_budget_for_site(st->o->budget, name, &b);
		if (b.max_ns < lim)
			lim = b.max_ns;
	}
	return lim;
}

static void stuck_json(struct state *st, struct loop *l, const char *name,
		       const lw_rr_current_t *cur, uint64_t so_far,
		       const char *sys, const char *stack)
{
	lw_json_t j;

	lw_json_init(&j, st->o->out ? st->o->out : stdout, 0);
	lw_json_obj(&j);
	lw_json_kstr(&j, "schema", LW_REPORT_SCHEMA);
	lw_json_kstr(&j, "type", "stuck");
	lw_json_ku64(&j, "loop", l->id);
	lw_json_kstr(&j, "loop_name", lw_rr_name(l->ring));
	lw_json_ki64(&j, "tid", l->tid);
	lw_json_ku64(&j, "site", cur->site);
	lw_json_kstr(&j, "name", name);
	lw_json_kstr(&j, "kind", lw_rr_kind_name(cur->kind));
	lw_json_ku64(&j, "start_mono_ns", cur->start_ns);
	lw_json_ku64(&j, "running_ns", so_far);
	lw_json_kstr(&j, "in_syscall", sys);
	lw_json_key(&j, "stack");
	const char *frames[LW_REC_FRAMES_MAX];
	char *copy = stack ? strdup(stack) : NULL;
	int cut = 0;
	uint32_t n =
		copy ? split_frames(copy, frames, LW_REC_FRAMES_MAX, &cut) : 0;
	lw_json_strs(&j, frames, n);
	free(copy);
	lw_json_obj_end(&j);
	lw_json_end(&j);
}

/* A callback that runs past its limit is told while it still runs: its
 * name, how long so far, where its thread is (the syscall it sits in, a
 * stack sample when it is on CPU).  Once per callback. */
static void check_stuck(struct state *st, uint64_t now)
{
	/* The one told before: is it still running? */
	if (st->stuck.active) {
		lw_rr_current_t cur;
		if (lw_rr_current(st->loops[st->stuck_loop].ring, &cur) < 0 ||
		    !cur.running || cur.start_ns != st->stuck.start_ns)
			st->stuck.active = 0;
	}
	for (size_t i = 0; i < st->nloops; i++) {
		struct loop *l = &st->loops[i];
		lw_rr_current_t cur;
		if (l->ring == NULL || lw_rr_current(l->ring, &cur) < 0 ||
		    !cur.running || cur.start_ns == l->stuck_start ||
		    now <= cur.start_ns)
			continue;
		uint64_t so_far = now - cur.start_ns;
		if (so_far < stuck_limit(st, l, cur.site))
			continue;
		l->stuck_start = cur.start_ns;
		char name[LW_RING_NAME_MAX + 32], sys[64] = "";
		lw_rr_site_label(l->ring, cur.site, name, sizeof(name));
		char *snapped = NULL;
		const char *stack = NULL;
		if (l->tid != 0)
			snapped = snap_stack(st, l->tid, sys, sizeof(sys));
		/* The snapshot shows the callback only if the callback still
		 * runs after it: one that ended in between (a slow agent)
		 * would be shown where its thread went next, the loop's
		 * wait.  It is no longer stuck then, and its end is told as
		 * a slow callback. */
		lw_rr_current_t after;
		if (lw_rr_current(l->ring, &after) < 0 || !after.running ||
		    after.start_ns != cur.start_ns) {
			free(snapped);
			continue;
		}
		stack = snapped;
		if (stack == NULL && sys[0] == '\0' && l->tid != 0)
			stack = latest_sample(st, l->tid, cur.start_ns);
		/* Kept for a viewer, as long as that callback runs. */
		struct lw_attach_stuck *sk = &st->stuck;
		sk->active = 1;
		st->stuck_loop = i;
		snprintf(sk->name, sizeof(sk->name), "%s", name);
		snprintf(sk->kind, sizeof(sk->kind), "%s",
			 lw_rr_kind_name(cur.kind));
		snprintf(sk->loop, sizeof(sk->loop), "%s", lw_rr_name(l->ring));
		sk->start_ns = cur.start_ns;
		snprintf(sk->syscall, sizeof(sk->syscall), "%s", sys);
		snprintf(sk->stack, sizeof(sk->stack), "%s",
			 stack ? stack : "");
		if (st->o->viewer) {
			free(snapped);
			continue;
		}
		if (st->o->json) {
			stuck_json(st, l, name, &cur, so_far, sys, stack);
			free(snapped);
			continue;
		}
		FILE *out = st->ev ? st->ev : st->say;
		fprintf(out,
			"STUCK now: callback %s (%s) on loop %s has run for "
			"%.1f ms",
			name, lw_rr_kind_name(cur.kind), lw_rr_name(l->ring),
			ms(so_far));
		if (sys[0])
			fprintf(out, ", asleep in %s%s\n%s", sys,
				stack ? ", in:" : "", stack ? stack : "");
		else if (stack)
			fprintf(out, ", on CPU in:\n%s", stack);
		else
			fprintf(out, ", on CPU\n");
		fflush(out);
		free(snapped);
	}
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
	/* Said by the caller: in one line with the rest when there is
	 * nothing else to watch. */
	snprintf(st->kprobes_why, sizeof(st->kprobes_why), "%s", why);
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
	emit_loop(st, l);
	fprintf(st->say, "loop thread %d (%s): no ring, %s\n", (int)tid,
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

/* The threads of a process without rings (or with --tid) seen in an event
 * wait, in found: how many, or a negative errno and why.  Looked for before
 * the first line, so that a process with nothing to watch gets one line
 * that says so. */
static int detect_threads(struct state *st, lw_loop_thread_t *found, char *why,
			  size_t whylen)
{
	if (st->p->nrings > 0 && st->o->tid == 0)
		return 0;
	return lw_threads_detect(st->o->pid, 10, 10, found, MAX_DETECTED, why,
				 whylen);
}

/* Watch the threads detect_threads found (n of them), or the one --tid
 * names.  Returns how many were added. */
static size_t find_threads(struct state *st, const lw_loop_thread_t *found,
			   int n)
{
	char how[128];
	size_t before = st->nloops;

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

int lw_attach_refused(pid_t pid, int err, const char *why)
{
	uid_t u[4];
	gid_t g[4];
	char user[128];
	/* Whose the process is, for the hint (read once). */
	int ids = err == -EACCES ? lw_proc_ids(pid, u, g) : -1;

	fprintf(stderr, "loopwatch: cannot attach to PID %d: %s\n", (int)pid,
		why);
	if (err == -ESRCH)
		fprintf(stderr, "loopwatch: hint: check the pid with "
				"'loopwatch list' or ps\n");
	else if (err == -EACCES && ids == 0 && u[1] == 0)
		fprintf(stderr, "loopwatch: hint: run loopwatch as root\n");
	else if (err == -EACCES && ids == 0 && u[1] == geteuid())
		fprintf(stderr,
			"loopwatch: hint: run loopwatch with the process's "
			"group, gid %lu, or as root\n",
			(unsigned long)g[1]);
	else if (err == -EACCES && ids == 0)
		fprintf(stderr,
			"loopwatch: hint: run loopwatch as the process's "
			"user, %s, or as root\n",
			lw_proc_user_name(u[1], user, sizeof(user)));
	else if (err == -EACCES)
		fprintf(stderr, "loopwatch: hint: run loopwatch as the "
				"process's user, or as root\n");
	else if (err == -EPERM)
		fprintf(stderr, "loopwatch: hint: run loopwatch as root (it "
				"has CAP_SYS_PTRACE), or leave the process "
				"dumpable\n");
	return EXIT_USAGE;
}

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
		emit_loop(st, l);
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
		else
			l->kwatch_ns = lw_now_ns();
	}
}

/* Loops the process made since the attach (a thread that starts its loop
 * later): each new ring is read from its first record, said in one line,
 * and its thread watched as soon as the ring names it.  Only for a
 * process that had rings at the attach: one watched through its threads
 * alone stays so. */
static void watch_new_rings(struct state *st)
{
	size_t before = st->p->nrings;

	if (before == 0 || lw_rr_rescan(st->p) <= 0)
		return;
	for (size_t i = before; i < st->p->nrings; i++) {
		lw_rr_ring_t *ring = st->p->rings[i];
		struct loop *l = add_loop(st);
		l->ring = ring;
		lw_rr_cursor_init(ring, &l->cur, 1);
		emit_loop(st, l);
		fprintf(st->say,
			"loopwatch: process %d made a new loop \"%s\": "
			"watching it\n",
			(int)st->o->pid, lw_rr_name(ring));
	}
	watch_new_threads(st);
}

/* ---- summaries ---- */

/* A summary of the model so far (now_ns set) or at the end (0), as text
 * or as one JSON object. */
static void summarize(struct state *st, uint64_t now)
{
	FILE *out = st->o->out ? st->o->out : stdout;
	lw_check_t *check =
		st->o->budget ? lw_check_eval(st->model, st->o->budget) : NULL;
	struct lw_report_opts ro = { .now_ns = now, .check = check };

	if (st->bpf != NULL)
		emit_blocking(st);
	if (st->o->json) {
		lw_json_t j;
		lw_json_init(&j, out, 0);
		lw_report_json(st->model, &ro, now ? "interval" : "final",
			       st->json_seq++, &j);
		lw_json_end(&j);
	} else {
		lw_report_text(st->model, &ro, out);
	}
	lw_check_free(check);
	fflush(out);
}

/* The kernel's own counts of what it could not deliver, at the end. */
static void say_kernel_drops(struct state *st)
{
	struct lw_bpf_stats bs;

	if (st->bpf == NULL)
		return;
	if (lw_bpf_stats_read(st->bpf, &bs) == 0 && bs.block_dropped > 0)
		fprintf(st->say,
			"loopwatch: %" PRIu64
			" blocking calls not counted (the table was full)\n",
			(uint64_t)bs.block_dropped);
	if (lw_join_dropped(st->join) > 0)
		fprintf(st->say,
			"loopwatch: %" PRIu64
			" kernel events dropped unmatched (the join buffer "
			"was full)\n",
			lw_join_dropped(st->join));
	if (lw_bpf_bad_records(st->bpf) > 0)
		fprintf(st->say,
			"loopwatch: %lu kernel records of an unknown kind or "
			"size skipped\n",
			lw_bpf_bad_records(st->bpf));
}

/* record's progress on a terminal: one line, rewritten. */
static void progress(struct state *st, uint64_t now, uint64_t t0)
{
	if (st->rec == NULL || !isatty(STDERR_FILENO))
		return;
	uint64_t n = 0, lost = 0;
	for (size_t i = 0; i < lw_model_nloops(st->model); i++) {
		n += lw_model_loop_at(st->model, i)->records;
	}
	for (size_t i = 0; i < st->nloops; i++)
		lost += st->loops[i].cur.lost;
	fprintf(stderr,
		"\rrecording: %.0f s, %" PRIu64 " callbacks, %.1f MB, %" PRIu64
		" lost ",
		(double)(now - t0) / 1e9, n,
		(double)lw_rec_writer_bytes(st->rec) / 1e6, lost);
}

/* ---- the run ---- */

/* The viewer's turn: the blocking calls counted in the kernel are read
 * into the model once a second for it. */
static int viewer_tick(struct state *st, uint64_t now)
{
	struct lw_attach_live live = {
		.now_ns = now,
		.rings = st->p->nrings > 0,
		.kernel = st->bpf != NULL,
		.kernel_why = st->kprobes_why,
		.stuck = st->stuck,
	};

	if (st->bpf && now >= st->viewer_blocking_at) {
		emit_blocking(st);
		st->viewer_blocking_at = now + 1000000000ull;
	}
	return st->o->viewer->tick(st->o->viewer->ctx, st->model, &live);
}

#define STR_(x) #x
#define STR(x) STR_(x)
static const char version[] = STR(LW_VERSION_MAJOR) "." STR(
	LW_VERSION_MINOR) "." STR(LW_VERSION_PATCH);

static int open_recording(struct state *st, const char *comm, uint32_t sources,
			  const char *rings_why)
{
	char host[256] = "", why[512];

	gethostname(host, sizeof(host) - 1);
	lw_rec_header_t h = {
		.version = version,
		.pid = st->o->pid,
		.comm = comm,
		.hostname = host,
		.mono_ns = lw_model_info(st->model)->start_ns,
		.real_ns = lw_model_info(st->model)->real_ns,
		.min_ns = st->o->min_ns,
		.sources = sources,
		.rings_why = rings_why,
		.kprobes_why = st->kprobes_why,
	};
	st->rec = lw_rec_open(st->o->record_path, &h, 0, why, sizeof(why));
	if (st->rec == NULL) {
		fprintf(stderr, "loopwatch: cannot write the recording %s\n",
			why);
		return -1;
	}
	return 0;
}

int lw_attach_run(const struct lw_attach_opts *o)
{
	/* Large (the buffers): on the heap. */
	struct state *st = xcalloc(1, sizeof(*st));
	FILE *out = o->out ? o->out : stdout;
	char why[512], rings_why[256] = "";
	int rc = 0;

	st->o = o;
	st->say = o->json ? stderr : out;
	st->ev = o->events && !o->json ? out : NULL;
	if (o->viewer) {
		/* The screen is the viewer's: status lines would tear it;
		 * what they say is in the model and the viewer's header. */
		st->say = fopen("/dev/null", "w");
		if (st->say == NULL)
			st->say = stderr;
		st->ev = NULL;
	}
	st->model = lw_model_new();
	if (st->model == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	/* Ctrl-C or SIGTERM from here on ends the watch as its end does,
	 * start-up included (the probes and the symbols take a second): the
	 * summary, and the recording complete.  SA_RESTART, so that the
	 * start-up's reads are not cut short by it. */
	struct sigaction sa = { .sa_handler = on_signal,
				.sa_flags = SA_RESTART },
			 old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	int r = lw_rr_attach(o->pid, &st->p, why, sizeof(why));
	if (r < 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
		lw_model_free(st->model);
		free(st);
		return lw_attach_refused(o->pid, r, why);
	}
	st->fate = lw_fate_new(st->p);
	if (st->fate == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	st->bpf = open_probes(st);
	if (st->p->nrings == 0)
		snprintf(rings_why, sizeof(rings_why), "%s",
			 st->p->nskipped
				 ? st->p->skipped_why
				 : "the process has no loopwatch rings");
	/* Nothing to watch is said in one line (and a hint), before
	 * anything else. */
	if (st->p->nrings == 0 && st->bpf == NULL) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings (%s) and no kernel probes (%s): nothing to "
			"watch\n",
			(int)o->pid,
			st->p->nskipped ? st->p->skipped_why : "none found",
			st->kprobes_why);
		fprintf(stderr,
			"loopwatch: hint: run as root for the kernel probes, "
			"or link the program with libloopwatch\n");
		rc = EXIT_USAGE;
		goto out;
	}
	lw_loop_thread_t found[MAX_DETECTED];
	char twhy[256] = "";
	int nfound = detect_threads(st, found, twhy, sizeof(twhy));
	if (st->p->nrings == 0 && o->tid == 0 && nfound <= 0) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings (%s), and %s\n",
			(int)o->pid,
			st->p->nskipped ? st->p->skipped_why : "none found",
			nfound < 0 ? twhy
				   : "no thread of it waits in epoll, poll or "
				     "select");
		if (nfound == 0)
			fprintf(stderr, "loopwatch: hint: name the loop "
					"thread with --tid TID\n");
		rc = EXIT_USAGE;
		goto out;
	}
	/* What is missing, and why, in one line (the rings are there). */
	if (st->bpf == NULL)
		fprintf(stderr,
			"loopwatch: kernel probes unavailable (%s); continuing "
			"with the rings alone\n",
			st->kprobes_why);
	for (size_t i = 0; i < st->p->nrings; i++) {
		struct loop *l = add_loop(st);
		l->ring = st->p->rings[i];
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
	/* The first stack or site named with its line would load the debug
	 * files in the middle of the run, a pause of ~80 ms for libc alone,
	 * longer than a default ring lasts at a million callbacks a second:
	 * load them now. */
	lw_sym_preload(st->ks.sym);
	if (o->stuck_ns != 0 || o->budget != NULL)
		open_snap(st);
	st->join = lw_join_new(JOIN_CAP);
	if (st->join == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}

	char comm[64] = "?";
	lw_proc_comm(o->pid, comm, sizeof(comm));
	uint32_t sources = (st->p->nrings ? LW_REC_SRC_RINGS : 0) |
			   (st->bpf ? LW_REC_SRC_KPROBES : 0);
	lw_rec_header_t h = {
		.version = version,
		.pid = o->pid,
		.comm = comm,
		.mono_ns = lw_now_ns(),
		.real_ns = real_ns(),
		.min_ns = o->min_ns,
		.sources = sources,
		.rings_why = rings_why,
		.kprobes_why = st->kprobes_why,
	};
	lw_model_header(st->model, &h);
	if (o->record_path &&
	    open_recording(st, comm, sources, rings_why) < 0) {
		rc = EXIT_USAGE;
		goto out;
	}

	/* Read from here on: the cursors are placed after the slow start
	 * (probes, symbols), so that the start costs no records; and before
	 * the first line is written, so that nothing a user does after seeing
	 * it is missed, even where the line goes out at once (stderr with
	 * --json, a terminal). */
	for (size_t i = 0; i < st->nloops; i++)
		if (st->loops[i].ring != NULL)
			lw_rr_cursor_init(st->loops[i].ring, &st->loops[i].cur,
					  0);
	/* The first line says what is watched with what, and why not more. */
	fprintf(st->say,
		"attached to PID %d (%s): %zu loop%s with rings, kernel probes "
		"%s, slow from %.1f ms\n",
		(int)o->pid, comm, st->p->nrings, st->p->nrings == 1 ? "" : "s",
		st->bpf ? "on" : "off", ms(o->min_ns));
	for (size_t i = 0; i < st->nloops; i++)
		emit_loop(st, &st->loops[i]);
	if (nfound < 0)
		fprintf(stderr,
			"loopwatch: cannot detect the loop threads: %s\n",
			twhy);
	if (st->p->nrings == 0 || o->tid > 0)
		find_threads(st, found, nfound < 0 ? 0 : nfound);
	watch_new_threads(st);
	if (st->bpf) {
		const char *swhy;
		if (lw_bpf_sampling(st->bpf, &swhy) == 0 && swhy[0])
			fprintf(stderr,
				"loopwatch: no stack samples of CPU-bound "
				"stalls: %s\n",
				swhy);
	}
	fflush(st->say);

	uint64_t t0 = lw_now_ns(), next_alive = t0, next_counters = t0;
	uint64_t next_summary = o->interval_ns ? t0 + o->interval_ns : 0;
	uint64_t next_blocking = t0 + BLOCKING_NS, next_progress = t0;
	uint64_t next_flush = t0 + REC_FLUSH_NS, next_rescan = t0 + RESCAN_NS;
	lw_fate_end_t fate = LW_FATE_ALIVE;
	emit_counters(st, t0);
	while (!stop_signal) {
		uint64_t now = lw_now_ns();
		if (o->duration_ns && now - t0 >= o->duration_ns)
			break;
		/* The pidfd every tick, so that the end is known to a tick
		 * (a callback killed mid-run is timed by it); the rest of
		 * what can become of the process every 100 ms. */
		int full = now >= next_alive;
		fate = lw_fate_look(st->fate, now, full, st->say);
		if (fate != LW_FATE_ALIVE)
			break;
		if (full) {
			next_alive = now + 100000000;
			watch_new_threads(st);
			report_kernel_loss(st);
		}
		if (now >= next_rescan) {
			watch_new_rings(st);
			next_rescan = now + RESCAN_NS;
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
		now = lw_now_ns();
		check_stuck(st, now);
		if (o->viewer && viewer_tick(st, now))
			break;
		if (now >= next_counters) {
			emit_counters(st, now);
			next_counters = now + COUNTERS_NS;
		}
		if (st->rec && now >= next_blocking) {
			emit_blocking(st);
			next_blocking = now + BLOCKING_NS;
		}
		if (st->rec && now >= next_flush) {
			if (lw_rec_flush(st->rec) < 0)
				rec_failed(st);
			next_flush = now + REC_FLUSH_NS;
		}
		if (next_summary && now >= next_summary) {
			summarize(st, now);
			next_summary = now + o->interval_ns;
		}
		if (now >= next_progress) {
			progress(st, now, t0);
			next_progress = now + PROGRESS_NS;
		}
		if (st->ev)
			fflush(st->ev);
	}
	/* From here on /proc/PID may describe another program, or another
	 * process: nothing more is read there. */
	if (fate != LW_FATE_ALIVE)
		st->ks.gone = 1;
	/* Stop the probes first so that the last events are all in the
	 * ring buffer, then read everything once more; the rings stay
	 * mapped after the process, to their last record. */
	if (st->bpf) {
		lw_bpf_detach(st->bpf);
		lw_bpf_poll(st->bpf, 0, on_event, st);
	}
	drain(st, 1);
	report_kernel_loss(st);
	uint64_t end = lw_now_ns();
	emit_counters(st, end);
	if (st->bpf)
		emit_blocking(st);
	if (st->rec && isatty(STDERR_FILENO))
		fputc('\n', stderr);
	if (fate != LW_FATE_ALIVE) {
		char line[512];
		lw_fate_line(st->fate, o->min_ns, line, sizeof(line));
		int failed = lw_fate_failed(st->fate);
		fprintf(st->say, "loopwatch: %s\n", line);
		if (o->fate != NULL && o->fate_len > 0)
			snprintf(o->fate, o->fate_len, "%s", line);
		if (o->fate_failed != NULL)
			*o->fate_failed = failed;
		/* To the model (the summary's JSON) and the recording. */
		emit(st,
		     &(lw_rec_item_t){
			     .type = LW_REC_FATE,
			     .u.fate = {
				     .end = fate == LW_FATE_EXITED
						    ? LW_REC_FATE_EXITED
					    : fate == LW_FATE_EXECED
						    ? LW_REC_FATE_EXECED
						    : LW_REC_FATE_REUSED,
				     .flags = failed ? LW_REC_FATE_FAILED : 0,
				     .seen_ns = lw_now_ns(),
				     .line = line,
			     } });
	}
	lw_rec_end_t e = { .end_ns = end, .kernel_lost = st->kernel_lost };
	for (size_t i = 0; i < st->nloops; i++)
		e.lost_records += st->loops[i].cur.lost;
	lw_model_end(st->model, &e);
	if (o->summary)
		summarize(st, 0);
	say_kernel_drops(st);
	if (st->rec) {
		if (lw_rec_close(st->rec, &e, why, sizeof(why)) < 0) {
			if (!st->rec_told)
				fprintf(stderr,
					"loopwatch: cannot write the recording "
					"%s: %s\n",
					o->record_path, why);
			rc = EXIT_USAGE;
		}
		st->rec = NULL;
	}
	fflush(out);
	fflush(st->say);
out:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (st->rec)
		lw_rec_close(st->rec, NULL, why, sizeof(why));
	if (o->model_out && rc == 0) {
		*o->model_out = st->model;
		st->model = NULL;
	}
	lw_model_free(st->model);
	for (size_t i = 0; i < st->nloops; i++)
		free(st->loops[i].site_sent);
	free(st->loops);
	lw_join_free(st->join);
	if (st->ks.uw != NULL)
		lw_unwind_close(st->ks.uw); /* and its symbolizer */
	else
		lw_sym_close(st->ks.sym);
	lw_snap_close(st->snap);
	if (st->say != stderr && st->say != out)
		fclose(st->say);
	lw_bpf_free(st->bpf);
	lw_fate_free(st->fate);
	lw_rr_detach(st->p);
	free(st);
	return rc;
}
