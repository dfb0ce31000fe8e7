/*
 * site.c - the site table: one entry per (callback, kind) pair of a loop.
 *
 * Sites are interned when a callback is registered (or, for work posted from
 * other threads, when it is first dispatched), so that dispatch itself costs
 * a counter increment.  Ids are dense and 1-based, so that a reader (the
 * ring, next issue) can index a table with them.  The table only grows: a
 * site lives as long as its loop.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *lw_kind_name(int kind)
{
	return lw__kind_name(kind);
}

/* A 64-bit mix of the key; the low bits index the table. */
static lw__site_t *lookup(lw_loop_t *loop, int kind, lw_fn fn);

/* Describe a site in the loop's ring, so readers can name it. */
static void publish(lw_loop_t *loop, const lw__site_t *s)
{
	if (loop->ring != NULL)
		lw__ring_site(loop->ring, s->id, s->kind,
			      (uint64_t)(uintptr_t)s->fn, s->name);
}

void lw__sites_publish(lw_loop_t *loop)
{
	for (uint32_t id = 1; id <= loop->nsites; id++)
		publish(loop, loop->sites[id - 1]);
}

static uint32_t site_hash(lw_fn fn, int kind)
{
	uint64_t x = (uint64_t)(uintptr_t)fn ^ ((uint64_t)kind << 56);
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (uint32_t)x;
}

static const char *name_for(const lw_loop_t *loop, lw_fn fn)
{
	for (uint32_t i = 0; i < loop->nnames; i++)
		if (loop->names[i].fn == fn)
			return loop->names[i].name;
	return NULL;
}

/* Rebuild the hash at twice the size; keeps the load under one half. */
static int rehash(lw_loop_t *loop)
{
	uint32_t cap = loop->site_hash_cap ? loop->site_hash_cap * 2 : 64;
	uint32_t *h = calloc(cap, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	for (uint32_t id = 1; id <= loop->nsites; id++) {
		lw__site_t *s = loop->sites[id - 1];
		uint32_t i = site_hash(s->fn, s->kind) & (cap - 1);
		while (h[i] != 0)
			i = (i + 1) & (cap - 1);
		h[i] = id;
	}
	free(loop->site_hash);
	loop->site_hash = h;
	loop->site_hash_cap = cap;
	return 0;
}

lw__site_t *lw__site_get(lw_loop_t *loop, int kind, lw_fn fn)
{
	/* Registrations come in runs of one callback (a server's accepted
	 * connections, a batch of timers): check the last one first. */
	lw__site_t *mru = loop->site_mru;
	if (mru != NULL && mru->fn == fn && mru->kind == kind)
		return mru;
	lw__site_t *s = lookup(loop, kind, fn);
	if (s != &loop->fallback_site)
		loop->site_mru = s;
	return s;
}

static lw__site_t *lookup(lw_loop_t *loop, int kind, lw_fn fn)
{
	if (loop->site_hash_cap != 0) {
		uint32_t mask = loop->site_hash_cap - 1;
		uint32_t i = site_hash(fn, kind) & mask;
		for (uint32_t id; (id = loop->site_hash[i]) != 0;
		     i = (i + 1) & mask) {
			lw__site_t *s = loop->sites[id - 1];
			if (s->fn == fn && s->kind == kind)
				return s;
		}
	}

	/* Not seen yet: make it.  Grow first so the insert cannot fail. */
	if ((loop->nsites + 1) * 2 > loop->site_hash_cap && rehash(loop) != 0)
		return &loop->fallback_site;
	if (lw__grow((void **)&loop->sites, &loop->sites_cap, loop->nsites + 1,
		     sizeof(*loop->sites)) != 0)
		return &loop->fallback_site;
	lw__site_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return &loop->fallback_site;
	s->id = ++loop->nsites;
	s->kind = (uint8_t)kind;
	s->fn = fn;
	const char *name = name_for(loop, fn);
	if (name != NULL)
		snprintf(s->name, sizeof(s->name), "%s", name);
	loop->sites[s->id - 1] = s;

	uint32_t mask = loop->site_hash_cap - 1;
	uint32_t i = site_hash(fn, kind) & mask;
	while (loop->site_hash[i] != 0)
		i = (i + 1) & mask;
	loop->site_hash[i] = s->id;
	publish(loop, s);
	return s;
}

int lw_site_name(lw_loop_t *loop, lw_fn fn, const char *name)
{
	if (loop == NULL || fn == NULL)
		return -EINVAL;

	uint32_t i;
	for (i = 0; i < loop->nnames; i++)
		if (loop->names[i].fn == fn)
			break;
	if (i == loop->nnames) {
		if (name == NULL)
			return 0;
		int err = lw__grow((void **)&loop->names, &loop->names_cap,
				   loop->nnames + 1, sizeof(*loop->names));
		if (err)
			return err;
		loop->names[loop->nnames++].fn = fn;
	}
	if (name == NULL) {
		loop->names[i] = loop->names[--loop->nnames];
	} else {
		snprintf(loop->names[i].name, sizeof(loop->names[i].name), "%s",
			 name);
	}

	/* Sites already seen take the new name too. */
	for (uint32_t id = 1; id <= loop->nsites; id++) {
		lw__site_t *s = loop->sites[id - 1];
		if (s->fn == fn) {
			snprintf(s->name, sizeof(s->name), "%s",
				 name ? name : "");
			publish(loop, s);
		}
	}
	return 0;
}

void lw_site_foreach(lw_loop_t *loop,
		     void (*each)(const lw_site_info_t *site, void *arg),
		     void *arg)
{
	if (loop == NULL || each == NULL)
		return;
	for (uint32_t id = 1; id <= loop->nsites; id++) {
		const lw__site_t *s = loop->sites[id - 1];
		lw_site_info_t info = {
			.id = s->id,
			.kind = s->kind,
			.fn = s->fn,
			.name = s->name[0] ? s->name : NULL,
			.calls = s->calls,
		};
		each(&info, arg);
	}
}

void lw__sites_free(lw_loop_t *loop)
{
	for (uint32_t i = 0; i < loop->nsites; i++)
		free(loop->sites[i]);
	free(loop->sites);
	free(loop->site_hash);
	free(loop->names);
	loop->sites = NULL;
	loop->site_hash = NULL;
	loop->site_mru = NULL;
	loop->names = NULL;
	loop->nsites = loop->sites_cap = loop->site_hash_cap = 0;
	loop->nnames = loop->names_cap = 0;
}
