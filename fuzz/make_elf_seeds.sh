#!/usr/bin/env bash
# make_elf_seeds.sh - write the seeds of fuzz/elf.c into fuzz/corpus/elf.
#
#   bash fuzz/make_elf_seeds.sh [OUT]        (OUT: fuzz/corpus/elf)
#
# Each seed is a real ELF file of a few KB, built from one tiny C file
# without libc (-nostdlib, its own _start) so that it stays small:
#
#   seed_exe_g          PIE with a symbol table and DWARF (file:line)
#   seed_exe            PIE with a symbol table, no DWARF
#   seed_exe_stripped   PIE stripped of everything strip removes
#   seed_exe_nopie      static non-PIE executable (ET_EXEC), with DWARF
#   seed_exe_gz         PIE whose DWARF sections are zlib-compressed
#   seed_exe32          32-bit PIE with DWARF (skipped if gcc -m32 fails)
#   seed_lib_g.so       shared library with .dynsym, .symtab and DWARF
#   seed_debuglink      stripped PIE with a .gnu_debuglink to "elf.debug",
#                       then the marker "LW-DEBUG", then that debug file
#                       (objcopy --only-keep-debug): fuzz/elf.c writes the
#                       part after the marker to elf.debug next to the file
#
# Debian 12's gcc and binutils made the committed ones; other versions
# make other bytes, which is fine for seeds.
set -euo pipefail
out=$(realpath -m "${1:-fuzz/corpus/elf}")
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

cat > tiny.c <<'EOF'
int tiny_add(int a, int b)
{
	return a + b;
}

static int tiny_loop(int n)
{
	int s = 0;

	for (int i = 0; i < n; i++)
		s = tiny_add(i, s);
	return s;
}

void _start(void)
{
	volatile int r = tiny_loop(5);
	(void)r;
	for (;;)
		__asm__ volatile("" ::: "memory");
}
EOF

# Small: no libc, no unwind tables, one segment for code and data, no
# RELRO page; the same paths in DWARF wherever this runs.
cflags="-Os -nostdlib -fno-asynchronous-unwind-tables -fno-stack-protector
	-fdebug-prefix-map=$tmp=. -Wl,-z,noseparate-code -Wl,--build-id
	-Wl,-z,norelro -Wl,--hash-style=gnu"
cc() { gcc $cflags "$@" tiny.c; }

cc -g -fPIE -pie -o "$out/seed_exe_g"
cc -fPIE -pie -o "$out/seed_exe"
strip -o "$out/seed_exe_stripped" "$out/seed_exe"
cc -g -no-pie -static -o "$out/seed_exe_nopie"
cc -g -gz=zlib -fPIE -pie -o "$out/seed_exe_gz"
if cc -m32 -g -fPIE -pie -o exe32 2>/dev/null; then
	cp exe32 "$out/seed_exe32"
else
	echo "make_elf_seeds: no 32-bit gcc; seed_exe32 left out" >&2
fi
cc -g -fPIC -shared -o "$out/seed_lib_g.so"

cc -g -fPIE -pie -o full
objcopy --only-keep-debug full elf.debug
objcopy --strip-all --add-gnu-debuglink=elf.debug full main
{ cat main; printf 'LW-DEBUG'; cat elf.debug; } > "$out/seed_debuglink"

ls -l "$out"
