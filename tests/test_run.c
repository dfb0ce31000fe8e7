/*
 * test_run.c - `loopwatch run [opts] -- PROGRAM`: the program is started,
 * watched as attach watches it, stopped at the end of --duration, and its
 * exit status passed on; a program that cannot be started is exit 2.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <signal.h>
#include <sys/wait.h>

TEST_T(run_watches_a_program, 60)
{
	static char out[1 << 18];
	char *prog = strdup(lwt_build_path("tests/progs/ring_target"));
	char *args[] = { "run", "--duration", "2",	 "--min-ms", "30",
			 "--",	prog,	      "sleep50", NULL };

	/* The duration ends the watch and stops the program: status 0. */
	ASSERT_EQ(lwt_loopwatch(args, out, sizeof(out)), 0);
	free(prog);
	ASSERT(strstr(out, "attached to PID") != NULL);
	/* sleep50's timer sleeps 50 ms every 150 ms: a dozen in 2 s. */
	int n = 0;
	for (const char *s = out;
	     (s = strstr(s, "callback sleep50 (timer) took ")); s++)
		n++;
	ASSERT_GE(n, 5);
	if (geteuid() == 0 && !strstr(out, "probes unavailable"))
		ASSERT(strstr(out, "nanosleep()") != NULL);
}

TEST(run_program_not_found)
{
	static char out[4096];
	char *args[] = { "run", "--", "/nonexistent/program", NULL };

	ASSERT_EQ(lwt_loopwatch(args, out, sizeof(out)), 2);
	ASSERT(strstr(out, "loopwatch: cannot run /nonexistent/program: No "
			   "such file or directory") != NULL);
}

TEST(run_usage_errors)
{
	static char out[4096];
	char *none[] = { "run", NULL };
	char *bad[] = { "run", "--duration", "soon", "--", "true", NULL };
	char *tid[] = { "run", "--tid", "1", "--", "true", NULL };

	ASSERT_EQ(lwt_loopwatch(none, out, sizeof(out)), 2);
	ASSERT(strstr(out, "no program to run") != NULL);
	ASSERT_EQ(lwt_loopwatch(bad, out, sizeof(out)), 2);
	ASSERT(strstr(out, "bad --duration 'soon'") != NULL);
	ASSERT_EQ(lwt_loopwatch(tid, out, sizeof(out)), 2);
}

/* A program that ends by itself: its status is loopwatch's. */
TEST_T(run_passes_the_exit_status, 30)
{
	static char out[4096];
	char *args[] = { "run", "--", "/bin/sh", "-c", "exit 3", NULL };

	ASSERT_EQ(lwt_loopwatch(args, out, sizeof(out)), 3);
	ASSERT(strstr(out, "loopwatch: /bin/sh exited with status 3") != NULL);
}
