/*
 * progress.h - a progress line on standard error, for the demos whose
 * work can take long (wordcount over a large tree, a large Mandelbrot).
 *
 * On a terminal the line is drawn over itself (a carriage return, then
 * an erase to the end of the line), at most every PROGRESS_EVERY_MS, the
 * first time at once, and erased when the work is done, so that nothing
 * of it stays. Off a terminal nothing is written: what goes to a file or
 * a pipe is the same as without it. --progress (force) asks for the line
 * anyway; then, on a terminal or not, the last state also stays as a line
 * of its own at the end, as prun's --progress does.
 *
 * The state may be in memory that processes share (mandelbrot's workers
 * draw the line while their parent waits in exchange_pmap): the time of
 * the next drawing is claimed with a compare-and-swap, so one process
 * draws each time, and a line goes out in one write.
 *
 * Static inline, as demo.h: each demo is one program that includes it.
 */
#ifndef DEMOS_PROGRESS_H
#define DEMOS_PROGRESS_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The shortest time between two drawings of the line. */
#define PROGRESS_EVERY_MS 250

/* Erases the line the cursor is on: back to its start, clear to its end. */
#define PROGRESS_ERASE "\r\033[K"

/* The state of a progress line. */
struct progress {
	char prog[32];		/* the program's name, first on the line */
	bool tty;		/* standard error is a terminal: draw */
	bool force;		/* --progress: leave the last state */
	atomic_llong next_ms;	/* when the line may be drawn again */
};

/* Milliseconds from a monotonic clock. */
static inline long long progress_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts a line for the program prog; force as --progress. */
static inline void progress_init(struct progress *p, const char *prog,
				 bool force)
{
	snprintf(p->prog, sizeof(p->prog), "%s", prog);
	p->tty = isatty(2) == 1;
	p->force = force;
	atomic_init(&p->next_ms, 0);
}

/* Writes all of s to standard error. A progress line is not worth
 * failing for, so errors are ignored. */
static inline void progress_write(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(2, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Formats "[ERASE]PROG: TEXT[\n]" into buf and writes it. */
static inline void progress_put(const struct progress *p, bool erase,
				bool newline, const char *fmt, va_list ap)
{
	char buf[256];
	size_t n;

	n = (size_t)snprintf(buf, sizeof(buf), "%s%s: ",
			     erase ? PROGRESS_ERASE : "", p->prog);
	if (n < sizeof(buf))
		n += (size_t)vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	if (newline)
		buf[n++] = '\n';
	progress_write(buf, n);
}

/* Draws the line (printf's fmt) on a terminal, unless it was drawn less
 * than PROGRESS_EVERY_MS ago. p may be NULL: no line. */
__attribute__((format(printf, 2, 3)))
static inline void progress_draw(struct progress *p, const char *fmt, ...)
{
	long long now, next;
	va_list ap;

	if (!p || !p->tty)
		return;
	now = progress_ms();
	next = atomic_load(&p->next_ms);
	if (now < next || !atomic_compare_exchange_strong(
				  &p->next_ms, &next, now + PROGRESS_EVERY_MS))
		return;
	va_start(ap, fmt);
	progress_put(p, true, false, fmt, ap);
	va_end(ap);
}

/* Erases the line, so that another message starts on a clean one; it is
 * drawn again at the next progress_draw that is due. */
static inline void progress_clear(const struct progress *p)
{
	if (p && p->tty)
		progress_write(PROGRESS_ERASE, sizeof(PROGRESS_ERASE) - 1);
}

/* The work is done: the line is erased, and with --progress the last
 * state (printf's fmt) is written as a line of its own. */
__attribute__((format(printf, 2, 3)))
static inline void progress_done(struct progress *p, const char *fmt, ...)
{
	va_list ap;

	if (!p)
		return;
	progress_clear(p);
	if (!p->force)
		return;
	va_start(ap, fmt);
	progress_put(p, false, true, fmt, ap);
	va_end(ap);
}

#endif /* DEMOS_PROGRESS_H */
