/*
 * internal.h - what the modules of probe/ share and nobody else sees.
 *
 * Names: lw__* for internal functions with external linkage, static helpers
 * unprefixed.  probe/ depends on libc (and pthreads) only.
 *
 * Dispatch: every user callback runs between lw__call_begin() and
 * lw__call_end(), each module from one static dispatch function per kind.
 * That pair is where the ring (next issue) times each invocation.
 * Internal plumbing (the wake-up eventfd, a connection's socket watcher, a
 * deferrable's timeout) uses the *_raw variants, which are not sites: the
 * module dispatches the user's callback itself, with its own kind.
 */
#ifndef LW_INTERNAL_H
#define LW_INTERNAL_H

#include "loopwatch.h"
#include "clock.h"
#include "list.h"
#include "ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define LW__SITE_NAME_MAX 64
#define LW__MAX_EVENTS 1024 /* epoll events taken per wait */

#define LW__UNUSED(x) ((void)(x))
#define LW__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A site: one (callback, kind) pair of one loop. */
typedef struct lw__site {
	uint32_t id; /* 1-based index into loop->sites */
	uint8_t kind; /* lw_kind_t */
	lw_fn fn;
	uint64_t calls;
	char name[LW__SITE_NAME_MAX]; /* "" when unnamed */
} lw__site_t;

/* One deferred call: next_tick, schedule and post entries. */
typedef struct lw__call {
	lw_cb cb;
	void *arg;
	lw__site_t *site; /* resolved site, or NULL (see kind) */
	int kind; /* 0: internal, not a site; else the site's lw_kind_t */
} lw__call_t;

/* A growable array of calls, reused across iterations (no steady-state
 * allocation). */
typedef struct lw__callvec {
	lw__call_t *v;
	uint32_t len, cap;
} lw__callvec_t;

/* A timer heap entry: the deadline is cached here so sifting touches only
 * the array, not the timers (libev's trick). */
typedef struct lw__heap_entry {
	uint64_t due;
	uint64_t seq;
	lw_timer_t *timer;
} lw__heap_entry_t;

/*
 * A library-allocated object the loop must release in lw_loop_free() if the
 * user did not (servers, connections, queues, ...).
 */
typedef struct lw__handle {
	lw__list_t node;
	void (*release)(struct lw__handle *h);
} lw__handle_t;

typedef struct lw__pool lw__pool_t;

struct lw_loop {
	char name[LW__SITE_NAME_MAX];
	void *data;

	int epfd;
	int wakefd; /* eventfd: posts, defer completions, lw_stop() */
	lw_io_t wake_io;

	pthread_t thread; /* valid while on_thread is set */
	atomic_int running; /* inside lw_run() or lw_run_once() */
	atomic_int on_thread; /* `thread` is set */
	atomic_int stop_flag;

	uint64_t now; /* cached CLOCK_MONOTONIC ns */
	/* The time the last wait's timeout was counted from (after the
	 * iteration's callbacks): for the tests. */
	uint64_t wait_from;
	lw__clock_t clock; /* cheap timestamps (TSC where it is invariant) */
	lw__ring_t *ring; /* NULL when off */
	pthread_t ring_thread; /* the thread whose tid the ring holds */
	int ring_thread_set;

	/* Timers: a 4-ary min-heap, 1-based (index 0 unused). */
	lw__heap_entry_t *heap;
	uint32_t heap_len, heap_cap;
	uint64_t timer_seq;

	/* fd watchers, indexed by fd. */
	lw_io_t **ios;
	uint32_t ios_cap;
	uint32_t active_ios;
	/* The epoll batch being dispatched, so lw_io_stop() can cancel the
	 * events it still holds for a watcher. */
	struct epoll_event *events;
	int nevents, event_index;

	/* next_tick: ticks queued now run next iteration. */
	lw__callvec_t ticks, ticks_running;

	/* Posts from any thread. */
	pthread_mutex_t post_lock;
	lw__callvec_t posts, posts_running;
	atomic_int wake_pending;

	/* Sites: dense array, plus an open-addressing hash on (fn, kind). */
	lw__site_t **sites;
	uint32_t nsites, sites_cap;
	uint32_t *site_hash; /* site ids, 0 = empty */
	uint32_t site_hash_cap; /* power of two */
	lw__site_t
		*site_mru; /* the last site looked up: most lookups repeat it */
	lw__site_t fallback_site; /* used when a site cannot be allocated */
	struct lw__site_name *names;
	uint32_t nnames, names_cap;

	/* The worker pool, started at the first lw_defer(). */
	pthread_mutex_t pool_lock; /* guards starting it */
	lw__pool_t *_Atomic pool;
	unsigned defer_threads;

	/* Library objects not yet released. */
	lw__list_t handles;

	/* Counters. */
	uint64_t iterations;
	uint64_t callbacks;
	uint64_t busy_ns, idle_ns;
	uint64_t busy_mark; /* when the last wait returned, 0 if not running */
};

struct lw__site_name {
	lw_fn fn;
	char name[LW__SITE_NAME_MAX];
};

/* ---- sites and dispatch ---- */

/* Publish every site to a ring that was just (re)made. */
void lw__sites_publish(lw_loop_t *loop);

/* Find or make the site for (kind, fn).  Never NULL (falls back to a shared
 * "unknown" site when out of memory).  Loop thread. */
lw__site_t *lw__site_get(lw_loop_t *loop, int kind, lw_fn fn);

/*
 * Get a site cached in *slot, re-interning only when the callback changed.
 * Handles keep their site so that restarting a timer costs no hash lookup.
 */
static inline lw__site_t *lw__site_cached(lw_loop_t *loop, void **slot,
					  int kind, lw_fn fn)
{
	lw__site_t *s = (lw__site_t *)*slot;
	if (s == NULL || s->fn != fn || s->kind != kind) {
		s = lw__site_get(loop, kind, fn);
		*slot = s;
	}
	return s;
}

/*
 * Bracket one callback invocation.  `due` is the time the callback was due
 * (timers), or 0; the lateness is start - due.  These are the only place
 * where a callback's timing is taken: they write its record to the ring.
 */
static inline void lw__call_begin_(lw_loop_t *loop, lw__site_t *site,
				   uint64_t due, int chained)
{
	site->calls++;
	loop->callbacks++;
#ifndef LW_NO_RING
	if (loop->ring != NULL)
		lw__ring_begin(loop->ring, site->id, site->kind, due, chained);
#else
	LW__UNUSED(due);
	LW__UNUSED(chained);
#endif
}

static inline void lw__call_begin(lw_loop_t *loop, lw__site_t *site,
				  uint64_t due)
{
	lw__call_begin_(loop, site, due, 0);
}

/* For the loop's own dispatch loops only (see ring.h): the previous
 * callback's end may serve as this one's start. */
static inline void lw__call_begin_chained(lw_loop_t *loop, lw__site_t *site,
					  uint64_t due)
{
	lw__call_begin_(loop, site, due, 1);
}

static inline void lw__call_end(lw_loop_t *loop, lw__site_t *site)
{
	LW__UNUSED(site);
#ifndef LW_NO_RING
	if (loop->ring != NULL)
		lw__ring_end(loop->ring);
#endif
}

/* Internal work that may take time runs between callbacks: the next
 * callback's start must be read from the clock (see ring.h). */
static inline void lw__gap(lw_loop_t *loop)
{
#ifndef LW_NO_RING
	if (loop->ring != NULL)
		lw__ring_gap(loop->ring);
#else
	LW__UNUSED(loop);
#endif
}

void lw__sites_free(lw_loop_t *loop);

/* ---- ticks and posts ---- */

/* Queue an internal call for the next iteration; not a site. */
int lw__next_tick_raw(lw_loop_t *loop, lw_cb cb, void *arg);
/* Post an internal call from any thread; not a site. */
int lw__post_raw(lw_loop_t *loop, lw_cb cb, void *arg);
/* Wake the loop from any thread. */
void lw__wakeup(lw_loop_t *loop);
/* Run the ticks queued before this iteration; returns how many ran. */
int lw__run_ticks(lw_loop_t *loop);
int lw__run_posts(lw_loop_t *loop);
void lw__calls_free(lw_loop_t *loop);

/* ---- timers ---- */

/* Start a timer whose callback is internal (not a site). */
int lw__timer_start_raw(lw_timer_t *timer, lw_timer_cb cb, uint64_t timeout_ns,
			uint64_t repeat_ns);
/* ns until the next timer is due, or -1 if there is none. */
int64_t lw__timers_next(const lw_loop_t *loop);
int lw__run_timers(lw_loop_t *loop);

/* ---- io ---- */

/* Start a watcher whose callback is internal (not a site). */
int lw__io_start_raw(lw_io_t *io, int events, lw_io_cb cb);
/* Wait up to timeout_ns (-1 forever) and dispatch; returns callbacks run. */
int lw__poll(lw_loop_t *loop, int64_t timeout_ns);

/* ---- pool ---- */

void lw__pool_free(lw_loop_t *loop);
/* lw_defer() for internal work (name resolution): the completion is not a
 * site. */
int lw__defer_raw(lw_loop_t *loop, lw_work_fn op, lw_done_cb done, void *arg);
/* Run the completions of finished defers; returns how many ran. */
int lw__pool_drain(lw_loop_t *loop);

/* ---- handles ---- */

static inline void lw__handle_add(lw_loop_t *loop, lw__handle_t *h,
				  void (*release)(lw__handle_t *))
{
	h->release = release;
	lw__list_insert_tail(&loop->handles, &h->node);
}

static inline void lw__handle_remove(lw__handle_t *h)
{
	lw__list_remove(&h->node);
}

/* ---- misc ---- */

/* Grow *v (element size `size`) to hold at least `need`; 0 or -ENOMEM. */
int lw__grow(void **v, uint32_t *cap, uint32_t need, size_t size);

#define LW__CONTAINER_OF(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))

#endif /* LW_INTERNAL_H */
