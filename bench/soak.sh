#!/usr/bin/env bash
# soak.sh - loopwatch attached, detached and killed over and over against
# a server under load, for a bounded time: part "soak" of bench/run.sh, or
# on its own:
#
#   bash bench/soak.sh BUILD [SECONDS]     (BUILD as in make BUILD=, e.g. build;
#                                           SECONDS 600 by default)
#
# The hardening target: at least 10 minutes of attach / detach / kill
# cycles against blocky_server under load end with zero crashes, zero
# leaked BPF programs, and the target's throughput within a few percent of
# its unobserved throughput, measured side by side.
#
# BUILD/examples/blocky_server serves BUILD/tests/progs/http_load: CONNS
# keep-alive connections asking GET /health as fast as it answers (a closed
# loop, so the rate is the server's throughput), counted every 100 ms.  The
# time goes in pairs of phases of PHASE seconds, one unobserved and one
# observed, in alternating order (U O, U O, then O U, O U, ...) so that a
# drift of the machine favours neither.  The pairs take the modes in turn:
#
#   root     the agent as root: the rings and the kernel probes;
#   rings    the agent as nobody (setpriv): the rings alone, as an
#            unprivileged user gets them.  The target then runs as nobody
#            too (only its own user, or root, may open its rings), in both
#            modes.  Without root this is the only mode, as the current user.
#
# and the observed phases take these kinds in turn:
#
#   attach   loopwatch attach --duration (PHASE + 1): ends by itself (0)
#   sigint   loopwatch attach, detached with SIGINT at the end of the phase (0)
#   kill     for the whole phase, loopwatch attach or record started and
#            killed with SIGKILL at a random moment of its first 1.5 s,
#            start-up included (loading the BPF programs, reading the
#            symbols), again and again (killed: 137); loopwatch report of a
#            cut recording reads back what is before the cut and says
#            where it is (2, a damaged recording)
#   check    loopwatch check --budget callback.max=10ms --duration
#            (PHASE + 1): broken by the phase's slow request (1)
#   record   loopwatch record --duration (PHASE + 1), then loopwatch report
#            of the file (0, 0)
#
# Every phase, observed or not, also asks GET /sleep?ms=20 once (a slow
# callback to see, the same cost on both sides).  Throughput is measured
# over the phase's window: for attach, sigint, check and record, from the
# agent's "attached to PID" line on for PHASE seconds (so its start-up, a
# second of CPU to read symbols and debug information, is left out); for
# kill, over the whole phase, start-ups included.
#
# Printed: each pair's rates and ratio; the cycles (agents started, by
# kind and mode); crashes (an agent whose exit status is not the one expected, or
# whose output has a sanitizer report; a dead target; a failed request;
# the server's count of requests served not equal to the load's answers
# plus this script's requests); BPF programs leaked (as root: every program
# an agent held, read from /proc/AGENT/fdinfo just before it ended or was
# killed, gone within 5 s; and no program loaded since the start under one
# of their names that no process holds, 2 s later still); the target's
# throughput observed / unobserved (per second, and per second of the
# target's CPU time), the median of the pairs' ratios with its spread, per
# mode and per kind; and the unobserved throughput of the first and last
# pairs.  The script exits 1 if there was a crash, a leak
# or an inconsistent count, 2 on bad usage; the throughput is a figure,
# never a pass/fail.
#
# Environment: SOAK_PHASE (seconds per phase, 10), SOAK_CONNS (the load's
# connections, 2), SOAK_MODES ("root rings" as root, else "rings"), SOAK_LOOPWATCH (the agent; BUILD/bin/loopwatch; an ASan
# build, e.g. build/asan/bin/loopwatch, is checked for sanitizer reports),
# SOAK_SEED (the random moments, 1), SOAK_KEEP=DIR (keep every file: the
# agents' outputs, the load's counts, the windows; without it, only the
# output of the agents that crashed is kept, in a folder it names).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD [SECONDS]   (e.g. build 600)" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
seconds=${2:-600}
phase=${SOAK_PHASE:-10}
conns=${SOAK_CONNS:-2}
seed=${SOAK_SEED:-1}
root=0
[ "$(id -u)" -eq 0 ] && root=1
modes=${SOAK_MODES:-$([ $root = 1 ] && echo "root rings" || echo rings)}
lw=${SOAK_LOOPWATCH:-$build/bin/loopwatch}
server=$build/examples/blocky_server
load=$build/tests/progs/http_load
need_positive soak "SECONDS, SOAK_PHASE, SOAK_CONNS and SOAK_SEED" \
	"$seconds" "$phase" "$conns" "$seed"
need_built soak 2 "" "$server" "$load" "$lw"
for t in jq awk; do
	if ! command -v $t >/dev/null; then
		echo "soak: needs $t (tools/deps.sh installs it)" >&2
		exit 2
	fi
done
read -r -a modes <<<"$modes"
# Who runs the target, and the agent in each mode: as root, "rings" means
# nobody, and the target is nobody's then.
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
as_target=()
declare -A as_agent=([root]="" [rings]="")
for m in "${modes[@]}"; do
	case $m in
	root)
		if [ $root = 0 ]; then
			echo "soak: mode root needs root (SOAK_MODES=rings runs without)" >&2
			exit 2
		fi
		;;
	rings)
		if [ $root = 1 ]; then
			if ! "${as_nobody[@]}" test -x "$lw" ||
				! "${as_nobody[@]}" test -x "$server"; then
				echo "soak: user nobody cannot run $lw or $server (a folder on" \
					"the way is not world-readable); build elsewhere, or SOAK_MODES=root" >&2
				exit 2
			fi
			as_target=("${as_nobody[@]}")
			as_agent[rings]="${as_nobody[*]}"
		fi
		;;
	*)
		echo "soak: unknown mode '$m' in SOAK_MODES (root, rings)" >&2
		exit 2
		;;
	esac
done
bpftool=$(command -v bpftool || echo /usr/sbin/bpftool)
if [ $root = 1 ] && [ ! -x "$bpftool" ]; then
	echo "soak: needs bpftool to count BPF programs (tools/deps.sh installs it)" >&2
	exit 2
fi
RANDOM=$seed

tmp=$(mktemp -d)
# Recordings are made by the agent, nobody's in mode rings.
chmod 755 "$tmp"
mkdir -m 1777 "$tmp/w"
srv_pid="" load_pid="" agent_pid=""
cleanup() {
	for p in $agent_pid $load_pid $srv_pid; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "${SOAK_KEEP:-}" ]; then
		mkdir -p "$SOAK_KEEP" && cp -r "$tmp"/* "$SOAK_KEEP"/
	elif ls "$tmp"/crash.* >/dev/null 2>&1; then
		local keep
		keep=$(mktemp -d /tmp/soak-crash.XXXXXX)
		cp "$tmp"/crash.* "$keep"/
		echo "soak: the output of the agents that crashed is in $keep"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

now() { date +%s.%N; }
hz=$(getconf CLK_TCK)
# The CPU time, in seconds, that process $1 has used (all its threads).
cpu_of() {
	local l f
	l=$(cat "/proc/$1/stat" 2>/dev/null) || {
		echo 0
		return
	}
	# Fields after "pid (comm) ": utime and stime are the 12th and 13th.
	read -r -a f <<<"${l##*) }"
	awk -v u="${f[11]}" -v s="${f[12]}" -v hz="$hz" 'BEGIN { printf "%.2f", (u + s) / hz }'
}
# Sleep until the time $1 (from now).
sleep_until() {
	local d
	d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; if (d > 0) printf "%.3f", d; else print 0 }')
	[ "$d" != 0 ] && sleep "$d"
}
# Wait up to $2 s for a line with $3 in file $1.
wait_for() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		grep -q -- "$3" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

crashes=0
crash() {
	crashes=$((crashes + 1))
	echo "  CRASH: $*"
}

# ---- BPF programs ----

# Every BPF program id loaded now, one a line (sorted as comm(1) wants).
all_progs() { "$bpftool" prog show -j 2>/dev/null | jq -r '.[].id' | sort; }
# The prog ids that process $1 (or every process, for "all") holds; sorted
# the same way.
held_progs() {
	local d=/proc/$1/fdinfo
	[ "$1" = all ] && d='/proc/[0-9]*/fdinfo'
	# shellcheck disable=SC2086
	cat $d/* 2>/dev/null | sed -n 's/^prog_id:[[:space:]]*//p' | sort -u
}
prog_name() { "$bpftool" prog show id "$1" -j 2>/dev/null | jq -r '.name // empty'; }
prog_alive() { "$bpftool" prog show id "$1" >/dev/null 2>&1; }
# Note what agent $1 holds now, just before it ends.
note_progs() {
	[ $root = 1 ] || return 0
	held_progs "$1" >>"$tmp/ours"
}

# ---- the target and its load ----

"${as_target[@]}" "$server" --port 0 --threads 2 >"$tmp/server" 2>&1 &
srv_pid=$!
if ! wait_for "$tmp/server" 30 "listening on"; then
	echo "soak: blocky_server did not start:" >&2
	cat "$tmp/server" >&2
	exit 1
fi
port=$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server")
[ $root = 1 ] && all_progs >"$tmp/before"
: >"$tmp/ours"
"$load" --port "$port" --conns "$conns" --every 100 >"$tmp/load" 2>&1 &
load_pid=$!
wait_for "$tmp/load" 10 "# ready" || {
	echo "soak: http_load did not start" >&2
	exit 1
}
asked=0
# One request of this script's own, counted.
ask() {
	if "$load" --port "$port" --conns 1 --requests 1 --path "$1" >>"$tmp/asks" 2>&1; then
		asked=$((asked + 1))
	else
		crash "GET $1 failed: $(tail -n 1 "$tmp/asks")"
	fi
}

echo "soak (bench/soak.sh): ${seconds} s of loopwatch attach / detach / kill cycles" \
	"against blocky_server (pid $srv_pid) under load ($conns keep-alive connections" \
	"asking GET /health); phases of ${phase} s, unobserved and observed in pairs;" \
	"modes: ${modes[*]} (root: rings and kernel probes; rings: the rings alone," \
	"$([ $root = 1 ] && echo "the agent as nobody" || echo "the agent as $(id -un)"))"
echo "agent: $lw"

# ---- the phases ----

kinds=(attach sigint kill check record)
sanitizer='AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:'
declare -A started=()
agent_n=0

# Check agent $1's exit status $2 against the expected $3 (a list), and
# its output file $4 for sanitizer reports.
judge() {
	local ok=0 e
	[ "$2" = hung ] && return # said already
	for e in $3; do [ "$2" = "$e" ] && ok=1; done
	if [ $ok = 0 ]; then
		crash "agent $1 exited with $2, expected $3: $(grep -v '^ ' "$4" | tail -n 3 | tr '\n' '|')"
		cp "$4" "$tmp/crash.$1" 2>/dev/null
	elif grep -qE "$sanitizer" "$4"; then
		crash "agent $1: sanitizer report in its output"
		cp "$4" "$tmp/crash.$1"
	fi
	[ -n "${SOAK_KEEP:-}" ] || rm -f "$4"
}

# Start the agent, as the mode wants it, with arguments "$@", its output
# in $tmp/a.N; sets agent_pid and agent_out.
start_agent() {
	agent_n=$((agent_n + 1))
	agent_out=$tmp/a.$agent_n
	# (setpriv execs the agent: agent_pid is the agent's.)
	# shellcheck disable=SC2086
	${as_agent[$mode]} "$lw" "$@" >"$agent_out" 2>&1 &
	agent_pid=$!
}

# Wait for the running agent, at most 30 s; its exit status in agent_rc.
# One that is still there then hangs: that is a crash too (it is killed).
end_agent() {
	local i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$agent_pid" 2>/dev/null || break
		# A zombie has ended: wait reaps it below.
		[ "$(awk '{ print $3 }' "/proc/$agent_pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.05
	done
	if [ $i = 600 ]; then
		crash "agent $agent_n hangs: still running 30 s after it should have ended"
		kill -KILL "$agent_pid" 2>/dev/null
	fi
	wait "$agent_pid"
	agent_rc=$?
	[ $i = 600 ] && agent_rc=hung
	agent_pid=""
}

# An observed phase of kind $1 with a steady agent; its window in win.
steady_phase() {
	local kind=$1 t1 t2 c1 c2 args=()
	case $kind in
	attach) args=(attach --quiet --min-ms 10 --duration $((phase + 1))) ;;
	sigint) args=(attach --quiet --min-ms 10) ;;
	check) args=(check --budget callback.max=10ms --duration $((phase + 1))) ;;
	record) args=(record -o "$tmp/w/rec" --min-ms 10 --duration $((phase + 1))) ;;
	esac
	start_agent "${args[@]}" "$srv_pid"
	started[$kind]=$((${started[$kind]:-0} + 1))
	started[$mode]=$((${started[$mode]:-0} + 1))
	if ! wait_for "$agent_out" 60 "attached to PID"; then
		crash "agent $agent_n ($kind) did not attach: $(tail -n 3 "$agent_out" | tr '\n' '|')"
	fi
	t1=$(now) c1=$(cpu_of "$srv_pid")
	ask "/sleep?ms=20"
	sleep_until "$(awk -v t="$t1" -v p="$phase" 'BEGIN { printf "%.3f", t + p }')"
	t2=$(now) c2=$(cpu_of "$srv_pid")
	note_progs "$agent_pid"
	[ "$kind" = sigint ] && kill -INT "$agent_pid"
	end_agent
	case $kind in
	check) judge "$agent_n" "$agent_rc" 1 "$agent_out" ;;
	*) judge "$agent_n" "$agent_rc" 0 "$agent_out" ;;
	esac
	if [ "$kind" = record ]; then
		"$lw" report "$tmp/w/rec" >"$tmp/report" 2>&1
		local rc=$?
		grep -q 'GET /sleep' "$tmp/report" ||
			crash "the report of recording $agent_n does not name GET /sleep"
		judge "$agent_n.report" $rc 0 "$tmp/report"
		rm -f "$tmp/w/rec"
	fi
	win="$t1 $t2 $c1 $c2"
}

# An observed phase of kind kill: for the whole phase, agents killed at
# random moments; its window in win.
kill_phase() {
	local t1 c1 end d what
	t1=$(now) c1=$(cpu_of "$srv_pid")
	end=$(awk -v t="$t1" -v p="$phase" 'BEGIN { printf "%.3f", t + p }')
	ask "/sleep?ms=20"
	while awk -v e="$end" -v n="$(now)" 'BEGIN { exit !(n < e) }'; do
		if [ $((RANDOM % 2)) = 0 ]; then
			what=attach
			start_agent attach --quiet --min-ms 10 "$srv_pid"
		else
			what=record
			start_agent record -o "$tmp/w/cut" --min-ms 10 "$srv_pid"
		fi
		started[kill]=$((${started[kill]:-0} + 1))
		started[$mode]=$((${started[$mode]:-0} + 1))
		d=$((RANDOM % 1500))
		sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
		note_progs "$agent_pid"
		if grep -q "attached to PID" "$agent_out"; then
			killed_watching=$((killed_watching + 1))
		else
			killed_start=$((killed_start + 1))
		fi
		kill -KILL "$agent_pid" 2>/dev/null
		end_agent
		judge "$agent_n" "$agent_rc" 137 "$agent_out"
		# A recorder killed outright leaves a cut file, when it got as
		# far as making one: report reads back what is before the cut
		# and says where it is, with exit status 2 (a damaged
		# recording, docs/recording.md).
		if [ "$what" = record ] && [ -s "$tmp/w/cut" ]; then
			"$lw" report "$tmp/w/cut" >"$tmp/report" 2>&1
			local rc=$?
			if ! grep -q 'recording cut at offset' "$tmp/report"; then
				crash "report of cut recording $agent_n does not say where it was cut"
				cp "$tmp/report" "$tmp/crash.$agent_n.report"
			fi
			judge "$agent_n.report" $rc 2 "$tmp/report"
			cut_read=$((cut_read + 1))
		fi
		rm -f "$tmp/w/cut"
		kill -0 "$srv_pid" 2>/dev/null || break
	done
	win="$t1 $(now) $c1 $(cpu_of "$srv_pid")"
}

# An unobserved phase; its window in win.
unobserved_phase() {
	local t1 c1
	t1=$(now) c1=$(cpu_of "$srv_pid")
	ask "/sleep?ms=20"
	sleep_until "$(awk -v t="$t1" -v p="$phase" 'BEGIN { printf "%.3f", t + p }')"
	win="$t1 $(now) $c1 $(cpu_of "$srv_pid")"
}

killed_start=0 killed_watching=0 cut_read=0
start=$(now)
: >"$tmp/windows"
pair=0
while [ $pair = 0 ] || awk -v s="$start" -v n="$(now)" -v d="$seconds" \
	'BEGIN { exit !(n - s < d) }'; do
	kind=${kinds[$((pair % ${#kinds[@]}))]}
	mode=${modes[$((pair % ${#modes[@]}))]}
	# The order turns every two pairs, so that it is not tied to the mode.
	for side in $([ $((pair / 2 % 2)) = 0 ] && echo "U O" || echo "O U"); do
		if [ "$side" = U ]; then
			unobserved_phase
		elif [ "$kind" = kill ]; then
			# (bash says "Killed" of each agent killed, on stderr.)
			kill_phase 2>/dev/null
		else
			steady_phase "$kind"
		fi
		echo "$pair $side $kind $mode $win" >>"$tmp/windows"
	done
	if ! kill -0 "$srv_pid" 2>/dev/null; then
		crash "the target (blocky_server) is gone"
		break
	fi
	pair=$((pair + 1))
done
elapsed=$(awk -v s="$start" -v n="$(now)" 'BEGIN { printf "%.0f", n - s }')

# ---- the end: the load, the target, the programs ----

kill -TERM "$load_pid"
wait "$load_pid"
load_rc=$?
load_pid=""
read -r load_ok load_err < <(sed -n 's/^total ok \([0-9]*\) errors \([0-9]*\)$/\1 \2/p' "$tmp/load")
if [ -z "${load_ok:-}" ] || [ "$load_rc" -ne 0 ] || [ "${load_err:-1}" -ne 0 ]; then
	crash "the load ended with status $load_rc: $(tail -n 1 "$tmp/load")"
fi
kill -TERM "$srv_pid"
wait "$srv_pid"
srv_rc=$?
srv_pid=""
served=$(sed -n 's/^blocky_server: served \([0-9]*\) requests$/\1/p' "$tmp/server")
[ "$srv_rc" -eq 0 ] || crash "blocky_server exited with $srv_rc"
grep -qE "$sanitizer" "$tmp/server" "$tmp/load" "$tmp/asks" &&
	crash "a sanitizer report from blocky_server or http_load (SOAK_KEEP=DIR keeps them)"
consistent=0
if [ -n "$served" ] && [ -n "${load_ok:-}" ] && [ "$served" -eq $((load_ok + asked)) ]; then
	consistent=1
fi

leaked=0 ours_n=0
if [ $root = 1 ]; then
	sort -u "$tmp/ours" -o "$tmp/ours"
	ours_n=$(wc -l <"$tmp/ours")
	# The names of the agents' programs (those still loaded can tell).
	: >"$tmp/names"
	left=""
	for ((i = 0; i < 50; i++)); do
		left=""
		while read -r id; do
			prog_alive "$id" && left="$left $id"
		done <"$tmp/ours"
		[ -z "$left" ] && break
		sleep 0.1
	done
	for id in $left; do
		echo "  leaked: BPF program $id ($(prog_name "$id")), held by an agent"
		leaked=$((leaked + 1))
	done
	# Programs loaded since the start that no process holds, under a
	# name the agents' programs bear (lw_*): an agent killed between
	# loading one and our last look at its fds would leave one so.
	orphans() {
		comm -13 "$tmp/before" <(all_progs) | comm -23 - <(held_progs all)
	}
	cand=""
	for id in $(orphans); do
		case $(prog_name "$id") in lw_*) cand="$cand $id" ;; esac
	done
	if [ -n "$cand" ]; then
		sleep 2
		still=$(orphans)
		for id in $cand; do
			if grep -qx "$id" <<<"$still"; then
				echo "  leaked: BPF program $id ($(prog_name "$id")), held by no process"
				leaked=$((leaked + 1))
			fi
		done
	fi
fi

# ---- the figures ----

total_started=0
for k in "${kinds[@]}"; do total_started=$((total_started + ${started[$k]:-0})); done
by_mode=""
for m in "${modes[@]}"; do by_mode="$by_mode${by_mode:+, }${started[$m]:-0} $m"; done
echo
echo "soak: ${elapsed} s, $pair pairs of ${phase} s phases"
echo "cycles: $total_started agents started ($by_mode): ${started[attach]:-0} attach --duration," \
	"${started[sigint]:-0} attach + SIGINT, ${started[check]:-0} check," \
	"${started[record]:-0} record + report, ${started[kill]:-0} attach or record + SIGKILL" \
	"($killed_start in their start-up, $killed_watching while watching; $cut_read cut recordings read back)"
echo "crashes: $crashes (agents with an unexpected exit status or a sanitizer report," \
	"failed requests, a dead target)"
echo "target: served $served requests; the load had ${load_ok:-?} answers, ${load_err:-?} errors," \
	"and this script asked $asked: $([ $consistent = 1 ] && echo consistent || echo INCONSISTENT)"
if [ $root = 1 ]; then
	echo "BPF programs leaked: $leaked (the agents held $ours_n distinct programs)"
else
	echo "BPF programs leaked: not checked (not root: the rings alone, no programs)"
fi

# Each window's rate, from the load's counts (interpolated at the window's
# ends), in requests per second and per second of the target's CPU time
# (what its own threads spent, the probes' programs running on its
# syscalls included; other load on the machine changes it less than the
# wall-clock rate); then the pairs' ratios, and their medians per mode.
awk '
function count(t,   i) {
	if (n == 0 || t <= T[1]) return C[1]
	for (i = 2; i <= n; i++)
		if (T[i] >= t)
			return C[i - 1] + (C[i] - C[i - 1]) * (t - T[i - 1]) / (T[i] - T[i - 1])
	return C[n]
}
# The q-quantile of a[1..m], interpolated (0.5: the median).
function quant(a, m, q,   b, i, j, k, x) {
	for (i = 1; i <= m; i++) b[i] = a[i]
	for (i = 2; i <= m; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
	k = 1 + q * (m - 1); i = int(k)
	return i >= m ? b[m] : b[i] + (b[i + 1] - b[i]) * (k - i)
}
function spread(a, m) {
	return sprintf("median %.3f (quartiles %.3f, %.3f; min %.3f, max %.3f)",
	       quant(a, m, 0.5), quant(a, m, 0.25), quant(a, m, 0.75), quant(a, m, 0), quant(a, m, 1))
}
# Append the ratio pair (r, rc) to the group g.
function add(g, r, rc) {
	ng[g]++; GR[g, ng[g]] = r; GC[g, ng[g]] = rc
}
function group(g, what,   i, A, B) {
	if (!(g in ng)) return
	for (i = 1; i <= ng[g]; i++) { A[i] = GR[g, i]; B[i] = GC[g, i] }
	printf "  %s, %d pairs:\n    requests/s %s\n    per CPU s  %s\n", what, ng[g], spread(A, ng[g]), spread(B, ng[g])
}
FNR == NR { if ($1 == "t") { n++; T[n] = $2; C[n] = $4 }; next }
{
	req = count($6) - count($5)
	rate = ($6 > $5) ? req / ($6 - $5) : 0
	cpu = ($8 > $7) ? req / ($8 - $7) : 0
	if ($2 == "U") { u[$1] = rate; uc[$1] = cpu }
	else { o[$1] = rate; oc[$1] = cpu; kind[$1] = $3; mode[$1] = $4 }
	if ($1 > last) last = $1
}
END {
	np = 0
	printf "  %4s  %-5s %-7s %26s %26s\n", "pair", "mode", "kind",
	       "requests/s: unobs  obs  ratio", "per CPU s: unobs  obs  ratio"
	for (p = 0; p <= last; p++) {
		if (!(p in u) || !(p in o) || u[p] <= 0 || uc[p] <= 0) continue
		r = o[p] / u[p]; rc = oc[p] / uc[p]
		printf "  %4d  %-5s %-7s %8.0f %8.0f %7.3f   %8.0f %8.0f %7.3f\n", p + 1, mode[p], kind[p],
		       u[p], o[p], r, uc[p], oc[p], rc
		np++; U[np] = u[p]
		add(mode[p], r, rc)
		if (kind[p] != "kill") add(mode[p] " steady", r, rc)
		add(mode[p] " " kind[p], r, rc)
		if (np == 1) ufirst = u[p]
		ulast = u[p]
	}
	if (np == 0) { print "throughput: no complete pair"; exit }
	print "throughput observed / unobserved (the pairs\x27 ratios):"
	group("root", "root (rings and kernel probes), every kind")
	group("root steady", "root, steady watching (attach, sigint, check, record)")
	group("rings", "rings alone, every kind")
	group("rings steady", "rings alone, steady watching (attach, sigint, check, record)")
	line = ""
	for (g in ng)
		if (split(g, w, " ") == 2 && w[2] != "steady")
			line = line sprintf("%s%s %.3f/%.3f (%d)", (line == "" ? "" : ", "), g,
			       quant2(g, 1), quant2(g, 2), ng[g])
	print "  by mode and kind, medians per second / per CPU second (pairs): " line
	printf "  unobserved: median %.0f requests/s; first pair %.0f, last pair %.0f (ratio %.3f)\n",
	       quant(U, np, 0.5), ufirst, ulast, (ufirst > 0 ? ulast / ufirst : 0)
	print "  (attach, sigint, check, record: from the attached line on, start-up left out; kill: whole phases, start-ups in)"
}
# The median of group g: of its ratios per second (which 1) or per CPU second (2).
function quant2(g, which,   i, A) {
	for (i = 1; i <= ng[g]; i++) A[i] = (which == 1 ? GR[g, i] : GC[g, i])
	return quant(A, ng[g], 0.5)
}' "$tmp/load" "$tmp/windows"

[ $crashes = 0 ] && [ $leaked = 0 ] && [ $consistent = 1 ]
