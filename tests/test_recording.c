/* test_recording.c - the recording format (agent/recording.[ch]): round
 * trips of every record type, and a reader that survives truncation at
 * every offset, a flipped byte anywhere, newer versions and files that are
 * not recordings.
 *
 * LW_REC_CORPUS_DIR=fuzz/corpus/recording build/tests/run_tests
 * recording_seed_corpus writes the fuzz target's seeds. */
#include "lwtest.h"
#include "recording.h"
#include "../bpf/loopwatch_bpf.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

/* A fresh file name in the test's own temporary folder. */
static const char *tmp_path(const char *name)
{
	static char path[256];
	static char dir[128];

	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/lwt-rec-XXXXXX");
		if (mkdtemp(dir) == NULL)
			LWT_FAIL("mkdtemp: %s", strerror(errno));
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(path);
}

/* Remove the test's temporary folder (a failed test keeps it, for a look
 * at what it wrote). */
static void tmp_cleanup(void)
{
	const char *p = tmp_path("x");
	char dir[256];

	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(p, '/') - p), p);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static uint8_t *slurp(const char *path, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint8_t *b;

	ASSERT(fd >= 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	ASSERT(b != NULL);
	ASSERT_EQ(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*size = (size_t)st.st_size;
	return b;
}

static const lw_rec_header_t sample_header = {
	.version = "0.1.0",
	.pid = 4242,
	.comm = "blocky_server",
	.hostname = "ci-runner-7",
	.mono_ns = 1000000000ull,
	.real_ns = 1764170000123456789ull,
	.min_ns = 1000000,
	.sources = LW_REC_SRC_RINGS,
	.rings_why = "",
	.kprobes_why =
		"no CAP_BPF: run as root or with CAP_BPF and CAP_PERFMON",
};

static const char *const sample_frames[] = {
	"fsync+0x0 (libc.so.6)",
	"on_checkpoint+0x2a (blocky_server.c:88)",
	"lw_run+0x1f0 (loop.c:310)",
	"main+0x55 (blocky_server.c:140)",
};

static const lw_rec_kevent_t sample_kevent = {
	.loop_id = 1,
	.kind = LW_BPF_EV_SYSCALL,
	.tid = 4243,
	.flags = LW_REC_KEV_STACK_CUT,
	.start_ns = 1000500000,
	.duration_ns = 12000000,
	.nr = 74,
	.fd = 7,
	.fd_kind = LW_BPF_FD_REG,
	.ret = -5,
	.off_cpu_ns = 11000000,
	.preempt_ns = 250000,
	.span_start_ns = 0,
	.syscall = "fsync",
	.fd_path = "/var/db/journal",
	.nframes = 4,
	.frames = sample_frames,
};

enum { SAMPLE_CALLBACKS = 5 };

/* The sample recording: every record type, two loops (one without a
 * ring), a rename, callbacks, a kernel event and counters. */
static void write_sample(const char *path, int with_end)
{
	char why[256] = "";
	lw_rec_writer_t *w =
		lw_rec_open(path, &sample_header, 0, why, sizeof(why));
	if (w == NULL)
		LWT_FAIL("lw_rec_open: %s", why);

	lw_rec_loop_t l1 = { .id = 1,
			     .tid = 4243,
			     .ring_capacity = 65536,
			     .flags = 1,
			     .name = "main" };
	lw_rec_loop_t l2 = { .id = 2, .tid = 4250, .name = "" };
	ASSERT_OK(lw_rec_write_loop(w, &l1));
	ASSERT_OK(lw_rec_write_loop(w, &l2));
	lw_rec_site_t s1 = { .loop_id = 1,
			     .site_id = 3,
			     .kind = 1,
			     .fn = 0x55550000abcdull,
			     .name = "checkpoint",
			     .func = "on_checkpoint+0x0 (blocky_server.c:80)" };
	ASSERT_OK(lw_rec_write_site(w, &s1));
	for (int i = 0; i < SAMPLE_CALLBACKS; i++) {
		lw_rec_callback_t c = {
			.loop_id = 1,
			.site_id = 3,
			.kind = 1,
			.flags = (uint16_t)(i == 2),
			.lateness_ns = 100u * (uint32_t)i,
			.start_ns = 1000000000ull + 1000000ull * (uint64_t)i,
			.duration_ns = 5000ull + (uint64_t)i,
		};
		ASSERT_OK(lw_rec_write_callback(w, &c));
	}
	ASSERT_OK(lw_rec_write_kevent(w, &sample_kevent));
	lw_rec_counters_t k = {
		.loop_id = 1,
		.now_ns = 2000000000ull,
		.iterations = 99,
		.busy_ns = 30000000,
		.idle_ns = 970000000,
		.lost_records = 3,
		.kernel_lost = 4,
		.pool_threads = 20,
		.pool_busy = 2,
		.pool_queued = 5,
		.pool_completed = 1234,
		.pool_oldest_start_ns = 1999000000ull,
	};
	ASSERT_OK(lw_rec_write_counters(w, &k));
	lw_rec_fate_t f = {
		.end = LW_REC_FATE_EXITED,
		.flags = LW_REC_FATE_FAILED,
		.seen_ns = 2500000000ull,
		.line = "process 4242 was killed by SIGSEGV",
	};
	ASSERT_OK(lw_rec_write_fate(w, &f));
	lw_rec_end_t end = { .end_ns = 3000000000ull,
			     .lost_records = 3,
			     .kernel_lost = 4 };
	if (lw_rec_close(w, with_end ? &end : NULL, why, sizeof(why)) != 0)
		LWT_FAIL("lw_rec_close: %s", why);
}

/* Records in the sample: header, 2 loops, 1 site, the callbacks, 1
 * kevent, 1 counters, 1 fate, end. */
#define SAMPLE_RECORDS (1 + 2 + 1 + SAMPLE_CALLBACKS + 1 + 1 + 1 + 1)

/* Read all items: their types and offsets, the return of the last
 * lw_rec_next, and the reader (for its error) in *rp. */
static int read_all(lw_rec_reader_t *r, int *types, uint64_t *offs, int max,
		    int *count)
{
	lw_rec_item_t it;
	int n = 0, ret;

	while ((ret = lw_rec_next(r, &it)) == 1) {
		ASSERT_LT(n, max);
		types[n] = it.type;
		offs[n] = it.offset;
		n++;
	}
	*count = n;
	return ret;
}

TEST(recording_roundtrip)
{
	const char *path = tmp_path("sample.lwrec");
	char why[256] = "";
	lw_rec_item_t it;

	write_sample(path, 1);
	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	if (r == NULL)
		LWT_FAIL("open: %s", why);

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_HEADER);
	ASSERT_EQ(it.offset, LW_REC_PREAMBLE_LEN);
	const lw_rec_header_t *h = &it.u.header;
	ASSERT_EQ(h->major, LW_REC_MAJOR);
	ASSERT_EQ(h->minor, LW_REC_MINOR);
	ASSERT_STREQ(h->version, "0.1.0");
	ASSERT_EQ(h->pid, 4242);
	ASSERT_STREQ(h->comm, "blocky_server");
	ASSERT_STREQ(h->hostname, "ci-runner-7");
	ASSERT_EQ(h->mono_ns, sample_header.mono_ns);
	ASSERT(h->real_ns == sample_header.real_ns);
	ASSERT_EQ(h->min_ns, 1000000);
	ASSERT_EQ(h->sources, LW_REC_SRC_RINGS);
	ASSERT_STREQ(h->rings_why, "");
	ASSERT_STREQ(h->kprobes_why, sample_header.kprobes_why);

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_LOOP);
	ASSERT_EQ(it.u.loop.id, 1);
	ASSERT_EQ(it.u.loop.tid, 4243);
	ASSERT_EQ(it.u.loop.ring_capacity, 65536);
	ASSERT_EQ(it.u.loop.flags, 1);
	ASSERT_STREQ(it.u.loop.name, "main");
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_LOOP);
	ASSERT_EQ(it.u.loop.id, 2);
	ASSERT_EQ(it.u.loop.ring_capacity, 0);
	ASSERT_STREQ(it.u.loop.name, "");

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_SITE);
	ASSERT_EQ(it.u.site.loop_id, 1);
	ASSERT_EQ(it.u.site.site_id, 3);
	ASSERT_EQ(it.u.site.kind, 1);
	ASSERT(it.u.site.fn == 0x55550000abcdull);
	ASSERT_STREQ(it.u.site.name, "checkpoint");
	ASSERT_STREQ(it.u.site.func, "on_checkpoint+0x0 (blocky_server.c:80)");

	for (int i = 0; i < SAMPLE_CALLBACKS; i++) {
		ASSERT_EQ(lw_rec_next(r, &it), 1);
		ASSERT_EQ(it.type, LW_REC_CALLBACK);
		const lw_rec_callback_t *c = &it.u.callback;
		ASSERT_EQ(c->loop_id, 1);
		ASSERT_EQ(c->site_id, 3);
		ASSERT_EQ(c->kind, 1);
		ASSERT_EQ(c->flags, i == 2);
		ASSERT_EQ(c->lateness_ns, 100 * i);
		ASSERT_EQ(c->start_ns, 1000000000ull + 1000000ull * i);
		ASSERT_EQ(c->duration_ns, 5000 + i);
	}

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_KEVENT);
	const lw_rec_kevent_t *k = &it.u.kevent, *e = &sample_kevent;
	ASSERT_EQ(k->loop_id, e->loop_id);
	ASSERT_EQ(k->kind, e->kind);
	ASSERT_EQ(k->tid, e->tid);
	ASSERT_EQ(k->flags, e->flags);
	ASSERT_EQ(k->start_ns, e->start_ns);
	ASSERT_EQ(k->duration_ns, e->duration_ns);
	ASSERT_EQ(k->nr, 74);
	ASSERT_EQ(k->fd, 7);
	ASSERT_EQ(k->fd_kind, LW_BPF_FD_REG);
	ASSERT_EQ(k->ret, -5);
	ASSERT_EQ(k->off_cpu_ns, e->off_cpu_ns);
	ASSERT_EQ(k->preempt_ns, e->preempt_ns);
	ASSERT_EQ(k->span_start_ns, 0);
	ASSERT_STREQ(k->syscall, "fsync");
	ASSERT_STREQ(k->fd_path, "/var/db/journal");
	ASSERT_EQ(k->nframes, 4);
	for (int i = 0; i < 4; i++)
		ASSERT_STREQ(k->frames[i], sample_frames[i]);

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_COUNTERS);
	const lw_rec_counters_t *n = &it.u.counters;
	ASSERT_EQ(n->loop_id, 1);
	ASSERT_EQ(n->now_ns, 2000000000ull);
	ASSERT_EQ(n->iterations, 99);
	ASSERT_EQ(n->busy_ns, 30000000);
	ASSERT_EQ(n->idle_ns, 970000000);
	ASSERT_EQ(n->lost_records, 3);
	ASSERT_EQ(n->kernel_lost, 4);
	ASSERT_EQ(n->pool_threads, 20);
	ASSERT_EQ(n->pool_busy, 2);
	ASSERT_EQ(n->pool_queued, 5);
	ASSERT_EQ(n->pool_completed, 1234);
	ASSERT_EQ(n->pool_oldest_start_ns, 1999000000ull);

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_FATE);
	ASSERT_EQ(it.u.fate.end, LW_REC_FATE_EXITED);
	ASSERT_EQ(it.u.fate.flags, LW_REC_FATE_FAILED);
	ASSERT_EQ(it.u.fate.seen_ns, 2500000000ull);
	ASSERT_STREQ(it.u.fate.line, "process 4242 was killed by SIGSEGV");

	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_END);
	ASSERT_EQ(it.u.end.end_ns, 3000000000ull);
	ASSERT_EQ(it.u.end.records, SAMPLE_RECORDS - 1);
	ASSERT_EQ(it.u.end.callbacks, SAMPLE_CALLBACKS);
	ASSERT_EQ(it.u.end.kevents, 1);
	ASSERT_EQ(it.u.end.lost_records, 3);
	ASSERT_EQ(it.u.end.kernel_lost, 4);

	ASSERT_EQ(lw_rec_next(r, &it), 0);
	ASSERT_EQ(lw_rec_next(r, &it), 0);
	ASSERT_EQ(lw_rec_reader_error(r), LW_REC_OK);
	ASSERT_EQ(lw_rec_reader_skipped(r), 0);
	lw_rec_reader_close(r);
	lw_rec_reader_close(NULL);
	tmp_cleanup();
}

/* The offsets of the sample's records, and where each one ends. */
static void sample_layout(const uint8_t *data, size_t size, uint64_t *offs,
			  uint64_t *ends, int *types)
{
	char why[256] = "";
	lw_rec_reader_t *r =
		lw_rec_reader_open_mem(data, size, why, sizeof(why));
	int n;

	if (r == NULL)
		LWT_FAIL("open: %s", why);
	ASSERT_EQ(read_all(r, types, offs, SAMPLE_RECORDS, &n), 0);
	ASSERT_EQ(n, SAMPLE_RECORDS);
	for (int i = 0; i < n; i++)
		ends[i] = i + 1 < n ? offs[i + 1] : size;
	lw_rec_reader_close(r);
}

TEST(recording_truncate_every_offset)
{
	const char *path = tmp_path("trunc.lwrec");
	uint64_t offs[SAMPLE_RECORDS], ends[SAMPLE_RECORDS];
	int types[SAMPLE_RECORDS];
	size_t size;

	write_sample(path, 1);
	uint8_t *data = slurp(path, &size);
	sample_layout(data, size, offs, ends, types);

	for (size_t cut = 0; cut < size; cut++) {
		char why[256] = "", want[32];
		/* A copy of exactly cut bytes, so ASan sees any read past
		 * the cut. */
		uint8_t *d = malloc(cut ? cut : 1);
		memcpy(d, data, cut);
		lw_rec_reader_t *r =
			lw_rec_reader_open_mem(d, cut, why, sizeof(why));
		if (cut < LW_REC_PREAMBLE_LEN) {
			ASSERT(r == NULL);
			ASSERT(strstr(why, cut ? "offset" : "empty file") !=
			       NULL);
			free(d);
			continue;
		}
		if (r == NULL)
			LWT_FAIL("cut %zu: open: %s", cut, why);
		int got_types[SAMPLE_RECORDS], n;
		uint64_t got_offs[SAMPLE_RECORDS];
		ASSERT_EQ(read_all(r, got_types, got_offs, SAMPLE_RECORDS, &n),
			  -1);
		/* Exactly the records that end at or before the cut. */
		int whole = 0;
		while (whole < SAMPLE_RECORDS && ends[whole] <= cut)
			whole++;
		if (n != whole)
			LWT_FAIL("cut %zu: %d items, want %d (%s)", cut, n,
				 whole, lw_rec_reader_why(r));
		for (int i = 0; i < n; i++) {
			ASSERT_EQ(got_types[i], types[i]);
			ASSERT_EQ(got_offs[i], offs[i]);
		}
		uint64_t at =
			whole == 0 ? LW_REC_PREAMBLE_LEN : ends[whole - 1];
		ASSERT_EQ(lw_rec_reader_error(r), LW_REC_E_CUT);
		ASSERT_EQ(lw_rec_reader_error_offset(r), at);
		snprintf(want, sizeof(want), "offset %llu",
			 (unsigned long long)at);
		if (strstr(lw_rec_reader_why(r), want) == NULL)
			LWT_FAIL("cut %zu: \"%s\" does not name %s", cut,
				 lw_rec_reader_why(r), want);
		if (cut == 16 || cut == size - 1)
			printf("cut at %zu: %s\n", cut, lw_rec_reader_why(r));
		lw_rec_reader_close(r);
		free(d);
	}
	free(data);
	tmp_cleanup();
}

TEST(recording_flip_every_byte)
{
	const char *path = tmp_path("flip.lwrec");
	uint64_t offs[SAMPLE_RECORDS], ends[SAMPLE_RECORDS];
	int types[SAMPLE_RECORDS];
	size_t size;
	const uint8_t masks[] = { 0x01, 0x80, 0xff };

	write_sample(path, 1);
	uint8_t *data = slurp(path, &size);
	sample_layout(data, size, offs, ends, types);

	for (size_t i = 0; i < size; i++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			char why[256] = "", want[32];
			data[i] ^= masks[m];
			lw_rec_reader_t *r = lw_rec_reader_open_mem(
				data, size, why, sizeof(why));
			if (i < LW_REC_PREAMBLE_LEN) {
				if (r != NULL)
					LWT_FAIL("byte %zu ^ 0x%x: opened", i,
						 masks[m]);
				ASSERT(strstr(why, "offset 0") != NULL);
				data[i] ^= masks[m];
				continue;
			}
			if (r == NULL)
				LWT_FAIL("byte %zu: open: %s", i, why);
			int k = 0;
			while (ends[k] <= i)
				k++;
			int got_types[SAMPLE_RECORDS], n;
			uint64_t got_offs[SAMPLE_RECORDS];
			int ret = read_all(r, got_types, got_offs,
					   SAMPLE_RECORDS, &n);
			if (ret != -1 || n != k)
				LWT_FAIL("byte %zu ^ 0x%x (record %d at %llu): "
					 "ret %d after %d items",
					 i, masks[m], k,
					 (unsigned long long)offs[k], ret, n);
			for (int j = 0; j < n; j++)
				ASSERT_EQ(got_offs[j], offs[j]);
			ASSERT_EQ(lw_rec_reader_error_offset(r), offs[k]);
			snprintf(want, sizeof(want), "offset %llu",
				 (unsigned long long)offs[k]);
			ASSERT(strstr(lw_rec_reader_why(r), want) != NULL);
			if (i == offs[3] + 9 && m == 0)
				printf("flip at %zu: %s\n", i,
				       lw_rec_reader_why(r));
			lw_rec_reader_close(r);
			data[i] ^= masks[m];
		}
	}
	free(data);
	tmp_cleanup();
}

/* ---- hand-made files ---- */

struct buf {
	uint8_t b[8192];
	size_t n;
};

static void b_put(struct buf *b, const void *p, size_t n)
{
	ASSERT_LE(b->n + n, sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void b_le(struct buf *b, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++) {
		uint8_t c = (uint8_t)(v >> (8 * i));
		b_put(b, &c, 1);
	}
}

static void b_preamble(struct buf *b, unsigned major, unsigned minor)
{
	b->n = 0;
	b_put(b, LW_REC_MAGIC, LW_REC_MAGIC_LEN);
	b_le(b, major, 2);
	b_le(b, minor, 2);
	b_le(b, lw_rec_crc32(0, b->b, 12), 4);
}

static void b_record(struct buf *b, unsigned type, const void *payload,
		     size_t len)
{
	size_t start = b->n;

	b_le(b, type, 2);
	b_le(b, 0, 2);
	b_le(b, len, 4);
	b_put(b, payload, len);
	b_le(b, lw_rec_crc32(0, b->b + start, b->n - start), 4);
}

/* A header record with every string empty. */
static void b_header(struct buf *b)
{
	struct buf p = { .n = 0 };

	b_le(&p, 1, 8);
	b_le(&p, 2, 8);
	b_le(&p, 3, 8);
	b_le(&p, 77, 4);
	b_le(&p, 0, 4);
	for (int i = 0; i < 5; i++)
		b_le(&p, 0, 2);
	b_record(b, LW_REC_HEADER, p.b, p.n);
}

static void b_end(struct buf *b, uint64_t records)
{
	struct buf p = { .n = 0 };

	b_le(&p, 9, 8);
	b_le(&p, records, 8);
	for (int i = 0; i < 4; i++)
		b_le(&p, 0, 8);
	b_record(b, LW_REC_END, p.b, p.n);
}

/* A file of a newer minor version: an unknown record type (skipped) and a
 * callback with a field appended (ignored). */
static void b_newer_minor(struct buf *b, unsigned minor)
{
	struct buf p = { .n = 0 };

	b_preamble(b, LW_REC_MAJOR, minor);
	b_header(b);
	b_record(b, 99, "future", 6);
	b_le(&p, 1, 4);
	b_le(&p, 2, 4);
	b_le(&p, 3, 2);
	b_le(&p, 0, 2);
	b_le(&p, 5, 4);
	b_le(&p, 1000, 8);
	b_le(&p, 20, 8);
	b_le(&p, 0xdeadbeef, 4); /* a field of the future */
	b_record(b, LW_REC_CALLBACK, p.b, p.n);
	b_end(b, 3);
}

TEST(recording_newer_minor_skipped)
{
	struct buf b;
	char why[256] = "";
	lw_rec_item_t it;

	b_newer_minor(&b, LW_REC_MINOR + 1);
	lw_rec_reader_t *r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	if (r == NULL)
		LWT_FAIL("open: %s", why);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_HEADER);
	ASSERT_EQ(it.u.header.minor, LW_REC_MINOR + 1);
	ASSERT_EQ(it.u.header.pid, 77);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_CALLBACK);
	ASSERT_EQ(it.u.callback.loop_id, 1);
	ASSERT_EQ(it.u.callback.site_id, 2);
	ASSERT_EQ(it.u.callback.kind, 3);
	ASSERT_EQ(it.u.callback.lateness_ns, 5);
	ASSERT_EQ(it.u.callback.start_ns, 1000);
	ASSERT_EQ(it.u.callback.duration_ns, 20);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_END);
	ASSERT_EQ(lw_rec_next(r, &it), 0);
	ASSERT_EQ(lw_rec_reader_skipped(r), 1);
	lw_rec_reader_close(r);

	/* The same records in a file of this very version are faults. */
	b_newer_minor(&b, LW_REC_MINOR);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	ASSERT_EQ(lw_rec_reader_error(r), LW_REC_E_CORRUPT);
	ASSERT(strstr(lw_rec_reader_why(r), "unknown record type 99") != NULL);
	printf("%s\n", lw_rec_reader_why(r));
	lw_rec_reader_close(r);
}

/* A file of format 1.minor: the header, one fate record of payload fate,
 * the end; opened, its header read. */
static lw_rec_reader_t *fate_file(struct buf *b, unsigned minor,
				  const struct buf *fate)
{
	char why[256] = "";
	lw_rec_item_t it;

	b_preamble(b, LW_REC_MAJOR, minor);
	b_header(b);
	b_record(b, LW_REC_FATE, fate->b, fate->n);
	b_end(b, 2);
	lw_rec_reader_t *r =
		lw_rec_reader_open_mem(b->b, b->n, why, sizeof(why));
	if (r == NULL)
		LWT_FAIL("open: %s", why);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_HEADER);
	return r;
}

/* The fate record came with format 1.1: read in a 1.1 file, a fault in a
 * 1.0 one (as any type unknown to that version); an end kind or flag of a
 * newer minor is read as what this reader knows. */
TEST(recording_fate_record_since_1_1)
{
	static struct buf b, p;
	lw_rec_item_t it;

	ASSERT_EQ(LW_REC_MINOR, 1);
	p.n = 0;
	b_le(&p, LW_REC_FATE_EXECED, 4);
	b_le(&p, 0, 4);
	b_le(&p, 1234, 8);
	b_le(&p, 4, 2);
	b_put(&p, "exec", 4);
	for (unsigned minor = 0; minor <= 2; minor++) {
		lw_rec_reader_t *r = fate_file(&b, minor, &p);
		if (minor == 0) {
			ASSERT_EQ(lw_rec_next(r, &it), -1);
			ASSERT(strstr(lw_rec_reader_why(r),
				      "unknown record type 9") != NULL);
		} else {
			ASSERT_EQ(lw_rec_next(r, &it), 1);
			ASSERT_EQ(it.type, LW_REC_FATE);
			ASSERT_EQ(it.u.fate.end, LW_REC_FATE_EXECED);
			ASSERT_EQ(it.u.fate.seen_ns, 1234);
			ASSERT_STREQ(it.u.fate.line, "exec");
			ASSERT_EQ(lw_rec_next(r, &it), 1);
			ASSERT_EQ(it.type, LW_REC_END);
		}
		lw_rec_reader_close(r);
	}

	/* An end kind of the future: a fault in 1.1, "exited" in 1.2. */
	p.b[0] = 7;
	for (unsigned minor = 1; minor <= 2; minor++) {
		lw_rec_reader_t *r = fate_file(&b, minor, &p);
		if (minor == 1) {
			ASSERT_EQ(lw_rec_next(r, &it), -1);
			ASSERT(strstr(lw_rec_reader_why(r), "field end") !=
			       NULL);
		} else {
			ASSERT_EQ(lw_rec_next(r, &it), 1);
			ASSERT_EQ(it.u.fate.end, LW_REC_FATE_EXITED);
		}
		lw_rec_reader_close(r);
	}
}

TEST(recording_newer_major_refused)
{
	struct buf b;
	char why[256] = "";

	b_preamble(&b, LW_REC_MAJOR + 1, 3);
	b_header(&b);
	b_end(&b, 1);
	ASSERT(lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why)) == NULL);
	printf("%s\n", why);
	char want[128];
	snprintf(want, sizeof(want),
		 "recording format %d.3 (at offset 8) is newer than this "
		 "loopwatch reads "
		 "(%d.x): use a newer loopwatch",
		 LW_REC_MAJOR + 1, LW_REC_MAJOR);
	ASSERT_STREQ(why, want);
}

TEST(recording_not_a_recording)
{
	const char *path = tmp_path("notes.txt");
	char why[256] = "";
	FILE *f = fopen(path, "w");

	ASSERT(f != NULL);
	fputs("{\"this\": \"is JSON, not a recording\"}\n", f);
	fclose(f);
	ASSERT(lw_rec_reader_open(path, why, sizeof(why)) == NULL);
	ASSERT_STREQ(why, "not a loopwatch recording: bad magic at offset 0");

	ASSERT(lw_rec_reader_open_mem("", 0, why, sizeof(why)) == NULL);
	ASSERT_STREQ(why, "not a loopwatch recording: empty file");
	ASSERT(lw_rec_reader_open_mem("LWR", 3, why, sizeof(why)) == NULL);
	printf("3 bytes of magic: %s\n", why);
	ASSERT(strstr(why, "cut at offset 3") != NULL);

	ASSERT(lw_rec_reader_open(tmp_path("missing"), why, sizeof(why)) ==
	       NULL);
	ASSERT(strstr(why, "No such file") != NULL);
	tmp_cleanup();
}

TEST(recording_cut_without_end)
{
	const char *path = tmp_path("cut.lwrec");
	char why[256] = "";
	int types[SAMPLE_RECORDS], n;
	uint64_t offs[SAMPLE_RECORDS];
	struct stat st;

	write_sample(path, 0);
	ASSERT_EQ(stat(path, &st), 0);
	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(read_all(r, types, offs, SAMPLE_RECORDS, &n), -1);
	ASSERT_EQ(n, SAMPLE_RECORDS - 1);
	ASSERT_EQ(lw_rec_reader_error(r), LW_REC_E_CUT);
	ASSERT_EQ(lw_rec_reader_error_offset(r), st.st_size);
	printf("%s\n", lw_rec_reader_why(r));
	ASSERT(strstr(lw_rec_reader_why(r), "no end record") != NULL);
	lw_rec_reader_close(r);
	tmp_cleanup();
}

TEST(recording_hostile_records)
{
	struct buf b, p;
	char why[256] = "";
	lw_rec_item_t it;
	lw_rec_reader_t *r;

	/* A loop whose name holds a NUL. */
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_header(&b);
	size_t at = b.n;
	p.n = 0;
	b_le(&p, 1, 4);
	b_le(&p, 2, 4);
	b_le(&p, 0, 4);
	b_le(&p, 0, 4);
	b_le(&p, 3, 2);
	b_put(&p, "a\0b", 3);
	b_record(&b, LW_REC_LOOP, p.b, p.n);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	ASSERT_EQ(lw_rec_reader_error_offset(r), at);
	printf("%s\n", lw_rec_reader_why(r));
	ASSERT(strstr(lw_rec_reader_why(r), "NUL") != NULL);
	lw_rec_reader_close(r);

	/* A string longer than the record. */
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_header(&b);
	p.n = 0;
	b_le(&p, 0, 8);
	b_le(&p, 0, 8);
	b_le(&p, 60000, 2);
	b_put(&p, "abc", 3);
	b_record(&b, LW_REC_LOOP, p.b, p.n);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	printf("%s\n", lw_rec_reader_why(r));
	ASSERT(strstr(lw_rec_reader_why(r), "field name") != NULL);
	lw_rec_reader_close(r);

	/* A length far past the limit: refused before anything is read or
	 * allocated for it. */
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_header(&b);
	at = b.n;
	b_le(&b, LW_REC_KEVENT, 2);
	b_le(&b, 0, 2);
	b_le(&b, 0xfffffff0u, 4);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	ASSERT_EQ(lw_rec_reader_error_offset(r), at);
	printf("%s\n", lw_rec_reader_why(r));
	ASSERT(strstr(lw_rec_reader_why(r), "over the limit") != NULL);
	lw_rec_reader_close(r);

	/* A record before the header; an end that miscounts. */
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_end(&b, 0);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	ASSERT(strstr(lw_rec_reader_why(r), "not the header") != NULL);
	lw_rec_reader_close(r);
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_header(&b);
	b_end(&b, 5);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	printf("%s\n", lw_rec_reader_why(r));
	ASSERT(strstr(lw_rec_reader_why(r), "counts 5 records") != NULL);
	lw_rec_reader_close(r);

	/* Bytes after the end. */
	b_preamble(&b, LW_REC_MAJOR, LW_REC_MINOR);
	b_header(&b);
	b_end(&b, 1);
	b_le(&b, 0, 1);
	r = lw_rec_reader_open_mem(b.b, b.n, why, sizeof(why));
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(lw_rec_next(r, &it), -1);
	ASSERT(strstr(lw_rec_reader_why(r), "after the end") != NULL);
	lw_rec_reader_close(r);
}

TEST(recording_writer_limits)
{
	const char *path = tmp_path("limits.lwrec");
	char why[256] = "";
	static char longstr[10000];
	const char *frames[200];
	lw_rec_item_t it;

	memset(longstr, 'x', sizeof(longstr) - 1);
	for (int i = 0; i < 200; i++)
		frames[i] = longstr;
	lw_rec_header_t h = { .comm = longstr }; /* NULL strings too */
	lw_rec_writer_t *w =
		lw_rec_open(path, &h, LW_REC_FSYNC, why, sizeof(why));
	ASSERT(w != NULL);
	lw_rec_kevent_t k = { .kind = LW_BPF_EV_SAMPLE,
			      .syscall = longstr,
			      .nframes = 200,
			      .frames = frames };
	ASSERT_OK(lw_rec_write_kevent(w, &k));
	ASSERT_OK(lw_rec_close(w, &(lw_rec_end_t){ 0 }, why, sizeof(why)));

	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	ASSERT(r != NULL);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(strlen(it.u.header.comm), LW_REC_STR_MAX);
	ASSERT_STREQ(it.u.header.version, "");
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_KEVENT);
	ASSERT_EQ(it.u.kevent.nframes, LW_REC_FRAMES_MAX);
	ASSERT(it.u.kevent.flags & LW_REC_KEV_FRAMES_CUT);
	ASSERT_EQ(strlen(it.u.kevent.syscall), LW_REC_STR_MAX);
	for (unsigned i = 0; i < it.u.kevent.nframes; i++)
		ASSERT_EQ(strlen(it.u.kevent.frames[i]), LW_REC_STR_MAX);
	ASSERT_EQ(lw_rec_next(r, &it), 1);
	ASSERT_EQ(it.type, LW_REC_END);
	ASSERT_EQ(lw_rec_next(r, &it), 0);
	lw_rec_reader_close(r);
	tmp_cleanup();
}

TEST(recording_write_error)
{
	char why[256] = "";
	int fd = open("/dev/full", O_WRONLY);

	if (fd < 0)
		SKIP("no /dev/full");
	ASSERT(lw_rec_open_fd(fd, &sample_header, 0, why, sizeof(why)) == NULL);
	printf("%s\n", why);
	ASSERT(strstr(why, "No space left") != NULL);
	ASSERT(lw_rec_open("/nonexistent/dir/x.lwrec", &sample_header, 0, why,
			   sizeof(why)) == NULL);
	ASSERT(strstr(why, "/nonexistent/dir/x.lwrec") != NULL);
}

/* A long stream through a file: the reader's refills, and the rates of
 * writing and reading (printed, not asserted). */
TEST_T(recording_stream_rate, 120)
{
	const char *path = tmp_path("stream.lwrec");
	char why[256] = "";
	const uint64_t n = 2000000;
	lw_rec_item_t it;

	double t0 = lwt_now_ms();
	lw_rec_writer_t *w =
		lw_rec_open(path, &sample_header, 0, why, sizeof(why));
	ASSERT(w != NULL);
	for (uint64_t i = 0; i < n; i++) {
		lw_rec_callback_t c = { .loop_id = 1,
					.site_id = (uint32_t)(i % 100) + 1,
					.kind = 2,
					.start_ns = i * 1000,
					.duration_ns = i % 977 };
		ASSERT_OK(lw_rec_write_callback(w, &c));
		if (i % 100000 == 0)
			ASSERT_OK(lw_rec_write_kevent(w, &sample_kevent));
	}
	uint64_t bytes = lw_rec_writer_bytes(w);
	ASSERT_OK(lw_rec_close(w, &(lw_rec_end_t){ 0 }, why, sizeof(why)));
	double t1 = lwt_now_ms();

	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	ASSERT(r != NULL);
	uint64_t cb = 0, kev = 0, sum = 0;
	int ret;
	while ((ret = lw_rec_next(r, &it)) == 1) {
		if (it.type == LW_REC_CALLBACK) {
			if (it.u.callback.start_ns != cb * 1000)
				LWT_FAIL("callback %llu out of order",
					 (unsigned long long)cb);
			sum += it.u.callback.duration_ns;
			cb++;
		} else if (it.type == LW_REC_KEVENT) {
			ASSERT_STREQ(it.u.kevent.frames[3], sample_frames[3]);
			kev++;
		}
	}
	double t2 = lwt_now_ms();
	if (ret != 0)
		LWT_FAIL("read: %s", lw_rec_reader_why(r));
	ASSERT_EQ(cb, n);
	ASSERT_EQ(kev, n / 100000);
	ASSERT(sum > 0);
	lw_rec_reader_close(r);
	printf("%llu callbacks, %.1f MB (%.1f bytes each): write %.1f M/s "
	       "(%.0f MB/s), read %.1f M/s (%.0f MB/s)\n",
	       (unsigned long long)n, bytes / 1e6, (double)bytes / n,
	       n / (t1 - t0) / 1e3, bytes / (t1 - t0) / 1e3,
	       n / (t2 - t1) / 1e3, bytes / (t2 - t1) / 1e3);
	unlink(path);

	/* The writer's own cost, without the page cache: into /dev/null. */
	t0 = lwt_now_ms();
	w = lw_rec_open("/dev/null", &sample_header, 0, why, sizeof(why));
	ASSERT(w != NULL);
	for (uint64_t i = 0; i < n; i++) {
		lw_rec_callback_t c = { .loop_id = 1,
					.site_id = (uint32_t)(i % 100) + 1,
					.start_ns = i * 1000,
					.duration_ns = i % 977 };
		ASSERT_OK(lw_rec_write_callback(w, &c));
	}
	ASSERT_OK(lw_rec_close(w, &(lw_rec_end_t){ 0 }, why, sizeof(why)));
	t1 = lwt_now_ms();
	printf("encode only (to /dev/null): %.1f M callbacks/s\n",
	       n / (t1 - t0) / 1e3);
	tmp_cleanup();
}

/* The fuzz target's seeds: the sample, the sample without an end, a
 * newer-minor file, and cut and corrupt versions of the sample, each read
 * back as what it is.  They go to LW_REC_CORPUS_DIR when it names a folder
 * (that is how fuzz/corpus/recording was made), else to a scratch one. */
static void seed_write(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "w");

	ASSERT(f != NULL);
	ASSERT_EQ(fwrite(p, 1, n, f), n);
	ASSERT_EQ(fclose(f), 0);
}

static void seed_expect(const char *path, int ret, enum lw_rec_error e)
{
	char why[256] = "";
	lw_rec_item_t it;
	int got;
	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));

	if (r == NULL)
		LWT_FAIL("%s: %s", path, why);
	while ((got = lw_rec_next(r, &it)) == 1)
		;
	if (got != ret || lw_rec_reader_error(r) != e)
		LWT_FAIL("%s: %d (%s), want %d", path, got,
			 lw_rec_reader_why(r), ret);
	lw_rec_reader_close(r);
}

TEST(recording_seed_corpus)
{
	const char *dir = getenv("LW_REC_CORPUS_DIR");
	char path[512], scratch[256];
	size_t size;
	struct buf b;

	if (dir == NULL) {
		snprintf(scratch, sizeof(scratch), "%s", tmp_path("corpus"));
		ASSERT_EQ(mkdir(scratch, 0755), 0);
		dir = scratch;
	}
	snprintf(path, sizeof(path), "%s/seed_sample", dir);
	write_sample(path, 1);
	seed_expect(path, 0, LW_REC_OK);
	uint8_t *data = slurp(path, &size);
	snprintf(path, sizeof(path), "%s/seed_no_end", dir);
	write_sample(path, 0);
	seed_expect(path, -1, LW_REC_E_CUT);
	snprintf(path, sizeof(path), "%s/seed_cut", dir);
	seed_write(path, data, size / 2);
	seed_expect(path, -1, LW_REC_E_CUT);
	data[size / 3] ^= 0x10;
	snprintf(path, sizeof(path), "%s/seed_flipped", dir);
	seed_write(path, data, size);
	seed_expect(path, -1, LW_REC_E_CORRUPT);
	b_newer_minor(&b, LW_REC_MINOR + 1);
	snprintf(path, sizeof(path), "%s/seed_newer_minor", dir);
	seed_write(path, b.b, b.n);
	seed_expect(path, 0, LW_REC_OK);
	free(data);
	tmp_cleanup();
}

/* The CRC is the one of zlib: the check value of the standard, and the
 * same result in pieces of every size as in one call (the eight-byte path
 * and the byte path agree). */
TEST(recording_crc32)
{
	uint8_t data[1000];
	uint32_t whole, crc;

	ASSERT_EQ(lw_rec_crc32(0, "123456789", 9), 0xcbf43926u);
	ASSERT_EQ(lw_rec_crc32(0, "", 0), 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	whole = lw_rec_crc32(0, data, sizeof(data));
	for (size_t step = 1; step <= 17; step++) {
		crc = 0;
		for (size_t at = 0; at < sizeof(data); at += step)
			crc = lw_rec_crc32(crc, data + at,
					   at + step <= sizeof(data)
						   ? step
						   : sizeof(data) - at);
		ASSERT_EQ(crc, whole);
	}
}
