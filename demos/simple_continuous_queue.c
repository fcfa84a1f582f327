/*
 * simple_continuous_queue - parallel computation with a Queue in
 * continuous mode (pprocess examples/simple_continuous_queue.py). One
 * process per row: each sends N messages, one per column, as it computes
 * them, and its channel stays in the exchange until the process closes
 * it. The parent takes (i, j, value) messages in arrival order.
 */
#include "demo.h"

/* Runs in a child: the whole row i, one message per value. */
static void calculate(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	int32_t i, j;

	(void)ctx;
	if (len != sizeof(i)) {
		channel_send_error(ch, "bad argument", -1);
		return;
	}
	memcpy(&i, arg, sizeof(i));
	for (j = 0; j < demo.n; j++) {
		struct demo_triple t = { i, j, demo_calculate(i, j) };

		if (channel_send(ch, &t, sizeof(t), -1) < 0)
			return;
	}
}

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results, i;
	double t0;
	int r;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	opts.limit = demo.limit;
	opts.continuous = true;
	queue = exchange_new_queue(&opts);
	if (!queue)
		demo_die("exchange_new_queue");
	calc = exchange_manage(queue, calculate, NULL, NULL);
	if (!calc)
		demo_die("exchange_manage");

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		if (exchange_call(calc, &i, sizeof(i)) < 0)
			demo_die("exchange_call");

	printf("Finishing...\n");
	while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
		if (m.kind != CHANNEL_DATA ||
		    demo_store_triple(results, m.data, m.len) < 0)
			demo_fail(&m);
		channel_msg_free(&m);
	}
	if (r < 0)
		demo_die("exchange_queue_next");

	demo_print_table(results);
	demo_time_taken(t0);
	exchange_free(queue);
	free(results);
	return 0;
}
