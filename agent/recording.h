/*
 * recording.h - the recording file of `loopwatch record` and its reader
 * for `loopwatch report` (lw_rec_*).  docs/recording.md describes the
 * format byte by byte and the versioning rules.
 *
 * A recording is a 16-byte preamble (magic "LWREC\0\0\0", format version
 * major.minor, a CRC) followed by a stream of typed, length-prefixed
 * records, each with its own CRC32, all little-endian:
 *
 *     header  loop* site* (callback | kevent | counters | blocking |
 *                          loop | site)*  end
 *
 * The first record is always the header; the end record is the clean-end
 * marker, and a recording without one was cut (the recorder was killed or
 * the disk filled): the reader says so and everything before the cut is
 * still read.
 *
 * The writer buffers in memory and writes in large blocks; it reports the
 * first error once, at the call that hit it and again at lw_rec_close.
 *
 * The reader treats the file as hostile: every length is bounded before it
 * is used (a record's payload by LW_REC_PAYLOAD_MAX, a string by
 * LW_REC_STR_MAX, a stack by LW_REC_FRAMES_MAX), strings must not contain
 * NUL, and memory never grows past those caps whatever a length field says.
 * An error names the byte offset of the record where it was found, and the
 * items returned before it stay valid to use (they were copied out by the
 * caller).
 */
#ifndef LW_RECORDING_H
#define LW_RECORDING_H

#include <stddef.h>
#include <stdint.h>

/* The format this code writes.  A reader refuses a higher major and reads
 * a higher minor, skipping record types it does not know and fields
 * appended to records it knows. */
#define LW_REC_MAJOR 1
#define LW_REC_MINOR 1 /* 1.1: the fate record */

#define LW_REC_MAGIC "LWREC\0\0\0" /* 8 bytes, the NULs included */
#define LW_REC_MAGIC_LEN 8
#define LW_REC_PREAMBLE_LEN 16 /* magic, major, minor, CRC32 */
#define LW_REC_FRAME_LEN 8 /* type, flags, payload length */
#define LW_REC_CRC_LEN 4

/* Limits a reader enforces and a writer respects (by cutting strings and
 * stacks): they bound every allocation of the reader. */
#define LW_REC_PAYLOAD_MAX (1u << 20) /* bytes of one record's payload */
#define LW_REC_STR_MAX 4095 /* bytes of one string, without a NUL */
#define LW_REC_FRAMES_MAX 128 /* frames of one stack */

/* Record types (the u16 type of a record's frame). */
enum lw_rec_type {
	LW_REC_HEADER = 1,
	LW_REC_LOOP = 2,
	LW_REC_SITE = 3,
	LW_REC_CALLBACK = 4,
	LW_REC_KEVENT = 5,
	LW_REC_COUNTERS = 6,
	LW_REC_END = 7,
	LW_REC_BLOCKING = 8,
	LW_REC_FATE = 9, /* format 1.1 on */
};

/* lw_rec_header_t.sources: which sources were live. */
enum {
	LW_REC_SRC_RINGS = 1, /* the loops' rings were read */
	LW_REC_SRC_KPROBES = 2, /* the kernel probes were attached */
};

/* lw_rec_kevent_t.flags */
enum {
	LW_REC_KEV_PREEMPTED = 0x1, /* off-CPU: involuntary (preempted) */
	LW_REC_KEV_IN_SYSCALL = 0x2, /* off-CPU: inside a known syscall */
	LW_REC_KEV_NONBLOCK = 0x4, /* syscall: the fd had O_NONBLOCK */
	LW_REC_KEV_STACK_CUT = 0x8, /* the stack was cut (depth or error) */
	LW_REC_KEV_FRAMES_CUT = 0x10, /* the writer dropped frames past
				       * LW_REC_FRAMES_MAX */
};

/* The recording's header: who was recorded, when, and with what.  For the
 * writer the strings may be NULL (written as ""); the reader's are never
 * NULL.  major and minor are set by the reader (the file's version) and
 * ignored by the writer. */
typedef struct lw_rec_header {
	uint16_t major, minor; /* the file's format version */
	const char *version; /* the loopwatch that wrote it, "0.1.0" */
	int32_t pid; /* the recorded process */
	const char *comm; /* its command name (/proc/PID/comm) */
	const char *hostname; /* the machine */
	uint64_t mono_ns; /* CLOCK_MONOTONIC at the start of the recording */
	uint64_t real_ns; /* CLOCK_REALTIME at the same instant: wall time of
			   * any event is real_ns + (t - mono_ns) */
	uint64_t min_ns; /* the threshold of the kernel probes */
	uint32_t sources; /* LW_REC_SRC_* that were live */
	const char *rings_why; /* why rings were not read, "" if they were */
	const char *kprobes_why; /* why kernel probes were not, "" if were */
} lw_rec_header_t;

/* A loop: one ring, or a thread watched by the kernel probes only. */
typedef struct lw_rec_loop {
	uint32_t id; /* the recording's loop id, 1-based, unique */
	int32_t tid; /* the loop's thread */
	uint32_t ring_capacity; /* records in its ring; 0: no ring */
	uint32_t flags; /* the ring's LW_RING_F_*, 0 without a ring */
	const char *name; /* the loop's name, "" if none */
} lw_rec_loop_t;

/* A site of a loop; (loop_id, site_id) is unique.  A site may be written
 * again with the same ids to rename it; the later one wins. */
typedef struct lw_rec_site {
	uint32_t loop_id;
	uint32_t site_id; /* the ring's site id */
	uint16_t kind; /* lw_kind_t of loopwatch.h */
	uint64_t fn; /* the callback's address in the target */
	const char *name; /* the given name, "" if none */
	const char *func; /* fn symbolized: "handler+0x12 (x.c:40)", or "" */
} lw_rec_site_t;

/* One callback: the fields of struct lw_ring_record, with its loop. */
typedef struct lw_rec_callback {
	uint32_t loop_id;
	uint32_t site_id;
	uint16_t kind; /* lw_kind_t */
	uint16_t flags; /* LW_REC_LATENESS_SATURATED of loopwatch_ring.h */
	uint32_t lateness_ns; /* timers: start minus due */
	uint64_t start_ns; /* CLOCK_MONOTONIC */
	uint64_t duration_ns;
} lw_rec_callback_t;

/* One kernel event (bpf/loopwatch_bpf.h), with everything a report needs
 * already resolved while the target lived: the syscall's name, the fd's
 * path, the stack's symbols. */
typedef struct lw_rec_kevent {
	uint32_t loop_id; /* the loop whose thread it is, 0 if none */
	/* The site of the callback it was joined to; 0 outside callbacks and
	 * in loops without rings. */
	uint32_t site_id;
	uint32_t kind; /* LW_BPF_EV_SYSCALL, _OFFCPU, _SPAN or _SAMPLE */
	int32_t tid;
	uint32_t flags; /* LW_REC_KEV_* */
	uint64_t start_ns; /* CLOCK_MONOTONIC */
	uint64_t duration_ns; /* 0 for a sample */
	uint32_t nr; /* syscall number (x86-64), 0 for other kinds */
	int32_t fd; /* the syscall's fd, -1 if none */
	uint32_t fd_kind; /* LW_BPF_FD_* */
	int64_t ret; /* the syscall's return value */
	uint64_t off_cpu_ns; /* of duration_ns, the time off CPU */
	uint64_t preempt_ns; /* of that, preempted */
	uint64_t span_start_ns; /* a sample's span, 0 if none */
	const char *syscall; /* "fsync", "" for other kinds */
	const char *fd_path; /* "/var/db/x", "socket:[123]", "" if none */
	uint32_t nframes; /* <= LW_REC_FRAMES_MAX */
	const char *const *frames; /* innermost first, symbolized */
} lw_rec_kevent_t;

/* Calls that can block (bpf/loopwatch_bpf.h: file I/O, fsync, sleeps,
 * futex waits), counted in the kernel even when fast, for one (loop, site,
 * syscall, fd kind): totals since the start of the recording, so a later
 * record for the same four replaces an earlier one. */
typedef struct lw_rec_blocking {
	uint32_t loop_id;
	uint32_t site_id; /* 0: outside callbacks, or a loop without rings */
	uint32_t nr; /* syscall number (x86-64) */
	uint32_t fd_kind; /* LW_BPF_FD_* */
	uint64_t calls, total_ns, max_ns;
	const char *syscall; /* its name */
	uint32_t nframes; /* <= LW_REC_FRAMES_MAX */
	const char *const *frames; /* one call's stack (frame pointers) */
} lw_rec_blocking_t;

/* A loop's counters at one instant (periodic), and its pool's state. */
typedef struct lw_rec_counters {
	uint32_t loop_id;
	uint64_t now_ns; /* when they were read, CLOCK_MONOTONIC */
	uint64_t iterations;
	uint64_t busy_ns;
	uint64_t idle_ns;
	uint64_t lost_records; /* ring records lost so far */
	uint64_t kernel_lost; /* kernel events lost so far */
	uint32_t pool_threads;
	uint32_t pool_busy;
	uint32_t pool_queued;
	uint64_t pool_completed;
	uint64_t pool_oldest_start_ns; /* oldest running job, 0 if none */
} lw_rec_counters_t;

/* How the watch of the process ended when the process did (fate.h): it
 * exited or was killed, exec'd, or its PID was reused.  At most one, just
 * before the end record; none when the watch ended first. */
enum lw_rec_fate_end {
	LW_REC_FATE_EXITED = 1, /* exited, or a signal killed it */
	LW_REC_FATE_EXECED = 2,
	LW_REC_FATE_REUSED = 3,
};
enum {
	/* A signal killed it, or it exited with a status other than 0. */
	LW_REC_FATE_FAILED = 0x1,
};
typedef struct lw_rec_fate {
	uint32_t end; /* enum lw_rec_fate_end */
	uint32_t flags; /* LW_REC_FATE_* */
	uint64_t seen_ns; /* when the agent saw it, CLOCK_MONOTONIC */
	const char *line; /* the line the agent said ("process 12 exited
			   * with status 3") */
} lw_rec_fate_t;

/* The clean end.  The writer fills records, callbacks and kevents itself
 * (the counts it wrote before this record); the caller gives the rest. */
typedef struct lw_rec_end {
	uint64_t end_ns; /* CLOCK_MONOTONIC at the end */
	uint64_t records; /* records before the end one, header included */
	uint64_t callbacks;
	uint64_t kevents;
	uint64_t lost_records; /* ring records lost in total */
	uint64_t kernel_lost; /* kernel events lost in total */
} lw_rec_end_t;

/* ---- the writer ---- */

typedef struct lw_rec_writer lw_rec_writer_t;

/* lw_rec_open flags */
enum {
	LW_REC_FSYNC = 1, /* fsync at lw_rec_flush and lw_rec_close */
};

/* Create (or truncate) path and write the preamble and the header.  NULL
 * with why filled on failure. */
lw_rec_writer_t *lw_rec_open(const char *path, const lw_rec_header_t *h,
			     int flags, char *why, size_t whylen);
/* The same on an open fd, which the writer owns from now on (it closes it
 * even when this call fails). */
lw_rec_writer_t *lw_rec_open_fd(int fd, const lw_rec_header_t *h, int flags,
				char *why, size_t whylen);

/* Append one record.  0, or a negative errno once writing failed (every
 * later call returns it too; lw_rec_writer_why says why).  Strings longer
 * than LW_REC_STR_MAX are cut, stacks past LW_REC_FRAMES_MAX too (with
 * LW_REC_KEV_FRAMES_CUT). */
int lw_rec_write_loop(lw_rec_writer_t *w, const lw_rec_loop_t *l);
int lw_rec_write_site(lw_rec_writer_t *w, const lw_rec_site_t *s);
int lw_rec_write_callback(lw_rec_writer_t *w, const lw_rec_callback_t *c);
int lw_rec_write_kevent(lw_rec_writer_t *w, const lw_rec_kevent_t *k);
int lw_rec_write_counters(lw_rec_writer_t *w, const lw_rec_counters_t *c);
int lw_rec_write_blocking(lw_rec_writer_t *w, const lw_rec_blocking_t *b);
int lw_rec_write_fate(lw_rec_writer_t *w, const lw_rec_fate_t *f);
/* Any of the above by its item (a header or an end item is refused with
 * -EINVAL: they belong to lw_rec_open and lw_rec_close). */
struct lw_rec_item;
int lw_rec_write_item(lw_rec_writer_t *w, const struct lw_rec_item *it);

/* Write out what is buffered (and fsync with LW_REC_FSYNC), so that a
 * recorder killed later leaves a readable, if cut, file. */
int lw_rec_flush(lw_rec_writer_t *w);

/* The first write error, "" if none. */
const char *lw_rec_writer_why(const lw_rec_writer_t *w);

/* Bytes written so far, buffered ones included. */
uint64_t lw_rec_writer_bytes(const lw_rec_writer_t *w);

/* Write the end record (if end is not NULL; NULL leaves the recording cut,
 * as a killed recorder would), flush, fsync with LW_REC_FSYNC, close and
 * free.  0, or a negative errno with why filled with the first error.
 * lw_rec_close(NULL, ...) does nothing. */
int lw_rec_close(lw_rec_writer_t *w, const lw_rec_end_t *end, char *why,
		 size_t whylen);

/* ---- the reader ---- */

typedef struct lw_rec_reader lw_rec_reader_t;

/* What went wrong, for a caller that needs more than the message. */
enum lw_rec_error {
	LW_REC_OK = 0,
	LW_REC_E_IO, /* read() failed */
	LW_REC_E_MAGIC, /* not a recording */
	LW_REC_E_VERSION, /* a newer major version */
	LW_REC_E_CUT, /* the file ends early: cut, no end record */
	LW_REC_E_CORRUPT, /* a CRC mismatch or a malformed record */
};

/* One item of the stream: the pointers in it stay valid until the next
 * lw_rec_next or lw_rec_reader_close. */
typedef struct lw_rec_item {
	enum lw_rec_type type;
	uint64_t offset; /* the record's byte offset in the file */
	union {
		lw_rec_header_t header;
		lw_rec_loop_t loop;
		lw_rec_site_t site;
		lw_rec_callback_t callback;
		lw_rec_kevent_t kevent;
		lw_rec_counters_t counters;
		lw_rec_blocking_t blocking;
		lw_rec_fate_t fate;
		lw_rec_end_t end;
	} u;
} lw_rec_item_t;

/* Open a recording and check its preamble (magic, version).  NULL with why
 * filled: "not a loopwatch recording: bad magic at offset 0", "recording
 * format 2.0 (at offset 8) is newer than this loopwatch reads (1.x) ...", or an
 * errno. */
lw_rec_reader_t *lw_rec_reader_open(const char *path, char *why, size_t whylen);
/* The same over size bytes in memory, which must outlive the reader. */
lw_rec_reader_t *lw_rec_reader_open_mem(const void *data, size_t size,
					char *why, size_t whylen);
/* Nothing for NULL. */
void lw_rec_reader_close(lw_rec_reader_t *r);

/* The next item: 1 with *item filled (the header first, the end last), 0
 * after the end record at the end of the file, or -1 on an error (sticky:
 * every later call returns -1 too) with lw_rec_reader_why and
 * lw_rec_reader_error_offset saying what and where.  Record types of a
 * newer minor version are skipped, not returned. */
int lw_rec_next(lw_rec_reader_t *r, lw_rec_item_t *item);

/* After -1: the kind of error, the offset of the record (or of the cut),
 * and a one-line reason that names the offset. */
enum lw_rec_error lw_rec_reader_error(const lw_rec_reader_t *r);
uint64_t lw_rec_reader_error_offset(const lw_rec_reader_t *r);
const char *lw_rec_reader_why(const lw_rec_reader_t *r);

/* Records skipped because their type is newer than this reader. */
uint64_t lw_rec_reader_skipped(const lw_rec_reader_t *r);

/* The name of a record type: "callback", or "unknown". */
const char *lw_rec_type_name(unsigned type);

/* CRC-32 (IEEE 802.3, the one of zlib and gzip), for the tests and tools:
 * crc is the running value, 0 to start. */
uint32_t lw_rec_crc32(uint32_t crc, const void *data, size_t len);

#endif /* LW_RECORDING_H */
