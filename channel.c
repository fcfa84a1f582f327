/*
 * channel.c - one two-way link to one process: its buffers, sending and
 * receiving frames, peek, ready, flush and preload, item streams.
 *
 * A channel is two descriptors in the parent (read and write; one socket
 * serves both) and the matching two in the child. All are close-on-exec and
 * non-blocking: every read or write that finds nothing to do falls back to
 * poll() with the time left before a monotonic deadline, which is how send
 * and receive timeouts work and why EINTR never stretches them.
 *
 * Receiving. Bytes read from the kernel go into ibuf, as much as one read
 * returns, so that one read usually brings a whole small frame (or several).
 * A frame too large for ibuf is received straight into an allocation of its
 * own size (big), so a large message is copied once, from the kernel; once
 * big is complete, the bytes that follow it go to ibuf again (a send that
 * waits for room keeps reading), and big is received before them. Stream
 * frames are consumed piecemeal: a get copies their payload into the
 * caller's array, reading the rest straight into it.
 *
 * The states of a channel's input: reading (eof false), then end of stream
 * seen (eof true) with possibly whole frames still buffered; a malformed
 * frame sets broken, after which every receive fails with the same errno.
 * The fault has a place in the stream: frames preloaded afterwards go in
 * front of it (broken_ahead counts their bytes) and are received first.
 *
 * Bounded sending (channel_set_bound) is flow control on the wire: the
 * sender counts its messages (DATA and ERROR frames), the receiver sends
 * back a CREDIT frame with the total it has taken as it hands each one to
 * its caller, and a send waits, reading its own input, while bound of them
 * are in flight. The BOUND frame that sets or lifts a bound travels in
 * front of the messages it governs. Both kinds are consumed wherever they
 * reach the head and never returned; a sender also reads credits from
 * anywhere in its buffer (they are totals, so reading one twice is
 * harmless).
 *
 * The process at the other end (forking, reaping, the registry) is
 * proc.c's; the persistent protocol is persist.c's, reached only through
 * the channel's ops table.
 */
#include "channel_impl.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__linux__) && !defined(F_SETPIPE_SZ)
#define F_SETPIPE_SZ 1031
#endif

/* Frames above this size enlarge a pipe to PIPE_BIG, where the system
 * allows it: fewer, longer copies for large messages. */
#define PIPE_BIG_FRAME (64 * 1024)
#define PIPE_BIG (1024 * 1024)

/* While corked, frames up to this size are held back in obuf. */
#define OBUF_FRAME_MAX (64 * 1024)

/* ibuf starts at this size and grows up to IBUF_MAX for frames that fit;
 * larger frames go to their own allocation. Small, because most channels
 * of short tasks carry one small result: malloc serves it from its
 * per-thread cache, which touches fewer pages (each one a copy-on-write
 * fault after every fork) than a fresh 16 KiB block. A larger frame costs
 * one more read the first time, then ibuf has grown to it. */
#define IBUF_INITIAL 1000
#define IBUF_MAX (256 * 1024)

/* A channel kept for reuse (channel_recycle) keeps a receive buffer up to
 * this size. */
#define RECYCLE_IBUF_MAX 4096

/* The fork generation: 0 in the first process, one more in each child
 * forked by channel_fork. Every channel records the generation that made
 * it; the copies a child inherits of its parent's other channels carry an
 * older one, and are inert there: their descriptor numbers are closed in
 * the child and may name files it opened since, so nothing but freeing
 * their memory is done with them. Nothing of them is written at fork. */
static unsigned fork_gen;

/* How many of this process's channels owe the other side a credit that
 * found no room (channel_credits_owed); set through set_owed only. A child
 * starts at 0: the copies it inherits are inert. */
static size_t owed_count;

static int write_frames(struct channel *ch, const struct iovec *frame,
			int n, int timeout_ms);
static int flush_out(struct channel *ch, int timeout_ms);
static bool is_message(uint32_t kind);
static uint64_t in_flight(const struct channel *ch);
static int await_credit(struct channel *ch, int64_t deadline);
static void send_credit(struct channel *ch);
static bool owes_credit(const struct channel *ch,
			const struct frame_header *h);
static void give_credit(struct channel *ch);
static bool is_flow(uint32_t kind);
static size_t flow_bytes(const struct channel *ch);
static bool take_flow(struct channel *ch, const struct frame_header *h);

/* ------------------------------------------------------------------------ */
/* Life of a channel                                                        */
/* ------------------------------------------------------------------------ */

/* A channel as it starts: on the given descriptors, in this process's
 * generation, nothing buffered. */
static void channel_init(struct channel *ch, int rfd, int wfd, pid_t pid)
{
	ch->rfd = rfd;
	ch->wfd = wfd;
	ch->pid = pid;
	ch->exit_fd = -1;
	ch->max = CHANNEL_MAX_DEFAULT;
	ch->task = CHANNEL_NO_TASK;
	ch->gen = fork_gen;
}

struct channel *channel_new(int rfd, int wfd, pid_t pid)
{
	struct channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	channel_init(ch, rfd, wfd, pid);
	return ch;
}

/* Frees what the channel owns but its receive buffer. */
static void free_buffers(struct channel *ch)
{
	free(ch->local);
	free(ch->big);
	free(ch->obuf);
	free(ch->peek_data);
}

/* Marks whether ch owes a credit, keeping owed_count. */
static void set_owed(struct channel *ch, bool owed)
{
	if (owed != ch->credit_owed)
		owed_count += owed ? 1 : (size_t)-1;
	ch->credit_owed = owed;
}

void channel_free(struct channel *ch)
{
	/* An inherited copy was never counted in this process's owed_count
	 * (a child starts at 0). */
	if (!channel_inherited(ch))
		set_owed(ch, false);
	free_buffers(ch);
	free(ch->ibuf);
	free(ch);
}

void channel_recycle(struct channel *ch)
{
	unsigned char *ibuf = ch->ibuf;
	size_t icap = ch->icap;
	struct channel *prev = ch->prev, *next = ch->next;

	set_owed(ch, false);
	free_buffers(ch);
	if (icap > RECYCLE_IBUF_MAX) {
		free(ibuf);
		ibuf = NULL;
		icap = 0;
	}
	memset(ch, 0, sizeof(*ch));
	ch->ibuf = ibuf;
	ch->icap = icap;
	ch->prev = prev;
	ch->next = next;
	channel_init(ch, -1, -1, -1);
}

void channel_new_generation(struct channel *ch)
{
	fork_gen++;
	owed_count = 0;
	ch->gen = fork_gen;
}

/* The check that opens the calls on a channel: -1 with EINVAL when ch is
 * NULL or valid is false (the other arguments are wrong), EBADF when ch is
 * a copy inherited from the parent (see fork_gen). */
static int unusable(const struct channel *ch, bool valid)
{
	return sys_refuse(!ch || !valid, ch && channel_inherited(ch));
}

int channel_inherited(const struct channel *ch)
{
	return ch->gen != fork_gen;
}

struct made_in channel_made_here(void)
{
	return (struct made_in){ .gen = fork_gen, .pid = sys_getpid() };
}

bool channel_made_elsewhere(struct made_in m)
{
	return m.gen != fork_gen || m.pid != sys_getpid();
}


int channel_set_blocking(struct channel *ch)
{
	int fl;

	if (!ch || ch->is_socket || ch->rfd < 0) {
		errno = EINVAL;
		return -1;
	}
	fl = fcntl(ch->rfd, F_GETFL);
	if (fl < 0 || fcntl(ch->rfd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -1;
	ch->blocking = true;
	return 0;
}

int channel_fd(const struct channel *ch)
{
	return ch && !channel_inherited(ch) ? ch->rfd : -1;
}

int channel_set_max(struct channel *ch, size_t max)
{
	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	ch->max = max ? max : CHANNEL_MAX_DEFAULT;
	return 0;
}

int channel_shutdown(struct channel *ch)
{
	if (unusable(ch, true))
		return -1;
	if (ch->is_socket) {
		if (ch->wfd >= 0 && shutdown(ch->wfd, SHUT_WR) < 0)
			return -1;
		/* Sending is over, but wfd is also the read descriptor. */
		ch->send_errno = EPIPE;
		return 0;
	}
	sys_close_shared(&ch->wfd);
	return 0;
}

void channel_close_fds(struct channel *ch)
{
	if (channel_inherited(ch))
		return;
	/* Under the lock: a fork in another thread sees the numbers open
	 * or -1, never a number closed and made again meanwhile. */
	sys_lock();
	if (ch->wfd != ch->rfd)
		sys_close(&ch->wfd);
	sys_close(&ch->rfd);
	ch->wfd = -1;
	sys_close(&ch->exit_fd);
	sys_unlock();
}

/* Reallocates *buf (of *cap bytes, used of them taken) with room for need
 * more bytes, doubling from first. -1 on ENOMEM, the buffer unchanged. */
static int grow(unsigned char **buf, size_t *cap, size_t used, size_t need,
		size_t first)
{
	size_t ncap = *cap ? *cap : first;
	unsigned char *p;

	while (ncap - used < need)
		ncap *= 2;
	p = realloc(*buf, ncap);
	if (!p)
		return -1;
	*buf = p;
	*cap = ncap;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

/* Reads what the other side sent, for the receiving side, while this side
 * waits to send. Errors belong to the receiving side and show on the next
 * receive. */
static void fill_aside(struct channel *ch)
{
	if (channel_fill(ch) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    !ch->broken) {
		ch->broken = true;
		ch->broken_errno = errno;
	}
}

/* Polls ch's read end for the events in and its write end for out (one
 * entry when they are one descriptor; an end with no events is left out)
 * until deadline, again after EINTR. *rin and *rout get each end's
 * revents. poll's result: above 0, 0 at the deadline, -1. */
static int poll_ends(const struct channel *ch, short in, short out,
		     int64_t deadline, short *rin, short *rout)
{
	struct pollfd p[2];
	bool one = ch->rfd == ch->wfd;
	nfds_t n = 0;
	int r;

	if (one) {
		p[n++] = (struct pollfd){ .fd = ch->rfd,
					  .events = (short)(in | out) };
	} else {
		if (in)
			p[n++] = (struct pollfd){ .fd = ch->rfd, .events = in };
		if (out)
			p[n++] = (struct pollfd){ .fd = ch->wfd, .events = out };
	}
	do
		r = poll(p, n, clock_left(deadline));
	while (r < 0 && errno == EINTR);
	*rin = *rout = 0;
	if (r > 0 && one) {
		*rin = *rout = p[0].revents;
	} else if (r > 0) {
		if (in)
			*rin = p[0].revents;
		if (out)
			*rout = p[in ? 1 : 0].revents;
	}
	return r;
}

/* Waits until wfd can take more, reading meanwhile whatever the other
 * side sends into the receive buffer: two processes sending each other
 * large messages at once would otherwise each wait for the other to read.
 * A blocking read end (a reuse worker's) is read too: each read follows a
 * poll that reported it readable, and a pipe read then returns what is
 * there without waiting for more. Returns 1 when writable, 0 on timeout,
 * -1 on error. */
static int wait_writable(struct channel *ch, int64_t deadline)
{
	bool reading = ch->rfd >= 0 && !ch->eof && !ch->broken;
	short rin, rout;
	int r;

	for (;;) {
		r = poll_ends(ch, reading ? POLLIN : 0, POLLOUT, deadline, &rin,
			      &rout);
		if (r <= 0)
			return r;
		if (reading && (rin & (ch->rfd == ch->wfd ? POLLIN
							  : POLLIN | POLLHUP))) {
			fill_aside(ch);
			reading = !ch->eof && !ch->broken;
		}
		if (rout & (POLLOUT | POLLERR | POLLHUP))
			return 1;
	}
}

/* Writes all of iov (modified as it goes) before deadline. *written
 * counts the bytes the kernel took, on failure too: whether a frame was
 * cut depends on it. */
int channel_write_all(struct channel *ch, struct iovec *iov, int iovcnt,
		     int64_t deadline, size_t *written)
{
	ssize_t n;
	int r;

	*written = 0;

	while (iovcnt > 0) {
		if (iov[0].iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		n = sys_writev(ch->wfd, ch->is_socket, iov, iovcnt);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			r = wait_writable(ch, deadline);
			if (r < 0)
				return -1;
			if (r == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			continue;
		}
		*written += (size_t)n;
		/* The kernel wrote no more than was asked: n runs out with
		 * the vectors at the latest. */
		while (n > 0 && iovcnt > 0) {
			size_t step = (size_t)n < iov[0].iov_len ?
				      (size_t)n : iov[0].iov_len;

			iov[0].iov_base = (char *)iov[0].iov_base + step;
			iov[0].iov_len -= step;
			n -= (ssize_t)step;
			if (iov[0].iov_len == 0) {
				iov++;
				iovcnt--;
			}
		}
	}
	return 0;
}

/* Decides once per channel whether writes need SIGPIPE blocked around
 * them: not when the process ignores it, nor on a socket. */
static void check_sigpipe(struct channel *ch)
{
	struct sigaction sa;

	ch->sigpipe_known = 1;
	if (ch->is_socket)
		return;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
		return;
	ch->sigpipe_guard = true;
}

/* Holds a frame of kind (the two buffers a and b as its payload) back in
 * obuf, to leave with whatever follows in one write. -1 on ENOMEM, nothing
 * held. */
static int hold_frame(struct channel *ch, uint32_t kind, const void *a,
		      size_t alen, const void *b, size_t blen)
{
	size_t size = FRAME_HEADER_SIZE + alen + blen;

	if (ch->ocap - ch->olen < size &&
	    grow(&ch->obuf, &ch->ocap, ch->olen, size, 4096) < 0)
		return -1;
	frame_encode(ch->obuf + ch->olen, kind, (uint64_t)alen + blen);
	if (alen)
		memcpy(ch->obuf + ch->olen + FRAME_HEADER_SIZE, a, alen);
	if (blen)
		memcpy(ch->obuf + ch->olen + FRAME_HEADER_SIZE + alen, b, blen);
	ch->olen += size;
	return 0;
}

int channel_send_frame(struct channel *ch, uint32_t kind, const void *a,
		       size_t alen, const void *b, size_t blen, int timeout_ms)
{
	unsigned char hdr[FRAME_HEADER_SIZE];
	struct iovec iov[3];
	int64_t deadline;
	int rc;

	if (!ch || (alen && !a) || (blen && !b)) {
		errno = EINVAL;
		return -1;
	}
	if (unusable(ch, true))
		return -1;
	if (ch->ops && ch->ops->send_frame)
		return ch->ops->send_frame(ch, kind, a, alen, b, blen,
					   timeout_ms);
	if (ch->wfd < 0 || ch->send_errno) {
		errno = ch->wfd < 0 ? EPIPE : ch->send_errno;
		return -1;
	}
	if (alen > ch->max || blen > ch->max - alen) {
		errno = EMSGSIZE;
		return -1;
	}
	if (ch->bound && is_message(kind) && in_flight(ch) >= ch->bound) {
		/* One deadline for the wait for credit and the write. */
		deadline = clock_deadline(timeout_ms);
		if (await_credit(ch, deadline) < 0)
			return -1;
		timeout_ms = clock_left(deadline);
	}
#ifdef F_SETPIPE_SZ
	if (!ch->is_socket && !ch->pipe_grown &&
	    alen + blen >= PIPE_BIG_FRAME) {
		/* Best effort: past the per-user pipe limit the kernel says
		 * no, and the default size still works. */
		ch->pipe_grown = true;
		fcntl(ch->wfd, F_SETPIPE_SZ, PIPE_BIG);
	}
#endif
	if (ch->cork && FRAME_HEADER_SIZE + alen + blen <= OBUF_FRAME_MAX) {
		rc = hold_frame(ch, kind, a, alen, b, blen);
	} else {
		frame_encode(hdr, kind, (uint64_t)alen + blen);
		iov[0].iov_base = hdr;
		iov[0].iov_len = sizeof(hdr);
		iov[1].iov_base = (void *)a;
		iov[1].iov_len = alen;
		iov[2].iov_base = (void *)b;
		iov[2].iov_len = blen;
		rc = write_frames(ch, iov, 3, timeout_ms);
	}
	if (rc == 0 && is_message(kind))
		ch->sent++;
	return rc;
}

/* Writes the frames held back by cork. */
static int flush_out(struct channel *ch, int timeout_ms)
{
	return write_frames(ch, NULL, 0, timeout_ms);
}

void channel_set_cork(struct channel *ch, bool on)
{
	ch->cork = on;
}

int channel_uncork(struct channel *ch, int timeout_ms)
{
	ch->cork = false;
	return ch->olen ? flush_out(ch, timeout_ms) : 0;
}

/* After a write that failed having taken done (< olen) of the bytes held
 * in obuf: drops them and keeps the rest held, in order. The held frames
 * were accepted when they were held, so one the write stopped inside is
 * not abandoned: its rest leaves first with the next write, as nothing
 * reaches the descriptor but through obuf. */
static void keep_unsent(struct channel *ch, size_t done)
{
	memmove(ch->obuf, ch->obuf + done, ch->olen - done);
	ch->olen -= done;
}

/* Writes the frames held back in obuf, then the frame in the n vectors of
 * frame (none for a flush), in one write where the kernel takes it all,
 * with SIGPIPE blocked around the write when the channel needs it.
 *
 * A failed write (timeout or error) leaves what did not go of the held
 * frames held (see keep_unsent), and a new frame none of whose bytes went
 * is simply not sent. A new frame that went in part cannot be taken back:
 * the stream is no longer framed, so sending ends, and every later send
 * fails with ECONNABORTED. After EPIPE the reader has gone and later
 * writes fail with EPIPE anyway. */
static int write_frames(struct channel *ch, const struct iovec *frame,
			int n, int timeout_ms)
{
	struct iovec iov[4];
	sigset_t pipe_set, old;
	bool guarded = false;
	size_t held = ch->olen, done;
	int rc, saved, i;

	assert(n >= 0 && n < 4);
	if (ch->wfd < 0 || ch->send_errno) {
		errno = ch->wfd < 0 ? EPIPE : ch->send_errno;
		return -1;
	}
	/* Every write decides it, not only a send's: a frame held back
	 * (channel_set_bound's BOUND) may leave first with a receive's
	 * flush. */
	if (!ch->sigpipe_known)
		check_sigpipe(ch);
	/* Frames held back go first, in the same write. */
	iov[0].iov_base = ch->obuf;
	iov[0].iov_len = held;
	for (i = 0; i < n; i++)
		iov[i + 1] = frame[i];
	if (ch->sigpipe_guard) {
		sigemptyset(&pipe_set);
		sigaddset(&pipe_set, SIGPIPE);
		if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0)
			guarded = !sigismember(&old, SIGPIPE);
	}
	rc = channel_write_all(ch, iov, n + 1, clock_deadline(timeout_ms), &done);
	/* errno only on failure: reading it is a call into the C library,
	 * whose page a child that just forked has to fault in. */
	saved = rc < 0 ? errno : 0;
	if (guarded) {
		if (rc < 0 && saved == EPIPE) {
			/* Consume the SIGPIPE this write raised before the
			 * mask comes off, so it is never delivered. */
			struct timespec zero = { 0, 0 };

			while (sigtimedwait(&pipe_set, NULL, &zero) < 0 &&
			       errno == EINTR)
				;
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (rc == 0) {
		ch->olen = 0;
		return 0;
	}
	if (done < held) {
		keep_unsent(ch, done);
	} else {
		/* The held frames all went; the new one in part, or not. */
		ch->olen = 0;
		if (done > held && saved != EPIPE)
			ch->send_errno = ECONNABORTED;
	}
	errno = saved;
	return -1;
}

int channel_send(struct channel *ch, const void *buf, size_t len,
		 int timeout_ms)
{
	return channel_send_frame(ch, FRAME_DATA, buf, len, NULL, 0,
				  timeout_ms);
}

int channel_send_error(struct channel *ch, const char *text, int timeout_ms)
{
	if (!text) {
		errno = EINVAL;
		return -1;
	}
	return channel_send_frame(ch, FRAME_ERROR, text, strlen(text), NULL, 0,
				  timeout_ms);
}

int channel_put(struct channel *ch, const void *items, size_t n, size_t size,
		int timeout_ms)
{
	if (!ch || size == 0 || (n && !items) || (n && size > SIZE_MAX / n)) {
		errno = EINVAL;
		return -1;
	}
	/* Persistent channels carry acknowledged messages only (struct
	 * channel_ops): a process would refuse stream items, and one frame
	 * of them would stop its receiving for good. Refused here, before
	 * anything is written, whatever the length. */
	if (ch->ops) {
		errno = ENOTSUP;
		return -1;
	}
	/* No items, no frame: an empty stream frame is consumed by no get
	 * (a get of no items reads nothing), so it would stay at the head
	 * and fail the next receive of a message with ENOMSG. */
	if (n == 0)
		return 0;
	return channel_send_frame(ch, FRAME_STREAM, items, n * size, NULL, 0,
				  timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                */
/* ------------------------------------------------------------------------ */

static size_t buffered(const struct channel *ch)
{
	return ch->ilen - ch->ipos;
}

/* Makes room for at least need more bytes after ilen, moving the unread
 * bytes to the front and growing ibuf as needed. */
static int reserve(struct channel *ch, size_t need)
{
	size_t have = buffered(ch);

	if (ch->icap - ch->ilen >= need)
		return 0;
	if (ch->ipos > 0) {
		memmove(ch->ibuf, ch->ibuf + ch->ipos, have);
		ch->ipos = 0;
		ch->ilen = have;
		if (ch->icap - ch->ilen >= need)
			return 0;
	}
	return grow(&ch->ibuf, &ch->icap, have, need, IBUF_INITIAL);
}

/* Stops receiving at the head. Nothing is in front of a fault found there:
 * frames preloaded in front of an earlier one have all been received, or
 * one of them is this fault (the maximum was lowered since). */
static int set_broken(struct channel *ch, int err)
{
	ch->broken = true;
	ch->broken_errno = err;
	ch->broken_ahead = 0;
	errno = err;
	return -1;
}

/* Consumes n bytes at the head of ibuf, those preloaded in front of a
 * fault first. */
static void consume(struct channel *ch, size_t n)
{
	ch->ipos += n;
	ch->progress++;
	ch->broken_ahead -= n < ch->broken_ahead ? n : ch->broken_ahead;
	ch->trusted -= n < ch->trusted ? n : ch->trusted;
	if (ch->ipos == ch->ilen)
		ch->ipos = ch->ilen = 0;
}

bool channel_whole_at(const struct channel *ch, size_t pos,
		      struct frame_header *h)
{
	/* No offset is added to a buffer never allocated. */
	return ch->ibuf && pos <= ch->ilen &&
	       frame_decode(ch->ibuf + pos, ch->ilen - pos, SIZE_MAX, h) == 1 &&
	       h->size <= ch->ilen - pos;
}

/* Whether a whole frame is at the head of ibuf (bytes in front of a fault
 * included). */
static bool whole_at_head(const struct channel *ch)
{
	struct frame_header h;

	if (ch->broken && ch->broken_ahead == 0)
		return false;
	return channel_whole_at(ch, ch->ipos, &h);
}

/* Looks at the frame at the head of ibuf. Returns 1 with *h when the whole
 * frame is buffered (or, for a large frame, completely received in big), 0
 * when more bytes are needed, -1 when malformed. A large frame whose header
 * has arrived moves to big here, with whatever part of it is buffered. */
static int head_frame(struct channel *ch, struct frame_header *h)
{
	size_t payload, have;
	int r;

	if (!ch->big && ch->local && !whole_at_head(ch)) {
		/* The failure made here comes after the whole frames that
		 * were buffered: it takes the head as a complete large
		 * frame would. */
		ch->big = ch->local;
		ch->big_kind = FRAME_FAILURE;
		ch->big_len = ch->big_have = ch->local_len;
		ch->local = NULL;
	}
	if (ch->big) {
		h->kind = ch->big_kind;
		h->size = ch->big_len + FRAME_HEADER_SIZE;
		h->magic = FRAME_MAGIC;
		return ch->big_have == ch->big_len;
	}
	if (ch->broken && ch->broken_ahead == 0) {
		errno = ch->broken_errno;
		return -1;
	}
	r = frame_decode(ch->ibuf + ch->ipos, buffered(ch), ch->max, h);
	if (r < 0)
		return set_broken(ch, errno);
	if (r == 0)
		return 0;
	/* A FAILURE is the parent's record of a task's end: one from the
	 * other side is forged, unless this process preloaded it. */
	if (h->kind == FRAME_FAILURE && ch->trusted < h->size)
		return set_broken(ch, EPROTO);
	payload = (size_t)(h->size - FRAME_HEADER_SIZE);
	have = buffered(ch) - FRAME_HEADER_SIZE;
	if (have >= payload)
		return 1;
	/* Stream frames are never gathered whole: a get consumes them as
	 * they come, so their header alone is enough to report the kind. */
	if (h->kind == FRAME_STREAM)
		return 1;
	if (h->size > IBUF_MAX) {
		unsigned char *p = malloc(payload + 1);

		if (!p)
			return -1;
		memcpy(p, ch->ibuf + ch->ipos + FRAME_HEADER_SIZE, have);
		ch->big = p;
		ch->big_kind = h->kind;
		ch->big_len = payload;
		ch->big_have = have;
		ch->ipos = ch->ilen = 0;
	}
	return 0;
}

ssize_t channel_fill(struct channel *ch)
{
	struct frame_header h;
	size_t room, want = 1;
	ssize_t n;

	if (ch->rfd < 0 || channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
	if (ch->eof)
		return 0;
	/* In the middle of a stream frame the head of ibuf is item bytes,
	 * whatever they look like. */
	if (ch->stream_left == 0 &&
	    frame_decode(ch->ibuf + ch->ipos, buffered(ch), SIZE_MAX, &h) == 1 &&
	    h.size > buffered(ch)) {
		/* Room for the rest of the frame at the head when it fits
		 * ibuf, so that one read can complete it; a frame too large
		 * for ibuf moves to its own allocation (head_frame) and is
		 * received in place, unless big still holds the one before
		 * it. */
		if (h.size <= IBUF_MAX)
			want = h.size - buffered(ch);
		else if (h.kind != FRAME_STREAM && !ch->big)
			(void)head_frame(ch, &h);
	}
	if (ch->big && ch->big_have < ch->big_len) {
		room = ch->big_len - ch->big_have;
		n = sys_read(ch->rfd, ch->big + ch->big_have, room);
		if (n > 0)
			ch->big_have += n;
	} else {
		/* Once big is complete, what follows it in the stream goes
		 * to ibuf: take_frame hands out big first, then ibuf. A read
		 * of nothing would return 0, which is end of stream. */
		if (reserve(ch, want) < 0)
			return -1;
		room = ch->icap - ch->ilen;
		assert(room > 0);
		n = sys_read(ch->rfd, ch->ibuf + ch->ilen, room);
		if (n > 0)
			ch->ilen += n;
	}
	if (n == 0)
		ch->eof = true;
	/* A read that did not fill the room emptied the kernel's buffer: a
	 * non-blocking read of a pipe or stream socket returns all that is
	 * there up to the size asked (a signal cannot cut it short, since it
	 * never sleeps). If the owner's poll had already seen the writer hang
	 * up, nothing more can come, which saves the read that would return
	 * 0. A test hook's short reads prove nothing, so not with a hook. */
	ch->drained = n < 0 || (size_t)n < room;
	if (n > 0 && (size_t)n < room && ch->hup && !ch->blocking &&
	    !exchange_hooks.read)
		ch->eof = true;
	ch->hup = false;
	return n;
}

/* Waits until the input has something, or, while ch owes a credit that
 * found no room, until the output has room for it: the other side may be
 * waiting for that credit before it sends anything. 0 for input, 1 for
 * room only (the caller sends the credit and waits again), -1 with
 * ETIMEDOUT or the error of poll. */
static int await_input(struct channel *ch, int64_t deadline)
{
	short rin, rout;
	int r;

	if (!ch->credit_owed || ch->wfd < 0)
		return sys_await(ch->rfd, POLLIN, deadline);
	r = poll_ends(ch, POLLIN, POLLOUT, deadline, &rin, &rout);
	if (r == 0)
		errno = ETIMEDOUT;
	if (r <= 0)
		return -1;
	return (rin & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) ? 0 : 1;
}

/* Fills until a whole frame is at the head, end of stream, or deadline.
 * Returns 1 with *h, 0 at a clean end of stream, -1 with ETIMEDOUT,
 * ECONNRESET (end of stream mid-frame) or another errno. */
static int await_frame(struct channel *ch, struct frame_header *h,
		       int64_t deadline)
{
	ssize_t n;
	int r;

	if (unusable(ch, true))
		return -1;
	for (;;) {
		r = head_frame(ch, h);
		if (r != 0)
			return r;
		if (ch->eof) {
			if (buffered(ch) == 0 && !ch->big)
				return 0;
			return set_broken(ch, ECONNRESET);
		}
		if (ch->olen && flush_out(ch, clock_left(deadline)) < 0)
			return -1;
		/* The other side may be waiting for this credit before it
		 * sends what this wait is for. */
		if (ch->credit_owed)
			send_credit(ch);
		if (ch->blocking && deadline < 0 && !ch->credit_owed) {
			/* A blocking descriptor and no timeout: the read
			 * itself waits, and no poll is needed. */
		} else if (ch->drained || ch->blocking) {
			/* The last read emptied the kernel's buffer: a read
			 * now would most likely find nothing, so wait for
			 * data first. */
			r = await_input(ch, deadline);
			if (r < 0)
				return -1;
			if (r > 0)
				continue;
		}
		n = channel_fill(ch);
		if (n >= 0)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (await_input(ch, deadline) < 0)
			return -1;
	}
}

/* Takes the whole frame at the head (described by h) out of the channel.
 * *data gets a malloc'd copy of the payload with a NUL after it. */
static int take_frame(struct channel *ch, const struct frame_header *h,
		      void **data, size_t *len)
{
	size_t payload = (size_t)(h->size - FRAME_HEADER_SIZE);
	bool credit = owes_credit(ch, h);
	unsigned char *p;

	if (ch->big) {
		p = ch->big;
		ch->big = NULL;
		ch->progress++;
	} else {
		p = malloc(payload + 1);
		if (!p)
			return -1;
		memcpy(p, ch->ibuf + ch->ipos + FRAME_HEADER_SIZE, payload);
		consume(ch, h->size);
	}
	p[payload] = '\0';
	*data = p;
	*len = payload;
	if (credit)
		give_credit(ch);
	return 0;
}

/* Drops the whole frame at the head. */
void channel_drop_frame(struct channel *ch, const struct frame_header *h)
{
	if (ch->big) {
		free(ch->big);
		ch->big = NULL;
		ch->progress++;
		return;
	}
	consume(ch, h->size);
}

/* A reuse DONE on a channel that has an owner (an exchange): the end of
 * one task's messages. It stays at the head for the owner to take
 * (channel_take_done); a receive stops in front of it. */
static bool at_task_end(const struct channel *ch, const struct frame_header *h)
{
	return h->kind == FRAME_DONE && ch->owner;
}

/* Consumes the whole frame at the head (described by h) when it is one of
 * the library's own control frames that nobody waits for: a persistent ACK,
 * a bounded channel's BOUND or CREDIT, or a DONE on a channel without
 * owner. Returns true when it did; users never see them. */
static bool take_control(struct channel *ch, const struct frame_header *h)
{
	if (is_flow(h->kind))
		return take_flow(ch, h);
	if (h->kind == FRAME_ACK && ch->ops && ch->ops->take_ack) {
		ch->ops->take_ack(ch, h);
		return true;
	}
	if (h->kind != FRAME_DONE || ch->owner)
		return false;
	channel_drop_frame(ch, h);
	return true;
}

int channel_take_done(struct channel *ch)
{
	struct frame_header h;

	if (ch->stream_left || head_frame(ch, &h) != 1 ||
	    h.kind != FRAME_DONE) {
		errno = ENOMSG;
		return -1;
	}
	channel_drop_frame(ch, &h);
	return 0;
}

int channel_head(struct channel *ch)
{
	struct frame_header h;
	int r;

	for (;;) {
		if (ch->stream_left)
			return FRAME_STREAM;
		r = head_frame(ch, &h);
		if (r <= 0)
			return r;
		if (!take_control(ch, &h))
			return (int)h.kind;
	}
}

int channel_recv_frame(struct channel *ch, uint32_t *kind, void **data,
		       size_t *len, int timeout_ms)
{
	struct frame_header h;
	int64_t deadline;
	int r;

	if (!ch || !kind || !data || !len) {
		errno = EINVAL;
		return -1;
	}
	if (ch->stream_left) {
		errno = ENOMSG;
		return -1;
	}
	deadline = clock_deadline(timeout_ms);
	do
		r = await_frame(ch, &h, deadline);
	while (r == 1 && is_flow(h.kind) && take_flow(ch, &h));
	if (r <= 0)
		return r;
	if (h.kind == FRAME_STREAM) {
		errno = ENOMSG;
		return -1;
	}
	if (take_frame(ch, &h, data, len) < 0)
		return -1;
	*kind = h.kind;
	return 1;
}

/* Waits for the next user frame: 0 at end of stream, or in front of the
 * end of a task's messages (at_task_end); stream data at the head (or a
 * get in the middle of it) is
 * ENOMSG, for a get to take, and reuse control frames there are EPROTO. */
static int await_user_frame(struct channel *ch, struct frame_header *h,
			    int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	int r;

	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		if (ch->stream_left) {
			errno = ENOMSG;
			return -1;
		}
		if (ch->ops && ch->ops->await_peer && ch->rfd < 0 &&
		    head_frame(ch, h) == 0 && ch->ops->await_peer(ch, deadline) < 0)
			return -1;
		r = await_frame(ch, h, deadline);
		if (ch->ops && ch->ops->drop_peer &&
		    (r == 0 || (r < 0 && errno == ECONNRESET))) {
			/* The peer left: the next one carries on. */
			ch->ops->drop_peer(ch);
			continue;
		}
		if (r <= 0)
			return r;
		if (take_control(ch, h))
			continue;
		if (at_task_end(ch, h))
			return 0;
		if (h->kind > FRAME_FAILURE) {
			errno = h->kind == FRAME_STREAM ? ENOMSG : EPROTO;
			return -1;
		}
		return 1;
	}
}

/* The start of a receive and of a peek: waits for the next user frame
 * (h), and clears msg. A message lent by an earlier peek is either this
 * one (in big, handed over or lent again) or a copy that is no longer
 * needed. */
static int await_message(struct channel *ch, struct channel_msg *msg,
			 struct frame_header *h, int timeout_ms)
{
	int r;

	if (!msg) {
		errno = EINVAL;
		return -1;
	}
	r = await_user_frame(ch, h, timeout_ms);
	if (r <= 0)
		return r;
	free(ch->peek_data);
	ch->peek_data = NULL;
	memset(msg, 0, sizeof(*msg));
	return 1;
}

int channel_recv(struct channel *ch, struct channel_msg *msg, int timeout_ms)
{
	struct frame_header h;
	int r;

	r = await_message(ch, msg, &h, timeout_ms);
	if (r <= 0)
		return r;
	if (take_frame(ch, &h, &msg->data, &msg->len) < 0)
		return -1;
	msg->kind = (int)h.kind;
	msg->task = ch->task;
	if (h.kind == FRAME_FAILURE) {
		frame_decode_failure(msg);
	} else {
		msg->cause = h.kind == FRAME_ERROR ? CHANNEL_SENT_ERROR
						   : CHANNEL_OK;
		ch->received++;
		if (ch->ops && ch->ops->received)
			ch->ops->received(ch);	/* before the user has it */
	}
	return 1;
}

int channel_peek(struct channel *ch, struct channel_msg *msg, int timeout_ms)
{
	struct frame_header h;
	size_t payload;
	int r;

	r = await_message(ch, msg, &h, timeout_ms);
	if (r <= 0)
		return r;
	payload = (size_t)(h.size - FRAME_HEADER_SIZE);
	if (ch->big) {
		/* The frame already has its own allocation: lend it. */
		ch->big[payload] = '\0';
		msg->data = ch->big;
	} else {
		unsigned char *p = malloc(payload + 1);

		if (!p)
			return -1;
		memcpy(p, ch->ibuf + ch->ipos + FRAME_HEADER_SIZE, payload);
		p[payload] = '\0';
		ch->peek_data = p;
		msg->data = p;
	}
	msg->len = payload;
	msg->kind = (int)h.kind;
	msg->task = ch->task;
	if (h.kind == FRAME_FAILURE) {
		/* Decode from a copy of the header fields: the lent payload
		 * keeps its encoded form. */
		int32_t cc[2] = { CHANNEL_PROTOCOL, EPROTO };

		if (payload >= sizeof(cc)) {
			memcpy(cc, msg->data, sizeof(cc));
			msg->data = (unsigned char *)msg->data + sizeof(cc);
			msg->len -= sizeof(cc);
		} else {
			/* Too short for cause and code: channel_recv gives
			 * an empty text, so lend the NUL after the payload
			 * rather than its bytes. */
			msg->data = (unsigned char *)msg->data + payload;
			msg->len = 0;
		}
		msg->cause = cc[0];
		msg->code = cc[1];
	} else if (h.kind == FRAME_ERROR) {
		msg->cause = CHANNEL_SENT_ERROR;
	}
	return 1;
}

void channel_msg_free(struct channel_msg *msg)
{
	if (!msg)
		return;
	free(msg->data);
	msg->data = NULL;
	msg->len = 0;
}

int channel_ready(struct channel *ch, int timeout_ms)
{
	struct frame_header h;
	int r;

	r = await_user_frame(ch, &h, timeout_ms);
	if (r >= 0)
		return 1;
	if (errno == ETIMEDOUT)
		return 0;
	return -1;
}

void channel_set_owner(struct channel *ch, void *owner)
{
	ch->owner = owner;
}

void *channel_owner(const struct channel *ch)
{
	return ch->owner;
}

void channel_set_task(struct channel *ch, size_t task)
{
	ch->task = task;
}

size_t channel_task(const struct channel *ch)
{
	return ch->task;
}

unsigned long channel_received(const struct channel *ch)
{
	return ch->received;
}

int channel_input_error(const struct channel *ch)
{
	return ch->broken ? ch->broken_errno : 0;
}

bool channel_input_ended(const struct channel *ch)
{
	return ch->eof;
}

void channel_end_input(struct channel *ch)
{
	ch->eof = true;
}

void channel_fail_input(struct channel *ch, int err)
{
	ch->broken = true;
	ch->broken_errno = err;
}

bool channel_partial(const struct channel *ch)
{
	return buffered(ch) > 0 || ch->big != NULL;
}

void channel_polled(struct channel *ch, short revents)
{
	/* The owner's poll saw data: read without polling again. With the
	 * hang-up seen too, a read that empties the kernel's buffer is the
	 * end of stream, without another read. */
	ch->drained = false;
	if (revents & POLLHUP)
		ch->hup = true;
}

bool channel_may_fill(const struct channel *ch)
{
	return !ch->eof && !ch->drained && ch->rfd >= 0;
}

unsigned long channel_progress(const struct channel *ch)
{
	return ch->progress;
}

bool channel_can_send(const struct channel *ch)
{
	return ch->wfd >= 0 && !channel_inherited(ch);
}

int channel_active(const struct channel *ch)
{
	if (!ch)
		return 0;
	/* Flow control buffered is no message. */
	return !ch->eof || buffered(ch) > flow_bytes(ch) ||
	       ch->big != NULL ||
	       ch->stream_left > 0 || ch->local != NULL;
}

ssize_t channel_size(const struct channel *ch)
{
	size_t n;

	if (unusable(ch, true))
		return -1;
	n = buffered(ch) - flow_bytes(ch) + (ch->big ? ch->big_have : 0);
#ifdef FIONREAD
	{
		int k = 0;

		if (ch->rfd >= 0 && ioctl(ch->rfd, FIONREAD, &k) == 0 && k > 0)
			n += (size_t)k;
	}
#endif
	return (ssize_t)n;
}

void channel_discard(struct channel *ch)
{
	free(ch->big);
	ch->big = NULL;
	free(ch->peek_data);
	ch->peek_data = NULL;
	ch->ipos = ch->ilen = 0;
	ch->stream_left = 0;
	ch->broken = false;
	ch->broken_ahead = 0;
	ch->trusted = 0;
	ch->eof = true;
}

int channel_push_failure(struct channel *ch, int cause, int code,
			 const char *text)
{
	size_t tlen = text ? strlen(text) : 0;
	int32_t cc[2] = { cause, code };
	unsigned char *p;

	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	if (ch->big || ch->broken || ch->stream_left) {
		/* What is half received (or malformed) will never be a whole
		 * frame now: drop it, and read nothing more after it. */
		channel_discard(ch);
	}
	if (ch->local)
		return 0;
	p = malloc(sizeof(cc) + tlen + 1);
	if (!p)
		return -1;
	memcpy(p, cc, sizeof(cc));
	if (tlen)
		/* The payload carries the text without its NUL (its length
		 * is the frame's); receiving adds one. */
		memcpy(p + sizeof(cc), text, tlen); /* NOLINT(bugprone-not-null-terminated-result) */
	ch->local = p;
	ch->local_len = sizeof(cc) + tlen;
	return 0;
}

struct channel *channel_new_failure(size_t task, int cause, int code,
				    const char *text)
{
	/* On no registry: it has no descriptor for a child to close. */
	struct channel *ch = channel_new(-1, -1, -1);

	if (!ch)
		return NULL;
	ch->eof = true;
	ch->task = task;
	if (channel_push_failure(ch, cause, code, text) < 0) {
		channel_free(ch);
		return NULL;
	}
	return ch;
}

/* ------------------------------------------------------------------------ */
/* Bounded sending                                                          */
/* ------------------------------------------------------------------------ */

/* The frames a bound counts: the user's messages. Item streams, the reuse
 * protocol and the flow control itself are not counted. */
static bool is_message(uint32_t kind)
{
	return kind == FRAME_DATA || kind == FRAME_ERROR;
}

static bool is_flow(uint32_t kind)
{
	return kind == FRAME_BOUND || kind == FRAME_CREDIT;
}

/* This side's messages sent and not yet credited. */
static uint64_t in_flight(const struct channel *ch)
{
	return ch->sent > ch->credited ? ch->sent - ch->credited : 0;
}

/* Reads the uint64 at word i of the payload of a flow frame at offset pos
 * of ibuf. */
static uint64_t flow_word(const struct channel *ch, size_t pos, size_t i)
{
	uint64_t v;

	memcpy(&v, ch->ibuf + pos + FRAME_HEADER_SIZE + i * sizeof(v),
	       sizeof(v));
	return v;
}

/* Whether h describes a well-formed flow frame: a CREDIT of one word, a
 * BOUND of two. */
static bool flow_ok(const struct frame_header *h)
{
	uint64_t words = h->kind == FRAME_CREDIT ? 1 : 2;

	return is_flow(h->kind) &&
	       h->size == FRAME_HEADER_SIZE + words * sizeof(uint64_t);
}

/* The bytes of the whole BOUND and CREDIT frames buffered in ibuf (after
 * the rest of an open stream frame), which no reader sees. errno is left
 * as it was: the callers only look. */
static size_t flow_bytes(const struct channel *ch)
{
	struct frame_header h;
	size_t pos, n = 0;
	int saved = errno;

	if (ch->stream_left > buffered(ch))
		return 0;
	for (pos = ch->ipos + (size_t)ch->stream_left;
	     channel_whole_at(ch, pos, &h); pos += (size_t)h.size)
		if (flow_ok(&h))
			n += (size_t)h.size;
	errno = saved;
	return n;
}

/* Counts the CREDIT frames buffered in ibuf (after the rest of an open
 * stream frame) and takes them out, wherever they are: a sender that never
 * receives would otherwise keep every credit it was given and scan them
 * all at each wait. Credits are totals, so their order against the other
 * frames does not matter; nothing else moves. Not when the input has
 * failed, whose fault lies at a fixed distance from the head. */
static void take_credits(struct channel *ch)
{
	struct frame_header h;
	size_t pos, size;

	if (ch->broken || ch->stream_left > buffered(ch))
		return;
	pos = ch->ipos + (size_t)ch->stream_left;
	while (channel_whole_at(ch, pos, &h)) {
		size = (size_t)h.size;
		if (h.kind != FRAME_CREDIT || !flow_ok(&h)) {
			pos += size;
			continue;
		}
		if (flow_word(ch, pos, 0) > ch->credited)
			ch->credited = flow_word(ch, pos, 0);
		if (pos == ch->ipos) {
			ch->ipos += size;
			pos = ch->ipos;
		} else {
			memmove(ch->ibuf + pos, ch->ibuf + pos + size,
				ch->ilen - pos - size);
			ch->ilen -= size;
		}
		if (ch->ipos == ch->ilen)
			pos = ch->ipos = ch->ilen = 0;
	}
}

/* Takes the whole flow frame at the head (h): a CREDIT counts, a BOUND
 * starts or stops the crediting of the other side's messages. False, with
 * the frame left there, when it is malformed or the channel is persistent
 * (whose peers never bound it): the callers' protocol error. */
static bool take_flow(struct channel *ch, const struct frame_header *h)
{
	if (ch->ops || ch->big || !flow_ok(h))
		return false;
	if (h->kind == FRAME_CREDIT) {
		if (flow_word(ch, ch->ipos, 0) > ch->credited)
			ch->credited = flow_word(ch, ch->ipos, 0);
	} else {
		/* Every message sent before it has been taken here. */
		ch->taken = flow_word(ch, ch->ipos, 0);
		ch->crediting = flow_word(ch, ch->ipos, 1) != 0;
		set_owed(ch, false);
	}
	channel_drop_frame(ch, h);
	return true;
}

/* Whether taking the whole frame at the head (h) is to be credited: one of
 * the other side's messages while its sends are bounded, from the wire (a
 * preloaded frame was credited when it was first taken). */
static bool owes_credit(const struct channel *ch, const struct frame_header *h)
{
	return ch->crediting && is_message(h->kind) &&
	       (ch->big || ch->trusted < h->size);
}

/* Sends the total taken as a CREDIT without waiting. When the pipe is full
 * it stays owed, for the next taking or receive wait: the totals make one
 * late credit say what the missed ones would have. A sender that has gone
 * is no error of the receive's. */
static void send_credit(struct channel *ch)
{
	unsigned char hdr[FRAME_HEADER_SIZE];
	uint64_t n = ch->taken;
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { &n, sizeof(n) } };
	int saved = errno, rc;

	/* Not through channel_send_frame: a credit is no message, and waits
	 * for no bound. */
	if (ch->cork) {
		rc = hold_frame(ch, FRAME_CREDIT, &n, sizeof(n), NULL, 0);
	} else {
		frame_encode(hdr, FRAME_CREDIT, sizeof(n));
		rc = write_frames(ch, iov, 2, 0);
	}
	set_owed(ch, rc < 0 && errno == ETIMEDOUT);
	errno = saved;
}

size_t channel_credits_owed(void)
{
	return owed_count;
}

bool channel_pay_credit(struct channel *ch)
{
	if (ch->credit_owed)
		send_credit(ch);
	return ch->credit_owed;
}

/* One of the other side's messages has been handed to the caller. */
static void give_credit(struct channel *ch)
{
	ch->taken++;
	send_credit(ch);
}

/* Waits until fewer than bound of this side's messages are in flight,
 * reading the input meanwhile: the other side's frames stay buffered for
 * the receives, and the credits among them count at once. Frames held in
 * obuf go first, or their credit could never come. 0, or -1 with
 * ETIMEDOUT, EPIPE (no credit can come any more: the other side's stream
 * ended or failed), or the error of a wait. */
static int await_credit(struct channel *ch, int64_t deadline)
{
	int r;

	for (;;) {
		take_credits(ch);
		if (in_flight(ch) < ch->bound)
			return 0;
		if (ch->rfd < 0 || ch->eof || ch->broken) {
			errno = EPIPE;
			return -1;
		}
		if (ch->olen && flush_out(ch, clock_left(deadline)) < 0)
			return -1;
		/* Both sides may be bounded and waiting for each other. */
		if (ch->credit_owed)
			send_credit(ch);
		r = await_input(ch, deadline);
		if (r < 0)
			return -1;
		if (r == 0)
			fill_aside(ch);
	}
}

int channel_set_bound(struct channel *ch, size_t n)
{
	uint64_t word[2];

	if (unusable(ch, true))
		return -1;
	if (ch->ops) {
		/* Persistent channels acknowledge every message already. */
		errno = ENOTSUP;
		return -1;
	}
	if ((n == 0) != (ch->bound == 0)) {
		/* Set or lifted: the other side learns it in order, before
		 * the next message, with which the BOUND leaves. */
		word[0] = ch->sent;
		word[1] = n;
		if (hold_frame(ch, FRAME_BOUND, word, sizeof(word), NULL, 0) < 0)
			return -1;
		/* What was sent before counts against no bound. */
		if (n && ch->credited < ch->sent)
			ch->credited = ch->sent;
	}
	ch->bound = n;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Flush and preload                                                        */
/* ------------------------------------------------------------------------ */

/* The start of a flush: checks the arguments, clears the caller's result
 * and drops the copy an earlier peek lent. -1 with EINVAL, or ENOMSG when
 * a get is in the middle of an item stream. */
static int flush_begin(struct channel *ch, void **frames, size_t *len)
{
	if (!ch || !frames || !len) {
		errno = EINVAL;
		return -1;
	}
	*frames = NULL;
	*len = 0;
	if (ch->stream_left) {
		errno = ENOMSG;
		return -1;
	}
	free(ch->peek_data);
	ch->peek_data = NULL;
	return 0;
}

/* A flush's wait for a frame failed with errno. A timeout ends the flush
 * with what it has. An error after whole frames were taken ends it too,
 * which returns them, as read(2) returns what it got: what was taken
 * cannot go back into the kernel, and a run of channel_recv would have
 * returned them too; the error comes on the next call. A bad frame has
 * already made the channel broken behind what was taken, and a failed
 * allocation is met again; a failed read is kept as broken, as
 * wait_writable keeps one, or the next call would not see it. Returns 0
 * when the flush ends, -1 when it fails (taken is false). */
static int flush_wait_failed(struct channel *ch, bool taken)
{
	if (errno == ETIMEDOUT)
		return 0;
	if (!taken)
		return -1;
	if (!ch->broken && errno != ENOMEM)
		set_broken(ch, errno);
	return 0;
}

/* Waits for the next frame a flush hands over (DATA, ERROR or FAILURE,
 * described in *h), consuming the library's control frames on the way as
 * channel_recv does. Returns 1 with one at the head; 0 when the flush ends
 * in front of what is there (end of stream, a timeout, the end of a task's
 * messages, items for a get, or a fault behind frames already taken);
 * -1 when it fails with nothing taken (taken is false). */
static int flush_next(struct channel *ch, struct frame_header *h,
		      int64_t deadline, bool taken)
{
	int r;

	for (;;) {
		r = await_frame(ch, h, deadline);
		if (r == 0)
			return 0;
		if (r < 0)
			return flush_wait_failed(ch, taken);
		if (take_control(ch, h))
			continue;
		if (at_task_end(ch, h))
			return 0;
		if (h->kind == FRAME_STREAM) {
			/* Items pending: the next call meets them again,
			 * and a get can take them. */
			if (taken)
				return 0;
			errno = ENOMSG;
			return -1;
		}
		if (h->kind > FRAME_FAILURE) {
			/* TASK or STOP coming this way: a protocol error. */
			set_broken(ch, EPROTO);
			return taken ? 0 : -1;
		}
		return 1;
	}
}

/* Appends the whole frame at the head (described by h) to the flush's
 * output (*out, of *cap bytes, *used of them taken), then drops it from
 * the channel: copied from where it was received, and only then dropped,
 * so a failed allocation (-1, ENOMEM) leaves the frame in the channel. */
static int flush_append(struct channel *ch, const struct frame_header *h,
			unsigned char **out, size_t *used, size_t *cap)
{
	size_t payload = (size_t)(h->size - FRAME_HEADER_SIZE);
	bool credit = owes_credit(ch, h);

	/* A frame is never empty (its header is in it), so the first one
	 * always allocates; the analysers are told so. */
	if ((!*out || *cap - *used < h->size) &&
	    grow(out, cap, *used, (size_t)h->size, 4096) < 0)
		return -1;
	/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
	frame_encode(*out + *used, h->kind, payload);
	/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
	memcpy(*out + *used + FRAME_HEADER_SIZE,
	       ch->big ? ch->big : ch->ibuf + ch->ipos + FRAME_HEADER_SIZE,
	       payload);
	channel_drop_frame(ch, h);
	*used += (size_t)h->size;
	if (credit)
		give_credit(ch);	/* handed over, as by channel_recv */
	return 0;
}

ssize_t channel_flush(struct channel *ch, void **frames, size_t *len,
		      int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	unsigned char *out = NULL;
	size_t used = 0, cap = 0;
	ssize_t count = 0;
	struct frame_header h;
	int r, saved;

	if (flush_begin(ch, frames, len) < 0)
		return -1;
	while ((r = flush_next(ch, &h, deadline, count > 0)) == 1) {
		if (flush_append(ch, &h, &out, &used, &cap) < 0) {
			r = count ? 0 : -1;	/* as for a failed wait */
			break;
		}
		count++;
	}
	if (r < 0) {
		saved = errno;
		free(out);
		errno = saved;
		return -1;
	}
	*frames = out;
	*len = used;
	return count;
}

int channel_preload(struct channel *ch, const void *frames, size_t len)
{
	const unsigned char *p = frames;
	struct frame_header h;
	size_t off = 0, have;
	unsigned char *nb;
	int r;

	if (!ch || (len && !frames)) {
		errno = EINVAL;
		return -1;
	}
	if (ch->big || ch->stream_left) {
		/* A frame is half received: nothing can go in front of it. */
		errno = EBUSY;
		return -1;
	}
	while (off < len) {
		/* 0 is a header cut short, which sets no errno; -1 has set
		 * EPROTO or EMSGSIZE. */
		r = frame_decode(p + off, len - off, ch->max, &h);
		if (r == 0)
			errno = EPROTO;
		if (r <= 0)
			return -1;
		/* Credits are the other side's word, never replayed. */
		if (h.size > len - off || is_flow(h.kind)) {
			errno = EPROTO;
			return -1;
		}
		off += h.size;
	}
	if (len == 0)
		return 0;
	have = buffered(ch);
	nb = malloc(len + have + IBUF_INITIAL);
	if (!nb)
		return -1;
	memcpy(nb, p, len);
	if (have)
		memcpy(nb + len, ch->ibuf + ch->ipos, have);
	free(ch->ibuf);
	free(ch->peek_data);
	ch->peek_data = NULL;
	ch->ibuf = nb;
	ch->icap = len + have + IBUF_INITIAL;
	ch->ipos = 0;
	ch->ilen = len + have;
	/* In front of a fault too: these frames are whole and valid, so
	 * they are received before the error comes again. */
	if (ch->broken)
		ch->broken_ahead += len;
	/* Made here: FAILURE frames among them are taken as they are. */
	ch->trusted += len;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Item streams                                                             */
/* ------------------------------------------------------------------------ */

/* Puts k stream bytes back at the front of the buffer, in the middle of
 * the stream frame they came from. */
static void unread(struct channel *ch, const unsigned char *bytes, size_t k)
{
	if (ch->ipos < k) {
		size_t have = buffered(ch);

		if (reserve(ch, k) < 0)
			return;
		memmove(ch->ibuf + k, ch->ibuf + ch->ipos, have);
		ch->ipos = k;
		ch->ilen = k + have;
	}
	ch->ipos -= k;
	memcpy(ch->ibuf + ch->ipos, bytes, k);
	ch->stream_left += k;
}

/* Before a read in a get: a blocking read end (a reuse worker's) would
 * wait in the read itself, past the deadline, so with a deadline it polls
 * first. A non-blocking one reads at once (EAGAIN says there was nothing),
 * and so does a blocking one without a deadline. Returns 1 when the read
 * may go ahead, 0 on timeout, -1 on error. */
static int await_readable(struct channel *ch, int64_t deadline)
{
	if (!ch->blocking || deadline < 0)
		return 1;
	return sys_wait_fd(ch->rfd, POLLIN, deadline);
}

/* The next frame of a get must be a stream frame; only its header needs
 * to be here. Opens it: consumes the header and sets stream_left (a stream
 * taken is a message received). Returns 1 when opened, 0 when its header
 * is not all buffered yet, -1 with ENOMSG for a message at the head, or
 * the error of the head. */
static int open_stream(struct channel *ch)
{
	struct frame_header h;
	int r;

	do {
		r = head_frame(ch, &h);
		if (r < 0)
			return -1;
		if (ch->big) {
			/* A message (or a FAILURE) of its own allocation. */
			errno = ENOMSG;
			return -1;
		}
		if (buffered(ch) < FRAME_HEADER_SIZE ||
		    frame_decode(ch->ibuf + ch->ipos, buffered(ch), ch->max,
				 &h) != 1)
			return 0;
		/* Flow control between items is the channel's own. */
		if (is_flow(h.kind) && r == 0)
			return 0;
	} while (is_flow(h.kind) && take_flow(ch, &h));
	if (h.kind != FRAME_STREAM) {
		errno = ENOMSG;
		return -1;
	}
	consume(ch, FRAME_HEADER_SIZE);
	ch->stream_left = h.size - FRAME_HEADER_SIZE;
	ch->received++;
	return 1;
}

/* Copies into dst up to want item bytes of the open stream frame from
 * those buffered (there are some); *done counts them. */
static void take_items(struct channel *ch, unsigned char *dst, size_t want,
		       size_t *done)
{
	size_t take = buffered(ch);

	if (take > ch->stream_left)
		take = (size_t)ch->stream_left;
	if (take > want)
		take = want;
	memcpy(dst, ch->ibuf + ch->ipos, take);
	consume(ch, take);
	ch->stream_left -= take;
	*done += take;
}

/* Waits until the read descriptor has data, or the deadline. 0 when it
 * has, else the errno that ends the get (ETIMEDOUT at the deadline). */
static int wait_items(struct channel *ch, int64_t deadline)
{
	int r = sys_wait_fd(ch->rfd, POLLIN, deadline);

	if (r < 0)
		return errno;
	return r == 0 ? ETIMEDOUT : 0;
}

/* await_readable, as the errno that ends the get (ETIMEDOUT at the
 * deadline), or 0 when the read may go ahead. */
static int get_readable(struct channel *ch, int64_t deadline)
{
	int r = await_readable(ch, deadline);

	if (r < 0)
		return errno;
	return r == 0 ? ETIMEDOUT : 0;
}

/* In the middle of a stream frame with nothing buffered: reads up to want
 * item bytes of it straight into the caller's array at dst (*done counts
 * them), waiting when there are none yet. 0 when the get goes on (end of
 * stream included: the next step sees it), else the errno that ends it. */
static int read_items(struct channel *ch, unsigned char *dst, size_t want,
		      size_t *done, int64_t deadline)
{
	ssize_t n;
	int err;

	if (want > ch->stream_left)
		want = (size_t)ch->stream_left;
	err = get_readable(ch, deadline);
	if (err)
		return err;
	n = sys_read(ch->rfd, dst, want);
	if (n > 0) {
		ch->stream_left -= n;
		ch->progress++;
		*done += n;
		return 0;
	}
	if (n == 0) {
		ch->eof = true;
		return 0;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		return errno;
	return wait_items(ch, deadline);
}

/* Reads more bytes into ibuf for a get, waiting when there are none yet.
 * 0 when the get goes on, EPIPE at end of stream (the other side closed
 * with not enough items), else the errno that ends it. */
static int fill_items(struct channel *ch, int64_t deadline)
{
	int err;

	if (ch->eof)
		return EPIPE;
	err = get_readable(ch, deadline);
	if (err)
		return err;
	if (channel_fill(ch) >= 0)
		return 0;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		return errno;
	return wait_items(ch, deadline);
}

/* One step of a get that wants need bytes into dst, *done of them taken:
 * opens the next stream frame, takes buffered item bytes, or reads more.
 * 0 when the get goes on, else the errno that ends it. */
static int get_step(struct channel *ch, unsigned char *dst, size_t need,
		    size_t *done, int64_t deadline)
{
	int r;

	if (ch->stream_left == 0) {
		r = open_stream(ch);
		if (r < 0)
			return errno;
		return r ? 0 : fill_items(ch, deadline);
	}
	if (buffered(ch) > 0) {
		take_items(ch, dst + *done, need - *done, done);
		return 0;
	}
	if (!ch->eof)
		return read_items(ch, dst + *done, need - *done, done,
				  deadline);
	return EPIPE;
}

/* The end of a get that took done bytes into dst and stopped with err (0
 * for none). Whole items are reported. The bytes of an item cut short by a
 * timeout go back in front of the buffer for the next get; those of one
 * cut short by end of stream are dropped with it. */
static int end_get(struct channel *ch, const unsigned char *dst, size_t done,
		   size_t size, size_t *got, int err)
{
	if (err == ETIMEDOUT && done % size)
		unread(ch, dst + done - done % size, done % size);
	if (got)
		*got = done / size;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

int channel_get(struct channel *ch, void *items, size_t m, size_t size,
		size_t *got, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	size_t need, done = 0;
	int err = 0;

	if (got)
		*got = 0;
	if (!ch || size == 0 || (m && !items) || (m && size > SIZE_MAX / m)) {
		errno = EINVAL;
		return -1;
	}
	if (unusable(ch, true))
		return -1;
	need = m * size;
	while (done < need && !err)
		err = get_step(ch, items, need, &done, deadline);
	return end_get(ch, items, done, size, got, err);
}
