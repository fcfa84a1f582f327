/*
 * exchange.c - many channels in one poll loop.
 *
 * An exchange monitors a set of channels, each with a slot: the slots and
 * the pollfd array are parallel arrays kept in step (a removal moves the
 * last entry into the hole), so the poll array is never rebuilt. Work that
 * cannot start because of the limit waits in a FIFO queue with a copy of its
 * argument bytes.
 *
 * The life of a slot: running (its descriptor is polled), then end of
 * stream with nothing left buffered; its process is reaped without waiting
 * (while it has not finished exiting the slot is "awaiting", its descriptor
 * leaves the poll set and the loop retries shortly); then, if the task gave
 * no result, a FAILURE message is appended to the channel so store_data sees
 * the task's one outcome ("final"); once that is consumed the slot is
 * removed and the channel closed.
 *
 * Reuse mode: a slot is a worker process taking TASK frames. Its DONE frame
 * stays at the head of its channel until the loop takes it (worker_done),
 * between deliveries; the worker then takes the next queued task of the
 * same function, or STOP. A task that delivered
 * nothing gets a FAILURE first, and the worker is handed new work only once
 * that FAILURE has been consumed, so that the message is stamped with its own
 * task number.
 *
 * store_data may add or remove channels and start work: the loop holds no
 * pointer into the slot array across the call, and checks afterwards that
 * the channel is still registered (a removal counter makes that check cheap
 * when nothing was removed). Each scan starts one place further round than
 * the last, so a busy channel cannot starve the others.
 *
 * Links: a fork-per-task child that answers once talks over one socket
 * pair (one descriptor per side, no SIGPIPE to guard: the fewest system
 * calls per task); continuous children, whose messages stream, and reuse
 * workers, whose tasks are round trips, get pipes.
 *
 * Map and Queue (collect.c) are exchanges whose store_data is a collector
 * of the layer above; what such a layer keeps with an exchange is attached
 * to it (exchange_attach) and freed with it, so that this file calls
 * nothing above it.
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

/* Waits between two attempts to reap a child that closed its channel but
 * has not finished exiting: from the first to the last, doubling. */
#define REAP_PAUSE_FIRST_NS 20000L
#define REAP_PAUSE_LAST_NS 2000000L
/* A credit owed to a bounded child whose input pipe is full is tried
 * again after this many ms, doubling up to the last: the child empties its
 * pipe as it waits for the credit, but the parent's poll does not watch
 * its channels' write ends. */
#define CREDIT_RETRY_FIRST_MS 1
#define CREDIT_RETRY_LAST_MS 64

/* Refills of one channel's buffer per pass, so that one busy channel
 * cannot hold the loop. */
#define REFILLS_PER_PASS 4

/* How often a waiting exchange asks whether its children have exited
 * without their channel ending (something they started holds it), and how
 * much it then reads at most before settling. An exited process can have
 * left no more than its channel's kernel buffer holds (a megabyte or so);
 * the bound is for whatever it started, which may go on writing. */
#define EXIT_CHECK_MS 250
#define EXIT_DRAIN_BYTES (8u << 20)

/* Ready channels handled per exchange_store call. */
#define STORE_BATCH 64

/* A queued task's argument up to this size goes to its child in a copy on
 * the stack (launch), larger ones in a copy from malloc. Small, so that the
 * fork's stack reaches no deeper than it must: each page of stack the
 * parent writes after a fork is a copy-on-write fault. */
#define ARG_ON_STACK 64

/* Work waiting for a free place under the limit. */
struct work {
	struct work *next;	/* the next in start order */
	channel_fn *fn;		/* the function, or NULL for pfn */
	exchange_plain_fn *pfn;	/* the plain function, or NULL */
	exchange_channel_fn *start; /* or what makes its channel, or NULL */
	void *ctx;		/* given to the function */
	void *arg;		/* the copy of the argument in argbuf, or NULL */
	size_t len;		/* its length */
	size_t task;		/* its task number */
	int attempts;		/* runs so far (EXCHANGE_RETRY) */
	max_align_t argbuf[];	/* the argument bytes, in the same allocation
				   (one malloc and one free per task),
				   aligned as malloc would align them: the
				   function reads its own struct there */
};

/* What a slot's channel is for. */
enum slot_role {
	ROLE_TASK,		/* a process for one task, or a task's outcome
				   without a process */
	ROLE_WORKER,		/* a reuse worker taking TASK frames */
	ROLE_USER,		/* a channel the caller added (exchange_add) */
};

/* Where a slot is in its life, each state after the ones above it (a bad
 * frame goes to SLOT_FINAL from any state before it):
 *
 *   SLOT_OPEN       its channel is read as messages come
 *   SLOT_DRAINING   its process was reaped before end of stream (something
 *                   it started holds the channel open): what it left is
 *                   read, then the channel ends
 *   SLOT_AWAITING   at end of stream, its process not yet reaped, counted
 *                   in nawait; polled for its exit (channel_exit_fd), or
 *                   where it cannot be, out of the poll set and counted
 *                   in nblind too
 *   SLOT_REAPED     reaped after it awaited: its outcome comes next scan
 *   SLOT_FINAL      its outcome is settled; removed once nothing is left
 *                   to deliver
 *   SLOT_REMOVE     removed at the end of the scan
 */
enum slot_life {
	SLOT_OPEN,
	SLOT_DRAINING,
	SLOT_AWAITING,
	SLOT_REAPED,
	SLOT_FINAL,
	SLOT_REMOVE,
};

/* A reuse worker's phase between its tasks. A DONE frame ends PHASE_TASK;
 * worker_next then gives the next task, or makes it idle or leave. */
enum worker_phase {
	PHASE_TASK,		/* running a task (also every non-worker) */
	PHASE_OWED,		/* its task ended without a result: the FAILURE
				   for it is buffered, and new work waits
				   until that has been consumed */
	PHASE_IDLE,		/* no task, waiting for work (counted in
				   nidle) */
	PHASE_LEAVING,		/* told to leave (STOP sent) */
};

/* The exchange's record of one channel. */
struct slot {
	struct channel *ch;	/* the channel, owned by the exchange */
	size_t index;		/* position in slots[] and pfds[] */
	enum slot_role role;
	enum slot_life life;	/* changed only through set_life */
	enum worker_phase phase; /* changed only through set_phase */
	struct work *cur;	/* the running work, kept for a retry, or NULL */
	channel_fn *fn;		/* reuse: the function the worker runs */
	exchange_plain_fn *pfn;	/* reuse: or the plain function */
	void *ctx;		/* reuse: and its context */
	size_t ntasks;		/* reuse: tasks the worker has been given */
	unsigned long base;	/* channel_received when the task began: what
				   the task delivered is the difference */
	int64_t idle_until;	/* idle, with idle_ms: when it is told to
				   leave */
	size_t drain_left;	/* draining: bytes still to read at most of
				   what it left (something it started may go
				   on writing) */
	struct channel_limit lim; /* the running task's time limit */
	struct slot *next_spare; /* freed: the next on the exchange's list of
				    freed slots */
};

/* Something a layer above keeps with an exchange (collect.c: a Map's or a
 * Queue's messages, the managed handles), freed with it. */
struct attachment {
	struct attachment *next;
	const void *key;	/* the owner's tag for it */
	void *data;
	void (*free_fn)(void *data);
};

struct exchange {
	struct exchange_options opts; /* copied from the caller */
	struct slot **slots;	/* monitored channels */
	struct pollfd *pfds;	/* slots[i]'s descriptor is pfds[i] */
	size_t nslots;		/* channels monitored */
	size_t nidle;		/* of which idle reuse workers */
	int limit;		/* processes at most (opts.limit, or the
				   number of cores for reuse without one),
				   0 for no limit */
	struct made_in made;	/* the process that made it: a copy
				   inherited by a child is inert there */
	bool terminating;	/* exchange_terminate: every process was
				   sent SIGTERM; SIGKILL follows the grace */
	size_t cap;		/* entries allocated in both arrays */
	size_t scan;		/* where the next scan starts */
	unsigned long removals;	/* counts removals, to revalidate channels */
	size_t nawait;		/* slots waiting to be reaped */
	size_t nblind;		/* of which polled for nothing: their reaping
				   is tried after pauses (reap_pause_ns) */
	int64_t next_exit_check; /* when check_exits looks next */
	long reap_pause_ns;	/* current pause between reap attempts */
	int credit_retry_ms;	/* the wait before the next try of a credit
				   that found no room, or 0 for the first */
	size_t next_task;	/* the number the next task gets */
	struct work *qhead;	/* queued work, oldest first */
	struct work *qtail;	/* newest queued work */
	size_t nqueued;		/* queued work items */
	bool stopped;		/* EXCHANGE_STOP: a task failed */
	struct attachment *attached; /* freed with the exchange */
	struct exchange_counts reported; /* the counts last given to the
					      progress callback */
	bool reported_once;	/* the callback has been called */
	int64_t next_tick;	/* tick_ms: when the next tick is due */
	struct channel **handed; /* keep_removed: channels of the caller's
				    that ended and were handed back, not yet
				    taken (exchange_take_removed) */
	size_t handed_head;	/* the oldest entry not taken */
	size_t nhanded;		/* entries used in handed */
	size_t handed_cap;	/* entries allocated */
	struct arena works;	/* the work records: queued, and kept for a
				   retry (children do not inherit them) */
	struct slot *spare;	/* freed slots, for slot_add: no more than
				   the most slots it has held at once */
};

/* ------------------------------------------------------------------------ */
/* Creating and freeing                                                     */
/* ------------------------------------------------------------------------ */

/* Whether ex is a copy inherited by a child of the process that made it
 * (of any fork): its channels are inert here, and so is it. */
static bool inherited(const struct exchange *ex)
{
	return channel_made_elsewhere(ex->made);
}

/* The check that opens the calls that wait or signal: -1 with EINVAL for
 * NULL, EBADF for an inherited copy. */
static int unusable(const struct exchange *ex)
{
	return sys_refuse(!ex, ex && inherited(ex));
}

/* SIGTERM to SIGKILL. */
static int grace_of(const struct exchange *ex)
{
	return ex->opts.grace_ms > 0 ? ex->opts.grace_ms : 1000;
}

const char *exchange_version(void)
{
	return EXCHANGE_VERSION;
}

struct exchange *exchange_new(const struct exchange_options *opts)
{
	struct exchange *ex;

	if (opts && (opts->limit < 0 || opts->time_limit_ms < 0 ||
		     opts->grace_ms < 0 || opts->retries < 0 ||
		     opts->idle_ms < 0 || opts->tick_ms < 0 ||
		     opts->policy < EXCHANGE_KEEP_GOING ||
		     opts->policy > EXCHANGE_RETRY)) {
		errno = EINVAL;
		return NULL;
	}
	ex = calloc(1, sizeof(*ex));
	if (!ex)
		return NULL;
	if (opts)
		ex->opts = *opts;
	ex->limit = ex->opts.limit;
	if (ex->opts.reuse && ex->limit == 0)
		ex->limit = exchange_cores();
	ex->made = channel_made_here();
	ex->reap_pause_ns = REAP_PAUSE_FIRST_NS;
	ex->next_exit_check = clock_now_ms() + EXIT_CHECK_MS;
	if (ex->opts.tick_ms > 0)
		ex->next_tick = clock_now_ms() + ex->opts.tick_ms;
	return ex;
}

int exchange_attach(struct exchange *ex, const void *key, void *data,
		    void (*free_fn)(void *data))
{
	struct attachment *a = malloc(sizeof(*a));

	if (!a)
		return -1;
	a->key = key;
	a->data = data;
	a->free_fn = free_fn;
	a->next = ex->attached;
	ex->attached = a;
	return 0;
}

void *exchange_attached(const struct exchange *ex, const void *key)
{
	const struct attachment *a;

	for (a = ex ? ex->attached : NULL; a; a = a->next)
		if (a->key == key)
			return a->data;
	return NULL;
}

size_t exchange_tasks(const struct exchange *ex)
{
	return ex->next_task;
}

/* Work records live in ex->works, out of the children's sight: writing
 * them after a fork costs no copy-on-write fault, and a fork does not copy
 * a long queue's page table entries (arena.c). */
static void work_free(struct exchange *ex, struct work *w)
{
	arena_free(&ex->works, w);
}

/* Waits for the process of a slot whose channel is closed, until deadline
 * (-1: for ever). Returns whether it has been reaped (or there is none). */
static bool reaped_by(struct channel *ch, int64_t deadline)
{
	/* No process (EINVAL) or one reaped by others (ECHILD): nothing to
	 * wait for. */
	return channel_wait(ch, clock_left(deadline)) == 0 ||
	       errno != ETIMEDOUT;
}

/* The end of the processes of slots [first, first + n) after their channels
 * have been closed: each has until the end of its time limit to leave (it
 * has seen end of stream), then SIGTERM, the grace period and SIGKILL to
 * its group, all of them in step, so that the wait is bounded by the
 * latest limit and one grace period. One already told to stop
 * (exchange_terminate, or over its limit) has the rest of its grace. A
 * process without a time limit is waited for (channel_close). */
static void end_processes(struct exchange *ex, size_t first, size_t n)
{
	int grace = grace_of(ex);
	size_t i;

	for (i = first; i < first + n; i++) {
		struct slot *s = ex->slots[i];

		if (s->lim.kill_at || !s->lim.deadline ||
		    reaped_by(s->ch, s->lim.deadline))
			continue;
		channel_limit_end(s->ch, &s->lim, clock_now_ms(), grace);
	}
	for (i = first; i < first + n; i++) {
		struct slot *s = ex->slots[i];

		if (s->lim.kill_at && !reaped_by(s->ch, s->lim.kill_at))
			channel_kill(s->ch, SIGKILL);
	}
}

void exchange_free(struct exchange *ex)
{
	size_t i;

	if (!ex)
		return;
	/* Closing a channel makes its child see end of stream (a reuse
	 * worker leaves, a running task gets EPIPE when it sends): all of
	 * them first, so that they end together. A copy inherited by a child
	 * only frees its memory (its channels are inert there). */
	for (i = 0; i < ex->nslots; i++)
		channel_close_fds(ex->slots[i]->ch);
	if (!inherited(ex))
		end_processes(ex, 0, ex->nslots);
	for (i = 0; i < ex->nslots; i++) {
		struct channel *ch = ex->slots[i]->ch;

		channel_set_owner(ch, NULL);
		channel_close(ch);
		free(ex->slots[i]);
	}
	while (ex->attached) {
		struct attachment *a = ex->attached;

		ex->attached = a->next;
		if (a->free_fn)
			a->free_fn(a->data);
		free(a);
	}
	/* The queued records and those kept for a retry. */
	arena_release(&ex->works, inherited(ex));
	while (ex->spare) {
		struct slot *s = ex->spare;

		ex->spare = s->next_spare;
		free(s);
	}
	free(ex->handed);
	free(ex->slots);
	free(ex->pfds);
	free(ex);
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                    */
/* ------------------------------------------------------------------------ */

/* Registers ch in a new slot. The caller has set the channel's task.
 * NULL on ENOMEM (ch is left alone). */
static struct slot *slot_add(struct exchange *ex, struct channel *ch)
{
	struct slot *s;

	if (ex->nslots == ex->cap) {
		size_t ncap = ex->cap ? ex->cap * 2 : 8;
		struct slot **ns;
		struct pollfd *np;

		/* An array of pointers: sizeof(*ns) is a pointer's size. */
		ns = realloc(ex->slots,
			     ncap * sizeof(*ns)); /* NOLINT(bugprone-sizeof-expression) */
		if (!ns)
			return NULL;
		ex->slots = ns;
		np = realloc(ex->pfds, ncap * sizeof(*np));
		if (!np)
			return NULL;
		ex->pfds = np;
		ex->cap = ncap;
	}
	/* A slot freed earlier is taken first: malloc's pages stay as they
	 * were, which after a fork saves their copy-on-write faults. */
	if (ex->spare) {
		s = ex->spare;
		ex->spare = s->next_spare;
		memset(s, 0, sizeof(*s));
	} else {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	}
	s->ch = ch;
	s->index = ex->nslots;
	ex->slots[s->index] = s;
	ex->pfds[s->index].fd = channel_fd(ch);
	ex->pfds[s->index].events = POLLIN;
	ex->pfds[s->index].revents = 0;
	ex->nslots++;
	channel_set_owner(ch, s);
	s->base = channel_received(ch);
	if (ex->opts.max_message)
		channel_set_max(ch, ex->opts.max_message);
	return s;
}

/* A slot leaves SLOT_AWAITING: out of the counts, and out of the poll set
 * (the exit descriptor closes with the reaping). */
static void leave_awaiting(struct exchange *ex, struct slot *s)
{
	struct pollfd *p = &ex->pfds[s->index];

	ex->nawait--;
	if (p->fd < 0)
		ex->nblind--;
	p->fd = -1;
}

/* Moves a slot on in its life, keeping nawait and nblind. A slot goes
 * forward only, and leaves SLOT_AWAITING through its reaping or a bad
 * frame. */
static void set_life(struct exchange *ex, struct slot *s, enum slot_life life)
{
	struct pollfd *p = &ex->pfds[s->index];

	assert(life >= s->life);
	assert(life != SLOT_REAPED || s->life == SLOT_AWAITING);
	if (s->life == SLOT_AWAITING && life != SLOT_AWAITING)
		leave_awaiting(ex, s);
	if (life == SLOT_AWAITING && s->life != SLOT_AWAITING) {
		ex->nawait++;
		/* Polled for the process's exit, in place of the channel. */
		p->fd = channel_exit_fd(s->ch);
		p->events = POLLIN;
		p->revents = 0;
		if (p->fd < 0)
			ex->nblind++;
	}
	s->life = life;
}

/* The slot's outcome is settled (if it was not already). */
static void settled(struct exchange *ex, struct slot *s)
{
	if (s->life < SLOT_FINAL)
		set_life(ex, s, SLOT_FINAL);
}

/* Takes slot s out of the arrays and frees it; the channel is closed when
 * close_it is true. */
static void slot_remove(struct exchange *ex, struct slot *s, bool close_it)
{
	struct channel *ch = s->ch;
	size_t i = s->index, last = ex->nslots - 1;

	assert(i < ex->nslots && ex->slots[i] == s);
	if (s->life == SLOT_AWAITING)
		leave_awaiting(ex, s);
	if (i != last) {
		ex->slots[i] = ex->slots[last];
		ex->pfds[i] = ex->pfds[last];
		ex->slots[i]->index = i;
	}
	ex->nslots--;
	ex->removals++;
	if (s->phase == PHASE_IDLE)
		ex->nidle--;
	/* Every idle or awaiting slot is among those left. */
	assert(ex->nidle <= ex->nslots && ex->nawait <= ex->nslots);
	channel_set_owner(ch, NULL);
	/* An inherited copy's records are in blocks the child does not
	 * have (arena.c); exchange_free forgets them all. */
	if (!inherited(ex))
		work_free(ex, s->cur);
	s->cur = NULL;
	s->next_spare = ex->spare;
	ex->spare = s;
	if (close_it)
		channel_close(ch);
}

/* Removes a slot whose channel has ended. A channel the caller added is
 * handed back open under keep_removed, and listed for
 * exchange_take_removed (if the list cannot grow, it is not listed: the
 * caller has it all the same); any other is closed. */
static void slot_ended(struct exchange *ex, struct slot *s)
{
	bool hand_back = s->role == ROLE_USER && ex->opts.keep_removed;
	struct channel *ch = s->ch;

	slot_remove(ex, s, !hand_back);
	if (!hand_back)
		return;
	if (ex->nhanded == ex->handed_cap) {
		size_t ncap = ex->handed_cap ? ex->handed_cap * 2 : 8;
		/* An array of pointers: sizeof(*nh) is a pointer's size. */
		struct channel **nh = realloc(ex->handed, ncap * sizeof(*nh)); /* NOLINT(bugprone-sizeof-expression) */

		if (!nh)
			return;
		ex->handed = nh;
		ex->handed_cap = ncap;
	}
	ex->handed[ex->nhanded++] = ch;
}

struct channel *exchange_take_removed(struct exchange *ex)
{
	struct channel *ch;

	if (!ex || ex->handed_head == ex->nhanded)
		return NULL;
	/* Oldest first; the list starts again once all are taken. */
	ch = ex->handed[ex->handed_head++];
	if (ex->handed_head == ex->nhanded)
		ex->handed_head = ex->nhanded = 0;
	return ch;
}

/* Whether ch is still monitored after a callback, given the removal count
 * before it. */
static bool still_registered(const struct exchange *ex,
			     const struct channel *ch, unsigned long removals)
{
	size_t i;

	if (ex->removals == removals)
		return true;
	for (i = 0; i < ex->nslots; i++)
		if (ex->slots[i]->ch == ch)
			return true;
	return false;
}

static void start_clock(struct exchange *ex, struct slot *s)
{
	channel_limit_start(&s->lim, ex->opts.time_limit_ms);
}

/* ------------------------------------------------------------------------ */
/* Outcomes without a process                                               */
/* ------------------------------------------------------------------------ */

/* A task that could not start still has one outcome: a channel with no
 * process and no descriptor, holding one FAILURE message, is registered
 * like any other, so store_data (or a collector) sees it the same way. */
static int add_outcome(struct exchange *ex, size_t task, int cause, int code,
		       const char *text)
{
	struct channel *ch = channel_new_failure(task, cause, code, text);
	struct slot *s;

	if (!ch)
		return -1;
	s = slot_add(ex, ch);
	if (!s) {
		channel_close(ch);
		return -1;
	}
	set_life(ex, s, SLOT_FINAL);
	return 0;
}

static int add_not_started(struct exchange *ex, size_t task, int err)
{
	char text[128];

	snprintf(text, sizeof(text), "could not be started: %s",
		 err == ECANCELED ? "cancelled" : strerror(err));
	return add_outcome(ex, task, CHANNEL_NOT_STARTED, err, text);
}

/* ------------------------------------------------------------------------ */
/* Starting work                                                            */
/* ------------------------------------------------------------------------ */

static void protocol_failure(struct exchange *ex, struct slot *s);

/* The channel_fork flags of every process the exchange forks. */
static int fork_flags(const struct exchange *ex)
{
	/* Only a time limit makes the exchange signal its children, and a
	 * group costs each child a system call. */
	return (ex->opts.time_limit_ms > 0 ? CHANNEL_OWN_GROUP : 0) |
	       (ex->opts.no_stdio_flush ? CHANNEL_NO_FLUSH : 0);
}

/* An idle worker takes new work of its function, and gives its place up
 * for other work: it makes the exchange neither busy nor unfinished. */
bool exchange_busy(const struct exchange *ex)
{
	return ex && ex->limit > 0 &&
	       ex->nslots - ex->nidle >= (size_t)ex->limit;
}

bool exchange_unfinished(const struct exchange *ex)
{
	return ex && (ex->nslots > ex->nidle || ex->qhead);
}

/* No process can be added: the places not busy are idle workers'. */
static bool full(const struct exchange *ex)
{
	return ex->limit > 0 && ex->nslots >= (size_t)ex->limit;
}

/* The idle worker that runs fn, pfn and ctx, or NULL. */
/* cppcheck-suppress constParameter ; compared, never called */
static struct slot *idle_worker(const struct exchange *ex, channel_fn *fn,
				exchange_plain_fn *pfn, const void *ctx)
{
	size_t i;

	for (i = 0; ex->nidle && i < ex->nslots; i++) {
		struct slot *s = ex->slots[i];

		if (s->phase == PHASE_IDLE && s->fn == fn && s->pfn == pfn &&
		    s->ctx == ctx)
			return s;
	}
	return NULL;
}

/* Moves a worker to its next phase, keeping nidle and the idle deadline. */
static void set_phase(struct exchange *ex, struct slot *s,
		      enum worker_phase phase)
{
	assert(s->role == ROLE_WORKER);
	/* Nothing follows leaving, and nobody is owed twice. */
	assert(s->phase != PHASE_LEAVING || phase == PHASE_LEAVING);
	assert(phase != PHASE_OWED || s->phase == PHASE_TASK);
	if (s->phase == phase)
		return;
	if (s->phase == PHASE_IDLE)
		ex->nidle--;
	if (phase == PHASE_IDLE) {
		ex->nidle++;
		if (ex->opts.idle_ms > 0)
			s->idle_until = clock_now_ms() + ex->opts.idle_ms;
	}
	s->phase = phase;
}

/* A worker between tasks has none: no task number, no time limit, no work
 * kept for a retry. */
static void clear_task(struct exchange *ex, struct slot *s)
{
	channel_set_task(s->ch, CHANNEL_NO_TASK);
	channel_limit_stop(&s->lim);
	work_free(ex, s->cur);
	s->cur = NULL;
}

/* Tells a worker between tasks to leave. */
static void stop_worker(struct exchange *ex, struct slot *s)
{
	set_phase(ex, s, PHASE_LEAVING);
	clear_task(ex, s);
	channel_send_frame(s->ch, FRAME_STOP, NULL, 0, NULL, 0, -1);
}

/* Whether a worker has been told to leave and has not gone yet. */
static bool worker_leaving(const struct exchange *ex)
{
	size_t i;

	for (i = 0; i < ex->nslots; i++)
		if (ex->slots[i]->phase == PHASE_LEAVING)
			return true;
	return false;
}

/* Stops one idle worker, so that its place can take other work once it has
 * gone. Returns whether there was one. */
static bool stop_an_idle_worker(struct exchange *ex)
{
	size_t i;

	for (i = 0; ex->nidle && i < ex->nslots; i++) {
		if (ex->slots[i]->phase == PHASE_IDLE) {
			stop_worker(ex, ex->slots[i]);
			return true;
		}
	}
	return false;
}

/* A copy of a work record's argument that a child inherits: the record
 * itself is in memory children do not have (ex->works). */
struct arg_copy {
	max_align_t small[ARG_ON_STACK / sizeof(max_align_t)];
	void *big;		/* a larger one, from malloc, or NULL */
};

/* Points *arg at the argument as the child will see it: arg itself
 * unless it lies in the record w, else a copy in c. 0, or -1 on ENOMEM.
 * Free c->big once the fork is done. */
static int arg_for_child(struct arg_copy *c, const struct work *w,
			 const void **arg, size_t len)
{
	void *p;

	c->big = NULL;
	/* A direct start keeps a record only for a retry: its arg is the
	 * caller's own, which the child inherits. */
	if (!w || !len || *arg != w->arg)
		return 0;
	if (len > sizeof(c->small)) {
		c->big = malloc(len);
		if (!c->big)
			return -1;
		p = c->big;
	} else {
		p = c->small;
	}
	memcpy(p, *arg, len);
	*arg = p;
	return 0;
}

/* Forks a process for the task (a worker in reuse mode) and registers it.
 * w, if given, is the work record that arg lies in (kept for a retry, else
 * freed). A fork failure, or no memory for the child's copy of arg,
 * becomes the task's NOT_STARTED outcome. -1 only on ENOMEM. */
static int launch(struct exchange *ex, channel_fn *fn, exchange_plain_fn *pfn,
		  void *ctx, const void *arg, size_t len, size_t task,
		  struct work *w)
{
	bool worker = ex->opts.reuse;
	struct arg_copy copy;
	struct channel *ch;
	struct slot *s;
	pid_t pid;

	if (arg_for_child(&copy, w, &arg, len) < 0) {
		work_free(ex, w);
		return add_not_started(ex, task, ENOMEM);
	}
	/* A task that answers once costs fewest system calls over one
	 * socket pair; a stream of messages moves faster through pipes. */
	pid = manage_fork(&ch, fn, pfn, ctx, arg, len, worker,
			  (ex->opts.continuous ? CHANNEL_LINK_PIPES
					       : CHANNEL_LINK_SOCKET) |
			  fork_flags(ex), ex->opts.init, ex->opts.init_ctx);
	if (pid < 0) {
		int err = errno;

		free(copy.big);
		work_free(ex, w);
		return add_not_started(ex, task, err);
	}
	free(copy.big);
	channel_set_task(ch, task);
	s = slot_add(ex, ch);
	if (!s) {
		/* The child runs to its end; its outcome is lost with the
		 * memory to record it. */
		work_free(ex, w);
		channel_close(ch);
		errno = ENOMEM;
		return -1;
	}
	if (worker) {
		s->role = ROLE_WORKER;
		s->fn = fn;
		s->pfn = pfn;
		s->ctx = ctx;
		s->ntasks = 1;
	}
	if (w && ex->opts.policy == EXCHANGE_RETRY) {
		w->attempts++;
		s->cur = w;
	} else {
		work_free(ex, w);
	}
	start_clock(ex, s);
	return 0;
}

/* Registers a channel made outside the exchange as task number task: the
 * exchange reads it and closes it (or hands it back under keep_removed).
 * On failure the channel is closed: -1 with ENOMEM. */
static int adopt(struct exchange *ex, struct channel *ch, size_t task)
{
	struct slot *s;

	channel_set_task(ch, task);
	s = slot_add(ex, ch);
	if (!s) {
		channel_close(ch);
		errno = ENOMEM;
		return -1;
	}
	s->role = ROLE_USER;
	start_clock(ex, s);
	return 0;
}

/* Makes the channel of work submitted through exchange_submit_channel and
 * registers it; a channel that could not be made (or no memory for start's
 * copy of arg) is the task's NOT_STARTED outcome. w, if given, is the work
 * record that arg lies in: start may fork, so it is given a copy too. -1
 * only on ENOMEM. */
static int launch_channel(struct exchange *ex, exchange_channel_fn *start,
			  void *ctx, const void *arg, size_t len, size_t task,
			  const struct work *w)
{
	struct arg_copy copy;
	struct channel *ch;

	if (arg_for_child(&copy, w, &arg, len) < 0)
		return add_not_started(ex, task, ENOMEM);
	errno = 0;
	ch = start(arg, len, ctx);
	if (!ch) {
		int err = errno ? errno : EIO;

		free(copy.big);
		return add_not_started(ex, task, err);
	}
	free(copy.big);
	return adopt(ex, ch, task);
}

static struct work *work_new(struct exchange *ex, channel_fn *fn,
			     exchange_plain_fn *pfn, exchange_channel_fn *start,
			     void *ctx, const void *arg, size_t len,
			     size_t task)
{
	struct work *w;

	if (len > SIZE_MAX - sizeof(*w)) {
		errno = ENOMEM;
		return NULL;
	}
	w = arena_alloc(&ex->works, sizeof(*w) + len);
	if (!w)
		return NULL;
	*w = (struct work){ .fn = fn, .pfn = pfn, .start = start, .ctx = ctx,
			    .len = len, .task = task };
	if (len) {
		w->arg = w->argbuf;
		memcpy(w->arg, arg, len);
	}
	return w;
}

static void queue_push(struct exchange *ex, struct work *w, bool front)
{
	if (front) {
		w->next = ex->qhead;
		ex->qhead = w;
		if (!ex->qtail)
			ex->qtail = w;
	} else {
		w->next = NULL;
		if (ex->qtail)
			ex->qtail->next = w;
		else
			ex->qhead = w;
		ex->qtail = w;
	}
	ex->nqueued++;
}

/* Takes w, which follows prev (NULL for the head), out of the queue. */
static struct work *queue_unlink(struct exchange *ex, struct work *prev,
				 struct work *w)
{
	if (prev)
		prev->next = w->next;
	else
		ex->qhead = w->next;
	if (ex->qtail == w)
		ex->qtail = prev;
	ex->nqueued--;
	return w;
}

/* Takes the first queued work matching the function (any when match is
 * false). */
static struct work *queue_take(struct exchange *ex, bool match,
			       /* cppcheck-suppress constParameter */
			       channel_fn *fn, exchange_plain_fn *pfn,
			       const void *ctx)
{
	struct work *w, *prev = NULL;

	for (w = ex->qhead; w; prev = w, w = w->next) {
		if (match && (w->fn != fn || w->pfn != pfn || w->ctx != ctx))
			continue;
		return queue_unlink(ex, prev, w);
	}
	return NULL;
}

/* Gives a worker between tasks its next task of its function; with none
 * queued it waits idle for more, and with only other work queued (or once
 * the exchange has stopped) it leaves, giving its place up. */
static void worker_next(struct exchange *ex, struct slot *s)
{
	struct channel *ch = s->ch;
	struct work *w = NULL;

	if (s->phase == PHASE_LEAVING)
		return;
	if (ex->opts.max_tasks && s->ntasks >= ex->opts.max_tasks) {
		/* Recycled: the next task of its function goes to a fresh
		 * worker once this one has left its place. */
		stop_worker(ex, s);
		return;
	}
	if (!ex->stopped)
		w = queue_take(ex, true, s->fn, s->pfn, s->ctx);
	if (w) {
		if (channel_send_frame(ch, FRAME_TASK, w->arg, w->len, NULL,
				       0, -1) == 0) {
			set_phase(ex, s, PHASE_TASK);
			s->ntasks++;
			channel_set_task(ch, w->task);
			s->base = channel_received(ch);
			start_clock(ex, s);
			if (ex->opts.policy == EXCHANGE_RETRY) {
				w->attempts++;
				work_free(ex, s->cur);
				s->cur = w;
			} else {
				work_free(ex, w);
			}
			return;
		}
		/* The worker has gone: the task waits for another one, and
		 * this worker's end of stream will follow. */
		queue_push(ex, w, true);
	} else if (!ex->stopped && !ex->qhead) {
		set_phase(ex, s, PHASE_IDLE);
		clear_task(ex, s);
		return;
	}
	stop_worker(ex, s);
}

static void note_failure(struct exchange *ex)
{
	if (ex->opts.policy == EXCHANGE_STOP)
		ex->stopped = true;
}

/* The messages the task running on s has delivered so far. */
static unsigned long delivered(const struct slot *s)
{
	return channel_received(s->ch) - s->base;
}

/* The DONE frame at the head of a worker's channel: its task has ended.
 * Taken here, between two deliveries, never inside a receive: a task that
 * sent nothing gets its outcome first (and the worker its next task once
 * that has been consumed), any other worker goes on at once. A DONE from
 * a process that is no worker is a protocol error. */
static void worker_done(struct exchange *ex, struct slot *s)
{
	struct channel *ch = s->ch;

	if (s->role != ROLE_WORKER || s->phase != PHASE_TASK ||
	    channel_take_done(ch) < 0) {
		protocol_failure(ex, s);
		return;
	}
	channel_limit_stop(&s->lim);
	if (delivered(s) == 0) {
		/* The outcome must be stamped with this task's number, so
		 * the worker gets nothing new until it has been consumed. */
		if (channel_push_failure(ch, CHANNEL_EXITED, 0,
					 "returned without a result") == 0) {
			set_phase(ex, s, PHASE_OWED);
			note_failure(ex);
			return;
		}
	}
	worker_next(ex, s);
}

/* Starts queued work while under the limit (idle workers take theirs from
 * worker_next). Once EXCHANGE_STOP has taken effect, queued work is given
 * a NOT_STARTED outcome instead. */
static int start_queued(struct exchange *ex)
{
	struct work *w;
	struct slot *s;
	int started = 0;

	while (ex->qhead) {
		if (!ex->stopped) {
			s = idle_worker(ex, ex->qhead->fn, ex->qhead->pfn,
					ex->qhead->ctx);
			if (s) {
				worker_next(ex, s);
				started++;
				continue;
			}
		}
		if (exchange_busy(ex))
			break;
		if (full(ex)) {
			/* The free places are idle workers of other
			 * functions: one leaves (unless one is leaving
			 * already), and its place is taken once it has
			 * gone. */
			if (!worker_leaving(ex))
				stop_an_idle_worker(ex);
			break;
		}
		w = queue_take(ex, false, NULL, NULL, NULL);
		started++;
		if (ex->stopped) {
			int rc = add_not_started(ex, w->task, ECANCELED);

			work_free(ex, w);
			if (rc < 0)
				return -1;
			continue;
		}
		if (w->start) {
			int rc = launch_channel(ex, w->start, w->ctx, w->arg,
						w->len, w->task, w);

			work_free(ex, w);
			if (rc < 0)
				return -1;
		} else if (launch(ex, w->fn, w->pfn, w->ctx, w->arg, w->len,
				  w->task, w) < 0) {
			return -1;
		}
	}
	return started;
}

/* Starts or queues one task (exchange_start, exchange_start_plain and
 * exchange_submit_channel: one of fn, pfn and start). Returns its task
 * number. */
static ssize_t submit(struct exchange *ex, channel_fn *fn,
		      exchange_plain_fn *pfn, exchange_channel_fn *start,
		      const void *arg, size_t len, void *ctx)
{
	struct work *w = NULL;
	struct slot *idle;
	size_t task;

	if (unusable(ex))
		return -1;
	if ((fn != NULL) + (pfn != NULL) + (start != NULL) != 1 ||
	    (len && !arg)) {
		errno = EINVAL;
		return -1;
	}
	task = ex->next_task++;
	if (ex->stopped) {
		if (add_not_started(ex, task, ECANCELED) < 0)
			return -1;
		return (ssize_t)task;
	}
	idle = ex->qhead ? NULL : idle_worker(ex, fn, pfn, ctx);
	if (idle || (!ex->qhead && !exchange_busy(ex) && full(ex))) {
		/* An idle worker of the same function takes it at once;
		 * else one of another function leaves, and the work waits
		 * for its place. */
		w = work_new(ex, fn, pfn, start, ctx, arg, len, task);
		if (!w)
			return -1;
		queue_push(ex, w, false);
		if (idle)
			worker_next(ex, idle);
		else if (!worker_leaving(ex))
			stop_an_idle_worker(ex);
		return (ssize_t)task;
	}
	if (exchange_busy(ex) || ex->qhead) {
		/* Queued work starts in start order, so nothing overtakes
		 * what is already waiting. */
		w = work_new(ex, fn, pfn, start, ctx, arg, len, task);
		if (!w)
			return -1;
		queue_push(ex, w, false);
		return (ssize_t)task;
	}
	if (start) {
		if (launch_channel(ex, start, ctx, arg, len, task, NULL) < 0)
			return -1;
		return (ssize_t)task;
	}
	if (ex->opts.policy == EXCHANGE_RETRY && ex->opts.retries > 0) {
		/* A retry needs the argument as it was at the start. */
		w = work_new(ex, fn, pfn, NULL, ctx, arg, len, task);
		if (!w)
			return -1;
	}
	if (launch(ex, fn, pfn, ctx, arg, len, task, w) < 0)
		return -1;
	return (ssize_t)task;
}

/* ------------------------------------------------------------------------ */
/* Adding and removing channels                                             */
/* ------------------------------------------------------------------------ */

ssize_t exchange_add(struct exchange *ex, struct channel *ch)
{
	size_t task;

	if (unusable(ex))
		return -1;
	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	if (channel_owner(ch)) {
		errno = EEXIST;
		return -1;
	}
	task = ex->next_task++;
	if (adopt(ex, ch, task) < 0)
		return -1;
	return (ssize_t)task;
}

int exchange_remove(struct exchange *ex, struct channel *ch)
{
	bool close_it, owed;
	struct slot *s;
	size_t task;
	int h;

	s = ex && ch ? channel_owner(ch) : NULL;
	if (!s || s->index >= ex->nslots || ex->slots[s->index] != s) {
		errno = ENOENT;
		return -1;
	}
	close_it = !ex->opts.keep_removed;
	/* Work the exchange started keeps its one outcome: removed before it
	 * gave one (nothing received, nothing whole waiting to be), it is
	 * CHANNEL_REMOVED. */
	task = channel_task(ch);
	h = channel_head(ch);
	owed = s->role != ROLE_USER && s->life < SLOT_FINAL &&
	       task != CHANNEL_NO_TASK && delivered(s) == 0 &&
	       (h == 0 || h == FRAME_DONE);
	if (close_it && !inherited(ex)) {
		channel_close_fds(ch);
		end_processes(ex, s->index, 1);
	}
	slot_remove(ex, s, close_it);
	if (owed && add_outcome(ex, task, CHANNEL_REMOVED, 0,
				"removed before it ended") < 0)
		return -1;
	return 0;
}

int exchange_terminate(struct exchange *ex)
{
	int64_t now;
	int grace;
	size_t i;

	if (unusable(ex))
		return -1;
	grace = grace_of(ex);
	/* Nothing new starts: queued work is cancelled as after a failure
	 * under EXCHANGE_STOP. */
	ex->stopped = true;
	ex->terminating = true;
	now = clock_now_ms();
	for (i = 0; i < ex->nslots; i++) {
		struct slot *s = ex->slots[i];

		if (channel_running(s->ch))
			channel_limit_end(s->ch, &s->lim, now, grace);
	}
	return 0;
}

/* Whether the task on s is running: given to a process that has not ended
 * it (a worker's DONE ends it), with no outcome settled yet, and not on
 * its way out (a task to run again is queued, not running). */
static bool task_running(const struct slot *s)
{
	return channel_task(s->ch) != CHANNEL_NO_TASK &&
	       s->life < SLOT_FINAL && s->phase == PHASE_TASK;
}

int exchange_cancel(struct exchange *ex, size_t task)
{
	struct work *w, *prev = NULL;
	size_t i;

	if (unusable(ex))
		return -1;
	if (task >= ex->next_task) {
		errno = ERANGE;
		return -1;
	}
	for (w = ex->qhead; w; prev = w, w = w->next) {
		if (w->task != task)
			continue;
		work_free(ex, queue_unlink(ex, prev, w));
		return add_not_started(ex, task, ECANCELED);
	}
	for (i = 0; i < ex->nslots; i++) {
		if (channel_task(ex->slots[i]->ch) == task &&
		    task_running(ex->slots[i])) {
			errno = EBUSY;
			return -1;
		}
	}
	errno = EALREADY;
	return -1;
}

int exchange_progress(const struct exchange *ex, struct exchange_counts *p)
{
	size_t i, running = 0;

	if (!ex || !p) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < ex->nslots; i++)
		if (task_running(ex->slots[i]))
			running++;
	p->queued = ex->nqueued;
	p->running = running;
	/* Every task number handed out is queued, running or finished. */
	assert(ex->next_task >= p->queued + running);
	p->finished = ex->next_task - p->queued - running;
	return 0;
}

/* Calls the progress callback when the counts have changed since it was
 * last called. */
static void report_progress(struct exchange *ex)
{
	struct exchange_counts p;

	if (!ex->opts.progress || exchange_progress(ex, &p) < 0 ||
	    (ex->reported_once && p.queued == ex->reported.queued &&
	     p.running == ex->reported.running &&
	     p.finished == ex->reported.finished))
		return;
	ex->reported = p;
	ex->reported_once = true;
	ex->opts.progress(ex, &p, ex->opts.udata);
}

size_t exchange_active(const struct exchange *ex, struct channel **chs,
		       size_t cap)
{
	size_t i;

	if (!ex)
		return 0;
	for (i = 0; i < ex->nslots && i < cap && chs; i++)
		chs[i] = ex->slots[i]->ch;
	return ex->nslots;
}

ssize_t exchange_add_wait(struct exchange *ex, struct channel *ch)
{
	if (!ex || !ch) {
		errno = EINVAL;
		return -1;
	}
	while (exchange_busy(ex)) {
		if (exchange_store(ex, -1) < 0) {
			int saved = errno;

			channel_close(ch);
			errno = saved;
			return -1;
		}
	}
	return exchange_add(ex, ch);
}

int exchange_wait(struct exchange *ex)
{
	if (!ex) {
		errno = EINVAL;
		return -1;
	}
	while (exchange_busy(ex))
		if (exchange_store(ex, -1) < 0)
			return -1;
	return 0;
}

int exchange_finish(struct exchange *ex)
{
	if (!ex) {
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		if (!exchange_unfinished(ex)) {
			/* The work is done: idle workers leave, and finish
			 * returns once they have. */
			if (!ex->nidle)
				return 0;
			while (stop_an_idle_worker(ex))
				;
		}
		if (exchange_store(ex, -1) < 0)
			return -1;
	}
}

int exchange_broadcast(struct exchange *ex, const void *buf, size_t len,
		       int timeout_ms)
{
	size_t i;
	int n = 0;

	if (!ex || (len && !buf)) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < ex->nslots; i++) {
		struct channel *ch = ex->slots[i]->ch;

		/* Every running task, on its own process or on a worker; a
		 * worker between tasks has none to read it. */
		if (!channel_can_send(ch) || channel_task(ch) == CHANNEL_NO_TASK ||
		    ex->slots[i]->life >= SLOT_FINAL)
			continue;
		if (channel_send(ch, buf, len, timeout_ms) == 0)
			n++;
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* Ends of tasks                                                            */
/* ------------------------------------------------------------------------ */

/* A read of a monitored channel failed with err. A socket whose peer left
 * with bytes of ours unread is reset (ECONNRESET) once its messages have
 * been read: for the exchange that is the end of the stream, and the task's
 * outcome comes from how its process ended. Any other error stops the
 * channel. */
static void read_failed(struct channel *ch, int err)
{
	if (err == ECONNRESET)
		channel_end_input(ch);
	else
		channel_fail_input(ch, err);
}

/* Reads what an exited process left in its channel: until the kernel's
 * buffer is empty (everything the process wrote was there when it
 * exited), end of stream, or *left bytes (something the process started
 * may go on writing). No clock: a loaded machine must not cut the drain
 * short. Returns 1 when a whole frame has arrived (it is delivered first),
 * 0 when the channel can end. */
static int drain_exited(struct channel *ch, size_t *left)
{
	ssize_t n;

	while (!channel_input_error(ch) && *left > 0) {
		n = channel_fill(ch);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				read_failed(ch, errno);
			break;
		}
		*left = (size_t)n < *left ? *left - (size_t)n : 0;
		if (channel_head(ch) != 0)
			return 1;
	}
	return 0;
}

/* Whether the reaped process of a slot was stopped by a signal. */
static bool ended_by_signal(const struct channel *ch, const struct slot *s)
{
	int st;

	if (channel_pid(ch) <= 0)
		return false;
	return s->lim.timed_out || (channel_status(ch, &st) == 1 &&
				WIFSIGNALED(st));
}

/* The outcome of a task whose process has ended and whose channel is read
 * to its end, when it gave no result of its own: CHANNEL_OK when nothing
 * is owed (a result was delivered, or no task ran), else the failure, with
 * its text in text. */
static int classify_end(const struct exchange *ex, const struct slot *s,
			int *code, char *text, size_t size)
{
	struct channel *ch = s->ch;
	int cause = CHANNEL_OK, c2, code2;

	*code = 0;
	/* A message cut short by a signal (killed while sending, or over its
	 * time limit) is explained by that signal; a process that ended on
	 * its own in the middle of a frame, or a channel with no process,
	 * is left with the protocol error itself. */
	if (channel_input_error(ch) && !ended_by_signal(ch, s)) {
		*code = ECONNRESET;
		snprintf(text, size, "end of stream inside a message");
		return CHANNEL_PROTOCOL;
	}
	if (channel_task(ch) == CHANNEL_NO_TASK || channel_pid(ch) <= 0)
		return CHANNEL_OK;	/* an idle or stopped worker, or no
					   process */
	if (s->role != ROLE_WORKER) {
		if (delivered(s) == 0 || channel_input_error(ch))
			channel_describe_end(ch, s->lim.timed_out,
					     ex->opts.time_limit_ms, &cause,
					     code, text, size);
		return cause;
	}
	/* A task that sent its result before its worker died has that result
	 * as its one outcome, as a fork-per-task child has; only a task that
	 * sent nothing lost its worker. */
	if (s->phase != PHASE_TASK || delivered(s) != 0)
		return CHANNEL_OK;
	channel_describe_end(ch, s->lim.timed_out, ex->opts.time_limit_ms, &c2,
			     &code2, text, size);
	*code = code2;
	if (c2 == CHANNEL_TIMED_OUT)
		return c2;
	if (c2 != CHANNEL_SIGNALED)
		*code = code2 < 0 ? -1 : code2 + 256;
	snprintf(text, size, "its worker was lost (%s)",
		 c2 == CHANNEL_SIGNALED ? "killed by a signal" : "exited");
	return CHANNEL_LOST;
}

/* Reaps the process of a slot whose channel has ended, without waiting.
 * Returns false while it has not finished exiting (the slot then awaits
 * its reaping, out of the poll set). */
static bool reap_ended(struct exchange *ex, struct slot *s)
{
	struct channel *ch = s->ch;

	if (s->lim.kill_at && channel_ended_unreaped(ch)) {
		/* Over its time limit and gone on SIGTERM: what it started
		 * gets the SIGKILL now, while the group is still its own (the
		 * unreaped leader holds it). A process still cleaning up
		 * after SIGTERM keeps its grace period. */
		channel_kill(ch, SIGKILL);
		channel_limit_stop(&s->lim);
	}
	if (channel_running(ch) && channel_reap_nohang(ch) == 0) {
		set_life(ex, s, SLOT_AWAITING);
		return false;
	}
	return true;
}

/* Gives a task its failure: run again under EXCHANGE_RETRY while tries
 * are left, else a FAILURE message on its channel. Returns 1 when that
 * message is there to deliver, 0 when the slot is to be removed. */
static int record_failure(struct exchange *ex, struct slot *s, int cause,
			  int code, const char *text)
{
	if (ex->opts.policy == EXCHANGE_RETRY && s->cur &&
	    s->cur->attempts <= ex->opts.retries && !ex->stopped) {
		/* Run it again, ahead of the work still waiting. */
		queue_push(ex, s->cur, true);
		s->cur = NULL;
		set_life(ex, s, SLOT_REMOVE);
		return 0;
	}
	if (channel_push_failure(s->ch, cause, code, text) < 0) {
		set_life(ex, s, SLOT_REMOVE);
		return 0;
	}
	note_failure(ex);
	return 1;
}

/* Called when the channel has no whole message buffered. At end of stream
 * (or once its process has exited and what it left is read) it reaps the
 * process without waiting and settles the task's outcome. Returns 1 when
 * the channel is ready again (a FAILURE message was appended, or the drain
 * of an exited process brought a whole frame), 0 otherwise; a finished
 * slot gets its remove mark. */
static int settle(struct exchange *ex, struct slot *s)
{
	struct channel *ch = s->ch;
	char text[128];
	int cause, code;
	bool cut;

	if (!channel_input_ended(ch)) {
		if (s->life != SLOT_DRAINING)
			return 0;
		if (drain_exited(ch, &s->drain_left))
			return 1;
		/* What the exited process wrote has been read: its channel
		 * ends here, whoever else holds the other end. */
		channel_end_input(ch);
		ex->pfds[s->index].fd = -1;
	}
	/* End of stream in the middle of a frame (the child died while
	 * sending): that frame is lost. */
	cut = channel_partial(ch);
	if (!cut && s->life >= SLOT_FINAL) {
		set_life(ex, s, SLOT_REMOVE);
		return 0;
	}
	if (!reap_ended(ex, s))
		return 0;
	if (cut) {
		/* Marked only now: a broken channel fails every look at its
		 * head, which must not happen while it awaits its reaping.
		 * push_failure drops the broken buffer. */
		channel_fail_input(ch, ECONNRESET);
	}
	settled(ex, s);
	cause = classify_end(ex, s, &code, text, sizeof(text));
	if (cause == CHANNEL_OK) {
		set_life(ex, s, SLOT_REMOVE);
		return 0;
	}
	return record_failure(ex, s, cause, code, text);
}

/* A frame the exchange cannot hand to store_data (malformed, or a reuse
 * control frame coming the wrong way): the channel reads nothing more, the
 * process is killed, and the task gets a PROTOCOL failure unless it already
 * has an outcome. */
static void protocol_failure(struct exchange *ex, struct slot *s)
{
	struct channel *ch = s->ch;
	int err = channel_input_error(ch);

	if (!err)
		err = EPROTO;

	/* Nothing more is read: what follows a bad frame has no framing. */
	channel_discard(ch);
	ex->pfds[s->index].fd = -1;
	if (channel_running(ch))
		channel_kill(ch, SIGKILL);
	if (s->life < SLOT_FINAL && channel_task(ch) != CHANNEL_NO_TASK &&
	    delivered(s) == 0 &&
	    channel_push_failure(ch, CHANNEL_PROTOCOL, err,
			 "the channel carried a bad frame") == 0)
		note_failure(ex);
	settled(ex, s);
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */
/* ------------------------------------------------------------------------ */

/* Sends SIGTERM, then SIGKILL, to tasks over their time limit. Returns the
 * earliest deadline still ahead (0 if none). */
static int64_t enforce_limits(struct exchange *ex)
{
	int64_t now, next = 0, t;
	size_t i;

	if (ex->opts.time_limit_ms <= 0 && !ex->terminating)
		return 0;
	now = clock_now_ms();
	for (i = 0; i < ex->nslots; i++) {
		t = channel_limit_apply(ex->slots[i]->ch, &ex->slots[i]->lim,
					now, grace_of(ex));
		if (t && (!next || t < next))
			next = t;
	}
	return next;
}

/* Tells the workers idle for idle_ms to leave. Returns when the next one
 * is due (0 if none). */
static int64_t expire_idle(struct exchange *ex)
{
	int64_t now, next = 0;
	size_t i;

	if (ex->opts.idle_ms <= 0 || !ex->nidle)
		return 0;
	now = clock_now_ms();
	for (i = 0; ex->nidle && i < ex->nslots; i++) {
		struct slot *s = ex->slots[i];

		if (s->phase != PHASE_IDLE)
			continue;
		if (now >= s->idle_until)
			stop_worker(ex, s);
		else if (!next || s->idle_until < next)
			next = s->idle_until;
	}
	return next;
}

/* Looks at every slot, starting one further round each time, for
 * channels with a whole message buffered (or a recorded failure), and
 * settles the finished ones. Stores up to cap ready channels in chs. */
static size_t scan_ready(struct exchange *ex, struct channel **chs,
			 size_t cap)
{
	size_t n = 0, k, i, count = ex->nslots, start;
	bool removing = false;
	int h;

	if (!count)
		return 0;
	start = ex->scan % count;
	for (k = 0; k < count; k++) {
		struct slot *s;
		struct channel *ch;

		i = (start + k) % count;
		s = ex->slots[i];
		ch = s->ch;
		if (s->life == SLOT_REMOVE) {
			removing = true;
			continue;
		}
		h = channel_head(ch);
		while (h == FRAME_DONE) {
			worker_done(ex, s);
			h = channel_head(ch);
		}
		if (h < 0 || (h > FRAME_FAILURE && h != FRAME_STREAM)) {
			protocol_failure(ex, s);
			h = channel_head(ch);
		}
		if (h == 0) {
			if (s->phase == PHASE_OWED)
				worker_next(ex, s);
			h = settle(ex, s);
		}
		if (s->life == SLOT_REMOVE)
			removing = true;
		if (h > 0 && n < cap) {
			chs[n++] = ch;
			ex->scan = i + 1;
		}
	}
	if (removing) {
		for (i = ex->nslots; i-- > 0;) {
			struct slot *s = ex->slots[i];

			if (s->life == SLOT_REMOVE)
				slot_ended(ex, s);
		}
	}
	return n;
}

/* Reaps, without waiting, the processes that have exited while their
 * channel is still open: a process it started (a daemon, a command left
 * running) holds the other end, and end of stream would come only when
 * that one ends. The process's exit decides instead: what it wrote is
 * read, then the channel ends (settle). Runs every EXIT_CHECK_MS while the
 * exchange waits, one waitpid per child. A slot between SIGTERM and SIGKILL
 * is left alone, so that its group still gets the SIGKILL. */
static void check_exits(struct exchange *ex, int64_t now)
{
	size_t i;

	ex->next_exit_check = now + EXIT_CHECK_MS;
	for (i = 0; i < ex->nslots; i++) {
		struct slot *s = ex->slots[i];
		struct channel *ch = s->ch;

		if (s->life != SLOT_OPEN || s->lim.kill_at ||
		    channel_input_ended(ch) || !channel_running(ch) ||
		    channel_fd(ch) < 0 ||
		    channel_reap_nohang(ch) != 1)
			continue;
		/* What it wrote is read by the next scan (settle). */
		set_life(ex, s, SLOT_DRAINING);
		s->drain_left = EXIT_DRAIN_BYTES;
	}
}

/* Tries to reap the slots waiting for their process. */
static void retry_reaps(struct exchange *ex)
{
	size_t i;

	for (i = 0; i < ex->nslots && ex->nawait; i++) {
		struct slot *s = ex->slots[i];

		if (s->life == SLOT_AWAITING &&
		    channel_reap_nohang(s->ch) != 0) {
			set_life(ex, s, SLOT_REAPED);
			ex->reap_pause_ns = REAP_PAUSE_FIRST_NS;
		}
	}
}

/* Sends the credits its channels owe that found no room before (see
 * channel_pay_credit). Returns how long the wait may last before the next
 * try, or -1 when none is owed any more. */
static int pay_credits(struct exchange *ex)
{
	bool owed = false;
	size_t i;
	int wait;

	for (i = 0; channel_credits_owed() && i < ex->nslots; i++)
		if (channel_pay_credit(ex->slots[i]->ch))
			owed = true;
	if (!owed) {
		/* Written only when set: the exchange's page is one more
		 * copy-on-write fault after each fork. */
		if (ex->credit_retry_ms)
			ex->credit_retry_ms = 0;
		return -1;
	}
	wait = ex->credit_retry_ms ? ex->credit_retry_ms
				   : CREDIT_RETRY_FIRST_MS;
	ex->credit_retry_ms = wait < CREDIT_RETRY_LAST_MS ? 2 * wait : wait;
	return wait;
}

/* The common wait of exchange_ready and exchange_store: up to timeout_ms
 * for ready channels. Returns how many were stored in chs, -1 on error. */
static int gather(struct exchange *ex, int timeout_ms, struct channel **chs,
		  size_t cap)
{
	int64_t deadline = clock_deadline(timeout_ms), next, now, d;
	bool last = false;
	size_t n, i;
	int r, t, nev;

	for (;;) {
		next = enforce_limits(ex);
		d = expire_idle(ex);
		if (d && (!next || d < next))
			next = d;
		if (ex->nawait)
			retry_reaps(ex);
		now = clock_now_ms();
		if (ex->nslots && now >= ex->next_exit_check)
			check_exits(ex, now);
		n = scan_ready(ex, chs, cap);
		if (n > 0)
			return (int)n;
		if (ex->qhead && !exchange_busy(ex)) {
			/* The scan freed a place: queued work starts now, not
			 * after the next event. */
			r = start_queued(ex);
			if (r < 0)
				return -1;
			if (r > 0)
				continue;
		}
		/* Idle workers send nothing until given work. */
		if (last || !exchange_unfinished(ex))
			return 0;
		/* From the pass's one reading of the clock: what ran since
		 * (the scan) took no time to speak of, and a start of queued
		 * work reads it afresh. */
		t = clock_left_at(deadline, now);
		/* Wake for the next time limit or exit check, whichever is
		 * first. */
		if (!next || ex->next_exit_check < next)
			next = ex->next_exit_check;
		d = next - now;
		if (d < 0)
			d = 0;
		if (t < 0 || d < t)
			t = (int)d;
		if (ex->nblind)
			t = 0;
		d = pay_credits(ex);
		if (d >= 0 && (t < 0 || d < t))
			t = (int)d;
		r = poll(ex->pfds, ex->nslots, t);
		if (r < 0) {
			if (errno != EINTR)
				return -1;
			continue;
		}
		for (i = 0, nev = r; nev > 0 && i < ex->nslots; i++) {
			struct pollfd *p = &ex->pfds[i];
			struct channel *ch;

			if (!p->revents)
				continue;
			nev--;
			if (ex->slots[i]->life == SLOT_AWAITING) {
				/* Its process has exited: reaped on the next
				 * pass (retry_reaps). */
				p->revents = 0;
				continue;
			}
			ch = ex->slots[i]->ch;
			if (p->revents & POLLNVAL) {
				/* Our bookkeeping is wrong. */
				p->revents = 0;
				errno = EBADF;
				return -1;
			}
			channel_polled(ch, p->revents);
			p->revents = 0;
			if (channel_fill(ch) < 0 && errno != EAGAIN &&
			    errno != EWOULDBLOCK)
				read_failed(ch, errno);
		}
		if (ex->nblind && r == 0) {
			/* Nothing came, and a child has closed its channel
			 * but not yet finished exiting: let it run. */
			int left = clock_left(deadline);
			struct timespec ts;
			long ns = ex->reap_pause_ns;

			if (left >= 0 && (int64_t)ns > (int64_t)left * 1000000)
				ns = (long)left * 1000000;
			ts.tv_sec = 0;
			ts.tv_nsec = ns;
			if (ns > 0)
				nanosleep(&ts, NULL);
			if (ex->reap_pause_ns < REAP_PAUSE_LAST_NS)
				ex->reap_pause_ns *= 2;
		}
		if (clock_left(deadline) == 0)
			last = true;
	}
}

/* The timeout of a wait, cut at the next tick (tick_ms): ticks fall every
 * tick_ms from the exchange's creation, and those that passed while
 * nobody waited are skipped. */
static int tick_timeout(struct exchange *ex, int timeout_ms)
{
	int64_t now, left;

	if (ex->opts.tick_ms <= 0)
		return timeout_ms;
	now = clock_now_ms();
	if (ex->next_tick <= now)
		ex->next_tick += ((now - ex->next_tick) / ex->opts.tick_ms + 1) *
				 ex->opts.tick_ms;
	left = ex->next_tick - now;
	if (timeout_ms >= 0 && timeout_ms < left)
		return timeout_ms;
	return (int)left;
}

int exchange_ready(struct exchange *ex, struct channel **chs, size_t cap,
		   int timeout_ms)
{
	struct channel *local[STORE_BATCH];

	if (unusable(ex))
		return -1;
	if (cap && !chs) {
		errno = EINVAL;
		return -1;
	}
	if (start_queued(ex) < 0)
		return -1;
	timeout_ms = tick_timeout(ex, timeout_ms);
	if (!chs || !cap) {
		/* The caller wants the count only: look at a batch. */
		return gather(ex, timeout_ms, local, STORE_BATCH);
	}
	return gather(ex, timeout_ms, chs, cap);
}

/* Calls store_data for each message buffered on ch. Returns the number of
 * calls, -1 when store_data failed. */
static int deliver(struct exchange *ex, struct channel *ch)
{
	struct channel_msg m;
	int calls = 0, refills = 0, h, rc;

	for (;;) {
		struct slot *s = channel_owner(ch);
		unsigned long removals, progress;

		h = channel_head(ch);
		if (h == FRAME_DONE) {
			worker_done(ex, s);
			continue;
		}
		if (h < 0 || (h > FRAME_FAILURE && h != FRAME_STREAM)) {
			protocol_failure(ex, s);
			continue;
		}
		if (h == 0) {
			if (s->phase == PHASE_OWED)
				worker_next(ex, s);
			if (channel_may_fill(ch) &&
			    refills < REFILLS_PER_PASS) {
				refills++;
				if (channel_fill(ch) >= 0)
					continue;
			}
			if (settle(ex, s) > 0)
				continue;
			if (s->life == SLOT_REMOVE)
				slot_ended(ex, s);
			return calls;
		}
		if (h == FRAME_ERROR)
			note_failure(ex);
		removals = ex->removals;
		progress = channel_progress(ch);
		rc = 0;
		/* A callback that fails without saying why gets EIO, not
		 * whatever errno an earlier call left. Written only when it
		 * is not 0 already: its page (the thread's) is one more
		 * copy-on-write fault after each fork. */
		if (errno)
			errno = 0;
		if (ex->opts.store_data)
			rc = ex->opts.store_data(ex, ch, ex->opts.udata);
		calls++;
		if (rc < 0) {
			/* Nothing about the message changes: the next store
			 * offers it again. */
			if (!errno)
				errno = EIO;
			return -1;
		}
		if (!still_registered(ex, ch, removals))
			return calls;
		if (channel_progress(ch) == progress) {
			/* store_data left it there. A message is dropped, so
			 * that the loop cannot spin on it; items nobody takes
			 * (no store_data, a Map or a Queue) block the channel
			 * for good: the task's outcome is a protocol failure,
			 * and the others carry on. */
			if (h == FRAME_STREAM)
				protocol_failure(ex, s);
			else if (channel_recv(ch, &m, 0) == 1)
				channel_msg_free(&m);
			continue;
		}
		if (h == FRAME_STREAM)
			return calls;
	}
}

/* Waits for ready channels and delivers what they hold: exchange_store
 * without the starts. Apart, so that its list of ready channels is not
 * on the stack below the forks of start_queued: each page of stack the
 * parent writes after a fork is a copy-on-write fault. */
static NOINLINE int store_ready(struct exchange *ex, int timeout_ms)
{
	struct channel *ready[STORE_BATCH];
	unsigned long removals;
	int n, i, calls = 0, r;

	n = gather(ex, tick_timeout(ex, timeout_ms), ready, STORE_BATCH);
	if (n < 0)
		return -1;
	removals = ex->removals;
	for (i = 0; i < n; i++) {
		struct channel *ch = ready[i];

		/* An earlier store_data may have removed it. */
		if (!still_registered(ex, ch, removals))
			continue;
		r = deliver(ex, ch);
		if (r < 0)
			return -1;
		calls += r;
	}
	return calls;
}

int exchange_store(struct exchange *ex, int timeout_ms)
{
	int calls;

	if (unusable(ex))
		return -1;
	if (start_queued(ex) < 0)
		return -1;
	calls = store_ready(ex, timeout_ms);
	if (calls < 0 || start_queued(ex) < 0)
		return -1;
	report_progress(ex);
	return calls;
}

/* ------------------------------------------------------------------------ */
/* The start calls                                                          */
/* ------------------------------------------------------------------------ */

ssize_t exchange_start(struct exchange *ex, channel_fn *fn, const void *arg,
		       size_t len, void *ctx)
{
	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	return submit(ex, fn, NULL, NULL, arg, len, ctx);
}

ssize_t exchange_start_plain(struct exchange *ex, exchange_plain_fn *fn,
			     const void *arg, size_t len, void *ctx)
{
	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	return submit(ex, NULL, fn, NULL, arg, len, ctx);
}

ssize_t exchange_submit_channel(struct exchange *ex, exchange_channel_fn *start,
				const void *arg, size_t len, void *ctx)
{
	if (!start) {
		errno = EINVAL;
		return -1;
	}
	return submit(ex, NULL, NULL, start, arg, len, ctx);
}

int exchange_create_begin(struct exchange *ex, struct channel **child)
{
	if (!ex || !child) {
		errno = EINVAL;
		return -1;
	}
	*child = NULL;
	return exchange_wait(ex);
}

pid_t exchange_create(struct exchange *ex, struct channel **child)
{
	struct channel *ch;
	pid_t pid;

	if (exchange_create_begin(ex, child) < 0)
		return -1;
	pid = channel_fork(&ch, fork_flags(ex)); /* pipes */
	if (pid < 0)
		return -1;
	if (pid == 0) {
		*child = ch;
		return 0;
	}
	if (exchange_add(ex, ch) < 0)
		return -1;
	return pid;
}
