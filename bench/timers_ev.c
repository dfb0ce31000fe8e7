/*
 * timers_ev.c - the timer benchmark on libev (ev_timer).  The same work as
 * timers_lw.c, phase for phase; see there and bench/README.md.
 */
#include "lib/bench.h"

#include <ev.h>

#include <errno.h>
#include <stdlib.h>

static struct ev_loop *loop;
static ev_timer kick, *timers, *bg;
static double *timeout;
static size_t n, fired;
static uint64_t phase_ns;
static void (*phase)(void);

static void on_timer(struct ev_loop *l, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	if (++fired == n)
		ev_break(l, EVBREAK_ALL);
}

static void start_all(void)
{
	uint64_t t0 = bench_now_ns();
	size_t i;

	for (i = 0; i < n; i++) {
		ev_timer_set(&timers[i], timeout[i], 0.);
		ev_timer_start(loop, &timers[i]);
	}
	phase_ns = bench_now_ns() - t0;
}

static void churn(void)
{
	uint64_t t0;
	size_t i;

	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++) {
		int64_t ms = BENCH_CHURN_BACKGROUND_MS + (int64_t)i;

		ev_timer_set(&bg[i], (double)ms / 1e3, 0.);
		ev_timer_start(loop, &bg[i]);
	}
	t0 = bench_now_ns();
	for (i = 0; i < n; i++) {
		ev_timer_set(&timers[i], timeout[i], 0.);
		ev_timer_start(loop, &timers[i]);
		ev_timer_stop(loop, &timers[i]);
	}
	phase_ns = bench_now_ns() - t0;
	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		ev_timer_stop(loop, &bg[i]);
}

static void on_kick(struct ev_loop *l, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	phase();
	ev_break(l, EVBREAK_ALL);
}

/* Run `fn` inside a callback of the loop, then return. */
static void run_phase(void (*fn)(void))
{
	phase = fn;
	ev_timer_set(&kick, 0., 0.);
	ev_timer_start(loop, &kick);
	ev_run(loop, 0);
}

int main(int argc, char **argv)
{
	bench_metric_t m_start = { .name = "timers_start" };
	bench_metric_t m_fire = { .name = "timers_fire" };
	bench_metric_t m_churn = { .name = "timers_churn" };
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
	/* libev takes seconds as a double; convert up front so the timed
	 * loop does the same work as the other peers'. */
	for (i = 0; i < n; i++)
		timeout[i] = (double)bench_timeout_ms(i) / 1e3;

	for (rep = 0; rep < o.reps; rep++) {
		/* epoll, like every other peer. */
		loop = ev_loop_new(EVBACKEND_EPOLL);
		if (loop == NULL)
			bench_die("ev_loop_new", 0);
		ev_timer_init(&kick, on_kick, 0., 0.);
		for (i = 0; i < n; i++)
			ev_timer_init(&timers[i], on_timer, 0., 0.);
		for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
			ev_timer_init(&bg[i], on_timer, 0., 0.);

		fired = 0;
		run_phase(start_all);
		bench_metric_add(&m_start, (double)phase_ns / (double)n);

		bench_sleep_until(bench_all_due_ns(bench_now_ns()));
		t0 = bench_now_ns();
		ev_run(loop, 0);
		t1 = bench_now_ns();
		if (fired != n)
			bench_die("not every timer fired", 0);
		bench_metric_add(&m_fire, (double)(t1 - t0) / (double)n);

		run_phase(churn);
		bench_metric_add(&m_churn, (double)phase_ns / (double)n);

		ev_loop_destroy(loop);
	}

	bench_metric_print(&m_start);
	bench_metric_print(&m_fire);
	bench_metric_print(&m_churn);
	free(timers);
	free(bg);
	free(timeout);
	return 0;
}
