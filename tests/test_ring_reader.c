/* test_ring_reader.c - the agent's ring reader against synthetic rings.
 *
 * The rings live in real memfds, written by a small writer in this file
 * that follows the write protocol of include/loopwatch_ring.h to the
 * letter, so the reader is tested without libloopwatch's writer.  The
 * attach tests use real processes. */
#include "lwtest.h"
#include "lwtest_proc.h"
#include "loopwatch.h"
#include "loopwatch_ring.h"
#include "proc.h"
#include "ring_reader.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ST_REL(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* ---- a test-only writer ---- */

struct tw {
	int fd; /* the memfd, or -1 for a plain buffer */
	uint8_t *map;
	size_t size;
	struct lw_ring_header *h;
	struct lw_ring_site *sites;
	struct lw_ring_record *recs;
	uint32_t cap, site_cap;
	uint64_t head; /* the writer's own copy */
};

enum { TW_SEAL = 1, TW_NO_MAGIC = 2, TW_BUFFER = 4 };

static size_t tw_layout(uint32_t cap, uint32_t site_cap, uint64_t *so,
			uint64_t *ro)
{
	*so = LW_RING_HEADER_SIZE;
	*ro = (*so + (uint64_t)site_cap * LW_RING_SITE_SIZE + 63) & ~63ull;
	return (size_t)(*ro + (uint64_t)cap * LW_RING_RECORD_SIZE);
}

/* Make a ring: in a memfd (sealed with TW_SEAL) or, with TW_BUFFER, in an
 * anonymous mapping. */
static void tw_make(struct tw *w, uint32_t cap, uint32_t site_cap, pid_t pid,
		    uint64_t start_time, const char *name, int opts)
{
	uint64_t so, ro;

	memset(w, 0, sizeof(*w));
	w->size = tw_layout(cap, site_cap, &so, &ro);
	w->cap = cap;
	w->site_cap = site_cap;
	w->fd = -1;
	if (opts & TW_BUFFER) {
		w->map = mmap(NULL, w->size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		w->fd = memfd_create(LW_RING_MEMFD_NAME,
				     MFD_CLOEXEC | MFD_ALLOW_SEALING);
		ASSERT(w->fd >= 0);
		ASSERT_OK(ftruncate(w->fd, (off_t)w->size));
		w->map = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			      w->fd, 0);
	}
	ASSERT(w->map != MAP_FAILED);
	w->h = (struct lw_ring_header *)w->map;
	w->sites = (struct lw_ring_site *)(w->map + so);
	w->recs = (struct lw_ring_record *)(w->map + ro);

	struct lw_ring_header *h = w->h;
	h->abi_version = LW_RING_ABI_VERSION;
	h->header_size = LW_RING_HEADER_SIZE;
	h->record_size = LW_RING_RECORD_SIZE;
	h->site_size = LW_RING_SITE_SIZE;
	h->capacity = cap;
	h->site_capacity = site_cap;
	h->sites_offset = so;
	h->records_offset = ro;
	h->total_size = w->size;
	h->pid = pid;
	h->start_time = start_time;
	h->created_ns = lwt_now_ns();
	h->flags = LW_RING_F_PROBE;
	h->clock = LW_RING_CLOCK_MONOTONIC;
	memcpy(h->name, name, strnlen(name, LW_RING_NAME_MAX));
	if (!(opts & TW_NO_MAGIC))
		ST_REL(h->magic, LW_RING_MAGIC);
	if ((opts & TW_SEAL) && w->fd >= 0)
		ASSERT_OK(fcntl(w->fd, F_ADD_SEALS,
				F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
}

static void tw_free(struct tw *w)
{
	munmap(w->map, w->size);
	if (w->fd >= 0)
		close(w->fd);
}

static uint64_t self_start_time(void)
{
	uint64_t st = 0;
	ASSERT_OK(lw_proc_start_time(getpid(), &st));
	return st;
}

/* A ring of this process, sealed. */
static void tw_make_self(struct tw *w, uint32_t cap, const char *name)
{
	tw_make(w, cap, 16, getpid(), self_start_time(), name, TW_SEAL);
}

/* The record write protocol: fence(release), the fields, seq last, then
 * head (release). */
static void tw_write(struct tw *w, const struct lw_ring_record *rec)
{
	uint64_t j = w->head;
	struct lw_ring_record *s = &w->recs[j & (w->cap - 1)];

	__atomic_thread_fence(__ATOMIC_RELEASE);
	ST(s->start_ns, rec->start_ns);
	ST(s->duration_ns, rec->duration_ns);
	ST(s->site, rec->site);
	ST(s->lateness_ns, rec->lateness_ns);
	ST(s->kind, rec->kind);
	ST(s->flags, rec->flags);
	ST(s->seq, (uint32_t)j);
	w->head = j + 1;
	ST_REL(w->h->head, j + 1);
}

/* A record whose every field derives from its index, so a torn copy
 * shows. */
static struct lw_ring_record rec_for(uint64_t j)
{
	struct lw_ring_record r = {
		.start_ns = j,
		.duration_ns = j ^ 0x5555555555555555ull,
		.site = (uint32_t)(j * 7),
		.lateness_ns = (uint32_t)(j >> 3),
		.kind = (uint16_t)j,
		.flags = (uint16_t)(j >> 16),
	};
	return r;
}

static void check_rec(const struct lw_ring_record *r, uint64_t j)
{
	struct lw_ring_record e = rec_for(j);
	ASSERT_EQ(r->start_ns, j);
	ASSERT_EQ(r->seq, (uint32_t)j);
	ASSERT(r->duration_ns == e.duration_ns);
	ASSERT_EQ(r->site, e.site);
	ASSERT_EQ(r->lateness_ns, e.lateness_ns);
	ASSERT_EQ(r->kind, e.kind);
	ASSERT_EQ(r->flags, e.flags);
}

static void tw_write_n(struct tw *w, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		struct lw_ring_record r = rec_for(w->head);
		tw_write(w, &r);
	}
}

/* The site protocol: fill entry id - 1, then publish nsites (release). */
static uint32_t tw_add_site(struct tw *w, uint16_t kind, uint64_t fn,
			    const char *name, size_t namelen)
{
	uint32_t id = w->h->nsites + 1;
	struct lw_ring_site *e = &w->sites[id - 1];

	ASSERT_LE(id, w->site_cap);
	ST(e->seq, 0);
	ST(e->id, id);
	ST(e->kind, kind);
	ST(e->fn, fn);
	for (size_t i = 0; i < LW_RING_NAME_MAX; i++)
		ST(e->name[i], i < namelen ? name[i] : '\0');
	ST_REL(w->h->nsites, id);
	return id;
}

/* A rename under the entry's seqlock: seq odd, fence, the name, seq even
 * (release). */
static void tw_rename(struct tw *w, uint32_t id, const char *name)
{
	struct lw_ring_site *e = &w->sites[id - 1];
	uint32_t s = __atomic_load_n(&e->seq, __ATOMIC_RELAXED);
	size_t n = strlen(name);

	ST(e->seq, s + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (size_t i = 0; i < LW_RING_NAME_MAX; i++)
		ST(e->name[i], i < n ? name[i] : '\0');
	ST_REL(e->seq, s + 2);
}

static lw_rr_ring_t *open_ok(struct tw *w)
{
	lw_rr_ring_t *r = NULL;
	char why[256] = "";
	int rc = lw_rr_open_fd(w->fd, &r, why, sizeof(why));
	if (rc != 0)
		LWT_FAIL("lw_rr_open_fd: %d (%s)", rc, why);
	return r;
}

/* ---- opening ---- */

TEST(rr_valid_ring_opens)
{
	struct tw w;
	tw_make_self(&w, 64, "main loop");
	lw_rr_ring_t *r = open_ok(&w);

	ASSERT_EQ(lw_rr_pid(r), getpid());
	ASSERT_EQ(lw_rr_tid(r), 0); /* not running yet */
	ST(w.h->tid, 4242);
	ASSERT_EQ(lw_rr_tid(r), 4242); /* re-read live */
	ST(w.h->tid, -5);
	ASSERT_EQ(lw_rr_tid(r), 0); /* bounded */
	ASSERT_STREQ(lw_rr_name(r), "main loop");
	ASSERT_EQ(lw_rr_capacity(r), 64);
	ASSERT_EQ(lw_rr_site_capacity(r), 16);
	ASSERT_EQ(lw_rr_start_time(r), self_start_time());
	ASSERT_EQ(lw_rr_flags(r), LW_RING_F_PROBE);
	ASSERT_EQ(lw_rr_clock(r), LW_RING_CLOCK_MONOTONIC);
	ASSERT_GT(lw_rr_created_ns(r), 0);
	ASSERT_EQ(lw_rr_nsites(r), 0);

	lw_rr_counters_t c;
	lw_rr_counters(r, &c);
	ASSERT_EQ(c.iterations, 0);
	ASSERT_EQ(c.head, 0);
	lw_rr_current_t cur;
	ASSERT_OK(lw_rr_current(r, &cur));
	ASSERT_EQ(cur.running, 0);

	/* The identity is cached: a later change of the name or capacity in
	 * the mapping changes nothing for the reader. */
	strcpy(w.h->name, "renamed");
	ST(w.h->capacity, 1u << 30);
	ASSERT_STREQ(lw_rr_name(r), "main loop");
	ASSERT_EQ(lw_rr_capacity(r), 64);
	lw_rr_close(r);

	/* The same bytes through lw_rr_check and lw_rr_open_mem. */
	ST(w.h->capacity, 64);
	char why[128] = "";
	ASSERT_OK(lw_rr_check(w.map, w.size, why, sizeof(why)));
	ASSERT_OK(lw_rr_open_mem(w.map, w.size, &r, why, sizeof(why)));
	ASSERT_EQ(lw_rr_capacity(r), 64);
	lw_rr_close(r);
	lw_rr_close(NULL);
	tw_free(&w);
}

TEST(rr_unsealed_rejected)
{
	struct tw w;
	lw_rr_ring_t *r = (lw_rr_ring_t *)&w; /* must be reset to NULL */
	char why[256] = "";

	/* No seals at all. */
	tw_make(&w, 64, 16, getpid(), self_start_time(), "x", 0);
	ASSERT_EQ(lw_rr_open_fd(w.fd, &r, why, sizeof(why)), -EBADFD);
	ASSERT(r == NULL);
	ASSERT(strstr(why, "F_SEAL_SHRINK") != NULL);
	/* Sealed against growing only: still not enough. */
	ASSERT_OK(fcntl(w.fd, F_ADD_SEALS, F_SEAL_GROW));
	why[0] = '\0';
	ASSERT_EQ(lw_rr_open_fd(w.fd, &r, why, sizeof(why)), -EBADFD);
	ASSERT(why[0] != '\0');
	ASSERT_OK(fcntl(w.fd, F_ADD_SEALS, F_SEAL_SHRINK));
	r = open_ok(&w);
	lw_rr_close(r);
	tw_free(&w);

	/* A file that cannot be sealed at all (a pipe). */
	int p[2];
	ASSERT_OK(pipe(p));
	why[0] = '\0';
	ASSERT_LT(lw_rr_open_fd(p[0], &r, why, sizeof(why)), 0);
	ASSERT(why[0] != '\0');
	close(p[0]);
	close(p[1]);

	/* Sealed, but the writer has not stored magic yet. */
	tw_make(&w, 64, 16, getpid(), self_start_time(), "x",
		TW_SEAL | TW_NO_MAGIC);
	why[0] = '\0';
	ASSERT_EQ(lw_rr_open_fd(w.fd, &r, why, sizeof(why)), -EAGAIN);
	ASSERT(strstr(why, "not ready") != NULL);
	tw_free(&w);
}

/* One corruption of a valid header: `width` bytes at `off` set to `val`,
 * and the error it must give. */
struct corruption {
	const char *what;
	size_t off;
	int width;
	uint64_t val;
	int err;
};

#define HOFF(f) offsetof(struct lw_ring_header, f)
#define HSZ(f) (int)sizeof(((struct lw_ring_header *)0)->f)
#define CORRUPT(f, v, e)                                       \
	{                                                      \
#f " = " #v, HOFF(f), HSZ(f), (uint64_t)(v), e \
	}

/* The valid ring below: capacity 64, 16 sites, sites at 4096, records at
 * 5632, 7680 bytes. */
static const struct corruption corruptions[] = {
	CORRUPT(magic, 0x1234, -EPROTO),
	CORRUPT(magic, LW_RING_MAGIC ^ (1ull << 63), -EPROTO),
	CORRUPT(magic, 0, -EAGAIN),
	CORRUPT(abi_version, 2, -EPROTONOSUPPORT),
	CORRUPT(abi_version, 0, -EPROTONOSUPPORT),
	CORRUPT(header_size, 4095, -EPROTO),
	CORRUPT(header_size, 8192, -EPROTO),
	CORRUPT(record_size, 16, -EPROTO),
	CORRUPT(record_size, 64, -EPROTO),
	CORRUPT(site_size, 64, -EPROTO),
	CORRUPT(capacity, 0, -EPROTO),
	CORRUPT(capacity, 100, -EPROTO),
	CORRUPT(capacity, 32, -EPROTO),
	CORRUPT(capacity, 128, -EPROTO), /* records past the end */
	CORRUPT(capacity, 1u << 25, -EPROTO),
	CORRUPT(capacity, 0x80000000u, -EPROTO),
	CORRUPT(site_capacity, LW_RING_MAX_SITES + 1, -EPROTO),
	CORRUPT(site_capacity, UINT32_MAX, -EPROTO),
	CORRUPT(site_capacity, 17, -EPROTO), /* overlaps the records */
	CORRUPT(sites_offset, 0, -EPROTO),
	CORRUPT(sites_offset, 4092, -EPROTO),
	CORRUPT(sites_offset, 4097, -EPROTO),
	CORRUPT(sites_offset, 5632, -EPROTO),
	CORRUPT(sites_offset, 7680, -EPROTO),
	CORRUPT(sites_offset, UINT64_MAX - 7, -EPROTO),
	CORRUPT(records_offset, 0, -EPROTO),
	CORRUPT(records_offset, 4096, -EPROTO),
	CORRUPT(records_offset, 5000, -EPROTO),
	CORRUPT(records_offset, 5636, -EPROTO),
	CORRUPT(records_offset, 5640, -EPROTO),
	CORRUPT(records_offset, 7680, -EPROTO),
	CORRUPT(records_offset, UINT64_MAX - 7, -EPROTO),
	CORRUPT(total_size, 7681, -EPROTO),
	CORRUPT(total_size, 7648, -EPROTO),
	CORRUPT(total_size, 0, -EPROTO),
	CORRUPT(total_size, UINT64_MAX, -EPROTO),
	CORRUPT(pid, 0, -EPROTO),
	CORRUPT(pid, -1, -EPROTO),
	CORRUPT(pid, INT32_MAX, -EPROTO),
};

static void poke(uint8_t *p, size_t off, int width, uint64_t v)
{
	switch (width) {
	case 8:
		memcpy(p + off, &v, 8);
		break;
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(p + off, &x, 4);
		break;
	}
	default:
		LWT_FAIL("width %d", width);
	}
}

TEST(rr_corrupt_each_header_field)
{
	struct tw w;
	char why[256];
	lw_rr_ring_t *r;

	tw_make(&w, 64, 16, 1234, 99, "corrupt", TW_BUFFER);
	uint8_t *copy = mmap(NULL, w.size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(copy != MAP_FAILED);
	memcpy(copy, w.map, w.size);
	ASSERT_OK(lw_rr_check(copy, w.size, why, sizeof(why)));

	for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]);
	     i++) {
		const struct corruption *c = &corruptions[i];
		memcpy(copy, w.map, LW_RING_HEADER_SIZE);
		poke(copy, c->off, c->width, c->val);
		why[0] = '\0';
		r = (lw_rr_ring_t *)copy;
		int rc = lw_rr_open_mem(copy, w.size, &r, why, sizeof(why));
		if (rc != c->err)
			LWT_FAIL("%s: got %d (%s), want %d", c->what, rc, why,
				 c->err);
		if (why[0] == '\0' || r != NULL)
			LWT_FAIL("%s: no reason given or ring set", c->what);
		printf("  %-28s -> %s\n", c->what, why);
	}

	/* The size of the mapping itself. */
	memcpy(copy, w.map, LW_RING_HEADER_SIZE);
	ASSERT_EQ(lw_rr_check(copy, w.size - 32, why, sizeof(why)), -EPROTO);
	ASSERT_EQ(lw_rr_check(copy, LW_RING_HEADER_SIZE - 1, why, sizeof(why)),
		  -EPROTO);
	ASSERT_EQ(lw_rr_check(copy + 4, w.size - 8, why, sizeof(why)), -EINVAL);
	ASSERT_EQ(lw_rr_check(NULL, w.size, why, sizeof(why)), -EINVAL);
	/* A why of length 0 or NULL is fine. */
	ASSERT_EQ(lw_rr_check(copy, 100, NULL, 0), -EPROTO);
	munmap(copy, w.size);
	tw_free(&w);

	/* total_size against the memfd's real size (fstat): a memfd one page
	 * larger than the header says. */
	tw_make(&w, 64, 16, getpid(), self_start_time(), "big", 0);
	ASSERT_OK(ftruncate(w.fd, (off_t)w.size + 4096));
	ASSERT_OK(fcntl(w.fd, F_ADD_SEALS, F_SEAL_SHRINK));
	why[0] = '\0';
	ASSERT_EQ(lw_rr_open_fd(w.fd, &r, why, sizeof(why)), -EPROTO);
	ASSERT(strstr(why, "total_size") != NULL);
	tw_free(&w);
}

/* ---- sites and records ---- */

struct renamer {
	struct tw *w;
	uint32_t id;
	int stop;
	uint64_t renames;
};

static void *rename_loop(void *arg)
{
	struct renamer *rn = arg;
	while (!__atomic_load_n(&rn->stop, __ATOMIC_RELAXED)) {
		tw_rename(rn->w, rn->id, "alpha");
		tw_rename(rn->w, rn->id,
			  "a much longer name that would tear visibly");
		rn->renames++;
		/* Leave readers a window now and then: on a loaded 2-core
		 * machine a writer that never pauses can keep every bounded
		 * read attempt mid-rename, which proves nothing. */
		if (rn->renames % 64 == 0)
			sched_yield();
	}
	return NULL;
}

TEST(rr_sites_and_records)
{
	struct tw w;
	lw_rr_site_t s;
	tw_make_self(&w, 64, "sites");
	lw_rr_ring_t *r = open_ok(&w);

	char long_name[LW_RING_NAME_MAX];
	memset(long_name, 'x', sizeof(long_name));
	uint32_t a = tw_add_site(&w, 1, 0x401000, "on_tick", 7);
	uint32_t b = tw_add_site(&w, 2, 0x402000, "", 0);
	uint32_t c = tw_add_site(&w, 11, 0x403000, long_name, 64);
	uint32_t d = tw_add_site(&w, 3, 0x404000, "evil\x1b[2Jname\n", 14);
	ASSERT_EQ(lw_rr_nsites(r), 4);

	ASSERT_OK(lw_rr_site(r, a, &s));
	ASSERT_EQ(s.id, a);
	ASSERT_EQ(s.kind, 1);
	ASSERT_EQ(s.fn, 0x401000);
	ASSERT_STREQ(s.name, "on_tick");
	ASSERT_OK(lw_rr_site(r, b, &s));
	ASSERT_STREQ(s.name, "");
	ASSERT_EQ(s.fn, 0x402000);
	ASSERT_OK(lw_rr_site(r, c, &s));
	ASSERT_EQ(strlen(s.name), LW_RING_NAME_MAX); /* no NUL in the ring */
	ASSERT_EQ(s.kind, 11);
	ASSERT_OK(lw_rr_site(r, d, &s));
	ASSERT_STREQ(s.name, "evil?[2Jname?"); /* no terminal escapes */
	ASSERT_EQ(lw_rr_site(r, 0, &s), -ENOENT);
	ASSERT_EQ(lw_rr_site(r, 5, &s), -ENOENT);
	ASSERT_EQ(lw_rr_site(r, UINT32_MAX, &s), -ENOENT);

	/* nsites beyond site_capacity is bounded. */
	ST(w.h->nsites, 1000000);
	ASSERT_EQ(lw_rr_nsites(r), 16);
	ASSERT_EQ(lw_rr_site(r, 17, &s), -ENOENT);
	/* An entry whose id contradicts its place. */
	ASSERT_EQ(lw_rr_site(r, 10, &s), -EBADMSG);
	ST(w.h->nsites, 4);

	/* A rename, then one stuck mid-rename (odd seq). */
	tw_rename(&w, a, "renamed");
	ASSERT_OK(lw_rr_site(r, a, &s));
	ASSERT_STREQ(s.name, "renamed");
	ST(w.sites[a - 1].seq, 7);
	ASSERT_EQ(lw_rr_site(r, a, &s), -EAGAIN);
	ST(w.sites[a - 1].seq, 8);

	/* Renames racing the reader: every copy is one whole name. */
	struct renamer rn = { .w = &w, .id = b };
	pthread_t th;
	ASSERT_OK(pthread_create(&th, NULL, rename_loop, &rn));
	int whole = 0;
	uint64_t deadline = lwt_now_ns() + 10000000000ull;
	for (int i = 0; (i < 200000 || whole < 100) && lwt_now_ns() < deadline;
	     i++) {
		int rc = lw_rr_site(r, b, &s);
		if (rc == -EAGAIN)
			continue;
		ASSERT_OK(rc);
		if (strcmp(s.name, "alpha") != 0 &&
		    strcmp(s.name, "a much longer name that would tear "
				   "visibly") != 0 &&
		    strcmp(s.name, "") != 0)
			LWT_FAIL("torn name \"%s\"", s.name);
		whole++;
	}
	__atomic_store_n(&rn.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	ASSERT_GT(whole, 0);
	printf("  %d whole copies during %llu renames\n", whole,
	       (unsigned long long)rn.renames);

	/* Records, including ones whose site and kind are out of range:
	 * returned as they are, for the consumer to judge. */
	struct lw_ring_record in[5] = {
		{ .start_ns = 100,
		  .duration_ns = 5,
		  .site = a,
		  .kind = 1,
		  .lateness_ns = 7 },
		{ .start_ns = 200,
		  .duration_ns = 1000000,
		  .site = b,
		  .kind = 2 },
		{ .start_ns = 300, .duration_ns = 3, .site = 999, .kind = 77 },
		{ .start_ns = 400, .duration_ns = 4, .site = 0, .kind = 0 },
		{ .start_ns = 500,
		  .duration_ns = 9,
		  .site = c,
		  .kind = 11,
		  .lateness_ns = UINT32_MAX,
		  .flags = LW_REC_LATENESS_SATURATED },
	};
	for (int i = 0; i < 5; i++)
		tw_write(&w, &in[i]);
	lw_rr_cursor_t cur;
	lw_rr_cursor_init(r, &cur, 1);
	struct lw_ring_record out[8];
	ASSERT_EQ(lw_rr_read(r, &cur, out, 8), 5);
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(out[i].seq, i);
		ASSERT_EQ(out[i].start_ns, in[i].start_ns);
		ASSERT_EQ(out[i].duration_ns, in[i].duration_ns);
		ASSERT_EQ(out[i].site, in[i].site);
		ASSERT_EQ(out[i].kind, in[i].kind);
		ASSERT_EQ(out[i].lateness_ns, in[i].lateness_ns);
		ASSERT_EQ(out[i].flags, in[i].flags);
	}
	ASSERT_EQ(cur.lost, 0);
	ASSERT_EQ(lw_rr_read(r, &cur, out, 8), 0);
	ASSERT_STREQ(lw_rr_kind_name(out[2].kind), "unknown");
	ASSERT_STREQ(lw_rr_kind_name(1), "timer");
	/* A cursor at head sees only what comes next. */
	lw_rr_cursor_init(r, &cur, 0);
	ASSERT_EQ(lw_rr_read(r, &cur, out, 8), 0);
	tw_write(&w, &in[0]);
	ASSERT_EQ(lw_rr_read(r, &cur, out, 8), 1);
	ASSERT_EQ(out[0].seq, 5);

	/* The current slot and the counters. */
	lw_rr_current_t now;
	ST(w.h->cur_start_ns, 12345);
	ST(w.h->cur_kind, 1);
	ST_REL(w.h->cur_site, a);
	ASSERT_OK(lw_rr_current(r, &now));
	ASSERT_EQ(now.running, 1);
	ASSERT_EQ(now.site, a);
	ASSERT_EQ(now.kind, 1);
	ASSERT_EQ(now.start_ns, 12345);
	ST_REL(w.h->cur_site, 0);
	ASSERT_OK(lw_rr_current(r, &now));
	ASSERT_EQ(now.running, 0);
	ST(w.h->iterations, 10);
	ST(w.h->busy_ns, 300);
	ST(w.h->idle_ns, 700);
	ST(w.h->pool_threads, 4);
	ST(w.h->pool_oldest_fn, 0x405000);
	lw_rr_counters_t cn;
	lw_rr_counters(r, &cn);
	ASSERT_EQ(cn.iterations, 10);
	ASSERT_EQ(cn.busy_ns, 300);
	ASSERT_EQ(cn.idle_ns, 700);
	ASSERT_EQ(cn.head, 6);
	ASSERT_EQ(cn.pool_threads, 4);
	ASSERT_EQ(cn.pool_oldest_fn, 0x405000);
	lw_rr_close(r);
	tw_free(&w);
}

TEST(rr_loss_counted_exactly)
{
	struct tw w;
	struct lw_ring_record out[128];
	lw_rr_cursor_t c;
	const uint32_t cap = 64;
	tw_make_self(&w, cap, "loss");
	lw_rr_ring_t *r = open_ok(&w);

	lw_rr_cursor_init(r, &c, 0);
	/* Exactly capacity - 1 ahead: nothing lost. */
	tw_write_n(&w, cap - 1);
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), cap - 1);
	ASSERT_EQ(c.lost, 0);
	/* Exactly capacity ahead: the slot the writer fills next is
	 * counted as lost (it cannot be told from a torn one). */
	tw_write_n(&w, cap);
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), cap - 1);
	ASSERT_EQ(c.lost, 1);
	check_rec(&out[0], cap);

	/* The reader pauses while the writer writes 10 x capacity. */
	uint64_t before = w.head;
	lw_rr_cursor_init(r, &c, 0);
	tw_write_n(&w, 10 * cap);
	size_t n = 0, got;
	uint64_t next = 0;
	int first = 1;
	while ((got = lw_rr_read(r, &c, out, 7)) > 0) {
		for (size_t i = 0; i < got; i++) {
			if (first)
				next = out[i].start_ns;
			first = 0;
			check_rec(&out[i], next);
			next++;
		}
		n += got;
	}
	uint64_t written = w.head - before;
	ASSERT_EQ(n, cap - 1);
	ASSERT_EQ(c.lost, written - (cap - 1));
	ASSERT_EQ(next, w.head);
	printf("  wrote %llu, read %zu, lost %llu\n",
	       (unsigned long long)written, n, (unsigned long long)c.lost);

	/* Reading resumes in order. */
	tw_write_n(&w, 10);
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), 10);
	for (int i = 0; i < 10; i++)
		check_rec(&out[i], next + (uint64_t)i);
	ASSERT_EQ(c.lost, written - (cap - 1));

	/* From the oldest: the last capacity - 1 records. */
	lw_rr_cursor_init(r, &c, 1);
	ASSERT_EQ(c.pos, w.head - (cap - 1));
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), cap - 1);
	ASSERT_EQ(c.lost, 0);

	/* head going backwards (a hostile writer) counts nothing and
	 * returns nothing. */
	ST(w.h->head, 5);
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), 0);
	ASSERT_EQ(c.pos, 5);
	ASSERT_EQ(c.lost, 0);
	/* A slot whose seq disagrees with an intact head: lost, skipped. */
	ST(w.h->head, w.head);
	lw_rr_cursor_init(r, &c, 1);
	ST(w.recs[c.pos & (cap - 1)].seq, 0xdead);
	ASSERT_EQ(lw_rr_read(r, &c, out, 128), cap - 2);
	ASSERT_EQ(c.lost, 1);
	lw_rr_close(r);
	tw_free(&w);
}

struct writer_arg {
	struct tw *w;
	uint64_t n;
	int pace; /* busy-wait iterations after each record */
	int done;
};

static void *writer_thread(void *arg)
{
	struct writer_arg *wa = arg;
	for (uint64_t i = 0; i < wa->n; i++) {
		struct lw_ring_record rec = rec_for(wa->w->head);
		tw_write(wa->w, &rec);
		for (volatile int k = 0; k < wa->pace; k++)
			;
	}
	__atomic_store_n(&wa->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Read everything a writer thread writes; check order, content and that
 * every record is either read or counted as lost, exactly. */
static void read_against_writer(uint32_t cap, uint64_t n, size_t chunk,
				int pace)
{
	struct tw w;
	tw_make_self(&w, cap, "race");
	lw_rr_ring_t *r = open_ok(&w);
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 0);
	struct lw_ring_record *out = calloc(chunk, sizeof(*out));
	struct writer_arg wa = { .w = &w, .n = n, .pace = pace };
	pthread_t th;
	ASSERT_OK(pthread_create(&th, NULL, writer_thread, &wa));

	uint64_t read = 0, next = 0, gaps = 0, calls = 0;
	for (;;) {
		int done = __atomic_load_n(&wa.done, __ATOMIC_ACQUIRE);
		size_t got = lw_rr_read(r, &c, out, chunk);
		calls++;
		for (size_t i = 0; i < got; i++) {
			uint64_t j = out[i].start_ns;
			ASSERT_GE(j, next); /* in order */
			gaps += j - next;
			check_rec(&out[i], j); /* not torn */
			next = j + 1;
		}
		read += got;
		/* Now and then the reader dawdles, so that it gets lapped. */
		if (calls % 64 == 0)
			sched_yield();
		if (done && got == 0 && c.pos == n)
			break;
	}
	pthread_join(th, NULL);
	gaps += n - next;
	printf("  cap %u, pace %d: wrote %llu, read %llu, lost %llu\n", cap,
	       pace, (unsigned long long)n, (unsigned long long)read,
	       (unsigned long long)c.lost);
	ASSERT_EQ(read + c.lost, n);
	ASSERT_EQ(gaps, c.lost);
	free(out);
	lw_rr_close(r);
	tw_free(&w);
}

TEST_T(rr_concurrent_writer, 120)
{
	/* Flat out: the reader is lapped again and again. */
	read_against_writer(64, 400000, 16, 0);
	read_against_writer(4096, 1000000, 256, 0);
	/* A writer at a pace the reader can mostly follow. */
	read_against_writer(256, 200000, 64, 200);
}

TEST(rr_two_readers_same_records)
{
	struct tw w;
	struct lw_ring_record a[64], b[64];
	tw_make_self(&w, 128, "two");
	lw_rr_ring_t *r1 = open_ok(&w);
	lw_rr_ring_t *r2 = open_ok(&w); /* a second mapping */
	lw_rr_cursor_t c1, c2, c3;
	lw_rr_cursor_init(r1, &c1, 1);
	lw_rr_cursor_init(r2, &c2, 1);
	lw_rr_cursor_init(r1, &c3, 1); /* a second cursor on one mapping */
	tw_write_n(&w, 50);

	/* One reader reading does not take anything from the others. */
	ASSERT_EQ(lw_rr_read(r1, &c1, a, 64), 50);
	ASSERT_EQ(lw_rr_read(r2, &c2, b, 64), 50);
	ASSERT(memcmp(a, b, sizeof(a[0]) * 50) == 0);
	size_t n = lw_rr_read(r1, &c3, b, 20);
	ASSERT_EQ(n, 20);
	n += lw_rr_read(r1, &c3, b + 20, 64);
	ASSERT_EQ(n, 50);
	ASSERT(memcmp(a, b, sizeof(a[0]) * 50) == 0);
	for (int i = 0; i < 50; i++)
		check_rec(&a[i], (uint64_t)i);
	ASSERT_EQ(c1.lost + c2.lost + c3.lost, 0);
	lw_rr_close(r1);
	lw_rr_close(r2);
	tw_free(&w);
}

TEST(rr_drain_rate)
{
	struct tw w;
	const uint32_t cap = 65536;
	tw_make_self(&w, cap, "rate");
	lw_rr_ring_t *r = open_ok(&w);
	tw_write_n(&w, cap - 1);
	struct lw_ring_record *out = calloc(1024, sizeof(*out));
	uint64_t total = 0, sum = 0;
	lw_rr_cursor_t c;

	double t0 = lwt_now_ms(), t1;
	do {
		lw_rr_cursor_init(r, &c, 1);
		size_t got;
		while ((got = lw_rr_read(r, &c, out, 1024)) > 0) {
			total += got;
			sum += out[got - 1].duration_ns;
		}
		t1 = lwt_now_ms();
	} while (t1 - t0 < 200);
	double rate = (double)total / ((t1 - t0) / 1000.0);
	printf("  drained %llu records in %.0f ms: %.1f M records/s "
	       "(checksum %llx)\n",
	       (unsigned long long)total, t1 - t0, rate / 1e6,
	       (unsigned long long)sum);
	ASSERT_GT(total, 0);
	ASSERT(rate > 0);
	free(out);
	lw_rr_close(r);
	tw_free(&w);
}

/* ---- /proc ---- */

TEST(rr_proc_stat_parse)
{
	uint64_t st = 0;
	char comm[32];
	/* comm with spaces and parentheses, as a target may choose. */
	const char *s = "4321 (a) b) (c ) S 1 2 3 4 5 6 7 8 9 10 11 12 13 "
			"14 15 16 17 18 987654321 19 20\n";
	char state = 0;
	ASSERT_OK(lw_proc_parse_stat(s, strlen(s), &st, &state, comm,
				     sizeof(comm)));
	ASSERT_EQ(st, 987654321);
	ASSERT_EQ(state, 'S');
	ASSERT_STREQ(comm, "a) b) (c ");
	const char *shortline = "1 (x) S 1 2 3";
	ASSERT_EQ(lw_proc_parse_stat(shortline, strlen(shortline), &st, NULL,
				     NULL, 0),
		  -EINVAL);
	ASSERT_EQ(lw_proc_parse_stat("no parens", 9, &st, NULL, NULL, 0),
		  -EINVAL);
	const char *bad = "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
			  "18 12x4 19";
	ASSERT_EQ(lw_proc_parse_stat(bad, strlen(bad), &st, NULL, NULL, 0),
		  -EINVAL);
	/* Our own start time agrees with /proc/self/stat's field 22. */
	ASSERT_OK(lw_proc_start_time(getpid(), &st));
	ASSERT_GT(st, 0);
	ASSERT_OK(lw_proc_comm(getpid(), comm, sizeof(comm)));
	ASSERT(comm[0] != '\0');

	/* A zombie has exited: no start time, no attach. */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	int r = 0;
	for (double t0 = lwt_now_ms(); r == 0 && lwt_now_ms() - t0 < 5000;)
		if ((r = lw_proc_start_time(pid, &st)) == 0)
			usleep(1000);
	ASSERT_EQ(r, -ESRCH);
	ASSERT_OK(waitpid(pid, NULL, 0) == pid ? 0 : -1);
}

/* The fields after starttime: taken when there, fine when not. */
TEST(rr_proc_stat_more_fields)
{
	lw_proc_stat_t s;
	char line[1024];
	int n = snprintf(line, sizeof(line), "77 (x) S 5 6 7");
	for (int field = 7; field <= 52; field++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, " %d",
			      field == 22 ? 4242 : field * 10);
	snprintf(line + n, sizeof(line) - (size_t)n, "\n");
	ASSERT_OK(lw_proc_stat_parse(line, strlen(line), &s));
	ASSERT_EQ(s.state, 'S');
	ASSERT_EQ(s.ppid, 5);
	ASSERT_EQ(s.start_time, 4242);
	ASSERT_EQ(s.start_code, 260);
	ASSERT_EQ(s.end_code, 270);
	ASSERT_EQ(s.start_stack, 280);
	ASSERT_EQ(s.start_brk, 470);
	ASSERT_EQ(s.exit_code, 520);
	/* Cut after starttime (an old kernel): the rest is unknown. */
	const char *cut = "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
			  "18 99 19";
	ASSERT_OK(lw_proc_stat_parse(cut, strlen(cut), &s));
	ASSERT_EQ(s.start_time, 99);
	ASSERT_EQ(s.start_stack, 0);
	ASSERT_EQ(s.exit_code, -1);

	/* This process: its parent, and where its stack begins. */
	ASSERT_OK(lw_proc_stat(getpid(), &s));
	ASSERT_EQ(s.ppid, getppid());
	ASSERT_NE(s.start_stack, 0);
	ASSERT_EQ(s.exit_code, 0);

	/* A zombie's wait status, before its parent (we) reaps it. */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(7);
	s.state = 'R';
	for (double t0 = lwt_now_ms(); lwt_now_ms() - t0 < 5000;) {
		ASSERT_OK(lw_proc_stat(pid, &s));
		if (s.state == 'Z')
			break;
		usleep(1000);
	}
	ASSERT_EQ(s.state, 'Z');
	ASSERT_EQ(s.exit_code, 7 << 8);
	ASSERT_EQ(s.start_stack, 0); /* its memory is gone */
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
}

/* A ring stays held while its loop lives; freed, it is not, and the
 * mapping still reads. */
TEST(rr_ring_held_until_freed)
{
	lw_loop_options_t opts = { .name = "held" };
	lw_loop_t *loop;
	lw_rr_proc_t *p;
	char why[256];

	ASSERT_OK(lw_loop_new(&loop, &opts));
	ASSERT_OK(lw_rr_attach(getpid(), &p, why, sizeof(why)));
	ASSERT_EQ(p->nrings, 1);
	ASSERT_EQ(lw_rr_target_fd(p->rings[0]), lw_loop_ring_fd(loop));
	ASSERT_EQ(lw_rr_held(p, p->rings[0]), 1);
	lw_loop_free(loop);
	ASSERT_EQ(lw_rr_held(p, p->rings[0]), 0);
	ASSERT_STREQ(lw_rr_name(p->rings[0]), "held");
	lw_rr_detach(p);
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	return pid;
}

TEST(rr_attach_errors)
{
	lw_rr_proc_t *p = (lw_rr_proc_t *)&p;
	char why[256] = "";

	ASSERT_EQ(lw_rr_attach(dead_pid(), &p, why, sizeof(why)), -ESRCH);
	ASSERT(p == NULL);
	ASSERT(strstr(why, "no such process") != NULL);
	ASSERT_EQ(lw_rr_attach(0, &p, why, sizeof(why)), -ESRCH);
	ASSERT_EQ(lw_rr_attach(-1, &p, why, sizeof(why)), -ESRCH);
	/* kthreadd (2 in the first pid namespace): no user space. */
	ASSERT_EQ(lw_proc_kernel_thread(2), 1);
	ASSERT_EQ(lw_proc_kernel_thread(getpid()), 0);
	ASSERT_EQ(lw_proc_kernel_thread(dead_pid()), -ESRCH);
	ASSERT_EQ(lw_rr_attach(2, &p, why, sizeof(why)), -EINVAL);
	ASSERT(p == NULL);
	ASSERT(strstr(why, "kernel thread (kthreadd)") != NULL);

	/* This process has no rings: attached, none found, said why. */
	why[0] = '\0';
	ASSERT_OK(lw_rr_attach(getpid(), &p, why, sizeof(why)));
	ASSERT_EQ(p->nrings, 0);
	ASSERT_EQ(p->nskipped, 0);
	ASSERT(strstr(why, "LOOPWATCH=off") != NULL);
	ASSERT_EQ(lw_rr_proc_alive(p), 1);
	lw_rr_detach(p);
	lw_rr_detach(NULL);

	/* Not permitted: a child that gives up root attaches to us. */
	if (geteuid() != 0)
		return; /* the same check needs another user's process */
	pid_t self = getpid();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		char w2[256] = "";
		lw_rr_proc_t *q = NULL;
		int rc = lw_rr_attach(self, &q, w2, sizeof(w2));
		if (rc != -EACCES || strstr(w2, "root") == NULL) {
			fprintf(stderr, "rc %d why %s\n", rc, w2);
			_exit(1);
		}
		_exit(0);
	}
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* A child with a good ring, a duplicate fd of it, and a bad one: `bad` is
 * 'i' for a ring inherited from this process, 'r' for a ring that names a
 * different start time (pid reuse).  The child writes 3 records, says so
 * through the pipe and sleeps. */
static pid_t child_with_rings(int bad, struct tw *inherited)
{
	int p[2];
	ASSERT_OK(pipe(p));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		struct tw good, other;
		close(p[0]);
		tw_make_self(&good, 64, "good");
		tw_write_n(&good, 3);
		ST(good.h->tid, getpid());
		if (dup(good.fd) < 0)
			_exit(3);
		if (bad == 'r')
			tw_make(&other, 64, 16, getpid(), self_start_time() + 1,
				"old", TW_SEAL);
		if (write(p[1], "x", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	(void)inherited;
	close(p[1]);
	char x;
	ASSERT_EQ(read(p[0], &x, 1), 1);
	close(p[0]);
	return pid;
}

static void check_child(pid_t pid, int bad)
{
	lw_rr_proc_t *p = NULL;
	char why[256] = "";
	struct lw_ring_record out[8];

	ASSERT_OK(lw_rr_attach(pid, &p, why, sizeof(why)));
	ASSERT_EQ(p->pid, pid);
	ASSERT_EQ(p->nrings, 1); /* the dup is the same ring */
	ASSERT_EQ(p->nskipped, 1);
	printf("  skipped: %s\n", p->skipped_why);
	ASSERT(strstr(p->skipped_why,
		      bad == 'i' ? "inherited" : "pid reused") != NULL);
	lw_rr_ring_t *r = p->rings[0];
	ASSERT_STREQ(lw_rr_name(r), "good");
	ASSERT_EQ(lw_rr_pid(r), pid);
	ASSERT_EQ(lw_rr_tid(r), pid);
	ASSERT_EQ(lw_rr_start_time(r), p->start_time);
	ASSERT_EQ(lw_rr_proc_alive(p), 1);

	/* The child dies: the same process is gone, the mapping stays. */
	ASSERT_OK(kill(pid, SIGKILL));
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	ASSERT_EQ(lw_rr_proc_alive(p), 0);
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	ASSERT_EQ(lw_rr_read(r, &c, out, 8), 3);
	check_rec(&out[2], 2);
	lw_rr_detach(p);
}

TEST(rr_attach_own_process)
{
	/* A ring made here, inherited by the child across fork. */
	struct tw mine;
	tw_make_self(&mine, 64, "parent's");
	pid_t pid = child_with_rings('i', &mine);
	check_child(pid, 'i');
	tw_free(&mine);

	/* A ring naming another start time with the child's pid. */
	pid = child_with_rings('r', NULL);
	check_child(pid, 'r');
}

/* ---- the loopwatch command against a real target ---- */

/* Start ring_target MODE with env (or NULL); returns its pid once it said
 * "ready". */
static pid_t start_target(const char *mode, const char *env)
{
	const char *path = lwt_build_path("tests/progs/ring_target");
	if (access(path, X_OK) != 0)
		SKIP("no %s", path);
	int p[2];
	ASSERT_OK(pipe(p));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		if (env != NULL)
			putenv((char *)env);
		execl(path, path, mode, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	FILE *f = fdopen(p[0], "r");
	char line[256];
	int ready = 0;
	while (!ready && fgets(line, sizeof(line), f) != NULL)
		ready = strncmp(line, "ready", 5) == 0;
	fclose(f);
	ASSERT(ready);
	return pid;
}

/* Run loopwatch ARGS..., capture stdout and stderr together; returns the
 * exit status. */
static int run_loopwatch(char *out, size_t outlen, const char *const *args)
{
	const char *path = lwt_build_path("bin/loopwatch");
	if (access(path, X_OK) != 0)
		SKIP("no %s", path);
	int p[2];
	ASSERT_OK(pipe(p));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		char *argv[16];
		int n = 0;
		argv[n++] = (char *)path;
		for (; args[n - 1] != NULL && n < 15; n++)
			argv[n] = (char *)args[n - 1];
		argv[n] = NULL;
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execv(path, argv);
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t got;
	while ((got = read(p[0], out + len, outlen - 1 - len)) > 0)
		len += (size_t)got;
	out[len] = '\0';
	close(p[0]);
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void kill_target(void *pid)
{
	kill(*(pid_t *)pid, SIGKILL);
}

TEST_T(rr_cli_dump, 60)
{
	static char out[1 << 16];
	char pidbuf[32];

	pid_t pid = start_target("sleep50", NULL);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);

	/* list shows the target's loop. */
	const char *list[] = { "list", NULL };
	ASSERT_EQ(run_loopwatch(out, sizeof(out), list), 0);
	ASSERT(strstr(out, pidbuf) != NULL);
	ASSERT(strstr(out, "ring_target") != NULL);

	/* 10 records from the oldest: the site table, then records. */
	const char *dump[] = { "dump",	     "--oldest", "--count", "10",
			       "--interval", "100",	 pidbuf,    NULL };
	ASSERT_EQ(run_loopwatch(out, sizeof(out), dump), 0);
	printf("%s", out);
	ASSERT(strstr(out, "attached to PID") != NULL);
	ASSERT(strstr(out, "loop sleep50") != NULL);
	ASSERT(strstr(out, " timer ") != NULL);
	ASSERT(strstr(out, "late ") != NULL);

	/* The target is killed while we watch (once dump says it is
	 * attached): one line that says so, exit 0. */
	const char *watch[] = { "dump", pidbuf, NULL };
	ASSERT_EQ(lwt_loopwatch_on((char **)watch, out, sizeof(out),
				   "attached to PID", kill_target, &pid),
		  0);
	char killed[64];
	snprintf(killed, sizeof(killed),
		 "\nloopwatch: process %d was killed by SIGKILL", (int)pid);
	ASSERT(strstr(out, killed) != NULL);
	waitpid(pid, NULL, 0);

	/* Cannot attach: a dead pid, a process without rings, bad usage. */
	ASSERT_EQ(run_loopwatch(out, sizeof(out), watch), 2);
	ASSERT(strstr(out, "loopwatch: cannot attach to PID") != NULL);
	ASSERT(strstr(out, "no such process") != NULL);
	pid = start_target("sleep50", "LOOPWATCH=off");
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	ASSERT_EQ(run_loopwatch(out, sizeof(out), watch), 2);
	ASSERT(strstr(out, "no loopwatch rings") != NULL);
	ASSERT(strstr(out, "LOOPWATCH=off") != NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	const char *bad[] = { "dump", "--count", "x", "1", NULL };
	ASSERT_EQ(run_loopwatch(out, sizeof(out), bad), 2);
	const char *nocmd[] = { "frobnicate", NULL };
	ASSERT_EQ(run_loopwatch(out, sizeof(out), nocmd), 2);
	const char *help[] = { "dump", "--help", NULL };
	ASSERT_EQ(run_loopwatch(out, sizeof(out), help), 0);
	ASSERT(strstr(out, "usage: loopwatch dump") != NULL);
}

/* The reader names kinds exactly as the library does, for every kind and
 * for values out of range (one table serves both; they once drifted). */
TEST(rr_kind_names_match_library)
{
	for (int k = 0; k < LW_KIND_MAX_; k++)
		ASSERT_STREQ(lw_rr_kind_name((uint32_t)k), lw_kind_name(k));
	ASSERT_STREQ(lw_rr_kind_name(LW_KIND_WORK), "work");
	ASSERT_STREQ(lw_rr_kind_name(LW_KIND_MAX_), "unknown");
	ASSERT_STREQ(lw_rr_kind_name(UINT32_MAX), "unknown");
	ASSERT_STREQ(lw_kind_name(-1), "unknown");
}
