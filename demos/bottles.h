/*
 * bottles.h - what the two bottles twins share (pprocess
 * examples/concurrency-sig/bottles.py and bottles_heartbeat.py, after the
 * "99 Bottles" concurrency examples): nested continuous queues. The
 * program's queue runs three grep processes (one per pattern: pants,
 * trousers, shorts); each grep process runs a queue of its own with three
 * follower processes, one per file, which send every line appended to
 * their file (as tail -f does); the grep process sends on the lines its
 * pattern matches, and the program prints them. Only the printing differs
 * between the two twins.
 *
 *   bottles [-f] [-c N] [-d SECONDS] [FILE...]
 *
 * The files are pprocess's, /tmp/test, /tmp/test2 and /tmp/test3, unless
 * others are named. -d (--delay) is how long a follower sleeps when its
 * file has nothing new (default 0.1 s, as pprocess). Like pprocess, the
 * twins run until they are killed; -c N (--count) ends them after N lines
 * printed, and -f (--from-start) makes the followers read their files
 * from the start instead of from the end (both for tests). The command
 * line is read as cli.h says. A file that cannot be opened is reported
 * on standard error by each grep process; the others are still followed.
 *
 * Static inline, as demo.h: each demo is one program that includes it.
 */
#ifndef DEMOS_BOTTLES_H
#define DEMOS_BOTTLES_H

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "exchange.h"

/* The most files followed. */
#define BOTTLES_MAX_FILES 64

/* The settings, global so that every forked process sees them. */
struct bottles {
	const char *files[BOTTLES_MAX_FILES];	/* the files followed */
	int nfiles;		/* how many */
	double delay;		/* a follower's sleep when nothing is new */
	int heartbeat_ms;	/* bottles_heartbeat: the printer's wait */
	long count;		/* lines to print before leaving; 0: for ever */
	bool from_start;	/* read the files from their start */
};

static struct bottles bottles = { { NULL }, 0, 0.1, 5000, 0, false };

/* pprocess's patterns, one grep process each. */
static const char *const bottles_patterns[] = {
	".*pants.*", ".*trousers.*", ".*shorts.*",
};

/* Whether this is bottles_heartbeat, for --help. */
static bool bottles_heartbeat;

static inline void bottles_usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-f] [-c N] [-d SECONDS]%s [FILE...]\n"
		"  FILE...              the files followed (default /tmp/test "
		"/tmp/test2\n"
		"                       /tmp/test3)\n"
		"  -f, --from-start     read the files from their start, not "
		"their end\n"
		"  -c, --count N        leave after printing N lines (default: "
		"run until\n"
		"                       killed)\n"
		"  -d, --delay SECONDS  a follower's sleep when its file has "
		"nothing new\n"
		"                       (default 0.1, at most 3600)\n"
		"%s"
		"  -h, --help           this help\n", cli.prog,
		bottles_heartbeat ? " [--heartbeat MS]" : "",
		bottles_heartbeat ?
		"  --heartbeat MS       say so when no line came for MS "
		"milliseconds\n"
		"                       (default 5000, from 1 to 3600000)\n" :
		"");
}

/* Reads the command line into the settings (heartbeat: the options of
 * bottles_heartbeat), as cli.h says. */
static inline void bottles_parse(int argc, char **argv, bool heartbeat)
{
	enum { HEARTBEAT = 256 };
	/* bottles_heartbeat's options; bottles has all but the first. */
	static const struct option longs[] = {
		{ "heartbeat", required_argument, NULL, HEARTBEAT },
		{ "from-start", no_argument, NULL, 'f' },
		{ "count", required_argument, NULL, 'c' },
		{ "delay", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, i;

	bottles_heartbeat = heartbeat;
	cli_init(argv, ":fc:d:h", heartbeat ? longs : longs + 1,
		 bottles_usage);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case 'f':
			bottles.from_start = true;
			break;
		case 'c':
			bottles.count = cli_int(optarg, 1, LONG_MAX);
			break;
		case 'd':
			bottles.delay = cli_seconds(optarg, 3600.0);
			break;
		case HEARTBEAT:
			bottles.heartbeat_ms = (int)cli_int(optarg, 1, 3600000);
			break;
		}
	}
	for (i = optind; i < argc; i++) {
		if (!argv[i][0])
			cli_bad("a FILE must be named, not ''");
		if (bottles.nfiles == BOTTLES_MAX_FILES)
			cli_bad("at most %d FILEs are followed, not more",
				BOTTLES_MAX_FILES);
		bottles.files[bottles.nfiles++] = argv[i];
	}
	if (bottles.nfiles == 0) {
		bottles.files[0] = "/tmp/test";
		bottles.files[1] = "/tmp/test2";
		bottles.files[2] = "/tmp/test3";
		bottles.nfiles = 3;
	}
	signal(SIGPIPE, SIG_IGN);
}

/* Sleeps the follower's delay, resuming after signals. */
static inline void bottles_sleep(void)
{
	struct timespec ts;

	ts.tv_sec = (time_t)bottles.delay;
	ts.tv_nsec = (long)((bottles.delay - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* pprocess's follow(): runs in a process of its own and sends each line
 * appended to the file named by arg, for as long as someone receives. */
static inline void bottles_follow(struct channel *ch, const void *arg,
				  size_t len, void *ctx)
{
	const char *fname = arg;
	char *line = NULL, text[512];
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	(void)ctx;
	if (len == 0 || fname[len - 1] != '\0')
		return;
	f = fopen(fname, "r");
	if (!f) {
		snprintf(text, sizeof(text), "%s: %s", fname, strerror(errno));
		channel_send_error(ch, text, -1);
		return;
	}
	if (!bottles.from_start)
		fseek(f, 0, SEEK_END);	/* go to the end */
	for (;;) {
		n = getline(&line, &cap, f);
		if (n < 0) {	/* no data */
			clearerr(f);
			bottles_sleep();
		} else if (channel_send(ch, line, (size_t)n, -1) < 0) {
			break;
		}
	}
	free(line);
	fclose(f);
}

/* pprocess's multigrep(): runs in a process of its own; follows every
 * file through a continuous queue of follower processes (pprocess
 * Queue(continuous=1) and its manage()) and sends the lines that match
 * the pattern in arg (from their start, as Python's re.match). */
static inline void bottles_multigrep(struct channel *ch, const void *arg,
				     size_t len, void *ctx)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *multifollow;
	struct exchange *queue;
	struct channel_msg m;
	char anchored[256];
	regex_t regex;
	int i;

	(void)ctx;
	if (len == 0 || ((const char *)arg)[len - 1] != '\0')
		return;
	snprintf(anchored, sizeof(anchored), "^(%s)", (const char *)arg);
	if (regcomp(&regex, anchored, REG_EXTENDED | REG_NOSUB) != 0) {
		channel_send_error(ch, "bad pattern", -1);
		return;
	}
	opts.continuous = true;
	queue = exchange_new_queue(&opts);
	multifollow = queue ? exchange_manage(queue, bottles_follow, NULL,
					      NULL) : NULL;
	if (!multifollow) {
		channel_send_error(ch, strerror(errno), -1);
		goto out;
	}
	/* Launch concurrent following activities. */
	for (i = 0; i < bottles.nfiles; i++)
		if (exchange_call(multifollow, bottles.files[i],
				  strlen(bottles.files[i]) + 1) < 0) {
			channel_send_error(ch, strerror(errno), -1);
			goto out;
		}
	/* Handle incoming lines using the pattern: pprocess's grep(). */
	while (exchange_queue_next(queue, &m, -1) == 1) {
		int sent = 0;

		if (m.kind != CHANNEL_DATA)
			fprintf(stderr, "%s\n", (const char *)m.data);
		else if (regexec(&regex, m.data, 0, NULL, 0) != 0)
			sent = 0;
		else if (channel_send(ch, m.data, m.len, -1) < 0)
			sent = -1;
		channel_msg_free(&m);
		if (sent < 0)
			break;	/* nobody listens any more */
	}
out:
	/* The followers never end by themselves. */
	if (queue)
		exchange_terminate(queue);
	exchange_free(queue);
	regfree(&regex);
}

/* Starts the grep processes on a continuous queue (pprocess
 * Queue(continuous=1) and manage(multigrep)); exits on failure. */
static inline struct exchange *bottles_start(void)
{
	struct exchange_options opts = { 0 };
	struct exchange_managed *multigrep;
	struct exchange *queue;
	size_t i;

	opts.continuous = true;
	queue = exchange_new_queue(&opts);
	multigrep = queue ? exchange_manage(queue, bottles_multigrep, NULL,
					    NULL) : NULL;
	if (!multigrep) {
		perror("exchange_new_queue");
		exit(1);
	}
	/* Launch concurrent grep activities. */
	for (i = 0; i < sizeof(bottles_patterns) / sizeof(*bottles_patterns);
	     i++)
		if (exchange_call(multigrep, bottles_patterns[i],
				  strlen(bottles_patterns[i]) + 1) < 0) {
			perror("exchange_call");
			exit(1);
		}
	return queue;
}

/* Prints a line without the white space at its ends (Python's strip()),
 * and flushes it. */
static inline void bottles_print(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	printf("%.*s\n", (int)len, s);
	fflush(stdout);
}

/* Ends the grep processes (their followers die with them) and frees the
 * queue. */
static inline void bottles_stop(struct exchange *queue)
{
	exchange_terminate(queue);
	exchange_free(queue);
}

#endif /* DEMOS_BOTTLES_H */
