/*
 * text.h - text that comes from places loopwatch does not control (the
 * target's ring, its files, its thread names, /proc, a recording someone
 * handed over) made safe to print on a terminal.
 *
 * A terminal obeys the bytes it is sent: an ESC, a C1 control such as CSI
 * (0x9b alone on an 8-bit terminal, U+009B on a UTF-8 one) or a BEL in a
 * site name, a file name or a thread name would let the target move the
 * cursor, retitle the window, or worse, in the terminal of whoever runs
 * loopwatch.  Every such string is cleaned once, where it enters the
 * agent, with lw_text_clean(); everything after prints it as it is.
 */
#ifndef LW_TEXT_H
#define LW_TEXT_H

#include <stddef.h>

/* The length (1..4) of the valid UTF-8 sequence at s, or 0 if the bytes
 * there are not one (a stray continuation byte, an overlong form, a
 * surrogate, a code point past U+10FFFF, a sequence cut short by the
 * NUL). */
size_t lw_utf8_len(const unsigned char *s);

/*
 * Clean the NUL-terminated string s in place and return it: C0 controls
 * (below 0x20) and DEL become '?', as do C1 controls (U+0080..U+009F) and
 * every byte that is not part of a valid UTF-8 sequence; printable ASCII
 * and valid UTF-8 stay as they are.  The result is never longer.
 */
char *lw_text_clean(char *s);

/* Copy at most n bytes of src (stopping at a NUL) into dst, which has
 * room for n + 1, and clean the copy; returns dst. */
char *lw_text_copy(char *dst, const char *src, size_t n);

#endif /* LW_TEXT_H */
