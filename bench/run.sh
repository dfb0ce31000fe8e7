#!/usr/bin/env bash
# run.sh - run every benchmark against every peer and print one table of
# ns/op figures and loopwatch/peer ratios.
#
#   bash bench/run.sh BUILD/bench        (what `make bench` runs)
#
# The peers are interleaved: one round runs lw, uv, ev, event for every
# benchmark, and the rounds repeat (BENCH_ROUNDS, default 3), so a burst of
# noise on this machine hits all peers alike instead of one.  Each program
# already prints the median of its own repetitions (BENCH_REPS, default 5);
# this script prints, per metric and peer, the median over the rounds.
#
# A ratio below 1 means loopwatch is faster.  Nothing here is a timed
# assertion: the script exits 0 unless a program is missing or fails.
#
# Environment: BENCH_ROUNDS (rounds), BENCH_REPS and BENCH_DIV (passed on to
# the programs: repetitions, and a divisor of every count for a quick smoke
# run), BENCH_RAW=FILE (keep every figure of every round in FILE).
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_BENCH_DIR   (e.g. build/bench, after make bench-build)" >&2
	exit 2
fi
dir=$1
rounds=${BENCH_ROUNDS:-3}
benches=(timers pipe_ring tcp_pingpong)
peers=(lw uv ev event)

raw=${BENCH_RAW:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "$raw" ] || raw=$tmp/raw
: >"$raw"
fail=0

version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'
}

echo "loopwatch benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "kernel $(uname -r); libuv $(version libuv1-dev), libev $(version libev-dev)," \
	"libevent $(version libevent-dev)"
echo "rounds $rounds, repetitions per program ${BENCH_REPS:-5}${BENCH_DIV:+, counts divided by $BENCH_DIV}"
echo

declare -A missing=()
for ((r = 1; r <= rounds; r++)); do
	printf 'round %d/%d:' "$r" "$rounds" >&2
	for b in "${benches[@]}"; do
		for p in "${peers[@]}"; do
			prog=$dir/${b}_$p
			if [ ! -x "$prog" ]; then
				missing[$prog]=1
				continue
			fi
			printf ' %s_%s' "$b" "$p" >&2
			if ! "$prog" >"$tmp/out" 2>"$tmp/err"; then
				echo >&2
				echo "bench: $prog failed:" >&2
				cat "$tmp/err" >&2
				fail=1
				continue
			fi
			awk -v peer="$p" -v round="$r" \
				'$2 == "ns_per_op" { print $1, peer, $3, round }' \
				"$tmp/out" >>"$raw"
		done
	done
	echo >&2
done
for prog in "${!missing[@]}"; do
	echo "bench: $prog is missing (did make bench-build fail?)" >&2
	fail=1
done

# Per (metric, peer): the median over the rounds.  The metrics keep the
# order in which the programs printed them.
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
		printf "%-18s %10s %10s %10s %10s %7s %7s %7s\n", "ns/op (median)",
		       "loopwatch", "libuv", "libev", "libevent",
		       "lw/uv", "lw/ev", "lw/event"
		for (i = 1; i <= nm; i++) {
			m = order[i]
			printf "%-18s %s %s %s %s %s %s %s\n", m,
			       cell(m, "lw"), cell(m, "uv"), cell(m, "ev"),
			       cell(m, "event"), ratio(m, "uv"), ratio(m, "ev"),
			       ratio(m, "event")
		}
		print ""
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

exit $fail
