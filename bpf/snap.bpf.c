// SPDX-License-Identifier: GPL-2.0
/*
 * snap.bpf.c - a snapshot of one sleeping thread's user registers and user
 * stack memory, on demand, without stopping it (see agent/bpf_snap.h).
 *
 * A sleepable task iterator: the agent attaches it with the thread's tid in
 * bpf_iter_link_info (kernel 6.1 and later visit that one thread), creates
 * the iterator and reads it; the program runs once for the thread and
 * writes one struct lw_snap_rec.  Sleepable, because copying another
 * process's memory (bpf_copy_from_user_task) may have to fault its pages
 * in.  Iterators are called from the reader's read(), not through a
 * trampoline, so the kernels that refuse fentry still run them.
 *
 * The registers are those the thread's last entry into the kernel saved:
 * while it sleeps in a syscall they are the syscall's entry frame, and its
 * user stack cannot change.  Whether it stayed asleep while the copy ran
 * is checked with its context switch counts and on_cpu, before and after.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "../agent/bpf_snap.h"

char LICENSE[] SEC("license") = "GPL";

/* The record is too large for the BPF stack (512 bytes): it is built in
 * this one-entry map, then written out.  One snapshot at a time per loaded
 * program (the agent's handle is used by one thread at a time). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lw_snap_rec);
} snap_buf SEC(".maps");

/* The stack is copied in pieces of this size: one copy fails whole when
 * any of its pages cannot be read, so a short stack (the end of the
 * mapping less than LW_BPF_USTACK_BYTES above sp) keeps its full pieces. */
#define SNAP_PIECE 1024

static long vma_end(struct task_struct *task, struct vm_area_struct *vma,
		    void *data)
{
	*(__u64 *)data = vma->vm_end;
	return 0;
}

static __always_inline __u64 switches(struct task_struct *task)
{
	return BPF_CORE_READ(task, nvcsw) + BPF_CORE_READ(task, nivcsw);
}

SEC("iter.s/task")
int lw_snap(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct seq_file *seq = ctx->meta->seq;
	struct lw_snap_rec *r;
	struct pt_regs *regs;
	__u64 sp, end = 0, len, csw;
	__u8 insn[2];
	__u32 zero = 0;
	long err;

	/* The last call of an iteration has no task. */
	if (!task)
		return 0;
	r = bpf_map_lookup_elem(&snap_buf, &zero);
	if (!r)
		return 0;
	r->tid = BPF_CORE_READ(task, pid);
	r->pid = BPF_CORE_READ(task, tgid);
	r->flags = 0;
	r->state = BPF_CORE_READ(task, __state);
	r->orig_ax = -1;
	r->copy_err = 0;
	r->pad = 0;
	r->ktime_ns = bpf_ktime_get_ns();
	__builtin_memset(&r->us.regs, 0, sizeof(r->us.regs));
	r->us.bytes = 0;
	r->us.pad = 0;

	if (!BPF_CORE_READ(task, mm)) {
		r->flags |= LW_SNAP_NO_MM;
		goto out;
	}
	csw = switches(task);
	if (BPF_CORE_READ(task, on_cpu))
		r->flags |= LW_SNAP_ON_CPU;

	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		goto out;
	r->us.regs.ip = BPF_CORE_READ(regs, ip);
	r->us.regs.sp = sp = BPF_CORE_READ(regs, sp);
	r->us.regs.bp = BPF_CORE_READ(regs, bp);
	r->us.regs.bx = BPF_CORE_READ(regs, bx);
	r->us.regs.r12 = BPF_CORE_READ(regs, r12);
	r->us.regs.r13 = BPF_CORE_READ(regs, r13);
	r->us.regs.r14 = BPF_CORE_READ(regs, r14);
	r->us.regs.r15 = BPF_CORE_READ(regs, r15);
	r->orig_ax = (__s64)BPF_CORE_READ(regs, orig_ax);

	/* A syscall's entry frame: the syscall instruction put the return
	 * address in rcx, and entry saved it as both ip and cx.  An
	 * exception's error code is also a nonnegative orig_ax, so the
	 * instruction before ip is checked too. */
	if (r->orig_ax >= 0 && BPF_CORE_READ(regs, cx) == r->us.regs.ip &&
	    r->us.regs.ip >= 2 &&
	    !bpf_copy_from_user_task(insn, sizeof(insn),
				     (void *)(r->us.regs.ip - 2), task, 0) &&
	    insn[0] == 0x0f && insn[1] == 0x05)
		r->flags |= LW_SNAP_SYSCALL;

	/* Up to the end of the stack's mapping: a copy that crosses it
	 * fails whole. */
	if (bpf_find_vma(task, sp, vma_end, &end, 0) || end <= sp)
		end = sp + LW_BPF_USTACK_BYTES;
	len = end - sp;
	if (len > LW_BPF_USTACK_BYTES)
		len = LW_BPF_USTACK_BYTES;
	for (int k = 0; k < LW_BPF_USTACK_BYTES / SNAP_PIECE; k++) {
		if ((__u64)(k + 1) * SNAP_PIECE > len)
			break;
		err = bpf_copy_from_user_task(
			r->us.data + k * SNAP_PIECE, SNAP_PIECE,
			(void *)(sp + k * SNAP_PIECE), task, 0);
		if (err) {
			r->copy_err = (__s32)err;
			break;
		}
		r->us.bytes = (k + 1) * SNAP_PIECE;
	}
	/* The tail of a short stack, below one piece: the outermost frames
	 * (main's) live there. */
	if (!r->copy_err && (len & (SNAP_PIECE - 1))) {
		/* Every full piece was copied: the tail starts at the last
		 * piece boundary below len. */
		__u64 off = len & ~(__u64)(SNAP_PIECE - 1);
		__u32 rest = (__u32)len & (SNAP_PIECE - 1);

		if (off <= LW_BPF_USTACK_BYTES - SNAP_PIECE) {
			err = bpf_copy_from_user_task(r->us.data + off, rest,
						      (void *)(sp + off), task,
						      0);
			if (err)
				r->copy_err = (__s32)err;
			else
				r->us.bytes = (__u32)(off + rest);
		}
	}

	if (BPF_CORE_READ(task, on_cpu))
		r->flags |= LW_SNAP_ON_CPU;
	if (switches(task) != csw)
		r->flags |= LW_SNAP_MOVED;
out:
	bpf_seq_write(seq, r, sizeof(*r));
	return 0;
}
