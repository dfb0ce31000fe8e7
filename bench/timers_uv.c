/*
 * timers_uv.c - the timer benchmark on libuv (uv_timer_t).  The same work as
 * timers_lw.c, phase for phase; see there and bench/README.md.
 */
#include "lib/bench.h"

#include <uv.h>

#include <errno.h>
#include <stdlib.h>

static uv_loop_t loop;
static uv_timer_t kick, *timers, *bg;
static uint64_t *timeout;
static size_t n, fired;
static uint64_t phase_ns;
static void (*phase)(void);

static void on_timer(uv_timer_t *t)
{
	(void)t;
	if (++fired == n)
		uv_stop(&loop);
}

static void start_all(void)
{
	uint64_t t0 = bench_now_ns();
	size_t i;

	for (i = 0; i < n; i++)
		uv_timer_start(&timers[i], on_timer, timeout[i], 0);
	phase_ns = bench_now_ns() - t0;
}

static void churn(void)
{
	uint64_t t0;
	size_t i;

	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		uv_timer_start(&bg[i], on_timer,
			       BENCH_CHURN_BACKGROUND_MS + (uint64_t)i, 0);
	t0 = bench_now_ns();
	for (i = 0; i < n; i++) {
		uv_timer_start(&timers[i], on_timer, timeout[i], 0);
		uv_timer_stop(&timers[i]);
	}
	phase_ns = bench_now_ns() - t0;
	for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
		uv_timer_stop(&bg[i]);
}

static void on_kick(uv_timer_t *t)
{
	(void)t;
	phase();
	uv_stop(&loop);
}

/* Run `fn` inside a callback of the loop, then return. */
static void run_phase(void (*fn)(void))
{
	phase = fn;
	BENCH_CHECK(uv_timer_start(&kick, on_kick, 0, 0), "uv_timer_start");
	uv_run(&loop, UV_RUN_DEFAULT);
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
	for (i = 0; i < n; i++)
		timeout[i] = (uint64_t)bench_timeout_ms(i);

	for (rep = 0; rep < o.reps; rep++) {
		BENCH_CHECK(uv_loop_init(&loop), "uv_loop_init");
		BENCH_CHECK(uv_timer_init(&loop, &kick), "uv_timer_init");
		for (i = 0; i < n; i++)
			BENCH_CHECK(uv_timer_init(&loop, &timers[i]),
				    "uv_timer_init");
		for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
			BENCH_CHECK(uv_timer_init(&loop, &bg[i]),
				    "uv_timer_init");

		fired = 0;
		run_phase(start_all);
		bench_metric_add(&m_start, (double)phase_ns / (double)n);

		bench_sleep_until(bench_all_due_ns(bench_now_ns()));
		t0 = bench_now_ns();
		uv_run(&loop, UV_RUN_DEFAULT);
		t1 = bench_now_ns();
		if (fired != n)
			bench_die("not every timer fired", 0);
		bench_metric_add(&m_fire, (double)(t1 - t0) / (double)n);

		run_phase(churn);
		bench_metric_add(&m_churn, (double)phase_ns / (double)n);

		/* Handles must be closed before the loop can be; closing is
		 * teardown, not measured. */
		uv_close((uv_handle_t *)&kick, NULL);
		for (i = 0; i < n; i++)
			uv_close((uv_handle_t *)&timers[i], NULL);
		for (i = 0; i < BENCH_CHURN_BACKGROUND; i++)
			uv_close((uv_handle_t *)&bg[i], NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		BENCH_CHECK(uv_loop_close(&loop), "uv_loop_close");
	}

	bench_metric_print(&m_start);
	bench_metric_print(&m_fire);
	bench_metric_print(&m_churn);
	free(timers);
	free(bg);
	free(timeout);
	return 0;
}
