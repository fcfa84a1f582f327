/*
 * mandelbrot - the Mandelbrot set, computed by rows in parallel with
 * exchange_pmap and written as a binary PPM (P6) image, or as a PNG when
 * the file name ends in ".png".
 *
 *   mandelbrot [-s] [-j N] [-o FILE] [--width W] [--height H] [--iter N]
 *
 * Each row is one element of the map: the input is the row number, the
 * output the row's W * 3 bytes of colour. Workers are forked once and
 * receive batches of row numbers; the rows come back in order into one
 * image buffer. --serial computes the same rows with the same function in
 * this process, so the two images are identical byte for byte (the tests
 * compare them). Any PPM viewer opens the file; a browser opens the PNG,
 * which is written uncompressed (stored deflate blocks: no zlib needed).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "exchange.h"
#include "png.h"

/* The image and the view of the complex plane. */
struct view {
	int width;		/* pixels across */
	int height;		/* pixels down */
	int iter;		/* most iterations per pixel */
	double x0, x1;		/* real part, left to right */
	double y0, y1;		/* imaginary part, top to bottom */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-s] [-j N] [-o FILE] [--width W] [--height H] "
		"[--iter N]\n"
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
		"  -h, --help             this help\n", cli.prog);
}

enum {
	OPT_WIDTH = 256,	/* long options without a short name */
	OPT_HEIGHT,
	OPT_ITER,
};

static const struct option long_options[] = {
	{ "width", required_argument, NULL, OPT_WIDTH },
	{ "height", required_argument, NULL, OPT_HEIGHT },
	{ "iter", required_argument, NULL, OPT_ITER },
	{ "workers", required_argument, NULL, 'j' },
	{ "serial", no_argument, NULL, 's' },
	{ "output", required_argument, NULL, 'o' },
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
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct view v = { 800, 600, 256, -2.3, 0.9, 1.2, -1.2 };
	struct exchange_pmap_options popts = { 0 };
	const char *path = "mandelbrot.ppm";
	unsigned char *image = NULL;
	int32_t *rows = NULL;
	int workers = 0, i, status = 1;
	size_t rowlen;
	bool serial = false;
	FILE *f = NULL;
	double t0;
	int c;

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
		}
	}
	cli_no_operands(argc, argv);

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
	if (serial) {
		for (i = 0; i < v.height; i++)
			row(&rows[i], image + rowlen * (size_t)i, &v);
	} else {
		ssize_t done;

		popts.workers = workers;
		popts.ctx = &v;
		done = exchange_pmap(row, rows, (size_t)v.height,
				     sizeof(*rows), image, rowlen, &popts);
		if (done != v.height) {
			if (done < 0)
				perror("exchange_pmap");
			else
				fprintf(stderr, "%s: %ld of %d rows computed\n",
					cli.prog, (long)done, v.height);
			goto out;
		}
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
	free(rows);
	free(image);
	return status;
}
