/*
 * simple_background_queue - work that outlives the program that started
 * it (pprocess examples/simple_background_queue.py). A background callable
 * runs the whole computation (a queue of managed calculations) in a
 * detached process listening at a socket address and sends the table back
 * as one message; a background queue connected to that address collects
 * it, in this run or a later one.
 *
 *   simple_background_queue --start       start the work and exit at once
 *   simple_background_queue --reconnect   collect the results and print
 *   simple_background_queue               both, in one run
 *
 * --address PATH sets the socket (default /tmp/exchange-UID-
 * simple_background_queue.socket). Use the same --n for both runs.
 */
#include <unistd.h>

#include "demo.h"

/* The settings of this twin beyond demo.h's. */
struct mode {
	int start;		/* start the background work */
	int reconnect;		/* collect its results */
	char address[108];	/* the socket path (sun_path size) */
};

/* Says that nothing listens at path (or why else the connection failed)
 * and exits with status 1. */
static void connect_failed(const char *path)
{
	int err = errno;

	fprintf(stderr, "%s: %s\n", path, strerror(err));
	if (err == ENOENT || err == ECONNREFUSED)
		fprintf(stderr, "(nothing listens there: start the work with "
			"--start first)\n");
	exit(1);
}

static void usage_extra(void)
{
	fprintf(stderr,
		"  --start          start the work in the background and exit\n"
		"  --reconnect      collect the results of a started run\n"
		"  --address PATH   the socket of the background work\n");
}

/* Takes --start, --reconnect and --address out of argv (demo_parse reads
 * the rest). Without --start or --reconnect, both are done. */
static void parse_mode(int *argc, char **argv, struct mode *m,
		       const char *name)
{
	int i, k = 1, missing = 0;
	const char *v;

	snprintf(m->address, sizeof(m->address), "/tmp/exchange-%ld-%s.socket",
		 (long)getuid(), name);
	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--start") == 0) {
			m->start = 1;
		} else if (strcmp(argv[i], "--reconnect") == 0) {
			m->reconnect = 1;
		} else if ((v = demo_option(*argc, argv, &i, "--address",
					    &missing))) {
			if (strlen(v) >= sizeof(m->address)) {
				fprintf(stderr, "%s: address too long\n",
					argv[0]);
				exit(2);
			}
			snprintf(m->address, sizeof(m->address), "%s", v);
		} else if (missing) {
			fprintf(stderr, "%s: --address needs a value\n",
				argv[0]);
			exit(2);
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			demo_usage(argv[0]);
			usage_extra();
			exit(0);
		} else {
			argv[k++] = argv[i];
		}
	}
	argv[k] = NULL;
	*argc = k;
	if (!m->start && !m->reconnect)
		m->start = m->reconnect = 1;
}

/* Runs in a child of the background process: returns (i, j, value) in
 * memory the library frees (pprocess MakeParallel(calculate)). */
static void *calculate(const void *arg, size_t len, size_t *result_len,
		       void *ctx)
{
	struct demo_pair p;
	struct demo_triple *t;

	(void)ctx;
	if (len != sizeof(p)) {
		errno = EINVAL;
		return NULL;
	}
	memcpy(&p, arg, sizeof(p));
	t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->i = p.i;
	t->j = p.j;
	t->value = demo_calculate(p.i, p.j);
	*result_len = sizeof(*t);
	return t;
}

/* The background task: a queue of calculations, limited to demo.limit
 * processes at once; the whole table goes back as one message. Its output
 * goes nowhere (the process is detached), so failures travel as error
 * messages. */
static void task(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results;
	int i, j, r;

	(void)arg;
	(void)len;
	(void)ctx;
	results = calloc((size_t)demo.n * (size_t)demo.n, sizeof(*results));
	opts.limit = demo.limit;
	queue = exchange_new_queue(&opts);
	calc = queue ? exchange_manage(queue, NULL, calculate, NULL) : NULL;
	if (!results || !calc) {
		channel_send_error(ch, strerror(errno), -1);
		goto out;
	}
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0) {
				channel_send_error(ch, strerror(errno), -1);
				goto out;
			}
		}
	while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
		if (m.kind != CHANNEL_DATA ||
		    demo_store_triple(results, m.data, m.len) < 0) {
			channel_send_error(ch, m.kind == CHANNEL_DATA ?
					   "bad result" : (char *)m.data, -1);
			channel_msg_free(&m);
			goto out;
		}
		channel_msg_free(&m);
	}
	if (r < 0)
		channel_send_error(ch, strerror(errno), -1);
	else
		channel_send(ch, results,
			     (size_t)demo.n * (size_t)demo.n * sizeof(*results),
			     -1);
out:
	exchange_free(queue);
	free(results);
}

int main(int argc, char **argv)
{
	struct mode mode = { 0 };
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results;
	size_t size;
	double t0;
	int r, got = 0;

	parse_mode(&argc, argv, &mode, "simple_background_queue");
	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	printf("Calculating...\n");

	if (mode.start) {
		/* pprocess BackgroundCallable(address, MakeParallel(task)) */
		if (exchange_background(mode.address, task, NULL, 0, NULL) < 0)
			demo_die(mode.address);
		if (!mode.reconnect)
			printf("Started in the background at %s.\n",
			       mode.address);
	}
	if (mode.reconnect) {
		/* pprocess BackgroundQueue(address) */
		queue = exchange_background_queue(mode.address, 1000);
		if (!queue)
			connect_failed(mode.address);
		size = (size_t)demo.n * (size_t)demo.n * sizeof(*results);
		while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
			/* There should be only one: the table. */
			if (m.kind != CHANNEL_DATA || m.len != size)
				demo_fail(&m);
			demo_print_table(m.data);
			channel_msg_free(&m);
			got++;
		}
		if (r < 0)
			demo_die("exchange_queue_next");
		exchange_free(queue);
		if (got != 1) {
			fprintf(stderr, "%s: %d tables received\n", argv[0],
				got);
			return 1;
		}
	}
	demo_time_taken(t0);
	return 0;
}
