/*
 * loopwatch_bpf.h - the structs and constants that the kernel programs in bpf/
 * and the agent share.  Plain __u32/__u64 fields, no pointers, no padding
 * the compiler could place differently on the two sides: the same bytes are
 * written by BPF code and read by the agent through maps and the ring
 * buffer.
 *
 * In BPF code include it after vmlinux.h; in user space after
 * <linux/types.h> (it includes that itself when vmlinux.h is absent).
 *
 * Times are bpf_ktime_get_ns(), which is CLOCK_MONOTONIC: the same clock as
 * the timestamps in the probe's rings, so a syscall and a callback can be
 * joined by time.  Thread and process ids are those of the initial pid
 * namespace (what bpf_get_current_pid_tgid() returns).
 */
#ifndef LW_BPF_LOOPWATCH_H
#define LW_BPF_LOOPWATCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* The user stack kept per event, in frames (return addresses).  64 frames
 * are 512 bytes; a deeper stack is cut at its outermost frames. */
#define LW_BPF_STACK_DEPTH 64

/* Syscall numbers below this are counted per syscall (x86-64 has ~460). */
#define LW_BPF_MAX_SYSCALLS 512

/* The size of the `watch_filter` global of the programs (.bss, mapped by
 * the agent): byte tid % LW_BPF_FILTER_SIZE is nonzero when some watched
 * thread's tid falls in that slot.  The programs test it before the
 * `threads` lookup, so a thread that is not watched costs one memory load
 * instead of a hash lookup; a slot shared with a watched tid only costs
 * the lookup, which then misses.  A power of two. */
#define LW_BPF_FILTER_SIZE 8192

/* lw_bpf_thread.flags: which syscalls are this thread's own wait for
 * events.  The wait is where an idle loop sits by design; it is never
 * reported as a slow syscall.  The agent sets the flag for the wait the
 * thread uses (an epoll loop: LW_BPF_WAIT_EPOLL). */
#define LW_BPF_WAIT_EPOLL 0x1u /* epoll_wait, epoll_pwait, epoll_pwait2 */
#define LW_BPF_WAIT_POLL 0x2u /* poll, ppoll */
#define LW_BPF_WAIT_SELECT 0x4u /* select, pselect6 */
#define LW_BPF_WAIT_IO_URING 0x8u /* io_uring_enter */

/*
 * The value of the `threads` map (key: __u32 tid).  The agent inserts one
 * entry per watched thread with `flags` set and every other field zero;
 * after that only the thread's own syscalls write the entry, in place (no
 * map update on the hot path), and a thread runs on one CPU at a time, so
 * the fields need no atomics.
 */
struct lw_bpf_thread {
	__u32 flags; /* LW_BPF_WAIT_*: set by the agent, read by BPF */
	__u32 nr; /* kernel: the syscall in progress (valid if start_ns) */
	__u64 start_ns; /* kernel: its entry time, 0 when none is known */
	__u64 args[3]; /* kernel: its first three arguments, 0 if unread */
};

/* lw_bpf_syscall_event.fd_kind: what the fd argument refers to, from the
 * inode's type bits (task->files->fdt->fd[fd]->f_inode->i_mode). */
#define LW_BPF_FD_NONE 0 /* the syscall takes no fd argument */
#define LW_BPF_FD_REG 1 /* a regular file */
#define LW_BPF_FD_SOCK 2 /* a socket */
#define LW_BPF_FD_FIFO 3 /* a pipe or FIFO */
#define LW_BPF_FD_CHR 4 /* a character device (tty, /dev/null) */
#define LW_BPF_FD_DIR 5 /* a directory */
#define LW_BPF_FD_BLK 6 /* a block device */
#define LW_BPF_FD_OTHER 7 /* anything else: eventfd, epoll, timerfd, ... */
/* The fd was no longer open at exit (close), or could not be read. */
#define LW_BPF_FD_UNKNOWN 8

/* lw_bpf_syscall_event.kind: the first field of every ring buffer record
 * says what it is, so later record types can share the one ring. */
#define LW_BPF_EV_SYSCALL 1

/*
 * One slow syscall on a watched thread: its duration reached the min_ns
 * tunable and it was not the thread's wait.  Sent through the `events` ring
 * buffer at the syscall's exit.
 */
struct lw_bpf_syscall_event {
	__u32 kind; /* LW_BPF_EV_SYSCALL */
	__u32 tid; /* the thread (initial pid namespace) */
	__u32 pid; /* its process (thread group id) */
	__u32 nr; /* the syscall number (x86-64 numbering) */
	__u64 start_ns; /* entry time, CLOCK_MONOTONIC */
	__u64 duration_ns; /* exit time minus start_ns */
	__s64 ret; /* the return value: >= 0, or a negative errno */
	__u64 args[3]; /* the first three arguments as the entry saw them */
	__s32 fd; /* the fd argument, -1 if the syscall has none */
	__u32 fd_kind; /* LW_BPF_FD_* */
	/* Bytes of `stack` filled by bpf_get_stack() (a multiple of 8), or a
	 * negative errno if the stack could not be read. */
	__s32 stack_bytes;
	__u32 pad; /* zero */
	/* User return addresses, innermost first. */
	__u64 stack[LW_BPF_STACK_DEPTH];
};

/* The `syscalls` per-CPU array, indexed by syscall number: what watched
 * threads did, summed over all of them (sum the CPUs in user space). */
struct lw_bpf_sysstat {
	__u64 calls; /* completed syscalls with a known entry */
	__u64 total_ns; /* their summed duration */
	__u64 reported; /* how many were sent as events */
};

/* The `stats` per-CPU array (one entry, key 0): health counters. */
struct lw_bpf_stats {
	__u64 lost; /* events dropped: the ring buffer was full */
	__u64 no_entry; /* exits on a watched thread without a known entry,
			 * e.g. a wait already in progress when it was added */
	__u64 arg_faults; /* entries whose arguments could not be read */
};

#endif /* LW_BPF_LOOPWATCH_H */
