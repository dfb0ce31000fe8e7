/*
 * fate.c - what becomes of a watched process (see fate.h for what is
 * known how).
 */
#include "fate.h"
#include "text.h"

#include "duration.h"
#include "proc.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* PIDFD_GET_INFO (include/uapi/linux/pidfd.h, Linux 6.13; the exit
 * status since 6.15): the first published size of its struct, which
 * already holds exit_code.  Older kernels refuse the ioctl. */
struct lw_pidfd_info {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid,
		fsgid;
	int32_t exit_code; /* a wait status, once PIDFD_INFO_EXIT is set */
};
#define LW_PIDFD_GET_INFO _IOWR(0xFF, 11, struct lw_pidfd_info)
#define LW_PIDFD_INFO_EXIT (1ull << 3)

/* A ring closed without an exec is told once the process has lived this
 * long after: a program that frees its loop and exits (the usual end)
 * gets one line, about its exit. */
#define CLOSED_GRACE_NS (1ull * 1000000000)
/* How long a new child may take to make a ring of its own before it is
 * forgotten: a forked loop makes it at its next iteration. */
#define CHILD_PATIENCE_NS (5ull * 1000000000)
/* New children looked at at once; a process that forks more than this
 * within CHILD_PATIENCE_NS has the rest go untold. */
#define MAX_CHILDREN 64

struct child {
	pid_t pid;
	uint64_t start_time;
	uint64_t seen_ns;
};

struct lw_fate {
	const lw_rr_proc_t *p;
	lw_proc_stat_t first; /* the process as attached */
	char exe[PATH_MAX]; /* its /proc/PID/exe then, "" if unreadable */
	lw_fate_end_t end;
	uint64_t alive_ns; /* when it was last seen alive */
	uint64_t end_ns; /* when the end was seen */
	int status_known, status; /* the wait status */
	char new_exe[PATH_MAX]; /* what it exec'd */
	uint8_t *ring_told; /* per ring: its closing was told */
	uint64_t *ring_gone_ns; /* per ring: when it was seen closed, or 0 */
	size_t nslots; /* of both: rings known (the process may make more) */
	pid_t *pids; /* the processes of the last /proc scan, sorted */
	size_t npids;
	long last_pid; /* /proc/loadavg's newest pid at that scan */
	struct child kids[MAX_CHILDREN]; /* new children without a ring yet */
	size_t nkids;
};

/* Control characters (a file name or a comm may hold any) as '?'. */
static void read_exe(pid_t pid, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if (lw_proc_readlink(path, buf, len) < 0)
		buf[0] = '\0';
	lw_text_clean(buf); /* the target names its program */
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* The pid the kernel gave out last (threads too), from /proc/loadavg:
 * while it stays, no process is new.  -1 when it cannot be read. */
static long newest_pid(void)
{
	char buf[128];
	long pid = -1;
	FILE *f = fopen("/proc/loadavg", "re");

	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL &&
	    sscanf(buf, "%*s %*s %*s %*s %ld", &pid) != 1)
		pid = -1;
	fclose(f);
	return pid;
}

struct pid_list {
	pid_t *v;
	size_t n, cap;
};

static int add_pid(pid_t pid, void *arg)
{
	struct pid_list *l = arg;

	if (l->n == l->cap) {
		pid_t *nv = realloc(l->v, 2 * l->cap * sizeof(*nv));
		if (nv == NULL)
			return 1; /* what was listed so far */
		l->v = nv;
		l->cap *= 2;
	}
	l->v[l->n++] = pid;
	return 0;
}

/* The pids now in /proc, sorted, into *out (malloc'd); how many, or -1. */
static ssize_t list_pids(pid_t **out)
{
	struct pid_list l = { .cap = 256 };

	*out = NULL;
	l.v = malloc(l.cap * sizeof(*l.v));
	if (l.v == NULL)
		return -1;
	if (lw_proc_each_pid(add_pid, &l) < 0) {
		free(l.v);
		return -1;
	}
	qsort(l.v, l.n, sizeof(*l.v), cmp_pid);
	*out = l.v;
	return (ssize_t)l.n;
}

lw_fate_t *lw_fate_new(const lw_rr_proc_t *p)
{
	lw_fate_t *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->p = p;
	f->nslots = p->nrings + 1;
	f->ring_told = calloc(f->nslots, 1);
	f->ring_gone_ns = calloc(f->nslots, sizeof(*f->ring_gone_ns));
	if (f->ring_told == NULL || f->ring_gone_ns == NULL) {
		lw_fate_free(f);
		return NULL;
	}
	if (lw_proc_stat(p->pid, &f->first) < 0)
		memset(&f->first, 0, sizeof(f->first));
	read_exe(p->pid, f->exe, sizeof(f->exe));
	f->last_pid = newest_pid();
	ssize_t n = list_pids(&f->pids);
	f->npids = n > 0 ? (size_t)n : 0;
	return f;
}

void lw_fate_free(lw_fate_t *f)
{
	if (f == NULL)
		return;
	free(f->ring_told);
	free(f->ring_gone_ns);
	free(f->pids);
	free(f);
}

const char *lw_fate_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status)) {
		snprintf(buf, len, "exited with status %d",
			 WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		const char *abbrev = sigabbrev_np(sig);
		char name[32];
		if (abbrev != NULL)
			snprintf(name, sizeof(name), "SIG%s", abbrev);
		else
			snprintf(name, sizeof(name), "signal %d", sig);
		snprintf(buf, len, "was killed by %s%s", name,
			 WCOREDUMP(status) ? " (core dumped)" : "");
	} else {
		snprintf(buf, len, "ended with wait status %#x", status);
	}
	return buf;
}

/* The wait status of the process that ended, from whoever can still tell
 * it (see fate.h); 0 and the status in *status, or -1. */
static int learn_status(const lw_fate_t *f, int *status)
{
	const lw_rr_proc_t *p = f->p;
	lw_proc_stat_t s;

	if (p->pidfd >= 0) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		/* Our child (run): exact, and left for the caller to reap. */
		if (waitid(P_PIDFD, (id_t)p->pidfd, &si,
			   WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    si.si_pid != 0) {
			if (si.si_code == CLD_EXITED)
				*status = (si.si_status & 0xff) << 8;
			else
				*status = (si.si_status & 0x7f) |
					  (si.si_code == CLD_DUMPED ? 0x80 : 0);
			return 0;
		}
	}
	/* Not reaped yet: the zombie's stat, if it is still ours. */
	if (lw_proc_stat(p->pid, &s) == 0 && s.start_time == p->start_time &&
	    s.state == 'Z' && s.exit_code >= 0) {
		*status = s.exit_code;
		return 0;
	}
	/* Reaped: the kernel keeps the status with the pidfd (6.15 on). */
	if (p->pidfd >= 0) {
		struct lw_pidfd_info info = { .mask = LW_PIDFD_INFO_EXIT };
		if (ioctl(p->pidfd, LW_PIDFD_GET_INFO, &info) == 0 &&
		    (info.mask & LW_PIDFD_INFO_EXIT)) {
			*status = info.exit_code;
			return 0;
		}
	}
	return -1;
}

static int pidfd_ended(const lw_rr_proc_t *p)
{
	struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };

	return p->pidfd >= 0 && poll(&pfd, 1, 0) > 0;
}

static lw_fate_end_t ended(lw_fate_t *f, lw_fate_end_t how, uint64_t now)
{
	f->end = how;
	f->end_ns = now;
	if (how == LW_FATE_EXITED)
		f->status_known = learn_status(f, &f->status) == 0;
	return how;
}

/* Whether the addresses only an exec sets have changed.  A process whose
 * memory is gone (exiting) reads zeros: not an exec. */
static int new_program(const lw_fate_t *f, const lw_proc_stat_t *s)
{
	if (s->start_stack == 0 || f->first.start_stack == 0)
		return 0;
	return s->start_code != f->first.start_code ||
	       s->end_code != f->first.end_code ||
	       s->start_stack != f->first.start_stack ||
	       s->start_brk != f->first.start_brk;
}

/* A new child that holds a ring of its own: tell it.  1 when done with
 * it (told, gone, or given up on), 0 to look again later. */
static int look_at_child(const lw_fate_t *f, const struct child *k,
			 uint64_t now, FILE *say)
{
	lw_rr_proc_t *c = NULL;
	char why[256], comm[64] = "?", names[256] = "";

	if (lw_rr_attach(k->pid, &c, why, sizeof(why)) < 0)
		return 1; /* gone, or not ours to read */
	if (c->start_time != k->start_time) {
		lw_rr_detach(c);
		return 1; /* its pid was reused meanwhile */
	}
	if (c->nrings == 0) {
		lw_rr_detach(c);
		return now - k->seen_ns > CHILD_PATIENCE_NS;
	}
	size_t o = 0;
	for (size_t i = 0; i < c->nrings && o < sizeof(names); i++)
		o += (size_t)snprintf(names + o, sizeof(names) - o, "%s\"%s\"",
				      i ? ", " : "", lw_rr_name(c->rings[i]));
	lw_proc_comm(k->pid, comm, sizeof(comm));
	fprintf(say,
		"loopwatch: process %d forked %d (%s), whose loop%s %s ha%s "
		"a ring of %s own: follow it with loopwatch attach %d\n",
		(int)f->p->pid, (int)k->pid, comm, c->nrings == 1 ? "" : "s",
		names, c->nrings == 1 ? "s" : "ve",
		c->nrings == 1 ? "its" : "their", (int)k->pid);
	fflush(say);
	lw_rr_detach(c);
	return 1;
}

/* The processes new since the last scan whose parent is ours become
 * children to look at; each is looked at until it has a ring. */
static void look_for_children(lw_fate_t *f, uint64_t now, FILE *say)
{
	pid_t *pids = NULL;
	ssize_t n = -1;
	long newest = newest_pid();

	/* No pid given out since the last scan: nothing new to scan for
	 * (a scan lists every process in /proc, ~1 us each). */
	if (newest < 0 || newest != f->last_pid) {
		n = list_pids(&pids);
		if (n >= 0)
			f->last_pid = newest;
	}
	for (ssize_t i = 0; i < n && f->nkids < MAX_CHILDREN; i++) {
		lw_proc_stat_t s;
		if (bsearch(&pids[i], f->pids, f->npids, sizeof(*pids),
			    cmp_pid) != NULL)
			continue;
		if (lw_proc_stat(pids[i], &s) < 0 || s.ppid != f->p->pid ||
		    s.start_time < f->p->start_time)
			continue;
		f->kids[f->nkids++] = (struct child){
			.pid = pids[i],
			.start_time = s.start_time,
			.seen_ns = now,
		};
	}
	if (n >= 0) {
		free(f->pids);
		f->pids = pids;
		f->npids = (size_t)n;
	}
	for (size_t i = 0; i < f->nkids;) {
		if (look_at_child(f, &f->kids[i], now, say))
			f->kids[i] = f->kids[--f->nkids];
		else
			i++;
	}
}

static void look_full(lw_fate_t *f, uint64_t now, FILE *say)
{
	const lw_rr_proc_t *p = f->p;
	lw_proc_stat_t s;
	int r = lw_proc_stat(p->pid, &s);

	if (r == -ESRCH || (r == 0 && (s.state == 'Z' || s.state == 'X'))) {
		ended(f, LW_FATE_EXITED, now);
		return;
	}
	if (r < 0)
		return; /* cannot tell now: next time */
	if (s.start_time != p->start_time) {
		ended(f, LW_FATE_REUSED, now);
		return;
	}
	int execed = new_program(f, &s);
	for (size_t i = 0; !execed && i < p->nrings && i + 1 < f->nslots; i++) {
		if (f->ring_told[i] || lw_rr_held(p, p->rings[i]) != 0)
			continue;
		/* Closed: by an exec (close-on-exec), or the loop was
		 * freed; or the process is exiting (its files go after its
		 * memory), and the next look says how it ended. */
		if (s.start_stack == 0 || pidfd_ended(p))
			return;
		read_exe(p->pid, f->new_exe, sizeof(f->new_exe));
		if (f->exe[0] && f->new_exe[0] &&
		    strcmp(f->exe, f->new_exe) != 0) {
			execed = 1;
			break;
		}
		if (f->ring_gone_ns[i] == 0)
			f->ring_gone_ns[i] = now;
		if (now - f->ring_gone_ns[i] < CLOSED_GRACE_NS)
			continue;
		f->ring_told[i] = 1;
		fprintf(say,
			"loopwatch: process %d closed the ring of its loop "
			"\"%s\" (the loop was freed); what it wrote is kept\n",
			(int)p->pid, lw_rr_name(p->rings[i]));
		fflush(say);
	}
	if (execed) {
		/* An exit in the middle reads as new addresses too (its
		 * memory goes first): the pidfd says which. */
		if (pidfd_ended(p)) {
			ended(f, LW_FATE_EXITED, now);
			return;
		}
		read_exe(p->pid, f->new_exe, sizeof(f->new_exe));
		ended(f, LW_FATE_EXECED, now);
		return;
	}
	look_for_children(f, now, say);
}

/* Room for the rings the process made since (lw_rr_rescan); 0, or -1 out
 * of memory (the new rings are then not looked at). */
static int grow_slots(lw_fate_t *f)
{
	size_t n = f->p->nrings + 1;

	if (n <= f->nslots)
		return 0;
	uint8_t *told = realloc(f->ring_told, n);
	if (told == NULL)
		return -1;
	f->ring_told = told;
	uint64_t *gone = realloc(f->ring_gone_ns, n * sizeof(*gone));
	if (gone == NULL)
		return -1;
	f->ring_gone_ns = gone;
	memset(told + f->nslots, 0, n - f->nslots);
	memset(gone + f->nslots, 0, (n - f->nslots) * sizeof(*gone));
	f->nslots = n;
	return 0;
}

lw_fate_end_t lw_fate_look(lw_fate_t *f, uint64_t now_ns, int full, FILE *say)
{
	if (f->end != LW_FATE_ALIVE)
		return f->end;
	grow_slots(f);
	if (pidfd_ended(f->p)) {
		/* Ours has exited; a process with another start time under
		 * its pid means that the pid was reaped and reused already. */
		lw_proc_stat_t s;
		if (lw_proc_stat(f->p->pid, &s) == 0 &&
		    s.start_time != f->p->start_time)
			return ended(f, LW_FATE_REUSED, now_ns);
		return ended(f, LW_FATE_EXITED, now_ns);
	}
	if (full)
		look_full(f, now_ns, say);
	if (f->end == LW_FATE_ALIVE)
		f->alive_ns = now_ns;
	return f->end;
}

/* " while callback X (kind) of loop L had run for at least 300 ms", or ""
 * when no loop was in a callback worth naming (see fate.h).  It began at
 * S and was still the loop's callback when the process ended: it ran for
 * at least (last seen alive - S) and at most (end seen - S). */
static void running_callback(const lw_fate_t *f, int signalled, uint64_t min_ns,
			     char *buf, size_t len)
{
	const lw_rr_ring_t *best = NULL;
	lw_rr_current_t best_cur = { 0 };
	size_t others = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < f->p->nrings; i++) {
		lw_rr_current_t cur;
		if (lw_rr_current(f->p->rings[i], &cur) < 0 || !cur.running ||
		    cur.start_ns > f->end_ns)
			continue;
		uint64_t surely = f->alive_ns > cur.start_ns
					  ? f->alive_ns - cur.start_ns
					  : 0;
		if (surely < min_ns && !signalled)
			continue;
		if (best != NULL)
			others++;
		if (best == NULL || cur.start_ns < best_cur.start_ns) {
			best = f->p->rings[i];
			best_cur = cur;
		}
	}
	if (best == NULL)
		return;
	char site[LW_RING_NAME_MAX + 32], d[32];
	lw_rr_site_label(best, best_cur.site, site, sizeof(site));
	int began_since = f->alive_ns <= best_cur.start_ns;
	lw_duration_format(began_since ? f->end_ns - best_cur.start_ns
				       : f->alive_ns - best_cur.start_ns,
			   d, sizeof(d));
	size_t o = (size_t)snprintf(
		buf, len,
		" while callback %s (%s) of loop %s had run for %s %s", site,
		lw_rr_kind_name(best_cur.kind), lw_rr_name(best),
		began_since ? "less than" : "at least", d);
	if (others > 0 && o < len)
		snprintf(buf + o, len - o,
			 " (and %zu more loop%s in callbacks)", others,
			 others == 1 ? " was" : "s were");
}

int lw_fate_failed(const lw_fate_t *f)
{
	if (f->end != LW_FATE_EXITED || !f->status_known)
		return 0;
	return lw_fate_status_failed(f->status);
}

int lw_fate_status_failed(int status)
{
	return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

void lw_fate_line(lw_fate_t *f, uint64_t min_ns, char *buf, size_t len)
{
	const lw_rr_proc_t *p = f->p;
	char how[96], cb[LW_RING_NAME_MAX + 160];

	buf[0] = '\0';
	switch (f->end) {
	case LW_FATE_ALIVE:
		return;
	case LW_FATE_EXITED:
		if (!f->status_known)
			f->status_known = learn_status(f, &f->status) == 0;
		if (f->status_known)
			lw_fate_status(f->status, how, sizeof(how));
		else
			snprintf(how, sizeof(how),
				 "ended (its exit status could not be "
				 "learned)");
		running_callback(f, f->status_known && WIFSIGNALED(f->status),
				 min_ns, cb, sizeof(cb));
		snprintf(buf, len, "process %d %s%s", (int)p->pid, how, cb);
		return;
	case LW_FATE_EXECED:
		if (p->nrings > 0)
			snprintf(buf, len,
				 "process %d exec'd %s: its %zu ring%s gone "
				 "(rings are close-on-exec): stopped watching",
				 (int)p->pid,
				 f->new_exe[0] ? f->new_exe : "another program",
				 p->nrings, p->nrings == 1 ? " is" : "s are");
		else
			snprintf(buf, len,
				 "process %d exec'd %s: the program watched "
				 "is gone: stopped watching",
				 (int)p->pid,
				 f->new_exe[0] ? f->new_exe
					       : "another program");
		return;
	case LW_FATE_REUSED:
		snprintf(buf, len,
			 "PID %d now belongs to another process (start time "
			 "changed): stopped watching",
			 (int)p->pid);
		return;
	}
}
