/*
 * ring_target.c - a real program on the reactor for the ring's end-to-end
 * tests (tests/test_ring.c), and a small tour of the API that feeds the ring.
 *
 *   ring_target MODE [ARG]
 *
 * Every mode makes one loop named after the mode, names its callbacks with
 * lw_site_name() (the names a reader finds in the ring's site table), and
 * prints `ready PID` on stdout, flushed, from the loop's first callback: once
 * that line is out, the loop runs and its ring's header is complete.  Some
 * modes first print `fn NAME 0xADDR` lines, the address of a callback as
 * this process sees it, which is what the ring's site table and pool fields
 * carry.  The program runs until it is killed.
 *
 *   sleep50      "sleep50": a timer every 150 ms that sleeps 50 ms;
 *                "fast": a timer every 5 ms that does nothing.
 *   late         "victim": a timer every 20 ms; "blocker": a timer every
 *                200 ms that keeps the CPU busy for 80 ms, so the victim
 *                starts late by tens of ms while it runs.
 *   stuck SECS   "stuck": a one-shot timer after 100 ms that sleeps SECS.
 *   storm        "storm": eight next_tick chains, each callback queueing the
 *                next, as fast as the loop goes; a timer prints
 *                `rate N C` every 200 ms: callbacks per second of wall
 *                time (N) and of the process's CPU time (C).
 *   fork         the loop "parent" ("parent_tick" every 5 ms) forks from a
 *                callback once it runs; the child makes its own loop "child"
 *                ("child_tick" every 5 ms).  Both print `ready PID`, the
 *                parent first.  The child never returns into the parent's
 *                loop: the parent's ring is shared memory, and only the
 *                parent may write it.
 *   defer        "defer_kick": a timer every 400 ms that defers "job", which
 *                sleeps 300 ms on the pool; prints `fn job ADDR`.
 *   hostile      a target that names everything with terminal controls:
 *                its comm, its loop, its site ("\e[2J" and a C1 CSI in
 *                UTF-8), and a file (sparse, 64 MB) it reads whole from a
 *                timer every 100 ms; a reader must print none of them
 *                raw.
 *   nodump       as sleep50, after prctl(PR_SET_DUMPABLE, 0): the kernel
 *                then gives its /proc files (fds, maps, memory) to root,
 *                and refuses them to its own user as it refuses ptrace.
 *   sites        "alpha": a timer every 10 ms.  On SIGUSR1 ("usr1"), a new
 *                site appears, "born_late" (a timer every 10 ms), and alpha
 *                is renamed "alpha_renamed".  Prints `fn alpha ADDR` and
 *                `fn born_late ADDR`.
 *   flood        "flood": idle until SIGUSR1 ("go"), which prints `go N`
 *                (the records its loop wrote before it) and starts eight
 *                next_tick chains ("flood") as fast as the loop goes;
 *                SIGUSR2 ("halt") ends them, and the last callback of the
 *                last chain prints `done N M`: the records the loop will
 *                have written once it returns, from lw_loop_stats() (N)
 *                and from this program's own count of its callbacks (M).
 *                No timer runs, so from then on the loop writes nothing.
 *
 * LOOPWATCH=off and LOOPWATCH_RING_SIZE=N in the environment act on the ring
 * as they do in any program built on libloopwatch.
 */
#include "loopwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, int err)
{
	fprintf(stderr, "ring_target: cannot %s: %s\n", what, strerror(-err));
	exit(1);
}

static void check(int rc, const char *what)
{
	if (rc < 0)
		die(what, rc);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Print a callback's address in this process, for tests that compare it
 * with the site table or the pool fields. */
static void print_fn(const char *name, lw_fn fn)
{
	printf("fn %s %#lx\n", name, (unsigned long)(uintptr_t)fn);
}

/* ---- ready: the loop's first callback ---- */

/* Every callback of the flood mode, counted by the callbacks themselves
 * (the ready tick too). */
static uint64_t own_calls;

static void ready_cb(lw_loop_t *loop, void *arg)
{
	own_calls++;
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
}

static lw_loop_t *make_loop(const char *name)
{
	lw_loop_options_t opts = { .name = name };
	lw_loop_t *loop;
	check(lw_loop_new(&loop, &opts), "make a loop");
	check(lw_site_name(loop, LW_FN(ready_cb), "ready"), "name a site");
	check(lw_next_tick(loop, ready_cb, NULL), "queue a tick");
	return loop;
}

/* A periodic timer, named.  Timers are caller-allocated: these live for the
 * whole program. */
static void every(lw_loop_t *loop, lw_timer_t *t, lw_timer_cb cb,
		  const char *name, int64_t first_ms, int64_t period_ms)
{
	check(lw_site_name(loop, LW_FN(cb), name), "name a site");
	check(lw_timer_init(loop, t), "init a timer");
	check(lw_timer_start(t, cb, first_ms, period_ms), "start a timer");
}

/* ---- sleep50 ---- */

static void sleep50_cb(lw_timer_t *t)
{
	sleep_ms(50);
}

static void fast_cb(lw_timer_t *t)
{
}

/* ---- late ---- */

static void victim_cb(lw_timer_t *t)
{
}

/* Busy, not asleep: the loop is held up exactly as by a slow handler. */
static void blocker_cb(lw_timer_t *t)
{
	uint64_t end = now_ns() + 80 * 1000000ull;
	while (now_ns() < end)
		;
}

/* ---- stuck ---- */

static long stuck_secs;

static void stuck_cb(lw_timer_t *t)
{
	sleep_ms(stuck_secs * 1000);
}

/* ---- storm ---- */

#define STORM_CHAINS 8

static uint64_t storm_count;

static void storm_cb(lw_loop_t *loop, void *arg)
{
	storm_count++;
	/* Queued from a tick, it runs on the next iteration. */
	check(lw_next_tick(loop, storm_cb, arg), "queue a tick");
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* `rate N CPU_RATE`: callbacks per second of wall time, and per second of
 * this process's CPU time (a figure that does not depend on how much of the
 * machine other processes take). */
static void rate_cb(lw_timer_t *t)
{
	static uint64_t last_count, last_ns, last_cpu;
	uint64_t now = now_ns(), cpu = cpu_ns();
	if (last_ns != 0 && now > last_ns && cpu > last_cpu) {
		double n = (double)(storm_count - last_count);
		printf("rate %.0f %.0f\n", n * 1e9 / (double)(now - last_ns),
		       n * 1e9 / (double)(cpu - last_cpu));
		fflush(stdout);
	}
	last_count = storm_count;
	last_ns = now;
	last_cpu = cpu;
}

/* ---- fork ---- */

static void parent_tick_cb(lw_timer_t *t)
{
}

static void child_tick_cb(lw_timer_t *t)
{
}

static void fork_cb(lw_timer_t *t)
{
	fflush(stdout);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		die("fork", -errno);
	if (pid > 0)
		return;
	/* The child dies with the parent, so that killing the parent cleans
	 * up both. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	lw_loop_t *loop = make_loop("child");
	static lw_timer_t tick;
	every(loop, &tick, child_tick_cb, "child_tick", 5, 5);
	lw_run(loop);
	_exit(0);
}

/* ---- defer ---- */

static void *job(void *arg)
{
	sleep_ms(300);
	return NULL;
}

static void job_done(lw_loop_t *loop, void *arg, void *result)
{
}

static void defer_kick_cb(lw_timer_t *t)
{
	check(lw_defer(t->data, job, job_done, NULL), "defer a job");
}

/* ---- sites ---- */

static lw_timer_t born_late_timer;

/* The names of mode "hostile": ESC, BEL, CSI as the C1 control U+009B in
 * UTF-8, and a lone 0x9b byte (CSI on an 8-bit terminal). */
#define HOSTILE                           \
	"\033]2;owned\007\033[2J\xc2\x9b" \
	"31m\x9b"
static int hostile_fd = -1;

#define HOSTILE_SIZE (64 << 20)

static void hostile_cb(lw_timer_t *t)
{
	/* 64 MB of a sparse file: long enough to be a slow read. */
	if (pread(hostile_fd, t->data, HOSTILE_SIZE, 0) < 0)
		die("read the hostile file", -errno);
}

static void alpha_cb(lw_timer_t *t)
{
}

static void born_late_cb(lw_timer_t *t)
{
}

static void usr1_cb(lw_signal_t *w, void *arg, int signum)
{
	lw_loop_t *loop = arg;
	if (lw_timer_is_active(&born_late_timer))
		return;
	every(loop, &born_late_timer, born_late_cb, "born_late", 0, 10);
	check(lw_site_name(loop, LW_FN(alpha_cb), "alpha_renamed"),
	      "rename a site");
}

/* ---- flood ---- */

static int flood_halting;
static int flood_chains; /* chains still running */

/* The callbacks the loop has invoked, this one included: the records it
 * will have written once this one returns. */
static uint64_t loop_calls(lw_loop_t *loop)
{
	lw_loop_stats_t s;
	lw_loop_stats(loop, &s);
	return s.callbacks;
}

static void flood_cb(lw_loop_t *loop, void *arg)
{
	own_calls++;
	if (!flood_halting) {
		check(lw_next_tick(loop, flood_cb, arg), "queue a tick");
		return;
	}
	if (--flood_chains == 0) {
		printf("done %llu %llu\n", (unsigned long long)loop_calls(loop),
		       (unsigned long long)own_calls);
		fflush(stdout);
	}
}

static void go_cb(lw_signal_t *w, void *arg, int signum)
{
	lw_loop_t *loop = arg;
	own_calls++;
	if (flood_chains > 0 || flood_halting)
		return;
	printf("go %llu %llu\n", (unsigned long long)loop_calls(loop) - 1,
	       (unsigned long long)own_calls - 1);
	fflush(stdout);
	for (flood_chains = 0; flood_chains < STORM_CHAINS; flood_chains++)
		check(lw_next_tick(loop, flood_cb, NULL), "queue a tick");
}

static void halt_cb(lw_signal_t *w, void *arg, int signum)
{
	own_calls++;
	flood_halting = 1;
}

/* ------------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr, "usage: ring_target sleep50|late|stuck SECS|storm|"
			"fork|defer|sites|hostile|flood|nodump\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *mode = argv[1];
	/* Timers live as long as the program. */
	static lw_timer_t t1, t2;
	lw_loop_t *loop;

	if (strcmp(mode, "sleep50") == 0 || strcmp(mode, "nodump") == 0) {
		if (strcmp(mode, "nodump") == 0 &&
		    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			die("make the process non-dumpable", -errno);
		loop = make_loop(mode);
		every(loop, &t1, sleep50_cb, "sleep50", 150, 150);
		every(loop, &t2, fast_cb, "fast", 5, 5);
	} else if (strcmp(mode, "late") == 0) {
		loop = make_loop(mode);
		every(loop, &t1, victim_cb, "victim", 20, 20);
		every(loop, &t2, blocker_cb, "blocker", 200, 200);
	} else if (strcmp(mode, "stuck") == 0) {
		if (argc < 3 || (stuck_secs = atol(argv[2])) <= 0)
			return usage();
		loop = make_loop(mode);
		every(loop, &t1, stuck_cb, "stuck", 100, 0);
	} else if (strcmp(mode, "storm") == 0) {
		loop = make_loop(mode);
		check(lw_site_name(loop, LW_FN(storm_cb), "storm"),
		      "name a site");
		for (int i = 0; i < STORM_CHAINS; i++)
			check(lw_next_tick(loop, storm_cb, NULL),
			      "queue a tick");
		every(loop, &t1, rate_cb, "rate", 200, 200);
	} else if (strcmp(mode, "fork") == 0) {
		loop = make_loop("parent");
		every(loop, &t1, parent_tick_cb, "parent_tick", 5, 5);
		every(loop, &t2, fork_cb, "fork", 50, 0);
	} else if (strcmp(mode, "defer") == 0) {
		loop = make_loop(mode);
		print_fn("job", LW_FN(job));
		every(loop, &t1, defer_kick_cb, "defer_kick", 10, 400);
		t1.data = loop; /* after lw_timer_init(), which clears it */
	} else if (strcmp(mode, "hostile") == 0) {
		char path[128];
		snprintf(path, sizeof(path), "/tmp/lw-hostile-%d-" HOSTILE,
			 (int)getpid());
		hostile_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
				  0600);
		if (hostile_fd < 0)
			die("create the hostile file", -errno);
		/* Unlinked at once: the fd keeps its name in /proc. */
		unlink(path);
		if (ftruncate(hostile_fd, HOSTILE_SIZE) < 0)
			die("size the hostile file", -errno);
		prctl(PR_SET_NAME, "x" HOSTILE);
		loop = make_loop("loop" HOSTILE);
		every(loop, &t1, hostile_cb, "site" HOSTILE, 100, 100);
		if ((t1.data = malloc(HOSTILE_SIZE)) == NULL)
			die("allocate", -ENOMEM);
	} else if (strcmp(mode, "sites") == 0) {
		loop = make_loop(mode);
		print_fn("alpha", LW_FN(alpha_cb));
		print_fn("born_late", LW_FN(born_late_cb));
		every(loop, &t1, alpha_cb, "alpha", 10, 10);
		check(lw_site_name(loop, LW_FN(usr1_cb), "usr1"),
		      "name a site");
		check(lw_signal_start(loop, SIGUSR1, usr1_cb, loop, NULL),
		      "watch SIGUSR1");
	} else if (strcmp(mode, "flood") == 0) {
		loop = make_loop(mode);
		check(lw_site_name(loop, LW_FN(flood_cb), "flood"),
		      "name a site");
		check(lw_site_name(loop, LW_FN(go_cb), "go"), "name a site");
		check(lw_site_name(loop, LW_FN(halt_cb), "halt"),
		      "name a site");
		check(lw_signal_start(loop, SIGUSR1, go_cb, loop, NULL),
		      "watch SIGUSR1");
		check(lw_signal_start(loop, SIGUSR2, halt_cb, loop, NULL),
		      "watch SIGUSR2");
	} else {
		return usage();
	}
	check(lw_run(loop), "run the loop");
	lw_loop_free(loop);
	return 0;
}
