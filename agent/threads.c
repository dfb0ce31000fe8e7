/*
 * threads.c - detect the loop threads of a process from /proc (see
 * threads.h for what each /proc file gives on this kernel).
 */
#include "threads.h"
#include "proc.h"
#include "text.h"
#include "why.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A process with more threads than this in event waits keeps only the
 * first ones seen: it bounds the memory a hostile target can make us use. */
#define LW_THREADS_MAX_CANDIDATES 65536

/* The kinds of wait, in the order that breaks ties between them (an epoll
 * loop is by far the most common).  The last kind is what wchan gives for
 * poll and select alike. */
enum { K_EPOLL, K_IO_URING, K_POLL, K_SELECT, K_POLL_OR_SELECT, K_COUNT };

static const uint32_t kind_flags[K_COUNT] = {
	[K_EPOLL] = LW_BPF_WAIT_EPOLL,
	[K_IO_URING] = LW_BPF_WAIT_IO_URING,
	[K_POLL] = LW_BPF_WAIT_POLL,
	[K_SELECT] = LW_BPF_WAIT_SELECT,
	[K_POLL_OR_SELECT] = LW_BPF_WAIT_POLL | LW_BPF_WAIT_SELECT,
};

/* A thread seen in an event wait at least once, while sampling. */
struct cand {
	pid_t tid;
	char comm[16];
	unsigned seen;
	unsigned kind_seen[K_COUNT];
	int kind_nr[K_COUNT]; /* the last syscall number of each kind */
};

struct detect {
	pid_t pid;
	struct cand *c;
	size_t n, cap;
	size_t hint; /* where to start looking for the next thread */
	/* -1 not yet known, 0 no, 1 yes: may we read the threads' wchan
	 * (asked only once `syscall` has been refused)? */
	int wchan_ok;
	unsigned threads; /* thread looks in all samples */
	unsigned running; /* of which the thread was on a CPU */
};

/* Read a small /proc file into buf (NUL-terminated, at most cap - 1
 * bytes): the length, or a negative errno. */
static int read_small(const char *path, char *buf, size_t cap)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (len + 1 < cap) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			close(fd);
			return -err;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	return (int)len;
}

uint32_t lw_threads_wait_of_nr(long nr)
{
	switch (nr) {
	case SYS_epoll_wait:
	case SYS_epoll_pwait:
	case SYS_epoll_pwait2:
		return LW_BPF_WAIT_EPOLL;
	case SYS_poll:
	case SYS_ppoll:
		return LW_BPF_WAIT_POLL;
	case SYS_select:
	case SYS_pselect6:
		return LW_BPF_WAIT_SELECT;
	case SYS_io_uring_enter:
		return LW_BPF_WAIT_IO_URING;
	default:
		return 0;
	}
}

int lw_threads_parse_syscall(const char *buf, size_t len, long *nr)
{
	static const char running[] = "running";
	size_t i = 0;
	long v = 0;
	int neg = 0;

	if (len >= sizeof(running) - 1 &&
	    memcmp(buf, running, sizeof(running) - 1) == 0 &&
	    (len == sizeof(running) - 1 || buf[sizeof(running) - 1] == '\n'))
		return -EAGAIN;
	if (i < len && buf[i] == '-') {
		neg = 1;
		i++;
	}
	size_t digits = i;
	/* Syscall numbers are small: more than 9 digits is not one. */
	for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (i - digits >= 9)
			return -EINVAL;
		v = v * 10 + (buf[i] - '0');
	}
	if (i == digits)
		return -EINVAL;
	if (i < len && buf[i] != ' ' && buf[i] != '\n')
		return -EINVAL;
	/* "-1 SP PC" is the only negative form: blocked outside a syscall. */
	if (neg && v != 1)
		return -EINVAL;
	*nr = neg ? -1 : v;
	return 0;
}

uint32_t lw_threads_wait_of_wchan(const char *buf, size_t len)
{
	static const struct {
		const char *fn;
		uint32_t flags;
	} fns[] = {
		{ "do_epoll_wait", LW_BPF_WAIT_EPOLL },
		{ "ep_poll", LW_BPF_WAIT_EPOLL },
		{ "io_cqring_wait", LW_BPF_WAIT_IO_URING },
		/* do_poll and do_select both sleep here. */
		{ "poll_schedule_timeout",
		  LW_BPF_WAIT_POLL | LW_BPF_WAIT_SELECT },
		{ "do_sys_poll", LW_BPF_WAIT_POLL },
		{ "do_poll", LW_BPF_WAIT_POLL },
		{ "do_select", LW_BPF_WAIT_SELECT },
	};
	size_t n = 0;

	/* The name ends at a ".constprop.0"-like suffix, a "+0x..." offset
	 * or the end of the text. */
	while (n < len && buf[n] != '.' && buf[n] != '+' && buf[n] != '\n' &&
	       buf[n] != '\0')
		n++;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		if (strlen(fns[i].fn) == n && memcmp(fns[i].fn, buf, n) == 0)
			return fns[i].flags;
	return 0;
}

static int kind_of_flags(uint32_t flags)
{
	for (int k = 0; k < K_COUNT; k++)
		if (kind_flags[k] == flags)
			return k;
	return -1;
}

/* The thread's comm, with bytes that could upset a terminal replaced. */
static void read_comm(pid_t pid, pid_t tid, char comm[16])
{
	char path[96], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid,
		 (int)tid);
	int n = read_small(path, buf, sizeof(buf));
	if (n <= 0) {
		/* A thread that vanished keeps the name it had, if any. */
		if (comm[0] == '\0')
			snprintf(comm, 16, "?");
		return;
	}
	if (buf[n - 1] == '\n')
		buf[--n] = '\0';
	lw_text_copy(comm, buf, n > 15 ? 15 : (size_t)n);
}

static int note(struct detect *d, pid_t tid, uint32_t flags, int nr)
{
	int k = kind_of_flags(flags);
	struct cand *c = NULL;

	if (k < 0)
		return 0;
	/* Every sample lists the threads in the same order, so the search
	 * starts after the last match: one step per thread as a rule, not a
	 * scan of all candidates (a server may have thousands of loops). */
	for (size_t j = 0; j < d->n; j++) {
		size_t i = (d->hint + j) % d->n;
		if (d->c[i].tid == tid) {
			c = &d->c[i];
			d->hint = i + 1;
			break;
		}
	}
	if (c == NULL) {
		if (d->n == LW_THREADS_MAX_CANDIDATES)
			return 0;
		if (d->n == d->cap) {
			size_t cap = d->cap ? d->cap * 2 : 16;
			struct cand *nc = realloc(d->c, cap * sizeof(*nc));
			if (nc == NULL)
				return -ENOMEM;
			d->c = nc;
			d->cap = cap;
		}
		c = &d->c[d->n++];
		d->hint = d->n;
		memset(c, 0, sizeof(*c));
		c->tid = tid;
	}
	c->seen++;
	c->kind_seen[k]++;
	c->kind_nr[k] = nr;
	/* Threads may rename themselves once running: keep the latest. */
	read_comm(d->pid, tid, c->comm);
	return 0;
}

/* May we read the threads' wchan?  It takes ptrace-read rights on the
 * process, as /proc/PID/exe does: a readlink that is refused says no. */
static int wchan_allowed(pid_t pid)
{
	char path[64], link[16];

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if (readlink(path, link, sizeof(link)) < 0 &&
	    (errno == EACCES || errno == EPERM))
		return 0;
	return 1;
}

/* What the thread is blocked in, from its wchan: 0 (whatever it was doing,
 * or it has exited), -EACCES, -ENOMEM. */
static int look_wchan(struct detect *d, pid_t tid, int nr)
{
	char path[96], buf[128];

	if (d->wchan_ok < 0)
		d->wchan_ok = wchan_allowed(d->pid);
	if (!d->wchan_ok)
		return -EACCES;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/wchan", (int)d->pid,
		 (int)tid);
	int n = read_small(path, buf, sizeof(buf));
	if (n == -EACCES || n == -EPERM)
		return -EACCES;
	if (n < 0)
		return 0;
	d->threads++;
	/* "0": no wait channel, i.e. on a CPU (access was checked above). */
	if (n == 1 && buf[0] == '0') {
		d->running++;
		return 0;
	}
	return note(d, tid, lw_threads_wait_of_wchan(buf, (size_t)n), nr);
}

/* Look at one thread once: 0 (whatever it was doing), -EACCES, -ENOMEM. */
static int look(struct detect *d, pid_t tid)
{
	char path[96], buf[256];
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)d->pid,
		 (int)tid);
	int n = read_small(path, buf, sizeof(buf));
	/* Refused at open (file mode) or at read (the ptrace check). */
	if (n == -EACCES || n == -EPERM)
		return look_wchan(d, tid, -1);
	/* Any other failure: the thread exited meanwhile (ENOENT, ESRCH). */
	if (n < 0)
		return 0;
	int r = lw_threads_parse_syscall(buf, (size_t)n, &nr);
	if (r == -EINVAL)
		return 0;
	d->threads++;
	if (r == -EAGAIN) {
		d->running++;
		return 0;
	}
	/* A poll with a timeout that a signal interrupted (a stop and
	 * continue, a handler) goes on as restart_syscall; wchan says what
	 * it restarted.  Only poll restarts this way. */
	if (nr == SYS_restart_syscall) {
		char wpath[96], w[128];
		snprintf(wpath, sizeof(wpath), "/proc/%d/task/%d/wchan",
			 (int)d->pid, (int)tid);
		int wn = read_small(wpath, w, sizeof(w));
		if (wn > 0 && lw_threads_wait_of_wchan(w, (size_t)wn) != 0)
			return note(d, tid, LW_BPF_WAIT_POLL, SYS_poll);
		return 0;
	}
	return note(d, tid, lw_threads_wait_of_nr(nr), (int)nr);
}

/* One look at every thread of the process. */
static int sample(struct detect *d)
{
	char path[64];
	struct dirent *de;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)d->pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((de = readdir(dir)) != NULL) {
		char *end;
		errno = 0;
		long tid = strtol(de->d_name, &end, 10);
		if (errno != 0 || end == de->d_name || *end != '\0' ||
		    tid <= 0 || tid > INT_MAX)
			continue;
		ret = look(d, (pid_t)tid);
		if (ret < 0)
			break;
	}
	closedir(dir);
	return ret;
}

static int by_seen(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->seen != y->seen)
		return x->seen > y->seen ? -1 : 1;
	return (x->tid > y->tid) - (x->tid < y->tid);
}

static void sleep_until(const struct timespec *t)
{
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) ==
	       EINTR)
		;
}

int lw_threads_detect(pid_t pid, int samples, int interval_ms,
		      lw_loop_thread_t *out, size_t max, char *why,
		      size_t whylen)
{
	struct detect d = { .pid = pid, .wchan_ok = -1 };
	struct timespec next;
	lw_proc_stat_t st;
	int r;

	lw_why(why, whylen, "%s", "");
	if (samples < 1 || interval_ms < 0 || (out == NULL && max > 0)) {
		lw_why(why, whylen,
		       "bad arguments (samples %d, interval %d ms)", samples,
		       interval_ms);
		return -EINVAL;
	}
	if (pid <= 0) {
		lw_why(why, whylen, "%d is not a process id", (int)pid);
		return -ESRCH;
	}
	r = lw_proc_stat(pid, &st);
	if (r == -ESRCH || (r == 0 && (st.state == 'Z' || st.state == 'X'))) {
		lw_why(why, whylen, "no process %d (or it has exited)",
		       (int)pid);
		return -ESRCH;
	}
	if (r < 0) {
		lw_why(why, whylen, "cannot read /proc/%d/stat: %s", (int)pid,
		       strerror(-r));
		return r;
	}
	/* A kernel thread has no user space and so no event loop; its
	 * `syscall` file would read as syscall 0 (read). */
	if (st.flags & LW_PF_KTHREAD) {
		lw_why(why, whylen,
		       "pid %d is a kernel thread: it has no user-space loop",
		       (int)pid);
		return 0;
	}

	/* Absolute deadlines, so the time a sample takes does not stretch
	 * the interval; added up step by step, so nothing can overflow. */
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (int s = 0; s < samples; s++) {
		if (s > 0) {
			next.tv_sec += interval_ms / 1000;
			next.tv_nsec += (long)(interval_ms % 1000) * 1000000;
			if (next.tv_nsec >= 1000000000) {
				next.tv_sec++;
				next.tv_nsec -= 1000000000;
			}
			sleep_until(&next);
		}
		r = sample(&d);
		if (r < 0)
			break;
	}
	if (r == -ESRCH) {
		lw_why(why, whylen, "process %d exited during detection",
		       (int)pid);
		goto out;
	}
	if (r == -EACCES) {
		lw_why(why, whylen,
		       "not allowed to read the threads of pid %d "
		       "(run as root or as its user, with "
		       "kernel.yama.ptrace_scope 0)",
		       (int)pid);
		goto out;
	}
	if (r < 0) {
		lw_why(why, whylen, "cannot read the threads of pid %d: %s",
		       (int)pid, strerror(-r));
		goto out;
	}

	if (d.n > 1)
		qsort(d.c, d.n, sizeof(*d.c), by_seen);
	size_t n = d.n < max ? d.n : max;
	for (size_t i = 0; i < n; i++) {
		const struct cand *c = &d.c[i];
		int best = 0;
		for (int k = 1; k < K_COUNT; k++)
			if (c->kind_seen[k] > c->kind_seen[best])
				best = k;
		memset(&out[i], 0, sizeof(out[i]));
		out[i].tid = c->tid;
		memcpy(out[i].comm, c->comm, sizeof(out[i].comm));
		out[i].wait_flags = kind_flags[best];
		out[i].nr = c->kind_nr[best];
		out[i].seen = c->seen;
	}
	if (d.n == 0) {
		if (d.threads > 0 && d.running == d.threads)
			lw_why(why, whylen,
			       "the threads of pid %d were running at every "
			       "sample (%d samples)",
			       (int)pid, samples);
		else
			lw_why(why, whylen,
			       "no thread of pid %d was seen in an event "
			       "wait (epoll, poll, select, io_uring) in %d "
			       "samples",
			       (int)pid, samples);
	}
	r = (int)n;
out:
	free(d.c);
	return r;
}
