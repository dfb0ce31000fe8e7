/*
 * report.h - a model (model.h) in words and in JSON: the summary that
 * `attach` and `run` print while they run and at the end, that `report`
 * prints from a recording, and the `--json` objects (docs/json-schema.md).
 */
#ifndef LW_REPORT_H
#define LW_REPORT_H

#include <stdio.h>

#include "check.h"
#include "json.h"
#include "model.h"

/* The version of the JSON schema, the "schema" member of every object. */
#define LW_REPORT_SCHEMA "loopwatch/1"

struct lw_report_opts {
	size_t top; /* sites shown in the text, worst first (0: 20) */
	uint64_t now_ns; /* the time of a report while running; 0: the end */
	const lw_check_t *check; /* marks the budget-breakers; may be NULL */
};

/* The summary for people: the process and sources, one line per loop
 * (utilization, lag, records and losses, the defer pool), the sites worst
 * first in a table (count, total, share of busy time, p50/p90/p99/p99.9,
 * max), then the blocking calls inside the worst sites with a stack each. */
void lw_report_text(const lw_model_t *m, const struct lw_report_opts *o,
		    FILE *out);

/* The model as one JSON object (docs/json-schema.md): type is "interval"
 * for a report while running, "final" at the end; seq counts them. */
void lw_report_json(const lw_model_t *m, const struct lw_report_opts *o,
		    const char *type, uint64_t seq, lw_json_t *j);

/* A loop's label for a line: "main (tid 1234)". */
void lw_report_loop_label(const lw_model_loop_t *l, char *buf, size_t len);

#endif /* LW_REPORT_H */
