/*
 * simple_persistent_managed - a persistent process collected by an
 * exchange with its own store_data (pprocess
 * examples/simple_persistent_managed.py). The whole computation, task(),
 * runs in one persistent process listening at a socket address: an
 * exchange of managed calculations, limit at once, whose store_data puts
 * each (i, j, value) in the table (pprocess's MyExchange), which goes back
 * as one message. The program may exit as soon as it listens. Collecting
 * is a new exchange (limit 1) connected to the address, whose store_data
 * takes the table (pprocess's MyPersistentExchange), run to its end with
 * exchange_finish.
 *
 *   simple_persistent_managed --start       start the process and exit
 *   simple_persistent_managed --reconnect   collect the results and print
 *   simple_persistent_managed               both, in one run
 *
 * --address PATH sets the socket (default /tmp/exchange-UID-
 * simple_persistent_managed.socket; pprocess uses task.socket). Use the
 * same --n for both runs. It prints what pprocess prints.
 *
 * pprocess starts the process through a persistent exchange of limit 1
 * (PersistentExchange.manage(address, callable), called), which then
 * starts it with start_persistent; exchange.h has no persistent
 * counterpart of exchange_manage, so the twin calls
 * channel_start_persistent itself.
 */
#include "persist.h"

/* The size of the table's message. */
static size_t table_size(void)
{
	return (size_t)demo.n * (size_t)demo.n * sizeof(int32_t);
}

/* pprocess MyExchange.store_data: receives one (i, j, value) and puts it
 * in the table given as udata. */
static int store_triple(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int ok;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return -1;
	ok = m.kind == CHANNEL_DATA &&
	     demo_store_triple(udata, m.data, m.len) == 0;
	channel_msg_free(&m);
	if (!ok) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* pprocess MyPersistentExchange.store_data: receives the table into
 * udata. */
static int store_table(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return -1;
	if (m.kind != CHANNEL_DATA || m.len != table_size())
		demo_fail(&m);
	memcpy(udata, m.data, m.len);
	channel_msg_free(&m);
	return 0;
}

/* The main computation, in the persistent process: an exchange whose
 * store_data fills the table, a managed plain function called for each
 * (i, j), and the table sent back once the exchange has finished. */
static void task(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *calc;
	struct exchange *exchange;
	int32_t *results;
	int i, j;

	(void)arg;
	(void)len;
	(void)ctx;
	results = calloc((size_t)demo.n * (size_t)demo.n, sizeof(*results));
	opts.limit = demo.limit;
	opts.store_data = store_triple;
	opts.udata = results;
	exchange = results ? exchange_new(&opts) : NULL;
	calc = exchange ? exchange_manage(exchange, NULL,
					  demo_calculate_triple, NULL) : NULL;
	if (!calc)
		goto fail;
	for (i = 0; i < demo.n; i++)
		for (j = 0; j < demo.n; j++) {
			struct demo_pair p = { i, j };

			if (exchange_call(calc, &p, sizeof(p)) < 0)
				goto fail;
		}
	if (exchange_finish(exchange) < 0)
		goto fail;
	channel_send(ch, results, table_size(), -1);
	goto out;
fail:
	channel_send_error(ch, strerror(errno), -1);
out:
	exchange_free(exchange);
	free(results);
}

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct persist_mode mode = { 0 };
	struct exchange *exchange;
	int32_t *results;
	double t0;

	snprintf(mode.address, sizeof(mode.address),
		 "/tmp/exchange-%ld-simple_persistent_managed.socket",
		 (long)getuid());
	persist_parse(argc, argv, &mode, "PATH",
		      "the socket of the persistent process", 10, 10, 1.0);
	t0 = demo_now();
	results = demo_results();

	if (mode.start) {
		struct exchange_managed *ptask;

		opts.limit = 1;
		exchange = exchange_new(&opts);
		if (!exchange)
			demo_die("exchange_new");
		ptask = exchange_manage_persistent(exchange, mode.address,
						   task, NULL, 1000);
		if (!ptask || exchange_call(ptask, NULL, 0) < 0)
			demo_die(mode.address);
		/* Freed at once, as pprocess's exchange is deleted: the
		 * work goes on in the background, its results kept for the
		 * next connection. */
		exchange_free(exchange);
		printf("Closed original exchange.\n");
	}
	if (mode.reconnect) {
		printf("Opening new exchange.\n");
		opts.limit = 1;
		opts.store_data = store_table;
		opts.udata = results;
		exchange = exchange_new(&opts);
		if (!exchange)
			demo_die("exchange_new");
		if (exchange_connect(exchange, mode.address, 1000) < 0)
			persist_connect_failed(mode.address);
		printf("Waiting for persistent results\n");
		if (exchange_finish(exchange) < 0)
			demo_die("exchange_finish");
		exchange_free(exchange);
		demo_print_table(results);
		demo_time_taken(t0);
	}
	free(results);
	return 0;
}
