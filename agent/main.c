/*
 * main.c - the `loopwatch` command: one binary, subcommands in the manner of
 * perf and bpftool, dispatched through the `commands` table.
 *
 *   loopwatch list                  processes that carry loopwatch rings
 *   loopwatch dump [opts] PID       a process's sites, then its records
 *   loopwatch attach [opts] PID     slow callbacks and what held them up
 *   loopwatch run [opts] -- PROG    start PROG and watch it the same way
 *
 * Exit codes: 0 fine, 1 a budget was exceeded (check, later), 2 bad usage
 * or cannot attach.  Errors read "loopwatch: cannot <verb> <noun>: <why>",
 * followed by a hint when there is one.
 */
#include "attach.h"
#include "spawn.h"
#include "loopwatch.h"
#include "loopwatch_ring.h"
#include "proc.h"
#include "ring_reader.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis; /* arguments after the command's name */
	const char *summary; /* one line for the overview */
	const char *help; /* the rest of `loopwatch CMD --help` */
};

static const struct command *find_command(const char *name);

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A duration in human units: 850 ns, 12.3 µs, 4.5 ms, 1.20 s. */
static const char *fmt_dur(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f µs", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	return buf;
}

/* A strictly parsed non-negative integer no larger than max; -1 if not. */
static long long parse_uint(const char *s, long long max)
{
	char *end;
	errno = 0;
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > max)
		return -1;
	return v;
}

static int usage_error(const struct command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "loopwatch: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: loopwatch %s %s\n", cmd->name, cmd->synopsis);
	fprintf(stderr, "Try 'loopwatch %s --help'.\n", cmd->name);
	return EXIT_USAGE;
}

static void print_command_help(const struct command *cmd)
{
	printf("usage: loopwatch %s %s\n\n%s.\n\n%s", cmd->name, cmd->synopsis,
	       cmd->summary, cmd->help);
}

/* Say why attaching failed, with a hint at the fix; exit code 2. */
static int cannot_attach(pid_t pid, int err, const char *why)
{
	fprintf(stderr, "loopwatch: cannot attach to PID %d: %s\n", (int)pid,
		why);
	if (err == -ESRCH)
		fprintf(stderr, "loopwatch: hint: check the pid with "
				"'loopwatch list' or ps\n");
	else if (err == -EACCES)
		fprintf(stderr, "loopwatch: hint: run loopwatch as the same "
				"user as the process, or as root\n");
	return EXIT_USAGE;
}

/* ---- list ---- */

struct list_state {
	int found; /* processes with rings */
	int denied; /* processes whose fds we may not read */
	pid_t self;
};

static int list_one(pid_t pid, void *arg)
{
	struct list_state *ls = arg;
	lw_rr_proc_t *p;
	char why[256], comm[64];

	if (pid == ls->self)
		return 0;
	int r = lw_rr_attach(pid, &p, why, sizeof(why));
	if (r == -EACCES) {
		ls->denied++;
		return 0;
	}
	if (r < 0)
		return 0; /* exited meanwhile, or unreadable: not ours */
	if (p->nrings == 0 && p->nskipped == 0) {
		lw_rr_detach(p);
		return 0;
	}
	if (lw_proc_comm(pid, comm, sizeof(comm)) < 0)
		snprintf(comm, sizeof(comm), "?");
	if (ls->found++ == 0)
		printf("%7s  %-16s %-24s %7s %9s\n", "PID", "COMMAND", "LOOP",
		       "TID", "CAPACITY");
	for (size_t i = 0; i < p->nrings; i++) {
		const lw_rr_ring_t *ring = p->rings[i];
		const char *name = lw_rr_name(ring);
		printf("%7d  %-16s %-24s %7d %9" PRIu32 "\n", (int)pid, comm,
		       *name ? name : "(unnamed)", (int)lw_rr_tid(ring),
		       lw_rr_capacity(ring));
	}
	if (p->nskipped > 0)
		printf("%7d  %-16s (%zu ring%s skipped: %s)\n", (int)pid, comm,
		       p->nskipped, p->nskipped == 1 ? "" : "s",
		       p->skipped_why);
	fflush(stdout);
	lw_rr_detach(p);
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	const struct command *cmd = find_command("list");
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'h') {
			print_command_help(cmd);
			return 0;
		}
		return usage_error(cmd, "unknown option");
	}
	if (optind != argc)
		return usage_error(cmd, "unexpected argument '%s'",
				   argv[optind]);

	struct list_state ls = { .self = getpid() };
	int r = lw_proc_each_pid(list_one, &ls);
	if (r < 0) {
		fprintf(stderr, "loopwatch: cannot list /proc: %s\n",
			strerror(-r));
		return EXIT_USAGE;
	}
	if (ls.found == 0)
		printf("no process with loopwatch rings\n");
	if (ls.denied > 0)
		fprintf(stderr,
			"loopwatch: %d process%s could not be inspected (run "
			"as root to see every process)\n",
			ls.denied, ls.denied == 1 ? "" : "es");
	return 0;
}

/* ---- dump ---- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* What dump keeps per ring between ticks. */
struct dump_ring {
	lw_rr_ring_t *ring;
	lw_rr_cursor_t cur;
	uint64_t last_lost; /* lost already reported */
	uint64_t records; /* printed since the last periodic line */
	lw_rr_counters_t last; /* counters at the last periodic line */
	uint64_t last_ns; /* when the last periodic line was printed */
	uint64_t last_idle; /* idle ns then, the wait in progress included */
};

/* The site's name, or its function's address when it has none. */
static const char *site_label(const lw_rr_ring_t *r, uint32_t id, char *buf,
			      size_t len)
{
	lw_rr_site_t s;
	int rc = lw_rr_site(r, id, &s);

	if (id == 0)
		snprintf(buf, len, "(no site)");
	else if (rc < 0)
		snprintf(buf, len, "site#%" PRIu32, id);
	else if (s.name[0] != '\0')
		snprintf(buf, len, "%s", s.name);
	else
		snprintf(buf, len, "0x%" PRIx64, s.fn);
	return buf;
}

static const char *loop_label(const lw_rr_ring_t *r)
{
	const char *n = lw_rr_name(r);
	return *n ? n : "(unnamed)";
}

static void print_sites(const lw_rr_ring_t *r)
{
	uint32_t n = lw_rr_nsites(r);

	printf("loop %s: tid %d, capacity %" PRIu32 " records, %" PRIu32
	       " site%s\n",
	       loop_label(r), (int)lw_rr_tid(r), lw_rr_capacity(r), n,
	       n == 1 ? "" : "s");
	if (n == 0)
		return;
	printf("  %5s  %-10s  %-18s  %s\n", "SITE", "KIND", "FUNCTION", "NAME");
	for (uint32_t id = 1; id <= n; id++) {
		lw_rr_site_t s;
		int rc = lw_rr_site(r, id, &s);
		if (rc < 0) {
			printf("  %5" PRIu32 "  (unreadable: %s)\n", id,
			       strerror(-rc));
			continue;
		}
		printf("  %5" PRIu32 "  %-10s  0x%-16" PRIx64 "  %s\n", id,
		       lw_rr_kind_name(s.kind), s.fn, s.name);
	}
}

static void print_record(const struct dump_ring *d,
			 const struct lw_ring_record *rec, uint64_t t0)
{
	char site[LW_RING_NAME_MAX + 32], dur[32], late[48] = "";

	double rel = ((double)rec->start_ns - (double)t0) / 1e9;
	if (rec->kind == LW_KIND_TIMER) {
		char l[32];
		snprintf(late, sizeof(late), "  late %s%s",
			 rec->flags & LW_REC_LATENESS_SATURATED ? ">= " : "",
			 fmt_dur(rec->lateness_ns, l, sizeof(l)));
	}
	printf("%+11.6f  %-12s %-10s %-24s %10s%s\n", rel, loop_label(d->ring),
	       lw_rr_kind_name(rec->kind),
	       site_label(d->ring, rec->site, site, sizeof(site)),
	       fmt_dur(rec->duration_ns, dur, sizeof(dur)), late);
}

/* The periodic line: records, losses, utilization over the interval, and
 * the callback running now, if any. */
static void print_periodic(struct dump_ring *d, uint64_t t0)
{
	lw_rr_counters_t c;
	lw_rr_current_t cur;
	char util[32] = "n/a", running[160] = "";

	lw_rr_counters(d->ring, &c);
	uint64_t now = now_ns();
	int have_cur = lw_rr_current(d->ring, &cur) == 0 && cur.running;
	/* Idle time is booked when a wait returns: count the wait still in
	 * progress up to now, so an idle loop reads 0% and not "no data".
	 * Utilization is then 1 - idle / wall time over the interval, which
	 * also reads 100% through a callback that spans the interval. */
	uint64_t idle_now = c.idle_ns;
	if (c.wait_since_ns != 0 && now > c.wait_since_ns &&
	    now - c.wait_since_ns < (uint64_t)1 << 62)
		idle_now += now - c.wait_since_ns;
	uint64_t wall = now - d->last_ns;
	uint64_t idle = idle_now - d->last_idle;
	/* Counters that went backwards or jumped past the wall time mean a
	 * hostile or new writer: say nothing rather than nonsense.  A loop
	 * that is neither waiting, nor iterating, nor in a callback is not
	 * running at all. */
	int running_loop = have_cur || c.wait_since_ns != 0 ||
			   c.iterations != d->last.iterations;
	if (d->last_ns != 0 && wall > 0 && idle_now >= d->last_idle &&
	    idle <= wall + wall / 20 && running_loop) {
		double u = 100.0 * (1.0 - (double)idle / (double)wall);
		snprintf(util, sizeof(util), "%.1f%%", u < 0 ? 0.0 : u);
	}
	if (have_cur) {
		char site[LW_RING_NAME_MAX + 32], dur[32];
		snprintf(running, sizeof(running), ", running now: %s for %s",
			 site_label(d->ring, cur.site, site, sizeof(site)),
			 fmt_dur(now > cur.start_ns ? now - cur.start_ns : 0,
				 dur, sizeof(dur)));
	}
	printf("-- %+.3f  %s: %" PRIu64 " records, %" PRIu64
	       " lost, utilization %s%s\n",
	       (double)(now - t0) / 1e9, loop_label(d->ring), d->records,
	       d->cur.lost - d->last_lost, util, running);
	d->last_lost = d->cur.lost;
	d->records = 0;
	d->last = c;
	d->last_idle = idle_now;
	d->last_ns = now;
}

/* Print what is new in every ring; returns 1 once `limit` records have been
 * printed (limit 0: no limit). */
static int drain(struct dump_ring *dr, size_t n, uint64_t t0, uint64_t *printed,
		 uint64_t limit)
{
	struct lw_ring_record buf[256];

	for (size_t i = 0; i < n; i++) {
		/* Bounded per tick so a fast writer cannot starve the other
		 * rings or the periodic lines. */
		for (int chunk = 0; chunk < 64; chunk++) {
			size_t got = lw_rr_read(dr[i].ring, &dr[i].cur, buf,
						sizeof(buf) / sizeof(buf[0]));
			for (size_t k = 0; k < got; k++) {
				print_record(&dr[i], &buf[k], t0);
				dr[i].records++;
				if (limit && ++*printed >= limit)
					return 1;
			}
			if (got == 0)
				break;
		}
	}
	return 0;
}

/* The one operand after the options, a PID: 0 and *pid, or the usage
 * error's exit status. */
static int pid_operand(const struct command *cmd, int argc, char **argv,
		       pid_t *pid)
{
	if (optind != argc - 1)
		return usage_error(cmd, optind >= argc ? "missing PID"
						       : "too many arguments");
	long long v = parse_uint(argv[optind], INT_MAX);
	if (v <= 0)
		return usage_error(cmd, "bad PID '%s'", argv[optind]);
	*pid = (pid_t)v;
	return 0;
}

static int cmd_dump(int argc, char **argv)
{
	const struct command *cmd = find_command("dump");
	static const struct option opts[] = {
		{ "oldest", no_argument, NULL, 'o' },
		{ "count", required_argument, NULL, 'n' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int from_oldest = 0, c;
	long long count = 0, interval_ms = 1000;

	while ((c = getopt_long(argc, argv, "+on:i:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			from_oldest = 1;
			break;
		case 'n':
			count = parse_uint(optarg, LLONG_MAX);
			if (count < 0)
				return usage_error(cmd, "bad --count '%s'",
						   optarg);
			break;
		case 'i':
			interval_ms = parse_uint(optarg, 86400000);
			if (interval_ms <= 0)
				return usage_error(cmd, "bad --interval '%s'",
						   optarg);
			break;
		case 'h':
			print_command_help(cmd);
			return 0;
		default:
			return usage_error(cmd, "unknown option");
		}
	}
	pid_t pid;
	int bad = pid_operand(cmd, argc, argv, &pid);
	if (bad)
		return bad;

	lw_rr_proc_t *p;
	char why[512];
	int r = lw_rr_attach(pid, &p, why, sizeof(why));
	if (r < 0)
		return cannot_attach(pid, r, why);
	if (p->nrings == 0) {
		if (p->nskipped > 0)
			fprintf(stderr,
				"loopwatch: cannot attach to PID %d: no usable "
				"loopwatch ring (%zu skipped: %s)\n",
				(int)pid, p->nskipped, p->skipped_why);
		else
			fprintf(stderr,
				"loopwatch: cannot attach to PID %d: no "
				"loopwatch rings\n"
				"loopwatch: hint: the process does not link "
				"libloopwatch, or runs with LOOPWATCH=off\n",
				(int)pid);
		lw_rr_detach(p);
		return EXIT_USAGE;
	}

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	char comm[64] = "?";
	lw_proc_comm(pid, comm, sizeof(comm));
	uint64_t t0 = now_ns();
	printf("attached to PID %d (%s): %zu loop%s\n", (int)pid, comm,
	       p->nrings, p->nrings == 1 ? "" : "s");
	if (p->nskipped > 0)
		printf("(%zu ring%s skipped: %s)\n", p->nskipped,
		       p->nskipped == 1 ? "" : "s", p->skipped_why);
	struct dump_ring *dr = xcalloc(p->nrings, sizeof(*dr));
	for (size_t i = 0; i < p->nrings; i++) {
		dr[i].ring = p->rings[i];
		lw_rr_cursor_init(dr[i].ring, &dr[i].cur, from_oldest);
		lw_rr_counters(dr[i].ring, &dr[i].last);
		dr[i].last_ns = t0;
		dr[i].last_idle = dr[i].last.idle_ns;
		if (dr[i].last.wait_since_ns != 0 &&
		    t0 > dr[i].last.wait_since_ns)
			dr[i].last_idle += t0 - dr[i].last.wait_since_ns;
		print_sites(dr[i].ring);
	}
	fflush(stdout);

	uint64_t printed = 0,
		 next_periodic = t0 + (uint64_t)interval_ms * 1000000;
	int exited = 0, done = 0;
	uint64_t next_alive = t0;
	while (!interrupted && !done) {
		done = drain(dr, p->nrings, t0, &printed, (uint64_t)count);
		if (done)
			break;
		uint64_t now = now_ns();
		if (now >= next_periodic) {
			for (size_t i = 0; i < p->nrings; i++)
				print_periodic(&dr[i], t0);
			next_periodic = now + (uint64_t)interval_ms * 1000000;
		}
		if (now >= next_alive) {
			if (!lw_rr_proc_alive(p)) {
				/* The mapping outlives the process: print
				 * what it wrote last, then say so. */
				done = drain(dr, p->nrings, t0, &printed,
					     (uint64_t)count);
				exited = 1;
				break;
			}
			next_alive = now + 100000000;
		}
		fflush(stdout);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (exited)
		printf("loopwatch: process %d exited\n", (int)pid);
	fflush(stdout);
	free(dr);
	lw_rr_detach(p);
	return 0;
}

/* ---- attach ---- */

/* The options that attach and run share; with_tid: attach's --tid.
 * Returns 0 with optind at the operands, -1 after --help, or an exit
 * status. */
static int watch_opts(const struct command *cmd, int argc, char **argv,
		      struct lw_attach_opts *o, int with_tid)
{
	static const struct option opts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "min-ms", required_argument, NULL, 'm' },
		{ "tid", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long long v;
	int c;

	while ((c = getopt_long(argc, argv, "+d:m:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			v = parse_uint(optarg, 31536000);
			if (v <= 0)
				return usage_error(cmd, "bad --duration '%s'",
						   optarg);
			o->duration_ns = (uint64_t)v * 1000000000u;
			break;
		case 'm':
			v = parse_uint(optarg, 3600000);
			if (v <= 0)
				return usage_error(cmd, "bad --min-ms '%s'",
						   optarg);
			o->min_ns = (uint64_t)v * 1000000u;
			break;
		case 't':
			if (!with_tid)
				return usage_error(cmd, "unknown option");
			v = parse_uint(optarg, INT_MAX);
			if (v <= 0)
				return usage_error(cmd, "bad --tid '%s'",
						   optarg);
			o->tid = (pid_t)v;
			break;
		case 'h':
			print_command_help(cmd);
			return -1;
		default:
			return usage_error(cmd, "unknown option");
		}
	}
	return 0;
}

static int cmd_attach(int argc, char **argv)
{
	const struct command *cmd = find_command("attach");
	struct lw_attach_opts o = { .min_ns = 1000000 };
	int r = watch_opts(cmd, argc, argv, &o, 1);

	if (r != 0)
		return r < 0 ? 0 : r;
	int bad = pid_operand(cmd, argc, argv, &o.pid);
	if (bad)
		return bad;
	return lw_attach_run(&o);
}

/* ---- run ---- */

static int cmd_run(int argc, char **argv)
{
	const struct command *cmd = find_command("run");
	struct lw_attach_opts o = { .min_ns = 1000000 };
	char why[512];
	int r = watch_opts(cmd, argc, argv, &o, 0);

	if (r != 0)
		return r < 0 ? 0 : r;
	if (optind >= argc)
		return usage_error(cmd, "no program to run");
	const char *prog = argv[optind];
	pid_t pid = lw_spawn(argv + optind, why, sizeof(why));
	if (pid < 0) {
		fprintf(stderr, "loopwatch: %s\n", why);
		fprintf(stderr, "loopwatch: hint: check the program's path "
				"and permissions\n");
		return EXIT_USAGE;
	}
	/* Its loop appears when it has set itself up: the rings at its
	 * first lw_loop_new, an event wait for a foreign loop. */
	r = lw_spawn_wait_loop(pid, 5000);
	if (r == 0)
		fprintf(stderr,
			"loopwatch: %s has no loop after 5 s (no loopwatch "
			"ring, no thread in an event wait)\n",
			prog);
	o.pid = pid;
	int rc = r == -ESRCH ? 0 : lw_attach_run(&o);
	/* The watch is over: a program still running (the duration ended,
	 * or it could not be watched) is stopped, as timeout(1) would. */
	int status = 0, stopped = 0;
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGTERM);
		stopped = 1;
		waitpid(pid, &status, 0);
	}
	if (rc != 0)
		return rc;
	if (stopped)
		return 0;
	if (WIFEXITED(status)) {
		if (WEXITSTATUS(status) != 0)
			fprintf(stderr, "loopwatch: %s exited with status %d\n",
				prog, WEXITSTATUS(status));
		return WEXITSTATUS(status);
	}
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "loopwatch: %s was killed by signal %d (%s)\n",
			prog, WTERMSIG(status), strsignal(WTERMSIG(status)));
		return 128 + WTERMSIG(status);
	}
	return 0;
}

/* ---- dispatch ---- */

static const struct command commands[] = {
	{ "list", cmd_list, "", "list the processes that carry loopwatch rings",
	  "Prints one line per loop: the process's pid and command name, the\n"
	  "loop's name, its thread and its ring's capacity in records.\n"
	  "Processes whose fds this user may not read are counted, not "
	  "shown.\n" },
	{ "dump", cmd_dump, "[--oldest] [--count N] [--interval MS] PID",
	  "print a process's sites, then its callbacks as they run",
	  "Attaches to every loopwatch ring of PID, prints each loop's site "
	  "table,\n"
	  "then one line per callback: time relative to the attach, loop, "
	  "kind,\n"
	  "site (its name, or the function's address), duration, and for "
	  "timers\n"
	  "how late they started.  Every interval it prints per loop the "
	  "records\n"
	  "seen and lost, the utilization (busy / (busy + idle)) and the "
	  "callback\n"
	  "running now, if one is.  Stops on Ctrl-C, when PID exits, or "
	  "after N\n"
	  "records.\n\n"
	  "  -o, --oldest        start with the records still in the ring\n"
	  "  -n, --count N       stop after N records\n"
	  "  -i, --interval MS   periodic lines every MS milliseconds "
	  "(1000)\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 2 bad usage or cannot attach.\n" },
	{ "attach", cmd_attach, "[--duration S] [--min-ms N] [--tid TID] PID",
	  "name what held up a running process's slow callbacks",
	  "Watches the loop threads of PID: the threads of its loopwatch "
	  "rings; without\n"
	  "rings, the threads that wait in epoll, poll, select or io_uring "
	  "(or TID),\n"
	  "whose loop iterations then stand for the callbacks.  As root, "
	  "kernel probes\n"
	  "add to each slow callback the slow syscalls inside it (with the "
	  "time it\n"
	  "spent off CPU), off-CPU time outside syscalls, and stack samples "
	  "when it\n"
	  "ran on CPU, all with symbolized user stacks; and they count the "
	  "calls that\n"
	  "can block (file I/O, fsync, sleeps, futex waits) per callback, "
	  "even when\n"
	  "fast.  A summary per site ends the report.  Without the kernel "
	  "probes (not\n"
	  "root) it goes on with the rings alone.  Stops on Ctrl-C, when PID "
	  "exits,\n"
	  "or after S seconds.\n\n"
	  "  -d, --duration S    stop after S seconds\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  -t, --tid TID       watch thread TID as a loop thread\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 2 bad usage or cannot attach.\n" },
	{ "run", cmd_run, "[--duration S] [--min-ms N] -- PROGRAM [ARGS...]",
	  "start a program and watch it as attach does",
	  "Starts PROGRAM (searched in PATH) with ARGS, waits until it has a "
	  "loop (a\n"
	  "loopwatch ring, or a thread in an event wait; up to 5 s), and "
	  "watches it\n"
	  "as `loopwatch attach` does until it exits.  With --duration, "
	  "PROGRAM is\n"
	  "sent SIGTERM when the time is up.  It shares loopwatch's terminal: "
	  "Ctrl-C\n"
	  "reaches both.\n\n"
	  "  -d, --duration S    stop watching after S seconds, and stop "
	  "PROGRAM\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: PROGRAM's (128+N when a signal N killed it; 0 when "
	  "stopped by\n"
	  "--duration), 2 when it could not be started or watched.\n" },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void print_usage(FILE *f)
{
	fprintf(f, "usage: loopwatch COMMAND [ARGS...]\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-6s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\n'loopwatch COMMAND --help' tells more about each.\n");
}

int main(int argc, char **argv)
{
	/* elfutils would fetch missing debug files over the network when
	 * DEBUGINFOD_URLS is set: a tool attached to a production server
	 * must not, unless asked to (LOOPWATCH_DEBUGINFOD=1). */
	const char *dbg = getenv("LOOPWATCH_DEBUGINFOD");
	if (dbg == NULL || strcmp(dbg, "1") != 0)
		unsetenv("DEBUGINFOD_URLS");
	if (argc < 2) {
		print_usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		print_usage(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0) {
		printf("loopwatch %d.%d.%d (ring ABI %d)\n", LW_VERSION_MAJOR,
		       LW_VERSION_MINOR, LW_VERSION_PATCH, LW_RING_ABI_VERSION);
		return 0;
	}
	if (strcmp(name, "help") == 0) {
		const struct command *cmd =
			argc > 2 ? find_command(argv[2]) : NULL;
		if (argc > 2 && cmd == NULL) {
			fprintf(stderr, "loopwatch: unknown command '%s'\n",
				argv[2]);
			return EXIT_USAGE;
		}
		if (cmd != NULL)
			print_command_help(cmd);
		else
			print_usage(stdout);
		return 0;
	}
	const struct command *cmd = find_command(name);
	if (cmd == NULL) {
		fprintf(stderr, "loopwatch: unknown command '%s'\n", name);
		print_usage(stderr);
		return EXIT_USAGE;
	}
	/* Each command parses its own options from its own name on. */
	optind = 1;
	return cmd->run(argc - 1, argv + 1);
}
