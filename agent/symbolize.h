/*
 * symbolize.h - name the user-space addresses of a live process: function,
 * file:line, or module+offset, through elfutils (libdw's Dwfl and libelf).
 *
 * What it covers:
 *   - the executable and its shared libraries as /proc/PID/maps lists them,
 *     with PIE and library load bias (Dwfl computes it per module);
 *   - files opened inside the target's root (/proc/PID/root, resolved with
 *     RESOLVE_IN_ROOT where the kernel has openat2), so processes in
 *     containers are named from their own files; a library deleted or
 *     replaced since it was mapped is read through /proc/PID/map_files;
 *   - separate debug files by build-id or .gnu_debuglink (Dwfl's standard
 *     search in /usr/lib/debug and the target's own /usr/lib/debug), used
 *     when present and never required;
 *   - file:line where DWARF exists;
 *   - JIT code in anonymous mappings, through /tmp/perf-PID.map in the
 *     target's root (PID as the target's own namespace sees it), if the
 *     file is owned by the target's user or root.
 *
 * An address is never dropped and a name is never invented: what cannot be
 * named is module+offset, or "[unknown]" with its address.
 *
 * Symbolize while the target is alive: its maps go when it exits.  One
 * lw_sym_t is not thread-safe (Dwfl is not); use one per thread or a lock.
 * Calls that can fail return 0 or a negative errno and, where they take
 * `why`, write a one-line reason into it.
 */
#ifndef LW_SYMBOLIZE_H
#define LW_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct lw_sym lw_sym_t; /* one process */

/* What a frame's fields hold. */
enum {
	LW_SYM_FUNC = 1 << 0, /* func and func_off are set */
	LW_SYM_LINE = 1 << 1, /* file and line are set */
	LW_SYM_PERFMAP = 1 << 2, /* func came from the perf map */
	LW_SYM_UNKNOWN = 1 << 3, /* in no file-backed module: module may name
				    the mapping ("[anon]", "[heap]", ...) or
				    be empty (in no mapping at all) */
	LW_SYM_MODULE = 1 << 4, /* module and module_off are set */
};

/* One symbolized address.  Strings are NUL-terminated, control characters
 * replaced by '?' (names come from the target's files). */
typedef struct lw_sym_frame {
	uint64_t addr; /* the address asked for, as it was asked */
	char func[256]; /* function (symbol table or perf map) */
	uint64_t func_off; /* addr - the function's start */
	/* The module's file name without its directory ("libc.so.6"), or the
	 * mapping's kind in brackets ("[anon]", "[vdso]", "[heap]"), or
	 * "perf-map" for a name from the perf map. */
	char module[256];
	/* For an ELF module: the address as the file sees it (what
	 * `addr2line -e FILE` takes); without the ELF: addr - the module's
	 * first mapping. */
	uint64_t module_off;
	/* Source file as DWARF names it; when too long, its last 255 bytes. */
	char file[256];
	int line;
	int flags; /* LW_SYM_* */
} lw_sym_frame_t;

/* Read pid's mappings, ready to look up.  -ESRCH if pid does not exist or
 * has exited, -EACCES without permission (root or the target's user with
 * ptrace access), -ENOENT if it has no user-space mappings (a kernel
 * thread), -ENOMEM. */
int lw_sym_open(pid_t pid, lw_sym_t **out, char *why, size_t whylen);

/* One ELF file that no process has mapped, named as if it were mapped
 * whole, in one mapping of its size rounded up to pages, at base (where
 * the dynamic loader would put its first page; for a non-PIE executable,
 * its link address).  From there on it is the live path: the mapping is
 * a line of the maps format that goes through the same report to Dwfl,
 * the file is opened and its debug files searched for (build-id,
 * .gnu_debuglink, next to it and in /usr/lib/debug) as for a module of a
 * process, and lw_sym_lookup answers the same way; an address outside
 * [base, base + size) is "[unknown]".  There is no perf map.  For tests,
 * the fuzz target of malformed ELF files (fuzz/elf.c), and addresses in
 * files that are not running.  -ENOENT, -EACCES, -EINVAL (not a regular
 * file, a newline in its path, or base + size past 2^64), -ENOMEM. */
int lw_sym_open_file(const char *path, uint64_t base, lw_sym_t **out, char *why,
		     size_t whylen);

/* Read the mappings again (libraries dlopen'd or closed since) and the
 * perf map if it changed.  0 or a negative errno (-ESRCH: gone).  For
 * lw_sym_open_file's, only forgets the addresses looked up. */
int lw_sym_refresh(lw_sym_t *s);

/* Name addr.  With is_return_addr (every frame of a stack but the first:
 * they are return addresses, the instruction after a call), the name and
 * the line are those of addr - 1, the call itself, while out->addr and the
 * offsets are still addr's.  Returns 0 when a function was found, 1 when
 * only a module or nothing was (out is filled either way). */
int lw_sym_lookup(lw_sym_t *s, uint64_t addr, int is_return_addr,
		  lw_sym_frame_t *out);

/* One line for a frame, without a newline:
 *   "handle_fsync+0x1c (blocky_server.c:123)"   function and line
 *   "write+0x17 [libc.so.6]"                     function, no line
 *   "jit_loop+0x8 [perf-map]"                   from the perf map
 *   "libc.so.6+0x10e8a3"                         module and offset only
 *   "[unknown] 0x7f3a12345678 [anon]"            in an anonymous mapping
 *   "[unknown] 0x1234"                           in no mapping at all */
void lw_sym_format(const lw_sym_frame_t *f, char *buf, size_t len);

/* Read every module's symbol table and debug information now, which
 * lw_sym_lookup would otherwise do at the first address in each: a
 * reader that must not pause later (the agent drains rings of a million
 * records a second) pays the load, tens of milliseconds for libc's
 * debug file, before it starts. */
void lw_sym_preload(lw_sym_t *s);

/* The elfutils Dwfl (struct Dwfl, from <elfutils/libdwfl.h>) that holds
 * s's modules, for the unwinder (unwind.c), which attaches its thread
 * callbacks to it so that the two share one reading of the process's
 * files.  Owned by s: valid until lw_sym_close; lw_sym_refresh keeps it. */
struct Dwfl *lw_sym_dwfl(lw_sym_t *s);

/* Free everything; NULL does nothing. */
void lw_sym_close(lw_sym_t *s);

#endif /* LW_SYMBOLIZE_H */
