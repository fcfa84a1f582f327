# Installing libexchange, and the checks that keep it a well-kept C library.
#
#   make install       the libraries, exchange.h, exchange.pc and the man
#                      pages under $(DESTDIR)$(PREFIX)
#   make uninstall     removes exactly what install put there
#   make check-exports the shared library exports exactly what exchange.h
#                      declares, under the right soname
#   make check-header  exchange.h compiles alone as C11 and C++ with gcc,
#                      clang, g++ and clang++, warnings as errors
#   make check-install install into a temporary DESTDIR, build a program
#                      against it with pkg-config, run it, uninstall
#   make lint          cppcheck and clang-tidy on the library sources
#   make man-check     the man pages render without a warning, their
#                      examples compile and run, and every function of
#                      exchange.h has a page
#
# PREFIX, LIBDIR, INCLUDEDIR, MANDIR and PKGCONFIGDIR may be given on the
# command line or in the environment; DESTDIR is put in front of each at
# install time only, so the installed exchange.pc names the final place.

# The fragments are included before the Makefile's first rule: keep "all"
# the goal of a bare "make".
.DEFAULT_GOAL := all

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL ?= install

# In exchange.pc, directories under the prefix are written relative to
# ${prefix}, so that pkg-config --define-variable=prefix=... relocates them.
pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(patsubst $(PREFIX),$${prefix},$(1)))

MAN_PAGES = $(sort $(wildcard man/*.3))

# Each name a page documents in its NAME section ("a, b, c \- what") gets a
# one-line page that sources it, so that "man channel_send" works. The shell
# loop prints "page name" pairs.
MAN_NAMES = for p in $(MAN_PAGES); do \
	    b=$${p\#\#*/}; \
	    for n in $$(sed -n '/^\.SH NAME/,/\\-/{/^\.SH/d;p;}' $$p | \
		tr '\n' ' ' | sed 's/ *\\-.*//;s/,/ /g'); do \
		[ "$$n.3" = "$$b" ] || echo "$$b $$n"; \
	    done; \
	done

.PHONY: install uninstall check-exports check-header check-install lint lint-layers \
	man-check

install: $(STATIC) $(SHARED) exchange.h exchange.pc.in $(MAN_PAGES)
	$(INSTALL) -d '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(INCLUDEDIR)' \
	    '$(DESTDIR)$(PKGCONFIGDIR)' '$(DESTDIR)$(MANDIR)/man3'
	$(INSTALL) -m 644 $(STATIC) '$(DESTDIR)$(LIBDIR)/libexchange.a'
	$(INSTALL) -m 755 $(SHARED) '$(DESTDIR)$(LIBDIR)/libexchange.so.$(VERSION)'
	ln -sf libexchange.so.$(VERSION) '$(DESTDIR)$(LIBDIR)/$(SONAME)'
	ln -sf $(SONAME) '$(DESTDIR)$(LIBDIR)/libexchange.so'
	$(INSTALL) -m 644 exchange.h '$(DESTDIR)$(INCLUDEDIR)/exchange.h'
	sed -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@LIBDIR@|$(call pc_rel,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' \
	    exchange.pc.in > '$(DESTDIR)$(PKGCONFIGDIR)/exchange.pc'
	chmod 644 '$(DESTDIR)$(PKGCONFIGDIR)/exchange.pc'
	for p in $(MAN_PAGES); do \
	    $(INSTALL) -m 644 $$p '$(DESTDIR)$(MANDIR)/man3/' || exit 1; \
	done
	$(MAN_NAMES) | while read b n; do \
	    printf '.so man3/%s\n' "$$b" > '$(DESTDIR)$(MANDIR)/man3/'"$$n.3" \
	    || exit 1; \
	done

uninstall:
	rm -f '$(DESTDIR)$(LIBDIR)/libexchange.a' \
	    '$(DESTDIR)$(LIBDIR)/libexchange.so.$(VERSION)' \
	    '$(DESTDIR)$(LIBDIR)/$(SONAME)' '$(DESTDIR)$(LIBDIR)/libexchange.so' \
	    '$(DESTDIR)$(INCLUDEDIR)/exchange.h' \
	    '$(DESTDIR)$(PKGCONFIGDIR)/exchange.pc'
	$(MAN_NAMES) | while read b n; do \
	    rm -f '$(DESTDIR)$(MANDIR)/man3/'"$$n.3"; \
	done
	for p in $(MAN_PAGES); do \
	    rm -f '$(DESTDIR)$(MANDIR)/man3/'"$${p##*/}"; \
	done

# Prints, sorted, the functions exchange.h declares: every name followed by
# "(" in the preprocessed header that starts with exchange_ or channel_,
# less the function types (typedef ... name(...)).
DECLARED = $(CC) $(STD) -E -P exchange.h | tr -s ' \t\n' '   ' | \
	awk '{ s = $$0; \
	    while (match(s, /typedef[^;(]*\(/)) { \
		t = substr(s, RSTART, RLENGTH - 1); sub(/.*[^A-Za-z0-9_]/, "", t); \
		skip[t] = 1; s = substr(s, RSTART + RLENGTH) } \
	    s = $$0; \
	    while (match(s, /(exchange|channel)_[A-Za-z0-9_]* *\(/)) { \
		n = substr(s, RSTART, RLENGTH); sub(/ *\($$/, "", n); \
		if (!(n in skip)) print n; s = substr(s, RSTART + RLENGTH) } }' | \
	sort -u

# The shared library exports exactly what exchange.h declares: a name the
# header does not declare fails the check (it would become ABI by accident),
# and so does a declared function the library does not define (a program
# calling it would not link).
check-exports: $(SHARED) $(STATIC) | $(BUILD)/check
	@soname=$$(readelf -d $(SHARED) | \
	    sed -n 's/.*Library soname: \[\(.*\)\]/\1/p'); \
	if [ "$$soname" != "$(SONAME)" ]; then \
	    echo "check-exports: soname is '$$soname', not $(SONAME)"; exit 1; \
	fi
	@$(DECLARED) > $(BUILD)/check/declared.txt
	@nm -D --defined-only $(SHARED) | awk 'NF >= 3 { print $$3 }' | \
	    sed 's/@.*//' | sort -u > $(BUILD)/check/exported.txt
	@extra=$$(comm -23 $(BUILD)/check/exported.txt $(BUILD)/check/declared.txt); \
	missing=$$(comm -13 $(BUILD)/check/exported.txt $(BUILD)/check/declared.txt); \
	echo "check-exports: $(SONAME) exports" \
	    "$$(wc -l < $(BUILD)/check/exported.txt) names;" \
	    "exchange.h declares $$(wc -l < $(BUILD)/check/declared.txt) functions"; \
	st=0; \
	if [ -n "$$missing" ]; then \
	    echo "check-exports: declared but not exported:" $$missing; st=1; \
	fi; \
	if [ -n "$$extra" ]; then \
	    echo "check-exports: exported but not declared in exchange.h:" $$extra; \
	    st=1; \
	fi; \
	nm -g --defined-only $(STATIC) | awk 'NF >= 3 { print $$3 }' | \
	    sort -u > $(BUILD)/check/archived.txt; \
	extra=$$(comm -23 $(BUILD)/check/archived.txt $(BUILD)/check/declared.txt); \
	echo "check-exports: libexchange.a defines" \
	    "$$(wc -l < $(BUILD)/check/archived.txt) global names"; \
	if [ -n "$$extra" ]; then \
	    echo "check-exports: global in libexchange.a but not declared in exchange.h:" $$extra; \
	    st=1; \
	fi; \
	printf '%s\n' '#include "exchange.h"' \
	    'int frame_encode(void); int channel_fill(void);' \
	    'int frame_encode(void) { return 1; }' \
	    'int channel_fill(void) { return 2; }' \
	    'int main(void) { return frame_encode() + channel_fill() == 3 &&' \
	    '    exchange_version() ? 0 : 1; }' > $(BUILD)/check/own_names.c; \
	if $(CC) $(STD) -I. $(BUILD)/check/own_names.c $(STATIC) $(SAN) \
	    -o $(BUILD)/check/own_names && $(BUILD)/check/own_names; then \
	    echo "check-exports: a program with its own frame_encode and" \
	        "channel_fill links with libexchange.a"; \
	else \
	    echo "check-exports: a program with its own frame_encode does" \
	        "not link with libexchange.a"; st=1; \
	fi; \
	exit $$st

# exchange.h stands alone (it is included first) and compiles without a
# warning as C11, with and without the POSIX feature macro, and as C++11 and
# C++17; the C++ program is linked to the library and run, which proves the
# extern "C" guard. Every compiler in the lists must be present.
HEADER_CC ?= gcc clang
HEADER_CXX ?= g++ clang++
HEADER_WARN = -Wall -Wextra -Wpedantic -Werror

check-header: $(STATIC) tests/install_prog.c exchange.h | $(BUILD)/check
	@for cc in $(HEADER_CC); do \
	    for std in "-std=c11" "-std=c11 -D_POSIX_C_SOURCE=200809L" \
		"-std=c17 -D_POSIX_C_SOURCE=200809L"; do \
		echo "check-header: $$cc $$std"; \
		$$cc $$std $(HEADER_WARN) -Wshadow -Wstrict-prototypes \
		    -Wmissing-prototypes -I. -c tests/install_prog.c \
		    -o $(BUILD)/check/header-c.o || exit 1; \
	    done; \
	done
	@for cxx in $(HEADER_CXX); do \
	    for std in -std=c++11 -std=c++17; do \
		echo "check-header: $$cxx $$std (compiled, linked and run)"; \
		$$cxx $$std $(HEADER_WARN) -Wshadow -I. -x c++ \
		    tests/install_prog.c -x none $(STATIC) $(SAN) \
		    -o $(BUILD)/check/header-cxx || exit 1; \
		$(BUILD)/check/header-cxx > /dev/null || exit 1; \
	    done; \
	done

# Static analysis of the library sources; both tools run, and any report
# fails the target. Each remaining report is fixed in the source or explained
# next to the line (cppcheck-suppress, NOLINT). Left out: variableScope (the
# house style declares a function's variables at its top), cert-err33-c
# (snprintf into a fixed buffer, where truncation of a message text is the
# intended outcome) and implicit-widening-of-multiplication-result (flags
# constant sizes such as 16 * 1024).
CPPCHECK ?= cppcheck
CLANG_TIDY ?= clang-tidy
TIDY_CHECKS = -*,clang-analyzer-*,bugprone-*,cert-*,misc-*,performance-*,\
portability-*,-bugprone-easily-swappable-parameters,\
-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,\
-misc-unused-parameters,-cert-err33-c,\
-bugprone-implicit-widening-of-multiplication-result

# The layers (README, "How the code is laid out"), lowest first: each
# object may call only the objects before it in this list, which is checked
# on the objects' undefined and defined names; so no call cycle can form.
# struct channel is defined in channel_impl.h, which only the channel
# layer's files include: no other file can write a channel's fields.
LAYERS = sys arena frame channel proc persist manage exchange collect pmap
CHANNEL_LAYER = channel.c proc.c persist.c

lint-layers: $(OBJS) | $(BUILD)/check
	@st=0; below=""; \
	for l in $(LAYERS); do \
	    [ -f $(BUILD)/obj/$$l.o ] || { echo "lint-layers: no $$l.o"; exit 1; }; \
	    nm -u $(BUILD)/obj/$$l.o | awk '{ print $$2 }' | sort -u \
		> $(BUILD)/check/needs.txt; \
	    for o in $(LAYERS); do \
		[ $$o = $$l ] && continue; \
		nm --defined-only $(BUILD)/obj/$$o.o | \
		    awk '$$2 ~ /^[TDBR]$$/ { print $$3 }' | sort -u \
		    > $(BUILD)/check/has.txt; \
		used=$$(comm -12 $(BUILD)/check/needs.txt $(BUILD)/check/has.txt); \
		[ -z "$$used" ] && continue; \
		case " $$below " in *" $$o "*) ;; *) \
		    echo "lint-layers: $$l.o calls up into $$o.o:" $$used; \
		    st=1;; esac; \
	    done; \
	    below="$$below $$l"; \
	done; \
	for f in $(SRCS); do \
	    case " $(CHANNEL_LAYER) " in *" $$f "*) continue;; esac; \
	    if grep -q '^#include "channel_impl.h"' $$f; then \
		echo "lint-layers: $$f includes channel_impl.h"; st=1; fi; \
	done; \
	[ $$st = 0 ] && echo "lint-layers: $(words $(LAYERS)) layers, each" \
	    "calling only those below it; struct channel seen by" \
	    "$(CHANNEL_LAYER) only"; \
	exit $$st

lint: lint-layers | $(BUILD)/check
	@st=0; \
	echo "lint: cppcheck $(SRCS)"; \
	$(CPPCHECK) --quiet --error-exitcode=1 --inline-suppr \
	    --enable=warning,style,performance,portability --std=c11 \
	    -D_POSIX_C_SOURCE=200809L -D__GNUC__ -I. \
	    --suppress=missingIncludeSystem --suppress=variableScope \
	    $(SRCS) || st=1; \
	echo "lint: clang-tidy $(SRCS)"; \
	$(CLANG_TIDY) --quiet --warnings-as-errors='*' \
	    --checks='$(TIDY_CHECKS)' $(SRCS) -- $(STD) -I. \
	    > $(BUILD)/check/tidy.log 2>&1 || st=1; \
	grep -v 'warnings* generated' $(BUILD)/check/tidy.log; \
	exit $$st

# Every page renders with no warning from groff and man(1), and the program
# in its EXAMPLE section (roff escapes undone) compiles without a warning,
# links to the library and runs to a zero exit status. Every function
# exchange.h declares is named in the NAME section of some page, and each
# page's title line names the version being built.
man-check: $(MAN_PAGES) $(STATIC) | $(BUILD)/check
	@for p in $(MAN_PAGES); do \
	    echo "man-check: $$p"; \
	    grep -q '^\.TH .* "exchange $(VERSION)"' $$p || { \
		echo "$$p: its .TH line does not name exchange $(VERSION)"; \
		exit 1; }; \
	    out=$$(groff -man -ww -z $$p 2>&1); \
	    if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	    out=$$(MANWIDTH=80 man --warnings -l $$p 2>&1 >/dev/null); \
	    if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	    ex=$(BUILD)/check/example-$${p##*/}.c; \
	    sed -n '/^\.SH EXAMPLE/,/^\.SH/{/^\.nf/,/^\.fi/p;}' $$p | \
		sed -e '/^\.[a-z][a-z]/d' -e 's/\\-/-/g' -e 's/\\e/\\/g' \
		    -e 's/\\(aq/'"'"'/g' -e 's/\\&//g' > $$ex; \
	    if [ ! -s $$ex ]; then echo "$$p: no EXAMPLE program"; exit 1; fi; \
	    $(CC) $(STD) $(WARN) -Werror $(SAN) -I. $$ex -o $$ex.bin \
		$(STATIC) $(APP_LDFLAGS) || exit 1; \
	    $$ex.bin > $$ex.out 2>&1 || { cat $$ex.out; \
		echo "$$p: the EXAMPLE program failed"; exit 1; }; \
	done
	@$(DECLARED) > $(BUILD)/check/declared-man.txt
	@for p in $(MAN_PAGES); do \
	    sed -n '/^\.SH NAME/,/\\-/{/^\.SH/d;p;}' $$p | tr '\n' ' ' | \
		sed 's/ *\\-.*//;s/,/ /g' | tr ' ' '\n'; echo; \
	done | grep . | sort -u > $(BUILD)/check/documented.txt
	@missing=$$(comm -23 $(BUILD)/check/declared-man.txt \
	    $(BUILD)/check/documented.txt); \
	if [ -n "$$missing" ]; then \
	    echo "man-check: no page names:" $$missing; exit 1; \
	fi; \
	echo "man-check: all $$(wc -l < $(BUILD)/check/declared-man.txt)" \
	    "functions of exchange.h have a page"

# The install, pkg-config and link path, end to end, outside Criterion: the
# test tests/test_install.c runs the same script inside make check.
check-install: $(STATIC) $(SHARED)
	sh tests/install.sh '$(CURDIR)' '$(abspath $(BUILD))' '$(MAKE)' \
	    '$(CC)' '$(SAN) $(LDFLAGS)'

# The install test knows where the sources and this build are, and checks
# that the Makefile's version is the header's.
$(BUILD)/tests/test_install: tests/test_install.c tests/install.sh \
		tests/install_prog.c $(STATIC) $(SHARED) $(HDRS) mk/install.mk \
		| $(BUILD)/tests
	$(CC) $(APP_CFLAGS) $(CRITERION_CFLAGS) \
	    -DINSTALL_SRCDIR='"$(CURDIR)"' \
	    -DINSTALL_BUILD='"$(abspath $(BUILD))"' \
	    -DINSTALL_MAKE='"$(MAKE)"' -DINSTALL_CC='"$(CC)"' \
	    -DINSTALL_LDFLAGS='"$(SAN) $(LDFLAGS)"' \
	    -DINSTALL_VERSION='"$(VERSION)"' \
	    $< -o $@ $(STATIC) $(APP_LDFLAGS) $(CRITERION_LIBS)

$(BUILD)/check:
	mkdir -p $@
