/*
 * runner.c - runs the registered tests, each in its own process with a
 * timeout, and prints one line per test and a last line
 * "N passed, N failed, N skipped".
 *
 *   run_tests                  every test
 *   run_tests NAME...          the named tests (a trailing '*' is a prefix)
 *   run_tests -l               list the tests
 *   run_tests --suite asan ... prefix the per-test lines with "asan"
 *
 * Exit status: 0 if nothing failed, 1 otherwise, 2 on bad usage.
 */
#include "lwtest.h"

#include <fcntl.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_TESTS 1024

struct test {
	const char *name;
	lwt_fn fn;
	int timeout_s;
};

static struct test tests[MAX_TESTS];
static int ntests;
static char build_dir[PATH_MAX];

void lwt_register(const char *name, lwt_fn fn, int timeout_s)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "run_tests: too many tests\n");
		exit(2);
	}
	tests[ntests++] = (struct test){ name, fn, timeout_s };
}

uint64_t lwt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double lwt_now_ms(void)
{
	return (double)lwt_now_ns() / 1e6;
}

const char *lwt_build_path(const char *rel)
{
	static char buf[PATH_MAX + 256];
	snprintf(buf, sizeof(buf), "%s/%s", build_dir, rel);
	return buf;
}

/* Read one line (without the newline) within the timeout; -1 if none. */
int lwt_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;
	double deadline = lwt_now_ms() + timeout_ms;
	while (len + 1 < cap) {
		int left = (int)(deadline - lwt_now_ms());
		if (left <= 0)
			return -1;
		struct pollfd pfd = { fd, POLLIN, 0 };
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (c == '\n')
			break;
		buf[len++] = c;
	}
	buf[len] = '\0';
	return (int)len;
}

void lwt_exec(char *const argv[])
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], argv);
	fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/*
 * Start argv[0] with stdout (and stderr too, with `merge_stderr`) on a pipe
 * whose read end goes to *out.  `tmpdir`, if not NULL, becomes TMPDIR.
 */
pid_t lwt_spawn(char *const argv[], int *out, int merge_stderr,
		const char *tmpdir)
{
	int p[2];
	ASSERT_OK(pipe2(p, O_CLOEXEC));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		if (merge_stderr)
			dup2(p[1], 2);
		if (tmpdir)
			setenv("TMPDIR", tmpdir, 1);
		lwt_exec(argv);
	}
	close(p[1]);
	*out = p[0];
	return pid;
}

/* Read until EOF or timeout; returns the bytes read (NUL-terminated). */
size_t lwt_read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;
	double deadline = lwt_now_ms() + timeout_ms;
	while (len + 1 < cap) {
		int left = (int)(deadline - lwt_now_ms());
		if (left <= 0)
			break;
		struct pollfd pfd = { fd, POLLIN, 0 };
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

/* Wait for the child within the timeout; kill it after.  Returns status. */
int lwt_wait_exit(pid_t pid, int timeout_ms)
{
	int status;
	double deadline = lwt_now_ms() + timeout_ms;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		ASSERT(r == 0);
		if (lwt_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			LWT_FAIL("pid %d did not exit within %d ms", (int)pid,
				 timeout_ms);
		}
		usleep(5000);
	}
}

static int cmp_test(const void *a, const void *b)
{
	return strcmp(((const struct test *)a)->name,
		      ((const struct test *)b)->name);
}

static int matches(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return 1;
	for (int i = first; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (n > 0 && argv[i][n - 1] == '*') {
			if (strncmp(name, argv[i], n - 1) == 0)
				return 1;
		} else if (strcmp(name, argv[i]) == 0) {
			return 1;
		}
	}
	return 0;
}

/* Outcome of one test: 0 pass, 1 fail, 2 skip. */
static int run_one(const struct test *t, const char *suite)
{
	double t0 = lwt_now_ms();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		printf("%s%sFAIL %s: fork: %s\n", suite, *suite ? " " : "",
		       t->name, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		/* A process group of its own, so a timeout kills the helper
		 * processes the test started too. */
		setpgid(0, 0);
		t->fn();
		fflush(stdout);
		fflush(stderr);
#if defined(__SANITIZE_ADDRESS__)
		/* _exit() skips LeakSanitizer's check at exit: run it here,
		 * so a test that leaks fails under ASan. */
		if (__lsan_do_recoverable_leak_check() != 0)
			_exit(1);
#endif
		_exit(0);
	}
	setpgid(pid, pid);
	int status = 0, timed_out = 0;
	double deadline = t0 + t->timeout_s * 1000.0;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = 0x100;
			break;
		}
		if (lwt_now_ms() > deadline) {
			timed_out = 1;
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	/* Whatever the test left behind in its group goes too. */
	kill(-pid, SIGKILL);
	double ms = lwt_now_ms() - t0;
	const char *sp = *suite ? " " : "";
	if (timed_out) {
		printf("%s%sFAIL %s: timed out after %d s\n", suite, sp,
		       t->name, t->timeout_s);
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("%s%sok   %s (%.0f ms)\n", suite, sp, t->name, ms);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("%s%sskip %s\n", suite, sp, t->name);
		return 2;
	}
	if (WIFSIGNALED(status))
		printf("%s%sFAIL %s: killed by signal %d (%s)\n", suite, sp,
		       t->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		printf("%s%sFAIL %s: exit status %d\n", suite, sp, t->name,
		       WEXITSTATUS(status));
	return 1;
}

int main(int argc, char **argv)
{
	const char *suite = "";
	int list = 0, first = 1;

	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "-l") == 0) {
			list = 1;
			first++;
		} else if (strcmp(argv[first], "--suite") == 0 &&
			   first + 1 < argc) {
			suite = argv[first + 1];
			first += 2;
		} else {
			fprintf(stderr, "usage: run_tests [-l] [--suite NAME] "
					"[TEST|PREFIX*]...\n");
			return 2;
		}
	}

	/* The build folder is the parent of the folder holding us. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(build_dir, sizeof(build_dir), "%s", self);
	}

	qsort(tests, (size_t)ntests, sizeof(tests[0]), cmp_test);
	signal(SIGPIPE, SIG_IGN);

	int passed = 0, failed = 0, skipped = 0, selected = 0;
	for (int i = 0; i < ntests; i++) {
		if (!matches(tests[i].name, argc, argv, first))
			continue;
		selected++;
		if (list) {
			printf("%s\n", tests[i].name);
			continue;
		}
		switch (run_one(&tests[i], suite)) {
		case 0:
			passed++;
			break;
		case 1:
			failed++;
			break;
		default:
			skipped++;
		}
	}
	if (list)
		return 0;
	if (selected == 0) {
		fprintf(stderr, "run_tests: no test matches\n");
		return 2;
	}
	printf("%s%s%d passed, %d failed, %d skipped\n", suite,
	       *suite ? ": " : "", passed, failed, skipped);
	return failed ? 1 : 0;
}
