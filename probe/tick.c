/*
 * tick.c - next_tick, schedule and post.
 *
 * Ticks live in two arrays that swap every iteration: the ticks queued
 * before the iteration run, and ticks queued while they run go to the other
 * array, for the next iteration.  So a long chain of next_tick steps lets
 * the loop poll for I/O between steps, and nothing allocates once the arrays
 * have grown to the working size.
 *
 * Posts come from any thread: they go into a mutex-protected array, and the
 * poster wakes the loop through its eventfd unless a wake-up is already
 * pending.  The wake_pending flag is cleared by the loop *before* it takes
 * the array, so a post that lands after the take writes the eventfd again
 * and is not left waiting.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int push(lw__callvec_t *v, lw__call_t c)
{
	if (v->len == v->cap) {
		int err = lw__grow((void **)&v->v, &v->cap, v->len + 1,
				   sizeof(*v->v));
		if (err)
			return err;
	}
	v->v[v->len++] = c;
	return 0;
}

/* The one dispatch point for tick, schedule and post callbacks. */
static void dispatch_call(lw_loop_t *loop, lw__call_t *c)
{
	if (c->kind == 0) {
		c->cb(loop, c->arg);
		lw__gap(loop);
		return;
	}
	lw__site_t *site = c->site;
	if (site == NULL)
		site = lw__site_get(loop, c->kind, LW_FN(c->cb));
	lw__call_begin_chained(loop, site, 0);
	c->cb(loop, c->arg);
	lw__call_end(loop, site);
}

int lw_next_tick(lw_loop_t *loop, lw_cb cb, void *arg)
{
	if (loop == NULL || cb == NULL)
		return -EINVAL;
	lw__site_t *site = lw__site_get(loop, LW_KIND_TICK, LW_FN(cb));
	return push(&loop->ticks, (lw__call_t){ cb, arg, site, LW_KIND_TICK });
}

int lw__next_tick_raw(lw_loop_t *loop, lw_cb cb, void *arg)
{
	return push(&loop->ticks, (lw__call_t){ cb, arg, NULL, 0 });
}

int lw__run_ticks(lw_loop_t *loop)
{
	if (loop->ticks.len == 0)
		return 0;
	lw__callvec_t run = loop->ticks;
	loop->ticks = loop->ticks_running;
	loop->ticks.len = 0;
	int n = 0;
	for (uint32_t i = 0; i < run.len; i++) {
		dispatch_call(loop, &run.v[i]);
		n++;
	}
	/* Keep both arrays' memory for the next iterations. */
	run.len = 0;
	loop->ticks_running = run;
	return n;
}

void lw__wakeup(lw_loop_t *loop)
{
	if (atomic_exchange(&loop->wake_pending, 1) == 0) {
		uint64_t one = 1;
		ssize_t r;
		do
			r = write(loop->wakefd, &one, sizeof(one));
		while (r < 0 && errno == EINTR);
		/* EAGAIN means the counter is already non-zero: the loop
		 * will wake anyway. */
	}
}

static int post(lw_loop_t *loop, lw__call_t c)
{
	pthread_mutex_lock(&loop->post_lock);
	int err = push(&loop->posts, c);
	pthread_mutex_unlock(&loop->post_lock);
	if (err == 0)
		lw__wakeup(loop);
	return err;
}

int lw_post(lw_loop_t *loop, lw_cb cb, void *arg)
{
	if (loop == NULL || cb == NULL)
		return -EINVAL;
	return post(loop, (lw__call_t){ cb, arg, NULL, LW_KIND_POST });
}

int lw__post_raw(lw_loop_t *loop, lw_cb cb, void *arg)
{
	return post(loop, (lw__call_t){ cb, arg, NULL, 0 });
}

int lw_schedule(lw_loop_t *loop, lw_cb cb, void *arg)
{
	if (loop == NULL || cb == NULL)
		return -EINVAL;
	if (!lw_on_loop_thread(loop))
		return post(loop, (lw__call_t){ cb, arg, NULL, LW_KIND_POST });
	lw__call_t c = { cb, arg, NULL, LW_KIND_TICK };
	dispatch_call(loop, &c);
	return 0;
}

int lw__run_posts(lw_loop_t *loop)
{
	pthread_mutex_lock(&loop->post_lock);
	lw__callvec_t run = loop->posts;
	loop->posts = loop->posts_running;
	loop->posts.len = 0;
	pthread_mutex_unlock(&loop->post_lock);

	int n = 0;
	for (uint32_t i = 0; i < run.len; i++) {
		dispatch_call(loop, &run.v[i]);
		n++;
	}
	run.len = 0;
	/* posts_running is only touched by the loop thread. */
	loop->posts_running = run;
	return n;
}

void lw__calls_free(lw_loop_t *loop)
{
	free(loop->ticks.v);
	free(loop->ticks_running.v);
	free(loop->posts.v);
	free(loop->posts_running.v);
}
