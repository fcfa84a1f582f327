/*
 * bench.h - what the parts of the benchmark share.
 *
 * The benchmark is one driver (driver.c) that runs every measurement as a
 * trial in a fresh process of its own: "bench run NAME ARGS" performs one
 * measurement and prints exactly one line on standard output, either
 * "ok VALUE" or "na REASON". Running each trial in its own process keeps
 * the measurements independent (no heap or descriptor state carried from
 * one to the next), lets the driver kill a trial that hangs, and gives the
 * memory figures a fresh peak RSS to start from.
 *
 * ref.c holds the plain-C references, which use no part of the library;
 * lib.c holds the library side of each pair.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock. */
double bench_now(void);

/* Prints the trial's result line and leaves with status 0. */
_Noreturn void bench_ok(double value);

/* Prints "na" and the reason (printf-style) and leaves with status 0: the
 * driver shows the figure as not available instead of failing the run. */
_Noreturn void bench_na(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* A trial: the arguments after its name. */
typedef void bench_trial_fn(int argc, char **argv);

/* Finds the trial of that name in ref.c or lib.c, or NULL. */
bench_trial_fn *bench_ref_trial(const char *name);
bench_trial_fn *bench_lib_trial(const char *name);

/* The element function both sides of the trivial map use: out = in * in,
 * 8 bytes each. Kept out of line so the serial reference pays the same
 * call per element as the library's workers. */
int bench_square(const void *in, void *out, void *ctx);

/* The CPU-bound kernel: the Mandelbrot set, one row of MANDEL_W
 * iteration counts per element. */
#define MANDEL_W 1600
#define MANDEL_H 1000
#define MANDEL_ITER 500
void bench_mandel_row(int y, uint16_t *row);

/* Parses a non-negative count argument, or fails the trial. */
long bench_count(const char *s);

#endif
