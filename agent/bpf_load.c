/*
 * bpf_load.c - open, load, attach and read the kernel probes of
 * bpf/watch.bpf.c through its libbpf skeleton (see bpf_load.h).
 *
 * The shape is libbpf-tools': open, set tunables, load, fill maps, attach,
 * poll, and one cleanup path that frees whatever exists.  libbpf's own
 * messages go nowhere unless LOOPWATCH_BPF_DEBUG is set in the environment
 * (then to stderr, with the verifier's log); callers get one line in `why`.
 */
#include "bpf_load.h"
#include "why.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/perf_event.h>
#include <sys/syscall.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "watch.skel.h"

/* A watched thread. */
struct watched {
	__u32 tid;
};

struct lw_bpf {
	struct watch_bpf *skel;
	bool attached;
	__u64 sample_ns; /* 0: no sampling */
	struct watched *watched;
	size_t nwatched, watched_cap;
	struct bpf_link **samplers; /* one per CPU, once attached */
	int nsamplers;
	char sample_why[200]; /* the last sampler failure */
	struct ring_buffer *rb;
	/* The callback of the poll in progress; the ring buffer's sample
	 * function is fixed at creation and forwards to it. */
	lw_bpf_event_fn fn;
	void *fn_ctx;
	int fn_ret; /* what fn returned to stop the poll */
	unsigned long handled; /* events handed to fn in this poll */
	unsigned long bad; /* records of the wrong size or kind */
	int ncpus; /* possible CPUs, for per-CPU maps */
	/* How many watched tids fall in each slot of the programs'
	 * watch_filter; the mapped byte is 1 while the count is nonzero. */
	__u16 filter_refs[LW_BPF_FILTER_SIZE];
};

/* A reason with a hint for the errors people meet in practice. */
static const char *hint(int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return "kernel probes need root or CAP_BPF+CAP_PERFMON";
	case ENOSYS:
		return "this kernel has no BPF system call "
		       "(CONFIG_BPF_SYSCALL)";
	case ENOENT:
	case ESRCH:
		return "the kernel lacks what the probes attach to (BTF, "
		       "the raw syscall tracepoints); set "
		       "LOOPWATCH_BPF_DEBUG=1 for libbpf's log";
	case EINVAL:
	case E2BIG:
		return "the kernel refused the programs; set "
		       "LOOPWATCH_BPF_DEBUG=1 for the verifier's log";
	case ENOMEM:
		return "out of memory for BPF maps (the cgroup's memory "
		       "limit?)";
	}
	return "set LOOPWATCH_BPF_DEBUG=1 for libbpf's log";
}

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static int debug = -1;

	if (debug < 0) {
		const char *e = getenv("LOOPWATCH_BPF_DEBUG");

		debug = e && *e && strcmp(e, "0") != 0;
	}
	if (!debug)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* The size of a record of this kind, 0 for an unknown kind. */
static size_t kind_size(__u32 kind)
{
	switch (kind) {
	case LW_BPF_EV_SYSCALL:
		return sizeof(struct lw_bpf_syscall_event);
	case LW_BPF_EV_OFFCPU:
		return sizeof(struct lw_bpf_offcpu_event);
	case LW_BPF_EV_SPAN:
		return sizeof(struct lw_bpf_span_event);
	case LW_BPF_EV_SAMPLE:
		return sizeof(struct lw_bpf_sample_event);
	case LW_BPF_EV_USTACK:
		return sizeof(struct lw_bpf_ustack_event);
	}
	return 0;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct lw_bpf *b = ctx;
	const struct lw_bpf_event_head *ev = data;
	size_t want;
	int r;

	if (size < sizeof(*ev) || (want = kind_size(ev->kind)) == 0 ||
	    size < want) {
		b->bad++;
		return 0;
	}
	if (!b->fn)
		return 0;
	b->handled++;
	r = b->fn(b->fn_ctx, ev, size);
	if (r) {
		b->fn_ret = r;
		/* libbpf stops consuming on a negative return. */
		return r < 0 ? r : -ECANCELED;
	}
	return 0;
}

int lw_bpf_open(struct lw_bpf **out, const struct lw_bpf_opts *opts, char *why,
		size_t whylen)
{
	struct lw_bpf_opts o = { 0 };
	struct lw_bpf *b;
	int err;

	*out = NULL;
	if (opts)
		o = *opts;
	if (!o.min_ns)
		o.min_ns = 10000000;
	if (!o.max_threads)
		o.max_threads = 1024;
	if (!o.ringbuf_bytes)
		o.ringbuf_bytes = 1024 * 1024;
	if (!o.sample_ns)
		o.sample_ns = 4000000;

	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		err = errno;
		lw_why(why, whylen,
		       "/sys/kernel/btf/vmlinux: %s (the probes need a "
		       "kernel built with CONFIG_DEBUG_INFO_BTF)",
		       strerror(err));
		return -err;
	}
	libbpf_set_print(print_fn);

	b = calloc(1, sizeof(*b));
	if (!b) {
		lw_why(why, whylen, "out of memory");
		return -ENOMEM;
	}
	b->sample_ns = o.no_sampling ? 0 : o.sample_ns;
	b->ncpus = libbpf_num_possible_cpus();
	if (b->ncpus <= 0) {
		err = b->ncpus ? -b->ncpus : EINVAL;
		lw_why(why, whylen, "cannot count the possible CPUs: %s",
		       strerror(err));
		goto cleanup;
	}

	b->skel = watch_bpf__open();
	if (!b->skel) {
		err = errno ? errno : EINVAL;
		lw_why(why, whylen, "cannot open the BPF object: %s (%s)",
		       strerror(err), hint(err));
		goto cleanup;
	}
	b->skel->rodata->min_ns = o.min_ns;
	err = -bpf_map__set_max_entries(b->skel->maps.threads, o.max_threads);
	if (!err)
		err = -bpf_map__set_max_entries(b->skel->maps.events,
						o.ringbuf_bytes);
	if (err) {
		lw_why(why, whylen, "cannot size the maps: %s", strerror(err));
		goto cleanup;
	}
	/* The raw_tp twins exist for BPF_PROG_TEST_RUN; production loads
	 * only the tp_btf programs, and nothing attaches the twins. */
	bpf_program__set_autoload(b->skel->progs.lw_test_enter, o.test_entries);
	bpf_program__set_autoload(b->skel->progs.lw_test_exit, o.test_entries);
	bpf_program__set_autoload(b->skel->progs.lw_test_switch,
				  o.test_entries);
	bpf_program__set_autoload(b->skel->progs.lw_test_forget,
				  o.test_entries);
	bpf_program__set_autoattach(b->skel->progs.lw_test_enter, false);
	bpf_program__set_autoattach(b->skel->progs.lw_test_exit, false);
	bpf_program__set_autoattach(b->skel->progs.lw_test_switch, false);
	bpf_program__set_autoattach(b->skel->progs.lw_test_forget, false);
	bpf_program__set_autoload(b->skel->progs.lw_sample, b->sample_ns != 0);

	err = -watch_bpf__load(b->skel);
	if (err) {
		lw_why(why, whylen, "cannot load the BPF programs: %s (%s)",
		       strerror(err), hint(err));
		goto cleanup;
	}

	b->rb = ring_buffer__new(bpf_map__fd(b->skel->maps.events), on_sample,
				 b, NULL);
	if (!b->rb) {
		err = errno ? errno : EINVAL;
		lw_why(why, whylen, "cannot map the ring buffer: %s (%s)",
		       strerror(err), hint(err));
		goto cleanup;
	}
	*out = b;
	return 0;

cleanup:
	lw_bpf_free(b);
	return -err;
}

static __u32 slot(__u32 tid)
{
	return tid & (LW_BPF_FILTER_SIZE - 1);
}

static struct watched *find_watched(struct lw_bpf *b, __u32 tid)
{
	for (size_t i = 0; i < b->nwatched; i++)
		if (b->watched[i].tid == tid)
			return &b->watched[i];
	return NULL;
}

/*
 * Open one cpu-clock perf event per online CPU that runs lw_sample every
 * sample_ns; the program keeps only the samples of watched threads (the
 * same one-load filter as the other programs).  Per CPU rather than per
 * thread: a per-thread event is switched in and out with its thread, and
 * that costs every context switch of a loop thread a timer reprogramming
 * (measured: a pipe round trip 7.5 -> 12.8 us; per CPU it is noise).  A
 * failure is remembered, not fatal: the threads are still watched,
 * without samples.
 */
static void open_samplers(struct lw_bpf *b)
{
	struct perf_event_attr a;
	int pfd, err;

	if (!b->sample_ns || b->nsamplers > 0)
		return;
	b->samplers = calloc((size_t)b->ncpus, sizeof(*b->samplers));
	if (!b->samplers) {
		lw_why(b->sample_why, sizeof(b->sample_why),
		       "cannot open the samplers: %s", strerror(ENOMEM));
		return;
	}
	for (int cpu = 0; cpu < b->ncpus; cpu++) {
		memset(&a, 0, sizeof(a));
		a.type = PERF_TYPE_SOFTWARE;
		a.size = sizeof(a);
		a.config = PERF_COUNT_SW_CPU_CLOCK;
		a.sample_period = b->sample_ns;
		pfd = (int)syscall(SYS_perf_event_open, &a, -1, cpu, -1,
				   PERF_FLAG_FD_CLOEXEC);
		if (pfd < 0) {
			err = errno;
			if (err == ENODEV || err == ENOENT)
				continue; /* a possible CPU that is offline */
			lw_why(b->sample_why, sizeof(b->sample_why),
			       "cannot open a perf event on CPU %d: %s%s", cpu,
			       strerror(err),
			       err == EACCES || err == EPERM
				       ? " (needs CAP_PERFMON or a lower "
					 "kernel.perf_event_paranoid)"
				       : "");
			continue;
		}
		b->samplers[b->nsamplers] = bpf_program__attach_perf_event(
			b->skel->progs.lw_sample, pfd);
		if (!b->samplers[b->nsamplers]) {
			err = errno;
			close(pfd);
			lw_why(b->sample_why, sizeof(b->sample_why),
			       "cannot attach the sampler on CPU %d: %s", cpu,
			       strerror(err));
			continue;
		}
		/* From here the link owns pfd and closes it when
		 * destroyed. */
		b->nsamplers++;
	}
}

static void close_samplers(struct lw_bpf *b)
{
	for (int i = 0; i < b->nsamplers; i++)
		bpf_link__destroy(b->samplers[i]);
	free(b->samplers);
	b->samplers = NULL;
	b->nsamplers = 0;
}

int lw_bpf_watch(struct lw_bpf *b, __u32 tid, __u32 flags, __u64 cur_site_addr,
		 char *why, size_t whylen)
{
	struct lw_bpf_thread t, old;
	int fd = bpf_map__fd(b->skel->maps.threads);
	bool known = bpf_map_lookup_elem(fd, &tid, &old) == 0;
	struct watched *w;

	memset(&t, 0, sizeof(t));
	t.flags = flags;
	t.cur_site_addr = cur_site_addr;
	w = find_watched(b, tid);
	if (!w && b->nwatched == b->watched_cap) {
		size_t cap = b->watched_cap ? 2 * b->watched_cap : 8;
		struct watched *n = realloc(b->watched, cap * sizeof(*n));

		if (!n) {
			lw_why(why, whylen, "cannot watch thread %u: %s", tid,
			       strerror(ENOMEM));
			return -ENOMEM;
		}
		b->watched = n;
		b->watched_cap = cap;
	}
	if (bpf_map_update_elem(fd, &tid, &t, BPF_ANY) != 0) {
		int err = errno;

		lw_why(why, whylen, "cannot watch thread %u: %s%s", tid,
		       strerror(err),
		       err == E2BIG ? " (too many watched threads; raise "
				      "max_threads)"
				    : "");
		return -err;
	}
	if (!w) {
		w = &b->watched[b->nwatched++];
		w->tid = tid;
	}
	/* After the entry exists: the programs only start looking once the
	 * filter lets them. */
	if (!known && b->filter_refs[slot(tid)]++ == 0)
		__atomic_store_n(&b->skel->bss->watch_filter[slot(tid)], 1,
				 __ATOMIC_RELAXED);
	return 0;
}

int lw_bpf_unwatch(struct lw_bpf *b, __u32 tid)
{
	struct watched *w = find_watched(b, tid);

	if (w)
		*w = b->watched[--b->nwatched];
	if (bpf_map_delete_elem(bpf_map__fd(b->skel->maps.threads), &tid))
		return -errno;
	if (b->filter_refs[slot(tid)] && --b->filter_refs[slot(tid)] == 0)
		__atomic_store_n(&b->skel->bss->watch_filter[slot(tid)], 0,
				 __ATOMIC_RELAXED);
	return 0;
}

/* Attach one production program unless it is attached already. */
static int attach_one(struct bpf_program *p, struct bpf_link **link)
{
	if (*link)
		return 0;
	*link = bpf_program__attach(p);
	return *link ? 0 : -errno;
}

int lw_bpf_attach(struct lw_bpf *b, char *why, size_t whylen)
{
	struct watch_bpf *s = b->skel;
	const char *what;
	int err;

	/* Explicitly the production programs, so that a test handle's
	 * raw_tp twins can never be attached by accident. */
	what = "the raw syscall tracepoints";
	err = attach_one(s->progs.lw_sys_enter, &s->links.lw_sys_enter);
	if (!err)
		err = attach_one(s->progs.lw_sys_exit, &s->links.lw_sys_exit);
	if (!err) {
		what = "sched_switch";
		err = attach_one(s->progs.lw_switch, &s->links.lw_switch);
	}
	if (!err) {
		what = "sched_process_exec";
		err = attach_one(s->progs.lw_exec, &s->links.lw_exec);
	}
	if (!err) {
		what = "sched_process_exit";
		err = attach_one(s->progs.lw_exit, &s->links.lw_exit);
	}
	if (err)
		goto fail;
	b->attached = true;
	open_samplers(b);
	return 0;

fail:
	lw_bpf_detach(b);
	lw_why(why, whylen, "cannot attach to %s: %s (%s)", what,
	       strerror(-err), hint(-err));
	return err;
}

void lw_bpf_detach(struct lw_bpf *b)
{
	struct watch_bpf *s = b->skel;

	close_samplers(b);
	bpf_link__destroy(s->links.lw_sys_enter);
	s->links.lw_sys_enter = NULL;
	bpf_link__destroy(s->links.lw_sys_exit);
	s->links.lw_sys_exit = NULL;
	bpf_link__destroy(s->links.lw_switch);
	s->links.lw_switch = NULL;
	bpf_link__destroy(s->links.lw_exec);
	s->links.lw_exec = NULL;
	bpf_link__destroy(s->links.lw_exit);
	s->links.lw_exit = NULL;
	b->attached = false;
}

int lw_bpf_poll(struct lw_bpf *b, int timeout_ms, lw_bpf_event_fn fn, void *ctx)
{
	int r;

	b->fn = fn;
	b->fn_ctx = ctx;
	b->fn_ret = 0;
	b->handled = 0;
	r = ring_buffer__poll(b->rb, timeout_ms);
	/* Samples are sent without a wake-up: take what the wait did not. */
	if (r >= 0 && !b->fn_ret)
		r = ring_buffer__consume(b->rb);
	b->fn = NULL;
	b->fn_ctx = NULL;
	if (b->fn_ret)
		return b->fn_ret < 0 ? b->fn_ret : (int)b->handled;
	if (r < 0)
		return r == -EINTR ? -EINTR : r;
	return (int)b->handled;
}

/* Sum one per-CPU array entry of n __u64 counters into out. */
static int percpu_sum(struct lw_bpf *b, struct bpf_map *map, __u32 key,
		      __u64 *out, size_t n)
{
	__u64 *vals;
	int i;
	size_t j;

	vals = calloc((size_t)b->ncpus * n, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &key, vals) != 0) {
		int err = errno;

		free(vals);
		return -err;
	}
	memset(out, 0, n * sizeof(*out));
	for (i = 0; i < b->ncpus; i++)
		for (j = 0; j < n; j++)
			out[j] += vals[(size_t)i * n + j];
	free(vals);
	return 0;
}

int lw_bpf_stats_read(struct lw_bpf *b, struct lw_bpf_stats *out)
{
	return percpu_sum(b, b->skel->maps.stats, 0, (__u64 *)out,
			  sizeof(*out) / sizeof(__u64));
}

int lw_bpf_sysstat_read(struct lw_bpf *b, __u32 nr, struct lw_bpf_sysstat *out)
{
	if (nr >= LW_BPF_MAX_SYSCALLS)
		return -EINVAL;
	return percpu_sum(b, b->skel->maps.syscalls, nr, (__u64 *)out,
			  sizeof(*out) / sizeof(__u64));
}

int lw_bpf_thread_read(struct lw_bpf *b, __u32 tid, struct lw_bpf_thread *out)
{
	if (bpf_map_lookup_elem(bpf_map__fd(b->skel->maps.threads), &tid,
				out) != 0)
		return -errno;
	return 0;
}

int lw_bpf_blocking_read(struct lw_bpf *b, lw_bpf_block_fn fn, void *ctx)
{
	int fd = bpf_map__fd(b->skel->maps.blocking);
	struct lw_bpf_block_key k, next;
	struct lw_bpf_block_val v;
	int n = 0, r;
	void *prev = NULL;

	/* The kernel adds keys while we walk; a key added behind the walk
	 * is read next time.  Keys are never deleted, so the walk ends. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		k = next;
		prev = &k;
		if (bpf_map_lookup_elem(fd, &k, &v) != 0)
			continue;
		n++;
		r = fn(ctx, &k, &v);
		if (r)
			return r < 0 ? r : n;
	}
	return n;
}

int lw_bpf_stack(struct lw_bpf *b, __s32 id, __u64 *out, size_t max)
{
	__u64 frames[LW_BPF_STACK_DEPTH];
	__u32 key = (__u32)id;
	size_t n;

	if (id < 0)
		return -ENOENT;
	if (bpf_map_lookup_elem(bpf_map__fd(b->skel->maps.stacks), &key,
				frames) != 0)
		return -errno;
	/* The stack map zero-fills past the last frame. */
	for (n = 0; n < LW_BPF_STACK_DEPTH && frames[n]; n++)
		;
	if (n > max)
		n = max;
	memcpy(out, frames, n * sizeof(*out));
	return (int)n;
}

int lw_bpf_sampling(const struct lw_bpf *b, const char **why)
{
	if (why)
		*why = b->sample_why;
	return b->nsamplers;
}

unsigned long lw_bpf_bad_records(const struct lw_bpf *b)
{
	return b->bad;
}

struct watch_bpf *lw_bpf_skel(struct lw_bpf *b)
{
	return b->skel;
}

void lw_bpf_free(struct lw_bpf *b)
{
	if (!b)
		return;
	ring_buffer__free(b->rb);
	if (b->skel)
		lw_bpf_detach(b);
	/* Destroys the links first, then the programs and maps. */
	watch_bpf__destroy(b->skel);
	free(b->watched);
	free(b);
}
