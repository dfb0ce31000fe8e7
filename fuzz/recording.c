/*
 * fuzz/recording.c - libFuzzer target for the recording reader
 * (agent/recording.c).
 *
 * The input is a recording file.  It is read item by item to the end or
 * the first error, and each item is checked: strings are NUL-terminated
 * within LW_REC_STR_MAX bytes, a stack has at most LW_REC_FRAMES_MAX
 * frames, offsets grow and lie inside the input, the header comes first
 * and only once.  An error must name an offset inside the input, in its
 * message too.  Then every item read is written again with the writer and
 * the copy read back: it must give the same items (a round trip through
 * whatever the fuzzer found readable).
 *
 * A mutation almost always breaks a CRC, and the reader stops at the first
 * bad one, before the payload's fields: so the same checks run once more
 * on a copy whose CRCs (the preamble's and every whole frame's) are made
 * right, which takes the fuzzer into the fields behind them.
 *
 *   make fuzz-build && build/fuzz/recording fuzz/corpus/recording
 *
 * It needs only recording.c; built alone:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iagent -Iinclude \
 *       fuzz/recording.c agent/recording.c
 */
#include "recording.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s)
{
	if (s == NULL || strnlen(s, LW_REC_STR_MAX + 1) > LW_REC_STR_MAX)
		abort();
}

static void check_item(const lw_rec_item_t *it)
{
	switch (it->type) {
	case LW_REC_HEADER:
		check_str(it->u.header.version);
		check_str(it->u.header.comm);
		check_str(it->u.header.hostname);
		check_str(it->u.header.rings_why);
		check_str(it->u.header.kprobes_why);
		break;
	case LW_REC_LOOP:
		check_str(it->u.loop.name);
		break;
	case LW_REC_SITE:
		check_str(it->u.site.name);
		check_str(it->u.site.func);
		break;
	case LW_REC_KEVENT:
		check_str(it->u.kevent.syscall);
		check_str(it->u.kevent.fd_path);
		if (it->u.kevent.nframes > LW_REC_FRAMES_MAX)
			abort();
		for (uint32_t i = 0; i < it->u.kevent.nframes; i++)
			check_str(it->u.kevent.frames[i]);
		break;
	case LW_REC_BLOCKING:
		check_str(it->u.blocking.syscall);
		if (it->u.blocking.nframes > LW_REC_FRAMES_MAX)
			abort();
		for (uint32_t i = 0; i < it->u.blocking.nframes; i++)
			check_str(it->u.blocking.frames[i]);
		break;
	case LW_REC_FATE:
		check_str(it->u.fate.line);
		if (it->u.fate.end < LW_REC_FATE_EXITED ||
		    it->u.fate.end > LW_REC_FATE_REUSED)
			abort();
		break;
	case LW_REC_CALLBACK:
	case LW_REC_COUNTERS:
	case LW_REC_END:
		break;
	default:
		abort(); /* unknown types are skipped, never returned */
	}
}

/* The fields that survive a round trip, compared field by field for the
 * fixed-size kinds (their structs hold pointers only in the others). */
static void same(const lw_rec_item_t *a, const lw_rec_item_t *b)
{
	if (a->type != b->type)
		abort();
	switch (a->type) {
	case LW_REC_CALLBACK:
		if (memcmp(&a->u.callback, &b->u.callback,
			   sizeof(a->u.callback)) != 0)
			abort();
		break;
	case LW_REC_LOOP:
		if (a->u.loop.id != b->u.loop.id ||
		    strcmp(a->u.loop.name, b->u.loop.name) != 0)
			abort();
		break;
	case LW_REC_SITE:
		if (a->u.site.fn != b->u.site.fn ||
		    strcmp(a->u.site.func, b->u.site.func) != 0)
			abort();
		break;
	case LW_REC_KEVENT:
		if (a->u.kevent.nframes != b->u.kevent.nframes ||
		    a->u.kevent.ret != b->u.kevent.ret ||
		    strcmp(a->u.kevent.fd_path, b->u.kevent.fd_path) != 0)
			abort();
		for (uint32_t i = 0; i < a->u.kevent.nframes; i++)
			if (strcmp(a->u.kevent.frames[i],
				   b->u.kevent.frames[i]) != 0)
				abort();
		break;
	case LW_REC_COUNTERS:
		if (a->u.counters.busy_ns != b->u.counters.busy_ns)
			abort();
		break;
	case LW_REC_FATE:
		if (a->u.fate.end != b->u.fate.end ||
		    a->u.fate.flags != b->u.fate.flags ||
		    a->u.fate.seen_ns != b->u.fate.seen_ns ||
		    strcmp(a->u.fate.line, b->u.fate.line) != 0)
			abort();
		break;
	case LW_REC_BLOCKING:
		if (a->u.blocking.loop_id != b->u.blocking.loop_id ||
		    a->u.blocking.site_id != b->u.blocking.site_id ||
		    a->u.blocking.nr != b->u.blocking.nr ||
		    a->u.blocking.fd_kind != b->u.blocking.fd_kind ||
		    a->u.blocking.calls != b->u.blocking.calls ||
		    a->u.blocking.total_ns != b->u.blocking.total_ns ||
		    a->u.blocking.max_ns != b->u.blocking.max_ns ||
		    a->u.blocking.nframes != b->u.blocking.nframes ||
		    strcmp(a->u.blocking.syscall, b->u.blocking.syscall) != 0)
			abort();
		for (uint32_t i = 0; i < a->u.blocking.nframes; i++)
			if (strcmp(a->u.blocking.frames[i],
				   b->u.blocking.frames[i]) != 0)
				abort();
		break;
	default:
		break;
	}
}

static void check_recording(const uint8_t *data, size_t size)
{
	char why[256];
	lw_rec_item_t it, it2;
	lw_rec_reader_t *r =
		lw_rec_reader_open_mem(data, size, why, sizeof(why));
	uint64_t last = 0;
	int ret, n = 0;

	if (r == NULL) {
		if (why[0] == '\0' || strstr(why, "offset") == NULL) {
			if (strstr(why, "empty file") == NULL || size != 0)
				abort();
		}
		return;
	}

	/* The copy goes into a memfd, which the second reader reads. */
	int fd = memfd_create("lwrec-fuzz", MFD_CLOEXEC);
	lw_rec_writer_t *w = NULL;
	while ((ret = lw_rec_next(r, &it)) == 1) {
		if (it.offset < LW_REC_PREAMBLE_LEN || it.offset >= size ||
		    (n > 0 && it.offset <= last))
			abort();
		if ((n == 0) != (it.type == LW_REC_HEADER))
			abort();
		check_item(&it);
		last = it.offset;
		if (n == 0 && fd >= 0)
			w = lw_rec_open_fd(dup(fd), &it.u.header, 0, NULL, 0);
		else if (w != NULL && it.type != LW_REC_END)
			lw_rec_write_item(w, &it); /* the header went at open */
		n++;
	}
	if (ret == -1) {
		char want[40];
		uint64_t off = lw_rec_reader_error_offset(r);
		if (off > size || lw_rec_reader_error(r) == LW_REC_OK)
			abort();
		snprintf(want, sizeof(want), "offset %llu",
			 (unsigned long long)off);
		if (strstr(lw_rec_reader_why(r), want) == NULL)
			abort();
		if (lw_rec_next(r, &it) != -1) /* errors are sticky */
			abort();
	}
	lw_rec_close(w, NULL, NULL, 0);
	lw_rec_reader_close(r);
	if (fd < 0 || w == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}

	/* Read both again side by side: the copy has the same items (no end
	 * record: the copy is cut where the writer stopped). */
	off_t len = lseek(fd, 0, SEEK_END);
	uint8_t *copy = malloc(len > 0 ? (size_t)len : 1);
	if (copy == NULL || pread(fd, copy, (size_t)len, 0) != len)
		abort();
	close(fd);
	r = lw_rec_reader_open_mem(data, size, why, sizeof(why));
	lw_rec_reader_t *r2 =
		lw_rec_reader_open_mem(copy, (size_t)len, why, sizeof(why));
	if (r == NULL || r2 == NULL)
		abort();
	while (lw_rec_next(r, &it) == 1) {
		if (it.type == LW_REC_END)
			break;
		if (lw_rec_next(r2, &it2) != 1)
			abort();
		same(&it, &it2);
	}
	if (lw_rec_next(r2, &it2) != -1 ||
	    lw_rec_reader_error(r2) != LW_REC_E_CUT)
		abort();
	lw_rec_reader_close(r);
	lw_rec_reader_close(r2);
	free(copy);
}

/* Put right the CRC of the preamble and of every frame that lies whole in
 * buf; 1 if anything changed. */
static int fix_crcs(uint8_t *buf, size_t size)
{
	uint32_t crc;
	size_t o = LW_REC_PREAMBLE_LEN;
	int changed = 0;

	if (size < LW_REC_PREAMBLE_LEN)
		return 0;
	crc = lw_rec_crc32(0, buf, 12);
	if (memcmp(buf + 12, &crc, 4) != 0) {
		memcpy(buf + 12, &crc, 4); /* little-endian, as the host */
		changed = 1;
	}
	while (size - o >= LW_REC_FRAME_LEN + LW_REC_CRC_LEN) {
		uint32_t len;
		memcpy(&len, buf + o + 4, 4);
		if (len > size - o - LW_REC_FRAME_LEN - LW_REC_CRC_LEN)
			break;
		size_t at = o + LW_REC_FRAME_LEN + len;
		crc = lw_rec_crc32(0, buf + o, at - o);
		if (memcmp(buf + at, &crc, 4) != 0) {
			memcpy(buf + at, &crc, 4);
			changed = 1;
		}
		o = at + LW_REC_CRC_LEN;
	}
	return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_recording(data, size);
	/* Exactly the input's size, so ASan sees any read past the end. */
	uint8_t *fixed = malloc(size ? size : 1);
	if (fixed == NULL)
		return 0;
	memcpy(fixed, data, size);
	if (fix_crcs(fixed, size))
		check_recording(fixed, size);
	free(fixed);
	return 0;
}
