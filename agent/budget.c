/*
 * budget.c - the budget file, flags, and the lookups (see budget.h and
 * docs/budgets.md).
 *
 * A text is parsed one line at a time into the budget directly, with what
 * is needed to undo it: defaults go to a pending array that is applied only
 * when the whole text parsed, and site and allow lines are appended to
 * their arrays and cut off again on an error.  So a bad file leaves the
 * budget as it was, and the error names only the first problem.
 */
#include "budget.h"
#include "duration.h"
#include "why.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum key {
	K_CALLBACK_MAX,
	K_SITE_P99,
	K_SYSCALL_MAX,
	K_LAG_P99,
	K_UTIL_MAX,
	K_NDEF, /* the keys above are defaults, one value each */
	K_SITE = K_NDEF,
	K_ALLOW,
	K_NKEYS
};

static const char *const key_names[K_NKEYS] = {
	"callback.max",	   "site.p99", "syscall.max", "lag.p99",
	"utilization.max", "site",     "allow",
};

/* A default: a duration in ns, or parts per million for utilization;
 * LW_BUDGET_NONE when nothing set it or it is "off". */
struct def {
	uint64_t v;
	char *from; /* "FILE:LINE" or "flag KEY"; NULL when never set */
	int by_flag; /* set by a flag: files no longer replace it */
};

struct site_rule {
	char *glob;
	char *from;
	uint64_t max_ns, p99_ns;
	unsigned char has_max, has_p99, by_flag;
};

struct allow_rule {
	char *sys; /* a syscall name, or "*" for any */
	char *glob; /* the sites, or NULL for every site */
	char *from;
	unsigned char by_flag;
};

struct lw_budget {
	struct def def[K_NDEF];
	struct site_rule *sites;
	size_t nsites, capsites;
	struct allow_rule *allows;
	size_t nallows, capallows;
};

/* The state of one line being parsed. */
struct pctx {
	const char *s; /* the line, without its newline or trailing CR */
	size_t len, pos;
	size_t errcol; /* 1-based column of the problem */
	char msg[320];
	int by_flag;
	const char *name; /* the file's name, or "flag" */
	size_t lineno;
};

/* A default a text sets, applied once the whole text parsed. */
struct pending {
	uint64_t v;
	int set; /* set by this text */
	size_t lineno; /* where (0 for a flag) */
};

/* --- Globs ------------------------------------------------------------ */

/*
 * A bracket expression at p (just past the '['), matched against c.  The
 * match (1 or 0) with *next just past the closing ']', or -1 if there is
 * no closing ']' (then fnmatch takes the '[' as a literal).  As in glibc
 * without flags: '!' or '^' first negates, a ']' first is literal, '\'
 * escapes, "a-z" is a range of bytes and a '-' first or last is literal.
 */
static int bracket(const char *p, unsigned char c, const char **next)
{
	int neg = 0, hit = 0, first = 1;

	if (*p == '!' || *p == '^') {
		neg = 1;
		p++;
	}
	for (;;) {
		unsigned char lo, hi;

		if (*p == '\0')
			return -1;
		if (*p == ']' && !first)
			break;
		first = 0;
		if (*p == '\\') {
			p++;
			if (*p == '\0')
				return -1;
		}
		lo = (unsigned char)*p++;
		hi = lo;
		if (p[0] == '-' && p[1] != ']' && p[1] != '\0') {
			p++;
			if (*p == '\\') {
				p++;
				if (*p == '\0')
					return -1;
			}
			hi = (unsigned char)*p++;
		}
		if (c >= lo && c <= hi)
			hit = 1;
	}
	*next = p + 1;
	return hit != neg;
}

/*
 * The pattern's first item matched against c: 1 or 0, with *next past the
 * item.  Items are a literal byte, '\' and a byte, '?', or a bracket.
 */
static int item(const char *p, unsigned char c, const char **next)
{
	if (*p == '?') {
		*next = p + 1;
		return 1;
	}
	if (*p == '[') {
		int r = bracket(p + 1, c, next);
		if (r >= 0)
			return r;
		*next = p + 1;
		return c == '[';
	}
	if (*p == '\\') {
		/* A trailing '\' matches nothing, as in glibc. */
		if (p[1] == '\0') {
			*next = p + 1;
			return 0;
		}
		p++;
	}
	*next = p + 1;
	return (unsigned char)*p == c;
}

/*
 * The classic greedy match with one back-tracking point: when an item
 * fails, the last '*' takes one more byte and matching resumes after it.
 * Every item consumes exactly one byte, so this is fnmatch's answer in
 * O(|pattern| * |s|), with no recursion for a hostile glob to exploit.
 */
int lw_budget_glob_match(const char *pattern, const char *s)
{
	const char *p = pattern, *star_p = NULL, *star_s = NULL;

	for (;;) {
		const char *next;

		if (*p == '*') {
			while (*p == '*')
				p++;
			star_p = p;
			star_s = s;
			continue;
		}
		if (*s == '\0') {
			if (*p == '\0')
				return 1;
		} else if (*p != '\0' && item(p, (unsigned char)*s, &next)) {
			p = next;
			s++;
			continue;
		}
		if (star_p == NULL || *star_s == '\0')
			return 0;
		star_s++;
		s = star_s;
		p = star_p;
	}
}

/*
 * Globs the file may hold: one whose meaning is clear.  0, or -1 with msg
 * and *col (0-based in the glob) set.  Rejected: a trailing '\' (it matches
 * nothing), a '[' without its ']' (fnmatch takes it as a literal, which is
 * rarely what was meant), and classes like [:alpha:] that the matcher does
 * not implement.
 */
static int glob_check(const char *g, size_t *col, char *msg, size_t msglen)
{
	for (size_t i = 0; g[i] != '\0'; i++) {
		if (g[i] == '\\') {
			if (g[i + 1] == '\0') {
				*col = i;
				snprintf(msg, msglen,
					 "glob ends in a lone '\\' (write "
					 "\\\\\\\\ for a literal \\)");
				return -1;
			}
			i++;
			continue;
		}
		if (g[i] != '[')
			continue;
		size_t j = i + 1;
		if (g[j] == '!' || g[j] == '^')
			j++;
		if (g[j] == ']')
			j++;
		for (; g[j] != ']'; j++) {
			if (g[j] == '\0') {
				*col = i;
				snprintf(msg, msglen,
					 "'[' without a closing ']' in glob "
					 "(write \\\\[ for a literal [)");
				return -1;
			}
			if (g[j] == '[' &&
			    (g[j + 1] == ':' || g[j + 1] == '.' ||
			     g[j + 1] == '=')) {
				*col = j;
				snprintf(msg, msglen,
					 "character classes like [:alpha:] "
					 "are not supported in globs (list "
					 "the characters: [a-zA-Z])");
				return -1;
			}
			if (g[j] == '\\' && g[j + 1] != '\0')
				j++;
		}
		i = j;
	}
	return 0;
}

/* --- Small helpers ---------------------------------------------------- */

static char *xstrndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static char *fmt_from(const char *name, size_t lineno)
{
	char buf[64];
	size_t n = strlen(name);
	char *d = malloc(n + sizeof(buf));

	if (d == NULL)
		return NULL;
	if (lineno == 0)
		snprintf(d, n + sizeof(buf), "%s", name);
	else
		snprintf(d, n + sizeof(buf), "%s:%zu", name, lineno);
	return d;
}

static int fail(struct pctx *pc, size_t pos, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct pctx *pc, size_t pos, const char *fmt, ...)
{
	va_list ap;

	pc->errcol = pos + 1;
	va_start(ap, fmt);
	vsnprintf(pc->msg, sizeof(pc->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void skip_blanks(struct pctx *pc)
{
	while (pc->pos < pc->len && is_blank(pc->s[pc->pos]))
		pc->pos++;
}

/* Past the blanks: nothing left but a comment. */
static int at_end(struct pctx *pc)
{
	skip_blanks(pc);
	return pc->pos >= pc->len || pc->s[pc->pos] == '#';
}

/* The next bare word: it ends at a blank, a '#' or a '"'.  Its length (0
 * at the end of the line), *start set. */
static size_t word(struct pctx *pc, size_t *start)
{
	skip_blanks(pc);
	*start = pc->pos;
	while (pc->pos < pc->len && !is_blank(pc->s[pc->pos]) &&
	       pc->s[pc->pos] != '#' && pc->s[pc->pos] != '"')
		pc->pos++;
	return pc->pos - *start;
}

/* Levenshtein distance of two short strings (at most 32 bytes each). */
static size_t distance(const char *a, size_t la, const char *b, size_t lb)
{
	size_t row[33];

	if (la > 32 || lb > 32)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static int trailing(struct pctx *pc, const char *what)
{
	size_t start, n;
	char q[64];

	if (at_end(pc))
		return 0;
	start = pc->pos;
	n = word(pc, &start);
	if (n == 0)
		n = 1; /* a stray '"' */
	lw_why_quote(pc->s + start, n, q, sizeof(q));
	return fail(pc, start,
		    "unexpected '%s' after %s (a comment starts with #)", q,
		    what);
}

/* A duration or "off"/"none" for a value of key. */
static int value_duration(struct pctx *pc, const char *key, uint64_t *out)
{
	size_t start, n = word(pc, &start);
	char why[256];

	if (n == 0)
		return fail(pc, start,
			    "'%s' needs a duration (like 50ms, or off)", key);
	if ((n == 3 && memcmp(pc->s + start, "off", 3) == 0) ||
	    (n == 4 && memcmp(pc->s + start, "none", 4) == 0)) {
		*out = LW_BUDGET_NONE;
		return 0;
	}
	if (lw_duration_parse(pc->s + start, n, out, why, sizeof(why)) != 0)
		return fail(pc, start, "%s: %s", key, why);
	return 0;
}

/* A percentage "80%", "99.5%" (up to 4 decimals kept, the rest rounded
 * down), 0% to 100%, in parts per million; or "off". */
static int value_percent(struct pctx *pc, const char *key, uint64_t *out)
{
	size_t start, n = word(pc, &start), i = 0;
	const char *t = pc->s + start;
	uint64_t whole = 0, frac = 0, scale = 10000;
	char q[64];

	if (n == 0)
		return fail(pc, start,
			    "'%s' needs a percentage (like 80%%, or off)", key);
	if ((n == 3 && memcmp(t, "off", 3) == 0) ||
	    (n == 4 && memcmp(t, "none", 4) == 0)) {
		*out = LW_BUDGET_NONE;
		return 0;
	}
	lw_why_quote(t, n, q, sizeof(q));
	if (t[0] == '-')
		return fail(pc, start,
			    "%s: bad percentage '%s': negative (0%% to 100%%)",
			    key, q);
	for (; i < n && t[i] >= '0' && t[i] <= '9'; i++) {
		whole = whole * 10 + (uint64_t)(t[i] - '0');
		if (whole > 100)
			return fail(pc, start,
				    "%s: bad percentage '%s': above 100%%", key,
				    q);
	}
	if (i == 0)
		return fail(pc, start,
			    "%s: bad percentage '%s': expected a number "
			    "first (like 80%%)",
			    key, q);
	if (i < n && t[i] == '.') {
		i++;
		if (i >= n || t[i] < '0' || t[i] > '9')
			return fail(pc, start,
				    "%s: bad percentage '%s': expected a "
				    "digit after '.'",
				    key, q);
		for (; i < n && t[i] >= '0' && t[i] <= '9'; i++) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(t[i] - '0') * scale;
			}
		}
	}
	if (i == n)
		return fail(pc, start,
			    "%s: bad percentage '%s': no '%%' (write it like "
			    "80%%)",
			    key, q);
	if (t[i] != '%' || i + 1 != n)
		return fail(pc, start,
			    "%s: bad percentage '%s': expected a number and "
			    "'%%' (like 80%%)",
			    key, q);
	*out = whole * 10000 + frac;
	if (*out > 1000000)
		return fail(pc, start, "%s: bad percentage '%s': above 100%%",
			    key, q);
	return 0;
}

/* A quoted glob: '"', bytes with \" and \\ as the only escapes, '"'.  The
 * unescaped text in *out (malloc'd), checked by glob_check. */
static int quoted_glob(struct pctx *pc, const char *what, char **out)
{
	size_t open, n = 0, col;
	char *g, msg[200];

	skip_blanks(pc);
	open = pc->pos;
	if (pc->pos >= pc->len || pc->s[pc->pos] != '"')
		return fail(pc, pc->pos,
			    "%s needs a quoted site glob here (like "
			    "\"checkpoint_*\")",
			    what);
	g = malloc(pc->len - open);
	if (g == NULL)
		return -ENOMEM;
	/* Where each byte of the glob came from, for the column of a glob
	 * error: the glob is at most one line long. */
	size_t *at = malloc((pc->len - open) * sizeof(*at));
	if (at == NULL) {
		free(g);
		return -ENOMEM;
	}
	pc->pos++;
	for (;;) {
		if (pc->pos >= pc->len) {
			free(g);
			free(at);
			return fail(pc, open,
				    "unterminated string (the closing \" is "
				    "missing)");
		}
		char c = pc->s[pc->pos];
		if (c == '"')
			break;
		if (c == '\\') {
			char e = pc->pos + 1 < pc->len ? pc->s[pc->pos + 1]
						       : '\0';
			if (e != '"' && e != '\\') {
				char q[16];
				lw_why_quote(&e, e != '\0', q, sizeof(q));
				free(g);
				free(at);
				return fail(pc, pc->pos,
					    "unknown escape '\\%s' in a string "
					    "(only \\\" and \\\\)",
					    q);
			}
			at[n] = pc->pos;
			g[n++] = e;
			pc->pos += 2;
			continue;
		}
		at[n] = pc->pos;
		g[n++] = c;
		pc->pos++;
	}
	pc->pos++;
	g[n] = '\0';
	if (n == 0) {
		free(g);
		free(at);
		return fail(pc, open,
			    "empty site glob (\"*\" matches every site)");
	}
	if (glob_check(g, &col, msg, sizeof(msg)) != 0) {
		size_t pos = at[col];
		free(g);
		free(at);
		return fail(pc, pos, "%s", msg);
	}
	free(at);
	*out = g;
	return 0;
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	if (ncap > LW_BUDGET_RULES_MAX)
		ncap = LW_BUDGET_RULES_MAX;
	p = realloc(*arr, ncap * size);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* --- Lines ------------------------------------------------------------ */

/* site "GLOB" (p99 DURATION | max DURATION)... */
static int parse_site(lw_budget_t *b, struct pctx *pc)
{
	struct site_rule r = { 0 };
	int rc;

	r.by_flag = (unsigned char)pc->by_flag;
	if (b->nsites >= LW_BUDGET_RULES_MAX)
		return fail(pc, 0,
			    "more than %d site lines (the most a budget "
			    "holds)",
			    LW_BUDGET_RULES_MAX);
	rc = quoted_glob(pc, "site", &r.glob);
	if (rc != 0)
		return rc;
	while (!at_end(pc)) {
		size_t start, n = word(pc, &start);
		const char *w = pc->s + start;
		char q[64];

		if (n == 0) {
			rc = trailing(pc, "the glob");
			goto fail;
		}
		if (n == 3 && memcmp(w, "p99", 3) == 0) {
			if (r.has_p99) {
				rc = fail(pc, start,
					  "'p99' given twice on this line");
				goto fail;
			}
			rc = value_duration(pc, "p99", &r.p99_ns);
			r.has_p99 = 1;
		} else if (n == 3 && memcmp(w, "max", 3) == 0) {
			if (r.has_max) {
				rc = fail(pc, start,
					  "'max' given twice on this line");
				goto fail;
			}
			rc = value_duration(pc, "max", &r.max_ns);
			r.has_max = 1;
		} else {
			lw_why_quote(w, n, q, sizeof(q));
			rc = fail(pc, start,
				  "unknown site limit '%s' (use p99 or max)",
				  q);
		}
		if (rc != 0)
			goto fail;
	}
	if (!r.has_p99 && !r.has_max) {
		rc = fail(pc, pc->pos,
			  "site line sets no limit (add p99 DURATION and/or "
			  "max DURATION)");
		goto fail;
	}
	r.from = fmt_from(pc->name, pc->lineno);
	if (r.from == NULL ||
	    grow((void **)&b->sites, &b->capsites, b->nsites, sizeof(r)) != 0) {
		free(r.from);
		rc = -ENOMEM;
		goto fail;
	}
	b->sites[b->nsites++] = r;
	return 0;
fail:
	free(r.glob);
	return rc;
}

/* allow SYSCALL [in "GLOB"], SYSCALL a name or '*'. */
static int parse_allow(lw_budget_t *b, struct pctx *pc)
{
	struct allow_rule r = { 0 };
	size_t start, n;
	int rc;

	r.by_flag = (unsigned char)pc->by_flag;
	if (b->nallows >= LW_BUDGET_RULES_MAX)
		return fail(pc, 0,
			    "more than %d allow lines (the most a "
			    "budget holds)",
			    LW_BUDGET_RULES_MAX);
	n = word(pc, &start);
	if (n == 0)
		return fail(pc, start,
			    "'allow' needs a syscall name or * (like allow "
			    "fsync in \"checkpoint_*\")");
	if (!(n == 1 && pc->s[start] == '*')) {
		for (size_t i = 0; i < n; i++) {
			char c = pc->s[start + i];
			if (!((c >= 'a' && c <= 'z') || c == '_' ||
			      (i > 0 && c >= '0' && c <= '9')) ||
			    n > 32) {
				char q[64];
				lw_why_quote(pc->s + start, n, q, sizeof(q));
				return fail(pc, start,
					    "bad syscall name '%s' (lower-case "
					    "letters, digits and _, like "
					    "fsync; or * for any)",
					    q);
			}
		}
	}
	r.sys = xstrndup(pc->s + start, n);
	if (r.sys == NULL)
		return -ENOMEM;
	if (!at_end(pc)) {
		size_t ws, wn = word(pc, &ws);
		if (wn != 2 || memcmp(pc->s + ws, "in", 2) != 0) {
			rc = fail(pc, ws,
				  "expected 'in' and a quoted site glob after "
				  "the syscall, or the end of the line");
			goto fail;
		}
		rc = quoted_glob(pc, "'allow ... in'", &r.glob);
		if (rc != 0)
			goto fail;
		rc = trailing(pc, "the glob");
		if (rc != 0)
			goto fail;
	}
	r.from = fmt_from(pc->name, pc->lineno);
	if (r.from == NULL || grow((void **)&b->allows, &b->capallows,
				   b->nallows, sizeof(r)) != 0) {
		free(r.from);
		rc = -ENOMEM;
		goto fail;
	}
	b->allows[b->nallows++] = r;
	return 0;
fail:
	free(r.sys);
	free(r.glob);
	return rc;
}

/* One line: blank, a comment, or KEY VALUE. */
static int parse_line(lw_budget_t *b, struct pctx *pc,
		      struct pending pend[K_NDEF])
{
	size_t start, n;
	int k;
	char q[64];

	for (size_t i = 0; i < pc->len; i++) {
		unsigned char c = (unsigned char)pc->s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(pc, i,
				    "control character 0x%02x (a budget file "
				    "is text)",
				    c);
	}
	if (at_end(pc))
		return 0;
	n = word(pc, &start);
	for (k = 0; k < K_NKEYS; k++)
		if (strlen(key_names[k]) == n &&
		    memcmp(key_names[k], pc->s + start, n) == 0)
			break;
	if (k == K_NKEYS) {
		const char *w = pc->s + start, *eq = memchr(w, '=', n);
		size_t best = 99, bk = 0;

		lw_why_quote(w, n, q, sizeof(q));
		if (n == 0)
			return fail(pc, start,
				    "expected a key (like callback.max) at "
				    "the start of the line");
		if (eq != NULL) {
			size_t kn = (size_t)(eq - w), vn = n - kn - 1;
			char vq[64];

			lw_why_quote(eq + 1, vn, vq, sizeof(vq));
			for (int j = 0; j < K_NKEYS; j++)
				if (strlen(key_names[j]) == kn &&
				    memcmp(key_names[j], w, kn) == 0)
					return fail(
						pc, start + kn,
						"'=' after '%s' (in a file, "
						"a blank separates key and "
						"value: %s %s)",
						key_names[j], key_names[j],
						vn ? vq : "50ms");
		}
		for (int j = 0; j < K_NKEYS; j++) {
			size_t d = distance(w, n, key_names[j],
					    strlen(key_names[j]));
			if (d < best) {
				best = d;
				bk = (size_t)j;
			}
		}
		if (best <= 3)
			return fail(pc, start,
				    "unknown key '%s' (did you mean '%s'?)", q,
				    key_names[bk]);
		return fail(pc, start,
			    "unknown key '%s' (keys: callback.max, site.p99, "
			    "syscall.max, lag.p99, utilization.max, site, "
			    "allow)",
			    q);
	}
	if (k == K_SITE)
		return parse_site(b, pc);
	if (k == K_ALLOW)
		return parse_allow(b, pc);

	uint64_t v;
	int rc = k == K_UTIL_MAX ? value_percent(pc, key_names[k], &v)
				 : value_duration(pc, key_names[k], &v);
	if (rc != 0)
		return rc;
	rc = trailing(pc, "the value");
	if (rc != 0)
		return rc;
	if (pend[k].set && !pc->by_flag)
		return fail(pc, start, "'%s' set twice (first on line %zu)",
			    key_names[k], pend[k].lineno);
	pend[k].v = v;
	pend[k].set = 1;
	pend[k].lineno = pc->lineno;
	return 0;
}

static void free_site(struct site_rule *r)
{
	free(r->glob);
	free(r->from);
}

static void free_allow(struct allow_rule *r)
{
	free(r->sys);
	free(r->glob);
	free(r->from);
}

/* Undo the rules a failed text appended. */
static void rollback(lw_budget_t *b, size_t nsites, size_t nallows)
{
	while (b->nsites > nsites)
		free_site(&b->sites[--b->nsites]);
	while (b->nallows > nallows)
		free_allow(&b->allows[--b->nallows]);
}

/* Apply the defaults a text set.  All the origin strings are made first,
 * so that running out of memory changes nothing. */
static int commit(lw_budget_t *b, struct pending pend[K_NDEF], const char *name,
		  int by_flag)
{
	char *from[K_NDEF] = { 0 };

	for (int k = 0; k < K_NDEF; k++) {
		if (!pend[k].set || (b->def[k].by_flag && !by_flag))
			continue;
		from[k] = fmt_from(name, pend[k].lineno);
		if (from[k] == NULL) {
			for (int j = 0; j < k; j++)
				free(from[j]);
			return -ENOMEM;
		}
	}
	for (int k = 0; k < K_NDEF; k++) {
		if (from[k] == NULL)
			continue;
		free(b->def[k].from);
		b->def[k].from = from[k];
		b->def[k].v = pend[k].v;
		b->def[k].by_flag = by_flag;
	}
	return 0;
}

/* --- The API ---------------------------------------------------------- */

lw_budget_t *lw_budget_new(void)
{
	lw_budget_t *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	for (int k = 0; k < K_NDEF; k++)
		b->def[k].v = LW_BUDGET_NONE;
	return b;
}

void lw_budget_free(lw_budget_t *b)
{
	if (b == NULL)
		return;
	rollback(b, 0, 0);
	for (int k = 0; k < K_NDEF; k++)
		free(b->def[k].from);
	free(b->sites);
	free(b->allows);
	free(b);
}

int lw_budget_parse(lw_budget_t *b, const char *name, const char *text,
		    size_t len, char *why, size_t whylen)
{
	struct pending pend[K_NDEF] = { 0 };
	size_t nsites = b->nsites, nallows = b->nallows, lineno = 0;
	const char *p = text, *end = text + len;
	int rc = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		struct pctx pc = { .s = p, .len = n, .name = name };

		pc.lineno = ++lineno;
		if (n > LW_BUDGET_LINE_MAX) {
			lw_why(why, whylen,
			       "%s:%zu:1: line longer than %d bytes", name,
			       lineno, LW_BUDGET_LINE_MAX);
			rc = -EINVAL;
			break;
		}
		if (n > 0 && p[n - 1] == '\r')
			pc.len--; /* a file written on Windows */
		rc = parse_line(b, &pc, pend);
		if (rc == -EINVAL)
			lw_why(why, whylen, "%s:%zu:%zu: %s", name, lineno,
			       pc.errcol, pc.msg);
		else if (rc != 0)
			lw_why(why, whylen, "%s:%zu: out of memory", name,
			       lineno);
		if (rc != 0)
			break;
		p = nl ? nl + 1 : end;
	}
	if (rc == 0) {
		rc = commit(b, pend, name, 0);
		if (rc != 0)
			lw_why(why, whylen, "%s: out of memory", name);
	}
	if (rc != 0)
		rollback(b, nsites, nallows);
	return rc;
}

int lw_budget_load(lw_budget_t *b, const char *path, char *why, size_t whylen)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		lw_why(why, whylen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		lw_why(why, whylen, "%s: not a regular file", path);
		close(fd);
		return rc;
	}
	/* One byte more than the bound tells a file that is too large, even
	 * one that grows while it is read. */
	buf = malloc(LW_BUDGET_FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		lw_why(why, whylen, "%s: out of memory", path);
		return -ENOMEM;
	}
	while (got <= LW_BUDGET_FILE_MAX) {
		ssize_t r = read(fd, buf + got, LW_BUDGET_FILE_MAX + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			lw_why(why, whylen, "%s: %s", path, strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got > LW_BUDGET_FILE_MAX) {
		lw_why(why, whylen,
		       "%s: larger than %u bytes (a budget file is a few "
		       "lines)",
		       path, LW_BUDGET_FILE_MAX);
		rc = -EFBIG;
		goto out;
	}
	rc = lw_budget_parse(b, path, buf, got, why, whylen);
out:
	free(buf);
	close(fd);
	return rc;
}

int lw_budget_set(lw_budget_t *b, const char *key, const char *value, char *why,
		  size_t whylen)
{
	struct pending pend[K_NDEF] = { 0 };
	size_t nsites = b->nsites, nallows = b->nallows;
	size_t kl = strlen(key), vl = strlen(value);
	char from[80], kq[64];
	char *line;
	int rc;

	lw_why_quote(key, kl, kq, sizeof(kq));
	if (kl + vl + 1 > LW_BUDGET_LINE_MAX) {
		lw_why(why, whylen, "flag %s: longer than %d bytes", kq,
		       LW_BUDGET_LINE_MAX);
		return -EINVAL;
	}
	/* A key with a blank in it would take the value's first word as
	 * part of itself: it is not a key. */
	if (kl == 0 || memchr(key, ' ', kl) || memchr(key, '\t', kl) ||
	    memchr(key, '#', kl)) {
		lw_why(why, whylen,
		       "flag '%s': not a key (keys: callback.max, site.p99, "
		       "syscall.max, lag.p99, utilization.max, site, allow)",
		       kq);
		return -EINVAL;
	}
	line = malloc(kl + vl + 2);
	if (line == NULL)
		return -ENOMEM;
	memcpy(line, key, kl);
	line[kl] = ' ';
	memcpy(line + kl + 1, value, vl + 1);
	snprintf(from, sizeof(from), "flag %s", kq);

	struct pctx pc = { .s = line,
			   .len = kl + vl + 1,
			   .by_flag = 1,
			   .name = from,
			   .lineno = 0 };
	rc = parse_line(b, &pc, pend);
	if (rc == -EINVAL)
		lw_why(why, whylen, "%s: %s", from, pc.msg);
	if (rc == 0)
		rc = commit(b, pend, from, 1);
	if (rc == -ENOMEM)
		lw_why(why, whylen, "%s: out of memory", from);
	if (rc != 0)
		rollback(b, nsites, nallows);
	free(line);
	return rc;
}

int lw_budget_set_flag(lw_budget_t *b, const char *kv, char *why, size_t whylen)
{
	const char *eq = strchr(kv, '=');
	char key[64], q[64];
	size_t kl;

	if (eq == NULL || eq == kv) {
		lw_why_quote(kv, strlen(kv), q, sizeof(q));
		lw_why(why, whylen,
		       "flag '%s': expected KEY=VALUE (like "
		       "callback.max=50ms)",
		       q);
		return -EINVAL;
	}
	kl = (size_t)(eq - kv);
	if (kl >= sizeof(key)) {
		lw_why_quote(kv, kl, q, sizeof(q));
		lw_why(why, whylen, "flag '%s': not a key", q);
		return -EINVAL;
	}
	memcpy(key, kv, kl);
	key[kl] = '\0';
	return lw_budget_set(b, key, eq + 1, why, whylen);
}

void lw_budget_get(const lw_budget_t *b, lw_budget_values_t *out)
{
	uint64_t u = b->def[K_UTIL_MAX].v;

	out->callback_max_ns = b->def[K_CALLBACK_MAX].v;
	out->site_p99_ns = b->def[K_SITE_P99].v;
	out->syscall_max_ns = b->def[K_SYSCALL_MAX].v;
	out->lag_p99_ns = b->def[K_LAG_P99].v;
	out->util_max_ppm =
		u == LW_BUDGET_NONE ? LW_BUDGET_UTIL_NONE : (uint32_t)u;
	out->util_max = u == LW_BUDGET_NONE ? 2.0 : (double)u / 1e6;
}

void lw_budget_for_site(const lw_budget_t *b, const char *site,
			lw_budget_limits_t *out)
{
	out->max_ns = b->def[K_CALLBACK_MAX].v;
	out->max_from = b->def[K_CALLBACK_MAX].from;
	out->p99_ns = b->def[K_SITE_P99].v;
	out->p99_from = b->def[K_SITE_P99].from;
	/* Files first, then flags: the last match wins, per limit. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < b->nsites; i++) {
			const struct site_rule *r = &b->sites[i];
			if (r->by_flag != pass ||
			    !lw_budget_glob_match(r->glob, site))
				continue;
			if (r->has_max) {
				out->max_ns = r->max_ns;
				out->max_from = r->from;
			}
			if (r->has_p99) {
				out->p99_ns = r->p99_ns;
				out->p99_from = r->from;
			}
		}
	}
}

int lw_budget_allowed(const lw_budget_t *b, const char *site,
		      const char *syscall)
{
	for (size_t i = 0; i < b->nallows; i++) {
		const struct allow_rule *r = &b->allows[i];
		if (strcmp(r->sys, "*") != 0 && strcmp(r->sys, syscall) != 0)
			continue;
		if (r->glob == NULL || lw_budget_glob_match(r->glob, site))
			return 1;
	}
	return 0;
}

size_t lw_budget_nsites(const lw_budget_t *b)
{
	return b->nsites;
}

size_t lw_budget_nallows(const lw_budget_t *b)
{
	return b->nallows;
}

/* An output buffer that counts what did not fit. */
struct out {
	char *buf;
	size_t len, n;
};

static void emit(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(o->n < o->len ? o->buf + o->n : NULL,
		      o->n < o->len ? o->len - o->n : 0, fmt, ap);
	va_end(ap);
	if (r > 0)
		o->n += (size_t)r;
}

static void emit_glob(struct out *o, const char *g)
{
	emit(o, "\"");
	for (; *g != '\0'; g++)
		emit(o, "%s%c", *g == '"' || *g == '\\' ? "\\" : "", *g);
	emit(o, "\"");
}

static void emit_duration(struct out *o, uint64_t ns)
{
	char d[48];

	if (ns == LW_BUDGET_NONE)
		snprintf(d, sizeof(d), "off");
	else
		lw_duration_format_exact(ns, d, sizeof(d));
	emit(o, "%s", d);
}

size_t lw_budget_format(const lw_budget_t *b, char *buf, size_t len)
{
	struct out o = { .buf = buf, .len = len };

	if (len > 0)
		buf[0] = '\0';
	emit(&o, "# loopwatch budgets\n");
	for (int k = 0; k < K_NDEF; k++) {
		uint64_t v = b->def[k].v;
		if (v == LW_BUDGET_NONE)
			continue;
		emit(&o, "%-16s ", key_names[k]);
		if (k == K_UTIL_MAX) {
			emit(&o, "%llu", (unsigned long long)(v / 10000));
			if (v % 10000 != 0) {
				char f[8];
				snprintf(f, sizeof(f), "%04llu",
					 (unsigned long long)(v % 10000));
				for (int i = 3; i > 0 && f[i] == '0'; i--)
					f[i] = '\0';
				emit(&o, ".%s", f);
			}
			emit(&o, "%%\n");
		} else {
			emit_duration(&o, v);
			emit(&o, "\n");
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < b->nsites; i++) {
			const struct site_rule *r = &b->sites[i];
			if (r->by_flag != pass)
				continue;
			emit(&o, "site ");
			emit_glob(&o, r->glob);
			if (r->has_p99) {
				emit(&o, " p99 ");
				emit_duration(&o, r->p99_ns);
			}
			if (r->has_max) {
				emit(&o, " max ");
				emit_duration(&o, r->max_ns);
			}
			emit(&o, "\n");
		}
	}
	for (size_t i = 0; i < b->nallows; i++) {
		emit(&o, "allow %s", b->allows[i].sys);
		if (b->allows[i].glob != NULL) {
			emit(&o, " in ");
			emit_glob(&o, b->allows[i].glob);
		}
		emit(&o, "\n");
	}
	return o.n;
}
