/*
 * simple_start - parallel computation with an exchange and its start
 * method (pprocess examples/simple_start.py). Each calculation runs in its
 * own process, started by exchange_start, and sends back (i, j, value);
 * the exchange's store_data callback (pprocess: a subclass overriding
 * store_data) writes each value into the results array as it arrives.
 */
#include "demo.h"

/* Runs in a child: the calculation, sent back with its position. */
static void calculate(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	struct demo_pair p;
	struct demo_triple t;

	(void)ctx;
	if (len != sizeof(p)) {
		channel_send_error(ch, "bad argument", -1);
		return;
	}
	memcpy(&p, arg, sizeof(p));
	t.i = p.i;
	t.j = p.j;
	t.value = demo_calculate(p.i, p.j);
	channel_send(ch, &t, sizeof(t), -1);
}

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
			struct demo_pair p = { i, j };

			if (exchange_start(ex, calculate, &p, sizeof(p),
					   NULL) < 0)
				demo_die("exchange_start");
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
