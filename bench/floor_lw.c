/*
 * floor_lw.c - load and attach the empty programs of floor.bpf.c, hold
 * them until SIGINT or SIGTERM, then detach.
 *
 *   floor_lw [--no-switch]
 *
 * It prints "floor attached N programs" once they are live.  The links are
 * file descriptors, so they go with the process even on SIGKILL.
 * --no-switch leaves tp_btf/sched_switch out, for comparing with a
 * loopwatch that does not attach it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "floor.skel.h"

int main(int argc, char **argv)
{
	int no_switch = argc == 2 && strcmp(argv[1], "--no-switch") == 0;
	struct floor_bpf *skel;
	sigset_t set;
	int sig, err;

	if (argc > 2 || (argc == 2 && !no_switch)) {
		fprintf(stderr, "usage: floor_lw [--no-switch]\n");
		return 2;
	}
	/* Block the signals before anything is attached: sigwait() takes
	 * them, so a signal that comes early is not lost and cannot kill
	 * the process between attach and the wait. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);

	skel = floor_bpf__open();
	if (skel == NULL) {
		fprintf(stderr,
			"floor_lw: cannot open the floor programs: %s\n",
			strerror(errno));
		return 1;
	}
	if (no_switch)
		bpf_program__set_autoload(skel->progs.floor_switch, false);
	err = floor_bpf__load(skel);
	if (err == 0)
		err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr,
			"floor_lw: cannot load and attach the floor programs: "
			"%s\n"
			"floor_lw: hint: run as root (CAP_BPF and "
			"CAP_PERFMON)\n",
			strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	printf("floor attached %d programs\n", no_switch ? 2 : 3);
	fflush(stdout);
	sigwait(&set, &sig);
	floor_bpf__destroy(skel);
	return 0;
}
