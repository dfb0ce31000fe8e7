/*
 * why.h - the one-line reason an agent call writes for its caller: the
 * calls that can fail take (char *why, size_t whylen) and fill it with
 * something a person can act on, without a trailing newline; the caller
 * prints it after "loopwatch: cannot <verb> <noun>: ".
 */
#ifndef LW_WHY_H
#define LW_WHY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Format into why (if why is not NULL and whylen > 0); cut to fit. */
static inline void lw_why(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void lw_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

#endif /* LW_WHY_H */
