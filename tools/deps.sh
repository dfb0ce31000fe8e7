#!/usr/bin/env bash
# deps.sh - make sure the Debian packages loopwatch builds and tests with are
# installed.  As root it installs what is missing; otherwise it prints the
# exact apt-get line and fails.  The Makefile runs it once per build folder.
set -euo pipefail

PACKAGES=(
	build-essential pkg-config make
	clang llvm libclang-rt-14-dev
	libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev
	libncurses-dev tmux
	libuv1-dev libev-dev libevent-dev
	redis-server bpftrace jq valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "loopwatch: missing packages: ${missing[*]}" >&2
	echo "loopwatch: install them with:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "  DEPS   installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
