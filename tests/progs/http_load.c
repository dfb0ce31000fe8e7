/*
 * http_load.c - a steady HTTP/1.1 load for the soak tests (tests/test_soak.c)
 * and the soak benchmark (bench/soak.sh): CONNS keep-alive connections to
 * one server, each a thread that sends a GET, reads the whole answer, and
 * sends the next, as fast as the server answers (a closed loop: the rate it
 * reaches is the server's throughput).  It counts answers, so that a driver
 * can measure the server's requests per second with and without an
 * observer, and hold the count against the server's own.
 *
 *   http_load --port P [--host H] [--conns N] [--path PATH]
 *             [--requests N] [--every MS]
 *
 * --conns (2) connections, --path (/health) the target of every request,
 * --requests N: stop after N answers in all (0, the default: until SIGINT
 * or SIGTERM), --every MS (0: never): print the counts every MS ms.
 *
 * Output, on stdout, each line flushed ("real" is CLOCK_REALTIME in
 * seconds, for a driver to match against its own clock; the counts are
 * cumulative):
 *
 *   # ready pid PID conns N path PATH
 *   t REAL ok N errors E              (every --every ms)
 *   total ok N errors E               (at the end)
 *
 * ok counts answers with status 200; errors counts everything else (a
 * connection refused, reset or closed early, no answer within 30 s, another
 * status), after which the connection is made again.  On SIGINT or SIGTERM
 * every connection finishes the request it has sent (its answer counts),
 * then the program prints its total: every request sent got its answer, so
 * a server's count of requests served equals ok, plus what others asked.
 *
 * Exit status 0 if there was no error, 1 otherwise, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64

static const char *host = "127.0.0.1";
static int port;
static const char *path = "/health";
static unsigned long long want; /* answers in all; 0: no limit */
static char request[512];
static size_t request_len;

static atomic_ullong ok, errors, sent;
/* Set by the signal handler and by main, read by every connection
 * thread: an atomic, as a sig_atomic_t is not between threads. */
static atomic_int stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static double real_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int connect_to(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 30, 0 };
	int one = 1;

	if (fd < 0)
		return -1;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Read one whole answer (headers and a Content-Length body); its status,
 * or -1.  The answers of the paths this is for are small. */
static int read_answer(int fd)
{
	char buf[16384];
	size_t len = 0;
	char *end = NULL;

	for (;;) {
		if (len + 1 >= sizeof(buf))
			return -1;
		ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		if (end == NULL && (end = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		const char *cl = strcasestr(buf, "\r\nContent-Length:");
		size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
		size_t need = (size_t)(end + 4 - buf) + body;
		if (len > need)
			return -1; /* one request at a time: nothing extra */
		if (len == need)
			break;
	}
	int status;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	return status;
}

/* Take the right to send one more request: 0 once the total is reached or
 * a stop was asked for. */
static int take_one(void)
{
	if (stop)
		return 0;
	if (want == 0) {
		atomic_fetch_add(&sent, 1);
		return 1;
	}
	unsigned long long n = atomic_load(&sent);
	while (n < want)
		if (atomic_compare_exchange_weak(&sent, &n, n + 1))
			return 1;
	return 0;
}

static void *conn_main(void *arg)
{
	int fd = -1;

	(void)arg;
	while (take_one()) {
		if (fd < 0 && (fd = connect_to()) < 0) {
			atomic_fetch_add(&errors, 1);
			sleep_ms(10);
			continue;
		}
		if (send_all(fd, request, request_len) < 0 ||
		    read_answer(fd) != 200) {
			atomic_fetch_add(&errors, 1);
			close(fd);
			fd = -1;
			sleep_ms(10);
			continue;
		}
		atomic_fetch_add(&ok, 1);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: http_load --port P [--host H] [--conns N] "
			"[--path PATH] [--requests N] [--every MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	unsigned long conns = 2, every_ms = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			return usage();
		i++;
		if (strcmp(a, "--port") == 0)
			port = atoi(v);
		else if (strcmp(a, "--host") == 0)
			host = v;
		else if (strcmp(a, "--conns") == 0)
			conns = strtoul(v, NULL, 10);
		else if (strcmp(a, "--path") == 0)
			path = v;
		else if (strcmp(a, "--requests") == 0)
			want = strtoull(v, NULL, 10);
		else if (strcmp(a, "--every") == 0)
			every_ms = strtoul(v, NULL, 10);
		else
			return usage();
	}
	if (port <= 0 || port > 65535 || conns == 0 || conns > MAX_CONNS ||
	    *path != '/')
		return usage();
	int n = snprintf(request, sizeof(request),
			 "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
	if (n < 0 || (size_t)n >= sizeof(request))
		return usage();
	request_len = (size_t)n;

	/* The threads leave the signals to the main thread, which stops
	 * them with the flag. */
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pthread_t th[MAX_CONNS];
	for (unsigned long i = 0; i < conns; i++)
		if (pthread_create(&th[i], NULL, conn_main, NULL) != 0) {
			fprintf(stderr, "http_load: cannot start a thread\n");
			return 1;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	printf("# ready pid %d conns %lu path %s\n", (int)getpid(), conns,
	       path);
	fflush(stdout);
	/* Until stopped, or until every request is answered. */
	long tick = every_ms ? (long)every_ms : 20;
	double next = real_now() + (double)tick / 1e3;
	while (!stop &&
	       (want == 0 || atomic_load(&ok) + atomic_load(&errors) < want)) {
		sleep_ms(tick);
		if (every_ms && real_now() >= next) {
			printf("t %.3f ok %llu errors %llu\n", real_now(),
			       atomic_load(&ok), atomic_load(&errors));
			fflush(stdout);
			next += (double)every_ms / 1e3;
		}
	}
	stop = 1;
	for (unsigned long i = 0; i < conns; i++)
		pthread_join(th[i], NULL);
	printf("total ok %llu errors %llu\n", atomic_load(&ok),
	       atomic_load(&errors));
	fflush(stdout);
	return atomic_load(&errors) == 0 ? 0 : 1;
}
