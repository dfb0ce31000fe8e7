#!/usr/bin/env bash
# check.sh - everything `make check` runs, in order, with one summary line.
#
#   1. the whole suite, plain build
#   2. the whole suite under ASan + UBSan (build/asan)
#   3. the whole suite under TSan (build/tsan), but for the tests listed in
#      TSAN_LEAVE_OUT below, each with the reason
#   4. the agent under valgrind's memcheck over a long attach, rings only and
#      with the kernel probes (tests/valgrind.sh; VALGRIND_CHECK_TIME
#      seconds, default 20; `make valgrind` runs it for five minutes)
#   5. every fuzz target, briefly
#
# Each suite prints its own lines; the last line is the sum of all of them.
set -uo pipefail
BUILD=${1:-build}
MAKE=${MAKE:-make}
JOBS=$(nproc 2>/dev/null || echo 2)

passed=0 failed=0 skipped=0
tally() {	# tally SUITE-OUTPUT-FILE
	local line
	line=$(grep -E '^([a-z]+: )?[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$1" | tail -n 1)
	if [ -z "$line" ]; then
		echo "check: suite produced no summary; counting it as one failure"
		failed=$((failed + 1))
		return
	fi
	line=${line#*: }
	set -- $line
	passed=$((passed + $1)) failed=$((failed + $3)) skipped=$((skipped + $5))
}

run_suite() {	# run_suite NAME BUILD-DIR [TEST-PATTERN...]
	local name=$1 dir=$2; shift 2
	local out; out=$(mktemp)
	echo "== $name"
	"$dir/tests/run_tests" --suite "$name" "$@" | tee "$out"
	tally "$out"
	rm -f "$out"
}

run_suite plain "$BUILD"

if $MAKE -s -j"$JOBS" SAN=asan BUILD="$BUILD/asan" tests >/dev/null; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		run_suite asan "$BUILD/asan"
else
	echo "check: the ASan build failed"; failed=$((failed + 1))
fi

# 3. Under TSan, every test but these.  TSan makes the programs the tests
#    start (blocky_server, ring_target, the agent) several times slower, and
#    the stacks of a TSan-built target go through libtsan, whose debug
#    information the agent reads at the first such frame: a test that holds
#    the agent to a reaction time shorter than that cannot pass here.
TSAN_LEAVE_OUT=(
	# The banner must be on screen within 2 s of a 2.5 s stall and its
	# stack within 1 s more: the TSan-built agent and dashboard, naming
	# the TSan-built target's frames, took 2.2 s for the banner alone.
	top_stuck_banner_while_sleeping
	# Its target reads a 64 MB file in each callback; TSan checks every
	# byte of the read's buffer (12.8 s a read here), so no read ends
	# within the test's 1 s watch and the file's name is never seen.
	text_hostile_target_names
)
if $MAKE -s -j"$JOBS" SAN=tsan BUILD="$BUILD/tsan" tests >/dev/null; then
	echo "(tsan: not run, see tests/check.sh: ${TSAN_LEAVE_OUT[*]})"
	mapfile -t tsan_tests < <("$BUILD/tsan/tests/run_tests" -l |
		grep -vxF -f <(printf '%s\n' "${TSAN_LEAVE_OUT[@]}"))
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		run_suite tsan "$BUILD/tsan" "${tsan_tests[@]}"
else
	echo "check: the TSan build failed"; failed=$((failed + 1))
fi

# 4. valgrind (the plain build: memcheck does not run sanitized code).
echo "== valgrind"
out=$(mktemp)
bash tests/valgrind.sh "$BUILD" "${VALGRIND_CHECK_TIME:-20}" | tee "$out"
tally "$out"
rm -f "$out"

# 5. Every fuzz target for a short, bounded time (FUZZ_CHECK_TIME seconds,
#    default 30); `make fuzz FUZZ_TIME=600` runs them longer.  New inputs go
#    to a scratch folder, the committed corpus is only read, and a crash
#    fails the suite with the reproducer's path.
if ls fuzz/*.c >/dev/null 2>&1; then
	echo "== fuzz"
	fp=0 ff=0
	if $MAKE -s -j"$JOBS" BUILD="$BUILD" fuzz-build >/dev/null; then
		for bin in "$BUILD"/fuzz/*; do
			[ -x "$bin" ] || continue
			name=$(basename "$bin")
			scratch=$(mktemp -d)
			mkdir -p "fuzz/corpus/$name" "$scratch/new"
			case $bin in /*) abs=$bin ;; *) abs=$PWD/$bin ;; esac
			corpus=$PWD/fuzz/corpus/$name
			if (cd "$scratch" && "$abs" \
				-max_total_time="${FUZZ_CHECK_TIME:-30}" -print_final_stats=1 \
				-artifact_prefix="$scratch/" \
				"$scratch/new" "$corpus") \
				>"$scratch/log" 2>&1; then
				echo "fuzz ok   $name ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$scratch/log" | grep -o '[0-9]*$' || echo '?') runs)"
				fp=$((fp + 1))
				rm -rf "$scratch"
			else
				echo "fuzz FAIL $name: see $scratch/log and the crash-* file there"
				tail -n 20 "$scratch/log"
				ff=$((ff + 1))
			fi
		done
	else
		echo "check: the fuzz build failed"; ff=$((ff + 1))
	fi
	echo "fuzz: $fp passed, $ff failed, 0 skipped"
	passed=$((passed + fp)) failed=$((failed + ff))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
