/*
 * channel.c - EM::Channel: items pushed to every subscriber, in subscription
 * order, on the loop thread.
 *
 * Subscribers live in an array ordered by id (ids only grow, so appending
 * keeps the order and lookups can bisect).  A delivery walks the subscribers
 * that existed when it began; one that subscribes during it gets the next
 * item, as with EM's `@subs.values.each`.  Unsubscribing during a delivery
 * only clears the slot's callback; the array is compacted when the outermost
 * delivery ends, so indices never shift under a running walk.
 *
 * A push from another thread appends to an inbox under a mutex, and the
 * first such push posts one drain() to the loop: a burst of pushes costs one
 * wake-up, and items keep their push order.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct channel_sub {
	int64_t id;
	lw_channel_cb cb; /* NULL: unsubscribed during a delivery */
	void *arg;
	void *site; /* cached site of cb */
} channel_sub_t;

/* A growable array of items. */
typedef struct itemvec {
	void **v;
	size_t len, cap;
} itemvec_t;

struct lw_channel {
	lw__handle_t handle;
	lw_loop_t *loop;

	/* Loop thread only. */
	channel_sub_t *subs;
	size_t nsubs; /* slots used, including cleared ones */
	size_t subs_cap;
	size_t live; /* subscribers with a callback */
	int64_t last_id;
	unsigned depth; /* deliveries running (they nest) */
	int holes; /* slots cleared during a delivery, to compact */
	/*
	 * Freed by the user while delivering or with a drain() posted: the
	 * outermost delivery or the drain() releases it.
	 */
	int dead;
	itemvec_t draining; /* the inbox taken by the running drain() */

	/* Pushes from other threads. */
	pthread_mutex_t lock;
	itemvec_t inbox; /* guarded by lock */
	int posted; /* guarded by lock: a drain() is queued or running */
};

static int itemvec_push(itemvec_t *iv, void *item)
{
	if (iv->len == iv->cap) {
		size_t cap = iv->cap ? iv->cap * 2 : 16;
		void **v = realloc(iv->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		iv->v = v;
		iv->cap = cap;
	}
	iv->v[iv->len++] = item;
	return 0;
}

static void destroy(lw_channel_t *ch)
{
	free(ch->subs);
	free(ch->inbox.v);
	free(ch->draining.v);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
}

/* lw_loop_free() releasing a channel the user did not free. */
static void release_from_loop(lw__handle_t *h)
{
	destroy(LW__CONTAINER_OF(h, lw_channel_t, handle));
}

static void release(lw_channel_t *ch)
{
	lw__handle_remove(&ch->handle);
	destroy(ch);
}

/* The one place where subscriber callbacks run. */
static void dispatch(lw_channel_t *ch, size_t i, void *item)
{
	lw_loop_t *loop = ch->loop;
	channel_sub_t *s = &ch->subs[i];
	lw_channel_cb cb = s->cb;
	void *arg = s->arg;
	lw__site_t *site =
		lw__site_cached(loop, &s->site, LW_KIND_CHANNEL, LW_FN(cb));

	/* `s` may move (a subscribe grows the array): not used after. */
	lw__call_begin(loop, site, 0);
	cb(ch, arg, item);
	lw__call_end(loop, site);
}

static void compact(lw_channel_t *ch)
{
	size_t i, j = 0;

	for (i = 0; i < ch->nsubs; i++)
		if (ch->subs[i].cb != NULL)
			ch->subs[j++] = ch->subs[i];
	ch->nsubs = j;
	ch->holes = 0;
}

/* Deliver one item to the subscribers there now.  Loop thread. */
static void deliver(lw_channel_t *ch, void *item)
{
	size_t i, n = ch->nsubs;

	ch->depth++;
	for (i = 0; i < n && !ch->dead; i++)
		if (ch->subs[i].cb != NULL)
			dispatch(ch, i, item);
	ch->depth--;
	if (ch->depth == 0 && ch->holes)
		compact(ch);
}

/*
 * Deliver what other threads pushed.  `posted` stays set while it runs, so
 * pushes meanwhile only fill the inbox, and what they add is taken by the
 * next drain(), queued before this one returns.
 */
static void drain(lw_loop_t *loop, void *arg)
{
	lw_channel_t *ch = arg;
	itemvec_t tmp;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&ch->lock);
		tmp = ch->draining;
		ch->draining = ch->inbox;
		ch->inbox = tmp;
		ch->inbox.len = 0;
		pthread_mutex_unlock(&ch->lock);

		for (i = 0; i < ch->draining.len && !ch->dead; i++)
			deliver(ch, ch->draining.v[i]);
		ch->draining.len = 0;
		if (ch->dead) {
			release(ch);
			return;
		}

		pthread_mutex_lock(&ch->lock);
		if (ch->inbox.len == 0) {
			ch->posted = 0;
			pthread_mutex_unlock(&ch->lock);
			return;
		}
		/* More came in: a later iteration takes them, so a busy
		 * producer cannot keep the loop here.  If the post cannot be
		 * queued, take them now rather than lose them. */
		if (lw__post_raw(loop, drain, ch) == 0) {
			pthread_mutex_unlock(&ch->lock);
			return;
		}
		pthread_mutex_unlock(&ch->lock);
	}
}

int lw_channel_new(lw_loop_t *loop, lw_channel_t **out)
{
	lw_channel_t *ch;
	int r;

	if (loop == NULL || out == NULL)
		return -EINVAL;
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		return -ENOMEM;
	r = pthread_mutex_init(&ch->lock, NULL);
	if (r != 0) {
		free(ch);
		return -r;
	}
	ch->loop = loop;
	lw__handle_add(loop, &ch->handle, release_from_loop);
	*out = ch;
	return 0;
}

void lw_channel_free(lw_channel_t *ch)
{
	int posted;

	if (ch == NULL || ch->dead)
		return;
	pthread_mutex_lock(&ch->lock);
	posted = ch->posted;
	pthread_mutex_unlock(&ch->lock);
	if (ch->depth == 0 && !posted) {
		release(ch);
		return;
	}
	ch->dead = 1;
	ch->live = 0;
}

int64_t lw_channel_subscribe(lw_channel_t *ch, lw_channel_cb cb, void *arg)
{
	channel_sub_t *s;

	if (ch == NULL || cb == NULL || ch->dead)
		return -EINVAL;
	if (ch->nsubs == ch->subs_cap) {
		size_t cap = ch->subs_cap ? ch->subs_cap * 2 : 8;

		s = realloc(ch->subs, cap * sizeof(*s));
		if (s == NULL)
			return -ENOMEM;
		ch->subs = s;
		ch->subs_cap = cap;
	}
	s = &ch->subs[ch->nsubs++];
	s->id = ++ch->last_id;
	s->cb = cb;
	s->arg = arg;
	s->site = NULL;
	ch->live++;
	return s->id;
}

int lw_channel_unsubscribe(lw_channel_t *ch, int64_t id)
{
	size_t lo = 0, hi, mid;

	if (ch == NULL)
		return -EINVAL;
	/* Ids grow with the index: bisect. */
	hi = ch->nsubs;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ch->subs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == ch->nsubs || ch->subs[lo].id != id || ch->subs[lo].cb == NULL)
		return -ENOENT;
	ch->live--;
	if (ch->depth > 0) {
		/* A delivery is walking the array: leave the indices be. */
		ch->subs[lo].cb = NULL;
		ch->holes = 1;
	} else {
		memmove(&ch->subs[lo], &ch->subs[lo + 1],
			(ch->nsubs - lo - 1) * sizeof(ch->subs[0]));
		ch->nsubs--;
	}
	return 0;
}

int lw_channel_push(lw_channel_t *ch, void *item)
{
	int r;

	if (ch == NULL)
		return -EINVAL;
	if (lw_on_loop_thread(ch->loop)) {
		if (ch->dead)
			return -EINVAL;
		deliver(ch, item);
		/* Freed by a subscriber: the outermost delivery releases,
		 * unless a drain() is queued, which then does. */
		if (ch->dead && ch->depth == 0) {
			int posted;

			pthread_mutex_lock(&ch->lock);
			posted = ch->posted;
			pthread_mutex_unlock(&ch->lock);
			if (!posted)
				release(ch);
		}
		return 0;
	}

	pthread_mutex_lock(&ch->lock);
	r = itemvec_push(&ch->inbox, item);
	if (r == 0 && !ch->posted) {
		r = lw__post_raw(ch->loop, drain, ch);
		if (r == 0)
			ch->posted = 1;
		else
			ch->inbox.len--; /* still ours: the lock was held */
	}
	pthread_mutex_unlock(&ch->lock);
	return r;
}

size_t lw_channel_subscribers(const lw_channel_t *ch)
{
	return ch == NULL ? 0 : ch->live;
}
