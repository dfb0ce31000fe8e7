/*
 * test_threads.c - loop-thread detection (agent/threads.c) on real
 * processes: tests/progs/plain_loop (an uninstrumented epoll server with
 * helper threads that are no loop), `sleep`, kthreadd, a pid that does not
 * exist, and Debian's redis-server when it is installed.  Plus the /proc
 * parsers on odd input.
 *
 * Reading /proc/PID/task/TID/syscall needs ptrace rights over the target:
 * the tests' targets are our own children, which root (the test machine)
 * may always read.  Timing: the busy-loop tests use samples that span well
 * beyond the stall, so a slow machine only makes more samples miss it.
 */
#include "lwtest.h"

#include "threads.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

struct plain {
	pid_t pid;
	int out; /* its stdout */
	int port;
	pid_t loop_tid;
};

static void plain_start(struct plain *p, int poll_thread)
{
	char *argv[] = { (char *)lwt_build_path("tests/progs/plain_loop"),
			 "--port", "0", poll_thread ? "--poll-thread" : NULL,
			 NULL };
	char line[256];
	int pid;

	p->pid = lwt_spawn(argv, &p->out, 0, NULL);
	ASSERT(p->pid > 0);
	if (lwt_read_line(p->out, line, sizeof(line), 10000) < 0)
		LWT_FAIL("plain_loop printed no first line");
	if (sscanf(line,
		   "plain_loop listening on 127.0.0.1:%d (pid %d, loop tid %d)",
		   &p->port, &pid, &p->loop_tid) != 3)
		LWT_FAIL("unexpected first line: %s", line);
	ASSERT_EQ(pid, p->pid);
}

static void plain_stop(struct plain *p)
{
	kill(p->pid, SIGTERM);
	int st = lwt_wait_exit(p->pid, 5000);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	close(p->out);
}

static int plain_connect(const struct plain *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)p->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(fd >= 0);
	ASSERT_OK(connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ? -errno
								    : 0);
	return fd;
}

static void send_line(int fd, const char *s)
{
	ASSERT_EQ(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void expect_line(int fd, const char *want)
{
	char line[64];
	if (lwt_read_line(fd, line, sizeof(line), 10000) < 0)
		LWT_FAIL("no reply, wanted '%s'", want);
	ASSERT_STREQ(line, want);
}

/* The tid of the thread of pid named comm, or -1. */
static pid_t tid_named(pid_t pid, const char *comm)
{
	char path[96], buf[32];
	struct dirent *de;

	/* pthread_setname_np runs just after the thread starts: retry. */
	for (int tries = 0; tries < 100; tries++) {
		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		DIR *d = opendir(path);
		ASSERT(d != NULL);
		while ((de = readdir(d)) != NULL) {
			int tid = atoi(de->d_name);
			if (tid <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/comm",
				 (int)pid, tid);
			FILE *f = fopen(path, "r");
			if (f == NULL)
				continue;
			int match = fgets(buf, sizeof(buf), f) != NULL &&
				    (buf[strcspn(buf, "\n")] = '\0',
				     strcmp(buf, comm) == 0);
			fclose(f);
			if (match) {
				closedir(d);
				return tid;
			}
		}
		closedir(d);
		usleep(10000);
	}
	return -1;
}

TEST(threads_plain_loop_found)
{
	struct plain p;
	lw_loop_thread_t out[8];
	char why[256];

	plain_start(&p, 0);
	int n = lw_threads_detect(p.pid, 5, 20, out, 8, why, sizeof(why));
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	/* Exactly the loop: the futex and nanosleep threads are no loop. */
	ASSERT_EQ(n, 1);
	ASSERT_EQ(out[0].tid, p.loop_tid);
	ASSERT_EQ(out[0].wait_flags, LW_BPF_WAIT_EPOLL);
	ASSERT(lw_threads_wait_of_nr(out[0].nr) == LW_BPF_WAIT_EPOLL);
	ASSERT_STREQ(out[0].comm, "plain_loop");
	ASSERT_GE(out[0].seen, 1);
	ASSERT_LE(out[0].seen, 5);
	ASSERT_STREQ(why, "");
	/* max bounds what is stored; out may be NULL with max 0. */
	ASSERT_EQ(lw_threads_detect(p.pid, 2, 5, NULL, 0, why, sizeof(why)), 0);
	plain_stop(&p);
}

TEST(threads_poll_thread_too)
{
	struct plain p;
	lw_loop_thread_t out[8];
	char why[256];

	plain_start(&p, 1);
	pid_t poller = tid_named(p.pid, "poller");
	ASSERT(poller > 0);
	int n = lw_threads_detect(p.pid, 5, 20, out, 8, why, sizeof(why));
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	ASSERT_EQ(n, 2);
	for (int i = 0; i < n; i++) {
		if (out[i].tid == p.loop_tid) {
			ASSERT_EQ(out[i].wait_flags, LW_BPF_WAIT_EPOLL);
		} else {
			ASSERT_EQ(out[i].tid, poller);
			ASSERT_EQ(out[i].wait_flags, LW_BPF_WAIT_POLL);
			ASSERT_EQ(out[i].nr, SYS_poll);
			ASSERT_STREQ(out[i].comm, "poller");
		}
	}
	ASSERT(out[0].tid != out[1].tid);
	ASSERT(out[0].seen >= out[1].seen);
	plain_stop(&p);
}

/* A busy loop is missed by the samples that fall in its stall but found by
 * the others: 10 samples 100 ms apart span 900 ms around a 300 ms burn. */
TEST(threads_busy_loop_still_found)
{
	struct plain p;
	lw_loop_thread_t out[8];
	char why[256];

	plain_start(&p, 0);
	int fd = plain_connect(&p);
	send_line(fd, "ping\n");
	expect_line(fd, "pong");
	send_line(fd, "cpu 300\n");
	int n = lw_threads_detect(p.pid, 10, 100, out, 8, why, sizeof(why));
	expect_line(fd, "done");
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(out[0].tid, p.loop_tid);
	ASSERT_EQ(out[0].wait_flags, LW_BPF_WAIT_EPOLL);
	/* The burn covers at least one sample: it lasts 300 ms of wall time
	 * and starts within the first 600 ms of the 900 ms. */
	ASSERT_LT(out[0].seen, 10);
	ASSERT_GE(out[0].seen, 1);
	close(fd);
	plain_stop(&p);
}

/* A thread always in its wait sorts before one that is mostly busy. */
TEST(threads_order_by_seen)
{
	struct plain p;
	lw_loop_thread_t out[8];
	char why[256];

	plain_start(&p, 1);
	pid_t poller = tid_named(p.pid, "poller");
	ASSERT(poller > 0);
	int fd = plain_connect(&p);
	send_line(fd, "ping\n");
	expect_line(fd, "pong");
	/* 8 samples at 50..750 ms: those up to ~450 ms fall inside a 400 ms
	 * burn, the last ones after it.  The loop is found, less often. */
	send_line(fd, "cpu 400\n");
	usleep(50000);
	int n = lw_threads_detect(p.pid, 8, 100, out, 8, why, sizeof(why));
	expect_line(fd, "done");
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(out[0].tid, poller);
	ASSERT_EQ(out[0].wait_flags, LW_BPF_WAIT_POLL);
	ASSERT_EQ(out[1].tid, p.loop_tid);
	ASSERT_EQ(out[1].wait_flags, LW_BPF_WAIT_EPOLL);
	ASSERT_LT(out[1].seen, out[0].seen);
	close(fd);
	plain_stop(&p);
}

TEST(threads_no_event_wait)
{
	char *argv[] = { "/bin/sleep", "10", NULL };
	lw_loop_thread_t out[4];
	char why[256];
	int fd;

	pid_t pid = lwt_spawn(argv, &fd, 0, NULL);
	ASSERT(pid > 0);
	/* Let it reach its nanosleep: before exec the child is ours. */
	usleep(100000);
	ASSERT_EQ(lw_threads_detect(pid, 3, 20, out, 4, why, sizeof(why)), 0);
	ASSERT(strstr(why, "no thread") != NULL);
	kill(pid, SIGKILL);
	lwt_wait_exit(pid, 5000);
	close(fd);
}

TEST(threads_no_such_process)
{
	lw_loop_thread_t out[4];
	char why[256];

	/* A child that has exited and been reaped: its pid is free. */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	ASSERT_EQ(lw_threads_detect(pid, 2, 1, out, 4, why, sizeof(why)),
		  -ESRCH);
	ASSERT(why[0] != '\0');
	ASSERT_EQ(lw_threads_detect(0, 2, 1, out, 4, why, sizeof(why)), -ESRCH);
	ASSERT_EQ(lw_threads_detect(-5, 2, 1, out, 4, why, sizeof(why)),
		  -ESRCH);

	/* A zombie has exited too. */
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	usleep(100000);
	ASSERT_EQ(lw_threads_detect(pid, 2, 1, out, 4, why, sizeof(why)),
		  -ESRCH);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);

	/* Bad arguments. */
	ASSERT_EQ(lw_threads_detect(getpid(), 0, 1, out, 4, why, sizeof(why)),
		  -EINVAL);
	ASSERT_EQ(lw_threads_detect(getpid(), 1, -1, out, 4, why, sizeof(why)),
		  -EINVAL);
	ASSERT_EQ(lw_threads_detect(getpid(), 1, 1, NULL, 4, why, sizeof(why)),
		  -EINVAL);
	/* why may be absent. */
	ASSERT_EQ(lw_threads_detect(0, 1, 1, out, 4, NULL, 0), -ESRCH);
}

/* kthreadd has no user space: 0 found, and why says so (a kernel thread's
 * `syscall` file reads "0 0x0 ...", which must not count as anything). */
TEST(threads_kernel_thread)
{
	lw_loop_thread_t out[4];
	char why[256];

	ASSERT_EQ(lw_threads_detect(2, 2, 1, out, 4, why, sizeof(why)), 0);
	ASSERT(strstr(why, "kernel thread") != NULL);
}

/* Without ptrace rights over the target, -EACCES with a reason: a child
 * that drops to nobody looks at a process of root. */
TEST(threads_not_allowed)
{
	struct plain p;
	int st;

	if (geteuid() != 0)
		SKIP("needs root to drop to another user");
	plain_start(&p, 0);
	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0) {
		lw_loop_thread_t out[4];
		char why[256];
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(3);
		int n = lw_threads_detect(p.pid, 2, 1, out, 4, why,
					  sizeof(why));
		if (n != -EACCES) {
			fprintf(stderr, "detect as nobody: %d %s\n", n, why);
			_exit(1);
		}
		_exit(strstr(why, "not allowed") != NULL ? 0 : 2);
	}
	st = lwt_wait_exit(child, 10000);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	plain_stop(&p);
}

/* A poll with a timeout that a stop and continue interrupted goes on as
 * restart_syscall: it is still the poll thread's wait. */
TEST(threads_poll_restarted)
{
	struct plain p;
	lw_loop_thread_t out[8];
	char why[256];

	plain_start(&p, 1);
	pid_t poller = tid_named(p.pid, "poller");
	ASSERT(poller > 0);
	kill(p.pid, SIGSTOP);
	usleep(50000);
	kill(p.pid, SIGCONT);
	usleep(50000);
	int n = lw_threads_detect(p.pid, 3, 20, out, 8, why, sizeof(why));
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	int found = 0;
	for (int i = 0; i < n; i++)
		if (out[i].tid == poller) {
			ASSERT_EQ(out[i].wait_flags, LW_BPF_WAIT_POLL);
			found = 1;
		}
	ASSERT(found);
	plain_stop(&p);
}

TEST(threads_parsers)
{
	long nr = 12345;

	ASSERT_EQ(lw_threads_parse_syscall("232 0x4 0x7ff 0x40 0xffffffff "
					   "0x0 0x0 0x7ffc 0x7f12\n",
					   52, &nr),
		  0);
	ASSERT_EQ(nr, 232);
	ASSERT_EQ(lw_threads_parse_syscall("-1 0x7ffc 0x7f12\n", 17, &nr), 0);
	ASSERT_EQ(nr, -1);
	ASSERT_EQ(lw_threads_parse_syscall("running\n", 8, &nr), -EAGAIN);
	ASSERT_EQ(lw_threads_parse_syscall("running", 7, &nr), -EAGAIN);
	/* Odd input: never a number, never a read past len. */
	ASSERT_EQ(lw_threads_parse_syscall("", 0, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("-", 1, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("-2 0x0", 6, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("runningx", 8, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("run", 3, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("12x", 3, &nr), -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("99999999999999999999", 20, &nr),
		  -EINVAL);
	ASSERT_EQ(lw_threads_parse_syscall("7", 1, &nr), 0);
	ASSERT_EQ(nr, 7);
	/* len bounds the parse even when the buffer goes on. */
	ASSERT_EQ(lw_threads_parse_syscall("2329", 3, &nr), 0);
	ASSERT_EQ(nr, 232);

	ASSERT_EQ(lw_threads_wait_of_nr(SYS_epoll_wait), LW_BPF_WAIT_EPOLL);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_epoll_pwait), LW_BPF_WAIT_EPOLL);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_epoll_pwait2), LW_BPF_WAIT_EPOLL);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_poll), LW_BPF_WAIT_POLL);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_ppoll), LW_BPF_WAIT_POLL);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_select), LW_BPF_WAIT_SELECT);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_pselect6), LW_BPF_WAIT_SELECT);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_io_uring_enter),
		  LW_BPF_WAIT_IO_URING);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_futex), 0);
	ASSERT_EQ(lw_threads_wait_of_nr(SYS_nanosleep), 0);
	ASSERT_EQ(lw_threads_wait_of_nr(-1), 0);
	ASSERT_EQ(lw_threads_wait_of_nr(100000), 0);

	ASSERT_EQ(lw_threads_wait_of_wchan("do_epoll_wait", 13),
		  LW_BPF_WAIT_EPOLL);
	ASSERT_EQ(lw_threads_wait_of_wchan("poll_schedule_timeout.constprop.0",
					   33),
		  LW_BPF_WAIT_POLL | LW_BPF_WAIT_SELECT);
	ASSERT_EQ(lw_threads_wait_of_wchan("io_cqring_wait\n", 15),
		  LW_BPF_WAIT_IO_URING);
	ASSERT_EQ(lw_threads_wait_of_wchan("do_epoll_waitx", 14), 0);
	ASSERT_EQ(lw_threads_wait_of_wchan("do_epoll", 8), 0);
	ASSERT_EQ(lw_threads_wait_of_wchan("futex_wait_queue", 16), 0);
	ASSERT_EQ(lw_threads_wait_of_wchan("0", 1), 0);
	ASSERT_EQ(lw_threads_wait_of_wchan("", 0), 0);
	ASSERT_EQ(lw_threads_wait_of_wchan("do_epoll_wait", 5), 0);
}

/* Debian's redis-server runs its event loop (ae, over epoll) on the main
 * thread; its bio threads wait on condition variables. */
TEST(threads_redis)
{
	const char *redis = "/usr/bin/redis-server";
	char dir[] = "/tmp/lw-threads-redis-XXXXXX";
	char sock[96], conf_dir[96];
	lw_loop_thread_t out[16];
	char why[256];
	int fd;

	if (access(redis, X_OK) != 0)
		SKIP("%s is not installed (apt-get install redis-server)",
		     redis);
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	snprintf(conf_dir, sizeof(conf_dir), "%s", dir);
	char *argv[] = { (char *)redis, "--port",      "0",  "--unixsocket",
			 sock,		"--save",      "",   "--appendonly",
			 "no",		"--daemonize", "no", "--dir",
			 conf_dir,	NULL };
	pid_t pid = lwt_spawn(argv, &fd, 1, NULL);
	ASSERT(pid > 0);

	/* Ready once its socket accepts a connection. */
	int ready = 0;
	for (int i = 0; i < 500 && !ready; i++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT(c >= 0);
		ready = connect(c, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(c);
		if (!ready)
			usleep(10000);
	}
	if (!ready) {
		char log[4096];
		kill(pid, SIGKILL);
		lwt_read_all(fd, log, sizeof(log), 1000);
		LWT_FAIL("redis-server did not come up:\n%s", log);
	}

	int n = lw_threads_detect(pid, 5, 20, out, 16, why, sizeof(why));
	if (n < 0)
		LWT_FAIL("detect: %d %s", n, why);
	ASSERT_GE(n, 1);
	ASSERT_EQ(out[0].tid, pid);
	ASSERT_STREQ(out[0].comm, "redis-server");
	ASSERT_EQ(out[0].wait_flags, LW_BPF_WAIT_EPOLL);

	kill(pid, SIGTERM);
	lwt_wait_exit(pid, 10000);
	close(fd);
	unlink(sock);
	rmdir(dir);
}
