/*
 * omp.c - the OpenMP side of the Mandelbrot pair: the same rows as the
 * serial reference and as pmap, spread over the cores by
 * "#pragma omp parallel for schedule(dynamic)". Built only when the
 * compiler takes -fopenmp; prints one trial line like every other trial.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	uint16_t *img = malloc((size_t)MANDEL_W * MANDEL_H * sizeof *img);
	uint64_t sum = 0;
	double t0;
	int y;

	if (!img) {
		printf("na no memory\n");
		return 0;
	}
	t0 = bench_now();
#pragma omp parallel for schedule(dynamic)
	for (y = 0; y < MANDEL_H; y++)
		bench_mandel_row(y, img + (size_t)y * MANDEL_W);
	t0 = bench_now() - t0;
	for (y = 0; y < MANDEL_W * MANDEL_H; y++)
		sum += img[y];
	if (sum == 0)
		printf("na empty image\n");
	else
		printf("ok %.9g\n", t0);
	free(img);
	return 0;
}
