/*
 * child.c - child-process watchers (EM.watch_process) through pidfds.
 *
 * A pidfd becomes readable when its process exits, so a child is one more
 * fd on the loop's epoll set: no SIGCHLD handler, which would be process-wide
 * state that a library must not take, and no polling.  On readiness the
 * child is reaped with waitid(P_PIDFD), which reaps exactly that child and
 * never one that another part of the program is waiting for.
 *
 * pidfd_open() needs Linux 5.3 and waitid(P_PIDFD) 5.4; on older kernels
 * lw_child_start() fails with -ENOSYS.
 *
 * The watcher is freed right after its callback returns, which is why the
 * callback may call lw_child_stop() but nothing may after it.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct lw_child {
	lw__handle_t handle; /* in loop->handles until freed */
	lw_loop_t *loop;
	lw_io_t io; /* the pidfd, readable when the child exits */
	lw_child_cb cb;
	void *arg;
	void *site;
	pid_t pid;
	int pidfd;
	int in_cb; /* the callback is running: free after it */
};

static void child_release(lw__handle_t *h);

static void child_free(lw_child_t *w)
{
	lw__handle_remove(&w->handle);
	lw_io_stop(&w->io);
	close(w->pidfd);
	free(w);
}

/* The waitpid() status word for what waitid() says, so that WIFEXITED(),
 * WEXITSTATUS(), WIFSIGNALED(), WTERMSIG() and WCOREDUMP() work on it. */
static int status_of(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (si->si_status & 0xff) << 8;
	case CLD_KILLED:
		return si->si_status & 0x7f;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default:
		/* WEXITED reports nothing else; keep a value that is
		 * neither exited nor signaled rather than invent one. */
		return 0x7f;
	}
}

/* The one place where a child watcher's callback runs. */
static void child_dispatch(lw_child_t *w, int status)
{
	lw_loop_t *loop = w->loop;
	lw__site_t *site =
		lw__site_cached(loop, &w->site, LW_KIND_CHILD, LW_FN(w->cb));

	w->in_cb = 1;
	lw__call_begin(loop, site, 0);
	w->cb(w, w->arg, w->pid, status);
	lw__call_end(loop, site);
	w->in_cb = 0;
}

static void child_io_cb(lw_io_t *io, int events)
{
	lw_child_t *w = LW__CONTAINER_OF(io, lw_child_t, io);
	siginfo_t si;
	int r;

	LW__UNUSED(events);
	memset(&si, 0, sizeof(si));
	do
		r = waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si,
			   WEXITED | WNOHANG);
	while (r < 0 && errno == EINTR);

	if (r < 0) {
		/*
		 * ECHILD: someone else reaped it first (waitpid(-1) in a
		 * SIGCHLD handler, SIGCHLD set to SIG_IGN, another loop's
		 * watcher).  Its status is gone, and the pidfd would stay
		 * readable for ever, so the watcher ends without a call
		 * rather than invent a status.
		 */
		child_free(w);
		return;
	}
	if (si.si_pid == 0)
		return; /* not exited yet (a spurious wake-up) */

	child_dispatch(w, status_of(&si));
	child_free(w);
}

/* The watcher of `pid` in this loop, if there is one. */
static lw_child_t *child_find(lw_loop_t *loop, pid_t pid)
{
	lw__list_t *pos;

	for (pos = loop->handles.next; pos != &loop->handles; pos = pos->next) {
		lw__handle_t *h = LW__CONTAINER_OF(pos, lw__handle_t, node);
		if (h->release != child_release)
			continue;
		lw_child_t *w = LW__CONTAINER_OF(h, lw_child_t, handle);
		if (w->pid == pid)
			return w;
	}
	return NULL;
}

int lw_child_start(lw_loop_t *loop, pid_t pid, lw_child_cb cb, void *arg,
		   lw_child_t **out)
{
	lw_child_t *w;
	siginfo_t si;
	int fd, err;

	if (out != NULL)
		*out = NULL;
	if (loop == NULL || cb == NULL || pid <= 0)
		return -EINVAL;
	/* Two watchers would race to reap, and the loser would never know
	 * the status. */
	if (child_find(loop, pid) != NULL)
		return -EBUSY;

	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno; /* ESRCH: no such process; ENOSYS: old kernel */

	/*
	 * A pidfd can be opened for any process, but only a child can be
	 * reaped.  Ask without reaping (WNOWAIT) and without waiting
	 * (WNOHANG): ECHILD says it is not ours.
	 */
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si,
		   WEXITED | WNOHANG | WNOWAIT) < 0) {
		err = errno == EINVAL ? -ENOSYS : -errno;
		goto fail_wait;
	}

	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		err = -ENOMEM;
		goto fail_wait;
	}
	w->loop = loop;
	w->cb = cb;
	w->arg = arg;
	w->pid = pid;
	w->pidfd = fd;
	err = lw_io_init(loop, &w->io, fd);
	if (err != 0)
		goto fail_io;
	err = lw__io_start_raw(&w->io, LW_READABLE, child_io_cb);
	if (err != 0)
		goto fail_io;

	lw__handle_add(loop, &w->handle, child_release);
	if (out != NULL)
		*out = w;
	return 0;

fail_io:
	free(w);
fail_wait:
	close(fd);
	return err;
}

void lw_child_stop(lw_child_t *w)
{
	if (w == NULL)
		return;
	/* From inside its own callback: it is freed when that returns. */
	if (w->in_cb)
		return;
	child_free(w);
}

/* lw_loop_free(): the child is left alone, unreaped. */
static void child_release(lw__handle_t *h)
{
	child_free(LW__CONTAINER_OF(h, lw_child_t, handle));
}
