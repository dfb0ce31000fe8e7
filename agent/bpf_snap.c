/*
 * bpf_snap.c - load bpf/snap.bpf.c and take snapshots of sleeping threads
 * through it (see bpf_snap.h).
 *
 * A snapshot is: attach the iterator to the one thread (a link), create an
 * iterator fd from the link, read the record, close both.  Nothing stays
 * attached between snapshots, so there is nothing to clean up but the
 * loaded program and its map.
 */
#include "bpf_snap.h"
#include "why.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "snap.skel.h"

/* A thread seen on a CPU (or waking) during the copy is tried again this
 * many times, LW_SNAP_RETRY_US apart: a busy thread that is preempted now
 * and then is caught off CPU, with its registers saved by the interrupt. */
#define LW_SNAP_TRIES 8
#define LW_SNAP_RETRY_US 500

struct lw_snap {
	struct snap_bpf *skel;
	bool have_last;
	struct lw_snap_rec rec; /* the last record read */
};

static const char *snap_hint(int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return "snapshots need root or CAP_BPF+CAP_PERFMON";
	case ENOENT:
	case ESRCH:
		return "the kernel lacks BTF or task iterators; set "
		       "LOOPWATCH_BPF_DEBUG=1 for libbpf's log";
	case EINVAL:
	case E2BIG:
		return "the kernel refused the sleepable task iterator "
		       "(single-thread iterators need Linux 6.1); set "
		       "LOOPWATCH_BPF_DEBUG=1 for the verifier's log";
	case ENOMEM:
		return "out of memory for BPF maps (the cgroup's memory "
		       "limit?)";
	}
	return "set LOOPWATCH_BPF_DEBUG=1 for libbpf's log";
}

static int snap_print(enum libbpf_print_level level, const char *fmt,
		      va_list ap)
{
	const char *e = getenv("LOOPWATCH_BPF_DEBUG");

	(void)level;
	if (!e || !*e || strcmp(e, "0") == 0)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int lw_snap_open(lw_snap_t **out, char *why, size_t whylen)
{
	lw_snap_t *s;
	int err;

	*out = NULL;
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		err = errno;
		lw_why(why, whylen,
		       "/sys/kernel/btf/vmlinux: %s (snapshots need a kernel "
		       "built with CONFIG_DEBUG_INFO_BTF)",
		       strerror(err));
		return -err;
	}
	libbpf_set_print(snap_print);
	s = calloc(1, sizeof(*s));
	if (!s) {
		lw_why(why, whylen, "out of memory");
		return -ENOMEM;
	}
	s->skel = snap_bpf__open();
	if (!s->skel) {
		err = errno ? errno : EINVAL;
		lw_why(why, whylen, "cannot open the BPF object: %s (%s)",
		       strerror(err), snap_hint(err));
		goto fail;
	}
	err = -snap_bpf__load(s->skel);
	if (err) {
		lw_why(why, whylen, "cannot load the snapshot program: %s (%s)",
		       strerror(err), snap_hint(err));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	lw_snap_close(s);
	return -err;
}

/* Read the iterator fd to its end; the first record goes to rec.  The
 * number of records read, or a negative errno.  More than one means the
 * kernel ignored the thread id and walked every task (before 6.1, task
 * iterators took no parameters). */
static int read_records(int fd, struct lw_snap_rec *rec)
{
	char *p = (char *)rec, scratch[4096];
	size_t got = 0, total = 0;
	ssize_t r;

	for (;;) {
		if (got < sizeof(*rec))
			r = read(fd, p + got, sizeof(*rec) - got);
		else
			r = read(fd, scratch, sizeof(scratch));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		if (got < sizeof(*rec))
			got += (size_t)r;
		total += (size_t)r;
	}
	if (total % sizeof(*rec))
		return -EPROTO;
	return total / sizeof(*rec) > 2 ? 2 : (int)(total / sizeof(*rec));
}

/* One attempt: 1 with the record, 0 if the iterator did not find the
 * thread, or a negative errno with why filled. */
static int take_once(lw_snap_t *s, pid_t tid, char *why, size_t whylen)
{
	LIBBPF_OPTS(bpf_iter_attach_opts, o);
	union bpf_iter_link_info linfo;
	struct bpf_link *link;
	int fd, n, err;

	memset(&linfo, 0, sizeof(linfo));
	linfo.task.tid = (__u32)tid;
	o.link_info = &linfo;
	o.link_info_len = sizeof(linfo);
	link = bpf_program__attach_iter(s->skel->progs.lw_snap, &o);
	if (!link) {
		err = errno ? errno : EINVAL;
		lw_why(why, whylen, "cannot attach the task iterator: %s (%s)",
		       strerror(err), snap_hint(err));
		return -err;
	}
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0) {
		err = errno ? errno : EINVAL;
		bpf_link__destroy(link);
		lw_why(why, whylen, "cannot create the task iterator: %s (%s)",
		       strerror(err), snap_hint(err));
		return -err;
	}
	n = read_records(fd, &s->rec);
	close(fd);
	bpf_link__destroy(link);
	if (n < 0) {
		lw_why(why, whylen, "cannot read the task iterator: %s",
		       strerror(-n));
	} else if (n > 1) {
		lw_why(why, whylen,
		       "the task iterator walked every task instead of thread "
		       "%d (iterating one thread needs Linux 6.1)",
		       (int)tid);
		n = -EOPNOTSUPP;
	}
	return n;
}

int lw_snap_take(lw_snap_t *s, pid_t tid, struct lw_bpf_ustack *us,
		 long *in_syscall, char *why, size_t whylen)
{
	const struct lw_snap_rec *r = &s->rec;
	int n;

	*in_syscall = -1;
	us->bytes = 0;
	if (tid <= 0) {
		lw_why(why, whylen, "thread %d: not a thread id", (int)tid);
		return -EINVAL;
	}
	for (int i = 0; i < LW_SNAP_TRIES; i++) {
		if (i > 0)
			usleep(LW_SNAP_RETRY_US);
		n = take_once(s, tid, why, whylen);
		if (n < 0)
			return n;
		if (n == 0) {
			lw_why(why, whylen,
			       "thread %d: no such thread (it has exited?)",
			       (int)tid);
			return -ESRCH;
		}
		s->have_last = true;
		if (r->flags & LW_SNAP_NO_MM) {
			lw_why(why, whylen,
			       "thread %d has no user stack (a kernel thread, "
			       "or its process is exiting)",
			       (int)tid);
			return -ENOENT;
		}
		if (!(r->flags & (LW_SNAP_ON_CPU | LW_SNAP_MOVED)))
			break;
	}
	if (r->flags & LW_SNAP_ON_CPU) {
		lw_why(why, whylen,
		       "thread %d is running on a CPU (%d tries): its "
		       "registers are saved only when it enters the kernel; "
		       "the stack samples show what it runs",
		       (int)tid, LW_SNAP_TRIES);
		return -EBUSY;
	}
	if (r->flags & LW_SNAP_MOVED) {
		lw_why(why, whylen,
		       "thread %d kept waking up while its stack was copied "
		       "(%d tries)",
		       (int)tid, LW_SNAP_TRIES);
		return -EAGAIN;
	}
	/* The record comes from our own program, but its sizes are still
	 * checked before they are trusted as lengths. */
	us->regs = r->us.regs;
	us->bytes = r->us.bytes <= sizeof(us->data) ? r->us.bytes : 0;
	us->pad = 0;
	memcpy(us->data, r->us.data, us->bytes);
	if (r->flags & LW_SNAP_SYSCALL)
		*in_syscall = (long)r->orig_ax;
	return 0;
}

const struct lw_snap_rec *lw_snap_last(const lw_snap_t *s)
{
	return s && s->have_last ? &s->rec : NULL;
}

void lw_snap_close(lw_snap_t *s)
{
	if (!s)
		return;
	snap_bpf__destroy(s->skel);
	free(s);
}
