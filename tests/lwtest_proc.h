/*
 * lwtest_proc.h - helpers for tests that start real servers and the real
 * loopwatch (lwtest_proc.c).  They fail the test (LWT_FAIL) on errors.
 */
#ifndef LWTEST_PROC_H
#define LWTEST_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A TCP connection to 127.0.0.1:port with a 30 s receive timeout. */
int lwt_tcp_connect(uint16_t port);

/* Send a request and read the answer until the server closes, or until
 * `until` appears in it (NULL: until close). */
void lwt_ask(uint16_t port, const char *req, const char *until);

/* GET target over HTTP/1.1 and read the whole answer. */
void lwt_http_get(uint16_t port, const char *target);

/* Start argv and read lines until one contains `marker`; its port (the
 * number after "127.0.0.1:") in *port, the output's fd in *out. */
pid_t lwt_start_listener(char **argv, const char *marker, uint16_t *port,
			 int *out);

/* examples/blocky_server on a free port with two pool threads, started
 * and listening: its port in *port, its output's fd in *fd. */
pid_t lwt_start_blocky(uint16_t *port, int *fd);

/* Run build/bin/loopwatch with args (after "loopwatch"; NULL-ended), its
 * output (stdout and stderr) in out; returns its exit status, -1 if it did
 * not exit normally.  The output is copied to stderr for the test log. */
int lwt_loopwatch(char **args, char *out, size_t cap);

/* BPF programs, as root.  The ids that process pid holds through its fds,
 * programs and links alike (from /proc/PID/fdinfo), or with pid 0 the ids
 * that any process holds; a program may appear more than once. */
size_t lwt_bpf_progs_held(pid_t pid, unsigned *ids, size_t max);
/* The ids of every BPF program loaded now, in ascending order. */
size_t lwt_bpf_progs_all(unsigned *ids, size_t max);
/* Whether BPF program id is still loaded. */
int lwt_bpf_prog_alive(unsigned id);

/* The same, and once loopwatch's output has a line that contains marker
 * (such as "attached to PID": the watch is on), fn(arg) runs before the
 * rest is read.  A loopwatch that never says it, fn never sees. */
int lwt_loopwatch_on(char **args, char *out, size_t cap, const char *marker,
		     void (*fn)(void *), void *arg);

/* For lwt_loopwatch_on: GET each of targets (NULL-ended) in turn. */
struct lwt_asks {
	uint16_t port;
	const char *const *targets;
};
void lwt_ask_all(void *asks);

/* Run argv (argv[0] a path) to its end with stdin on /dev/null and its
 * stdout and stderr apart, in out and err (NUL-terminated, cut to fit):
 * for tests that hold a command to what goes where.  Returns its exit
 * status, -1 if it did not exit normally. */
int lwt_run_split(char **argv, char *out, size_t outcap, char *err,
		  size_t errcap);

/* A pid that no process has: a child's, exited and reaped. */
pid_t lwt_gone_pid(void);

/* Run the shell command cmd, its stdout and stderr together through a
 * temporary file into text (NUL-terminated, cut to fit cap), for the
 * scripts a test runs whole.  Returns the wait status of system(3). */
int lwt_sh_capture(const char *cmd, char *text, size_t cap);

#endif /* LWTEST_PROC_H */
