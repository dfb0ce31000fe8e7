/*
 * top.c - the dashboard of top.h.
 *
 * One screen, drawn whole at each redraw from the model: a header (the
 * process, the sources, each loop's utilization with a sparkline of its
 * recent history, lag, losses), a banner while a callback is stuck, the
 * table of sites worst first, the blocking calls of the selected site with
 * the stack of the longest, and a footer of keys.  Two full-screen views
 * replace it on demand: the detail of the selected site (its histogram as
 * bars, its calls and stacks) and the help.
 *
 * Redraws happen at most every refresh_ns (and at once after a key), so
 * the dashboard's cost does not grow with the target's rate: the model is
 * read, never copied, and sorting is over the sites, not the callbacks.
 */
#include "../agent/clock.h"
#include "top.h"

#include "../agent/duration.h"
#include "../agent/kevent.h"
#include "../agent/ring_reader.h"

#include <curses.h>
#include <fcntl.h>
#include <inttypes.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define HISTORY 64 /* utilization samples kept for the sparkline */
#define FILTER_MAX 64

enum sort_key { SORT_TOTAL, SORT_MAX, SORT_P99, SORT_CALLS, SORT_NAME, NSORT };
static const char *const sort_names[NSORT] = { "total", "max", "p99", "calls",
					       "name" };

enum view { VIEW_MAIN, VIEW_DETAIL, VIEW_HELP };

enum { PAIR_OVER = 1, PAIR_BANNER, PAIR_HEAD, PAIR_SEL, PAIR_DIM };

/* A row of the table: its site and the value it is sorted by, taken once
 * per draw (a p99 is a walk over the histogram: never per comparison). */
struct row {
	const lw_model_site_t *site;
	uint64_t key;
	size_t index; /* in the model: ties keep the order sites came in */
};

struct lw_top {
	struct lw_top_opts o;
	int color, utf8;
	enum sort_key sort;
	enum view view;
	int paused, quit, editing;
	char filter[FILTER_MAX + 1];
	size_t selected, first; /* selected row, first row shown */
	uint32_t loop; /* loops shown: 0 all, else one id */
	uint64_t last_draw, start_ns;
	const char *ended; /* set once the watch is over */
	double hist[HISTORY]; /* utilization, oldest first */
	size_t nhist;
	uint64_t hist_busy, hist_idle, hist_at; /* the last counters seen */
	/* The sites of the last draw, in order, for the keys. */
	struct row *rows;
	size_t nrows, rows_cap;
	/* What the dashboard itself costs, for LOOPWATCH_TOP_STATS. */
	uint64_t draws, keys, draw_ns, draw_max_ns;
	/* Once the user moved it, the selection follows its site across
	 * re-sorts; until then it stays on the worst. */
	char sel_name[LW_MODEL_NAME_MAX];
	struct lw_attach_live live;
};

/*
 * The terminal, while the dashboard holds it.  What the rest of the
 * program writes to stderr meanwhile (an error that ends the watch, a
 * warning of libbpf's) would land on the dashboard's screen, tear it, and
 * vanish with it when the screen is given back: stderr goes to a memory
 * file instead, and its text is written to the real stderr once the
 * terminal is restored, on every way out.
 */
static int term_active;
static int saved_stderr = -1, held_stderr = -1;

static void hold_stderr(void)
{
	fflush(stderr);
	held_stderr = memfd_create("loopwatch-top-stderr", MFD_CLOEXEC);
	if (held_stderr < 0)
		return; /* then it goes to the screen, as before */
	saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (saved_stderr < 0 || dup2(held_stderr, 2) < 0) {
		close(held_stderr);
		held_stderr = -1;
		if (saved_stderr >= 0)
			close(saved_stderr);
		saved_stderr = -1;
	}
}

/* Put stderr back and write out what it held.  Async-signal-safe: the
 * crash handler calls it. */
static void give_back_stderr(void)
{
	char buf[4096];
	ssize_t n;
	off_t off = 0;

	if (held_stderr < 0)
		return;
	dup2(saved_stderr, 2);
	while ((n = pread(held_stderr, buf, sizeof(buf), off)) > 0) {
		if (write(2, buf, (size_t)n) != n)
			break;
		off += n;
	}
	close(held_stderr);
	close(saved_stderr);
	held_stderr = saved_stderr = -1;
}

/* Give the terminal back: on close, and on exit() through atexit. */
static void restore_at_exit(void)
{
	if (term_active) {
		endwin();
		term_active = 0;
	}
	fflush(stderr);
	give_back_stderr();
}

/*
 * A fatal signal while the terminal is ours (a crash of the dashboard or
 * of the agent under it): give the terminal back, say so, and die of the
 * same signal, which SA_RESETHAND has made the default again.  endwin() is
 * not async-signal-safe; htop makes the same trade, since a process that
 * is about to die anyway is better off leaving a usable terminal.
 */
static void on_fatal(int sig)
{
	const char *msg = sig == SIGSEGV   ? "loopwatch: top: fatal signal "
					     "SIGSEGV; the terminal was "
					     "restored\n"
			  : sig == SIGBUS  ? "loopwatch: top: fatal signal "
					     "SIGBUS; the terminal was "
					     "restored\n"
			  : sig == SIGABRT ? "loopwatch: top: aborted; the "
					     "terminal was restored\n"
					   : "loopwatch: top: fatal signal; "
					     "the terminal was restored\n";

	if (term_active) {
		term_active = 0;
		endwin();
	}
	give_back_stderr();
	if (write(2, msg, strlen(msg)) < 0) {
		/* nothing more can be said */
	}
	raise(sig);
}

static volatile sig_atomic_t top_signal;

static void on_signal(int sig)
{
	top_signal = sig;
}

static const char *dur(uint64_t ns, char *buf, size_t len)
{
	lw_duration_format(ns, buf, len);
	return buf;
}

int lw_top_open(lw_top_t **out, const struct lw_top_opts *o, char *why,
		size_t whylen)
{
	static int registered;
	lw_top_t *t;

	if (!isatty(0) || !isatty(1)) {
		snprintf(why, whylen,
			 "not a terminal (top draws on one; use "
			 "attach for text)");
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	t->o = *o;
	if (t->o.refresh_ns == 0)
		t->o.refresh_ns = 500000000;
	setlocale(LC_ALL, "");
	t->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	if (!registered) {
		atexit(restore_at_exit);
		registered = 1;
	}
	if (newterm(NULL, stdout, stdin) == NULL) {
		snprintf(why, whylen, "cannot set up the terminal (TERM=%s)",
			 getenv("TERM") ? getenv("TERM") : "");
		free(t);
		return -1;
	}
	term_active = 1;
	hold_stderr();
	cbreak(); /* Ctrl-C stays a signal: the watch ends cleanly */
	set_escdelay(25); /* Esc is a key here, not the start of one */
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	curs_set(0);
	mousemask(BUTTON1_CLICKED | BUTTON1_DOUBLE_CLICKED | BUTTON1_PRESSED,
		  NULL);
	t->color = has_colors() && getenv("NO_COLOR") == NULL;
	if (t->color) {
		start_color();
		use_default_colors();
		init_pair(PAIR_OVER, COLOR_RED, -1);
		init_pair(PAIR_BANNER, COLOR_WHITE, COLOR_RED);
		init_pair(PAIR_HEAD, COLOR_CYAN, -1);
		init_pair(PAIR_SEL, COLOR_BLACK, COLOR_CYAN);
		init_pair(PAIR_DIM, COLOR_BLUE, -1);
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	struct sigaction fatal = { .sa_handler = on_fatal,
				   .sa_flags = SA_RESETHAND | SA_NODEFER };
	sigemptyset(&fatal.sa_mask);
	static const int fatal_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL,
					     SIGABRT };
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(int); i++)
		sigaction(fatal_signals[i], &fatal, NULL);
	t->start_ns = lw_now_ns();
	*out = t;
	return 0;
}

int lw_top_quit(const lw_top_t *t)
{
	return t->quit || top_signal;
}

/* With LOOPWATCH_TOP_STATS=FILE, what the dashboard itself cost goes to
 * FILE when it closes (bench/top.sh reads it): how many times it drew, in
 * how long, and how long a draw took. */
static void write_stats(const lw_top_t *t)
{
	const char *path = getenv("LOOPWATCH_TOP_STATS");
	FILE *f;

	if (path == NULL || path[0] == '\0' || (f = fopen(path, "w")) == NULL)
		return;
	fprintf(f,
		"draws %" PRIu64 " keys %" PRIu64 " seconds %.3f draw_mean_ns "
		"%" PRIu64 " draw_max_ns %" PRIu64 "\n",
		t->draws, t->keys, (double)(lw_now_ns() - t->start_ns) / 1e9,
		t->draws ? t->draw_ns / t->draws : 0, t->draw_max_ns);
	fclose(f);
}

void lw_top_close(lw_top_t *t)
{
	if (t == NULL)
		return;
	restore_at_exit();
	write_stats(t);
	free(t->rows);
	free(t);
}

/* ---- drawing helpers ---- */

static void style_on(lw_top_t *t, int pair, int attrs)
{
	if (t->color && pair)
		attron(COLOR_PAIR(pair));
	if (attrs)
		attron(attrs);
}

static void style_off(lw_top_t *t, int pair, int attrs)
{
	if (t->color && pair)
		attroff(COLOR_PAIR(pair));
	if (attrs)
		attroff(attrs);
}

/* Text at (y, 0), cut to the width, the rest of the line cleared. */
static void line_at(int y, const char *s)
{
	move(y, 0);
	clrtoeol();
	addnstr(s, COLS);
}

/* A sparkline of the utilization history: eight heights in UTF-8, or
 * ASCII where the terminal has no UTF-8. */
static void sparkline(lw_top_t *t, char *buf, size_t len, size_t width)
{
	static const char *const bars[8] = { "▁", "▂", "▃", "▄",
					     "▅", "▆", "▇", "█" };
	static const char ascii[] = "_.-=+*#@";
	size_t n = t->nhist < width ? t->nhist : width, k = 0;

	buf[0] = '\0';
	for (size_t i = t->nhist - n; i < t->nhist && k + 4 < len; i++) {
		int level = (int)(t->hist[i] * 7.99);
		level = level < 0 ? 0 : level > 7 ? 7 : level;
		if (t->utf8) {
			size_t w = strlen(bars[level]);
			memcpy(buf + k, bars[level], w);
			k += w;
		} else {
			buf[k++] = ascii[level];
		}
	}
	buf[k] = '\0';
}

static uint64_t site_value(const lw_model_site_t *s, enum sort_key k)
{
	switch (k) {
	case SORT_MAX:
		return lw_hist_max(&s->hist);
	case SORT_P99:
		return lw_hist_quantile(&s->hist, 0.99);
	case SORT_CALLS:
		return lw_hist_count(&s->hist);
	default:
		return lw_hist_sum(&s->hist);
	}
}

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? 1 : -1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_rows_by_name(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return strcmp(x->site->name, y->site->name);
}

/* The rows: the sites of the loops shown that match the filter and have
 * callbacks, in the sort order; the selection follows its site. */
static void build_rows(lw_top_t *t, const lw_model_t *m)
{
	size_t n = lw_model_nsites(m);

	if (n > t->rows_cap) {
		struct row *r = realloc(t->rows, n * sizeof(*r));
		if (r == NULL)
			return;
		t->rows = r;
		t->rows_cap = n;
	}
	t->nrows = 0;
	for (size_t i = 0; i < n; i++) {
		const lw_model_site_t *s = lw_model_site_at(m, i);
		if (lw_hist_count(&s->hist) == 0)
			continue;
		if (t->loop && s->loop_id != t->loop)
			continue;
		if (t->filter[0] && strcasestr(s->name, t->filter) == NULL)
			continue;
		t->rows[t->nrows++] = (struct row){
			s, t->sort == SORT_NAME ? 0 : site_value(s, t->sort), i
		};
	}
	if (t->nrows > 1)
		qsort(t->rows, t->nrows, sizeof(*t->rows),
		      t->sort == SORT_NAME ? cmp_rows_by_name : cmp_rows);
	if (t->sel_name[0] == '\0')
		t->selected = 0;
	else
		for (size_t i = 0; i < t->nrows; i++)
			if (strcmp(t->rows[i].site->name, t->sel_name) == 0) {
				t->selected = i;
				break;
			}
	if (t->selected >= t->nrows)
		t->selected = t->nrows ? t->nrows - 1 : 0;
}

static int over_budget(lw_top_t *t, const lw_model_t *m,
		       const lw_model_site_t *s)
{
	uint64_t b = t->o.budget_ns ? t->o.budget_ns : lw_model_info(m)->min_ns;
	return b && lw_hist_max(&s->hist) >= b;
}

/* Sample the utilization of the loops shown for the sparkline. */
static void sample_util(lw_top_t *t, const lw_model_t *m)
{
	uint64_t busy = 0, idle = 0;

	for (size_t i = 0; i < lw_model_nloops(m); i++) {
		const lw_model_loop_t *l = lw_model_loop_at(m, i);
		if (!l->have_counters || (t->loop && l->id != t->loop))
			continue;
		busy += l->last.busy_ns;
		idle += l->last.idle_ns;
	}
	if (busy + idle == 0 || busy < t->hist_busy || idle < t->hist_idle)
		goto out;
	uint64_t db = busy - t->hist_busy, di = idle - t->hist_idle;
	if (t->hist_at != 0 && db + di > 0) {
		if (t->nhist == HISTORY) {
			memmove(t->hist, t->hist + 1,
				(HISTORY - 1) * sizeof(t->hist[0]));
			t->nhist--;
		}
		t->hist[t->nhist++] = (double)db / (double)(db + di);
	}
out:
	t->hist_busy = busy;
	t->hist_idle = idle;
	t->hist_at = 1;
}

/* ---- the main view ---- */

static int draw_header(lw_top_t *t, const lw_model_t *m)
{
	const lw_model_info_t *info = lw_model_info(m);
	const struct lw_attach_live *lv = &t->live;
	char line[512], a[32], b[32], spark[HISTORY * 4 + 1];
	int y = 0;

	style_on(t, PAIR_HEAD, A_BOLD);
	snprintf(line, sizeof(line),
		 "loopwatch top - %s   %s%s   refresh %.1f s%s", t->o.title,
		 lv->rings || (info->sources & LW_REC_SRC_RINGS) ? "rings" : "",
		 lv->kernel || (info->sources & LW_REC_SRC_KPROBES)
			 ? (lv->rings ? " + kernel probes" : "kernel probes")
			 : " (kernel probes off)",
		 (double)t->o.refresh_ns / 1e9, t->paused ? "   [PAUSED]" : "");
	line_at(y++, line);
	style_off(t, PAIR_HEAD, A_BOLD);
	if (t->ended) {
		style_on(t, PAIR_BANNER, A_BOLD);
		snprintf(line, sizeof(line), " %s ", t->ended);
		line_at(y++, line);
		style_off(t, PAIR_BANNER, A_BOLD);
	}
	sparkline(t, spark, sizeof(spark), 20);
	for (size_t i = 0; i < lw_model_nloops(m) && y < 4; i++) {
		const lw_model_loop_t *l = lw_model_loop_at(m, i);
		double u = lw_model_utilization(l);
		char util[16] = "n/a";
		if (t->loop && l->id != t->loop)
			continue;
		if (u >= 0)
			snprintf(util, sizeof(util), "%.1f%%", u * 100);
		int n = snprintf(line, sizeof(line), "loop %.40s: util %s %s",
				 l->name, util, i == 0 || t->loop ? spark : "");
		if (l->lag->count > 0)
			n += snprintf(line + n, sizeof(line) - (size_t)n,
				      "  lag p50 %s p99 %s",
				      dur(lw_hist_quantile(l->lag, 0.5), a,
					  sizeof(a)),
				      dur(lw_hist_quantile(l->lag, 0.99), b,
					  sizeof(b)));
		snprintf(line + n, sizeof(line) - (size_t)n,
			 "  lost %" PRIu64 " records, %" PRIu64 " kernel",
			 l->have_counters ? l->last.lost_records : 0,
			 info->kernel_lost);
		line_at(y++, line);
	}
	if (lw_model_nloops(m) == 0)
		line_at(y++, "no loop yet");
	return y;
}

/* The banner of a callback stuck now, with the top of its stack. */
static int draw_banner(lw_top_t *t, int y, int room)
{
	const struct lw_attach_stuck *sk = &t->live.stuck;
	char line[512], d[32];

	if (!sk->active || t->ended)
		return y;
	uint64_t so_far = t->live.now_ns > sk->start_ns
				  ? t->live.now_ns - sk->start_ns
				  : 0;
	snprintf(line, sizeof(line),
		 " STUCK NOW: %s (%s) on loop %s, running for %s%s%s ",
		 sk->name, sk->kind, sk->loop, dur(so_far, d, sizeof(d)),
		 sk->syscall[0] ? ", asleep in " : ", on CPU", sk->syscall);
	style_on(t, PAIR_BANNER, A_BOLD | (t->color ? 0 : A_REVERSE));
	line_at(y++, line);
	style_off(t, PAIR_BANNER, A_BOLD | (t->color ? 0 : A_REVERSE));
	/* Its stack, as much as the room allows. */
	int shown = 0;
	for (const char *s = sk->stack; *s && shown < room; shown++) {
		const char *eol = strchr(s, '\n');
		size_t n = eol ? (size_t)(eol - s) : strlen(s);
		snprintf(line, sizeof(line), "%.*s", (int)n, s);
		line_at(y++, line);
		if (!eol)
			break;
		s = eol + 1;
	}
	return y;
}

static void draw_table(lw_top_t *t, const lw_model_t *m, int y, int bottom)
{
	char line[512], a[32], b[32], c[32], share[16], rate[16];
	double secs =
		(double)(t->live.now_ns > lw_model_info(m)->start_ns
				 ? t->live.now_ns - lw_model_info(m)->start_ns
				 : 1) /
		1e9;

	style_on(t, PAIR_HEAD, A_REVERSE);
	snprintf(line, sizeof(line), "  %-28s %-9s %8s %9s %9s %9s %6s %s",
		 t->sort == SORT_NAME ? "SITE*" : "SITE", "KIND",
		 t->sort == SORT_CALLS ? "CALLS/S*" : "CALLS/S", "MEAN",
		 t->sort == SORT_P99 ? "P99*" : "P99",
		 t->sort == SORT_MAX ? "MAX*" : "MAX",
		 t->sort == SORT_TOTAL ? "SHARE*" : "SHARE", "BLOCKING");
	line_at(y++, line);
	style_off(t, PAIR_HEAD, A_REVERSE);
	int height = bottom - y;
	if (height < 1)
		return;
	if (t->selected < t->first)
		t->first = t->selected;
	if (t->selected >= t->first + (size_t)height)
		t->first = t->selected - (size_t)height + 1;
	for (int r = 0; r < height; r++) {
		size_t i = t->first + (size_t)r;
		move(y + r, 0);
		clrtoeol();
		if (i >= t->nrows)
			continue;
		const lw_model_site_t *s = t->rows[i].site;
		double sh = lw_model_share(m, s);
		int over = over_budget(t, m, s);
		char blocking[64] = "";
		const lw_model_call_t *k = lw_model_longest_call(s);
		if (k != NULL) {
			snprintf(blocking, sizeof(blocking), "%s%s", k->syscall,
				 s->ncalls > 1 ? " +" : "");
		} else if (s->samples > 0) {
			snprintf(blocking, sizeof(blocking), "(on CPU)");
		}
		if (sh >= 0)
			snprintf(share, sizeof(share), "%.1f%%", sh * 100);
		else
			snprintf(share, sizeof(share), "-");
		snprintf(rate, sizeof(rate), "%.1f",
			 (double)lw_hist_count(&s->hist) / secs);
		snprintf(line, sizeof(line),
			 "%c %-28.28s %-9.9s %8s %9s %9s %9s %6s %s",
			 over ? '!' : ' ', s->name,
			 s->kind == LW_MODEL_KIND_ITERATION
				 ? "iteration"
				 : lw_rr_kind_name(s->kind),
			 rate, dur(lw_hist_mean(&s->hist), a, sizeof(a)),
			 dur(lw_hist_quantile(&s->hist, 0.99), b, sizeof(b)),
			 dur(lw_hist_max(&s->hist), c, sizeof(c)), share,
			 blocking);
		int sel = i == t->selected;
		int pair = sel ? PAIR_SEL : over ? PAIR_OVER : 0;
		int attrs = sel && !t->color ? A_REVERSE : over ? A_BOLD : 0;
		style_on(t, pair, attrs);
		addnstr(line, COLS);
		if (sel)
			for (int x = (int)strlen(line); x < COLS; x++)
				addch(' ');
		style_off(t, pair, attrs);
	}
}

/* The blocking calls of the selected site, and the longest one's stack. */
static void draw_calls(lw_top_t *t, int y, int bottom)
{
	char line[512], a[32], b[32];

	if (y >= bottom)
		return;
	style_on(t, PAIR_HEAD, A_REVERSE);
	snprintf(line, sizeof(line), "  blocking calls in %s",
		 t->nrows ? t->rows[t->selected].site->name : "-");
	line_at(y++, line);
	style_off(t, PAIR_HEAD, A_REVERSE);
	for (int r = y; r < bottom; r++) {
		move(r, 0);
		clrtoeol();
	}
	if (t->nrows == 0)
		return;
	const lw_model_site_t *s = t->rows[t->selected].site;
	const lw_model_call_t *longest = lw_model_longest_call(s);
	for (size_t i = 0; i < s->ncalls && y < bottom; i++) {
		const lw_model_call_t *k = &s->calls[i];
		const char *fk = lw_kev_fd_kind_name(k->fd_kind);
		snprintf(line, sizeof(line),
			 "  %-18s %-14s x%-7" PRIu64 " max %-9s total %s",
			 k->syscall, fk[0] ? fk : "-", lw_model_call_count(k),
			 dur(lw_model_call_max(k), a, sizeof(a)),
			 dur(lw_model_call_total(k), b, sizeof(b)));
		line_at(y++, line);
	}
	const lw_model_stack_t *st = longest ? &longest->stack : &s->sample;
	if (st->n > 0 && y < bottom) {
		style_on(t, PAIR_DIM, 0);
		line_at(y++, longest ? "  stack of the longest:"
				     : "  on CPU, a stack sample:");
		style_off(t, PAIR_DIM, 0);
	}
	for (uint32_t i = 0; i < st->n && y < bottom; i++) {
		snprintf(line, sizeof(line), "    #%-2u %s", i, st->frames[i]);
		line_at(y++, line);
	}
}

static void draw_footer(lw_top_t *t)
{
	char line[512], bud[32];

	if (t->editing) {
		snprintf(line, sizeof(line),
			 "Filter: %s_   (Enter: apply, Esc: clear)", t->filter);
	} else {
		uint64_t b = t->o.budget_ns;
		dur(b, bud, sizeof(bud));
		snprintf(line, sizeof(line),
			 "q Quit  s Sort:%s  / Filter%s%s  p %s  Enter Detail  "
			 "l Loop  [ ] Budget:%s  h Help",
			 sort_names[t->sort], t->filter[0] ? ":" : "",
			 t->filter, t->paused ? "Resume" : "Pause",
			 b ? bud : "slow");
	}
	style_on(t, PAIR_HEAD, A_REVERSE);
	line_at(LINES - 1, line);
	for (int x = (int)strlen(line); x < COLS; x++)
		addch(' ');
	style_off(t, PAIR_HEAD, A_REVERSE);
}

static void draw_main(lw_top_t *t, const lw_model_t *m)
{
	int y = draw_header(t, m);
	int bottom = LINES - 1;
	/* The calls panel takes a third of a tall screen, none of a short
	 * one: the table comes first. */
	int panel = LINES >= 30 ? LINES / 3 : LINES >= 22 ? 5 : 0;
	y = draw_banner(t, y, LINES >= 30 ? 4 : 1);
	draw_table(t, m, y, bottom - panel);
	if (panel)
		draw_calls(t, bottom - panel, bottom);
	draw_footer(t);
}

/* ---- the detail and help views ---- */

struct bars {
	uint64_t lo[48], hi[48], count[48];
	int n;
};

/* Fold the histogram's buckets into powers of two for the bars. */
static int fold(void *ctx, uint64_t lo, uint64_t hi, uint64_t count)
{
	struct bars *b = ctx;
	int e = 63 - __builtin_clzll(lo | 1);
	uint64_t plo = lo < 2 ? 0 : (uint64_t)1 << e;

	(void)hi;
	if (b->n > 0 && b->lo[b->n - 1] == plo) {
		b->count[b->n - 1] += count;
		return 0;
	}
	if (b->n == 48)
		return 1;
	b->lo[b->n] = plo;
	b->hi[b->n] = plo ? plo * 2 : 2;
	b->count[b->n++] = count;
	return 0;
}

static void draw_detail(lw_top_t *t, const lw_model_t *m)
{
	char line[512], a[32], b[32], c[32], d[32], e[32];
	int y = 0;

	erase();
	if (t->nrows == 0) {
		line_at(0, "no site selected (Esc: back)");
		return;
	}
	const lw_model_site_t *s = t->rows[t->selected].site;
	static const double qs[5] = { 0.5, 0.9, 0.99, 0.999, 1 };
	uint64_t q[5];
	lw_hist_quantiles(&s->hist, qs, q, 5);
	style_on(t, PAIR_HEAD, A_BOLD);
	snprintf(line, sizeof(line), "%s  (%s%s%s)   Esc/Enter: back", s->name,
		 lw_rr_kind_name(s->kind), s->func[0] ? ", " : "", s->func);
	line_at(y++, line);
	style_off(t, PAIR_HEAD, A_BOLD);
	snprintf(line, sizeof(line),
		 "%" PRIu64 " calls, total %s; p50 %s  p90 %s  p99 %s  "
		 "p99.9 %s  max %s",
		 lw_hist_count(&s->hist), dur(lw_hist_sum(&s->hist), a, 32),
		 dur(q[0], b, 32), dur(q[1], c, 32), dur(q[2], d, 32),
		 dur(q[3], e, 32), dur(q[4], a, 32));
	line_at(y++, line);
	y++;
	struct bars bars = { .n = 0 };
	lw_hist_each(&s->hist, fold, &bars);
	uint64_t most = 1;
	for (int i = 0; i < bars.n; i++)
		if (bars.count[i] > most)
			most = bars.count[i];
	int width = COLS - 40 > 10 ? COLS - 40 : 10;
	int room = LINES / 2 - y > 3 ? LINES / 2 - y : 3;
	int from = bars.n > room ? bars.n - room : 0;
	for (int i = from; i < bars.n && y < LINES - 2; i++) {
		int w = (int)((double)bars.count[i] * width / (double)most);
		if (w == 0 && bars.count[i] > 0)
			w = 1;
		snprintf(line, sizeof(line), "%9s - %-9s %9" PRIu64 " ",
			 dur(bars.lo[i], a, 32), dur(bars.hi[i], b, 32),
			 bars.count[i]);
		move(y, 0);
		clrtoeol();
		addnstr(line, COLS);
		style_on(t, PAIR_OVER, 0);
		for (int k = 0; k < w && (int)strlen(line) + k < COLS; k++)
			addstr(t->utf8 ? "█" : "#");
		style_off(t, PAIR_OVER, 0);
		y++;
	}
	y++;
	(void)m;
	draw_calls(t, y, LINES - 1);
	draw_footer(t);
}

static void draw_help(lw_top_t *t)
{
	static const char *const lines[] = {
		"loopwatch top: the callbacks that hold up the loop, worst "
		"first",
		"",
		"  Up/Down, PgUp/PgDn, Home/End   move the selection",
		"  Enter, d                       detail of the selected site: "
		"histogram, calls, stacks",
		"  s, < >                         sort by total share, max, "
		"p99, calls/s, name",
		"  /                              filter sites by name (Esc "
		"clears)",
		"  p, space                       pause / resume the redraws",
		"  [ ]                            halve / double the budget "
		"rows are flagged over",
		"  l                              switch loop (all, then each)",
		"  mouse click                    select a row (double click: "
		"detail)",
		"  h, ?, F1                       this help",
		"  q, F10                         quit",
		"",
		"A row marked ! took longer than the budget (the slow "
		"threshold "
		"until",
		"changed with [ and ]). STUCK NOW: a callback is running past "
		"its limit.",
		"",
		"Any key: back",
	};
	erase();
	for (size_t i = 0;
	     i < sizeof(lines) / sizeof(lines[0]) && (int)i < LINES - 1; i++)
		line_at((int)i, lines[i]);
	draw_footer(t);
}

static void draw(lw_top_t *t, const lw_model_t *m)
{
	uint64_t t0 = lw_now_ns();

	if (LINES < 10 || COLS < 40) {
		erase();
		line_at(0, "terminal too small for loopwatch top (40x10 at "
			   "least); q quits");
	} else {
		build_rows(t, m);
		if (t->view == VIEW_HELP)
			draw_help(t);
		else if (t->view == VIEW_DETAIL)
			draw_detail(t, m);
		else
			draw_main(t, m);
	}
	refresh();
	t->last_draw = lw_now_ns();
	t->draws++;
	t->draw_ns += t->last_draw - t0;
	if (t->last_draw - t0 > t->draw_max_ns)
		t->draw_max_ns = t->last_draw - t0;
}

/* ---- keys ---- */

static void select_row(lw_top_t *t, long to)
{
	if (t->nrows == 0)
		return;
	if (to < 0)
		to = 0;
	if ((size_t)to >= t->nrows)
		to = (long)t->nrows - 1;
	t->selected = (size_t)to;
	snprintf(t->sel_name, sizeof(t->sel_name), "%s",
		 t->rows[t->selected].site->name);
}

static void next_loop(lw_top_t *t, const lw_model_t *m)
{
	size_t n = lw_model_nloops(m);
	if (t->loop == 0) {
		t->loop = n ? lw_model_loop_at(m, 0)->id : 0;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (lw_model_loop_at(m, i)->id == t->loop) {
			t->loop =
				i + 1 < n ? lw_model_loop_at(m, i + 1)->id : 0;
			return;
		}
	t->loop = 0;
}

/* One key; returns 1 when it asks for a redraw. */
static int key(lw_top_t *t, const lw_model_t *m, int c)
{
	int page = LINES > 12 ? LINES / 2 : 5;

	if (t->editing) {
		size_t n = strlen(t->filter);
		if (c == '\n' || c == KEY_ENTER)
			t->editing = 0;
		else if (c == 27) {
			t->filter[0] = '\0';
			t->editing = 0;
		} else if ((c == KEY_BACKSPACE || c == 127 || c == 8) && n)
			t->filter[n - 1] = '\0';
		else if (c >= 32 && c < 127 && n < FILTER_MAX) {
			t->filter[n] = (char)c;
			t->filter[n + 1] = '\0';
		}
		t->selected = 0;
		t->sel_name[0] = '\0';
		return 1;
	}
	if (t->view == VIEW_HELP) {
		t->view = VIEW_MAIN;
		return 1;
	}
	switch (c) {
	case 'q':
	case 'Q':
	case KEY_F(10):
		if (t->view == VIEW_DETAIL) {
			t->view = VIEW_MAIN;
			return 1;
		}
		t->quit = 1;
		return 0;
	case KEY_UP:
	case 'k':
		select_row(t, (long)t->selected - 1);
		return 1;
	case KEY_DOWN:
	case 'j':
		select_row(t, (long)t->selected + 1);
		return 1;
	case KEY_PPAGE:
		select_row(t, (long)t->selected - page);
		return 1;
	case KEY_NPAGE:
		select_row(t, (long)t->selected + page);
		return 1;
	case KEY_HOME:
		select_row(t, 0);
		return 1;
	case KEY_END:
		select_row(t, (long)t->nrows - 1);
		return 1;
	case '\n':
	case KEY_ENTER:
	case 'd':
		t->view = t->view == VIEW_DETAIL ? VIEW_MAIN : VIEW_DETAIL;
		return 1;
	case 27:
		t->view = VIEW_MAIN;
		return 1;
	case 's':
	case '>':
		t->sort = (t->sort + 1) % NSORT;
		return 1;
	case '<':
		t->sort = (t->sort + NSORT - 1) % NSORT;
		return 1;
	case '/':
		t->editing = 1;
		return 1;
	case 'p':
	case ' ':
		t->paused = !t->paused;
		return 1;
	case '[':
	case ']': {
		uint64_t b = t->o.budget_ns ? t->o.budget_ns
					    : lw_model_info(m)->min_ns;
		if (b == 0)
			b = 1000000;
		b = c == ']' ? b * 2 : b / 2;
		t->o.budget_ns = b < 1000 ? 1000 : b;
		return 1;
	}
	case 'l':
		next_loop(t, m);
		t->selected = 0;
		t->sel_name[0] = '\0';
		return 1;
	case 'h':
	case '?':
	case KEY_F(1):
		t->view = VIEW_HELP;
		return 1;
	case KEY_RESIZE:
		return 1;
	case KEY_MOUSE: {
		MEVENT ev;
		if (getmouse(&ev) != OK)
			return 0;
		/* Rows are found by their text on screen: the table's
		 * first row is the line after its header. */
		for (int y = 0; y < LINES - 1; y++) {
			char buf[8];
			mvinnstr(y, 2, buf, 4);
			if (strncmp(buf, "SITE", 4) == 0) {
				long row = (long)t->first + (ev.y - y - 1);
				if (ev.y > y && row < (long)t->nrows) {
					select_row(t, row);
					if (ev.bstate & BUTTON1_DOUBLE_CLICKED)
						t->view = VIEW_DETAIL;
				}
				break;
			}
		}
		return 1;
	}
	default:
		return 0;
	}
}

/* Read every key waiting; 1 if one asked for a redraw. */
static int read_keys(lw_top_t *t, const lw_model_t *m)
{
	int c, redraw = 0;

	while ((c = getch()) != ERR) {
		t->keys++;
		redraw |= key(t, m, c);
	}
	return redraw;
}

int lw_top_tick(void *top, const lw_model_t *m,
		const struct lw_attach_live *live)
{
	lw_top_t *t = top;
	int redraw = read_keys(t, m);

	if (t->last_draw == 0) {
		/* Whatever was printed before the first draw goes. */
		clear();
		redraw = 1;
	}

	t->live = *live;
	if (t->quit || top_signal)
		return 1;
	int due = live->now_ns - t->last_draw >= t->o.refresh_ns;
	if (due)
		sample_util(t, m);
	if (redraw || (due && !t->paused))
		draw(t, m);
	return 0;
}

void lw_top_ended(lw_top_t *t, const lw_model_t *m, const char *why)
{
	t->ended = why;
	t->live.stuck.active = 0;
	if (t->live.now_ns == 0) {
		/* A replay: the file's end, or for a cut file its last time. */
		t->live.now_ns = lw_model_end_ns(m);
		t->live.rings =
			!!(lw_model_info(m)->sources & LW_REC_SRC_RINGS);
		t->live.kernel =
			!!(lw_model_info(m)->sources & LW_REC_SRC_KPROBES);
	}
	if (lw_model_info(m)->end_ns)
		t->live.now_ns = lw_model_info(m)->end_ns;
	sample_util(t, m);
	draw(t, m);
	while (!t->quit && !top_signal) {
		timeout(200);
		int c = getch();
		if (c == ERR)
			continue;
		nodelay(stdscr, TRUE);
		t->keys++;
		int r = key(t, m, c);
		r |= read_keys(t, m);
		if (r && !t->quit)
			draw(t, m);
	}
}
