/*
 * test_demos.c - the demos, run as programs and checked by their output.
 *
 * The binaries are found next to this test's own build directory:
 * $(BUILD)/tests/test_demos runs $(BUILD)/demos/NAME (the make rule for
 * this test builds the demos first). DEMO_DIR in the environment overrides
 * the place. Each test runs its programs through the shell (popen), so no
 * test code runs in a forked child; results are compared in the test body.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The directory of the demo binaries, without a trailing slash. */
static const char *demo_dir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("DEMO_DIR");
	ssize_t n;
	char *slash;

	if (dir[0])
		return dir;
	if (env && *env) {
		snprintf(dir, sizeof(dir), "%s", env);
		return dir;
	}
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 16);
	cr_assert(n > 0, "cannot find the test binary: %s", strerror(errno));
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	cr_assert(slash);
	strcpy(slash, "/../demos");
	return dir;
}

/* The path of demo name; the test fails if it is not built. */
static const char *demo(const char *name)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", demo_dir(), name);
	cr_assert(access(path, X_OK) == 0, "%s is not built", path);
	return path;
}

/* Runs a shell command line, stores its standard output (malloc'd) in
 * *out if out is not NULL, and returns its exit status (or 256 + signal).
 */
static int run(const char *cmd, char **out)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	FILE *p;
	int st;

	cr_assert(buf);
	fflush(NULL);
	p = popen(cmd, "r");
	cr_assert(p, "popen %s: %s", cmd, strerror(errno));
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf);
		}
		n = fread(buf + len, 1, cap - len - 1, p);
		if (n == 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	st = pclose(p);
	cr_assert(st != -1, "pclose: %s", strerror(errno));
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 256 + WTERMSIG(st);
}

/* printf into a fresh buffer. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	cr_assert(n >= 0);
	s = malloc((size_t)n + 1);
	cr_assert(s);
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

/* s in single quotes for the shell (malloc'd). */
static char *shell_quote(const char *s)
{
	char *q = malloc(strlen(s) * 4 + 3), *o = q;

	cr_assert(q);
	*o++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *s;
		}
	}
	*o++ = '\'';
	*o = '\0';
	return q;
}

/* Runs the shell command line cmd on a terminal: script(1) makes one (a
 * pseudo-terminal) its standard input, output and error; cmd sends its
 * standard output elsewhere. Returns what cmd wrote on the terminal
 * (malloc'd) and its exit status in *status. Nothing is typed: script
 * reads /dev/null. */
static char *on_a_terminal(const char *cmd, int *status)
{
	char *q = shell_quote(cmd);
	char *line = fmt("script -qec %s /dev/null </dev/null", q), *out;

	cr_assert_eq(run("command -v script >/dev/null", NULL), 0,
		     "script(1), of util-linux, is needed for this test");
	*status = run(line, &out);
	free(line);
	free(q);
	return out;
}

/* The text after the last occurrence of what in s, or NULL. */
static const char *after_last(const char *s, const char *what)
{
	const char *p, *last = NULL;

	for (p = s; (p = strstr(p, what)); p++)
		last = p + strlen(what);
	return last;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

/* A fresh temporary directory (the caller removes it with rm_rf). */
static char *tmpdir(void)
{
	char *d = strdup("/tmp/test_demos.XXXXXX");

	cr_assert(d && mkdtemp(d), "mkdtemp: %s", strerror(errno));
	return d;
}

static void rm_rf(char *dir)
{
	char *cmd = fmt("rm -rf '%s'", dir);

	run(cmd, NULL);
	free(cmd);
	free(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char *path = fmt("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	cr_assert(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	free(path);
}

/* The whole content of a file, malloc'd, with a NUL after it; *len its
 * size. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';	/* text files are read as strings too */
	*len = (size_t)n;
	return buf;
}

/* The directory of pprocess's recorded outputs (tests/pprocess-output). */
static const char *recorded_dir(void)
{
	const char *env = getenv("PPROCESS_OUTPUT");

	if (env && *env)
		return env;
#ifdef PPROCESS_OUTPUT
	return PPROCESS_OUTPUT;
#else
	return "tests/pprocess-output";
#endif
}

static char *sorted_lines(const char *s);

/* The n x n table the twins print. */
static char *table(int n)
{
	size_t cap = (size_t)n * (size_t)n * 12 + 1, len = 0;
	char *t = malloc(cap);
	int i, j;

	cr_assert(t);
	t[0] = '\0';
	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			len += (size_t)snprintf(t + len, cap - len, "%d%c",
						i * n + j,
						j == n - 1 ? '\n' : ' ');
	return t;
}

/* Checks a twin's output: the table, then "Time taken: S" last; before
 * the table only the "Calculating..." and "Finishing..." lines pprocess
 * prints. (The twins/same_as_pprocess tests compare each twin's whole
 * output with the original's.) */
static void check_twin_output(const char *name, const char *out, int n)
{
	char *want = table(n), *copy = strdup(out), *body, *p, *last;
	size_t blen = 0;

	cr_assert(copy);
	body = malloc(strlen(out) + 1);
	cr_assert(body);
	last = NULL;
	for (p = strtok(copy, "\n"); p; p = strtok(NULL, "\n")) {
		if (blen == 0 && (strcmp(p, "Calculating...") == 0 ||
				  strcmp(p, "Finishing...") == 0))
			continue;
		if (strncmp(p, "Time taken: ", 12) == 0) {
			last = p;
			continue;
		}
		cr_assert(!last, "%s: output after the time:\n%s", name, out);
		blen += (size_t)sprintf(body + blen, "%s\n", p);
	}
	body[blen] = '\0';
	cr_assert(last, "%s: no Time taken line:\n%s", name, out);
	cr_assert(strtod(last + 12, NULL) >= 0.0);
	cr_assert_str_eq(body, want, "%s: wrong table", name);
	free(body);
	free(copy);
	free(want);
}

/* Runs a twin with --delay 0 and the given extra arguments. */
static void twin(const char *name, const char *args, int n)
{
	char *cmd = fmt("%s --delay 0 %s", demo(name), args), *out;
	int st = run(cmd, &out);

	cr_assert_eq(st, 0, "%s exited with %d:\n%s", cmd, st, out);
	check_twin_output(name, out, n);
	free(out);
	free(cmd);
}

/* ------------------------------------------------------------------------ */
/* Command lines                                                            */
/* ------------------------------------------------------------------------ */

/* A bad command line, and the line it must be told with (after "NAME: "). */
struct bad_line {
	const char *args;	/* shell words after the program */
	const char *line;	/* the error, without the program's name */
};

/* Runs "NAME ARGS" (shell words), which must fail with the status given:
 * nothing on standard output, exactly expect on standard error. Never a
 * crash. Standard error goes to a file in dir. */
static void fails_saying(const char *dir, const char *name,
			 const char *args, int status, const char *expect)
{
	char *errpath = fmt("%s/err", dir);
	char *cmd = fmt("%s %s 2>%s", demo(name), args, errpath);
	char *out, *err;
	size_t len;
	int st = run(cmd, &out);

	err = read_file(errpath, &len);
	cr_assert_eq(st, status, "%s: status %d:\n%s", cmd, st, err);
	cr_assert_str_eq(out, "", "%s printed on standard output", cmd);
	cr_assert_str_eq(err, expect, "%s", cmd);
	free(err);
	free(out);
	free(cmd);
	free(errpath);
}

/* Runs "NAME ARGS", which must fail as cli.h says: on standard error the
 * line "NAME: WANT", then the pointer to --help; status 2. */
static void bad_command_line(const char *dir, const char *name,
			     const char *args, const char *want)
{
	char *expect = fmt("%s: %s\nTry '%s --help' for more information.\n",
			   name, want, name);

	fails_saying(dir, name, args, 2, expect);
	free(expect);
}

/* Each of n bad command lines of the program name. */
static void bad_command_lines(const char *name, const struct bad_line *bad,
			      size_t n)
{
	char *d = tmpdir();
	size_t i;

	for (i = 0; i < n; i++)
		bad_command_line(d, name, bad[i].args, bad[i].line);
	rm_rf(d);
}

#define BAD_LINES(name, table) \
	bad_command_lines(name, table, sizeof(table) / sizeof(table[0]))

/* The errors of every program with cli.h's command line. */
static const struct bad_line cli_bad[] = {
	{ "--bogus", "unknown option '--bogus'" },
	{ "--bogus=1", "unknown option '--bogus'" },
	{ "-Z", "unknown option '-Z'" },
	{ "--help=1", "--help takes no value, not '1'" },
};

/* --help and -h print the usage, on standard output, and nothing else;
 * status 0. */
static void help_on_stdout(const char *name)
{
	static const char *const opt[] = { "--help", "-h", "--hel" };
	char *usage = fmt("usage: %s ", name);
	size_t i;

	for (i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
		char *cmd = fmt("%s %s 2>&1 >/dev/null", demo(name), opt[i]);
		char *out;

		cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
		cr_assert_str_eq(out, "", "%s wrote on standard error", cmd);
		free(out);
		free(cmd);
		cmd = fmt("%s %s 2>/dev/null", demo(name), opt[i]);
		cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
		cr_assert(strncmp(out, usage, strlen(usage)) == 0 &&
			  strstr(out, "-h, --help"), "%s:\n%s", cmd, out);
		free(out);
		free(cmd);
	}
	free(usage);
}

/* The twins' bad command lines. */
static const struct bad_line twin_bad[] = {
	{ "--n 0", "--n must be an integer from 1 to 1000, not '0'" },
	{ "--n x", "--n must be an integer from 1 to 1000, not 'x'" },
	{ "-n 10x", "-n must be an integer from 1 to 1000, not '10x'" },
	{ "--n=1001", "--n must be an integer from 1 to 1000, not '1001'" },
	{ "--limit 0", "--limit must be an integer from 1 to 100000, not '0'" },
	{ "-l0", "-l must be an integer from 1 to 100000, not '0'" },
	{ "--lim=x", "--limit must be an integer from 1 to 100000, not 'x'" },
	{ "--delay -1",
	  "--delay must be a number of seconds from 0 to 3600, not '-1'" },
	{ "-dx", "-d must be a number of seconds from 0 to 3600, not 'x'" },
	{ "--delay", "--delay needs a value" },
	{ "-n", "-n needs a value" },
	{ "extra", "unexpected argument 'extra'" },
	{ "--n 4 extra", "unexpected argument 'extra'" },
};

/* A twin's command line: --help, and each kind of mistake. */
static void twin_command_line(const char *name)
{
	help_on_stdout(name);
	BAD_LINES(name, cli_bad);
	BAD_LINES(name, twin_bad);
}

#define TWIN(name)							\
	Test(twins, name, .timeout = 30)				\
	{								\
		twin(#name, "", 10);					\
		twin(#name, "--n 4 --limit 3", 4);			\
		twin(#name, "--n=3 -l2", 3);				\
		twin(#name, "-n5 --li 1", 5);				\
		twin_command_line(#name);				\
	}

TWIN(simple)
TWIN(simple1)
TWIN(simple2)
TWIN(simple_map)
TWIN(simple_start)
TWIN(simple_start_queue)
TWIN(simple_create)
TWIN(simple_create_map)
TWIN(simple_create_queue)
TWIN(simple_managed)
TWIN(simple_managed_map)
TWIN(simple_managed_map_reusable)
TWIN(simple_managed_queue)
TWIN(simple_pmap)
TWIN(simple_pmap_iter)
TWIN(simple_continuous_queue)

/* two_way's lines in the order pprocess prints them when each process
 * runs as soon as it is woken (pprocess's own order varies from run to
 * run: see tests/pprocess-output/README.md). */
static char *two_way_lines(int n)
{
	size_t cap = (size_t)n * 64 + 64, len = 0;
	char *t = malloc(cap);
	int k;

	cr_assert(t);
	len += (size_t)snprintf(t + len, cap - len, "Child: %d\n", n);
	for (k = n; k >= 1; k--) {
		len += (size_t)snprintf(t + len, cap - len,
					"Parent: %d\nChild sent\n", k);
		if (k > 1)
			len += (size_t)snprintf(t + len, cap - len,
						"Child: %d\n", k - 1);
		len += (size_t)snprintf(t + len, cap - len, "Parent sent\n");
	}
	return t;
}

Test(twins, two_way, .timeout = 30)
{
	static const int n[] = { 20, 3, 1 };
	size_t i;
	int r;

	for (i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		char *want = two_way_lines(n[i]), *out, *cmd;

		cmd = i == 0 ? fmt("%s", demo("two_way")) :
			       fmt("%s --n %d", demo("two_way"), n[i]);
		/* The same order every time. */
		for (r = 0; r < 5; r++) {
			int st = run(cmd, &out);

			cr_assert_eq(st, 0, "%s exited with %d:\n%s", cmd, st,
				     out);
			cr_assert_str_eq(out, want, "%s: not in order", cmd);
			free(out);
		}
		free(cmd);
		free(want);
	}
	twin_command_line("two_way");
}

/* The twins with a main of their own read the same command line; the
 * persistent ones take -s, -r and -a too, and refuse a missing, empty or
 * too long address before they start anything. */
Test(twins, command_line_of_the_other_twins, .timeout = 60)
{
	static const char *const names[] = {
		"create_loop", "start_loop", "simple_background_queue",
		"simple_persistent_queue", "simple_persistent_managed",
	};
	static const struct bad_line persist_bad[] = {
		{ "--address", "--address needs a value" },
		{ "--address=", "--address needs a path, not ''" },
		{ "-sa ''", "-a needs a path, not ''" },
		{ "-a " "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		  "-a must be a path of at most 95 bytes, not "
		  "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'" },
		{ "--start=1", "--start takes no value, not '1'" },
		{ "-rx", "unknown option '-x'" },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		twin_command_line(names[i]);
		if (i >= 2)
			BAD_LINES(names[i], persist_bad);
	}
}

/* ------------------------------------------------------------------------ */
/* bottles                                                                  */
/* ------------------------------------------------------------------------ */

/* Three files for the bottles twins: lines that match one pattern, two,
 * none; a file without a final newline; an empty one. */
static char *bottles_files(void)
{
	char *d = tmpdir();

	write_file(d, "a", "my pants\nno match\nshorts and trousers\n");
	write_file(d, "b", "trousers!\n   shorts, trimmed  ");
	write_file(d, "c", "");
	return d;
}

/* What the grep processes pass on from those files, sorted: a line once
 * per pattern it matches, without white space at its ends. */
static const char bottles_want[] =
	"my pants\nshorts and trousers\nshorts and trousers\n"
	"shorts, trimmed\ntrousers!\n";

/* The lines of out that are not heartbeats, sorted; each heartbeat must be
 * the one for ms. */
static char *bottles_lines(const char *out, int ms)
{
	char *beat = fmt("No input received for %d ms.", ms);
	char *copy = strdup(out), *rest = malloc(strlen(out) + 2), *p, *s;
	size_t len = 0;

	cr_assert(copy && rest);
	for (p = strtok(copy, "\n"); p; p = strtok(NULL, "\n")) {
		if (strncmp(p, "No input", 8) == 0) {
			cr_assert_str_eq(p, beat);
			continue;
		}
		len += (size_t)sprintf(rest + len, "%s\n", p);
	}
	rest[len] = '\0';
	s = sorted_lines(rest);
	free(rest);
	free(copy);
	free(beat);
	return s;
}

Test(twins, bottles, .timeout = 30)
{
	char *d = bottles_files(), *out, *got;
	char *cmd = fmt("cd %s && %s --from-start --count 5 a b c", d,
			demo("bottles"));

	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	got = sorted_lines(out);
	cr_assert_str_eq(got, bottles_want, "%s:\n%s", cmd, out);
	free(got);
	free(out);
	free(cmd);
	rm_rf(d);
}

/* The lines from the files, with a heartbeat wherever 50 ms passed
 * without one (the options bundled, or with =). */
Test(twins, bottles_heartbeat_lines, .timeout = 30)
{
	char *d = bottles_files(), *out, *got;
	char *cmd = fmt("cd %s && %s -fc5 --heartbeat=50 a b c", d,
			demo("bottles_heartbeat"));

	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	got = bottles_lines(out, 50);
	cr_assert_str_eq(got, bottles_want, "%s:\n%s", cmd, out);
	free(got);
	free(out);
	free(cmd);
	rm_rf(d);
}

/* Followed from its end, a file gives nothing: heartbeats. A line added
 * after each heartbeat is printed once a follower is there to see it;
 * the twin leaves after the first (--count 1). At most 500 heartbeats. */
Test(twins, bottles_heartbeat_when_nothing_arrives, .timeout = 60)
{
	char *d = tmpdir(), *path = fmt("%s/a", d), *cmd;
	char line[256];
	int beats = 0, st;
	FILE *p, *f;

	write_file(d, "a", "old pants, never printed\n");
	cmd = fmt("%s --heartbeat 20 --count 1 %s", demo("bottles_heartbeat"),
		  path);
	fflush(NULL);
	p = popen(cmd, "r");
	cr_assert(p, "popen %s", cmd);
	while (fgets(line, sizeof(line), p)) {
		if (strcmp(line, "No input received for 20 ms.\n") != 0)
			break;
		cr_assert_lt(++beats, 500, "no line printed after %d "
			     "heartbeats", beats);
		f = fopen(path, "a");
		cr_assert(f);
		fprintf(f, "new pants %d\n", beats);
		cr_assert_eq(fclose(f), 0);
	}
	cr_assert_gt(beats, 0, "no heartbeat first: %s", line);
	cr_assert(strncmp(line, "new pants ", 10) == 0, "printed: %s", line);
	cr_assert_null(fgets(line, sizeof(line), p), "after --count 1: %s",
		       line);
	st = pclose(p);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	free(cmd);
	free(path);
	rm_rf(d);
}

Test(twins, bottles_command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "--delay", "--delay needs a value" },
		{ "--delay -1",
		  "--delay must be a number of seconds from 0 to 3600, not "
		  "'-1'" },
		{ "-d x", "-d must be a number of seconds from 0 to 3600, not "
		  "'x'" },
		{ "--count 0", "--count must be an integer from 1 to "
		  "9223372036854775807, not '0'" },
		{ "-fc", "-c needs a value" },
		{ "--from-start=yes",
		  "--from-start takes no value, not 'yes'" },
		{ "a ''", "a FILE must be named, not ''" },
	};
	static const struct bad_line heartbeat_bad[] = {
		{ "--heartbeat 0", "--heartbeat must be an integer from 1 to "
		  "3600000, not '0'" },
		{ "--heartbeat=x", "--heartbeat must be an integer from 1 to "
		  "3600000, not 'x'" },
		{ "--he", "ambiguous option '--he'" },
	};
	static const struct bad_line no_heartbeat[] = {
		{ "--heartbeat 10", "unknown option '--heartbeat'" },
	};

	help_on_stdout("bottles");
	help_on_stdout("bottles_heartbeat");
	BAD_LINES("bottles", cli_bad);
	BAD_LINES("bottles", bad);
	BAD_LINES("bottles", no_heartbeat);
	BAD_LINES("bottles_heartbeat", cli_bad);
	BAD_LINES("bottles_heartbeat", bad);
	BAD_LINES("bottles_heartbeat", heartbeat_bad);
}

/* ------------------------------------------------------------------------ */
/* The twins' output against pprocess's (tests/pprocess-output)              */
/* ------------------------------------------------------------------------ */

/* s with the figure of every "Time taken: " line replaced by "S", since
 * the time differs from run to run (malloc'd). */
static char *mask_time(const char *s)
{
	char *out = malloc(strlen(s) + 2), *o = out;
	const char *line = s;

	cr_assert(out);
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		if (strncmp(line, "Time taken: ", 12) == 0 && n > 12) {
			memcpy(o, "Time taken: S", 13);
			o += 13;
		} else {
			memcpy(o, line, n);
			o += n;
		}
		if (!nl)
			break;
		*o++ = '\n';
		line = nl + 1;
	}
	*o = '\0';
	return out;
}

static int compare_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of s, sorted, one a line (malloc'd). */
static char *sorted_lines(const char *s)
{
	char *copy = strdup(s), **lines, *p, *out;
	size_t n = 0, k, len = 0;

	cr_assert(copy);
	lines = malloc((strlen(s) + 1) * sizeof(*lines));
	out = malloc(strlen(s) + 2);
	cr_assert(lines && out);
	for (p = strtok(copy, "\n"); p; p = strtok(NULL, "\n"))
		lines[n++] = p;
	qsort(lines, n, sizeof(*lines), compare_lines);
	for (k = 0; k < n; k++)
		len += (size_t)sprintf(out + len, "%s\n", lines[k]);
	out[len] = '\0';
	free(lines);
	free(copy);
	return out;
}

/* A normaliser of output that same_as_recorded applies to both sides
 * before comparing them, where pprocess's order varies (malloc'd). */
typedef char *normaliser(const char *s);

/* Runs the shell command cmd and compares what it prints with what
 * pprocess's original printed (NAME.txt), the times aside: exactly, or,
 * where pprocess's order varies, once both have been put in one order by
 * normalise (NULL: none). */
static void same_as_recorded(const char *name, const char *cmd,
			     normaliser *normalise)
{
	char *path = fmt("%s/%s.txt", recorded_dir(), name);
	char *want, *out, *w, *g;
	size_t len;
	int st;

	want = read_file(path, &len);
	cr_assert(len > 0, "%s is empty", path);
	st = run(cmd, &out);
	cr_assert_eq(st, 0, "%s exited with %d:\n%s", cmd, st, out);
	w = mask_time(want);
	g = mask_time(out);
	if (normalise) {
		char *wn = normalise(w), *gn = normalise(g);

		free(w);
		free(g);
		w = wn;
		g = gn;
	}
	cr_assert_str_eq(g, w, "%s prints other lines than pprocess's %s%s:\n"
			 "%s", cmd, name, normalise ? " (normalised)" : "",
			 out);
	free(w);
	free(g);
	free(out);
	free(want);
	free(path);
}

/* The twin run with the delay the originals were recorded with. */
#define SAME_AS_PPROCESS(name)						\
	Test(same_as_pprocess, name, .timeout = 60)			\
	{								\
		char *cmd = fmt("%s --delay 0.01", demo(#name));	\
									\
		same_as_recorded(#name, cmd, NULL);			\
		free(cmd);						\
	}

SAME_AS_PPROCESS(simple)
SAME_AS_PPROCESS(simple1)
SAME_AS_PPROCESS(simple2)
SAME_AS_PPROCESS(simple_map)
SAME_AS_PPROCESS(simple_start)
SAME_AS_PPROCESS(simple_start_queue)
SAME_AS_PPROCESS(simple_create)
SAME_AS_PPROCESS(simple_create_map)
SAME_AS_PPROCESS(simple_create_queue)
SAME_AS_PPROCESS(simple_managed)
SAME_AS_PPROCESS(simple_managed_map)
SAME_AS_PPROCESS(simple_managed_map_reusable)
SAME_AS_PPROCESS(simple_managed_queue)
SAME_AS_PPROCESS(simple_pmap)
SAME_AS_PPROCESS(simple_pmap_iter)
SAME_AS_PPROCESS(simple_continuous_queue)
SAME_AS_PPROCESS(create_loop)
SAME_AS_PPROCESS(start_loop)

/* pprocess's two processes print at the same time after each
 * acknowledgement, so its order varies from run to run: the lines are
 * compared sorted (twins/two_way checks the twin's one order). */
Test(same_as_pprocess, two_way, .timeout = 60)
{
	char *cmd = fmt("%s --delay 0.01", demo("two_way"));

	same_as_recorded("two_way", cmd, sorted_lines);
	free(cmd);
}

/* The persistent twins, recorded as --start then --reconnect: run so,
 * and in one go, at an address in a fresh directory. */
static void same_as_pprocess_persistent(const char *name)
{
	char *d = tmpdir();
	char *one = fmt("%s --delay 0.01 --address %s/one", demo(name), d);
	char *two = fmt("%s --delay 0.01 --address %s/two --start && "
			"%s --delay 0.01 --address %s/two --reconnect",
			demo(name), d, demo(name), d);
	char *three = fmt("%s -d0.01 -sa %s/three && %s --address=%s/three "
			  "-rd 0.01", demo(name), d, demo(name), d);

	same_as_recorded(name, one, NULL);
	same_as_recorded(name, two, NULL);
	same_as_recorded(name, three, NULL);
	free(one);
	free(two);
	free(three);
	rm_rf(d);
}

Test(same_as_pprocess, simple_background_queue, .timeout = 60)
{
	same_as_pprocess_persistent("simple_background_queue");
}

Test(same_as_pprocess, simple_persistent_queue, .timeout = 60)
{
	same_as_pprocess_persistent("simple_persistent_queue");
}

Test(same_as_pprocess, simple_persistent_managed, .timeout = 60)
{
	same_as_pprocess_persistent("simple_persistent_managed");
}

/* The end of the Python 2 string literal (a repr) at p: after its closing
 * quote. */
static const char *literal_end(const char *p)
{
	char quote = *p++;

	cr_assert(quote == '\'' || quote == '"', "no string at '%.20s'",
		  p - 1);
	for (; *p != quote; p++) {
		cr_assert(*p && *p != '\n', "a string without its end");
		if (*p == '\\' && p[1])
			p++;
	}
	return p + 1;
}

/* Appends to o, at *len, the sequence at *p ("[" or "{", items separated
 * by ", ", then "]" or "}") with its items sorted as text. An item is a
 * string literal, and in a dictionary a key, ": ", and a list of string
 * literals, itself sorted. *p is moved past the sequence. */
static void sorted_sequence(const char **p, char *o, size_t *len)
{
	const char *s = *p;
	char open = *s++, close = open == '{' ? '}' : ']';
	char **items = malloc((strlen(s) + 1) * sizeof(*items));
	size_t n = 0, k;

	cr_assert(items);
	cr_assert(open == '{' || open == '[', "no sequence at '%.20s'", s);
	while (*s != close) {
		char *item = malloc(strlen(s) + 1);
		size_t ilen;
		const char *end = literal_end(s);

		cr_assert(item);
		ilen = (size_t)(end - s);
		memcpy(item, s, ilen);
		s = end;
		if (open == '{') {
			cr_assert(strncmp(s, ": ", 2) == 0,
				  "no ': ' at '%.20s'", s);
			memcpy(item + ilen, ": ", 2);
			ilen += 2;
			s += 2;
			sorted_sequence(&s, item, &ilen);
		}
		item[ilen] = '\0';
		items[n++] = item;
		if (*s != close) {
			cr_assert(strncmp(s, ", ", 2) == 0,
				  "no ', ' at '%.20s'", s);
			s += 2;
		}
	}
	qsort(items, n, sizeof(*items), compare_lines);
	o[(*len)++] = open;
	for (k = 0; k < n; k++) {
		*len += (size_t)sprintf(o + *len, "%s%s", k ? ", " : "",
					items[k]);
		free(items[k]);
	}
	o[(*len)++] = close;
	free(items);
	*p = s + 1;
}

/* s with every dictionary of lists of strings that start_indexer.py
 * prints put in one order: its entries sorted, and each list too
 * (malloc'd). pprocess prints a dictionary in its hash table's order, and
 * a word's files in the order their messages came from parsers running
 * at once; the twin's order is its own, the same every time
 * (twins::start_indexer checks it). */
static char *sorted_dicts(const char *s)
{
	char *out = malloc(strlen(s) + 1);
	size_t len = 0;

	cr_assert(out);
	while (*s) {
		if (*s == '{')
			sorted_sequence(&s, out, &len);
		else
			out[len++] = *s++;
	}
	out[len] = '\0';
	return out;
}

/* The index of the files of tests/pprocess-output/start_indexer/files,
 * which start_indexer.py was recorded answering the patterns there (the
 * last "Pattern: " left at the end of input): with the options, and with
 * the original's words after the directory. */
Test(same_as_pprocess, start_indexer, .timeout = 60)
{
	static const char *const args[] = {
		"--delay 0.01 files", "files 4 5 0.01", "-w4 -s5 -d0.01 files",
	};
	size_t i;

	for (i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
		char *cmd = fmt("cd %s/start_indexer && %s %s < patterns",
				recorded_dir(), demo("start_indexer"),
				args[i]);

		same_as_recorded("start_indexer", cmd, sorted_dicts);
		free(cmd);
	}
}

/* ------------------------------------------------------------------------ */
/* mandelbrot                                                               */
/* ------------------------------------------------------------------------ */

static void mandel_same(const char *size, const char *workers)
{
	char *d = tmpdir();
	char *par = fmt("%s %s %s -o %s/par.ppm >/dev/null", demo("mandelbrot"),
			size, workers, d);
	char *ser = fmt("%s %s --serial -o %s/ser.ppm >/dev/null",
			demo("mandelbrot"), size, d);
	char *p1 = fmt("%s/par.ppm", d), *p2 = fmt("%s/ser.ppm", d);
	char *a, *b;
	size_t la, lb;

	cr_assert_eq(run(par, NULL), 0, "%s failed", par);
	cr_assert_eq(run(ser, NULL), 0, "%s failed", ser);
	a = read_file(p1, &la);
	b = read_file(p2, &lb);
	cr_assert_eq(la, lb, "sizes differ: %zu and %zu", la, lb);
	cr_assert(memcmp(a, b, la) == 0, "the images differ");
	cr_assert(strncmp(a, "P6\n", 3) == 0, "not a binary PPM");
	free(a);
	free(b);
	free(p1);
	free(p2);
	free(par);
	free(ser);
	rm_rf(d);
}

Test(mandelbrot, parallel_equals_serial, .timeout = 60)
{
	mandel_same("--width 240 --height 180 --iter 200", "--workers 3");
	mandel_same("--width 33 --height 7", "--workers 5");
	mandel_same("--width 1 --height 1", "");
}

Test(mandelbrot, header_and_size, .timeout = 30)
{
	char *d = tmpdir();
	char *cmd = fmt("%s --width 64 --height 48 -o %s/m.ppm >/dev/null",
			demo("mandelbrot"), d);
	char *path = fmt("%s/m.ppm", d), *img;
	size_t len;
	const char hdr[] = "P6\n64 48\n255\n";

	cr_assert_eq(run(cmd, NULL), 0);
	img = read_file(path, &len);
	cr_assert_eq(len, sizeof(hdr) - 1 + 64 * 48 * 3);
	cr_assert(memcmp(img, hdr, sizeof(hdr) - 1) == 0);
	free(img);
	free(path);
	free(cmd);
	rm_rf(d);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* The pixels of the 8-bit RGB PNG at path (malloc'd, height rows of
 * width * 3 bytes), its size in *width and *height. The chunks are read,
 * and the zlib stream of stored blocks in IDAT is unpacked by hand, with
 * its checks: the CRC of every chunk, the length of every block and the
 * Adler-32 of the whole. */
static unsigned char *png_pixels(const char *path, uint32_t *width,
				 uint32_t *height)
{
	unsigned char *png, *z = NULL, *raw, *pixels, *pos;
	size_t plen, zlen = 0, rlen = 0, rowlen, y;
	uint32_t a = 1, b = 0;

	*width = *height = 0;
	png = (unsigned char *)read_file(path, &plen);
	cr_assert(plen > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0,
		  "%s: not a PNG", path);
	for (pos = png + 8; pos + 12 <= png + plen;) {
		uint32_t n = get32(pos), crc = 0xffffffffu;
		size_t i;
		int k;

		cr_assert(pos + 12 + n <= png + plen, "chunk past the end");
		for (i = 4; i < 8 + (size_t)n; i++) {
			crc ^= pos[i];
			for (k = 0; k < 8; k++)
				crc = crc & 1 ? 0xedb88320u ^ (crc >> 1) :
						crc >> 1;
		}
		cr_assert_eq(crc ^ 0xffffffffu, get32(pos + 8 + n),
			     "bad CRC in a %.4s chunk", (char *)pos + 4);
		if (memcmp(pos + 4, "IHDR", 4) == 0) {
			cr_assert_eq(n, 13);
			*width = get32(pos + 8);
			*height = get32(pos + 12);
			cr_assert_eq(pos[16], 8);
			cr_assert_eq(pos[17], 2);
		} else if (memcmp(pos + 4, "IDAT", 4) == 0) {
			z = realloc(z, zlen + n);
			cr_assert(z);
			memcpy(z + zlen, pos + 8, n);
			zlen += n;
		}
		pos += 12 + n;
	}
	cr_assert(*width > 0 && *height > 0, "%s: no IHDR", path);
	cr_assert(z && zlen > 6);
	raw = malloc(zlen);
	cr_assert(raw);
	for (pos = z + 2;;) {
		size_t n;
		int last;

		cr_assert(pos + 5 <= z + zlen, "blocks past the end");
		n = (size_t)pos[1] | (size_t)pos[2] << 8;
		last = pos[0] & 1;
		cr_assert(pos + 5 + n <= z + zlen, "block past the end");
		cr_assert_eq(pos[0] & 6, 0, "not a stored block");
		cr_assert_eq(n ^ ((size_t)pos[3] | (size_t)pos[4] << 8), 0xffff);
		memcpy(raw + rlen, pos + 5, n);
		rlen += n;
		pos += 5 + n;
		if (last)
			break;
	}
	for (y = 0; y < rlen; y++) {
		a = (a + raw[y]) % 65521;
		b = (b + a) % 65521;
	}
	cr_assert(pos + 4 <= z + zlen, "no Adler-32");
	cr_assert_eq(get32(pos), (b << 16) | a, "bad Adler-32");
	rowlen = (size_t)*width * 3;
	cr_assert_eq(rlen, (rowlen + 1) * *height);
	pixels = malloc(rowlen * *height);
	cr_assert(pixels);
	for (y = 0; y < *height; y++) {
		cr_assert_eq(raw[y * (rowlen + 1)], 0, "filter byte");
		memcpy(pixels + y * rowlen, raw + y * (rowlen + 1) + 1, rowlen);
	}
	free(raw);
	free(z);
	free(png);
	return pixels;
}

/* The PNG holds the same pixels as the PPM. */
Test(mandelbrot, png_has_the_ppm_pixels, .timeout = 30)
{
	char *d = tmpdir();
	char *c1 = fmt("%s --width 300 --height 250 -o %s/m.png >/dev/null",
		       demo("mandelbrot"), d);
	char *c2 = fmt("%s --width 300 --height 250 --serial -o %s/m.ppm "
		       ">/dev/null", demo("mandelbrot"), d);
	char *p1 = fmt("%s/m.png", d), *p2 = fmt("%s/m.ppm", d);
	const char hdr[] = "P6\n300 250\n255\n";
	unsigned char *pixels;
	uint32_t width, height;
	char *ppm;
	size_t mlen;

	cr_assert_eq(run(c1, NULL), 0);
	cr_assert_eq(run(c2, NULL), 0);
	pixels = png_pixels(p1, &width, &height);
	ppm = read_file(p2, &mlen);
	cr_assert_eq(width, 300);
	cr_assert_eq(height, 250);
	cr_assert_eq(mlen, sizeof(hdr) - 1 + 300 * 250 * 3);
	cr_assert(memcmp(ppm, hdr, sizeof(hdr) - 1) == 0);
	cr_assert(memcmp(pixels, ppm + sizeof(hdr) - 1, 300 * 250 * 3) == 0,
		  "the PNG's pixels are not the PPM's");
	free(pixels);
	free(ppm);
	free(p1);
	free(p2);
	free(c1);
	free(c2);
	rm_rf(d);
}

/* The progress line: off a terminal, none, unless --progress asks for it,
 * and then only its last state; on a terminal, drawn at once and erased
 * at the end, whether the rows are computed in workers or serially. The
 * image is the same every time. */
Test(mandelbrot, progress, .timeout = 60)
{
	static const char *const modes[] = { "-j 3", "--serial" };
	static const char first[] = "\r\033[Kmandelbrot: rows computed: 0 "
				    "of 90 (0%)";
	char *d = tmpdir(), *errpath = fmt("%s/err", d), *ref, *cmd, *out;
	char *img, *err, *tty, *path = fmt("%s/m.ppm", d);
	const char *tail;
	size_t k, rlen, len;
	int st;

	cmd = fmt("%s --width 120 --height 90 -o %s/ref.ppm 2>%s",
		  demo("mandelbrot"), d, errpath);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	err = read_file(errpath, &len);
	cr_assert_str_eq(err, "", "%s: wrote on standard error", cmd);
	free(err);
	free(out);
	free(cmd);
	cmd = fmt("%s/ref.ppm", d);
	ref = read_file(cmd, &rlen);
	free(cmd);
	for (k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
		cmd = fmt("%s --width 120 --height 90 %s --progress -o %s "
			  "2>%s", demo("mandelbrot"), modes[k], path, errpath);
		cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
		cr_assert(strncmp(out, "mandelbrot: wrote ", 18) == 0, "%s: %s",
			  cmd, out);
		err = read_file(errpath, &len);
		cr_assert_str_eq(err, "mandelbrot: rows computed: 90 of 90 "
				 "(100%)\n", "%s", cmd);
		img = read_file(path, &len);
		cr_assert(len == rlen && memcmp(img, ref, len) == 0,
			  "%s: another image", cmd);
		free(img);
		free(err);
		free(out);
		free(cmd);

		cmd = fmt("%s --width 120 --height 90 %s -o %s >/dev/null",
			  demo("mandelbrot"), modes[k], path);
		tty = on_a_terminal(cmd, &st);
		cr_assert_eq(st, 0, "%s", cmd);
		cr_assert(strncmp(tty, first, sizeof(first) - 1) == 0,
			  "%s: no progress line at once:\n%s", cmd, tty);
		tail = after_last(tty, "\r\033[K");
		cr_assert(tail && !*tail, "%s: not erased at the end:\n%s",
			  cmd, tty);
		img = read_file(path, &len);
		cr_assert(len == rlen && memcmp(img, ref, len) == 0,
			  "%s: another image", cmd);
		free(img);
		free(tty);
		free(cmd);
	}
	free(ref);
	free(path);
	free(errpath);
	rm_rf(d);
}

Test(mandelbrot, command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "--width 0", "--width must be an integer from 1 to 20000, "
		  "not '0'" },
		{ "--height x", "--height must be an integer from 1 to 20000, "
		  "not 'x'" },
		{ "--iter", "--iter needs a value" },
		{ "--workers=0", "--workers must be an integer from 1 to 1024, "
		  "not '0'" },
		{ "-sj0", "-j must be an integer from 1 to 1024, not '0'" },
		{ "-o", "-o needs a value" },
		{ "-o ''", "-o needs a file name, not ''" },
		{ "--serial=1", "--serial takes no value, not '1'" },
		{ "x.ppm", "unexpected argument 'x.ppm'" },
		/* This build has no MPI (build/mpi/mandelbrot has). */
		{ "--mpi", "--mpi: this build has no MPI (make mpi builds "
		  "build/mpi/mandelbrot)" },
	};
	char *d = tmpdir();
	char *a = fmt("%s --width=33 --height 7 -so %s/a.ppm >/dev/null",
		      demo("mandelbrot"), d);
	char *b = fmt("%s --wid 33 --hei=7 -j2 --output=%s/b.ppm >/dev/null",
		      demo("mandelbrot"), d);
	char *pa = fmt("%s/a.ppm", d), *pb = fmt("%s/b.ppm", d), *ia, *ib;
	size_t la, lb;

	help_on_stdout("mandelbrot");
	BAD_LINES("mandelbrot", cli_bad);
	BAD_LINES("mandelbrot", bad);
	/* Bundled, with =, cut short: the same image. */
	cr_assert_eq(run(a, NULL), 0, "%s", a);
	cr_assert_eq(run(b, NULL), 0, "%s", b);
	ia = read_file(pa, &la);
	ib = read_file(pb, &lb);
	cr_assert(la == sizeof("P6\n33 7\n255\n") - 1 + 33 * 7 * 3 &&
		  la == lb && memcmp(ia, ib, la) == 0, "%s and %s", a, b);
	free(ia);
	free(ib);
	free(pa);
	free(pb);
	free(a);
	free(b);
	rm_rf(d);
}

/* ------------------------------------------------------------------------ */
/* ppygmy                                                                   */
/* ------------------------------------------------------------------------ */

/* Runs "ppygmy ARGS -qo DIR/NAME.png" (quietly, the options bundled) and
 * returns the PNG file (malloc'd, *len bytes). */
static char *ppygmy_file(const char *dir, const char *name, const char *args,
			 size_t *len)
{
	char *cmd = fmt("%s %s -qo %s/%s.png", demo("ppygmy"), args, dir,
			name);
	char *path = fmt("%s/%s.png", dir, name), *out, *png;
	int st = run(cmd, &out);

	cr_assert_eq(st, 0, "%s exited with %d:\n%s", cmd, st, out);
	cr_assert_str_eq(out, "", "%s printed with --quiet", cmd);
	png = read_file(path, len);
	free(out);
	free(path);
	free(cmd);
	return png;
}

/* The five ways of rendering give the same file byte for byte, and the
 * picture is not blank. */
static void ppygmy_same(const char *size, const char *limit)
{
	static const char *const modes[] = { "--exchange", "--pmap",
					     "--queue", "--reuse" };
	char *d = tmpdir(), *ser, *path, *args;
	unsigned char *px, first[3];
	uint32_t width, height;
	size_t slen, k, lit = 0, other = 0;

	args = fmt("--serial %s", size);
	ser = ppygmy_file(d, "serial", args, &slen);
	free(args);
	for (k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
		size_t len;
		char *png;

		args = fmt("%s %s %s", modes[k], size, limit);
		png = ppygmy_file(d, modes[k] + 2, args, &len);
		cr_assert(len == slen && memcmp(png, ser, len) == 0,
			  "ppygmy %s: not the serial image", args);
		free(png);
		free(args);
	}
	path = fmt("%s/serial.png", d);
	px = png_pixels(path, &width, &height);
	memcpy(first, px, 3);
	for (k = 0; k < (size_t)width * height; k++) {
		lit += px[3 * k] || px[3 * k + 1] || px[3 * k + 2];
		other += memcmp(px + 3 * k, first, 3) != 0;
	}
	cr_assert(lit > 0 && other > 0, "a blank image (%s)", size);
	free(px);
	free(path);
	free(ser);
	rm_rf(d);
}

Test(ppygmy, five_ways_identical, .timeout = 60)
{
	ppygmy_same("--width 48 --height 30", "3");
	/* More processes than rows, and rows of one pixel. */
	ppygmy_same("--width 1 --height=3", "--limit=5");
}

/* The image is the one pprocess's ppygmy.py draws of scene.py's scene,
 * given the twin's random numbers (tests/pprocess-output/record.sh). */
Test(ppygmy, draws_what_pprocess_draws, .timeout = 60)
{
	char *d = tmpdir(), *ref = fmt("%s/ppygmy/ppygmy-60x40.ppm",
				       recorded_dir());
	const char hdr[] = "P6\n60 40\n255\n";
	unsigned char *px;
	uint32_t width, height;
	char *ppm, *png, *path;
	size_t len, plen;

	ppm = read_file(ref, &len);
	cr_assert_eq(len, sizeof(hdr) - 1 + 60 * 40 * 3, "%s", ref);
	cr_assert(memcmp(ppm, hdr, sizeof(hdr) - 1) == 0);
	png = ppygmy_file(d, "reuse", "--reuse --width 60 --height 40 2",
			  &plen);
	path = fmt("%s/reuse.png", d);
	px = png_pixels(path, &width, &height);
	cr_assert_eq(width, 60);
	cr_assert_eq(height, 40);
	cr_assert(memcmp(px, ppm + sizeof(hdr) - 1, 60 * 40 * 3) == 0,
		  "not pprocess's image");
	free(px);
	free(path);
	free(png);
	free(ppm);
	free(ref);
	rm_rf(d);
}

/* scene.py's size, 300 x 200, unless told otherwise. */
Test(ppygmy, default_size, .timeout = 60)
{
	char *d = tmpdir(), *png, *path = fmt("%s/pmap.png", d);
	unsigned char *px;
	uint32_t width, height;
	size_t len;

	png = ppygmy_file(d, "pmap", "--pmap 2", &len);
	px = png_pixels(path, &width, &height);
	cr_assert_eq(width, 300);
	cr_assert_eq(height, 200);
	free(px);
	free(png);
	free(path);
	rm_rf(d);
}

/* The progress as pprocess prints it: the number of processes, then for
 * each row nine backspaces, the percentage and the row; a newline. */
Test(ppygmy, progress_as_pprocess, .timeout = 30)
{
	char *d = tmpdir(), *cmd, *out, *want, *p;
	size_t len = 0, k;
	int row;

	cmd = fmt("%s --pmap --width 20 --height 10 -o %s/p.png 2",
		  demo("ppygmy"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	want = malloc(4096);
	cr_assert(want);
	len = (size_t)sprintf(want, "Number of processes: 2\n");
	for (row = 0; row < 10; row++)
		len += (size_t)sprintf(want + len, "\b\b\b\b\b\b\b\b\b%3d%% %3d",
				       (row + 1) * 10, row);
	sprintf(want + len, "\n");
	cr_assert_str_eq(out, want, "pmap: the progress in row order");
	free(out);
	free(cmd);

	/* In arrival order: ten figures, the last at 100%. */
	cmd = fmt("%s --exchange --width 20 --height 10 -o %s/e.png 3",
		  demo("ppygmy"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	cr_assert(strncmp(out, "Number of processes: 3\n", 23) == 0, "%s",
		  out);
	for (k = 0, p = out; (p = strstr(p, "\b\b\b\b\b\b\b\b\b")); k++)
		p += 9;
	cr_assert_eq(k, 10, "%zu progress figures:\n%s", k, out);
	p = strrchr(out, '\b');
	cr_assert(p && strncmp(p + 1, "100% ", 5) == 0 &&
		  out[strlen(out) - 1] == '\n', "%s", out);
	free(out);
	free(cmd);
	free(want);
	rm_rf(d);
}

Test(ppygmy, command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "--width 0", "--width must be an integer from 1 to 20000, "
		  "not '0'" },
		{ "--height=x", "--height must be an integer from 1 to 20000, "
		  "not 'x'" },
		{ "0", "LIMIT must be an integer from 1 to 10000, not '0'" },
		{ "--pmap x", "LIMIT must be an integer from 1 to 10000, not "
		  "'x'" },
		{ "--limit", "--limit needs a value" },
		{ "-ql 0", "-l must be an integer from 1 to 10000, not '0'" },
		{ "-o", "-o needs a value" },
		{ "--output=", "--output needs a file name, not ''" },
		{ "--queue=1", "--queue takes no value, not '1'" },
		{ "3 4", "unexpected argument '4'" },
	};

	help_on_stdout("ppygmy");
	BAD_LINES("ppygmy", cli_bad);
	BAD_LINES("ppygmy", bad);
}

/* ------------------------------------------------------------------------ */
/* wordcount                                                                */
/* ------------------------------------------------------------------------ */

/* A small tree of text: mixed case, punctuation, digits, words cut by
 * underscores and apostrophes, an empty file, a file without a final
 * newline, nested directories. */
static char *text_tree(void)
{
	char *d = tmpdir(), *sub = fmt("%s/sub", d), *deep;
	int i;

	cr_assert_eq(mkdir(sub, 0755), 0);
	deep = fmt("%s/sub/deeper", d);
	cr_assert_eq(mkdir(deep, 0755), 0);
	write_file(d, "a.txt", "The quick brown Fox jumps over the lazy dog.\n"
		   "THE END, the end; it's the_end 42times\n");
	write_file(d, "empty", "");
	write_file(d, "sub/b.md", "# Title\n\nSome *markdown* text: fox, FOX, "
		   "Fox!\ndon't stop-believing\n");
	write_file(d, "sub/deeper/c", "no final newline fox");
	for (i = 0; i < 40; i++) {
		char name[32], text[128];

		snprintf(name, sizeof(name), "sub/deeper/n%02d.txt", i);
		snprintf(text, sizeof(text),
			 "file number %d says alpha%c beta gamma %s\n", i,
			 'a' + i % 26, i % 3 ? "delta" : "Epsilon");
		write_file(d, name, text);
	}
	free(sub);
	free(deep);
	return d;
}

/* wordcount --all on dir, sorted, against tr | sort | uniq -c on the same
 * files (each file's words taken separately, as wordcount does). */
static void wordcount_matches(const char *dir, const char *opts)
{
	char *mine = fmt("%s --all %s '%s' 2>/dev/null | LC_ALL=C sort",
			 demo("wordcount"), opts, dir);
	char *ref = fmt("find '%s' -type f -exec sh -c "
			"'for f; do cat \"$f\"; echo; done' _ {} + | "
			"LC_ALL=C tr -cs 'A-Za-z' '\\n' | "
			"LC_ALL=C tr 'A-Z' 'a-z' | grep -v '^$' | "
			"LC_ALL=C sort | uniq -c | "
			"awk '{print $1, $2}' | LC_ALL=C sort", dir);
	char *a, *b;

	cr_assert_eq(run(mine, &a), 0, "%s failed", mine);
	cr_assert_eq(run(ref, &b), 0, "%s failed", ref);
	cr_assert(strlen(b) > 0);
	cr_assert_str_eq(a, b, "wordcount %s differs from tr/sort/uniq", opts);
	free(a);
	free(b);
	free(mine);
	free(ref);
}

Test(wordcount, equals_tr_sort_uniq, .timeout = 60)
{
	char *d = text_tree();

	wordcount_matches(d, "");
	wordcount_matches(d, "--workers 3 --files-per-task 1");
	wordcount_matches(d, "--workers 1 --files-per-task 100");
	wordcount_matches(d, "--workers 4 --files-per-task 7 --fork-per-task");
	/* Bundled, with =, cut short. */
	wordcount_matches(d, "-aj3 --files-per-task=2 --fork");
	rm_rf(d);
}

Test(wordcount, top_words, .timeout = 30)
{
	char *d = text_tree();
	char *cmd = fmt("%s --top 3 '%s' 2>/dev/null", demo("wordcount"), d);
	char *out;

	cr_assert_eq(run(cmd, &out), 0);
	/* file, number, says: 40 each, in word order; then beta, gamma. */
	cr_assert_str_eq(out, "40 beta\n40 file\n40 gamma\n");
	free(out);
	free(cmd);
	cmd = fmt("%s '%s' -t2 2>/dev/null", demo("wordcount"), d);
	cr_assert_eq(run(cmd, &out), 0);
	cr_assert_str_eq(out, "40 beta\n40 file\n", "%s", cmd);
	free(out);
	free(cmd);
	rm_rf(d);
}

/* The progress line: off a terminal, none, unless --progress asks for it,
 * and then only its last state; on a terminal, drawn at once and erased
 * before the summary. Standard output is the same every time. */
Test(wordcount, progress, .timeout = 60)
{
	static const char read44[] = "wordcount: 44 files read (";
	static const char last[] = "wordcount: files counted: 44 of 44 "
				   "(100%)\n";
	static const char first[] = "\r\033[Kwordcount: files found: 1";
	char *d = text_tree(), *o = tmpdir(), *errpath = fmt("%s/err", o);
	char *cmd, *plain, *out, *err, *tty;
	const char *tail;
	size_t len;
	int st;

	/* Not a terminal: one line, the summary. */
	cmd = fmt("%s -a %s 2>%s", demo("wordcount"), d, errpath);
	cr_assert_eq(run(cmd, &plain), 0, "%s", cmd);
	cr_assert(strlen(plain) > 0);
	err = read_file(errpath, &len);
	cr_assert(strncmp(err, read44, sizeof(read44) - 1) == 0 &&
		  strchr(err, '\n') == err + len - 1,
		  "%s: not just the summary:\n%s", cmd, err);
	free(err);
	free(cmd);

	/* --progress: the last state, then the summary. */
	cmd = fmt("%s -a --progress %s 2>%s", demo("wordcount"), d, errpath);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	cr_assert_str_eq(out, plain, "%s: not the same output", cmd);
	err = read_file(errpath, &len);
	cr_assert(len > sizeof(last) &&
		  strncmp(err, last, sizeof(last) - 1) == 0 &&
		  strncmp(err + sizeof(last) - 1, read44,
			  sizeof(read44) - 1) == 0 &&
		  strchr(err + sizeof(last) - 1, '\n') == err + len - 1,
		  "%s: not the last state, then the summary:\n%s", cmd, err);
	free(err);
	free(out);
	free(cmd);

	/* A terminal: the line is drawn at once, erased before the summary,
	 * which is the last line (the terminal ends it with \r\n). */
	cmd = fmt("%s -a %s >%s/out", demo("wordcount"), d, o);
	tty = on_a_terminal(cmd, &st);
	cr_assert_eq(st, 0, "%s", cmd);
	cr_assert(strncmp(tty, first, sizeof(first) - 1) == 0,
		  "%s: no progress line at once:\n%s", cmd, tty);
	tail = after_last(tty, "\r\033[K");
	cr_assert(tail && strncmp(tail, read44, sizeof(read44) - 1) == 0 &&
		  strcmp(tail + strlen(tail) - 4, " s\r\n") == 0 &&
		  !strchr(tail, '\r')[2], "%s: not erased before the "
		  "summary:\n%s", cmd, tty);
	free(errpath);
	errpath = fmt("%s/out", o);
	out = read_file(errpath, &len);
	cr_assert_str_eq(out, plain, "%s: not the same output", cmd);
	free(out);
	free(tty);
	free(cmd);
	free(plain);
	free(errpath);
	rm_rf(o);
	rm_rf(d);
}

Test(wordcount, command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "", "no PATH given" },
		{ "-a", "no PATH given" },
		{ "--workers 0 .",
		  "--workers must be an integer from 1 to 1024, not '0'" },
		{ "-aj x .", "-j must be an integer from 1 to 1024, not 'x'" },
		{ "--files-per-task x .", "--files-per-task must be an integer "
		  "from 1 to 1000000, not 'x'" },
		{ "--top", "--top needs a value" },
		{ "-t -1 .", "-t must be an integer from 0 to 1000000000, not "
		  "'-1'" },
		{ "--max-files=x .", "--max-files must be an integer from 0 to "
		  "1000000000, not 'x'" },
		{ "--fork-per-task=1 .", "--fork-per-task takes no value, not "
		  "'1'" },
		/* This build has no MPI (build/mpi/wordcount has). */
		{ "--mpi .", "--mpi: this build has no MPI (make mpi builds "
		  "build/mpi/wordcount)" },
	};
	char *cmd;

	help_on_stdout("wordcount");
	BAD_LINES("wordcount", cli_bad);
	BAD_LINES("wordcount", bad);
	cmd = fmt("%s /nonexistent/dir 2>/dev/null", demo("wordcount"));
	cr_assert_eq(run(cmd, NULL), 1);
	free(cmd);
}

/* ------------------------------------------------------------------------ */
/* indexer                                                                  */
/* ------------------------------------------------------------------------ */

Test(indexer, queries, .timeout = 30)
{
	char *d = tmpdir(), *cmd, *out, *want;

	write_file(d, "a.txt", "apple banana\n");
	write_file(d, "b.txt", "Banana, cherry!\n");
	write_file(d, "c.txt", "cherry APPLE banana\n");
	write_file(d, "d.txt", "nothing to see\n");
	cmd = fmt("%s --window 2 --slice 1 %s banana 'apple cherry' zzz "
		  "2>/dev/null", demo("indexer"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	want = fmt("banana: 3 files\n  %s/a.txt\n  %s/b.txt\n  %s/c.txt\n"
		   "apple cherry: 1 file\n  %s/c.txt\n"
		   "zzz: 0 files\n", d, d, d, d);
	cr_assert_str_eq(out, want);
	free(out);
	free(cmd);
	free(want);

	/* Queries from standard input, a bigger window than files. */
	cmd = fmt("printf 'see\\nCHERRY\\n' | %s --window 8 --slice 3 %s "
		  "2>/dev/null", demo("indexer"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	want = fmt("see: 1 file\n  %s/d.txt\n"
		   "CHERRY: 2 files\n  %s/b.txt\n  %s/c.txt\n", d, d, d);
	cr_assert_str_eq(out, want);
	free(out);
	free(cmd);
	free(want);

	/* Bundled, with =, cut short; a query that looks like an option. */
	cmd = fmt("%s -w2 --sli=1 -d0 %s --apple 2>/dev/null",
		  demo("indexer"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	want = fmt("--apple: 2 files\n  %s/a.txt\n  %s/c.txt\n", d, d);
	cr_assert_str_eq(out, want);
	free(out);
	free(cmd);
	free(want);
	rm_rf(d);
}

Test(indexer, command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "", "no PATH given" },
		{ "-w 3", "no PATH given" },
		{ "--window 0 .", "--window must be an integer from 1 to 1024, "
		  "not '0'" },
		{ "-s x .",
		  "-s must be an integer from 1 to 1000000, not 'x'" },
		{ "--delay", "--delay needs a value" },
		{ "--delay=-1 .", "--delay must be a number of seconds from 0 "
		  "to 3600, not '-1'" },
	};

	help_on_stdout("indexer");
	BAD_LINES("indexer", cli_bad);
	BAD_LINES("indexer", bad);
}

/* ------------------------------------------------------------------------ */
/* start_indexer, the twin of pprocess's tests/start_indexer.py              */
/* ------------------------------------------------------------------------ */

/* A directory for start_indexer: names that Python's repr quotes in its
 * two ways or escapes, a link to a file (indexed under its own name), a
 * dangling link and a subdirectory (neither indexed). */
static char *start_indexer_files(void)
{
	char *d = tmpdir(), *path;

	write_file(d, "a", "Hello, world! hello\n");
	write_file(d, "it's", "world (of) words -- don't\n");
	write_file(d, "x\ty", "tabbed\n");
	path = fmt("%s/link", d);
	cr_assert_eq(symlink("a", path), 0, "%s", strerror(errno));
	free(path);
	path = fmt("%s/dangling", d);
	cr_assert_eq(symlink("nowhere", path), 0, "%s", strerror(errno));
	free(path);
	path = fmt("%s/sub", d);
	cr_assert_eq(mkdir(path, 0755), 0, "%s", strerror(errno));
	free(path);
	write_file(d, "sub/deep", "hello deep\n");
	return d;
}

/* What start_indexer prints for those patterns (the last line without
 * its newline) on the files of d: the words in byte order, each word's
 * files in the order of their names, whatever the window and slice. */
static char *start_indexer_answers(const char *d)
{
	return fmt("Pattern: {'hello': ['%s/a', '%s/link']}\n"
		   "Pattern: {'Hello': ['%s/a', '%s/link']}\n"
		   "Pattern: {'words': [\"%s/it's\"], "
		   "'world': ['%s/a', \"%s/it's\", '%s/link']}\n"
		   "Pattern: {'Hello': ['%s/a', '%s/link'], "
		   "'don': [\"%s/it's\"], 'hello': ['%s/a', '%s/link'], "
		   "'of': [\"%s/it's\"], 'tabbed': ['%s/x\\ty'], "
		   "'words': [\"%s/it's\"], "
		   "'world': ['%s/a', \"%s/it's\", '%s/link']}\n"
		   "Pattern: []\n"
		   "Pattern: {'tabbed': ['%s/x\\ty']}\n"
		   "Pattern: ", d, d, d, d, d, d, d, d, d, d, d, d, d, d, d, d,
		   d, d, d, d);
}

Test(twins, start_indexer, .timeout = 60)
{
	static const char *const args[] = {
		"%s", "%s/", "-w1 -s1 %s", "--window 8 --slice 2 %s",
		"%s 2 3 0", "--delay=0.001 %s 1",
	};
	char *d = start_indexer_files(), *want = start_indexer_answers(d);
	char *cmd, *out;
	size_t i;

	for (i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
		char *where = fmt(args[i], d);

		cmd = fmt("printf 'hel\\nHel\\nwor\\n\\ndeep\\nt' | %s %s",
			  demo("start_indexer"), where);
		cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
		cr_assert_str_eq(out, want, "%s", cmd);
		free(out);
		free(cmd);
		free(where);
	}

	/* --noprompt, where the original takes it (after all its words)
	 * and elsewhere: the index is built, nothing is asked. */
	cmd = fmt("%s %s 4 5 0 --noprompt </dev/null && %s --nop %s "
		  "</dev/null", demo("start_indexer"), d, demo("start_indexer"),
		  d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	cr_assert_str_eq(out, "", "%s", cmd);
	free(out);
	free(cmd);
	free(want);
	rm_rf(d);

	/* An empty directory: the empty pattern reaches no word. */
	d = tmpdir();
	cmd = fmt("printf '\\na\\n' | %s %s", demo("start_indexer"), d);
	cr_assert_eq(run(cmd, &out), 0, "%s", cmd);
	cr_assert_str_eq(out, "Pattern: {}\nPattern: []\nPattern: ");
	free(out);
	free(cmd);
	rm_rf(d);
}

Test(twins, start_indexer_command_line, .timeout = 30)
{
	static const struct bad_line bad[] = {
		{ "", "no DIRECTORY given" },
		{ "-w 3", "no DIRECTORY given" },
		{ "''", "DIRECTORY needs a directory, not ''" },
		{ "--window 0 .",
		  "--window must be an integer from 1 to 1024, not '0'" },
		{ "-s x .",
		  "-s must be an integer from 1 to 1000000, not 'x'" },
		{ "--delay", "--delay needs a value" },
		{ "--delay=-1 .", "--delay must be a number of seconds from 0 "
		  "to 3600, not '-1'" },
		{ ". 0", "WINDOW must be an integer from 1 to 1024, not '0'" },
		{ ". 4 5x", "SLICE must be an integer from 1 to 1000000, not "
		  "'5x'" },
		{ ". 4 5 x", "DELAY must be a number of seconds from 0 to "
		  "3600, not 'x'" },
		{ ". 4 5 0 extra", "unexpected argument 'extra'" },
		{ "--noprompt=1 .", "--noprompt takes no value, not '1'" },
	};
	static const char *const missing[][2] = {
		{ "missing", "No such file or directory" },
		{ "file", "Not a directory" },
	};
	char *d = tmpdir();
	size_t i;

	help_on_stdout("start_indexer");
	BAD_LINES("start_indexer", cli_bad);
	BAD_LINES("start_indexer", bad);

	/* A directory that is not there, a file that is no directory: one
	 * line saying so, nothing asked, status 1. */
	write_file(d, "file", "words\n");
	for (i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		char *path = fmt("%s/%s", d, missing[i][0]);
		char *want = fmt("start_indexer: %s: %s\n", path,
				 missing[i][1]);

		fails_saying(d, "start_indexer", path, 1, want);
		free(want);
		free(path);
	}
	rm_rf(d);
}

/* ------------------------------------------------------------------------ */
/* prun                                                                     */
/* ------------------------------------------------------------------------ */

/* Runs "INPUT | prun ARGS" and returns its status; output in *out. */
static int prun(const char *input, const char *args, char **out)
{
	char *cmd = fmt("printf '%s' | %s %s", input, demo("prun"), args);
	int st = run(cmd, out);

	free(cmd);
	return st;
}

Test(prun, keeps_input_order, .timeout = 30)
{
	char *out;

	/* Later lines finish first: job n sleeps 0.(7 - n) s. */
	cr_assert_eq(prun("1\\n2\\n3\\n4\\n5\\n6\\n",
			  "-k -j 3 'n={}; sleep 0.$((7 - n)); echo $n'",
			  &out), 0);
	cr_assert_str_eq(out, "1\n2\n3\n4\n5\n6\n");
	free(out);
}

Test(prun, without_k_prints_as_jobs_finish, .timeout = 30)
{
	char *out;

	/* Job 2 (0.1 s) finishes well before job 1 (1 s). */
	cr_assert_eq(prun("1\\n2\\n", "-j 2 'case {} in 1) sleep 1;; "
			  "*) sleep 0.1;; esac; echo {}'", &out), 0);
	cr_assert_str_eq(out, "2\n1\n");
	free(out);
}

Test(prun, output_of_a_job_kept_together, .timeout = 30)
{
	char *out;
	int k;

	cr_assert_eq(prun("1\\n2\\n3\\n4\\n", "-j 4 'echo {}a; sleep 0.1; "
			  "echo {}b'", &out), 0);
	for (k = 1; k <= 4; k++) {
		char want[16];

		snprintf(want, sizeof(want), "%da\n%db\n", k, k);
		cr_assert(strstr(out, want), "job %d split:\n%s", k, out);
	}
	free(out);
}

Test(prun, arguments_are_data, .timeout = 30)
{
	char *out;

	/* Through the shell (echo is a builtin): quoted. */
	cr_assert_eq(prun("a b\\nit'\\''s\\n$HOME\\n*\\n", "-k -j 2 echo",
			  &out), 0);
	cr_assert_str_eq(out, "a b\nit's\n$HOME\n*\n");
	free(out);
	/* Exec'd directly (expr is a program): one word each. */
	cr_assert_eq(prun("a b\\n*\\n3\\n", "-k -j 2 expr {} = {}", &out),
		     0);
	cr_assert_str_eq(out, "1\n1\n1\n");
	free(out);
	/* Inside a word, and appended when there is no {}. */
	cr_assert_eq(prun("x\\ny\\n", "-k expr pre{}post", &out), 0);
	cr_assert_str_eq(out, "prexpost\npreypost\n");
	free(out);
	cr_assert_eq(prun("x y\\n", "-k expr", &out), 0);
	cr_assert_str_eq(out, "x y\n");
	free(out);
}

Test(prun, propagates_failure, .timeout = 30)
{
	char *out;

	cr_assert_eq(prun("1\\n2\\n3\\n", "-j 2 'test {} -ne 2'", &out), 1);
	free(out);
	cr_assert_eq(prun("1\\n2\\n3\\n", "-j 2 'test {} -ne 9'", &out), 0);
	free(out);
	cr_assert_eq(prun("x\\n", "/nonexistent/program 2>/dev/null", &out), 1);
	free(out);
	cr_assert_eq(prun("1\\n", "'kill -9 $$'", &out), 1);
	free(out);
	/* No input: nothing to run, nothing failed. */
	cr_assert_eq(prun("", "false", &out), 0);
	free(out);
}

Test(prun, halt_stops_starting_jobs, .timeout = 30)
{
	char *out;

	cr_assert_eq(prun("1\\n2\\n3\\n4\\n5\\n6\\n",
			  "-k -j 1 --halt soon,fail=1 'echo {}; test {} -ne 3' "
			  "2>/dev/null",
			  &out), 1);
	cr_assert_str_eq(out, "1\n2\n3\n");
	free(out);
}

Test(prun, timeout_kills_the_process_group, .timeout = 30)
{
	struct timespec a, b;
	char *out, *cmd;
	double secs;

	clock_gettime(CLOCK_MONOTONIC, &a);
	/* The second job's shell waits for a background child that holds
	 * the output pipe: only killing the whole group ends it. */
	cr_assert_eq(prun("0.1\\n30\\n",
			  "-k -j 2 --timeout 1 '(sleep {}; echo late) & "
			  "sleep {}; echo done {}' 2>/dev/null", &out), 1);
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	cr_assert_lt(secs, 10.0, "the job was not killed (%.1f s)", secs);
	/* The first job's two lines, in either order; nothing of the
	 * second. */
	cr_assert(strcmp(out, "late\ndone 0.1\n") == 0 ||
		  strcmp(out, "done 0.1\nlate\n") == 0, "%s", out);
	free(out);
	/* Enforced while prun waits for more input, too. */
	cmd = fmt("(echo 30; sleep 1; echo 0) | %s -k --timeout 1 "
		  "'sleep {}; echo done {}' 2>/dev/null", demo("prun"));
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(run(cmd, &out), 1);
	clock_gettime(CLOCK_MONOTONIC, &b);
	free(cmd);
	secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	cr_assert_lt(secs, 10.0, "not killed while reading (%.1f s)", secs);
	cr_assert_str_eq(out, "done 0\n");
	free(out);
	/* The time limit is reported on stderr. */
	cr_assert_eq(prun("30\\n", "--timeout 0.2 sleep 2>&1", &out), 1);
	cr_assert(strstr(out, "time limit"), "%s", out);
	free(out);
}

Test(prun, bad_command_lines, .timeout = 30)
{
	static const char *const bad[] = {
		"-j x true", "-j", "--timeout 0 true",
		"--timeout x true", "--bogus true", "--halt true",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *args = fmt("%s 2>&1", bad[i]), *out;

		/* 255, as GNU parallel, and a pointer to --help. */
		cr_assert_eq(prun("1\\n", args, &out), 255, "prun %s", bad[i]);
		cr_assert(strstr(out, "prun --help"), "prun %s:\n%s", bad[i],
			  out);
		free(out);
		free(args);
	}
}
