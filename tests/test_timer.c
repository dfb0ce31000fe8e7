/* test_timer.c - timers: order, stability, cancellation, periodic drift. */
#include "lwtest.h"
#include "loopwatch.h"

#include "internal.h" /* the loop's wait_from */

#include <pthread.h>

struct order {
	int seen[64];
	int n;
	lw_timer_t t[64];
	lw_loop_t *loop;
};

static void record(lw_timer_t *t)
{
	struct order *o = t->loop ? lw_loop_data(t->loop) : NULL;
	o->seen[o->n++] = (int)(intptr_t)t->data;
	if (o->n == 10)
		lw_stop(t->loop);
}

TEST(timer_order_and_ties)
{
	lw_loop_t *loop;
	struct order o = { 0 };
	ASSERT_OK(lw_loop_new(&loop, NULL));
	lw_loop_set_data(loop, &o);
	/* Deadlines 50, 10, 30, 10, 10, 40, 20, 30, 0, 0 ms: expect sorted by
	 * deadline, equal deadlines in start order. */
	int ms[10] = { 50, 10, 30, 10, 10, 40, 20, 30, 0, 0 };
	for (int i = 0; i < 10; i++) {
		ASSERT_OK(lw_timer_init(loop, &o.t[i]));
		o.t[i].data = (void *)(intptr_t)i;
		ASSERT_OK(lw_timer_start(&o.t[i], record, ms[i], 0));
	}
	ASSERT_OK(lw_run(loop));
	int want[10] = { 8, 9, 1, 3, 4, 6, 2, 7, 5, 0 };
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(o.seen[i], want[i]);
	lw_loop_free(loop);
}

/* A timer callback cancels the other timers due in the same pass, one of
 * them later in the expired set, and stops itself. */
static lw_timer_t ca, cb_, cc, cd;
static int fired_a, fired_b, fired_c, fired_d;

static void cancel_c_fire(lw_timer_t *t)
{
	fired_a++;
	ASSERT_OK(lw_timer_stop(&cc)); /* due in the same pass */
	ASSERT_OK(lw_timer_stop(t)); /* itself, while firing */
	ASSERT(!lw_timer_is_active(&cc));
}
static void b_fire(lw_timer_t *t)
{
	fired_b++;
	/* A periodic timer stops itself from its own callback. */
	if (fired_b == 3)
		ASSERT_OK(lw_timer_stop(t));
}
static void c_fire(lw_timer_t *t)
{
	fired_c++;
}
static void d_fire(lw_timer_t *t)
{
	fired_d++;
	lw_stop(t->loop);
}

TEST(timer_cancel_inside_callbacks)
{
	lw_loop_t *loop;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_timer_init(loop, &ca));
	ASSERT_OK(lw_timer_init(loop, &cb_));
	ASSERT_OK(lw_timer_init(loop, &cc));
	ASSERT_OK(lw_timer_init(loop, &cd));
	ASSERT_OK(lw_timer_start(&ca, cancel_c_fire, 10, 0));
	ASSERT_OK(lw_timer_start(&cc, c_fire, 10, 0));
	ASSERT_OK(lw_timer_start(&cb_, b_fire, 5, 5));
	ASSERT_OK(lw_timer_start(&cd, d_fire, 100, 0));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(fired_a, 1);
	ASSERT_EQ(fired_c, 0);
	ASSERT_EQ(fired_b, 3);
	ASSERT_EQ(fired_d, 1);
	ASSERT(!lw_timer_is_active(&cb_));
	lw_loop_free(loop);
}

/* A callback that restarts its own timer with timeout 0 must not spin
 * inside one pass: it fires once per iteration. */
static int zero_count;
static uint64_t zero_iter[5];
static void zero_again(lw_timer_t *t)
{
	lw_loop_stats_t st;
	lw_loop_stats(t->loop, &st);
	zero_iter[zero_count++] = st.iterations;
	if (zero_count == 5)
		lw_stop(t->loop);
	else
		ASSERT_OK(lw_timer_start(t, zero_again, 0, 0));
}

TEST(timer_zero_restart_once_per_iteration)
{
	lw_loop_t *loop;
	lw_timer_t t;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, zero_again, 0, 0));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(zero_count, 5);
	for (int i = 1; i < 5; i++)
		ASSERT_GT(zero_iter[i], zero_iter[i - 1]);
	lw_loop_free(loop);
}

/* A periodic timer's deadlines stay on the grid even when callbacks run
 * late: each next deadline is the first one plus a whole number of
 * periods, to the nanosecond, however late and however long the callbacks
 * ran (a timer rescheduled from "now" would drift off the grid by the
 * lateness and the work).  No bound on elapsed time: the grid is read from
 * the timer itself, so a loaded machine cannot fail this. */
#define DRIFT_TICKS 50
#define DRIFT_PERIOD_NS 10000000ull
static int drift_n;
static uint64_t drift_due[DRIFT_TICKS], drift_fired[DRIFT_TICKS];
static void drift_tick(lw_timer_t *t)
{
	uint64_t now = lwt_now_ns();

	drift_fired[drift_n] = now;
	drift_due[drift_n] = t->due; /* the next deadline, set before the call */
	/* Make each callback take part of the period, so each next one runs
	 * late by it. */
	while (lwt_now_ns() - now < 3000000)
		;
	if (++drift_n == DRIFT_TICKS)
		lw_stop(t->loop);
}

TEST(timer_periodic_drift_bounded)
{
	lw_loop_t *loop;
	lw_timer_t t;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, drift_tick, 10, 10));
	uint64_t first = t.due;
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(drift_n, DRIFT_TICKS);
	uint64_t prev = first, skipped = 0;
	for (int i = 0; i < DRIFT_TICKS; i++) {
		uint64_t d = drift_due[i];
		ASSERT_GT(d, prev);
		if ((d - first) % DRIFT_PERIOD_NS != 0)
			LWT_FAIL("tick %d: next deadline %.6f ms after the first, "
				 "off the 10 ms grid",
				 i, (double)(d - first) / 1e6);
		/* Never early: a callback runs at or after its deadline. */
		ASSERT_GE(drift_fired[i], d - DRIFT_PERIOD_NS);
		skipped += (d - prev) / DRIFT_PERIOD_NS - 1;
		prev = d;
	}
	/* Periods skipped by a loop that fell a whole period behind (a busy
	 * machine): allowed, and said. */
	if (skipped)
		fprintf(stderr, "timer_periodic_drift_bounded: %llu periods "
				"skipped (the machine was busy)\n",
			(unsigned long long)skipped);
	lw_loop_free(loop);
}

/* The wait for the next timer counts from after the callbacks that ran,
 * not from the time the loop woke up: a timer whose callback works 5 ms of
 * its 20 ms period would otherwise wake up 5 ms late every period (and the
 * lag loopwatch shows would be the loop's own doing).  Each wait before a
 * fire was counted from a time at or after the previous fire's end, read
 * by the callback itself (the loop's clock is the TSC converted to
 * CLOCK_MONOTONIC: a millisecond of slack, against the 5 ms it would be
 * off).  With the ring on and off: the ring gives the time for free, the
 * loop reads the clock without it. */
#define AFTER_FIRES 6
static uint64_t after_end[AFTER_FIRES], after_from[AFTER_FIRES];
static int after_n;
static void after_tick(lw_timer_t *t)
{
	after_from[after_n] = t->loop->wait_from;
	uint64_t s = lwt_now_ns();
	while (lwt_now_ns() - s < 5000000)
		;
	after_end[after_n] = lwt_now_ns();
	if (++after_n == AFTER_FIRES)
		lw_stop(t->loop);
}

TEST(timer_wait_counts_from_after_the_callbacks)
{
	for (int no_ring = 0; no_ring <= 1; no_ring++) {
		lw_loop_options_t o = { .no_ring = no_ring };
		lw_loop_t *loop;
		lw_timer_t t;

		after_n = 0;
		ASSERT_OK(lw_loop_new(&loop, &o));
		ASSERT_OK(lw_timer_init(loop, &t));
		ASSERT_OK(lw_timer_start(&t, after_tick, 20, 20));
		ASSERT_OK(lw_run(loop));
		ASSERT_EQ(after_n, AFTER_FIRES);
		for (int i = 1; i < AFTER_FIRES; i++)
			if (after_from[i] + 1000000 < after_end[i - 1])
				LWT_FAIL("ring %s: the wait before fire %d was "
					 "counted from %.3f ms before the "
					 "previous fire ended",
					 no_ring ? "off" : "on", i,
					 (double)(after_end[i - 1] -
						  after_from[i]) /
						 1e6);
		lw_loop_free(loop);
	}
}

/* A periodic timer that misses whole periods skips them: after a 55 ms
 * stall in its first callback, its second fire (late) sets the next
 * deadline on the grid past the present, skipping the periods missed,
 * instead of the one right after the missed deadline (which would fire
 * the missed ones back to back).  Read from the timer's deadlines, which
 * no load can move off the grid. */
static int skip_n;
static uint64_t skip_due[3];
static void skip_tick(lw_timer_t *t)
{
	skip_due[skip_n] = t->due; /* the next deadline, set before the call */
	if (skip_n++ == 0) {
		uint64_t s = lwt_now_ns();
		while (lwt_now_ns() - s < 55000000) /* miss 5 periods */
			;
	}
	if (skip_n == 3)
		lw_stop(t->loop);
}

TEST(timer_periodic_skips_missed_periods)
{
	const uint64_t period = 10000000;
	lw_loop_t *loop;
	lw_timer_t t;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, skip_tick, 10, 10));
	uint64_t first = t.due;
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(skip_n, 3);
	/* The first fire, on time or not, set the next period. */
	ASSERT_EQ(skip_due[0], first + period);
	/* The second came after the stall: at least 5 periods past the
	 * first deadline, so the next one skips to the grid beyond. */
	ASSERT_GE(skip_due[1], first + 6 * period);
	ASSERT_EQ((skip_due[1] - first) % period, 0);
	ASSERT_EQ((skip_due[2] - first) % period, 0);
	ASSERT_GT(skip_due[2], skip_due[1]);
	lw_loop_free(loop);
}

TEST(timer_bad_args)
{
	lw_loop_t *loop;
	lw_timer_t t;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_EQ(lw_timer_init(NULL, &t), -EINVAL);
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_EQ(lw_timer_start(&t, NULL, 1, 0), -EINVAL);
	ASSERT_EQ(lw_timer_start(&t, record, -1, 0), -EINVAL);
	ASSERT_EQ(lw_timer_start(&t, record, 1, -5), -EINVAL);
	ASSERT(!lw_timer_is_active(&t));
	ASSERT_OK(lw_timer_stop(&t)); /* stopping an idle timer is fine */
	/* A failed start runs nothing. */
	ASSERT_OK(lw_run_once(loop, 5));
	lw_loop_free(loop);
}

/* Many timers: the heap keeps exact order over random deadlines. */
static uint64_t heap_last_due;
static int heap_fired, heap_bad;
static void heap_fire(lw_timer_t *t)
{
	uint64_t due = (uint64_t)(uintptr_t)t->data;
	if (due < heap_last_due)
		heap_bad++;
	heap_last_due = due;
	heap_fired++;
}

static lw_timer_t *heap_ts;
enum { HEAP_N = 20000 };

/* Started from a callback, every timer counts from the same cached loop
 * time, so the firing order must follow the requested timeouts exactly. */
static void heap_start_all(lw_loop_t *loop, void *arg)
{
	uint32_t x = 12345;
	for (int i = 0; i < HEAP_N; i++) {
		x = x * 1103515245 + 12345;
		int ms = (int)((x >> 8) % 50);
		ASSERT_OK(lw_timer_init(loop, &heap_ts[i]));
		heap_ts[i].data = (void *)(uintptr_t)ms;
		ASSERT_OK(lw_timer_start(&heap_ts[i], heap_fire, ms, 0));
	}
	/* Stop a third of them in between. */
	for (int i = 0; i < HEAP_N; i += 3)
		ASSERT_OK(lw_timer_stop(&heap_ts[i]));
}

TEST(timer_heap_many)
{
	lw_loop_t *loop;
	heap_ts = calloc(HEAP_N, sizeof(*heap_ts));
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_next_tick(loop, heap_start_all, NULL));
	while (heap_fired < HEAP_N - (HEAP_N + 2) / 3)
		ASSERT_GE(lw_run_once(loop, 100), 0);
	ASSERT_EQ(heap_bad, 0);
	ASSERT_EQ(heap_fired, HEAP_N - (HEAP_N + 2) / 3);
	lw_loop_free(loop);
	free(heap_ts);
}

/* A timer started before the loop runs counts from when it was started,
 * even if the loop was made long before. */
static double stale_fired_at;
static void stale_fire(lw_timer_t *t)
{
	stale_fired_at = lwt_now_ms();
	lw_stop(t->loop);
}

TEST(timer_start_before_run_uses_current_time)
{
	lw_loop_t *loop;
	lw_timer_t t;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	usleep(150 * 1000); /* setup work after the loop was made */
	ASSERT_OK(lw_timer_init(loop, &t));
	double t0 = lwt_now_ms();
	ASSERT_OK(lw_timer_start(&t, stale_fire, 100, 0));
	ASSERT_OK(lw_run(loop));
	ASSERT_GE(stale_fired_at - t0, 99);
	lw_loop_free(loop);
}
