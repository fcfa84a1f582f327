/*
 * pmap.c - exchange_pmap: one function over the elements of an array, in
 * worker processes forked once per call.
 *
 * The workers are manage.c's reuse workers: each runs pmap_batch for every
 * TASK frame and answers DONE after it, which the parent skips. Workers
 * receive batches of indices; each answers a batch with one frame
 * holding a status byte per element followed by the outputs. Batches shrink
 * as the work runs out (guided scheduling), so an uneven load still
 * balances. When a worker dies mid-batch, that batch's elements run again
 * one at a time on a fresh worker, so that only the element that kills its
 * worker is reported.
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
/* pmap                                                                     */
/* ------------------------------------------------------------------------ */

/* The largest batch reply, so that one frame stays a reasonable copy. */
#define PMAP_MAX_REPLY ((size_t)8 << 20)

/* A batch: elements [start, start + count). */
struct pmap_batch {
	uint64_t start;		/* first element */
	uint64_t count;		/* number of elements */
};

/* One pmap worker as the parent sees it. */
struct pmap_worker {
	struct channel *ch;	/* NULL when no process is running here */
	bool busy;		/* a batch is out */
	bool single;		/* the batch is one element run alone */
	struct pmap_batch b;	/* the batch out */
	struct channel_limit lim; /* the batch's time limit */
};

/* A batch over its time limit gets SIGTERM, then SIGKILL after this. */
#define PMAP_GRACE_MS 1000

/* Everything the loop of one pmap call needs. */
struct pmap {
	exchange_pmap_fn *fn;	/* the element function */
	const unsigned char *in;/* input array */
	unsigned char *out;	/* output array */
	size_t n;		/* elements */
	size_t in_size;		/* bytes per input element */
	size_t out_size;	/* bytes per output element */
	void *ctx;		/* given to fn */
	struct exchange_outcome *outcomes; /* per element, or NULL */
	size_t next;		/* the first element not yet handed out */
	size_t *redo;		/* elements to run again one at a time */
	size_t nredo;		/* how many are in redo */
	size_t fixed;		/* the caller's batch size, or 0 */
	size_t max_batch;	/* cap from PMAP_MAX_REPLY */
	int nworkers;		/* slots in w */
	struct pmap_worker *w;	/* the workers */
	ssize_t ok;		/* elements computed */
	int time_limit_ms;	/* per batch, or 0 */
};

/* Element k of the input or output array. An element of no bytes is the
 * array's pointer itself, which may be NULL (no arithmetic on it). */
static const void *pmap_in(const struct pmap *pm, size_t k)
{
	return pm->in_size ? pm->in + k * pm->in_size : pm->in;
}

static void *pmap_out(const struct pmap *pm, size_t k)
{
	return pm->out_size ? pm->out + k * pm->out_size : pm->out;
}

/* Checks the sizes of a call: 0, or -1 with EINVAL for a count pmap could
 * not return, an array larger than any object (PTRDIFF_MAX bytes), or an
 * element whose reply (its status byte and its output) no channel carries;
 * ENOMEM when the list of elements to run again cannot be sized. */
static int pmap_check_sizes(size_t n, size_t in_size, size_t out_size,
			    bool outcomes)
{
	const size_t big = (size_t)PTRDIFF_MAX;

	if (n > (size_t)SSIZE_MAX || in_size > big ||
	    out_size > CHANNEL_MAX_DEFAULT - 1 ||
	    (in_size && n > big / in_size) ||
	    (out_size && n > big / out_size) ||
	    (outcomes && n > big / sizeof(struct exchange_outcome))) {
		errno = EINVAL;
		return -1;
	}
	if (n > SIZE_MAX / sizeof(size_t)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* One batch, in a worker (manage.c's reuse loop runs it for each TASK
 * frame): statuses and outputs go back in one frame. The output goes into
 * the child's own copy of the output array, which is then sent from where
 * it lies. The status bytes are the child's own too. */
static void pmap_batch(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	static unsigned char *status;
	static size_t scap;
	const struct pmap *pm = ctx;
	struct pmap_batch b;
	size_t i;

	if (len != sizeof(b))
		channel_exit(ch, 1);
	memcpy(&b, arg, sizeof(b));
	if (b.count > scap) {
		free(status);
		status = malloc(b.count);
		if (!status)
			channel_exit(ch, 1);
		scap = b.count;
	}
	for (i = 0; i < b.count; i++) {
		size_t k = b.start + i;

		status[i] = pm->fn(pmap_in(pm, k), pmap_out(pm, k),
				   pm->ctx) == 0 ? 0 : 1;
	}
	if (channel_send_frame(ch, FRAME_DATA, status, b.count,
			       pmap_out(pm, b.start), b.count * pm->out_size,
			       -1) < 0)
		channel_exit(ch, 1);
}

static void pmap_outcome(struct pmap *pm, size_t i, int cause, int code)
{
	if (pm->outcomes) {
		pm->outcomes[i].cause = cause;
		pm->outcomes[i].code = code;
	}
	if (cause == CHANNEL_OK)
		pm->ok++;
}


/* Chooses the next batch: elements to redo go one at a time; then guided
 * sizes, half the remaining work's fair share, never below one. Returns 0
 * when nothing is left to hand out. */
static int pmap_next_batch(struct pmap *pm, struct pmap_batch *b, bool *single)
{
	size_t left, size;

	if (pm->nredo) {
		b->start = pm->redo[--pm->nredo];
		b->count = 1;
		*single = true;
		return 1;
	}
	if (pm->next >= pm->n)
		return 0;
	left = pm->n - pm->next;
	if (pm->fixed)
		size = pm->fixed;
	else
		size = left / (2 * (size_t)pm->nworkers);
	if (size < 1)
		size = 1;
	if (size > pm->max_batch)
		size = pm->max_batch;
	if (size > left)
		size = left;
	b->start = pm->next;
	b->count = size;
	*single = size == 1;
	pm->next += size;
	return 1;
}

/* Forks the worker for slot k with the next batch as its first task: a
 * reuse worker of manage.c running pmap_batch. 1, 0 when no work is left
 * to hand out (nothing forked), -1 with the errno of the fork (the batch
 * goes back, to be run element by element). */
static int pmap_spawn(struct pmap *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	struct pmap_batch b;
	struct channel *ch;
	bool single;
	size_t i;
	pid_t pid;

	if (!pmap_next_batch(pm, &b, &single))
		return 0;
	pid = manage_fork(&ch, pmap_batch, NULL, pm, &b, sizeof(b), true,
			  pm->time_limit_ms > 0 ? CHANNEL_OWN_GROUP : 0,
			  NULL, NULL);
	if (pid < 0) {
		int saved = errno;

		for (i = (size_t)b.count; i-- > 0;)
			pm->redo[pm->nredo++] = (size_t)b.start + i;
		errno = saved;
		return -1;
	}
	memset(w, 0, sizeof(*w));
	w->ch = ch;
	w->b = b;
	w->single = single;
	w->busy = true;
	channel_limit_start(&w->lim, pm->time_limit_ms);
	return 1;
}

static int pmap_send(struct pmap *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];

	if (!pmap_next_batch(pm, &w->b, &w->single))
		return 0;
	w->busy = true;
	channel_limit_start(&w->lim, pm->time_limit_ms);
	if (channel_send_frame(w->ch, FRAME_TASK, &w->b, sizeof(w->b), NULL,
			       0, -1) < 0) {
		/* The worker has gone; its end of stream says how. */
		return 0;
	}
	return 1;
}

/* A batch came back: copy the outputs and record each element. */
static int pmap_reply(struct pmap *pm, struct pmap_worker *w, const void *data,
		      size_t len)
{
	const unsigned char *p = data;
	size_t i, count = (size_t)w->b.count;

	if (len != count + count * pm->out_size) {
		errno = EPROTO;
		return -1;
	}
	if (pm->out_size)
		memcpy(pmap_out(pm, w->b.start), p + count,
		       count * pm->out_size);
	for (i = 0; i < count; i++)
		pmap_outcome(pm, (size_t)w->b.start + i,
			     p[i] ? CHANNEL_SENT_ERROR : CHANNEL_OK, 0);
	w->busy = false;
	return 0;
}

/* The worker in slot k died (or broke the protocol): reap it, settle or
 * re-queue its batch, free the slot. */
static void pmap_lost(struct pmap *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	int cause, code;
	char text[96];
	size_t i;

	channel_kill(w->ch, SIGKILL);
	(void)channel_wait(w->ch, -1);
	if (w->busy) {
		if (w->single) {
			channel_describe_end(w->ch, w->lim.timed_out,
					     pm->time_limit_ms, &cause, &code,
					     text, sizeof(text));
			pmap_outcome(pm, (size_t)w->b.start, cause, code);
		} else {
			/* Highest index pushed first, so they are taken in
			 * ascending order. */
			for (i = (size_t)w->b.count; i-- > 0;)
				pm->redo[pm->nredo++] = (size_t)w->b.start + i;
		}
	}
	channel_close(w->ch);
	memset(w, 0, sizeof(*w));
}

/* Handles what arrived on worker k. */
static int pmap_read(struct pmap *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	uint32_t kind;
	void *data;
	size_t len;
	int r;

	channel_polled(w->ch, POLLIN);
	for (;;) {
		r = channel_recv_frame(w->ch, &kind, &data, &len, 0);
		if (r < 0 && errno == ETIMEDOUT)
			return 0;
		if (r > 0 && kind == FRAME_DONE) {
			/* The worker loop's end of a task: the reply came
			 * before it. */
			free(data);
			continue;
		}
		if (r <= 0 || kind != FRAME_DATA || !w->busy) {
			if (r > 0)
				free(data);
			pmap_lost(pm, k);
			return 0;
		}
		r = pmap_reply(pm, w, data, len);
		free(data);
		if (r < 0) {
			pmap_lost(pm, k);
			return 0;
		}
		if (!pmap_send(pm, k))
			return 0;
	}
}

/* Sets up pm for one call (the arguments are checked). */
static void pmap_init(struct pmap *pm, exchange_pmap_fn *fn, const void *in,
		      size_t n, size_t in_size, void *out, size_t out_size,
		      const struct exchange_pmap_options *opts)
{
	size_t i;

	*pm = (struct pmap){
		.fn = fn, .in = in, .out = out, .n = n,
		.in_size = in_size, .out_size = out_size,
		.ctx = opts ? opts->ctx : NULL,
		.outcomes = opts ? opts->outcomes : NULL,
		.fixed = opts ? opts->batch : 0,
		.time_limit_ms = opts ? opts->time_limit_ms : 0,
	};
	/* out_size + 1 cannot wrap (pmap_check_sizes), and a batch of one
	 * element always fits in a channel's message. */
	pm->max_batch = PMAP_MAX_REPLY / (out_size + 1);
	/* cppcheck-suppress knownConditionTrueFalse ; out_size may pass it */
	if (pm->max_batch < 1)
		pm->max_batch = 1;
	pm->nworkers = opts && opts->workers ? opts->workers : exchange_cores();
	if ((size_t)pm->nworkers > n)
		pm->nworkers = (int)n;
	for (i = 0; pm->outcomes && i < n; i++) {
		pm->outcomes[i].cause = CHANNEL_NOT_STARTED;
		pm->outcomes[i].code = 0;
	}
}

/* The parent's loop: gives idle workers work, forks fresh ones for lost
 * ones, reads the replies and applies the time limit, until every element
 * is done, or no worker can be forked any more (the rest never starts), or
 * poll fails (the elements not done keep their NOT_STARTED outcome). */
static void pmap_run(struct pmap *pm, struct pollfd *pfds, int *who)
{
	int nw = pm->nworkers, k, np, t, r;
	int64_t next, now, due;
	bool work_left;
	size_t i;

	for (;;) {
		next = 0;
		np = 0;
		t = -1;
		work_left = pm->nredo || pm->next < pm->n;
		for (k = 0; k < nw; k++) {
			struct pmap_worker *w = &pm->w[k];

			if (!w->ch && work_left && pmap_spawn(pm, k) < 0)
				continue;
			if (!w->ch)
				continue;
			/* pmap_send makes the worker busy when it had work to
			 * hand out (through pm, which cppcheck does not see). */
			/* cppcheck-suppress knownConditionTrueFalse */
			if (!w->busy && !pmap_send(pm, k) && !w->busy)
				continue;
			pfds[np].fd = channel_fd(w->ch);
			pfds[np].events = POLLIN;
			pfds[np].revents = 0;
			who[np++] = k;
			due = w->lim.kill_at ? w->lim.kill_at : w->lim.deadline;
			if (due && (!next || due < next))
				next = due;
			work_left = pm->nredo || pm->next < pm->n;
		}
		if (np == 0)
			return;
		if (next) {
			now = clock_now_ms();
			t = next > now ? (int)(next - now) : 0;
		}
		r = poll(pfds, (nfds_t)np, t);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (i = 0; i < (size_t)np; i++)
			if (pfds[i].revents)
				pmap_read(pm, who[i]);
		if (!next)
			continue;
		now = clock_now_ms();
		for (k = 0; k < nw; k++) {
			struct pmap_worker *w = &pm->w[k];

			/* Its end of stream (pmap_read) says how the batch
			 * ended once the signal has come. */
			if (w->ch && (w->busy || w->lim.kill_at))
				channel_limit_apply(w->ch, &w->lim, now,
						    PMAP_GRACE_MS);
		}
	}
}

ssize_t exchange_pmap(exchange_pmap_fn *fn, const void *in, size_t n,
		      size_t in_size, void *out, size_t out_size,
		      const struct exchange_pmap_options *opts)
{
	struct pmap pm;
	struct pollfd *pfds;
	bool started;
	int *who;
	int k, err = 0;

	if (!fn || (n && ((in_size && !in) || (out_size && !out))) ||
	    (opts && (opts->workers < 0 || opts->time_limit_ms < 0))) {
		errno = EINVAL;
		return -1;
	}
	if (pmap_check_sizes(n, in_size, out_size, opts && opts->outcomes) < 0)
		return -1;
	if (n == 0)
		return 0;
	pmap_init(&pm, fn, in, n, in_size, out, out_size, opts);
	pm.w = calloc((size_t)pm.nworkers, sizeof(*pm.w));
	pfds = calloc((size_t)pm.nworkers, sizeof(*pfds));
	who = calloc((size_t)pm.nworkers, sizeof(*who));
	/* A batch lost with its worker is re-run element by element; at
	 * most one batch per worker is out at a time, so n entries do (n
	 * times their size does not wrap: pmap_check_sizes). */
	pm.redo = malloc(n * sizeof(*pm.redo));
	if (!pm.w || !pfds || !who || !pm.redo) {
		err = ENOMEM;
		k = 0;
	} else {
		for (k = 0; k < pm.nworkers; k++) {
			if (pmap_spawn(&pm, k) < 0) {
				err = errno;
				break;
			}
		}
	}
	started = k > 0;
	if (started)
		pmap_run(&pm, pfds, who);
	for (k = 0; pm.w && k < pm.nworkers; k++)
		if (pm.w[k].ch)
			channel_close(pm.w[k].ch);
	free(pm.w);
	free(pfds);
	free(who);
	free(pm.redo);
	if (!started) {
		errno = err ? err : EAGAIN;
		return -1;
	}
	/* Elements left when no worker could be forked any more keep their
	 * NOT_STARTED outcome and are not counted. */
	return pm.ok;
}
