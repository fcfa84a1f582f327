/*
 * simple_create_queue - parallel computation with a Queue and its create
 * method (pprocess examples/simple_create_queue.py). The children forked
 * by exchange_create send (i, j, value); the parent takes the messages
 * from the queue in the order they arrive.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
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

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct channel *ch;
			pid_t pid = exchange_create(queue, &ch);

			if (pid < 0)
				demo_die("exchange_create");
			if (pid == 0) {
				/* The child: calculate, send, leave. */
				struct demo_triple t = {
					i, j, demo_calculate(i, j)
				};

				channel_send(ch, &t, sizeof(t), -1);
				channel_exit(ch, 0);
			}
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
