/*
 * bench_mpi - what exchange_mpi_pmap costs over a plain MPI program (make
 * bench-mpi runs it under 1, 2 and 4 ranks). Not a test: it prints
 * figures.
 *
 *   mandel   the Mandelbrot kernel by rows (the demo's sizes), computed
 *            with exchange_mpi_pmap and with a static block per rank
 *            (each rank loops over its block in its own process, then
 *            MPI_Gatherv); the ratio of the two times
 *   chunk    the cost of one chunk on a rank: exchange_mpi_pmap over n
 *            trivial elements in chunks of 50, less the same call with
 *            one chunk per rank, times the ranks (which pay it side by
 *            side), divided by the extra chunks. Each is a request, a
 *            reply, and one exchange_pmap call with its worker's fork.
 *   pmap     one exchange_pmap call of 50 trivial elements on one worker
 *            in this rank: the fork and reaping inside that cost
 *
 * Each figure is the median of -r runs (5).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exchange_mpi.h"

#define W 800
#define H 600
#define ITER 256

static int rank, size;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int row(const void *in, void *out, void *ctx)
{
	unsigned char *px = out;
	int32_t y;

	(void)ctx;
	memcpy(&y, in, sizeof(y));
	for (int x = 0; x < W; x++) {
		double cr = -2.3 + 3.2 * (x + 0.5) / W;
		double ci = 1.2 - 2.4 * (y + 0.5) / H;
		double zr = 0, zi = 0, r2 = 0, i2 = 0;
		int k;

		for (k = 0; k < ITER && r2 + i2 <= 256.0; k++) {
			zi = 2 * zr * zi + ci;
			zr = r2 - i2 + cr;
			r2 = zr * zr;
			i2 = zi * zi;
		}
		px[3 * x] = px[3 * x + 1] = px[3 * x + 2] =
			(unsigned char)(k & 255);
	}
	return 0;
}

static int nothing(const void *in, void *out, void *ctx)
{
	(void)in, (void)ctx;
	*(char *)out = 1;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof(*t), cmp);
	return t[n / 2];
}

/* The static split: rows [r * H / size, (r + 1) * H / size) on rank r,
 * one process per rank, gathered on rank 0. */
static void mandel_static(unsigned char *img, unsigned char *mine)
{
	int lo = rank * H / size, hi = (rank + 1) * H / size;
	int counts[64], displs[64];

	for (int y = lo; y < hi; y++) {
		int32_t yy = y;

		row(&yy, mine + (size_t)(y - lo) * W * 3, NULL);
	}
	for (int r = 0; r < size; r++) {
		counts[r] = ((r + 1) * H / size - r * H / size) * W * 3;
		displs[r] = r * H / size * W * 3;
	}
	MPI_Gatherv(mine, (hi - lo) * W * 3, MPI_BYTE, img, counts, displs,
		    MPI_BYTE, 0, MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
	int reps = 5;
	double t_ex[32], t_st[32], t_many[32], t_one[32], t_pm[32];
	int32_t rows[H];
	unsigned char *img = malloc((size_t)W * H * 3);
	unsigned char *mine = malloc((size_t)W * H * 3);
	size_t n = 20000;
	char *in = calloc(n, 1), *out = calloc(n, 1);
	struct exchange_mpi_options o;
	size_t chunk = 50;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc > 2 && strcmp(argv[1], "-r") == 0)
		reps = atoi(argv[2]);
	if (reps < 1 || reps > 32 || size > 64)
		reps = 5;
	for (int i = 0; i < H; i++)
		rows[i] = i;
	for (int r = 0; r < reps; r++) {
		double t0;

		memset(&o, 0, sizeof(o));
		o.workers = 1;
		MPI_Barrier(MPI_COMM_WORLD);
		t0 = now();
		exchange_mpi_pmap(row, rows, H, sizeof(*rows), img, W * 3, &o,
				  MPI_COMM_WORLD);
		t_ex[r] = now() - t0;
		MPI_Barrier(MPI_COMM_WORLD);
		t0 = now();
		mandel_static(img, mine);
		MPI_Barrier(MPI_COMM_WORLD);
		t_st[r] = now() - t0;

		memset(&o, 0, sizeof(o));
		o.workers = 1;
		o.chunk = chunk;
		MPI_Barrier(MPI_COMM_WORLD);
		t0 = now();
		exchange_mpi_pmap(nothing, in, n, 1, out, 1, &o, MPI_COMM_WORLD);
		t_many[r] = now() - t0;
		o.chunk = (n + (size_t)size - 1) / (size_t)size;
		MPI_Barrier(MPI_COMM_WORLD);
		t0 = now();
		exchange_mpi_pmap(nothing, in, n, 1, out, 1, &o, MPI_COMM_WORLD);
		t_one[r] = now() - t0;
		{
			struct exchange_pmap_options po = { 0 };

			po.workers = 1;
			t0 = now();
			for (int k = 0; k < 20; k++)
				exchange_pmap(nothing, in, 50, 1, out, 1, &po);
			t_pm[r] = (now() - t0) / 20;
		}
		MPI_Barrier(MPI_COMM_WORLD);
	}
	if (rank == 0) {
		double ex = median(t_ex, reps), st = median(t_st, reps);
		double many = median(t_many, reps), one = median(t_one, reps);
		double extra = (double)(n / chunk) - (double)size;

		printf("ranks %d, 1 worker each, median of %d\n", size, reps);
		printf("  mandel %dx%d/%d  exchange_mpi_pmap %.4f s  static "
		       "blocks + MPI_Gatherv %.4f s  ratio %.2f\n", W, H, ITER,
		       ex, st, ex / st);
		printf("  chunk  %zu trivial elements: %zu chunks %.4f s, %d "
		       "chunks %.4f s: %.0f us per chunk on a rank\n", n,
		       n / chunk, many, size, one,
		       (many - one) * size / extra * 1e6);
		printf("  pmap   one exchange_pmap call (50 elements, 1 worker) "
		       "in rank 0: %.0f us\n", median(t_pm, reps) * 1e6);
	}
	free(img);
	free(mine);
	free(in);
	free(out);
	MPI_Finalize();
	return 0;
}
