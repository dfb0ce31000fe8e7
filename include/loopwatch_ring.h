/*
 * loopwatch_ring.h - the ring ABI: the wire contract between a process that
 * reports its callbacks (libloopwatch, or any loop through lw_probe_*) and
 * the readers that watch it (the loopwatch agent).  docs/ring-abi.md tells
 * the same story in prose.
 *
 * One ring per loop lives in a memfd named LW_RING_MEMFD_NAME, so a reader
 * finds it through /proc/PID/fd/ (the link reads "/memfd:loopwatch
 * (deleted)") and /proc/PID/maps, opens /proc/PID/fd/N read-only, checks
 * that the memfd is sealed against shrinking (F_SEAL_SHRINK) and maps it
 * PROT_READ, MAP_SHARED.  The layout, from offset 0:
 *
 *   [header: LW_RING_HEADER_SIZE bytes]
 *   [site table: site_capacity entries of LW_RING_SITE_SIZE bytes]
 *   [records: capacity entries of LW_RING_RECORD_SIZE bytes]
 *
 * All integers are native-endian (the reader runs on the same machine), all
 * times are CLOCK_MONOTONIC nanoseconds: the clock of bpf_ktime_get_ns(), so
 * kernel events and records share one timeline.
 *
 * Concurrency.  There is exactly one writer per ring, the loop's thread (the
 * defer pool's fields excepted, see below), and any number of readers, which
 * never write.  Fields that change while the ring is live are accessed with
 * the __atomic builtins; the pairings are:
 *
 *   - Records (a seqlock on the free-running head):
 *       writer, record j:  fence(release); store the fields of slot
 *                          j & (capacity - 1), seq = (uint32_t)j last;
 *                          store head = j + 1 (release)
 *       reader, record i:  h = load head (acquire); require i < h; copy the
 *                          slot; fence(acquire); h2 = load head (relaxed);
 *                          the copy is good iff copy.seq == (uint32_t)i and
 *                          h2 - i < capacity.
 *     The writer's release fence before it touches slot j pairs with the
 *     reader's acquire fence after its copy: a reader that saw any byte of
 *     record j in slot i (= j - capacity) also sees head >= j and discards
 *     the copy.  So the slot of record head - capacity cannot be told from
 *     one being overwritten, and at most capacity - 1 records behind head
 *     are readable: a reader whose position fell further behind has lost
 *     exactly head - (capacity - 1) - position records.
 *
 *   - Sites: the writer fills entry id - 1 completely, then stores nsites
 *     (release); a reader loads nsites (acquire) and reads entries below it.
 *     A rename (names may change) runs under the entry's own seqlock: `seq`
 *     is odd while the entry is being written.
 *
 *   - The current-callback slot: at a callback's start the writer stores
 *     cur_start_ns, then cur_kind, then cur_site (release); at its end it
 *     stores cur_site = 0 (release).  When the slot already holds a callback
 *     (a nested one starts, or the outer one is restored when it ends), the
 *     writer first stores cur_site = 0, then a release fence.  A reader loads
 *     cur_start_ns (acquire), cur_site (acquire), cur_kind, then
 *     cur_start_ns again; if both starts agree and the site is not 0, that
 *     callback has been running since then.
 *
 *   - Counters (iterations, busy_ns, idle_ns, wait_since_ns) are single
 *     aligned 64-bit stores: a reader sees each one whole, not all of them
 *     from one instant.
 *
 *   - Pool fields are written by the pool's threads under the pool's lock;
 *     readers read them without one and may see them mid-update (each field
 *     is whole).
 *
 * Identity.  The writer fills the header and stores `magic` last (release):
 * a ring whose magic is not LW_RING_MAGIC yet is not ready.  `pid` and
 * `start_time` identify the process that made the ring; a reader compares
 * them with /proc/PID/stat to detect a reused pid or a ring inherited across
 * fork().
 *
 * Trust.  A reader treats every byte of the mapping as hostile: it checks
 * sizes and offsets against the size of the mapping, bounds every index and
 * every string (names may lack their NUL), and never loops on a count it
 * read without a bound of its own.
 */
#ifndef LOOPWATCH_RING_H
#define LOOPWATCH_RING_H

#include <stdint.h>

#define LW_RING_MAGIC 0x474e495257504f4cULL /* "LOOPWRNG" little-endian */
#define LW_RING_ABI_VERSION 1
#define LW_RING_MEMFD_NAME "loopwatch"
#define LW_RING_HEADER_SIZE 4096
#define LW_RING_SITE_SIZE 96
#define LW_RING_RECORD_SIZE 32
#define LW_RING_NAME_MAX 64

/* Defaults and limits of the writer; a reader accepts any power of two in
 * [LW_RING_MIN_CAPACITY, LW_RING_MAX_CAPACITY]. */
#define LW_RING_DEFAULT_CAPACITY 65536 /* records: 2 MiB */
#define LW_RING_MIN_CAPACITY 64
#define LW_RING_MAX_CAPACITY (1u << 24) /* records: 512 MiB */
#define LW_RING_DEFAULT_SITES 4096
#define LW_RING_MAX_SITES 65536

/* header.clock: how the writer measured durations. */
enum {
	LW_RING_CLOCK_MONOTONIC = 1, /* clock_gettime(CLOCK_MONOTONIC) */
	LW_RING_CLOCK_TSC = 2, /* the TSC, converted to CLOCK_MONOTONIC */
};

/* header.flags */
enum {
	LW_RING_F_REACTOR = 1, /* written by libloopwatch's own loop */
	LW_RING_F_PROBE = 2, /* written through the lw_probe_* API */
};

/* record.flags */
enum {
	LW_REC_LATENESS_SATURATED = 1, /* lateness_ns was clamped */
};

/* One callback invocation.  32 bytes. */
struct lw_ring_record {
	uint64_t start_ns; /* when the callback started, CLOCK_MONOTONIC */
	uint64_t duration_ns; /* how long it ran */
	uint32_t seq; /* low 32 bits of the record's index (see above) */
	uint32_t site; /* site id: 1-based index into the site table */
	/* Timers: how late the callback started (start - due), the loop's
	 * lag; clamped to UINT32_MAX with LW_REC_LATENESS_SATURATED.  0 for
	 * other kinds. */
	uint32_t lateness_ns;
	uint16_t kind; /* lw_kind_t of loopwatch.h */
	uint16_t flags; /* LW_REC_* */
};

/* One site: a (callback, kind) pair.  96 bytes. */
struct lw_ring_site {
	uint32_t seq; /* seqlock for renames: odd while being written */
	uint32_t id; /* 1-based; equals its index + 1 once written */
	uint16_t kind; /* lw_kind_t */
	uint16_t flags; /* 0, reserved */
	uint32_t reserved0;
	uint64_t fn; /* the callback's address in the writer's address space */
	char name[LW_RING_NAME_MAX]; /* given name or "", maybe not NUL-ended */
	uint64_t reserved1;
};

/* The first page of the mapping. */
struct lw_ring_header {
	/* ---- identity: written once, before magic ---- */
	uint64_t magic; /* LW_RING_MAGIC, stored last (release) */
	uint32_t abi_version; /* LW_RING_ABI_VERSION */
	uint32_t header_size; /* LW_RING_HEADER_SIZE */
	uint32_t record_size; /* LW_RING_RECORD_SIZE */
	uint32_t site_size; /* LW_RING_SITE_SIZE */
	uint32_t capacity; /* records in the ring, a power of two */
	uint32_t site_capacity; /* entries in the site table */
	uint64_t sites_offset; /* offset of the site table in the mapping */
	uint64_t records_offset; /* offset of the records in the mapping */
	uint64_t total_size; /* size of the mapping in bytes */
	int32_t pid; /* the process that made the ring */
	int32_t tid; /* the loop's thread (set when the loop runs; 0 before) */
	/* The process's start time, field 22 of /proc/PID/stat (clock ticks
	 * since boot): with pid, it names one process for its whole life. */
	uint64_t start_time;
	uint64_t created_ns; /* when the ring was made */
	uint32_t flags; /* LW_RING_F_* */
	uint32_t clock; /* LW_RING_CLOCK_* */
	char name[LW_RING_NAME_MAX]; /* the loop's name, maybe not NUL-ended */
	uint8_t pad0[256 - 88 - LW_RING_NAME_MAX]; /* to offset 256 */

	/* ---- the loop's live counters (offset 256) ---- */
	uint64_t iterations; /* loop iterations completed */
	uint64_t busy_ns; /* time outside the loop's wait */
	uint64_t idle_ns; /* time inside the loop's wait */
	uint64_t wait_since_ns; /* start of the wait in progress, 0 if none */
	uint32_t nsites; /* site entries written (release) */
	uint32_t reserved2;
	uint8_t pad1[64 - 40];

	/* ---- the current-callback slot (offset 320) ---- */
	uint64_t cur_start_ns; /* start of the running callback */
	uint32_t cur_site; /* its site id; 0 between callbacks */
	uint32_t cur_kind; /* its lw_kind_t */
	uint8_t pad2[64 - 16];

	/* ---- the defer pool (offset 384), under the pool's lock ---- */
	uint32_t pool_threads; /* worker threads started */
	uint32_t pool_busy; /* workers running a job */
	uint32_t pool_queued; /* jobs waiting for a worker */
	uint32_t pool_oldest_site; /* the oldest running job's site, or 0 */
	uint64_t pool_oldest_start_ns; /* its start, 0 if none runs */
	uint64_t pool_oldest_fn; /* its function's address */
	uint64_t pool_completed; /* jobs finished */
	uint8_t pad3[64 - 40];

	/* ---- the producer's position (offset 448), on its own line ---- */
	uint64_t head; /* records written so far (release) */
	uint8_t pad4[64 - 8];

	uint8_t pad5[LW_RING_HEADER_SIZE - 512];
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct lw_ring_record) == LW_RING_RECORD_SIZE,
	       "record size is ABI");
_Static_assert(sizeof(struct lw_ring_site) == LW_RING_SITE_SIZE,
	       "site size is ABI");
_Static_assert(sizeof(struct lw_ring_header) == LW_RING_HEADER_SIZE,
	       "header size is ABI");
_Static_assert(__builtin_offsetof(struct lw_ring_header, iterations) == 256,
	       "counters at 256");
_Static_assert(__builtin_offsetof(struct lw_ring_header, cur_start_ns) == 320,
	       "current slot at 320");
_Static_assert(__builtin_offsetof(struct lw_ring_header, pool_threads) == 384,
	       "pool at 384");
_Static_assert(__builtin_offsetof(struct lw_ring_header, head) == 448,
	       "head at 448");
#endif

#endif /* LOOPWATCH_RING_H */
