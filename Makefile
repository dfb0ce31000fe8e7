# loopwatch - one build for everything.
#
#   make              build the library, tests, examples and benchmarks
#   make check        all tests: plain, ASan+UBSan, TSan; last line is the sum
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
	-D_GNU_SOURCE -Iinclude -Iprobe -pthread -fPIC $(CFLAGS)
LDFLAGS_ALL := -pthread $(LDFLAGS)

ifeq ($(SAN),asan)
CFLAGS_ALL += -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_ALL += -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
CFLAGS_ALL += -fsanitize=thread
LDFLAGS_ALL += -fsanitize=thread
endif

PROBE_SRC := $(sort $(wildcard probe/*.c))
PROBE_OBJ := $(PROBE_SRC:%.c=$(BUILD)/obj/%.o)
LIB_A := $(BUILD)/lib/libloopwatch.a
LIB_SO := $(BUILD)/lib/libloopwatch.so

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

DEPS_OK := $(BUILD)/.deps-ok

# Objects are not intermediate files: keep them so make does not rebuild.
.SECONDARY:

.PHONY: all lib tests examples bench-build check demo bench install clean \
	deps format

all: lib tests examples bench-build

# The dependency script installs what is missing (as root) or says what to
# install; it runs once per build folder.
$(DEPS_OK): tools/deps.sh
	$(Q)bash tools/deps.sh
	$(Q)mkdir -p $(@D) && touch $@
deps:
	$(Q)bash tools/deps.sh

lib: $(LIB_A) $(LIB_SO)
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

$(TEST_BIN): $(TEST_OBJ) $(LIB_A) $(EXAMPLE_BIN)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_OBJ) $(LIB_A)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(EXLIB_OBJ) $(LIB_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^

# Tests that drive the build itself (make install) need the source folder.
$(TEST_OBJ): CFLAGS_ALL += -DLW_SRC_DIR='"$(CURDIR)"'

peer_libs = $(if $(filter %_uv,$(1)),-luv,$(if $(filter %_ev,$(1)),-lev,$(if $(filter %_event,$(1)),-levent)))

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCHLIB_OBJ) $(LIB_A)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(call peer_libs,$*) -lm

check: all
	$(Q)bash tests/check.sh "$(BUILD)"

demo: all
	$(Q)bash tools/demo.sh "$(BUILD)"

bench: bench-build
	$(Q)bash bench/run.sh "$(BUILD)/bench"

install: lib
	$(Q)install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	$(Q)install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	$(Q)install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libloopwatch.so.0
	$(Q)ln -sf libloopwatch.so.0 $(DESTDIR)$(PREFIX)/lib/libloopwatch.so
	$(Q)install -m 644 include/loopwatch.h $(DESTDIR)$(PREFIX)/include/
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' \
		-e 's|@VERSION@|$(shell sed -n 's/^#define LW_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' include/loopwatch.h | paste -sd.)|' \
		tools/loopwatch.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loopwatch.pc
	@echo "installed into $(DESTDIR)$(PREFIX)"

format:
	$(Q)clang-format -i include/*.h probe/*.[ch] tests/*.[ch] examples/*.c \
		examples/lib/*.[ch] bench/*.c bench/lib/*.[ch]

clean:
	$(Q)rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
