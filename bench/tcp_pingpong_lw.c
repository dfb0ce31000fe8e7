/*
 * tcp_pingpong_lw.c - TCP ping-pong on loopwatch's connections
 * (lw_server_start, lw_connect, lw_conn_write, on_data).  See
 * bench/README.md; tcp_pingpong_uv.c, _ev.c and _event.c do the same work.
 *
 * One client and one server connection on the same loop, over loopback.  The
 * client sends a BENCH_TCP_MSG-byte message, the server echoes whatever it
 * receives, and when the whole message is back the client sends the next
 * one.  The figure is the time per round trip: two wake-ups, two reads and two
 * writes, through each library's buffered stream API.  Connecting is set-up,
 * not measured.
 */
#include "lib/bench.h"

#include <loopwatch.h>

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static lw_loop_t *loop;
static lw_conn_t *client;
static char msg[BENCH_TCP_MSG];
static size_t got, trips, target;
static int up, down;

/* Every peer turns Nagle off on both ends, so none of them waits for an
 * acknowledgement before sending a message. */
static void nodelay(lw_conn_t *c)
{
	int one = 1;

	if (setsockopt(lw_conn_fd(c), IPPROTO_TCP, TCP_NODELAY, &one,
		       sizeof(one)) != 0)
		bench_die("setsockopt TCP_NODELAY", errno);
}

static void on_connect(lw_conn_t *c)
{
	nodelay(c);
	if (++up == 2)
		lw_stop(loop);
}

static void on_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	if (up == 2 && trips < target)
		bench_die(lw_unbind_reason_name(reason), err);
	if (up < 2)
		bench_die("connect", err);
	if (++down == 2)
		lw_stop(loop);
}

static void server_on_data(lw_conn_t *c, const char *data, size_t len)
{
	BENCH_CHECK(lw_conn_write(c, data, len), "lw_conn_write");
}

static void client_on_data(lw_conn_t *c, const char *data, size_t len)
{
	(void)data;
	got += len;
	if (got < sizeof(msg))
		return;
	got = 0;
	if (++trips == target) {
		lw_stop(loop);
		return;
	}
	BENCH_CHECK(lw_conn_write(c, msg, sizeof(msg)), "lw_conn_write");
}

static const lw_conn_handlers_t server_handlers = {
	.on_connect = on_connect,
	.on_data = server_on_data,
	.on_unbind = on_unbind,
};

static const lw_conn_handlers_t client_handlers = {
	.on_connect = on_connect,
	.on_data = client_on_data,
	.on_unbind = on_unbind,
};

int main(int argc, char **argv)
{
	bench_metric_t m_trip = { .name = "tcp_pingpong_rtt" };
	lw_loop_options_t lo = { .name = "bench", .defer_threads = 1 };
	lw_server_t *server;
	bench_opts_t o;
	uint64_t t0, t1;
	int rep;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_TCP_TRIPS);
	memset(msg, 'p', sizeof(msg));
	BENCH_CHECK(lw_loop_new(&loop, &lo), "lw_loop_new");
	BENCH_CHECK(lw_server_start(loop, "127.0.0.1", 0, &server_handlers,
				    NULL, NULL, &server),
		    "lw_server_start");
	BENCH_CHECK(lw_connect(loop, "127.0.0.1", lw_server_port(server),
			       &client_handlers, NULL, NULL, &client),
		    "lw_connect");
	BENCH_CHECK(lw_run(loop), "lw_run");

	for (rep = 0; rep < o.reps; rep++) {
		trips = 0;
		t0 = bench_now_ns();
		BENCH_CHECK(lw_conn_write(client, msg, sizeof(msg)),
			    "lw_conn_write");
		BENCH_CHECK(lw_run(loop), "lw_run");
		t1 = bench_now_ns();
		if (trips != target)
			bench_die("the ping-pong stopped early", 0);
		bench_metric_add(&m_trip, (double)(t1 - t0) / (double)target);
	}

	/* Closing the client makes the server see end-of-file; both unbind. */
	lw_server_stop(server);
	BENCH_CHECK(lw_conn_close(client, 0), "lw_conn_close");
	BENCH_CHECK(lw_run(loop), "lw_run");
	lw_loop_free(loop);
	bench_metric_print(&m_trip);
	return 0;
}
