/*
 * test_examples.c - the example programs, run as real processes, and the
 * examples' HTTP parser.
 *
 * The programs are the built ones (lwt_build_path("examples/...")), started
 * with fork/exec and talked to over real sockets with a small blocking HTTP
 * client.  Timing assertions compare two measurements of the same run (total
 * against the sum, a blocked latency against a free one) or give a lower
 * bound, never a tight upper bound.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

/* The parser is linked into the examples, not the library: compile it in. */
#include "../examples/lib/http.c"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- processes ---- */

/* The number after "key" in a program's output; fails if absent. */
static double field(const char *out, const char *key)
{
	const char *s = strstr(out, key);
	if (!s)
		LWT_FAIL("no \"%s\" in the output:\n%s", key, out);
	return strtod(s + strlen(key), NULL);
}

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	ASSERT(d != NULL);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n == 0;
}

/* ---- a blocking HTTP client ---- */

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Nothing in these tests should take this long: never hang. */
	struct timeval tv = { 30, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		ASSERT(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

static int send_get(uint16_t port, const char *target)
{
	char req[512];
	int fd = tcp_connect(port);
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
			 "Connection: close\r\n\r\n",
			 target, port);
	send_all(fd, req, (size_t)n);
	return fd;
}

struct reply {
	int status;
	char body[16384];
	double ms; /* from sending the request to the end of the answer */
};

/* Read one answer to its end (the server closes) and parse it. */
static void read_reply(int fd, struct reply *r)
{
	static char raw[32768];
	size_t len = 0;
	for (;;) {
		ASSERT(len < sizeof(raw));
		ssize_t n = recv(fd, raw + len, sizeof(raw) - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			LWT_FAIL("recv: %s", strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	http_parser_t p;
	http_parser_init(&p, HTTP_RESPONSE, sizeof(r->body) - 1);
	int res = http_parser_feed(&p, raw, len);
	if (res == HTTP_AGAIN)
		res = http_parser_eof(&p);
	if (res != HTTP_DONE)
		LWT_FAIL("bad answer (%s): %.*s", p.error ? p.error : "short",
			 (int)len, raw);
	r->status = p.status;
	memcpy(r->body, p.body, p.body_len);
	r->body[p.body_len] = '\0';
	http_parser_free(&p);
}

static void get(uint16_t port, const char *target, struct reply *r)
{
	double t0 = lwt_now_ms();
	read_reply(send_get(port, target), r);
	r->ms = lwt_now_ms() - t0;
}

/* GET that must answer `status` with a body containing `needle`. */
static double expect(uint16_t port, const char *target, int status,
		     const char *needle)
{
	static struct reply r;
	get(port, target, &r);
	if (r.status != status || !strstr(r.body, needle))
		LWT_FAIL("GET %s: %d \"%s\", wanted %d with \"%s\"", target,
			 r.status, r.body, status, needle);
	return r.ms;
}

/* ---- log_upload ---- */

static void run_log_upload(char *const argv[], char *out, size_t cap,
			   const char *tmpdir, int *status)
{
	int fd;
	pid_t pid = lwt_spawn(argv, &fd, 0, tmpdir);
	lwt_read_all(fd, out, cap, 90000);
	close(fd);
	*status = lwt_wait_exit(pid, 10000);
}

TEST_T(examples_log_upload_concurrent, 120)
{
	char out[8192], tmp[] = "/tmp/lwt-log-upload.XXXXXX";
	char *argv[] = { (char *)lwt_build_path("examples/log_upload"),
			 "-n",
			 "50",
			 "-d",
			 "100",
			 NULL };
	int status;

	ASSERT(mkdtemp(tmp) != NULL);
	argv[0] = strdup(argv[0]);
	run_log_upload(argv, out, sizeof(out), tmp, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		LWT_FAIL("log_upload failed (status %#x):\n%s", status, out);

	ASSERT_EQ(field(out, "files uploaded:"), 50);
	ASSERT_EQ(field(out, "bytes uploaded:"), 50 * 65536);
	double total = field(out, "total wall time:");
	double sum = field(out, "sum of uploads:");
	double longest = field(out, "longest upload:");
	fprintf(stderr, "total %.1f ms, sum %.1f ms, longest %.1f ms\n", total,
		sum, longest);
	/* Each upload waits for the sink's 100 ms timer. */
	ASSERT_GE(longest, 100);
	ASSERT_GE(sum, 50 * 100);
	/* Through the loop the total is near the longest, far below the sum. */
	ASSERT_LT(total * 5, sum);
	ASSERT_GE(total, longest);
	/* The generated files are gone. */
	ASSERT(dir_is_empty(tmp));
	rmdir(tmp);
	free(argv[0]);
}

TEST_T(examples_log_upload_sequential, 120)
{
	char out[8192];
	char *argv[] = { strdup(lwt_build_path("examples/log_upload")),
			 "-n",
			 "5",
			 "-d",
			 "50",
			 "--sequential",
			 NULL };
	int status;

	run_log_upload(argv, out, sizeof(out), NULL, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		LWT_FAIL("log_upload failed (status %#x):\n%s", status, out);
	ASSERT_EQ(field(out, "files uploaded:"), 5);
	double total = field(out, "total wall time:");
	double sum = field(out, "sum of uploads:");
	double longest = field(out, "longest upload:");
	ASSERT_GE(sum, 5 * 50);
	ASSERT_GE(longest, 50);
	/* One at a time: the total is (at least) the sum. */
	ASSERT_GE(total, sum * 0.9);
	free(argv[0]);
}

TEST_T(examples_log_upload_failure, 60)
{
	/* A port that is bound but not listening refuses connections. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(bind(s, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(getsockname(s, (struct sockaddr *)&sa, &sl));
	char port[16], out[8192];
	snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));
	char *argv[] = { strdup(lwt_build_path("examples/log_upload")),
			 "-n",
			 "3",
			 "-d",
			 "10",
			 "--port",
			 port,
			 NULL };
	int fd, status;
	pid_t pid = lwt_spawn(argv, &fd, 1, NULL);
	lwt_read_all(fd, out, sizeof(out), 60000);
	close(fd);
	status = lwt_wait_exit(pid, 10000);
	close(s);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
		LWT_FAIL("wanted exit status 1 (status %#x):\n%s", status, out);
	ASSERT(strstr(out, "failed") != NULL);
	ASSERT_EQ(field(out, "files uploaded:"), 0);

	/* Bad usage is exit status 2. */
	char *bad[] = { argv[0], "-n", "lots", NULL };
	pid = lwt_spawn(bad, &fd, 1, NULL);
	lwt_read_all(fd, out, sizeof(out), 10000);
	close(fd);
	status = lwt_wait_exit(pid, 10000);
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 2);
	free(argv[0]);
}

/* ---- blocky_server ---- */

TEST_T(examples_blocky_endpoints, 120)
{
	char *argv[] = { strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 "--read-mb",
			 "4",
			 "--mutex-hold",
			 "50",
			 "--threads",
			 "4",
			 NULL };
	char line[1024], dir[1024] = "";
	int fd;
	unsigned port = 0;
	pid_t pid = lwt_spawn(argv, &fd, 0, NULL);

	/* "blocky_server listening on 127.0.0.1:PORT (pid N)" */
	while (lwt_read_line(fd, line, sizeof(line), 60000) >= 0) {
		const char *s = strstr(line, "listening on 127.0.0.1:");
		if (s) {
			port = (unsigned)atoi(
				s + strlen("listening on 127.0.0.1:"));
			char want[64];
			snprintf(want, sizeof(want), "(pid %d)", (int)pid);
			ASSERT(strstr(line, want) != NULL);
			break;
		}
	}
	if (port == 0) {
		kill(pid, SIGKILL);
		LWT_FAIL("blocky_server did not say where it listens");
	}
	/* The next line names the /read file in the scratch folder. */
	ASSERT(lwt_read_line(fd, line, sizeof(line), 10000) >= 0);
	const char *rd = strstr(line, "/read reads ");
	ASSERT(rd != NULL);
	snprintf(dir, sizeof(dir), "%s", rd + strlen("/read reads "));
	char *slash = strstr(dir, "/read.dat");
	ASSERT(slash != NULL);
	*slash = '\0';
	struct stat st;
	ASSERT_OK(stat(dir, &st));

	uint16_t p = (uint16_t)port;
	expect(p, "/", 200, "/defer/");
	expect(p, "/", 200, "/sleep");
	expect(p, "/health", 200, "ok");
	double slept = expect(p, "/sleep?ms=200", 200, "slept 200 ms");
	ASSERT_GE(slept, 200);
	expect(p, "/fsync", 200, "fsync: wrote 4096 bytes");
	expect(p, "/read", 200, "read: 4194304 bytes");
	ASSERT_GE(expect(p, "/cpu?ms=50", 200, "cpu:"), 50);
	expect(p, "/dns", 200, "dns: localhost:");
	expect(p, "/dns?host=localhost", 200, "127.0.0.1");
	expect(p, "/mutex", 200, "mutex: waited");
	ASSERT_GE(expect(p, "/defer/sleep?ms=100", 200, "slept 100 ms"), 100);
	expect(p, "/defer/fsync", 200, "fsync: wrote 4096 bytes");
	expect(p, "/defer/read", 200, "read: 4194304 bytes");
	expect(p, "/defer/cpu?ms=20", 200, "cpu:");
	expect(p, "/defer/dns?host=localhost", 200, "dns: localhost:");
	expect(p, "/defer/mutex", 200, "mutex: waited");
	expect(p, "/nope", 404, "Not Found");
	expect(p, "/defer/health", 404, "Not Found");
	expect(p, "/sleep?ms=soon", 400, "ms");

	/* Not GET: 405.  Garbage: 400, and the server lives on. */
	struct reply r;
	int c = tcp_connect(p);
	const char *post = "POST /health HTTP/1.1\r\nHost: x\r\n"
			   "Content-Length: 2\r\n\r\nhi";
	send_all(c, post, strlen(post));
	read_reply(c, &r);
	ASSERT_EQ(r.status, 405);
	c = tcp_connect(p);
	send_all(c, "GET /\x01 nonsense\r\n\r\n", 19);
	read_reply(c, &r);
	ASSERT_EQ(r.status, 400);
	expect(p, "/health", 200, "ok");

	/* Keep-alive and pipelining: two answers on one connection. */
	c = tcp_connect(p);
	const char *two = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /sleep?ms=1 HTTP/1.1\r\nHost: x\r\n"
			  "Connection: close\r\n\r\n";
	send_all(c, two, strlen(two));
	static char raw[8192];
	size_t len = 0;
	ssize_t n;
	while ((n = recv(c, raw + len, sizeof(raw) - len, 0)) > 0)
		len += (size_t)n;
	close(c);
	http_parser_t hp;
	http_parser_init(&hp, HTTP_RESPONSE, 0);
	ASSERT_EQ(http_parser_feed(&hp, raw, len), HTTP_DONE);
	ASSERT_EQ(hp.status, 200);
	ASSERT(hp.keep_alive);
	ASSERT_EQ(http_parser_next(&hp), HTTP_DONE);
	ASSERT_EQ(hp.status, 200);
	ASSERT(strstr(hp.body, "slept 1 ms") != NULL);
	ASSERT(!hp.keep_alive);
	http_parser_free(&hp);

	/*
	 * The point of it all: while /sleep blocks the loop, /health on
	 * another connection waits for it; while /defer/sleep runs on the
	 * pool, /health is answered at once.
	 */
	struct reply slow, health;
	c = send_get(p, "/sleep?ms=500");
	double t0 = lwt_now_ms();
	usleep(50 * 1000);
	get(p, "/health", &health);
	double blocked = health.ms;
	ASSERT_EQ(health.status, 200);
	read_reply(c, &slow);
	ASSERT_EQ(slow.status, 200);
	ASSERT_GE(lwt_now_ms() - t0, 500);

	c = send_get(p, "/defer/sleep?ms=500");
	t0 = lwt_now_ms();
	usleep(50 * 1000);
	get(p, "/health", &health);
	double free_ms = health.ms;
	ASSERT_EQ(health.status, 200);
	read_reply(c, &slow);
	ASSERT_EQ(slow.status, 200);
	ASSERT(strstr(slow.body, "slept 500 ms") != NULL);
	ASSERT_GE(lwt_now_ms() - t0, 500);
	fprintf(stderr,
		"/health took %.1f ms behind /sleep, %.1f ms beside "
		"/defer/sleep\n",
		blocked, free_ms);
	ASSERT_GE(blocked, 200);
	ASSERT_LT(free_ms * 4, blocked);

	/* A client that leaves in the middle of a deferred request. */
	c = send_get(p, "/defer/sleep?ms=100");
	close(c);
	usleep(150 * 1000);
	expect(p, "/health", 200, "ok");

	/* SIGTERM: a clean exit, the scratch folder removed. */
	ASSERT_OK(kill(pid, SIGTERM));
	int status = lwt_wait_exit(pid, 20000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		LWT_FAIL("blocky_server exit status %#x", status);
	ASSERT(stat(dir, &st) < 0 && errno == ENOENT);
	close(fd);
	free(argv[0]);
}

/* ---- the HTTP parser ---- */

static const char sample[] = "PUT /logs/app-1.log?x=1&y=a%20b HTTP/1.1\r\n"
			     "Host: example\r\n"
			     "Content-Type:  text/plain  \r\n"
			     "Content-Length: 11\r\n"
			     "X-Empty:\r\n"
			     "\r\n"
			     "hello world";

static void check_sample(http_parser_t *p)
{
	char v[32];
	ASSERT_STREQ(p->method, "PUT");
	ASSERT_STREQ(p->target, "/logs/app-1.log?x=1&y=a%20b");
	ASSERT_STREQ(p->path, "/logs/app-1.log");
	ASSERT_STREQ(p->query, "x=1&y=a%20b");
	ASSERT_EQ(p->version_minor, 1);
	ASSERT_EQ(p->nheaders, 4);
	ASSERT_STREQ(http_header(p, "content-type"), "text/plain");
	ASSERT_STREQ(http_header(p, "X-EMPTY"), "");
	ASSERT(http_header(p, "Nope") == NULL);
	ASSERT_EQ(p->content_length, 11);
	ASSERT_EQ(p->body_len, 11);
	ASSERT(memcmp(p->body, "hello world", 11) == 0);
	ASSERT(p->keep_alive);
	ASSERT_EQ(http_query_get(p->query, "y", v, sizeof(v)), 3);
	ASSERT_STREQ(v, "a b");
}

/* Feed `msg` as error-free chunks of `chunk` bytes; expect one message. */
static void feed_chunks(const char *msg, size_t len, size_t chunk)
{
	http_parser_t p;
	http_parser_init(&p, HTTP_REQUEST, 0);
	int r = HTTP_AGAIN;
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		ASSERT_EQ(r, HTTP_AGAIN);
		r = http_parser_feed(&p, msg + off, n);
	}
	ASSERT_EQ(r, HTTP_DONE);
	check_sample(&p);
	http_parser_free(&p);
}

static int parse_status(const char *msg, int *status)
{
	http_parser_t p;
	http_parser_init(&p, HTTP_REQUEST, 100);
	int r = http_parser_feed(&p, msg, strlen(msg));
	*status = r == HTTP_ERROR ? p.error_status : 0;
	/* An error sticks. */
	if (r == HTTP_ERROR)
		ASSERT_EQ(http_parser_feed(&p, "\r\n\r\n", 4), HTTP_ERROR);
	http_parser_free(&p);
	return r;
}

static size_t body_seen;

static void count_body(http_parser_t *p, const char *data, size_t len)
{
	(void)p;
	for (size_t i = 0; i < len; i++)
		ASSERT_EQ(data[i], "hello world"[(body_seen + i) % 11]);
	body_seen += len;
}

TEST(examples_http_parser)
{
	size_t len = strlen(sample);

	/* Whole, byte by byte, and split at every point. */
	feed_chunks(sample, len, len);
	feed_chunks(sample, len, 1);
	feed_chunks(sample, len, 7);
	for (size_t cut = 1; cut < len; cut++) {
		http_parser_t p;
		http_parser_init(&p, HTTP_REQUEST, 0);
		ASSERT_EQ(http_parser_feed(&p, sample, cut), HTTP_AGAIN);
		ASSERT_EQ(http_parser_feed(&p, sample + cut, len - cut),
			  HTTP_DONE);
		check_sample(&p);
		http_parser_free(&p);
	}

	/* Pipelined: three messages in one chunk, bare LF line ends too. */
	char three[1024];
	snprintf(three, sizeof(three),
		 "%sGET /a HTTP/1.1\nHost: h\n\n"
		 "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c",
		 sample);
	http_parser_t p;
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(http_parser_feed(&p, three, strlen(three)), HTTP_DONE);
	check_sample(&p);
	/* More bytes while a message is complete are queued, not parsed. */
	ASSERT_EQ(http_parser_feed(&p, " HTTP/1.1\r\n", 11), HTTP_DONE);
	check_sample(&p);
	ASSERT_EQ(http_parser_next(&p), HTTP_DONE);
	ASSERT_STREQ(p.path, "/a");
	ASSERT_EQ(p.body_len, 0);
	ASSERT(p.keep_alive);
	ASSERT_EQ(http_parser_next(&p), HTTP_DONE);
	ASSERT_STREQ(p.path, "/b");
	ASSERT_EQ(p.version_minor, 0);
	ASSERT(p.keep_alive);
	ASSERT_EQ(http_parser_next(&p), HTTP_AGAIN);
	ASSERT(http_parser_pending(&p));
	ASSERT_EQ(http_parser_eof(&p), HTTP_ERROR);
	http_parser_free(&p);

	/* HTTP/1.0 closes by default; Connection: close is honoured. */
	int st;
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(http_parser_feed(&p, "GET / HTTP/1.0\r\n\r\n", 18),
		  HTTP_DONE);
	ASSERT(!p.keep_alive);
	ASSERT_EQ(http_parser_next(&p), HTTP_AGAIN);
	ASSERT(!http_parser_pending(&p));
	ASSERT_EQ(http_parser_eof(&p), HTTP_AGAIN);
	const char *cl = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, "
			 "close\r\n\r\n";
	ASSERT_EQ(http_parser_feed(&p, cl, strlen(cl)), HTTP_DONE);
	ASSERT(!p.keep_alive);
	http_parser_free(&p);

	/* Absolute-form targets and "*". */
	http_parser_init(&p, HTTP_REQUEST, 0);
	const char *abs = "GET http://h:80/x/y?q HTTP/1.1\r\nHost: h\r\n\r\n";
	ASSERT_EQ(http_parser_feed(&p, abs, strlen(abs)), HTTP_DONE);
	ASSERT_STREQ(p.path, "/x/y");
	ASSERT_STREQ(p.query, "q");
	http_parser_free(&p);

	/* Bad requests: an error with a status, never a crash. */
	static const struct {
		const char *msg;
		int status;
	} bad[] = {
		{ "GARBAGE\r\n\r\n", 400 },
		{ "GET /\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400 },
		{ "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505 },
		{ "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 400 }, /* no Host */
		{ "GET nohost HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
		  400 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
		  400 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
		  "99999999999999999999999\r\n\r\n",
		  400 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
		  "Content-Length: 2\r\n\r\n",
		  400 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
		  413 },
		{ "PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
		  "chunked\r\n\r\n",
		  501 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse_status(bad[i].msg, &st);
		if (r != HTTP_ERROR || st != bad[i].status)
			LWT_FAIL("bad[%zu]: result %d status %d, wanted %d", i,
				 r, st, bad[i].status);
	}
	/* A head without an end grows only so far: 431. */
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(http_parser_feed(&p, "GET / HTTP/1.1\r\nX: ", 19),
		  HTTP_AGAIN);
	char junk[1024];
	memset(junk, 'a', sizeof(junk));
	int r = HTTP_AGAIN;
	for (int i = 0; i < 20 && r == HTTP_AGAIN; i++)
		r = http_parser_feed(&p, junk, sizeof(junk));
	ASSERT_EQ(r, HTTP_ERROR);
	ASSERT_EQ(p.error_status, 431);
	http_parser_free(&p);
	/* A NUL byte in a head. */
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(
		http_parser_feed(&p, "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 28),
		HTTP_ERROR);
	http_parser_free(&p);
	/* The connection ends inside a body. */
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(http_parser_feed(&p, sample, len - 1), HTTP_AGAIN);
	ASSERT_EQ(http_parser_eof(&p), HTTP_ERROR);
	http_parser_free(&p);

	/* Streaming bodies: on_body sees every byte, in order, once. */
	for (size_t chunk = 1; chunk <= len; chunk += 5) {
		char two[1024];
		snprintf(two, sizeof(two), "%s%s", sample, sample);
		size_t tlen = strlen(two);
		http_parser_init(&p, HTTP_REQUEST, 0);
		p.on_body = count_body;
		body_seen = 0;
		int done = 0;
		for (size_t off = 0; off < tlen; off += chunk) {
			size_t n = tlen - off < chunk ? tlen - off : chunk;
			r = http_parser_feed(&p, two + off, n);
			while (r == HTTP_DONE) {
				done++;
				ASSERT_EQ(p.body_len, 0);
				ASSERT_STREQ(p.path, "/logs/app-1.log");
				r = http_parser_next(&p);
			}
			ASSERT(r == HTTP_AGAIN);
		}
		ASSERT_EQ(done, 2);
		ASSERT_EQ(body_seen, 22);
		http_parser_free(&p);
	}

	/* Responses: Content-Length, none (to EOF), 204 (no body). */
	http_parser_init(&p, HTTP_RESPONSE, 0);
	const char *resp = "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\n"
			   "abcHTTP/1.1 204 No Content\r\n\r\n"
			   "HTTP/1.0 200 OK\r\n\r\nuntil the end";
	ASSERT_EQ(http_parser_feed(&p, resp, strlen(resp)), HTTP_DONE);
	ASSERT_EQ(p.status, 201);
	ASSERT_STREQ(p.reason, "Created");
	ASSERT_EQ(p.body_len, 3);
	ASSERT_EQ(http_parser_next(&p), HTTP_DONE);
	ASSERT_EQ(p.status, 204);
	ASSERT_EQ(p.body_len, 0);
	ASSERT_EQ(http_parser_next(&p), HTTP_AGAIN);
	ASSERT_EQ(p.status, 200);
	ASSERT_EQ(http_parser_eof(&p), HTTP_DONE);
	ASSERT_EQ(p.body_len, 13);
	ASSERT(memcmp(p.body, "until the end", 13) == 0);
	ASSERT(!p.keep_alive);
	http_parser_free(&p);
	http_parser_init(&p, HTTP_RESPONSE, 0);
	ASSERT_EQ(http_parser_feed(&p, "HTTP/1.1 99 X\r\n\r\n", 17),
		  HTTP_ERROR);
	http_parser_free(&p);

	/* The builder's output parses back. */
	http_buf_t b;
	http_buf_init(&b);
	http_build_request_head(&b, "PUT", "h:1", "/f", "X-A: 1\r\n", 5, 0);
	http_buf_append(&b, "12345", 5);
	http_build_response(&b, 404, "text/plain", NULL, "nope", 4, 1, 0);
	ASSERT(!b.failed);
	http_parser_init(&p, HTTP_REQUEST, 0);
	ASSERT_EQ(http_parser_feed(&p, b.data, b.len), HTTP_DONE);
	ASSERT_STREQ(p.method, "PUT");
	ASSERT_STREQ(http_header(&p, "x-a"), "1");
	ASSERT_EQ(p.body_len, 5);
	ASSERT(!p.keep_alive);
	http_parser_t q;
	http_parser_init(&q, HTTP_RESPONSE, 0);
	const char *after = strstr(b.data, "12345HTTP/1.1 404");
	ASSERT(after != NULL);
	after += 5;
	ASSERT_EQ(http_parser_feed(&q, after, b.len - (size_t)(after - b.data)),
		  HTTP_DONE);
	ASSERT_EQ(q.status, 404);
	ASSERT_STREQ(q.reason, "Not Found");
	ASSERT(q.keep_alive);
	ASSERT(memcmp(q.body, "nope", 4) == 0);
	http_parser_free(&q);
	http_parser_free(&p);
	http_buf_free(&b);

	/* Query strings. */
	char v[8];
	ASSERT_EQ(http_query_get("ms=200&host=a%2Eb+c", "ms", v, sizeof(v)), 3);
	ASSERT_STREQ(v, "200");
	ASSERT_EQ(http_query_get("ms=200&host=a%2Eb+c", "host", v, sizeof(v)),
		  5);
	ASSERT_STREQ(v, "a.b c");
	ASSERT_EQ(http_query_get("mss=1&m=2", "ms", v, sizeof(v)), -1);
	ASSERT_EQ(http_query_get("flag&x=1", "flag", v, sizeof(v)), 0);
	ASSERT_EQ(http_query_get("h=%zz", "h", v, sizeof(v)), -1);
	ASSERT_EQ(http_query_get("h=%00", "h", v, sizeof(v)), -1);
	ASSERT_EQ(http_query_get("h=%4", "h", v, sizeof(v)), -1);
	ASSERT_EQ(http_query_get("h=12345678", "h", v, sizeof(v)), -1);
	ASSERT_EQ(http_query_get("", "h", v, sizeof(v)), -1);
}

/* Mangled requests in random chunks: any outcome but a crash. */
TEST(examples_http_parser_fuzz)
{
	unsigned seed = 12345;
	size_t len = strlen(sample);
	char msg[512];
	for (int round = 0; round < 20000; round++) {
		memcpy(msg, sample, len);
		int edits = 1 + (int)(rand_r(&seed) % 4);
		for (int e = 0; e < edits; e++) {
			size_t at = (size_t)rand_r(&seed) % len;
			static const char pick[] = "\r\n :\0\x01\x7f\x80-9aZ";
			msg[at] = pick[rand_r(&seed) % (sizeof(pick) - 1)];
		}
		http_parser_t p;
		http_parser_init(
			&p, rand_r(&seed) % 4 ? HTTP_REQUEST : HTTP_RESPONSE,
			64);
		int r = HTTP_AGAIN;
		for (size_t off = 0; off < len && r != HTTP_ERROR;) {
			size_t n = 1 + (size_t)rand_r(&seed) % 16;
			if (n > len - off)
				n = len - off;
			r = http_parser_feed(&p, msg + off, n);
			off += n;
			while (r == HTTP_DONE) {
				ASSERT(p.body != NULL);
				if (p.kind == HTTP_REQUEST)
					ASSERT(p.method && p.path && p.query);
				r = http_parser_next(&p);
			}
		}
		if (r != HTTP_ERROR)
			r = http_parser_eof(&p);
		ASSERT(r == HTTP_ERROR || r == HTTP_AGAIN || r == HTTP_DONE);
		if (r == HTTP_ERROR)
			ASSERT(p.error != NULL && p.error_status >= 400);
		http_parser_free(&p);
	}
}

/* `make demo`'s script, as the README's first command runs it: the seed's
 * example, then loopwatch attached to a running blocky_server names the
 * callbacks that block its loop (with the kernel probes as root, from the
 * rings alone otherwise), and not the deferred one. */
TEST_T(examples_demo_catches_blocking_callbacks, 120)
{
	char cmd[4096];
	static char text[1 << 18];

	snprintf(cmd, sizeof(cmd), "bash '%s/tools/demo.sh' '%s'", LW_SRC_DIR,
		 lwt_build_path(""));
	int st = lwt_sh_capture(cmd, text, sizeof(text));
	ASSERT(text[0] != '\0');
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		LWT_FAIL("demo.sh: status %#x:\n%s", st, text);
	ASSERT(strstr(text, "Through the loop the uploads overlap") != NULL);
	ASSERT(strstr(text, "attached to PID") != NULL);
	ASSERT(strstr(text, "callback GET /sleep (") != NULL);
	ASSERT(strstr(text, "callback GET /cpu (") != NULL);
	ASSERT(strstr(text, "callback GET /defer") == NULL);
	if (geteuid() == 0)
		ASSERT(strstr(text, "nanosleep()") != NULL);
}
