/*
 * test_mpi - the tests of libexchange_mpi, one program that every rank
 * runs (make check-mpi starts it under mpirun with 1, 2, 3 and 4 ranks).
 *
 * Each test computes with the collective call and checks, on every rank
 * that holds results, that they equal a serial loop's. A check that fails
 * prints "not ok" with what differed; the failures of all ranks are summed
 * on rank 0, which prints one line per test ("ok N - name" or "not ok N -
 * name") and a last line "# N tests, M failed, on R ranks". The exit
 * status is 1 when any check failed. Nothing depends on timing: the
 * uneven elements are uneven in work, and waits are bounded by the
 * timeout(1) that make check-mpi runs mpirun under.
 *
 * The failing elements fail inside the forked workers, never in a rank:
 * a write through a null pointer (SIGSEGV, which Open MPI's handler
 * reports on standard error before the worker dies of it), SIGKILL, and a
 * function that returns -1.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exchange_mpi.h"

static int rank, size, ntests, nfailed;
static int local_failed;	/* checks failed on this rank in this test */

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			local_failed++;                                   \
			fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", \
				rank, __FILE__, __LINE__, #cond);         \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
		}                                                         \
	} while (0)

/* Ends a test: the ranks' failures summed on rank 0, which reports. */
static void end_test(const char *name)
{
	int sum = 0;

	MPI_Reduce(&local_failed, &sum, 1, MPI_INT, MPI_SUM, 0,
		   MPI_COMM_WORLD);
	ntests++;
	if (rank == 0) {
		printf("%s %d - %s\n", sum ? "not ok" : "ok", ntests, name);
		fflush(stdout);
	}
	if (sum)
		nfailed++;
	local_failed = 0;
}

/* The element function: out = 3 * in + 1, and which rank computed it. */
struct result {
	int64_t value;		/* 3 * in + 1 */
	int32_t rank;		/* the rank whose worker computed it */
	int32_t pad;		/* zero */
};

static int64_t expect(int64_t v)
{
	return 3 * v + 1;
}

/* Elements that fail on purpose, when ctx says so. */
enum { FAIL_SEGV = 7, FAIL_ERROR = 13, FAIL_KILL = 29 };

struct ctx {
	int rank;		/* the rank, as the workers' copy reads it */
	int failures;		/* elements FAIL_* fail */
	int uneven;		/* every tenth element works a while */
};

/* Read through a volatile pointer, so that the compiler cannot know it is
 * NULL and drop the write. UBSan is told the write is meant: the worker is
 * to die of SIGSEGV, not of UBSan's report. */
static int *volatile nowhere;

__attribute__((no_sanitize("undefined")))
static void fail_here(int64_t v)
{
	if (v == FAIL_SEGV)
		*nowhere = 1;
	if (v == FAIL_KILL)
		kill(getpid(), SIGKILL);
}

static int element(const void *in, void *out, void *ctx)
{
	const struct ctx *c = ctx;
	struct result r = { 0, 0, 0 };
	int64_t v;

	memcpy(&v, in, sizeof(v));
	if (c->failures) {
		fail_here(v);
		if (v == FAIL_ERROR)
			return -1;
	}
	if (c->uneven && v % 10 == 0) {
		volatile uint64_t x = 0;

		for (uint64_t k = 0; k < 3000000; k++)
			x += k;
		r.pad = (int32_t)(x & 0);
	}
	r.value = expect(v);
	r.rank = c->rank;
	memcpy(out, &r, sizeof(r));
	return 0;
}

static int64_t *inputs(size_t n)
{
	int64_t *in = malloc((n ? n : 1) * sizeof(*in));

	for (size_t i = 0; i < n; i++)
		in[i] = (int64_t)i;
	return in;
}

/* One collective pmap of n elements against the serial loop. */
static void pmap_case(size_t n, struct exchange_mpi_options o, int fail,
		      int uneven)
{
	struct ctx c = { rank, fail, uneven };
	int64_t *in = inputs(n);
	struct result *out = calloc(n ? n : 1, sizeof(*out));
	struct exchange_outcome *oc = calloc(n ? n : 1, sizeof(*oc));
	bool holds = rank == o.root || o.everywhere;
	const int64_t *gin = o.root_input && rank != o.root ? NULL : in;
	size_t bad = 0, i, expected_ok = n;
	ssize_t k;

	o.ctx = &c;
	o.outcomes = oc;
	if (o.workers == 0)
		o.workers = 2;
	if (fail)
		for (i = 0; i < n; i++)
			if (i == FAIL_SEGV || i == FAIL_ERROR ||
			    i == FAIL_KILL)
				expected_ok--;
	k = exchange_mpi_pmap(element, gin, n, sizeof(*in), holds ? out : NULL,
			      sizeof(*out), &o, MPI_COMM_WORLD);
	CHECK(k == (ssize_t)expected_ok, "n %zu: returned %zd (%s), not %zu",
	      n, k, k < 0 ? exchange_mpi_error() : "", expected_ok);
	for (i = 0; holds && k >= 0 && i < n; i++) {
		int cause = CHANNEL_OK, code = 0;

		if (fail && i == FAIL_SEGV) {
			cause = CHANNEL_SIGNALED;
			code = SIGSEGV;
		} else if (fail && i == FAIL_KILL) {
			cause = CHANNEL_SIGNALED;
			code = SIGKILL;
		} else if (fail && i == FAIL_ERROR) {
			cause = CHANNEL_SENT_ERROR;
		}
		if (oc[i].cause != cause || oc[i].code != code) {
			if (bad++ < 5)
				CHECK(0, "n %zu: element %zu: outcome %d/%d, "
				      "not %d/%d", n, i, oc[i].cause,
				      oc[i].code, cause, code);
		}
		if (cause == CHANNEL_OK && out[i].value != expect(in[i])) {
			if (bad++ < 5)
				CHECK(0, "n %zu: element %zu is %lld, not "
				      "%lld", n, i, (long long)out[i].value,
				      (long long)expect(in[i]));
		}
	}
	if (holds && k >= 0 && uneven && rank == o.root) {
		int seen[64] = { 0 }, ranks = 0;

		for (i = 0; i < n; i++)
			if (oc[i].cause == CHANNEL_OK && out[i].rank >= 0 &&
			    out[i].rank < 64 && !seen[out[i].rank]++)
				ranks++;
		printf("# uneven: %d of %d ranks computed elements\n", ranks,
		       size);
	}
	free(in);
	free(out);
	free(oc);
}

static void test_pmap_serial(void)
{
	static const size_t ns[] = { 1, 2, 3, 5, 17, 200, 1000 };
	struct exchange_mpi_options o;

	for (size_t j = 0; j < sizeof(ns) / sizeof(*ns); j++) {
		memset(&o, 0, sizeof(o));
		pmap_case(ns[j], o, 0, 0);
		o.chunk = 1;
		o.workers = 1;
		o.batch = 1;
		pmap_case(ns[j], o, 0, 0);
	}
	end_test("pmap equals the serial loop (n 1 to 1000, guided and "
		 "chunks of 1)");
}

static void test_pmap_options(void)
{
	struct exchange_mpi_options o;

	memset(&o, 0, sizeof(o));
	o.everywhere = true;
	pmap_case(300, o, 0, 0);
	memset(&o, 0, sizeof(o));
	o.root = size - 1;
	pmap_case(300, o, 0, 0);
	memset(&o, 0, sizeof(o));
	o.root_input = true;
	o.chunk = 7;
	pmap_case(300, o, 0, 0);
	o.everywhere = true;
	o.root = size / 2;
	pmap_case(300, o, 0, 0);
	end_test("pmap with everywhere, another root, root_input");
}

static void test_pmap_small(void)
{
	struct exchange_mpi_options o;
	ssize_t k;

	memset(&o, 0, sizeof(o));
	for (size_t n = 1; n < (size_t)size + 2; n++)
		pmap_case(n, o, 0, 0);
	o.everywhere = true;
	for (size_t n = 1; n < (size_t)size; n++)
		pmap_case(n, o, 0, 0);
	k = exchange_mpi_pmap(element, NULL, 0, sizeof(int64_t), NULL,
			      sizeof(struct result), NULL, MPI_COMM_WORLD);
	CHECK(k == 0, "n 0 returned %zd (%s)", k, exchange_mpi_error());
	end_test("pmap with n below the number of ranks, and n = 0");
}

static void test_pmap_failures(void)
{
	struct exchange_mpi_options o;

	memset(&o, 0, sizeof(o));
	pmap_case(40, o, 1, 0);
	o.everywhere = true;
	o.chunk = 3;
	pmap_case(40, o, 1, 0);
	o.chunk = 0;
	o.batch = 1;
	o.workers = 1;
	pmap_case(12, o, 1, 0);
	end_test("pmap: a SIGSEGV, a SIGKILL and an error are outcomes, once "
		 "each, in place");
}

static void test_pmap_uneven(void)
{
	struct exchange_mpi_options o;

	memset(&o, 0, sizeof(o));
	pmap_case(400, o, 0, 1);
	o.chunk = 5;
	pmap_case(400, o, 0, 1);
	end_test("pmap with uneven elements");
}

/* Every rank but the last gets good arguments; the last one changes what
 * bend says. All must fail with EINVAL and the same text. */
static void mismatch_case(const char *what, int bend, const char *needle)
{
	struct ctx c = { rank, 0, 0 };
	size_t n = 50, out_size = sizeof(struct result);
	int64_t *in = inputs(n + 1);
	struct result *out = calloc(n + 1, sizeof(*out));
	struct exchange_mpi_options o;
	bool odd = rank == size - 1;
	ssize_t k;

	memset(&o, 0, sizeof(o));
	o.ctx = &c;
	o.workers = 1;
	if (odd && bend == 1)
		n++;
	if (odd && bend == 2)
		out_size += 8;
	if (odd && bend == 3)
		o.everywhere = true;
	errno = 0;
	if (odd && bend == 4)
		k = exchange_mpi_pmap(NULL, in, n, sizeof(*in), out, out_size,
				      &o, MPI_COMM_WORLD);
	else
		k = exchange_mpi_pmap(element, in, n, sizeof(*in), out,
				      out_size, &o, MPI_COMM_WORLD);
	CHECK(k == -1 && errno == EINVAL, "%s: returned %zd, errno %d", what,
	      k, errno);
	CHECK(strstr(exchange_mpi_error(), needle) != NULL,
	      "%s: the error says \"%s\", without \"%s\"", what,
	      exchange_mpi_error(), needle);
	free(in);
	free(out);
}

static void test_mismatch(void)
{
	char who[32];

	if (size > 1) {
		mismatch_case("different n", 1, "disagree on n:");
		mismatch_case("different out_size", 2,
			      "disagree on out_size");
		mismatch_case("different everywhere", 3,
			      "disagree on everywhere");
	}
	snprintf(who, sizeof(who), "rank %d: no function", size - 1);
	mismatch_case("no function on one rank", 4, who);
	/* And the next call works. */
	{
		struct exchange_mpi_options o;

		memset(&o, 0, sizeof(o));
		pmap_case(30, o, 0, 0);
	}
	end_test("mismatched arguments fail on every rank with EINVAL and "
		 "say what differs; the next call works");
}

/* ------------------------------------------------------------------------ */
/* Reduce                                                                   */
/* ------------------------------------------------------------------------ */

/* Elements that fail on purpose in a fold. */
enum { FOLD_ERROR = 5, FOLD_KILL = 11 };

/* A value: the sorted list of the elements folded (uint64 each). Varies
 * in size, and combining two is a merge: associative, commutative. */
static void *fold_list(const void *in, size_t first, size_t count,
		       size_t *len, void *ctx)
{
	const int64_t *x = in;
	const struct ctx *c = ctx;
	uint64_t *v = malloc(count * sizeof(*v) + 1);

	for (size_t i = 0; i < count; i++) {
		if (c->failures && x[i] == FOLD_KILL)
			kill(getpid(), SIGKILL);
		if (c->failures && x[i] == FOLD_ERROR) {
			free(v);
			errno = EDOM;
			return NULL;
		}
		if (x[i] != (int64_t)(first + i)) {
			free(v);
			errno = ERANGE;
			return NULL;
		}
		v[i] = (uint64_t)x[i];
	}
	*len = count * sizeof(*v);
	return v;
}

static void *merge_lists(const void *a, size_t alen, const void *b,
			 size_t blen, size_t *len, void *ctx)
{
	const uint64_t *x = a, *y = b;
	size_t na = alen / 8, nb = blen / 8, i = 0, j = 0, k = 0;
	uint64_t *v = malloc(alen + blen + 1);

	(void)ctx;
	while (i < na || j < nb)
		v[k++] = j >= nb || (i < na && x[i] < y[j]) ? x[i++] : y[j++];
	*len = k * 8;
	return v;
}

static void reduce_list_case(size_t n, struct exchange_mpi_options o,
			     int fail)
{
	struct ctx c = { rank, fail, 0 };
	int64_t *in = inputs(n);
	struct exchange_outcome *oc = calloc(n ? n : 1, sizeof(*oc));
	bool holds = rank == o.root || o.everywhere;
	size_t len = 99, want = n, i, j;
	void *value = (void *)&len;
	ssize_t k;

	if (fail)
		want -= (n > FOLD_ERROR) + (n > FOLD_KILL);
	o.ctx = &c;
	o.outcomes = oc;
	if (!o.workers)
		o.workers = 2;
	k = exchange_mpi_reduce(fold_list,
				o.root_input && rank != o.root ? NULL : in, n,
				sizeof(*in), merge_lists, &value, &len, &o,
				MPI_COMM_WORLD);
	CHECK(k == (ssize_t)want, "n %zu: returned %zd (%s), not %zu", n, k,
	      k < 0 ? exchange_mpi_error() : "", want);
	if (k >= 0 && !holds)
		CHECK(value == NULL && len == 0, "n %zu: a value where none "
		      "was asked for", n);
	if (k >= 0 && holds) {
		const uint64_t *v = value;

		CHECK(value && len == want * 8, "n %zu: %zu bytes, not %zu", n,
		      len, want * 8);
		for (i = 0, j = 0; value && len == want * 8 && i < n; i++) {
			bool gone = fail && (i == FOLD_ERROR ||
					     i == FOLD_KILL);
			int cause = !gone ? CHANNEL_OK : i == FOLD_ERROR ?
				    CHANNEL_SENT_ERROR : CHANNEL_SIGNALED;
			int code = gone && i == FOLD_KILL ? SIGKILL : 0;

			CHECK(oc[i].cause == cause && oc[i].code == code,
			      "n %zu: element %zu: outcome %d/%d, not %d/%d",
			      n, i, oc[i].cause, oc[i].code, cause, code);
			if (gone)
				continue;
			CHECK(v[j] == i, "n %zu: value[%zu] is %llu, not %zu",
			      n, j, (unsigned long long)v[j], i);
			j++;
		}
	}
	free(value == (void *)&len ? NULL : value);
	free(in);
	free(oc);
}

static void test_reduce_bytes(void)
{
	struct exchange_mpi_options o;

	memset(&o, 0, sizeof(o));
	for (size_t n = 0; n < 8; n++)
		reduce_list_case(n, o, 0);
	reduce_list_case(500, o, 0);
	o.everywhere = true;
	o.root = size - 1;
	reduce_list_case(3, o, 0);
	reduce_list_case(500, o, 0);
	memset(&o, 0, sizeof(o));
	o.root_input = true;
	o.chunk = 9;
	o.batch = 4;
	reduce_list_case(200, o, 0);
	end_test("reduce over bytes (values of varying size) equals the "
		 "serial list; n 0 to 7, everywhere, root_input");
}

static void test_reduce_failures(void)
{
	struct exchange_mpi_options o;

	memset(&o, 0, sizeof(o));
	reduce_list_case(60, o, 1);
	o.everywhere = true;
	o.batch = 1;
	reduce_list_case(20, o, 1);
	end_test("reduce: a piece that fails runs again element by element; "
		 "only the failing ones are left out, with their outcomes");
}

/* For the MPI_Op form: the sum of the elements and of their squares. */
static void *fold_sums(const void *in, size_t first, size_t count,
		       size_t *len, void *ctx)
{
	const int64_t *x = in;
	int64_t *v = calloc(2, sizeof(*v));

	(void)first;
	(void)ctx;
	for (size_t i = 0; i < count; i++) {
		v[0] += x[i];
		v[1] += x[i] * x[i];
	}
	*len = 2 * sizeof(*v);
	return v;
}

static void *fold_short(const void *in, size_t first, size_t count,
			size_t *len, void *ctx)
{
	(void)in, (void)first, (void)count, (void)ctx;
	*len = 3;
	return calloc(1, 3);
}

static void test_reduce_op(void)
{
	static const size_t ns[] = { 0, 1, 2, 3, 100, 999 };
	struct exchange_mpi_options o;
	int64_t v[2];
	ssize_t k;

	for (size_t j = 0; j < sizeof(ns) / sizeof(*ns); j++) {
		size_t n = ns[j];
		int64_t *in = inputs(n), s = 0, q = 0;

		for (size_t i = 0; i < n; i++) {
			s += (int64_t)i;
			q += (int64_t)(i * i);
		}
		for (int every = 0; every < 2; every++) {
			memset(&o, 0, sizeof(o));
			o.everywhere = every;
			o.workers = 2;
			v[0] = v[1] = -1;
			k = exchange_mpi_reduce_op(fold_sums, in, n,
						   sizeof(*in), v, 2,
						   MPI_INT64_T, MPI_SUM, &o,
						   MPI_COMM_WORLD);
			CHECK(k == (ssize_t)n, "n %zu: returned %zd (%s)", n,
			      k, exchange_mpi_error());
			if (rank == 0 || every)
				CHECK(v[0] == s && v[1] == q, "n %zu: sums "
				      "%lld %lld, not %lld %lld", n,
				      (long long)v[0], (long long)v[1],
				      (long long)s, (long long)q);
		}
		free(in);
	}
	{
		int64_t *in = inputs(10);

		errno = 0;
		k = exchange_mpi_reduce_op(fold_short, in, 10, sizeof(*in), v,
					   2, MPI_INT64_T, MPI_SUM, NULL,
					   MPI_COMM_WORLD);
		CHECK(k == -1 && errno == EINVAL, "a value of the wrong size: "
		      "returned %zd, errno %d", k, errno);
		CHECK(strstr(exchange_mpi_error(), "not count items"),
		      "the error says \"%s\"", exchange_mpi_error());
		free(in);
	}
	end_test("reduce_op with MPI_SUM equals the serial sums, n 0 to 999; "
		 "a value of the wrong size fails on every rank");
}

static void test_mismatched_calls(void)
{
	int64_t *in = inputs(10), v[2];
	struct result out[10];
	ssize_t k;

	if (size == 1) {
		end_test("different calls on different ranks (skipped: one "
			 "rank)");
		free(in);
		return;
	}
	errno = 0;
	if (rank == 0)
		k = exchange_mpi_reduce_op(fold_sums, in, 10, sizeof(*in), v, 2,
					   MPI_INT64_T, MPI_SUM, NULL,
					   MPI_COMM_WORLD);
	else
		k = exchange_mpi_pmap(element, in, 10, sizeof(*in), out,
				      sizeof(*out), NULL, MPI_COMM_WORLD);
	CHECK(k == -1 && errno == EINVAL, "returned %zd, errno %d", k, errno);
	CHECK(strstr(exchange_mpi_error(), "disagree on the call"),
	      "the error says \"%s\"", exchange_mpi_error());
	free(in);
	end_test("different calls on different ranks fail with EINVAL");
}

int main(int argc, char **argv)
{
	int all;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	signal(SIGPIPE, SIG_IGN);

	test_pmap_serial();
	test_pmap_options();
	test_pmap_small();
	test_pmap_failures();
	test_pmap_uneven();
	test_mismatch();
	test_mismatched_calls();
	test_reduce_bytes();
	test_reduce_failures();
	test_reduce_op();

	MPI_Allreduce(&nfailed, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0)
		printf("# %d tests, %d failed, on %d ranks\n", ntests, all,
		       size);
	MPI_Finalize();
	return all ? 1 : 0;
}
