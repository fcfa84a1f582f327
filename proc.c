/*
 * proc.c - a channel's process: forking with a channel, the registry of
 * open channels, closing the others' descriptors in a new child, and
 * reaping, killing, waiting and reading the exit status.
 *
 * Every open channel that has descriptors is on a registry list, so that a
 * freshly forked child can close the descriptors of all channels but its
 * own: a stray copy of a sibling's write end would keep that sibling's
 * parent from ever seeing end of stream. Raw waitpid and kill are called
 * nowhere else.
 */
#include "channel_impl.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif
#ifdef __FreeBSD__
#include <sys/procctl.h>
#endif

/* The registry of open channels (see the opening comment). It changes
 * under sys_lock, the library's lock on its descriptors: channels may be
 * made and closed from several threads, each using its own channels and
 * exchanges, and a fork (which holds the lock too) never copies a list
 * another thread is changing, nor a descriptor of a link half made. */
static struct channel *registry;

/* Channels released lately, kept on the registry (without descriptors or
 * a process, as channel_recycle leaves them: every walk of the registry
 * passes over them) for the next channels made, under the same lock.
 * Fork per task releases a channel and makes one per task; taking each
 * from malloc and putting it on the list writes malloc's pages (its
 * arena, its per-thread cache, errno, the chunks' headers) and the
 * neighbour on the list after every fork, and each page written after a
 * fork is a copy-on-write fault, most of what a short task costs. A
 * reused channel is already on the list, and its page is the one its
 * last task wrote. The list itself is the process's own (sys_own), out
 * of its children. SYS_IDLE_CHANNELS, because an exchange ends several
 * tasks in one pass before it starts the next ones. */

/* In a child forked with CHANNEL_NO_FLUSH: channel_exit leaves stdio
 * unflushed (see channel_fork). */
static bool exit_unflushed;

/* ------------------------------------------------------------------------ */
/* The registry                                                             */
/* ------------------------------------------------------------------------ */

/* Puts ch on the registry; the caller holds the lock. */
static void register_locked(struct channel *ch)
{
	ch->next = registry;
	if (registry)
		registry->prev = ch;
	registry = ch;
}

/* A released channel for new descriptors, already registered, or NULL;
 * the caller holds the lock. */
static struct channel *take_idle_locked(int rfd, int wfd, pid_t pid)
{
	struct sys_own *own = sys_own();
	struct channel *ch;

	if (!own->nidle)
		return NULL;
	ch = own->idle[--own->nidle];
	ch->rfd = rfd;
	ch->wfd = wfd;
	ch->pid = pid;
	return ch;
}

/* A new channel, registered; the caller holds the lock. */
static struct channel *alloc_locked(int rfd, int wfd, pid_t pid)
{
	struct channel *ch = take_idle_locked(rfd, wfd, pid);

	if (ch)
		return ch;
	ch = channel_new(rfd, wfd, pid);
	if (ch)
		register_locked(ch);
	return ch;
}

struct channel *channel_alloc(int rfd, int wfd, pid_t pid)
{
	struct channel *ch;

	sys_lock();
	ch = alloc_locked(rfd, wfd, pid);
	sys_unlock();
	return ch;
}

/* Takes ch off the registry (if it is on it), or keeps it there for reuse
 * (see idle). Returns whether it was kept. */
static bool channel_unregister(struct channel *ch)
{
	struct sys_own *own = sys_own();
	bool kept = false;

	sys_lock();
	if (!ch->prev && registry != ch) {
		/* On no registry (a FAILURE of its own, say). */
	} else if (own->nidle < SYS_IDLE_CHANNELS) {
		channel_recycle(ch);
		own->idle[own->nidle++] = ch;
		kept = true;
	} else {
		if (ch->prev)
			ch->prev->next = ch->next;
		else
			registry = ch->next;
		if (ch->next)
			ch->next->prev = ch->prev;
		ch->prev = ch->next = NULL;
	}
	sys_unlock();
	return kept;
}

pid_t channel_fork_process(void)
{
	pid_t pid;
	int saved;

	sys_lock();
	pid = sys_fork();
	saved = errno;
	if (pid == 0)
		sys_unlock_child();
	else
		sys_unlock();
	errno = saved;
	return pid;
}

/* Takes the channel off the registry (unless inherited) and frees it. */
static void channel_release(struct channel *ch)
{
	/* An inherited copy is on no registry of this process: its links
	 * point into the parent's list, of which only copies exist here. */
	if (!channel_inherited(ch) && channel_unregister(ch))
		return;
	channel_free(ch);
}


/* Descriptors below this are gathered in a bitmap and closed in runs when
 * there are too many for close_sorted; the rare ones above are closed one
 * by one. */
#define RUN_FDS 32768

/* The descriptors a channel may hold: the k-th (k < CHANNEL_FDS) of c,
 * -1 for none. Its read end, its write end when that is another one, and
 * the descriptor of its process's exit (channel_exit_fd). */
#define CHANNEL_FDS 3

static int fd_of(const struct channel *c, int k)
{
	if (k == 0)
		return c->rfd;
	if (k == 1)
		return c->wfd != c->rfd ? c->wfd : -1;
	return c->exit_fd;
}

/* The many-channels case of close_others, in a frame of its own so that
 * the common case does not write a 4 KiB bitmap onto fresh stack pages. */
static NOINLINE void close_many(const struct channel *keep,
				const int extra[2])
{
	unsigned char bits[RUN_FDS / 8];
	struct channel *c;
	int top = -1, fd, start, k;

	for (c = registry; c; c = c->next)
		for (k = 0; c != keep && k < CHANNEL_FDS; k++) {
			fd = fd_of(c, k);
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
		for (k = 0; k < CHANNEL_FDS; k++) {
			fd = fd_of(c, k);
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
		sys_close_run(start, fd);
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
void channel_close_others(struct channel *keep, const int extra[2])
{
	int fds[FEW_FDS], n = 0, k, fd;
	struct channel *c;

	for (k = 0; k < 2; k++)
		if (extra[k] >= 0)
			fds[n++] = extra[k];
	for (c = registry; c; c = c->next) {
		if (c == keep)
			continue;
		for (k = 0; k < CHANNEL_FDS; k++) {
			fd = fd_of(c, k);
			if (fd < 0)
				continue;
			if (n == FEW_FDS) {
				close_many(keep, extra);
				goto done;
			}
			fds[n++] = fd;
		}
	}
	sys_close_sorted(fds, n);
done:
	registry = keep;
	keep->prev = keep->next = NULL;
	/* The idle channels were the parent's, on the list just forgotten:
	 * the child's sys_own has none. */
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
	/* Held from the making of the descriptors to the fork: a fork in
	 * another thread meanwhile would give its child this link's ends,
	 * not yet registered, and so never closed there. */
	sys_lock();
	if (link == CHANNEL_LINK_SOCKET) {
		if (sys_socketpair(down) < 0)
			goto fail_fds;
	} else if (sys_pipe(down) < 0 || sys_pipe(up) < 0) {
		goto fail_fds;
	}
	/* The parent's end is allocated before fork, so that a failure leaves
	 * no child behind. */
	if (link == CHANNEL_LINK_SOCKET)
		ch = alloc_locked(down[0], down[0], -1);
	else
		ch = alloc_locked(up[0], down[1], -1);
	if (!ch)
		goto fail_fds;
	ch->is_socket = link == CHANNEL_LINK_SOCKET;

	/* Empty the stdio buffers now, or the child would write its copy of
	 * them a second time when it flushes at its end. POSIX has no way to
	 * ask whether a stream holds output, so the flush is unconditional
	 * (and costs a page fault in each process: it writes stdio's lock)
	 * unless the caller said, with CHANNEL_NO_FLUSH, that the child will
	 * not use stdio: then neither side flushes, and the child's copies
	 * are dropped by _exit. Flushing only stdout and stderr would not
	 * do: a stream the caller opened would still be written twice. */
	if (!(flags & CHANNEL_NO_FLUSH))
		fflush(NULL);
	parent = sys_getpid();
	pid = sys_fork();
	if (pid < 0) {
		saved = errno;
		sys_unlock();
		channel_release(ch);
		errno = saved;
		goto fail_closed;
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
		exit_unflushed = (flags & CHANNEL_NO_FLUSH) != 0;
		/* A new generation: the copies of the parent's other channels
		 * become inert here (see channel_inherited). */
		channel_new_generation(ch);
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
		/* The lock was taken by the thread that forked, of which the
		 * child's one thread is the copy. */
		sys_unlock_child();
		channel_close_others(ch, parent_ends);
		*out = ch;
		return 0;
	}
	if (link == CHANNEL_LINK_SOCKET) {
		sys_close(&down[1]);
	} else {
		sys_close(&down[0]);
		sys_close(&up[1]);
	}
	/* The child's ends are closed before any other fork can copy them. */
	sys_unlock();
	ch->pid = pid;
	ch->group = (flags & CHANNEL_OWN_GROUP) != 0;
	*out = ch;
	return pid;

fail_fds:
	saved = errno;
	sys_unlock();
	errno = saved;
fail_closed:
	saved = errno;
	sys_close(&down[0]);
	sys_close(&down[1]);
	sys_close(&up[0]);
	sys_close(&up[1]);
	errno = saved;
	return -1;
}

struct channel *channel_from_socket(int fd)
{
	struct channel *ch;

	if (sys_set_flags(fd) < 0)
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

pid_t channel_pid(const struct channel *ch)
{
	return ch ? ch->pid : -1;
}

void channel_exit(struct channel *ch, int status)
{
	if (ch && ch->ops && ch->ops->finish)
		ch->ops->finish(ch, status);	/* delivers, then ends */
	if (ch)
		channel_uncork(ch, -1);
	if (!exit_unflushed)
		fflush(NULL);
	/* _exit closes the channel's descriptors with all the others: closing
	 * them one by one first would only cost system calls. */
	_exit(status);
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
	} else {
		ch->status = st;
		ch->reaped = 1;
	}
	if (ch->exit_fd >= 0)
		sys_close_shared(&ch->exit_fd);
	return 1;
}

int channel_exit_fd(struct channel *ch)
{
	if (ch->exit_fd < 0 && ch->pid > 0 && !ch->reaped &&
	    !channel_inherited(ch)) {
		/* Under the lock, as every descriptor of a registered
		 * channel: a fork in another thread closes it in its child. */
		sys_lock();
		ch->exit_fd = sys_pidfd_open(ch->pid);
		sys_unlock();
	}
	return ch->exit_fd;
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

/* The check that opens the calls on a channel's process: -1 with EINVAL
 * without one, with inherited_errno when the channel was inherited (the
 * process is a sibling's, not this process's child), else 0. */
static int not_own_child(const struct channel *ch, int inherited_errno)
{
	if (!ch || ch->pid <= 0) {
		errno = EINVAL;
		return -1;
	}
	if (channel_inherited(ch)) {
		errno = inherited_errno;
		return -1;
	}
	return 0;
}

int channel_kill(struct channel *ch, int sig)
{
	if (not_own_child(ch, EBADF) < 0)
		return -1;
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

	if (not_own_child(ch, ECHILD) < 0)
		return -1;
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
		/* waitpid has no timeout: wait for the exit descriptor where
		 * there is one, else sleep a little, longer each time, never
		 * past the deadline. */
		if (channel_exit_fd(ch) >= 0) {
			r = sys_wait_fd(ch->exit_fd, POLLIN, deadline);
			if (r >= 0)
				continue;
		}
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

void channel_limit_start(struct channel_limit *l, int limit_ms)
{
	l->deadline = limit_ms > 0 ? clock_now_ms() + limit_ms : 0;
	l->kill_at = 0;
	l->timed_out = false;
}

void channel_limit_end(struct channel *ch, struct channel_limit *l,
		       int64_t now, int grace_ms)
{
	if (l->kill_at)
		return;
	l->deadline = 0;
	l->kill_at = now + grace_ms;
	channel_kill(ch, SIGTERM);
}

int64_t channel_limit_apply(struct channel *ch, struct channel_limit *l,
			    int64_t now, int grace_ms)
{
	if (l->kill_at) {
		if (now < l->kill_at)
			return l->kill_at;
		channel_kill(ch, SIGKILL);
		l->kill_at = 0;
		return 0;
	}
	if (!l->deadline)
		return 0;
	if (now < l->deadline)
		return l->deadline;
	l->timed_out = true;
	channel_limit_end(ch, l, now, grace_ms);
	return l->kill_at;
}

void channel_limit_stop(struct channel_limit *l)
{
	l->deadline = l->kill_at = 0;
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

	sys_lock();
	for (c = registry; c; c = c->next) {
		if (c->pid <= 0 || c->reaped)
			continue;
		if (reap(c, 0) < 0) {
			n = -1;
			break;
		}
		n++;
	}
	sys_unlock();
	return n;
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
