/*
 * simple - the computation done one step after another, in this process
 * (pprocess examples/simple.py): the baseline every parallel twin is
 * measured against. With the defaults it takes N * N * delay = 100 s.
 */
#include "demo.h"

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
			demo_sleep();
			results[i * demo.n + j] = i * demo.n + j;
		}

	demo_print_table(results);
	demo_time_taken(t0);
	free(results);
	return 0;
}
