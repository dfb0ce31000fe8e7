/*
 * sym_target.c - a live process for the symbolizer's tests
 * (tests/test_symbolize.c): functions at known addresses, a libc function,
 * JIT-like code in an anonymous mapping named by a perf map, and an
 * anonymous mapping that nothing names.
 *
 *   sym_target [noperfmap]
 *
 * It prints, one per line, then sleeps until it is killed:
 *
 *   fn NAME 0xADDR LINE   one of its own functions (non-static, noinline)
 *                         and the source line just before its definition
 *   ret sym_beta 0xADDR   a return address inside sym_beta: where the call
 *                         to sym_alpha returns to
 *   libc write 0xADDR     libc's write(), as this process resolved it
 *   jit 0xADDR SIZE       an anonymous executable mapping whose first byte
 *                         is a `ret` (it is called once, so it is real code)
 *                         and that /tmp/perf-PID.map names "jit_hot_loop"
 *   anon 0xADDR           an anonymous read-write mapping, in no perf map
 *   ready PID
 *
 * The perf map also holds malformed lines, which a reader must skip.  With
 * `noperfmap` no perf map is written.  The test removes the file.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone, used))

void sym_alpha(int n);
void sym_beta(int n);
int sym_gamma(int n);

static volatile int sink;
static volatile uintptr_t alpha_ret;

static const int alpha_line = __LINE__;
NOINLINE void sym_alpha(int n)
{
	/* Where this call returns to is in sym_beta. */
	alpha_ret = (uintptr_t)__builtin_return_address(0);
	for (int i = 0; i < n; i++)
		sink += i;
}

static const int beta_line = __LINE__;
NOINLINE void sym_beta(int n)
{
	sym_alpha(n);
	sink += n;
}

static const int gamma_line = __LINE__;
NOINLINE int sym_gamma(int n)
{
	int acc = 0;

	for (int i = 0; i < n; i++)
		acc += i * sink;
	return acc;
}

static void print_fn(const char *name, void *fn, int line)
{
	printf("fn %s %#lx %d\n", name, (unsigned long)(uintptr_t)fn, line);
}

int main(int argc, char **argv)
{
	int perfmap = !(argc > 1 && strcmp(argv[1], "noperfmap") == 0);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	sym_beta(3);
	sink += sym_gamma(4);
	print_fn("sym_alpha", (void *)sym_alpha, alpha_line);
	print_fn("sym_beta", (void *)sym_beta, beta_line);
	print_fn("sym_gamma", (void *)sym_gamma, gamma_line);
	printf("ret sym_beta %#lx\n", (unsigned long)alpha_ret);

	/* libc's own write (not a PLT stub, nor a sanitizer's interceptor
	 * of the same name). */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	void *w = libc != NULL ? dlsym(libc, "write") : NULL;
	printf("libc write %#lx\n", (unsigned long)(uintptr_t)w);

	/* JIT-like code: a page with `ret` at its start. */
	unsigned char *jit = mmap(NULL, page, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (jit == MAP_FAILED)
		return 1;
	memset(jit, 0xcc, page); /* int3 */
	jit[0] = 0xc3; /* ret */
	if (mprotect(jit, page, PROT_READ | PROT_EXEC) != 0)
		return 1;
	((void (*)(void))(uintptr_t)jit)();
	printf("jit %#lx %#lx\n", (unsigned long)(uintptr_t)jit,
	       (unsigned long)64);

	/* An anonymous mapping that nothing names; a guard page on each side
	 * keeps the kernel from merging it with a neighbour. */
	unsigned char *anon = mmap(NULL, 3 * page, PROT_NONE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED ||
	    mprotect(anon + page, page, PROT_READ | PROT_WRITE) != 0)
		return 1;
	anon[page] = 1;
	printf("anon %#lx\n", (unsigned long)(uintptr_t)(anon + page));

	if (perfmap) {
		char path[64];
		snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
		FILE *f = fopen(path, "w");
		if (f == NULL)
			return 1;
		/* Malformed lines first: no size, no name, not hex, a range
		 * past 2^64.  A reader skips them. */
		fprintf(f, "%lx\n", (unsigned long)(uintptr_t)jit);
		fprintf(f, "%lx 40\n", (unsigned long)(uintptr_t)jit);
		fprintf(f, "zz 40 not_hex\n");
		fprintf(f, "ffffffffffffffff 10 past_the_end\n");
		fprintf(f, "%lx 40 jit_hot_loop\n",
			(unsigned long)(uintptr_t)jit);
		fclose(f);
	}

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}
