/*
 * persist.c - persistent processes: a process that outlives its parent,
 * listens at a Unix-domain socket address, and delivers its messages to
 * whichever peer connects, each exactly once.
 *
 * The protocol rides on the channel layer through struct channel_ops: a
 * persistent process's channel and a peer's connection each carry an ops
 * table of their own, and the core send and receive paths call it where a
 * persistent channel differs (sending through the delivery queue, taking
 * ACK frames, waiting for the next peer). Nothing in channel.c names this
 * file's functions.
 */
#include "channel_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * A persistent process (channel_start_persistent) listens at a Unix-domain
 * socket address and talks to one connected peer at a time: its channel's
 * rfd and wfd are the current connection, or -1 between peers, and
 * ch->persist holds the listening socket and the delivery queue.
 *
 * Delivery across disconnections. The DATA and ERROR frames the process
 * sends are numbered 0, 1, ... over its whole life and kept in the queue
 * until acknowledged. On each new connection the process first sends an
 * ACK frame carrying the number of the oldest frame it still holds, then
 * every held frame, then carries on. The peer (channel_connect)
 * takes that number as its count and, before channel_recv returns a
 * message, sends an ACK carrying the count of messages received so far;
 * the process drops every frame below it. So a message a user has received
 * is never sent again, and one not received goes to the next peer.
 * Acknowledgements are cumulative: a late or repeated one does no harm.
 *
 * The process reads acknowledgements without blocking whenever it sends,
 * and reads a departing peer's connection to its end (the kernel hands
 * over queued bytes before reporting the reset) before taking the next
 * peer, so every acknowledgement that peer sent is counted. A frame once
 * begun is written whole, or the peer is gone: the process never drops a
 * live peer, so a peer's acknowledgement can only fail when the process has
 * gone, and the peer then keeps the message it received.
 */

/* How long a peer waits to write one acknowledgement (the process reads
 * them whenever it sends, so only a stuck process makes this run out). */
#define PERSIST_ACK_TIMEOUT_MS 10000

/* Pending connections the listening socket holds. */
#define PERSIST_BACKLOG 64

/* A connector retries at this interval while nobody listens yet. */
#define PERSIST_RETRY_MS 10

/* One frame held until acknowledged. */
struct persist_frame {
	unsigned char *bytes;	/* the encoded frame, header included */
	size_t len;		/* its size in bytes */
};

/* A persistent process's side of its channel. */
struct persist {
	int listen_fd;		/* the listening socket */
	struct channel *lch;	/* a registered channel holding listen_fd,
				   so that processes the function forks
				   close it like any sibling's descriptor */
	char *path;		/* its address, removed at the end */
	dev_t dev;		/* the socket file bound, so that only that */
	ino_t ino;		/* file is removed, never a later one */
	struct persist_frame *q; /* frames not yet acknowledged, oldest first */
	size_t qhead;		/* index of the oldest held frame */
	size_t qlen;		/* index after the newest held frame */
	size_t qcap;		/* entries allocated in q */
	size_t qsent;		/* frames below this index were written to the
				   current peer */
	uint64_t base;		/* the number of the frame at qhead */
};

static int make_unix_addr(struct sockaddr_un *sa, const char *address)
{
	size_t n;

	if (!address || !*address) {
		errno = EINVAL;
		return -1;
	}
	n = strlen(address);
	/* sun_path holds the terminating NUL too. A truncated path would
	 * name another file: refuse it. */
	if (n >= sizeof(sa->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, address, n + 1);
	return 0;
}

/* Drops every held frame below number n. */
static void persist_ack(struct persist *p, uint64_t n)
{
	while (p->qhead < p->qlen && p->base < n) {
		free(p->q[p->qhead].bytes);
		p->q[p->qhead].bytes = NULL;
		p->qhead++;
		p->base++;
	}
	if (p->qsent < p->qhead)
		p->qsent = p->qhead;
	if (p->qhead == p->qlen)
		p->qhead = p->qlen = p->qsent = 0;
}

/* Handles the ACK frame at the head (described by h) and consumes it: in
 * the process an acknowledgement, in a peer the number of the first frame
 * that follows. */
static int persist_control(struct channel *ch, const struct frame_header *h)
{
	uint64_t n = 0;

	if (h->size - FRAME_HEADER_SIZE >= sizeof(n)) {
		if (ch->big)
			memcpy(&n, ch->big, sizeof(n));
		else
			memcpy(&n, ch->ibuf + ch->ipos + FRAME_HEADER_SIZE,
			       sizeof(n));
	}
	channel_drop_frame(ch, h);
	if (ch->persist)
		persist_ack(ch->persist, n);
	else
		ch->acked = n;
	return 0;
}

/* In the process: takes every whole ACK frame out of the input buffer,
 * wherever it stands, so acknowledgements queued behind messages the
 * function has not received yet still count. Returns the offset from ipos
 * where the whole frames end. */
static size_t persist_absorb(struct channel *ch)
{
	struct frame_header h;
	size_t pos = ch->ipos, rest;
	uint64_t n;

	/* The walk stops at the first frame that is incomplete or malformed
	 * (a broken channel's bad frame included); the acknowledgements
	 * before it still count, even when a read error came after them. */
	if (ch->stream_left || !ch->ibuf)
		return 0;
	while (channel_whole_at(ch, pos, &h)) {
		if (h.kind != FRAME_ACK) {
			pos += h.size;
			continue;
		}
		n = 0;
		if (h.size - FRAME_HEADER_SIZE >= sizeof(n))
			memcpy(&n, ch->ibuf + pos + FRAME_HEADER_SIZE,
			       sizeof(n));
		persist_ack(ch->persist, n);
		rest = ch->ilen - pos - h.size;
		memmove(ch->ibuf + pos, ch->ibuf + pos + h.size, rest);
		ch->ilen -= h.size;
	}
	if (ch->ipos == ch->ilen) {
		ch->ipos = ch->ilen = 0;
		return 0;
	}
	return pos - ch->ipos;
}

/* In the process: closes the current connection. Whole messages the peer
 * sent stay buffered for the function; a partial one is dropped. */
static void persist_drop_peer(struct channel *ch)
{
	size_t whole;

	whole = persist_absorb(ch);
	if (ch->stream_left) {
		ch->ipos = ch->ilen = 0;
		ch->stream_left = 0;
	} else {
		/* Cuts a partial or malformed frame off the end. */
		ch->ilen = ch->ipos + whole;
	}
	if (ch->big && ch->big_have < ch->big_len) {
		free(ch->big);
		ch->big = NULL;
	}
	sys_close(&ch->rfd);
	ch->wfd = -1;
	ch->eof = false;
	ch->broken = false;
	ch->broken_ahead = 0;
	ch->send_errno = 0;
	ch->drained = false;
	ch->persist->qsent = ch->persist->qhead;
}

/* In the process: reads whatever the peer has sent, without waiting, and
 * takes in its acknowledgements. A peer that has gone is dropped once its
 * connection has been read to the end. */
static void persist_poll_acks(struct channel *ch)
{
	ssize_t n;

	while (ch->rfd >= 0) {
		if (ch->big && ch->big_have == ch->big_len) {
			/* A whole large message waits for the function: its
			 * receive will read on. */
			break;
		}
		n = channel_fill(ch);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			persist_absorb(ch);
			break;
		}
		/* End of stream, or a reset after the last bytes. */
		persist_drop_peer(ch);
	}
}

/* Writes one whole buffer to the current peer; -1 when the peer has gone
 * (it is then dropped). */
static int persist_write(struct channel *ch, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	size_t done;

	if (channel_write_all(ch, &iov, 1, -1, &done) == 0)
		return 0;
	persist_poll_acks(ch);
	if (ch->rfd >= 0)
		persist_drop_peer(ch);
	errno = EPIPE;
	return -1;
}

/* In the process: writes every held frame the current peer has not been
 * given. 0, or -1 when the peer went away (dropped). */
static int persist_flush_queue(struct channel *ch)
{
	struct persist *p = ch->persist;

	while (ch->rfd >= 0 && p->qsent < p->qlen) {
		struct persist_frame *f = &p->q[p->qsent];

		if (persist_write(ch, f->bytes, f->len) < 0)
			return -1;
		p->qsent++;
	}
	return ch->rfd >= 0 ? 0 : -1;
}

/* In the process: waits until deadline for a peer when none is connected,
 * and gives it the number of the oldest held frame and every held frame.
 * 0, or -1 with ETIMEDOUT or the errno of poll or accept. */
static int persist_peer(struct channel *ch, int64_t deadline)
{
	struct persist *p = ch->persist;
	unsigned char sync[FRAME_HEADER_SIZE + sizeof(uint64_t)];
	int fd;

	while (ch->rfd < 0) {
		if (sys_await(p->listen_fd, POLLIN, deadline) < 0)
			return -1;
		fd = accept(p->listen_fd, NULL, NULL);
		if (fd < 0) {
			/* The connector may have gone between poll and
			 * accept. */
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				continue;
			return -1;
		}
		if (sys_set_flags(fd) < 0) {
			sys_close(&fd);
			continue;
		}
		ch->rfd = ch->wfd = fd;
		ch->eof = false;
		ch->drained = false;
		p->qsent = p->qhead;
		frame_encode(sync, FRAME_ACK, sizeof(uint64_t));
		memcpy(sync + FRAME_HEADER_SIZE, &p->base, sizeof(uint64_t));
		if (persist_write(ch, sync, sizeof(sync)) < 0)
			continue;
		persist_flush_queue(ch);
	}
	return 0;
}

static int persist_send_frame(struct channel *ch, uint32_t kind,
			      const void *a, size_t alen, const void *b,
			      size_t blen, int timeout_ms)
{
	struct persist *p = ch->persist;
	struct persist_frame f;

	if (kind != FRAME_DATA && kind != FRAME_ERROR) {
		/* Stream items have no message boundary to acknowledge. */
		errno = ENOTSUP;
		return -1;
	}
	if (alen > ch->max || blen > ch->max - alen) {
		errno = EMSGSIZE;
		return -1;
	}
	persist_poll_acks(ch);
	if (persist_peer(ch, clock_deadline(timeout_ms)) < 0)
		return -1;
	if (p->qlen == p->qcap) {
		size_t ncap = p->qcap ? p->qcap * 2 : 64;
		struct persist_frame *nq;

		if (p->qhead > 0) {
			/* Slide the held frames to the front first. */
			memmove(p->q, p->q + p->qhead,
				(p->qlen - p->qhead) * sizeof(*p->q));
			p->qlen -= p->qhead;
			p->qsent -= p->qhead;
			p->qhead = 0;
		} else {
			nq = realloc(p->q, ncap * sizeof(*nq));
			if (!nq)
				return -1;
			p->q = nq;
			p->qcap = ncap;
		}
	}
	f.len = FRAME_HEADER_SIZE + alen + blen;
	f.bytes = malloc(f.len);
	if (!f.bytes)
		return -1;
	frame_encode(f.bytes, kind, (uint64_t)alen + blen);
	if (alen)
		memcpy(f.bytes + FRAME_HEADER_SIZE, a, alen);
	if (blen)
		memcpy(f.bytes + FRAME_HEADER_SIZE + alen, b, blen);
	p->q[p->qlen++] = f;
	/* From here the message is the process's to deliver: if this peer
	 * goes, the next one (or the wait at the end) gets it. */
	persist_flush_queue(ch);
	return 0;
}

/* In a peer: acknowledges one more message before it is handed over.
 * A failure means the process has gone: the message is kept all the
 * same, as nobody can send it again. */
static void persist_ack_received(struct channel *ch)
{
	uint64_t n = ch->acked + 1;

	ch->acked = n;
	channel_send_frame(ch, FRAME_ACK, &n, sizeof(n), NULL, 0,
			   PERSIST_ACK_TIMEOUT_MS);
}

/* In the process: waits until every frame is acknowledged, then removes
 * the socket file and ends. */
static void persist_finish(struct channel *ch, int status)
{
	struct persist *p = ch->persist;
	struct stat st;

	fflush(NULL);
	for (;;) {
		persist_poll_acks(ch);
		if (p->qhead == p->qlen)
			break;
		if (ch->rfd < 0) {
			if (persist_peer(ch, -1) < 0)
				break;
			continue;
		}
		if (p->qsent < p->qlen) {
			persist_flush_queue(ch);
			continue;
		}
		/* Messages the peer sends now have no reader: drop them, so
		 * a chatty peer cannot fill memory, nor a whole large one
		 * hide the acknowledgements behind it. */
		if (ch->big && ch->big_have == ch->big_len) {
			free(ch->big);
			ch->big = NULL;
			continue;
		}
		ch->ipos += persist_absorb(ch);
		if (ch->ipos == ch->ilen)
			ch->ipos = ch->ilen = 0;
		if (sys_wait_fd(ch->rfd, POLLIN, -1) < 0 && errno != EINTR)
			break;
	}
	if (ch->rfd >= 0)
		sys_close(&ch->rfd);
	ch->wfd = -1;
	if (lstat(p->path, &st) == 0 && st.st_dev == p->dev &&
	    st.st_ino == p->ino)
		unlink(p->path);
	p->lch->rfd = p->lch->wfd = -1;
	sys_close(&p->listen_fd);
	_exit(status);
}


/* The listening process's channel: sends go through the delivery queue,
 * and a receive between peers waits for the next one. */
static const struct channel_ops persist_process_ops = {
	.send_frame = persist_send_frame,
	.take_ack = persist_control,
	.await_peer = persist_peer,
	.drop_peer = persist_drop_peer,
	.finish = persist_finish,
};

/* A peer's connection: each message received is acknowledged. */
static const struct channel_ops persist_peer_ops = {
	.take_ack = persist_control,
	.received = persist_ack_received,
};

/* Is someone listening at sa? 1 yes (or the path is no socket: not ours to
 * replace), 0 no: the stale file has been removed, -1 error. */
static int persist_probe(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r, err;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode))
		return 1;
	fd = sys_unix_socket();
	if (fd < 0)
		return -1;
	/* Non-blocking, so a listener with a full backlog answers EAGAIN
	 * (Linux) at once instead of making us wait: it is alive. */
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	err = errno;
	sys_close(&fd);
	if (r == 0 || err == EAGAIN || err == EINPROGRESS || err == EINTR)
		return 1;
	if (err == ENOENT)
		return 0;
	if (err != ECONNREFUSED) {
		errno = err;
		return -1;
	}
	/* Nobody listens: its owner is gone. */
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* Binds and listens at address, the file made 0600. Returns the socket. */
static int persist_listen(struct persist *p, const char *address)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int fd, r, tries, saved;

	if (make_unix_addr(&sa, address) < 0)
		return -1;
	fd = sys_unix_socket();
	if (fd < 0)
		return -1;
	/* Only the owner may ever connect: the file is born without group
	 * and other permissions, and narrowed to 0600 before listen. */
	old = umask(077);
	for (tries = 0;; tries++) {
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
		if (r == 0 || errno != EADDRINUSE || tries == 3)
			break;
		r = persist_probe(&sa);
		if (r != 0) {
			if (r > 0)
				errno = EADDRINUSE;
			r = -1;
			break;
		}
	}
	saved = errno;
	umask(old);
	if (r < 0)
		goto fail;
	if (chmod(address, 0600) < 0 || lstat(address, &st) < 0) {
		saved = errno;
		unlink(address);
		goto fail;
	}
	p->dev = st.st_dev;
	p->ino = st.st_ino;
	if (listen(fd, PERSIST_BACKLOG) < 0) {
		saved = errno;
		unlink(address);
		goto fail;
	}
	return fd;

fail:
	sys_close(&fd);
	errno = saved;
	return -1;
}

/* What the background process tells its starter: 0 and its pid once it
 * listens, or the errno that stopped it. */
struct persist_report {
	int err;		/* 0, or why it could not start */
	pid_t pid;		/* the background process */
};

static void persist_tell(int fd, int err)
{
	struct persist_report rep = { .err = err, .pid = getpid() };
	ssize_t n;

	/* Fewer than PIPE_BUF bytes into an empty pipe: one write, whole,
	 * and the starter is still reading (it waits for this). */
	do
		n = write(fd, &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
}

/* In the background process: listen, leave the caller's streams, tell the
 * starter. Returns the process's channel; on failure the starter is told
 * why and the process ends. */
static struct channel *persist_open(int report_fd, const char *address)
{
	struct channel *ch;
	struct persist *p;
	int null_fd, fd;

	ch = channel_alloc(-1, -1, 0);
	p = calloc(1, sizeof(*p));
	if (!ch || !p) {
		persist_tell(report_fd, ENOMEM);
		_exit(1);
	}
	ch->is_socket = true;
	ch->sigpipe_known = 1;
	p->listen_fd = -1;
	/* Only this channel is the process's: siblings' descriptors go, so
	 * their parents see end of stream when they should. */
	channel_close_others(ch, (const int[2]){ -1, -1 });
	p->path = strdup(address);
	if (!p->path) {
		persist_tell(report_fd, ENOMEM);
		_exit(1);
	}
	p->listen_fd = persist_listen(p, address);
	if (p->listen_fd < 0) {
		persist_tell(report_fd, errno);
		_exit(1);
	}
	p->lch = channel_alloc(p->listen_fd, p->listen_fd, -1);
	if (!p->lch) {
		unlink(address);
		persist_tell(report_fd, ENOMEM);
		_exit(1);
	}
	ch->persist = p;
	ch->ops = &persist_process_ops;
	/* Leave the caller's terminal and streams: a pipeline reading the
	 * caller's output must see its end when the caller ends. */
	null_fd = open("/dev/null", O_RDWR);
	if (null_fd >= 0) {
		for (fd = 0; fd <= 2; fd++)
			if (null_fd != fd)
				dup2(null_fd, fd);
		if (null_fd > 2)
			close(null_fd);
	}
	persist_tell(report_fd, 0);
	close(report_fd);
	return ch;
}

/* Starts the background process listening at address. With fn it runs
 * fn(ch, arg, len, ctx), delivers and ends; without, it returns 0 with its
 * channel in *child (channel_create_persistent). Returns its pid to the
 * caller, or -1 with errno. */
static pid_t persist_spawn(const char *address, channel_fn *fn,
			   const void *arg, size_t len, void *ctx,
			   struct channel **child)
{
	struct sockaddr_un sa;
	struct persist_report rep;
	struct channel *ch;
	size_t got = 0;
	int rfds[2], st, saved, err = 0;
	pid_t mid, r;
	ssize_t n;

	/* The cheap checks before anything is forked. */
	if (make_unix_addr(&sa, address) < 0)
		return -1;
	if (sys_pipe(rfds) < 0)
		return -1;
	fflush(NULL);
	/* sys_fork, not channel_fork: the process is meant to outlive its
	 * caller, so it asks for no parent-death signal. */
	mid = channel_fork_process();
	if (mid < 0) {
		saved = errno;
		sys_close(&rfds[0]);
		sys_close(&rfds[1]);
		errno = saved;
		return -1;
	}
	if (mid == 0) {
		/* A go-between: a new session, then a grandchild that is no
		 * session leader (so it can never take a terminal again) and
		 * that init adopts once the go-between ends, so the caller
		 * has nothing to reap. */
		close(rfds[0]);
		setsid();
		r = sys_fork();
		if (r < 0) {
			persist_tell(rfds[1], errno);
			_exit(1);
		}
		if (r > 0)
			_exit(0);
		ch = persist_open(rfds[1], address);
		if (!fn) {
			*child = ch;
			return 0;
		}
		fn(ch, arg, len, ctx);
		persist_finish(ch, 0);
	}
	sys_close(&rfds[1]);
	/* Wait for "listening" or the reason it failed; end of stream
	 * without either means the process died first. */
	while (got < sizeof(rep)) {
		n = sys_read(rfds[0], (char *)&rep + got, sizeof(rep) - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			/* Both processes ended without a word. */
			err = ECHILD;
			break;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			err = errno;
			break;
		}
		if (sys_wait_fd(rfds[0], POLLIN, -1) < 0) {
			err = errno;
			break;
		}
	}
	sys_close(&rfds[0]);
	do
		r = waitpid(mid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (got < sizeof(rep)) {
		errno = err;
		return -1;
	}
	if (rep.err) {
		errno = rep.err;
		return -1;
	}
	return rep.pid;
}

pid_t channel_start_persistent(const char *address, channel_fn *fn,
			       const void *arg, size_t len, void *ctx)
{
	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	return persist_spawn(address, fn, arg, len, ctx, NULL);
}

pid_t channel_create_persistent(const char *address, struct channel **child)
{
	if (!child) {
		errno = EINVAL;
		return -1;
	}
	*child = NULL;
	return persist_spawn(address, NULL, NULL, 0, NULL, child);
}

struct channel *channel_connect(const char *address, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	struct sockaddr_un sa;
	struct channel *ch;
	int fd, r, err;

	if (make_unix_addr(&sa, address) < 0)
		return NULL;
	for (;;) {
		fd = sys_unix_socket();
		if (fd < 0)
			return NULL;
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		err = errno;
		if (r == 0)
			break;
		if (err == EINPROGRESS) {
			socklen_t sl = sizeof(err);

			/* Not seen on Unix-domain sockets, but allowed. */
			if (sys_wait_fd(fd, POLLOUT, deadline) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) ==
			    0 && err == 0)
				break;
			if (err == EINPROGRESS)
				err = ETIMEDOUT;
		}
		sys_close(&fd);
		if (err != EAGAIN && err != ECONNREFUSED && err != ENOENT &&
		    err != EINTR) {
			errno = err;
			return NULL;
		}
		if (clock_left(deadline) == 0) {
			errno = err == EAGAIN || err == EINTR ? ETIMEDOUT
							      : err;
			return NULL;
		}
		{
			struct timespec ts = { 0, PERSIST_RETRY_MS * 1000000L };
			int left = clock_left(deadline);

			if (left >= 0 && left < PERSIST_RETRY_MS)
				ts.tv_nsec = left * 1000000L;
			nanosleep(&ts, NULL);
		}
	}
	ch = channel_from_socket(fd);
	if (!ch) {
		err = errno;
		sys_close(&fd);
		errno = err;
		return NULL;
	}
	ch->ops = &persist_peer_ops;
	return ch;
}

