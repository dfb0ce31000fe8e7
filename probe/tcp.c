/*
 * tcp.c - TCP connections and servers (EM.connect, EM.start_server,
 * EM::Connection).
 *
 * A connection goes through these states:
 *
 *   RESOLVING   the host name is being resolved on the worker pool
 *   CONNECTING  a non-blocking connect() is in flight (watching writable)
 *   CONNECTED   up: reading (unless paused) and writing what is queued
 *   DEAD        the socket is closed and on_unbind is queued for the next
 *               iteration; the connection is freed after on_unbind returns
 *
 * Every way out (close, EOF, reset, timeouts, resolution failure) goes
 * through teardown(), which closes the socket at once and queues on_unbind
 * as an internal tick.  So on_unbind runs exactly once, never from inside
 * another callback of the same connection, and a callback that closes its
 * own connection can keep using the pointer until it returns.
 *
 * Writes go straight to the socket when nothing is queued; what the socket
 * does not take is copied into a chain of chunks (a big write becomes one
 * chunk of its own size, so queueing 8 MiB copies it once) that is flushed
 * with sendmsg() and an iovec over the chain when the socket is writable.
 * MSG_NOSIGNAL everywhere: a peer that went away must not raise SIGPIPE in
 * someone else's process.
 *
 * Name resolution runs getaddrinfo() on the worker pool.  The request is a
 * separate object that the worker alone touches until its completion runs on
 * the loop thread; a connection that goes away first only clears the
 * request's back pointer, and the completion then discards the result.  The
 * request is also a loop handle, so lw_loop_free() (which stops the pool
 * first) releases one whose completion was dropped.
 *
 * Dispatch kinds: on_connect LW_KIND_CONNECT, on_data LW_KIND_DATA,
 * on_unbind LW_KIND_UNBIND, and on_drain LW_KIND_IO, since it answers the
 * socket becoming writable.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes read per read() call, and read() calls per readiness event before
 * giving other fds a turn. */
#define READ_BUF_SIZE 65536
#define READS_PER_EVENT 4

/* The smallest outbound chunk; a write larger than this gets a chunk of its
 * own size. */
#define CHUNK_MIN 16384

/* Chunks per sendmsg(). */
#define FLUSH_IOV 16

/* Resolved addresses tried per connect, in the order getaddrinfo gave. */
#define MAX_ADDRS 8

/* How long a server stops accepting when out of file descriptors.  With a
 * level-triggered watcher, an accept() that keeps failing with EMFILE would
 * otherwise spin the loop. */
#define ACCEPT_BACKOFF_NS (100 * 1000000ull)

enum conn_state {
	ST_RESOLVING,
	ST_CONNECTING,
	ST_CONNECTED,
	ST_DEAD,
};

enum {
	F_PAUSED = 1, /* lw_conn_pause(): not reading */
	F_CLOSING = 2, /* close after writing: flushing, then close */
	F_HUP = 4, /* hang-up seen while not reading: stop watching */
	F_UNBIND_TIMER = 8, /* on_unbind queued on a timer, not a tick */
};

typedef struct chunk {
	struct chunk *next;
	size_t off; /* first byte not yet sent */
	size_t len; /* bytes filled */
	size_t cap;
	char data[];
} chunk_t;

typedef struct resolve_req resolve_req_t;

struct lw_conn {
	lw__handle_t handle;
	lw_loop_t *loop;
	lw_conn_handlers_t h;
	void *data;

	int fd; /* -1 when there is no socket */
	uint8_t state;
	uint8_t flags;
	int io_events; /* what the watcher has now; 0 when stopped */
	lw_io_t io;

	/* The connect timeout; after teardown it may carry on_unbind when no
	 * tick could be queued. */
	lw_timer_t connect_timer;
	/* Inactivity: the timer is not moved on every byte; it fires at the
	 * earliest possible deadline and re-arms from last_active. */
	lw_timer_t idle_timer;
	uint64_t idle_ns;
	uint64_t last_active;

	/* Outbound: a chain of chunks, plus one spare to avoid malloc churn
	 * on a connection that writes steadily. */
	chunk_t *out_head, *out_tail, *spare;
	size_t out_bytes;

	/* Where to connect: addrs[next_addr..naddrs-1] are still to try. */
	struct sockaddr_storage *addrs;
	uint32_t naddrs, next_addr;
	struct sockaddr_storage peer;
	socklen_t peer_len;

	resolve_req_t *resolve; /* pending resolution, or NULL */

	int reason, err; /* for on_unbind */

	void *site_connect, *site_data, *site_unbind, *site_drain;
};

struct resolve_req {
	lw__handle_t handle;
	/* Loop thread only: the connection waiting, or NULL once it left. */
	lw_conn_t *conn;
	/* Written by the worker, read by the loop thread after the pool's
	 * hand-off (which orders them). */
	struct addrinfo *res;
	int gai_err, sys_err;
	char port[8];
	char host[];
};

struct lw_server {
	lw__handle_t handle;
	lw_loop_t *loop;
	lw_conn_handlers_t h;
	void *data;
	int fd;
	lw_io_t io;
	lw_timer_t backoff;
	uint64_t idle_ns;
	uint16_t port;
	/* lw_server_stop() from a callback run by the accept loop: free when
	 * the loop returns. */
	uint8_t accepting, stopped;
	/* Sites cached for the accepted connections. */
	void *site_connect, *site_data, *site_unbind, *site_drain;
};

static void conn_io_cb(lw_io_t *io, int events);
static void teardown(lw_conn_t *c, int reason, int err);

/* ------------------------------------------------------------------------ */
/* Dispatch: one function per kind.                                          */
/* ------------------------------------------------------------------------ */

static void dispatch_connect(lw_conn_t *c)
{
	if (c->h.on_connect == NULL)
		return;
	lw__site_t *site =
		lw__site_cached(c->loop, &c->site_connect, LW_KIND_CONNECT,
				LW_FN(c->h.on_connect));
	lw__call_begin(c->loop, site, 0);
	c->h.on_connect(c);
	lw__call_end(c->loop, site);
}

static void dispatch_data(lw_conn_t *c, const char *buf, size_t len)
{
	if (c->h.on_data == NULL)
		return;
	lw__site_t *site = lw__site_cached(c->loop, &c->site_data, LW_KIND_DATA,
					   LW_FN(c->h.on_data));
	lw__call_begin(c->loop, site, 0);
	c->h.on_data(c, buf, len);
	lw__call_end(c->loop, site);
}

static void dispatch_unbind(lw_conn_t *c)
{
	lw__site_t *site =
		lw__site_cached(c->loop, &c->site_unbind, LW_KIND_UNBIND,
				LW_FN(c->h.on_unbind));
	lw__call_begin(c->loop, site, 0);
	c->h.on_unbind(c, c->reason, c->err);
	lw__call_end(c->loop, site);
}

static void dispatch_drain(lw_conn_t *c)
{
	if (c->h.on_drain == NULL)
		return;
	lw__site_t *site = lw__site_cached(c->loop, &c->site_drain, LW_KIND_IO,
					   LW_FN(c->h.on_drain));
	lw__call_begin(c->loop, site, 0);
	c->h.on_drain(c);
	lw__call_end(c->loop, site);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

const char *lw_unbind_reason_name(int reason)
{
	switch (reason) {
	case LW_UNBIND_CLOSED:
		return "closed";
	case LW_UNBIND_REFUSED:
		return "refused";
	case LW_UNBIND_RESET:
		return "reset";
	case LW_UNBIND_TIMEOUT:
		return "timeout";
	case LW_UNBIND_INACTIVITY:
		return "inactivity";
	case LW_UNBIND_RESOLVE:
		return "resolve";
	case LW_UNBIND_ERROR:
		return "error";
	}
	return "unknown";
}

static int reason_for(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return LW_UNBIND_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return LW_UNBIND_RESET;
	}
	return LW_UNBIND_ERROR;
}

static uint64_t ms_to_ns(int64_t ms)
{
	return (uint64_t)ms > UINT64_MAX / 1000000u ? UINT64_MAX
						    : (uint64_t)ms * 1000000u;
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* Best effort: a socket that refuses it still works. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Is `host` something worth handing to the resolver?  Names are at most
 * 253 bytes; anything with spaces or control characters is a caller bug,
 * reported at once rather than as a failed lookup later. */
static int host_ok(const char *host, size_t *lenp)
{
	size_t n = strnlen(host, 256);
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];
		if (ch <= ' ' || ch >= 0x7f)
			return 0;
	}
	*lenp = n;
	return 1;
}

/* Parse a numeric IPv4 or IPv6 address ("[::1]" is accepted too). */
static int parse_numeric(const char *host, uint16_t port,
			 struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' &&
	    n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 1;
	}
	return 0;
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					 : sizeof(struct sockaddr_in);
}

/* ------------------------------------------------------------------------ */
/* Outbound buffer                                                           */
/* ------------------------------------------------------------------------ */

static void out_free(lw_conn_t *c)
{
	chunk_t *k = c->out_head;
	while (k != NULL) {
		chunk_t *next = k->next;
		free(k);
		k = next;
	}
	c->out_head = c->out_tail = NULL;
	c->out_bytes = 0;
	free(c->spare);
	c->spare = NULL;
}

/* Copy bytes to the end of the chain: first into the tail's free space,
 * the rest into one new chunk.  0 or -ENOMEM (nothing queued then). */
static int out_append(lw_conn_t *c, const char *data, size_t len)
{
	chunk_t *t = c->out_tail;
	size_t room = t ? t->cap - t->len : 0;
	size_t first = len < room ? len : room;
	size_t rest = len - first;
	chunk_t *k = NULL;

	if (rest > 0) {
		if (rest <= CHUNK_MIN && c->spare != NULL) {
			k = c->spare;
			c->spare = NULL;
		} else {
			size_t cap = rest > CHUNK_MIN ? rest : CHUNK_MIN;
			if (cap > SIZE_MAX - sizeof(*k))
				return -ENOMEM;
			k = malloc(sizeof(*k) + cap);
			if (k == NULL)
				return -ENOMEM;
			k->cap = cap;
		}
		k->next = NULL;
		k->off = 0;
		k->len = rest;
		memcpy(k->data, data + first, rest);
	}
	if (first > 0) {
		memcpy(t->data + t->len, data, first);
		t->len += first;
	}
	if (k != NULL) {
		if (t != NULL)
			t->next = k;
		else
			c->out_head = k;
		c->out_tail = k;
	}
	c->out_bytes += len;
	return 0;
}

/* Drop `n` sent bytes from the front of the chain. */
static void out_consume(lw_conn_t *c, size_t n)
{
	c->out_bytes -= n;
	while (n > 0) {
		chunk_t *k = c->out_head;
		size_t avail = k->len - k->off;
		if (n < avail) {
			k->off += n;
			return;
		}
		n -= avail;
		c->out_head = k->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		if (k->cap == CHUNK_MIN && c->spare == NULL)
			c->spare = k;
		else
			free(k);
	}
}

/* ------------------------------------------------------------------------ */
/* Watching the socket                                                       */
/* ------------------------------------------------------------------------ */

/* Make the watcher match the state: 0 or -errno. */
static int update_io(lw_conn_t *c)
{
	int want = 0;
	if (c->state == ST_CONNECTING) {
		want = LW_WRITABLE;
	} else if (c->state == ST_CONNECTED) {
		if (!(c->flags & (F_PAUSED | F_CLOSING | F_HUP)))
			want |= LW_READABLE;
		if (c->out_bytes > 0)
			want |= LW_WRITABLE;
	}
	if (want == c->io_events)
		return 0;
	if (want == 0) {
		/* Stop rather than watch nothing: epoll reports hang-ups
		 * even on an empty mask, and level-triggered they repeat. */
		lw_io_stop(&c->io);
		c->io_events = 0;
		return 0;
	}
	int err = lw__io_start_raw(&c->io, want, conn_io_cb);
	if (err)
		return err;
	c->io_events = want;
	return 0;
}

static void update_io_or_fail(lw_conn_t *c)
{
	int err = update_io(c);
	if (err)
		teardown(c, LW_UNBIND_ERROR, -err);
}

static void close_socket(lw_conn_t *c)
{
	if (c->fd < 0)
		return;
	if (c->io_events)
		lw_io_stop(&c->io);
	c->io_events = 0;
	close(c->fd);
	c->fd = -1;
}

/* ------------------------------------------------------------------------ */
/* Teardown and on_unbind                                                    */
/* ------------------------------------------------------------------------ */

static void conn_free(lw_conn_t *c)
{
	out_free(c);
	free(c->addrs);
	free(c);
}

static void unbind_now(lw_conn_t *c)
{
	dispatch_unbind(c);
	lw__handle_remove(&c->handle);
	conn_free(c);
}

static void unbind_tick(lw_loop_t *loop, void *arg)
{
	LW__UNUSED(loop);
	unbind_now(arg);
}

static void unbind_timer_cb(lw_timer_t *t)
{
	unbind_now(LW__CONTAINER_OF(t, lw_conn_t, connect_timer));
}

/*
 * The single way out.  Releases the socket, timers and buffers now and
 * queues on_unbind for the next iteration.  Idempotent.
 */
static void teardown(lw_conn_t *c, int reason, int err)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	c->reason = reason;
	c->err = err;
	if (c->resolve != NULL) {
		/* The completion will find no connection and discard. */
		c->resolve->conn = NULL;
		c->resolve = NULL;
	}
	close_socket(c);
	lw_timer_stop(&c->connect_timer);
	lw_timer_stop(&c->idle_timer);
	out_free(c);
	free(c->addrs);
	c->addrs = NULL;
	c->naddrs = c->next_addr = 0;

	if (lw__next_tick_raw(c->loop, unbind_tick, c) == 0)
		return;
	/* No memory for a tick: a timer needs none if the heap has room.
	 * If that fails too, lw_loop_free() releases the connection. */
	if (lw__timer_start_raw(&c->connect_timer, unbind_timer_cb, 0, 0) == 0)
		c->flags |= F_UNBIND_TIMER;
}

/* ------------------------------------------------------------------------ */
/* Reading and writing                                                       */
/* ------------------------------------------------------------------------ */

static int reading(const lw_conn_t *c)
{
	return c->state == ST_CONNECTED &&
	       !(c->flags & (F_PAUSED | F_CLOSING | F_HUP));
}

static void do_read(lw_conn_t *c)
{
	char buf[READ_BUF_SIZE];

	for (int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n > 0) {
			c->last_active = lw_now(c->loop);
			dispatch_data(c, buf, (size_t)n);
			/* The callback may have paused or closed. */
			if (!reading(c) || (size_t)n < sizeof(buf))
				return;
			continue;
		}
		if (n == 0) {
			/* The peer has finished sending.  It may still read
			 * (a half-close after a request), so what we queued
			 * goes out before we close. */
			if (c->out_bytes > 0) {
				c->flags |= F_CLOSING;
				update_io_or_fail(c);
				return;
			}
			teardown(c, LW_UNBIND_CLOSED, 0);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		teardown(c, reason_for(errno), errno);
		return;
	}
}

/*
 * Send what is queued until the socket is full.  Returns 0, or -1 if the
 * connection was torn down.  Afterwards: a drained buffer closes a closing
 * connection, or calls on_drain.
 */
static int flush(lw_conn_t *c)
{
	while (c->out_head != NULL) {
		struct iovec iov[FLUSH_IOV];
		int n = 0;
		size_t total = 0;
		for (chunk_t *k = c->out_head; k != NULL && n < FLUSH_IOV;
		     k = k->next, n++) {
			iov[n].iov_base = k->data + k->off;
			iov[n].iov_len = k->len - k->off;
			total += iov[n].iov_len;
		}
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			teardown(c, reason_for(errno), errno);
			return -1;
		}
		c->last_active = lw_now(c->loop);
		out_consume(c, (size_t)w);
		if ((size_t)w < total)
			break;
	}
	if (c->out_bytes > 0) {
		update_io_or_fail(c);
		return c->state == ST_DEAD ? -1 : 0;
	}
	if (c->flags & F_CLOSING) {
		teardown(c, LW_UNBIND_CLOSED, 0);
		return -1;
	}
	update_io_or_fail(c);
	if (c->state == ST_DEAD)
		return -1;
	dispatch_drain(c);
	return c->state == ST_DEAD ? -1 : 0;
}

int lw_conn_write(lw_conn_t *c, const void *data, size_t len)
{
	if (c == NULL || (data == NULL && len > 0))
		return -EINVAL;
	if (c->state == ST_DEAD || (c->flags & F_CLOSING))
		return -ENOTCONN;
	if (len == 0)
		return 0;

	const char *p = data;
	if (c->state == ST_CONNECTED && c->out_bytes == 0) {
		/* Nothing queued: try the socket first, which saves a copy
		 * and a trip through the loop for most small writes. */
		ssize_t w;
		do
			w = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			/* The bytes were taken; the failure is the
			 * connection's, and on_unbind reports it. */
			teardown(c, reason_for(errno), errno);
			return 0;
		}
		if (w > 0) {
			c->last_active = lw_now(c->loop);
			p += w;
			len -= (size_t)w;
			if (len == 0)
				return 0;
		}
	}
	int err = out_append(c, p, len);
	if (err) {
		/* Part of the bytes may be on the wire already: the stream
		 * is broken, so the connection is too. */
		if (p != data)
			teardown(c, LW_UNBIND_ERROR, ENOMEM);
		return err;
	}
	if (c->state == ST_CONNECTED)
		update_io_or_fail(c);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

static void idle_timer_cb(lw_timer_t *t)
{
	lw_conn_t *c = LW__CONTAINER_OF(t, lw_conn_t, idle_timer);
	uint64_t now = lw_now(c->loop);
	uint64_t idle = now > c->last_active ? now - c->last_active : 0;
	if (idle >= c->idle_ns) {
		teardown(c, LW_UNBIND_INACTIVITY, ETIMEDOUT);
		return;
	}
	/* There was traffic since the timer was set: wait for the rest. */
	if (lw__timer_start_raw(t, idle_timer_cb, c->idle_ns - idle, 0) != 0)
		teardown(c, LW_UNBIND_ERROR, ENOMEM);
}

static int idle_start(lw_conn_t *c)
{
	if (c->idle_ns == 0 || c->state != ST_CONNECTED) {
		lw_timer_stop(&c->idle_timer);
		return 0;
	}
	c->last_active = lw_now(c->loop);
	return lw__timer_start_raw(&c->idle_timer, idle_timer_cb, c->idle_ns,
				   0);
}

static void connect_timer_cb(lw_timer_t *t)
{
	teardown(LW__CONTAINER_OF(t, lw_conn_t, connect_timer),
		 LW_UNBIND_TIMEOUT, ETIMEDOUT);
}

/* The connection is up, client or accepted. */
static void connected(lw_conn_t *c)
{
	c->state = ST_CONNECTED;
	lw_timer_stop(&c->connect_timer);
	free(c->addrs);
	c->addrs = NULL;
	c->naddrs = c->next_addr = 0;
	int err = idle_start(c);
	if (err == 0)
		err = update_io(c);
	if (err) {
		teardown(c, LW_UNBIND_ERROR, -err);
		return;
	}
	dispatch_connect(c);
}

static const struct sockaddr_storage *addr_at(lw_conn_t *c, uint32_t i)
{
	return c->addrs != NULL ? &c->addrs[i] : &c->peer;
}

/* Start connecting to the next address; on the last failure, tear down. */
static void try_connect(lw_conn_t *c)
{
	int last = ECONNREFUSED;

	while (c->next_addr < c->naddrs) {
		const struct sockaddr_storage *ss = addr_at(c, c->next_addr++);
		socklen_t len = addr_len(ss);
		if (ss != &c->peer)
			memcpy(&c->peer, ss, len);
		c->peer_len = len;

		int fd = socket(c->peer.ss_family,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = errno;
			continue;
		}
		set_nodelay(fd);
		int r = connect(fd, (struct sockaddr *)&c->peer, len);
		if (r < 0 && errno != EINPROGRESS && errno != EINTR) {
			last = errno;
			close(fd);
			continue;
		}
		/* Even a connect that completed at once is reported through
		 * the watcher, so on_connect never runs inside lw_connect. */
		c->fd = fd;
		lw_io_init(c->loop, &c->io, fd);
		c->state = ST_CONNECTING;
		int err = update_io(c);
		if (err) {
			teardown(c, LW_UNBIND_ERROR, -err);
			return;
		}
		return;
	}
	teardown(c, reason_for(last), last);
}

static void connect_done(lw_conn_t *c, int events)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr == 0 && !(events & LW_WRITABLE)) {
		if (!(events & (LW_HANGUP | LW_ERROR)))
			return; /* not yet: a spurious wake-up */
		/* A hang-up with no error to show: level-triggered, it
		 * would repeat, so the attempt has failed. */
		soerr = ECONNRESET;
	}
	if (soerr == 0) {
		connected(c);
		return;
	}
	close_socket(c);
	if (c->next_addr < c->naddrs) {
		c->state = ST_RESOLVING; /* between sockets */
		try_connect(c);
		return;
	}
	if (soerr == ETIMEDOUT)
		teardown(c, LW_UNBIND_TIMEOUT, soerr);
	else
		teardown(c, reason_for(soerr), soerr);
}

static void conn_io_cb(lw_io_t *io, int events)
{
	lw_conn_t *c = LW__CONTAINER_OF(io, lw_conn_t, io);

	if (c->state == ST_CONNECTING) {
		connect_done(c, events);
		return;
	}
	if (c->state != ST_CONNECTED)
		return;
	if ((events & (LW_WRITABLE | LW_ERROR | LW_HANGUP)) &&
	    c->out_bytes > 0) {
		if (flush(c) < 0)
			return;
	}
	if (reading(c)) {
		if (events & (LW_READABLE | LW_HANGUP | LW_ERROR))
			do_read(c);
		return;
	}
	if (!(events & (LW_ERROR | LW_HANGUP)))
		return;
	/* A hang-up or error while not reading (paused, or closing after
	 * writing with nothing left to write). */
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr != 0) {
		teardown(c, reason_for(soerr), soerr);
		return;
	}
	if (events & LW_HANGUP) {
		/* The peer is gone, but unread bytes may wait: stop
		 * watching (a level-triggered hang-up repeats) until
		 * lw_conn_resume() reads them and the end of stream. */
		c->flags |= F_HUP;
		update_io_or_fail(c);
	}
}

/* ------------------------------------------------------------------------ */
/* Resolution on the worker pool                                             */
/* ------------------------------------------------------------------------ */

static void *resolve_work(void *arg)
{
	resolve_req_t *r = arg;
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP,
		/* No AI_ADDRCONFIG: it hides "localhost" on a machine
		 * whose only interface is the loopback. */
		.ai_flags = AI_NUMERICSERV,
	};
	r->gai_err = getaddrinfo(r->host, r->port, &hints, &r->res);
	if (r->gai_err == EAI_SYSTEM)
		r->sys_err = errno;
	return NULL;
}

static void resolve_req_free(resolve_req_t *r)
{
	if (r->res != NULL)
		freeaddrinfo(r->res);
	free(r);
}

static void resolve_release(lw__handle_t *h)
{
	resolve_req_t *r = LW__CONTAINER_OF(h, resolve_req_t, handle);
	/* lw_loop_free() may release the request before its connection. */
	if (r->conn != NULL)
		r->conn->resolve = NULL;
	resolve_req_free(r);
}

static int gai_errno(int gai, int sys)
{
	switch (gai) {
	case EAI_SYSTEM:
		return sys ? sys : EIO;
	case EAI_MEMORY:
		return ENOMEM;
	case EAI_AGAIN:
		return EAGAIN;
	case EAI_FAMILY:
	case EAI_SOCKTYPE:
	case EAI_SERVICE:
	case EAI_BADFLAGS:
		return EINVAL;
	}
	return ENOENT; /* EAI_NONAME, EAI_NODATA, EAI_FAIL, ... */
}

static void resolve_done(lw_loop_t *loop, void *arg, void *result)
{
	LW__UNUSED(loop);
	LW__UNUSED(result);
	resolve_req_t *r = arg;
	lw_conn_t *c = r->conn;
	lw__handle_remove(&r->handle);
	if (c == NULL) {
		resolve_req_free(r);
		return;
	}
	c->resolve = NULL;
	if (r->gai_err != 0) {
		int err = gai_errno(r->gai_err, r->sys_err);
		resolve_req_free(r);
		teardown(c, LW_UNBIND_RESOLVE, err);
		return;
	}
	uint32_t n = 0;
	for (struct addrinfo *ai = r->res; ai != NULL; ai = ai->ai_next)
		if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
		    n < MAX_ADDRS)
			n++;
	c->addrs = n ? calloc(n, sizeof(*c->addrs)) : NULL;
	if (n > 0 && c->addrs == NULL) {
		resolve_req_free(r);
		teardown(c, LW_UNBIND_ERROR, ENOMEM);
		return;
	}
	uint32_t i = 0;
	for (struct addrinfo *ai = r->res; ai != NULL && i < n;
	     ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (ai->ai_addrlen > sizeof(c->addrs[i]))
			continue;
		memcpy(&c->addrs[i++], ai->ai_addr, ai->ai_addrlen);
	}
	resolve_req_free(r);
	c->naddrs = i;
	c->next_addr = 0;
	if (i == 0) {
		teardown(c, LW_UNBIND_RESOLVE, ENOENT);
		return;
	}
	try_connect(c);
}

/* ------------------------------------------------------------------------ */
/* Connections: public API                                                   */
/* ------------------------------------------------------------------------ */

/* At lw_loop_free(): no callbacks, just let go. */
static void conn_release(lw__handle_t *h)
{
	lw_conn_t *c = LW__CONTAINER_OF(h, lw_conn_t, handle);
	if (c->resolve != NULL)
		c->resolve->conn = NULL;
	close_socket(c);
	lw_timer_stop(&c->connect_timer);
	lw_timer_stop(&c->idle_timer);
	conn_free(c);
}

static lw_conn_t *conn_alloc(lw_loop_t *loop, const lw_conn_handlers_t *h,
			     void *data)
{
	lw_conn_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->h = *h;
	c->data = data;
	c->fd = -1;
	lw_timer_init(loop, &c->connect_timer);
	lw_timer_init(loop, &c->idle_timer);
	return c;
}

int lw_connect(lw_loop_t *loop, const char *host, uint16_t port,
	       const lw_conn_handlers_t *h, const lw_connect_options_t *opts,
	       void *data, lw_conn_t **out)
{
	size_t hostlen;
	if (loop == NULL || host == NULL || h == NULL || h->on_unbind == NULL ||
	    port == 0 || !host_ok(host, &hostlen))
		return -EINVAL;
	if (opts != NULL &&
	    (opts->connect_timeout_ms < 0 || opts->inactivity_timeout_ms < 0))
		return -EINVAL;

	lw_conn_t *c = conn_alloc(loop, h, data);
	if (c == NULL)
		return -ENOMEM;
	if (opts != NULL)
		c->idle_ns = ms_to_ns(opts->inactivity_timeout_ms);

	int err;
	if (opts != NULL && opts->connect_timeout_ms > 0) {
		err = lw__timer_start_raw(&c->connect_timer, connect_timer_cb,
					  ms_to_ns(opts->connect_timeout_ms),
					  0);
		if (err)
			goto fail_timer;
	}

	if (parse_numeric(host, port, &c->peer, &c->peer_len)) {
		/* A numeric address needs no resolver. */
		c->naddrs = 1;
		lw__handle_add(loop, &c->handle, conn_release);
		try_connect(c);
	} else {
		resolve_req_t *r = calloc(1, sizeof(*r) + hostlen + 1);
		if (r == NULL) {
			err = -ENOMEM;
			goto fail_req;
		}
		memcpy(r->host, host, hostlen);
		snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
		r->conn = c;
		err = lw__defer_raw(loop, resolve_work, resolve_done, r);
		if (err) {
			free(r);
			goto fail_req;
		}
		/* The request is a handle of its own, so lw_loop_free()
		 * releases it if the pool drops its completion. */
		lw__handle_add(loop, &r->handle, resolve_release);
		c->resolve = r;
		c->state = ST_RESOLVING;
		lw__handle_add(loop, &c->handle, conn_release);
	}
	if (out != NULL)
		*out = c;
	return 0;

fail_req:
	lw_timer_stop(&c->connect_timer);
fail_timer:
	free(c);
	return err;
}

int lw_conn_close(lw_conn_t *c, int after_writing)
{
	if (c == NULL)
		return -EINVAL;
	if (c->state == ST_DEAD)
		return 0; /* closing twice is harmless */
	if (after_writing && c->out_bytes > 0) {
		/* Stop reading, flush (once connected), then close. */
		c->flags |= F_CLOSING;
		if (c->state == ST_CONNECTED)
			update_io_or_fail(c);
		return 0;
	}
	teardown(c, LW_UNBIND_CLOSED, 0);
	return 0;
}

int lw_conn_pause(lw_conn_t *c)
{
	if (c == NULL)
		return -EINVAL;
	if (c->state == ST_DEAD)
		return -ENOTCONN;
	c->flags |= F_PAUSED;
	if (c->state == ST_CONNECTED)
		update_io_or_fail(c);
	return 0;
}

int lw_conn_resume(lw_conn_t *c)
{
	if (c == NULL)
		return -EINVAL;
	if (c->state == ST_DEAD)
		return -ENOTCONN;
	c->flags &= ~(F_PAUSED | F_HUP);
	if (c->state == ST_CONNECTED)
		update_io_or_fail(c);
	return 0;
}

int lw_conn_set_inactivity_timeout(lw_conn_t *c, int64_t ms)
{
	if (c == NULL || ms < 0)
		return -EINVAL;
	if (c->state == ST_DEAD)
		return -ENOTCONN;
	c->idle_ns = ms_to_ns(ms);
	/* Before the connection is up, connected() starts it. */
	return idle_start(c);
}

size_t lw_conn_outbound_size(const lw_conn_t *c)
{
	return c != NULL ? c->out_bytes : 0;
}

void lw_conn_set_data(lw_conn_t *c, void *data)
{
	if (c != NULL)
		c->data = data;
}

void *lw_conn_data(const lw_conn_t *c)
{
	return c != NULL ? c->data : NULL;
}

lw_loop_t *lw_conn_loop(const lw_conn_t *c)
{
	return c != NULL ? c->loop : NULL;
}

int lw_conn_fd(const lw_conn_t *c)
{
	return c != NULL ? c->fd : -1;
}

int lw_conn_peer(const lw_conn_t *c, char *buf, size_t len)
{
	if (c == NULL || buf == NULL || len == 0)
		return -EINVAL;
	if (c->peer_len == 0)
		return -ENOTCONN;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	int n;
	if (c->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
			(const struct sockaddr_in6 *)&c->peer;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		n = snprintf(buf, len, "[%s]:%u", ip, (unsigned)port);
	} else {
		const struct sockaddr_in *s4 =
			(const struct sockaddr_in *)&c->peer;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		n = snprintf(buf, len, "%s:%u", ip, (unsigned)port);
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* ------------------------------------------------------------------------ */
/* Servers                                                                   */
/* ------------------------------------------------------------------------ */

static void server_io_cb(lw_io_t *io, int events);

static void server_free(lw_server_t *s)
{
	free(s);
}

static void server_backoff_cb(lw_timer_t *t)
{
	lw_server_t *s = LW__CONTAINER_OF(t, lw_server_t, backoff);
	if (lw__io_start_raw(&s->io, LW_READABLE, server_io_cb) != 0)
		lw__timer_start_raw(&s->backoff, server_backoff_cb,
				    ACCEPT_BACKOFF_NS, 0);
}

static void accept_one(lw_server_t *s, int fd,
		       const struct sockaddr_storage *ss, socklen_t sl)
{
	lw_conn_t *c = conn_alloc(s->loop, &s->h, s->data);
	if (c == NULL) {
		close(fd);
		return;
	}
	set_nodelay(fd);
	c->fd = fd;
	lw_io_init(s->loop, &c->io, fd);
	if (sl <= sizeof(c->peer)) {
		memcpy(&c->peer, ss, sl);
		c->peer_len = sl;
	}
	c->idle_ns = s->idle_ns;
	c->site_connect = s->site_connect;
	c->site_data = s->site_data;
	c->site_unbind = s->site_unbind;
	c->site_drain = s->site_drain;

	/* Nothing was handed out yet: a failure here is silent. */
	c->state = ST_CONNECTED;
	if (idle_start(c) != 0 || update_io(c) != 0) {
		close_socket(c);
		lw_timer_stop(&c->idle_timer);
		free(c);
		return;
	}
	lw__handle_add(s->loop, &c->handle, conn_release);
	dispatch_connect(c);
	/* Keep the sites the first connection interned for the next ones. */
	s->site_connect = c->site_connect;
	s->site_data = c->site_data;
	s->site_unbind = c->site_unbind;
	s->site_drain = c->site_drain;
}

static void server_io_cb(lw_io_t *io, int events)
{
	LW__UNUSED(events);
	lw_server_t *s = LW__CONTAINER_OF(io, lw_server_t, io);

	s->accepting = 1;
	while (!s->stopped) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			accept_one(s, fd, &ss, sl);
			continue;
		}
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			break;
		/* The pending connection failed, not the listener. */
		if (e == EINTR || e == ECONNABORTED || e == EPROTO ||
		    e == EPERM || e == ENETDOWN || e == ENOPROTOOPT ||
		    e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
		    e == EOPNOTSUPP || e == ENETUNREACH)
			continue;
		/* Out of fds or memory (or something unexpected): stop
		 * watching for a while rather than spin on a listener that
		 * stays readable. */
		lw_io_stop(&s->io);
		lw__timer_start_raw(&s->backoff, server_backoff_cb,
				    ACCEPT_BACKOFF_NS, 0);
		break;
	}
	s->accepting = 0;
	if (s->stopped)
		server_free(s);
}

static void server_close(lw_server_t *s)
{
	lw_io_stop(&s->io);
	lw_timer_stop(&s->backoff);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void server_release(lw__handle_t *h)
{
	lw_server_t *s = LW__CONTAINER_OF(h, lw_server_t, handle);
	server_close(s);
	server_free(s);
}

int lw_server_start(lw_loop_t *loop, const char *host, uint16_t port,
		    const lw_conn_handlers_t *h,
		    const lw_server_options_t *opts, void *data,
		    lw_server_t **out)
{
	if (loop == NULL || h == NULL || h->on_unbind == NULL)
		return -EINVAL;
	if (opts != NULL &&
	    (opts->backlog < 0 || opts->inactivity_timeout_ms < 0))
		return -EINVAL;

	struct sockaddr_storage ss;
	socklen_t sl;
	if (host == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		memset(&ss, 0, sizeof(ss));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
		sl = sizeof(*sin);
	} else if (!parse_numeric(host, port, &ss, &sl)) {
		return -EINVAL;
	}

	lw_server_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	int err;
	s->loop = loop;
	s->h = *h;
	s->data = data;
	s->idle_ns = opts ? ms_to_ns(opts->inactivity_timeout_ms) : 0;
	lw_timer_init(loop, &s->backoff);

	s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		       0);
	if (s->fd < 0) {
		err = -errno;
		goto fail_socket;
	}
	int one = 1;
	(void)setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->fd, (struct sockaddr *)&ss, sl) < 0 ||
	    listen(s->fd, opts && opts->backlog ? opts->backlog : SOMAXCONN) <
		    0) {
		err = -errno;
		goto fail_listen;
	}
	struct sockaddr_storage bound;
	socklen_t bl = sizeof(bound);
	if (getsockname(s->fd, (struct sockaddr *)&bound, &bl) < 0) {
		err = -errno;
		goto fail_listen;
	}
	s->port = ntohs(bound.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&bound)->sin6_port
				: ((struct sockaddr_in *)&bound)->sin_port);

	err = lw_io_init(loop, &s->io, s->fd);
	if (err == 0)
		err = lw__io_start_raw(&s->io, LW_READABLE, server_io_cb);
	if (err)
		goto fail_listen;
	lw__handle_add(loop, &s->handle, server_release);
	if (out != NULL)
		*out = s;
	return 0;

fail_listen:
	close(s->fd);
fail_socket:
	free(s);
	return err;
}

uint16_t lw_server_port(const lw_server_t *s)
{
	return s != NULL ? s->port : 0;
}

void lw_server_stop(lw_server_t *s)
{
	if (s == NULL || s->stopped)
		return;
	server_close(s);
	lw__handle_remove(&s->handle);
	if (s->accepting)
		s->stopped = 1; /* the accept loop frees it */
	else
		server_free(s);
}
