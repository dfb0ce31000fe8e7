/*
 * tcp_pingpong_event.c - TCP ping-pong on libevent's bufferevents
 * (evconnlistener, bufferevent_socket_connect, bufferevent_write).  The same
 * work as tcp_pingpong_lw.c; see there and bench/README.md.
 *
 * The server echoes by moving its input buffer into its output buffer, the
 * idiomatic libevent echo.  bufferevent_write() does not write at once: it
 * arms the write event and the bytes leave on the next loop iteration.  That
 * is how libevent's stream API works, so it is what is measured.
 */
#include "lib/bench.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

static struct event_base *base;
static struct bufferevent *client, *server;
static char msg[BENCH_TCP_MSG];
static size_t got, trips, target;
static int up;

/* Every peer turns Nagle off on both ends. */
static void nodelay(evutil_socket_t fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		bench_die("setsockopt TCP_NODELAY", errno);
}

static void on_up(void)
{
	if (++up == 2)
		event_base_loopbreak(base);
}

static void server_on_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	BENCH_CHECK(evbuffer_add_buffer(bufferevent_get_output(bev),
					bufferevent_get_input(bev)),
		    "evbuffer_add_buffer");
}

static void client_on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);

	(void)arg;
	BENCH_CHECK(evbuffer_drain(in, n), "evbuffer_drain");
	got += n;
	if (got < sizeof(msg))
		return;
	got = 0;
	if (++trips == target) {
		event_base_loopbreak(base);
		return;
	}
	BENCH_CHECK(bufferevent_write(bev, msg, sizeof(msg)),
		    "bufferevent_write");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_CONNECTED) {
		nodelay(bufferevent_getfd(bev));
		on_up();
		return;
	}
	bench_die("connection event", errno);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	nodelay(fd);
	server = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (server == NULL)
		bench_die("bufferevent_socket_new", 0);
	bufferevent_setcb(server, server_on_read, NULL, on_event, NULL);
	BENCH_CHECK(bufferevent_enable(server, EV_READ), "bufferevent_enable");
	on_up();
}

int main(int argc, char **argv)
{
	bench_metric_t m_trip = { .name = "tcp_pingpong_rtt" };
	struct evconnlistener *listener;
	struct event_config *cfg;
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	bench_opts_t o;
	uint64_t t0, t1;
	int rep;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_TCP_TRIPS);
	memset(msg, 'p', sizeof(msg));
	/* epoll, and no lock: the same set-up as timers_event.c. */
	cfg = event_config_new();
	if (cfg == NULL)
		bench_die("event_config_new", 0);
	event_config_avoid_method(cfg, "select");
	event_config_avoid_method(cfg, "poll");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	if (base == NULL)
		bench_die("event_base_new_with_config", 0);

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener = evconnlistener_new_bind(
		base, on_accept, NULL,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
		(struct sockaddr *)&addr, sizeof(addr));
	if (listener == NULL)
		bench_die("evconnlistener_new_bind", errno);
	if (getsockname(evconnlistener_get_fd(listener),
			(struct sockaddr *)&addr, &len) != 0)
		bench_die("getsockname", errno);
	client = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (client == NULL)
		bench_die("bufferevent_socket_new", 0);
	bufferevent_setcb(client, client_on_read, NULL, on_event, NULL);
	BENCH_CHECK(bufferevent_socket_connect(client, (struct sockaddr *)&addr,
					       sizeof(addr)),
		    "bufferevent_socket_connect");
	BENCH_CHECK(bufferevent_enable(client, EV_READ), "bufferevent_enable");
	BENCH_CHECK(event_base_dispatch(base) < 0, "event_base_dispatch");
	if (up != 2)
		bench_die("connect", 0);

	for (rep = 0; rep < o.reps; rep++) {
		trips = 0;
		t0 = bench_now_ns();
		BENCH_CHECK(bufferevent_write(client, msg, sizeof(msg)),
			    "bufferevent_write");
		BENCH_CHECK(event_base_dispatch(base) < 0,
			    "event_base_dispatch");
		t1 = bench_now_ns();
		if (trips != target)
			bench_die("the ping-pong stopped early", 0);
		bench_metric_add(&m_trip, (double)(t1 - t0) / (double)target);
	}

	bufferevent_free(client);
	bufferevent_free(server);
	evconnlistener_free(listener);
	event_base_free(base);
	event_config_free(cfg);
	bench_metric_print(&m_trip);
	return 0;
}
