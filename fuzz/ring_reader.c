/*
 * fuzz/ring_reader.c - libFuzzer target for the agent's ring reader.
 *
 * The input is a whole mapping: it is copied into an 8-byte-aligned buffer
 * of its own size and opened with lw_rr_open_mem.  If it opens, every
 * accessor runs, all records are read from the oldest, and every site is
 * copied.  Because total_size must equal the mapping's size, most mutations
 * would stop at that check; so an input that fails is tried once more with
 * total_size patched to the input's size, which lets the fuzzer reach the
 * checks and the reading behind it.  The same bytes also go through the
 * /proc/PID/stat parser.
 *
 *   make fuzz-build && build/fuzz/ring_reader fuzz/corpus/ring_reader
 */
#include "loopwatch_ring.h"
#include "proc.h"
#include "ring_reader.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void exercise(const lw_rr_ring_t *r)
{
	struct lw_ring_record out[37];
	lw_rr_cursor_t c;
	lw_rr_site_t s;
	lw_rr_current_t cur;
	lw_rr_counters_t cn;

	sink += (uint64_t)lw_rr_pid(r) + (uint64_t)lw_rr_tid(r) +
		strlen(lw_rr_name(r)) + lw_rr_capacity(r) +
		lw_rr_start_time(r) + lw_rr_flags(r) + lw_rr_clock(r) +
		lw_rr_created_ns(r) + lw_rr_site_capacity(r);
	lw_rr_counters(r, &cn);
	sink += cn.head + cn.busy_ns + cn.pool_oldest_fn;
	if (lw_rr_current(r, &cur) == 0 && cur.running)
		sink += cur.site + cur.kind + cur.start_ns;

	uint32_t n = lw_rr_nsites(r);
	if (n > lw_rr_site_capacity(r))
		abort();
	for (uint32_t id = 0; id <= n + 1; id++)
		if (lw_rr_site(r, id, &s) == 0)
			sink += s.fn + s.kind + strlen(s.name);

	lw_rr_cursor_init(r, &c, 1);
	/* A ring holds at most capacity - 1 readable records, and a
	 * mapping does not change under the fuzzer, so reading must end. */
	size_t total = 0, got;
	while ((got = lw_rr_read(r, &c, out, 37)) > 0) {
		for (size_t i = 0; i < got; i++)
			sink += out[i].duration_ns +
				strlen(lw_rr_kind_name(out[i].kind));
		total += got;
		if (total > lw_rr_capacity(r))
			abort();
	}
	lw_rr_cursor_init(r, &c, 0);
	if (lw_rr_read(r, &c, out, 37) != 0)
		abort(); /* nothing new after head in a still mapping */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	uint64_t st;
	char comm[16];
	lw_rr_ring_t *r;

	char state;
	lw_proc_parse_stat((const char *)data, size, &st, &state, comm,
			   sizeof(comm));
	if (size == 0)
		return 0;

	/* Exactly the input's size, so ASan sees any read past the end. */
	void *mem = NULL;
	if (posix_memalign(&mem, 64, size) != 0)
		return 0;
	uint8_t *map = mem;
	memcpy(map, data, size);
	for (int pass = 0; pass < 2; pass++) {
		if (lw_rr_open_mem(map, size, &r, why, sizeof(why)) == 0) {
			exercise(r);
			lw_rr_close(r);
			break;
		}
		if (strnlen(why, sizeof(why)) == 0)
			abort(); /* every failure says why */
		if (size < sizeof(struct lw_ring_header))
			break;
		uint64_t total = size;
		memcpy(map + offsetof(struct lw_ring_header, total_size),
		       &total, sizeof(total));
	}
	free(map);
	return 0;
}
