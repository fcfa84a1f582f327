/*
 * fork_hook.h - forks through the library's test hook (internal.h's
 * exchange_hooks): counted, and failing with EAGAIN from a chosen call on.
 * For test files that include internal.h.
 */
#ifndef TESTS_FORK_HOOK_H
#define TESTS_FORK_HOOK_H

#include <errno.h>
#include <unistd.h>

static int forks, fail_from;

static pid_t hooked_fork(void)
{
	forks++;
	if (fail_from && forks >= fail_from) {
		errno = EAGAIN;
		return -1;
	}
	return fork();
}

/* Counts forks from now on; with fail_at above 0, fork number fail_at and
 * every later one fail. */
static inline void hook_forks(int fail_at)
{
	forks = 0;
	fail_from = fail_at;
	exchange_hooks.fork = hooked_fork;
}

static inline void unhook_forks(void)
{
	exchange_hooks.fork = NULL;
}

#endif
