/*
 * signal.c - signal watchers on the loop thread, through signalfd.
 *
 * A signal that is blocked stays pending until something takes it; a
 * signalfd whose mask holds it becomes readable meanwhile, and a read takes
 * it.  So the loop thread receives signals like any other fd event, with no
 * handler running in the middle of arbitrary code.
 *
 * Every watcher of one signal in one loop gets each instance of it.  Two
 * signalfds for the same signal would instead compete (the first read takes
 * the instance), so the watchers of one (loop, signal) share a group: one
 * signalfd, one fd watcher, a list of watchers.  The group is found through
 * the loop's list of library objects (each live watcher is a handle whose
 * release function is signal_release(), and points at its group), needs no
 * slot in struct lw_loop, and lives as long as its watchers do.  Two loops
 * that watch the same signal still compete: the kernel gives each instance
 * to one reader.
 *
 * Callbacks may stop any watcher, start new ones, or stop their own: while a
 * group delivers, a stopped watcher is only marked, and freed afterwards.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Instances taken per readiness: real-time signals queue, and one fd event
 * should not starve the rest of the loop. */
#define SIGNAL_READS_MAX 16

typedef struct sig_group {
	lw_loop_t *loop;
	int signum;
	int fd; /* signalfd for just this signal */
	lw_io_t io;
	lw__list_t watchers; /* every watcher not yet freed */
	int dispatching; /* > 0 while an instance is being delivered */
	uint64_t gen; /* delivery counter; see lw_signal.gen */
} sig_group_t;

struct lw_signal {
	lw__handle_t handle; /* in loop->handles while not stopped */
	lw__list_t node; /* in group->watchers until freed */
	sig_group_t *group;
	lw_signal_cb cb;
	void *arg;
	void *site;
	int stopped;
	/* group->gen when the watcher was made: it gets only instances
	 * delivered after it existed. */
	uint64_t gen;
};

static void signal_release(lw__handle_t *h);

static int signum_valid(int signum)
{
	if (signum <= 0 || signum >= _NSIG)
		return 0;
	/* The two that cannot be blocked or caught. */
	if (signum == SIGKILL || signum == SIGSTOP)
		return 0;
	/* glibc keeps the first real-time signals for itself (thread
	 * cancellation, setxid) and refuses to block them. */
	if (signum > SIGSYS && signum < SIGRTMIN)
		return 0;
	return 1;
}

static sig_group_t *group_find(lw_loop_t *loop, int signum)
{
	lw__list_t *pos;

	for (pos = loop->handles.next; pos != &loop->handles; pos = pos->next) {
		lw__handle_t *h = LW__CONTAINER_OF(pos, lw__handle_t, node);
		if (h->release != signal_release)
			continue;
		lw_signal_t *w = LW__CONTAINER_OF(h, lw_signal_t, handle);
		if (w->group->signum == signum)
			return w->group;
	}
	return NULL;
}

static void group_maybe_free(sig_group_t *g)
{
	if (g->dispatching != 0 || !lw__list_empty(&g->watchers))
		return;
	lw_io_stop(&g->io);
	close(g->fd);
	free(g);
}

/* Free the watchers stopped during a delivery, then the group if none is
 * left.  `g` must not be touched after this. */
static void group_sweep(sig_group_t *g)
{
	lw__list_t *pos, *tmp;

	lw__list_foreach_safe (pos, tmp, &g->watchers) {
		lw_signal_t *w = LW__CONTAINER_OF(pos, lw_signal_t, node);
		if (w->stopped) {
			lw__list_remove(&w->node);
			free(w);
		}
	}
	group_maybe_free(g);
}

static int group_live(const sig_group_t *g)
{
	const lw__list_t *pos;

	for (pos = g->watchers.next; pos != &g->watchers; pos = pos->next)
		if (!LW__CONTAINER_OF(pos, lw_signal_t, node)->stopped)
			return 1;
	return 0;
}

/* The one place where a signal watcher's callback runs. */
static void signal_dispatch(lw_signal_t *w, int signum)
{
	lw_loop_t *loop = w->group->loop;
	lw__site_t *site =
		lw__site_cached(loop, &w->site, LW_KIND_SIGNAL, LW_FN(w->cb));

	lw__call_begin(loop, site, 0);
	w->cb(w, w->arg, signum);
	lw__call_end(loop, site);
}

static void signal_io_cb(lw_io_t *io, int events)
{
	sig_group_t *g = LW__CONTAINER_OF(io, sig_group_t, io);
	struct signalfd_siginfo ssi;
	int i;

	LW__UNUSED(events);
	g->dispatching++;
	for (i = 0; i < SIGNAL_READS_MAX && group_live(g); i++) {
		lw__list_t *pos;
		uint64_t gen;

		if (read(g->fd, &ssi, sizeof(ssi)) != (ssize_t)sizeof(ssi))
			break; /* EAGAIN: nothing more pending */
		gen = ++g->gen;
		/* Nodes stay in the list while dispatching and new ones are
		 * appended, so walking it while callbacks run is safe. */
		for (pos = g->watchers.next; pos != &g->watchers;
		     pos = pos->next) {
			lw_signal_t *w =
				LW__CONTAINER_OF(pos, lw_signal_t, node);
			if (!w->stopped && w->gen < gen)
				signal_dispatch(w, (int)ssi.ssi_signo);
		}
	}
	g->dispatching--;
	if (g->dispatching == 0)
		group_sweep(g);
}

static int group_new(lw_loop_t *loop, int signum, const sigset_t *set,
		     sig_group_t **out)
{
	sig_group_t *g;
	int err;

	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->loop = loop;
	g->signum = signum;
	lw__list_init(&g->watchers);
	g->fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (g->fd < 0) {
		err = -errno;
		goto fail_fd;
	}
	err = lw_io_init(loop, &g->io, g->fd);
	if (err != 0)
		goto fail_io;
	err = lw__io_start_raw(&g->io, LW_READABLE, signal_io_cb);
	if (err != 0)
		goto fail_io;
	*out = g;
	return 0;

fail_io:
	close(g->fd);
fail_fd:
	free(g);
	return err;
}

int lw_signal_start(lw_loop_t *loop, int signum, lw_signal_cb cb, void *arg,
		    lw_signal_t **out)
{
	lw_signal_t *w;
	sig_group_t *g;
	sigset_t set;
	int err;

	if (out != NULL)
		*out = NULL;
	if (loop == NULL || cb == NULL || !signum_valid(signum))
		return -EINVAL;

	/*
	 * Block first: an instance that arrives from now on stays pending
	 * for the signalfd instead of running the default action.
	 */
	sigemptyset(&set);
	sigaddset(&set, signum);
	err = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (err != 0)
		return -err;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	g = group_find(loop, signum);
	if (g == NULL) {
		err = group_new(loop, signum, &set, &g);
		if (err != 0) {
			free(w);
			return err;
		}
	}
	w->group = g;
	w->cb = cb;
	w->arg = arg;
	w->gen = g->gen;
	lw__list_insert_tail(&g->watchers, &w->node);
	lw__handle_add(loop, &w->handle, signal_release);
	if (out != NULL)
		*out = w;
	return 0;
}

void lw_signal_stop(lw_signal_t *w)
{
	if (w == NULL || w->stopped)
		return;
	w->stopped = 1;
	lw__handle_remove(&w->handle);
	if (w->group->dispatching == 0)
		group_sweep(w->group);
}

/* lw_loop_free(): the loop is not running, so nothing is delivering. */
static void signal_release(lw__handle_t *h)
{
	lw_signal_t *w = LW__CONTAINER_OF(h, lw_signal_t, handle);

	w->stopped = 1;
	lw__handle_remove(&w->handle);
	group_sweep(w->group);
}
