/*
 * sys.c - the library's floor: the clock, waiting on one descriptor, the
 * system calls that the tests can hook, and making and closing descriptors.
 *
 * Every wait of the library (a receive, a send, the exchange's poll loop,
 * pmap's time limits, the bounded end of a free) runs from a deadline of
 * the one clock here and recomputes the time left after each wake-up, so
 * that signals never stretch a timeout and the layers agree on what "now"
 * is. Raw read, write, fork, pipe and socketpair are called nowhere else:
 * tests replace them through exchange_hooks to inject EINTR, short
 * transfers and failures.
 *
 * Nothing here knows a channel: the functions take descriptors. The
 * number of cores the process may use is here too.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

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
/* Not declared under _POSIX_C_SOURCE either: anonymous mappings (POSIX
 * only from 2024) and madvise's MADV_DONTFORK (Linux 2.6.16) and
 * MADV_WIPEONFORK (Linux 4.14; older kernels refuse it). */
int madvise(void *addr, size_t len, int advice);
#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS 0x20
#endif
#ifndef MADV_DONTFORK
#define MADV_DONTFORK 10
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#define HAVE_KEPT_MAPPINGS 1
/* pidfd_open (Linux 5.3) has a C library wrapper only from glibc 2.36:
 * the system call itself, where the headers know its number. */
#include <sys/syscall.h>
long syscall(long number, ...);
#endif

/* Whether the calls that make descriptors set their flags themselves. */
#ifdef HAVE_PIPE2
#define PIPE_FLAGGED true
#else
#define PIPE_FLAGGED false
#endif
#ifdef HAVE_SOCK_FLAGS
#define SOCK_FLAGGED true
#else
#define SOCK_FLAGGED false
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

struct exchange_hooks exchange_hooks;

/* The process's own state (see sys_own): the page below once the process
 * has one, else this copy, which children inherit as they inherit the
 * rest of the process's memory. */
static struct sys_own own_static = { .lock = PTHREAD_MUTEX_INITIALIZER };
static struct sys_own *own = &own_static;
static pthread_once_t own_once = PTHREAD_ONCE_INIT;

void *sys_map_kept(size_t *size, bool wiped)
{
#ifdef HAVE_KEPT_MAPPINGS
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	if (page > 0)
		*size = (*size + (size_t)page - 1) / (size_t)page *
			(size_t)page;
	p = mmap(NULL, *size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (madvise(p, *size, wiped ? MADV_WIPEONFORK : MADV_DONTFORK) < 0) {
		munmap(p, *size);
		return NULL;
	}
	return p;
#else
	(void)size, (void)wiped;
	return NULL;
#endif
}

/* Once per process tree: the state moves to a page of its own marked
 * MADV_WIPEONFORK. A fork neither copies nor write-protects it, and a
 * child finds it zeroed: the lock free (where a zeroed mutex is a free
 * one, as the check says) and no channel idle, whoever forked it. */
static void own_setup(void)
{
#ifdef HAVE_KEPT_MAPPINGS
	/* Static, so that its padding is zeros too. */
	static const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	const unsigned char *byte = (const unsigned char *)&fresh;
	size_t size = sizeof(struct sys_own), i;
	void *p;

	for (i = 0; i < sizeof(fresh); i++)
		if (byte[i])
			return;
	p = sys_map_kept(&size, true);
	if (p)
		own = p;
#endif
}

struct sys_own *sys_own(void)
{
	pthread_once(&own_once, own_setup);
	return own;
}

pid_t sys_getpid(void)
{
	struct sys_own *o = sys_own();
	pid_t pid;

	if (o == &own_static)
		return getpid();
	pid = atomic_load_explicit(&o->pid, memory_order_relaxed);
	if (!pid) {
		pid = getpid();
		atomic_store_explicit(&o->pid, pid, memory_order_relaxed);
	}
	return pid;
}

void sys_lock(void)
{
	pthread_mutex_lock(&sys_own()->lock);
}

void sys_unlock(void)
{
	pthread_mutex_unlock(&own->lock);
}

void sys_unlock_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	if (own != &own_static)
		return;		/* the page came zeroed */
	/* The child has one thread, the copy of the one that took the lock,
	 * and no other can be waiting: the lock made afresh is the lock
	 * released. A copy of bytes, where pthread_mutex_unlock would be a
	 * call into a page of the C library that the child has to fault in
	 * (a new child maps nothing of the library's code until it runs
	 * it). */
	memcpy(&own_static.lock, &fresh, sizeof(fresh));
	own_static.nidle = 0;
}

void sys_close_shared(int *fd)
{
	sys_lock();
	sys_close(fd);
	sys_unlock();
}

int sys_refuse(bool invalid, bool inherited)
{
	if (invalid) {
		errno = EINVAL;
		return -1;
	}
	if (inherited) {
		errno = EBADF;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The clock                                                                */
/* ------------------------------------------------------------------------ */

int64_t clock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : clock_now_ms() + timeout_ms;
}

int clock_left(int64_t deadline)
{
	return deadline < 0 ? -1 : clock_left_at(deadline, clock_now_ms());
}

int clock_left_at(int64_t deadline, int64_t now)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now;
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}


/* ------------------------------------------------------------------------ */
/* Waiting on one descriptor                                                */
/* ------------------------------------------------------------------------ */

/* Waits for events on fd until deadline, recomputing the time left after
 * each EINTR. Returns 1 when an event came, 0 on timeout, -1 on error. */
int sys_wait_fd(int fd, short events, int64_t deadline)
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

int sys_await(int fd, short events, int64_t deadline)
{
	int r = sys_wait_fd(fd, events, deadline);

	if (r == 0)
		errno = ETIMEDOUT;
	return r > 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* System calls, through the test hooks                                     */
/* ------------------------------------------------------------------------ */

ssize_t sys_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = exchange_hooks.read ? exchange_hooks.read(fd, buf, len)
					: read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n;
}

/* Up to this many bytes, the vectors of a write are copied into one buffer
 * and written with write or send: the kernel's import of an iovec array
 * costs more than the copy (a frame of 8 bytes and its header went a
 * quarter faster). */
#define GATHER_MAX 256

/* Writes what the kernel takes of the iovecs in one call. Sockets use
 * sendmsg with MSG_NOSIGNAL, so they never raise SIGPIPE. A hooked write
 * sees one buffer at a time. */
ssize_t sys_writev(int fd, bool is_socket, const struct iovec *iov,
		   int iovcnt)
{
	unsigned char buf[GATHER_MAX];
	const void *one = NULL;
	size_t len = 0;
	ssize_t n;
	int i;

	if (!exchange_hooks.write) {
		for (i = 0; i < iovcnt && len <= sizeof(buf); i++)
			len += iov[i].iov_len;
		if (iovcnt == 1) {
			one = iov[0].iov_base;
		} else if (len <= sizeof(buf)) {
			len = 0;
			for (i = 0; i < iovcnt; i++) {
				if (iov[i].iov_len)
					memcpy(buf + len, iov[i].iov_base,
					       iov[i].iov_len);
				len += iov[i].iov_len;
			}
			one = buf;
		}
	}
	do {
		if (exchange_hooks.write) {
			n = exchange_hooks.write(fd, iov[0].iov_base,
						 iov[0].iov_len);
		} else if (one) {
			n = is_socket ? send(fd, one, len, MSG_NOSIGNAL)
				      : write(fd, one, len);
		} else if (is_socket) {
			struct msghdr mh = {
				.msg_iov = (struct iovec *)iov,
				.msg_iovlen = iovcnt,
			};
			n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		} else {
			n = writev(fd, iov, iovcnt);
		}
	} while (n < 0 && errno == EINTR);
	return n;
}

int sys_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

pid_t sys_fork(void)
{
	return exchange_hooks.fork ? exchange_hooks.fork() : fork();
}

void sys_close(int *fd)
{
	/* Never retried: after EINTR the descriptor may already be gone and
	 * its number reused by another thread. */
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int sys_set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Makes both descriptors of a pair non-blocking and close-on-exec, or
 * closes them. */
static int set_pair_flags(int fds[2])
{
	if (sys_set_flags(fds[0]) < 0 || sys_set_flags(fds[1]) < 0) {
		int saved = errno;

		sys_close(&fds[0]);
		sys_close(&fds[1]);
		errno = saved;
		return -1;
	}
	return 0;
}

/* The system's calls that make a pair of descriptors, with the flags set
 * in the same call where the system allows it (set_pair_flags otherwise). */
static int os_pipe(int fds[2])
{
#ifdef HAVE_PIPE2
	return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
#else
	return pipe(fds);
#endif
}

static int os_socketpair(int fds[2])
{
#ifdef HAVE_SOCK_FLAGS
	return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			  0, fds);
#else
	return socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
#endif
}

/* A pair of descriptors, close-on-exec and non-blocking: from the test
 * hook when one is set (its descriptors are then given their flags), else
 * from the system's call (flagged: it set them itself). */
static int make_pair(int fds[2], int (*hook)(int fds[2]),
		     int (*make)(int fds[2]), bool flagged)
{
	if ((hook ? hook(fds) : make(fds)) < 0)
		return -1;
	return hook || !flagged ? set_pair_flags(fds) : 0;
}

int sys_pipe(int fds[2])
{
	return make_pair(fds, exchange_hooks.pipe, os_pipe, PIPE_FLAGGED);
}

int sys_socketpair(int fds[2])
{
	return make_pair(fds, exchange_hooks.socketpair, os_socketpair,
			 SOCK_FLAGGED);
}

/* Closes the descriptors first to last. */
void sys_close_run(int first, int last)
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
void sys_close_sorted(int *fds, int n)
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
		sys_close_run(start, fds[j - 1]);
	}
}

/* A stream socket, close-on-exec and non-blocking. */
int sys_unix_socket(void)
{
	int fd;

#ifdef HAVE_SOCK_FLAGS
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
#else
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
#endif
	if (fd < 0)
		return -1;
	if (sys_set_flags(fd) < 0) {
		int saved = errno;

		sys_close(&fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------------------ */
/* Cores                                                                    */
/* ------------------------------------------------------------------------ */

#ifdef __linux__
/* Counts the CPUs in a list such as "0-3,6,8-9". 0 if it cannot. */
static int count_cpu_list(const char *s)
{
	long a, b;
	char *end;
	int n = 0;

	while (*s && *s != '\n') {
		a = strtol(s, &end, 10);
		if (end == s || a < 0)
			return 0;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a)
				return 0;
			s = end;
		}
		n += (int)(b - a + 1);
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return 0;
	}
	return n;
}

/* The CPUs this process may run on, from its affinity as the kernel shows
 * it (sched_getaffinity is not POSIX). 0 if unknown. */
static int affinity_cores(void)
{
	static const char key[] = "Cpus_allowed_list:";
	char line[4096];
	FILE *f = fopen("/proc/self/status", "re");
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, sizeof(key) - 1) == 0) {
			const char *p = line + sizeof(key) - 1;

			while (*p == ' ' || *p == '\t')
				p++;
			n = count_cpu_list(p);
			break;
		}
	}
	fclose(f);
	return n;
}
#endif

int exchange_cores(void)
{
	long n;

#ifdef __linux__
	int a = affinity_cores();

	if (a > 0)
		return a;
#endif
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > INT_MAX ? INT_MAX : (int)n;
}

