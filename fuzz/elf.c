/*
 * fuzz/elf.c - libFuzzer target for the symbolization of malformed ELF
 * files (agent/symbolize.c over elfutils' libdwfl, libdw and libelf).
 *
 * The input is an ELF file, optionally followed by the marker "LW-DEBUG"
 * and a second file: the first is written to DIR/elf and the second, when
 * present, to DIR/elf.debug, where a .gnu_debuglink naming "elf.debug"
 * (as in the seed made that way) sends Dwfl's search for separate debug
 * information.  DIR is a folder of this process's own, removed at exit.
 *
 * The file is then symbolized the way the agent symbolizes one module of a
 * live process, through lw_sym_open_file, which reports it to Dwfl as one
 * line of a maps file at BASE and goes on from there as lw_sym_open does:
 * the same find_elf, debug-file search, lookup, cache and format.  Like
 * `loopwatch attach`, it preloads symbols and DWARF first.  Addresses are
 * looked up as plain and as return addresses: a grid over the mapping and
 * a little around it, the first symbols the module has (and one byte
 * either side), and the edges (0, 2^64 - 1).  Every frame must hold:
 *
 *   - the return code says whether a function was found, the address is
 *     the one asked for, no flag but LW_SYM_* and never LW_SYM_PERFMAP;
 *   - every string is NUL-terminated in its field and has no control
 *     characters; a function, a module or a file is named iff its flag
 *     says so, and a line number comes with a file;
 *   - inside the mapping the module is "elf"; outside it the frame is
 *     "[unknown]" with no module at all;
 *   - lw_sym_format's line, into any buffer size, is NUL-terminated, has
 *     no newline, and is a prefix of the line in a large buffer;
 *   - a second symbolizer of the same file, not preloaded, gives the same
 *     frames (preloading only moves work earlier).
 *
 *   make fuzz-build && build/fuzz/elf fuzz/corpus/elf
 *
 * fuzz/make_elf_seeds.sh made the seeds in fuzz/corpus/elf.
 */
#include "symbolize.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where a PIE's first page is put; a non-PIE executable built for the
 * usual x86-64 address finds itself at its link address. */
#define BASE 0x400000ull
#define PAGE 4096ull
#define MARKER "LW-DEBUG"
#define MAX_SYMS 64
#define MAX_PROBES 256

static char dir[PATH_MAX], elf_path[PATH_MAX], debug_path[PATH_MAX];

static void remove_dir(void)
{
	unlink(elf_path);
	unlink(debug_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	/* No debug information from the network (the agent's own rule,
	 * unless LOOPWATCH_DEBUGINFOD=1). */
	unsetenv("DEBUGINFOD_URLS");
	snprintf(dir, sizeof(dir), "%s/lw-fuzz-elf-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz/elf: mkdtemp");
		abort();
	}
	snprintf(elf_path, sizeof(elf_path), "%s/elf", dir);
	snprintf(debug_path, sizeof(debug_path), "%s/elf.debug", dir);
	atexit(remove_dir);
	return 0;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		abort();
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			abort();
		p += w;
		n -= (size_t)w;
	}
	close(fd);
}

static void check_str(const char *s, size_t cap)
{
	const char *nul = memchr(s, '\0', cap);

	if (nul == NULL)
		abort();
	for (; s < nul; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
}

static void check_format(const lw_sym_frame_t *f)
{
	static const size_t lens[] = { 1, 2, 7, 16, 33, 100 };
	char full[1024], small[128];

	memset(full, 0x55, sizeof(full));
	lw_sym_format(f, full, sizeof(full));
	check_str(full, sizeof(full));
	size_t n = strlen(full);
	if (n == 0 || n >= sizeof(full) - 1)
		abort();
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(small, 0x55, sizeof(small));
		lw_sym_format(f, small, lens[i]);
		if (memchr(small, '\0', lens[i]) == NULL)
			abort();
		if (strncmp(small, full, strlen(small)) != 0)
			abort();
		if (small[lens[i]] != 0x55) /* nothing written past len */
			abort();
	}
	small[0] = 0x55;
	lw_sym_format(f, small, 0);
	if (small[0] != 0x55)
		abort();
}

static void check_frame(const lw_sym_frame_t *f, int rc, uint64_t addr,
			int is_ret, uint64_t end)
{
	const int known = LW_SYM_FUNC | LW_SYM_LINE | LW_SYM_PERFMAP |
			  LW_SYM_UNKNOWN | LW_SYM_MODULE;
	uint64_t at = is_ret && addr > 0 ? addr - 1 : addr;
	int inside = at >= BASE && at < end;

	check_str(f->func, sizeof(f->func));
	check_str(f->module, sizeof(f->module));
	check_str(f->file, sizeof(f->file));
	if (f->addr != addr || (f->flags & ~known) != 0 ||
	    (f->flags & LW_SYM_PERFMAP) != 0)
		abort();
	if (rc != ((f->flags & LW_SYM_FUNC) ? 0 : 1))
		abort();
	if (((f->flags & LW_SYM_FUNC) != 0) != (f->func[0] != '\0'))
		abort();
	if (!(f->flags & LW_SYM_FUNC) && f->func_off != 0)
		abort();
	if (((f->flags & LW_SYM_LINE) != 0) != (f->file[0] != '\0') ||
	    ((f->flags & LW_SYM_LINE) != 0) != (f->line > 0))
		abort();
	/* One module, the file's; outside it no mapping at all. */
	if (inside) {
		if (f->flags != (f->flags &
				 (LW_SYM_MODULE | LW_SYM_FUNC | LW_SYM_LINE)) ||
		    !(f->flags & LW_SYM_MODULE) ||
		    strcmp(f->module, "elf") != 0)
			abort();
	} else if (f->flags != LW_SYM_UNKNOWN || f->module[0] != '\0' ||
		   f->module_off != 0) {
		abort();
	}
	check_format(f);
}

/* The module's first symbols, where functions and lines are. */
static size_t symbol_addrs(lw_sym_t *s, uint64_t *out, size_t max)
{
	Dwfl_Module *mod = dwfl_addrmodule(lw_sym_dwfl(s), BASE);
	size_t n = 0;

	if (mod == NULL)
		return 0;
	int nsyms = dwfl_module_getsymtab(mod);
	for (int i = 0; i < nsyms && n < max; i++) {
		GElf_Sym sym;
		GElf_Addr addr = 0;
		if (dwfl_module_getsym_info(mod, i, &sym, &addr, NULL, NULL,
					    NULL) != NULL &&
		    addr != 0)
			out[n++] = addr;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *mark = memmem(data, size, MARKER, sizeof(MARKER) - 1);
	size_t main_len = mark != NULL ? (size_t)(mark - data) : size;
	uint64_t probes[MAX_PROBES], syms[MAX_SYMS];
	lw_sym_t *s = NULL, *s2 = NULL;
	char why[512];
	size_t n = 0;

	write_file(elf_path, data, main_len);
	if (mark != NULL) {
		size_t off = main_len + sizeof(MARKER) - 1;
		write_file(debug_path, data + off, size - off);
	} else {
		unlink(debug_path);
	}

	why[0] = '\0';
	if (lw_sym_open_file(elf_path, BASE, &s, why, sizeof(why)) != 0 ||
	    lw_sym_open_file(elf_path, BASE, &s2, why, sizeof(why)) != 0) {
		/* The file is there and ours: only memory can fail. */
		fprintf(stderr, "fuzz/elf: %s\n", why);
		abort();
	}
	lw_sym_preload(s);

	/* The mapping lw_sym_open_file makes: the file's pages. */
	uint64_t span = ((uint64_t)main_len + PAGE - 1) & ~(PAGE - 1);
	uint64_t end = BASE + (span ? span : PAGE);

	probes[n++] = 0;
	probes[n++] = 1;
	probes[n++] = UINT64_MAX;
	probes[n++] = BASE - 1;
	probes[n++] = end + PAGE;
	for (uint64_t k = 0; k <= 32; k++) {
		uint64_t a = BASE + (end - BASE) * k / 32;
		probes[n++] = a;
		probes[n++] = a + 1;
	}
	size_t ns = symbol_addrs(s, syms, MAX_SYMS);
	for (size_t i = 0; i < ns && n + 3 <= MAX_PROBES; i++) {
		probes[n++] = syms[i];
		probes[n++] = syms[i] + 1;
		probes[n++] = syms[i] - 1;
	}

	for (size_t i = 0; i < n; i++) {
		for (int ret = 0; ret < 2; ret++) {
			lw_sym_frame_t f, g;
			int rc = lw_sym_lookup(s, probes[i], ret, &f);
			check_frame(&f, rc, probes[i], ret, end);
			int rc2 = lw_sym_lookup(s2, probes[i], ret, &g);
			if (rc2 != rc || memcmp(&f, &g, sizeof(f)) != 0)
				abort();
		}
	}
	/* Forgetting the cache changes no answer. */
	if (lw_sym_refresh(s) != 0)
		abort();
	for (size_t i = 0; i < n; i += 7) {
		lw_sym_frame_t f, g;
		lw_sym_lookup(s, probes[i], 1, &f);
		lw_sym_lookup(s2, probes[i], 1, &g);
		if (memcmp(&f, &g, sizeof(f)) != 0)
			abort();
	}
	lw_sym_close(s);
	lw_sym_close(s2);
	return 0;
}
