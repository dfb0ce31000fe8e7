/*
 * ring.h - the writer side of the ring (the ABI is include/loopwatch_ring.h).
 *
 * One lw__ring_t per loop (or per lw_probe_t).  Only the loop's thread calls
 * the inline functions below; they never block, never lock, never allocate
 * and never read anything a reader writes (readers write nothing).
 *
 * Timing: one timestamp per callback boundary.  The end of a callback is
 * read from the clock and kept as the "cursor"; when the loop's own dispatch
 * loops (timers, ticks, posts, fd watchers, defer completions) run the next
 * callback right after, it takes the cursor as its start instead of reading
 * the clock again.  Every other begin (callbacks run by modules: a
 * connection's on_data after its recv(), a deferrable's callbacks) reads
 * the clock.  Anything that may take time clears the cursor: the start of an
 * iteration, internal plumbing run from a dispatch loop, and every begin (so
 * a nested callback reads a fresh start).  After the wait, the cursor is the
 * time the wait returned.
 *
 * Nesting: a callback may run inside another (lw_schedule() on the loop
 * thread, a deferrable resolved from a callback).  Each gets its own record;
 * the outer one's duration includes the inner one.  The current-callback
 * slot shows the innermost and is restored to the outer one when it ends.
 */
#ifndef LW_RING_H
#define LW_RING_H

#include "clock.h"
#include "loopwatch_ring.h"

#include <stdint.h>

#define LW__RING_DEPTH 16 /* nested callbacks recorded; deeper ones are not */

typedef struct lw__frame {
	uint64_t start_raw;
	uint64_t start_ns;
	uint64_t due; /* timers: deadline (ns); else 0 */
	uint32_t site;
	uint32_t kind;
} lw__frame_t;

typedef struct lw__ring {
	/* Hot: touched by every callback. */
	struct lw_ring_header *hdr;
	struct lw_ring_record *records;
	uint64_t mask; /* capacity - 1 */
	uint64_t head; /* the writer's copy of hdr->head */
	lw__clock_t *clock; /* the owner's clock (rebased from here too) */
	uint64_t cursor_raw; /* the last boundary; valid if cursor_valid */
	uint64_t cursor_ns; /* the same instant in ns */
	int cursor_valid;
	int depth; /* callbacks open now (may exceed LW__RING_DEPTH) */
	lw__frame_t frames[LW__RING_DEPTH];

	/* Cold. */
	struct lw_ring_site *sites;
	uint32_t site_capacity;
	uint32_t nsites; /* published */
	uint64_t last_exit_ns; /* end of the last wait, for busy time */
	uint64_t busy_ns, idle_ns, iterations;
	int fd;
	void *map;
	size_t size;
	unsigned fork_gen; /* lw__fork_gen when made */
	/* The process's rings, for the fork handler (ring.c). */
	struct lw__ring *fork_next, *fork_prev;
	/* What is needed to make it again in a forked child. */
	char name[LW_RING_NAME_MAX];
	uint32_t capacity, flags;
} lw__ring_t;

/*
 * Make a ring: memfd, size, seals, mapping, header.  `capacity` 0 takes
 * LOOPWATCH_RING_SIZE or the default.  Returns 0 and NULL in *out when
 * LOOPWATCH=off; -errno if the ring cannot be made.
 */
int lw__ring_new(lw__ring_t **out, const char *name, uint32_t capacity,
		 uint32_t flags, lw__clock_t *clock);
void lw__ring_free(lw__ring_t *r);

/* 1 if the environment says LOOPWATCH=off. */
int lw__ring_disabled_by_env(void);

/* Publish a site, or rename one already published.  Sites past the table's
 * capacity are not described (records still carry their ids). */
void lw__ring_site(lw__ring_t *r, uint32_t id, int kind, uint64_t fn,
		   const char *name);

/* Record the calling thread as the loop's thread. */
void lw__ring_set_tid(lw__ring_t *r);

/* After fork(), a child must not write its parent's ring: 1 if this ring
 * was made before a fork in this (child) process.  Until the child's loop
 * renews it, at its next iteration, the child writes into private memory
 * that the fork handler put in place of the mapping (ring.c). */
extern unsigned lw__fork_gen;
static inline int lw__ring_stale(const lw__ring_t *r)
{
	return r->fork_gen != __atomic_load_n(&lw__fork_gen, __ATOMIC_RELAXED);
}

/* Make a forked child's own ring in place of the inherited one: a fresh
 * memfd with the same name and capacity, and no sites (the caller
 * republishes them).  Returns 0 or -errno (then the ring is off). */
int lw__ring_renew(lw__ring_t *r);

/* ---- the hot path ---- */

/* 64-bit stores into fields the ABI declares narrower (two u32, or u32 +
 * u16 + u16, side by side and 8-aligned): fewer stores on the hot path. */
typedef uint64_t __attribute__((may_alias)) lw__u64_alias;

/* Fill the current-callback slot.  `replacing`: a callback is in the slot
 * now (nesting), so the site is cleared first; otherwise a reader could pair
 * the new start with the old site (loopwatch_ring.h).  cur_site and cur_kind
 * go in one store (release), cur_site in its low half. */
static inline void lw__ring_slot(struct lw_ring_header *h, uint64_t start_ns,
				 uint32_t kind, uint32_t site, int replacing)
{
	if (replacing) {
		__atomic_store_n(&h->cur_site, 0, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	}
	__atomic_store_n(&h->cur_start_ns, start_ns, __ATOMIC_RELAXED);
	__atomic_store_n((lw__u64_alias *)&h->cur_site,
			 (uint64_t)site | ((uint64_t)kind << 32),
			 __ATOMIC_RELEASE);
}

/* `chained`: the caller is one of the loop's own dispatch loops, so nothing
 * but loop bookkeeping ran since the cursor was set and it may serve as
 * this callback's start. */
static inline void lw__ring_begin(lw__ring_t *r, uint32_t site, uint32_t kind,
				  uint64_t due, int chained)
{
	uint64_t start, start_ns;
	if (chained && r->cursor_valid) {
		start = r->cursor_raw;
		start_ns = r->cursor_ns;
	} else {
		start = lw__clock_raw(r->clock);
		start_ns = lw__clock_ns(r->clock, start);
	}
	r->cursor_valid = 0;
	int d = r->depth++;
	if (d >= LW__RING_DEPTH)
		return;
	lw__frame_t *f = &r->frames[d];
	f->start_raw = start;
	f->start_ns = start_ns;
	f->due = due;
	f->site = site;
	f->kind = kind;
	lw__ring_slot(r->hdr, f->start_ns, kind, site, d > 0);
}

static inline void lw__ring_end(lw__ring_t *r)
{
	uint64_t now = lw__clock_raw(r->clock);
	int d = --r->depth;
	if (d >= LW__RING_DEPTH || d < 0) {
		if (d < 0)
			r->depth = 0;
		r->cursor_raw = now;
		r->cursor_ns = lw__clock_ns(r->clock, now);
		r->cursor_valid = 1;
		return;
	}
	const lw__frame_t *f = &r->frames[d];
	uint64_t duration =
		lw__clock_since_ns(r->clock, f->start_raw, &now, f->start_ns);
	r->cursor_raw = now;
	r->cursor_ns = f->start_ns + duration;
	r->cursor_valid = 1;

	uint64_t lateness = 0, flags = 0;
	if (f->due != 0 && f->start_ns > f->due) {
		lateness = f->start_ns - f->due;
		if (lateness > UINT32_MAX) {
			lateness = UINT32_MAX;
			flags = LW_REC_LATENESS_SATURATED;
		}
	}

	uint64_t j = r->head;
	struct lw_ring_record *rec = &r->records[j & r->mask];
	/* Pairs with the reader's acquire fence after its copy: a reader that
	 * sees any of these stores also sees head >= j (loopwatch_ring.h).
	 * Four stores: start, duration, seq|site, lateness|kind|flags. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&rec->start_ns, f->start_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->duration_ns, duration, __ATOMIC_RELAXED);
	__atomic_store_n((lw__u64_alias *)&rec->seq,
			 (uint64_t)(uint32_t)j | ((uint64_t)f->site << 32),
			 __ATOMIC_RELAXED);
	__atomic_store_n((lw__u64_alias *)&rec->lateness_ns,
			 lateness | ((uint64_t)(uint16_t)f->kind << 32) |
				 (flags << 48),
			 __ATOMIC_RELAXED);
	r->head = j + 1;
	__atomic_store_n(&r->hdr->head, j + 1, __ATOMIC_RELEASE);

	if (d == 0) {
		__atomic_store_n(&r->hdr->cur_site, 0, __ATOMIC_RELEASE);
	} else {
		const lw__frame_t *o = &r->frames[d - 1];
		lw__ring_slot(r->hdr, o->start_ns, o->kind, o->site, 1);
	}
}

/* Time passes outside any callback (internal work): the next begin reads
 * the clock. */
static inline void lw__ring_gap(lw__ring_t *r)
{
	r->cursor_valid = 0;
}

/* The loop starts a run at `ns`: its busy time counts from here.  Without
 * it, the first wait of a run would count nothing before it (a callback
 * already due when the run starts would be left out), or, after an
 * earlier run, the caller's own time between the two runs. */
static inline void lw__ring_run_start(lw__ring_t *r, uint64_t ns)
{
	r->last_exit_ns = ns;
}

/* The loop enters its wait at `ns` (CLOCK_MONOTONIC). */
static inline void lw__ring_wait_enter(lw__ring_t *r, uint64_t ns)
{
	if (r->last_exit_ns != 0 && ns > r->last_exit_ns)
		r->busy_ns += ns - r->last_exit_ns;
	__atomic_store_n(&r->hdr->busy_ns, r->busy_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&r->hdr->wait_since_ns, ns, __ATOMIC_RELEASE);
}

/* The wait returned at `ns`, raw timestamp `raw` (a fresh rebase). */
static inline void lw__ring_wait_exit(lw__ring_t *r, uint64_t enter_ns,
				      uint64_t ns, uint64_t raw)
{
	if (ns > enter_ns)
		r->idle_ns += ns - enter_ns;
	r->iterations++;
	r->last_exit_ns = ns;
	r->cursor_raw = raw;
	r->cursor_ns = ns;
	r->cursor_valid = 1;
	__atomic_store_n(&r->hdr->idle_ns, r->idle_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&r->hdr->iterations, r->iterations, __ATOMIC_RELAXED);
	__atomic_store_n(&r->hdr->wait_since_ns, 0, __ATOMIC_RELEASE);
}

#endif /* LW_RING_H */
