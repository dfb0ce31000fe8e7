/*
 * test_attach.c - `loopwatch attach`: the join of kernel events with ring
 * records (agent/join.c) on synthetic events, then the real command on the
 * real blocky_server, driven over plain sockets.
 *
 * The end-to-end tests need root for the kernel probes; they skip with the
 * reason when the command says the probes are unavailable.  Timing
 * assertions are lower bounds only (a 200 ms sleep is reported as at least
 * 150 ms).
 */
#include "lwtest.h"

#include "join.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
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

/* GET target and read the answer to its end (the server closes). */
static void get(uint16_t port, const char *target)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };
	char req[512], buf[4096];

	ASSERT(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	struct timeval tv = { 30, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Connection: close\r\n\r\n",
			 target);
	ASSERT_EQ(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	size_t len = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		ASSERT(r >= 0);
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	ASSERT(len > 0);
}

/* blocky_server on a free port; its pid, port in *port. */
static pid_t start_server(uint16_t *port, int *out)
{
	char *argv[] = { strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 "--threads",
			 "2",
			 NULL };
	char line[1024];
	pid_t pid = lwt_spawn(argv, out, 1, NULL);
	free(argv[0]);

	/* "blocky_server listening on 127.0.0.1:PORT (pid N)" */
	*port = 0;
	while (lwt_read_line(*out, line, sizeof(line), 60000) >= 0) {
		const char *s = strstr(line, "listening on 127.0.0.1:");
		if (s) {
			*port = (uint16_t)atoi(
				s + strlen("listening on 127.0.0.1:"));
			break;
		}
	}
	if (*port == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		LWT_FAIL("blocky_server did not say where it listens");
	}
	return pid;
}

/* `loopwatch attach --duration 3 --min-ms 5 PID`, started and attached
 * (its first line read); skips when the kernel probes are unavailable. */
static pid_t start_attach(pid_t target, int *out, char *first, size_t cap)
{
	char pidbuf[16];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)target);
	char *argv[] = { strdup(lwt_build_path("bin/loopwatch")),
			 "attach",
			 "--duration",
			 "3",
			 "--min-ms",
			 "5",
			 pidbuf,
			 NULL };

	pid_t pid = lwt_spawn(argv, out, 1, NULL);
	free(argv[0]);
	first[0] = '\0';
	while (lwt_read_line(*out, first, cap, 30000) >= 0)
		if (strstr(first, "attached to PID") ||
		    strstr(first, "unavailable"))
			break;
	if (strstr(first, "unavailable") || strstr(first, "probes off")) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		/* SIGTERM: blocky_server removes its scratch folder. */
		kill(target, SIGTERM);
		lwt_wait_exit(target, 10000);
		SKIP("BPF is not available here: %s", first);
	}
	if (!strstr(first, "kernel probes on"))
		LWT_FAIL("loopwatch attach did not start: %s", first);
	return pid;
}

/* Collect the report to EOF and require exit status 0. */
static void finish_attach(pid_t pid, int fd, char *out, size_t cap)
{
	lwt_read_all(fd, out, cap, 30000);
	close(fd);
	int status = lwt_wait_exit(pid, 10000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		LWT_FAIL("loopwatch attach: status %#x:\n%s", status, out);
}

/*
 * The largest duration of a sleep syscall attributed to a callback named
 * `site` (0 if none), with the stack lines after it in *stack (up to the
 * next line that is not a stack line).
 */
static double sleep_in(const char *report, const char *site, const char **stack)
{
	char head[128];
	double best = 0;
	snprintf(head, sizeof(head), "callback %s (", site);
	for (const char *s = strstr(report, head); s; s = strstr(s + 1, head)) {
		const char *eol = strchr(s, '\n');
		const char *w = strstr(s, "of which ");
		if (!w || (eol && w > eol))
			continue;
		const char *ns = strstr(w, "nanosleep(");
		if (!ns || (eol && ns > eol))
			continue;
		double d = strtod(w + strlen("of which "), NULL);
		if (d > best) {
			best = d;
			*stack = eol ? eol + 1 : "";
		}
	}
	return best;
}

/* The stack lines at s ("  #N ..."), up to the first other line. */
static int stack_names(const char *s, const char *a, const char *b)
{
	while (strncmp(s, "  #", 3) == 0) {
		const char *eol = strchr(s, '\n');
		size_t len = eol ? (size_t)(eol - s) : strlen(s);
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", (int)len, s);
		if (strstr(line, a) || strstr(line, b))
			return 1;
		if (!eol)
			break;
		s = eol + 1;
	}
	return 0;
}

TEST_T(attach_blocky_fsync_and_sleep, 90)
{
	static char report[1 << 18];
	char first[512];
	uint16_t port;
	int sfd, afd;

	if (geteuid() != 0)
		SKIP("kernel probes need root");
	pid_t srv = start_server(&port, &sfd);
	pid_t lw = start_attach(srv, &afd, first, sizeof(first));

	get(port, "/sleep?ms=200");
	for (int i = 0; i < 3; i++)
		get(port, "/fsync");
	finish_attach(lw, afd, report, sizeof(report));
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
	fprintf(stderr, "%s", report);

	const char *stack = "";
	double slept = sleep_in(report, "GET /sleep", &stack);
	if (slept < 150)
		LWT_FAIL("no sleep of >= 150 ms in GET /sleep (%.1f)", slept);
	if (!stack_names(stack, "handle_sleep", "blocky_sleep")) {
#if defined(__SANITIZE_THREAD__)
		/* TSan's usleep interceptor has no frame pointer: the walk
		 * stops there, and the report must say so. */
		const char *t = stack;
		while (strncmp(t, "  #", 3) == 0 && strchr(t, '\n'))
			t = strchr(t, '\n') + 1;
		ASSERT(strncmp(t, "  ... (stack cut", 16) == 0);
		fprintf(stderr,
			"(TSan: the stack is cut at its interceptor)\n");
#else
		LWT_FAIL("the sleep's stack does not name the handler");
#endif
	}
	/* The summary counts it under its site. */
	ASSERT(strstr(report, "summary:") != NULL);
	ASSERT(strstr(report, "nanosleep x") != NULL);

	/* fsync on a fast disk may stay under 5 ms: then it is not
	 * reported, and that is right.  When it is, it is the callback's. */
	const char *f = strstr(report, "callback GET /fsync (");
	const char *any = strstr(report, "fsync(fd ");
	if (any == NULL)
		any = strstr(report, "fdatasync(fd ");
	if (any != NULL) {
		ASSERT(f != NULL);
		const char *eol = strchr(f, '\n');
		ASSERT(eol != NULL);
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", (int)(eol - f), f);
		ASSERT(strstr(line, "fsync(fd ") != NULL);
		/* The path is best effort: blocky_fsync closes the file
		 * right after, often before the event is read. */
		ASSERT(strstr(line, "regular file") != NULL);
	} else {
		fprintf(stderr, "(fsync stayed under 5 ms on this disk)\n");
	}
}

TEST_T(attach_defer_path_not_on_loop_thread, 90)
{
	static char report[1 << 18];
	char first[512];
	uint16_t port;
	int sfd, afd;

	if (geteuid() != 0)
		SKIP("kernel probes need root");
	pid_t srv = start_server(&port, &sfd);
	pid_t lw = start_attach(srv, &afd, first, sizeof(first));

	get(port, "/defer/sleep?ms=200");
	/* The control: the same sleep on the loop thread is seen. */
	get(port, "/sleep?ms=200");
	finish_attach(lw, afd, report, sizeof(report));
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
	fprintf(stderr, "%s", report);

	/* Exactly one >= 150 ms sleep anywhere in the report: the
	 * control's.  The deferred one ran on a worker, not watched. */
	int long_sleeps = 0;
	for (const char *s = strstr(report, "nanosleep("); s;
	     s = strstr(s + 1, "nanosleep(")) {
		const char *bol = s;
		while (bol > report && bol[-1] != '\n')
			bol--;
		const char *in = strstr(bol, " ms in ");
		if (!in || in > s)
			continue;
		const char *num = in;
		while (num > bol &&
		       (num[-1] == '.' || (num[-1] >= '0' && num[-1] <= '9')))
			num--;
		if (strtod(num, NULL) >= 150)
			long_sleeps++;
	}
	ASSERT_EQ(long_sleeps, 1);
	const char *stack = "";
	ASSERT_GE(sleep_in(report, "GET /sleep", &stack), 150);
}

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
	ASSERT(strstr(out, "calls that can block") != NULL);
	ASSERT(strstr(out, "\ncallback ") == NULL);
}
