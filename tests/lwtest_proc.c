/*
 * lwtest_proc.c - what tests that start real servers and the real
 * loopwatch share: TCP and HTTP requests to a server under test, starting
 * a server and learning its port, and running loopwatch to its end.
 */
#include "lwtest.h"
#include "lwtest_proc.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

int lwt_tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port) };

	ASSERT(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	struct timeval tv = { 30, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Send a request and read the answer until the server closes, or until
 * `until` appears in it (NULL: until close). */
void lwt_ask(uint16_t port, const char *req, const char *until)
{
	int fd = lwt_tcp_connect(port);
	char buf[8192];
	size_t len = 0;

	ASSERT_EQ(send(fd, req, strlen(req), MSG_NOSIGNAL),
		  (ssize_t)strlen(req));
	for (;;) {
		ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		ASSERT(r >= 0);
		if (r == 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		if ((until && strstr(buf, until)) || len + 1 == sizeof(buf))
			break;
	}
	close(fd);
}

void lwt_http_get(uint16_t port, const char *target)
{
	char req[512];

	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
		 "close\r\n\r\n",
		 target);
	lwt_ask(port, req, NULL);
}

/* Start argv and read lines until one contains `marker`; its port (the
 * number after "127.0.0.1:") in *port. */
pid_t lwt_start_listener(char **argv, const char *marker, uint16_t *port,
			 int *out)
{
	char line[1024];
	pid_t pid = lwt_spawn(argv, out, 1, NULL);

	*port = 0;
	while (lwt_read_line(*out, line, sizeof(line), 60000) >= 0) {
		const char *s = strstr(line, marker);
		if (s && (s = strstr(s, "127.0.0.1:"))) {
			*port = (uint16_t)atoi(s + strlen("127.0.0.1:"));
			break;
		}
	}
	if (*port == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		LWT_FAIL("%s did not say where it listens", argv[0]);
	}
	return pid;
}

/* Run loopwatch with argv (after "loopwatch"), its output in out; returns
 * its exit status (-1 if it did not exit normally). */
int lwt_loopwatch(char **args, char *out, size_t cap)
{
	return lwt_loopwatch_on(args, out, cap, NULL, NULL, NULL);
}

int lwt_loopwatch_on(char **args, char *out, size_t cap, const char *marker,
		     void (*fn)(void *), void *arg)
{
	char *argv[32], line[4096];
	int fd, n = 0;
	size_t len = 0;

	argv[n++] = strdup(lwt_build_path("bin/loopwatch"));
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = lwt_spawn(argv, &fd, 1, NULL);
	free(argv[0]);
	/* Up to the marker line by lines, so that nothing after it is read
	 * before fn has run. */
	while (marker && len + 1 < cap &&
	       lwt_read_line(fd, line, sizeof(line), 60000) >= 0) {
		int w = snprintf(out + len, cap - len, "%s\n", line);
		len += w < 0		       ? 0
		       : (size_t)w < cap - len ? (size_t)w
					       : cap - len - 1;
		if (strstr(line, marker)) {
			fn(arg);
			break;
		}
	}
	lwt_read_all(fd, out + len, cap - len, 60000);
	close(fd);
	int st = lwt_wait_exit(pid, 10000);
	fprintf(stderr, "%s", out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void lwt_ask_all(void *asks)
{
	const struct lwt_asks *a = asks;

	for (const char *const *t = a->targets; *t; t++)
		lwt_http_get(a->port, *t);
}

pid_t lwt_start_blocky(uint16_t *port, int *fd)
{
	char *argv[] = { strdup(lwt_build_path("examples/blocky_server")),
			 "--port",
			 "0",
			 "--threads",
			 "2",
			 NULL };
	pid_t pid = lwt_start_listener(argv, "listening on", port, fd);
	free(argv[0]);
	return pid;
}

/* Add the prog_id of every fd of pid to ids. */
static size_t held_by(pid_t pid, unsigned *ids, size_t n, size_t max)
{
	char path[64];
	struct dirent *d;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		return n; /* gone meanwhile */
	while ((d = readdir(dir)) != NULL && n < max) {
		char p[600], l[256];
		snprintf(p, sizeof(p), "%s/%s", path, d->d_name);
		FILE *f = fopen(p, "r");
		if (f == NULL)
			continue; /* closed meanwhile, or "." */
		while (fgets(l, sizeof(l), f))
			if (strncmp(l, "prog_id:", 8) == 0 && n < max)
				ids[n++] = (unsigned)strtoul(l + 8, NULL, 10);
		fclose(f);
	}
	closedir(dir);
	return n;
}

size_t lwt_bpf_progs_held(pid_t pid, unsigned *ids, size_t max)
{
	struct dirent *d;
	size_t n = 0;

	if (pid > 0)
		return held_by(pid, ids, 0, max);
	DIR *proc = opendir("/proc");
	ASSERT(proc != NULL);
	while ((d = readdir(proc)) != NULL)
		if (isdigit((unsigned char)d->d_name[0]))
			n = held_by((pid_t)atoi(d->d_name), ids, n, max);
	closedir(proc);
	return n;
}

size_t lwt_bpf_progs_all(unsigned *ids, size_t max)
{
	__u32 id = 0;
	size_t n = 0;

	while (n < max && bpf_prog_get_next_id(id, &id) == 0)
		ids[n++] = id;
	return n;
}

int lwt_bpf_prog_alive(unsigned id)
{
	int fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int lwt_run_split(char **argv, char *out, size_t outcap, char *err,
		  size_t errcap)
{
	int po[2], pe[2];

	ASSERT_OK(pipe2(po, O_CLOEXEC));
	ASSERT_OK(pipe2(pe, O_CLOEXEC));
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		lwt_exec(argv);
	}
	close(po[1]);
	close(pe[1]);
	/* Both pipes at once, so that neither fills while the other is
	 * read. */
	struct pollfd p[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
	char *buf[2] = { out, err };
	size_t cap[2] = { outcap, errcap }, len[2] = { 0, 0 };
	double deadline = lwt_now_ms() + 60000;
	int open_fds = 2;
	while (open_fds > 0 && lwt_now_ms() < deadline) {
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || p[i].revents == 0)
				continue;
			char tmp[4096];
			ssize_t n = read(p[i].fd, tmp, sizeof(tmp));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			size_t room = cap[i] - 1 - len[i];
			size_t k = (size_t)n < room ? (size_t)n : room;
			memcpy(buf[i] + len[i], tmp, k);
			len[i] += k;
		}
	}
	for (int i = 0; i < 2; i++) {
		buf[i][len[i]] = '\0';
		if (p[i].fd >= 0)
			close(p[i].fd);
	}
	int st = lwt_wait_exit(pid, 10000);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int lwt_sh_capture(const char *cmd, char *text, size_t cap)
{
	char out[] = "/tmp/lw-sh-XXXXXX", full[8192];
	int fd = mkstemp(out);

	ASSERT(fd >= 0);
	close(fd);
	snprintf(full, sizeof(full), "%s >'%s' 2>&1", cmd, out);
	ASSERT(strlen(full) < sizeof(full) - 1);
	int st = system(full);
	fd = open(out, O_RDONLY | O_CLOEXEC);
	ASSERT(fd >= 0);
	size_t len = 0;
	ssize_t n;
	while (len < cap - 1 &&
	       (n = read(fd, text + len, cap - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		ASSERT(n > 0);
		len += (size_t)n;
	}
	close(fd);
	unlink(out);
	text[len] = '\0';
	return st;
}

pid_t lwt_gone_pid(void)
{
	pid_t gone = fork();

	if (gone == 0)
		_exit(0);
	ASSERT(gone > 0);
	ASSERT_EQ(waitpid(gone, NULL, 0), gone);
	return gone;
}
