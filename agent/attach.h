/*
 * attach.h - the agent's watch of one process: `attach`, `run`, `check` and
 * `record` all run it.  It reads the rings and the kernel probes, joins
 * them on one clock, feeds the joined stream to a model (model.h) and,
 * for `record`, to a recording (recording.h), and tells what it sees: the
 * slow callbacks with what held them up as they come, a callback stuck
 * right now while it is still running, and summaries of the model.
 */
#ifndef LW_ATTACH_H
#define LW_ATTACH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "budget.h"
#include "model.h"

/* A callback stuck right now, as the viewer shows it. */
struct lw_attach_stuck {
	int active; /* a callback is running past its limit now */
	char name[128]; /* its site */
	char kind[16];
	char loop[64];
	uint64_t start_ns; /* when it started (CLOCK_MONOTONIC) */
	char syscall[32]; /* what it sleeps in, "" when on CPU */
	char stack[4096]; /* its thread's stack, "  #0 ...\n" lines, or "" */
};

/* What a live viewer (the dashboard) gets at every tick besides the
 * model. */
struct lw_attach_live {
	uint64_t now_ns;
	int rings, kernel; /* the sources that are live */
	const char *kernel_why; /* why the kernel probes are not, or "" */
	struct lw_attach_stuck stuck;
};

/* A viewer called from the watch's own thread at every tick (10 ms): it
 * may draw and read keys, and returns nonzero to end the watch.  The
 * model is the live one: read it during the call only. */
struct lw_attach_viewer {
	int (*tick)(void *ctx, const lw_model_t *m,
		    const struct lw_attach_live *live);
	void *ctx;
};

struct lw_attach_opts {
	pid_t pid; /* the process */
	/* A loop thread to watch besides the rings' (0: none); without it,
	 * a process without rings is watched on the threads that sit in an
	 * event wait (agent/threads.h). */
	pid_t tid;
	uint64_t duration_ns; /* stop after this long; 0: until interrupted */
	uint64_t min_ns; /* slow: callbacks and syscalls at least this long */
	/* Report a callback still running after this long (0: never); a
	 * budget's callback.max for its site, when lower, wins. */
	uint64_t stuck_ns;
	/* A summary (or a JSON object) every interval; 0: only at the end. */
	uint64_t interval_ns;
	FILE *out; /* the report; NULL means stdout */
	int events; /* tell each slow callback as it comes */
	int json; /* summaries as JSON objects (docs/json-schema.md) */
	int summary; /* print the final summary (text or JSON) */
	const lw_budget_t *budget; /* marks the budget-breakers; may be NULL */
	const char *record_path; /* write the joined stream here (record) */
	/* When set, the model is handed over here at the end instead of
	 * being freed (check holds it against the budgets). */
	lw_model_t **model_out;
	/* A live viewer; with it, nothing is printed but errors. */
	const struct lw_attach_viewer *viewer;
	/* When the watch ends with the process (it exited or was killed,
	 * exec'd, or its PID was reused: fate.h), the line that said so is
	 * copied here, without "loopwatch: "; left alone otherwise. */
	char *fate;
	size_t fate_len;
	/* When set, 1 is stored here if that end was a failure: a signal, or
	 * an exit status other than 0 (lw_fate_failed); 0 otherwise. */
	int *fate_failed;
};

/* Run until the duration elapses, SIGINT or SIGTERM, or the process ends
 * (exits, is killed, execs another program, or is gone with its PID taken
 * by another: one line says which, and the summary keeps everything read
 * until then, its rings read to their last record); returns the exit
 * status: 0, also when the process ended, or 2 when it cannot attach or
 * write the recording (the reason on stderr). */
int lw_attach_run(const struct lw_attach_opts *o);

/* Say on stderr that pid cannot be watched, after lw_rr_attach (ring_reader.h)
 * failed with err and why: one line, and a hint at the fix when there is
 * one (a line of its own).  Returns the exit status, 2. */
int lw_attach_refused(pid_t pid, int err, const char *why);

#endif /* LW_ATTACH_H */
