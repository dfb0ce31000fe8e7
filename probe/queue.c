/*
 * queue.c - EM::Queue: items pushed from any thread, handed one at a time to
 * pop callbacks on the loop thread.
 *
 * Two FIFO rings live under one mutex: the items not yet handed out and the
 * pops waiting for one.  Pairing them is the job of one internal call, serve(),
 * which runs on the loop thread (a raw tick when the call that made work was
 * on the loop thread, a raw post otherwise).  At most one serve() is queued
 * or running per queue (`scheduled`): pushes while it is pending only add to
 * the ring, so a burst of a million pushes costs one wake-up, not a million.
 *
 * The rings grow by doubling and never shrink, so a queue in a steady state
 * allocates nothing.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A FIFO of fixed-size elements in a power-of-two circular buffer. */
typedef struct ring {
	char *buf;
	size_t head; /* index of the oldest element */
	size_t len;
	size_t cap; /* 0 or a power of two */
} ring_t;

typedef struct queue_pop {
	lw_queue_cb cb;
	void *arg;
} queue_pop_t;

struct lw_queue {
	lw__handle_t handle;
	lw_loop_t *loop;
	void *site; /* the last pop callback's site; loop thread only */
	/* Guards everything below: pushes come from any thread. */
	pthread_mutex_t lock;
	ring_t items; /* void * */
	ring_t pops; /* queue_pop_t, in the order they were made */
	int scheduled; /* a serve() is queued or running */
	/*
	 * Freed by the user while a serve() was queued or running: that
	 * serve() owns the release, since a tick or post cannot be taken back.
	 */
	int dead;
};

static int ring_push(ring_t *r, const void *e, size_t size)
{
	if (r->len == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		char *buf = malloc(cap * size);
		size_t first;

		if (buf == NULL)
			return -ENOMEM;
		/* Unwrap: the part from head to the end, then the rest. */
		first = r->cap - r->head;
		if (first > r->len)
			first = r->len;
		if (r->len > 0) {
			memcpy(buf, r->buf + r->head * size, first * size);
			memcpy(buf + first * size, r->buf,
			       (r->len - first) * size);
		}
		free(r->buf);
		r->buf = buf;
		r->head = 0;
		r->cap = cap;
	}
	memcpy(r->buf + ((r->head + r->len) & (r->cap - 1)) * size, e, size);
	r->len++;
	return 0;
}

static void ring_shift(ring_t *r, void *e, size_t size)
{
	memcpy(e, r->buf + r->head * size, size);
	r->head = (r->head + 1) & (r->cap - 1);
	r->len--;
}

static void ring_free(ring_t *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

static void destroy(lw_queue_t *q)
{
	ring_free(&q->items);
	ring_free(&q->pops);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* lw_loop_free() releasing a queue the user did not free. */
static void release_from_loop(lw__handle_t *h)
{
	destroy(LW__CONTAINER_OF(h, lw_queue_t, handle));
}

static void release(lw_queue_t *q)
{
	lw__handle_remove(&q->handle);
	destroy(q);
}

/* The one place where pop callbacks run. */
static void dispatch(lw_queue_t *q, lw_queue_cb cb, void *arg, void *item)
{
	lw_loop_t *loop = q->loop;
	lw__site_t *site =
		lw__site_cached(loop, &q->site, LW_KIND_QUEUE, LW_FN(cb));

	lw__call_begin(loop, site, 0);
	cb(q, arg, item);
	lw__call_end(loop, site);
}

/*
 * Hand items to waiting pops.  Only the pops that were waiting when it began
 * are served: a pop made from inside a pop callback waits for a later
 * iteration, as the API promises, so a callback that pops again cannot keep
 * the loop here while items keep coming.
 */
static void serve(lw_loop_t *loop, void *arg)
{
	lw_queue_t *q = arg;
	size_t budget;

	pthread_mutex_lock(&q->lock);
	budget = q->pops.len;
	while (!q->dead && budget > 0 && q->items.len > 0) {
		queue_pop_t pop;
		void *item;

		ring_shift(&q->pops, &pop, sizeof(pop));
		ring_shift(&q->items, &item, sizeof(item));
		budget--;
		pthread_mutex_unlock(&q->lock);
		dispatch(q, pop.cb, pop.arg, item);
		pthread_mutex_lock(&q->lock);
	}
	if (q->dead) {
		pthread_mutex_unlock(&q->lock);
		release(q);
		return;
	}
	/*
	 * Work left for a later iteration keeps `scheduled` set.  If the
	 * tick cannot be queued, the next push or pop schedules again.
	 */
	if (q->pops.len == 0 || q->items.len == 0 ||
	    lw__next_tick_raw(loop, serve, q) != 0)
		q->scheduled = 0;
	pthread_mutex_unlock(&q->lock);
}

/* With q->lock held: queue a serve() if there is work and none is queued. */
static int schedule_locked(lw_queue_t *q)
{
	int r;

	if (q->scheduled || q->pops.len == 0 || q->items.len == 0)
		return 0;
	/* Posting from the loop thread would work too, but a tick needs no
	 * lock and no wake-up. */
	if (lw_on_loop_thread(q->loop))
		r = lw__next_tick_raw(q->loop, serve, q);
	else
		r = lw__post_raw(q->loop, serve, q);
	if (r == 0)
		q->scheduled = 1;
	return r;
}

int lw_queue_new(lw_loop_t *loop, lw_queue_t **out)
{
	lw_queue_t *q;
	int r;

	if (loop == NULL || out == NULL)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	r = pthread_mutex_init(&q->lock, NULL);
	if (r != 0) {
		free(q);
		return -r;
	}
	q->loop = loop;
	lw__handle_add(loop, &q->handle, release_from_loop);
	*out = q;
	return 0;
}

void lw_queue_free(lw_queue_t *q)
{
	int pending;

	if (q == NULL)
		return;
	pthread_mutex_lock(&q->lock);
	pending = q->scheduled;
	if (pending) {
		/* Waiting pops are dropped now, so none can run. */
		q->dead = 1;
		q->pops.len = 0;
		q->items.len = 0;
	}
	pthread_mutex_unlock(&q->lock);
	if (!pending)
		release(q);
}

int lw_queue_push(lw_queue_t *q, void *item)
{
	int r;

	if (q == NULL)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	if (q->dead) {
		r = -EINVAL;
		goto unlock;
	}
	r = ring_push(&q->items, &item, sizeof(item));
	if (r < 0)
		goto unlock;
	r = schedule_locked(q);
	if (r < 0)
		q->items.len--; /* still ours: the lock was held throughout */
unlock:
	pthread_mutex_unlock(&q->lock);
	return r;
}

int lw_queue_pop(lw_queue_t *q, lw_queue_cb cb, void *arg)
{
	queue_pop_t pop = { cb, arg };
	int r;

	if (q == NULL || cb == NULL)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	if (q->dead) {
		r = -EINVAL;
		goto unlock;
	}
	r = ring_push(&q->pops, &pop, sizeof(pop));
	if (r < 0)
		goto unlock;
	r = schedule_locked(q);
	if (r < 0)
		q->pops.len--;
unlock:
	pthread_mutex_unlock(&q->lock);
	return r;
}

size_t lw_queue_size(lw_queue_t *q)
{
	size_t n;

	if (q == NULL)
		return 0;
	pthread_mutex_lock(&q->lock);
	n = q->items.len;
	pthread_mutex_unlock(&q->lock);
	return n;
}
