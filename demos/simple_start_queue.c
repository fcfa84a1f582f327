/*
 * simple_start_queue - parallel computation with a queue and its start
 * method (pprocess examples/simple_start_queue.py). A plain function (the
 * MakeParallel idea: its return value is sent back for it) is started for
 * each (i, j) with exchange_start_plain on a Queue, and the results are
 * taken in the order they arrive.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct channel_msg m;
	struct exchange *queue;
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

	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_start_plain(queue,
						 demo_calculate_triple, &p,
						 sizeof(p), NULL) < 0)
				demo_die("exchange_start_plain");
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
