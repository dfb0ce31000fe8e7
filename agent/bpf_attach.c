/*
 * bpf_attach.c - `loopwatch attach`: the rings say which callback ran when and
 * for how long; the kernel probes say which syscalls of the loop thread
 * were slow, with their user stacks.  Joined by time (both are
 * CLOCK_MONOTONIC), they say what each slow callback was waiting for.
 *
 * One thread does everything, alternately: wait up to a tick for kernel
 * events (buffered in the join), read the rings, take the kernel events
 * published meanwhile, then hand each slow record the events it contains
 * and expire the events no record will claim.  Reading the rings before
 * the last poll of a tick matters: a syscall's event is sent before its
 * callback ends, so every event of a record we hold is in the ring buffer
 * by then.
 */
#include "attach.h"
#include "bpf_load.h"

#include "join.h"
#include "loopwatch.h"
#include "proc.h"
#include "ring_reader.h"
#include "symbolize.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define TICK_MS 10
/* How long an event that no running callback covers waits for its record
 * before it is called "outside callbacks": the record is written right
 * after the callback ends, so a few ticks are plenty. */
#define GRACE_NS (200ull * 1000000)
#define JOIN_CAP 256 /* buffered events; drop-oldest beyond */
#define TAKE_MAX 64 /* events printed per callback */
#define SITE_SYSCALLS 8 /* distinct syscalls remembered per site */
#define RECS_MAX 4096 /* ring records read per loop and tick */

/* ---- syscall names ---- */

struct sysname {
	uint32_t nr;
	const char *name;
};

/* The x86-64 numbers of the syscalls a loop thread typically blocks in. */
static const struct sysname sysnames[] = {
	{ 0, "read" },
	{ 1, "write" },
	{ 2, "open" },
	{ 3, "close" },
	{ 4, "stat" },
	{ 5, "fstat" },
	{ 7, "poll" },
	{ 8, "lseek" },
	{ 9, "mmap" },
	{ 16, "ioctl" },
	{ 17, "pread64" },
	{ 18, "pwrite64" },
	{ 19, "readv" },
	{ 20, "writev" },
	{ 21, "access" },
	{ 23, "select" },
	{ 26, "msync" },
	{ 35, "nanosleep" },
	{ 40, "sendfile" },
	{ 42, "connect" },
	{ 43, "accept" },
	{ 44, "sendto" },
	{ 45, "recvfrom" },
	{ 46, "sendmsg" },
	{ 47, "recvmsg" },
	{ 61, "wait4" },
	{ 73, "flock" },
	{ 74, "fsync" },
	{ 75, "fdatasync" },
	{ 76, "truncate" },
	{ 77, "ftruncate" },
	{ 82, "rename" },
	{ 83, "mkdir" },
	{ 84, "rmdir" },
	{ 87, "unlink" },
	{ 162, "sync" },
	{ 187, "readahead" },
	{ 202, "futex" },
	{ 217, "getdents64" },
	{ 221, "fadvise64" },
	{ 230, "clock_nanosleep" },
	{ 232, "epoll_wait" },
	{ 247, "waitid" },
	{ 257, "openat" },
	{ 262, "newfstatat" },
	{ 263, "unlinkat" },
	{ 270, "pselect6" },
	{ 271, "ppoll" },
	{ 275, "splice" },
	{ 277, "sync_file_range" },
	{ 281, "epoll_pwait" },
	{ 285, "fallocate" },
	{ 288, "accept4" },
	{ 299, "recvmmsg" },
	{ 306, "syncfs" },
	{ 307, "sendmmsg" },
	{ 318, "getrandom" },
	{ 326, "copy_file_range" },
	{ 332, "statx" },
	{ 426, "io_uring_enter" },
};

const char *lw_attach_syscall_name(uint32_t nr)
{
#if defined(__x86_64__)
	for (size_t i = 0; i < sizeof(sysnames) / sizeof(sysnames[0]); i++)
		if (sysnames[i].nr == nr)
			return sysnames[i].name;
#else
	(void)sysnames;
	(void)nr;
#endif
	return NULL;
}

static const char *fd_kind_name(uint32_t k)
{
	static const char *const names[] = {
		[LW_BPF_FD_NONE] = "",
		[LW_BPF_FD_REG] = "regular file",
		[LW_BPF_FD_SOCK] = "socket",
		[LW_BPF_FD_FIFO] = "pipe",
		[LW_BPF_FD_CHR] = "char device",
		[LW_BPF_FD_DIR] = "directory",
		[LW_BPF_FD_BLK] = "block device",
		[LW_BPF_FD_OTHER] = "special file",
		[LW_BPF_FD_UNKNOWN] = "closed or unknown fd",
	};
	return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* ---- state ---- */

/* Totals of one syscall within one site. */
struct site_sys {
	uint32_t nr;
	uint64_t count, total_ns;
};

/* The summary of one site of one loop. */
struct site_sum {
	size_t loop; /* index into st->loops */
	uint32_t site;
	char name[LW_RING_NAME_MAX + 32];
	uint64_t count, total_ns, max_ns;
	struct site_sys sys[SITE_SYSCALLS];
	size_t nsys;
};

struct loop {
	lw_rr_ring_t *ring;
	lw_rr_cursor_t cur;
	uint32_t tid; /* 0 until the ring names its thread */
	uint64_t lost_reported;
};

struct state {
	const struct lw_attach_opts *o;
	FILE *out;
	lw_rr_proc_t *p;
	struct lw_bpf *bpf; /* NULL: rings alone */
	lw_sym_t *sym; /* NULL: raw addresses */
	lw_join_t *join;
	struct loop *loops;
	size_t nloops;
	struct site_sum *sites;
	size_t nsites, sites_cap;
	uint64_t last_refresh_ns;
	uint64_t outside; /* events outside any callback */
	lw_join_event_t buf[TAKE_MAX];
	struct lw_ring_record recs[RECS_MAX];
};

/* The loop whose thread is tid, or NULL. */
static struct loop *loop_of(struct state *st, uint32_t tid)
{
	for (size_t i = 0; i < st->nloops; i++)
		if (st->loops[i].tid != 0 && st->loops[i].tid == tid)
			return &st->loops[i];
	return NULL;
}

static const char *site_label(const lw_rr_ring_t *r, uint32_t id, char *buf,
			      size_t len)
{
	lw_rr_site_t s;

	if (id == 0)
		snprintf(buf, len, "(no site)");
	else if (lw_rr_site(r, id, &s) < 0)
		snprintf(buf, len, "site#%" PRIu32, id);
	else if (s.name[0] != '\0')
		snprintf(buf, len, "%s", s.name);
	else
		snprintf(buf, len, "0x%" PRIx64, s.fn);
	return buf;
}

/* ---- events ---- */

/* Where a thread's stack legitimately ends. */
static int is_stack_bottom(const char *func)
{
	static const char *const bottoms[] = {
		"_start",
		"__libc_start_main",
		"__libc_start_call_main",
		"start_thread",
		"clone",
		"clone3",
		"__clone3",
		"__clone",
	};
	for (size_t i = 0; i < sizeof(bottoms) / sizeof(bottoms[0]); i++)
		if (strcmp(func, bottoms[i]) == 0)
			return 1;
	return 0;
}

/* The stack as "  #i frame\n" lines.  Symbolized on arrival, while the
 * target and its mappings surely exist; an unknown address may be in a
 * library loaded since attach, so the maps are re-read (at most every
 * 100 ms, a refresh costs a /proc/PID/maps parse). */
static char *format_stack(struct state *st,
			  const struct lw_bpf_syscall_event *ev)
{
	size_t cap = 4096, len = 0;
	char *s = xcalloc(1, cap);

	if (ev->stack_bytes < 0) {
		snprintf(s, cap, "  (no user stack: %s)\n",
			 strerror((int)-ev->stack_bytes));
		return s;
	}
	size_t n = (size_t)ev->stack_bytes / 8;
	if (n > LW_BPF_STACK_DEPTH)
		n = LW_BPF_STACK_DEPTH;
	int whole = st->sym == NULL; /* unknown without names: say nothing */
	for (size_t i = 0; i < n && len + 1 < cap; i++) {
		char line[600];
		lw_sym_frame_t f;
		if (st->sym == NULL) {
			snprintf(line, sizeof(line), "0x%" PRIx64,
				 (uint64_t)ev->stack[i]);
		} else {
			int r = lw_sym_lookup(st->sym, ev->stack[i], i > 0, &f);
			uint64_t now = now_ns();
			if (r != 0 && (f.flags & LW_SYM_UNKNOWN) &&
			    now - st->last_refresh_ns > 100000000) {
				st->last_refresh_ns = now;
				if (lw_sym_refresh(st->sym) == 0)
					lw_sym_lookup(st->sym, ev->stack[i],
						      i > 0, &f);
			}
			lw_sym_format(&f, line, sizeof(line));
			if ((f.flags & LW_SYM_FUNC) && is_stack_bottom(f.func))
				whole = 1;
		}
		int w = snprintf(s + len, cap - len, "  #%zu %s\n", i, line);
		if (w < 0)
			break;
		len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
	}
	/* The kernel walks frame pointers: code built without them (Debian's
	 * libc, sanitizer interceptors) ends the walk early.  Say so rather
	 * than let a cut stack pass for a whole one. */
	if (n == LW_BPF_STACK_DEPTH)
		snprintf(s + len, cap - len, "  ... (cut at %d frames)\n",
			 LW_BPF_STACK_DEPTH);
	else if (!whole)
		snprintf(s + len, cap - len,
			 "  ... (stack cut: a frame without frame pointer)\n");
	return s;
}

/* "fsync(fd 7 -> regular file /tmp/x/fsync.dat)" */
static void format_call(const lw_join_event_t *e, char *buf, size_t len)
{
	const struct lw_bpf_syscall_event *ev = &e->ev;
	const char *name = lw_attach_syscall_name(ev->nr);
	char nbuf[32];

	if (name == NULL) {
		snprintf(nbuf, sizeof(nbuf), "syscall %" PRIu32, ev->nr);
		name = nbuf;
	}
	if (ev->fd < 0)
		snprintf(buf, len, "%s()", name);
	else if (e->fd_path[0] == '/')
		snprintf(buf, len, "%s(fd %d -> %s %s)", name, (int)ev->fd,
			 fd_kind_name(ev->fd_kind), e->fd_path);
	else if (e->fd_path[0] != '\0')
		snprintf(buf, len, "%s(fd %d -> %s)", name, (int)ev->fd,
			 e->fd_path);
	else
		snprintf(buf, len, "%s(fd %d -> %s)", name, (int)ev->fd,
			 fd_kind_name(ev->fd_kind));
	if (ev->ret < 0) {
		size_t l = strlen(buf);
		snprintf(buf + l, len - l, " = -%s",
			 strerrorname_np((int)-ev->ret)
				 ? strerrorname_np((int)-ev->ret)
				 : "?");
	}
}

static void print_outside(struct state *st, const lw_join_event_t *e)
{
	char call[512];

	format_call(e, call, sizeof(call));
	fprintf(st->out,
		"outside callbacks: %.1f ms in %s on tid %" PRIu32 "\n",
		ms(e->ev.duration_ns), call, e->ev.tid);
	if (e->stack)
		fputs(e->stack, st->out);
	st->outside++;
}

static int on_event(void *ctx, const struct lw_bpf_syscall_event *ev)
{
	struct state *st = ctx;
	lw_join_event_t e;

	memset(&e, 0, sizeof(e));
	e.ev = *ev;
	if (ev->fd >= 0) {
		/* Best effort: the fd may be closed or reused by now. */
		char link[64];
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)st->o->pid,
			 (int)ev->fd);
		ssize_t n = readlink(link, e.fd_path, sizeof(e.fd_path) - 1);
		e.fd_path[n > 0 ? n : 0] = '\0';
		/* The fd may be closed and reused by now: keep a path only
		 * if it is of the kind the kernel saw (a regular file or a
		 * directory has a path; a socket or pipe a "type:[inode]"). */
		int is_path = e.fd_path[0] == '/';
		int wants_path = ev->fd_kind == LW_BPF_FD_REG ||
				 ev->fd_kind == LW_BPF_FD_DIR ||
				 ev->fd_kind == LW_BPF_FD_BLK ||
				 ev->fd_kind == LW_BPF_FD_CHR;
		if (is_path != wants_path)
			e.fd_path[0] = '\0';
	}
	e.stack = format_stack(st, ev);
	if (loop_of(st, ev->tid) == NULL) {
		/* A thread without a ring (--tid): nothing to join with. */
		print_outside(st, &e);
		free(e.stack);
	} else {
		lw_join_add(st->join, &e);
	}
	return 0;
}

/* ---- records ---- */

static struct site_sum *site_sum(struct state *st, size_t loop, uint32_t site)
{
	for (size_t i = 0; i < st->nsites; i++)
		if (st->sites[i].loop == loop && st->sites[i].site == site)
			return &st->sites[i];
	if (st->nsites == st->sites_cap) {
		size_t cap = st->sites_cap ? 2 * st->sites_cap : 16;
		struct site_sum *s = realloc(st->sites, cap * sizeof(*s));
		if (s == NULL) {
			fprintf(stderr, "loopwatch: cannot allocate memory\n");
			exit(EXIT_USAGE);
		}
		st->sites = s;
		st->sites_cap = cap;
	}
	struct site_sum *s = &st->sites[st->nsites++];
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->site = site;
	site_label(st->loops[loop].ring, site, s->name, sizeof(s->name));
	return s;
}

static void count_sys(struct site_sum *s, const struct lw_bpf_syscall_event *ev)
{
	size_t i;

	for (i = 0; i < s->nsys; i++)
		if (s->sys[i].nr == ev->nr)
			break;
	if (i == s->nsys) {
		if (s->nsys == SITE_SYSCALLS)
			return;
		s->sys[s->nsys++] = (struct site_sys){ .nr = ev->nr };
	}
	s->sys[i].count++;
	s->sys[i].total_ns += ev->duration_ns;
}

/* A slow callback: print it with the syscalls it contains. */
static void on_record(struct state *st, size_t li,
		      const struct lw_ring_record *rec)
{
	struct loop *l = &st->loops[li];
	char label[LW_RING_NAME_MAX + 32], call[512];
	size_t n = 0;

	if (st->bpf != NULL && l->tid != 0)
		n = lw_join_take(st->join, l->tid, rec->start_ns,
				 rec->duration_ns, st->buf, TAKE_MAX);
	struct site_sum *s = site_sum(st, li, rec->site);
	s->count++;
	s->total_ns += rec->duration_ns;
	if (rec->duration_ns > s->max_ns)
		s->max_ns = rec->duration_ns;

	site_label(l->ring, rec->site, label, sizeof(label));
	fprintf(st->out, "callback %s (%s) took %.1f ms", label,
		lw_rr_kind_name(rec->kind), ms(rec->duration_ns));
	for (size_t i = 0; i < n; i++) {
		lw_join_event_t *e = &st->buf[i];
		format_call(e, call, sizeof(call));
		fprintf(st->out, "%s%.1f ms in %s\n",
			i == 0 ? ", of which " : "  and ",
			ms(e->ev.duration_ns), call);
		if (e->stack)
			fputs(e->stack, st->out);
		free(e->stack);
		count_sys(s, &e->ev);
	}
	if (n == 0)
		fprintf(st->out, "%s\n",
			st->bpf ? ", in no slow syscall (on CPU or short waits)"
				: "");
}

/* Print the events that no record will claim: outside callbacks, or
 * (prefix set, the final flush) inside a callback still running. */
static void expire(struct state *st, struct loop *l, uint64_t now,
		   uint64_t grace, uint64_t running, const char *prefix)
{
	size_t n;

	do {
		n = lw_join_expire(st->join, l->tid, now, grace, running,
				   st->buf, TAKE_MAX);
		for (size_t i = 0; i < n; i++) {
			if (prefix) {
				char call[512];
				format_call(&st->buf[i], call, sizeof(call));
				fprintf(st->out, "%s%.1f ms in %s\n", prefix,
					ms(st->buf[i].ev.duration_ns), call);
				if (st->buf[i].stack)
					fputs(st->buf[i].stack, st->out);
			} else {
				print_outside(st, &st->buf[i]);
			}
			free(st->buf[i].stack);
		}
	} while (n == TAKE_MAX);
}

/* Read what is new in every ring and join the slow records. */
static void drain(struct state *st, int final)
{
	for (size_t li = 0; li < st->nloops; li++) {
		struct loop *l = &st->loops[li];
		lw_rr_current_t cur;
		/* The running callback as it was before this read: if it
		 * ends meanwhile, its record is in what we read below. */
		uint64_t running = 0;
		if (lw_rr_current(l->ring, &cur) == 0 && cur.running)
			running = cur.start_ns;

		/* Bounded per tick (the rest waits for the next), so a fast
		 * writer cannot starve the kernel events. */
		size_t got = 0, n;
		while (got < RECS_MAX &&
		       (n = lw_rr_read(l->ring, &l->cur, st->recs + got,
				       RECS_MAX - got)) > 0)
			got += n;
		/* The events of these records were sent before the records
		 * were written: collect them before joining. */
		if (st->bpf)
			lw_bpf_poll(st->bpf, 0, on_event, st);
		for (size_t k = 0; k < got; k++)
			if (st->recs[k].duration_ns >= st->o->min_ns)
				on_record(st, li, &st->recs[k]);
		if (l->cur.lost > l->lost_reported) {
			fprintf(st->out,
				"(loop %s: %" PRIu64
				" records lost, read too late)\n",
				lw_rr_name(l->ring),
				l->cur.lost - l->lost_reported);
			l->lost_reported = l->cur.lost;
		}
		if (l->tid == 0)
			continue;
		if (!final) {
			expire(st, l, now_ns(), GRACE_NS, running, NULL);
		} else {
			expire(st, l, UINT64_MAX, 0, running, NULL);
			expire(st, l, UINT64_MAX, 0, 0,
			       "in a callback still running: ");
		}
	}
}

/* Watch the loop threads that the rings name by now. */
static void watch_new_threads(struct state *st)
{
	char why[256];

	for (size_t i = 0; i < st->nloops; i++) {
		struct loop *l = &st->loops[i];
		if (l->tid != 0)
			continue;
		pid_t tid = lw_rr_tid(l->ring);
		if (tid <= 0)
			continue;
		l->tid = (uint32_t)tid;
		if (st->bpf && lw_bpf_watch(st->bpf, l->tid, LW_BPF_WAIT_EPOLL,
					    why, sizeof(why)) < 0)
			fprintf(stderr,
				"loopwatch: cannot watch thread %d: %s\n",
				(int)tid, why);
	}
}

static void print_summary(struct state *st)
{
	fprintf(st->out, "\nsummary: %zu slow site%s\n", st->nsites,
		st->nsites == 1 ? "" : "s");
	for (size_t i = 0; i < st->nsites; i++) {
		struct site_sum *s = &st->sites[i];
		fprintf(st->out,
			"  %-24s %6" PRIu64 " slow, total %.1f ms, max %.1f "
			"ms",
			s->name, s->count, ms(s->total_ns), ms(s->max_ns));
		for (size_t k = 0; k < s->nsys; k++) {
			const char *n = lw_attach_syscall_name(s->sys[k].nr);
			char nb[32];
			if (n == NULL) {
				snprintf(nb, sizeof(nb), "syscall %" PRIu32,
					 s->sys[k].nr);
				n = nb;
			}
			fprintf(st->out, "%s%s x%" PRIu64 " %.1f ms",
				k == 0 ? "; in " : ", ", n, s->sys[k].count,
				ms(s->sys[k].total_ns));
		}
		fputc('\n', st->out);
	}
	if (st->outside > 0)
		fprintf(st->out,
			"  %" PRIu64 " slow syscall%s outside callbacks\n",
			st->outside, st->outside == 1 ? "" : "s");
	if (st->bpf) {
		struct lw_bpf_stats bs;
		if (lw_bpf_stats_read(st->bpf, &bs) == 0 && bs.lost > 0)
			fprintf(st->out,
				"  %" PRIu64 " kernel events lost (ring buffer "
				"full)\n",
				(uint64_t)bs.lost);
		if (lw_join_dropped(st->join) > 0)
			fprintf(st->out,
				"  %" PRIu64
				" events dropped unmatched (buffer "
				"full)\n",
				lw_join_dropped(st->join));
	}
}

/* ---- setup ---- */

/* Load and attach the probes; NULL (after one line on stderr) if the
 * kernel will not have them: the rings alone still tell a lot. */
static struct lw_bpf *open_probes(struct state *st)
{
	struct lw_bpf_opts bo = { .min_ns = st->o->min_ns };
	struct lw_bpf *b;
	char why[256];

	if (lw_bpf_open(&b, &bo, why, sizeof(why)) < 0)
		goto fail;
	if (st->o->tid > 0 &&
	    lw_bpf_watch(b, (uint32_t)st->o->tid, LW_BPF_WAIT_EPOLL, why,
			 sizeof(why)) < 0) {
		lw_bpf_free(b);
		goto fail;
	}
	if (lw_bpf_attach(b, why, sizeof(why)) < 0) {
		lw_bpf_free(b);
		goto fail;
	}
	return b;
fail:
	fprintf(stderr,
		"loopwatch: kernel probes unavailable (%s); continuing with "
		"the rings alone\n",
		why);
	return NULL;
}

static int cannot_attach(pid_t pid, int err, const char *why)
{
	fprintf(stderr, "loopwatch: cannot attach to PID %d: %s\n", (int)pid,
		why);
	if (err == -ESRCH)
		fprintf(stderr, "loopwatch: hint: check the pid with "
				"'loopwatch list' or ps\n");
	else if (err == -EACCES)
		fprintf(stderr, "loopwatch: hint: run loopwatch as the same "
				"user as the process, or as root\n");
	return EXIT_USAGE;
}

int lw_attach_run(const struct lw_attach_opts *o)
{
	/* Large (the buffers): on the heap. */
	struct state *st = xcalloc(1, sizeof(*st));
	char why[512];
	int rc = 0;

	st->o = o;
	st->out = o->out ? o->out : stdout;

	int r = lw_rr_attach(o->pid, &st->p, why, sizeof(why));
	if (r < 0) {
		free(st);
		return cannot_attach(o->pid, r, why);
	}
	if (st->p->nrings == 0 && o->tid <= 0) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings "
			"(%s)\n"
			"loopwatch: hint: name the loop thread with --tid TID "
			"to watch its syscalls without rings\n",
			(int)o->pid,
			st->p->nskipped ? st->p->skipped_why : "none found");
		lw_rr_detach(st->p);
		free(st);
		return EXIT_USAGE;
	}

	st->bpf = open_probes(st);
	if (st->p->nrings == 0 && st->bpf == NULL) {
		fprintf(stderr,
			"loopwatch: cannot attach to PID %d: no loopwatch "
			"rings "
			"and no kernel probes: nothing to watch\n",
			(int)o->pid);
		lw_rr_detach(st->p);
		free(st);
		return EXIT_USAGE;
	}
	if (lw_sym_open(o->pid, &st->sym, why, sizeof(why)) < 0) {
		fprintf(stderr,
			"loopwatch: cannot read the symbols of PID %d: %s; "
			"stacks will be addresses\n",
			(int)o->pid, why);
		st->sym = NULL;
	}
	st->join = lw_join_new(JOIN_CAP);
	if (st->join == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	st->nloops = st->p->nrings;
	st->loops = xcalloc(st->nloops ? st->nloops : 1, sizeof(*st->loops));
	for (size_t i = 0; i < st->nloops; i++) {
		st->loops[i].ring = st->p->rings[i];
		lw_rr_cursor_init(st->loops[i].ring, &st->loops[i].cur, 0);
	}
	watch_new_threads(st);

	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	char comm[64] = "?";
	lw_proc_comm(o->pid, comm, sizeof(comm));
	fprintf(st->out,
		"attached to PID %d (%s): %zu loop%s, kernel probes %s, "
		"slow from %.1f ms\n",
		(int)o->pid, comm, st->nloops, st->nloops == 1 ? "" : "s",
		st->bpf ? "on" : "off", ms(o->min_ns));
	fflush(st->out);

	uint64_t t0 = now_ns(), next_alive = t0;
	int exited = 0;
	while (!stop_signal) {
		uint64_t now = now_ns();
		if (o->duration_ns && now - t0 >= o->duration_ns)
			break;
		if (now >= next_alive) {
			if (!lw_rr_proc_alive(st->p)) {
				exited = 1;
				break;
			}
			next_alive = now + 100000000;
			watch_new_threads(st);
		}
		if (st->bpf) {
			r = lw_bpf_poll(st->bpf, TICK_MS, on_event, st);
			if (r < 0 && r != -EINTR) {
				fprintf(stderr,
					"loopwatch: cannot read kernel events: "
					"%s\n",
					strerror(-r));
				rc = EXIT_USAGE;
				break;
			}
		} else {
			struct timespec ts = { 0, TICK_MS * 1000000L };
			nanosleep(&ts, NULL);
		}
		drain(st, 0);
		fflush(st->out);
	}
	/* Stop the probes first so that the last events are all in the
	 * ring buffer, then read everything once more. */
	if (st->bpf) {
		lw_bpf_detach(st->bpf);
		lw_bpf_poll(st->bpf, 0, on_event, st);
	}
	drain(st, 1);
	if (exited)
		fprintf(st->out, "loopwatch: process %d exited\n", (int)o->pid);
	print_summary(st);
	fflush(st->out);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	free(st->sites);
	free(st->loops);
	lw_join_free(st->join);
	lw_sym_close(st->sym);
	lw_bpf_free(st->bpf);
	lw_rr_detach(st->p);
	free(st);
	return rc;
}
