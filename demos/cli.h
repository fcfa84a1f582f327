/*
 * cli.h - the command line of the demos (prun aside: it follows GNU
 * parallel's). Options are read by getopt_long, so short ones bundle
 * (-sj4, -j4) and long ones take their value as --opt=VALUE or --opt
 * VALUE, or any unambiguous start of the name (--lim 3). --help and -h
 * print the usage on standard output and exit with status 0. A bad
 * command line is told in one line, which names the option and what it
 * accepts, then a line points to --help, and the program exits with
 * status 2 (CLI_EXIT_USAGE):
 *
 *   mandelbrot: --width must be an integer from 1 to 20000, not 'x'
 *   Try 'mandelbrot --help' for more information.
 *
 * A demo gives cli_init its short options (starting with ':', so that a
 * missing value is told apart from an unknown option; '+' first stops at
 * the first operand), its long ones (the value of one with a short name
 * is that letter; of one without, 256 or more) and its usage, takes the
 * options cli_next returns until -1, and checks each value with cli_int,
 * cli_seconds or cli_text, which name the option in their message as it
 * was typed (-j or --workers). Messages start with the program's name
 * without its directory.
 *
 * Static inline, as demo.h: each demo is one program that includes it.
 */
#ifndef DEMOS_CLI_H
#define DEMOS_CLI_H

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The exit status for a bad command line. */
#define CLI_EXIT_USAGE 2

/* The command line being read. */
struct cli {
	const char *prog;		/* the program's name, for messages */
	const char *shorts;		/* getopt_long's short options */
	const struct option *longs;	/* its long ones, ending with zeros */
	void (*usage)(FILE *f);		/* prints the --help text */
	char opt[64];			/* the option (or operand) checked */
};

static struct cli cli;

/* Starts reading argv with these options; usage prints the help. */
static inline void cli_init(char **argv, const char *shorts,
			    const struct option *longs, void (*usage)(FILE *))
{
	const char *slash;

	assert(shorts[0] == ':' || (shorts[0] == '+' && shorts[1] == ':'));
	cli.prog = argv[0] && argv[0][0] ? argv[0] : "demo";
	slash = strrchr(cli.prog, '/');
	if (slash && slash[1])
		cli.prog = slash + 1;
	cli.shorts = shorts;
	cli.longs = longs;
	cli.usage = usage;
	opterr = 0;	/* the messages are ours */
	optind = 1;
}

/* Says what is wrong with the command line (after the program's name, on
 * one line), points to --help and exits with status 2. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void cli_bad(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", cli.prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n",
		cli.prog);
	exit(CLI_EXIT_USAGE);
}

/* The long option that typed ("--name" or "--name=value", the name
 * perhaps cut short) names, or NULL; *many is set when it could be
 * several. */
static inline const struct option *cli_long(const char *typed, int *many)
{
	const struct option *o, *found = NULL;
	size_t len;

	*many = 0;
	if (strncmp(typed, "--", 2) != 0)
		return NULL;
	typed += 2;
	len = strcspn(typed, "=");
	for (o = cli.longs; o->name; o++) {
		if (strncmp(o->name, typed, len) != 0)
			continue;
		if (strlen(o->name) == len)
			return o;	/* an exact match wins */
		if (found && found->val != o->val)
			*many = 1;
		found = o;
	}
	return *many ? NULL : found;
}

/* The next option (its value in optarg), or -1 when none is left. --help
 * is answered here, and a word that is no option, or lacks its value, is
 * reported: the caller sees only the options of its table. */
static inline int cli_next(int argc, char **argv)
{
	const char *typed;
	const struct option *o;
	int index = -1, c, many;

	c = getopt_long(argc, argv, cli.shorts, cli.longs, &index);
	if (c == -1)
		return -1;
	if (index >= 0)
		snprintf(cli.opt, sizeof(cli.opt), "--%s",
			 cli.longs[index].name);
	else
		snprintf(cli.opt, sizeof(cli.opt), "-%c", c);
	if (c == 'h') {
		cli.usage(stdout);
		exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
	}
	if (c != ':' && c != '?')
		return c;
	/* An error. Whether it was about a short option or a long one is
	 * told by optopt: 0 for an unknown long option, a character that
	 * is not among the short options for an unknown short one, else
	 * the value of the option (long options with a short name have
	 * that letter as their value). The word it was in is the last one
	 * taken whenever it was a long option, or a value was missing. */
	typed = argv[optind - 1];
	if (c == ':') {
		o = cli_long(typed, &many);
		if (o)
			cli_bad("--%s needs a value", o->name);
		cli_bad("-%c needs a value", optopt);
	}
	if (optopt > 0 && optopt < 256 && !strchr(cli.shorts, optopt))
		cli_bad("unknown option '-%c'", optopt);
	o = cli_long(typed, &many);
	if (optopt != 0 && o)
		cli_bad("--%s takes no value, not '%s'", o->name,
			strchr(typed, '=') ? strchr(typed, '=') + 1 : "");
	if (many)
		cli_bad("ambiguous option '%.*s'",
			(int)strcspn(typed, "="), typed);
	cli_bad("unknown option '%.*s'", (int)strcspn(typed, "="), typed);
}

/* Value v of the option just read: a whole decimal number from lo to
 * hi, or the command line is bad. */
static inline long cli_int(const char *v, long lo, long hi)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (!*v || errno || *end || n < lo || n > hi)
		cli_bad("%s must be an integer from %ld to %ld, not '%s'",
			cli.opt, lo, hi, v);
	return n;
}

/* Value v of the option just read: a number of seconds from 0 to hi. */
static inline double cli_seconds(const char *v, double hi)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(v, &end);
	if (!*v || errno || *end || !(s >= 0.0 && s <= hi))
		cli_bad("%s must be a number of seconds from 0 to %g, not "
			"'%s'", cli.opt, hi, v);
	return s;
}

/* Value v of the option just read: what (a file name, a path...), not
 * empty, shorter than max bytes (0: any length). */
static inline const char *cli_text(const char *v, const char *what,
				   size_t max)
{
	if (!*v)
		cli_bad("%s needs %s, not ''", cli.opt, what);
	if (max && strlen(v) >= max)
		cli_bad("%s must be %s of at most %zu bytes, not '%s'",
			cli.opt, what, max - 1, v);
	return v;
}

/* The checks that follow are of operand name (as LIMIT), not of an
 * option, and name it in their messages. */
static inline void cli_operand(const char *name)
{
	snprintf(cli.opt, sizeof(cli.opt), "%s", name);
}

/* Reports the first word after the options, for programs that take
 * none. */
static inline void cli_no_operands(int argc, char **argv)
{
	if (optind < argc)
		cli_bad("unexpected argument '%s'", argv[optind]);
}

#endif /* DEMOS_CLI_H */
