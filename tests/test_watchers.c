/*
 * test_watchers.c - file, child-process and signal watchers.
 *
 * Real files in a temporary folder, real child processes, real signals sent
 * with kill().  Where a test says "on the loop thread", the loop runs on a
 * thread of its own and the change is made from the main thread.
 */
#include "lwtest.h"
#include "loopwatch.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* ---- helpers ---- */

/*
 * The runner ends a test with _exit(), which skips LeakSanitizer's check at
 * exit; so under ASan, tests that free a loop ask for the check themselves.
 */
static void check_leaks(void)
{
#if defined(__SANITIZE_ADDRESS__)
	ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A loop running lw_run() on a thread of its own. */
struct loop_thread {
	lw_loop_t *loop;
	pthread_t tid;
	int rc;
};

static void *loop_thread_main(void *p)
{
	struct loop_thread *t = p;
	t->rc = lw_run(t->loop);
	return NULL;
}

static void loop_thread_start(struct loop_thread *t, lw_loop_t *loop)
{
	t->loop = loop;
	t->rc = -1;
	ASSERT_EQ(pthread_create(&t->tid, NULL, loop_thread_main, t), 0);
}

static void loop_thread_join(struct loop_thread *t)
{
	lw_stop(t->loop);
	ASSERT_EQ(pthread_join(t->tid, NULL), 0);
	ASSERT_EQ(t->rc, 0);
}

/* Wait until (*v & mask) == mask, at most `ms`; non-zero if it came. */
static int wait_bits(atomic_int *v, int mask, int ms)
{
	double end = lwt_now_ms() + ms;
	while ((atomic_load(v) & mask) != mask) {
		if (lwt_now_ms() > end)
			return 0;
		sleep_ms(1);
	}
	return 1;
}

/* Wait until *v >= n, at most `ms`; non-zero if it came. */
static int wait_count(atomic_int *v, int n, int ms)
{
	double end = lwt_now_ms() + ms;
	while (atomic_load(v) < n) {
		if (lwt_now_ms() > end)
			return 0;
		sleep_ms(1);
	}
	return 1;
}

/* Run the loop on this thread until *v >= n, at most `ms`. */
static int run_until(lw_loop_t *loop, atomic_int *v, int n, int ms)
{
	double end = lwt_now_ms() + ms;
	while (atomic_load(v) < n) {
		if (lwt_now_ms() > end)
			return 0;
		ASSERT_GE(lw_run_once(loop, 20), 0);
	}
	return 1;
}

/* Run the loop on this thread for about `ms`. */
static void run_for(lw_loop_t *loop, int ms)
{
	double end = lwt_now_ms() + ms;
	while (lwt_now_ms() < end)
		ASSERT_GE(lw_run_once(loop, 10), 0);
}

struct site_query {
	int kind;
	lw_fn fn;
	uint64_t calls;
	int found;
};

static void site_each(const lw_site_info_t *s, void *arg)
{
	struct site_query *q = arg;
	if (s->kind == q->kind && s->fn == q->fn) {
		q->calls += s->calls;
		q->found++;
	}
}

/* How often the loop called `fn` as a site of `kind`. */
static uint64_t site_calls(lw_loop_t *loop, int kind, lw_fn fn)
{
	struct site_query q = { kind, fn, 0, 0 };
	lw_site_foreach(loop, site_each, &q);
	return q.calls;
}

static uint32_t active_ios(lw_loop_t *loop)
{
	lw_loop_stats_t st;
	lw_loop_stats(loop, &st);
	return st.active_ios;
}

/* ---- file watchers ---- */

struct fsrec {
	lw_loop_t *loop;
	lw_fswatch_t *w; /* what lw_fswatch_start() returned */
	atomic_int seen; /* OR of the events so far */
	atomic_int calls;
	atomic_int after_delete; /* calls after LW_FILE_DELETED */
	atomic_int off_thread; /* calls not on the loop thread */
	atomic_int wrong_watcher;
	int stop_in_cb; /* stop the watcher from its first callback */
};

static void fs_cb(lw_fswatch_t *w, void *arg, int events)
{
	struct fsrec *r = arg;

	if (!lw_on_loop_thread(r->loop))
		atomic_fetch_add(&r->off_thread, 1);
	if (w != r->w)
		atomic_fetch_add(&r->wrong_watcher, 1);
	if (atomic_load(&r->seen) & LW_FILE_DELETED)
		atomic_fetch_add(&r->after_delete, 1);
	atomic_fetch_or(&r->seen, events);
	atomic_fetch_add(&r->calls, 1);
	if (r->stop_in_cb) {
		lw_fswatch_stop(w);
		lw_fswatch_stop(w); /* twice is harmless */
	}
}

/* A fresh file in a fresh folder; `dir` and `path` get their names. */
static void make_file(char *dir, size_t dlen, char *path, size_t plen)
{
	snprintf(dir, dlen, "/tmp/lw-watch-XXXXXX");
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, plen, "%s/f", dir);
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs("hello\n", f);
	ASSERT_EQ(fclose(f), 0);
}

static void append(const char *path, const char *s)
{
	FILE *f = fopen(path, "a");
	ASSERT(f != NULL);
	fputs(s, f);
	ASSERT_EQ(fclose(f), 0);
}

/* Every change, made from the main thread while the loop runs on its own
 * thread, arrives there with its own bit; the watcher stops after the
 * delete and gives back its fd. */
TEST(watch_file_sequence)
{
	char dir[64], path[80], moved[80];
	struct fsrec r = { 0 };
	struct loop_thread lt;
	lw_loop_t *loop;

	make_file(dir, sizeof(dir), path, sizeof(path));
	snprintf(moved, sizeof(moved), "%s/g", dir);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &r, &r.w));
	ASSERT(r.w != NULL);
	ASSERT_EQ(active_ios(loop), ios0 + 1);
	loop_thread_start(&lt, loop);

	append(path, "more\n");
	ASSERT(wait_bits(&r.seen, LW_FILE_MODIFIED, 5000));
	ASSERT_EQ(atomic_load(&r.seen), LW_FILE_MODIFIED);

	ASSERT_EQ(chmod(path, 0600), 0);
	ASSERT(wait_bits(&r.seen, LW_FILE_ATTRIB, 5000));
	ASSERT_EQ(atomic_load(&r.seen) & (LW_FILE_MOVED | LW_FILE_DELETED), 0);

	ASSERT_EQ(rename(path, moved), 0);
	ASSERT(wait_bits(&r.seen, LW_FILE_MOVED, 5000));
	ASSERT_EQ(atomic_load(&r.seen) & LW_FILE_DELETED, 0);

	/* The watch follows the file, not the name. */
	int before = atomic_load(&r.calls);
	append(moved, "again\n");
	ASSERT(wait_count(&r.calls, before + 1, 5000));

	ASSERT_EQ(unlink(moved), 0);
	ASSERT(wait_bits(&r.seen, LW_FILE_DELETED, 5000));
	loop_thread_join(&lt);

	ASSERT_EQ(atomic_load(&r.off_thread), 0);
	ASSERT_EQ(atomic_load(&r.wrong_watcher), 0);
	ASSERT_EQ(atomic_load(&r.after_delete), 0);
	/* The last watcher gone, the inotify fd went with it. */
	ASSERT_EQ(active_ios(loop), ios0);
	ASSERT_EQ(site_calls(loop, LW_KIND_FILE, LW_FN(fs_cb)),
		  atomic_load(&r.calls));
	lw_loop_free(loop);
	check_leaks();
	rmdir(dir);
}

/* One bit per kind of change, each on its own. */
static void file_one_change(int which)
{
	char dir[64], path[80], other[80];
	struct fsrec r = { 0 };
	lw_loop_t *loop;

	make_file(dir, sizeof(dir), path, sizeof(path));
	snprintf(other, sizeof(other), "%s/g", dir);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &r, &r.w));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r.calls), 0);

	switch (which) {
	case LW_FILE_MODIFIED:
		ASSERT_EQ(truncate(path, 2), 0);
		break;
	case LW_FILE_ATTRIB:
		ASSERT_EQ(chmod(path, 0640), 0);
		break;
	case LW_FILE_MOVED:
		ASSERT_EQ(rename(path, other), 0);
		break;
	}
	ASSERT(run_until(loop, &r.calls, 1, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r.seen), which);
	ASSERT_EQ(atomic_load(&r.off_thread), 0);
	lw_fswatch_stop(r.w);
	lw_loop_free(loop);
	check_leaks();
	unlink(path);
	unlink(other);
	rmdir(dir);
}

TEST(watch_file_modify)
{
	file_one_change(LW_FILE_MODIFIED);
}

TEST(watch_file_attrib)
{
	file_one_change(LW_FILE_ATTRIB);
}

TEST(watch_file_move)
{
	file_one_change(LW_FILE_MOVED);
}

TEST(watch_file_delete)
{
	char dir[64], path[80];
	struct fsrec r = { 0 };
	lw_loop_t *loop;

	make_file(dir, sizeof(dir), path, sizeof(path));
	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &r, &r.w));
	ASSERT_EQ(unlink(path), 0);
	ASSERT(run_until(loop, &r.calls, 1, 5000));
	/* unlink() also changes the link count, which is an ATTRIB first. */
	for (double end = lwt_now_ms() + 5000;
	     !(atomic_load(&r.seen) & LW_FILE_DELETED) && lwt_now_ms() < end;)
		ASSERT_GE(lw_run_once(loop, 20), 0);
	ASSERT(atomic_load(&r.seen) & LW_FILE_DELETED);
	ASSERT_EQ(atomic_load(&r.seen) & (LW_FILE_MODIFIED | LW_FILE_MOVED), 0);
	run_for(loop, 50);
	ASSERT_EQ(atomic_load(&r.after_delete), 0);
	ASSERT_EQ(active_ios(loop), ios0);
	lw_loop_free(loop);
	check_leaks();
	rmdir(dir);
}

TEST(watch_file_bad_path)
{
	struct fsrec r = { 0 };
	lw_fswatch_t *w = (lw_fswatch_t *)&r; /* must be cleared */
	lw_loop_t *loop;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;
	ASSERT_EQ(lw_fswatch_start(loop, "/nonexistent/lw-watch/x", fs_cb, &r,
				   &w),
		  -ENOENT);
	ASSERT(w == NULL);
	ASSERT_EQ(lw_fswatch_start(loop, "/tmp", NULL, &r, &w), -EINVAL);
	ASSERT_EQ(lw_fswatch_start(loop, NULL, fs_cb, &r, &w), -EINVAL);
	ASSERT_EQ(lw_fswatch_start(NULL, "/tmp", fs_cb, &r, &w), -EINVAL);
	/* A failed first start leaves no inotify fd behind. */
	ASSERT_EQ(active_ios(loop), ios0);
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r.calls), 0);
	lw_fswatch_stop(NULL);
	lw_loop_free(loop);
	check_leaks();
}

/* Two watchers of one file share a kernel watch: both see a change, and
 * stopping one (from its callback) leaves the other working. */
TEST(watch_file_shared)
{
	char dir[64], path[80];
	struct fsrec a = { 0 }, b = { 0 };
	lw_loop_t *loop;

	make_file(dir, sizeof(dir), path, sizeof(path));
	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	a.loop = b.loop = loop;
	a.stop_in_cb = 1;
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &a, &a.w));
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &b, &b.w));
	ASSERT(a.w != b.w);
	/* One inotify fd for the loop, not one per watcher. */
	ASSERT_EQ(active_ios(loop), ios0 + 1);

	append(path, "x");
	ASSERT(run_until(loop, &b.calls, 1, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&a.calls), 1);

	int bcalls = atomic_load(&b.calls);
	append(path, "y");
	ASSERT(run_until(loop, &b.calls, bcalls + 1, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&a.calls), 1);
	ASSERT_EQ(atomic_load(&a.wrong_watcher) + atomic_load(&b.wrong_watcher),
		  0);

	/* Stopping the last one gives the fd back; nothing more arrives. */
	lw_fswatch_stop(b.w);
	ASSERT_EQ(active_ios(loop), ios0);
	bcalls = atomic_load(&b.calls);
	append(path, "z");
	run_for(loop, 50);
	ASSERT_EQ(atomic_load(&b.calls), bcalls);
	lw_loop_free(loop);
	check_leaks();
	unlink(path);
	rmdir(dir);
}

/* Watchers the program never stopped are released by lw_loop_free() (the
 * ASan run checks for leaks). */
TEST(watch_file_loop_free)
{
	char dir[64], path[80];
	struct fsrec r = { 0 };
	lw_loop_t *loop;

	make_file(dir, sizeof(dir), path, sizeof(path));
	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &r, NULL));
	ASSERT_OK(lw_fswatch_start(loop, path, fs_cb, &r, NULL));
	ASSERT_OK(lw_fswatch_start(loop, dir, fs_cb, &r, NULL));
	lw_loop_free(loop);
	check_leaks();
	unlink(path);
	rmdir(dir);
}

/* ---- child watchers ---- */

struct childrec {
	lw_loop_t *loop;
	lw_child_t *w;
	atomic_int calls;
	pid_t pid;
	int status;
	int off_thread;
	int wrong_watcher;
	int reaped; /* waitpid() found nothing left to reap in the callback */
};

static void child_cb(lw_child_t *w, void *arg, pid_t pid, int status)
{
	struct childrec *r = arg;
	int st;

	if (!lw_on_loop_thread(r->loop))
		r->off_thread++;
	if (w != r->w)
		r->wrong_watcher++;
	r->pid = pid;
	r->status = status;
	r->reaped = waitpid(pid, &st, WNOHANG) < 0 && errno == ECHILD;
	lw_child_stop(w); /* allowed here; the watcher goes after the call */
	atomic_fetch_add(&r->calls, 1);
}

static pid_t fork_exit(int code)
{
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(code);
	return pid;
}

static pid_t fork_pause(void)
{
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static void child_start_or_skip(lw_loop_t *loop, pid_t pid, struct childrec *r)
{
	int err = lw_child_start(loop, pid, child_cb, r, &r->w);
	if (err == -ENOSYS) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		SKIP("no pidfd support in this kernel");
	}
	ASSERT_OK(err);
}

TEST(watch_child_exit_code)
{
	struct childrec r = { 0 };
	lw_loop_t *loop;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;
	pid_t pid = fork_exit(7);
	child_start_or_skip(loop, pid, &r);
	ASSERT(run_until(loop, &r.calls, 1, 10000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r.calls), 1);
	ASSERT_EQ(r.pid, pid);
	ASSERT(WIFEXITED(r.status));
	ASSERT(!WIFSIGNALED(r.status));
	ASSERT_EQ(WEXITSTATUS(r.status), 7);
	ASSERT(r.reaped);
	ASSERT_EQ(r.off_thread, 0);
	ASSERT_EQ(r.wrong_watcher, 0);
	/* The watcher freed itself and its pidfd. */
	ASSERT_EQ(active_ios(loop), ios0);
	ASSERT_EQ(site_calls(loop, LW_KIND_CHILD, LW_FN(child_cb)), 1);
	lw_loop_free(loop);
	check_leaks();
}

/* The loop on a thread of its own; the child is killed from main. */
TEST(watch_child_sigterm)
{
	struct childrec r = { 0 };
	struct loop_thread lt;
	lw_loop_t *loop;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	pid_t pid = fork_pause();
	child_start_or_skip(loop, pid, &r);
	loop_thread_start(&lt, loop);
	sleep_ms(30);
	ASSERT_EQ(atomic_load(&r.calls), 0); /* still alive */
	ASSERT_EQ(kill(pid, SIGTERM), 0);
	ASSERT(wait_count(&r.calls, 1, 10000));
	loop_thread_join(&lt);
	ASSERT_EQ(r.pid, pid);
	ASSERT(WIFSIGNALED(r.status));
	ASSERT(!WIFEXITED(r.status));
	ASSERT_EQ(WTERMSIG(r.status), SIGTERM);
	ASSERT(r.reaped);
	ASSERT_EQ(r.off_thread, 0);
	lw_loop_free(loop);
	check_leaks();
}

/* A child that is already a zombie when the watch starts is reported. */
TEST(watch_child_already_exited)
{
	struct childrec r = { 0 };
	siginfo_t si;
	lw_loop_t *loop;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	pid_t pid = fork_exit(3);
	memset(&si, 0, sizeof(si));
	ASSERT_EQ(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	child_start_or_skip(loop, pid, &r);
	ASSERT(run_until(loop, &r.calls, 1, 10000));
	ASSERT(WIFEXITED(r.status));
	ASSERT_EQ(WEXITSTATUS(r.status), 3);
	lw_loop_free(loop);
	check_leaks();
}

TEST(watch_child_not_ours)
{
	struct childrec r = { 0 };
	lw_child_t *w = (lw_child_t *)&r; /* must be cleared */
	lw_loop_t *loop;
	int err;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;

	/* Our parent (the test runner) exists but is not our child. */
	err = lw_child_start(loop, getppid(), child_cb, &r, &w);
	if (err == -ENOSYS)
		SKIP("no pidfd support in this kernel");
	ASSERT_EQ(err, -ECHILD);
	ASSERT(w == NULL);
	ASSERT_EQ(lw_child_start(loop, getpid(), child_cb, &r, &w), -ECHILD);

	/* A child already reaped no longer exists. */
	pid_t gone = fork_exit(0);
	ASSERT_EQ(waitpid(gone, NULL, 0), gone);
	err = lw_child_start(loop, gone, child_cb, &r, &w);
	ASSERT(err == -ESRCH || err == -ECHILD);

	ASSERT_EQ(lw_child_start(loop, 0, child_cb, &r, &w), -EINVAL);
	ASSERT_EQ(lw_child_start(loop, -1, child_cb, &r, &w), -EINVAL);
	ASSERT_EQ(lw_child_start(loop, getppid(), NULL, &r, &w), -EINVAL);
	ASSERT_EQ(active_ios(loop), ios0);
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r.calls), 0);
	lw_loop_free(loop);
	check_leaks();
}

/* A stopped watcher calls nothing and leaves the child to its parent; a
 * second watcher of one child is refused. */
TEST(watch_child_stop)
{
	struct childrec r = { 0 }, r2 = { 0 };
	lw_child_t *w2;
	lw_loop_t *loop;
	int st = 0;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = r2.loop = loop;
	pid_t pid = fork_pause();
	child_start_or_skip(loop, pid, &r);
	ASSERT_EQ(lw_child_start(loop, pid, child_cb, &r2, &w2), -EBUSY);
	lw_child_stop(r.w);
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	run_for(loop, 100);
	ASSERT_EQ(atomic_load(&r.calls), 0);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFSIGNALED(st));
	ASSERT_EQ(WTERMSIG(st), SIGKILL);
	lw_loop_free(loop);
	check_leaks();
}

/* lw_loop_free() releases a watcher whose child is still running, and
 * leaves the child alone. */
TEST(watch_child_loop_free)
{
	struct childrec r = { 0 };
	lw_loop_t *loop;
	int st = 0;

	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	pid_t pid = fork_pause();
	child_start_or_skip(loop, pid, &r);
	lw_loop_free(loop);
	r.w = NULL; /* dangling now; it must not hide a leak */
	check_leaks();
	ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0); /* still running */
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_EQ(atomic_load(&r.calls), 0);
}

/* ---- signal watchers ---- */

struct sigrec {
	lw_loop_t *loop;
	lw_signal_t *w;
	atomic_int calls;
	atomic_int signum;
	atomic_int off_thread;
	atomic_int wrong_watcher;
	int stop_in_cb;
};

static void sig_cb(lw_signal_t *w, void *arg, int signum)
{
	struct sigrec *r = arg;

	if (!lw_on_loop_thread(r->loop))
		atomic_fetch_add(&r->off_thread, 1);
	if (w != r->w)
		atomic_fetch_add(&r->wrong_watcher, 1);
	atomic_store(&r->signum, signum);
	atomic_fetch_add(&r->calls, 1);
	if (r->stop_in_cb)
		lw_signal_stop(w);
}

/* Block `signum` in this thread, as a program must before it makes any
 * thread, so that no other thread takes the signal. */
static void block(int signum)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, signum);
	ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
}

static int is_pending(int signum)
{
	sigset_t set;
	ASSERT_EQ(sigpending(&set), 0);
	return sigismember(&set, signum);
}

/* SIGUSR1 sent to the process from the main thread arrives on the loop's
 * own thread. */
TEST(watch_signal_usr1)
{
	struct sigrec r = { 0 };
	struct loop_thread lt;
	lw_loop_t *loop;

	block(SIGUSR1);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	ASSERT_OK(lw_signal_start(loop, SIGUSR1, sig_cb, &r, &r.w));
	ASSERT(r.w != NULL);
	loop_thread_start(&lt, loop);

	ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
	ASSERT(wait_count(&r.calls, 1, 5000));
	ASSERT_EQ(atomic_load(&r.signum), SIGUSR1);

	/* And again: the watcher stays. */
	ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
	ASSERT(wait_count(&r.calls, 2, 5000));
	loop_thread_join(&lt);

	ASSERT_EQ(atomic_load(&r.off_thread), 0);
	ASSERT_EQ(atomic_load(&r.wrong_watcher), 0);
	ASSERT_EQ(site_calls(loop, LW_KIND_SIGNAL, LW_FN(sig_cb)), 2);
	lw_signal_stop(r.w);
	lw_loop_free(loop);
	check_leaks();
}

TEST(watch_signal_two_signals)
{
	struct sigrec r1 = { 0 }, r2 = { 0 };
	lw_loop_t *loop;

	block(SIGUSR1);
	block(SIGUSR2);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	r1.loop = r2.loop = loop;
	ASSERT_OK(lw_signal_start(loop, SIGUSR1, sig_cb, &r1, &r1.w));
	ASSERT_OK(lw_signal_start(loop, SIGUSR2, sig_cb, &r2, &r2.w));

	ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
	ASSERT(run_until(loop, &r2.calls, 1, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r1.calls), 0);
	ASSERT_EQ(atomic_load(&r2.signum), SIGUSR2);

	ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
	ASSERT(run_until(loop, &r1.calls, 1, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&r1.signum), SIGUSR1);
	ASSERT_EQ(atomic_load(&r1.calls), 1);
	ASSERT_EQ(atomic_load(&r2.calls), 1);
	ASSERT_EQ(atomic_load(&r1.off_thread) + atomic_load(&r2.off_thread), 0);
	lw_signal_stop(r1.w);
	lw_signal_stop(r2.w);
	lw_loop_free(loop);
	check_leaks();
}

/* Every watcher of one signal gets each instance; one that stops itself in
 * its callback gets no more, and the others keep theirs. */
TEST(watch_signal_same_signal_twice)
{
	struct sigrec a = { 0 }, b = { 0 };
	lw_loop_t *loop;

	block(SIGUSR1);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	a.loop = b.loop = loop;
	a.stop_in_cb = 1;
	ASSERT_OK(lw_signal_start(loop, SIGUSR1, sig_cb, &a, &a.w));
	ASSERT_OK(lw_signal_start(loop, SIGUSR1, sig_cb, &b, &b.w));
	ASSERT_EQ(active_ios(loop), ios0 + 1);

	ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
	ASSERT(run_until(loop, &b.calls, 1, 5000));
	ASSERT_EQ(atomic_load(&a.calls), 1);

	ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
	ASSERT(run_until(loop, &b.calls, 2, 5000));
	run_for(loop, 20);
	ASSERT_EQ(atomic_load(&a.calls), 1);
	ASSERT_EQ(atomic_load(&a.wrong_watcher) + atomic_load(&b.wrong_watcher),
		  0);

	lw_signal_stop(b.w);
	ASSERT_EQ(active_ios(loop), ios0);
	lw_loop_free(loop);
	check_leaks();
}

/* An instance sent before the loop runs waits for it; after the last
 * watcher stops, the signal stays blocked and pending, not lost. */
TEST(watch_signal_pending_and_stop)
{
	struct sigrec r = { 0 };
	lw_loop_t *loop;

	block(SIGUSR2);
	ASSERT_OK(lw_loop_new(&loop, NULL));
	r.loop = loop;
	ASSERT_OK(lw_signal_start(loop, SIGUSR2, sig_cb, &r, &r.w));
	ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
	ASSERT(run_until(loop, &r.calls, 1, 5000));
	ASSERT_EQ(atomic_load(&r.signum), SIGUSR2);

	lw_signal_stop(r.w);
	ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
	run_for(loop, 50);
	ASSERT_EQ(atomic_load(&r.calls), 1);
	ASSERT(is_pending(SIGUSR2));

	/* A new watcher takes the pending instance. */
	ASSERT_OK(lw_signal_start(loop, SIGUSR2, sig_cb, &r, &r.w));
	ASSERT(run_until(loop, &r.calls, 2, 5000));
	ASSERT(!is_pending(SIGUSR2));
	lw_loop_free(loop); /* releases the watcher still started */
	r.w = NULL; /* dangling now; it must not hide a leak */
	check_leaks();
}

TEST(watch_signal_invalid)
{
	struct sigrec r = { 0 };
	lw_signal_t *w = (lw_signal_t *)&r; /* must be cleared */
	lw_loop_t *loop;
	static const int bad[] = { 0, -1, SIGKILL, SIGSTOP, 65, 1000, 32 };

	ASSERT_OK(lw_loop_new(&loop, NULL));
	uint32_t ios0 = active_ios(loop);
	r.loop = loop;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(lw_signal_start(loop, bad[i], sig_cb, &r, &w),
			  -EINVAL);
		ASSERT(w == NULL);
	}
	ASSERT_EQ(lw_signal_start(loop, SIGUSR1, NULL, &r, &w), -EINVAL);
	ASSERT_EQ(lw_signal_start(NULL, SIGUSR1, sig_cb, &r, &w), -EINVAL);
	ASSERT_EQ(active_ios(loop), ios0);
	lw_signal_stop(NULL);
	lw_loop_free(loop);
	check_leaks();
}
