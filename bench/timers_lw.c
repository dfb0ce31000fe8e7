/*
 * timers_lw.c - the timer benchmark on loopwatch.  See bench/README.md; the
 * same program exists for libuv, libev and libevent (timers_uv.c, ...), and
 * the four must stay the same work, phase for phase.
 *
 * Per repetition, on a fresh loop:
 *   start  start BENCH_TIMERS timers with the shared timeout sequence;
 *   fire   sleep (outside the loop) until every one is due, then run the
 *          loop until all have fired: the cost of expiring and dispatching;
 *   churn  with BENCH_CHURN_BACKGROUND other timers pending, start and stop
 *          each timer once (a connection's idle timeout being re-armed).
 *
 * The start and churn phases run inside a callback (a 0 ms "kick" timer),
 * because that is where a server starts and stops its timers, and because
 * there every library uses its cached loop time.  Outside a run, loopwatch
 * and libevent read the clock on each start while libuv and libev use a
 * stale cached time: not the same work.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <stdlib.h>

static lw_loop_t *loop;
static lw_timer_t kick, *timers, *bg;
static int64_t *timeout;
static size_t n, fired;
static uint64_t phase_ns;
static void (*phase)(void);

static void on_timer(lw_timer_t *t)
{
	(void)t;
	if (++fired == n)
		lw_stop(loop);
}

static void start_all(void)
{
	uint64_t t0 = bench_now_ns();
	size_t i;

	for (i = 0; i < n; i++)
		lw_timer_start(&timers[i], on_timer, timeout[i], 0);
	phase_ns = bench_now_ns() - t0;
}

static void churn(void)
{
	uint64_t t0;
	size_t i;

	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		lw_timer_start(&bg[i], on_timer,
			       BENCH_CHURN_BACKGROUND_MS + (int64_t)i, 0);
	t0 = bench_now_ns();
	for (i = 0; i < n; i++) {
		lw_timer_start(&timers[i], on_timer, timeout[i], 0);
		lw_timer_stop(&timers[i]);
	}
	phase_ns = bench_now_ns() - t0;
	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		lw_timer_stop(&bg[i]);
}

static void on_kick(lw_timer_t *t)
{
	(void)t;
	phase();
	lw_stop(loop);
}

/* Run `fn` inside a callback of the loop, then return. */
static void run_phase(void (*fn)(void))
{
	phase = fn;
	BENCH_CHECK(lw_timer_start(&kick, on_kick, 0, 0), "lw_timer_start");
	BENCH_CHECK(lw_run(loop), "lw_run");
}

int main(int argc, char **argv)
{
	bench_metric_t m_start = { .name = "timers_start" };
	bench_metric_t m_fire = { .name = "timers_fire" };
	bench_metric_t m_churn = { .name = "timers_churn" };
	lw_loop_options_t lo = { .name = "bench", .defer_threads = 1 };
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
	for (i = 0; i < n; i++)
		timeout[i] = bench_timeout_ms(i);

	for (rep = 0; rep < o.reps; rep++) {
		BENCH_CHECK(lw_loop_new(&loop, &lo), "lw_loop_new");
		BENCH_CHECK(lw_timer_init(loop, &kick), "lw_timer_init");
		for (i = 0; i < n; i++)
			BENCH_CHECK(lw_timer_init(loop, &timers[i]),
				    "lw_timer_init");
		for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
			BENCH_CHECK(lw_timer_init(loop, &bg[i]),
				    "lw_timer_init");

		fired = 0;
		run_phase(start_all);
		bench_metric_add(&m_start, (double)phase_ns / (double)n);

		bench_sleep_until(bench_all_due_ns(bench_now_ns()));
		t0 = bench_now_ns();
		BENCH_CHECK(lw_run(loop), "lw_run");
		t1 = bench_now_ns();
		if (fired != n)
			bench_die("not every timer fired", 0);
		bench_metric_add(&m_fire, (double)(t1 - t0) / (double)n);

		run_phase(churn);
		bench_metric_add(&m_churn, (double)phase_ns / (double)n);

		lw_loop_free(loop);
	}

	bench_metric_print(&m_start);
	bench_metric_print(&m_fire);
	bench_metric_print(&m_churn);
	free(timers);
	free(bg);
	free(timeout);
	return 0;
}
