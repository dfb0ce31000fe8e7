/*
 * unwind.c - DWARF unwinding of user stack snapshots (see unwind.h).
 *
 * elfutils unwinds a "process" that it reaches through callbacks: which
 * threads there are, their registers, and their memory.  perf
 * (tools/perf/util/unwind-libdw.c) builds a new Dwfl for every sample, so
 * every sample pays for opening ELF files and parsing their CFI again.
 * Here one Dwfl per process lives as long as the lw_unwind_t: it is the
 * symbolizer's (lw_sym_dwfl), so the process's files are found the same
 * way (inside /proc/PID/root, deleted files through map_files) and read
 * once.  dwfl_attach_state can be called only once per Dwfl, so the
 * callbacks' argument is the lw_unwind_t itself, and each call of
 * lw_unwind_stack points it at the snapshot being unwound (`cur`): the
 * callbacks report that snapshot's thread, registers and memory, whatever
 * the tid.  elfutils asks for the registers again on every
 * dwfl_getthread_frames and keeps no thread state between calls, so one
 * Dwfl serves every snapshot of every thread.
 */
#include "unwind.h"
#include "why.h"

#include "symbolize.h"

#include <elfutils/libdwfl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* x86-64 DWARF register numbers (System V psABI, figure 3.36). */
enum {
	DW_RBX = 3,
	DW_RBP = 6,
	DW_RSP = 7,
	DW_R12 = 12,
};

/* The snapshot being unwound, for the callbacks. */
struct snapshot {
	pid_t tid;
	const struct lw_bpf_regs *regs;
	const unsigned char *stack;
	size_t len;
};

/* The walk so far, for the per-frame callback. */
struct walk {
	uint64_t *out;
	size_t max, n;
	uint64_t last_sp;
};

struct lw_unwind {
	pid_t pid;
	lw_sym_t *sym; /* owns the Dwfl */
	Dwfl *dwfl;
	struct snapshot cur; /* valid during lw_unwind_stack only */
};

/* The process has exactly one thread: the one whose snapshot is being
 * unwound. */
static pid_t next_thread(Dwfl *dwfl, void *arg, void **thread_argp)
{
	lw_unwind_t *u = arg;

	if (*thread_argp != NULL || u->cur.regs == NULL)
		return 0;
	*thread_argp = u;
	return u->cur.tid;
}

static bool get_thread(Dwfl *dwfl, pid_t tid, void *arg, void **thread_argp)
{
	lw_unwind_t *u = arg;

	if (u->cur.regs == NULL || tid != u->cur.tid)
		return false;
	*thread_argp = u;
	return true;
}

/* A word of the stack, from the snapshot only.  Anything else (memory
 * below the stack pointer, beyond the copy, or not on the stack at all)
 * fails, which ends the walk there. */
static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result,
			void *arg)
{
	const lw_unwind_t *u = arg;
	const struct snapshot *c = &u->cur;
	uint64_t base, off;

	if (c->regs == NULL || c->len < sizeof(*result))
		return false;
	base = c->regs->sp;
	if (addr < base)
		return false;
	off = addr - base;
	if (off > c->len - sizeof(*result))
		return false;
	memcpy(result, c->stack + off, sizeof(*result));
	return true;
}

/* Only the registers the snapshot has: the rest stay undefined, and a
 * frame whose CFI needs one of them (rare: caller-saved registers are not
 * preserved across calls) ends the walk. */
static bool set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
	const lw_unwind_t *u = thread_arg;
	const struct lw_bpf_regs *r = u->cur.regs;
	Dwarf_Word bx = r->bx, bp_sp[2] = { r->bp, r->sp },
		   r12_15[4] = { r->r12, r->r13, r->r14, r->r15 };

	if (!dwfl_thread_state_registers(thread, DW_RBX, 1, &bx) ||
	    !dwfl_thread_state_registers(thread, DW_RBP, 2, bp_sp) ||
	    !dwfl_thread_state_registers(thread, DW_R12, 4, r12_15))
		return false;
	dwfl_thread_state_register_pc(thread, r->ip);
	return true;
}

static const Dwfl_Thread_Callbacks callbacks = {
	.next_thread = next_thread,
	.get_thread = get_thread,
	.memory_read = memory_read,
	.set_initial_registers = set_initial_registers,
};

int lw_unwind_open(pid_t pid, lw_unwind_t **out, char *why, size_t whylen)
{
	lw_unwind_t *u;
	int rc;

	*out = NULL;
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		lw_why(why, whylen, "out of memory");
		return -ENOMEM;
	}
	u->pid = pid;
	rc = lw_sym_open(pid, &u->sym, why, whylen);
	if (rc < 0) {
		free(u);
		return rc;
	}
	u->dwfl = lw_sym_dwfl(u->sym);
	/* With no ELF given, elfutils takes the architecture from one of the
	 * modules reported by lw_sym_open. */
	if (!dwfl_attach_state(u->dwfl, NULL, pid, &callbacks, u)) {
		lw_why(why, whylen,
		       "cannot prepare process %d for unwinding: %s", (int)pid,
		       dwfl_errmsg(-1));
		lw_unwind_close(u);
		return -EIO;
	}
	*out = u;
	return 0;
}

int lw_unwind_refresh(lw_unwind_t *u)
{
	/* The attached state belongs to the Dwfl, not to its modules: it
	 * survives a new report of the modules. */
	return lw_sym_refresh(u->sym);
}

static int frame_cb(Dwfl_Frame *frame, void *arg)
{
	struct walk *w = arg;
	Dwarf_Addr pc;
	Dwarf_Word sp;
	bool activation;

	if (!dwfl_frame_pc(frame, &pc, &activation) || pc == 0)
		return DWARF_CB_ABORT;
	/* Each return pops at least its return address, so a caller's stack
	 * pointer is above its callee's: anything else is a loop or garbage.
	 * The first frame's is regs->sp, already in last_sp. */
	if (w->n > 0) {
		if (dwfl_frame_reg(frame, DW_RSP, &sp) != 0 || sp <= w->last_sp)
			return DWARF_CB_ABORT;
		w->last_sp = sp;
		w->out[w->n++] = pc;
	} else {
		/* The initial frame: regs->ip as it was given. */
		w->n = 1;
	}
	return w->n < w->max ? DWARF_CB_OK : DWARF_CB_ABORT;
}

int lw_unwind_stack(lw_unwind_t *u, pid_t tid, const struct lw_bpf_regs *regs,
		    const void *stack, size_t stack_len, uint64_t *out,
		    size_t max)
{
	struct walk w = { .out = out, .max = max };

	if (u == NULL || regs == NULL || (out == NULL && max > 0) ||
	    (stack == NULL && stack_len > 0) || tid <= 0)
		return -EINVAL;
	if (max == 0 || regs->ip == 0)
		return 0;
	out[0] = regs->ip;
	w.n = 0;
	w.last_sp = regs->sp;
	u->cur = (struct snapshot){
		.tid = tid, .regs = regs, .stack = stack, .len = stack_len
	};
	/* An error ends the walk where it happened (the end of the snapshot,
	 * a frame without CFI): the frames found before it stand. */
	(void)dwfl_getthread_frames(u->dwfl, tid, frame_cb, &w);
	u->cur = (struct snapshot){ 0 };
	return w.n > 0 ? (int)w.n : 1;
}

lw_sym_t *lw_unwind_sym(lw_unwind_t *u)
{
	return u->sym;
}

void lw_unwind_close(lw_unwind_t *u)
{
	if (u == NULL)
		return;
	/* dwfl_end, inside, calls no callback of ours that needs u: there is
	 * no detach callback. */
	lw_sym_close(u->sym);
	free(u);
}
