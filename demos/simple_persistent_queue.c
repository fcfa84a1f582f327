/*
 * simple_persistent_queue - persistent processes read through one queue
 * (pprocess examples/simple_persistent_queue.py). The table is computed by
 * P = min(limit, N) persistent processes, each listening at its own
 * address and computing the rows k, k + P, k + 2P, ... one calculation at a
 * time; the program may exit as soon as they listen. Collecting is a queue
 * connected to every address (pprocess PersistentQueue): the (i, j, value)
 * results arrive in any order and fill the table.
 *
 *   simple_persistent_queue --start       start the processes and exit
 *   simple_persistent_queue --reconnect   collect the results and print
 *   simple_persistent_queue               both, in one run
 *
 * --address PREFIX names the sockets PREFIX-K.socket (default
 * /tmp/exchange-UID-simple_persistent_queue). Use the same --n and --limit
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

int main(int argc, char **argv)
{
	struct mode mode = { 0 };
	struct exchange *queue;
	struct channel_msg m;
	int32_t *results;
	char path[128];
	double t0;
	int k, r;

	parse_mode(&argc, argv, &mode, "simple_persistent_queue");
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
		/* pprocess PersistentQueue: a queue, and a connection to
		 * each address added to it. */
		queue = exchange_new_queue(NULL);
		if (!queue)
			demo_die("exchange_new_queue");
		for (k = 0; k < processes(); k++) {
			address_of(&mode, k, path, sizeof(path));
			if (exchange_connect(queue, path, 1000) < 0)
				connect_failed(path);
		}
		results = demo_results();
		while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
			if (m.kind != CHANNEL_DATA ||
			    demo_store_triple(results, m.data, m.len) < 0)
				demo_fail(&m);
			channel_msg_free(&m);
		}
		if (r < 0)
			demo_die("exchange_queue_next");
		exchange_free(queue);
		demo_print_table(results);
		free(results);
	}
	demo_time_taken(t0);
	return 0;
}
