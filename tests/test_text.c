/*
 * test_text.c - text from the target reaches the terminal cleaned
 * (agent/text.h): the cleaner itself, byte by byte, and a hostile target
 * whose comm, loop, site and file are named with terminal controls,
 * watched by the real loopwatch.
 */
#include "lwtest.h"
#include "lwtest_proc.h"
#include "text.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void clean_is(const char *in, const char *want)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", in);
	ASSERT_STREQ(lw_text_clean(buf), want);
}

TEST(text_clean_controls_and_utf8)
{
	clean_is("plain name", "plain name");
	clean_is("", "");
	/* C0 controls and DEL. */
	clean_is("a\033[2Jb\007c\177d\n", "a?[2Jb?c?d?");
	/* C1 controls: a lone byte (CSI on an 8-bit terminal), and U+009B
	 * encoded in UTF-8; U+00A0 and above are printable. */
	clean_is("\x9b"
		 "31m",
		 "?31m");
	clean_is("\xc2\x9b"
		 "31m \xc2\x80\xc2\x9f|\xc2\xa0",
		 "?31m ??|\xc2\xa0");
	/* Valid UTF-8 stays: Latin, a block element, an emoji. */
	clean_is("caf\xc3\xa9 \xe2\x96\x88 \xf0\x9f\x98\x80",
		 "caf\xc3\xa9 \xe2\x96\x88 \xf0\x9f\x98\x80");
	/* Invalid UTF-8: cut short, a stray continuation, overlong, a
	 * surrogate, past U+10FFFF: one '?' per byte of none. */
	clean_is("x\xe2\x96", "x??");
	clean_is("\x80x", "?x");
	clean_is("\xc0\xaf", "??");
	clean_is("\xed\xa0\x80", "???");
	clean_is("\xf4\x90\x80\x80", "????");
	/* A bounded copy of bytes that lack their NUL. */
	char dst[8];
	ASSERT_STREQ(lw_text_copy(dst, "ab\033cdefghij", 5), "ab?cd");
	ASSERT_STREQ(lw_text_copy(dst, "ab\0cd", 5), "ab");
}

/* No byte that drives a terminal in the text: ESC, BEL, any other C0 but
 * newline and tab, DEL, a lone C1 byte or U+0080..U+009F. */
static void assert_inert(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '\n' || s[i] == '\t')
			continue;
		if (s[i] < 0x20 || s[i] == 0x7f)
			LWT_FAIL("control byte 0x%02x at %zu", s[i], i);
		if (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] < 0xa0)
			LWT_FAIL("C1 control U+00%02X at %zu", s[i + 1], i);
		size_t n = lw_utf8_len(s + i);
		if (n == 0)
			LWT_FAIL("byte 0x%02x outside UTF-8 at %zu", s[i], i);
		i += n - 1;
	}
}

TEST_T(text_hostile_target_names, 60)
{
	static char out[1 << 17];
	char line[256], pidbuf[16];
	int tfd;
	char *argv[] = { strdup(lwt_build_path("tests/progs/ring_target")),
			 "hostile", NULL };

	pid_t target = lwt_spawn(argv, &tfd, 0, NULL);
	free(argv[0]);
	ASSERT(lwt_read_line(tfd, line, sizeof(line), 10000) > 0);
	ASSERT(strncmp(line, "ready ", 6) == 0);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)target);

	/* list, then attach long enough for the slow reads, with the kernel
	 * probes as root (the file's name comes with them). */
	char *list[] = { "list", NULL };
	ASSERT_EQ(lwt_loopwatch(list, out, sizeof(out)), 0);
	assert_inert(out);
	ASSERT(strstr(out, pidbuf) != NULL);
	char *attach[] = { "attach", "--duration", "1", "--min-ms",
			   "1",	     pidbuf,	   NULL };
	ASSERT_EQ(lwt_loopwatch(attach, out, sizeof(out)), 0);
	assert_inert(out);
	ASSERT(strstr(out, "site?]2;owned??[2J?31m?") != NULL);
	ASSERT(strstr(out, "x?]2;owned??[2J") != NULL);
	if (geteuid() == 0)
		ASSERT(strstr(out, "/tmp/lw-hostile-") != NULL);
	char *json[] = { "attach", "--json", "--duration", "1", pidbuf, NULL };
	ASSERT_EQ(lwt_loopwatch(json, out, sizeof(out)), 0);
	assert_inert(out);

	kill(target, SIGTERM);
	lwt_wait_exit(target, 10000);
	close(tfd);
}
