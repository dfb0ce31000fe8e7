/*
 * unwind.h - turn a snapshot of a user stack (registers and a copy of the
 * stack memory, as the kernel programs send it in struct lw_bpf_ustack)
 * into the list of return addresses, with DWARF call frame information
 * (.eh_frame, .debug_frame) through elfutils.
 *
 * Why: bpf_get_stack() walks frame pointers, and code built without them
 * (Debian's libc, most distribution binaries such as redis-server) cuts
 * that walk after the first frame or sends it astray.  CFI describes every
 * instruction of such code, so the walk goes on through it, as
 * `perf record --call-graph dwarf` does.
 *
 * One lw_unwind_t per process: it reads the process's mappings and ELF
 * files once (inside its root, for containers, as the symbolizer does) and
 * keeps their CFI, then unwinds any number of snapshots of any of its
 * threads.  Stack memory is read only from the snapshots, never from the
 * live process: the process has moved on by the time a snapshot arrives.
 *
 * Not thread-safe (elfutils' Dwfl is not): use one per thread or a lock.
 */
#ifndef LW_UNWIND_H
#define LW_UNWIND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* By path: only the BPF users are built with -Ibpf. */
#include "../bpf/loopwatch_bpf.h"

typedef struct lw_unwind lw_unwind_t;

/* An unwinder for the live process pid.  0, or a negative errno with a
 * one-line reason in why: -ESRCH (no such process, or it has exited),
 * -EACCES (run as root or as its user), -ENOENT (no user-space mappings:
 * a kernel thread), -ENOMEM, -EIO (elfutils refused the process; why says
 * what it said). */
int lw_unwind_open(pid_t pid, lw_unwind_t **out, char *why, size_t whylen);

/* Read the mappings again, for libraries loaded (or unloaded) since open
 * or the last refresh: an address in a module it does not know ends the
 * walk.  0 or a negative errno (-ESRCH: the process has exited). */
int lw_unwind_refresh(lw_unwind_t *u);

/* Unwind a snapshot of thread tid: regs as they were in the innermost
 * frame, and stack_len bytes of that thread's stack memory that started at
 * regs->sp.  Writes at most max addresses to out: out[0] = regs->ip, then
 * the return address of each caller, outermost last (raw return
 * addresses: the instruction after the call; the symbolizer looks them up
 * at addr - 1 itself).
 *
 * Returns how many were written (>= 1 when regs->ip is nonzero and max >=
 * 1; 0 for ip 0), or -EINVAL for bad arguments.  It never reads outside
 * the snapshot, and stops cleanly at the snapshot's end, at a frame
 * without CFI (where elfutils' frame-pointer fallback fails too), at the
 * outermost frame (whose return address CFI marks undefined), or where the
 * stack pointer does not grow from one frame to the next (a loop, or
 * garbage; a frame on a sigaltstack below the interrupted code's stack
 * also ends the walk). */
int lw_unwind_stack(lw_unwind_t *u, pid_t tid, const struct lw_bpf_regs *regs,
		    const void *stack, size_t stack_len, uint64_t *out,
		    size_t max);

/* The symbolizer that u reads the process through (symbolize.h).  Name
 * the addresses of lw_unwind_stack with it instead of opening a second
 * one: the files, their symbol tables and the lookup cache are then read
 * once.  Owned by u: valid until lw_unwind_close; lw_unwind_refresh
 * refreshes it too. */
struct lw_sym *lw_unwind_sym(lw_unwind_t *u);

/* Free everything; NULL does nothing. */
void lw_unwind_close(lw_unwind_t *u);

#endif /* LW_UNWIND_H */
