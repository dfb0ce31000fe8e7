/*
 * test_channel.c - EM::Channel: delivery order, unsubscribe (also from inside
 * a subscriber), pushes from other threads landing on the loop thread,
 * unique ids, free from inside a subscriber.
 */
#include "lwtest.h"

#include "loopwatch.h"

#include <pthread.h>

static lw_loop_t *new_loop(void)
{
	lw_loop_t *loop = NULL;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	return loop;
}

/* A log of (subscriber tag, item) deliveries. */
struct log {
	int tags[64];
	void *items[64];
	int n;
};

struct sub {
	struct log *log;
	int tag;
	int64_t id;
	/* Optional action taken on delivery. */
	lw_channel_t *ch;
	int64_t unsubscribe_id; /* 0: none */
	int unsubscribe_result;
	int free_channel;
};

static void sub_cb(lw_channel_t *ch, void *arg, void *item)
{
	struct sub *s = arg;

	ASSERT_LT(s->log->n, 64);
	s->log->tags[s->log->n] = s->tag;
	s->log->items[s->log->n] = item;
	s->log->n++;
	if (s->unsubscribe_id != 0) {
		s->unsubscribe_result =
			lw_channel_unsubscribe(ch, s->unsubscribe_id);
		s->unsubscribe_id = 0;
	}
	if (s->free_channel)
		lw_channel_free(ch);
}

static void subscribe(lw_channel_t *ch, struct sub *s, struct log *l, int tag)
{
	*s = (struct sub){ .log = l, .tag = tag, .ch = ch };
	s->id = lw_channel_subscribe(ch, sub_cb, s);
	ASSERT_GT(s->id, 0);
}

/* Push from inside the running loop, where delivery is immediate. */
struct push_ctx {
	lw_channel_t *ch;
	void *item;
	int delivered_before_return;
	struct log *log;
};

static void push_tick(lw_loop_t *loop, void *arg)
{
	struct push_ctx *p = arg;
	int before = p->log->n;

	(void)loop;
	ASSERT(lw_on_loop_thread(loop));
	ASSERT_OK(lw_channel_push(p->ch, p->item));
	p->delivered_before_return = p->log->n - before;
}

/* Push `item` from a tick of the running loop; returns how many
 * deliveries happened inside lw_channel_push(). */
static int push_on_loop(lw_loop_t *loop, lw_channel_t *ch, struct log *l,
			void *item)
{
	struct push_ctx p = { ch, item, -1, l };

	ASSERT_OK(lw_next_tick(loop, push_tick, &p));
	ASSERT_GE(lw_run_once(loop, 0), 0);
	return p.delivered_before_return;
}

TEST(channel_subscribers_in_order)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	struct sub s[4];
	int item1, item2;

	ASSERT_OK(lw_channel_new(loop, &ch));
	for (int i = 0; i < 4; i++)
		subscribe(ch, &s[i], &l, i);
	ASSERT_EQ(lw_channel_subscribers(ch), 4);

	/* On the loop thread: delivered to all, in order, at once. */
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item1), 4);
	ASSERT_EQ(l.n, 4);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(l.tags[i], i);
		ASSERT(l.items[i] == &item1);
	}

	/* Outside a run (not on the loop thread): posted, delivered by the
	 * next iteration. */
	ASSERT_OK(lw_channel_push(ch, &item2));
	ASSERT_EQ(l.n, 4);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(l.n, 8);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(l.tags[4 + i], i);
		ASSERT(l.items[4 + i] == &item2);
	}
	lw_channel_free(ch);
	lw_loop_free(loop);
}

TEST(channel_unsubscribe)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	struct sub s[3];
	int item;

	ASSERT_OK(lw_channel_new(loop, &ch));
	for (int i = 0; i < 3; i++)
		subscribe(ch, &s[i], &l, i);
	ASSERT_OK(lw_channel_unsubscribe(ch, s[1].id));
	ASSERT_EQ(lw_channel_unsubscribe(ch, s[1].id), -ENOENT);
	ASSERT_EQ(lw_channel_unsubscribe(ch, 9999), -ENOENT);
	ASSERT_EQ(lw_channel_unsubscribe(ch, -1), -ENOENT);
	ASSERT_EQ(lw_channel_subscribers(ch), 2);

	ASSERT_EQ(push_on_loop(loop, ch, &l, &item), 2);
	ASSERT_EQ(l.tags[0], 0);
	ASSERT_EQ(l.tags[1], 2);

	ASSERT_OK(lw_channel_unsubscribe(ch, s[0].id));
	ASSERT_OK(lw_channel_unsubscribe(ch, s[2].id));
	ASSERT_EQ(lw_channel_subscribers(ch), 0);
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item), 0);
	ASSERT_EQ(l.n, 2);
	lw_channel_free(ch);
	lw_loop_free(loop);
}

TEST(channel_unsubscribe_from_callback)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	struct sub s[5];
	int item1, item2;

	ASSERT_OK(lw_channel_new(loop, &ch));
	for (int i = 0; i < 5; i++)
		subscribe(ch, &s[i], &l, i);
	/* 0 removes itself; 1 removes 3 (later: 3 must not get this item);
	 * 4 removes 2 (earlier: it already got it). */
	s[0].unsubscribe_id = s[0].id;
	s[1].unsubscribe_id = s[3].id;
	s[4].unsubscribe_id = s[2].id;

	ASSERT_EQ(push_on_loop(loop, ch, &l, &item1), 4);
	ASSERT_EQ(s[0].unsubscribe_result, 0);
	ASSERT_EQ(s[1].unsubscribe_result, 0);
	ASSERT_EQ(s[4].unsubscribe_result, 0);
	ASSERT_EQ(l.tags[0], 0);
	ASSERT_EQ(l.tags[1], 1);
	ASSERT_EQ(l.tags[2], 2);
	ASSERT_EQ(l.tags[3], 4);
	ASSERT_EQ(lw_channel_subscribers(ch), 2);

	/* Next time only 1 and 4 are left. */
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item2), 2);
	ASSERT_EQ(l.tags[4], 1);
	ASSERT_EQ(l.tags[5], 4);
	ASSERT(l.items[5] == &item2);
	/* The ones removed inside callbacks are gone for good. */
	ASSERT_EQ(lw_channel_unsubscribe(ch, s[0].id), -ENOENT);
	ASSERT_EQ(lw_channel_unsubscribe(ch, s[3].id), -ENOENT);
	ASSERT_OK(lw_channel_unsubscribe(ch, s[4].id));
	ASSERT_EQ(lw_channel_subscribers(ch), 1);
	lw_channel_free(ch);
	lw_loop_free(loop);
}

/* Subscribing from inside a delivery: the new one gets the next item. */
static struct sub late_sub;
static struct log *late_log;

static void subscribing_cb(lw_channel_t *ch, void *arg, void *item)
{
	int *done = arg;

	(void)item;
	if (!*done) {
		subscribe(ch, &late_sub, late_log, 42);
		*done = 1;
	}
}

TEST(channel_subscribe_during_push)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	int done = 0, item1, item2;

	late_log = &l;
	ASSERT_OK(lw_channel_new(loop, &ch));
	ASSERT_GT(lw_channel_subscribe(ch, subscribing_cb, &done), 0);
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item1), 0);
	ASSERT_EQ(lw_channel_subscribers(ch), 2);
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item2), 1);
	ASSERT_EQ(l.tags[0], 42);
	ASSERT(l.items[0] == &item2);
	lw_channel_free(ch);
	lw_loop_free(loop);
}

/* ---- pushes from other threads ---- */

#define PUSHERS 4
#define PER_PUSHER 20000

struct mt_ctx {
	lw_loop_t *loop;
	lw_channel_t *ch;
	pthread_t loop_thread;
	uint32_t next_seq[2][PUSHERS]; /* per subscriber, per pusher */
	uint64_t got[2];
	int wrong_thread, out_of_order;
};

struct mt_sub {
	struct mt_ctx *c;
	int idx;
};

static void mt_sub_cb(lw_channel_t *ch, void *arg, void *item)
{
	struct mt_sub *s = arg;
	struct mt_ctx *c = s->c;
	uint64_t v = (uint64_t)(uintptr_t)item;
	uint32_t pusher = (uint32_t)(v >> 32), seq = (uint32_t)v;

	(void)ch;
	if (!pthread_equal(pthread_self(), c->loop_thread))
		c->wrong_thread++;
	ASSERT_LT(pusher, PUSHERS);
	if (c->next_seq[s->idx][pusher] != seq)
		c->out_of_order++;
	c->next_seq[s->idx][pusher] = seq + 1;
	c->got[s->idx]++;
	/* The second subscriber sees each item after the first. */
	if (s->idx == 1 && c->got[1] == (uint64_t)PUSHERS * PER_PUSHER)
		lw_stop(c->loop);
}

struct pusher {
	struct mt_ctx *c;
	uint32_t id;
	int errors;
	int on_loop_thread;
};

static void *pusher_main(void *arg)
{
	struct pusher *p = arg;

	p->on_loop_thread = lw_on_loop_thread(p->c->loop);
	for (uint32_t seq = 0; seq < PER_PUSHER; seq++) {
		uint64_t v = ((uint64_t)p->id << 32) | seq;

		if (lw_channel_push(p->c->ch, (void *)(uintptr_t)v) != 0)
			p->errors++;
	}
	return NULL;
}

struct pushers {
	struct pusher p[PUSHERS];
	pthread_t th[PUSHERS];
};

static void start_pushers(lw_loop_t *loop, void *arg)
{
	struct pushers *ps = arg;

	(void)loop;
	for (int i = 0; i < PUSHERS; i++)
		ASSERT_EQ(pthread_create(&ps->th[i], NULL, pusher_main,
					 &ps->p[i]),
			  0);
}

TEST_T(channel_push_from_threads, 120)
{
	struct mt_ctx c = { 0 };
	struct mt_sub subs[2] = { { &c, 0 }, { &c, 1 } };
	struct pushers ps;

	c.loop = new_loop();
	c.loop_thread = pthread_self();
	ASSERT_OK(lw_channel_new(c.loop, &c.ch));
	ASSERT_GT(lw_channel_subscribe(c.ch, mt_sub_cb, &subs[0]), 0);
	ASSERT_GT(lw_channel_subscribe(c.ch, mt_sub_cb, &subs[1]), 0);
	for (int i = 0; i < PUSHERS; i++)
		ps.p[i] = (struct pusher){ &c, (uint32_t)i, 0, -1 };
	/* The threads start while the loop runs, so it is really running
	 * on another thread when they push. */
	ASSERT_OK(lw_next_tick(c.loop, start_pushers, &ps));
	ASSERT_OK(lw_run(c.loop));
	for (int i = 0; i < PUSHERS; i++) {
		ASSERT_EQ(pthread_join(ps.th[i], NULL), 0);
		ASSERT_EQ(ps.p[i].errors, 0);
		ASSERT_EQ(ps.p[i].on_loop_thread, 0);
	}
	ASSERT_EQ(c.wrong_thread, 0);
	ASSERT_EQ(c.out_of_order, 0);
	ASSERT_EQ(c.got[0], (uint64_t)PUSHERS * PER_PUSHER);
	ASSERT_EQ(c.got[1], (uint64_t)PUSHERS * PER_PUSHER);
	lw_channel_free(c.ch);
	lw_loop_free(c.loop);
}

TEST(channel_ids_unique)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch, *ch2;
	struct log l = { 0 };
	static struct sub s[200];
	int64_t ids[300];
	int n = 0;

	ASSERT_OK(lw_channel_new(loop, &ch));
	ASSERT_OK(lw_channel_new(loop, &ch2));
	for (int i = 0; i < 100; i++) {
		subscribe(ch, &s[i], &l, i);
		ids[n++] = s[i].id;
	}
	/* Free some, add more: an id is never given twice. */
	for (int i = 0; i < 100; i += 2)
		ASSERT_OK(lw_channel_unsubscribe(ch, s[i].id));
	for (int i = 100; i < 200; i++) {
		subscribe(ch, &s[i], &l, i);
		ids[n++] = s[i].id;
	}
	ASSERT_EQ(lw_channel_subscribers(ch), 150);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			ASSERT_NE(ids[i], ids[j]);
	/* Unsubscribing by id after all that still finds the right one. */
	ASSERT_OK(lw_channel_unsubscribe(ch, s[151].id));
	ASSERT_EQ(lw_channel_unsubscribe(ch, s[150].id), 0);
	ASSERT_EQ(lw_channel_unsubscribe(ch, s[151].id), -ENOENT);
	ASSERT_EQ(lw_channel_subscribers(ch), 148);
	/* Ids of another channel mean nothing here. */
	ASSERT_EQ(lw_channel_unsubscribe(ch2, s[1].id), -ENOENT);
	lw_channel_free(ch);
	lw_channel_free(ch2);
	lw_loop_free(loop);
}

TEST(channel_free_inside_callback)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	struct sub s[3];
	int item;

	/* Freed by the second subscriber during an immediate delivery. */
	ASSERT_OK(lw_channel_new(loop, &ch));
	for (int i = 0; i < 3; i++)
		subscribe(ch, &s[i], &l, i);
	s[1].free_channel = 1;
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item), 2);
	ASSERT_EQ(l.tags[1], 1);

	/* Freed during a posted delivery, with more items posted behind. */
	l.n = 0;
	ASSERT_OK(lw_channel_new(loop, &ch));
	for (int i = 0; i < 3; i++)
		subscribe(ch, &s[i], &l, i);
	s[0].free_channel = 1;
	ASSERT_OK(lw_channel_push(ch, &item));
	ASSERT_OK(lw_channel_push(ch, &item));
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(l.n, 1);

	/* Freed with a delivery posted but not yet run. */
	l.n = 0;
	ASSERT_OK(lw_channel_new(loop, &ch));
	subscribe(ch, &s[0], &l, 0);
	ASSERT_OK(lw_channel_push(ch, &item));
	lw_channel_free(ch);
	for (int i = 0; i < 3; i++)
		ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(l.n, 0);
	lw_loop_free(loop);
}

int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Out of line, so that no pointer to what it makes stays in the test's frame
 * for LeakSanitizer to find. */
static __attribute__((noinline)) void
leave_channels(lw_loop_t *loop, struct log *l, struct sub *s, int *item)
{
	lw_channel_t *ch1, *ch2;

	/* One with a delivery posted that never runs, one idle. */
	ASSERT_OK(lw_channel_new(loop, &ch1));
	subscribe(ch1, &s[0], l, 0);
	ASSERT_OK(lw_channel_push(ch1, item));
	ASSERT_OK(lw_channel_new(loop, &ch2));
	subscribe(ch2, &s[1], l, 1);
	s[0].ch = s[1].ch = NULL;
}

TEST(channel_loop_free_releases)
{
	lw_loop_t *loop = new_loop();
	struct log l = { 0 };
	struct sub s[2];
	int item;

	leave_channels(loop, &l, s, &item);
	lw_loop_free(loop);
	ASSERT_EQ(l.n, 0);
	if (__lsan_do_recoverable_leak_check != NULL)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
}

struct site_ctx {
	int found;
	uint64_t calls;
};

static void find_site(const lw_site_info_t *si, void *arg)
{
	struct site_ctx *c = arg;

	if (si->fn == LW_FN(sub_cb)) {
		ASSERT_EQ(si->kind, LW_KIND_CHANNEL);
		c->found++;
		c->calls = si->calls;
	}
}

TEST(channel_invalid_args_and_site)
{
	lw_loop_t *loop = new_loop();
	lw_channel_t *ch;
	struct log l = { 0 };
	struct sub s[2];
	struct site_ctx sc = { 0 };
	int item;

	ASSERT_EQ(lw_channel_new(NULL, &ch), -EINVAL);
	ASSERT_EQ(lw_channel_new(loop, NULL), -EINVAL);
	ASSERT_OK(lw_channel_new(loop, &ch));
	ASSERT_EQ(lw_channel_subscribe(ch, NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_channel_subscribe(NULL, sub_cb, NULL), -EINVAL);
	ASSERT_EQ(lw_channel_push(NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_channel_unsubscribe(NULL, 1), -EINVAL);
	ASSERT_EQ(lw_channel_subscribers(ch), 0);
	lw_channel_free(NULL);

	subscribe(ch, &s[0], &l, 0);
	subscribe(ch, &s[1], &l, 1);
	ASSERT_EQ(push_on_loop(loop, ch, &l, &item), 2);
	lw_site_foreach(loop, find_site, &sc);
	ASSERT_EQ(sc.found, 1);
	ASSERT_EQ(sc.calls, 2);
	lw_channel_free(ch);
	lw_loop_free(loop);
}
