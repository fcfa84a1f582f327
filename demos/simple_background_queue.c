/*
 * simple_background_queue - work that outlives the program that started
 * it (pprocess examples/simple_background_queue.py). A background callable
 * (pprocess BackgroundCallable of MakeParallel(task)) runs the whole
 * computation in a detached process listening at a socket address: a
 * queue of managed calculations, limit at once, whose table goes back as
 * one message. A background queue connected to that address collects it,
 * in this run or a later one.
 *
 *   simple_background_queue --start       start the work and exit at once
 *   simple_background_queue --reconnect   collect the results and print
 *   simple_background_queue               both, in one run
 *
 * --address PATH sets the socket (default /tmp/exchange-UID-
 * simple_background_queue.socket; pprocess uses task.socket). Use the
 * same --n for both runs. It prints what pprocess prints: the lines of the
 * background task ("Calculating...", "Finishing...") go nowhere, since a
 * background process's standard streams are closed (pprocess) or
 * /dev/null (here).
 */
#include "persist.h"

/* The background task: a queue of calculations, limited to demo.limit
 * processes at once; the whole table goes back as one message. Failures
 * travel as error messages. */
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
	opts.limit = demo.limit;
	queue = exchange_new_queue(&opts);
	results = calloc((size_t)demo.n * (size_t)demo.n, sizeof(*results));
	calc = queue ? exchange_manage(queue, NULL, demo_calculate_triple,
				       NULL) : NULL;
	if (!results || !calc) {
		channel_send_error(ch, strerror(errno), -1);
		goto out;
	}
	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0) {
				channel_send_error(ch, strerror(errno), -1);
				goto out;
			}
		}
	printf("Finishing...\n");
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
	struct persist_mode mode = { 0 };
	struct exchange *queue;
	struct channel_msg m;
	size_t size;
	double t0;
	int r, got = 0;

	snprintf(mode.address, sizeof(mode.address),
		 "/tmp/exchange-%ld-simple_background_queue.socket",
		 (long)getuid());
	persist_parse(argc, argv, &mode, "PATH",
		      "the socket of the background work", 10, 10, 1.0);
	t0 = demo_now();

	if (mode.start) {
		/* pprocess BackgroundCallable(address, MakeParallel(task)),
		 * called: the callable is then no longer needed. */
		if (exchange_background(mode.address, task, NULL, 0, NULL) < 0)
			demo_die(mode.address);
		printf("Discarded the callable.\n");
	}
	if (mode.reconnect) {
		printf("Opening a queue.\n");
		/* pprocess BackgroundQueue(address) */
		queue = exchange_background_queue(mode.address, 1000);
		if (!queue)
			persist_connect_failed(mode.address);
		printf("Waiting for persistent results\n");
		size = (size_t)demo.n * (size_t)demo.n * sizeof(int32_t);
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
		demo_time_taken(t0);
	}
	return 0;
}
