/*
 * join.h - match the kernel's events with the callbacks of the ring (or
 * the busy spans of a loop without one): a syscall, an off-CPU time or a
 * sample on a loop thread belongs to the callback of that loop whose
 * [start, start + duration] contains it.
 *
 * A callback's record is written when the callback ends, after its
 * syscalls were reported, so events wait here until a record claims them
 * (lw_join_take) or until it is clear that none will (lw_join_expire).  The
 * buffer is bounded: when it is full the oldest event is dropped and
 * counted.  Pure bookkeeping, no I/O: unit-tested on its own.
 */
#ifndef LW_JOIN_H
#define LW_JOIN_H

#include <stddef.h>
#include <stdint.h>

/* By path: only the BPF users are built with -Ibpf. */
#include "../bpf/loopwatch_bpf.h"

/* One kernel event (a slow syscall, off-CPU time, a stack sample) with
 * what the agent learnt about it on arrival.  The join reads only the
 * head: tid, start_ns and duration_ns (0 for a sample). */
typedef struct lw_join_event {
	struct lw_bpf_event_head h;
	union {
		struct lw_bpf_syscall_event sys; /* h.kind LW_BPF_EV_SYSCALL */
		struct lw_bpf_offcpu_event off; /* LW_BPF_EV_OFFCPU */
		struct lw_bpf_sample_event smp; /* LW_BPF_EV_SAMPLE */
	} u;
	/* A syscall's fd target (readlink of /proc/PID/fd/N when the event
	 * arrived), "" if unknown or none. */
	char fd_path[256];
	/* The symbolized stack, "  #0 ...\n" lines, malloc'd; owned by the
	 * join while buffered and by the caller once taken or expired.  May
	 * be NULL. */
	char *stack;
} lw_join_event_t;

typedef struct lw_join lw_join_t;

/* A buffer for at most cap events (cap >= 1); NULL when out of memory. */
lw_join_t *lw_join_new(size_t cap);
/* Frees the buffered events' stacks too; NULL is fine. */
void lw_join_free(lw_join_t *j);

/* Buffer a copy of e (its stack moves into the join).  When full, the
 * oldest event is dropped first (its stack freed) and counted. */
void lw_join_add(lw_join_t *j, const lw_join_event_t *e);

/* Move into out (at most max, in arrival order) the events of thread tid
 * that lie within [start_ns, start_ns + duration_ns]; returns how many.
 * Events that do not fit in out stay buffered. */
size_t lw_join_take(lw_join_t *j, uint32_t tid, uint64_t start_ns,
		    uint64_t duration_ns, lw_join_event_t *out, size_t max);

/*
 * Move into out (at most max) the events of thread tid that no record will
 * claim any more: those that ended more than grace_ns before now_ns, unless
 * a callback of the loop that started no later than the event
 * (running_since_ns, 0 when none runs) may still contain them.  With
 * grace_ns == 0 and now_ns == UINT64_MAX, everything not covered by the
 * running callback goes (the final flush).
 */
size_t lw_join_expire(lw_join_t *j, uint32_t tid, uint64_t now_ns,
		      uint64_t grace_ns, uint64_t running_since_ns,
		      lw_join_event_t *out, size_t max);

/* The stack of the latest buffered event of thread tid of this kind that
 * started at since_ns or later (a callback stuck right now: its latest
 * sample), or NULL.  Valid until the join is changed. */
const char *lw_join_latest_stack(const lw_join_t *j, uint32_t tid,
				 uint32_t kind, uint64_t since_ns);

size_t lw_join_pending(const lw_join_t *j);
uint64_t lw_join_dropped(const lw_join_t *j); /* events dropped when full */

#endif /* LW_JOIN_H */
