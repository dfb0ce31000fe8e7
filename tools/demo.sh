#!/usr/bin/env bash
# demo.sh - what `make demo` shows.  Part 1, the seed's worked example: log_upload
# uploads 50 generated log files to a sink that delays every upload by
# 100 ms, first one at a time and then all at once through the reactor, so
# the two totals can be compared: the sum of the uploads against the longest.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/examples/log_upload"
[ -x "$BIN" ] || { echo "demo: $BIN is not built; run make" >&2; exit 2; }

echo "== one after another (--sequential): the total is the sum of the uploads"
"$BIN" -n 10 -d 100 --sequential
echo
echo "== through the loop: each upload starts at once; the total is close to the longest"
"$BIN" -n 50 -d 100

# Part 2: loopwatch catching blocking callbacks in a running server.
# blocky_server answers a few endpoints on its loop thread; some of them
# block it on purpose.  loopwatch attaches to the running process (kernel
# probes as root; the rings alone otherwise) while a little load comes in.
SERVER="$BUILD/examples/blocky_server"
LW="$BUILD/bin/loopwatch"
[ -x "$SERVER" ] && [ -x "$LW" ] || { echo "demo: $SERVER or $LW is not built; run make" >&2; exit 2; }
tmp=$(mktemp -d)
srv=
lw=
cleanup() {
	[ -n "$lw" ] && kill "$lw" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# One HTTP GET over bash's /dev/tcp: no curl needed.
get() {
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$1" >&3
	cat <&3 >/dev/null
	exec 3<&-
}

# Wait up to $2 tenths of a second for file $1 to contain $3.
wait_for() {
	for _ in $(seq "$2"); do
		grep -q "$3" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: gave up waiting for '$3' in $1:" >&2
	cat "$1" >&2
	return 1
}

echo
echo "== loopwatch attached to a running server (blocky_server), while requests come in"
"$SERVER" --port 0 --mutex-hold 200 >"$tmp/server" 2>&1 &
srv=$!
wait_for "$tmp/server" 100 "listening on"
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server" | head -n 1)
"$LW" attach --duration 4 --min-ms 5 "$srv" >"$tmp/lw" 2>&1 &
lw=$!
wait_for "$tmp/lw" 100 "attached to PID" || true
echo "requests: 20 x /health, then /sleep?ms=120, /defer/sleep?ms=100 (the same sleep on the worker pool), /cpu?ms=60, /fsync, /mutex"
for _ in $(seq 20); do get /health; done
for path in '/sleep?ms=120' '/defer/sleep?ms=100' '/cpu?ms=60' /fsync /mutex; do
	get "$path"
	sleep 0.15
done
wait "$lw" || true
lw=
cat "$tmp/lw"
echo
echo "The callbacks that held the loop are named with what they waited for, and the"
echo "deferred sleep is not among them: it ran on the worker pool, off the loop thread."

# With a terminal, the same server under a steady load in the live
# dashboard, until q (LOOPWATCH_DEMO_TOP=0 skips it).
if [ -t 0 ] && [ -t 1 ] && [ "${LOOPWATCH_DEMO_TOP:-1}" != 0 ]; then
	echo
	echo "== the live dashboard (loopwatch top) on the same server under load: q quits"
	sleep 2
	(
		while kill -0 "$srv" 2>/dev/null; do
			for path in /health /health '/sleep?ms=300' /fsync '/cpu?ms=80' '/defer/sleep?ms=100' /health /mutex; do
				get "$path" 2>/dev/null || exit 0
				sleep 0.3
			done
		done
	) &
	load=$!
	"$LW" top "$srv" || true
	kill "$load" 2>/dev/null || true
fi
