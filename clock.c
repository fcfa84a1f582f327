/*
 * clock.c - the one clock of the library: milliseconds of CLOCK_MONOTONIC,
 * and deadlines made from poll-style timeouts.
 *
 * Every wait of the library (a receive, a send, the exchange's poll loop,
 * pmap's time limits, the bounded end of a free) runs from a deadline of
 * this clock and recomputes the time left after each wake-up, so that
 * signals never stretch a timeout and the layers agree on what "now" is.
 */
#include "internal.h"

#include <limits.h>
#include <time.h>

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
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - clock_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}
