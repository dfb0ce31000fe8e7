/*
 * json.c - the streaming JSON writer of json.h.
 */
#include "json.h"
#include "text.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lw_json_init(lw_json_t *j, FILE *f, int pretty)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->pretty = pretty;
}

static void indent(lw_json_t *j)
{
	if (!j->pretty)
		return;
	fputc('\n', j->f);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

/* Before any value or key: the comma, and the indent. */
static void before(lw_json_t *j)
{
	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	if (j->depth > 0 && j->depth <= LW_JSON_DEPTH_MAX) {
		if (j->count[j->depth - 1])
			fputc(',', j->f);
		j->count[j->depth - 1] = 1;
	}
	if (j->depth > 0)
		indent(j);
}

static void open(lw_json_t *j, char c)
{
	before(j);
	fputc(c, j->f);
	if (j->depth < LW_JSON_DEPTH_MAX)
		j->count[j->depth] = 0;
	j->depth++;
}

static void close_(lw_json_t *j, char c)
{
	int had = j->depth > 0 && j->depth <= LW_JSON_DEPTH_MAX &&
		  j->count[j->depth - 1];
	if (j->depth > 0)
		j->depth--;
	if (had)
		indent(j);
	fputc(c, j->f);
}

void lw_json_obj(lw_json_t *j)
{
	open(j, '{');
}

void lw_json_obj_end(lw_json_t *j)
{
	close_(j, '}');
}

void lw_json_arr(lw_json_t *j)
{
	open(j, '[');
}

void lw_json_arr_end(lw_json_t *j)
{
	close_(j, ']');
}

void lw_json_escape(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned c = *s;
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc((int)c, f);
			s++;
		} else if (c == '\n') {
			fputs("\\n", f);
			s++;
		} else if (c == '\t') {
			fputs("\\t", f);
			s++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			s++;
		} else if (c < 0x80) {
			fputc((int)c, f);
			s++;
		} else {
			size_t n = lw_utf8_len(s);
			if (n == 0) {
				fputs("\xef\xbf\xbd", f); /* U+FFFD */
				s++;
			} else {
				fwrite(s, 1, n, f);
				s += n;
			}
		}
	}
}

void lw_json_key(lw_json_t *j, const char *key)
{
	before(j);
	fputc('"', j->f);
	lw_json_escape(j->f, key);
	fputs(j->pretty ? "\": " : "\":", j->f);
	j->after_key = 1;
}

void lw_json_str(lw_json_t *j, const char *s)
{
	if (s == NULL) {
		lw_json_null(j);
		return;
	}
	before(j);
	fputc('"', j->f);
	lw_json_escape(j->f, s);
	fputc('"', j->f);
}

void lw_json_u64(lw_json_t *j, uint64_t v)
{
	before(j);
	fprintf(j->f, "%" PRIu64, v);
}

void lw_json_i64(lw_json_t *j, int64_t v)
{
	before(j);
	fprintf(j->f, "%" PRId64, v);
}

void lw_json_num(lw_json_t *j, double v)
{
	if (!isfinite(v)) {
		lw_json_null(j);
		return;
	}
	before(j);
	/* Short where it can be: 0.25 and not 0.25000000000000000. */
	char buf[40];
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	fputs(buf, j->f);
}

void lw_json_bool(lw_json_t *j, int v)
{
	before(j);
	fputs(v ? "true" : "false", j->f);
}

void lw_json_null(lw_json_t *j)
{
	before(j);
	fputs("null", j->f);
}

void lw_json_strs(lw_json_t *j, const char *const *v, size_t n)
{
	lw_json_arr(j);
	for (size_t i = 0; i < n; i++)
		lw_json_str(j, v[i]);
	lw_json_arr_end(j);
}

void lw_json_kstr(lw_json_t *j, const char *key, const char *s)
{
	lw_json_key(j, key);
	lw_json_str(j, s);
}

void lw_json_ku64(lw_json_t *j, const char *key, uint64_t v)
{
	lw_json_key(j, key);
	lw_json_u64(j, v);
}

void lw_json_ki64(lw_json_t *j, const char *key, int64_t v)
{
	lw_json_key(j, key);
	lw_json_i64(j, v);
}

void lw_json_knum(lw_json_t *j, const char *key, double v)
{
	lw_json_key(j, key);
	lw_json_num(j, v);
}

void lw_json_kbool(lw_json_t *j, const char *key, int v)
{
	lw_json_key(j, key);
	lw_json_bool(j, v);
}

void lw_json_end(lw_json_t *j)
{
	fputc('\n', j->f);
	fflush(j->f);
}
