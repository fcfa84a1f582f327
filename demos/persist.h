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

/* What --address takes (PATH or PREFIX), what it is, and its default,
 * for --help. */
static const char *persist_arg, *persist_meaning;
static char persist_default[96];

static inline void persist_usage(FILE *f)
{
	fprintf(f, "usage: %s [-s] [-r] [-a %s]\n"
		"       [-n N] [-l LIMIT] [-d SECONDS]\n", cli.prog,
		persist_arg);
	fprintf(f,
		"  -s, --start          start the work in the background and "
		"exit\n"
		"  -r, --reconnect      collect the results of a started run\n"
		"                       (without -s or -r: both, in one run)\n"
		"  -a, --address %-6s %s\n"
		"                       (default %s)\n",
		persist_arg, persist_meaning, persist_default);
	demo_usage_options(f);
	fprintf(f, "  -h, --help           this help\n");
}

/* Reads the command line of a persistent twin: demo.h's options from the
 * defaults given (see demo_parse), then -s (--start), -r (--reconnect)
 * and -a (--address) ARG (PATH or PREFIX), which is meaning (for --help)
 * and whose default is in m->address. Without --start or --reconnect,
 * both are done. */
static inline void persist_parse(int argc, char **argv,
				 struct persist_mode *m, const char *arg,
				 const char *meaning, int n, int limit,
				 double delay)
{
	static const struct option longs[] = {
		DEMO_LONG_OPTIONS,
		{ "start", no_argument, NULL, 's' },
		{ "reconnect", no_argument, NULL, 'r' },
		{ "address", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	persist_arg = arg;
	persist_meaning = meaning;
	snprintf(persist_default, sizeof(persist_default), "%s", m->address);
	demo_start(argv, ":" DEMO_SHORT_OPTIONS "sra:", longs, persist_usage,
		   n, limit, delay);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case 's':
			m->start = 1;
			break;
		case 'r':
			m->reconnect = 1;
			break;
		case 'a':
			snprintf(m->address, sizeof(m->address), "%s",
				 cli_text(optarg, "a path",
					  sizeof(m->address)));
			break;
		default:
			demo_option(c, optarg);
		}
	}
	cli_no_operands(argc, argv);
	if (!m->start && !m->reconnect)
		m->start = m->reconnect = 1;
}

#endif /* DEMOS_PERSIST_H */
