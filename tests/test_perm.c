/*
 * test_perm.c - who may watch whom, with real processes as real users
 * (setpriv, from util-linux, starts each side as its own unprivileged
 * uid; they need not be in /etc/passwd).  The rings follow ptrace's rule
 * for reading a process (PTRACE_MODE_READ): its own user (same uid and
 * gid, and the process dumpable) or root.
 *
 *   perm_other_user_refused          another user's process: exit 2, one
 *                                    line that says whose it is, and a
 *                                    hint; list and dump do not show it
 *   perm_other_group_refused         the same uid with another gid: the
 *                                    same (it used to look ringless)
 *   perm_ring_closed_to_other_user   no other way in for that user: the
 *                                    fd, task fd, map_files, mem, maps,
 *                                    process_vm_readv, pidfd_getfd, root;
 *                                    nothing in /dev/shm
 *   perm_own_process_ring_read_only  one's own process: attached, rings
 *                                    only, one line on stderr about the
 *                                    probes; the agent maps the ring
 *                                    read-only from an O_RDONLY fd
 *   perm_nondumpable_refused         a process that made itself
 *                                    non-dumpable refuses its own user,
 *                                    as ptrace does; root may still
 *
 * The report of the rings alone (a slow callback named) is
 * stall_unprivileged_rings_alone's (test_stalls.c).
 */
#include "lwtest.h"
#include "lwtest_proc.h"
#include "loopwatch_ring.h"
#include "proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define OWNER 65534 /* the target's user: nobody */
#define OTHER 65533 /* another user, with no name */
#define CAP (1 << 16)

static void need_setpriv(void)
{
	if (geteuid() != 0)
		SKIP("needs root to start both sides as other users");
	if (access("/usr/bin/setpriv", X_OK) != 0)
		SKIP("no /usr/bin/setpriv (util-linux)");
}

/* argv for: setpriv as uid:gid, then path and args (NULL-ended); the
 * strings are static, one call at a time. */
static char **as_user(int uid, int gid, const char *path, char **args)
{
	static char ruid[32], rgid[32], prog[512];
	static char *argv[32];
	int n = 0;

	snprintf(ruid, sizeof(ruid), "--reuid=%d", uid);
	snprintf(rgid, sizeof(rgid), "--regid=%d", gid);
	snprintf(prog, sizeof(prog), "%s", path);
	argv[n++] = "/usr/bin/setpriv";
	argv[n++] = ruid;
	argv[n++] = rgid;
	argv[n++] = "--clear-groups";
	argv[n++] = prog;
	for (int i = 0; args && args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return argv;
}

/* loopwatch ARGS as uid:gid, stdout and stderr apart. */
static int lw_as(int uid, int gid, char **args, char *out, char *err)
{
	char **argv = as_user(uid, gid, lwt_build_path("bin/loopwatch"), args);
	int rc = lwt_run_split(argv, out, CAP, err, CAP);
	fprintf(stderr, "as %d:%d: loopwatch %s ... -> %d\n%s%s", uid, gid,
		args[0], rc, out, err);
	return rc;
}

/* blocky_server as uid OWNER, listening. */
static pid_t blocky_as_owner(uint16_t *port, int *fd)
{
	char *args[] = { "--port", "0", NULL };
	char **argv = as_user(OWNER, OWNER,
			      lwt_build_path("examples/blocky_server"), args);
	return lwt_start_listener(argv, "listening on", port, fd);
}

static void stop(pid_t pid, int fd)
{
	kill(pid, SIGTERM);
	lwt_wait_exit(pid, 10000);
	close(fd);
}

/* The lines of text: how many, and the first two in l1 and l2. */
static int lines(const char *text, char *l1, char *l2, size_t cap)
{
	int n = 0;

	l1[0] = l2[0] = '\0';
	for (const char *s = text; *s;) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		if (n < 2)
			snprintf(n == 0 ? l1 : l2, cap, "%.*s", (int)len, s);
		n++;
		s += len + (nl != NULL);
	}
	return n;
}

/* "name (uid N)" as loopwatch says it. */
static void user_name(int uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid((uid_t)uid);
	if (pw)
		snprintf(buf, len, "%s (uid %d)", pw->pw_name, uid);
	else
		snprintf(buf, len, "uid %d", uid);
}

/* A refusal: exit 2, nothing on stdout, the line and its hint. */
static void assert_refused(int rc, const char *out, const char *err,
			   const char *line, const char *hint)
{
	char l1[1024], l2[1024];

	ASSERT_EQ(rc, 2);
	ASSERT_STREQ(out, "");
	ASSERT_EQ(lines(err, l1, l2, sizeof(l1)), 2);
	if (strstr(l1, line) == NULL)
		LWT_FAIL("'%s' is not in '%s'", line, l1);
	ASSERT(strncmp(l2, "loopwatch: hint: ", 17) == 0);
	if (strstr(l2, hint) == NULL)
		LWT_FAIL("'%s' is not in '%s'", hint, l2);
}

TEST_T(perm_other_user_refused, 60)
{
	static char out[CAP], err[CAP];
	char pidbuf[16], want[256], hint[256], owner[64], other[64];
	char dir[] = "/tmp/lwpermXXXXXX", rec[64];
	uint16_t port;
	int sfd;

	need_setpriv();
	ASSERT(mkdtemp(dir) != NULL);
	ASSERT_OK(chmod(dir, 0777));
	snprintf(rec, sizeof(rec), "%s/r.lwrec", dir);
	pid_t srv = blocky_as_owner(&port, &sfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	user_name(OWNER, owner, sizeof(owner));
	user_name(OTHER, other, sizeof(other));
	snprintf(want, sizeof(want),
		 "loopwatch: cannot attach to PID %d: it runs as %s and "
		 "loopwatch as %s: only its own user, or root, may read its "
		 "rings",
		 (int)srv, owner, other);
	snprintf(hint, sizeof(hint),
		 "run loopwatch as the process's user, %s, or as root", owner);

	char *attach[] = { "attach", "--duration", "1", pidbuf, NULL };
	assert_refused(lw_as(OTHER, OTHER, attach, out, err), out, err, want,
		       hint);
	char *dump[] = { "dump", pidbuf, NULL };
	assert_refused(lw_as(OTHER, OTHER, dump, out, err), out, err, want,
		       hint);
	char *check[] = { "check",	"--budget", "callback.max=50ms",
			  "--duration", "1",	    pidbuf,
			  NULL };
	assert_refused(lw_as(OTHER, OTHER, check, out, err), out, err, want,
		       hint);
	char *record[] = {
		"record", "-o", rec, "--duration", "1", pidbuf, NULL
	};
	assert_refused(lw_as(OTHER, OTHER, record, out, err), out, err, want,
		       hint);
	ASSERT(access(rec, F_OK) < 0); /* no recording left behind */

	/* list: not shown, only counted. */
	char *list[] = { "list", NULL };
	ASSERT_EQ(lw_as(OTHER, OTHER, list, out, err), 0);
	for (const char *s = out; (s = strstr(s, pidbuf)) != NULL; s++)
		ASSERT(!((s == out || s[-1] == ' ') &&
			 s[strlen(pidbuf)] == ' '));
	ASSERT(strstr(err, "could not be inspected") != NULL);
	/* Its owner sees it. */
	ASSERT_EQ(lw_as(OWNER, OWNER, list, out, err), 0);
	ASSERT(strstr(out, "blocky_server") != NULL);

	stop(srv, sfd);
	rmdir(dir);
}

/* The same uid, another gid: refused (the kernel wants the three gids
 * too), and said so, where it used to read as a process without rings
 * (the fd folder opens, only each link is refused). */
TEST_T(perm_other_group_refused, 60)
{
	static char out[CAP], err[CAP];
	char pidbuf[16], want[256];
	uint16_t port;
	int sfd;

	need_setpriv();
	pid_t srv = blocky_as_owner(&port, &sfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	snprintf(want, sizeof(want),
		 "loopwatch: cannot attach to PID %d: it runs as group %d "
		 "and loopwatch as group %d (the same user)",
		 (int)srv, OWNER, OTHER);
	char *attach[] = { "attach", "--duration", "1", pidbuf, NULL };
	assert_refused(lw_as(OWNER, OTHER, attach, out, err), out, err, want,
		       "with the process's group, gid 65534, or as root");
	char *dump[] = { "dump", pidbuf, NULL };
	assert_refused(lw_as(OWNER, OTHER, dump, out, err), out, err, want,
		       "gid 65534");
	stop(srv, sfd);
}

/* The fds of a process that name a ring's memfd, as the agent finds them
 * (lw_proc_each_fd). */
struct ring_fds {
	int fd[16];
	int n;
};

static int note_ring_fd(int fd, const char *target, void *arg)
{
	struct ring_fds *r = arg;

	if (strcmp(target, "/memfd:" LW_RING_MEMFD_NAME " (deleted)") == 0 &&
	    r->n < (int)(sizeof(r->fd) / sizeof(r->fd[0])))
		r->fd[r->n++] = fd;
	return 0;
}

static struct ring_fds ring_fds_of(pid_t pid)
{
	struct ring_fds r = { .n = 0 };

	ASSERT_OK(lw_proc_each_fd(pid, note_ring_fd, &r));
	return r;
}

/* The ring's fd number in pid and where pid maps it ("START-END"). */
static void find_ring(pid_t pid, int *fdnum, char *range, size_t len)
{
	char path[64], line[512];
	struct ring_fds r = ring_fds_of(pid);

	ASSERT(r.n > 0);
	*fdnum = r.fd[r.n - 1];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	ASSERT(f != NULL);
	range[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "/memfd:loopwatch") && range[0] == '\0')
			snprintf(range, len, "%.*s", (int)strcspn(line, " "),
				 line);
	fclose(f);
	ASSERT(range[0] != '\0');
}

/* Every other path to the ring, as another user: each refused. */
TEST_T(perm_ring_closed_to_other_user, 60)
{
	char fdpath[64], taskfd[96], mapfile[128], path[64];
	char range[64];
	uint16_t port;
	int sfd, fdnum;

	need_setpriv();
	pid_t srv = blocky_as_owner(&port, &sfd);
	find_ring(srv, &fdnum, range, sizeof(range));
	snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", (int)srv, fdnum);
	snprintf(taskfd, sizeof(taskfd), "/proc/%d/task/%d/fd/%d", (int)srv,
		 (int)srv, fdnum);
	snprintf(mapfile, sizeof(mapfile), "/proc/%d/map_files/%s", (int)srv,
		 range);
	unsigned long start = strtoul(range, NULL, 16);
	fprintf(stderr, "ring: fd %d of %d, mapped at %s\n", fdnum, (int)srv,
		range);

	/* The paths are right: root goes through each of them. */
	int fd = open(fdpath, O_RDONLY);
	ASSERT(fd >= 0);
	close(fd);
	fd = open(mapfile, O_RDONLY);
	ASSERT(fd >= 0);
	close(fd);

	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0) {
		char link[256];
		uint64_t word;
		if (setgroups(0, NULL) != 0 || setgid(OTHER) != 0 ||
		    setuid(OTHER) != 0)
			LWT_FAIL("cannot become uid %d", OTHER);
		/* The fd, by the process's folder and by its thread's. */
		ASSERT(open(fdpath, O_RDONLY) < 0 && errno == EACCES);
		ASSERT(open(taskfd, O_RDONLY) < 0 && errno == EACCES);
		ASSERT(readlink(fdpath, link, sizeof(link)) < 0);
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)srv);
		ASSERT(opendir(path) == NULL && errno == EACCES);
		/* The mapping, by its file and through the memory. */
		ASSERT(open(mapfile, O_RDONLY) < 0);
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)srv);
		ASSERT(open(path, O_RDONLY) < 0 && errno == EACCES);
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)srv);
		ASSERT(open(path, O_RDONLY) < 0 && errno == EACCES);
		struct iovec local = { &word, sizeof(word) };
		struct iovec remote = { (void *)start, sizeof(word) };
		ASSERT(process_vm_readv(srv, &local, 1, &remote, 1, 0) < 0 &&
		       errno == EPERM);
		/* A copy of the fd itself, through a pidfd. */
		int pfd = (int)syscall(SYS_pidfd_open, srv, 0);
		ASSERT(pfd >= 0);
		ASSERT(syscall(SYS_pidfd_getfd, pfd, fdnum, 0) < 0 &&
		       errno == EPERM);
		/* Its root, whence its files would be reached. */
		snprintf(path, sizeof(path), "/proc/%d/root/", (int)srv);
		ASSERT(opendir(path) == NULL && errno == EACCES);
		_exit(0);
	}
	int st;
	ASSERT_EQ(waitpid(child, &st, 0), child);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Nothing of it in /dev/shm: a memfd has no name in any folder. */
	DIR *shm = opendir("/dev/shm");
	if (shm != NULL) {
		struct dirent *d;
		while ((d = readdir(shm)) != NULL) {
			struct stat sb;
			char p[512];
			snprintf(p, sizeof(p), "/dev/shm/%s", d->d_name);
			ASSERT(strstr(d->d_name, "loopwatch") == NULL);
			if (d->d_name[0] != '.' && stat(p, &sb) == 0)
				ASSERT_NE(sb.st_uid, OWNER);
		}
		closedir(shm);
	}
	stop(srv, sfd);
}

/* The agent's own view of the ring, while it watches. */
static void agent_maps_read_only(pid_t agent)
{
	char path[64], line[512], fdp[512];
	int in_ring = 0, rings = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)agent);
	FILE *f = fopen(path, "r");
	ASSERT(f != NULL);
	while (fgets(line, sizeof(line), f)) {
		char perms[8];
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3) {
			in_ring = strstr(line, "/memfd:loopwatch") != NULL;
			if (in_ring) {
				fprintf(stderr, "agent: %s", line);
				ASSERT_STREQ(perms, "r--s");
				rings++;
			}
		} else if (in_ring && strncmp(line, "VmFlags:", 8) == 0) {
			/* A shared mapping of a file not opened for writing
			 * loses "sh" and "mw" (may write), keeping "ms": the
			 * fd was O_RDONLY, and mprotect cannot make the
			 * mapping writable. */
			fprintf(stderr, "agent: %s", line);
			ASSERT(strstr(line, " rd") && strstr(line, " ms"));
			ASSERT(strstr(line, " wr") == NULL);
			ASSERT(strstr(line, " mw") == NULL);
			ASSERT(strstr(line, " sh") == NULL);
		}
	}
	fclose(f);
	ASSERT_GE(rings, 1);
	/* An fd of the ring still open (the reader closes it once mapped)
	 * would be read-only too. */
	struct ring_fds rf = ring_fds_of(agent);
	for (int i = 0; i < rf.n; i++) {
		snprintf(fdp, sizeof(fdp), "/proc/%d/fdinfo/%d", (int)agent,
			 rf.fd[i]);
		FILE *fi = fopen(fdp, "r");
		ASSERT(fi != NULL);
		unsigned flags = 0;
		while (fgets(line, sizeof(line), fi))
			sscanf(line, "flags: %o", &flags);
		fclose(fi);
		ASSERT_EQ(flags & O_ACCMODE, O_RDONLY);
	}
}

TEST_T(perm_own_process_ring_read_only, 60)
{
	char pidbuf[16], line[1024], errpath[] = "/tmp/lwpermerrXXXXXX";
	static char rest[CAP], err[CAP];
	uint16_t port;
	int sfd, p[2];

	need_setpriv();
	/* Yama restricts ptrace's attach mode only: the rings, read in its
	 * read mode, are the same whatever the scope. */
	FILE *y = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
	int scope = -1;
	if (y != NULL) {
		if (fscanf(y, "%d", &scope) != 1)
			scope = -1;
		fclose(y);
	}
	fprintf(stderr, "kernel.yama.ptrace_scope: %s%d\n",
		y ? "" : "(no Yama here) ", scope);

	pid_t srv = blocky_as_owner(&port, &sfd);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)srv);
	int efd = mkstemp(errpath);
	ASSERT(efd >= 0);
	ASSERT_OK(pipe2(p, O_CLOEXEC));
	char *args[] = { "attach", "--duration", "3", pidbuf, NULL };
	char **argv =
		as_user(OWNER, OWNER, lwt_build_path("bin/loopwatch"), args);
	pid_t agent = fork();
	ASSERT(agent >= 0);
	if (agent == 0) {
		dup2(p[1], 1);
		dup2(efd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	close(efd);
	ASSERT(lwt_read_line(p[0], line, sizeof(line), 30000) >= 0);
	fprintf(stderr, "%s\n", line);
	ASSERT(strstr(line, "attached to PID") != NULL);
	ASSERT(strstr(line, "1 loop with rings, kernel probes off") != NULL);
	agent_maps_read_only(agent);
	lwt_read_all(p[0], rest, sizeof(rest), 30000);
	close(p[0]);
	int st = lwt_wait_exit(agent, 10000);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* One line on stderr: what is missing and what it takes. */
	int fd = open(errpath, O_RDONLY);
	ASSERT(fd >= 0);
	lwt_read_all(fd, err, sizeof(err), 1000);
	close(fd);
	unlink(errpath);
	fprintf(stderr, "%s", err);
	char l1[1024], l2[1024];
	ASSERT_EQ(lines(err, l1, l2, sizeof(l1)), 1);
	ASSERT(strncmp(l1, "loopwatch: kernel probes unavailable (", 38) == 0);
	ASSERT(strstr(l1, "root or CAP_BPF+CAP_PERFMON") != NULL);
	ASSERT(strstr(l1, "; continuing with the rings alone") != NULL);
	stop(srv, sfd);
}

TEST_T(perm_nondumpable_refused, 60)
{
	static char out[CAP], err[CAP];
	char pidbuf[16], path[64], want[128], line[256];
	int tfd;

	need_setpriv();
	char *mode[] = { "nodump", NULL };
	char **argv = as_user(OWNER, OWNER,
			      lwt_build_path("tests/progs/ring_target"), mode);
	pid_t t = lwt_spawn(argv, &tfd, 1, NULL);
	while (lwt_read_line(tfd, line, sizeof(line), 30000) >= 0 &&
	       strncmp(line, "ready", 5) != 0)
		;
	ASSERT(strncmp(line, "ready", 5) == 0);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)t);

	/* What the kernel does: /proc/PID stays its user's, the files
	 * under it (fd among them) go to root, and its user may read
	 * neither them nor its memory, as for ptrace. */
	struct stat sb;
	snprintf(path, sizeof(path), "/proc/%d", (int)t);
	ASSERT_OK(stat(path, &sb));
	ASSERT_EQ(sb.st_uid, OWNER);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)t);
	ASSERT_OK(stat(path, &sb));
	ASSERT_EQ(sb.st_uid, 0);
	pid_t child = fork();
	ASSERT(child >= 0);
	if (child == 0) {
		uint64_t word;
		struct iovec local = { &word, sizeof(word) };
		struct iovec remote = { &word, sizeof(word) };
		if (setgroups(0, NULL) != 0 || setgid(OWNER) != 0 ||
		    setuid(OWNER) != 0)
			LWT_FAIL("cannot become uid %d", OWNER);
		ASSERT(opendir(path) == NULL && errno == EACCES);
		ASSERT(process_vm_readv(t, &local, 1, &remote, 1, 0) < 0 &&
		       errno == EPERM);
		_exit(0);
	}
	int st;
	ASSERT_EQ(waitpid(child, &st, 0), child);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* loopwatch as its own user: refused, and why. */
	snprintf(want, sizeof(want),
		 "loopwatch: cannot attach to PID %d: it is not dumpable",
		 (int)t);
	char *dump[] = { "dump", "--count", "1", pidbuf, NULL };
	assert_refused(lw_as(OWNER, OWNER, dump, out, err), out, err, want,
		       "run loopwatch as root");
	ASSERT(strstr(err, "prctl(PR_SET_DUMPABLE, 0)") != NULL);
	char *attach[] = { "attach", "--duration", "1", pidbuf, NULL };
	assert_refused(lw_as(OWNER, OWNER, attach, out, err), out, err, want,
		       "run loopwatch as root");

	/* Root may (CAP_SYS_PTRACE). */
	char *root_dump[] = { "dump", "--count", "1", pidbuf, NULL };
	ASSERT_EQ(lwt_loopwatch(root_dump, out, sizeof(out)), 0);
	ASSERT(strstr(out, "attached to PID") != NULL);
	ASSERT(strstr(out, "loop nodump") != NULL);

	kill(t, SIGKILL);
	waitpid(t, NULL, 0);
	close(tfd);
}
