/*
 * test_soak.c - what loopwatch promises the process it watches, held to
 * real processes and the real loopwatch binary:
 *
 *   soak_kill_agent_50_times        an agent killed with SIGKILL at random
 *                                   moments, start-up included, 50 times:
 *                                   the target answers all along, no BPF
 *                                   program is left, a new agent attaches
 *                                   and reports at once, and the target
 *                                   served every request of its load once;
 *   soak_agent_maps_ring_read_only  the agent's mapping of a ring is
 *                                   read-only, and a write through such a
 *                                   mapping faults;
 *   soak_short                      bench/soak.sh for a short while: attach
 *                                   and detach cycles of every kind under
 *                                   load, no crash, no program left;
 *   overload_loss_exact_memory_flat a target that writes faster than the
 *                                   agent reads, the agent stopped now and
 *                                   then: the records read and lost add up
 *                                   to the records written, exactly, the
 *                                   agent says so, and its memory is flat;
 *   soak_sigint_during_startup_keeps_recording
 *                                   Ctrl-C while record still starts: the
 *                                   recording ends complete and readable;
 *   soak_record_killed_keeps_its_data
 *                                   a recorder of a quiet target, read
 *                                   while it runs, has its callbacks on
 *                                   file within seconds, and killed with
 *                                   SIGKILL leaves them readable;
 *   soak_record_write_error_said_once
 *                                   a recording that cannot grow (a file
 *                                   size limit) ends the recorder at once
 *                                   with one line that names the file.
 *
 * The target is examples/blocky_server under tests/progs/http_load, or
 * tests/progs/ring_target's flood.  As root the agent runs with its kernel
 * probes, and the tests check the BPF programs; without root, the rings
 * alone, and the BPF checks are skipped (said on stderr).  No assertion is
 * about time: throughput and rates are printed, never held to a bound.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "ring_reader.h"

#define OUT_CAP (1 << 20)
#define MAX_PROGS 8192

/* ---- processes ---- */

/* Read lines from fd until one contains marker (copied into line), or
 * until deadline (lwt_now_ms()) or the end of the output: 1 if found. */
static int read_until(int fd, const char *marker, double deadline, char *line,
		      size_t cap)
{
	for (;;) {
		int left = (int)(deadline - lwt_now_ms());
		if (left <= 0 || lwt_read_line(fd, line, cap, left) < 0)
			return 0;
		if (strstr(line, marker))
			return 1;
	}
}

/* Append what fd has now (waiting at most wait_ms) to buf; 0 at the end
 * of the output. */
static int slurp(int fd, char *buf, size_t *len, size_t cap, int wait_ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	if (poll(&pfd, 1, wait_ms) <= 0)
		return 1;
	if (*len + 1 >= cap)
		*len = 0; /* only the end matters; keep reading */
	ssize_t r = read(fd, buf + *len, cap - 1 - *len);
	if (r <= 0)
		return r < 0 && errno == EINTR;
	*len += (size_t)r;
	buf[*len] = '\0';
	return 1;
}

/* Read and drop fd's output until deadline. */
static void drop_until(int fd, double deadline)
{
	char buf[4096];
	size_t len = 0;
	int left;

	while ((left = (int)(deadline - lwt_now_ms())) > 0)
		if (!slurp(fd, buf, &len, sizeof(buf), left))
			usleep((useconds_t)left * 1000); /* the end of it */
}

/* build/bin/loopwatch with args (NULL-ended), stdout and stderr on *fd. */
static pid_t start_lw(char **args, int *fd)
{
	char *argv[16];
	int n = 0;

	argv[n++] = strdup(lwt_build_path("bin/loopwatch"));
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = lwt_spawn(argv, fd, 1, NULL);
	free(argv[0]);
	return pid;
}

/* tests/progs/http_load on 127.0.0.1:port, its counts every second. */
static pid_t start_load(uint16_t port, int *fd)
{
	char portbuf[16], line[256];
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	char *argv[] = { strdup(lwt_build_path("tests/progs/http_load")),
			 "--port",
			 portbuf,
			 "--conns",
			 "2",
			 "--every",
			 "1000",
			 NULL };
	pid_t pid = lwt_spawn(argv, fd, 1, NULL);
	free(argv[0]);
	if (!read_until(*fd, "# ready", lwt_now_ms() + 10000, line,
			sizeof(line)))
		LWT_FAIL("http_load did not start");
	return pid;
}

/* Stop the load; its answers.  Every request was answered, none failed.
 * Prints its rate over its first and last seconds. */
static uint64_t stop_load(pid_t pid, int fd)
{
	char line[256];
	unsigned long long ok = 0, err = 0, c[3] = { 0 }, last[2] = { 0 };
	double t[3] = { 0 }, tl[2] = { 0 };
	int lines = 0, total = 0;

	ASSERT_OK(kill(pid, SIGTERM));
	while (lwt_read_line(fd, line, sizeof(line), 60000) >= 0) {
		double tt;
		unsigned long long n, e;
		if (sscanf(line, "t %lf ok %llu errors %llu", &tt, &n, &e) ==
		    3) {
			if (lines < 3) {
				t[lines] = tt;
				c[lines] = n;
			}
			tl[0] = tl[1], last[0] = last[1];
			tl[1] = tt, last[1] = n;
			lines++;
		} else if (sscanf(line, "total ok %llu errors %llu", &ok,
				  &err) == 2) {
			total = 1;
			break;
		}
	}
	int st = lwt_wait_exit(pid, 60000);
	close(fd);
	ASSERT(total);
	if (lines >= 3 && tl[1] > tl[0] && t[2] > t[1])
		fprintf(stderr,
			"load: %.0f requests/s in its second second, %.0f in "
			"its last\n",
			(double)(c[2] - c[1]) / (t[2] - t[1]),
			(double)(last[1] - last[0]) / (tl[1] - tl[0]));
	fprintf(stderr, "load: %llu answers, %llu errors\n", ok, err);
	ASSERT_EQ(err, 0);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return ok;
}

/* Stop blocky_server; the requests it says it served. */
static uint64_t stop_blocky(pid_t pid, int fd)
{
	char line[256];
	unsigned long long served = 0;
	int said = 0;

	ASSERT_OK(kill(pid, SIGTERM));
	while (!said && lwt_read_line(fd, line, sizeof(line), 20000) >= 0)
		said = sscanf(line, "blocky_server: served %llu requests",
			      &served) == 1;
	int st = lwt_wait_exit(pid, 20000);
	close(fd);
	ASSERT(said);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return served;
}

static void target_alive(pid_t pid)
{
	int st;
	ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0);
}

/* ---- BPF programs ---- */

struct ids {
	unsigned v[MAX_PROGS];
	size_t n;
};

static int ids_has(const struct ids *s, unsigned id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == id)
			return 1;
	return 0;
}

static void ids_add(struct ids *s, unsigned id)
{
	if (!ids_has(s, id) && s->n < MAX_PROGS)
		s->v[s->n++] = id;
}

/* A program's name (up to 15 characters), "" if it is gone. */
static void prog_name(unsigned id, char *name, size_t cap)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	name[0] = '\0';
	if (fd < 0)
		return;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
		snprintf(name, cap, "%s", info.name);
	close(fd);
}

/* What the agents of a test held: the programs' ids, and their names. */
struct agent_progs {
	struct ids ids;
	char names[64][16];
	size_t nnames;
};

/* Note the programs agent pid holds now; how many. */
static size_t note_progs(struct agent_progs *a, pid_t pid)
{
	static unsigned held[MAX_PROGS];
	size_t n = lwt_bpf_progs_held(pid, held, MAX_PROGS);

	for (size_t i = 0; i < n; i++) {
		if (ids_has(&a->ids, held[i]))
			continue;
		ids_add(&a->ids, held[i]);
		char name[16];
		prog_name(held[i], name, sizeof(name));
		size_t k = 0;
		while (k < a->nnames && strcmp(a->names[k], name) != 0)
			k++;
		if (k == a->nnames && *name && a->nnames < 64)
			snprintf(a->names[a->nnames++], 16, "%s", name);
	}
	return n;
}

/* The programs the agents held that are still loaded, within 5 s: they
 * are freed once the last fd is gone, after an RCU grace period. */
static size_t progs_left(const struct agent_progs *a)
{
	size_t left = 0;
	for (int i = 0; i < 50; i++) {
		left = 0;
		for (size_t k = 0; k < a->ids.n; k++)
			left += lwt_bpf_prog_alive(a->ids.v[k]);
		if (left == 0)
			break;
		usleep(100000);
	}
	return left;
}

/* Programs loaded since `before` that bear the name of one the agents
 * held, and that no process holds: an agent killed between loading a
 * program and our last look at its fds would leave one so.  Each must stay
 * so for 2 s to count (a program whose holder just died is freed
 * meanwhile); other processes' programs, loopwatch's too, have a
 * holder. */
static size_t progs_orphaned(const struct ids *before,
			     const struct agent_progs *a)
{
	static unsigned now[MAX_PROGS], held[MAX_PROGS * 4];
	struct ids cand = { .n = 0 };
	size_t n = lwt_bpf_progs_all(now, MAX_PROGS);

	for (size_t i = 0; i < n; i++) {
		char name[16];
		if (ids_has(before, now[i]))
			continue;
		prog_name(now[i], name, sizeof(name));
		for (size_t k = 0; k < a->nnames; k++)
			if (strcmp(name, a->names[k]) == 0)
				ids_add(&cand, now[i]);
	}
	size_t orphans = 0;
	for (int round = 0; round < 3 && cand.n > 0; round++) {
		if (round > 0)
			usleep(1000000);
		size_t nh = lwt_bpf_progs_held(0, held, MAX_PROGS * 4);
		struct ids still = { .n = 0 };
		for (size_t i = 0; i < cand.n; i++) {
			int h = 0;
			for (size_t k = 0; k < nh && !h; k++)
				h = held[k] == cand.v[i];
			if (!h && lwt_bpf_prog_alive(cand.v[i]))
				ids_add(&still, cand.v[i]);
		}
		cand = still;
		orphans = cand.n;
	}
	for (size_t i = 0; i < cand.n; i++) {
		char name[16];
		prog_name(cand.v[i], name, sizeof(name));
		fprintf(stderr, "left behind: BPF program %u (%s)\n", cand.v[i],
			name);
	}
	return orphans;
}

/* ---- SIGKILL at random moments ---- */

#define KILLS 50

/*
 * blocky_server under a steady load; 50 times, `loopwatch attach` (with
 * its kernel probes as root) killed with SIGKILL: every other time at a
 * random moment of its first second, which is its start-up (the rings
 * mapped, the BPF programs loaded and attached, the symbols and debug
 * information read: ~0.5-0.9 s here), the other times at a random moment
 * of its first 300 ms of watching.  After each kill the target is alive
 * and answers.  At the end: none of the programs the agents held is left,
 * nor a program like theirs that nobody holds; a new agent attaches and
 * reports a slow callback; and the target served exactly the requests of
 * the load and of this test, each once.  The moments are pseudo-random,
 * the same every run.
 */
TEST_T(soak_kill_agent_50_times, 480)
{
	static struct ids before;
	static struct agent_progs ours;
	char line[1024], pidbuf[16];
	uint16_t port;
	int bfd, lfd;
	int root = geteuid() == 0;
	uint64_t asked = 0;

	pid_t srv = lwt_start_blocky(&port, &bfd);
	pid_t load = start_load(port, &lfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	if (root)
		before.n = lwt_bpf_progs_all(before.v, MAX_PROGS);
	else
		fprintf(stderr, "not root: the rings alone, no BPF checks\n");

	unsigned seed = 20261127;
	int in_start = 0, in_start_bpf = 0, watching = 0;
	for (int i = 0; i < KILLS; i++) {
		char *args[] = { "attach", "--min-ms", "20", pidbuf, NULL };
		int afd, attached;
		pid_t lw = start_lw(args, &afd);

		if (i % 2 == 0) {
			double at = lwt_now_ms() + rand_r(&seed) % 1000;
			attached = read_until(afd, "attached to PID", at, line,
					      sizeof(line));
			drop_until(afd, at);
		} else {
			attached = read_until(afd, "attached to PID",
					      lwt_now_ms() + 60000, line,
					      sizeof(line));
			if (!attached)
				LWT_FAIL("agent %d did not attach: %s", i,
					 line);
			if (root && !strstr(line, "kernel probes on"))
				LWT_FAIL("agent %d: %s", i, line);
			drop_until(afd, lwt_now_ms() + rand_r(&seed) % 300);
		}
		size_t held = root ? note_progs(&ours, lw) : 0;
		ASSERT_OK(kill(lw, SIGKILL));
		int st = lwt_wait_exit(lw, 10000);
		close(afd);
		/* Killed by us, not ended on its own. */
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			LWT_FAIL("agent %d ended with status %#x before the "
				 "kill",
				 i, st);
		if (attached)
			watching++;
		else if (held > 0)
			in_start_bpf++;
		else
			in_start++;
		target_alive(srv);
		lwt_http_get(port, "/health");
		asked++;
	}
	fprintf(stderr,
		"agents killed: %d in their start-up before holding a BPF "
		"program, %d in their start-up holding some, %d while "
		"watching\n",
		in_start, in_start_bpf, watching);
	ASSERT_GT(watching, 0);

	if (root) {
		ASSERT_EQ(progs_left(&ours), 0);
		ASSERT_EQ(progs_orphaned(&before, &ours), 0);
		fprintf(stderr, "the agents held %zu BPF programs (named",
			ours.ids.n);
		for (size_t k = 0; k < ours.nnames; k++)
			fprintf(stderr, " %s", ours.names[k]);
		fprintf(stderr, "); none is left\n");
		ASSERT_GE(ours.ids.n, 4);
	}

	/* A new agent attaches at once, and sees a slow callback with what
	 * held it up. */
	char *args[] = { "attach", "--duration", "3", "--min-ms",
			 "20",	   pidbuf,	 NULL };
	int afd;
	pid_t lw = start_lw(args, &afd);
	if (!read_until(afd, "attached to PID", lwt_now_ms() + 60000, line,
			sizeof(line)))
		LWT_FAIL("the new agent did not attach: %s", line);
	if (root)
		ASSERT(strstr(line, "kernel probes on") != NULL);
	lwt_http_get(port, "/sleep?ms=100");
	asked++;
	char *out = malloc(OUT_CAP);
	ASSERT(out != NULL);
	lwt_read_all(afd, out, OUT_CAP, 60000);
	close(afd);
	int st = lwt_wait_exit(lw, 20000);
	fprintf(stderr, "%s\n%s", line, out);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT(strstr(out, "callback GET /sleep (") != NULL);
	if (root)
		ASSERT(strstr(out, "nanosleep()") != NULL);
	free(out);

	/* Every request was served once: the load's, and this test's. */
	uint64_t ok = stop_load(load, lfd);
	uint64_t served = stop_blocky(srv, bfd);
	ASSERT_GT(ok, 0);
	ASSERT_EQ(served, ok + asked);
}

/* ---- the ring, read-only ---- */

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_code;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_code = si->si_code;
	siglongjmp(fault_jmp, 1);
}

/* The start and permissions of the first mapping of a loopwatch memfd in
 * /proc/PID/maps (pid 0: this process); 0 if there is none.  *count gets
 * how many there are, and 0 if any is mapped otherwise than perms. */
static uintptr_t ring_mapping(pid_t pid, char perms[8], int *count)
{
	char path[64], l[512];
	uintptr_t first = 0;

	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	FILE *f = fopen(path, "r");
	ASSERT(f != NULL);
	*count = 0;
	while (fgets(l, sizeof(l), f)) {
		unsigned long start;
		char p[8];
		if (!strstr(l, "/memfd:loopwatch (deleted)") ||
		    sscanf(l, "%lx-%*x %7s", &start, p) != 2)
			continue;
		if (*count == 0) {
			first = start;
			snprintf(perms, 8, "%s", p);
		} else if (strcmp(p, perms) != 0) {
			perms[0] = '?';
		}
		(*count)++;
	}
	fclose(f);
	return first;
}

/* In a child: map the target's ring as the agent does (its reader,
 * lw_rr_attach), then try to make the mapping writable and to write
 * through it.  Exit 0 when both fail as they must. */
static void write_through_reader(pid_t target)
{
	lw_rr_proc_t *p;
	char why[256], perms[8] = "";
	int count;

	if (lw_rr_attach(target, &p, why, sizeof(why)) < 0 || p->nrings != 1)
		_exit(2);
	volatile char *at = (volatile char *)ring_mapping(0, perms, &count);
	if (at == NULL || count != 1 || strcmp(perms, "r--s") != 0)
		_exit(3);
	/* The fd was opened read-only: the mapping cannot become
	 * writable. */
	if (mprotect((void *)at, 4096, PROT_READ | PROT_WRITE) == 0)
		_exit(4);
	if (errno != EACCES)
		_exit(5);
	struct sigaction sa = { .sa_sigaction = on_fault,
				.sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(fault_jmp, 1) == 0) {
		/* The byte it holds, written back: nothing would change if
		 * the write went through. */
		char c = *at;
		*at = c;
		_exit(6);
	}
	_exit(fault_code == SEGV_ACCERR ? 0 : 7);
}

/*
 * The agent maps every ring read-only: its /proc/PID/maps shows the memfd
 * r--s (the target's own mapping is rw-s), and it keeps no fd to it.  The
 * agent's reader, in a child process, maps the same ring: the mapping
 * cannot be made writable (EACCES) and a write through it faults
 * (SEGV_ACCERR), so nothing the agent does can write into the target.
 */
TEST_T(soak_agent_maps_ring_read_only, 60)
{
	char line[1024], pidbuf[16], perms[8] = "";
	uint16_t port;
	int bfd, afd, count;

	pid_t srv = lwt_start_blocky(&port, &bfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	char *args[] = { "attach", "--min-ms", "50", pidbuf, NULL };
	pid_t lw = start_lw(args, &afd);
	if (!read_until(afd, "attached to PID", lwt_now_ms() + 60000, line,
			sizeof(line)))
		LWT_FAIL("loopwatch did not attach: %s", line);

	ASSERT(ring_mapping(lw, perms, &count) != 0);
	fprintf(stderr, "agent: %d mapping%s of the ring, %s\n", count,
		count == 1 ? "" : "s", perms);
	ASSERT_EQ(count, 1);
	ASSERT_STREQ(perms, "r--s");
	ASSERT(ring_mapping(srv, perms, &count) != 0);
	ASSERT_STREQ(perms, "rw-s");
	/* No fd of the agent's names the memfd (it closed it once mapped). */
	char fdpath[64], target[256];
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", (int)lw, fd);
		ssize_t n = readlink(fdpath, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		ASSERT(strstr(target, "memfd:loopwatch") == NULL);
	}

	fflush(stdout);
	fflush(stderr);
	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0)
		write_through_reader(srv);
	int st = lwt_wait_exit(child, 20000);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		LWT_FAIL("the reader's mapping: status %#x (see "
			 "write_through_reader)",
			 st);

	/* The target did not notice; the agent ends cleanly. */
	lwt_http_get(port, "/health");
	target_alive(srv);
	ASSERT_OK(kill(lw, SIGINT));
	char *out = malloc(OUT_CAP);
	ASSERT(out != NULL);
	lwt_read_all(afd, out, OUT_CAP, 30000);
	close(afd);
	st = lwt_wait_exit(lw, 20000);
	fprintf(stderr, "%s\n%s", line, out);
	free(out);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	stop_blocky(srv, bfd);
}

/* ---- the soak, short ---- */

/*
 * bench/soak.sh for 36 s in phases of 3 s: blocky_server under load,
 * watched and not in turn, by loopwatch attach ending by itself, attach
 * detached with SIGINT, agents killed at random moments, check and record
 * (their files read back); as root, by an agent as root (rings and kernel
 * probes) and one as nobody (the rings alone) in turn.  It must end with no
 * crash (every agent's exit status the one expected, no sanitizer report, the
 * target alive, no request failed), no BPF program left (as root), and the
 * target's count of requests served equal to the requests made.  The throughput
 * it prints, observed against unobserved, is a figure, never held to a bound
 * here: bench/README.md has the 10-minute run.
 */
TEST_T(soak_short, 240)
{
	char cmd[4096];
	static char text[1 << 20];

	snprintf(cmd, sizeof(cmd),
		 "SOAK_PHASE=3 bash '%s/bench/soak.sh' '%s' 36", LW_SRC_DIR,
		 lwt_build_path(""));
	int st = lwt_sh_capture(cmd, text, sizeof(text));
	ASSERT(text[0] != '\0');
	fprintf(stderr, "%s", text);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 2 && strstr(text, "needs"))
		SKIP("bench/soak.sh cannot run here (see above)");
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT(strstr(text, "\ncrashes: 0 ") != NULL);
	ASSERT(strstr(text, ": consistent\n") != NULL);
	if (geteuid() == 0)
		ASSERT(strstr(text, "\nBPF programs leaked: 0 ") != NULL);
	/* Every kind of cycle ran. */
	ASSERT(strstr(text, " 0 attach --duration") == NULL);
	ASSERT(strstr(text, " 0 attach + SIGINT") == NULL);
	ASSERT(strstr(text, " 0 check") == NULL);
	ASSERT(strstr(text, " 0 record + report") == NULL);
	ASSERT(strstr(text, " 0 attach or record + SIGKILL") == NULL);
	ASSERT(strstr(text, "\nthroughput observed / unobserved") != NULL);
}

/* ---- overload ---- */

/* VmRSS of pid, in kB (0 if unreadable). */
static long rss_kb(pid_t pid)
{
	char path[64], l[256];
	long kb = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(l, sizeof(l), f))
		if (sscanf(l, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* The integer after "key": in s (compact JSON), or -1. */
static long long json_num(const char *s, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(s, k);
	return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* Pass the time until deadline, keeping what the agent says. */
static void keep_until(int fd, char *out, size_t *len, double deadline)
{
	int left;
	while ((left = (int)(deadline - lwt_now_ms())) > 0)
		if (!slurp(fd, out, len, OUT_CAP, left))
			usleep((useconds_t)left * 1000);
}

/*
 * A loop that writes callbacks as fast as it can (ring_target flood, ~2 M
 * a second here) into a ring of 1024 records, which it overruns every
 * half millisecond, 20 times within one of the agent's 10 ms ticks; and
 * the agent stopped (SIGSTOP) twice for 300 ms besides.  The target
 * never waits for it: the agent loses records, and counts them exactly.
 * The target says how many records it wrote between the moment the agent
 * placed its cursor (the loop was idle then, and the flood starts after the
 * agent's first line) and its last one (it is idle again after it): the
 * agent's final JSON says how many it read and how many it lost, and they
 * add up to that, exactly; its "records lost, read too late" lines add up
 * to the same loss.  Its memory stays flat: VmRSS after 6 s of this is
 * less than 1.5 times VmRSS after 3 s.
 */
TEST_T(overload_loss_exact_memory_flat, 120)
{
	char line[256], pidbuf[16];
	int tfd, afd;
	const double n_ms = 3000;

	setenv("LOOPWATCH_RING_SIZE", "1024", 1);
	char *targv[] = { strdup(lwt_build_path("tests/progs/ring_target")),
			  "flood", NULL };
	pid_t tgt = lwt_spawn(targv, &tfd, 0, NULL);
	unsetenv("LOOPWATCH_RING_SIZE");
	free(targv[0]);
	if (!read_until(tfd, "ready", lwt_now_ms() + 10000, line, sizeof(line)))
		LWT_FAIL("ring_target flood did not start");
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)tgt);

	/* --json: status lines on stderr (merged here), the summary as one
	 * JSON object on stdout at the end. */
	char *args[] = { "attach",     "--json", "--min-ms", "1000",
			 "--stuck-ms", "0",	 pidbuf,     NULL };
	pid_t lw = start_lw(args, &afd);
	if (!read_until(afd, "attached to PID", lwt_now_ms() + 60000, line,
			sizeof(line)))
		LWT_FAIL("loopwatch did not attach: %s", line);
	fprintf(stderr, "%s\n", line);

	unsigned long long before, before_own, written, written_own;
	ASSERT_OK(kill(tgt, SIGUSR1));
	if (!read_until(tfd, "go ", lwt_now_ms() + 10000, line, sizeof(line)) ||
	    sscanf(line, "go %llu %llu", &before, &before_own) != 2)
		LWT_FAIL("the flood did not start: %s", line);

	char *out = malloc(OUT_CAP);
	size_t len = 0;
	ASSERT(out != NULL);
	out[0] = '\0';
	double t0 = lwt_now_ms();
	keep_until(afd, out, &len, t0 + 500);
	ASSERT_OK(kill(lw, SIGSTOP));
	keep_until(afd, out, &len, t0 + 800);
	ASSERT_OK(kill(lw, SIGCONT));
	keep_until(afd, out, &len, t0 + n_ms);
	long rss1 = rss_kb(lw);
	keep_until(afd, out, &len, t0 + n_ms + 500);
	ASSERT_OK(kill(lw, SIGSTOP));
	keep_until(afd, out, &len, t0 + n_ms + 800);
	ASSERT_OK(kill(lw, SIGCONT));
	keep_until(afd, out, &len, t0 + 2 * n_ms);
	long rss2 = rss_kb(lw);

	ASSERT_OK(kill(tgt, SIGUSR2));
	if (!read_until(tfd, "done ", lwt_now_ms() + 10000, line,
			sizeof(line)) ||
	    sscanf(line, "done %llu %llu", &written, &written_own) != 2)
		LWT_FAIL("the flood did not end: %s", line);
	/* The loop is idle: let the agent read what is left, then stop it. */
	keep_until(afd, out, &len, lwt_now_ms() + 300);
	ASSERT_OK(kill(lw, SIGINT));
	while (slurp(afd, out, &len, OUT_CAP, 30000))
		;
	close(afd);
	int st = lwt_wait_exit(lw, 30000);
	target_alive(tgt);
	kill(tgt, SIGKILL);
	lwt_wait_exit(tgt, 10000);
	close(tfd);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* The final object, and the loss lines. */
	const char *fin = NULL;
	unsigned long long said = 0, n;
	int lines = 0;
	for (const char *s = out; s && *s;) {
		const char *eol = strchr(s, '\n');
		if (strncmp(s, "{", 1) == 0 &&
		    strstr(s, "\"type\":\"final\"") != NULL &&
		    (eol == NULL || strstr(s, "\"type\":\"final\"") < eol))
			fin = s;
		if (sscanf(s, "(loop flood: %llu records lost, read too late)",
			   &n) == 1) {
			said += n;
			lines++;
		}
		s = eol ? eol + 1 : NULL;
	}
	if (fin == NULL)
		LWT_FAIL("no final JSON object in: %.2000s", out);
	const char *loops = strstr(fin, "\"loops\":[");
	const char *sites = loops ? strstr(loops, "\"sites\":") : NULL;
	ASSERT(loops != NULL && sites != NULL);
	char *seg = strndup(loops, (size_t)(sites - loops));
	long long read = json_num(seg, "records");
	long long lost = json_num(seg, "records_lost");
	free(seg);
	unsigned long long w = written - before;
	fprintf(stderr,
		"written %llu (own count %llu), read %lld, lost %lld (%.1f%%); "
		"%d lines said %llu lost\n",
		w, written_own - before_own, read, lost,
		w ? 100.0 * (double)lost / (double)w : 0.0, lines, said);
	fprintf(stderr,
		"agent VmRSS %ld kB after %.0f s, %ld kB after %.0f s\n", rss1,
		n_ms / 1000, rss2, 2 * n_ms / 1000);
	free(out);

	ASSERT_EQ(written, written_own);
	ASSERT_EQ(before, before_own);
	ASSERT_GT(lost, 0);
	ASSERT_GT(read, 0);
	ASSERT_EQ((unsigned long long)(read + lost), w);
	ASSERT_EQ(said, (unsigned long long)lost);
	ASSERT_GT(rss1, 0);
	ASSERT_LT(rss2 * 2, rss1 * 3);
}

/* Whether process pid catches signal sig (SigCgt of its status). */
static int catches(pid_t pid, int sig)
{
	char path[64], line[256];
	unsigned long long mask = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigCgt: %llx", &mask) == 1)
			break;
	fclose(f);
	return (int)((mask >> (sig - 1)) & 1);
}

/* Ctrl-C while the agent is still starting (loading its probes, reading
 * symbols and debug information): the recording is ended as any other,
 * complete and readable, and the agent exits 0. */
TEST_T(soak_sigint_during_startup_keeps_recording, 60)
{
	static char out[1 << 16];
	char dir[] = "/tmp/lwsoakXXXXXX", rec[64], pidbuf[16];
	uint16_t port;
	int sfd, afd;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(rec, sizeof(rec), "%s/r.lwrec", dir);
	pid_t srv = lwt_start_blocky(&port, &sfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	char *args[] = { "record", "-o", rec, pidbuf, NULL };
	pid_t lw = start_lw(args, &afd);
	/* As soon as it catches SIGINT, which is before its start-up. */
	for (int i = 0; i < 5000 && !catches(lw, SIGINT); i++)
		usleep(1000);
	ASSERT(catches(lw, SIGINT));
	ASSERT_OK(kill(lw, SIGINT));
	size_t n = 0;
	while (slurp(afd, out, &n, sizeof(out), 30000) && n + 1 < sizeof(out))
		;
	close(afd);
	fprintf(stderr, "%s", out);
	int st = lwt_wait_exit(lw, 30000);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	/* The signal came during the start-up: the line that ends it comes
	 * after, and then at once the recording's end. */
	ASSERT(strstr(out, "attached to PID") != NULL);
	ASSERT(strstr(out, "recorded ") != NULL);
	char *report[] = { "report", rec, NULL };
	static char rep[1 << 16];
	ASSERT_EQ(lwt_loopwatch(report, rep, sizeof(rep)), 0);
	ASSERT(strstr(rep, "blocky_server") != NULL);
	unlink(rec);
	rmdir(dir);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}

/* The number of calls in the site row of report text that starts with
 * "! NAME " or "  NAME ", -1 if there is none. */
static long site_calls(const char *text, const char *name)
{
	char row[128];

	for (const char *p = text; (p = strstr(p, name)) != NULL; p++) {
		if (p - text < 2 || (p[-2] != '!' && p[-2] != ' ') ||
		    p[-1] != ' ' || (p - text > 2 && p[-3] != '\n'))
			continue;
		snprintf(row, sizeof(row), "%.*s", (int)strcspn(p, "\n"), p);
		char kind[32];
		long calls;
		char fmt[48];
		snprintf(fmt, sizeof(fmt), "%%*s %%31s %%ld");
		if (sscanf(row, fmt, kind, &calls) == 2)
			return calls;
	}
	return -1;
}

/* A recorder writes what it has read to its file every second, not only
 * when its buffer (4 MiB) fills: a quiet target's recording, read while
 * the recorder runs, holds its callbacks within seconds, and the recorder
 * killed outright leaves all of them readable. */
TEST_T(soak_record_killed_keeps_its_data, 90)
{
	static char rep[1 << 16];
	char dir[] = "/tmp/lwsoakXXXXXX", rec[64], line[256], pidbuf[16];
	int tfd, afd;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(rec, sizeof(rec), "%s/r.lwrec", dir);
	char *targv[] = { strdup(lwt_build_path("tests/progs/ring_target")),
			  "sleep50", NULL };
	pid_t tgt = lwt_spawn(targv, &tfd, 0, NULL);
	free(targv[0]);
	if (!read_until(tfd, "ready", lwt_now_ms() + 10000, line, sizeof(line)))
		LWT_FAIL("ring_target sleep50 did not start");
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)tgt);
	char *args[] = { "record", "-o", rec, pidbuf, NULL };
	pid_t lw = start_lw(args, &afd);
	if (!read_until(afd, "attached to PID", lwt_now_ms() + 30000, line,
			sizeof(line)))
		LWT_FAIL("loopwatch record did not attach");

	/* Read while it runs: a cut file (exit 2), whose summary grows. */
	char *report[] = { "report", rec, NULL };
	long seen = -1;
	for (double end = lwt_now_ms() + 20000;
	     lwt_now_ms() < end && seen < 5;) {
		usleep(300 * 1000);
		int rc = lwt_loopwatch(report, rep, sizeof(rep));
		ASSERT(rc == 2 || rc == 0);
		seen = site_calls(rep, "sleep50");
	}
	if (seen < 5)
		LWT_FAIL(
			"in 20 s the running recorder's file held %ld calls of "
			"sleep50 (a timer every 150 ms); its report:\n%s",
			seen, rep);
	ASSERT_OK(kill(lw, SIGKILL));
	int st = lwt_wait_exit(lw, 10000);
	ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(afd);

	/* Everything seen before the kill is still there, and the file
	 * says how it ends. */
	ASSERT_EQ(lwt_loopwatch(report, rep, sizeof(rep)), 2);
	fprintf(stderr, "%s", rep);
	ASSERT_GE(site_calls(rep, "sleep50"), seen);
	ASSERT(strstr(rep, "no end record (the recorder did not finish)"));
	unlink(rec);
	rmdir(dir);
	kill(tgt, SIGKILL);
	lwt_wait_exit(tgt, 10000);
	close(tfd);
}

/* A recording that stops growing (here a file size limit: bash's ulimit -f
 * 64, SIGXFSZ ignored, against a next_tick storm) ends
 * the recorder at once: one line names the file and the error, exit 2,
 * long before its --duration. */
TEST_T(soak_record_write_error_said_once, 90)
{
	static char out[1 << 16];
	char dir[] = "/tmp/lwsoakXXXXXX", rec[64], line[256], cmd[1024];
	int tfd;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(rec, sizeof(rec), "%s/r.lwrec", dir);
	char *targv[] = { strdup(lwt_build_path("tests/progs/ring_target")),
			  "storm", NULL };
	pid_t tgt = lwt_spawn(targv, &tfd, 0, NULL);
	free(targv[0]);
	if (!read_until(tfd, "ready", lwt_now_ms() + 10000, line, sizeof(line)))
		LWT_FAIL("ring_target storm did not start");
	snprintf(cmd, sizeof(cmd),
		 "bash -c 'ulimit -f 64 && trap \"\" XFSZ && exec \"$0\" "
		 "record -o %s --duration 60 %d' '%s'",
		 rec, (int)tgt, lwt_build_path("bin/loopwatch"));
	double t0 = lwt_now_ms();
	int st = lwt_sh_capture(cmd, out, sizeof(out));
	double took = lwt_now_ms() - t0;
	fprintf(stderr, "%s(ended after %.1f s)\n", out, took / 1000);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 2);
	char want[128];
	snprintf(want, sizeof(want),
		 "loopwatch: cannot write the recording %s: ", rec);
	const char *said = strstr(out, want);
	ASSERT(said != NULL);
	ASSERT(strstr(said + strlen(want), "cannot write") == NULL);
	ASSERT(strstr(said, "File too large") != NULL);
	/* Not at --duration's end (60 s): the test's own limit is 90 s, so
	 * this only tells a stop from a run to the end. */
	ASSERT_LT(took, 55000);
	unlink(rec);
	rmdir(dir);
	kill(tgt, SIGKILL);
	lwt_wait_exit(tgt, 10000);
	close(tfd);
}
