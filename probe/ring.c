/*
 * ring.c - making, naming and remaking rings (the cold side of ring.h).
 *
 * A ring is a memfd named "loopwatch", sized once and sealed against
 * shrinking and growing, so that a reader's mapping can never fault; it is
 * mapped here read-write and by readers read-only.  The header is filled
 * before `magic` is stored (release), so a reader that opens the memfd the
 * instant it appears sees "not ready", never half a header.
 */
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Bumped in every child right after fork() (see atfork_child). */
unsigned lw__fork_gen;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Every ring of the process, for atfork_child.  The lock is held across
 * fork(), so the child's copy of the list is whole. */
static pthread_mutex_t rings_lock = PTHREAD_MUTEX_INITIALIZER;
static lw__ring_t *rings;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&rings_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&rings_lock);
}

/*
 * A child inherits its parent's rings mapped MAP_SHARED.  Its loop makes
 * its own ring at its next iteration (lw__ring_renew), but the iteration
 * that forked goes on first in the child too: the rest of its callbacks,
 * the I/O events of its poll.  Written into the inherited mapping, they
 * would land in the parent's ring, over the parent's own records (a
 * 200 ms callback of the parent read back as the child's 18 us one) and
 * in its current-callback slot.  So the child gets private memory at the
 * same addresses at once: what it writes until the renewal goes nowhere
 * the parent or a reader can see.
 */
static void atfork_child(void)
{
	for (lw__ring_t *r = rings; r != NULL; r = r->fork_next)
		if (r->map != NULL)
			mmap(r->map, r->size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	__atomic_add_fetch(&lw__fork_gen, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&rings_lock);
}

static void install_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int lw__ring_disabled_by_env(void)
{
	const char *v = getenv("LOOPWATCH");
	return v != NULL && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0);
}

static uint32_t capacity_from_env(void)
{
	const char *v = getenv("LOOPWATCH_RING_SIZE");
	if (v == NULL || *v == 0)
		return 0;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (*end != 0)
		return 0;
	return n > UINT32_MAX ? 0 : (uint32_t)n;
}

/* A capacity the ABI accepts: a power of two within the limits, rounding
 * up what is not. */
static uint32_t fit_capacity(uint32_t want)
{
	if (want == 0)
		want = LW_RING_DEFAULT_CAPACITY;
	if (want < LW_RING_MIN_CAPACITY)
		want = LW_RING_MIN_CAPACITY;
	if (want > LW_RING_MAX_CAPACITY)
		want = LW_RING_MAX_CAPACITY;
	uint32_t c = LW_RING_MIN_CAPACITY;
	while (c < want)
		c <<= 1;
	return c;
}

/* Field 22 of /proc/self/stat: the start time in clock ticks since boot.
 * The command name (field 2) may hold spaces and parentheses, so counting
 * starts after the last ')'. */
static uint64_t self_start_time(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* p + 1 is the space before field 3; each step moves one field. */
	p++;
	for (int field = 3; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int make_mapping(lw__ring_t *r)
{
	size_t sites_off = LW_RING_HEADER_SIZE;
	size_t records_off =
		sites_off + (size_t)r->site_capacity * LW_RING_SITE_SIZE;
	size_t size = records_off + (size_t)r->capacity * LW_RING_RECORD_SIZE;
	int err;

	int fd = memfd_create(LW_RING_MEMFD_NAME,
			      MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		goto fail_fd;
	}
	/* The size is fixed for good: a reader's mapping cannot be cut
	 * short under it. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
	    0) {
		err = -errno;
		goto fail_fd;
	}
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		err = -errno;
		goto fail_fd;
	}

	struct lw_ring_header *h = map;
	h->abi_version = LW_RING_ABI_VERSION;
	h->header_size = LW_RING_HEADER_SIZE;
	h->record_size = LW_RING_RECORD_SIZE;
	h->site_size = LW_RING_SITE_SIZE;
	h->capacity = r->capacity;
	h->site_capacity = r->site_capacity;
	h->sites_offset = sites_off;
	h->records_offset = records_off;
	h->total_size = size;
	h->pid = (int32_t)getpid();
	h->tid = 0;
	h->start_time = self_start_time();
	h->created_ns = lw__mono_ns();
	h->flags = r->flags;
	h->clock = r->clock->tsc ? LW_RING_CLOCK_TSC : LW_RING_CLOCK_MONOTONIC;
	memcpy(h->name, r->name, sizeof(h->name));
	__atomic_store_n(&h->magic, LW_RING_MAGIC, __ATOMIC_RELEASE);

	r->fd = fd;
	r->map = map;
	r->size = size;
	r->hdr = h;
	r->sites = (struct lw_ring_site *)((char *)map + sites_off);
	r->records = (struct lw_ring_record *)((char *)map + records_off);
	r->mask = r->capacity - 1;
	r->head = 0;
	r->nsites = 0;
	r->depth = 0;
	r->cursor_valid = 0;
	r->fork_gen = __atomic_load_n(&lw__fork_gen, __ATOMIC_RELAXED);
	return 0;

fail_fd:
	close(fd);
	return err;
}

int lw__ring_new(lw__ring_t **out, const char *name, uint32_t capacity,
		 uint32_t flags, lw__clock_t *clock)
{
	*out = NULL;
	if (lw__ring_disabled_by_env())
		return 0;
	pthread_once(&atfork_once, install_atfork);

	lw__ring_t *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->clock = clock;
	r->capacity = fit_capacity(capacity ? capacity : capacity_from_env());
	r->site_capacity = LW_RING_DEFAULT_SITES;
	r->flags = flags;
	snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
	int err = make_mapping(r);
	if (err) {
		free(r);
		return err;
	}
	pthread_mutex_lock(&rings_lock);
	r->fork_next = rings;
	if (rings != NULL)
		rings->fork_prev = r;
	rings = r;
	pthread_mutex_unlock(&rings_lock);
	*out = r;
	return 0;
}

void lw__ring_free(lw__ring_t *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&rings_lock);
	if (r->fork_prev != NULL)
		r->fork_prev->fork_next = r->fork_next;
	else
		rings = r->fork_next;
	if (r->fork_next != NULL)
		r->fork_next->fork_prev = r->fork_prev;
	pthread_mutex_unlock(&rings_lock);
	if (r->map != NULL)
		munmap(r->map, r->size);
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

int lw__ring_renew(lw__ring_t *r)
{
	/* The mapping is the child's scratch memory (atfork_child) and the
	 * fd the parent's memfd: let go of both. */
	munmap(r->map, r->size);
	close(r->fd);
	r->map = NULL;
	r->fd = -1;
	r->busy_ns = r->idle_ns = r->iterations = 0;
	r->last_exit_ns = 0;
	return make_mapping(r);
}

void lw__ring_set_tid(lw__ring_t *r)
{
	__atomic_store_n(&r->hdr->tid, (int32_t)syscall(SYS_gettid),
			 __ATOMIC_RELEASE);
}

void lw__ring_site(lw__ring_t *r, uint32_t id, int kind, uint64_t fn,
		   const char *name)
{
	if (id == 0 || id > r->site_capacity)
		return;
	struct lw_ring_site *s = &r->sites[id - 1];
	uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);

	/* The entry's seqlock: odd while it changes, so a reader that copied
	 * it mid-change sees the sequence move and copies again. */
	__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	char buf[LW_RING_NAME_MAX] = { 0 };
	if (name != NULL)
		strncpy(buf, name, sizeof(buf) - 1);
	for (size_t i = 0; i < sizeof(buf); i++)
		__atomic_store_n(&s->name[i], buf[i], __ATOMIC_RELAXED);
	__atomic_store_n(&s->kind, (uint16_t)kind, __ATOMIC_RELAXED);
	__atomic_store_n(&s->fn, fn, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id, id, __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);

	/* Sites are published in id order (ids are dense); nsites only ever
	 * grows past entries that are complete. */
	if (id > r->nsites) {
		r->nsites = id;
		__atomic_store_n(&r->hdr->nsites, id, __ATOMIC_RELEASE);
	}
}
