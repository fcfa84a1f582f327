/*
 * indexer - a search index built in parallel with a window of processes,
 * then queried (pprocess tests/start_indexer.py).
 *
 *   indexer [-w N] [-s K] [-d SECONDS] PATH [QUERY...]
 *
 * The regular files under PATH (sorted) are cut into slices of K files.
 * Each slice is parsed in a process started with channel_start and added
 * to an exchange; at most N such channels are in the exchange at once (the
 * window), and each time answers have been taken the window is filled
 * again. A parser sends one message per file: its index in the list and
 * its distinct words. The parent waits with exchange_ready and receives
 * from each ready channel, building the index (word to files).
 *
 * Then each QUERY is answered (or, without one, each line of standard
 * input): the files that contain every word of the query, one per line
 * after a "QUERY: N files" line. --delay makes each parser sleep S seconds
 * per file, to show the window at work. Words are as in wordcount.h.
 */
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "cli.h"
#include "exchange.h"
#include "wordcount.h"

/* The most channels waited on in one exchange_ready call. */
#define READY_BATCH 64

/* A slice of the file list given to one parser. */
struct slice {
	uint64_t first;		/* index of its first file */
	uint64_t count;		/* number of files */
};

/* What the parsers need: the file list and the delay. */
struct job {
	const struct wc_files *files;	/* all files, in the child's copy */
	double delay;			/* seconds to sleep per file */
};

/* The files containing one word. */
struct postings {
	uint32_t *file;		/* file indices, sorted once indexing ends */
	size_t n;		/* how many */
	size_t cap;		/* allocated */
};

/* The index: words to posting lists. */
struct index {
	struct wc_table words;	/* word -> count holds its postings number */
	struct postings *lists;	/* the posting lists */
	size_t n;		/* lists used */
	size_t cap;		/* lists allocated */
};

static const struct option long_options[] = {
	{ "window", required_argument, NULL, 'w' },
	{ "slice", required_argument, NULL, 's' },
	{ "delay", required_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-w N] [-s K] [-d SECONDS] PATH [QUERY...]\n"
		"  indexes the words of the files under PATH, then prints the "
		"files that\n"
		"  contain every word of each QUERY (or of each line of "
		"standard input)\n"
		"  -w, --window N       parser processes at once (default 4, "
		"from 1 to 1024)\n"
		"  -s, --slice K        files per parser (default 5, from 1 to "
		"1000000)\n"
		"  -d, --delay SECONDS  each parser sleeps this long per file "
		"(default 0,\n"
		"                       at most 3600)\n"
		"  -h, --help           this help\n", cli.prog);
}

/* Collects the distinct words of one file. */
static void note_word(const char *w, size_t len, void *data)
{
	wc_table_get(data, w, len)->count++;
}

/* Runs in a child: parses the slice's files, one message per file:
 * uint32 file index, then the file's distinct words separated by '\n'. */
static void apply_parser(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	const struct job *job = ctx;
	struct slice s;
	uint64_t i;

	if (len != sizeof(s)) {
		channel_send_error(ch, "bad slice", -1);
		return;
	}
	memcpy(&s, arg, sizeof(s));
	for (i = s.first; i < s.first + s.count && i < job->files->n; i++) {
		struct wc_table t = { 0 };
		unsigned char *buf = NULL;
		size_t blen = 0, bcap = 0, k;
		uint32_t idx = (uint32_t)i;

		if (job->delay > 0) {
			struct timespec ts;

			ts.tv_sec = (time_t)job->delay;
			ts.tv_nsec = (long)((job->delay -
					     (double)ts.tv_sec) * 1e9);
			nanosleep(&ts, NULL);
		}
		wc_put(&buf, &blen, &bcap, &idx, sizeof(idx));
		if (wc_file_words(job->files->path[i], note_word, &t) == 0) {
			for (k = 0; k < t.cap; k++) {
				if (!t.e[k].word)
					continue;
				wc_put(&buf, &blen, &bcap, t.e[k].word,
				       t.e[k].len);
				wc_put(&buf, &blen, &bcap, "\n", 1);
			}
		}
		wc_table_free(&t);
		if (channel_send(ch, buf, blen, -1) < 0) {
			free(buf);
			return;
		}
		free(buf);
	}
}

/* Starts parsers for the next slices while the window has room. Returns
 * the index of the first file not yet given out. */
static size_t fill_window(struct exchange *ex, const struct job *job,
			  size_t i, size_t window, size_t slice)
{
	size_t active = exchange_active(ex, NULL, 0);

	while (i < job->files->n && active < window) {
		struct slice s;
		struct channel *ch;

		s.first = i;
		s.count = slice;
		ch = channel_start(apply_parser, &s, sizeof(s), (void *)job);
		if (!ch) {
			perror("channel_start");
			exit(1);
		}
		if (exchange_add(ex, ch) < 0) {
			perror("exchange_add");
			exit(1);
		}
		i += slice;
		active++;
	}
	return i;
}

/* Adds file index idx to the postings of each word in the text. */
static void add_entry(struct index *ix, uint32_t idx, const char *text,
		      size_t len)
{
	const char *end = text + len;

	while (text < end) {
		const char *nl = memchr(text, '\n', (size_t)(end - text));
		size_t wl = nl ? (size_t)(nl - text) : (size_t)(end - text);
		struct wc_entry *e;
		struct postings *p;

		if (wl == 0) {
			text++;
			continue;
		}
		e = wc_table_get(&ix->words, text, wl);
		if (e->count == 0) {
			/* A new word: its posting list number, plus one. */
			if (ix->n == ix->cap) {
				ix->cap = ix->cap ? ix->cap * 2 : 1024;
				ix->lists = realloc(ix->lists, ix->cap *
						    sizeof(*ix->lists));
				if (!ix->lists) {
					fprintf(stderr, "out of memory\n");
					exit(1);
				}
			}
			memset(&ix->lists[ix->n], 0, sizeof(*ix->lists));
			e->count = ++ix->n;
		}
		p = &ix->lists[e->count - 1];
		if (p->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 4;
			p->file = realloc(p->file, p->cap * sizeof(*p->file));
			if (!p->file) {
				fprintf(stderr, "out of memory\n");
				exit(1);
			}
		}
		p->file[p->n++] = idx;
		text += wl + 1;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The words of a query, as a table of distinct words. */
static void query_word(const char *w, size_t len, void *data)
{
	wc_table_get(data, w, len)->count++;
}

/* Answers one query: the files holding every word of it. */
static void answer(const struct index *ix, const struct wc_files *files,
		   const char *query)
{
	struct wc_table q = { 0 };
	uint32_t *hits = NULL;
	size_t nhits = 0, k, i;
	bool first = true;
	const char *p;
	char *word = NULL;
	size_t wlen = 0, wcap = 0;

	/* The query's words, by the same rule as the files'. */
	for (p = query;; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c >= 'a' && c <= 'z') {
			if (wlen + 1 > wcap) {
				wcap = wcap ? wcap * 2 : 32;
				word = realloc(word, wcap);
				if (!word)
					exit(1);
			}
			word[wlen++] = c;
			continue;
		}
		if (wlen)
			query_word(word, wlen, &q);
		wlen = 0;
		if (!c)
			break;
	}
	free(word);

	for (k = 0; k < q.cap; k++) {
		const struct wc_entry *e;
		const struct postings *pl;
		size_t a = 0, b = 0, n = 0;

		if (!q.e[k].word)
			continue;
		e = wc_table_find(&ix->words, q.e[k].word, q.e[k].len);
		if (!e) {
			nhits = 0;
			first = false;
			break;
		}
		pl = &ix->lists[e->count - 1];
		if (first) {
			hits = malloc(pl->n * sizeof(*hits) + 1);
			if (!hits)
				exit(1);
			memcpy(hits, pl->file, pl->n * sizeof(*hits));
			nhits = pl->n;
			first = false;
			continue;
		}
		/* Intersect two sorted lists in place. */
		while (a < nhits && b < pl->n) {
			if (hits[a] < pl->file[b])
				a++;
			else if (hits[a] > pl->file[b])
				b++;
			else {
				hits[n++] = hits[a];
				a++;
				b++;
			}
		}
		nhits = n;
	}
	printf("%s: %zu file%s\n", query, nhits, nhits == 1 ? "" : "s");
	for (i = 0; i < nhits; i++)
		printf("  %s\n", files->path[hits[i]]);
	fflush(stdout);
	free(hits);
	wc_table_free(&q);
}

int main(int argc, char **argv)
{
	long window = 4, slice = 5;
	struct wc_files files = { 0 };
	struct index ix = { 0 };
	struct exchange *ex;
	struct job job = { &files, 0.0 };
	const char *path;
	char **queries;
	int c, i, nqueries, status = 0;
	size_t next, k, failures = 0;

	/* Options come before PATH: everything after it is a query. */
	cli_init(argv, "+:w:s:d:h", long_options, usage);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case 'w':
			window = cli_int(optarg, 1, 1024);
			break;
		case 's':
			slice = cli_int(optarg, 1, 1000000);
			break;
		case 'd':
			job.delay = cli_seconds(optarg, 3600.0);
			break;
		}
	}
	if (optind == argc)
		cli_bad("no PATH given");
	path = argv[optind];
	queries = &argv[optind + 1];
	nqueries = argc - optind - 1;
	signal(SIGPIPE, SIG_IGN);
	if (wc_files_walk(&files, path, 1) > 0)
		status = 1;
	wc_files_sort(&files);

	/* Index with a window of parser processes. */
	ex = exchange_new(NULL);
	if (!ex) {
		perror("exchange_new");
		return 1;
	}
	next = fill_window(ex, &job, 0, (size_t)window, (size_t)slice);
	while (exchange_active(ex, NULL, 0) > 0) {
		struct channel *ready[READY_BATCH];
		int n = exchange_ready(ex, ready, READY_BATCH, -1), j;

		if (n < 0) {
			perror("exchange_ready");
			return 1;
		}
		for (j = 0; j < n; j++) {
			struct channel_msg m;
			uint32_t idx;
			int r = channel_recv(ready[j], &m, 0);

			if (r <= 0)
				continue;
			if (m.kind != CHANNEL_DATA) {
				fprintf(stderr, "%s: a parser failed: %s\n",
					cli.prog, (const char *)m.data);
				failures++;
			} else if (m.len >= sizeof(idx)) {
				memcpy(&idx, m.data, sizeof(idx));
				if (idx < files.n)
					add_entry(&ix, idx,
						  (const char *)m.data +
						  sizeof(idx),
						  m.len - sizeof(idx));
			}
			channel_msg_free(&m);
		}
		next = fill_window(ex, &job, next, (size_t)window,
				   (size_t)slice);
	}
	exchange_free(ex);
	for (k = 0; k < ix.n; k++)
		qsort(ix.lists[k].file, ix.lists[k].n, sizeof(uint32_t),
		      cmp_u32);
	fprintf(stderr, "indexer: %zu files, %zu words indexed\n", files.n,
		ix.words.n);
	if (failures)
		status = 1;

	/* Queries. */
	if (nqueries > 0) {
		for (i = 0; i < nqueries; i++)
			answer(&ix, &files, queries[i]);
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;
		bool prompt = isatty(0) == 1;

		for (;;) {
			if (prompt) {
				printf("Pattern: ");
				fflush(stdout);
			}
			len = getline(&line, &cap, stdin);
			if (len < 0)
				break;
			if (len > 0 && line[len - 1] == '\n')
				line[len - 1] = '\0';
			answer(&ix, &files, line);
		}
		free(line);
	}

	for (k = 0; k < ix.n; k++)
		free(ix.lists[k].file);
	free(ix.lists);
	wc_table_free(&ix.words);
	wc_files_free(&files);
	return status;
}
