/*
 * loop.c - the loop: make, run, stop, free.
 *
 * One iteration, in order:
 *
 *   1. timers   expired timers fire, earliest deadline first
 *   2. ticks    next_tick work queued before this iteration
 *   3. poll     wait for I/O (not at all if ticks are queued or a stop is
 *               pending; else until the next timer), then dispatch it.
 *               Posts and defer completions arrive here, through the
 *               loop's eventfd.
 *
 * The cached time is refreshed when the wait returns, so timers compare
 * against the time I/O was seen.  The time spent inside the wait is the
 * loop's idle time; the rest of an iteration is busy time.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int lw__grow(void **v, uint32_t *cap, uint32_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	uint64_t n = *cap ? (uint64_t)*cap * 2 : 8;
	while (n < need)
		n *= 2;
	if (n > UINT32_MAX || n > SIZE_MAX / size)
		return -ENOMEM;
	void *p = realloc(*v, (size_t)n * size);
	if (p == NULL)
		return -ENOMEM;
	*v = p;
	*cap = (uint32_t)n;
	return 0;
}

/* Posts and defer completions: the eventfd says "look at the lists". */
static void on_wake(lw_io_t *io, int events)
{
	lw_loop_t *loop = io->loop;
	uint64_t count;
	ssize_t r;
	do
		r = read(loop->wakefd, &count, sizeof(count));
	while (r < 0 && errno == EINTR);
	/* Clear the flag before taking the lists: a post that lands after
	 * this writes the eventfd again (see tick.c). */
	atomic_store(&loop->wake_pending, 0);
	lw__run_posts(loop);
	lw__pool_drain(loop);
}

int lw_loop_new(lw_loop_t **out, const lw_loop_options_t *opts)
{
	if (out == NULL)
		return -EINVAL;
	lw_loop_t *loop = calloc(1, sizeof(*loop));
	if (loop == NULL)
		return -ENOMEM;
	int err;

	snprintf(loop->name, sizeof(loop->name), "%s",
		 opts && opts->name ? opts->name : "main");
	loop->defer_threads = opts ? opts->defer_threads : 0;
	lw__list_init(&loop->handles);
	loop->fallback_site.kind = LW_KIND_NONE;
	snprintf(loop->fallback_site.name, sizeof(loop->fallback_site.name),
		 "(untracked)");
	loop->epfd = loop->wakefd = -1;
	pthread_mutex_init(&loop->post_lock, NULL);
	pthread_mutex_init(&loop->pool_lock, NULL);

	loop->events = calloc(LW__MAX_EVENTS, sizeof(*loop->events));
	if (loop->events == NULL) {
		err = -ENOMEM;
		goto fail_events;
	}
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		err = -errno;
		goto fail_epoll;
	}
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wakefd < 0) {
		err = -errno;
		goto fail_eventfd;
	}
	lw__clock_init(&loop->clock);
	loop->now = lw__mono_ns();
	err = lw_io_init(loop, &loop->wake_io, loop->wakefd);
	if (err == 0)
		err = lw__io_start_raw(&loop->wake_io, LW_READABLE, on_wake);
	if (err)
		goto fail_wake;
	/* A loop without its ring still works: profiling is never a reason
	 * to fail the program. */
	if (!(opts && opts->no_ring))
		lw__ring_new(&loop->ring, loop->name,
			     opts ? opts->ring_capacity : 0, LW_RING_F_REACTOR,
			     &loop->clock);
	*out = loop;
	return 0;

fail_wake:
	free(loop->ios);
	close(loop->wakefd);
fail_eventfd:
	close(loop->epfd);
fail_epoll:
	free(loop->events);
fail_events:
	pthread_mutex_destroy(&loop->post_lock);
	pthread_mutex_destroy(&loop->pool_lock);
	free(loop);
	return err;
}

void lw_loop_free(lw_loop_t *loop)
{
	if (loop == NULL)
		return;
	/* Workers first: they may still wake the loop through its eventfd. */
	lw__pool_free(loop);

	lw__list_t *n;
	while ((n = lw__list_first(&loop->handles)) != NULL) {
		lw__handle_t *h = LW__CONTAINER_OF(n, lw__handle_t, node);
		lw__list_remove(n);
		h->release(h);
	}

	lw_io_stop(&loop->wake_io);
	close(loop->wakefd);
	close(loop->epfd);
	lw__ring_free(loop->ring);
	lw__calls_free(loop);
	lw__sites_free(loop);
	free(loop->heap);
	free(loop->ios);
	free(loop->events);
	pthread_mutex_destroy(&loop->post_lock);
	pthread_mutex_destroy(&loop->pool_lock);
	free(loop);
}

/* Tell the ring which thread runs the loop; gettid() is a system call, so
 * only when the thread changed. */
static void note_thread(lw_loop_t *loop)
{
	if (loop->ring == NULL)
		return;
	if (loop->ring_thread_set &&
	    pthread_equal(loop->ring_thread, pthread_self()))
		return;
	lw__ring_set_tid(loop->ring);
	loop->ring_thread = pthread_self();
	loop->ring_thread_set = 1;
}

/* In a child after fork(), the inherited ring is the parent's: make the
 * child's own, once, before the child's loop writes anything. */
static void check_fork(lw_loop_t *loop)
{
	if (loop->ring == NULL || !lw__ring_stale(loop->ring))
		return;
	if (lw__ring_renew(loop->ring) != 0) {
		lw__ring_free(loop->ring);
		loop->ring = NULL;
		return;
	}
	lw__sites_publish(loop);
	loop->ring_thread_set = 0;
	if (atomic_load(&loop->on_thread))
		note_thread(loop);
}

/* Read the clock for the wait's timeout.  With the ring on, the end of the
 * last callback took the time already (ring.h): nothing but bookkeeping
 * ran since. */
static void refresh_now(lw_loop_t *loop)
{
	uint64_t t;

	if (loop->ring != NULL && loop->ring->cursor_valid)
		t = loop->ring->cursor_ns;
	else
		t = lw__clock_ns(&loop->clock, lw__clock_raw(&loop->clock));
	if (t > loop->now)
		loop->now = t;
}

/* One iteration.  `max_wait_ns` caps the wait (-1: no cap). */
static int iterate(lw_loop_t *loop, int64_t max_wait_ns)
{
	check_fork(loop);
	int ran = lw__run_timers(loop);
	ran += lw__run_ticks(loop);

	int64_t timeout;
	if (loop->ticks.len > 0 || atomic_load(&loop->stop_flag)) {
		timeout = 0;
	} else {
		/* The wait counts from now, not from the last wait's return:
		 * the callbacks since then (fd watchers, timers, ticks) took
		 * time, and a timeout counted from before them would wake
		 * the next timer late by all of it, every period. */
		if (loop->heap_len > 0)
			refresh_now(loop);
		loop->wait_from = loop->now;
		timeout = lw__timers_next(loop);
	}
	if (max_wait_ns >= 0 && (timeout < 0 || timeout > max_wait_ns))
		timeout = max_wait_ns;

	int r = lw__poll(loop, timeout);
	loop->iterations++;
	if (r < 0)
		return r;
	return ran + r;
}

/* Claim the loop for the calling thread: -EBUSY if it is running. */
static int enter(lw_loop_t *loop)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&loop->running, &expected, 1))
		return -EBUSY;
	loop->thread = pthread_self();
	atomic_store(&loop->on_thread, 1);
	lw_update_time(loop);
	check_fork(loop);
	note_thread(loop);
	/* Busy time counts from the start of the run, in the loop's counters
	 * and in its ring's alike. */
	loop->busy_mark = loop->now;
	if (loop->ring != NULL)
		lw__ring_run_start(loop->ring, loop->now);
	/* The caller's own code ran since the last callback of the loop. */
	lw__gap(loop);
	return 0;
}

/* Give the loop back.  A stop is consumed by the run it ended; one requested
 * before the run started ends that run after its first iteration, so a
 * thread that starts a loop and stops it at once cannot lose the stop. */
static void leave(lw_loop_t *loop)
{
	atomic_store(&loop->stop_flag, 0);
	loop->busy_mark = 0;
	atomic_store(&loop->on_thread, 0);
	atomic_store(&loop->running, 0);
}

int lw_run(lw_loop_t *loop)
{
	if (loop == NULL)
		return -EINVAL;
	int err = enter(loop);
	if (err)
		return err;
	while (!atomic_load(&loop->stop_flag)) {
		int r = iterate(loop, -1);
		if (r < 0) {
			err = r;
			break;
		}
	}
	leave(loop);
	return err;
}

int lw_run_once(lw_loop_t *loop, int timeout_ms)
{
	if (loop == NULL)
		return -EINVAL;
	int err = enter(loop);
	if (err)
		return err;
	int r = iterate(loop,
			timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
	leave(loop);
	return r;
}

void lw_stop(lw_loop_t *loop)
{
	if (loop == NULL)
		return;
	atomic_store(&loop->stop_flag, 1);
	if (!lw_on_loop_thread(loop))
		lw__wakeup(loop);
}

int lw_on_loop_thread(const lw_loop_t *loop)
{
	/* `thread` is written before on_thread is set, so a reader that sees
	 * on_thread set sees the right thread. */
	return loop != NULL && atomic_load(&loop->on_thread) &&
	       pthread_equal(loop->thread, pthread_self());
}

uint64_t lw_now(const lw_loop_t *loop)
{
	return loop->now;
}

void lw_update_time(lw_loop_t *loop)
{
	loop->now = lw__mono_ns();
}

int lw_loop_ring_fd(const lw_loop_t *loop)
{
	return loop != NULL && loop->ring != NULL ? loop->ring->fd : -1;
}

const char *lw_loop_name(const lw_loop_t *loop)
{
	return loop->name;
}

void lw_loop_set_data(lw_loop_t *loop, void *data)
{
	loop->data = data;
}

void *lw_loop_data(const lw_loop_t *loop)
{
	return loop->data;
}

void lw_loop_stats(const lw_loop_t *loop, lw_loop_stats_t *out)
{
	if (loop == NULL || out == NULL)
		return;
	*out = (lw_loop_stats_t){
		.iterations = loop->iterations,
		.callbacks = loop->callbacks,
		.busy_ns = loop->busy_ns,
		.idle_ns = loop->idle_ns,
		.sites = loop->nsites,
		.active_timers = loop->heap_len,
		/* The loop's own wake-up watcher is not the user's. */
		.active_ios = loop->active_ios ? loop->active_ios - 1 : 0,
		.pending_ticks = loop->ticks.len,
	};
}
