/*
 * test_pmap.c - pmap's handle (exchange_pmap_start and the calls on it:
 * next in order and in any order, wait, again, free) and the pmap of
 * results of their own size (exchange_pmap_sized). The blocking
 * exchange_pmap has its tests in test_manage.c.
 *
 * Elements that must still be running when the test looks block on a pipe
 * the test holds; nothing here depends on timing. Children report only
 * through their results and exit status; assertions stay in the test body.
 */
#include "exchange.h"
#include "internal.h"
#include "helpers.h"
#include "fork_hook.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int square(const void *in, void *out, void *ctx)
{
	long v = *(const long *)in;

	(void)ctx;
	*(long *)out = v * v;
	return 0;
}

static long *numbers(size_t n, long from)
{
	long *a = malloc(n * sizeof(*a));
	size_t i;

	cr_assert_not_null(a);
	for (i = 0; i < n; i++)
		a[i] = from + (long)i;
	return a;
}

/* ------------------------------------------------------------------------ */
/* Results while the map runs                                               */
/* ------------------------------------------------------------------------ */

/* What an element does, by its value: any value not below 0 is squared;
 * the others fail (ACT_FAIL), die of a signal (ACT_SEGV, ACT_KILL), wait
 * for a byte on the pipe ctx points to (ACT_WAIT: a read of p[0], for
 * ever if no byte comes), or say on that pipe that they have started and
 * wait for ever (ACT_HANG: a write to p[1]). */
enum { ACT_FAIL = -1, ACT_SEGV = -2, ACT_KILL = -3, ACT_WAIT = -4,
       ACT_HANG = -5 };

static int act(const void *in, void *out, void *ctx)
{
	const int *p = ctx;
	long v = *(const long *)in;
	char c;

	if (v == ACT_FAIL)
		return -1;
	if (v == ACT_SEGV)
		raise(SIGSEGV);
	if (v == ACT_KILL)
		kill(getpid(), SIGKILL);
	if (v == ACT_WAIT && read(p[0], &c, 1) != 1)
		return -1;
	if (v == ACT_HANG && write(p[1], "s", 1) == 1)
		for (;;)
			pause();
	*(long *)out = v * v;
	return 0;
}

/* A map of n elements (at most 8), two workers, one element per batch,
 * whose element 1 waits for the byte blocked_release writes; the others
 * square their index. */
struct blocked {
	int p[2];		/* the pipe element 1 reads */
	long *in;		/* 0, 1, ... */
	long out[8];		/* the squares */
	struct exchange_pmapper *pm; /* the map */
};

static void blocked_start(struct blocked *b, size_t n)
{
	struct exchange_pmap_options o = { .workers = 2, .batch = 1,
					   .ctx = b->p };

	cr_assert_leq(n, 8);
	cr_assert_eq(pipe(b->p), 0);
	b->in = numbers(n, 0);
	b->in[1] = ACT_WAIT;
	memset(b->out, 0, sizeof(b->out));
	b->pm = exchange_pmap_start(act, b->in, n, sizeof(long), b->out,
				    sizeof(long), &o);
	cr_assert_not_null(b->pm);
}

static void blocked_release(struct blocked *b)
{
	cr_assert_eq(write(b->p[1], "x", 1), 1);
}

static void blocked_end(struct blocked *b)
{
	exchange_pmap_free(b->pm);
	close(b->p[0]);
	close(b->p[1]);
	free(b->in);
	cr_assert(no_children());
}

Test(pmap_handle, results_arrive_while_a_later_element_blocks, .timeout = 30)
{
	int fds = count_fds();
	struct exchange_outcome oc;
	struct blocked b;
	size_t i;

	blocked_start(&b, 4);
	cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, -1), 1);
	cr_assert_eq(i, 0);
	cr_assert_eq(oc.cause, CHANNEL_OK);
	cr_assert_eq(b.out[0], 0);
	/* Element 1 cannot end before the byte is written. */
	errno = 0;
	cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(exchange_pmap_wait(b.pm, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	blocked_release(&b);
	for (size_t want = 1; want < 4; want++) {
		cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, -1), 1);
		cr_assert_eq(i, want);
		cr_assert_eq(oc.cause, CHANNEL_OK);
		cr_assert_eq(b.out[want], want == 1 ? ACT_WAIT * ACT_WAIT
						    : (long)(want * want));
	}
	cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, -1), 0);
	cr_assert_eq(exchange_pmap_wait(b.pm, -1), 4);
	blocked_end(&b);
	cr_assert_eq(count_fds(), fds);
}

Test(pmap_handle, any_order_gives_the_others_while_one_blocks, .timeout = 30)
{
	bool seen[6] = { false };
	struct blocked b;
	size_t i, k;

	blocked_start(&b, 6);
	for (k = 0; k < 5; k++) {
		cr_assert_eq(exchange_pmap_next_any(b.pm, &i, NULL, -1), 1);
		cr_assert_neq(i, 1, "element 1 is still blocked");
		cr_assert(!seen[i], "element %zu twice", i);
		seen[i] = true;
		cr_assert_eq(b.out[i], (long)(i * i));
	}
	cr_assert_eq(exchange_pmap_next_any(b.pm, &i, NULL, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	blocked_release(&b);
	cr_assert_eq(exchange_pmap_next_any(b.pm, &i, NULL, -1), 1);
	cr_assert_eq(i, 1);
	cr_assert_eq(exchange_pmap_next_any(b.pm, &i, NULL, -1), 0);
	cr_assert_eq(exchange_pmap_next(b.pm, &i, NULL, -1), 0);
	blocked_end(&b);
}

/* ------------------------------------------------------------------------ */
/* Each element once                                                        */
/* ------------------------------------------------------------------------ */

Test(pmap_handle, in_order_returns_every_index_once_in_order, .timeout = 60)
{
	size_t n = 20000, i, k;
	long *in = numbers(n, 0), *out = calloc(n, sizeof(long));
	struct exchange_pmap_options o = { .workers = 3 };
	struct exchange_pmapper *pm;
	struct exchange_outcome oc;

	pm = exchange_pmap_start(square, in, n, sizeof(long), out,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	for (k = 0; k < n; k++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
		cr_assert_eq(i, k);
		cr_assert_eq(oc.cause, CHANNEL_OK);
		cr_assert_eq(out[i], (long)(i * i));
	}
	cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 0);
	cr_assert_eq(exchange_pmap_next_any(pm, &i, &oc, -1), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n);
	exchange_pmap_free(pm);
	free(in);
	free(out);
	cr_assert(no_children());
}

Test(pmap_handle, any_order_returns_each_once, .timeout = 60)
{
	size_t n = 20000, i, k;
	long *in = numbers(n, 0), *out = calloc(n, sizeof(long));
	unsigned char *seen = calloc(n, 1);
	struct exchange_pmap_options o = { .workers = 3 };
	struct exchange_pmapper *pm;

	pm = exchange_pmap_start(square, in, n, sizeof(long), out,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	for (k = 0; k < n; k++) {
		cr_assert_eq(exchange_pmap_next_any(pm, &i, NULL, -1), 1);
		cr_assert_lt(i, n);
		cr_assert_eq(seen[i], 0, "element %zu twice", i);
		seen[i] = 1;
		cr_assert_eq(out[i], (long)(i * i));
	}
	cr_assert_eq(exchange_pmap_next_any(pm, &i, NULL, -1), 0);
	exchange_pmap_free(pm);
	free(seen);
	free(in);
	free(out);
	cr_assert(no_children());
}

/* In order and in any order mixed: one skips what the other returned. */
Test(pmap_handle, both_orders_mixed_return_each_once, .timeout = 60)
{
	size_t n = 3000, i, k, got = 0;
	long *in = numbers(n, 0), *out = calloc(n, sizeof(long));
	unsigned char *seen = calloc(n, 1);
	struct exchange_pmap_options o = { .workers = 2, .batch = 5 };
	struct exchange_pmapper *pm;
	int r;

	pm = exchange_pmap_start(square, in, n, sizeof(long), out,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	for (k = 0;; k++) {
		r = k % 3 ? exchange_pmap_next_any(pm, &i, NULL, -1)
			  : exchange_pmap_next(pm, &i, NULL, -1);
		if (r == 0)
			break;
		cr_assert_eq(r, 1);
		cr_assert_eq(seen[i], 0, "element %zu twice", i);
		seen[i] = 1;
		got++;
	}
	cr_assert_eq(got, n);
	exchange_pmap_free(pm);
	free(seen);
	free(in);
	free(out);
}

/* ------------------------------------------------------------------------ */
/* Outcomes through the handle                                              */
/* ------------------------------------------------------------------------ */

static void expect_fragile(size_t i, const struct exchange_outcome *oc)
{
	if (i == 5) {
		cr_assert_eq(oc->cause, CHANNEL_SENT_ERROR);
	} else if (i == 7) {
		cr_assert_eq(oc->cause, CHANNEL_SIGNALED);
		cr_assert_eq(oc->code, SIGSEGV);
	} else if (i == 9) {
		cr_assert_eq(oc->cause, CHANNEL_SIGNALED);
		cr_assert_eq(oc->code, SIGKILL);
	} else {
		cr_assert_eq(oc->cause, CHANNEL_OK, "element %zu: %d", i,
			     oc->cause);
	}
}

/* 5 fails; 7 dies of SIGSEGV; 9 of SIGKILL. */
Test(pmap_handle, failed_and_crashed_elements, .timeout = 60)
{
	int fds = count_fds();
	size_t n = 40, i, k;
	long *in = numbers(n, 0), *out = calloc(n, sizeof(long));
	struct exchange_outcome oc, *all = calloc(n, sizeof(*all));
	struct exchange_pmap_options o = { .workers = 2, .outcomes = all };
	struct exchange_pmapper *pm;

	in[5] = ACT_FAIL;
	in[7] = ACT_SEGV;
	in[9] = ACT_KILL;
	pm = exchange_pmap_start(act, in, n, sizeof(long), out, sizeof(long),
				 &o);
	cr_assert_not_null(pm);
	for (k = 0; k < n; k++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
		cr_assert_eq(i, k);
		expect_fragile(i, &oc);
		cr_assert_eq(all[i].cause, oc.cause, "the caller's array too");
		if (oc.cause == CHANNEL_OK)
			cr_assert_eq(out[i], (long)(i * i));
	}
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n - 3);
	exchange_pmap_free(pm);
	free(in);
	free(out);
	free(all);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* The limit is applied while the caller waits in the handle's calls:
 * element 5 waits on a pipe to which nothing is written. */
Test(pmap_handle, time_limit, .timeout = 30)
{
	int p[2];
	long *in = numbers(12, 0), out[12];
	struct exchange_pmap_options o = { .workers = 2, .ctx = p,
					   .time_limit_ms = 200 };
	struct exchange_pmapper *pm;
	struct exchange_outcome oc;
	size_t i, k;

	cr_assert_eq(pipe(p), 0);
	in[5] = ACT_WAIT;
	pm = exchange_pmap_start(act, in, 12, sizeof(long), out,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	for (k = 0; k < 12; k++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
		cr_assert_eq(i, k);
		if (i == 5) {
			cr_assert_eq(oc.cause, CHANNEL_TIMED_OUT);
			cr_assert_eq(oc.code, 200);
		} else {
			cr_assert_eq(oc.cause, CHANNEL_OK, "element %zu", i);
		}
	}
	cr_assert_eq(exchange_pmap_wait(pm, -1), 11);
	exchange_pmap_free(pm);
	close(p[0]);
	close(p[1]);
	free(in);
	cr_assert(no_children());
}

/* Element 0 holds SIGTERM back and ends only once the time limit's
 * SIGTERM is pending, so that its result comes with the signal on its
 * way; any later element lets the signal in. */
static int late_answer(const void *in, void *out, void *ctx)
{
	long v = *(const long *)in;
	sigset_t term, pending;

	(void)ctx;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (v == 0) {
		sigprocmask(SIG_BLOCK, &term, NULL);
		do
			sigpending(&pending);
		while (!sigismember(&pending, SIGTERM));
	} else {
		sigprocmask(SIG_UNBLOCK, &term, NULL);
	}
	*(long *)out = v * v;
	return 0;
}

/* A worker sent SIGTERM for its time limit is leaving, even when its
 * result came first: it is given no more work, which would end with it as
 * that work's outcome. */
Test(pmap_handle, a_worker_signalled_for_its_limit_takes_no_more_work,
     .timeout = 30)
{
	long *in = numbers(3, 0), out[3] = { 0 };
	struct exchange_outcome oc[3];
	struct exchange_pmap_options o = { .workers = 1, .batch = 1,
					   .time_limit_ms = 100,
					   .outcomes = oc };
	size_t i;

	cr_assert_eq(exchange_pmap(late_answer, in, 3, sizeof(long), out,
				   sizeof(long), &o), 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(oc[i].cause, CHANNEL_OK, "element %zu: cause %d",
			     i, oc[i].cause);
		cr_assert_eq(out[i], (long)(i * i));
	}
	free(in);
	cr_assert(no_children());
}

#define HUGE_RESULT ((size_t)64 << 20)

/* The result of element 0 is HUGE_RESULT bytes at ctx (malloc'd by the
 * test before the workers were forked: each worker frees its copy); any
 * other element's is its value. */
static int huge_or_small(const void *in, void **out, size_t *len, void *ctx)
{
	long v = *(const long *)in;

	if (v == 0) {
		*out = ctx;
		*len = HUGE_RESULT;
		return 0;
	}
	*out = malloc(sizeof(v));
	if (!*out)
		return -1;
	memcpy(*out, &v, sizeof(v));
	*len = sizeof(v);
	return 0;
}

/* A result the parent has no memory for fails its element with
 * CHANNEL_PROTOCOL and ENOMEM (exchange.h), not as a worker killed; the
 * other elements go on. */
Test(pmap_handle, a_result_without_memory_is_a_protocol_outcome,
     .timeout = 60)
{
	long in[2] = { 0, 1 };
	struct exchange_result out[2];
	struct exchange_outcome oc[2];
	struct exchange_pmap_options o = { .workers = 1, .batch = 1,
					   .outcomes = oc };
	struct exchange_pmapper *pm;
	struct rlimit old;
	const char *why;
	ssize_t r;

	o.ctx = calloc(1, HUGE_RESULT);
	cr_assert_not_null(o.ctx);
	pm = exchange_pmap_sized_start(huge_or_small, in, 2, sizeof(long), out,
				       &o);
	cr_assert_not_null(pm);
	why = limit_address_space(HUGE_RESULT / 4, &old);
	if (why) {
		exchange_pmap_free(pm);
		free(o.ctx);
		cr_skip_test("%s", why);
	}
	r = exchange_pmap_wait(pm, -1);
	setrlimit(RLIMIT_AS, &old);
	cr_assert_eq(r, 1);
	cr_assert_eq(oc[0].cause, CHANNEL_PROTOCOL, "element 0: cause %d",
		     oc[0].cause);
	cr_assert_eq(oc[0].code, ENOMEM);
	cr_assert_null(out[0].data);
	cr_assert_eq(oc[1].cause, CHANNEL_OK);
	cr_assert_eq(out[1].len, sizeof(long));
	free(out[1].data);
	exchange_pmap_free(pm);
	free(o.ctx);
	cr_assert(no_children());
}

/* Element 0 kills its worker; no other worker can be forked. */
Test(pmap_handle, elements_no_worker_can_take_end_not_started, .timeout = 30)
{
	long *in = numbers(3, 0), out[3];
	struct exchange_pmap_options o = { .workers = 1, .batch = 1 };
	struct exchange_pmapper *pm;
	struct exchange_outcome oc;
	size_t i;

	in[0] = ACT_KILL;
	hook_forks(2);
	pm = exchange_pmap_start(act, in, 3, sizeof(long), out, sizeof(long),
				 &o);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
	cr_assert_eq(i, 0);
	cr_assert_eq(oc.cause, CHANNEL_SIGNALED);
	for (size_t want = 1; want < 3; want++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
		cr_assert_eq(i, want);
		cr_assert_eq(oc.cause, CHANNEL_NOT_STARTED);
		cr_assert_eq(oc.code, EAGAIN);
	}
	cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), 0);
	unhook_forks();
	exchange_pmap_free(pm);
	free(in);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Free while running                                                       */
/* ------------------------------------------------------------------------ */

/* Element 0 returns; every other one says it has started, then waits for
 * ever. */
Test(pmap_handle, free_while_running_kills_and_reaps, .timeout = 30)
{
	int fds = count_fds(), p[2];
	long *in = numbers(8, 0), out[8];
	struct exchange_pmap_options o = { .workers = 3, .batch = 1,
					   .ctx = p };
	struct exchange_pmapper *pm;
	size_t i;
	char c;

	cr_assert_eq(pipe(p), 0);
	for (i = 1; i < 8; i++)
		in[i] = ACT_HANG;
	pm = exchange_pmap_start(act, in, 8, sizeof(long), out, sizeof(long),
				 &o);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_next(pm, &i, NULL, -1), 1);
	cr_assert_eq(i, 0);
	/* Three elements hang, one on each worker (element 0's worker took
	 * element 3 once the call above read its result). */
	for (int k = 0; k < 3; k++)
		cr_assert_eq(read(p[0], &c, 1), 1);
	exchange_pmap_free(pm);
	close(p[0]);
	close(p[1]);
	free(in);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Another map on the same handle                                           */
/* ------------------------------------------------------------------------ */

/* With keep_workers the second and third maps run on the first map's
 * workers, on input written after they were forked. */
static void maps_in_turn(bool keep, int forks_wanted)
{
	size_t n1 = 100, n2 = 3000, n3 = 7, i;
	long *in1 = numbers(n1, 1), *out1 = calloc(n1, sizeof(long));
	struct exchange_pmap_options o = { .workers = 2,
					   .keep_workers = keep };
	struct exchange_outcome *oc;
	struct exchange_pmapper *pm;
	long *in2, *out2;

	hook_forks(0);
	pm = exchange_pmap_start(square, in1, n1, sizeof(long), out1,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n1);
	for (i = 0; i < n1; i++)
		cr_assert_eq(out1[i], (long)((i + 1) * (i + 1)));
	/* Written after the workers were forked. */
	in2 = numbers(n2, 1000);
	out2 = calloc(n2, sizeof(long));
	oc = calloc(n2, sizeof(*oc));
	cr_assert_eq(exchange_pmap_again(pm, in2, n2, out2, oc), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n2);
	for (i = 0; i < n2; i++) {
		cr_assert_eq(out2[i], (1000 + (long)i) * (1000 + (long)i),
			     "element %zu", i);
		cr_assert_eq(oc[i].cause, CHANNEL_OK);
	}
	for (i = 0; i < n3; i++)
		in2[i] = -(long)i;
	cr_assert_eq(exchange_pmap_again(pm, in2, n3, out1, NULL), 0);
	for (size_t k = 0; k < n3; k++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, NULL, -1), 1);
		cr_assert_eq(i, k);
		cr_assert_eq(out1[i], (long)(i * i));
	}
	cr_assert_eq(exchange_pmap_again(pm, NULL, 0, NULL, NULL), 0);
	cr_assert_eq(exchange_pmap_next(pm, &i, NULL, -1), 0);
	unhook_forks();
	cr_assert_eq(forks, forks_wanted);
	exchange_pmap_free(pm);
	free(in1);
	free(out1);
	free(in2);
	free(out2);
	free(oc);
	cr_assert(no_children());
}

Test(pmap_handle, again_keeps_the_workers_and_sends_the_input, .timeout = 60)
{
	maps_in_turn(true, 2);
}

Test(pmap_handle, again_without_keep_forks_fresh_workers, .timeout = 60)
{
	/* Two per map of elements; the empty map forks none. */
	maps_in_turn(false, 6);
}

/* A kept worker gets a map's own pointers for elements of no bytes. */
static const void *want_ptrs[2];

static int points_as_ctx(const void *in, void *out, void *ctx)
{
	const void *const *want = ctx;

	return in == want[0] && out == want[1] ? 0 : -1;
}

Test(pmap_handle, again_keeps_zero_size_pointers, .timeout = 30)
{
	static char a, b, c, d;
	struct exchange_pmap_options o = { .workers = 2, .keep_workers = true,
					   .ctx = want_ptrs };
	struct exchange_pmapper *pm;

	/* The workers see want_ptrs as it is when they are forked: the
	 * second map's pointers, which the first map does not pass. */
	want_ptrs[0] = &c;
	want_ptrs[1] = &d;
	pm = exchange_pmap_start(points_as_ctx, &a, 5, 0, &b, 0, &o);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_wait(pm, -1), 0);
	cr_assert_eq(exchange_pmap_again(pm, &c, 5, &d, NULL), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), 5,
		     "kept workers get the new map's pointers");
	exchange_pmap_free(pm);
	cr_assert(no_children());
}

Test(pmap_handle, again_before_the_map_is_over_is_refused, .timeout = 30)
{
	struct blocked b;

	blocked_start(&b, 4);
	errno = 0;
	cr_assert_eq(exchange_pmap_again(b.pm, b.in, 4, b.out, NULL), -1);
	cr_assert_eq(errno, EBUSY);
	blocked_release(&b);
	cr_assert_eq(exchange_pmap_wait(b.pm, -1), 4);
	cr_assert_eq(exchange_pmap_again(b.pm, b.in, 4, b.out, NULL), 0);
	blocked_end(&b);
}

/* A refused map leaves the handle with an empty one, never the last map
 * again, whose outcomes the caller may have freed once it was over. */
Test(pmap_handle, a_refused_again_leaves_an_empty_map, .timeout = 30)
{
	size_t n = 5, i = 99;
	long *in = numbers(n, 1), *out = calloc(n, sizeof(long));
	struct exchange_outcome *oc = calloc(n, sizeof(*oc));
	struct exchange_pmap_options o = { .workers = 2 };
	struct exchange_pmapper *pm;

	o.outcomes = oc;
	pm = exchange_pmap_start(square, in, n, sizeof(long), out,
				 sizeof(long), &o);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n);
	free(oc);
	errno = 0;
	cr_assert_eq(exchange_pmap_again(pm, NULL, 3, out, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_next(pm, &i, NULL, 0), 0,
		     "element %zu of the last map came back", i);
	cr_assert_eq(exchange_pmap_wait(pm, 0), 0);
	exchange_pmap_free(pm);
	free(in);
	free(out);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

Test(pmap_handle, bad_arguments_and_empty_maps, .timeout = 30)
{
	long x = 0;
	struct exchange_result r;
	struct exchange_pmap_options neg = { .workers = -1 },
		big = { .max_result = EXCHANGE_PMAP_MAX_RESULT + 1 },
		keep = { .keep_workers = true };
	struct exchange_pmapper *pm;
	size_t i;

	hook_forks(0);
	cr_assert_null(exchange_pmap_start(NULL, &x, 1, sizeof(x), &x,
					   sizeof(x), NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_start(square, &x, 1, sizeof(x), &x,
					   sizeof(x), &neg));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_start(square, &x, 1, sizeof(x), NULL,
					   sizeof(x), NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_sized_start(NULL, &x, 1, sizeof(x), &r,
						 NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_sized(NULL, &x, 1, sizeof(x), &r, NULL),
		     -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_start(square, &x, 1,
					   CHANNEL_MAX_DEFAULT, &x, sizeof(x),
					   &keep));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_next(NULL, &i, NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_next_any(NULL, &i, NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_wait(NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap_again(NULL, &x, 1, &x, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_pmap_free(NULL);
	/* An empty map forks nothing and is over at once. */
	pm = exchange_pmap_start(square, NULL, 0, sizeof(x), NULL, sizeof(x),
				 NULL);
	cr_assert_not_null(pm);
	cr_assert_eq(exchange_pmap_next(pm, &i, NULL, -1), 0);
	cr_assert_eq(exchange_pmap_next_any(pm, &i, NULL, -1), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), 0);
	cr_assert_eq(exchange_pmap_again(pm, NULL, 1, &x, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_pmap_free(pm);
	unhook_forks();
	cr_assert_eq(forks, 0);
	cr_assert_eq(exchange_pmap_sized(NULL, &x, 1, sizeof(x), &r, &big), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_sized_start(NULL, &x, 1, sizeof(x), NULL,
						 NULL));
	cr_assert_eq(errno, EINVAL);
}

static int sized_copy(const void *in, void **out, size_t *len, void *ctx);

Test(pmap_handle, sized_refusals, .timeout = 30)
{
	long x = 0;
	struct exchange_result r;
	struct exchange_pmap_options big = {
		.max_result = EXCHANGE_PMAP_MAX_RESULT + 1
	};

	cr_assert_eq(exchange_pmap_sized(sized_copy, &x, 1, sizeof(x), &r,
					 &big), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_pmap_sized_start(sized_copy, &x, 1, sizeof(x),
						 NULL, NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert(no_children());
}

/* A handle is its maker's: in a child forked from it, EBADF. */
Test(pmap_handle, a_child_cannot_use_its_parents_handle, .timeout = 30)
{
	long *in = numbers(3, 0), out[3];
	struct exchange_pmapper *pm;
	struct channel *ch;
	pid_t pid;
	int st;

	pm = exchange_pmap_start(square, in, 3, sizeof(long), out,
				 sizeof(long), NULL);
	cr_assert_not_null(pm);
	pid = channel_fork(&ch, CHANNEL_LINK_PIPES);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		size_t i;

		_exit(exchange_pmap_next(pm, &i, NULL, 0) == -1 &&
		      errno == EBADF &&
		      exchange_pmap_wait(pm, 0) == -1 && errno == EBADF ? 0
									: 1);
	}
	cr_assert_eq(channel_wait(ch, -1), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the child saw EBADF: status %d", st);
	channel_close(ch);
	cr_assert_eq(exchange_pmap_wait(pm, -1), 3);
	exchange_pmap_free(pm);
	free(in);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Results of their own size                                                */
/* ------------------------------------------------------------------------ */

/* Element in[i] = its result's length; the bytes are the pattern of that
 * length (so the input can travel in a TASK frame: nothing depends on
 * where it lies). A length of -1 fails; -2 claims a length above the
 * largest result (with a buffer of one byte, which the check must refuse
 * before reading it); -3 kills the worker. */
static int sized_copy(const void *in, void **out, size_t *len, void *ctx)
{
	long v;

	(void)ctx;
	memcpy(&v, in, sizeof(v));
	if (v == -2) {
		*out = malloc(1);
		*len = EXCHANGE_PMAP_MAX_RESULT + 1;
		return 0;
	}
	if (v == -3)
		kill(getpid(), SIGKILL);
	if (v < 0)
		return -1;
	*out = v ? malloc((size_t)v) : NULL;
	if (v && !*out)
		return -1;
	*len = (size_t)v;
	pattern_fill(*out, *len, *len);
	return 0;
}

static void expect_result(const struct exchange_result *r, long want,
			  size_t idx)
{
	cr_assert_not_null(r->data, "element %zu has a result", idx);
	cr_assert(pattern_check(r->data, r->len, (size_t)want, (size_t)want),
		  "element %zu: %zu bytes, %ld wanted", idx, r->len, want);
	cr_assert_eq(((const char *)r->data)[r->len], 0, "NUL-terminated");
}

static void free_results(struct exchange_result *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(r[i].data);
	free(r);
}

Test(pmap_sized, sizes_0_1_large_and_over_the_maximum, .timeout = 60)
{
	long in[] = { 0, 1, 1 << 20, 3, -1, 0, -2, 1000, 1001, 77 };
	size_t n = sizeof(in) / sizeof(in[0]), i;
	struct exchange_result *r = calloc(n, sizeof(*r));
	struct exchange_outcome oc[10];
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc };

	cr_assert_eq(exchange_pmap_sized(sized_copy, in, n, sizeof(long), r,
					 &o), (ssize_t)n - 2);
	for (i = 0; i < n; i++) {
		if (in[i] == -1) {
			cr_assert_eq(oc[i].cause, CHANNEL_SENT_ERROR);
		} else if (in[i] == -2) {
			cr_assert_eq(oc[i].cause, CHANNEL_PROTOCOL);
			cr_assert_eq(oc[i].code, EMSGSIZE);
		} else {
			cr_assert_eq(oc[i].cause, CHANNEL_OK, "element %zu", i);
			expect_result(&r[i], in[i], i);
			continue;
		}
		cr_assert_null(r[i].data);
		cr_assert_eq(r[i].len, 0);
	}
	free_results(r, n);
	cr_assert(no_children());
}

/* max_result sets a lower limit: one byte above it fails that element
 * only; exactly the limit passes. */
Test(pmap_sized, a_lower_maximum, .timeout = 30)
{
	long in[] = { 1000, 1001, 5, 999 };
	struct exchange_result *r = calloc(4, sizeof(*r));
	struct exchange_outcome oc[4];
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc,
					   .max_result = 1000 };
	size_t i;

	cr_assert_eq(exchange_pmap_sized(sized_copy, in, 4, sizeof(long), r,
					 &o), 3);
	for (i = 0; i < 4; i++) {
		if (i == 1) {
			cr_assert_eq(oc[i].cause, CHANNEL_PROTOCOL);
			cr_assert_eq(oc[i].code, EMSGSIZE);
			cr_assert_null(r[i].data);
		} else {
			cr_assert_eq(oc[i].cause, CHANNEL_OK);
			expect_result(&r[i], in[i], i);
		}
	}
	free_results(r, 4);
}

/* A batch of large results leaves its worker in several messages; when
 * the worker dies half way, what it sent is kept and only the rest runs
 * again, and only the element that killed it is lost. */
Test(pmap_sized, a_batch_of_large_results_and_a_death_half_way,
     .timeout = 120)
{
	size_t n = slow_run() ? 12 : 24, i, k;
	long *in = malloc(n * sizeof(long));
	struct exchange_result *r = calloc(n, sizeof(*r));
	struct exchange_pmap_options o = { .workers = 1, .batch = n };
	struct exchange_pmapper *pm;
	struct exchange_outcome oc;

	for (i = 0; i < n; i++)
		in[i] = i == 10 ? -3 : (1 << 20) + (long)i;
	pm = exchange_pmap_sized_start(sized_copy, in, n, sizeof(long), r, &o);
	cr_assert_not_null(pm);
	for (k = 0; k < n; k++) {
		cr_assert_eq(exchange_pmap_next(pm, &i, &oc, -1), 1);
		cr_assert_eq(i, k);
		if (i == 10) {
			cr_assert_eq(oc.cause, CHANNEL_SIGNALED);
			cr_assert_eq(oc.code, SIGKILL);
			cr_assert_null(r[i].data);
		} else {
			cr_assert_eq(oc.cause, CHANNEL_OK, "element %zu", i);
			expect_result(&r[i], in[i], i);
		}
	}
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n - 1);
	exchange_pmap_free(pm);
	free_results(r, n);
	free(in);
	cr_assert(no_children());
}

/* The sized handle: in any order, and again on kept workers. */
Test(pmap_sized, through_the_handle_and_again, .timeout = 60)
{
	long in[] = { 5, 0, 300, 1, 70000, 2, 9 };
	size_t n = sizeof(in) / sizeof(in[0]), i, k;
	struct exchange_result *r = calloc(n, sizeof(*r));
	struct exchange_pmap_options o = { .workers = 2,
					   .keep_workers = true };
	struct exchange_pmapper *pm;
	struct exchange_outcome oc;
	bool seen[7] = { false };

	hook_forks(0);
	pm = exchange_pmap_sized_start(sized_copy, in, n, sizeof(long), r, &o);
	cr_assert_not_null(pm);
	for (k = 0; k < n; k++) {
		cr_assert_eq(exchange_pmap_next_any(pm, &i, &oc, -1), 1);
		cr_assert(!seen[i]);
		seen[i] = true;
		cr_assert_eq(oc.cause, CHANNEL_OK);
		expect_result(&r[i], in[i], i);
	}
	cr_assert_eq(exchange_pmap_next_any(pm, &i, &oc, -1), 0);
	for (i = 0; i < n; i++) {
		free(r[i].data);
		r[i].data = NULL;
	}
	/* The same array, new lengths: a kept worker has the old ones in its
	 * copy, and takes the new ones from the TASK frames. */
	for (i = 0; i < n; i++)
		in[i] = (long)(i * 1000);
	cr_assert_eq(exchange_pmap_again(pm, in, n, r, NULL), 0);
	cr_assert_eq(exchange_pmap_wait(pm, -1), (ssize_t)n);
	for (i = 0; i < n; i++)
		expect_result(&r[i], in[i], i);
	unhook_forks();
	cr_assert_eq(forks, 2);
	exchange_pmap_free(pm);
	free_results(r, n);
	cr_assert(no_children());
}

/* A child of the caller's own fork that frees its copy of a handle leaves
 * the parent's workers alone: the busy one used to be killed, and its
 * element ended with SIGKILL. Calls on the copy are refused there. */
Test(pmap_handle, a_copy_freed_in_a_plain_fork_kills_no_worker, .timeout = 30)
{
	struct exchange_outcome oc;
	struct blocked b;
	size_t i;
	pid_t pid;
	int st;

	blocked_start(&b, 4);
	cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, -1), 1);
	cr_assert_eq(i, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int refused = exchange_pmap_next(b.pm, &i, &oc, 0) == -1 &&
			      errno == EBADF;

		exchange_pmap_free(b.pm);
		_exit(refused ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the copy was not refused: status %#x", st);
	blocked_release(&b);
	for (size_t want = 1; want < 4; want++) {
		cr_assert_eq(exchange_pmap_next(b.pm, &i, &oc, -1), 1);
		cr_assert_eq(i, want);
		cr_assert_eq(oc.cause, CHANNEL_OK, "element %zu: cause %d",
			     want, oc.cause);
	}
	blocked_end(&b);
}
