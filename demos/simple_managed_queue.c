/*
 * simple_managed_queue - parallel computation with a Queue and managed
 * callables (pprocess examples/simple_managed_queue.py). Each call of the
 * managed plain function starts a process; the (i, j, value) results are
 * taken from the queue in the order they arrive.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results;
	double t0;
	int i, j, r;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	opts.limit = demo.limit;
	queue = exchange_new_queue(&opts);
	if (!queue)
		demo_die("exchange_new_queue");
	calc = exchange_manage(queue, NULL, demo_calculate_triple, NULL);
	if (!calc)
		demo_die("exchange_manage");

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0)
				demo_die("exchange_call");
		}

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
