/* test_loop.c - the loop: ticks, schedule, posts, stop, fd watchers, sites,
 * several loops, and defer. */
#include "lwtest.h"
#include "loopwatch.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* ---- next_tick ---- */

struct ticks {
	int order[16];
	int n;
	uint64_t iter[16];
};

static void tick_rec(lw_loop_t *loop, void *arg)
{
	struct ticks *t = lw_loop_data(loop);
	lw_loop_stats_t st;
	lw_loop_stats(loop, &st);
	t->iter[t->n] = st.iterations;
	t->order[t->n++] = (int)(intptr_t)arg;
	/* Work queued during a tick runs on a later iteration. */
	if ((intptr_t)arg == 1)
		ASSERT_OK(lw_next_tick(loop, tick_rec, (void *)(intptr_t)4));
	if (t->n == 4)
		lw_stop(loop);
}

TEST(tick_order_and_next_iteration)
{
	lw_loop_t *loop;
	struct ticks t = { 0 };
	ASSERT_OK(lw_loop_new(&loop, NULL));
	lw_loop_set_data(loop, &t);
	for (intptr_t i = 1; i <= 3; i++)
		ASSERT_OK(lw_next_tick(loop, tick_rec, (void *)i));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(t.order[0], 1);
	ASSERT_EQ(t.order[1], 2);
	ASSERT_EQ(t.order[2], 3);
	ASSERT_EQ(t.order[3], 4);
	ASSERT_EQ(t.iter[0], t.iter[2]);
	ASSERT_GT(t.iter[3], t.iter[2]);
	lw_loop_free(loop);
}

/* A chain of 100,000 ticks must not starve I/O: bytes written to a socket
 * pair by another thread are read while the chain runs. */
struct starve {
	int fds[2];
	lw_io_t io;
	long steps;
	long reads_during_chain;
	int chain_done;
};

static void chain_step(lw_loop_t *loop, void *arg)
{
	struct starve *s = arg;
	if (++s->steps == 100000) {
		s->chain_done = 1;
		lw_stop(loop);
		return;
	}
	ASSERT_OK(lw_next_tick(loop, chain_step, s));
}

static void starve_read(lw_io_t *io, int events)
{
	struct starve *s = io->data;
	char buf[64];
	ssize_t n = read(s->fds[0], buf, sizeof(buf));
	if (n > 0 && !s->chain_done)
		s->reads_during_chain++;
	/* Echo so the writer thread keeps sending. */
	if (n > 0)
		ASSERT_EQ(write(s->fds[0], "k", 1), 1);
}

static void *starve_writer(void *p)
{
	struct starve *s = p;
	for (int i = 0; i < 5; i++) {
		char c;
		if (write(s->fds[1], "x", 1) != 1)
			break;
		if (read(s->fds[1], &c, 1) != 1)
			break;
	}
	return NULL;
}

TEST(tick_chain_does_not_starve_io)
{
	lw_loop_t *loop;
	struct starve s = { 0 };
	pthread_t th;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds));
	ASSERT_OK(lw_io_init(loop, &s.io, s.fds[0]));
	s.io.data = &s;
	ASSERT_OK(lw_io_start(&s.io, LW_READABLE, starve_read));
	ASSERT_OK(lw_next_tick(loop, chain_step, &s));
	ASSERT_OK(pthread_create(&th, NULL, starve_writer, &s));
	ASSERT_OK(lw_run(loop));
	pthread_join(th, NULL);
	ASSERT_EQ(s.steps, 100000);
	/* All five round trips happened while the chain was still running. */
	ASSERT_EQ(s.reads_during_chain, 5);
	close(s.fds[0]);
	close(s.fds[1]);
	lw_loop_free(loop);
}

/* ---- schedule and post ---- */

static pthread_t loop_thread_id;
static atomic_int sched_ran_on_loop, sched_ran_elsewhere;

static void sched_cb(lw_loop_t *loop, void *arg)
{
	if (pthread_equal(pthread_self(), loop_thread_id))
		atomic_fetch_add(&sched_ran_on_loop, 1);
	else
		atomic_fetch_add(&sched_ran_elsewhere, 1);
	if (arg != NULL)
		*(int *)arg = 1;
}

static void sched_now(lw_loop_t *loop, void *arg)
{
	int flag = 0;
	/* On the loop thread, schedule runs at once. */
	ASSERT_OK(lw_schedule(loop, sched_cb, &flag));
	ASSERT_EQ(flag, 1);
	lw_stop(loop);
}

TEST(schedule_runs_now_on_loop_thread)
{
	lw_loop_t *loop;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	loop_thread_id = pthread_self();
	ASSERT_OK(lw_next_tick(loop, sched_now, NULL));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(atomic_load(&sched_ran_on_loop), 1);
	lw_loop_free(loop);
}

enum { POSTERS = 8, POSTS_EACH = 20000 };
struct post_state {
	lw_loop_t *loop;
	atomic_long received;
	long per_thread_last[POSTERS];
	int out_of_order;
};

static struct post_state ps;

static void post_cb(lw_loop_t *loop, void *arg)
{
	uintptr_t v = (uintptr_t)arg;
	int th = (int)(v >> 32);
	long seq = (long)(v & 0xffffffff);
	if (!pthread_equal(pthread_self(), loop_thread_id))
		atomic_fetch_add(&sched_ran_elsewhere, 1);
	if (seq != ps.per_thread_last[th] + 1)
		ps.out_of_order++;
	ps.per_thread_last[th] = seq;
	if (atomic_fetch_add(&ps.received, 1) + 1 == POSTERS * POSTS_EACH)
		lw_stop(loop);
}

static void *poster(void *p)
{
	uintptr_t th = (uintptr_t)p;
	for (uintptr_t i = 1; i <= POSTS_EACH; i++) {
		/* Alternate the two any-thread entry points. */
		int r = (i & 1) ? lw_post(ps.loop, post_cb,
					  (void *)(th << 32 | i))
				: lw_schedule(ps.loop, post_cb,
					      (void *)(th << 32 | i));
		if (r != 0)
			LWT_FAIL("post failed: %d", r);
	}
	return NULL;
}

TEST(post_from_many_threads)
{
	pthread_t th[POSTERS];
	ASSERT_OK(lw_loop_new(&ps.loop, NULL));
	loop_thread_id = pthread_self();
	for (uintptr_t i = 0; i < POSTERS; i++)
		ASSERT_OK(pthread_create(&th[i], NULL, poster, (void *)i));
	ASSERT_OK(lw_run(ps.loop));
	for (int i = 0; i < POSTERS; i++)
		pthread_join(th[i], NULL);
	ASSERT_EQ(atomic_load(&ps.received), POSTERS * POSTS_EACH);
	ASSERT_EQ(ps.out_of_order, 0);
	ASSERT_EQ(atomic_load(&sched_ran_elsewhere), 0);
	lw_loop_free(ps.loop);
}

/* ---- stop ---- */

static void *stopper(void *p)
{
	usleep(50 * 1000);
	lw_stop(p);
	return NULL;
}

TEST(stop_from_another_thread)
{
	lw_loop_t *loop;
	pthread_t th;
	lw_timer_t idle;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	/* A far timer so the loop sleeps in its wait. */
	ASSERT_OK(lw_timer_init(loop, &idle));
	ASSERT_OK(lw_timer_start(&idle, (lw_timer_cb)(void (*)(void))abort,
				 3600 * 1000, 0));
	ASSERT_OK(pthread_create(&th, NULL, stopper, loop));
	double t0 = lwt_now_ms();
	ASSERT_OK(lw_run(loop));
	ASSERT_GE(lwt_now_ms() - t0, 45);
	pthread_join(th, NULL);
	lw_stop(loop); /* a stop before run ends the next run at once */
	ASSERT_OK(lw_run(loop));
	lw_loop_free(loop);
}

static void run_twice(lw_loop_t *loop, void *arg)
{
	*(int *)arg = lw_run(loop);
	lw_stop(loop);
}

TEST(loop_run_reentry_is_ebusy)
{
	lw_loop_t *loop;
	int r = 0;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_next_tick(loop, run_twice, &r));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(r, -EBUSY);
	ASSERT_EQ(lw_run(NULL), -EINVAL);
	lw_loop_free(loop);
}

/* ---- several loops, one per thread, sharing nothing ---- */

struct multi {
	lw_loop_t *loop;
	lw_timer_t t;
	int fired;
	pthread_t self;
	int wrong_thread;
};

static void multi_fire(lw_timer_t *t)
{
	struct multi *m = t->data;
	if (!pthread_equal(pthread_self(), m->self))
		m->wrong_thread++;
	if (++m->fired == 20)
		lw_stop(t->loop);
}

static void *multi_main(void *p)
{
	struct multi *m = p;
	m->self = pthread_self();
	m->t.data = m;
	if (lw_timer_start(&m->t, multi_fire, 1, 1) != 0)
		return (void *)1;
	return (void *)(intptr_t)lw_run(m->loop);
}

TEST(loop_multi_threads)
{
	enum { N = 4 };
	struct multi m[N];
	pthread_t th[N];
	memset(m, 0, sizeof(m));
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "loop-%d", i);
		lw_loop_options_t o = { .name = name };
		ASSERT_OK(lw_loop_new(&m[i].loop, &o));
		ASSERT_STREQ(lw_loop_name(m[i].loop), name);
		ASSERT_OK(lw_timer_init(m[i].loop, &m[i].t));
	}
	for (int i = 0; i < N; i++)
		ASSERT_OK(pthread_create(&th[i], NULL, multi_main, &m[i]));
	for (int i = 0; i < N; i++) {
		void *r;
		pthread_join(th[i], &r);
		ASSERT_EQ((intptr_t)r, 0);
		ASSERT_EQ(m[i].fired, 20);
		ASSERT_EQ(m[i].wrong_thread, 0);
		lw_loop_free(m[i].loop);
	}
}

/* ---- fd watchers ---- */

struct iost {
	int fds[2];
	lw_io_t a, b;
	int a_calls, b_calls;
	int got_hangup;
};

static void io_a(lw_io_t *io, int events)
{
	struct iost *s = io->data;
	s->a_calls++;
	char buf[8];
	ASSERT_GT(read(io->fd, buf, sizeof(buf)), 0);
	/* Stop the other watcher, whose event may be in this same batch. */
	ASSERT_OK(lw_io_stop(&s->b));
	lw_stop(io->loop);
}

static void io_b(lw_io_t *io, int events)
{
	struct iost *s = io->data;
	s->b_calls++;
	char buf[8];
	ASSERT_GT(read(io->fd, buf, sizeof(buf)), 0);
	ASSERT_OK(lw_io_stop(&s->a));
	lw_stop(io->loop);
}

TEST(io_stop_other_watcher_in_same_batch)
{
	lw_loop_t *loop;
	struct iost s = { 0 };
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds));
	ASSERT_OK(lw_io_init(loop, &s.a, s.fds[0]));
	ASSERT_OK(lw_io_init(loop, &s.b, s.fds[1]));
	s.a.data = s.b.data = &s;
	ASSERT_OK(lw_io_start(&s.a, LW_READABLE, io_a));
	ASSERT_OK(lw_io_start(&s.b, LW_READABLE, io_b));
	ASSERT_EQ(write(s.fds[0], "x", 1), 1);
	ASSERT_EQ(write(s.fds[1], "y", 1), 1);
	ASSERT_OK(lw_run(loop));
	/* Exactly one ran: the other was stopped before its turn. */
	ASSERT_EQ(s.a_calls + s.b_calls, 1);
	close(s.fds[0]);
	close(s.fds[1]);
	lw_loop_free(loop);
}

static void io_hup(lw_io_t *io, int events)
{
	struct iost *s = io->data;
	if (events & LW_HANGUP)
		s->got_hangup = 1;
	ASSERT_OK(lw_io_stop(io));
	lw_stop(io->loop);
}

TEST(io_writable_and_hangup)
{
	lw_loop_t *loop;
	struct iost s = { 0 };
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds));
	ASSERT_OK(lw_io_init(loop, &s.a, s.fds[0]));
	s.a.data = &s;
	ASSERT_OK(lw_io_start(&s.a, LW_READABLE, io_hup));
	close(s.fds[1]);
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(s.got_hangup, 1);
	ASSERT(!lw_io_is_active(&s.a));
	close(s.fds[0]);
	lw_loop_free(loop);
}

TEST(io_bad_args)
{
	lw_loop_t *loop;
	lw_io_t io;
	int fds[2];
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_EQ(lw_io_init(loop, &io, -1), -EBADF);
	ASSERT_OK(pipe(fds));
	close(fds[1]);
	ASSERT_EQ(lw_io_init(loop, &io, fds[1]), -EBADF); /* closed fd */
	ASSERT_OK(lw_io_init(loop, &io, fds[0]));
	ASSERT_EQ(lw_io_start(&io, LW_READABLE, NULL), -EINVAL);
	ASSERT_EQ(lw_io_start(&io, 0x100, io_hup), -EINVAL);
	/* A regular file cannot be watched by epoll: an error, no crash. */
	int f = open("/proc/self/stat", O_RDONLY);
	lw_io_t fio;
	ASSERT_OK(lw_io_init(loop, &fio, f));
	ASSERT_EQ(lw_io_start(&fio, LW_READABLE, io_hup), -EPERM);
	close(f);
	close(fds[0]);
	lw_loop_free(loop);
}

/* ---- sites ---- */

static void site_timer_cb(lw_timer_t *t)
{
	lw_stop(t->loop);
}
static void site_tick_cb(lw_loop_t *loop, void *arg)
{
}

struct site_seen {
	int timer_calls, tick_calls, n;
	const char *timer_name;
};

static void site_each(const lw_site_info_t *s, void *arg)
{
	struct site_seen *seen = arg;
	seen->n++;
	ASSERT_EQ(s->id, seen->n); /* dense ids */
	if (s->fn == LW_FN(site_timer_cb)) {
		ASSERT_EQ(s->kind, LW_KIND_TIMER);
		seen->timer_calls = (int)s->calls;
		seen->timer_name = s->name;
	}
	if (s->fn == LW_FN(site_tick_cb)) {
		ASSERT_EQ(s->kind, LW_KIND_TICK);
		seen->tick_calls = (int)s->calls;
	}
}

TEST(site_table_counts_and_names)
{
	lw_loop_t *loop;
	lw_timer_t t;
	struct site_seen seen = { 0 };
	ASSERT_OK(lw_loop_new(&loop, NULL));
	ASSERT_OK(lw_site_name(loop, LW_FN(site_timer_cb), "the timer"));
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, site_timer_cb, 1, 0));
	for (int i = 0; i < 3; i++)
		ASSERT_OK(lw_next_tick(loop, site_tick_cb, NULL));
	ASSERT_OK(lw_run(loop));
	lw_site_foreach(loop, site_each, &seen);
	ASSERT_EQ(seen.n, 2);
	ASSERT_EQ(seen.timer_calls, 1);
	ASSERT_EQ(seen.tick_calls, 3);
	ASSERT_STREQ(seen.timer_name, "the timer");
	/* Renaming applies to existing sites. */
	ASSERT_OK(lw_site_name(loop, LW_FN(site_timer_cb), "renamed"));
	memset(&seen, 0, sizeof(seen));
	lw_site_foreach(loop, site_each, &seen);
	ASSERT_STREQ(seen.timer_name, "renamed");
	ASSERT_STREQ(lw_kind_name(LW_KIND_DEFER), "defer");
	ASSERT_STREQ(lw_kind_name(999), "unknown");
	lw_loop_stats_t st;
	lw_loop_stats(loop, &st);
	ASSERT_EQ(st.callbacks, 4);
	ASSERT_GT(st.iterations, 0);
	lw_loop_free(loop);
}

/* ---- defer ---- */

static atomic_int ops_on_loop_thread, dones_off_loop_thread, dones;
static pthread_t defer_loop_thread;

static void *defer_op(void *arg)
{
	if (pthread_equal(pthread_self(), defer_loop_thread))
		atomic_fetch_add(&ops_on_loop_thread, 1);
	return (void *)((uintptr_t)arg * 2);
}

static void defer_done(lw_loop_t *loop, void *arg, void *result)
{
	if (!pthread_equal(pthread_self(), defer_loop_thread))
		atomic_fetch_add(&dones_off_loop_thread, 1);
	ASSERT_EQ((uintptr_t)result, (uintptr_t)arg * 2);
	if (atomic_fetch_add(&dones, 1) + 1 == 1000)
		lw_stop(loop);
}

TEST(defer_1000_with_pool_of_4)
{
	lw_loop_t *loop;
	lw_loop_options_t o = { .defer_threads = 4 };
	ASSERT_OK(lw_loop_new(&loop, &o));
	defer_loop_thread = pthread_self();
	for (uintptr_t i = 0; i < 1000; i++)
		ASSERT_OK(lw_defer(loop, defer_op, defer_done, (void *)i));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(atomic_load(&dones), 1000);
	ASSERT_EQ(atomic_load(&ops_on_loop_thread), 0);
	ASSERT_EQ(atomic_load(&dones_off_loop_thread), 0);
	lw_pool_stats_t st;
	lw_pool_stats(loop, &st);
	ASSERT_EQ(st.threads, 4);
	ASSERT_EQ(st.completed, 1000);
	ASSERT_EQ(st.queued, 0);
	lw_loop_free(loop);
}

/* The pool's stats show a running job's age and a queue behind it. */
static atomic_int slow_release;
static void *slow_op(void *arg)
{
	while (!atomic_load(&slow_release))
		usleep(1000);
	return NULL;
}
static void slow_done(lw_loop_t *loop, void *arg, void *result)
{
	if (atomic_fetch_add(&dones, 1) + 1 == 3)
		lw_stop(loop);
}
/* Every 5 ms: once both threads are busy (seen at busy_seen, a clock read
 * after the stats, so both jobs began before it), wait 50 ms more, then the
 * oldest job's age is at least that.  No bound on how soon the pool starts:
 * a loaded machine only makes the test wait longer. */
static uint64_t busy_seen;
static void pool_check(lw_timer_t *t)
{
	lw_pool_stats_t st;
	lw_pool_stats(t->loop, &st);
	ASSERT_EQ(st.threads, 2);
	if (busy_seen == 0) {
		if (st.busy == 2)
			busy_seen = lwt_now_ns();
		return;
	}
	uint64_t now = lwt_now_ns();
	if (now - busy_seen < 50 * 1000000ull)
		return;
	ASSERT_EQ(st.busy, 2);
	ASSERT_EQ(st.queued, 1);
	ASSERT(st.oldest_start_ns != 0);
	ASSERT(st.oldest_fn == LW_FN(slow_op));
	/* The ring's clock is the TSC converted to CLOCK_MONOTONIC: a
	 * millisecond of slack for the conversion. */
	ASSERT_GE(now - st.oldest_start_ns, 49 * 1000000ull);
	atomic_store(&slow_release, 1);
	lw_timer_stop(t);
}

TEST(pool_stats_depth_busy_oldest)
{
	lw_loop_t *loop;
	lw_timer_t t;
	lw_loop_options_t o = { .defer_threads = 2 };
	busy_seen = 0;
	atomic_store(&slow_release, 0);
	ASSERT_OK(lw_loop_new(&loop, &o));
	atomic_store(&dones, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(lw_defer(loop, slow_op, slow_done, NULL));
	ASSERT_OK(lw_timer_init(loop, &t));
	ASSERT_OK(lw_timer_start(&t, pool_check, 5, 5));
	ASSERT_OK(lw_run(loop));
	ASSERT_EQ(atomic_load(&dones), 3);
	lw_loop_free(loop);
}

TEST(pool_default_threads_and_free_with_queue)
{
	lw_loop_t *loop;
	ASSERT_OK(lw_loop_new(&loop, NULL));
	atomic_store(&slow_release, 1);
	ASSERT_EQ(lw_defer(loop, NULL, NULL, NULL), -EINVAL);
	for (int i = 0; i < 100; i++)
		ASSERT_OK(lw_defer(loop, slow_op, NULL, NULL));
	lw_pool_stats_t st;
	lw_pool_stats(loop, &st);
	ASSERT_EQ(st.threads, 20); /* EventMachine's default */
	/* Freeing with jobs queued and completions undelivered is clean. */
	lw_loop_free(loop);
}
