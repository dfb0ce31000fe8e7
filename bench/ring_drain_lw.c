/*
 * ring_drain_lw.c - how fast the agent's reader drains a ring.  See
 * bench/README.md ("The ring's cost").  Target: at least 20 million
 * records per second.
 *
 * A writer thread produces records as fast as it can (lw_probe_begin and
 * lw_probe_end around nothing) into a ring of BENCH_DRAIN_CAPACITY records;
 * this thread reads them with the real reader, as the agent does: the
 * ring's memfd found in /proc/self/fd, opened read-only through
 * /proc/self/fd/N with lw_rr_open_fd() (sealed, checked) and read with
 * lw_rr_read() in batches of BENCH_DRAIN_BATCH.  Every figure is ns per
 * record, the median of the repetitions; run.sh turns them into records
 * per second.
 *
 *   ring_drain_spin         live, the reader spinning on the head: it reads
 *                           each record as soon as it is there.  Wall time
 *                           per record read; the writer's time per record
 *                           written (ring_drain_spin_writer), which such a
 *                           reader slows, since every store of head then
 *                           misses in the writer's cache.
 *   ring_drain_poll         live, the reader sleeping BENCH_DRAIN_POLL_US
 *                           whenever it caught up, as the agent polls.
 *                           Wall time per record read, the reader's time
 *                           inside lw_rr_read() per record
 *                           (ring_drain_poll_reader: its drain rate while a
 *                           writer writes), and the writer's time.
 *   ring_drain_alone_writer the writer with nobody reading.
 *   ring_drain_pure         the ring full and nobody writing: read every
 *                           record it holds, BENCH_DRAIN_PASSES times.
 *
 * What a reader could not keep up with is overwritten and counted as lost
 * by lw_rr_read(); the loss of both live modes is printed in percent of
 * what was written, and the program fails if read + lost is not exactly
 * what was written, or if a record read is not one the writer wrote.
 *
 * The reader is the agent's own (libloopwatch-agent.a), as loopwatch uses it.
 */
#include "lib/bench.h"

#include <loopwatch.h>
#include <loopwatch_ring.h>

#include "ring_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_DRAIN_CAPACITY (1u << 22) /* records: 128 MiB */
#define BENCH_DRAIN_RECORDS 50000000 /* written per live repetition */
#define BENCH_DRAIN_BATCH 4096 /* records per lw_rr_read() */
#define BENCH_DRAIN_PASSES 8 /* full-ring reads per pure repetition */
#define BENCH_DRAIN_POLL_US 1000 /* the polling reader's sleep */

/* What the writer thread and the reader share. */
struct drain_shared {
	size_t records; /* to write after the go */
	lw_probe_t *probe; /* set by the writer once its ring is made */
	int ready, go, done; /* handshakes, __atomic */
	uint64_t write_ns; /* the writer's time for `records` */
};

static void drain_nothing(void)
{
}

static void *drain_writer(void *arg)
{
	struct drain_shared *s = arg;
	lw_probe_t *p;

	/* The probe is made here: its ring records this thread as the
	 * loop's, as a real loop's would. */
	BENCH_CHECK(lw_probe_new(&p, "drain", BENCH_DRAIN_CAPACITY),
		    "lw_probe_new");
	if (!lw_probe_enabled(p))
		bench_die("the probe has no ring (LOOPWATCH=off?)", 0);
	uint32_t site = lw_probe_site(p, LW_KIND_PROBE, LW_FN(drain_nothing),
				      "nothing");
	/* One lap first, so that every page of the ring is mapped in before
	 * the clock starts: first-touch faults are not the steady state. */
	for (size_t i = 0; i < BENCH_DRAIN_CAPACITY; i++) {
		lw_probe_begin(p, site, 0);
		lw_probe_end(p);
	}
	__atomic_store_n(&s->probe, p, __ATOMIC_RELEASE);
	__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE))
		;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < s->records; i++) {
		lw_probe_begin(p, site, 0);
		lw_probe_end(p);
	}
	s->write_ns = bench_now_ns() - t0;
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* The fd of this process's only ring, found as the agent finds rings:
 * the memfd's link in /proc/PID/fd. */
static int drain_find_ring(void)
{
	static const char want[] = "/memfd:" LW_RING_MEMFD_NAME " (deleted)";
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (d == NULL)
		bench_die("opendir /proc/self/fd", errno);
	while ((e = readdir(d)) != NULL) {
		char target[256];
		ssize_t n = readlinkat(dirfd(d), e->d_name, target,
				       sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strcmp(target, want) == 0) {
			found = atoi(e->d_name);
			break;
		}
	}
	closedir(d);
	if (found < 0)
		bench_die("no ring in /proc/self/fd", 0);
	return found;
}

static lw_rr_ring_t *drain_open(void)
{
	char why[256] = "";
	lw_rr_ring_t *r;
	/* Through /proc, read-only, as another process would open it. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", drain_find_ring());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		bench_die("open the ring", errno);
	if (lw_rr_open_fd(fd, &r, why, sizeof(why)) != 0) {
		fprintf(stderr, "bench: lw_rr_open_fd: %s\n", why);
		exit(1);
	}
	close(fd);
	return r;
}

static struct lw_ring_record batch[BENCH_DRAIN_BATCH];

static double per(uint64_t ns, uint64_t n)
{
	return n ? (double)ns / (double)n : 0;
}

/* What one live repetition measured. */
struct drain_live {
	uint64_t read, lost;
	uint64_t wall_ns; /* from the go until all was read or lost */
	uint64_t busy_ns; /* of that, inside lw_rr_read() calls that read */
	uint64_t write_ns; /* the writer's time */
};

/*
 * Write `records` on a writer thread and read them here.  With `poll`, the
 * reader sleeps BENCH_DRAIN_POLL_US whenever it has caught up (less than a
 * batch was there), as the agent does; without, it spins on the head, the
 * worst case for the writer, whose every store of head then misses.
 */
static void drain_live(size_t records, int poll, struct drain_live *out)
{
	struct drain_shared s = { .records = records };
	pthread_t th;
	int err = pthread_create(&th, NULL, drain_writer, &s);
	if (err)
		bench_die("pthread_create", err);
	while (!__atomic_load_n(&s.ready, __ATOMIC_ACQUIRE))
		sched_yield();
	lw_rr_ring_t *r = drain_open();
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 0);
	uint64_t start = c.pos, got = 0, busy = 0;

	uint64_t t0 = bench_now_ns();
	__atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);
	for (;;) {
		int done = __atomic_load_n(&s.done, __ATOMIC_ACQUIRE);
		uint64_t a = bench_now_ns();
		size_t n = lw_rr_read(r, &c, batch, BENCH_DRAIN_BATCH);
		if (n > 0)
			busy += bench_now_ns() - a;
		got += n;
		/* Check what was read, as a consumer would look at it:
		 * the records must be the writer's. */
		for (size_t i = 0; i < n; i++)
			if (batch[i].site != 1 ||
			    batch[i].kind != LW_KIND_PROBE)
				bench_die("a record is not the writer's", 0);
		if (n == 0 && done && c.pos - start >= records)
			break;
		if (poll && n < BENCH_DRAIN_BATCH)
			usleep(BENCH_DRAIN_POLL_US);
	}
	uint64_t t1 = bench_now_ns();
	pthread_join(th, NULL);
	if (got + c.lost != records)
		bench_die("read + lost is not what was written", 0);
	lw_rr_close(r);
	lw_probe_free(s.probe);
	*out = (struct drain_live){ .read = got,
				    .lost = c.lost,
				    .wall_ns = t1 - t0,
				    .busy_ns = busy,
				    .write_ns = s.write_ns };
}

/* The writer alone (nobody reads), `records` records; then the ring is
 * full and nobody writes: read all it holds, BENCH_DRAIN_PASSES times.
 * Returns the reader's ns per record; the writer's in *write_ns. */
static double drain_pure(size_t records, double *write_ns)
{
	struct drain_shared s = { .records = records };
	pthread_t th;
	int err = pthread_create(&th, NULL, drain_writer, &s);
	if (err)
		bench_die("pthread_create", err);
	while (!__atomic_load_n(&s.ready, __ATOMIC_ACQUIRE))
		sched_yield();
	__atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);

	lw_rr_ring_t *r = drain_open();
	lw_rr_cursor_t c;
	uint64_t pure = 0;
	uint64_t t0 = bench_now_ns();
	for (int pass = 0; pass < BENCH_DRAIN_PASSES; pass++) {
		lw_rr_cursor_init(r, &c, 1);
		size_t n;
		while ((n = lw_rr_read(r, &c, batch, BENCH_DRAIN_BATCH)) > 0)
			pure += n;
		if (c.lost != 0)
			bench_die("records lost with no writer", 0);
	}
	uint64_t t1 = bench_now_ns();
	if (pure != (uint64_t)BENCH_DRAIN_PASSES * (BENCH_DRAIN_CAPACITY - 1))
		bench_die("a full ring did not read in full", 0);
	lw_rr_close(r);
	lw_probe_free(s.probe);
	*write_ns = per(s.write_ns, records);
	return (double)(t1 - t0) / (double)pure;
}

int main(int argc, char **argv)
{
	/* Figures per record: wall time per record read (spin and poll),
	 * the reader's busy time per record read while polling, the
	 * writer's time per record written with each reader, and the pure
	 * drain. */
	bench_metric_t m_spin = { .name = "ring_drain_spin" };
	bench_metric_t m_spin_w = { .name = "ring_drain_spin_writer" };
	bench_metric_t m_poll = { .name = "ring_drain_poll" };
	bench_metric_t m_poll_busy = { .name = "ring_drain_poll_reader" };
	bench_metric_t m_poll_w = { .name = "ring_drain_poll_writer" };
	bench_metric_t m_pure = { .name = "ring_drain_pure" };
	bench_metric_t m_alone_w = { .name = "ring_drain_alone_writer" };
	uint64_t written[2] = { 0, 0 }, lost[2] = { 0, 0 };
	bench_opts_t o;

	bench_init(argc, argv, &o);
	size_t records = bench_count(&o, BENCH_DRAIN_RECORDS);

	for (int rep = 0; rep < o.reps; rep++) {
		struct drain_live l;

		drain_live(records, 0, &l);
		bench_metric_add(&m_spin, per(l.wall_ns, l.read));
		bench_metric_add(&m_spin_w, per(l.write_ns, records));
		written[0] += records;
		lost[0] += l.lost;

		drain_live(records, 1, &l);
		bench_metric_add(&m_poll, per(l.wall_ns, l.read));
		bench_metric_add(&m_poll_busy, per(l.busy_ns, l.read));
		bench_metric_add(&m_poll_w, per(l.write_ns, records));
		written[1] += records;
		lost[1] += l.lost;

		double w;
		bench_metric_add(&m_pure, drain_pure(records, &w));
		bench_metric_add(&m_alone_w, w);
	}

	bench_metric_print(&m_spin);
	bench_metric_print(&m_spin_w);
	bench_metric_print(&m_poll);
	bench_metric_print(&m_poll_busy);
	bench_metric_print(&m_poll_w);
	bench_metric_print(&m_alone_w);
	bench_metric_print(&m_pure);
	/* Loss in percent of what was written, over all repetitions. */
	printf("ring_drain_spin_lost pct %.3f of %llu\n",
	       100.0 * (double)lost[0] / (double)written[0],
	       (unsigned long long)written[0]);
	printf("ring_drain_poll_lost pct %.3f of %llu\n",
	       100.0 * (double)lost[1] / (double)written[1],
	       (unsigned long long)written[1]);
	return 0;
}
