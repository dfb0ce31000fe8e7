/*
 * test_iterator.c - EM::Iterator: the concurrency limit under asynchronous
 * completion, every item exactly once and in order, done exactly once,
 * empty iterators, synchronous completion.
 */
#include "lwtest.h"

#include "loopwatch.h"

static lw_loop_t *new_loop(void)
{
	lw_loop_t *loop = NULL;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	return loop;
}

#define N_ASYNC 60
#define CONC 4

struct async_item {
	lw_timer_t timer;
	struct async_ctx *c;
	size_t index;
};

struct async_ctx {
	lw_loop_t *loop;
	lw_iterator_t *it;
	struct async_item items[N_ASYNC];
	int visits[N_ASYNC];
	size_t order[N_ASYNC];
	size_t nstarted;
	unsigned in_flight, max_in_flight;
	int completed;
	int done_calls;
	int completed_at_done;
	int bad_in_flight; /* lw_iterator_in_flight() disagreed with us */
};

static void async_item_done(lw_timer_t *t)
{
	struct async_item *item = t->data;
	struct async_ctx *c = item->c;

	c->in_flight--;
	c->completed++;
	ASSERT_OK(lw_iterator_next(c->it));
	if (lw_iterator_in_flight(c->it) != c->in_flight)
		c->bad_in_flight++;
}

static void async_each(lw_iterator_t *it, size_t index, void *arg)
{
	struct async_ctx *c = arg;
	struct async_item *item;

	ASSERT(it == c->it);
	ASSERT_LT(index, N_ASYNC);
	c->visits[index]++;
	c->order[c->nstarted++] = index;
	c->in_flight++;
	if (c->in_flight > c->max_in_flight)
		c->max_in_flight = c->in_flight;
	if (lw_iterator_in_flight(it) != c->in_flight)
		c->bad_in_flight++;

	/* Finish after 1..9 ms, in an order unrelated to the start order. */
	item = &c->items[index];
	item->c = c;
	item->index = index;
	ASSERT_OK(lw_timer_init(c->loop, &item->timer));
	item->timer.data = item;
	ASSERT_OK(lw_timer_start(&item->timer, async_item_done,
				 1 + (int64_t)((index * 7) % 9), 0));
}

static void async_done(lw_iterator_t *it, void *arg)
{
	struct async_ctx *c = arg;

	ASSERT(it == c->it);
	c->done_calls++;
	c->completed_at_done = c->completed;
	lw_stop(c->loop);
}

static void stop_timer_cb(lw_timer_t *t)
{
	lw_stop(t->data);
}

TEST(iterator_concurrency_limit)
{
	static struct async_ctx c;
	lw_timer_t linger;

	c.loop = new_loop();
	ASSERT_OK(lw_iterator_start(c.loop, N_ASYNC, CONC, async_each,
				    async_done, &c, &c.it));
	/* Nothing starts inside lw_iterator_start(). */
	ASSERT_EQ(c.nstarted, 0);
	ASSERT_OK(lw_run(c.loop));

	ASSERT_EQ(c.done_calls, 1);
	ASSERT_EQ(c.completed_at_done, N_ASYNC);
	ASSERT_EQ(c.nstarted, N_ASYNC);
	for (size_t i = 0; i < N_ASYNC; i++) {
		ASSERT_EQ(c.visits[i], 1);
		ASSERT_EQ(c.order[i], i);
	}
	/* Never above the limit, and it did reach it (otherwise this test
	 * would prove nothing). */
	ASSERT_EQ(c.max_in_flight, CONC);
	ASSERT_EQ(c.bad_in_flight, 0);

	/* Run a while longer: done is not called again. */
	ASSERT_OK(lw_timer_init(c.loop, &linger));
	linger.data = c.loop;
	ASSERT_OK(lw_timer_start(&linger, stop_timer_cb, 30, 0));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.done_calls, 1);
	lw_loop_free(c.loop);
}

/* ---- synchronous completion ---- */

struct sync_ctx {
	lw_loop_t *loop;
	int visits[100];
	size_t order[100];
	size_t nstarted;
	uint64_t iteration_of[100];
	int done_calls;
	int next_extra_result;
};

static void sync_each(lw_iterator_t *it, size_t index, void *arg)
{
	struct sync_ctx *c = arg;
	lw_loop_stats_t st;

	ASSERT_LT(index, 100);
	c->visits[index]++;
	c->order[c->nstarted++] = index;
	lw_loop_stats(c->loop, &st);
	c->iteration_of[index] = st.iterations;
	ASSERT_EQ(lw_iterator_in_flight(it), 1);
	ASSERT_OK(lw_iterator_next(it));
	/* One item started, one done: a second call is one too many. */
	c->next_extra_result = lw_iterator_next(it);
	ASSERT_EQ(lw_iterator_in_flight(it), 0);
}

static void sync_done(lw_iterator_t *it, void *arg)
{
	struct sync_ctx *c = arg;

	(void)it;
	c->done_calls++;
	lw_stop(c->loop);
}

TEST(iterator_sync_next)
{
	struct sync_ctx c = { 0 };

	c.loop = new_loop();
	ASSERT_OK(lw_iterator_start(c.loop, 100, 1, sync_each, sync_done, &c,
				    NULL));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.done_calls, 1);
	ASSERT_EQ(c.nstarted, 100);
	ASSERT_EQ(c.next_extra_result, -EINVAL);
	for (size_t i = 0; i < 100; i++) {
		ASSERT_EQ(c.visits[i], 1);
		ASSERT_EQ(c.order[i], i);
	}
	/* Each item started on a later iteration than the one before: a
	 * synchronous chain does not hog the loop. */
	for (size_t i = 1; i < 100; i++)
		ASSERT_GT(c.iteration_of[i], c.iteration_of[i - 1]);
	lw_loop_free(c.loop);
}

/* ---- n == 0 ---- */

static void never_each(lw_iterator_t *it, size_t index, void *arg)
{
	(void)it;
	(void)arg;
	LWT_FAIL("each() ran for item %zu of an empty iterator", index);
}

static void count_done(lw_iterator_t *it, void *arg)
{
	int *calls = arg;

	(void)it;
	(*calls)++;
}

TEST(iterator_empty)
{
	lw_loop_t *loop = new_loop();
	lw_iterator_t *it = NULL;
	int calls = 0;

	ASSERT_OK(lw_iterator_start(loop, 0, 3, never_each, count_done, &calls,
				    &it));
	ASSERT(it != NULL);
	/* Not inside the start call, but on a later iteration. */
	ASSERT_EQ(calls, 0);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(calls, 1);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(calls, 1);
	lw_loop_free(loop);
}

/* ---- concurrency above n, no done callback ---- */

static void count_each(lw_iterator_t *it, size_t index, void *arg)
{
	int *visits = arg;

	visits[index]++;
	ASSERT_OK(lw_iterator_next(it));
}

int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

TEST(iterator_wide_without_done)
{
	lw_loop_t *loop = new_loop();
	int visits[5] = { 0 };

	/* All five start in the first step; with no done callback the
	 * iterator still frees itself (checked by LeakSanitizer). */
	ASSERT_OK(lw_iterator_start(loop, 5, 100, count_each, NULL, visits,
				    NULL));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(visits[i], 1);
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(visits[i], 1);
	lw_loop_free(loop);
	if (__lsan_do_recoverable_leak_check != NULL)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
}

/* ---- invalid arguments ---- */

static void hold_each(lw_iterator_t *it, size_t index, void *arg)
{
	(void)it;
	(void)index;
	(*(int *)arg)++;
}

TEST(iterator_invalid_args)
{
	lw_loop_t *loop = new_loop();
	lw_iterator_t *it;
	int started = 0;

	ASSERT_EQ(lw_iterator_start(loop, 3, 0, hold_each, NULL, &started, &it),
		  -EINVAL);
	ASSERT_EQ(lw_iterator_start(loop, 3, 1, NULL, NULL, NULL, &it),
		  -EINVAL);
	ASSERT_EQ(lw_iterator_start(NULL, 3, 1, hold_each, NULL, NULL, &it),
		  -EINVAL);
	ASSERT_EQ(lw_iterator_next(NULL), -EINVAL);

	/* An item not yet started cannot be finished. */
	ASSERT_OK(
		lw_iterator_start(loop, 3, 1, hold_each, NULL, &started, &it));
	ASSERT_EQ(lw_iterator_next(it), -EINVAL);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(started, 1);
	ASSERT_EQ(lw_iterator_in_flight(it), 1);
	/* Held: nothing else starts while the only slot is taken. */
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(started, 1);
	ASSERT_OK(lw_iterator_next(it));
	ASSERT_EQ(lw_iterator_next(it), -EINVAL);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(started, 2);
	lw_loop_free(loop);
}

/* Out of line, so that no pointer to what it makes stays in the test's frame
 * for LeakSanitizer to find. */
static __attribute__((noinline)) void leave_iterators(lw_loop_t *loop,
						      int *started)
{
	/* One with an item in flight, one not yet started. */
	ASSERT_OK(
		lw_iterator_start(loop, 3, 1, hold_each, NULL, started, NULL));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(*started, 1);
	ASSERT_OK(
		lw_iterator_start(loop, 3, 1, hold_each, NULL, started, NULL));
}

TEST(iterator_loop_free_releases)
{
	lw_loop_t *loop = new_loop();
	int started = 0;

	leave_iterators(loop, &started);
	lw_loop_free(loop);
	ASSERT_EQ(started, 1);
	if (__lsan_do_recoverable_leak_check != NULL)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
}

struct site_ctx {
	int each_found, done_found;
	uint64_t each_calls, done_calls;
};

struct site_run {
	int visits;
	int done;
};

static void site_each(lw_iterator_t *it, size_t index, void *arg)
{
	struct site_run *r = arg;

	(void)index;
	r->visits++;
	ASSERT_OK(lw_iterator_next(it));
}

static void site_done(lw_iterator_t *it, void *arg)
{
	struct site_run *r = arg;

	(void)it;
	r->done++;
}

static void find_sites(const lw_site_info_t *s, void *arg)
{
	struct site_ctx *c = arg;

	if (s->fn == LW_FN(site_each)) {
		ASSERT_EQ(s->kind, LW_KIND_ITERATOR);
		c->each_found++;
		c->each_calls = s->calls;
	}
	if (s->fn == LW_FN(site_done)) {
		ASSERT_EQ(s->kind, LW_KIND_ITERATOR);
		c->done_found++;
		c->done_calls = s->calls;
	}
}

TEST(iterator_site_kind)
{
	lw_loop_t *loop = new_loop();
	struct site_run r = { 0 };
	struct site_ctx sc = { 0 };

	ASSERT_OK(
		lw_iterator_start(loop, 4, 2, site_each, site_done, &r, NULL));
	for (int i = 0; i < 5; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(r.visits, 4);
	ASSERT_EQ(r.done, 1);
	lw_site_foreach(loop, find_sites, &sc);
	ASSERT_EQ(sc.each_found, 1);
	ASSERT_EQ(sc.each_calls, 4);
	ASSERT_EQ(sc.done_found, 1);
	ASSERT_EQ(sc.done_calls, 1);
	lw_loop_free(loop);
}
