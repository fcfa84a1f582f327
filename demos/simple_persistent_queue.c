/*
 * simple_persistent_queue - persistent processes read through one queue
 * (pprocess examples/simple_persistent_queue.py). Each row i of the table
 * is a background callable (pprocess BackgroundCallable of
 * MakeParallel(task)) at its own address, PREFIX-i.socket: a detached
 * process whose own queue runs the row's N calculations, limit at once
 * (default 2, as pprocess's, since N such processes run together), and
 * sends (i, row) back as one message. The program may exit as soon as they
 * listen. Collecting is a queue connected to every address (pprocess
 * PersistentQueue): the rows arrive in any order and fill the table.
 *
 *   simple_persistent_queue --start       start the processes and exit
 *   simple_persistent_queue --reconnect   collect the results and print
 *   simple_persistent_queue               both, in one run
 *
 * --address PREFIX names the sockets PREFIX-i.socket (default
 * /tmp/exchange-UID-simple_persistent_queue; pprocess uses task-i.socket).
 * Use the same --n for both runs. It prints what pprocess prints: the
 * lines of the background tasks ("Calculating...", "Finishing...") go
 * nowhere, since a background process's standard streams are closed
 * (pprocess) or /dev/null (here).
 */
#include "persist.h"

/* The size of a row's message: the row number, then its N values. */
static size_t row_size(void)
{
	return sizeof(int32_t) * ((size_t)demo.n + 1);
}

/* The background task of row *arg: a queue of its calculations, limited
 * to demo.limit at once; (i, row) goes back as one message. Failures
 * travel as error messages. */
static void task(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *queue;
	struct channel_msg m;
	int32_t *row, i;
	int j, r;

	(void)ctx;
	if (len != sizeof(i)) {
		channel_send_error(ch, "bad argument", -1);
		return;
	}
	memcpy(&i, arg, sizeof(i));
	opts.limit = demo.limit;
	queue = exchange_new_queue(&opts);
	row = calloc((size_t)demo.n + 1, sizeof(*row));
	calc = queue ? exchange_manage(queue, NULL, demo_calculate_triple,
				       NULL) : NULL;
	if (!row || !calc) {
		channel_send_error(ch, strerror(errno), -1);
		goto out;
	}
	row[0] = i;
	printf("Calculating...\n");
	for (j = 0; j < demo.n; j++) {
		struct demo_pair p = { i, j };

		if (exchange_call(calc, &p, sizeof(p)) < 0) {
			channel_send_error(ch, strerror(errno), -1);
			goto out;
		}
	}
	printf("Finishing...\n");
	while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
		struct demo_triple t;

		if (m.kind != CHANNEL_DATA || m.len != sizeof(t)) {
			channel_send_error(ch, m.kind == CHANNEL_DATA ?
					   "bad result" : (char *)m.data, -1);
			channel_msg_free(&m);
			goto out;
		}
		memcpy(&t, m.data, sizeof(t));
		channel_msg_free(&m);
		if (t.j >= 0 && t.j < demo.n)
			row[1 + t.j] = t.value;
	}
	if (r < 0)
		channel_send_error(ch, strerror(errno), -1);
	else
		channel_send(ch, row, row_size(), -1);
out:
	exchange_free(queue);
	free(row);
}

/* The address of row i's process. */
static void address_of(const struct persist_mode *m, int i, char *out,
		       size_t cap)
{
	snprintf(out, cap, "%s-%d.socket", m->address, i);
}

int main(int argc, char **argv)
{
	struct persist_mode mode = { 0 };
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results, i;
	char path[128];
	double t0;
	int r;

	snprintf(mode.address, sizeof(mode.address),
		 "/tmp/exchange-%ld-simple_persistent_queue", (long)getuid());
	persist_parse(argc, argv, &mode, "PREFIX",
		      "the sockets are PREFIX-0.socket, PREFIX-1.socket...",
		      10, 2, 1.0);
	t0 = demo_now();

	if (mode.start) {
		for (i = 0; i < demo.n; i++) {
			/* A distinct callable for each part of the work:
			 * pprocess BackgroundCallable("task-%d.socket" % i,
			 * ptask), called with i. */
			address_of(&mode, i, path, sizeof(path));
			if (exchange_background(path, task, &i, sizeof(i),
						NULL) < 0)
				demo_die(path);
		}
		printf("Discarded the callable.\n");
	}
	if (mode.reconnect) {
		/* pprocess PersistentQueue(): a queue, and a connection to
		 * each address added to it. */
		printf("Opening a queue.\n");
		queue = exchange_new_queue(NULL);
		if (!queue)
			demo_die("exchange_new_queue");
		for (i = 0; i < demo.n; i++) {
			address_of(&mode, i, path, sizeof(path));
			if (exchange_connect(queue, path, 1000) < 0)
				persist_connect_failed(path);
		}
		results = demo_results();
		printf("Waiting for persistent results\n");
		while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
			int32_t row;

			if (m.kind != CHANNEL_DATA || m.len != row_size())
				demo_fail(&m);
			memcpy(&row, m.data, sizeof(row));
			if (row < 0 || row >= demo.n)
				demo_fail(&m);
			memcpy(results + (size_t)row * (size_t)demo.n,
			       (int32_t *)m.data + 1,
			       (size_t)demo.n * sizeof(*results));
			channel_msg_free(&m);
		}
		if (r < 0)
			demo_die("exchange_queue_next");
		exchange_free(queue);
		demo_print_table(results);
		free(results);
		demo_time_taken(t0);
	}
	return 0;
}
