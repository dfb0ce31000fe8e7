# loopwatch - one build for everything.
#
#   make              build the library, tests, examples and benchmarks
#   make check        all tests: plain, ASan+UBSan, TSan, valgrind, fuzz;
#                     last line is the sum
#   make valgrind     the agent under memcheck, attached for VALGRIND_SECONDS
#                     (300) to a server under requests
#   make demo         the main demo
#   make bench        benchmarks against libuv, libev and libevent (ratios)
#   make install      PREFIX=/usr/local (DESTDIR honoured)
#   make V=1          show full commands
#
# Layout of the output (BUILD, default build/):
#   lib/libloopwatch.{a,so}  tests/run_tests  examples/*  bench/*
# Sanitizer variants build into build/asan and build/tsan (SAN=asan|tsan).

BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
SAN ?=

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar

ifneq ($(V),1)
Q := @
msg = @printf '  %-6s %s\n' "$(1)" "$(2)";
else
Q :=
msg =
endif

WARN := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
	-Wno-unused-parameter
ifneq ($(CI),)
WERROR ?= 1
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT ?= -O2
CFLAGS_ALL := -std=gnu11 $(WARN) $(OPT) -g -fno-omit-frame-pointer \
	-D_GNU_SOURCE -Iinclude -pthread -fPIC $(CFLAGS)
LDFLAGS_ALL := -pthread $(LDFLAGS)

ifeq ($(SAN),asan)
CFLAGS_ALL += -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_ALL += -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
# TSan does not model fences, and GCC warns (-Wtsan) on each: the ring's
# fences pair with atomic accesses that TSan does see, so the warning is off.
CFLAGS_ALL += -fsanitize=thread -Wno-tsan
LDFLAGS_ALL += -fsanitize=thread
endif

PROBE_SRC := $(sort $(wildcard probe/*.c))
PROBE_OBJ := $(PROBE_SRC:%.c=$(BUILD)/obj/%.o)
LIB_A := $(BUILD)/lib/libloopwatch.a
LIB_SO := $(BUILD)/lib/libloopwatch.so

# agent/: the reader library (everything but main.c) and the loopwatch
# command.  It depends on the ring ABI header, never on probe/ internals.
AGENT_SRC := $(sort $(filter-out agent/main.c,$(wildcard agent/*.c)))
AGENT_OBJ := $(AGENT_SRC:%.c=$(BUILD)/obj/%.o)
AGENT_A := $(if $(AGENT_SRC),$(BUILD)/lib/libloopwatch-agent.a)
LOOPWATCH_BIN := $(if $(wildcard agent/main.c),$(BUILD)/bin/loopwatch)
# What the agent links besides libc: elfutils for symbols.
AGENT_LIBS := $(shell pkg-config --libs libdw libelf 2>/dev/null || echo -ldw -lelf)

# tui/: the dashboard (`loopwatch top`), linked into the command only: it
# depends on the agent's model and ncurses, and nothing depends on it.
TUI_SRC := $(sort $(wildcard tui/*.c))
TUI_OBJ := $(TUI_SRC:%.c=$(BUILD)/obj/%.o)
TUI_LIBS := $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw -ltinfo)

# Programs the tests start: tests/progs/NAME.c -> $(BUILD)/tests/progs/NAME
TESTPROG_SRC := $(sort $(wildcard tests/progs/*.c))
TESTPROG_BIN := $(TESTPROG_SRC:tests/progs/%.c=$(BUILD)/tests/progs/%)

# Fuzz targets: fuzz/NAME.c, built with clang's libFuzzer into
# $(BUILD)/fuzz/NAME (its own folder and flags; see `make fuzz`).
FUZZ_SRC := $(sort $(wildcard fuzz/*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_TIME ?= 600
# The agent's BPF loader needs a skeleton and libbpf; no fuzz target reads
# BPF data through it.
FUZZ_AGENT_SRC = $(filter-out agent/bpf_%.c,$(AGENT_SRC))

TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(BUILD)/tests/run_tests

EXLIB_SRC := $(sort $(wildcard examples/lib/*.c))
EXLIB_OBJ := $(EXLIB_SRC:%.c=$(BUILD)/obj/%.o)
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

# Benchmarks: bench/NAME_PEER.c, PEER one of lw uv ev event; bench/lib/*.c
# is shared by all of them.
BENCH_SRC := $(sort $(wildcard bench/*_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCHLIB_SRC := $(sort $(wildcard bench/lib/*.c))
BENCHLIB_OBJ := $(BENCHLIB_SRC:%.c=$(BUILD)/obj/%.o)

# bpf/: CO-RE programs bpf/NAME.bpf.c -> $(BUILD)/bpf/NAME.bpf.o (clang,
# stripped by bpftool) -> $(BUILD)/bpf/NAME.skel.h (bpftool gen skeleton),
# against a vmlinux.h dumped from the running kernel's BTF.  BPF objects are
# never sanitized; the agent code that includes a skeleton is.
BPFTOOL ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
BPF_CLANG ?= clang
BPF_SRC := $(sort $(wildcard bpf/*.bpf.c))
BPF_OBJ := $(BPF_SRC:bpf/%.bpf.c=$(BUILD)/bpf/%.bpf.o)
BPF_SKEL := $(BPF_SRC:bpf/%.bpf.c=$(BUILD)/bpf/%.skel.h)
BPF_VMLINUX := $(BUILD)/bpf/vmlinux.h
# clang -target bpf does not search the multiarch include folder (asm/);
# pass the host's system include folders after everything else.
BPF_SYS_INCLUDES := $(shell $(BPF_CLANG) -v -E - </dev/null 2>&1 | sed -n \
	'/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')
BPF_CFLAGS := -g -O2 -Wall -target bpf -D__TARGET_ARCH_x86 \
	-I$(BUILD)/bpf -Ibpf $(BPF_SYS_INCLUDES)
ifeq ($(WERROR),1)
BPF_CFLAGS += -Werror
endif
# What links libbpf: libbpf 1.1 needs libelf and zlib.
BPF_LIBS := $(shell pkg-config --libs libbpf libelf 2>/dev/null || echo -lbpf -lelf) -lz
# The agent's and tests' objects that include a skeleton.
BPF_USERS := $(BUILD)/obj/agent/bpf_load.o $(BUILD)/obj/agent/bpf_attach.o \
	$(BUILD)/obj/tests/test_bpf.o $(BUILD)/obj/agent/bpf_snap.o \
	$(BUILD)/obj/tests/test_snap.o

DEPS_OK := $(BUILD)/.deps-ok

# Objects are not intermediate files: keep them so make does not rebuild.
.SECONDARY:

.PHONY: all lib agent tests examples bench-build check demo bench install \
	clean deps format fuzz fuzz-build valgrind

all: lib agent tests examples bench-build

# The dependency script installs what is missing (as root) or says what to
# install; it runs once per build folder.
$(DEPS_OK): tools/deps.sh
	$(Q)bash tools/deps.sh
	$(Q)mkdir -p $(@D) && touch $@
deps:
	$(Q)bash tools/deps.sh

lib: $(LIB_A) $(LIB_SO)
agent: $(LOOPWATCH_BIN)
tests: $(TEST_BIN)
examples: $(EXAMPLE_BIN)
bench-build: $(BENCH_BIN)

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB_A): $(PROBE_OBJ)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIB_SO): $(PROBE_OBJ)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -shared -Wl,-soname,libloopwatch.so.0 $(LDFLAGS_ALL) -o $@ $^

$(AGENT_A): $(AGENT_OBJ)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LOOPWATCH_BIN): $(BUILD)/obj/agent/main.o $(TUI_OBJ) $(AGENT_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(AGENT_LIBS) $(BPF_LIBS) $(TUI_LIBS)

$(BUILD)/tests/progs/%: $(BUILD)/obj/tests/progs/%.o $(LIB_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^

$(TEST_BIN): $(TEST_OBJ) $(AGENT_A) $(LIB_A) $(EXAMPLE_BIN) $(TESTPROG_BIN) \
		$(LOOPWATCH_BIN)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_OBJ) $(AGENT_A) $(LIB_A) \
		$(AGENT_LIBS) $(BPF_LIBS)

$(BPF_VMLINUX): | $(DEPS_OK)
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp
	$(Q)mv $@.tmp $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c bpf/loopwatch_bpf.h $(BPF_VMLINUX)
	$(call msg,BPF,$@)
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $(@:.o=.tmp.o)
	$(Q)$(BPFTOOL) gen object $@ $(@:.o=.tmp.o)
	$(Q)rm -f $(@:.o=.tmp.o)

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@.tmp
	$(Q)mv $@.tmp $@

$(BPF_USERS): CFLAGS_ALL += -I$(BUILD)/bpf -Ibpf
$(BPF_USERS): $(BPF_SKEL)

# libFuzzer needs clang; the fuzz build has its own flags and no -Werror
# variance: it compiles the agent's sources straight in.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE \
	-Iinclude -Iagent -fsanitize=fuzzer,address,undefined
$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_AGENT_SRC) $(wildcard agent/*.h include/*.h)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_AGENT_SRC) $(AGENT_LIBS)
fuzz-build: $(FUZZ_BIN)

# Fuzz every target for FUZZ_TIME seconds each (make check runs a short
# version through tests/check.sh), growing fuzz/corpus/NAME.
fuzz: fuzz-build
	$(Q)for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		mkdir -p fuzz/corpus/$$n; \
		$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			fuzz/corpus/$$n || exit 1; done

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(EXLIB_OBJ) $(LIB_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^

# Each component sees its own headers and the public ones, no more: probe/
# its internals; agent/ the ring ABI (include/); tests both.
$(PROBE_OBJ): CFLAGS_ALL += -Iprobe
$(AGENT_OBJ) $(BUILD)/obj/agent/main.o: CFLAGS_ALL += -Iagent
# Tests that drive the build itself (make install) need the source folder.
$(TEST_OBJ): CFLAGS_ALL += -DLW_SRC_DIR='"$(CURDIR)"' -Iprobe -Iagent

peer_libs = $(if $(filter %_uv,$(1)),-luv,$(if $(filter %_ev,$(1)),-lev,$(if $(filter %_event,$(1)),-levent)))

# Benchmarks may use the agent's reader (ring_drain_lw).
$(BENCH_SRC:%.c=$(BUILD)/obj/%.o): CFLAGS_ALL += -Iagent
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCHLIB_OBJ) $(AGENT_A) $(LIB_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(call peer_libs,$*) -lm

# The kernel probes' floor (bench/kprobes.sh): bench/floor.bpf.c holds
# empty programs on the attach points of bpf/syscalls.bpf.c; its skeleton
# goes into $(BUILD)/bench, and bench/floor_lw.c, which loads them, links
# libbpf instead of the probe libraries (this explicit rule takes precedence
# over the bench pattern rule above).
FLOOR_SKEL := $(BUILD)/bench/floor.skel.h
$(BUILD)/bench/floor.bpf.o: bench/floor.bpf.c $(BPF_VMLINUX)
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $(@:.o=.tmp.o)
	$(Q)$(BPFTOOL) gen object $@ $(@:.o=.tmp.o)
	$(Q)rm -f $(@:.o=.tmp.o)
$(FLOOR_SKEL): $(BUILD)/bench/floor.bpf.o
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@.tmp
	$(Q)mv $@.tmp $@
$(BUILD)/obj/bench/floor_lw.o: CFLAGS_ALL += -I$(BUILD)/bench
$(BUILD)/obj/bench/floor_lw.o: $(FLOOR_SKEL)
$(BUILD)/bench/floor_lw: $(BUILD)/obj/bench/floor_lw.o
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(BPF_LIBS)

check: all
	$(Q)bash tests/check.sh "$(BUILD)"

VALGRIND_SECONDS ?= 300
valgrind: agent examples
	$(Q)bash tests/valgrind.sh "$(BUILD)" "$(VALGRIND_SECONDS)"

demo: all
	$(Q)bash tools/demo.sh "$(BUILD)"

bench: bench-build agent
	$(Q)bash bench/run.sh "$(BUILD)/bench"

install: lib
	$(Q)install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	$(Q)install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	$(Q)install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libloopwatch.so.0
	$(Q)ln -sf libloopwatch.so.0 $(DESTDIR)$(PREFIX)/lib/libloopwatch.so
	$(Q)install -m 644 include/loopwatch.h include/loopwatch_ring.h \
		$(DESTDIR)$(PREFIX)/include/
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' \
		-e 's|@VERSION@|$(shell sed -n 's/^#define LW_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' include/loopwatch.h | paste -sd.)|' \
		tools/loopwatch.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loopwatch.pc
	@echo "installed into $(DESTDIR)$(PREFIX)"

# Every C file of the tree, in kernel style (.clang-format).
FORMAT_SRC = $(wildcard include/*.h probe/*.[ch] agent/*.[ch] bpf/*.[ch] tui/*.[ch] \
	tests/*.[ch] tests/progs/*.c fuzz/*.c examples/*.c examples/lib/*.[ch] \
	bench/*.c bench/lib/*.[ch])
format:
	$(Q)clang-format -i $(FORMAT_SRC)

clean:
	$(Q)rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
