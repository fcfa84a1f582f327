#!/bin/sh
# mpi/check.sh BUILD 'MPIRUN...' MAKE CC [LDFLAGS] - the tests of
# libexchange_mpi (make check-mpi runs it once make mpi has built
# everything).
#
#   1. linkage: the core library needs no MPI library, libexchange_mpi
#      needs the core's and MPI's, and exports exchange_mpi.h's functions
#      only;
#   2. mpi/test_mpi.c under 1, 2, 3 and 4 ranks: every test passes, and
#      Open MPI printed no warning about fork();
#   3. the --mpi demos under 4 ranks print what their one-node runs print
#      (mandelbrot's time aside), and the two images are identical;
#   4. the demos built without MPI refuse --mpi with a clear message;
#   5. the page renders without a warning; make install puts the library,
#      header, exchange-mpi.pc and pages under a prefix; the page's EXAMPLE,
#      built with plain $CC and the flags pkg-config gives, runs on 2 ranks
#      against the installed libraries; make uninstall leaves nothing.
#
# Every mpirun runs under timeout(1) (in the command given), so a hang
# fails the run instead of stalling it.
set -u
build=$1
run=$2
make=$3
cc=$4
ldflags=${5:-}
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

names=$(nm -D --defined-only "$mpilib" | awk 'NF >= 3 { print $3 }' | sort | tr '\n' ' ')
if [ "$names" = "exchange_mpi_error exchange_mpi_pmap exchange_mpi_reduce exchange_mpi_reduce_op " ]; then
	good "linkage: $mpilib exports exchange_mpi.h's four functions only"
else
	bad "linkage: $mpilib exports $names"
fi

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

# 3. The demos: a tree of text files, counted on one node and on 4 ranks.
words=$tmp/words
mkdir -p "$words/a/b" "$words/c"
i=0
for f in README.md exchange.h exchange.c channel.c demos/wordcount.c; do
	[ -f "$f" ] || continue
	i=$((i + 1))
	cp "$f" "$words/a/$i.txt"
	head -n 40 "$f" > "$words/a/b/$i.txt"
	tail -n 25 "$f" > "$words/c/$i.txt"
done
printf 'the end\n' > "$words/c/last.txt"
"$build/demos/wordcount" --all --files-per-task 2 "$words" \
	> "$tmp/wc.one" 2> "$tmp/wc.one.err"
$run -np 4 "$mpi/wordcount" --mpi --all --files-per-task 2 "$words" \
	> "$tmp/wc.mpi" 2> "$tmp/wc.mpi.err"
st=$?
if [ $st -ne 0 ]; then
	bad "wordcount --mpi: exit status $st"; cat "$tmp/wc.mpi.err"
elif [ ! -s "$tmp/wc.one" ] || ! cmp -s "$tmp/wc.one" "$tmp/wc.mpi"; then
	bad "wordcount --mpi on 4 ranks prints what the one-node run prints"
	diff "$tmp/wc.one" "$tmp/wc.mpi" | head -n 10
else
	good "wordcount --mpi on 4 ranks prints what the one-node run prints" \
	     "($(wc -l < "$tmp/wc.one") lines)"
fi

size="--width 320 --height 241 --iter 300"
"$build/demos/mandelbrot" $size -o "$tmp/one.ppm" > "$tmp/mb.one"
$run -np 4 "$mpi/mandelbrot" --mpi $size -o "$tmp/mpi.ppm" \
	> "$tmp/mb.mpi" 2> "$tmp/mb.mpi.err"
st=$?
# The file names and the times differ; the rest of the line must not.
norm() { sed -e 's/ in [0-9.]* s$/ in T s/' -e "s|$tmp/[a-z]*.ppm|FILE|" "$1"; }
if [ $st -ne 0 ]; then
	bad "mandelbrot --mpi: exit status $st"; cat "$tmp/mb.mpi.err"
elif ! cmp -s "$tmp/one.ppm" "$tmp/mpi.ppm"; then
	bad "mandelbrot --mpi on 4 ranks writes the one-node image"
elif [ "$(norm "$tmp/mb.one")" != "$(norm "$tmp/mb.mpi")" ]; then
	bad "mandelbrot --mpi prints what the one-node run prints"
	cat "$tmp/mb.one" "$tmp/mb.mpi"
else
	good "mandelbrot --mpi on 4 ranks writes the one-node image, byte" \
	     "for byte ($(wc -c < "$tmp/one.ppm") bytes), and prints its line"
fi

# 4. The demos without MPI refuse --mpi.
for d in wordcount mandelbrot; do
	arg=; [ $d = wordcount ] && arg=$words
	"$build/demos/$d" --mpi $arg > /dev/null 2> "$tmp/no.err"
	st=$?
	if [ $st -eq 2 ] && grep -q 'this build has no MPI' "$tmp/no.err"; then
		good "$d --mpi without MPI says so (exit status 2)"
	else
		bad "$d --mpi without MPI: exit status $st"; cat "$tmp/no.err"
	fi
done

# 5. The page, make install, pkg-config.
out=$(groff -man -ww -z mpi/exchange_mpi.3 2>&1; \
	MANWIDTH=80 man --warnings -l mpi/exchange_mpi.3 2>&1 >/dev/null)
if [ -n "$out" ]; then
	bad "mpi/exchange_mpi.3 renders with warnings"; say "$out"
else
	good "mpi/exchange_mpi.3 renders without a warning"
fi
# Installed under a prefix of its own, not staged under DESTDIR: the
# prefix that --define-variable would relocate is also the MPI module's.
root=$tmp/root
prefix=/opt/exchange-mpi
# The parent make's jobserver descriptors are not ours.
MAKEFLAGS=$(printf ' %s ' "${MAKEFLAGS:-}" |
	sed -e 's/ --jobserver-[a-z]*=[^ ]*/ /g' -e 's/ -j[0-9]* / /g')
export MAKEFLAGS
if ! $make -s BUILD="$build" PREFIX="$root$prefix" install \
	> "$tmp/install.log" 2>&1; then
	bad "make install"; cat "$tmp/install.log"
else
	missing=
	for f in lib/libexchange_mpi.a lib/libexchange_mpi.so.0 \
		lib/libexchange_mpi.so include/exchange_mpi.h \
		lib/pkgconfig/exchange-mpi.pc share/man/man3/exchange_mpi.3 \
		share/man/man3/exchange_mpi_reduce.3; do
		[ -e "$root$prefix/$f" ] || missing="$missing $f"
	done
	[ -z "$missing" ] && good "make install: the MPI library, header," \
		"exchange-mpi.pc and pages" || bad "make install: missing$missing"
	sed -n '/^\.SH EXAMPLE/,/^\.SH/{/^\.nf/,/^\.fi/p;}' mpi/exchange_mpi.3 |
		sed -e '/^\.[a-z][a-z]/d' -e 's/\\-/-/g' -e 's/\\e/\\/g' \
		> "$tmp/example.c"
	flags=$(PKG_CONFIG_PATH=$root$prefix/lib/pkgconfig pkg-config \
		--cflags --libs exchange-mpi)
	# Word splitting of the flags is intended.
	# shellcheck disable=SC2086
	if ! $cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" -o "$tmp/example" \
		$flags $ldflags > "$tmp/cc.log" 2>&1; then
		bad "the page's EXAMPLE built with $cc \$(pkg-config exchange-mpi)"
		cat "$tmp/cc.log"
	else
		$run -np 2 -x LD_LIBRARY_PATH="$root$prefix/lib" "$tmp/example" \
			> "$tmp/example.out" 2>&1
		if [ "$(cat "$tmp/example.out")" = "333283335000 99980001" ]; then
			good "the page's EXAMPLE, built with $cc and pkg-config" \
			     "exchange-mpi, prints 333283335000 99980001 on 2 ranks"
		else
			bad "the page's EXAMPLE on 2 ranks"; cat "$tmp/example.out"
		fi
	fi
	$make -s BUILD="$build" PREFIX="$root$prefix" uninstall \
		> "$tmp/uninstall.log" 2>&1 || bad "make uninstall"
	left=$(find "$root" ! -type d | head -n 5)
	[ -z "$left" ] && good "make uninstall leaves nothing" ||
		bad "make uninstall leaves $left"
fi

[ $fail -eq 0 ] && say "check-mpi: passed" || say "check-mpi: FAILED"
exit $fail
