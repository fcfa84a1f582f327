/*
 * simple_persistent_managed - persistent processes collected by an
 * exchange with its own store_data (pprocess
 * examples/simple_persistent_managed.py). The table is computed by
 * P = min(limit, N) persistent processes, each listening at its own
 * address and computing the rows k, k + P, k + 2P, ... one calculation at a
 * time; the program may exit as soon as they listen. Collecting is an
 * exchange connected to every address whose store_data callback puts each
 * (i, j, value) in its place (pprocess: a PersistentExchange subclass
 * with its own store_data).
 *
 *   simple_persistent_managed --start       start the processes and exit
 *   simple_persistent_managed --reconnect   collect the results and print
 *   simple_persistent_managed               both, in one run
 *
 * --address PREFIX names the sockets PREFIX-K.socket (default
 * /tmp/exchange-UID-simple_persistent_managed). Use the same --n and --limit
 * for both runs: they decide the number of processes.
 */
#include <unistd.h>

#include "demo.h"

/* The settings of this twin beyond demo.h's. */
struct mode {
	int start;		/* start the background work */
	int reconnect;		/* collect its results */
	char address[96];	/* the sockets' path without "-K.socket" */
};

/* Says that nothing listens at path (or why else the connection failed)
 * and exits with status 1. */
static void connect_failed(const char *path)
{
	int err = errno;

	fprintf(stderr, "%s: %s\n", path, strerror(err));
	if (err == ENOENT || err == ECONNREFUSED)
		fprintf(stderr, "(nothing listens there: start the work with "
			"--start first)\n");
	exit(1);
}

static void usage_extra(void)
{
	fprintf(stderr,
		"  --start          start the work in the background and exit\n"
		"  --reconnect      collect the results of a started run\n"
		"  --address PREFIX the sockets are PREFIX-0.socket, PREFIX-1.socket...\n");
}

/* Takes --start, --reconnect and --address out of argv (demo_parse reads
 * the rest). Without --start or --reconnect, both are done. */
static void parse_mode(int *argc, char **argv, struct mode *m,
		       const char *name)
{
	int i, k = 1, missing = 0;
	const char *v;

	snprintf(m->address, sizeof(m->address), "/tmp/exchange-%ld-%s",
		 (long)getuid(), name);
	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--start") == 0) {
			m->start = 1;
		} else if (strcmp(argv[i], "--reconnect") == 0) {
			m->reconnect = 1;
		} else if ((v = demo_option(*argc, argv, &i, "--address",
					    &missing))) {
			if (strlen(v) >= sizeof(m->address)) {
				fprintf(stderr, "%s: address too long\n",
					argv[0]);
				exit(2);
			}
			snprintf(m->address, sizeof(m->address), "%s", v);
		} else if (missing) {
			fprintf(stderr, "%s: --address needs a value\n",
				argv[0]);
			exit(2);
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			demo_usage(argv[0]);
			usage_extra();
			exit(0);
		} else {
			argv[k++] = argv[i];
		}
	}
	argv[k] = NULL;
	*argc = k;
	if (!m->start && !m->reconnect)
		m->start = m->reconnect = 1;
}

/* The number of persistent processes. */
static int processes(void)
{
	return demo.limit < demo.n ? demo.limit : demo.n;
}

/* The address of process k. */
static void address_of(const struct mode *m, int k, char *out, size_t cap)
{
	snprintf(out, cap, "%s-%d.socket", m->address, k);
}

/* A persistent process: computes rows k, k + P, ... and sends each
 * (i, j, value) as it is found. A send waits for a peer to connect; what
 * one peer does not receive goes to the next. */
static void rows(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct demo_triple t;
	int k;

	(void)ctx;
	if (len != sizeof(k))
		return;
	memcpy(&k, arg, sizeof(k));
	for (t.i = k; t.i < demo.n; t.i += processes())
		for (t.j = 0; t.j < demo.n; t.j++) {
			t.value = demo_calculate(t.i, t.j);
			if (channel_send(ch, &t, sizeof(t), -1) < 0)
				return;
		}
}

/* Starts the P processes; exits on failure. */
static void start_all(const struct mode *m)
{
	char path[128];
	int k;

	for (k = 0; k < processes(); k++) {
		address_of(m, k, path, sizeof(path));
		if (channel_start_persistent(path, rows, &k, sizeof(k),
					     NULL) < 0)
			demo_die(path);
	}
}

/* The exchange's store_data (pprocess MyExchange.store_data): receives
 * one (i, j, value) and puts it in the table given as udata. */
static int store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int r;

	(void)ex;
	r = channel_recv(ch, &m, 0);
	if (r <= 0)
		return r < 0 && errno != ETIMEDOUT ? -1 : 0;
	if (m.kind != CHANNEL_DATA ||
	    demo_store_triple(udata, m.data, m.len) < 0)
		demo_fail(&m);
	channel_msg_free(&m);
	return 0;
}

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct mode mode = { 0 };
	struct exchange *ex;
	int32_t *results;
	char path[128];
	double t0;
	int k;

	parse_mode(&argc, argv, &mode, "simple_persistent_managed");
	demo_parse(argc, argv, 10, 10, 1.0);
	t0 = demo_now();
	printf("Calculating...\n");

	if (mode.start) {
		start_all(&mode);
		if (!mode.reconnect)
			printf("Started %d processes at %s-K.socket.\n",
			       processes(), mode.address);
	}
	if (mode.reconnect) {
		results = demo_results();
		opts.store_data = store;
		opts.udata = results;
		ex = exchange_new(&opts);
		if (!ex)
			demo_die("exchange_new");
		for (k = 0; k < processes(); k++) {
			address_of(&mode, k, path, sizeof(path));
			if (exchange_connect(ex, path, 1000) < 0)
				connect_failed(path);
		}
		/* store_data runs for every message until every process
		 * has delivered all and closed. */
		if (exchange_finish(ex) < 0)
			demo_die("exchange_finish");
		exchange_free(ex);
		demo_print_table(results);
		free(results);
	}
	demo_time_taken(t0);
	return 0;
}
