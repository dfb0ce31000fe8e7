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

/* Bytes of user stack memory copied per event, from the stack pointer up,
 * for the agent to unwind with DWARF call frame information when the frame
 * pointer walk is cut (code built without frame pointers: Debian's libc,
 * most distribution binaries). */
#define LW_BPF_USTACK_BYTES 16384

/* The user registers that unwinding starts from (x86-64): the
 * instruction and stack pointers, and the callee-saved registers that
 * call frame information may say a caller's value is still in. */
struct lw_bpf_regs {
	__u64 ip, sp, bp, bx, r12, r13, r14, r15;
};

/* A snapshot of a user stack for DWARF unwinding: the registers and
 * `bytes` bytes of memory from regs.sp (0 if it could not be read). */
struct lw_bpf_ustack {
	struct lw_bpf_regs regs;
	__u32 bytes;
	__u32 pad;
	__u8 data[LW_BPF_USTACK_BYTES];
};

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

/* lw_bpf_thread.flags, set by the agent beside the wait: */
/* Send a struct lw_bpf_span_event for every busy span (one iteration of
 * the loop, from the exit of one wait to the entry of the next) that lasts
 * min_ns or longer.  For loops without rings, whose callbacks are unknown. */
#define LW_BPF_SPANS 0x100u
/* Send every stack sample of the thread, not only those taken while a
 * span runs past min_ns (the agent sets it while a callback is stuck). */
#define LW_BPF_SAMPLE_ALWAYS 0x200u

/* lw_bpf_thread.off_flags: the thread's last switch-out. */
#define LW_BPF_OFF_PREEMPTED 0x1u /* involuntary: preempted while runnable */
#define LW_BPF_OFF_IN_SYSCALL 0x2u /* it happened inside a known syscall */

/*
 * The value of the `threads` map (key: __u32 tid).  The agent inserts one
 * entry per watched thread with `flags` set and every other field zero;
 * after that only the thread's own syscalls, its context switches and its
 * samples write the entry, in place (no map update on the hot path).  A
 * thread runs on one CPU at a time and each of these runs on that CPU with
 * the thread current (sched_switch: the switched-out thread is current; the
 * switched-in thread's fields touched there are written by no one else
 * while it is off CPU), so the fields need no atomics.
 */
struct lw_bpf_thread {
	__u32 flags; /* LW_BPF_WAIT_*, LW_BPF_SPANS, ...: set by the agent */
	__u32 nr; /* kernel: the syscall in progress (valid if start_ns) */
	/* Set by the agent: the address, in the thread's process, of the
	 * cur_site field of its loop's ring (struct lw_ring_header), 0 when
	 * it has none.  The thread itself writes that field, so at its own
	 * syscalls the value read is the callback running them. */
	__u64 cur_site_addr;
	__u64 start_ns; /* kernel: its entry time, 0 when none is known */
	/* Off-CPU time of the syscall in progress, and the part of it that
	 * was involuntary (preempted while runnable). */
	__u64 sys_off_ns;
	__u64 sys_preempt_ns;
	/* The busy span in progress: the exit time of the last wait, 0 while
	 * the thread is in its wait or before its first wait ends. */
	__u64 span_start_ns;
	__u64 span_off_ns; /* off-CPU time within the span so far */
	/* kernel: the end of the thread's stack mapping, found once (the
	 * stack copies of struct lw_bpf_ustack stop there); 0 until found. */
	__u64 stack_end;
	__u32 span_samples; /* samples sent within the span so far */
	__u32 off_flags; /* LW_BPF_OFF_*: the last switch-out */
	/* The last switch-out outside the wait, 0 while on CPU or idle. */
	__u64 off_start_ns;
	/* The user stack at that switch-out when it was outside any syscall
	 * (inside one the syscall's event carries the stack): bytes filled
	 * or a negative errno, and the frames. */
	__s32 off_stack_bytes;
	__u32 pad;
	__u64 off_stack[LW_BPF_STACK_DEPTH];
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

/*
 * Every ring buffer record starts with the same six fields (the struct
 * lw_bpf_event_head layout): what it is, whose, and when.  The agent reads
 * the head, checks the size against the kind, then the rest.
 */
#define LW_BPF_EV_SYSCALL 1 /* struct lw_bpf_syscall_event */
#define LW_BPF_EV_OFFCPU 2 /* struct lw_bpf_offcpu_event */
#define LW_BPF_EV_SPAN 3 /* struct lw_bpf_span_event */
#define LW_BPF_EV_SAMPLE 4 /* struct lw_bpf_sample_event */
#define LW_BPF_EV_USTACK 5 /* struct lw_bpf_ustack_event */

struct lw_bpf_event_head {
	__u32 kind; /* LW_BPF_EV_* */
	__u32 tid; /* the thread (initial pid namespace) */
	__u32 pid; /* its process (thread group id) */
	__u32 aux; /* per kind: the syscall number, flags, ... */
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 duration_ns; /* 0 for an instant (a sample) */
};

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
	__u32 fd_flags; /* LW_BPF_FDF_* */
	/* Of duration_ns, the time the thread was off CPU, and the part of
	 * that which was involuntary (preempted while runnable); the rest of
	 * the off-CPU time it slept (waited for I/O, a lock, a timer). */
	__u64 off_cpu_ns;
	__u64 preempt_ns;
	/* User return addresses, innermost first. */
	__u64 stack[LW_BPF_STACK_DEPTH];
};

/* lw_bpf_syscall_event.fd_flags */
#define LW_BPF_FDF_NONBLOCK 0x1u /* the fd had O_NONBLOCK */

/*
 * Off-CPU time of a watched thread outside its wait and outside any known
 * syscall (inside a syscall it is counted in that syscall's event): a page
 * fault that waited for I/O, or a preemption while it ran user code.  Sent
 * when the thread is switched back in, if it was away min_ns or longer.
 * The stack is the thread's at the switch-out.
 */
struct lw_bpf_offcpu_event {
	__u32 kind; /* LW_BPF_EV_OFFCPU */
	__u32 tid;
	__u32 pid;
	__u32 flags; /* LW_BPF_OFF_* */
	__u64 start_ns; /* the switch-out */
	__u64 duration_ns; /* until the switch-in */
	__s32 stack_bytes; /* as in lw_bpf_syscall_event */
	__u32 pad;
	__u64 stack[LW_BPF_STACK_DEPTH];
};

/*
 * A busy span of a thread with LW_BPF_SPANS: from the exit of its wait to
 * the entry of the next, at least min_ns.  For a loop without rings it is
 * the one iteration that held the loop up; the slow syscalls, off-CPU
 * events and samples within [start_ns, start_ns + duration_ns] on the same
 * thread say why.  Sent at the entry of the next wait.
 */
struct lw_bpf_span_event {
	__u32 kind; /* LW_BPF_EV_SPAN */
	__u32 tid;
	__u32 pid;
	__u32 samples; /* stack samples sent within the span */
	__u64 start_ns; /* the exit of the previous wait */
	__u64 duration_ns; /* until the entry of the next */
	__u64 off_cpu_ns; /* of which off CPU */
};

/*
 * A user stack of a watched thread sampled on CPU (a per-CPU cpu-clock
 * perf event), sent while the thread's busy span has run min_ns or longer
 * (or always, with LW_BPF_SAMPLE_ALWAYS): what a CPU-bound stall is doing.
 */
struct lw_bpf_sample_event {
	__u32 kind; /* LW_BPF_EV_SAMPLE */
	__u32 tid;
	__u32 pid;
	__u32 pad;
	__u64 start_ns; /* when the sample was taken */
	__u64 duration_ns; /* 0 */
	__u64 span_start_ns; /* the span it belongs to, 0 if none */
	__s32 stack_bytes; /* as in lw_bpf_syscall_event */
	__u32 pad2;
	__u64 stack[LW_BPF_STACK_DEPTH];
};

/*
 * The stack memory of the event that follows it in the ring buffer (a
 * syscall or a sample of the same thread with the same start_ns), for
 * DWARF unwinding when the frame pointer walk is cut.  Sent right before
 * that event by the same program, so the agent keeps the last one per
 * thread and pairs it with the next event.
 */
struct lw_bpf_ustack_event {
	__u32 kind; /* LW_BPF_EV_USTACK */
	__u32 tid;
	__u32 pid;
	__u32 pad;
	__u64 start_ns; /* the start_ns of the event it belongs to */
	__u64 duration_ns; /* 0 */
	struct lw_bpf_ustack ustack;
};

/*
 * The `blocking` hash: calls that can block (I/O on a regular file or a
 * block device, I/O on a blocking socket, pipe or tty, fsync and kin,
 * sleeps, a blocking connect, futex waits), counted on the watched threads
 * even when they were fast, per thread, syscall, fd kind and user stack.
 * Counted here rather than sent: one hash update per call.  The agent reads
 * it, looks the stack up in the `stacks` stack-trace map, and attributes
 * the counts to the site whose function is on the stack.
 */
struct lw_bpf_block_key {
	__u32 tid;
	__u32 nr; /* syscall number */
	__u32 fd_kind; /* LW_BPF_FD_* */
	/* The user stack's id in `stacks`, or a negative errno when it could
	 * not be stored (-EEXIST: another stack has the slot). */
	__s32 stack_id;
	/* The ring's site running the call (cur_site of the thread's ring),
	 * 0 when between callbacks or without a ring. */
	__u32 site;
	__u32 pad; /* zero */
};

struct lw_bpf_block_val {
	__u64 calls;
	__u64 total_ns;
	__u64 max_ns;
	__u64 last_ns; /* the last call's entry time */
};

/* The `syscalls` per-CPU array, indexed by syscall number: what watched
 * threads did, summed over all of them (sum the CPUs in user space). */
struct lw_bpf_sysstat {
	__u64 calls; /* completed syscalls with a known entry */
	__u64 total_ns; /* their summed duration */
	__u64 reported; /* how many were sent as events */
};

/* The size of the `stacks` stack-trace map: distinct stacks of counted
 * blocking calls. */
#define LW_BPF_MAX_STACKS 4096
/* The size of the `blocking` hash. */
#define LW_BPF_MAX_BLOCK_KEYS 4096

/* The `stats` per-CPU array (one entry, key 0): health counters. */
struct lw_bpf_stats {
	__u64 lost; /* events dropped: the ring buffer was full */
	__u64 no_entry; /* exits on a watched thread without a known entry,
			 * e.g. a wait already in progress when it was added */
	__u64 arg_faults; /* entries whose arguments could not be read */
	__u64 block_dropped; /* blocking calls not counted: `blocking` full */
	__u64 switches; /* switch-outs of watched threads outside the wait */
	__u64 samples; /* samples taken on watched threads (sent or not) */
};

#endif /* LW_BPF_LOOPWATCH_H */
