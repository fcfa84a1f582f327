/*
 * lib.c - the library side of each pair, doing through libexchange what the
 * matching trial in ref.c does with bare system calls.
 *
 * The exchange and manage layers may be missing from the library this is
 * linked with (they are built after the channel layer), so their functions
 * are referenced weakly and the binary is linked with the whole archive: a
 * function the library defines is called, one it lacks reads as NULL and the
 * trial answers "na" instead of the bench failing to link.
 *
 * Children that must not start before the clock does wait for a byte on a
 * "go" pipe the trial made before forking them (a child keeps the caller's
 * descriptors that are not channels).
 */
#include "bench.h"

#include "exchange.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#pragma weak exchange_new
#pragma weak exchange_new_queue
#pragma weak exchange_free
#pragma weak exchange_add
#pragma weak exchange_start
#pragma weak exchange_store
#pragma weak exchange_finish
#pragma weak exchange_queue_next
#pragma weak exchange_pmap

/* Fails the trial unless the library defines fn. */
#define NEED(fn) do { \
	if (!(fn)) \
		bench_na(#fn " is not in the library yet"); \
} while (0)

/* What the collecting callback has seen. */
struct tally {
	uint64_t sum;		/* of the 8-byte results */
	long count;		/* data messages */
	long failed;		/* error and failure outcomes */
	char why[160];		/* the first failure's text */
};

static void note_failure(struct tally *t, const struct channel_msg *msg)
{
	if (!t->failed++)
		snprintf(t->why, sizeof t->why, "cause %d code %d: %s",
			 msg->cause, msg->code,
			 msg->data ? (const char *)msg->data : "");
}

/* store_data: adds up the 8-byte results. */
static int store_sum(struct exchange *ex, struct channel *ch, void *udata)
{
	struct tally *t = udata;
	struct channel_msg msg;
	uint64_t v;
	int r;

	(void)ex;
	r = channel_recv(ch, &msg, 0);
	if (r < 0)
		return errno == ETIMEDOUT ? 0 : -1;
	if (r == 0)
		return 0;
	if (msg.kind == CHANNEL_DATA && msg.len == sizeof v) {
		memcpy(&v, msg.data, sizeof v);
		t->sum += v;
		t->count++;
	} else {
		note_failure(t, &msg);
	}
	channel_msg_free(&msg);
	return 0;
}

/* The trivial task: sends back arg * arg as 8 bytes. */
static void task_square(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	uint64_t i;

	(void)ctx;
	if (len != sizeof i)
		return;
	memcpy(&i, arg, sizeof i);
	i *= i;
	channel_send(ch, &i, sizeof i, -1);
}

/* The grown heap, kept until the trial ends. */
static void *heap_kept;

/* Touches mib MiB of fresh heap, as a program that has grown does: every
 * page is written, so a fork copies its page table entries. */
static void grow_heap(long mib)
{
	size_t size = (size_t)mib << 20;
	unsigned char *p;
	size_t k;

	if (mib <= 0)
		return;
	p = malloc(size);
	if (!p)
		bench_na("no memory for a heap of %ld MiB", mib);
	for (k = 0; k < size; k += 4096)
		p[k] = (unsigned char)k;
	/* Kept for the trial's life: the point is a large parent. */
	heap_kept = p;
}

/* Whether lib_fork's exchange is made with no_stdio_flush (its third
 * argument, noflush). */
static bool no_stdio_flush;

/* Fork per task (reuse false) or reuse mode (reuse true): n tasks through
 * exchange_start with the given limit, results collected by store_data.
 * The parent first grows its heap by heap_mib MiB; with early, reuse
 * workers are started (one warm-up task each, not timed) before it does,
 * so that the timed tasks run on workers forked from the small parent. */
static void run_tasks_heap(long n, int limit, bool reuse, long heap_mib,
			   bool early)
{
	struct tally t = { 0 };
	struct exchange_options opts = {
		.limit = limit,
		.reuse = reuse,
		.store_data = store_sum,
		.udata = &t,
		.no_stdio_flush = no_stdio_flush,
	};
	struct exchange *ex;
	uint64_t want = 0;
	double t0;
	long i;

	NEED(exchange_new);
	NEED(exchange_start);
	NEED(exchange_finish);
	NEED(exchange_free);
	ex = exchange_new(&opts);
	if (!ex)
		bench_na("exchange_new: %s", strerror(errno));
	if (early) {
		for (i = 0; i < limit; i++) {
			uint64_t arg = 0;

			if (exchange_start(ex, task_square, &arg, sizeof arg,
					   NULL) < 0)
				bench_na("exchange_start: %s", strerror(errno));
		}
		/* The warm-up results are in once nothing is unfinished;
		 * the workers wait idle for more. */
		while (exchange_unfinished(ex))
			if (exchange_store(ex, -1) < 0)
				bench_na("exchange_store: %s",
					 strerror(errno));
		t.count = 0;
	}
	grow_heap(heap_mib);
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		uint64_t arg = (uint64_t)i;

		want += arg * arg;
		if (exchange_start(ex, task_square, &arg, sizeof arg, NULL) < 0)
			bench_na("exchange_start: %s", strerror(errno));
	}
	if (exchange_finish(ex) < 0)
		bench_na("exchange_finish: %s", strerror(errno));
	t0 = bench_now() - t0;
	exchange_free(ex);
	if (t.failed)
		bench_na("%ld tasks failed, first %s", t.failed, t.why);
	if (t.count != n || t.sum != want)
		bench_na("%ld results of %ld, sum %s", t.count, n,
			 t.sum == want ? "right" : "wrong");
	bench_ok(n ? n / t0 : 0);
}

static void run_tasks(long n, int limit, bool reuse)
{
	run_tasks_heap(n, limit, reuse, 0, false);
}

static void lib_fork(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 5000;
	long limit = argc > 1 ? bench_count(argv[1]) : 2;

	/* noflush: the children print nothing (task_square does not). */
	no_stdio_flush = argc > 2 && strcmp(argv[2], "noflush") == 0;
	run_tasks(n, (int)limit, false);
}

/* Tasks from a parent whose heap has grown: N LIMIT MIB MODE, where MODE is
 * fork (a fork per task), reuse (workers forked once, after the heap grew)
 * or early (workers forked before it grew). */
static void lib_heap(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 500;
	long limit = argc > 1 ? bench_count(argv[1]) : 2;
	long mib = argc > 2 ? bench_count(argv[2]) : 1024;
	const char *mode = argc > 3 ? argv[3] : "fork";

	if (strcmp(mode, "fork") == 0)
		run_tasks_heap(n, (int)limit, false, mib, false);
	else if (strcmp(mode, "reuse") == 0)
		run_tasks_heap(n, (int)limit, true, mib, false);
	else if (strcmp(mode, "early") == 0)
		run_tasks_heap(n, (int)limit, true, mib, true);
	else
		bench_na("mode %s: not fork, reuse or early", mode);
}

static void lib_reuse(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 200000;
	long workers = argc > 1 ? bench_count(argv[1]) : 2;

	run_tasks(n, (int)workers, true);
}

/* The go pipe and the work of a child that waits on it. */
struct go {
	int fd[2];		/* read end, write end */
	long count;		/* messages to send */
	size_t size;		/* bytes in each */
};

/* Waits for the trial's go byte; false if the trial has gone. */
static bool wait_go(const struct go *g)
{
	char c;

	close(g->fd[1]);
	return read(g->fd[0], &c, 1) == 1;
}

/* Releases n children waiting on the go pipe. */
static void release(struct go *g, long n)
{
	while (n-- > 0)
		if (write(g->fd[1], "g", 1) != 1)
			bench_na("go pipe: %s", strerror(errno));
}

/* A sender: count messages of size bytes (8-byte ones carry j * j). */
static void task_send(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	const struct go *g = ctx;
	unsigned char *buf;
	long j;

	(void)arg;
	(void)len;
	buf = calloc(1, g->size ? g->size : 1);
	if (!buf || !wait_go(g)) {
		channel_send_error(ch, "no memory or no go", -1);
		return;
	}
	for (j = 0; j < g->count; j++) {
		if (g->size == 8) {
			uint64_t v = (uint64_t)j * (uint64_t)j;

			memcpy(buf, &v, 8);
		}
		if (channel_send(ch, buf, g->size, -1) < 0)
			break;
	}
	free(buf);
}

/* Continuous Queue: nc children each send their share of n 8-byte
 * messages; the parent takes them from the queue in arrival order. */
static void lib_queue(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 100000;
	long nc = argc > 1 ? bench_count(argv[1]) : 2;
	struct exchange_options opts = { .continuous = true };
	struct go g[64];
	struct exchange *ex;
	struct channel_msg msg;
	long k, got = 0, bad = 0;
	double t0;
	int r, go[2];

	NEED(exchange_new_queue);
	NEED(exchange_start);
	NEED(exchange_queue_next);
	NEED(exchange_free);
	if (nc < 1 || nc > 64)
		bench_na("1 to 64 children");
	if (pipe(go) < 0)
		bench_na("pipe: %s", strerror(errno));
	ex = exchange_new_queue(&opts);
	if (!ex)
		bench_na("exchange_new_queue: %s", strerror(errno));
	for (k = 0; k < nc; k++) {
		g[k].fd[0] = go[0];
		g[k].fd[1] = go[1];
		g[k].count = n / nc + (k < n % nc);
		g[k].size = 8;
		if (exchange_start(ex, task_send, NULL, 0, &g[k]) < 0)
			bench_na("exchange_start: %s", strerror(errno));
	}
	t0 = bench_now();
	release(&g[0], nc);
	while ((r = exchange_queue_next(ex, &msg, -1)) == 1) {
		if (msg.kind == CHANNEL_DATA && msg.len == 8)
			got++;
		else
			bad++;
		channel_msg_free(&msg);
	}
	t0 = bench_now() - t0;
	if (r < 0)
		bench_na("exchange_queue_next: %s", strerror(errno));
	exchange_free(ex);
	close(go[0]);
	close(go[1]);
	if (got != n || bad)
		bench_na("%ld messages of %ld, %ld not data", got, n, bad);
	bench_ok(n / t0);
}

/* Large messages over one channel, child to parent: MiB/s. */
static void lib_big(int argc, char **argv)
{
	long size = argc > 0 ? bench_count(argv[0]) : 1 << 20;
	long count = argc > 1 ? bench_count(argv[1]) : 1024;
	struct go g;
	struct channel *ch;
	struct channel_msg msg;
	long got = 0;
	double t0;
	int r;

	if (pipe(g.fd) < 0)
		bench_na("pipe: %s", strerror(errno));
	g.count = count;
	g.size = (size_t)size;
	ch = channel_start(task_send, NULL, 0, &g);
	if (!ch)
		bench_na("channel_start: %s", strerror(errno));
	t0 = bench_now();
	release(&g, 1);
	while ((r = channel_recv(ch, &msg, -1)) == 1) {
		if (msg.kind != CHANNEL_DATA || msg.len != (size_t)size)
			bench_na("unexpected message of kind %d", msg.kind);
		got++;
		channel_msg_free(&msg);
	}
	t0 = bench_now() - t0;
	if (r < 0)
		bench_na("channel_recv: %s", strerror(errno));
	channel_close(ch);
	if (got != count)
		bench_na("%ld messages of %ld", got, count);
	bench_ok((double)size * (double)count / (1 << 20) / t0);
}

/* pmap over n elements with the trivial function: elements/s. */
static void lib_pmap(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 1000000, i;
	uint64_t *in = malloc((size_t)n * 8), *out = malloc((size_t)n * 8);
	struct exchange_pmap_options opts = { .workers = 2 };
	ssize_t done;
	double t0;

	NEED(exchange_pmap);
	if (!in || !out)
		bench_na("no memory");
	for (i = 0; i < n; i++)
		in[i] = (uint64_t)i;
	memset(out, 0, (size_t)n * 8);
	t0 = bench_now();
	done = exchange_pmap(bench_square, in, (size_t)n, 8, out, 8, &opts);
	t0 = bench_now() - t0;
	if (done != n)
		bench_na("exchange_pmap returned %zd: %s", done,
			 strerror(errno));
	for (i = 0; i < n; i++)
		if (out[i] != (uint64_t)i * (uint64_t)i)
			bench_na("wrong result at %ld", i);
	free(in);
	free(out);
	bench_ok(n / t0);
}

static int mandel_fn(const void *in, void *out, void *ctx)
{
	int y;

	(void)ctx;
	memcpy(&y, in, sizeof y);
	bench_mandel_row(y, out);
	return 0;
}

/* pmap over the Mandelbrot rows, 2 workers: wall seconds. */
static void lib_mandel(int argc, char **argv)
{
	uint16_t *img = malloc((size_t)MANDEL_W * MANDEL_H * sizeof *img);
	struct exchange_pmap_options opts = { .workers = 2 };
	int rows[MANDEL_H], y;
	uint64_t sum = 0, want = 0;
	uint16_t row[MANDEL_W];
	ssize_t done;
	double t0;

	(void)argc;
	(void)argv;
	NEED(exchange_pmap);
	if (!img)
		bench_na("no memory");
	for (y = 0; y < MANDEL_H; y++)
		rows[y] = y;
	t0 = bench_now();
	done = exchange_pmap(mandel_fn, rows, MANDEL_H, sizeof rows[0], img,
			     sizeof row, &opts);
	t0 = bench_now() - t0;
	if (done != MANDEL_H)
		bench_na("exchange_pmap returned %zd: %s", done,
			 strerror(errno));
	/* Check one row in the middle, where the work is. */
	bench_mandel_row(MANDEL_H / 2, row);
	for (y = 0; y < MANDEL_W; y++) {
		want += row[y];
		sum += img[(size_t)MANDEL_H / 2 * MANDEL_W + y];
	}
	if (sum != want)
		bench_na("wrong image");
	free(img);
	bench_ok(t0);
}

/* A sleeping child: blocks until its channel reaches end of stream. */
static void task_sleep(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	const struct go *g = ctx;
	struct channel_msg msg;

	(void)arg;
	(void)len;
	close(g->fd[0]);
	close(g->fd[1]);
	while (channel_recv(ch, &msg, -1) == 1)
		channel_msg_free(&msg);
}

/* A sender that waits for an answer to each message before sending the
 * next, so that every message reaches the parent alone and costs it one
 * wait over the whole poll set. */
static void task_ping(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	const struct go *g = ctx;
	struct channel_msg msg;
	long j;

	(void)arg;
	(void)len;
	if (!wait_go(g))
		return;
	for (j = 0; j < g->count; j++) {
		uint64_t v = (uint64_t)j * (uint64_t)j;

		if (channel_send(ch, &v, sizeof v, -1) < 0 ||
		    channel_recv(ch, &msg, -1) != 1)
			break;
		channel_msg_free(&msg);
	}
}

/* store_data: counts messages and answers each. */
static int store_answer(struct exchange *ex, struct channel *ch, void *udata)
{
	struct tally *t = udata;
	long before = t->count;

	if (store_sum(ex, ch, udata) < 0)
		return -1;
	if (t->count > before && channel_send(ch, "a", 1, -1) < 0)
		return -1;
	return 0;
}

/* An exchange holding n children of which n - 1 sleep and one sends m
 * messages, each answered before the next: microseconds per received
 * message, the round trip included. */
static void lib_sleepers(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 10;
	long m = argc > 1 ? bench_count(argv[1]) : 20000, k;
	struct tally t = { 0 };
	struct exchange_options opts = {
		.continuous = true,
		.store_data = store_answer,
		.udata = &t,
	};
	struct exchange *ex;
	struct go g;
	double t0;

	NEED(exchange_new);
	NEED(exchange_start);
	NEED(exchange_store);
	NEED(exchange_free);
	if (n < 1 || m < 1)
		bench_na("bad arguments");
	if (pipe(g.fd) < 0)
		bench_na("pipe: %s", strerror(errno));
	g.count = m;
	g.size = 8;
	ex = exchange_new(&opts);
	if (!ex)
		bench_na("exchange_new: %s", strerror(errno));
	for (k = 0; k < n; k++)
		if (exchange_start(ex, k == n / 2 ? task_ping : task_sleep,
				   NULL, 0, &g) < 0)
			bench_na("exchange_start: %s", strerror(errno));
	t0 = bench_now();
	release(&g, 1);
	while (t.count + t.failed < m)
		if (exchange_store(ex, -1) < 0)
			bench_na("exchange_store: %s", strerror(errno));
	t0 = bench_now() - t0;
	if (t.failed)
		bench_na("%ld failures, first %s", t.failed, t.why);
	close(g.fd[0]);
	close(g.fd[1]);
	exchange_free(ex);
	bench_ok(t0 * 1e6 / m);
}

/* The peak resident set of this process, in KiB. */
static long peak_kib(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		bench_na("getrusage: %s", strerror(errno));
	return ru.ru_maxrss;
}

/* The baseline: a fresh bench process's peak RSS, MiB. */
static void lib_mem_base(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	bench_ok(peak_kib() / 1024.0);
}

/* Peak RSS (MiB) with n channels open to sleeping children, held by an
 * exchange when the library has one, else bare. */
static void lib_mem_channels(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 1000, k;
	struct channel **chs = calloc((size_t)n + 1, sizeof *chs);
	struct exchange *ex = NULL;
	struct go g;
	long peak;

	if (!chs || pipe(g.fd) < 0)
		bench_na("no memory or no pipe");
	if (exchange_new && exchange_add && exchange_free) {
		ex = exchange_new(NULL);
		if (!ex)
			bench_na("exchange_new: %s", strerror(errno));
	}
	for (k = 0; k < n; k++) {
		chs[k] = channel_start(task_sleep, NULL, 0, &g);
		if (!chs[k])
			bench_na("channel %ld: %s", k, strerror(errno));
		if (ex && exchange_add(ex, chs[k]) < 0)
			bench_na("exchange_add: %s", strerror(errno));
	}
	peak = peak_kib();
	if (ex)
		exchange_free(ex);
	else
		for (k = 0; k < n; k++)
			channel_close(chs[k]);
	free(chs);
	bench_ok(peak / 1024.0);
}

/* Peak RSS beyond the baseline while receiving one message of mib MiB, as
 * a multiple of the message size. */
static void lib_mem_big(int argc, char **argv)
{
	long mib = argc > 0 ? bench_count(argv[0]) : 256;
	struct channel *ch;
	struct channel_msg msg;
	struct go g;
	long base, peak;
	int r;

	if (pipe(g.fd) < 0)
		bench_na("pipe: %s", strerror(errno));
	g.count = 1;
	g.size = (size_t)mib << 20;
	/* The child allocates and fills the message, not the parent. */
	ch = channel_start(task_send, NULL, 0, &g);
	if (!ch)
		bench_na("channel_start: %s", strerror(errno));
	base = peak_kib();
	release(&g, 1);
	r = channel_recv(ch, &msg, -1);
	if (r != 1 || msg.len != g.size)
		bench_na("channel_recv: %d, %s", r, strerror(errno));
	peak = peak_kib();
	channel_msg_free(&msg);
	channel_close(ch);
	bench_ok((double)(peak - base) / ((double)mib * 1024));
}

static const struct {
	const char *name;	/* as given to "bench run" */
	bench_trial_fn *fn;	/* the trial */
} trials[] = {
	{ "lib_fork", lib_fork },
	{ "lib_heap", lib_heap },
	{ "lib_reuse", lib_reuse },
	{ "lib_queue", lib_queue },
	{ "lib_big", lib_big },
	{ "lib_pmap", lib_pmap },
	{ "lib_mandel", lib_mandel },
	{ "lib_sleepers", lib_sleepers },
	{ "lib_mem_base", lib_mem_base },
	{ "lib_mem_channels", lib_mem_channels },
	{ "lib_mem_big", lib_mem_big },
};

bench_trial_fn *bench_lib_trial(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof trials / sizeof trials[0]; i++)
		if (strcmp(trials[i].name, name) == 0)
			return trials[i].fn;
	return NULL;
}
