/* test_snap.c - snapshots of a live thread's registers and stack through
 * the sleepable task iterator (agent/bpf_snap.c), unwound and named as the
 * agent does: a loop thread asleep in a callback, one burning the CPU, odd
 * thread ids, the cost of one snapshot, and nothing left in the kernel after
 * close or after the holder is killed. */
#include "bpf_snap.h"
#include "lwtest.h"
#include "symbolize.h"
#include "unwind.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#define SNAP_FRAMES 64

/* A loaded snapshot program, or a skip that says why there is none. */
static lw_snap_t *snap_open_or_skip(void)
{
	static char why[512];
	lw_snap_t *s;
	int r;

	if (geteuid() != 0)
		SKIP("BPF snapshots need root");
	r = lw_snap_open(&s, why, sizeof(why));
	if (r == -EPERM || r == -ENOSYS || r == -ENOENT)
		SKIP("BPF unavailable: %s", why);
	if (r < 0)
		LWT_FAIL("lw_snap_open: %d: %s", r, why);
	return s;
}

/* plain_loop on a free port: its pid, loop tid and port. */
static pid_t snap_start_loop(int *out, pid_t *tid, uint16_t *port)
{
	char *argv[] = { strdup(lwt_build_path("tests/progs/plain_loop")),
			 "--port", "0", NULL };
	char line[1024];
	pid_t pid = lwt_spawn(argv, out, 1, NULL);
	const char *p;

	free(argv[0]);
	*port = 0;
	*tid = 0;
	while (lwt_read_line(*out, line, sizeof(line), 60000) >= 0) {
		if ((p = strstr(line, "127.0.0.1:")) != NULL)
			*port = (uint16_t)atoi(p + strlen("127.0.0.1:"));
		if ((p = strstr(line, "loop tid ")) != NULL)
			*tid = (pid_t)atoi(p + strlen("loop tid "));
		if (*port)
			break;
	}
	if (*port == 0 || *tid <= 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		LWT_FAIL("plain_loop did not say where it listens");
	}
	return pid;
}

/* Send one request line; the connection stays open for the reply. */
static int snap_send(uint16_t port, const char *req)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };
	struct timeval tv = { 30, 0 };

	ASSERT(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ASSERT_EQ(send(fd, req, strlen(req), MSG_NOSIGNAL),
		  (ssize_t)strlen(req));
	return fd;
}

/* Wait for the reply line containing want, then close. */
static void snap_reply(int fd, const char *want)
{
	char buf[256];
	size_t len = 0;

	for (;;) {
		ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		ASSERT(r > 0);
		len += (size_t)r;
		buf[len] = '\0';
		if (strstr(buf, want) || len + 1 == sizeof(buf))
			break;
	}
	ASSERT(strstr(buf, want) != NULL);
	close(fd);
}

static void snap_stop_loop(pid_t pid, int out)
{
	kill(pid, SIGTERM);
	lwt_wait_exit(pid, 10000);
	close(out);
}

/* Whether func is name, or a clone of it that the compiler made
 * ("burn_cpu.isra.0"). */
static int snap_func_is(const char *func, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(func, name, n) && (func[n] == '\0' || func[n] == '.');
}

/* Unwind a snapshot of tid in pid and say whether the named functions are
 * on it; the frames go to stderr for whoever reads a failure. */
static int snap_stack_has(pid_t pid, pid_t tid, const struct lw_bpf_ustack *us,
			  const char *f1, const char *f2)
{
	uint64_t pcs[SNAP_FRAMES];
	char why[256], line[600];
	lw_unwind_t *u;
	lw_sym_frame_t fr;
	int n, has1 = 0, has2 = 0;

	ASSERT_OK(lw_unwind_open(pid, &u, why, sizeof(why)));
	n = lw_unwind_stack(u, tid, &us->regs, us->data, us->bytes, pcs,
			    SNAP_FRAMES);
	ASSERT_GE(n, 1);
	for (int i = 0; i < n; i++) {
		lw_sym_lookup(lw_unwind_sym(u), pcs[i], i > 0, &fr);
		lw_sym_format(&fr, line, sizeof(line));
		fprintf(stderr, "  #%d %s\n", i, line);
		has1 |= snap_func_is(fr.func, f1);
		has2 |= snap_func_is(fr.func, f2);
	}
	lw_unwind_close(u);
	return has1 && has2;
}

static int snap_is_sleep(long nr)
{
	return nr == SYS_nanosleep || nr == SYS_clock_nanosleep;
}

static double snap_now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* The loop thread asleep in a callback (slow_sleep -> nanosleep): the
 * snapshot says which syscall, and its stack names the callback's function
 * and main, while the callback is still asleep. */
TEST_T(snap_sleeping_loop_thread, 60)
{
	lw_snap_t *s = snap_open_or_skip();
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr = -1;
	pid_t pid, tid;
	uint16_t port;
	int out, c, r = -1;

	ASSERT(us != NULL);
	pid = snap_start_loop(&out, &tid, &port);
	/* Idle, the loop sits in epoll_wait (once it got there after its
	 * line, whose write may still be under way): a syscall, but not a
	 * sleep. */
	for (int i = 0; i < 100; i++) {
		nr = -1;
		if (lw_snap_take(s, tid, us, &nr, why, sizeof(why)) == 0 &&
		    (nr == SYS_epoll_wait || nr == SYS_epoll_pwait ||
		     nr == SYS_epoll_pwait2))
			break;
		usleep(10000);
	}
	fprintf(stderr, "idle in syscall %ld\n", nr);
	ASSERT(nr == SYS_epoll_wait || nr == SYS_epoll_pwait ||
	       nr == SYS_epoll_pwait2);
	ASSERT_GT(us->bytes, 0);

	c = snap_send(port, "sleep 2000\n");
	double t0 = snap_now_us();
	/* Until the loop has read the request and gone to sleep. */
	while (snap_now_us() - t0 < 1500000) {
		r = lw_snap_take(s, tid, us, &nr, why, sizeof(why));
		if (r == 0 && snap_is_sleep(nr))
			break;
		usleep(10000);
	}
	double asleep_ms = (snap_now_us() - t0) / 1000;
	fprintf(stderr, "asleep in %ld after %.0f ms: %u stack bytes\n", nr,
		asleep_ms, us->bytes);
	ASSERT_EQ(r, 0);
	ASSERT(snap_is_sleep(nr));
	ASSERT_GT(us->bytes, 0);
	ASSERT(snap_stack_has(pid, tid, us, "slow_sleep", "main"));
	/* Taken while the callback still slept: its reply is yet to come. */
	char b;
	ASSERT_EQ(recv(c, &b, 1, MSG_DONTWAIT), -1);
	ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
	snap_reply(c, "done");

	snap_stop_loop(pid, out);
	lw_snap_close(s);
	free(us);
}

/* The tid of pid's thread named comm, 0 if none. */
static pid_t snap_thread_named(pid_t pid, const char *comm)
{
	char path[300], name[64];
	pid_t found = 0;
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	ASSERT(dir != NULL);
	while (!found && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid,
			 d->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f)) {
			name[strcspn(name, "\n")] = '\0';
			if (!strcmp(name, comm))
				found = (pid_t)atoi(d->d_name);
		}
		fclose(f);
	}
	closedir(dir);
	return found;
}

/* A helper thread (not the main one: its stack is a mapping of its own,
 * deeper than the copy) asleep in nanosleep: its function and the thread
 * start are on the stack. */
TEST_T(snap_sleeping_helper_thread, 60)
{
	lw_snap_t *s = snap_open_or_skip();
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr = -1;
	pid_t pid, tid, sl;
	uint16_t port;
	int out, r = -1;

	ASSERT(us != NULL);
	pid = snap_start_loop(&out, &tid, &port);
	sl = snap_thread_named(pid, "sleeper");
	ASSERT(sl > 0 && sl != tid);
	/* It sleeps 1 s at a time: nearly every snapshot finds it asleep. */
	for (int i = 0; i < 20; i++) {
		r = lw_snap_take(s, sl, us, &nr, why, sizeof(why));
		if (r == 0 && snap_is_sleep(nr))
			break;
		usleep(10000);
	}
	ASSERT_EQ(r, 0);
	ASSERT(snap_is_sleep(nr));
	ASSERT_GT(us->bytes, 0);
	ASSERT(snap_stack_has(pid, sl, us, "sleeper", "start_thread"));
	snap_stop_loop(pid, out);
	lw_snap_close(s);
	free(us);
}

/* The loop thread burning the CPU in burn_cpu: either a snapshot caught it
 * preempted (user mode, no syscall, burn_cpu on the stack), or it says
 * that the thread is running. */
TEST_T(snap_running_loop_thread, 60)
{
	lw_snap_t *s = snap_open_or_skip();
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr = -1;
	pid_t pid, tid;
	uint16_t port;
	int out, c, r = -1, ok = 0, busy = 0;

	ASSERT(us != NULL);
	pid = snap_start_loop(&out, &tid, &port);
	/* Longer than the snapshots below can take (each costs tens of ms
	 * here, eight tries when the thread is on a CPU): the loop is
	 * stopped in the middle of it at the end. */
	c = snap_send(port, "cpu 60000\n");
	usleep(300000);
	for (int i = 0; i < 10; i++) {
		r = lw_snap_take(s, tid, us, &nr, why, sizeof(why));
		if (r == 0) {
			/* Preempted in user mode: the interrupt's registers,
			 * not a syscall's. */
			ASSERT_EQ(nr, -1);
			ASSERT(snap_stack_has(pid, tid, us, "burn_cpu",
					      "main"));
			ok++;
		} else {
			ASSERT_EQ(r, -EBUSY);
			ASSERT(strstr(why, "running") != NULL);
			busy++;
		}
		usleep(20000);
	}
	fprintf(stderr, "busy thread: %d snapshots, %d said running (%s)\n", ok,
		busy, busy ? why : "");
	ASSERT_EQ(ok + busy, 10);

	/* On one CPU with this thread, it is preempted whenever this
	 * thread takes a snapshot: every snapshot then has the registers
	 * the interrupt saved, in user mode. */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	ASSERT_OK(sched_setaffinity(tid, sizeof(one), &one));
	ASSERT_OK(sched_setaffinity(0, sizeof(one), &one));
	int named = 0;
	for (int i = 0; i < 10; i++) {
		usleep(5000);
		r = lw_snap_take(s, tid, us, &nr, why, sizeof(why));
		if (r != 0)
			LWT_FAIL("pinned snapshot: %d: %s", r, why);
		ASSERT_EQ(nr, -1);
		ASSERT_GT(us->bytes, 0);
		named += snap_stack_has(pid, tid, us, "burn_cpu", "main");
	}
	fprintf(stderr, "pinned: 10 snapshots, %d named burn_cpu and main\n",
		named);
	/* A preemption inside the vDSO's clock read may not unwind to
	 * burn_cpu; most land in its loop. */
	ASSERT_GE(named, 5);
	close(c);
	snap_stop_loop(pid, out);
	lw_snap_close(s);
	free(us);
}

/* Odd thread ids: none, a kernel thread, one that does not exist. */
TEST(snap_odd_threads)
{
	lw_snap_t *s = snap_open_or_skip();
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr = 5;

	ASSERT(us != NULL);
	ASSERT_EQ(lw_snap_take(s, 0, us, &nr, why, sizeof(why)), -EINVAL);
	ASSERT_EQ(lw_snap_take(s, -4, us, &nr, why, sizeof(why)), -EINVAL);
	/* kthreadd is 2 in the initial pid namespace. */
	ASSERT_EQ(lw_snap_take(s, 2, us, &nr, why, sizeof(why)), -ENOENT);
	ASSERT(strstr(why, "kernel thread") != NULL);
	ASSERT_EQ(nr, -1);
	/* A pid that exited: reaped, so its id names nothing. */
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	ASSERT(gone > 0);
	waitpid(gone, NULL, 0);
	ASSERT_EQ(lw_snap_take(s, gone, us, &nr, why, sizeof(why)), -ESRCH);
	ASSERT(strstr(why, "no such thread") != NULL);
	ASSERT_EQ(us->bytes, 0);
	lw_snap_close(s);
	free(us);
}

/* The cost of one snapshot of a sleeping thread (attach, create, read,
 * close), against loading the program: printed, not asserted. */
TEST_T(snap_cost, 60)
{
	double t0 = snap_now_us();
	lw_snap_t *s = snap_open_or_skip();
	double open_us = snap_now_us() - t0;
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr;
	pid_t pid, tid;
	uint16_t port;
	int out, n = 200;

	ASSERT(us != NULL);
	pid = snap_start_loop(&out, &tid, &port);
	/* The idle loop in epoll_wait: asleep, as a stuck one would be. */
	ASSERT_OK(lw_snap_take(s, tid, us, &nr, why, sizeof(why)));
	t0 = snap_now_us();
	for (int i = 0; i < n; i++)
		ASSERT_OK(lw_snap_take(s, tid, us, &nr, why, sizeof(why)));
	double per = (snap_now_us() - t0) / n;
	fprintf(stderr,
		"snapshot of a sleeping thread: %.1f us each (%u bytes); "
		"loading the program: %.0f us\n",
		per, us->bytes, open_us);
	ASSERT(snap_stack_has(pid, tid, us, "main", "main"));
	snap_stop_loop(pid, out);
	lw_snap_close(s);
	free(us);
}

/* How many programs named lw_snap, and links to them, the kernel holds. */
static void snap_kernel_objects(__u32 prog_id, int *progs, int *links)
{
	__u32 id = 0;

	*progs = 0;
	*links = 0;
	while (bpf_prog_get_next_id(id, &id) == 0)
		if (id == prog_id)
			(*progs)++;
	id = 0;
	while (bpf_link_get_next_id(id, &id) == 0) {
		struct bpf_link_info li;
		__u32 len = sizeof(li);
		int fd = bpf_link_get_fd_by_id(id);

		if (fd < 0)
			continue;
		memset(&li, 0, sizeof(li));
		if (bpf_obj_get_info_by_fd(fd, &li, &len) == 0 &&
		    li.prog_id == prog_id)
			(*links)++;
		close(fd);
	}
}

/* The program id of the lw_snap program that pid holds, 0 if none. */
static __u32 snap_prog_of(pid_t pid)
{
	__u32 id = 0;

	while (bpf_prog_get_next_id(id, &id) == 0) {
		struct bpf_prog_info pi;
		__u32 len = sizeof(pi);
		int fd = bpf_prog_get_fd_by_id(id);

		if (fd < 0)
			continue;
		memset(&pi, 0, sizeof(pi));
		if (bpf_obj_get_info_by_fd(fd, &pi, &len) == 0 &&
		    !strcmp(pi.name, "lw_snap")) {
			/* Its holder: the fd is in pid's fdinfo. */
			char path[64], l[128];
			int held = 0;
			snprintf(path, sizeof(path), "/proc/%d/fdinfo",
				 (int)pid);
			for (int f = 0; f < 64 && !held; f++) {
				char p[96];
				snprintf(p, sizeof(p), "%s/%d", path, f);
				FILE *fi = fopen(p, "r");
				if (!fi)
					continue;
				while (fgets(l, sizeof(l), fi))
					if (!strncmp(l, "prog_id:", 8) &&
					    strtoul(l + 8, NULL, 10) == id)
						held = 1;
				fclose(fi);
			}
			close(fd);
			if (held)
				return id;
			continue;
		}
		close(fd);
	}
	return 0;
}

/* Nothing stays attached between snapshots, and nothing at all after
 * close, or after the holder is killed in the middle of snapshots. */
TEST_T(snap_leaves_nothing, 60)
{
	lw_snap_t *s = snap_open_or_skip();
	struct lw_bpf_ustack *us = malloc(sizeof(*us));
	char why[512];
	long nr;
	int progs, links, p[2];
	__u32 id;

	ASSERT(us != NULL);
	id = snap_prog_of(getpid());
	ASSERT(id != 0);
	ASSERT_OK(lw_snap_take(s, getppid(), us, &nr, why, sizeof(why)));
	snap_kernel_objects(id, &progs, &links);
	ASSERT_EQ(progs, 1);
	ASSERT_EQ(links, 0);
	lw_snap_close(s);
	for (int i = 0; i < 50; i++) {
		snap_kernel_objects(id, &progs, &links);
		if (!progs)
			break;
		usleep(100000);
	}
	ASSERT_EQ(progs, 0);
	ASSERT_EQ(links, 0);

	/* A child that snapshots its parent without end, killed. */
	ASSERT_OK(pipe(p));
	pid_t kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		lw_snap_t *ks;
		close(p[0]);
		if (lw_snap_open(&ks, why, sizeof(why)) < 0)
			_exit(1);
		ASSERT_EQ(write(p[1], "x", 1), 1);
		for (;;)
			lw_snap_take(ks, getppid(), us, &nr, why, sizeof(why));
	}
	close(p[1]);
	char b;
	ASSERT_EQ(read(p[0], &b, 1), 1);
	close(p[0]);
	usleep(50000);
	id = snap_prog_of(kid);
	ASSERT(id != 0);
	ASSERT_OK(kill(kid, SIGKILL));
	waitpid(kid, NULL, 0);
	for (int i = 0; i < 50; i++) {
		snap_kernel_objects(id, &progs, &links);
		if (!progs && !links)
			break;
		usleep(100000);
	}
	ASSERT_EQ(progs, 0);
	ASSERT_EQ(links, 0);
	free(us);
}
