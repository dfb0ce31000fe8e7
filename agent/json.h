/*
 * json.h - a small streaming JSON writer for the agent's machine-readable
 * output (`--json`, `check --json`, `report --trace`): it places the commas
 * and escapes strings, so a caller only says what comes next.
 *
 * Strings from the target (site names, paths, symbols) are untrusted: they
 * are escaped as JSON requires (", \, control characters) and any byte
 * sequence that is not valid UTF-8 is written as U+FFFD, so the output is
 * always valid JSON in UTF-8 whatever the input.  Numbers that JSON cannot
 * hold (NaN, infinities) are written as null.
 *
 * Misuse (a value where a key is due, closing more than was opened) is a
 * bug of the caller, not of the input; it is not checked beyond a depth
 * bound.
 */
#ifndef LW_JSON_H
#define LW_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LW_JSON_DEPTH_MAX 32

typedef struct lw_json {
	FILE *f;
	int pretty; /* newlines and two-space indents */
	int depth;
	int after_key; /* a key was written: the next value needs no comma */
	uint8_t count[LW_JSON_DEPTH_MAX]; /* values at each depth, capped 1 */
} lw_json_t;

/* Start writing to f (compact with pretty 0: one line, as for streams). */
void lw_json_init(lw_json_t *j, FILE *f, int pretty);

void lw_json_obj(lw_json_t *j); /* { */
void lw_json_obj_end(lw_json_t *j); /* } */
void lw_json_arr(lw_json_t *j); /* [ */
void lw_json_arr_end(lw_json_t *j); /* ] */

/* A key inside an object; its value is the next call. */
void lw_json_key(lw_json_t *j, const char *key);

void lw_json_str(lw_json_t *j, const char *s); /* NULL: null */
void lw_json_u64(lw_json_t *j, uint64_t v);
void lw_json_i64(lw_json_t *j, int64_t v);
void lw_json_num(lw_json_t *j, double v); /* %.17g trimmed; NaN: null */
void lw_json_bool(lw_json_t *j, int v);
void lw_json_null(lw_json_t *j);
/* An array of n strings (a stack's frames). */
void lw_json_strs(lw_json_t *j, const char *const *v, size_t n);

/* Key and value at once. */
void lw_json_kstr(lw_json_t *j, const char *key, const char *s);
void lw_json_ku64(lw_json_t *j, const char *key, uint64_t v);
void lw_json_ki64(lw_json_t *j, const char *key, int64_t v);
void lw_json_knum(lw_json_t *j, const char *key, double v);
void lw_json_kbool(lw_json_t *j, const char *key, int v);

/* Write s as a JSON string body (no quotes) to f: escaped, invalid UTF-8
 * as U+FFFD.  For the tests and for writers that build strings. */
void lw_json_escape(FILE *f, const char *s);

/* End the document: a newline after the last closing bracket. */
void lw_json_end(lw_json_t *j);

#endif /* LW_JSON_H */
