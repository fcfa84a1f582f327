/*
 * ppygmy - the PyGmy ray tracer of pprocess's examples (examples/PyGmy:
 * scene.py with ppygmy.py, ppygmy_pmap.py, ppygmy_queue.py and
 * ppygmy_reuse.py), in C: the same scene (ten small balls in a ring round
 * a big one, over a plane, under a parallel and a point light, with
 * reflections and a rough ambient occlusion), rendered a row per task and
 * written as a PNG.
 *
 *   ppygmy [--exchange | --pmap | --queue | --reuse | --serial]
 *          [--width W] [--height H] [-o FILE] [-q] [LIMIT]
 *
 * The ways to render, one per pprocess example:
 *
 *   --exchange  ppygmy.py (the default): the row function is managed by an
 *               exchange (exchange_manage of a channel_fn that sends
 *               (row, colours) on its channel); store_data draws each row
 *               as it arrives (pprocess's PyGmyExchange subclass).
 *   --pmap      ppygmy_pmap.py: exchange_pmap over the row numbers; the
 *               rows come back in order.
 *   --queue     ppygmy_queue.py: the row function as a plain function
 *               (MakeParallel) managed by a Queue, read in arrival order.
 *               (The Python example manages the plain function without
 *               MakeParallel, which cannot run as written.)
 *   --reuse     ppygmy_reuse.py: ppygmy.py's exchange with reuse on
 *               (MakeReusable): LIMIT workers take row after row.
 *   --serial    the same row function called in this process, as a
 *               reference.
 *
 * LIMIT is the number of processes at once (default 1, as scene.py's; also
 * --limit). The scene is 300 x 200 by default, as scene.py's. The image
 * goes to test.png (scene.py writes test.tif). Like pprocess, the program
 * prints "Number of processes: LIMIT" and then a progress figure after
 * each row, each one written over the last with backspaces ("%3d%% %3d":
 * percent done, the row just drawn); a newline ends it. --quiet prints
 * neither.
 *
 * Identical images. The occlusion shader shoots random rays. pprocess uses
 * Python's random module, so its images differ from run to run (and each
 * forked row starts from a copy of its parent's generator). Here every
 * pixel draws from its own generator, seeded by the pixel's position, and
 * every way of rendering calls the same row function: the five images are
 * the same byte for byte (the tests compare them).
 *
 * Colours are drawn as PIL's ImageDraw draws the Python example's floats:
 * each channel times 255, cut to an integer, and clipped to 0..255.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exchange.h"
#include "png.h"

/* ------------------------------------------------------------------------ */
/* Vectors and lines (pprocess's vec and line classes)                      */
/* ------------------------------------------------------------------------ */

struct vec {
	double x, y, z;		/* the three components */
};

static struct vec vec(double x, double y, double z)
{
	struct vec v = { x, y, z };

	return v;
}

static struct vec vadd(struct vec a, struct vec b)
{
	return vec(a.x + b.x, a.y + b.y, a.z + b.z);
}

static struct vec vsub(struct vec a, struct vec b)
{
	return vec(a.x - b.x, a.y - b.y, a.z - b.z);
}

static struct vec vmul(struct vec a, double k)
{
	return vec(a.x * k, a.y * k, a.z * k);
}

static struct vec vdiv(struct vec a, double k)
{
	return vec(a.x / k, a.y / k, a.z / k);
}

static double vdot(struct vec a, struct vec b)
{
	return (a.x * b.x) + (a.y * b.y) + (a.z * b.z);
}

static double sq(double a)
{
	return a * a;
}

/* The length of a, computed as pprocess does: the distance from 0. */
static double vmag(struct vec a)
{
	return sqrt((a.x - 0.0) * (a.x - 0.0) + (a.y - 0.0) * (a.y - 0.0) +
		    (a.z - 0.0) * (a.z - 0.0));
}

/* Scales *a to length 1, unless it is 0. */
static void vnorm(struct vec *a)
{
	double mag = vmag(*a);

	if (mag != 0) {
		a->x = a->x / mag;
		a->y = a->y / mag;
		a->z = a->z / mag;
	}
}

/* a reflected about normal. */
static struct vec vreflect(struct vec a, struct vec normal)
{
	double vdn = vdot(a, normal) * 2;

	return vsub(a, vmul(normal, vdn));
}

/* A segment from start to end: rays, and the tests for shadow. */
struct line {
	struct vec start;	/* where it begins */
	struct vec end;		/* where it ends */
};

static struct line line(struct vec start, struct vec end)
{
	struct line l = { start, end };

	return l;
}

static struct vec line_vec(struct line l)
{
	return vsub(l.end, l.start);
}

/* ------------------------------------------------------------------------ */
/* The scene                                                                */
/* ------------------------------------------------------------------------ */

enum shape { SPHERE, PLANE };
enum shading { EVERYTHING, SPOT };	/* scene.py's two shaders */
enum lighting { PARALLEL, POINT };

struct object {
	int shape;		/* enum shape */
	int shader;		/* enum shading */
	struct vec pos;		/* sphere: centre; plane: its normal */
	double size;		/* sphere: radius; plane: distance */
};

struct light {
	int kind;		/* enum lighting */
	struct vec where;	/* parallel: direction (normalised);
				   point: position */
	struct vec col;		/* colour */
};

#define MAX_OBJECTS 16
#define MAX_LIGHTS 4

struct world {
	int width, height;	/* image size in pixels */
	double backplane;	/* how far rays reach */
	double imageplane;	/* the camera's image plane */
	double aspect;		/* width / height */
	struct object objects[MAX_OBJECTS];	/* in scene.py's order */
	int nobjects;		/* objects used */
	struct light lights[MAX_LIGHTS];	/* in scene.py's order */
	int nlights;		/* lights used */
};

/* The scene, global so that every forked process sees it as its parent
 * built it, as pprocess's children see the world object. */
static struct world w;

/* What a shader knows about the point it shades (pprocess's shaderinfo
 * dictionary). Copied where pprocess copies the dictionary. */
struct shaderinfo {
	struct line ray;	/* the ray that reached the point */
	int depth;		/* reflections still allowed */
	const struct object *thisobj;	/* the object hit */
	struct vec position;	/* where */
	struct vec normal;	/* its normal there */
	uint64_t *rng;		/* the pixel's random number generator */
};

/* A random integer in [lo, hi) (Python's random.randrange) from the
 * pixel's generator (splitmix64). */
static int randrange(uint64_t *state, int lo, int hi)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	z ^= z >> 31;
	return lo + (int)(z % (uint64_t)(hi - lo));
}

/* Intersects object o with segment l. Returns 0 for none, else 1 and the
 * point and normal (pprocess's "one" and "two"). */
static int intersect(const struct object *o, struct line l, struct vec *pos,
		     struct vec *normal)
{
	struct vec lvec = line_vec(l);

	if (o->shape == PLANE) {
		double vd = vdot(o->pos, lvec), v0, t;

		if (vd == 0)
			return 0;
		v0 = -(vdot(o->pos, l.start) + o->size);
		t = v0 / vd;
		if (t < 0 || t > 1)
			return 0;
		*pos = vadd(l.start, vmul(lvec, t));
		*normal = o->pos;
		return 1;
	} else {
		double a = sq(lvec.x) + sq(lvec.y) + sq(lvec.z);
		double b = 2 * (lvec.x * (l.start.x - o->pos.x) +
				lvec.y * (l.start.y - o->pos.y) +
				lvec.z * (l.start.z - o->pos.z));
		double c = (sq(o->pos.x) + sq(o->pos.y) + sq(o->pos.z)) +
			   (sq(l.start.x) + sq(l.start.y) + sq(l.start.z)) -
			   2 * (o->pos.x * l.start.x + o->pos.y * l.start.y +
				o->pos.z * l.start.z) - sq(o->size);
		double i = b * b - 4 * a * c, t;

		if (!(i > 0))
			return 0;
		/* pprocess takes the nearer root only. */
		t = (-b - sqrt(b * b - 4 * a * c)) / (2 * a);
		if (!(t > 0 && t < 1))
			return 0;
		*pos = vadd(l.start, vmul(lvec, t));
		*normal = vsub(*pos, o->pos);
		vnorm(normal);
		return 1;
	}
}

/* True when an object other than obj crosses l. */
static int blocked(const struct object *obj, struct line l)
{
	struct vec p, n;
	int k;

	for (k = 0; k < w.nobjects; k++)
		if (&w.objects[k] != obj && intersect(&w.objects[k], l, &p, &n))
			return 1;
	return 0;
}

/* The light's contribution at the shaded point (0 in shadow). */
static struct vec light(const struct light *lt, const struct shaderinfo *si)
{
	struct vec direction;

	if (lt->kind == PARALLEL) {
		/* A longish line towards the light. */
		struct line l = line(si->position,
				     vadd(si->position, vmul(lt->where, 1000)));

		if (blocked(si->thisobj, l))
			return vec(0, 0, 0);
		return vmul(lt->col, vdot(lt->where, si->normal));
	}
	if (blocked(si->thisobj, line(si->position, lt->where)))
		return vec(0, 0, 0);
	direction = vsub(si->position, lt->where);
	vnorm(&direction);
	direction = vmul(direction, -1.0);
	return vmul(lt->col, vdot(direction, si->normal));
}

static struct vec shade(const struct object *o, const struct shaderinfo *si);

/* The base shader: the sum of the lights. */
static struct vec shade_lights(const struct shaderinfo *si)
{
	struct vec col = vec(0, 0, 0);
	int k;

	for (k = 0; k < w.nlights; k++)
		col = vadd(col, light(&w.lights[k], si));
	return col;
}

/* What the point reflects: every other object the reflected ray meets,
 * shaded, summed. */
static struct vec getreflected(const struct shaderinfo *si)
{
	struct vec col = vec(0, 0, 0);
	struct shaderinfo next;
	struct line reflected;
	struct vec ray, p, n;
	int k;

	if (si->depth <= 0)
		return col;
	ray = vreflect(line_vec(si->ray), si->normal);
	reflected = line(si->position, vadd(si->position, ray));
	next = *si;
	next.ray = reflected;
	next.depth = si->depth - 1;
	for (k = 0; k < w.nobjects; k++) {
		const struct object *ob = &w.objects[k];

		if (ob == si->thisobj || !intersect(ob, reflected, &p, &n))
			continue;
		next.thisobj = ob;
		next.position = p;
		next.normal = n;
		col = vadd(col, shade(ob, &next));
	}
	return col;
}

/* 1 less the share of samples random short rays from the point that
 * meet another object. */
static double doocclusion(int samples, const struct shaderinfo *si)
{
	double oc = 0.0;
	int k;

	for (k = 0; k < samples; k++) {
		int x = randrange(si->rng, -100, 100);
		int y = randrange(si->rng, -100, 100);
		int z = randrange(si->rng, -100, 100);
		struct vec ray = vec(x, y, z);

		vnorm(&ray);
		ray = vmul(ray, 2.5);
		if (blocked(si->thisobj, line(si->position,
					      vadd(si->position, ray))))
			oc = oc + 1;
	}
	oc = oc / (double)samples;
	return 1 - oc;
}

/* scene.py's everythingshader and spotshader. */
static struct vec shade(const struct object *o, const struct shaderinfo *si)
{
	struct vec col = shade_lights(si), ref;

	if (o->shader == EVERYTHING) {
		ref = getreflected(si);
		col = vadd(vmul(col, 0.5), vmul(ref, 0.5));
		return vmul(col, doocclusion(10, si));
	}
	if (sin(si->position.x) + cos(si->position.z) > 0.5)
		col = vdiv(col, 2);
	ref = getreflected(si);
	return vadd(vmul(ref, 0.5), vmul(vmul(col, 0.5),
					 doocclusion(10, si)));
}

/* scene.py's scene, at the given size. */
static void scene(int width, int height)
{
	double numballs = 10.0, rad = 12.0;
	double radperball = (2 * 3.141) / numballs;
	struct vec offset = vec(0, -5, 55);
	int i;

	w.width = width;
	w.height = height;
	w.backplane = 2000.0;
	w.imageplane = 5.0;
	w.aspect = w.width / (double)w.height;
	for (i = 0; i < (int)numballs; i++) {
		double x = sin(0.3 + radperball * (double)i) * rad;
		double y = cos(0.3 + radperball * (double)i) * rad;
		struct object o = { SPHERE, EVERYTHING,
				    vadd(vec(x, 0, y), offset), 2 };

		w.objects[w.nobjects++] = o;
	}
	w.objects[w.nobjects++] = (struct object){ SPHERE, EVERYTHING,
		vadd(vec(3, 3, 0), offset), 5.0 };
	w.objects[w.nobjects++] = (struct object){ PLANE, SPOT,
		vec(0, 1, 0), 7.0 };
	w.lights[w.nlights] = (struct light){ PARALLEL, vec(1, 1, -1),
		vec(0.3, 0.9, 0.1) };
	vnorm(&w.lights[w.nlights++].where);
	w.lights[w.nlights++] = (struct light){ POINT, vec(5, 100, -5),
		vec(0.5, 0.5, 1) };
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                     */
/* ------------------------------------------------------------------------ */

/* What a row task sends back: its number, then width colours. */
struct row_head {
	int32_t sy;		/* the row */
};

/* The bytes of one row's message. */
static size_t row_size(void)
{
	return sizeof(struct row_head) +
	       (size_t)w.width * sizeof(struct vec);
}

/* Renders row sy into cols (width colours): pprocess's render_row. */
static void render_row(int32_t sy, struct vec *cols)
{
	int sx;

	for (sx = 0; sx < w.width; sx++) {
		double x = 2 * (0.5 - sx / (double)w.width) * w.aspect;
		double y = 2 * (0.5 - sy / (double)w.height);
		struct line ray = line(vec(0, 0, 0), vec(x, y, w.imageplane));
		struct vec col = vec(0, 0, 0), position, normal;
		double depth = w.backplane;
		struct shaderinfo si;
		uint64_t rng;
		int k;

		ray.end = vmul(ray.end, w.backplane);
		/* The pixel's own random numbers, whoever renders it. */
		rng = ((uint64_t)(uint32_t)sy << 32 | (uint32_t)sx) ^
		      0x5079676d79ULL;
		memset(&si, 0, sizeof(si));
		si.ray = ray;
		si.depth = 2;
		si.rng = &rng;
		for (k = 0; k < w.nobjects; k++) {
			const struct object *obj = &w.objects[k];

			if (!intersect(obj, ray, &position, &normal))
				continue;
			if (position.z < depth && position.z > 0) {
				depth = position.z;
				si.thisobj = obj;
				si.position = position;
				si.normal = normal;
				col = shade(obj, &si);
			}
		}
		cols[sx] = col;
	}
}

/* One channel of a colour as ImageDraw draws a float: times 255, cut to
 * an integer, clipped to 0..255. */
static unsigned char channel_byte(double v)
{
	v = v * 255;
	if (!(v > 0))
		return 0;
	if (v >= 255)
		return 255;
	return (unsigned char)v;
}

/* What the drawing side keeps: the image and the progress. */
struct canvas {
	unsigned char *pixels;	/* height rows of width * 3 bytes */
	long count;		/* pixels drawn */
	int rows;		/* rows drawn */
	bool quiet;		/* print no progress */
};

/* Draws row sy of colours cols, and shows the progress as pprocess does:
 * nine backspaces, the percentage and the row. */
static void draw_row(struct canvas *cv, int32_t sy, const struct vec *cols)
{
	unsigned char *px = cv->pixels + (size_t)sy * (size_t)w.width * 3;
	long total = (long)w.width * w.height;
	int sx;

	for (sx = 0; sx < w.width; sx++) {
		px[3 * sx] = channel_byte(cols[sx].x);
		px[3 * sx + 1] = channel_byte(cols[sx].y);
		px[3 * sx + 2] = channel_byte(cols[sx].z);
		cv->count = cv->count + 1;
	}
	cv->rows++;
	if (!cv->quiet) {
		int percent = (int)((double)cv->count / (double)total * 100);

		printf("\b\b\b\b\b\b\b\b\b%3d%% %3d", percent, (int)sy);
		fflush(stdout);
	}
}

/* Draws a row message (struct row_head, then the colours). 0, or -1 if
 * it is not one. */
static int draw_message(struct canvas *cv, const void *data, size_t len)
{
	struct row_head h;
	struct vec *cols;

	if (len != row_size())
		return -1;
	memcpy(&h, data, sizeof(h));
	if (h.sy < 0 || h.sy >= w.height)
		return -1;
	cols = malloc((size_t)w.width * sizeof(*cols));
	if (!cols)
		return -1;
	memcpy(cols, (const char *)data + sizeof(h),
	       (size_t)w.width * sizeof(*cols));
	draw_row(cv, h.sy, cols);
	free(cols);
	return 0;
}

/* A row as one message: the head, then the colours. NULL, or a buffer of
 * row_size() bytes from malloc. */
static void *row_message(const void *arg, size_t len)
{
	size_t colsize = (size_t)w.width * sizeof(struct vec);
	struct vec *cols = NULL;
	struct row_head h;
	char *msg;

	if (len != sizeof(h.sy)) {
		errno = EINVAL;
		return NULL;
	}
	msg = malloc(row_size());
	cols = malloc(colsize);
	if (!msg || !cols) {
		free(msg);
		free(cols);
		return NULL;
	}
	memcpy(&h.sy, arg, sizeof(h.sy));
	render_row(h.sy, cols);
	/* The colours follow the head unaligned: copied, never cast. */
	memcpy(msg, &h, sizeof(h));
	memcpy(msg + sizeof(h), cols, colsize);
	free(cols);
	return msg;
}

/* ppygmy.py's render_row: runs in a child (or a reuse worker) and sends
 * (sy, row) on its channel. */
static void row_fn(struct channel *ch, const void *arg, size_t len,
		   void *ctx)
{
	void *msg = row_message(arg, len);

	(void)ctx;
	if (!msg) {
		channel_send_error(ch, strerror(errno), -1);
		return;
	}
	channel_send(ch, msg, row_size(), -1);
	free(msg);
}

/* ppygmy_queue.py's render_row as a plain function (MakeParallel): its
 * return value is the message. */
static void *row_plain(const void *arg, size_t len, size_t *result_len,
		       void *ctx)
{
	void *msg = row_message(arg, len);

	(void)ctx;
	if (msg)
		*result_len = row_size();
	return msg;
}

/* ppygmy_pmap.py's element function: row *in into out (width colours). */
static int row_map(const void *in, void *out, void *ctx)
{
	int32_t sy;

	(void)ctx;
	memcpy(&sy, in, sizeof(sy));
	render_row(sy, out);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The ways to render                                                       */
/* ------------------------------------------------------------------------ */

/* pprocess's PyGmyExchange.store_data: draws the row that arrived. */
static int store_data(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int ok;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return -1;
	ok = m.kind == CHANNEL_DATA && draw_message(udata, m.data, m.len) == 0;
	if (!ok)
		fprintf(stderr, "ppygmy: a row failed: %s\n",
			m.kind == CHANNEL_DATA ? "bad message" :
			(const char *)m.data);
	channel_msg_free(&m);
	if (!ok) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* ppygmy.py (reuse false) and ppygmy_reuse.py (reuse true). */
static int render_exchange(struct canvas *cv, int limit, bool reuse)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *rr;
	struct exchange *ex;
	int32_t y;
	int st = -1;

	opts.limit = limit;
	opts.reuse = reuse;
	opts.store_data = store_data;
	opts.udata = cv;
	ex = exchange_new(&opts);
	if (!ex)
		return -1;
	rr = exchange_manage(ex, row_fn, NULL, NULL);
	if (!rr)
		goto out;
	for (y = 0; y < w.height; y++)
		if (exchange_call(rr, &y, sizeof(y)) < 0)
			goto out;
	st = exchange_finish(ex);
out:
	exchange_free(ex);
	return st;
}

/* ppygmy_queue.py. */
static int render_queue(struct canvas *cv, int limit)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *rr;
	struct channel_msg m;
	struct exchange *q;
	int32_t y;
	int r, st = -1;

	opts.limit = limit;
	q = exchange_new_queue(&opts);
	if (!q)
		return -1;
	rr = exchange_manage(q, NULL, row_plain, NULL);
	if (!rr)
		goto out;
	for (y = 0; y < w.height; y++)
		if (exchange_call(rr, &y, sizeof(y)) < 0)
			goto out;
	while ((r = exchange_queue_next(q, &m, -1)) == 1) {
		int ok = m.kind == CHANNEL_DATA &&
			 draw_message(cv, m.data, m.len) == 0;

		if (!ok)
			fprintf(stderr, "ppygmy: a row failed: %s\n",
				m.kind == CHANNEL_DATA ? "bad message" :
				(const char *)m.data);
		channel_msg_free(&m);
		if (!ok) {
			errno = EPROTO;
			goto out;
		}
	}
	st = r;
out:
	exchange_free(q);
	return st;
}

/* ppygmy_pmap.py: the rows in order, drawn once the map has returned. */
static int render_pmap(struct canvas *cv, int limit)
{
	struct exchange_pmap_options popts = { 0 };
	size_t rowcols = (size_t)w.width;
	int32_t *rows = malloc((size_t)w.height * sizeof(*rows));
	struct vec *cols = malloc((size_t)w.height * rowcols * sizeof(*cols));
	ssize_t done;
	int32_t y;
	int st = -1;

	if (!rows || !cols)
		goto out;
	for (y = 0; y < w.height; y++)
		rows[y] = y;
	popts.workers = limit;
	/* A row per message, as pprocess hands out one call at a time. */
	popts.batch = 1;
	done = exchange_pmap(row_map, rows, (size_t)w.height, sizeof(*rows),
			     cols, rowcols * sizeof(*cols), &popts);
	if (done == w.height) {
		for (y = 0; y < w.height; y++)
			draw_row(cv, y, cols + (size_t)y * rowcols);
		st = 0;
	} else if (done >= 0) {
		fprintf(stderr, "ppygmy: %ld of %d rows rendered\n",
			(long)done, w.height);
		errno = EPROTO;
	}
out:
	free(cols);
	free(rows);
	return st;
}

/* The reference: every row in this process. */
static int render_serial(struct canvas *cv)
{
	struct vec *cols = malloc((size_t)w.width * sizeof(*cols));
	int32_t y;

	if (!cols)
		return -1;
	for (y = 0; y < w.height; y++) {
		render_row(y, cols);
		draw_row(cv, y, cols);
	}
	free(cols);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

enum mode { EXCHANGE, PMAP, QUEUE, REUSE, SERIAL };

enum {
	OPT_WIDTH = 256,	/* long options without a short name */
	OPT_HEIGHT,
	OPT_MODE,		/* OPT_MODE + enum mode: the ways to render */
};

static const struct option long_options[] = {
	{ "exchange", no_argument, NULL, OPT_MODE + EXCHANGE },
	{ "pmap", no_argument, NULL, OPT_MODE + PMAP },
	{ "queue", no_argument, NULL, OPT_MODE + QUEUE },
	{ "reuse", no_argument, NULL, OPT_MODE + REUSE },
	{ "serial", no_argument, NULL, OPT_MODE + SERIAL },
	{ "width", required_argument, NULL, OPT_WIDTH },
	{ "height", required_argument, NULL, OPT_HEIGHT },
	{ "limit", required_argument, NULL, 'l' },
	{ "output", required_argument, NULL, 'o' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--exchange | --pmap | --queue | --reuse | "
		"--serial]\n"
		"       [--width W] [--height H] [-o FILE] [-q] [LIMIT]\n"
		"  --exchange  an exchange with store_data (ppygmy.py; "
		"default)\n"
		"  --pmap      exchange_pmap (ppygmy_pmap.py)\n"
		"  --queue     a Queue of plain functions (ppygmy_queue.py)\n"
		"  --reuse     the exchange with reuse (ppygmy_reuse.py)\n"
		"  --serial    every row in this process\n"
		"  --width W, --height H  image size (default 300 x 200, each "
		"from 1 to 20000)\n"
		"  -o, --output FILE      the PNG written (default test.png)\n"
		"  -q, --quiet            print no progress\n"
		"  LIMIT, -l, --limit LIMIT  processes at once (default 1, "
		"from 1 to 10000)\n"
		"  -h, --help             this help\n", cli.prog);
}

int main(int argc, char **argv)
{
	struct canvas cv = { 0 };
	const char *path = "test.png";
	int width = 300, height = 200, limit = 1, mode = EXCHANGE;
	int c, st;
	FILE *f;

	cli_init(argv, ":l:o:qh", long_options, usage);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case OPT_WIDTH:
			width = (int)cli_int(optarg, 1, 20000);
			break;
		case OPT_HEIGHT:
			height = (int)cli_int(optarg, 1, 20000);
			break;
		case 'l':
			limit = (int)cli_int(optarg, 1, 10000);
			break;
		case 'o':
			path = cli_text(optarg, "a file name", 0);
			break;
		case 'q':
			cv.quiet = true;
			break;
		default:
			assert(c >= OPT_MODE && c <= OPT_MODE + SERIAL);
			mode = c - OPT_MODE;
		}
	}
	if (optind < argc) {
		/* LIMIT, as scene.py's first argument. */
		cli_operand("LIMIT");
		limit = (int)cli_int(argv[optind++], 1, 10000);
	}
	cli_no_operands(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	scene(width, height);
	cv.pixels = calloc((size_t)width * (size_t)height, 3);
	if (!cv.pixels) {
		perror("calloc");
		return 1;
	}

	if (!cv.quiet) {
		printf("Number of processes: %d\n", limit);
		fflush(stdout);
	}
	switch (mode) {
	case PMAP:
		st = render_pmap(&cv, limit);
		break;
	case QUEUE:
		st = render_queue(&cv, limit);
		break;
	case REUSE:
		st = render_exchange(&cv, limit, true);
		break;
	case SERIAL:
		st = render_serial(&cv);
		break;
	default:
		st = render_exchange(&cv, limit, false);
		break;
	}
	if (!cv.quiet)
		putchar('\n');
	if (st < 0 || cv.rows != height) {
		if (st < 0)
			perror("ppygmy");
		fprintf(stderr, "ppygmy: %d of %d rows drawn\n", cv.rows,
			height);
		free(cv.pixels);
		return 1;
	}

	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		free(cv.pixels);
		return 1;
	}
	st = png_write(f, cv.pixels, width, height);
	if (ferror(f))
		st = -1;
	if (fclose(f) != 0 || st < 0) {
		perror(path);
		free(cv.pixels);
		return 1;
	}
	free(cv.pixels);
	return 0;
}
