/*
 * simple_managed - parallel computation with an exchange and managed
 * callables (pprocess examples/simple_managed.py). exchange_manage wraps a
 * plain function (pprocess MakeParallel: its return value is sent back for
 * it) so that each exchange_call starts it in a new process; store_data
 * writes each (i, j, value) into the results as it arrives.
 */
#include "demo.h"

/* Called by the exchange for each message: udata is the results array. */
static int store_data(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int ok;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return -1;
	ok = m.kind == CHANNEL_DATA &&
	     demo_store_triple(udata, m.data, m.len) == 0;
	if (!ok)
		demo_fail(&m);
	channel_msg_free(&m);
	return 0;
}

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *ex;
	int32_t *results;
	double t0;
	int i, j;

	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	opts.limit = demo.limit;
	opts.store_data = store_data;
	opts.udata = results;
	ex = exchange_new(&opts);
	if (!ex)
		demo_die("exchange_new");
	calc = exchange_manage(ex, NULL, demo_calculate_triple, NULL);
	if (!calc)
		demo_die("exchange_manage");

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0)
				demo_die("exchange_call");
		}

	printf("Finishing...\n");
	if (exchange_finish(ex) < 0)
		demo_die("exchange_finish");

	demo_print_table(results);
	demo_time_taken(t0);
	exchange_free(ex);
	free(results);
	return 0;
}
