/*
 * plain_loop.c - an uninstrumented epoll server: it stands for a foreign
 * program such as redis, so it calls no lw_* function and carries no ring.
 * Its helper threads are not loop threads, so that loop-thread detection
 * (agent/threads.c) has to choose, and its commands stall the loop on
 * purpose for the kernel probes' tests.
 *
 *   plain_loop [--port N] [--poll-thread]
 *
 * Threads: the loop (main thread, comm "plain_loop"): epoll_wait over a TCP
 * listener on 127.0.0.1:N (0, the default: any free port) and its clients;
 * "worker1" and "worker2": wait on a condition variable forever (futex);
 * "sleeper": nanosleep 1 s in a loop; with --poll-thread, "poller": poll()
 * on a pipe with a 1 s timeout in a loop, a second event-wait thread.
 *
 * At start it prints one line, flushed, once every thread is started:
 *   plain_loop listening on 127.0.0.1:PORT (pid PID, loop tid TID)
 *
 * Protocol, one reply line per request line:
 *   ping      -> pong
 *   cpu MS    -> burn the CPU for MS ms in burn_cpu(), then done
 *   sleep MS  -> nanosleep MS ms in slow_sleep(), then done
 *   quit      -> exit 0 (so does SIGTERM)
 *   other     -> error
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_MS 60000

struct conn {
	int fd;
	size_t in_len, out_len;
	char in[1024];
	char out[4096];
};

static volatile uint64_t sink; /* keeps burn_cpu's work observable */
static pthread_mutex_t never_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cv = PTHREAD_COND_INITIALIZER;

/* Exit at once from whichever thread gets it: nothing needs cleaning up,
 * and the loop need not notice (no race with its epoll_wait). */
static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A CPU-bound stall: xorshift rounds until ms have passed, checking the
 * clock only every 4096 rounds so the time goes to the computation. */
__attribute__((noinline)) static uint64_t burn_cpu(int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u,
		 x = 88172645463325252u;
	do {
		for (int i = 0; i < 4096; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
	} while (now_ns() < end);
	sink = x;
	return x;
}

/* A sleeping stall: the loop thread blocks in nanosleep. */
__attribute__((noinline)) static void slow_sleep(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&never_mu);
	for (;;)
		pthread_cond_wait(&never_cv, &never_mu);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec t = { 1, 0 };
		nanosleep(&t, NULL);
	}
	return NULL;
}

static void *poller(void *arg)
{
	struct pollfd p = { .fd = *(int *)arg, .events = POLLIN };
	for (;;)
		poll(&p, 1, 1000);
	return NULL;
}

static void start_thread(void *(*fn)(void *), void *arg, const char *name)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, fn, arg);
	if (r != 0) {
		fprintf(stderr, "plain_loop: cannot start %s: %s\n", name,
			strerror(r));
		exit(1);
	}
	pthread_setname_np(t, name);
}

static void reply(struct conn *c, const char *s)
{
	size_t n = strlen(s);
	if (c->out_len + n > sizeof(c->out))
		return; /* a client that never reads loses replies */
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

static void command(struct conn *c, char *line)
{
	int ms;
	char extra;

	if (strcmp(line, "ping") == 0) {
		reply(c, "pong\n");
	} else if (sscanf(line, "cpu %d %c", &ms, &extra) == 1 && ms >= 0 &&
		   ms <= MAX_MS) {
		burn_cpu(ms);
		reply(c, "done\n");
	} else if (sscanf(line, "sleep %d %c", &ms, &extra) == 1 && ms >= 0 &&
		   ms <= MAX_MS) {
		slow_sleep(ms);
		reply(c, "done\n");
	} else if (strcmp(line, "quit") == 0) {
		exit(0);
	} else {
		reply(c, "error\n");
	}
}

/* Read what is there, run every complete line, write what fits; 0 to keep
 * the connection, -1 to close it. */
static int serve(int ep, struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len,
				 sizeof(c->in) - c->in_len, 0);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			break;
		}
		c->in_len += (size_t)n;
		char *nl;
		while ((nl = memchr(c->in, '\n', c->in_len)) != NULL) {
			*nl = '\0';
			if (nl > c->in && nl[-1] == '\r')
				nl[-1] = '\0';
			command(c, c->in);
			c->in_len -= (size_t)(nl + 1 - c->in);
			memmove(c->in, nl + 1, c->in_len);
		}
		if (c->in_len == sizeof(c->in))
			return -1; /* a line too long for the buffer */
	}
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -1;
		c->out_len -= (size_t)n;
		memmove(c->out, c->out + n, c->out_len);
	}
	struct epoll_event ev = { .events =
					  EPOLLIN | (c->out_len ? EPOLLOUT : 0),
				  .data.ptr = c };
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: plain_loop [--port N] [--poll-thread]\n"
		   "An uninstrumented epoll server for loopwatch's tests.\n");
}

int main(int argc, char **argv)
{
	int port = 0, poll_thread = 0, pfd[2];

	for (int i = 1; i < argc; i++) {
		char *end;
		if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--poll-thread") == 0) {
			poll_thread = 1;
		} else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			port = (int)strtol(argv[++i], &end, 10);
			if (*end != '\0' || end == argv[i] || port < 0 ||
			    port > 65535) {
				fprintf(stderr, "plain_loop: bad port '%s'\n",
					argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr,
				"plain_loop: bad argument '%s' (try --help)\n",
				argv[i]);
			return 2;
		}
	}

	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	start_thread(worker, NULL, "worker1");
	start_thread(worker, NULL, "worker2");
	start_thread(sleeper, NULL, "sleeper");
	if (poll_thread) {
		if (pipe(pfd) < 0) {
			perror("plain_loop: cannot create pipe");
			return 1;
		}
		start_thread(poller, &pfd[0], "poller");
	}

	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int one = 1;
	int lfd =
		socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
		fprintf(stderr,
			"plain_loop: cannot listen on 127.0.0.1:%d: %s\n", port,
			strerror(errno));
		return 1;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("plain_loop listening on 127.0.0.1:%d (pid %d, loop tid %d)\n",
	       ntohs(a.sin_port), (int)getpid(), (int)syscall(SYS_gettid));
	fflush(stdout);

	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd = accept4(lfd, NULL, NULL,
						 SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				c = calloc(1, sizeof(*c));
				if (c == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			} else if (serve(ep, c) < 0) {
				close(c->fd);
				free(c);
			}
		}
	}
}
