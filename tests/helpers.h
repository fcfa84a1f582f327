/*
 * helpers.h - hygiene checks shared by the tests: open descriptors and
 * children left behind.
 */
#ifndef TESTS_HELPERS_H
#define TESTS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
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

#endif
