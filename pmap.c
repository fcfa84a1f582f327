/*
 * pmap.c - exchange_pmap and its handle: one function over the elements of
 * an array, in worker processes forked once per map (or kept from one map
 * to the next).
 *
 * The workers are manage.c's reuse workers: each runs pmap_batch for every
 * TASK frame and answers DONE after it, which the parent skips. Workers
 * receive batches of indices; a worker forked during the current map reads
 * the input from its copy of memory, a kept one (keep_workers, a later
 * map) gets it in the TASK frame after the batch. A fixed-size map answers
 * a batch with one frame holding a status byte per element followed by the
 * outputs; a sized map answers with frames of up to about PMAP_MAX_REPLY
 * bytes, each a run of consecutive elements with their status, length and
 * bytes. Batches shrink as the work runs out (guided scheduling), so an
 * uneven load still balances. When a worker dies mid-batch, that batch's
 * elements not yet answered run again one at a time on a fresh worker, so
 * that only the element that kills its worker is reported.
 *
 * The parent's side moves only inside the calls (pmap_step: one poll round).
 * An element is settled once, when its outcome is known (pmap_outcome); a
 * map is over when every element is settled. A handle made for iterating
 * records the order elements settled in (for exchange_pmap_next_any) and
 * which were returned, so each is returned once; exchange_pmap itself does
 * without.
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

/* The largest batch reply, so that one frame stays a reasonable copy; a
 * kept worker's TASK input is capped the same way. */
#define PMAP_MAX_REPLY ((size_t)8 << 20)

/* A batch over its time limit gets SIGTERM, then SIGKILL after this. */
#define PMAP_GRACE_MS 1000

/* The header of a sized reply frame (first element, count) and of each
 * element in it (status byte, 64-bit length). */
#define PMAP_SIZED_HEAD 16u
#define PMAP_SIZED_ENTRY 9u

/* An element's status in a reply. */
enum pmap_status {
	PMAP_DONE = 0,		/* computed */
	PMAP_FAILED = 1,	/* fn returned -1 */
	PMAP_TOO_BIG = 2,	/* the result was above max_result */
};

/* An element's state in an iterable handle. */
enum {
	PMAP_SETTLED = 1,	/* its outcome is known */
	PMAP_GIVEN = 2,		/* exchange_pmap_next(_any) returned it */
};

/* A batch, as the parent records it and as its TASK frame carries it. */
struct pmap_batch {
	uint64_t map;		/* the map it belongs to */
	uint64_t start;		/* first element */
	uint64_t count;		/* number of elements */
	const void *in;		/* the map's input array, for 0-byte inputs (a
				   worker is a fork: the same address space) */
	void *out;		/* its output array, for 0-byte outputs */
};

/* One pmap worker as the parent sees it. */
struct pmap_worker {
	struct channel *ch;	/* NULL when no process is running here */
	bool busy;		/* a batch is out */
	bool single;		/* the batch is one element run alone */
	uint64_t born;		/* the map it was forked in */
	size_t got;		/* elements of the batch answered so far */
	struct pmap_batch b;	/* the batch out */
	struct channel_limit lim; /* the batch's time limit */
};

/* A handle: what is fixed for its life (the workers' copies hold it), then
 * the current map. */
struct exchange_pmapper {
	exchange_pmap_fn *fn;	/* the element function, or NULL */
	exchange_pmap_sized_fn *sfn; /* the sized one, or NULL */
	size_t in_size;		/* bytes per input element */
	size_t out_size;	/* bytes per output element (fixed size) */
	void *ctx;		/* given to fn */
	size_t fixed;		/* the caller's batch size, or 0 */
	size_t max_batch;	/* cap from PMAP_MAX_REPLY */
	size_t max_result;	/* sized: the largest result */
	int time_limit_ms;	/* per batch, or 0 */
	bool keep;		/* keep_workers */
	bool iterable;		/* keeps state and order for the next calls */
	struct made_in made;	/* the process that made it */
	int nworkers;		/* slots in w */
	struct pmap_worker *w;	/* the workers */
	struct pollfd *pfds;	/* one per worker, for poll */
	int *who;		/* the worker of each pfds entry */
	int err;		/* the errno of the last failed fork, or 0 */

	uint64_t map;		/* the current map's number */
	const unsigned char *in;/* input array */
	unsigned char *out;	/* output array (results, for a sized map) */
	size_t n;		/* elements */
	struct exchange_outcome *outcomes; /* per element, or NULL */
	struct exchange_outcome *own; /* the handle's outcomes, if iterable */
	size_t own_cap;		/* entries in own */
	size_t cap;		/* entries in redo, state and order */
	size_t next;		/* the first element not yet handed out */
	size_t *redo;		/* elements to run again one at a time */
	size_t nredo;		/* how many are in redo */
	unsigned char *state;	/* iterable: PMAP_SETTLED, PMAP_GIVEN */
	size_t *order;		/* iterable: elements in the order settled */
	size_t settled;		/* elements whose outcome is known */
	size_t given;		/* elements returned by the next calls */
	size_t in_order;	/* exchange_pmap_next's first candidate */
	size_t any_at;		/* exchange_pmap_next_any's place in order */
	ssize_t ok;		/* elements computed */
};

/* Element k of the input or output array. An element of no bytes is the
 * array's pointer itself, which may be NULL (no arithmetic on it). */
static const void *pmap_in(const struct exchange_pmapper *pm, size_t k)
{
	return pm->in_size ? pm->in + k * pm->in_size : pm->in;
}

static void *pmap_out(const struct exchange_pmapper *pm, size_t k)
{
	return pm->out_size ? pm->out + k * pm->out_size : pm->out;
}

static struct exchange_result *pmap_result(const struct exchange_pmapper *pm,
					   size_t k)
{
	return (struct exchange_result *)(void *)pm->out + k;
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

/* ------------------------------------------------------------------------ */
/* In a worker                                                              */
/* ------------------------------------------------------------------------ */

/* Grows the worker's buffer *buf of *cap bytes to at least need; leaves
 * the worker on ENOMEM (its batch is then run again element by element). */
static void *pmap_room(struct channel *ch, unsigned char **buf, size_t *cap,
		       size_t need)
{
	if (need > *cap) {
		unsigned char *p = realloc(*buf, need);

		if (!p)
			channel_exit(ch, 1);
		*buf = p;
		*cap = need;
	}
	return *buf;
}

static void pmap_put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint64_t pmap_get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* The results of a sized batch being gathered in a worker. */
struct pmap_gather {
	struct channel *ch;	/* the worker's channel */
	unsigned char *buf;	/* the frame being filled */
	size_t cap;		/* bytes at buf */
	size_t len;		/* bytes used, the header included */
	uint64_t first;		/* its first element */
	uint64_t count;		/* its elements */
};

static void pmap_gather_send(struct pmap_gather *g)
{
	if (!g->count)
		return;
	pmap_put64(g->buf, g->first);
	pmap_put64(g->buf + 8, g->count);
	if (channel_send_frame(g->ch, FRAME_DATA, g->buf, g->len, NULL, 0,
			       -1) < 0)
		channel_exit(g->ch, 1);
	g->len = PMAP_SIZED_HEAD;
	g->count = 0;
}

/* Adds element k's result (len bytes at p) to the frame being filled,
 * sending that frame first when the result would take it past
 * PMAP_MAX_REPLY; a result that large on its own goes in a frame of its
 * own, sent from where it lies. */
static void pmap_gather_add(struct pmap_gather *g, uint64_t k, int status,
			    const void *p, size_t len)
{
	unsigned char *e;

	if (g->count && g->len + PMAP_SIZED_ENTRY + len > PMAP_MAX_REPLY)
		pmap_gather_send(g);
	if (PMAP_SIZED_HEAD + PMAP_SIZED_ENTRY + len > PMAP_MAX_REPLY) {
		unsigned char head[PMAP_SIZED_HEAD + PMAP_SIZED_ENTRY];

		pmap_put64(head, k);
		pmap_put64(head + 8, 1);
		head[PMAP_SIZED_HEAD] = (unsigned char)status;
		pmap_put64(head + PMAP_SIZED_HEAD + 1, len);
		if (channel_send_frame(g->ch, FRAME_DATA, head, sizeof(head), p,
				       len, -1) < 0)
			channel_exit(g->ch, 1);
		return;
	}
	e = pmap_room(g->ch, &g->buf, &g->cap,
		      g->len + PMAP_SIZED_ENTRY + len);
	e += g->len;
	if (!g->count)
		g->first = k;
	e[0] = (unsigned char)status;
	pmap_put64(e + 1, len);
	if (len)
		memcpy(e + PMAP_SIZED_ENTRY, p, len);
	g->len += PMAP_SIZED_ENTRY + len;
	g->count++;
}

/* A sized batch in a worker: each result, then the frames not yet sent. */
static void pmap_batch_sized(struct channel *ch,
			     const struct exchange_pmapper *pm,
			     const struct pmap_batch *b,
			     const unsigned char *in)
{
	static struct pmap_gather g;
	size_t i;

	g.ch = ch;
	g.len = PMAP_SIZED_HEAD;
	g.count = 0;
	pmap_room(ch, &g.buf, &g.cap, PMAP_SIZED_HEAD);
	for (i = 0; i < b->count; i++) {
		void *p = NULL;
		size_t len = 0;
		int st = PMAP_FAILED;

		if (pm->sfn(pm->in_size ? in + i * pm->in_size : in, &p, &len,
			    pm->ctx) == 0 && (p || !len))
			st = len > pm->max_result ? PMAP_TOO_BIG : PMAP_DONE;
		pmap_gather_add(&g, b->start + i, st, p,
				st == PMAP_DONE ? len : 0);
		free(p);
	}
	pmap_gather_send(&g);
}

/* One batch, in a worker (manage.c's reuse loop runs it for each TASK
 * frame). A worker forked during the batch's map finds the input in its
 * copy of the input array and computes into its copy of the output array,
 * which is then sent from where it lies; a worker kept from an earlier map
 * finds the input after the batch in the frame, and computes into a buffer
 * of its own. Statuses and outputs go back in one frame. */
static void pmap_batch(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	static unsigned char *status, *scratch;
	static size_t scap, sccap;
	const struct exchange_pmapper *pm = ctx;
	const unsigned char *in;
	unsigned char *out;
	struct pmap_batch b;
	size_t i;

	if (len < sizeof(b))
		channel_exit(ch, 1);
	memcpy(&b, arg, sizeof(b));
	if (b.map == pm->map) {
		if (len != sizeof(b))
			channel_exit(ch, 1);
		in = pmap_in(pm, b.start);
		out = pmap_out(pm, b.start);
	} else {
		/* The input follows the batch: count elements, exactly. */
		if (pm->in_size ? (len - sizeof(b)) / pm->in_size != b.count ||
				  (len - sizeof(b)) % pm->in_size
				: len != sizeof(b))
			channel_exit(ch, 1);
		in = pm->in_size ? (const unsigned char *)arg + sizeof(b)
				 : (const unsigned char *)b.in;
		out = pm->out_size && !pm->sfn
			      ? pmap_room(ch, &scratch, &sccap,
					  b.count * pm->out_size)
			      : (unsigned char *)b.out;
	}
	if (pm->sfn) {
		pmap_batch_sized(ch, pm, &b, in);
		return;
	}
	pmap_room(ch, &status, &scap, b.count);
	for (i = 0; i < b.count; i++)
		status[i] = pm->fn(pm->in_size ? in + i * pm->in_size : in,
				   pm->out_size ? out + i * pm->out_size : out,
				   pm->ctx) == 0 ? PMAP_DONE : PMAP_FAILED;
	if (channel_send_frame(ch, FRAME_DATA, status, b.count, out,
			       b.count * pm->out_size, -1) < 0)
		channel_exit(ch, 1);
}

/* ------------------------------------------------------------------------ */
/* In the parent                                                            */
/* ------------------------------------------------------------------------ */

/* Element k has ended: its one outcome. */
static void pmap_outcome(struct exchange_pmapper *pm, size_t k, int cause,
			 int code)
{
	if (pm->outcomes) {
		pm->outcomes[k].cause = cause;
		pm->outcomes[k].code = code;
	}
	if (pm->iterable) {
		assert(!(pm->state[k] & PMAP_SETTLED));
		pm->state[k] |= PMAP_SETTLED;
		pm->order[pm->settled] = k;
	}
	pm->settled++;
	if (cause == CHANNEL_OK)
		pm->ok++;
}

/* Chooses the next batch: elements to redo go one at a time; then guided
 * sizes, half the remaining work's fair share, never below one. Returns 0
 * when nothing is left to hand out. */
static int pmap_next_batch(struct exchange_pmapper *pm, struct pmap_batch *b,
			   bool *single)
{
	size_t left, size;

	b->map = pm->map;
	b->in = pm->in;
	b->out = pm->out;
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

/* Puts elements first to first + count - 1 back, to run one at a time
 * (highest pushed first, so that they are taken in ascending order). */
static void pmap_requeue(struct exchange_pmapper *pm, size_t first,
			 size_t count)
{
	while (count-- > 0)
		pm->redo[pm->nredo++] = first + count;
}

/* Forks the worker for slot k with the next batch as its first task: a
 * reuse worker of manage.c running pmap_batch. 1, 0 when no work is left
 * to hand out (nothing forked), -1 with the errno of the fork (the batch
 * goes back, to be run element by element). */
static int pmap_spawn(struct exchange_pmapper *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	struct pmap_batch b;
	struct channel *ch;
	bool single;
	pid_t pid;

	if (!pmap_next_batch(pm, &b, &single))
		return 0;
	pid = manage_fork(&ch, pmap_batch, NULL, pm, &b, sizeof(b), true,
			  pm->time_limit_ms > 0 ? CHANNEL_OWN_GROUP : 0,
			  NULL, NULL);
	if (pid < 0) {
		pm->err = errno;
		pmap_requeue(pm, (size_t)b.start, (size_t)b.count);
		errno = pm->err;
		return -1;
	}
	memset(w, 0, sizeof(*w));
	w->ch = ch;
	w->born = pm->map;
	w->b = b;
	w->single = single;
	w->busy = true;
	channel_limit_start(&w->lim, pm->time_limit_ms);
	return 1;
}

/* Whether worker w was sent its time limit's signal: it is leaving, even
 * if its result came first, and takes no more work (the work would end
 * with it, as if it had run over the limit). */
static bool pmap_doomed(const struct pmap_worker *w)
{
	return w->lim.kill_at || w->lim.timed_out;
}

/* Gives the idle worker k its next batch, with the input when the worker
 * was forked before this map. 1, or 0 when there was nothing to give, the
 * worker is leaving (pmap_launch replaces it) or it has gone (its end of
 * stream says how). */
static int pmap_send(struct exchange_pmapper *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	bool kept = w->born != pm->map;

	if (pmap_doomed(w) || !pmap_next_batch(pm, &w->b, &w->single))
		return 0;
	w->busy = true;
	w->got = 0;
	channel_limit_start(&w->lim, pm->time_limit_ms);
	if (channel_send_frame(w->ch, FRAME_TASK, &w->b, sizeof(w->b),
			       kept ? pmap_in(pm, w->b.start) : NULL,
			       kept ? (size_t)w->b.count * pm->in_size : 0,
			       -1) < 0)
		return 0;
	return 1;
}

/* A fixed-size batch came back: copy the outputs and record each element. */
static int pmap_reply(struct exchange_pmapper *pm, struct pmap_worker *w,
		      const unsigned char *p, size_t len)
{
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
	w->got = count;
	return 0;
}

/* Element k of a sized map computed len bytes at p: a copy goes to out[k],
 * NUL-terminated. */
static void pmap_keep_result(struct exchange_pmapper *pm, size_t k,
			     const unsigned char *p, size_t len)
{
	struct exchange_result *r = pmap_result(pm, k);
	unsigned char *d = malloc(len + 1);

	if (!d) {
		pmap_outcome(pm, k, CHANNEL_PROTOCOL, ENOMEM);
		return;
	}
	if (len)
		memcpy(d, p, len);
	d[len] = 0;
	r->data = d;
	r->len = len;
	pmap_outcome(pm, k, CHANNEL_OK, 0);
}

/* A frame of a sized batch came back: the next elements of the batch in
 * order, each with its status and result. Elements before a malformed
 * entry are kept (w->got counts them). */
static int pmap_reply_sized(struct exchange_pmapper *pm, struct pmap_worker *w,
			    const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len;
	uint64_t first, count, j;

	if (len < PMAP_SIZED_HEAD)
		goto bad;
	first = pmap_get64(p);
	count = pmap_get64(p + 8);
	if (first != w->b.start + w->got || !count ||
	    count > w->b.count - w->got)
		goto bad;
	p += PMAP_SIZED_HEAD;
	for (j = 0; j < count; j++) {
		size_t k = (size_t)(first + j);
		uint64_t elen;
		int st;

		if ((size_t)(end - p) < PMAP_SIZED_ENTRY)
			goto bad;
		st = p[0];
		elen = pmap_get64(p + 1);
		p += PMAP_SIZED_ENTRY;
		if (elen > (uint64_t)(end - p) || (st != PMAP_DONE && elen))
			goto bad;
		if (st == PMAP_DONE)
			pmap_keep_result(pm, k, p, (size_t)elen);
		else if (st == PMAP_FAILED)
			pmap_outcome(pm, k, CHANNEL_SENT_ERROR, 0);
		else if (st == PMAP_TOO_BIG)
			pmap_outcome(pm, k, CHANNEL_PROTOCOL, EMSGSIZE);
		else
			goto bad;
		p += elen;
		w->got++;
	}
	if (p == end)
		return 0;
bad:
	errno = EPROTO;
	return -1;
}

/* The worker in slot k died (or broke the protocol): reap it, settle or
 * re-queue what its batch has not answered, free the slot. */
static void pmap_lost(struct exchange_pmapper *pm, int k)
{
	struct pmap_worker *w = &pm->w[k];
	int cause, code;
	char text[96];

	channel_kill(w->ch, SIGKILL);
	(void)channel_wait(w->ch, -1);
	if (w->busy) {
		if (w->single) {
			channel_describe_end(w->ch, w->lim.timed_out,
					     pm->time_limit_ms, &cause, &code,
					     text, sizeof(text));
			pmap_outcome(pm, (size_t)w->b.start, cause, code);
		} else {
			pmap_requeue(pm, (size_t)w->b.start + w->got,
				     (size_t)w->b.count - w->got);
		}
	}
	channel_close(w->ch);
	memset(w, 0, sizeof(*w));
}

/* Handles what arrived on worker k. */
static void pmap_read(struct exchange_pmapper *pm, int k)
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
			return;
		if (r > 0 && kind == FRAME_DONE) {
			/* The worker loop's end of a task: the reply came
			 * before it. */
			free(data);
			continue;
		}
		if (r < 0 && errno == ENOMEM && w->busy && w->single) {
			/* The parent has no memory for the result: that is
			 * the element's outcome (exchange.h), not a lost
			 * worker's. A batch of several runs again one by
			 * one, which ends here for the one too large. */
			pmap_outcome(pm, (size_t)w->b.start, CHANNEL_PROTOCOL,
				     ENOMEM);
			w->busy = false;
		}
		if (r <= 0 || kind != FRAME_DATA || !w->busy) {
			if (r > 0)
				free(data);
			pmap_lost(pm, k);
			return;
		}
		r = pm->sfn ? pmap_reply_sized(pm, w, data, len)
			    : pmap_reply(pm, w, data, len);
		free(data);
		if (r < 0) {
			pmap_lost(pm, k);
			return;
		}
		if (w->got < w->b.count)
			continue;
		w->busy = false;
		if (!pmap_send(pm, k))
			return;
	}
}

/* Gives every worker slot work: a fresh worker for an empty slot while
 * work is left, the next batch for an idle worker, and lists the busy ones
 * in pfds. Returns how many are listed; *next is the earliest time a time
 * limit is due, or 0. */
static int pmap_launch(struct exchange_pmapper *pm, int64_t *next)
{
	int k, np = 0;
	int64_t due;

	*next = 0;
	for (k = 0; k < pm->nworkers; k++) {
		struct pmap_worker *w = &pm->w[k];
		bool work_left = pm->nredo || pm->next < pm->n;

		if (w->ch && !w->busy && work_left && pmap_doomed(w))
			pmap_lost(pm, k);	/* killed and reaped now */
		if (!w->ch && work_left && pmap_spawn(pm, k) < 0)
			continue;
		if (!w->ch)
			continue;
		/* pmap_send makes the worker busy when it had work to
		 * hand out (through pm, which cppcheck does not see). */
		/* cppcheck-suppress knownConditionTrueFalse */
		if (!w->busy && !pmap_send(pm, k) && !w->busy)
			continue;
		pm->pfds[np].fd = channel_fd(w->ch);
		pm->pfds[np].events = POLLIN;
		pm->pfds[np].revents = 0;
		pm->who[np++] = k;
		due = w->lim.kill_at ? w->lim.kill_at : w->lim.deadline;
		if (due && (!*next || due < *next))
			*next = due;
	}
	return np;
}

/* The elements not handed out when no worker can be forked any more end
 * as NOT_STARTED, with the fork's errno. */
static void pmap_settle_rest(struct exchange_pmapper *pm)
{
	int code = pm->err ? pm->err : EAGAIN;

	while (pm->nredo)
		pmap_outcome(pm, pm->redo[--pm->nredo], CHANNEL_NOT_STARTED,
			     code);
	while (pm->next < pm->n)
		pmap_outcome(pm, pm->next++, CHANNEL_NOT_STARTED, code);
}

/* One round of the parent's loop: gives idle workers work, forks fresh ones
 * for lost ones, waits up to timeout_ms (less when a time limit is due) for
 * replies, reads them and applies the time limits. When no worker is busy
 * and none can be forked, the rest of the map ends (pmap_settle_rest).
 * 0, or -1 with poll's errno (EINTR is a round with nothing read). */
static int pmap_step(struct exchange_pmapper *pm, int timeout_ms)
{
	int k, np, t = timeout_ms, r;
	int64_t next, now;

	np = pmap_launch(pm, &next);
	if (np == 0) {
		pmap_settle_rest(pm);
		return 0;
	}
	if (next) {
		now = clock_now_ms();
		r = next > now ? (int)(next - now) : 0;
		if (t < 0 || r < t)
			t = r;
	}
	r = poll(pm->pfds, (nfds_t)np, t);
	if (r < 0)
		return errno == EINTR ? 0 : -1;
	for (k = 0; k < np; k++)
		if (pm->pfds[k].revents)
			pmap_read(pm, pm->who[k]);
	if (!next)
		return 0;
	now = clock_now_ms();
	for (k = 0; k < pm->nworkers; k++) {
		struct pmap_worker *w = &pm->w[k];

		/* Its end of stream (pmap_read) says how the batch ended
		 * once the signal has come. */
		if (w->ch && (w->busy || w->lim.kill_at))
			channel_limit_apply(w->ch, &w->lim, now,
					    PMAP_GRACE_MS);
	}
	return 0;
}

/* Steps until done(pm) holds, for up to timeout_ms: 1, or -1 with
 * ETIMEDOUT or poll's errno. At least one round runs, so a timeout of 0
 * still reads what has arrived. */
static int pmap_until(struct exchange_pmapper *pm, int timeout_ms,
		      bool (*done)(struct exchange_pmapper *pm))
{
	int64_t deadline = clock_deadline(timeout_ms);
	bool first = true;

	while (!done(pm)) {
		int left = clock_left(deadline);

		if (left == 0 && !first) {
			errno = ETIMEDOUT;
			return -1;
		}
		first = false;
		if (pmap_step(pm, left) < 0)
			return -1;
	}
	return 1;
}

/* Stops every worker: the busy ones are killed, the idle ones see end of
 * stream; all are reaped. */
static void pmap_stop(struct exchange_pmapper *pm)
{
	int k;

	for (k = 0; k < pm->nworkers; k++) {
		struct pmap_worker *w = &pm->w[k];

		if (!w->ch)
			continue;
		if ((w->busy || w->lim.kill_at) &&
		    !channel_made_elsewhere(pm->made))
			channel_kill(w->ch, SIGKILL);
		channel_close(w->ch);
		memset(w, 0, sizeof(*w));
	}
}

/* Grows the array at *p to n entries of size bytes: 0, or -1 with ENOMEM
 * (and *p unchanged). */
#define PMAP_GROW(p, n)							\
	pmap_grow((void **)&(p), realloc((p), (n) * sizeof(*(p))))

static int pmap_grow(void **p, void *q)
{
	if (!q) {
		errno = ENOMEM;
		return -1;
	}
	*p = q;
	return 0;
}

/* The counts of a map that has handed out and settled nothing. */
static void pmap_restart(struct exchange_pmapper *pm)
{
	pm->next = pm->nredo = pm->settled = pm->given = 0;
	pm->in_order = pm->any_at = 0;
	pm->ok = 0;
}

/* Makes the map over n elements at in the current one, results in out,
 * outcomes in outcomes (the handle's own for an iterable handle given
 * none). -1 with ENOMEM, and then the handle holds what it held. */
static int pmap_set(struct exchange_pmapper *pm, const void *in, size_t n,
		    void *out, struct exchange_outcome *outcomes)
{
	size_t i, want = n ? n : 1;

	if (want > pm->cap) {
		if (PMAP_GROW(pm->redo, want) < 0 ||
		    (pm->iterable && (PMAP_GROW(pm->state, want) < 0 ||
				      PMAP_GROW(pm->order, want) < 0)))
			return -1;
		pm->cap = want;
	}
	if (pm->iterable && !outcomes && want > pm->own_cap) {
		if (PMAP_GROW(pm->own, want) < 0)
			return -1;
		pm->own_cap = want;
	}
	pm->map++;
	pm->in = in;
	pm->out = out;
	pm->n = n;
	pm->outcomes = outcomes ? outcomes : pm->iterable ? pm->own : NULL;
	pmap_restart(pm);
	pm->err = 0;
	if (pm->iterable)
		memset(pm->state, 0, n);
	for (i = 0; pm->outcomes && i < n; i++) {
		pm->outcomes[i].cause = CHANNEL_NOT_STARTED;
		pm->outcomes[i].code = 0;
	}
	for (i = 0; pm->sfn && i < n; i++)
		*pmap_result(pm, i) = (struct exchange_result){ NULL, 0 };
	return 0;
}

/* Starts the current map: fails with the fork's errno (EAGAIN when none
 * was given) when no worker could be started for a map of elements. */
static int pmap_begin(struct exchange_pmapper *pm)
{
	int64_t next;

	if (pm->n == 0 || pmap_launch(pm, &next) > 0)
		return 0;
	errno = pm->err ? pm->err : EAGAIN;
	return -1;
}

/* Whether the arguments of a map are refused: EINVAL (and -1) for a NULL
 * array the sizes need, else pmap_check_sizes. */
static int pmap_refuse(const struct exchange_pmapper *pm, const void *in,
		       size_t n, const void *out, bool outcomes)
{
	size_t osize = pm->sfn ? sizeof(struct exchange_result) : pm->out_size;

	if (n && ((pm->in_size && !in) || (osize && !out))) {
		errno = EINVAL;
		return -1;
	}
	return pmap_check_sizes(n, pm->in_size, osize,
				outcomes || pm->iterable);
}

static struct exchange_pmapper *pmap_open(exchange_pmap_fn *fn,
					  exchange_pmap_sized_fn *sfn,
					  const void *in, size_t n,
					  size_t in_size, void *out,
					  size_t out_size,
					  const struct exchange_pmap_options *o,
					  bool iterable)
{
	const struct exchange_pmap_options none = { 0 };
	struct exchange_pmapper *pm;
	size_t reply;
	int nw;

	if (!o)
		o = &none;
	if ((!fn && !sfn) || o->workers < 0 || o->time_limit_ms < 0 ||
	    o->max_result > EXCHANGE_PMAP_MAX_RESULT ||
	    (o->keep_workers && in_size > CHANNEL_MAX_DEFAULT - 64)) {
		errno = EINVAL;
		return NULL;
	}
	nw = o->workers ? o->workers : exchange_cores();
	/* A map that is the handle's only one needs no more slots than
	 * elements; a handle may take larger maps later. */
	if (!iterable && (size_t)nw > n)
		nw = n ? (int)n : 1;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	*pm = (struct exchange_pmapper){
		.fn = fn, .sfn = sfn, .in_size = in_size,
		.out_size = sfn ? 0 : out_size, .ctx = o->ctx,
		.fixed = o->batch, .time_limit_ms = o->time_limit_ms,
		.max_result = o->max_result ? o->max_result
					    : EXCHANGE_PMAP_MAX_RESULT,
		.keep = o->keep_workers, .iterable = iterable,
		.made = channel_made_here(), .nworkers = nw,
	};
	if (pmap_refuse(pm, in, n, out, o->outcomes) < 0) {
		free(pm);
		return NULL;
	}
	/* A reply's element takes out_size + 1 bytes (a sized one at least
	 * a status and a length), which cannot wrap (pmap_check_sizes); a
	 * batch of one element always fits in a channel's message. */
	reply = sfn ? PMAP_SIZED_ENTRY : out_size + 1;
	pm->max_batch = PMAP_MAX_REPLY / reply;
	if (pm->keep && in_size && PMAP_MAX_REPLY / in_size < pm->max_batch)
		pm->max_batch = PMAP_MAX_REPLY / in_size;
	/* cppcheck-suppress knownConditionTrueFalse ; out_size may pass it */
	if (pm->max_batch < 1)
		pm->max_batch = 1;
	pm->w = calloc((size_t)nw, sizeof(*pm->w));
	pm->pfds = calloc((size_t)nw, sizeof(*pm->pfds));
	pm->who = calloc((size_t)nw, sizeof(*pm->who));
	if (!pm->w || !pm->pfds || !pm->who) {
		exchange_pmap_free(pm);
		errno = ENOMEM;
		return NULL;
	}
	if (pmap_set(pm, in, n, out, o->outcomes) < 0 || pmap_begin(pm) < 0) {
		int saved = errno;

		exchange_pmap_free(pm);
		errno = saved;
		return NULL;
	}
	return pm;
}

static bool pmap_over(struct exchange_pmapper *pm)
{
	return pm->settled == pm->n;
}

static bool pmap_in_order_ready(struct exchange_pmapper *pm)
{
	while (pm->in_order < pm->n && pm->state[pm->in_order] & PMAP_GIVEN)
		pm->in_order++;
	return pm->in_order == pm->n || pm->state[pm->in_order] & PMAP_SETTLED;
}

static bool pmap_any_ready(struct exchange_pmapper *pm)
{
	while (pm->any_at < pm->settled &&
	       pm->state[pm->order[pm->any_at]] & PMAP_GIVEN)
		pm->any_at++;
	return pm->any_at < pm->settled || pm->given == pm->n;
}

/* The check that opens the calls on a handle (sys_refuse). */
static int pmap_refuse_handle(const struct exchange_pmapper *pm)
{
	return sys_refuse(!pm, pm && channel_made_elsewhere(pm->made));
}

/* exchange_pmap_next and exchange_pmap_next_any: waits until ready(pm)
 * says an element (or the end) is there, then returns that element: the
 * lowest index not returned, or (any) the first ended and not returned. */
static int pmap_give(struct exchange_pmapper *pm, size_t *index,
		     struct exchange_outcome *outcome, int timeout_ms,
		     bool (*ready)(struct exchange_pmapper *pm), bool any)
{
	size_t k;

	if (pmap_refuse_handle(pm) < 0 ||
	    pmap_until(pm, timeout_ms, ready) < 0)
		return -1;
	if (pm->given == pm->n)
		return 0;
	k = any ? pm->order[pm->any_at] : pm->in_order;
	pm->state[k] |= PMAP_GIVEN;
	pm->given++;
	if (index)
		*index = k;
	if (outcome)
		*outcome = pm->outcomes[k];
	return 1;
}

struct exchange_pmapper *exchange_pmap_start(exchange_pmap_fn *fn,
					     const void *in, size_t n,
					     size_t in_size, void *out,
					     size_t out_size,
					     const struct exchange_pmap_options *opts)
{
	return pmap_open(fn, NULL, in, n, in_size, out, out_size, opts, true);
}

struct exchange_pmapper *
exchange_pmap_sized_start(exchange_pmap_sized_fn *fn, const void *in,
			  size_t n, size_t in_size,
			  struct exchange_result *out,
			  const struct exchange_pmap_options *opts)
{
	return pmap_open(NULL, fn, in, n, in_size, out, 0, opts, true);
}

int exchange_pmap_next(struct exchange_pmapper *pm, size_t *index,
		       struct exchange_outcome *outcome, int timeout_ms)
{
	return pmap_give(pm, index, outcome, timeout_ms, pmap_in_order_ready,
			 false);
}

int exchange_pmap_next_any(struct exchange_pmapper *pm, size_t *index,
			   struct exchange_outcome *outcome, int timeout_ms)
{
	return pmap_give(pm, index, outcome, timeout_ms, pmap_any_ready, true);
}

ssize_t exchange_pmap_wait(struct exchange_pmapper *pm, int timeout_ms)
{
	if (pmap_refuse_handle(pm) < 0 ||
	    pmap_until(pm, timeout_ms, pmap_over) < 0)
		return -1;
	return pm->ok;
}

int exchange_pmap_again(struct exchange_pmapper *pm, const void *in, size_t n,
			void *out, struct exchange_outcome *outcomes)
{
	int saved;

	if (pmap_refuse_handle(pm) < 0)
		return -1;
	if (!pmap_over(pm)) {
		errno = EBUSY;
		return -1;
	}
	if (pmap_refuse(pm, in, n, out, outcomes != NULL) < 0)
		goto empty;
	if (!pm->keep)
		pmap_stop(pm);
	if (pmap_set(pm, in, n, out, outcomes) < 0 || pmap_begin(pm) < 0)
		goto empty;
	return 0;

empty:
	/* The last map is over, and its input, results and outcomes may
	 * be gone already: none of it is handed out again. */
	saved = errno;
	pm->in = NULL;
	pm->out = NULL;
	pm->outcomes = NULL;
	pm->n = 0;
	pmap_restart(pm);
	errno = saved;
	return -1;
}

void exchange_pmap_free(struct exchange_pmapper *pm)
{
	if (!pm)
		return;
	if (pm->w)
		pmap_stop(pm);
	free(pm->w);
	free(pm->pfds);
	free(pm->who);
	free(pm->redo);
	free(pm->state);
	free(pm->order);
	free(pm->own);
	free(pm);
}

/* The blocking calls: the whole map, then the handle freed. When a poll
 * fails, the elements not ended keep their NOT_STARTED outcome. */
static ssize_t pmap_all(struct exchange_pmapper *pm)
{
	ssize_t ok;

	if (!pm)
		return -1;
	ok = exchange_pmap_wait(pm, -1);
	if (ok < 0)
		ok = pm->ok;
	exchange_pmap_free(pm);
	return ok;
}

ssize_t exchange_pmap(exchange_pmap_fn *fn, const void *in, size_t n,
		      size_t in_size, void *out, size_t out_size,
		      const struct exchange_pmap_options *opts)
{
	return pmap_all(pmap_open(fn, NULL, in, n, in_size, out, out_size,
				  opts, false));
}

ssize_t exchange_pmap_sized(exchange_pmap_sized_fn *fn, const void *in,
			    size_t n, size_t in_size,
			    struct exchange_result *out,
			    const struct exchange_pmap_options *opts)
{
	return pmap_all(pmap_open(NULL, fn, in, n, in_size, out, 0, opts,
				  false));
}
