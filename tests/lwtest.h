/*
 * lwtest.h - the test registry and asserts.
 *
 *   TEST(timer_order) { ... }               a test, 30 s timeout
 *   TEST_T(tcp_echo_1000, 120) { ... }      with its own timeout in seconds
 *
 * Each test runs in its own process (tests/runner.c).  Asserts print both
 * operands and are never compiled out; a failed assert exits the test's
 * process with status 1.  SKIP("why") exits with status 77.
 */
#ifndef LW_TEST_H
#define LW_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef void (*lwt_fn)(void);

void lwt_register(const char *name, lwt_fn fn, int timeout_s);

#define TEST_T(name, timeout_s)                                        \
	static void test_##name(void);                                 \
	__attribute__((constructor)) static void register_##name(void) \
	{                                                              \
		lwt_register(#name, test_##name, timeout_s);           \
	}                                                              \
	static void test_##name(void)

#define TEST(name) TEST_T(name, 30)

#define LWT_FAIL(...)                                           \
	do {                                                    \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__);                   \
		fprintf(stderr, "\n");                          \
		fflush(stderr);                                 \
		_exit(1);                                       \
	} while (0)

#define SKIP(...)                             \
	do {                                  \
		fprintf(stderr, "skip: ");    \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, "\n");        \
		fflush(stderr);               \
		_exit(77);                    \
	} while (0)

#define ASSERT(cond)                                             \
	do {                                                     \
		if (!(cond))                                     \
			LWT_FAIL("assertion failed: %s", #cond); \
	} while (0)

#define LWT_CMP(a, op, b)                                                     \
	do {                                                                  \
		long long lwt_a_ = (long long)(a), lwt_b_ = (long long)(b);   \
		if (!(lwt_a_ op lwt_b_))                                      \
			LWT_FAIL("assertion failed: %s %s %s (%lld %s %lld)", \
				 #a, #op, #b, lwt_a_, #op, lwt_b_);           \
	} while (0)

#define ASSERT_EQ(a, b) LWT_CMP(a, ==, b)
#define ASSERT_NE(a, b) LWT_CMP(a, !=, b)
#define ASSERT_LT(a, b) LWT_CMP(a, <, b)
#define ASSERT_LE(a, b) LWT_CMP(a, <=, b)
#define ASSERT_GT(a, b) LWT_CMP(a, >, b)
#define ASSERT_GE(a, b) LWT_CMP(a, >=, b)

/* For calls that return 0 or -errno. */
#define ASSERT_OK(expr)                                                     \
	do {                                                                \
		long long lwt_r_ = (long long)(expr);                       \
		if (lwt_r_ != 0)                                            \
			LWT_FAIL("%s returned %lld (%s)", #expr, lwt_r_,    \
				 lwt_r_ < 0 ? strerror((int)-lwt_r_) : ""); \
	} while (0)

#define ASSERT_STREQ(a, b)                                                \
	do {                                                              \
		const char *lwt_a_ = (a), *lwt_b_ = (b);                  \
		if (lwt_a_ == NULL || lwt_b_ == NULL ||                   \
		    strcmp(lwt_a_, lwt_b_) != 0)                          \
			LWT_FAIL("assertion failed: %s == %s (\"%s\" vs " \
				 "\"%s\")",                               \
				 #a, #b, lwt_a_ ? lwt_a_ : "(null)",      \
				 lwt_b_ ? lwt_b_ : "(null)");             \
	} while (0)

/* The build folder (the parent of the runner's folder), for helper
 * programs: lwt_build_path("examples/log_upload"). */
const char *lwt_build_path(const char *rel);

/* Read one line (without the newline) from fd within timeout_ms; its length,
 * or -1 on timeout, EOF or error.  For reading what a started program says. */
int lwt_read_line(int fd, char *buf, size_t cap, int timeout_ms);

/* In a child just forked: run argv[0] with no signal blocked (the runner
 * blocks some, and the mask would pass through exec); if it cannot be run,
 * say why on stderr and _exit(127). */
void lwt_exec(char *const argv[]) __attribute__((noreturn));

/* Start argv[0] with stdout (and stderr too, with merge_stderr) on a pipe
 * whose read end goes to *out; tmpdir, if not NULL, becomes TMPDIR.  The
 * child starts with no signal blocked. */
pid_t lwt_spawn(char *const argv[], int *out, int merge_stderr,
		const char *tmpdir);
/* Read until EOF or timeout; the bytes read, NUL-terminated in buf. */
size_t lwt_read_all(int fd, char *buf, size_t cap, int timeout_ms);
/* Wait for pid within timeout_ms, failing the test (after SIGKILL) past it;
 * returns the wait status. */
int lwt_wait_exit(pid_t pid, int timeout_ms);

/* CLOCK_MONOTONIC in ns and ms, for measuring inside tests. */
uint64_t lwt_now_ns(void);
double lwt_now_ms(void);

#include <unistd.h>

#endif /* LW_TEST_H */
