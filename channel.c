/*
 * channel.c - one two-way link to one process.
 *
 * Everything that touches a descriptor lives here: making the pipes or the
 * socket pair, forking, framing, the read and write loops, closing and
 * reaping. Raw read, write, close and waitpid are called nowhere else.
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
 * Every open channel is on a registry list, so that a freshly forked child
 * can close the descriptors of all channels but its own: a stray copy of a
 * sibling's write end would keep that sibling's parent from ever seeing end
 * of stream.
 */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif
#ifdef __FreeBSD__
#include <sys/procctl.h>
#endif

#ifdef __linux__
/* Linux has made descriptors with their flags in one call for long; POSIX
 * added these only in 2024, so _POSIX_C_SOURCE=200809L does not declare
 * them. */
int pipe2(int fds[2], int flags);
#define HAVE_PIPE2 1
#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 02000000
#endif
#ifndef SOCK_NONBLOCK
#define SOCK_NONBLOCK 04000
#endif
#define HAVE_SOCK_FLAGS 1
/* Closes every descriptor from first to last in one call (glibc 2.34,
 * Linux 5.9); on older systems it fails and descriptors are closed one by
 * one. */
int close_range(unsigned int first, unsigned int last, int flags);
#define HAVE_CLOSE_RANGE 1
#endif

#if defined(__linux__) && !defined(F_SETPIPE_SZ)
#define F_SETPIPE_SZ 1031
#endif

/* Frames above this size enlarge a pipe to PIPE_BIG, where the system
 * allows it: fewer, longer copies for large messages. */
#define PIPE_BIG_FRAME (64 * 1024)
#define PIPE_BIG (1024 * 1024)

/* While corked, frames up to this size are held back in obuf. */
#define OBUF_FRAME_MAX (64 * 1024)

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* ibuf starts at this size and grows up to IBUF_MAX for frames that fit;
 * larger frames go to their own allocation. Small, because most channels
 * of short tasks carry one small result: malloc serves it from its
 * per-thread cache, which touches fewer pages (each one a copy-on-write
 * fault after every fork) than a fresh 16 KiB block. A larger frame costs
 * one more read the first time, then ibuf has grown to it. */
#define IBUF_INITIAL 1000
#define IBUF_MAX (256 * 1024)

struct exchange_hooks exchange_hooks;

/* The registry of open channels (see the opening comment). */
static struct channel *registry;

/* The fork generation: 0 in the first process, one more in each child
 * forked by channel_fork. Every channel records the generation that made
 * it; the copies a child inherits of its parent's other channels carry an
 * older one, and are inert there: their descriptor numbers are closed in
 * the child and may name files it opened since, so nothing but freeing
 * their memory is done with them. Nothing of them is written at fork. */
static unsigned fork_gen;

static int write_frames(struct channel *ch, const struct iovec *frame,
			int n, int timeout_ms);
static int flush_out(struct channel *ch, int timeout_ms);

/* Persistent channels: defined in the section at the end of this file,
 * reached from the send and receive paths through ch->persist (in the
 * listening process) and ch->acking (in a peer). */
static int persist_send_frame(struct channel *ch, uint32_t kind,
			      const void *a, size_t alen, const void *b,
			      size_t blen, int timeout_ms);
static int persist_control(struct channel *ch, const struct frame_header *h);
static int persist_peer(struct channel *ch, int64_t deadline);
static void persist_drop_peer(struct channel *ch);
static void persist_ack_received(struct channel *ch);
static void persist_finish(struct channel *ch, int status);

/* ------------------------------------------------------------------------ */
/* Waiting on one descriptor                                                */
/* ------------------------------------------------------------------------ */

/* Waits for events on fd until deadline, recomputing the time left after
 * each EINTR. Returns 1 when an event came, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	for (;;) {
		r = poll(&p, 1, clock_left(deadline));
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -1;
	}
}

/* ------------------------------------------------------------------------ */
/* System calls, through the test hooks                                     */
/* ------------------------------------------------------------------------ */

static ssize_t sys_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = exchange_hooks.read ? exchange_hooks.read(fd, buf, len)
					: read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n;
}

/* Writes what the kernel takes of the iovecs in one call. Sockets use
 * sendmsg with MSG_NOSIGNAL, so they never raise SIGPIPE. A hooked write
 * sees one buffer at a time. */
static ssize_t sys_writev(struct channel *ch, const struct iovec *iov,
			  int iovcnt)
{
	ssize_t n;

	do {
		if (exchange_hooks.write) {
			n = exchange_hooks.write(ch->wfd, iov[0].iov_base,
						 iov[0].iov_len);
		} else if (ch->is_socket) {
			struct msghdr mh = {
				.msg_iov = (struct iovec *)iov,
				.msg_iovlen = iovcnt,
			};
			n = sendmsg(ch->wfd, &mh, MSG_NOSIGNAL);
		} else {
			n = writev(ch->wfd, iov, iovcnt);
		}
	} while (n < 0 && errno == EINTR);
	return n;
}

static pid_t sys_fork(void)
{
	return exchange_hooks.fork ? exchange_hooks.fork() : fork();
}

static void close_fd(int *fd)
{
	/* Never retried: after EINTR the descriptor may already be gone and
	 * its number reused by another thread. */
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Makes a pipe whose ends are close-on-exec and non-blocking from birth
 * where the system allows it. */
static int make_pipe(int fds[2])
{
	if (exchange_hooks.pipe) {
		if (exchange_hooks.pipe(fds) < 0)
			return -1;
	} else {
#ifdef HAVE_PIPE2
		return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
#else
		if (pipe(fds) < 0)
			return -1;
#endif
	}
	if (set_flags(fds[0]) < 0 || set_flags(fds[1]) < 0) {
		int saved = errno;

		close_fd(&fds[0]);
		close_fd(&fds[1]);
		errno = saved;
		return -1;
	}
	return 0;
}

static int make_socketpair(int fds[2])
{
	if (exchange_hooks.socketpair) {
		if (exchange_hooks.socketpair(fds) < 0)
			return -1;
	} else {
#ifdef HAVE_SOCK_FLAGS
		return socketpair(AF_UNIX,
				  SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
				  0, fds);
#else
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
			return -1;
#endif
	}
	if (set_flags(fds[0]) < 0 || set_flags(fds[1]) < 0) {
		int saved = errno;

		close_fd(&fds[0]);
		close_fd(&fds[1]);
		errno = saved;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

void frame_encode(void *out, uint32_t kind, uint64_t payload_len)
{
	struct frame_header h = {
		.size = payload_len + FRAME_HEADER_SIZE,
		.kind = kind,
		.magic = FRAME_MAGIC,
	};

	memcpy(out, &h, FRAME_HEADER_SIZE);
}

int frame_decode(const void *buf, size_t len, size_t max,
		 struct frame_header *h)
{
	if (len < FRAME_HEADER_SIZE)
		return 0;
	memcpy(h, buf, FRAME_HEADER_SIZE);
	if (h->magic != FRAME_MAGIC || h->kind == 0 ||
	    h->kind > FRAME_KIND_MAX || h->size < FRAME_HEADER_SIZE) {
		errno = EPROTO;
		return -1;
	}
	if (h->size - FRAME_HEADER_SIZE > max) {
		errno = EMSGSIZE;
		return -1;
	}
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Life of a channel                                                        */
/* ------------------------------------------------------------------------ */

/* A new channel on the given descriptors, on no registry. */
static struct channel *channel_new(int rfd, int wfd, pid_t pid)
{
	struct channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->rfd = rfd;
	ch->wfd = wfd;
	ch->pid = pid;
	ch->max = CHANNEL_MAX_DEFAULT;
	ch->task = CHANNEL_NO_TASK;
	ch->gen = fork_gen;
	return ch;
}

/* A new channel, registered. */
static struct channel *channel_alloc(int rfd, int wfd, pid_t pid)
{
	struct channel *ch = channel_new(rfd, wfd, pid);

	if (!ch)
		return NULL;
	ch->next = registry;
	if (registry)
		registry->prev = ch;
	registry = ch;
	return ch;
}

static void channel_unregister(struct channel *ch)
{
	if (ch->prev)
		ch->prev->next = ch->next;
	else if (registry == ch)
		registry = ch->next;
	if (ch->next)
		ch->next->prev = ch->prev;
	ch->prev = ch->next = NULL;
}

static void channel_release(struct channel *ch)
{
	/* An inherited copy is on no registry of this process: its links
	 * point into the parent's list, of which only copies exist here. */
	if (!channel_inherited(ch))
		channel_unregister(ch);
	free(ch->local);
	free(ch->ibuf);
	free(ch->big);
	free(ch->obuf);
	free(ch->peek_data);
	free(ch);
}

/* Closes the descriptors first to last. */
static void close_run(int first, int last)
{
	int fd;

#ifdef HAVE_CLOSE_RANGE
	if (close_range((unsigned int)first, (unsigned int)last, 0) == 0)
		return;
#endif
	for (fd = first; fd <= last; fd++)
		close(fd);
}

/* Closes the n descriptors of fds (sorted in place) in runs of adjacent
 * numbers: one close_range per run. */
static void close_sorted(int *fds, int n)
{
	int i, j, fd, start;

	for (i = 1; i < n; i++) {
		fd = fds[i];
		for (j = i; j > 0 && fds[j - 1] > fd; j--)
			fds[j] = fds[j - 1];
		fds[j] = fd;
	}
	for (i = 0; i < n; i = j) {
		start = fds[i];
		for (j = i + 1; j < n && fds[j] <= fds[j - 1] + 1; j++)
			;
		close_run(start, fds[j - 1]);
	}
}

/* Descriptors below this are gathered in a bitmap and closed in runs when
 * there are too many for close_sorted; the rare ones above are closed one
 * by one. */
#define RUN_FDS 32768

/* The many-channels case of close_others, in a frame of its own so that
 * the common case does not write a 4 KiB bitmap onto fresh stack pages. */
static NOINLINE void close_many(const struct channel *keep,
				const int extra[2])
{
	unsigned char bits[RUN_FDS / 8];
	struct channel *c;
	int top = -1, fd, start, k;

	for (c = registry; c; c = c->next)
		for (k = 0; c != keep && k < 2; k++) {
			fd = k ? c->wfd : c->rfd;
			if (fd > top && fd < RUN_FDS)
				top = fd;
		}
	for (k = 0; k < 2; k++)
		if (extra[k] > top && extra[k] < RUN_FDS)
			top = extra[k];
	if (top >= 0)
		memset(bits, 0, (size_t)top / 8 + 1);
	for (k = 0; k < 2; k++) {
		fd = extra[k];
		if (fd >= RUN_FDS)
			close(fd);
		else if (fd >= 0 && fd <= top)
			bits[fd / 8] |= (unsigned char)(1u << (fd % 8));
	}
	for (c = registry; c; c = c->next) {
		if (c == keep)
			continue;
		for (k = 0; k < 2; k++) {
			fd = k ? c->wfd : c->rfd;
			if (fd >= RUN_FDS)
				close(fd);
			else if (fd >= 0)
				bits[fd / 8] |= (unsigned char)(1u << (fd % 8));
		}
	}
	for (fd = 0; fd <= top; fd++) {
		if (!(bits[fd / 8] & (1u << (fd % 8))))
			continue;
		start = fd;
		while (fd + 1 <= top && (bits[(fd + 1) / 8] & (1u << ((fd + 1) % 8))))
			fd++;
		close_run(start, fd);
	}
}

/* Up to this many descriptors are sorted on the stack by close_others. */
#define FEW_FDS 64

/* In a new child: close every descriptor of every channel but keep, and
 * forget those channels, so that only keep remains registered. extra: the
 * parent's ends of keep's own link (-1 for none), closed in the same runs.
 *
 * Descriptors are handed out lowest first, so the channels' ones mostly
 * sit next to each other: a handful of close_range calls instead of one
 * close per descriptor. Nothing is allocated (the parent may have threads,
 * and malloc after fork is best avoided), and nothing of the other
 * channels is written: every page the child writes is a copy-on-write
 * fault, the largest cost of a short task. Their memory is the child's copy
 * of the parent's, unreachable once the registry holds keep alone. */
static void close_others(struct channel *keep, const int extra[2])
{
	int fds[FEW_FDS], n = 0, k, fd;
	struct channel *c;

	for (k = 0; k < 2; k++)
		if (extra[k] >= 0)
			fds[n++] = extra[k];
	for (c = registry; c; c = c->next) {
		if (c == keep)
			continue;
		for (k = 0; k < 2; k++) {
			fd = k ? c->wfd : c->rfd;
			if (fd < 0 || (k && fd == c->rfd))
				continue;
			if (n == FEW_FDS) {
				close_many(keep, extra);
				goto done;
			}
			fds[n++] = fd;
		}
	}
	close_sorted(fds, n);
done:
	registry = keep;
	keep->prev = keep->next = NULL;
}

/* In a child just forked: asks the system to SIGKILL it when its parent
 * dies, so that a child that never touches its channel (it computes, or
 * sleeps) does not outlive a parent killed without a chance to close
 * anything. On Linux the signal comes when the thread that forked ends,
 * not only the process: a child forked from a thread that then exits is
 * killed too (exchange.h says so). FreeBSD sends it when the parent
 * process ends. Other systems have no such request: there a child ends
 * when it next touches its channel. A parent that died before the request
 * was made sends no signal, so the child then compares its parent with
 * the pid saved before fork, and ends at once if it has been adopted. */
static bool ask_parent_death_signal(void)
{
#if defined(__linux__)
	return prctl(PR_SET_PDEATHSIG, (unsigned long)SIGKILL, 0UL, 0UL,
		     0UL) == 0;
#elif defined(__FreeBSD__)
	int sig = SIGKILL;

	return procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig) == 0;
#else
	return false;
#endif
}

static void die_with_parent(pid_t parent)
{
	/* As the signal would have ended it. */
	if (ask_parent_death_signal() && getppid() != parent)
		raise(SIGKILL);
}

pid_t channel_fork(struct channel **out, int flags)
{
	int down[2] = { -1, -1 }, up[2] = { -1, -1 };
	int link = flags & CHANNEL_LINK_SOCKET;
	struct channel *ch;
	pid_t pid, parent;
	int saved;

	*out = NULL;
	if (link == CHANNEL_LINK_SOCKET) {
		if (make_socketpair(down) < 0)
			return -1;
	} else if (make_pipe(down) < 0) {
		return -1;
	} else if (make_pipe(up) < 0) {
		goto fail_fds;
	}
	/* The parent's end is allocated before fork, so that a failure leaves
	 * no child behind. */
	if (link == CHANNEL_LINK_SOCKET)
		ch = channel_alloc(down[0], down[0], -1);
	else
		ch = channel_alloc(up[0], down[1], -1);
	if (!ch)
		goto fail_fds;
	ch->is_socket = link == CHANNEL_LINK_SOCKET;

	/* Empty the stdio buffers now, or the child would write its copy of
	 * them a second time. */
	fflush(NULL);
	parent = getpid();
	pid = sys_fork();
	if (pid < 0) {
		saved = errno;
		channel_release(ch);
		errno = saved;
		goto fail_fds;
	}
	if (pid == 0) {
		int parent_ends[2];

		/* First of all: from here on the parent may die at any
		 * moment, and the child must not be left running. */
		die_with_parent(parent);
		/* With CHANNEL_OWN_GROUP the child leads a process group of
		 * its own, so that a kill (a time limit) stops what it starts
		 * as well. Only the child sets it: channel_kill falls back to
		 * the pid while the group does not exist yet, which saves the
		 * parent a call. */
		if (flags & CHANNEL_OWN_GROUP)
			setpgid(0, 0);
		/* A new generation: the copies of the parent's other channels
		 * become inert here (see fork_gen). */
		fork_gen++;
		ch->gen = fork_gen;
		/* The child: its end becomes the channel's descriptors. The
		 * parent's ends close with the other channels' descriptors,
		 * usually in the same close_range run. */
		if (link == CHANNEL_LINK_SOCKET) {
			parent_ends[0] = down[0];
			parent_ends[1] = -1;
			ch->rfd = ch->wfd = down[1];
		} else {
			parent_ends[0] = up[0];
			parent_ends[1] = down[1];
			ch->rfd = down[0];
			ch->wfd = up[1];
		}
		ch->pid = 0;
		close_others(ch, parent_ends);
		*out = ch;
		return 0;
	}
	if (link == CHANNEL_LINK_SOCKET) {
		close_fd(&down[1]);
	} else {
		close_fd(&down[0]);
		close_fd(&up[1]);
	}
	ch->pid = pid;
	ch->group = (flags & CHANNEL_OWN_GROUP) != 0;
	*out = ch;
	return pid;

fail_fds:
	saved = errno;
	close_fd(&down[0]);
	close_fd(&down[1]);
	close_fd(&up[0]);
	close_fd(&up[1]);
	errno = saved;
	return -1;
}

struct channel *channel_from_socket(int fd)
{
	struct channel *ch;

	if (set_flags(fd) < 0)
		return NULL;
	ch = channel_alloc(fd, fd, -1);
	if (ch)
		ch->is_socket = true;
	return ch;
}

struct channel *channel_create(void)
{
	struct channel *ch;

	if (channel_fork(&ch, CHANNEL_LINK_PIPES) < 0)
		return NULL;
	return ch;
}

struct channel *channel_start(channel_fn *fn, const void *arg, size_t len,
			      void *ctx)
{
	struct channel *ch;
	pid_t pid;

	if (!fn) {
		errno = EINVAL;
		return NULL;
	}
	pid = channel_fork(&ch, CHANNEL_LINK_PIPES);
	if (pid < 0)
		return NULL;
	if (pid == 0) {
		fn(ch, arg, len, ctx);
		channel_exit(ch, 0);
	}
	return ch;
}

int channel_inherited(const struct channel *ch)
{
	return ch->gen != fork_gen;
}

unsigned channel_generation(void)
{
	return fork_gen;
}

pid_t channel_pid(const struct channel *ch)
{
	return ch ? ch->pid : -1;
}

void channel_exit(struct channel *ch, int status)
{
	if (ch && ch->persist)
		persist_finish(ch, status);	/* delivers, then ends */
	if (ch && ch->olen)
		flush_out(ch, -1);
	fflush(NULL);
	/* _exit closes the channel's descriptors with all the others: closing
	 * them one by one first would only cost system calls. */
	_exit(status);
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

/* ------------------------------------------------------------------------ */
/* Processes                                                                */
/* ------------------------------------------------------------------------ */

/* One waitpid on our own pid, EINTR retried. Returns 1 when reaped (or
 * reaped by someone else: reaped is then -1), 0 if still running. */
static int reap(struct channel *ch, int flags)
{
	pid_t r;
	int st;

	do
		r = waitpid(ch->pid, &st, flags);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	if (r < 0) {
		if (errno != ECHILD)
			return -1;
		/* Someone else reaped it: SIGCHLD ignored, or the caller's
		 * own waitpid(-1). */
		ch->reaped = -1;
		return 1;
	}
	ch->status = st;
	ch->reaped = 1;
	return 1;
}

int channel_ended_unreaped(const struct channel *ch)
{
	siginfo_t si;
	int r;

	if (!ch || ch->pid <= 0 || ch->reaped)
		return 0;
	/* WNOWAIT leaves the zombie in place, and with it the process group
	 * it leads. */
	memset(&si, 0, sizeof(si));
	do
		r = waitid(P_PID, (id_t)ch->pid, &si,
			   WEXITED | WNOHANG | WNOWAIT);
	while (r < 0 && errno == EINTR);
	return r == 0 && si.si_pid == ch->pid;
}

int channel_reap_nohang(struct channel *ch)
{
	if (!ch || ch->pid <= 0)
		return -1;
	if (ch->reaped)
		return 1;
	return reap(ch, WNOHANG);
}

int channel_kill(struct channel *ch, int sig)
{
	if (!ch || ch->pid <= 0) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		/* The process is a sibling's, not this process's child. */
		errno = EBADF;
		return -1;
	}
	if (ch->reaped) {
		errno = ESRCH;
		return -1;
	}
	/* The process leads its own group (channel_fork), which lives at
	 * least as long as the unreaped leader, so the group's number cannot
	 * belong to anyone else yet. Before the child has made the group,
	 * it has started nothing: the pid alone is enough. */
	if (ch->group) {
		if (kill(-ch->pid, sig) == 0)
			return 0;
		if (errno != ESRCH)
			return -1;
	}
	return kill(ch->pid, sig);
}

int channel_wait(struct channel *ch, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	long pause_ns = 100000;
	int r;

	if (!ch || ch->pid <= 0) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = ECHILD;
		return -1;
	}
	for (;;) {
		if (ch->reaped) {
			if (ch->reaped < 0) {
				errno = ECHILD;
				return -1;
			}
			return 0;
		}
		r = reap(ch, timeout_ms < 0 ? 0 : WNOHANG);
		if (r < 0)
			return -1;
		if (r > 0)
			continue;
		if (clock_left(deadline) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		/* waitpid has no timeout: sleep a little, longer each time,
		 * never past the deadline. */
		{
			int64_t left = clock_left(deadline);
			struct timespec ts;

			if (pause_ns / 1000000 > left)
				pause_ns = left * 1000000;
			ts.tv_sec = pause_ns / 1000000000;
			ts.tv_nsec = pause_ns % 1000000000;
			nanosleep(&ts, NULL);
			if (pause_ns < 50000000)
				pause_ns *= 2;
		}
	}
}

void channel_describe_end(const struct channel *ch, bool timed_out, int limit,
			  int *cause, int *code, char *text, size_t size)
{
	int st;

	if (timed_out) {
		*cause = CHANNEL_TIMED_OUT;
		*code = limit;
		snprintf(text, size, "exceeded its time limit of %d ms", limit);
	} else if (channel_status(ch, &st) != 1) {
		*cause = CHANNEL_EXITED;
		*code = -1;
		snprintf(text, size, "ended without a result (status unknown)");
	} else if (WIFSIGNALED(st)) {
		*cause = CHANNEL_SIGNALED;
		*code = WTERMSIG(st);
		snprintf(text, size, "killed by signal %d", *code);
	} else {
		*cause = CHANNEL_EXITED;
		*code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		snprintf(text, size, "exited with status %d without a result",
			 *code);
	}
}

bool channel_running(const struct channel *ch)
{
	return ch->pid > 0 && !ch->reaped;
}

int channel_status(const struct channel *ch, int *status)
{
	if (!ch || ch->reaped == 0)
		return 0;
	if (ch->reaped < 0)
		return -1;
	if (status)
		*status = ch->status;
	return 1;
}

int channel_waitall(void)
{
	struct channel *c;
	int n = 0;

	for (c = registry; c; c = c->next) {
		if (c->pid <= 0 || c->reaped)
			continue;
		if (reap(c, 0) < 0)
			return -1;
		n++;
	}
	return n;
}

int channel_shutdown(struct channel *ch)
{
	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
	if (ch->is_socket) {
		if (ch->wfd >= 0 && shutdown(ch->wfd, SHUT_WR) < 0)
			return -1;
		/* Sending is over, but wfd is also the read descriptor. */
		ch->send_errno = EPIPE;
		return 0;
	}
	close_fd(&ch->wfd);
	return 0;
}

void channel_close_fds(struct channel *ch)
{
	if (channel_inherited(ch))
		return;
	if (ch->wfd != ch->rfd)
		close_fd(&ch->wfd);
	close_fd(&ch->rfd);
	ch->wfd = -1;
}

int channel_close(struct channel *ch)
{
	int rc = 0, saved = 0;

	if (!ch)
		return 0;
	if (channel_inherited(ch)) {
		/* Inert: its descriptor numbers are not its own here, and its
		 * process is not this process's child. */
		channel_release(ch);
		return 0;
	}
	channel_close_fds(ch);
	/* With its channel closed the child sees end of stream (and EPIPE on
	 * sending), so waiting for it here is waiting for it to notice. */
	if (ch->pid > 0 && !ch->reaped && reap(ch, 0) < 0) {
		rc = -1;
		saved = errno;
	}
	channel_release(ch);
	if (rc)
		errno = saved;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

/* Waits until wfd can take more, reading meanwhile whatever the other
 * side sends into the receive buffer: two processes sending each other
 * large messages at once would otherwise each wait for the other to read.
 * A blocking read end (a reuse worker's) is read too: each read follows a
 * poll that reported it readable, and a pipe read then returns what is
 * there without waiting for more. Returns 1 when writable, 0 on timeout,
 * -1 on error. */
static int wait_writable(struct channel *ch, int64_t deadline)
{
	struct pollfd p[2] = {
		{ .fd = ch->wfd, .events = POLLOUT },
		{ .fd = -1, .events = POLLIN },
	};
	bool reading = ch->rfd >= 0 && !ch->eof && !ch->broken;
	nfds_t n = 1;
	int r;

	if (reading && ch->rfd == ch->wfd)
		p[0].events |= POLLIN;
	else if (reading) {
		p[1].fd = ch->rfd;
		n = 2;
	}
	for (;;) {
		r = poll(p, n, clock_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r;
		if (reading && ((p[n - 1].revents & (POLLIN | POLLHUP)) ||
				(n == 1 && (p[0].revents & POLLIN)))) {
			/* Errors here belong to the receiving side and
			 * show on the next receive. */
			if (channel_fill(ch) < 0 && errno != EAGAIN &&
			    errno != EWOULDBLOCK && !ch->broken) {
				ch->broken = true;
				ch->broken_errno = errno;
			}
			reading = !ch->eof && !ch->broken;
			if (!reading && n == 2)
				n = 1;
			if (!reading)
				p[0].events = POLLOUT;
		}
		if (p[0].revents & (POLLOUT | POLLERR | POLLHUP))
			return 1;
	}
}

/* Writes all of iov (modified as it goes) before deadline. *written
 * counts the bytes the kernel took, on failure too: whether a frame was
 * cut depends on it. */
static int write_all(struct channel *ch, struct iovec *iov, int iovcnt,
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
		n = sys_writev(ch, iov, iovcnt);
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

int channel_send_frame(struct channel *ch, uint32_t kind, const void *a,
		       size_t alen, const void *b, size_t blen, int timeout_ms)
{
	unsigned char hdr[FRAME_HEADER_SIZE];
	struct iovec iov[3];

	if (!ch || (alen && !a) || (blen && !b)) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
	if (ch->persist)
		return persist_send_frame(ch, kind, a, alen, b, blen,
					  timeout_ms);
	if (ch->wfd < 0 || ch->send_errno) {
		errno = ch->wfd < 0 ? EPIPE : ch->send_errno;
		return -1;
	}
	if (alen > ch->max || blen > ch->max - alen) {
		errno = EMSGSIZE;
		return -1;
	}
	if (!ch->sigpipe_known)
		check_sigpipe(ch);
#ifdef F_SETPIPE_SZ
	if (!ch->is_socket && !ch->pipe_grown &&
	    alen + blen >= PIPE_BIG_FRAME) {
		/* Best effort: past the per-user pipe limit the kernel says
		 * no, and the default size still works. */
		ch->pipe_grown = true;
		fcntl(ch->wfd, F_SETPIPE_SZ, PIPE_BIG);
	}
#endif
	frame_encode(hdr, kind, (uint64_t)alen + blen);
	if (ch->cork && FRAME_HEADER_SIZE + alen + blen <= OBUF_FRAME_MAX) {
		/* Held back, to leave with whatever follows in one write. */
		size_t size = FRAME_HEADER_SIZE + alen + blen;

		if (ch->ocap - ch->olen < size) {
			size_t cap = ch->ocap ? ch->ocap : 4096;
			unsigned char *p;

			while (cap - ch->olen < size)
				cap *= 2;
			p = realloc(ch->obuf, cap);
			if (!p)
				return -1;
			ch->obuf = p;
			ch->ocap = cap;
		}
		memcpy(ch->obuf + ch->olen, hdr, FRAME_HEADER_SIZE);
		if (alen)
			memcpy(ch->obuf + ch->olen + FRAME_HEADER_SIZE, a, alen);
		if (blen)
			memcpy(ch->obuf + ch->olen + FRAME_HEADER_SIZE + alen,
			       b, blen);
		ch->olen += size;
		return 0;
	}
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)a;
	iov[1].iov_len = alen;
	iov[2].iov_base = (void *)b;
	iov[2].iov_len = blen;
	return write_frames(ch, iov, 3, timeout_ms);
}

/* Writes the frames held back by cork. */
static int flush_out(struct channel *ch, int timeout_ms)
{
	return write_frames(ch, NULL, 0, timeout_ms);
}

int channel_uncork(struct channel *ch, int timeout_ms)
{
	ch->cork = false;
	return ch->olen ? flush_out(ch, timeout_ms) : 0;
}

/* After a write that failed having taken done bytes of the olen held
 * in obuf: when done ends a held frame (0 included), drops the frames
 * that went and keeps the rest held, in order; returns false when done
 * cuts one. The frames in obuf are our own, so each one decodes. */
static bool keep_unsent(struct channel *ch, size_t done)
{
	struct frame_header h;
	size_t off = 0;
	int r;

	while (off < done) {
		r = frame_decode(ch->obuf + off, ch->olen - off, SIZE_MAX, &h);
		assert(r == 1);
		(void)r;
		off += (size_t)h.size;
	}
	if (off != done)
		return false;
	memmove(ch->obuf, ch->obuf + done, ch->olen - done);
	ch->olen -= done;
	return true;
}

/* Writes the frames held back in obuf, then the frame in the n vectors of
 * frame (none for a flush), in one write where the kernel takes it all,
 * with SIGPIPE blocked around the write when the channel needs it.
 *
 * A failed write (timeout or error) that stopped between frames leaves
 * the channel as it was for what did not go: held frames not written stay
 * held, and a new frame none of whose bytes went is simply not sent. One
 * that stopped inside a frame cannot be taken back: the stream is no
 * longer framed, so sending ends, and every later send fails with
 * ECONNABORTED. After EPIPE the reader has gone and later writes fail with
 * EPIPE anyway. */
static int write_frames(struct channel *ch, const struct iovec *frame,
			int n, int timeout_ms)
{
	struct iovec iov[4];
	sigset_t pipe_set, old;
	bool guarded = false, cut;
	size_t held = ch->olen, done;
	int rc, saved, i;

	assert(n >= 0 && n < 4);
	if (ch->wfd < 0 || ch->send_errno) {
		errno = ch->wfd < 0 ? EPIPE : ch->send_errno;
		return -1;
	}
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
	rc = write_all(ch, iov, n + 1, clock_deadline(timeout_ms), &done);
	saved = errno;
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
		cut = !keep_unsent(ch, done);
	} else {
		/* The held frames all went; the new one in part, or not. */
		cut = done > held;
		ch->olen = 0;
	}
	if (cut) {
		ch->olen = 0;
		if (saved != EPIPE)
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
	/* A connection to a persistent process carries acknowledged
	 * messages only: the process refuses stream items, and one frame of
	 * them would stop its receiving for good. Refused here, before
	 * anything is written, whatever the length. */
	if (ch->acking) {
		errno = ENOTSUP;
		return -1;
	}
	/* No items, no frame: an empty stream frame is consumed by no get
	 * (a get of no items reads nothing), so it would stay at the head
	 * and fail the next receive of a message with ENOMSG. Persistent
	 * channels refuse streams whatever their length. */
	if (n == 0 && !ch->persist)
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
	size_t have = buffered(ch), cap;
	unsigned char *p;

	if (ch->icap - ch->ilen >= need)
		return 0;
	if (ch->ipos > 0) {
		memmove(ch->ibuf, ch->ibuf + ch->ipos, have);
		ch->ipos = 0;
		ch->ilen = have;
		if (ch->icap - ch->ilen >= need)
			return 0;
	}
	cap = ch->icap ? ch->icap : IBUF_INITIAL;
	while (cap - have < need)
		cap *= 2;
	p = realloc(ch->ibuf, cap);
	if (!p)
		return -1;
	ch->ibuf = p;
	ch->icap = cap;
	return 0;
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

/* Whether a whole frame is at the head of ibuf (bytes in front of a fault
 * included). */
static bool whole_at_head(const struct channel *ch)
{
	struct frame_header h;

	if (ch->broken && ch->broken_ahead == 0)
		return false;
	return frame_decode(ch->ibuf + ch->ipos, buffered(ch), SIZE_MAX,
			    &h) == 1 && h.size <= buffered(ch);
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

/* Fills until a whole frame is at the head, end of stream, or deadline.
 * Returns 1 with *h, 0 at a clean end of stream, -1 with ETIMEDOUT,
 * ECONNRESET (end of stream mid-frame) or another errno. */
static int await_frame(struct channel *ch, struct frame_header *h,
		       int64_t deadline)
{
	ssize_t n;
	int r;

	if (channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
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
		if (ch->blocking && deadline < 0) {
			/* A blocking descriptor and no timeout: the read
			 * itself waits, and no poll is needed. */
		} else if (ch->drained || ch->blocking) {
			/* The last read emptied the kernel's buffer: a read
			 * now would most likely find nothing, so wait for
			 * data first. */
			r = wait_fd(ch->rfd, POLLIN, deadline);
			if (r < 0)
				return -1;
			if (r == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
		}
		n = channel_fill(ch);
		if (n >= 0)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		r = wait_fd(ch->rfd, POLLIN, deadline);
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

/* Takes the whole frame at the head (described by h) out of the channel.
 * *data gets a malloc'd copy of the payload with a NUL after it. */
static int take_frame(struct channel *ch, const struct frame_header *h,
		      void **data, size_t *len)
{
	size_t payload = (size_t)(h->size - FRAME_HEADER_SIZE);
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
	return 0;
}

/* Drops the whole frame at the head. */
static void drop_frame(struct channel *ch, const struct frame_header *h)
{
	if (ch->big) {
		free(ch->big);
		ch->big = NULL;
		ch->progress++;
		return;
	}
	consume(ch, h->size);
}

/* Consumes the whole frame at the head (described by h) when it is one of
 * the library's own control frames: a reuse DONE (then on_control runs) or
 * a persistent ACK. Returns true when it did; users never see them. */
static bool take_control(struct channel *ch, const struct frame_header *h)
{
	if (h->kind == FRAME_ACK && (ch->acking || ch->persist)) {
		persist_control(ch, h);
		return true;
	}
	if (h->kind != FRAME_DONE)
		return false;
	drop_frame(ch, h);
	if (ch->on_control)
		ch->on_control(ch, FRAME_DONE);
	return true;
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
	int r;

	if (!ch || !kind || !data || !len) {
		errno = EINVAL;
		return -1;
	}
	if (ch->stream_left) {
		errno = ENOMSG;
		return -1;
	}
	r = await_frame(ch, &h, clock_deadline(timeout_ms));
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

/* Turns a FAILURE frame's payload (cause, code, text) into msg fields,
 * moving the text to the front of the same allocation. */
static void decode_failure(struct channel_msg *msg)
{
	int32_t cc[2] = { CHANNEL_PROTOCOL, EPROTO };
	unsigned char *p = msg->data;

	if (msg->len >= sizeof(cc)) {
		memcpy(cc, p, sizeof(cc));
		memmove(p, p + sizeof(cc), msg->len - sizeof(cc) + 1);
		msg->len -= sizeof(cc);
	} else {
		p[0] = '\0';
		msg->len = 0;
	}
	msg->cause = cc[0];
	msg->code = cc[1];
}

/* Waits for the next user frame: DONE frames are handed to on_control on
 * the way; stream data at the head (or a get in the middle of it) is
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
		if (ch->persist && ch->rfd < 0 && head_frame(ch, h) == 0 &&
		    persist_peer(ch, deadline) < 0)
			return -1;
		r = await_frame(ch, h, deadline);
		if (ch->persist && (r == 0 || (r < 0 && errno == ECONNRESET))) {
			/* The peer left: the next one carries on. */
			persist_drop_peer(ch);
			continue;
		}
		if (r <= 0)
			return r;
		if (take_control(ch, h))
			continue;
		if (h->kind > FRAME_FAILURE) {
			errno = h->kind == FRAME_STREAM ? ENOMSG : EPROTO;
			return -1;
		}
		return 1;
	}
}

int channel_recv(struct channel *ch, struct channel_msg *msg, int timeout_ms)
{
	struct frame_header h;
	int r;

	if (!msg) {
		errno = EINVAL;
		return -1;
	}
	r = await_user_frame(ch, &h, timeout_ms);
	if (r <= 0)
		return r;
	/* A message lent by peek is either this one (in big, handed over
	 * below) or a copy that is no longer needed. */
	free(ch->peek_data);
	ch->peek_data = NULL;
	memset(msg, 0, sizeof(*msg));
	if (take_frame(ch, &h, &msg->data, &msg->len) < 0)
		return -1;
	msg->kind = (int)h.kind;
	msg->task = ch->task;
	if (h.kind == FRAME_FAILURE) {
		decode_failure(msg);
	} else {
		msg->cause = h.kind == FRAME_ERROR ? CHANNEL_SENT_ERROR
						   : CHANNEL_OK;
		ch->delivered++;
		if (ch->acking)
			persist_ack_received(ch);	/* before the user has it */
	}
	return 1;
}

int channel_peek(struct channel *ch, struct channel_msg *msg, int timeout_ms)
{
	struct frame_header h;
	size_t payload;
	int r;

	if (!msg) {
		errno = EINVAL;
		return -1;
	}
	r = await_user_frame(ch, &h, timeout_ms);
	if (r <= 0)
		return r;
	free(ch->peek_data);
	ch->peek_data = NULL;
	memset(msg, 0, sizeof(*msg));
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
	return !ch->eof || buffered(ch) > 0 || ch->big != NULL ||
	       ch->stream_left > 0 || ch->local != NULL;
}

ssize_t channel_size(const struct channel *ch)
{
	size_t n;

	if (!ch) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
	n = buffered(ch) + (ch->big ? ch->big_have : 0);
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
		free(ch);
		return NULL;
	}
	return ch;
}

/* ------------------------------------------------------------------------ */
/* Flush and preload                                                        */
/* ------------------------------------------------------------------------ */

ssize_t channel_flush(struct channel *ch, void **frames, size_t *len,
		      int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	unsigned char *out = NULL, *p;
	size_t used = 0, cap = 0, payload;
	ssize_t count = 0;
	struct frame_header h;
	int r, saved;

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
	/* An error after whole frames were taken ends the flush, which
	 * returns them, as read(2) returns what it got: what was taken
	 * cannot go back into the kernel, and a run of channel_recv would
	 * have returned them too. The error comes on the next call. */
	for (;;) {
		r = await_frame(ch, &h, deadline);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == ETIMEDOUT)
				break;
			if (count == 0)
				goto fail;
			/* A bad frame has made the channel broken behind what
			 * was taken, and a failed allocation is met again; a
			 * failed read is kept as broken, as wait_writable
			 * keeps one, or the next call would not see it. */
			if (!ch->broken && errno != ENOMEM)
				set_broken(ch, errno);
			break;
		}
		/* Control frames are the library's, as in channel_recv:
		 * consumed here, never handed over. */
		if (take_control(ch, &h))
			continue;
		if (h.kind > FRAME_FAILURE && h.kind != FRAME_STREAM) {
			/* TASK or STOP coming this way: a protocol error. */
			set_broken(ch, EPROTO);
			if (count)
				break;
			goto fail;
		}
		if (h.kind == FRAME_STREAM) {
			/* Items pending: the next call meets them again, and
			 * a get can take them. */
			if (count)
				break;
			errno = ENOMSG;
			goto fail;
		}
		/* A frame is never empty (its header is in it), so the first
		 * one always allocates; the analysers are told so. */
		if (!out || cap - used < h.size) {
			size_t ncap = cap ? cap : 4096;

			while (ncap - used < h.size)
				ncap *= 2;
			p = realloc(out, ncap);
			if (!p) {
				if (count)
					break;
				goto fail;
			}
			out = p;
			cap = ncap;
		}
		/* Copied from where it was received, and only then dropped,
		 * so a failed allocation leaves the frame in the channel. */
		payload = (size_t)(h.size - FRAME_HEADER_SIZE);
		/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
		frame_encode(out + used, h.kind, payload);
		/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
		memcpy(out + used + FRAME_HEADER_SIZE,
		       ch->big ? ch->big : ch->ibuf + ch->ipos +
		       FRAME_HEADER_SIZE, payload);
		drop_frame(ch, &h);
		used += h.size;
		count++;
	}
	*frames = out;
	*len = used;
	return count;

fail:
	saved = errno;
	free(out);
	errno = saved;
	return -1;
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
		if (h.size > len - off) {
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
	return wait_fd(ch->rfd, POLLIN, deadline);
}

int channel_get(struct channel *ch, void *items, size_t m, size_t size,
		size_t *got, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	unsigned char *dst = items;
	size_t need, done = 0, take;
	struct frame_header h;
	ssize_t n;
	int r, err = 0;

	if (got)
		*got = 0;
	if (!ch || size == 0 || (m && !items) || (m && size > SIZE_MAX / m)) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = EBADF;
		return -1;
	}
	need = m * size;
	while (done < need) {
		if (ch->stream_left == 0) {
			/* The next frame must be a stream frame; only its
			 * header needs to be here. */
			r = head_frame(ch, &h);
			if (r < 0) {
				err = errno;
				break;
			}
			if (buffered(ch) >= FRAME_HEADER_SIZE && !ch->big &&
			    frame_decode(ch->ibuf + ch->ipos, buffered(ch),
					 ch->max, &h) == 1) {
				if (h.kind != FRAME_STREAM) {
					err = ENOMSG;
					break;
				}
				consume(ch, FRAME_HEADER_SIZE);
				ch->stream_left = h.size - FRAME_HEADER_SIZE;
				/* A stream taken is a message received. */
				ch->delivered++;
				continue;
			}
			if (ch->big) {
				err = ENOMSG;
				break;
			}
		} else if (buffered(ch) > 0) {
			take = buffered(ch);
			if (take > ch->stream_left)
				take = (size_t)ch->stream_left;
			if (take > need - done)
				take = need - done;
			memcpy(dst + done, ch->ibuf + ch->ipos, take);
			consume(ch, take);
			ch->stream_left -= take;
			done += take;
			continue;
		} else if (!ch->eof) {
			/* Nothing buffered in the middle of a stream frame:
			 * read straight into the caller's array. */
			take = need - done;
			if (take > ch->stream_left)
				take = (size_t)ch->stream_left;
			r = await_readable(ch, deadline);
			if (r <= 0) {
				err = r < 0 ? errno : ETIMEDOUT;
				break;
			}
			n = sys_read(ch->rfd, dst + done, take);
			if (n > 0) {
				ch->stream_left -= n;
				ch->progress++;
				done += n;
				continue;
			}
			if (n == 0) {
				ch->eof = true;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				err = errno;
				break;
			}
			goto wait;
		}
		if (ch->eof) {
			err = EPIPE;
			break;
		}
		r = await_readable(ch, deadline);
		if (r <= 0) {
			err = r < 0 ? errno : ETIMEDOUT;
			break;
		}
		n = channel_fill(ch);
		if (n >= 0)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			err = errno;
			break;
		}
wait:
		r = wait_fd(ch->rfd, POLLIN, deadline);
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0) {
			err = ETIMEDOUT;
			break;
		}
	}
	/* Whole items are reported. The bytes of an item cut short by a
	 * timeout go back in front of the buffer for the next get; those of
	 * one cut short by end of stream are dropped with it. */
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

/* ------------------------------------------------------------------------ */
/* Persistent channels                                                      */
/* ------------------------------------------------------------------------ */

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
 * every held frame, then carries on. The peer (channel_connect: acking)
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

/* A stream socket, close-on-exec and non-blocking. */
static int make_unix_socket(void)
{
	int fd;

#ifdef HAVE_SOCK_FLAGS
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
#else
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
#endif
	if (fd < 0)
		return -1;
	if (set_flags(fd) < 0) {
		int saved = errno;

		close_fd(&fd);
		errno = saved;
		return -1;
	}
	return fd;
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
	drop_frame(ch, h);
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
	while (frame_decode(ch->ibuf + pos, ch->ilen - pos, SIZE_MAX, &h) ==
	       1 && h.size <= ch->ilen - pos) {
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
	close_fd(&ch->rfd);
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

	if (write_all(ch, &iov, 1, -1, &done) == 0)
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
	int fd, r;

	while (ch->rfd < 0) {
		r = wait_fd(p->listen_fd, POLLIN, deadline);
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		fd = accept(p->listen_fd, NULL, NULL);
		if (fd < 0) {
			/* The connector may have gone between poll and
			 * accept. */
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				continue;
			return -1;
		}
		if (set_flags(fd) < 0) {
			close_fd(&fd);
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
		if (wait_fd(ch->rfd, POLLIN, -1) < 0 && errno != EINTR)
			break;
	}
	if (ch->rfd >= 0)
		close_fd(&ch->rfd);
	ch->wfd = -1;
	if (lstat(p->path, &st) == 0 && st.st_dev == p->dev &&
	    st.st_ino == p->ino)
		unlink(p->path);
	p->lch->rfd = p->lch->wfd = -1;
	close_fd(&p->listen_fd);
	_exit(status);
}

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
	fd = make_unix_socket();
	if (fd < 0)
		return -1;
	/* Non-blocking, so a listener with a full backlog answers EAGAIN
	 * (Linux) at once instead of making us wait: it is alive. */
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	err = errno;
	close_fd(&fd);
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
	fd = make_unix_socket();
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
	close_fd(&fd);
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

/* The background process: listen, detach, run fn, deliver, end. */
static void persist_main(int report_fd, const char *address, channel_fn *fn,
			 const void *arg, size_t len, void *ctx)
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
	close_others(ch, (const int[2]){ -1, -1 });
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
	fn(ch, arg, len, ctx);
	persist_finish(ch, 0);
}

pid_t channel_start_persistent(const char *address, channel_fn *fn,
			       const void *arg, size_t len, void *ctx)
{
	struct sockaddr_un sa;
	struct persist_report rep;
	size_t got = 0;
	int rfds[2], st, saved, err = 0;
	pid_t mid, r;
	ssize_t n;

	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	/* The cheap checks before anything is forked. */
	if (make_unix_addr(&sa, address) < 0)
		return -1;
	if (make_pipe(rfds) < 0)
		return -1;
	fflush(NULL);
	/* sys_fork, not channel_fork: the process is meant to outlive its
	 * caller, so it asks for no parent-death signal. */
	mid = sys_fork();
	if (mid < 0) {
		saved = errno;
		close_fd(&rfds[0]);
		close_fd(&rfds[1]);
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
		persist_main(rfds[1], address, fn, arg, len, ctx);
	}
	close_fd(&rfds[1]);
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
		if (wait_fd(rfds[0], POLLIN, -1) < 0) {
			err = errno;
			break;
		}
	}
	close_fd(&rfds[0]);
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

struct channel *channel_connect(const char *address, int timeout_ms)
{
	int64_t deadline = clock_deadline(timeout_ms);
	struct sockaddr_un sa;
	struct channel *ch;
	int fd, r, err;

	if (make_unix_addr(&sa, address) < 0)
		return NULL;
	for (;;) {
		fd = make_unix_socket();
		if (fd < 0)
			return NULL;
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		err = errno;
		if (r == 0)
			break;
		if (err == EINPROGRESS) {
			socklen_t sl = sizeof(err);

			/* Not seen on Unix-domain sockets, but allowed. */
			if (wait_fd(fd, POLLOUT, deadline) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) ==
			    0 && err == 0)
				break;
			if (err == EINPROGRESS)
				err = ETIMEDOUT;
		}
		close_fd(&fd);
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
		close_fd(&fd);
		errno = err;
		return NULL;
	}
	ch->acking = true;
	return ch;
}
