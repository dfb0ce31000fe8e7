/* test_unwind.c - the DWARF unwinder (agent/unwind.c) on real stacks: this
 * process's own, captured in functions built without frame pointers, one
 * of them called back from inside libc's qsort (Debian's libc has no frame
 * pointers either), and another process's; then truncated and random
 * snapshots, and a measurement of unwinds per second. */
#include "lwtest.h"
#include "symbolize.h"
#include "unwind.h"

#include <dlfcn.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Functions built this way keep nothing in rbp, and a frame-pointer walk
 * cannot get past them: only CFI can. */
#ifdef __clang__
/* clang has no per-function optimize attribute: the functions keep their
 * frame pointers there, and the tests still check the CFI walk. */
#define NOFP __attribute__((noinline))
#else
#define NOFP __attribute__((noinline, optimize("omit-frame-pointer")))
#endif

/* The snapshot that the functions below capture: what the kernel programs
 * send (struct lw_bpf_ustack), taken in user space instead. */
static struct lw_bpf_ustack snap;

/* Copy up to LW_BPF_USTACK_BYTES of this process's stack from sp, a page
 * at a time, stopping at the first page that cannot be read (the top of
 * the stack).  process_vm_readv rather than memcpy: the stack holds
 * AddressSanitizer's poisoned red zones, which a plain read would report. */
static void copy_stack(void)
{
	uint64_t at = snap.regs.sp, end = at + LW_BPF_USTACK_BYTES;

	snap.bytes = 0;
	while (at < end) {
		uint64_t next = (at | 4095) + 1;
		if (next > end)
			next = end;
		struct iovec local = { snap.data + (at - snap.regs.sp),
				       (size_t)(next - at) };
		struct iovec remote = { (void *)(uintptr_t)at,
					(size_t)(next - at) };
		ssize_t got =
			process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		if (got <= 0)
			break;
		at += (uint64_t)got;
		snap.bytes = (uint32_t)(at - snap.regs.sp);
		if ((size_t)got < remote.iov_len)
			break;
	}
}

/* Take the registers where this macro stands.  Memory operands only (the
 * globals, addressed rip-relative), so that no register the compiler
 * allocates changes what is captured; rip is the instruction after the
 * lea, inside the capturing function. */
#define CAPTURE()                                                            \
	do {                                                                 \
		__asm__ volatile("lea 0(%%rip), %%rax\n\t"                   \
				 "mov %%rax, %0\n\t"                         \
				 "mov %%rsp, %1\n\t"                         \
				 "mov %%rbp, %2\n\t"                         \
				 "mov %%rbx, %3\n\t"                         \
				 "mov %%r12, %4\n\t"                         \
				 "mov %%r13, %5\n\t"                         \
				 "mov %%r14, %6\n\t"                         \
				 "mov %%r15, %7\n\t"                         \
				 : "=m"(snap.regs.ip), "=m"(snap.regs.sp),   \
				   "=m"(snap.regs.bp), "=m"(snap.regs.bx),   \
				   "=m"(snap.regs.r12), "=m"(snap.regs.r13), \
				   "=m"(snap.regs.r14), "=m"(snap.regs.r15)  \
				 :                                           \
				 : "rax", "memory");                         \
		copy_stack();                                                \
	} while (0)

/* Keeps a call from being a tail call (which would leave no frame). */
static volatile int sink;

NOFP int unw_inner(int x);
NOFP int unw_middle(int x);
NOFP int unw_outer(int x);
NOFP int unw_deep(int n);
NOFP int unw_sort_caller(void);

NOFP int unw_inner(int x)
{
	CAPTURE();
	sink = x;
	return x + 1;
}

NOFP int unw_middle(int x)
{
	int r = unw_inner(x + 1);
	sink = r;
	return r + 1;
}

NOFP int unw_outer(int x)
{
	int r = unw_middle(x + 1);
	sink = r;
	return r + 1;
}

/* n frames of itself, then the capture: a stack of known depth. */
NOFP int unw_deep(int n)
{
	int r;

	if (n == 0) {
		CAPTURE();
		return 0;
	}
	r = unw_deep(n - 1);
	sink = r;
	return r + 1;
}

static int captured;

/* Called by libc's qsort: the chain above it is libc's own code. */
static NOFP int unw_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (!captured) {
		captured = 1;
		CAPTURE();
	}
	return (x > y) - (x < y);
}

typedef void qsort_fn(void *, size_t, size_t,
		      int (*)(const void *, const void *));

/* libc's own qsort.  AddressSanitizer replaces qsort with one of its own
 * that never enters libc; a lookup in libc.so.6 itself (and its only
 * dependency, the dynamic linker) finds the real one in either build. */
static qsort_fn *libc_qsort(void)
{
	void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
	qsort_fn *fn = NULL;

	if (libc != NULL) {
		*(void **)&fn = dlsym(libc, "qsort");
		dlclose(libc);
	}
	if (fn == NULL)
		LWT_FAIL("cannot find qsort in libc.so.6: %s", dlerror());
	return fn;
}

NOFP int unw_sort_caller(void)
{
	int v[] = { 5, 3, 9, 1, 7, 2, 8 };
	qsort_fn *sort = libc_qsort();

	captured = 0;
	sort(v, sizeof(v) / sizeof(v[0]), sizeof(v[0]), unw_cmp);
	sink = v[0];
	return v[0];
}

/* ---- helpers ---- */

struct named {
	int n;
	uint64_t addr[64];
	lw_sym_frame_t f[64];
};

/* Unwind snap in process pid and name every frame; prints the stack.
 * With shared, the names come from the unwinder's own symbolizer
 * (lw_unwind_sym), else from a second one opened on its own. */
static void unwind_and_name(pid_t pid, pid_t tid, int shared, struct named *s)
{
	char why[256] = "", line[600];
	lw_unwind_t *u;
	lw_sym_t *sym = NULL;

	ASSERT(snap.regs.ip != 0);
	ASSERT_GT(snap.bytes, 256);
	if (lw_unwind_open(pid, &u, why, sizeof(why)) != 0)
		LWT_FAIL("lw_unwind_open: %s", why);
	s->n = lw_unwind_stack(u, tid, &snap.regs, snap.data, snap.bytes,
			       s->addr, 64);
	ASSERT_GE(s->n, 1);
	ASSERT_EQ(s->addr[0], snap.regs.ip);
	if (!shared && lw_sym_open(pid, &sym, why, sizeof(why)) != 0)
		LWT_FAIL("lw_sym_open: %s", why);
	for (int i = 0; i < s->n; i++) {
		lw_sym_lookup(shared ? lw_unwind_sym(u) : sym, s->addr[i],
			      i > 0, &s->f[i]);
		lw_sym_format(&s->f[i], line, sizeof(line));
		fprintf(stderr, "  #%-2d 0x%016" PRIx64 " %s\n", i, s->addr[i],
			line);
	}
	lw_sym_close(sym);
	lw_unwind_close(u);
}

/* The index of the first frame at or after from whose function is name,
 * or -1. */
static int find_func(const struct named *s, int from, const char *name)
{
	for (int i = from; i < s->n; i++)
		if ((s->f[i].flags & LW_SYM_FUNC) &&
		    strcmp(s->f[i].func, name) == 0)
			return i;
	return -1;
}

/* How far a frame-pointer walk gets from the snapshot (what
 * bpf_get_stack does), for comparison in the log. */
static int fp_walk_depth(void)
{
	uint64_t bp = snap.regs.bp;
	int n = 1;

	while (n < 64 && bp >= snap.regs.sp &&
	       bp + 16 <= snap.regs.sp + snap.bytes) {
		uint64_t next, ret;
		memcpy(&next, snap.data + (bp - snap.regs.sp), 8);
		memcpy(&ret, snap.data + (bp - snap.regs.sp) + 8, 8);
		if (ret == 0)
			break;
		n++;
		if (next <= bp)
			break;
		bp = next;
	}
	return n;
}

/* ---- tests ---- */

/* Three functions without frame pointers, then this test function and the
 * runner's frames above it. */
TEST(unwind_in_process)
{
	static struct named s;
	int a, b, c, d;

	unw_outer(1);
	unwind_and_name(getpid(), getpid(), 0, &s);
	a = find_func(&s, 0, "unw_inner");
	b = find_func(&s, a + 1, "unw_middle");
	c = find_func(&s, b + 1, "unw_outer");
	d = find_func(&s, c + 1, "test_unwind_in_process");
	ASSERT_EQ(a, 0);
	ASSERT_EQ(b, 1);
	ASSERT_EQ(c, 2);
	ASSERT_EQ(d, 3);
	/* The runner's main, and libc's start code above it. */
	ASSERT_GT(find_func(&s, d + 1, "main"), d);
	fprintf(stderr, "  %d frames by CFI, %d by frame pointers\n", s.n,
		fp_walk_depth());
}

/* The comparator is called by qsort's internals in libc, which has no
 * frame pointers: the walk must go through libc's .eh_frame to reach
 * unw_sort_caller. */
TEST(unwind_through_libc)
{
	static struct named s;
	int a, b, libc = 0;

	unw_sort_caller();
	ASSERT(captured);
	unwind_and_name(getpid(), getpid(), 1, &s);
	a = find_func(&s, 0, "unw_cmp");
	b = find_func(&s, 1, "unw_sort_caller");
	ASSERT_EQ(a, 0);
	ASSERT_GT(b, 1);
	for (int i = a + 1; i < b; i++)
		if (strcmp(s.f[i].module, "libc.so.6") == 0)
			libc++;
	ASSERT_GE(libc, 1);
	ASSERT_GE(find_func(&s, b + 1, "test_unwind_through_libc"), b + 1);
	fprintf(stderr,
		"  %d frames by CFI (%d in libc), %d by frame pointers\n", s.n,
		libc, fp_walk_depth());
}

/* The same stack, captured in a child process and unwound from here with
 * the child's maps and files. */
TEST(unwind_other_process)
{
	int p[2];
	pid_t pid;
	static struct named s;
	size_t got = 0;

	ASSERT_OK(pipe(p));
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		unw_outer(1);
		const char *at = (const char *)&snap;
		size_t left = sizeof(snap);
		while (left > 0) {
			ssize_t n = write(p[1], at, left);
			if (n <= 0)
				_exit(1);
			at += n;
			left -= (size_t)n;
		}
		pause();
		_exit(0);
	}
	close(p[1]);
	memset(&snap, 0, sizeof(snap));
	while (got < sizeof(snap)) {
		ssize_t n = read(p[0], (char *)&snap + got, sizeof(snap) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	if (got != sizeof(snap)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		LWT_FAIL("read %zu of %zu bytes from the child", got,
			 sizeof(snap));
	}
	unwind_and_name(pid, pid, 1, &s);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ASSERT_EQ(find_func(&s, 0, "unw_inner"), 0);
	ASSERT_EQ(find_func(&s, 1, "unw_middle"), 1);
	ASSERT_EQ(find_func(&s, 2, "unw_outer"), 2);
	ASSERT_EQ(find_func(&s, 3, "test_unwind_other_process"), 3);
}

/* Snapshots cut short, and garbage: short results or errors, never a
 * read outside the snapshot (ASan checks that in its build). */
TEST(unwind_bad_snapshots)
{
	static unsigned char junk[LW_BPF_USTACK_BYTES];
	struct lw_bpf_regs r;
	char why[256] = "";
	uint64_t out[64], full[64];
	lw_unwind_t *u;
	int n, nfull;

	unw_sort_caller();
	if (lw_unwind_open(getpid(), &u, why, sizeof(why)) != 0)
		LWT_FAIL("lw_unwind_open: %s", why);
	nfull = lw_unwind_stack(u, getpid(), &snap.regs, snap.data, snap.bytes,
				full, 64);
	ASSERT_GE(nfull, 4);

	/* Cut: a prefix of the walk, no more. */
	n = lw_unwind_stack(u, getpid(), &snap.regs, snap.data, 64, out, 64);
	ASSERT_GE(n, 1);
	ASSERT_LT(n, nfull);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(out[i], full[i]);
	n = lw_unwind_stack(u, getpid(), &snap.regs, NULL, 0, out, 64);
	ASSERT_EQ(n, 1);
	/* max cuts too. */
	n = lw_unwind_stack(u, getpid(), &snap.regs, snap.data, snap.bytes, out,
			    2);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(out[1], full[1]);
	ASSERT_EQ(lw_unwind_stack(u, getpid(), &snap.regs, snap.data,
				  snap.bytes, out, 0),
		  0);

	/* Nothing, or nonsense arguments. */
	memset(&r, 0, sizeof(r));
	ASSERT_EQ(lw_unwind_stack(u, getpid(), &r, NULL, 0, out, 64), 0);
	ASSERT_EQ(lw_unwind_stack(u, getpid(), NULL, NULL, 0, out, 64),
		  -EINVAL);
	ASSERT_EQ(lw_unwind_stack(u, getpid(), &r, NULL, 8, out, 64), -EINVAL);
	ASSERT_EQ(lw_unwind_stack(NULL, getpid(), &r, NULL, 0, out, 64),
		  -EINVAL);

	/* Random registers and stack bytes; some with ip in libc or in this
	 * program and the stack full of addresses near it, so that CFI is
	 * found and the walk follows garbage as far as it goes. */
	uint64_t in_libc = (uint64_t)(uintptr_t)libc_qsort();
	srand(12345);
	for (int iter = 0; iter < 3000; iter++) {
		uint64_t *w = (uint64_t *)(void *)junk;
		uint64_t near = iter % 3 == 0	? in_libc
				: iter % 3 == 1 ? (uint64_t)(uintptr_t)unw_cmp
						: 0;
		uint64_t *regs = (uint64_t *)(void *)&r;

		for (size_t i = 0; i < sizeof(junk) / 8; i++) {
			uint64_t v = ((uint64_t)rand() << 33) ^
				     ((uint64_t)rand() << 12) ^
				     (uint64_t)rand();
			if (near != 0 && i % 2 == 0)
				v = near + (v & 0xfff);
			else if (i % 4 == 1)
				v = snap.regs.sp + (v & 0x1ff8);
			w[i] = v;
		}
		for (size_t i = 0; i < sizeof(r) / 8; i++)
			regs[i] = w[(size_t)rand() % (sizeof(junk) / 8)];
		if (near != 0)
			r.ip = near + (uint64_t)(rand() & 0x3f);
		if (iter % 2 == 0)
			r.sp = snap.regs.sp;
		if (iter % 97 == 0)
			r.sp = 0;
		n = lw_unwind_stack(u, (pid_t)(1 + rand() % 100000), &r, junk,
				    (size_t)rand() % (sizeof(junk) + 1), out,
				    64);
		ASSERT_GE(n, r.ip != 0 ? 1 : 0);
		ASSERT_LE(n, 64);
		if (n > 0)
			ASSERT_EQ(out[0], r.ip);
	}

	/* Still good after all that, and after a refresh. */
	ASSERT_OK(lw_unwind_refresh(u));
	n = lw_unwind_stack(u, getpid(), &snap.regs, snap.data, snap.bytes, out,
			    64);
	ASSERT_EQ(n, nfull);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(out[i], full[i]);
	lw_unwind_close(u);
	lw_unwind_close(NULL);

	ASSERT_EQ(lw_unwind_open(-1, &u, why, sizeof(why)), -EINVAL);
	ASSERT(u == NULL);
	fprintf(stderr, "  pid -1: %s\n", why);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Unwinds per second of one snapshot ~10 frames deep: with one unwinder
 * for the process (ours) and with a new one per snapshot (perf's way).
 * Printed, not asserted: the machine is shared. */
TEST_T(unwind_rate, 60)
{
	char why[256] = "";
	uint64_t out[64];
	lw_unwind_t *u;
	double t0, t1, t2;
	int n, first, iters = 0, fresh = 0;

	unw_deep(8);
	if (lw_unwind_open(getpid(), &u, why, sizeof(why)) != 0)
		LWT_FAIL("lw_unwind_open: %s", why);
	first = lw_unwind_stack(u, getpid(), &snap.regs, snap.data, snap.bytes,
				out, 64);
	/* unw_deep 9 times, this test, the runner. */
	ASSERT_GE(first, 11);
	t0 = now_s();
	do {
		for (int i = 0; i < 200; i++) {
			n = lw_unwind_stack(u, getpid(), &snap.regs, snap.data,
					    snap.bytes, out, 64);
			ASSERT_EQ(n, first);
		}
		iters += 200;
		t1 = now_s();
	} while (t1 - t0 < 0.5);
	lw_unwind_close(u);

	do {
		if (lw_unwind_open(getpid(), &u, why, sizeof(why)) != 0)
			LWT_FAIL("lw_unwind_open: %s", why);
		n = lw_unwind_stack(u, getpid(), &snap.regs, snap.data,
				    snap.bytes, out, 64);
		lw_unwind_close(u);
		ASSERT_EQ(n, first);
		fresh++;
		t2 = now_s();
	} while (t2 - t1 < 0.5 || fresh < 3);

	double cached = iters / (t1 - t0), per_open = fresh / (t2 - t1);
	fprintf(stderr,
		"  %d frames: %.0f unwinds/s with one unwinder (%.2f us each), "
		"%.1f/s opening one per snapshot: %.0fx\n",
		first, cached, 1e6 / cached, per_open, cached / per_open);
}
