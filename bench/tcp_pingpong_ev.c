/*
 * tcp_pingpong_ev.c - TCP ping-pong on libev.  libev has no stream API, so
 * this is what a libev program does: raw non-blocking sockets, an ev_io
 * read watcher per connection, and a write that goes straight to the socket,
 * with an outbound buffer and a write watcher only for what the socket did
 * not take.  The same work as tcp_pingpong_lw.c; see there and
 * bench/README.md.
 *
 * The connection is set up with plain blocking calls before the loop runs
 * (on loopback, connect() completes against the listen backlog); set-up is
 * not measured.
 */
#include "lib/bench.h"

#include <ev.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
	int fd;
	ev_io rio, wio;
	/* Bytes the socket has not taken yet. */
	char out[65536];
	size_t out_len;
	void (*on_data)(struct conn *c, const char *data, size_t len);
} conn_t;

static struct ev_loop *loop;
static conn_t client, server;
static char msg[BENCH_TCP_MSG];
static char buf[65536];
static size_t got, trips, target;

static void conn_send(conn_t *c, const char *data, size_t len)
{
	ssize_t n = 0;

	if (c->out_len == 0) {
		n = write(c->fd, data, len);
		if (n < 0 && errno != EAGAIN)
			bench_die("write", errno);
		if (n < 0)
			n = 0;
		if ((size_t)n == len)
			return;
	}
	if (c->out_len + len - (size_t)n > sizeof(c->out))
		bench_die("outbound buffer full", 0);
	memcpy(c->out + c->out_len, data + n, len - (size_t)n);
	c->out_len += len - (size_t)n;
	ev_io_start(loop, &c->wio);
}

static void on_writable(struct ev_loop *l, ev_io *w, int revents)
{
	conn_t *c = w->data;
	ssize_t n;

	(void)revents;
	n = write(c->fd, c->out, c->out_len);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n < 0)
		bench_die("write", errno);
	memmove(c->out, c->out + n, c->out_len - (size_t)n);
	c->out_len -= (size_t)n;
	if (c->out_len == 0)
		ev_io_stop(l, w);
}

static void on_readable(struct ev_loop *l, ev_io *w, int revents)
{
	conn_t *c = w->data;
	ssize_t n;

	(void)l;
	(void)revents;
	n = read(c->fd, buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0)
		bench_die("read", n == 0 ? EPIPE : errno);
	c->on_data(c, buf, (size_t)n);
}

static void server_on_data(conn_t *c, const char *data, size_t len)
{
	conn_send(c, data, len);
}

static void client_on_data(conn_t *c, const char *data, size_t len)
{
	(void)data;
	got += len;
	if (got < sizeof(msg))
		return;
	got = 0;
	if (++trips == target) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	conn_send(c, msg, sizeof(msg));
}

static void conn_init(conn_t *c, int fd,
		      void (*on_data)(conn_t *, const char *, size_t))
{
	int one = 1;

	/* Every peer turns Nagle off on both ends. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		bench_die("setsockopt TCP_NODELAY", errno);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		bench_die("fcntl O_NONBLOCK", errno);
	c->fd = fd;
	c->out_len = 0;
	c->on_data = on_data;
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	c->rio.data = c;
	c->wio.data = c;
	ev_io_start(loop, &c->rio);
}

int main(int argc, char **argv)
{
	bench_metric_t m_trip = { .name = "tcp_pingpong_rtt" };
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	bench_opts_t o;
	uint64_t t0, t1;
	int lfd, cfd, sfd, rep;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_TCP_TRIPS);
	memset(msg, 'p', sizeof(msg));
	loop = ev_loop_new(EVBACKEND_EPOLL);
	if (loop == NULL)
		bench_die("ev_loop_new", 0);

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		bench_die("socket", errno);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(lfd, 128) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len) != 0)
		bench_die("listen", errno);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0)
		bench_die("socket", errno);
	if (connect(cfd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		bench_die("connect", errno);
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (sfd < 0)
		bench_die("accept", errno);
	conn_init(&client, cfd, client_on_data);
	conn_init(&server, sfd, server_on_data);

	for (rep = 0; rep < o.reps; rep++) {
		trips = 0;
		t0 = bench_now_ns();
		conn_send(&client, msg, sizeof(msg));
		ev_run(loop, 0);
		t1 = bench_now_ns();
		if (trips != target)
			bench_die("the ping-pong stopped early", 0);
		bench_metric_add(&m_trip, (double)(t1 - t0) / (double)target);
	}

	ev_io_stop(loop, &client.rio);
	ev_io_stop(loop, &client.wio);
	ev_io_stop(loop, &server.rio);
	ev_io_stop(loop, &server.wio);
	close(cfd);
	close(sfd);
	close(lfd);
	ev_loop_destroy(loop);
	bench_metric_print(&m_trip);
	return 0;
}
