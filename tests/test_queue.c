/*
 * test_queue.c - EM::Queue: many producer threads against one popping loop,
 * pops that wait for pushes, FIFO service of waiting pops, size, free.
 */
#include "lwtest.h"

#include "loopwatch.h"

#include <pthread.h>
#include <time.h>

static lw_loop_t *new_loop(void)
{
	lw_loop_t *loop = NULL;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	return loop;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* ---- many producers ---- */

#define PRODUCERS 8
#define PER_PRODUCER 100000
#define OUTSTANDING_POPS 64

struct mp_ctx {
	lw_loop_t *loop;
	lw_queue_t *q;
	pthread_t loop_thread;
	uint32_t next_seq[PRODUCERS]; /* loop thread only */
	uint64_t received;
	int wrong_thread, out_of_order, bad_producer;
};

struct producer {
	struct mp_ctx *c;
	uint32_t id;
	int push_errors;
	size_t max_size;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;

	for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
		uint64_t v = ((uint64_t)p->id << 32) | seq;

		if (lw_queue_push(p->c->q, (void *)(uintptr_t)v) != 0)
			p->push_errors++;
		/* lw_queue_size() is any-thread: sample it now and then. */
		if (seq % 4096 == 0) {
			size_t n = lw_queue_size(p->c->q);
			if (n > p->max_size)
				p->max_size = n;
		}
	}
	return NULL;
}

static void mp_pop_cb(lw_queue_t *q, void *arg, void *item)
{
	struct mp_ctx *c = arg;
	uint64_t v = (uint64_t)(uintptr_t)item;
	uint32_t id = (uint32_t)(v >> 32), seq = (uint32_t)v;

	if (!pthread_equal(pthread_self(), c->loop_thread))
		c->wrong_thread++;
	if (id >= PRODUCERS) {
		c->bad_producer++;
	} else {
		if (seq != c->next_seq[id])
			c->out_of_order++;
		c->next_seq[id] = seq + 1;
	}
	c->received++;
	if (c->received == (uint64_t)PRODUCERS * PER_PRODUCER) {
		lw_stop(c->loop);
		return;
	}
	/* Keep OUTSTANDING_POPS pops waiting, minus those no item is left
	 * for (an extra pop would simply wait forever, which is fine, but
	 * the count is exact this way). */
	if (c->received + OUTSTANDING_POPS <=
	    (uint64_t)PRODUCERS * PER_PRODUCER)
		ASSERT_OK(lw_queue_pop(q, mp_pop_cb, c));
}

TEST_T(queue_many_producers, 240)
{
	struct mp_ctx c = { 0 };
	struct producer p[PRODUCERS];
	pthread_t th[PRODUCERS];
	int i;

	c.loop = new_loop();
	c.loop_thread = pthread_self();
	ASSERT_OK(lw_queue_new(c.loop, &c.q));
	for (i = 0; i < OUTSTANDING_POPS; i++)
		ASSERT_OK(lw_queue_pop(c.q, mp_pop_cb, &c));
	for (i = 0; i < PRODUCERS; i++) {
		p[i] = (struct producer){ &c, (uint32_t)i, 0, 0 };
		ASSERT_EQ(pthread_create(&th[i], NULL, producer_main, &p[i]),
			  0);
	}
	ASSERT_OK(lw_run(c.loop));
	for (i = 0; i < PRODUCERS; i++) {
		ASSERT_EQ(pthread_join(th[i], NULL), 0);
		ASSERT_EQ(p[i].push_errors, 0);
	}

	ASSERT_EQ(c.received, (uint64_t)PRODUCERS * PER_PRODUCER);
	ASSERT_EQ(c.wrong_thread, 0);
	ASSERT_EQ(c.bad_producer, 0);
	ASSERT_EQ(c.out_of_order, 0);
	for (i = 0; i < PRODUCERS; i++)
		ASSERT_EQ(c.next_seq[i], PER_PRODUCER);
	ASSERT_EQ(lw_queue_size(c.q), 0);
	lw_queue_free(c.q);
	lw_loop_free(c.loop);
}

/* ---- a pop waiting on an empty queue ---- */

struct wait_ctx {
	lw_loop_t *loop;
	lw_queue_t *q;
	void *got;
	int calls;
	pthread_t loop_thread;
	int on_loop_thread;
	uint64_t t0, served_after;
};

static void wait_pop_cb(lw_queue_t *q, void *arg, void *item)
{
	struct wait_ctx *c = arg;

	ASSERT(q == c->q);
	c->got = item;
	c->calls++;
	c->on_loop_thread = pthread_equal(pthread_self(), c->loop_thread);
	c->served_after = lwt_now_ns() - c->t0;
	lw_stop(c->loop);
}

static int item_a;

static void push_timer_cb(lw_timer_t *t)
{
	struct wait_ctx *c = t->data;

	ASSERT_EQ(c->calls, 0);
	ASSERT_OK(lw_queue_push(c->q, &item_a));
	/* Handed out on a later iteration, not inside the push. */
	ASSERT_EQ(c->calls, 0);
}

TEST(queue_pop_waits_for_push)
{
	struct wait_ctx c = { 0 };
	lw_timer_t t;

	c.loop = new_loop();
	c.loop_thread = pthread_self();
	ASSERT_OK(lw_queue_new(c.loop, &c.q));
	ASSERT_OK(lw_queue_pop(c.q, wait_pop_cb, &c));
	/* Nothing to hand out: a few iterations change nothing. */
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(c.loop, 0), 0);
	ASSERT_EQ(c.calls, 0);

	ASSERT_OK(lw_timer_init(c.loop, &t));
	t.data = &c;
	c.t0 = lwt_now_ns();
	ASSERT_OK(lw_timer_start(&t, push_timer_cb, 30, 0));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.calls, 1);
	ASSERT(c.got == &item_a);
	ASSERT(c.on_loop_thread);
	ASSERT_GE(c.served_after, 25 * 1000000ull);
	ASSERT_EQ(lw_queue_size(c.q), 0);
	lw_queue_free(c.q);
	lw_loop_free(c.loop);
}

static void *late_pusher(void *arg)
{
	struct wait_ctx *c = arg;

	sleep_ms(50);
	ASSERT_OK(lw_queue_push(c->q, &item_a));
	return NULL;
}

TEST(queue_pop_waits_for_foreign_push)
{
	struct wait_ctx c = { 0 };
	pthread_t th;

	/* The loop has nothing else to do and sleeps in the kernel: the push
	 * from another thread must wake it. */
	c.loop = new_loop();
	c.loop_thread = pthread_self();
	ASSERT_OK(lw_queue_new(c.loop, &c.q));
	ASSERT_OK(lw_queue_pop(c.q, wait_pop_cb, &c));
	c.t0 = lwt_now_ns();
	ASSERT_EQ(pthread_create(&th, NULL, late_pusher, &c), 0);
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(pthread_join(th, NULL), 0);
	ASSERT_EQ(c.calls, 1);
	ASSERT(c.got == &item_a);
	ASSERT(c.on_loop_thread);
	ASSERT_GE(c.served_after, 45 * 1000000ull);
	lw_queue_free(c.q);
	lw_loop_free(c.loop);
}

/* ---- several waiting pops ---- */

struct order_ctx {
	int pop_ids[16];
	void *items[16];
	int n;
};

struct order_pop {
	struct order_ctx *c;
	int id;
};

static void order_pop_cb(lw_queue_t *q, void *arg, void *item)
{
	struct order_pop *p = arg;

	(void)q;
	ASSERT_LT(p->c->n, 16);
	p->c->pop_ids[p->c->n] = p->id;
	p->c->items[p->c->n] = item;
	p->c->n++;
}

TEST(queue_waiting_pops_in_order)
{
	lw_loop_t *loop = new_loop();
	lw_queue_t *q;
	struct order_ctx c = { 0 };
	struct order_pop pops[5];
	int items[5];
	int i;

	ASSERT_OK(lw_queue_new(loop, &q));
	for (i = 0; i < 5; i++) {
		pops[i] = (struct order_pop){ &c, i };
		ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pops[i]));
	}
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 0);

	/* Three pushes serve the three oldest pops, in order. */
	for (i = 0; i < 3; i++)
		ASSERT_OK(lw_queue_push(q, &items[i]));
	ASSERT_EQ(c.n, 0);
	for (i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 3);
	ASSERT_EQ(lw_queue_size(q), 0);

	/* Then the other two. */
	ASSERT_OK(lw_queue_push(q, &items[3]));
	ASSERT_OK(lw_queue_push(q, &items[4]));
	for (i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 5);
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(c.pop_ids[i], i);
		ASSERT(c.items[i] == &items[i]);
	}
	lw_queue_free(q);
	lw_loop_free(loop);
}

/* ---- items waiting for pops; size ---- */

TEST(queue_size)
{
	lw_loop_t *loop = new_loop();
	lw_queue_t *q;
	struct order_ctx c = { 0 };
	struct order_pop pop = { &c, 0 };
	int items[3];

	ASSERT_OK(lw_queue_new(loop, &q));
	ASSERT_EQ(lw_queue_size(q), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(lw_queue_push(q, &items[i]));
	ASSERT_EQ(lw_queue_size(q), 3);

	/* A pop is served on a later iteration, not inside the call. */
	ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pop));
	ASSERT_EQ(c.n, 0);
	ASSERT_EQ(lw_queue_size(q), 3);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 1);
	ASSERT(c.items[0] == &items[0]);
	ASSERT_EQ(lw_queue_size(q), 2);

	ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pop));
	ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pop));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 3);
	ASSERT(c.items[1] == &items[1]);
	ASSERT(c.items[2] == &items[2]);
	ASSERT_EQ(lw_queue_size(q), 0);
	lw_queue_free(q);
	lw_loop_free(loop);
}

/* A pop made from inside a pop callback waits for a later iteration. */
struct repop_ctx {
	lw_queue_t *q;
	int calls;
	int calls_at_iteration_end[4];
};

static void repop_cb(lw_queue_t *q, void *arg, void *item)
{
	struct repop_ctx *c = arg;

	(void)item;
	c->calls++;
	ASSERT_OK(lw_queue_pop(q, repop_cb, c));
}

TEST(queue_pop_from_callback_waits_an_iteration)
{
	lw_loop_t *loop = new_loop();
	struct repop_ctx c = { 0 };
	int items[8];

	ASSERT_OK(lw_queue_new(loop, &c.q));
	for (int i = 0; i < 8; i++)
		ASSERT_OK(lw_queue_push(c.q, &items[i]));
	ASSERT_OK(lw_queue_pop(c.q, repop_cb, &c));
	for (int i = 0; i < 4; i++) {
		ASSERT_GE(lw_run_once(loop, 0), 0);
		c.calls_at_iteration_end[i] = c.calls;
	}
	ASSERT_EQ(c.calls_at_iteration_end[0], 1);
	ASSERT_EQ(c.calls_at_iteration_end[1], 2);
	ASSERT_EQ(c.calls_at_iteration_end[2], 3);
	ASSERT_EQ(c.calls_at_iteration_end[3], 4);
	ASSERT_EQ(lw_queue_size(c.q), 4);
	lw_queue_free(c.q);
	lw_loop_free(loop);
}

/* ---- free ---- */

static void never_cb(lw_queue_t *q, void *arg, void *item)
{
	(void)q;
	(void)item;
	LWT_FAIL("a dropped pop ran (arg %p)", arg);
}

static void freeing_pop_cb(lw_queue_t *q, void *arg, void *item)
{
	int *calls = arg;

	(void)item;
	(*calls)++;
	lw_queue_free(q);
}

TEST(queue_free_drops_waiting_pops)
{
	lw_loop_t *loop = new_loop();
	lw_queue_t *q;
	int items[4], calls = 0;

	/* Waiting on an empty queue, then freed. */
	ASSERT_OK(lw_queue_new(loop, &q));
	ASSERT_OK(lw_queue_pop(q, never_cb, NULL));
	ASSERT_OK(lw_queue_pop(q, never_cb, NULL));
	lw_queue_free(q);
	ASSERT_GE(lw_run_once(loop, 0), 0);

	/* Freed with a hand-out already queued for the next iteration. */
	ASSERT_OK(lw_queue_new(loop, &q));
	ASSERT_OK(lw_queue_push(q, &items[0]));
	ASSERT_OK(lw_queue_pop(q, never_cb, NULL));
	lw_queue_free(q);
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);

	/* Freed from inside a pop callback, with more pops and items. */
	ASSERT_OK(lw_queue_new(loop, &q));
	for (int i = 0; i < 4; i++)
		ASSERT_OK(lw_queue_push(q, &items[i]));
	ASSERT_OK(lw_queue_pop(q, freeing_pop_cb, &calls));
	ASSERT_OK(lw_queue_pop(q, never_cb, NULL));
	ASSERT_OK(lw_queue_pop(q, never_cb, NULL));
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(calls, 1);
	lw_loop_free(loop);
}

int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Out of line, so that no pointer to what it makes stays in the test's frame
 * for LeakSanitizer to find. */
static __attribute__((noinline)) void leave_queues(lw_loop_t *loop, int *items)
{
	lw_queue_t *q1, *q2;

	/* One with items and a hand-out queued, one with a pop waiting. */
	ASSERT_OK(lw_queue_new(loop, &q1));
	ASSERT_OK(lw_queue_push(q1, &items[0]));
	ASSERT_OK(lw_queue_push(q1, &items[1]));
	ASSERT_OK(lw_queue_pop(q1, never_cb, NULL));
	ASSERT_OK(lw_queue_new(loop, &q2));
	ASSERT_OK(lw_queue_pop(q2, never_cb, NULL));
}

TEST(queue_loop_free_releases)
{
	lw_loop_t *loop = new_loop();
	int items[2];

	leave_queues(loop, items);
	lw_loop_free(loop);
	if (__lsan_do_recoverable_leak_check != NULL)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
}

struct site_ctx {
	int found;
	uint64_t calls;
};

static void find_site(const lw_site_info_t *s, void *arg)
{
	struct site_ctx *c = arg;

	if (s->fn == LW_FN(order_pop_cb)) {
		ASSERT_EQ(s->kind, LW_KIND_QUEUE);
		c->found++;
		c->calls = s->calls;
	}
}

TEST(queue_invalid_args_and_site)
{
	lw_loop_t *loop = new_loop();
	lw_queue_t *q;
	struct order_ctx c = { 0 };
	struct order_pop pop = { &c, 0 };
	struct site_ctx sc = { 0 };

	ASSERT_EQ(lw_queue_new(NULL, &q), -EINVAL);
	ASSERT_EQ(lw_queue_new(loop, NULL), -EINVAL);
	ASSERT_OK(lw_queue_new(loop, &q));
	ASSERT_EQ(lw_queue_pop(q, NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_queue_pop(NULL, order_pop_cb, NULL), -EINVAL);
	ASSERT_EQ(lw_queue_push(NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_queue_size(NULL), 0);
	lw_queue_free(NULL);

	/* The failed pop left nothing waiting: this item stays. */
	ASSERT_OK(lw_queue_push(q, &c));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(lw_queue_size(q), 1);

	/* Pops are dispatched as queue sites. */
	ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pop));
	ASSERT_OK(lw_queue_push(q, &c));
	ASSERT_OK(lw_queue_pop(q, order_pop_cb, &pop));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(c.n, 2);
	lw_site_foreach(loop, find_site, &sc);
	ASSERT_EQ(sc.found, 1);
	ASSERT_EQ(sc.calls, 2);
	lw_queue_free(q);
	lw_loop_free(loop);
}
