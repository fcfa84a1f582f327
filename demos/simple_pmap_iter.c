/*
 * simple_pmap_iter - map-style parallel computation whose results are
 * printed while they come in (pprocess examples/simple_pmap_iter.py, which
 * iterates over the result of pmap). pprocess's pmap returns a Map; here
 * the Map is made directly, the plain function is called for each element
 * of the sequence, and exchange_map_next hands back the results in
 * sequence order, each as soon as it (and those before it) are there.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct demo_pair *sequence;
	struct exchange *results;
	struct channel_msg m;
	size_t k, total;
	double t0;
	int i, j, r;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	total = (size_t)demo.n * (size_t)demo.n;
	sequence = malloc(total * sizeof(*sequence));
	if (!sequence)
		demo_die("malloc");
	for (i = 0, k = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++, k++) {
			sequence[k].i = i;
			sequence[k].j = j;
		}

	opts.limit = demo.limit;
	results = exchange_new_map(&opts);
	if (!results)
		demo_die("exchange_new_map");

	for (k = 0; k < total; k++)
		if (exchange_start_plain(results, demo_calculate_value,
					 &sequence[k], sizeof(sequence[k]),
					 NULL) < 0)
			demo_die("exchange_start_plain");

	for (k = 0; (r = exchange_map_next(results, &m)) == 1; k++) {
		int32_t value;

		if (m.kind != CHANNEL_DATA || m.len != sizeof(value))
			demo_fail(&m);
		memcpy(&value, m.data, sizeof(value));
		demo_print_value(k, value);
		/* Show each row as soon as it is complete. */
		fflush(stdout);
	}
	if (r < 0)
		demo_die("exchange_map_next");

	demo_time_taken(t0);
	exchange_free(results);
	free(sequence);
	return 0;
}
