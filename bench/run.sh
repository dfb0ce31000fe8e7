#!/usr/bin/env bash
# run.sh - run every benchmark against every peer and print one table of
# ns/op figures and loopwatch/peer ratios, then what the ring costs.
#
#   bash bench/run.sh BUILD/bench        (what `make bench` runs)
#
# Part 1, the peers.  One round runs lw, lw-off, uv, ev, event for every
# benchmark, and the rounds repeat (BENCH_ROUNDS, default 3), so a burst of
# noise on this machine hits all peers alike instead of one.  "lw-off" is
# the same loopwatch program with LOOPWATCH=off in its environment (no
# ring); "lw" runs with the ring on, the default.  Each program already
# prints the median of its own repetitions (BENCH_REPS, default 5); this
# script prints, per metric and peer, the median over the rounds.
#
# Part 2, the ring's cost (bench/ring_*_lw.c).  Each figure is measured in
# pairs: the same program with the ring on and with LOOPWATCH=off, one right
# after the other, the order alternating from pair to pair so that a drift
# of the machine favours neither (ring_ab_lw does its pairing inside one
# process, two loops taking turns every ~30 ms).  It prints the medians, the
# median of the pairwise differences (on - off) and their interquartile
# range, and a verdict per target: at most 12 ns added per callback on a
# next_tick storm (ring_ab_lw's storm; and the instrumentation alone,
# ring_micro_lw), at most 3 % on the pipe ring (ring_ab_lw's pipe ring),
# and a reader that drains at least 20 million records per second
# (ring_drain_lw).  See bench/README.md.
#
# Part 3, the kernel probes' cost (bench/kprobes.sh, as root): getppid()
# and a pipe ping-pong with no probes, empty programs on loopwatch's attach
# points, loopwatch watching another thread and this thread, and bpftrace.
#
# Part 4, the agent under sustained load (bench/sustain.sh, about 2.5
# minutes): 1 million callbacks per second for 60 s, watched by loopwatch
# attach as root and with the rings alone; records lost, agent CPU and
# memory.  Its settings are SUSTAIN_* (see the script).
#
# Part 5, the dashboard under a large model (bench/top.sh, about 4
# minutes): keys answered through a real terminal with 10,000 sites,
# against 16 sites and against the terminal's own path; redraws per
# second; and the target's rate alone, under attach and under top.  Its
# settings are TOP_* (see the script).
#
# Part 6, on demand only (BENCH_PARTS=soak; bench/soak.sh, SOAK_SECONDS,
# 600 by default, and its own SOAK_* settings): attach / detach / kill
# cycles against blocky_server under load; crashes, leaked BPF programs,
# and the target's throughput observed / unobserved.
#
# A ratio below 1 means loopwatch is faster.  Nothing here is a timed
# assertion: the script exits 0 unless a program is missing or fails.
#
# Environment: BENCH_ROUNDS (rounds of part 1), BENCH_PAIRS (on/off pairs of
# the storm and the pipe ring, default 10), BENCH_MICRO_PAIRS (pairs of the
# microbenchmark, default 5), BENCH_AB_RUNS (runs of ring_ab_lw, default
# 3), BENCH_PARTS ("peers ring kprobes sustain top", the default, or
# some of them, or "soak", which runs only when named), BENCH_REPS and
# BENCH_DIV (passed on to the programs of part
# 1 and to the pipe ring: repetitions, and a divisor of every count for a
# quick smoke run; BENCH_DIV divides part 2's counts too), BENCH_RAW=FILE
# (keep every figure of part 1 in FILE, of part 2 in FILE.ring, of part 3
# in FILE.kprobes).
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_BENCH_DIR   (e.g. build/bench, after make bench-build)" >&2
	exit 2
fi
dir=$1
rounds=${BENCH_ROUNDS:-3}
pairs=${BENCH_PAIRS:-10}
micro_pairs=${BENCH_MICRO_PAIRS:-5}
ab_runs=${BENCH_AB_RUNS:-3}
parts=${BENCH_PARTS:-peers ring kprobes sustain top}
benches=(timers pipe_ring tcp_pingpong)
peers=(lw lw-off uv ev event)

raw=${BENCH_RAW:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "$raw" ] || raw=$tmp/raw
: >"$raw"
ringraw=$raw.ring
: >"$ringraw"
fail=0

# Run one program and keep its output in $tmp/out: the arguments are
# env(1)'s (leading NAME=VALUE or -u NAME, then the program and its
# arguments).  Fails, and shows the program's stderr, if the program does.
run_prog() {
	if ! env "$@" >"$tmp/out" 2>"$tmp/err"; then
		echo >&2
		echo "bench: env $* failed:" >&2
		cat "$tmp/err" >&2
		fail=1
		return 1
	fi
}

has_part() {
	case " $parts " in *" $1 "*) return 0 ;; esac
	return 1
}

version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'
}

echo "loopwatch benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "kernel $(uname -r); libuv $(version libuv1-dev), libev $(version libev-dev)," \
	"libevent $(version libevent-dev)"
echo "rounds $rounds, repetitions per program ${BENCH_REPS:-5}${BENCH_DIV:+, counts divided by $BENCH_DIV};" \
	"ring on/off pairs: $pairs (storm, pipe ring), $micro_pairs (micro)"
echo

declare -A missing=()
need() {
	if [ ! -x "$1" ]; then
		missing[$1]=1
		return 1
	fi
}

if has_part peers; then
for ((r = 1; r <= rounds; r++)); do
	printf 'round %d/%d:' "$r" "$rounds" >&2
	for b in "${benches[@]}"; do
		for p in "${peers[@]}"; do
			# lw-off: the loopwatch program with its ring off.
			envs=(-u LOOPWATCH)
			prog=$dir/${b}_$p
			if [ "$p" = lw-off ]; then
				envs=(LOOPWATCH=off)
				prog=$dir/${b}_lw
			fi
			need "$prog" || continue
			printf ' %s_%s' "$b" "$p" >&2
			run_prog "${envs[@]}" "$prog" || continue
			awk -v peer="$p" -v round="$r" \
				'$2 == "ns_per_op" { print $1, peer, $3, round }' \
				"$tmp/out" >>"$raw"
		done
	done
	echo >&2
done
fi

# Per (metric, peer): the median over the rounds.  The metrics keep the
# order in which the programs printed them.
if has_part peers; then
awk '
	!($1 in seen) { seen[$1] = 1; order[++nm] = $1 }
	{
		key = $1 SUBSEP $2
		n[key]++
		v[key, n[key]] = $3 + 0
		if (!(key in lo) || $3 + 0 < lo[key]) lo[key] = $3 + 0
		if (!(key in hi) || $3 + 0 > hi[key]) hi[key] = $3 + 0
	}
	function median(key,    k, i, j, t, a) {
		k = n[key]
		for (i = 1; i <= k; i++)
			a[i] = v[key, i]
		for (i = 2; i <= k; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	function cell(m, p) {
		return ((m SUBSEP p) in n) ? sprintf("%10.1f", med[m, p]) : sprintf("%10s", "-")
	}
	function ratio(m, p) {
		if (!((m SUBSEP "lw") in n) || !((m SUBSEP p) in n) || med[m, p] <= 0)
			return sprintf("%7s", "-")
		return sprintf("%7.2f", med[m, "lw"] / med[m, p])
	}
	# A target: every listed metric of loopwatch no slower than the peer.
	function verdict(what, peer, metrics,    list, k, i, m, r, worst, txt) {
		k = split(metrics, list, " ")
		worst = 0
		txt = ""
		for (i = 1; i <= k; i++) {
			m = list[i]
			if (!((m SUBSEP "lw") in n) || !((m SUBSEP peer) in n)) {
				printf "verdict: %-22s not measured (%s missing)\n", what, m
				return
			}
			r = med[m, "lw"] / med[m, peer]
			if (r > worst)
				worst = r
			txt = txt sprintf("%s%s %.2f", i > 1 ? ", " : "", m, r)
		}
		if (worst <= 1.0)
			printf "verdict: %-22s MET       (%s)\n", what, txt
		else if (worst <= 1.05)
			printf "verdict: %-22s MET within noise, <= 5%% slower (%s)\n", what, txt
		else
			printf "verdict: %-22s MISSED    (%s)\n", what, txt
	}
	END {
		for (key in n) {
			split(key, kp, SUBSEP)
			med[kp[1], kp[2]] = median(key)
		}
		printf "%-18s %10s %10s %10s %10s %10s %7s %7s %7s %7s\n",
		       "ns/op (median)", "loopwatch", "lw-off", "libuv", "libev",
		       "libevent", "lw/off", "lw/uv", "lw/ev", "lw/event"
		for (i = 1; i <= nm; i++) {
			m = order[i]
			printf "%-18s %s %s %s %s %s %s %s %s %s\n", m,
			       cell(m, "lw"), cell(m, "lw-off"), cell(m, "uv"),
			       cell(m, "ev"), cell(m, "event"), ratio(m, "lw-off"),
			       ratio(m, "uv"), ratio(m, "ev"), ratio(m, "event")
		}
		print ""
		print "loopwatch = ring on (the default); lw-off = the same programs with LOOPWATCH=off."
		print "ratio = loopwatch / peer; below 1 means loopwatch is faster."
		verdict("timers vs libev:", "ev", "timers_start timers_fire timers_churn")
		verdict("pipe ring vs libuv:", "uv", "pipe_ring_hop")
		# How far apart the rounds were: a ratio closer to 1 than this
		# is within the noise of this run.
		worst = 0
		for (key in n)
			if (n[key] > 1 && lo[key] > 0 && hi[key] / lo[key] > worst) {
				worst = hi[key] / lo[key]
				split(key, kp, SUBSEP)
				wm = kp[1] " on " kp[2]
			}
		if (worst > 0)
			printf "noise: rounds differed by up to %.0f%% (%s)\n", (worst - 1) * 100, wm
	}
' "$raw"
fi

for prog in "${!missing[@]}"; do
	echo "bench: $prog is missing (did make bench-build fail?)" >&2
	fail=1
done

# ---------------------------------------------------------------------------
# Part 2: the ring's cost.

# Run PROG [ARGS] PAIRS times with the ring on and with LOOPWATCH=off, the
# order alternating, and append "METRIC MODE VALUE PAIR" to $ringraw for
# every ns_per_op line.
ring_pairs() {
	local n=$1 prog=$2
	shift 2
	need "$prog" || return 0
	printf ' %s' "$(basename "$prog")" >&2
	for ((i = 1; i <= n; i++)); do
		local order=(on off)
		((i % 2)) || order=(off on)
		for mode in "${order[@]}"; do
			local e=(-u LOOPWATCH)
			[ "$mode" = off ] && e=(LOOPWATCH=off)
			run_prog "${e[@]}" "$prog" "$@" || return 0
			awk -v mode="$mode" -v pair="$i" \
				'$2 == "ns_per_op" { print $1, mode, $3, pair }' \
				"$tmp/out" >>"$ringraw"
		done
		printf '.' >&2
	done
}

# Instructions per tick of the storm, on and off, if this machine lets perf
# count them (many VMs do not): a figure free of timing noise.
perf_instructions() {
	local probe
	probe=$(perf stat -x, -e instructions:u true 2>&1 >/dev/null | head -n1)
	case $probe in
	[0-9]*) ;;
	*)
		echo "instructions: not counted (perf stat -e instructions:u says:" \
			"${probe:-perf not installed})"
		return 0
		;;
	esac
	local prog=$dir/ring_cost_lw ticks=1000000
	need "$prog" || return 0
	for mode in on off; do
		local e=(-u LOOPWATCH)
		[ "$mode" = off ] && e=(LOOPWATCH=off)
		# -q 10: a million ticks; the whole program is counted, and
		# its setup is the same with the ring on or off.
		if ! perf stat -x, -e instructions:u -o "$tmp/perf" \
			env "${e[@]}" "$prog" -r 1 -q 10 >/dev/null 2>&1; then
			echo "instructions: perf stat failed"
			return 0
		fi
		awk -F, -v mode="$mode" -v t="$ticks" \
			'$3 ~ /^instructions/ { printf "%s %.1f\n", mode, $1 / t }' \
			"$tmp/perf" >>"$tmp/instr"
	done
	awk '{ v[$1] = $2 }
	END {
		printf "instructions per tick (storm, perf stat -e instructions:u): on %.1f, off %.1f, added %.1f\n",
		       v["on"], v["off"], v["on"] - v["off"]
	}' "$tmp/instr"
}

if has_part ring; then
	printf 'ring cost:' >&2
	: >"$tmp/instr"
	# The storm: 10 million ticks, one run per process.
	ring_pairs "$pairs" "$dir/ring_cost_lw" -r 1
	# The pipe ring of part 1: each run is a median of BENCH_REPS runs.
	ring_pairs "$pairs" "$dir/pipe_ring_lw"
	# The instrumentation alone: 100 million begin/end pairs.
	ring_pairs "$micro_pairs" "$dir/ring_micro_lw" -r 1
	# The storm and the pipe ring again, ring on and off in one process,
	# taking turns every ~30 ms (it does its own pairing).
	: >"$tmp/ab"
	if need "$dir/ring_ab_lw"; then
		for ((i = 1; i <= ab_runs; i++)); do
			printf ' ring_ab_lw' >&2
			run_prog -u LOOPWATCH "$dir/ring_ab_lw" || break
			awk -v run="$i" '$2 ~ /^(ns_per_op|ratio|count)$/ { print $1, $3, run }' \
				"$tmp/out" >>"$tmp/ab"
		done
	fi
	drain_ok=0
	if need "$dir/ring_drain_lw"; then
		printf ' ring_drain_lw' >&2
		run_prog -u LOOPWATCH "$dir/ring_drain_lw" -r 3 &&
			cp "$tmp/out" "$tmp/drain" && drain_ok=1
	fi
	hist_ok=0
	if need "$dir/hist_lw"; then
		printf ' hist_lw' >&2
		run_prog -u LOOPWATCH "$dir/hist_lw" -r 3 &&
			cp "$tmp/out" "$tmp/hist" && hist_ok=1
	fi
	echo >&2

	echo
	echo "the ring's cost: ring on (default) against LOOPWATCH=off, in pairs run back to back"
	awk '
	function sort(a, k,    i, j, t) {
		for (i = 2; i <= k; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
	}
	# The p-quantile of a[1..k], sorted, interpolating between ranks.
	function q(a, k, p,    x, i) {
		x = 1 + (k - 1) * p
		i = int(x)
		return i >= k ? a[k] : a[i] + (x - i) * (a[i + 1] - a[i])
	}
	# ring_ab_lw, first file: "METRIC VALUE RUN"; each run already gives
	# medians and quartiles over its 100 chunk pairs: take the median
	# over the runs.
	FILENAME == ARGV[1] { ab[$1, ++abn[$1]] = $2 + 0; next }
	function abmed(m,    k, i, x) {
		k = abn[m]
		for (i = 1; i <= k; i++)
			x[i] = ab[m, i]
		sort(x, k)
		return q(x, k, 0.5)
	}
	# Whole-run pairs, second file: "METRIC MODE VALUE PAIR".
	!($1 in seen) { seen[$1] = 1; order[++nm] = $1 }
	{ v[$1, $2, $4] = $3 + 0; if ($4 + 0 > np[$1]) np[$1] = $4 + 0 }
	function row(name, n, on, off, d, d1, d3, r) {
		printf "%-22s %7s %8.1f %8.1f %+8.1f  [%+6.1f, %+6.1f] %7.3f\n",
		       name, n, on, off, d, d1, d3, r
	}
	# MET: the whole middle half of the pairs is within the target;
	# "within noise": the median is on one side, the IQR reaches the
	# other; MISSED: the whole middle half is past it.
	function judge(med, lo, hi, target) {
		if (hi <= target) return "MET                "
		if (med <= target) return "MET within noise   "
		if (lo <= target) return "MISSED within noise"
		return "MISSED             "
	}
	END {
		printf "%-22s %7s %8s %8s %8s  %16s %7s\n", "ns per callback", "pairs",
		       "on", "off", "on-off", "IQR of on-off", "on/off"
		for (mi = 1; mi <= nm; mi++) {
			m = order[mi]
			k = 0
			delete a; delete b; delete d; delete r
			for (p = 1; p <= np[m]; p++) {
				if (!((m SUBSEP "on" SUBSEP p) in v) ||
				    !((m SUBSEP "off" SUBSEP p) in v))
					continue
				k++
				a[k] = v[m, "on", p]; b[k] = v[m, "off", p]
				d[k] = a[k] - b[k]
				r[k] = b[k] > 0 ? a[k] / b[k] : 0
			}
			if (k == 0)
				continue
			sort(a, k); sort(b, k); sort(d, k); sort(r, k)
			med_d[m] = q(d, k, 0.5); q1[m] = q(d, k, 0.25)
			q3[m] = q(d, k, 0.75); med_r[m] = q(r, k, 0.5)
			rq1[m] = q(r, k, 0.25); rq3[m] = q(r, k, 0.75)
			row(m, k, q(a, k, 0.5), q(b, k, 0.5), med_d[m], q1[m],
			    q3[m], med_r[m])
		}
		split("storm pipe", ws, " ")
		for (i = 1; i <= 2; i++) {
			w = "ring_ab_" ws[i]
			if (abn[w "_diff"] > 0)
				row(w " (1 proc)", abn[w "_diff"] "x" abmed(w "_pairs"),
				    abmed(w "_on"), abmed(w "_off"),
				    abmed(w "_diff"), abmed(w "_diff_q1"),
				    abmed(w "_diff_q3"), abmed(w "_ratio"))
		}
		print ""
		print "on-off and on/off: medians of the pairwise differences and ratios; IQR: the"
		print "middle half of the differences.  ring_storm_tick: next_tick storm, one callback"
		print "per loop iteration, whole runs of 10 M ticks.  pipe_ring_hop: the pipe ring of"
		print "the table above, whole runs.  ring_ab_*: the same two in one process, a loop"
		print "with a ring and one without taking turns (runs x chunk pairs; medians over the"
		print "runs).  ring_reactor_pair: the reactor instrumentation alone, 100 M callbacks;"
		print "ring_reactor_iter: the same plus the per-iteration work around the wait;"
		print "ring_probe_pair: lw_probe_begin/end; ring_clock_read: one timestamp, no ring."
		print ""
		m = "ring_storm_tick"; w = "ring_ab_storm"
		if (abn[w "_diff"] > 0) {
			printf "verdict: %-26s %s (storm, one process: %+.1f ns per tick, IQR [%+.1f, %+.1f])\n",
			       "<= 12 ns per callback:",
			       judge(abmed(w "_diff"), abmed(w "_diff_q1"), abmed(w "_diff_q3"), 12),
			       abmed(w "_diff"), abmed(w "_diff_q1"), abmed(w "_diff_q3")
			if (m in med_d)
				printf "         %-26s %19s (storm, whole runs:  %+.1f ns per tick, IQR [%+.1f, %+.1f])\n",
				       "", "", med_d[m], q1[m], q3[m]
		} else if (m in med_d)
			printf "verdict: %-26s %s (storm, whole runs: %+.1f ns per tick, IQR [%+.1f, %+.1f])\n",
			       "<= 12 ns per callback:", judge(med_d[m], q1[m], q3[m], 12),
			       med_d[m], q1[m], q3[m]
		m = "ring_reactor_pair"
		if (m in med_d)
			printf "verdict: %-26s %s (instrumentation alone: %+.1f ns per callback, IQR [%+.1f, %+.1f])\n",
			       "<= 12 ns, microbenchmark:", judge(med_d[m], q1[m], q3[m], 12),
			       med_d[m], q1[m], q3[m]
		m = "pipe_ring_hop"; w = "ring_ab_pipe"
		if (abn[w "_ratio"] > 0) {
			printf "verdict: %-26s %s (pipe ring, one process: %+.1f%% per hop, IQR [%+.1f%%, %+.1f%%])\n",
			       "<= 3 % on the pipe ring:",
			       judge(abmed(w "_ratio"), abmed(w "_ratio_q1"), abmed(w "_ratio_q3"), 1.03),
			       (abmed(w "_ratio") - 1) * 100, (abmed(w "_ratio_q1") - 1) * 100,
			       (abmed(w "_ratio_q3") - 1) * 100
			if (m in med_r)
				printf "         %-26s %19s (pipe ring, whole runs:  %+.1f%% per hop, IQR [%+.1f%%, %+.1f%%])\n",
				       "", "", (med_r[m] - 1) * 100, (rq1[m] - 1) * 100, (rq3[m] - 1) * 100
		} else if (m in med_r)
			printf "verdict: %-26s %s (pipe ring, whole runs: %+.1f%% per hop, IQR [%+.1f%%, %+.1f%%])\n",
			       "<= 3 % on the pipe ring:", judge(med_r[m], rq1[m], rq3[m], 1.03),
			       (med_r[m] - 1) * 100, (rq1[m] - 1) * 100, (rq3[m] - 1) * 100
	}
	' "$tmp/ab" "$ringraw"
	perf_instructions

	if [ "$drain_ok" = 1 ]; then
		echo
		echo "the reader's drain (lw_rr_read, batches of 4096, ring of 4M records; median of 3):"
		awk '
		$2 == "ns_per_op" { ns[$1] = $3 + 0 }
		$2 == "pct" { lost[$1] = $3; of[$1] = $5 }
		function rate(m) { return ns[m] > 0 ? 1000 / ns[m] : 0 }
		END {
			printf "  live, reader spinning:   %6.1f M records/s read, %.3f%% lost (writer %.1f ns/record)\n",
			       rate("ring_drain_spin"), lost["ring_drain_spin_lost"], ns["ring_drain_spin_writer"]
			printf "  live, reader polling:    %6.1f M records/s read, %.3f%% lost (writer %.1f ns/record);\n",
			       rate("ring_drain_poll"), lost["ring_drain_poll_lost"], ns["ring_drain_poll_writer"]
			printf "                           reader busy %.1f ns/record = %.1f M records/s\n",
			       ns["ring_drain_poll_reader"], rate("ring_drain_poll_reader")
			printf "  writer alone:            %6.1f M records/s written\n", rate("ring_drain_alone_writer")
			printf "  pure drain (no writer):  %6.1f M records/s read\n", rate("ring_drain_pure")
			cap = rate("ring_drain_pure")
			if (rate("ring_drain_poll_reader") < cap)
				cap = rate("ring_drain_poll_reader")
			printf "verdict: %-26s %s (the reader reads %.0f M records/s at worst, pure or live)\n",
			       ">= 20 M records/s drained:", (cap >= 20 ? "MET                " : "MISSED             "), cap
		}
		' "$tmp/drain"
	fi
	if [ "$hist_ok" = 1 ]; then
		echo
		echo "the agent's aggregation (agent/hist.h, median of 3):"
		awk '$2 == "records_per_s" { printf "  %-20s %8.1f M records/s\n", $1, $3 / 1e6 }' "$tmp/hist"
		if [ "$drain_ok" = 1 ]; then
			cat "$tmp/drain" "$tmp/hist" | awk '
			$2 == "ns_per_op" { ns[$1] = $3 + 0 }
			END {
				# The aggregation of the agent itself (the model), the
				# worse of 16 and 1000 sites.
				agg = ns["model_agg_sites1000"]
				if (ns["model_agg_sites16"] > agg)
					agg = ns["model_agg_sites16"]
				r = 1000 / (ns["ring_drain_pure"] + agg)
				printf "verdict: %-26s %s (%.0f M records/s drained and aggregated by the model, worst of 16 and 1000 sites)\n",
				       ">= 20 M records/s drain+agg:", (r >= 20 ? "MET                " : "MISSED             "), r
			}'
		fi
	fi
fi

# Part 3: its own script (it needs root, bpftrace, and BUILD/bin/loopwatch);
# its figures go to FILE.kprobes.
if has_part kprobes; then
	echo
	BENCH_RAW=${BENCH_RAW:+$BENCH_RAW.kprobes} \
		bash "$(dirname "$0")/kprobes.sh" "$dir" || fail=1
fi

# ---------------------------------------------------------------------------
# Part 4: the agent under sustained load; its own script (it needs
# BUILD/bin/loopwatch; root for its "root" mode), which prints its figures
# and verdicts.
if has_part sustain; then
	echo
	bash "$(dirname "$0")/sustain.sh" "$dir" || fail=1
fi
# ---------------------------------------------------------------------------
# Part 5: the dashboard under a large model; its own script (it needs tmux
# and BUILD/bin/loopwatch), which prints its figures and verdicts.
if has_part top; then
	echo
	bash "$(dirname "$0")/top.sh" "$dir" || fail=1
fi

# ---------------------------------------------------------------------------
# Part 6, only when BENCH_PARTS names it: the soak (bench/soak.sh takes the
# build folder, the parent of the bench folder).
if has_part soak; then
	echo
	bash "$(dirname "$0")/soak.sh" "$dir/.." "${SOAK_SECONDS:-600}" || fail=1
fi
exit $fail
