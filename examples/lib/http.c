/*
 * http.c - the examples' HTTP/1.1 parser and builder (see http.h).
 *
 * The parser keeps the raw bytes it has not consumed in one buffer.  When the
 * blank line that ends a head arrives, the head is checked and copied into a
 * second buffer as NUL-terminated strings, and removed from the first; what
 * remains there is the body and then whatever the peer pipelined after it.
 * That way the strings handed to the caller never move while the body grows.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_HEAD = 0, ST_BODY, ST_DONE, ST_ERROR };

/* Bytes a peer may pipeline behind a complete message before we give up. */
#define HTTP_MAX_QUEUED (64 * 1024)

void http_parser_init(http_parser_t *p, int kind, size_t max_body)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->max_head = HTTP_DEFAULT_MAX_HEAD;
	p->max_body = max_body ? max_body : (size_t)1 << 20;
	p->state = ST_HEAD;
}

void http_parser_free(http_parser_t *p)
{
	free(p->buf);
	free(p->head);
	p->buf = NULL;
	p->head = NULL;
	p->len = p->cap = p->head_cap = 0;
}

static int fail(http_parser_t *p, int status, const char *why)
{
	p->state = ST_ERROR;
	p->error = why;
	p->error_status = status;
	return HTTP_ERROR;
}

/* Forget the message (not the settings, not the queued bytes). */
static void clear_message(http_parser_t *p)
{
	p->method = p->target = p->path = p->query = p->reason = NULL;
	p->status = 0;
	p->version_minor = 0;
	p->nheaders = 0;
	p->content_length = 0;
	p->keep_alive = 0;
	p->body = NULL;
	p->body_len = 0;
	p->has_length = 0;
	p->until_eof = 0;
	p->body_seen = 0;
	p->scan = 0;
}

static int reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	if (need > SIZE_MAX / 2)
		return -ENOMEM;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap < need)
		ncap *= 2;
	char *n = realloc(*buf, ncap);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = ncap;
	return 0;
}

static int append_raw(http_parser_t *p, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	if (reserve(&p->buf, &p->cap, p->len + len) < 0)
		return -ENOMEM;
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	return 0;
}

static void consume(http_parser_t *p, size_t n)
{
	memmove(p->buf, p->buf + n, p->len - n);
	p->len -= n;
}

static int is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return 0;
	return 1;
}

/* Field values: visible ASCII, blanks, and obs-text; no other controls. */
static int is_field_value(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int is_target(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

/* "HTTP/1.x" -> x; -1 when malformed, -2 for a well-formed other version. */
static int parse_version(const char *s)
{
	if (strncmp(s, "HTTP/", 5) != 0)
		return -1;
	s += 5;
	if (!isdigit((unsigned char)s[0]) || s[1] != '.' ||
	    !isdigit((unsigned char)s[2]) || s[3] != '\0')
		return -1;
	if (s[0] != '1' || (s[2] != '0' && s[2] != '1'))
		return -2;
	return s[2] - '0';
}

static int parse_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* Split the next line off *cur (ending in LF, with an optional CR). */
static char *next_line(char **cur, char *end, int *bad)
{
	char *line = *cur;
	char *nl = memchr(line, '\n', (size_t)(end - line));
	if (!nl)
		return NULL;
	*cur = nl + 1;
	if (nl > line && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	/* A CR anywhere else is how request smuggling starts: refuse it. */
	if (memchr(line, '\r', (size_t)(nl - line)))
		*bad = 1;
	return line;
}

static int parse_request_line(http_parser_t *p, char *line, char *extra)
{
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' '))
		return fail(p, 400, "malformed request line");
	*sp1 = *sp2 = '\0';
	char *method = line, *target = sp1 + 1, *version = sp2 + 1;
	if (!is_token(method) || strlen(method) > 32)
		return fail(p, 400, "bad method");
	if (!is_target(target))
		return fail(p, 400, "bad request target");
	int minor = parse_version(version);
	if (minor == -2)
		return fail(p, 505, "unsupported HTTP version");
	if (minor < 0)
		return fail(p, 400, "bad HTTP version");

	/* The path is the target without the query, and without the scheme
	 * and authority of an absolute-form target. */
	const char *path = target;
	if (*path != '/' && strcmp(path, "*") != 0) {
		const char *auth = strstr(path, "://");
		if (!auth || strncasecmp(path, "http", 4) != 0)
			return fail(p, 400, "bad request target");
		path = strchr(auth + 3, '/');
		if (!path)
			path = "/";
	}
	size_t plen = strcspn(path, "?#");
	memcpy(extra, path, plen);
	extra[plen] = '\0';
	char *query = extra + plen + 1;
	const char *q = strchr(path, '?');
	size_t qlen = q ? strcspn(q + 1, "#") : 0;
	if (q)
		memcpy(query, q + 1, qlen);
	query[qlen] = '\0';

	p->method = method;
	p->target = target;
	p->path = extra;
	p->query = query;
	p->version_minor = minor;
	return 0;
}

static int parse_status_line(http_parser_t *p, char *line)
{
	char *sp = strchr(line, ' ');
	if (!sp)
		return fail(p, 502, "malformed status line");
	*sp = '\0';
	int minor = parse_version(line);
	if (minor < 0)
		return fail(p, 502, "bad HTTP version in response");
	char *code = sp + 1;
	if (!isdigit((unsigned char)code[0]) ||
	    !isdigit((unsigned char)code[1]) ||
	    !isdigit((unsigned char)code[2]) ||
	    (code[3] != ' ' && code[3] != '\0') || code[0] == '0')
		return fail(p, 502, "bad status code");
	p->status =
		(code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
	p->reason = code[3] ? code + 4 : code + 3;
	if (!is_field_value(p->reason))
		return fail(p, 502, "bad reason phrase");
	p->version_minor = minor;
	return 0;
}

static int parse_header_line(http_parser_t *p, char *line)
{
	if (*line == ' ' || *line == '\t')
		return fail(p, 400, "folded header line");
	char *colon = strchr(line, ':');
	if (!colon)
		return fail(p, 400, "header line without a colon");
	*colon = '\0';
	/* "Name : value" is refused too: the name must be a bare token. */
	if (!is_token(line))
		return fail(p, 400, "bad header name");
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	char *e = v + strlen(v);
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	if (!is_field_value(v))
		return fail(p, 400, "bad header value");
	if (p->nheaders == HTTP_MAX_HEADERS)
		return fail(p, 431, "too many header lines");
	p->headers[p->nheaders].name = line;
	p->headers[p->nheaders].value = v;
	p->nheaders++;

	if (strcasecmp(line, "Content-Length") == 0) {
		uint64_t n;
		if (parse_length(v, &n) < 0)
			return fail(p, 400, "bad Content-Length");
		if (p->has_length && n != p->content_length)
			return fail(p, 400, "conflicting Content-Length");
		p->has_length = 1;
		p->content_length = n;
	} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
		return fail(p, 501, "Transfer-Encoding is not supported");
	}
	return 0;
}

/* The Connection header's tokens decide keep-alive over the default. */
static void parse_connection(http_parser_t *p)
{
	p->keep_alive = p->version_minor >= 1;
	for (size_t i = 0; i < p->nheaders; i++) {
		if (strcasecmp(p->headers[i].name, "Connection") != 0)
			continue;
		const char *s = p->headers[i].value;
		while (*s) {
			size_t n = strcspn(s, ",");
			const char *t = s, *te = s + n;
			while (t < te && (*t == ' ' || *t == '\t'))
				t++;
			while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
				te--;
			if ((size_t)(te - t) == 5 &&
			    !strncasecmp(t, "close", 5))
				p->keep_alive = 0;
			else if ((size_t)(te - t) == 10 &&
				 !strncasecmp(t, "keep-alive", 10) &&
				 p->version_minor == 0)
				p->keep_alive = 1;
			s += n;
			if (*s == ',')
				s++;
		}
	}
}

/* Parse the head in buf[0..n), which ends with its blank line. */
static int parse_head(http_parser_t *p, size_t n)
{
	/* Room for the head, then the path and the query of the target. */
	if (reserve(&p->head, &p->head_cap, 2 * n + 4) < 0)
		return fail(p, 503, "out of memory");
	/* A NUL would cut a string short and hide what follows it. */
	if (memchr(p->buf, '\0', n))
		return fail(p, 400, "NUL byte in the head");
	memcpy(p->head, p->buf, n);
	char *cur = p->head, *end = p->head + n;
	int bad = 0;

	char *line = next_line(&cur, end, &bad);
	if (!line || bad)
		return fail(p, 400, "stray CR in the head");
	int r = p->kind == HTTP_REQUEST
			? parse_request_line(p, line, p->head + n + 1)
			: parse_status_line(p, line);
	if (r < 0)
		return r;
	while ((line = next_line(&cur, end, &bad)) != NULL) {
		if (bad)
			return fail(p, 400, "stray CR in the head");
		if (*line == '\0')
			break;
		if ((r = parse_header_line(p, line)) < 0)
			return r;
	}
	parse_connection(p);

	if (p->kind == HTTP_REQUEST) {
		if (p->version_minor >= 1 && !http_header(p, "Host"))
			return fail(p, 400, "HTTP/1.1 request without Host");
	} else if ((p->status >= 100 && p->status < 200) || p->status == 204 ||
		   p->status == 304) {
		p->content_length = 0;
	} else if (!p->has_length) {
		p->until_eof = 1;
		p->keep_alive = 0;
	}
	if (p->content_length > p->max_body)
		return fail(p, 413, "body too large");
	return 0;
}

/* Where the head ends (just past its blank line), or 0 if not yet. */
static size_t find_head_end(http_parser_t *p)
{
	for (size_t i = p->scan; i < p->len; i++) {
		if (p->buf[i] != '\n' || i == 0)
			continue;
		if (p->buf[i - 1] == '\n')
			return i + 1;
		if (p->buf[i - 1] == '\r' && i >= 2 && p->buf[i - 2] == '\n')
			return i + 1;
	}
	p->scan = p->len > 2 ? p->len - 2 : 0;
	return 0;
}

static int parse(http_parser_t *p)
{
	if (p->state == ST_HEAD) {
		/* Empty lines before a message are tolerated (RFC 9112 2.2),
		 * e.g. the CRLF some clients send after a body. */
		size_t skip = 0;
		while (skip < p->len &&
		       (p->buf[skip] == '\r' || p->buf[skip] == '\n'))
			skip++;
		if (skip) {
			consume(p, skip);
			p->scan = 0;
		}
		size_t end = find_head_end(p);
		if (!end) {
			if (p->len > p->max_head)
				return fail(p, 431, "head too large");
			return HTTP_AGAIN;
		}
		if (end > p->max_head)
			return fail(p, 431, "head too large");
		int r = parse_head(p, end);
		if (r < 0)
			return r;
		consume(p, end);
		p->state = ST_BODY;
	}
	if (p->state == ST_BODY) {
		if (p->on_body) {
			uint64_t want =
				p->until_eof ? (uint64_t)p->len
					     : p->content_length - p->body_seen;
			size_t n = want < p->len ? (size_t)want : p->len;
			if (n) {
				p->body_seen += n;
				p->on_body(p, p->buf, n);
				consume(p, n);
			}
			if (p->until_eof || p->body_seen < p->content_length)
				return HTTP_AGAIN;
			p->body = "";
			p->body_len = 0;
		} else {
			if (p->until_eof) {
				if (p->len > p->max_body)
					return fail(p, 413, "body too large");
				return HTTP_AGAIN;
			}
			if (p->len < p->content_length)
				return HTTP_AGAIN;
			p->body = p->buf;
			p->body_len = (size_t)p->content_length;
		}
		p->state = ST_DONE;
	}
	return p->state == ST_DONE ? HTTP_DONE : HTTP_ERROR;
}

int http_parser_feed(http_parser_t *p, const char *data, size_t len)
{
	if (p->state == ST_ERROR)
		return HTTP_ERROR;
	if (p->state == ST_DONE) {
		if (p->len + len >
		    p->body_len + p->max_head + p->max_body + HTTP_MAX_QUEUED)
			return fail(p, 429, "too much pipelined input");
		if (append_raw(p, data, len) < 0)
			return fail(p, 503, "out of memory");
		/* The body lives at the front of buf, which may have moved. */
		if (!p->on_body)
			p->body = p->buf;
		return HTTP_DONE;
	}
	/* Stream body bytes straight through without copying them. */
	if (p->state == ST_BODY && p->on_body && p->len == 0 && !p->until_eof) {
		uint64_t want = p->content_length - p->body_seen;
		size_t n = want < len ? (size_t)want : len;
		if (n) {
			p->body_seen += n;
			p->on_body(p, data, n);
			data += n;
			len -= n;
		}
	} else if (p->state == ST_BODY && p->on_body && p->until_eof) {
		p->body_seen += len;
		if (len)
			p->on_body(p, data, len);
		return HTTP_AGAIN;
	}
	if (append_raw(p, data, len) < 0)
		return fail(p, 503, "out of memory");
	return parse(p);
}

int http_parser_next(http_parser_t *p)
{
	if (p->state == ST_ERROR)
		return HTTP_ERROR;
	if (p->state != ST_DONE)
		return HTTP_AGAIN;
	if (!p->on_body)
		consume(p, p->body_len);
	clear_message(p);
	p->state = ST_HEAD;
	return parse(p);
}

int http_parser_eof(http_parser_t *p)
{
	switch (p->state) {
	case ST_DONE:
		return HTTP_DONE;
	case ST_ERROR:
		return HTTP_ERROR;
	case ST_BODY:
		if (p->until_eof) {
			p->body = p->on_body ? "" : p->buf;
			p->body_len = p->on_body ? 0 : p->len;
			p->content_length = p->on_body ? p->body_seen : p->len;
			p->state = ST_DONE;
			return HTTP_DONE;
		}
		return fail(p, 400, "connection closed inside a body");
	default:
		for (size_t i = 0; i < p->len; i++)
			if (p->buf[i] != '\r' && p->buf[i] != '\n')
				return fail(p, 400,
					    "connection closed inside a head");
		return HTTP_AGAIN;
	}
}

int http_parser_pending(const http_parser_t *p)
{
	return p->state != ST_HEAD || p->len != 0;
}

const char *http_header(const http_parser_t *p, const char *name)
{
	for (size_t i = 0; i < p->nheaders; i++)
		if (strcasecmp(p->headers[i].name, name) == 0)
			return p->headers[i].value;
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int http_query_get(const char *query, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *s = query ? query : "";
	while (*s) {
		size_t n = strcspn(s, "&");
		const char *eq = memchr(s, '=', n);
		size_t kn = eq ? (size_t)(eq - s) : n;
		if (kn == klen && memcmp(s, key, klen) == 0) {
			const char *v = eq ? eq + 1 : s + n;
			const char *ve = s + n;
			size_t o = 0;
			for (; v < ve; v++) {
				int c = (unsigned char)*v;
				if (c == '+') {
					c = ' ';
				} else if (c == '%') {
					if (ve - v < 3)
						return -1;
					int hi = hexval(v[1]),
					    lo = hexval(v[2]);
					if (hi < 0 || lo < 0 || (hi | lo) == 0)
						return -1;
					c = hi * 16 + lo;
					v += 2;
				}
				if (o + 1 >= outlen)
					return -1;
				out[o++] = (char)c;
			}
			if (outlen == 0)
				return -1;
			out[o] = '\0';
			return (int)o;
		}
		s += n;
		if (*s == '&')
			s++;
	}
	return -1;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

void http_buf_init(http_buf_t *b)
{
	memset(b, 0, sizeof(*b));
}

void http_buf_free(http_buf_t *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void http_buf_append(http_buf_t *b, const void *data, size_t len)
{
	if (b->failed)
		return;
	/* One more byte keeps the content NUL-terminated for printing. */
	if (reserve(&b->data, &b->cap, b->len + len + 1) < 0) {
		b->failed = 1;
		return;
	}
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void http_buf_printf(http_buf_t *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		http_buf_append(b, small, (size_t)n);
		return;
	}
	if (b->failed ||
	    reserve(&b->data, &b->cap, b->len + (size_t)n + 1) < 0) {
		b->failed = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void http_build_response(http_buf_t *b, int status, const char *content_type,
			 const char *extra, const void *body, size_t body_len,
			 int keep_alive, int head_only)
{
	http_buf_printf(b, "HTTP/1.1 %d %s\r\n", status,
			http_status_text(status));
	if (content_type)
		http_buf_printf(b, "Content-Type: %s\r\n", content_type);
	http_buf_printf(b, "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
			body_len, keep_alive ? "keep-alive" : "close",
			extra ? extra : "");
	if (!head_only)
		http_buf_append(b, body, body_len);
}

void http_build_request_head(http_buf_t *b, const char *method,
			     const char *host, const char *target,
			     const char *extra, uint64_t body_len,
			     int keep_alive)
{
	http_buf_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target,
			host);
	if (body_len || !strcmp(method, "PUT") || !strcmp(method, "POST"))
		http_buf_printf(b, "Content-Length: %llu\r\n",
				(unsigned long long)body_len);
	http_buf_printf(b, "Connection: %s\r\n%s\r\n",
			keep_alive ? "keep-alive" : "close",
			extra ? extra : "");
}
