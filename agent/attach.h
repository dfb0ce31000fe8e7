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
};

/* Run until the duration elapses, SIGINT or SIGTERM, or the process exits;
 * returns the exit status: 0, or 2 when it cannot attach or write the
 * recording (the reason on stderr). */
int lw_attach_run(const struct lw_attach_opts *o);

#endif /* LW_ATTACH_H */
