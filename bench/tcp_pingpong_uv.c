/*
 * tcp_pingpong_uv.c - TCP ping-pong on libuv streams (uv_tcp_t, uv_write,
 * uv_read_start).  The same work as tcp_pingpong_lw.c; see there and
 * bench/README.md.
 *
 * Each write carries its own copy of the bytes in a malloc'd request, the
 * way libuv's own echo examples do it (and as lw_conn_write() copies into
 * its outbound buffer).
 */
#include "lib/bench.h"

#include <uv.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct write_req {
	uv_write_t req;
	char data[]; /* the bytes being written, owned by the request */
} write_req_t;

static uv_loop_t loop;
static uv_tcp_t listener, server, client;
static uv_connect_t connect_req;
static char msg[BENCH_TCP_MSG];
static char client_buf[65536], server_buf[65536];
static size_t got, trips, target;
static int up, down;

static void on_write(uv_write_t *req, int status)
{
	BENCH_CHECK(status, "uv_write");
	free(req);
}

static void send_copy(uv_tcp_t *tcp, const char *data, size_t len)
{
	write_req_t *w = malloc(sizeof(*w) + len);
	uv_buf_t buf;

	if (w == NULL)
		bench_die("malloc", ENOMEM);
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	BENCH_CHECK(uv_write(&w->req, (uv_stream_t *)tcp, &buf, 1, on_write),
		    "uv_write");
}

static void alloc_client(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	(void)hint;
	*buf = uv_buf_init(client_buf, sizeof(client_buf));
}

static void alloc_server(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	(void)hint;
	*buf = uv_buf_init(server_buf, sizeof(server_buf));
}

static void server_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	if (nread < 0)
		bench_die("server read", (int)-nread);
	if (nread > 0)
		send_copy((uv_tcp_t *)s, buf->base, (size_t)nread);
}

static void client_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	if (nread < 0)
		bench_die("client read", (int)-nread);
	got += (size_t)nread;
	if (got < sizeof(msg))
		return;
	got = 0;
	if (++trips == target) {
		uv_stop(&loop);
		return;
	}
	send_copy((uv_tcp_t *)s, msg, sizeof(msg));
}

static void on_up(void)
{
	if (++up == 2)
		uv_stop(&loop);
}

static void on_accept(uv_stream_t *l, int status)
{
	BENCH_CHECK(status, "listen");
	BENCH_CHECK(uv_tcp_init(&loop, &server), "uv_tcp_init");
	BENCH_CHECK(uv_accept(l, (uv_stream_t *)&server), "uv_accept");
	/* Every peer turns Nagle off on both ends. */
	BENCH_CHECK(uv_tcp_nodelay(&server, 1), "uv_tcp_nodelay");
	BENCH_CHECK(uv_read_start((uv_stream_t *)&server, alloc_server,
				  server_on_read),
		    "uv_read_start");
	on_up();
}

static void on_connect(uv_connect_t *req, int status)
{
	(void)req;
	BENCH_CHECK(status, "uv_tcp_connect");
	BENCH_CHECK(uv_tcp_nodelay(&client, 1), "uv_tcp_nodelay");
	BENCH_CHECK(uv_read_start((uv_stream_t *)&client, alloc_client,
				  client_on_read),
		    "uv_read_start");
	on_up();
}

static void on_close(uv_handle_t *h)
{
	(void)h;
	down++;
}

int main(int argc, char **argv)
{
	bench_metric_t m_trip = { .name = "tcp_pingpong_rtt" };
	struct sockaddr_in addr;
	struct sockaddr_storage bound;
	int len = sizeof(bound);
	bench_opts_t o;
	uint64_t t0, t1;
	int rep;

	bench_init(argc, argv, &o);
	target = bench_count(&o, BENCH_TCP_TRIPS);
	memset(msg, 'p', sizeof(msg));
	BENCH_CHECK(uv_loop_init(&loop), "uv_loop_init");
	BENCH_CHECK(uv_ip4_addr("127.0.0.1", 0, &addr), "uv_ip4_addr");
	BENCH_CHECK(uv_tcp_init(&loop, &listener), "uv_tcp_init");
	BENCH_CHECK(uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0),
		    "uv_tcp_bind");
	BENCH_CHECK(uv_listen((uv_stream_t *)&listener, 128, on_accept),
		    "uv_listen");
	BENCH_CHECK(
		uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len),
		"uv_tcp_getsockname");
	BENCH_CHECK(uv_tcp_init(&loop, &client), "uv_tcp_init");
	BENCH_CHECK(uv_tcp_connect(&connect_req, &client,
				   (struct sockaddr *)&bound, on_connect),
		    "uv_tcp_connect");
	uv_run(&loop, UV_RUN_DEFAULT);
	if (up != 2)
		bench_die("connect", 0);

	for (rep = 0; rep < o.reps; rep++) {
		trips = 0;
		t0 = bench_now_ns();
		send_copy(&client, msg, sizeof(msg));
		uv_run(&loop, UV_RUN_DEFAULT);
		t1 = bench_now_ns();
		if (trips != target)
			bench_die("the ping-pong stopped early", 0);
		bench_metric_add(&m_trip, (double)(t1 - t0) / (double)target);
	}

	uv_close((uv_handle_t *)&client, on_close);
	uv_close((uv_handle_t *)&server, on_close);
	uv_close((uv_handle_t *)&listener, on_close);
	uv_run(&loop, UV_RUN_DEFAULT);
	BENCH_CHECK(uv_loop_close(&loop), "uv_loop_close");
	bench_metric_print(&m_trip);
	return 0;
}
