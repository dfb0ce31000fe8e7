/*
 * test_fate.c - the agent survives its target: the real loopwatch against
 * the real tests/progs/fate_target, which on command runs a slow callback
 * and then exits, crashes in a callback, is killed in the middle of one,
 * forks, execs, or dies and leaves its PID to another process.  Each end
 * is told in one line, and the slow callback that came before it is still
 * in the summary (or the recording, or check's verdict).
 *
 * Everything but PID reuse works from the rings alone, so these run
 * unprivileged too; choosing the next PID (ns_last_pid) needs root.  As
 * root the kernel probes are on, and the same lines must come.
 */
#include "lwtest.h"
#include "lwtest_proc.h"
#include "ring_reader.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define OUT_CAP (1 << 20)

/* A started program with its stdin and its output (stdout and stderr) on
 * pipes. */
struct proc {
	pid_t pid;
	int in, out;
};

static void spawn_io(char *const argv[], struct proc *p)
{
	int in[2], out[2];

	ASSERT_OK(pipe2(in, O_CLOEXEC));
	ASSERT_OK(pipe2(out, O_CLOEXEC));
	fflush(stdout);
	fflush(stderr);
	p->pid = fork();
	ASSERT(p->pid >= 0);
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		lwt_exec(argv);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
}

static void send_cmd(const struct proc *p, const char *cmd)
{
	ASSERT_EQ(write(p->in, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
}

/* Read p's lines until one starts with `head` (copied into line); the
 * lines before it are appended to log when log is not NULL. */
static void expect(const struct proc *p, const char *head, char *line,
		   size_t cap, char *log)
{
	for (;;) {
		if (lwt_read_line(p->out, line, cap, 20000) < 0)
			LWT_FAIL("no line \"%s...\" came", head);
		if (log != NULL) {
			strncat(log, line, OUT_CAP - strlen(log) - 2);
			strcat(log, "\n");
		}
		if (strncmp(line, head, strlen(head)) == 0)
			return;
	}
}

/* fate_target, started and ready. */
static void start_target(struct proc *t)
{
	char *argv[] = { strdup(lwt_build_path("tests/progs/fate_target")),
			 NULL };
	char line[256];
	int pid = 0;

	spawn_io(argv, t);
	free(argv[0]);
	expect(t, "ready ", line, sizeof(line), NULL);
	ASSERT_EQ(sscanf(line, "ready %d", &pid), 1);
	ASSERT_EQ(pid, t->pid);
}

/* `loopwatch CMD --min-ms 5 [more...] PID`, started and attached: its
 * output so far in log. */
static void start_loopwatch(const char *cmd, char *const more[], pid_t target,
			    struct proc *a, char *log)
{
	char *argv[32], pidbuf[16], line[1024];
	int n = 0;

	argv[n++] = strdup(lwt_build_path("bin/loopwatch"));
	argv[n++] = (char *)cmd;
	argv[n++] = "--min-ms";
	argv[n++] = "5";
	for (int i = 0; more && more[i]; i++)
		argv[n++] = more[i];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)target);
	argv[n++] = pidbuf;
	argv[n] = NULL;
	spawn_io(argv, a);
	free(argv[0]);
	log[0] = '\0';
	expect(a, "attached to PID", line, sizeof(line), log);
}

/* `loopwatch CMD [more...] -- fate_target`, started, with the program
 * ready and loopwatch attached: the program's pid; the output so far (both
 * speak on one pipe, in either order) in log. */
static pid_t start_program(const char *cmd, char *const more[], struct proc *a,
			   char *log)
{
	char *argv[32], line[1024];
	int n = 0, pid = 0;

	argv[n++] = strdup(lwt_build_path("bin/loopwatch"));
	argv[n++] = (char *)cmd;
	for (int i = 0; more && more[i]; i++)
		argv[n++] = more[i];
	argv[n++] = "--";
	argv[n++] = strdup(lwt_build_path("tests/progs/fate_target"));
	argv[n] = NULL;
	spawn_io(argv, a);
	free(argv[0]);
	free(argv[n - 1]);
	log[0] = '\0';
	expect(a, "ready ", line, sizeof(line), log);
	ASSERT_EQ(sscanf(line, "ready %d", &pid), 1);
	if (strstr(log, "attached to PID") == NULL)
		expect(a, "attached to PID", line, sizeof(line), log);
	return pid;
}

/* Read the rest of loopwatch's output into log; its exit status. */
static int finish(struct proc *a, char *log)
{
	size_t n = strlen(log);

	lwt_read_all(a->out, log + n, OUT_CAP - n, 30000);
	close(a->out);
	close(a->in);
	int st = lwt_wait_exit(a->pid, 10000);
	fprintf(stderr, "%s", log);
	ASSERT(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* The line of out that starts with head, copied into line; NULL if none. */
static const char *line_of(const char *out, const char *head, char *line,
			   size_t cap)
{
	for (const char *s = out; s && *s;) {
		const char *eol = strchr(s, '\n');
		size_t len = eol ? (size_t)(eol - s) : strlen(s);
		if (strncmp(s, head, strlen(head)) == 0) {
			snprintf(line, cap, "%.*s", (int)len, s);
			return s;
		}
		s = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* How many lines of out start with head. */
static int lines_of(const char *out, const char *head)
{
	int n = 0;

	for (const char *s = out; s && *s;) {
		if (strncmp(s, head, strlen(head)) == 0)
			n++;
		s = strchr(s, '\n');
		s = s ? s + 1 : NULL;
	}
	return n;
}

/* The summary's row of site `name` ("! slow  tick  1  123 ms ..."):
 * its calls and its max in ms.  Fails the test when it is missing. */
static void summary_row(const char *out, const char *name, long *calls,
			double *max_ms)
{
	char head[64], line[512], kind[16], unit[8];
	const char *s = strstr(out, "\nsummary: ");

	ASSERT(s != NULL);
	snprintf(head, sizeof(head), "! %-28s ", name);
	if (line_of(s, head, line, sizeof(line)) == NULL) {
		snprintf(head, sizeof(head), "  %-28s ", name);
		if (line_of(s, head, line, sizeof(line)) == NULL)
			LWT_FAIL("no summary row for %s", name);
	}
	/* The last column is the max: "123 ms". */
	ASSERT_EQ(sscanf(line + 31, "%15s %ld", kind, calls), 2);
	const char *last = line + strlen(line);
	while (last > line && last[-1] != ' ')
		last--;
	snprintf(unit, sizeof(unit), "%.7s", last);
	while (last > line && last[-1] == ' ')
		last--;
	while (last > line && last[-1] != ' ')
		last--;
	double v = atof(last);
	*max_ms = strcmp(unit, "s") == 0    ? v * 1000
		  : strcmp(unit, "ms") == 0 ? v
		  : strcmp(unit, "us") == 0 ? v / 1000
					    : v / 1e6;
}

/* The slow callback run before every end: in the summary, once, whole. */
static void slow_kept(const char *out, double at_least_ms)
{
	long calls = 0;
	double max_ms = 0;

	summary_row(out, "slow", &calls, &max_ms);
	ASSERT_EQ(calls, 1);
	if (max_ms < at_least_ms)
		LWT_FAIL("slow kept as %.3f ms, not >= %.0f ms", max_ms,
			 at_least_ms);
}

/* A slow callback, done before the end comes. */
static void run_slow(const struct proc *t, const char *ms)
{
	char cmd[32], line[256];

	snprintf(cmd, sizeof(cmd), "slow %s\n", ms);
	send_cmd(t, cmd);
	expect(t, "slow done", line, sizeof(line), NULL);
}

/* ---- attach: the target exits, crashes, is killed ---- */

TEST_T(fate_exit_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[128];
	struct proc t, a;

	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	run_slow(&t, "120");
	send_cmd(&t, "exit 3\n");
	ASSERT_EQ(finish(&a, out), 0);
	int st = lwt_wait_exit(t.pid, 10000);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 3);

	snprintf(want, sizeof(want), "loopwatch: process %d exited", t.pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT_EQ(lines_of(out, "loopwatch: process"), 1);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d exited with status 3", t.pid);
	ASSERT_STREQ(line, want);
	slow_kept(out, 110);
	free(out);
}

TEST_T(fate_segv_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160];
	struct proc t, a;

	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	run_slow(&t, "120");
	send_cmd(&t, "segv\n");
	ASSERT_EQ(finish(&a, out), 0);
	int st = lwt_wait_exit(t.pid, 10000);
	ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);

	/* Killed in a callback: that callback is named, however short. */
	snprintf(want, sizeof(want),
		 "loopwatch: process %d was killed by SIGSEGV while callback "
		 "crash (tick) of loop fate had run for ",
		 t.pid);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s...\"", want);
	ASSERT(strstr(line, "core dumped") == NULL); /* RLIMIT_CORE 0 */
	slow_kept(out, 110);
	free(out);
}

/* Killed while a callback had run for a while: how long, to a look. */
TEST_T(fate_sigkill_mid_callback_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160], unit[8];
	struct proc t, a;
	double v = 0;

	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	run_slow(&t, "120");
	/* The callback starts after the command is sent. */
	uint64_t t0 = lwt_now_ns();
	send_cmd(&t, "hang 20000\n");
	expect(&t, "hanging", line, sizeof(line), NULL);
	usleep(400000);
	ASSERT_OK(kill(t.pid, SIGKILL));
	uint64_t ran = lwt_now_ns() - t0;
	ASSERT_EQ(finish(&a, out), 0);
	lwt_wait_exit(t.pid, 10000);

	snprintf(want, sizeof(want),
		 "loopwatch: process %d was killed by SIGKILL while callback "
		 "hang (tick) of loop fate had run for at least ",
		 t.pid);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s...\"", want);
	ASSERT_EQ(sscanf(line + strlen(want), "%lf %7s", &v, unit), 2);
	ASSERT_STREQ(unit, "ms");
	/* At least: up to the last look that saw it alive, which is
	 * never after the kill (nor its start before the command); and it
	 * was seen alive for a while after "hanging". */
	ASSERT_LE(v, (double)ran / 1e6 + 5);
	ASSERT_GE(v, 100);
	/* It never ended: no record, so not in the table. */
	ASSERT(strstr(strstr(out, "\nsummary: "), "\n! hang ") == NULL);
	slow_kept(out, 110);
	free(out);
}

/* ---- fork ---- */

/* The child carries on with its loop, which makes its own ring; the
 * child is told with the command to follow it, and nothing it does lands
 * in the parent's ring.  The parent's slow callback is queued before the
 * fork, so the child's copy of the loop starts it too, and ignores it: it
 * is the parent's.  In the parent's ring it must stay the parent's 200 ms
 * callback (once, the child wrote its own into it, and it read 18 us). */
TEST_T(fate_fork_child_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[256];
	struct proc t, a;
	int child = 0;
	char *more[] = { "--duration", "3", NULL };

	start_target(&t);
	start_loopwatch("attach", more, t.pid, &a, out);
	send_cmd(&t, "fork\nslow 200\n");
	expect(&t, "child ", line, sizeof(line), NULL);
	ASSERT_EQ(sscanf(line, "child %d", &child), 1);
	expect(&t, "slow done", line, sizeof(line), NULL);

	/* The child's own ring, as a reader finds it. */
	lw_rr_proc_t *cp = NULL;
	char why[256];
	for (int i = 0; i < 200; i++) {
		lw_rr_detach(cp);
		ASSERT_OK(lw_rr_attach(child, &cp, why, sizeof(why)));
		if (cp->nrings == 1)
			break;
		usleep(10000);
	}
	ASSERT_EQ(cp->nrings, 1);
	ASSERT_STREQ(lw_rr_name(cp->rings[0]), "fate");
	ASSERT_EQ(lw_rr_pid(cp->rings[0]), child);
	lw_rr_detach(cp);

	ASSERT_EQ(finish(&a, out), 0);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d forked %d (fate_target), whose loop "
		 "\"fate\" has a ring of its own: follow it with loopwatch "
		 "attach %d",
		 t.pid, child, child);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s\"", want);
	ASSERT_EQ(lines_of(out, "loopwatch: process"), 1);
	slow_kept(out, 190);
	/* The child's ticks are its own. */
	ASSERT(strstr(out, "child_tick") == NULL);

	close(t.in); /* the parent ends; its child dies with it */
	lwt_wait_exit(t.pid, 10000);
	for (int i = 0; i < 500 && kill(child, 0) == 0; i++)
		usleep(10000);
	ASSERT_NE(kill(child, 0), 0);
	free(out);
}

/* ---- exec ---- */

TEST_T(fate_exec_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[4200], self[4096];
	struct proc t, a;

	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	run_slow(&t, "120");
	send_cmd(&t, "exec\n");
	expect(&t, "execd ", line, sizeof(line), NULL);
	/* The watch ends by itself, with the line. */
	ASSERT_EQ(finish(&a, out), 0);
	ASSERT(realpath(lwt_build_path("tests/progs/fate_target"), self));
	snprintf(want, sizeof(want),
		 "loopwatch: process %d exec'd %s: its 1 ring is gone (rings "
		 "are close-on-exec): stopped watching",
		 t.pid, self);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s\"", want);
	slow_kept(out, 110);
	/* The new program's first calls (the dynamic loader's reads, the
	 * ftruncate of its own ring) are not the old loop's: the kernel
	 * stops watching the thread when it execs. */
	ASSERT(strstr(out, "ftruncate") == NULL);
	kill(t.pid, SIGTERM);
	lwt_wait_exit(t.pid, 10000);
	free(out);
}

/* ---- PID reuse ---- */

/* Give pid to a new process of ours (a pause) through ns_last_pid: its
 * pid, or 0 (skip) when it cannot be had. */
static pid_t take_pid(pid_t pid, char *why, size_t len)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
		char num[32];
		if (fd < 0) {
			snprintf(why, len, "cannot open ns_last_pid: %s",
				 strerror(errno));
			return 0;
		}
		int n = snprintf(num, sizeof(num), "%d", (int)pid - 1);
		ssize_t w = write(fd, num, (size_t)n);
		close(fd);
		if (w != n) {
			snprintf(why, len, "cannot write ns_last_pid");
			return 0;
		}
		fflush(stdout);
		fflush(stderr);
		pid_t c = fork();
		ASSERT(c >= 0);
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getpid() != pid)
				_exit(0);
			for (;;)
				pause();
		}
		if (c == pid)
			return c;
		waitpid(c, NULL, 0); /* someone else took it: again */
	}
	snprintf(why, len, "pid %d was taken by others 20 times", (int)pid);
	return 0;
}

/* The agent is stopped (a busy machine) while its target dies and its
 * PID goes to another process: it must see that by the start time, say
 * so, and keep what it had, the records it had not read yet included. */
TEST_T(fate_pid_reuse_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160], why[256];
	struct proc t, a;

	if (geteuid() != 0)
		SKIP("not root: cannot choose the next pid (ns_last_pid)");
	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	run_slow(&t, "120");
	ASSERT_OK(kill(a.pid, SIGSTOP));
	/* The start time counts clock ticks (10 ms): the new process must
	 * start in a later one than the target, long done. */
	ASSERT_OK(kill(t.pid, SIGKILL));
	lwt_wait_exit(t.pid, 10000);
	pid_t reused = take_pid(t.pid, why, sizeof(why));
	if (reused == 0) {
		kill(a.pid, SIGKILL);
		lwt_wait_exit(a.pid, 10000);
		SKIP("%s", why);
	}
	ASSERT_OK(kill(a.pid, SIGCONT));
	ASSERT_EQ(finish(&a, out), 0);
	snprintf(want, sizeof(want),
		 "loopwatch: PID %d now belongs to another process (start "
		 "time changed): stopped watching",
		 t.pid);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s\"", want);
	ASSERT_EQ(lines_of(out, "loopwatch: process"), 0);
	slow_kept(out, 110);
	kill(reused, SIGKILL);
	waitpid(reused, NULL, 0);
	free(out);
}

/* ---- a loop made after the attach ---- */

/* A thread that makes its loop after the attach: the agent finds its ring
 * (within a second), says so in one line, reads it from its first record,
 * watches its thread in the kernel (as root: its sleeps are named), and
 * the summary has the loop and its site. */
TEST_T(fate_new_loop_watched, 60)
{
	char *out = malloc(OUT_CAP), line[1024], want[160];
	struct proc t, a;
	int late = 0;

	start_target(&t);
	start_loopwatch("attach", NULL, t.pid, &a, out);
	int probes = strstr(out, "kernel probes on") != NULL;
	send_cmd(&t, "newloop\n");
	expect(&t, "late ", line, sizeof(line), NULL);
	ASSERT_EQ(sscanf(line, "late %d", &late), 1);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d made a new loop \"late\": watching it",
		 t.pid);
	expect(&a, want, line, sizeof(line), out);
	ASSERT_STREQ(line, want);
	expect(&a, "callback late_tick (timer) took ", line, sizeof(line), out);
	/* As root, once its thread is watched, its sleep is named. */
	if (probes)
		for (;;) {
			expect(&a, "callback late_tick (timer) took ", line,
			       sizeof(line), out);
			if (strstr(line, "in clock_nanosleep()"))
				break;
			ASSERT(strstr(line, "before the kernel probes "
					    "watched its thread") != NULL);
		}
	kill(a.pid, SIGINT);
	ASSERT_EQ(finish(&a, out), 0);
	snprintf(want, sizeof(want), "loop late (tid %d): ", late);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT(strstr(out, "! late_tick ") != NULL);
	ASSERT_EQ(lines_of(out, "loopwatch: process"), 1);
	send_cmd(&t, "exit 0\n");
	lwt_wait_exit(t.pid, 10000);
	free(out);
}

/* ---- run, record, check ---- */

/* `run`: the agent is the parent, and passes the status on. */
TEST_T(fate_run_segv_told, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160];
	char *more[] = { "--min-ms", "5", NULL };
	struct proc a;

	int pid = start_program("run", more, &a, out);
	send_cmd(&a, "slow 120\n");
	expect(&a, "slow done", line, sizeof(line), out);
	send_cmd(&a, "segv\n");
	ASSERT_EQ(finish(&a, out), 128 + SIGSEGV);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d was killed by SIGSEGV while callback "
		 "crash (tick) of loop fate had run for ",
		 pid);
	if (line_of(out, want, line, sizeof(line)) == NULL)
		LWT_FAIL("no line \"%s...\"", want);
	/* Said once: not again by run when it reaps it. */
	ASSERT(strstr(out, "Segmentation") == NULL);
	ASSERT_EQ(lines_of(out, "loopwatch: process"), 1);
	slow_kept(out, 110);
	free(out);
}

/* `record`: the recording is whole and reads back with what came before
 * the crash. */
TEST_T(fate_record_kept, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160],
	     dir[] = "/tmp/lwfateXXXXXX", path[64];
	struct proc t, a;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/fate.lwrec", dir);
	char *more[] = { "-o", path, NULL };
	start_target(&t);
	start_loopwatch("record", more, t.pid, &a, out);
	run_slow(&t, "120");
	send_cmd(&t, "segv\n");
	ASSERT_EQ(finish(&a, out), 0);
	lwt_wait_exit(t.pid, 10000);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d was killed by SIGSEGV", t.pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT(line_of(out, "recorded ", line, sizeof(line)) != NULL);

	char *args[] = { "report", path, NULL };
	ASSERT_EQ(lwt_loopwatch(args, out, OUT_CAP), 0);
	slow_kept(out, 110);
	/* The recording says how the process ended, as the recorder did:
	 * report says the same line, its JSON has it, and held to budgets
	 * the crash fails it as check would. */
	char said[512];
	ASSERT(line_of(out, want, said, sizeof(said)) != NULL);
	ASSERT(strstr(said, "while callback crash (tick)") != NULL);
	char *json[] = { "report", "--json", path, NULL };
	ASSERT_EQ(lwt_loopwatch(json, out, OUT_CAP), 0);
	ASSERT(strstr(out, "\"ended\": {") != NULL);
	ASSERT(strstr(out, "\"how\": \"exited\"") != NULL);
	ASSERT(strstr(out, "\"failed\": true") != NULL);
	char *budget[] = { "report", "--budget", "callback.max=10s", path,
			   NULL };
	ASSERT_EQ(lwt_loopwatch(budget, out, OUT_CAP), 1);
	ASSERT(strstr(out, "FAIL  exit             process ") != NULL);
	unlink(path);
	rmdir(dir);
	free(out);
}

/* `check`: the budgets are held to what was seen before the crash, and
 * the crash fails it too. */
TEST_T(fate_check_verdict_kept, 60)
{
	char *out = malloc(OUT_CAP), line[512], want[160];
	char *more[] = { "--budget", "callback.max=50ms", "--duration", "20",
			 NULL };
	struct proc t, a;

	start_target(&t);
	start_loopwatch("check", more, t.pid, &a, out);
	run_slow(&t, "120");
	send_cmd(&t, "segv\n");
	ASSERT_EQ(finish(&a, out), 1);
	lwt_wait_exit(t.pid, 10000);
	snprintf(want, sizeof(want),
		 "loopwatch: process %d was killed by SIGSEGV", t.pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT(line_of(out, "FAIL  callback.max", line, sizeof(line)));
	ASSERT(strstr(out, "callback.max: slow: longest 1") != NULL);
	/* The crash fails the check too, on a line of its own. */
	snprintf(want, sizeof(want),
		 "FAIL  exit             process %d was "
		 "killed by SIGSEGV",
		 t.pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT(strstr(out, "\ncheck: FAILED: 1 of 1 budget broken, and the "
			   "process ended badly\n") != NULL);
	free(out);
}

/* The whole file at path, NUL-terminated, into buf. */
static void read_whole(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT(fd >= 0);
	ssize_t n = read(fd, buf, cap - 1);
	ASSERT(n >= 0);
	buf[n] = '\0';
	close(fd);
}

/* `check` is a CI gate: a process that fails while it is watched fails
 * the check even when every budget holds; one that exits with 0 does
 * not.  The verdict says it on a line "FAIL  exit", JUnit has a test case
 * "exit", the JSON an "ended_badly" line. */
TEST_T(fate_check_fails_when_the_process_fails, 90)
{
	char *out = malloc(OUT_CAP), line[512], want[160];
	char dir[] = "/tmp/lwfateXXXXXX", junit[64], json[64];
	static char file[1 << 16];
	struct proc t, a;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(junit, sizeof(junit), "%s/j.xml", dir);
	snprintf(json, sizeof(json), "%s/j.json", dir);

	/* Exits with 0: passed. */
	char *easy[] = { "--budget", "callback.max=10s", "--duration", "20",
			 NULL };
	start_target(&t);
	start_loopwatch("check", easy, t.pid, &a, out);
	run_slow(&t, "20");
	send_cmd(&t, "exit 0\n");
	ASSERT_EQ(finish(&a, out), 0);
	lwt_wait_exit(t.pid, 10000);
	ASSERT(line_of(out, "FAIL ", line, sizeof(line)) == NULL);
	ASSERT(strstr(out, "\ncheck: passed: 0 of 1 budget broken\n"));

	/* Exits with 3: failed, in all three outputs. */
	char junit_arg[80], json_arg[80];
	snprintf(junit_arg, sizeof(junit_arg), "--junit=%s", junit);
	snprintf(json_arg, sizeof(json_arg), "--json=%s", json);
	char *files[] = { "--budget", "callback.max=10s", "--duration", "20",
			  junit_arg,  json_arg,		  NULL };
	start_target(&t);
	start_loopwatch("check", files, t.pid, &a, out);
	run_slow(&t, "20");
	send_cmd(&t, "exit 3\n");
	ASSERT_EQ(finish(&a, out), 1);
	lwt_wait_exit(t.pid, 10000);
	snprintf(want, sizeof(want),
		 "FAIL  exit             process %d exited with status 3",
		 t.pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);
	ASSERT_STREQ(line, want);
	ASSERT(line_of(out, "ok    callback.max", line, sizeof(line)));
	ASSERT(strstr(out, "\ncheck: FAILED: 0 of 1 budget broken, and the "
			   "process ended badly\n"));
	read_whole(junit, file, sizeof(file));
	ASSERT(strstr(file, "tests=\"2\" failures=\"1\"") != NULL);
	ASSERT(strstr(file, "<testcase classname=\"loopwatch.process\" "
			    "name=\"exit\"") != NULL);
	ASSERT(strstr(file, "exited with status 3</failure>") == NULL);
	ASSERT(strstr(file, "type=\"exit\">process ") != NULL);
	read_whole(json, file, sizeof(file));
	snprintf(want, sizeof(want),
		 "\"ended_badly\": \"process %d exited with status 3\"", t.pid);
	ASSERT(strstr(file, want) != NULL);

	/* check -- PROGRAM, which crashes: failed. */
	char *budget[] = { "--budget", "callback.max=10s", NULL };
	int pid = start_program("check", budget, &a, out);
	send_cmd(&a, "segv\n");
	ASSERT_EQ(finish(&a, out), 1);
	snprintf(want, sizeof(want),
		 "FAIL  exit             process %d was killed by SIGSEGV",
		 pid);
	ASSERT(line_of(out, want, line, sizeof(line)) != NULL);

	unlink(junit);
	unlink(json);
	rmdir(dir);
	free(out);
}
