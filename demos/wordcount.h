/*
 * wordcount.h - what the map-reduce demos over text share: a list of the
 * regular files under some paths, a table counting strings, and the
 * definition of a word.
 *
 * A word is a maximal run of ASCII letters, lower-cased: the same words as
 *
 *   tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z'
 *
 * gives in the C locale, so the results can be checked with sort and uniq.
 */
#ifndef DEMOS_WORDCOUNT_H
#define DEMOS_WORDCOUNT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"

/* A list of file paths. */
struct wc_files {
	char **path;		/* malloc'd paths */
	size_t n;		/* how many */
	size_t cap;		/* allocated entries */
	struct progress *progress; /* NULL, or the line counting the walk */
};

/* One entry of a count table. */
struct wc_entry {
	char *word;		/* malloc'd, NUL-terminated; NULL: empty slot */
	size_t len;		/* its length */
	uint64_t count;		/* occurrences, or a set bit per file */
	uint64_t hash;		/* the word's hash, kept to regrow quickly */
};

/* A table of strings with counts: open addressing, linear probing. */
struct wc_table {
	struct wc_entry *e;	/* cap entries */
	size_t cap;		/* a power of two */
	size_t n;		/* entries used */
};

static inline void *wc_alloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

static inline void wc_files_add(struct wc_files *f, const char *path)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		char **p = realloc(f->path, cap * sizeof(*p));

		if (!p) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		f->path = p;
		f->cap = cap;
	}
	f->path[f->n] = strdup(path);
	if (!f->path[f->n]) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	f->n++;
	progress_draw(f->progress, "files found: %zu", f->n);
}

/* Reports that path cannot be looked at (errno says why), on a line of
 * its own. Returns 1: one error. */
static inline int wc_walk_error(const struct wc_files *f, const char *path)
{
	int err = errno;

	progress_clear(f->progress);
	fprintf(stderr, "%s: %s\n", path, strerror(err));
	return 1;
}

/* Adds path if it is a regular file, or every regular file below it if it
 * is a directory. Symbolic links are not followed (no loops, no file seen
 * twice), except for path itself. Paths that cannot be looked at are
 * reported and skipped; returns how many there were. */
static inline int wc_files_walk(struct wc_files *f, const char *path,
				 int top)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int errors = 0;

	if ((top ? stat(path, &st) : lstat(path, &st)) < 0)
		return wc_walk_error(f, path);
	if (S_ISREG(st.st_mode)) {
		wc_files_add(f, path);
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return 0;
	d = opendir(path);
	if (!d)
		return wc_walk_error(f, path);
	while ((de = readdir(d))) {
		size_t len;
		char *sub;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		len = strlen(path) + strlen(de->d_name) + 2;
		sub = wc_alloc(len);
		snprintf(sub, len, "%s%s%s", path,
			 path[strlen(path) - 1] == '/' ? "" : "/", de->d_name);
		errors += wc_files_walk(f, sub, 0);
		free(sub);
	}
	closedir(d);
	return errors;
}

static inline int wc_path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the list, so that runs and their outputs do not depend on the
 * order of directory entries. */
static inline void wc_files_sort(struct wc_files *f)
{
	if (f->n)
		qsort(f->path, f->n, sizeof(*f->path), wc_path_cmp);
}

static inline void wc_files_free(struct wc_files *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		free(f->path[i]);
	free(f->path);
	f->path = NULL;
	f->n = f->cap = 0;
}

/* FNV-1a. */
static inline uint64_t wc_hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static inline void wc_table_grow(struct wc_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 1024, i;
	struct wc_entry *e = calloc(cap, sizeof(*e));

	if (!e) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (i = 0; i < t->cap; i++) {
		size_t k;

		if (!t->e[i].word)
			continue;
		for (k = t->e[i].hash & (cap - 1); e[k].word;
		     k = (k + 1) & (cap - 1))
			;
		e[k] = t->e[i];
	}
	free(t->e);
	t->e = e;
	t->cap = cap;
}

/* The entry for word (len bytes), added with count 0 if new. */
static inline struct wc_entry *wc_table_get(struct wc_table *t,
					    const char *word, size_t len)
{
	uint64_t h = wc_hash(word, len);
	size_t k;

	if ((t->n + 1) * 2 > t->cap)
		wc_table_grow(t);
	for (k = h & (t->cap - 1); t->e[k].word; k = (k + 1) & (t->cap - 1))
		if (t->e[k].hash == h && t->e[k].len == len &&
		    memcmp(t->e[k].word, word, len) == 0)
			return &t->e[k];
	t->e[k].word = wc_alloc(len + 1);
	memcpy(t->e[k].word, word, len);
	t->e[k].word[len] = '\0';
	t->e[k].len = len;
	t->e[k].count = 0;
	t->e[k].hash = h;
	t->n++;
	return &t->e[k];
}

/* The entry for word, or NULL. */
static inline struct wc_entry *wc_table_find(const struct wc_table *t,
					     const char *word, size_t len)
{
	uint64_t h = wc_hash(word, len);
	size_t k;

	if (!t->cap)
		return NULL;
	for (k = h & (t->cap - 1); t->e[k].word; k = (k + 1) & (t->cap - 1))
		if (t->e[k].hash == h && t->e[k].len == len &&
		    memcmp(t->e[k].word, word, len) == 0)
			return &t->e[k];
	return NULL;
}

static inline void wc_table_free(struct wc_table *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++)
		free(t->e[i].word);
	free(t->e);
	t->e = NULL;
	t->cap = t->n = 0;
}

/* Calls fn(word, len, data) for each word of the file at path. Returns 0,
 * 1 for a binary file, whose words are not counted (a NUL byte in its
 * first block, or compressed with gzip: most of /usr/share/doc), or -1
 * with errno if the file could not be read. */
static inline int wc_file_words(const char *path,
				void (*fn)(const char *, size_t, void *),
				void *data)
{
	char chunk[65536], *word = NULL;
	size_t wlen = 0, wcap = 0;
	int fd = open(path, O_RDONLY), saved;
	bool first = true;
	ssize_t n;

	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t i;

		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (first && (memchr(chunk, '\0', (size_t)n) ||
			      (n >= 2 && (unsigned char)chunk[0] == 0x1f &&
			       (unsigned char)chunk[1] == 0x8b))) {
			close(fd);
			return 1;
		}
		first = false;
		for (i = 0; i < n; i++) {
			char c = chunk[i];

			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c >= 'a' && c <= 'z') {
				if (wlen == wcap) {
					wcap = wcap ? wcap * 2 : 64;
					word = realloc(word, wcap);
					if (!word) {
						fprintf(stderr,
							"out of memory\n");
						exit(1);
					}
				}
				word[wlen++] = c;
			} else if (wlen) {
				fn(word, wlen, data);
				wlen = 0;
			}
		}
	}
	if (n == 0 && wlen)
		fn(word, wlen, data);
	saved = errno;
	free(word);
	close(fd);
	errno = saved;
	return n < 0 ? -1 : 0;
}

/* Appends to a growing buffer. */
static inline void wc_put(unsigned char **buf, size_t *len, size_t *cap,
			  const void *src, size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 4096;

		while (c < *len + n)
			c *= 2;
		*buf = realloc(*buf, c);
		if (!*buf) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		*cap = c;
	}
	memcpy(*buf + *len, src, n);
	*len += n;
}

#endif /* DEMOS_WORDCOUNT_H */
