/*
 * prun - run a command for each line of standard input, N at a time.
 *
 *   prun [OPTION...] [CMD [ARG...]] [::: ARG... | :::: FILE...]...
 *
 * Each input item (a line, or with -0 or -d what ends with that
 * character) is one argument; with --colsep its columns are arguments
 * {1}, {2}... The sources are standard input, the files of -a and ::::,
 * and the lists after :::; several are combined as GNU parallel combines
 * them, every argument of one with every argument of the next. The
 * command (CMD and its ARGs joined by spaces, a shell command line) gets
 * the arguments in place of the replacement strings ({} {.} {/} {//} {/.}
 * {#} {%} {N}), or appended at the end when it has none; with no command,
 * each input is a command line. An argument is quoted as parallel quotes
 * it: left bare when it is made of letters, digits and -_.+/ only, else
 * in single quotes, so it is one word and never shell syntax. The shell
 * is $SHELL, or sh. N jobs (default: the number of cores) run at once.
 * Each job's standard output and standard error are kept together and
 * printed when the job ends: in input order with -k, as jobs finish
 * without it; --line-buffer prints whole lines as they come, --ungroup
 * bytes as they come. Output kept beyond PRUN_MEM_BOUND per stream goes
 * to an unlinked temporary file, so a job that prints gigabytes costs
 * disk, not memory. Jobs read /dev/null as standard input. --joblog,
 * --tag, --dry-run, --retries, --progress, --eta and --bar are
 * parallel's; the progress lines go to stderr.
 *
 * Options and their meanings are GNU parallel's, read by getopt_long:
 * the first word that is not an option starts the command. --timeout S
 * sends SIGTERM to a job's whole process group after S seconds, then
 * SIGKILL a second later. --halt takes parallel's grammar (never, or
 * now|soon,fail|success|done=N or N%). The exit status is parallel's: the
 * number of failed jobs up to 100, 101 for more, what --halt chose when it
 * stopped the run, 255 for an error of prun's own (a bad command line
 * among them, reported on one line), 128 + N after signal N.
 *
 * Speed. The cost floor of a job is one fork and one exec. /bin/sh is
 * resolved once; when the command needs no shell (plain words of safe
 * characters, a first word that is a program found on PATH rather than a
 * shell builtin or keyword) prun resolves that program once and execs it
 * directly, with the argument as a word of its own, which is what the
 * shell would have done. The child between fork and exec makes only a few
 * system calls (its process group, three dup2, SIGPIPE back to default):
 * no per-signal reset loop as in posix_spawn, no PATH search. Children are
 * noticed through a SIGCHLD self-pipe in the same poll as their output, so
 * nothing sleeps or spins.
 *
 * The jobs are programs, not C functions, so prun forks them itself rather
 * than through an exchange: the library's unit of work is a function in a
 * forked copy of the caller, speaking framed messages, while a job's
 * output is raw bytes from a program the caller does not control. It uses
 * the library for the number of cores.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exchange.h"

#ifdef __linux__
/* Linux makes a pipe close-on-exec in the same call (POSIX added pipe2 in
 * 2024; _POSIX_C_SOURCE=200809L does not declare it): four fcntl calls
 * fewer per job. */
int pipe2(int fds[2], int flags);
#endif

/* A close-on-exec pipe. */
static int cloexec_pipe(int fds[2])
{
#ifdef __linux__
	return pipe2(fds, O_CLOEXEC);
#else
	if (pipe(fds) < 0)
		return -1;
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	return 0;
#endif
}

/* Seconds between SIGTERM and SIGKILL for a job over its time limit. */
#define PRUN_GRACE_MS 1000

/* The most jobs at once: each holds two pipes. */
#define PRUN_MAX_JOBS 1024

/* Exit status for an error of prun's own, as GNU parallel's. */
#define PRUN_EXIT_ERROR 255

/* What --progress, --eta and --bar show. */
#define SHOW_PROGRESS 1
#define SHOW_ETA 2
#define SHOW_BAR 4

/* Bytes of a job's output kept in memory, per stream; beyond them it goes
 * to an unlinked temporary file. */
#define PRUN_MEM_BOUND (256 * 1024)

/* Bytes read from a job's pipe at once. */
#define PRUN_CHUNK 65536

/* A growing byte buffer. */
struct buf {
	char *data;		/* malloc'd bytes, or NULL while empty */
	size_t len;		/* bytes used */
	size_t cap;		/* bytes allocated */
};

/* One job, from its start to the printing of its output. */
struct job {
	size_t seq;		/* its place in the input, from 0 */
	char **args;		/* its arguments, malloc'd */
	size_t nargs;		/* their number */
	int slot;		/* its job slot ({%}), from 1 */
	pid_t pid;		/* the process, 0 once reaped */
	pid_t pgid;		/* its process group (its first pid) */
	int fd[2];		/* read ends of its stdout and stderr pipes,
				   -1 once at end of file */
	struct buf out[2];	/* what it wrote to stdout and stderr, kept */
	int spill[2];		/* the files kept output went to beyond
				   PRUN_MEM_BOUND, -1: none */
	bool mid_line[2];	/* --tag: the last byte printed of the stream
				   did not end a line */
	int status;		/* wait status, once reaped */
	int64_t deadline;	/* when it times out (ms), 0: never */
	int64_t kill_at;	/* when SIGKILL follows SIGTERM, 0: not yet */
	bool timed_out;		/* it was killed for its time limit */
	bool halted;		/* it was killed by --halt now */
	int attempts;		/* times it was started (--retries) */
	double start_wall;	/* when it last started, seconds since 1970 */
	int64_t start_ms;	/* the same on the monotonic clock */
	size_t received;	/* bytes of output of its last attempt */
};

/* --halt: when the run stops, after how many of which outcome. */
enum halt_when { HALT_NEVER, HALT_SOON, HALT_NOW };
enum halt_what { HALT_FAIL, HALT_SUCCESS, HALT_DONE };

struct halt {
	enum halt_when when;	/* never, or start no more / kill the rest */
	enum halt_what what;	/* which outcomes count */
	size_t count;		/* this many of them, 0: use pct */
	double pct;		/* this percentage of all jobs, when count 0 */
};

/* The command, prepared once. */
struct command {
	char *line;		/* CMD and ARGs joined by spaces, " {}" added
				   when it has no replacement string */
	bool raw;		/* no command: each input is a command line */
	bool all;		/* line has a replacement string that stands
				   for every argument of the job */
	char *sh;		/* the shell's path: $SHELL, or sh */
	const char *sh_name;	/* its last part, the shell's argv[0] */
	bool direct;		/* exec without a shell */
	char *prog;		/* direct: the program's path */
	char **words;		/* direct: the words of line, NULL-ended */
	size_t nwords;		/* direct: their number */
};

/* A source of arguments: a ::: list, or a file (::::, -a, standard
 * input). */
struct source {
	const char *name;	/* the file, "-" for standard input; NULL for
				   a ::: list */
	char **items;		/* its arguments, once read */
	size_t n;		/* their number */
	size_t cap;		/* entries of items */
};

/* Options and state of the run. */
struct run {
	int jobs;		/* -j: jobs at once */
	bool keep_order;	/* -k: print in input order */
	int64_t timeout_ms;	/* --timeout, 0: none */
	struct halt halt;	/* --halt: when to stop */
	int show;		/* SHOW_ bits: --progress, --eta, --bar */
	bool tty;		/* stderr is a terminal: redraw the line */
	int64_t started_ms;	/* when the run started */
	bool tag;		/* --tag: lines start with the arguments */
	bool dry_run;		/* --dry-run: print the commands only */
	bool line_buffer;	/* --line-buffer: whole lines as they come */
	bool ungroup;		/* --ungroup: bytes as they come */
	FILE *joblog;		/* --joblog, or NULL */
	struct command cmd;	/* what each job runs */
	int devnull;		/* /dev/null, the jobs' stdin */
	struct job **running;	/* the jobs running, jobs entries */
	int nrunning;		/* how many are used */
	struct job **done;	/* -k: finished jobs not printed, by seq */
	size_t done_cap;	/* entries of done */
	size_t next_print;	/* -k: the seq printed next */
	size_t started;		/* jobs started */
	size_t finished;	/* jobs finished */
	size_t failed;		/* jobs that failed */
	size_t succeeded;	/* jobs that succeeded */
	size_t total;		/* all jobs, once the input is read whole */
	int halt_status;	/* the exit status --halt chose, -1: none */
	bool halted_now;	/* --halt now: the running jobs were killed */
	bool nul_warned;	/* a NUL in the input has been reported */
	char sep;		/* what ends an input item: -0, -d, newline */
	bool stop;		/* start no more jobs */
	struct source *src;	/* the sources, in command line order */
	size_t nsrc;		/* their number */
	size_t *odo;		/* several sources: the item of each that the
				   next job takes */
	bool streaming;		/* one file source, read as jobs need it */
	bool *slots;		/* which job slots are taken, jobs entries */
	regex_t colsep;		/* --colsep, once compiled */
	bool colsep_set;	/* --colsep was given */
	int in_fd;		/* the streamed source's descriptor */
	const char *in_name;	/* its name, for messages */
	bool input_error;	/* reading it failed */
	struct buf in;		/* the streamed source, read but not used */
	size_t in_pos;		/* the first unused byte of in */
	bool input_eof;		/* standard input reached its end */
	bool input_done;	/* and every line of it has been taken */
	bool output_broken;	/* writing our stdout or stderr failed */
	bool interrupted;	/* the jobs were sent SIGTERM for an interrupt */
	bool killed;		/* and SIGKILL, after a second one */
	int retries;		/* --retries: attempts a job may have */
};

/* Self-pipe: the signal handlers write a byte to wake the poll. */
static int wake_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_interrupt;
static volatile sig_atomic_t got_child;
static volatile sig_atomic_t interrupts;	/* how many came */

static const char *progname = "prun";

/* Seconds since 1970, for --joblog. */
static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A signal handler's whole job: note it, wake the poll. */
static void on_signal(int sig)
{
	int saved = errno;
	char c = 0;

	if (sig == SIGCHLD)
		got_child = 1;
	else {
		got_interrupt = sig;
		interrupts = interrupts < 2 ? interrupts + 1 : 2;
	}
	if (write(wake_pipe[1], &c, 1) < 0) {
		/* The pipe is full: the poll will wake anyway. */
	}
	errno = saved;
}

static void out_of_memory(void) __attribute__((noreturn));
static void out_of_memory(void)
{
	fprintf(stderr, "%s: out of memory\n", progname);
	exit(PRUN_EXIT_ERROR);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		out_of_memory();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		out_of_memory();
	return p;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

static void buf_add_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Writes all n bytes to fd, retrying after signals. 0, or -1. */
static int write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

/* The replacement strings, GNU parallel's: {} {.} {/} {//} {/.} {#} {%}
 * and the positional {N} {N.} {N/} {N//} {N/.}. */
enum repl {
	REPL_ARG,		/* {}: the argument as it is */
	REPL_NOEXT,		/* {.}: without its extension */
	REPL_BASE,		/* {/}: without its directory */
	REPL_DIR,		/* {//}: its directory */
	REPL_BASE_NOEXT,	/* {/.}: without either */
	REPL_SEQ,		/* {#}: the job's number, from 1 */
	REPL_SLOT,		/* {%}: the job's slot, from 1 */
};

/* A replacement string found in a command line. */
struct token {
	size_t len;		/* its length, 0: none there */
	enum repl kind;		/* what it stands for */
	size_t pos;		/* {N...}: N, from 1; 0: every argument */
};

/* The replacement string at s, if one starts there. */
static struct token token_at(const char *s)
{
	static const struct {
		const char *text;
		enum repl kind;
	} mods[] = {
		{ "}", REPL_ARG }, { ".}", REPL_NOEXT }, { "/}", REPL_BASE },
		{ "//}", REPL_DIR }, { "/.}", REPL_BASE_NOEXT },
		{ "#}", REPL_SEQ }, { "%}", REPL_SLOT },
	};
	struct token t = { 0, REPL_ARG, 0 };
	const char *p = s + 1;
	size_t i, n;

	if (s[0] != '{')
		return t;
	if (*p >= '1' && *p <= '9') {
		while (isdigit((unsigned char)*p) && t.pos < 1000000)
			t.pos = t.pos * 10 + (size_t)(*p++ - '0');
	}
	for (i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		if (t.pos && mods[i].kind >= REPL_SEQ)
			break;
		n = strlen(mods[i].text);
		if (strncmp(p, mods[i].text, n) == 0) {
			t.len = (size_t)(p - s) + n;
			t.kind = mods[i].kind;
			return t;
		}
	}
	t.pos = 0;
	return t;
}

/* Whether s holds a replacement string; *all set when one stands for
 * every argument at once ({} {.} {/} {//} {/.}, not {N} or {#}). */
static bool has_token(const char *s, bool *all)
{
	bool any = false;

	*all = false;
	for (; *s; s++) {
		struct token t = token_at(s);

		if (!t.len)
			continue;
		any = true;
		if (!t.pos && t.kind < REPL_SEQ)
			*all = true;
		s += t.len - 1;
	}
	return any;
}

/* Characters that mean nothing to the shell inside a word. */
static bool safe_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("_-./,:+%@=", c) != NULL;
}

/* Appends s quoted for the shell as GNU parallel quotes it: as it is
 * when it is made of letters, digits and - _ . + / only, else in single
 * quotes ('' when empty). So a number stays a bare number, and "echo
 * $(( {} * 2 ))" works on 3 as in parallel. */
static void buf_add_quoted(struct buf *b, const char *s)
{
	const char *p;
	bool plain = *s != '\0';

	for (p = s; *p && plain; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("-_.+/", *p)))
			plain = false;
	if (plain) {
		buf_add_str(b, s);
		return;
	}
	if (*s != '\'')
		buf_add(b, "'", 1);
	for (p = s; *p; p++) {
		if (*p != '\'') {
			buf_add(b, p, 1);
			continue;
		}
		/* Close the quote, a quoted ', open again; as parallel,
		 * without an empty '' at either end. */
		buf_add_str(b, p == s ? "\"'\"" : "'\"'\"");
		if (p[1])
			buf_add(b, "'", 1);
	}
	if (!*s || p[-1] != '\'')
		buf_add(b, "'", 1);
}

/* Appends one argument changed as the replacement string says: {.}
 * drops a last ".ext" of the last part of the path, {/} the directory,
 * {//} keeps only the directory (dirname(3), "." for none). */
static void buf_add_repl(struct buf *b, const char *arg, enum repl kind,
			 bool quote)
{
	const char *s = arg, *dot;
	char *copy = NULL;

	if (kind == REPL_BASE || kind == REPL_BASE_NOEXT) {
		const char *slash = strrchr(s, '/');

		if (slash)
			s = slash + 1;
	}
	if (kind == REPL_NOEXT || kind == REPL_BASE_NOEXT) {
		dot = strrchr(s, '.');
		if (dot && !strchr(dot, '/')) {
			copy = xmalloc((size_t)(dot - s) + 1);
			memcpy(copy, s, (size_t)(dot - s));
			copy[dot - s] = '\0';
			s = copy;
		}
	}
	if (kind == REPL_DIR) {
		copy = strdup(s);
		if (!copy)
			out_of_memory();
		s = dirname(copy);
	}
	if (quote)
		buf_add_quoted(b, s);
	else
		buf_add_str(b, s);
	free(copy);
}

/* s with every replacement string replaced by the job's arguments (each
 * quoted for the shell when quote), malloc'd. */
static char *expand(const char *s, char *const *args, size_t nargs,
		    size_t seq, int slot, bool quote)
{
	struct buf b = { 0 };
	char num[32];
	size_t i;

	while (*s) {
		struct token t = token_at(s);

		if (!t.len) {
			const char *brace = strchr(s + 1, '{');
			size_t n = brace ? (size_t)(brace - s) : strlen(s);

			buf_add(&b, s, n);
			s += n;
			continue;
		}
		s += t.len;
		if (t.kind == REPL_SEQ || t.kind == REPL_SLOT) {
			snprintf(num, sizeof(num), "%zu",
				 t.kind == REPL_SEQ ? seq + 1 : (size_t)slot);
			buf_add_str(&b, num);
		} else if (t.pos) {
			/* A column that is not there is nothing, not an
			 * empty word, as in parallel. */
			if (t.pos <= nargs)
				buf_add_repl(&b, args[t.pos - 1], t.kind,
					     quote);
		} else {
			for (i = 0; i < nargs; i++) {
				if (i)
					buf_add(&b, " ", 1);
				buf_add_repl(&b, args[i], t.kind, quote);
			}
		}
	}
	buf_add(&b, "", 1);
	return b.data;
}

/* Words that the shell runs itself (keywords and builtins that differ from
 * or do not exist as programs): such a command goes through the shell. */
static bool shell_word(const char *w)
{
	static const char *const words[] = {
		".", ":", "[", "alias", "bg", "break", "case", "cd",
		"command", "continue", "do", "done", "echo", "elif", "else",
		"esac", "eval", "exec", "exit", "export", "false", "fc",
		"fg", "fi", "for", "function", "getopts", "hash", "if", "in",
		"jobs", "kill", "local", "printf", "pwd", "read",
		"readonly", "return", "select", "set", "shift", "test",
		"then", "time", "times", "trap", "type", "ulimit", "umask",
		"unalias", "unset", "until", "wait", "while",
	};
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(w, words[i]) == 0)
			return true;
	return false;
}

/* The path of an executable regular file named name, looked up on PATH
 * when name has no slash; NULL if there is none. */
static char *find_program(const char *name)
{
	const char *path = getenv("PATH"), *p, *end;
	struct stat st;

	if (strchr(name, '/')) {
		if (stat(name, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(name, X_OK) == 0)
			return strdup(name);
		return NULL;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;; p = end + 1) {
		size_t dlen;
		char *full;

		end = strchr(p, ':');
		if (!end)
			end = p + strlen(p);
		dlen = (size_t)(end - p);
		full = xmalloc(dlen + strlen(name) + 3);
		if (dlen)
			memcpy(full, p, dlen);
		else
			full[dlen++] = '.';
		full[dlen] = '/';
		strcpy(full + dlen + 1, name);
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(full, X_OK) == 0)
			return full;
		free(full);
		if (!*end)
			return NULL;
	}
}

/* Prepares the command once: appends " {}" when it has no replacement
 * string, finds the shell ($SHELL, as parallel, or sh), and splits the
 * line into words when it needs no shell, to exec it directly. */
static void command_prepare(struct command *c)
{
	const char *s, *shell = getenv("SHELL"), *slash;
	size_t cap = 8;
	bool first = true, all;

	if (!c->line) {
		/* No command: each input is a command line. */
		c->raw = true;
		c->line = strdup("{}");
		if (!c->line)
			out_of_memory();
	} else if (!has_token(c->line, &all)) {
		char *line = xmalloc(strlen(c->line) + 4);

		sprintf(line, "%s {}", c->line);
		free(c->line);
		c->line = line;
	}
	has_token(c->line, &c->all);
	c->sh = shell && *shell ? find_program(shell) : NULL;
	if (!c->sh)
		c->sh = find_program("/bin/sh");
	if (!c->sh)
		c->sh = find_program("sh");
	if (!c->sh)
		c->sh = strdup("/bin/sh");
	if (!c->sh)
		out_of_memory();
	slash = strrchr(c->sh, '/');
	c->sh_name = slash ? slash + 1 : c->sh;
	c->direct = false;
	c->words = xmalloc(cap * sizeof(*c->words));
	c->nwords = 0;
	c->words[0] = NULL;
	if (c->raw)
		return;
	for (s = c->line;;) {
		const char *w;
		size_t n;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		w = s;
		while (*s && *s != ' ' && *s != '\t') {
			struct token t = token_at(s);

			if (t.len) {
				s += t.len;
				continue;
			}
			if (!safe_char(*s) || (first && *s == '='))
				return;	/* shell syntax: use the shell */
			s++;
		}
		n = (size_t)(s - w);
		if (c->nwords + 2 > cap) {
			cap *= 2;
			c->words = xrealloc(c->words, cap * sizeof(*c->words));
		}
		c->words[c->nwords] = xmalloc(n + 1);
		memcpy(c->words[c->nwords], w, n);
		c->words[c->nwords][n] = '\0';
		c->nwords++;
		c->words[c->nwords] = NULL;
		first = false;
	}
	if (c->nwords == 0 || has_token(c->words[0], &all) ||
	    shell_word(c->words[0]))
		return;
	c->prog = find_program(c->words[0]);
	c->direct = c->prog != NULL;
}

static void command_free(struct command *c)
{
	size_t i;

	for (i = 0; c->words && i < c->nwords; i++)
		free(c->words[i]);
	free(c->words);
	free(c->prog);
	free(c->sh);
	free(c->line);
}

/* The job's command line as the shell runs it, malloc'd: the arguments
 * quoted, or, with no command, the input itself. */
static char *command_text(const struct command *c, char *const *args,
			  size_t nargs, size_t seq, int slot)
{
	return expand(c->line, args, nargs, seq, slot, !c->raw);
}

/* The argv of one job, all malloc'd, NULL-ended; its program in *path.
 * A word that stands for every argument becomes one word per argument
 * in the shell, so a job of several arguments goes through the shell. */
static char **command_argv(const struct command *c, char *const *args,
			   size_t nargs, size_t seq, int slot,
			   const char **path)
{
	char **argv;
	size_t i;

	if (c->direct && (nargs <= 1 || !c->all)) {
		argv = xmalloc((c->nwords + 1) * sizeof(*argv));
		for (i = 0; i < c->nwords; i++)
			argv[i] = expand(c->words[i], args, nargs, seq, slot,
					 false);
		argv[i] = NULL;
		*path = c->prog;
		return argv;
	}
	argv = xmalloc(4 * sizeof(*argv));
	argv[0] = strdup(c->sh_name);
	argv[1] = strdup("-c");
	argv[2] = command_text(c, args, nargs, seq, slot);
	argv[3] = NULL;
	if (!argv[0] || !argv[1])
		out_of_memory();
	*path = c->sh;
	return argv;
}

static void argv_free(char **argv)
{
	size_t i;

	for (i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

static void job_free(struct job *j)
{
	if (!j)
		return;
	argv_free(j->args);
	free(j->out[0].data);
	free(j->out[1].data);
	if (j->spill[0] >= 0)
		close(j->spill[0]);
	if (j->spill[1] >= 0)
		close(j->spill[1]);
	free(j);
}

/* Forks and execs the job (again, for --retries); a pipe or fork failure
 * leaves it a failed job with a message and no process. */
static void job_spawn(struct run *r, struct job *j)
{
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	const char *path;
	char **argv, who[64];
	pid_t pid;

	j->attempts++;
	j->status = 0;
	j->timed_out = false;
	j->deadline = 0;
	j->kill_at = 0;
	j->start_wall = wall_now();
	j->start_ms = now_ms();
	argv = command_argv(&r->cmd, j->args, j->nargs, j->seq, j->slot, &path);
	/* What the child says if exec fails, made here: after fork only
	 * async-signal-safe calls are allowed. */
	snprintf(who, sizeof(who), "%s: job %zu: ", progname, j->seq + 1);
	if (cloexec_pipe(outp) < 0 || cloexec_pipe(errp) < 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		/* The child: only async-signal-safe calls until exec. Its
		 * own process group, so that a time limit can end it and
		 * everything it started. The dup2 copies are not
		 * close-on-exec; every other descriptor of prun is. */
		struct sigaction sa;
		const char *why;
		int e;

		setpgid(0, 0);
		dup2(r->devnull, 0);
		dup2(outp[1], 1);
		dup2(errp[1], 2);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(SIGPIPE, &sa, NULL);
		execv(path, argv);
		e = errno;
		why = e == E2BIG ? "the command line is too long for exec "
				       "(E2BIG)\n"
		      : e == ENOENT ? "cannot execute the command: no such "
					  "file\n"
		      : e == EACCES ? "cannot execute the command: "
					  "permission denied\n"
					: "cannot execute the command\n";
		if (write(2, who, strlen(who)) < 0 ||
		    write(2, why, strlen(why)) < 0) {
			/* Nothing more can be said. */
		}
		_exit(e == ENOENT ? 127 : 126);
	}
	/* Both sides set the group, so it exists whichever runs first. */
	setpgid(pid, pid);
	close(outp[1]);
	close(errp[1]);
	j->pid = pid;
	j->pgid = pid;
	j->fd[0] = outp[0];
	j->fd[1] = errp[0];
	if (r->timeout_ms > 0)
		j->deadline = now_ms() + r->timeout_ms;
	argv_free(argv);
	return;

fail:
	{
		char msg[256];
		int saved = errno;

		snprintf(msg, sizeof(msg), "%s: cannot start a job: %s\n",
			 progname, strerror(saved));
		buf_add_str(&j->out[1], msg);
	}
	if (outp[0] >= 0) {
		close(outp[0]);
		close(outp[1]);
	}
	if (errp[0] >= 0) {
		close(errp[0]);
		close(errp[1]);
	}
	argv_free(argv);
	j->pid = 0;
	j->status = 127 << 8;
}

/* A new job for these arguments (it owns them), in the lowest free job
 * slot, started. */
static struct job *job_start(struct run *r, char **args, size_t nargs)
{
	struct job *j = xmalloc(sizeof(*j));

	memset(j, 0, sizeof(*j));
	j->seq = r->started++;
	j->args = args;
	j->nargs = nargs;
	j->fd[0] = j->fd[1] = -1;
	j->spill[0] = j->spill[1] = -1;
	for (j->slot = 1; j->slot <= r->jobs && r->slots[j->slot - 1];)
		j->slot++;
	if (j->slot <= r->jobs)
		r->slots[j->slot - 1] = true;
	job_spawn(r, j);
	return j;
}

static void job_take(struct run *r, struct job *j, int k, const char *s,
		     size_t n);

/* Reads what is there from one of the job's pipes; closes it at EOF. */
static void job_read(struct run *r, struct job *j, int k)
{
	char chunk[PRUN_CHUNK];
	ssize_t n;

	n = read(j->fd[k], chunk, sizeof(chunk));
	if (n > 0) {
		job_take(r, j, k, chunk, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	close(j->fd[k]);
	j->fd[k] = -1;
}

/* Reaps the job's process if it has ended. */
static void job_reap(struct job *j)
{
	int st;
	pid_t w;

	if (j->pid <= 0)
		return;
	do
		w = waitpid(j->pid, &st, WNOHANG);
	while (w < 0 && errno == EINTR);
	if (w == j->pid || (w < 0 && errno == ECHILD)) {
		j->status = w == j->pid ? st : 127 << 8;
		j->pid = 0;
	}
}

static bool job_failed(const struct job *j)
{
	return j->timed_out || !WIFEXITED(j->status) ||
	       WEXITSTATUS(j->status) != 0;
}

/* A job's status as a shell gives it: its exit status, or 128 + the
 * signal that killed it. */
static int job_status(const struct job *j)
{
	if (WIFSIGNALED(j->status))
		return 128 + WTERMSIG(j->status);
	if (j->timed_out && WEXITSTATUS(j->status) == 0)
		return 128 + SIGTERM;
	return WEXITSTATUS(j->status);
}

/* Sends the job's group a signal when its time has come. The group may
 * outlive its first process (what it started in the background still
 * holding the pipes), so this goes on until the job is over. */
static void job_check_time(struct job *j, int64_t now)
{
	if (j->kill_at && now >= j->kill_at) {
		kill(-j->pgid, SIGKILL);
		j->kill_at = 0;
		j->deadline = 0;
	} else if (j->deadline && !j->kill_at && now >= j->deadline) {
		j->timed_out = true;
		kill(-j->pgid, SIGTERM);
		j->kill_at = now + PRUN_GRACE_MS;
	}
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

static void progress_clear(const struct run *r)
{
	static const char clear[] = "\r\033[K";

	if (r->show && r->tty && write_all(2, clear, sizeof(clear) - 1) < 0) {
		/* A progress line is not worth failing for. */
	}
}

/* The --progress, --eta and --bar line on stderr: redrawn in place on a
 * terminal, else written once, at the end (final). */
static void progress_show(const struct run *r, bool final)
{
	char line[256];
	size_t n = 0, left;
	double secs = (double)(now_ms() - r->started_ms) / 1000.0;
	double avg = r->finished ? secs / (double)r->finished : 0.0;
	double eta;

	if (!r->show || (!r->tty && !final))
		return;
	left = r->total > r->finished ? r->total - r->finished : 0;
	eta = avg * (double)left / (double)(r->jobs ? r->jobs : 1);
	if (r->tty)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\r\033[K");
	if (r->show & SHOW_BAR)
		n += (size_t)snprintf(line + n, sizeof(line) - n,
				      "%d%% %zu:%zu=%.0fs ",
				      r->total ? (int)(100 * r->finished /
						       r->total) : 100,
				      r->finished, left, eta);
	if ((r->show & SHOW_ETA) && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n,
				      "ETA: %.0fs Left: %zu AVG: %.2fs  ",
				      eta, left, avg);
	if ((r->show & SHOW_PROGRESS) && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n,
				      "local:%d/%zu/%zu failed/%.1fs",
				      r->nrunning, r->finished, r->failed, avg);
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	if (final && n < sizeof(line) - 1)
		line[n++] = '\n';
	if (write_all(2, line, n) < 0) {
		/* As above. */
	}
}

/* Writes bytes of the job's stream k (0: stdout, 1: stderr) to prun's
 * own, each line after the job's arguments and a tab with --tag. */
static void emit(struct run *r, struct job *j, int k, const char *s,
		 size_t n)
{
	if (n == 0)
		return;
	if (r->show && r->tty)
		progress_clear(r);
	while (n > 0 && r->tag) {
		const char *nl = memchr(s, '\n', n);
		size_t len = nl ? (size_t)(nl - s) + 1 : n;

		if (!j->mid_line[k]) {
			size_t i;

			for (i = 0; i < j->nargs; i++)
				if (write_all(k + 1, i ? " " : "", i ? 1 : 0) < 0 ||
				    write_all(k + 1, j->args[i],
					      strlen(j->args[i])) < 0)
					r->output_broken = true;
			if (write_all(k + 1, "\t", 1) < 0)
				r->output_broken = true;
		}
		if (write_all(k + 1, s, len) < 0)
			r->output_broken = true;
		j->mid_line[k] = nl == NULL;
		s += len;
		n -= len;
	}
	if (n > 0 && write_all(k + 1, s, n) < 0)
		r->output_broken = true;
}

/* Writes what is kept of the job's stream k, the spilled part first. */
static void emit_kept(struct run *r, struct job *j, int k)
{
	char chunk[PRUN_CHUNK];
	ssize_t n;

	if (j->spill[k] >= 0) {
		if (lseek(j->spill[k], 0, SEEK_SET) < 0)
			r->output_broken = true;
		while ((n = read(j->spill[k], chunk, sizeof(chunk))) > 0 ||
		       (n < 0 && errno == EINTR))
			if (n > 0)
				emit(r, j, k, chunk, (size_t)n);
		if (n < 0) {
			fprintf(stderr, "%s: job %zu: reading its kept output: "
				"%s\n", progname, j->seq + 1, strerror(errno));
			r->output_broken = true;
		}
		close(j->spill[k]);
		j->spill[k] = -1;
	}
	emit(r, j, k, j->out[k].data, j->out[k].len);
	j->out[k].len = 0;
}

/* Keeps output of the job's stream k for later: in memory up to
 * PRUN_MEM_BOUND, then in an unlinked temporary file, so that a job that
 * prints a lot costs disk, not prun's memory. */
static void job_keep(struct run *r, struct job *j, int k, const char *s,
		     size_t n)
{
	if (j->spill[k] < 0 && j->out[k].len + n > PRUN_MEM_BOUND) {
		const char *dir = getenv("TMPDIR");
		char *path;
		int fd;

		if (!dir || !*dir)
			dir = "/tmp";
		path = xmalloc(strlen(dir) + 16);
		sprintf(path, "%s/prun.XXXXXX", dir);
		fd = mkstemp(path);
		if (fd >= 0) {
			unlink(path);
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			j->spill[k] = fd;
			if (write_all(fd, j->out[k].data, j->out[k].len) < 0)
				goto failed;
			free(j->out[k].data);
			memset(&j->out[k], 0, sizeof(j->out[k]));
		}
		/* Without a temporary file, memory it is. */
		free(path);
	}
	if (j->spill[k] < 0) {
		buf_add(&j->out[k], s, n);
		return;
	}
	if (write_all(j->spill[k], s, n) == 0)
		return;
failed:
	fprintf(stderr, "%s: job %zu: keeping its output: %s\n", progname,
		j->seq + 1, strerror(errno));
	r->output_broken = true;
	r->stop = true;
}

/* Whether the job's output is printed as it comes: with --ungroup, and
 * with --line-buffer unless -k holds it behind an earlier job. */
static bool job_live(const struct run *r, const struct job *j)
{
	return r->ungroup ||
	       (r->line_buffer && (!r->keep_order || j->seq == r->next_print));
}

/* Prints the whole lines kept of a live job's stream k. */
static void job_flush_lines(struct run *r, struct job *j, int k)
{
	struct buf *b = &j->out[k];
	size_t n = b->len;

	if (j->spill[k] >= 0) {
		/* It was held behind an earlier job: all of that first. */
		char *rest = b->data;
		size_t len = b->len;

		b->data = NULL;
		b->len = b->cap = 0;
		emit_kept(r, j, k);
		free(b->data);
		b->data = rest;
		b->len = b->cap = len;
	}
	while (n > 0 && b->data[n - 1] != '\n')
		n--;
	if (n == 0)
		return;
	emit(r, j, k, b->data, n);
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

/* Output read from the job's stream k: printed now, or kept. */
static void job_take(struct run *r, struct job *j, int k, const char *s,
		     size_t n)
{
	j->received += n;
	if (r->ungroup && job_live(r, j)) {
		emit(r, j, k, s, n);
	} else if (job_live(r, j)) {
		buf_add(&j->out[k], s, n);
		job_flush_lines(r, j, k);
	} else {
		job_keep(r, j, k, s, n);
	}
}

/* Prints one finished job's output (stdout, then stderr) and frees it. */
static void job_print(struct run *r, struct job *j)
{
	emit_kept(r, j, 0);
	emit_kept(r, j, 1);
	job_free(j);
}

/* The job's command line as the shell would run it, malloc'd. */
static char *job_command_text(const struct run *r, const struct job *j)
{
	return command_text(&r->cmd, j->args, j->nargs, j->seq, j->slot);
}

/* Ends every running job for --halt now: SIGTERM to its group, SIGKILL
 * after the grace period, its output dropped. */
static void halt_kill(struct run *r)
{
	int64_t now = now_ms();
	int i;

	for (i = 0; i < r->nrunning; i++) {
		struct job *j = r->running[i];

		j->halted = true;
		if (!j->kill_at) {
			kill(-j->pgid, SIGTERM);
			j->kill_at = now + PRUN_GRACE_MS;
		}
	}
}

/* --halt after a job ended, by GNU parallel's rule: the outcomes of the
 * kind named are counted, each one reported, and when there are enough
 * of them the run stops (soon: no new job; now: the running ones killed
 * too) with the exit status parallel gives: the job's own status (128 +
 * signal when killed) for fail=1 or done=1, the number of failed jobs
 * for fail=N or done=N, their percentage of all jobs for N%, 0 for
 * success. */
static void halt_check(struct run *r, const struct job *j)
{
	const struct halt *h = &r->halt;
	bool failed = job_failed(j);
	const char *what;
	size_t limit;
	char *text;

	if (h->when == HALT_NEVER || r->halt_status >= 0)
		return;
	if (h->what == HALT_FAIL && failed) {
		what = "failed";
		limit = r->failed;
	} else if (h->what == HALT_SUCCESS && !failed) {
		what = "succeeded";
		limit = r->succeeded;
	} else if (h->what == HALT_DONE) {
		what = "finished";
		limit = r->finished;
	} else {
		return;
	}
	text = job_command_text(r, j);
	progress_clear(r);
	fprintf(stderr, "%s: This job %s:\n%s\n", progname, what, text);
	free(text);
	if (h->count ? limit < h->count
		     : (double)limit < (double)r->total * h->pct / 100.0)
		return;
	if (h->what == HALT_SUCCESS) {
		r->halt_status = 0;
	} else if (!h->count) {
		r->halt_status = (int)ceil((double)r->failed * 100.0 /
					   (double)(r->total ? r->total : 1));
	} else if (h->count == 1) {
		r->halt_status = job_status(j);
	} else {
		r->halt_status = r->failed > 101 ? 101 : (int)r->failed;
	}
	r->stop = true;
	if (h->when == HALT_NOW) {
		halt_kill(r);
	} else if (r->nrunning > 0) {
		fprintf(stderr, "%s: Starting no more jobs. Waiting for %d "
			"jobs to finish.\n", progname, r->nrunning);
	}
}

/* A job has ended: count it, say why if it timed out, print it now or
 * keep it for its turn. */
static void job_finish(struct run *r, struct job *j)
{
	if (j->slot >= 1 && j->slot <= r->jobs)
		r->slots[j->slot - 1] = false;
	if (j->halted) {
		/* Killed by --halt now: its output goes, as with parallel. */
		job_free(j);
		return;
	}
	r->finished++;
	if (job_failed(j))
		r->failed++;
	else
		r->succeeded++;
	halt_check(r, j);
	if (j->timed_out) {
		char msg[128], *text = job_command_text(r, j);

		snprintf(msg, sizeof(msg),
			 "%s: job %zu killed after its time limit: ", progname,
			 j->seq + 1);
		buf_add_str(&j->out[1], msg);
		buf_add_str(&j->out[1], text);
		buf_add(&j->out[1], "\n", 1);
		free(text);
	}
	if (!r->keep_order) {
		job_print(r, j);
	} else {
		if (j->seq >= r->done_cap) {
			size_t cap = r->done_cap ? r->done_cap : 64;

			while (cap <= j->seq)
				cap *= 2;
			r->done = xrealloc(r->done, cap * sizeof(*r->done));
			memset(r->done + r->done_cap, 0,
			       (cap - r->done_cap) * sizeof(*r->done));
			r->done_cap = cap;
		}
		r->done[j->seq] = j;
		while (r->next_print < r->done_cap &&
		       r->done[r->next_print]) {
			job_print(r, r->done[r->next_print]);
			r->done[r->next_print++] = NULL;
		}
	}
	if (r->keep_order && r->line_buffer) {
		/* The next job in order may be running: it goes live. */
		int i, k;

		for (i = 0; i < r->nrunning; i++) {
			if (r->running[i]->seq != r->next_print)
				continue;
			for (k = 0; k < 2; k++)
				job_flush_lines(r, r->running[i], k);
		}
	}
	if (r->output_broken)
		r->stop = true;
	progress_show(r, false);
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

/* A copy of the n bytes at s as a string. A NUL byte cannot be passed in
 * an argument: like GNU parallel, prun puts the two characters \\0 in its
 * place and says so once, rather than cut the line short. */
static char *nul_escape(struct run *r, const char *s, size_t n)
{
	struct buf b = { 0 };
	const char *z;

	/* With -0 the NUL was the separator, and none is left. */
	while (r->sep != '\0' && (z = memchr(s, '\0', n))) {
		buf_add(&b, s, (size_t)(z - s));
		buf_add(&b, "\\0", 2);
		n -= (size_t)(z - s) + 1;
		s = z + 1;
		if (!r->nul_warned) {
			r->nul_warned = true;
			progress_clear(r);
			fprintf(stderr,
				"%s: Warning: A NUL character in the input "
				"was replaced with \\0.\n"
				"%s: Warning: NUL cannot be passed through in "
				"the argument list.\n"
				"%s: Warning: Did you mean to use the --null "
				"option?\n", progname, progname, progname);
		}
	}
	buf_add(&b, s, n);
	buf_add(&b, "", 1);
	return b.data;
}

/* Takes the next whole line from what has been read of standard input
 * (the last line may lack its newline). NULL when no whole line is there
 * yet. Input is read by the poll loop, never here: a slow producer must
 * not hold up the jobs' output or their time limits. */
static char *next_arg(struct run *r)
{
	struct buf *b = &r->in;
	const char *start = b->data + r->in_pos, *nl;
	size_t avail = b->len - r->in_pos, n;
	char *line;

	if (avail == 0) {
		if (r->input_eof)
			r->input_done = true;
		return NULL;
	}
	nl = memchr(start, r->sep, avail);
	if (!nl && !r->input_eof)
		return NULL;
	n = nl ? (size_t)(nl - start) : avail;
	line = nul_escape(r, start, n);
	r->in_pos += nl ? n + 1 : n;
	if (r->in_pos == b->len) {
		b->len = 0;
		r->in_pos = 0;
	}
	return line;
}

/* Reads what the streamed source has (the poll said it would not
 * block). A read error ends the input, and is prun's own error. */
static void read_input(struct run *r)
{
	char chunk[PRUN_CHUNK];
	ssize_t n = read(r->in_fd, chunk, sizeof(chunk));

	if (n > 0) {
		if (r->in_pos > 0 && r->in_pos * 2 >= r->in.len) {
			/* Drop the used part before growing. */
			memmove(r->in.data, r->in.data + r->in_pos,
				r->in.len - r->in_pos);
			r->in.len -= r->in_pos;
			r->in_pos = 0;
		}
		buf_add(&r->in, chunk, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n < 0) {
		progress_clear(r);
		fprintf(stderr, "%s: %s: %s\n", progname, r->in_name,
			strerror(errno));
		r->input_error = true;
	}
	r->input_eof = true;
}

/* Reads the streamed source to its end and counts its items, for what
 * needs the number of jobs before the first starts (--halt with N%). */
static void read_all_input(struct run *r)
{
	size_t i;

	while (!r->input_eof)
		read_input(r);
	for (i = 0; i < r->in.len; i++)
		if (r->in.data[i] == r->sep)
			r->total++;
	if (r->in.len && r->in.data[r->in.len - 1] != r->sep)
		r->total++;
}

/* Opens an input file ("-": standard input); fails prun when it cannot. */
static int open_input(const char *name)
{
	int fd;

	if (strcmp(name, "-") == 0)
		return 0;
	fd = open(name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot open input file '%s': %s\n",
			progname, name, strerror(errno));
		exit(PRUN_EXIT_ERROR);
	}
	return fd;
}

static void source_add_item(struct source *s, char *item)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->items = xrealloc(s->items, s->cap * sizeof(*s->items));
	}
	s->items[s->n++] = item;
}

/* Reads a file source whole into its items. */
static void source_load(struct run *r, struct source *s)
{
	int fd = open_input(s->name);
	size_t total = r->total;

	r->in_fd = fd;
	r->in_name = strcmp(s->name, "-") == 0 ? "standard input" : s->name;
	r->input_eof = false;
	r->input_done = false;
	read_all_input(r);
	r->total = total;
	for (;;) {
		char *item = next_arg(r);

		if (!item)
			break;
		source_add_item(s, item);
	}
	if (fd > 0)
		close(fd);
	free(r->in.data);
	memset(&r->in, 0, sizeof(r->in));
	r->in_pos = 0;
}

/* Prepares the sources. One file (standard input when none is named) is
 * streamed: read by the poll loop as jobs need it. Several are combined
 * as parallel combines them, every argument of one with every argument of
 * the next, so they are read whole first. */
static void sources_prepare(struct run *r)
{
	size_t i;

	if (r->nsrc == 0) {
		r->src = xrealloc(r->src, sizeof(*r->src));
		memset(r->src, 0, sizeof(*r->src));
		r->src[0].name = "-";
		r->nsrc = 1;
	}
	if (r->nsrc == 1 && r->src[0].name) {
		r->streaming = true;
		r->in_fd = open_input(r->src[0].name);
		r->in_name = r->in_fd == 0 ? "standard input" : r->src[0].name;
		return;
	}
	r->odo = xmalloc(r->nsrc * sizeof(*r->odo));
	r->total = 1;
	for (i = 0; i < r->nsrc; i++) {
		if (r->src[i].name)
			source_load(r, &r->src[i]);
		r->odo[i] = 0;
		r->total *= r->src[i].n;
	}
	r->input_eof = true;
	r->input_done = r->total == 0;
}

/* Adds an input item's arguments to *args: the item, or its columns
 * with --colsep (as Perl's split, which parallel uses: empty columns at
 * the end are dropped). */
static void add_fields(struct run *r, const char *item, char ***args,
		       size_t *n, size_t *cap)
{
	const char *s = item;
	size_t keep = *n;
	regmatch_t m;

	for (;;) {
		size_t len;

		if (*n + 2 > *cap) {
			*cap = *cap ? 2 * *cap : 8;
			*args = xrealloc(*args, *cap * sizeof(**args));
		}
		if (!r->colsep_set ||
		    regexec(&r->colsep, s, 1, &m, s == item ? 0 : REG_NOTBOL)
			    != 0 || m.rm_eo == 0) {
			(*args)[(*n)++] = strdup(s);
			break;
		}
		if (m.rm_so == m.rm_eo) {
			/* An empty match splits after one character. */
			m.rm_so = m.rm_eo = 1;
			if (!s[1]) {
				(*args)[(*n)++] = strdup(s);
				break;
			}
		}
		len = (size_t)m.rm_so;
		(*args)[*n] = xmalloc(len + 1);
		memcpy((*args)[*n], s, len);
		(*args)[(*n)++][len] = '\0';
		s += m.rm_eo;
	}
	if (!(*args)[*n - 1])
		out_of_memory();
	if (r->colsep_set) {
		while (*n > keep && (*args)[*n - 1][0] == '\0')
			free((*args)[--*n]);
	}
	(*args)[*n] = NULL;
}

/* The next job's arguments, NULL-ended, in *args; false when there is
 * none (yet, for a stream). */
static bool next_job(struct run *r, char ***args, size_t *nargs)
{
	size_t cap = 0, i;

	*args = NULL;
	*nargs = 0;
	if (r->streaming) {
		char *item = next_arg(r);

		if (!item)
			return false;
		add_fields(r, item, args, nargs, &cap);
		free(item);
		return true;
	}
	if (r->input_done)
		return false;
	for (i = 0; i < r->nsrc; i++)
		add_fields(r, r->src[i].items[r->odo[i]], args, nargs, &cap);
	/* The last source turns fastest. */
	for (i = r->nsrc; i-- > 0;) {
		if (++r->odo[i] < r->src[i].n)
			break;
		r->odo[i] = 0;
	}
	if (i == (size_t)-1)
		r->input_done = true;
	return true;
}

/* Starts jobs while there are free places, input and no reason to stop. */
static void fill(struct run *r)
{
	while (r->nrunning < r->jobs && !r->stop && !r->input_done) {
		struct job *j;
		char **args;
		size_t nargs;

		if (!next_job(r, &args, &nargs))
			break;
		if (r->dry_run) {
			/* The command as it would run, and nothing run. */
			char *text = command_text(&r->cmd, args, nargs,
						  r->started, 1);

			if (write_all(1, text, strlen(text)) < 0 ||
			    write_all(1, "\n", 1) < 0)
				r->output_broken = r->stop = true;
			r->started++;
			free(text);
			argv_free(args);
			continue;
		}
		j = job_start(r, args, nargs);
		if (j->pid == 0 && j->fd[0] < 0)
			job_finish(r, j);	/* could not start */
		else
			r->running[r->nrunning++] = j;
	}
}

/* An attempt of the job has ended (it may yet be retried). */
static void job_ended(struct run *r, struct job *j)
{
	char *text;

	if (!r->joblog || j->halted)
		return;
	/* GNU parallel's columns; the host of a local job is ":". */
	text = job_command_text(r, j);
	fprintf(r->joblog, "%zu\t:\t%.3f\t%8.3f\t0\t%zu\t%d\t%d\t%s\n",
		j->seq + 1, j->start_wall,
		(double)(now_ms() - j->start_ms) / 1000.0, j->received,
		WIFEXITED(j->status) ? WEXITSTATUS(j->status) : -1,
		WIFSIGNALED(j->status) ? WTERMSIG(j->status) : 0, text);
	fflush(r->joblog);
	free(text);
}

/* --retries N: a failed job runs again, up to N times in all, while the
 * run goes on; the output of the failed attempt is dropped, as parallel
 * drops it. True when it was started again. */
static bool job_retry(struct run *r, struct job *j)
{
	int k;

	if (!job_failed(j) || j->halted || j->attempts >= r->retries ||
	    r->stop || got_interrupt)
		return false;
	for (k = 0; k < 2; k++) {
		j->out[k].len = 0;
		if (j->spill[k] >= 0)
			close(j->spill[k]);
		j->spill[k] = -1;
		j->mid_line[k] = false;
	}
	j->received = 0;
	job_spawn(r, j);
	return j->pid != 0;
}

/* One round: waits for output, children or a deadline, then handles them.
 * Returns -1 on an error of poll itself. */
static int step(struct run *r)
{
	struct pollfd pfd[2 + 2 * PRUN_MAX_JOBS];
	short owner_k[2 + 2 * PRUN_MAX_JOBS];
	int owner_j[2 + 2 * PRUN_MAX_JOBS];
	int64_t next = 0, now;
	int n = 0, i, k, timeout = -1, rc, in_index = -1;
	/* More input only when a job could start with it. */
	bool want_input = r->streaming && !r->input_eof && !r->stop &&
			  !got_interrupt && r->nrunning < r->jobs;

	pfd[n].fd = wake_pipe[0];
	pfd[n].events = POLLIN;
	n++;
	if (want_input) {
		in_index = n;
		pfd[n].fd = r->in_fd;
		pfd[n].events = POLLIN;
		n++;
	}
	for (i = 0; i < r->nrunning; i++) {
		struct job *j = r->running[i];

		for (k = 0; k < 2; k++) {
			if (j->fd[k] < 0)
				continue;
			pfd[n].fd = j->fd[k];
			pfd[n].events = POLLIN;
			owner_j[n] = i;
			owner_k[n] = (short)k;
			n++;
		}
		if (j->kill_at && (!next || j->kill_at < next))
			next = j->kill_at;
		else if (j->deadline && !j->kill_at &&
			 (!next || j->deadline < next))
			next = j->deadline;
	}
	if (next) {
		int64_t d = next - now_ms();

		timeout = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
	}
	/* Cleared before the poll: a SIGCHLD from now on also leaves a byte
	 * in the pipe, so the poll returns and the flag is seen. */
	got_child = 0;
	rc = poll(pfd, (nfds_t)n, timeout);
	if (rc < 0 && errno != EINTR)
		return -1;
	if (rc > 0) {
		for (i = 1; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (i == in_index)
				read_input(r);
			else
				job_read(r, r->running[owner_j[i]],
					 owner_k[i]);
		}
		if (pfd[0].revents) {
			char drain[256];

			while (read(wake_pipe[0], drain, sizeof(drain)) > 0)
				;
		}
	}
	if (got_interrupt && !r->interrupted) {
		/* The jobs have groups of their own, so a terminal's ^C
		 * reaches only prun: pass it on. */
		r->interrupted = true;
		for (i = 0; i < r->nrunning; i++)
			kill(-r->running[i]->pgid, SIGTERM);
	}
	if (interrupts >= 2 && !r->killed) {
		/* Told twice: as parallel, no more waiting. */
		r->killed = true;
		for (i = 0; i < r->nrunning; i++)
			kill(-r->running[i]->pgid, SIGKILL);
	}
	/* Reap and retire. A job is over when its process has been reaped
	 * and both pipes are at end of file (a background process it left
	 * may still be writing). A process is looked for once its pipes are
	 * closed, or when a SIGCHLD came: exit closes the pipes just before
	 * the process can be reaped, and the SIGCHLD that follows wakes the
	 * poll again. */
	now = now_ms();
	for (i = 0; i < r->nrunning;) {
		struct job *j = r->running[i];
		bool closed = j->fd[0] < 0 && j->fd[1] < 0;

		if (closed || got_child)
			job_reap(j);
		job_check_time(j, now);
		if (j->pid == 0 && closed) {
			job_ended(r, j);
			if (job_retry(r, j)) {
				i++;
				continue;
			}
			r->running[i] = r->running[--r->nrunning];
			job_finish(r, j);
			continue;
		}
		i++;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The command line                                                         */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [OPTION...] [CMD [ARG...]] [::: ARG... | :::: "
		"FILE...]...\n"
		"  runs CMD ARG... for each line of standard input (or of the "
		"sources\n"
		"  given), N jobs at once, the line in place of {} {.} {/} {//} "
		"{/.}\n"
		"  {#} {%%} {1} {2}... or appended\n"
		"  -j, --jobs N      jobs at once: N, 0 (as many as possible), "
		"+N, -N\n"
		"                    (cores plus or minus N) or N%% of the "
		"cores\n"
		"  -k, --keep-order  print outputs in input order\n"
		"  --timeout S       kill a job's process group after S "
		"seconds\n"
		"  --halt WHEN,WHAT=N  stop after N (or N%%) jobs failed, "
		"succeeded or\n"
		"                    finished: WHEN is soon (start no more) or "
		"now (kill the\n"
		"                    running ones), WHAT is fail, success or "
		"done; never\n"
		"  -0, --null        input items end with a NUL, not a "
		"newline\n"
		"  -d, --delimiter D input items end with D (a character or "
		"\\n, \\t, \\0...)\n"
		"  -a, --arg-file F  arguments from the file F (- for "
		"standard input)\n"
		"  -C, --colsep RE   split each argument into columns {1} {2}"
		"... at RE\n"
		"  --retries N       run a failed job again, up to N times in "
		"all\n"
		"  --joblog FILE     a line per job in FILE, parallel's "
		"columns\n"
		"  --tag             each output line after the job's "
		"arguments and a tab\n"
		"  --dry-run         print the commands, run nothing\n"
		"  --line-buffer, --lb  print whole lines as they come\n"
		"  -u, --ungroup     print output as it comes\n"
		"  --progress, --eta, --bar  show how far the run is, on "
		"stderr\n"
		"  -h, --help        this help, on standard output\n",
		progname);
}

/* Reports a bad command line on one line, points to --help, exits. */
static void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n",
		progname);
	exit(PRUN_EXIT_ERROR);
}

/* -j VALUE, as GNU parallel reads it: N, 0 for as many as possible, +N and
 * -N for the cores plus or minus N, N% for a share of the cores. */
static int parse_jobs(const char *opt, const char *v)
{
	static const char range[] = "expected N (1 to 1024), 0 (as many as "
				    "possible), +N, -N or N%";
	int cores = exchange_cores();
	double n;
	char *end;
	long long j;

	if (cores < 1)
		cores = 1;
	errno = 0;
	if (*v == '+' || *v == '-') {
		long d = strtol(v + 1, &end, 10);

		if (errno || end == v + 1 || *end || !isdigit((unsigned char)v[1]))
			bad_usage("%s '%s': %s", opt, v, range);
		j = *v == '+' ? (long long)cores + d : (long long)cores - d;
	} else if (*v && v[strlen(v) - 1] == '%') {
		n = strtod(v, &end);
		if (errno || end == v || *end != '%' || !(n >= 0) ||
		    !isdigit((unsigned char)*v))
			bad_usage("%s '%s': %s", opt, v, range);
		j = (long long)floor(cores * n / 100.0);
	} else {
		long d = strtol(v, &end, 10);

		if (errno || end == v || *end || !isdigit((unsigned char)*v))
			bad_usage("%s '%s': %s", opt, v, range);
		if (d == 0)
			return PRUN_MAX_JOBS;
		j = d;
	}
	if (j < 1)
		bad_usage("%s '%s' leaves no job slot on %d cores: %s", opt, v,
			  cores, range);
	return j > PRUN_MAX_JOBS ? PRUN_MAX_JOBS : (int)j;
}

/* --halt SPEC in GNU parallel's grammar: never, or WHEN,WHAT=N or
 * WHEN,WHAT=N% with WHEN now or soon and WHAT fail, success or done; the
 * old numbers 0 (never), 1 (soon,fail=1), 2 (now,fail=1), -1
 * (soon,success=1) and -2 (now,success=1). */
static void parse_halt(const char *v, struct halt *h)
{
	static const char range[] = "expected never, or now or soon, then "
				    ",fail=N, ,success=N or ,done=N "
				    "(N from 1, or N% from 0 to 100)";
	const char *p = v, *num;
	char *end;
	double n;

	memset(h, 0, sizeof(*h));
	if (strcmp(v, "never") == 0 || strcmp(v, "0") == 0)
		return;
	if (strcmp(v, "1") == 0 || strcmp(v, "2") == 0 ||
	    strcmp(v, "-1") == 0 || strcmp(v, "-2") == 0) {
		h->when = strchr(v, '2') ? HALT_NOW : HALT_SOON;
		h->what = *v == '-' ? HALT_SUCCESS : HALT_FAIL;
		h->count = 1;
		return;
	}
	if (strncmp(p, "now,", 4) == 0) {
		h->when = HALT_NOW;
		p += 4;
	} else if (strncmp(p, "soon,", 5) == 0) {
		h->when = HALT_SOON;
		p += 5;
	} else {
		bad_usage("--halt '%s': %s", v, range);
	}
	if (strncmp(p, "fail=", 5) == 0) {
		h->what = HALT_FAIL;
		num = p + 5;
	} else if (strncmp(p, "success=", 8) == 0) {
		h->what = HALT_SUCCESS;
		num = p + 8;
	} else if (strncmp(p, "done=", 5) == 0) {
		h->what = HALT_DONE;
		num = p + 5;
	} else {
		bad_usage("--halt '%s': %s", v, range);
	}
	errno = 0;
	if (!isdigit((unsigned char)*num))
		bad_usage("--halt '%s': %s", v, range);
	n = strtod(num, &end);
	if (errno)
		bad_usage("--halt '%s': %s", v, range);
	if (*end == '%' && end[1] == '\0') {
		if (!(n >= 0 && n <= 100))
			bad_usage("--halt '%s': %s", v, range);
		h->pct = n;
		return;
	}
	if (*end || n < 1 || n != floor(n) || n > 1e15)
		bad_usage("--halt '%s': %s", v, range);
	h->count = (size_t)n;
}

/* --timeout S: seconds, more than 0, at most a year. */
static int64_t parse_timeout(const char *v)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(v, &end);
	if (errno || end == v || *end || !(s > 0.0) || s > 86400.0 * 365)
		bad_usage("--timeout '%s': expected seconds, more than 0 and "
			  "at most 31536000", v);
	s = s * 1000.0 + 0.5;
	return s < 1 ? 1 : (int64_t)s;
}

/* -d DELIM: one character, or a C escape for one (\n, \t, \0, \\, \xHH,
 * an octal \NNN), as GNU parallel takes it. */
static char parse_delimiter(const char *v)
{
	static const char esc[] = "abfnrtv\\";
	static const char val[] = "\a\b\f\n\r\t\v\\";
	const char *e;
	char *end;
	long n;

	if (v[0] && !v[1])
		return v[0];
	if (v[0] == '\\' && v[1] && !v[2] && (e = strchr(esc, v[1])))
		return val[e - esc];
	if (v[0] == '\\' && (v[1] == 'x' || isdigit((unsigned char)v[1]))) {
		errno = 0;
		n = v[1] == 'x' ? strtol(v + 2, &end, 16) : strtol(v + 1, &end, 8);
		if (!errno && !*end && end > v + 1 && n >= 0 && n <= 255)
			return (char)n;
	}
	bad_usage("-d '%s': expected one character or an escape for one "
		  "(\\n, \\t, \\0, \\\\, \\xHH, \\NNN)", v);
}

/* A whole number from min to max, for the option opt. */
static int parse_count(const char *opt, const char *v, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || !isdigit((unsigned char)*v) ||
	    n < min || n > max)
		bad_usage("%s '%s': expected a whole number from %ld to %ld",
			  opt, v, min, max);
	return (int)n;
}

enum {
	OPT_TIMEOUT = 256,	/* long options without a short name */
	OPT_HALT,
	OPT_WILL_CITE,
	OPT_RETRIES,
	OPT_JOBLOG,
	OPT_TAG,
	OPT_DRY_RUN,
	OPT_LINE_BUFFER,
	OPT_PROGRESS,
	OPT_ETA,
	OPT_BAR,
};

static const struct option long_options[] = {
	{ "jobs", required_argument, NULL, 'j' },
	{ "max-procs", required_argument, NULL, 'P' },
	{ "keep-order", no_argument, NULL, 'k' },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "halt", required_argument, NULL, OPT_HALT },
	{ "halt-on-error", required_argument, NULL, OPT_HALT },
	{ "null", no_argument, NULL, '0' },
	{ "arg-file", required_argument, NULL, 'a' },
	{ "colsep", required_argument, NULL, 'C' },
	{ "delimiter", required_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ "will-cite", no_argument, NULL, OPT_WILL_CITE },
	{ "retries", required_argument, NULL, OPT_RETRIES },
	{ "joblog", required_argument, NULL, OPT_JOBLOG },
	{ "tag", no_argument, NULL, OPT_TAG },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "line-buffer", no_argument, NULL, OPT_LINE_BUFFER },
	{ "lb", no_argument, NULL, OPT_LINE_BUFFER },
	{ "ungroup", no_argument, NULL, 'u' },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "eta", no_argument, NULL, OPT_ETA },
	{ "bar", no_argument, NULL, OPT_BAR },
	{ NULL, 0, NULL, 0 },
};

/* The name of the option getopt_long just read, for an error message. */
static const char *option_name(int c, int index, char *buf, size_t size)
{
	if (index >= 0)
		snprintf(buf, size, "--%s", long_options[index].name);
	else
		snprintf(buf, size, "-%c", c);
	return buf;
}

/* Whether a word of the command line starts a source. */
static bool source_mark(const char *w)
{
	return strcmp(w, ":::") == 0 || strcmp(w, "::::") == 0 ||
	       strcmp(w, ":::+") == 0 || strcmp(w, "::::+") == 0;
}

/* Adds a source: a file (name) or, for NULL, an empty ::: list. */
static void source_new(struct run *r, const char *name)
{
	r->src = xrealloc(r->src, (r->nsrc + 1) * sizeof(*r->src));
	memset(&r->src[r->nsrc], 0, sizeof(*r->src));
	r->src[r->nsrc++].name = name;
}

/* --colsep REGEX: an extended regular expression, where Perl's \t, \n,
 * \s, \S, \d and \D (which parallel's users write) are understood too. */
static void parse_colsep(const char *v, struct run *r)
{
	struct buf b = { 0 };
	char msg[128];
	const char *p;
	int rc;

	for (p = v; *p; p++) {
		if (*p != '\\' || !p[1]) {
			buf_add(&b, p, 1);
			continue;
		}
		switch (*++p) {
		case 't': buf_add(&b, "\t", 1); break;
		case 'n': buf_add(&b, "\n", 1); break;
		case 's': buf_add_str(&b, "[[:space:]]"); break;
		case 'S': buf_add_str(&b, "[^[:space:]]"); break;
		case 'd': buf_add_str(&b, "[0-9]"); break;
		case 'D': buf_add_str(&b, "[^0-9]"); break;
		default: buf_add(&b, p - 1, 2); break;
		}
	}
	buf_add(&b, "", 1);
	if (r->colsep_set)
		regfree(&r->colsep);
	rc = regcomp(&r->colsep, b.data, REG_EXTENDED);
	free(b.data);
	if (rc != 0) {
		regerror(rc, &r->colsep, msg, sizeof(msg));
		bad_usage("--colsep '%s': not a regular expression: %s", v,
			  msg);
	}
	r->colsep_set = true;
}

/* Parses the command line into r; a bad one is reported on one line and
 * ends prun with status 255, as GNU parallel does. Options come first:
 * the first word that is not one starts the command. */
static void parse(int argc, char **argv, struct run *r)
{
	struct buf line = { 0 };
	char name[64];
	int c, i, index;

	r->sep = '\n';
	r->jobs = exchange_cores();
	if (r->jobs < 1)
		r->jobs = 1;
	opterr = 0;
	for (;;) {
		index = -1;
		c = getopt_long(argc, argv, "+:j:P:k0d:a:C:uh", long_options, &index);
		if (c == -1)
			break;
		switch (c) {
		case 'j':
		case 'P':
			r->jobs = parse_jobs(option_name(c, index, name,
							 sizeof(name)),
					     optarg);
			break;
		case 'k':
			r->keep_order = true;
			break;
		case OPT_TIMEOUT:
			r->timeout_ms = parse_timeout(optarg);
			break;
		case OPT_HALT:
			parse_halt(optarg, &r->halt);
			break;
		case '0':
			r->sep = '\0';
			break;
		case 'd':
			r->sep = parse_delimiter(optarg);
			break;
		case 'a':
			source_new(r, optarg);
			break;
		case 'C':
			parse_colsep(optarg, r);
			break;
		case OPT_WILL_CITE:
			break;
		case OPT_JOBLOG:
			if (r->joblog)
				fclose(r->joblog);
			r->joblog = strcmp(optarg, "-") == 0 ? stdout
				    : fopen(optarg, "w");
			if (!r->joblog) {
				fprintf(stderr, "%s: --joblog %s: %s\n",
					progname, optarg, strerror(errno));
				exit(PRUN_EXIT_ERROR);
			}
			fcntl(fileno(r->joblog), F_SETFD, FD_CLOEXEC);
			fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\t"
			      "Receive\tExitval\tSignal\tCommand\n",
			      r->joblog);
			fflush(r->joblog);
			break;
		case OPT_TAG:
			r->tag = true;
			break;
		case OPT_DRY_RUN:
			r->dry_run = true;
			break;
		case OPT_LINE_BUFFER:
			r->line_buffer = true;
			break;
		case 'u':
			r->ungroup = true;
			break;
		case OPT_PROGRESS:
			r->show |= SHOW_PROGRESS;
			break;
		case OPT_ETA:
			r->show |= SHOW_ETA;
			break;
		case OPT_BAR:
			r->show |= SHOW_BAR;
			break;
		case OPT_RETRIES:
			r->retries = parse_count("--retries", optarg, 0,
						 1000000);
			break;
		case 'h':
			usage(stdout);
			exit(fflush(stdout) == 0 ? 0 : PRUN_EXIT_ERROR);
		case ':':
			bad_usage("%s needs a value", argv[optind - 1]);
		default:
			if (optopt && optopt < 256)
				bad_usage("unknown option '-%c'", optopt);
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	/* The command: the words up to the first ::: or ::::. */
	for (i = optind; i < argc && !source_mark(argv[i]); i++) {
		if (i > optind)
			buf_add(&line, " ", 1);
		buf_add_str(&line, argv[i]);
	}
	if (line.data)
		buf_add(&line, "", 1);
	r->cmd.line = line.data;
	/* The sources: ::: ARG... and :::: FILE..., in their order. */
	while (i < argc) {
		const char *mark = argv[i++];

		if (strcmp(mark, ":::") == 0)
			source_new(r, NULL);
		else if (strcmp(mark, "::::") != 0)
			bad_usage("%s (linked sources) is not supported", mark);
		for (; i < argc && !source_mark(argv[i]); i++) {
			if (strcmp(mark, ":::") == 0)
				source_add_item(&r->src[r->nsrc - 1],
						strdup(argv[i]));
			else
				source_new(r, argv[i]);
		}
	}
}

/* The exit status, as GNU parallel's: the number of failed jobs up to
 * 100, 101 for more; what --halt chose when it stopped the run; 255 when
 * prun could not write the output; 128 + the signal after an interrupt. */
static int exit_status(const struct run *r)
{
	if (got_interrupt)
		return 128 + (int)got_interrupt;
	if (r->output_broken)
		return PRUN_EXIT_ERROR;
	if (r->halt_status >= 0)
		return r->halt_status;
	if (r->halt.when != HALT_NEVER && !r->halt.count)
		return (int)ceil((double)r->failed * 100.0 /
				 (double)(r->started ? r->started : 1));
	return r->failed > 101 ? 101 : (int)r->failed;
}

int main(int argc, char **argv)
{
	struct run r;
	struct sigaction sa;
	int fd, status;
	size_t i;

	memset(&r, 0, sizeof(r));
	r.halt_status = -1;
	parse(argc, argv, &r);

	/* Descriptors 0, 1 and 2 must exist, or a pipe could take their
	 * numbers and a job's dup2 onto them would do nothing. */
	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
	r.devnull = open("/dev/null", O_RDONLY);
	if (r.devnull < 0 || pipe(wake_pipe) < 0) {
		perror(progname);
		return PRUN_EXIT_ERROR;
	}
	fcntl(r.devnull, F_SETFD, FD_CLOEXEC);
	fcntl(wake_pipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(wake_pipe[1], F_SETFD, FD_CLOEXEC);
	fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Writes to a closed stdout fail with EPIPE instead; the jobs get the
	 * default back before exec. */
	signal(SIGPIPE, SIG_IGN);

	command_prepare(&r.cmd);
	r.tty = isatty(2) == 1;
	r.started_ms = now_ms();
	r.running = xmalloc((size_t)r.jobs * sizeof(*r.running));
	r.slots = xmalloc((size_t)r.jobs * sizeof(*r.slots));
	memset(r.slots, 0, (size_t)r.jobs * sizeof(*r.slots));
	sources_prepare(&r);
	if (r.streaming && ((r.halt.when != HALT_NEVER && !r.halt.count) ||
			    (r.show & (SHOW_ETA | SHOW_BAR))))
		read_all_input(&r);

	for (;;) {
		if (!got_interrupt)
			fill(&r);
		if (r.nrunning == 0 &&
		    (r.stop || r.input_done || got_interrupt))
			break;
		if (step(&r) < 0) {
			perror("poll");
			return PRUN_EXIT_ERROR;
		}
		if (got_interrupt)
			r.stop = true;
	}
	progress_clear(&r);
	progress_show(&r, true);
	status = exit_status(&r);
	if (r.joblog && fclose(r.joblog) != 0) {
		perror("--joblog");
		status = PRUN_EXIT_ERROR;
	}
	/* Every job has been reaped: no handler may write to the pipe now. */
	signal(SIGCHLD, SIG_DFL);
	close(wake_pipe[0]);
	close(wake_pipe[1]);
	close(r.devnull);
	free(r.running);
	free(r.slots);
	free(r.odo);
	for (i = 0; i < r.nsrc; i++) {
		size_t k;

		for (k = 0; k < r.src[i].n; k++)
			free(r.src[i].items[k]);
		free(r.src[i].items);
	}
	free(r.src);
	if (r.colsep_set)
		regfree(&r.colsep);
	if (r.in_fd > 0)
		close(r.in_fd);
	free(r.done);
	free(r.in.data);
	command_free(&r.cmd);
	return status;
}
