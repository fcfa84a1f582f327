/*
 * persist.h - the command line the persistent twins share (pprocess's
 * simple_background_queue, simple_persistent_queue and
 * simple_persistent_managed): --start starts the work in the background
 * and exits, --reconnect collects its results and prints them, and
 * without either a run does both, as pprocess's examples do. --address
 * names the socket (or, for several, the start of their names).
 *
 * Static inline, as demo.h: each demo is one program that includes it.
 */
#ifndef DEMOS_PERSIST_H
#define DEMOS_PERSIST_H

#include <unistd.h>

#include "demo.h"

/* The settings of a persistent twin beyond demo.h's. */
struct persist_mode {
	int start;		/* start the background work */
	int reconnect;		/* collect its results */
	char address[96];	/* the socket path, or the start of several */
};

/* Says that nothing listens at path (or why else the connection failed)
 * and exits with status 1. */
static inline void persist_connect_failed(const char *path)
{
	int err = errno;

	fprintf(stderr, "%s: %s\n", path, strerror(err));
	if (err == ENOENT || err == ECONNREFUSED)
		fprintf(stderr, "(nothing listens there: start the work with "
			"--start first)\n");
	exit(1);
}

static inline void persist_usage(const char *prog, const char *address)
{
	demo_usage(prog);
	fprintf(stderr,
		"  --start          start the work in the background and exit\n"
		"  --reconnect      collect the results of a started run\n"
		"  --address %s\n", address);
}

/* Takes --start, --reconnect and --address out of argv (demo_parse reads
 * the rest), with the default address given; -h and --help print the
 * usage, saying what --address means (what). Without --start or
 * --reconnect, both are done. */
static inline void persist_parse(int *argc, char **argv,
				 struct persist_mode *m, const char *address,
				 const char *what)
{
	int i, k = 1, missing = 0;
	const char *v;

	if (address != m->address)
		snprintf(m->address, sizeof(m->address), "%s", address);
	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--start") == 0) {
			m->start = 1;
		} else if (strcmp(argv[i], "--reconnect") == 0) {
			m->reconnect = 1;
		} else if ((v = demo_option(*argc, argv, &i, "--address",
					    &missing))) {
			if (!*v || strlen(v) >= sizeof(m->address)) {
				fprintf(stderr, "%s: bad address\n", argv[0]);
				persist_usage(argv[0], what);
				exit(2);
			}
			snprintf(m->address, sizeof(m->address), "%s", v);
		} else if (missing) {
			fprintf(stderr, "%s: --address needs a value\n",
				argv[0]);
			persist_usage(argv[0], what);
			exit(2);
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			persist_usage(argv[0], what);
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

#endif /* DEMOS_PERSIST_H */
