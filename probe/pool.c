/*
 * pool.c - the worker pool behind lw_defer() (EM.defer).
 *
 * Each loop has its own pool, started at its first lw_defer() (so a loop
 * that never defers owns no threads).  Jobs wait in a FIFO under one mutex;
 * a worker runs `op`, puts the finished job on the done list and wakes the
 * loop through its eventfd; the loop runs `done` in its poll phase.  The
 * workers block every signal, so that signals meant for the loop's signalfd
 * watchers are never delivered to a worker.
 *
 * Each worker publishes the start time and op of the job it runs, so the
 * pool can tell the age of its oldest running job: the figure that shows a
 * pool clogged by slow work.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#define DEFAULT_THREADS 20
#define MAX_THREADS 1024

typedef struct job {
	lw__list_t node;
	lw_work_fn op;
	lw_done_cb done;
	void *arg;
	void *result;
	int raw; /* internal completion: not a site */
	uint32_t site; /* the op's site (LW_KIND_WORK), or 0 */
} job_t;

typedef struct worker {
	lw__pool_t *pool;
	pthread_t thread;
	uint64_t start; /* start of the running job, 0 when idle */
	lw_fn fn; /* its op */
	uint32_t site; /* its op's site, or 0 */
} worker_t;

struct lw__pool {
	lw_loop_t *loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	lw__list_t queue; /* waiting jobs */
	lw__list_t done; /* finished jobs, for the loop */
	uint32_t queued, busy;
	uint64_t completed;
	int shutdown;
	unsigned nthreads;
	worker_t *workers;
	unsigned fork_gen; /* lw__fork_gen when the threads were made */
};

/*
 * Mirror the pool's state into the loop's ring header, so that a reader
 * sees a clogged pool (queue depth, busy workers, the oldest running job)
 * without asking the process.  Called with pool->lock held, on every change.
 */
static void publish(lw__pool_t *pool)
{
	lw__ring_t *r = pool->loop->ring;
	if (r == NULL)
		return;
	struct lw_ring_header *h = r->hdr;
	uint64_t oldest = 0, fn = 0;
	uint32_t site = 0;
	for (unsigned i = 0; i < pool->nthreads; i++) {
		const worker_t *w = &pool->workers[i];
		if (w->start != 0 && (oldest == 0 || w->start < oldest)) {
			oldest = w->start;
			fn = (uint64_t)(uintptr_t)w->fn;
			site = w->site;
		}
	}
	__atomic_store_n(&h->pool_threads, pool->nthreads, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_busy, pool->busy, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_queued, pool->queued, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_oldest_site, site, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_oldest_start_ns, oldest, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_oldest_fn, fn, __ATOMIC_RELAXED);
	__atomic_store_n(&h->pool_completed, pool->completed, __ATOMIC_RELAXED);
}

static void *worker_main(void *p)
{
	worker_t *w = p;
	lw__pool_t *pool = w->pool;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (lw__list_empty(&pool->queue) && !pool->shutdown)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->shutdown)
			break;
		lw__list_t *n = lw__list_first(&pool->queue);
		lw__list_remove(n);
		job_t *j = LW__CONTAINER_OF(n, job_t, node);
		pool->queued--;
		pool->busy++;
		w->start = lw__mono_ns();
		w->fn = LW_FN(j->op);
		w->site = j->site;
		publish(pool);
		pthread_mutex_unlock(&pool->lock);

		j->result = j->op(j->arg);

		pthread_mutex_lock(&pool->lock);
		w->start = 0;
		w->fn = NULL;
		w->site = 0;
		pool->busy--;
		pool->completed++;
		publish(pool);
		lw__list_insert_tail(&pool->done, &j->node);
		pthread_mutex_unlock(&pool->lock);
		lw__wakeup(pool->loop);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void pool_destroy(lw__pool_t *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->shutdown = 1;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->workers[i].thread, NULL);

	/* Jobs never run, and completions never delivered, are dropped:
	 * the loop that would run them is going away. */
	lw__list_t *n, *tmp;
	lw__list_foreach_safe (n, tmp, &pool->queue)
		free(LW__CONTAINER_OF(n, job_t, node));
	lw__list_foreach_safe (n, tmp, &pool->done)
		free(LW__CONTAINER_OF(n, job_t, node));
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->workers);
	free(pool);
}

static unsigned thread_count(const lw_loop_t *loop)
{
	if (loop->defer_threads)
		return loop->defer_threads;
	const char *env = getenv("LOOPWATCH_THREADS");
	if (env != NULL) {
		char *end;
		unsigned long n = strtoul(env, &end, 10);
		if (*env && *end == 0 && n >= 1 && n <= MAX_THREADS)
			return (unsigned)n;
	}
	return DEFAULT_THREADS;
}

static int pool_create(lw_loop_t *loop, lw__pool_t **out)
{
	lw__pool_t *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return -ENOMEM;
	pool->loop = loop;
	pool->fork_gen = __atomic_load_n(&lw__fork_gen, __ATOMIC_RELAXED);
	lw__list_init(&pool->queue);
	lw__list_init(&pool->done);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);

	unsigned want = thread_count(loop);
	pool->workers = calloc(want, sizeof(*pool->workers));
	if (pool->workers == NULL) {
		pool_destroy(pool);
		return -ENOMEM;
	}

	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = 0;
	for (unsigned i = 0; i < want; i++) {
		pool->workers[i].pool = pool;
		err = pthread_create(&pool->workers[i].thread, NULL,
				     worker_main, &pool->workers[i]);
		if (err)
			break;
		pool->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	/* Some threads are enough to work with; none is an error. */
	if (pool->nthreads == 0) {
		pool_destroy(pool);
		return -err;
	}
	*out = pool;
	return 0;
}

static int pool_get(lw_loop_t *loop, lw__pool_t **out)
{
	lw__pool_t *pool = atomic_load(&loop->pool);
	unsigned gen = __atomic_load_n(&lw__fork_gen, __ATOMIC_RELAXED);
	if (pool != NULL && pool->fork_gen == gen) {
		*out = pool;
		return 0;
	}
	pthread_mutex_lock(&loop->pool_lock);
	pool = atomic_load(&loop->pool);
	int err = 0;
	if (pool != NULL && pool->fork_gen != gen) {
		/* A forked child inherits the pool but none of its threads, and
		 * maybe a lock held by one of them: it cannot be used or freed.
		 * Leave it (a one-off leak per fork) and start a new one. */
		atomic_store(&loop->pool, NULL);
		pool = NULL;
	}
	if (pool == NULL) {
		err = pool_create(loop, &pool);
		if (err == 0)
			atomic_store(&loop->pool, pool);
	}
	pthread_mutex_unlock(&loop->pool_lock);
	*out = pool;
	return err;
}

static int submit(lw_loop_t *loop, lw_work_fn op, lw_done_cb done, void *arg,
		  int raw)
{
	lw__pool_t *pool;
	int err = pool_get(loop, &pool);
	if (err)
		return err;
	job_t *j = malloc(sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	*j = (job_t){ .op = op, .done = done, .arg = arg, .raw = raw };
	/* Name the job for readers when we can intern its site (sites belong
	 * to the loop thread). */
	if (!raw && lw_on_loop_thread(loop))
		j->site = lw__site_get(loop, LW_KIND_WORK, LW_FN(op))->id;
	pthread_mutex_lock(&pool->lock);
	lw__list_insert_tail(&pool->queue, &j->node);
	pool->queued++;
	publish(pool);
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

int lw_defer(lw_loop_t *loop, lw_work_fn op, lw_done_cb done, void *arg)
{
	if (loop == NULL || op == NULL)
		return -EINVAL;
	return submit(loop, op, done, arg, 0);
}

int lw__defer_raw(lw_loop_t *loop, lw_work_fn op, lw_done_cb done, void *arg)
{
	return submit(loop, op, done, arg, 1);
}

/* The one dispatch point for defer completions. */
static void dispatch_done(lw_loop_t *loop, job_t *j)
{
	if (j->done == NULL)
		return;
	if (j->raw) {
		j->done(loop, j->arg, j->result);
		return;
	}
	lw__site_t *site = lw__site_get(loop, LW_KIND_DEFER, LW_FN(j->done));
	lw__call_begin_chained(loop, site, 0);
	j->done(loop, j->arg, j->result);
	lw__call_end(loop, site);
}

int lw__pool_drain(lw_loop_t *loop)
{
	lw__pool_t *pool = atomic_load(&loop->pool);
	if (pool == NULL)
		return 0;
	lw__list_t done;
	lw__list_init(&done);
	pthread_mutex_lock(&pool->lock);
	if (!lw__list_empty(&pool->done)) {
		/* Splice the whole done list out under the lock. */
		done.next = pool->done.next;
		done.prev = pool->done.prev;
		done.next->prev = &done;
		done.prev->next = &done;
		lw__list_init(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);

	int n = 0;
	lw__list_t *node;
	while ((node = lw__list_first(&done)) != NULL) {
		lw__list_remove(node);
		job_t *j = LW__CONTAINER_OF(node, job_t, node);
		dispatch_done(loop, j);
		free(j);
		n++;
	}
	return n;
}

void lw_pool_stats(lw_loop_t *loop, lw_pool_stats_t *out)
{
	if (out == NULL)
		return;
	*out = (lw_pool_stats_t){ 0 };
	lw__pool_t *pool = loop ? atomic_load(&loop->pool) : NULL;
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	out->threads = pool->nthreads;
	out->busy = pool->busy;
	out->queued = pool->queued;
	out->completed = pool->completed;
	for (unsigned i = 0; i < pool->nthreads; i++) {
		const worker_t *w = &pool->workers[i];
		if (w->start != 0 && (out->oldest_start_ns == 0 ||
				      w->start < out->oldest_start_ns)) {
			out->oldest_start_ns = w->start;
			out->oldest_fn = w->fn;
		}
	}
	pthread_mutex_unlock(&pool->lock);
}

void lw__pool_free(lw_loop_t *loop)
{
	pool_destroy(atomic_exchange(&loop->pool, NULL));
}
