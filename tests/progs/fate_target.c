/*
 * fate_target.c - a program on the reactor that meets the ends a watched
 * process can meet, on command, for tests/test_fate.c.
 *
 *   fate_target            one loop "fate", commands on stdin
 *   fate_target --execd    what `exec` runs: a loop "again"
 *
 * The loop "fate" runs "tick", a timer every 10 ms, and reads commands on
 * stdin, one per line ("command", an fd watcher).  It prints `ready PID`
 * from its first callback.  Each command runs as a named next_tick:
 *
 *   slow MS    "slow" sleeps MS ms; then "slow_done" prints `slow done`
 *   exit N     "exit" stops the loop; main returns N
 *   segv       "crash" writes to a page it may not (no core file: the
 *              core size limit is set to 0 first; and no sanitizer's
 *              handler: SIGSEGV's action is set back to the default)
 *   hang MS    "hang" prints `hanging`, then sleeps MS ms (to be killed)
 *   fork       "fork" forks.  The parent prints `forked PID`; the child
 *              prints `child PID` and carries on with the same loop, which
 *              makes a ring of its own at its next iteration (the child's
 *              callbacks must never land in its parent's ring).  The child
 *              ticks on "child_tick" every 10 ms, dies with its parent,
 *              and leaves the commands to it: the loop's epoll instance is
 *              shared with the parent after fork (the reactor has no
 *              loop-fork call), so it wakes for stdin too, and ignores it.
 *   exec       "exec" prints `exec'ing` and execs this program again with
 *              --execd, which prints `execd PID` from its loop "again"
 *   newloop    "newloop" starts a thread with a loop of its own, "late",
 *              made only now: its timer "late_tick" sleeps 20 ms every
 *              50 ms; the thread prints `late TID` from its first one
 *
 * Output is line-buffered and flushed: a test reads it as it comes.
 */
#include "loopwatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static lw_loop_t *loop;
static lw_timer_t tick, child_tick;
static lw_io_t command;
static int is_child, exit_code;
static long arg_ms;
static char line[256];
static size_t line_len;

static void check(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "fate_target: cannot %s: %s\n", what,
			strerror(-rc));
		exit(1);
	}
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void ready_cb(lw_loop_t *l, void *arg)
{
	say("%s %d", (const char *)arg, (int)getpid());
}

static void tick_cb(lw_timer_t *t)
{
}

static void child_tick_cb(lw_timer_t *t)
{
}

static void slow_done_cb(lw_loop_t *l, void *arg)
{
	say("slow done");
}

static void slow_cb(lw_loop_t *l, void *arg)
{
	if (is_child)
		return; /* a command queued before the fork is the parent's */
	sleep_ms(arg_ms);
	/* Said from the next callback: by then this one's record is
	 * written. */
	check(lw_next_tick(l, slow_done_cb, NULL), "queue a tick");
}

static void exit_cb(lw_loop_t *l, void *arg)
{
	lw_stop(l);
}

static void crash_cb(lw_loop_t *l, void *arg)
{
	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core);
	/* A sanitizer's handler would report and exit 1, and it keeps
	 * signal() and sigaction() from replacing it: the kernel is told
	 * directly that the default action, the crash the tests watch for,
	 * is wanted. */
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} dfl = { SIG_DFL, 0, NULL, 0 };
	syscall(SYS_rt_sigaction, SIGSEGV, &dfl, NULL, sizeof(dfl.mask));
	/* A page that may not be touched (not a null pointer, which
	 * UBSan would catch first). */
	void *page =
		mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		abort();
	*(volatile int *)page = 1;
}

static void hang_cb(lw_loop_t *l, void *arg)
{
	say("hanging");
	sleep_ms(arg_ms);
	say("hang over");
}

static void fork_cb(lw_loop_t *l, void *arg)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0) {
		say("fork failed: %s", strerror(errno));
		return;
	}
	if (pid > 0) {
		say("forked %d", (int)pid);
		return;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	is_child = 1;
	check(lw_timer_start(&child_tick, child_tick_cb, 10, 10),
	      "start a timer");
	say("child %d", (int)getpid());
}

static void exec_cb(lw_loop_t *l, void *arg)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0) {
		say("exec failed: cannot read /proc/self/exe");
		return;
	}
	self[n] = '\0';
	say("exec'ing");
	execl(self, self, "--execd", (char *)NULL);
	say("exec failed: %s", strerror(errno));
}

/* ---- newloop: a loop made after the start ---- */

static void late_tick_cb(lw_timer_t *t)
{
	static int said;

	if (!said++)
		say("late %ld", (long)syscall(SYS_gettid));
	sleep_ms(20);
}

static void *late_thread(void *arg)
{
	lw_loop_options_t opts = { .name = "late" };
	lw_loop_t *late;
	lw_timer_t t;

	check(lw_loop_new(&late, &opts), "make the late loop");
	check(lw_site_name(late, LW_FN(late_tick_cb), "late_tick"),
	      "name a site");
	check(lw_timer_init(late, &t), "init a timer");
	check(lw_timer_start(&t, late_tick_cb, 50, 50), "start a timer");
	check(lw_run(late), "run the late loop");
	return NULL;
}

static void newloop_cb(lw_loop_t *l, void *arg)
{
	pthread_t th;

	if (pthread_create(&th, NULL, late_thread, NULL) != 0)
		say("newloop failed");
	else
		pthread_detach(th);
}

static void run_command(const char *cmd)
{
	char word[32] = "";
	long n = 0;
	int got = sscanf(cmd, "%31s %ld", word, &n);

	if (got < 1)
		return;
	arg_ms = n;
	if (strcmp(word, "slow") == 0 && got == 2)
		check(lw_next_tick(loop, slow_cb, NULL), "queue a tick");
	else if (strcmp(word, "exit") == 0 && got == 2) {
		exit_code = (int)n;
		check(lw_next_tick(loop, exit_cb, NULL), "queue a tick");
	} else if (strcmp(word, "segv") == 0)
		check(lw_next_tick(loop, crash_cb, NULL), "queue a tick");
	else if (strcmp(word, "hang") == 0 && got == 2)
		check(lw_next_tick(loop, hang_cb, NULL), "queue a tick");
	else if (strcmp(word, "fork") == 0)
		check(lw_next_tick(loop, fork_cb, NULL), "queue a tick");
	else if (strcmp(word, "exec") == 0)
		check(lw_next_tick(loop, exec_cb, NULL), "queue a tick");
	else if (strcmp(word, "newloop") == 0)
		check(lw_next_tick(loop, newloop_cb, NULL), "queue a tick");
	else
		say("unknown command: %s", cmd);
}

static void command_cb(lw_io_t *io, int events)
{
	if (is_child)
		return; /* the commands are the parent's */
	ssize_t r = read(0, line + line_len, sizeof(line) - 1 - line_len);
	if (r <= 0) {
		/* The test went away: so do we. */
		lw_io_stop(io);
		lw_stop(loop);
		return;
	}
	line_len += (size_t)r;
	line[line_len] = '\0';
	char *nl;
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		run_command(line);
		line_len -= (size_t)(nl + 1 - line);
		memmove(line, nl + 1, line_len + 1);
	}
	if (line_len == sizeof(line) - 1)
		line_len = 0; /* a line too long: dropped */
}

static void name(lw_fn fn, const char *site)
{
	check(lw_site_name(loop, fn, site), "name a site");
}

int main(int argc, char **argv)
{
	int execd = argc > 1 && strcmp(argv[1], "--execd") == 0;
	lw_loop_options_t opts = { .name = execd ? "again" : "fate" };

	check(lw_loop_new(&loop, &opts), "make a loop");
	name(LW_FN(ready_cb), "ready");
	name(LW_FN(tick_cb), "tick");
	check(lw_timer_init(loop, &tick), "init a timer");
	check(lw_timer_start(&tick, tick_cb, 10, 10), "start a timer");
	check(lw_next_tick(loop, ready_cb, execd ? "execd" : "ready"),
	      "queue a tick");
	if (!execd) {
		name(LW_FN(command_cb), "command");
		name(LW_FN(slow_cb), "slow");
		name(LW_FN(slow_done_cb), "slow_done");
		name(LW_FN(exit_cb), "exit");
		name(LW_FN(crash_cb), "crash");
		name(LW_FN(hang_cb), "hang");
		name(LW_FN(fork_cb), "fork");
		name(LW_FN(exec_cb), "exec");
		name(LW_FN(newloop_cb), "newloop");
		name(LW_FN(child_tick_cb), "child_tick");
		check(lw_timer_init(loop, &child_tick), "init a timer");
		check(lw_io_init(loop, &command, 0), "watch stdin");
		check(lw_io_start(&command, LW_READABLE, command_cb),
		      "watch stdin");
	}
	check(lw_run(loop), "run the loop");
	lw_loop_free(loop);
	return exit_code;
}
