/*
 * bench.c - the shared helpers of the benchmark programs (see bench.h).
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-r REPS] [-q DIV]\n"
		"  -r REPS  repetitions, the median is printed (default %d)\n"
		"  -q DIV   divide every count by DIV (quick smoke run)\n",
		prog, BENCH_REPS);
	exit(2);
}

static long parse_num(const char *prog, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		usage(prog);
	return v;
}

void bench_init(int argc, char **argv, bench_opts_t *o)
{
	const char *env;
	int opt;

	o->reps = BENCH_REPS;
	o->div = 1;
	env = getenv("BENCH_REPS");
	if (env != NULL && *env != '\0')
		o->reps = (int)parse_num(argv[0], env, 1, BENCH_MAX_REPS);
	env = getenv("BENCH_DIV");
	if (env != NULL && *env != '\0')
		o->div = (unsigned)parse_num(argv[0], env, 1, 1000000);
	while ((opt = getopt(argc, argv, "r:q:h")) != -1) {
		switch (opt) {
		case 'r':
			o->reps = (int)parse_num(argv[0], optarg, 1,
						 BENCH_MAX_REPS);
			break;
		case 'q':
			o->div = (unsigned)parse_num(argv[0], optarg, 1,
						     1000000);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc)
		usage(argv[0]);
	/* Line-buffer stdout so a crash later does not swallow the figures
	 * already printed. */
	setvbuf(stdout, NULL, _IOLBF, 0);
}

size_t bench_count(const bench_opts_t *o, size_t count)
{
	size_t n = count / o->div;
	return n > 0 ? n : 1;
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_until(uint64_t deadline_ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
	ts.tv_nsec = (long)(deadline_ns % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

uint64_t bench_all_due_ns(uint64_t started_ns)
{
	return started_ns +
	       (uint64_t)(BENCH_TIMER_SPREAD_MS + BENCH_FIRE_SLACK_MS) *
		       1000000u;
}

int64_t bench_timeout_ms(size_t i)
{
	/* splitmix64's finaliser: cheap, and every i gets an unrelated value,
	 * so the heap sees timers in no particular deadline order. */
	uint64_t z = (uint64_t)i + 0x9e3779b97f4a7c15u;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	z ^= z >> 31;
	return 1 + (int64_t)(z % BENCH_TIMER_SPREAD_MS);
}

void bench_metric_add(bench_metric_t *m, double ns_per_op)
{
	if (m->n < BENCH_MAX_REPS)
		m->v[m->n++] = ns_per_op;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void bench_metric_print(const bench_metric_t *m)
{
	double v[BENCH_MAX_REPS];
	double med;

	if (m->n == 0)
		return;
	memcpy(v, m->v, (size_t)m->n * sizeof(v[0]));
	qsort(v, (size_t)m->n, sizeof(v[0]), cmp_double);
	if (m->n % 2 == 1)
		med = v[m->n / 2];
	else
		med = (v[m->n / 2 - 1] + v[m->n / 2]) / 2;
	printf("%s ns_per_op %.1f\n", m->name, med);
}

void bench_die(const char *what, int err)
{
	if (err != 0)
		fprintf(stderr, "bench: %s: %s\n", what, strerror(err));
	else
		fprintf(stderr, "bench: %s failed\n", what);
	exit(1);
}

void bench_ring_pipes(int *rd, int *wr, int n)
{
	int i, p[2];

	for (i = 0; i < n; i++) {
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
			bench_die("pipe2", errno);
		rd[i] = p[0];
		wr[i] = p[1];
	}
}

void bench_ring_close(int *rd, int *wr, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		close(rd[i]);
		close(wr[i]);
	}
}

uint64_t bench_arg_u64(const char *argv0, const char *s, uint64_t lo,
		       uint64_t hi, void (*usage_of)(const char *argv0))
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo ||
	    v > hi) {
		fprintf(stderr,
			"%s: bad number '%s' (%" PRIu64 "..%" PRIu64 ")\n",
			argv0, s, lo, hi);
		usage_of(argv0);
		exit(2);
	}
	return v;
}
