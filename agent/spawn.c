/*
 * spawn.c - start a program to watch (see spawn.h).
 *
 * The exec's outcome travels back through a close-on-exec pipe: a
 * successful exec closes it (the parent reads end of file), a failed one
 * writes its errno first.  So "program not found" is an error the caller
 * can report with exit status 2, not a child that exits 127 later.
 */
#include "spawn.h"

#include "ring_reader.h"
#include "threads.h"
#include "why.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t lw_spawn(char *const argv[], char *why, size_t whylen)
{
	int p[2], err = 0;
	pid_t pid;
	ssize_t n;

	if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0') {
		lw_why(why, whylen, "no program to run");
		return -EINVAL;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		err = errno;
		lw_why(why, whylen, "cannot run %s: pipe: %s", argv[0],
		       strerror(err));
		return -err;
	}
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(p[0]);
		close(p[1]);
		lw_why(why, whylen, "cannot run %s: fork: %s", argv[0],
		       strerror(err));
		return -err;
	}
	if (pid == 0) {
		close(p[0]);
		execvp(argv[0], argv);
		err = errno;
		/* Best effort: the parent treats a short read as success
		 * and then sees the child exit 127. */
		if (write(p[1], &err, sizeof(err)) < 0)
			_exit(127);
		_exit(127);
	}
	close(p[1]);
	do
		n = read(p[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == (ssize_t)sizeof(err)) {
		struct stat st;
		waitpid(pid, NULL, 0);
		/* exec says EACCES for a folder: say what it is. */
		if (err == EACCES && strchr(argv[0], '/') &&
		    stat(argv[0], &st) == 0 && S_ISDIR(st.st_mode))
			lw_why(why, whylen, "cannot run %s: it is a directory",
			       argv[0]);
		else
			lw_why(why, whylen, "cannot run %s: %s", argv[0],
			       strerror(err));
		return -err;
	}
	return pid;
}

/* Whether pid has exited (without reaping it). */
static int exited(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == ECHILD ? kill(pid, 0) < 0 : 0;
	return si.si_pid == pid;
}

int lw_spawn_wait_loop(pid_t pid, int timeout_ms)
{
	struct timespec tick = { 0, 20 * 1000000L };
	lw_loop_thread_t t;
	char why[256];

	for (int waited = 0;; waited += 20) {
		lw_rr_proc_t *p = NULL;
		if (exited(pid))
			return -ESRCH;
		if (lw_rr_attach(pid, &p, why, sizeof(why)) == 0) {
			size_t n = p->nrings;
			lw_rr_detach(p);
			if (n > 0)
				return 1;
		}
		if (lw_threads_detect(pid, 1, 0, &t, 1, why, sizeof(why)) > 0)
			return 1;
		if (waited >= timeout_ms)
			return 0;
		nanosleep(&tick, NULL);
	}
}
