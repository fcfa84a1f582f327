/*
 * demo.h - what the pprocess twins share: the command line (--n, --limit,
 * --delay), the supposedly time-consuming calculation, the table of results
 * and the time taken. Each twin then shows only the library calls that make
 * it different from the others.
 *
 * Every twin prints what its Python original prints: most of them
 *
 *   Calculating...
 *   0 1 2 ... 9
 *   ...
 *   90 91 ... 99
 *   Time taken: <seconds>
 *
 * with "Calculating..." left out, or "Finishing..." added, where the
 * original does so (tests/pprocess-output holds what each one prints).
 *
 * All functions are static inline: each demo is one program that includes
 * this and uses only some of them, and an unused inline function draws no
 * warning.
 */
#ifndef DEMOS_DEMO_H
#define DEMOS_DEMO_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exchange.h"

/* The largest N accepted: the table has N * N entries. */
#define DEMO_MAX_N 1000

/* The settings of one run. */
struct demo_args {
	int n;			/* the table is n x n (pprocess N) */
	int limit;		/* processes at once (pprocess limit) */
	double delay;		/* seconds each calculation sleeps */
};

/* What a calculation sends back: where the value goes, and the value, as
 * pprocess's (i, j, i * N + j) tuples. */
struct demo_triple {
	int32_t i;		/* row */
	int32_t j;		/* column */
	int32_t value;		/* i * N + j */
};

/* The argument of one calculation. */
struct demo_pair {
	int32_t i;		/* row */
	int32_t j;		/* column */
};

/* The settings, global so that a forked child sees them as its parent set
 * them, as the Python examples use module globals. */
static struct demo_args demo = { 10, 10, 1.0 };

static inline void demo_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--n N] [--limit L] [--delay SECONDS]\n"
		"  --n N            the table is N x N (default 10, at most %d)\n"
		"  --limit L        processes running at once (default 10)\n"
		"  --delay SECONDS  each calculation sleeps this long "
		"(default 1)\n", prog, DEMO_MAX_N);
}

/* Parses a whole decimal integer in [lo, hi]. 0, or -1 if it is not one. */
static inline int demo_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* Parses a number of seconds in [0, 3600]. 0, or -1. */
static inline int demo_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !(v >= 0.0 && v <= 3600.0))
		return -1;
	*out = v;
	return 0;
}

/* The value of option name at argv[*i]: "--name VALUE" or "--name=VALUE".
 * Returns the value (advancing *i past it), or NULL when argv[*i] is not
 * that option. *missing is set when the option has no value. */
static inline const char *demo_option(int argc, char **argv, int *i,
				      const char *name, int *missing)
{
	size_t len = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, len) != 0)
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

/* Reads --n, --limit and --delay into the global settings, starting from
 * the defaults given (pprocess: 10, 10, 1). Bad arguments print the usage
 * and exit with status 2. SIGPIPE is ignored, as the library recommends:
 * a write to a child that has gone then fails with EPIPE. */
static inline void demo_parse(int argc, char **argv, int n, int limit,
			      double delay)
{
	const char *prog = argc > 0 ? argv[0] : "demo";
	int i;

	demo.n = n;
	demo.limit = limit;
	demo.delay = delay;
	for (i = 1; i < argc; i++) {
		const char *v;
		int missing = 0;

		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			demo_usage(prog);
			exit(0);
		}
		if ((v = demo_option(argc, argv, &i, "--n", &missing))) {
			if (demo_int(v, 1, DEMO_MAX_N, &demo.n) == 0)
				continue;
		} else if ((v = demo_option(argc, argv, &i, "--limit",
					    &missing))) {
			if (demo_int(v, 1, 100000, &demo.limit) == 0)
				continue;
		} else if ((v = demo_option(argc, argv, &i, "--delay",
					    &missing))) {
			if (demo_seconds(v, &demo.delay) == 0)
				continue;
		}
		if (missing)
			fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
		else
			fprintf(stderr, "%s: bad argument: %s\n", prog, argv[i]);
		demo_usage(prog);
		exit(2);
	}
	signal(SIGPIPE, SIG_IGN);
}

/* Sleeps the configured delay (the time-consuming part), resuming after
 * signals so that the full delay passes. */
static inline void demo_sleep(void)
{
	struct timespec ts;

	ts.tv_sec = (time_t)demo.delay;
	ts.tv_nsec = (long)((demo.delay - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The supposedly time-consuming calculation on i and j. */
static inline int32_t demo_calculate(int32_t i, int32_t j)
{
	demo_sleep();
	return i * demo.n + j;
}

/* Seconds from a monotonic clock. */
static inline double demo_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A results array of n * n entries, zeroed, or exit(1). */
static inline int32_t *demo_results(void)
{
	int32_t *r = calloc((size_t)demo.n * (size_t)demo.n, sizeof(*r));

	if (!r) {
		perror("calloc");
		exit(1);
	}
	return r;
}

/* Prints one value of the table: a space before all but the first of a
 * row, a newline after the last. k counts from 0 over the whole table. */
static inline void demo_print_value(size_t k, int32_t value)
{
	size_t col = k % (size_t)demo.n;

	printf(col ? " %ld" : "%ld", (long)value);
	if (col == (size_t)demo.n - 1)
		putchar('\n');
}

/* Prints the n x n table, one row per line. */
static inline void demo_print_table(const int32_t *results)
{
	size_t k, total = (size_t)demo.n * (size_t)demo.n;

	for (k = 0; k < total; k++)
		demo_print_value(k, results[k]);
}

/* The last line, as the Python examples print it: Python 2 writes a float
 * with 12 significant digits and a ".0" when that reads as an integer. */
static inline void demo_time_taken(double t0)
{
	char s[64];

	snprintf(s, sizeof(s), "%.12g", demo_now() - t0);
	if (!strpbrk(s, ".en"))
		strcat(s, ".0");
	printf("Time taken: %s\n", s);
}

/* Stores a triple in the results, checking where it goes. 0 or -1. */
static inline int demo_store_triple(int32_t *results, const void *data,
				    size_t len)
{
	struct demo_triple t;

	if (len != sizeof(t))
		return -1;
	memcpy(&t, data, sizeof(t));
	if (t.i < 0 || t.i >= demo.n || t.j < 0 || t.j >= demo.n)
		return -1;
	results[t.i * demo.n + t.j] = t.value;
	return 0;
}

/* Says why a task gave no result and exits with status 1. */
static inline void demo_fail(const struct channel_msg *m)
{
	fprintf(stderr, "task %zu failed: %s\n", m->task,
		m->kind == CHANNEL_DATA ? "unexpected message" :
		(const char *)m->data);
	exit(1);
}

/* Says what failed (with errno) and exits with status 1. */
static inline void demo_die(const char *what)
{
	perror(what);
	exit(1);
}

#endif /* DEMOS_DEMO_H */
