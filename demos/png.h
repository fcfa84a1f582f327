/*
 * png.h - an 8-bit RGB PNG writer for the image demos (mandelbrot,
 * ppygmy), with no dependency: the pixel rows go into a zlib stream of
 * stored (uncompressed) deflate blocks, checked with Adler-32, in chunks
 * checked with CRC-32. Any browser or image viewer opens the file.
 *
 * The functions are static inline, as in demo.h: each demo is one program
 * that includes this header.
 */
#ifndef DEMOS_PNG_H
#define DEMOS_PNG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC-32 (ISO 3309, as PNG uses it) of n bytes, continuing from crc. */
static inline uint32_t png_crc32(uint32_t crc, const unsigned char *p,
				 size_t n)
{
	static uint32_t table[256];
	size_t i;

	if (!table[1]) {
		uint32_t c, k;

		for (i = 0; i < 256; i++) {
			c = (uint32_t)i;
			for (k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	}
	crc ^= 0xffffffffu;
	for (i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

/* Stores v big-endian in p[0..3]. */
static inline void png_put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* Writes one PNG chunk: length, type, data, CRC of type and data. */
static inline void png_chunk(FILE *f, const char *type,
			     const unsigned char *data, size_t len)
{
	unsigned char b[4];
	uint32_t crc;

	png_put32(b, (uint32_t)len);
	fwrite(b, 1, 4, f);
	fwrite(type, 1, 4, f);
	if (len)
		fwrite(data, 1, len, f);
	crc = png_crc32(0, (const unsigned char *)type, 4);
	crc = png_crc32(crc, data, len);
	png_put32(b, crc);
	fwrite(b, 1, 4, f);
}

/* Writes image (height rows of width * 3 bytes, R G B) as an 8-bit RGB
 * PNG. The pixel rows, each after a filter byte of 0, go into a zlib
 * stream of stored deflate blocks of at most 65535 bytes. 0, or -1 (out of
 * memory); write errors are left in ferror(f). */
static inline int png_write(FILE *f, const unsigned char *image, int width,
			    int height)
{
	static const unsigned char sig[8] = { 137, 'P', 'N', 'G', 13, 10,
					      26, 10 };
	size_t rowlen = (size_t)width * 3, raw = (rowlen + 1) * (size_t)height;
	size_t blocks = raw / 65535 + 1, zlen = 2 + blocks * 5 + raw + 4;
	unsigned char ihdr[13], *z, *out;
	uint32_t a = 1, b = 0;
	size_t done = 0, y = 0, x = 0;

	z = malloc(zlen);
	if (!z)
		return -1;
	out = z;
	*out++ = 0x78;	/* deflate, 32 KiB window */
	*out++ = 0x01;	/* no dictionary, fastest; header check bits */
	while (done < raw) {
		size_t n = raw - done < 65535 ? raw - done : 65535, i;

		*out++ = done + n == raw ? 1 : 0;	/* BFINAL, stored */
		*out++ = (unsigned char)(n & 0xff);
		*out++ = (unsigned char)(n >> 8);
		*out++ = (unsigned char)(~n & 0xff);
		*out++ = (unsigned char)((~n >> 8) & 0xff);
		for (i = 0; i < n; i++) {
			/* The raw stream: a 0 filter byte, then the row. */
			unsigned char c = x == 0 ? 0 :
					  image[y * rowlen + x - 1];

			if (++x == rowlen + 1) {
				x = 0;
				y++;
			}
			*out++ = c;
			a = (a + c) % 65521;
			b = (b + a) % 65521;
		}
		done += n;
	}
	png_put32(out, (b << 16) | a);	/* Adler-32 of the raw stream */
	out += 4;

	png_put32(ihdr, (uint32_t)width);
	png_put32(ihdr + 4, (uint32_t)height);
	ihdr[8] = 8;	/* bits per sample */
	ihdr[9] = 2;	/* RGB */
	ihdr[10] = ihdr[11] = ihdr[12] = 0;	/* deflate, no filter, no
						   interlace */
	fwrite(sig, 1, sizeof(sig), f);
	png_chunk(f, "IHDR", ihdr, sizeof(ihdr));
	png_chunk(f, "IDAT", z, (size_t)(out - z));
	png_chunk(f, "IEND", NULL, 0);
	free(z);
	return 0;
}

/* True when path ends in ".png" (any case). */
static inline bool png_is_png(const char *path)
{
	size_t n = strlen(path);

	return n >= 4 && path[n - 4] == '.' &&
	       (path[n - 3] | 0x20) == 'p' && (path[n - 2] | 0x20) == 'n' &&
	       (path[n - 1] | 0x20) == 'g';
}

#endif /* DEMOS_PNG_H */
