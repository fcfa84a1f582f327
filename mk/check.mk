# mk/check.mk - the checking targets: the tests under sanitizers and under
# valgrind, the libFuzzer targets, and the fault figures.
#
#   make test-asan       the tests built with SANITIZE=address,undefined in
#                        $(ASAN_BUILD); fails when a test fails or when the
#                        log holds a sanitizer report (Criterion alone passes
#                        a test whose worker printed a leak report). Each
#                        binary is judged by its summary line, not its exit
#                        status: LeakSanitizer turns the runner's exit status
#                        to 1 for the few objects libcriterion itself leaks.
#   make test-valgrind   every test binary of $(BUILD) under memcheck; fails
#                        on a memcheck error, a definite leak or a descriptor
#                        of ours left open, read from the per-process logs
#   make fuzz            each fuzz/fuzz_*.c target for FUZZ_SECONDS; fails on
#                        a crash (clang, libFuzzer)
#   make faults          the fault suite, then the figures it measured
#
# Each target builds in directories derived from BUILD, so that several
# people can run them side by side: make BUILD=build-me test-asan builds in
# build-me-asan.

ASAN_BUILD ?= $(BUILD)-asan
ASAN_LOG = $(ASAN_BUILD)/test-asan.log
ASAN_TESTS = $(TEST_SRCS:tests/%.c=$(ASAN_BUILD)/tests/%)

# handle_segv=0: a child that segfaults must die by SIGSEGV, as tests
# expect, instead of exiting with status 1 after a report. detect_leaks=1:
# LeakSanitizer at the exit of every test worker. halt_on_error: the first
# undefined behaviour stops the process, and the report is in the log.
TEST_ASAN_OPTIONS = handle_segv=0:detect_leaks=1:abort_on_error=0
TEST_UBSAN_OPTIONS = halt_on_error=1:print_stacktrace=1

# What a sanitizer report looks like in the log. Leak reports are read
# apart, by LSAN_AWK below.
SANITIZER_REPORT = ERROR: AddressSanitizer|runtime error:

# Leaks. Criterion's runner process leaks a few small objects of its own
# (allocated inside libcriterion.so, which has no frame pointers, so their
# stacks stop there), and LeakSanitizer reports them at its exit. A
# suppression by module would hide ours as well, since every test runs
# below a libcriterion frame; so the log is read instead: a leak counts
# when its allocation stack (frame #0, the allocator, aside) holds a frame
# outside libcriterion, the C library and the sanitizer runtimes, that is,
# a frame of the tests or of the library. A leak with no frame beyond the
# allocator counts too. Prints one line per leak that counts.
define LSAN_AWK
function done() {
	if (what != "" && (ours || frames == 0)) print what
	what = ""
}
/ERROR: LeakSanitizer/ { inrep = 1; next }
inrep && /^(Direct|Indirect) leak of/ {
	done(); what = $$0; ours = 0; frames = 0; next
}
inrep && what != "" && /^ *#[0-9]+ / {
	if ($$1 == "#0") next
	frames++
	if ($$0 !~ /libcriterion[.]so|libc[.]so|libasan|libubsan|ld-linux/)
		ours = 1
	next
}
inrep && /^SUMMARY:/ { done(); inrep = 0 }
END { done() }
endef
export LSAN_AWK

.PHONY: test-asan test-valgrind fuzz fuzz-deps faults

test-asan:
	$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
	    SANITIZE=address,undefined tests
	@fail=0; : > $(ASAN_LOG); \
	for t in $(ASAN_TESTS); do \
	    echo "== $$t" | tee -a $(ASAN_LOG); \
	    ASAN_OPTIONS=$(TEST_ASAN_OPTIONS) \
	    UBSAN_OPTIONS=$(TEST_UBSAN_OPTIONS) \
	        $$t $(TEST_ARGS) > $(ASAN_LOG).one 2>&1; \
	    cat $(ASAN_LOG).one >> $(ASAN_LOG); \
	    sum=$$(grep -a 'Synthesis' $(ASAN_LOG).one | tail -n 1); \
	    echo "$$sum"; \
	    echo "$$sum" | grep -Eq 'Tested: [1-9][0-9]* .*Failing: 0 \| Crashing: 0' \
	        || fail=1; \
	done; rm -f $(ASAN_LOG).one; \
	if grep -aEq '$(SANITIZER_REPORT)' $(ASAN_LOG); then \
	    echo "test-asan: sanitizer reports in $(ASAN_LOG):"; \
	    grep -aE -A 12 '$(SANITIZER_REPORT)' $(ASAN_LOG) | head -n 80; \
	    fail=1; \
	fi; \
	leaks=$$(awk "$$LSAN_AWK" $(ASAN_LOG)); \
	if [ -n "$$leaks" ]; then \
	    echo "test-asan: leaks reported in $(ASAN_LOG):"; \
	    echo "$$leaks"; fail=1; \
	fi; \
	if [ $$fail -ne 0 ]; then \
	    grep -aE '\[(FAIL|----)\]|Timed out|CRASH' $(ASAN_LOG) | head -n 40; \
	    echo "test-asan: FAILED (log: $(ASAN_LOG))"; \
	else \
	    echo "test-asan: passed, no sanitizer report (log: $(ASAN_LOG))"; \
	fi; exit $$fail

# ---------------------------------------------------------------------------
# valgrind
#
# Criterion runs each test in a worker that is the test binary executed
# again, so --trace-children=yes puts every worker under memcheck, each with
# its own log (%p). Processes the tests fork without exec (the library's
# children) share the parent's memory image: --child-silent-after-fork
# keeps them from printing a second summary of the same heap. --jobs 1 runs
# one worker at a time: memcheck is slow enough on two shared cores.
# FAULTS_SLOW=1 tells the fault suite to make its signal storms sparser and
# its transfers smaller (every signal and every byte costs far more here).
#
# Descriptors. --track-fds=yes makes every process list, at exit, each
# descriptor still open with where it was created. Three kinds appear:
#   - inherited ones ("<inherited from parent>"): stdio, the runner's pipes
#     and shared-memory arena passed to the worker, valgrind's own log;
#   - Criterion's own, created in the worker by libcriterion (its pipe to
#     the runner), whose creation stack holds no frame of this project;
#   - ours: created by the library or a test, so the creation stack passes
#     through one of the project's source files (channel.c, test_faults.c,
#     ...). Only these are leaks. A test worker ends right after its test,
#     so a descriptor of ours open at that point was never closed.
# A descriptor neither inherited nor given a stack is counted as ours too,
# so that a change in valgrind's output cannot hide a leak.
VG_DIR = $(BUILD)/valgrind
# Programs of the system a test runs (make and the compiler, in the install
# test) are not ours to check: only executables outside /usr, /bin, /sbin
# are traced.
VG_FLAGS = --trace-children=yes --child-silent-after-fork=yes \
	   --trace-children-skip='/usr/*,/bin/*,/sbin/*,/lib/*' \
	   --track-fds=yes --leak-check=full --errors-for-leak-kinds=definite \
	   --num-callers=30
VG_EMPTY :=
VG_SPACE := $(VG_EMPTY) $(VG_EMPTY)
VG_OURS = $(subst $(VG_SPACE),|,$(strip $(notdir $(SRCS) $(HDRS) \
	  $(wildcard tests/*.c tests/*.h demos/*.c demos/*.h))))

# awk over one log: prints "file: descriptor N" for each descriptor of ours
# left open; the record of a descriptor runs from its "Open ..." line to the
# next line holding only the pid prefix.
define VG_FD_AWK
/Open (file descriptor|AF_[A-Z0-9]+ socket|[a-z]+ socket) [0-9]+/ {
	open = 1; inh = 0; ours = 0; stack = 0; what = $$0; where = ""; next
}
open && /<inherited from parent>/ { inh = 1 }
open && /(at|by) 0x[0-9A-Fa-f]+:/ { stack = 1 }
open && !ours && $$0 ~ ("[(](" ours_re ")[:)]") {
	ours = 1; where = $$0; sub(/^==[0-9]+== *(at|by) 0x[0-9A-Fa-f]+: */, "", where)
}
open && /^==[0-9]+== *$$/ {
	if (!inh && (ours || !stack)) { sub(/^==[0-9]+== */, "", what);
		print FILENAME ": " what " " where }
	open = 0
}
endef
export VG_FD_AWK

test-valgrind: $(TESTS)
	@rm -rf $(VG_DIR); mkdir -p $(VG_DIR); fail=0; \
	for t in $(TESTS); do \
	    n=$$(basename $$t); mkdir -p $(VG_DIR)/$$n; \
	    echo "== valgrind $$t"; \
	    FAULTS_SLOW=1 valgrind $(VG_FLAGS) \
	        --log-file=$(VG_DIR)/$$n/%p.log \
	        $$t --jobs 1 $(TEST_ARGS) > $(VG_DIR)/$$n.out 2>&1 || fail=1; \
	    grep -a 'Synthesis' $(VG_DIR)/$$n.out || { \
	        echo "no test ran"; fail=1; }; \
	done; \
	errs=$$(grep -l 'ERROR SUMMARY: [1-9]' $(VG_DIR)/*/*.log); \
	leaks=$$(grep -l 'definitely lost: [1-9]' $(VG_DIR)/*/*.log); \
	fds=$$(awk -v ours_re='$(VG_OURS)' "$$VG_FD_AWK" $(VG_DIR)/*/*.log); \
	for f in $$errs; do echo "memcheck errors: $$f"; \
	    grep -E 'ERROR SUMMARY|Invalid|uninitialised|definitely' $$f | \
	    head -n 8; fail=1; done; \
	for f in $$leaks; do echo "definite leak: $$f"; fail=1; done; \
	if [ -n "$$fds" ]; then echo "descriptors left open:"; \
	    echo "$$fds"; fail=1; fi; \
	for f in $(VG_DIR)/*.out; do \
	    grep -aE '\[(FAIL|----)\]|Timed out|CRASH' $$f | head -n 20; \
	done; \
	if [ $$fail -ne 0 ]; then echo "test-valgrind: FAILED ($(VG_DIR))"; \
	else echo "test-valgrind: passed: no memcheck error, no definite" \
	    "leak, no descriptor left open ($(VG_DIR))"; fi; exit $$fail

# ---------------------------------------------------------------------------
# libFuzzer
#
# The channel layer is compiled again with clang, coverage and
# AddressSanitizer (-fsanitize=fuzzer-no-link), and linked into each
# fuzz/fuzz_*.c target.
# A run starts from the seeds in fuzz/seeds/NAME, keeps what it finds in
# $(FUZZ_BUILD)/corpus-NAME, and writes a crashing input as
# $(FUZZ_BUILD)/crash-NAME-*; libFuzzer exits non-zero on a crash, a leak or
# a timeout of one input, and the target fails then.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
FUZZ_BUILD ?= $(BUILD)-fuzz
# UBSan's pointer-overflow check is left out: channel.c computes
# ibuf + ipos while ibuf is still NULL (NULL + 0, harmless on every target
# but undefined in C), which stops every input at once.
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize=pointer-overflow \
	   -fno-sanitize-recover=all
FUZZ_CFLAGS = $(STD) $(WARN) -Werror -O1 -g -fno-omit-frame-pointer -I. \
	      $(FUZZ_SAN)
FUZZ_SRCS = $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRCS:fuzz/%.c=$(FUZZ_BUILD)/%)
# The targets reach the channel layer only, the bottom of the library.
FUZZ_LIB_SRCS = sys.c frame.c channel.c proc.c persist.c
FUZZ_OBJS = $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)

$(FUZZ_BUILD)/obj:
	mkdir -p $@

$(FUZZ_BUILD)/obj/%.o: %.c $(HDRS) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS) $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) -o $@

.SECONDARY: $(FUZZ_OBJS)

# libFuzzer's runtime comes with clang's compiler-rt, a package of its own
# on Debian: installed here when a fuzzer does not link.
fuzz-deps:
	@mkdir -p $(FUZZ_BUILD)
	@echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);' \
	    'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)' \
	    '{ (void)d; (void)n; return 0; }' > $(FUZZ_BUILD)/probe.c; \
	if $(FUZZ_CC) -fsanitize=fuzzer,address $(FUZZ_BUILD)/probe.c \
	    -o $(FUZZ_BUILD)/probe 2>/dev/null; then :; else \
	    echo "libFuzzer does not link: installing libclang-rt-14-dev"; \
	    apt-get update && apt-get install -y clang libclang-rt-14-dev; \
	fi; rm -f $(FUZZ_BUILD)/probe $(FUZZ_BUILD)/probe.c

$(FUZZ_OBJS) $(FUZZ_BINS): | fuzz-deps

fuzz: $(FUZZ_BINS)
	@rm -f $(FUZZ_BUILD)/crash-* $(FUZZ_BUILD)/*.log; \
	fail=0; for f in $(FUZZ_BINS); do \
	    n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	    echo "== $$n for $(FUZZ_SECONDS) s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/crash-$$n- \
	        $(FUZZ_ARGS) $(FUZZ_BUILD)/corpus-$$n fuzz/seeds/$$n \
	        > $(FUZZ_BUILD)/$$n.log 2>&1 || fail=1; \
	    grep -aE '^Done|stat::number_of_executed_units' \
	        $(FUZZ_BUILD)/$$n.log; \
	done; \
	if [ $$fail -ne 0 ]; then \
	    grep -aE -A 20 'ERROR:|==[0-9]+==' $(FUZZ_BUILD)/*.log | \
	        head -n 60; \
	    ls $(FUZZ_BUILD)/crash-* 2>/dev/null; \
	    echo "fuzz: FAILED"; \
	else echo "fuzz: no crash"; fi; exit $$fail

# ---------------------------------------------------------------------------
# make faults: the fault suite, a fuzz run, and the figures they measured.
#
# tests/test_faults.c appends "CLASS KEY VALUE" lines to $FAULTS_REPORT;
# FAULTS_AWK adds them up per class. "injected" is written once the faults
# have happened and "survived" only after every assertion of the test
# passed, so a failing test shows as injected and not survived. Tests that
# hit their .timeout are counted from Criterion's output, fuzz executions
# from libFuzzer's final statistics, crashes from the inputs it kept.
FAULTS_DIR = $(BUILD)/faults
FAULTS_REC = $(FAULTS_DIR)/faults.rec
FAULTS_OUT = $(FAULTS_DIR)/test_faults.out

define FAULTS_AWK
{ v[$$1, $$2] += $$3; cls[$$1] = 1; tot[$$2] += $$3 }
END {
	printf "%-10s %9s %9s %9s %9s %7s %5s %5s %6s %7s\n", "class",
	    "injected", "survived", "submitted", "completed", "failed",
	    "lost", "dup", "fds", "zombies"
	n = asorti_free(cls, names)
	for (i = 1; i <= n; i++) {
		c = names[i]
		printf "%-10s %9d %9d %9d %9d %7d %5d %5d %6d %7d\n", c,
		    v[c, "injected"], v[c, "survived"], v[c, "submitted"],
		    v[c, "completed"], v[c, "failed"], v[c, "lost"],
		    v[c, "duplicated"], v[c, "fds_leaked"], v[c, "zombies"]
	}
	printf "%-10s %9d %9d %9d %9d %7d %5d %5d %6d %7d\n", "all",
	    tot["injected"], tot["survived"], tot["submitted"],
	    tot["completed"], tot["failed"], tot["lost"], tot["duplicated"],
	    tot["fds_leaked"], tot["zombies"]
	printf "results lost: %d\n", tot["lost"]
	printf "results duplicated: %d\n", tot["duplicated"]
	printf "completed + failed = submitted: %d + %d = %d (%s)\n",
	    tot["completed"], tot["failed"], tot["submitted"],
	    tot["completed"] + tot["failed"] == tot["submitted"] ? "yes" : "NO"
	printf "descriptors leaked: %d\n", tot["fds_leaked"]
	printf "zombies left: %d\n", tot["zombies"]
	printf "children left running: %d\n", tot["children_alive"]
	printf "orphans alive after the parent was killed: %d\n", tot["orphans"]
}
# POSIX awk has no sort: a small insertion sort of the class names.
function asorti_free(src, dst,    k, n, i, j, t) {
	n = 0
	for (k in src) dst[++n] = k
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && dst[j - 1] > dst[j]; j--) {
			t = dst[j]; dst[j] = dst[j - 1]; dst[j - 1] = t
		}
	return n
}
endef
export FAULTS_AWK

faults: $(BUILD)/tests/test_faults
	@rm -rf $(FAULTS_DIR); mkdir -p $(FAULTS_DIR); fail=0; \
	echo "== $(BUILD)/tests/test_faults"; \
	FAULTS_REPORT=$(abspath $(FAULTS_REC)) $(BUILD)/tests/test_faults \
	    $(TEST_ARGS) > $(FAULTS_OUT) 2>&1 || fail=1; \
	grep -aE '\[(FAIL|----)\]' $(FAULTS_OUT) | head -n 40; \
	grep -a 'Synthesis' $(FAULTS_OUT) || { echo "no test ran"; fail=1; }; \
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) \
	    > $(FAULTS_DIR)/fuzz.out 2>&1 || fail=1; \
	echo; echo "Fault figures (make faults, $(BUILD)):"; \
	touch $(FAULTS_REC); awk "$$FAULTS_AWK" $(FAULTS_REC); \
	echo "tests hitting their timeout: $$(grep -ac 'Timed out' \
	    $(FAULTS_OUT))"; \
	echo "tests failed: $$(grep -ac '^\[FAIL\]' $(FAULTS_OUT))"; \
	execs=0; for f in $(FUZZ_BUILD)/fuzz_*.log; do \
	    e=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$f); \
	    echo "fuzz executions, $$(basename $$f .log): $${e:-0}"; \
	    execs=$$((execs + $${e:-0})); done; \
	echo "fuzz executions: $$execs in $(FUZZ_SECONDS) s per target"; \
	echo "fuzz crashes: $$(ls $(FUZZ_BUILD) | grep -c '^crash-')"; \
	exit $$fail
