// SPDX-License-Identifier: GPL-2.0
/*
 * floor.bpf.c - empty programs on exactly the attach points of the kernel
 * probes (bpf/syscalls.bpf.c): the raw syscall tracepoints and the
 * scheduler's switch, through BTF.  Each returns at once.
 *
 * What a machine pays while these are attached is the floor under any
 * probe on those points: the tracepoint's call into a BPF program on every
 * syscall (and context switch) of every thread.  bench/kprobes.sh measures
 * loopwatch watching another thread against it; floor_lw.c loads them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int floor_sys_enter(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int floor_sys_exit(void *ctx)
{
	return 0;
}

SEC("tp_btf/sched_switch")
int floor_switch(void *ctx)
{
	return 0;
}
