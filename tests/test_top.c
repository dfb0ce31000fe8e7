/*
 * test_top.c - the real dashboard in a real terminal: `loopwatch top`
 * against a real blocky_server inside tmux, driven with send-keys and read
 * with capture-pane.  The blocking handler is at the top and flagged; sort,
 * filter, detail and help answer their keys; the stuck banner appears while
 * a handler sleeps; 80x24 keeps the table readable; the terminal is given
 * back after q and after the target is killed; without a terminal top
 * says so and exits 2.
 *
 * Each test has its own tmux server (-L), so tests never share a session.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>

#define PANE_CAP (1 << 16)

struct term {
	char sock[64];
	char pane[PANE_CAP];
};

static void need_tmux(void)
{
	if (system("command -v tmux >/dev/null 2>&1") != 0)
		SKIP("tmux is not installed (tools/deps.sh installs it)");
}

static int tmux(struct term *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int tmux(struct term *t, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int n = snprintf(cmd, sizeof(cmd), "tmux -L %s ", t->sock);

	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	return system(cmd);
}

static const char *capture(struct term *t)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "tmux -L %s capture-pane -p -t top",
		 t->sock);
	FILE *f = popen(cmd, "r");
	size_t n = 0;

	t->pane[0] = '\0';
	if (f == NULL)
		return t->pane;
	n = fread(t->pane, 1, sizeof(t->pane) - 1, f);
	t->pane[n] = '\0';
	pclose(f);
	return t->pane;
}

/* Wait until the pane shows what (up to ms); 1 if it did. */
static int wait_for(struct term *t, const char *what, int ms)
{
	for (int i = 0; i <= ms / 50; i++) {
		if (strstr(capture(t), what))
			return 1;
		usleep(50000);
	}
	fprintf(stderr, "pane, without '%s':\n%s\n", what, t->pane);
	return 0;
}

/* The pane's line that follows the table's header, or "". */
static const char *first_row(struct term *t, char *buf, size_t len)
{
	const char *h = strstr(capture(t), "  SITE");
	const char *nl = h ? strchr(h, '\n') : NULL;

	buf[0] = '\0';
	if (nl) {
		const char *end = strchr(nl + 1, '\n');
		snprintf(buf, len, "%.*s",
			 (int)(end ? end - nl - 1 : (long)strlen(nl + 1)),
			 nl + 1);
	}
	return buf;
}

/* A shell in a tmux server of its own, size w x h, running top on pid
 * with env before it; the shell prints TOP-EXIT-<status> after. */
static void start_top_args(struct term *t, const char *args, int w, int h,
			   const char *env)
{
	snprintf(t->sock, sizeof(t->sock), "lwtest%d", (int)getpid());
	ASSERT_EQ(tmux(t,
		       "new-session -d -s top -x %d -y %d 'env %s bash "
		       "--norc --noprofile'",
		       w, h, env),
		  0);
	tmux(t, "set-option -t top status off >/dev/null");
	ASSERT_EQ(tmux(t,
		       "send-keys -t top '%s top --refresh-ms 100 %s; echo "
		       "TOP-EXIT-$?' Enter",
		       lwt_build_path("bin/loopwatch"), args),
		  0);
	ASSERT(wait_for(t, "loopwatch top - ", 15000));
}

static void start_top(struct term *t, pid_t pid, int w, int h, const char *env)
{
	char args[32];
	snprintf(args, sizeof(args), "%d", (int)pid);
	start_top_args(t, args, w, h, env);
}

static void stop_top(struct term *t)
{
	tmux(t, "kill-server >/dev/null 2>&1");
}

TEST_T(top_sort_filter_detail_resize_quit, 90)
{
	static struct term t;
	char row[512];
	uint16_t port;
	int sfd;

	need_tmux();
	pid_t srv = lwt_start_blocky(&port, &sfd);
	start_top(&t, srv, 120, 40,
		  "TERM=xterm-256color LANG=C.UTF-8 LC_ALL=C.UTF-8");
	lwt_http_get(port, "/sleep?ms=150");
	lwt_http_get(port, "/fsync");
	for (int i = 0; i < 5; i++)
		lwt_http_get(port, "/health");
	ASSERT(wait_for(&t, "GET /fsync", 5000));
	usleep(300000);

	/* The blocking handler on top, flagged. */
	first_row(&t, row, sizeof(row));
	ASSERT(strncmp(row, "! GET /sleep ", 13) == 0);
	/* In UTF-8, the sparkline is drawn with block elements. */
	ASSERT(strstr(t.pane, "\u2581") || strstr(t.pane, "\u2582") ||
	       strstr(t.pane, "\u2583") || strstr(t.pane, "\u2584") ||
	       strstr(t.pane, "\u2585") || strstr(t.pane, "\u2586") ||
	       strstr(t.pane, "\u2587") || strstr(t.pane, "\u2588"));
	/* Sort: the marked column moves. */
	tmux(&t, "send-keys -t top s");
	ASSERT(wait_for(&t, "MAX*", 3000));
	/* Filter by name. */
	tmux(&t, "send-keys -t top / f s y n c Enter");
	ASSERT(wait_for(&t, "Filter:fsync", 3000));
	first_row(&t, row, sizeof(row));
	ASSERT(strstr(row, "GET /fsync") != NULL);
	ASSERT(strstr(capture(&t), "GET /sleep ") == NULL);
	/* The detail of the selected site: its histogram and calls. */
	tmux(&t, "send-keys -t top Enter");
	ASSERT(wait_for(&t, "Esc/Enter: back", 3000));
	ASSERT(strstr(t.pane, "blocking calls in GET /fsync") != NULL);
	ASSERT(strstr(t.pane, "fsync") != NULL);
	tmux(&t, "send-keys -t top Enter");
	/* Clear the filter, then the help screen. */
	tmux(&t, "send-keys -t top / Escape");
	ASSERT(wait_for(&t, "! GET /sleep", 3000));
	tmux(&t, "send-keys -t top h");
	ASSERT(wait_for(&t, "this help", 3000));
	tmux(&t, "send-keys -t top x");
	ASSERT(wait_for(&t, "  SITE", 3000));

	/* 80x24: still the table, the flag, and the footer. */
	tmux(&t, "resize-window -t top -x 80 -y 24");
	ASSERT(wait_for(&t, "q Quit", 3000));
	usleep(300000);
	capture(&t);
	ASSERT(strstr(t.pane, "  SITE") != NULL);
	ASSERT(strstr(t.pane, "! GET /sleep") != NULL);
	for (const char *l = t.pane; *l;) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) : strlen(l);
		/* Bytes, not columns: the sparkline's UTF-8 is wider. */
		ASSERT(n <= 80 * 3);
		l = nl ? nl + 1 : l + n;
	}

	/* q gives the terminal back: the shell's next line, no dashboard. */
	tmux(&t, "send-keys -t top q");
	ASSERT(wait_for(&t, "TOP-EXIT-0", 10000));
	ASSERT(strstr(t.pane, "loopwatch top - ") == NULL);
	stop_top(&t);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}

TEST_T(top_stuck_banner_while_sleeping, 60)
{
	static struct term t;
	uint16_t port;
	int sfd;

	need_tmux();
	pid_t srv = lwt_start_blocky(&port, &sfd);
	start_top(&t, srv, 120, 40, "TERM=xterm-256color");
	pid_t client = fork();
	if (client == 0) {
		lwt_http_get(port, "/sleep?ms=2500");
		_exit(0);
	}
	/* While the handler sleeps: the banner, with the thread's stack
	 * as root. */
	ASSERT(wait_for(&t, "STUCK NOW: GET /sleep (tick)", 2000));
	ASSERT(strstr(t.pane, "asleep in") != NULL);
	if (geteuid() == 0)
		ASSERT(wait_for(&t, "blocky_sleep", 1000));
	ASSERT_EQ(waitpid(client, NULL, WNOHANG), 0); /* still running */
	lwt_wait_exit(client, 10000);
	/* Gone once the callback ends. */
	usleep(500000);
	ASSERT(strstr(capture(&t), "STUCK NOW") == NULL);
	tmux(&t, "send-keys -t top q");
	ASSERT(wait_for(&t, "TOP-EXIT-0", 10000));
	stop_top(&t);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}

/* Without colour and on the Linux console's terminal type, the flag is
 * still there; the target killed leaves its last data up, marked ended,
 * and q then gives the terminal back. */
TEST_T(top_target_killed_no_color, 60)
{
	static struct term t;
	uint16_t port;
	int sfd;

	need_tmux();
	pid_t srv = lwt_start_blocky(&port, &sfd);
	start_top(&t, srv, 100, 30, "NO_COLOR=1 TERM=linux LANG=C LC_ALL=C");
	lwt_http_get(port, "/sleep?ms=120");
	ASSERT(wait_for(&t, "! GET /sleep", 5000));
	/* Without UTF-8, nothing but ASCII on the screen. */
	for (const unsigned char *p = (const unsigned char *)t.pane; *p; p++)
		ASSERT_LT(*p, 0x80);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	close(sfd);
	/* How it ended, as attach says it. */
	char ended[64];
	snprintf(ended, sizeof(ended),
		 "ENDED: process %d was killed by SIGKILL", (int)srv);
	ASSERT(wait_for(&t, ended, 5000));
	ASSERT(strstr(t.pane, "! GET /sleep") != NULL);
	tmux(&t, "send-keys -t top q");
	ASSERT(wait_for(&t, "TOP-EXIT-0", 10000));
	/* The Linux console has no alternate screen, so the last frame
	 * stays on it; the terminal's modes are what must come back. */
	tmux(&t, "send-keys -t top 'stty -a | tr \" \" \"\\n\" | grep "
		 "-x -e icanon -e echo | tr \"\\n\" +; echo MODES' Enter");
	ASSERT(wait_for(&t, "icanon+echo+MODES", 5000));
	stop_top(&t);
}

TEST(top_needs_a_terminal)
{
	static char out[4096];
	char pidbuf[16];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
	char *args[] = { "top", pidbuf, NULL };

	ASSERT_EQ(lwt_loopwatch(args, out, sizeof(out)), 2);
	ASSERT(strstr(out, "not a terminal") != NULL);
}

/* A recording shown as it ended. */
TEST_T(top_replay_recording, 60)
{
	static struct term t;
	static char out[1 << 16];
	char dir[] = "/tmp/lwtopXXXXXX", rec[64], pidbuf[16], args[128];
	uint16_t port;
	int sfd;

	need_tmux();
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(rec, sizeof(rec), "%s/r.lwrec", dir);
	pid_t srv = lwt_start_blocky(&port, &sfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	static const char *const reqs[] = { "/sleep?ms=120", NULL };
	struct lwt_asks asks = { port, reqs };
	char *record[] = {
		"record", "-o", rec, "--duration", "3", pidbuf, NULL
	};
	ASSERT_EQ(lwt_loopwatch_on(record, out, sizeof(out), "attached to PID",
				   lwt_ask_all, &asks),
		  0);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);

	snprintf(args, sizeof(args), "--replay %s", rec);
	start_top_args(&t, args, 120, 30, "TERM=xterm-256color");
	ASSERT(wait_for(&t, "a recording, as it ended", 5000));
	ASSERT(strstr(t.pane, "! GET /sleep") != NULL);
	tmux(&t, "send-keys -t top q");
	ASSERT(wait_for(&t, "TOP-EXIT-0", 10000));
	stop_top(&t);
	unlink(rec);
	rmdir(dir);
}

/* The table's row of the site `name` (after the two columns of the
 * marker), as a 0-based line of the pane, or -1. */
static int row_of(struct term *t, const char *name)
{
	int y = 0;

	for (const char *l = capture(t); *l; y++) {
		if (strlen(l) > 2 && strncmp(l + 2, name, strlen(name)) == 0)
			return y;
		const char *nl = strchr(l, '\n');
		if (nl == NULL)
			break;
		l = nl + 1;
	}
	return -1;
}

/* A left click at the 0-based (x, y), as xterm reports it in SGR mode
 * (what ncurses asks of TERM=xterm-256color): press, then release. */
static void click(struct term *t, int x, int y, int times)
{
	for (int i = 0; i < times; i++)
		tmux(t, "send-keys -t top -l '\033[<0;%d;%dM\033[<0;%d;%dm'",
		     x + 1, y + 1, x + 1, y + 1);
}

/* The stty modes the shell sees after top: canonical input and echo must
 * be back, whatever way top left. */
static void assert_modes_back(struct term *t)
{
	tmux(t, "send-keys -t top 'stty -a | tr \" \" \"\\n\" | grep "
		"-x -e icanon -e echo | tr \"\\n\" +; echo MODES' Enter");
	ASSERT(wait_for(t, "icanon+echo+MODES", 5000));
}

/* A click selects the row under it (the panel below names its site); a
 * double click opens its detail. */
TEST_T(top_mouse_selects_row, 60)
{
	static struct term t;
	uint16_t port;
	int sfd;

	need_tmux();
	pid_t srv = lwt_start_blocky(&port, &sfd);
	start_top(&t, srv, 120, 40, "TERM=xterm-256color");
	lwt_http_get(port, "/sleep?ms=120");
	lwt_http_get(port, "/fsync");
	for (int i = 0; i < 3; i++)
		lwt_http_get(port, "/health");
	ASSERT(wait_for(&t, "GET /health", 5000));
	/* Paused, the screen holds still: the click lands on what is
	 * drawn. */
	tmux(&t, "send-keys -t top p");
	ASSERT(wait_for(&t, "[PAUSED]", 3000));
	ASSERT(wait_for(&t, "blocking calls in GET /sleep", 3000));
	int y = row_of(&t, "GET /health ");
	if (y < 0)
		fprintf(stderr, "pane, without a GET /health row:\n%s\n",
			t.pane);
	ASSERT_GT(y, 0);
	click(&t, 6, y, 1);
	ASSERT(wait_for(&t, "blocking calls in GET /health", 3000));
	/* A click outside the table changes nothing. */
	click(&t, 6, 0, 1);
	usleep(300000);
	ASSERT(strstr(capture(&t), "blocking calls in GET /health") != NULL);
	/* A double click: the detail of the row clicked. */
	y = row_of(&t, "GET /fsync ");
	ASSERT_GT(y, 0);
	click(&t, 6, y, 2);
	ASSERT(wait_for(&t, "Esc/Enter: back", 3000));
	ASSERT(strncmp(t.pane, "GET /fsync", 10) == 0);
	tmux(&t, "send-keys -t top Escape");
	ASSERT(wait_for(&t, "  SITE", 3000));
	tmux(&t, "send-keys -t top q");
	ASSERT(wait_for(&t, "TOP-EXIT-0", 10000));
	stop_top(&t);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}

/* An error inside the dashboard: the terminal comes back, and what went
 * wrong is said on it, not lost with the dashboard's screen. */
TEST_T(top_error_restores_terminal, 60)
{
	static struct term t;
	uint16_t port;
	int sfd;

	need_tmux();
	/* The watch fails after top took the terminal. */
	snprintf(t.sock, sizeof(t.sock), "lwtest%d", (int)getpid());
	ASSERT_EQ(tmux(&t, "new-session -d -s top -x 100 -y 30 'env "
			   "TERM=xterm-256color bash --norc --noprofile'"),
		  0);
	tmux(&t, "set-option -t top status off >/dev/null");
	tmux(&t, "send-keys -t top '%s top 999999; echo TOP-EXIT-$?' Enter",
	     lwt_build_path("bin/loopwatch"));
	ASSERT(wait_for(&t, "TOP-EXIT-2", 15000));
	ASSERT(strstr(t.pane, "loopwatch: cannot attach to PID 999999: no "
			      "such process") != NULL);
	assert_modes_back(&t);
	stop_top(&t);

	/* A crash while drawing a live target. */
	pid_t srv = lwt_start_blocky(&port, &sfd);
	start_top(&t, srv, 100, 30, "TERM=xterm-256color");
	lwt_http_get(port, "/sleep?ms=120");
	ASSERT(wait_for(&t, "! GET /sleep", 5000));
	char cmd[256], out[64] = "";
	snprintf(cmd, sizeof(cmd),
		 "pgrep -P $(tmux -L %s list-panes -t top -F "
		 "'#{pane_pid}') -x loopwatch",
		 t.sock);
	FILE *f = popen(cmd, "r");
	ASSERT(f != NULL);
	ASSERT(fgets(out, sizeof(out), f) != NULL);
	pclose(f);
	pid_t top = (pid_t)atoi(out);
	ASSERT_GT(top, 0);
	ASSERT_OK(kill(top, SIGSEGV));
	ASSERT(wait_for(&t, "TOP-EXIT-139", 10000));
	ASSERT(strstr(t.pane, "loopwatch: top: fatal signal SIGSEGV; the "
			      "terminal was restored") != NULL);
	assert_modes_back(&t);
	/* The target did not notice. */
	lwt_http_get(port, "/health");
	stop_top(&t);
	kill(srv, SIGTERM);
	lwt_wait_exit(srv, 10000);
	close(sfd);
}
