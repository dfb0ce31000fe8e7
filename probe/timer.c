/*
 * timer.c - one-shot and periodic timers on a 4-ary min-heap.
 *
 * The heap array holds {due, seq, timer}: sifting compares cached keys and
 * never touches the timers themselves, which keeps it in cache (libev does
 * the same).  The order is (due, seq): timers with equal deadlines fire in
 * the order they were started.
 *
 * Expiry pops one timer at a time and dispatches it before looking at the
 * heap again, so a callback may stop, restart or free any timer, its own
 * included.  Only timers started before the phase began (seq at most the
 * snapshot) may fire in it: a callback that starts a timer with timeout 0
 * gets it on the next iteration, not in an endless loop within this one.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

#define D 4 /* heap arity */

enum { TIMER_ACTIVE = 1, TIMER_RAW = 2 };

static inline int entry_less(const lw__heap_entry_t *a,
			     const lw__heap_entry_t *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

/* Entries are 0-based in the array; timer->heap_index is 1-based so that 0
 * can mean "not in the heap". */
static inline void place(lw_loop_t *loop, uint32_t i, lw__heap_entry_t e)
{
	loop->heap[i] = e;
	e.timer->heap_index = i + 1;
}

static void sift_up(lw_loop_t *loop, uint32_t i)
{
	lw__heap_entry_t e = loop->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / D;
		if (!entry_less(&e, &loop->heap[p]))
			break;
		place(loop, i, loop->heap[p]);
		i = p;
	}
	place(loop, i, e);
}

static void sift_down(lw_loop_t *loop, uint32_t i)
{
	lw__heap_entry_t e = loop->heap[i];
	uint32_t n = loop->heap_len;
	for (;;) {
		uint32_t c = i * D + 1;
		if (c >= n)
			break;
		uint32_t end = c + D < n ? c + D : n, best = c;
		for (uint32_t k = c + 1; k < end; k++)
			if (entry_less(&loop->heap[k], &loop->heap[best]))
				best = k;
		if (!entry_less(&loop->heap[best], &e))
			break;
		place(loop, i, loop->heap[best]);
		i = best;
	}
	place(loop, i, e);
}

static void heap_remove(lw_loop_t *loop, lw_timer_t *t)
{
	uint32_t i = t->heap_index - 1;
	t->heap_index = 0;
	uint32_t last = --loop->heap_len;
	if (i == last)
		return;
	loop->heap[i] = loop->heap[last];
	loop->heap[i].timer->heap_index = i + 1;
	if (i > 0 && entry_less(&loop->heap[i], &loop->heap[(i - 1) / D]))
		sift_up(loop, i);
	else
		sift_down(loop, i);
}

static int heap_insert(lw_loop_t *loop, lw_timer_t *t)
{
	if (loop->heap_len == loop->heap_cap) {
		int err = lw__grow((void **)&loop->heap, &loop->heap_cap,
				   loop->heap_len + 1, sizeof(*loop->heap));
		if (err)
			return err;
	}
	uint32_t i = loop->heap_len++;
	loop->heap[i] = (lw__heap_entry_t){ t->due, t->seq, t };
	sift_up(loop, i);
	return 0;
}

int lw_timer_init(lw_loop_t *loop, lw_timer_t *timer)
{
	if (loop == NULL || timer == NULL)
		return -EINVAL;
	*timer = (lw_timer_t){ .loop = loop };
	return 0;
}

static int start(lw_timer_t *t, lw_timer_cb cb, uint64_t timeout_ns,
		 uint64_t repeat_ns, int raw)
{
	lw_loop_t *loop = t->loop;
	if (t->heap_index)
		heap_remove(loop, t);
	/* Outside a run the cached time may be long stale (setup work done
	 * after lw_loop_new()); inside one it is this iteration's time. */
	if (!atomic_load_explicit(&loop->running, memory_order_relaxed))
		lw_update_time(loop);
	t->cb = cb;
	t->repeat = repeat_ns;
	t->due = timeout_ns > UINT64_MAX - loop->now ? UINT64_MAX
						     : loop->now + timeout_ns;
	t->seq = ++loop->timer_seq;
	t->flags = TIMER_ACTIVE | (raw ? TIMER_RAW : 0);
	if (!raw)
		lw__site_cached(loop, &t->site, LW_KIND_TIMER, LW_FN(cb));
	int err = heap_insert(loop, t);
	if (err)
		t->flags = 0;
	return err;
}

int lw_timer_start_ns(lw_timer_t *timer, lw_timer_cb cb, int64_t timeout_ns,
		      int64_t repeat_ns)
{
	if (timer == NULL || timer->loop == NULL || cb == NULL ||
	    timeout_ns < 0 || repeat_ns < 0)
		return -EINVAL;
	return start(timer, cb, (uint64_t)timeout_ns, (uint64_t)repeat_ns, 0);
}

static uint64_t ms_to_ns(int64_t ms)
{
	return (uint64_t)ms > UINT64_MAX / 1000000u ? UINT64_MAX
						    : (uint64_t)ms * 1000000u;
}

int lw_timer_start(lw_timer_t *timer, lw_timer_cb cb, int64_t timeout_ms,
		   int64_t repeat_ms)
{
	if (timer == NULL || timer->loop == NULL || cb == NULL ||
	    timeout_ms < 0 || repeat_ms < 0)
		return -EINVAL;
	return start(timer, cb, ms_to_ns(timeout_ms), ms_to_ns(repeat_ms), 0);
}

int lw__timer_start_raw(lw_timer_t *timer, lw_timer_cb cb, uint64_t timeout_ns,
			uint64_t repeat_ns)
{
	return start(timer, cb, timeout_ns, repeat_ns, 1);
}

int lw_timer_stop(lw_timer_t *timer)
{
	if (timer == NULL || timer->loop == NULL)
		return -EINVAL;
	if (timer->heap_index)
		heap_remove(timer->loop, timer);
	timer->flags &= ~TIMER_ACTIVE;
	return 0;
}

int lw_timer_is_active(const lw_timer_t *timer)
{
	return timer != NULL && (timer->flags & TIMER_ACTIVE);
}

int64_t lw__timers_next(const lw_loop_t *loop)
{
	if (loop->heap_len == 0)
		return -1;
	uint64_t due = loop->heap[0].due;
	if (due <= loop->now)
		return 0;
	uint64_t d = due - loop->now;
	return d > INT64_MAX ? INT64_MAX : (int64_t)d;
}

/* The one dispatch point for timer callbacks. */
static void dispatch_timer(lw_loop_t *loop, lw_timer_t *t, uint64_t due)
{
	if (t->flags & TIMER_RAW) {
		t->cb(t);
		lw__gap(loop);
		return;
	}
	lw__site_t *site =
		lw__site_cached(loop, &t->site, LW_KIND_TIMER, LW_FN(t->cb));
	lw__call_begin_chained(loop, site, due);
	t->cb(t);
	lw__call_end(loop, site);
}

int lw__run_timers(lw_loop_t *loop)
{
	uint64_t snapshot = loop->timer_seq;
	int ran = 0;

	while (loop->heap_len > 0 && !loop->stop_flag) {
		lw__heap_entry_t top = loop->heap[0];
		if (top.due > loop->now || top.seq > snapshot)
			break;
		lw_timer_t *t = top.timer;
		heap_remove(loop, t);
		if (t->repeat) {
			/* Reschedule from the deadline, not from now, so a
			 * periodic timer does not drift; skip whole periods
			 * the loop missed instead of firing them in a burst. */
			uint64_t next = t->due + t->repeat;
			if (next <= loop->now)
				next += ((loop->now - next) / t->repeat + 1) *
					t->repeat;
			t->due = next;
			t->seq = ++loop->timer_seq;
			if (heap_insert(loop, t) != 0)
				t->flags &= ~TIMER_ACTIVE;
		} else {
			t->flags &= ~TIMER_ACTIVE;
		}
		dispatch_timer(loop, t, top.due);
		ran++;
	}
	return ran;
}
