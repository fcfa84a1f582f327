/*
 * test_exchange.c - many channels in one poll loop: add, remove, ready,
 * store, limits, continuous mode, store_data that talks back or starts
 * work, broadcast, Map and Queue.
 *
 * Children report only through their channel or exit status; assertions
 * stay in the test body. Where a test must know how many children run at
 * once, the children count themselves in a page of shared memory (mapped
 * from /dev/zero), which only ever undercounts: a child leaves the count
 * just before it exits.
 */
#include "exchange.h"
#include "internal.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Counters shared between the test and its children. */
struct shared {
	atomic_int running;	/* children inside their function */
	atomic_int most;	/* the highest value running reached */
	atomic_int calls;	/* function calls so far */
};

static struct shared *shared_new(void)
{
	int fd = open("/dev/zero", O_RDWR);
	void *p;

	cr_assert_geq(fd, 0);
	p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
		 MAP_SHARED, fd, 0);
	close(fd);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

static void shared_free(struct shared *sh)
{
	munmap(sh, sizeof(*sh));
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Sends back the size_t argument squared. */
static void square_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	size_t v = *(const size_t *)arg;

	(void)len, (void)ctx;
	v *= v;
	channel_send(ch, &v, sizeof(v), -1);
}

/* Counts itself in the shared page while it runs for a moment, then sends
 * its argument back. */
static void counted_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	struct shared *sh = ctx;
	int now = atomic_fetch_add(&sh->running, 1) + 1;
	int most = atomic_load(&sh->most);

	while (now > most && !atomic_compare_exchange_weak(&sh->most, &most,
							     now))
		;
	atomic_fetch_add(&sh->calls, 1);
	pause_ms(1);
	atomic_fetch_sub(&sh->running, 1);
	channel_send(ch, arg, len, -1);
}

/* store_data that receives one message and counts it. */
struct tally {
	int messages;		/* DATA messages */
	int errors;		/* ERROR messages */
	int failures;		/* FAILURE messages */
	size_t most_active;	/* most channels seen active at a call */
	size_t sum;		/* sum of size_t payloads */
	struct channel_msg last; /* the last FAILURE or ERROR, kept */
};

static int tally_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct tally *t = udata;
	struct channel_msg m;
	size_t active = exchange_active(ex, NULL, 0);

	if (active > t->most_active)
		t->most_active = active;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.kind == CHANNEL_DATA) {
		t->messages++;
		if (m.len == sizeof(size_t))
			t->sum += *(size_t *)m.data;
		channel_msg_free(&m);
		return 0;
	}
	if (m.kind == CHANNEL_ERROR)
		t->errors++;
	else
		t->failures++;
	channel_msg_free(&t->last);
	t->last = m;
	return 0;
}

Test(exchange, options_are_checked)
{
	struct exchange_options o = { .limit = -1 };

	errno = 0;
	cr_assert_null(exchange_new(&o));
	cr_assert_eq(errno, EINVAL);
	o.limit = 0;
	o.time_limit_ms = -5;
	cr_assert_null(exchange_new(&o));
	cr_assert_eq(errno, EINVAL);
	o.time_limit_ms = 0;
	o.store_data = tally_store;
	cr_assert_null(exchange_new_map(&o));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_new_queue(&o));
	cr_assert_eq(errno, EINVAL);
	exchange_free(NULL);
}

Test(exchange, empty_exchange_is_finished)
{
	struct exchange *ex = exchange_new(NULL);

	cr_assert_not_null(ex);
	cr_assert_not(exchange_unfinished(ex));
	cr_assert_not(exchange_busy(ex));
	cr_assert_eq(exchange_active(ex, NULL, 0), 0);
	cr_assert_eq(exchange_store(ex, 0), 0);
	cr_assert_eq(exchange_store(ex, -1), 0, "nothing to wait for");
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(exchange_wait(ex), 0);
	exchange_free(ex);
}

Test(exchange, add_remove_active_and_errors, .timeout = 10)
{
	int fds = count_fds();
	struct exchange *ex = exchange_new(NULL);
	struct channel *a = channel_start(square_fn, &(size_t){ 3 },
					  sizeof(size_t), NULL);
	struct channel *b = channel_start(square_fn, &(size_t){ 4 },
					  sizeof(size_t), NULL);
	struct channel *list[4];
	pid_t pa = channel_pid(a), pb = channel_pid(b);

	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_eq(exchange_add(ex, a), 0, "the first task number");
	cr_assert_eq(exchange_add(ex, a), -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_eq(exchange_add(ex, b), 1, "the next task number");
	cr_assert_eq(exchange_active(ex, list, 4), 2);
	cr_assert((list[0] == a && list[1] == b) ||
		  (list[0] == b && list[1] == a));
	cr_assert(exchange_unfinished(ex));
	cr_assert_eq(exchange_remove(ex, b), 0);
	cr_assert(reaped(pb), "remove closes and reaps");
	{
		/* A channel the exchange does not hold. */
		struct channel *c = channel_start(square_fn, &(size_t){ 5 },
						  sizeof(size_t), NULL);

		cr_assert_not_null(c);
		cr_assert_eq(exchange_remove(ex, c), -1);
		cr_assert_eq(errno, ENOENT);
		cr_assert_eq(channel_close(c), 0);
	}
	cr_assert_eq(exchange_active(ex, list, 4), 1);
	cr_assert_eq(list[0], a);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(exchange_active(ex, NULL, 0), 0);
	cr_assert(reaped(pa), "a finished channel is removed and reaped");
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(exchange, store_calls_store_data_with_task_numbers, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t i, expect = 0;

	for (i = 0; i < 20; i++) {
		cr_assert_eq(exchange_start(ex, square_fn, &i, sizeof(i), NULL),
			     (ssize_t)i);
		expect += i * i;
	}
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 20);
	cr_assert_eq(t.sum, expect);
	cr_assert_eq(t.failures, 0);
	exchange_free(ex);
	cr_assert(no_children());
}

/* With no_stdio_flush nothing flushes stdio around the forks: what the
 * caller had buffered is still in its buffer after the tasks have run,
 * and is written once, by the caller (the children drop their copies). */
Test(exchange, no_stdio_flush_leaves_the_callers_buffer_to_it, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 2, .store_data = tally_store,
				      .udata = &t, .no_stdio_flush = true };
	FILE *f = tmpfile();
	char buf[64] = { 0 };
	struct exchange *ex;
	struct stat sb;
	size_t i, expect = 0, got;

	cr_assert_not_null(f);
	cr_assert_eq(setvbuf(f, NULL, _IOFBF, BUFSIZ), 0);
	fputs("before the forks", f);	/* still in f's buffer */
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < 6; i++) {
		cr_assert_eq(exchange_start(ex, square_fn, &i, sizeof(i), NULL),
			     (ssize_t)i);
		expect += i * i;
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert_eq(fstat(fileno(f), &sb), 0);
	fflush(f);
	rewind(f);
	got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	cr_assert_eq(t.messages, 6);
	cr_assert_eq(t.sum, expect);
	cr_assert(no_children());
	/* Under valgrind every process runs the C library's clean-up as it
	 * ends, _exit included (--run-libc-freeres), and that flushes every
	 * stream: there the children write their copies. */
	if (slow_run())
		return;
	cr_assert_eq(sb.st_size, 0, "no one flushed the caller's stream");
	cr_assert_eq(got, 16);
	cr_assert_str_eq(buf, "before the forks");
}

/* The parent's view of limits: never more channels than the limit; the
 * children's view: never more of them running at once. */
static void run_limit(int limit, int tasks)
{
	int fds = count_fds();
	struct shared *sh = shared_new();
	struct tally t = { 0 };
	struct exchange_options o = { .limit = limit,
				      .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t i, expect = 0;

	cr_assert_not_null(ex);
	for (i = 0; i < (size_t)tasks; i++) {
		cr_assert_eq(exchange_start(ex, counted_fn, &i, sizeof(i), sh),
			     (ssize_t)i);
		cr_assert_leq(exchange_active(ex, NULL, 0), (size_t)limit);
		expect += i;
	}
	cr_assert(exchange_busy(ex));
	cr_assert_eq(exchange_wait(ex), 0);
	cr_assert_not(exchange_busy(ex));
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, tasks);
	cr_assert_eq(t.failures, 0);
	cr_assert_eq(t.sum, expect, "every task's argument came back once");
	cr_assert_leq(t.most_active, (size_t)limit);
	cr_assert_leq(atomic_load(&sh->most), limit);
	cr_assert_geq(atomic_load(&sh->most), 1);
	cr_assert_eq(atomic_load(&sh->calls), tasks);
	exchange_free(ex);
	shared_free(sh);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Under valgrind a fork costs a tenth of a second or more: fewer tasks. */
Test(exchange, limit_1_with_500_tasks, .timeout = 120)
{
	run_limit(1, slow_run() ? 150 : 500);
}

Test(exchange, limit_2_with_500_tasks, .timeout = 120)
{
	run_limit(2, slow_run() ? 150 : 500);
}

Test(exchange, limit_64_with_500_tasks, .timeout = 120)
{
	run_limit(64, slow_run() ? 150 : 500);
}

/* Records the order in which store_data saw the size_t payloads. */
struct order {
	size_t seen[64];	/* payloads in arrival order */
	size_t n;		/* how many */
};

static int order_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct order *o = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_DATA && o->n < 64)
			o->seen[o->n++] = *(size_t *)m.data;
		channel_msg_free(&m);
	}
	return 0;
}

static void echo_size_fn(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	(void)ctx;
	channel_send(ch, arg, len, -1);
}

Test(exchange, queued_work_starts_in_start_order, .timeout = 20)
{
	struct order ord = { .n = 0 };
	struct exchange_options o = { .limit = 1, .store_data = order_store,
				      .udata = &ord };
	struct exchange *ex = exchange_new(&o);
	size_t i;

	for (i = 0; i < 30; i++) {
		size_t v = i * 10;

		cr_assert_geq(exchange_start(ex, echo_size_fn, &v, sizeof(v),
					     NULL), 0);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(ord.n, 30);
	for (i = 0; i < 30; i++)
		cr_assert_eq(ord.seen[i], i * 10,
			     "the argument was copied when queued");
	exchange_free(ex);
}

/* Sends back its argument's length and whether every byte is the pattern
 * of message len. */
static void check_pattern_fn(struct channel *ch, const void *arg, size_t len,
			     void *ctx)
{
	const unsigned char *p = arg;
	size_t reply[2] = { len, 1 }, i;

	(void)ctx;
	for (i = 0; i < len; i++)
		if (p[i] != pattern_byte(len, i))
			reply[1] = 0;
	channel_send(ch, reply, sizeof(reply), -1);
}

static int pattern_store(struct exchange *ex, struct channel *ch, void *udata)
{
	size_t *whole = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_DATA && m.len == 2 * sizeof(size_t) &&
		    ((size_t *)m.data)[1] == 1)
			(*whole)++;
		channel_msg_free(&m);
	}
	return 0;
}

/* Queued arguments are kept in memory a child does not inherit, and go to
 * the child in a copy: on the stack, from malloc, or alone in a block of
 * their own; each arrives whole, fork per task, reuse and retry alike. */
Test(exchange, queued_arguments_of_every_size_arrive_whole, .timeout = 60)
{
	static const size_t sizes[] = { 0, 1, 255, 256, 257, 4000, 16384,
					20000, 70000, 300000 };
	size_t n = sizeof(sizes) / sizeof(sizes[0]), i, mode;

	for (mode = 0; mode < 3; mode++) {
		size_t whole = 0;
		struct exchange_options o = {
			.limit = 1, .store_data = pattern_store,
			.udata = &whole, .reuse = mode == 1,
			.policy = mode == 2 ? EXCHANGE_RETRY : EXCHANGE_KEEP_GOING,
			.retries = mode == 2 ? 1 : 0,
		};
		struct exchange *ex = exchange_new(&o);

		cr_assert_not_null(ex);
		for (i = 0; i < n; i++) {
			unsigned char *a = malloc(sizes[i] + 1);
			size_t k;

			cr_assert_not_null(a);
			for (k = 0; k < sizes[i]; k++)
				a[k] = pattern_byte(sizes[i], k);
			cr_assert_geq(exchange_start(ex, check_pattern_fn, a,
						     sizes[i], NULL), 0);
			/* The exchange has its own copy. */
			memset(a, 0, sizes[i] + 1);
			free(a);
		}
		cr_assert_eq(exchange_finish(ex), 0);
		cr_assert_eq(whole, n, "mode %zu: %zu of %zu arguments whole",
			     mode, whole, n);
		exchange_free(ex);
	}
}

/* The resident anonymous memory of this process in KiB (Linux's
 * /proc/self/status), or -1 where there is none. */
static long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void report_rss_fn(struct channel *ch, const void *arg, size_t len,
			  void *ctx)
{
	long kib = rss_anon_kib();

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, &kib, sizeof(kib), -1);
}

static void nothing_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
}

struct rss_seen {
	long child;		/* the reporting child's RssAnon, or -2 */
	long parent;		/* the parent's, as the report came in */
};

static int rss_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct rss_seen *r = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_DATA && m.len == sizeof(long)) {
			memcpy(&r->child, m.data, sizeof(long));
			r->parent = rss_anon_kib();
		}
		channel_msg_free(&m);
	}
	return 0;
}

/* A fork copies the page table entries of all the parent has written,
 * and a long queue is many pages that no child reads: they are not
 * inherited (Linux: MADV_DONTFORK), so a child forked while 40,000 tasks
 * are queued is about 4 MiB smaller than its parent. */
Test(exchange, children_do_not_inherit_the_queue, .timeout = 60)
{
	struct rss_seen seen = { .child = -2, .parent = -2 };
	struct exchange_options o = { .limit = 1, .store_data = rss_store,
				      .udata = &seen };
	struct exchange *ex;
	size_t i, n = 40000;

	if (rss_anon_kib() < 0)
		cr_skip_test("no /proc/self/status RssAnon here");
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	/* The first runs at once; the second is forked once it has ended,
	 * with the rest queued. */
	cr_assert_geq(exchange_start(ex, nothing_fn, NULL, 0, NULL), 0);
	for (i = 1; i < n; i++) {
		size_t v = i;

		cr_assert_geq(exchange_start(ex, i == 1 ? report_rss_fn
							: nothing_fn,
					     &v, sizeof(v), NULL), 0);
	}
	while (seen.child == -2)
		cr_assert_geq(exchange_store(ex, 10000), 0);
	cr_assert_geq(seen.child, 0);
	cr_assert_gt(seen.parent - seen.child, 2048,
		     "parent %ld KiB, child %ld KiB of anonymous memory",
		     seen.parent, seen.child);
	exchange_free(ex);
}

/* Frees the copy of the exchange (ctx) that the child inherited, then
 * checks its argument as check_pattern_fn does. */
static void free_copy_fn(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	exchange_free(ctx);
	check_pattern_fn(ch, arg, len, NULL);
}

/* A child holds a copy of the exchange without its queue (nor the records
 * kept for a retry): freeing the copy there frees what the child has and
 * touches nothing it has not. */
Test(exchange, inherited_copy_with_a_queue_frees_in_the_child,
     .timeout = 30)
{
	size_t whole = 0, i;
	struct exchange_options o = { .limit = 1,
				      .store_data = pattern_store,
				      .udata = &whole,
				      .policy = EXCHANGE_RETRY,
				      .retries = 1 };
	struct exchange *ex = exchange_new(&o);
	unsigned char a[300];

	cr_assert_not_null(ex);
	for (i = 0; i < sizeof(a); i++)
		a[i] = pattern_byte(sizeof(a), i);
	for (i = 0; i < 20; i++)
		cr_assert_geq(exchange_start(ex, free_copy_fn, a, sizeof(a),
					     ex), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(whole, 20, "%zu of 20 tasks ended whole", whole);
	exchange_free(ex);
}

/* A queued task's argument is copied for its child just before the fork;
 * when that copy cannot be made, the task still ends in one outcome:
 * NOT_STARTED with ENOMEM, and the exchange goes on. */
Test(exchange, argument_copy_failure_is_a_not_started_outcome,
     .timeout = 30)
{
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 1, .store_data = tally_store,
				      .udata = &t };
	struct exchange *ex;
	struct rlimit old;
	size_t big = (size_t)64 << 20, v = 3;
	const char *why;
	unsigned char *a;
	int rc;

	a = calloc(1, big);
	cr_assert_not_null(a);
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 0);
	cr_assert_eq(exchange_start(ex, nothing_fn, a, big, NULL), 1,
		     "queued behind task 0");
	free(a);
	why = limit_address_space(big / 4, &old);
	if (why) {
		exchange_free(ex);
		cr_skip_test("%s", why);
	}
	rc = exchange_finish(ex);
	setrlimit(RLIMIT_AS, &old);
	cr_assert_eq(rc, 0, "exchange_finish: %s", strerror(errno));
	cr_assert_eq(t.messages, 1);
	cr_assert_eq(t.sum, 9);
	cr_assert_eq(t.failures, 1, "the copy's failure is an outcome");
	cr_assert_eq(t.last.cause, CHANNEL_NOT_STARTED);
	cr_assert_eq(t.last.code, ENOMEM);
	cr_assert_eq(t.last.task, 1);
	channel_msg_free(&t.last);
	exchange_free(ex);
	cr_assert(no_children());
}

/* A continuous child sends many messages; its channel stays. */
static void burst_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	size_t n = *(const size_t *)arg, i;

	(void)len, (void)ctx;
	for (i = 0; i < n; i++)
		channel_send(ch, &i, sizeof(i), -1);
}

Test(exchange, continuous_child_sends_many, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .continuous = true,
				      .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t n = 5000;

	cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 5000);
	cr_assert_eq(t.sum, n * (n - 1) / 2);
	cr_assert_eq(t.failures, 0, "a task with results has no failure");
	exchange_free(ex);
	cr_assert(no_children());
}

/* pprocess's two_way test: the parent and the child count down in turn. */
static void countdown_fn(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	struct channel_msg m;
	int v = 20;

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, &v, sizeof(v), -1);
	while (channel_recv(ch, &m, -1) == 1) {
		v = *(int *)m.data - 1;
		channel_msg_free(&m);
		channel_send(ch, &v, sizeof(v), -1);
		if (v == 0)
			break;
	}
}

struct countdown {
	int seen[32];		/* values the parent received */
	int n;			/* how many */
};

static int countdown_store(struct exchange *ex, struct channel *ch,
			   void *udata)
{
	struct countdown *c = udata;
	struct channel_msg m;
	int v;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	v = *(int *)m.data;
	channel_msg_free(&m);
	if (c->n < 32)
		c->seen[c->n++] = v;
	if (v > 0) {
		v--;
		if (channel_send(ch, &v, sizeof(v), 1000) < 0)
			return -1;
	}
	return 0;
}

Test(exchange, two_way_conversation_in_store_data, .timeout = 20)
{
	struct countdown c = { .n = 0 };
	struct exchange_options o = { .continuous = true,
				      .store_data = countdown_store,
				      .udata = &c };
	struct exchange *ex = exchange_new(&o);
	int i;

	cr_assert_eq(exchange_start(ex, countdown_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(c.n, 11);
	for (i = 0; i < 11; i++)
		cr_assert_eq(c.seen[i], 20 - 2 * i);
	exchange_free(ex);
	cr_assert(no_children());
}

/* store_data that starts more work: each result below 10 starts a task
 * for the next number. */
static int chain_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct order *o = udata;
	struct channel_msg m;
	size_t v;

	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	v = *(size_t *)m.data;
	channel_msg_free(&m);
	if (o->n < 64)
		o->seen[o->n++] = v;
	if (v < 10) {
		v++;
		if (exchange_start(ex, echo_size_fn, &v, sizeof(v), NULL) < 0)
			return -1;
	}
	return 0;
}

Test(exchange, store_data_starts_new_work, .timeout = 20)
{
	struct order ord = { .n = 0 };
	struct exchange_options o = { .limit = 1, .store_data = chain_store,
				      .udata = &ord };
	struct exchange *ex = exchange_new(&o);
	size_t v = 0, i;

	cr_assert_eq(exchange_start(ex, echo_size_fn, &v, sizeof(v), NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(ord.n, 11);
	for (i = 0; i <= 10; i++)
		cr_assert_eq(ord.seen[i], i);
	exchange_free(ex);
	cr_assert(no_children());
}

/* store_data that removes the channel it was given. */
static int remove_store(struct exchange *ex, struct channel *ch, void *udata)
{
	int *n = udata;

	(*n)++;
	return exchange_remove(ex, ch);
}

Test(exchange, store_data_may_remove_its_channel, .timeout = 20)
{
	int calls = 0, fds = count_fds();
	struct exchange_options o = { .store_data = remove_store,
				      .udata = &calls };
	struct exchange *ex = exchange_new(&o);
	size_t n = 100;

	cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL), 0);
	cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(calls, 2, "one call each, then the channel is gone");
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* store_data that leaves the message where it is. */
static int lazy_store(struct exchange *ex, struct channel *ch, void *udata)
{
	int *n = udata;

	(void)ex, (void)ch;
	(*n)++;
	return 0;
}

Test(exchange, unconsumed_messages_are_dropped_not_repeated, .timeout = 20)
{
	int calls = 0;
	struct exchange_options o = { .store_data = lazy_store,
				      .udata = &calls };
	struct exchange *ex = exchange_new(&o);
	size_t n = 50;

	cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(calls, 50);
	exchange_free(ex);
}

static int failing_store(struct exchange *ex, struct channel *ch, void *udata)
{
	(void)ex, (void)ch, (void)udata;
	errno = ENOSPC;
	return -1;
}

Test(exchange, store_data_error_stops_store, .timeout = 20)
{
	struct exchange_options o = { .store_data = failing_store };
	struct exchange *ex = exchange_new(&o);
	size_t v = 2;

	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 0);
	errno = 0;
	cr_assert_eq(exchange_store(ex, 5000), -1);
	cr_assert_eq(errno, ENOSPC);
	cr_assert(exchange_unfinished(ex), "the message is still there");
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, no_store_data_drops_messages, .timeout = 20)
{
	struct exchange *ex = exchange_new(NULL);
	size_t n = 10;

	cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_not(exchange_unfinished(ex));
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, ready_lists_channels_with_messages, .timeout = 20)
{
	struct exchange *ex = exchange_new(NULL);
	struct channel *chs[4];
	struct channel_msg m;
	size_t v = 7;
	int n, got = 0;

	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 0);
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 1);
	while (got < 2) {
		n = exchange_ready(ex, chs, 4, 5000);
		cr_assert_gt(n, 0);
		while (n-- > 0) {
			cr_assert_eq(channel_recv(chs[n], &m, 0), 1);
			cr_assert_eq(*(size_t *)m.data, 49);
			cr_assert_lt(m.task, 2);
			channel_msg_free(&m);
			got++;
		}
	}
	/* Finished channels are removed once drained. */
	while (exchange_unfinished(ex))
		cr_assert_geq(exchange_ready(ex, chs, 4, 5000), 0);
	cr_assert_eq(exchange_ready(ex, chs, 4, 0), 0);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, store_times_out_with_zero, .timeout = 20)
{
	struct exchange *ex = exchange_new(NULL);
	struct channel *ch = channel_create();
	struct channel_msg m;
	struct timespec a, b;
	long ms;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		/* Waits for the parent to close, sending nothing. */
		while (channel_recv(ch, &m, -1) == 1)
			channel_msg_free(&m);
		channel_exit(ch, 0);
	}
	cr_assert_eq(exchange_add(ex, ch), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(exchange_store(ex, 50), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	cr_assert_geq(ms, 45);
	cr_assert_eq(exchange_store(ex, 0), 0);
	cr_assert(exchange_unfinished(ex));
	exchange_free(ex);
	cr_assert(no_children());
}

/* Echoes every message it receives, until end of stream. */
static void echo_all_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	while (channel_recv(ch, &m, -1) == 1) {
		channel_send(ch, m.data, m.len, -1);
		channel_msg_free(&m);
		break;
	}
}

Test(exchange, broadcast_reaches_every_channel, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t v = 5, i;

	for (i = 0; i < 3; i++)
		cr_assert_geq(exchange_start(ex, echo_all_fn, NULL, 0, NULL),
			      0);
	cr_assert_eq(exchange_broadcast(ex, &v, sizeof(v), 1000), 3);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 3);
	cr_assert_eq(t.sum, 15);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, add_wait_waits_below_the_limit, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 2, .store_data = tally_store,
				      .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t v = 3;
	int i;

	for (i = 0; i < 6; i++) {
		struct channel *ch = channel_start(square_fn, &v, sizeof(v),
						   NULL);

		cr_assert_not_null(ch);
		cr_assert_eq(exchange_add_wait(ex, ch), i);
		cr_assert_leq(exchange_active(ex, NULL, 0), 2);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 6);
	cr_assert_eq(t.sum, 54);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, keep_removed_returns_the_channel, .timeout = 20)
{
	struct exchange_options o = { .keep_removed = true };
	struct exchange *ex = exchange_new(&o);
	struct channel *ch = channel_start(square_fn, &(size_t){ 9 },
					  sizeof(size_t), NULL);
	struct channel_msg m;

	cr_assert_not_null(ch);
	cr_assert_eq(exchange_add(ex, ch), 0);
	cr_assert_eq(exchange_remove(ex, ch), 0);
	/* Still open and ours: the result can be read. */
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(*(size_t *)m.data, 81);
	channel_msg_free(&m);
	cr_assert_eq(channel_close(ch), 0);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(exchange, free_closes_running_children, .timeout = 20)
{
	int fds = count_fds();
	struct exchange *ex = exchange_new(NULL);
	int i;

	for (i = 0; i < 4; i++)
		cr_assert_geq(exchange_start(ex, echo_all_fn, NULL, 0, NULL),
			      0);
	cr_assert_eq(exchange_active(ex, NULL, 0), 4);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Outcomes                                                                 */
/* ------------------------------------------------------------------------ */

static void exit3_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	(void)arg, (void)len, (void)ctx;
	channel_exit(ch, 3);
}

static void kill_self_fn(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
	kill(getpid(), SIGKILL);
	pause();
}

static void abort_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
	abort();
}

static void error_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	(void)arg, (void)len, (void)ctx;
	channel_send_error(ch, "no such thing", -1);
}

static void silent_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
}

/* Runs fn as the one task of a fresh exchange; returns its one outcome. */
static struct tally one_outcome(channel_fn *fn)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);

	cr_assert_eq(exchange_start(ex, fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_eq(t.messages + t.errors + t.failures, 1,
		     "exactly one outcome");
	return t;
}

Test(exchange, exit_without_result_is_a_failure, .timeout = 20)
{
	struct tally t = one_outcome(exit3_fn);

	cr_assert_eq(t.failures, 1);
	cr_assert_eq(t.last.kind, CHANNEL_FAILURE);
	cr_assert_eq(t.last.cause, CHANNEL_EXITED);
	cr_assert_eq(t.last.code, 3);
	cr_assert_eq(t.last.task, 0);
	cr_assert_str_eq(t.last.data, "exited with status 3 without a result");
	channel_msg_free(&t.last);
}

Test(exchange, returning_without_result_is_a_failure, .timeout = 20)
{
	struct tally t = one_outcome(silent_fn);

	cr_assert_eq(t.last.cause, CHANNEL_EXITED);
	cr_assert_eq(t.last.code, 0);
	channel_msg_free(&t.last);
}

Test(exchange, sigkill_is_a_failure, .timeout = 20)
{
	struct tally t = one_outcome(kill_self_fn);

	cr_assert_eq(t.last.cause, CHANNEL_SIGNALED);
	cr_assert_eq(t.last.code, SIGKILL);
	cr_assert_str_eq(t.last.data, "killed by signal 9");
	channel_msg_free(&t.last);
}

Test(exchange, abort_is_a_failure, .timeout = 20)
{
	struct tally t = one_outcome(abort_fn);

	cr_assert_eq(t.last.cause, CHANNEL_SIGNALED);
	cr_assert_eq(t.last.code, SIGABRT);
	channel_msg_free(&t.last);
}

Test(exchange, sent_error_is_the_outcome, .timeout = 20)
{
	struct tally t = one_outcome(error_fn);

	cr_assert_eq(t.errors, 1);
	cr_assert_eq(t.last.kind, CHANNEL_ERROR);
	cr_assert_eq(t.last.cause, CHANNEL_SENT_ERROR);
	cr_assert_str_eq(t.last.data, "no such thing");
	channel_msg_free(&t.last);
}

/* Waits for the parent's message, leaves it unread and exits with status
 * 4: its socket is reset, and the parent's read fails with ECONNRESET
 * where it would otherwise see end of stream. */
static void unread_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	struct pollfd p = { .fd = channel_fd(ch), .events = POLLIN };

	(void)arg, (void)len, (void)ctx;
	poll(&p, 1, 10000);
	channel_exit(ch, 4);
}

/* A reset is the end of the stream: the outcome is the exit status, not a
 * protocol failure, also after the task's result. */
Test(exchange, reset_by_an_exiting_child_is_its_end, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);

	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, unread_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_broadcast(ex, "hello", 5, 1000), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_eq(t.messages + t.errors + t.failures, 1);
	cr_assert_eq(t.last.cause, CHANNEL_EXITED, "cause %d: %s",
		     t.last.cause, (char *)t.last.data);
	cr_assert_eq(t.last.code, 4);
	channel_msg_free(&t.last);
}

/* Sends 1 when its argument is aligned as malloc aligns memory, else 0. */
static void aligned_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	size_t v = (uintptr_t)arg % _Alignof(max_align_t) == 0;

	(void)len, (void)ctx;
	channel_send(ch, &v, sizeof(v), -1);
}

/* A function reads its own struct from its argument: whether it runs at
 * once, from the queue, or in a reuse worker, the bytes are aligned for
 * any type. */
Test(exchange, arguments_are_aligned_for_any_type, .timeout = 30)
{
	int mode;

	for (mode = 0; mode < 2; mode++) {
		struct tally t = { 0 };
		struct exchange_options o = { .limit = 1, .reuse = mode == 1,
					      .store_data = tally_store,
					      .udata = &t };
		struct exchange *ex = exchange_new(&o);
		char arg[24] = "twenty-three bytes long";
		size_t i;

		cr_assert_not_null(ex);
		for (i = 0; i < 8; i++)
			cr_assert_eq(exchange_start(ex, aligned_fn, arg,
						    sizeof(arg) - (i % 3),
						    NULL), (ssize_t)i);
		cr_assert_eq(exchange_finish(ex), 0);
		exchange_free(ex);
		cr_assert_eq(t.messages, 8);
		cr_assert_eq(t.sum, 8, "mode %d: %zu of 8 aligned", mode,
			     t.sum);
	}
	cr_assert(no_children());
}

/* Sends a frame the channel layer refuses: larger than the maximum. */
static void big_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	char buf[100] = { 0 };

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, buf, sizeof(buf), -1);
}

Test(exchange, oversized_message_is_a_protocol_failure, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .max_message = 16,
				      .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);

	cr_assert_eq(exchange_start(ex, big_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.failures, 1);
	cr_assert_eq(t.last.cause, CHANNEL_PROTOCOL);
	cr_assert_eq(t.last.code, EMSGSIZE);
	channel_msg_free(&t.last);
	exchange_free(ex);
	cr_assert(no_children());
}

/* Waits for ever; only a signal ends it. */
static void hang_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
	for (;;)
		pause();
}


/* The child of exchange_create holds a copy of the exchange whose retry
 * records are in memory it does not have: removing a running task's
 * channel there forgets its record instead of freeing it. */

/* An arena whose mapping failed once holds blocks of both kinds: one from
 * malloc, which a child has a copy of, and mapped ones, which it has not.
 * Releasing it in a child frees the first and never reads the others. */
Test(exchange, an_arena_of_both_kinds_of_block_releases_in_a_child,
     .timeout = 30)
{
	struct arena a = { 0 };
	struct rlimit old;
	const char *why;
	void *pad, *small, *big;
	pid_t pid;
	int st;

	/* Heap room that malloc keeps, for the block once mmap fails. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	pad = malloc((size_t)1 << 20);
	cr_assert_not_null(pad);
	free(pad);
	why = limit_address_space(16384, &old);
	if (why)
		cr_skip_test("%s", why);
	small = arena_alloc(&a, 100);
	setrlimit(RLIMIT_AS, &old);
	cr_assert_not_null(small, "the heap's room was not enough");
	big = arena_alloc(&a, 20000);	/* a block of its own, mapped */
	cr_assert_not_null(big);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		arena_release(&a, true);
		_exit(a.blocks || a.cur ? 1 : 0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	arena_free(&a, small);
	arena_free(&a, big);
	arena_release(&a, false);
	cr_assert_null(a.blocks);
}
Test(exchange, removing_in_an_inherited_copy_leaves_the_records_alone,
     .timeout = 30)
{
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 2, .store_data = tally_store,
				      .udata = &t, .policy = EXCHANGE_RETRY,
				      .retries = 1 };
	struct exchange *ex = exchange_new(&o);
	struct channel *running, *child;
	pid_t pid;

	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, hang_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_active(ex, &running, 1), 1);
	pid = exchange_create(ex, &child);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		size_t v = 7;

		if (exchange_remove(ex, running) == 0)
			channel_send(child, &v, sizeof(v), -1);
		channel_exit(child, 0);
	}
	while (t.messages == 0 && t.failures == 0)
		cr_assert_geq(exchange_store(ex, 10000), 0);
	cr_assert_eq(t.messages, 1, "the child ended before its message");
	cr_assert_eq(t.sum, 7);
	cr_assert_eq(exchange_terminate(ex), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	channel_msg_free(&t.last);
	exchange_free(ex);
	cr_assert(no_children());
}
Test(exchange, time_limit_ends_a_task, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .time_limit_ms = 100, .grace_ms = 100,
				      .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t v = 4;

	cr_assert_eq(exchange_start(ex, hang_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 1);
	cr_assert_eq(t.failures, 1);
	cr_assert_eq(t.last.cause, CHANNEL_TIMED_OUT);
	cr_assert_eq(t.last.code, 100);
	cr_assert_eq(t.last.task, 0);
	channel_msg_free(&t.last);
	exchange_free(ex);
	cr_assert(no_children());
}

/* A child that closes its channel and then keeps running a little: the
 * exchange must neither block on it nor lose its outcome. */
static void linger_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	size_t v = 1;

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, &v, sizeof(v), -1);
	channel_close_fds(ch);
	pause_ms(200);
}

Test(exchange, child_lingering_after_close_is_reaped_later, .timeout = 20)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t v = 6;
	int stores = 0, r;

	cr_assert_eq(exchange_start(ex, linger_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 1);
	/* The result of the quick task comes while the other lingers. */
	while (t.messages < 2) {
		r = exchange_store(ex, 5000);
		cr_assert_geq(r, 0);
		stores++;
	}
	cr_assert_eq(t.sum, 37);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.failures, 0);
	exchange_free(ex);
	cr_assert(no_children());
}

static pid_t failing_fork(void)
{
	errno = EAGAIN;
	return -1;
}

Test(exchange, fork_failure_is_a_not_started_outcome, .timeout = 20)
{
	int fds = count_fds();
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);
	size_t v = 2;

	exchange_hooks.fork = failing_fork;
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 0,
		     "a fork failure is not an error of the start");
	exchange_hooks.fork = NULL;
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 1);
	cr_assert_eq(t.failures, 1);
	cr_assert_eq(t.last.cause, CHANNEL_NOT_STARTED);
	cr_assert_eq(t.last.code, EAGAIN);
	cr_assert_eq(t.last.task, 0);
	channel_msg_free(&t.last);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Map and Queue                                                            */
/* ------------------------------------------------------------------------ */

/* Pipes that make tasks finish in reverse order: task i waits for a byte
 * on gate[i], sends its result, then opens gate[i - 1]. */
#define GATES 8
static int gate[GATES][2];

static void gated_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	size_t i = *(const size_t *)arg, r = i * 100;
	char c;

	(void)len, (void)ctx;
	if (read(gate[i][0], &c, 1) != 1)
		channel_exit(ch, 9);
	channel_send(ch, &r, sizeof(r), -1);
	if (i > 0 && write(gate[i - 1][1], &c, 1) != 1)
		channel_exit(ch, 9);
}

Test(map, results_in_start_order_when_finished_in_reverse, .timeout = 20)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct channel_msg m;
	size_t i;
	int fds;

	for (i = 0; i < GATES; i++)
		cr_assert_eq(pipe(gate[i]), 0);
	fds = count_fds();
	for (i = 0; i < GATES; i++)
		cr_assert_eq(exchange_start(ex, gated_fn, &i, sizeof(i), NULL),
			     (ssize_t)i);
	cr_assert_eq(write(gate[GATES - 1][1], "x", 1), 1);
	i = 0;
	while (exchange_map_next(ex, &m) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_eq(m.task, i);
		cr_assert_eq(*(size_t *)m.data, i * 100);
		i++;
	}
	cr_assert_eq(i, GATES);
	cr_assert_eq(exchange_map_get(ex, 3, &m, 0), 1);
	cr_assert_eq(*(size_t *)m.data, 300, "get after next still works");
	cr_assert_eq(exchange_map_get(ex, GATES, &m, 0), -1);
	cr_assert_eq(errno, ERANGE);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	for (i = 0; i < GATES; i++) {
		close(gate[i][0]);
		close(gate[i][1]);
	}
	cr_assert(no_children());
}

Test(map, get_times_out_and_rejects_other_exchanges, .timeout = 20)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct exchange *plain = exchange_new(NULL);
	struct channel_msg m;

	cr_assert_eq(exchange_start(ex, hang_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_map_get(ex, 0, &m, 30), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(exchange_map_get(plain, 0, &m, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_queue_next(ex, &m, 0), -1);
	cr_assert_eq(errno, EINVAL);
	/* The hanging child ends with a SIGKILL, seen as its outcome. */
	{
		struct channel *chs[1];

		cr_assert_eq(exchange_active(ex, chs, 1), 1);
		cr_assert_eq(channel_kill(chs[0], SIGKILL), 0);
	}
	cr_assert_eq(exchange_map_get(ex, 0, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.cause, CHANNEL_SIGNALED);
	cr_assert_eq(m.code, SIGKILL);
	exchange_free(ex);
	exchange_free(plain);
	cr_assert(no_children());
}

/* Sends its argument unless it is 13, which kills itself. */
static void unlucky_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	size_t v = *(const size_t *)arg;

	(void)len, (void)ctx;
	if (v == 13)
		kill(getpid(), SIGKILL);
	channel_send(ch, &v, sizeof(v), -1);
}

Test(map, killed_child_has_its_outcome_and_the_rest_completes,
     .timeout = 30)
{
	struct exchange_options o = { .limit = 4 };
	struct exchange *ex = exchange_new_map(&o);
	struct channel_msg m;
	size_t i;

	for (i = 0; i < 30; i++)
		cr_assert_eq(exchange_start(ex, unlucky_fn, &i, sizeof(i),
					    NULL), (ssize_t)i);
	for (i = 0; i < 30; i++) {
		cr_assert_eq(exchange_map_get(ex, i, &m, -1), 1);
		if (i == 13) {
			cr_assert_eq(m.kind, CHANNEL_FAILURE);
			cr_assert_eq(m.cause, CHANNEL_SIGNALED);
			cr_assert_eq(m.code, SIGKILL);
		} else {
			cr_assert_eq(m.kind, CHANNEL_DATA);
			cr_assert_eq(*(size_t *)m.data, i);
		}
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
}

/* A continuous child: 1,000 messages of (child, sequence). */
static void thousand_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	size_t rec[2] = { *(const size_t *)arg, 0 };

	(void)len, (void)ctx;
	for (rec[1] = 0; rec[1] < 1000; rec[1]++)
		channel_send(ch, rec, sizeof(rec), -1);
}

Test(queue, four_continuous_children_lose_and_repeat_nothing, .timeout = 60)
{
	int fds = count_fds();
	struct exchange_options o = { .continuous = true };
	struct exchange *ex = exchange_new_queue(&o);
	static bool seen[4][1000];
	size_t last[4] = { 0 }, i, total = 0;
	struct channel_msg m;
	int r;

	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 4; i++)
		cr_assert_eq(exchange_start(ex, thousand_fn, &i, sizeof(i),
					    NULL), (ssize_t)i);
	while ((r = exchange_queue_next(ex, &m, 10000)) == 1) {
		size_t *rec = m.data;

		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_eq(m.len, 2 * sizeof(size_t));
		cr_assert_lt(rec[0], 4);
		cr_assert_lt(rec[1], 1000);
		cr_assert_eq(m.task, rec[0]);
		cr_assert_not(seen[rec[0]][rec[1]], "no duplicate");
		cr_assert(rec[1] == 0 || rec[1] == last[rec[0]] + 1,
			  "each child's messages in order");
		seen[rec[0]][rec[1]] = true;
		last[rec[0]] = rec[1];
		total++;
		channel_msg_free(&m);
	}
	cr_assert_eq(r, 0);
	cr_assert_eq(total, 4000, "none lost");
	cr_assert_eq(exchange_queue_len(ex), 0);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(queue, killed_child_is_an_item, .timeout = 20)
{
	struct exchange *ex = exchange_new_queue(NULL);
	struct channel_msg m;
	size_t v, data = 0, failures = 0;

	for (v = 12; v < 15; v++)
		cr_assert_geq(exchange_start(ex, unlucky_fn, &v, sizeof(v),
					     NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(exchange_queue_len(ex), 3);
	while (exchange_queue_next(ex, &m, 0) == 1) {
		if (m.kind == CHANNEL_FAILURE) {
			cr_assert_eq(m.cause, CHANNEL_SIGNALED);
			cr_assert_eq(m.code, SIGKILL);
			cr_assert_eq(m.task, 1);
			failures++;
		} else {
			data++;
		}
		channel_msg_free(&m);
	}
	cr_assert_eq(data, 2);
	cr_assert_eq(failures, 1);
	cr_assert_eq(exchange_queue_next(ex, &m, 0), 0, "empty and finished");
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t ticks;

static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}

/* A timer interrupts the loop's waits every 200 microseconds: every wait
 * is retried with the time left, no result is lost, and a timed store
 * still ends on time. */
Test(signals, interrupted_waits_lose_nothing, .timeout = 60)
{
	struct sigaction sa, old;
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 4, .store_data = tally_store,
				      .udata = &t };
	struct exchange *ex = exchange_new(&o);
	struct timespec a, b;
	size_t i, expect = 0;
	long ms;

	if (slow_run())
		it.it_interval.tv_usec = it.it_value.tv_usec = 5000;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tick;	/* no SA_RESTART: calls see EINTR */
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	for (i = 0; i < 100; i++) {
		cr_assert_eq(exchange_start(ex, square_fn, &i, sizeof(i), NULL),
			     (ssize_t)i);
		expect += i * i;
	}
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 100);
	cr_assert_eq(t.sum, expect);
	cr_assert_eq(t.failures, 0);
	/* A store with nothing to wait for but a silent child. */
	{
		struct channel *ch = channel_create();
		struct channel_msg m;

		cr_assert_not_null(ch);
		if (channel_pid(ch) == 0) {
			while (channel_recv(ch, &m, -1) == 1)
				channel_msg_free(&m);
			channel_exit(ch, 0);
		}
		cr_assert_geq(exchange_add(ex, ch), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(exchange_store(ex, 200), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	cr_assert_geq(ms, 190);
	cr_assert_lt(ms, 2000, "signals do not stretch the timeout");
	timer_stop(&old);
	cr_assert_gt(ticks, 0);
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Fairness                                                                 */
/* ------------------------------------------------------------------------ */

/* Sends until the parent goes away. */
static void chatty_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	size_t v = 1;

	(void)arg, (void)len, (void)ctx;
	while (channel_send(ch, &v, sizeof(v), -1) == 0)
		;
}

/* Counts messages by task. */
static int by_task_store(struct exchange *ex, struct channel *ch, void *udata)
{
	size_t *counts = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.task < 2)
			counts[m.task]++;
		channel_msg_free(&m);
	}
	return 0;
}

Test(exchange, a_busy_channel_does_not_starve_the_others, .timeout = 30)
{
	size_t counts[2] = { 0, 0 }, v = 3;
	struct exchange_options o = { .continuous = true,
				      .store_data = by_task_store,
				      .udata = counts };
	struct exchange *ex = exchange_new(&o);
	struct channel *chs[2];
	size_t i;

	cr_assert_eq(exchange_start(ex, chatty_fn, NULL, 0, NULL), 0);
	/* Let the chatty one fill its channel first. */
	while (counts[0] < 1000)
		cr_assert_geq(exchange_store(ex, 5000), 0);
	cr_assert_eq(exchange_start(ex, square_fn, &v, sizeof(v), NULL), 1);
	while (counts[1] == 0 && counts[0] < 5000000)
		cr_assert_geq(exchange_store(ex, 5000), 0);
	cr_assert_eq(counts[1], 1, "the quiet task got through");
	/* Stop the chatty child: its channel closes, its send fails. */
	for (i = 0; i < exchange_active(ex, chs, 2); i++)
		if (channel_task(chs[i]) == 0)
			cr_assert_eq(exchange_remove(ex, chs[i]), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
}

/* Flooding both ways: a child sends FLOOD_N messages of FLOOD_LEN bytes
 * while store_data answers each one with FLOOD_LEN bytes of its own, so
 * each side's send waits while the other side's messages keep coming. */
#define FLOOD_LEN ((size_t)8 << 20)
#define FLOOD_N 4

/* Sends its messages, then receives the answers and reports how many
 * were exact (a size_t). */
static void flood_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	unsigned char *p = malloc(FLOOD_LEN);
	struct channel_msg m;
	size_t i, good = 0;

	(void)arg, (void)len, (void)ctx;
	if (!p)
		channel_exit(ch, 99);
	for (i = 0; i < FLOOD_N; i++) {
		pattern_fill(p, FLOOD_LEN, i);
		if (channel_send(ch, p, FLOOD_LEN, 20000) < 0)
			break;
	}
	free(p);
	for (i = 0; i < FLOOD_N; i++) {
		if (channel_recv(ch, &m, 20000) != 1)
			break;
		good += (size_t)pattern_check(m.data, m.len, FLOOD_LEN,
					      100 + i);
		channel_msg_free(&m);
	}
	channel_send(ch, &good, sizeof(good), 20000);
}

struct flood {
	unsigned char *answer;	/* FLOOD_LEN bytes */
	size_t messages;	/* large messages received */
	size_t exact;		/* of them, exact and in order */
	size_t answered;	/* answers sent whole */
	int send_errno;		/* of the last answer that failed */
	size_t report;		/* the child's count, SIZE_MAX until sent */
	size_t other;		/* anything else received */
};

static int flood_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct flood *f = udata;
	struct channel_msg m;
	size_t i;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.kind == CHANNEL_DATA && m.len == FLOOD_LEN) {
		i = f->messages++;
		f->exact += (size_t)pattern_check(m.data, m.len, FLOOD_LEN, i);
		channel_msg_free(&m);
		pattern_fill(f->answer, FLOOD_LEN, 100 + i);
		if (channel_send(ch, f->answer, FLOOD_LEN, 20000) == 0)
			f->answered++;
		else
			f->send_errno = errno;
		return 0;
	}
	if (m.kind == CHANNEL_DATA && m.len == sizeof(size_t))
		f->report = *(size_t *)m.data;
	else
		f->other++;
	channel_msg_free(&m);
	return 0;
}

static void flood_exchange(struct exchange_options o)
{
	struct flood f = { .report = SIZE_MAX };
	struct timespec t0, t;
	struct exchange *ex;

	f.answer = malloc(FLOOD_LEN);
	cr_assert_not_null(f.answer);
	o.store_data = flood_store;
	o.udata = &f;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, flood_fn, NULL, 0, NULL), 0);
	/* Finite waits, so that a lost message fails the test. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (exchange_unfinished(ex)) {
		cr_assert_geq(exchange_store(ex, 1000), 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 45, "finished in time");
	}
	exchange_free(ex);
	free(f.answer);
	cr_assert_eq(f.messages, FLOOD_N, "%zu messages", f.messages);
	cr_assert_eq(f.exact, FLOOD_N);
	cr_assert_eq(f.answered, FLOOD_N, "answer errno %d", f.send_errno);
	cr_assert_eq(f.report, FLOOD_N, "the child got %zu answers exact",
		     f.report);
	cr_assert_eq(f.other, 0);
	cr_assert(no_children());
}

Test(exchange, store_data_answers_while_the_child_floods, .timeout = 60)
{
	flood_exchange((struct exchange_options){ .limit = 0 });
}

Test(exchange, store_data_answers_while_a_worker_floods, .timeout = 60)
{
	flood_exchange((struct exchange_options){ .reuse = true,
						  .limit = 1 });
}

Test(exchange, store_data_answers_while_a_continuous_child_floods,
     .timeout = 60)
{
	flood_exchange((struct exchange_options){ .continuous = true });
}

/* Waits 200 ms for stream items that never come and sends back the errno
 * it got (an int), and how long it waited (int64_t ms). */
static void get_nothing_fn(struct channel *ch, const void *arg, size_t len,
			   void *ctx)
{
	struct timespec t0, t1;
	int64_t res[2];
	size_t got = 99;
	int item;

	(void)arg, (void)len, (void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	res[0] = channel_get(ch, &item, 1, sizeof(item), &got, 200) < 0 ?
		 errno : 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res[1] = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
		 (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (got != 0)
		res[0] = -1;
	channel_send(ch, res, sizeof(res), 5000);
}

struct got_result {
	int n;			/* results received */
	int64_t res[2];		/* the last one */
};

static int got_result_store(struct exchange *ex, struct channel *ch,
			    void *udata)
{
	struct got_result *g = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.kind == CHANNEL_DATA && m.len == sizeof(g->res)) {
		memcpy(g->res, m.data, sizeof(g->res));
		g->n++;
	}
	channel_msg_free(&m);
	return 0;
}

/* A reuse worker's read end blocks between tasks; a get with a timeout
 * in its task still waits no longer than that timeout. */
Test(exchange, a_get_in_a_worker_keeps_its_timeout, .timeout = 30)
{
	struct got_result g = { 0 };
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .store_data = got_result_store,
				      .udata = &g };
	struct exchange *ex = exchange_new(&o);
	struct timespec t0, t;
	int i;

	cr_assert_not_null(ex);
	for (i = 0; i < 2; i++)
		cr_assert_eq(exchange_start(ex, get_nothing_fn, NULL, 0, NULL),
			     i);
	/* Finite waits: a get that blocks fails the test, not hangs it. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (exchange_unfinished(ex)) {
		cr_assert_geq(exchange_store(ex, 500), 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= 10)
			break;
	}
	cr_assert_eq(g.n, 2, "%d of 2 gets returned", g.n);
	cr_assert_eq(g.res[0], ETIMEDOUT, "errno %lld", (long long)g.res[0]);
	cr_assert_geq(g.res[1], 199, "waited %lld ms", (long long)g.res[1]);
	exchange_free(ex);
	cr_assert(no_children());
}

/* A store_data that reads a worker's channel until it ends. */
struct drain {
	size_t messages;	/* messages received */
	size_t sum;		/* of their values */
	size_t bad_task;	/* messages stamped with another task */
	int last;		/* what the last receive returned */
	int last_errno;		/* its errno when -1 */
};

static int drain_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct drain *d = udata;
	struct channel_msg m;
	size_t task = CHANNEL_NO_TASK;

	(void)ex;
	/* Bounded: a receive that crossed the end of the task's messages
	 * would wait for a worker that has nothing to send. */
	while ((d->last = channel_recv(ch, &m, 5000)) == 1) {
		if (task == CHANNEL_NO_TASK)
			task = m.task;
		if (m.task != task)
			d->bad_task++;
		if (m.len == sizeof(size_t)) {
			size_t v;

			memcpy(&v, m.data, sizeof(v));
			d->sum += v;
		}
		d->messages++;
		channel_msg_free(&m);
	}
	d->last_errno = d->last < 0 ? errno : 0;
	return 0;
}

/* Inside store_data, a worker's channel ends where its task's messages
 * end: the receive returns 0 there instead of waiting into the next task
 * (or for ever, when no task follows). */
Test(reuse, a_receive_in_store_data_stops_at_the_end_of_the_task,
     .timeout = 30)
{
	struct drain d = { 0 };
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .store_data = drain_store, .udata = &d };
	struct exchange *ex = exchange_new(&o);
	size_t n = 3;
	int i;

	cr_assert_not_null(ex);
	for (i = 0; i < 2; i++)
		cr_assert_eq(exchange_start(ex, burst_fn, &n, sizeof(n), NULL),
			     i);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(d.messages, 6, "%zu messages", d.messages);
	cr_assert_eq(d.sum, 2 * (0 + 1 + 2));
	cr_assert_eq(d.bad_task, 0, "one call's messages are one task's");
	cr_assert_eq(d.last, 0, "the last receive returned %d (errno %d)",
		     d.last, d.last_errno);
	exchange_free(ex);
	cr_assert(no_children());
}

/* One thread's own exchanges, round after round. */
struct thread_run {
	int rounds_ok;		/* rounds whose every result was right */
	int failures;		/* calls that failed */
};

static void *exchange_thread(void *arg)
{
	struct thread_run *r = arg;
	int round, i;

	for (round = 0; round < 8; round++) {
		struct tally t = { 0 };
		struct exchange_options o = { .limit = 3,
					      .reuse = round % 2 == 1,
					      .store_data = tally_store,
					      .udata = &t };
		struct exchange *ex = exchange_new(&o);
		size_t v, want = 0;

		if (!ex) {
			r->failures++;
			continue;
		}
		for (i = 0; i < 12; i++) {
			v = (size_t)i;
			want += v * v;
			if (exchange_start(ex, square_fn, &v, sizeof(v),
					   NULL) < 0)
				r->failures++;
		}
		if (exchange_finish(ex) < 0)
			r->failures++;
		if (t.messages == 12 && t.sum == want && t.failures == 0)
			r->rounds_ok++;
		channel_msg_free(&t.last);
		exchange_free(ex);
	}
	return NULL;
}

/* Channels and exchanges are made and freed from several threads at once,
 * each thread with its own: the registry of open channels that every fork
 * reads is shared, and must stay whole. */
Test(exchange, threads_each_with_their_own_exchanges, .timeout = 120)
{
	struct thread_run runs[4] = { { 0 } };
	pthread_t th[4];
	int fds = count_fds(), i;

	for (i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, exchange_thread,
					    &runs[i]), 0);
	for (i = 0; i < 4; i++)
		cr_assert_eq(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(runs[i].failures, 0, "thread %d", i);
		cr_assert_eq(runs[i].rounds_ok, 8, "thread %d: %d rounds of 8",
			     i, runs[i].rounds_ok);
	}
	cr_assert_eq(count_fds(), fds, "no descriptor left open");
	cr_assert(no_children());
}

/* The pipe hook of the test below: called under the library's lock (by
 * channel_create in a thread), it says so and holds the lock until told
 * to go on. */
static int lock_held[2], lock_go[2];
static bool lock_was_held;

static int pipe_holding_the_lock(int fds[2])
{
	char c = 'h';

	/* The first of the link's two pipes. */
	if (!lock_was_held) {
		lock_was_held = true;
		if (write(lock_held[1], &c, 1) != 1 ||
		    read(lock_go[0], &c, 1) != 1)
			return -1;
	}
	return pipe(fds);
}

static void *create_in_thread(void *arg)
{
	struct channel *ch = channel_create();

	(void)arg;
	if (ch && channel_pid(ch) == 0)
		channel_exit(ch, 0);
	return ch;
}

/* A child of the caller's own fork, made while another thread held the
 * library's lock, starts with the lock free: it can make channels of its
 * own. Its copy of the lock used to be held by a thread it does not have,
 * and its first channel waited for ever. */
Test(exchange, a_plain_fork_while_a_thread_holds_the_lock_leaves_it_free,
     .timeout = 60)
{
	struct channel *made;
	pthread_t th;
	pid_t pid;
	int st = 0, tries;
	char c;

	cr_assert_eq(pipe(lock_held), 0);
	cr_assert_eq(pipe(lock_go), 0);
	exchange_hooks.pipe = pipe_holding_the_lock;
	cr_assert_eq(pthread_create(&th, NULL, create_in_thread, NULL), 0);
	cr_assert_eq(read(lock_held[0], &c, 1), 1, "the thread has the lock");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct channel *ch;
		struct channel_msg m;
		int ok;

		memset(&exchange_hooks, 0, sizeof(exchange_hooks));
		ch = channel_start(echo_size_fn, "free", 5, NULL);
		ok = ch && channel_recv(ch, &m, 10000) == 1 && m.len == 5 &&
		     memcmp(m.data, "free", 5) == 0;
		_exit(ok ? 0 : 1);
	}
	for (tries = 0; tries < 1000; tries++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	if (tries == 1000) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	cr_assert_lt(tries, 1000, "the child waited for the lock");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	cr_assert_eq(write(lock_go[1], "g", 1), 1);
	cr_assert_eq(pthread_join(th, (void **)&made), 0);
	exchange_hooks.pipe = NULL;
	cr_assert_not_null(made);
	cr_assert_eq(channel_wait(made, 10000), 0);
	cr_assert_eq(channel_close(made), 0);
	close(lock_held[0]);
	close(lock_held[1]);
	close(lock_go[0]);
	close(lock_go[1]);
}

/* The go pipe of the test below: the task that has shut its channel down
 * waits on it before it exits. */
static int exit_go[2];

static void shut_then_wait_fn(struct channel *ch, const void *arg, size_t len,
			      void *ctx)
{
	char c;

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, "bye", 3, 10000);
	channel_shutdown(ch);
	if (read(exit_go[0], &c, 1) != 1)
		channel_exit(ch, 3);
}

static void send_fd_count_fn(struct channel *ch, const void *arg, size_t len,
			     void *ctx)
{
	size_t n = (size_t)count_fds();

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, &n, sizeof(n), 10000);
}

/* A task whose channel has ended while its process runs on is polled for
 * its exit on a descriptor of the parent's (a pidfd). A child forked
 * meanwhile holds no copy of it: it has the descriptors any child has.
 * And once all is reaped, the parent has none left. */
Test(exchange, a_child_holds_no_exit_descriptor_of_a_sibling, .timeout = 60)
{
	struct tally t = { 0 };
	struct exchange_options o = { .limit = 3, .store_data = tally_store,
				      .udata = &t };
	struct exchange *ex;
	size_t alone;
	int fds, with_a, i, probe;

	probe = sys_pidfd_open(getpid());
	if (probe < 0)
		cr_skip_test("no pidfd_open here");
	close(probe);
	cr_assert_eq(pipe(exit_go), 0);
	fds = count_fds();
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_geq(exchange_start(ex, send_fd_count_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 1);
	alone = t.sum;
	t.messages = 0;
	t.sum = 0;
	cr_assert_geq(exchange_start(ex, shut_then_wait_fn, NULL, 0, NULL), 0);
	with_a = count_fds();
	/* Its end of stream seen, the exchange opens the exit descriptor. */
	for (i = 0; i < 500 && count_fds() < with_a + 1; i++)
		cr_assert_geq(exchange_store(ex, 10), 0);
	cr_assert_eq(count_fds(), with_a + 1, "polled for its exit");
	cr_assert_geq(exchange_start(ex, send_fd_count_fn, NULL, 0, NULL), 0);
	for (i = 0; i < 1000 && t.messages < 2; i++)
		cr_assert_geq(exchange_store(ex, 10), 0);
	cr_assert_eq(t.messages, 2, "its message and the sibling's");
	cr_assert_eq(t.sum, alone, "the sibling has %zu descriptors, not %zu",
		     t.sum, alone);
	cr_assert_eq(write(exit_go[1], "g", 1), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.failures, 0);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds, "no descriptor left open");
	cr_assert(no_children());
	close(exit_go[0]);
	close(exit_go[1]);
}

/* Starts a child that sends "deep" and forwards its message, or "lost". */
static void forward_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	struct channel *down = channel_start(echo_size_fn, "deep", 4, NULL);
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	if (down && channel_recv(down, &m, 10000) == 1) {
		channel_send(ch, m.data, m.len, 10000);
		channel_msg_free(&m);
	} else {
		channel_send(ch, "lost", 4, 10000);
	}
	channel_close(down);
}

/* Receives "deep" from forward_fn started in this process. */
static int deep_arrives(void)
{
	struct channel *ch = channel_start(forward_fn, NULL, 0, NULL);
	struct channel_msg m;
	int ok;

	if (!ch)
		return 0;
	ok = channel_recv(ch, &m, 20000) == 1 && m.len == 4 &&
	     memcmp(m.data, "deep", 4) == 0;
	if (ok)
		channel_msg_free(&m);
	return channel_close(ch) == 0 && ok;
}

/* A process knows its own pid after any fork: its children, which die
 * with their parent, take the right process for it. Were a child to keep
 * its parent's pid (sys_getpid asks once per process), its own children
 * would find their parent gone at once and end. Through the library's
 * fork, and through the caller's own. */
Test(exchange, children_of_children_know_their_parent, .timeout = 60)
{
	pid_t pid;
	int st;

	cr_assert_eq(sys_getpid(), getpid());
	cr_assert(deep_arrives(), "through channel_start");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(sys_getpid() == getpid() && deep_arrives() ? 0 : 1);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "through fork: status %#x", st);
}

static int result_go[2];

static void wait_then_square_fn(struct channel *ch, const void *arg,
				size_t len, void *ctx)
{
	size_t v = 7 * 7;
	char c;

	(void)arg, (void)len, (void)ctx;
	if (read(result_go[0], &c, 1) == 1)
		channel_send(ch, &v, sizeof(v), 10000);
}

/* A child of the caller's own fork holds a copy of the exchange: calls on
 * it are refused there (a wait would have read the parent's channels, and
 * taken the parent's results), and freeing it touches no process. The
 * parent's task gives its result to the parent. */
Test(exchange, a_copy_in_a_plain_fork_is_refused_and_freed_alone,
     .timeout = 30)
{
	struct tally t = { 0 };
	struct exchange_options o = { .store_data = tally_store, .udata = &t,
				      .time_limit_ms = 20000 };
	struct exchange *ex;
	pid_t pid;
	int st;

	cr_assert_eq(pipe(result_go), 0);
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_geq(exchange_start(ex, wait_then_square_fn, NULL, 0, NULL),
		      0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int refused = exchange_store(ex, 0) == -1 && errno == EBADF &&
			      exchange_terminate(ex) == -1 && errno == EBADF;

		exchange_free(ex);
		_exit(refused ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the copy was not refused: status %#x", st);
	cr_assert_eq(write(result_go[1], "g", 1), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.messages, 1);
	cr_assert_eq(t.sum, 49);
	cr_assert_eq(t.failures, 0);
	exchange_free(ex);
	cr_assert(no_children());
	close(result_go[0]);
	close(result_go[1]);
}
