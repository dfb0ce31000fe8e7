/*
 * top.h - `loopwatch top`: the live dashboard, in the manner of htop.  It
 * draws the agent's model (agent/model.h) as the watch runs, from the
 * watch's own thread (agent/attach.h, struct lw_attach_viewer): it reads
 * nothing of the target itself, so it costs the target nothing beyond
 * what the agent already reads.
 *
 * tui/ depends on the agent's model and on ncurses, never the other way
 * round.  One module (this one) owns the terminal: it sets it up, and
 * restores it on every way out (quit, Ctrl-C, the target's exit, an error,
 * and exit() through an atexit handler).
 */
#ifndef LW_TOP_H
#define LW_TOP_H

#include <stddef.h>
#include <stdint.h>

#include "../agent/attach.h"
#include "../agent/model.h"

typedef struct lw_top lw_top_t;

struct lw_top_opts {
	const char *title; /* "PID 1234 (blocky_server)" */
	uint64_t budget_ns; /* rows whose longest callback is over it are
			     * flagged; 0: the slow threshold */
	uint64_t refresh_ns; /* redraw at most this often (500 ms) */
};

/* Take the terminal: 0, or -1 with why ("not a terminal", ...). */
int lw_top_open(lw_top_t **out, const struct lw_top_opts *o, char *why,
		size_t whylen);

/* One tick of the watch: read the keys that came, redraw when due.
 * Returns 1 when the user quit. */
int lw_top_tick(void *top, const lw_model_t *m,
		const struct lw_attach_live *live);

/* The watch is over (the target exited, or a replay is loaded): show the
 * last data, marked with why ("ended: the process exited"), until the
 * user quits. */
void lw_top_ended(lw_top_t *t, const lw_model_t *m, const char *why);

/* 1 when the user quit (q) or a signal (Ctrl-C, SIGTERM, SIGHUP) asked
 * the dashboard to end, rather than the watch ending by itself. */
int lw_top_quit(const lw_top_t *t);

/* Give the terminal back and free; NULL does nothing. */
void lw_top_close(lw_top_t *t);

#endif /* LW_TOP_H */
