// SPDX-License-Identifier: GPL-2.0
/*
 * syscalls.bpf.c - slow syscalls on the watched threads.
 *
 * Runs on every syscall entry and exit of every thread on the machine, so
 * the first thing each program does is test the thread's byte in
 * `watch_filter`, then look it up in `threads`; a thread that is not
 * watched costs one memory load (or, if it shares a filter slot with a
 * watched one, one hash lookup) and nothing more.  A watched thread's
 * entry records the time, the number and the first arguments in its
 * `threads` value; its exit counts the syscall in `syscalls` and, if it took
 * at least min_ns and was not the thread's own wait, sends a
 * struct lw_bpf_syscall_event with the user stack through `events`.
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
 * task->files->fdt->fd[fd]->f_inode->i_mode. */
static __always_inline __u32 fd_kind(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file **fds;
	struct file *filp = NULL;
	unsigned int max_fds;
	umode_t mode;

	if (fd < 0)
		return LW_BPF_FD_UNKNOWN;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return LW_BPF_FD_UNKNOWN;
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return LW_BPF_FD_UNKNOWN;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&filp, sizeof(filp), &fds[fd]) || !filp)
		return LW_BPF_FD_UNKNOWN;
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

static __always_inline int on_enter(struct pt_regs *regs, long id)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct lw_bpf_thread *t;
	struct lw_bpf_stats *s;

	/* The one check every thread on the machine pays: a load. */
	if (!watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;

	t->nr = (__u32)id;
	/* Each read is one probe; a failure (e.g. a test run, whose regs
	 * pointer is not kernel memory) leaves zeros and is counted. */
	if (bpf_probe_read_kernel(&t->args[0], sizeof(t->args[0]),
				  __builtin_preserve_access_index(&regs->di)) ||
	    bpf_probe_read_kernel(&t->args[1], sizeof(t->args[1]),
				  __builtin_preserve_access_index(&regs->si)) ||
	    bpf_probe_read_kernel(&t->args[2], sizeof(t->args[2]),
				  __builtin_preserve_access_index(&regs->dx))) {
		t->args[0] = t->args[1] = t->args[2] = 0;
		s = stats_get();
		if (s)
			s->arg_faults++;
	}
	/* Last, so an exit never sees a start time with stale arguments. */
	t->start_ns = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int on_exit(void *ctx, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct lw_bpf_syscall_event *e;
	struct lw_bpf_sysstat *st;
	struct lw_bpf_thread *t;
	struct lw_bpf_stats *s;
	__u64 start, dur;
	__u32 nr;

	if (!watch_filter[tid & (LW_BPF_FILTER_SIZE - 1)])
		return 0;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return 0;

	start = t->start_ns;
	nr = t->nr;
	if (!start) {
		/* Watched since after this syscall began. */
		s = stats_get();
		if (s)
			s->no_entry++;
		return 0;
	}
	t->start_ns = 0;
	dur = bpf_ktime_get_ns() - start;

	st = bpf_map_lookup_elem(&syscalls, &nr);
	if (st) {
		st->calls++;
		st->total_ns += dur;
	}
	if (dur < min_ns || is_wait(nr, t->flags))
		return 0;

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
	e->args[0] = t->args[0];
	e->args[1] = t->args[1];
	e->args[2] = t->args[2];
	if (has_fd_arg(nr)) {
		e->fd = (__s32)t->args[0];
		e->fd_kind = fd_kind(e->fd);
	} else {
		e->fd = -1;
		e->fd_kind = LW_BPF_FD_NONE;
	}
	e->pad = 0;
	e->stack_bytes = bpf_get_stack(ctx, e->stack, sizeof(e->stack),
				       BPF_F_USER_STACK);
	bpf_ringbuf_submit(e, 0);
	if (st)
		st->reported++;
	return 0;
}

/* Production: raw syscall tracepoints through BTF. */
SEC("tp_btf/sys_enter")
int BPF_PROG(lw_sys_enter, struct pt_regs *regs, long id)
{
	return on_enter(regs, id);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(lw_sys_exit, struct pt_regs *regs, long ret)
{
	return on_exit(ctx, ret);
}

/* Tests: the same code as raw_tp programs, driven by BPF_PROG_TEST_RUN with
 * a u64 argument array { regs, id } or { regs, ret }.  The loader loads
 * them only when asked and never attaches them. */
SEC("raw_tp/sys_enter")
int BPF_PROG(lw_test_enter, struct pt_regs *regs, long id)
{
	return on_enter(regs, id);
}

SEC("raw_tp/sys_exit")
int BPF_PROG(lw_test_exit, struct pt_regs *regs, long ret)
{
	return on_exit(ctx, ret);
}
