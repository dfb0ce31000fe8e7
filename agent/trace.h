/*
 * trace.h - `loopwatch report --trace FILE`: a recording (recording.h)
 * written as a Chrome / Perfetto JSON trace (the "JSON Object Format" of
 * the Trace Event Format) that a person opens in https://ui.perfetto.dev or
 * chrome://tracing.
 *
 * What comes out:
 *   - the process (`process_name` "COMM (pid N)") and one thread per loop
 *     (`thread_name` the loop's name or "loop tid N", `thread_sort_index`
 *     the loop's id);
 *   - each callback a complete slice (ph "X", cat "callback") on its loop's
 *     thread, named after its site (its name, else its symbol, else
 *     "site#N"), with its kind, site id and, for timers, its lateness;
 *   - each syscall, off-CPU wait and busy span of the kernel probes a slice
 *     on the same thread (cat "syscall", "offcpu", "iteration"), nested
 *     inside the callback (or span) it happened in, with fd, path, return
 *     value, off-CPU time and the stack; each stack sample an instant
 *     (ph "i", s "t");
 *   - per loop, counters (ph "C"): "utilization" in percent (busy over busy
 *     plus idle between two counter records) and "pool queued";
 *   - "metadata": the recording's header, the counts, and whether the
 *     recording was complete (and if not, why).
 *
 * Times: ts and dur are microseconds with at most 3 decimals (exact
 * nanoseconds), ts counted from the header's mono_ns and never negative.
 */
#ifndef LW_TRACE_H
#define LW_TRACE_H

#include <stddef.h>
#include <stdio.h>

#include "recording.h"

/* Write the recording r (freshly opened, nothing read yet) as a Chrome
 * trace to out.  0, or -1 with why = the reader's error, which names the
 * offset (or why writing out failed); the trace written is still valid
 * JSON, of what came before the error. */
int lw_trace_write(lw_rec_reader_t *r, FILE *out, char *why, size_t whylen);

#endif /* LW_TRACE_H */
