/*
 * bpf_snap.h - a snapshot of one thread's user registers and user stack
 * memory, taken on demand while the thread sleeps, without stopping it (no
 * ptrace): the kernel program bpf/snap.bpf.c is a sleepable BPF task
 * iterator that visits that one thread, reads the registers its entry
 * into the kernel saved (bpf_task_pt_regs) and copies its stack
 * (bpf_copy_from_user_task).  The agent unwinds the result with
 * lw_unwind_stack (unwind.h), as it does the stacks that the syscall and
 * sampling probes send.
 *
 * Why: a callback stuck in a syscall (usleep, fsync, a blocking read) sends
 * nothing until the syscall returns, and the sampler sees only threads on
 * a CPU; a snapshot names where it is stuck while it still is.
 *
 *   lw_snap_t *s;
 *   struct lw_bpf_ustack *us = malloc(sizeof(*us));
 *   long nr;
 *   if (lw_snap_open(&s, why, sizeof(why)) == 0 &&
 *       lw_snap_take(s, tid, us, &nr, why, sizeof(why)) == 0)
 *           n = lw_unwind_stack(u, tid, &us->regs, us->data, us->bytes, ...);
 *   lw_snap_close(s);
 *
 * Nothing stays attached between snapshots: each one creates the iterator
 * link, reads it and closes it.  The program and its map are file
 * descriptors of this process, so they go when it dies, even by SIGKILL.
 * One lw_snap_t is used by one thread at a time.
 *
 * The first part of this header is the record that the program writes;
 * bpf/snap.bpf.c includes it after vmlinux.h.
 */
#ifndef LW_BPF_SNAP_H
#define LW_BPF_SNAP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* By path: only the BPF users are built with -Ibpf. */
#include "../bpf/loopwatch_bpf.h"

/* lw_snap_rec.flags */
/* The thread was on a CPU when the snapshot began or ended: its saved
 * registers are those of its last entry into the kernel, which says
 * nothing of where it runs now (user mode), and its stack moved under the
 * copy. */
#define LW_SNAP_ON_CPU 0x1u
/* It was switched in and out while the copy ran (its context switch counts
 * changed): the registers and the stack may be from two moments. */
#define LW_SNAP_MOVED 0x2u
/* The saved registers are a syscall's entry frame: orig_ax is a syscall
 * number (>= 0), cx holds the return address as the syscall instruction
 * leaves it, and the two bytes before ip are that instruction (0f 05).
 * Without it the thread was stopped by an interrupt (preempted in user
 * mode) or an exception (a page fault). */
#define LW_SNAP_SYSCALL 0x4u
/* A kernel thread, or a thread whose process is exiting: no user stack. */
#define LW_SNAP_NO_MM 0x8u

/* The one record the iterator writes for the thread. */
struct lw_snap_rec {
	__u32 tid; /* as the iterator saw it: initial pid namespace */
	__u32 pid; /* its thread group */
	__u32 flags; /* LW_SNAP_* */
	__u32 state; /* task->__state at the start: 0 running, 1 interruptible
		      * sleep, 2 uninterruptible, ... */
	__s64 orig_ax; /* the syscall number, or what an interrupt left */
	/* The first stack copy's error (a negative errno), 0 if none. */
	__s32 copy_err;
	__u32 pad;
	__u64 ktime_ns; /* when it was taken, CLOCK_MONOTONIC */
	struct lw_bpf_ustack us;
};

#ifndef __VMLINUX_H__

#include <stddef.h>
#include <sys/types.h>

typedef struct lw_snap lw_snap_t;

/* Load the program (once: a snapshot then costs a link, a read and a
 * close).  0, or a negative errno with a one-line reason and a hint in
 * why: -EPERM (needs root or CAP_BPF+CAP_PERFMON), -ENOENT (no kernel BTF),
 * -EINVAL (the kernel refused the program, e.g. before 6.1 which cannot
 * iterate a single thread), -ENOMEM. */
int lw_snap_open(lw_snap_t **out, char *why, size_t whylen);

/* Snapshot thread tid (as this process's pid namespace names it): its
 * user registers and up to LW_BPF_USTACK_BYTES of stack memory from its
 * stack pointer into *us, and *in_syscall = the syscall it sleeps in, or -1
 * when it was stopped in user mode (preempted, or in a page fault).
 * Returns 0, or a negative errno with a reason in why:
 *   -ESRCH  no such thread (or it exited);
 *   -EBUSY  it kept running on a CPU: a running thread's registers are
 *           only saved when it enters the kernel, so there is no
 *           snapshot; the perf sampler's stacks show what it runs;
 *   -EAGAIN it kept waking up during the copy;
 *   -ENOENT a kernel thread or an exiting process (no user stack);
 *   -EOPNOTSUPP  the kernel walked every task instead of the one
 *           (before 6.1 task iterators took no thread id);
 *   other   the iterator could not be created or read.
 * us->bytes may be 0 (the stack could not be read) with 0 returned: the
 * registers alone still give the innermost frame. */
int lw_snap_take(lw_snap_t *s, pid_t tid, struct lw_bpf_ustack *us,
		 long *in_syscall, char *why, size_t whylen);

/* The last record that lw_snap_take read (flags, state, times), for
 * diagnostics; NULL before the first. */
const struct lw_snap_rec *lw_snap_last(const lw_snap_t *s);

/* Unload; NULL does nothing. */
void lw_snap_close(lw_snap_t *s);

#endif /* !__VMLINUX_H__ */

#endif /* LW_BPF_SNAP_H */
