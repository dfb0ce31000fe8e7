/*
 * test_ring.c - the ring, end to end: a real program on the reactor
 * (tests/progs/ring_target) writes its callbacks into its ring, and these
 * tests read them from another process through the agent's reader
 * (agent/ring_reader.h), then hold what they read against what the program
 * really did: how long its callbacks slept, how late its timers ran, what
 * is running now, how many records a slow reader lost, what a fork or a
 * reused pid does to the rings a reader finds.
 *
 * Each test starts the target with fork/exec, waits for its `ready PID`
 * line, attaches with lw_rr_attach() and, when done, kills and reaps it.
 * A failed assert ends the test's process at once; the target then dies too,
 * as it is started with PR_SET_PDEATHSIG (and the runner kills the test's
 * process group after every test in any case).
 *
 * Timing: deadlines to poll against, never fixed sleeps where the state can
 * be watched; lower bounds and ratios, never tight upper bounds.
 */
#include "lwtest.h"
#include "loopwatch.h"
#include "ring_reader.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define MS 1000000ull /* ns */

/* ---- small helpers ---- */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A growing array of records. */
struct recs {
	struct lw_ring_record *v;
	size_t n, cap;
};

static void recs_push(struct recs *rs, const struct lw_ring_record *r)
{
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? 2 * rs->cap : 1024;
		rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
		ASSERT(rs->v != NULL);
	}
	rs->v[rs->n++] = *r;
}

static void recs_free(struct recs *rs)
{
	free(rs->v);
	rs->v = NULL;
	rs->n = rs->cap = 0;
}

/* Read what the ring has now into `rs`; returns the records read. */
static size_t drain(const lw_rr_ring_t *r, lw_rr_cursor_t *c, struct recs *rs)
{
	struct lw_ring_record buf[256];
	size_t total = 0, n;
	while ((n = lw_rr_read(r, c, buf, 256)) > 0) {
		for (size_t i = 0; i < n; i++)
			recs_push(rs, &buf[i]);
		total += n;
	}
	return total;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median_u64(uint64_t *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* Field `n` (1-based, as in proc(5)) of /proc/PID/stat, or 0. */
static uint64_t proc_stat_field(pid_t pid, int n)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	buf[len] = 0;
	/* The command name may hold spaces and parentheses: count fields
	 * from the last ')', which ends field 2. */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	p++;
	for (int field = 3; *p; field++) {
		while (*p == ' ')
			p++;
		if (field == n)
			return strtoull(p, NULL, 10);
		while (*p && *p != ' ')
			p++;
	}
	return 0;
}

/* How many of the process's fds are loopwatch memfds. */
static int count_ring_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	ASSERT(d != NULL);
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char link[512], target[256];
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strncmp(target, "/memfd:" LW_RING_MEMFD_NAME " ",
			    strlen("/memfd:" LW_RING_MEMFD_NAME " ")) == 0)
			found++;
	}
	closedir(d);
	return found;
}

/* ---- the target process ---- */

#define MAX_FNS 8

struct target {
	pid_t pid; /* the process we started */
	int out; /* its stdout */
	uint64_t spawned_ns; /* when we started it */
	/* `fn NAME ADDR` lines it printed before `ready`. */
	int nfns;
	char fn_name[MAX_FNS][32];
	uint64_t fn_addr[MAX_FNS];
};

/*
 * Start ring_target with `args` (NULL-terminated, without argv[0]) and the
 * environment changes in `env` ("NAME=VALUE" strings, NULL-terminated; may
 * be NULL); its stdout comes to t->out.
 */
static void target_start(struct target *t, const char *const *args,
			 const char *const *env)
{
	char *argv[8];
	int argc = 0;
	argv[argc++] = strdup(lwt_build_path("tests/progs/ring_target"));
	for (; args[0] != NULL && argc < 7; args++)
		argv[argc++] = (char *)args[0];
	argv[argc] = NULL;

	memset(t, 0, sizeof(*t));
	int p[2];
	ASSERT_OK(pipe2(p, O_CLOEXEC));
	t->spawned_ns = lwt_now_ns();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		/* Die with the test, whatever way it ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		for (; env != NULL && env[0] != NULL; env++)
			putenv((char *)env[0]);
		lwt_exec(argv);
	}
	free(argv[0]);
	close(p[1]);
	t->pid = pid;
	t->out = p[0];
}

/* Wait for `ready PID`, keeping the `fn` lines before it; returns PID. */
static pid_t target_ready(struct target *t)
{
	char line[256];
	for (;;) {
		if (lwt_read_line(t->out, line, sizeof(line), 10000) < 0)
			LWT_FAIL("ring_target %d printed no `ready` line",
				 (int)t->pid);
		int pid;
		char name[32];
		unsigned long addr;
		if (sscanf(line, "ready %d", &pid) == 1)
			return pid;
		if (sscanf(line, "fn %31s %lx", name, &addr) == 2 &&
		    t->nfns < MAX_FNS) {
			snprintf(t->fn_name[t->nfns], sizeof(t->fn_name[0]),
				 "%s", name);
			t->fn_addr[t->nfns++] = addr;
		}
	}
}

static uint64_t target_fn(const struct target *t, const char *name)
{
	for (int i = 0; i < t->nfns; i++)
		if (strcmp(t->fn_name[i], name) == 0)
			return t->fn_addr[i];
	LWT_FAIL("ring_target printed no `fn %s` line", name);
}

static void target_stop(struct target *t)
{
	if (t->pid > 0) {
		kill(t->pid, SIGKILL);
		waitpid(t->pid, NULL, 0);
		t->pid = 0;
	}
	if (t->out >= 0)
		close(t->out);
	t->out = -1;
}

/* Start the target and wait until its loop runs. */
static void target_run(struct target *t, const char *const *args,
		       const char *const *env)
{
	target_start(t, args, env);
	ASSERT_EQ(target_ready(t), t->pid);
}

/* ---- rings ---- */

static lw_rr_proc_t *attach(pid_t pid)
{
	lw_rr_proc_t *p = NULL;
	char why[256] = "";
	int rc = lw_rr_attach(pid, &p, why, sizeof(why));
	if (rc != 0)
		LWT_FAIL("lw_rr_attach(%d) = %d: %s", (int)pid, rc, why);
	ASSERT(p != NULL);
	ASSERT_EQ(p->pid, pid);
	return p;
}

/* Attach to a process that has exactly one ring; return it. */
static lw_rr_ring_t *attach_one(pid_t pid, lw_rr_proc_t **out)
{
	lw_rr_proc_t *p = attach(pid);
	if (p->nrings != 1)
		LWT_FAIL("%d: %zu rings, %zu skipped (%s)", (int)pid, p->nrings,
			 p->nskipped, p->skipped_why);
	*out = p;
	return p->rings[0];
}

/* The id of the site named `name`, or 0. */
static uint32_t site_by_name(const lw_rr_ring_t *r, const char *name,
			     lw_rr_site_t *out)
{
	uint32_t n = lw_rr_nsites(r);
	for (uint32_t id = 1; id <= n; id++) {
		lw_rr_site_t s;
		if (lw_rr_site(r, id, &s) != 0)
			continue;
		if (strcmp(s.name, name) == 0) {
			if (out)
				*out = s;
			return id;
		}
	}
	return 0;
}

/* Wait up to `timeout_ms` for a site named `name` to be published. */
static uint32_t wait_site(const lw_rr_ring_t *r, const char *name,
			  lw_rr_site_t *out, int timeout_ms)
{
	double deadline = lwt_now_ms() + timeout_ms;
	for (;;) {
		uint32_t id = site_by_name(r, name, out);
		if (id != 0)
			return id;
		if (lwt_now_ms() > deadline)
			LWT_FAIL("no site named \"%s\" after %d ms (%u sites)",
				 name, timeout_ms, lw_rr_nsites(r));
		sleep_ms(5);
	}
}

static uint64_t ring_head(const lw_rr_ring_t *r)
{
	lw_rr_counters_t c;
	lw_rr_counters(r, &c);
	return c.head;
}

/* Wait for the ring's head to move past `from`; fails after the timeout. */
static uint64_t wait_head_past(const lw_rr_ring_t *r, uint64_t from,
			       int timeout_ms)
{
	double deadline = lwt_now_ms() + timeout_ms;
	uint64_t h;
	while ((h = ring_head(r)) <= from) {
		if (lwt_now_ms() > deadline)
			LWT_FAIL("ring head stayed at %" PRIu64 " for %d ms", h,
				 timeout_ms);
		sleep_ms(2);
	}
	return h;
}

/* Count the records of `site` in rs. */
static size_t count_site(const struct recs *rs, uint32_t site)
{
	size_t n = 0;
	for (size_t i = 0; i < rs->n; i++)
		n += rs->v[i].site == site;
	return n;
}

/* ------------------------------------------------------------------------ */

/*
 * The sleep50 callback sleeps 50 ms, the fast one does nothing: the records
 * say so, with the right kind, on CLOCK_MONOTONIC (between the moment we
 * started the program and now), in order, without overlap, and the header's
 * counters agree with them.
 */
TEST(ring_records_match_reality)
{
	struct target t;
	target_run(&t, (const char *const[]){ "sleep50", NULL }, NULL);
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	ASSERT_STREQ(lw_rr_name(r), "sleep50");
	ASSERT_EQ(lw_rr_pid(r), t.pid);
	/* The loop runs on the program's main thread. */
	ASSERT_EQ(lw_rr_tid(r), t.pid);

	lw_rr_site_t s50, sfast;
	uint32_t id50 = wait_site(r, "sleep50", &s50, 5000);
	uint32_t idfast = wait_site(r, "fast", &sfast, 5000);
	ASSERT_EQ(s50.kind, LW_KIND_TIMER);
	ASSERT_EQ(sfast.kind, LW_KIND_TIMER);
	ASSERT(s50.fn != 0 && sfast.fn != 0 && s50.fn != sfast.fn);

	/* Everything since the start: the default ring holds it all. */
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	struct recs rs = { 0 };
	double deadline = lwt_now_ms() + 15000;
	while (count_site(&rs, id50) < 6 || count_site(&rs, idfast) < 60) {
		if (lwt_now_ms() > deadline)
			LWT_FAIL("only %zu sleep50 and %zu fast records",
				 count_site(&rs, id50),
				 count_site(&rs, idfast));
		sleep_ms(20);
		drain(r, &c, &rs);
	}
	uint64_t now = lwt_now_ns();
	lw_rr_counters_t k;
	lw_rr_counters(r, &k);
	ASSERT_EQ(c.lost, 0);

	const uint64_t slack = 2 * MS; /* clock conversion, nothing more */
	uint64_t sum = 0, prev50 = 0;
	size_t n50 = 0, nfast = 0, fast_short = 0;
	uint64_t *fast_d = calloc(rs.n, sizeof(*fast_d));
	ASSERT(fast_d != NULL);
	for (size_t i = 0; i < rs.n; i++) {
		const struct lw_ring_record *x = &rs.v[i];
		/* CLOCK_MONOTONIC, after the program started, not ahead. */
		ASSERT_GE(x->start_ns + slack, t.spawned_ns);
		ASSERT_LE(x->start_ns + x->duration_ns, now + slack);
		if (i > 0) {
			const struct lw_ring_record *w = &rs.v[i - 1];
			/* One loop thread: one callback after another. */
			ASSERT_EQ(x->seq, w->seq + 1);
			ASSERT_GE(x->start_ns + 1000,
				  w->start_ns + w->duration_ns);
		}
		lw_rr_site_t s;
		ASSERT_OK(lw_rr_site(r, x->site, &s));
		ASSERT_EQ(x->kind, s.kind);
		sum += x->duration_ns;
		if (x->site == id50) {
			ASSERT_EQ(x->kind, LW_KIND_TIMER);
			/* A 50 ms sleep: at least that (the upper bound is
			 * only "not garbage": a loaded machine may hold the
			 * thread off CPU for long). */
			ASSERT_GE(x->duration_ns, 48 * MS);
			ASSERT_LE(x->duration_ns, 10000 * MS);
			/* One at a time: the next starts after this one's
			 * 50 ms (a late tick may bring the next one closer
			 * than the 150 ms period). */
			if (prev50 != 0)
				ASSERT_GE(x->start_ns - prev50, 48 * MS);
			prev50 = x->start_ns;
			n50++;
		} else if (x->site == idfast) {
			ASSERT_EQ(x->kind, LW_KIND_TIMER);
			fast_d[nfast++] = x->duration_ns;
			fast_short += x->duration_ns < 10 * MS;
		}
	}
	ASSERT_GE(n50, 6);
	/* An empty callback: short, apart from the odd preemption. */
	ASSERT_GE(fast_short * 10, nfast * 9);
	ASSERT_LT(median_u64(fast_d, nfast), 2 * MS);

	/* The counters tell the same story: the callbacks are busy time, the
	 * loop has waited, and busy + idle fits in the program's life. */
	ASSERT_GE(k.head, c.pos);
	ASSERT_GT(k.iterations, 0);
	ASSERT_GE(k.busy_ns * 100, sum * 95);
	ASSERT_GT(k.idle_ns, 0);
	ASSERT_LE(k.busy_ns + k.idle_ns, now - t.spawned_ns + slack);

	free(fast_d);
	recs_free(&rs);
	lw_rr_detach(p);
	target_stop(&t);
}

/*
 * The victim timer (every 20 ms) runs late while the blocker (80 ms of CPU
 * every 200 ms) holds the loop: some victim records say "late by 20 ms or
 * more", and their due time (start - lateness) falls inside a blocker
 * record; most say "on time".
 */
TEST(ring_timer_lateness)
{
	struct target t;
	target_run(&t, (const char *const[]){ "late", NULL }, NULL);
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	uint32_t idv = wait_site(r, "victim", NULL, 5000);
	uint32_t idb = wait_site(r, "blocker", NULL, 5000);
	uint32_t idready = wait_site(r, "ready", NULL, 5000);

	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	struct recs rs = { 0 };
	double deadline = lwt_now_ms() + 20000;
	while (count_site(&rs, idb) < 6 || count_site(&rs, idv) < 40) {
		if (lwt_now_ms() > deadline)
			LWT_FAIL("only %zu blocker and %zu victim records",
				 count_site(&rs, idb), count_site(&rs, idv));
		sleep_ms(20);
		drain(r, &c, &rs);
	}
	ASSERT_EQ(c.lost, 0);

	size_t nv = 0, on_time = 0, late = 0, explained = 0;
	for (size_t i = 0; i < rs.n; i++) {
		const struct lw_ring_record *x = &rs.v[i];
		if (x->site == idready) {
			/* Lateness is for timers only. */
			ASSERT_EQ(x->kind, LW_KIND_TICK);
			ASSERT_EQ(x->lateness_ns, 0);
		}
		if (x->site == idb) {
			ASSERT_GE(x->duration_ns, 78 * MS);
			continue;
		}
		if (x->site != idv)
			continue;
		ASSERT_EQ(x->kind, LW_KIND_TIMER);
		ASSERT_EQ(x->flags & LW_REC_LATENESS_SATURATED, 0);
		nv++;
		if (x->lateness_ns < 10 * MS)
			on_time++;
		if (x->lateness_ns < 20 * MS)
			continue;
		late++;
		/* Late because a blocker was running when it fell due, and
		 * it started once the blocker was done. */
		uint64_t due = x->start_ns - x->lateness_ns;
		for (size_t j = 0; j < rs.n; j++) {
			const struct lw_ring_record *b = &rs.v[j];
			if (b->site == idb && due + MS >= b->start_ns &&
			    due <= b->start_ns + b->duration_ns &&
			    x->start_ns + 1000 >=
				    b->start_ns + b->duration_ns) {
				explained++;
				break;
			}
		}
	}
	ASSERT_GE(late, 2);
	ASSERT_GE(explained, 2);
	ASSERT_GT(on_time * 2, nv);

	recs_free(&rs);
	lw_rr_detach(p);
	target_stop(&t);
}

/*
 * A callback stuck in sleep(3) shows in the current-callback slot while it
 * runs, with its site and a start in the past that stays put; once it
 * returns the slot is empty and the record has the same start.
 */
TEST(ring_current_callback_slot)
{
	struct target t;
	target_run(&t, (const char *const[]){ "stuck", "3", NULL }, NULL);
	uint64_t ready_ns = lwt_now_ns();
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);

	/* The timer fires 100 ms after the loop starts.  (The first callback
	 * seen running may be the one that printed `ready`.) */
	lw_rr_current_t cur;
	lw_rr_site_t s;
	for (;;) {
		int rc = lw_rr_current(r, &cur);
		if (rc == 0 && cur.running &&
		    lw_rr_site(r, cur.site, &s) == 0 &&
		    strcmp(s.name, "stuck") == 0)
			break;
		if (lwt_now_ns() - ready_ns > 2000 * MS)
			LWT_FAIL("stuck is not in the current slot after 2 s "
				 "(running %d, site %u)",
				 cur.running, cur.site);
		sleep_ms(2);
	}
	uint64_t now = lwt_now_ns();
	ASSERT_EQ(s.kind, LW_KIND_TIMER);
	ASSERT_EQ(cur.kind, LW_KIND_TIMER);
	ASSERT_LE(cur.start_ns, now);
	ASSERT_GE(cur.start_ns + 2 * MS, t.spawned_ns);

	/* Still the same call half a second on: a reader can tell how long
	 * it has been stuck. */
	sleep_ms(500);
	lw_rr_current_t later;
	ASSERT_OK(lw_rr_current(r, &later));
	ASSERT_EQ(later.running, 1);
	ASSERT_EQ(later.site, cur.site);
	ASSERT_EQ(later.start_ns, cur.start_ns);
	uint64_t seen_running = lwt_now_ns();
	ASSERT_GE(seen_running - later.start_ns, 500 * MS);

	/* It ends after 3 s; then nothing runs (the loop only waits). */
	double deadline = lwt_now_ms() + 15000;
	for (;;) {
		if (lw_rr_current(r, &later) == 0 && !later.running)
			break;
		if (lwt_now_ms() > deadline)
			LWT_FAIL("the stuck callback never left the slot");
		sleep_ms(10);
	}
	ASSERT_EQ(later.site, 0);

	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	struct recs rs = { 0 };
	drain(r, &c, &rs);
	size_t found = 0;
	for (size_t i = 0; i < rs.n; i++) {
		if (rs.v[i].site != cur.site)
			continue;
		found++;
		ASSERT_EQ(rs.v[i].start_ns, cur.start_ns);
		/* It slept 3 s, and it was still running when we last saw
		 * it in the slot. */
		ASSERT_GE(rs.v[i].duration_ns, 2990 * MS);
		ASSERT_GE(rs.v[i].start_ns + rs.v[i].duration_ns, seen_running);
		ASSERT_LE(rs.v[i].duration_ns, 30000 * MS);
	}
	ASSERT_EQ(found, 1);

	recs_free(&rs);
	lw_rr_detach(p);
	target_stop(&t);
}

/* A reader that checks the sequence numbers of what it reads against the
 * losses the cursor counts. */
struct taker {
	const lw_rr_ring_t *r;
	lw_rr_cursor_t *c;
	uint64_t nread; /* records read */
	uint64_t gaps; /* records missing between the sequence numbers */
	uint32_t expect; /* the next sequence number */
};

static void take(struct taker *tk)
{
	struct lw_ring_record buf[256];
	size_t n = lw_rr_read(tk->r, tk->c, buf, 256);
	for (size_t i = 0; i < n; i++) {
		tk->gaps += (uint32_t)(buf[i].seq - tk->expect);
		tk->expect = buf[i].seq + 1;
	}
	tk->nread += n;
	if (n == 0)
		sched_yield();
}

/*
 * A reader that pauses while a storm of callbacks overruns a small ring
 * loses records, and knows exactly how many: with the writer frozen
 * (SIGSTOP), records read + records lost == head advance, and the sequence
 * numbers of what it read show the same gaps.
 */
TEST_T(ring_loss_counted_exactly, 60)
{
	struct target t;
	target_run(&t, (const char *const[]){ "storm", NULL },
		   (const char *const[]){ "LOOPWATCH_RING_SIZE=1024", NULL });
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	ASSERT_EQ(lw_rr_capacity(r), 1024);

	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 0);
	uint64_t head_start = c.pos;
	ASSERT_EQ(c.lost, 0);

	struct taker tk = { r, &c, 0, 0, (uint32_t)head_start };
	/* Keep up for a while, then fall behind for 300 ms. */
	double until = lwt_now_ms() + 100;
	while (lwt_now_ms() < until)
		take(&tk);
	uint64_t lost0 = c.lost;
	sleep_ms(300);
	/* The first read after the pause skips what was overwritten and
	 * starts within the last ring's worth. */
	uint64_t h = ring_head(r);
	for (int i = 0; i < 1000 && c.lost == lost0; i++)
		take(&tk);
	ASSERT_GT(c.lost, lost0);
	ASSERT_GT((int32_t)(tk.expect - (uint32_t)(h - 1024)), 0);
	until = lwt_now_ms() + 50;
	while (lwt_now_ms() < until)
		take(&tk);

	/* Freeze the writer, so the head stands still, and drain. */
	ASSERT_EQ(kill(t.pid, SIGSTOP), 0);
	int status;
	ASSERT_EQ(waitpid(t.pid, &status, WUNTRACED), t.pid);
	ASSERT(WIFSTOPPED(status));
	uint64_t head_end = ring_head(r);
	for (int i = 0; i < 1000 && c.pos < head_end; i++)
		take(&tk);
	ASSERT_EQ(c.pos, head_end);
	ASSERT_GT(c.lost, 0);
	ASSERT_EQ(tk.nread + c.lost, head_end - head_start);
	ASSERT_EQ(tk.gaps, c.lost);
	/* The last record read is the last one written. */
	ASSERT_EQ(tk.expect, (uint32_t)head_end);

	ASSERT_EQ(kill(t.pid, SIGCONT), 0);
	lw_rr_detach(p);
	target_stop(&t);
}

#define TWO_N 60

/* In a forked process: attach on our own, read TWO_N records from `pos`,
 * write them to fd. */
static void reader_child(pid_t target, uint64_t pos, int fd)
{
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(target, &p);
	lw_rr_cursor_t c = { pos, 0 };
	struct lw_ring_record out[TWO_N];
	size_t n = 0;
	double deadline = lwt_now_ms() + 10000;
	while (n < TWO_N) {
		if (lwt_now_ms() > deadline)
			_exit(3);
		size_t k = lw_rr_read(r, &c, out + n, TWO_N - n);
		if (k == 0)
			sleep_ms(2);
		n += k;
	}
	if (c.lost != 0)
		_exit(4);
	if (write(fd, out, sizeof(out)) != (ssize_t)sizeof(out))
		_exit(5);
	_exit(0);
}

static void read_n(const lw_rr_ring_t *r, lw_rr_cursor_t *c,
		   struct lw_ring_record *out, size_t want)
{
	size_t n = 0;
	double deadline = lwt_now_ms() + 10000;
	while (n < want) {
		if (lwt_now_ms() > deadline)
			LWT_FAIL("read %zu of %zu records in 10 s", n, want);
		size_t k = lw_rr_read(r, c, out + n, want - n);
		if (k == 0)
			sleep_ms(2);
		n += k;
	}
	ASSERT_EQ(c->lost, 0);
}

/*
 * Readers do not disturb one another: two cursors on one mapping, a second
 * attach in the same process, and a reader in another process all see the
 * same records from the same position.
 */
TEST(ring_two_readers)
{
	struct target t;
	target_run(&t, (const char *const[]){ "sleep50", NULL }, NULL);
	lw_rr_proc_t *p1, *p2;
	lw_rr_ring_t *r1 = attach_one(t.pid, &p1);
	lw_rr_ring_t *r2 = attach_one(t.pid, &p2);

	lw_rr_cursor_t a;
	lw_rr_cursor_init(r1, &a, 0);
	lw_rr_cursor_t b = a, c2 = a;

	int fds[2];
	ASSERT_OK(pipe2(fds, O_CLOEXEC));
	fflush(stdout);
	fflush(stderr);
	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0) {
		close(fds[0]);
		reader_child(t.pid, a.pos, fds[1]);
	}
	close(fds[1]);

	static struct lw_ring_record ra[TWO_N], rb[TWO_N], rc[TWO_N], rd[TWO_N];
	read_n(r1, &a, ra, TWO_N);
	read_n(r1, &b, rb, TWO_N);
	read_n(r2, &c2, rc, TWO_N);

	int status;
	ASSERT_EQ(waitpid(child, &status, 0), child);
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	size_t got = 0;
	while (got < sizeof(rd)) {
		ssize_t n = read(fds[0], (char *)rd + got, sizeof(rd) - got);
		ASSERT_GT(n, 0);
		got += (size_t)n;
	}
	close(fds[0]);

	for (size_t i = 0; i < TWO_N; i++) {
		ASSERT_EQ(ra[i].seq, (uint32_t)(a.pos - TWO_N + i));
		ASSERT(ra[i].duration_ns > 0 || ra[i].start_ns > 0);
		const struct lw_ring_record *others[] = { &rb[i], &rc[i],
							  &rd[i] };
		for (size_t k = 0; k < 3; k++) {
			ASSERT_EQ(others[k]->seq, ra[i].seq);
			ASSERT_EQ(others[k]->start_ns, ra[i].start_ns);
			ASSERT_EQ(others[k]->duration_ns, ra[i].duration_ns);
			ASSERT_EQ(others[k]->site, ra[i].site);
			ASSERT_EQ(others[k]->kind, ra[i].kind);
			ASSERT_EQ(others[k]->lateness_ns, ra[i].lateness_ns);
		}
	}

	lw_rr_detach(p1);
	lw_rr_detach(p2);
	target_stop(&t);
}

/*
 * A process that forks from a callback: the child's own loop has its own
 * ring, and the parent's ring, inherited by the child as an fd, is not
 * taken for the child's.  The parent's ring goes on, written by the parent
 * alone.
 */
TEST(ring_fork_child_gets_own_ring)
{
	struct target t;
	target_run(&t, (const char *const[]){ "fork", NULL }, NULL);
	char line[256];
	int cpid = 0;
	ASSERT_GE(lwt_read_line(t.out, line, sizeof(line), 10000), 0);
	ASSERT_EQ(sscanf(line, "ready %d", &cpid), 1);
	ASSERT_NE(cpid, t.pid);
	/* Its parent is our target. */
	ASSERT_EQ(proc_stat_field(cpid, 4), t.pid);
	/* The child holds the parent's memfd too (MFD_CLOEXEC does not
	 * close it across fork) and its own. */
	ASSERT_EQ(count_ring_fds(cpid), 2);

	lw_rr_proc_t *pc = attach(cpid);
	ASSERT_EQ(pc->nrings, 1);
	ASSERT_STREQ(lw_rr_name(pc->rings[0]), "child");
	ASSERT_EQ(lw_rr_pid(pc->rings[0]), cpid);
	ASSERT_EQ(lw_rr_tid(pc->rings[0]), cpid);
	ASSERT_GE(pc->nskipped, 1);
	if (strstr(pc->skipped_why, "inherit") == NULL)
		LWT_FAIL("skipped, but why: \"%s\"", pc->skipped_why);
	wait_head_past(pc->rings[0], ring_head(pc->rings[0]), 5000);
	wait_site(pc->rings[0], "child_tick", NULL, 5000);
	ASSERT_EQ(site_by_name(pc->rings[0], "parent_tick", NULL), 0);

	lw_rr_proc_t *pp;
	lw_rr_ring_t *rp = attach_one(t.pid, &pp);
	ASSERT_EQ(pp->nskipped, 0);
	ASSERT_STREQ(lw_rr_name(rp), "parent");
	ASSERT_EQ(lw_rr_pid(rp), t.pid);
	ASSERT_EQ(lw_rr_tid(rp), t.pid);
	wait_head_past(rp, ring_head(rp), 5000);
	wait_site(rp, "parent_tick", NULL, 5000);
	/* Nothing of the child's went into the parent's ring. */
	ASSERT_EQ(site_by_name(rp, "child_tick", NULL), 0);
	lw_rr_cursor_t c;
	lw_rr_cursor_init(rp, &c, 1);
	struct recs rs = { 0 };
	drain(rp, &c, &rs);
	uint32_t n = lw_rr_nsites(rp);
	for (size_t i = 0; i < rs.n; i++) {
		ASSERT_GE(rs.v[i].site, 1);
		ASSERT_LE(rs.v[i].site, n);
	}

	recs_free(&rs);
	lw_rr_detach(pc);
	lw_rr_detach(pp);
	/* The child dies with its parent (PR_SET_PDEATHSIG). */
	kill(cpid, SIGKILL);
	target_stop(&t);
}

/*
 * LOOPWATCH=off: the program runs its loop without a ring; a reader says
 * so, and the process holds no loopwatch memfd.  The same program without
 * the switch holds exactly one.
 */
TEST(ring_off_leaves_no_ring)
{
	struct target off, on;
	target_run(&off, (const char *const[]){ "sleep50", NULL },
		   (const char *const[]){ "LOOPWATCH=off", NULL });
	target_run(&on, (const char *const[]){ "sleep50", NULL }, NULL);

	lw_rr_proc_t *p = NULL;
	char why[256] = "";
	ASSERT_OK(lw_rr_attach(off.pid, &p, why, sizeof(why)));
	ASSERT_EQ(p->nrings, 0);
	ASSERT_EQ(p->nskipped, 0);
	if (strlen(why) < 10)
		LWT_FAIL("no rings, and why is \"%s\"", why);
	ASSERT_EQ(count_ring_fds(off.pid), 0);
	lw_rr_detach(p);

	ASSERT_EQ(count_ring_fds(on.pid), 1);
	lw_rr_ring_t *r = attach_one(on.pid, &p);
	ASSERT_STREQ(lw_rr_name(r), "sleep50");
	lw_rr_detach(p);

	target_stop(&off);
	target_stop(&on);
}

/*
 * The ring names its process for its whole life: its pid and start time
 * are the ones /proc gives for the process, and the ring was made after we
 * started the program.
 */
TEST(ring_start_time_matches_proc)
{
	struct target t;
	target_run(&t, (const char *const[]){ "sleep50", NULL }, NULL);
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	uint64_t st = proc_stat_field(t.pid, 22);
	ASSERT_GT(st, 0);
	ASSERT_EQ(lw_rr_start_time(r), st);
	ASSERT_EQ(p->start_time, st);
	ASSERT_EQ(lw_rr_pid(r), t.pid);
	ASSERT_GE(lw_rr_created_ns(r) + 2 * MS, t.spawned_ns);
	ASSERT_LE(lw_rr_created_ns(r), lwt_now_ns());
	ASSERT_EQ(lw_rr_proc_alive(p), 1);
	lw_rr_detach(p);
	target_stop(&t);
}

/*
 * A pid reused by a new process is not the process we attached to.  As
 * root, /proc/sys/kernel/ns_last_pid makes the next fork take the pid of the
 * target that just died.
 */
TEST(ring_pid_reuse_detected)
{
	struct target t;
	target_run(&t, (const char *const[]){ "sleep50", NULL }, NULL);
	pid_t old = t.pid;
	lw_rr_proc_t *p;
	attach_one(old, &p);
	ASSERT_EQ(lw_rr_proc_alive(p), 1);
	target_stop(&t);
	ASSERT_EQ(lw_rr_proc_alive(p), 0);

	if (geteuid() != 0) {
		lw_rr_detach(p);
		SKIP("not root: cannot choose the next pid");
	}
	/* The start time counts clock ticks (10 ms): a process started in the
	 * same tick as the target could not be told from it by its start
	 * time alone.  Let the tick pass. */
	uint64_t old_start = p->start_time;
	while (lwt_now_ns() - t.spawned_ns < 50 * MS)
		sleep_ms(10);
	pid_t reused = 0;
	for (int attempt = 0; attempt < 20 && reused == 0; attempt++) {
		int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
		if (fd < 0) {
			lw_rr_detach(p);
			SKIP("cannot open ns_last_pid: %s", strerror(errno));
		}
		char num[32];
		int len = snprintf(num, sizeof(num), "%d", (int)old - 1);
		ssize_t w = write(fd, num, (size_t)len);
		int err = errno;
		close(fd);
		if (w != len) {
			lw_rr_detach(p);
			SKIP("cannot write ns_last_pid: %s", strerror(err));
		}
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getpid() != old)
				_exit(0);
			for (;;)
				pause();
		}
		if (pid == old) {
			reused = pid;
		} else {
			/* Someone else took it first: try again. */
			waitpid(pid, NULL, 0);
		}
	}
	if (reused == 0) {
		lw_rr_detach(p);
		SKIP("pid %d was taken by others 20 times", (int)old);
	}
	/* A process with that pid exists, and it is not our target. */
	ASSERT_EQ(kill(reused, 0), 0);
	ASSERT_GT(proc_stat_field(reused, 22), old_start);
	ASSERT_EQ(lw_rr_proc_alive(p), 0);
	/* And it has no rings. */
	lw_rr_proc_t *q = attach(reused);
	ASSERT_EQ(q->nrings, 0);
	lw_rr_detach(q);

	kill(reused, SIGKILL);
	waitpid(reused, NULL, 0);
	lw_rr_detach(p);
}

/* ---- readers killed mid-read ---- */

/* The storm target's speed over a window: the medians of the `rate N C`
 * lines it prints (callbacks per second of wall time, of its CPU time). */
struct rate {
	uint64_t wall, cpu;
};

static struct rate storm_rate(struct target *t, int window_ms)
{
	/* Lines printed before now are old news. */
	char line[256];
	int fl = fcntl(t->out, F_GETFL);
	fcntl(t->out, F_SETFL, fl | O_NONBLOCK);
	while (read(t->out, line, sizeof(line)) > 0)
		;
	fcntl(t->out, F_SETFL, fl);
	/* A partial line may be left: the first line read is not used. */
	ASSERT_GE(lwt_read_line(t->out, line, sizeof(line), 5000), 0);

	uint64_t wall[64], cpu[64];
	size_t n = 0;
	double deadline = lwt_now_ms() + window_ms;
	while (n < 64 && lwt_now_ms() < deadline) {
		if (lwt_read_line(t->out, line, sizeof(line), 5000) < 0)
			LWT_FAIL("storm printed no rate for 5 s");
		unsigned long long w, c;
		if (sscanf(line, "rate %llu %llu", &w, &c) == 2) {
			wall[n] = w;
			cpu[n++] = c;
		}
	}
	ASSERT_GE(n, 3);
	return (struct rate){ median_u64(wall, n), median_u64(cpu, n) };
}

/* In a forked process: attach and read as fast as possible until killed. */
static void busy_reader(pid_t target)
{
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(target, &p);
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);
	struct lw_ring_record buf[512];
	for (;;) {
		lw_rr_read(r, &c, buf, 512);
		lw_rr_current_t cur;
		lw_rr_current(r, &cur);
		lw_rr_counters_t k;
		lw_rr_counters(r, &k);
		lw_rr_site_t s;
		lw_rr_site(r, 1, &s);
	}
}

/*
 * Readers that die at any moment (SIGKILL while attached and reading) do
 * the target no harm: it lives, its ring goes on, and once they are gone it
 * runs at least half as fast as before they came.  "As fast" is callbacks
 * per second of the target's own CPU time, which other load on the machine
 * does not change much; callbacks per second of wall time must stay above
 * a tenth (the target is not stuck or starved).
 */
TEST_T(ring_killed_reader_target_unharmed, 90)
{
	struct target t;
	target_run(&t, (const char *const[]){ "storm", NULL }, NULL);
	struct rate before = storm_rate(&t, 1000);
	ASSERT_GT(before.wall, 0);
	ASSERT_GT(before.cpu, 0);
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	uint64_t head0 = ring_head(r);

	/* Pseudo-random, but the same moments every run. */
	unsigned seed = 12345;
	for (int i = 0; i < 10; i++) {
		fflush(stdout);
		fflush(stderr);
		pid_t child = fork();
		ASSERT(child >= 0);
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			busy_reader(t.pid);
		}
		sleep_ms(5 + rand_r(&seed) % 150);
		ASSERT_EQ(kill(child, SIGKILL), 0);
		int status;
		ASSERT_EQ(waitpid(child, &status, 0), child);
		/* Killed by us, not failed on its own. */
		ASSERT(WIFSIGNALED(status));
		ASSERT_EQ(WTERMSIG(status), SIGKILL);
		ASSERT_EQ(waitpid(t.pid, &status, WNOHANG), 0);
	}

	/* The best of up to three windows: a noisy machine may spoil one. */
	struct rate after = { 0, 0 };
	for (int i = 0; i < 3; i++) {
		struct rate x = storm_rate(&t, 1000);
		if (x.cpu > after.cpu)
			after.cpu = x.cpu;
		if (x.wall > after.wall)
			after.wall = x.wall;
		if (after.cpu * 2 >= before.cpu &&
		    after.wall * 2 >= before.wall)
			break;
	}
	ASSERT_GE(after.cpu * 2, before.cpu);
	ASSERT_GE(after.wall * 10, before.wall);
	int status;
	ASSERT_EQ(waitpid(t.pid, &status, WNOHANG), 0);
	uint64_t head1 = wait_head_past(r, head0, 5000);
	wait_head_past(r, head1, 5000);

	lw_rr_detach(p);
	target_stop(&t);
}

/*
 * A job deferred to the pool that sleeps 300 ms: the pool fields show a busy
 * worker, the job's function, and a start far enough in the past; the
 * completed count moves; the completions run on the loop as defer records.
 */
TEST(ring_pool_state)
{
	struct target t;
	target_run(&t, (const char *const[]){ "defer", NULL }, NULL);
	uint64_t job = target_fn(&t, "job");
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);
	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 1);

	/* A worker busy with a job that started at least 150 ms ago. */
	lw_rr_counters_t k;
	double deadline = lwt_now_ms() + 10000;
	for (;;) {
		lw_rr_counters(r, &k);
		uint64_t now = lwt_now_ns();
		if (k.pool_busy >= 1 && k.pool_oldest_start_ns != 0 &&
		    k.pool_oldest_start_ns <= now &&
		    now - k.pool_oldest_start_ns >= 150 * MS)
			break;
		if (lwt_now_ms() > deadline)
			LWT_FAIL("no busy worker with an old job in 10 s "
				 "(busy %u, oldest start %" PRIu64 ")",
				 k.pool_busy, k.pool_oldest_start_ns);
		sleep_ms(2);
	}
	ASSERT_GE(k.pool_threads, 1);
	ASSERT_LE(k.pool_busy, k.pool_threads);
	ASSERT_GE(k.pool_oldest_start_ns + 2 * MS, t.spawned_ns);
	ASSERT_NE(k.pool_oldest_fn, 0);
	ASSERT_EQ(k.pool_oldest_fn, job);
	if (k.pool_oldest_site != 0)
		ASSERT_LE(k.pool_oldest_site, lw_rr_nsites(r));

	/* Jobs finish, and their completions run on the loop. */
	uint64_t done0 = k.pool_completed;
	struct recs rs = { 0 };
	size_t ndefer = 0;
	deadline = lwt_now_ms() + 10000;
	for (;;) {
		lw_rr_counters(r, &k);
		drain(r, &c, &rs);
		ndefer = 0;
		for (size_t i = 0; i < rs.n; i++)
			ndefer += rs.v[i].kind == LW_KIND_DEFER;
		if (k.pool_completed >= done0 + 2 && ndefer >= 2)
			break;
		if (lwt_now_ms() > deadline)
			LWT_FAIL("completed %" PRIu64 " -> %" PRIu64
				 ", %zu defer records in 10 s",
				 done0, k.pool_completed, ndefer);
		sleep_ms(10);
	}
	/* The pool's count is never behind the completions the loop ran. */
	ASSERT_GE(k.pool_completed, ndefer);

	recs_free(&rs);
	lw_rr_detach(p);
	target_stop(&t);
}

/*
 * Names given with lw_site_name() are in the site table with the right
 * kind and the callback's address; a site born after we attached appears,
 * and a rename shows.
 */
TEST(ring_sites_named)
{
	struct target t;
	target_run(&t, (const char *const[]){ "sites", NULL }, NULL);
	uint64_t alpha_fn = target_fn(&t, "alpha");
	uint64_t born_fn = target_fn(&t, "born_late");
	lw_rr_proc_t *p;
	lw_rr_ring_t *r = attach_one(t.pid, &p);

	lw_rr_site_t s;
	uint32_t ida = wait_site(r, "alpha", &s, 5000);
	ASSERT_EQ(s.id, ida);
	ASSERT_EQ(s.kind, LW_KIND_TIMER);
	ASSERT_EQ(s.fn, alpha_fn);
	wait_site(r, "ready", &s, 5000);
	ASSERT_EQ(s.kind, LW_KIND_TICK);
	ASSERT_EQ(site_by_name(r, "born_late", NULL), 0);
	uint32_t n0 = lw_rr_nsites(r);

	lw_rr_cursor_t c;
	lw_rr_cursor_init(r, &c, 0);
	ASSERT_EQ(kill(t.pid, SIGUSR1), 0);

	uint32_t idb = wait_site(r, "born_late", &s, 5000);
	ASSERT_GT(idb, n0);
	ASSERT_EQ(s.kind, LW_KIND_TIMER);
	ASSERT_EQ(s.fn, born_fn);
	wait_site(r, "usr1", &s, 5000);
	ASSERT_EQ(s.kind, LW_KIND_SIGNAL);
	/* Renamed in place: same id, new name. */
	ASSERT_EQ(wait_site(r, "alpha_renamed", &s, 5000), ida);
	ASSERT_EQ(s.fn, alpha_fn);
	ASSERT_EQ(site_by_name(r, "alpha", NULL), 0);

	/* Every published entry is whole and in its place. */
	uint32_t n = lw_rr_nsites(r);
	for (uint32_t id = 1; id <= n; id++) {
		ASSERT_OK(lw_rr_site(r, id, &s));
		ASSERT_EQ(s.id, id);
		ASSERT_NE(s.fn, 0);
	}

	/* And the new site's records follow. */
	struct recs rs = { 0 };
	double deadline = lwt_now_ms() + 5000;
	while (count_site(&rs, idb) < 5) {
		if (lwt_now_ms() > deadline)
			LWT_FAIL("%zu born_late records in 5 s",
				 count_site(&rs, idb));
		sleep_ms(10);
		drain(r, &c, &rs);
	}

	recs_free(&rs);
	lw_rr_detach(p);
	target_stop(&t);
}
