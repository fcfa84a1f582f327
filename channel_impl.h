/*
 * channel_impl.h - the channel layer's own header: struct channel, and what
 * channel.c, proc.c and persist.c share. Only those three files include it;
 * the layers above (exchange.c, manage.c, collect.c, pmap.c) see struct
 * channel as an opaque type and reach it through internal.h's calls, so
 * that no other file can write a channel's fields (make lint checks it).
 */
#ifndef EXCHANGE_CHANNEL_IMPL_H
#define EXCHANGE_CHANNEL_IMPL_H

#include "internal.h"

#include <sys/uio.h>

struct persist;

/* Where a persistent channel (persist.c) departs from the core send and
 * receive paths of channel.c. A channel without ops (ops NULL) takes the
 * core paths only; any NULL member means the core behaviour too. A channel
 * with ops refuses item streams (ENOTSUP): a stream has no message
 * boundary to acknowledge. */
struct channel_ops {
	/* Sends one frame instead of the core path. */
	int (*send_frame)(struct channel *ch, uint32_t kind, const void *a,
			  size_t alen, const void *b, size_t blen,
			  int timeout_ms);
	/* Takes the ACK frame at the head (h describes it) and consumes it. */
	int (*take_ack)(struct channel *ch, const struct frame_header *h);
	/* With no connection open: waits for the next peer until deadline.
	 * 0 connected, -1 on error or timeout. */
	int (*await_peer)(struct channel *ch, int64_t deadline);
	/* The peer left (end of stream or reset): drops its connection, and
	 * the next receive waits for another. */
	void (*drop_peer)(struct channel *ch);
	/* A message is about to be handed to the user. */
	void (*received)(struct channel *ch);
	/* channel_exit: delivers what is held, then returns to end. */
	void (*finish)(struct channel *ch, int status);
};

/* Channel states, in the order a parent-side channel passes through them:
 * OPEN (reading), EOF (end of stream read; buffered frames may remain),
 * then closed. Receiving stops for good once broken is set, except for
 * frames preloaded in front of the fault afterwards. */
struct channel {
	int rfd;		/* read descriptor, -1 once closed */
	int wfd;		/* write descriptor (== rfd for a socket) */
	pid_t pid;		/* the child (parent side), 0 in the child,
				   -1 when no process is attached */
	int status;		/* wait status, valid when reaped == 1 */
	int reaped;		/* 0 not yet, 1 reaped, -1 reaped by others */
	int exit_fd;		/* channel_exit_fd's descriptor, or -1 */
	bool group;		/* the process leads a process group of its
				   own (CHANNEL_OWN_GROUP) */
	bool eof;		/* read returned 0: the peer closed */
	bool broken;		/* a protocol error stopped receiving */
	int broken_errno;	/* errno returned while broken */
	size_t broken_ahead;	/* while broken: bytes of whole frames
				   preloaded in front of the fault, which are
				   received before it */
	int send_errno;		/* 0 while sending works, else what every
				   send fails with: ECONNABORTED once a frame
				   was cut in the middle, EPIPE once a socket
				   was shut down */
	bool is_socket;		/* rfd is a socket: use send(MSG_NOSIGNAL) */
	bool sigpipe_guard;	/* block SIGPIPE around each write */
	size_t max;		/* largest payload accepted */
	unsigned char *ibuf;	/* received bytes not yet consumed */
	size_t ipos;		/* first unconsumed byte in ibuf */
	size_t ilen;		/* end of valid bytes in ibuf */
	size_t icap;		/* allocated size of ibuf */
	void *peek_data;	/* the message lent by channel_peek, or NULL */
	uint64_t stream_left;	/* bytes left in the stream frame at the head
				   that a get has started */
	unsigned char *big;	/* a frame too large for ibuf, being received
				   straight into its own allocation, or NULL;
				   it comes before the bytes in ibuf */
	uint32_t big_kind;	/* its frame kind */
	size_t big_len;		/* its payload length */
	size_t big_have;	/* payload bytes received so far */
	int sigpipe_known;	/* 0 until the first send looked at SIGPIPE */
	bool drained;		/* the last read left the kernel buffer empty,
				   so the next wait polls before reading; an
				   owner whose own poll saw POLLIN clears it */
	bool pipe_grown;	/* the write pipe was enlarged for big frames */
	bool hup;		/* the owner's poll saw POLLHUP: a read that
				   empties the kernel buffer is end of stream */
	bool blocking;		/* rfd is blocking (a reuse worker's pipe): a
				   receive without timeout reads at once */
	bool cork;		/* hold small frames back in obuf until
				   channel_uncork or the next receive wait */
	unsigned char *obuf;	/* frames held back while corked */
	size_t olen;		/* bytes in obuf */
	size_t ocap;		/* allocated size of obuf */
	struct channel *prev;	/* registry of all open channels */
	struct channel *next;
	unsigned gen;		/* the fork generation of the process that
				   made it (see channel.c): a copy inherited
				   by a child of a later generation is inert */
	unsigned char *local;	/* a FAILURE payload made in this process
				   (channel_push_failure), received once no
				   whole frame is in front of it, or NULL */
	size_t local_len;	/* its length */
	size_t trusted;		/* bytes at the head of ibuf preloaded in
				   this process: a FAILURE frame is taken
				   from among them only, never from the
				   other side */
	unsigned long progress;	/* counts takings at the head (messages,
				   stream headers and item bytes), so that a
				   caller can tell whether a callback took
				   anything */

	/* Bounded sending (channel_set_bound; channel.c, "Bounded
	 * sending"). The counts run for the channel's whole life, on both
	 * sides, whatever the bound. */
	size_t bound;		/* most of this side's messages in flight
				   (sent, not yet taken by the other side),
				   or 0 for no bound */
	uint64_t sent;		/* DATA and ERROR frames this side has sent */
	uint64_t credited;	/* of those, the most the other side said
				   it has taken (CREDIT), or all those sent
				   before the bound was set */
	bool crediting;		/* the other side's sends are bounded (its
				   BOUND said so): each of its messages taken
				   here is credited back */
	bool credit_owed;	/* the last CREDIT found no room: the next
				   taking or wait sends the total */
	uint64_t taken;		/* the other side's messages taken here (as
				   credited), from its BOUND's count on */

	/* What the owner (an exchange) asks the channel to carry. */
	void *owner;		/* the owner's record for the channel, never
				   looked into here; NULL when in no exchange */
	size_t task;		/* stamped on every message received, or
				   CHANNEL_NO_TASK */
	unsigned long received;	/* messages (and item streams) taken by
				   users so far */

	/* Persistent channels (persist.c). */
	const struct channel_ops *ops;	/* how a persistent channel differs
					   from the core paths, or NULL */
	struct persist *persist;	/* in a persistent process: its
					   listening socket and the messages
					   not yet acknowledged; else NULL */
	uint64_t acked;		/* in a peer: the number of messages the
				   process has sent that were received here
				   or by earlier peers */
};

/* channel.c */

/* A new channel on the given descriptors, on no registry, in this
 * process's generation. NULL on ENOMEM. */
HIDDEN struct channel *channel_new(int rfd, int wfd, pid_t pid);

/* Frees the channel's memory: its descriptors and registry links are the
 * caller's business (channel_release). */
HIDDEN void channel_free(struct channel *ch);

/* Makes ch as channel_new(-1, -1, -1) made it, for reuse: frees what it
 * owns but a small receive buffer, which it keeps empty, and keeps its
 * registry links (proc.c keeps released channels on the registry, without
 * descriptors or process, for the next ones). */
HIDDEN void channel_recycle(struct channel *ch);

/* In a child just forked: starts a new fork generation, in which ch (the
 * child's end) is the one live channel and every copy inherited of the
 * parent's is inert (channel_inherited). */
HIDDEN void channel_new_generation(struct channel *ch);

/* Whether a whole frame is buffered in ibuf at offset pos (ipos or past
 * it, at a frame boundary); *h describes it. Malformed bytes end the walk
 * as a frame cut short does. */
HIDDEN bool channel_whole_at(const struct channel *ch, size_t pos,
			     struct frame_header *h);

/* Drops the whole frame at the head, described by h. */
HIDDEN void channel_drop_frame(struct channel *ch,
			       const struct frame_header *h);

/* Writes the iovecs whole, waiting for room (reading meanwhile) until the
 * deadline; *written receives the bytes written. 0, or -1. */
HIDDEN int channel_write_all(struct channel *ch, struct iovec *iov,
			     int iovcnt, int64_t deadline, size_t *written);

/* proc.c */

/* A new channel, registered (see proc.c). NULL on ENOMEM. */
HIDDEN struct channel *channel_alloc(int rfd, int wfd, pid_t pid);

/* In a new child: closes the descriptors of every registered channel but
 * keep, and of extra (two descriptors, -1 for none), and forgets those
 * channels (proc.c tells how without allocating or writing them). */
HIDDEN void channel_close_others(struct channel *keep, const int extra[2]);

/* fork(), with the registry locked across it (proc.c): the child never
 * copies a list another thread is changing. */
HIDDEN pid_t channel_fork_process(void);

#endif /* EXCHANGE_CHANNEL_IMPL_H */
