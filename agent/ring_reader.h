/*
 * ring_reader.h - the agent's side of the ring: find, map, validate and read
 * the rings that libloopwatch (or any writer of include/loopwatch_ring.h)
 * keeps in memfds.
 *
 * Everything read from a mapping is untrusted.  The identity fields
 * (capacity, offsets, sizes, pid, start time, name) are validated and cached
 * when a ring is opened and never read again; the live fields (head,
 * counters, the current slot, sites) are read with __atomic loads, bounded
 * before use, and never used as an index without a check.  A corrupt or
 * hostile ring gives an error or odd values, never a crash or an endless
 * loop.
 *
 * Calls that can fail return 0 or a negative errno and, where they take
 * `why`, write a one-line reason into it (no trailing newline).
 */
#ifndef LW_RING_READER_H
#define LW_RING_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loopwatch_ring.h"

typedef struct lw_rr_ring lw_rr_ring_t; /* one mapped, validated ring */

/* One published site, copied out consistently. */
typedef struct lw_rr_site {
	uint32_t id; /* 1-based */
	uint16_t kind; /* lw_kind_t */
	uint64_t fn; /* the callback's address in the target */
	/* The name, NUL-terminated, control characters replaced by '?'. */
	char name[LW_RING_NAME_MAX + 1];
} lw_rr_site_t;

/* The current-callback slot. */
typedef struct lw_rr_current {
	int running; /* 1 if a callback is running now */
	uint32_t site; /* its site id (0 when not running) */
	uint32_t kind; /* its kind */
	uint64_t start_ns; /* since when (CLOCK_MONOTONIC) */
} lw_rr_current_t;

/* The live counters; each field is whole, not all from one instant. */
typedef struct lw_rr_counters {
	uint64_t iterations, busy_ns, idle_ns, wait_since_ns, head;
	uint32_t pool_threads, pool_busy, pool_queued, pool_oldest_site;
	uint64_t pool_oldest_start_ns, pool_oldest_fn, pool_completed;
} lw_rr_counters_t;

/* A reader's position in one ring.  Several cursors may read one ring. */
typedef struct lw_rr_cursor {
	uint64_t pos; /* index of the next record to read */
	uint64_t lost; /* records overwritten before they could be read */
} lw_rr_cursor_t;

/* Validate a mapping in memory: 0, or a negative errno with a one-line
 * reason in why (-EAGAIN: the magic is not stored yet; -EPROTONOSUPPORT:
 * another ABI version; -EPROTO: anything else wrong).  The fuzzable core. */
int lw_rr_check(const void *map, size_t size, char *why, size_t whylen);

/* Open a ring through an fd of its memfd: fstat the size, require the
 * F_SEAL_SHRINK seal, mmap PROT_READ MAP_SHARED, lw_rr_check.  The fd is
 * not kept; the mapping is owned and unmapped by lw_rr_close. */
int lw_rr_open_fd(int fd, lw_rr_ring_t **out, char *why, size_t whylen);

/* Wrap memory the caller mapped (tests, fuzz); not owned, and it must
 * outlive the ring. */
int lw_rr_open_mem(const void *map, size_t size, lw_rr_ring_t **out, char *why,
		   size_t whylen);
void lw_rr_close(lw_rr_ring_t *r); /* NULL is fine */

pid_t lw_rr_pid(const lw_rr_ring_t *r);
pid_t lw_rr_tid(const lw_rr_ring_t *r); /* re-read live; 0 if unset/bad */
/* A bounded, NUL-terminated copy taken at open (control characters
 * replaced by '?'). */
const char *lw_rr_name(const lw_rr_ring_t *r);
uint32_t lw_rr_capacity(const lw_rr_ring_t *r);
uint64_t lw_rr_start_time(const lw_rr_ring_t *r);
uint32_t lw_rr_flags(const lw_rr_ring_t *r); /* LW_RING_F_* */
uint32_t lw_rr_clock(const lw_rr_ring_t *r); /* LW_RING_CLOCK_* */
uint64_t lw_rr_created_ns(const lw_rr_ring_t *r);
uint32_t lw_rr_site_capacity(const lw_rr_ring_t *r);
/* The memfd's inode number (0 for memory from lw_rr_open_mem): where the
 * target maps it can be found in its /proc/PID/maps. */
uint64_t lw_rr_inode(const lw_rr_ring_t *r);
/* The fd under which the process held the ring when lw_rr_attach found
 * it; -1 for a ring opened otherwise. */
int lw_rr_target_fd(const lw_rr_ring_t *r);

/* All rings of a process.  lw_rr_attach scans /proc/PID/fd for links
 * "/memfd:loopwatch (deleted)", opens each through /proc/PID/fd/N
 * read-only, and checks its identity: header pid == pid and header
 * start_time == the process's start time.  A ring that fails (inherited
 * across fork, pid reused, corrupt, not ready) is not attached but counted
 * in nskipped, the first reason in skipped_why.  Returns -ESRCH if there is
 * no such process, -EINVAL for a kernel thread, -EACCES if it belongs to
 * another user (or group), -EPERM if it is this user's own but not dumpable
 * (proc.h, lw_proc_denied), each with why.  A process without rings
 * attaches with nrings == 0 and a message in why. */
typedef struct lw_rr_proc {
	pid_t pid;
	uint64_t start_time; /* field 22 of /proc/PID/stat */
	size_t nrings;
	lw_rr_ring_t **rings;
	size_t nskipped;
	char skipped_why[256];
	/* A pidfd of the process, taken at attach (-1 if the kernel has
	 * none): it names that one process even if its pid is reused within
	 * the 10 ms tick that start_time is counted in. */
	int pidfd;
	/* private: the capacity of rings, and the memfds a scan found that
	 * can never be this process's rings (made by another process), so
	 * that lw_rr_rescan does not open them again. */
	size_t rings_cap;
	uint64_t *foreign_ino;
	size_t nforeign, foreign_cap;
} lw_rr_proc_t;

int lw_rr_attach(pid_t pid, lw_rr_proc_t **out, char *why, size_t whylen);
void lw_rr_detach(lw_rr_proc_t *p); /* NULL is fine */
/* Look again in /proc/PID/fd for rings made since: a loop created after
 * the attach (a thread that starts its loop later).  New rings are
 * appended to p->rings (earlier indexes stay valid); rings that fail are
 * not counted in nskipped (the attach's count stays what it said).
 * Returns how many were added, or a negative errno (-ESRCH: the process
 * is gone; -EACCES: its fds are closed to us now). */
int lw_rr_rescan(lw_rr_proc_t *p);
/* 1 if the same process still exists, 0 if it exited or the pid was
 * reused: its pidfd has not signalled exit (a zombie counts as exited), and
 * the pid's start time is unchanged. */
int lw_rr_proc_alive(const lw_rr_proc_t *p);
/* Whether the process still holds ring r of p: 1 if the fd it was found
 * under still names its memfd; 0 if that fd is closed or names another
 * file now (the loop was freed, or an exec closed it: rings are
 * close-on-exec); a negative errno when it cannot be told (the process
 * is gone, or the ring was not found by lw_rr_attach: -EINVAL).  The
 * mapping stays readable either way. */
int lw_rr_held(const lw_rr_proc_t *p, const lw_rr_ring_t *r);

/* Place a cursor at head (new records only) or at the oldest record still
 * readable.  The slot the writer would overwrite next cannot be told apart
 * from one being overwritten, so at most capacity - 1 old records are
 * readable. */
void lw_rr_cursor_init(const lw_rr_ring_t *r, lw_rr_cursor_t *c,
		       int from_oldest);
/* Copy up to n good records in order, following the seqlock protocol of
 * loopwatch_ring.h; returns how many.  Adds to c->lost exactly the records
 * skipped because they were overwritten before they could be read.  Bounded
 * work per call even on a hostile ring; 0 means nothing new right now. */
size_t lw_rr_read(const lw_rr_ring_t *r, lw_rr_cursor_t *c,
		  struct lw_ring_record *out, size_t n);

/* Sites published so far, bounded by site_capacity. */
uint32_t lw_rr_nsites(const lw_rr_ring_t *r);
/* Copy site id: -ENOENT if not published, -EAGAIN if it stayed mid-rename
 * through all retries, -EBADMSG if the entry contradicts itself. */
int lw_rr_site(const lw_rr_ring_t *r, uint32_t id, lw_rr_site_t *out);
/* The current-callback slot; -EAGAIN (not running) if it kept changing. */
int lw_rr_current(const lw_rr_ring_t *r, lw_rr_current_t *out);
void lw_rr_counters(const lw_rr_ring_t *r, lw_rr_counters_t *out);

/* A site for people: its name, else its function's address, "site#N"
 * when it cannot be read, "(no site)" for id 0.  Returns buf. */
const char *lw_rr_site_label(const lw_rr_ring_t *r, uint32_t id, char *buf,
			     size_t len);

/* A short lower-case name of a kind ("timer", "io", ...), the same as
 * lw_kind_name() of libloopwatch; "unknown" when out of range. */
const char *lw_rr_kind_name(uint32_t kind);

#endif /* LW_RING_READER_H */
