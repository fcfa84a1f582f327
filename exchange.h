/*
 * exchange.h - run work in forked processes and collect what they send back.
 *
 * The one public header of libexchange. Three layers:
 *
 *   struct channel   one two-way link (a pair of pipes, or a Unix-domain
 *                    socket) between this process and one other process;
 *                    framed messages, timeouts, item streams.
 *   struct exchange  a set of channels polled together, with a limit on how
 *                    many run at once, a store_data callback, continuous and
 *                    reuse modes, and the built-in Map and Queue collectors.
 *   manage           work started on the caller's behalf: exchange_start,
 *                    exchange_create, exchange_manage, exchange_pmap.
 *
 * Conventions, for every function below unless its comment says otherwise:
 *
 *   - Failure returns -1 (or NULL) with errno set. Receiving returns 1 for a
 *     message, 0 for end of stream and -1 for an error.
 *   - Timeouts are in milliseconds, measured from a monotonic clock: -1 waits
 *     for ever, 0 does not wait. A wait that runs out fails with ETIMEDOUT.
 *   - Free functions accept NULL.
 *   - Threads: a channel, an exchange and a pmap call are used from one
 *     thread at a time; different threads may each use their own at once
 *     (what they share, the list of open channels that every fork closes in
 *     the child, is locked). channel_waitall reaps the processes of every
 *     thread's channels. A child is forked with one thread, the caller's.
 *   - The library never prints, exits or aborts on a runtime failure, installs
 *     no signal handler and changes no signal disposition. It waits only for
 *     the processes it started, each with waitpid(pid, ...).
 *
 * SIGPIPE: writing to a channel whose reader has gone fails with EPIPE and
 * never kills the caller. When a channel is created the library looks at
 * SIGPIPE once: if the process ignores it, or the calling thread blocks it,
 * writes go straight to the kernel; otherwise each write blocks SIGPIPE in
 * the calling thread for its duration and consumes the SIGPIPE it caused.
 * Programs that ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) save two system
 * calls per write.
 *
 * Processes: a child made by the library closes, right after fork, every
 * descriptor of every other channel the library has open (so end-of-file
 * arrives when it should) but keeps the caller's other descriptors. Stdio is
 * flushed before every fork (unless exchange_options.no_stdio_flush says
 * the children use none), and children end with _exit(), so the parent's
 * atexit handlers and stdio buffers are never run or written twice.
 *
 * A parent's death: every child the library forks (channel_create,
 * channel_start, the exchange's tasks and reuse workers, pmap's workers) is
 * sent SIGKILL when its parent dies, even when it never touches its
 * channel, on Linux (prctl PR_SET_PDEATHSIG) and FreeBSD (procctl
 * PROC_PDEATHSIG_CTL). On Linux the signal comes when the thread that
 * called the library ends, not only the process: fork from a thread that
 * outlives its children. A parent that died while the child was being
 * forked is caught too: the child then ends at once. The request lasts
 * across an exec in the child (not one of a set-user-ID program). On other
 * systems a child is not killed: it ends when it next touches its channel
 * (end of stream, EPIPE). Persistent and background processes
 * (channel_start_persistent) are never killed this way: they are meant to
 * outlive their caller.
 */
#ifndef EXCHANGE_H
#define EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: only what this header
 * declares, between this push and the pop at its end, is exported from the
 * shared library (make check-exports verifies it). */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Marks a function that never returns, in C11, C++11 and older dialects. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define EXCHANGE_NORETURN [[noreturn]]
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && \
	__STDC_VERSION__ >= 201112L
#define EXCHANGE_NORETURN _Noreturn
#elif defined(__GNUC__) || defined(__clang__)
#define EXCHANGE_NORETURN __attribute__((__noreturn__))
#else
#define EXCHANGE_NORETURN
#endif

#define EXCHANGE_VERSION_MAJOR 0
#define EXCHANGE_VERSION_MINOR 2
#define EXCHANGE_VERSION_PATCH 0
#define EXCHANGE_VERSION "0.2.0"

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
const char *exchange_version(void);

/* ------------------------------------------------------------------------ */
/* Channels                                                                 */
/* ------------------------------------------------------------------------ */

struct channel;

/* The largest message a channel accepts unless channel_set_max says
 * otherwise: 1 GiB. */
#define CHANNEL_MAX_DEFAULT ((size_t)1 << 30)

/* Marks a message that belongs to no task of an exchange. */
#define CHANNEL_NO_TASK ((size_t)-1)

/* What a received message is. */
enum channel_kind {
	CHANNEL_DATA = 1,	/* bytes the other side sent with channel_send */
	CHANNEL_ERROR = 2,	/* text the other side sent with channel_send_error */
	CHANNEL_FAILURE = 3,	/* a failure the parent recorded for the task */
};

/* Why a piece of work ended without a result. CHANNEL_OK means it did not
 * fail. The meaning of the accompanying code is given for each. */
enum channel_cause {
	CHANNEL_OK = 0,		/* code 0 */
	CHANNEL_SENT_ERROR,	/* the child sent an error message; code 0 */
	CHANNEL_SIGNALED,	/* killed by a signal; code: the signal number */
	CHANNEL_EXITED,		/* exited without a result; code: exit status */
	CHANNEL_TIMED_OUT,	/* exceeded its time limit; code: limit in ms */
	CHANNEL_NOT_STARTED,	/* fork or pipe failed; code: the errno */
	CHANNEL_LOST,		/* its worker died mid-task; code: signal,
				   exit status + 256, or -1 when the status
				   is unknown */
	CHANNEL_PROTOCOL,	/* the channel carried a bad frame, a frame
				   only the parent may make (a FAILURE, a
				   TASK), or stream items that nothing took;
				   code: errno (EPROTO or EMSGSIZE) */
	CHANNEL_REMOVED,	/* exchange_remove took it out before it gave
				   an outcome; code 0 */
};

/* One received message. After channel_recv the caller owns data and frees it
 * with free() or channel_msg_free(). For CHANNEL_ERROR and CHANNEL_FAILURE,
 * data is a NUL-terminated text saying what went wrong. The library always
 * puts a NUL byte after the len bytes of data, so text payloads need no
 * copy. */
struct channel_msg {
	void *data;		/* the payload (malloc'd), NUL-terminated */
	size_t len;		/* bytes of payload, not counting the NUL */
	int kind;		/* enum channel_kind */
	int cause;		/* enum channel_cause; CHANNEL_OK for data */
	int code;		/* signal, status or errno, as the cause says */
	size_t task;		/* the task it answers, or CHANNEL_NO_TASK */
};

/* Frees msg->data and sets it to NULL. Accepts NULL. */
void channel_msg_free(struct channel_msg *msg);

/* A parallel-aware function: runs in a child process with its channel, the
 * argument bytes and the caller's context pointer. In fork-per-task mode arg
 * points into the child's copy of the parent's memory; in reuse mode it is a
 * copy received over the channel. Either way it is valid for the call. */
typedef void channel_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx);

/* Forks a process joined to this one by a new channel (pprocess create).
 * Returns the channel in both processes: in the child channel_pid() returns
 * 0. The child holds only its own end of this channel: every descriptor of
 * every other channel is closed in it. The child ends with channel_exit().
 * When the parent (on Linux: the calling thread) dies first, the child is
 * killed with SIGKILL on Linux and FreeBSD, and on other systems ends only
 * when it touches its channel (see "A parent's death" above).
 * Returns NULL with errno set (EMFILE, ENFILE, EAGAIN, ENOMEM) on failure,
 * and then no process was created. The parent owns the channel and releases
 * it with channel_close(). */
struct channel *channel_create(void);

/* Runs fn(ch, arg, len, ctx) in a new process (pprocess start) and returns
 * the parent's end of its channel. When fn returns, the child flushes stdio
 * and leaves with _exit(0). A function that returns without sending anything
 * is seen by the parent as end-of-stream with exit status 0; one that fails
 * can say why with channel_send_error(). NULL with errno on failure, and
 * then fn has not run and won't. */
struct channel *channel_start(channel_fn *fn, const void *arg, size_t len,
			      void *ctx);

/* A plain function (the MakeParallel idea): computes a result from arg and
 * returns it in memory from malloc() that the library frees after sending,
 * with its size in *result_len; or returns NULL with errno set to fail (the
 * parent gets CHANNEL_ERROR with strerror(errno)). */
typedef void *exchange_plain_fn(const void *arg, size_t len,
				size_t *result_len, void *ctx);

/* The MakeParallel idea without an exchange: runs the plain function fn
 * (see exchange_plain_fn) in a new process, as channel_start runs a
 * channel_fn, and returns the parent's end of its channel, on which the
 * function's result arrives as one message (or its failure as
 * CHANNEL_ERROR with strerror(errno)), then end of stream. NULL with
 * errno on failure (EINVAL for a NULL fn, or len above 0 with arg NULL),
 * and then fn has not run and won't. */
struct channel *channel_start_plain(exchange_plain_fn *fn, const void *arg,
				    size_t len, void *ctx);

/* The pid of the process at the other end: 0 in a child created by
 * channel_create, -1 when there is no process (a connected socket). */
pid_t channel_pid(const struct channel *ch);

/* In a child: closes the channel (the parent then sees end-of-stream once it
 * has read everything sent), flushes stdio (not in a child of an exchange
 * made with no_stdio_flush) and ends the process with _exit(status). Never
 * returns. */
EXCHANGE_NORETURN void channel_exit(struct channel *ch, int status);

/* Sends one message of len bytes (0 is allowed) within timeout_ms. Returns 0,
 * or -1 with errno: ETIMEDOUT (the channel stayed full), EPIPE (the reader
 * has gone), ECONNABORTED (sending was abandoned in the middle of a frame
 * earlier), EMSGSIZE (len is above the channel maximum), EINVAL. A send that
 * times out having written nothing of its message leaves the channel
 * usable: the message was not sent, and later sends work. One whose message
 * was cut in the middle, by a timeout or an error, cannot take the part
 * written back: it ends this side's sending, and every later send fails
 * with ECONNABORTED (receiving still works). */
int channel_send(struct channel *ch, const void *buf, size_t len,
		 int timeout_ms);

/* Sends text as an error frame: the receiver gets kind CHANNEL_ERROR, never
 * ordinary data. Same returns as channel_send. */
int channel_send_error(struct channel *ch, const char *text, int timeout_ms);

/* Bounds this side's sending on ch (maize's bounded DataChannel): once n of
 * its messages (channel_send and channel_send_error) are in flight, sent
 * and not yet taken by the other side, a send waits for the other side to
 * take one, within its timeout_ms, whatever room the pipe has: -1 waits
 * for ever, 0 only takes what has arrived; then it fails with ETIMEDOUT,
 * and nothing was sent (later sends work), or with EPIPE once no taking
 * can come any more (the other side has exited, or closed or broke its
 * sending direction). n 0 lifts the bound (the default); a bound applies
 * to the messages sent after it is set.
 *
 * Only the sending side calls it: the bound travels on the wire, in
 * front of the next message, and the other side's library then credits
 * each message as it hands it over (channel_recv, channel_flush, an
 * exchange's delivery to store_data, a Map or a Queue; channel_peek and
 * channel_ready take nothing), with a small frame back over the reverse
 * direction, never seen by any reader. A credit that finds that direction
 * full is sent once there is room, by the next receive that waits on the
 * channel (it watches for the room too) or by an exchange's wait (which
 * tries again every few milliseconds); a program that waits on
 * channel_fd itself for input alone must call a receive with timeout 0
 * now and then for it to go. A waiting send reads its own input
 * meanwhile: messages that arrive stay buffered for the receives.
 * Messages put back with channel_preload were counted when first taken.
 * Item streams (channel_put) are not counted. In a child of an exchange,
 * fn calls it on its own end; in a reuse worker it holds for the worker's
 * life. A bounded parent end makes exchange_broadcast wait on it too.
 * Returns 0, or -1 with EINVAL, EBADF (an inherited channel), ENOTSUP (a
 * persistent channel: its messages are acknowledged already), ENOMEM. */
int channel_set_bound(struct channel *ch, size_t n);

/* Receives the next message within timeout_ms. Returns 1 and fills *msg (the
 * caller frees msg->data), 0 at end of stream (the other side has closed and
 * everything it sent has been received; on a reuse worker's channel in an
 * exchange, also where one task's messages end: the next task's come once
 * the exchange has handed it out), or -1 with errno: ETIMEDOUT
 * (nothing complete arrived in time; whatever part arrived stays buffered),
 * ENOMSG (stream items are next, or a get is in the middle of a put: they
 * are for channel_get, and the channel is not harmed), EMSGSIZE (the frame
 * is above the maximum; nothing was allocated), EPROTO (a malformed frame,
 * or a FAILURE frame from the other side: only the receiving process makes
 * those), ECONNRESET (end of stream in the middle of a frame), EBADF (a
 * channel inherited from the parent: inert here), EINVAL. After EMSGSIZE
 * or EPROTO the channel receives nothing more. */
int channel_recv(struct channel *ch, struct channel_msg *msg, int timeout_ms);

/* Like channel_recv, but leaves the message in place: the next channel_recv
 * returns it again. msg->data is lent: it stays valid until the next receive,
 * flush, preload or close of this channel. Same returns as channel_recv,
 * ENOMSG included. */
int channel_peek(struct channel *ch, struct channel_msg *msg, int timeout_ms);

/* Waits up to timeout_ms for a whole message to be receivable without
 * blocking. Returns 1 if one is (or end of stream has been reached, so that a
 * receive would return at once), 0 if not, -1 on error. */
int channel_ready(struct channel *ch, int timeout_ms);

/* Returns 1 while the other side may still send (end of stream not yet seen)
 * or messages remain buffered, 0 otherwise. */
int channel_active(const struct channel *ch);

/* The number of bytes received from the kernel but not yet consumed, plus
 * what the kernel holds for this channel where it can tell cheaply. -1 on
 * error. */
ssize_t channel_size(const struct channel *ch);

/* Receives every message that arrives within timeout_ms (0: only what is
 * already there; the wait ends early at end of stream) and returns them as
 * one buffer of encoded frames in *frames (the caller frees it) of *len
 * bytes. Returns the number of messages, or -1 on error; then *frames is
 * NULL and no message was taken. Like read(2), a flush never loses what it
 * took: an error after some messages ends the flush, which returns them,
 * and the error comes on the next receive. After a malformed frame
 * (EPROTO, EMSGSIZE), a frame cut short by end of stream (ECONNRESET) or a
 * failed read the channel receives nothing more. Stream items at the head,
 * or a get in the middle of a put, end the flush before them; a flush that
 * has taken nothing then fails with ENOMSG, as recv and peek do, and the
 * items are left for channel_get. Only
 * messages are returned: the library's own control frames are consumed as
 * channel_recv consumes them. The frames can be given back to any channel
 * with channel_preload, this one included. */
ssize_t channel_flush(struct channel *ch, void **frames, size_t *len,
		      int timeout_ms);

/* Decodes the next message of len bytes of frames from channel_flush,
 * starting at offset *off (0 for the first), without a channel: fills *msg
 * as channel_recv does (the caller frees msg->data; msg->task is
 * CHANNEL_NO_TASK) and moves *off past it. Returns 1, 0 once *off is len,
 * or -1 with EPROTO (the bytes at *off are not a whole frame of a message;
 * *off is left there), EMSGSIZE, ENOMEM, EINVAL (*off past len, a NULL
 * argument). */
int channel_frames_next(const void *frames, size_t len, size_t *off,
			struct channel_msg *msg);

/* Puts len bytes of already-encoded frames (from channel_flush) in front of
 * whatever the channel has buffered, so they are received first, in order.
 * On a channel that receives nothing more after an error (a malformed
 * frame, say) they go in front of that error: they are received, and then
 * the error comes again. Returns 0, or -1 with EPROTO/EMSGSIZE if the bytes
 * are not whole valid frames (and then nothing was preloaded), EBUSY (a
 * large frame or stream item is half received), ENOMEM. */
int channel_preload(struct channel *ch, const void *frames, size_t len);

/* Sets the largest message this channel will receive or send. Frames above
 * it fail with EMSGSIZE before anything is allocated. 0 restores
 * CHANNEL_MAX_DEFAULT. Returns 0, or -1 with EINVAL. */
int channel_set_max(struct channel *ch, size_t max);

/* Item streams. channel_put sends n items of size bytes each; a put of no
 * items sends nothing and returns 0. Persistent processes take no streams:
 * in the process (channel_start_persistent) and on a connection to one
 * (channel_connect) channel_put fails with ENOTSUP, whatever n, and sends
 * nothing, so the connection carries messages as before. channel_get
 * receives exactly m items of size bytes into items, whatever the sizes of
 * the puts were: a get may take part of a put or span several. Order is
 * kept. Both sides must use the same item size. channel_put returns 0 or -1
 * like channel_send. channel_get returns 0 when all m items arrived, or -1
 * with errno: EPIPE (the other side closed and fewer than m items remained:
 * they were stored and *got says how many), ETIMEDOUT (*got items arrived
 * and were stored; the rest may follow), ENOMSG (a message, not stream
 * data, is next: *got items were stored, and channel_recv takes the
 * message), EPROTO (a malformed frame), EINVAL. *got may be NULL. */
int channel_put(struct channel *ch, const void *items, size_t n, size_t size,
		int timeout_ms);
int channel_get(struct channel *ch, void *items, size_t m, size_t size,
		size_t *got, int timeout_ms);

/* Closes this side's sending direction: the other side, once it has read
 * everything, sees end of stream. Receiving still works. */
int channel_shutdown(struct channel *ch);

/* Sends signal sig to the process at the other end. When that process leads
 * a process group of its own (the children of an exchange or pmap with a
 * time limit), the signal goes to the whole group, so what the process
 * started (and left in its group) gets it too. -1 with ESRCH if it has
 * already been reaped, EINVAL if there is no process. */
int channel_kill(struct channel *ch, int sig);

/* Waits up to timeout_ms for the process at the other end to end and reaps
 * it. Returns 0 once reaped (see channel_status), -1 with ETIMEDOUT, or
 * ECHILD if it was reaped by someone else (the caller ignores SIGCHLD, say),
 * EINVAL if there is no process. */
int channel_wait(struct channel *ch, int timeout_ms);

/* Once the process has been reaped, stores its wait status (use WIFEXITED
 * and friends) in *status and returns 1; returns 0 while it has not been
 * reaped, -1 if its status is unknown (reaped by someone else). */
int channel_status(const struct channel *ch, int *status);

/* Closes both directions and frees the channel. In the parent it then waits
 * for the process (which sees end of stream) and reaps it. Returns 0, or -1
 * if a close or the wait failed (the channel is freed all the same). */
int channel_close(struct channel *ch);

/* The descriptor to poll for input from this channel, for callers that run
 * their own loop. Poll it for POLLIN; then call channel_ready(ch, 0). */
int channel_fd(const struct channel *ch);

/* Waits for every process the library started and has not reaped yet (and
 * only those) and reaps it. Returns the number reaped, -1 on error. Their
 * channels stay open until closed. */
int channel_waitall(void);

/* ------------------------------------------------------------------------ */
/* Exchanges                                                                */
/* ------------------------------------------------------------------------ */

struct exchange;

/* Called by exchange_store for each channel with something to receive (a
 * message, or a recorded failure). It receives with channel_recv(ch, &msg,
 * 0); it may send back, add or remove channels (ch included) and start new
 * work. udata is exchange_options.udata. Return 0, or -1 to make
 * exchange_store stop and return -1 with the callback's errno. */
typedef int exchange_store_fn(struct exchange *ex, struct channel *ch,
			      void *udata);

/* What happens after a task fails. */
enum exchange_policy {
	EXCHANGE_KEEP_GOING = 0,	/* report it and carry on (default) */
	EXCHANGE_STOP,		/* report it and start no new work */
	EXCHANGE_RETRY,		/* run it again up to retries times */
};

/* A worker initialiser (Pool's initializer): runs in each new process of
 * an exchange before its first task, with exchange_options.init_ctx.
 * Returns 0, or -1 with errno set to fail: the process then runs no task,
 * and the task it was forked for gets CHANNEL_ERROR with the text
 * "initializer failed: " and strerror(errno) (in reuse mode the next task
 * goes to a fresh worker, which runs init again). */
typedef int exchange_init_fn(void *ctx);

/* Counts of an exchange's tasks (every task number it has handed out,
 * from exchange_start, exchange_add and the like, is in one of them). */
struct exchange_counts {
	size_t queued;		/* waiting for a place under the limit */
	size_t running;		/* on a process, no outcome yet */
	size_t finished;	/* ended: their outcome is settled (perhaps
				   not yet received by store_data) */
};

/* Called by exchange_store, once its deliveries are done, when the counts
 * have changed since the last call (udata is exchange_options.udata). It
 * may start or cancel work; it must not store or wait on ex. */
typedef void exchange_progress_fn(struct exchange *ex,
				  const struct exchange_counts *p,
				  void *udata);

/* Options of an exchange. A zeroed struct gives the defaults.
 *
 * With a time limit, every process the exchange forks leads a process group
 * of its own: SIGTERM and SIGKILL go to the whole group, so what the task
 * started is stopped with it (the terminal's Ctrl-C then reaches only the
 * caller's group; the children see end of stream when the caller dies,
 * and on Linux and FreeBSD are killed with it: see "A parent's death" at
 * the top). Without one, children stay in the caller's group. A task ends
 * when its process exits: while it waits, the exchange checks every 250 ms
 * for children that have exited with their channel still held open by
 * something they started, reads what they wrote, and settles them without
 * waiting for that other process. */
struct exchange_options {
	int limit;		/* most channels active at once; 0: no limit
				   (with reuse: exchange_cores() workers) */
	bool reuse;		/* finished children take the next task; an
				   idle worker waits for more work until
				   exchange_finish or exchange_free */
	bool continuous;	/* a channel stays until its child closes it,
				   however many messages it sends */
	bool keep_removed;	/* exchange_remove hands the channel back,
				   open and unreaped */
	int time_limit_ms;	/* per task; 0: none. SIGTERM, then SIGKILL */
	int grace_ms;		/* SIGTERM to SIGKILL; 0: 1000 */
	enum exchange_policy policy; /* after a task fails */
	int retries;		/* with EXCHANGE_RETRY */
	size_t max_message;	/* per channel; 0: CHANNEL_MAX_DEFAULT */
	exchange_store_fn *store_data;	/* NULL: messages are dropped */
	void *udata;		/* given to store_data */
	exchange_init_fn *init;	/* run once in each process the exchange
				   forks, before its first task (Pool's
				   initializer); NULL: none */
	void *init_ctx;		/* given to init (Pool's initargs) */
	size_t max_tasks;	/* reuse: a worker leaves after this many
				   tasks and the next task goes to a fresh
				   worker (Pool's maxtasksperchild); 0: no
				   limit */
	int idle_ms;		/* reuse: an idle worker leaves once it has
				   waited this long for work, freeing its
				   process (looked at whenever the exchange
				   stores or waits); 0: it waits until
				   exchange_finish or exchange_free */
	exchange_progress_fn *progress; /* NULL, or told of new counts */
	int tick_ms;		/* a timer: exchange_store and exchange_ready
				   wait no later than the next tick, every
				   tick_ms from exchange_new (ticks passed
				   while nobody waited are skipped), and
				   return 0 there with nothing ready; 0: no
				   ticks */
	bool no_stdio_flush;	/* the caller's promise that the exchange's
				   children write nothing through stdio:
				   stdio is then flushed neither before each
				   fork nor by the children at their end
				   (about four page faults fewer per task).
				   Output the caller has buffered is still
				   written once, by the caller: a child
				   drops its copy at _exit. A child that
				   does print through stdio must fflush it
				   itself, or the output is lost, and may
				   then write a second copy of what the
				   caller had buffered at the fork */
};

/* Creates an exchange. opts may be NULL for the defaults; it is copied.
 * NULL with EINVAL for a negative limit, time limit, grace, retries,
 * idle_ms or tick_ms, ENOMEM. */
struct exchange *exchange_new(const struct exchange_options *opts);

/* Closes every channel (children see end of stream and are reaped, waiting
 * for them), drops queued work, and frees the exchange. The wait is
 * bounded by the time limit: a child still running at the end of its limit
 * gets SIGTERM, then after the grace period SIGKILL (to its process group),
 * all children in step. Without a time limit a child that does not end at
 * end of stream is waited for as long as it runs: call exchange_terminate
 * first to end it. In a child that inherited the exchange (from
 * exchange_create, say, or the caller's own fork), it only frees the
 * child's copy: no process is waited for or signalled, and every other
 * call on the copy fails with EBADF. */
void exchange_free(struct exchange *ex);

/* Ends the work: every running process gets SIGTERM, and SIGKILL once the
 * grace period (grace_ms, default 1000 ms) has passed while the exchange
 * waits (store, finish, free); queued and later work is not started (its
 * outcome is CHANNEL_NOT_STARTED with code ECANCELED). Each task still has
 * its one outcome: its result if it gave one, else the signal that ended
 * it. Returns 0, or -1 with EINVAL. */
int exchange_terminate(struct exchange *ex);

/* Cancels a queued task (concurrent.futures' Future.cancel): it will not
 * run, and its one outcome is CHANNEL_FAILURE, CHANNEL_NOT_STARTED with
 * code ECANCELED, which store_data (or the Map or Queue) sees next.
 * Returns 0, or -1 with EBUSY (the task is running: it is not cancelled;
 * exchange_terminate ends running work), EALREADY (it has ended),
 * ERANGE (no such task number), EINVAL. */
int exchange_cancel(struct exchange *ex, size_t task);

/* Fills *p with the counts of queued, running and finished tasks. 0, or
 * -1 with EINVAL. */
int exchange_progress(const struct exchange *ex, struct exchange_counts *p);

/* pprocess Exchange(channels): an exchange made with opts (as exchange_new)
 * that monitors the n channels of chs from the start, as if each had been
 * given to exchange_add in turn (their task numbers are 0 to n - 1). The
 * exchange owns them all, also when this fails: then every one is closed.
 * NULL with the errno of exchange_new or exchange_add, or EINVAL (chs NULL
 * with n above 0). */
struct exchange *exchange_new_with(const struct exchange_options *opts,
				   struct channel **chs, size_t n);

/* Adds a channel to be monitored; the exchange owns it from then on, also
 * when this fails. Returns the task number its messages carry (msg->task;
 * the numbers of exchange_start and exchange_add are one sequence), or -1
 * with EEXIST (it is in an exchange already), ENOMEM, EINVAL. */
ssize_t exchange_add(struct exchange *ex, struct channel *ch);

/* Stops monitoring ch. Unless keep_removed, closes it and reaps its process
 * (bounded by the time limit as exchange_free is); otherwise ownership
 * returns to the caller. A task the exchange started that has given no
 * outcome yet gets one: CHANNEL_FAILURE with cause CHANNEL_REMOVED, on a
 * channel of its own that store_data (or the Map or Queue) sees next. 0, or
 * -1 with ENOENT, ENOMEM (the channel is removed all the same). */
int exchange_remove(struct exchange *ex, struct channel *ch);

/* pprocess's removed list, under keep_removed: the channels the caller
 * added (exchange_add and the like) that reached their end and were taken
 * out of the exchange by a store or a wait, handed back open, in the order
 * they ended. Returns the oldest not taken yet, which the caller owns (and
 * closes with channel_close), or NULL when there is none. Channels the
 * exchange closes (without keep_removed, and the tasks it started) are
 * never listed, nor those given to exchange_remove. */
struct channel *exchange_take_removed(struct exchange *ex);

/* The number of channels monitored. Stores up to cap of them in chs (which
 * may be NULL when cap is 0). */
size_t exchange_active(const struct exchange *ex, struct channel **chs,
		       size_t cap);

/* Waits up to timeout_ms for channels with something to receive, and stores
 * up to cap of them in chs. Channels that hung up are read to end of stream
 * first, so no final message is lost; a finished channel with nothing left
 * is removed. Returns the number ready, -1 on error. */
int exchange_ready(struct exchange *ex, struct channel **chs, size_t cap,
		   int timeout_ms);

/* Waits up to timeout_ms for channels to be ready, calls store_data once for
 * each message ready on them, then starts queued work while under the limit.
 * Returns the number of store_data calls (0 on timeout), -1 on error. */
int exchange_store(struct exchange *ex, int timeout_ms);

/* True while channels other than idle reuse workers are monitored, or work
 * is queued. */
bool exchange_unfinished(const struct exchange *ex);

/* True when as many channels are active as the limit allows. An idle reuse
 * worker does not count: new work goes to it, or it leaves to make room. */
bool exchange_busy(const struct exchange *ex);

/* Waits (calling exchange_store) until the exchange is not busy, then adds
 * ch. Same returns and ownership as exchange_add. */
ssize_t exchange_add_wait(struct exchange *ex, struct channel *ch);

/* Calls exchange_store until the exchange is not busy. 0 or -1. */
int exchange_wait(struct exchange *ex);

/* Calls exchange_store until nothing is unfinished; then idle reuse workers
 * are told to leave, and it returns once they have. 0 or -1. */
int exchange_finish(struct exchange *ex);

/* Sends one message to every running task: each monitored channel with a
 * task on it, reuse workers' included. Returns the number of channels it
 * reached. Skipped: a channel whose reader has gone, one whose outcome is
 * settled, and a reuse worker between tasks (it has no task to read the
 * message; one that reaches a worker after its task ended is dropped
 * there, as a fork-per-task child that exits drops what it did not read). */
int exchange_broadcast(struct exchange *ex, const void *buf, size_t len,
		       int timeout_ms);

/* ------------------------------------------------------------------------ */
/* Work on the caller's behalf (manage.c)                                   */
/* ------------------------------------------------------------------------ */

/* Starts fn(ch, arg, len, ctx) in a new process through the exchange, or
 * queues it (with a copy of arg) when the exchange is at its limit; queued
 * work starts in the order it was started. In reuse mode an idle worker
 * running the same fn and ctx takes it instead of a new process. Returns the
 * task number (0, 1, ... in the order of starts on this exchange), or -1 with
 * errno. A fork failure is not an error here: the task gets a
 * CHANNEL_FAILURE outcome with cause CHANNEL_NOT_STARTED. */
ssize_t exchange_start(struct exchange *ex, channel_fn *fn, const void *arg,
		       size_t len, void *ctx);

/* The fork-style variant (pprocess Exchange.create): forks a child whose
 * parent end is added to the exchange, waiting first while the exchange is
 * busy. Returns 0 in the child with *child set to its channel, the child's
 * pid in the parent, -1 with errno on failure. */
pid_t exchange_create(struct exchange *ex, struct channel **child);

/* Starts a plain function like exchange_start: its return value is sent
 * back as the task's one message. */
ssize_t exchange_start_plain(struct exchange *ex, exchange_plain_fn *fn,
			     const void *arg, size_t len, void *ctx);

/* A handle whose call starts a function through its exchange (pprocess
 * manage). Owned by the exchange and freed with it. */
struct exchange_managed;

/* Wraps fn (or the plain function pfn: give exactly one) and ctx. NULL with
 * EINVAL or ENOMEM. */
struct exchange_managed *exchange_manage(struct exchange *ex, channel_fn *fn,
					 exchange_plain_fn *pfn, void *ctx);

/* Starts the managed function with arg, as exchange_start (or, for a
 * handle of exchange_manage_persistent, as exchange_start_persistent). */
ssize_t exchange_call(struct exchange_managed *m, const void *arg, size_t len);

/* Map: an exchange whose collector keeps one outcome per task, in the order
 * the tasks were started. opts->store_data must be NULL (EINVAL). */
struct exchange *exchange_new_map(const struct exchange_options *opts);

/* The outcome of task i: waits up to timeout_ms for it, then fills *msg
 * (kind CHANNEL_DATA with the first message the task sent, or CHANNEL_ERROR
 * or CHANNEL_FAILURE with its cause). msg->data is lent: the map keeps it
 * until it is freed. 1, or -1 with ETIMEDOUT, ERANGE (no task i), EINVAL
 * (not a map). */
int exchange_map_get(struct exchange *ex, size_t i, struct channel_msg *msg,
		     int timeout_ms);

/* As exchange_map_get, but the caller owns msg->data (as a Queue's message;
 * free it with channel_msg_free): the map keeps only the outcome's kind,
 * cause and code, and a later get of task i has data NULL and len 0. */
int exchange_map_take(struct exchange *ex, size_t i, struct channel_msg *msg,
		      int timeout_ms);

/* A slice of the map (pprocess results[first:first + count]): waits up to
 * timeout_ms, one deadline for all, for the outcomes of tasks first to
 * first + count - 1, then fills msgs[0] to msgs[count - 1] with them in
 * task order. exchange_map_range lends the data as exchange_map_get does;
 * exchange_map_take_range hands it over as exchange_map_take does. Nothing
 * is filled or handed over unless every outcome of the slice has arrived.
 * Returns count (0 for an empty slice), or -1 with ETIMEDOUT, ERANGE (the
 * slice reaches past the last task started), EINVAL (not a map, or msgs
 * NULL with count above 0). */
ssize_t exchange_map_range(struct exchange *ex, size_t first, size_t count,
			   struct channel_msg *msgs, int timeout_ms);
ssize_t exchange_map_take_range(struct exchange *ex, size_t first,
				size_t count, struct channel_msg *msgs,
				int timeout_ms);

/* The iterator: returns the outcome of the next task in start order (1),
 * waiting for it, or 0 when every started task has been returned. */
int exchange_map_next(struct exchange *ex, struct channel_msg *msg);

/* Queue: an exchange whose collector keeps every message in arrival order.
 * opts->store_data must be NULL (EINVAL). */
struct exchange *exchange_new_queue(const struct exchange_options *opts);

/* The next message in arrival order, waiting up to timeout_ms for one.
 * Returns 1 (the caller owns msg->data), 0 when the queue is empty and
 * nothing is unfinished, -1 with ETIMEDOUT or EINVAL (not a queue). */
int exchange_queue_next(struct exchange *ex, struct channel_msg *msg,
			int timeout_ms);

/* The number of messages received and waiting in the queue. */
size_t exchange_queue_len(const struct exchange *ex);

/* pmap: computes fn(in + i * in_size, out + i * out_size, ctx) for i in
 * [0, n) in worker processes and stores every result in out, in order.
 * The function returns 0, or -1 to report that element as failed. */
typedef int exchange_pmap_fn(const void *in, void *out, void *ctx);

/* The outcome of one element or task. */
struct exchange_outcome {
	int cause;		/* enum channel_cause; CHANNEL_OK on success */
	int code;		/* as channel_msg.code */
};

/* The largest result one element of a sized pmap may have (see
 * exchange_pmap_sized): a little under CHANNEL_MAX_DEFAULT, since the
 * result travels as one message with its status and length. */
#define EXCHANGE_PMAP_MAX_RESULT (CHANNEL_MAX_DEFAULT - 64)

struct exchange_pmap_options {
	int workers;		/* 0: exchange_cores() */
	size_t batch;		/* elements per message; 0: chosen for speed */
	void *ctx;		/* given to fn */
	struct exchange_outcome *outcomes; /* NULL, or n entries to fill */
	int time_limit_ms;	/* per batch; 0: none. SIGTERM, then
				   SIGKILL 1 s later, as an exchange's */
	bool keep_workers;	/* exchange_pmap_again keeps the workers and
				   sends them the input (see there) */
	size_t max_result;	/* sized pmap: the largest result; 0:
				   EXCHANGE_PMAP_MAX_RESULT, which is also
				   the most it may be (EINVAL above) */
};

/* Runs the map. Workers are forked once and receive batches of indices (the
 * input is read from their copy of the parent's memory). Returns the number
 * of elements computed (n when all succeeded), or -1 with errno (EINVAL,
 * ENOMEM, or the errno of the fork if no worker could be started). Should
 * the wait itself fail (poll's ENOMEM), the workers are killed and the
 * count so far is returned: the elements not ended keep the outcome
 * CHANNEL_NOT_STARTED with code 0 in opts->outcomes.
 *
 * Sizes. in_size 0 gives every call the pointer in itself (which may then
 * be NULL); out_size 0 returns only each element's status (out may then be
 * NULL). Whatever n, EINVAL for: n above SSIZE_MAX (the count could not be
 * returned); n * in_size, n * out_size or in_size above PTRDIFF_MAX, or n
 * outcomes above PTRDIFF_MAX bytes (no array is that large); out_size above
 * CHANNEL_MAX_DEFAULT - 1 (one element's reply, a status byte and its
 * output, travels as one message). ENOMEM when n is above SIZE_MAX /
 * sizeof(size_t) (the list of elements to run again cannot be allocated).
 * These checks come before any worker is forked. */
ssize_t exchange_pmap(exchange_pmap_fn *fn, const void *in, size_t n,
		      size_t in_size, void *out, size_t out_size,
		      const struct exchange_pmap_options *opts);

/* pmap with results of their own size. fn computes the result of the
 * element at in, puts it in memory from malloc() at *out with its length
 * in *len (*out may stay NULL when *len is 0), and returns 0; or returns
 * -1 to report the element as failed (what it left in *out is freed). The
 * library frees the memory in the worker once it is sent. *out and *len
 * are NULL and 0 when fn is called. */
typedef int exchange_pmap_sized_fn(const void *in, void **out, size_t *len,
				   void *ctx);

/* One element's result in a sized pmap: data comes from malloc() and
 * belongs to the caller (free it with free()), len bytes followed by a NUL
 * byte (so a text result needs no copy); data is NULL, len 0, for an
 * element without a result (its outcome says why). */
struct exchange_result {
	void *data;		/* the result, NUL-terminated; or NULL */
	size_t len;		/* bytes of result, not counting the NUL */
};

/* exchange_pmap for a sized fn: out holds n entries, each filled with its
 * element's result (see struct exchange_result). A result longer than
 * opts->max_result (EXCHANGE_PMAP_MAX_RESULT by default) fails only its
 * element, with the outcome CHANNEL_PROTOCOL and code EMSGSIZE (it never
 * leaves the worker); one the parent has no memory for fails with
 * CHANNEL_PROTOCOL and code ENOMEM. A worker sends its batch's results in
 * messages of about 8 MiB, so a batch of large results is not held whole.
 * Returns as exchange_pmap; EINVAL also for out NULL with n above 0, and
 * for opts->max_result above EXCHANGE_PMAP_MAX_RESULT. */
ssize_t exchange_pmap_sized(exchange_pmap_sized_fn *fn, const void *in,
			    size_t n, size_t in_size,
			    struct exchange_result *out,
			    const struct exchange_pmap_options *opts);

/* A pmap that runs while the caller takes its results (pprocess's pmap,
 * whose Map is iterated as results arrive), and whose workers can serve
 * several maps in turn. */
struct exchange_pmapper;

/* Starts the map of exchange_pmap (or, with exchange_pmap_sized_start,
 * of exchange_pmap_sized) and returns at once: the workers are forked and
 * computing their first batches. The map moves on (results read, batches
 * handed out, time limits applied) only inside exchange_pmap_next,
 * exchange_pmap_next_any and exchange_pmap_wait, so a caller busy
 * elsewhere leaves finished workers idle and a time limit unenforced until
 * it calls. out (and opts->outcomes) must stay valid until the map is
 * over (every element returned or waited for) or the handle is freed;
 * each out[i] is written when element i ends (a sized map first sets
 * every entry to { NULL, 0 }: results of an earlier map in the same array
 * must have been freed). The arguments are checked
 * as by exchange_pmap. n 0 forks nothing (the map is over at once). NULL
 * with errno: EINVAL, ENOMEM, or the errno of the fork when no worker
 * could be started. */
struct exchange_pmapper *exchange_pmap_start(exchange_pmap_fn *fn,
					     const void *in, size_t n,
					     size_t in_size, void *out,
					     size_t out_size,
					     const struct exchange_pmap_options *opts);
struct exchange_pmapper *
exchange_pmap_sized_start(exchange_pmap_sized_fn *fn, const void *in,
			  size_t n, size_t in_size,
			  struct exchange_result *out,
			  const struct exchange_pmap_options *opts);

/* The next element in index order: waits up to timeout_ms for the lowest
 * index not yet returned, then stores it in *index and its outcome in
 * *outcome (either may be NULL) and returns 1; its result is in out. 0
 * when every element of the map has been returned; -1 with ETIMEDOUT
 * (nothing returned: call again), EINVAL (pm NULL), EBADF (a handle
 * inherited from the process that made it), or poll's errno.
 * exchange_pmap_next_any returns the elements in the order they ended
 * instead. Both return each element exactly once, mixed as they may be:
 * one skips what the other returned. Every element ends in one outcome:
 * those left when no worker can be forked any more end as
 * CHANNEL_NOT_STARTED with the fork's errno. */
int exchange_pmap_next(struct exchange_pmapper *pm, size_t *index,
		       struct exchange_outcome *outcome, int timeout_ms);
int exchange_pmap_next_any(struct exchange_pmapper *pm, size_t *index,
			   struct exchange_outcome *outcome, int timeout_ms);

/* Waits up to timeout_ms for every element of the map to end, and returns
 * the number computed (what exchange_pmap returns), whatever was taken
 * with exchange_pmap_next already; -1 with ETIMEDOUT (call again), EINVAL,
 * EBADF or poll's errno. */
ssize_t exchange_pmap_wait(struct exchange_pmapper *pm, int timeout_ms);

/* Another map on the handle, once the last is over: the same function,
 * sizes and options over n new elements at in, results in out (entries of
 * struct exchange_result for a sized pmap), outcomes in outcomes (NULL, or
 * n entries; opts->outcomes served the first map only). Elements are
 * numbered from 0 again.
 *
 * A worker reads its input from its copy of the parent's memory, made when
 * it was forked; a worker forked before this map's input was written does
 * not see it. So without opts->keep_workers the workers are stopped and
 * fresh ones forked. With it, the workers are kept (no fork, no reaping,
 * which is the cost of a map of little work), and each batch a kept worker
 * gets carries its elements' input in its message (in_size above
 * CHANNEL_MAX_DEFAULT - 64 is refused with EINVAL at the start); results
 * come back as always. What fn reads beyond its input, opts->ctx above all,
 * a kept worker sees as it was when the worker was forked.
 *
 * 0, or -1 with errno: EBUSY (the last map is not over: wait for it; it
 * goes on), EBADF, or EINVAL, ENOMEM or the errno of the fork when no
 * worker could be started; after these last three the handle holds an
 * empty map (nothing of the last one is handed out again) and can take
 * another. */
int exchange_pmap_again(struct exchange_pmapper *pm, const void *in, size_t n,
			void *out, struct exchange_outcome *outcomes);

/* Ends the handle: workers still computing are killed (SIGKILL), idle ones
 * stopped, and all reaped; elements not ended keep the outcome they had
 * (CHANNEL_NOT_STARTED), and results already in out stay the caller's. In
 * a child that inherited the handle (a fork of the caller's, or a task's
 * process), it frees the copy and signals no worker. */
void exchange_pmap_free(struct exchange_pmapper *pm);

/* ------------------------------------------------------------------------ */
/* Persistent and background processes                                      */
/* ------------------------------------------------------------------------ */

/* Runs fn(ch, arg, len, ctx) in a background process that listens at the
 * Unix-domain socket address (a file path), and returns once it listens
 * (pprocess start_persistent). The process is detached: it is not a child
 * of the caller (nothing to reap), it has its own session and no
 * controlling terminal, and its standard input, output and error are
 * /dev/null; the caller may exit at once. Its channel's peer is whoever is
 * connected (channel_connect), one peer at a time. A send waits up to its
 * timeout for a peer when none is connected (ETIMEDOUT: nothing was sent);
 * once accepted, a message is kept until a peer acknowledges it, and goes
 * again to the next peer if the current one leaves first, so no message is
 * lost or received twice. A message, once begun, is written whole to the
 * peer (the timeout bounds only the wait for a peer). Item streams
 * (channel_put) fail with ENOTSUP. When fn returns (or calls channel_exit)
 * the process waits, for as long as it takes, until every message has been
 * acknowledged, then removes the socket file and ends with _exit. The
 * channel belongs to the process: fn must not channel_close it.
 * The socket file has mode 0600. A file left by a process that is gone
 * (nothing listens) is replaced; an address where a process listens is
 * never taken over. The process keeps the caller's other descriptors, like
 * any child of the library, but unlike them it is not killed when the
 * caller dies (see "A parent's death" at the top).
 * Returns the background process's pid, or -1 with errno: ENAMETOOLONG (the
 * path does not fit in sockaddr_un's sun_path; it is never truncated),
 * EADDRINUSE (a process listens there, or the path is not a socket),
 * EINVAL (NULL or empty address, NULL fn), the errno of socket, bind or
 * fork; then fn has not run and won't. */
pid_t channel_start_persistent(const char *address, channel_fn *fn,
			       const void *arg, size_t len, void *ctx);

/* Connects to the persistent process listening at address (pprocess
 * connect_persistent), trying again until timeout_ms while nobody listens
 * yet or the listener's backlog is full. Returns a channel (channel_pid()
 * is -1) that receives the process's messages not yet received by an
 * earlier peer; channel_recv acknowledges each message before returning it,
 * so a peer that closes half way leaves the rest to the next one. The
 * receive returns 0 once the process has ended after all its messages were
 * received. Use channel_recv, channel_peek and channel_ready on it, not
 * channel_flush or channel_get; channel_put fails with ENOTSUP. The caller
 * owns the channel and releases it with channel_close(). NULL with errno:
 * ENAMETOOLONG, ENOENT or ECONNREFUSED (nobody listens there, after trying
 * until the timeout), ETIMEDOUT (the backlog stayed full), EINVAL,
 * ENOMEM. */
struct channel *channel_connect(const char *address, int timeout_ms);

/* The fork-style channel_start_persistent (pprocess create_persistent):
 * starts a background process listening at address as
 * channel_start_persistent does, but instead of running a function the
 * process returns from this call with 0 and its channel in *child, and goes
 * on with the caller's code; it must end with channel_exit(*child, status),
 * which delivers what it sent (to whoever connects) and ends it. Like any
 * persistent process it is detached (nothing to reap), and its standard
 * streams are /dev/null. The caller gets the process's pid, or -1 with the
 * errors of channel_start_persistent (EINVAL for a NULL child). */
pid_t channel_create_persistent(const char *address, struct channel **child);

/* Connects to the persistent process at address as channel_connect does and
 * adds the channel to ex (pprocess Exchange.connect), which owns it from
 * then on. A connection is counted under the limit: while ex is busy the
 * call first waits (exchange_wait), as pprocess's connect uses add_wait.
 * Its messages carry the returned task number (as exchange_add gives one
 * to each channel). Returns the task number, or -1 with the
 * errno of channel_connect or exchange_add. */
ssize_t exchange_connect(struct exchange *ex, const char *address,
			 int timeout_ms);

/* Persistent work through an exchange (pprocess's Persistent mix-in): a
 * task counted under the exchange's limit and queued while it is busy, as
 * exchange_start's are. Once it has a place (at once, or from the queue
 * in a later exchange call), fn is started at address as
 * channel_start_persistent does, and the exchange connects to it as
 * exchange_connect does, waiting up to timeout_ms for the connection; its
 * messages then reach store_data (or the Map or Queue) under the returned
 * task number. When the process cannot be started or reached, the task's
 * outcome is CHANNEL_NOT_STARTED with that errno as its code (ECANCELED
 * once cancelled or after EXCHANGE_STOP). arg is copied. The background
 * process outlives the exchange as any persistent process does. Returns
 * the task number, or -1 with EINVAL (NULL ex, address or fn, or len
 * without arg) or ENOMEM. */
ssize_t exchange_start_persistent(struct exchange *ex, const char *address,
				  channel_fn *fn, const void *arg, size_t len,
				  void *ctx, int timeout_ms);

/* pprocess's Persistent.manage: a handle (see exchange_manage) whose every
 * exchange_call(m, arg, len) is exchange_start_persistent(ex, address, fn,
 * arg, len, ctx, timeout_ms). Each call starts its own process at address,
 * so a call made while the last one's process still listens there fails
 * that call's task with EADDRINUSE. NULL with EINVAL (NULL ex, address or
 * fn) or ENOMEM. */
struct exchange_managed *exchange_manage_persistent(struct exchange *ex,
						    const char *address,
						    channel_fn *fn, void *ctx,
						    int timeout_ms);

/* pprocess's Persistent.create: waits while ex is busy (as exchange_create
 * does), makes a background process with channel_create_persistent, and
 * in the caller connects to it as exchange_connect does (up to timeout_ms)
 * so that what it sends reaches store_data (or the Map or Queue). Returns
 * 0 in the new process, with its channel in *child (it ends with
 * channel_exit(*child, status), and must not use ex, which is the
 * caller's), the process's pid in the caller, or -1 with errno (EINVAL
 * for a NULL ex or child; those of exchange_wait, channel_create_persistent
 * and exchange_connect; when only the connection failed, the process runs
 * on and keeps its results for a later connection). */
pid_t exchange_create_persistent(struct exchange *ex, const char *address,
				 struct channel **child, int timeout_ms);

/* The BackgroundCallable idea: starts fn in the background at address and
 * returns at once, managed by no exchange; fn's channel sends its results
 * to whoever connects. Same as channel_start_persistent: returns the pid of
 * the background process or -1 with its errno. */
pid_t exchange_background(const char *address, channel_fn *fn,
			  const void *arg, size_t len, void *ctx);

/* The BackgroundQueue idea: a queue (see exchange_new_queue) connected to
 * the persistent process at address, waiting up to timeout_ms for the
 * connection. Read it with exchange_queue_next; free it with
 * exchange_free. NULL with the errno of channel_connect, or ENOMEM. */
struct exchange *exchange_background_queue(const char *address,
					   int timeout_ms);

/* The number of processor cores this process may run on (its CPU affinity
 * where the system tells it), at least 1. */
int exchange_cores(void);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EXCHANGE_H */
