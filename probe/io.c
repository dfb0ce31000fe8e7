/*
 * io.c - fd watchers and the poll phase (epoll, level-triggered).
 *
 * Watchers are found by fd in loop->ios, not through epoll's data pointer:
 * when a callback stops a watcher (or frees it) while the batch returned by
 * epoll still holds events for that fd, lw_io_stop() marks those events
 * dead, and the lookup by fd finds nothing for a watcher that is gone.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>

static uint32_t to_epoll(int events)
{
	uint32_t e = 0;
	if (events & LW_READABLE)
		e |= EPOLLIN | EPOLLRDHUP;
	if (events & LW_WRITABLE)
		e |= EPOLLOUT;
	return e;
}

static int from_epoll(uint32_t e)
{
	int ev = 0;
	if (e & (EPOLLIN | EPOLLPRI))
		ev |= LW_READABLE;
	if (e & EPOLLOUT)
		ev |= LW_WRITABLE;
	if (e & (EPOLLHUP | EPOLLRDHUP))
		ev |= LW_HANGUP;
	if (e & EPOLLERR)
		ev |= LW_ERROR;
	return ev;
}

int lw_io_init(lw_loop_t *loop, lw_io_t *io, int fd)
{
	if (loop == NULL || io == NULL)
		return -EINVAL;
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	*io = (lw_io_t){ .loop = loop, .fd = fd };
	return 0;
}

static int start(lw_io_t *io, int events, lw_io_cb cb, int raw)
{
	lw_loop_t *loop = io->loop;
	int fd = io->fd;

	if ((uint32_t)fd >= loop->ios_cap) {
		uint32_t old = loop->ios_cap;
		int err = lw__grow((void **)&loop->ios, &loop->ios_cap,
				   (uint32_t)fd + 1, sizeof(*loop->ios));
		if (err)
			return err;
		for (uint32_t i = old; i < loop->ios_cap; i++)
			loop->ios[i] = NULL;
	}
	if (loop->ios[fd] != NULL && loop->ios[fd] != io)
		return -EEXIST;

	struct epoll_event ev = { .events = to_epoll(events) };
	ev.data.fd = fd;
	if (io->registered == 0) {
		if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
	} else if ((uint32_t)io->registered != ev.events) {
		if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			return -errno;
	}
	if (loop->ios[fd] == NULL)
		loop->active_ios++;
	loop->ios[fd] = io;
	/* `registered` holds the epoll mask, or a bit that is never in one
	 * when the mask is empty, so that it still reads as registered. */
	io->registered = ev.events ? (int)ev.events : 0x40000000;
	io->events = events;
	io->cb = cb;
	io->site = raw ? NULL : lw__site_get(loop, LW_KIND_IO, LW_FN(cb));
	return 0;
}

int lw_io_start(lw_io_t *io, int events, lw_io_cb cb)
{
	if (io == NULL || io->loop == NULL || cb == NULL ||
	    (events & ~(LW_READABLE | LW_WRITABLE)) != 0)
		return -EINVAL;
	return start(io, events, cb, 0);
}

int lw__io_start_raw(lw_io_t *io, int events, lw_io_cb cb)
{
	return start(io, events, cb, 1);
}

int lw_io_stop(lw_io_t *io)
{
	if (io == NULL || io->loop == NULL)
		return -EINVAL;
	if (io->registered == 0)
		return 0;
	lw_loop_t *loop = io->loop;
	int fd = io->fd;
	struct epoll_event ev = { 0 };
	/* The fd may already be closed, which removed it from epoll. */
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &ev) < 0 &&
	    errno != EBADF && errno != ENOENT)
		return -errno;
	io->registered = 0;
	if ((uint32_t)fd < loop->ios_cap && loop->ios[fd] == io) {
		loop->ios[fd] = NULL;
		loop->active_ios--;
	}
	/* Events still waiting in this batch must not reach a stopped
	 * watcher. */
	for (int i = loop->event_index + 1; i < loop->nevents; i++)
		if (loop->events[i].data.fd == fd)
			loop->events[i].data.fd = -1;
	return 0;
}

int lw_io_is_active(const lw_io_t *io)
{
	return io != NULL && io->registered != 0;
}

/* The one dispatch point for fd watcher callbacks. */
static void dispatch_io(lw_loop_t *loop, lw_io_t *io, int events)
{
	lw__site_t *site = io->site;
	if (site == NULL) {
		io->cb(io, events);
		lw__gap(loop);
		return;
	}
	lw__call_begin_chained(loop, site, 0);
	io->cb(io, events);
	lw__call_end(loop, site);
}

int lw__poll(lw_loop_t *loop, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}

	/* Busy time ends and idle time starts here; the wait's return is the
	 * iteration's fresh clock reading (see clock.h, ring.h). */
	/* A callback that just ended took the timestamp already (ring.h): the
	 * wait is the next boundary, and nothing but loop bookkeeping ran in
	 * between, so that reading serves here too. */
	uint64_t before = loop->ring != NULL && loop->ring->cursor_valid
				  ? loop->ring->cursor_ns
				  : lw__clock_ns(&loop->clock,
						 lw__clock_raw(&loop->clock));
	if (loop->busy_mark != 0 && before > loop->busy_mark)
		loop->busy_ns += before - loop->busy_mark;
	if (loop->ring != NULL)
		lw__ring_wait_enter(loop->ring, before);
	int n = epoll_pwait2(loop->epfd, loop->events, LW__MAX_EVENTS, tsp,
			     NULL);
	if (n < 0 && errno == ENOSYS) {
		int ms = timeout_ns < 0 ? -1
			 : timeout_ns / 1000000 > 86400000
				 ? 86400000
				 : (int)((timeout_ns + 999999) / 1000000);
		n = epoll_wait(loop->epfd, loop->events, LW__MAX_EVENTS, ms);
	}
	int err = errno;
	uint64_t raw, after = lw__clock_rebase(&loop->clock, &raw);
	if (after > before)
		loop->idle_ns += after - before;
	loop->now = after;
	loop->busy_mark = after;
	if (loop->ring != NULL)
		lw__ring_wait_exit(loop->ring, before, after, raw);
	if (n < 0)
		return err == EINTR ? 0 : -err;

	loop->nevents = n;
	int ran = 0;
	for (int i = 0; i < n; i++) {
		loop->event_index = i;
		int fd = loop->events[i].data.fd;
		if (fd < 0 || (uint32_t)fd >= loop->ios_cap)
			continue;
		lw_io_t *io = loop->ios[fd];
		if (io == NULL)
			continue;
		int ev = from_epoll(loop->events[i].events);
		/* Report only what was asked for, plus hang-ups and errors,
		 * which a watcher cannot opt out of. */
		ev &= io->events | LW_HANGUP | LW_ERROR;
		if (ev == 0)
			continue;
		dispatch_io(loop, io, ev);
		ran++;
		if (loop->stop_flag)
			break;
	}
	loop->nevents = 0;
	loop->event_index = 0;
	return ran;
}
