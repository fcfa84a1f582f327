/*
 * simple1 - serial computation with a function whose results are appended
 * to an array in the order they are computed (pprocess examples/simple1.py).
 */
#include "demo.h"

int main(int argc, char **argv)
{
	int32_t *results;
	size_t count = 0;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++)
			results[count++] = demo_calculate(i, j);

	demo_print_table(results);
	demo_time_taken(t0);
	free(results);
	return 0;
}
