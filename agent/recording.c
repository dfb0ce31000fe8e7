/*
 * recording.c - the writer and the streaming reader of recordings (see
 * recording.h and docs/recording.md).
 *
 * Encoding: every integer is little-endian, written byte by byte so that
 * the format does not depend on the host or on struct layout; a string is
 * a u16 length and that many bytes, no NUL.  A record is
 *
 *     u16 type | u16 flags (0) | u32 payload length | payload | u32 CRC32
 *
 * with the CRC over the frame and the payload.  The reader copies a
 * record's payload into its own scratch buffer and decodes strings in
 * place: each string's bytes move two bytes back over their length prefix,
 * which leaves room for the NUL that the caller gets.
 */
#include "recording.h"
#include "text.h"
#include "why.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- CRC-32 ---- */

/* Slice-by-8: eight tables, eight bytes a step.  A byte-at-a-time CRC ran
 * at about 300 MB/s, which made it the writer's main cost at a million
 * callbacks a second; this runs several times faster, in portable C. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
				(crc_table[t - 1][i] >> 8) ^
				crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t lw_rec_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t a =
			crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
			       (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^
		      crc_table[5][(a >> 16) & 0xff] ^ crc_table[4][a >> 24] ^
		      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^
		      crc_table[1][p[6]] ^ crc_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

const char *lw_rec_type_name(unsigned type)
{
	switch (type) {
	case LW_REC_HEADER:
		return "header";
	case LW_REC_LOOP:
		return "loop";
	case LW_REC_SITE:
		return "site";
	case LW_REC_CALLBACK:
		return "callback";
	case LW_REC_KEVENT:
		return "kevent";
	case LW_REC_COUNTERS:
		return "counters";
	case LW_REC_END:
		return "end";
	case LW_REC_BLOCKING:
		return "blocking";
	case LW_REC_FATE:
		return "fate";
	}
	return "unknown";
}

/* ---- little-endian helpers ---- */

static inline uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	return p + 2;
}

static inline uint8_t *put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + 4;
}

static inline uint8_t *put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + 8;
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The bytes a string takes in a record, cut to LW_REC_STR_MAX. */
static size_t str_len(const char *s)
{
	return s == NULL ? 0 : strnlen(s, LW_REC_STR_MAX);
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
	size_t n = str_len(s);

	p = put16(p, (uint16_t)n);
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

/* ---- the writer ---- */

/* The buffer holds the largest record there can be (a kevent with every
 * string and frame at its limit is about 540 KiB), so a record is always
 * encoded in place, in one piece. */
#define WBUF_SIZE (LW_REC_PAYLOAD_MAX + LW_REC_FRAME_LEN + LW_REC_CRC_LEN)

struct lw_rec_writer {
	int fd;
	int flags;
	int err; /* the first error, a negative errno, sticky */
	uint8_t *buf;
	size_t len; /* bytes buffered */
	uint64_t written; /* bytes written out */
	uint64_t records, callbacks, kevents;
	char why[256];
};

static int w_fail(lw_rec_writer_t *w, int err, const char *what)
{
	if (w->err == 0) {
		w->err = err;
		lw_why(w->why, sizeof(w->why), "%s at byte %llu: %s", what,
		       (unsigned long long)(w->written + w->len),
		       strerror(-err));
	}
	return w->err;
}

static int w_out(lw_rec_writer_t *w)
{
	size_t done = 0;

	while (done < w->len) {
		ssize_t n = write(w->fd, w->buf + done, w->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Keep what was not written out of the offset
			 * reported: it is where the file stops. */
			memmove(w->buf, w->buf + done, w->len - done);
			w->len -= done;
			w->written += done;
			return w_fail(w, n < 0 ? -errno : -ENOSPC, "write");
		}
		done += (size_t)n;
	}
	w->written += w->len;
	w->len = 0;
	return 0;
}

/* Room for a record of payload bytes, flushing first if need be: the
 * pointer to its payload, or NULL after an error. */
static uint8_t *w_begin(lw_rec_writer_t *w, unsigned type, size_t payload)
{
	size_t need = LW_REC_FRAME_LEN + payload + LW_REC_CRC_LEN;
	uint8_t *p;

	if (w->err != 0)
		return NULL;
	if (w->len + need > WBUF_SIZE && w_out(w) != 0)
		return NULL;
	p = w->buf + w->len;
	p = put16(p, (uint16_t)type);
	p = put16(p, 0);
	p = put32(p, (uint32_t)payload);
	return p;
}

/* Close the record that starts at the buffer's end and whose payload
 * ends at end: add its CRC and count it. */
static int w_end(lw_rec_writer_t *w, uint8_t *end)
{
	uint8_t *start = w->buf + w->len;
	uint32_t crc = lw_rec_crc32(0, start, (size_t)(end - start));

	end = put32(end, crc);
	w->len = (size_t)(end - w->buf);
	w->records++;
	return 0;
}

static int w_header(lw_rec_writer_t *w, const lw_rec_header_t *h)
{
	size_t n = 8 * 3 + 4 + 4 + 2 * 5 + str_len(h->version) +
		   str_len(h->comm) + str_len(h->hostname) +
		   str_len(h->rings_why) + str_len(h->kprobes_why);
	uint8_t *p = w->buf;

	/* The preamble: magic, version, and a CRC of both, so that a
	 * flipped version bit is found as corruption, not as a version. */
	memcpy(p, LW_REC_MAGIC, LW_REC_MAGIC_LEN);
	put16(p + 8, LW_REC_MAJOR);
	put16(p + 10, LW_REC_MINOR);
	put32(p + 12, lw_rec_crc32(0, p, 12));
	w->len = LW_REC_PREAMBLE_LEN;

	p = w_begin(w, LW_REC_HEADER, n);
	p = put64(p, h->mono_ns);
	p = put64(p, h->real_ns);
	p = put64(p, h->min_ns);
	p = put32(p, (uint32_t)h->pid);
	p = put32(p, h->sources);
	p = put_str(p, h->version);
	p = put_str(p, h->comm);
	p = put_str(p, h->hostname);
	p = put_str(p, h->rings_why);
	p = put_str(p, h->kprobes_why);
	return w_end(w, p);
}

lw_rec_writer_t *lw_rec_open_fd(int fd, const lw_rec_header_t *h, int flags,
				char *why, size_t whylen)
{
	lw_rec_writer_t *w = calloc(1, sizeof(*w));

	if (w == NULL || (w->buf = malloc(WBUF_SIZE)) == NULL) {
		lw_why(why, whylen, "out of memory");
		free(w);
		close(fd);
		return NULL;
	}
	w->fd = fd;
	w->flags = flags;
	w_header(w, h);
	/* The header goes out at once: a file with a preamble and header is
	 * a (cut) recording, which says more than an empty file. */
	if (w_out(w) != 0) {
		lw_why(why, whylen, "%s", w->why);
		close(fd);
		free(w->buf);
		free(w);
		return NULL;
	}
	return w;
}

lw_rec_writer_t *lw_rec_open(const char *path, const lw_rec_header_t *h,
			     int flags, char *why, size_t whylen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0) {
		lw_why(why, whylen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	lw_rec_writer_t *w = lw_rec_open_fd(fd, h, flags, why, whylen);
	if (w == NULL) {
		/* Its reason names no file: name it. */
		char inner[256];

		snprintf(inner, sizeof(inner), "%s", why);
		lw_why(why, whylen, "%s: %s", path, inner);
	}
	return w;
}

int lw_rec_write_loop(lw_rec_writer_t *w, const lw_rec_loop_t *l)
{
	uint8_t *p = w_begin(w, LW_REC_LOOP, 16 + 2 + str_len(l->name));

	if (p == NULL)
		return w->err;
	p = put32(p, l->id);
	p = put32(p, (uint32_t)l->tid);
	p = put32(p, l->ring_capacity);
	p = put32(p, l->flags);
	p = put_str(p, l->name);
	return w_end(w, p);
}

int lw_rec_write_site(lw_rec_writer_t *w, const lw_rec_site_t *s)
{
	uint8_t *p = w_begin(w, LW_REC_SITE,
			     20 + 4 + str_len(s->name) + str_len(s->func));

	if (p == NULL)
		return w->err;
	p = put32(p, s->loop_id);
	p = put32(p, s->site_id);
	p = put16(p, s->kind);
	p = put16(p, 0);
	p = put64(p, s->fn);
	p = put_str(p, s->name);
	p = put_str(p, s->func);
	return w_end(w, p);
}

#define CALLBACK_LEN 32

int lw_rec_write_callback(lw_rec_writer_t *w, const lw_rec_callback_t *c)
{
	uint8_t *p = w_begin(w, LW_REC_CALLBACK, CALLBACK_LEN);

	if (p == NULL)
		return w->err;
	p = put32(p, c->loop_id);
	p = put32(p, c->site_id);
	p = put16(p, c->kind);
	p = put16(p, c->flags);
	p = put32(p, c->lateness_ns);
	p = put64(p, c->start_ns);
	p = put64(p, c->duration_ns);
	w->callbacks++;
	return w_end(w, p);
}

#define KEVENT_FIXED 80

int lw_rec_write_kevent(lw_rec_writer_t *w, const lw_rec_kevent_t *k)
{
	uint32_t nframes = k->frames == NULL ? 0 : k->nframes;
	uint32_t flags = k->flags;
	size_t n = KEVENT_FIXED + 2 + str_len(k->syscall) + 2 +
		   str_len(k->fd_path) + 2;
	uint8_t *p;

	if (nframes > LW_REC_FRAMES_MAX) {
		nframes = LW_REC_FRAMES_MAX;
		flags |= LW_REC_KEV_FRAMES_CUT;
	}
	for (uint32_t i = 0; i < nframes; i++)
		n += 2 + str_len(k->frames[i]);
	p = w_begin(w, LW_REC_KEVENT, n);
	if (p == NULL)
		return w->err;
	p = put32(p, k->loop_id);
	p = put32(p, k->kind);
	p = put32(p, (uint32_t)k->tid);
	p = put32(p, flags);
	p = put64(p, k->start_ns);
	p = put64(p, k->duration_ns);
	p = put32(p, k->nr);
	p = put32(p, (uint32_t)k->fd);
	p = put32(p, k->fd_kind);
	p = put32(p, k->site_id);
	p = put64(p, (uint64_t)k->ret);
	p = put64(p, k->off_cpu_ns);
	p = put64(p, k->preempt_ns);
	p = put64(p, k->span_start_ns);
	p = put_str(p, k->syscall);
	p = put_str(p, k->fd_path);
	p = put16(p, (uint16_t)nframes);
	for (uint32_t i = 0; i < nframes; i++)
		p = put_str(p, k->frames[i]);
	w->kevents++;
	return w_end(w, p);
}

#define COUNTERS_LEN 88

int lw_rec_write_counters(lw_rec_writer_t *w, const lw_rec_counters_t *c)
{
	uint8_t *p = w_begin(w, LW_REC_COUNTERS, COUNTERS_LEN);

	if (p == NULL)
		return w->err;
	p = put32(p, c->loop_id);
	p = put32(p, 0);
	p = put64(p, c->now_ns);
	p = put64(p, c->iterations);
	p = put64(p, c->busy_ns);
	p = put64(p, c->idle_ns);
	p = put64(p, c->lost_records);
	p = put64(p, c->kernel_lost);
	p = put32(p, c->pool_threads);
	p = put32(p, c->pool_busy);
	p = put32(p, c->pool_queued);
	p = put32(p, 0);
	p = put64(p, c->pool_completed);
	p = put64(p, c->pool_oldest_start_ns);
	return w_end(w, p);
}

#define BLOCKING_FIXED 40

int lw_rec_write_blocking(lw_rec_writer_t *w, const lw_rec_blocking_t *b)
{
	uint32_t nframes = b->frames == NULL ? 0 : b->nframes;
	size_t n = BLOCKING_FIXED + 2 + str_len(b->syscall) + 2;
	uint8_t *p;

	if (nframes > LW_REC_FRAMES_MAX)
		nframes = LW_REC_FRAMES_MAX;
	for (uint32_t i = 0; i < nframes; i++)
		n += 2 + str_len(b->frames[i]);
	p = w_begin(w, LW_REC_BLOCKING, n);
	if (p == NULL)
		return w->err;
	p = put32(p, b->loop_id);
	p = put32(p, b->site_id);
	p = put32(p, b->nr);
	p = put32(p, b->fd_kind);
	p = put64(p, b->calls);
	p = put64(p, b->total_ns);
	p = put64(p, b->max_ns);
	p = put_str(p, b->syscall);
	p = put16(p, (uint16_t)nframes);
	for (uint32_t i = 0; i < nframes; i++)
		p = put_str(p, b->frames[i]);
	return w_end(w, p);
}

#define FATE_FIXED 16

int lw_rec_write_fate(lw_rec_writer_t *w, const lw_rec_fate_t *f)
{
	uint8_t *p = w_begin(w, LW_REC_FATE, FATE_FIXED + 2 + str_len(f->line));

	if (p == NULL)
		return w->err;
	p = put32(p, f->end);
	p = put32(p, f->flags);
	p = put64(p, f->seen_ns);
	p = put_str(p, f->line);
	return w_end(w, p);
}

int lw_rec_write_item(lw_rec_writer_t *w, const lw_rec_item_t *it)
{
	switch (it->type) {
	case LW_REC_LOOP:
		return lw_rec_write_loop(w, &it->u.loop);
	case LW_REC_SITE:
		return lw_rec_write_site(w, &it->u.site);
	case LW_REC_CALLBACK:
		return lw_rec_write_callback(w, &it->u.callback);
	case LW_REC_KEVENT:
		return lw_rec_write_kevent(w, &it->u.kevent);
	case LW_REC_COUNTERS:
		return lw_rec_write_counters(w, &it->u.counters);
	case LW_REC_BLOCKING:
		return lw_rec_write_blocking(w, &it->u.blocking);
	case LW_REC_FATE:
		return lw_rec_write_fate(w, &it->u.fate);
	default:
		return -EINVAL;
	}
}

#define END_LEN 48

int lw_rec_flush(lw_rec_writer_t *w)
{
	if (w->err != 0)
		return w->err;
	if (w_out(w) != 0)
		return w->err;
	if ((w->flags & LW_REC_FSYNC) && fsync(w->fd) != 0)
		return w_fail(w, -errno, "fsync");
	return 0;
}

const char *lw_rec_writer_why(const lw_rec_writer_t *w)
{
	return w->why;
}

uint64_t lw_rec_writer_bytes(const lw_rec_writer_t *w)
{
	return w->written + w->len;
}

int lw_rec_close(lw_rec_writer_t *w, const lw_rec_end_t *end, char *why,
		 size_t whylen)
{
	int err;

	if (w == NULL)
		return 0;
	if (end != NULL) {
		uint8_t *p = w_begin(w, LW_REC_END, END_LEN);
		if (p != NULL) {
			p = put64(p, end->end_ns);
			p = put64(p, w->records);
			p = put64(p, w->callbacks);
			p = put64(p, w->kevents);
			p = put64(p, end->lost_records);
			p = put64(p, end->kernel_lost);
			w_end(w, p);
		}
	}
	lw_rec_flush(w);
	if (close(w->fd) != 0 && errno != EINTR)
		w_fail(w, -errno, "close");
	err = w->err;
	if (err != 0)
		lw_why(why, whylen, "%s", w->why);
	free(w->buf);
	free(w);
	return err;
}

/* ---- the reader ---- */

/* Bytes the reader reads from a file at a time; the buffer grows past it
 * only for a larger record, never past RBUF_MAX. */
#define RBUF_MIN (64u << 10)
#define RBUF_MAX (LW_REC_FRAME_LEN + LW_REC_PAYLOAD_MAX + LW_REC_CRC_LEN)

struct lw_rec_reader {
	int fd; /* -1 for memory */
	const uint8_t *mem; /* memory: the data */
	uint8_t *buf; /* file: the buffer */
	size_t cap; /* file: its size */
	size_t beg, end; /* the unread bytes: buf[beg, end) or mem[...] */
	int eof; /* file: read() returned 0 */
	uint64_t off; /* the file offset of the byte at beg */
	uint16_t major, minor; /* the file's version */
	int seen_header, seen_end;
	uint64_t records; /* records read, skipped ones included */
	uint64_t skipped;
	enum lw_rec_error err;
	uint64_t err_off;
	uint8_t *scratch; /* the current record's payload, decoded */
	size_t scratch_cap;
	const char *frames[LW_REC_FRAMES_MAX];
	char why[256];
};

static const uint8_t *r_data(const lw_rec_reader_t *r)
{
	return r->fd < 0 ? r->mem + r->beg : r->buf + r->beg;
}

/* Make n bytes available at r_data (n <= RBUF_MAX): the bytes that are,
 * which are fewer than n only at the end of the data, or -1 on a read
 * error. */
static ssize_t r_fill(lw_rec_reader_t *r, size_t n)
{
	if (r->fd < 0 || r->end - r->beg >= n || r->eof)
		return (ssize_t)(r->end - r->beg);
	if (n > r->cap) {
		size_t cap = r->cap;
		while (cap < n)
			cap *= 2;
		if (cap > RBUF_MAX)
			cap = RBUF_MAX;
		uint8_t *b = realloc(r->buf, cap);
		if (b == NULL) {
			errno = ENOMEM;
			return -1;
		}
		r->buf = b;
		r->cap = cap;
	}
	memmove(r->buf, r->buf + r->beg, r->end - r->beg);
	r->end -= r->beg;
	r->beg = 0;
	while (r->end < n) {
		ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -1;
		if (got == 0) {
			r->eof = 1;
			break;
		}
		r->end += (size_t)got;
	}
	return (ssize_t)(r->end - r->beg);
}

static void r_skip(lw_rec_reader_t *r, size_t n)
{
	r->beg += n;
	r->off += n;
}

static int r_fail(lw_rec_reader_t *r, enum lw_rec_error e, uint64_t off,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int r_fail(lw_rec_reader_t *r, enum lw_rec_error e, uint64_t off,
		  const char *fmt, ...)
{
	va_list ap;

	r->err = e;
	r->err_off = off;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* Check the preamble; 0, or -1 with the error set. */
static int r_preamble(lw_rec_reader_t *r)
{
	ssize_t n = r_fill(r, LW_REC_PREAMBLE_LEN);
	const uint8_t *p;
	size_t cmp;

	if (n < 0)
		return r_fail(r, LW_REC_E_IO, 0, "cannot read at offset 0: %s",
			      strerror(errno));
	if (n == 0)
		return r_fail(r, LW_REC_E_MAGIC, 0,
			      "not a loopwatch recording: empty file");
	p = r_data(r);
	cmp = (size_t)n < LW_REC_MAGIC_LEN ? (size_t)n : LW_REC_MAGIC_LEN;
	if (memcmp(p, LW_REC_MAGIC, cmp) != 0)
		return r_fail(r, LW_REC_E_MAGIC, 0,
			      "not a loopwatch recording: bad magic at offset "
			      "0");
	if ((size_t)n < LW_REC_PREAMBLE_LEN)
		return r_fail(r, LW_REC_E_CUT, 0,
			      "recording cut at offset %zd: the preamble needs "
			      "%d bytes",
			      n, LW_REC_PREAMBLE_LEN);
	if (get32(p + 12) != lw_rec_crc32(0, p, 12))
		return r_fail(r, LW_REC_E_CORRUPT, 0,
			      "corrupt recording: preamble CRC mismatch at "
			      "offset 0");
	r->major = get16(p + 8);
	r->minor = get16(p + 10);
	if (r->major > LW_REC_MAJOR)
		return r_fail(r, LW_REC_E_VERSION, 8,
			      "recording format %u.%u (at offset 8) is newer "
			      "than this loopwatch reads (%u.x): use a newer "
			      "loopwatch",
			      r->major, r->minor, LW_REC_MAJOR);
	if (r->major == 0)
		return r_fail(r, LW_REC_E_VERSION, 8,
			      "recording format 0.%u at offset 8 was never "
			      "released",
			      r->minor);
	r_skip(r, LW_REC_PREAMBLE_LEN);
	return 0;
}

static lw_rec_reader_t *r_new(int fd, char *why, size_t whylen)
{
	lw_rec_reader_t *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		lw_why(why, whylen, "out of memory");
		return NULL;
	}
	r->fd = fd;
	return r;
}

static lw_rec_reader_t *r_start(lw_rec_reader_t *r, char *why, size_t whylen)
{
	if (r_preamble(r) != 0) {
		lw_why(why, whylen, "%s", r->why);
		lw_rec_reader_close(r);
		return NULL;
	}
	return r;
}

lw_rec_reader_t *lw_rec_reader_open(const char *path, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	lw_rec_reader_t *r;

	if (fd < 0) {
		lw_why(why, whylen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	r = r_new(fd, why, whylen);
	if (r == NULL) {
		close(fd);
		return NULL;
	}
	r->buf = malloc(RBUF_MIN);
	if (r->buf == NULL) {
		lw_why(why, whylen, "out of memory");
		lw_rec_reader_close(r);
		return NULL;
	}
	r->cap = RBUF_MIN;
	return r_start(r, why, whylen);
}

lw_rec_reader_t *lw_rec_reader_open_mem(const void *data, size_t size,
					char *why, size_t whylen)
{
	lw_rec_reader_t *r = r_new(-1, why, whylen);

	if (r == NULL)
		return NULL;
	r->mem = data;
	r->end = size;
	return r_start(r, why, whylen);
}

void lw_rec_reader_close(lw_rec_reader_t *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->scratch);
	free(r);
}

enum lw_rec_error lw_rec_reader_error(const lw_rec_reader_t *r)
{
	return r->err;
}

uint64_t lw_rec_reader_error_offset(const lw_rec_reader_t *r)
{
	return r->err_off;
}

const char *lw_rec_reader_why(const lw_rec_reader_t *r)
{
	return r->why;
}

uint64_t lw_rec_reader_skipped(const lw_rec_reader_t *r)
{
	return r->skipped;
}

/* A cursor over one record's payload (in the scratch buffer).  The first
 * problem it meets is kept in `bad` and later reads return zeros, so a
 * decoder reads all its fields and checks once. */
struct cur {
	uint8_t *p;
	size_t len, pos;
	const char *bad; /* what went wrong, NULL if nothing */
	const char *field; /* the field being read */
};

static const uint8_t *c_take(struct cur *c, size_t n, const char *field)
{
	if (c->bad != NULL)
		return NULL;
	if (c->len - c->pos < n) {
		c->bad = "runs past the end of the record";
		c->field = field;
		return NULL;
	}
	c->pos += n;
	return c->p + c->pos - n;
}

static uint16_t c16(struct cur *c, const char *field)
{
	const uint8_t *p = c_take(c, 2, field);
	return p ? get16(p) : 0;
}

static uint32_t c32(struct cur *c, const char *field)
{
	const uint8_t *p = c_take(c, 4, field);
	return p ? get32(p) : 0;
}

static uint64_t c64(struct cur *c, const char *field)
{
	const uint8_t *p = c_take(c, 8, field);
	return p ? get64(p) : 0;
}

/* A string, NUL-terminated in place (its bytes move over its prefix). */
static const char *cstr(struct cur *c, const char *field)
{
	uint8_t *start = c->p + c->pos;
	uint16_t n = c16(c, field);
	const uint8_t *s;

	if (c->bad != NULL)
		return "";
	if (n > LW_REC_STR_MAX) {
		c->bad = "string longer than 4095 bytes";
		c->field = field;
		return "";
	}
	s = c_take(c, n, field);
	if (s == NULL)
		return "";
	if (memchr(s, '\0', n) != NULL) {
		c->bad = "string contains a NUL byte";
		c->field = field;
		return "";
	}
	memmove(start, s, n);
	start[n] = '\0';
	/* A recording may come from anywhere: what it says goes to a
	 * terminal cleaned, as the live path's strings are. */
	return lw_text_clean((char *)start);
}

static void d_header(struct cur *c, lw_rec_reader_t *r, lw_rec_header_t *h)
{
	h->major = r->major;
	h->minor = r->minor;
	h->mono_ns = c64(c, "mono_ns");
	h->real_ns = c64(c, "real_ns");
	h->min_ns = c64(c, "min_ns");
	h->pid = (int32_t)c32(c, "pid");
	h->sources = c32(c, "sources");
	h->version = cstr(c, "version");
	h->comm = cstr(c, "comm");
	h->hostname = cstr(c, "hostname");
	h->rings_why = cstr(c, "rings_why");
	h->kprobes_why = cstr(c, "kprobes_why");
}

static void d_loop(struct cur *c, lw_rec_loop_t *l)
{
	l->id = c32(c, "id");
	l->tid = (int32_t)c32(c, "tid");
	l->ring_capacity = c32(c, "ring_capacity");
	l->flags = c32(c, "flags");
	l->name = cstr(c, "name");
}

static void d_site(struct cur *c, lw_rec_site_t *s)
{
	s->loop_id = c32(c, "loop_id");
	s->site_id = c32(c, "site_id");
	s->kind = c16(c, "kind");
	c16(c, "reserved");
	s->fn = c64(c, "fn");
	s->name = cstr(c, "name");
	s->func = cstr(c, "func");
}

static void d_callback(struct cur *c, lw_rec_callback_t *cb)
{
	cb->loop_id = c32(c, "loop_id");
	cb->site_id = c32(c, "site_id");
	cb->kind = c16(c, "kind");
	cb->flags = c16(c, "flags");
	cb->lateness_ns = c32(c, "lateness_ns");
	cb->start_ns = c64(c, "start_ns");
	cb->duration_ns = c64(c, "duration_ns");
}

static void d_kevent(struct cur *c, lw_rec_reader_t *r, lw_rec_kevent_t *k)
{
	k->loop_id = c32(c, "loop_id");
	k->kind = c32(c, "kind");
	k->tid = (int32_t)c32(c, "tid");
	k->flags = c32(c, "flags");
	k->start_ns = c64(c, "start_ns");
	k->duration_ns = c64(c, "duration_ns");
	k->nr = c32(c, "nr");
	k->fd = (int32_t)c32(c, "fd");
	k->fd_kind = c32(c, "fd_kind");
	k->site_id = c32(c, "site_id");
	k->ret = (int64_t)c64(c, "ret");
	k->off_cpu_ns = c64(c, "off_cpu_ns");
	k->preempt_ns = c64(c, "preempt_ns");
	k->span_start_ns = c64(c, "span_start_ns");
	k->syscall = cstr(c, "syscall");
	k->fd_path = cstr(c, "fd_path");
	k->nframes = c16(c, "nframes");
	k->frames = r->frames;
	if (c->bad == NULL && k->nframes > LW_REC_FRAMES_MAX) {
		c->bad = "more frames than 128";
		c->field = "nframes";
	}
	if (c->bad != NULL) {
		k->nframes = 0;
		return;
	}
	for (uint32_t i = 0; i < k->nframes; i++)
		r->frames[i] = cstr(c, "frames");
}

static void d_blocking(struct cur *c, lw_rec_reader_t *r, lw_rec_blocking_t *b)
{
	b->loop_id = c32(c, "loop_id");
	b->site_id = c32(c, "site_id");
	b->nr = c32(c, "nr");
	b->fd_kind = c32(c, "fd_kind");
	b->calls = c64(c, "calls");
	b->total_ns = c64(c, "total_ns");
	b->max_ns = c64(c, "max_ns");
	b->syscall = cstr(c, "syscall");
	b->nframes = c16(c, "nframes");
	b->frames = r->frames;
	if (c->bad == NULL && b->nframes > LW_REC_FRAMES_MAX) {
		c->bad = "more frames than 128";
		c->field = "nframes";
	}
	if (c->bad != NULL) {
		b->nframes = 0;
		return;
	}
	for (uint32_t i = 0; i < b->nframes; i++)
		r->frames[i] = cstr(c, "frames");
}

static void d_fate(struct cur *c, const lw_rec_reader_t *r, lw_rec_fate_t *f)
{
	int newer = r->minor > LW_REC_MINOR;

	f->end = c32(c, "end");
	f->flags = c32(c, "flags");
	f->seen_ns = c64(c, "seen_ns");
	f->line = cstr(c, "line");
	/* A newer minor may add ends and flags: read as "exited" with no
	 * flags known; in a file of this minor they are a fault. */
	if (c->bad == NULL &&
	    (f->end < LW_REC_FATE_EXITED || f->end > LW_REC_FATE_REUSED)) {
		if (newer) {
			f->end = LW_REC_FATE_EXITED;
		} else {
			c->bad = "not 1 (exited), 2 (exec'd) or 3 (PID "
				 "reused)";
			c->field = "end";
		}
	}
	if (c->bad == NULL && (f->flags & ~(uint32_t)LW_REC_FATE_FAILED)) {
		if (newer) {
			f->flags &= LW_REC_FATE_FAILED;
		} else {
			c->bad = "unknown flags";
			c->field = "flags";
		}
	}
	if (c->bad != NULL)
		f->line = "";
}

static void d_counters(struct cur *c, lw_rec_counters_t *k)
{
	k->loop_id = c32(c, "loop_id");
	c32(c, "reserved");
	k->now_ns = c64(c, "now_ns");
	k->iterations = c64(c, "iterations");
	k->busy_ns = c64(c, "busy_ns");
	k->idle_ns = c64(c, "idle_ns");
	k->lost_records = c64(c, "lost_records");
	k->kernel_lost = c64(c, "kernel_lost");
	k->pool_threads = c32(c, "pool_threads");
	k->pool_busy = c32(c, "pool_busy");
	k->pool_queued = c32(c, "pool_queued");
	c32(c, "reserved");
	k->pool_completed = c64(c, "pool_completed");
	k->pool_oldest_start_ns = c64(c, "pool_oldest_start_ns");
}

static void d_end(struct cur *c, lw_rec_end_t *e)
{
	e->end_ns = c64(c, "end_ns");
	e->records = c64(c, "records");
	e->callbacks = c64(c, "callbacks");
	e->kevents = c64(c, "kevents");
	e->lost_records = c64(c, "lost_records");
	e->kernel_lost = c64(c, "kernel_lost");
}

int lw_rec_next(lw_rec_reader_t *r, lw_rec_item_t *item)
{
	const uint8_t *p;
	uint64_t off;
	ssize_t n;
	uint32_t len;
	unsigned type;
	struct cur c;

	for (;;) {
		if (r->err != LW_REC_OK)
			return -1;
		off = r->off;
		n = r_fill(r, LW_REC_FRAME_LEN);
		if (n < 0)
			return r_fail(r, LW_REC_E_IO, off,
				      "cannot read at offset %llu: %s",
				      (unsigned long long)off, strerror(errno));
		if (r->seen_end) {
			if (n == 0)
				return 0;
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: data after the end "
				      "record at offset %llu",
				      (unsigned long long)off);
		}
		if (n == 0)
			return r_fail(r, LW_REC_E_CUT, off,
				      "recording cut at offset %llu: no end "
				      "record (the recorder did not finish)",
				      (unsigned long long)off);
		if (n < LW_REC_FRAME_LEN)
			return r_fail(r, LW_REC_E_CUT, off,
				      "recording cut at offset %llu: a record "
				      "frame needs 8 bytes, %zd left",
				      (unsigned long long)off, n);
		p = r_data(r);
		type = get16(p);
		len = get32(p + 4);
		if (len > LW_REC_PAYLOAD_MAX)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: record at offset "
				      "%llu (%s) claims %u bytes, over the "
				      "limit of %u",
				      (unsigned long long)off,
				      lw_rec_type_name(type), len,
				      LW_REC_PAYLOAD_MAX);
		size_t whole = LW_REC_FRAME_LEN + len + LW_REC_CRC_LEN;
		n = r_fill(r, whole);
		if (n < 0)
			return r_fail(r, LW_REC_E_IO, off,
				      "cannot read at offset %llu: %s",
				      (unsigned long long)off, strerror(errno));
		if ((size_t)n < whole)
			return r_fail(r, LW_REC_E_CUT, off,
				      "recording cut at offset %llu: the %s "
				      "record there needs %zu bytes, %zd left "
				      "(or its length is corrupt)",
				      (unsigned long long)off,
				      lw_rec_type_name(type), whole, n);
		p = r_data(r);
		uint32_t want = get32(p + LW_REC_FRAME_LEN + len);
		uint32_t got = lw_rec_crc32(0, p, LW_REC_FRAME_LEN + len);
		if (want != got)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: CRC mismatch in the "
				      "record at offset %llu (%s, %u bytes)",
				      (unsigned long long)off,
				      lw_rec_type_name(type), len);
		/* Flags are 0 in this minor; a newer one may give them a
		 * meaning that an older reader can ignore. */
		if (get16(p + 2) != 0 && r->minor <= LW_REC_MINOR)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: record at offset "
				      "%llu has unknown flags 0x%x",
				      (unsigned long long)off, get16(p + 2));
		if (!r->seen_header && type != LW_REC_HEADER)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: the first record, at "
				      "offset %llu, is a %s, not the header",
				      (unsigned long long)off,
				      lw_rec_type_name(type));
		if (r->seen_header && type == LW_REC_HEADER)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: a second header at "
				      "offset %llu",
				      (unsigned long long)off);
		/* The fate record came with 1.1: in a 1.0 file it is as
		 * unknown as any other. */
		if (type < LW_REC_HEADER || type > LW_REC_FATE ||
		    (type == LW_REC_FATE && r->major == 1 && r->minor < 1)) {
			if (r->minor <= LW_REC_MINOR)
				return r_fail(r, LW_REC_E_CORRUPT, off,
					      "corrupt recording: unknown "
					      "record type %u at offset %llu "
					      "in a format %u.%u file",
					      type, (unsigned long long)off,
					      r->major, r->minor);
			/* A newer minor's record: skip it. */
			r_skip(r, whole);
			r->records++;
			r->skipped++;
			continue;
		}

		/* The payload goes into scratch, where strings get their
		 * NULs; scratch is never larger than LW_REC_PAYLOAD_MAX + 1. */
		if (len + 1 > r->scratch_cap) {
			size_t cap = r->scratch_cap ? r->scratch_cap : 256;
			while (cap < len + 1)
				cap *= 2;
			if (cap > LW_REC_PAYLOAD_MAX + 1)
				cap = LW_REC_PAYLOAD_MAX + 1;
			uint8_t *s = realloc(r->scratch, cap);
			if (s == NULL)
				return r_fail(r, LW_REC_E_IO, off,
					      "cannot read the record at "
					      "offset %llu: out of memory",
					      (unsigned long long)off);
			r->scratch = s;
			r->scratch_cap = cap;
		}
		memcpy(r->scratch, p + LW_REC_FRAME_LEN, len);
		c = (struct cur){ .p = r->scratch, .len = len };
		memset(item, 0, sizeof(*item));
		item->type = (enum lw_rec_type)type;
		item->offset = off;
		switch (type) {
		case LW_REC_HEADER:
			d_header(&c, r, &item->u.header);
			break;
		case LW_REC_LOOP:
			d_loop(&c, &item->u.loop);
			break;
		case LW_REC_SITE:
			d_site(&c, &item->u.site);
			break;
		case LW_REC_CALLBACK:
			d_callback(&c, &item->u.callback);
			break;
		case LW_REC_KEVENT:
			d_kevent(&c, r, &item->u.kevent);
			break;
		case LW_REC_COUNTERS:
			d_counters(&c, &item->u.counters);
			break;
		case LW_REC_BLOCKING:
			d_blocking(&c, r, &item->u.blocking);
			break;
		case LW_REC_FATE:
			d_fate(&c, r, &item->u.fate);
			break;
		case LW_REC_END:
			d_end(&c, &item->u.end);
			break;
		}
		if (c.bad != NULL)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: %s record at offset "
				      "%llu: field %s: %s",
				      lw_rec_type_name(type),
				      (unsigned long long)off, c.field, c.bad);
		/* Fields appended by a newer minor are ignored; in a file of
		 * this minor or older, extra bytes are a fault. */
		if (c.pos < c.len && r->minor <= LW_REC_MINOR)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: %s record at offset "
				      "%llu has %zu bytes past its last field",
				      lw_rec_type_name(type),
				      (unsigned long long)off, c.len - c.pos);
		if (type == LW_REC_END && item->u.end.records != r->records)
			return r_fail(r, LW_REC_E_CORRUPT, off,
				      "corrupt recording: the end record at "
				      "offset %llu counts %llu records before "
				      "it, the file has %llu",
				      (unsigned long long)off,
				      (unsigned long long)item->u.end.records,
				      (unsigned long long)r->records);
		r_skip(r, whole);
		r->records++;
		if (type == LW_REC_HEADER)
			r->seen_header = 1;
		if (type == LW_REC_END)
			r->seen_end = 1;
		return 1;
	}
}
