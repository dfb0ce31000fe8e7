/*
 * fate.h - what becomes of a watched process while loopwatch watches it,
 * known in this one place and told in one line each: it exits (with its
 * wait status when that can be known), is killed by a signal (and in which
 * callback its loop was), execs another program, is gone and its PID
 * already names another process; and the children it forks that run loops
 * with rings of their own.
 *
 * How each is known, with no privilege beyond the right to read the
 * process's /proc files, which attaching needs anyway:
 *
 * - The end: the process's pidfd turns readable when it exits (a zombie
 *   counts), looked at every tick (poll, one syscall).  Its wait status:
 *   waitid(P_PIDFD, WNOWAIT) when we are its parent (`run`, which reaps
 *   it later); else the zombie's /proc/PID/stat field 52 while its parent
 *   has not reaped it, and once it has, PIDFD_GET_INFO with
 *   PIDFD_INFO_EXIT (Linux 6.15 on).  When none of them answers, the line
 *   says the status could not be learned: it is never guessed.
 * - PID reuse: the pid's start time (field 22 of /proc/PID/stat) is no
 *   longer the one read at attach.
 * - exec: the same start time, but new addresses for the program's code,
 *   stack and heap (fields 26-28 and 47, which only an exec sets, and
 *   which address-space randomization makes new at each); or a ring's fd
 *   gone (rings are close-on-exec) while /proc/PID/exe names another file.
 *   A ring gone without either is a loop that was freed: told when the
 *   process lives on a second later (one that frees its loop and exits
 *   gets the one line of its exit).
 * - fork: every full look scans /proc for processes that appeared since
 *   the last scan (only theirs /proc/PID/stat is read) and whose parent is
 *   the process; such a child is told once it holds a ring of its own (a
 *   forked loop makes its own at its next iteration), so that fork+exec of
 *   a helper, or a child that never runs a loop, says nothing.  Kernels
 *   with CONFIG_PROC_CHILDREN have /proc/PID/task/TID/children, which
 *   would be cheaper; others (this one) do not.
 *
 * The rings stay mapped after the end: what the process wrote before it is
 * read to the last record.
 */
#ifndef LW_FATE_H
#define LW_FATE_H

#include <stdint.h>
#include <stdio.h>

#include "ring_reader.h"

typedef enum lw_fate_end {
	LW_FATE_ALIVE = 0,
	LW_FATE_EXITED, /* it exited, or a signal killed it */
	LW_FATE_EXECED, /* it runs another program now, under the same PID */
	LW_FATE_REUSED, /* it is gone, and its PID names another process */
} lw_fate_end_t;

typedef struct lw_fate lw_fate_t;

/* Follow the process p (from lw_rr_attach; it must outlive the fate):
 * what it runs and which children it has now are the baseline.  NULL when
 * out of memory. */
lw_fate_t *lw_fate_new(const lw_rr_proc_t *p);
void lw_fate_free(lw_fate_t *f); /* NULL is fine */

/*
 * Look at the process: a quick look (full 0: its pidfd, every tick), or a
 * full one (about every 100 ms: also its /proc/PID/stat, its rings' fds,
 * and its new children).  Returns how it ended, LW_FATE_ALIVE while it
 * has not; once ended, the same on every later call.  What does not end
 * the watch (a child with a loop of its own, a ring closed) is told on
 * say, one line each, as it is seen.
 */
lw_fate_end_t lw_fate_look(lw_fate_t *f, uint64_t now_ns, int full, FILE *say);

/*
 * The line that tells the end (without "loopwatch: " or a newline; ""
 * while alive):
 *   process 1234 exited with status 3
 *   process 1234 was killed by SIGKILL while callback GET /sleep (tick)
 *     of loop main had run for at least 300 ms
 *   process 1234 exec'd /bin/sleep: its 1 ring is gone (rings are
 *     close-on-exec): stopped watching
 *   PID 1234 now belongs to another process (start time changed):
 *     stopped watching
 * A callback that a loop was in when the process ended is named when a
 * signal ended it (where it crashed, or what it was doing when killed)
 * or when it had surely run min_ns or more.  Its time is known between
 * two looks: it had run "at least" up to the last look that found the
 * process alive, or, begun after that, "less than" up to the look that
 * found it ended (a tick, 10 ms, apart when the loop keeps up).  It is
 * not a record: the model has no duration for a callback that never
 * ended.  A status not learned yet is asked again here (the parent may
 * have reaped the process since).
 */
void lw_fate_line(lw_fate_t *f, uint64_t min_ns, char *buf, size_t len);

/* 1 if the process ended badly: killed by a signal, or exited with a
 * status other than 0 (a status not learned is not counted: it is never
 * guessed); 0 while alive, after an exec or a PID reuse, or an exit with
 * status 0.  Call it after lw_fate_line, which learns a late status. */
int lw_fate_failed(const lw_fate_t *f);

/* A wait status in words: "exited with status 3", "was killed by SIGSEGV
 * (core dumped)".  Returns buf. */
const char *lw_fate_status(int status, char *buf, size_t len);

/* Whether a wait status is a failure: a signal, or an exit status other
 * than 0. */
int lw_fate_status_failed(int status);

#endif /* LW_FATE_H */
