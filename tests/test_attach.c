/*
 * test_attach.c - `loopwatch attach`: the join of kernel events with ring
 * records (agent/join.c) on synthetic events, and the command on processes
 * without rings (refused without a loop thread; --tid).  The end-to-end
 * tests on real servers are in test_stalls.c.
 *
 * The tests with kernel probes need root; they skip with the reason when
 * the command says the probes are unavailable.  Timing assertions are
 * lower bounds only (a 200 ms sleep is reported as at least 150 ms).
 */
#include "lwtest.h"

#include "join.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define MS 1000000ull

/* ---- the join ---- */

static lw_join_event_t fake(uint32_t tid, uint64_t start, uint64_t dur,
			    uint32_t nr)
{
	lw_join_event_t e;
	memset(&e, 0, sizeof(e));
	e.h.kind = e.u.sys.kind = LW_BPF_EV_SYSCALL;
	e.h.tid = e.u.sys.tid = tid;
	e.h.aux = e.u.sys.nr = nr;
	e.h.start_ns = e.u.sys.start_ns = start;
	e.h.duration_ns = e.u.sys.duration_ns = dur;
	e.u.sys.fd = -1;
	e.stack = strdup("  #0 x\n");
	return e;
}

static void free_events(lw_join_event_t *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].stack);
}

TEST(attach_join_contains)
{
	lw_join_t *j = lw_join_new(16);
	lw_join_event_t out[8], e;
	ASSERT(j != NULL);

	e = fake(7, 100 * MS, 20 * MS, 35);
	lw_join_add(j, &e);
	e = fake(8, 100 * MS, 20 * MS, 35); /* another thread */
	lw_join_add(j, &e);
	e = fake(7, 300 * MS, 5 * MS, 74);
	lw_join_add(j, &e);

	/* A callback that ends before the first syscall ends claims none. */
	ASSERT_EQ(lw_join_take(j, 7, 95 * MS, 24 * MS, out, 8), 0);
	/* Exact bounds are inside. */
	ASSERT_EQ(lw_join_take(j, 7, 100 * MS, 20 * MS, out, 8), 1);
	ASSERT_EQ(out[0].h.aux, 35);
	ASSERT_EQ(out[0].h.tid, 7);
	free_events(out, 1);
	/* Taken once only; tid 8's event stays for tid 8. */
	ASSERT_EQ(lw_join_take(j, 7, 0, 200 * MS, out, 8), 0);
	ASSERT_EQ(lw_join_pending(j), 2);
	ASSERT_EQ(lw_join_take(j, 8, 50 * MS, 100 * MS, out, 8), 1);
	free_events(out, 1);
	/* A huge duration saturates instead of wrapping. */
	ASSERT_EQ(lw_join_take(j, 7, 250 * MS, UINT64_MAX, out, 8), 1);
	ASSERT_EQ(out[0].h.aux, 74);
	free_events(out, 1);
	ASSERT_EQ(lw_join_pending(j), 0);
	ASSERT_EQ(lw_join_dropped(j), 0);
	lw_join_free(j);
}

TEST(attach_join_expire_and_drop)
{
	lw_join_t *j = lw_join_new(3);
	lw_join_event_t out[8], e;
	ASSERT(j != NULL);

	for (uint64_t i = 0; i < 5; i++) {
		e = fake(7, (100 + 100 * i) * MS, 10 * MS, (uint32_t)i);
		lw_join_add(j, &e);
	}
	/* Full at 3: the two oldest went. */
	ASSERT_EQ(lw_join_pending(j), 3);
	ASSERT_EQ(lw_join_dropped(j), 2);

	/* Events 2, 3, 4 span [300, 310], [400, 410], [500, 510] ms.  At
	 * 600 ms with a 150 ms grace, 2 and 3 are due; a callback running
	 * since 350 ms may still claim 3 (it started before it), not 2. */
	ASSERT_EQ(lw_join_expire(j, 7, 600 * MS, 150 * MS, 350 * MS, out, 8),
		  1);
	ASSERT_EQ(out[0].h.aux, 2);
	free_events(out, 1);
	/* Without a running callback 3 goes too; 4 is within the grace. */
	ASSERT_EQ(lw_join_expire(j, 7, 600 * MS, 150 * MS, 0, out, 8), 1);
	ASSERT_EQ(out[0].h.aux, 3);
	free_events(out, 1);
	/* Another thread's expiry leaves it alone; the final flush takes it. */
	ASSERT_EQ(lw_join_expire(j, 9, UINT64_MAX, 0, 0, out, 8), 0);
	ASSERT_EQ(lw_join_expire(j, 7, UINT64_MAX, 0, 0, out, 8), 1);
	ASSERT_EQ(out[0].h.aux, 4);
	free_events(out, 1);
	/* What stays buffered is freed with the join (LeakSanitizer). */
	e = fake(7, 0, 1, 0);
	lw_join_add(j, &e);
	lw_join_free(j);
}

/* ---- processes ---- */

TEST_T(attach_no_rings_no_tid, 30)
{
	char *argv[] = { "/bin/sleep", "30", NULL };
	char pidbuf[16], out[4096];
	int fd, afd;
	pid_t target = lwt_spawn(argv, &fd, 1, NULL);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)target);
	char *lw_argv[] = { strdup(lwt_build_path("bin/loopwatch")),
			    "attach",
			    "--duration",
			    "2",
			    pidbuf,
			    NULL };

	/* Let exec finish: the pid must be /bin/sleep, not our fork. */
	usleep(100000);
	pid_t lw = lwt_spawn(lw_argv, &afd, 1, NULL);
	free(lw_argv[0]);
	lwt_read_all(afd, out, sizeof(out), 20000);
	close(afd);
	int status = lwt_wait_exit(lw, 10000);
	kill(target, SIGKILL);
	waitpid(target, NULL, 0);
	close(fd);
	fprintf(stderr, "%s", out);
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 2);
	ASSERT(strstr(out, "cannot attach to PID") != NULL);
	ASSERT(strstr(out, "no loopwatch rings") != NULL);
	ASSERT(strstr(out, "--tid") != NULL);
}

TEST_T(attach_tid_without_rings, 60)
{
	char pidbuf[16], out[1 << 16];
	int afd;

	if (geteuid() != 0)
		SKIP("kernel probes need root");
	/* A child that only sleeps, 200 ms at a time, on its main thread. */
	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0) {
		for (;;) {
			struct timespec ts = { 0, 200 * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)child);
	char *argv[] = { strdup(lwt_build_path("bin/loopwatch")),
			 "attach",
			 "--duration",
			 "2",
			 "--min-ms",
			 "50",
			 "--tid",
			 pidbuf,
			 pidbuf,
			 NULL };
	pid_t lw = lwt_spawn(argv, &afd, 1, NULL);
	free(argv[0]);
	lwt_read_all(afd, out, sizeof(out), 30000);
	close(afd);
	int status = lwt_wait_exit(lw, 10000);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	fprintf(stderr, "%s", out);
	if (strstr(out, "probes unavailable"))
		SKIP("BPF is not available here");
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	/* No rings, and the thread never waits in epoll: every slow
	 * syscall is outside callbacks, on that tid, all of it off CPU. */
	char want[64];
	int found = 0;
	snprintf(want, sizeof(want), "on tid %d\n", (int)child);
	for (const char *s = strstr(out, want); s; s = strstr(s + 1, want)) {
		const char *bol = s;
		while (bol > out && bol[-1] != '\n')
			bol--;
		ASSERT(strncmp(bol, "outside callbacks: ", 19) == 0);
		const char *call = strstr(bol, " in ");
		if (call == NULL || call > s)
			continue; /* off CPU outside syscalls: preempted */
		ASSERT(strncmp(call, " in nanosleep() [off CPU ", 25) == 0 ||
		       strncmp(call, " in clock_nanosleep() [off CPU ", 31) ==
			       0);
		ASSERT_GE(strtod(bol + 19, NULL), 150);
		found++;
	}
	ASSERT_GE(found, 3);
	/* Counted as a call that can block, on that thread. */
	ASSERT(strstr(out, "nanosleep") != NULL);
	ASSERT(strstr(out, "what held them up:") != NULL);
	ASSERT(strstr(out, "\ncallback ") == NULL);
}
