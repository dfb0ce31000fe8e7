/*
 * kevent.h - what a kernel event says, in words: syscall names, fd kinds,
 * "fsync(fd 7 -> regular file /var/tmp/x)", symbolized user stacks, and the
 * conversion of a raw ring buffer record into a join event while the
 * target is alive (its fds and mappings are read on arrival, because they
 * may be gone a moment later).
 */
#ifndef LW_KEVENT_H
#define LW_KEVENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "join.h"
#include "symbolize.h"
#include "unwind.h"

/* The x86-64 name of syscall nr, or NULL for one outside the table. */
const char *lw_kev_syscall_name(uint32_t nr);

/* The name of syscall nr, or "syscall N" (written into buf) for one outside
 * the table. */
const char *lw_kev_syscall_label(uint32_t nr, char *buf, size_t len);

/* "regular file", "socket", ... for an LW_BPF_FD_* kind; "" for NONE. */
const char *lw_kev_fd_kind_name(uint32_t kind);

/* A syscall event as a call: "fsync(fd 7 -> regular file /x/y)",
 * "nanosleep()", "read(fd 3 -> pipe:[123]) = -EAGAIN". */
void lw_kev_format_call(const lw_join_event_t *e, char *buf, size_t len);

/* The stack snapshots (struct lw_bpf_ustack_event) waiting for their
 * event: one per thread is enough, each comes right before its event. */
#define LW_KEV_PENDING 8

/* A symbolizer and the bookkeeping of its refreshes (an address in a
 * library loaded after attach is unknown until the maps are re-read, which
 * happens at most every 100 ms), and the DWARF unwinder with the stack
 * snapshots that wait for their events. */
typedef struct lw_kev_sym {
	lw_sym_t *sym; /* NULL: addresses are printed raw */
	lw_unwind_t *uw; /* NULL: frame-pointer stacks only */
	uint64_t last_refresh_ns;
	/* The process has ended, or runs another program, or its PID names
	 * another process (fate.h): /proc/PID no longer describes the one
	 * the events came from, so its fds' paths are not read and its maps
	 * not read again. */
	int gone;
	uint64_t unwound; /* events whose stack DWARF unwinding gave */
	struct lw_kev_pending {
		int valid;
		uint32_t tid;
		uint64_t start_ns;
		struct lw_bpf_ustack u;
	} pending[LW_KEV_PENDING];
	size_t next_slot;
} lw_kev_sym_t;

/* A user stack as "  #i frame\n" lines (malloc'd; NULL only when out of
 * memory).  stack_bytes is what bpf_get_stack returned: the bytes filled,
 * or a negative errno (then the one line says why there is no stack).  A
 * stack that ends without reaching a thread's bottom frame says that it
 * was cut, rather than pass for a whole one. */
char *lw_kev_format_stack(lw_kev_sym_t *ks, const __u64 *stack,
			  int stack_bytes);

/* The first frame of a stack that is not in libc, the dynamic loader or
 * the vDSO ("handle_fsync" or "redis-server+0x5c2d1"), for a one-line
 * attribution; "" if there is none. */
void lw_kev_caller(lw_kev_sym_t *ks, const __u64 *stack, size_t n, char *buf,
		   size_t len);

/* Fill out from a raw record of a checked size (see lw_bpf_event_fn):
 * copy it, read the fd's target from /proc/PID/fd, symbolize the stack.
 * A stack snapshot is kept for the event it precedes, whose frame-pointer
 * stack is replaced by the DWARF unwinding of the snapshot when that goes
 * at least as deep.  Returns 0; -EAGAIN for a snapshot (kept, nothing to
 * join); -EINVAL for a kind that is not joined (a span). */
int lw_kev_from_raw(pid_t pid, lw_kev_sym_t *ks,
		    const struct lw_bpf_event_head *ev, size_t size,
		    lw_join_event_t *out);

#endif /* LW_KEVENT_H */
