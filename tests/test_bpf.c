/*
 * test_bpf.c - the kernel probes of bpf/syscalls.bpf.c through the agent's
 * loader (agent/bpf_load.c).
 *
 * The unit tests run the programs' raw_tp twins with BPF_PROG_TEST_RUN on
 * synthetic arguments, in this test's own thread (the programs see the
 * calling thread as "current"); the others attach the real tp_btf programs
 * and watch real child processes.  All need root (or CAP_BPF+CAP_PERFMON)
 * and skip with the reason when they cannot load the programs.
 */
#include "lwtest.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf_load.h"
#include "watch.skel.h"

#define MS 1000000ull

/* The names of our programs as the kernel keeps them (at most 15 chars). */
static const char *const prog_names[] = { "lw_sys_enter",  "lw_sys_exit",
					  "lw_exec",	   "lw_exit",
					  "lw_test_enter", "lw_test_exit",
					  "lw_test_forget" };

/* Open the probes or skip the test with the reason. */
static struct lw_bpf *open_opts_or_skip(const struct lw_bpf_opts *o)
{
	struct lw_bpf *b;
	char why[256];
	int r;

	if (geteuid() != 0)
		SKIP("kernel probes need root or CAP_BPF+CAP_PERFMON");
	r = lw_bpf_open(&b, o, why, sizeof(why));
	if (r == -EPERM || r == -EACCES || r == -ENOSYS || r == -ENOENT)
		SKIP("BPF is not available here: %s", why);
	if (r < 0)
		LWT_FAIL("lw_bpf_open: %s", why);
	return b;
}

static struct lw_bpf *open_or_skip(__u64 min_ns, bool test_entries)
{
	struct lw_bpf_opts o = { .min_ns = min_ns,
				 .test_entries = test_entries };

	return open_opts_or_skip(&o);
}

static __u32 my_tid(void)
{
	return (__u32)syscall(SYS_gettid);
}

/* Run a raw_tp twin once with the argument array { regs, arg }. */
static void test_run(struct bpf_program *prog, __u64 arg)
{
	__u64 args[2] = { 0, arg }; /* regs 0: its reads fault, args are 0 */
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args,
		    .ctx_size_in = sizeof(args));

	ASSERT_OK(bpf_prog_test_run_opts(bpf_program__fd(prog), &opts));
	ASSERT_EQ(opts.retval, 0);
}

/* A synthetic syscall nr of this thread that lasts at least hold_ms. */
static void fake_syscall(struct lw_bpf *b, long nr, int hold_ms, long ret)
{
	struct watch_bpf *s = lw_bpf_skel(b);

	test_run(s->progs.lw_test_enter, (__u64)nr);
	if (hold_ms)
		usleep((useconds_t)hold_ms * 1000);
	test_run(s->progs.lw_test_exit, (__u64)ret);
}

/* Events collected by a poll. */
#define MAX_EVENTS 64
struct collected {
	int n, other;
	struct lw_bpf_syscall_event ev[MAX_EVENTS];
};

/* Collects the syscall events; the other kinds are counted apart. */
static int collect(void *ctx, const struct lw_bpf_event_head *ev, size_t size)
{
	struct collected *c = ctx;

	ASSERT(size >= sizeof(*ev));
	if (ev->kind != LW_BPF_EV_SYSCALL) {
		c->other++;
		return 0;
	}
	ASSERT(size >= sizeof(struct lw_bpf_syscall_event));
	if (c->n < MAX_EVENTS)
		c->ev[c->n++] = *(const struct lw_bpf_syscall_event *)ev;
	return 0;
}

/* Everything in the ring now, without waiting; returns how many syscall
 * events came (each slow one comes after a stack snapshot, counted in
 * c->other). */
static int drain(struct lw_bpf *b, struct collected *c)
{
	int before = c->n, r = lw_bpf_poll(b, 0, collect, c);

	ASSERT_GE(r, 0);
	return c->n - before;
}

/* Tracefs mounted in this process's view? */
static bool tracefs_mounted(void)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/mounts", "r");

	ASSERT(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " tracefs ") || strstr(line, " debugfs "))
			found = true;
	fclose(f);
	return found;
}

TEST(bpf_skeleton_loads_and_attaches)
{
	struct rlimit zero = { 0, 0 };
	struct timespec ts = { 0, 20 * MS };
	struct collected c = { 0 };
	struct lw_bpf *b;
	bool slept = false;
	char why[256];
	int i, k;

	/* No tracefs in our view: if the machine has it, hide it in a
	 * private mount namespace of this test's process. */
	if (geteuid() == 0 && tracefs_mounted()) {
		ASSERT_OK(unshare(CLONE_NEWNS));
		ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
		umount2("/sys/kernel/tracing", MNT_DETACH);
		umount2("/sys/kernel/debug/tracing", MNT_DETACH);
		umount2("/sys/kernel/debug", MNT_DETACH);
	}
	if (geteuid() == 0)
		ASSERT(!tracefs_mounted());
	/* And no locked memory at all: libbpf must not need it. */
	ASSERT_OK(setrlimit(RLIMIT_MEMLOCK, &zero));

	b = open_or_skip(5 * MS, false);
	/* Production handles do not load the test twins. */
	ASSERT_LT(bpf_program__fd(lw_bpf_skel(b)->progs.lw_test_enter), 0);
	ASSERT_OK(lw_bpf_watch(b, my_tid(), LW_BPF_WAIT_EPOLL, 0, why,
			       sizeof(why)));
	ASSERT_OK(lw_bpf_attach(b, why, sizeof(why)));
	ASSERT_OK(lw_bpf_attach(b, why, sizeof(why))); /* twice: harmless */

	/* Attached for real: a 20 ms sleep of this thread is reported. */
	ASSERT_OK(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL));
	for (i = 0; i < 50 && !slept; i++) {
		ASSERT_GE(lw_bpf_poll(b, 20, collect, &c), 0);
		for (k = 0; k < c.n; k++)
			if (c.ev[k].nr == SYS_clock_nanosleep &&
			    c.ev[k].duration_ns >= 20 * MS)
				slept = true;
	}
	ASSERT(slept);

	/* Detached: the same sleep is not. */
	lw_bpf_detach(b);
	c.n = 0;
	ASSERT_OK(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL));
	ASSERT_EQ(lw_bpf_poll(b, 50, collect, &c), 0);
	ASSERT_EQ(c.n, 0);
	lw_bpf_free(b);
	lw_bpf_free(NULL);
}

TEST(bpf_unwatched_thread_ignored)
{
	struct lw_bpf_sysstat st;
	struct collected c = { 0 };
	struct lw_bpf_stats s;
	struct lw_bpf *b = open_or_skip(1 * MS, true);
	char why[256];

	__u32 me = my_tid(), other = me ^ 1;
	/* A tid in this thread's watch_filter slot: it gets past the filter,
	 * then misses in the hash. */
	__u32 same_slot = me + LW_BPF_FILTER_SIZE;
	volatile __u8 *filter = lw_bpf_skel(b)->bss->watch_filter;

	/* Other tids are watched, not this one. */
	ASSERT_OK(lw_bpf_watch(b, other, 0, 0, why, sizeof(why)));
	ASSERT_OK(lw_bpf_watch(b, same_slot, 0, 0, why, sizeof(why)));
	ASSERT_NE(filter[me % LW_BPF_FILTER_SIZE], 0);
	fake_syscall(b, SYS_write, 10, 1);
	fake_syscall(b, SYS_read, 0, 1);
	ASSERT_EQ(drain(b, &c), 0);
	ASSERT_OK(lw_bpf_sysstat_read(b, SYS_write, &st));
	ASSERT_EQ(st.calls, 0);
	ASSERT_OK(lw_bpf_stats_read(b, &s));
	ASSERT_EQ(s.no_entry, 0);
	ASSERT_EQ(s.arg_faults, 0);

	/* The control: watched (twice: the same as once), the same slow
	 * call is reported. */
	ASSERT_OK(lw_bpf_watch(b, me, 0, 0, why, sizeof(why)));
	ASSERT_OK(lw_bpf_watch(b, me, 0, 0, why, sizeof(why)));
	fake_syscall(b, SYS_write, 10, 1);
	ASSERT_EQ(drain(b, &c), 1);
	ASSERT_EQ(c.ev[0].tid, me);

	/* The slot's other tid leaves; this thread is still watched. */
	ASSERT_OK(lw_bpf_unwatch(b, same_slot));
	ASSERT_NE(filter[me % LW_BPF_FILTER_SIZE], 0);
	fake_syscall(b, SYS_write, 10, 1);
	ASSERT_EQ(drain(b, &c), 1);

	/* And unwatched, it is not, and its filter slot is clear again. */
	ASSERT_OK(lw_bpf_unwatch(b, me));
	ASSERT_EQ(lw_bpf_unwatch(b, me), -ENOENT);
	ASSERT_EQ(filter[me % LW_BPF_FILTER_SIZE], 0);
	ASSERT_NE(filter[other % LW_BPF_FILTER_SIZE], 0);
	fake_syscall(b, SYS_write, 10, 1);
	ASSERT_EQ(drain(b, &c), 0);
	lw_bpf_free(b);
}

/* The raw_tp twin of exec and exit, run for tid. */
static void forget(struct lw_bpf *b, __u32 tid)
{
	__u64 args[1] = { tid };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args,
		    .ctx_size_in = sizeof(args));

	ASSERT_OK(bpf_prog_test_run_opts(
		bpf_program__fd(lw_bpf_skel(b)->progs.lw_test_forget), &opts));
}

/* What exec and exit do to a watched thread: it is forgotten, and only
 * it; a thread never watched (in a watched one's filter slot or not)
 * changes nothing. */
TEST(bpf_forget_only_that_thread)
{
	struct lw_bpf *b = open_or_skip(1 * MS, true);
	struct lw_bpf_thread t;
	char why[256];
	__u32 me = my_tid(), other = me ^ 1;

	ASSERT_OK(lw_bpf_watch(b, me, 0, 0, why, sizeof(why)));
	ASSERT_OK(lw_bpf_watch(b, other, 0, 0, why, sizeof(why)));
	forget(b, me + LW_BPF_FILTER_SIZE);
	forget(b, me + 1000);
	ASSERT_OK(lw_bpf_thread_read(b, me, &t));
	forget(b, me);
	ASSERT_EQ(lw_bpf_thread_read(b, me, &t), -ENOENT);
	ASSERT_OK(lw_bpf_thread_read(b, other, &t));
	lw_bpf_free(b);
}

/* Real processes: a watched thread that execs runs another program, one
 * that exits may give its tid to another process: the kernel stops
 * watching either at once, before the agent notices. */
TEST(bpf_exec_and_exit_forget_the_thread)
{
	struct lw_bpf *b = open_or_skip(1 * MS, false);
	struct lw_bpf_thread t;
	char why[256], c;
	pid_t kid[2];
	int go[2][2];

	ASSERT_OK(lw_bpf_attach(b, why, sizeof(why)));
	for (int i = 0; i < 2; i++) {
		ASSERT_OK(pipe(go[i]));
		kid[i] = fork();
		ASSERT(kid[i] >= 0);
		if (kid[i] == 0) {
			close(go[i][1]);
			if (read(go[i][0], &c, 1) != 1)
				_exit(1);
			if (i == 0)
				execl("/bin/sleep", "sleep", "30",
				      (char *)NULL);
			_exit(0);
		}
		close(go[i][0]);
		ASSERT_OK(lw_bpf_watch(b, (__u32)kid[i], LW_BPF_WAIT_EPOLL, 0,
				       why, sizeof(why)));
		ASSERT_OK(lw_bpf_thread_read(b, (__u32)kid[i], &t));
		ASSERT_EQ(write(go[i][1], "x", 1), 1);
		close(go[i][1]);
	}
	/* The exit is waited for; the exec is seen when sleep sleeps. */
	ASSERT(WIFEXITED(lwt_wait_exit(kid[1], 10000)));
	ASSERT_EQ(lw_bpf_thread_read(b, (__u32)kid[1], &t), -ENOENT);
	char path[64], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)kid[0]);
	for (int i = 0; i < 500 && strncmp(comm, "sleep", 5) != 0; i++) {
		FILE *f = fopen(path, "r");
		if (f != NULL) {
			if (fgets(comm, sizeof(comm), f) == NULL)
				comm[0] = '\0';
			fclose(f);
		}
		usleep(10000);
	}
	ASSERT_EQ(strncmp(comm, "sleep", 5), 0);
	ASSERT_EQ(lw_bpf_thread_read(b, (__u32)kid[0], &t), -ENOENT);
	ASSERT_EQ(kill(kid[0], 0), 0); /* alive: it was the exec */
	kill(kid[0], SIGKILL);
	lwt_wait_exit(kid[0], 10000);
	lw_bpf_free(b);
}

TEST(bpf_watched_slow_syscall_reported)
{
	static const long waits[] = { SYS_epoll_wait, SYS_epoll_pwait,
				      SYS_epoll_pwait2 };
	struct lw_bpf_sysstat st;
	struct collected c = { 0 };
	struct lw_bpf_stats s;
	struct lw_bpf_syscall_event *e;
	struct lw_bpf *b = open_or_skip(5 * MS, true);
	char why[256];
	uint64_t t0, t1;
	size_t i;

	ASSERT_OK(lw_bpf_watch(b, my_tid(), LW_BPF_WAIT_EPOLL, 0, why,
			       sizeof(why)));

	/* Below min_ns: counted, not reported. */
	fake_syscall(b, SYS_read, 0, 3);
	ASSERT_EQ(drain(b, &c), 0);
	ASSERT_OK(lw_bpf_sysstat_read(b, SYS_read, &st));
	ASSERT_EQ(st.calls, 1);
	ASSERT_EQ(st.reported, 0);

	/* Above: reported with what the entry and exit saw. */
	t0 = lwt_now_ns();
	fake_syscall(b, SYS_fsync, 20, -5);
	t1 = lwt_now_ns();
	ASSERT_EQ(drain(b, &c), 1);
	e = &c.ev[0];
	ASSERT_EQ(e->kind, LW_BPF_EV_SYSCALL);
	ASSERT_EQ(e->tid, my_tid());
	ASSERT_EQ(e->pid, getpid());
	ASSERT_EQ(e->nr, SYS_fsync);
	ASSERT_EQ(e->ret, -5);
	ASSERT_GE(e->duration_ns, 20 * MS);
	/* The kernel's clock is CLOCK_MONOTONIC, the probe rings' clock. */
	ASSERT_GE(e->start_ns, t0);
	ASSERT_LE(e->start_ns + e->duration_ns, t1);
	/* fsync takes an fd.  The arguments are read from the registers the
	 * thread entered the kernel with, here those of the bpf() call that
	 * ran the test: its first argument is the command. */
	ASSERT_EQ(e->fd, BPF_PROG_TEST_RUN);
	ASSERT_EQ(e->args[0], BPF_PROG_TEST_RUN);
	ASSERT_NE(e->fd_kind, LW_BPF_FD_NONE);
	ASSERT_GT(e->stack_bytes, 0);
	ASSERT_EQ(e->stack_bytes % 8, 0);
	ASSERT_OK(lw_bpf_sysstat_read(b, SYS_fsync, &st));
	ASSERT_EQ(st.calls, 1);
	ASSERT_EQ(st.reported, 1);
	ASSERT_GE(st.total_ns, 20 * MS);

	/* A syscall without an fd argument says so. */
	c.n = 0;
	fake_syscall(b, SYS_clock_nanosleep, 10, 0);
	ASSERT_EQ(drain(b, &c), 1);
	ASSERT_EQ(c.ev[0].fd, -1);
	ASSERT_EQ(c.ev[0].fd_kind, LW_BPF_FD_NONE);

	/* The loop's own wait is never reported, however long. */
	c.n = 0;
	for (i = 0; i < sizeof(waits) / sizeof(waits[0]); i++)
		fake_syscall(b, waits[i], 10, 0);
	ASSERT_EQ(drain(b, &c), 0);
	ASSERT_OK(lw_bpf_sysstat_read(b, SYS_epoll_wait, &st));
	ASSERT_EQ(st.calls, 1);

	/* ... but only the wait the thread's flags name: for a poll() loop
	 * an epoll_wait is an ordinary syscall, and poll is the wait. */
	ASSERT_OK(lw_bpf_watch(b, my_tid(), LW_BPF_WAIT_POLL, 0, why,
			       sizeof(why)));
	fake_syscall(b, SYS_epoll_wait, 10, 0);
	fake_syscall(b, SYS_poll, 10, 0);
	ASSERT_EQ(drain(b, &c), 1);
	ASSERT_EQ(c.ev[0].nr, SYS_epoll_wait);

	/* An exit without a known entry is counted, not reported. */
	c.n = 0;
	test_run(lw_bpf_skel(b)->progs.lw_test_exit, 0);
	ASSERT_EQ(drain(b, &c), 0);
	ASSERT_OK(lw_bpf_stats_read(b, &s));
	ASSERT_EQ(s.no_entry, 1);
	ASSERT_EQ(s.arg_faults, 0);
	ASSERT_EQ(s.lost, 0);
	ASSERT_EQ(lw_bpf_bad_records(b), 0);
	lw_bpf_free(b);
}

/* A child for the real test: after a byte on go, sleep 100 ms, write a byte
 * to done (fast), then block reading go2 until the parent writes it. */
static pid_t start_sleeper(int go, int done, int go2)
{
	pid_t pid = fork();
	struct timespec ts = { 0, 100 * MS };
	char x;

	ASSERT(pid >= 0);
	if (pid > 0)
		return pid;
	if (read(go, &x, 1) != 1)
		_exit(2);
	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	if (write(done, "x", 1) != 1)
		_exit(3);
	if (read(go2, &x, 1) != 1)
		_exit(4);
	_exit(0);
}

static void wait_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char x;

	ASSERT_EQ(poll(&p, 1, 5000), 1);
	ASSERT_EQ(read(fd, &x, 1), 1);
}

TEST(bpf_real_slow_syscall)
{
	int go[2], done[2], go2[2], status, i;
	struct collected c = { 0 };
	struct lw_bpf *b = open_or_skip(50 * MS, false);
	bool slept = false, blocked = false;
	pid_t watched, other;
	char why[256];

	ASSERT_OK(pipe(go));
	ASSERT_OK(pipe(done));
	ASSERT_OK(pipe(go2));
	watched = start_sleeper(go[0], done[1], go2[0]);
	other = start_sleeper(go[0], done[1], go2[0]);

	ASSERT_OK(lw_bpf_watch(b, (__u32)watched, LW_BPF_WAIT_EPOLL, 0, why,
			       sizeof(why)));
	ASSERT_OK(lw_bpf_attach(b, why, sizeof(why)));
	ASSERT_EQ(write(go[1], "gg", 2), 2);
	wait_byte(done[0]);
	wait_byte(done[0]);
	/* Both children now block in read(go2) for at least 80 ms. */
	usleep(80 * 1000);
	ASSERT_EQ(write(go2[1], "gg", 2), 2);
	ASSERT_EQ(waitpid(watched, &status, 0), watched);
	ASSERT_EQ(status, 0);
	ASSERT_EQ(waitpid(other, &status, 0), other);
	ASSERT_EQ(status, 0);

	for (i = 0; i < 50 && !(slept && blocked); i++) {
		int k;

		ASSERT_GE(lw_bpf_poll(b, 20, collect, &c), 0);
		for (k = 0; k < c.n; k++) {
			struct lw_bpf_syscall_event *e = &c.ev[k];

			if (e->nr == SYS_clock_nanosleep ||
			    e->nr == SYS_nanosleep)
				slept = true;
			if (e->nr == SYS_read && e->fd == go2[0])
				blocked = true;
		}
	}
	ASSERT(slept);
	ASSERT(blocked);
	for (i = 0; i < c.n; i++) {
		struct lw_bpf_syscall_event *e = &c.ev[i];

		fprintf(stderr,
			"event: tid %u nr %u %.1f ms fd %d kind %u "
			"stack %d bytes\n",
			e->tid, e->nr, e->duration_ns / 1e6, e->fd, e->fd_kind,
			e->stack_bytes);
		/* Only the watched thread, never the other. */
		ASSERT_EQ(e->tid, (__u32)watched);
		ASSERT_EQ(e->pid, (__u32)watched);
		ASSERT_GE(e->duration_ns, 50 * MS);
		/* The fast write is below min_ns. */
		ASSERT_NE(e->nr, SYS_write);
		if (e->nr == SYS_clock_nanosleep || e->nr == SYS_nanosleep) {
			ASSERT_GE(e->duration_ns, 90 * MS);
			ASSERT_EQ(e->ret, 0);
			ASSERT_EQ(e->fd, -1);
			ASSERT_GE(e->stack_bytes, 8);
			ASSERT_NE(e->stack[0], 0);
		}
		if (e->nr == SYS_read && e->fd == go2[0]) {
			ASSERT_GE(e->duration_ns, 60 * MS);
			ASSERT_EQ(e->ret, 1);
			ASSERT_EQ(e->fd_kind, LW_BPF_FD_FIFO);
			ASSERT_GE(e->stack_bytes, 8);
		}
	}
	lw_bpf_free(b);
}

/* Whether a BPF program with this id exists; its name into name. */
static bool prog_exists(__u32 id, char *name, size_t cap)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0)
		return false;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
		snprintf(name, cap, "%s", info.name);
	else
		snprintf(name, cap, "?");
	close(fd);
	return true;
}

static bool is_our_name(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(prog_names) / sizeof(prog_names[0]); i++)
		if (strcmp(name, prog_names[i]) == 0)
			return true;
	return false;
}

/* How many of ids[0..n) are still loaded programs with our names, walking
 * every program on the machine. */
static int ours_left(const __u32 *ids, int n)
{
	__u32 id = 0;
	int left = 0, k;
	char name[64];

	while (bpf_prog_get_next_id(id, &id) == 0) {
		if (!prog_exists(id, name, sizeof(name)) || !is_our_name(name))
			continue;
		for (k = 0; k < n; k++)
			if (ids[k] == id)
				left++;
	}
	return left;
}

TEST(bpf_no_program_left_after_sigkill)
{
	__u32 ids[2];
	int p[2], status, i;
	struct lw_bpf *probe = open_or_skip(10 * MS, false);
	pid_t pid;

	/* The parent only checked that it can load; the child does it. */
	lw_bpf_free(probe);
	ASSERT_OK(pipe(p));
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		struct lw_bpf_opts o = { .min_ns = 10 * MS };
		struct bpf_prog_info info;
		struct lw_bpf *b;
		char why[256];
		__u32 len;

		if (lw_bpf_open(&b, &o, why, sizeof(why)) < 0 ||
		    lw_bpf_watch(b, (__u32)getpid(), 0, 0, why, sizeof(why)) <
			    0 ||
		    lw_bpf_attach(b, why, sizeof(why)) < 0) {
			fprintf(stderr, "child: %s\n", why);
			_exit(1);
		}
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		bpf_obj_get_info_by_fd(
			bpf_program__fd(lw_bpf_skel(b)->progs.lw_sys_enter),
			&info, &len);
		ids[0] = info.id;
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		bpf_obj_get_info_by_fd(
			bpf_program__fd(lw_bpf_skel(b)->progs.lw_sys_exit),
			&info, &len);
		ids[1] = info.id;
		if (write(p[1], ids, sizeof(ids)) != sizeof(ids))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	{
		struct pollfd pf = { .fd = p[0], .events = POLLIN };

		ASSERT_EQ(poll(&pf, 1, 10000), 1);
	}
	ASSERT_EQ(read(p[0], ids, sizeof(ids)), (ssize_t)sizeof(ids));
	ASSERT_NE(ids[0], 0);
	ASSERT_NE(ids[1], 0);
	/* While the child lives, the walk finds its two programs by name. */
	ASSERT_EQ(ours_left(ids, 2), 2);

	ASSERT_OK(kill(pid, SIGKILL));
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* The kernel frees programs once their last fd (the child's) is
	 * gone, after an RCU grace period: give it up to 5 s. */
	for (i = 0; i < 500 && ours_left(ids, 2) > 0; i++)
		usleep(10 * 1000);
	ASSERT_EQ(ours_left(ids, 2), 0);
}

/* A ring buffer too small for what is sent: the kernel counts every record
 * it could not reserve, exactly, and the reader gets the others whole. */
TEST(bpf_ring_buffer_loss_counted)
{
	struct lw_bpf_opts o = { .min_ns = 1 * MS,
				 .test_entries = true,
				 .ringbuf_bytes = 32 * 1024 };
	struct collected c = { 0 };
	struct lw_bpf_stats s;
	struct lw_bpf *b = open_opts_or_skip(&o);
	char why[256];
	ASSERT_OK(lw_bpf_watch(b, my_tid(), LW_BPF_WAIT_EPOLL, 0, why,
			       sizeof(why)));
	/* Each slow syscall sends two records: its stack snapshot (16 KiB
	 * and more) and its event; 32 KiB holds one pair, not ten. */
	for (int i = 0; i < 10; i++)
		fake_syscall(b, SYS_clock_nanosleep, 2, 0);
	int n = drain(b, &c);
	ASSERT_OK(lw_bpf_stats_read(b, &s));
	fprintf(stderr, "events %d, snapshots %d, lost %llu\n", n, c.other,
		(unsigned long long)s.lost);
	ASSERT_GE(n, 1);
	ASSERT_GE(s.lost, 1);
	ASSERT_EQ((uint64_t)n + (uint64_t)c.other + s.lost, 20);
	ASSERT_EQ(lw_bpf_bad_records(b), 0);
	lw_bpf_free(b);
}
