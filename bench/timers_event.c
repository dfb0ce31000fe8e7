/*
 * timers_event.c - the timer benchmark on libevent (evtimer).  The same work
 * as timers_lw.c, phase for phase; see there and bench/README.md.
 */
#include "lib/bench.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <errno.h>
#include <stdlib.h>

static struct event_base *base;
static struct event kick, *timers, *bg;
static struct timeval *timeout;
static size_t n, fired;
static uint64_t phase_ns;
static void (*phase)(void);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (++fired == n)
		event_base_loopbreak(base);
}

static void start_all(void)
{
	uint64_t t0 = bench_now_ns();
	size_t i;

	for (i = 0; i < n; i++)
		evtimer_add(&timers[i], &timeout[i]);
	phase_ns = bench_now_ns() - t0;
}

static void churn(void)
{
	struct timeval tv;
	uint64_t t0;
	size_t i;

	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++) {
		int64_t ms = BENCH_CHURN_BACKGROUND_MS + (int64_t)i;

		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		evtimer_add(&bg[i], &tv);
	}
	t0 = bench_now_ns();
	for (i = 0; i < n; i++) {
		evtimer_add(&timers[i], &timeout[i]);
		evtimer_del(&timers[i]);
	}
	phase_ns = bench_now_ns() - t0;
	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		evtimer_del(&bg[i]);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	phase();
	event_base_loopbreak(base);
}

/* Run `fn` inside a callback of the loop, then return. */
static void run_phase(void (*fn)(void))
{
	struct timeval zero = { 0, 0 };

	phase = fn;
	BENCH_CHECK(evtimer_add(&kick, &zero), "evtimer_add");
	BENCH_CHECK(event_base_dispatch(base) < 0, "event_base_dispatch");
}

int main(int argc, char **argv)
{
	bench_metric_t m_start = { .name = "timers_start" };
	bench_metric_t m_fire = { .name = "timers_fire" };
	bench_metric_t m_churn = { .name = "timers_churn" };
	struct event_config *cfg;
	bench_opts_t o;
	uint64_t t0, t1;
	size_t i;
	int rep;

	bench_init(argc, argv, &o);
	n = bench_count(&o, BENCH_TIMERS);
	timers = calloc(n, sizeof(*timers));
	bg = calloc(BENCH_CHURN_BACKGROUND, sizeof(*bg));
	timeout = calloc(n, sizeof(*timeout));
	if (timers == NULL || bg == NULL || timeout == NULL)
		bench_die("calloc", ENOMEM);
	/* libevent takes a struct timeval; convert up front so the timed
	 * loop does the same work as the other peers'. */
	for (i = 0; i < n; i++) {
		int64_t ms = bench_timeout_ms(i);

		timeout[i].tv_sec = ms / 1000;
		timeout[i].tv_usec = (ms % 1000) * 1000;
	}
	/* epoll, like every other peer, and no lock: the loop is used from
	 * one thread, and the other peers take no lock either. */
	cfg = event_config_new();
	if (cfg == NULL)
		bench_die("event_config_new", 0);
	event_config_avoid_method(cfg, "select");
	event_config_avoid_method(cfg, "poll");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);

	for (rep = 0; rep < o.reps; rep++) {
		base = event_base_new_with_config(cfg);
		if (base == NULL)
			bench_die("event_base_new_with_config", 0);
		evtimer_assign(&kick, base, on_kick, NULL);
		for (i = 0; i < n; i++)
			evtimer_assign(&timers[i], base, on_timer, NULL);
		for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
			evtimer_assign(&bg[i], base, on_timer, NULL);

		fired = 0;
		run_phase(start_all);
		bench_metric_add(&m_start, (double)phase_ns / (double)n);

		bench_sleep_until(bench_all_due_ns(bench_now_ns()));
		t0 = bench_now_ns();
		BENCH_CHECK(event_base_dispatch(base) < 0,
			    "event_base_dispatch");
		t1 = bench_now_ns();
		if (fired != n)
			bench_die("not every timer fired", 0);
		bench_metric_add(&m_fire, (double)(t1 - t0) / (double)n);

		run_phase(churn);
		bench_metric_add(&m_churn, (double)phase_ns / (double)n);

		event_base_free(base);
	}

	event_config_free(cfg);
	bench_metric_print(&m_start);
	bench_metric_print(&m_fire);
	bench_metric_print(&m_churn);
	free(timers);
	free(bg);
	free(timeout);
	return 0;
}
