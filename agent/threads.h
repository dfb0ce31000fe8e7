/*
 * threads.h - find the loop threads of a process that carries no rings:
 * the threads that sit in an event wait (epoll, poll, select, io_uring).
 *
 * An idle event loop spends most of its time blocked in its wait, so a few
 * looks at what each thread is blocked in tell the loop threads from the
 * rest (workers on a condition variable sit in futex, timers in nanosleep).
 * One look is not enough: a loop that is running a callback at that moment
 * is not in its wait, so the detector samples several times and counts.
 *
 * What each thread is blocked in comes from /proc (checked on Linux 6.18):
 *
 * - /proc/PID/task/TID/syscall: "NR ARG1..ARG6 SP PC" for a thread blocked
 *   in syscall NR, "-1 SP PC" for one blocked outside any syscall (a page
 *   fault), "running" for one on a CPU or runnable (preempted).  Exact, but
 *   it needs ptrace-attach rights (PTRACE_MODE_ATTACH): root, or the same
 *   user when the Yama LSM allows it (kernel.yama.ptrace_scope 0); EACCES
 *   otherwise.  A kernel thread reads as "0 0x0 ...", syscall 0 with no
 *   user registers, which is why kernel threads are recognised first.
 * - /proc/PID/task/TID/wchan: the kernel function the thread sleeps in.  It
 *   needs only ptrace-read rights (PTRACE_MODE_READ, which Yama does not
 *   restrict), so it is the fallback when `syscall` is refused.  Here an
 *   epoll wait reads "do_epoll_wait", an io_uring wait "io_cqring_wait",
 *   and both poll and select (and ppoll, pselect6) read
 *   "poll_schedule_timeout.constprop.0": poll and select cannot be told
 *   apart, and the syscall number is unknown.  Without the rights it reads
 *   "0", as it does for a running thread.
 * - /proc/PID/task/TID/stat: the state letter (R, S, D, ...) is readable by
 *   anyone but says only that a thread sleeps, not in what: no use here
 *   beyond the kernel-thread flag of the process.
 *
 * Everything read is treated as untrusted text: bounded reads, defensive
 * parsing, and threads that appear or vanish between two looks are normal.
 */
#ifndef LW_THREADS_H
#define LW_THREADS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* By path: only the BPF users are built with -Ibpf. */
#include "../bpf/loopwatch_bpf.h"

/* One thread that was seen blocked in an event wait. */
typedef struct lw_loop_thread {
	/* The thread id, in the pid namespace of the caller (the kernel
	 * probes want the initial namespace's: the same unless the agent
	 * runs inside a container). */
	pid_t tid;
	/* /proc/PID/task/TID/comm without the newline, as last read
	 * (chosen by the target: any 15 bytes). */
	char comm[16];
	/* The LW_BPF_WAIT_* of the kind of wait the thread was seen in most
	 * often (ties: epoll, io_uring, poll, select, in that order), the
	 * flags to give the kernel probes for it.  When only wchan could be
	 * read, a poll or select wait is LW_BPF_WAIT_POLL |
	 * LW_BPF_WAIT_SELECT: the two look the same there. */
	uint32_t wait_flags;
	/* The syscall number (x86-64) it was last seen waiting in, of that
	 * kind; -1 when only wchan was readable. */
	int nr;
	/* In how many of the samples it was in an event wait of any kind. */
	unsigned seen;
} lw_loop_thread_t;

/*
 * Sample the threads of pid `samples` times (>= 1), interval_ms (>= 0)
 * apart, and return the threads seen blocked in an event wait at least
 * once: epoll_wait, epoll_pwait, epoll_pwait2 -> LW_BPF_WAIT_EPOLL; poll,
 * ppoll -> LW_BPF_WAIT_POLL; select, pselect6 -> LW_BPF_WAIT_SELECT;
 * io_uring_enter -> LW_BPF_WAIT_IO_URING; a poll restarted after a signal
 * (restart_syscall) counts as poll.  Most often seen first (ties: lower tid
 * first), at most max of them into out (out may be NULL when max is 0).
 *
 * Returns how many were stored, or a negative errno with a one-line reason
 * in why: -ESRCH no such process (or it exited, or is a zombie), -EACCES
 * not allowed to read its threads' state, -EINVAL bad arguments, -ENOMEM.
 * 0 found is not an error; why then says why nothing was found (a kernel
 * thread such as kthreadd, pid 2, has no user-space loop: it returns 0 with
 * that reason).  why is "" when threads were found.
 *
 * A thread that is busy in some samples and waiting in others is found;
 * one that waits rarely (a poll during a worker's DNS lookup) sorts after
 * one that always waits.  Takes about (samples - 1) * interval_ms.
 */
int lw_threads_detect(pid_t pid, int samples, int interval_ms,
		      lw_loop_thread_t *out, size_t max, char *why,
		      size_t whylen);

/* The parsers behind it, exposed for tests on odd input. */

/* The LW_BPF_WAIT_* of an event-wait syscall number, 0 for any other. */
uint32_t lw_threads_wait_of_nr(long nr);

/* Parse the text of /proc/PID/task/TID/syscall: 0 and the number in *nr
 * (-1: blocked outside a syscall), -EAGAIN for "running", -EINVAL for
 * anything else. */
int lw_threads_parse_syscall(const char *buf, size_t len, long *nr);

/* The LW_BPF_WAIT_* of the text of /proc/PID/task/TID/wchan (the kernel
 * function name, maybe with a ".suffix"), 0 if it is no event wait. */
uint32_t lw_threads_wait_of_wchan(const char *buf, size_t len);

#endif /* LW_THREADS_H */
