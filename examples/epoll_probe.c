/*
 * epoll_probe.c - a hand-written epoll loop that reports its callbacks to
 * loopwatch through the probe API alone (lw_probe_*), as any event loop
 * that is not libloopwatch's would.
 *
 * The loop watches a timerfd (a tick every --tick-ms) and a pipe that a
 * helper thread writes to; the timer callback blocks for --block-ms every
 * --block-every ticks, so a reader sees one callback that holds up the loop.
 *
 *   epoll_probe [--tick-ms N] [--block-ms N] [--block-every N] [--seconds N]
 *
 * It prints "ready PID" once the loop runs, and exits after --seconds (0:
 * until SIGINT/SIGTERM).
 */
#include <loopwatch.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int tick_ms = 10, block_ms = 50, block_every = 20, seconds;
static int pipefd[2];
/* Set by the signal handler (on the loop thread) and at the end, read by
 * the writer thread too: atomic, since a volatile flag is not enough
 * between threads (TSan reports it as the data race it is). */
static int done;

static void on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&done, 1, __ATOMIC_RELAXED);
}

static int is_done(void)
{
	return __atomic_load_n(&done, __ATOMIC_RELAXED);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The loop's callbacks: ordinary functions of the program. */
static long ticks;
static uint64_t expirations; /* periods elapsed since the last read */
static void on_tick(int fd)
{
	expirations = 0;
	if (read(fd, &expirations, sizeof(expirations)) < 0)
		return;
	if (++ticks % block_every == 0)
		usleep((useconds_t)block_ms * 1000); /* the stall */
}

static long messages;
static void on_message(int fd)
{
	char buf[256];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n > 0)
		messages += n;
}

static void *writer(void *arg)
{
	(void)arg;
	while (!is_done()) {
		if (write(pipefd[1], "m", 1) < 0)
			break;
		usleep(3000);
	}
	return NULL;
}

static int parse_int(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end != 0 || v < 0 || v > 1000000)
		return -1;
	*out = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int *dst = NULL;
		if (strcmp(argv[i], "--tick-ms") == 0)
			dst = &tick_ms;
		else if (strcmp(argv[i], "--block-ms") == 0)
			dst = &block_ms;
		else if (strcmp(argv[i], "--block-every") == 0)
			dst = &block_every;
		else if (strcmp(argv[i], "--seconds") == 0)
			dst = &seconds;
		else if (strcmp(argv[i], "--help") == 0) {
			printf("usage: epoll_probe [--tick-ms N] [--block-ms "
			       "N] "
			       "[--block-every N] [--seconds N]\n");
			return 0;
		}
		if (dst == NULL || i + 1 == argc || parse_int(argv[++i], dst)) {
			fprintf(stderr,
				"epoll_probe: bad argument '%s' (try "
				"--help)\n",
				argv[i]);
			return 2;
		}
	}
	if (tick_ms < 1 || block_every < 1) {
		fprintf(stderr, "epoll_probe: --tick-ms and --block-every "
				"must be at least 1\n");
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	/* The probe: one ring for this loop, and a site per callback. */
	lw_probe_t *probe;
	if (lw_probe_new(&probe, "epoll-main", 0) != 0) {
		fprintf(stderr, "epoll_probe: cannot make the probe\n");
		return 1;
	}
	uint32_t tick_site =
		lw_probe_site(probe, LW_KIND_TIMER, LW_FN(on_tick), "on_tick");
	uint32_t msg_site = lw_probe_site(probe, LW_KIND_IO, LW_FN(on_message),
					  "on_message");

	int ep = epoll_create1(EPOLL_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ep < 0 || tfd < 0 || pipe(pipefd) < 0) {
		perror("epoll_probe: setup");
		return 1;
	}
	struct itimerspec its = {
		.it_interval = { tick_ms / 1000, (tick_ms % 1000) * 1000000L },
		.it_value = { tick_ms / 1000, (tick_ms % 1000) * 1000000L },
	};
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.fd = pipefd[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev);

	pthread_t th;
	pthread_create(&th, NULL, writer, NULL);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);

	uint64_t end =
		seconds ? mono_ns() + (uint64_t)seconds * 1000000000u : 0;
	uint64_t next_due = mono_ns() + (uint64_t)tick_ms * 1000000u;
	while (!is_done() && (end == 0 || mono_ns() < end)) {
		struct epoll_event events[16];
		lw_probe_wait_enter(probe);
		int n = epoll_wait(ep, events, 16, 100);
		lw_probe_wait_exit(probe);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (events[i].data.fd == tfd) {
				/* A timer: the earliest deadline not yet served
				 * gives the lateness (the loop's lag); then the
				 * grid moves on by the periods that elapsed. */
				lw_probe_begin(probe, tick_site, next_due);
				on_tick(tfd);
				lw_probe_end(probe);
				next_due += (expirations ? expirations : 1) *
					    (uint64_t)tick_ms * 1000000u;
			} else {
				lw_probe_begin(probe, msg_site, 0);
				on_message(pipefd[0]);
				lw_probe_end(probe);
			}
		}
	}
	__atomic_store_n(&done, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	printf("ticks %ld messages %ld\n", ticks, messages);
	lw_probe_free(probe);
	close(tfd);
	close(ep);
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}
