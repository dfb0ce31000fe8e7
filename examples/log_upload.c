/*
 * log_upload.c - the worked example of the EventMachine talk, on loopwatch.
 *
 * "Upload thousands of log files to object storage.  Done one after another,
 * the total is the sum of the uploads; through the loop, nobody waits for the
 * previous answer, and the total is close to the longest single upload."
 *
 * The program makes N log files in a temporary folder, starts a small HTTP
 * sink on the same loop (standing in for the object store: it answers each
 * upload D ms after it has the whole body, with a timer, never by sleeping),
 * and uploads every file with its own HTTP/1.1 PUT through lw_iterator_start()
 * with at most K uploads in flight.  Each file is read on the worker pool
 * (lw_defer), because a file read on the loop thread would block it.  At the
 * end it prints the total wall time next to the sum of the single upload
 * times and the longest one:
 *
 *   log_upload -n 50 -d 100          total ~ 100 ms, sum ~ 5000 ms
 *   log_upload -n 50 -d 100 --sequential    total ~ sum
 *
 * The sink can run on its own (--sink-only --port P) and the uploader can
 * aim at it (--port P), to watch the two sides separately with loopwatch.
 */
#include "loopwatch.h"
#include "lib/http.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "log_upload"

struct options {
	unsigned n; /* files */
	unsigned delay_ms; /* the sink's answer delay */
	unsigned concurrency; /* uploads in flight at most */
	size_t size; /* bytes per file */
	int sequential;
	int sink_only;
	int port; /* -1: start our own sink on a free port */
	const char *host;
	int keep; /* keep the generated files */
};

struct app;

/* One file and its upload. */
struct upload {
	struct app *app;
	size_t index;
	char path[PATH_MAX];
	char *data; /* the file's bytes, read on the worker pool */
	size_t len;
	int load_err; /* errno from reading the file */
	lw_conn_t *conn;
	http_parser_t resp;
	uint64_t t_start, t_end; /* ns: connect started, answer complete */
	int answered; /* a 2xx answer arrived */
	int finished; /* lw_iterator_next() was called for it */
	char why[160]; /* why it failed */
};

/* One connection accepted by the sink. */
struct sink_conn {
	struct app *app;
	lw_conn_t *conn;
	http_parser_t req;
	lw_timer_t timer; /* the answer's delay */
	uint64_t received; /* body bytes of the current request */
	struct sink_conn *prev, *next; /* app->sink_conns */
};

struct app {
	lw_loop_t *loop;
	struct options opt;
	char dir[PATH_MAX - 64]; /* the generated files (room for names) */
	struct upload *uploads;
	lw_server_t *sink;
	struct sink_conn *sink_conns; /* open sink connections */
	unsigned sink_open;
	uint64_t sink_requests, sink_bytes;
	const char *host; /* where uploads go */
	uint16_t port;
	lw_iterator_t *it;
	lw_signal_t *sig[2];
	uint64_t t_start, t_end;
	unsigned ok, failed;
	uint64_t bytes;
	int all_done; /* the iterator finished */
	int interrupted;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"Upload N generated log files over HTTP through one event loop "
		"and\n"
		"compare the total time with the sum of the single uploads.\n"
		"\n"
		"  -n N            files to upload (default 50)\n"
		"  -d MS           the sink answers each upload MS ms after "
		"the\n"
		"                  body (default 100)\n"
		"  -c K            uploads in flight at most (default 100)\n"
		"  -s SIZE         bytes per file, with k or m suffix (default "
		"64k)\n"
		"  --sequential    one upload at a time (-c 1): the total is "
		"the sum\n"
		"  --port P        upload to a sink already listening on port "
		"P\n"
		"                  instead of starting one in this process\n"
		"  --host H        the sink's address for --port (default "
		"127.0.0.1)\n"
		"  --sink-only     only run the sink, on --port (default "
		"8081),\n"
		"                  until SIGINT or SIGTERM\n"
		"  --keep          keep the generated files\n"
		"  -h, --help      this text\n"
		"\n"
		"Exit status: 0 when every upload succeeded, 1 otherwise, 2 on "
		"bad\n"
		"usage.\n");
}

static int parse_uint(const char *s, unsigned long long max,
		      unsigned long long *out, int suffixes)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	if (suffixes && (*end == 'k' || *end == 'K')) {
		v *= 1024;
		end++;
	} else if (suffixes && (*end == 'm' || *end == 'M')) {
		v *= 1024 * 1024;
		end++;
	}
	if (*end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_SEQ = 256, OPT_SINK, OPT_PORT, OPT_HOST, OPT_KEEP };
	static const struct option longs[] = {
		{ "sequential", no_argument, NULL, OPT_SEQ },
		{ "sink-only", no_argument, NULL, OPT_SINK },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "host", required_argument, NULL, OPT_HOST },
		{ "keep", no_argument, NULL, OPT_KEEP },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct options){ .n = 50,
			       .delay_ms = 100,
			       .concurrency = 100,
			       .size = 64 * 1024,
			       .port = -1,
			       .host = "127.0.0.1" };
	int c;
	unsigned long long v;
	while ((c = getopt_long(argc, argv, "n:d:c:s:h", longs, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_uint(optarg, 1000000, &v, 0) < 0 || v == 0)
				goto bad_value;
			o->n = (unsigned)v;
			break;
		case 'd':
			if (parse_uint(optarg, 3600 * 1000, &v, 0) < 0)
				goto bad_value;
			o->delay_ms = (unsigned)v;
			break;
		case 'c':
			if (parse_uint(optarg, 1000000, &v, 0) < 0 || v == 0)
				goto bad_value;
			o->concurrency = (unsigned)v;
			break;
		case 's':
			if (parse_uint(optarg, (size_t)1 << 30, &v, 1) < 0)
				goto bad_value;
			o->size = (size_t)v;
			break;
		case OPT_SEQ:
			o->sequential = 1;
			break;
		case OPT_SINK:
			o->sink_only = 1;
			break;
		case OPT_PORT:
			if (parse_uint(optarg, 65535, &v, 0) < 0)
				goto bad_value;
			o->port = (int)v;
			break;
		case OPT_HOST:
			o->host = optarg;
			break;
		case OPT_KEEP:
			o->keep = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return -1;
	}
	if (o->sequential)
		o->concurrency = 1;
	return 0;

bad_value:
	fprintf(stderr, PROG ": bad value '%s' for -%c (see --help)\n", optarg,
		c < 256 ? c : '-');
	return -1;
}

/* ---- the sink: an HTTP server that answers late, without blocking ---- */

static void sink_conn_free(struct sink_conn *sc)
{
	struct app *app = sc->app;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		app->sink_conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	http_parser_free(&sc->req);
	free(sc);
}

static void sink_write(struct sink_conn *sc, int status, const char *body,
		       int keep_alive)
{
	http_buf_t b;
	http_buf_init(&b);
	http_build_response(&b, status, "text/plain", NULL, body, strlen(body),
			    keep_alive, 0);
	if (b.failed || lw_conn_write(sc->conn, b.data, b.len) < 0)
		keep_alive = 0;
	http_buf_free(&b);
	if (!keep_alive)
		lw_conn_close(sc->conn, 1);
}

static void sink_handle(struct sink_conn *sc);

/* The delay is over: answer the upload (a timer callback, a site). */
static void sink_answer(lw_timer_t *t)
{
	struct sink_conn *sc = t->data;
	struct app *app = sc->app;
	char body[PATH_MAX + 64];

	app->sink_requests++;
	app->sink_bytes += sc->received;
	snprintf(body, sizeof(body), "stored %" PRIu64 " bytes as %s\n",
		 sc->received, sc->req.path);
	sc->received = 0;
	int keep_alive = sc->req.keep_alive;
	sink_write(sc, 201, body, keep_alive);
	if (!keep_alive)
		return;
	int r = http_parser_next(&sc->req);
	if (r == HTTP_DONE)
		sink_handle(sc);
	else if (r == HTTP_ERROR)
		sink_write(sc, sc->req.error_status, sc->req.error, 0);
	else
		lw_conn_resume(sc->conn);
}

/* A whole request is in. */
static void sink_handle(struct sink_conn *sc)
{
	http_parser_t *p = &sc->req;
	if (strcmp(p->method, "PUT") != 0 && strcmp(p->method, "POST") != 0) {
		if (strcmp(p->method, "GET") == 0 &&
		    strcmp(p->path, "/") == 0) {
			sink_write(sc, 200,
				   PROG " sink: PUT or POST a file here\n",
				   p->keep_alive);
			if (p->keep_alive && http_parser_next(p) == HTTP_DONE)
				sink_handle(sc);
			return;
		}
		sink_write(sc, 405, "PUT or POST only\n", 0);
		return;
	}
	/* No more requests from this peer until this one is answered. */
	lw_conn_pause(sc->conn);
	lw_timer_start(&sc->timer, sink_answer, sc->app->opt.delay_ms, 0);
}

static void sink_body(http_parser_t *p, const char *data, size_t len)
{
	struct sink_conn *sc = p->data;
	(void)data;
	sc->received += len;
}

static void sink_on_connect(lw_conn_t *c)
{
	struct app *app = lw_conn_data(c);
	struct sink_conn *sc = calloc(1, sizeof(*sc));
	if (!sc) {
		lw_conn_set_data(c, NULL);
		lw_conn_close(c, 0);
		return;
	}
	sc->app = app;
	sc->conn = c;
	http_parser_init(&sc->req, HTTP_REQUEST, SIZE_MAX);
	sc->req.on_body = sink_body;
	sc->req.data = sc;
	lw_timer_init(app->loop, &sc->timer);
	sc->timer.data = sc;
	sc->next = app->sink_conns;
	if (sc->next)
		sc->next->prev = sc;
	app->sink_conns = sc;
	app->sink_open++;
	lw_conn_set_data(c, sc);
}

static void sink_on_data(lw_conn_t *c, const char *data, size_t len)
{
	struct sink_conn *sc = lw_conn_data(c);
	if (!sc)
		return;
	int r = http_parser_feed(&sc->req, data, len);
	if (r == HTTP_ERROR) {
		lw_timer_stop(&sc->timer);
		sink_write(sc, sc->req.error_status, sc->req.error, 0);
	} else if (r == HTTP_DONE && !lw_timer_is_active(&sc->timer)) {
		/* (With the timer running, the bytes were only queued behind
		 * the request that waits for its answer.) */
		sink_handle(sc);
	}
}

static void maybe_finish(struct app *app);

static void sink_on_unbind(lw_conn_t *c, int reason, int err)
{
	struct sink_conn *sc = lw_conn_data(c);
	(void)reason;
	(void)err;
	if (!sc || sc->app == NULL)
		return;
	struct app *app = sc->app;
	lw_timer_stop(&sc->timer);
	sink_conn_free(sc);
	app->sink_open--;
	maybe_finish(app);
}

static const lw_conn_handlers_t sink_handlers = {
	.on_connect = sink_on_connect,
	.on_data = sink_on_data,
	.on_unbind = sink_on_unbind,
};

/* ---- the files ---- */

static int make_files(struct app *app)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(app->dir, sizeof(app->dir), "%s/log_upload.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(app->dir)) {
		fprintf(stderr,
			PROG ": cannot create a folder in %s: %s "
			     "(set TMPDIR to a writable folder)\n",
			tmp && *tmp ? tmp : "/tmp", strerror(errno));
		app->dir[0] = '\0';
		return -1;
	}
	char line[160];
	for (unsigned i = 0; i < app->opt.n; i++) {
		struct upload *u = &app->uploads[i];
		snprintf(u->path, sizeof(u->path), "%s/app-%05u.log", app->dir,
			 i);
		FILE *f = fopen(u->path, "w");
		if (!f)
			goto fail;
		/* Plausible log lines, cut to exactly the size asked for. */
		size_t left = app->opt.size;
		for (unsigned long seq = 0; left > 0; seq++) {
			int n = snprintf(line, sizeof(line),
					 "2011-10-29T12:%02lu:%02lu.%03lu "
					 "host-%02u app[%u]: request %lu "
					 "served in %lu ms\n",
					 (seq / 60000) % 60, (seq / 1000) % 60,
					 seq % 1000, i % 100, 1000 + i, seq,
					 (seq * 7 + i) % 250);
			size_t w = (size_t)n < left ? (size_t)n : left;
			if (fwrite(line, 1, w, f) != w)
				break;
			left -= w;
		}
		if (fclose(f) != 0 || left > 0)
			goto fail;
	}
	return 0;

fail:
	fprintf(stderr, PROG ": cannot write the log files in %s: %s\n",
		app->dir, strerror(errno ? errno : EIO));
	return -1;
}

static void remove_files(struct app *app)
{
	if (!app->dir[0] || app->opt.keep)
		return;
	for (unsigned i = 0; i < app->opt.n; i++)
		if (app->uploads[i].path[0])
			unlink(app->uploads[i].path);
	if (rmdir(app->dir) < 0)
		fprintf(stderr, PROG ": cannot remove %s: %s\n", app->dir,
			strerror(errno));
}

/* ---- the uploads ---- */

static void upload_finish(struct upload *u)
{
	struct app *app = u->app;
	if (u->finished)
		return;
	u->finished = 1;
	free(u->data);
	u->data = NULL;
	if (u->answered) {
		app->ok++;
		app->bytes += u->len;
	} else if (!app->interrupted) {
		app->failed++;
		fprintf(stderr, PROG ": upload of %s failed: %s\n", u->path,
			u->why[0] ? u->why : "unknown error");
	}
	if (!app->interrupted)
		lw_iterator_next(app->it);
}

static void upload_on_connect(lw_conn_t *c)
{
	struct upload *u = lw_conn_data(c);
	char target[PATH_MAX + 16], host[300];
	const char *name = strrchr(u->path, '/');

	snprintf(target, sizeof(target), "/logs%s", name ? name : "/x.log");
	snprintf(host, sizeof(host), "%s:%u", u->app->host, u->app->port);
	http_buf_t b;
	http_buf_init(&b);
	http_build_request_head(&b, "PUT", host, target,
				"Content-Type: text/plain\r\n", u->len, 0);
	int r = b.failed ? -ENOMEM : lw_conn_write(c, b.data, b.len);
	if (r == 0 && u->len)
		r = lw_conn_write(c, u->data, u->len);
	http_buf_free(&b);
	if (r < 0) {
		snprintf(u->why, sizeof(u->why), "cannot send: %s",
			 strerror(-r));
		lw_conn_close(c, 0);
		return;
	}
	/* The connection has its own copy now. */
	free(u->data);
	u->data = NULL;
}

/* The whole answer is in; the caller closes the connection. */
static void upload_answered(struct upload *u)
{
	http_parser_t *p = &u->resp;
	u->t_end = now_ns();
	if (p->status / 100 == 2) {
		u->answered = 1;
	} else {
		int n = (int)p->body_len;
		while (n > 0 &&
		       (p->body[n - 1] == '\n' || p->body[n - 1] == '\r'))
			n--;
		snprintf(u->why, sizeof(u->why),
			 "the sink answered %d %s: %.*s", p->status, p->reason,
			 n > 80 ? 80 : n, p->body);
	}
}

static void upload_on_data(lw_conn_t *c, const char *data, size_t len)
{
	struct upload *u = lw_conn_data(c);
	if (u->t_end)
		return;
	int r = http_parser_feed(&u->resp, data, len);
	if (r == HTTP_DONE) {
		upload_answered(u);
		lw_conn_close(c, 0);
	} else if (r == HTTP_ERROR) {
		snprintf(u->why, sizeof(u->why), "bad answer from the sink: %s",
			 u->resp.error);
		lw_conn_close(c, 0);
	}
}

static void upload_on_unbind(lw_conn_t *c, int reason, int err)
{
	struct upload *u = lw_conn_data(c);
	if (!u->t_end && http_parser_eof(&u->resp) == HTTP_DONE)
		upload_answered(u);
	if (!u->answered && !u->why[0])
		snprintf(u->why, sizeof(u->why), "connection %s%s%s",
			 lw_unbind_reason_name(reason), err ? ": " : "",
			 err ? strerror(err) : "");
	http_parser_free(&u->resp);
	u->conn = NULL;
	upload_finish(u);
}

static const lw_conn_handlers_t upload_handlers = {
	.on_connect = upload_on_connect,
	.on_data = upload_on_data,
	.on_unbind = upload_on_unbind,
};

/* On a worker thread: read the whole file (blocking, so not on the loop). */
static void *upload_read_file(void *arg)
{
	struct upload *u = arg;
	int fd = open(u->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		u->load_err = errno;
		goto out;
	}
	u->data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!u->data) {
		u->load_err = ENOMEM;
		goto out;
	}
	while (u->len < (size_t)st.st_size) {
		ssize_t n =
			read(fd, u->data + u->len, (size_t)st.st_size - u->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			u->load_err = n < 0 ? errno : EIO;
			break;
		}
		u->len += (size_t)n;
	}
out:
	if (fd >= 0)
		close(fd);
	return u;
}

/* Back on the loop thread with the file's bytes: start the upload. */
static void upload_file_read(lw_loop_t *loop, void *arg, void *result)
{
	struct upload *u = arg;
	struct app *app = u->app;
	(void)result;
	if (u->load_err) {
		snprintf(u->why, sizeof(u->why), "cannot read the file: %s",
			 strerror(u->load_err));
		upload_finish(u);
		return;
	}
	lw_connect_options_t co = {
		.connect_timeout_ms = 10000,
		.inactivity_timeout_ms = 30000 + (int64_t)app->opt.delay_ms,
	};
	http_parser_init(&u->resp, HTTP_RESPONSE, 1 << 20);
	u->t_start = now_ns();
	int r = lw_connect(loop, app->host, app->port, &upload_handlers, &co, u,
			   &u->conn);
	if (r < 0) {
		http_parser_free(&u->resp);
		snprintf(u->why, sizeof(u->why), "cannot connect to %s:%u: %s",
			 app->host, app->port, strerror(-r));
		upload_finish(u);
	}
}

/* The iterator's per-item call: item `index` may start now. */
static void upload_start(lw_iterator_t *it, size_t index, void *arg)
{
	struct app *app = arg;
	struct upload *u = &app->uploads[index];
	(void)it;
	int r = lw_defer(app->loop, upload_read_file, upload_file_read, u);
	if (r < 0) {
		snprintf(u->why, sizeof(u->why), "cannot defer the read: %s",
			 strerror(-r));
		upload_finish(u);
	}
}

static void report(struct app *app)
{
	uint64_t sum = 0, longest = 0;
	for (unsigned i = 0; i < app->opt.n; i++) {
		struct upload *u = &app->uploads[i];
		if (!u->answered)
			continue;
		uint64_t d = u->t_end - u->t_start;
		sum += d;
		if (d > longest)
			longest = d;
	}
	double total_ms = (double)(app->t_end - app->t_start) / 1e6;
	double sum_ms = (double)sum / 1e6, max_ms = (double)longest / 1e6;
	unsigned k = app->opt.concurrency < app->opt.n ? app->opt.concurrency
						       : app->opt.n;

	printf(PROG ": %u files of %zu bytes to %s:%u, %u at a time, "
		    "the sink answers after %u ms\n",
	       app->opt.n, app->opt.size, app->host, app->port, k,
	       app->opt.delay_ms);
	printf("files uploaded:  %u of %u\n", app->ok, app->opt.n);
	printf("bytes uploaded:  %" PRIu64 "\n", app->bytes);
	printf("total wall time: %.3f ms\n", total_ms);
	printf("sum of uploads:  %.3f ms\n", sum_ms);
	printf("longest upload:  %.3f ms\n", max_ms);
	printf("ratio total/sum: %.3f\n", sum_ms > 0 ? total_ms / sum_ms : 0.0);
	if (k == 1)
		printf("One after another, the total is the sum of the "
		       "uploads.\n");
	else
		printf("Through the loop the uploads overlap: the total is "
		       "close to the longest upload, not the sum.\n");
	fflush(stdout);
}

/* Stop once the uploads are done and the sink has seen every peer go. */
static void maybe_finish(struct app *app)
{
	if (app->all_done && app->sink_open == 0)
		lw_stop(app->loop);
}

static void uploads_done(lw_iterator_t *it, void *arg)
{
	struct app *app = arg;
	(void)it;
	app->t_end = now_ns();
	app->it = NULL;
	app->all_done = 1;
	report(app);
	if (app->sink) {
		lw_server_stop(app->sink);
		app->sink = NULL;
	}
	maybe_finish(app);
}

static void on_signal(lw_signal_t *w, void *arg, int signum)
{
	struct app *app = arg;
	(void)w;
	if (!app->opt.sink_only) {
		fprintf(stderr, PROG ": interrupted by %s, stopping\n",
			strsignal(signum));
		app->interrupted = 1;
	}
	lw_stop(app->loop);
}

/* Closing the uploader opens many sockets at once: lift the soft limit. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct app app = { 0 };
	int r, status = 1;

	if (parse_options(argc, argv, &app.opt) < 0)
		return 2;
	raise_fd_limit();

	/* The signals go to the loop's signalfd: block them in this thread
	 * before the worker pool starts, so that every thread inherits it. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* A shell starts background jobs with SIGINT ignored, and an ignored
	 * signal never reaches a signalfd: take the default back (the signal
	 * is blocked, so the default action never runs). */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);

	lw_loop_options_t lo = { .name = PROG };
	if ((r = lw_loop_new(&app.loop, &lo)) < 0) {
		fprintf(stderr, PROG ": cannot create the loop: %s\n",
			strerror(-r));
		return 1;
	}
	lw_loop_set_data(app.loop, &app);
	if ((r = lw_signal_start(app.loop, SIGINT, on_signal, &app,
				 &app.sig[0])) < 0 ||
	    (r = lw_signal_start(app.loop, SIGTERM, on_signal, &app,
				 &app.sig[1])) < 0) {
		fprintf(stderr, PROG ": cannot watch signals: %s\n",
			strerror(-r));
		goto out;
	}

	/* Names for the sites, as loopwatch will show them. */
	lw_site_name(app.loop, LW_FN(sink_on_data), "sink: request bytes");
	lw_site_name(app.loop, LW_FN(sink_answer), "sink: delayed answer");
	lw_site_name(app.loop, LW_FN(upload_start), "upload: next file");
	lw_site_name(app.loop, LW_FN(upload_file_read), "upload: file read");
	lw_site_name(app.loop, LW_FN(upload_on_connect), "upload: send");
	lw_site_name(app.loop, LW_FN(upload_on_data), "upload: answer bytes");
	lw_site_name(app.loop, LW_FN(uploads_done), "upload: all done");

	if (app.opt.port < 0 || app.opt.sink_only) {
		uint16_t want =
			app.opt.sink_only
				? (app.opt.port < 0 ? 8081
						    : (uint16_t)app.opt.port)
				: 0;
		const char *bind_host =
			app.opt.sink_only ? app.opt.host : "127.0.0.1";
		r = lw_server_start(app.loop, bind_host, want, &sink_handlers,
				    NULL, &app, &app.sink);
		if (r < 0) {
			fprintf(stderr, PROG ": cannot listen on %s:%u: %s%s\n",
				bind_host, want, strerror(-r),
				r == -EADDRINUSE ? " (try another --port)"
						 : "");
			goto out;
		}
		app.host = "127.0.0.1";
		app.port = lw_server_port(app.sink);
	} else {
		app.host = app.opt.host;
		app.port = (uint16_t)app.opt.port;
	}

	if (app.opt.sink_only) {
		printf(PROG " sink listening on %s:%u (pid %d), answering "
			    "after %u ms\n",
		       app.opt.host, app.port, (int)getpid(), app.opt.delay_ms);
		fflush(stdout);
		r = lw_run(app.loop);
		printf(PROG " sink: %" PRIu64 " uploads, %" PRIu64
			    " bytes received\n",
		       app.sink_requests, app.sink_bytes);
		status = r < 0 ? 1 : 0;
		goto out;
	}

	app.uploads = calloc(app.opt.n, sizeof(*app.uploads));
	if (!app.uploads) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	for (unsigned i = 0; i < app.opt.n; i++) {
		app.uploads[i].app = &app;
		app.uploads[i].index = i;
	}
	if (make_files(&app) < 0)
		goto out;

	app.t_start = now_ns();
	r = lw_iterator_start(app.loop, app.opt.n, app.opt.concurrency,
			      upload_start, uploads_done, &app, &app.it);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot start the uploads: %s\n",
			strerror(-r));
		goto out;
	}
	r = lw_run(app.loop);
	if (r < 0) {
		fprintf(stderr, PROG ": the loop failed: %s\n", strerror(-r));
	} else if (app.interrupted) {
		fprintf(stderr, PROG ": interrupted after %u of %u uploads\n",
			app.ok + app.failed, app.opt.n);
	} else if (app.failed) {
		fprintf(stderr, PROG ": %u of %u uploads failed\n", app.failed,
			app.opt.n);
	} else {
		status = 0;
	}

out:
	/* lw_loop_free() closes the connections still open; their handlers
	 * must not touch app after that, so detach the sink's first. */
	for (struct sink_conn *sc = app.sink_conns; sc; sc = sc->next)
		sc->app = NULL;
	struct sink_conn *leftover = app.sink_conns;
	app.sink_conns = NULL;
	app.interrupted = 1;
	lw_loop_free(app.loop);
	while (leftover) {
		struct sink_conn *next = leftover->next;
		http_parser_free(&leftover->req);
		free(leftover);
		leftover = next;
	}
	if (app.uploads) {
		for (unsigned i = 0; i < app.opt.n; i++) {
			free(app.uploads[i].data);
			http_parser_free(&app.uploads[i].resp);
		}
		remove_files(&app);
		free(app.uploads);
	}
	return status;
}
