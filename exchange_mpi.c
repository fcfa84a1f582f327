/*
 * exchange_mpi.c - the collective pmap and map-reduce of libexchange_mpi:
 * work dealt out in chunks over the ranks of a communicator, each chunk run
 * on its rank's cores with exchange's public calls (exchange_pmap, or a
 * Queue of reuse workers for the folds of a reduce).
 *
 * One call goes through these steps on every rank:
 *
 *   1. The communicator is duplicated, so that no message of ours can meet
 *      one of the caller's, and the ranks compare their arguments with one
 *      allreduce (each value and its complement under MPI_MAX give the
 *      largest and the smallest). A disagreement, or a bad argument on any
 *      rank, fails the call on every rank before anything is dealt.
 *   2. The dealing. The root's calling thread answers the other ranks: a
 *      rank sends an ASK (the report of its last chunk, followed by its
 *      outcomes and outputs), and is sent a DEAL (the next chunk, followed
 *      by its input under root_input; a chunk of no elements means there
 *      is no more work). The root's own chunks run in a thread of ours that
 *      never calls MPI and takes its chunks from the same dealer, under the
 *      dealer's lock. After the first failure on any rank the dealer hands
 *      out nothing more.
 *   3. The root sends every rank the outcome of the call (the count, or the
 *      errno and the text of the failure), so that all return the same;
 *      then, as asked, the results go to every rank, or the reduce's values
 *      are combined on the root.
 *
 * A chunk for another rank is never larger than a bound every rank can
 * compute (xm_bound), so a rank allocates its buffers once, before it asks
 * for work, and never meets a message it has no room for.
 *
 * Waits that may be long (for the next request on the root, for the other
 * ranks to arrive, for the slowest rank at the end) are MPI_Test or
 * MPI_Iprobe with a sleep that grows to 1 ms, so a waiting rank leaves its
 * node's cores to the workers; a hand-out is answered within that. Payloads
 * move with blocking calls: their other side is already there.
 */
#include "exchange_mpi.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Message tags on the duplicated communicator. */
enum {
	XM_TAG_ASK = 1,		/* rank to root: a report and a request */
	XM_TAG_OUTCOMES,	/* rank to root: the report's outcomes */
	XM_TAG_OUTPUT,		/* rank to root: the report's outputs */
	XM_TAG_DEAL,		/* root to rank: the next chunk */
	XM_TAG_INPUT,		/* root to rank: that chunk's input */
	XM_TAG_VALUE,		/* rank to root: a reduce's value */
};

/* The calls, so that ranks calling different ones are told so. */
enum xm_kind { XM_PMAP = 1, XM_REDUCE, XM_REDUCE_OP };

/* The largest payload of one chunk's message (outputs, outcomes, input):
 * well below INT_MAX bytes, MPI's count. */
#define XM_MAX_MSG ((size_t)64 << 20)
/* The pieces a reduce's value travels in, and a broadcast's. */
#define XM_PIECE ((size_t)64 << 10)
#define XM_BCAST_PIECE ((size_t)1 << 30)

/* What the ranks' arguments are compared on (step 1), in this order. */
enum {
	XM_ARG_KIND, XM_ARG_N, XM_ARG_IN_SIZE, XM_ARG_OUT_SIZE, XM_ARG_ROOT,
	XM_ARG_EVERYWHERE, XM_ARG_ROOT_INPUT, XM_ARG_CHUNK, XM_ARG_COUNT,
	XM_ARG_VSIZE,
	XM_ARG_BAD,	/* a rank's own complaint: reason << 32 | rank + 1 */
	XM_ARG_WANT,	/* the root has outcomes to fill: 1 */
	XM_NARGS
};

static const char *const xm_arg_name[XM_NARGS] = {
	"the call (1 _pmap, 2 _reduce, 3 _reduce_op)",
	"n", "in_size", "out_size", "root", "everywhere", "root_input",
	"chunk", "count", "sizes of the type", "", "",
};

/* Why a rank's own arguments are bad (XM_ARG_BAD), so that every rank can
 * say it. */
enum xm_bad {
	XM_OK = 0, XM_BAD_FN, XM_BAD_SIZE, XM_BAD_IN, XM_BAD_OUT, XM_BAD_ROOT,
	XM_BAD_NEGATIVE, XM_BAD_VALUE, XM_BAD_TYPE, XM_BAD_MEMORY,
};

static const char *const xm_bad_text[] = {
	"", "no function given", "a size is too large",
	"in is NULL, and this rank reads the input",
	"out is NULL, and this rank receives the results",
	"root is not a rank of the communicator",
	"workers or time_limit_ms is below zero",
	"value or len is NULL", "count is below one, or the type is empty",
	"out of memory",
};

/* The head of an ASK or a DEAL; the payload follows in messages of its
 * own. */
struct xm_head {
	uint64_t start;		/* first element of the chunk */
	uint64_t count;		/* its elements; a DEAL of 0: no more work */
	uint64_t ok;		/* ASK: elements of the chunk that succeeded */
	int32_t err;		/* ASK: errno of the rank's failure, or 0 */
	int32_t workers;	/* ASK: the rank's workers, for chunk sizes */
	char text[200];		/* ASK: the failure, when err is set */
};

/* What the root tells every rank at the end of the dealing. */
struct xm_status {
	int64_t ok;		/* elements that succeeded, or -1 */
	int32_t err;		/* errno when ok is -1 */
	int32_t pad;		/* zero */
	uint64_t len;		/* reduce: the length of the value */
	char text[200];		/* the failure, as exchange_mpi_error says it */
};

/* One collective call on one rank. */
struct xm {
	enum xm_kind kind;	/* which call */
	MPI_Comm comm;		/* the duplicated communicator */
	int rank, size, root;	/* this rank, how many, the dealer */
	int workers;		/* this rank's worker processes */
	size_t n;		/* elements */
	size_t in_size;		/* bytes per input element */
	size_t out_size;	/* bytes per output element (pmap) */
	const unsigned char *in;/* the input on this rank, or NULL */
	unsigned char *out;	/* the output on this rank, or NULL */
	struct exchange_outcome *outcomes; /* the caller's here, or NULL */
	bool want;		/* the root fills outcomes: ranks send them */
	struct exchange_mpi_options o; /* the options */
	exchange_pmap_fn *fn;	/* pmap's function */
	exchange_mpi_fold_fn *fold; /* the reduces' fold */
	exchange_mpi_combine_fn *combine; /* reduce over bytes */
	MPI_Datatype type;	/* reduce_op: the items */
	MPI_Op op;		/* reduce_op: how they combine */
	int count;		/* reduce_op: items per value */
	size_t vsize;		/* reduce_op: bytes per value */

	pthread_mutex_t lock;	/* the fields below, shared with the root's
				   thread */
	size_t next;		/* the first element not dealt yet */
	ssize_t ok;		/* elements that succeeded, over the ranks */
	int err;		/* the first failure's errno, or 0 */
	char text[200];		/* what that failure was */

	/* Only the thread running this rank's chunks touches these until
	 * the dealing is over. */
	void *value;		/* reduce: this rank's value so far, or NULL */
	size_t vlen;		/* its length */
	void **vals;		/* reduce_op: the pieces' values to combine */
	size_t nvals, capvals;	/* how many, and room */
	struct exchange_pmapper *pm; /* pmap: the workers kept from one chunk
				   to the next, or NULL */
};

/* Input elements up to this size travel to kept workers with each batch;
 * larger ones are read from workers forked for each chunk. */
#define XM_KEEP_IN_SIZE (64u << 10)

/* What a worker of a reduce needs to fold a piece: it reads this from its
 * copy of the rank's memory. */
struct xm_foldctx {
	exchange_mpi_fold_fn *fold; /* the user's */
	const unsigned char *in;/* the input of element first_in, or the
				   array pointer itself when in_size is 0 */
	size_t first_in;	/* the element in points to */
	size_t in_size;		/* bytes per element */
	void *ctx;		/* the user's */
};

/* A piece of a reduce, as it travels to a worker. */
struct xm_piece {
	uint64_t first;		/* its first element */
	uint64_t count;		/* its elements */
};

static _Thread_local char xm_error_text[200];

const char *exchange_mpi_error(void)
{
	return xm_error_text;
}

/* Records a failure of the call: the first one is kept, with its text.
 * Either thread of the root may call it. */
static void xm_fail(struct xm *x, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&x->lock);
	if (!x->err) {
		x->err = err ? err : EIO;
		va_start(ap, fmt);
		vsnprintf(x->text, sizeof(x->text), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&x->lock);
}

/* ------------------------------------------------------------------------ */
/* Waiting without spinning, and bytes of any length                        */
/* ------------------------------------------------------------------------ */

/* Sleeps *ns nanoseconds, then doubles *ns up to 1 ms. */
static void xm_nap(long *ns)
{
	struct timespec ts = { 0, *ns };

	nanosleep(&ts, NULL);
	if (*ns < 1000000)
		*ns *= 2;
}

static void xm_wait(MPI_Request *req)
{
	long ns = 2000;
	int done = 0;

	for (;;) {
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (done)
			return;
		xm_nap(&ns);
	}
}

/* len bytes in messages of at most piece bytes (one message of 0 bytes
 * when len is 0, so that the two sides always agree on the count). */
static void xm_send_bytes(const void *buf, size_t len, size_t piece,
			  int dest, int tag, MPI_Comm comm)
{
	const unsigned char *p = buf;

	do {
		size_t k = len < piece ? len : piece;

		MPI_Send(p, (int)k, MPI_BYTE, dest, tag, comm);
		p += k;
		len -= k;
	} while (len);
}

/* The receiving side; buf NULL throws the bytes away a piece at a time
 * (piece is then at most XM_PIECE). */
static void xm_recv_bytes(void *buf, size_t len, size_t piece, int src,
			  int tag, MPI_Comm comm)
{
	unsigned char *p = buf, sink[XM_PIECE];

	do {
		size_t k = len < piece ? len : piece;

		MPI_Recv(p ? p : sink, (int)k, MPI_BYTE, src, tag, comm,
			 MPI_STATUS_IGNORE);
		if (p)
			p += k;
		len -= k;
	} while (len);
}

static void xm_bcast_bytes(void *buf, size_t len, int root, MPI_Comm comm)
{
	unsigned char *p = buf;

	while (len) {
		size_t k = len < XM_BCAST_PIECE ? len : XM_BCAST_PIECE;

		MPI_Bcast(p, (int)k, MPI_BYTE, root, comm);
		p += k;
		len -= k;
	}
}

/* ------------------------------------------------------------------------ */
/* Step 1: the arguments                                                    */
/* ------------------------------------------------------------------------ */

/* 1 if a * b would be above limit. */
static int xm_over(size_t a, size_t b, size_t limit)
{
	return b && a > limit / b;
}

/* The largest chunk the dealer gives a rank other than the root with the
 * given number of workers: what its buffers must hold. xm_take keeps to
 * it. */
static size_t xm_bound(const struct xm *x, int workers)
{
	size_t w = workers > 0 ? (size_t)workers : 1, k, most;
	size_t per = (x->want ? sizeof(struct exchange_outcome) : 0) +
		     x->out_size;

	if (x->o.chunk)
		k = x->o.chunk;
	else {
		k = (x->n + 2 * (size_t)x->size - 1) / (2 * (size_t)x->size);
		if (k < w)
			k = w;
	}
	if (k > x->n)
		k = x->n;
	most = per ? XM_MAX_MSG / per : k;
	if (x->o.root_input && x->in_size && XM_MAX_MSG / x->in_size < most)
		most = XM_MAX_MSG / x->in_size;
	if (most == 0)
		most = 1;
	return k < most ? k : most;
}

/* This rank's own check of its arguments. */
static enum xm_bad xm_check(const struct xm *x, bool have_fn)
{
	bool gather = x->rank == x->o.root || x->o.everywhere;
	bool reads = !x->o.root_input || x->rank == x->o.root;

	if (!have_fn)
		return XM_BAD_FN;
	if (x->o.root < 0 || x->o.root >= x->size)
		return XM_BAD_ROOT;
	if (x->o.workers < 0 || x->o.time_limit_ms < 0)
		return XM_BAD_NEGATIVE;
	if (x->n > SSIZE_MAX || x->in_size > PTRDIFF_MAX ||
	    xm_over(x->n, x->in_size, PTRDIFF_MAX) ||
	    xm_over(x->n, x->out_size, PTRDIFF_MAX) ||
	    xm_over(x->n, sizeof(struct exchange_outcome), PTRDIFF_MAX) ||
	    x->out_size >= CHANNEL_MAX_DEFAULT - 1)
		return XM_BAD_SIZE;
	if (x->n && x->in_size && !x->in && reads)
		return XM_BAD_IN;
	if (x->n && x->out_size && !x->out && gather)
		return XM_BAD_OUT;
	return XM_OK;
}

/* Duplicates the communicator and compares the ranks' arguments (step 1).
 * Returns 0, or -1 with errno EINVAL and the text set, on every rank; the
 * duplicate is made either way (x->comm), for xm_done to free. */
static int xm_agree(struct xm *x, MPI_Comm comm, enum xm_bad bad)
{
	uint64_t v[2 * XM_NARGS], r[2 * XM_NARGS];
	MPI_Request req;
	int i;

	MPI_Comm_idup(comm, &x->comm, &req);
	xm_wait(&req);
	memset(v, 0, sizeof(v));
	v[XM_ARG_KIND] = (uint64_t)x->kind;
	v[XM_ARG_N] = x->n;
	v[XM_ARG_IN_SIZE] = x->in_size;
	v[XM_ARG_OUT_SIZE] = x->out_size;
	v[XM_ARG_ROOT] = (uint64_t)(int64_t)x->o.root;
	v[XM_ARG_EVERYWHERE] = x->o.everywhere;
	v[XM_ARG_ROOT_INPUT] = x->o.root_input;
	v[XM_ARG_CHUNK] = x->o.chunk;
	v[XM_ARG_COUNT] = (uint64_t)(int64_t)x->count;
	v[XM_ARG_VSIZE] = x->vsize;
	for (i = 0; i < XM_NARGS; i++)
		v[XM_NARGS + i] = ~v[i];
	/* These two are taken by their largest only. */
	v[XM_ARG_BAD] = bad ? (uint64_t)bad << 32 | (uint64_t)(x->rank + 1) : 0;
	v[XM_ARG_WANT] = x->rank == x->o.root && x->o.outcomes;
	v[XM_NARGS + XM_ARG_BAD] = v[XM_NARGS + XM_ARG_WANT] = 0;
	MPI_Iallreduce(v, r, 2 * XM_NARGS, MPI_UINT64_T, MPI_MAX, x->comm,
		       &req);
	xm_wait(&req);
	x->want = r[XM_ARG_WANT] != 0;
	for (i = 0; i < XM_ARG_BAD; i++) {
		uint64_t hi = r[i], lo = ~r[XM_NARGS + i];

		if (hi == lo)
			continue;
		snprintf(xm_error_text, sizeof(xm_error_text),
			 "the ranks disagree on %s: from %llu to %llu",
			 xm_arg_name[i], (unsigned long long)lo,
			 (unsigned long long)hi);
		errno = EINVAL;
		return -1;
	}
	if (r[XM_ARG_BAD]) {
		unsigned reason = (unsigned)(r[XM_ARG_BAD] >> 32);

		snprintf(xm_error_text, sizeof(xm_error_text), "rank %u: %s",
			 (unsigned)(r[XM_ARG_BAD] & 0xffffffffu) - 1,
			 reason < sizeof(xm_bad_text) / sizeof(*xm_bad_text) ?
			 xm_bad_text[reason] : "bad arguments");
		errno = reason == XM_BAD_MEMORY ? ENOMEM : EINVAL;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Running one chunk on this rank                                           */
/* ------------------------------------------------------------------------ */

/* The input of element k when in holds element first_in onwards: the
 * array pointer itself when elements have no bytes. */
static const unsigned char *xm_at(const unsigned char *in, size_t in_size,
				  size_t first_in, size_t k)
{
	return in_size ? in + (k - first_in) * in_size : in;
}

static int xm_run_pmap(struct xm *x, size_t start, size_t count,
		       const unsigned char *in, unsigned char *out,
		       struct exchange_outcome *oc, size_t *ok)
{
	struct exchange_pmap_options po = { 0 };
	ssize_t k;

	po.workers = x->workers;
	po.batch = x->o.batch;
	po.ctx = x->o.ctx;
	po.outcomes = oc;
	po.time_limit_ms = x->o.time_limit_ms;
	/* The rank's workers are forked for its first chunk and kept for
	 * the others: a chunk then costs messages, not forks. Each batch
	 * carries its input, so a chunk sent with root_input is seen. */
	po.keep_workers = x->in_size <= XM_KEEP_IN_SIZE;
	if (!po.keep_workers) {
		k = exchange_pmap(x->fn, in, count, x->in_size, out,
				  x->out_size, &po);
	} else if (!x->pm) {
		x->pm = exchange_pmap_start(x->fn, in, count, x->in_size, out,
					    x->out_size, &po);
		k = x->pm ? exchange_pmap_wait(x->pm, -1) : -1;
	} else {
		k = exchange_pmap_again(x->pm, in, count, out, oc) < 0
			    ? -1
			    : exchange_pmap_wait(x->pm, -1);
	}
	if (k < 0) {
		int e = errno;

		xm_fail(x, e, "rank %d: exchange_pmap of elements %zu to %zu: "
			"%s", x->rank, start, start + count - 1, strerror(e));
		errno = e;
		return -1;
	}
	*ok = (size_t)k;
	return 0;
}

/* In a worker of a reduce: one piece's fold. */
static void *xm_fold_task(const void *arg, size_t len, size_t *rlen,
			  void *ctx)
{
	const struct xm_foldctx *f = ctx;
	struct xm_piece p;

	if (len != sizeof(p)) {
		errno = EPROTO;
		return NULL;
	}
	memcpy(&p, arg, sizeof(p));
	return f->fold(xm_at(f->in, f->in_size, f->first_in, (size_t)p.first),
		       (size_t)p.first, (size_t)p.count, rlen, f->ctx);
}

/* Takes a value (ours to free) into this rank's: combined at once over
 * bytes, kept for MPI_Reduce_local with an MPI_Op (which only the thread
 * that calls MPI may call). 0, or -1 with the failure recorded. */
static int xm_take_value(struct xm *x, void *v, size_t len)
{
	size_t clen = 0;
	void *c;

	if (x->kind == XM_REDUCE_OP) {
		if (len != x->vsize) {
			free(v);
			xm_fail(x, EINVAL, "rank %d: fold returned %zu bytes, "
				"not count items of the type (%zu)", x->rank,
				len, x->vsize);
			return -1;
		}
		if (x->nvals == x->capvals) {
			size_t cap = x->capvals ? 2 * x->capvals : 16;
			void **p = realloc(x->vals, cap * sizeof(*p));

			if (!p) {
				free(v);
				xm_fail(x, ENOMEM, "rank %d: out of memory",
					x->rank);
				return -1;
			}
			x->vals = p;
			x->capvals = cap;
		}
		x->vals[x->nvals++] = v;
		return 0;
	}
	if (!x->value) {
		x->value = v;
		x->vlen = len;
		return 0;
	}
	errno = 0;
	c = x->combine(x->value, x->vlen, v, len, &clen, x->o.ctx);
	free(v);
	if (!c) {
		int e = errno ? errno : EIO;

		xm_fail(x, e, "rank %d: combine failed: %s", x->rank,
			strerror(e));
		return -1;
	}
	free(x->value);
	x->value = c;
	x->vlen = clen;
	return 0;
}

/* The outcome of an element whose fold failed on its own: a reuse worker
 * lost with it is reported as pmap reports its dead worker. */
static struct exchange_outcome xm_outcome(int cause, int code)
{
	struct exchange_outcome o = { cause, code };

	if (cause == CHANNEL_LOST && code > 0 && code < 256) {
		o.cause = CHANNEL_SIGNALED;
	} else if (cause == CHANNEL_LOST && code >= 256) {
		o.cause = CHANNEL_EXITED;
		o.code = code - 256;
	}
	return o;
}

/* Appends a piece to the list and starts it; task t of the queue is
 * piece t. 0 or -1. */
static int xm_start_piece(struct exchange *q, struct xm_piece **pieces,
			  size_t *n, size_t *cap, struct xm_piece p,
			  struct xm_foldctx *f)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 64;
		struct xm_piece *np = realloc(*pieces, c * sizeof(*np));

		if (!np)
			return -1;
		*pieces = np;
		*cap = c;
	}
	(*pieces)[(*n)++] = p;
	return exchange_start_plain(q, xm_fold_task, &p, sizeof(p), f) < 0 ?
	       -1 : 0;
}

/* Runs one chunk of a reduce: its pieces as plain functions on a Queue of
 * reuse workers (a Queue per chunk, so that every worker is forked after
 * the chunk's input is in place), each value taken as it comes; a failed
 * piece of several elements runs again one element at a time. */
static int xm_run_reduce(struct xm *x, size_t start, size_t count,
			 const unsigned char *in, struct exchange_outcome *oc,
			 size_t *ok)
{
	struct exchange_options eo = { 0 };
	struct xm_foldctx f = { x->fold, in, start, x->in_size, x->o.ctx };
	struct xm_piece *pieces = NULL;
	size_t npieces = 0, cap = 0, per, i, failed = 0;
	struct exchange *q = NULL;
	struct channel_msg m;
	int r, st = 0, e;

	per = x->o.batch ? x->o.batch :
	      (count + 2 * (size_t)x->workers - 1) / (2 * (size_t)x->workers);
	if (per == 0)
		per = 1;
	eo.limit = x->workers;
	eo.reuse = true;
	eo.time_limit_ms = x->o.time_limit_ms;
	q = exchange_new_queue(&eo);
	if (!q)
		goto fail;
	for (i = 0; i < count; i += per) {
		struct xm_piece p = { start + i, count - i < per ? count - i :
					per };

		if (xm_start_piece(q, &pieces, &npieces, &cap, p, &f) < 0)
			goto fail;
	}
	while ((r = exchange_queue_next(q, &m, -1)) == 1) {
		struct xm_piece p;

		if (m.task >= npieces) {
			channel_msg_free(&m);
			errno = EPROTO;
			goto fail;
		}
		p = pieces[m.task];
		if (m.kind == CHANNEL_DATA) {
			/* The message's data becomes the value. */
			if (xm_take_value(x, m.data, m.len) < 0)
				st = -1;
			continue;
		}
		channel_msg_free(&m);
		if (p.count == 1) {
			if (oc)
				oc[p.first - start] = xm_outcome(m.cause,
								 m.code);
			failed++;
			continue;
		}
		for (i = 0; i < p.count; i++) {
			struct xm_piece one = { p.first + i, 1 };

			if (xm_start_piece(q, &pieces, &npieces, &cap, one,
					   &f) < 0)
				goto fail;
		}
	}
	if (r < 0)
		goto fail;
	exchange_free(q);
	free(pieces);
	*ok = count - failed;
	return st;
fail:
	e = errno;
	exchange_free(q);
	free(pieces);
	xm_fail(x, e, "rank %d: the folds of elements %zu to %zu: %s",
		x->rank, start, start + count - 1, strerror(e));
	errno = e;
	return -1;
}

/* Runs one chunk: in is the input of element start (or the array pointer
 * when elements have no bytes); out and oc receive count results and
 * outcomes (either may be NULL). */
static int xm_run(struct xm *x, size_t start, size_t count,
		  const unsigned char *in, unsigned char *out,
		  struct exchange_outcome *oc, size_t *ok)
{
	size_t i;

	*ok = 0;
	for (i = 0; oc && i < count; i++)
		oc[i] = (struct exchange_outcome){ CHANNEL_OK, 0 };
	if (x->kind == XM_PMAP)
		return xm_run_pmap(x, start, count, in, out, oc, ok);
	return xm_run_reduce(x, start, count, in, oc, ok);
}

/* ------------------------------------------------------------------------ */
/* Step 2: the dealing                                                      */
/* ------------------------------------------------------------------------ */

/* The next chunk for a rank with the given workers: its start in *start,
 * its size returned (0: no more work). remote: for a rank other than the
 * root, whose chunks keep to xm_bound. */
static size_t xm_take(struct xm *x, int workers, bool remote, size_t *start)
{
	size_t left, k, w = workers > 0 ? (size_t)workers : 1;

	pthread_mutex_lock(&x->lock);
	left = x->n - x->next;
	if (x->err || left == 0) {
		k = 0;
	} else if (x->o.chunk) {
		k = x->o.chunk;
	} else if (x->size == 1) {
		k = left;
	} else {
		/* Guided: a share of what is left (the first round deals
		 * about half the work), but a worker's worth at least. */
		k = (left + 2 * (size_t)x->size - 1) / (2 * (size_t)x->size);
		if (k < w)
			k = w;
	}
	if (k > left)
		k = left;
	if (remote && k > xm_bound(x, workers))
		k = xm_bound(x, workers);
	*start = x->next;
	x->next += k;
	pthread_mutex_unlock(&x->lock);
	return k;
}

/* The root's own share: chunks from the dealer until none is left (in a
 * thread of its own, which makes no MPI call, when there are other
 * ranks). */
static void *xm_root_share(void *arg)
{
	struct xm *x = arg;
	size_t start, count, ok;

	while ((count = xm_take(x, x->workers, false, &start)) > 0) {
		int r;

		r = xm_run(x, start, count, xm_at(x->in, x->in_size, 0, start),
			   x->out_size ? x->out + start * x->out_size : NULL,
			   x->outcomes ? x->outcomes + start : NULL, &ok);
		pthread_mutex_lock(&x->lock);
		if (r == 0)
			x->ok += (ssize_t)ok;
		pthread_mutex_unlock(&x->lock);
	}
	return NULL;
}

/* The root's calling thread: answers every other rank until each has been
 * told there is no more work. */
static void xm_deal(struct xm *x)
{
	int left = x->size - 1;
	bool thread = false;
	pthread_t th;

	if (x->size > 1) {
		int e = pthread_create(&th, NULL, xm_root_share, x);

		if (e == 0)
			thread = true;
		else
			xm_fail(x, e, "rank %d: no thread for its own share: "
				"%s", x->rank, strerror(e));
	} else {
		xm_root_share(x);
	}
	while (left > 0) {
		struct xm_head h, d;
		MPI_Status st;
		long ns = 2000;
		int flag = 0, src;
		size_t start, count;

		for (;;) {
			MPI_Iprobe(MPI_ANY_SOURCE, XM_TAG_ASK, x->comm, &flag,
				   &st);
			if (flag)
				break;
			xm_nap(&ns);
		}
		src = st.MPI_SOURCE;
		MPI_Recv(&h, (int)sizeof(h), MPI_BYTE, src, XM_TAG_ASK, x->comm,
			 MPI_STATUS_IGNORE);
		if (h.count) {
			/* The report's outcomes and outputs, into place. A
			 * rank sends only a chunk it was dealt, which the
			 * root's thread never writes. */
			if (x->want)
				xm_recv_bytes(x->outcomes + h.start,
					      h.count * sizeof(*x->outcomes),
					      XM_MAX_MSG, src, XM_TAG_OUTCOMES,
					      x->comm);
			if (x->out_size)
				xm_recv_bytes(x->out + h.start * x->out_size,
					      h.count * x->out_size,
					      XM_MAX_MSG, src, XM_TAG_OUTPUT,
					      x->comm);
		}
		pthread_mutex_lock(&x->lock);
		x->ok += (ssize_t)h.ok;
		pthread_mutex_unlock(&x->lock);
		if (h.err) {
			h.text[sizeof(h.text) - 1] = '\0';
			xm_fail(x, h.err, "%s", h.text);
		}
		count = xm_take(x, h.workers, true, &start);
		memset(&d, 0, sizeof(d));
		d.start = start;
		d.count = count;
		MPI_Send(&d, (int)sizeof(d), MPI_BYTE, src, XM_TAG_DEAL,
			 x->comm);
		if (count && x->o.root_input && x->in_size)
			xm_send_bytes(x->in + start * x->in_size,
				      count * x->in_size, XM_MAX_MSG, src,
				      XM_TAG_INPUT, x->comm);
		if (!count)
			left--;
	}
	if (thread)
		pthread_join(th, NULL);
}

/* Another rank: asks, runs what it is dealt, reports, until it is dealt
 * nothing. A failure is reported, and the dealer then deals nothing more;
 * so is a want of memory for the buffers, before anything is dealt. */
static void xm_work(struct xm *x)
{
	size_t bound = xm_bound(x, x->workers);
	struct exchange_outcome *oc = NULL;
	unsigned char *out = NULL, *in = NULL;
	struct xm_head h;

	memset(&h, 0, sizeof(h));
	h.workers = x->workers;
	oc = malloc(bound * sizeof(*oc) + 1);
	if (x->out_size)
		out = malloc(bound * x->out_size);
	if (x->o.root_input && x->in_size)
		in = malloc(bound * x->in_size);
	if (!oc || (x->out_size && !out) ||
	    (x->o.root_input && x->in_size && !in)) {
		h.err = ENOMEM;
		snprintf(h.text, sizeof(h.text), "rank %d: no memory for "
			 "chunks of %zu elements", x->rank, bound);
	}
	for (;;) {
		struct xm_head d;
		const unsigned char *cin;
		size_t ok = 0;

		MPI_Send(&h, (int)sizeof(h), MPI_BYTE, x->root, XM_TAG_ASK,
			 x->comm);
		if (h.count) {
			if (x->want)
				xm_send_bytes(oc, h.count * sizeof(*oc),
					      XM_MAX_MSG, x->root,
					      XM_TAG_OUTCOMES, x->comm);
			if (x->out_size)
				xm_send_bytes(out, h.count * x->out_size,
					      XM_MAX_MSG, x->root,
					      XM_TAG_OUTPUT, x->comm);
		}
		MPI_Recv(&d, (int)sizeof(d), MPI_BYTE, x->root, XM_TAG_DEAL,
			 x->comm, MPI_STATUS_IGNORE);
		if (d.count == 0)
			break;
		cin = xm_at(x->in, x->in_size, 0, (size_t)d.start);
		if (x->o.root_input && x->in_size) {
			xm_recv_bytes(in, d.count * x->in_size, XM_MAX_MSG,
				      x->root, XM_TAG_INPUT, x->comm);
			cin = in;
		}
		h.start = d.start;
		h.count = d.count;
		h.err = 0;
		if (xm_run(x, (size_t)d.start, (size_t)d.count, cin, out, oc,
			   &ok) < 0) {
			h.err = x->err;
			snprintf(h.text, sizeof(h.text), "%s", x->text);
		}
		h.ok = ok;
	}
	free(in);
	free(oc);
	free(out);
}

/* Step 3's first half: the root tells every rank how the dealing went
 * (and, with value, a reduce's length of the value: x->vlen). Returns 0
 * with x->ok set, or -1 with errno and the text set, on every rank. */
static int xm_settle(struct xm *x, bool value)
{
	struct xm_status s;
	MPI_Request req;

	memset(&s, 0, sizeof(s));
	if (x->rank == x->root) {
		s.ok = x->err ? -1 : (int64_t)x->ok;
		s.err = x->err;
		s.len = x->vlen;
		snprintf(s.text, sizeof(s.text), "%s", x->text);
	}
	MPI_Ibcast(&s, (int)sizeof(s), MPI_BYTE, x->root, x->comm, &req);
	xm_wait(&req);
	if (s.ok < 0) {
		snprintf(xm_error_text, sizeof(xm_error_text), "%s", s.text);
		errno = s.err ? s.err : EIO;
		return -1;
	}
	x->ok = (ssize_t)s.ok;
	if (value)
		x->vlen = (size_t)s.len;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The calls                                                                */
/* ------------------------------------------------------------------------ */

/* Fills what every call shares; the caller sets the rest. */
static void xm_init(struct xm *x, enum xm_kind kind, const void *in,
		    size_t n, size_t in_size,
		    const struct exchange_mpi_options *opts, MPI_Comm comm)
{
	memset(x, 0, sizeof(*x));
	x->kind = kind;
	x->comm = MPI_COMM_NULL;
	x->in = in;
	x->n = n;
	x->in_size = in_size;
	if (opts)
		x->o = *opts;
	MPI_Comm_rank(comm, &x->rank);
	MPI_Comm_size(comm, &x->size);
	x->root = x->o.root;
	x->workers = x->o.workers > 0 ? x->o.workers : exchange_cores();
	if (x->rank == x->root || x->o.everywhere)
		x->outcomes = x->o.outcomes;
	pthread_mutex_init(&x->lock, NULL);
}

static void xm_done(struct xm *x)
{
	size_t i;

	if (x->comm != MPI_COMM_NULL)
		MPI_Comm_free(&x->comm);
	for (i = 0; i < x->nvals; i++)
		free(x->vals[i]);
	free(x->vals);
	free(x->value);
	exchange_pmap_free(x->pm);
	pthread_mutex_destroy(&x->lock);
}

/* Steps 1 and 2 and the settling, the same for every call: 0 with x->ok
 * set, or -1 with errno, on every rank. */
static int xm_collect(struct xm *x, MPI_Comm comm, enum xm_bad bad)
{
	if (xm_agree(x, comm, bad) < 0)
		return -1;
	if (x->n == 0)
		return 0;
	if (x->rank == x->root)
		xm_deal(x);
	else
		xm_work(x);
	return xm_settle(x, false);
}

/* With everywhere: the root's outcomes to every rank, in pieces a rank
 * with no outcomes array can take on its stack. */
static void xm_spread_outcomes(struct xm *x)
{
	struct exchange_outcome sink[8192];
	size_t i, k;

	if (!x->o.everywhere || x->size == 1 || !x->want)
		return;
	for (i = 0; i < x->n; i += k) {
		k = x->n - i < 8192 ? x->n - i : 8192;
		MPI_Bcast(x->outcomes ? x->outcomes + i : sink,
			  (int)(k * sizeof(*sink)), MPI_BYTE, x->root, x->comm);
	}
}

ssize_t exchange_mpi_pmap(exchange_pmap_fn *fn, const void *in, size_t n,
			  size_t in_size, void *out, size_t out_size,
			  const struct exchange_mpi_options *opts,
			  MPI_Comm comm)
{
	ssize_t ret = -1;
	struct xm x;
	int e;

	xm_error_text[0] = '\0';
	xm_init(&x, XM_PMAP, in, n, in_size, opts, comm);
	x.fn = fn;
	x.out = out;
	x.out_size = out_size;
	if (xm_collect(&x, comm, xm_check(&x, fn != NULL)) < 0)
		goto out;
	if (x.o.everywhere && x.size > 1 && n && out_size)
		xm_bcast_bytes(out, n * out_size, x.root, x.comm);
	if (n)
		xm_spread_outcomes(&x);
	ret = x.ok;
out:
	e = errno;
	xm_done(&x);
	errno = e;
	return ret;
}

/* The value of no elements, from fold in this process. 0 or -1 (the
 * failure recorded). */
static int xm_identity(struct xm *x, void **v, size_t *len)
{
	errno = 0;
	*len = 0;
	*v = x->fold(x->in, 0, 0, len, x->o.ctx);
	if (!*v) {
		int e = errno ? errno : EIO;

		xm_fail(x, e, "rank %d: fold of no elements failed: %s",
			x->rank, strerror(e));
		return -1;
	}
	return 0;
}

/* A reduce over bytes, after the dealing: every other rank sends its
 * value (or that it has none) to the root, which combines them in rank
 * order after its own. */
static void xm_gather_values(struct xm *x)
{
	uint64_t len;
	int r;

	if (x->rank != x->root) {
		len = x->value ? x->vlen : UINT64_MAX;
		MPI_Send(&len, 1, MPI_UINT64_T, x->root, XM_TAG_VALUE, x->comm);
		if (x->value)
			xm_send_bytes(x->value, x->vlen, XM_PIECE, x->root,
				      XM_TAG_VALUE, x->comm);
		return;
	}
	for (r = 0; r < x->size; r++) {
		void *buf = NULL;

		if (r == x->root)
			continue;
		MPI_Recv(&len, 1, MPI_UINT64_T, r, XM_TAG_VALUE, x->comm,
			 MPI_STATUS_IGNORE);
		if (len == UINT64_MAX)
			continue;
		if (!x->err && len <= SIZE_MAX - 1) {
			buf = malloc(len ? (size_t)len : 1);
			if (!buf)
				xm_fail(x, ENOMEM, "rank %d: no memory for the "
					"value of rank %d", x->rank, r);
		}
		/* Without a buffer the bytes are taken and dropped. */
		xm_recv_bytes(buf, (size_t)len, XM_PIECE, r, XM_TAG_VALUE,
			      x->comm);
		if (buf)
			xm_take_value(x, buf, (size_t)len);
	}
	if (!x->err && !x->value)
		xm_identity(x, &x->value, &x->vlen);
}

ssize_t exchange_mpi_reduce(exchange_mpi_fold_fn *fold, const void *in,
			    size_t n, size_t in_size,
			    exchange_mpi_combine_fn *combine, void **value,
			    size_t *len, const struct exchange_mpi_options *opts,
			    MPI_Comm comm)
{
	enum xm_bad bad;
	ssize_t ret = -1;
	struct xm x;
	bool gather;
	int e;

	xm_error_text[0] = '\0';
	xm_init(&x, XM_REDUCE, in, n, in_size, opts, comm);
	x.fold = fold;
	x.combine = combine;
	gather = x.rank == x.root || x.o.everywhere;
	if (value)
		*value = NULL;
	if (len)
		*len = 0;
	bad = xm_check(&x, fold && combine);
	if (!bad && gather && (!value || !len))
		bad = XM_BAD_VALUE;
	if (xm_collect(&x, comm, bad) < 0)
		goto out;
	xm_gather_values(&x);
	/* The second settling: whether the root could combine. */
	if (xm_settle(&x, true) < 0)
		goto out;
	if (x.o.everywhere && x.size > 1) {
		size_t i, k;

		if (x.rank != x.root) {
			free(x.value);
			x.value = malloc(x.vlen ? x.vlen : 1);
			if (!x.value)
				x.err = ENOMEM;
		}
		for (i = 0; i < x.vlen; i += k) {
			unsigned char sink[XM_PIECE];

			k = x.vlen - i < XM_PIECE ? x.vlen - i : XM_PIECE;
			MPI_Bcast(x.value ? (unsigned char *)x.value + i :
				  sink, (int)k, MPI_BYTE, x.root, x.comm);
		}
	}
	xm_spread_outcomes(&x);
	if (!gather) {
		ret = x.ok;
		goto out;
	}
	if (!x.value) {
		snprintf(xm_error_text, sizeof(xm_error_text),
			 "rank %d: no memory for the value (%zu bytes)",
			 x.rank, x.vlen);
		errno = ENOMEM;
		goto out;
	}
	*value = x.value;
	*len = x.vlen;
	x.value = NULL;
	ret = x.ok;
out:
	e = errno;
	xm_done(&x);
	errno = e;
	return ret;
}

ssize_t exchange_mpi_reduce_op(exchange_mpi_fold_fn *fold, const void *in,
			       size_t n, size_t in_size, void *value,
			       int count, MPI_Datatype type, MPI_Op op,
			       const struct exchange_mpi_options *opts,
			       MPI_Comm comm)
{
	MPI_Aint lb = 0, extent = 0;
	enum xm_bad bad;
	ssize_t ret = -1;
	MPI_Request req;
	void *acc = NULL;
	struct xm x;
	int e, tsize = 0, mine[2], all[2];
	size_t i, alen;

	xm_error_text[0] = '\0';
	xm_init(&x, XM_REDUCE_OP, in, n, in_size, opts, comm);
	x.fold = fold;
	x.type = type;
	x.op = op;
	x.count = count;
	MPI_Type_size(type, &tsize);
	MPI_Type_get_extent(type, &lb, &extent);
	if (count > 0 && extent > 0)
		x.vsize = (size_t)count * (size_t)extent;
	bad = xm_check(&x, fold != NULL);
	if (!bad && (count < 1 || tsize <= 0 || extent <= 0))
		bad = XM_BAD_TYPE;
	if (!bad && !value && (x.rank == x.root || x.o.everywhere))
		bad = XM_BAD_VALUE;
	if (xm_collect(&x, comm, bad) < 0)
		goto out;
	/* This rank's value: its pieces' values combined, or fold's value
	 * of no elements; then whether every rank has one. */
	if (x.nvals) {
		acc = x.vals[0];
		alen = x.vsize;
		x.vals[0] = NULL;
		for (i = 1; i < x.nvals; i++)
			MPI_Reduce_local(x.vals[i], acc, count, type, op);
	} else if (xm_identity(&x, &acc, &alen) == 0 && alen != x.vsize) {
		xm_fail(&x, EINVAL, "rank %d: fold of no elements returned "
			"%zu bytes, not count items of the type (%zu)", x.rank,
			alen, x.vsize);
	}
	mine[0] = x.err;
	mine[1] = x.err ? x.rank : -1;
	MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, x.comm, &req);
	xm_wait(&req);
	if (all[0]) {
		if (x.err)
			snprintf(xm_error_text, sizeof(xm_error_text), "%s",
				 x.text);
		else
			snprintf(xm_error_text, sizeof(xm_error_text),
				 "rank %d: fold of no elements failed", all[1]);
		errno = all[0];
		goto out;
	}
	if (x.o.everywhere)
		MPI_Iallreduce(acc, value, count, type, op, x.comm, &req);
	else
		MPI_Ireduce(acc, value, count, type, op, x.root, x.comm, &req);
	xm_wait(&req);
	xm_spread_outcomes(&x);
	ret = x.ok;
out:
	e = errno;
	free(acc);
	xm_done(&x);
	errno = e;
	return ret;
}
