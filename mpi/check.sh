#!/bin/sh
# mpi/check.sh BUILD 'MPIRUN...' - the tests of libexchange_mpi (make
# check-mpi runs it once make mpi has built everything).
#
#   1. linkage: the core library needs no MPI library, libexchange_mpi
#      needs the core's and MPI's;
#   2. mpi/test_mpi.c under 1, 2, 3 and 4 ranks: every test passes, and
#      Open MPI printed no warning about fork().
#
# Every mpirun runs under timeout(1) (in the command given), so a hang
# fails the run instead of stalling it.
set -u
build=$1
run=$2
mpi=$build/mpi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0

say() { printf '%s\n' "$*"; }
bad() { say "not ok - $*"; fail=1; }
good() { say "ok - $*"; }

# 1. Linkage.
core=$(ls "$build"/libexchange.so.*.*.* | head -n 1)
mpilib=$(ls "$build"/libexchange_mpi.so.*.*.* | head -n 1)
if readelf -d "$core" | grep NEEDED | grep -qi mpi; then
	bad "linkage: $core needs an MPI library"
else
	good "linkage: $core needs no MPI library"
fi
if nm -u "$build/libexchange.a" | grep -q 'MPI_\|ompi_'; then
	bad "linkage: libexchange.a calls MPI"
else
	good "linkage: libexchange.a calls no MPI function"
fi
needed=$(readelf -d "$mpilib" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | \
	grep -v -e '^libc[.]so' -e '^ld-linux' -e '^libpthread[.]so' | sort | tr '\n' ' ')
case "$needed" in
"libexchange.so.0 libmpi.so."[0-9]*" ")
	good "linkage: $mpilib needs $needed(and the C library)" ;;
*)
	bad "linkage: $mpilib needs '$needed', not libexchange.so.0 and libmpi only" ;;
esac

# 2. The tests under 1 to 4 ranks.
for np in 1 2 3 4; do
	say "== $run -np $np $mpi/test_mpi"
	$run -np "$np" "$mpi/test_mpi" > "$tmp/out.$np" 2> "$tmp/err.$np"
	st=$?
	cat "$tmp/out.$np"
	if [ $st -ne 0 ]; then
		bad "test_mpi on $np ranks: exit status $st"
		grep -v '^\[' "$tmp/err.$np" | head -n 40
	elif ! grep -q "^# [1-9][0-9]* tests, 0 failed, on $np ranks" "$tmp/out.$np"; then
		bad "test_mpi on $np ranks: no summary line"
	fi
	if grep -qi 'fork' "$tmp/err.$np"; then
		bad "test_mpi on $np ranks: Open MPI warned about fork()"
		grep -i -B2 -A8 'fork' "$tmp/err.$np" | head -n 30
	fi
done

[ $fail -eq 0 ] && say "check-mpi: passed" || say "check-mpi: FAILED"
exit $fail
