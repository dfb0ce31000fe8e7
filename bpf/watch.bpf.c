// SPDX-License-Identifier: GPL-2.0
/*
 * watch.bpf.c - what stalls the watched threads (the loop threads the agent
 * names): slow syscalls, fast calls that can block, off-CPU time outside the
 * wait, busy spans between two waits, and stack samples of long spans.
 *
 * The syscall and scheduler programs run for every thread on the machine,
 * so the first thing each does is test the thread's byte in `watch_filter`,
 * then look it up in `threads`; a thread that is not watched costs one
 * memory load (or, if it shares a filter slot with a watched one, one hash
 * lookup) and nothing more.  For a watched thread:
 *
 *  - sys_enter records the time, the number and the first arguments in its
 *    `threads` value; entering its wait ends the busy span in progress;
 *  - sys_exit counts the syscall in `syscalls`; leaving the wait starts a
 *    span; a call that can block is counted in `blocking` by stack; a call
 *    that took at least min_ns and was not the wait is sent through
 *    `events` with the user stack and its off-CPU time;
 *  - sched_switch times the thread off CPU outside its wait: inside a
 *    syscall the time is added to that syscall, outside one it is sent on
 *    its own (a page fault, a preemption) with the stack at the switch-out;
 *  - a cpu-clock perf event on each CPU samples the user stack while a
 *    span runs past min_ns: what a CPU-bound stall is doing;
 *  - a watched thread that execs, or exits, is forgotten there and then
 *    (sched_process_exec, sched_process_exit): after an exec it runs
 *    another program, and after an exit its tid may name a thread of
 *    another process; neither is the loop the agent watches, which learns
 *    of it later (agent/fate.h).
 *
 * The logic is in static inline functions with two kinds of entry points:
 * tp_btf/ programs that the agent attaches (no tracefs needed), and raw_tp/
 * programs with the same code that are loaded only for tests, because
 * BPF_PROG_TEST_RUN can run raw_tp programs but not tp_btf ones.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#ifdef __TARGET_ARCH_x86
/* Only the numbers: unistd_64.h is nothing but #defines. */
#include <asm/unistd_64.h>
#else
#error "syscall numbers: only x86-64 is supported so far"
#endif

#include "loopwatch_bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Tunables, set by the agent before load. */
/* Report syscalls that last this long or longer. */
const volatile __u64 min_ns = 10000000;

/* Written by the agent through the mapped .bss; see LW_BPF_FILTER_SIZE. */
__u8 watch_filter[LW_BPF_FILTER_SIZE];

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024); /* the agent may resize before load */
	__type(key, __u32); /* tid */
	__type(value, struct lw_bpf_thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LW_BPF_MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct lw_bpf_sysstat);
} syscalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lw_bpf_stats);
} stats SEC(".maps");

/* Fast calls that can block, counted by thread, syscall, fd kind and stack
 * (see struct lw_bpf_block_key). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LW_BPF_MAX_BLOCK_KEYS);
	__type(key, struct lw_bpf_block_key);
	__type(value, struct lw_bpf_block_val);
} blocking SEC(".maps");

/* The user stacks of the counted calls, by id. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, LW_BPF_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, LW_BPF_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* O_NONBLOCK of f_flags, and the futex operations that wait. */
#define LW_O_NONBLOCK 04000
#define LW_FUTEX_CMD_MASK 0x7f /* without PRIVATE (128), CLOCK_RT (256) */
#define LW_FUTEX_WAIT 0
#define LW_FUTEX_LOCK_PI 6
#define LW_FUTEX_WAIT_BITSET 9
#define LW_FUTEX_WAIT_REQUEUE_PI 11
#define LW_FUTEX_LOCK_PI2 13

/* File type bits of i_mode (vmlinux.h has no macros). */
#define LW_S_IFMT 0170000
#define LW_S_IFSOCK 0140000
#define LW_S_IFREG 0100000
#define LW_S_IFBLK 0060000
#define LW_S_IFDIR 0040000
#define LW_S_IFCHR 0020000
#define LW_S_IFIFO 0010000

static __always_inline struct lw_bpf_stats *stats_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

/* Whether syscall nr is the thread's wait for events, as its flags say. */
static __always_inline bool is_wait(__u32 nr, __u32 flags)
{
	switch (nr) {
	case __NR_epoll_wait:
	case __NR_epoll_pwait:
	case __NR_epoll_pwait2:
		return flags & LW_BPF_WAIT_EPOLL;
	case __NR_poll:
	case __NR_ppoll:
		return flags & LW_BPF_WAIT_POLL;
	case __NR_select:
	case __NR_pselect6:
		return flags & LW_BPF_WAIT_SELECT;
	case __NR_io_uring_enter:
		return flags & LW_BPF_WAIT_IO_URING;
	case __NR_restart_syscall:
		/* A poll or select with a timeout that a signal interrupted
		 * (a stop and continue, say) comes back as this: for a loop
		 * that waits in them, it is the wait. */
		return flags & (LW_BPF_WAIT_POLL | LW_BPF_WAIT_SELECT);
	}
	return false;
}

/* Whether the first argument of syscall nr is an fd worth classifying.
 * Only the calls where the fd says what may block are listed. */
static __always_inline bool has_fd_arg(__u32 nr)
{
	switch (nr) {
	case __NR_read:
	case __NR_write:
	case __NR_pread64:
	case __NR_pwrite64:
	case __NR_readv:
	case __NR_writev:
	case __NR_preadv:
	case __NR_pwritev:
	case __NR_preadv2:
	case __NR_pwritev2:
	case __NR_fsync:
	case __NR_fdatasync:
	case __NR_sync_file_range:
	case __NR_syncfs:
	case __NR_ftruncate:
	case __NR_fallocate:
	case __NR_flock:
	case __NR_fcntl:
	case __NR_ioctl:
	case __NR_lseek:
	case __NR_getdents64:
	case __NR_fstat:
	case __NR_close:
	case __NR_sendfile: /* out_fd */
	case __NR_splice: /* fd_in */
	case __NR_copy_file_range: /* fd_in */
	case __NR_connect:
	case __NR_accept:
	case __NR_accept4:
	case __NR_sendto:
	case __NR_recvfrom:
	case __NR_sendmsg:
	case __NR_recvmsg:
	case __NR_sendmmsg:
	case __NR_recvmmsg:
	case __NR_shutdown:
	case __NR_epoll_ctl:
		return true;
	}
	return false;
}

/* What fd refers to in the current task, read through CO-RE:
 * task->files->fdt->fd[fd]->f_inode->i_mode, and whether it is
 * nonblocking (f_flags).  LW_BPF_FD_UNKNOWN if it is not open. */
static __always_inline __u32 fd_info(int fd, __u32 *fd_flags)
{
	/* Trusted BTF pointers: each step is a plain load that the JIT
	 * guards, not a helper call. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt;
	struct file **fds;
	struct file *filp = NULL;
	umode_t mode;

	*fd_flags = 0;
	if (fd < 0 || !task->files)
		return LW_BPF_FD_UNKNOWN;
	fdt = task->files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return LW_BPF_FD_UNKNOWN;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&filp, sizeof(filp), &fds[fd]) || !filp)
		return LW_BPF_FD_UNKNOWN;
	if (BPF_CORE_READ(filp, f_flags) & LW_O_NONBLOCK)
		*fd_flags = LW_BPF_FDF_NONBLOCK;
	mode = BPF_CORE_READ(filp, f_inode, i_mode);
	switch (mode & LW_S_IFMT) {
	case LW_S_IFREG:
		return LW_BPF_FD_REG;
	case LW_S_IFSOCK:
		return LW_BPF_FD_SOCK;
	case LW_S_IFIFO:
		return LW_BPF_FD_FIFO;
	case LW_S_IFCHR:
		return LW_BPF_FD_CHR;
	case LW_S_IFDIR:
		return LW_BPF_FD_DIR;
	case LW_S_IFBLK:
		return LW_BPF_FD_BLK;
	}
	return LW_BPF_FD_OTHER;
}

/* The classes of calls that can block even when they were fast. */
enum block_class {
	BLOCK_NO, /* cannot block (or only in ways not counted) */
	BLOCK_ALWAYS, /* fsync and kin, sleeps, futex waits */
	BLOCK_IO, /* I/O: blocks on a file, or on a blocking fd */
	BLOCK_CONNECT, /* blocks unless the socket is nonblocking */
	BLOCK_ARGS, /* depends on the arguments: see block_by_args() */
};

static __always_inline enum block_class block_class(__u32 nr)
{
	switch (nr) {
	case __NR_fsync:
	case __NR_fdatasync:
	case __NR_sync_file_range:
	case __NR_syncfs:
	case __NR_sync:
	case __NR_msync:
	case __NR_nanosleep:
	case __NR_clock_nanosleep:
	case __NR_pause:
	case __NR_futex_waitv:
		return BLOCK_ALWAYS;
	case __NR_ppoll:
	case __NR_select:
	case __NR_pselect6:
	case __NR_epoll_wait:
	case __NR_epoll_pwait:
	case __NR_epoll_pwait2:
		/* Not the thread's wait (that never gets here): a nested
		 * wait, e.g. a resolver's, blocks the loop. */
		return BLOCK_ALWAYS;
	case __NR_poll:
	case __NR_futex:
		return BLOCK_ARGS;
	case __NR_read:
	case __NR_write:
	case __NR_pread64:
	case __NR_pwrite64:
	case __NR_readv:
	case __NR_writev:
	case __NR_preadv:
	case __NR_pwritev:
	case __NR_preadv2:
	case __NR_pwritev2:
	case __NR_sendfile:
	case __NR_splice:
	case __NR_copy_file_range:
	case __NR_fallocate:
	case __NR_ftruncate:
	case __NR_accept:
	case __NR_accept4:
	case __NR_sendto:
	case __NR_recvfrom:
	case __NR_sendmsg:
	case __NR_recvmsg:
	case __NR_sendmmsg:
	case __NR_recvmmsg:
		return BLOCK_IO;
	case __NR_connect:
		return BLOCK_CONNECT;
	}
	return BLOCK_NO;
}

/* The class of a BLOCK_ARGS call, from its first three arguments. */
static __always_inline enum block_class block_by_args(__u32 nr,
						      const __u64 *args)
{
	__u32 op;

	if (nr == __NR_poll)
		/* poll(fds, nfds, timeout): blocks unless timeout is 0. */
		return (int)args[2] != 0 ? BLOCK_ALWAYS : BLOCK_NO;
	/* futex(uaddr, op, ...): the operations that wait. */
	op = (__u32)args[1] & LW_FUTEX_CMD_MASK;
	return op == LW_FUTEX_WAIT || op == LW_FUTEX_LOCK_PI ||
			       op == LW_FUTEX_WAIT_BITSET ||
			       op == LW_FUTEX_WAIT_REQUEUE_PI ||
			       op == LW_FUTEX_LOCK_PI2
		       ? BLOCK_ALWAYS
		       : BLOCK_NO;
}

/* Whether a call of class c on an fd of this kind could have blocked. */
static __always_inline bool could_block(enum block_class c, __u32 kind,
					__u32 fd_flags)
{
	bool blocking_fd = !(fd_flags & LW_BPF_FDF_NONBLOCK);

	switch (c) {
	case BLOCK_ALWAYS:
		return true;
	case BLOCK_IO:
		/* Page cache misses and writeback block whatever the flags
		 * say; a socket, pipe or tty blocks unless nonblocking. */
		if (kind == LW_BPF_FD_REG || kind == LW_BPF_FD_BLK)
			return true;
		return blocking_fd &&
		       (kind == LW_BPF_FD_SOCK || kind == LW_BPF_FD_FIFO ||
			kind == LW_BPF_FD_CHR);
	case BLOCK_CONNECT:
		return kind == LW_BPF_FD_SOCK && blocking_fd;
	default:
		return false;
	}
}

/* Count one call that could block, by its stack. */
static __always_inline void count_blocking(void *ctx, struct lw_bpf_thread *t,
					   __u32 tid, __u32 nr, __u32 kind,
					   __u64 start, __u64 dur)
{
	struct lw_bpf_block_key k = { .tid = tid, .nr = nr, .fd_kind = kind };
	struct lw_bpf_block_val *v, nv;
	struct lw_bpf_stats *s;
	long id;

	id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	k.stack_id = (__s32)id;
	/* The callback running it, as the thread's ring says (a fault
	 * leaves 0: unknown). */
	if (t->cur_site_addr &&
	    bpf_probe_read_user(&k.site, sizeof(k.site),
				(const void *)t->cur_site_addr))
		k.site = 0;
	v = bpf_map_lookup_elem(&blocking, &k);
	if (v) {
		/* Only this thread writes its keys. */
		v->calls++;
		v->total_ns += dur;
		if (dur > v->max_ns)
			v->max_ns = dur;
		v->last_ns = start;
		return;
	}
	nv.calls = 1;
	nv.total_ns = dur;
	nv.max_ns = dur;
	nv.last_ns = start;
	if (bpf_map_update_elem(&blocking, &k, &nv, BPF_NOEXIST)) {
		s = stats_get();
		if (s)
			s->block_dropped++;
	}
}

/* Send the user registers and up to LW_BPF_USTACK_BYTES of user stack
 * memory of the current thread, for the event with this start time that
 * the caller sends next. */
/* The stack is copied in pieces of this size. */
#define LW_BPF_USTACK_PIECE 1024

static long vma_end(struct task_struct *task, struct vm_area_struct *vma,
		    void *data)
{
	*(__u64 *)data = vma->vm_end;
	return 0;
}

static __always_inline void send_ustack(struct lw_bpf_thread *t, __u64 pid_tgid,
					__u64 start)
{
	struct lw_bpf_ustack_event *u;
	struct pt_regs *regs;
	__u64 sp, end, len;

	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return;
	u = bpf_ringbuf_reserve(&events, sizeof(*u), 0);
	if (!u) {
		struct lw_bpf_stats *s = stats_get();
		if (s)
			s->lost++;
		return;
	}
	u->kind = LW_BPF_EV_USTACK;
	u->tid = (__u32)pid_tgid;
	u->pid = pid_tgid >> 32;
	u->pad = 0;
	u->start_ns = start;
	u->duration_ns = 0;
	u->ustack.regs.ip = BPF_CORE_READ(regs, ip);
	u->ustack.regs.sp = sp = BPF_CORE_READ(regs, sp);
	u->ustack.regs.bp = BPF_CORE_READ(regs, bp);
	u->ustack.regs.bx = BPF_CORE_READ(regs, bx);
	u->ustack.regs.r12 = BPF_CORE_READ(regs, r12);
	u->ustack.regs.r13 = BPF_CORE_READ(regs, r13);
	u->ustack.regs.r14 = BPF_CORE_READ(regs, r14);
	u->ustack.regs.r15 = BPF_CORE_READ(regs, r15);
	u->ustack.pad = 0;
	/* Up to the end of the stack's mapping: a read that crosses it
	 * fails whole, and a shallow stack (a main thread's) ends sooner
	 * than the copy's size. */
	end = t->stack_end;
	if (end <= sp) {
		/* Once per thread: bpf_find_vma only try-locks the mm and
		 * fails while another thread maps memory; the main thread's
		 * stack also ends above mm->start_stack. */
		end = 0;
		if (bpf_find_vma(bpf_get_current_task_btf(), sp, vma_end, &end,
				 0) == 0 &&
		    end > sp)
			t->stack_end = end;
		else
			end = BPF_CORE_READ(bpf_get_current_task_btf(), mm,
					    start_stack);
	}
	len = end > sp ? end - sp : 0;
	if (len > LW_BPF_USTACK_BYTES)
		len = LW_BPF_USTACK_BYTES;
	/* In pieces, stopping at the first that cannot be read: one read
	 * fails whole if any of its pages is not present. */
	u->ustack.bytes = 0;
#pragma unroll
	for (int k = 0; k < LW_BPF_USTACK_BYTES / LW_BPF_USTACK_PIECE; k++) {
		if ((__u64)(k + 1) * LW_BPF_USTACK_PIECE > len)
			break;
		if (bpf_probe_read_user(
			    u->ustack.data + k * LW_BPF_USTACK_PIECE,
			    LW_BPF_USTACK_PIECE,
			    (const void *)(sp + k * LW_BPF_USTACK_PIECE)))
			break;
		u->ustack.bytes = (k + 1) * LW_BPF_USTACK_PIECE;
	}
	if (!u->ustack.bytes && len &&
	    !bpf_probe_read_user(u->ustack.data,
				 len & (LW_BPF_USTACK_PIECE - 1),
				 (const void *)sp))
		u->ustack.bytes = len & (LW_BPF_USTACK_PIECE - 1);
	bpf_ringbuf_submit(u, BPF_RB_NO_WAKEUP);
}

/* The thread's busy span ends at now (it enters its wait): send it if it
 * is long and the agent asked for spans. */
static __always_inline void end_span(struct lw_bpf_thread *t, __u64 pid_tgid,
				     __u64 now)
{
	struct lw_bpf_span_event *e;
	struct lw_bpf_stats *s;
	__u64 start = t->span_start_ns;

	t->span_start_ns = 0;
	if (!start || now - start < min_ns || !(t->flags & LW_BPF_SPANS))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		s = stats_get();
		if (s)
			s->lost++;
		return;
	}
	e->kind = LW_BPF_EV_SPAN;
	e->tid = (__u32)pid_tgid;
	e->pid = pid_tgid >> 32;
	e->samples = t->span_samples;
	e->start_ns = start;
	e->duration_ns = now - start;
	e->off_cpu_ns = t->span_off_ns;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int on_enter(struct pt_regs *regs, long id)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct lw_bpf_thread *t;
	__u64 now;

	/* The one check every thread on the machine pays: a load. */
	if (!watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;

	now = bpf_ktime_get_ns();
	if (is_wait((__u32)id, t->flags))
		end_span(t, pid_tgid, now);
	t->nr = (__u32)id;
	t->sys_off_ns = 0;
	t->sys_preempt_ns = 0;
	/* The arguments are read at the exit, and only when needed: the
	 * registers that carry them are saved at entry and left alone. */
	t->start_ns = now;
	return 0;
}

static __always_inline int on_exit(void *ctx, struct pt_regs *regs, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct lw_bpf_syscall_event *e;
	struct lw_bpf_sysstat *st;
	struct lw_bpf_thread *t;
	struct lw_bpf_stats *s;
	enum block_class bc;
	__u32 nr, kind = LW_BPF_FD_NONE, fd_flags = 0;
	__u64 start, dur, now, args[3] = {};
	long orig_nr = -1;

	if (!watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;

	now = bpf_ktime_get_ns();
	start = t->start_ns;
	nr = t->nr;
	if (!start) {
		/* Watched since after this syscall began.  If it was the
		 * wait, the busy span still starts here. */
		s = stats_get();
		if (s)
			s->no_entry++;
		if (!bpf_probe_read_kernel(
			    &orig_nr, sizeof(orig_nr),
			    __builtin_preserve_access_index(&regs->orig_ax)) &&
		    orig_nr >= 0 && is_wait((__u32)orig_nr, t->flags)) {
			t->span_start_ns = now;
			t->span_off_ns = 0;
			t->span_samples = 0;
		}
		return 0;
	}
	t->start_ns = 0;
	dur = now - start;

	st = bpf_map_lookup_elem(&syscalls, &nr);
	if (st) {
		st->calls++;
		st->total_ns += dur;
	}
	if (is_wait(nr, t->flags)) {
		/* The loop wakes up: a busy span begins. */
		t->span_start_ns = now;
		t->span_off_ns = 0;
		t->span_samples = 0;
		return 0;
	}

	bc = block_class(nr);
	if (bc != BLOCK_NO || dur >= min_ns) {
		/* The registers saved at entry, through the task: a trusted
		 * pointer, plain loads (the tracepoint's own regs argument
		 * is one only for tp_btf, not for the raw_tp twins). */
		struct pt_regs *ur = (struct pt_regs *)bpf_task_pt_regs(
			bpf_get_current_task_btf());
		if (ur) {
			args[0] = ur->di;
			args[1] = ur->si;
			args[2] = ur->dx;
		} else {
			s = stats_get();
			if (s)
				s->arg_faults++;
		}
		if (bc == BLOCK_ARGS)
			bc = block_by_args(nr, args);
	}
	if (has_fd_arg(nr) && (bc != BLOCK_NO || dur >= min_ns))
		kind = fd_info((int)args[0], &fd_flags);
	if (could_block(bc, kind, fd_flags))
		count_blocking(ctx, t, tid, nr, kind, start, dur);
	if (dur < min_ns)
		return 0;

	send_ustack(t, pid_tgid, start);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		s = stats_get();
		if (s)
			s->lost++;
		return 0;
	}
	e->kind = LW_BPF_EV_SYSCALL;
	e->tid = tid;
	e->pid = pid_tgid >> 32;
	e->nr = nr;
	e->start_ns = start;
	e->duration_ns = dur;
	e->ret = ret;
	e->args[0] = args[0];
	e->args[1] = args[1];
	e->args[2] = args[2];
	if (has_fd_arg(nr)) {
		e->fd = (__s32)args[0];
		e->fd_kind = kind;
	} else {
		e->fd = -1;
		e->fd_kind = LW_BPF_FD_NONE;
	}
	e->fd_flags = fd_flags;
	e->off_cpu_ns = t->sys_off_ns;
	e->preempt_ns = t->sys_preempt_ns;
	e->stack_bytes = bpf_get_stack(ctx, e->stack, sizeof(e->stack),
				       BPF_F_USER_STACK);
	bpf_ringbuf_submit(e, 0);
	if (st)
		st->reported++;
	return 0;
}

/* The task_struct of kernels before 5.14, whose state had another name. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

/* Whether a task being switched out is still runnable: it did not go to
 * sleep, it was made to leave (preempted in the kernel, or at the return
 * to user space, which the tracepoint's preempt flag does not cover). */
static __always_inline bool still_runnable(struct task_struct *p)
{
	if (bpf_core_field_exists(p->__state))
		return BPF_CORE_READ(p, __state) == 0;
	return BPF_CORE_READ((struct task_struct___old *)p, state) == 0;
}

/*
 * A context switch: prev (the current task) leaves the CPU, next comes.
 * Time off CPU counts from a watched thread's switch-out to its switch-in,
 * unless it is sitting in its wait (idle by design).  In a syscall the
 * time goes to the syscall; outside one it is sent here, at the switch-in,
 * with the stack taken at the switch-out (the only moment the thread's
 * user stack can be read: it is then the current task).
 */
static __always_inline int on_switch(void *ctx, bool preempt,
				     struct task_struct *prev,
				     struct task_struct *next)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, ntid;
	struct lw_bpf_offcpu_event *e;
	struct lw_bpf_thread *t;
	struct lw_bpf_stats *s;
	struct pt_regs *regs;
	long orig_nr = -1;
	__u64 now = 0, d;

	if (watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)] &&
	    (t = bpf_map_lookup_elem(&threads, &tid))) {
		bool in_sys = t->start_ns != 0;

		if (!in_sys) {
			/* In a syscall whose entry we did not see (it began
			 * before the watch)?  The wait must not count. */
			regs = (struct pt_regs *)bpf_task_pt_regs(
				bpf_get_current_task_btf());
			if (regs)
				bpf_probe_read_kernel(
					&orig_nr, sizeof(orig_nr),
					__builtin_preserve_access_index(
						&regs->orig_ax));
		}
		if (!(in_sys ? is_wait(t->nr, t->flags)
			     : orig_nr >= 0 &&
				       is_wait((__u32)orig_nr, t->flags))) {
			now = bpf_ktime_get_ns();
			t->off_start_ns = now;
			t->off_flags = (preempt || still_runnable(prev)
						? LW_BPF_OFF_PREEMPTED
						: 0) |
				       (in_sys ? LW_BPF_OFF_IN_SYSCALL : 0);
			if (!in_sys)
				t->off_stack_bytes = bpf_get_stack(
					ctx, t->off_stack, sizeof(t->off_stack),
					BPF_F_USER_STACK);
			s = stats_get();
			if (s)
				s->switches++;
		}
	}

	ntid = BPF_CORE_READ(next, pid);
	if (!watch_filter[ntid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &ntid);
	if (!t || !t->off_start_ns)
		return 0;
	if (!now)
		now = bpf_ktime_get_ns();
	d = now - t->off_start_ns;
	t->off_start_ns = 0;
	if (t->span_start_ns)
		t->span_off_ns += d;
	if (t->off_flags & LW_BPF_OFF_IN_SYSCALL) {
		/* Still the same syscall: it cannot end while off CPU. */
		if (t->start_ns) {
			t->sys_off_ns += d;
			if (t->off_flags & LW_BPF_OFF_PREEMPTED)
				t->sys_preempt_ns += d;
		}
		return 0;
	}
	if (d < min_ns)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		s = stats_get();
		if (s)
			s->lost++;
		return 0;
	}
	e->kind = LW_BPF_EV_OFFCPU;
	e->tid = ntid;
	e->pid = BPF_CORE_READ(next, tgid);
	e->flags = t->off_flags;
	e->start_ns = now - d;
	e->duration_ns = d;
	e->stack_bytes = t->off_stack_bytes;
	e->pad = 0;
	if (bpf_probe_read_kernel(e->stack, sizeof(e->stack), t->off_stack))
		e->stack_bytes = -14; /* -EFAULT */
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* A cpu-clock sample that hit a watched thread: send its stack if its busy
 * span has run past min_ns (or the agent wants every sample). */
static __always_inline int on_sample(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct lw_bpf_sample_event *e;
	struct lw_bpf_thread *t;
	struct lw_bpf_stats *s;
	__u64 now, span;

	/* Every CPU's timer runs this: the same one-load filter. */
	if (!watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;
	s = stats_get();
	if (s)
		s->samples++;
	now = bpf_ktime_get_ns();
	span = t->span_start_ns;
	if (!(t->flags & LW_BPF_SAMPLE_ALWAYS) &&
	    (!span || now - span < min_ns))
		return 0;
	send_ustack(t, pid_tgid, now);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (s)
			s->lost++;
		return 0;
	}
	e->kind = LW_BPF_EV_SAMPLE;
	e->tid = tid;
	e->pid = pid_tgid >> 32;
	e->pad = 0;
	e->start_ns = now;
	e->duration_ns = 0;
	e->span_start_ns = span;
	e->pad2 = 0;
	e->stack_bytes = bpf_get_stack(ctx, e->stack, sizeof(e->stack),
				       BPF_F_USER_STACK);
	/* The agent reads on its own tick: no wake-up per sample. */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	t->span_samples++;
	return 0;
}

/* A thread that stops being the loop the agent watches (see the top). */
static __always_inline int forget(__u32 tid)
{
	if (watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		bpf_map_delete_elem(&threads, &tid);
	return 0;
}

/* Production: raw syscall tracepoints and the scheduler through BTF, and
 * the per-CPU perf events. */
SEC("tp_btf/sys_enter")
int BPF_PROG(lw_sys_enter, struct pt_regs *regs, long id)
{
	return on_enter(regs, id);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(lw_sys_exit, struct pt_regs *regs, long ret)
{
	return on_exit(ctx, regs, ret);
}

/* The first three arguments: 6.18 has a fourth (prev_state), older
 * kernels do not. */
SEC("tp_btf/sched_switch")
int BPF_PROG(lw_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	return on_switch(ctx, preempt, prev, next);
}

SEC("perf_event")
int lw_sample(struct bpf_perf_event_data *ctx)
{
	return on_sample(ctx);
}

/* A thread other than the leader that execs takes the leader's tid:
 * both go. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(lw_exec, struct task_struct *p, pid_t old_pid)
{
	forget((__u32)old_pid);
	return forget((__u32)p->pid);
}

/* The first argument: newer kernels add group_dead. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(lw_exit, struct task_struct *p)
{
	return forget((__u32)p->pid);
}

/* Tests: the same code as raw_tp programs, driven by BPF_PROG_TEST_RUN with
 * a u64 argument array { regs, id }, { regs, ret } or { preempt, prev,
 * next }.  The loader loads them only when asked and never attaches them. */
SEC("raw_tp/sys_enter")
int BPF_PROG(lw_test_enter, struct pt_regs *regs, long id)
{
	return on_enter(regs, id);
}

SEC("raw_tp/sys_exit")
int BPF_PROG(lw_test_exit, struct pt_regs *regs, long ret)
{
	return on_exit(ctx, regs, ret);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(lw_test_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	return on_switch(ctx, preempt, prev, next);
}

/* { tid }: what exec and exit do to a watched thread. */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(lw_test_forget, __u64 tid)
{
	return forget((__u32)tid);
}
