/*
 * model.c - the aggregate of model.h.
 *
 * Sites are found through an open-addressing hash on (loop, site), so that
 * a callback costs one probe and one histogram add: the agent feeds every
 * ring record through here, a million a second at full speed.
 */
#include "model.h"

#include "../bpf/loopwatch_bpf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lw_model {
	lw_model_info_t info;
	lw_model_loop_t *loops;
	size_t nloops, loops_cap;
	lw_model_site_t **sites; /* in order of first sight */
	size_t nsites, sites_cap;
	/* The hash: indexes + 1 into sites (0: empty), a power of two. */
	uint32_t *slots;
	size_t nslots;
};

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

lw_model_t *lw_model_new(void)
{
	lw_model_t *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->nslots = 1024;
	m->slots = calloc(m->nslots, sizeof(*m->slots));
	if (m->slots == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

static void stack_free(lw_model_stack_t *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		free(s->frames[i]);
	s->n = 0;
}

/* Replace *s with a copy of frames (cut at LW_MODEL_FRAMES); on a failed
 * allocation the frames copied so far stay, which is still a true (if
 * short) stack. */
static void stack_set(lw_model_stack_t *s, const char *const *frames,
		      uint32_t n)
{
	stack_free(s);
	for (uint32_t i = 0; i < n && s->n < LW_MODEL_FRAMES; i++) {
		char *f = strdup(frames[i] ? frames[i] : "?");
		if (f == NULL)
			break;
		s->frames[s->n++] = f;
	}
}

void lw_model_free(lw_model_t *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nsites; i++) {
		lw_model_site_t *s = m->sites[i];
		stack_free(&s->sample);
		for (size_t k = 0; k < s->ncalls; k++)
			stack_free(&s->calls[k].stack);
		free(s);
	}
	for (size_t i = 0; i < m->nloops; i++)
		free(m->loops[i].lag);
	free(m->sites);
	free(m->slots);
	free(m->loops);
	free(m);
}

const lw_model_info_t *lw_model_info(const lw_model_t *m)
{
	return &m->info;
}

uint64_t lw_model_end_ns(const lw_model_t *m)
{
	return m->info.end_ns ? m->info.end_ns : m->info.seen_ns;
}

/* Note a time an item carried (untrusted from a file: a sum that wraps is
 * left out). */
static void seen(lw_model_t *m, uint64_t start, uint64_t duration)
{
	uint64_t t = start + duration;
	if (t >= start && t > m->info.seen_ns)
		m->info.seen_ns = t;
}

/* ---- loops ---- */

const lw_model_loop_t *lw_model_loop_by_id(const lw_model_t *m, uint32_t id)
{
	for (size_t i = 0; i < m->nloops; i++)
		if (m->loops[i].id == id)
			return &m->loops[i];
	return NULL;
}

static lw_model_loop_t *loop_get(lw_model_t *m, uint32_t id)
{
	lw_model_loop_t *l = (lw_model_loop_t *)lw_model_loop_by_id(m, id);

	if (l != NULL || id == 0)
		return l;
	if (m->nloops == LW_MODEL_LOOPS_MAX)
		return NULL;
	if (m->nloops == m->loops_cap) {
		size_t cap = m->loops_cap ? 2 * m->loops_cap : 4;
		lw_model_loop_t *n = realloc(m->loops, cap * sizeof(*n));
		if (n == NULL)
			return NULL;
		m->loops = n;
		m->loops_cap = cap;
	}
	lw_hist_t *lag = calloc(1, sizeof(*lag));
	if (lag == NULL)
		return NULL;
	l = &m->loops[m->nloops++];
	memset(l, 0, sizeof(*l));
	l->id = id;
	l->lag = lag;
	snprintf(l->name, sizeof(l->name), "loop %" PRIu32, id);
	return l;
}

size_t lw_model_nloops(const lw_model_t *m)
{
	return m->nloops;
}

const lw_model_loop_t *lw_model_loop_at(const lw_model_t *m, size_t i)
{
	return i < m->nloops ? &m->loops[i] : NULL;
}

void lw_model_loop(lw_model_t *m, const lw_rec_loop_t *rl)
{
	lw_model_loop_t *l = loop_get(m, rl->id);

	if (l == NULL)
		return;
	l->tid = rl->tid;
	l->has_ring = rl->ring_capacity > 0;
	if (rl->name && rl->name[0])
		copy_str(l->name, sizeof(l->name), rl->name);
	else
		snprintf(l->name, sizeof(l->name), "thread %" PRId32, rl->tid);
}

/* ---- sites ---- */

static size_t hash(uint32_t loop, uint32_t site)
{
	uint64_t k = ((uint64_t)loop << 32 | site) * 0x9e3779b97f4a7c15ull;
	return (size_t)(k >> 32);
}

static int rehash(lw_model_t *m)
{
	size_t n = m->nslots * 2;
	uint32_t *slots = calloc(n, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < m->nsites; i++) {
		size_t h = hash(m->sites[i]->loop_id, m->sites[i]->site_id);
		while (slots[h & (n - 1)] != 0)
			h++;
		slots[h & (n - 1)] = (uint32_t)i + 1;
	}
	free(m->slots);
	m->slots = slots;
	m->nslots = n;
	return 0;
}

const lw_model_site_t *lw_model_site_find(const lw_model_t *m, uint32_t loop,
					  uint32_t site)
{
	for (size_t h = hash(loop, site);; h++) {
		uint32_t v = m->slots[h & (m->nslots - 1)];
		if (v == 0)
			return NULL;
		const lw_model_site_t *s = m->sites[v - 1];
		if (s->loop_id == loop && s->site_id == site)
			return s;
	}
}

static void default_name(lw_model_t *m, lw_model_site_t *s)
{
	const lw_model_loop_t *l = lw_model_loop_by_id(m, s->loop_id);

	if (s->site_id == 0 && l != NULL && !l->has_ring)
		snprintf(s->name, sizeof(s->name), "%.100s iterations",
			 l->name);
	else if (s->site_id == 0)
		snprintf(s->name, sizeof(s->name), "(outside callbacks)");
	else
		snprintf(s->name, sizeof(s->name), "site#%" PRIu32, s->site_id);
}

/* The site, made (named site#N) if new; NULL past the caps or out of
 * memory (then counted in sites_dropped). */
static lw_model_site_t *site_get(lw_model_t *m, uint32_t loop, uint32_t site)
{
	lw_model_site_t *s =
		(lw_model_site_t *)lw_model_site_find(m, loop, site);
	if (s != NULL)
		return s;
	if (m->nsites >= LW_MODEL_SITES_MAX || loop_get(m, loop) == NULL)
		goto drop;
	if ((m->nsites + 1) * 2 > m->nslots && rehash(m) < 0)
		goto drop;
	if (m->nsites == m->sites_cap) {
		size_t cap = m->sites_cap ? 2 * m->sites_cap : 16;
		lw_model_site_t **n = realloc(m->sites, cap * sizeof(*n));
		if (n == NULL)
			goto drop;
		m->sites = n;
		m->sites_cap = cap;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto drop;
	s->loop_id = loop;
	s->site_id = site;
	if (site == 0) {
		const lw_model_loop_t *l = lw_model_loop_by_id(m, loop);
		if (l != NULL && !l->has_ring)
			s->kind = LW_MODEL_KIND_ITERATION;
	}
	default_name(m, s);
	size_t h = hash(loop, site);
	while (m->slots[h & (m->nslots - 1)] != 0)
		h++;
	m->sites[m->nsites++] = s;
	m->slots[h & (m->nslots - 1)] = (uint32_t)m->nsites;
	return s;
drop:
	m->info.sites_dropped++;
	return NULL;
}

size_t lw_model_nsites(const lw_model_t *m)
{
	return m->nsites;
}

const lw_model_site_t *lw_model_site_at(const lw_model_t *m, size_t i)
{
	return i < m->nsites ? m->sites[i] : NULL;
}

/* "handler+0x0 (x.c:40)" -> "handler": a site's function by its name. */
static void func_name(char *dst, size_t len, const char *func)
{
	size_t n = strcspn(func, "+ (");
	if (n >= len)
		n = len - 1;
	memcpy(dst, func, n);
	dst[n] = '\0';
}

void lw_model_site(lw_model_t *m, const lw_rec_site_t *rs)
{
	lw_model_site_t *s = site_get(m, rs->loop_id, rs->site_id);

	if (s == NULL)
		return;
	s->kind = rs->kind;
	copy_str(s->func, sizeof(s->func), rs->func);
	if (rs->name && rs->name[0])
		copy_str(s->name, sizeof(s->name), rs->name);
	else if (rs->func && rs->func[0])
		func_name(s->name, sizeof(s->name), rs->func);
	else if (rs->fn != 0)
		snprintf(s->name, sizeof(s->name), "0x%" PRIx64, rs->fn);
	else
		default_name(m, s);
}

/* ---- what happened ---- */

void lw_model_callback(lw_model_t *m, const lw_rec_callback_t *c)
{
	lw_model_site_t *s = site_get(m, c->loop_id, c->site_id);
	lw_model_loop_t *l = loop_get(m, c->loop_id);

	seen(m, c->start_ns, c->duration_ns);
	if (l != NULL) {
		l->records++;
		l->busy_from_records += c->duration_ns;
		if (c->kind == 1 /* LW_KIND_TIMER */)
			lw_hist_add(l->lag, c->lateness_ns);
	}
	if (s == NULL)
		return;
	if (c->duration_ns > lw_hist_max(&s->hist) || s->hist.count == 0)
		s->worst_start_ns = c->start_ns;
	lw_hist_add(&s->hist, c->duration_ns);
}

static lw_model_call_t *call_get(lw_model_site_t *s, uint32_t nr,
				 uint32_t fd_kind, const char *name)
{
	for (size_t i = 0; i < s->ncalls; i++)
		if (s->calls[i].nr == nr && s->calls[i].fd_kind == fd_kind)
			return &s->calls[i];
	if (s->ncalls == LW_MODEL_CALLS) {
		s->calls_dropped++;
		return NULL;
	}
	lw_model_call_t *c = &s->calls[s->ncalls++];
	memset(c, 0, sizeof(*c));
	c->nr = nr;
	c->fd_kind = fd_kind;
	if (name && name[0])
		copy_str(c->syscall, sizeof(c->syscall), name);
	else
		snprintf(c->syscall, sizeof(c->syscall), "syscall %" PRIu32,
			 nr);
	return c;
}

void lw_model_kevent(lw_model_t *m, const lw_rec_kevent_t *k)
{
	lw_model_loop_t *l = loop_get(m, k->loop_id);
	lw_model_site_t *s;

	seen(m, k->start_ns, k->duration_ns);
	if (l == NULL)
		return;
	if (k->kind == LW_BPF_EV_SPAN) {
		/* A slow iteration of a loop without rings: its callback. */
		lw_rec_callback_t c = {
			.loop_id = k->loop_id,
			.site_id = 0,
			.kind = LW_MODEL_KIND_ITERATION,
			.start_ns = k->start_ns,
			.duration_ns = k->duration_ns,
		};
		s = site_get(m, k->loop_id, 0);
		if (s != NULL) {
			if (c.duration_ns > lw_hist_max(&s->hist) ||
			    s->hist.count == 0)
				s->worst_start_ns = c.start_ns;
			lw_hist_add(&s->hist, c.duration_ns);
		}
		return;
	}
	if (k->site_id == 0 && l->has_ring) {
		l->slow_outside++;
		return;
	}
	s = site_get(m, k->loop_id, k->site_id);
	if (s == NULL)
		return;
	switch (k->kind) {
	case LW_BPF_EV_SYSCALL: {
		lw_model_call_t *c = call_get(s, k->nr, k->fd_kind, k->syscall);
		if (k->duration_ns > l->syscall_max_ns) {
			l->syscall_max_ns = k->duration_ns;
			l->syscall_max_site = k->site_id;
		}
		if (c == NULL)
			return;
		c->slow++;
		c->slow_total_ns += k->duration_ns;
		if (c->slow == 1 || k->duration_ns > c->slow_max_ns) {
			c->slow_max_ns = k->duration_ns;
			copy_str(c->fd_path, sizeof(c->fd_path), k->fd_path);
			stack_set(&c->stack, k->frames, k->nframes);
		}
		break;
	}
	case LW_BPF_EV_OFFCPU:
		s->offcpu_ns += k->duration_ns;
		break;
	case LW_BPF_EV_SAMPLE:
		s->samples++;
		/* One sample of the longest: the latest sample of a stall
		 * that is the longest so far. */
		if (s->sample.n == 0 || k->start_ns >= s->worst_start_ns)
			stack_set(&s->sample, k->frames, k->nframes);
		break;
	}
}

void lw_model_blocking(lw_model_t *m, const lw_rec_blocking_t *b)
{
	lw_model_site_t *s = site_get(m, b->loop_id, b->site_id);
	lw_model_loop_t *l = loop_get(m, b->loop_id);

	if (s == NULL || l == NULL)
		return;
	lw_model_call_t *c = call_get(s, b->nr, b->fd_kind, b->syscall);
	if (c == NULL)
		return;
	c->count = b->calls;
	c->total_ns = b->total_ns;
	c->max_ns = b->max_ns;
	if (b->max_ns > l->syscall_max_ns) {
		l->syscall_max_ns = b->max_ns;
		l->syscall_max_site = b->site_id;
	}
	if (c->slow == 0)
		stack_set(&c->stack, b->frames, b->nframes);
}

void lw_model_counters(lw_model_t *m, const lw_rec_counters_t *c)
{
	lw_model_loop_t *l = loop_get(m, c->loop_id);

	seen(m, c->now_ns, 0);
	if (l == NULL)
		return;
	if (!l->have_counters) {
		l->first = *c;
		l->have_counters = 1;
	}
	l->last = *c;
	if (c->pool_queued > l->pool_queued_max)
		l->pool_queued_max = c->pool_queued;
	if (c->pool_oldest_start_ns != 0 &&
	    c->now_ns > c->pool_oldest_start_ns &&
	    c->now_ns - c->pool_oldest_start_ns > l->pool_longest_ns)
		l->pool_longest_ns = c->now_ns - c->pool_oldest_start_ns;
	/* Losses are totals so far: the latest reading is the total. */
	uint64_t lost = 0;
	for (size_t i = 0; i < m->nloops; i++)
		if (m->loops[i].have_counters)
			lost += m->loops[i].last.lost_records;
	m->info.records_lost = lost;
	if (c->kernel_lost > m->info.kernel_lost)
		m->info.kernel_lost = c->kernel_lost;
}

void lw_model_header(lw_model_t *m, const lw_rec_header_t *h)
{
	lw_model_info_t *i = &m->info;

	i->pid = h->pid;
	copy_str(i->comm, sizeof(i->comm), h->comm);
	copy_str(i->version, sizeof(i->version), h->version);
	i->sources = h->sources;
	copy_str(i->rings_why, sizeof(i->rings_why), h->rings_why);
	copy_str(i->kprobes_why, sizeof(i->kprobes_why), h->kprobes_why);
	i->min_ns = h->min_ns;
	i->start_ns = h->mono_ns;
	i->real_ns = h->real_ns;
}

void lw_model_end(lw_model_t *m, const lw_rec_end_t *e)
{
	m->info.end_ns = e->end_ns;
	if (e->lost_records > m->info.records_lost)
		m->info.records_lost = e->lost_records;
	if (e->kernel_lost > m->info.kernel_lost)
		m->info.kernel_lost = e->kernel_lost;
	m->info.ended = 1;
}

void lw_model_item(lw_model_t *m, const lw_rec_item_t *it)
{
	switch (it->type) {
	case LW_REC_HEADER:
		lw_model_header(m, &it->u.header);
		break;
	case LW_REC_LOOP:
		lw_model_loop(m, &it->u.loop);
		break;
	case LW_REC_SITE:
		lw_model_site(m, &it->u.site);
		break;
	case LW_REC_CALLBACK:
		lw_model_callback(m, &it->u.callback);
		break;
	case LW_REC_KEVENT:
		lw_model_kevent(m, &it->u.kevent);
		break;
	case LW_REC_COUNTERS:
		lw_model_counters(m, &it->u.counters);
		break;
	case LW_REC_BLOCKING:
		lw_model_blocking(m, &it->u.blocking);
		break;
	case LW_REC_FATE:
		snprintf(m->info.fate, sizeof(m->info.fate), "%s",
			 it->u.fate.line ? it->u.fate.line : "");
		m->info.fate_end = it->u.fate.end;
		m->info.fate_flags = it->u.fate.flags;
		break;
	case LW_REC_END:
		lw_model_end(m, &it->u.end);
		break;
	}
}

/* ---- what it says ---- */

uint64_t lw_model_busy_ns(const lw_model_loop_t *l)
{
	if (!l->have_counters || l->last.busy_ns < l->first.busy_ns)
		return 0;
	return l->last.busy_ns - l->first.busy_ns;
}

double lw_model_utilization(const lw_model_loop_t *l)
{
	if (!l->have_counters || l->last.busy_ns < l->first.busy_ns ||
	    l->last.idle_ns < l->first.idle_ns)
		return -1;
	uint64_t busy = l->last.busy_ns - l->first.busy_ns;
	uint64_t idle = l->last.idle_ns - l->first.idle_ns;
	if (busy + idle == 0)
		return -1;
	return (double)busy / (double)(busy + idle);
}

double lw_model_share(const lw_model_t *m, const lw_model_site_t *s)
{
	const lw_model_loop_t *l = lw_model_loop_by_id(m, s->loop_id);
	uint64_t busy;

	if (l == NULL)
		return -1;
	/* The counters' busy time covers the interval between the first
	 * and the last reading; the records' sum covers every record.  The
	 * records are the better base when there are any: a share is then
	 * within one set of numbers and never above 1. */
	busy = l->records > 0 ? l->busy_from_records : lw_model_busy_ns(l);
	if (busy == 0)
		return -1;
	double share = (double)lw_hist_sum(&s->hist) / (double)busy;
	return share > 1 ? 1 : share;
}

const lw_model_call_t *lw_model_longest_call(const lw_model_site_t *s)
{
	const lw_model_call_t *best = NULL;

	for (size_t i = 0; i < s->ncalls; i++)
		if (best == NULL ||
		    lw_model_call_max(&s->calls[i]) > lw_model_call_max(best))
			best = &s->calls[i];
	return best;
}

static int worse(const void *a, const void *b)
{
	const lw_model_site_t *x = *(const lw_model_site_t *const *)a;
	const lw_model_site_t *y = *(const lw_model_site_t *const *)b;
	uint64_t tx = lw_hist_sum(&x->hist), ty = lw_hist_sum(&y->hist);

	if (tx != ty)
		return tx < ty ? 1 : -1;
	if (x->hist.max != y->hist.max)
		return x->hist.max < y->hist.max ? 1 : -1;
	if (x->loop_id != y->loop_id)
		return x->loop_id < y->loop_id ? -1 : 1;
	return x->site_id < y->site_id ? -1 : x->site_id > y->site_id;
}

size_t lw_model_sorted(const lw_model_t *m, const lw_model_site_t **out,
		       size_t max)
{
	size_t n = m->nsites;
	const lw_model_site_t **all = malloc((n ? n : 1) * sizeof(*all));

	if (all == NULL)
		return 0;
	for (size_t i = 0; i < n; i++)
		all[i] = m->sites[i];
	qsort(all, n, sizeof(*all), worse);
	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof(*out));
	free(all);
	return n;
}
