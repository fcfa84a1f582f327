/*
 * wordcount - map-reduce over a directory tree: count the words of every
 * regular file in worker processes, merge the counts, print the top words.
 *
 *   wordcount [-a | -t T] [-j N] [--files-per-task K] [--max-files M]
 *             [--fork-per-task] [--progress] [--mpi] PATH...
 *
 * Map: the sorted list of files is cut into tasks of K files; each task is
 * a plain function (exchange_start_plain) that counts the words of its
 * files and returns the counts as one message. The exchange is a Queue in
 * reuse mode with a limit of N: N worker processes are forked once, each
 * takes task after task over its channel (the file list is in their copy
 * of this process's memory; only the task's first index and length
 * travel), and the results come back in the order they are ready.
 * --fork-per-task forks a process per task instead.
 * Reduce: the parent merges each message as it arrives, then prints
 * "count word" lines, most frequent first (ties in word order): the top T
 * (default 20), or every word with --all. A summary goes to standard
 * error. Words are defined in wordcount.h (runs of ASCII letters,
 * lower-cased); binary files (gzip, or a NUL byte in the first 64 KiB) are
 * skipped and counted in the summary.
 *
 * Progress: when standard error is a terminal, a line there counts the
 * files found while the tree is walked, then the files counted as the
 * results come in (a task's files count when its result, or its failure,
 * arrives), and is erased before the summary (progress.h). --progress
 * shows it elsewhere too and leaves its last state as a line.
 *
 * --mpi (the build of this file with EXCHANGE_DEMO_MPI, build/mpi/wordcount,
 * run under mpirun or srun): every rank lists the same files, and
 * exchange_mpi_reduce deals them over the ranks; a rank's workers fold K
 * files at a time into one encoded table (the same encoding as a task's
 * result), the rank combines its tables as they come, and rank 0 combines
 * the ranks' and prints exactly what the one-node run prints. Only rank 0
 * draws the progress line; the reduce returns only when every file is
 * counted, so the count goes from none to all at once. The build without
 * MPI refuses --mpi as a bad command line (status 2).
 */
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "cli.h"
#include "exchange.h"
#include "progress.h"
#include "wordcount.h"
#ifdef EXCHANGE_DEMO_MPI
#include "exchange_mpi.h"
#endif

/* A task: files [first, first + count) of the list. */
struct task {
	uint64_t first;		/* index of its first file */
	uint64_t count;		/* number of files */
};

/* The head of a task's result message; entries follow, each a uint64
 * count, a uint32 length and the word's bytes. */
struct result_head {
	uint64_t files;		/* files read */
	uint64_t unreadable;	/* files that could not be read */
	uint64_t binary;	/* binary files, skipped */
	uint64_t words;		/* words counted */
	uint64_t entries;	/* distinct words that follow */
};

enum {
	OPT_FILES_PER_TASK = 256,	/* long options without a short name */
	OPT_MAX_FILES,
	OPT_FORK_PER_TASK,
	OPT_PROGRESS,
	OPT_MPI,
};

static const struct option long_options[] = {
	{ "workers", required_argument, NULL, 'j' },
	{ "files-per-task", required_argument, NULL, OPT_FILES_PER_TASK },
	{ "top", required_argument, NULL, 't' },
	{ "all", no_argument, NULL, 'a' },
	{ "max-files", required_argument, NULL, OPT_MAX_FILES },
	{ "fork-per-task", no_argument, NULL, OPT_FORK_PER_TASK },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "mpi", no_argument, NULL, OPT_MPI },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-a | -t T] [-j N] [--files-per-task K] "
		"[--max-files M]\n"
		"       [--fork-per-task] [--progress] [--mpi] PATH...\n"
		"  counts the words (runs of letters, lower-cased) of the "
		"files under PATHs\n"
		"  -j, --workers N       worker processes (default: the cores; "
		"from 1 to 1024)\n"
		"  --files-per-task K    files per task (default 16, from 1 to "
		"1000000)\n"
		"  -t, --top T           print the T most frequent (default "
		"20, from 0)\n"
		"  -a, --all             print every word\n"
		"  --max-files M         only the first M files, in path order "
		"(from 0)\n"
		"  --fork-per-task       a new process per task instead of "
		"reusing workers\n"
		"  --progress            show the files found and counted, "
		"also off a\n"
		"                        terminal, and leave the last state "
		"(on a terminal\n"
		"                        the line is shown anyway, and "
		"erased at the end)\n"
		"  --mpi                 deal the files over the ranks of an "
		"MPI job\n"
		"                        (build/mpi/wordcount, under mpirun "
		"or srun)\n"
		"  -h, --help            this help\n", cli.prog);
}

static void count_word(const char *w, size_t len, void *data)
{
	wc_table_get(data, w, len)->count++;
}

/* Encodes a table as a result message: head (whose words and entries are
 * counted here), then the entries. From malloc; its size in *len. */
static void *encode(const struct wc_table *t, struct result_head head,
		    size_t *len)
{
	unsigned char *buf = NULL;
	size_t blen = 0, bcap = 0, i;

	head.words = 0;
	head.entries = 0;
	wc_put(&buf, &blen, &bcap, &head, sizeof(head));
	for (i = 0; i < t->cap; i++) {
		uint32_t wl;

		if (!t->e[i].word)
			continue;
		wl = (uint32_t)t->e[i].len;
		wc_put(&buf, &blen, &bcap, &t->e[i].count, sizeof(uint64_t));
		wc_put(&buf, &blen, &bcap, &wl, sizeof(wl));
		wc_put(&buf, &blen, &bcap, t->e[i].word, wl);
		head.words += t->e[i].count;
		head.entries++;
	}
	memcpy(buf, &head, sizeof(head));
	*len = blen;
	return buf;
}

/* Counts the words of count files and returns them encoded. */
static void *count_paths(char *const *path, size_t count, size_t *len)
{
	struct result_head head = { 0 };
	struct wc_table t = { 0 };
	size_t i;
	void *buf;

	for (i = 0; i < count; i++) {
		int r = wc_file_words(path[i], count_word, &t);

		if (r < 0)
			head.unreadable++;
		else if (r > 0)
			head.binary++;
		else
			head.files++;
	}
	buf = encode(&t, head, len);
	wc_table_free(&t);
	return buf;
}

/* Runs in a worker: counts the words of the task's files and returns them
 * encoded in one buffer from malloc. */
static void *count_task(const void *arg, size_t len, size_t *result_len,
			void *ctx)
{
	const struct wc_files *files = ctx;
	struct task task;

	if (len != sizeof(task)) {
		errno = EINVAL;
		return NULL;
	}
	memcpy(&task, arg, sizeof(task));
	if (task.first > files->n || task.count > files->n - task.first) {
		errno = ERANGE;
		return NULL;
	}
	return count_paths(files->path + task.first, (size_t)task.count,
			   result_len);
}

/* Merges one task's result into the totals. 0, or -1 if it is malformed. */
static int merge(struct wc_table *total, struct result_head *sum,
		 const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len;
	struct result_head head;
	uint64_t k;

	if (len < sizeof(head))
		return -1;
	memcpy(&head, p, sizeof(head));
	p += sizeof(head);
	for (k = 0; k < head.entries; k++) {
		uint64_t count;
		uint32_t wl;

		if ((size_t)(end - p) < sizeof(count) + sizeof(wl))
			return -1;
		memcpy(&count, p, sizeof(count));
		memcpy(&wl, p + sizeof(count), sizeof(wl));
		p += sizeof(count) + sizeof(wl);
		if ((size_t)(end - p) < wl)
			return -1;
		wc_table_get(total, (const char *)p, wl)->count += count;
		p += wl;
	}
	sum->files += head.files;
	sum->unreadable += head.unreadable;
	sum->binary += head.binary;
	sum->words += head.words;
	return 0;
}

#ifdef EXCHANGE_DEMO_MPI
/* The reduce's fold, in a worker: count files (paths) into a table. */
static void *fold_files(const void *in, size_t first, size_t count,
			size_t *len, void *ctx)
{
	(void)first;
	(void)ctx;
	return count_paths(in, count, len);
}

/* The reduce's combine: two encoded tables into one. */
static void *combine_tables(const void *a, size_t alen, const void *b,
			    size_t blen, size_t *len, void *ctx)
{
	struct result_head sum = { 0 };
	struct wc_table t = { 0 };
	void *buf = NULL;

	(void)ctx;
	if (merge(&t, &sum, a, alen) == 0 && merge(&t, &sum, b, blen) == 0)
		buf = encode(&t, sum, len);
	else
		errno = EPROTO;
	wc_table_free(&t);
	return buf;
}
#endif

static int by_count(const void *a, const void *b)
{
	const struct wc_entry *x = *(const struct wc_entry *const *)a;
	const struct wc_entry *y = *(const struct wc_entry *const *)b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->word, y->word);
}

/* Says what failed (with errno), on a line of its own. */
static void fail(const struct progress *p, const char *what)
{
	int err = errno;

	progress_clear(p);
	fprintf(stderr, "%s: %s: %s\n", cli.prog, what, strerror(err));
}

/* The number of files in task t of n files cut in tasks of k. */
static size_t task_files(size_t t, size_t n, size_t k)
{
	if (t >= (n + k - 1) / k)
		return 0;	/* not one of ours */
	return n - t * k < k ? n - t * k : k;
}

/* The state of the work, on the progress line. */
static void counted(struct progress *p, size_t done, size_t n, bool end)
{
	int pct = n ? (int)(100.0 * (double)done / (double)n) : 100;

	if (end)
		progress_done(p, "files counted: %zu of %zu (%d%%)", done, n,
			      pct);
	else
		progress_draw(p, "files counted: %zu of %zu (%d%%)", done, n,
			      pct);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long workers = 0, per_task = 16, top = 20, max_files = -1;
	struct exchange_options opts = { 0 };
	struct result_head sum = { 0 };
	struct wc_files files = { 0 };
	struct wc_table total = { 0 };
	struct wc_entry **sorted = NULL;
	struct exchange *queue = NULL;
	struct channel_msg m;
	struct progress progress, *line = &progress;
	size_t i, n, failed = 0, done = 0;
	bool all = false, reuse = true, show = false, mpi = false;
	int c, r, status = 1, walk_errors = 0;
#ifdef EXCHANGE_DEMO_MPI
	int rank = 0;
#endif
	double t0 = now();

	cli_init(argv, ":j:t:ah", long_options, usage);
	while ((c = cli_next(argc, argv)) != -1) {
		switch (c) {
		case 'j':
			workers = cli_int(optarg, 1, 1024);
			break;
		case OPT_FILES_PER_TASK:
			per_task = cli_int(optarg, 1, 1000000);
			break;
		case 't':
			top = cli_int(optarg, 0, 1000000000);
			break;
		case 'a':
			all = true;
			break;
		case OPT_MAX_FILES:
			max_files = cli_int(optarg, 0, 1000000000);
			break;
		case OPT_FORK_PER_TASK:
			reuse = false;
			break;
		case OPT_PROGRESS:
			show = true;
			break;
		case OPT_MPI:
			mpi = true;
			break;
		}
	}
	if (optind == argc)
		cli_bad("no PATH given");
#ifndef EXCHANGE_DEMO_MPI
	if (mpi)
		cli_bad("--mpi: this build has no MPI (make mpi builds "
			"build/mpi/wordcount)");
#endif
	if (workers == 0)
		workers = exchange_cores();
	signal(SIGPIPE, SIG_IGN);
	progress_init(&progress, cli.prog, show);
#ifdef EXCHANGE_DEMO_MPI
	if (mpi) {
		MPI_Init(NULL, NULL);
		MPI_Comm_rank(MPI_COMM_WORLD, &rank);
		if (rank != 0)
			line = NULL;	/* rank 0 draws the line */
	}
#endif
	files.progress = line;

	for (r = optind; r < argc; r++)
		walk_errors += wc_files_walk(&files, argv[r], 1);
	wc_files_sort(&files);
	if (max_files >= 0 && files.n > (size_t)max_files) {
		for (i = (size_t)max_files; i < files.n; i++)
			free(files.path[i]);
		files.n = (size_t)max_files;
	}

#ifdef EXCHANGE_DEMO_MPI
	if (mpi) {
		struct exchange_mpi_options mo = { 0 };
		void *value = NULL;
		size_t vlen = 0;
		ssize_t k;

		mo.workers = (int)workers;
		mo.batch = (size_t)per_task;
		counted(line, 0, files.n, false);
		k = exchange_mpi_reduce(fold_files, files.path, files.n,
					sizeof(*files.path), combine_tables,
					&value, &vlen, &mo, MPI_COMM_WORLD);
		if (k < 0 && rank == 0) {
			int err = errno;

			progress_clear(line);
			fprintf(stderr, "%s: exchange_mpi_reduce: %s (%s)\n",
				cli.prog, strerror(err), exchange_mpi_error());
		}
		MPI_Finalize();
		if (k < 0)
			goto out;
		if (rank != 0) {
			status = 0;	/* rank 0 prints */
			goto out;
		}
		failed = files.n - (size_t)k;
		if (merge(&total, &sum, value, vlen) < 0) {
			progress_clear(line);
			fprintf(stderr, "%s: bad result\n", cli.prog);
			failed++;
		}
		free(value);
		counted(line, files.n, files.n, true);
		goto print;
	}
#endif
	/* Map: one task per slice of files, in worker processes. */
	opts.limit = (int)workers;
	opts.reuse = reuse;
	queue = exchange_new_queue(&opts);
	if (!queue) {
		fail(&progress, "exchange_new_queue");
		goto out;
	}
	for (i = 0; i < files.n; i += (size_t)per_task) {
		struct task task;

		task.first = i;
		task.count = files.n - i < (size_t)per_task ?
			     files.n - i : (size_t)per_task;
		if (exchange_start_plain(queue, count_task, &task,
					 sizeof(task), &files) < 0) {
			fail(&progress, "exchange_start_plain");
			goto out;
		}
	}

	/* Reduce: merge the counts as they arrive. */
	counted(&progress, 0, files.n, false);
	while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
		done += task_files(m.task, files.n, (size_t)per_task);
		if (m.kind != CHANNEL_DATA) {
			progress_clear(&progress);
			fprintf(stderr, "%s: task %zu failed: %s\n", cli.prog,
				m.task, (const char *)m.data);
			failed++;
		} else if (merge(&total, &sum, m.data, m.len) < 0) {
			progress_clear(&progress);
			fprintf(stderr, "%s: task %zu: bad result\n", cli.prog,
				m.task);
			failed++;
		}
		channel_msg_free(&m);
		counted(&progress, done, files.n, false);
	}
	if (r < 0) {
		fail(&progress, "exchange_queue_next");
		goto out;
	}
	counted(&progress, done, files.n, true);

#ifdef EXCHANGE_DEMO_MPI
print:
#endif
	sorted = wc_alloc(total.n * sizeof(*sorted));
	for (i = 0, n = 0; i < total.cap; i++)
		if (total.e[i].word)
			sorted[n++] = &total.e[i];
	qsort(sorted, n, sizeof(*sorted), by_count);
	if (!all && (size_t)top < n)
		n = (size_t)top;
	for (i = 0; i < n; i++)
		printf("%llu %s\n", (unsigned long long)sorted[i]->count,
		       sorted[i]->word);

	fprintf(stderr,
		"wordcount: %llu files read (%llu binary skipped, %llu "
		"unreadable), %llu words, %zu distinct, %zu tasks failed, "
		"%ld workers, %ld files per task, %.3f s\n",
		(unsigned long long)sum.files, (unsigned long long)sum.binary,
		(unsigned long long)sum.unreadable,
		(unsigned long long)sum.words, total.n, failed, workers,
		per_task, now() - t0);
	status = failed || sum.unreadable || walk_errors ? 1 : 0;
out:
	exchange_free(queue);
	free(sorted);
	wc_table_free(&total);
	wc_files_free(&files);
	if (fflush(stdout) != 0)
		status = 1;
	return status;
}
