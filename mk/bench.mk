# make bench: the library side by side with the kernel's floor and with the
# tools users would pick instead (bench/, README "Benchmarks").
#
#   make bench                  every figure, under five minutes on 2 cores
#   make bench BENCH_ARGS='-g fork -r 9'   one group, more repetitions
#
# It installs GNU parallel and strace with apt-get when they are missing
# (both are only compared with or used to count system calls). The OpenMP
# side is built only when $(CC) takes -fopenmp. Not part of make check.

BENCH_DIR = $(BUILD)/bench
BENCH_SRCS = bench/driver.c bench/ref.c bench/lib.c bench/mandel.c
BENCH_BIN = $(BENCH_DIR)/bench
BENCH_ARGS ?=
# The command runner demo, when a colleague's demos/prun.c is there.
BENCH_PRUN = $(if $(wildcard demos/prun.c),$(BUILD)/demos/prun)

.PHONY: bench bench-build bench-tools

$(BENCH_DIR):
	mkdir -p $@

# The whole archive is linked so that every function the library defines is
# there for the weak references in bench/lib.c. -z now (as hardened
# distribution builds link) resolves every symbol at start for both sides
# alike: lazily bound, each forked child would run the dynamic linker for
# the functions its parent never called, and a short task's cost is mostly
# the pages its processes write.
$(BENCH_BIN): $(BENCH_SRCS) bench/bench.h $(STATIC) exchange.h | $(BENCH_DIR)
	$(CC) $(APP_CFLAGS) $(BENCH_SRCS) -o $@ \
	    -Wl,--whole-archive $(STATIC) -Wl,--no-whole-archive \
	    -Wl,-z,now $(APP_LDFLAGS) -lm

# Optional: without OpenMP the mandel_omp line says it was not built.
$(BENCH_DIR)/omp: bench/omp.c bench/mandel.c bench/bench.h | $(BENCH_DIR)
	@$(CC) $(APP_CFLAGS) -fopenmp bench/omp.c bench/mandel.c -o $@ \
	    $(APP_LDFLAGS) 2>$(BENCH_DIR)/omp.log && rm -f $(BENCH_DIR)/omp.log \
	    || { rm -f $@; echo "bench: $(CC) -fopenmp failed" \
	         "(see $(BENCH_DIR)/omp.log); mandel_omp will be skipped"; }

bench-build: $(BENCH_BIN) $(BENCH_DIR)/omp $(BENCH_PRUN)

bench-tools:
	@missing=""; \
	command -v parallel >/dev/null || missing="$$missing parallel"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	if [ -n "$$missing" ]; then \
	    echo "bench: installing$$missing with apt-get"; \
	    { apt-get update -qq && apt-get install -y -qq $$missing; } \
	        >/dev/null 2>&1 || echo "bench: could not install$$missing"; \
	fi

bench: bench-build bench-tools
	BENCH_SRC=bench PRUN=$(or $(BENCH_PRUN),demos/prun-missing) \
	    $(BENCH_BIN) $(BENCH_ARGS)
