/* test_trace.c - `report --trace` (agent/trace.[ch]): recordings written
 * with the recording writer, converted to a Chrome / Perfetto JSON trace,
 * and checked with jq: the slices, their times, their nesting, hostile
 * strings, cut and corrupt recordings, and the conversion rate.
 *
 * LW_TRACE_RATE_N=1000000 build/tests/run_tests trace_rate sets the number
 * of callbacks of the rate measurement. */
#include "lwtest.h"
#include "loopwatch.h"
#include "recording.h"
#include "trace.h"
#include "../bpf/loopwatch_bpf.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MONO 1000000000ull /* the sample's start */

/* A fresh file name in the test's own temporary folder. */
static const char *tmp_path(const char *name)
{
	static char path[4][256];
	static char dir[128];
	static int next;

	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/lwt-trace-XXXXXX");
		if (mkdtemp(dir) == NULL)
			LWT_FAIL("mkdtemp: %s", strerror(errno));
	}
	next = (next + 1) % 4;
	snprintf(path[next], sizeof(path[next]), "%s/%s", dir, name);
	return path[next];
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

/* jq's full path from PATH, or NULL. */
static const char *find_jq(void)
{
	static char path[512];
	const char *p = getenv("PATH");

	if (p == NULL)
		p = "/usr/bin:/bin";
	while (*p) {
		size_t n = strcspn(p, ":");
		snprintf(path, sizeof(path), "%.*s/jq", (int)n, p);
		if (n > 0 && access(path, X_OK) == 0)
			return path;
		p += n;
		if (*p == ':')
			p++;
	}
	return NULL;
}

static const char *need_jq(void)
{
	const char *jq = find_jq();

	if (jq == NULL)
		SKIP("jq is not installed (apt-get install -y jq)");
	return jq;
}

/* Run jq -c FILTER FILE: its exit status, its output (last newline
 * removed) in out. */
static int jq(const char *filter, const char *file, char *out, size_t cap)
{
	char *argv[] = { (char *)need_jq(), "-c", (char *)filter, (char *)file,
			 NULL };
	int fd;
	pid_t pid = lwt_spawn(argv, &fd, 0, NULL);
	size_t n = lwt_read_all(fd, out, cap, 20000);

	close(fd);
	int st = lwt_wait_exit(pid, 20000);
	while (n > 0 && out[n - 1] == '\n')
		out[--n] = '\0';
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The output of a jq filter over file, which must succeed. */
static const char *jqs(const char *filter, const char *file)
{
	static char out[8 << 20];

	int st = jq(filter, file, out, sizeof(out));
	if (st != 0)
		LWT_FAIL("jq '%s' %s exited %d: %s", filter, file, st, out);
	return out;
}

#define ASSERT_JQ(filter, file, expect) ASSERT_STREQ(jqs(filter, file), expect)

static const lw_rec_header_t hdr = {
	.version = "0.1.0",
	.pid = 4242,
	.comm = "blocky_server",
	.hostname = "ci-runner-7",
	.mono_ns = MONO,
	.real_ns = 1764170000123456789ull,
	.min_ns = 1000000,
	.sources = LW_REC_SRC_RINGS | LW_REC_SRC_KPROBES,
	.rings_why = "",
	.kprobes_why = "",
};

static const char *const frames[] = {
	"fsync+0x0 (libc.so.6)",
	"on_checkpoint+0x2a (blocky_server.c:88)",
	"main+0x55 (blocky_server.c:140)",
};

static lw_rec_writer_t *open_rec(const char *path)
{
	char why[256] = "";
	lw_rec_writer_t *w = lw_rec_open(path, &hdr, 0, why, sizeof(why));

	if (w == NULL)
		LWT_FAIL("lw_rec_open: %s", why);
	return w;
}

static void close_rec(lw_rec_writer_t *w, int with_end)
{
	char why[256] = "";
	lw_rec_end_t end = { .end_ns = MONO + 50000000 };

	if (lw_rec_close(w, with_end ? &end : NULL, why, sizeof(why)) != 0)
		LWT_FAIL("lw_rec_close: %s", why);
}

static void kev(lw_rec_writer_t *w, uint32_t loop, int32_t tid, uint32_t kind,
		uint32_t flags, uint64_t start, uint64_t dur, const char *sys)
{
	lw_rec_kevent_t k = {
		.loop_id = loop,
		.kind = kind,
		.tid = tid,
		.flags = flags,
		.start_ns = MONO + start,
		.duration_ns = dur,
		.nr = kind == LW_BPF_EV_SYSCALL ? 74 : 0,
		.fd = kind == LW_BPF_EV_SYSCALL ? 7 : -1,
		.fd_kind = LW_BPF_FD_REG,
		.ret = kind == LW_BPF_EV_SYSCALL ? -5 : 0,
		.off_cpu_ns = dur / 2,
		.syscall = sys,
		.fd_path = kind == LW_BPF_EV_SYSCALL ? "/var/db/journal" : "",
		.nframes = 3,
		.frames = frames,
	};
	ASSERT_OK(lw_rec_write_kevent(w, &k));
}

static void cb(lw_rec_writer_t *w, uint32_t loop, uint32_t site, uint16_t kind,
	       uint64_t start, uint64_t dur, uint32_t lateness)
{
	lw_rec_callback_t c = {
		.loop_id = loop,
		.site_id = site,
		.kind = kind,
		.lateness_ns = lateness,
		.start_ns = MONO + start,
		.duration_ns = dur,
	};
	ASSERT_OK(lw_rec_write_callback(w, &c));
}

static void counters(lw_rec_writer_t *w, uint64_t now, uint64_t busy,
		     uint64_t idle, uint32_t queued)
{
	lw_rec_counters_t k = {
		.loop_id = 1,
		.now_ns = MONO + now,
		.busy_ns = busy,
		.idle_ns = idle,
		.pool_queued = queued,
	};
	ASSERT_OK(lw_rec_write_counters(w, &k));
}

/* The sample recording (times in ns after MONO):
 *   loop 1 "main" tid 4243 (first written with tid 0, as the recorder
 *   does), with a ring; loop 2 tid 4250, without;
 *   on_checkpoint (io)  1.000 ms + 3 ms, with fsync 1.0005 + 2 ms inside
 *                       it and an off-CPU wait 1.1 + 1.5 ms inside that,
 *                       and a sample at 1.2 ms;
 *   tick_fn (timer)     10 ms + 1 ms, 0.25 ms late, with a write at
 *                       10.5 ms + 0.6 ms that ends 0.1 ms after it;
 *   site#3, site#99     20 ms and 22 ms (a site without names, one never
 *                       written);
 *   a callback 1 us before the start, 5 us long (clamped to 0, 4 us);
 *   loop 2: an iteration 5 + 2 ms with a read 5.5 + 1 ms inside;
 *   counters at 0 and 20 ms: 3 ms busy, 1 ms idle (75 %).
 * The kernel events come before their callbacks, as the recorder writes
 * them. */
static void write_sample(const char *path, int with_end)
{
	lw_rec_writer_t *w = open_rec(path);
	lw_rec_loop_t l1 = {
		.id = 1, .tid = 4243, .ring_capacity = 65536, .name = "main"
	};
	lw_rec_loop_t l2 = { .id = 2, .tid = 4250, .name = "" };
	lw_rec_loop_t l1_early = { .id = 1, .tid = 0, .name = "main" };
	lw_rec_site_t s1 = { .loop_id = 1,
			     .site_id = 1,
			     .kind = LW_KIND_IO,
			     .name = "on_checkpoint",
			     .func = "on_checkpoint+0x0 (x.c:80)" };
	lw_rec_site_t s2 = { .loop_id = 1,
			     .site_id = 2,
			     .kind = LW_KIND_TIMER,
			     .name = "",
			     .func = "tick_fn+0x0 (x.c:20)" };
	lw_rec_site_t s3 = { .loop_id = 1, .site_id = 3, .name = "" };

	/* The recorder writes a loop before its thread is known, then
	 * again. */
	ASSERT_OK(lw_rec_write_loop(w, &l1_early));
	ASSERT_OK(lw_rec_write_loop(w, &l1));
	ASSERT_OK(lw_rec_write_loop(w, &l2));
	ASSERT_OK(lw_rec_write_site(w, &s1));
	ASSERT_OK(lw_rec_write_site(w, &s2));
	ASSERT_OK(lw_rec_write_site(w, &s3));
	counters(w, 0, 0, 0, 0);
	kev(w, 1, 4243, LW_BPF_EV_OFFCPU, LW_REC_KEV_IN_SYSCALL, 1100000,
	    1500000, "");
	kev(w, 1, 4243, LW_BPF_EV_SYSCALL, 0, 1000500, 2000000, "fsync");
	kev(w, 1, 4243, LW_BPF_EV_SAMPLE, 0, 1200000, 0, "");
	cb(w, 1, 1, LW_KIND_IO, 1000000, 3000000, 0);
	kev(w, 2, 4250, LW_BPF_EV_SYSCALL, 0, 5500000, 1000000, "read");
	kev(w, 2, 4250, LW_BPF_EV_SPAN, 0, 5000000, 2000000, "");
	kev(w, 1, 4243, LW_BPF_EV_SYSCALL, 0, 10500000, 600000, "write");
	cb(w, 1, 2, LW_KIND_TIMER, 10000000, 1000000, 250000);
	cb(w, 1, 3, LW_KIND_TICK, 20000000, 100000, 0);
	cb(w, 1, 99, LW_KIND_POST, 22000000, 100000, 0);
	lw_rec_callback_t early = { .loop_id = 1,
				    .site_id = 1,
				    .kind = LW_KIND_IO,
				    .start_ns = MONO - 1000,
				    .duration_ns = 5000 };
	ASSERT_OK(lw_rec_write_callback(w, &early));
	counters(w, 20000000, 3000000, 1000000, 4);
	close_rec(w, with_end);
}

/* Convert in to out; lw_trace_write's return, its why in why. */
static int convert(const char *in, const char *out, char *why, size_t whylen)
{
	char owhy[256] = "";
	lw_rec_reader_t *r = lw_rec_reader_open(in, owhy, sizeof(owhy));

	if (r == NULL)
		LWT_FAIL("lw_rec_reader_open %s: %s", in, owhy);
	FILE *f = fopen(out, "w");
	ASSERT(f != NULL);
	why[0] = '\0';
	int rc = lw_trace_write(r, f, why, whylen);
	ASSERT_EQ(fclose(f), 0);
	lw_rec_reader_close(r);
	return rc;
}

TEST(trace_slices)
{
	const char *in = tmp_path("s.lwrec"), *out = tmp_path("s.json");
	char why[256];

	need_jq();
	write_sample(in, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);
	ASSERT_STREQ(why, "");

	ASSERT_JQ(".displayTimeUnit", out, "\"ms\"");
	ASSERT_JQ(".metadata | [.complete, .callbacks, .kevents, .comm]", out,
		  "[true,5,6,\"blocky_server\"]");
	ASSERT_JQ("[.traceEvents[] | select(.name == \"process_name\") | "
		  ".args.name]",
		  out, "[\"blocky_server (pid 4242)\"]");
	ASSERT_JQ("[.traceEvents[] | select(.name == \"thread_name\") | "
		  "[.tid, .args.name]]",
		  out, "[[4243,\"main\"],[4250,\"loop tid 4250\"]]");
	ASSERT_JQ("[.traceEvents[] | select(.name == \"thread_sort_index\") "
		  "| .args.sort_index]",
		  out, "[1,2]");

	/* The callbacks, named after their sites. */
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"callback\") | "
		  "[.name, .ph, .ts, .dur, .pid, .tid, .args.kind, "
		  ".args.site]]",
		  out,
		  "[[\"on_checkpoint\",\"X\",1000,3000,4242,4243,\"io\",1],"
		  "[\"tick_fn+0x0 (x.c:20)\",\"X\",10000,1000,4242,4243,"
		  "\"timer\",2],"
		  "[\"site#3\",\"X\",20000,100,4242,4243,\"tick\",3],"
		  "[\"site#99\",\"X\",22000,100,4242,4243,\"post\",99],"
		  "[\"on_checkpoint\",\"X\",0,4,4242,4243,\"io\",1]]");
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"callback\") | "
		  ".args.lateness_ms]",
		  out, "[null,0.25,null,null,null]");

	/* The syscall with what the recording knew about it. */
	ASSERT_JQ("[.traceEvents[] | select(.name == \"fsync\") | "
		  "[.cat, .ts, .dur, .tid, .args.fd, .args.fd_path, .args.ret, "
		  ".args.off_cpu_ms, .args.stack[1]]]",
		  out,
		  "[[\"syscall\",1000.5,2000,4243,7,\"/var/db/journal\",-5,1,"
		  "\"on_checkpoint+0x2a (blocky_server.c:88)\"]]");
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"offcpu\") | "
		  "[.name, .ts, .dur, .args.in_syscall]]",
		  out, "[[\"off CPU\",1100,1500,true]]");
	ASSERT_JQ("[.traceEvents[] | select(.ph == \"i\") | "
		  "[.name, .s, .ts, .tid, (.args.stack | length)]]",
		  out, "[[\"sample\",\"t\",1200,4243,3]]");

	/* A loop without a ring: its iteration holds its syscall. */
	ASSERT_JQ("[.traceEvents[] | select(.tid == 4250 and .ph == \"X\") | "
		  "[.name, .cat, .ts, .dur]]",
		  out,
		  "[[\"iteration\",\"iteration\",5000,2000],"
		  "[\"read\",\"syscall\",5500,1000]]");

	/* Counters: 3 ms busy of 4 is 75 %. */
	ASSERT_JQ("[.traceEvents[] | select(.ph == \"C\") | "
		  "[.name, .ts, (.args | to_entries[0] | .key, .value)]]",
		  out,
		  "[[\"pool queued\",0,\"main (tid 4243)\",0],"
		  "[\"utilization\",20000,\"main (tid 4243)\",75],"
		  "[\"pool queued\",20000,\"main (tid 4243)\",4]]");
	tmp_cleanup();
}

/* The slices of every thread of a trace nest properly: sorted by start
 * (the longer first), each lies within the one still open before it. */
static void check_nesting(const char *out, int *nslices)
{
	const char *s =
		jqs("[.traceEvents[] | select(.ph == \"X\") | "
		    "[.tid, (.ts * 1000 | round), (.dur * 1000 | round)]] | "
		    "sort_by(.[0], .[1], -.[2]) | .[] | map(tostring) | "
		    "join(\" \")",
		    out);
	long long open_tid = -1, stack[64];
	int depth = 0, n = 0;

	for (const char *p = s; *p;) {
		long long tid, ts, dur;
		int len;
		if (sscanf(p, "\"%lld %lld %lld\"%n", &tid, &ts, &dur, &len) !=
		    3)
			LWT_FAIL("cannot parse jq's line: %.40s", p);
		p += len;
		while (*p == '\n')
			p++;
		ASSERT_GE(ts, 0);
		ASSERT_GE(dur, 0);
		if (tid != open_tid) {
			open_tid = tid;
			depth = 0;
		}
		while (depth > 0 && stack[depth - 1] <= ts)
			depth--;
		if (depth > 0 && ts + dur > stack[depth - 1])
			LWT_FAIL("tid %lld: the slice at %lld ns (%lld long) "
				 "ends after its parent's end %lld",
				 tid, ts, dur, stack[depth - 1]);
		ASSERT_LT(depth, 64);
		stack[depth++] = ts + dur;
		n++;
	}
	*nslices = n;
}

TEST(trace_nesting)
{
	const char *in = tmp_path("n.lwrec"), *out = tmp_path("n.json");
	char why[256];
	int n;

	need_jq();
	write_sample(in, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);
	check_nesting(out, &n);
	ASSERT_EQ(n, 10);
	/* The write ran 0.1 ms past its timer callback: clamped to its end,
	 * within the callback. */
	ASSERT_JQ("[.traceEvents[] | select(.name == \"write\") | "
		  "[.ts, .dur]]",
		  out, "[[10500,500]]");
	/* The fsync holds the off-CPU wait, the callback holds both. */
	ASSERT_JQ("[.traceEvents[] | select(.tid == 4243 and .ph == \"X\" and "
		  ".ts >= 1000 and .ts < 2000) | .name]",
		  out, "[\"on_checkpoint\",\"fsync\",\"off CPU\"]");
	ASSERT_JQ(".metadata.clamped", out, "1");

	/* Skewed clocks: syscalls that start before their callback, end
	 * after it, straddle two callbacks, overlap each other, or come after
	 * their callback, and callbacks that overlap, in any order between
	 * two loops. */
	lw_rec_writer_t *w = open_rec(in);
	lw_rec_loop_t l1 = { .id = 1, .tid = 100, .name = "a" };
	lw_rec_loop_t l2 = { .id = 2, .tid = 200, .name = "b" };
	ASSERT_OK(lw_rec_write_loop(w, &l1));
	ASSERT_OK(lw_rec_write_loop(w, &l2));
	for (int i = 0; i < 50; i++) {
		uint64_t base = 1000000ull * (uint64_t)i;
		uint32_t loop = 1 + (uint32_t)(i % 2);
		int32_t tid = loop == 1 ? 100 : 200;
		kev(w, loop, tid, LW_BPF_EV_SYSCALL, 0, base - 3 + 1000,
		    (uint64_t)(i * 37 % 900) * 1000, "a");
		kev(w, loop, tid, LW_BPF_EV_OFFCPU, 0, base + 500000 + 7,
		    (uint64_t)(i * 53 % 900) * 1000, "");
		kev(w, 3 - loop, tid == 100 ? 200 : 100, LW_BPF_EV_SYSCALL, 0,
		    base + 999990, 40, "straddle");
		cb(w, loop, 1, LW_KIND_IO, base + 1000,
		   i % 7 == 0 ? 2500000 : 998000, 0);
		/* Late: written after the callback it is in. */
		if (i % 5 == 0)
			kev(w, loop, tid, LW_BPF_EV_SYSCALL, 0, base + 1500,
			    2000000, "late");
	}
	close_rec(w, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);
	check_nesting(out, &n);
	ASSERT_EQ(n, 210);

	/* Very late: a syscall written two callbacks after the one it ran
	 * in, and past its end: clamped into it all the same. */
	w = open_rec(in);
	ASSERT_OK(lw_rec_write_loop(w, &l1));
	cb(w, 1, 1, LW_KIND_IO, 1000000, 1000000, 0);
	cb(w, 1, 1, LW_KIND_IO, 3000000, 1000000, 0);
	cb(w, 1, 1, LW_KIND_IO, 5000000, 1000000, 0);
	kev(w, 1, 100, LW_BPF_EV_SYSCALL, 0, 1500000, 700000, "late");
	close_rec(w, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);
	check_nesting(out, &n);
	ASSERT_EQ(n, 4);
	ASSERT_JQ("[.traceEvents[] | select(.name == \"late\") | "
		  "[.ts, .dur]]",
		  out, "[[1500,500]]");
	tmp_cleanup();
}

TEST(trace_hostile_strings)
{
	const char *in = tmp_path("h.lwrec"), *out = tmp_path("h.json");
	const char *evil = "a\"b\\c\x01\n\t\x7f \xff\xfe x\xe2\x82 \xc3\xa9 "
			   "\xed\xa0\x80 </script>";
	char why[256];
	lw_rec_header_t h = hdr;

	need_jq();
	h.comm = evil;
	h.hostname = evil;
	char werr[256] = "";
	lw_rec_writer_t *w = lw_rec_open(in, &h, 0, werr, sizeof(werr));
	ASSERT(w != NULL);
	lw_rec_loop_t l = { .id = 1, .tid = 7, .name = evil };
	ASSERT_OK(lw_rec_write_loop(w, &l));
	lw_rec_site_t s = { .loop_id = 1, .site_id = 1, .name = evil };
	ASSERT_OK(lw_rec_write_site(w, &s));
	const char *const evil_frames[] = { evil, "", evil };
	lw_rec_kevent_t k = { .loop_id = 1,
			      .kind = LW_BPF_EV_SYSCALL,
			      .tid = 7,
			      .start_ns = MONO + 10,
			      .duration_ns = 10,
			      .fd = 3,
			      .syscall = evil,
			      .fd_path = evil,
			      .nframes = 3,
			      .frames = evil_frames };
	ASSERT_OK(lw_rec_write_kevent(w, &k));
	cb(w, 1, 1, LW_KIND_IO, 0, 100, 0);
	lw_rec_counters_t c = { .loop_id = 1, .now_ns = MONO };
	ASSERT_OK(lw_rec_write_counters(w, &c));
	close_rec(w, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);

	/* jq parses it, and reads the strings back as the recording's reader
	 * cleaned them (text.h, since c2661b7): each control byte and each
	 * byte outside UTF-8 a '?', the quote and the backslash escaped. */
	const char *want = "\"a\\\"b\\\\c\?\?\?\? \?\? x\?\? \xc3\xa9 "
			   "\?\?\? </script>\"";
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"callback\")][0].name",
		  out, want);
	ASSERT_JQ("[.traceEvents[] | select(.name == \"thread_name\")][0]"
		  ".args.name",
		  out, want);
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"syscall\")][0] | "
		  ".name == .args.fd_path and .name == .args.stack[2]",
		  out, "true");
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"syscall\")][0].name", out,
		  want);
	ASSERT_JQ(".metadata.hostname", out, want);
	/* The process name is the comm with " (pid N)" after it. */
	ASSERT_JQ("[.traceEvents[] | select(.name == \"process_name\")][0]"
		  ".args.name | endswith(\" (pid 4242)\")",
		  out, "true");
	tmp_cleanup();
}

/* Callbacks in a recording, read straight with the reader, until its end
 * or error. */
static int count_callbacks(const char *path)
{
	char why[256];
	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	lw_rec_item_t it;
	int n = 0;

	ASSERT(r != NULL);
	while (lw_rec_next(r, &it) == 1)
		n += it.type == LW_REC_CALLBACK;
	lw_rec_reader_close(r);
	return n;
}

static void cut_copy(const char *from, const char *to, size_t len)
{
	int in = open(from, O_RDONLY), out;
	char *b = malloc(len + 1);

	ASSERT(in >= 0 && b != NULL);
	ASSERT_EQ(read(in, b, len), (ssize_t)len);
	close(in);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ASSERT(out >= 0);
	ASSERT_EQ(write(out, b, len), (ssize_t)len);
	close(out);
	free(b);
}

TEST(trace_cut)
{
	const char *in = tmp_path("c.lwrec"), *cut = tmp_path("cut.lwrec");
	const char *out = tmp_path("c.json");
	char why[256], buf[512];
	struct stat st;
	int tried = 0;

	need_jq();
	write_sample(in, 1);
	ASSERT_EQ(stat(in, &st), 0);

	/* Cut at a spread of offsets past the header (before it, the reader
	 * does not open): valid JSON of what came before, the reader's
	 * message, with its offset, in why and in the metadata. */
	for (size_t len = 100; len < (size_t)st.st_size; len += 47) {
		cut_copy(in, cut, len);
		ASSERT_EQ(convert(cut, out, why, sizeof(why)), -1);
		if (strstr(why, "offset") == NULL)
			LWT_FAIL("cut at %zu: no offset in \"%s\"", len, why);
		ASSERT_JQ(".metadata.complete", out, "false");
		snprintf(buf, sizeof(buf), "%d", count_callbacks(cut));
		ASSERT_JQ("[.traceEvents[] | select(.cat == \"callback\")] | "
			  "length",
			  out, buf);
		ASSERT(jq(".metadata.error", out, buf, sizeof(buf)) == 0);
		ASSERT_EQ(strncmp(buf + 1, why, strlen(why)), 0);
		tried++;
	}
	ASSERT_GE(tried, 5);

	/* Cut without an end record, at a record boundary. */
	write_sample(cut, 0);
	ASSERT_EQ(convert(cut, out, why, sizeof(why)), -1);
	ASSERT(strstr(why, "no end record") != NULL);
	ASSERT_JQ("[.traceEvents[] | select(.cat == \"callback\")] | length",
		  out, "5");

	/* A flipped byte in the middle: corrupt, with its offset. */
	size_t size = (size_t)st.st_size;
	cut_copy(in, cut, size);
	int fd = open(cut, O_RDWR);
	ASSERT(fd >= 0);
	unsigned char c;
	ASSERT_EQ(pread(fd, &c, 1, (off_t)size / 2), 1);
	c ^= 0x40;
	ASSERT_EQ(pwrite(fd, &c, 1, (off_t)size / 2), 1);
	close(fd);
	ASSERT_EQ(convert(cut, out, why, sizeof(why)), -1);
	ASSERT(strstr(why, "corrupt") != NULL);
	ASSERT(strstr(why, "offset") != NULL);
	ASSERT_JQ(".metadata.complete", out, "false");
	tmp_cleanup();
}

/* Every cut and every flipped byte of the sample, in memory: never a
 * crash (ASan watches), always an error with an offset.  No jq: this one
 * is for the sanitizers. */
TEST(trace_cut_every_offset)
{
	const char *in = tmp_path("e.lwrec");
	struct stat st;
	char why[256];

	write_sample(in, 1);
	ASSERT_EQ(stat(in, &st), 0);
	size_t size = (size_t)st.st_size;
	unsigned char *b = malloc(size), *m = malloc(size);
	int fd = open(in, O_RDONLY);
	ASSERT(fd >= 0 && b && m);
	ASSERT_EQ(read(fd, b, size), (ssize_t)size);
	close(fd);

	for (size_t i = 0; i < 2 * size; i++) {
		size_t len = i < size ? i : size;
		memcpy(m, b, size);
		if (i >= size)
			m[i - size] ^= 0x21;
		lw_rec_reader_t *r =
			lw_rec_reader_open_mem(m, len, why, sizeof(why));
		if (r == NULL)
			continue;
		FILE *f = fopen("/dev/null", "w");
		ASSERT(f != NULL);
		int rc = lw_trace_write(r, f, why, sizeof(why));
		fclose(f);
		lw_rec_reader_close(r);
		if (i < size)
			ASSERT_EQ(rc, -1);
		if (rc != 0 && strstr(why, "offset") == NULL)
			LWT_FAIL("at %zu: no offset in \"%s\"", i, why);
	}
	free(b);
	free(m);
	tmp_cleanup();
}

/* A thread whose containers never come (kernel probes only, no spans):
 * its events wait in bounded memory and all come out, nested. */
TEST(trace_no_containers)
{
	const char *in = tmp_path("k.lwrec"), *out = tmp_path("k.json");
	char why[256];
	int n;

	need_jq();
	lw_rec_writer_t *w = open_rec(in);
	for (int i = 0; i < 70000; i++)
		kev(w, 0, 300, i % 2 ? LW_BPF_EV_OFFCPU : LW_BPF_EV_SYSCALL, 0,
		    1000ull * (uint64_t)(i / 2) + (uint64_t)(i % 2), 900,
		    "poll");
	close_rec(w, 1);
	ASSERT_EQ(convert(in, out, why, sizeof(why)), 0);
	ASSERT_JQ("[.traceEvents[] | select(.tid == 300)] | length", out,
		  "70000");
	check_nesting(out, &n);
	ASSERT_EQ(n, 70000);
	tmp_cleanup();
}

/* How fast a large recording converts: callbacks with a syscall inside
 * every tenth, to /dev/null. */
TEST_T(trace_rate, 300)
{
	const char *in = tmp_path("r.lwrec");
	const char *env = getenv("LW_TRACE_RATE_N");
	long n = env ? atol(env) : 200000;
	char why[256];

	if (n <= 0)
		n = 200000;
	lw_rec_writer_t *w = open_rec(in);
	lw_rec_loop_t l = { .id = 1, .tid = 10, .name = "main" };
	ASSERT_OK(lw_rec_write_loop(w, &l));
	for (uint32_t s = 1; s <= 16; s++) {
		char name[32];
		snprintf(name, sizeof(name), "handler_%u", s);
		lw_rec_site_t st = { .loop_id = 1, .site_id = s, .name = name };
		ASSERT_OK(lw_rec_write_site(w, &st));
	}
	for (long i = 0; i < n; i++) {
		uint64_t t = 10000ull * (uint64_t)i;
		if (i % 10 == 0)
			kev(w, 1, 10, LW_BPF_EV_SYSCALL, 0, t + 100, 2000,
			    "fsync");
		cb(w, 1, 1 + (uint32_t)(i % 16), LW_KIND_IO, t, 5000, 0);
	}
	close_rec(w, 1);

	lw_rec_reader_t *r = lw_rec_reader_open(in, why, sizeof(why));
	ASSERT(r != NULL);
	FILE *f = fopen("/dev/null", "w");
	ASSERT(f != NULL);
	uint64_t t0 = lwt_now_ns();
	ASSERT_EQ(lw_trace_write(r, f, why, sizeof(why)), 0);
	uint64_t dt = lwt_now_ns() - t0;
	fclose(f);
	lw_rec_reader_close(r);
	fprintf(stderr,
		"trace_rate: %ld callbacks (+%ld syscalls) in %.3f s: %.0f "
		"callbacks/s\n",
		n, (n + 9) / 10, (double)dt / 1e9,
		(double)n * 1e9 / (double)dt);
	tmp_cleanup();
}
