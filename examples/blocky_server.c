/*
 * blocky_server.c - an HTTP server on loopwatch whose handlers block the loop
 * on purpose, one way each, chosen by the request path.
 *
 * It is the thing to point loopwatch at: every handler below is a distinct,
 * non-static, non-inlined function, so that a stack caught by the kernel
 * probes names it, and each handler's site carries a name ("GET /sleep"), so
 * that the ring names it too.  Under /defer/ the same work runs on the worker
 * pool (lw_defer) and the answer is written in the completion on the loop
 * thread: the well-behaved way, for comparison.
 *
 *   /sleep?ms=N   usleep() on the loop thread
 *   /fsync        write and fsync() a file
 *   /read         read a large regular file with read()
 *   /cpu?ms=N     a CPU-bound loop
 *   /dns?host=H   getaddrinfo() on the loop thread
 *   /mutex        lock a mutex another thread holds for long stretches
 *   /defer/...    any of the above on the worker pool
 *   /, /health    fast
 *
 * While a blocking handler runs, every other connection waits: that is the
 * point.  Try: curl 'localhost:8080/sleep?ms=500' & curl localhost:8080/health
 */
#include "loopwatch.h"
#include "lib/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "blocky_server"

/* A call that must stay visible in a stack: not inlined, not a tail call. */
#define BLOCKY __attribute__((noinline))
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

struct options {
	const char *host;
	int port;
	unsigned threads; /* defer workers; 0: the library's default */
	const char *dir; /* for /fsync and the /read file */
	const char *file; /* for /read */
	size_t read_size; /* the /read file made at startup */
	unsigned mutex_hold_ms; /* how long the holder keeps the mutex */
	int verbose;
};

struct server;
struct client;

/* One request being served, on the loop thread or on a worker. */
struct request {
	struct server *srv;
	struct client *cl; /* NULL once the client has gone */
	const struct endpoint *ep;
	int deferred; /* under /defer/ */
	int head_only; /* a HEAD request */
	int keep_alive;
	unsigned ms; /* ?ms= */
	char host[256]; /* ?host= */
	char target[256]; /* for the log line */
	uint64_t t_start;
	/* The answer, filled by the work. */
	int status;
	char body[8192]; /* room for a whole path and a message */
	struct request *prev, *next; /* srv->requests */
};

/* One connection. */
struct client {
	struct server *srv;
	lw_conn_t *conn;
	http_parser_t parser;
	struct request *busy; /* the request being served, if any */
	struct client *prev, *next; /* srv->clients */
};

struct endpoint {
	const char *path;
	lw_cb handler; /* runs the work on the loop thread */
	lw_work_fn work; /* the work; NULL for the fast endpoints */
	const char *site; /* the handler's site name */
	const char *help;
};

struct server {
	lw_loop_t *loop;
	struct options opt;
	lw_server_t *listener;
	lw_signal_t *sig[2];
	char dir[PATH_MAX - 64];
	int own_dir; /* we made dir, so we remove it */
	char fsync_path[PATH_MAX];
	char read_path[PATH_MAX];
	int own_read_file;
	size_t read_file_size;
	pthread_mutex_t contended; /* the /mutex endpoint's mutex */
	pthread_t holder;
	int holder_started;
	atomic_int holder_stop;
	struct client *clients;
	struct request *requests;
	uint64_t served; /* requests answered by a handler (printed at exit) */
};

/* The handlers and their work, named in stacks: hence not static. */
void handle_index(lw_loop_t *loop, void *arg);
void handle_health(lw_loop_t *loop, void *arg);
void handle_sleep(lw_loop_t *loop, void *arg);
void handle_fsync(lw_loop_t *loop, void *arg);
void handle_read(lw_loop_t *loop, void *arg);
void handle_cpu(lw_loop_t *loop, void *arg);
void handle_dns(lw_loop_t *loop, void *arg);
void handle_mutex(lw_loop_t *loop, void *arg);
void *blocky_sleep(void *arg);
void *blocky_fsync(void *arg);
void *blocky_read(void *arg);
void *blocky_cpu(void *arg);
void *blocky_dns(void *arg);
void *blocky_mutex(void *arg);
void *blocky_mutex_holder(void *arg);
void deferred_done(lw_loop_t *loop, void *arg, void *result);

static const struct endpoint endpoints[] = {
	{ "/", handle_index, NULL, "GET /", "this list" },
	{ "/health", handle_health, NULL, "GET /health", "fast: ok" },
	{ "/sleep", handle_sleep, blocky_sleep, "GET /sleep",
	  "?ms=N (100): usleep on the loop thread" },
	{ "/fsync", handle_fsync, blocky_fsync, "GET /fsync",
	  "write 4 KiB to a file and fsync it" },
	{ "/read", handle_read, blocky_read, "GET /read",
	  "read a large regular file with read()" },
	{ "/cpu", handle_cpu, blocky_cpu, "GET /cpu",
	  "?ms=N (100): a CPU-bound loop" },
	{ "/dns", handle_dns, blocky_dns, "GET /dns",
	  "?host=H (localhost): getaddrinfo on the loop thread" },
	{ "/mutex", handle_mutex, blocky_mutex, "GET /mutex",
	  "lock a mutex another thread holds for long stretches" },
};

#define NENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the work: each blocks in its own way ---- */

BLOCKY void *blocky_sleep(void *arg)
{
	struct request *req = arg;
	uint64_t t0 = now_ns();
	/* usleep() takes at most a second on some systems: step through. */
	for (unsigned left = req->ms; left > 0;) {
		unsigned step = left > 500 ? 500 : left;
		usleep(step * 1000);
		left -= step;
	}
	KEEP_FRAME();
	req->status = 200;
	snprintf(req->body, sizeof(req->body), "slept %u ms (%.1f ms)\n",
		 req->ms, ms_since(t0));
	return req;
}

BLOCKY void *blocky_fsync(void *arg)
{
	struct request *req = arg;
	const char *path = req->srv->fsync_path;
	char block[4096];
	uint64_t t0 = now_ns();

	memset(block, 'f', sizeof(block));
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) ||
	    fsync(fd) < 0) {
		close(fd);
		goto fail;
	}
	close(fd);
	KEEP_FRAME();
	req->status = 200;
	snprintf(req->body, sizeof(req->body),
		 "fsync: wrote %zu bytes to %s and synced them (%.1f ms)\n",
		 sizeof(block), path, ms_since(t0));
	return req;
fail:
	req->status = 500;
	snprintf(req->body, sizeof(req->body), "fsync: %s: %s\n", path,
		 strerror(errno));
	return req;
}

BLOCKY void *blocky_read(void *arg)
{
	struct request *req = arg;
	const char *path = req->srv->read_path;
	size_t cap = 1 << 20;
	uint64_t t0 = now_ns(), total = 0, sum = 0;
	char *buf = malloc(cap);
	int fd = -1;

	if (!buf) {
		errno = ENOMEM;
		goto fail;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	/* Drop the cached pages, so the read really waits for the disk
	 * (where there is one: on tmpfs this changes nothing). */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	for (;;) {
		ssize_t n = read(fd, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		total += (uint64_t)n;
		for (ssize_t i = 0; i < n; i += 4096)
			sum += (unsigned char)buf[i];
	}
	close(fd);
	free(buf);
	KEEP_FRAME();
	req->status = 200;
	snprintf(req->body, sizeof(req->body),
		 "read: %" PRIu64 " bytes from %s (checksum %" PRIu64
		 ", %.1f ms)\n",
		 total, path, sum, ms_since(t0));
	return req;
fail:
	req->status = 500;
	snprintf(req->body, sizeof(req->body), "read: %s: %s\n", path,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	free(buf);
	return req;
}

BLOCKY void *blocky_cpu(void *arg)
{
	struct request *req = arg;
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)req->ms * 1000000u;
	uint64_t x = 0x9e3779b97f4a7c15ull, rounds = 0;

	/* xorshift rounds, looking at the clock only now and then. */
	do {
		for (int i = 0; i < 16384; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		rounds++;
	} while (now_ns() < end);
	KEEP_FRAME();
	req->status = 200;
	snprintf(req->body, sizeof(req->body),
		 "cpu: %" PRIu64 " rounds in %.1f ms (asked %u ms), "
		 "result %016" PRIx64 "\n",
		 rounds, ms_since(t0), req->ms, x);
	return req;
}

BLOCKY void *blocky_dns(void *arg)
{
	struct request *req = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	uint64_t t0 = now_ns();

	int r = getaddrinfo(req->host, NULL, &hints, &res);
	KEEP_FRAME();
	if (r != 0) {
		req->status = 502;
		snprintf(req->body, sizeof(req->body),
			 "dns: %s: %s (%.1f ms)\n", req->host, gai_strerror(r),
			 ms_since(t0));
		return req;
	}
	size_t off = (size_t)snprintf(req->body, sizeof(req->body),
				      "dns: %s:", req->host);
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		char ip[INET6_ADDRSTRLEN];
		const void *a =
			ai->ai_family == AF_INET6
				? (const void *)&(
					  (struct sockaddr_in6 *)ai->ai_addr)
					  ->sin6_addr
				: (const void *)&(
					  (struct sockaddr_in *)ai->ai_addr)
					  ->sin_addr;
		if (!inet_ntop(ai->ai_family, a, ip, sizeof(ip)))
			continue;
		if (off + strlen(ip) + 40 >= sizeof(req->body))
			break;
		off += (size_t)snprintf(req->body + off,
					sizeof(req->body) - off, " %s", ip);
	}
	freeaddrinfo(res);
	snprintf(req->body + off, sizeof(req->body) - off, " (%.1f ms)\n",
		 ms_since(t0));
	req->status = 200;
	return req;
}

BLOCKY void *blocky_mutex(void *arg)
{
	struct request *req = arg;
	uint64_t t0 = now_ns();

	pthread_mutex_lock(&req->srv->contended);
	double waited = ms_since(t0);
	pthread_mutex_unlock(&req->srv->contended);
	KEEP_FRAME();
	req->status = 200;
	snprintf(req->body, sizeof(req->body),
		 "mutex: waited %.1f ms for it (the holder keeps it %u ms at "
		 "a time)\n",
		 waited, req->srv->opt.mutex_hold_ms);
	return req;
}

/* A background thread that holds the /mutex mutex most of the time. */
BLOCKY void *blocky_mutex_holder(void *arg)
{
	struct server *srv = arg;
	unsigned hold = srv->opt.mutex_hold_ms;

	while (!atomic_load(&srv->holder_stop)) {
		pthread_mutex_lock(&srv->contended);
		sleep_ms(hold);
		pthread_mutex_unlock(&srv->contended);
		sleep_ms(hold / 2 + 1);
	}
	return NULL;
}

/* ---- requests and answers ---- */

static void request_unlink(struct request *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		req->srv->requests = req->next;
	if (req->next)
		req->next->prev = req->prev;
}

static void client_close(struct client *cl, int after_writing)
{
	lw_conn_close(cl->conn, after_writing);
}

static void client_write(struct client *cl, int status, const char *body,
			 int keep_alive, int head_only)
{
	http_buf_t b;
	http_buf_init(&b);
	http_build_response(&b, status, "text/plain; charset=utf-8", NULL, body,
			    strlen(body), keep_alive, head_only);
	if (b.failed || lw_conn_write(cl->conn, b.data, b.len) < 0)
		keep_alive = 0;
	http_buf_free(&b);
	if (!keep_alive)
		client_close(cl, 1);
}

static void client_error(struct client *cl, int status, const char *why)
{
	char body[256];
	snprintf(body, sizeof(body), "%d %s: %s\n", status,
		 http_status_text(status), why);
	client_write(cl, status, body, 0, 0);
}

static void dispatch(struct client *cl);

/* Take the next pipelined request, or read on. */
static void client_continue(struct client *cl)
{
	int r = http_parser_next(&cl->parser);
	if (r == HTTP_DONE)
		dispatch(cl);
	else if (r == HTTP_ERROR)
		client_error(cl, cl->parser.error_status, cl->parser.error);
	else
		lw_conn_resume(cl->conn);
}

/* The work is done (on this thread or a worker): answer and move on. */
static void request_finish(struct request *req)
{
	struct client *cl = req->cl;
	struct server *srv = req->srv;

	request_unlink(req);
	srv->served++;
	if (srv->opt.verbose) {
		printf("%s %s %d %.1f ms%s\n", req->head_only ? "HEAD" : "GET",
		       req->target, req->status, ms_since(req->t_start),
		       cl ? "" : " (client gone)");
		fflush(stdout);
	}
	if (!cl) {
		free(req);
		return;
	}
	cl->busy = NULL;
	int keep_alive = req->keep_alive;
	client_write(cl, req->status, req->body, keep_alive, req->head_only);
	free(req);
	if (keep_alive)
		client_continue(cl);
}

BLOCKY void handle_index(lw_loop_t *loop, void *arg)
{
	struct request *req = arg;
	size_t off = (size_t)snprintf(req->body, sizeof(req->body),
				      PROG ": handlers that block the loop "
					   "on purpose\n\n");
	for (size_t i = 0; i < NENDPOINTS; i++)
		off += (size_t)snprintf(req->body + off,
					sizeof(req->body) - off, "%-9s %s\n",
					endpoints[i].path, endpoints[i].help);
	snprintf(req->body + off, sizeof(req->body) - off,
		 "/defer/... the same work on the worker pool (lw_defer): "
		 "the loop stays free\n");
	req->status = 200;
	request_finish(req);
	KEEP_FRAME();
}

BLOCKY void handle_health(lw_loop_t *loop, void *arg)
{
	struct request *req = arg;
	req->status = 200;
	snprintf(req->body, sizeof(req->body), "ok\n");
	request_finish(req);
	KEEP_FRAME();
}

/* The blocking handlers: the work right here, on the loop thread. */
BLOCKY void handle_sleep(lw_loop_t *loop, void *arg)
{
	blocky_sleep(arg);
	request_finish(arg);
	KEEP_FRAME();
}

BLOCKY void handle_fsync(lw_loop_t *loop, void *arg)
{
	blocky_fsync(arg);
	request_finish(arg);
	KEEP_FRAME();
}

BLOCKY void handle_read(lw_loop_t *loop, void *arg)
{
	blocky_read(arg);
	request_finish(arg);
	KEEP_FRAME();
}

BLOCKY void handle_cpu(lw_loop_t *loop, void *arg)
{
	blocky_cpu(arg);
	request_finish(arg);
	KEEP_FRAME();
}

BLOCKY void handle_dns(lw_loop_t *loop, void *arg)
{
	blocky_dns(arg);
	request_finish(arg);
	KEEP_FRAME();
}

BLOCKY void handle_mutex(lw_loop_t *loop, void *arg)
{
	blocky_mutex(arg);
	request_finish(arg);
	KEEP_FRAME();
}

/* The completion of a /defer/ request, on the loop thread. */
BLOCKY void deferred_done(lw_loop_t *loop, void *arg, void *result)
{
	request_finish(arg);
	KEEP_FRAME();
}

static const struct endpoint *find_endpoint(const char *path, int *deferred)
{
	*deferred = 0;
	if (strncmp(path, "/defer/", 7) == 0) {
		*deferred = 1;
		path += 6;
	}
	for (size_t i = 0; i < NENDPOINTS; i++) {
		if (strcmp(path, endpoints[i].path) != 0)
			continue;
		if (*deferred && !endpoints[i].work)
			return NULL;
		return &endpoints[i];
	}
	return NULL;
}

/* A whole request is in: check it and start the work. */
static void dispatch(struct client *cl)
{
	struct server *srv = cl->srv;
	http_parser_t *p = &cl->parser;
	int head_only = strcmp(p->method, "HEAD") == 0, deferred;
	char num[32];

	if (!head_only && strcmp(p->method, "GET") != 0) {
		client_error(cl, 405, "only GET and HEAD");
		return;
	}
	const struct endpoint *ep = find_endpoint(p->path, &deferred);
	if (!ep) {
		client_error(cl, 404, "no such endpoint; see /");
		return;
	}
	struct request *req = calloc(1, sizeof(*req));
	if (!req) {
		client_error(cl, 503, "out of memory");
		return;
	}
	req->srv = srv;
	req->cl = cl;
	req->ep = ep;
	req->deferred = deferred;
	req->head_only = head_only;
	req->keep_alive = p->keep_alive;
	req->ms = 100;
	req->t_start = now_ns();
	snprintf(req->target, sizeof(req->target), "%s", p->target);
	snprintf(req->host, sizeof(req->host), "localhost");
	if (http_query_get(p->query, "ms", num, sizeof(num)) >= 0) {
		char *end;
		unsigned long v = strtoul(num, &end, 10);
		if (!*num || *end || v > 600000 || *num == '-') {
			free(req);
			client_error(cl, 400, "ms must be 0..600000");
			return;
		}
		req->ms = (unsigned)v;
	}
	if (strstr(p->query, "host=") &&
	    http_query_get(p->query, "host", req->host, sizeof(req->host)) <=
		    0) {
		free(req);
		client_error(cl, 400, "bad host");
		return;
	}

	req->next = srv->requests;
	if (req->next)
		req->next->prev = req;
	srv->requests = req;
	cl->busy = req;
	/* One request at a time per connection: hold the rest back. */
	lw_conn_pause(cl->conn);

	int r = deferred ? lw_defer(srv->loop, ep->work, deferred_done, req)
			 : lw_next_tick(srv->loop, ep->handler, req);
	if (r < 0) {
		req->status = 503;
		snprintf(req->body, sizeof(req->body), "cannot start: %s\n",
			 strerror(-r));
		req->keep_alive = 0;
		request_finish(req);
	}
}

/* ---- connections ---- */

static void on_connect(lw_conn_t *c)
{
	struct server *srv = lw_conn_data(c);
	struct client *cl = calloc(1, sizeof(*cl));
	if (!cl) {
		lw_conn_set_data(c, NULL);
		lw_conn_close(c, 0);
		return;
	}
	cl->srv = srv;
	cl->conn = c;
	http_parser_init(&cl->parser, HTTP_REQUEST, 64 * 1024);
	cl->next = srv->clients;
	if (cl->next)
		cl->next->prev = cl;
	srv->clients = cl;
	lw_conn_set_data(c, cl);
}

static void on_data(lw_conn_t *c, const char *data, size_t len)
{
	struct client *cl = lw_conn_data(c);
	if (!cl)
		return;
	int r = http_parser_feed(&cl->parser, data, len);
	if (cl->busy) {
		/* Queued behind the request being served, unless the peer
		 * overdid it. */
		if (r == HTTP_ERROR)
			client_close(cl, 0);
		return;
	}
	if (r == HTTP_DONE)
		dispatch(cl);
	else if (r == HTTP_ERROR)
		client_error(cl, cl->parser.error_status, cl->parser.error);
}

static void client_free(struct client *cl)
{
	struct server *srv = cl->srv;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		srv->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	/* The work may still be running: it answers nobody when done. */
	if (cl->busy)
		cl->busy->cl = NULL;
	http_parser_free(&cl->parser);
	free(cl);
}

static void on_unbind(lw_conn_t *c, int reason, int err)
{
	struct client *cl = lw_conn_data(c);
	if (cl)
		client_free(cl);
}

static const lw_conn_handlers_t handlers = {
	.on_connect = on_connect,
	.on_data = on_data,
	.on_unbind = on_unbind,
};

static void on_signal(lw_signal_t *w, void *arg, int signum)
{
	struct server *srv = arg;
	fprintf(stderr, PROG ": %s, shutting down\n", strsignal(signum));
	if (srv->listener) {
		lw_server_stop(srv->listener);
		srv->listener = NULL;
	}
	lw_stop(srv->loop);
}

/* ---- setup ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"An HTTP server on a loopwatch loop whose handlers block the "
		"loop\n"
		"on purpose; GET / lists them.\n"
		"\n"
		"  --port P          listen on port P (default 8080; 0 picks a "
		"free one)\n"
		"  --host H          listen on address H (default 127.0.0.1)\n"
		"  --threads N       worker threads for /defer/ (default: the "
		"library's, 20)\n"
		"  --dir D           folder for the /fsync and /read files "
		"(default: a new\n"
		"                    temporary folder, removed at exit)\n"
		"  --file F          the file /read reads (default: one made "
		"at startup)\n"
		"  --read-mb N       size of the file made for /read "
		"(default 64)\n"
		"  --mutex-hold MS   how long the background thread holds the "
		"/mutex mutex\n"
		"                    each time (default 100)\n"
		"  -v, --verbose     print a line per request\n"
		"  -h, --help        this text\n"
		"\n"
		"When ready it prints \"" PROG
		" listening on HOST:PORT (pid N)\".\n"
		"SIGINT or SIGTERM stop it cleanly (exit status 0), after "
		"it prints\n\"" PROG ": served N requests\".\n");
}

static int parse_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum {
		O_PORT = 256,
		O_HOST,
		O_THREADS,
		O_DIR,
		O_FILE,
		O_READ_MB,
		O_HOLD
	};
	static const struct option longs[] = {
		{ "port", required_argument, NULL, O_PORT },
		{ "host", required_argument, NULL, O_HOST },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "dir", required_argument, NULL, O_DIR },
		{ "file", required_argument, NULL, O_FILE },
		{ "read-mb", required_argument, NULL, O_READ_MB },
		{ "mutex-hold", required_argument, NULL, O_HOLD },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct options){ .host = "127.0.0.1",
			       .port = 8080,
			       .read_size = (size_t)64 << 20,
			       .mutex_hold_ms = 100 };
	int c;
	unsigned long v;
	while ((c = getopt_long(argc, argv, "vh", longs, NULL)) != -1) {
		switch (c) {
		case O_PORT:
			if (parse_num(optarg, 65535, &v) < 0)
				goto bad_value;
			o->port = (int)v;
			break;
		case O_HOST:
			o->host = optarg;
			break;
		case O_THREADS:
			if (parse_num(optarg, 1024, &v) < 0 || v == 0)
				goto bad_value;
			o->threads = (unsigned)v;
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_FILE:
			o->file = optarg;
			break;
		case O_READ_MB:
			if (parse_num(optarg, 1 << 16, &v) < 0)
				goto bad_value;
			o->read_size = (size_t)v << 20;
			break;
		case O_HOLD:
			if (parse_num(optarg, 60000, &v) < 0)
				goto bad_value;
			o->mutex_hold_ms = (unsigned)v;
			break;
		case 'v':
			o->verbose = 1;
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
	return 0;

bad_value:
	fprintf(stderr, PROG ": bad value '%s' (see --help)\n", optarg);
	return -1;
}

/* The scratch folder and the file for /read. */
static int make_files(struct server *srv)
{
	if (srv->opt.dir) {
		snprintf(srv->dir, sizeof(srv->dir), "%s", srv->opt.dir);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(srv->dir, sizeof(srv->dir), "%s/blocky_server.XXXXXX",
			 tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(srv->dir)) {
			fprintf(stderr,
				PROG ": cannot create a folder in %s: %s "
				     "(use --dir)\n",
				tmp && *tmp ? tmp : "/tmp", strerror(errno));
			srv->dir[0] = '\0';
			return -1;
		}
		srv->own_dir = 1;
	}
	snprintf(srv->fsync_path, sizeof(srv->fsync_path), "%s/fsync.dat",
		 srv->dir);

	if (srv->opt.file) {
		struct stat st;
		snprintf(srv->read_path, sizeof(srv->read_path), "%s",
			 srv->opt.file);
		if (stat(srv->read_path, &st) < 0 || !S_ISREG(st.st_mode)) {
			fprintf(stderr, PROG ": --file %s: %s\n",
				srv->read_path,
				errno ? strerror(errno) : "not a regular file");
			return -1;
		}
		srv->read_file_size = (size_t)st.st_size;
		return 0;
	}
	snprintf(srv->read_path, sizeof(srv->read_path), "%s/read.dat",
		 srv->dir);
	int fd = open(srv->read_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0644);
	if (fd < 0)
		goto fail;
	srv->own_read_file = 1;
	char *chunk = malloc(1 << 20);
	if (!chunk) {
		close(fd);
		errno = ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < 1 << 20; i++)
		chunk[i] = (char)('a' + (i * 7) % 26);
	size_t left = srv->opt.read_size;
	while (left > 0) {
		size_t n = left < (1 << 20) ? left : (1 << 20);
		ssize_t w = write(fd, chunk, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			free(chunk);
			close(fd);
			goto fail;
		}
		left -= (size_t)w;
	}
	free(chunk);
	if (close(fd) < 0)
		goto fail;
	srv->read_file_size = srv->opt.read_size;
	return 0;
fail:
	fprintf(stderr, PROG ": cannot make %s: %s (use --dir or --file)\n",
		srv->read_path, strerror(errno ? errno : EIO));
	return -1;
}

static void remove_files(struct server *srv)
{
	if (srv->own_read_file)
		unlink(srv->read_path);
	if (srv->fsync_path[0])
		unlink(srv->fsync_path);
	if (srv->own_dir && rmdir(srv->dir) < 0)
		fprintf(stderr, PROG ": cannot remove %s: %s\n", srv->dir,
			strerror(errno));
}

int main(int argc, char **argv)
{
	struct server srv = { 0 };
	int r, status = 1;

	if (parse_options(argc, argv, &srv.opt) < 0)
		return 2;

	/* The signals go to the loop's signalfd.  Block them before any
	 * thread starts (the mutex holder, the worker pool), so every
	 * thread inherits the mask and none of them takes the signal. */
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
	/* A peer that hangs up must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&srv.contended, NULL);

	lw_loop_options_t lo = { .name = PROG,
				 .defer_threads = srv.opt.threads };
	if ((r = lw_loop_new(&srv.loop, &lo)) < 0) {
		fprintf(stderr, PROG ": cannot create the loop: %s\n",
			strerror(-r));
		return 1;
	}
	if (make_files(&srv) < 0)
		goto out;

	if ((r = lw_signal_start(srv.loop, SIGINT, on_signal, &srv,
				 &srv.sig[0])) < 0 ||
	    (r = lw_signal_start(srv.loop, SIGTERM, on_signal, &srv,
				 &srv.sig[1])) < 0) {
		fprintf(stderr, PROG ": cannot watch signals: %s\n",
			strerror(-r));
		goto out;
	}

	for (size_t i = 0; i < NENDPOINTS; i++)
		lw_site_name(srv.loop, LW_FN(endpoints[i].handler),
			     endpoints[i].site);
	lw_site_name(srv.loop, LW_FN(deferred_done), "GET /defer/* (done)");
	lw_site_name(srv.loop, LW_FN(on_data), "http: request bytes");
	lw_site_name(srv.loop, LW_FN(on_connect), "http: accept");
	lw_site_name(srv.loop, LW_FN(on_unbind), "http: close");

	r = lw_server_start(srv.loop, srv.opt.host, (uint16_t)srv.opt.port,
			    &handlers, NULL, &srv, &srv.listener);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot listen on %s:%d: %s%s\n",
			srv.opt.host, srv.opt.port, strerror(-r),
			r == -EADDRINUSE ? " (try --port 0)"
			: r == -EINVAL	 ? " (--host takes a numeric address)"
					 : "");
		goto out;
	}

	if ((r = pthread_create(&srv.holder, NULL, blocky_mutex_holder,
				&srv)) != 0) {
		fprintf(stderr, PROG ": cannot start the mutex holder: %s\n",
			strerror(r));
		goto out;
	}
	srv.holder_started = 1;

	printf(PROG " listening on %s:%u (pid %d)\n", srv.opt.host,
	       lw_server_port(srv.listener), (int)getpid());
	printf(PROG ": /read reads %s (%zu bytes), /fsync writes %s\n",
	       srv.read_path, srv.read_file_size, srv.fsync_path);
	fflush(stdout);

	r = lw_run(srv.loop);
	if (r < 0)
		fprintf(stderr, PROG ": the loop failed: %s\n", strerror(-r));
	else
		status = 0;
	/* Whoever drove the load can hold its own count against this one
	 * (the soak tests do). */
	printf(PROG ": served %" PRIu64 " requests\n", srv.served);
	fflush(stdout);

out:
	if (srv.holder_started) {
		atomic_store(&srv.holder_stop, 1);
		pthread_join(srv.holder, NULL);
	}
	/* Freeing the loop waits for running /defer/ work and closes the
	 * connections; the requests and clients left are ours to free. */
	lw_loop_free(srv.loop);
	while (srv.clients)
		client_free(srv.clients);
	while (srv.requests) {
		struct request *req = srv.requests;
		request_unlink(req);
		free(req);
	}
	pthread_mutex_destroy(&srv.contended);
	remove_files(&srv);
	return status;
}
