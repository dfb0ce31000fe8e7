/*
 * test_tcp.c - TCP connections and servers over real loopback sockets.
 *
 * Each test runs in its own process (tests/runner.c), so the file-level
 * state below is per test.
 */
#include "lwtest.h"

#include "loopwatch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---- helpers ---- */

static lw_loop_t *loop;

static void guard_cb(lw_timer_t *t)
{
	(void)t;
	LWT_FAIL("the loop was still running after the guard timeout");
}

/* A loop with a guard timer that fails the test if it never stops. */
static lw_timer_t guard;
static lw_loop_t *make_loop(int64_t guard_ms)
{
	lw_loop_t *l;
	ASSERT_OK(lw_loop_new(&l, NULL));
	ASSERT_OK(lw_timer_init(l, &guard));
	ASSERT_OK(lw_timer_start(&guard, guard_cb, guard_ms, 0));
	return l;
}

static void run_and_free(void)
{
	lw_timer_stop(&guard);
	lw_loop_free(loop);
	loop = NULL;
}

/* A raw listening socket on 127.0.0.1, any port. */
static int raw_listener(int backlog, uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)));
	if (backlog >= 0)
		ASSERT_OK(listen(fd, backlog));
	socklen_t sl = sizeof(sin);
	ASSERT_OK(getsockname(fd, (struct sockaddr *)&sin, &sl));
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The test payload: position-dependent, so a lost, repeated or reordered
 * byte shows. */
static inline uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i % 251) + (i >> 16) * 7);
}

static char *pattern_buf(size_t n)
{
	char *p = malloc(n);
	ASSERT(p != NULL);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)pattern(i);
	return p;
}

static void no_connect(lw_conn_t *c)
{
	(void)c;
	LWT_FAIL("on_connect must not run");
}

static void no_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)c, (void)d, (void)n;
	LWT_FAIL("on_data must not run");
}

/* ------------------------------------------------------------------------ */
/* tcp_echo_1000                                                             */
/* ------------------------------------------------------------------------ */

#define ECHO_N 1000

struct echo_client {
	char msg[48];
	size_t len, got;
	char buf[48];
	int unbound;
};

static struct echo_client echo_clients[ECHO_N];
static int echo_srv_connects, echo_srv_unbinds, echo_cli_connects,
	echo_cli_unbinds;
static lw_server_t *echo_server;

static void echo_check_done(void)
{
	if (echo_srv_unbinds == ECHO_N && echo_cli_unbinds == ECHO_N) {
		lw_server_stop(echo_server);
		lw_stop(loop);
	}
}

static void echo_srv_connect(lw_conn_t *c)
{
	(void)c;
	echo_srv_connects++;
}

static void echo_srv_data(lw_conn_t *c, const char *d, size_t n)
{
	ASSERT_OK(lw_conn_write(c, d, n));
}

static void echo_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	ASSERT_EQ(reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(err, 0);
	echo_srv_unbinds++;
	echo_check_done();
}

static void echo_cli_connect(lw_conn_t *c)
{
	struct echo_client *e = lw_conn_data(c);
	echo_cli_connects++;
	char peer[64];
	ASSERT_OK(lw_conn_peer(c, peer, sizeof(peer)));
	ASSERT_EQ(strncmp(peer, "127.0.0.1:", 10), 0);
	ASSERT_OK(lw_conn_write(c, e->msg, e->len));
}

static void echo_cli_data(lw_conn_t *c, const char *d, size_t n)
{
	struct echo_client *e = lw_conn_data(c);
	ASSERT_LE(e->got + n, e->len);
	memcpy(e->buf + e->got, d, n);
	e->got += n;
	if (e->got == e->len) {
		ASSERT_EQ(memcmp(e->buf, e->msg, e->len), 0);
		/* Closing from inside on_data, then using the pointer
		 * until the callback returns, is allowed. */
		ASSERT_OK(lw_conn_close(c, 0));
		ASSERT_EQ(lw_conn_write(c, "x", 1), -ENOTCONN);
		ASSERT_EQ(e->unbound, 0);
	}
}

static void echo_cli_unbind(lw_conn_t *c, int reason, int err)
{
	struct echo_client *e = lw_conn_data(c);
	ASSERT_EQ(reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(err, 0);
	ASSERT_EQ(e->got, e->len);
	ASSERT_EQ(e->unbound, 0);
	e->unbound = 1;
	echo_cli_unbinds++;
	echo_check_done();
}

TEST_T(tcp_echo_1000, 120)
{
	struct rlimit rl;
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2200)
		SKIP("RLIMIT_NOFILE hard limit %llu < 2200 (2 fds per "
		     "connection)",
		     (unsigned long long)rl.rlim_max);
	rl.rlim_cur = rl.rlim_max;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));

	loop = make_loop(100000);
	lw_conn_handlers_t sh = { .on_connect = echo_srv_connect,
				  .on_data = echo_srv_data,
				  .on_unbind = echo_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL,
				  &echo_server));
	uint16_t port = lw_server_port(echo_server);
	ASSERT_NE(port, 0);

	lw_conn_handlers_t ch = { .on_connect = echo_cli_connect,
				  .on_data = echo_cli_data,
				  .on_unbind = echo_cli_unbind };
	for (int i = 0; i < ECHO_N; i++) {
		struct echo_client *e = &echo_clients[i];
		e->len = (size_t)snprintf(e->msg, sizeof(e->msg),
					  "hello from client %d", i);
		ASSERT_OK(lw_connect(loop, "127.0.0.1", port, &ch, NULL, e,
				     NULL));
	}
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(echo_srv_connects, ECHO_N);
	ASSERT_EQ(echo_cli_connects, ECHO_N);
	ASSERT_EQ(echo_srv_unbinds, ECHO_N);
	ASSERT_EQ(echo_cli_unbinds, ECHO_N);
	run_and_free();
}

/* ------------------------------------------------------------------------ */
/* tcp_backpressure_8mib                                                     */
/* ------------------------------------------------------------------------ */

#define BP_SIZE (8u << 20)
#define BP_PAUSE_MS 300

static struct {
	lw_conn_t *srv, *cli;
	lw_timer_t resume;
	int paused;
	size_t received;
	size_t outbound_at_resume;
	int sndbuf_at_resume;
	int drains, unbinds;
	char *payload;
} bp;

static void bp_resume_cb(lw_timer_t *t)
{
	(void)t;
	ASSERT(bp.cli != NULL);
	bp.outbound_at_resume = lw_conn_outbound_size(bp.cli);
	socklen_t sl = sizeof(bp.sndbuf_at_resume);
	ASSERT_OK(getsockopt(lw_conn_fd(bp.cli), SOL_SOCKET, SO_SNDBUF,
			     &bp.sndbuf_at_resume, &sl));
	bp.paused = 0;
	ASSERT_OK(lw_conn_resume(bp.srv));
}

static void bp_srv_connect(lw_conn_t *c)
{
	bp.srv = c;
	bp.paused = 1;
	ASSERT_OK(lw_conn_pause(c));
	ASSERT_OK(lw_timer_init(lw_conn_loop(c), &bp.resume));
	ASSERT_OK(lw_timer_start(&bp.resume, bp_resume_cb, BP_PAUSE_MS, 0));
}

static void bp_srv_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)c;
	ASSERT_EQ(bp.paused, 0);
	ASSERT_LE(bp.received + n, BP_SIZE);
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)d[i] != pattern(bp.received + i))
			LWT_FAIL("byte %zu: got %u, want %u", bp.received + i,
				 (uint8_t)d[i], pattern(bp.received + i));
	bp.received += n;
}

static void bp_unbind(lw_conn_t *c, int reason, int err)
{
	ASSERT_EQ(reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(err, 0);
	if (c == bp.cli)
		bp.cli = NULL;
	if (++bp.unbinds == 2)
		lw_stop(loop);
}

static void bp_cli_connect(lw_conn_t *c)
{
	bp.cli = c;
	ASSERT_OK(lw_conn_write(c, bp.payload, BP_SIZE));
	/* The socket cannot take 8 MiB at once: the rest is queued. */
	ASSERT_GT(lw_conn_outbound_size(c), 0);
}

static void bp_cli_drain(lw_conn_t *c)
{
	bp.drains++;
	ASSERT_EQ(lw_conn_outbound_size(c), 0);
	ASSERT_OK(lw_conn_close(c, 1));
}

TEST(tcp_backpressure_8mib)
{
	loop = make_loop(20000);
	bp.payload = pattern_buf(BP_SIZE);
	lw_server_t *s;
	lw_conn_handlers_t sh = { .on_connect = bp_srv_connect,
				  .on_data = bp_srv_data,
				  .on_unbind = bp_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL, &s));
	lw_conn_handlers_t ch = { .on_connect = bp_cli_connect,
				  .on_data = no_data,
				  .on_unbind = bp_unbind,
				  .on_drain = bp_cli_drain };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &ch, NULL,
			     NULL, NULL));
	ASSERT_OK(lw_run(loop));

	/* While the reader was paused, the bytes piled up in our buffer,
	 * beyond what the kernel's socket buffer holds. */
	ASSERT_GT(bp.sndbuf_at_resume, 0);
	ASSERT_GT(bp.outbound_at_resume, (size_t)bp.sndbuf_at_resume);
	ASSERT_EQ(bp.drains, 1);
	ASSERT_EQ(bp.received, BP_SIZE);
	ASSERT_EQ(bp.unbinds, 2);
	lw_server_stop(s);
	run_and_free();
	free(bp.payload);
}

/* ------------------------------------------------------------------------ */
/* tcp_refused                                                               */
/* ------------------------------------------------------------------------ */

static int refused_reason = -1, refused_err;

static void refused_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	ASSERT_EQ(refused_reason, -1);
	refused_reason = reason;
	refused_err = err;
	lw_stop(loop);
}

TEST(tcp_refused)
{
	/* Bound but not listening: the port is ours, and a SYN to it gets a
	 * reset. */
	uint16_t port;
	int fd = raw_listener(-1, &port);
	loop = make_loop(10000);
	lw_conn_handlers_t h = { .on_connect = no_connect,
				 .on_data = no_data,
				 .on_unbind = refused_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", port, &h, NULL, NULL, NULL));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(refused_reason, LW_UNBIND_REFUSED);
	ASSERT_EQ(refused_err, ECONNREFUSED);
	ASSERT_STREQ(lw_unbind_reason_name(refused_reason), "refused");
	run_and_free();
	close(fd);
}

/* ------------------------------------------------------------------------ */
/* tcp_reset                                                                 */
/* ------------------------------------------------------------------------ */

static int reset_listener, reset_connects, reset_reason = -1, reset_err;

static void reset_connect(lw_conn_t *c)
{
	(void)c;
	reset_connects++;
	/* The connection is established, so accept() does not block. */
	int fd = accept(reset_listener, NULL, NULL);
	ASSERT(fd >= 0);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	ASSERT_OK(close(fd)); /* sends RST */
}

static void reset_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	reset_reason = reason;
	reset_err = err;
	lw_stop(loop);
}

TEST(tcp_reset)
{
	uint16_t port;
	reset_listener = raw_listener(16, &port);
	loop = make_loop(10000);
	lw_conn_handlers_t h = { .on_connect = reset_connect,
				 .on_data = no_data,
				 .on_unbind = reset_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", port, &h, NULL, NULL, NULL));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(reset_connects, 1);
	ASSERT_EQ(reset_reason, LW_UNBIND_RESET);
	ASSERT_EQ(reset_err, ECONNRESET);
	run_and_free();
	close(reset_listener);
}

/* ------------------------------------------------------------------------ */
/* tcp_inactivity                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Three connections at once:
 *   A  the server's option (200 ms) on the accepted side; the client writes
 *      one byte after 100 ms, which must push the deadline back;
 *   B  the client's option (150 ms) against a silent server;
 *   C  lw_conn_set_inactivity_timeout(100 ms) from on_connect.
 */
static struct {
	uint64_t start_ns, write_ns;
	uint64_t a_srv_ns, b_cli_ns, c_cli_ns;
	int a_srv_reason, a_cli_reason, b_cli_reason, c_cli_reason;
	int unbinds;
	lw_conn_t *a_cli;
	lw_timer_t write_timer;
} ia = { .a_srv_reason = -1,
	 .a_cli_reason = -1,
	 .b_cli_reason = -1,
	 .c_cli_reason = -1 };

/* Unbinds expected: A server, A client, B client, B server, C client,
 * C server. */
static void ia_count(void)
{
	if (++ia.unbinds == 6)
		lw_stop(loop);
}

static void ia_write_cb(lw_timer_t *t)
{
	(void)t;
	ia.write_ns = lwt_now_ns();
	ASSERT_OK(lw_conn_write(ia.a_cli, "x", 1));
}

static void ia_a_cli_connect(lw_conn_t *c)
{
	ia.a_cli = c;
	ASSERT_OK(lw_timer_init(lw_conn_loop(c), &ia.write_timer));
	ASSERT_OK(lw_timer_start(&ia.write_timer, ia_write_cb, 100, 0));
}

static void ia_a_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ia.a_srv_reason = reason;
	ia.a_srv_ns = lwt_now_ns();
	ia_count();
}

static void ia_a_cli_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ia.a_cli_reason = reason;
	ia_count();
}

static void ia_b_cli_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ia.b_cli_reason = reason;
	ia.b_cli_ns = lwt_now_ns();
	ia_count();
}

static void ia_c_cli_connect(lw_conn_t *c)
{
	ASSERT_OK(lw_conn_set_inactivity_timeout(c, 100));
}

static void ia_c_cli_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ia.c_cli_reason = reason;
	ia.c_cli_ns = lwt_now_ns();
	ia_count();
}

static void ia_any_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)reason, (void)err;
	ia_count();
}

TEST(tcp_inactivity)
{
	loop = make_loop(10000);
	lw_server_t *sa, *sb;
	lw_server_options_t so = { .inactivity_timeout_ms = 200 };
	lw_conn_handlers_t ha = { .on_unbind = ia_a_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &ha, &so, NULL, &sa));
	lw_conn_handlers_t hb = { .on_unbind = ia_any_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &hb, NULL, NULL, &sb));

	ia.start_ns = lwt_now_ns();
	lw_conn_handlers_t ca = { .on_connect = ia_a_cli_connect,
				  .on_unbind = ia_a_cli_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(sa), &ca, NULL,
			     NULL, NULL));
	lw_connect_options_t co = { .inactivity_timeout_ms = 150 };
	lw_conn_handlers_t cb = { .on_unbind = ia_b_cli_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(sb), &cb, &co,
			     NULL, NULL));
	lw_conn_handlers_t cc = { .on_connect = ia_c_cli_connect,
				  .on_unbind = ia_c_cli_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(sb), &cc, NULL,
			     NULL, NULL));
	ASSERT_OK(lw_run(loop));

	ASSERT_EQ(ia.a_srv_reason, LW_UNBIND_INACTIVITY);
	ASSERT_EQ(ia.a_cli_reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(ia.b_cli_reason, LW_UNBIND_INACTIVITY);
	ASSERT_EQ(ia.c_cli_reason, LW_UNBIND_INACTIVITY);
	/* Each took at least its timeout, and A's byte pushed its deadline
	 * back by at least the 100 ms it was written after the start. */
	ASSERT_GT(ia.write_ns, 0);
	ASSERT_GE(ia.a_srv_ns - ia.write_ns, 200 * 1000000ull);
	ASSERT_GE(ia.a_srv_ns - ia.start_ns, 300 * 1000000ull);
	ASSERT_GE(ia.b_cli_ns - ia.start_ns, 150 * 1000000ull);
	ASSERT_GE(ia.c_cli_ns - ia.start_ns, 100 * 1000000ull);
	lw_server_stop(sa);
	lw_server_stop(sb);
	run_and_free();
}

/* ------------------------------------------------------------------------ */
/* tcp_connect_timeout                                                       */
/* ------------------------------------------------------------------------ */

static int ct_connected, ct_reason = -1, ct_err;
static uint64_t ct_ns;

static void ct_connect(lw_conn_t *c)
{
	ct_connected = 1;
	ASSERT_OK(lw_conn_close(c, 0));
}

static void ct_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	ct_reason = reason;
	ct_err = err;
	ct_ns = lwt_now_ns();
	lw_stop(loop);
}

TEST(tcp_connect_timeout)
{
	/*
	 * A listener that never accepts, with backlog 0: its accept queue
	 * holds one connection, and once that is full the kernel drops
	 * further SYNs (even with syncookies), so a connect can only time
	 * out.
	 */
	uint16_t port;
	int lfd = raw_listener(0, &port);
	int fillers[4];
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(port) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 4; i++) {
		fillers[i] = socket(
			AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ASSERT(fillers[i] >= 0);
		int r = connect(fillers[i], (struct sockaddr *)&sin,
				sizeof(sin));
		ASSERT(r == 0 || errno == EINPROGRESS);
	}
	usleep(100 * 1000);

	loop = make_loop(10000);
	lw_conn_handlers_t h = { .on_connect = ct_connect,
				 .on_data = no_data,
				 .on_unbind = ct_unbind };
	lw_connect_options_t o = { .connect_timeout_ms = 300 };
	uint64_t start = lwt_now_ns();
	ASSERT_OK(lw_connect(loop, "127.0.0.1", port, &h, &o, NULL, NULL));
	ASSERT_OK(lw_run(loop));
	run_and_free();
	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	close(lfd);

	if (ct_connected)
		SKIP("the kernel completed a connect to a full accept queue");
	ASSERT_EQ(ct_reason, LW_UNBIND_TIMEOUT);
	ASSERT_EQ(ct_err, ETIMEDOUT);
	ASSERT_GE(ct_ns - start, 300 * 1000000ull);
}

/* ------------------------------------------------------------------------ */
/* tcp_resolve                                                               */
/* ------------------------------------------------------------------------ */

static struct {
	int ok_connects, ok_reason, bad_reason, bad_err, cancel_reason;
	int unbinds;
	char peer[64];
} rs = { .ok_reason = -1, .bad_reason = -1, .cancel_reason = -1 };
static lw_timer_t rs_poll;
static uint64_t rs_completed_before;

static void rs_ok_connect(lw_conn_t *c)
{
	rs.ok_connects++;
	ASSERT_OK(lw_conn_peer(c, rs.peer, sizeof(rs.peer)));
	ASSERT_OK(lw_conn_close(c, 0));
}

static void rs_ok_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	rs.ok_reason = reason;
	rs.unbinds++;
}

static void rs_bad_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c;
	rs.bad_reason = reason;
	rs.bad_err = err;
	rs.unbinds++;
}

static void rs_cancel_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	rs.cancel_reason = reason;
	rs.unbinds++;
}

static void rs_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)reason, (void)err;
}

/* Stop once every connection is gone and all three lookups completed on
 * the pool (the cancelled one's completion discards its result). */
static void rs_poll_cb(lw_timer_t *t)
{
	static int waited;
	(void)t;
	lw_pool_stats_t ps;
	lw_pool_stats(loop, &ps);
	if (rs.unbinds < 3)
		return;
	if (ps.completed >= rs_completed_before + 3 && ps.busy == 0 &&
	    ps.queued == 0)
		lw_stop(loop);
	else if (++waited > 500)
		LWT_FAIL("the lookups did not run on the pool (%" PRIu64
			 " jobs completed)",
			 ps.completed - rs_completed_before);
}

static void count_defer_sites(const lw_site_info_t *site, void *arg)
{
	if (site->kind == LW_KIND_DEFER)
		++*(int *)arg;
}

TEST(tcp_resolve)
{
	loop = make_loop(25000);
	lw_server_t *s;
	lw_conn_handlers_t sh = { .on_unbind = rs_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL, &s));

	lw_pool_stats_t ps;
	lw_pool_stats(loop, &ps);
	rs_completed_before = ps.completed;

	lw_conn_handlers_t ok = { .on_connect = rs_ok_connect,
				  .on_data = no_data,
				  .on_unbind = rs_ok_unbind };
	ASSERT_OK(lw_connect(loop, "localhost", lw_server_port(s), &ok, NULL,
			     NULL, NULL));
	lw_conn_handlers_t bad = { .on_connect = no_connect,
				   .on_data = no_data,
				   .on_unbind = rs_bad_unbind };
	ASSERT_OK(lw_connect(loop, "nonexistent.invalid", 80, &bad, NULL, NULL,
			     NULL));
	/* Closed while its lookup is still on the pool. */
	lw_conn_handlers_t cancel = { .on_connect = no_connect,
				      .on_data = no_data,
				      .on_unbind = rs_cancel_unbind };
	lw_conn_t *c;
	ASSERT_OK(lw_connect(loop, "localhost", lw_server_port(s), &cancel,
			     NULL, NULL, &c));
	ASSERT_OK(lw_conn_close(c, 0));
	ASSERT_EQ(rs.unbinds, 0); /* never from inside the call */

	ASSERT_OK(lw_timer_init(loop, &rs_poll));
	ASSERT_OK(lw_timer_start(&rs_poll, rs_poll_cb, 10, 10));
	ASSERT_OK(lw_run(loop));

	ASSERT_EQ(rs.ok_connects, 1);
	ASSERT_EQ(rs.ok_reason, LW_UNBIND_CLOSED);
	ASSERT(strncmp(rs.peer, "127.0.0.1:", 10) == 0 ||
	       strncmp(rs.peer, "[::1]:", 6) == 0);
	ASSERT_EQ(rs.bad_reason, LW_UNBIND_RESOLVE);
	ASSERT_NE(rs.bad_err, 0);
	ASSERT_EQ(rs.cancel_reason, LW_UNBIND_CLOSED);
	/* The lookups ran as pool jobs, not on the loop thread. */
	lw_pool_stats(loop, &ps);
	ASSERT_GE(ps.threads, 1);
	ASSERT_GE(ps.completed, rs_completed_before + 3);
	/* ...whose completions are plumbing, not sites of the user's. */
	int defer_sites = 0;
	lw_site_foreach(loop, count_defer_sites, &defer_sites);
	ASSERT_EQ(defer_sites, 0);
	lw_timer_stop(&rs_poll);
	lw_server_stop(s);
	run_and_free();
}

/* ------------------------------------------------------------------------ */
/* tcp_close_after_writing                                                   */
/* ------------------------------------------------------------------------ */

#define CAW_SIZE (1u << 20)

static struct {
	char *payload;
	size_t got;
	int cli_reason, srv_reason, unbinds, in_close;
} caw = { .cli_reason = -1, .srv_reason = -1 };

static void caw_srv_connect(lw_conn_t *c)
{
	/* On loopback the kernel's send buffer may take the whole MiB at
	 * once; a fixed small one makes sure that most of it is still in our
	 * buffer when we close. */
	int sz = 64 << 10;
	ASSERT_OK(setsockopt(lw_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sz,
			     sizeof(sz)));
	ASSERT_OK(lw_conn_write(c, caw.payload, CAW_SIZE));
	ASSERT_GT(lw_conn_outbound_size(c), CAW_SIZE / 2);
	caw.in_close = 1;
	ASSERT_OK(lw_conn_close(c, 1));
	caw.in_close = 0;
	ASSERT_EQ(lw_conn_write(c, "x", 1), -ENOTCONN);
}

static void caw_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ASSERT_EQ(caw.in_close, 0);
	caw.srv_reason = reason;
	if (++caw.unbinds == 2)
		lw_stop(loop);
}

static void caw_cli_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)c;
	ASSERT_LE(caw.got + n, CAW_SIZE);
	ASSERT_EQ(memcmp(d, caw.payload + caw.got, n), 0);
	caw.got += n;
}

static void caw_cli_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	caw.cli_reason = reason;
	if (++caw.unbinds == 2)
		lw_stop(loop);
}

TEST(tcp_close_after_writing)
{
	loop = make_loop(20000);
	caw.payload = pattern_buf(CAW_SIZE);
	lw_server_t *s;
	lw_conn_handlers_t sh = { .on_connect = caw_srv_connect,
				  .on_unbind = caw_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL, &s));
	lw_conn_handlers_t ch = { .on_data = caw_cli_data,
				  .on_unbind = caw_cli_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &ch, NULL,
			     NULL, NULL));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(caw.got, CAW_SIZE);
	ASSERT_EQ(caw.cli_reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(caw.srv_reason, LW_UNBIND_CLOSED);
	lw_server_stop(s);
	run_and_free();
	free(caw.payload);
}

/* ------------------------------------------------------------------------ */
/* tcp_close_in_callbacks                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The server sends 256 KiB; the client closes from its first on_data, so
 * no second on_data may follow even though more bytes are in the socket,
 * and the loop goes on to run a timer.  Another client writes and closes
 * from on_connect, before anything was sent.
 */
static struct {
	int datas, unbinds, after_timer, in_cb;
	int early_reason;
	size_t early_got;
	lw_timer_t after;
} cic = { .early_reason = -1 };

static void cic_srv_connect(lw_conn_t *c)
{
	char *p = pattern_buf(256 << 10);
	ASSERT_OK(lw_conn_write(c, p, 256 << 10));
	free(p);
}

static void cic_srv_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)c;
	cic.early_got += n;
	ASSERT_EQ(memcmp(d, "bye", n), 0);
}

static void cic_after_cb(lw_timer_t *t)
{
	(void)t;
	cic.after_timer = 1;
	lw_stop(loop);
}

static void cic_count(void)
{
	/* Both clients and both accepted connections. */
	if (++cic.unbinds == 4) {
		ASSERT_OK(lw_timer_init(loop, &cic.after));
		ASSERT_OK(lw_timer_start(&cic.after, cic_after_cb, 20, 0));
	}
}

static void cic_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	/* The server may still be writing when the client goes: a reset
	 * is as valid an outcome as a clean close here. */
	ASSERT(reason == LW_UNBIND_CLOSED || reason == LW_UNBIND_RESET);
	cic_count();
}

static void cic_cli_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)d, (void)n;
	ASSERT_EQ(cic.datas, 0);
	cic.datas++;
	cic.in_cb = 1;
	ASSERT_OK(lw_conn_close(c, 0));
	ASSERT_OK(lw_conn_close(c, 0)); /* twice is harmless */
	ASSERT_EQ(lw_conn_pause(c), -ENOTCONN);
	cic.in_cb = 0;
}

static void cic_cli_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ASSERT_EQ(cic.in_cb, 0);
	ASSERT_EQ(reason, LW_UNBIND_CLOSED);
	cic_count();
}

static void cic_early_connect(lw_conn_t *c)
{
	cic.in_cb = 1;
	ASSERT_OK(lw_conn_write(c, "bye", 3));
	ASSERT_OK(lw_conn_close(c, 1));
	cic.in_cb = 0;
}

static void cic_early_data(lw_conn_t *c, const char *d, size_t n)
{
	(void)c, (void)d, (void)n;
	/* Closed from on_connect: nothing may be delivered after. */
	LWT_FAIL("on_data after close");
}

static void cic_early_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	ASSERT_EQ(cic.in_cb, 0);
	cic.early_reason = reason;
	cic_count();
}

TEST(tcp_close_in_callbacks)
{
	loop = make_loop(10000);
	lw_server_t *s;
	lw_conn_handlers_t sh = { .on_connect = cic_srv_connect,
				  .on_data = cic_srv_data,
				  .on_unbind = cic_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL, &s));
	lw_conn_handlers_t ch = { .on_data = cic_cli_data,
				  .on_unbind = cic_cli_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &ch, NULL,
			     NULL, NULL));
	lw_conn_handlers_t eh = { .on_connect = cic_early_connect,
				  .on_data = cic_early_data,
				  .on_unbind = cic_early_unbind };
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &eh, NULL,
			     NULL, NULL));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(cic.datas, 1);
	ASSERT_EQ(cic.after_timer, 1);
	ASSERT_EQ(cic.early_reason, LW_UNBIND_CLOSED);
	ASSERT_EQ(cic.early_got, 3);
	lw_server_stop(s);
	run_and_free();
}

/* ------------------------------------------------------------------------ */
/* tcp_loop_free_leftovers                                                   */
/* ------------------------------------------------------------------------ */

static int lf_calls, lf_connected;

static void lf_connect(lw_conn_t *c)
{
	(void)c;
	lf_connected++;
}

static void lf_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)reason, (void)err;
	lf_calls++;
}

static void lf_poll(lw_timer_t *t)
{
	(void)t;
	/* Both ends of the connection are up. */
	if (lf_connected == 2)
		lw_stop(loop);
}

TEST(tcp_loop_free_leftovers)
{
	/* A server, a live connection pair with bytes queued, a pending
	 * lookup and a closed connection whose on_unbind is still queued:
	 * lw_loop_free() releases them all without a callback (ASan checks
	 * the leaks). */
	loop = make_loop(10000);
	lw_server_t *s;
	lw_conn_handlers_t h = { .on_connect = lf_connect,
				 .on_unbind = lf_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &h, NULL, NULL, &s));
	lw_conn_t *c;
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &h, NULL,
			     NULL, &c));
	lw_timer_t t;
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, lf_poll, 5, 5));
	ASSERT_OK(lw_run(loop));
	lw_timer_stop(&t);

	lw_conn_handlers_t h2 = { .on_unbind = lf_unbind };
	ASSERT_OK(lw_connect(loop, "localhost", 9, &h2, NULL, NULL, NULL));
	lw_conn_t *d;
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &h2, NULL,
			     NULL, &d));
	ASSERT_OK(lw_conn_close(d, 0));
	char big[100000];
	memset(big, 'z', sizeof(big));
	for (int i = 0; i < 50; i++)
		ASSERT_OK(lw_conn_write(c, big, sizeof(big)));
	ASSERT_EQ(lf_calls, 0);
	run_and_free();
	ASSERT_EQ(lf_calls, 0);
}

/* ------------------------------------------------------------------------ */
/* tcp_bad_args                                                              */
/* ------------------------------------------------------------------------ */

static int ba_calls;

static void ba_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)reason, (void)err;
	ba_calls++;
}

TEST(tcp_bad_args)
{
	loop = make_loop(10000);
	lw_conn_handlers_t h = { .on_connect = no_connect,
				 .on_data = no_data,
				 .on_unbind = ba_unbind };
	lw_conn_handlers_t no_unbind = { .on_connect = no_connect };
	lw_conn_t *c = NULL;
	lw_server_t *s = NULL;

	ASSERT_EQ(lw_connect(NULL, "127.0.0.1", 80, &h, NULL, NULL, &c),
		  -EINVAL);
	ASSERT_EQ(lw_connect(loop, NULL, 80, &h, NULL, NULL, &c), -EINVAL);
	ASSERT_EQ(lw_connect(loop, "", 80, &h, NULL, NULL, &c), -EINVAL);
	ASSERT_EQ(lw_connect(loop, "bad host", 80, &h, NULL, NULL, &c),
		  -EINVAL);
	ASSERT_EQ(lw_connect(loop, "tab\there", 80, &h, NULL, NULL, &c),
		  -EINVAL);
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ASSERT_EQ(lw_connect(loop, longname, 80, &h, NULL, NULL, &c), -EINVAL);
	ASSERT_EQ(lw_connect(loop, "127.0.0.1", 0, &h, NULL, NULL, &c),
		  -EINVAL);
	ASSERT_EQ(lw_connect(loop, "127.0.0.1", 80, NULL, NULL, NULL, &c),
		  -EINVAL);
	ASSERT_EQ(lw_connect(loop, "127.0.0.1", 80, &no_unbind, NULL, NULL, &c),
		  -EINVAL);
	lw_connect_options_t neg1 = { .connect_timeout_ms = -1 };
	lw_connect_options_t neg2 = { .inactivity_timeout_ms = -5 };
	ASSERT_EQ(lw_connect(loop, "127.0.0.1", 80, &h, &neg1, NULL, &c),
		  -EINVAL);
	ASSERT_EQ(lw_connect(loop, "127.0.0.1", 80, &h, &neg2, NULL, &c),
		  -EINVAL);
	ASSERT(c == NULL);

	ASSERT_EQ(lw_server_start(NULL, NULL, 0, &h, NULL, NULL, &s), -EINVAL);
	ASSERT_EQ(lw_server_start(loop, NULL, 0, NULL, NULL, NULL, &s),
		  -EINVAL);
	ASSERT_EQ(lw_server_start(loop, NULL, 0, &no_unbind, NULL, NULL, &s),
		  -EINVAL);
	/* Servers take numeric addresses only. */
	ASSERT_EQ(lw_server_start(loop, "localhost", 0, &h, NULL, NULL, &s),
		  -EINVAL);
	ASSERT_EQ(lw_server_start(loop, "300.1.2.3", 0, &h, NULL, NULL, &s),
		  -EINVAL);
	lw_server_options_t bo = { .backlog = -1 };
	ASSERT_EQ(lw_server_start(loop, NULL, 0, &h, &bo, NULL, &s), -EINVAL);
	lw_server_options_t io = { .inactivity_timeout_ms = -1 };
	ASSERT_EQ(lw_server_start(loop, NULL, 0, &h, &io, NULL, &s), -EINVAL);
	ASSERT(s == NULL);

	/* A port in use. */
	uint16_t port;
	int fd = raw_listener(4, &port);
	ASSERT_EQ(lw_server_start(loop, "127.0.0.1", port, &h, NULL, NULL, &s),
		  -EADDRINUSE);
	ASSERT(s == NULL);
	close(fd);

	ASSERT_EQ(lw_conn_write(NULL, "x", 1), -EINVAL);
	ASSERT_EQ(lw_conn_close(NULL, 0), -EINVAL);
	ASSERT_EQ(lw_conn_pause(NULL), -EINVAL);
	ASSERT_EQ(lw_conn_resume(NULL), -EINVAL);
	ASSERT_EQ(lw_conn_set_inactivity_timeout(NULL, 5), -EINVAL);
	ASSERT_EQ(lw_conn_outbound_size(NULL), 0);
	ASSERT_EQ(lw_conn_fd(NULL), -1);
	ASSERT_EQ(lw_server_port(NULL), 0);
	lw_server_stop(NULL);

	/* A valid server, for argument checks on a real connection. */
	lw_conn_handlers_t quiet = { .on_unbind = ba_unbind };
	ASSERT_OK(
		lw_server_start(loop, "127.0.0.1", 0, &quiet, NULL, NULL, &s));
	ASSERT_NE(lw_server_port(s), 0);
	ASSERT_OK(lw_connect(loop, "127.0.0.1", lw_server_port(s), &quiet, NULL,
			     NULL, &c));
	ASSERT_EQ(lw_conn_write(c, NULL, 1), -EINVAL);
	ASSERT_EQ(lw_conn_set_inactivity_timeout(c, -1), -EINVAL);
	ASSERT_OK(lw_conn_write(c, NULL, 0));
	char small[4];
	ASSERT_EQ(lw_conn_peer(c, small, sizeof(small)), -ENOSPC);
	ASSERT_EQ(lw_conn_peer(c, NULL, 10), -EINVAL);

	/* None of the failed calls ran a callback. */
	for (int i = 0; i < 5; i++)
		lw_run_once(loop, 10);
	ASSERT_EQ(ba_calls, 0);
	lw_server_stop(s);
	run_and_free();
}

/* ------------------------------------------------------------------------ */
/* tcp_accept_emfile                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Ten connections wait in the accept queue while the process has room for
 * only two more fds.  The server takes two, then must neither spin on the
 * listener that stays readable nor lose the others: once fds are free
 * again, it accepts the rest.
 */
#define EM_N 10

static struct {
	int accepted, unbinds;
	uint64_t iters_before;
	uint64_t iters_starved;
	struct rlimit saved;
	lw_timer_t check;
	int phase;
	lw_server_t *s;
} em;

static void em_connect(lw_conn_t *c)
{
	(void)c;
	em.accepted++;
}

static void em_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)reason, (void)err;
	em.unbinds++;
}

static void em_check_cb(lw_timer_t *t)
{
	lw_loop_stats_t st;
	lw_loop_stats(loop, &st);
	if (em.phase == 0) {
		/* 300 ms out of fds. */
		em.iters_starved = st.iterations - em.iters_before;
		ASSERT_EQ(em.accepted, 2);
		ASSERT_OK(setrlimit(RLIMIT_NOFILE, &em.saved));
		em.phase = 1;
		ASSERT_OK(lw_timer_start(t, em_check_cb, 20, 20));
		return;
	}
	if (em.accepted == EM_N)
		lw_stop(loop);
}

TEST(tcp_accept_emfile)
{
	loop = make_loop(10000);
	lw_conn_handlers_t h = { .on_connect = em_connect,
				 .on_unbind = em_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &h, NULL, NULL, &em.s));
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(lw_server_port(em.s)) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int clients[EM_N];
	for (int i = 0; i < EM_N; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT(clients[i] >= 0);
		ASSERT_OK(connect(clients[i], (struct sockaddr *)&sin,
				  sizeof(sin)));
	}
	ASSERT_OK(lw_timer_init(loop, &em.check));
	ASSERT_OK(lw_timer_start(&em.check, em_check_cb, 300, 0));

	/* Leave exactly two free fds below the limit: fill every free slot
	 * below it, then give two back. */
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &em.saved));
	int top = clients[EM_N - 1];
	struct rlimit low = em.saved;
	low.rlim_cur = (rlim_t)top + 8;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
	int fill[64], nfill = 0;
	for (;;) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ASSERT_EQ(errno, EMFILE);
			break;
		}
		ASSERT_LT(nfill, 64);
		fill[nfill++] = fd;
	}
	ASSERT_GE(nfill, 2);
	close(fill[--nfill]);
	close(fill[--nfill]);

	lw_loop_stats_t st;
	lw_loop_stats(loop, &st);
	em.iters_before = st.iterations;
	ASSERT_OK(lw_run(loop));

	/* A loop spinning on EMFILE makes thousands of iterations in 300 ms;
	 * one that backs off makes a handful per 100 ms. */
	ASSERT_LT(em.iters_starved, 100);
	ASSERT_EQ(em.accepted, EM_N);
	while (nfill > 0)
		close(fill[--nfill]);
	lw_server_stop(em.s);
	run_and_free();
	ASSERT_EQ(em.unbinds, 0);
	for (int i = 0; i < EM_N; i++)
		close(clients[i]);
}

/* ------------------------------------------------------------------------ */
/* tcp_half_close                                                            */
/* ------------------------------------------------------------------------ */

/*
 * A raw client sends a request and shuts down its sending side; the server
 * answers with 1 MiB that cannot all fit the socket at once.  The answer
 * must arrive whole before the server closes.
 */
#define HC_SIZE (1u << 20)

static struct {
	char *payload;
	size_t got;
	int eof, srv_reason, srv_datas;
	lw_io_t io;
	int fd;
} hc = { .srv_reason = -1 };

static void hc_srv_data(lw_conn_t *c, const char *d, size_t n)
{
	ASSERT_EQ(n, 3);
	ASSERT_EQ(memcmp(d, "GET", 3), 0);
	hc.srv_datas++;
	int sz = 64 << 10;
	ASSERT_OK(setsockopt(lw_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sz,
			     sizeof(sz)));
	ASSERT_OK(lw_conn_write(c, hc.payload, HC_SIZE));
	ASSERT_GT(lw_conn_outbound_size(c), 0);
}

static void hc_maybe_stop(void)
{
	if (hc.eof && hc.srv_reason != -1)
		lw_stop(loop);
}

static void hc_srv_unbind(lw_conn_t *c, int reason, int err)
{
	(void)c, (void)err;
	hc.srv_reason = reason;
	hc_maybe_stop();
}

static void hc_read_cb(lw_io_t *io, int events)
{
	(void)events;
	char buf[65536];
	ssize_t n = read(io->fd, buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		return;
	ASSERT_GE(n, 0);
	if (n == 0) {
		hc.eof = 1;
		ASSERT_OK(lw_io_stop(io));
		hc_maybe_stop();
		return;
	}
	ASSERT_LE(hc.got + (size_t)n, HC_SIZE);
	ASSERT_EQ(memcmp(buf, hc.payload + hc.got, (size_t)n), 0);
	hc.got += (size_t)n;
}

TEST(tcp_half_close)
{
	loop = make_loop(10000);
	hc.payload = pattern_buf(HC_SIZE);
	lw_server_t *s;
	lw_conn_handlers_t sh = { .on_data = hc_srv_data,
				  .on_unbind = hc_srv_unbind };
	ASSERT_OK(lw_server_start(loop, "127.0.0.1", 0, &sh, NULL, NULL, &s));

	hc.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(hc.fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(lw_server_port(s)) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(connect(hc.fd, (struct sockaddr *)&sin, sizeof(sin)));
	ASSERT_EQ(write(hc.fd, "GET", 3), 3);
	ASSERT_OK(shutdown(hc.fd, SHUT_WR));
	ASSERT_OK(fcntl(hc.fd, F_SETFL, O_NONBLOCK));
	ASSERT_OK(lw_io_init(loop, &hc.io, hc.fd));
	ASSERT_OK(lw_io_start(&hc.io, LW_READABLE, hc_read_cb));

	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(hc.srv_datas, 1);
	ASSERT_EQ(hc.got, HC_SIZE);
	ASSERT_EQ(hc.srv_reason, LW_UNBIND_CLOSED);
	lw_server_stop(s);
	run_and_free();
	close(hc.fd);
	free(hc.payload);
}
