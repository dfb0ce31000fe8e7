/*
 * perfmap.h - the parser of /tmp/perf-PID.map, the file through which JIT
 * compilers (V8, the JVM with perf-map-agent, LuaJIT, ...) name the code
 * they put into anonymous executable mappings.
 *
 * The format, as perf reads it: one entry per line,
 *
 *     START SIZE name of the symbol
 *
 * START and SIZE in hex without "0x" (a "0x" prefix is accepted too), the
 * name is the rest of the line.  The file is written by the target, so it
 * is hostile input: lines longer than LW_PERFMAP_LINE_MAX, numbers that do
 * not fit 64 bits, START + SIZE past 2^64, a SIZE of 0 and a missing name
 * are skipped (and counted), never fatal.  Control characters in names are
 * replaced by '?' so that a name cannot drive the terminal.
 *
 * JITs append to the file and reuse freed code memory, so entries may
 * overlap.  The rule is deterministic: a later line wins over an earlier one
 * wherever they overlap (it describes the code that was put there last).
 * The parsed map is a sorted array of disjoint ranges for binary search.
 */
#ifndef LW_PERFMAP_H
#define LW_PERFMAP_H

#include <stddef.h>
#include <stdint.h>

/* Lines longer than this (without the newline) are skipped whole. */
#define LW_PERFMAP_LINE_MAX 4096

/* The loader reads at most this many bytes: the end of a larger file, since
 * the latest lines win anyway. */
#define LW_PERFMAP_FILE_MAX (128u << 20)

typedef struct lw_perfmap lw_perfmap_t;

/* What a lookup finds: the entry's own range (not only the part of it that
 * no later entry covers) and its name, valid until lw_perfmap_free. */
typedef struct lw_perfmap_sym {
	uint64_t start; /* START of the line */
	uint64_t size; /* SIZE of the line */
	const char *name; /* NUL-terminated, control characters as '?' */
} lw_perfmap_sym_t;

/* Parse len bytes of perf-map text (no NUL needed).  0 with *out set (an
 * empty map is fine), or -ENOMEM. */
int lw_perfmap_parse(const char *buf, size_t len, lw_perfmap_t **out);

/* Read and parse a file (at most LW_PERFMAP_FILE_MAX bytes from its end).
 * 0, or a negative errno (-ENOENT: no such file). */
int lw_perfmap_load(const char *path, lw_perfmap_t **out);

/* The same from an open file (the caller checked whose it is). */
int lw_perfmap_load_fd(int fd, lw_perfmap_t **out);

/* The entry that covers addr: 1 with *sym filled, or 0. */
int lw_perfmap_find(const lw_perfmap_t *m, uint64_t addr,
		    lw_perfmap_sym_t *sym);

/* Entries kept (lines that parsed) and lines skipped as malformed. */
size_t lw_perfmap_entries(const lw_perfmap_t *m);
size_t lw_perfmap_skipped(const lw_perfmap_t *m);

/* Free a map; NULL does nothing. */
void lw_perfmap_free(lw_perfmap_t *m);

#endif /* LW_PERFMAP_H */
