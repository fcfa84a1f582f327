/*
 * simple_managed_map - parallel computation with a Map and managed callables
 * (pprocess examples/simple_managed_map.py). The plain function returns
 * only its value (pprocess MakeParallel); the Map keeps the outcomes in
 * the order of the calls, so the table is read back with exchange_map_get.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *results;
	size_t k, total;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	total = (size_t)demo.n * (size_t)demo.n;

	opts.limit = demo.limit;
	results = exchange_new_map(&opts);
	if (!results)
		demo_die("exchange_new_map");
	calc = exchange_manage(results, NULL, demo_calculate_value, NULL);
	if (!calc)
		demo_die("exchange_manage");

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0)
				demo_die("exchange_call");
		}

	/* The results, in call order, each waited for in turn. */
	for (k = 0; k < total; k++) {
		struct channel_msg m;
		int32_t value;

		if (exchange_map_get(results, k, &m, -1) != 1)
			demo_die("exchange_map_get");
		if (m.kind != CHANNEL_DATA || m.len != sizeof(value))
			demo_fail(&m);
		memcpy(&value, m.data, sizeof(value));
		demo_print_value(k, value);
	}
	demo_time_taken(t0);
	exchange_free(results);
	return 0;
}
