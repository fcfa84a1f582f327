/*
 * demo.h - what the pprocess twins share: the command line (-n, -l, -d, or
 * --n, --limit, --delay, read as cli.h says), the supposedly
 * time-consuming calculation, the table of results and the time taken.
 * Each twin then shows only the library calls that make it different from
 * the others.
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

#include "cli.h"
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

/* The twin's defaults, for its --help. */
static struct demo_args demo_defaults = { 10, 10, 1.0 };

/* The options of every twin, for getopt_long: -n, -l, -d, -h. */
#define DEMO_SHORT_OPTIONS "n:l:d:h"
#define DEMO_LONG_OPTIONS						\
	{ "n", required_argument, NULL, 'n' },				\
	{ "limit", required_argument, NULL, 'l' },			\
	{ "delay", required_argument, NULL, 'd' },			\
	{ "help", no_argument, NULL, 'h' }

/* What N and the delay are, for --help: the loop twins say otherwise. */
static const char *demo_n_help = "the table is N x N";
static const char *demo_delay_help = "each calculation sleeps this long";

/* The lines of --help on -n, -l and -d. */
static inline void demo_usage_options(FILE *f)
{
	fprintf(f,
		"  -n, --n N            %s (default %d, from 1 to %d)\n"
		"  -l, --limit LIMIT    processes at once (default %d, from 1 "
		"to 100000)\n"
		"  -d, --delay SECONDS  %s\n"
		"                       (default %g, at most 3600)\n",
		demo_n_help, demo_defaults.n, DEMO_MAX_N, demo_defaults.limit,
		demo_delay_help, demo_defaults.delay);
}

static inline void demo_usage(FILE *f)
{
	fprintf(f, "usage: %s [-n N] [-l LIMIT] [-d SECONDS]\n", cli.prog);
	demo_usage_options(f);
	fprintf(f, "  -h, --help           this help\n");
}

/* Starts reading the command line with the defaults given (pprocess: 10,
 * 10, 1). SIGPIPE is ignored, as the library recommends: a write to a
 * child that has gone then fails with EPIPE. */
static inline void demo_start(char **argv, const char *shorts,
			      const struct option *longs,
			      void (*usage)(FILE *), int n, int limit,
			      double delay)
{
	demo.n = demo_defaults.n = n;
	demo.limit = demo_defaults.limit = limit;
	demo.delay = demo_defaults.delay = delay;
	cli_init(argv, shorts, longs, usage);
	signal(SIGPIPE, SIG_IGN);
}

/* Takes option c, one of DEMO_LONG_OPTIONS, with its value v. */
static inline void demo_option(int c, const char *v)
{
	switch (c) {
	case 'n':
		demo.n = (int)cli_int(v, 1, DEMO_MAX_N);
		break;
	case 'l':
		demo.limit = (int)cli_int(v, 1, 100000);
		break;
	case 'd':
		demo.delay = cli_seconds(v, 3600.0);
		break;
	default:
		assert(!"an option outside DEMO_LONG_OPTIONS");
	}
}

/* Reads -n, -l and -d (--n, --limit, --delay) into the global settings,
 * starting from the defaults given; the twins take no other argument. A
 * bad command line is reported as cli.h says. */
static inline void demo_parse(int argc, char **argv, int n, int limit,
			      double delay)
{
	static const struct option longs[] = {
		DEMO_LONG_OPTIONS, { NULL, 0, NULL, 0 },
	};
	int c;

	demo_start(argv, ":" DEMO_SHORT_OPTIONS, longs, demo_usage, n, limit,
		   delay);
	while ((c = cli_next(argc, argv)) != -1)
		demo_option(c, optarg);
	cli_no_operands(argc, argv);
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

/* The calculation on the struct demo_pair a plain function is given:
 * fills *t (i, j, value); -1 with EINVAL when arg is no pair. */
static inline int demo_calculate_pair(const void *arg, size_t len,
				      struct demo_triple *t)
{
	struct demo_pair p;

	if (len != sizeof(p)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(&p, arg, sizeof(p));
	t->i = p.i;
	t->j = p.j;
	t->value = demo_calculate(p.i, p.j);
	return 0;
}

/* A plain function's result: a copy of size bytes in memory the library
 * frees, NULL on ENOMEM. */
static inline void *demo_result(const void *v, size_t size,
				size_t *result_len)
{
	void *r = malloc(size);

	if (r) {
		memcpy(r, v, size);
		*result_len = size;
	}
	return r;
}

/* The calculation as a plain function (pprocess MakeParallel(calculate)),
 * run in a child: the result is the struct demo_triple (i, j, value). */
static inline void *demo_calculate_triple(const void *arg, size_t len,
					  size_t *result_len, void *ctx)
{
	struct demo_triple t;

	(void)ctx;
	if (demo_calculate_pair(arg, len, &t) < 0)
		return NULL;
	return demo_result(&t, sizeof(t), result_len);
}

/* The same, with the value alone (an int32_t) as the result, for the
 * demos whose collector knows each task's place (a Map, pmap's order). */
static inline void *demo_calculate_value(const void *arg, size_t len,
					 size_t *result_len, void *ctx)
{
	struct demo_triple t;

	(void)ctx;
	if (demo_calculate_pair(arg, len, &t) < 0)
		return NULL;
	return demo_result(&t.value, sizeof(t.value), result_len);
}

/* A pmap element function (exchange_pmap_fn): the struct demo_pair at in
 * to its value, an int32_t at out. */
static inline int demo_calculate_element(const void *in, void *out,
					 void *ctx)
{
	struct demo_pair t;
	int32_t value;

	(void)ctx;
	memcpy(&t, in, sizeof(t));
	value = demo_calculate(t.i, t.j);
	memcpy(out, &value, sizeof(value));
	return 0;
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
