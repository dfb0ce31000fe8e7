/*
 * main.c - the `loopwatch` command: one binary, subcommands in the manner of
 * perf and bpftool, dispatched through the `commands` table.
 *
 *   loopwatch list                  processes that carry loopwatch rings
 *   loopwatch dump [opts] PID       a process's sites, then its records
 *   loopwatch attach [opts] PID     slow callbacks and what held them up
 *   loopwatch run [opts] -- PROG    start PROG and watch it the same way
 *   loopwatch check [budgets] (PID | -- PROG)   the CI gate
 *   loopwatch record -o FILE (PID | -- PROG)    save the joined stream
 *   loopwatch report [--json | --trace] FILE    read it back
 *
 * Exit codes: 0 fine, 1 a budget was exceeded (check, report), 2 bad
 * usage, cannot attach, or a damaged recording.  An error is one line on
 * stderr, "loopwatch: cannot <verb> <noun>: <why>" or for bad usage
 * "loopwatch: <what is wrong>", followed by at most one line
 * "loopwatch: hint: <what to do>" (for bad usage: the command's synopsis),
 * and nothing on stdout.  tests/test_cli.c holds every command to that.
 */
#include "clock.h"
#include "attach.h"
#include "budget.h"
#include "check.h"
#include "fate.h"
#include "duration.h"
#include "json.h"
#include "model.h"
#include "recording.h"
#include "report.h"
#include "spawn.h"
#include "trace.h"
#include "../tui/top.h"
#include "loopwatch.h"
#include "loopwatch_ring.h"
#include "proc.h"
#include "ring_reader.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
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

/* Bad usage: what is wrong in one line, the synopsis in the hint. */
static int usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "loopwatch: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr,
		"\nloopwatch: hint: usage: loopwatch %s%s%s ('loopwatch %s "
		"--help' tells more)\n",
		cmd->name, *cmd->synopsis ? " " : "", cmd->synopsis, cmd->name);
	return EXIT_USAGE;
}

#define BAD_PID "bad PID '%s' (a process id is a whole number from 1)"

/* c as a printable option letter, '?' if it is none. */
static int letter(int c)
{
	return c > 0 && c < 128 && isgraph(c) ? c : '?';
}

/* The option word the user wrote, as far as its '=', in buf. */
static const char *option_word(const char *word, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s", (int)strcspn(word, "="), word);
	return buf;
}

/* What getopt_long found wrong with an option (c is '?' or ':', getopt's
 * own messages being off), or an option of the shared table that this
 * command does not take (c is its value). */
static int option_error(const struct command *cmd, const struct option *opts,
			int c, char **argv)
{
	/* The word getopt_long was on: it has stepped past it for a long
	 * option and for the last letter of a short one. */
	const char *word = optind > 0 ? argv[optind - 1] : "";
	int is_long = strncmp(word, "--", 2) == 0;
	const struct option *known = NULL;
	char name[64];

	for (const struct option *o = opts; o->name; o++)
		if (o->val == (c == '?' || c == ':' ? optopt : c))
			known = o;
	if (c != '?' && c != ':')
		return usage_error(cmd, "%s takes no --%s", cmd->name,
				   known ? known->name : "such option");
	if (c == ':' && is_long)
		return usage_error(cmd, "option %s needs a value",
				   option_word(word, name, sizeof(name)));
	if (c == ':')
		return usage_error(cmd, "option -%c needs a value",
				   letter(optopt));
	/* '?' with optopt set: a letter that is no option, or a long
	 * option given a value it does not take ("--quiet=1"). */
	if (optopt != 0 && known && known->has_arg == no_argument && is_long)
		return usage_error(cmd, "option --%s takes no value",
				   known->name);
	/* "-5" where a PID goes is a PID, a bad one. */
	if (optopt >= '0' && optopt <= '9' && strstr(cmd->synopsis, "PID") &&
	    word[strspn(word + 1, "0123456789") + 1] == '\0')
		return usage_error(cmd, BAD_PID, word);
	if (optopt != 0)
		return usage_error(cmd, "unknown option '-%c'", letter(optopt));
	option_word(word, name, sizeof(name));
	/* getopt_long takes any unique prefix: more than one match is a
	 * word too short, not an unknown one. */
	int n = 0;
	for (const struct option *o = opts; o->name && is_long; o++)
		n += strncmp(o->name, name + 2, strlen(name + 2)) == 0;
	if (n > 1)
		return usage_error(cmd, "ambiguous option '%s'", name);
	return usage_error(cmd, "unknown option '%s'", name);
}

static void print_command_help(const struct command *cmd)
{
	printf("usage: loopwatch %s %s\n\n%s.\n\n%s", cmd->name, cmd->synopsis,
	       cmd->summary, cmd->help);
}

/* ---- list ---- */

struct list_state {
	int found; /* processes with rings */
	int denied; /* processes whose fds we may not read */
	pid_t first_denied;
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
	if (r == -EACCES || r == -EPERM) {
		if (ls->denied++ == 0)
			ls->first_denied = pid;
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

	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		if (c == 'h') {
			print_command_help(cmd);
			return 0;
		}
		return option_error(cmd, opts, c, argv);
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
	if (ls.denied > 0 && geteuid() != 0)
		fprintf(stderr,
			"loopwatch: %d process%s could not be inspected (run "
			"as root to see every process)\n",
			ls.denied, ls.denied == 1 ? "" : "es");
	else if (ls.denied > 0)
		/* Root refused: a process of another user namespace, or one
		 * a security module keeps closed (PID 1 in some VMs). */
		fprintf(stderr,
			"loopwatch: %d process%s could not be inspected even "
			"as root (the kernel refused its /proc files%s%d)\n",
			ls.denied, ls.denied == 1 ? "" : "es",
			ls.denied == 1 ? ": PID " : ", the first PID ",
			(int)ls.first_denied);
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
	       lw_rr_site_label(d->ring, rec->site, site, sizeof(site)),
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
	uint64_t now = lw_now_ns();
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
		snprintf(
			running, sizeof(running), ", running now: %s for %s",
			lw_rr_site_label(d->ring, cur.site, site, sizeof(site)),
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
	if (optind >= argc)
		return usage_error(cmd, "missing PID");
	if (optind != argc - 1)
		return usage_error(cmd,
				   "too many arguments ('%s' after the PID)",
				   argv[optind + 1]);
	long long v = parse_uint(argv[optind], INT_MAX);
	if (v <= 0 && strstr(cmd->synopsis, "PROGRAM"))
		return usage_error(cmd, BAD_PID "; a program goes after --",
				   argv[optind]);
	if (v <= 0)
		return usage_error(cmd, BAD_PID, argv[optind]);
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

	while ((c = getopt_long(argc, argv, "+:on:i:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			from_oldest = 1;
			break;
		case 'n':
			count = parse_uint(optarg, LLONG_MAX);
			if (count < 0)
				return usage_error(cmd,
						   "bad --count '%s' (a whole "
						   "number of records)",
						   optarg);
			break;
		case 'i':
			interval_ms = parse_uint(optarg, 86400000);
			if (interval_ms <= 0)
				return usage_error(cmd,
						   "bad --interval '%s' (a "
						   "whole number of "
						   "milliseconds, at least 1)",
						   optarg);
			break;
		case 'h':
			print_command_help(cmd);
			return 0;
		default:
			return option_error(cmd, opts, c, argv);
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
		return lw_attach_refused(pid, r, why);
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
	uint64_t t0 = lw_now_ns();
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
	int ended = 0, done = 0;
	uint64_t next_alive = t0;
	lw_fate_t *fate = lw_fate_new(p);
	if (fate == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	while (!interrupted && !done) {
		done = drain(dr, p->nrings, t0, &printed, (uint64_t)count);
		if (done)
			break;
		uint64_t now = lw_now_ns();
		if (now >= next_periodic) {
			for (size_t i = 0; i < p->nrings; i++)
				print_periodic(&dr[i], t0);
			next_periodic = now + (uint64_t)interval_ms * 1000000;
		}
		int full = now >= next_alive;
		if (lw_fate_look(fate, now, full, stdout) != LW_FATE_ALIVE) {
			/* The mapping outlives the process: print what it
			 * wrote last, then say how it ended. */
			done = drain(dr, p->nrings, t0, &printed,
				     (uint64_t)count);
			ended = 1;
			break;
		}
		if (full)
			next_alive = now + 100000000;
		fflush(stdout);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (ended) {
		char line[512];
		lw_fate_line(fate, 1000000, line, sizeof(line));
		printf("loopwatch: %s\n", line);
	}
	fflush(stdout);
	lw_fate_free(fate);
	free(dr);
	lw_rr_detach(p);
	return 0;
}

/* ---- attach, run, check, record ---- */

/* What the watching commands take besides lw_attach_opts. */
struct watch_cli {
	struct lw_attach_opts o;
	lw_budget_t *budget; /* NULL until a budget flag */
	const char *junit_path, *json_path; /* check */
	int have_interval, have_stuck;
};

enum {
	OPT_JSON = 256,
	OPT_INTERVAL,
	OPT_STUCK,
	OPT_BUDGETS,
	OPT_BUDGET,
	OPT_JUNIT,
	OPT_NO_EVENTS,
};

/* What each command accepts, beyond --duration, --min-ms and --help. */
enum {
	W_TID = 1,
	W_JSON = 2, /* --json (to stdout) */
	W_JSON_FILE = 4, /* --json FILE (check) */
	W_BUDGET = 8,
	W_JUNIT = 16,
	W_OUTPUT = 32, /* -o FILE (record) */
	W_LIVE = 64, /* --interval, --stuck-ms, --quiet */
};

/* A duration flag: a whole number of seconds ("30"), or a duration with
 * its unit ("500ms", "1.5s", "2m"); 0 and above a year are refused.  0, or
 * -1 with *why saying what is wrong in a few words. */
static int parse_duration_flag(const char *s, uint64_t *ns, const char **why)
{
	const uint64_t year = 31536000ull * 1000000000u;
	size_t digits = strspn(s, "0123456789");
	char dwhy[128];

	*why = "say 30, 30s, 500ms or 2m";
	if (digits > 0 && s[digits] == '\0') {
		/* Whole seconds; more digits than fit are too long too. */
		long long v =
			digits > 18 ? LLONG_MAX : parse_uint(s, LLONG_MAX);
		*ns = v > 31536000 ? UINT64_MAX : (uint64_t)v * 1000000000u;
	} else if (lw_duration_parse_str(s, ns, dwhy, sizeof(dwhy)) < 0) {
		return -1;
	}
	if (*ns == 0) {
		*why = "it must be more than 0";
		return -1;
	}
	if (*ns > year) {
		*why = "more than a year";
		return -1;
	}
	return 0;
}

static int budget_flag(const struct command *cmd, struct watch_cli *w, int file,
		       const char *arg)
{
	char why[512];
	int r;

	if (w->budget == NULL && (w->budget = lw_budget_new()) == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		return EXIT_USAGE;
	}
	r = file ? lw_budget_load(w->budget, arg, why, sizeof(why))
		 : lw_budget_set_flag(w->budget, arg, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "loopwatch: %s: %s\n",
			file ? "cannot read the budgets" : "bad --budget", why);
		fprintf(stderr,
			"loopwatch: hint: the format, with examples, is in "
			"docs/budgets.md ('loopwatch %s --help' lists the "
			"flags)\n",
			cmd->name);
		return EXIT_USAGE;
	}
	return 0;
}

/* Parse the options of a watching command.  Returns 0 with optind at the
 * operands, -1 after --help, or an exit status. */
static int watch_opts(const struct command *cmd, int argc, char **argv,
		      struct watch_cli *w, unsigned allow)
{
	static const struct option opts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "min-ms", required_argument, NULL, 'm' },
		{ "tid", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "json", optional_argument, NULL, OPT_JSON },
		{ "interval", required_argument, NULL, OPT_INTERVAL },
		{ "stuck-ms", required_argument, NULL, OPT_STUCK },
		{ "budgets", required_argument, NULL, OPT_BUDGETS },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ "junit", required_argument, NULL, OPT_JUNIT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dwhy;
	long long v;
	int c, r;

	while ((c = getopt_long(argc, argv, "+:d:m:t:o:qh", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'd':
			if (parse_duration_flag(optarg, &w->o.duration_ns,
						&dwhy) < 0)
				return usage_error(cmd,
						   "bad --duration '%s' (%s)",
						   optarg, dwhy);
			break;
		case 'm':
			v = parse_uint(optarg, 3600000);
			if (v <= 0)
				return usage_error(cmd,
						   "bad --min-ms '%s' (a whole "
						   "number of milliseconds, "
						   "at least 1)",
						   optarg);
			w->o.min_ns = (uint64_t)v * 1000000u;
			break;
		case 't':
			if (!(allow & W_TID))
				return option_error(cmd, opts, c, argv);
			v = parse_uint(optarg, INT_MAX);
			if (v <= 0)
				return usage_error(cmd,
						   "bad --tid '%s' (a thread "
						   "id, a whole number from "
						   "1)",
						   optarg);
			w->o.tid = (pid_t)v;
			break;
		case 'o':
			if (!(allow & W_OUTPUT))
				return option_error(cmd, opts, c, argv);
			w->o.record_path = optarg;
			break;
		case OPT_JSON:
			if (allow & W_JSON_FILE) {
				if (optarg == NULL || !*optarg)
					return usage_error(
						cmd, "--json needs a file "
						     "(--json=FILE)");
				w->json_path = optarg;
			} else if (allow & W_JSON) {
				if (optarg != NULL)
					return usage_error(
						cmd, "--json takes no value "
						     "here");
				w->o.json = 1;
			} else {
				return option_error(cmd, opts, c, argv);
			}
			break;
		case OPT_INTERVAL:
			if (!(allow & W_LIVE))
				return option_error(cmd, opts, c, argv);
			if (parse_duration_flag(optarg, &w->o.interval_ns,
						&dwhy) < 0)
				return usage_error(cmd,
						   "bad --interval '%s' (%s)",
						   optarg, dwhy);
			w->have_interval = 1;
			break;
		case OPT_STUCK:
			if (!(allow & W_LIVE))
				return option_error(cmd, opts, c, argv);
			v = parse_uint(optarg, 3600000);
			if (v < 0)
				return usage_error(cmd,
						   "bad --stuck-ms '%s' (a "
						   "whole number of "
						   "milliseconds; 0: off)",
						   optarg);
			w->o.stuck_ns = (uint64_t)v * 1000000u;
			w->have_stuck = 1;
			break;
		case OPT_BUDGETS:
		case OPT_BUDGET:
			if (!(allow & W_BUDGET))
				return option_error(cmd, opts, c, argv);
			r = budget_flag(cmd, w, c == OPT_BUDGETS, optarg);
			if (r)
				return r;
			break;
		case OPT_JUNIT:
			if (!(allow & W_JUNIT))
				return option_error(cmd, opts, c, argv);
			w->junit_path = optarg;
			break;
		case 'q':
			if (!(allow & W_LIVE))
				return option_error(cmd, opts, c, argv);
			w->o.events = 0;
			break;
		case 'h':
			print_command_help(cmd);
			return -1;
		default:
			return option_error(cmd, opts, c, argv);
		}
	}
	w->o.budget = w->budget;
	return 0;
}

static void watch_defaults(struct watch_cli *w)
{
	memset(w, 0, sizeof(*w));
	w->o.min_ns = 1000000;
	w->o.stuck_ns = 250000000;
	w->o.events = 1;
	w->o.summary = 1;
}

/* Live commands without --duration summarize every 10 s unless told. */
static void live_interval(struct watch_cli *w)
{
	if (!w->have_interval && w->o.duration_ns == 0)
		w->o.interval_ns = 10000000000ull;
}

/* Watch what the operands name: a PID, or "-- PROGRAM ARGS" which is
 * started, watched, and stopped at the end.  *status gets the program's
 * exit status (for run), 0 for a PID.  Returns the watch's exit status. */
static int watch_target(const struct command *cmd, int argc, char **argv,
			struct lw_attach_opts *o, int *status_out,
			int allow_pid, int allow_prog)
{
	char why[512];
	int r;

	*status_out = 0;
	/* getopt_long stops at "--" and skips it: a program follows when
	 * the word before the operands is "--". */
	int prog = !allow_pid || (optind > 0 && optind <= argc &&
				  strcmp(argv[optind - 1], "--") == 0);
	if (optind >= argc)
		return usage_error(cmd, allow_pid && allow_prog
						? "missing PID or -- PROGRAM"
					: allow_pid ? "missing PID"
						    : "no program to run");
	if (!prog || !allow_prog) {
		if (!allow_pid)
			return usage_error(cmd,
					   "no program to run (put it after "
					   "--)");
		int bad = pid_operand(cmd, argc, argv, &o->pid);
		if (bad)
			return bad;
		return lw_attach_run(o);
	}
	const char *name = argv[optind];
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
			name);
	o->pid = pid;
	/* The watch says how the program ended when it saw it end. */
	char told[512] = "";
	if (o->fate == NULL) {
		o->fate = told;
		o->fate_len = sizeof(told);
	}
	o->fate[0] = '\0';
	int rc = r == -ESRCH ? 0 : lw_attach_run(o);
	int fate_told = o->fate[0] != '\0';
	if (o->fate == told)
		o->fate = NULL;
	if (r == -ESRCH)
		fprintf(stderr,
			"loopwatch: %s exited before it had a loop to "
			"watch\n",
			name);
	/* The watch is over: a program still running (the duration ended,
	 * or it could not be watched) is stopped, as timeout(1) would. */
	int status = 0, stopped = 0;
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGTERM);
		stopped = 1;
		waitpid(pid, &status, 0);
	}
	if (stopped) {
		*status_out = 0;
	} else {
		char how[96];
		if (!fate_told && lw_fate_status_failed(status)) {
			/* It ended as the watch did: told here instead. */
			lw_fate_status(status, how, sizeof(how));
			fprintf(stderr, "loopwatch: %s %s\n", name, how);
			if (o->fate != NULL && o->fate_len > 0)
				snprintf(o->fate, o->fate_len, "%s %s", name,
					 how);
			if (o->fate_failed != NULL)
				*o->fate_failed = 1;
		}
		if (WIFEXITED(status))
			*status_out = WEXITSTATUS(status);
		else if (WIFSIGNALED(status))
			*status_out = 128 + WTERMSIG(status);
	}
	/* run passes on the status of a program that ended at once; check
	 * and record could not do their job. */
	if (r == -ESRCH)
		return allow_pid ? EXIT_USAGE : 0;
	return rc;
}

static int cmd_attach(int argc, char **argv)
{
	const struct command *cmd = find_command("attach");
	struct watch_cli w;
	int status;

	watch_defaults(&w);
	int r = watch_opts(cmd, argc, argv, &w,
			   W_TID | W_JSON | W_BUDGET | W_LIVE);
	if (r == 0) {
		live_interval(&w);
		r = watch_target(cmd, argc, argv, &w.o, &status, 1, 0);
	}
	lw_budget_free(w.budget);
	return r < 0 ? 0 : r;
}

static int cmd_run(int argc, char **argv)
{
	const struct command *cmd = find_command("run");
	struct watch_cli w;
	int status = 0;

	watch_defaults(&w);
	int r = watch_opts(cmd, argc, argv, &w, W_JSON | W_BUDGET | W_LIVE);
	if (r == 0) {
		live_interval(&w);
		r = watch_target(cmd, argc, argv, &w.o, &status, 0, 1);
	}
	lw_budget_free(w.budget);
	if (r < 0)
		return 0;
	return r != 0 ? r : status;
}

/* Can path be written?  Tried before a watch starts (and the program with
 * it), so that a bad path is said first, not after the attach: by opening
 * it as it is, or by creating it and taking it away again.  0, or -1 after
 * one line. */
static int can_write(const char *path, const char *what)
{
	struct stat st;
	int fd, made = 0;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		fd = -1;
	} else if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 &&
		   errno == ENOENT) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		made = fd >= 0;
	}
	if (fd < 0) {
		fprintf(stderr, "loopwatch: cannot write the %s %s: %s\n", what,
			path, strerror(errno));
		return -1;
	}
	close(fd);
	if (made)
		unlink(path);
	return 0;
}

static FILE *open_out(const char *path, const char *what)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		fprintf(stderr, "loopwatch: cannot write the %s %s: %s\n", what,
			path, strerror(errno));
	return f;
}

static int cmd_check(int argc, char **argv)
{
	const struct command *cmd = find_command("check");
	struct watch_cli w;
	lw_model_t *model = NULL;
	int status = 0, rc, ended_badly = 0;
	char fate[512] = "";

	watch_defaults(&w);
	w.o.events = 0;
	w.o.model_out = &model;
	/* A process that crashes or fails while watched fails the check. */
	w.o.fate = fate;
	w.o.fate_len = sizeof(fate);
	w.o.fate_failed = &ended_badly;
	rc = watch_opts(cmd, argc, argv, &w,
			W_BUDGET | W_JSON_FILE | W_JUNIT | W_LIVE);
	if (rc != 0)
		goto out;
	if (w.budget == NULL) {
		rc = usage_error(cmd,
				 "no budgets: give --budgets FILE or --budget "
				 "KEY=VALUE (like --budget callback.max=50ms)");
		goto out;
	}
	int prog = optind > 0 && optind <= argc &&
		   strcmp(argv[optind - 1], "--") == 0;
	if (!prog && optind < argc && w.o.duration_ns == 0) {
		rc = usage_error(cmd, "watching a PID needs --duration (how "
				      "long to watch it)");
		goto out;
	}
	/* Open the outputs first: a path that cannot be written is found
	 * before the run, not after it. */
	FILE *junit = NULL, *json = NULL;
	if (w.junit_path &&
	    (junit = open_out(w.junit_path, "JUnit file")) == NULL) {
		rc = EXIT_USAGE;
		goto out;
	}
	if (w.json_path &&
	    (json = open_out(w.json_path, "JSON file")) == NULL) {
		if (junit)
			fclose(junit);
		rc = EXIT_USAGE;
		goto out;
	}
	rc = watch_target(cmd, argc, argv, &w.o, &status, 1, 1);
	if (rc == 0 && model != NULL) {
		lw_check_t *c = lw_check_eval(model, w.budget);
		if (c == NULL) {
			fprintf(stderr, "loopwatch: cannot allocate memory\n");
			rc = EXIT_USAGE;
		} else {
			printf("\n");
			if (ended_badly)
				c->ended_badly = fate;
			lw_check_print(c, model, stdout);
			rc = lw_check_passed(c) ? 0 : 1;
			if (junit && lw_check_junit(c, model, junit) < 0) {
				fprintf(stderr,
					"loopwatch: cannot write the JUnit "
					"file %s: %s\n",
					w.junit_path, strerror(errno));
				rc = EXIT_USAGE;
			}
			if (json) {
				lw_json_t j;
				struct lw_report_opts ro = { .check = c };
				lw_json_init(&j, json, 1);
				lw_report_json(model, &ro, "check", 0, &j);
				lw_json_end(&j);
			}
			lw_check_free(c);
		}
	} else if (rc == 0) {
		rc = EXIT_USAGE;
	}
	if (junit && fclose(junit) != 0 && rc != EXIT_USAGE) {
		fprintf(stderr,
			"loopwatch: cannot write the JUnit file %s: %s\n",
			w.junit_path, strerror(errno));
		rc = EXIT_USAGE;
	}
	if (json && fclose(json) != 0 && rc != EXIT_USAGE) {
		fprintf(stderr,
			"loopwatch: cannot write the JSON file %s: %s\n",
			w.json_path, strerror(errno));
		rc = EXIT_USAGE;
	}
out:
	lw_model_free(model);
	lw_budget_free(w.budget);
	return rc < 0 ? 0 : rc;
}

static int cmd_record(int argc, char **argv)
{
	const struct command *cmd = find_command("record");
	struct watch_cli w;
	lw_model_t *model = NULL;
	int status = 0, rc;

	watch_defaults(&w);
	w.o.events = 0;
	w.o.summary = 0;
	w.o.stuck_ns = 0;
	w.o.model_out = &model;
	rc = watch_opts(cmd, argc, argv, &w, W_OUTPUT);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (w.o.record_path == NULL)
		return usage_error(cmd, "missing -o FILE (where to write the "
					"recording)");
	if (can_write(w.o.record_path, "recording") < 0)
		return EXIT_USAGE;
	rc = watch_target(cmd, argc, argv, &w.o, &status, 1, 1);
	if (rc == 0 && model != NULL) {
		uint64_t n = 0;
		for (size_t i = 0; i < lw_model_nloops(model); i++)
			n += lw_model_loop_at(model, i)->records;
		printf("recorded %" PRIu64 " callbacks of PID %d (%s), %" PRIu64
		       " records lost, to %s\n",
		       n, (int)lw_model_info(model)->pid,
		       lw_model_info(model)->comm,
		       lw_model_info(model)->records_lost, w.o.record_path);
		printf("read it with: loopwatch report %s (or --json, "
		       "--trace)\n",
		       w.o.record_path);
	}
	lw_model_free(model);
	return rc;
}

/* A recording to read (report, top --replay), or NULL after one line that
 * says why not, and a hint when it is not a recording at all. */
static lw_rec_reader_t *open_recording(const char *path)
{
	char why[512];
	struct stat st;

	/* The reader's own reasons name the path: said here once. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "loopwatch: cannot read %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	if (S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"loopwatch: cannot read %s: it is a directory, not a "
			"recording\n",
			path);
		return NULL;
	}
	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	if (r == NULL) {
		fprintf(stderr, "loopwatch: cannot read %s: %s\n", path, why);
		if (strstr(why, "not a loopwatch recording"))
			fprintf(stderr, "loopwatch: hint: a recording is what "
					"'loopwatch record -o FILE' writes\n");
	}
	return r;
}

/* The model of a recording: everything up to its end, or up to the
 * damage (then *n < 0 and why says what and where). */
static lw_model_t *model_of(lw_rec_reader_t *r, int *n, char *why,
			    size_t whylen)
{
	lw_model_t *m = lw_model_new();
	lw_rec_item_t it;

	if (m == NULL) {
		fprintf(stderr, "loopwatch: cannot allocate memory\n");
		exit(EXIT_USAGE);
	}
	while ((*n = lw_rec_next(r, &it)) > 0)
		lw_model_item(m, &it);
	snprintf(why, whylen, "%s", *n < 0 ? lw_rec_reader_why(r) : "");
	return m;
}

/* ---- top ---- */

static int cmd_top(int argc, char **argv)
{
	const struct command *cmd = find_command("top");
	static const struct option opts[] = {
		{ "min-ms", required_argument, NULL, 'm' },
		{ "tid", required_argument, NULL, 't' },
		{ "refresh-ms", required_argument, NULL, 'r' },
		{ "budget-ms", required_argument, NULL, 'b' },
		{ "stuck-ms", required_argument, NULL, OPT_STUCK },
		{ "replay", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct watch_cli w;
	struct lw_top_opts to = { .refresh_ns = 500000000 };
	const char *replay = NULL;
	char why[512], title[128];
	long long v;
	int c, status;

	watch_defaults(&w);
	w.o.events = 0;
	w.o.summary = 0;
	while ((c = getopt_long(argc, argv, "+:m:t:r:b:R:h", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'm':
		case 'r':
		case 'b':
		case OPT_STUCK:
			v = parse_uint(optarg, 3600000);
			if (v < (c == OPT_STUCK ? 0 : 1))
				return usage_error(cmd,
						   "bad --%s '%s' (a whole "
						   "number of milliseconds%s)",
						   c == 'm'   ? "min-ms"
						   : c == 'r' ? "refresh-ms"
						   : c == 'b' ? "budget-ms"
							      : "stuck-ms",
						   optarg,
						   c == OPT_STUCK
							   ? "; 0: off"
							   : ", at least 1");
			if (c == 'm')
				w.o.min_ns = (uint64_t)v * 1000000u;
			else if (c == 'r')
				to.refresh_ns = (uint64_t)v * 1000000u;
			else if (c == 'b')
				to.budget_ns = (uint64_t)v * 1000000u;
			else
				w.o.stuck_ns = (uint64_t)v * 1000000u;
			break;
		case 't':
			v = parse_uint(optarg, INT_MAX);
			if (v <= 0)
				return usage_error(cmd,
						   "bad --tid '%s' (a thread "
						   "id, a whole number from "
						   "1)",
						   optarg);
			w.o.tid = (pid_t)v;
			break;
		case 'R':
			replay = optarg;
			break;
		case 'h':
			print_command_help(cmd);
			return 0;
		default:
			return option_error(cmd, opts, c, argv);
		}
	}
	if (replay != NULL) {
		if (optind != argc)
			return usage_error(cmd, "--replay takes no PID or "
						"program");
		lw_rec_reader_t *r = open_recording(replay);
		if (r == NULL)
			return EXIT_USAGE;
		int n = 0;
		lw_model_t *m = model_of(r, &n, why, sizeof(why));
		lw_rec_reader_close(r);
		snprintf(title, sizeof(title), "replay of %s: PID %d (%s)",
			 replay, (int)lw_model_info(m)->pid,
			 lw_model_info(m)->comm);
		to.title = title;
		lw_top_t *t;
		char twhy[256];
		if (lw_top_open(&t, &to, twhy, sizeof(twhy)) < 0) {
			fprintf(stderr, "loopwatch: cannot start top: %s\n",
				twhy);
			lw_model_free(m);
			return EXIT_USAGE;
		}
		char ended[1200];
		const char *fate = lw_model_info(m)->fate;
		if (n < 0)
			snprintf(ended, sizeof(ended),
				 "recording damaged, shown up to it: %s", why);
		else if (fate[0])
			/* How the process ended, as the recorder said. */
			snprintf(ended, sizeof(ended), "a recording: %s", fate);
		else
			snprintf(ended, sizeof(ended),
				 "a recording, as it ended");
		lw_top_ended(t, m, ended);
		lw_top_close(t);
		lw_model_free(m);
		return n < 0 ? EXIT_USAGE : 0;
	}
	int prog = optind > 0 && optind <= argc &&
		   strcmp(argv[optind - 1], "--") == 0;
	if (optind >= argc)
		return usage_error(cmd, "missing PID, -- PROGRAM or --replay "
					"FILE");
	/* The operands are checked before the terminal is taken. */
	pid_t pid;
	int bad = prog ? 0 : pid_operand(cmd, argc, argv, &pid);
	if (bad)
		return bad;
	if (prog)
		snprintf(title, sizeof(title), "%s", argv[optind]);
	else
		snprintf(title, sizeof(title), "PID %s", argv[optind]);
	to.title = title;
	lw_top_t *t;
	char twhy[256];
	if (lw_top_open(&t, &to, twhy, sizeof(twhy)) < 0) {
		fprintf(stderr, "loopwatch: cannot start top: %s\n", twhy);
		fprintf(stderr, "loopwatch: hint: 'loopwatch attach' prints "
				"the same as text\n");
		return EXIT_USAGE;
	}
	lw_model_t *model = NULL;
	struct lw_attach_viewer viewer = { .tick = lw_top_tick, .ctx = t };
	char fate[512] = "", ended[600];
	w.o.viewer = &viewer;
	w.o.model_out = &model;
	w.o.fate = fate;
	w.o.fate_len = sizeof(fate);
	int rc = watch_target(cmd, argc, argv, &w.o, &status, 1, 1);
	/* Over by itself (the target ended): the last data stays up, with
	 * how it ended. */
	snprintf(ended, sizeof(ended), "ENDED: %s; q quits",
		 fate[0] ? fate : "the process exited");
	if (rc == 0 && model != NULL && !lw_top_quit(t))
		lw_top_ended(t, model, ended);
	lw_top_close(t);
	lw_model_free(model);
	return rc;
}

/* ---- report ---- */

static int cmd_report(int argc, char **argv)
{
	const struct command *cmd = find_command("report");
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "trace", no_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "budgets", required_argument, NULL, OPT_BUDGETS },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct watch_cli w;
	int json = 0, trace = 0, c, rc = 0;
	const char *out_path = NULL;
	char why[512];

	watch_defaults(&w);
	while ((c = getopt_long(argc, argv, "+:jto:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 't':
			trace = 1;
			break;
		case 'o':
			out_path = optarg;
			break;
		case OPT_BUDGETS:
		case OPT_BUDGET:
			rc = budget_flag(cmd, &w, c == OPT_BUDGETS, optarg);
			if (rc)
				goto done;
			break;
		case 'h':
			print_command_help(cmd);
			goto done;
		default:
			rc = option_error(cmd, opts, c, argv);
			goto done;
		}
	}
	if (json && trace) {
		rc = usage_error(cmd, "--json and --trace exclude each other");
		goto done;
	}
	if (optind >= argc) {
		rc = usage_error(cmd, "missing FILE (a recording)");
		goto done;
	}
	if (optind != argc - 1) {
		rc = usage_error(cmd, "too many arguments ('%s' after FILE)",
				 argv[optind + 1]);
		goto done;
	}
	const char *path = argv[optind];
	lw_rec_reader_t *r = open_recording(path);
	if (r == NULL) {
		rc = EXIT_USAGE;
		goto done;
	}
	FILE *out = stdout;
	if (out_path && (out = open_out(out_path, "report")) == NULL) {
		lw_rec_reader_close(r);
		rc = EXIT_USAGE;
		goto done;
	}
	int bad = 0;
	if (trace) {
		bad = lw_trace_write(r, out, why, sizeof(why)) < 0;
	} else {
		int n = 0;
		lw_model_t *m = model_of(r, &n, why, sizeof(why));
		bad = n < 0;
		lw_check_t *chk = w.budget ? lw_check_eval(m, w.budget) : NULL;
		const lw_model_info_t *info = lw_model_info(m);
		/* As check would have: a process that failed fails it. */
		if (chk && (info->fate_flags & LW_REC_FATE_FAILED))
			chk->ended_badly = info->fate;
		struct lw_report_opts ro = { .check = chk };
		if (json) {
			lw_json_t j;
			lw_json_init(&j, out, 1);
			lw_report_json(m, &ro, "final", 0, &j);
			lw_json_end(&j);
		} else {
			/* The line the recorder said when the process ended,
			 * as it said it. */
			if (info->fate[0])
				fprintf(out, "loopwatch: %s\n", info->fate);
			lw_report_text(m, &ro, out);
			if (chk) {
				fprintf(out, "\n");
				lw_check_print(chk, m, out);
			}
		}
		if (chk && !lw_check_passed(chk))
			rc = 1;
		lw_check_free(chk);
		lw_model_free(m);
	}
	lw_rec_reader_close(r);
	if (out != stdout && fclose(out) != 0) {
		fprintf(stderr, "loopwatch: cannot write the report %s: %s\n",
			out_path, strerror(errno));
		rc = EXIT_USAGE;
	}
	if (bad) {
		/* What came before the damage is reported above. */
		fprintf(stderr, "loopwatch: %s: %s\n", path, why);
		rc = EXIT_USAGE;
	}
done:
	lw_budget_free(w.budget);
	return rc;
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
	  "running now, if one is.  Stops on Ctrl-C, when PID ends (one line "
	  "says\n"
	  "how, as for attach), or after N records.\n\n"
	  "  -o, --oldest        start with the records still in the ring\n"
	  "  -n, --count N       stop after N records\n"
	  "  -i, --interval MS   periodic lines every MS milliseconds "
	  "(1000)\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 2 bad usage or cannot attach.\n" },
	{ "attach", cmd_attach, "[options] PID",
	  "watch a running process: its slow callbacks and what held them up",
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
	  "fast.  Without them (not root) it goes on with the rings alone, "
	  "and says so\n"
	  "in its first lines.  A callback that runs past --stuck-ms is "
	  "reported while\n"
	  "it still runs, with the stack of its thread.  A summary (sites "
	  "worst first,\n"
	  "with count, total, share of busy time, p50/p90/p99/p99.9 and max; "
	  "per loop\n"
	  "utilization, lag, records lost, the defer pool) comes every "
	  "--interval and\n"
	  "at the end.  Stops on Ctrl-C, when PID ends, or after "
	  "--duration.\n\n"
	  "When PID ends, one line says how, and the summary keeps all seen "
	  "until then,\n"
	  "the rings read to their last record: it exited (with its status), "
	  "a signal\n"
	  "killed it (and the callback its loop was in, with how long it had "
	  "run), it\n"
	  "exec'd another program (its rings are gone: close-on-exec), or it "
	  "is gone\n"
	  "and its PID names another process (its start time changed).  A "
	  "child it\n"
	  "forks is told once it runs a loop with a ring of its own, with the "
	  "command\n"
	  "to follow it; the watch stays on PID.\n\n"
	  "  -d, --duration D    stop after D (30 = 30 s; or 500ms, 2m)\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  -t, --tid TID       watch thread TID as a loop thread\n"
	  "      --stuck-ms N    report a callback still running after N ms "
	  "(250; 0: off)\n"
	  "      --interval D    a summary every D (10 s without --duration; "
	  "else at the end)\n"
	  "      --json          summaries as JSON objects, one per line "
	  "(docs/json-schema.md)\n"
	  "      --budgets FILE  mark the sites over these budgets "
	  "(docs/budgets.md)\n"
	  "      --budget K=V    one budget (callback.max=50ms, ...)\n"
	  "  -q, --quiet         do not tell each slow callback, only "
	  "summaries\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, also when PID ended (the line says how), 2 "
	  "bad usage or\n"
	  "cannot attach.\n" },
	{ "run", cmd_run, "[options] [--] PROGRAM [ARGS...]",
	  "start a program and watch it as attach does",
	  "Starts PROGRAM (searched in PATH) with ARGS, waits until it has a "
	  "loop (a\n"
	  "loopwatch ring, or a thread in an event wait; up to 5 s), and "
	  "watches it\n"
	  "as `loopwatch attach` does until it exits.  With --duration, "
	  "PROGRAM is\n"
	  "sent SIGTERM when the time is up.  It shares loopwatch's terminal: "
	  "Ctrl-C\n"
	  "reaches both.  Options as for attach (but --tid).  How PROGRAM "
	  "ended is\n"
	  "told in one line, as attach tells it; here loopwatch is its parent "
	  "and\n"
	  "always knows its status.\n\n"
	  "Exit status: PROGRAM's (128+N when a signal N killed it; 0 when "
	  "stopped by\n"
	  "--duration), 2 when it could not be started or watched.\n" },
	{ "check", cmd_check,
	  "[--budgets FILE] [--budget K=V]... [options] (PID | -- PROGRAM "
	  "[ARGS...])",
	  "the CI gate: run or watch a program and hold it to budgets",
	  "Watches PID for --duration, or starts PROGRAM and watches it until "
	  "it exits\n"
	  "(or --duration ends; it is then stopped), as `loopwatch attach` "
	  "does, and\n"
	  "holds what it saw to the budgets: the longest single callback and "
	  "the p99 of\n"
	  "each site (per-site budgets by glob), the longest blocking syscall "
	  "on a loop\n"
	  "thread (with an allow-list of syscalls per site), the timer lag "
	  "p99, the\n"
	  "loops' utilization.  Prints the summary, then each budget with ok "
	  "or FAIL,\n"
	  "and for each failure the site, the value, the limit and where it "
	  "was set,\n"
	  "and the blocking call or stack sample behind it.  The budget file "
	  "format,\n"
	  "with examples, is in docs/budgets.md.  A process that ends before "
	  "--duration\n"
	  "is held to what was seen until then (one line says how it "
	  "ended); one that\n"
	  "was killed by a signal or exited with a status other than 0 "
	  "fails the check\n"
	  "(FAIL  exit).\n\n"
	  "  --budgets FILE      budgets from FILE (may be given more than "
	  "once)\n"
	  "  --budget K=V        one budget; flags win over files\n"
	  "  -d, --duration D    watch this long (needed with a PID)\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  --stuck-ms N        report a callback still running after N ms "
	  "(250)\n"
	  "  --junit FILE        write the verdict as JUnit XML, one test "
	  "case per budget\n"
	  "  --json=FILE         write the summary and verdict as JSON\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 every budget held, 1 a budget broke or the process "
	  "ended badly,\n"
	  "2 it could not do its job (bad flags or budgets, cannot attach, "
	  "program not\n"
	  "found).\n" },
	{ "record", cmd_record,
	  "-o FILE [options] (PID | -- PROGRAM [ARGS...])",
	  "save the joined event stream of a process to a file",
	  "Watches PID (or starts PROGRAM) as `loopwatch attach` does and "
	  "writes every\n"
	  "callback, every joined kernel event with its symbolized stack, the "
	  "loops'\n"
	  "counters and the blocking-call counts to FILE (format: "
	  "docs/recording.md).\n"
	  "`loopwatch report FILE` reads it back.  Stops on Ctrl-C, when the "
	  "process\n"
	  "ends (one line says how, as for attach; the recording is whole, "
	  "with all\n"
	  "until then), or after --duration; a recorder killed outright "
	  "leaves a cut\n"
	  "file whose contents up to the cut are still readable.\n\n"
	  "  -o, --output FILE   the recording (required)\n"
	  "  -d, --duration D    stop after D\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 2 bad usage, cannot attach, or cannot write "
	  "FILE.\n" },
	{ "top", cmd_top,
	  "[--budget-ms N] [--refresh-ms N] [--min-ms N] (PID | -- PROGRAM "
	  "[ARGS...] | --replay FILE)",
	  "the live dashboard: the callbacks holding up the loop, worst first",
	  "Watches PID (or starts PROGRAM) as `loopwatch attach` does and "
	  "draws, in the\n"
	  "terminal, a header (loops, utilization with its recent history, "
	  "lag, losses,\n"
	  "the sources that are live), the sites worst first with calls/s, "
	  "mean, p99,\n"
	  "max, share of busy time and their blocking calls, a banner while a "
	  "callback\n"
	  "is stuck, and the blocking calls of the selected site with the "
	  "stack of the\n"
	  "longest.  With --replay it shows a recording instead.  Keys: "
	  "arrows move,\n"
	  "Enter shows a site's histogram and stacks, s sorts, / filters, p "
	  "pauses,\n"
	  "[ ] change the budget rows are flagged over, l switches loop, h "
	  "helps, q\n"
	  "quits.  When the process ends, its last data stays on screen, "
	  "marked with\n"
	  "how it ended.\n\n"
	  "  --budget-ms N       flag rows whose longest callback is N ms or "
	  "more\n"
	  "                      (default: the slow threshold)\n"
	  "  --refresh-ms N      redraw at most every N ms (500)\n"
	  "  -m, --min-ms N      slow means at least N ms (1)\n"
	  "  --stuck-ms N        the banner for a callback running past N ms "
	  "(250)\n"
	  "  -t, --tid TID       watch thread TID as a loop thread\n"
	  "  --replay FILE       show a recording (loopwatch record)\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 2 bad usage, no terminal, or cannot "
	  "attach.\n" },
	{ "report", cmd_report,
	  "[--json | --trace] [-o OUT] [--budgets FILE] "
	  "FILE",
	  "read a recording back: the summary, JSON, or a trace",
	  "Reads a recording made by `loopwatch record` and prints the "
	  "summary attach\n"
	  "would have printed, or with --json the same as one JSON object "
	  "(docs/json-\n"
	  "schema.md), or with --trace a Chrome / Perfetto JSON trace "
	  "(callbacks as\n"
	  "slices on each loop thread's track, blocking syscalls nested inside "
	  "them):\n"
	  "open it in https://ui.perfetto.dev or chrome://tracing.  With "
	  "budgets, the\n"
	  "verdict of `check` follows the summary.  A cut or corrupt recording "
	  "is\n"
	  "reported with the offset of the damage, after everything before "
	  "it.\n\n"
	  "  -j, --json          one JSON object\n"
	  "  -t, --trace         a Chrome / Perfetto trace\n"
	  "  -o, --output OUT    write to OUT instead of stdout\n"
	  "  --budgets FILE, --budget K=V   hold the recording to budgets\n"
	  "  -h, --help          this text\n\n"
	  "Exit status: 0 fine, 1 a budget broke, 2 bad usage or a damaged "
	  "recording.\n" },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Bad usage before a command: what, the word (if any), and the commands
 * in the hint. */
static int top_usage_error(const char *what, const char *word)
{
	size_t n = sizeof(commands) / sizeof(commands[0]);

	fprintf(stderr,
		"loopwatch: %s%s%s%s\nloopwatch: hint: usage: loopwatch "
		"COMMAND [ARGS...] with COMMAND one of ",
		what, *word ? " '" : "", word, *word ? "'" : "");
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s%s", commands[i].name,
			i + 2 < n   ? ", "
			: i + 1 < n ? " or "
				    : "");
	fprintf(stderr, " ('loopwatch --help' tells more)\n");
	return EXIT_USAGE;
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
	/* Option errors are said by option_error(), in one line. */
	opterr = 0;
	if (argc < 2)
		return top_usage_error("missing COMMAND", "");
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
		if (argc > 2 && cmd == NULL)
			return top_usage_error("unknown command", argv[2]);
		if (cmd != NULL)
			print_command_help(cmd);
		else
			print_usage(stdout);
		return 0;
	}
	const struct command *cmd = find_command(name);
	if (cmd == NULL)
		return top_usage_error(name[0] == '-' ? "unknown option"
						      : "unknown command",
				       name);
	/* Each command parses its own options from its own name on. */
	optind = 1;
	return cmd->run(argc - 1, argv + 1);
}
