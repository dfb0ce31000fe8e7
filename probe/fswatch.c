/*
 * fswatch.c - file watchers (EM.watch_file) through inotify.
 *
 * One inotify fd per loop, not one per watcher: the kernel allows a user
 * only fs.inotify.max_user_instances inotify fds (128 by default, shared by
 * every process of that user), while the number of watches is limited far
 * more generously.  A program that watches a few hundred files must not run
 * out of instances.
 *
 * The shared state (the fd, its fd watcher, the list of watchers) lives in a
 * registry that internal.h knows nothing about.  It is found through the
 * loop's list of library objects: every live watcher is a handle whose
 * release function is fswatch_release(), and it points at the registry.  So
 * the registry needs no slot in struct lw_loop, and it is reference-counted
 * by its watchers: it is made by the first lw_fswatch_start() and freed when
 * the last watcher goes, whatever order lw_loop_free() releases them in.
 *
 * inotify gives one watch descriptor (wd) per inode, so two watchers of the
 * same file share a wd; it is removed from the kernel only when the last of
 * them stops.
 *
 * Callbacks may stop any watcher, start new ones, or stop their own.  While
 * a batch of events is dispatched, a stopped watcher is only marked and
 * stays in the registry's list; it is freed when the batch is done.  A
 * watcher started during a batch gets none of that batch's events, which
 * happened before it existed.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

/* What we ask inotify for; IN_IGNORED, IN_UNMOUNT and IN_Q_OVERFLOW come
 * without asking. */
#define FSWATCH_MASK (IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF)

/* Enough for dozens of events per read; a watched file's events carry no
 * name, so each is just sizeof(struct inotify_event). */
#define FSWATCH_BUF 4096

typedef struct fsreg {
	lw_loop_t *loop;
	int fd; /* the inotify instance */
	lw_io_t io;
	lw__list_t watchers; /* every watcher not yet freed */
	int dispatching; /* > 0 while a batch is being delivered */
	uint64_t gen; /* batch counter; see lw_fswatch.gen */
	/* Read buffer, kept here so that reading allocates nothing. */
	char buf[FSWATCH_BUF]
		__attribute__((aligned(__alignof__(struct inotify_event))));
} fsreg_t;

struct lw_fswatch {
	lw__handle_t handle; /* in loop->handles while not stopped */
	lw__list_t node; /* in reg->watchers until freed */
	fsreg_t *reg;
	lw_fswatch_cb cb;
	void *arg;
	void *site;
	int wd; /* the inotify watch, or -1 once stopped */
	int stopped;
	/* reg->gen when the watcher was made: a batch whose number is not
	 * greater began before the watcher existed. */
	uint64_t gen;
};

static void fswatch_release(lw__handle_t *h);

static fsreg_t *reg_find(lw_loop_t *loop)
{
	lw__list_t *pos;

	for (pos = loop->handles.next; pos != &loop->handles; pos = pos->next) {
		lw__handle_t *h = LW__CONTAINER_OF(pos, lw__handle_t, node);
		if (h->release == fswatch_release)
			return LW__CONTAINER_OF(h, lw_fswatch_t, handle)->reg;
	}
	return NULL;
}

static void reg_free(fsreg_t *reg)
{
	/* Closing the instance drops every watch it still has. */
	lw_io_stop(&reg->io);
	close(reg->fd);
	free(reg);
}

/* Free the registry once nothing needs it any more. */
static void reg_maybe_free(fsreg_t *reg)
{
	if (reg->dispatching == 0 && lw__list_empty(&reg->watchers))
		reg_free(reg);
}

static void watcher_free(lw_fswatch_t *w)
{
	fsreg_t *reg = w->reg;

	lw__list_remove(&w->node);
	free(w);
	reg_maybe_free(reg);
}

/* Give up the kernel watch, unless another live watcher shares it. */
static void watcher_unwatch(lw_fswatch_t *w)
{
	lw__list_t *pos;
	int wd = w->wd;

	w->wd = -1;
	if (wd < 0)
		return;
	for (pos = w->reg->watchers.next; pos != &w->reg->watchers;
	     pos = pos->next) {
		lw_fswatch_t *o = LW__CONTAINER_OF(pos, lw_fswatch_t, node);
		if (o != w && !o->stopped && o->wd == wd)
			return;
	}
	/* Fails with EINVAL when the kernel already dropped the watch (the
	 * file was deleted); there is nothing left to do then. */
	inotify_rm_watch(w->reg->fd, wd);
}

/* The one place where a file watcher's callback runs. */
static void fswatch_dispatch(lw_fswatch_t *w, int events)
{
	lw_loop_t *loop = w->reg->loop;
	lw__site_t *site =
		lw__site_cached(loop, &w->site, LW_KIND_FILE, LW_FN(w->cb));

	lw__call_begin(loop, site, 0);
	w->cb(w, w->arg, events);
	lw__call_end(loop, site);
}

static int events_of(uint32_t mask)
{
	int events = 0;

	if (mask & IN_MODIFY)
		events |= LW_FILE_MODIFIED;
	if (mask & IN_ATTRIB)
		events |= LW_FILE_ATTRIB;
	if (mask & IN_MOVE_SELF)
		events |= LW_FILE_MOVED;
	/*
	 * IN_UNMOUNT and IN_IGNORED also end the watch: the file is gone
	 * from this watcher's point of view, and no further event can come.
	 * IN_IGNORED normally follows IN_DELETE_SELF, whose watchers have
	 * stopped by then, or our own inotify_rm_watch(), which no live
	 * watcher shares.
	 */
	if (mask & (IN_DELETE_SELF | IN_UNMOUNT | IN_IGNORED))
		events |= LW_FILE_DELETED;
	return events;
}

/* Deliver one event to every live watcher of `wd` (all of them for -1). */
static void deliver(fsreg_t *reg, uint64_t gen, int wd, int events)
{
	lw__list_t *pos;

	/*
	 * Nodes are not removed from reg->watchers while dispatching, and new
	 * ones are appended, so walking the list while callbacks run is safe.
	 */
	for (pos = reg->watchers.next; pos != &reg->watchers; pos = pos->next) {
		lw_fswatch_t *w = LW__CONTAINER_OF(pos, lw_fswatch_t, node);
		if (w->stopped || w->gen >= gen || (wd != -1 && w->wd != wd))
			continue;
		fswatch_dispatch(w, events);
		if (events & LW_FILE_DELETED)
			lw_fswatch_stop(w);
	}
}

/*
 * Free the watchers the callbacks of a batch stopped, then the registry if
 * none is left.  `reg` must not be touched after this.
 */
static void reg_sweep(fsreg_t *reg)
{
	lw__list_t *pos, *tmp;

	lw__list_foreach_safe (pos, tmp, &reg->watchers) {
		lw_fswatch_t *w = LW__CONTAINER_OF(pos, lw_fswatch_t, node);
		if (w->stopped) {
			lw__list_remove(&w->node);
			free(w);
		}
	}
	reg_maybe_free(reg);
}

static void fswatch_io_cb(lw_io_t *io, int ioevents)
{
	fsreg_t *reg = LW__CONTAINER_OF(io, fsreg_t, io);
	uint64_t gen;
	ssize_t n;
	char *p;

	LW__UNUSED(ioevents);
	n = read(reg->fd, reg->buf, sizeof(reg->buf));
	if (n <= 0)
		return; /* EAGAIN or EINTR: level-triggered, we come back */

	reg->dispatching++;
	gen = ++reg->gen;
	for (p = reg->buf; p < reg->buf + n;) {
		const struct inotify_event *ev = (const void *)p;

		p += sizeof(*ev) + ev->len;
		if (ev->mask & IN_Q_OVERFLOW) {
			/*
			 * The kernel dropped events.  We cannot tell what
			 * happened to which file, so tell every watcher that
			 * its file may have changed.
			 */
			deliver(reg, gen, -1, LW_FILE_MODIFIED);
			continue;
		}
		int events = events_of(ev->mask);
		if (events != 0)
			deliver(reg, gen, ev->wd, events);
	}
	reg->dispatching--;

	if (reg->dispatching == 0)
		reg_sweep(reg);
}

static int reg_new(lw_loop_t *loop, fsreg_t **out)
{
	fsreg_t *reg;
	int err;

	reg = calloc(1, sizeof(*reg));
	if (reg == NULL)
		return -ENOMEM;
	reg->loop = loop;
	lw__list_init(&reg->watchers);
	reg->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (reg->fd < 0) {
		err = -errno;
		goto fail_init;
	}
	err = lw_io_init(loop, &reg->io, reg->fd);
	if (err != 0)
		goto fail_io;
	err = lw__io_start_raw(&reg->io, LW_READABLE, fswatch_io_cb);
	if (err != 0)
		goto fail_io;
	*out = reg;
	return 0;

fail_io:
	close(reg->fd);
fail_init:
	free(reg);
	return err;
}

int lw_fswatch_start(lw_loop_t *loop, const char *path, lw_fswatch_cb cb,
		     void *arg, lw_fswatch_t **out)
{
	lw_fswatch_t *w;
	fsreg_t *reg;
	int err, made = 0;

	if (out != NULL)
		*out = NULL;
	if (loop == NULL || path == NULL || cb == NULL)
		return -EINVAL;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;

	reg = reg_find(loop);
	if (reg == NULL) {
		err = reg_new(loop, &reg);
		if (err != 0)
			goto fail_reg;
		made = 1;
	}

	/* Watching a file already watched returns its wd (and sets the same
	 * mask again), which is how watchers come to share one. */
	w->wd = inotify_add_watch(reg->fd, path, FSWATCH_MASK);
	if (w->wd < 0) {
		err = -errno;
		goto fail_watch;
	}

	w->reg = reg;
	w->cb = cb;
	w->arg = arg;
	w->gen = reg->gen;
	lw__list_insert_tail(&reg->watchers, &w->node);
	lw__handle_add(loop, &w->handle, fswatch_release);
	if (out != NULL)
		*out = w;
	return 0;

fail_watch:
	if (made)
		reg_free(reg);
fail_reg:
	free(w);
	return err;
}

void lw_fswatch_stop(lw_fswatch_t *w)
{
	if (w == NULL || w->stopped)
		return;
	w->stopped = 1;
	lw__handle_remove(&w->handle);
	/* Give up the watch now rather than at the end of the batch, so a
	 * watcher started on the same file meanwhile gets a fresh one. */
	watcher_unwatch(w);
	if (w->reg->dispatching == 0)
		watcher_free(w);
}

/* lw_loop_free(): the loop is not running, so nothing is dispatching. */
static void fswatch_release(lw__handle_t *h)
{
	lw_fswatch_t *w = LW__CONTAINER_OF(h, lw_fswatch_t, handle);

	w->stopped = 1;
	lw__handle_remove(&w->handle);
	/* The registry's close() drops the kernel watches; no need to remove
	 * them one by one. */
	watcher_free(w);
}
