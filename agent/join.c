/*
 * join.c - the buffer of syscall events waiting for their callback's
 * record.  A plain array kept in arrival order: it holds a few dozen events
 * at a time (only syscalls slower than the threshold are reported), so a
 * linear scan per record is cheaper than any index.
 */
#include "join.h"

#include <stdlib.h>
#include <string.h>

struct lw_join {
	lw_join_event_t *ev; /* ev[0..n) in arrival order */
	size_t n, cap;
	uint64_t dropped;
};

lw_join_t *lw_join_new(size_t cap)
{
	lw_join_t *j = calloc(1, sizeof(*j));

	if (j == NULL || cap == 0)
		goto fail;
	j->ev = calloc(cap, sizeof(*j->ev));
	if (j->ev == NULL)
		goto fail;
	j->cap = cap;
	return j;
fail:
	free(j);
	return NULL;
}

void lw_join_free(lw_join_t *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n; i++)
		free(j->ev[i].stack);
	free(j->ev);
	free(j);
}

void lw_join_add(lw_join_t *j, const lw_join_event_t *e)
{
	if (j->n == j->cap) {
		free(j->ev[0].stack);
		memmove(&j->ev[0], &j->ev[1], (j->n - 1) * sizeof(j->ev[0]));
		j->n--;
		j->dropped++;
	}
	j->ev[j->n++] = *e;
}

/* Move tid's events that take() accepts into out, up to max; the others
 * close ranks in their order. */
static size_t move_out(lw_join_t *j, uint32_t tid, lw_join_event_t *out,
		       size_t max, int (*take)(const lw_join_event_t *, void *),
		       void *arg)
{
	size_t kept = 0, moved = 0;

	for (size_t i = 0; i < j->n; i++) {
		lw_join_event_t *e = &j->ev[i];
		if (moved < max && e->h.tid == tid && take(e, arg))
			out[moved++] = *e;
		else
			j->ev[kept++] = *e;
	}
	j->n = kept;
	return moved;
}

/* An end that cannot wrap: hostile or odd durations saturate. */
static uint64_t end_of(uint64_t start, uint64_t dur)
{
	return dur > UINT64_MAX - start ? UINT64_MAX : start + dur;
}

struct span {
	uint64_t start, end;
};

static int inside(const lw_join_event_t *e, void *arg)
{
	const struct span *s = arg;
	return e->h.start_ns >= s->start &&
	       end_of(e->h.start_ns, e->h.duration_ns) <= s->end;
}

size_t lw_join_take(lw_join_t *j, uint32_t tid, uint64_t start_ns,
		    uint64_t duration_ns, lw_join_event_t *out, size_t max)
{
	struct span s = { start_ns, end_of(start_ns, duration_ns) };
	return move_out(j, tid, out, max, inside, &s);
}

struct expiry {
	uint64_t now, grace, running_since;
};

static int expired(const lw_join_event_t *e, void *arg)
{
	const struct expiry *x = arg;
	uint64_t end = end_of(e->h.start_ns, e->h.duration_ns);

	/* The running callback started before the event: its record, still
	 * to come, may claim it. */
	if (x->running_since != 0 && x->running_since <= e->h.start_ns)
		return 0;
	return x->now >= end && x->now - end >= x->grace;
}

size_t lw_join_expire(lw_join_t *j, uint32_t tid, uint64_t now_ns,
		      uint64_t grace_ns, uint64_t running_since_ns,
		      lw_join_event_t *out, size_t max)
{
	struct expiry x = { now_ns, grace_ns, running_since_ns };
	return move_out(j, tid, out, max, expired, &x);
}

const char *lw_join_latest_stack(const lw_join_t *j, uint32_t tid,
				 uint32_t kind, uint64_t since_ns)
{
	for (size_t i = j->n; i-- > 0;) {
		const lw_join_event_t *e = &j->ev[i];
		if (e->h.tid == tid && e->h.kind == kind &&
		    e->h.start_ns >= since_ns && e->stack != NULL)
			return e->stack;
	}
	return NULL;
}

size_t lw_join_pending(const lw_join_t *j)
{
	return j->n;
}

uint64_t lw_join_dropped(const lw_join_t *j)
{
	return j->dropped;
}
