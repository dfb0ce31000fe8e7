/* test_symbolize.c - the symbolizer against a live process
 * (tests/progs/sym_target), and the perf-map parser on its own. */
#include "lwtest.h"
#include "perfmap.h"
#include "symbolize.h"

#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the target ---- */

struct target {
	pid_t pid;
	int out; /* its stdout */
	struct {
		char name[32];
		uint64_t addr;
		int line; /* the line before the definition */
	} fn[3];
	int nfn;
	uint64_t ret_beta, libc_write, jit, jit_size, anon;
};

/* Copy the file at from to a new executable file to (in the child). */
static int copy_exe(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT, 0755);

	if (in < 0 || out < 0)
		return -1;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return -1;
	close(in);
	return close(out);
}

/* Start sym_target MODE.  With ns_dir, the child first moves into a mount
 * namespace of its own, mounts a tmpfs on ns_dir (empty as the host sees
 * it) and runs a copy of sym_target from there: a path that exists only
 * inside the target's root, as for a process in a container. */
static void target_start_in(struct target *t, const char *mode,
			    const char *ns_dir)
{
	const char *path = lwt_build_path("tests/progs/sym_target");
	char line[256];
	int p[2];

	memset(t, 0, sizeof(*t));
	if (access(path, X_OK) != 0)
		SKIP("no %s", path);
	ASSERT_OK(pipe(p));
	t->pid = fork();
	ASSERT(t->pid >= 0);
	if (t->pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		if (ns_dir != NULL) {
			static char copy[512];
			snprintf(copy, sizeof(copy), "%s/sym_target_ns",
				 ns_dir);
			if (unshare(CLONE_NEWNS) != 0 ||
			    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
			    mount("tmpfs", ns_dir, "tmpfs", 0, NULL) != 0 ||
			    copy_exe(path, copy) != 0) {
				printf("nons %s\n", strerror(errno));
				fflush(stdout);
				_exit(1);
			}
			path = copy;
		}
		execl(path, path, mode, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	t->out = p[0];
	for (;;) {
		ASSERT(lwt_read_line(t->out, line, sizeof(line), 10000) >= 0);
		unsigned long a, b;
		int ln;
		char name[32];
		if (sscanf(line, "fn %31s %lx %d", name, &a, &ln) == 3) {
			ASSERT_LT(t->nfn, 3);
			snprintf(t->fn[t->nfn].name, sizeof(t->fn[0].name),
				 "%s", name);
			t->fn[t->nfn].addr = a;
			t->fn[t->nfn++].line = ln;
		} else if (sscanf(line, "ret sym_beta %lx", &a) == 1) {
			t->ret_beta = a;
		} else if (sscanf(line, "libc write %lx", &a) == 1) {
			t->libc_write = a;
		} else if (sscanf(line, "jit %lx %lx", &a, &b) == 2) {
			t->jit = a;
			t->jit_size = b;
		} else if (sscanf(line, "anon %lx", &a) == 1) {
			t->anon = a;
		} else if (strncmp(line, "ready ", 6) == 0) {
			break;
		} else if (strncmp(line, "nons ", 5) == 0) {
			SKIP("no mount namespace: %s", line + 5);
		}
	}
	ASSERT_EQ(t->nfn, 3);
	ASSERT(t->ret_beta != 0 && t->libc_write != 0 && t->jit != 0 &&
	       t->anon != 0);
}

static void target_start(struct target *t, const char *mode)
{
	target_start_in(t, mode, NULL);
}

static void perfmap_path(pid_t pid, char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/perf-%d.map", (int)pid);
}

static void target_stop(struct target *t)
{
	char path[64];
	int status;

	kill(t->pid, SIGKILL);
	ASSERT_EQ(waitpid(t->pid, &status, 0), t->pid);
	close(t->out);
	perfmap_path(t->pid, path, sizeof(path));
	unlink(path);
}

static lw_sym_t *open_sym(pid_t pid)
{
	char why[256] = "";
	lw_sym_t *s = NULL;
	int rc = lw_sym_open(pid, &s, why, sizeof(why));

	if (rc == -EACCES)
		SKIP("needs root: %s", why);
	if (rc != 0)
		LWT_FAIL("lw_sym_open: %d %s", rc, why);
	ASSERT(s != NULL);
	return s;
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* The start of the mapping at file offset 0 of a file whose name ends in
 * name: where a PIE or library is loaded. */
static uint64_t load_base(pid_t pid, const char *name)
{
	char path[64], line[512];
	uint64_t found = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	ASSERT(f != NULL);
	while (found == 0 && fgets(line, sizeof(line), f) != NULL) {
		unsigned long start, off;
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%lx-%*x %*s %lx", &start, &off) == 2 &&
		    off == 0 && strcmp(base(line), name) == 0)
			found = start;
	}
	fclose(f);
	return found;
}

/* ---- the symbolizer ---- */

TEST(sym_pie_function_names_and_lines)
{
	struct target t;
	lw_sym_frame_t f;
	char buf[600];

	target_start(&t, "noperfmap");
	lw_sym_t *s = open_sym(t.pid);
	uint64_t bias = load_base(t.pid, "sym_target");
	ASSERT_NE(bias, 0);

	for (int i = 0; i < t.nfn; i++) {
		uint64_t a = t.fn[i].addr;

		ASSERT_EQ(lw_sym_lookup(s, a, 0, &f), 0);
		ASSERT_EQ(f.addr, a);
		ASSERT(f.flags & LW_SYM_FUNC);
		ASSERT(f.flags & LW_SYM_LINE);
		ASSERT(f.flags & LW_SYM_MODULE);
		ASSERT(!(f.flags & (LW_SYM_UNKNOWN | LW_SYM_PERFMAP)));
		ASSERT_STREQ(f.func, t.fn[i].name);
		ASSERT_EQ(f.func_off, 0);
		ASSERT_STREQ(base(f.file), "sym_target.c");
		/* The entry is on the line of the name, or (optimized, with
		 * no prologue) on the first statement's. */
		ASSERT_GE(f.line, t.fn[i].line + 1);
		ASSERT_LE(f.line, t.fn[i].line + 8);
		ASSERT_STREQ(f.module, "sym_target");
		/* PIE: the offset is the address in the file, the load bias
		 * taken off. */
		ASSERT_EQ(f.module_off, a - bias);

		lw_sym_format(&f, buf, sizeof(buf));
		char want[128];
		snprintf(want, sizeof(want), "%s+0x0 (sym_target.c:%d)",
			 t.fn[i].name, f.line);
		ASSERT_STREQ(buf, want);

		/* Inside the function: the same name, the offset. */
		ASSERT_EQ(lw_sym_lookup(s, a + 5, 0, &f), 0);
		ASSERT_STREQ(f.func, t.fn[i].name);
		ASSERT_EQ(f.func_off, 5);
		ASSERT_EQ(f.module_off, a + 5 - bias);
		ASSERT(f.flags & LW_SYM_LINE);
		ASSERT_GE(f.line, t.fn[i].line + 1);
		ASSERT_LE(f.line, t.fn[i].line + 12);
	}

	/* A return address: named and lined by the call before it (in
	 * sym_beta, the line of `sym_alpha(n);`), offset from the return
	 * address itself. */
	uint64_t beta = t.fn[1].addr;
	ASSERT_STREQ(t.fn[1].name, "sym_beta");
	ASSERT_EQ(lw_sym_lookup(s, t.ret_beta, 1, &f), 0);
	ASSERT_EQ(f.addr, t.ret_beta);
	ASSERT_STREQ(f.func, "sym_beta");
	ASSERT_EQ(f.func_off, t.ret_beta - beta);
	ASSERT_EQ(f.line, t.fn[1].line + 3);

	/* The first byte of a function as a return address: the call would
	 * be before it, so it is not that function. */
	uint64_t gamma = t.fn[2].addr;
	lw_sym_lookup(s, gamma, 1, &f);
	ASSERT_EQ(f.addr, gamma);
	ASSERT(strcmp(f.func, "sym_gamma") != 0);
	ASSERT_EQ(lw_sym_lookup(s, gamma, 0, &f), 0);
	ASSERT_STREQ(f.func, "sym_gamma");

	lw_sym_close(s);
	target_stop(&t);
}

TEST(sym_libc_symbol)
{
	struct target t;
	lw_sym_frame_t f;
	char buf[600];

	target_start(&t, "noperfmap");
	lw_sym_t *s = open_sym(t.pid);
	uint64_t libc = load_base(t.pid, "libc.so.6");
	ASSERT_NE(libc, 0);

	lw_sym_lookup(s, t.libc_write, 0, &f);
	ASSERT_STREQ(f.module, "libc.so.6");
	ASSERT(f.flags & LW_SYM_MODULE);
	ASSERT_EQ(f.module_off, t.libc_write - libc);
	lw_sym_format(&f, buf, sizeof(buf));
	fprintf(stderr, "write: %s\n", buf);
	if (f.flags & LW_SYM_FUNC) {
		/* write, __write, __libc_write: aliases of one address. */
		ASSERT(strstr(f.func, "write") != NULL);
		ASSERT_EQ(f.func_off, 0);
	} else {
		char want[64];
		snprintf(want, sizeof(want), "libc.so.6+0x%" PRIx64,
			 f.module_off);
		ASSERT_STREQ(buf, want);
	}

	/* Reading the maps again changes nothing. */
	ASSERT_OK(lw_sym_refresh(s));
	lw_sym_frame_t g;
	lw_sym_lookup(s, t.libc_write, 0, &g);
	ASSERT_STREQ(g.func, f.func);
	ASSERT_EQ(g.module_off, f.module_off);

	lw_sym_close(s);
	target_stop(&t);
}

TEST(sym_unknown_address)
{
	struct target t;
	lw_sym_frame_t f;
	char buf[600];

	target_start(&t, "noperfmap");
	lw_sym_t *s = open_sym(t.pid);

	/* In no mapping at all (below mmap_min_addr). */
	ASSERT_EQ(lw_sym_lookup(s, 0x10, 0, &f), 1);
	ASSERT_EQ(f.addr, 0x10);
	ASSERT(f.flags & LW_SYM_UNKNOWN);
	ASSERT(!(f.flags & (LW_SYM_FUNC | LW_SYM_MODULE | LW_SYM_LINE)));
	ASSERT_STREQ(f.func, "");
	lw_sym_format(&f, buf, sizeof(buf));
	ASSERT_STREQ(buf, "[unknown] 0x10");
	lw_sym_lookup(s, 0x10, 1, &f);
	ASSERT_EQ(f.addr, 0x10);
	ASSERT(f.flags & LW_SYM_UNKNOWN);

	/* Anonymous mappings, and no perf map: the kind of mapping, no
	 * name. */
	uint64_t anon[] = { t.anon + 16, t.jit, t.jit + 1 };
	for (size_t i = 0; i < sizeof(anon) / sizeof(anon[0]); i++) {
		ASSERT_EQ(lw_sym_lookup(s, anon[i], 0, &f), 1);
		ASSERT(f.flags & LW_SYM_UNKNOWN);
		ASSERT(!(f.flags & LW_SYM_FUNC));
		ASSERT_STREQ(f.func, "");
		ASSERT_STREQ(f.module, "[anon]");
		lw_sym_format(&f, buf, sizeof(buf));
		char want[64];
		snprintf(want, sizeof(want), "[unknown] 0x%" PRIx64 " [anon]",
			 anon[i]);
		ASSERT_STREQ(buf, want);
	}

	lw_sym_close(s);
	target_stop(&t);
}

TEST(sym_perfmap)
{
	struct target t;
	lw_sym_frame_t f;
	char buf[600], path[64];

	target_start(&t, "perfmap");
	lw_sym_t *s = open_sym(t.pid);

	ASSERT_EQ(lw_sym_lookup(s, t.jit, 0, &f), 0);
	ASSERT_EQ(f.flags & (LW_SYM_FUNC | LW_SYM_PERFMAP),
		  LW_SYM_FUNC | LW_SYM_PERFMAP);
	ASSERT_STREQ(f.func, "jit_hot_loop");
	ASSERT_EQ(f.func_off, 0);
	ASSERT_EQ(lw_sym_lookup(s, t.jit + 0x20, 0, &f), 0);
	ASSERT_EQ(f.func_off, 0x20);
	lw_sym_format(&f, buf, sizeof(buf));
	ASSERT_STREQ(buf, "jit_hot_loop+0x20 [perf-map]");
	/* A return address just past the entry's end still belongs to it;
	 * an address past it does not. */
	ASSERT_EQ(lw_sym_lookup(s, t.jit + t.jit_size, 1, &f), 0);
	ASSERT_STREQ(f.func, "jit_hot_loop");
	ASSERT_EQ(f.func_off, t.jit_size);
	ASSERT_EQ(lw_sym_lookup(s, t.jit + t.jit_size, 0, &f), 1);
	ASSERT_STREQ(f.module, "[anon]");

	/* The JIT adds code; a refresh reads the map again. */
	perfmap_path(t.pid, path, sizeof(path));
	FILE *pm = fopen(path, "a");
	ASSERT(pm != NULL);
	fprintf(pm, "%" PRIx64 " 20 jit_cold path\n", t.jit + t.jit_size);
	fclose(pm);
	ASSERT_OK(lw_sym_refresh(s));
	ASSERT_EQ(lw_sym_lookup(s, t.jit + t.jit_size + 8, 0, &f), 0);
	ASSERT_STREQ(f.func, "jit_cold path");
	ASSERT_EQ(f.func_off, 8);
	lw_sym_close(s);

	/* A perf map that another user made is not believed. */
	ASSERT_OK(chown(path, 12345, 12345));
	s = open_sym(t.pid);
	ASSERT_EQ(lw_sym_lookup(s, t.jit, 0, &f), 1);
	ASSERT(f.flags & LW_SYM_UNKNOWN);
	lw_sym_close(s);

	/* Nor one that is a symlink. */
	unlink(path);
	ASSERT_OK(symlink("/etc/hostname", path));
	s = open_sym(t.pid);
	ASSERT_EQ(lw_sym_lookup(s, t.jit, 0, &f), 1);
	lw_sym_close(s);

	target_stop(&t);
}

TEST(sym_container_root)
{
	char dir[] = "/tmp/lw-symns-XXXXXX", exe[64];
	struct target t;
	lw_sym_frame_t f;

	if (geteuid() != 0)
		SKIP("needs root for a mount namespace");
	ASSERT(mkdtemp(dir) != NULL);
	target_start_in(&t, "noperfmap", dir);
	/* The host has no such file; the target's root has. */
	snprintf(exe, sizeof(exe), "%s/sym_target_ns", dir);
	ASSERT(access(exe, F_OK) != 0);

	lw_sym_t *s = open_sym(t.pid);
	for (int i = 0; i < t.nfn; i++) {
		ASSERT_EQ(lw_sym_lookup(s, t.fn[i].addr + 1, 0, &f), 0);
		ASSERT_STREQ(f.func, t.fn[i].name);
		ASSERT_EQ(f.func_off, 1);
		ASSERT_STREQ(f.module, "sym_target_ns");
		ASSERT(f.flags & LW_SYM_LINE);
	}
	lw_sym_close(s);
	target_stop(&t);
	ASSERT_OK(rmdir(dir));
}

TEST(sym_target_exited)
{
	char why[256] = "";
	lw_sym_t *s = (lw_sym_t *)&why; /* must be set to NULL */
	int status;

	/* A zombie: exited, not reaped. */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	for (int i = 0; i < 500; i++) {
		char path[64], st[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		FILE *f = fopen(path, "r");
		ASSERT(f != NULL);
		size_t n = fread(st, 1, sizeof(st) - 1, f);
		fclose(f);
		st[n] = '\0';
		char *close_paren = strrchr(st, ')');
		if (close_paren != NULL && close_paren[2] == 'Z')
			break;
		usleep(10000);
	}
	ASSERT_EQ(lw_sym_open(pid, &s, why, sizeof(why)), -ESRCH);
	ASSERT(s == NULL);
	ASSERT(strstr(why, "exited") != NULL);

	/* Reaped: no such process. */
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	why[0] = '\0';
	ASSERT_EQ(lw_sym_open(pid, &s, why, sizeof(why)), -ESRCH);
	ASSERT(s == NULL);
	ASSERT(why[0] != '\0');

	/* A kernel thread has no user-space mappings. */
	if (geteuid() == 0) {
		why[0] = '\0';
		ASSERT_EQ(lw_sym_open(2, &s, why, sizeof(why)), -ENOENT);
		ASSERT(s == NULL);
		ASSERT(strstr(why, "no user-space mappings") != NULL);
	}
	ASSERT_EQ(lw_sym_open(0, &s, why, sizeof(why)), -EINVAL);

	/* A target that dies while open: lookups still answer, a refresh
	 * says it is gone. */
	struct target t;
	lw_sym_frame_t f;
	target_start(&t, "noperfmap");
	s = open_sym(t.pid);
	target_stop(&t);
	ASSERT_EQ(lw_sym_lookup(s, t.fn[0].addr, 0, &f), 0);
	ASSERT_STREQ(f.func, t.fn[0].name);
	ASSERT_EQ(lw_sym_refresh(s), -ESRCH);
	lw_sym_close(s);
	lw_sym_close(NULL);
}

/* The vDSO is a module of its own, named from the process's memory. */
TEST(sym_vdso)
{
	uint64_t vdso = (uint64_t)getauxval(AT_SYSINFO_EHDR);
	char why[256] = "";
	lw_sym_frame_t f;
	lw_sym_t *s = NULL;
	int named = 0;

	if (vdso == 0)
		SKIP("no vDSO");
	ASSERT_OK(lw_sym_open(getpid(), &s, why, sizeof(why)));
	lw_sym_lookup(s, vdso, 0, &f);
	ASSERT(f.flags & LW_SYM_MODULE);
	ASSERT(!(f.flags & LW_SYM_UNKNOWN));
	ASSERT_STREQ(f.module, "[vdso]");
	/* Its functions have names (a vDSO is a page or two). */
	for (uint64_t off = 0; off < 2 * 4096; off += 8) {
		if (lw_sym_lookup(s, vdso + off, 0, &f) == 0 &&
		    strcmp(f.module, "[vdso]") == 0 &&
		    (strstr(f.func, "clock_gettime") != NULL ||
		     strstr(f.func, "gettimeofday") != NULL))
			named++;
	}
	ASSERT_GT(named, 0);
	lw_sym_close(s);
}

/* A file that no process runs, at a base of our choosing, names the same
 * addresses as the running process does at its own base. */
TEST(sym_file_matches_live)
{
	const char *path = lwt_build_path("tests/progs/sym_target");
	const uint64_t base = 0x100000000ull;
	char why[256] = "", buf[600], want[600];
	struct target t;
	lw_sym_frame_t live, file;
	lw_sym_t *fs = NULL;
	struct stat st;

	target_start(&t, "noperfmap");
	lw_sym_t *s = open_sym(t.pid);
	ASSERT_OK(stat(path, &st));
	ASSERT_OK(lw_sym_open_file(path, base, &fs, why, sizeof(why)));
	ASSERT(fs != NULL);

	for (int i = 0; i < t.nfn; i++) {
		for (int ret = 0; ret < 2; ret++) {
			uint64_t a = t.fn[i].addr + 4;
			ASSERT_EQ(lw_sym_lookup(s, a, ret, &live), 0);
			/* A PIE's first page is at file address 0. */
			uint64_t b = base + live.module_off;
			ASSERT_EQ(lw_sym_lookup(fs, b, ret, &file), 0);
			ASSERT_EQ(file.addr, b);
			ASSERT_EQ(file.flags, live.flags);
			ASSERT_STREQ(file.func, live.func);
			ASSERT_EQ(file.func_off, live.func_off);
			ASSERT_STREQ(file.module, "sym_target");
			ASSERT_EQ(file.module_off, live.module_off);
			ASSERT_STREQ(file.file, live.file);
			ASSERT_EQ(file.line, live.line);
			lw_sym_format(&live, want, sizeof(want));
			lw_sym_format(&file, buf, sizeof(buf));
			ASSERT_STREQ(buf, want);
		}
	}
	lw_sym_close(s);
	target_stop(&t);

	/* Outside the file's pages: in no mapping at all. */
	uint64_t end = base + (((uint64_t)st.st_size + 4095) & ~4095ull);
	uint64_t outside[] = { base - 1, end, end + 0x10000, 0 };
	for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		ASSERT_EQ(lw_sym_lookup(fs, outside[i], 0, &file), 1);
		ASSERT_EQ(file.flags, LW_SYM_UNKNOWN);
		ASSERT_STREQ(file.module, "");
	}
	lw_sym_lookup(fs, end - 1, 0, &file);
	ASSERT(file.flags & LW_SYM_MODULE);
	/* The first byte as a return address: the call would be before it. */
	lw_sym_lookup(fs, base, 1, &file);
	ASSERT_EQ(file.flags, LW_SYM_UNKNOWN);
	ASSERT_OK(lw_sym_refresh(fs));
	lw_sym_close(fs);

	/* What cannot be a mapping of a file. */
	ASSERT_EQ(
		lw_sym_open_file("/nonexistent/x", base, &fs, why, sizeof(why)),
		-ENOENT);
	ASSERT(fs == NULL);
	ASSERT(strstr(why, "/nonexistent/x") != NULL);
	ASSERT_EQ(lw_sym_open_file("/", base, &fs, why, sizeof(why)), -EINVAL);
	ASSERT(strstr(why, "not a regular file") != NULL);
	ASSERT_EQ(lw_sym_open_file(path, UINT64_MAX - 4096, &fs, why,
				   sizeof(why)),
		  -EINVAL);
	ASSERT(fs == NULL);
}

/* An ELF file with neither symbols nor DWARF, and next to it a NAME.debug
 * that is no ELF file: Dwfl looks for it twice (for DWARF, for symbols),
 * and the name of the first find must not leak (the ASan suite checks;
 * fuzz/corpus/elf/crash-leak-debug-name is the fuzzer's find). */
TEST(sym_file_bad_debug_file)
{
	char dir[] = "/tmp/lw-symdbg-XXXXXX", path[64], dbg[64], why[256];
	Elf64_Ehdr eh;
	lw_sym_frame_t f;
	lw_sym_t *s = NULL;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/lib.so", dir);
	snprintf(dbg, sizeof(dbg), "%s/lib.so.debug", dir);
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_DYN;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_ehsize = sizeof(eh);
	FILE *fp = fopen(path, "w");
	ASSERT(fp != NULL);
	ASSERT_EQ(fwrite(&eh, sizeof(eh), 1, fp), 1);
	ASSERT_OK(fclose(fp));
	fp = fopen(dbg, "w");
	ASSERT(fp != NULL);
	ASSERT_EQ(fwrite("\0\0", 2, 1, fp), 1);
	ASSERT_OK(fclose(fp));

	ASSERT_OK(lw_sym_open_file(path, 0x10000, &s, why, sizeof(why)));
	lw_sym_preload(s);
	ASSERT_EQ(lw_sym_lookup(s, 0x10010, 0, &f), 1);
	ASSERT_EQ(f.flags, LW_SYM_MODULE);
	ASSERT_STREQ(f.module, "lib.so");
	ASSERT_EQ(f.module_off, 0x10);
	lw_sym_close(s);
	ASSERT_OK(unlink(dbg));
	ASSERT_OK(unlink(path));
	ASSERT_OK(rmdir(dir));
}

/* ---- the perf-map parser ---- */

static lw_perfmap_t *pm_parse(const char *text)
{
	lw_perfmap_t *m = NULL;

	ASSERT_OK(lw_perfmap_parse(text, strlen(text), &m));
	ASSERT(m != NULL);
	return m;
}

/* The name at addr, or NULL. */
static const char *pm_name(const lw_perfmap_t *m, uint64_t addr)
{
	lw_perfmap_sym_t sym;

	return lw_perfmap_find(m, addr, &sym) ? sym.name : NULL;
}

/* The name at addr must be want (NULL: no entry covers addr). */
static void check_name(const lw_perfmap_t *m, uint64_t addr, const char *want,
		       int line)
{
	const char *got = pm_name(m, addr);
	int ok = want == NULL ? got == NULL
			      : got != NULL && strcmp(got, want) == 0;

	if (!ok)
		LWT_FAIL("line %d: at %#" PRIx64 ": got %s, want %s", line,
			 addr, got ? got : "(none)", want ? want : "(none)");
}

#define ASSERT_NAME(m, addr, want) check_name(m, addr, want, __LINE__)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

TEST(sym_perfmap_parser_edge_cases)
{
	lw_perfmap_t *m;
	lw_perfmap_sym_t sym;

	/* Empty, blank, NULL. */
	m = pm_parse("");
	ASSERT_EQ(lw_perfmap_entries(m), 0);
	ASSERT_EQ(lw_perfmap_skipped(m), 0);
	ASSERT_NAME(m, 0, NULL);
	lw_perfmap_free(m);
	m = pm_parse("\n\n  \r\n\t\n");
	ASSERT_EQ(lw_perfmap_entries(m), 0);
	ASSERT_EQ(lw_perfmap_skipped(m), 0);
	lw_perfmap_free(m);
	ASSERT_EQ(lw_perfmap_find(NULL, 1, &sym), 0);
	lw_perfmap_free(NULL);

	/* One entry: [start, start + size). */
	m = pm_parse("1000 10 foo\n");
	ASSERT_NAME(m, 0xfff, NULL);
	ASSERT_NAME(m, 0x1000, "foo");
	ASSERT_NAME(m, 0x100f, "foo");
	ASSERT_NAME(m, 0x1010, NULL);
	ASSERT_EQ(lw_perfmap_find(m, 0x1008, &sym), 1);
	ASSERT_EQ(sym.start, 0x1000);
	ASSERT_EQ(sym.size, 0x10);
	lw_perfmap_free(m);

	/* Huge sizes, overflow, too many digits, leading zeros, 0x. */
	m = pm_parse("0 ffffffffffffffff everything\n"
		     "1 ffffffffffffffff past_2^64\n"
		     "10000000000000000 10 seventeen_digits\n"
		     "ffffffffffffffff 1 at_the_top_past\n"
		     "0000000000000000000000a000 10 zeros\n"
		     "0xb000 0x10 prefixed\n"
		     "c000\t10\ttabbed name\n");
	ASSERT_EQ(lw_perfmap_entries(m), 4);
	ASSERT_EQ(lw_perfmap_skipped(m), 3);
	ASSERT_NAME(m, 0, "everything");
	ASSERT_NAME(m, UINT64_MAX - 1, "everything");
	ASSERT_NAME(m, UINT64_MAX, NULL);
	ASSERT_NAME(m, 0xa000, "zeros");
	ASSERT_NAME(m, 0xb00f, "prefixed");
	ASSERT_NAME(m, 0xc000, "tabbed name");
	/* The big one is still found around the later ones. */
	ASSERT_NAME(m, 0xa010, "everything");
	ASSERT_EQ(lw_perfmap_find(m, 0xa010, &sym), 1);
	ASSERT_EQ(sym.start, 0);
	lw_perfmap_free(m);

	/* Missing parts, size 0, garbage. */
	m = pm_parse("1000 10\n"
		     "1000 10   \t\r\n"
		     "1000\n"
		     "1000 \n"
		     "1000 0 empty\n"
		     "1000 zz name\n"
		     "1000x 10 name\n"
		     "-1000 10 name\n"
		     "g 10 name\n"
		     "2000 10 good\n");
	ASSERT_EQ(lw_perfmap_entries(m), 1);
	ASSERT_EQ(lw_perfmap_skipped(m), 9);
	ASSERT_NAME(m, 0x1000, NULL);
	ASSERT_NAME(m, 0x2000, "good");
	lw_perfmap_free(m);

	/* CRLF, trailing blanks, control characters, a NUL. */
	static const char ctl[] = "3000 10 crlf\r\n"
				  "4000 10 esc\x1b[31m red \t\n"
				  "5000 10 nul\0byte\n";
	ASSERT_OK(lw_perfmap_parse(ctl, sizeof(ctl) - 1, &m));
	ASSERT_NAME(m, 0x3000, "crlf");
	ASSERT_NAME(m, 0x4000, "esc?[31m red");
	ASSERT_NAME(m, 0x5000, "nul?byte");
	lw_perfmap_free(m);

	/* A last line without its newline may be half written. */
	m = pm_parse("1000 10 done\n2000 10 half_writ");
	ASSERT_NAME(m, 0x1000, "done");
	ASSERT_NAME(m, 0x2000, NULL);
	ASSERT_EQ(lw_perfmap_skipped(m), 1);
	lw_perfmap_free(m);

	/* Long lines: up to LW_PERFMAP_LINE_MAX is kept, longer skipped. */
	size_t big = 3 * LW_PERFMAP_LINE_MAX;
	char *text = malloc(big);
	ASSERT(text != NULL);
	const char *pre = "1000 10 ";
	size_t pl = strlen(pre);
	memcpy(text, pre, pl);
	memset(text + pl, 'a', LW_PERFMAP_LINE_MAX - pl);
	text[LW_PERFMAP_LINE_MAX] = '\n';
	ASSERT_OK(lw_perfmap_parse(text, LW_PERFMAP_LINE_MAX + 1, &m));
	ASSERT_EQ(lw_perfmap_entries(m), 1);
	ASSERT_EQ(strlen(pm_name(m, 0x1000)), LW_PERFMAP_LINE_MAX - pl);
	lw_perfmap_free(m);
	memset(text + pl, 'b', LW_PERFMAP_LINE_MAX + 1 - pl);
	text[LW_PERFMAP_LINE_MAX + 1] = '\n';
	memcpy(text + LW_PERFMAP_LINE_MAX + 2, "2000 10 after\n", 14);
	ASSERT_OK(lw_perfmap_parse(text, LW_PERFMAP_LINE_MAX + 16, &m));
	ASSERT_EQ(lw_perfmap_entries(m), 1);
	ASSERT_EQ(lw_perfmap_skipped(m), 1);
	ASSERT_NAME(m, 0x1000, NULL);
	ASSERT_NAME(m, 0x2000, "after");
	lw_perfmap_free(m);
	free(text);

	/* Duplicates and overlaps: the later line wins where it covers. */
	m = pm_parse("1000 100 old\n"
		     "1000 100 new\n"
		     "3000 100 outer\n"
		     "3040 10 inner\n"
		     "5040 10 inner_first\n"
		     "5000 100 outer_later\n"
		     "7000 100 a\n"
		     "7080 100 b\n");
	ASSERT_EQ(lw_perfmap_entries(m), 8);
	ASSERT_NAME(m, 0x1000, "new");
	ASSERT_NAME(m, 0x10ff, "new");
	ASSERT_NAME(m, 0x303f, "outer");
	ASSERT_NAME(m, 0x3045, "inner");
	ASSERT_EQ(lw_perfmap_find(m, 0x3050, &sym), 1);
	ASSERT_STREQ(sym.name, "outer");
	ASSERT_EQ(sym.start, 0x3000); /* offsets from the entry's start */
	ASSERT_NAME(m, 0x5045, "outer_later");
	ASSERT_NAME(m, 0x7010, "a");
	ASSERT_NAME(m, 0x7090, "b");
	ASSERT_NAME(m, 0x7170, "b");
	ASSERT_NAME(m, 0x7180, NULL);
	lw_perfmap_free(m);

	/* Many random overlapping entries against a plain scan: the last
	 * line that covers an address names it. */
	enum { N = 2000 };
	static uint64_t st[N], sz[N];
	size_t cap = (size_t)N * 64, len = 0;
	text = malloc(cap);
	ASSERT(text != NULL);
	for (int i = 0; i < N; i++) {
		st[i] = 0x10000 + rng() % 0x100000;
		sz[i] = 1 + rng() % (i % 10 == 0 ? 0x10000 : 0x200);
		len += (size_t)snprintf(text + len, cap - len,
					"%" PRIx64 " %" PRIx64 " f%d\n", st[i],
					sz[i], i);
	}
	ASSERT_OK(lw_perfmap_parse(text, len, &m));
	ASSERT_EQ(lw_perfmap_entries(m), N);
	for (int k = 0; k < 20000; k++) {
		uint64_t a = 0xf000 + rng() % 0x112000;
		int want = -1;
		for (int i = 0; i < N; i++)
			if (a >= st[i] && a - st[i] < sz[i])
				want = i;
		int got = lw_perfmap_find(m, a, &sym);
		ASSERT_EQ(got, want >= 0);
		if (want >= 0) {
			char w[16];
			snprintf(w, sizeof(w), "f%d", want);
			ASSERT_STREQ(sym.name, w);
			ASSERT_EQ(sym.start, st[want]);
			ASSERT_EQ(sym.size, sz[want]);
		}
	}
	lw_perfmap_free(m);
	free(text);

	/* The loader: no such file, a FIFO (no blocking), a symlink. */
	char dir[] = "/tmp/lw-pm-XXXXXX", p[64];
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(p, sizeof(p), "%s/none.map", dir);
	ASSERT_EQ(lw_perfmap_load(p, &m), -ENOENT);
	ASSERT(m == NULL);
	snprintf(p, sizeof(p), "%s/fifo.map", dir);
	ASSERT_OK(mkfifo(p, 0600));
	ASSERT_EQ(lw_perfmap_load(p, &m), -EINVAL);
	unlink(p);
	snprintf(p, sizeof(p), "%s/link.map", dir);
	ASSERT_OK(symlink("/etc/hostname", p));
	ASSERT_EQ(lw_perfmap_load(p, &m), -ELOOP);
	unlink(p);
	snprintf(p, sizeof(p), "%s/ok.map", dir);
	FILE *f = fopen(p, "w");
	ASSERT(f != NULL);
	fputs("1000 10 from_file\n", f);
	fclose(f);
	ASSERT_OK(lw_perfmap_load(p, &m));
	ASSERT_NAME(m, 0x1001, "from_file");
	lw_perfmap_free(m);
	unlink(p);
	rmdir(dir);
}
