# exchange - run work in forked processes and collect what they send back.
#
#   make              the static and shared libraries, in $(BUILD)
#   make demo         build the demos and run the short tour (README)
#   make deps         install what the tests need (Criterion), if missing
#   make check        build and run the tests (alias: make test)
#   make test-asan    the tests under AddressSanitizer/UBSan/LSan
#   make test-valgrind  the tests under valgrind memcheck, fds tracked
#   make demos        build every demo
#   make clean
#
# The user's CC, CPPFLAGS, CFLAGS and LDFLAGS are appended, never replaced.
# BUILD names the build directory, so several builds can live side by side.

VERSION_MAJOR = 0
VERSION_MINOR = 2
VERSION_PATCH = 0
VERSION = $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

BUILD ?= build
SANITIZE ?=

STD = -std=c11 -D_POSIX_C_SOURCE=200809L
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Werror=implicit-function-declaration
OPT = -O2 -g
ifneq ($(SANITIZE),)
SAN = -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

LIB_CFLAGS = $(STD) $(WARN) $(OPT) $(SAN) -fPIC -fvisibility=hidden \
             $(CPPFLAGS) $(CFLAGS)
# Tests and demos: warnings are errors.
APP_CFLAGS = $(STD) $(WARN) -Werror $(OPT) $(SAN) -I. $(CPPFLAGS) $(CFLAGS)
APP_LDFLAGS = $(SAN) $(LDFLAGS)

CRITERION_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CRITERION_LIBS = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

SRCS = sys.c arena.c frame.c channel.c proc.c persist.c manage.c exchange.c collect.c pmap.c
OBJS = $(SRCS:%.c=$(BUILD)/obj/%.o)
HDRS = exchange.h internal.h channel_impl.h

STATIC = $(BUILD)/libexchange.a
# The objects as they are, internal names included, for the tests.
INTERNAL = $(BUILD)/libexchange-internal.a
OBJCOPY ?= objcopy
SONAME = libexchange.so.$(VERSION_MAJOR)
SHARED = $(BUILD)/libexchange.so.$(VERSION)

TEST_SRCS = $(wildcard tests/test_*.c)
TESTS = $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
DEMO_SRCS = $(wildcard demos/*.c)
DEMOS = $(DEMO_SRCS:demos/%.c=$(BUILD)/demos/%)

include $(sort $(wildcard mk/*.mk))

.PHONY: all lib demos demo deps check test tests test-asan test-valgrind clean

all: lib

lib: $(STATIC) $(SHARED)

$(BUILD)/obj/%.o: %.c $(HDRS) | $(BUILD)/obj
	$(CC) $(LIB_CFLAGS) -c $< -o $@

# The static library holds one relocatable object, made of all the others,
# whose hidden names (everything internal.h declares) are then made local:
# a program linked with it sees only the names exchange.h declares, as with
# the shared library, and may have a frame_encode of its own.
$(BUILD)/obj/libexchange.o: $(OBJS)
	$(CC) -r -nostdlib -o $@ $(OBJS)
	$(OBJCOPY) --localize-hidden $@

$(STATIC): $(BUILD)/obj/libexchange.o
	rm -f $@
	$(AR) rcs $@ $<

$(INTERNAL): $(OBJS)
	rm -f $@
	$(AR) rcs $@ $(OBJS)

# -z now binds the library's calls into libc when it is loaded: a forked
# child that calls a function the parent never did would otherwise run the
# dynamic linker and write its GOT, copy-on-write faults in every task.
$(SHARED): $(OBJS)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,-z,now $(SAN) $(LDFLAGS) \
	    -o $@ $(OBJS)
	ln -sf libexchange.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libexchange.so

$(BUILD)/obj $(BUILD)/tests $(BUILD)/demos:
	mkdir -p $@

# Tests link the objects as they are, so they can reach the internal calls
# and the test hooks.
$(BUILD)/tests/%: tests/%.c $(INTERNAL) $(HDRS) $(wildcard tests/*.h) | $(BUILD)/tests
	$(CC) $(APP_CFLAGS) $(CRITERION_CFLAGS) $< -o $@ $(INTERNAL) \
	    $(APP_LDFLAGS) $(CRITERION_LIBS)

$(BUILD)/demos/%: demos/%.c $(STATIC) exchange.h $(wildcard demos/*.h) | $(BUILD)/demos
	$(CC) $(APP_CFLAGS) $< -o $@ $(STATIC) $(APP_LDFLAGS) -lm

demos: $(DEMOS)

tests: $(TESTS)

# The tests run one binary after another; the run fails when any fails.
check test: $(TESTS)
	@fail=0; for t in $(TESTS); do \
	    echo "== $$t"; $$t $(TEST_ARGS) || fail=1; \
	done; exit $$fail

deps:
	@if pkg-config --exists criterion 2>/dev/null; then \
	    echo "Criterion is installed."; \
	else \
	    apt-get update && apt-get install -y libcriterion-dev; \
	fi

clean:
	rm -rf build build-* fuzz/build
