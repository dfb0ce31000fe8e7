/*
 * loopwatch.h - the whole public API of libloopwatch.
 *
 * libloopwatch is an epoll event loop for Linux with the programming model of
 * Ruby's EventMachine: timers, fd watchers, next_tick, schedule, defer onto a
 * worker pool, deferrables, queues, channels, iterators, TCP connections,
 * file, process and signal watchers.  Every callback the loop invokes goes
 * through one dispatch point per kind and is attributed to a *site* (the
 * callback's function pointer, its kind, and an optional name), so that the
 * loop can be profiled from outside.
 *
 * Conventions (after libuv):
 *   - Fallible calls return 0 or a negative errno.  A call that fails never
 *     runs its callback.
 *   - Caller-allocated handles (lw_timer_t, lw_io_t) are set up with _init
 *     and activated with _start / _stop.  Library-allocated objects are made
 *     with _new and released with _free (or _close for connections).
 *   - Unless a function says "any thread", call it on the loop's thread (the
 *     thread inside lw_run(), or any thread while the loop is not running).
 *   - The library never aborts, never prints, and keeps no global state: two
 *     loops on two threads share nothing.
 */
#ifndef LOOPWATCH_H
#define LOOPWATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LW_VERSION_MAJOR 0
#define LW_VERSION_MINOR 1
#define LW_VERSION_PATCH 0

typedef struct lw_loop lw_loop_t;
typedef struct lw_timer lw_timer_t;
typedef struct lw_io lw_io_t;
typedef struct lw_deferrable lw_deferrable_t;
typedef struct lw_queue lw_queue_t;
typedef struct lw_channel lw_channel_t;
typedef struct lw_iterator lw_iterator_t;
typedef struct lw_conn lw_conn_t;
typedef struct lw_server lw_server_t;
typedef struct lw_fswatch lw_fswatch_t;
typedef struct lw_child lw_child_t;
typedef struct lw_signal lw_signal_t;

/* ------------------------------------------------------------------------ */
/* Sites: what a callback is, for the profiler.                             */
/* ------------------------------------------------------------------------ */

/*
 * The kind of event that made the loop invoke a callback.  The values are
 * part of the ring ABI (docs/ring-abi.md): never renumber, only append.
 */
typedef enum lw_kind {
	LW_KIND_NONE = 0,
	LW_KIND_TIMER = 1, /* a timer fired */
	LW_KIND_IO = 2, /* an fd watcher saw readiness */
	LW_KIND_TICK = 3, /* lw_next_tick() or lw_schedule() */
	LW_KIND_POST = 4, /* lw_post() from another thread */
	LW_KIND_DEFER = 5, /* the loop-thread completion of lw_defer() */
	LW_KIND_DEFERRABLE = 6, /* a deferrable's callback or errback */
	LW_KIND_QUEUE = 7, /* lw_queue_pop() handed out an item */
	LW_KIND_CHANNEL = 8, /* a channel subscriber got an item */
	LW_KIND_ITERATOR = 9, /* an iterator's per-item or completion call */
	LW_KIND_CONNECT = 10, /* a connection came up (client or accepted) */
	LW_KIND_DATA = 11, /* a connection received data */
	LW_KIND_UNBIND = 12, /* a connection went away */
	LW_KIND_FILE = 13, /* a file watcher saw a change */
	LW_KIND_CHILD = 14, /* a watched child process exited */
	LW_KIND_SIGNAL = 15, /* a watched signal arrived */
	LW_KIND_PROBE =
		16, /* reported through the probe API by a foreign loop */
	LW_KIND_WORK = 17, /* a job on the defer pool (named, never recorded) */
	LW_KIND_MAX_
} lw_kind_t;

/* A short lower-case name for a kind ("timer", "io", ...); never NULL. */
const char *lw_kind_name(int kind);

/* The table behind lw_kind_name(), inline so that a reader of rings (the
 * agent), which does not link the library, names kinds the same way. */
static inline const char *lw__kind_name(int kind)
{
	switch (kind) {
	case LW_KIND_NONE:
		return "none";
	case LW_KIND_TIMER:
		return "timer";
	case LW_KIND_IO:
		return "io";
	case LW_KIND_TICK:
		return "tick";
	case LW_KIND_POST:
		return "post";
	case LW_KIND_DEFER:
		return "defer";
	case LW_KIND_DEFERRABLE:
		return "deferrable";
	case LW_KIND_QUEUE:
		return "queue";
	case LW_KIND_CHANNEL:
		return "channel";
	case LW_KIND_ITERATOR:
		return "iterator";
	case LW_KIND_CONNECT:
		return "connect";
	case LW_KIND_DATA:
		return "data";
	case LW_KIND_UNBIND:
		return "unbind";
	case LW_KIND_FILE:
		return "file";
	case LW_KIND_CHILD:
		return "child";
	case LW_KIND_SIGNAL:
		return "signal";
	case LW_KIND_PROBE:
		return "probe";
	case LW_KIND_WORK:
		return "work";
	default:
		return "unknown";
	}
}

/* Any callback, as an address: the identity of a site. */
typedef void (*lw_fn)(void);
#define LW_FN(f) ((lw_fn)(void (*)(void))(f))

/*
 * Give every site whose callback is `fn` a human name in this loop ("GET
 * /fsync", "flush_log").  Applies to sites already seen and to sites seen
 * later.  The name is copied (at most 63 bytes are kept).  NULL removes it.
 */
int lw_site_name(lw_loop_t *loop, lw_fn fn, const char *name);

/* A site as a reader sees it. */
typedef struct lw_site_info {
	uint32_t id; /* 1-based, dense, stable for the loop's life */
	int kind; /* lw_kind_t */
	lw_fn fn; /* the callback's address */
	const char *name; /* the name given with lw_site_name(), or NULL */
	uint64_t calls; /* how many times the loop invoked it */
} lw_site_info_t;

/* Call `each` for every site of the loop, in id order.  Loop thread. */
void lw_site_foreach(lw_loop_t *loop,
		     void (*each)(const lw_site_info_t *site, void *arg),
		     void *arg);

/* ------------------------------------------------------------------------ */
/* The loop                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct lw_loop_options {
	/* A name for the loop, shown by loopwatch ("main", "worker-2"). */
	const char *name;
	/*
	 * Worker threads for lw_defer().  0 means the default, 20 (as in
	 * EventMachine), or LOOPWATCH_THREADS from the environment.  The
	 * threads start at the first lw_defer().
	 */
	unsigned defer_threads;
	/*
	 * The loop's ring: the shared memory through which loopwatch reads
	 * every callback's duration (docs/ring-abi.md).  Records it holds
	 * before the oldest is overwritten, rounded up to a power of two;
	 * 0 means LOOPWATCH_RING_SIZE from the environment, or 65536.
	 */
	unsigned ring_capacity;
	/* Non-zero: no ring for this loop.  LOOPWATCH=off in the environment
	 * turns rings off for the whole process. */
	int no_ring;
} lw_loop_options_t;

/* Make a loop.  `opts` may be NULL.  Returns 0 or -errno. */
int lw_loop_new(lw_loop_t **out, const lw_loop_options_t *opts);

/*
 * Release a loop that is not running.  Stops the worker pool (queued defers
 * are dropped without their completion; running ones are waited for) and
 * closes every fd the loop owns.  Handles the caller allocated must not be
 * used afterwards; library objects still open are released.
 */
void lw_loop_free(lw_loop_t *loop);

/*
 * Run the loop on the calling thread until lw_stop().  Returns 0 when
 * stopped, -EBUSY if the loop is already running, or -errno if the kernel
 * wait fails.
 */
int lw_run(lw_loop_t *loop);

/*
 * Run one iteration: expired timers, ticks, posts, then wait for I/O at most
 * `timeout_ms` (0: do not wait; -1: wait as the loop would).  Returns the
 * number of callbacks run, or -errno.
 */
int lw_run_once(lw_loop_t *loop, int timeout_ms);

/* Make lw_run() return after the current callback.  Any thread. */
void lw_stop(lw_loop_t *loop);

/* Non-zero when called on the thread that is running the loop. */
int lw_on_loop_thread(const lw_loop_t *loop);

/* The loop's cached CLOCK_MONOTONIC time in ns, refreshed every iteration. */
uint64_t lw_now(const lw_loop_t *loop);

/* Refresh the cached time now. */
void lw_update_time(lw_loop_t *loop);

/* The loop's ring memfd, or -1 when it has none. */
int lw_loop_ring_fd(const lw_loop_t *loop);

/* The loop's name (never NULL) and the user pointer for the whole loop. */
const char *lw_loop_name(const lw_loop_t *loop);
void lw_loop_set_data(lw_loop_t *loop, void *data);
void *lw_loop_data(const lw_loop_t *loop);

typedef struct lw_loop_stats {
	uint64_t iterations; /* loop iterations so far */
	uint64_t callbacks; /* callbacks invoked so far */
	uint64_t busy_ns; /* time spent outside the kernel wait */
	uint64_t idle_ns; /* time spent inside the kernel wait */
	uint32_t sites; /* sites seen */
	uint32_t active_timers;
	uint32_t active_ios;
	uint32_t pending_ticks;
} lw_loop_stats_t;

void lw_loop_stats(const lw_loop_t *loop, lw_loop_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Timers (EM.add_timer, EM.add_periodic_timer, Timer#cancel)               */
/* ------------------------------------------------------------------------ */

typedef void (*lw_timer_cb)(lw_timer_t *timer);

/*
 * A timer is caller-allocated.  Its fields are private except `data`.
 * Timers with the same deadline fire in the order they were started.
 */
struct lw_timer {
	void *data; /* public: yours */
	/* private */
	lw_loop_t *loop;
	lw_timer_cb cb;
	void *site;
	uint64_t due; /* ns, CLOCK_MONOTONIC */
	uint64_t repeat; /* ns; 0 for a one-shot timer */
	uint64_t seq; /* start order, the tie-break for equal deadlines */
	uint32_t heap_index; /* 0 when not in the heap */
	uint32_t flags;
};

/* Set up a timer for `loop`.  It clears the whole struct, `data` included:
 * set `data` after this call. */
int lw_timer_init(lw_loop_t *loop, lw_timer_t *timer);

/*
 * Fire `cb` after `timeout_ms`, then every `repeat_ms` if that is not 0.  A
 * periodic timer is rescheduled from its previous deadline, not from when its
 * callback ran, so it does not drift; if the loop fell more than a whole
 * period behind, the missed ticks are skipped rather than run in a burst.
 * Restarting an active timer moves it.  -EINVAL for a NULL callback or a
 * negative time.
 */
int lw_timer_start(lw_timer_t *timer, lw_timer_cb cb, int64_t timeout_ms,
		   int64_t repeat_ms);

/* As lw_timer_start(), in nanoseconds. */
int lw_timer_start_ns(lw_timer_t *timer, lw_timer_cb cb, int64_t timeout_ns,
		      int64_t repeat_ns);

/* Cancel.  Safe from the timer's own callback and on a stopped timer. */
int lw_timer_stop(lw_timer_t *timer);

int lw_timer_is_active(const lw_timer_t *timer);

/* ------------------------------------------------------------------------ */
/* next_tick, schedule, post                                                */
/* ------------------------------------------------------------------------ */

typedef void (*lw_cb)(lw_loop_t *loop, void *arg);

/*
 * Run `cb(loop, arg)` on the next iteration (EM.next_tick).  Work queued
 * while ticks run goes to a later iteration, so I/O is polled between two
 * steps of a long chain.
 */
int lw_next_tick(lw_loop_t *loop, lw_cb cb, void *arg);

/*
 * Run `cb` now when called on the loop thread, else post it (EM.schedule).
 * Any thread.
 */
int lw_schedule(lw_loop_t *loop, lw_cb cb, void *arg);

/* Run `cb` on the loop thread soon; wakes the loop.  Any thread. */
int lw_post(lw_loop_t *loop, lw_cb cb, void *arg);

/* ------------------------------------------------------------------------ */
/* defer: a worker pool (EM.defer)                                          */
/* ------------------------------------------------------------------------ */

typedef void *(*lw_work_fn)(void *arg);
typedef void (*lw_done_cb)(lw_loop_t *loop, void *arg, void *result);

/*
 * Run `op(arg)` on a worker thread, then `done(loop, arg, result)` on the
 * loop thread.  `done` may be NULL.  Any thread.
 */
int lw_defer(lw_loop_t *loop, lw_work_fn op, lw_done_cb done, void *arg);

typedef struct lw_pool_stats {
	uint32_t threads; /* worker threads started */
	uint32_t busy; /* workers running a job now */
	uint32_t queued; /* jobs waiting for a worker */
	uint64_t completed; /* jobs finished */
	uint64_t oldest_start_ns; /* start of the oldest running job, or 0 */
	lw_fn oldest_fn; /* its op, or NULL */
} lw_pool_stats_t;

/* Any thread. */
void lw_pool_stats(lw_loop_t *loop, lw_pool_stats_t *out);

/* ------------------------------------------------------------------------ */
/* fd watchers (EM.watch, EM.attach)                                        */
/* ------------------------------------------------------------------------ */

enum { LW_READABLE = 1, LW_WRITABLE = 2, LW_HANGUP = 4, LW_ERROR = 8 };

typedef void (*lw_io_cb)(lw_io_t *io, int events);

struct lw_io {
	void *data; /* public: yours */
	/* private */
	lw_loop_t *loop;
	lw_io_cb cb;
	void *site;
	int fd;
	int events; /* what we are watching for */
	int registered; /* what epoll currently has */
};

/* Watch `fd`, which stays the caller's.  -EBADF if it is not open.  It
 * clears the whole struct, `data` included: set `data` after this call. */
int lw_io_init(lw_loop_t *loop, lw_io_t *io, int fd);

/*
 * Watch for `events` (LW_READABLE | LW_WRITABLE), calling `cb(io, events)`
 * with what is ready (LW_HANGUP and LW_ERROR are always reported).
 * Level-triggered.  Calling it again changes the events or the callback.
 */
int lw_io_start(lw_io_t *io, int events, lw_io_cb cb);

/* Stop watching; no callback for this watcher runs after it returns. */
int lw_io_stop(lw_io_t *io);

int lw_io_is_active(const lw_io_t *io);

/* ------------------------------------------------------------------------ */
/* Deferrables (EM::Deferrable)                                             */
/* ------------------------------------------------------------------------ */

typedef enum lw_deferrable_state {
	LW_PENDING = 0,
	LW_SUCCEEDED = 1,
	LW_FAILED = 2,
} lw_deferrable_state_t;

typedef void (*lw_deferrable_cb)(lw_deferrable_t *d, void *arg, void *value);

/* A pending deferrable.  Loop thread. */
int lw_deferrable_new(lw_loop_t *loop, lw_deferrable_t **out);

/*
 * Release it.  Safe from inside one of its own callbacks (the release then
 * happens when the callback returns, and no further callback runs).
 */
void lw_deferrable_free(lw_deferrable_t *d);

/*
 * Add a callback (runs on success) or an errback (runs on failure), in the
 * order added.  One added after the outcome that matches it runs at once,
 * before this call returns; one that does not match is dropped.  One added
 * from inside a callback while the deferrable is resolving runs after the
 * ones already queued.  `*id`, if not NULL, receives a handle for
 * lw_deferrable_cancel().  -EINVAL for a NULL callback.
 */
int lw_deferrable_callback(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg,
			   uint64_t *id);
int lw_deferrable_errback(lw_deferrable_t *d, lw_deferrable_cb cb, void *arg,
			  uint64_t *id);

/* Remove a callback or errback that has not run.  -ENOENT otherwise. */
int lw_deferrable_cancel(lw_deferrable_t *d, uint64_t id);

/*
 * Resolve: run the callbacks (succeed) or the errbacks (fail) with `value`.
 * A deferrable resolves once: -EALREADY after that.
 */
int lw_deferrable_succeed(lw_deferrable_t *d, void *value);
int lw_deferrable_fail(lw_deferrable_t *d, void *value);

/*
 * Fail with `value` if still pending after `timeout_ms`.  Calling it again
 * replaces the timeout; resolving or lw_deferrable_cancel_timeout() removes
 * it.  -EALREADY once resolved, -EINVAL for a negative time.
 */
int lw_deferrable_timeout(lw_deferrable_t *d, int64_t timeout_ms, void *value);
int lw_deferrable_cancel_timeout(lw_deferrable_t *d);

lw_deferrable_state_t lw_deferrable_state(const lw_deferrable_t *d);
void *lw_deferrable_value(const lw_deferrable_t *d);
void lw_deferrable_set_data(lw_deferrable_t *d, void *data);
void *lw_deferrable_data(const lw_deferrable_t *d);

/* ------------------------------------------------------------------------ */
/* Queues (EM::Queue)                                                       */
/* ------------------------------------------------------------------------ */

typedef void (*lw_queue_cb)(lw_queue_t *q, void *arg, void *item);

int lw_queue_new(lw_loop_t *loop, lw_queue_t **out);

/* Release the queue; pops still waiting are dropped without a call, and so
 * are the items.  Safe from a pop callback. */
void lw_queue_free(lw_queue_t *q);

/* Append an item.  Any thread. */
int lw_queue_push(lw_queue_t *q, void *item);

/*
 * Hand the next item to `cb(q, arg, item)` on the loop thread, on a later
 * iteration.  With the queue empty, the pop waits and the next push serves
 * it; several waiting pops are served in the order they were made.
 */
int lw_queue_pop(lw_queue_t *q, lw_queue_cb cb, void *arg);

/* Items not yet handed out.  Any thread. */
size_t lw_queue_size(lw_queue_t *q);

/* ------------------------------------------------------------------------ */
/* Channels (EM::Channel)                                                   */
/* ------------------------------------------------------------------------ */

typedef void (*lw_channel_cb)(lw_channel_t *ch, void *arg, void *item);

int lw_channel_new(lw_loop_t *loop, lw_channel_t **out);

/* Release the channel; pushes not yet delivered are dropped.  Safe from a
 * subscriber's callback: no further subscriber runs. */
void lw_channel_free(lw_channel_t *ch);

/* Subscribe; returns a positive id, or -errno. */
int64_t lw_channel_subscribe(lw_channel_t *ch, lw_channel_cb cb, void *arg);

/* -ENOENT if `id` is not subscribed.  Safe from a subscriber's callback. */
int lw_channel_unsubscribe(lw_channel_t *ch, int64_t id);

/*
 * Deliver `item` to every subscriber, in subscription order: at once on the
 * loop thread, else posted to it (EM.schedule semantics).  A subscriber
 * added during a delivery gets the next item, not this one.  Items pushed
 * from one thread arrive in the order pushed.  Any thread.
 */
int lw_channel_push(lw_channel_t *ch, void *item);

size_t lw_channel_subscribers(const lw_channel_t *ch);

/* ------------------------------------------------------------------------ */
/* Iterators (EM::Iterator)                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Called for item `index`.  The work may be asynchronous: call
 * lw_iterator_next(it) when the item is done, from this call or later.
 */
typedef void (*lw_iterator_each_cb)(lw_iterator_t *it, size_t index, void *arg);
/* Called once, after every item is done.  The iterator is freed after. */
typedef void (*lw_iterator_done_cb)(lw_iterator_t *it, void *arg);

/*
 * Run `each` over items 0..n-1 with at most `concurrency` not yet done.
 * Items start on later iterations, in order; a slot freed by
 * lw_iterator_next() is filled on the next iteration, so even synchronous
 * items let the loop poll between them.  With n == 0, `done` runs on the
 * next iteration.  `done` and `out` may be NULL.  -EINVAL for a NULL `each`
 * or a concurrency of 0.
 */
int lw_iterator_start(lw_loop_t *loop, size_t n, unsigned concurrency,
		      lw_iterator_each_cb each, lw_iterator_done_cb done,
		      void *arg, lw_iterator_t **out);

/* Mark one item done.  -EINVAL if more calls than items started. */
int lw_iterator_next(lw_iterator_t *it);

/* Items started but not yet done. */
unsigned lw_iterator_in_flight(const lw_iterator_t *it);

/* ------------------------------------------------------------------------ */
/* TCP connections (EM.connect, EM.start_server, EM::Connection)            */
/* ------------------------------------------------------------------------ */

/* Why a connection went away, as given to on_unbind. */
typedef enum lw_unbind_reason {
	LW_UNBIND_CLOSED = 0, /* closed by us, or the peer closed cleanly */
	LW_UNBIND_REFUSED = 1, /* connect refused */
	LW_UNBIND_RESET = 2, /* the peer reset the connection */
	LW_UNBIND_TIMEOUT = 3, /* the connect timeout expired */
	LW_UNBIND_INACTIVITY = 4, /* the inactivity timeout expired */
	LW_UNBIND_RESOLVE = 5, /* the host name could not be resolved */
	LW_UNBIND_ERROR = 6, /* another error; see the errno argument */
} lw_unbind_reason_t;

const char *lw_unbind_reason_name(int reason);

typedef struct lw_conn_handlers {
	/* The connection is up: connected (client) or accepted (server). */
	void (*on_connect)(lw_conn_t *c);
	/* Bytes arrived.  `data` is valid only during the call. */
	void (*on_data)(lw_conn_t *c, const char *data, size_t len);
	/*
	 * The connection is gone, with the reason and an errno (0 if none;
	 * ETIMEDOUT for both timeouts; for LW_UNBIND_RESOLVE an errno that
	 * approximates the resolver's error: ENOENT for an unknown name,
	 * EAGAIN for a temporary failure).
	 * The connection is freed when this returns.  Always called exactly
	 * once for a connection that lw_connect() or a server returned, on a
	 * later loop iteration than the event or call that ended it.
	 * Required: the only handler that may not be NULL.
	 */
	void (*on_unbind)(lw_conn_t *c, int reason, int err);
	/*
	 * Bytes that had to be queued (the socket was full) are now all
	 * written (optional).  A write the socket took at once does not call
	 * it.  Its site kind is LW_KIND_IO: it answers the socket becoming
	 * writable.
	 */
	void (*on_drain)(lw_conn_t *c);
} lw_conn_handlers_t;

typedef struct lw_connect_options {
	/* 0: none.  Counts from lw_connect(), name resolution included. */
	int64_t connect_timeout_ms;
	int64_t inactivity_timeout_ms; /* 0: none */
} lw_connect_options_t;

/*
 * Connect to host:port without blocking the loop; the name is resolved on
 * the worker pool (a numeric IPv4 or IPv6 address is not), and each address
 * it gives is tried in turn.  Every failure after this returns 0 (refused,
 * timeout, name not found) arrives through on_unbind.  `opts`, `data` and
 * `out` may be NULL.  -EINVAL for a NULL handler table or on_unbind, port
 * 0, negative timeouts, or a host that is empty, longer than 253 bytes, or
 * has spaces or control characters.  Bytes written before the connection
 * is up are queued and sent once it is.
 */
int lw_connect(lw_loop_t *loop, const char *host, uint16_t port,
	       const lw_conn_handlers_t *h, const lw_connect_options_t *opts,
	       void *data, lw_conn_t **out);

/*
 * Queue bytes for writing.  They are copied; partial writes and a full
 * socket are handled.  -ENOTCONN once the connection is closing.  When the
 * peer ends its side while bytes are still queued, they are sent before the
 * connection closes (with LW_UNBIND_CLOSED, or LW_UNBIND_RESET if the peer
 * is gone altogether).
 */
int lw_conn_write(lw_conn_t *c, const void *data, size_t len);

/*
 * Close.  With `after_writing`, the queued bytes are sent first
 * (EM's close_connection_after_writing); reading stops at once.  on_unbind
 * follows, on a later iteration, with LW_UNBIND_CLOSED (or the error that
 * stopped the flush).  Safe from any of the connection's callbacks; no
 * on_data follows it.  Closing twice is harmless.
 */
int lw_conn_close(lw_conn_t *c, int after_writing);

/*
 * Stop and resume reading (back-pressure towards the peer).  A peer that
 * closes while reading is paused is noticed on resume.  -ENOTCONN once the
 * connection is closing.
 */
int lw_conn_pause(lw_conn_t *c);
int lw_conn_resume(lw_conn_t *c);

/*
 * Close with LW_UNBIND_INACTIVITY after `ms` without bytes in or out; 0
 * turns it off.  Counts from this call, or from when the connection comes
 * up if it is not up yet.
 */
int lw_conn_set_inactivity_timeout(lw_conn_t *c, int64_t ms);

/* Bytes queued in the library, not yet taken by the socket. */
size_t lw_conn_outbound_size(const lw_conn_t *c);
void lw_conn_set_data(lw_conn_t *c, void *data);
void *lw_conn_data(const lw_conn_t *c);
lw_loop_t *lw_conn_loop(const lw_conn_t *c);
int lw_conn_fd(const lw_conn_t *c);

/* The peer's address as "ip:port" ("[ip6]:port") into buf; -ENOSPC if it
 * does not fit, -ENOTCONN before an address was chosen. */
int lw_conn_peer(const lw_conn_t *c, char *buf, size_t len);

typedef struct lw_server_options {
	int backlog; /* 0: SOMAXCONN */
	int64_t inactivity_timeout_ms; /* for accepted connections; 0: none */
} lw_server_options_t;

/*
 * Listen on host:port (a numeric address, else -EINVAL; NULL for 0.0.0.0;
 * port 0 for any free port) and give each accepted connection `h` and
 * `data`; on_connect runs as each is accepted.  -EINVAL for a NULL handler
 * table or on_unbind, or negative options.  When the process runs out of
 * file descriptors the server stops accepting for 100 ms at a time instead
 * of spinning; waiting connections stay in the kernel's queue.
 */
int lw_server_start(lw_loop_t *loop, const char *host, uint16_t port,
		    const lw_conn_handlers_t *h,
		    const lw_server_options_t *opts, void *data,
		    lw_server_t **out);

/* The port actually bound. */
uint16_t lw_server_port(const lw_server_t *s);

/* Stop listening and free the server; connections already accepted stay
 * open.  Safe from a callback of one of its connections. */
void lw_server_stop(lw_server_t *s);

/* ------------------------------------------------------------------------ */
/* File, process and signal watchers                                        */
/* ------------------------------------------------------------------------ */

enum {
	LW_FILE_MODIFIED = 1, /* written or truncated */
	LW_FILE_MOVED = 2, /* renamed away */
	LW_FILE_DELETED = 4, /* removed; the watcher is freed after this */
	LW_FILE_ATTRIB = 8, /* metadata changed */
};

typedef void (*lw_fswatch_cb)(lw_fswatch_t *w, void *arg, int events);

/*
 * Watch a file (EM.watch_file) through inotify; `cb(w, arg, events)` runs
 * once per change with its LW_FILE_* bit.  The watch follows the file, not
 * the name: after LW_FILE_MOVED it reports on the file at its new name.
 * Removing a file changes its link count (LW_FILE_ATTRIB) before
 * LW_FILE_DELETED, which the kernel reports only when the last name is gone
 * and nothing holds the file open; the watcher is freed when that callback
 * returns.  A path that cannot be watched fails with its errno (-ENOENT,
 * -EACCES, ...).  `out` may be NULL.  All the watchers of a loop share one
 * inotify fd; if its queue overflows, every watcher gets LW_FILE_MODIFIED,
 * as the lost changes cannot be told apart.
 */
int lw_fswatch_start(lw_loop_t *loop, const char *path, lw_fswatch_cb cb,
		     void *arg, lw_fswatch_t **out);

/* Stop and free the watcher; no callback of it runs afterwards.  Safe from
 * any watcher's callback, including its own. */
void lw_fswatch_stop(lw_fswatch_t *w);

/*
 * `status` is as from waitpid(): use WIFEXITED(), WEXITSTATUS(), ...  The
 * child is reaped.  The watcher is freed after the callback.
 */
typedef void (*lw_child_cb)(lw_child_t *w, void *arg, pid_t pid, int status);

/*
 * Watch a child of this process (EM.watch_process) through a pidfd.  A child
 * that has already exited (not yet reaped) is reported on the next
 * iteration.  -ECHILD if `pid` is not our child, -ESRCH if there is no such
 * process, -EBUSY if this loop already watches it, -ENOSYS on kernels
 * before 5.4.  Anything else in the process that reaps the child first
 * (waitpid(-1), SIGCHLD set to SIG_IGN) takes its status: the watcher then
 * ends without a call.  `out` may be NULL.
 */
int lw_child_start(lw_loop_t *loop, pid_t pid, lw_child_cb cb, void *arg,
		   lw_child_t **out);

/* Stop and free the watcher without reaping the child (waitpid() is then
 * yours).  Safe from its own callback; not after that callback returned. */
void lw_child_stop(lw_child_t *w);

typedef void (*lw_signal_cb)(lw_signal_t *w, void *arg, int signum);

/*
 * Deliver `signum` on the loop thread (signalfd).  The signal is blocked in
 * the calling thread; block it in every other thread of the process too
 * (before creating them) or the kernel may deliver it there instead.  Every
 * watcher of a signal in one loop gets each instance; two loops watching
 * one signal compete for it.  Standard signals sent again before the loop
 * reads them arrive once, as the kernel merges them.  -EINVAL for a signal
 * that cannot be caught (SIGKILL, SIGSTOP), one glibc keeps for itself (32,
 * 33), or one out of range.  `out` may be NULL.
 * A signal whose disposition is SIG_IGN is discarded by the kernel before
 * any signalfd sees it (shells start background jobs with SIGINT ignored):
 * set it to SIG_DFL while it is blocked if you want it.  The library does
 * not, because the disposition belongs to the whole process.
 */
int lw_signal_start(lw_loop_t *loop, int signum, lw_signal_cb cb, void *arg,
		    lw_signal_t **out);

/*
 * Stop and free the watcher.  Safe from any watcher's callback, including
 * its own.  The signal stays blocked: whether the program had blocked it
 * itself, and in which threads, is not something the library can know, so
 * unblocking is left to the program.  Instances that arrive while no
 * watcher is started stay pending.
 */
void lw_signal_stop(lw_signal_t *w);

/* ------------------------------------------------------------------------ */
/* The probe API: report another event loop's callbacks                     */
/* ------------------------------------------------------------------------ */

/*
 * A loop that is not libloopwatch's (a hand-written epoll loop, libuv,
 * libev, libevent) reports its callbacks into a ring of its own through
 * these calls, and loopwatch reads it like any other:
 *
 *	lw_probe_t *p;
 *	lw_probe_new(&p, "main", 0);              // on the loop's thread
 *	uint32_t s = lw_probe_site(p, LW_KIND_IO, LW_FN(on_read), "on_read");
 *	for (;;) {
 *		lw_probe_wait_enter(p);
 *		n = epoll_wait(...);
 *		lw_probe_wait_exit(p);
 *		for (each event) {
 *			lw_probe_begin(p, s);
 *			on_read(...);
 *			lw_probe_end(p);
 *		}
 *	}
 *
 * All calls but lw_probe_new() and lw_probe_free() are for the loop's
 * thread, never block, and cost a few ns.  With LOOPWATCH=off, or when the
 * ring cannot be made, lw_probe_new() still succeeds and every other call
 * does nothing, so the loop needs no second code path.
 */
typedef struct lw_probe lw_probe_t;

/* Make a probe and its ring, named `name`; `capacity` as in
 * lw_loop_options_t.  The calling thread is recorded as the loop's. */
int lw_probe_new(lw_probe_t **out, const char *name, unsigned capacity);
void lw_probe_free(lw_probe_t *p);

/* 1 if the probe has a ring (reports go somewhere). */
int lw_probe_enabled(const lw_probe_t *p);

/*
 * Declare a site: a callback of the loop, its kind (lw_kind_t), and an
 * optional name.  Returns its id (> 0) for lw_probe_begin(); the same
 * (kind, fn) gives the same id.  0 if the probe is off.
 */
uint32_t lw_probe_site(lw_probe_t *p, int kind, lw_fn fn, const char *name);

/* A callback of site `site` starts; `due_ns` (CLOCK_MONOTONIC) is when a
 * timer was due, so its lateness is recorded, or 0. */
void lw_probe_begin(lw_probe_t *p, uint32_t site, uint64_t due_ns);

/* The callback begun last ends. */
void lw_probe_end(lw_probe_t *p);

/* The loop enters / leaves its wait (epoll_wait, poll, ...). */
void lw_probe_wait_enter(lw_probe_t *p);
void lw_probe_wait_exit(lw_probe_t *p);

#ifdef __cplusplus
}
#endif
#endif /* LOOPWATCH_H */
