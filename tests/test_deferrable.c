/*
 * test_deferrable.c - EM::Deferrable semantics: transitions, order, late
 * callbacks, timeouts, cancel, callbacks added while resolving, and freeing
 * from inside a callback (run under ASan to prove it safe).
 */
#include "lwtest.h"

#include "loopwatch.h"

/* A log of which callbacks ran, in order, and with what value. */
struct log {
	int ids[32];
	void *values[32];
	int n;
};

static void note(struct log *l, int id, void *value)
{
	ASSERT_LT(l->n, 32);
	l->ids[l->n] = id;
	l->values[l->n] = value;
	l->n++;
}

/* The callback's arg is a {log, id} pair. */
struct rec {
	struct log *log;
	int id;
};

static void record_cb(lw_deferrable_t *d, void *arg, void *value)
{
	struct rec *r = arg;

	(void)d;
	note(r->log, r->id, value);
}

static lw_loop_t *new_loop(void)
{
	lw_loop_t *loop = NULL;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	return loop;
}

TEST(deferrable_succeed)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 }, c2 = { &l, 2 }, e1 = { &l, -1 };
	int v;

	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_EQ(lw_deferrable_state(d), LW_PENDING);
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c2, NULL));
	ASSERT_EQ(l.n, 0);

	ASSERT_OK(lw_deferrable_succeed(d, &v));
	ASSERT_EQ(lw_deferrable_state(d), LW_SUCCEEDED);
	ASSERT(lw_deferrable_value(d) == &v);
	ASSERT_EQ(l.n, 2);
	ASSERT_EQ(l.ids[0], 1);
	ASSERT_EQ(l.ids[1], 2);
	ASSERT(l.values[0] == &v && l.values[1] == &v);

	lw_deferrable_set_data(d, &l);
	ASSERT(lw_deferrable_data(d) == &l);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

TEST(deferrable_fail)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 }, e1 = { &l, -1 }, e2 = { &l, -2 };
	int v;

	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e2, NULL));

	ASSERT_OK(lw_deferrable_fail(d, &v));
	ASSERT_EQ(lw_deferrable_state(d), LW_FAILED);
	ASSERT(lw_deferrable_value(d) == &v);
	ASSERT_EQ(l.n, 2);
	ASSERT_EQ(l.ids[0], -1);
	ASSERT_EQ(l.ids[1], -2);
	ASSERT(l.values[0] == &v && l.values[1] == &v);

	lw_deferrable_free(d);
	lw_loop_free(loop);
}

TEST(deferrable_double_resolve)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 }, e1 = { &l, -1 };
	int v1, v2;

	/* succeed, then anything: -EALREADY, nothing runs again. */
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, NULL));
	ASSERT_OK(lw_deferrable_succeed(d, &v1));
	ASSERT_EQ(lw_deferrable_succeed(d, &v2), -EALREADY);
	ASSERT_EQ(lw_deferrable_fail(d, &v2), -EALREADY);
	ASSERT_EQ(lw_deferrable_timeout(d, 10, &v2), -EALREADY);
	ASSERT_EQ(lw_deferrable_state(d), LW_SUCCEEDED);
	ASSERT(lw_deferrable_value(d) == &v1);
	ASSERT_EQ(l.n, 1);
	ASSERT_EQ(l.ids[0], 1);
	lw_deferrable_free(d);

	/* fail, then anything: -EALREADY. */
	l.n = 0;
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, NULL));
	ASSERT_OK(lw_deferrable_fail(d, &v1));
	ASSERT_EQ(lw_deferrable_fail(d, &v2), -EALREADY);
	ASSERT_EQ(lw_deferrable_succeed(d, &v2), -EALREADY);
	ASSERT_EQ(lw_deferrable_state(d), LW_FAILED);
	ASSERT(lw_deferrable_value(d) == &v1);
	ASSERT_EQ(l.n, 1);
	ASSERT_EQ(l.ids[0], -1);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

TEST(deferrable_order)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec recs[10];
	int i;

	/* Ten callbacks: they must run in the order they were added. */
	ASSERT_OK(lw_deferrable_new(loop, &d));
	for (i = 0; i < 10; i++) {
		recs[i] = (struct rec){ &l, i };
		ASSERT_OK(lw_deferrable_callback(d, record_cb, &recs[i], NULL));
	}
	ASSERT_OK(lw_deferrable_succeed(d, NULL));
	ASSERT_EQ(l.n, 10);
	for (i = 0; i < 10; i++)
		ASSERT_EQ(l.ids[i], i);
	lw_deferrable_free(d);

	/* The same for errbacks mixed with callbacks. */
	l.n = 0;
	ASSERT_OK(lw_deferrable_new(loop, &d));
	for (i = 0; i < 10; i++) {
		recs[i] = (struct rec){ &l, i };
		if (i % 3 == 0)
			ASSERT_OK(lw_deferrable_callback(d, record_cb, &recs[i],
							 NULL));
		else
			ASSERT_OK(lw_deferrable_errback(d, record_cb, &recs[i],
							NULL));
	}
	ASSERT_OK(lw_deferrable_fail(d, NULL));
	ASSERT_EQ(l.n, 6);
	ASSERT_EQ(l.ids[0], 1);
	ASSERT_EQ(l.ids[1], 2);
	ASSERT_EQ(l.ids[2], 4);
	ASSERT_EQ(l.ids[3], 5);
	ASSERT_EQ(l.ids[4], 7);
	ASSERT_EQ(l.ids[5], 8);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

TEST(deferrable_late_callback)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 }, c2 = { &l, 2 }, e1 = { &l, -1 };
	uint64_t id = 0;
	int v;

	/* Succeeded: a callback runs before the add returns, with the
	 * value; an errback is dropped, now and later. */
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_succeed(d, &v));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, &id));
	ASSERT_EQ(l.n, 1);
	ASSERT_EQ(l.ids[0], 1);
	ASSERT(l.values[0] == &v);
	/* It has run: nothing left to cancel. */
	ASSERT_EQ(lw_deferrable_cancel(d, id), -ENOENT);
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, &id));
	ASSERT_EQ(lw_deferrable_cancel(d, id), -ENOENT);
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c2, NULL));
	ASSERT_EQ(l.n, 2);
	ASSERT_EQ(l.ids[1], 2);
	/* Neither the loop nor anything else runs the dropped errback. */
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(l.n, 2);
	lw_deferrable_free(d);

	/* Failed: the mirror image. */
	l.n = 0;
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_fail(d, &v));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_EQ(l.n, 0);
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, NULL));
	ASSERT_EQ(l.n, 1);
	ASSERT_EQ(l.ids[0], -1);
	ASSERT(l.values[0] == &v);
	ASSERT_GE(lw_run_once(loop, 0), 0);
	ASSERT_EQ(l.n, 1);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

struct timeout_ctx {
	lw_loop_t *loop;
	struct log log;
	uint64_t t0;
	uint64_t fired_after;
};

static void timeout_errback(lw_deferrable_t *d, void *arg, void *value)
{
	struct timeout_ctx *c = arg;

	(void)d;
	c->fired_after = lwt_now_ns() - c->t0;
	note(&c->log, -1, value);
	lw_stop(c->loop);
}

static void timeout_callback(lw_deferrable_t *d, void *arg, void *value)
{
	struct timeout_ctx *c = arg;

	(void)d;
	note(&c->log, 1, value);
}

static void stop_timer_cb(lw_timer_t *t)
{
	lw_stop(t->data);
}

TEST(deferrable_timeout_fails)
{
	struct timeout_ctx c = { 0 };
	lw_deferrable_t *d;
	int tv;

	c.loop = new_loop();
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, timeout_callback, &c, NULL));
	ASSERT_OK(lw_deferrable_errback(d, timeout_errback, &c, NULL));
	ASSERT_EQ(lw_deferrable_timeout(d, -1, &tv), -EINVAL);
	c.t0 = lwt_now_ns();
	ASSERT_OK(lw_deferrable_timeout(d, 50, &tv));
	ASSERT_OK(lw_run(c.loop));

	ASSERT_EQ(c.log.n, 1);
	ASSERT_EQ(c.log.ids[0], -1);
	ASSERT(c.log.values[0] == &tv);
	ASSERT_EQ(lw_deferrable_state(d), LW_FAILED);
	ASSERT(lw_deferrable_value(d) == &tv);
	/* Not before it was due (a generous lower bound only). */
	ASSERT_GE(c.fired_after, 45 * 1000000ull);
	lw_deferrable_free(d);
	lw_loop_free(c.loop);
}

TEST(deferrable_timeout_replaced)
{
	struct timeout_ctx c = { 0 };
	lw_deferrable_t *d;
	int tv1, tv2;

	/* A second timeout replaces the first: it fires once, later, with
	 * the second value. */
	c.loop = new_loop();
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_errback(d, timeout_errback, &c, NULL));
	c.t0 = lwt_now_ns();
	ASSERT_OK(lw_deferrable_timeout(d, 10, &tv1));
	ASSERT_OK(lw_deferrable_timeout(d, 80, &tv2));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.log.n, 1);
	ASSERT(c.log.values[0] == &tv2);
	ASSERT_GE(c.fired_after, 75 * 1000000ull);
	lw_deferrable_free(d);
	lw_loop_free(c.loop);
}

TEST(deferrable_no_timeout_after_succeed)
{
	struct timeout_ctx c = { 0 };
	lw_deferrable_t *d, *d2;
	lw_timer_t stop;
	int tv, sv;

	c.loop = new_loop();
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, timeout_callback, &c, NULL));
	ASSERT_OK(lw_deferrable_errback(d, timeout_errback, &c, NULL));
	ASSERT_OK(lw_deferrable_timeout(d, 20, &tv));
	ASSERT_OK(lw_deferrable_succeed(d, &sv));

	/* And a cancelled timeout never fires either. */
	ASSERT_OK(lw_deferrable_new(c.loop, &d2));
	ASSERT_OK(lw_deferrable_errback(d2, timeout_errback, &c, NULL));
	ASSERT_OK(lw_deferrable_timeout(d2, 20, &tv));
	ASSERT_OK(lw_deferrable_cancel_timeout(d2));

	/* Run well past both deadlines. */
	ASSERT_OK(lw_timer_init(c.loop, &stop));
	stop.data = c.loop;
	ASSERT_OK(lw_timer_start(&stop, stop_timer_cb, 150, 0));
	ASSERT_OK(lw_run(c.loop));

	ASSERT_EQ(c.log.n, 1);
	ASSERT_EQ(c.log.ids[0], 1);
	ASSERT(c.log.values[0] == &sv);
	ASSERT_EQ(lw_deferrable_state(d), LW_SUCCEEDED);
	ASSERT_EQ(lw_deferrable_state(d2), LW_PENDING);
	lw_deferrable_free(d);
	lw_deferrable_free(d2);
	lw_loop_free(c.loop);
}

TEST(deferrable_cancel)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 }, c2 = { &l, 2 }, c3 = { &l, 3 },
		   e1 = { &l, -1 };
	uint64_t id1, id2, id3, ide;

	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, &id1));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c2, &id2));
	ASSERT_OK(lw_deferrable_errback(d, record_cb, &e1, &ide));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c3, &id3));
	ASSERT_NE(id1, id2);
	ASSERT_NE(id2, id3);
	ASSERT_NE(id1, ide);

	ASSERT_OK(lw_deferrable_cancel(d, id2));
	ASSERT_EQ(lw_deferrable_cancel(d, id2), -ENOENT);
	ASSERT_EQ(lw_deferrable_cancel(d, 12345), -ENOENT);
	ASSERT_OK(lw_deferrable_succeed(d, NULL));
	ASSERT_EQ(l.n, 2);
	ASSERT_EQ(l.ids[0], 1);
	ASSERT_EQ(l.ids[1], 3);
	/* Ran or dropped: neither can be cancelled any more. */
	ASSERT_EQ(lw_deferrable_cancel(d, id1), -ENOENT);
	ASSERT_EQ(lw_deferrable_cancel(d, ide), -ENOENT);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

/* Cancelling a later callback from inside an earlier one. */
struct cancel_ctx {
	struct log log;
	uint64_t victim;
	int cancel_result;
};

static void cancelling_cb(lw_deferrable_t *d, void *arg, void *value)
{
	struct cancel_ctx *c = arg;

	note(&c->log, 10, value);
	c->cancel_result = lw_deferrable_cancel(d, c->victim);
}

TEST(deferrable_cancel_from_callback)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct cancel_ctx c = { 0 };
	struct rec c2 = { &c.log, 2 }, c3 = { &c.log, 3 };

	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, cancelling_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c2, &c.victim));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c3, NULL));
	ASSERT_OK(lw_deferrable_succeed(d, NULL));
	ASSERT_EQ(c.cancel_result, 0);
	ASSERT_EQ(c.log.n, 2);
	ASSERT_EQ(c.log.ids[0], 10);
	ASSERT_EQ(c.log.ids[1], 3);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

/* A callback that adds another while the deferrable resolves. */
struct nested_ctx {
	struct log log;
	struct rec added;
	int log_len_after_add;
};

static void adding_cb(lw_deferrable_t *d, void *arg, void *value)
{
	struct nested_ctx *c = arg;

	note(&c->log, 1, value);
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c->added, NULL));
	/* Queued behind the ones already waiting, not run inside this
	 * add. */
	c->log_len_after_add = c->log.n;
}

TEST(deferrable_callback_added_during_resolution)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct nested_ctx c = { 0 };
	struct rec c2 = { &c.log, 2 }, c3 = { &c.log, 3 };
	int v;

	c.added = (struct rec){ &c.log, 99 };
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, adding_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c2, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c3, NULL));
	ASSERT_OK(lw_deferrable_succeed(d, &v));
	ASSERT_EQ(c.log_len_after_add, 1);
	ASSERT_EQ(c.log.n, 4);
	ASSERT_EQ(c.log.ids[0], 1);
	ASSERT_EQ(c.log.ids[1], 2);
	ASSERT_EQ(c.log.ids[2], 3);
	ASSERT_EQ(c.log.ids[3], 99);
	ASSERT(c.log.values[3] == &v);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

/* Freeing the deferrable from inside its own callback. */
struct free_ctx {
	struct log log;
	lw_loop_t *loop;
};

static void freeing_cb(lw_deferrable_t *d, void *arg, void *value)
{
	struct free_ctx *c = arg;

	note(&c->log, 1, value);
	lw_deferrable_free(d);
	/* Still valid until we return: the release is deferred. */
	ASSERT(lw_deferrable_value(d) == value);
}

static void after_free_cb(lw_deferrable_t *d, void *arg, void *value)
{
	struct free_ctx *c = arg;

	(void)d;
	note(&c->log, 2, value);
}

static void freeing_errback_stop(lw_deferrable_t *d, void *arg, void *value)
{
	struct free_ctx *c = arg;

	freeing_cb(d, arg, value);
	lw_stop(c->loop);
}

TEST(deferrable_free_inside_callback)
{
	struct free_ctx c = { 0 };
	lw_deferrable_t *d;
	lw_timer_t stop;
	int v;

	c.loop = new_loop();

	/* During resolution: the callbacks after it never run. */
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, freeing_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_callback(d, after_free_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_callback(d, after_free_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_timeout(d, 20, NULL));
	ASSERT_OK(lw_deferrable_succeed(d, &v));
	ASSERT_EQ(c.log.n, 1);
	ASSERT_EQ(c.log.ids[0], 1);

	/* A late callback that runs at once and frees it. */
	c.log.n = 0;
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_succeed(d, &v));
	ASSERT_OK(lw_deferrable_callback(d, freeing_cb, &c, NULL));
	ASSERT_EQ(c.log.n, 1);

	/* From an errback run by the timeout (inside the timer's
	 * callback). */
	c.log.n = 0;
	ASSERT_OK(lw_deferrable_new(c.loop, &d));
	ASSERT_OK(lw_deferrable_errback(d, freeing_errback_stop, &c, NULL));
	ASSERT_OK(lw_deferrable_errback(d, after_free_cb, &c, NULL));
	ASSERT_OK(lw_deferrable_timeout(d, 10, &v));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.log.n, 1);
	ASSERT(c.log.values[0] == &v);

	/* The loop keeps running fine afterwards (the first deferrable's
	 * timeout must be gone with it). */
	ASSERT_OK(lw_timer_init(c.loop, &stop));
	stop.data = c.loop;
	ASSERT_OK(lw_timer_start(&stop, stop_timer_cb, 60, 0));
	ASSERT_OK(lw_run(c.loop));
	ASSERT_EQ(c.log.n, 1);
	lw_loop_free(c.loop);
}

TEST(deferrable_invalid_args)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	uint64_t id = 7;

	ASSERT_EQ(lw_deferrable_new(NULL, &d), -EINVAL);
	ASSERT_EQ(lw_deferrable_new(loop, NULL), -EINVAL);
	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_EQ(lw_deferrable_callback(d, NULL, NULL, &id), -EINVAL);
	ASSERT_EQ(lw_deferrable_errback(d, NULL, NULL, &id), -EINVAL);
	ASSERT_EQ(id, 7);
	ASSERT_EQ(lw_deferrable_callback(NULL, record_cb, NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_deferrable_succeed(NULL, NULL), -EINVAL);
	ASSERT_EQ(lw_deferrable_timeout(d, -5, NULL), -EINVAL);
	ASSERT_EQ(lw_deferrable_state(d), LW_PENDING);
	lw_deferrable_free(NULL);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

struct site_ctx {
	int found;
	uint64_t calls;
};

static void find_site(const lw_site_info_t *s, void *arg)
{
	struct site_ctx *c = arg;

	if (s->fn == LW_FN(record_cb) && s->kind == LW_KIND_DEFERRABLE) {
		c->found++;
		c->calls = s->calls;
	}
}

TEST(deferrable_site_kind)
{
	lw_loop_t *loop = new_loop();
	lw_deferrable_t *d;
	struct log l = { 0 };
	struct rec c1 = { &l, 1 };
	struct site_ctx sc = { 0 };

	ASSERT_OK(lw_deferrable_new(loop, &d));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	ASSERT_OK(lw_deferrable_succeed(d, NULL));
	ASSERT_OK(lw_deferrable_callback(d, record_cb, &c1, NULL));
	lw_site_foreach(loop, find_site, &sc);
	ASSERT_EQ(sc.found, 1);
	ASSERT_EQ(sc.calls, 3);
	lw_deferrable_free(d);
	lw_loop_free(loop);
}

/* Under ASan, LeakSanitizer can be asked for a check now; the runner's test
 * processes end with _exit(), which skips the check at exit. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Out of line, so that no pointer to what it makes stays in the test's frame
 * for LeakSanitizer to find. */
static __attribute__((noinline)) void leave_deferrables(lw_loop_t *loop,
							struct rec *c1)
{
	lw_deferrable_t *d1, *d2;

	/* One pending with a timeout armed and callbacks queued, one
	 * resolved. */
	ASSERT_OK(lw_deferrable_new(loop, &d1));
	ASSERT_OK(lw_deferrable_callback(d1, record_cb, c1, NULL));
	ASSERT_OK(lw_deferrable_errback(d1, record_cb, c1, NULL));
	ASSERT_OK(lw_deferrable_timeout(d1, 1000, NULL));
	ASSERT_OK(lw_deferrable_new(loop, &d2));
	ASSERT_OK(lw_deferrable_succeed(d2, NULL));
}

TEST(deferrable_loop_free_releases)
{
	lw_loop_t *loop = new_loop();
	struct log l = { 0 };
	struct rec c1 = { &l, 1 };

	leave_deferrables(loop, &c1);
	lw_loop_free(loop);
	ASSERT_EQ(l.n, 0);
	if (__lsan_do_recoverable_leak_check != NULL)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
}
