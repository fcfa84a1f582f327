/*
 * simple_create - parallel computation with an exchange and its create
 * method (pprocess examples/simple_create.py): the fork style. The loop
 * itself forks; in the child exchange_create returns 0 and the child does
 * the calculation, sends (i, j, value) and leaves with channel_exit; in
 * the parent it returns the child's pid (after waiting while the limit is
 * reached) and the loop goes on. store_data collects the values.
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

	printf("Calculating...\n");
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct channel *ch;
			pid_t pid = exchange_create(ex, &ch);

			if (pid < 0)
				demo_die("exchange_create");
			if (pid == 0) {
				/* The child: calculate, send, leave. */
				struct demo_triple t = {
					i, j, demo_calculate(i, j)
				};

				channel_send(ch, &t, sizeof(t), -1);
				channel_exit(ch, 0);
			}
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
