/*
 * kevent.c - kernel events in words (see kevent.h).
 */
#include "kevent.h"
#include "text.h"

#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

const char *lw_kev_syscall_name(uint32_t nr)
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

const char *lw_kev_syscall_label(uint32_t nr, char *buf, size_t len)
{
	const char *n = lw_kev_syscall_name(nr);

	if (n != NULL)
		return n;
	snprintf(buf, len, "syscall %" PRIu32, nr);
	return buf;
}

const char *lw_kev_fd_kind_name(uint32_t k)
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

void lw_kev_format_call(const lw_join_event_t *e, char *buf, size_t len)
{
	const struct lw_bpf_syscall_event *ev = &e->u.sys;
	char nbuf[32];
	const char *name = lw_kev_syscall_label(ev->nr, nbuf, sizeof(nbuf));

	if (ev->fd < 0)
		snprintf(buf, len, "%s()", name);
	else if (e->fd_path[0] == '/')
		snprintf(buf, len, "%s(fd %d -> %s %s)", name, (int)ev->fd,
			 lw_kev_fd_kind_name(ev->fd_kind), e->fd_path);
	else if (e->fd_path[0] != '\0')
		snprintf(buf, len, "%s(fd %d -> %s)", name, (int)ev->fd,
			 e->fd_path);
	else
		snprintf(buf, len, "%s(fd %d -> %s)", name, (int)ev->fd,
			 lw_kev_fd_kind_name(ev->fd_kind));
	if (ev->ret < 0) {
		size_t l = strlen(buf);
		const char *en = strerrorname_np((int)-ev->ret);

		snprintf(buf + l, len - l, " = -%s", en ? en : "?");
	}
}

/* Look addr up, re-reading the maps once if it is unknown (a library
 * loaded since attach), at most every 100 ms: a refresh costs a parse of
 * /proc/PID/maps. */
static int lookup(lw_kev_sym_t *ks, uint64_t addr, int is_return,
		  lw_sym_frame_t *f)
{
	int r = lw_sym_lookup(ks->sym, addr, is_return, f);
	uint64_t now;

	if (r != 0 && (f->flags & LW_SYM_UNKNOWN) && !ks->gone) {
		now = lw_now_ns();
		if (now - ks->last_refresh_ns > 100000000) {
			ks->last_refresh_ns = now;
			if (lw_sym_refresh(ks->sym) == 0)
				r = lw_sym_lookup(ks->sym, addr, is_return, f);
		}
	}
	return r;
}

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

char *lw_kev_format_stack(lw_kev_sym_t *ks, const __u64 *stack, int stack_bytes)
{
	size_t cap = 4096, len = 0;
	char *s = calloc(1, cap);

	if (s == NULL)
		return NULL;
	if (stack_bytes < 0) {
		snprintf(s, cap, "  (no user stack: %s)\n",
			 strerror(-stack_bytes));
		return s;
	}
	size_t n = (size_t)stack_bytes / 8;
	if (n > LW_BPF_STACK_DEPTH)
		n = LW_BPF_STACK_DEPTH;
	int whole = ks->sym == NULL; /* unknown without names: say nothing */
	for (size_t i = 0; i < n && len + 1 < cap; i++) {
		char line[600];
		lw_sym_frame_t f;

		if (ks->sym == NULL) {
			snprintf(line, sizeof(line), "0x%" PRIx64,
				 (uint64_t)stack[i]);
		} else {
			lookup(ks, (uint64_t)stack[i], i > 0, &f);
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

/* Modules whose frames are plumbing, not the caller a person looks for. */
static int is_plumbing(const char *module)
{
	return strncmp(module, "libc.so", 7) == 0 ||
	       strncmp(module, "ld-linux", 8) == 0 ||
	       strncmp(module, "libpthread", 10) == 0 ||
	       strcmp(module, "[vdso]") == 0;
}

void lw_kev_caller(lw_kev_sym_t *ks, const __u64 *stack, size_t n, char *buf,
		   size_t len)
{
	lw_sym_frame_t f;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (ks->sym == NULL) {
			snprintf(buf, len, "0x%" PRIx64, (uint64_t)stack[i]);
			return;
		}
		lookup(ks, (uint64_t)stack[i], i > 0, &f);
		/* Plumbing, or not an address of any module: a frame
		 * pointer walk that went astray. */
		if (is_plumbing(f.module) || !(f.flags & LW_SYM_MODULE))
			continue;
		if (f.flags & LW_SYM_FUNC)
			snprintf(buf, len, "%s", f.func);
		else
			snprintf(buf, len, "%s+0x%" PRIx64, f.module,
				 f.module_off);
		return;
	}
}

/* Keep a snapshot for the next event of its thread. */
static void keep_ustack(lw_kev_sym_t *ks, const struct lw_bpf_ustack_event *u)
{
	struct lw_kev_pending *p = NULL;

	for (size_t i = 0; i < LW_KEV_PENDING; i++)
		if (ks->pending[i].tid == u->tid)
			p = &ks->pending[i];
	if (p == NULL) {
		p = &ks->pending[ks->next_slot];
		ks->next_slot = (ks->next_slot + 1) % LW_KEV_PENDING;
	}
	p->valid = 1;
	p->tid = u->tid;
	p->start_ns = u->start_ns;
	p->u = u->ustack;
}

/* Replace the frame-pointer stack of an event by the DWARF unwinding of
 * its snapshot, when there is one and it goes at least as deep. */
static void unwind(lw_kev_sym_t *ks, uint32_t tid, uint64_t start, __u64 *stack,
		   __s32 *stack_bytes)
{
	uint64_t frames[LW_BPF_STACK_DEPTH];
	struct lw_kev_pending *p = NULL;
	int n;

	for (size_t i = 0; i < LW_KEV_PENDING; i++)
		if (ks->pending[i].valid && ks->pending[i].tid == tid &&
		    ks->pending[i].start_ns == start)
			p = &ks->pending[i];
	if (p == NULL || ks->uw == NULL)
		return;
	p->valid = 0;
	size_t bytes = p->u.bytes;
	if (bytes > sizeof(p->u.data))
		bytes = sizeof(p->u.data);
	n = lw_unwind_stack(ks->uw, (pid_t)tid, &p->u.regs, p->u.data, bytes,
			    frames, LW_BPF_STACK_DEPTH);
	if (n <= 0 || (*stack_bytes > 0 && n < *stack_bytes / 8))
		return;
	for (int i = 0; i < n; i++)
		stack[i] = frames[i];
	*stack_bytes = n * 8;
	ks->unwound++;
}

int lw_kev_from_raw(pid_t pid, lw_kev_sym_t *ks,
		    const struct lw_bpf_event_head *ev, size_t size,
		    lw_join_event_t *out)
{
	size_t want;

	if (ev->kind == LW_BPF_EV_USTACK) {
		if (size >= sizeof(struct lw_bpf_ustack_event))
			keep_ustack(ks, (const struct lw_bpf_ustack_event *)ev);
		return -EAGAIN;
	}

	memset(out, 0, sizeof(*out));
	switch (ev->kind) {
	case LW_BPF_EV_SYSCALL:
		want = sizeof(out->u.sys);
		break;
	case LW_BPF_EV_OFFCPU:
		want = sizeof(out->u.off);
		break;
	case LW_BPF_EV_SAMPLE:
		want = sizeof(out->u.smp);
		break;
	default:
		return -EINVAL;
	}
	if (size < want)
		return -EINVAL;
	out->h = *ev;
	memcpy(&out->u, ev, want);

	if (ev->kind == LW_BPF_EV_SYSCALL && out->u.sys.fd >= 0 && !ks->gone) {
		/* Best effort: the fd may be closed or reused by now. */
		char link[64];
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid,
			 (int)out->u.sys.fd);
		ssize_t n =
			readlink(link, out->fd_path, sizeof(out->fd_path) - 1);
		out->fd_path[n > 0 ? n : 0] = '\0';
		lw_text_clean(out->fd_path); /* the target names its files */
		/* Keep a path only if it is of the kind the kernel saw (a
		 * regular file or a directory has a path; a socket or pipe
		 * a "type:[inode]"): otherwise the fd was reused. */
		uint32_t k = out->u.sys.fd_kind;
		int is_path = out->fd_path[0] == '/';
		int wants_path = k == LW_BPF_FD_REG || k == LW_BPF_FD_DIR ||
				 k == LW_BPF_FD_BLK || k == LW_BPF_FD_CHR;
		if (is_path != wants_path)
			out->fd_path[0] = '\0';
	}
	if (ev->kind == LW_BPF_EV_SYSCALL)
		unwind(ks, ev->tid, ev->start_ns, out->u.sys.stack,
		       &out->u.sys.stack_bytes);
	else if (ev->kind == LW_BPF_EV_SAMPLE)
		unwind(ks, ev->tid, ev->start_ns, out->u.smp.stack,
		       &out->u.smp.stack_bytes);
	switch (ev->kind) {
	case LW_BPF_EV_SYSCALL:
		out->stack = lw_kev_format_stack(ks, out->u.sys.stack,
						 out->u.sys.stack_bytes);
		break;
	case LW_BPF_EV_OFFCPU:
		out->stack = lw_kev_format_stack(ks, out->u.off.stack,
						 out->u.off.stack_bytes);
		break;
	default:
		out->stack = lw_kev_format_stack(ks, out->u.smp.stack,
						 out->u.smp.stack_bytes);
		break;
	}
	return 0;
}
