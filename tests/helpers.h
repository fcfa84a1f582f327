/*
 * helpers.h - hygiene checks shared by the tests: open descriptors and
 * children left behind.
 */
#ifndef TESTS_HELPERS_H
#define TESTS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

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

#endif
