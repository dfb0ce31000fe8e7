/*
 * probe_api.c - lw_probe_*: the ring for event loops that are not ours.
 *
 * A probe is a ring plus a small site table of its own; it shares the
 * writer (ring.h) and the clock (clock.h) with the reactor, so a reader
 * cannot tell a probed loop from one of ours except by the header's
 * LW_RING_F_PROBE flag.  Sites are (kind, fn) pairs with dense ids, looked
 * up in a small open-addressing table: declaring a site is rare (once per
 * callback function), reporting one is an index.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe_site {
	lw_fn fn;
	int kind;
	char name[LW_RING_NAME_MAX];
} probe_site_t;

struct lw_probe {
	lw__clock_t clock;
	lw__ring_t *ring; /* NULL: the probe is off */
	uint64_t wait_enter_ns;
	probe_site_t *sites; /* id - 1 -> site */
	uint32_t nsites, sites_cap;
	uint32_t *hash; /* ids, 0 = empty */
	uint32_t hash_cap; /* power of two */
};

static uint32_t hash_of(lw_fn fn, int kind)
{
	uint64_t x = (uint64_t)(uintptr_t)fn ^ ((uint64_t)kind << 56);
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ULL;
	return (uint32_t)(x >> 32);
}

int lw_probe_new(lw_probe_t **out, const char *name, unsigned capacity)
{
	if (out == NULL)
		return -EINVAL;
	lw_probe_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	lw__clock_init(&p->clock);
	/* No ring (LOOPWATCH=off, or it could not be made) leaves a probe
	 * whose calls do nothing: the loop keeps one code path. */
	if (lw__ring_new(&p->ring, name ? name : "probe", capacity,
			 LW_RING_F_PROBE, &p->clock) == 0 &&
	    p->ring != NULL)
		lw__ring_set_tid(p->ring);
	*out = p;
	return 0;
}

void lw_probe_free(lw_probe_t *p)
{
	if (p == NULL)
		return;
	lw__ring_free(p->ring);
	free(p->sites);
	free(p->hash);
	free(p);
}

int lw_probe_enabled(const lw_probe_t *p)
{
	return p != NULL && p->ring != NULL;
}

/* A forked child must not write its parent's ring (see ring.h). */
static void check_fork(lw_probe_t *p)
{
	if (p->ring == NULL || !lw__ring_stale(p->ring))
		return;
	if (lw__ring_renew(p->ring) != 0) {
		lw__ring_free(p->ring);
		p->ring = NULL;
		return;
	}
	lw__ring_set_tid(p->ring);
	for (uint32_t id = 1; id <= p->nsites; id++) {
		const probe_site_t *s = &p->sites[id - 1];
		lw__ring_site(p->ring, id, s->kind, (uint64_t)(uintptr_t)s->fn,
			      s->name);
	}
}

static int rehash(lw_probe_t *p)
{
	uint32_t cap = p->hash_cap ? p->hash_cap * 2 : 64;
	uint32_t *h = calloc(cap, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	for (uint32_t id = 1; id <= p->nsites; id++) {
		const probe_site_t *s = &p->sites[id - 1];
		uint32_t i = hash_of(s->fn, s->kind) & (cap - 1);
		while (h[i] != 0)
			i = (i + 1) & (cap - 1);
		h[i] = id;
	}
	free(p->hash);
	p->hash = h;
	p->hash_cap = cap;
	return 0;
}

uint32_t lw_probe_site(lw_probe_t *p, int kind, lw_fn fn, const char *name)
{
	if (p == NULL || p->ring == NULL || fn == NULL || kind <= 0 ||
	    kind >= LW_KIND_MAX_)
		return 0;
	check_fork(p);
	if (p->ring == NULL)
		return 0;

	if (p->hash_cap != 0) {
		uint32_t mask = p->hash_cap - 1;
		for (uint32_t i = hash_of(fn, kind) & mask, id;
		     (id = p->hash[i]) != 0; i = (i + 1) & mask) {
			probe_site_t *s = &p->sites[id - 1];
			if (s->fn == fn && s->kind == kind) {
				/* A new name for a known site renames it. */
				if (name != NULL &&
				    strncmp(s->name, name, sizeof(s->name))) {
					snprintf(s->name, sizeof(s->name), "%s",
						 name);
					lw__ring_site(p->ring, id, kind,
						      (uint64_t)(uintptr_t)fn,
						      s->name);
				}
				return id;
			}
		}
	}

	if ((p->nsites + 1) * 2 > p->hash_cap && rehash(p) != 0)
		return 0;
	if (lw__grow((void **)&p->sites, &p->sites_cap, p->nsites + 1,
		     sizeof(*p->sites)) != 0)
		return 0;
	uint32_t id = ++p->nsites;
	probe_site_t *s = &p->sites[id - 1];
	s->fn = fn;
	s->kind = kind;
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
	uint32_t mask = p->hash_cap - 1, i = hash_of(fn, kind) & mask;
	while (p->hash[i] != 0)
		i = (i + 1) & mask;
	p->hash[i] = id;
	lw__ring_site(p->ring, id, kind, (uint64_t)(uintptr_t)fn, s->name);
	return id;
}

void lw_probe_begin(lw_probe_t *p, uint32_t site, uint64_t due_ns)
{
	if (p == NULL || p->ring == NULL)
		return;
	uint32_t kind = site >= 1 && site <= p->nsites
				? (uint32_t)p->sites[site - 1].kind
				: LW_KIND_PROBE;
	/* Not chained: the foreign loop's work between callbacks is
	 * unknown to us, so every start is read from the clock. */
	lw__ring_begin(p->ring, site, kind, due_ns, 0);
}

void lw_probe_end(lw_probe_t *p)
{
	if (p == NULL || p->ring == NULL || p->ring->depth == 0)
		return;
	lw__ring_end(p->ring);
}

void lw_probe_wait_enter(lw_probe_t *p)
{
	if (p == NULL || p->ring == NULL)
		return;
	check_fork(p);
	if (p->ring == NULL)
		return;
	p->wait_enter_ns = lw__clock_ns(&p->clock, lw__clock_raw(&p->clock));
	lw__ring_wait_enter(p->ring, p->wait_enter_ns);
}

void lw_probe_wait_exit(lw_probe_t *p)
{
	if (p == NULL || p->ring == NULL)
		return;
	uint64_t raw, ns = lw__clock_rebase(&p->clock, &raw);
	uint64_t enter = p->wait_enter_ns ? p->wait_enter_ns : ns;
	lw__ring_wait_exit(p->ring, enter, ns, raw);
	p->wait_enter_ns = 0;
}
