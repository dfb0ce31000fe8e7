/*
 * bpf_load.h - the agent's handle on the kernel probes of bpf/syscalls.bpf.c:
 * open, configure and load the skeleton, name the threads to watch, attach,
 * read events from the ring buffer, detach, free.
 *
 *   struct lw_bpf_opts o = { .min_ns = 10000000 };
 *   struct lw_bpf *b;
 *   char why[256];
 *   if (lw_bpf_open(&b, &o, why, sizeof(why)) < 0)
 *           fprintf(stderr, "loopwatch: cannot load kernel probes: %s\n", why);
 *   lw_bpf_watch(b, tid, LW_BPF_WAIT_EPOLL, why, sizeof(why));
 *   lw_bpf_attach(b, why, sizeof(why));
 *   while (running)
 *           lw_bpf_poll(b, 100, on_event, ctx);
 *   lw_bpf_free(b);
 *
 * Calls that can fail return 0 (or a count) or a negative errno and, where
 * they take `why`, write a one-line reason with a hint into it (no trailing
 * newline).  Everything the kernel holds (programs, links, maps) is a file
 * descriptor of this process, so it all goes away when the process dies,
 * even by SIGKILL.  One handle is used by one thread at a time.
 */
#ifndef LW_BPF_LOAD_H
#define LW_BPF_LOAD_H

#include <stdbool.h>
#include <stddef.h>

/* The structs shared with BPF.  By path: include/loopwatch.h (the reactor's
 * API) has the same name and comes first on the include path. */
#include "loopwatch_bpf.h"

struct lw_bpf;
struct syscalls_bpf; /* the skeleton, for tests */

struct lw_bpf_opts {
	/* Report syscalls that last at least this long; 0 means the
	 * default, 10 ms. */
	__u64 min_ns;
	/* Size of the watched-thread map; 0 means 1024. */
	__u32 max_threads;
	/* Size of the ring buffer in bytes, a power of two and a multiple of
	 * the page size; 0 means 256 KiB. */
	__u32 ringbuf_bytes;
	/* Also load the raw_tp test entries (never attached) so that tests
	 * can run the programs with BPF_PROG_TEST_RUN. */
	bool test_entries;
};

/* Called for each event, in ring order.  Return 0 to go on, anything else
 * to stop this poll (lw_bpf_poll then returns that value if negative). */
typedef int (*lw_bpf_event_fn)(void *ctx,
			       const struct lw_bpf_syscall_event *ev);

/* Open the skeleton, set the tunables and load it (verify the programs,
 * create the maps).  Nothing is attached yet.  opts may be NULL. */
int lw_bpf_open(struct lw_bpf **out, const struct lw_bpf_opts *opts, char *why,
		size_t whylen);

/* Watch thread tid (initial pid namespace) whose wait for events is the
 * LW_BPF_WAIT_* set in flags.  Watching a thread again resets its state. */
int lw_bpf_watch(struct lw_bpf *b, __u32 tid, __u32 flags, char *why,
		 size_t whylen);
/* Stop watching tid; -ENOENT if it was not watched. */
int lw_bpf_unwatch(struct lw_bpf *b, __u32 tid);

/* Attach the tp_btf programs to the raw syscall tracepoints.  From now on
 * every syscall on the machine runs them (the unwatched path is one map
 * lookup).  Attaching twice is harmless. */
int lw_bpf_attach(struct lw_bpf *b, char *why, size_t whylen);
/* Detach them; the maps and the ring buffer stay readable. */
void lw_bpf_detach(struct lw_bpf *b);

/* Wait up to timeout_ms (0: do not wait, -1: forever) for events and hand
 * each to fn.  Returns the number of events handled, or a negative errno
 * (-EINTR when a signal interrupted the wait), or fn's negative return. */
int lw_bpf_poll(struct lw_bpf *b, int timeout_ms, lw_bpf_event_fn fn,
		void *ctx);

/* The health counters and one syscall's totals, summed over the CPUs. */
int lw_bpf_stats_read(struct lw_bpf *b, struct lw_bpf_stats *out);
int lw_bpf_sysstat_read(struct lw_bpf *b, __u32 nr, struct lw_bpf_sysstat *out);

/* Records of the wrong size or kind that the reader skipped (0 unless the
 * kernel side and this build disagree). */
unsigned long lw_bpf_bad_records(const struct lw_bpf *b);

/* The skeleton, for tests that run its programs directly. */
struct syscalls_bpf *lw_bpf_skel(struct lw_bpf *b);

/* Detach, unload, free.  lw_bpf_free(NULL) does nothing. */
void lw_bpf_free(struct lw_bpf *b);

#endif /* LW_BPF_LOAD_H */
