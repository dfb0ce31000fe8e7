/*
 * model.h - what the agent knows about a watched process, aggregated: per
 * site (count, total, a latency histogram, share of the loop's busy time,
 * the blocking calls seen inside it with a stack each), per loop
 * (utilization, lag from timer lateness, records lost, the defer pool),
 * and per process (its loops, the sources that were live).
 *
 * One model serves every output: `attach` and `run` print its summary,
 * `--json` writes it, `check` holds it against the budgets, `report`
 * rebuilds it from a recording, and the dashboard draws it.  It is fed
 * with the recording's own vocabulary (recording.h): the live agent turns
 * ring records and joined kernel events into lw_rec_* items and gives the
 * same items to the model and, with `record`, to the file; `report` gives
 * the model what it reads back.  So a report of a recording says what the
 * live run would have said.
 *
 * Memory is bounded by the number of sites and loops, never by time: a
 * site holds one fixed-size histogram, at most LW_MODEL_CALLS distinct
 * blocking calls, and one stack per call (its longest); a loop one lag
 * histogram.  Sites and loops are capped too (LW_MODEL_SITES_MAX,
 * LW_MODEL_LOOPS_MAX), what comes past the caps is counted, not kept.
 *
 * Not thread-safe: one thread feeds and reads it.
 */
#ifndef LW_MODEL_H
#define LW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "recording.h"

#define LW_MODEL_CALLS 8 /* distinct (syscall, fd kind) kept per site */
#define LW_MODEL_FRAMES 24 /* frames kept of one stack */
#define LW_MODEL_SITES_MAX (1u << 18) /* sites of all loops together */
#define LW_MODEL_LOOPS_MAX 256
#define LW_MODEL_NAME_MAX 128 /* bytes of a site's or loop's label */

/* A stack of symbolized frames, innermost first; strings owned. */
typedef struct lw_model_stack {
	uint32_t n;
	char *frames[LW_MODEL_FRAMES];
} lw_model_stack_t;

/* One kind of blocking call inside a site: a syscall on a kind of fd. */
typedef struct lw_model_call {
	uint32_t nr; /* x86-64 syscall number */
	uint32_t fd_kind; /* LW_BPF_FD_* */
	char syscall[32]; /* its name, "syscall N" when unknown */
	/* Counted in the kernel, fast ones included (root only). */
	uint64_t count, total_ns, max_ns;
	/* Seen as slow events (at least the slow threshold), with stacks. */
	uint64_t slow, slow_total_ns, slow_max_ns;
	char fd_path[160]; /* of the longest slow one, "" if none */
	lw_model_stack_t stack; /* the longest slow one's, else a counted
				 * one's (frame pointers only) */
} lw_model_call_t;

/* One site of one loop.  A loop without rings has one site, id 0: its
 * slow iterations (busy spans), the only callbacks it shows. */
typedef struct lw_model_site {
	uint32_t loop_id, site_id;
	uint16_t kind; /* lw_kind_t; LW_MODEL_KIND_ITERATION for site 0 */
	char name[LW_MODEL_NAME_MAX]; /* the label: name, function, site#N */
	char func[LW_MODEL_NAME_MAX]; /* the function, "" if unknown */
	lw_hist_t hist; /* durations */
	uint64_t worst_start_ns; /* when the longest one started */
	uint64_t offcpu_ns; /* off CPU outside syscalls, in slow ones */
	uint64_t samples; /* stack samples taken in slow ones */
	lw_model_stack_t sample; /* one stack sample of the longest */
	size_t ncalls;
	lw_model_call_t calls[LW_MODEL_CALLS];
	uint64_t calls_dropped; /* events of calls past LW_MODEL_CALLS */
} lw_model_site_t;

#define LW_MODEL_KIND_ITERATION 0xffff

/* A call's totals: the kernel's counts include the fast calls and so
 * cover the slow ones, but they exist only as root and are read
 * periodically, so the larger of the two is the call's figure. */
static inline uint64_t lw_model_call_count(const lw_model_call_t *k)
{
	return k->count > k->slow ? k->count : k->slow;
}

static inline uint64_t lw_model_call_total(const lw_model_call_t *k)
{
	return k->total_ns > k->slow_total_ns ? k->total_ns : k->slow_total_ns;
}

static inline uint64_t lw_model_call_max(const lw_model_call_t *k)
{
	return k->max_ns > k->slow_max_ns ? k->max_ns : k->slow_max_ns;
}

typedef struct lw_model_loop {
	uint32_t id;
	int32_t tid;
	int has_ring;
	char name[LW_MODEL_NAME_MAX]; /* "main", or "thread 12 (redis)" */
	uint64_t records; /* callbacks (ring records) seen */
	uint64_t busy_from_records; /* their total duration */
	lw_hist_t *lag; /* timer lateness (allocated with the loop) */
	/* Counters: the first and the last reading. */
	int have_counters;
	lw_rec_counters_t first, last;
	uint32_t pool_queued_max; /* the deepest the defer queue was seen */
	uint64_t pool_longest_ns; /* the longest job seen running */
	uint64_t slow_outside; /* slow kernel events outside callbacks */
	/* The longest blocking syscall on this loop's thread. */
	uint64_t syscall_max_ns;
	uint32_t syscall_max_site;
} lw_model_loop_t;

typedef struct lw_model lw_model_t;

lw_model_t *lw_model_new(void); /* NULL when out of memory */
void lw_model_free(lw_model_t *m); /* NULL is fine */

/* Feed it.  The header first (it may come again: the later one wins);
 * loops before their sites and callbacks, sites before their callbacks
 * (a callback of an unknown site gets a site named site#N). */
void lw_model_header(lw_model_t *m, const lw_rec_header_t *h);
void lw_model_loop(lw_model_t *m, const lw_rec_loop_t *l);
void lw_model_site(lw_model_t *m, const lw_rec_site_t *s);
void lw_model_callback(lw_model_t *m, const lw_rec_callback_t *c);
/* A kernel event; k->site_id names the callback it was joined to (0:
 * outside callbacks, or a loop without rings: its iteration). */
void lw_model_kevent(lw_model_t *m, const lw_rec_kevent_t *k);
/* Blocking calls counted in the kernel: cumulative, so a later reading of
 * the same (loop, site, nr, fd kind) replaces the earlier one. */
void lw_model_blocking(lw_model_t *m, const lw_rec_blocking_t *b);
void lw_model_counters(lw_model_t *m, const lw_rec_counters_t *c);
void lw_model_end(lw_model_t *m, const lw_rec_end_t *e);
/* Feed any item of a recording. */
void lw_model_item(lw_model_t *m, const lw_rec_item_t *it);

/* What was fed. */
typedef struct lw_model_info {
	int32_t pid;
	char comm[64];
	char version[32]; /* of the loopwatch that watched */
	uint32_t sources; /* LW_REC_SRC_* */
	char rings_why[256], kprobes_why[256];
	uint64_t min_ns; /* the slow threshold */
	uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC; end 0 while running */
	uint64_t real_ns; /* wall time at start_ns */
	uint64_t records_lost; /* ring records lost, all loops */
	uint64_t kernel_lost; /* kernel events lost */
	uint64_t sites_dropped; /* sites past LW_MODEL_SITES_MAX */
	int ended; /* an end record (or lw_model_end) was seen */
	/* How the process ended while watched (a fate record): the line the
	 * agent said, "" if it did not end first; fate_end is enum
	 * lw_rec_fate_end, fate_flags LW_REC_FATE_* (FAILED: a signal or a
	 * status other than 0). */
	char fate[512];
	uint32_t fate_end, fate_flags;
	/* The latest time a callback, kernel event or counters reading
	 * carried: where a recording cut before its end record ends. */
	uint64_t seen_ns;
} lw_model_info_t;

const lw_model_info_t *lw_model_info(const lw_model_t *m);
/* When the watch ended: its end (lw_model_end, a recording's end record),
 * else the latest time seen (a cut recording); 0 if nothing was seen. */
uint64_t lw_model_end_ns(const lw_model_t *m);

size_t lw_model_nloops(const lw_model_t *m);
const lw_model_loop_t *lw_model_loop_at(const lw_model_t *m, size_t i);
const lw_model_loop_t *lw_model_loop_by_id(const lw_model_t *m, uint32_t id);

size_t lw_model_nsites(const lw_model_t *m);
const lw_model_site_t *lw_model_site_at(const lw_model_t *m, size_t i);
const lw_model_site_t *lw_model_site_find(const lw_model_t *m, uint32_t loop,
					  uint32_t site);

/* A loop's utilization, busy / (busy + idle) in [0, 1], from its first and
 * last counters; -1 when there is no interval to tell it from. */
double lw_model_utilization(const lw_model_loop_t *l);
/* The loop's busy time over the counters' interval (0 without). */
uint64_t lw_model_busy_ns(const lw_model_loop_t *l);
/* The share of its loop's busy time that a site took, in [0, 1]; -1 when
 * the loop's busy time is unknown. */
double lw_model_share(const lw_model_t *m, const lw_model_site_t *s);

/* The call of site s that took longest (lw_model_call_max), what held it
 * up most; NULL when it has none. */
const lw_model_call_t *lw_model_longest_call(const lw_model_site_t *s);

/* The sites worst first: by total time (the time they held the loop),
 * then by max.  Fills out with up to max pointers; returns how many. */
size_t lw_model_sorted(const lw_model_t *m, const lw_model_site_t **out,
		       size_t max);

#endif /* LW_MODEL_H */
