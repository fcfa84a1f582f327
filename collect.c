/*
 * collect.c - what is built on the exchange's public mechanisms: Map and
 * Queue (collectors behind store_data), the handles of exchange_manage,
 * and connections to persistent processes.
 *
 * Nothing here reaches into an exchange: a collector is the exchange's
 * store_data with its state as udata, and what this file keeps with an
 * exchange is attached to it (exchange_attach), found again by its key and
 * freed with it.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A handle made by exchange_manage. */
struct exchange_managed {
	struct exchange_managed *next;	/* the exchange's list */
	struct exchange *ex;		/* where calls start their work */
	channel_fn *fn;			/* the function, or NULL */
	exchange_plain_fn *pfn;		/* or the plain function */
	void *ctx;			/* given to it */
	char *address;			/* persistent: where each call's
					   process listens, or NULL */
	int timeout_ms;			/* persistent: for each connection */
};

/* The handles of one exchange, attached to it. */
struct managed_list {
	struct exchange_managed *head;
};

/* The keys of what this file attaches to an exchange. */
static const char collector_key, managed_key;

/* What a built-in collector keeps. */
enum collector_kind {
	COLLECT_MAP = 1,
	COLLECT_QUEUE = 2,
};

struct collector {
	int kind;		/* enum collector_kind */
	struct channel_msg *msgs; /* map: outcome of each task, by number */
	bool *have;		/* map: whether msgs[i] arrived */
	size_t cap;		/* map: entries allocated */
	size_t next;		/* map: the iterator's next task */
	struct channel_msg *q;	/* queue: the messages waiting, in arrival
				   order from qhead to qend, owned by it */
	size_t qhead;		/* queue: the oldest */
	size_t qend;		/* queue: one past the newest */
	size_t qcap;		/* queue: entries allocated in q */
};

static void collector_free(void *data)
{
	struct collector *col = data;
	size_t i;

	if (!col)
		return;
	for (i = 0; i < col->cap; i++)
		if (col->have[i])
			free(col->msgs[i].data);
	free(col->msgs);
	free(col->have);
	for (i = col->qhead; i < col->qend; i++)
		free(col->q[i].data);
	free(col->q);
	free(col);
}

/* ------------------------------------------------------------------------ */
/* Map and Queue: collectors behind store_data                              */
/* ------------------------------------------------------------------------ */

/* Makes room in the map for task numbers up to task. */
static int map_reserve(struct collector *col, size_t task)
{
	size_t ncap = col->cap ? col->cap : 64;
	struct channel_msg *nm;
	bool *nh;

	if (task < col->cap)
		return 0;
	while (ncap <= task)
		ncap *= 2;
	nm = realloc(col->msgs, ncap * sizeof(*nm));
	if (!nm)
		return -1;
	col->msgs = nm;
	nh = realloc(col->have, ncap * sizeof(*nh));
	if (!nh)
		return -1;
	memset(nh + col->cap, 0, (ncap - col->cap) * sizeof(*nh));
	col->have = nh;
	col->cap = ncap;
	return 0;
}

/* Makes room for one more message at the end of the queue: the waiting
 * ones slide to the front, or the array doubles. */
static int queue_room(struct collector *col)
{
	struct channel_msg *nq;
	size_t ncap;

	if (col->qend < col->qcap)
		return 0;
	if (col->qhead > 0) {
		memmove(col->q, col->q + col->qhead,
			(col->qend - col->qhead) * sizeof(*col->q));
		col->qend -= col->qhead;
		col->qhead = 0;
		return 0;
	}
	ncap = col->qcap ? col->qcap * 2 : 64;
	nq = realloc(col->q, ncap * sizeof(*nq));
	if (!nq)
		return -1;
	col->q = nq;
	col->qcap = ncap;
	return 0;
}

/* The collectors' store_data: receives the message at the head of ch.
 * A map keeps the first message of each task; a queue keeps them all. */
static int collect(struct exchange *ex, struct channel *ch, void *udata)
{
	struct collector *col = udata;
	struct channel_msg m;
	int r;

	(void)ex;
	/* Items are no message: left in place, they make the task's
	 * outcome a protocol failure (deliver). */
	if (channel_head(ch) == FRAME_STREAM)
		return 0;
	r = channel_recv(ch, &m, 0);
	if (r <= 0)
		return r < 0 && errno != ETIMEDOUT ? -1 : 0;
	if (col->kind == COLLECT_MAP) {
		if (m.task == CHANNEL_NO_TASK || map_reserve(col, m.task) < 0 ||
		    col->have[m.task]) {
			channel_msg_free(&m);
			return 0;
		}
		col->msgs[m.task] = m;
		col->have[m.task] = true;
	} else {
		if (queue_room(col) < 0) {
			channel_msg_free(&m);
			return -1;
		}
		col->q[col->qend++] = m;
	}
	return 0;
}

static struct exchange *collector_new(const struct exchange_options *opts,
				      int kind)
{
	struct exchange_options o;
	struct exchange *ex;
	struct collector *col;

	if (opts && opts->store_data) {
		errno = EINVAL;
		return NULL;
	}
	if (opts)
		o = *opts;
	else
		memset(&o, 0, sizeof(o));
	col = calloc(1, sizeof(*col));
	if (!col)
		return NULL;
	col->kind = kind;
	o.store_data = collect;
	o.udata = col;
	ex = exchange_new(&o);
	if (!ex || exchange_attach(ex, &collector_key, col,
				   collector_free) < 0) {
		int saved = errno;

		exchange_free(ex);
		free(col);
		errno = saved;
		return NULL;
	}
	return ex;
}

struct exchange *exchange_new_map(const struct exchange_options *opts)
{
	return collector_new(opts, COLLECT_MAP);
}

struct exchange *exchange_new_queue(const struct exchange_options *opts)
{
	return collector_new(opts, COLLECT_QUEUE);
}

/* The collector of kind attached to ex, or NULL (EINVAL) when ex is no
 * exchange of that kind or the call's other arguments are not valid. */
static struct collector *collector_of(const struct exchange *ex, int kind,
				      bool valid)
{
	struct collector *col = exchange_attached(ex, &collector_key);

	if (!col || col->kind != kind || !valid) {
		errno = EINVAL;
		return NULL;
	}
	return col;
}

/* Whether what a caller waits for has arrived: task i's outcome in a map,
 * any message in a queue. */
static bool arrived(const struct collector *col, size_t i)
{
	if (col->kind == COLLECT_MAP)
		return i < col->cap && col->have[i];
	return col->qhead < col->qend;
}

/* Stores until arrived(col, i), for up to timeout_ms. Returns 1 once it
 * has, 0 when nothing is unfinished and it has not (it never will), -1
 * with ETIMEDOUT or the errno of exchange_store. */
static int store_until(struct exchange *ex, const struct collector *col,
		       size_t i, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);

	while (!arrived(col, i)) {
		if (!exchange_unfinished(ex))
			return 0;
		if (timeout_ms >= 0 && clock_left(deadline) == 0) {
			/* One last look without waiting. */
			if (exchange_store(ex, 0) < 0)
				return -1;
			if (arrived(col, i))
				break;
			if (!exchange_unfinished(ex))
				return 0;
			errno = ETIMEDOUT;
			return -1;
		}
		if (exchange_store(ex, clock_left(deadline)) < 0)
			return -1;
	}
	return 1;
}

/* Waits for the outcomes of tasks [first, first + count), all within one
 * deadline, then fills msgs with them: lent (the map keeps the data) or,
 * with take, handed over. Nothing is handed over unless all have arrived.
 * Returns count, or -1 with errno. */
static ssize_t map_range(struct exchange *ex, size_t first, size_t count,
			 struct channel_msg *msgs, int timeout_ms, bool take)
{
	struct collector *col = collector_of(ex, COLLECT_MAP,
					     msgs != NULL || count == 0);
	int64_t deadline = clock_deadline(timeout_ms);
	size_t i, tasks;
	int r;

	if (!col)
		return -1;
	tasks = exchange_tasks(ex);
	if (first > tasks || count > tasks - first || count > SSIZE_MAX) {
		errno = ERANGE;
		return -1;
	}
	for (i = first; i < first + count; i++) {
		r = store_until(ex, col, i, clock_left(deadline));
		if (r == 0) {
			/* Every task has settled and this one left nothing
			 * (its outcome could not be recorded). */
			errno = EIO;
			return -1;
		}
		if (r < 0)
			return -1;
	}
	for (i = 0; i < count; i++) {
		msgs[i] = col->msgs[first + i];
		if (take) {
			/* The map keeps the kind, cause and code. */
			col->msgs[first + i].data = NULL;
			col->msgs[first + i].len = 0;
		}
	}
	return (ssize_t)count;
}

int exchange_map_get(struct exchange *ex, size_t i, struct channel_msg *msg,
		     int timeout_ms)
{
	return map_range(ex, i, 1, msg, timeout_ms, false) < 0 ? -1 : 1;
}

int exchange_map_take(struct exchange *ex, size_t i, struct channel_msg *msg,
		      int timeout_ms)
{
	return map_range(ex, i, 1, msg, timeout_ms, true) < 0 ? -1 : 1;
}

ssize_t exchange_map_range(struct exchange *ex, size_t first, size_t count,
			   struct channel_msg *msgs, int timeout_ms)
{
	return map_range(ex, first, count, msgs, timeout_ms, false);
}

ssize_t exchange_map_take_range(struct exchange *ex, size_t first,
				size_t count, struct channel_msg *msgs,
				int timeout_ms)
{
	return map_range(ex, first, count, msgs, timeout_ms, true);
}

int exchange_map_next(struct exchange *ex, struct channel_msg *msg)
{
	struct collector *col = collector_of(ex, COLLECT_MAP, msg != NULL);
	int r;

	if (!col)
		return -1;
	if (col->next >= exchange_tasks(ex))
		return 0;
	r = exchange_map_get(ex, col->next, msg, -1);
	if (r == 1)
		col->next++;
	return r;
}

int exchange_queue_next(struct exchange *ex, struct channel_msg *msg,
			int timeout_ms)
{
	struct collector *col = collector_of(ex, COLLECT_QUEUE, msg != NULL);
	int r;

	if (!col)
		return -1;
	r = store_until(ex, col, 0, timeout_ms);
	if (r <= 0)
		return r;
	*msg = col->q[col->qhead++];
	if (col->qhead == col->qend)
		col->qhead = col->qend = 0;
	return 1;
}

size_t exchange_queue_len(const struct exchange *ex)
{
	const struct collector *col = collector_of(ex, COLLECT_QUEUE, true);

	return col ? col->qend - col->qhead : 0;
}

/* ------------------------------------------------------------------------ */
/* Managed callables                                                        */
/* ------------------------------------------------------------------------ */

static void managed_free(void *data)
{
	struct managed_list *list = data;
	struct exchange_managed *m, *next;

	for (m = list->head; m; m = next) {
		next = m->next;
		free(m->address);
		free(m);
	}
	free(list);
}

/* Keeps m in ex's list of handles (freed with ex); false on ENOMEM, when
 * m is freed. */
static bool managed_keep(struct exchange *ex, struct exchange_managed *m)
{
	struct managed_list *list = exchange_attached(ex, &managed_key);

	if (!list) {
		list = calloc(1, sizeof(*list));
		if (!list || exchange_attach(ex, &managed_key, list,
					     managed_free) < 0) {
			free(list);
			free(m->address);
			free(m);
			return false;
		}
	}
	m->next = list->head;
	list->head = m;
	return true;
}

struct exchange_managed *exchange_manage(struct exchange *ex, channel_fn *fn,
					 exchange_plain_fn *pfn, void *ctx)
{
	struct exchange_managed *m;

	if (!ex || !fn == !pfn) {
		errno = EINVAL;
		return NULL;
	}
	m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	*m = (struct exchange_managed){ .ex = ex, .fn = fn, .pfn = pfn,
					.ctx = ctx };
	return managed_keep(ex, m) ? m : NULL;
}

struct exchange_managed *exchange_manage_persistent(struct exchange *ex,
						    const char *address,
						    channel_fn *fn, void *ctx,
						    int timeout_ms)
{
	struct exchange_managed *m;

	if (!ex || !address || !fn) {
		errno = EINVAL;
		return NULL;
	}
	m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	*m = (struct exchange_managed){ .ex = ex, .fn = fn, .ctx = ctx,
					.address = strdup(address),
					.timeout_ms = timeout_ms };
	if (!m->address) {
		free(m);
		return NULL;
	}
	return managed_keep(ex, m) ? m : NULL;
}

ssize_t exchange_call(struct exchange_managed *m, const void *arg, size_t len)
{
	if (!m) {
		errno = EINVAL;
		return -1;
	}
	if (m->address)
		return exchange_start_persistent(m->ex, m->address, m->fn, arg,
						 len, m->ctx, m->timeout_ms);
	if (m->fn)
		return exchange_start(m->ex, m->fn, arg, len, m->ctx);
	return exchange_start_plain(m->ex, m->pfn, arg, len, m->ctx);
}

/* ------------------------------------------------------------------------ */
/* Persistent and background processes                                      */
/* ------------------------------------------------------------------------ */

/*
 * The channel layer does the work (channel_start_persistent,
 * channel_connect, the acknowledgements); here it meets the exchange. A
 * persistent exchange or queue is an ordinary one to which connections
 * are added: channels of any kind can share one poll loop.
 */

ssize_t exchange_connect(struct exchange *ex, const char *address,
			 int timeout_ms)
{
	struct channel *ch;

	if (!ex) {
		errno = EINVAL;
		return -1;
	}
	/* A connection is counted under the limit, as pprocess's connect
	 * uses add_wait: connect once there is a place. */
	if (exchange_wait(ex) < 0)
		return -1;
	ch = channel_connect(address, timeout_ms);
	if (!ch)
		return -1;
	/* The exchange owns the channel from here, on failure too. */
	return exchange_add(ex, ch);
}

/* Persistent work as the exchange keeps it until it has a place: this
 * header, the address with its NUL, then the argument from arg_off on
 * (aligned as malloc aligns, for fn to read its own struct there). */
struct persistent_work {
	channel_fn *fn;
	void *ctx;
	int timeout_ms;
	size_t arg_off;
};

/* Starts queued persistent work and connects to it (an
 * exchange_channel_fn). */
static struct channel *persistent_begin(const void *buf, size_t len,
					void *unused)
{
	struct persistent_work pw;
	const char *address = (const char *)buf + sizeof(pw);

	(void)unused;
	memcpy(&pw, buf, sizeof(pw));
	if (channel_start_persistent(address, pw.fn,
				     (const char *)buf + pw.arg_off,
				     len - pw.arg_off, pw.ctx) < 0)
		return NULL;
	return channel_connect(address, pw.timeout_ms);
}

ssize_t exchange_start_persistent(struct exchange *ex, const char *address,
				  channel_fn *fn, const void *arg, size_t len,
				  void *ctx, int timeout_ms)
{
	struct persistent_work pw = { .fn = fn, .ctx = ctx,
				      .timeout_ms = timeout_ms };
	size_t alen, align = _Alignof(max_align_t);
	ssize_t task;
	char *buf;

	if (!ex || !address || !fn || (len && !arg)) {
		errno = EINVAL;
		return -1;
	}
	alen = strlen(address) + 1;
	pw.arg_off = (sizeof(pw) + alen + align - 1) / align * align;
	if (len > SIZE_MAX - pw.arg_off) {
		errno = ENOMEM;
		return -1;
	}
	buf = malloc(pw.arg_off + len);
	if (!buf)
		return -1;
	memcpy(buf, &pw, sizeof(pw));
	memcpy(buf + sizeof(pw), address, alen);
	if (len)
		memcpy(buf + pw.arg_off, arg, len);
	task = exchange_submit_channel(ex, persistent_begin, buf,
				       pw.arg_off + len, NULL);
	free(buf);
	return task;
}

pid_t exchange_create_persistent(struct exchange *ex, const char *address,
				 struct channel **child, int timeout_ms)
{
	struct channel *ch;
	pid_t pid;

	if (exchange_create_begin(ex, child) < 0)
		return -1;
	pid = channel_create_persistent(address, child);
	if (pid <= 0)
		return pid;
	ch = channel_connect(address, timeout_ms);
	if (!ch || exchange_add(ex, ch) < 0)
		return -1;
	return pid;
}

struct exchange *exchange_new_with(const struct exchange_options *opts,
				   struct channel **chs, size_t n)
{
	struct exchange *ex;
	size_t i;
	int saved;

	if (n && !chs) {
		errno = EINVAL;
		return NULL;
	}
	ex = exchange_new(opts);
	for (i = 0; ex && i < n; i++) {
		if (exchange_add(ex, chs[i]) < 0) {
			/* exchange_add closed chs[i]; those after it are
			 * ours to close too. */
			saved = errno;
			exchange_free(ex);
			ex = NULL;
			errno = saved;
		}
	}
	if (!ex) {
		saved = errno;
		for (; i < n; i++)
			channel_close(chs[i]);
		errno = saved;
	}
	return ex;
}

pid_t exchange_background(const char *address, channel_fn *fn,
			  const void *arg, size_t len, void *ctx)
{
	return channel_start_persistent(address, fn, arg, len, ctx);
}

struct exchange *exchange_background_queue(const char *address,
					   int timeout_ms)
{
	struct exchange *ex = exchange_new_queue(NULL);
	int saved;

	if (!ex)
		return NULL;
	if (exchange_connect(ex, address, timeout_ms) < 0) {
		saved = errno;
		exchange_free(ex);
		errno = saved;
		return NULL;
	}
	return ex;
}
