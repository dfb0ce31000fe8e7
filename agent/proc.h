/*
 * proc.h - what the agent reads from /proc: a process's start time,
 * command name and kernel-thread flag (/proc/PID/stat), its user and group
 * (/proc/PID/status) and why it is closed to us, its open files
 * (/proc/PID/fd), the list of processes.
 *
 * The contents of /proc/PID/stat are partly chosen by the target (comm is
 * any 15 bytes, spaces and parentheses included), so the parser reads the
 * fields after the LAST ')'.
 */
#ifndef LW_PROC_H
#define LW_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* PF_KTHREAD in the flags field of /proc/PID/stat (include/linux/sched.h):
 * a kernel thread. */
#define LW_PF_KTHREAD 0x00200000u

/* What the agent takes from /proc/PID/stat. */
typedef struct lw_proc_stat {
	char comm[64]; /* field 2, without its parentheses */
	char state; /* field 3: R, S, D, Z (zombie), X, ... */
	pid_t ppid; /* field 4 */
	unsigned long flags; /* field 9: PF_*, PF_KTHREAD for a kernel thread */
	uint64_t start_time; /* field 22: clock ticks since boot */
	/* Fields 26, 27, 28 and 47: where the program's code, stack and heap
	 * begin, set by exec and fixed for the program's life; an exec
	 * brings new ones (address-space randomization).  0 (or 1) when the
	 * reader may not ptrace-read the process, and 0 once its memory is
	 * gone (it is exiting). */
	uint64_t start_code, end_code, start_stack, start_brk;
	/* Field 52: the wait status of a zombie, as waitpid(2) would give it
	 * to the parent (0 while it runs); -1 when absent. */
	int exit_code;
} lw_proc_stat_t;

/* Parse the text of /proc/PID/stat into out: fields 2 to 22 must be there
 * and well formed, the later ones are taken when present.  0 or
 * -EINVAL. */
int lw_proc_stat_parse(const char *buf, size_t len, lw_proc_stat_t *out);

/* Read and parse /proc/PID/stat: 0, -ESRCH if there is no such process,
 * or another negative errno.  A zombie reads fine (state 'Z'). */
int lw_proc_stat(pid_t pid, lw_proc_stat_t *out);

/* Parse the text of /proc/PID/stat: field 22 (starttime, clock ticks since
 * boot) into *start_time, if state is not NULL field 3 (R, S, D, Z, ...)
 * into *state, and if comm is not NULL field 2 without its parentheses
 * into comm (bounded, NUL-terminated).  0 or -EINVAL. */
int lw_proc_parse_stat(const char *buf, size_t len, uint64_t *start_time,
		       char *state, char *comm, size_t commlen);

/* The start time of pid: 0, -ESRCH if there is no such process or it is a
 * zombie (it has exited; only its parent has not reaped it yet), or another
 * negative errno. */
int lw_proc_start_time(pid_t pid, uint64_t *start_time);

/* The command name of pid (from stat, so it needs no permission). */
int lw_proc_comm(pid_t pid, char *comm, size_t commlen);

/* 1 if pid is a kernel thread (PF_KTHREAD in stat's flags: no user space,
 * so no loop to watch), 0 if not, or a negative errno (-ESRCH). */
int lw_proc_kernel_thread(pid_t pid);

/* The real, effective, saved and filesystem uids and gids of pid, in that
 * order, from /proc/PID/status (readable by anyone): 0 or a negative
 * errno. */
int lw_proc_ids(pid_t pid, uid_t uid[4], gid_t gid[4]);

/* "nobody (uid 65534)", or "uid 65533" for a uid without a name. */
const char *lw_proc_user_name(uid_t uid, char *buf, size_t len);

/* Why this process may not read pid's fds, after the kernel refused it:
 * they are open to the reader only if it has pid's user and group (its
 * real, effective and saved ids) and pid is dumpable, as for ptrace's
 * PTRACE_MODE_READ (which the Yama LSM does not restrict), or to root
 * (CAP_SYS_PTRACE).  Returns -EACCES when pid belongs to another user or
 * group (why names both), -EPERM when it is this user's own but not
 * dumpable (prctl(PR_SET_DUMPABLE, 0), a setuid or setgid program), -ESRCH
 * when it is gone. */
int lw_proc_denied(pid_t pid, char *why, size_t whylen);

/* The start address of pid's mapping of the file with inode number ino at
 * file offset 0 (the first in /proc/PID/maps), in *addr; -ENOENT if it
 * maps none, -errno if the maps cannot be read. */
int lw_proc_map_of_inode(pid_t pid, uint64_t ino, uint64_t *addr);

/* readlink(2) into a NUL-terminated buffer: the length, or a negative
 * errno (-ENAMETOOLONG if it did not fit). */
int lw_proc_readlink(const char *path, char *buf, size_t len);

/* Call fn for every open fd of pid with the fd's number and its link
 * target (a target gone since the listing is passed as ""); stops early
 * when fn returns non-zero and returns that value.  -ESRCH if pid is gone,
 * -EACCES if its fd table or its links may not be read. */
typedef int (*lw_proc_fd_fn)(int fd, const char *target, void *arg);
int lw_proc_each_fd(pid_t pid, lw_proc_fd_fn fn, void *arg);

/* Call fn for every process (thread-group leader) in /proc, in no
 * particular order; stops early on a non-zero return of fn. */
typedef int (*lw_proc_pid_fn)(pid_t pid, void *arg);
int lw_proc_each_pid(lw_proc_pid_fn fn, void *arg);

#endif /* LW_PROC_H */
