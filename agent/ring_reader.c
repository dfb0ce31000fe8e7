/*
 * ring_reader.c - the agent's side of the ring (see ring_reader.h and the
 * protocol comments of include/loopwatch_ring.h, which this file follows
 * step by step).
 *
 * Two rules keep a hostile ring harmless.  First, every byte of the mapping
 * is read exactly once per use through an __atomic load into a local, so
 * the value that was checked is the value that is used (no double fetch).
 * Second, the identity fields are read once, at open, and only the cached
 * copies are used afterwards: a writer that changes capacity or offsets
 * later changes nothing here.
 */
#include "ring_reader.h"
#include "text.h"

#include "loopwatch.h"
#include "proc.h"

#include <errno.h>
#include <sys/syscall.h>
#include <poll.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest memfd we agree to map: the largest ring the ABI allows with
 * room to spare for padding between the regions. */
#define MAX_MAP_SIZE (1ull << 30)
/* A process with more rings than this is treated as hostile; the rest are
 * skipped. */
#define MAX_RINGS 1024
/* Retries of a site entry that stays mid-rename, and of the current slot. */
#define SITE_RETRIES 64
#define CURRENT_RETRIES 16
/* How many times one lw_rr_read call lets the writer lap it before it
 * returns what it has (bounded work per call). */
#define READ_LAPS 16
/* pid_max can be at most 2^22 on Linux. */
#define MAX_PID (1 << 22)

#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define LD_ACQ(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)

struct lw_rr_ring {
	const uint8_t *map;
	size_t size;
	int owned; /* munmap at close */
	const struct lw_ring_header *hdr;
	const struct lw_ring_site *sites;
	const struct lw_ring_record *recs;
	/* Identity, validated and cached at open. */
	uint32_t capacity, mask, site_capacity, flags, clock;
	pid_t pid;
	uint64_t start_time, created_ns;
	uint64_t inode; /* the memfd's, 0 for memory from lw_rr_open_mem */
	int target_fd; /* its fd in the process, -1 unless lw_rr_attach */
	char name[LW_RING_NAME_MAX + 1];
};

/* What lw_rr_check validated, for open to cache. */
struct ident {
	uint32_t capacity, site_capacity, flags, clock;
	uint64_t sites_offset, records_offset, start_time, created_ns;
	int32_t pid;
};

static int fail(char *why, size_t whylen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t whylen, int err, const char *fmt, ...)
{
	if (why != NULL && whylen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* Copy a name field of n bytes that may lack its NUL, byte by byte through
 * atomic loads, cleaned (text.h) so that a name printed to a terminal
 * cannot drive it. */
static void copy_name(char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = LD(src[i]);
		if (c == '\0')
			break;
		dst[i] = c;
	}
	dst[i] = '\0';
	lw_text_clean(dst);
}

/* Does [off, off + len) lie inside [0, size)?  Without overflow. */
static int region_fits(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static int check(const void *map, size_t size, struct ident *id, char *why,
		 size_t whylen)
{
	const struct lw_ring_header *h = map;

	if (map == NULL)
		return fail(why, whylen, -EINVAL, "no mapping");
	if ((uintptr_t)map % 8 != 0)
		return fail(why, whylen, -EINVAL,
			    "mapping is not 8-byte aligned");
	if (size < LW_RING_HEADER_SIZE)
		return fail(why, whylen, -EPROTO,
			    "%zu bytes is smaller than the %d-byte header",
			    size, LW_RING_HEADER_SIZE);

	/* The writer stores magic last (release): once it is there, the
	 * identity fields are complete. */
	uint64_t magic = LD_ACQ(h->magic);
	if (magic == 0)
		return fail(why, whylen, -EAGAIN,
			    "ring not ready (no magic yet)");
	if (magic != LW_RING_MAGIC)
		return fail(why, whylen, -EPROTO,
			    "bad magic 0x%016llx (not a loopwatch ring)",
			    (unsigned long long)magic);
	uint32_t abi = LD(h->abi_version);
	if (abi != LW_RING_ABI_VERSION)
		return fail(why, whylen, -EPROTONOSUPPORT,
			    "ring ABI version %u, this reader knows %d", abi,
			    LW_RING_ABI_VERSION);

	uint32_t header_size = LD(h->header_size);
	uint32_t record_size = LD(h->record_size);
	uint32_t site_size = LD(h->site_size);
	if (header_size != LW_RING_HEADER_SIZE)
		return fail(why, whylen, -EPROTO, "header_size %u, expected %d",
			    header_size, LW_RING_HEADER_SIZE);
	if (record_size != LW_RING_RECORD_SIZE)
		return fail(why, whylen, -EPROTO, "record_size %u, expected %d",
			    record_size, LW_RING_RECORD_SIZE);
	if (site_size != LW_RING_SITE_SIZE)
		return fail(why, whylen, -EPROTO, "site_size %u, expected %d",
			    site_size, LW_RING_SITE_SIZE);

	uint32_t cap = LD(h->capacity);
	if (cap == 0 || (cap & (cap - 1)) != 0 || cap < LW_RING_MIN_CAPACITY ||
	    cap > LW_RING_MAX_CAPACITY)
		return fail(why, whylen, -EPROTO,
			    "capacity %u is not a power of two in [%d, %u]",
			    cap, LW_RING_MIN_CAPACITY, LW_RING_MAX_CAPACITY);
	uint32_t site_cap = LD(h->site_capacity);
	if (site_cap > LW_RING_MAX_SITES)
		return fail(why, whylen, -EPROTO, "site_capacity %u exceeds %d",
			    site_cap, LW_RING_MAX_SITES);

	uint64_t total = LD(h->total_size);
	if (total != (uint64_t)size)
		return fail(why, whylen, -EPROTO,
			    "total_size %llu does not match the mapping's "
			    "%zu bytes",
			    (unsigned long long)total, size);

	uint64_t so = LD(h->sites_offset), ro = LD(h->records_offset);
	uint64_t slen = (uint64_t)site_cap * LW_RING_SITE_SIZE;
	uint64_t rlen = (uint64_t)cap * LW_RING_RECORD_SIZE;
	if (so < LW_RING_HEADER_SIZE || so % 8 != 0)
		return fail(why, whylen, -EPROTO,
			    "sites_offset %llu is inside the header or "
			    "misaligned",
			    (unsigned long long)so);
	if (ro < LW_RING_HEADER_SIZE || ro % 8 != 0)
		return fail(why, whylen, -EPROTO,
			    "records_offset %llu is inside the header or "
			    "misaligned",
			    (unsigned long long)ro);
	if (!region_fits(so, slen, total))
		return fail(why, whylen, -EPROTO,
			    "site table at %llu (%llu bytes) runs past the end "
			    "(%llu)",
			    (unsigned long long)so, (unsigned long long)slen,
			    (unsigned long long)total);
	if (!region_fits(ro, rlen, total))
		return fail(why, whylen, -EPROTO,
			    "records at %llu (%llu bytes) run past the end "
			    "(%llu)",
			    (unsigned long long)ro, (unsigned long long)rlen,
			    (unsigned long long)total);
	if (slen > 0 && so < ro + rlen && ro < so + slen)
		return fail(why, whylen, -EPROTO,
			    "site table [%llu, %llu) and records [%llu, %llu) "
			    "overlap",
			    (unsigned long long)so,
			    (unsigned long long)(so + slen),
			    (unsigned long long)ro,
			    (unsigned long long)(ro + rlen));

	int32_t pid = LD(h->pid);
	if (pid <= 0 || pid > MAX_PID)
		return fail(why, whylen, -EPROTO, "bad pid %d", (int)pid);

	if (id != NULL) {
		id->capacity = cap;
		id->site_capacity = site_cap;
		id->sites_offset = so;
		id->records_offset = ro;
		id->pid = pid;
		id->start_time = LD(h->start_time);
		id->created_ns = LD(h->created_ns);
		id->flags = LD(h->flags);
		id->clock = LD(h->clock);
	}
	return 0;
}

int lw_rr_check(const void *map, size_t size, char *why, size_t whylen)
{
	return check(map, size, NULL, why, whylen);
}

static int open_map(const void *map, size_t size, int owned, lw_rr_ring_t **out,
		    char *why, size_t whylen)
{
	struct ident id;

	*out = NULL;
	int r = check(map, size, &id, why, whylen);
	if (r < 0)
		return r;
	lw_rr_ring_t *ring = calloc(1, sizeof(*ring));
	if (ring == NULL)
		return fail(why, whylen, -ENOMEM, "out of memory");
	ring->map = map;
	ring->size = size;
	ring->owned = owned;
	ring->target_fd = -1;
	ring->hdr = map;
	ring->sites =
		(const struct lw_ring_site *)(ring->map + id.sites_offset);
	ring->recs =
		(const struct lw_ring_record *)(ring->map + id.records_offset);
	ring->capacity = id.capacity;
	ring->mask = id.capacity - 1;
	ring->site_capacity = id.site_capacity;
	ring->flags = id.flags;
	ring->clock = id.clock;
	ring->pid = id.pid;
	ring->start_time = id.start_time;
	ring->created_ns = id.created_ns;
	copy_name(ring->name, ring->hdr->name, LW_RING_NAME_MAX);
	*out = ring;
	return 0;
}

int lw_rr_open_mem(const void *map, size_t size, lw_rr_ring_t **out, char *why,
		   size_t whylen)
{
	return open_map(map, size, 0, out, why, whylen);
}

int lw_rr_open_fd(int fd, lw_rr_ring_t **out, char *why, size_t whylen)
{
	struct stat st;

	*out = NULL;
	/* Seals first, then the size: once F_SEAL_SHRINK is in place the
	 * size can only grow, so the size we map stays backed. */
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		return fail(why, whylen, errno == EINVAL ? -EBADFD : -errno,
			    "cannot read the seals: %s", strerror(errno));
	if (!(seals & F_SEAL_SHRINK))
		return fail(why, whylen, -EBADFD,
			    "memfd is not sealed against shrinking "
			    "(F_SEAL_SHRINK), so reading it could fault");
	if (fstat(fd, &st) < 0)
		return fail(why, whylen, -errno, "cannot stat: %s",
			    strerror(errno));
	if (st.st_size < LW_RING_HEADER_SIZE ||
	    (unsigned long long)st.st_size > MAX_MAP_SIZE)
		return fail(why, whylen, -EPROTO,
			    "memfd of %lld bytes is not a ring",
			    (long long)st.st_size);
	size_t size = (size_t)st.st_size;
	void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return fail(why, whylen, -errno, "cannot map: %s",
			    strerror(errno));
	int r = open_map(map, size, 1, out, why, whylen);
	if (r < 0)
		munmap(map, size);
	else
		(*out)->inode = (uint64_t)st.st_ino;
	return r;
}

void lw_rr_close(lw_rr_ring_t *r)
{
	if (r == NULL)
		return;
	if (r->owned)
		munmap((void *)r->map, r->size);
	free(r);
}

pid_t lw_rr_pid(const lw_rr_ring_t *r)
{
	return r->pid;
}

pid_t lw_rr_tid(const lw_rr_ring_t *r)
{
	int32_t tid = LD(r->hdr->tid);
	return tid > 0 && tid <= MAX_PID ? tid : 0;
}

const char *lw_rr_name(const lw_rr_ring_t *r)
{
	return r->name;
}

uint32_t lw_rr_capacity(const lw_rr_ring_t *r)
{
	return r->capacity;
}

uint64_t lw_rr_start_time(const lw_rr_ring_t *r)
{
	return r->start_time;
}

uint32_t lw_rr_flags(const lw_rr_ring_t *r)
{
	return r->flags;
}

uint32_t lw_rr_clock(const lw_rr_ring_t *r)
{
	return r->clock;
}

uint64_t lw_rr_created_ns(const lw_rr_ring_t *r)
{
	return r->created_ns;
}

uint64_t lw_rr_inode(const lw_rr_ring_t *r)
{
	return r->inode;
}

int lw_rr_target_fd(const lw_rr_ring_t *r)
{
	return r->target_fd;
}

uint32_t lw_rr_site_capacity(const lw_rr_ring_t *r)
{
	return r->site_capacity;
}

/* ---- records ---- */

/* The oldest record a reader can still read when head is h: the slot of
 * record h - capacity is the one the writer fills next, and a copy of it
 * cannot be told apart from a torn one, so the window is capacity - 1. */
static uint64_t oldest(const lw_rr_ring_t *r, uint64_t h)
{
	uint64_t window = r->capacity - 1;
	return h > window ? h - window : 0;
}

void lw_rr_cursor_init(const lw_rr_ring_t *r, lw_rr_cursor_t *c,
		       int from_oldest)
{
	uint64_t h = LD_ACQ(r->hdr->head);
	c->pos = from_oldest ? oldest(r, h) : h;
	c->lost = 0;
}

static void copy_record(const struct lw_ring_record *s,
			struct lw_ring_record *d)
{
	d->start_ns = LD(s->start_ns);
	d->duration_ns = LD(s->duration_ns);
	d->seq = LD(s->seq);
	d->site = LD(s->site);
	d->lateness_ns = LD(s->lateness_ns);
	d->kind = LD(s->kind);
	d->flags = LD(s->flags);
}

size_t lw_rr_read(const lw_rr_ring_t *r, lw_rr_cursor_t *c,
		  struct lw_ring_record *out, size_t n)
{
	size_t got = 0;
	int laps = 0;

	uint64_t h = LD_ACQ(r->hdr->head);
	/* head never goes back with an honest writer; if it did, there is
	 * nothing to count as lost: start over from the new head. */
	if (c->pos > h)
		c->pos = h;
	uint64_t first = oldest(r, h);
	if (c->pos < first) {
		c->lost += first - c->pos;
		c->pos = first;
	}

	while (got < n && c->pos < h) {
		uint64_t i = c->pos;
		struct lw_ring_record rec;

		copy_record(&r->recs[i & r->mask], &rec);
		/* Pairs with the writer's release fence before it touches a
		 * slot: if any byte of the copy came from a newer record,
		 * the head we load next shows it. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint64_t h2 = LD(r->hdr->head);
		if (h2 < h)
			break; /* head went back: hostile; try again later */
		if (rec.seq == (uint32_t)i && h2 - i < r->capacity) {
			out[got++] = rec;
			c->pos = i + 1;
			continue;
		}
		if (++laps > READ_LAPS)
			break;
		if (h2 - i >= r->capacity) {
			/* Lapped: everything before the new window is gone. */
			uint64_t to = oldest(r, h2);
			c->lost += to - i;
			c->pos = to;
			h = h2;
		} else {
			/* The head says the record is intact but its seq
			 * disagrees: only a corrupt writer does that.  Count
			 * it as lost and go on. */
			c->lost++;
			c->pos = i + 1;
		}
	}
	return got;
}

/* ---- sites ---- */

uint32_t lw_rr_nsites(const lw_rr_ring_t *r)
{
	uint32_t n = LD_ACQ(r->hdr->nsites);
	return n < r->site_capacity ? n : r->site_capacity;
}

int lw_rr_site(const lw_rr_ring_t *r, uint32_t id, lw_rr_site_t *out)
{
	if (id == 0 || id > lw_rr_nsites(r))
		return -ENOENT;
	const struct lw_ring_site *e = &r->sites[id - 1];

	for (int tries = 0; tries < SITE_RETRIES; tries++) {
		uint32_t s1 = LD_ACQ(e->seq);
		if (s1 & 1)
			continue; /* a rename is in progress */
		out->id = LD(e->id);
		out->kind = LD(e->kind);
		out->fn = LD(e->fn);
		copy_name(out->name, e->name, LW_RING_NAME_MAX);
		/* Pairs with the writer's release before it wrote the
		 * entry: a changed seq means the copy may be torn. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (LD(e->seq) != s1)
			continue;
		if (out->id != id)
			return -EBADMSG;
		return 0;
	}
	return -EAGAIN;
}

/* ---- the current-callback slot, counters ---- */

int lw_rr_current(const lw_rr_ring_t *r, lw_rr_current_t *out)
{
	const struct lw_ring_header *h = r->hdr;

	memset(out, 0, sizeof(*out));
	for (int tries = 0; tries < CURRENT_RETRIES; tries++) {
		uint64_t s1 = LD_ACQ(h->cur_start_ns);
		uint32_t site = LD_ACQ(h->cur_site);
		uint32_t kind = LD(h->cur_kind);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint64_t s2 = LD(h->cur_start_ns);
		if (s1 != s2)
			continue; /* another callback started meanwhile */
		if (site != 0) {
			out->running = 1;
			out->site = site;
			out->kind = kind;
			out->start_ns = s1;
		}
		return 0;
	}
	return -EAGAIN;
}

void lw_rr_counters(const lw_rr_ring_t *r, lw_rr_counters_t *out)
{
	const struct lw_ring_header *h = r->hdr;

	out->iterations = LD(h->iterations);
	out->busy_ns = LD(h->busy_ns);
	out->idle_ns = LD(h->idle_ns);
	out->wait_since_ns = LD(h->wait_since_ns);
	out->head = LD_ACQ(h->head);
	out->pool_threads = LD(h->pool_threads);
	out->pool_busy = LD(h->pool_busy);
	out->pool_queued = LD(h->pool_queued);
	out->pool_oldest_site = LD(h->pool_oldest_site);
	out->pool_oldest_start_ns = LD(h->pool_oldest_start_ns);
	out->pool_oldest_fn = LD(h->pool_oldest_fn);
	out->pool_completed = LD(h->pool_completed);
}

const char *lw_rr_kind_name(uint32_t kind)
{
	return lw__kind_name(kind > INT32_MAX ? -1 : (int)kind);
}

/* ---- processes ---- */

struct attach_ctx {
	lw_rr_proc_t *p;
	struct {
		dev_t dev;
		ino_t ino;
	} * seen;
	size_t nseen, seen_cap;
	size_t known; /* rescan: p->rings[0..known) are attached already */
	int rescan; /* skips are not counted, foreign rings remembered */
	int err; /* a fatal error from the scan */
};

/* A memfd that is not the process's own ring, for good: not opened again
 * by a rescan.  Out of memory only means it is opened again. */
static void remember_foreign(lw_rr_proc_t *p, uint64_t ino)
{
	if (p->nforeign == p->foreign_cap) {
		size_t ncap = p->foreign_cap ? 2 * p->foreign_cap : 4;
		uint64_t *n = realloc(p->foreign_ino, ncap * sizeof(*n));
		if (n == NULL)
			return;
		p->foreign_ino = n;
		p->foreign_cap = ncap;
	}
	p->foreign_ino[p->nforeign++] = ino;
}

static void skip(struct attach_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void skip(struct attach_ctx *ctx, const char *fmt, ...)
{
	lw_rr_proc_t *p = ctx->p;

	/* A rescan says nothing of what it skips: the attach said it. */
	if (ctx->rescan)
		return;
	/* The first reason is the most useful one; the count says the
	 * rest. */
	if (p->nskipped++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->skipped_why, sizeof(p->skipped_why), fmt, ap);
		va_end(ap);
	}
}

static const char memfd_link[] = "/memfd:" LW_RING_MEMFD_NAME " (deleted)";

static int on_fd(int fdnum, const char *target, void *arg)
{
	struct attach_ctx *ctx = arg;
	lw_rr_proc_t *p = ctx->p;
	char path[96], why[200];
	struct stat st;
	lw_rr_ring_t *ring;

	if (strcmp(target, memfd_link) != 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid, fdnum);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM) {
			ctx->err = -EACCES;
			return 1;
		}
		if (errno != ENOENT) /* ENOENT: closed since the scan */
			skip(ctx, "fd %d: cannot open: %s", fdnum,
			     strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0) {
		skip(ctx, "fd %d: cannot stat: %s", fdnum, strerror(errno));
		close(fd);
		return 0;
	}
	/* The same memfd under several fds (dup) is one ring; a rescan
	 * passes over the rings attached already and the foreign ones. */
	int known = 0;
	for (size_t i = 0; !known && i < ctx->nseen; i++)
		known = ctx->seen[i].dev == st.st_dev &&
			ctx->seen[i].ino == st.st_ino;
	for (size_t i = 0; !known && i < ctx->known; i++)
		known = lw_rr_inode(p->rings[i]) == (uint64_t)st.st_ino;
	for (size_t i = 0; !known && ctx->rescan && i < p->nforeign; i++)
		known = p->foreign_ino[i] == (uint64_t)st.st_ino;
	if (known) {
		close(fd);
		return 0;
	}
	if (p->nrings + p->nskipped >= MAX_RINGS) {
		skip(ctx, "fd %d: more than %d rings", fdnum, MAX_RINGS);
		close(fd);
		return 0;
	}
	int r = lw_rr_open_fd(fd, &ring, why, sizeof(why));
	close(fd);
	if (r < 0) {
		skip(ctx, "fd %d: %s", fdnum, why);
		return 0;
	}
	if (lw_rr_pid(ring) != p->pid) {
		skip(ctx, "fd %d: ring made by pid %d (inherited across fork)",
		     fdnum, (int)lw_rr_pid(ring));
		remember_foreign(p, (uint64_t)st.st_ino);
		lw_rr_close(ring);
		return 0;
	}
	if (lw_rr_start_time(ring) != p->start_time) {
		skip(ctx,
		     "fd %d: ring made by an earlier process %d (pid reused: "
		     "start time %llu, the process's %llu)",
		     fdnum, (int)p->pid,
		     (unsigned long long)lw_rr_start_time(ring),
		     (unsigned long long)p->start_time);
		remember_foreign(p, (uint64_t)st.st_ino);
		lw_rr_close(ring);
		return 0;
	}
	if (p->nrings == p->rings_cap) {
		size_t ncap = p->rings_cap ? p->rings_cap * 2 : 4;
		void *nr = realloc(p->rings, ncap * sizeof(*p->rings));
		if (nr == NULL) {
			lw_rr_close(ring);
			ctx->err = -ENOMEM;
			return 1;
		}
		p->rings = nr;
		p->rings_cap = ncap;
	}
	if (ctx->nseen == ctx->seen_cap) {
		size_t ncap = ctx->seen_cap ? ctx->seen_cap * 2 : 4;
		void *ns = realloc(ctx->seen, ncap * sizeof(*ctx->seen));
		if (ns == NULL) {
			lw_rr_close(ring);
			ctx->err = -ENOMEM;
			return 1;
		}
		ctx->seen = ns;
		ctx->seen_cap = ncap;
	}
	ring->target_fd = fdnum;
	p->rings[p->nrings++] = ring;
	ctx->seen[ctx->nseen].dev = st.st_dev;
	ctx->seen[ctx->nseen].ino = st.st_ino;
	ctx->nseen++;
	return 0;
}

int lw_rr_attach(pid_t pid, lw_rr_proc_t **out, char *why, size_t whylen)
{
	uint64_t st, st2;

	*out = NULL;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	int r = lw_proc_start_time(pid, &st);
	if (r == -ESRCH)
		return fail(why, whylen, -ESRCH, "no such process");
	if (r < 0)
		return fail(why, whylen, r, "cannot read /proc/%d/stat: %s",
			    (int)pid, strerror(-r));

	if (lw_proc_kernel_thread(pid) == 1) {
		char comm[64] = "?";
		lw_proc_comm(pid, comm, sizeof(comm));
		return fail(why, whylen, -EINVAL,
			    "it is a kernel thread (%s), with no user space "
			    "and so no loop to watch",
			    comm);
	}

	lw_rr_proc_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return fail(why, whylen, -ENOMEM, "out of memory");
	p->pid = pid;
	p->start_time = st;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	/* The pid may have changed hands between the stat read and the
	 * pidfd: the start time read again after it settles that. */
	if (p->pidfd >= 0 &&
	    (lw_proc_start_time(pid, &st2) != 0 || st2 != st)) {
		lw_rr_detach(p);
		return fail(why, whylen, -ESRCH, "no such process");
	}
	struct attach_ctx ctx = { .p = p };
	r = lw_proc_each_fd(pid, on_fd, &ctx);
	free(ctx.seen);
	if (r < 0 && ctx.err == 0)
		ctx.err = r;
	if (ctx.err == -EACCES || ctx.err == -EPERM) {
		/* Say which rule refused us: another user's process, or our
		 * own one that is not dumpable. */
		lw_rr_detach(p);
		return lw_proc_denied(pid, why, whylen);
	}
	if (ctx.err == -ESRCH) {
		lw_rr_detach(p);
		return fail(why, whylen, -ESRCH, "no such process");
	}
	if (ctx.err < 0) {
		lw_rr_detach(p);
		return fail(why, whylen, ctx.err, "cannot read /proc/%d/fd: %s",
			    (int)pid, strerror(-ctx.err));
	}
	/* The pid may have been reused while we scanned: the fds would then
	 * belong to the new process, whose start time differs. */
	if (lw_proc_start_time(pid, &st2) < 0 || st2 != st) {
		lw_rr_detach(p);
		return fail(why, whylen, -ESRCH,
			    "the process exited while attaching");
	}
	if (p->nrings == 0) {
		if (p->nskipped > 0)
			fail(why, whylen, 0,
			     "no usable loopwatch ring in process %d (%zu "
			     "skipped; first: %s)",
			     (int)pid, p->nskipped, p->skipped_why);
		else
			fail(why, whylen, 0,
			     "no loopwatch rings in process %d (it does not "
			     "link libloopwatch, or runs with LOOPWATCH=off)",
			     (int)pid);
	}
	*out = p;
	return 0;
}

int lw_rr_rescan(lw_rr_proc_t *p)
{
	struct attach_ctx ctx = { .p = p, .known = p->nrings, .rescan = 1 };
	size_t before = p->nrings;

	int r = lw_proc_each_fd(p->pid, on_fd, &ctx);
	free(ctx.seen);
	if (r < 0 && ctx.err == 0)
		ctx.err = r;
	/* Rings found before an error are kept: they are this process's,
	 * checked one by one. */
	if (ctx.err < 0 && p->nrings == before)
		return ctx.err;
	return (int)(p->nrings - before);
}

void lw_rr_detach(lw_rr_proc_t *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nrings; i++)
		lw_rr_close(p->rings[i]);
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p->rings);
	free(p->foreign_ino);
	free(p);
}

int lw_rr_proc_alive(const lw_rr_proc_t *p)
{
	uint64_t st;

	/* A pidfd turns readable when its process exits (zombie included);
	 * it can never refer to a newcomer with the same pid. */
	if (p->pidfd >= 0) {
		struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
		if (poll(&pfd, 1, 0) != 0)
			return 0;
	}
	return lw_proc_start_time(p->pid, &st) == 0 && st == p->start_time;
}

int lw_rr_held(const lw_rr_proc_t *p, const lw_rr_ring_t *r)
{
	char path[64];
	struct stat st;

	if (r->target_fd < 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid,
		 r->target_fd);
	/* stat follows the link to the file the fd names now. */
	if (stat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return (uint64_t)st.st_ino == r->inode;
}

const char *lw_rr_site_label(const lw_rr_ring_t *r, uint32_t id, char *buf,
			     size_t len)
{
	lw_rr_site_t s;

	if (id == 0)
		snprintf(buf, len, "(no site)");
	else if (lw_rr_site(r, id, &s) < 0)
		snprintf(buf, len, "site#%" PRIu32, id);
	else if (s.name[0] != '\0')
		snprintf(buf, len, "%s", s.name);
	else
		snprintf(buf, len, "0x%" PRIx64, s.fn);
	return buf;
}
