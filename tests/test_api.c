/*
 * test_api.c - the pprocess and process-pool calls built on the exchange:
 * Map slices, worker initialisers and recycling, idle workers that leave,
 * cancelling queued work, progress counts, ticks, the frames decoder, plain
 * functions without an exchange, exchanges made from channels and the
 * channels they hand back.
 *
 * Children report only through their channel or exit status; assertions
 * stay in the test body. Every wait is bounded (a timeout, or the test's
 * .timeout).
 */
#include "exchange.h"
#include "internal.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Forks through the hook, counted. */
static int forks;

static pid_t counted_fork(void)
{
	forks++;
	return fork();
}

static void count_forks(void)
{
	forks = 0;
	exchange_hooks.fork = counted_fork;
}

static void uncount_forks(void)
{
	exchange_hooks.fork = NULL;
}

/* A plain function: the square of a long. */
static void *square(const void *arg, size_t len, size_t *rlen, void *ctx)
{
	long *r = malloc(sizeof(*r));

	(void)len;
	(void)ctx;
	if (!r)
		return NULL;
	*r = *(const long *)arg * *(const long *)arg;
	*rlen = sizeof(*r);
	return r;
}

/* Sends its process id. */
static void send_pid(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	pid_t pid = getpid();

	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, &pid, sizeof(pid), -1);
}

/* Waits for a message from its parent (or end of stream), then sends its
 * argument back: a task that runs until the test lets it go. */
static void wait_then_echo(struct channel *ch, const void *arg, size_t len,
			   void *ctx)
{
	struct channel_msg m;

	(void)ctx;
	if (channel_recv(ch, &m, -1) == 1)
		channel_msg_free(&m);
	channel_send(ch, arg, len, -1);
}

/* ------------------------------------------------------------------------ */
/* Map slices                                                               */
/* ------------------------------------------------------------------------ */

Test(map_range, a_slice_in_task_order, .timeout = 30)
{
	struct exchange_options o = { .limit = 2 };
	int fds = count_fds();
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m[5], again;
	long i;

	cr_assert_not_null(ex);
	for (i = 0; i < 10; i++)
		cr_assert_eq(exchange_start_plain(ex, square, &i, sizeof(i),
						  NULL), i);
	cr_assert_eq(exchange_map_range(ex, 3, 5, m, 10000), 5);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(m[i].kind, CHANNEL_DATA);
		cr_assert_eq(m[i].task, (size_t)(3 + i));
		cr_assert_eq(*(long *)m[i].data, (3 + i) * (3 + i));
	}
	/* Lent: the map still has them. */
	cr_assert_eq(exchange_map_get(ex, 4, &again, 0), 1);
	cr_assert_eq(again.data, m[1].data);
	cr_assert_eq(exchange_map_range(ex, 10, 0, NULL, 0), 0);
	cr_assert_eq(exchange_map_range(ex, 8, 3, m, 0), -1);
	cr_assert_eq(errno, ERANGE);
	cr_assert_eq(exchange_map_range(ex, 11, 0, m, 0), -1);
	cr_assert_eq(errno, ERANGE);
	cr_assert_eq(exchange_map_range(ex, 0, 2, NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(map_range, take_range_hands_the_slice_over, .timeout = 30)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct exchange *q = exchange_new_queue(NULL);
	struct channel_msg m[3], again;
	long i;

	for (i = 0; i < 4; i++)
		exchange_start_plain(ex, square, &i, sizeof(i), NULL);
	cr_assert_eq(exchange_map_take_range(ex, 1, 3, m, 10000), 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(*(long *)m[i].data, (1 + i) * (1 + i));
		channel_msg_free(&m[i]);	/* ours */
	}
	cr_assert_eq(exchange_map_get(ex, 2, &again, 0), 1);
	cr_assert_eq(again.kind, CHANNEL_DATA, "the outcome is kept");
	cr_assert_null(again.data, "its data went with the take");
	cr_assert_eq(exchange_map_get(ex, 0, &again, 10000), 1);
	cr_assert_eq(*(long *)again.data, 0);
	cr_assert_eq(exchange_map_range(q, 0, 0, m, 0), -1);
	cr_assert_eq(errno, EINVAL, "a queue has no slices");
	exchange_free(ex);
	exchange_free(q);
	cr_assert(no_children());
}

/* A slice with one task still running times out and hands nothing over:
 * the outcomes that had arrived are all there for the next try. */
Test(map_range, a_slice_not_complete_times_out_whole, .timeout = 30)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct channel_msg m[3];
	size_t i;

	cr_assert_eq(exchange_start(ex, wait_then_echo, "a", 1, NULL), 0);
	cr_assert_eq(exchange_start(ex, send_pid, NULL, 0, NULL), 1);
	cr_assert_eq(exchange_start(ex, send_pid, NULL, 0, NULL), 2);
	cr_assert_eq(exchange_map_get(ex, 2, &m[0], 10000), 1);
	memset(m, 0, sizeof(m));
	cr_assert_eq(exchange_map_take_range(ex, 0, 3, m, 50), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	for (i = 0; i < 3; i++)
		cr_assert_null(m[i].data, "nothing filled");
	/* Task 0 is running; task 1 may be too, until its end is seen. */
	cr_assert_geq(exchange_broadcast(ex, "go", 2, 5000), 1);
	cr_assert_eq(exchange_map_take_range(ex, 0, 3, m, 10000), 3);
	cr_assert_str_eq(m[0].data, "a");
	cr_assert_eq(m[1].len, sizeof(pid_t));
	cr_assert_eq(m[2].len, sizeof(pid_t));
	for (i = 0; i < 3; i++)
		channel_msg_free(&m[i]);
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Worker initialisers and recycling                                        */
/* ------------------------------------------------------------------------ */

/* What the initialiser sets in the child, and where it reports each run:
 * one byte on a pipe the children inherit. */
struct init_ctx {
	int fd;			/* the write end of the pipe */
	int value;		/* what init sets */
	int fail;		/* an errno to fail with, or 0 */
};

static int init_value;		/* 0 in the parent; set by init in a child */

static int init_fn(void *ctx)
{
	struct init_ctx *ic = ctx;

	if (write(ic->fd, "i", 1) != 1)
		return -1;
	if (ic->fail) {
		errno = ic->fail;
		return -1;
	}
	init_value = ic->value;
	return 0;
}

/* Sends its pid and what init set. */
static void send_pid_and_init(struct channel *ch, const void *arg, size_t len,
			      void *ctx)
{
	int v[2] = { (int)getpid(), init_value };

	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, v, sizeof(v), -1);
}

/* Reads what is on the pipe without waiting: the number of init runs. */
static int init_runs(int fd)
{
	char buf[256];
	ssize_t n = read(fd, buf, sizeof(buf));

	return n < 0 ? 0 : (int)n;
}

static void check_init(bool reuse, int limit, int ntasks)
{
	int p[2];
	struct init_ctx ic = { .value = 42 };
	struct exchange_options o = { .reuse = reuse, .limit = limit,
				      .init = init_fn, .init_ctx = &ic };
	struct exchange *ex;
	struct channel_msg m;
	int i, fds = count_fds();

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	ic.fd = p[1];
	ex = exchange_new_map(&o);
	count_forks();
	for (i = 0; i < ntasks; i++)
		cr_assert_eq(exchange_start(ex, send_pid_and_init, NULL, 0,
					    NULL), i);
	for (i = 0; i < ntasks; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, 10000), 1);
		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_eq(((int *)m.data)[1], 42, "init ran first");
	}
	cr_assert_eq(exchange_finish(ex), 0);
	uncount_forks();
	cr_assert_eq(init_runs(p[0]), forks, "once per process");
	if (reuse)
		cr_assert_leq(forks, limit);
	else
		cr_assert_eq(forks, ntasks);
	cr_assert_eq(init_value, 0, "never in the parent");
	exchange_free(ex);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(pool, init_runs_once_per_reuse_worker, .timeout = 30)
{
	check_init(true, 2, 12);
}

Test(pool, init_runs_in_each_forked_task, .timeout = 30)
{
	check_init(false, 2, 4);
}

/* An initialiser that fails: every task gets the error as its outcome,
 * each on a fresh process. */
Test(pool, a_failing_init_is_each_task_s_error, .timeout = 30)
{
	int p[2];
	struct init_ctx ic = { .fail = EPERM };
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .init = init_fn, .init_ctx = &ic };
	struct exchange *ex;
	struct channel_msg m;
	char want[128];
	int i;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	ic.fd = p[1];
	ex = exchange_new_map(&o);
	for (i = 0; i < 3; i++)
		exchange_start(ex, send_pid_and_init, NULL, 0, NULL);
	snprintf(want, sizeof(want), "initializer failed: %s",
		 strerror(EPERM));
	for (i = 0; i < 3; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, 10000), 1);
		cr_assert_eq(m.kind, CHANNEL_ERROR);
		cr_assert_str_eq(m.data, want);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(init_runs(p[0]), 3);
	exchange_free(ex);
	close(p[0]);
	close(p[1]);
	cr_assert(no_children());
}

/* maxtasksperchild: a worker takes max_tasks tasks, then a fresh one takes
 * the next; the outcomes are what they would be without it. */
Test(pool, a_worker_is_recycled_after_max_tasks, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .max_tasks = 2 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	pid_t pid[7];
	int i, fds = count_fds();

	count_forks();
	for (i = 0; i < 7; i++)
		cr_assert_eq(exchange_start(ex, send_pid, NULL, 0, NULL), i);
	for (i = 0; i < 7; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, 10000), 1);
		cr_assert_eq(m.kind, CHANNEL_DATA);
		pid[i] = *(pid_t *)m.data;
	}
	cr_assert_eq(exchange_finish(ex), 0);
	uncount_forks();
	cr_assert_eq(forks, 4, "7 tasks, 2 per worker");
	for (i = 0; i < 7; i++) {
		if (i % 2)
			cr_assert_eq(pid[i], pid[i - 1], "task %d", i);
		else if (i)
			cr_assert_neq(pid[i], pid[i - 1], "task %d", i);
	}
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Idle reuse workers                                                       */
/* ------------------------------------------------------------------------ */

/* One task on a map, its outcome waited for: the worker's pid. */
static pid_t run_one_task(struct exchange *ex)
{
	struct channel_msg m;
	ssize_t t = exchange_start(ex, send_pid, NULL, 0, NULL);

	cr_assert_geq(t, 0);
	cr_assert_eq(exchange_map_get(ex, (size_t)t, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	return *(pid_t *)m.data;
}

/* Stores until no channel is left, for at most 10 s. */
static bool store_until_empty(struct exchange *ex)
{
	int64_t end = clock_now_ms() + 10000;

	while (exchange_active(ex, NULL, 0) > 0) {
		if (clock_now_ms() > end)
			return false;
		cr_assert_geq(exchange_store(ex, 20), 0);
		poll(NULL, 0, 5);
	}
	return true;
}

/* By default an idle worker stays: a loop that submits and waits one task
 * at a time runs every task on one process. */
Test(idle, a_worker_waits_for_the_next_task_by_default, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1 };
	struct exchange *ex = exchange_new_map(&o);
	pid_t first;
	int i;

	count_forks();
	first = run_one_task(ex);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(exchange_store(ex, 0), 0);
		cr_assert_eq(exchange_active(ex, NULL, 0), 1, "it stays");
		cr_assert_eq(run_one_task(ex), first);
	}
	uncount_forks();
	cr_assert_eq(forks, 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(exchange_active(ex, NULL, 0), 0, "finish sends it away");
	exchange_free(ex);
	cr_assert(no_children());
}

/* With idle_ms a worker left without work leaves, its process reaped; the
 * next task gets a fresh worker. */
Test(idle, a_worker_idle_for_idle_ms_leaves, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .idle_ms = 30 };
	struct exchange *ex = exchange_new_map(&o);
	int fds = count_fds();
	pid_t first, second;

	first = run_one_task(ex);
	cr_assert(store_until_empty(ex), "the idle worker left");
	cr_assert(reaped(first), "and was reaped");
	second = run_one_task(ex);
	cr_assert_neq(second, first);
	cr_assert(store_until_empty(ex));
	cr_assert(reaped(second));
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* A worker given work within idle_ms keeps going. */
Test(idle, a_worker_given_work_in_time_stays, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .idle_ms = 600000 };
	struct exchange *ex = exchange_new_map(&o);
	pid_t first = run_one_task(ex);

	cr_assert_eq(run_one_task(ex), first);
	cr_assert_eq(run_one_task(ex), first);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_null(exchange_new(&(struct exchange_options){ .idle_ms = -1 }));
	cr_assert_eq(errno, EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Cancelling and progress                                                  */
/* ------------------------------------------------------------------------ */

/* With limit 1 and the first task held, the others wait in the queue: one
 * of them cancelled has its NOT_STARTED outcome, the rest run. */
Test(cancel, a_queued_task_is_cancelled, .timeout = 30)
{
	struct exchange_options o = { .limit = 1 };
	struct exchange *ex = exchange_new_map(&o);
	struct exchange_counts p;
	struct channel_msg m;
	int fds = count_fds();

	count_forks();
	cr_assert_eq(exchange_start(ex, wait_then_echo, "a", 1, NULL), 0);
	cr_assert_eq(exchange_start(ex, wait_then_echo, "b", 1, NULL), 1);
	cr_assert_eq(exchange_start(ex, wait_then_echo, "c", 1, NULL), 2);
	cr_assert_eq(exchange_progress(ex, &p), 0);
	cr_assert_eq(p.queued, 2);
	cr_assert_eq(p.running, 1);
	cr_assert_eq(p.finished, 0);
	cr_assert_eq(exchange_cancel(ex, 1), 0);
	cr_assert_eq(exchange_progress(ex, &p), 0);
	cr_assert_eq(p.queued, 1);
	cr_assert_eq(p.finished, 1, "a cancelled task has its outcome");
	cr_assert_eq(exchange_cancel(ex, 0), -1);
	cr_assert_eq(errno, EBUSY, "a running task is not cancelled");
	cr_assert_eq(exchange_cancel(ex, 1), -1);
	cr_assert_eq(errno, EALREADY);
	cr_assert_eq(exchange_cancel(ex, 3), -1);
	cr_assert_eq(errno, ERANGE);
	cr_assert_eq(exchange_cancel(NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_map_get(ex, 1, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.cause, CHANNEL_NOT_STARTED);
	cr_assert_eq(m.code, ECANCELED);
	cr_assert_eq(exchange_broadcast(ex, "go", 2, 5000), 1);
	cr_assert_eq(exchange_map_get(ex, 0, &m, 10000), 1);
	cr_assert_str_eq(m.data, "a");
	/* Task 2 runs once task 0's place is free: then it is the only
	 * one the broadcast reaches. */
	do {
		cr_assert_geq(exchange_store(ex, 10), 0);
		cr_assert_eq(exchange_progress(ex, &p), 0);
	} while (p.queued > 0);
	cr_assert_eq(p.running, 1);
	cr_assert_eq(exchange_broadcast(ex, "go", 2, 5000), 1);
	cr_assert_eq(exchange_map_get(ex, 2, &m, 10000), 1);
	cr_assert_str_eq(m.data, "c");
	cr_assert_eq(exchange_finish(ex), 0);
	uncount_forks();
	cr_assert_eq(forks, 2, "the cancelled task never forked");
	cr_assert_eq(exchange_progress(ex, &p), 0);
	cr_assert_eq(p.queued + p.running, 0);
	cr_assert_eq(p.finished, 3);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Cancelling in reuse mode: the worker takes the next task, not the
 * cancelled one. */
Test(cancel, a_queued_task_of_a_reuse_worker_is_cancelled, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 1 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	long i;

	for (i = 0; i < 4; i++)
		exchange_start_plain(ex, square, &i, sizeof(i), NULL);
	cr_assert_eq(exchange_cancel(ex, 2), 0);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(exchange_map_get(ex, (size_t)i, &m, 10000), 1);
		if (i == 2) {
			cr_assert_eq(m.cause, CHANNEL_NOT_STARTED);
			cr_assert_eq(m.code, ECANCELED);
		} else {
			cr_assert_eq(m.kind, CHANNEL_DATA);
			cr_assert_eq(*(long *)m.data, i * i);
		}
	}
	exchange_free(ex);
	cr_assert(no_children());
}

/* What the progress callback saw: every call's counts, in order. */
struct seen {
	struct exchange_counts p[256];
	int n;
};

static void on_progress(struct exchange *ex, const struct exchange_counts *p,
			void *udata)
{
	struct seen *seen = udata;

	(void)ex;
	if (seen->n < 256)
		seen->p[seen->n++] = *p;
}

Test(progress, the_callback_sees_every_change, .timeout = 30)
{
	struct seen seen = { .n = 0 };
	struct exchange_options o = { .limit = 2, .progress = on_progress,
				      .udata = &seen };
	struct exchange *ex = exchange_new(&o);
	long i;
	int k;

	for (i = 0; i < 6; i++)
		exchange_start_plain(ex, square, &i, sizeof(i), NULL);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_geq(seen.n, 1);
	for (k = 0; k < seen.n; k++) {
		cr_assert_eq(seen.p[k].queued + seen.p[k].running +
			     seen.p[k].finished, 6);
		cr_assert_leq(seen.p[k].running, 2);
		if (k) {
			cr_assert_geq(seen.p[k].finished, seen.p[k - 1].finished);
			cr_assert(seen.p[k].queued != seen.p[k - 1].queued ||
				  seen.p[k].running != seen.p[k - 1].running ||
				  seen.p[k].finished != seen.p[k - 1].finished,
				  "called only on a change");
		}
	}
	cr_assert_eq(seen.p[seen.n - 1].finished, 6);
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Ticks                                                                    */
/* ------------------------------------------------------------------------ */

/* With a tick, a store that would wait for ever returns 0 at each tick
 * while the one child sends nothing; the message it sends later is
 * delivered as ever. */
static int count_calls(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		(*(int *)udata)++;
		channel_msg_free(&m);
	}
	return 0;
}

Test(tick, store_returns_at_every_tick, .timeout = 30)
{
	int got = 0, ticks;
	struct exchange_options o = { .tick_ms = 20, .store_data = count_calls,
				      .udata = &got };
	struct exchange *ex = exchange_new(&o);

	cr_assert_geq(exchange_start(ex, wait_then_echo, "x", 1, NULL), 0);
	for (ticks = 0; ticks < 5; ticks++)
		cr_assert_eq(exchange_store(ex, -1), 0, "a tick");
	cr_assert_eq(exchange_ready(ex, NULL, 0, -1), 0, "ready ticks too");
	cr_assert_eq(exchange_broadcast(ex, "go", 2, 5000), 1);
	while (got == 0)
		cr_assert_geq(exchange_store(ex, -1), 0);
	cr_assert_eq(got, 1);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_null(exchange_new(&(struct exchange_options){ .tick_ms = -5 }));
	cr_assert_eq(errno, EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Decoding flushed frames                                                  */
/* ------------------------------------------------------------------------ */

static void send_three(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, "one", 3, -1);
	channel_send(ch, "", 0, -1);
	channel_send_error(ch, "three went wrong", -1);
}

Test(frames, flushed_messages_are_read_without_a_channel, .timeout = 30)
{
	struct channel *ch = channel_start(send_three, NULL, 0, NULL);
	struct channel_msg m;
	void *frames = NULL;
	size_t len = 0, off = 0, cut;
	int64_t end = clock_now_ms() + 10000;
	ssize_t n = 0;

	cr_assert_not_null(ch);
	/* Flush until end of stream: the three messages, in order. */
	while (channel_active(ch) && clock_now_ms() < end) {
		void *more;
		size_t mlen;
		ssize_t k = channel_flush(ch, &more, &mlen, 100);

		cr_assert_geq(k, 0);
		frames = realloc(frames, len + mlen + 1);
		cr_assert_not_null(frames);
		if (mlen)
			memcpy((char *)frames + len, more, mlen);
		free(more);
		len += mlen;
		n += k;
	}
	cr_assert_eq(n, 3);
	cr_assert_eq(channel_push_failure(ch, CHANNEL_SIGNALED, 9, "killed"), 0);
	{
		void *more;
		size_t mlen;

		cr_assert_eq(channel_flush(ch, &more, &mlen, 0), 1,
			     "a recorded failure flushes too");
		frames = realloc(frames, len + mlen);
		memcpy((char *)frames + len, more, mlen);
		free(more);
		len += mlen;
	}
	cr_assert_eq(channel_close(ch), 0);

	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_eq(m.len, 3);
	cr_assert_str_eq(m.data, "one");
	cr_assert_eq(m.task, CHANNEL_NO_TASK);
	channel_msg_free(&m);
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_eq(m.len, 0);
	cr_assert_str_eq(m.data, "", "NUL-terminated, even empty");
	channel_msg_free(&m);
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	cr_assert_eq(m.cause, CHANNEL_SENT_ERROR);
	cr_assert_str_eq(m.data, "three went wrong");
	channel_msg_free(&m);
	cut = off;
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.cause, CHANNEL_SIGNALED);
	cr_assert_eq(m.code, 9);
	cr_assert_str_eq(m.data, "killed");
	channel_msg_free(&m);
	cr_assert_eq(off, len);
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 0);

	/* A frame cut short, garbage, bad arguments. */
	off = cut;
	cr_assert_eq(channel_frames_next(frames, len - 1, &off, &m), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(off, cut, "left where it was");
	cr_assert_eq(channel_frames_next(frames, cut + 5, &off, &m), -1);
	cr_assert_eq(errno, EPROTO, "a header cut short");
	off = 1;
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), -1);
	cr_assert_eq(errno, EPROTO);
	off = len + 1;
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_frames_next(NULL, 0, NULL, &m), -1);
	cr_assert_eq(errno, EINVAL);
	off = 0;
	cr_assert_eq(channel_frames_next(NULL, 0, &off, &m), 0);
	free(frames);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* MakeParallel without an exchange; exchanges made of channels            */
/* ------------------------------------------------------------------------ */

/* Fails with ENOENT for a negative number. */
static void *square_or_fail(const void *arg, size_t len, size_t *rlen,
			    void *ctx)
{
	if (*(const long *)arg < 0) {
		errno = ENOENT;
		return NULL;
	}
	return square(arg, len, rlen, ctx);
}

Test(plain, channel_start_plain_sends_the_result, .timeout = 30)
{
	long x = 12, bad = -1;
	int fds = count_fds();
	struct channel *ch = channel_start_plain(square_or_fail, &x, sizeof(x),
						 NULL);
	struct channel *fail = channel_start_plain(square_or_fail, &bad,
						   sizeof(bad), NULL);
	struct channel_msg m;
	int st;

	cr_assert_not_null(ch);
	cr_assert_not_null(fail);
	cr_assert_eq(channel_recv(ch, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_eq(*(long *)m.data, 144);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 10000), 0, "then end of stream");
	cr_assert_eq(channel_recv(fail, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	cr_assert_str_eq(m.data, strerror(ENOENT));
	channel_msg_free(&m);
	cr_assert_eq(channel_wait(ch, 10000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert_eq(channel_close(fail), 0);
	cr_assert_null(channel_start_plain(NULL, &x, sizeof(x), NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(channel_start_plain(square, NULL, 4, NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* The value a plain function's channel carries, as store_data sees it. */
static int sum_longs(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_DATA)
			*(long *)udata += *(long *)m.data;
		channel_msg_free(&m);
	}
	return 0;
}

/* pprocess Exchange(channels, autoclose=False): the channels are polled
 * from the start, and once ended they are handed back, in the removed
 * list, for the caller to close. */
Test(with_channels, an_exchange_of_channels_hands_them_back, .timeout = 30)
{
	long sum = 0, v[3] = { 1, 2, 3 };
	struct exchange_options o = { .keep_removed = true,
				      .store_data = sum_longs, .udata = &sum };
	struct channel *chs[3], *back[3] = { NULL, NULL, NULL }, *r;
	struct exchange *ex;
	int i, k, n = 0, fds = count_fds();

	for (i = 0; i < 3; i++) {
		chs[i] = channel_start_plain(square, &v[i], sizeof(v[i]), NULL);
		cr_assert_not_null(chs[i]);
	}
	ex = exchange_new_with(&o, chs, 3);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_active(ex, NULL, 0), 3);
	cr_assert_null(exchange_take_removed(ex), "none ended yet taken");
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(sum, 1 + 4 + 9);
	while ((r = exchange_take_removed(ex)) != NULL) {
		cr_assert_lt(n, 3);
		back[n++] = r;
	}
	cr_assert_eq(n, 3, "every channel handed back");
	for (i = 0; i < 3; i++) {
		for (k = 0; k < 3 && back[k] != chs[i]; k++)
			;
		cr_assert_lt(k, 3, "channel %d is in the list", i);
		cr_assert_eq(channel_close(chs[i]), 0, "ours, open");
	}
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Without keep_removed the exchange closes them, and lists none. */
Test(with_channels, closed_channels_are_not_listed, .timeout = 30)
{
	long v = 5, sum = 0;
	struct exchange_options o = { .store_data = sum_longs, .udata = &sum };
	struct channel *chs[2];
	struct exchange *ex;
	int fds = count_fds();

	chs[0] = channel_start_plain(square, &v, sizeof(v), NULL);
	chs[1] = channel_start_plain(square, &v, sizeof(v), NULL);
	ex = exchange_new_with(&o, chs, 2);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(sum, 50);
	cr_assert_null(exchange_take_removed(ex));
	exchange_free(ex);
	cr_assert_null(exchange_new_with(NULL, NULL, 1));
	cr_assert_eq(errno, EINVAL);
	/* A failure closes the channels it was given. */
	chs[0] = channel_start_plain(square, &v, sizeof(v), NULL);
	chs[1] = channel_start_plain(square, &v, sizeof(v), NULL);
	cr_assert_null(exchange_new_with(&(struct exchange_options){
					 .limit = -1 }, chs, 2));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}
