/*
 * trace.c - a recording as a Chrome / Perfetto JSON trace (trace.h).
 *
 * The stream is converted as it is read, in one pass.  The one thing that
 * needs memory is nesting: Perfetto refuses a slice that overlaps another
 * on the same thread without lying inside it, rounding and clock skew can
 * put a syscall a little outside its callback, and a kernel event is
 * written before the callback that contains it (the callback's record
 * only exists once it has returned).  So kernel events wait per thread
 * ("pending"), and each callback or busy span of a thread (a "container")
 * is held open until the next one of that thread comes (or the end), so
 * that events written just after it still find it.  When a container is
 * written, the events that overlap it are clamped into it and nested among
 * themselves, those that ended before it go out on their own (nested
 * among themselves), and those after it keep waiting.  A kernel event that
 * comes later still and overlaps one of the last few containers written
 * is clamped into that one (only: its siblings there are gone).
 *
 * Memory is bounded: per thread at most PENDING_MAX events or
 * PENDING_BYTES bytes wait (past that, the open container and the older
 * half go out as they are), and one container is open,
 * plus one name per loop and per site, which is proportional to the
 * recording's loops and sites, not to its callbacks or its length.
 *
 * A callback takes its site's name as it is when the callback is written
 * out (when the next container of its thread comes): a site renamed later
 * keeps its old name on the callbacks before the rename.
 */
#include "trace.h"

#include "json.h"
#include "loopwatch.h"
#include "loopwatch_ring.h"
#include "ring_reader.h"
#include "why.h"
#include "../bpf/loopwatch_bpf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_MAX 65536 /* kernel events waiting on one thread */
#define PENDING_BYTES (16u << 20) /* and their bytes */
#define RECENT 8 /* containers remembered per thread for late events */
/* Loops that a record names but the recording never described get a
 * thread id above any pid_max (4194304), so that they cannot share a
 * track with a real thread. */
#define UNKNOWN_TID_BASE 1000000000LL

/* ---- allocation: a program, so out of memory ends it ---- */

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, "loopwatch: cannot write the trace: out of "
				"memory\n");
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s ? s : "") + 1;
	char *d = xrealloc(NULL, n);

	memcpy(d, s ? s : "", n);
	return d;
}

/* ---- a small hash map, uint64 key -> non-NULL pointer ---- */

struct map_ent {
	uint64_t key;
	void *val; /* NULL: a free slot */
};

struct map {
	struct map_ent *e;
	size_t cap, n; /* cap: a power of two, or 0 */
};

static size_t map_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k;
}

static void *map_get(const struct map *m, uint64_t key)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = map_hash(key) & (m->cap - 1);;
	     i = (i + 1) & (m->cap - 1)) {
		if (m->e[i].val == NULL)
			return NULL;
		if (m->e[i].key == key)
			return m->e[i].val;
	}
}

static void map_put_new(struct map *m, uint64_t key, void *val);

static void map_grow(struct map *m)
{
	struct map old = *m;

	m->cap = old.cap ? old.cap * 2 : 64;
	m->n = 0;
	m->e = xrealloc(NULL, m->cap * sizeof(*m->e));
	memset(m->e, 0, m->cap * sizeof(*m->e));
	for (size_t i = 0; i < old.cap; i++)
		if (old.e[i].val != NULL)
			map_put_new(m, old.e[i].key, old.e[i].val);
	free(old.e);
}

/* Insert a key that is not in the map. */
static void map_put_new(struct map *m, uint64_t key, void *val)
{
	if ((m->n + 1) * 2 > m->cap)
		map_grow(m);
	size_t i = map_hash(key) & (m->cap - 1);
	while (m->e[i].val != NULL)
		i = (i + 1) & (m->cap - 1);
	m->e[i].key = key;
	m->e[i].val = val;
	m->n++;
}

/* ---- the converter's state ---- */

/* A kernel event that waits for its container, with its own copy of the
 * strings (one block). */
struct kev {
	uint64_t s, e; /* relative ns, clamped */
	lw_rec_kevent_t k;
	void *blob;
	size_t bytes;
};

struct track {
	int64_t tid;
	struct kev *pend;
	size_t npend, cap, pend_bytes;
	/* The last containers written, for kernel events that come late. */
	uint64_t recent_s[RECENT], recent_e[RECENT];
	unsigned nrecent, recent_next;
	uint64_t last_e; /* the latest end of a container so far */
	int has_last;
	/* The container held open until the next one of this thread (or the
	 * end), so that kernel events written just after it still nest in
	 * it: a callback (its record) or a busy span (a copy). */
	int open; /* 0 none, 1 callback, 2 span */
	uint64_t os, oe;
	lw_rec_callback_t ocb;
	struct kev ospan;
};

struct loop {
	uint32_t id;
	int64_t tid;
	char *label; /* the thread's name */
	char *ckey; /* the counters' key: the label and the tid */
	int have_ctr;
	uint64_t busy, idle;
};

struct tw {
	lw_json_t j;
	int64_t pid;
	uint64_t mono;
	int have_header;
	char *version, *comm, *hostname, *rings_why, *kprobes_why;
	uint64_t real_ns, min_ns;
	uint32_t sources;
	struct map loops, tracks, sites;
	struct loop *last_loop; /* the cache of loop_get */
	struct track *last_track; /* and of track_get */
	int have_end;
	lw_rec_end_t end;
	uint64_t callbacks, kevents, counters, clamped, skipped;
	struct kev **sorted; /* scratch of nest_emit */
	uint64_t *stack;
	size_t scratch_cap;
};

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

/* A time relative to the start of the recording, never negative. */
static uint64_t rel(const struct tw *t, uint64_t ns)
{
	return ns > t->mono ? ns - t->mono : 0;
}

/* Microseconds with at most three decimals: exact, as the shortest
 * decimal that reads back as the same double. */
static void kus(struct tw *t, const char *key, uint64_t ns)
{
	lw_json_knum(&t->j, key, (double)ns / 1000.0);
}

static void kms(struct tw *t, const char *key, uint64_t ns)
{
	lw_json_knum(&t->j, key, (double)ns / 1e6);
}

static struct track *track_get(struct tw *t, int64_t tid)
{
	if (t->last_track != NULL && t->last_track->tid == tid)
		return t->last_track;
	struct track *tr = map_get(&t->tracks, (uint64_t)tid);
	if (tr == NULL) {
		tr = xrealloc(NULL, sizeof(*tr));
		memset(tr, 0, sizeof(*tr));
		tr->tid = tid;
		map_put_new(&t->tracks, (uint64_t)tid, tr);
	}
	t->last_track = tr;
	return tr;
}

static void meta_begin(struct tw *t, const char *name, int64_t tid)
{
	lw_json_obj(&t->j);
	lw_json_kstr(&t->j, "name", name);
	lw_json_kstr(&t->j, "ph", "M");
	lw_json_ki64(&t->j, "pid", t->pid);
	lw_json_ki64(&t->j, "tid", tid);
	lw_json_key(&t->j, "args");
	lw_json_obj(&t->j);
}

static void meta_end(struct tw *t)
{
	lw_json_obj_end(&t->j);
	lw_json_obj_end(&t->j);
}

/* Name the loop's thread (again, if the loop was written again). */
static void loop_describe(struct tw *t, struct loop *l, const char *name,
			  int known)
{
	char buf[64];

	free(l->label);
	free(l->ckey);
	if (name != NULL && name[0] != '\0') {
		l->label = xstrdup(name);
		size_t n = strlen(name) + 32;
		l->ckey = xrealloc(NULL, n);
		snprintf(l->ckey, n, "%s (tid %" PRId64 ")", name, l->tid);
	} else {
		if (known)
			snprintf(buf, sizeof(buf), "loop tid %" PRId64, l->tid);
		else
			snprintf(buf, sizeof(buf),
				 "loop #%" PRIu32 " (not described)", l->id);
		l->label = xstrdup(buf);
		l->ckey = xstrdup(buf);
	}
	/* A loop whose thread is not known yet (the recorder writes it
	 * again once it is) names no thread. */
	if (known && l->tid == 0)
		return;
	meta_begin(t, "thread_name", l->tid);
	lw_json_kstr(&t->j, "name", l->label);
	meta_end(t);
	meta_begin(t, "thread_sort_index", l->tid);
	lw_json_ku64(&t->j, "sort_index", l->id);
	meta_end(t);
}

/* The loop of an id; one the recording never described gets a track of
 * its own. */
static struct loop *loop_get(struct tw *t, uint32_t id)
{
	if (t->last_loop != NULL && t->last_loop->id == id)
		return t->last_loop;
	struct loop *l = map_get(&t->loops, id);
	if (l == NULL) {
		l = xrealloc(NULL, sizeof(*l));
		memset(l, 0, sizeof(*l));
		l->id = id;
		l->tid = UNKNOWN_TID_BASE + id % UNKNOWN_TID_BASE;
		map_put_new(&t->loops, id, l);
		loop_describe(t, l, NULL, 0);
	}
	t->last_loop = l;
	return l;
}

static void on_loop(struct tw *t, const lw_rec_loop_t *rl)
{
	struct loop *l = map_get(&t->loops, rl->id);

	if (l == NULL) {
		l = xrealloc(NULL, sizeof(*l));
		memset(l, 0, sizeof(*l));
		l->id = rl->id;
		map_put_new(&t->loops, rl->id, l);
	}
	l->tid = rl->tid;
	loop_describe(t, l, rl->name, 1);
}

static void on_site(struct tw *t, const lw_rec_site_t *s)
{
	uint64_t key = (uint64_t)s->loop_id << 32 | s->site_id;
	const char *name = s->name && s->name[0]   ? s->name
			   : s->func && s->func[0] ? s->func
						   : NULL;
	char buf[32];
	struct map_ent *e = NULL;

	if (name == NULL) {
		snprintf(buf, sizeof(buf), "site#%" PRIu32, s->site_id);
		name = buf;
	}
	/* A rename: replace the name in place. */
	if (t->sites.cap != 0) {
		for (size_t i = map_hash(key) & (t->sites.cap - 1);
		     t->sites.e[i].val != NULL;
		     i = (i + 1) & (t->sites.cap - 1)) {
			if (t->sites.e[i].key == key) {
				e = &t->sites.e[i];
				break;
			}
		}
	}
	if (e != NULL) {
		free(e->val);
		e->val = xstrdup(name);
	} else {
		map_put_new(&t->sites, key, xstrdup(name));
	}
}

/* ---- slices ---- */

static void slice_begin(struct tw *t, const char *name, const char *cat,
			int64_t tid, uint64_t s, uint64_t e)
{
	lw_json_obj(&t->j);
	lw_json_kstr(&t->j, "name", name);
	lw_json_kstr(&t->j, "cat", cat);
	lw_json_kstr(&t->j, "ph", "X");
	kus(t, "ts", s);
	kus(t, "dur", e - s);
	lw_json_ki64(&t->j, "pid", t->pid);
	lw_json_ki64(&t->j, "tid", tid);
}

static void emit_stack(struct tw *t, const lw_rec_kevent_t *k)
{
	if (k->nframes == 0 || k->frames == NULL)
		return;
	lw_json_key(&t->j, "stack");
	lw_json_arr(&t->j);
	for (uint32_t i = 0; i < k->nframes && i < LW_REC_FRAMES_MAX; i++)
		lw_json_str(&t->j, k->frames[i] ? k->frames[i] : "");
	lw_json_arr_end(&t->j);
	if (k->flags & (LW_REC_KEV_STACK_CUT | LW_REC_KEV_FRAMES_CUT))
		lw_json_kbool(&t->j, "stack_cut", 1);
}

/* A kernel event between s and e (relative, already clamped). */
static void emit_kev(struct tw *t, int64_t tid, const lw_rec_kevent_t *k,
		     uint64_t s, uint64_t e)
{
	char buf[32];
	const char *name, *cat;

	if (k->kind == LW_BPF_EV_SAMPLE) {
		lw_json_obj(&t->j);
		lw_json_kstr(&t->j, "name", "sample");
		lw_json_kstr(&t->j, "cat", "sample");
		lw_json_kstr(&t->j, "ph", "i");
		lw_json_kstr(&t->j, "s", "t");
		kus(t, "ts", s);
		lw_json_ki64(&t->j, "pid", t->pid);
		lw_json_ki64(&t->j, "tid", tid);
		lw_json_key(&t->j, "args");
		lw_json_obj(&t->j);
		if (k->span_start_ns != 0)
			kms(t, "span_so_far_ms",
			    k->start_ns > k->span_start_ns
				    ? k->start_ns - k->span_start_ns
				    : 0);
		emit_stack(t, k);
		lw_json_obj_end(&t->j);
		lw_json_obj_end(&t->j);
		return;
	}
	if (k->kind == LW_BPF_EV_SYSCALL) {
		cat = "syscall";
		name = k->syscall;
		if (name == NULL || name[0] == '\0') {
			snprintf(buf, sizeof(buf), "syscall %" PRIu32, k->nr);
			name = buf;
		}
	} else if (k->kind == LW_BPF_EV_OFFCPU) {
		cat = "offcpu";
		name = "off CPU";
	} else {
		cat = "iteration";
		name = "iteration";
	}
	slice_begin(t, name, cat, tid, s, e);
	lw_json_key(&t->j, "args");
	lw_json_obj(&t->j);
	if (k->kind == LW_BPF_EV_SYSCALL) {
		lw_json_ku64(&t->j, "nr", k->nr);
		if (k->fd >= 0)
			lw_json_ki64(&t->j, "fd", k->fd);
		if (k->fd_path != NULL && k->fd_path[0] != '\0')
			lw_json_kstr(&t->j, "fd_path", k->fd_path);
		lw_json_ki64(&t->j, "ret", k->ret);
		if (k->flags & LW_REC_KEV_NONBLOCK)
			lw_json_kbool(&t->j, "nonblock", 1);
	}
	kms(t, "duration_ms", k->duration_ns);
	kms(t, "off_cpu_ms", k->off_cpu_ns);
	if (k->preempt_ns != 0)
		kms(t, "preempted_ms", k->preempt_ns);
	if (k->kind == LW_BPF_EV_OFFCPU) {
		lw_json_kbool(&t->j, "preempted",
			      (k->flags & LW_REC_KEV_PREEMPTED) != 0);
		lw_json_kbool(&t->j, "in_syscall",
			      (k->flags & LW_REC_KEV_IN_SYSCALL) != 0);
	}
	emit_stack(t, k);
	lw_json_obj_end(&t->j);
	lw_json_obj_end(&t->j);
}

static int kev_cmp(const void *a, const void *b)
{
	const struct kev *x = *(struct kev *const *)a;
	const struct kev *y = *(struct kev *const *)b;

	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	if (x->e != y->e)
		return x->e > y->e ? -1 : 1; /* the longer, the parent, first */
	return 0;
}

static void scratch(struct tw *t, size_t n)
{
	if (n <= t->scratch_cap)
		return;
	t->scratch_cap = n < 64 ? 64 : n;
	t->sorted = xrealloc(t->sorted, t->scratch_cap * sizeof(*t->sorted));
	t->stack = xrealloc(t->stack, t->scratch_cap * sizeof(*t->stack));
}

/* Write the n events of t->sorted on one thread, each clamped into the one
 * that encloses it (and all into [ps, pe] when in_parent), so that they
 * nest as Perfetto requires. */
static void nest_emit(struct tw *t, struct track *tr, size_t n, int in_parent,
		      uint64_t ps, uint64_t pe)
{
	size_t depth = 0;

	for (size_t i = 0; i < n && in_parent; i++) {
		struct kev *v = t->sorted[i];
		if (v->s < ps || v->e > pe)
			t->clamped++;
		if (v->s < ps)
			v->s = ps;
		if (v->s > pe)
			v->s = pe;
		if (v->e > pe)
			v->e = pe;
		if (v->e < v->s)
			v->e = v->s;
	}
	qsort(t->sorted, n, sizeof(*t->sorted), kev_cmp);
	for (size_t i = 0; i < n; i++) {
		struct kev *v = t->sorted[i];
		while (depth > 0 && t->stack[depth - 1] <= v->s)
			depth--;
		if (depth > 0 && v->e > t->stack[depth - 1]) {
			v->e = t->stack[depth - 1];
			t->clamped++;
		}
		emit_kev(t, tr->tid, &v->k, v->s, v->e);
		t->stack[depth++] = v->e;
	}
}

static void kev_free(struct track *tr, struct kev *v)
{
	tr->pend_bytes -= v->bytes;
	free(v->blob);
	v->blob = NULL;
}

/* Whether a kernel event [s, e] belongs in a container [cs, ce]: they
 * overlap, or it lies within (an instant or a zero-length one). */
static int belongs(uint64_t s, uint64_t e, uint64_t cs, uint64_t ce)
{
	uint64_t lo = s > cs ? s : cs, hi = e < ce ? e : ce;

	return lo < hi || (s >= cs && e <= ce);
}

/* Write out the events pending on tr that go before, or into, the
 * container [s, e]; keep those after it waiting.  The container itself is
 * written by the caller between the two groups (write_container). */
static void flush_before(struct tw *t, struct track *tr, uint64_t s, uint64_t e,
			 int all)
{
	size_t n = 0;

	scratch(t, tr->npend);
	for (size_t i = 0; i < tr->npend; i++) {
		struct kev *v = &tr->pend[i];
		if (all || (!belongs(v->s, v->e, s, e) && v->s < s))
			t->sorted[n++] = v;
	}
	if (n == 0)
		return;
	nest_emit(t, tr, n, 0, 0, 0);
	for (size_t i = 0; i < n; i++)
		kev_free(tr, t->sorted[i]);
}

static void flush_into(struct tw *t, struct track *tr, uint64_t s, uint64_t e)
{
	size_t n = 0;

	scratch(t, tr->npend);
	for (size_t i = 0; i < tr->npend; i++) {
		struct kev *v = &tr->pend[i];
		if (v->blob != NULL && belongs(v->s, v->e, s, e))
			t->sorted[n++] = v;
	}
	if (n > 0) {
		nest_emit(t, tr, n, 1, s, e);
		for (size_t i = 0; i < n; i++)
			kev_free(tr, t->sorted[i]);
	}
	/* Keep the rest, in their order. */
	size_t k = 0;
	for (size_t i = 0; i < tr->npend; i++)
		if (tr->pend[i].blob != NULL)
			tr->pend[k++] = tr->pend[i];
	tr->npend = k;
}

static void emit_callback(struct tw *t, struct track *tr, uint64_t s,
			  uint64_t e, const lw_rec_callback_t *c)
{
	const char *name =
		map_get(&t->sites, (uint64_t)c->loop_id << 32 | c->site_id);
	char buf[32];

	if (name == NULL) {
		snprintf(buf, sizeof(buf), "site#%" PRIu32, c->site_id);
		name = buf;
	}
	slice_begin(t, name, "callback", tr->tid, s, e);
	lw_json_key(&t->j, "args");
	lw_json_obj(&t->j);
	lw_json_kstr(&t->j, "kind", lw_rr_kind_name(c->kind));
	lw_json_ku64(&t->j, "site", c->site_id);
	if (c->kind == LW_KIND_TIMER) {
		kms(t, "lateness_ms", c->lateness_ns);
		if (c->flags & LW_REC_LATENESS_SATURATED)
			lw_json_kbool(&t->j, "lateness_saturated", 1);
	}
	lw_json_obj_end(&t->j);
	lw_json_obj_end(&t->j);
}

/* Write the open container of tr with the kernel events that wait before
 * it and inside it. */
static void close_container(struct tw *t, struct track *tr)
{
	uint64_t s = tr->os, e = tr->oe;

	if (!tr->open)
		return;
	flush_before(t, tr, s, e, 0);
	if (tr->open == 1) {
		emit_callback(t, tr, s, e, &tr->ocb);
	} else {
		emit_kev(t, tr->tid, &tr->ospan.k, s, e);
		free(tr->ospan.blob);
		tr->ospan.blob = NULL;
	}
	tr->open = 0;
	flush_into(t, tr, s, e);
	tr->recent_s[tr->recent_next] = s;
	tr->recent_e[tr->recent_next] = e;
	tr->recent_next = (tr->recent_next + 1) % RECENT;
	if (tr->nrecent < RECENT)
		tr->nrecent++;
}

/* A callback or busy span [s, e] on tr: the previous one is written, this
 * one is held open; the caller fills in what it is. */
static void open_container(struct tw *t, struct track *tr, uint64_t s,
			   uint64_t e)
{
	/* Two containers of one thread that overlap without nesting (a
	 * hostile or damaged file): the later starts where the earlier
	 * ended. */
	if (tr->has_last && s < tr->last_e && e > tr->last_e) {
		s = tr->last_e;
		t->clamped++;
	}
	if (e < s)
		e = s;
	close_container(t, tr);
	tr->os = s;
	tr->oe = e;
	if (!tr->has_last || e > tr->last_e)
		tr->last_e = e;
	tr->has_last = 1;
}

static void on_callback(struct tw *t, const lw_rec_callback_t *c)
{
	struct loop *l = loop_get(t, c->loop_id);
	struct track *tr = track_get(t, l->tid);

	open_container(t, tr, rel(t, c->start_ns),
		       rel(t, sat_add(c->start_ns, c->duration_ns)));
	tr->open = 1;
	tr->ocb = *c;
	t->callbacks++;
}

/* Copy a kernel event's strings into one block, for it to wait. */
static void kev_copy(struct kev *d, const lw_rec_kevent_t *k)
{
	uint32_t nf = k->frames != NULL && k->nframes < LW_REC_FRAMES_MAX
			      ? k->nframes
		      : k->frames != NULL ? LW_REC_FRAMES_MAX
					  : 0;
	const char *sys = k->syscall ? k->syscall : "";
	const char *path = k->fd_path ? k->fd_path : "";
	size_t ls = strlen(sys) + 1, lp = strlen(path) + 1;
	size_t size = nf * sizeof(char *) + ls + lp;

	for (uint32_t i = 0; i < nf; i++)
		size += strlen(k->frames[i] ? k->frames[i] : "") + 1;
	char *b = xrealloc(NULL, size);
	const char **frames = (const char **)(void *)b;
	char *p = b + nf * sizeof(char *);

	d->k = *k;
	d->blob = b;
	d->bytes = size + sizeof(*d);
	for (uint32_t i = 0; i < nf; i++) {
		const char *f = k->frames[i] ? k->frames[i] : "";
		size_t n = strlen(f) + 1;
		memcpy(p, f, n);
		frames[i] = p;
		p += n;
	}
	memcpy(p, sys, ls);
	d->k.syscall = p;
	p += ls;
	memcpy(p, path, lp);
	d->k.fd_path = p;
	d->k.nframes = nf;
	d->k.frames = nf ? frames : NULL;
}

/* Too much waits on tr (a thread whose containers never come): write the
 * earlier half out as it is, cut where no event overlaps the cut, so that
 * both halves nest on their own. */
static void pending_trim(struct tw *t, struct track *tr)
{
	size_t cut = tr->npend / 2, k = 0;
	uint64_t maxe = 0;

	scratch(t, tr->npend);
	for (size_t i = 0; i < tr->npend; i++)
		t->sorted[i] = &tr->pend[i];
	qsort(t->sorted, tr->npend, sizeof(*t->sorted), kev_cmp);
	for (size_t i = 0; i < cut; i++)
		if (t->sorted[i]->e > maxe)
			maxe = t->sorted[i]->e;
	while (cut < tr->npend && t->sorted[cut]->s < maxe) {
		if (t->sorted[cut]->e > maxe)
			maxe = t->sorted[cut]->e;
		cut++;
	}
	nest_emit(t, tr, cut, 0, 0, 0);
	for (size_t i = 0; i < cut; i++)
		kev_free(tr, t->sorted[i]);
	for (size_t i = 0; i < tr->npend; i++)
		if (tr->pend[i].blob != NULL)
			tr->pend[k++] = tr->pend[i];
	tr->npend = k;
}

static void on_kevent(struct tw *t, const lw_rec_kevent_t *k)
{
	int64_t tid = k->tid;
	uint64_t s = rel(t, k->start_ns);
	uint64_t e = rel(t, sat_add(k->start_ns, k->duration_ns));

	if (tid == 0 && k->loop_id != 0)
		tid = loop_get(t, k->loop_id)->tid;
	struct track *tr = track_get(t, tid);

	t->kevents++;
	if (k->kind == LW_BPF_EV_SAMPLE) {
		/* An instant nests anywhere. */
		emit_kev(t, tid, k, s, s);
		return;
	}
	if (k->kind == LW_BPF_EV_SPAN) {
		open_container(t, tr, s, e);
		tr->open = 2;
		kev_copy(&tr->ospan, k);
		return;
	}
	if (k->kind != LW_BPF_EV_SYSCALL && k->kind != LW_BPF_EV_OFFCPU) {
		t->skipped++;
		return;
	}
	/* Late: inside a container already written. */
	int in_open = tr->open && belongs(s, e, tr->os, tr->oe);
	for (unsigned i = 0; i < tr->nrecent && !in_open; i++) {
		uint64_t cs = tr->recent_s[i], ce = tr->recent_e[i];
		if (belongs(s, e, cs, ce)) {
			if (s < cs || e > ce)
				t->clamped++;
			s = s < cs ? cs : s > ce ? ce : s;
			e = e > ce ? ce : e < s ? s : e;
			emit_kev(t, tid, k, s, e);
			return;
		}
	}
	if (tr->npend == tr->cap) {
		tr->cap = tr->cap ? tr->cap * 2 : 16;
		tr->pend = xrealloc(tr->pend, tr->cap * sizeof(*tr->pend));
	}
	struct kev *v = &tr->pend[tr->npend++];
	v->s = s;
	v->e = e;
	kev_copy(v, k);
	tr->pend_bytes += v->bytes;
	if (tr->npend >= PENDING_MAX || tr->pend_bytes >= PENDING_BYTES) {
		close_container(t, tr);
		if (tr->npend >= PENDING_MAX / 2 ||
		    tr->pend_bytes >= PENDING_BYTES / 2)
			pending_trim(t, tr);
	}
}

static void on_counters(struct tw *t, const lw_rec_counters_t *c)
{
	struct loop *l = loop_get(t, c->loop_id);
	uint64_t ts = rel(t, c->now_ns);

	t->counters++;
	if (l->have_ctr && c->busy_ns >= l->busy && c->idle_ns >= l->idle) {
		uint64_t db = c->busy_ns - l->busy, di = c->idle_ns - l->idle;
		if (db + di > 0 && db + di >= db) {
			lw_json_obj(&t->j);
			lw_json_kstr(&t->j, "name", "utilization");
			lw_json_kstr(&t->j, "ph", "C");
			kus(t, "ts", ts);
			lw_json_ki64(&t->j, "pid", t->pid);
			lw_json_key(&t->j, "args");
			lw_json_obj(&t->j);
			lw_json_knum(&t->j, l->ckey,
				     100.0 * (double)db / (double)(db + di));
			lw_json_obj_end(&t->j);
			lw_json_obj_end(&t->j);
		}
	}
	l->have_ctr = 1;
	l->busy = c->busy_ns;
	l->idle = c->idle_ns;

	lw_json_obj(&t->j);
	lw_json_kstr(&t->j, "name", "pool queued");
	lw_json_kstr(&t->j, "ph", "C");
	kus(t, "ts", ts);
	lw_json_ki64(&t->j, "pid", t->pid);
	lw_json_key(&t->j, "args");
	lw_json_obj(&t->j);
	lw_json_ku64(&t->j, l->ckey, c->pool_queued);
	lw_json_obj_end(&t->j);
	lw_json_obj_end(&t->j);
}

static void on_header(struct tw *t, const lw_rec_header_t *h)
{
	char buf[64];

	t->have_header = 1;
	t->pid = h->pid;
	t->mono = h->mono_ns;
	t->real_ns = h->real_ns;
	t->min_ns = h->min_ns;
	t->sources = h->sources;
	t->version = xstrdup(h->version);
	t->comm = xstrdup(h->comm);
	t->hostname = xstrdup(h->hostname);
	t->rings_why = xstrdup(h->rings_why);
	t->kprobes_why = xstrdup(h->kprobes_why);

	meta_begin(t, "process_name", 0);
	lw_json_key(&t->j, "name");
	/* The comm is untrusted: it goes through the escaping writer, and
	 * the rest is ours. */
	size_t n = strlen(t->comm) + sizeof(buf);
	char *name = xrealloc(NULL, n);
	snprintf(name, n, "%s (pid %" PRId64 ")", t->comm, t->pid);
	lw_json_str(&t->j, name);
	free(name);
	meta_end(t);
}

static void write_metadata(struct tw *t, lw_rec_reader_t *r, int complete,
			   const char *err)
{
	lw_json_t *j = &t->j;

	lw_json_key(j, "metadata");
	lw_json_obj(j);
	lw_json_kstr(j, "source", "loopwatch recording");
	if (t->have_header) {
		lw_json_kstr(j, "loopwatch_version", t->version);
		lw_json_ki64(j, "pid", t->pid);
		lw_json_kstr(j, "comm", t->comm);
		lw_json_kstr(j, "hostname", t->hostname);
		lw_json_ku64(j, "start_mono_ns", t->mono);
		lw_json_ku64(j, "start_real_ns", t->real_ns);
		lw_json_ku64(j, "min_ns", t->min_ns);
		lw_json_kbool(j, "rings", (t->sources & LW_REC_SRC_RINGS) != 0);
		lw_json_kbool(j, "kernel_probes",
			      (t->sources & LW_REC_SRC_KPROBES) != 0);
		if (t->rings_why[0] != '\0')
			lw_json_kstr(j, "rings_why", t->rings_why);
		if (t->kprobes_why[0] != '\0')
			lw_json_kstr(j, "kprobes_why", t->kprobes_why);
	}
	lw_json_ku64(j, "callbacks", t->callbacks);
	lw_json_ku64(j, "kevents", t->kevents);
	lw_json_ku64(j, "counters", t->counters);
	/* Slices moved to nest properly: a few from rounding are normal,
	 * many mean the clocks disagreed. */
	lw_json_ku64(j, "clamped", t->clamped);
	if (t->skipped + lw_rec_reader_skipped(r) != 0)
		lw_json_ku64(j, "skipped",
			     t->skipped + lw_rec_reader_skipped(r));
	if (t->have_end) {
		lw_json_ku64(j, "lost_records", t->end.lost_records);
		lw_json_ku64(j, "kernel_lost", t->end.kernel_lost);
		kus(t, "end_us", rel(t, t->end.end_ns));
	}
	lw_json_kbool(j, "complete", complete);
	if (err != NULL)
		lw_json_kstr(j, "error", err);
	lw_json_obj_end(j);
}

static void free_map(struct map *m, int tracks)
{
	for (size_t i = 0; i < m->cap; i++) {
		void *v = m->e[i].val;
		if (v == NULL)
			continue;
		if (tracks == 1) {
			struct track *tr = v;
			for (size_t k = 0; k < tr->npend; k++)
				free(tr->pend[k].blob);
			free(tr->ospan.blob);
			free(tr->pend);
		} else if (tracks == 2) {
			struct loop *l = v;
			free(l->label);
			free(l->ckey);
		}
		free(v);
	}
	free(m->e);
}

int lw_trace_write(lw_rec_reader_t *r, FILE *out, char *why, size_t whylen)
{
	struct tw t;
	lw_rec_item_t it;
	int rc;

	memset(&t, 0, sizeof(t));
	lw_json_init(&t.j, out, 0);
	lw_json_obj(&t.j);
	lw_json_key(&t.j, "traceEvents");
	lw_json_arr(&t.j);
	while ((rc = lw_rec_next(r, &it)) == 1) {
		switch (it.type) {
		case LW_REC_HEADER:
			if (!t.have_header)
				on_header(&t, &it.u.header);
			break;
		case LW_REC_LOOP:
			on_loop(&t, &it.u.loop);
			break;
		case LW_REC_SITE:
			on_site(&t, &it.u.site);
			break;
		case LW_REC_CALLBACK:
			on_callback(&t, &it.u.callback);
			break;
		case LW_REC_KEVENT:
			on_kevent(&t, &it.u.kevent);
			break;
		case LW_REC_COUNTERS:
			on_counters(&t, &it.u.counters);
			break;
		case LW_REC_END:
			t.have_end = 1;
			t.end = it.u.end;
			break;
		default:
			/* Totals (blocking) and later types: not events
			 * on a timeline. */
			break;
		}
	}
	/* What still waits has no container: out as it is. */
	for (size_t i = 0; i < t.tracks.cap; i++) {
		struct track *tr = t.tracks.e[i].val;
		if (tr == NULL)
			continue;
		close_container(&t, tr);
		flush_before(&t, tr, 0, 0, 1);
		tr->npend = 0;
	}
	lw_json_arr_end(&t.j);
	lw_json_kstr(&t.j, "displayTimeUnit", "ms");
	write_metadata(&t, r, rc == 0, rc < 0 ? lw_rec_reader_why(r) : NULL);
	lw_json_obj_end(&t.j);
	lw_json_end(&t.j);

	if (rc < 0)
		lw_why(why, whylen, "%s", lw_rec_reader_why(r));
	if (ferror(out)) {
		lw_why(why, whylen, "cannot write the trace: %s",
		       errno ? strerror(errno) : "write error");
		rc = -1;
	}

	free_map(&t.tracks, 1);
	free_map(&t.loops, 2);
	free_map(&t.sites, 0);
	free(t.sorted);
	free(t.stack);
	free(t.version);
	free(t.comm);
	free(t.hostname);
	free(t.rings_why);
	free(t.kprobes_why);
	return rc < 0 ? -1 : 0;
}
