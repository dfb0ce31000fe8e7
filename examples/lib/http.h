/*
 * http.h - a small HTTP/1.1 parser and message builder for the examples.
 *
 * It is what a reactor program needs and nothing more: bytes arrive in
 * arbitrary chunks through on_data, so the parser is incremental and keeps
 * what it has not used; bodies are delimited by Content-Length (or, for a
 * response, by the end of the connection); several requests may arrive in one
 * chunk (pipelining), so the bytes after a message are kept for the next one.
 * Chunked transfer coding is refused (501) rather than half-supported.
 *
 * Everything that comes from the peer is untrusted: the head and the body
 * have limits, every token is checked, and a malformed message is an error
 * with an HTTP status to answer with, never a crash.
 *
 * It depends on libc only, so the tests can compile it on its own.
 *
 *   http_parser_t p;
 *   http_parser_init(&p, HTTP_REQUEST, 1 << 20);
 *   on_data:  r = http_parser_feed(&p, data, len);
 *             while (r == HTTP_DONE) { handle(&p); r = http_parser_next(&p); }
 *             if (r == HTTP_ERROR) answer p.error_status, close;
 *   on_unbind: http_parser_free(&p);
 */
#ifndef EXAMPLES_HTTP_H
#define EXAMPLES_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_DEFAULT_MAX_HEAD 8192

enum http_kind { HTTP_REQUEST = 0, HTTP_RESPONSE = 1 };

/* Results of http_parser_feed() and http_parser_next(). */
enum http_result {
	HTTP_ERROR = -1, /* malformed: see error and error_status */
	HTTP_AGAIN = 0, /* need more bytes */
	HTTP_DONE = 1, /* a whole message is ready */
};

typedef struct http_header {
	const char *name; /* as sent; compare with strcasecmp */
	const char *value; /* leading and trailing blanks removed */
} http_header_t;

typedef struct http_parser http_parser_t;

/*
 * Called with body bytes as they arrive instead of keeping them, for
 * bodies too big to hold (an upload sink).  body/body_len then stay empty.
 */
typedef void (*http_body_cb)(http_parser_t *p, const char *data, size_t len);

struct http_parser {
	/* Settings: set by http_parser_init(), may be changed before feeding.
	 */
	int kind; /* enum http_kind */
	size_t max_head; /* request/status line plus headers */
	size_t max_body; /* a larger Content-Length is refused (413) */
	http_body_cb on_body; /* optional; see above */
	void *data; /* yours */

	/*
	 * The message, valid once feed/next returned HTTP_DONE and until the
	 * next call of feed, next, eof, reset or free.  The strings are
	 * NUL-terminated copies.
	 */
	const char *method; /* request: "GET" */
	const char *target; /* request: "/sleep?ms=10", as sent */
	const char *path; /* request: "/sleep" */
	const char *query; /* request: "ms=10" ("" if none) */
	int status; /* response: 200 */
	const char *reason; /* response: "OK" */
	int version_minor; /* HTTP/1.x */
	http_header_t headers[HTTP_MAX_HEADERS];
	size_t nheaders;
	uint64_t content_length; /* of this message's body */
	int keep_alive; /* the connection may carry another message */
	const char *body; /* the body, unless on_body took it */
	size_t body_len;

	/* After HTTP_ERROR: what went wrong and the status to answer with. */
	const char *error;
	int error_status;

	/* private */
	int state;
	int has_length; /* Content-Length was given */
	int until_eof; /* response body runs to the end of the connection */
	char *buf; /* raw bytes not yet consumed (the body, then the next) */
	size_t len, cap;
	size_t scan; /* where to resume looking for the end of the head */
	char *head; /* the parsed head's strings */
	size_t head_cap;
	uint64_t body_seen; /* body bytes given to on_body */
};

/*
 * Prepare a parser for requests or responses; max_body 0 means 1 MiB.
 * Allocates nothing until bytes arrive.
 */
void http_parser_init(http_parser_t *p, int kind, size_t max_body);

/* Release what the parser holds.  It may be initialized again after. */
void http_parser_free(http_parser_t *p);

/*
 * Take `len` more bytes.  Returns HTTP_DONE when a message is complete (the
 * bytes after it are kept for the next one), HTTP_AGAIN when more are
 * needed, HTTP_ERROR when the input is malformed (the parser stays in error:
 * answer and close).  While a message is complete, bytes are only queued.
 */
int http_parser_feed(http_parser_t *p, const char *data, size_t len);

/*
 * Drop the complete message and parse the bytes queued after it.  Returns as
 * http_parser_feed().
 */
int http_parser_next(http_parser_t *p);

/*
 * The peer closed.  Completes a response whose body runs to the end of the
 * connection (HTTP_DONE); otherwise HTTP_ERROR if a message was started and
 * not finished, HTTP_AGAIN if nothing was pending.
 */
int http_parser_eof(http_parser_t *p);

/* Non-zero if the parser holds a partial message or queued bytes. */
int http_parser_pending(const http_parser_t *p);

/* A header's value (the first one with that name, any case), or NULL. */
const char *http_header(const http_parser_t *p, const char *name);

/*
 * Find `key` in a query string ("a=1&b=x%20y") and copy its decoded value
 * into out.  Returns the value's length, or -1 if the key is absent, the
 * value does not fit, or it is badly encoded.
 */
int http_query_get(const char *query, const char *key, char *out,
		   size_t outlen);

/* The standard reason phrase for a status ("Not Found"), or "Unknown". */
const char *http_status_text(int status);

/* A growable byte buffer for building messages. */
typedef struct http_buf {
	char *data;
	size_t len, cap;
	int failed; /* an allocation failed; the content is incomplete */
} http_buf_t;

void http_buf_init(http_buf_t *b);
void http_buf_free(http_buf_t *b);
void http_buf_append(http_buf_t *b, const void *data, size_t len);
void http_buf_printf(http_buf_t *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Append a response head and body: status line, Content-Type (if not NULL),
 * Content-Length, Connection, then `extra` header lines (each ending in
 * "\r\n", or NULL).  With `head_only` (a HEAD request) the body is left out
 * but Content-Length still describes it.
 */
void http_build_response(http_buf_t *b, int status, const char *content_type,
			 const char *extra, const void *body, size_t body_len,
			 int keep_alive, int head_only);

/*
 * Append a request head: request line, Host, Content-Length (when the
 * method carries a body or body_len is not 0), Connection, `extra` lines.
 * The body itself is not appended: send it after, from wherever it lives.
 */
void http_build_request_head(http_buf_t *b, const char *method,
			     const char *host, const char *target,
			     const char *extra, uint64_t body_len,
			     int keep_alive);

#endif /* EXAMPLES_HTTP_H */
