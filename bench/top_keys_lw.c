/*
 * top_keys_lw.c - how fast `loopwatch top` answers a key, as a person sees
 * it: the key goes in through a real terminal (tmux send-keys) and the
 * time is taken when the screen (tmux capture-pane) shows its effect.
 * Part "top" of bench/run.sh, through bench/top.sh.
 *
 *   top_keys_lw -c 'COMMAND' [-n KEYS] [-x COLS] [-y LINES] [-r SEED]
 *   top_keys_lw -F [-n KEYS]        the floor: the same path, a trivial
 *                                   program that echoes each key
 *
 * COMMAND is run by tmux in a terminal of COLS x LINES (120 x 40), as a
 * shell would run it (`exec env TERM=... loopwatch top PID`).  Once the
 * table shows rows, KEYS keys (60) are sent one at a time, each after a
 * pause drawn from [100, 600) ms so that keys land at every moment of the
 * dashboard's own redraw cycle, and each waits for what it must show:
 *
 *   s       the footer names the next sort ("Sort:max")
 *   j       the blocking-calls panel names another site
 *   h, x    the help screen, then the table again
 *   Enter   the detail view ("Esc/Enter: back"), then the table again
 *
 * The time from just before send-keys to the first capture that shows the
 * effect includes the terminal's own path (a tmux client process for the
 * key, one per capture, tmux's parsing): -F measures that path alone,
 * against a program that does nothing but echo, so the two can be set side
 * by side.  A key that has no effect within 10 s is a failure.
 *
 * Output: one line per key "key K ms MS", then
 *   keys N p50_ms P p90_ms P p99_ms P max_ms P over_100ms N
 * and `q` is sent at the end (not in -F mode: the floor is killed).
 *
 * Exit status 0, 1 if a key went unanswered or tmux failed, 2 on bad usage.
 */
#include "lib/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PANE_CAP (1 << 17)
#define KEYS_MAX 10000
#define WAIT_MAX_NS (10ull * 1000000000)

static char sock[64];
static char pane[PANE_CAP];

static int tmux(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int tmux(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int n = snprintf(cmd, sizeof(cmd), "tmux -L %s ", sock);

	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	return system(cmd);
}

static const char *capture(void)
{
	char cmd[128];
	FILE *f;
	size_t n = 0;

	snprintf(cmd, sizeof(cmd), "tmux -L %s capture-pane -p -t b", sock);
	pane[0] = '\0';
	if ((f = popen(cmd, "r")) == NULL)
		return pane;
	n = fread(pane, 1, sizeof(pane) - 1, f);
	pane[n] = '\0';
	pclose(f);
	return pane;
}

/* The rest of the line after `tag` on the screen, or "". */
static const char *after(const char *screen, const char *tag, char *buf,
			 size_t len)
{
	const char *p = strstr(screen, tag);
	buf[0] = '\0';
	if (p != NULL) {
		p += strlen(tag);
		size_t n = strcspn(p, "\n");
		snprintf(buf, len, "%.*s", (int)n, p);
	}
	return buf;
}

/* What a key must show: a test on the screen after it. */
struct want {
	const char *contains; /* this text is on screen */
	const char *gone; /* and this is not (may be NULL) */
	const char *tag; /* or: the text after tag differs from before */
	char before[256];
};

static int shows(const struct want *w, const char *screen)
{
	char buf[256];

	if (w->tag != NULL)
		return strcmp(after(screen, w->tag, buf, sizeof(buf)),
			      w->before) != 0 &&
		       buf[0] != '\0';
	if (strstr(screen, w->contains) == NULL)
		return 0;
	return w->gone == NULL || strstr(screen, w->gone) == NULL;
}

/* Send key, wait until the screen shows w; the time it took, or 0. */
static uint64_t press(const char *key, const struct want *w)
{
	uint64_t t0 = bench_now_ns();

	if (tmux("send-keys -t b %s", key) != 0)
		return 0;
	for (;;) {
		/* Timed after the capture that shows it: an upper bound. */
		int done = shows(w, capture());
		uint64_t now = bench_now_ns();
		if (done)
			return now - t0;
		if (now - t0 > WAIT_MAX_NS) {
			fprintf(stderr,
				"top_keys: key %s had no effect in 10 s; the "
				"screen:\n%s\n",
				key, pane);
			return 0;
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *sorted, size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return (double)sorted[i] / 1e6;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s -c 'COMMAND' [-n KEYS] [-x COLS] [-y LINES] "
		"[-r SEED]\n"
		"       %s -F [-n KEYS]   (the terminal's own path, "
		"for comparison)\n",
		argv0, argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static uint64_t lat[KEYS_MAX];
	const char *command = NULL;
	int floor = 0, cols = 120, lines = 40, c;
	unsigned long keys = 60, seed = 1;

	while ((c = getopt(argc, argv, "c:Fn:x:y:r:")) != -1) {
		switch (c) {
		case 'c':
			command = optarg;
			break;
		case 'F':
			floor = 1;
			break;
		case 'n':
			keys = strtoul(optarg, NULL, 10);
			break;
		case 'x':
			cols = atoi(optarg);
			break;
		case 'y':
			lines = atoi(optarg);
			break;
		case 'r':
			seed = strtoul(optarg, NULL, 10);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind != argc || (command == NULL) == !floor || keys == 0 ||
	    keys > KEYS_MAX || cols < 40 || lines < 10)
		usage(argv[0]);
	if (floor)
		command = "exec bash --norc --noprofile -c 'n=0; while IFS= "
			  "read -rsn1 k; do n=$((n+1)); printf \"\\rgot %s:"
			  "%d;\" \"$k\" $n; done'";

	/* The command goes through a script: no quoting of it into tmux's
	 * own command line. */
	char script[96];
	FILE *f;
	snprintf(sock, sizeof(sock), "lwtopkeys%d", (int)getpid());
	snprintf(script, sizeof(script), "/tmp/%s.sh", sock);
	if ((f = fopen(script, "w")) == NULL) {
		fprintf(stderr, "top_keys: cannot write %s: %s\n", script,
			strerror(errno));
		return 1;
	}
	fprintf(f, "%s\n", command);
	fclose(f);
	int rc = tmux("new-session -d -s b -x %d -y %d 'sh %s'", cols, lines,
		      script);
	if (rc != 0) {
		fprintf(stderr, "top_keys: cannot start tmux\n");
		unlink(script);
		return 1;
	}
	tmux("set-option -t b status off >/dev/null");

	/* Ready: the table has rows (or the floor's shell is up). */
	struct want ready = { .contains = floor ? "" : "  SITE" };
	uint64_t t0 = bench_now_ns();
	while (!(shows(&ready, capture()) &&
		 (floor || strstr(pane, "\n! site") ||
		  strstr(pane, "\n  site"))))
		if (bench_now_ns() - t0 > WAIT_MAX_NS) {
			fprintf(stderr, "top_keys: no table in 10 s:\n%s\n",
				pane);
			tmux("kill-server");
			unlink(script);
			return 1;
		}
	if (!floor) {
		/* Move once, so that the selection follows its site from
		 * here on instead of the worst row. */
		tmux("send-keys -t b j");
		usleep(300000);
	}

	static const char *const sorts[] = { "max", "p99", "calls", "name",
					     "total" };
	size_t nsort = 0, step = 0;
	int failed = 0;
	uint64_t rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (unsigned long i = 0; i < keys; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		usleep((useconds_t)(100000 + (rng >> 33) % 500000));
		struct want w = { 0 };
		const char *key, *name;
		char sortbuf[32], gotbuf[32];
		if (floor) {
			snprintf(gotbuf, sizeof(gotbuf), "got a:%lu;", i + 1);
			w.contains = gotbuf;
			key = name = "a";
		} else {
			switch (step++ % 6) {
			case 0:
				snprintf(sortbuf, sizeof(sortbuf), "Sort:%s ",
					 sorts[nsort++ % 5]);
				w.contains = sortbuf;
				key = name = "s";
				break;
			case 1:
				w.tag = "blocking calls in ";
				after(capture(), w.tag, w.before,
				      sizeof(w.before));
				key = name = "j";
				break;
			case 2:
				w.contains = "this help";
				key = name = "h";
				break;
			case 3:
				w.contains = "  SITE";
				w.gone = "this help";
				key = name = "x";
				break;
			case 4:
				w.contains = "Esc/Enter: back";
				key = "Enter";
				name = "enter";
				break;
			default:
				w.contains = "  SITE";
				w.gone = "Esc/Enter: back";
				key = "Enter";
				name = "back";
				break;
			}
		}
		lat[i] = press(key, &w);
		if (lat[i] == 0) {
			failed = 1;
			keys = i;
			break;
		}
		printf("key %s ms %.1f\n", name, (double)lat[i] / 1e6);
	}
	if (floor)
		tmux("kill-server");
	else {
		tmux("send-keys -t b q");
		/* Give it the time to write its statistics and leave. */
		for (int i = 0;
		     i < 100 && tmux("has-session -t b 2>/dev/null") == 0; i++)
			usleep(100000);
		tmux("kill-server 2>/dev/null");
	}
	unlink(script);
	if (keys == 0)
		return 1;

	size_t over = 0;
	for (size_t i = 0; i < keys; i++)
		over += lat[i] > 100000000;
	qsort(lat, keys, sizeof(lat[0]), cmp_u64);
	printf("keys %lu p50_ms %.1f p90_ms %.1f p99_ms %.1f max_ms %.1f "
	       "over_100ms %zu\n",
	       keys, pct_ms(lat, keys, 0.5), pct_ms(lat, keys, 0.9),
	       pct_ms(lat, keys, 0.99), (double)lat[keys - 1] / 1e6, over);
	return failed;
}
