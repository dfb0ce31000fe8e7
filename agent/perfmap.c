/*
 * perfmap.c - the parser of /tmp/perf-PID.map (see perfmap.h).
 *
 * Parsing is two passes over the text: one counts lines, so the entry array
 * and the name arena are allocated once with sizes the input bounds (no
 * growth arithmetic to overflow); the second fills them.  Overlaps are then
 * resolved by a sweep over the sorted range boundaries with a max-heap on
 * line order, which gives at most 2n - 1 disjoint segments in O(n log n).
 */
#include "perfmap.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One parsed line. */
struct entry {
	uint64_t start, end; /* [start, end), end = START + SIZE */
	size_t name; /* offset of the name in the arena */
	size_t seq; /* line order: the later line wins an overlap */
};

/* One disjoint piece of the address space and the entry that names it. */
struct seg {
	uint64_t start, end;
	size_t entry;
};

struct lw_perfmap {
	struct entry *entries; /* sorted by start once parsed */
	size_t nentries;
	struct seg *segs; /* sorted, disjoint */
	size_t nsegs;
	char *names;
	size_t skipped;
};

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A hex number at *p (an optional 0x first): 0 and *p past it, or -1 if
 * there is no digit or the value does not fit 64 bits. */
static int parse_hex(const char **p, const char *end, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	int digits = 0, d;

	if (end - s >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
	    hexval(s[2]) >= 0)
		s += 2;
	for (; s < end && (d = hexval(*s)) >= 0; s++, digits++) {
		if (v > (UINT64_MAX >> 4))
			return -1;
		v = (v << 4) | (uint64_t)d;
	}
	if (digits == 0)
		return -1;
	*p = s;
	*out = v;
	return 0;
}

/* Parse one line (without its newline) into e and the arena at *arena_len.
 * 0, or -1 if the line is malformed (nothing is kept then). */
static int parse_line(const char *s, const char *end, struct entry *e,
		      char *arena, size_t *arena_len)
{
	uint64_t start, size;

	if (end - s > LW_PERFMAP_LINE_MAX)
		return -1;
	while (s < end && is_blank(*s))
		s++;
	if (parse_hex(&s, end, &start) < 0 || s >= end || !is_blank(*s))
		return -1;
	while (s < end && is_blank(*s))
		s++;
	if (parse_hex(&s, end, &size) < 0 || s >= end || !is_blank(*s))
		return -1;
	while (s < end && is_blank(*s))
		s++;
	/* The name is the rest of the line, without trailing blanks and the
	 * '\r' of a CRLF line ending. */
	while (end > s && (is_blank(end[-1]) || end[-1] == '\r'))
		end--;
	if (end == s || size == 0 || start > UINT64_MAX - size)
		return -1;

	char *name = arena + *arena_len;
	size_t n = (size_t)(end - s);
	/* A NUL inside the name is one more control character. */
	for (size_t i = 0; i < n; i++)
		name[i] = s[i] ? s[i] : '?';
	name[n] = '\0';
	lw_text_clean(name);
	e->start = start;
	e->end = start + size;
	e->name = *arena_len;
	*arena_len += n + 1;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : (x > y);
}

/* A max-heap of entry indexes ordered by seq. */
static void heap_push(size_t *h, size_t *n, const struct entry *e, size_t v)
{
	size_t i = (*n)++;

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (e[h[parent]].seq >= e[v].seq)
			break;
		h[i] = h[parent];
		i = parent;
	}
	h[i] = v;
}

static void heap_pop(size_t *h, size_t *n, const struct entry *e)
{
	size_t v = h[--(*n)], i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && e[h[c + 1]].seq > e[h[c]].seq)
			c++;
		if (e[v].seq >= e[h[c]].seq)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = v;
}

/* Cut the sorted, possibly overlapping entries into disjoint segments,
 * each named by the latest line that covers it. */
static int build_segments(struct lw_perfmap *m)
{
	size_t n = m->nentries, nx = 0, nh = 0, next = 0;
	uint64_t *xs;
	size_t *heap;

	if (n == 0)
		return 0;
	xs = malloc(2 * n * sizeof(*xs));
	heap = malloc(n * sizeof(*heap));
	m->segs = malloc((2 * n - 1) * sizeof(*m->segs));
	if (xs == NULL || heap == NULL || m->segs == NULL) {
		free(xs);
		free(heap);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		xs[nx++] = m->entries[i].start;
		xs[nx++] = m->entries[i].end;
	}
	qsort(xs, nx, sizeof(*xs), cmp_u64);

	for (size_t i = 0; i + 1 < nx; i++) {
		uint64_t x = xs[i];
		if (x == xs[i + 1])
			continue;
		while (next < n && m->entries[next].start <= x)
			heap_push(heap, &nh, m->entries, next++);
		/* Entries that ended at or before x leave lazily. */
		while (nh > 0 && m->entries[heap[0]].end <= x)
			heap_pop(heap, &nh, m->entries);
		if (nh == 0)
			continue;
		struct seg *last = m->nsegs ? &m->segs[m->nsegs - 1] : NULL;
		if (last != NULL && last->entry == heap[0] && last->end == x) {
			last->end = xs[i + 1];
		} else {
			m->segs[m->nsegs++] = (struct seg){ .start = x,
							    .end = xs[i + 1],
							    .entry = heap[0] };
		}
	}
	free(xs);
	free(heap);
	return 0;
}

int lw_perfmap_parse(const char *buf, size_t len, lw_perfmap_t **out)
{
	struct lw_perfmap *m;
	size_t lines = 0, arena_len = 0;
	const char *p = buf, *end = buf + len;

	*out = NULL;
	if (len > SIZE_MAX / 4)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	/* Two boundaries per entry are the largest array built from it. */
	if (lines + 1 > SIZE_MAX / (2 * sizeof(struct entry)))
		return -ENOMEM;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	/* Each name and its NUL fit in its line and newline. */
	m->entries = malloc((lines + 1) * sizeof(*m->entries));
	m->names = malloc(len + 1);
	if (m->entries == NULL || m->names == NULL) {
		lw_perfmap_free(m);
		return -ENOMEM;
	}

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		/* A last line without its newline may still be being written:
		 * its name could be cut short, so it is not used. */
		if (nl == NULL) {
			m->skipped++;
			break;
		}
		/* Blank lines are not entries, nor errors. */
		const char *q = p;
		while (q < nl && (is_blank(*q) || *q == '\r'))
			q++;
		if (q < nl) {
			struct entry *e = &m->entries[m->nentries];
			if (parse_line(p, nl, e, m->names, &arena_len) == 0)
				e->seq = m->nentries++;
			else
				m->skipped++;
		}
		p = nl + 1;
	}

	qsort(m->entries, m->nentries, sizeof(*m->entries), cmp_entry);
	if (build_segments(m) < 0) {
		lw_perfmap_free(m);
		return -ENOMEM;
	}
	*out = m;
	return 0;
}

int lw_perfmap_find(const lw_perfmap_t *m, uint64_t addr, lw_perfmap_sym_t *sym)
{
	size_t lo = 0, hi;

	if (m == NULL || m->nsegs == 0)
		return 0;
	/* The last segment that starts at or before addr. */
	hi = m->nsegs;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->segs[mid].start <= addr)
			lo = mid;
		else
			hi = mid;
	}
	const struct seg *s = &m->segs[lo];
	if (addr < s->start || addr >= s->end)
		return 0;
	const struct entry *e = &m->entries[s->entry];
	sym->start = e->start;
	sym->size = e->end - e->start;
	sym->name = m->names + e->name;
	return 1;
}

int lw_perfmap_load(const char *path, lw_perfmap_t **out)
{
	int fd, rc;

	*out = NULL;
	/* The file belongs to the target: no symlink at its end, and no FIFO
	 * that would block the open. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	rc = lw_perfmap_load_fd(fd, out);
	close(fd);
	return rc;
}

int lw_perfmap_load_fd(int fd, lw_perfmap_t **out)
{
	struct stat st;
	char *buf;
	size_t len = 0, cap;
	off_t from = 0;
	int rc;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_size > (off_t)LW_PERFMAP_FILE_MAX)
		from = st.st_size - (off_t)LW_PERFMAP_FILE_MAX;
	cap = (size_t)(st.st_size - from);
	buf = malloc(cap + 1);
	if (buf == NULL)
		return -ENOMEM;
	/* The file may grow while it is read; what is past cap waits for the
	 * next load. */
	while (len < cap) {
		ssize_t got =
			pread(fd, buf + len, cap - len, from + (off_t)len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			free(buf);
			return rc;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	/* Reading from the middle of a file starts in the middle of a line:
	 * drop it. */
	size_t skip = 0;
	if (from > 0) {
		char *nl = memchr(buf, '\n', len);
		skip = nl ? (size_t)(nl - buf) + 1 : len;
	}
	rc = lw_perfmap_parse(buf + skip, len - skip, out);
	free(buf);
	return rc;
}

size_t lw_perfmap_entries(const lw_perfmap_t *m)
{
	return m ? m->nentries : 0;
}

size_t lw_perfmap_skipped(const lw_perfmap_t *m)
{
	return m ? m->skipped : 0;
}

void lw_perfmap_free(lw_perfmap_t *m)
{
	if (m == NULL)
		return;
	free(m->entries);
	free(m->segs);
	free(m->names);
	free(m);
}
