/*
 * proc.c - reading /proc for the agent (see proc.h).
 */
#include "proc.h"
#include "text.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "why.h"

/* A decimal field at *p (up to end): its value, and *p moved past it.
 * -EINVAL unless it is digits ending at a space or the end. */
static int parse_u64(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	int digits = 0;

	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
		digits++;
	}
	if (digits == 0 || (p < end && !isspace((unsigned char)*p)))
		return -EINVAL;
	*pp = p;
	*out = v;
	return 0;
}

int lw_proc_stat_parse(const char *buf, size_t len, lw_proc_stat_t *out)
{
	const char *open = memchr(buf, '(', len);
	const char *close = NULL;
	const char *end = buf + len;

	memset(out, 0, sizeof(*out));
	out->exit_code = -1;
	/* comm may itself contain ')' (and spaces): the real end of the field
	 * is the last ')' of the line. */
	for (const char *p = buf; p < end; p++)
		if (*p == ')')
			close = p;
	if (open == NULL || close == NULL || close < open)
		return -EINVAL;
	size_t n = (size_t)(close - open - 1);
	if (n >= sizeof(out->comm))
		n = sizeof(out->comm) - 1;
	memcpy(out->comm, open + 1, n);
	out->comm[n] = '\0';
	lw_text_clean(out->comm); /* the target names itself */

	/* Fields 3 onwards follow ") ".  Up to starttime (22) they must all
	 * be there; those after it come with newer kernels and the right to
	 * read them, and are taken when they parse. */
	const char *p = close + 1;
	for (int field = 3; field <= 52; field++) {
		uint64_t v;
		while (p < end && *p == ' ')
			p++;
		if (p >= end || *p == '\n')
			return field > 22 ? 0 : -EINVAL;
		switch (field) {
		case 3:
			out->state = *p;
			break;
		case 4:
		case 9:
		case 22:
		case 26:
		case 27:
		case 28:
		case 47:
		case 52:
			if (parse_u64(&p, end, &v) < 0) {
				if (field <= 22)
					return -EINVAL;
				return 0;
			}
			if (field == 4)
				out->ppid = v <= INT_MAX ? (pid_t)v : 0;
			else if (field == 9)
				out->flags = (unsigned long)v;
			else if (field == 22)
				out->start_time = v;
			else if (field == 26)
				out->start_code = v;
			else if (field == 27)
				out->end_code = v;
			else if (field == 28)
				out->start_stack = v;
			else if (field == 47)
				out->start_brk = v;
			else
				out->exit_code = v <= INT_MAX ? (int)v : -1;
			continue;
		}
		while (p < end && *p != ' ')
			p++;
	}
	return 0;
}

/* The fields the narrow readers ask for, each where it is wanted. */
static void give_fields(const lw_proc_stat_t *s, uint64_t *start_time,
			char *state, char *comm, size_t commlen)
{
	if (start_time != NULL)
		*start_time = s->start_time;
	if (state != NULL)
		*state = s->state;
	if (comm != NULL && commlen > 0)
		snprintf(comm, commlen, "%s", s->comm);
}

int lw_proc_parse_stat(const char *buf, size_t len, uint64_t *start_time,
		       char *state, char *comm, size_t commlen)
{
	lw_proc_stat_t s;
	int r = lw_proc_stat_parse(buf, len, &s);

	if (r < 0)
		return r;
	give_fields(&s, start_time, state, comm, commlen);
	return 0;
}

int lw_proc_stat(pid_t pid, lw_proc_stat_t *out)
{
	char path[64], buf[1024];

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n;
	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	int err = errno;
	close(fd);
	/* A process that exited between open and read reads as ESRCH. */
	if (n < 0)
		return err == ESRCH ? -ESRCH : -err;
	if (n == 0)
		return -ESRCH;
	return lw_proc_stat_parse(buf, (size_t)n, out);
}

static int read_stat(pid_t pid, uint64_t *start_time, char *state, char *comm,
		     size_t commlen)
{
	lw_proc_stat_t s;
	int r = lw_proc_stat(pid, &s);

	if (r < 0)
		return r;
	give_fields(&s, start_time, state, comm, commlen);
	return 0;
}

int lw_proc_start_time(pid_t pid, uint64_t *start_time)
{
	char state = '?';
	int r = read_stat(pid, start_time, &state, NULL, 0);
	/* A zombie keeps its stat (and start time) until it is reaped, but
	 * it has exited: its rings will never move again. */
	if (r == 0 && (state == 'Z' || state == 'X'))
		return -ESRCH;
	return r;
}

int lw_proc_comm(pid_t pid, char *comm, size_t commlen)
{
	return read_stat(pid, NULL, NULL, comm, commlen);
}

int lw_proc_kernel_thread(pid_t pid)
{
	lw_proc_stat_t s;
	int r = lw_proc_stat(pid, &s);

	if (r < 0)
		return r;
	return (s.flags & LW_PF_KTHREAD) != 0;
}

/* "Uid:" or "Gid:" of /proc/PID/status: real, effective, saved, fs. */
static int parse_ids(const char *buf, const char *key, unsigned long ids[4])
{
	const char *p = strstr(buf, key);

	if (p == NULL || (p != buf && p[-1] != '\n'))
		return -EINVAL;
	p += strlen(key);
	for (int i = 0; i < 4; i++) {
		char *end;
		errno = 0;
		ids[i] = strtoul(p, &end, 10);
		if (errno != 0 || end == p)
			return -EINVAL;
		p = end;
	}
	return 0;
}

int lw_proc_ids(pid_t pid, uid_t uid[4], gid_t gid[4])
{
	char path[64], buf[4096];
	unsigned long u[4], g[4];

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	int err = errno;
	close(fd);
	if (n <= 0)
		return n == 0 || err == ESRCH ? -ESRCH : -err;
	buf[n] = '\0';
	if (parse_ids(buf, "Uid:", u) < 0 || parse_ids(buf, "Gid:", g) < 0)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		uid[i] = (uid_t)u[i];
		gid[i] = (gid_t)g[i];
	}
	return 0;
}

const char *lw_proc_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res != NULL)
		snprintf(buf, len, "%s (uid %lu)", pw.pw_name,
			 (unsigned long)uid);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
	return buf;
}

int lw_proc_denied(pid_t pid, char *why, size_t whylen)
{
	uid_t u[4], me = geteuid();
	gid_t g[4], my_gid = getegid();
	char them[128], us[128], path[64];
	struct stat st;

	/* The kernel's rule (__ptrace_may_access, in the mode that
	 * /proc/PID/fd asks for): the reader's fs uid must be the target's
	 * real, effective and saved uid, and its fs gid the three gids;
	 * then the target must be dumpable.  CAP_SYS_PTRACE overrides
	 * both; the Yama LSM plays no part in this mode. */
	int r = lw_proc_ids(pid, u, g);
	if (r == -ESRCH) {
		lw_why(why, whylen, "no such process");
		return -ESRCH;
	}
	if (r == 0 && (u[0] != me || u[1] != me || u[2] != me)) {
		lw_why(why, whylen,
		       "it runs as %s and loopwatch as %s: only its own user, "
		       "or root, may read its rings",
		       lw_proc_user_name(u[1] != me   ? u[1]
					 : u[0] != me ? u[0]
						      : u[2],
					 them, sizeof(them)),
		       lw_proc_user_name(me, us, sizeof(us)));
		return -EACCES;
	}
	if (r == 0 && (g[0] != my_gid || g[1] != my_gid || g[2] != my_gid)) {
		lw_why(why, whylen,
		       "it runs as group %lu and loopwatch as group %lu (the "
		       "same user): only its own user and group, or root, may "
		       "read its rings",
		       (unsigned long)(g[1] != my_gid ? g[1] : g[0]),
		       (unsigned long)my_gid);
		return -EACCES;
	}
	/* The same user: the kernel gives the /proc files of a process that
	 * is not dumpable to root, /proc/PID itself excepted. */
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (r == 0 && me != 0 && stat(path, &st) == 0 && st.st_uid == 0) {
		lw_why(why, whylen,
		       "it is not dumpable (it called prctl(PR_SET_DUMPABLE, "
		       "0), or runs a setuid or setgid program), so the "
		       "kernel keeps its fds from its own user as it keeps "
		       "ptrace out");
		return -EPERM;
	}
	lw_why(why, whylen, "not permitted to read /proc/%d/fd", (int)pid);
	return -EACCES;
}

int lw_proc_readlink(const char *path, char *buf, size_t len)
{
	if (len == 0)
		return -ENAMETOOLONG;
	ssize_t n = readlink(path, buf, len);
	if (n < 0)
		return -errno;
	if ((size_t)n >= len) {
		buf[len - 1] = '\0';
		return -ENAMETOOLONG;
	}
	buf[n] = '\0';
	return (int)n;
}

/* A decimal directory entry name as a positive int, or -1. */
static int parse_num(const char *s)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return -1;
	}
	return (int)v;
}

int lw_proc_each_fd(pid_t pid, lw_proc_fd_fn fn, void *arg)
{
	char path[64], link[PATH_MAX];
	struct dirent *de;
	int ret = 0;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((de = readdir(d)) != NULL) {
		int fd = parse_num(de->d_name);
		if (fd < 0)
			continue;
		char fdpath[96];
		snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", (int)pid,
			 fd);
		/* The fd may have closed since readdir; pass "" and let the
		 * caller skip it.  A refusal is not that: the folder can be
		 * open to us (its owner is ours) while each link takes the
		 * ptrace check, which a process of our user but another
		 * group fails. */
		int n = lw_proc_readlink(fdpath, link, sizeof(link));
		if (n == -EACCES || n == -EPERM) {
			ret = -EACCES;
			break;
		}
		if (n < 0)
			link[0] = '\0';
		ret = fn(fd, link, arg);
		if (ret != 0)
			break;
	}
	closedir(d);
	return ret;
}

int lw_proc_each_pid(lw_proc_pid_fn fn, void *arg)
{
	struct dirent *de;
	int ret = 0;

	DIR *d = opendir("/proc");
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		int pid = parse_num(de->d_name);
		if (pid <= 0)
			continue;
		ret = fn((pid_t)pid, arg);
		if (ret != 0)
			break;
	}
	closedir(d);
	return ret;
}

int lw_proc_map_of_inode(pid_t pid, uint64_t ino, uint64_t *addr)
{
	char path[64], line[1024];
	FILE *f;
	int r = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	/* "start-end perms offset dev inode path"; a line longer than the
	 * buffer (a long path) is read in pieces, of which only the first
	 * parses. */
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long start, end, off, inode;
		char perms[8];
		unsigned dmaj, dmin;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end,
			   perms, &off, &dmaj, &dmin, &inode) != 7)
			continue;
		if (inode == ino && off == 0) {
			*addr = start;
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}
