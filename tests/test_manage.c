/*
 * test_manage.c - work on the caller's behalf: plain functions, create,
 * managed handles, reuse workers, failure policies, pmap and the number of
 * cores.
 *
 * Children report only through their channel or exit status; assertions
 * stay in the test body. Forks are counted, or made to fail, through the
 * library's test hook.
 */
#include "exchange.h"
#include "internal.h"
#include "helpers.h"
#include "fork_hook.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* A counter shared with the children (mapped from /dev/zero). */
static atomic_int *shared_counter(void)
{
	int fd = open("/dev/zero", O_RDWR);
	void *p;

	cr_assert_geq(fd, 0);
	p = mmap(NULL, sizeof(atomic_int), PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	close(fd);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

/* ------------------------------------------------------------------------ */
/* Plain functions, managed handles, create                                 */
/* ------------------------------------------------------------------------ */

/* Returns "<arg>!" or fails with ENOENT for "missing". */
static void *shout(const void *arg, size_t len, size_t *rlen, void *ctx)
{
	char *r;

	(void)ctx;
	if (len == 7 && memcmp(arg, "missing", 7) == 0) {
		errno = ENOENT;
		return NULL;
	}
	r = malloc(len + 1);
	if (!r)
		return NULL;
	memcpy(r, arg, len);
	r[len] = '!';
	*rlen = len + 1;
	return r;
}

static void check_shout_map(struct exchange *ex)
{
	struct channel_msg m;

	cr_assert_eq(exchange_map_get(ex, 0, &m, -1), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_str_eq(m.data, "hello!");
	cr_assert_eq(exchange_map_get(ex, 1, &m, -1), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	cr_assert_eq(m.cause, CHANNEL_SENT_ERROR);
	cr_assert_str_eq(m.data, strerror(ENOENT));
	cr_assert_eq(exchange_map_get(ex, 2, &m, -1), 1);
	cr_assert_str_eq(m.data, "x!");
}

Test(manage, plain_function_result_and_error, .timeout = 20)
{
	int fds = count_fds();
	struct exchange *ex = exchange_new_map(NULL);

	cr_assert_eq(exchange_start_plain(ex, shout, "hello", 5, NULL), 0);
	cr_assert_eq(exchange_start_plain(ex, shout, "missing", 7, NULL), 1);
	cr_assert_eq(exchange_start_plain(ex, shout, "x", 1, NULL), 2);
	check_shout_map(ex);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* A taken outcome is the caller's; the map keeps its kind and cause. */
Test(manage, map_take_hands_the_message_over, .timeout = 20)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct channel_msg m, again;

	cr_assert_eq(exchange_start_plain(ex, shout, "hello", 5, NULL), 0);
	cr_assert_eq(exchange_start_plain(ex, shout, "missing", 7, NULL), 1);
	cr_assert_eq(exchange_map_take(ex, 0, &m, -1), 1);
	cr_assert_str_eq(m.data, "hello!");
	cr_assert_eq(exchange_map_get(ex, 0, &again, -1), 1);
	cr_assert_eq(again.kind, CHANNEL_DATA);
	cr_assert_null(again.data, "the map no longer holds it");
	cr_assert_eq(again.len, 0);
	channel_msg_free(&m);	/* ours: freed once, here */
	cr_assert_eq(exchange_map_take(ex, 1, &m, -1), 1);
	cr_assert_eq(m.cause, CHANNEL_SENT_ERROR);
	channel_msg_free(&m);
	cr_assert_eq(exchange_map_take(ex, 2, &m, 0), -1);
	cr_assert_eq(errno, ERANGE);
	cr_assert_eq(exchange_map_take(NULL, 0, &m, 0), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(manage, plain_function_in_reuse_mode, .timeout = 20)
{
	struct exchange_options o = { .reuse = true, .limit = 1 };
	struct exchange *ex = exchange_new_map(&o);

	hook_forks(0);
	cr_assert_eq(exchange_start_plain(ex, shout, "hello", 5, NULL), 0);
	cr_assert_eq(exchange_start_plain(ex, shout, "missing", 7, NULL), 1);
	cr_assert_eq(exchange_start_plain(ex, shout, "x", 1, NULL), 2);
	check_shout_map(ex);
	cr_assert_eq(exchange_finish(ex), 0);
	unhook_forks();
	cr_assert_eq(forks, 1, "one worker ran all three");
	exchange_free(ex);
	cr_assert(no_children());
}

static void send_len_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	size_t v = len + (size_t)(*(const int *)ctx);

	(void)arg;
	channel_send(ch, &v, sizeof(v), -1);
}

Test(manage, managed_handles_start_through_their_exchange, .timeout = 20)
{
	struct exchange *ex = exchange_new_map(NULL);
	int base = 1000;
	struct exchange_managed *a = exchange_manage(ex, send_len_fn, NULL,
						     &base);
	struct exchange_managed *b = exchange_manage(ex, NULL, shout, NULL);
	struct channel_msg m;

	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_null(exchange_manage(ex, send_len_fn, shout, NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_manage(ex, NULL, NULL, NULL));
	cr_assert_eq(exchange_call(a, "abc", 3), 0);
	cr_assert_eq(exchange_call(b, "hi", 2), 1);
	cr_assert_eq(exchange_call(NULL, "hi", 2), -1);
	cr_assert_eq(exchange_map_get(ex, 0, &m, -1), 1);
	cr_assert_eq(*(size_t *)m.data, 1003);
	cr_assert_eq(exchange_map_get(ex, 1, &m, -1), 1);
	cr_assert_str_eq(m.data, "hi!");
	exchange_free(ex);
	cr_assert(no_children());
}

Test(manage, start_rejects_bad_arguments)
{
	struct exchange *ex = exchange_new(NULL);

	cr_assert_eq(exchange_start(ex, NULL, NULL, 0, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_start(NULL, send_len_fn, NULL, 0, NULL), -1);
	cr_assert_eq(exchange_start(ex, send_len_fn, NULL, 4, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_start_plain(ex, NULL, NULL, 0, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_free(ex);
}

Test(manage, create_hands_the_parent_end_to_the_exchange, .timeout = 20)
{
	int fds = count_fds();
	struct exchange_options o = { .limit = 2 };
	struct exchange *ex = exchange_new_queue(&o);
	struct channel *child;
	struct channel_msg m;
	pid_t pids[5];
	int i, seen = 0;

	for (i = 0; i < 5; i++) {
		pids[i] = exchange_create(ex, &child);
		if (pids[i] == 0) {
			pid_t me = getpid();

			channel_send(child, &me, sizeof(me), -1);
			channel_exit(child, 0);
		}
		cr_assert_gt(pids[i], 0);
		cr_assert_null(child);
		cr_assert_leq(exchange_active(ex, NULL, 0), 2);
	}
	while (exchange_queue_next(ex, &m, 5000) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_lt(m.task, 5);
		cr_assert_eq(*(pid_t *)m.data, pids[m.task]);
		channel_msg_free(&m);
		seen++;
	}
	cr_assert_eq(seen, 5);
	exchange_free(ex);
	for (i = 0; i < 5; i++)
		cr_assert(reaped(pids[i]));
	cr_assert_eq(count_fds(), fds);
}

/* ------------------------------------------------------------------------ */
/* Reuse mode                                                               */
/* ------------------------------------------------------------------------ */

/* Sends (pid, argument). */
static void pid_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	long rec[2] = { (long)getpid(), *(const long *)arg };

	(void)len, (void)ctx;
	channel_send(ch, rec, sizeof(rec), -1);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* Collects (pid, argument) pairs. */
struct pairs {
	long *pid;		/* pid that ran each argument */
	int *count;		/* times each argument came back */
	long n;			/* arguments */
};

static int pairs_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct pairs *p = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.kind == CHANNEL_DATA && m.len == 2 * sizeof(long)) {
		long *rec = m.data;

		if (rec[1] >= 0 && rec[1] < p->n) {
			p->pid[rec[1]] = rec[0];
			p->count[rec[1]]++;
		}
	}
	channel_msg_free(&m);
	return 0;
}

Test(reuse, ten_thousand_tasks_on_at_most_limit_processes, .timeout = 120)
{
	int fds = count_fds();
	long n = 10000, i, distinct = 0;
	struct pairs p = { calloc(n, sizeof(long)), calloc(n, sizeof(int)), n };
	struct exchange_options o = { .reuse = true, .limit = 4,
				      .store_data = pairs_store, .udata = &p };
	struct exchange *ex = exchange_new(&o);

	hook_forks(0);
	for (i = 0; i < n; i++) {
		cr_assert_eq(exchange_start(ex, pid_fn, &i, sizeof(i), NULL),
			     i);
		cr_assert_leq(exchange_active(ex, NULL, 0), 4);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	unhook_forks();
	for (i = 0; i < n; i++)
		cr_assert_eq(p.count[i], 1, "task %ld ran once", i);
	qsort(p.pid, n, sizeof(long), cmp_long);
	for (i = 0; i < n; i++)
		if (i == 0 || p.pid[i] != p.pid[i - 1])
			distinct++;
	cr_assert_leq(distinct, 4);
	cr_assert_geq(distinct, 1);
	cr_assert_leq(forks, 4, "workers are forked once");
	exchange_free(ex);
	free(p.pid);
	free(p.count);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Sends the argument back, except: 13 kills its worker, 7 returns without
 * a result, 21 aborts. */
static void picky_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	long v = *(const long *)arg;

	(void)len, (void)ctx;
	if (v == 13)
		kill(getpid(), SIGKILL);
	if (v == 21)
		abort();
	if (v == 7)
		return;
	channel_send(ch, &v, sizeof(v), -1);
}

Test(reuse, dead_worker_fails_its_task_and_the_rest_completes,
     .timeout = 60)
{
	int fds = count_fds();
	struct exchange_options o = { .reuse = true, .limit = 2 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	long i, n = 40;

	hook_forks(0);
	for (i = 0; i < n; i++)
		cr_assert_eq(exchange_start(ex, picky_fn, &i, sizeof(i), NULL),
			     i);
	for (i = 0; i < n; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, -1), 1);
		cr_assert_eq(m.task, (size_t)i);
		if (i == 13 || i == 21) {
			cr_assert_eq(m.kind, CHANNEL_FAILURE, "task %ld", i);
			cr_assert_eq(m.cause, CHANNEL_LOST);
			cr_assert_eq(m.code, i == 13 ? SIGKILL : SIGABRT);
		} else if (i == 7) {
			cr_assert_eq(m.kind, CHANNEL_FAILURE);
			cr_assert_eq(m.cause, CHANNEL_EXITED);
			cr_assert_eq(m.code, 0);
			cr_assert_str_eq(m.data, "returned without a result");
		} else {
			cr_assert_eq(m.kind, CHANNEL_DATA, "task %ld", i);
			cr_assert_eq(*(long *)m.data, i);
		}
	}
	cr_assert_eq(exchange_finish(ex), 0);
	unhook_forks();
	cr_assert_leq(forks, 4, "two workers, and one fresh one per death");
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(reuse, idle_worker_takes_a_later_start, .timeout = 20)
{
	struct exchange_options o = { .reuse = true };
	struct exchange *ex = exchange_new_queue(&o);
	struct channel_msg m;
	long v = 5;

	cr_assert_eq(exchange_start(ex, picky_fn, &v, sizeof(v), NULL), 0);
	cr_assert_eq(exchange_queue_next(ex, &m, 5000), 1);
	cr_assert_eq(*(long *)m.data, 5);
	channel_msg_free(&m);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert(no_children());
	exchange_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Policies                                                                 */
/* ------------------------------------------------------------------------ */

Test(policy, stop_cancels_queued_work, .timeout = 20)
{
	struct exchange_options o = { .limit = 1, .policy = EXCHANGE_STOP };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	long v = 7, w = 1;
	size_t i;

	cr_assert_eq(exchange_start(ex, picky_fn, &v, sizeof(v), NULL), 0);
	for (i = 1; i < 4; i++)
		cr_assert_eq(exchange_start(ex, picky_fn, &w, sizeof(w), NULL),
			     (ssize_t)i);
	cr_assert_eq(exchange_map_get(ex, 0, &m, -1), 1);
	cr_assert_eq(m.cause, CHANNEL_EXITED);
	for (i = 1; i < 4; i++) {
		cr_assert_eq(exchange_map_get(ex, i, &m, -1), 1);
		cr_assert_eq(m.kind, CHANNEL_FAILURE);
		cr_assert_eq(m.cause, CHANNEL_NOT_STARTED);
		cr_assert_eq(m.code, ECANCELED);
	}
	exchange_free(ex);
	cr_assert(no_children());
}

/* Kills itself on its first run, then answers. */
static void flaky_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	atomic_int *runs = ctx;
	long v = 99;

	(void)arg, (void)len;
	if (atomic_fetch_add(runs, 1) == 0)
		kill(getpid(), SIGKILL);
	channel_send(ch, &v, sizeof(v), -1);
}

static void check_retry(bool reuse)
{
	atomic_int *runs = shared_counter();
	struct exchange_options o = { .reuse = reuse,
				      .policy = EXCHANGE_RETRY, .retries = 2 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;

	cr_assert_eq(exchange_start(ex, flaky_fn, NULL, 0, runs), 0);
	cr_assert_eq(exchange_map_get(ex, 0, &m, -1), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_eq(*(long *)m.data, 99);
	cr_assert_eq(atomic_load(runs), 2);
	exchange_free(ex);
	munmap(runs, sizeof(*runs));
	cr_assert(no_children());
}

Test(policy, retry_runs_a_failed_task_again, .timeout = 20)
{
	check_retry(false);
}

Test(policy, retry_in_reuse_mode, .timeout = 20)
{
	check_retry(true);
}

Test(policy, fork_failure_of_queued_work_is_its_outcome, .timeout = 20)
{
	struct exchange_options o = { .limit = 1 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	long i;

	hook_forks(3);
	for (i = 0; i < 4; i++)
		cr_assert_eq(exchange_start(ex, picky_fn, &i, sizeof(i), NULL),
			     i);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, -1), 1);
		if (i < 2) {
			cr_assert_eq(m.kind, CHANNEL_DATA);
		} else {
			cr_assert_eq(m.cause, CHANNEL_NOT_STARTED);
			cr_assert_eq(m.code, EAGAIN);
		}
	}
	unhook_forks();
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* pmap                                                                     */
/* ------------------------------------------------------------------------ */

static int twice_plus_one(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(long *)out = 2 * *(const long *)in + 1;
	return 0;
}

Test(pmap, hundred_thousand_elements_in_order, .timeout = 60)
{
	int fds = count_fds();
	size_t n = 100000, i;
	long *in = malloc(n * sizeof(long)), *out = calloc(n, sizeof(long));
	struct exchange_outcome *oc = calloc(n, sizeof(*oc));
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc };

	for (i = 0; i < n; i++)
		in[i] = (long)i;
	hook_forks(0);
	cr_assert_eq(exchange_pmap(twice_plus_one, in, n, sizeof(long), out,
				   sizeof(long), &o), (ssize_t)n);
	unhook_forks();
	cr_assert_eq(forks, 2, "workers are forked once, not per element");
	for (i = 0; i < n; i++) {
		cr_assert_eq(out[i], 2 * (long)i + 1);
		cr_assert_eq(oc[i].cause, CHANNEL_OK);
	}
	free(in);
	free(out);
	free(oc);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(pmap, default_workers_and_fixed_batches, .timeout = 60)
{
	size_t n = 1000, i;
	long in[1000], out[1000];
	struct exchange_pmap_options o = { .batch = 7 };

	for (i = 0; i < n; i++)
		in[i] = (long)i;
	cr_assert_eq(exchange_pmap(twice_plus_one, in, n, sizeof(long), out,
				   sizeof(long), NULL), (ssize_t)n);
	for (i = 0; i < n; i++)
		cr_assert_eq(out[i], 2 * (long)i + 1);
	memset(out, 0, sizeof(out));
	cr_assert_eq(exchange_pmap(twice_plus_one, in, n, sizeof(long), out,
				   sizeof(long), &o), (ssize_t)n);
	for (i = 0; i < n; i++)
		cr_assert_eq(out[i], 2 * (long)i + 1);
	o.workers = 64;
	cr_assert_eq(exchange_pmap(twice_plus_one, in, 3, sizeof(long), out,
				   sizeof(long), &o), 3, "workers > n");
	cr_assert(no_children());
}

Test(pmap, bad_arguments)
{
	long x = 0;
	struct exchange_pmap_options o = { .workers = -1 };

	cr_assert_eq(exchange_pmap(NULL, &x, 1, sizeof(x), &x, sizeof(x),
				   NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap(twice_plus_one, &x, 1, sizeof(x), &x,
				   sizeof(x), &o), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_pmap(twice_plus_one, NULL, 0, sizeof(x), NULL,
				   sizeof(x), NULL), 0);
}

/* Kills its worker: a size check that let it run would show as lost
 * elements, or (with a batch too large for its redo list) a heap overflow. */
static int dies(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)out;
	(void)ctx;
	kill(getpid(), SIGKILL);
	return -1;
}

/* Elements of no bytes: every call gets the array's pointer itself. */
struct same_ptrs {
	const void *in;		/* expected input pointer */
	void *out;		/* expected output pointer */
};

static int same_pointers(const void *in, void *out, void *ctx)
{
	const struct same_ptrs *e = ctx;

	return in == e->in && out == e->out ? 0 : -1;
}

/* in_size and out_size 0 with a modest n work; each element's outcome is
 * its status alone. */
Test(pmap, zero_sizes_share_one_pointer, .timeout = 20)
{
	long x = 7, y = 9;
	struct exchange_outcome oc[5];
	struct same_ptrs e = { &x, &y };
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc,
					   .ctx = &e };
	size_t i;

	cr_assert_eq(exchange_pmap(same_pointers, &x, 5, 0, &y, 0, &o), 5);
	for (i = 0; i < 5; i++)
		cr_assert_eq(oc[i].cause, CHANNEL_OK, "element %zu", i);
	e.in = NULL;
	e.out = NULL;
	cr_assert_eq(exchange_pmap(same_pointers, NULL, 5, 0, NULL, 0, &o), 5);
	for (i = 0; i < 5; i++)
		cr_assert_eq(oc[i].cause, CHANNEL_OK, "element %zu", i);
	cr_assert_eq(x, 7);
	cr_assert_eq(y, 9);
	cr_assert(no_children());
}

/* Sizes no call can honour fail at once, before any worker is forked. */
static void pmap_refuses(size_t n, size_t in_size, size_t out_size,
			 struct exchange_outcome *oc, int err)
{
	static long buf[4];
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc };
	ssize_t r;

	hook_forks(0);
	errno = 0;
	r = exchange_pmap(dies, buf, n, in_size, buf, out_size, &o);
	unhook_forks();
	cr_assert_eq(r, -1, "n %zu, in_size %zu, out_size %zu: %zd", n,
		     in_size, out_size, r);
	cr_assert_eq(errno, err, "n %zu, in_size %zu, out_size %zu: errno %d",
		     n, in_size, out_size, errno);
	cr_assert_eq(forks, 0, "no worker was forked");
}

Test(pmap, zero_sizes_with_a_huge_n_are_refused, .timeout = 20)
{
	struct exchange_outcome oc[1];

	/* A count pmap could not return. */
	pmap_refuses(SIZE_MAX, 0, 0, NULL, EINVAL);
	pmap_refuses((size_t)SSIZE_MAX + 1, 0, 0, NULL, EINVAL);
	/* A redo list of n entries that no allocation can hold. */
	pmap_refuses(SIZE_MAX / sizeof(size_t) + 2, 0, 0, NULL, ENOMEM);
	/* An outcome array larger than any object. */
	pmap_refuses(PTRDIFF_MAX / sizeof(struct exchange_outcome) + 1, 0, 0,
		     oc, EINVAL);
	cr_assert(no_children());
}

Test(pmap, element_sizes_beyond_any_array_are_refused, .timeout = 20)
{
	pmap_refuses(1, 0, SIZE_MAX, NULL, EINVAL);
	pmap_refuses(0, 0, SIZE_MAX, NULL, EINVAL);
	pmap_refuses(1, SIZE_MAX, 0, NULL, EINVAL);
	pmap_refuses(1, SIZE_MAX, sizeof(long), NULL, EINVAL);
	pmap_refuses(1, (size_t)PTRDIFF_MAX + 1, sizeof(long), NULL, EINVAL);
	/* One element's reply (a status byte and the output) must fit in a
	 * channel's largest message. */
	pmap_refuses(1, sizeof(long), CHANNEL_MAX_DEFAULT, NULL, EINVAL);
	pmap_refuses(1, sizeof(long), (size_t)PTRDIFF_MAX, NULL, EINVAL);
	cr_assert(no_children());
}

Test(pmap, arrays_whose_size_overflows_are_refused, .timeout = 20)
{
	pmap_refuses(SIZE_MAX / sizeof(long) + 1, sizeof(long), sizeof(long),
		     NULL, EINVAL);
	pmap_refuses(2, SIZE_MAX / 2 + 1, sizeof(long), NULL, EINVAL);
	pmap_refuses(SIZE_MAX / 2 + 1, 0, 2, NULL, EINVAL);
	/* No wrap-around, but beyond the largest object. */
	pmap_refuses(2, (size_t)PTRDIFF_MAX / 2 + 1, sizeof(long), NULL,
		     EINVAL);
	pmap_refuses((size_t)PTRDIFF_MAX / 8 + 1, 0, 8, NULL, EINVAL);
	cr_assert(no_children());
}

/* 500 fails; 777 kills its worker; 901 aborts. */
static int fragile(const void *in, void *out, void *ctx)
{
	long v = *(const long *)in;

	(void)ctx;
	if (v == 500)
		return -1;
	if (v == 777)
		kill(getpid(), SIGKILL);
	if (v == 901)
		abort();
	*(long *)out = -v;
	return 0;
}

Test(pmap, failures_touch_only_their_elements, .timeout = 60)
{
	int fds = count_fds();
	size_t n = 5000, i;
	long *in = malloc(n * sizeof(long)), *out = calloc(n, sizeof(long));
	struct exchange_outcome *oc = calloc(n, sizeof(*oc));
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc };

	for (i = 0; i < n; i++)
		in[i] = (long)i;
	cr_assert_eq(exchange_pmap(fragile, in, n, sizeof(long), out,
				   sizeof(long), &o), (ssize_t)n - 3);
	for (i = 0; i < n; i++) {
		if (i == 500) {
			cr_assert_eq(oc[i].cause, CHANNEL_SENT_ERROR);
		} else if (i == 777) {
			cr_assert_eq(oc[i].cause, CHANNEL_SIGNALED);
			cr_assert_eq(oc[i].code, SIGKILL);
		} else if (i == 901) {
			cr_assert_eq(oc[i].cause, CHANNEL_SIGNALED);
			cr_assert_eq(oc[i].code, SIGABRT);
		} else {
			cr_assert_eq(oc[i].cause, CHANNEL_OK, "element %zu", i);
			cr_assert_eq(out[i], -(long)i);
		}
	}
	free(in);
	free(out);
	free(oc);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

static int hang_on_5(const void *in, void *out, void *ctx)
{
	(void)ctx;
	if (*(const long *)in == 5)
		for (;;)
			pause();
	*(long *)out = 1;
	return 0;
}

Test(pmap, time_limit_fails_the_slow_element, .timeout = 30)
{
	long in[20], out[20];
	struct exchange_outcome oc[20];
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc,
					   .time_limit_ms = 200 };
	size_t i;

	for (i = 0; i < 20; i++)
		in[i] = (long)i;
	cr_assert_eq(exchange_pmap(hang_on_5, in, 20, sizeof(long), out,
				   sizeof(long), &o), 19);
	for (i = 0; i < 20; i++)
		cr_assert_eq(oc[i].cause, i == 5 ? CHANNEL_TIMED_OUT
						 : CHANNEL_OK, "element %zu", i);
	cr_assert(no_children());
}

/* Element 3 ignores SIGTERM and hangs; element 4 cleans up on SIGTERM by
 * counting itself in a shared counter, then exits. */
static atomic_int *cleaned;

static void clean_up(int sig)
{
	(void)sig;
	atomic_fetch_add(cleaned, 1);
	_exit(0);
}

static int stubborn_3_tidy_4(const void *in, void *out, void *ctx)
{
	long v = *(const long *)in;

	(void)ctx;
	if (v == 3)
		signal(SIGTERM, SIG_IGN);
	if (v == 4)
		signal(SIGTERM, clean_up);
	if (v == 3 || v == 4)
		for (;;)
			pause();
	*(long *)out = v;
	return 0;
}

/* pmap's time limit is the exchange's policy: SIGTERM first, so that an
 * element can clean up, then SIGKILL for one that ignores it. */
Test(pmap, time_limit_is_sigterm_then_sigkill, .timeout = 30)
{
	long in[8], out[8];
	struct exchange_outcome oc[8];
	struct exchange_pmap_options o = { .workers = 2, .outcomes = oc,
					   .batch = 1, .time_limit_ms = 200 };
	size_t i;

	cleaned = shared_counter();
	for (i = 0; i < 8; i++)
		in[i] = (long)i;
	cr_assert_eq(exchange_pmap(stubborn_3_tidy_4, in, 8, sizeof(long),
				   out, sizeof(long), &o), 6);
	for (i = 0; i < 8; i++)
		cr_assert_eq(oc[i].cause, i == 3 || i == 4 ? CHANNEL_TIMED_OUT
						       : CHANNEL_OK,
			     "element %zu: cause %d", i, oc[i].cause);
	cr_assert_eq(atomic_load(cleaned), 1, "element 4 had its SIGTERM");
	munmap(cleaned, sizeof(*cleaned));
	cr_assert(no_children());
}

Test(pmap, no_worker_is_an_error, .timeout = 20)
{
	long in[4] = { 1, 2, 3, 4 }, out[4];

	hook_forks(1);
	errno = 0;
	cr_assert_eq(exchange_pmap(twice_plus_one, in, 4, sizeof(long), out,
				   sizeof(long), NULL), -1);
	cr_assert_eq(errno, EAGAIN);
	unhook_forks();
}

/* ------------------------------------------------------------------------ */
/* Cores                                                                    */
/* ------------------------------------------------------------------------ */

Test(cores, at_least_one_and_no_more_than_online)
{
	int n = exchange_cores();
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_geq(n, 1);
	if (online > 0)
		cr_assert_leq(n, online);
}

/* Waits for ever unless its argument is not 0. */
static void maybe_hang_fn(struct channel *ch, const void *arg, size_t len,
			  void *ctx)
{
	long v = *(const long *)arg;

	(void)len, (void)ctx;
	while (v == 0)
		pause();
	channel_send(ch, &v, sizeof(v), -1);
}

Test(reuse, time_limit_ends_a_task_and_a_fresh_worker_goes_on,
     .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .time_limit_ms = 100, .grace_ms = 100 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	long v[4] = { 1, 0, 2, 3 };
	size_t i;

	for (i = 0; i < 4; i++)
		cr_assert_eq(exchange_start(ex, maybe_hang_fn, &v[i],
					    sizeof(long), NULL), (ssize_t)i);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(exchange_map_get(ex, i, &m, -1), 1);
		if (i == 1) {
			cr_assert_eq(m.kind, CHANNEL_FAILURE);
			cr_assert_eq(m.cause, CHANNEL_TIMED_OUT);
			cr_assert_eq(m.code, 100);
		} else {
			cr_assert_eq(m.kind, CHANNEL_DATA);
			cr_assert_eq(*(long *)m.data, v[i]);
		}
	}
	exchange_free(ex);
	cr_assert(no_children());
}
