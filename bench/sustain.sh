#!/usr/bin/env bash
# sustain.sh - the agent under sustained load: part "sustain" of
# bench/run.sh, or on its own:
#
#   bash bench/sustain.sh BUILD/bench     (BUILD/bin/loopwatch too)
#
# The issue-5 target: at 1 million callbacks per second sustained for 60 s,
# zero records lost, agent CPU at most 10 % of one core, and agent memory
# flat (bounded by the number of sites, not by time).
#
# For each mode, bench/sustain_lw runs RATE callbacks per second over SITES
# sites (paced by the clock; it prints the rate it really ran, second by
# second), and every SLOW seconds one callback of 10 ms, which the agent
# catches, joins with the kernel's events and symbolizes as it would in a
# real program (the first such stack loads the symbolizer's debug
# information, ~17 MB, once).  After BARE seconds on its own, `loopwatch attach --duration
# SECONDS` watches it; every 5 s this script samples the agent's CPU time
# (utime + stime of /proc/PID/stat) and RSS (VmRSS of /proc/PID/status), and
# the agent's total CPU time is read from its parent's cutime + cstime once
# it has exited, so the last moments (the final drain and summary) count.
# The modes:
#
#   root   the agent as root: the rings and the kernel probes;
#   rings  target and agent as nobody (setpriv): the rings alone, as an
#          unprivileged user would run it (the target as nobody too, since
#          only its own user, or root, may open its rings).  Without root
#          this is the only mode, as the current user.
#
# Printed per mode: the target's callbacks/s without and with the agent and
# their ratio; the agent's CPU as % of one core over its run and per million
# records read; its RSS at 10 s and at the end and their ratio; the records
# written, read and lost (from the agent's final JSON object with --json,
# else from its "(loop NAME: N records lost, read too late)" lines); and one
# verdict per target.  Nothing is a timed assertion: the script exits 0
# unless something fails to run.
#
# Environment: SUSTAIN_SECONDS (the agent's --duration, 60), SUSTAIN_RATE
# (callbacks per second, 1000000), SUSTAIN_SITES (16), SUSTAIN_BARE (seconds
# without the agent first, 10), SUSTAIN_SLOW (seconds between two slow
# callbacks, 5; 0 for none), SUSTAIN_MODES ("root rings"),
# SUSTAIN_LOOPWATCH (the loopwatch binary; default BUILD/bin/loopwatch next
# to the bench folder), SUSTAIN_KEEP=DIR (keep every output file in DIR).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_BENCH_DIR   (e.g. build/bench)" >&2
	exit 2
fi
dir=$(cd "$1" && pwd)
lw=${SUSTAIN_LOOPWATCH:-$dir/../bin/loopwatch}
seconds=${SUSTAIN_SECONDS:-60}
rate=${SUSTAIN_RATE:-1000000}
sites=${SUSTAIN_SITES:-16}
bare=${SUSTAIN_BARE:-10}
slow=${SUSTAIN_SLOW:-5}
modes=${SUSTAIN_MODES:-root rings}
target=$dir/sustain_lw
hz=$(getconf CLK_TCK)

case $slow in
'' | *[!0-9]*)
	echo "sustain: SUSTAIN_SLOW must be a whole number of seconds (got '$slow')" >&2
	exit 2
	;;
esac
need_positive sustain "SUSTAIN_SECONDS, _RATE, _SITES, _BARE" \
	"$seconds" "$rate" "$sites" "$bare"
need_built sustain 1 " (bench-build, agent)" "$target" "$lw"
lw=$(cd "$(dirname "$lw")" && pwd)/$(basename "$lw")

tmp=$(mktemp -d)
chmod 755 "$tmp" # nobody writes nothing here, but reads nothing either
trap 'rm -rf "$tmp"' EXIT
fail=0

# The agent's final JSON object, if it has --json; else its text output.
json=0
if "$lw" attach --help 2>&1 | grep -q -- '--json'; then
	json=1
fi

echo "sustained load (bench/sustain.sh): $rate callbacks/s over $sites sites" \
	"$([ "$slow" -gt 0 ] && echo "and one of 10 ms every $slow s");" \
	"agent attached for ${seconds} s after ${bare} s alone; lost records from" \
	"$([ $json = 1 ] && echo "--json" || echo "the text output")"

now() { date +%s.%N; }

# "CPU_SECONDS RSS_KB HWM_KB" of process $1 (CPU time, resident set, its
# peak so far), or nothing once it is gone.
sample() {
	local stat mem f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	mem=$(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
		END { print r + 0, h + 0 }' "/proc/$1/status" 2>/dev/null)
	# Fields after "pid (comm) ": utime and stime are the 12th and 13th.
	read -r -a f <<<"${stat##*) }"
	[ "${#f[@]}" -ge 13 ] || return 1
	echo "$(awk -v u="${f[11]}" -v s="${f[12]}" -v hz="$hz" 'BEGIN { printf "%.3f", (u + s) / hz }') ${mem:-0 0}"
}

# One row of samples: a label and "CPU RSS HWM".
row() {
	local c r h
	read -r c r h <<<"$2"
	printf '  %-5s %8s %10s %10s %10s\n' "" "$1" "$c" "$r" "$h"
}

# One run: mode $1 (root or rings).  Appends "KEY VALUE" lines to
# $tmp/res.$1 and prints the samples as it goes.
run_mode() {
	local mode=$1 pre=() out=$tmp/$1
	if [ "$mode" = rings ] && [ "$(id -u)" -eq 0 ]; then
		pre=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
		if ! "${pre[@]}" test -x "$target" || ! "${pre[@]}" test -x "$lw"; then
			echo "  rings: skipped: user nobody cannot run $target or $lw" \
				"(a folder on the way is not world-readable); build elsewhere, e.g." \
				"make BUILD=/tmp/b bench-build agent"
			return 0
		fi
	elif [ "$mode" = root ] && [ "$(id -u)" -ne 0 ]; then
		echo "  root: skipped: not root (no kernel probes); the rings mode runs as $(id -un)"
		return 0
	fi

	# The target, long enough for the bare part, the agent's run, and a
	# little after; every output file is made by this script (not by
	# nobody), the target's and the agent's stdout handed to them open.
	local total=$((bare + seconds + 3))
	"${pre[@]}" env -u LOOPWATCH "$target" -n "$rate" -k "$sites" -s "$total" -l "$slow" \
		>"$out.target" 2>"$out.target.err" &
	local tpid=$!
	local i
	for ((i = 0; i < 100; i++)); do
		grep -q '^# ready' "$out.target" 2>/dev/null && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^# ready' "$out.target"; then
		echo "  $mode: the target did not start:" >&2
		cat "$out.target.err" >&2
		kill "$tpid" 2>/dev/null
		wait "$tpid" 2>/dev/null
		fail=1
		return 1
	fi
	sleep "$bare"

	local args=(attach --duration "$seconds")
	[ $json = 1 ] && args+=(--json)
	local t0
	t0=$(now)
	# The agent runs as a child of a small bash that waits for it and
	# then leaves its own cutime + cstime (the reaped agent's CPU time,
	# fields 14 and 15 after "pid (comm) ") in $out.cpu.
	bash -c '"${@:2}" & echo $! >"$1.pid"; wait $!; rc=$?
		read -r l </proc/$$/stat; set -- "$1" ${l##*) }
		echo "${15} ${16}" >"$1.cpu"; exit $rc' \
		sh "$out" "${pre[@]}" "$lw" "${args[@]}" "$tpid" \
		>"$out.agent" 2>"$out.agent.err" &
	local wpid=$!
	for ((i = 0; i < 50; i++)); do
		[ -s "$out.pid" ] && break
		sleep 0.1
	done
	local apid
	apid=$(cat "$out.pid" 2>/dev/null)
	if [ -z "$apid" ]; then
		echo "  $mode: the agent did not start" >&2
		fail=1
		kill "$tpid" 2>/dev/null
		wait
		return 1
	fi

	# Every 0.5 s, the newest sample; every 5 s, a row.  The memory
	# verdict compares the sample at 10 s with the last one taken while
	# the agent still watched (at most 1 s before its --duration ends):
	# at the end it detaches, symbolizes and prints its summary, a one-off
	# whose peak (VmHWM at the last sample) is shown apart.
	local s steady="" last="" at10="" next=5 el
	printf '  %-5s %8s %10s %10s %10s\n' "$mode" "t (s)" "CPU (s)" "RSS (kB)" "peak (kB)"
	while s=$(sample "$apid"); do
		last=$s
		el=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
		if awk -v e="$el" -v d="$seconds" 'BEGIN { exit !(e < d - 1) }'; then
			steady="$s $el"
		fi
		if awk -v e="$el" -v n="$next" 'BEGIN { exit !(e >= n) }'; then
			row "$el" "$s"
			[ "$next" = 10 ] && at10="$s $el"
			next=$((next + 5))
		fi
		sleep 0.5
	done
	[ -n "$last" ] && row last "$last"
	[ -n "$steady" ] || steady="$last $seconds"
	wait "$wpid"
	local arc=$?
	local t1
	t1=$(now)
	wait "$tpid"
	local trc=$?
	[ -n "$at10" ] || at10=$steady
	if [ "$arc" -ne 0 ]; then
		echo "  $mode: loopwatch exited with $arc:" >&2
		tail -n 5 "$out.agent.err" >&2
		fail=1
	fi
	if [ "$trc" -ne 0 ]; then
		echo "  $mode: the target exited with $trc:" >&2
		cat "$out.target.err" >&2
		fail=1
	fi

	# Records lost and read, from the agent.
	local lost kl rec
	if [ $json = 1 ]; then
		local obj
		obj=$(grep '^{' "$out.agent" | tail -n 1)
		# No final object, or one without loops: not measured (-1),
		# never a silent zero.
		if jq -e '.loops | length > 0' >/dev/null 2>&1 <<<"$obj"; then
			lost=$(jq '[.loops[].records_lost // 0] | add' <<<"$obj")
			rec=$(jq '[.loops[].records // 0] | add' <<<"$obj")
			kl=$(jq '.kernel.events_lost // 0' <<<"$obj")
		else
			echo "  $mode: no final JSON object with loops in the agent's output" >&2
			lost=-1 rec="" kl=-1
			fail=1
		fi
	else
		lost=$(sed -n 's/^(loop .*: \([0-9][0-9]*\) records lost, read too late)$/\1/p' \
			"$out.agent" | awk '{ s += $1 } END { print s + 0 }')
		kl=$(grep -c 'events lost' "$out.agent")
		rec=""
	fi

	awk -v mode="$mode" -v t0="$t0" -v t1="$t1" -v bare="$bare" \
		-v cpu="$(awk '{ print $1 + $2 }' "$out.cpu" 2>/dev/null)" -v hz="$hz" \
		-v at10="$at10" -v steady="$steady" -v last="$last" -v lost="${lost:-0}" -v rec="$rec" \
		-v kl="${kl:-0}" -v rate="$rate" '
	# "sec N real EPOCH callbacks TOTAL per_s X": the loop cumulative count
	# at each second.  Bare: from the first second on to the attach;
	# attached: one second after the attach to the agent exit.
	$1 == "sec" {
		r = $4 + 0; c = $6 + 0
		if (r <= t0) {
			if (b0 == "") { b0 = r; bc0 = c; bp = $8 }
			b1 = r; bc1 = c
		} else if (r >= t0 + 1 && r <= t1) {
			if (a0 == "") { a0 = r; ac0 = c }
			a1 = r; ac1 = c
		}
	}
	END {
		bare_r = b1 > b0 ? (bc1 - bc0) / (b1 - b0) : bp + 0
		att_r = a1 > a0 ? (ac1 - ac0) / (a1 - a0) : 0
		dur = t1 - t0
		cpu_s = cpu / hz
		written = att_r * dur
		read_n = rec != "" ? rec : written - lost
		split(at10, e, " "); split(steady, l, " "); split(last, f, " ")
		printf "  %s: callbacks/s %.0f alone, %.0f with the agent (ratio %.3f)\n",
		       mode, bare_r, att_r, (bare_r > 0 ? att_r / bare_r : 0)
		printf "  %s: agent CPU %.2f s over %.1f s = %.1f%% of one core; %.1f ms per million records read\n",
		       mode, cpu_s, dur, 100 * cpu_s / dur,
		       (read_n > 0 ? 1000 * cpu_s / (read_n / 1e6) : 0)
		# The same between the samples at 10 s and at the end of the
		# watch: without the start (probes loaded, rings found) and the
		# final summary.
		if (l[4] > e[4] + 1)
			printf "  %s: agent CPU from %.0f s to %.0f s: %.1f%% of one core (steady state)\n",
			       mode, e[4], l[4], 100 * (l[1] - e[1]) / (l[4] - e[4])
		printf "  %s: agent RSS %d kB at %.0f s, %d kB at the end of the watch (ratio %.3f); peak %d kB (with the final summary)\n",
		       mode, e[2], e[4], l[2], (e[2] > 0 ? l[2] / e[2] : 0), f[3]
		printf "  %s: records written ~%.0f, read %s%.0f, lost %d (%.1f%%); kernel events lost %s\n",
		       mode, written, (rec != "" ? "" : "~"), read_n, lost,
		       (written > 0 ? 100 * lost / written : 0), kl
		ok = att_r >= 0.99 * rate
		printf "verdict: %-5s %-28s %s (%.0f callbacks/s measured)\n", mode,
		       "rate held with the agent:", (ok ? "MET   " : "MISSED"), att_r
		if (lost < 0)
			printf "verdict: %-5s %-28s not measured\n", mode, "zero records lost:"
		else
			printf "verdict: %-5s %-28s %s (%d of ~%.0f)\n", mode,
			       "zero records lost:", (lost == 0 ? "MET   " : "MISSED"), lost, written
		printf "verdict: %-5s %-28s %s (%.1f%%)\n", mode,
		       "agent CPU <= 10% of a core:", (100 * cpu_s / dur <= 10 ? "MET   " : "MISSED"),
		       100 * cpu_s / dur
		printf "verdict: %-5s %-28s %s (RSS x%.3f from 10 s to the end of the watch)\n", mode,
		       "agent memory flat:", (e[2] > 0 && l[2] <= 1.05 * e[2] ? "MET   " : "MISSED"),
		       (e[2] > 0 ? l[2] / e[2] : 0)
	}' "$out.target"
}

for m in $modes; do
	case $m in
	root | rings) run_mode "$m" ;;
	*)
		echo "sustain: unknown mode '$m' in SUSTAIN_MODES (root, rings)" >&2
		fail=1
		;;
	esac
done
if [ -n "${SUSTAIN_KEEP:-}" ]; then
	mkdir -p "$SUSTAIN_KEEP" && cp "$tmp"/* "$SUSTAIN_KEEP"/
fi
echo "verdicts: MET/MISSED per target; flat memory means at most 5% growth" \
	"from 10 s to the end; the rate is the target's own count (bench/sustain_lw)."
exit $fail
