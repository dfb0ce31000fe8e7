#!/usr/bin/env bash
# demo.sh - what `make demo` shows: the seed's worked example.  log_upload
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
