/*
 * test_stalls.c - `loopwatch attach` against real stalls of real loops, as a
 * user runs it: every blocking handler of blocky_server attributed to its
 * callback; a CPU-bound stall and a sleep in an uninstrumented loop
 * (tests/progs/plain_loop) found by detection and explained by samples;
 * Debian's redis-server stalled by `DEBUG SLEEP 0.3`, its stack unwound
 * through code without frame pointers; the probes working
 * with tracefs unmounted and `ulimit -l 0`; and no program left attached
 * after the agent is killed with SIGKILL.
 *
 * All need root for the kernel probes and skip with the reason without it.
 * Timing assertions are generous lower bounds only.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define REPORT_CAP (1 << 20)

static void need_root(void)
{
	if (geteuid() != 0)
		SKIP("kernel probes need root");
}

/* `loopwatch attach --duration S --min-ms M [extra] PID`, started and
 * attached: its first line read.  Skips when the probes are unavailable. */
static pid_t start_attach(pid_t target, const char *secs, const char *min_ms,
			  const char *extra, int *out, char *first, size_t cap)
{
	char pidbuf[16];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)target);
	char *argv[] = { strdup(lwt_build_path("bin/loopwatch")),
			 "attach",
			 "--duration",
			 (char *)secs,
			 "--min-ms",
			 (char *)min_ms,
			 extra ? (char *)extra : pidbuf,
			 extra ? pidbuf : NULL,
			 NULL };
	pid_t pid = lwt_spawn(argv, out, 1, NULL);

	free(argv[0]);
	first[0] = '\0';
	while (lwt_read_line(*out, first, cap, 30000) >= 0)
		if (strstr(first, "attached to PID") ||
		    strstr(first, "unavailable") || strstr(first, "cannot"))
			break;
	if (strstr(first, "unavailable")) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		kill(target, SIGTERM);
		lwt_wait_exit(target, 10000);
		SKIP("BPF is not available here: %s", first);
	}
	if (!strstr(first, "kernel probes on"))
		LWT_FAIL("loopwatch attach did not start: %s", first);
	return pid;
}

/* The rest of the report, and exit status 0. */
static void finish_attach(pid_t pid, int fd, const char *first, char *out,
			  size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "%s\n", first);
	lwt_read_all(fd, out + n, cap - n, 60000);
	close(fd);
	int status = lwt_wait_exit(pid, 10000);
	fprintf(stderr, "%s", out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		LWT_FAIL("loopwatch attach: status %#x", status);
}

/* The line of `report` that starts with `head` and contains `a` (and `b`
 * when not NULL); NULL if none.  The line is copied into line. */
static const char *find_line(const char *report, const char *head,
			     const char *a, const char *b, char *line,
			     size_t cap)
{
	for (const char *s = report; s && *s;) {
		const char *eol = strchr(s, '\n');
		size_t len = eol ? (size_t)(eol - s) : strlen(s);
		snprintf(line, cap, "%.*s", (int)len, s);
		if (strncmp(line, head, strlen(head)) == 0 && strstr(line, a) &&
		    (!b || strstr(line, b)))
			return s;
		s = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* Whether the stack lines right after the line at s name fn. */
static int stack_after_names(const char *s, const char *fn)
{
	const char *eol = strchr(s, '\n');

	for (s = eol ? eol + 1 : ""; strncmp(s, "  ", 2) == 0;) {
		eol = strchr(s, '\n');
		size_t len = eol ? (size_t)(eol - s) : strlen(s);
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", (int)len, s);
		if (strncmp(line, "  #", 3) == 0 && strstr(line, fn))
			return 1;
		s = eol ? eol + 1 : "";
	}
	return 0;
}

/* Where `what` is in the block that starts at the line at s (that line
 * and the indented ones after it), or NULL. */
static const char *in_block(const char *s, const char *what)
{
	const char *end = strchr(s, '\n');

	while (end && strncmp(end + 1, "  ", 2) == 0)
		end = strchr(end + 1, '\n');
	const char *w = strstr(s, what);
	return w && (!end || w < end) ? w : NULL;
}

/* Whether the summary's "what held them up" section has, under the site
 * line "  SITE:", a call line that contains what. */
static int held_up_by(const char *report, const char *site, const char *what)
{
	const char *sec = strstr(report, "\nwhat held them up:\n");
	char head[256];

	if (sec == NULL)
		return 0;
	snprintf(head, sizeof(head), "\n  %s:\n", site);
	const char *s = strstr(sec, head);
	if (s == NULL)
		return 0;
	/* The site's block: its lines are indented by four or more. */
	for (s += strlen(head); strncmp(s, "    ", 4) == 0;) {
		const char *eol = strchr(s, '\n');
		size_t len = eol ? (size_t)(eol - s) : strlen(s);
		if (s[4] != ' ' && memmem(s, len, what, strlen(what)))
			return 1;
		if (!eol)
			break;
		s = eol + 1;
	}
	return 0;
}

/* ---- blocky_server: every blocking handler ---- */

TEST_T(stall_blocky_every_handler, 120)
{
	char *report = malloc(REPORT_CAP), first[512], line[1024];
	char *argv[] = { strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 "--threads",
			 "2",
			 "--mutex-hold",
			 "200",
			 NULL };
	uint16_t port;
	int sfd, afd;
	const char *s;

	need_root();
	ASSERT(report != NULL);
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[0]);
	pid_t lw =
		start_attach(srv, "8", "5", NULL, &afd, first, sizeof(first));

	lwt_http_get(port, "/sleep?ms=150");
	for (int i = 0; i < 3; i++)
		lwt_http_get(port, "/fsync");
	lwt_http_get(port, "/read");
	lwt_http_get(port, "/cpu?ms=300");
	lwt_http_get(port, "/dns?host=loopwatch-test.invalid");
	/* The holder thread keeps the mutex 200 ms, lets go for 101 ms.  A
	 * request that waited gets it right at a release; the next one, 120
	 * ms later, finds it held again and waits in futex. */
	for (int i = 0; i < 3; i++) {
		lwt_http_get(port, "/mutex");
		usleep(120000);
	}
	finish_attach(lw, afd, first, report, REPORT_CAP);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);

	/* The sleep: a slow syscall of its callback, with the handler on
	 * the stack. */
	s = find_line(report, "callback GET /sleep (", "nanosleep()", NULL,
		      line, sizeof(line));
	ASSERT(s != NULL);
	ASSERT_GE(strtod(strstr(line, "of which ") + 9, NULL), 100);
	ASSERT(stack_after_names(s, "handle_sleep") ||
	       stack_after_names(s, "blocky_sleep"));

	/* The CPU-bound handler: no syscall, but sampled stacks naming it. */
	s = find_line(report, "callback GET /cpu (", "took", NULL, line,
		      sizeof(line));
	ASSERT(s != NULL);
	s = strstr(s, "on CPU: ");
	ASSERT(s != NULL);
	ASSERT_GE(atoi(s + strlen("on CPU: ")), 5);
	s = strstr(s, " of them in:");
	ASSERT(s != NULL);
	ASSERT(stack_after_names(s, "blocky_cpu") ||
	       stack_after_names(s, "handle_cpu"));

	/* The fast ones, counted by the kernel and attributed to their
	 * callback through the ring's current slot. */
	ASSERT(held_up_by(report, "GET /fsync", "fsync on regular file"));
	ASSERT(held_up_by(report, "GET /read", "read on regular file"));
	ASSERT(held_up_by(report, "GET /mutex", "futex"));
	/* The resolver: reads /etc files, then may ask a name server over
	 * UDP and poll for the answer; whatever it did on the loop thread
	 * is on the table under GET /dns. */
	ASSERT(held_up_by(report, "GET /dns", " call"));
	/* Nothing the handlers did is left outside callbacks. */
	ASSERT(!held_up_by(report, "(outside callbacks)", "fsync"));
	free(report);
}

/* The well-behaved path: the same sleep deferred to the worker pool is
 * not on the loop thread, so nothing of it is reported; the control, the
 * sleep on the loop thread, is. */
TEST_T(stall_blocky_defer_not_on_loop_thread, 90)
{
	char *report = malloc(REPORT_CAP), first[512], line[1024];
	char *argv[] = { strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 "--threads",
			 "2",
			 NULL };
	uint16_t port;
	int sfd, afd;

	need_root();
	ASSERT(report != NULL);
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[0]);
	pid_t lw =
		start_attach(srv, "3", "5", NULL, &afd, first, sizeof(first));
	lwt_http_get(port, "/defer/sleep?ms=200");
	lwt_http_get(port, "/sleep?ms=200");
	finish_attach(lw, afd, first, report, REPORT_CAP);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);

	/* Exactly one slow sleep in the report, the control's. */
	int sleeps = 0;
	for (const char *s = report;
	     (s = find_line(s, "", "nanosleep() [off CPU", NULL, line,
			    sizeof(line))) != NULL;
	     s = strchr(s, '\n'))
		sleeps++;
	ASSERT_EQ(sleeps, 1);
	ASSERT(find_line(report, "callback GET /sleep (", "nanosleep()", NULL,
			 line, sizeof(line)) != NULL);
	ASSERT(strstr(report, "callback GET /defer/sleep") == NULL);
	/* Counted as a call that can block: only the control's. */
	ASSERT(held_up_by(report, "GET /sleep", "nanosleep"));
	ASSERT(!held_up_by(report, "GET /defer/sleep", "nanosleep"));
	ASSERT(!held_up_by(report, "GET /defer/* (done)", "nanosleep"));
	free(report);
}

/* ---- an uninstrumented loop ---- */

TEST_T(stall_plain_loop_cpu_and_sleep, 90)
{
	char *report = malloc(REPORT_CAP), first[512], line[1024], want[96];
	char *argv[] = { strdup(lwt_build_path("tests/progs/plain_loop")),
			 "--port", "0", NULL };
	uint16_t port;
	int sfd, afd;
	const char *s;

	need_root();
	ASSERT(report != NULL);
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[0]);
	pid_t lw =
		start_attach(srv, "4", "20", NULL, &afd, first, sizeof(first));

	/* Two requests, two iterations. */
	lwt_ask(port, "cpu 300\n", "done");
	lwt_ask(port, "sleep 200\n", "done");
	finish_attach(lw, afd, first, report, REPORT_CAP);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);

	/* No rings: detection found the epoll thread. */
	snprintf(want, sizeof(want), "loop thread %d (plain_loop): no ring",
		 (int)srv);
	ASSERT(strstr(report, want) != NULL);
	ASSERT(strstr(report, "found waiting in epoll_wait") != NULL);

	/* The CPU-bound iteration, explained by samples in burn_cpu. */
	int cpu = 0, slept = 0;
	snprintf(want, sizeof(want), "loop thread %d (plain_loop): ", (int)srv);
	for (s = report; (s = find_line(s, want, "an iteration took", NULL,
					line, sizeof(line))) != NULL;
	     s = strchr(s, '\n')) {
		double d = strtod(strstr(line, "took ") + 5, NULL);
		const char *g = in_block(s, " of them in:");
		if (g != NULL && d >= 250) {
			ASSERT(stack_after_names(g, "burn_cpu"));
			cpu = 1;
		}
		if (strstr(line, "nanosleep()") && d >= 150) {
			ASSERT(stack_after_names(s, "nanosleep"));
			slept = 1;
		}
	}
	ASSERT(cpu);
	ASSERT(slept);
	free(report);
}

/* ---- Debian's redis-server ---- */

/* A free loopback port: bind to 0, read it back, close. */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	ASSERT(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
	close(fd);
	return ntohs(sa.sin_port);
}

TEST_T(stall_redis_debug_sleep, 90)
{
	char *report = malloc(REPORT_CAP), first[512], line[1024];
	char dir[] = "/tmp/lw-redis.XXXXXX", portbuf[16], want[96];
	int rfd, afd;
	const char *s;

	need_root();
	if (access("/usr/bin/redis-server", X_OK) != 0)
		SKIP("/usr/bin/redis-server is not installed (tools/deps.sh "
		     "installs it)");
	ASSERT(report != NULL);
	ASSERT(mkdtemp(dir) != NULL);
	uint16_t port = free_port();
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	char *argv[] = { "/usr/bin/redis-server",
			 "--port",
			 portbuf,
			 "--bind",
			 "127.0.0.1",
			 "--save",
			 "",
			 "--appendonly",
			 "no",
			 "--dir",
			 dir,
			 "--daemonize",
			 "no",
			 "--enable-debug-command",
			 "yes",
			 NULL };
	pid_t redis = lwt_spawn(argv, &rfd, 1, NULL);
	/* Ready when it answers PING. */
	int fd = -1;
	for (int i = 0; i < 200 && fd < 0; i++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons(port) };
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			fd = -1;
			usleep(20000);
		}
	}
	ASSERT(fd >= 0);
	close(fd);
	lwt_ask(port, "PING\r\n", "+PONG");

	pid_t lw = start_attach(redis, "3", "50", NULL, &afd, first,
				sizeof(first));
	lwt_ask(port, "DEBUG SLEEP 0.3\r\n", "+OK");
	finish_attach(lw, afd, first, report, REPORT_CAP);
	kill(redis, SIGTERM);
	lwt_wait_exit(redis, 10000);
	close(rfd);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ASSERT_EQ(system(cmd), 0);

	/* Its main thread, found in epoll_wait, stalled ~300 ms in a sleep
	 * syscall whose stack starts in libc's sleep. */
	snprintf(want, sizeof(want),
		 "loop thread %d (redis-server): ", (int)redis);
	ASSERT(strstr(report, "found waiting in epoll_wait") != NULL);
	s = find_line(report, want, "an iteration took", "nanosleep()", line,
		      sizeof(line));
	ASSERT(s != NULL);
	ASSERT_GE(strtod(strstr(line, "took ") + 5, NULL), 250);
	ASSERT_GE(strtod(strstr(line, "of which ") + 9, NULL), 250);
	ASSERT(stack_after_names(s, "nanosleep"));
	/* Debian builds redis without frame pointers: the frames past libc
	 * come from unwinding the stack snapshot with DWARF CFI, and its
	 * symbol table names the command and the event loop. */
	ASSERT(stack_after_names(s, "debugCommand"));
	ASSERT(stack_after_names(s, "aeMain"));
	free(report);
}

/* ---- no tracefs, no locked memory ---- */

TEST_T(stall_no_tracefs_no_memlock, 60)
{
	char *report = malloc(REPORT_CAP), first[512], line[1024], cmd[1024];
	char *argv[] = { strdup(lwt_build_path("tests/progs/plain_loop")),
			 "--port", "0", NULL };
	uint16_t port;
	int sfd, afd;

	need_root();
	ASSERT(report != NULL);
	if (access("/usr/bin/unshare", X_OK) != 0)
		SKIP("no /usr/bin/unshare");
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[0]);
	/* In a private mount namespace, unmount every tracefs (and the
	 * debugfs that may hold one), lock no memory, then attach. */
	snprintf(cmd, sizeof(cmd),
		 "for m in $(awk '$3 == \"tracefs\" || $3 == \"debugfs\" "
		 "{print $2}' /proc/mounts | sort -r); do umount \"$m\" || "
		 "exit 3; done; "
		 "if awk '$3 == \"tracefs\"' /proc/mounts | grep -q .; then "
		 "exit 4; fi; "
		 "ulimit -l 0 || exit 5; echo \"memlock $(ulimit -l)\"; "
		 "exec %s attach --duration 3 --min-ms 50 %d",
		 lwt_build_path("bin/loopwatch"), (int)srv);
	char *sh[] = { "/usr/bin/unshare",
		       "--mount",
		       "--propagation",
		       "private",
		       "/bin/sh",
		       "-c",
		       cmd,
		       NULL };
	pid_t lw = lwt_spawn(sh, &afd, 1, NULL);
	ASSERT(lwt_read_line(afd, first, sizeof(first), 30000) >= 0);
	ASSERT(strcmp(first, "memlock 0") == 0);
	while (lwt_read_line(afd, first, sizeof(first), 30000) >= 0)
		if (strstr(first, "attached to PID") || strstr(first, "cannot"))
			break;
	if (!strstr(first, "kernel probes on"))
		LWT_FAIL("without tracefs and memlock: %s", first);
	lwt_ask(port, "sleep 200\n", "done");
	finish_attach(lw, afd, first, report, REPORT_CAP);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
	ASSERT(find_line(report, "loop thread ", "an iteration took",
			 "nanosleep()", line, sizeof(line)) != NULL);
	free(report);
}

/* ---- SIGKILL leaves nothing attached ---- */

/* How many of ids `bpftool prog show id` still finds: the programs' end
 * seen by a tool of the system's, not by loopwatch's own library. */
static size_t progs_alive(const unsigned *ids, size_t n)
{
	size_t alive = 0;
	for (size_t i = 0; i < n; i++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd),
			 "bpftool prog show id %u >/dev/null 2>&1", ids[i]);
		alive += system(cmd) == 0;
	}
	return alive;
}

TEST_T(stall_sigkill_leaves_no_program, 60)
{
	char first[512];
	char *argv[] = { strdup(lwt_build_path("tests/progs/plain_loop")),
			 "--port", "0", NULL };
	unsigned ids[64];
	uint16_t port;
	int sfd, afd;

	need_root();
	if (system("command -v bpftool >/dev/null 2>&1 || test -x "
		   "/usr/sbin/bpftool") != 0)
		SKIP("no bpftool");
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[0]);
	pid_t lw =
		start_attach(srv, "60", "50", NULL, &afd, first, sizeof(first));
	/* All four programs: syscall entry and exit, the scheduler, the
	 * sampler. */
	size_t n = lwt_bpf_progs_held(lw, ids, 64);
	fprintf(stderr, "agent %d holds %zu programs\n", (int)lw, n);
	ASSERT_GE(n, 4);
	ASSERT_EQ(progs_alive(ids, n), n);

	ASSERT_OK(kill(lw, SIGKILL));
	lwt_wait_exit(lw, 10000);
	close(afd);
	/* Freed once the last fd is gone, after an RCU grace period. */
	size_t left = n;
	for (int i = 0; i < 50 && (left = progs_alive(ids, n)) > 0; i++)
		usleep(100000);
	ASSERT_EQ(left, 0);
	/* The target did not notice. */
	lwt_ask(port, "ping\n", "pong");
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}

/* ---- without privileges ---- */

/* An unprivileged user attaching to its own process: one line says the
 * kernel probes need privileges, and the rings still report the slow
 * callback. */
TEST_T(stall_unprivileged_rings_alone, 60)
{
	char *report = malloc(REPORT_CAP), line[1024], pidbuf[16];
	uint16_t port;
	int sfd, afd;

	if (geteuid() != 0)
		SKIP("needs root to start both sides as another user");
	if (access("/usr/bin/setpriv", X_OK) != 0)
		SKIP("no /usr/bin/setpriv");
	ASSERT(report != NULL);
	char *argv[] = { "/usr/bin/setpriv",
			 "--reuid=65534",
			 "--regid=65534",
			 "--clear-groups",
			 strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 NULL };
	pid_t srv = lwt_start_listener(argv, "listening on", &port, &sfd);
	free(argv[4]);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	char *lw_argv[] = { "/usr/bin/setpriv",
			    "--reuid=65534",
			    "--regid=65534",
			    "--clear-groups",
			    strdup(lwt_build_path("bin/loopwatch")),
			    "attach",
			    "--duration",
			    "2",
			    "--min-ms",
			    "50",
			    pidbuf,
			    NULL };
	pid_t lw = lwt_spawn(lw_argv, &afd, 1, NULL);
	free(lw_argv[4]);
	/* The request must come after the attach: read up to its line (not
	 * up to the line before it, which says the probes "cannot load":
	 * the rings' cursors are placed after it, once the symbols are read,
	 * which under ASan takes longer than the request). */
	size_t n = 0;
	while (lwt_read_line(afd, line, sizeof(line), 30000) >= 0) {
		n += (size_t)snprintf(report + n, REPORT_CAP - n, "%s\n", line);
		if (strstr(line, "attached to PID") ||
		    strstr(line, "cannot attach"))
			break;
	}
	lwt_http_get(port, "/sleep?ms=150");
	lwt_read_all(afd, report + n, REPORT_CAP - n, 30000);
	close(afd);
	int status = lwt_wait_exit(lw, 10000);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
	fprintf(stderr, "%s", report);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* One line that says what is missing, then the rings' report. */
	const char *l = find_line(
		report, "loopwatch: kernel probes unavailable",
		"continuing with the rings alone", NULL, line, sizeof(line));
	ASSERT(l != NULL);
	ASSERT(strstr(line, "root or CAP_BPF") != NULL);
	ASSERT(strstr(report, "kernel probes off") != NULL);
	ASSERT(find_line(report, "callback GET /sleep (", "took", NULL, line,
			 sizeof(line)) != NULL);
	free(report);
}
