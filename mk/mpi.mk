# mk/mpi.mk - libexchange_mpi, the optional companion library that runs
# exchange_pmap and map-reduce over the ranks of an MPI job (README, "More
# than one machine"). The core library never links MPI: only the files
# named here do.
#
#   make mpi          $(BUILD)/libexchange_mpi.a and .so, the test program
#                     and the --mpi demos, where $(MPICC) is found
#   make check-mpi    the MPI tests under mpirun with 1, 2, 3 and 4 ranks
#                     and the --mpi demos against their one-node runs,
#                     the linkage of the libraries, the page and its
#                     example, make install and exchange-mpi.pc;
#                     part of make check when $(MPICC) is found (with
#                     MPI_REQUIRED=1, as CI runs it, a missing MPI fails)
#   make check-mpi-asan  mpi/test_mpi.c built with AddressSanitizer and
#                     UBSan, under 1 and 3 ranks; fails on a test, on a
#                     sanitizer report, or on a leak whose stack holds a
#                     frame of this project (Open MPI's own are left aside;
#                     they also make the ranks' exit status 23, so the run
#                     is judged by its summary line)
#   make bench-mpi    mpi/bench_mpi.c under 1, 2 and 4 ranks: the overhead
#                     over a static MPI split, the cost of a chunk
#   make deps         also installs Open MPI (openmpi-bin libopenmpi-dev)
#   make install      also installs the MPI library, header, exchange-mpi.pc
#                     and page when make mpi has built them
#
# $(MPICC) compiles with $(CC) underneath (OMPI_CC and MPICH_CC), so
# CC=clang builds the MPI part with clang too. Whether MPI is there is
# asked when a recipe runs, not when this file is read: "make deps check"
# on a machine without MPI installs it first and then tests it.

MPICC ?= mpicc
MPIRUN ?= mpirun
MPI_BUILD = $(BUILD)/mpi
MPI_CC = OMPI_CC='$(CC)' MPICH_CC='$(CC)' $(MPICC)
MPI_STATIC = $(BUILD)/libexchange_mpi.a
MPI_SONAME = libexchange_mpi.so.$(VERSION_MAJOR)
MPI_SHARED = $(BUILD)/libexchange_mpi.so.$(VERSION)
MPI_OBJ = $(MPI_BUILD)/exchange_mpi.o
MPI_TEST = $(MPI_BUILD)/test_mpi
MPI_DEMOS = $(MPI_BUILD)/wordcount $(MPI_BUILD)/mandelbrot
# Every wait of the tests is bounded: each mpirun is killed after this.
MPI_TIMEOUT ?= 120
# As root (CI), Open MPI wants to be told; --oversubscribe lets 4 ranks
# run on 2 cores; --bind-to none leaves each rank (and so its workers) the
# whole machine, where Open MPI would bind a rank to one core when there
# are two ranks or fewer (exchange_cores() then says 1); the warning on
# fork() is asked for explicitly (it is on by default), since check.sh
# fails when one appears.
MPI_ENV = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
	OMPI_MCA_mpi_warn_on_fork=1
MPI_RUN = env $(MPI_ENV) timeout -k 5 $(MPI_TIMEOUT) $(MPIRUN) --oversubscribe \
	--bind-to none
MPI_REQUIRED ?=

.PHONY: mpi mpi-build bench-mpi check-mpi check-mpi-asan check-mpi-run deps-mpi install-mpi \
	uninstall-mpi

$(MPI_BUILD):
	mkdir -p $@

$(MPI_OBJ): exchange_mpi.c exchange_mpi.h exchange.h | $(MPI_BUILD)
	$(MPI_CC) $(LIB_CFLAGS) -pthread -c $< -o $@

$(MPI_STATIC): $(MPI_OBJ)
	rm -f $@
	$(AR) rcs $@ $<

# Linked to the core's shared library and MPI, nothing else.
$(MPI_SHARED): $(MPI_OBJ) $(SHARED)
	$(MPI_CC) -shared -Wl,-soname,$(MPI_SONAME) -Wl,-z,now $(SAN) \
	    $(LDFLAGS) -pthread -o $@ $(MPI_OBJ) -L$(BUILD) -lexchange
	ln -sf libexchange_mpi.so.$(VERSION) $(BUILD)/$(MPI_SONAME)
	ln -sf $(MPI_SONAME) $(BUILD)/libexchange_mpi.so

$(MPI_TEST): mpi/test_mpi.c $(MPI_STATIC) $(STATIC) exchange_mpi.h exchange.h \
		| $(MPI_BUILD)
	$(MPI_CC) $(APP_CFLAGS) -pthread $< -o $@ $(MPI_STATIC) $(STATIC) \
	    $(APP_LDFLAGS)

# The --mpi demos: the one-node demos' sources compiled with
# EXCHANGE_DEMO_MPI, so that both print through the same code.
$(MPI_BUILD)/%: demos/%.c $(MPI_STATIC) $(STATIC) exchange_mpi.h exchange.h \
		$(wildcard demos/*.h) | $(MPI_BUILD)
	$(MPI_CC) $(APP_CFLAGS) -DEXCHANGE_DEMO_MPI -pthread $< -o $@ \
	    $(MPI_STATIC) $(STATIC) $(APP_LDFLAGS) -lm

$(MPI_BUILD)/bench_mpi: mpi/bench_mpi.c $(MPI_STATIC) $(STATIC) exchange_mpi.h \
		exchange.h | $(MPI_BUILD)
	$(MPI_CC) $(APP_CFLAGS) -pthread $< -o $@ $(MPI_STATIC) $(STATIC) \
	    $(APP_LDFLAGS) -lm

bench-mpi:
	@$(MAKE) --no-print-directory mpi $(MPI_BUILD)/bench_mpi
	@for np in 1 2 4; do \
	    $(MPI_RUN) -np $$np $(MPI_BUILD)/bench_mpi $(BENCH_MPI_ARGS) || exit 1; \
	done

mpi-build: $(MPI_STATIC) $(MPI_SHARED) $(MPI_TEST) $(MPI_DEMOS)

mpi:
	@if command -v $(MPICC) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory mpi-build; \
	else \
	    echo "mpi: no $(MPICC) (make deps installs Open MPI)"; exit 1; \
	fi

check: check-mpi

# The core library and the one-node demos are built by this make first,
# so that the make below finds them done (two makes must not build the
# same files at once under -j).
check-mpi: $(STATIC) $(SHARED) $(DEMOS)
	@if command -v $(MPICC) >/dev/null 2>&1 && \
	    command -v $(MPIRUN) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory check-mpi-run; \
	elif [ -n "$(MPI_REQUIRED)" ]; then \
	    echo "check-mpi: no $(MPICC) or $(MPIRUN), and MPI_REQUIRED is set"; \
	    exit 1; \
	else \
	    echo "check-mpi: skipped, no $(MPICC) (make deps installs Open MPI)"; \
	fi

check-mpi-run: mpi-build $(DEMOS)
	sh mpi/check.sh '$(BUILD)' '$(MPI_RUN)' '$(MAKE)' '$(CC)' \
	    '$(SAN) $(LDFLAGS)'

MPI_ASAN_BUILD ?= $(BUILD)-mpi-asan

check-mpi-asan:
	@$(MAKE) --no-print-directory BUILD=$(MPI_ASAN_BUILD) \
	    SANITIZE=address,undefined mpi
	@fail=0; for np in 1 3; do \
	    log=$(MPI_ASAN_BUILD)/asan.$$np.log; \
	    ASAN_OPTIONS=$(TEST_ASAN_OPTIONS) UBSAN_OPTIONS=$(TEST_UBSAN_OPTIONS) \
	    $(MPI_RUN) -x ASAN_OPTIONS -x UBSAN_OPTIONS -np $$np \
	        $(MPI_ASAN_BUILD)/mpi/test_mpi > $$log 2>&1; \
	    grep -a '^# [1-9][0-9]* tests, 0 failed' $$log || fail=1; \
	    if grep -aEq '$(SANITIZER_REPORT)' $$log; then \
	        grep -aE -A12 '$(SANITIZER_REPORT)' $$log | head -n 40; fail=1; fi; \
	    leaks=$$(awk '/^(Direct|Indirect) leak of/ { if (s != "" && o) print s; \
	        s = $$0; o = 0; next } s != "" && /^ *#[0-9]+ / { \
	        if ($$0 ~ /exchange_mpi[.]c|test_mpi[.]c|pmap[.]c|exchange[.]c|channel[.]c|proc[.]c|collect[.]c/) o = 1; next } \
	        END { if (s != "" && o) print s }' $$log); \
	    if [ -n "$$leaks" ]; then echo "leaks of ours in $$log:"; \
	        echo "$$leaks"; fail=1; fi; \
	done; \
	[ $$fail = 0 ] && echo "check-mpi-asan: passed, no sanitizer report" \
	    "and no leak of ours" || echo "check-mpi-asan: FAILED"; exit $$fail

deps: deps-mpi

deps-mpi:
	@if command -v $(MPICC) >/dev/null 2>&1 && \
	    command -v $(MPIRUN) >/dev/null 2>&1; then \
	    echo "MPI is installed."; \
	else \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y openmpi-bin libopenmpi-dev; \
	fi

# make install: the MPI part when make mpi has built it (it is left out,
# with a line saying so, otherwise). exchange-mpi.pc requires exchange and
# the MPI library's own pkg-config module where there is one, so that
# "pkg-config --cflags --libs exchange-mpi" is enough without mpicc.
MPI_PC_REQUIRES = $(shell for m in mpi-c ompi-c mpich; do \
	pkg-config --exists $$m 2>/dev/null && { echo $$m; break; }; done)
MPI_MAN = mpi/exchange_mpi.3

install: install-mpi
uninstall: uninstall-mpi

install-mpi:
	@if [ -f $(MPI_STATIC) ] && [ -f $(MPI_SHARED) ]; then \
	    set -e; \
	    $(INSTALL) -d '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(INCLUDEDIR)' \
		'$(DESTDIR)$(PKGCONFIGDIR)' '$(DESTDIR)$(MANDIR)/man3'; \
	    $(INSTALL) -m 644 $(MPI_STATIC) '$(DESTDIR)$(LIBDIR)/libexchange_mpi.a'; \
	    $(INSTALL) -m 755 $(MPI_SHARED) \
		'$(DESTDIR)$(LIBDIR)/libexchange_mpi.so.$(VERSION)'; \
	    ln -sf libexchange_mpi.so.$(VERSION) '$(DESTDIR)$(LIBDIR)/$(MPI_SONAME)'; \
	    ln -sf $(MPI_SONAME) '$(DESTDIR)$(LIBDIR)/libexchange_mpi.so'; \
	    $(INSTALL) -m 644 exchange_mpi.h '$(DESTDIR)$(INCLUDEDIR)/exchange_mpi.h'; \
	    sed -e 's|@PREFIX@|$(PREFIX)|' \
		-e 's|@LIBDIR@|$(call pc_rel,$(LIBDIR))|' \
		-e 's|@INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|' \
		-e 's|@VERSION@|$(VERSION)|' \
		-e 's|@MPI_REQUIRES@|$(MPI_PC_REQUIRES)|' \
		exchange-mpi.pc.in > '$(DESTDIR)$(PKGCONFIGDIR)/exchange-mpi.pc'; \
	    chmod 644 '$(DESTDIR)$(PKGCONFIGDIR)/exchange-mpi.pc'; \
	    $(INSTALL) -m 644 $(MPI_MAN) '$(DESTDIR)$(MANDIR)/man3/exchange_mpi.3'; \
	    for n in exchange_mpi_pmap exchange_mpi_reduce exchange_mpi_reduce_op \
		exchange_mpi_error; do \
		printf '.so man3/exchange_mpi.3\n' > '$(DESTDIR)$(MANDIR)/man3/'"$$n.3"; \
	    done; \
	    echo "install: libexchange_mpi, exchange_mpi.h and exchange-mpi.pc"; \
	else \
	    echo "install: libexchange_mpi is not built (make mpi), not installed"; \
	fi

uninstall-mpi:
	rm -f '$(DESTDIR)$(LIBDIR)/libexchange_mpi.a' \
	    '$(DESTDIR)$(LIBDIR)/libexchange_mpi.so.$(VERSION)' \
	    '$(DESTDIR)$(LIBDIR)/$(MPI_SONAME)' \
	    '$(DESTDIR)$(LIBDIR)/libexchange_mpi.so' \
	    '$(DESTDIR)$(INCLUDEDIR)/exchange_mpi.h' \
	    '$(DESTDIR)$(PKGCONFIGDIR)/exchange-mpi.pc' \
	    '$(DESTDIR)$(MANDIR)/man3/exchange_mpi.3'
	for n in exchange_mpi_pmap exchange_mpi_reduce exchange_mpi_reduce_op \
	    exchange_mpi_error; do \
	    rm -f '$(DESTDIR)$(MANDIR)/man3/'"$$n.3"; \
	done
