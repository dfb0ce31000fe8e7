/*
 * deferrable.c - EM::Deferrable: a result that is pending, then succeeded or
 * failed exactly once, with callbacks and errbacks that may be added before
 * or after the outcome is known.
 *
 * The callbacks and errbacks wait in one list, in the order they were added,
 * each node saying which outcome it is for.  Resolving takes nodes off the
 * head one at a time and runs the matching ones, so a callback that adds
 * another callback, cancels one, or frees the deferrable always sees a
 * consistent list.  The optional timeout is an internal (raw) timer embedded
 * in the deferrable, so arming it allocates nothing.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

typedef struct deferrable_cbnode {
	lw__list_t node;
	lw_deferrable_cb cb;
	void *arg;
	uint64_t id;
	int errback; /* 1: runs on failure; 0: runs on success */
} deferrable_cbnode_t;

struct lw_deferrable {
	lw__handle_t handle;
	lw_loop_t *loop;
	lw_deferrable_state_t state;
	void *value; /* what it resolved with */
	void *data; /* the user's */
	lw__list_t cbs; /* deferrable_cbnode_t not yet run, in order added */
	uint64_t last_id; /* ids handed out so far; 0 is never an id */
	lw_timer_t timer; /* the timeout; raw, not a site */
	void *timeout_value;
	/*
	 * How many of our callbacks are running now (they nest when one adds
	 * a late callback that runs at once).  While it is not 0, freeing
	 * only sets `freeing`, and the outermost caller releases.
	 */
	unsigned depth;
	int resolving; /* inside resolve(): late callbacks are queued */
	int freeing; /* lw_deferrable_free() was called; run nothing more */
};

static void free_nodes(lw_deferrable_t *d)
{
	lw__list_t *pos, *tmp;

	lw__list_foreach_safe (pos, tmp, &d->cbs) {
		lw__list_remove(pos);
		free(LW__CONTAINER_OF(pos, deferrable_cbnode_t, node));
	}
}

/* lw_loop_free() releasing what the user did not: the loop's timers are
 * going away with it, so the timer is left alone. */
static void release_from_loop(lw__handle_t *h)
{
	lw_deferrable_t *d = LW__CONTAINER_OF(h, lw_deferrable_t, handle);

	free_nodes(d);
	free(d);
}

static void release(lw_deferrable_t *d)
{
	lw_timer_stop(&d->timer);
	lw__handle_remove(&d->handle);
	free_nodes(d);
	free(d);
}

/* The outermost caller releases a deferrable that was freed while its
 * callbacks ran. */
static void release_if_freed(lw_deferrable_t *d)
{
	if (!d->freeing || d->depth > 0 || d->resolving)
		return;
	release(d);
}

/* The one place where a deferrable's callbacks and errbacks run. */
static void dispatch(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg)
{
	lw_loop_t *loop = d->loop;
	lw__site_t *site = lw__site_get(loop, LW_KIND_DEFERRABLE, LW_FN(cb));

	d->depth++;
	lw__call_begin(loop, site, 0);
	cb(d, arg, d->value);
	lw__call_end(loop, site);
	d->depth--;
}

int lw_deferrable_new(lw_loop_t *loop, lw_deferrable_t **out)
{
	lw_deferrable_t *d;
	int r;

	if (loop == NULL || out == NULL)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->loop = loop;
	d->state = LW_PENDING;
	lw__list_init(&d->cbs);
	r = lw_timer_init(loop, &d->timer);
	if (r < 0) {
		free(d);
		return r;
	}
	lw__handle_add(loop, &d->handle, release_from_loop);
	*out = d;
	return 0;
}

void lw_deferrable_free(lw_deferrable_t *d)
{
	if (d == NULL || d->freeing)
		return;
	d->freeing = 1;
	lw_timer_stop(&d->timer);
	release_if_freed(d);
}

static int add(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg, uint64_t *id,
	       int errback)
{
	lw_deferrable_state_t match = errback ? LW_FAILED : LW_SUCCEEDED;
	deferrable_cbnode_t *n;
	uint64_t nid;

	if (d == NULL || cb == NULL || d->freeing)
		return -EINVAL;
	nid = ++d->last_id;
	if (id != NULL)
		*id = nid;

	if (d->state != LW_PENDING && d->state != match)
		return 0; /* the other outcome happened: dropped, as in EM */

	/*
	 * Resolved in our favour: run it now, unless resolve() is still
	 * working through the list (we are inside one of its callbacks); then
	 * it goes to the back of the list, after the ones already queued.
	 */
	if (d->state == match && !d->resolving) {
		dispatch(d, cb, arg);
		release_if_freed(d);
		return 0;
	}

	n = malloc(sizeof(*n));
	if (n == NULL) {
		d->last_id--;
		return -ENOMEM;
	}
	n->cb = cb;
	n->arg = arg;
	n->id = nid;
	n->errback = errback;
	lw__list_insert_tail(&d->cbs, &n->node);
	return 0;
}

int lw_deferrable_callback(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg,
			   uint64_t *id)
{
	return add(d, cb, arg, id, 0);
}

int lw_deferrable_errback(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg,
			  uint64_t *id)
{
	return add(d, cb, arg, id, 1);
}

int lw_deferrable_cancel(lw_deferrable_t *d, uint64_t id)
{
	lw__list_t *pos, *tmp;

	if (d == NULL)
		return -EINVAL;
	lw__list_foreach_safe (pos, tmp, &d->cbs) {
		deferrable_cbnode_t *n =
			LW__CONTAINER_OF(pos, deferrable_cbnode_t, node);
		if (n->id == id) {
			lw__list_remove(pos);
			free(n);
			return 0;
		}
	}
	return -ENOENT;
}

static int resolve(lw_deferrable_t *d, lw_deferrable_state_t state, void *value)
{
	lw__list_t *first;

	if (d == NULL || d->freeing)
		return -EINVAL;
	if (d->state != LW_PENDING)
		return -EALREADY;
	d->state = state;
	d->value = value;
	lw_timer_stop(&d->timer);

	d->resolving = 1;
	while (!d->freeing && (first = lw__list_first(&d->cbs)) != NULL) {
		deferrable_cbnode_t *n =
			LW__CONTAINER_OF(first, deferrable_cbnode_t, node);
		lw_deferrable_cb cb = n->cb;
		void *arg = n->arg;
		int match = n->errback == (state == LW_FAILED);

		/* Off the list before it runs, so that it cannot be cancelled
		 * and the list is whole whatever the callback does. */
		lw__list_remove(first);
		free(n);
		if (match)
			dispatch(d, cb, arg);
	}
	d->resolving = 0;
	release_if_freed(d);
	return 0;
}

int lw_deferrable_succeed(lw_deferrable_t *d, void *value)
{
	return resolve(d, LW_SUCCEEDED, value);
}

int lw_deferrable_fail(lw_deferrable_t *d, void *value)
{
	return resolve(d, LW_FAILED, value);
}

/* The timer module lets a callback free its own timer, so an errback may
 * free the deferrable (and the timer in it) from here. */
static void on_timeout(lw_timer_t *timer)
{
	lw_deferrable_t *d = LW__CONTAINER_OF(timer, lw_deferrable_t, timer);

	resolve(d, LW_FAILED, d->timeout_value);
}

int lw_deferrable_timeout(lw_deferrable_t *d, int64_t timeout_ms, void *value)
{
	if (d == NULL || timeout_ms < 0 || d->freeing)
		return -EINVAL;
	if (d->state != LW_PENDING)
		return -EALREADY;
	/* Beyond ~292 years the product would overflow; that is never. */
	if (timeout_ms > INT64_MAX / 1000000)
		timeout_ms = INT64_MAX / 1000000;
	d->timeout_value = value;
	return lw__timer_start_raw(&d->timer, on_timeout,
				   (uint64_t)timeout_ms * 1000000u, 0);
}

int lw_deferrable_cancel_timeout(lw_deferrable_t *d)
{
	if (d == NULL)
		return -EINVAL;
	lw_timer_stop(&d->timer);
	return 0;
}

lw_deferrable_state_t lw_deferrable_state(const lw_deferrable_t *d)
{
	return d == NULL ? LW_PENDING : d->state;
}

void *lw_deferrable_value(const lw_deferrable_t *d)
{
	return d == NULL ? NULL : d->value;
}

void lw_deferrable_set_data(lw_deferrable_t *d, void *data)
{
	if (d != NULL)
		d->data = data;
}

void *lw_deferrable_data(const lw_deferrable_t *d)
{
	return d == NULL ? NULL : d->data;
}
