/*
 * attach.h - `loopwatch attach`: watch a process's loop threads with the
 * kernel probes and its rings at once, and name the syscalls that held up
 * each slow callback, with their user stacks.
 */
#ifndef LW_ATTACH_H
#define LW_ATTACH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct lw_attach_opts {
	pid_t pid; /* the process */
	/* A loop thread to watch besides the rings' (0: none); without it,
	 * a process without rings is watched on the threads that sit in an
	 * event wait (agent/threads.h). */
	pid_t tid;
	uint64_t duration_ns; /* stop after this long; 0: until interrupted */
	uint64_t min_ns; /* slow: callbacks and syscalls at least this long */
	FILE *out; /* the report; NULL means stdout */
};

/* Run until the duration elapses, SIGINT or SIGTERM, or the process exits;
 * returns the exit status: 0, or 2 when it cannot attach (the reason on
 * stderr). */
int lw_attach_run(const struct lw_attach_opts *o);

#endif /* LW_ATTACH_H */
