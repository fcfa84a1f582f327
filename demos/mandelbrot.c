/*
 * mandelbrot - the Mandelbrot set, computed by rows in parallel with
 * exchange_pmap and written as a binary PPM (P6) image, or as a PNG when
 * the file name ends in ".png".
 *
 *   mandelbrot [-s] [-j N] [-o FILE] [--width W] [--height H] [--iter N]
 *              [--progress] [--mpi]
 *
 * Each row is one element of the map: the input is the row number, the
 * output the row's W * 3 bytes of colour. Workers are forked once and
 * receive batches of row numbers; the rows come back in order into one
 * image buffer. --serial computes the same rows with the same function in
 * this process, so the two images are identical byte for byte (the tests
 * compare them). Any PPM viewer opens the file; a browser opens the PNG,
 * which is written uncompressed (stored deflate blocks: no zlib needed).
 *
 * Progress: when standard error is a terminal, a line there counts the
 * rows computed, and is erased at the end (progress.h). exchange_pmap
 * returns only when every row is done, so the workers draw the line
 * themselves: the row function counts each row in memory they share with
 * this process, and the one that finishes a row when the line is due
 * draws it. --progress shows the line elsewhere too (off a terminal,
 * only its last state, written by this process at the end) and leaves
 * the last state.
 *
 * --mpi (the build of this file with EXCHANGE_DEMO_MPI, build/mpi/mandelbrot,
 * run under mpirun or srun): the rows are dealt over the ranks with
 * exchange_mpi_pmap, each rank computing its rows with its own workers;
 * rank 0 writes the image and prints the line the one-node run prints, and
 * the file is the same byte for byte. Rank 0 alone has a progress line,
 * without the workers' counts (they would count only its own rows): it
 * goes from none to all. The build without MPI refuses --mpi as a bad
 * command line (status 2).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exchange.h"
#include "png.h"
#include "progress.h"
#ifdef EXCHANGE_DEMO_MPI
#include "exchange_mpi.h"
#endif

/* What the processes computing rows share: the progress line, and how
 * many rows are done. */
struct shared {
	struct progress line;	/* drawn by whoever finishes a row in time */
	atomic_long rows;	/* rows computed, by all the processes */
};

/* The image and the view of the complex plane. */
struct view {
	int width;		/* pixels across */
	int height;		/* pixels down */
	int iter;		/* most iterations per pixel */
	double x0, x1;		/* real part, left to right */
	double y0, y1;		/* imaginary part, top to bottom */
	struct shared *shared;	/* NULL, or where each row is counted */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-s] [-j N] [-o FILE] [--width W] [--height H] "
		"[--iter N]\n"
		"       [--progress] [--mpi]\n"
		"  --width W, --height H  image size (default 800 x 600, each "
		"from 1 to 20000)\n"
		"  --iter N               iterations per pixel (default 256, "
		"from 1 to 1000000)\n"
		"  -j, --workers N        processes (default: the cores; from "
		"1 to 1024)\n"
		"  -s, --serial           compute in this process only\n"
		"  -o, --output FILE      the image (default mandelbrot.ppm; a "
		"PNG if FILE\n"
		"                         ends in .png)\n"
		"  --progress             show the rows computed, also off a "
		"terminal, and\n"
		"                         leave the last state (on a terminal "
		"the line is\n"
		"                         shown anyway, and erased at the "
		"end)\n"
		"  --mpi                  deal the rows over the ranks of an "
		"MPI job\n"
		"                         (build/mpi/mandelbrot, under mpirun "
		"or srun)\n"
		"  -h, --help             this help\n", cli.prog);
}

enum {
	OPT_WIDTH = 256,	/* long options without a short name */
	OPT_HEIGHT,
	OPT_ITER,
	OPT_PROGRESS,
	OPT_MPI,
};

static const struct option long_options[] = {
	{ "width", required_argument, NULL, OPT_WIDTH },
	{ "height", required_argument, NULL, OPT_HEIGHT },
	{ "iter", required_argument, NULL, OPT_ITER },
	{ "workers", required_argument, NULL, 'j' },
	{ "serial", no_argument, NULL, 's' },
	{ "output", required_argument, NULL, 'o' },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "mpi", no_argument, NULL, OPT_MPI },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* One channel of the palette: a smooth cosine wave over t. */
static unsigned char shade(double t, double phase)
{
	double v = 0.5 + 0.5 * cos(6.283185307179586 * (t + phase));

	return (unsigned char)(v * 255.0 + 0.5);
}

/* Computes row *in (an int32_t) of the image into out (width * 3 bytes).
 * The serial path calls this same function, so both paths run the same
 * machine code and give the same bytes. */
static int row(const void *in, void *out, void *ctx)
{
	const struct view *v = ctx;
	unsigned char *px = out;
	int32_t y;
	double ci;
	int x;

	memcpy(&y, in, sizeof(y));
	ci = v->y0 + (v->y1 - v->y0) * ((double)y + 0.5) / v->height;
	for (x = 0; x < v->width; x++) {
		double cr = v->x0 + (v->x1 - v->x0) * ((double)x + 0.5) /
			    v->width;
		double zr = 0.0, zi = 0.0, r2 = 0.0, i2 = 0.0;
		int k;

		for (k = 0; k < v->iter && r2 + i2 <= 256.0; k++) {
			zi = 2.0 * zr * zi + ci;
			zr = r2 - i2 + cr;
			r2 = zr * zr;
			i2 = zi * zi;
		}
		if (k >= v->iter) {
			px[0] = px[1] = px[2] = 0;
		} else {
			/* Smooth iteration count: no bands between levels. */
			double t = (double)k + 1.0 -
				   log2(log(r2 + i2) / 2.0 / log(2.0));

			t = t / 64.0;
			px[0] = shade(t, 0.00);
			px[1] = shade(t, 0.15);
			px[2] = shade(t, 0.35);
		}
		px += 3;
	}
	if (v->shared) {
		long done = atomic_fetch_add(&v->shared->rows, 1) + 1;

		if (done > v->height)
			done = v->height;	/* a row computed again */
		progress_draw(&v->shared->line, "rows computed: %ld of %d "
			      "(%d%%)", done, v->height,
			      (int)(100 * done / v->height));
	}
	return 0;
}

/* Memory that this process and the workers it forks share, for the
 * progress: a temporary file, mapped (POSIX has had anonymous shared
 * mappings only since 2024), whose name is gone at once. NULL if it cannot
 * be had, or if atomic counts would need locks there. */
static struct shared *shared_new(void)
{
	FILE *f = tmpfile();
	void *p = MAP_FAILED;
	struct shared *sh;

	if (f && ftruncate(fileno(f), sizeof(*sh)) == 0)
		p = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED,
			 fileno(f), 0);
	if (f)
		fclose(f);
	if (p == MAP_FAILED)
		return NULL;
	sh = p;
	if (!atomic_is_lock_free(&sh->rows) ||
	    !atomic_is_lock_free(&sh->line.next_ms)) {
		munmap(p, sizeof(*sh));
		return NULL;
	}
	atomic_init(&sh->rows, 0);
	return sh;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct view v = { 800, 600, 256, -2.3, 0.9, 1.2, -1.2, NULL };
	struct exchange_pmap_options popts = { 0 };
	const char *path = "mandelbrot.ppm";
	unsigned char *image = NULL;
	struct progress local, *line = &local;
	int32_t *rows = NULL;
	int workers = 0, i, status = 1;
	ssize_t done;
	size_t rowlen;
	bool serial = false, show = false, mpi = false;
	FILE *f = NULL;
	double t0;
	int c;
#ifdef EXCHANGE_DEMO_MPI
	int rank = 0;
#endif

	cli_init(argv, ":j:so:h", long_options, usage);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case OPT_WIDTH:
			v.width = (int)cli_int(optarg, 1, 20000);
			break;
		case OPT_HEIGHT:
			v.height = (int)cli_int(optarg, 1, 20000);
			break;
		case OPT_ITER:
			v.iter = (int)cli_int(optarg, 1, 1000000);
			break;
		case 'j':
			workers = (int)cli_int(optarg, 1, 1024);
			break;
		case 's':
			serial = true;
			break;
		case 'o':
			path = cli_text(optarg, "a file name", 0);
			break;
		case OPT_PROGRESS:
			show = true;
			break;
		case OPT_MPI:
			mpi = true;
			break;
		}
	}
	cli_no_operands(argc, argv);
#ifndef EXCHANGE_DEMO_MPI
	if (mpi)
		cli_bad("--mpi: this build has no MPI (make mpi builds "
			"build/mpi/mandelbrot)");
#endif
	if (mpi && serial)
		cli_bad("--mpi and --serial exclude each other");
	progress_init(&local, cli.prog, show);
	/* On a terminal the line is drawn as rows are done, by the
	 * processes that do them. */
	if (local.tty && !mpi && (v.shared = shared_new())) {
		line = &v.shared->line;
		progress_init(line, cli.prog, show);
	}
#ifdef EXCHANGE_DEMO_MPI
	if (mpi) {
		MPI_Init(NULL, NULL);
		MPI_Comm_rank(MPI_COMM_WORLD, &rank);
		if (rank != 0)
			line = NULL;	/* rank 0 draws the line */
	}
#endif

	rowlen = (size_t)v.width * 3;
	image = malloc(rowlen * (size_t)v.height);
	rows = malloc(sizeof(*rows) * (size_t)v.height);
	if (!image || !rows) {
		perror("malloc");
		goto out;
	}
	for (i = 0; i < v.height; i++)
		rows[i] = i;

	t0 = now();
	progress_draw(line, "rows computed: 0 of %d (0%%)", v.height);
	if (serial) {
		for (i = 0; i < v.height; i++)
			row(&rows[i], image + rowlen * (size_t)i, &v);
		done = v.height;
#ifdef EXCHANGE_DEMO_MPI
	} else if (mpi) {
		struct exchange_mpi_options mopts = { 0 };

		/* Every rank has the row numbers; rank 0 gets the rows. */
		mopts.workers = workers;
		mopts.ctx = &v;
		done = exchange_mpi_pmap(row, rows, (size_t)v.height,
					 sizeof(*rows), image, rowlen, &mopts,
					 MPI_COMM_WORLD);
		if (rank != 0) {
			/* Rank 0 says what went wrong, and writes. */
			status = done == v.height ? 0 : 1;
			goto out;
		}
		if (done < 0) {
			int err = errno;

			progress_clear(line);
			fprintf(stderr, "%s: exchange_mpi_pmap: %s (%s)\n",
				cli.prog, strerror(err), exchange_mpi_error());
			goto out;
		}
#endif
	} else {
		popts.workers = workers;
		popts.ctx = &v;
		done = exchange_pmap(row, rows, (size_t)v.height,
				     sizeof(*rows), image, rowlen, &popts);
	}
	if (done < 0) {
		int err = errno;

		progress_clear(line);
		fprintf(stderr, "%s: exchange_pmap: %s\n", cli.prog,
			strerror(err));
		goto out;
	}
	progress_done(line, "rows computed: %ld of %d (%d%%)", (long)done,
		      v.height, (int)(100 * done / v.height));
	if (done != v.height) {
		fprintf(stderr, "%s: %ld of %d rows computed\n", cli.prog,
			(long)done, v.height);
		goto out;
	}

	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		goto out;
	}
	if (png_is_png(path)) {
		if (png_write(f, image, v.width, v.height) < 0) {
			perror("png_write");
			fclose(f);
			goto out;
		}
	} else {
		fprintf(f, "P6\n%d %d\n255\n", v.width, v.height);
		fwrite(image, rowlen, (size_t)v.height, f);
	}
	if (ferror(f)) {
		fclose(f);
		f = NULL;
		fprintf(stderr, "%s: write error\n", path);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		perror(path);
		goto out;
	}
	f = NULL;
	printf("mandelbrot: wrote %s (%d x %d, %d iterations, %s) in %.3f s\n",
	       path, v.width, v.height, v.iter,
	       serial ? "serial" : "rows in parallel", now() - t0);
	status = 0;
out:
	if (v.shared)
		munmap(v.shared, sizeof(*v.shared));
	free(rows);
	free(image);
#ifdef EXCHANGE_DEMO_MPI
	if (mpi)
		MPI_Finalize();
#endif
	return status;
}
