/*
 * test_install.c - the library installs, links and reports its version like
 * a well-kept C library.
 *
 * The version test checks that the header, the library linked and the
 * Makefile (which names the shared library file) agree. The install test
 * runs tests/install.sh: make install into a temporary DESTDIR, a program
 * built against the installed copy with pkg-config and run, make uninstall.
 * The build passes the source and build directories, make and the compiler
 * in INSTALL_* macros (mk/install.mk).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "exchange.h"

#ifndef INSTALL_SRCDIR
#error "build this test with make: mk/install.mk defines INSTALL_SRCDIR"
#endif

Test(install, version_agrees)
{
	char parts[32];

	snprintf(parts, sizeof parts, "%d.%d.%d", EXCHANGE_VERSION_MAJOR,
		 EXCHANGE_VERSION_MINOR, EXCHANGE_VERSION_PATCH);
	cr_assert_str_eq(parts, EXCHANGE_VERSION);
	cr_assert_str_eq(exchange_version(), EXCHANGE_VERSION,
			 "the library linked is %s, the header %s",
			 exchange_version(), EXCHANGE_VERSION);
	cr_assert_str_eq(INSTALL_VERSION, EXCHANGE_VERSION,
			 "the Makefile builds %s, the header says %s",
			 INSTALL_VERSION, EXCHANGE_VERSION);
}

/* Quotes s for the shell inside single quotes. */
static void quote(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	out[n++] = '\'';
	for (; *s != '\0' && n + 5 < cap; s++) {
		if (*s == '\'') {
			memcpy(out + n, "'\\''", 4);
			n += 4;
		} else {
			out[n++] = *s;
		}
	}
	out[n++] = '\'';
	out[n] = '\0';
}

Test(install, install_pkgconfig_link_run, .timeout = 300)
{
	char src[1024], build[1024], make[256], cc[256], ld[512], script[1100];
	char cmd[6000];
	char line[512];
	FILE *log;
	int st, oks = 0;

	quote(src, sizeof src, INSTALL_SRCDIR);
	quote(build, sizeof build, INSTALL_BUILD);
	quote(make, sizeof make, INSTALL_MAKE);
	quote(cc, sizeof cc, INSTALL_CC);
	quote(ld, sizeof ld, INSTALL_LDFLAGS);
	quote(script, sizeof script, INSTALL_SRCDIR "/tests/install.sh");
	snprintf(cmd, sizeof cmd, "sh %s %s %s %s %s %s 2>&1", script, src,
		 build, make, cc, ld);

	/* popen forks a shell from the test process; the assertions stay
	 * here, the script reports by its output and exit status. */
	fflush(NULL);
	log = popen(cmd, "r");
	cr_assert_not_null(log, "popen: %s", strerror(errno));
	while (fgets(line, sizeof line, log) != NULL) {
		fputs(line, stderr);
		if (strncmp(line, "install.sh: ok: ", 16) == 0)
			oks++;
	}
	st = pclose(log);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "tests/install.sh failed (status %d): see its output above",
		  st);
	/* The steps that always run said ok: install, files, pkg-config
	 * build, loader, sysroot build, static build, uninstall. The demo
	 * and man steps run when the demo and man(1) are there. */
	cr_assert_geq(oks, 7, "only %d steps reported ok", oks);
}
