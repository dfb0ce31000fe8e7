/*
 * test_cli.c - every misuse of the loopwatch command, one table: each row
 * is the arguments, the exit status, and a piece of the one line that must
 * say what is wrong.  An error writes nothing on stdout and one line on
 * stderr, "loopwatch: ...", which may be followed by one more, its hint,
 * "loopwatch: hint: ..." (agent/main.c says so at its top); --help and
 * --version write on stdout only, and exit 0.
 *
 * The bad inputs of check and report that check_bad_input_exits_2
 * (test_check.c) holds to exit 2 and a message are not repeated here.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <sys/stat.h>
#include <sys/wait.h>

#define OUT_CAP (1 << 16)

struct row {
	char *args[12]; /* after "loopwatch", NULL-ended */
	int status;
	const char *says; /* in the first line (stdout for status 0) */
	const char *hint; /* in the hint line; NULL: no hint needed */
};

/* Run one row: the status, where the text went, and how many lines. */
static void check_row(const struct row *r, size_t i)
{
	static char out[OUT_CAP], err[OUT_CAP];
	char *argv[16];
	int n = 0;

	argv[n++] = strdup(lwt_build_path("bin/loopwatch"));
	for (int k = 0; r->args[k] && n < 15; k++)
		argv[n++] = r->args[k];
	argv[n] = NULL;
	int rc = lwt_run_split(argv, out, sizeof(out), err, sizeof(err));
	free(argv[0]);

	char what[256] = "";
	for (int k = 0; r->args[k]; k++)
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 " %s", r->args[k]);
	fprintf(stderr, "row %zu: loopwatch%s -> %d\n%s%s", i, what, rc, out,
		err);
	if (rc != r->status)
		LWT_FAIL("row %zu (loopwatch%s): exit %d, want %d", i, what, rc,
			 r->status);
	if (r->status == 0) {
		if (err[0] != '\0' || strstr(out, r->says) == NULL)
			LWT_FAIL("row %zu (loopwatch%s): want '%s' on stdout "
				 "and nothing on stderr",
				 i, what, r->says);
		return;
	}
	if (out[0] != '\0')
		LWT_FAIL("row %zu (loopwatch%s): an error wrote on stdout", i,
			 what);
	/* One line, perhaps its hint: nothing else. */
	char *nl = strchr(err, '\n');
	if (strncmp(err, "loopwatch: ", 11) != 0 || nl == NULL)
		LWT_FAIL("row %zu (loopwatch%s): stderr is not one "
			 "'loopwatch: ' line",
			 i, what);
	*nl = '\0';
	if (strstr(err, r->says) == NULL)
		LWT_FAIL("row %zu (loopwatch%s): '%s' is not in '%s'", i, what,
			 r->says, err);
	if (strstr(err, "hint:") != NULL)
		LWT_FAIL("row %zu (loopwatch%s): the hint is on the first line",
			 i, what);
	char *second = nl + 1;
	if (*second == '\0') {
		if (r->hint != NULL)
			LWT_FAIL("row %zu (loopwatch%s): no hint, want '%s'", i,
				 what, r->hint);
		return;
	}
	char *nl2 = strchr(second, '\n');
	if (strncmp(second, "loopwatch: hint: ", 17) != 0 || nl2 == NULL ||
	    nl2[1] != '\0')
		LWT_FAIL("row %zu (loopwatch%s): after the first line, more "
			 "than one 'loopwatch: hint: ' line",
			 i, what);
	if (r->hint != NULL && strstr(second, r->hint) == NULL)
		LWT_FAIL("row %zu (loopwatch%s): hint without '%s'", i, what,
			 r->hint);
}

TEST_T(cli_misuse_table, 120)
{
	char dir[] = "/tmp/lwcliXXXXXX", notrec[64], ok_out[64], gone_pid[16];
	char *seed = strdup(LW_SRC_DIR "/fuzz/corpus/recording/seed_sample");

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(notrec, sizeof(notrec), "%s/notes.txt", dir);
	snprintf(ok_out, sizeof(ok_out), "%s/r.lwrec", dir);
	FILE *f = fopen(notrec, "w");
	ASSERT(f != NULL);
	fputs("not a recording\n", f);
	fclose(f);
	snprintf(gone_pid, sizeof(gone_pid), "%d", (int)lwt_gone_pid());
	const char *usage = "usage: loopwatch";

	const struct row rows[] = {
		/* No command, or not one. */
		{ { NULL }, 2, "missing COMMAND", "one of list, dump" },
		{ { "frobnicate" }, 2, "unknown command 'frobnicate'", usage },
		{ { "-x" }, 2, "unknown option '-x'", usage },
		{ { "help", "frobnicate" },
		  2,
		  "unknown command 'frobnicate'",
		  usage },
		{ { "--help" }, 0, "usage: loopwatch COMMAND", NULL },
		{ { "-h" }, 0, "usage: loopwatch COMMAND", NULL },
		{ { "help" }, 0, "usage: loopwatch COMMAND", NULL },
		{ { "help", "attach" }, 0, "usage: loopwatch attach", NULL },
		{ { "--version" }, 0, "loopwatch ", NULL },
		/* list */
		{ { "list", "--help" }, 0, "usage: loopwatch list", NULL },
		{ { "list", "--frobnicate" },
		  2,
		  "unknown option '--frobnicate'",
		  "usage: loopwatch list" },
		{ { "list", "extra" },
		  2,
		  "unexpected argument 'extra'",
		  usage },
		/* dump */
		{ { "dump", "--help" }, 0, "usage: loopwatch dump", NULL },
		{ { "dump" }, 2, "missing PID", "usage: loopwatch dump" },
		{ { "dump", "--count" },
		  2,
		  "option --count needs a value",
		  usage },
		{ { "dump", "--count", "x", "1" },
		  2,
		  "bad --count 'x'",
		  usage },
		{ { "dump", "-i", "0", "1" }, 2, "bad --interval '0'", usage },
		{ { "dump", "abc" }, 2, "bad PID 'abc'", usage },
		{ { "dump", "0" }, 2, "bad PID '0'", usage },
		{ { "dump", "-5" }, 2, "bad PID '-5'", usage },
		{ { "dump", "1", "2" },
		  2,
		  "too many arguments ('2' after",
		  usage },
		{ { "dump", gone_pid },
		  2,
		  "no such process",
		  "loopwatch list" },
		{ { "dump", "2" },
		  2,
		  "it is a kernel thread (kthreadd)",
		  NULL },
		/* attach */
		{ { "attach", "--help" }, 0, "usage: loopwatch attach", NULL },
		{ { "attach" }, 2, "missing PID", "usage: loopwatch attach" },
		{ { "attach", "--frobnicate", "1" },
		  2,
		  "unknown option '--frobnicate'",
		  usage },
		{ { "attach", "-x", "1" }, 2, "unknown option '-x'", usage },
		{ { "attach", "--b", "1" },
		  2,
		  "ambiguous option '--b'",
		  usage },
		{ { "attach", "--duration" },
		  2,
		  "option --duration needs a value",
		  usage },
		{ { "attach", "-d" }, 2, "option -d needs a value", usage },
		{ { "attach", "--quiet=1", "1" },
		  2,
		  "option --quiet takes no value",
		  usage },
		{ { "attach", "--duration", "5x", "1" },
		  2,
		  "bad --duration '5x' (say 30, 30s, 500ms or 2m)",
		  usage },
		{ { "attach", "--duration", "-1", "1" },
		  2,
		  "bad --duration '-1'",
		  usage },
		{ { "attach", "--duration", "99999999999", "1" },
		  2,
		  "bad --duration '99999999999' (more than a year)",
		  usage },
		{ { "attach", "--duration", "400d", "1" },
		  2,
		  "bad --duration '400d'",
		  usage },
		{ { "attach", "--duration", "9000h", "1" },
		  2,
		  "(more than a year)",
		  usage },
		{ { "attach", "--duration", "0ms", "1" },
		  2,
		  "bad --duration '0ms' (it must be more than 0)",
		  usage },
		{ { "attach", "--interval", "5x", "1" },
		  2,
		  "bad --interval '5x'",
		  usage },
		{ { "attach", "--min-ms", "0", "1" },
		  2,
		  "bad --min-ms '0'",
		  usage },
		{ { "attach", "--stuck-ms", "-3", "1" },
		  2,
		  "bad --stuck-ms '-3'",
		  usage },
		{ { "attach", "--tid", "x", "1" }, 2, "bad --tid 'x'", usage },
		{ { "attach", "-o", "x", "1" },
		  2,
		  "attach takes no --output",
		  usage },
		{ { "attach", "--junit", "x", "1" },
		  2,
		  "attach takes no --junit",
		  usage },
		{ { "attach", "--json=x", "1" },
		  2,
		  "--json takes no value here",
		  usage },
		{ { "attach", "--budget", "nosuch.key=1ms", "1" },
		  2,
		  "bad --budget",
		  "docs/budgets.md" },
		{ { "attach", "x1" }, 2, "bad PID 'x1'", usage },
		{ { "attach", "0" }, 2, "bad PID '0'", usage },
		{ { "attach", "-5" }, 2, "bad PID '-5'", usage },
		{ { "attach", "--", "-5" }, 2, "bad PID '-5'", usage },
		{ { "attach", gone_pid },
		  2,
		  "cannot attach to PID",
		  "check the pid with 'loopwatch list' or ps" },
		{ { "attach", "2" },
		  2,
		  "cannot attach to PID 2: it is a kernel thread (kthreadd)",
		  NULL },
		/* run */
		{ { "run", "--help" }, 0, "usage: loopwatch run", NULL },
		{ { "run" }, 2, "no program to run", "usage: loopwatch run" },
		{ { "run", "--" }, 2, "no program to run", usage },
		{ { "run", "--tid", "1", "--", "true" },
		  2,
		  "run takes no --tid",
		  usage },
		{ { "run", "--duration", "1x", "--", "true" },
		  2,
		  "bad --duration '1x'",
		  usage },
		{ { "run", "--", "/nonexistent/program" },
		  2,
		  "cannot run /nonexistent/program: No such file or directory",
		  "check the program's path" },
		{ { "run", "--", dir },
		  2,
		  "it is a directory",
		  "check the program's path" },
		{ { "run", "--", notrec }, 2, "Permission denied", NULL },
		/* top (no terminal here) */
		{ { "top", "--help" }, 0, "usage: loopwatch top", NULL },
		{ { "top" },
		  2,
		  "missing PID, -- PROGRAM or --replay FILE",
		  usage },
		{ { "top", "--refresh-ms", "0", "1" },
		  2,
		  "bad --refresh-ms '0'",
		  usage },
		{ { "top", "--replay" },
		  2,
		  "option --replay needs a value",
		  usage },
		{ { "top", "abc" },
		  2,
		  "bad PID 'abc'",
		  "usage: loopwatch top" },
		{ { "top", "--replay", seed, "1" },
		  2,
		  "--replay takes no PID or program",
		  usage },
		{ { "top", "--replay", notrec },
		  2,
		  "not a loopwatch recording",
		  "loopwatch record -o FILE" },
		{ { "top", "--replay", "/nonexistent.lwrec" },
		  2,
		  "cannot read /nonexistent.lwrec: No such file or directory",
		  NULL },
		{ { "top", "--replay", dir }, 2, "it is a directory", NULL },
		{ { "top", "1" }, 2, "cannot start top: not a terminal", NULL },
		/* check (more in check_bad_input_exits_2) */
		{ { "check", "--help" }, 0, "usage: loopwatch check", NULL },
		{ { "check", "--budget", "callback.max=5ms", "--duration",
		    "1" },
		  2,
		  "missing PID or -- PROGRAM",
		  usage },
		{ { "check", "--budget", "callback.max=5ms", "--duration", "1",
		    "/bin/true" },
		  2,
		  "a program goes after --",
		  usage },
		{ { "check", "--budget", "callback.max=5ms", "--duration", "1",
		    "2" },
		  2,
		  "it is a kernel thread",
		  NULL },
		{ { "check", "--budget", "callback.max=5ms", "--json", "--",
		    "true" },
		  2,
		  "--json needs a file (--json=FILE)",
		  usage },
		{ { "check", "--budget", "callback.max=5ms",
		    "--json=/nonexistent/dir/c.json", "--", "true" },
		  2,
		  "cannot write the JSON file /nonexistent/dir/c.json",
		  NULL },
		/* record */
		{ { "record", "--help" }, 0, "usage: loopwatch record", NULL },
		{ { "record", "-o" }, 2, "option -o needs a value", usage },
		{ { "record", "--", "true" }, 2, "missing -o FILE", usage },
		{ { "record", "-o", ok_out, "--json", "1" },
		  2,
		  "record takes no --json",
		  usage },
		{ { "record", "-o", "/nonexistent/dir/r.lwrec", "--duration",
		    "1", "1" },
		  2,
		  "cannot write the recording /nonexistent/dir/r.lwrec: No "
		  "such file or directory",
		  NULL },
		{ { "record", "-o", dir, "--", "true" },
		  2,
		  "Is a directory",
		  NULL },
		{ { "record", "-o", ok_out, "--duration", "1", gone_pid },
		  2,
		  "no such process",
		  NULL },
		{ { "record", "-o", ok_out, "2" },
		  2,
		  "it is a kernel thread",
		  NULL },
		{ { "record", "-o", ok_out, "--", "/nonexistent/program" },
		  2,
		  "cannot run /nonexistent/program",
		  NULL },
		/* report */
		{ { "report", "--help" }, 0, "usage: loopwatch report", NULL },
		{ { "report" }, 2, "missing FILE (a recording)", usage },
		{ { "report", seed, "extra" }, 2, "too many arguments", usage },
		{ { "report", notrec },
		  2,
		  "cannot read",
		  "a recording is what 'loopwatch record -o FILE' writes" },
		{ { "report", "/nonexistent.lwrec" },
		  2,
		  "cannot read /nonexistent.lwrec: No such file or directory",
		  NULL },
		{ { "report", dir },
		  2,
		  "it is a directory, not a recording",
		  NULL },
		{ { "report", "-o", "/nonexistent/dir/r.txt", seed },
		  2,
		  "cannot write the report /nonexistent/dir/r.txt",
		  NULL },
		{ { "report", "-o", dir, seed }, 2, "Is a directory", NULL },
		{ { "report", "--trace", "-5" },
		  2,
		  "unknown option '-5'",
		  usage },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		check_row(&rows[i], i);
	/* A recording refused before its start leaves no file behind. */
	struct stat st;
	ASSERT(stat(ok_out, &st) < 0 && errno == ENOENT);
	unlink(notrec);
	rmdir(dir);
	free(seed);
}
