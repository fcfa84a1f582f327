/*
 * start_indexer - a text index built in parallel, then searched by prefix
 * (pprocess tests/start_indexer.py, with its parser, indexer and searcher
 * of tests/Dict.py).
 *
 *   start_indexer [OPTION...] DIRECTORY [WINDOW [SLICE [DELAY]]]
 *
 * The regular files of DIRECTORY (not those of its subdirectories) are
 * cut into slices of SLICE files (5). Each slice is parsed in a process
 * started with channel_start and added to an exchange, at most WINDOW (4)
 * of them at once; each time the parent has received one message from
 * every ready channel (exchange_ready), it fills the window again. A
 * parser sends one message per distinct word of each file: the file's
 * place in the list, then the word. A word is a token between white space
 * with everything from its first non-alphanumeric character after an
 * alphanumeric one cut off, and what comes before its first alphanumeric
 * one dropped ("(don't)" is "don"), as Dict.py's Parser._strip makes it.
 * After each file a parser sleeps DELAY seconds (none by default).
 *
 * Then, until the end of standard input, it prints "Pattern: ", reads a
 * line and prints the words that begin with it and the files holding
 * each, as Python 2 prints the dictionary pprocess's searcher returns:
 *
 *   Pattern: {'world': ['dir/a', 'dir/b'], 'words': ['dir/b']}
 *
 * or [] when no word begins with the pattern (an empty pattern gives
 * every word). --noprompt builds the index and prints nothing, as
 * the original's --noprompt. The options -w, -s and -d give the window,
 * slice and delay as the words after DIRECTORY do in the original.
 *
 * The order is this program's own: pprocess prints a dictionary in the
 * order of its hash table, and each word's files in the order their
 * messages arrived from processes running at once, from a directory
 * listing in the file system's order. Here the words come in byte order
 * and each word's files in the order of their names, the same every time.
 * At the end of input the original stops with a traceback (EOFError);
 * the twin ends with status 0, after a newline when standard output is a
 * terminal.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "demo.h"
#include "wordcount.h"

/* The most channels taken from one exchange_ready call. */
#define READY_BATCH 64

/* The files a parser is given: a slice of the list. */
struct slice {
	uint32_t first;		/* the place of its first file */
	uint32_t count;		/* how many files */
};

/* One word found in one file: the index is a sorted array of these. */
struct posting {
	const char *word;	/* owned by the table of words */
	uint32_t file;		/* the file's place in the list */
};

/* The index: every word once, and a posting per word and file. */
struct index {
	struct wc_table words;	/* the distinct words, owning their text */
	struct posting *p;	/* postings, sorted once indexing ends */
	size_t n;		/* postings used */
	size_t cap;		/* postings allocated */
};

/* What the command line gives. */
struct settings {
	const char *directory;	/* the directory indexed */
	long window;		/* parsers at once (pprocess window_size) */
	long slice;		/* files per parser (pprocess slice_size) */
	bool noprompt;		/* --noprompt: index, then leave */
};

enum { OPT_NOPROMPT = 256 };

static const struct option long_options[] = {
	{ "window", required_argument, NULL, 'w' },
	{ "slice", required_argument, NULL, 's' },
	{ "delay", required_argument, NULL, 'd' },
	{ "noprompt", no_argument, NULL, OPT_NOPROMPT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-w WINDOW] [-s SLICE] [-d SECONDS] [--noprompt]\n"
		"       DIRECTORY [WINDOW [SLICE [SECONDS]]]\n"
		"  indexes the words of the files of DIRECTORY, then prints "
		"the words that\n"
		"  begin with each line of standard input, and their files\n"
		"  -w, --window WINDOW   parser processes at once (default 4, "
		"from 1 to 1024)\n"
		"  -s, --slice SLICE     files per parser (default 5, from 1 "
		"to 1000000)\n"
		"  -d, --delay SECONDS   each parser sleeps this long after "
		"each file\n"
		"                        (default 0, at most 3600)\n"
		"      --noprompt        build the index, answer nothing\n"
		"  -h, --help            this help\n", cli.prog);
}

/* Python's os.path.join(directory, name). */
static char *join(const char *directory, const char *name)
{
	size_t len = strlen(directory), size = len + strlen(name) + 2;
	char *path = wc_alloc(size);

	snprintf(path, size, "%s%s%s", directory,
		 directory[len - 1] == '/' ? "" : "/", name);
	return path;
}

/* The regular files of directory (symbolic links followed, as Python's
 * os.path.isfile does), sorted by name; exits with status 1 when the
 * directory cannot be read. */
static void list_files(struct wc_files *files, const char *directory)
{
	DIR *d = opendir(directory);
	struct dirent *de;
	struct stat st;

	if (!d) {
		fprintf(stderr, "%s: %s: %s\n", cli.prog, directory,
			strerror(errno));
		exit(1);
	}
	while ((de = readdir(d))) {
		char *path;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		path = join(directory, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			wc_files_add(files, path);
		free(path);
	}
	closedir(d);
	wc_files_sort(files);
}

/* Bytes as Python's str.isalpha and str.isdigit take them (the C locale,
 * whatever the environment says). */
static bool is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* White space as Python's str.split() takes it. */
static bool is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The whole content of path (malloc'd) and its size in *len, or NULL with
 * errno. */
static unsigned char *read_whole(const char *path, size_t *len)
{
	unsigned char chunk[65536], *buf = NULL;
	size_t cap = 0, n;
	FILE *f = fopen(path, "rb");
	int err;

	*len = 0;
	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		wc_put(&buf, len, &cap, chunk, n);
	err = ferror(f) ? errno : 0;
	fclose(f);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	return buf ? buf : wc_alloc(1);
}

/* Sends the distinct words of the text, each after the file's place.
 * 0, or -1 when the channel failed. */
static int send_entries(struct channel *ch, uint32_t file,
			const unsigned char *text, size_t len)
{
	struct wc_table seen = { 0 };
	unsigned char *msg = NULL;
	size_t i = 0, mlen = 0, mcap = 0;
	int r = 0;

	while (i < len && r == 0) {
		size_t start, wl;

		while (i < len && is_space(text[i]))
			i++;
		/* A token: skip to its first alphanumeric byte, keep the
		 * run that follows, drop the rest. */
		while (i < len && !is_space(text[i]) && !is_alnum(text[i]))
			i++;
		start = i;
		while (i < len && is_alnum(text[i]))
			i++;
		wl = i - start;
		while (i < len && !is_space(text[i]))
			i++;
		/* pprocess sends the empty word too, and its indexer drops
		 * it; here it is not sent. */
		if (wl == 0 || wc_table_get(&seen, (const char *)text + start,
					    wl)->count++ > 0)
			continue;
		mlen = 0;
		wc_put(&msg, &mlen, &mcap, &file, sizeof(file));
		wc_put(&msg, &mlen, &mcap, text + start, wl);
		r = channel_send(ch, msg, mlen, -1);
	}
	free(msg);
	wc_table_free(&seen);
	return r;
}

/* Runs in a child (pprocess apply_parser): parses the slice's files in
 * turn, sleeping the delay after each. A file that cannot be read ends
 * the slice with an error message. */
static void apply_parser(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	const struct wc_files *files = ctx;
	struct slice s;
	uint32_t i;

	if (len != sizeof(s))
		return;
	memcpy(&s, arg, sizeof(s));
	for (i = s.first; i < s.first + s.count && i < files->n; i++) {
		size_t tlen;
		unsigned char *text = read_whole(files->path[i], &tlen);
		char why[512];
		int r;

		if (!text) {
			snprintf(why, sizeof(why), "%s: %s", files->path[i],
				 strerror(errno));
			channel_send_error(ch, why, -1);
			return;
		}
		r = send_entries(ch, i, text, tlen);
		free(text);
		if (r < 0)
			return;
		if (demo.delay > 0)
			demo_sleep();
	}
}

/* Starts parsers for the slices from file i while the window has room
 * (pprocess fill_window). Returns the first file not given out. */
static size_t fill_window(struct exchange *ex, const struct wc_files *files,
			  size_t i, const struct settings *set)
{
	size_t active = exchange_active(ex, NULL, 0);

	while (i < files->n && active < (size_t)set->window) {
		struct slice s = { (uint32_t)i, (uint32_t)set->slice };
		struct channel *ch;

		ch = channel_start(apply_parser, &s, sizeof(s),
				   (void *)files);
		if (!ch)
			demo_die("channel_start");
		if (exchange_add(ex, ch) < 0)
			demo_die("exchange_add");
		i += (size_t)set->slice;
		active++;
	}
	return i;
}

/* Adds what a parser sent (pprocess Indexer.add_entry). */
static void add_entry(struct index *ix, const struct wc_files *files,
		      const struct channel_msg *m)
{
	uint32_t file;

	if (m->len <= sizeof(file))
		return;
	memcpy(&file, m->data, sizeof(file));
	if (file >= files->n)
		return;
	if (ix->n == ix->cap) {
		ix->cap = ix->cap ? ix->cap * 2 : 1024;
		ix->p = realloc(ix->p, ix->cap * sizeof(*ix->p));
		if (!ix->p)
			demo_die("realloc");
	}
	ix->p[ix->n].word = wc_table_get(&ix->words,
					 (const char *)m->data + sizeof(file),
					 m->len - sizeof(file))->word;
	ix->p[ix->n].file = file;
	ix->n++;
}

static int posting_cmp(const void *a, const void *b)
{
	const struct posting *x = a, *y = b;
	int c = strcmp(x->word, y->word);

	return c ? c : (x->file > y->file) - (x->file < y->file);
}

/* Builds the index with a window of parsers (pprocess get_searcher).
 * Returns 0, or 1 when a parser reported a file it could not read. */
static int get_index(struct index *ix, const struct wc_files *files,
		     const struct settings *set)
{
	struct exchange *ex = exchange_new(NULL);
	size_t i;
	int status = 0;

	if (!ex)
		demo_die("exchange_new");
	i = fill_window(ex, files, 0, set);
	while (exchange_active(ex, NULL, 0) > 0) {
		struct channel *ready[READY_BATCH];
		int n = exchange_ready(ex, ready, READY_BATCH, -1), j;

		if (n < 0)
			demo_die("exchange_ready");
		/* One message from each ready channel, as pprocess. */
		for (j = 0; j < n; j++) {
			struct channel_msg m;

			if (channel_recv(ready[j], &m, 0) != 1)
				continue;
			if (m.kind == CHANNEL_DATA) {
				add_entry(ix, files, &m);
			} else {
				fprintf(stderr, "%s: %s\n", cli.prog,
					(const char *)m.data);
				status = 1;
			}
			channel_msg_free(&m);
		}
		i = fill_window(ex, files, i, set);
	}
	exchange_free(ex);
	if (ix->n)
		qsort(ix->p, ix->n, sizeof(*ix->p), posting_cmp);
	return status;
}

/* Prints s as Python 2's repr() of a str: in single quotes, or in double
 * ones when it holds a single quote and no double one; backslashes, the
 * quote, tabs, newlines, carriage returns and other bytes that are not
 * printable ASCII escaped. */
static void print_repr(const char *s)
{
	char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
	const unsigned char *c;

	putchar(quote);
	for (c = (const unsigned char *)s; *c; c++) {
		if (*c == quote || *c == '\\')
			printf("\\%c", *c);
		else if (*c == '\t')
			fputs("\\t", stdout);
		else if (*c == '\n')
			fputs("\\n", stdout);
		else if (*c == '\r')
			fputs("\\r", stdout);
		else if (*c < ' ' || *c >= 0x7f)
			printf("\\x%02x", *c);
		else
			putchar(*c);
	}
	putchar(quote);
}

/* The first posting whose word is not below pattern. */
static size_t lower_bound(const struct index *ix, const char *pattern)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(ix->p[mid].word, pattern) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Prints the words beginning with pattern (len bytes) and their files
 * (pprocess Searcher.find, printed): a dictionary, or [] when no word
 * begins so. The empty pattern reaches every word, also none. */
static void find(const struct index *ix, const struct wc_files *files,
		 const char *pattern, size_t len)
{
	size_t k = lower_bound(ix, pattern);
	const char *word = NULL;

	/* A NUL byte in the pattern: no word holds one. */
	if (strlen(pattern) != len ||
	    (len > 0 && (k == ix->n ||
			 strncmp(ix->p[k].word, pattern, len) != 0))) {
		puts("[]");
		return;
	}
	putchar('{');
	for (; k < ix->n && strncmp(ix->p[k].word, pattern, len) == 0; k++) {
		if (ix->p[k].word != word) {
			if (word)
				fputs("], ", stdout);
			word = ix->p[k].word;
			print_repr(word);
			fputs(": [", stdout);
		} else {
			fputs(", ", stdout);
		}
		print_repr(files->path[ix->p[k].file]);
	}
	puts(word ? "]}" : "}");
}

/* The user interface: a pattern per line of standard input. */
static void prompt(const struct index *ix, const struct wc_files *files)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	for (;;) {
		fputs("Pattern: ", stdout);
		fflush(stdout);
		len = getline(&line, &cap, stdin);
		if (len < 0)
			break;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		find(ix, files, line, (size_t)len);
	}
	if (isatty(1) == 1)
		putchar('\n');
	free(line);
}

/* Reads the command line: the options, then DIRECTORY and the original's
 * WINDOW, SLICE and DELAY after it. */
static void parse(int argc, char **argv, struct settings *set)
{
	int c;

	demo_start(argv, ":w:s:d:h", long_options, usage, 1, 1, 0.0);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case 'w':
			set->window = cli_int(optarg, 1, 1024);
			break;
		case 's':
			set->slice = cli_int(optarg, 1, 1000000);
			break;
		case 'd':
			demo_option(c, optarg);
			break;
		case OPT_NOPROMPT:
			set->noprompt = true;
			break;
		}
	}
	if (optind == argc)
		cli_bad("no DIRECTORY given");
	cli_operand("DIRECTORY");
	set->directory = cli_text(argv[optind++], "a directory", 0);
	if (optind < argc) {
		cli_operand("WINDOW");
		set->window = cli_int(argv[optind++], 1, 1024);
	}
	if (optind < argc) {
		cli_operand("SLICE");
		set->slice = cli_int(argv[optind++], 1, 1000000);
	}
	if (optind < argc) {
		cli_operand("DELAY");
		demo.delay = cli_seconds(argv[optind++], 3600.0);
	}
	cli_no_operands(argc, argv);
}

int main(int argc, char **argv)
{
	struct settings set = { NULL, 4, 5, false };
	struct wc_files files = { 0 };
	struct index ix = { 0 };
	int status;

	parse(argc, argv, &set);
	list_files(&files, set.directory);
	status = get_index(&ix, &files, &set);
	if (!set.noprompt)
		prompt(&ix, &files);
	free(ix.p);
	wc_table_free(&ix.words);
	wc_files_free(&files);
	return status;
}
