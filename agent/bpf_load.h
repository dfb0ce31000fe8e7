/*
 * bpf_load.h - the agent's handle on the kernel probes of bpf/watch.bpf.c:
 * open, configure and load the skeleton, name the threads to watch, attach,
 * read events from the ring buffer and counts from the maps, detach, free.
 *
 *   struct lw_bpf_opts o = { .min_ns = 10000000 };
 *   struct lw_bpf *b;
 *   char why[256];
 *   if (lw_bpf_open(&b, &o, why, sizeof(why)) < 0)
 *           fprintf(stderr, "loopwatch: cannot load kernel probes: %s\n", why);
 *   lw_bpf_watch(b, tid, LW_BPF_WAIT_EPOLL, 0, why, sizeof(why));
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
struct watch_bpf; /* the skeleton, for tests */

struct lw_bpf_opts {
	/* Report syscalls that last at least this long; 0 means the
	 * default, 10 ms. */
	__u64 min_ns;
	/* Size of the watched-thread map; 0 means 1024. */
	__u32 max_threads;
	/* Size of the ring buffer in bytes, a power of two and a multiple of
	 * the page size; 0 means 1 MiB (a slow syscall or a sample with its
	 * stack memory is about 9 KiB). */
	__u32 ringbuf_bytes;
	/* Sample the watched threads' user stacks every this many ns of
	 * CPU time (a cpu-clock perf event per CPU whose program keeps only
	 * the watched threads); 0 means the default, 4 ms.  Samples are sent
	 * only while a busy span runs past min_ns (see struct
	 * lw_bpf_sample_event). */
	__u64 sample_ns;
	/* No sampling at all (no perf events). */
	bool no_sampling;
	/* Also load the raw_tp test entries (never attached) so that tests
	 * can run the programs with BPF_PROG_TEST_RUN. */
	bool test_entries;
};

/* Called for each event, in ring order: ev is the head of a record of
 * ev->kind whose size (checked against the kind's struct) is size; cast it
 * to struct lw_bpf_syscall_event, lw_bpf_offcpu_event, ... as the kind
 * says.  Return 0 to go on, anything else to stop this poll (lw_bpf_poll
 * then returns that value if negative). */
typedef int (*lw_bpf_event_fn)(void *ctx, const struct lw_bpf_event_head *ev,
			       size_t size);

/* Open the skeleton, set the tunables and load it (verify the programs,
 * create the maps).  Nothing is attached yet.  opts may be NULL. */
int lw_bpf_open(struct lw_bpf **out, const struct lw_bpf_opts *opts, char *why,
		size_t whylen);

/* Watch thread tid (initial pid namespace) whose wait for events is the
 * LW_BPF_WAIT_* set in flags (with LW_BPF_SPANS, LW_BPF_SAMPLE_ALWAYS if
 * wanted); cur_site_addr as in struct lw_bpf_thread (0: no ring).  Watching a
 * thread again resets its state. */
int lw_bpf_watch(struct lw_bpf *b, __u32 tid, __u32 flags, __u64 cur_site_addr,
		 char *why, size_t whylen);
/* Stop watching tid; -ENOENT if it was not watched. */
int lw_bpf_unwatch(struct lw_bpf *b, __u32 tid);

/* Attach the tp_btf programs to the raw syscall tracepoints and to
 * sched_switch, and a stack sampler to each CPU.  From now on
 * every syscall and context switch on the machine runs them (the
 * unwatched path is one memory load).  Attaching twice is harmless. */
int lw_bpf_attach(struct lw_bpf *b, char *why, size_t whylen);
/* Detach them; the maps and the ring buffer stay readable. */
void lw_bpf_detach(struct lw_bpf *b);

/* Wait up to timeout_ms (0: do not wait, -1: forever) for events, then
 * hand each event in the ring buffer to fn (also those sent without a
 * wake-up, the samples).  Returns the number of events handled, or a negative
 * errno
 * (-EINTR when a signal interrupted the wait), or fn's negative return. */
int lw_bpf_poll(struct lw_bpf *b, int timeout_ms, lw_bpf_event_fn fn,
		void *ctx);

/* The health counters and one syscall's totals, summed over the CPUs. */
int lw_bpf_stats_read(struct lw_bpf *b, struct lw_bpf_stats *out);
int lw_bpf_sysstat_read(struct lw_bpf *b, __u32 nr, struct lw_bpf_sysstat *out);

/* A copy of a watched thread's state as the kernel keeps it (e.g. its
 * span_start_ns: a busy span in progress).  -ENOENT if not watched. */
int lw_bpf_thread_read(struct lw_bpf *b, __u32 tid, struct lw_bpf_thread *out);

/* Call fn for each counted blocking call (the `blocking` map): key, totals
 * since attach.  Returns the number of keys, or a negative errno. */
typedef int (*lw_bpf_block_fn)(void *ctx, const struct lw_bpf_block_key *k,
			       const struct lw_bpf_block_val *v);
int lw_bpf_blocking_read(struct lw_bpf *b, lw_bpf_block_fn fn, void *ctx);

/* The user stack with this id in the `stacks` map: copies at most max
 * frames into out and returns how many, or a negative errno (-ENOENT for
 * an unknown id). */
int lw_bpf_stack(struct lw_bpf *b, __s32 id, __u64 *out, size_t max);

/* The number of CPUs with a stack sampler (0 before attach or when
 * sampling is off), and when one could not be opened, why (the last
 * failure; "" if none). */
int lw_bpf_sampling(const struct lw_bpf *b, const char **why);

/* Records of the wrong size or kind that the reader skipped (0 unless the
 * kernel side and this build disagree). */
unsigned long lw_bpf_bad_records(const struct lw_bpf *b);

/* The skeleton, for tests that run its programs directly. */
struct watch_bpf *lw_bpf_skel(struct lw_bpf *b);

/* Detach, unload, free.  lw_bpf_free(NULL) does nothing. */
void lw_bpf_free(struct lw_bpf *b);

#endif /* LW_BPF_LOAD_H */
