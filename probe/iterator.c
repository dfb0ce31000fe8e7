/*
 * iterator.c - EM::Iterator: a callback over items 0..n-1 with a limit on
 * how many are in flight at once.
 *
 * Items start only from step(), an internal tick, never from inside the
 * user's calls: lw_iterator_next() just counts and makes sure a step() is
 * queued.  A step() starts as many items as there were free slots when it
 * began, so an item that finishes synchronously frees its slot for the next
 * iteration, and a long synchronous run still lets the loop poll I/O between
 * items (as EM's next_tick-driven workers do).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct lw_iterator {
	lw__handle_t handle;
	lw_loop_t *loop;
	size_t n; /* items */
	size_t started; /* items whose each() was called: the next index */
	size_t finished; /* lw_iterator_next() calls */
	unsigned concurrency;
	unsigned in_flight; /* started - finished */
	lw_iterator_each_cb each;
	lw_iterator_done_cb done;
	void *arg;
	void *each_site, *done_site;
	/*
	 * A step() is queued or running.  It stays set while step() runs,
	 * so lw_iterator_next() from inside each() queues nothing: step()
	 * decides at its end whether another is needed.
	 */
	int scheduled;
};

/* lw_loop_free() releasing an iterator that had not finished. */
static void release_from_loop(lw__handle_t *h)
{
	free(LW__CONTAINER_OF(h, lw_iterator_t, handle));
}

/* The one place where the per-item callback runs. */
static void dispatch_each(lw_iterator_t *it, size_t index)
{
	lw_loop_t *loop = it->loop;
	lw__site_t *site = lw__site_cached(loop, &it->each_site,
					   LW_KIND_ITERATOR, LW_FN(it->each));

	lw__call_begin(loop, site, 0);
	it->each(it, index, it->arg);
	lw__call_end(loop, site);
}

/* The one place where the completion callback runs. */
static void dispatch_done(lw_iterator_t *it)
{
	lw_loop_t *loop = it->loop;
	lw__site_t *site = lw__site_cached(loop, &it->done_site,
					   LW_KIND_ITERATOR, LW_FN(it->done));

	lw__call_begin(loop, site, 0);
	it->done(it, it->arg);
	lw__call_end(loop, site);
}

static void step(lw_loop_t *loop, void *arg)
{
	lw_iterator_t *it = arg;
	unsigned slots = it->concurrency - it->in_flight;

	for (;;) {
		while (slots > 0 && it->started < it->n) {
			size_t index = it->started++;

			it->in_flight++;
			slots--;
			dispatch_each(it, index);
		}

		if (it->finished == it->n) {
			if (it->done != NULL)
				dispatch_done(it);
			lw__handle_remove(&it->handle);
			free(it);
			return;
		}
		if (it->in_flight == it->concurrency || it->started == it->n) {
			it->scheduled = 0;
			return;
		}
		/* Slots freed while we ran are filled on a later iteration. */
		if (lw__next_tick_raw(loop, step, it) == 0)
			return;
		/* No memory for a tick: fill them now rather than stall. */
		slots = it->concurrency - it->in_flight;
	}
}

int lw_iterator_start(lw_loop_t *loop, size_t n, unsigned concurrency,
		      lw_iterator_each_cb each, lw_iterator_done_cb done,
		      void *arg, lw_iterator_t **out)
{
	lw_iterator_t *it;
	int r;

	if (loop == NULL || each == NULL || concurrency == 0)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		return -ENOMEM;
	it->loop = loop;
	it->n = n;
	it->concurrency = concurrency;
	it->each = each;
	it->done = done;
	it->arg = arg;
	r = lw__next_tick_raw(loop, step, it);
	if (r < 0) {
		free(it);
		return r;
	}
	it->scheduled = 1;
	lw__handle_add(loop, &it->handle, release_from_loop);
	if (out != NULL)
		*out = it;
	return 0;
}

int lw_iterator_next(lw_iterator_t *it)
{
	if (it == NULL || it->in_flight == 0)
		return -EINVAL;
	it->in_flight--;
	it->finished++;
	/* A step() is needed to start another item or to finish. */
	if (!it->scheduled && (it->started < it->n || it->finished == it->n)) {
		int r = lw__next_tick_raw(it->loop, step, it);

		if (r < 0) {
			it->in_flight++;
			it->finished--;
			return r;
		}
		it->scheduled = 1;
	}
	return 0;
}

unsigned lw_iterator_in_flight(const lw_iterator_t *it)
{
	return it == NULL ? 0 : it->in_flight;
}
