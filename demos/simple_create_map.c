/*
 * simple_create_map - parallel computation with a Map and its create
 * method (pprocess examples/simple_create_map.py). Each child sends only
 * its value: the Map keeps the outcome of each task in the order the tasks
 * were created, so no position needs to travel with it, and
 * exchange_map_get(i) waits for task i.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange *map;
	size_t k, total;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	total = (size_t)demo.n * (size_t)demo.n;

	opts.limit = demo.limit;
	map = exchange_new_map(&opts);
	if (!map)
		demo_die("exchange_new_map");

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct channel *ch;
			pid_t pid = exchange_create(map, &ch);

			if (pid < 0)
				demo_die("exchange_create");
			if (pid == 0) {
				/* The child: calculate, send, leave. */
				int32_t value = demo_calculate(i, j);

				channel_send(ch, &value, sizeof(value), -1);
				channel_exit(ch, 0);
			}
		}

	/* The results, in creation order, each waited for in turn. */
	for (k = 0; k < total; k++) {
		struct channel_msg m;
		int32_t value;

		if (exchange_map_get(map, k, &m, -1) != 1)
			demo_die("exchange_map_get");
		if (m.kind != CHANNEL_DATA || m.len != sizeof(value))
			demo_fail(&m);
		memcpy(&value, m.data, sizeof(value));
		demo_print_value(k, value);
	}
	demo_time_taken(t0);
	exchange_free(map);
	return 0;
}
