/*
 * simple2 - serial computation with a function that returns where its
 * result goes, (i, j, i * N + j), as the parallel versions' messages do
 * (pprocess examples/simple2.py).
 */
#include "demo.h"

/* The calculation, returning its position with its value. */
static struct demo_triple calculate(int32_t i, int32_t j)
{
	struct demo_triple t = { i, j, demo_calculate(i, j) };

	return t;
}

int main(int argc, char **argv)
{
	int32_t *results;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_triple t = calculate(i, j);

			results[t.i * demo.n + t.j] = t.value;
		}

	demo_print_table(results);
	demo_time_taken(t0);
	free(results);
	return 0;
}
