#!/bin/sh
# install.sh - proves the install, pkg-config and link path of libexchange.
#
#   sh tests/install.sh SRCDIR BUILD MAKE CC [LDFLAGS]
#
# Installs the build in BUILD into a temporary DESTDIR under a prefix that is
# not the default, checks every installed file, builds tests/install_prog.c
# against the installed copy with the flags pkg-config gives (relocated with
# --define-variable=prefix=..., then with PKG_CONFIG_SYSROOT_DIR), runs it
# against the installed shared library, links it statically as well, renders
# the installed man pages, uninstalls and checks nothing is left. Prints one
# "ok" line per step; exits 1 at the first failure, saying which.
set -u

srcdir=$1
build=$2
make=$3
cc=$4
ldflags=${5:-}
prefix=/opt/exchange

fail() {
	echo "install.sh: FAIL: $*" >&2
	exit 1
}
ok() {
	echo "install.sh: ok: $*"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/exchange-install.XXXXXX") ||
	fail "mktemp"
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
root=$tmp/root
lib=$root$prefix/lib

# This may run under make check: the parent's jobserver descriptors are not
# ours, so keep its variables but not its job options.
MAKEFLAGS=$(printf ' %s ' "${MAKEFLAGS:-}" |
	sed -e 's/ --jobserver-[a-z]*=[^ ]*/ /g' -e 's/ -j[0-9]* / /g')
export MAKEFLAGS

$make -s -C "$srcdir" BUILD="$build" DESTDIR="$root" PREFIX="$prefix" \
	install > "$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log" >&2; fail "make install"; }
ok "make install DESTDIR=... PREFIX=$prefix"

for f in lib/libexchange.a lib/libexchange.so.0.2.0 include/exchange.h \
	lib/pkgconfig/exchange.pc share/man/man3/exchange.3 \
	share/man/man3/channel.3 share/man/man3/exchange_persistent.3 \
	share/man/man3/exchange_pmap.3; do
	[ -f "$root$prefix/$f" ] || fail "$prefix/$f not installed"
done
[ "$(readlink "$lib/libexchange.so.0")" = libexchange.so.0.2.0 ] ||
	fail "libexchange.so.0 does not point to libexchange.so.0.2.0"
[ "$(readlink "$lib/libexchange.so")" = libexchange.so.0 ] ||
	fail "libexchange.so does not point to libexchange.so.0"
cmp -s "$srcdir/exchange.h" "$root$prefix/include/exchange.h" ||
	fail "the installed exchange.h differs from the source"
grep -qx "prefix=$prefix" "$lib/pkgconfig/exchange.pc" ||
	fail "exchange.pc does not name prefix=$prefix"
ok "files, links and exchange.pc in place"

# The program links to the installed shared library, and runs with it.
check_prog() {
	how=$1
	cflags=$2
	libs=$3
	# Word splitting of the flags is intended.
	# shellcheck disable=SC2086
	$cc $cflags -o "$tmp/prog" "$srcdir/tests/install_prog.c" $libs \
		$ldflags > "$tmp/cc.log" 2>&1 ||
		{ cat "$tmp/cc.log" >&2; fail "build with $how"; }
	LD_LIBRARY_PATH=$lib "$tmp/prog" > "$tmp/out" 2>&1 ||
		{ cat "$tmp/out" >&2; fail "run after build with $how"; }
	grep -q 'channel round trip ok' "$tmp/out" ||
		fail "unexpected output: $(cat "$tmp/out")"
	ok "built with $how: $(cat "$tmp/out")"
}

export PKG_CONFIG_PATH="$lib/pkgconfig"
pcvar=--define-variable=prefix=$root$prefix
pc=$(pkg-config "$pcvar" --cflags --libs exchange) ||
	fail "pkg-config --define-variable"
case $pc in
*"-I$root$prefix/include"*"-L$lib"*) ;;
*) fail "pkg-config gave '$pc'" ;;
esac
[ "$(pkg-config --modversion exchange)" = "$(sed -n \
	's/^#define EXCHANGE_VERSION "\(.*\)"$/\1/p' "$srcdir/exchange.h")" ] ||
	fail "pkg-config --modversion differs from EXCHANGE_VERSION"
check_prog "pkg-config --define-variable=prefix" \
	"$(pkg-config "$pcvar" --cflags exchange)" \
	"$(pkg-config "$pcvar" --libs exchange)"
readelf -d "$tmp/prog" | grep -q 'NEEDED.*\[libexchange\.so\.0\]' ||
	fail "the program does not need libexchange.so.0"
LD_LIBRARY_PATH=$lib ldd "$tmp/prog" | grep -q "$lib/libexchange.so.0" ||
	fail "the program does not load the installed libexchange.so.0"
ok "the program loads $prefix/lib/libexchange.so.0"

export PKG_CONFIG_SYSROOT_DIR="$root"
check_prog "PKG_CONFIG_SYSROOT_DIR" "$(pkg-config --cflags exchange)" \
	"$(pkg-config --libs exchange)"
unset PKG_CONFIG_SYSROOT_DIR

# The static library alone also makes a working program.
check_prog "the static library" "$(pkg-config "$pcvar" --cflags exchange)" \
	"$lib/libexchange.a"
readelf -d "$tmp/prog" | grep -q 'NEEDED.*libexchange' &&
	fail "the static build still needs libexchange.so"

# A demo, too, builds against the installed copy alone: its own header
# includes "exchange.h", found through pkg-config's -I, not the source tree.
demo=$srcdir/demos/simple_pmap.c
if [ -f "$demo" ]; then
	# shellcheck disable=SC2046,SC2086
	$cc -std=c11 -D_POSIX_C_SOURCE=200809L -I"$srcdir/demos" \
		$(pkg-config "$pcvar" --cflags exchange) -o "$tmp/demo" "$demo" \
		$(pkg-config "$pcvar" --libs exchange) $ldflags -lm \
		> "$tmp/cc.log" 2>&1 ||
		{ cat "$tmp/cc.log" >&2; fail "build demos/simple_pmap.c"; }
	LD_LIBRARY_PATH=$lib "$tmp/demo" --n 4 --limit 2 --delay 0 \
		> "$tmp/out" 2>&1 ||
		{ cat "$tmp/out" >&2; fail "run demos/simple_pmap"; }
	grep -qx '12 13 14 15' "$tmp/out" ||
		fail "demos/simple_pmap printed: $(cat "$tmp/out")"
	ok "demos/simple_pmap built against the installed copy and ran"
fi

# The pages render from the installed tree, the per-function names too.
if command -v man > /dev/null 2>&1; then
	for page in exchange channel channel_send exchange_pmap \
		channel_connect; do
		MANWIDTH=80 man -M "$root$prefix/share/man" 3 "$page" \
			> "$tmp/man.out" 2> "$tmp/man.err" ||
			fail "man 3 $page: $(cat "$tmp/man.err")"
		grep -q SYNOPSIS "$tmp/man.out" ||
			fail "man 3 $page rendered no SYNOPSIS"
	done
	ok "man 3 exchange, channel, channel_send, exchange_pmap," \
		"channel_connect render"
else
	echo "install.sh: note: man(1) is not installed; pages not rendered"
fi

$make -s -C "$srcdir" BUILD="$build" DESTDIR="$root" PREFIX="$prefix" \
	uninstall > "$tmp/uninstall.log" 2>&1 ||
	{ cat "$tmp/uninstall.log" >&2; fail "make uninstall"; }
left=$(find "$root" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make uninstall removed every file"
