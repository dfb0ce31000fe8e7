/*
 * symbolize.c - addresses of a live process to names (see symbolize.h).
 *
 * Dwfl does the hard parts: dwfl_linux_proc_maps_report turns the text of
 * /proc/PID/maps into modules, each module's load bias comes from comparing
 * its ELF program headers with where it is mapped, and
 * dwfl_standard_find_debuginfo finds separate debug files.  What this file
 * adds:
 *
 *   - its own find_elf.  Dwfl's default opens the path from the maps file on
 *     the host, which is the wrong file (or none) for a process in another
 *     mount namespace.  Ours opens it under /proc/PID/root.  Dwfl gives
 *     find_elf no handle back to us, so every module's userdata slot points
 *     at its lw_sym_t, set right after each report.
 *   - a table of all mappings, so that an address in no module still says
 *     what it is in ("[anon]", "[heap]", "[stack]").  It and Dwfl's modules
 *     come from one reading of the maps (report_maps), so the two agree.
 *   - the perf map for JIT code (perfmap.c);
 *   - a find_debuginfo that repairs a leak of Dwfl's own.
 *
 * lw_sym_open_file goes the same way from a maps text of one line that it
 * writes itself: one ELF file, no process.
 */
#include "symbolize.h"
#include "text.h"
#include "why.h"

#include "perfmap.h"
#include "proc.h"

#include <dirent.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* /proc/PID/maps is read whole; a process with more than this much of it
 * (hundreds of thousands of mappings) is read only up to here. */
#define MAPS_MAX (64u << 20)

/* Looked-up frames are cached: dwfl_module_addrinfo scans the whole
 * symbol table on every call (165 us for an address in libc with its debug
 * symbols), and stacks repeat the same addresses all the time. */
#define CACHE_BITS 9

struct cache_slot {
	int used;
	int is_return_addr;
	lw_sym_frame_t frame;
	int rc;
};

/* One line of /proc/PID/maps, for addresses that are in no module. */
struct mapping {
	uint64_t start, end;
	char name[64]; /* "[anon]", "[heap]", a file's base name, ... */
	int file; /* a file is mapped here (its path began with '/') */
};

struct lw_sym {
	pid_t pid; /* 0 for lw_sym_open_file: no process */
	int root_fd; /* /proc/PID/root (or / without a process), O_PATH */
	/* The same root as a path prefix: "/proc/PID/root", or "" for the
	 * host's own root. */
	char root[32];
	Dwfl *dwfl;
	/* Dwfl keeps pointers to both for its whole life. */
	Dwfl_Callbacks cb;
	char *debuginfo_path;
	struct mapping *maps;
	size_t nmaps;
	lw_perfmap_t *perfmap;
	/* Identity of the perf map last loaded, to reload only on change. */
	uint64_t pm_size, pm_mtime_ns, pm_ino;
	struct cache_slot *cache; /* 1 << CACHE_BITS slots, on first use */
};

/* Copy a string from the target's files, bounded and cleaned (text.h). */
static void copy_clean(char *dst, size_t dstlen, const char *src)
{
	lw_text_copy(dst, src, dstlen - 1);
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/* Open path (absolute, as the target sees it) inside the target's root.
 * openat2's RESOLVE_IN_ROOT keeps absolute symlinks inside that root, where
 * a plain open of /proc/PID/root/<path> would follow them on the host. */
static int open_in_root(const lw_sym_t *s, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	char buf[PATH_MAX + 32];
	int fd;

	while (*path == '/')
		path++;
	fd = (int)syscall(SYS_openat2, s->root_fd, path, &how, sizeof(how));
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return fd;
	/* Kernels before 5.6 (and seccomp filters that refuse openat2). */
	if (snprintf(buf, sizeof(buf), "%s/%s", s->root, path) >=
	    (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return open(buf, flags | O_CLOEXEC);
}

/* fd if it is a regular file, else closes it and returns -1: a mapping of
 * a device could block or never end when read. */
static int regular_or_close(int fd)
{
	struct stat st;

	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A file deleted (or replaced, as by a package upgrade) since it was
 * mapped: its path now names nothing or another file, but the mapping's
 * own file is still in /proc/PID/map_files/START-END (root only). */
static int open_map_file(const lw_sym_t *s, uint64_t base, char **file_name)
{
	char dir[64], prefix[32], path[64 + 256];
	struct dirent *de;
	DIR *d;
	int fd = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/map_files", (int)s->pid);
	snprintf(prefix, sizeof(prefix), "%" PRIx64 "-", base);
	d = opendir(dir);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = regular_or_close(
			open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK));
		break;
	}
	closedir(d);
	if (fd >= 0 && (*file_name = strdup(path)) == NULL) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int find_elf(Dwfl_Module *mod, void **userdata, const char *name,
		    Dwarf_Addr base, char **file_name, Elf **elfp)
{
	const lw_sym_t *s = *userdata;
	static const char deleted[] = " (deleted)";
	size_t n = strlen(name);
	char buf[PATH_MAX + 32];
	int fd;

	/* "[vdso: PID]" and anything else not a path: Dwfl's own reads the
	 * vDSO from the process's memory. */
	if (s == NULL || name[0] != '/')
		return dwfl_linux_proc_find_elf(mod, userdata, name, base,
						file_name, elfp);
	/* Only the kernel writes " (deleted)" after a name; a file of
	 * lw_sym_open_file may well end so. */
	if (s->pid > 0 && n > sizeof(deleted) - 1 &&
	    strcmp(name + n - (sizeof(deleted) - 1), deleted) == 0)
		return open_map_file(s, base, file_name);

	fd = regular_or_close(open_in_root(s, name, O_RDONLY | O_NONBLOCK));
	if (fd < 0)
		return -1;
	/* Dwfl looks for debuglink files next to this name, and shows it in
	 * its messages. */
	snprintf(buf, sizeof(buf), "%s%s", s->root, name);
	*file_name = strdup(buf);
	if (*file_name == NULL) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Dwfl's standard search for separate debug files, with one repair.
 * elfutils (0.188, and upstream as of 2025) asks for a module's debug file
 * once for its DWARF and once more for its symbol table while no debug
 * file has been read, each time into the same slot (mod->debug.name):
 * when the file it found is not a readable ELF file (a corrupt or foreign
 * NAME.debug next to a file, which anyone who writes there can put), the
 * second answer overwrites the first name, which is never freed.  The
 * slot is the callback's to fill and Dwfl's to free, so a name still in
 * it on entry is that stale one; found by fuzz/elf.c. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata,
			  const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	free(*debuginfo_file_name);
	*debuginfo_file_name = NULL;
	return dwfl_standard_find_debuginfo(mod, userdata, modname, base,
					    file_name, debuglink_file,
					    debuglink_crc, debuginfo_file_name);
}

/* Point every module's userdata at s, for find_elf. */
static int set_userdata(Dwfl_Module *mod, void **userdata, const char *name,
			Dwarf_Addr start, void *arg)
{
	if (*userdata == NULL)
		*userdata = arg;
	return DWARF_CB_OK;
}

/* Read a whole /proc file into a NUL-terminated buffer (at most max). */
static int read_proc_file(const char *path, size_t max, char **out,
			  size_t *outlen)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap), *nbuf;
	int fd, err;

	if (buf == NULL)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		free(buf);
		return err;
	}
	for (;;) {
		if (cap - len < 4096 && cap < max) {
			nbuf = realloc(buf, cap * 2);
			if (nbuf == NULL) {
				err = -ENOMEM;
				goto fail;
			}
			buf = nbuf;
			cap *= 2;
		}
		if (cap - len <= 1)
			break;
		ssize_t got = read(fd, buf + len, cap - len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err = -errno;
			goto fail;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:
	close(fd);
	free(buf);
	return err;
}

/* Parse a maps text (NUL-terminated; cut into lines in place) into a new
 * table of mappings.  0 or -ENOMEM. */
static int parse_maps(char *text, struct mapping **out, size_t *nout)
{
	char *line, *save = NULL;
	struct mapping *maps = NULL;
	size_t n = 0, cap = 0;

	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		uint64_t start, end;
		int name_at = 0;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %n",
			   &start, &end, &name_at) < 2 ||
		    name_at == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			struct mapping *nm = realloc(maps, cap * sizeof(*maps));
			if (nm == NULL) {
				free(maps);
				return -ENOMEM;
			}
			maps = nm;
		}
		struct mapping *m = &maps[n++];
		const char *name = line + name_at;
		m->start = start;
		m->end = end;
		m->file = *name == '/';
		if (*name == '\0')
			copy_clean(m->name, sizeof(m->name), "[anon]");
		else if (*name == '[')
			copy_clean(m->name, sizeof(m->name), name);
		else
			copy_clean(m->name, sizeof(m->name), base_name(name));
	}
	*out = maps;
	*nout = n;
	return 0;
}

static const struct mapping *find_mapping(const lw_sym_t *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nmaps;

	/* The kernel lists mappings in address order. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->maps[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->nmaps && s->maps[lo].start <= addr)
		return &s->maps[lo];
	return NULL;
}

/* The target's pid in its own pid namespace (the last NSpid field), which
 * is the PID a JIT inside a container puts in its perf map's name. */
static pid_t ns_pid(pid_t pid)
{
	char path[64], line[256];
	pid_t last = pid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return pid;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		char *p = line + 6, *endp;
		for (;;) {
			long v = strtol(p, &endp, 10);
			if (endp == p)
				break;
			if (v > 0 && v <= INT_MAX)
				last = (pid_t)v;
			p = endp;
		}
		break;
	}
	fclose(f);
	return last;
}

/* Load /tmp/perf-PID.map if it exists, is a regular file owned by the
 * target's user or root (anyone may create files in /tmp, and a map made
 * by someone else would put false names on the target's code), and changed
 * since the last load. */
static void load_perfmap(lw_sym_t *s)
{
	char name[64], proc[64];
	struct stat st, pst;
	lw_perfmap_t *m;
	int fd;

	snprintf(proc, sizeof(proc), "/proc/%d", (int)s->pid);
	if (stat(proc, &pst) < 0)
		return;
	snprintf(name, sizeof(name), "/tmp/perf-%d.map", (int)ns_pid(s->pid));
	fd = open_in_root(s, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && ns_pid(s->pid) != s->pid) {
		snprintf(name, sizeof(name), "/tmp/perf-%d.map", (int)s->pid);
		fd = open_in_root(s, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	}
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_uid != pst.st_uid && st.st_uid != 0))
		goto out;
	uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u +
			 (uint64_t)st.st_mtim.tv_nsec;
	if (s->perfmap != NULL && s->pm_size == (uint64_t)st.st_size &&
	    s->pm_mtime_ns == mtime && s->pm_ino == (uint64_t)st.st_ino)
		goto out;
	if (lw_perfmap_load_fd(fd, &m) == 0) {
		lw_perfmap_free(s->perfmap);
		s->perfmap = m;
		s->pm_size = (uint64_t)st.st_size;
		s->pm_mtime_ns = mtime;
		s->pm_ino = (uint64_t)st.st_ino;
	}
out:
	close(fd);
}

/* Give Dwfl the modules of a maps text (the format of /proc/PID/maps, len
 * bytes, NUL-terminated; consumed) and keep its table of mappings, both
 * from the same text so that they agree.  Dwfl's own parser of that format
 * (dwfl_linux_proc_maps_report, which dwfl_linux_proc_report runs on the
 * file) makes one module of each file's run of mappings.  The vDSO, which
 * is no file, is reported as dwfl_linux_proc_report does it, by a name
 * Dwfl's find_elf reads from the process's memory.  0 or a negative errno
 * (-EIO: Dwfl refused the text, dwfl_errmsg says why). */
static int report_maps(lw_sym_t *s, char *text, size_t len)
{
	struct mapping *maps = NULL;
	size_t nmaps = 0;
	FILE *f = NULL;
	int rc = 0;

	/* A text cut short (MAPS_MAX) ends in a partial line, which Dwfl's
	 * parser would refuse whole. */
	while (len > 0 && text[len - 1] != '\n')
		text[--len] = '\0';
	if (len > 0) {
		f = fmemopen(text, len, "r");
		if (f == NULL)
			return -errno;
	}
	dwfl_report_begin(s->dwfl);
	if (f != NULL) {
		rc = dwfl_linux_proc_maps_report(s->dwfl, f);
		fclose(f);
	}
	if (rc == 0)
		rc = parse_maps(text, &maps, &nmaps);
	for (size_t i = 0; rc == 0 && s->pid > 0 && i < nmaps; i++) {
		char vdso[32];
		if (strcmp(maps[i].name, "[vdso]") != 0)
			continue;
		snprintf(vdso, sizeof(vdso), "[vdso: %d]", (int)s->pid);
		if (dwfl_report_module(s->dwfl, vdso, maps[i].start,
				       maps[i].end) == NULL)
			rc = -1;
	}
	if (dwfl_report_end(s->dwfl, NULL, NULL) != 0 && rc == 0)
		rc = -1;
	if (rc != 0) {
		free(maps);
		return rc > 0 ? -rc : rc == -ENOMEM ? rc : -EIO;
	}
	dwfl_getmodules(s->dwfl, set_userdata, s, 0);
	free(s->maps);
	s->maps = maps;
	s->nmaps = nmaps;
	return 0;
}

/* Read /proc/PID/maps and report it: 0 or a negative errno (-ESRCH: the
 * process has exited). */
static int read_maps(lw_sym_t *s)
{
	char path[64], *buf = NULL;
	size_t len = 0;
	int rc;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)s->pid);
	rc = read_proc_file(path, MAPS_MAX, &buf, &len);
	if (rc == -ENOENT)
		rc = -ESRCH;
	if (rc == 0)
		rc = report_maps(s, buf, len);
	free(buf);
	return rc;
}

/* A symbolizer with no modules yet, whose files are opened inside root_fd
 * (taken over), and root, that root as a path prefix. */
static int sym_new(pid_t pid, int root_fd, const char *root, lw_sym_t **out)
{
	lw_sym_t *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (s == NULL) {
		close(root_fd);
		return -ENOMEM;
	}
	s->pid = pid;
	s->root_fd = root_fd;
	snprintf(s->root, sizeof(s->root), "%s", root);
	/* Separate debug files: Dwfl's default places (next to the file, in
	 * .debug/ there, in /usr/lib/debug by build-id or path) and, for a
	 * process, the target's own /usr/lib/debug, for a container that
	 * ships them. */
	if (asprintf(&s->debuginfo_path, ":.debug:/usr/lib/debug%s%s%s",
		     root[0] ? ":" : "", root,
		     root[0] ? "/usr/lib/debug" : "") < 0) {
		s->debuginfo_path = NULL;
		goto nomem;
	}
	s->cb.find_elf = find_elf;
	s->cb.find_debuginfo = find_debuginfo;
	s->cb.debuginfo_path = &s->debuginfo_path;
	s->dwfl = dwfl_begin(&s->cb);
	if (s->dwfl == NULL)
		goto nomem;
	*out = s;
	return 0;
nomem:
	lw_sym_close(s);
	return -ENOMEM;
}

int lw_sym_open(pid_t pid, lw_sym_t **out, char *why, size_t whylen)
{
	char path[64];
	uint64_t start_time;
	lw_sym_t *s;
	int rc, root_fd;

	*out = NULL;
	if (pid <= 0) {
		lw_why(why, whylen, "%d is not a process id", (int)pid);
		return -EINVAL;
	}
	/* A zombie still has /proc/PID, but no mappings: it has exited. */
	rc = lw_proc_start_time(pid, &start_time);
	if (rc < 0) {
		lw_why(why, whylen, "process %d %s", (int)pid,
		       rc == -ESRCH ? "does not exist or has exited"
				    : strerror(-rc));
		return rc;
	}

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		rc = errno == ENOENT ? -ESRCH : -errno;
		lw_why(why, whylen, "cannot open %s: %s%s", path, strerror(-rc),
		       rc == -EACCES ? " (run as root or as its user)" : "");
		return rc;
	}
	rc = sym_new(pid, root_fd, path, &s);
	if (rc < 0) {
		lw_why(why, whylen, "out of memory");
		return rc;
	}

	rc = read_maps(s);
	if (rc == 0 && s->nmaps == 0) {
		lw_why(why, whylen,
		       "process %d has no user-space mappings (a kernel "
		       "thread, or it is exiting)",
		       (int)pid);
		lw_sym_close(s);
		return -ENOENT;
	}
	if (rc < 0) {
		lw_why(why, whylen, "cannot read /proc/%d/maps: %s", (int)pid,
		       rc == -ESRCH ? "the process has exited"
		       : rc == -EIO ? dwfl_errmsg(-1)
				    : strerror(-rc));
		lw_sym_close(s);
		return rc;
	}
	load_perfmap(s);
	*out = s;
	return 0;
}

int lw_sym_open_file(const char *path, uint64_t base, lw_sym_t **out, char *why,
		     size_t whylen)
{
	char *abs = NULL, *line = NULL;
	struct stat st;
	lw_sym_t *s = NULL;
	int rc, root_fd, n;

	*out = NULL;
	/* A maps line names a file by its absolute path, and ends at a
	 * newline (the kernel writes one in a name as "\012"). */
	abs = realpath(path, NULL);
	if (abs == NULL || stat(abs, &st) < 0) {
		rc = -errno;
		lw_why(why, whylen, "cannot open %s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || strchr(abs, '\n') != NULL) {
		rc = -EINVAL;
		lw_why(why, whylen, "cannot read %s: %s", path,
		       S_ISREG(st.st_mode) ? "a newline in its path"
					   : "not a regular file");
		goto out;
	}
	uint64_t span = ((uint64_t)st.st_size + 4095) & ~(uint64_t)4095;
	if (span == 0)
		span = 4096;
	if (base > UINT64_MAX - span) {
		rc = -EINVAL;
		lw_why(why, whylen,
		       "cannot map %s at 0x%" PRIx64 ": it would end past 2^64",
		       path, base);
		goto out;
	}
	root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		rc = -errno;
		lw_why(why, whylen, "cannot open /: %s", strerror(-rc));
		goto out;
	}
	rc = sym_new(0, root_fd, "", &s);
	if (rc < 0) {
		lw_why(why, whylen, "out of memory");
		goto out;
	}
	/* The line /proc/PID/maps would hold: Dwfl's parser needs a device
	 * or an inode to take it for a file. */
	n = asprintf(&line,
		     "%" PRIx64 "-%" PRIx64 " r-xp 00000000 %x:%x %llu %s\n",
		     base, base + span, major(st.st_dev), minor(st.st_dev),
		     (unsigned long long)st.st_ino, abs);
	if (n < 0) {
		line = NULL;
		rc = -ENOMEM;
		lw_why(why, whylen, "out of memory");
		goto out;
	}
	rc = report_maps(s, line, (size_t)n);
	if (rc < 0)
		lw_why(why, whylen, "cannot report %s to elfutils: %s", path,
		       rc == -EIO ? dwfl_errmsg(-1) : strerror(-rc));
out:
	free(abs);
	free(line);
	if (rc < 0) {
		lw_sym_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int lw_sym_refresh(lw_sym_t *s)
{
	int rc = 0;

	/* Modules and perf-map entries may have come and gone. */
	free(s->cache);
	s->cache = NULL;
	if (s->pid == 0)
		return 0; /* one file, which has no maps to read again */
	rc = read_maps(s);
	if (rc == 0)
		load_perfmap(s);
	return rc;
}

/* Fill the module fields from a Dwfl module. */
static void module_fields(Dwfl_Module *mod, uint64_t addr, lw_sym_frame_t *out)
{
	Dwarf_Addr low = 0, bias = 0;
	const char *name =
		dwfl_module_info(mod, NULL, &low, NULL, NULL, NULL, NULL, NULL);

	if (name == NULL)
		name = "?";
	if (strncmp(name, "[vdso", 5) == 0)
		name = "[vdso]";
	copy_clean(out->module, sizeof(out->module), base_name(name));
	if (dwfl_module_getelf(mod, &bias) != NULL)
		out->module_off = addr - bias;
	else
		out->module_off = addr - low;
	out->flags |= LW_SYM_MODULE;
}

/* Whether m, the mapping at an address, is mod's file.  A module spans
 * from its first mapping to its last, and the kernel may put unrelated
 * mappings (JIT code, a heap arena) in the holes between a library's
 * segments: there the module's range must not name them. */
static int module_mapped_at(Dwfl_Module *mod, const struct mapping *m)
{
	const char *name =
		dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	char clean[sizeof(m->name)];

	if (m == NULL || name == NULL)
		return 0;
	if (strncmp(name, "[vdso", 5) == 0)
		return strcmp(m->name, "[vdso]") == 0;
	copy_clean(clean, sizeof(clean), base_name(name));
	return m->file && strcmp(m->name, clean) == 0;
}

static int lookup(lw_sym_t *s, uint64_t addr, int is_return_addr,
		  lw_sym_frame_t *out)
{
	/* A return address is the instruction after the call, which may be
	 * the first of the next function or on another line. */
	uint64_t at = is_return_addr && addr > 0 ? addr - 1 : addr;
	lw_perfmap_sym_t psym;
	Dwfl_Module *mod;

	memset(out, 0, sizeof(*out));
	out->addr = addr;

	const struct mapping *m = find_mapping(s, at);
	mod = dwfl_addrmodule(s->dwfl, at);
	if (mod != NULL && !module_mapped_at(mod, m))
		mod = NULL;
	if (mod != NULL) {
		GElf_Off off = 0;
		GElf_Sym sym;
		const char *fn;
		Dwfl_Line *line;

		module_fields(mod, addr, out);
		fn = dwfl_module_addrinfo(mod, at, &off, &sym, NULL, NULL,
					  NULL);
		if (fn != NULL && fn[0] != '\0') {
			copy_clean(out->func, sizeof(out->func), fn);
			out->func_off = addr - (at - off);
			out->flags |= LW_SYM_FUNC;
		}
		line = dwfl_module_getsrc(mod, at);
		if (line != NULL) {
			int lineno = 0;
			const char *file = dwfl_lineinfo(line, NULL, &lineno,
							 NULL, NULL, NULL);
			if (file != NULL && lineno > 0) {
				size_t n = strlen(file);
				if (n >= sizeof(out->file))
					file += n - (sizeof(out->file) - 1);
				copy_clean(out->file, sizeof(out->file), file);
				out->line = lineno;
				out->flags |= LW_SYM_LINE;
			}
		}
		return (out->flags & LW_SYM_FUNC) ? 0 : 1;
	}

	if (lw_perfmap_find(s->perfmap, at, &psym)) {
		copy_clean(out->func, sizeof(out->func), psym.name);
		out->func_off = addr - psym.start;
		copy_clean(out->module, sizeof(out->module), "perf-map");
		out->flags |= LW_SYM_FUNC | LW_SYM_PERFMAP;
		return 0;
	}

	out->flags |= LW_SYM_UNKNOWN;
	if (m != NULL) {
		copy_clean(out->module, sizeof(out->module), m->name);
		out->module_off = addr - m->start;
	}
	return 1;
}

int lw_sym_lookup(lw_sym_t *s, uint64_t addr, int is_return_addr,
		  lw_sym_frame_t *out)
{
	struct cache_slot *c;
	size_t slot;

	is_return_addr = is_return_addr != 0;
	if (s->cache == NULL)
		s->cache = calloc((size_t)1 << CACHE_BITS, sizeof(*s->cache));
	if (s->cache == NULL)
		return lookup(s, addr, is_return_addr, out);
	slot = (size_t)((addr * 0x9e3779b97f4a7c15ull) >> (64 - CACHE_BITS));
	c = &s->cache[slot];
	if (!c->used || c->frame.addr != addr ||
	    c->is_return_addr != is_return_addr) {
		c->rc = lookup(s, addr, is_return_addr, &c->frame);
		c->is_return_addr = is_return_addr;
		c->used = 1;
	}
	*out = c->frame;
	return c->rc;
}

void lw_sym_format(const lw_sym_frame_t *f, char *buf, size_t len)
{
	if (len == 0)
		return;
	if ((f->flags & LW_SYM_FUNC) && (f->flags & LW_SYM_LINE))
		snprintf(buf, len, "%s+0x%" PRIx64 " (%s:%d)", f->func,
			 f->func_off, base_name(f->file), f->line);
	else if (f->flags & LW_SYM_PERFMAP)
		snprintf(buf, len, "%s+0x%" PRIx64 " [perf-map]", f->func,
			 f->func_off);
	else if (f->flags & LW_SYM_FUNC)
		snprintf(buf, len, "%s+0x%" PRIx64 " [%s]", f->func,
			 f->func_off, f->module);
	else if (f->flags & LW_SYM_MODULE)
		snprintf(buf, len, "%s+0x%" PRIx64, f->module, f->module_off);
	else if (f->module[0] != '\0')
		snprintf(buf, len, "[unknown] 0x%" PRIx64 " %s", f->addr,
			 f->module);
	else
		snprintf(buf, len, "[unknown] 0x%" PRIx64, f->addr);
}

static int preload_module(Dwfl_Module *m, void **ud, const char *name,
			  Dwarf_Addr start, void *arg)
{
	Dwarf_Addr bias;

	(void)ud;
	(void)name;
	(void)start;
	(void)arg;
	/* Finds and reads the debug file (for line numbers) and, through
	 * it, the symbol table; a module without one is fine. */
	dwfl_module_getdwarf(m, &bias);
	dwfl_module_getsymtab(m);
	return DWARF_CB_OK;
}

void lw_sym_preload(lw_sym_t *s)
{
	if (s != NULL && s->dwfl != NULL)
		dwfl_getmodules(s->dwfl, preload_module, NULL, 0);
}

Dwfl *lw_sym_dwfl(lw_sym_t *s)
{
	return s->dwfl;
}

void lw_sym_close(lw_sym_t *s)
{
	if (s == NULL)
		return;
	if (s->dwfl != NULL)
		dwfl_end(s->dwfl);
	if (s->root_fd >= 0)
		close(s->root_fd);
	free(s->debuginfo_path);
	free(s->maps);
	free(s->cache);
	lw_perfmap_free(s->perfmap);
	free(s);
}
