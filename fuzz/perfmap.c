/*
 * fuzz/perfmap.c - libFuzzer target for the perf-map parser
 * (agent/perfmap.c).
 *
 * The input is the text of a /tmp/perf-PID.map.  It is parsed, then looked
 * up around every address the input mentions (each line's first word, and
 * one either side): whatever is found must cover the address, have a size
 * that does not run past 2^64, and a non-empty name without control
 * characters.  (tests/test_symbolize.c checks the overlap rule against a
 * plain scan.)
 *
 *   make fuzz-build && build/fuzz/perfmap fuzz/corpus/perfmap
 *
 * It needs only perfmap.c; built alone:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iagent \
 *       fuzz/perfmap.c agent/perfmap.c
 */
#include "perfmap.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *name)
{
	if (name == NULL || name[0] == '\0')
		abort();
	for (const char *p = name; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lw_perfmap_t *m = NULL;
	lw_perfmap_sym_t sym;

	if (lw_perfmap_parse((const char *)data, size, &m) != 0)
		return 0;
	if (m == NULL)
		abort();

	/* Probe the addresses the input mentions: each line's START, its
	 * end, and one before it. */
	const char *p = (const char *)data, *end = p + size;
	size_t probes = 0;
	while (p < end && probes < 4096) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		char num[40];
		size_t n = 0;
		const char *q = p;
		while (q < le && (*q == ' ' || *q == '\t'))
			q++;
		while (q < le && n + 1 < sizeof(num) && *q != ' ' && *q != '\t')
			num[n++] = *q++;
		num[n] = '\0';
		uint64_t a = strtoull(num, NULL, 16);
		uint64_t probe[3] = { a, a - 1, a + 1 };
		for (int i = 0; i < 3; i++) {
			if (lw_perfmap_find(m, probe[i], &sym)) {
				check_name(sym.name);
				/* The entry found covers the address. */
				if (probe[i] < sym.start ||
				    probe[i] - sym.start >= sym.size)
					abort();
				if (sym.size == 0 ||
				    sym.start > UINT64_MAX - sym.size)
					abort();
			}
		}
		probes++;
		p = nl ? nl + 1 : end;
	}
	if (lw_perfmap_entries(m) == 0 &&
	    (lw_perfmap_find(m, 0, &sym) || lw_perfmap_find(m, ~0ull, &sym)))
		abort();
	lw_perfmap_free(m);
	return 0;
}
