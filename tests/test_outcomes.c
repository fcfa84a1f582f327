/*
 * test_outcomes.c - nothing lost, exactly one outcome: the guarantees as a
 * user meets them, each defect once found from outside kept as a test.
 *
 * Item streams inside an exchange, queued work starting as soon as a place
 * frees, reuse workers that are reused and whose messages leave when sent,
 * objects a child inherits being inert there, bounded ends of free and
 * remove, forged control frames, broadcast to reuse workers, removal of a
 * running task, and the errno and codes of the smaller paths.
 *
 * Children report only through their channel, a pipe of the test's own or
 * their exit status; assertions stay in the test body. Waits that would
 * hang when a guarantee breaks have a finite bound inside the test, so the
 * test fails instead of reaching its .timeout where it can.
 */
#include "exchange.h"
#include "internal.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Every message of a Queue, by task: how many, and the last one's kind,
 * cause and first bytes. */
struct seen {
	int count[8];		/* messages per task */
	int kind[8];		/* kind of the last one */
	int cause[8];		/* its cause */
	int code[8];		/* its code */
	char text[8][32];	/* its first bytes */
};

static void drain_queue(struct exchange *ex, struct seen *sn)
{
	struct channel_msg m;

	memset(sn, 0, sizeof(*sn));
	while (exchange_queue_next(ex, &m, 10000) == 1) {
		size_t t = m.task < 8 ? m.task : 7;

		sn->count[t]++;
		sn->kind[t] = m.kind;
		sn->cause[t] = m.cause;
		sn->code[t] = m.code;
		snprintf(sn->text[t], sizeof(sn->text[t]), "%.*s",
			 (int)(m.len < 31 ? m.len : 31), (char *)m.data);
		channel_msg_free(&m);
	}
}

static void say_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	(void)ctx;
	channel_send(ch, arg, len, -1);
}

/* ------------------------------------------------------------------------ */
/* Item streams inside an exchange                                          */
/* ------------------------------------------------------------------------ */

/* Puts the int items of its argument (one put, or two when ctx is set). */
static void put_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	size_t n = len / sizeof(int);

	channel_put(ch, arg, n, sizeof(int), -1);
	if (ctx)
		channel_put(ch, arg, n, sizeof(int), -1);
}

Test(streams, items_nobody_takes_are_one_protocol_outcome_in_a_map,
     .timeout = 30)
{
	int items[4] = { 1, 2, 3, 4 };
	struct exchange *ex = exchange_new_map(NULL);
	struct channel_msg m;

	cr_assert_eq(exchange_start(ex, say_fn, "zero", 4, NULL), 0);
	cr_assert_eq(exchange_start(ex, put_fn, items, sizeof(items), ex), 1);
	cr_assert_eq(exchange_start(ex, say_fn, "two", 3, NULL), 2);
	cr_assert_eq(exchange_finish(ex), 0, "finish: %s", strerror(errno));
	cr_assert_eq(exchange_map_get(ex, 0, &m, 0), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_str_eq(m.data, "zero");
	cr_assert_eq(exchange_map_get(ex, 1, &m, 0), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.cause, CHANNEL_PROTOCOL);
	cr_assert_eq(exchange_map_get(ex, 2, &m, 0), 1);
	cr_assert_str_eq(m.data, "two");
	exchange_free(ex);
	cr_assert(no_children());
}

Test(streams, items_nobody_takes_are_one_outcome_in_a_queue, .timeout = 30)
{
	int items[4] = { 1, 2, 3, 4 };
	struct exchange *ex = exchange_new_queue(NULL);
	struct seen sn;

	cr_assert_eq(exchange_start(ex, put_fn, items, sizeof(items), ex), 0);
	cr_assert_eq(exchange_start(ex, say_fn, "one", 3, NULL), 1);
	drain_queue(ex, &sn);
	cr_assert_eq(sn.count[0], 1, "task 0: %d outcomes", sn.count[0]);
	cr_assert_eq(sn.kind[0], CHANNEL_FAILURE);
	cr_assert_eq(sn.cause[0], CHANNEL_PROTOCOL);
	cr_assert_eq(sn.count[1], 1);
	cr_assert_str_eq(sn.text[1], "one");
	exchange_free(ex);
	cr_assert(no_children());
}

Test(streams, items_without_store_data_end_the_task, .timeout = 30)
{
	int items[4] = { 1, 2, 3, 4 }, fds = count_fds();
	struct exchange *ex = exchange_new(NULL);

	cr_assert_eq(exchange_start(ex, put_fn, items, sizeof(items), NULL), 0);
	cr_assert_eq(exchange_start(ex, say_fn, "one", 3, NULL), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Takes items with channel_get, and counts messages and failures. */
struct stream_tally {
	int sum;		/* of the items taken */
	int messages;		/* DATA messages */
	int failures;		/* FAILURE messages */
};

static int get_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct stream_tally *t = udata;
	struct channel_msg m;
	int items[4];
	size_t got = 0, i;

	(void)ex;
	/* ENOMSG: a message, not items, is next. */
	if (channel_get(ch, items, 4, sizeof(int), &got, 5000) < 0 &&
	    errno != ENOMSG)
		return -1;
	for (i = 0; i < got; i++)
		t->sum += items[i];
	if (got)
		return 0;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_FAILURE)
			t->failures++;
		else
			t->messages++;
		channel_msg_free(&m);
	}
	return 0;
}

Test(streams, items_taken_by_store_data_are_the_outcome, .timeout = 30)
{
	int items[4] = { 1, 2, 3, 4 };
	struct stream_tally t = { 0 };
	struct exchange_options o = { .store_data = get_store, .udata = &t };
	struct exchange *ex = exchange_new(&o);

	cr_assert_eq(exchange_start(ex, put_fn, items, sizeof(items), NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(t.sum, 10);
	cr_assert_eq(t.failures, 0, "a task that streamed has no failure");
	exchange_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Queued work starts as soon as a place frees                              */
/* ------------------------------------------------------------------------ */

/* The test's pipe, inherited by every task. */
static int relay[2];

/* Task 0: waits (10 s at most) for task 2 to write to the pipe, and says
 * whether it did in time. */
static void waiter_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	struct pollfd p = { .fd = relay[0], .events = POLLIN };
	const char *word = poll(&p, 1, 10000) == 1 ? "ok" : "late";

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, word, strlen(word), -1);
}

/* Task 1: answers, then waits for the parent's word before it ends, so
 * its end of stream comes in a later wait than its message. */
static void answer_then_wait_fn(struct channel *ch, const void *arg,
				size_t len, void *ctx)
{
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, "b", 1, -1);
	if (channel_recv(ch, &m, 10000) == 1)
		channel_msg_free(&m);
}

/* Task 2: writes to the pipe. */
static void poke_fn(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	(void)arg, (void)len, (void)ctx;
	if (write(relay[1], "x", 1) != 1)
		_exit(3);
	channel_send(ch, "c", 1, -1);
}

/* Answers task 1's message, and keeps task 0's word. */
static int relay_store(struct exchange *ex, struct channel *ch, void *udata)
{
	char *word = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.task == 0 && m.kind == CHANNEL_DATA)
		snprintf(word, 8, "%s", (char *)m.data);
	if (m.task == 1)
		channel_send(ch, "go", 2, 1000);
	channel_msg_free(&m);
	return 0;
}

Test(exchange, queued_work_starts_as_soon_as_a_place_frees, .timeout = 30)
{
	char word[8] = "";
	struct exchange_options o = { .limit = 2, .store_data = relay_store,
				      .udata = word };
	struct exchange *ex;

	cr_assert_eq(pipe(relay), 0);
	ex = exchange_new(&o);
	cr_assert_eq(exchange_start(ex, waiter_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, answer_then_wait_fn, NULL, 0, NULL), 1);
	cr_assert_eq(exchange_start(ex, poke_fn, NULL, 0, NULL), 2);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_str_eq(word, "ok", "task 2 started only after task 0 ended");
	exchange_free(ex);
	close(relay[0]);
	close(relay[1]);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Reuse                                                                    */
/* ------------------------------------------------------------------------ */

static void pid_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	pid_t me = getpid();

	(void)arg, (void)len, (void)ctx;
	channel_send(ch, &me, sizeof(me), -1);
}

/* Keeps the pids that answered. */
struct pids {
	pid_t pid[64];		/* by task */
	int n;			/* answers */
};

static int pid_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct pids *p = udata;
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) != 1)
		return 0;
	if (m.kind == CHANNEL_DATA && m.len == sizeof(pid_t) && m.task < 64) {
		memcpy(&p->pid[m.task], m.data, sizeof(pid_t));
		p->n++;
	}
	channel_msg_free(&m);
	return 0;
}

static int distinct(const pid_t *pid, int n)
{
	int i, j, d = 0;

	for (i = 0; i < n; i++) {
		for (j = 0; j < i && pid[j] != pid[i]; j++)
			;
		d += j == i;
	}
	return d;
}

Test(reuse, without_a_limit_runs_at_most_one_worker_per_core, .timeout = 60)
{
	struct pids p = { 0 };
	struct exchange_options o = { .reuse = true, .store_data = pid_store,
				      .udata = &p };
	struct exchange *ex = exchange_new(&o);
	int i, d;

	for (i = 0; i < 20; i++)
		cr_assert_eq(exchange_start(ex, pid_fn, NULL, 0, NULL), i);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(p.n, 20);
	d = distinct(p.pid, 20);
	cr_assert_leq(d, exchange_cores(), "%d workers for %d cores", d,
		      exchange_cores());
	exchange_free(ex);
	cr_assert(no_children());
}

Test(reuse, an_idle_worker_takes_new_work, .timeout = 60)
{
	struct pids p = { 0 };
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .store_data = pid_store, .udata = &p };
	struct exchange *ex = exchange_new(&o);

	cr_assert_eq(exchange_start(ex, pid_fn, NULL, 0, NULL), 0);
	while (exchange_unfinished(ex))
		cr_assert_geq(exchange_store(ex, 1000), 0);
	cr_assert_eq(p.n, 1);
	cr_assert_eq(exchange_start(ex, pid_fn, NULL, 0, NULL), 1);
	cr_assert_eq(exchange_finish(ex), 0);
	cr_assert_eq(p.n, 2);
	cr_assert_eq(p.pid[1], p.pid[0], "the second task ran in a new process");
	exchange_free(ex);
	cr_assert(no_children());
}

/* Sends one message, then works on (sleeps) until it is stopped. */
static void progress_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	(void)arg, (void)len, (void)ctx;
	channel_send(ch, "progress", 8, -1);
	for (;;)
		pause_ms(1000);
}

static void message_leaves_when_sent(bool continuous)
{
	struct seen sn;
	struct exchange_options o = { .reuse = true, .limit = 1,
				      .continuous = continuous,
				      .time_limit_ms = 3000, .grace_ms = 100 };
	struct exchange *ex = exchange_new_queue(&o);
	struct channel_msg m;

	cr_assert_eq(exchange_start(ex, progress_fn, NULL, 0, NULL), 0);
	/* The task is still running: its message must be here well before
	 * its time limit ends it. */
	cr_assert_eq(exchange_queue_next(ex, &m, 2500), 1,
		     "the message was held back: %s", strerror(errno));
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_str_eq(m.data, "progress");
	channel_msg_free(&m);
	drain_queue(ex, &sn);
	cr_assert_eq(sn.count[0], 0, "one outcome only");
	exchange_free(ex);
	cr_assert(no_children());
}

Test(reuse, a_message_is_on_its_way_when_send_returns, .timeout = 30)
{
	message_leaves_when_sent(false);
}

Test(reuse, a_continuous_task_progress_arrives_while_it_runs, .timeout = 30)
{
	message_leaves_when_sent(true);
}

/* Waits for a message, and echoes it. */
static void echo_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	if (channel_recv(ch, &m, 10000) == 1) {
		channel_send(ch, m.data, m.len, -1);
		channel_msg_free(&m);
	} else {
		channel_send(ch, "nothing", 7, -1);
	}
}

Test(reuse, broadcast_reaches_the_tasks_on_workers, .timeout = 30)
{
	struct exchange_options o = { .reuse = true, .limit = 2 };
	struct exchange *ex = exchange_new_queue(&o);
	struct seen sn;

	cr_assert_eq(exchange_start(ex, echo_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, echo_fn, NULL, 0, NULL), 1);
	cr_assert_eq(exchange_broadcast(ex, "hello", 5, 5000), 2);
	drain_queue(ex, &sn);
	cr_assert_str_eq(sn.text[0], "hello");
	cr_assert_str_eq(sn.text[1], "hello");
	exchange_free(ex);
	cr_assert(no_children());
}

static void die_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
	_exit(3);
}

Test(reuse, a_lost_worker_of_unknown_status_has_code_minus_one,
     .timeout = 30)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	struct exchange_options o = { .reuse = true, .limit = 1 };
	struct exchange *ex;
	struct seen sn;

	/* SIGCHLD ignored: the system reaps, and the status is unknown. */
	sigemptyset(&ign.sa_mask);
	cr_assert_eq(sigaction(SIGCHLD, &ign, &old), 0);
	ex = exchange_new_queue(&o);
	cr_assert_eq(exchange_start(ex, die_fn, NULL, 0, NULL), 0);
	drain_queue(ex, &sn);
	exchange_free(ex);
	sigaction(SIGCHLD, &old, NULL);
	cr_assert_eq(sn.count[0], 1);
	cr_assert_eq(sn.cause[0], CHANNEL_LOST);
	cr_assert_eq(sn.code[0], -1, "code %d", sn.code[0]);
}

/* ------------------------------------------------------------------------ */
/* Forged frames                                                            */
/* ------------------------------------------------------------------------ */

/* Writes a FAILURE frame of its own making to its channel, then exits. */
static void forge_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	int32_t cc[2] = { CHANNEL_SIGNALED, 9 };

	(void)arg, (void)len, (void)ctx;
	if (channel_send_frame(ch, FRAME_FAILURE, cc, sizeof(cc), "forged", 6,
			       -1) < 0)
		_exit(4);
	_exit(0);
}

Test(exchange, a_forged_failure_frame_is_a_protocol_outcome, .timeout = 30)
{
	struct exchange *ex = exchange_new_queue(NULL);
	struct seen sn;

	cr_assert_eq(exchange_start(ex, forge_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, say_fn, "fine", 4, NULL), 1);
	drain_queue(ex, &sn);
	cr_assert_eq(sn.count[0], 1, "task 0: %d outcomes", sn.count[0]);
	cr_assert_eq(sn.kind[0], CHANNEL_FAILURE);
	cr_assert_eq(sn.cause[0], CHANNEL_PROTOCOL, "cause %d: %s",
		     sn.cause[0], sn.text[0]);
	cr_assert_str_eq(sn.text[1], "fine");
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Inherited objects are inert in the child                                 */
/* ------------------------------------------------------------------------ */

/* In the child: opens descriptors (they take the lowest numbers, those
 * of the channels closed at fork), lets close run on the inherited
 * objects, and exits 0 when every one it opened is still open. */
static int child_keeps_its_descriptors(struct channel *inherited,
				       struct exchange *ex)
{
	int fds[8], i, bad = 0;

	for (i = 0; i < 8; i += 2)
		if (pipe(fds + i) < 0)
			return 2;
	if (inherited)
		channel_close(inherited);
	if (ex)
		exchange_free(ex);
	for (i = 0; i < 8; i++)
		if (fcntl(fds[i], F_GETFD) < 0)
			bad = 1;
	return bad;
}

Test(fork, a_channel_inherited_by_a_child_is_inert_there, .timeout = 30)
{
	struct channel *a = channel_create(), *b;
	int st;

	cr_assert_not_null(a);
	if (channel_pid(a) == 0)
		channel_exit(a, 0);
	b = channel_create();
	cr_assert_not_null(b);
	if (channel_pid(b) == 0)
		channel_exit(b, child_keeps_its_descriptors(a, NULL));
	cr_assert_eq(channel_wait(b, 10000), 0);
	cr_assert_eq(channel_status(b, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "closing the inherited channel closed the child's own files");
	cr_assert_eq(channel_close(b), 0);
	cr_assert_eq(channel_close(a), 0);
	cr_assert(no_children());
}

/* Waits for its channel to end. */
static void wait_end_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	while (channel_recv(ch, &m, 10000) == 1)
		channel_msg_free(&m);
}

Test(fork, an_exchange_inherited_by_a_child_is_inert_there, .timeout = 30)
{
	struct exchange *ex = exchange_new(NULL);
	struct channel *child;
	pid_t pid;

	cr_assert_eq(exchange_start(ex, wait_end_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, wait_end_fn, NULL, 0, NULL), 1);
	pid = exchange_create(ex, &child);
	cr_assert_geq(pid, 0);
	if (pid == 0)
		channel_exit(child, child_keeps_its_descriptors(NULL, ex));
	{
		struct channel *chs[4];
		size_t n = exchange_active(ex, chs, 4), i;
		int status = -1;

		for (i = 0; i < n; i++)
			if (channel_pid(chs[i]) == pid &&
			    channel_wait(chs[i], 10000) == 0)
				channel_status(chs[i], &status);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "freeing the inherited exchange closed the child's"
			  " own files (status %#x)", status);
	}
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Bounded ends                                                             */
/* ------------------------------------------------------------------------ */

/* Ignores end of stream (and SIGTERM when ctx is set, then says so on
 * the descriptor *ctx when that is not -1): sleeps on. */
static void sleeper_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	const int *fd = ctx;

	(void)ch, (void)arg, (void)len;
	if (fd) {
		signal(SIGTERM, SIG_IGN);
		if (*fd >= 0 && write(*fd, "i", 1) != 1)
			_exit(3);
	}
	for (;;)
		pause_ms(1000);
}

static const int no_fd = -1;

Test(ends, free_with_a_time_limit_ends_a_child_that_ignores_end_of_stream,
     .timeout = 30)
{
	struct exchange_options o = { .time_limit_ms = 300, .grace_ms = 100 };
	struct exchange *ex = exchange_new(&o);
	int fds = count_fds();

	cr_assert_eq(exchange_start(ex, sleeper_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, sleeper_fn, NULL, 0, (void *)&no_fd), 1);
	exchange_free(ex);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(ends, remove_with_a_time_limit_ends_a_child_that_ignores_end_of_stream,
     .timeout = 30)
{
	struct exchange_options o = { .time_limit_ms = 300, .grace_ms = 100 };
	struct exchange *ex = exchange_new(&o);
	struct channel *ch;

	cr_assert_eq(exchange_start(ex, sleeper_fn, NULL, 0, (void *)&no_fd), 0);
	cr_assert_eq(exchange_active(ex, &ch, 1), 1);
	cr_assert_eq(exchange_remove(ex, ch), 0);
	exchange_free(ex);
	cr_assert(no_children());
}

Test(ends, terminate_ends_work_without_a_time_limit, .timeout = 30)
{
	/* Under valgrind a SIGTERM takes its time to end a process: the grace
	 * must outlast that, or SIGKILL comes first. */
	struct exchange_options o = { .limit = 2,
				      .grace_ms = slow_run() ? 5000 : 100 };
	struct exchange *ex = exchange_new_queue(&o);
	struct seen sn;
	char c;

	cr_assert_eq(pipe(relay), 0);
	cr_assert_eq(exchange_start(ex, sleeper_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_start(ex, sleeper_fn, NULL, 0, &relay[1]), 1);
	cr_assert_eq(exchange_start(ex, say_fn, "queued", 6, NULL), 2);
	/* Task 1 ignores SIGTERM from here on. */
	cr_assert_eq(read(relay[0], &c, 1), 1);
	close(relay[0]);
	close(relay[1]);
	cr_assert_eq(exchange_terminate(ex), 0);
	drain_queue(ex, &sn);
	cr_assert_eq(sn.count[0], 1);
	cr_assert_eq(sn.cause[0], CHANNEL_SIGNALED);
	cr_assert_eq(sn.code[0], SIGTERM);
	cr_assert_eq(sn.count[1], 1);
	cr_assert_eq(sn.cause[1], CHANNEL_SIGNALED);
	cr_assert_eq(sn.code[1], SIGKILL, "SIGTERM ignored: SIGKILL follows");
	cr_assert_eq(sn.count[2], 1);
	cr_assert_eq(sn.cause[2], CHANNEL_NOT_STARTED);
	cr_assert_eq(sn.code[2], ECANCELED);
	exchange_free(ex);
	cr_assert(no_children());
}

/* ------------------------------------------------------------------------ */
/* Removal and the smaller paths                                            */
/* ------------------------------------------------------------------------ */

Test(exchange, removing_a_running_task_gives_it_an_outcome, .timeout = 30)
{
	struct exchange *ex = exchange_new_map(NULL);
	struct channel *ch;
	struct channel_msg m;

	cr_assert_eq(exchange_start(ex, wait_end_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_active(ex, &ch, 1), 1);
	cr_assert_eq(exchange_remove(ex, ch), 0);
	cr_assert_eq(exchange_map_get(ex, 0, &m, 5000), 1, "no outcome: %s",
		     strerror(errno));
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.cause, CHANNEL_REMOVED);
	exchange_free(ex);
	cr_assert(no_children());
}

static int fail_store(struct exchange *ex, struct channel *ch, void *udata)
{
	(void)ex, (void)ch, (void)udata;
	return -1;
}

Test(exchange, store_data_failing_without_errno_gives_eio, .timeout = 30)
{
	struct exchange_options o = { .store_data = fail_store };
	struct exchange *ex = exchange_new(&o);
	int r;

	cr_assert_eq(exchange_start(ex, say_fn, "x", 1, NULL), 0);
	errno = ENOSPC;
	r = exchange_store(ex, 10000);
	cr_assert_eq(r, -1);
	cr_assert_eq(errno, EIO, "errno %d (%s)", errno, strerror(errno));
	exchange_free(ex);
}
