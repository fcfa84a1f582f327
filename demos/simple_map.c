/*
 * simple_map - serial computation in map style: a function applied to each
 * element of a sequence of (i, j) pairs, one after another (pprocess
 * examples/simple_map.py). simple_pmap is the same program run in
 * parallel with exchange_pmap.
 */
#include "demo.h"

/* The calculation on one element of the sequence. */
static int32_t calculate(const struct demo_pair *t)
{
	return demo_calculate(t->i, t->j);
}

int main(int argc, char **argv)
{
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

	for (k = 0; k < total; k++)
		results[k] = calculate(&sequence[k]);

	demo_print_table(results);
	demo_time_taken(t0);
	free(sequence);
	free(results);
	return 0;
}
