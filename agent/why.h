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
#include <string.h>

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

/* Text from untrusted input as a reason quotes it: printable ASCII kept,
 * other bytes as \xHH, cut with "..." past 40 bytes, so that a hostile
 * line cannot make the reason long or unprintable.  outlen >= 16. */
static inline void lw_why_quote(const char *s, size_t len, char *out,
				size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 12 >= outlen || i >= 40) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x",
					      c);
	}
	out[o] = '\0';
}

#endif /* LW_WHY_H */
