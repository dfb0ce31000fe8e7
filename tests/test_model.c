/*
 * test_model.c - the agent's model (agent/model.h) fed with the items of a
 * recording, and what check.c and report.c make of it: quantiles, shares,
 * blocking calls from the kernel's totals and from slow events, the
 * budgets with the allow-list, and JSON that stays valid with hostile
 * names; plus the blocking record's round trip through a recording.
 */
#include "lwtest.h"

#include "check.h"
#include "json.h"
#include "model.h"
#include "recording.h"
#include "report.h"

#include <sys/wait.h>

static void feed(lw_model_t *m, uint32_t site, uint64_t start, uint64_t dur)
{
	lw_rec_callback_t c = { .loop_id = 1,
				.site_id = site,
				.kind = 3,
				.start_ns = start,
				.duration_ns = dur };
	lw_model_callback(m, &c);
}

static lw_model_t *sample_model(void)
{
	lw_model_t *m = lw_model_new();
	ASSERT(m != NULL);
	lw_rec_header_t h = { .pid = 42,
			      .comm = "srv",
			      .mono_ns = 1000,
			      .min_ns = 1000000,
			      .sources = 3 };
	lw_model_header(m, &h);
	lw_rec_loop_t l = {
		.id = 1, .tid = 42, .ring_capacity = 64, .name = "main"
	};
	lw_model_loop(m, &l);
	lw_rec_site_t s1 = {
		.loop_id = 1, .site_id = 1, .kind = 3, .name = "fast"
	};
	lw_rec_site_t s2 = { .loop_id = 1,
			     .site_id = 2,
			     .kind = 3,
			     .func = "handle_slow+0x0 (x.c:9)" };
	lw_model_site(m, &s1);
	lw_model_site(m, &s2);
	/* 100 fast ones of 10 us, 3 slow ones of 50, 60 and 70 ms. */
	for (int i = 0; i < 100; i++)
		feed(m, 1, 2000 + (uint64_t)i, 10000);
	feed(m, 2, 10000000, 50000000);
	feed(m, 2, 90000000, 70000000);
	feed(m, 2, 200000000, 60000000);
	const char *frames[] = { "clock_nanosleep+0x65", "handle_slow+0x14" };
	lw_rec_kevent_t k = { .loop_id = 1,
			      .site_id = 2,
			      .kind = 1 /* LW_BPF_EV_SYSCALL */,
			      .start_ns = 90000001,
			      .duration_ns = 69000000,
			      .nr = 230,
			      .syscall = "clock_nanosleep",
			      .fd_path = "",
			      .nframes = 2,
			      .frames = frames };
	lw_model_kevent(m, &k);
	/* The kernel's totals, twice: the later reading replaces. */
	lw_rec_blocking_t b = { .loop_id = 1,
				.site_id = 2,
				.nr = 230,
				.calls = 2,
				.total_ns = 100,
				.max_ns = 69000000,
				.syscall = "clock_nanosleep" };
	lw_model_blocking(m, &b);
	b.calls = 3;
	b.total_ns = 179000000;
	lw_model_blocking(m, &b);
	lw_rec_counters_t c0 = {
		.loop_id = 1, .now_ns = 1000, .busy_ns = 0, .idle_ns = 0
	};
	lw_rec_counters_t c1 = { .loop_id = 1,
				 .now_ns = 1001000000,
				 .busy_ns = 250000000,
				 .idle_ns = 750000000 };
	lw_model_counters(m, &c0);
	lw_model_counters(m, &c1);
	lw_rec_end_t e = { .end_ns = 1001000000 };
	lw_model_end(m, &e);
	return m;
}

TEST(model_sites_quantiles_shares)
{
	lw_model_t *m = sample_model();
	const lw_model_site_t *sorted[4];

	ASSERT_EQ(lw_model_nsites(m), 2);
	ASSERT_EQ(lw_model_sorted(m, sorted, 4), 2);
	/* Worst first: the slow site, named by its function. */
	ASSERT_STREQ(sorted[0]->name, "handle_slow");
	ASSERT_STREQ(sorted[1]->name, "fast");
	ASSERT_EQ(lw_hist_count(&sorted[0]->hist), 3);
	ASSERT_EQ(lw_hist_max(&sorted[0]->hist), 70000000);
	ASSERT_EQ(sorted[0]->worst_start_ns, 90000000);
	uint64_t p50 = lw_hist_quantile(&sorted[0]->hist, 0.5);
	ASSERT_GE(p50, 60000000);
	ASSERT(p50 <= 60000000 + 60000000 / 32);
	double share = lw_model_share(m, sorted[0]);
	ASSERT(share > 0.99 && share <= 1.0);
	ASSERT(lw_model_utilization(lw_model_loop_at(m, 0)) == 0.25);
	/* The blocking call: the kernel's latest totals and the slow
	 * event's stack. */
	ASSERT_EQ(sorted[0]->ncalls, 1);
	const lw_model_call_t *call = &sorted[0]->calls[0];
	ASSERT_EQ(call->count, 3);
	ASSERT_EQ(call->total_ns, 179000000);
	ASSERT_EQ(call->slow, 1);
	ASSERT_EQ(call->stack.n, 2);
	ASSERT_STREQ(call->stack.frames[1], "handle_slow+0x14");
	/* A callback of a site never named still counts, as site#N. */
	feed(m, 9, 5, 5);
	ASSERT_STREQ(lw_model_site_find(m, 1, 9)->name, "site#9");
	lw_model_free(m);
}

/* A recording cut before its end record ends at the latest time it holds
 * (a callback's end, a kernel event's, a counters reading), not at 0: its
 * summary says how long it covers. */
TEST(model_cut_recording_ends_at_latest_time)
{
	lw_model_t *m = lw_model_new();
	char text[4096];

	ASSERT(m != NULL);
	lw_rec_header_t h = { .pid = 7, .comm = "cut", .mono_ns = 1000000000 };
	lw_model_header(m, &h);
	lw_rec_loop_t l = { .id = 1, .tid = 7, .name = "main" };
	lw_model_loop(m, &l);
	ASSERT_EQ(lw_model_end_ns(m), 0);
	feed(m, 1, 1500000000, 10000000);
	lw_rec_counters_t c = { .loop_id = 1, .now_ns = 2000000000 };
	lw_model_counters(m, &c);
	feed(m, 1, 2400000000, 100000000);
	/* An earlier one, and a hostile one whose end wraps: no change. */
	feed(m, 1, 1200000000, 1000);
	feed(m, 1, UINT64_MAX - 5, 10);
	ASSERT_EQ(lw_model_end_ns(m), 2500000000);
	ASSERT(!lw_model_info(m)->ended);

	FILE *f = fmemopen(text, sizeof(text), "w");
	ASSERT(f != NULL);
	struct lw_report_opts ro = { 0 };
	lw_report_text(m, &ro, f);
	fclose(f);
	ASSERT(strstr(text, "summary: PID 7 (cut), 1.5 s,") != NULL);

	/* The end record, when there is one, wins. */
	lw_rec_end_t e = { .end_ns = 3000000000 };
	lw_model_end(m, &e);
	ASSERT_EQ(lw_model_end_ns(m), 3000000000);
	lw_model_free(m);
}

TEST(model_check_budgets_and_allow)
{
	lw_model_t *m = sample_model();
	lw_budget_t *b = lw_budget_new();
	char why[256];

	ASSERT(b != NULL);
	ASSERT_OK(lw_budget_set_flag(b, "callback.max=65ms", why, sizeof(why)));
	ASSERT_OK(lw_budget_set_flag(b, "syscall.max=10ms", why, sizeof(why)));
	ASSERT_OK(
		lw_budget_set_flag(b, "utilization.max=20%", why, sizeof(why)));
	lw_check_t *c = lw_check_eval(m, b);
	ASSERT(c != NULL);
	ASSERT_EQ(c->nfail, 3);
	ASSERT_EQ(c->fail[0].key, LW_CHECK_CALLBACK_MAX);
	ASSERT_STREQ(c->fail[0].site->name, "handle_slow");
	ASSERT_EQ(c->fail[0].value, 70000000);
	ASSERT_STREQ(c->fail[0].limit_from, "flag callback.max");
	ASSERT_EQ(c->fail[1].key, LW_CHECK_SYSCALL_MAX);
	ASSERT_STREQ(c->fail[1].call->syscall, "clock_nanosleep");
	ASSERT_EQ(c->fail[2].key, LW_CHECK_UTIL_MAX);
	ASSERT_EQ(c->fail[2].value, 250000);
	ASSERT(!c->active[LW_CHECK_SITE_P99]);
	ASSERT(lw_check_site_over(c, c->fail[0].site));
	lw_check_free(c);

	ASSERT_OK(lw_budget_set_flag(b, "allow=clock_nanosleep in \"handle_*\"",
				     why, sizeof(why)));
	c = lw_check_eval(m, b);
	ASSERT(c != NULL);
	ASSERT_EQ(c->nfail, 2);
	ASSERT_EQ(c->allowed, 1);
	for (size_t i = 0; i < c->nfail; i++)
		ASSERT(c->fail[i].key != LW_CHECK_SYSCALL_MAX);
	lw_check_free(c);
	lw_budget_free(b);
	lw_model_free(m);
}

/* Hostile names: the JSON stays valid (jq reads it) and says U+FFFD for
 * bytes that are not UTF-8. */
TEST(model_json_hostile_names)
{
	char path[] = "/tmp/lwjsonXXXXXX", cmd[256];
	int fd = mkstemp(path);
	lw_model_t *m = sample_model();

	ASSERT(fd >= 0);
	if (system("command -v jq >/dev/null 2>&1") != 0)
		SKIP("jq is not installed (tools/deps.sh installs it)");
	lw_rec_site_t s = { .loop_id = 1,
			    .site_id = 1,
			    .kind = 3,
			    .name = "q\"uote\\ \x01\x7f \xff\xc3( \xed\xa0\x80 "
				    "ok \xc3\xa9" };
	lw_model_site(m, &s);
	FILE *f = fdopen(fd, "w");
	ASSERT(f != NULL);
	lw_json_t j;
	struct lw_report_opts ro = { 0 };
	lw_json_init(&j, f, 0);
	lw_report_json(m, &ro, "final", 7, &j);
	lw_json_end(&j);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "jq -e '.seq == 7 and ([.sites[].name] | any(test(\"^q\\\"uote"
		 "\\\\\\\\ \\u0001\\u007f \\ufffd\\ufffd\\\\( \\ufffd\\ufffd"
		 "\\ufffd ok \\u00e9$\")))' %s >/dev/null",
		 path);
	ASSERT_EQ(system(cmd), 0);
	unlink(path);
	lw_model_free(m);
}

/* The blocking record and the kevent's site survive a recording. */
TEST(model_recording_blocking_roundtrip)
{
	char path[] = "/tmp/lwrecbXXXXXX", why[256];
	int fd = mkstemp(path);
	lw_rec_header_t h = { .pid = 1, .comm = "x" };
	const char *frames[] = { "fsync+0x3a", "handle_fsync+0x14" };

	ASSERT(fd >= 0);
	lw_rec_writer_t *w = lw_rec_open_fd(fd, &h, 0, why, sizeof(why));
	ASSERT(w != NULL);
	lw_rec_blocking_t b = { .loop_id = 1,
				.site_id = 5,
				.nr = 74,
				.fd_kind = 1,
				.calls = 3,
				.total_ns = 900,
				.max_ns = 400,
				.syscall = "fsync",
				.nframes = 2,
				.frames = frames };
	ASSERT_OK(lw_rec_write_blocking(w, &b));
	lw_rec_kevent_t k = { .loop_id = 1,
			      .site_id = 5,
			      .kind = 1,
			      .syscall = "fsync",
			      .fd_path = "/x" };
	ASSERT_OK(lw_rec_write_item(
		w, &(lw_rec_item_t){ .type = LW_REC_KEVENT, .u.kevent = k }));
	lw_rec_end_t e = { 0 };
	ASSERT_OK(lw_rec_close(w, &e, why, sizeof(why)));

	lw_rec_reader_t *r = lw_rec_reader_open(path, why, sizeof(why));
	lw_rec_item_t it;
	int seen = 0;
	ASSERT(r != NULL);
	while (lw_rec_next(r, &it) > 0) {
		if (it.type == LW_REC_BLOCKING) {
			ASSERT_EQ(it.u.blocking.site_id, 5);
			ASSERT_EQ(it.u.blocking.calls, 3);
			ASSERT_EQ(it.u.blocking.max_ns, 400);
			ASSERT_STREQ(it.u.blocking.syscall, "fsync");
			ASSERT_EQ(it.u.blocking.nframes, 2);
			ASSERT_STREQ(it.u.blocking.frames[1],
				     "handle_fsync+0x14");
			seen++;
		} else if (it.type == LW_REC_KEVENT) {
			ASSERT_EQ(it.u.kevent.site_id, 5);
			seen++;
		}
	}
	ASSERT_EQ(seen, 2);
	ASSERT_EQ(lw_rec_reader_error(r), LW_REC_OK);
	lw_rec_reader_close(r);
	unlink(path);
}
