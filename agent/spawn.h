/*
 * spawn.h - `loopwatch run` and `check -- PROGRAM`: start the program to
 * watch, know for sure whether it could be started, and wait until it has
 * a loop to watch.
 */
#ifndef LW_SPAWN_H
#define LW_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Start argv[0] (searched in PATH) with argv, sharing our stdio, and return
 * its pid once the exec has succeeded; or a negative errno with a reason
 * in why ("cannot run PROG: No such file or directory") when the program
 * could not be started.  The child is ours to wait for. */
pid_t lw_spawn(char *const argv[], char *why, size_t whylen);

/* Wait up to timeout_ms for pid to have something to watch: a loopwatch
 * ring, or a thread waiting in epoll, poll or select.  1 when it has, 0 at
 * the timeout, -ESRCH once it has exited (it is not reaped). */
int lw_spawn_wait_loop(pid_t pid, int timeout_ms);

#endif /* LW_SPAWN_H */
