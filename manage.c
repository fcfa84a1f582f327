/*
 * manage.c - the child's side of work started on the caller's behalf.
 *
 * A callable in a new process: fork (through channel_fork, which closes
 * every other channel's descriptors in the child), call, report, leave with
 * _exit. A fork-per-task child runs one task and leaves. A reuse worker
 * runs its first task from its copy of the parent's memory, answers DONE,
 * then takes TASK frames (the argument bytes) until STOP or end of stream.
 * A plain function's result travels as the task's one DATA frame, its
 * failure as an ERROR frame with strerror(errno). channel_start_plain is
 * the same one-task process for a plain function, without an exchange.
 */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* In the child                                                             */
/* ------------------------------------------------------------------------ */

/* Runs one task in the child. */
static void run_one(struct channel *ch, channel_fn *fn, exchange_plain_fn *pfn,
		    void *ctx, const void *arg, size_t len)
{
	size_t rlen = 0;
	void *r;

	assert(fn || pfn);
	if (fn) {
		fn(ch, arg, len, ctx);
		return;
	}
	errno = 0;
	r = pfn(arg, len, &rlen, ctx);
	if (r) {
		channel_send(ch, r, rlen, -1);
		free(r);
	} else {
		channel_send_error(ch, strerror(errno ? errno : EIO), -1);
	}
}

/* In the child: the initializer failed, which is the task's error. */
static NOINLINE void init_failed(struct channel *ch)
{
	char text[128];

	snprintf(text, sizeof(text), "initializer failed: %s",
		 strerror(errno ? errno : EIO));
	channel_send_error(ch, text, -1);
	channel_exit(ch, 1);
}

pid_t manage_fork(struct channel **out, channel_fn *fn, exchange_plain_fn *pfn,
		  void *ctx, const void *arg, size_t len, bool worker,
		  int link, exchange_init_fn *init, void *init_ctx)
{
	struct channel *ch;
	uint32_t kind;
	void *data;
	size_t dlen;
	pid_t pid;
	int r;

	if (worker)
		link &= CHANNEL_OWN_GROUP | CHANNEL_NO_FLUSH;
	pid = channel_fork(&ch, link);
	if (pid != 0) {
		*out = ch;
		return pid;
	}
	if (init && init(init_ctx) < 0)
		init_failed(ch);
	if (!worker) {
		run_one(ch, fn, pfn, ctx, arg, len);
		channel_exit(ch, 0);
	}
	/* Between tasks a worker only waits for the next one, so its read
	 * end (which no other process holds) blocks: one read per task, no
	 * poll. A message is on its way when channel_send returns (a task
	 * killed by its time limit has sent what it sent); only a plain
	 * function's result, the task's last message, is held back to leave
	 * with DONE in one write. */
	channel_set_blocking(ch);
	channel_set_cork(ch, pfn != NULL);
	run_one(ch, fn, pfn, ctx, arg, len);
	for (;;) {
		if (channel_send_frame(ch, FRAME_DONE, NULL, 0, NULL, 0,
				       -1) < 0)
			break;
		/* A message for a task that has ended (a broadcast that
		 * crossed its DONE) has no reader: it is dropped. */
		while ((r = channel_recv_frame(ch, &kind, &data, &dlen,
					       -1)) > 0 &&
		       (kind == FRAME_DATA || kind == FRAME_ERROR))
			free(data);
		if (r <= 0)
			break;
		if (kind != FRAME_TASK) {
			free(data);
			break;
		}
		channel_set_cork(ch, pfn != NULL);
		run_one(ch, fn, pfn, ctx, data, dlen);
		free(data);
	}
	channel_exit(ch, 0);
}


struct channel *channel_start_plain(exchange_plain_fn *fn, const void *arg,
				    size_t len, void *ctx)
{
	struct channel *ch;

	if (!fn || (len && !arg)) {
		errno = EINVAL;
		return NULL;
	}
	if (manage_fork(&ch, NULL, fn, ctx, arg, len, false,
			CHANNEL_LINK_PIPES, NULL, NULL) < 0)
		return NULL;
	return ch;
}
