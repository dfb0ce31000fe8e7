/*
 * syscalls_lw.c - a syscall-heavy workload for the kernel probes' overhead
 * benchmark (bench/kprobes.sh).
 *
 *   syscalls_lw [--work getppid|pipe] [--count N] [--reps R] [--cpu C]
 *               [--now]
 *
 * Three threads, so that "watching another thread" and "watching this
 * thread" can be told apart with one process:
 *
 *   - the hot thread (the main thread) runs the workload;
 *   - an idle thread sits in epoll_wait() on an empty epoll set forever,
 *     as the loop thread of a quiet event loop does: the driver points
 *     loopwatch at it for "watching another thread";
 *   - for --work pipe, an echo thread answers the hot thread.
 *
 * Workloads:
 *   getppid  N getppid() calls in a tight loop; one op is one call.
 *   pipe     ping-pong between the hot thread and the echo thread over two
 *            non-blocking pipes, each side an epoll loop: per hop, the hot
 *            thread makes one epoll_wait(), one read() and one write(), as
 *            a loop thread serving an fd does.  One op is one round trip.
 *
 * It prints "syscalls ready pid PID hot TID idle TID" and waits for a byte
 * (or end of file) on stdin before it measures, so a driver can attach a
 * tracer first; --now skips the wait.  Then it runs one warm-up repetition
 * and R measured ones and prints the median as one line, e.g.
 * "getppid ns_per_op 231.4", then the repetitions on a line of their own.
 *
 * It uses neither libloopwatch nor its rings: the kernel probes must work
 * on processes that never linked the probe, and this is such a process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 101

static int idle_ep = -1;
static pid_t idle_tid;
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;

/* The pipes of the ping-pong: to_echo carries the hot thread's byte to the
 * echo thread, to_hot carries it back.  [0] is the read end. */
static int to_echo[2] = { -1, -1 }, to_hot[2] = { -1, -1 };

static void die(const char *what)
{
	fprintf(stderr, "syscalls_lw: cannot %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void *idle_main(void *arg)
{
	struct epoll_event ev;

	(void)arg;
	pthread_mutex_lock(&idle_mu);
	idle_tid = gettid_();
	pthread_cond_signal(&idle_cv);
	pthread_mutex_unlock(&idle_mu);
	/* Nothing is ever added to the set: the thread stays in the wait, and
	 * makes no syscall at all while the workload runs. */
	for (;;)
		if (epoll_wait(idle_ep, &ev, 1, -1) < 0 && errno != EINTR)
			die("wait on the idle epoll set");
	return NULL;
}

/* The echo side of the ping-pong: an epoll loop with one fd. */
static void *echo_main(void *arg)
{
	struct epoll_event ev = { .events = EPOLLIN };
	char buf[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)arg;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, to_echo[0], &ev) < 0)
		die("set up the echo thread's epoll");
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("wait in the echo thread");
		ssize_t r = read(to_echo[0], buf, sizeof(buf));
		if (r > 0 && write(to_hot[1], buf, (size_t)r) != r)
			die("write to the hot thread");
	}
	return NULL;
}

static void run_getppid(long count)
{
	for (long i = 0; i < count; i++)
		(void)syscall(SYS_getppid);
}

static int hot_ep = -1;

static void run_pipe(long count)
{
	struct epoll_event ev;
	char c = 'x';

	for (long i = 0; i < count; i++) {
		if (write(to_echo[1], &c, 1) != 1)
			die("write to the echo thread");
		for (;;) {
			int n = epoll_wait(hot_ep, &ev, 1, -1);
			if (n < 0 && errno != EINTR)
				die("wait in the hot thread");
			if (n > 0 && read(to_hot[0], &c, 1) == 1)
				break;
		}
	}
}

static void setup_pipe(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	pthread_t th;

	if (pipe2(to_echo, O_NONBLOCK | O_CLOEXEC) < 0 ||
	    pipe2(to_hot, O_NONBLOCK | O_CLOEXEC) < 0)
		die("create the pipes");
	hot_ep = epoll_create1(EPOLL_CLOEXEC);
	if (hot_ep < 0 || epoll_ctl(hot_ep, EPOLL_CTL_ADD, to_hot[0], &ev) < 0)
		die("set up the hot thread's epoll");
	if (pthread_create(&th, NULL, echo_main, NULL) != 0)
		die("start the echo thread");
}

/* Pin the calling thread, and so the threads it starts later, to one CPU:
 * cpu, or the last one allowed when cpu is -2. */
static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu == -2) {
		if (sched_getaffinity(0, sizeof(set), &set) < 0)
			die("read the CPU affinity");
		for (int i = CPU_SETSIZE - 1; i >= 0; i--)
			if (CPU_ISSET(i, &set)) {
				cpu = i;
				break;
			}
	}
	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("pin the hot thread to its CPU");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: syscalls_lw [--work getppid|pipe] [--count N] "
		   "[--reps R] [--cpu C] [--now]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "work", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "now", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *work = "getppid";
	long count = 0, reps = 5;
	int now = 0, cpu = -2, c;

	while ((c = getopt_long(argc, argv, "w:n:r:c:Nh", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			work = optarg;
			break;
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'r':
			reps = strtol(optarg, NULL, 10);
			break;
		case 'c':
			cpu = (int)strtol(optarg, NULL, 10);
			break;
		case 'N':
			now = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	int is_pipe = strcmp(work, "pipe") == 0;
	if (optind != argc || (!is_pipe && strcmp(work, "getppid") != 0) ||
	    count < 0 || reps < 1 || reps > MAX_REPS) {
		usage(stderr);
		return 2;
	}
	/* About 100 ms a repetition without probes. */
	if (count == 0)
		count = is_pipe ? 20000 : 500000;

	pthread_t th;
	idle_ep = epoll_create1(EPOLL_CLOEXEC);
	if (idle_ep < 0)
		die("create the idle epoll set");
	if (pthread_create(&th, NULL, idle_main, NULL) != 0)
		die("start the idle thread");
	pthread_mutex_lock(&idle_mu);
	while (idle_tid == 0)
		pthread_cond_wait(&idle_cv, &idle_mu);
	pthread_mutex_unlock(&idle_mu);
	/* After the idle thread started, which stays free; the echo thread
	 * inherits the hot thread's CPU. */
	pin(cpu);
	if (is_pipe)
		setup_pipe();

	printf("syscalls ready pid %d hot %d idle %d\n", (int)getpid(),
	       (int)gettid_(), (int)idle_tid);
	fflush(stdout);
	if (!now) {
		char b;
		/* A byte, or end of file: either way the driver is ready. */
		while (read(0, &b, 1) < 0 && errno == EINTR)
			;
	}

	double ns[MAX_REPS];
	for (long r = -1; r < reps; r++) {
		uint64_t t0 = now_ns();
		if (is_pipe)
			run_pipe(count);
		else
			run_getppid(count);
		uint64_t t1 = now_ns();
		/* Repetition -1 warms the caches and the pipes up. */
		if (r >= 0)
			ns[r] = (double)(t1 - t0) / (double)count;
	}
	double sorted[MAX_REPS];
	memcpy(sorted, ns, sizeof(double) * (size_t)reps);
	qsort(sorted, (size_t)reps, sizeof(double), cmp_double);
	double med = reps % 2 ? sorted[reps / 2]
			      : (sorted[reps / 2 - 1] + sorted[reps / 2]) / 2;
	printf("%s ns_per_op %.1f\n", work, med);
	printf("%s reps", work);
	for (long r = 0; r < reps; r++)
		printf(" %.1f", ns[r]);
	printf("\n");
	fflush(stdout);
	/* exit() ends the idle and echo threads too. */
	return 0;
}
