# mk/mpi.mk - libexchange_mpi, the optional companion library that runs
# exchange_pmap and map-reduce over the ranks of an MPI job (README, "More
# than one machine"). The core library never links MPI: only the files
# named here do.
#
#   make mpi          $(BUILD)/libexchange_mpi.a and .so, where $(MPICC)
#                     is found
#   make deps         also installs Open MPI (openmpi-bin libopenmpi-dev)
#
# $(MPICC) compiles with $(CC) underneath (OMPI_CC and MPICH_CC), so
# CC=clang builds the MPI part with clang too. Whether MPI is there is
# asked when a recipe runs, not when this file is read: "make deps mpi"
# on a machine without MPI installs it first and then builds.

MPICC ?= mpicc
MPIRUN ?= mpirun
MPI_BUILD = $(BUILD)/mpi
MPI_CC = OMPI_CC='$(CC)' MPICH_CC='$(CC)' $(MPICC)
MPI_STATIC = $(BUILD)/libexchange_mpi.a
MPI_SONAME = libexchange_mpi.so.$(VERSION_MAJOR)
MPI_SHARED = $(BUILD)/libexchange_mpi.so.$(VERSION)
MPI_OBJ = $(MPI_BUILD)/exchange_mpi.o

.PHONY: mpi mpi-build deps-mpi

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

mpi-build: $(MPI_STATIC) $(MPI_SHARED)

mpi:
	@if command -v $(MPICC) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory mpi-build; \
	else \
	    echo "mpi: no $(MPICC) (make deps installs Open MPI)"; exit 1; \
	fi

deps: deps-mpi

deps-mpi:
	@if command -v $(MPICC) >/dev/null 2>&1 && \
	    command -v $(MPIRUN) >/dev/null 2>&1; then \
	    echo "MPI is installed."; \
	else \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y openmpi-bin libopenmpi-dev; \
	fi
