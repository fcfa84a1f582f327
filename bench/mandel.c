/*
 * mandel.c - the CPU-bound kernel every side of the Mandelbrot pair runs,
 * compiled once per binary so that the serial, OpenMP and pmap figures
 * time the same code with the same flags. Rows near the middle of the image
 * cost far more than rows at the edges, which is what makes static
 * partitioning lose and dynamic scheduling matter.
 */
#include "bench.h"

void bench_mandel_row(int y, uint16_t *row)
{
	/* The classic view: x in [-2.2, 0.8], y in [-1.0, 1.0]. */
	double ci = -1.0 + 2.0 * y / (MANDEL_H - 1);
	int x;

	for (x = 0; x < MANDEL_W; x++) {
		double cr = -2.2 + 3.0 * x / (MANDEL_W - 1);
		double zr = 0.0, zi = 0.0;
		int k;

		for (k = 0; k < MANDEL_ITER; k++) {
			double rr = zr * zr, ii = zi * zi;

			if (rr + ii > 4.0)
				break;
			zi = 2.0 * zr * zi + ci;
			zr = rr - ii + cr;
		}
		row[x] = (uint16_t)k;
	}
}
