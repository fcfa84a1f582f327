/*
 * internal.h - what the library's files share and users must not call.
 * Nothing here is exported from the shared library: every declaration is
 * hidden.
 *
 * Wire format. Every message travels as one frame: a 16-byte header in the
 * host's byte order (both ends are on one machine) followed by the payload.
 *
 *   uint64 size   the whole frame, header included (so size >= 16)
 *   uint32 kind   enum frame_kind
 *   uint32 magic  FRAME_MAGIC
 *
 * A FAILURE frame's payload is int32 cause, int32 code, then the text.
 * STREAM frames carry item bytes; a get may consume part of one.
 * TASK, DONE and STOP are the reuse protocol: the parent sends TASK (the
 * argument bytes) to an idle worker, the worker answers with its results
 * then DONE, and leaves on STOP or end of stream. DONE frames are never
 * returned to users: the exchange takes them (channel_take_done).
 * ACK belongs to persistent processes and is never returned to users
 * either: its payload is one uint64 message count (see channel.c's end).
 * BOUND and CREDIT are the flow control of bounded channels (channel.c,
 * "Bounded sending"), consumed by the channel layer wherever they reach
 * the head and never returned to anyone: BOUND (uint64 messages sent
 * before it, uint64 bound, 0 for none) tells the receiver whether to
 * credit what it takes; CREDIT (uint64) is the total of the sender's
 * messages the receiver has taken, so the latest one says all.
 */
#ifndef EXCHANGE_INTERNAL_H
#define EXCHANGE_INTERNAL_H

#include "exchange.h"

#include <pthread.h>

#if defined(__GNUC__) || defined(__clang__)
#define HIDDEN __attribute__((visibility("hidden")))
#define NOINLINE __attribute__((noinline))
#else
#define HIDDEN
#define NOINLINE
#endif

#define FRAME_MAGIC 0x31484358u	/* "XCH1" */
#define FRAME_HEADER_SIZE 16u

enum frame_kind {
	FRAME_DATA = 1,		/* = CHANNEL_DATA */
	FRAME_ERROR = 2,	/* = CHANNEL_ERROR */
	FRAME_FAILURE = 3,	/* = CHANNEL_FAILURE */
	FRAME_STREAM = 4,	/* item stream bytes */
	FRAME_TASK = 5,		/* reuse: arguments of the next task */
	FRAME_DONE = 6,		/* reuse: the worker finished its task */
	FRAME_STOP = 7,		/* reuse: the worker should leave */
	FRAME_ACK = 8,		/* persistent: uint64 message count (see the
				   end of channel.c) */
	FRAME_BOUND = 9,	/* bounded: the sender's bound set or lifted */
	FRAME_CREDIT = 10,	/* bounded: the sender's messages taken */
	FRAME_KIND_MAX = 10,
};

struct frame_header {
	uint64_t size;		/* whole frame, header included */
	uint32_t kind;		/* enum frame_kind */
	uint32_t magic;		/* FRAME_MAGIC */
};

/* Writes the 16 header bytes for a frame of payload_len bytes into out. */
HIDDEN void frame_encode(void *out, uint32_t kind, uint64_t payload_len);

/* Decodes a header from the len bytes at buf. Returns 1 with *h filled, 0
 * when fewer than 16 bytes are there, -1 with errno EPROTO (bad magic,
 * unknown kind, size below the header) or EMSGSIZE (payload above max). */
HIDDEN int frame_decode(const void *buf, size_t len, size_t max,
			struct frame_header *h);

/* Turns the payload of a FAILURE frame in msg->data (cause, code, text;
 * NUL-terminated after len bytes) into msg's cause, code and text, moving
 * the text to the front of the same allocation. */
HIDDEN void frame_decode_failure(struct channel_msg *msg);

/* sys.c: the clock, waiting on one descriptor, and the system calls that
 * make, use and close descriptors (through the test hooks below). */

/* The check that opens the calls on a channel or an exchange: -1 with
 * EINVAL when invalid (a NULL object or a bad argument), else -1 with
 * EBADF when the object is a copy inherited from the process that made it
 * (inert in this one), else 0. */
HIDDEN int sys_refuse(bool invalid, bool inherited);

/* Milliseconds of CLOCK_MONOTONIC. */
HIDDEN int64_t clock_now_ms(void);
/* The deadline of a poll-style timeout: -1 (never) for a negative one. */
HIDDEN int64_t clock_deadline(int timeout_ms);
/* The poll timeout left before deadline: -1 for ever, else 0 to INT_MAX. */
HIDDEN int clock_left(int64_t deadline);
/* The same from a reading of the clock already made (now). */
HIDDEN int clock_left_at(int64_t deadline, int64_t now);

/* Waits for events on fd until deadline, recomputing the time left after
 * each EINTR. Returns 1 when an event came, 0 on timeout, -1 on error. */
HIDDEN int sys_wait_fd(int fd, short events, int64_t deadline);
/* The same, for a wait that must end in the event: 0 when it came, -1 with
 * ETIMEDOUT at the deadline or with poll's error. */
HIDDEN int sys_await(int fd, short events, int64_t deadline);
/* read, EINTR retried. */
HIDDEN ssize_t sys_read(int fd, void *buf, size_t len);
/* Writes what the kernel takes of the iovecs in one call, EINTR retried;
 * a socket through sendmsg(MSG_NOSIGNAL), which never raises SIGPIPE. */
struct iovec;
HIDDEN ssize_t sys_writev(int fd, bool is_socket, const struct iovec *iov,
			  int iovcnt);
HIDDEN pid_t sys_fork(void);
/* A descriptor that polls readable once process pid has exited (Linux's
 * pidfd_open, close-on-exec), or -1 with errno (ENOSYS elsewhere). */
HIDDEN int sys_pidfd_open(pid_t pid);
/* Closes *fd if open (never retried) and sets it to -1. */
HIDDEN void sys_close(int *fd);
/* The library's lock on the descriptors it makes, registers and closes:
 * held by every fork of the library's (proc.c) from the making of the
 * link's descriptors to the closing of the child's ends in the parent, by
 * changes to the registry of channels, and by sys_close_shared, the close
 * of a registered channel's descriptor. So a child forked in one thread
 * never copies a descriptor of another thread's link that the registry
 * does not show, nor a number the registry shows for a descriptor closed
 * and made again meanwhile. */
HIDDEN void sys_lock(void);
HIDDEN void sys_unlock(void);
/* In a child just forked by a thread holding the lock: releases the
 * child's copy of it. */
HIDDEN void sys_unlock_child(void);

/* What the process writes at every fork and every task and its children
 * never read: the lock, and proc.c's channels released lately. */
#define SYS_IDLE_CHANNELS 64
struct sys_own {
	pthread_mutex_t lock;		/* sys_lock */
	struct channel *idle[SYS_IDLE_CHANNELS];
	int nidle;
	_Atomic pid_t pid;		/* sys_getpid's, 0 until asked */
};
/* The process's sys_own: on a page that fork neither copies nor
 * write-protects (so that writing it after a fork is no copy-on-write
 * fault) and that every child, of a fork of the library's or of the
 * caller's, finds zeroed, the lock free and no channel idle. Where the
 * system cannot do that, in static memory, which children inherit. */
HIDDEN struct sys_own *sys_own(void);
/* At least *size bytes (*size rounded up to whole pages), mapped on their
 * own, that a fork neither copies nor write-protects: left out of
 * children (MADV_DONTFORK), or, with wiped, zeroed in them
 * (MADV_WIPEONFORK). NULL where the system cannot (munmap frees them). */
HIDDEN void *sys_map_kept(size_t *size, bool wiped);
/* getpid(), asked of the system once per process where sys_own's page is
 * wiped in children (so that no child, however forked, keeps its
 * parent's), else every time. */
HIDDEN pid_t sys_getpid(void);
HIDDEN void sys_close_shared(int *fd);
/* Makes fd non-blocking and close-on-exec. */
HIDDEN int sys_set_flags(int fd);
/* A pipe, a Unix stream socket pair, a Unix stream socket: every
 * descriptor close-on-exec and non-blocking. */
HIDDEN int sys_pipe(int fds[2]);
HIDDEN int sys_socketpair(int fds[2]);
HIDDEN int sys_unix_socket(void);
/* Closes the descriptors first to last (close_range where it exists). */
HIDDEN void sys_close_run(int first, int last);
/* Closes the n descriptors of fds (sorted in place) in runs of adjacent
 * numbers: one close_range per run. */
HIDDEN void sys_close_sorted(int *fds, int n);

/* arena.c: memory for records only the parent reads, which its children
 * do not inherit where the system allows (MADV_DONTFORK), so that a fork
 * neither copies nor write-protects it. A zeroed struct arena is empty. */
struct arena_block;
struct arena {
	struct arena_block *blocks;	/* the blocks children do not get */
	struct arena_block *heap;	/* those from malloc, which they do
					   (where the system cannot keep a
					   block out) */
	struct arena_block *cur;	/* the one small records come from */
	pid_t pid;			/* the process that has the blocks */
};

/* size bytes aligned as malloc aligns them, NULL with ENOMEM. */
HIDDEN void *arena_alloc(struct arena *a, size_t size);
/* Frees what arena_alloc returned (NULL is ignored). */
HIDDEN void arena_free(struct arena *a, void *p);
/* Frees everything in a. In a child that holds a copy of a (in_child, or
 * any process but the one that made its blocks), forgets instead what the
 * child does not have. */
HIDDEN void arena_release(struct arena *a, bool in_child);

/* The channel itself is private to the channel layer (channel.c, proc.c
 * and persist.c, through channel_impl.h): the layers above reach it through
 * the calls below and those of exchange.h. */
struct channel;

/* How channel_fork links the two processes: two pipes (the lowest latency
 * for round trips) or one socket pair (one system call and one descriptor
 * per side fewer, and no SIGPIPE to guard against); with CHANNEL_OWN_GROUP
 * added, the child leads a process group of its own, which channel_kill
 * then signals as a whole (one system call more in the child: only for
 * children that a time limit may stop); with CHANNEL_NO_FLUSH added,
 * stdio is flushed neither before the fork nor by channel_exit in the
 * child (exchange_options.no_stdio_flush). */
enum channel_link {
	CHANNEL_LINK_PIPES = 0,
	CHANNEL_LINK_SOCKET = 1,
	CHANNEL_OWN_GROUP = 2,
	CHANNEL_NO_FLUSH = 4,
};

/* Creates a parent/child channel pair and forks. flags: enum channel_link.
 * Returns the pid in the parent, 0 in the child, -1 on failure (no
 * process, nothing leaked); *out receives the channel in both processes.
 * Flushes stdio first; the child closes every other registered channel's
 * descriptors and, where the system allows, asks to be killed when its
 * parent dies (exchange.h, "A parent's death"). */
HIDDEN pid_t channel_fork(struct channel **out, int flags);

/* Wraps a connected stream socket (persistent processes). pid is -1. */
HIDDEN struct channel *channel_from_socket(int fd);

/* One non-blocking read into the input buffer. Returns the bytes read, 0 at
 * end of stream (sets eof), -1 with EAGAIN when nothing was there, or
 * another errno. */
HIDDEN ssize_t channel_fill(struct channel *ch);

/* Consumes the control frames nobody waits for at the head and returns the
 * kind of the complete frame now at the head, 0 if no complete frame is
 * buffered, -1 if the buffered bytes are malformed (sets broken). */
HIDDEN int channel_head(struct channel *ch);

/* Sends one frame of the given kind: header, then the concatenation of the
 * two buffers (b may be NULL), in as few writes as possible. */
HIDDEN int channel_send_frame(struct channel *ch, uint32_t kind,
			      const void *a, size_t alen, const void *b,
			      size_t blen, int timeout_ms);

/* Receives the next frame of any kind, control frames included. 1, 0 at
 * end of stream, -1. The caller frees *data. */
HIDDEN int channel_recv_frame(struct channel *ch, uint32_t *kind, void **data,
			      size_t *len, int timeout_ms);

/* Records a FAILURE (cause, code, text) made by this process: it is received
 * after the whole frames already buffered, as a frame of kind FRAME_FAILURE.
 * FAILURE frames never come from the other side: one read from the
 * descriptor is a protocol error (EPROTO). A half-received frame or stream
 * is dropped first, and nothing more is read. One failure at a time: while
 * one is pending, another is ignored. */
HIDDEN int channel_push_failure(struct channel *ch, int cause, int code,
				const char *text);

/* A channel with no descriptor and no process that holds one FAILURE, for
 * a task that could not start. NULL on ENOMEM. */
HIDDEN struct channel *channel_new_failure(size_t task, int cause, int code,
					   const char *text);

/* Drops everything buffered or half received and reads nothing more: the
 * channel is at its end of stream. A pending FAILURE stays. */
HIDDEN void channel_discard(struct channel *ch);

/* Closes the descriptors, leaving the process to reap (channel_wait, then
 * channel_close). */
HIDDEN void channel_close_fds(struct channel *ch);

/* 1 when the channel was inherited from the parent of this process through
 * a fork of the library's (it is inert here: its descriptors are not its
 * own), else 0. */
HIDDEN int channel_inherited(const struct channel *ch);

/* The process an exchange or a pmap handle was made in. A copy in a
 * child of any fork is told apart: a child of the library's fork is in
 * another fork generation (see channel_inherited), one of the caller's own
 * fork has another pid (sys_getpid, which every child learns afresh). */
struct made_in {
	unsigned gen;
	pid_t pid;
};
HIDDEN struct made_in channel_made_here(void);
/* Whether m is not this process: the object is an inherited copy, inert
 * here. */
HIDDEN bool channel_made_elsewhere(struct made_in m);

/* Sends the frames held back while ch->cork was set, in one write, and
 * clears cork. A receive that has to wait flushes them too, so a worker
 * that asks its parent something never deadlocks on its own buffer. A
 * write that fails between two frames keeps those not written held. */
HIDDEN int channel_uncork(struct channel *ch, int timeout_ms);

/* With on, frames up to 64 KiB are held back until channel_uncork or the
 * next receive that waits (see channel_uncork). */
HIDDEN void channel_set_cork(struct channel *ch, bool on);

/* Makes the read descriptor blocking (pipes only): receives without a
 * timeout then read without polling first. For a reuse worker's own end. */
HIDDEN int channel_set_blocking(struct channel *ch);

/* 1 when the process has ended and is not reaped yet (a zombie, which
 * keeps the process group it leads in being), else 0. */
HIDDEN int channel_ended_unreaped(const struct channel *ch);

/* How a reaped process ended, as a task's failure: CHANNEL_TIMED_OUT (code
 * limit) when timed_out, else CHANNEL_SIGNALED (the signal) or
 * CHANNEL_EXITED (the status, -1 when unknown), with a text of at most
 * size bytes. The one classifier of exit statuses. */
HIDDEN void channel_describe_end(const struct channel *ch, bool timed_out,
				 int limit, int *cause, int *code, char *text,
				 size_t size);

/* Whether a process is attached and not reaped yet. */
HIDDEN bool channel_running(const struct channel *ch);

/* The state of the input, for the owner of the channel's poll (the
 * exchange). channel_input_error: the errno that stopped receiving, or 0.
 * channel_input_ended: end of stream was read (frames may remain).
 * channel_end_input: the input ends here (nothing more is read).
 * channel_fail_input: receiving stops with err. channel_partial: bytes of
 * a frame not yet whole are buffered. channel_polled: the owner's poll
 * reported revents for the descriptor. channel_may_fill: a read may bring
 * more without a poll first. channel_progress: counts takings at the head
 * (see struct channel). channel_can_send: the sending descriptor is open. */
HIDDEN int channel_input_error(const struct channel *ch);
HIDDEN bool channel_input_ended(const struct channel *ch);
HIDDEN void channel_end_input(struct channel *ch);
HIDDEN void channel_fail_input(struct channel *ch, int err);
HIDDEN bool channel_partial(const struct channel *ch);
HIDDEN void channel_polled(struct channel *ch, short revents);
HIDDEN bool channel_may_fill(const struct channel *ch);
HIDDEN unsigned long channel_progress(const struct channel *ch);
HIDDEN bool channel_can_send(const struct channel *ch);

/* Credits for a bounded sender on the other side: a taking sends one at
 * once, without waiting, and one that finds the pipe full stays owed; a
 * receive on the channel that waits sends it once there is room.
 * channel_credits_owed: how many channels of this process owe one (0
 * most of the time, so that an owner's loop can skip looking).
 * channel_pay_credit: tries to send ch's owed credit now; true while it is
 * still owed. */
HIDDEN size_t channel_credits_owed(void);
HIDDEN bool channel_pay_credit(struct channel *ch);

/* What the owner of a channel (an exchange) asks it to carry.
 * channel_set_owner: the owner's record for the channel (never looked
 * into), NULL for none. While a channel has an owner, a reuse DONE frame
 * is the owner's: channel_head returns FRAME_DONE with it at the head,
 * channel_take_done consumes it (-1 ENOMSG when it is not there), and a
 * receive in front of it returns 0, the end of one task's messages.
 * Without an owner DONE frames are dropped unseen. channel_set_task: the
 * task number stamped on every message received (msg->task).
 * channel_received: how many messages (and item streams) users have taken
 * from the channel so far. */
HIDDEN void channel_set_owner(struct channel *ch, void *owner);
HIDDEN void *channel_owner(const struct channel *ch);
HIDDEN void channel_set_task(struct channel *ch, size_t task);
HIDDEN size_t channel_task(const struct channel *ch);
HIDDEN unsigned long channel_received(const struct channel *ch);
HIDDEN int channel_take_done(struct channel *ch);

/* The one time-limit policy (proc.c), of the exchange's tasks and of
 * pmap's batches: at the deadline the process gets SIGTERM (its group, with
 * CHANNEL_OWN_GROUP) and timed_out is set; once the grace period has
 * passed, SIGKILL. The fields are read by their owner; they change through
 * these calls only. channel_limit_start: the limit starts now (limit_ms 0:
 * none). channel_limit_apply: what is due at now is done; returns the next
 * time it must be called (0: none). channel_limit_end: the work ends now
 * (SIGTERM, then SIGKILL after the grace), timed_out unchanged; nothing
 * when a kill is pending already. channel_limit_stop: nothing more is
 * due (the task ended), timed_out kept. */
struct channel_limit {
	int64_t deadline;	/* when the time is up, or 0 */
	int64_t kill_at;	/* when SIGKILL follows SIGTERM, or 0 */
	bool timed_out;		/* SIGTERM went for the time limit */
};
HIDDEN void channel_limit_start(struct channel_limit *l, int limit_ms);
HIDDEN int64_t channel_limit_apply(struct channel *ch, struct channel_limit *l,
				   int64_t now, int grace_ms);
HIDDEN void channel_limit_end(struct channel *ch, struct channel_limit *l,
			      int64_t now, int grace_ms);
HIDDEN void channel_limit_stop(struct channel_limit *l);

/* Reaps the process if it has ended, without waiting. 1 reaped (or reaped
 * by others), 0 still running, -1 no process. */
HIDDEN int channel_reap_nohang(struct channel *ch);

/* A descriptor that polls readable once the channel's process has exited,
 * opened at the first call and closed when the process is reaped or the
 * channel closed; -1 where the system has none (the caller then tries
 * channel_reap_nohang from time to time). */
HIDDEN int channel_exit_fd(struct channel *ch);

/* manage.c: the child side, for exchange.c. */

/* Forks a process that runs one task: fn(ch, arg, len, ctx), or the plain
 * function pfn whose result it sends back. When worker is true the process
 * then answers the task with a DONE frame and keeps taking TASK frames
 * until STOP or end of stream (reuse mode); a worker is always linked by
 * pipes. link (enum channel_link, CHANNEL_OWN_GROUP included) is for a
 * one-task process; a worker takes its CHANNEL_OWN_GROUP and
 * CHANNEL_NO_FLUSH only. init, when
 * given, runs in the child first with init_ctx; when it fails, the child
 * sends the error as its task's outcome and leaves. Returns as
 * channel_fork; the child never returns. */
HIDDEN pid_t manage_fork(struct channel **out, channel_fn *fn,
			 exchange_plain_fn *pfn, void *ctx, const void *arg,
			 size_t len, bool worker, int link,
			 exchange_init_fn *init, void *init_ctx);

/* exchange.c, for the layer above it (collect.c).
 * exchange_attach: keeps data with the exchange under key (the address of
 * something of the caller's), for free_fn to free with the exchange; -1 on
 * ENOMEM. exchange_attached: the data attached under key, or NULL.
 * exchange_tasks: how many task numbers the exchange has handed out. */
HIDDEN int exchange_attach(struct exchange *ex, const void *key, void *data,
			   void (*free_fn)(void *data));
HIDDEN void *exchange_attached(const struct exchange *ex, const void *key);
HIDDEN size_t exchange_tasks(const struct exchange *ex);

/* exchange_submit_channel: work whose process is made elsewhere (a
 * persistent process and the connection to it). start(arg, len, ctx) runs
 * once the exchange has a place for it, at once or from the queue, and
 * returns the channel the exchange then reads as one it was given
 * (exchange_add), or NULL with errno, which becomes the task's
 * NOT_STARTED outcome. arg is copied, and aligned as malloc aligns. Returns
 * the task number. */
/* exchange_create_begin: what exchange_create and its persistent form do
 * before the child is made: EINVAL for a NULL ex or child, *child set to
 * NULL, then a wait while ex is busy (exchange_wait). 0 or -1. */
HIDDEN int exchange_create_begin(struct exchange *ex, struct channel **child);

typedef struct channel *exchange_channel_fn(const void *arg, size_t len,
					    void *ctx);
HIDDEN ssize_t exchange_submit_channel(struct exchange *ex,
				       exchange_channel_fn *start,
				       const void *arg, size_t len, void *ctx);

/* Test hooks: when set, the library calls these instead of the system
 * calls, so tests can inject EINTR, short transfers and failures. pipe and
 * socketpair replace the calls that make a channel's descriptors; whatever
 * they return is then made close-on-exec and non-blocking. */
struct exchange_hooks {
	ssize_t (*read)(int fd, void *buf, size_t len);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	pid_t (*fork)(void);
	int (*pipe)(int fds[2]);
	int (*socketpair)(int fds[2]);
};
extern HIDDEN struct exchange_hooks exchange_hooks;

#endif /* EXCHANGE_INTERNAL_H */
