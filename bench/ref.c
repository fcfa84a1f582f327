/*
 * ref.c - the plain-C references: each does with bare system calls what the
 * library side of its pair does through the library, so that the ratio of
 * the two is what the library costs on top of the kernel. They use nothing
 * from the library, and they stay as simple as a careful programmer would
 * write them for this one job: no framing beyond a fixed message size, no
 * error recovery beyond checking.
 *
 * Every trial prints one value; the driver times nothing itself.
 */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads exactly len bytes; 0 at end of stream before any byte. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, (char *)buf + got, len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Writes exactly len bytes. */
static int write_full(int fd, const void *buf, size_t len)
{
	size_t put = 0;

	while (put < len) {
		ssize_t w = write(fd, (const char *)buf + put, len - put);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		put += (size_t)w;
	}
	return 0;
}

/*
 * Fork per task: for each of n tasks a pipe and a child that writes i * i
 * as 8 bytes and leaves; at most limit children at once; the parent polls
 * the running children, reads each result, closes and reaps.
 */
static void ref_fork(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 5000;
	long limit = argc > 1 ? bench_count(argv[1]) : 2;
	struct pollfd *pfd = calloc((size_t)limit, sizeof *pfd);
	pid_t *pids = calloc((size_t)limit, sizeof *pids);
	long next = 0, done = 0, active = 0, k;
	uint64_t sum = 0, want = 0;
	double t0;

	if (!pfd || !pids || limit < 1)
		bench_na("bad arguments or no memory");
	t0 = bench_now();
	while (done < n) {
		while (active < limit && next < n) {
			int p[2];
			pid_t pid;

			if (pipe(p) < 0)
				bench_na("pipe: %s", strerror(errno));
			pid = fork();
			if (pid < 0)
				bench_na("fork: %s", strerror(errno));
			if (pid == 0) {
				uint64_t v = (uint64_t)next * (uint64_t)next;

				close(p[0]);
				_exit(write_full(p[1], &v, sizeof v) ? 1 : 0);
			}
			close(p[1]);
			pfd[active].fd = p[0];
			pfd[active].events = POLLIN;
			pids[active] = pid;
			active++;
			want += (uint64_t)next * (uint64_t)next;
			next++;
		}
		if (poll(pfd, (nfds_t)active, -1) < 0) {
			if (errno == EINTR)
				continue;
			bench_na("poll: %s", strerror(errno));
		}
		for (k = active - 1; k >= 0; k--) {
			uint64_t v;
			int st;

			if (!pfd[k].revents)
				continue;
			if (read_full(pfd[k].fd, &v, sizeof v) != sizeof v)
				bench_na("short result");
			sum += v;
			close(pfd[k].fd);
			while (waitpid(pids[k], &st, 0) < 0)
				if (errno != EINTR)
					bench_na("waitpid: %s", strerror(errno));
			/* Fill the hole with the last slot: order is free. */
			active--;
			pfd[k] = pfd[active];
			pids[k] = pids[active];
			done++;
		}
	}
	t0 = bench_now() - t0;
	if (sum != want)
		bench_na("wrong sum");
	free(pfd);
	free(pids);
	bench_ok(n / t0);
}

/*
 * Reuse: workers forked once, each on a pipe pair; the parent sends an
 * 8-byte index to each idle worker, polls for answers, and sends the next
 * index to whichever worker answered.
 */
static void ref_reuse(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 200000;
	long nw = argc > 1 ? bench_count(argv[1]) : 2;
	struct pollfd *pfd = calloc((size_t)nw, sizeof *pfd);
	int *wfd = calloc((size_t)nw, sizeof *wfd);
	pid_t *pids = calloc((size_t)nw, sizeof *pids);
	long next = 0, done = 0, k;
	uint64_t sum = 0, want = 0;
	double t0;

	if (!pfd || !wfd || !pids || nw < 1)
		bench_na("bad arguments or no memory");
	for (k = 0; k < nw; k++) {
		int down[2], up[2];

		if (pipe(down) < 0 || pipe(up) < 0)
			bench_na("pipe: %s", strerror(errno));
		pids[k] = fork();
		if (pids[k] < 0)
			bench_na("fork: %s", strerror(errno));
		if (pids[k] == 0) {
			uint64_t i;
			long j;

			/* Keep only this worker's ends: earlier workers'
			 * parent ends would keep their pipes open. */
			for (j = 0; j < k; j++) {
				close(pfd[j].fd);
				close(wfd[j]);
			}
			close(down[1]);
			close(up[0]);
			while (read_full(down[0], &i, sizeof i) == sizeof i) {
				uint64_t v = i * i;

				if (write_full(up[1], &v, sizeof v))
					_exit(1);
			}
			_exit(0);
		}
		close(down[0]);
		close(up[1]);
		pfd[k].fd = up[0];
		pfd[k].events = POLLIN;
		wfd[k] = down[1];
	}
	t0 = bench_now();
	for (k = 0; k < nw && next < n; k++, next++) {
		uint64_t i = (uint64_t)next;

		want += i * i;
		if (write_full(wfd[k], &i, sizeof i))
			bench_na("write: %s", strerror(errno));
	}
	while (done < n) {
		if (poll(pfd, (nfds_t)nw, -1) < 0) {
			if (errno == EINTR)
				continue;
			bench_na("poll: %s", strerror(errno));
		}
		for (k = 0; k < nw; k++) {
			uint64_t v;

			if (!pfd[k].revents)
				continue;
			if (read_full(pfd[k].fd, &v, sizeof v) != sizeof v)
				bench_na("worker %ld gone", k);
			sum += v;
			done++;
			if (next < n) {
				uint64_t i = (uint64_t)next++;

				want += i * i;
				if (write_full(wfd[k], &i, sizeof i))
					bench_na("write: %s", strerror(errno));
			}
		}
	}
	t0 = bench_now() - t0;
	for (k = 0; k < nw; k++) {
		int st;

		close(wfd[k]);
		close(pfd[k].fd);
		waitpid(pids[k], &st, 0);
	}
	if (sum != want)
		bench_na("wrong sum");
	bench_ok(n / t0);
}

/*
 * A stream of small messages: children forked before the clock starts each
 * write their share of n 8-byte messages, one write per message; the
 * parent polls and reads whatever is there (up to 64 KiB a read), counting
 * whole messages.
 */
static void ref_stream(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 100000;
	long nc = argc > 1 ? bench_count(argv[1]) : 2;
	struct pollfd *pfd = calloc((size_t)nc, sizeof *pfd);
	size_t *part = calloc((size_t)nc, sizeof *part);
	static unsigned char buf[65536];
	long k, open_n = nc, got = 0;
	int go[2];
	double t0;

	if (!pfd || !part || nc < 1)
		bench_na("bad arguments or no memory");
	/* The children wait on go, so that forking is not timed. */
	if (pipe(go) < 0)
		bench_na("pipe: %s", strerror(errno));
	for (k = 0; k < nc; k++) {
		int p[2];
		pid_t pid;

		if (pipe(p) < 0)
			bench_na("pipe: %s", strerror(errno));
		pid = fork();
		if (pid < 0)
			bench_na("fork: %s", strerror(errno));
		if (pid == 0) {
			long share = n / nc + (k < n % nc), j;
			char c;

			close(p[0]);
			close(go[1]);
			for (j = 0; j < k; j++)
				close(pfd[j].fd);
			if (read(go[0], &c, 1) < 0)
				_exit(1);
			for (j = 0; j < share; j++) {
				uint64_t v = (uint64_t)j * (uint64_t)j;

				if (write_full(p[1], &v, sizeof v))
					_exit(1);
			}
			_exit(0);
		}
		close(p[1]);
		pfd[k].fd = p[0];
		pfd[k].events = POLLIN;
	}
	close(go[0]);
	t0 = bench_now();
	close(go[1]);
	while (open_n > 0) {
		if (poll(pfd, (nfds_t)nc, -1) < 0) {
			if (errno == EINTR)
				continue;
			bench_na("poll: %s", strerror(errno));
		}
		for (k = 0; k < nc; k++) {
			ssize_t r;

			if (!pfd[k].revents)
				continue;
			r = read(pfd[k].fd, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				bench_na("read: %s", strerror(errno));
			if (r == 0) {
				close(pfd[k].fd);
				pfd[k].fd = -1;
				open_n--;
				continue;
			}
			part[k] += (size_t)r;
			got += (long)(part[k] / 8);
			part[k] %= 8;
		}
	}
	t0 = bench_now() - t0;
	while (wait(NULL) > 0)
		;
	if (got != n)
		bench_na("got %ld messages of %ld", got, n);
	bench_ok(n / t0);
}

/*
 * Large messages: a child writes count messages of size bytes into a pipe
 * of the default size; the parent reads each whole message into a buffer of
 * that size. The value is MiB/s.
 */
static void ref_big(int argc, char **argv)
{
	long size = argc > 0 ? bench_count(argv[0]) : 1 << 20;
	long count = argc > 1 ? bench_count(argv[1]) : 1024;
	unsigned char *buf = malloc((size_t)size);
	int p[2], go[2], st;
	pid_t pid;
	long k;
	double t0;

	if (!buf || size < 1)
		bench_na("bad arguments or no memory");
	memset(buf, 1, (size_t)size);
	if (pipe(p) < 0 || pipe(go) < 0)
		bench_na("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		bench_na("fork: %s", strerror(errno));
	if (pid == 0) {
		char c;

		close(p[0]);
		close(go[1]);
		if (read(go[0], &c, 1) < 0)
			_exit(1);
		for (k = 0; k < count; k++)
			if (write_full(p[1], buf, (size_t)size))
				_exit(1);
		_exit(0);
	}
	close(p[1]);
	close(go[0]);
	t0 = bench_now();
	close(go[1]);
	for (k = 0; k < count; k++)
		if (read_full(p[0], buf, (size_t)size) != size)
			bench_na("short message");
	t0 = bench_now() - t0;
	close(p[0]);
	waitpid(pid, &st, 0);
	free(buf);
	bench_ok((double)size * (double)count / (1 << 20) / t0);
}

/* The serial loop of the trivial map: elements/s. */
static void ref_serial(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 1000000, i;
	uint64_t *in = malloc((size_t)n * 8), *out = malloc((size_t)n * 8);
	/* Through a volatile pointer, so the loop calls the function as the
	 * workers do instead of being folded into a vector loop. */
	int (*volatile fn)(const void *, void *, void *) = bench_square;
	double t0;

	if (!in || !out)
		bench_na("no memory");
	for (i = 0; i < n; i++)
		in[i] = (uint64_t)i;
	memset(out, 0, (size_t)n * 8);
	t0 = bench_now();
	for (i = 0; i < n; i++)
		fn(&in[i], &out[i], NULL);
	t0 = bench_now() - t0;
	for (i = 0; i < n; i++)
		if (out[i] != (uint64_t)i * (uint64_t)i)
			bench_na("wrong result");
	free(in);
	free(out);
	bench_ok(n / t0);
}

/* The Mandelbrot rows, one after another: wall seconds. */
static void ref_mandel(int argc, char **argv)
{
	uint16_t *img = malloc((size_t)MANDEL_W * MANDEL_H * sizeof *img);
	uint64_t sum = 0;
	double t0;
	int y;

	(void)argc;
	(void)argv;
	if (!img)
		bench_na("no memory");
	t0 = bench_now();
	for (y = 0; y < MANDEL_H; y++)
		bench_mandel_row(y, img + (size_t)y * MANDEL_W);
	t0 = bench_now() - t0;
	for (y = 0; y < MANDEL_W * MANDEL_H; y++)
		sum += img[y];
	if (sum == 0)
		bench_na("empty image");
	free(img);
	bench_ok(t0);
}

/*
 * A ping-pong among idle descriptors: n - 1 pipes that never become
 * readable (their write ends stay open here, which is what a sleeping
 * child's end looks like to poll) and one child that sends m 8-byte
 * messages, each answered with one byte before the next. Microseconds per
 * received message; the poll over all n descriptors is most of it for
 * large n.
 */
static void ref_sleepers(int argc, char **argv)
{
	long n = argc > 0 ? bench_count(argv[0]) : 10;
	long m = argc > 1 ? bench_count(argv[1]) : 5000, k, got = 0;
	struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
	int up[2], down[2], st;
	pid_t pid;
	double t0;

	if (!pfd || n < 1 || m < 1)
		bench_na("bad arguments or no memory");
	for (k = 0; k < n - 1; k++) {
		int p[2];

		if (pipe(p) < 0)
			bench_na("pipe: %s", strerror(errno));
		pfd[k].fd = p[0];
		pfd[k].events = POLLIN;
	}
	if (pipe(up) < 0 || pipe(down) < 0)
		bench_na("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		bench_na("fork: %s", strerror(errno));
	if (pid == 0) {
		char c;

		for (k = 0; k < m; k++) {
			uint64_t v = (uint64_t)k * (uint64_t)k;

			if (write_full(up[1], &v, sizeof v) ||
			    read_full(down[0], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	pfd[n - 1].fd = up[0];
	pfd[n - 1].events = POLLIN;
	t0 = bench_now();
	while (got < m) {
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			bench_na("poll: %s", strerror(errno));
		}
		for (k = 0; k < n; k++) {
			uint64_t v;

			if (!pfd[k].revents)
				continue;
			if (read_full(pfd[k].fd, &v, sizeof v) != sizeof v)
				bench_na("sender gone");
			got++;
			if (write_full(down[1], "a", 1))
				bench_na("write: %s", strerror(errno));
		}
	}
	t0 = bench_now() - t0;
	close(down[1]);
	waitpid(pid, &st, 0);
	bench_ok(t0 * 1e6 / m);
}

static const struct {
	const char *name;	/* as given to "bench run" */
	bench_trial_fn *fn;	/* the trial */
} trials[] = {
	{ "ref_fork", ref_fork },
	{ "ref_reuse", ref_reuse },
	{ "ref_stream", ref_stream },
	{ "ref_big", ref_big },
	{ "ref_serial", ref_serial },
	{ "ref_mandel", ref_mandel },
	{ "ref_sleepers", ref_sleepers },
};

bench_trial_fn *bench_ref_trial(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof trials / sizeof trials[0]; i++)
		if (strcmp(trials[i].name, name) == 0)
			return trials[i].fn;
	return NULL;
}
