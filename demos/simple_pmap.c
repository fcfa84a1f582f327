/*
 * simple_pmap - parallel computation in map style (pprocess
 * examples/simple_pmap.py): simple_map's sequence of (i, j) pairs given to
 * exchange_pmap, which runs the function over it in limit worker
 * processes and returns the results in sequence order.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_pmap_options popts = { 0 };
	struct demo_pair *sequence;
	int32_t *results;
	size_t k, total;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	total = (size_t)demo.n * (size_t)demo.n;
	results = demo_results();
	sequence = malloc(total * sizeof(*sequence));
	if (!sequence)
		demo_die("malloc");
	for (i = 0, k = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++, k++) {
			sequence[k].i = i;
			sequence[k].j = j;
		}

	popts.workers = demo.limit;
	/* One element per message, as pprocess hands out one call at a
	 * time: with a delay per element, batches would leave workers
	 * idle at the end. */
	popts.batch = 1;
	if (exchange_pmap(demo_calculate_element, sequence, total,
			  sizeof(*sequence), results, sizeof(*results),
			  &popts) != (ssize_t)total)
		demo_die("exchange_pmap");

	demo_print_table(results);
	demo_time_taken(t0);
	free(sequence);
	free(results);
	return 0;
}
