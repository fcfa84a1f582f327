/*
 * simple_pmap_iter - map-style parallel computation whose results are
 * printed while they come in (pprocess examples/simple_pmap_iter.py, which
 * iterates over the result of pmap). exchange_pmap_start starts the map
 * over the sequence in limit worker processes and returns at once, as
 * pprocess's pmap returns its Map; exchange_pmap_next then hands back the
 * results in sequence order, each as soon as it (and those before it) are
 * there.
 */
#include "demo.h"

int main(int argc, char **argv)
{
	struct exchange_pmap_options popts = { 0 };
	struct exchange_pmapper *results;
	struct exchange_outcome oc;
	struct demo_pair *sequence;
	int32_t *values;
	size_t k, total;
	double t0;
	int i, j, r;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	total = (size_t)demo.n * (size_t)demo.n;
	values = demo_results();
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
	 * time, so that each result is there as soon as it is computed. */
	popts.batch = 1;
	results = exchange_pmap_start(demo_calculate_element, sequence, total,
				      sizeof(*sequence), values,
				      sizeof(*values), &popts);
	if (!results)
		demo_die("exchange_pmap_start");

	while ((r = exchange_pmap_next(results, &k, &oc, -1)) == 1) {
		if (oc.cause != CHANNEL_OK) {
			fprintf(stderr, "element %zu failed: cause %d, code %d\n",
				k, oc.cause, oc.code);
			exit(1);
		}
		demo_print_value(k, values[k]);
		/* Show each row as soon as it is complete. */
		fflush(stdout);
	}
	if (r < 0)
		demo_die("exchange_pmap_next");

	demo_time_taken(t0);
	exchange_pmap_free(results);
	free(sequence);
	free(values);
	return 0;
}
