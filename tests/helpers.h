/*
 * helpers.h - hygiene checks shared by the tests: open descriptors and
 * children left behind; and the byte pattern of large test messages.
 */
#ifndef TESTS_HELPERS_H
#define TESTS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Under valgrind (make test-valgrind sets FAULTS_SLOW) every signal costs
 * a trip through its scheduler, every byte copied is checked and every fork
 * copies a far larger process: tests keep their faults but make storms
 * sparser, transfers smaller and task counts lower. */
static inline bool slow_run(void)
{
	const char *e = getenv("FAULTS_SLOW");

	return e && *e && *e != '0';
}

/* AddressSanitizer reserves far more address space than a lowered
 * RLIMIT_AS leaves. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Lowers the soft RLIMIT_AS to the address space in use now (from
 * /proc/self/statm) plus room bytes, so that a larger allocation fails
 * with ENOMEM; the old limit goes to *old, for setrlimit afterwards. NULL,
 * or why it cannot be done here (the test then skips). */
static inline const char *limit_address_space(size_t room,
					      struct rlimit *old)
{
	unsigned long pages = 0;
	struct rlimit low;
	FILE *f;

	if (UNDER_ASAN)
		return "AddressSanitizer reserves more than the lowered limit";
	if (slow_run())
		return "valgrind keeps the address space limit itself";
	f = fopen("/proc/self/statm", "r");
	if (!f)
		return "no /proc/self/statm here";
	if (fscanf(f, "%lu", &pages) != 1)
		pages = 0;
	fclose(f);
	if (!pages || getrlimit(RLIMIT_AS, old) < 0)
		return "no address space figure or limit here";
	low = *old;
	low.rlim_cur = (rlim_t)((size_t)pages * (size_t)sysconf(_SC_PAGESIZE) +
				room);
	if (setrlimit(RLIMIT_AS, &low) < 0)
		return "RLIMIT_AS cannot be lowered here";
	return NULL;
}

/* Stops the interval timer and restores SIGALRM's old action. A SIGALRM
 * raised just before the timer stopped may still be pending (valgrind
 * delivers signals late): ignoring the signal first discards it, so that
 * restoring the default action cannot end the test. */
static inline void timer_stop(const struct sigaction *old)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	struct itimerval off = { { 0, 0 }, { 0, 0 } };

	setitimer(ITIMER_REAL, &off, NULL);
	sigemptyset(&ign.sa_mask);
	sigaction(SIGALRM, &ign, NULL);
	sigaction(SIGALRM, old, NULL);
}

/* The number of open descriptors below the soft limit (at most 4096). */
static inline int count_fds(void)
{
	int n = 0, fd, top = 4096;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)top)
		top = (int)rl.rlim_cur;
	for (fd = 0; fd < top; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* 1 when pid has been reaped already (no zombie, nothing running): a
 * waitpid on it fails with ECHILD. */
static inline int reaped(pid_t pid)
{
	int st;

	return waitpid(pid, &st, WNOHANG) < 0 && errno == ECHILD;
}

/* 1 when this process has no child left, reaped or not (Criterion's test
 * workers have no children of their own). */
static inline int no_children(void)
{
	int st;

	return waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD;
}

/* The byte at offset off of message idx in the tests that move large
 * messages: a byte lost, repeated, shifted or taken from another message
 * shows. */
static inline unsigned char pattern_byte(size_t idx, size_t off)
{
	return (unsigned char)(idx * 131 + off * 7 + (off >> 12));
}

static inline void pattern_fill(void *buf, size_t len, size_t idx)
{
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = pattern_byte(idx, i);
}

/* 1 when the len bytes at buf are message idx of want bytes, else 0. */
static inline int pattern_check(const void *buf, size_t len, size_t want,
				size_t idx)
{
	const unsigned char *p = buf;
	size_t i;

	if (len != want)
		return 0;
	for (i = 0; i < len; i++)
		if (p[i] != pattern_byte(idx, i))
			return 0;
	return 1;
}

#endif
