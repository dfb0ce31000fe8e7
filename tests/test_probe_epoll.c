/* test_probe_epoll.c - the probe API proven on a loop that is not ours:
 * examples/epoll_probe, a hand-written epoll loop that reports through
 * lw_probe_* only, read from another process by the real reader. */
#include "lwtest.h"
#include "loopwatch.h"
#include "loopwatch_ring.h"
#include "ring_reader.h"

#include <signal.h>
#include <sys/wait.h>

static pid_t start_probe_program(FILE **out)
{
	int fds[2];
	ASSERT_OK(pipe(fds));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(lwt_build_path("examples/epoll_probe"), "epoll_probe",
		      "--tick-ms", "10", "--block-ms", "60", "--block-every",
		      "10", "--seconds", "20", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	*out = fdopen(fds[0], "r");
	char line[64];
	int got = 0;
	ASSERT(fgets(line, sizeof(line), *out) != NULL);
	ASSERT_EQ(sscanf(line, "ready %d", &got), 1);
	ASSERT_EQ(got, pid);
	return pid;
}

TEST_T(probe_epoll_loop_reports_through_probe_api, 60)
{
	FILE *out;
	pid_t pid = start_probe_program(&out);
	lw_rr_proc_t *proc;
	char why[256];
	int err = lw_rr_attach(pid, &proc, why, sizeof(why));
	if (err != 0)
		LWT_FAIL("attach: %s", why);
	ASSERT_EQ(proc->nrings, 1);
	lw_rr_ring_t *r = proc->rings[0];
	ASSERT_STREQ(lw_rr_name(r), "epoll-main");
	ASSERT_EQ(lw_rr_flags(r), LW_RING_F_PROBE);
	ASSERT_EQ(lw_rr_tid(r), pid); /* made on the main thread */

	uint32_t tick_id = 0, msg_id = 0;
	for (uint32_t id = 1; id <= lw_rr_nsites(r); id++) {
		lw_rr_site_t s;
		ASSERT_OK(lw_rr_site(r, id, &s));
		if (strcmp(s.name, "on_tick") == 0) {
			tick_id = id;
			ASSERT_EQ(s.kind, LW_KIND_TIMER);
		}
		if (strcmp(s.name, "on_message") == 0) {
			msg_id = id;
			ASSERT_EQ(s.kind, LW_KIND_IO);
		}
	}
	ASSERT(tick_id != 0 && msg_id != 0);

	/* Read ~1.5 s of records: every 10th tick blocks for 60 ms, and the
	 * tick after it runs late. */
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	struct lw_ring_record rec[256];
	int blocked = 0, fast_ticks = 0, msgs = 0, late = 0;
	uint64_t t_end = lwt_now_ns() + 1500000000ull;
	while (lwt_now_ns() < t_end) {
		size_t n = lw_rr_read(r, &c, rec, 256);
		for (size_t i = 0; i < n; i++) {
			if (rec[i].site == tick_id) {
				if (rec[i].duration_ns >= 59000000)
					blocked++;
				else
					fast_ticks++;
				if (rec[i].lateness_ns >= 20000000)
					late++;
			} else if (rec[i].site == msg_id) {
				msgs++;
				ASSERT_LT(rec[i].duration_ns, 50000000);
			}
		}
		usleep(20000);
	}
	ASSERT_GE(blocked, 2);
	ASSERT_GE(fast_ticks, 10);
	ASSERT_GE(msgs, 20);
	ASSERT_GE(late, 1);
	ASSERT_EQ(c.lost, 0);
	lw_rr_counters_t k;
	lw_rr_counters(r, &k);
	ASSERT(k.iterations > 0 && k.idle_ns > 0 && k.busy_ns > 0);

	lw_rr_detach(proc);
	kill(pid, SIGTERM);
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fclose(out);
}
