/*
 * test_persistent.c - persistent and background processes: work that
 * outlives its starter, reachable at a Unix-domain socket address.
 *
 * Every test works in its own directory from mkdtemp, removed at the end.
 * Background processes are never children of the test (they are detached),
 * so their end is seen as the disappearance of their socket file, polled
 * with a bounded wait. Each test collects every result, so every background
 * process it starts ends; drain() makes sure of it on the way out.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exchange.h"
#include "helpers.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* The test's directory, for the clean-up after a failed assertion. */
static char test_dir[64];

static void ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

/* A fresh directory for one test's addresses. */
static void make_dir(char *dir, size_t cap)
{
	snprintf(dir, cap, "/tmp/xchg-persist-XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(test_dir, sizeof(test_dir), "%s", dir);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* 1 once path no longer exists, 0 if it still does after ms. */
static int gone(const char *path, int ms)
{
	struct stat st;
	int waited;

	for (waited = 0; waited <= ms; waited += 10) {
		if (lstat(path, &st) < 0 && errno == ENOENT)
			return 1;
		sleep_ms(10);
	}
	return 0;
}

/* 1 once nobody listens at path (a connection is refused), 0 if somebody
 * still does after ms. A process killed while connected closes its
 * connection and its listening socket one after the other as it dies, in
 * the order of their descriptors: its peer can see the end of the
 * connection first. */
static int unlistened(const char *path, int ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int waited, fd, r;

	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (waited = 0; waited <= ms; waited += 10) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert_geq(fd, 0);
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (r < 0 && errno == ECONNREFUSED)
			return 1;
		sleep_ms(10);
	}
	return 0;
}

/* Receives everything from a persistent process so that it ends: used on
 * the way out of a test, whatever happened before. */
static void drain(const char *path)
{
	struct channel *ch;
	struct channel_msg m;
	struct stat st;

	if (lstat(path, &st) < 0)
		return;
	ch = channel_connect(path, 200);
	if (!ch)
		return;
	while (channel_recv(ch, &m, 2000) == 1)
		channel_msg_free(&m);
	channel_close(ch);
	gone(path, 2000);
}

/* After every test, passed or failed: ends whatever background process
 * still listens in the test's directory, and removes the directory. */
static void cleanup(void)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	if (!test_dir[0])
		return;
	d = opendir(test_dir);
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", test_dir, e->d_name);
		drain(path);
		unlink(path);
	}
	closedir(d);
	rmdir(test_dir);
}

TestSuite(persistent, .init = ignore_sigpipe, .fini = cleanup);

/* The function run in the background: sends the ints first .. first +
 * count - 1, each as one message. arg: two ints (first, count). */
static void produce(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	int range[2], i;

	(void)ctx;
	if (len != sizeof(range))
		return;
	memcpy(range, arg, sizeof(range));
	for (i = range[0]; i < range[0] + range[1]; i++)
		if (channel_send(ch, &i, sizeof(i), -1) < 0)
			return;
}

/* Receives one int message; -1 on anything else. */
static int recv_int(struct channel *ch, int *v)
{
	struct channel_msg m;
	int r = channel_recv(ch, &m, 5000);

	if (r != 1)
		return r;
	if (m.kind != CHANNEL_DATA || m.len != sizeof(*v)) {
		channel_msg_free(&m);
		return -1;
	}
	memcpy(v, m.data, sizeof(*v));
	channel_msg_free(&m);
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Starting in the background                                               */
/* ------------------------------------------------------------------------ */

/* The starter is a child of the test that exits right after starting; its
 * background process survives it, and the test collects every result. */
Test(persistent, starter_exits_and_results_are_collected, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 20 }, rp[2], st, v, i, fds;
	pid_t starter, bg = 0;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/task.socket", dir);
	fds = count_fds();
	cr_assert_eq(pipe(rp), 0);
	starter = fork();
	cr_assert_geq(starter, 0);
	if (starter == 0) {
		pid_t p;

		close(rp[0]);
		p = channel_start_persistent(path, produce, range,
					     sizeof(range), NULL);
		if (p < 0)
			p = -errno;
		if (write(rp[1], &p, sizeof(p)) != (ssize_t)sizeof(p))
			_exit(2);
		_exit(p > 0 ? 0 : 1);
	}
	close(rp[1]);
	cr_assert_eq(read(rp[0], &bg, sizeof(bg)), (ssize_t)sizeof(bg));
	close(rp[0]);
	cr_assert_eq(waitpid(starter, &st, 0), starter);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "starter failed: %d", (int)bg);
	cr_assert_gt(bg, 0);
	cr_assert_neq(bg, starter);
	/* The starter is gone; its background process lives on. */
	cr_assert_eq(kill(bg, 0), 0);

	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch, "connect: %s", strerror(errno));
	cr_assert_eq(channel_pid(ch), -1);
	for (i = 0; i < 20; i++) {
		cr_assert_eq(recv_int(ch, &v), 1, "message %d: %s", i,
			     strerror(errno));
		cr_assert_eq(v, i);
	}
	/* Everything acknowledged: the process ends, closing the link. */
	cr_assert_eq(recv_int(ch, &v), 0);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert(gone(path, 5000), "the socket file outlived the process");
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
	cr_assert_eq(rmdir(dir), 0, "rmdir: %s", strerror(errno));
}

/* A peer that receives k of n and closes; the next one receives exactly
 * the rest, in order: none lost, none twice. */
Test(persistent, second_peer_receives_the_rest, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 100, 10 }, v, i, fds;
	struct channel *a, *b;
	pid_t bg;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/half.socket", dir);
	fds = count_fds();
	bg = channel_start_persistent(path, produce, range, sizeof(range),
				      NULL);
	cr_assert_gt(bg, 0, "start: %s", strerror(errno));

	a = channel_connect(path, 5000);
	cr_assert_not_null(a);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(recv_int(a, &v), 1);
		cr_assert_eq(v, 100 + i);
	}
	channel_close(a);

	b = channel_connect(path, 5000);
	cr_assert_not_null(b);
	for (i = 4; i < 10; i++) {
		cr_assert_eq(recv_int(b, &v), 1, "message %d: %s", i,
			     strerror(errno));
		cr_assert_eq(v, 100 + i, "got %d, wanted %d", v, 100 + i);
	}
	cr_assert_eq(recv_int(b, &v), 0, "a message came twice: %d", v);
	channel_close(b);
	cr_assert(gone(path, 5000));
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}

/* The process produces more slowly than the peers come and go: three peers
 * take turns, each leaving after a few messages, while the function is
 * still sending. */
static void produce_slowly(struct channel *ch, const void *arg, size_t len,
			   void *ctx)
{
	int i;

	(void)arg;
	(void)len;
	(void)ctx;
	for (i = 0; i < 12; i++) {
		if (channel_send(ch, &i, sizeof(i), -1) < 0)
			return;
		sleep_ms(5);
	}
}

Test(persistent, peers_take_turns_while_it_sends, .timeout = 30)
{
	char dir[64], path[128];
	int v, next = 0, k, i;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/turns.socket", dir);
	cr_assert_gt(channel_start_persistent(path, produce_slowly, NULL, 0,
					      NULL), 0);
	for (k = 0; next < 12; k++) {
		cr_assert_lt(k, 12, "no progress");
		ch = channel_connect(path, 5000);
		cr_assert_not_null(ch, "connect: %s", strerror(errno));
		for (i = 0; i < 5 && next < 12; i++) {
			cr_assert_eq(recv_int(ch, &v), 1);
			cr_assert_eq(v, next, "got %d, wanted %d", v, next);
			next++;
		}
		if (next == 12)
			cr_assert_eq(recv_int(ch, &v), 0);
		channel_close(ch);
	}
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* The function receives from its peer as well: requests in, answers out,
 * acknowledgements in between. */
static void doubler(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	struct channel_msg m;
	int v;

	(void)arg;
	(void)len;
	(void)ctx;
	while (channel_recv(ch, &m, -1) == 1) {
		if (m.len != sizeof(v)) {
			channel_msg_free(&m);
			break;
		}
		memcpy(&v, m.data, sizeof(v));
		channel_msg_free(&m);
		if (v < 0)
			break;
		v *= 2;
		if (channel_send(ch, &v, sizeof(v), -1) < 0)
			break;
	}
}

Test(persistent, two_way, .timeout = 30)
{
	char dir[64], path[128];
	struct channel *ch;
	int v, i, stop = -1;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/twoway.socket", dir);
	cr_assert_gt(channel_start_persistent(path, doubler, NULL, 0, NULL),
		     0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	for (i = 0; i < 50; i++) {
		cr_assert_eq(channel_send(ch, &i, sizeof(i), 5000), 0);
		cr_assert_eq(recv_int(ch, &v), 1);
		cr_assert_eq(v, 2 * i);
	}
	cr_assert_eq(channel_send(ch, &stop, sizeof(stop), 5000), 0);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* A send with no peer waits only as long as its timeout, and the message
 * is then not sent at all. The process tells the test through a pipe it
 * inherited (it keeps the caller's descriptors). */
static void send_alone(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	int fd = *(const int *)arg, res[2];
	char late[] = "after";

	(void)len;
	(void)ctx;
	res[0] = channel_send(ch, "lost", 4, 100);
	res[1] = errno;
	if (write(fd, res, sizeof(res)) != (ssize_t)sizeof(res))
		return;
	close(fd);
	channel_send(ch, late, strlen(late), -1);
}

Test(persistent, send_without_peer_times_out, .timeout = 30)
{
	char dir[64], path[128];
	struct channel_msg m;
	struct channel *ch;
	int p[2], res[2];

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/alone.socket", dir);
	cr_assert_eq(pipe(p), 0);
	cr_assert_gt(channel_start_persistent(path, send_alone, &p[1],
					      sizeof(p[1]), NULL), 0);
	close(p[1]);
	cr_assert_eq(read(p[0], res, sizeof(res)), (ssize_t)sizeof(res));
	close(p[0]);
	cr_assert_eq(res[0], -1);
	cr_assert_eq(res[1], ETIMEDOUT);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "after");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* ------------------------------------------------------------------------ */
/* Exchanges and queues                                                     */
/* ------------------------------------------------------------------------ */

/* Ten persistent processes at ten addresses, read through one queue. */
Test(persistent, ten_addresses_one_queue, .timeout = 60)
{
	char dir[64], path[10][128];
	bool seen[100] = { false };
	struct exchange *q;
	struct channel_msg m;
	int range[2], i, v, n = 0, fds;
	ssize_t task;

	make_dir(dir, sizeof(dir));
	fds = count_fds();
	for (i = 0; i < 10; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/task-%d.socket", dir, i);
		range[0] = i * 10;
		range[1] = 10;
		cr_assert_gt(channel_start_persistent(path[i], produce, range,
						      sizeof(range), NULL), 0,
			     "start %d: %s", i, strerror(errno));
	}
	q = exchange_new_queue(NULL);
	cr_assert_not_null(q);
	for (i = 0; i < 10; i++) {
		task = exchange_connect(q, path[i], 5000);
		cr_assert_eq(task, i, "connect %d: %s", i, strerror(errno));
	}
	while (exchange_queue_next(q, &m, 10000) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_eq(m.len, sizeof(v));
		memcpy(&v, m.data, sizeof(v));
		cr_assert(v >= 0 && v < 100);
		cr_assert_not(seen[v], "%d came twice", v);
		cr_assert_eq(m.task, (size_t)(v / 10));
		seen[v] = true;
		n++;
		channel_msg_free(&m);
	}
	cr_assert_eq(n, 100);
	exchange_free(q);
	for (i = 0; i < 10; i++)
		cr_assert(gone(path[i], 5000), "%s left", path[i]);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
	cr_assert_eq(rmdir(dir), 0);
}

/* The BackgroundCallable and BackgroundQueue pair. */
Test(persistent, background_queue, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 7, 5 }, v, n = 0;
	struct channel_msg m;
	struct exchange *q;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/bg.socket", dir);
	cr_assert_gt(exchange_background(path, produce, range, sizeof(range),
					 NULL), 0);
	q = exchange_background_queue(path, 5000);
	cr_assert_not_null(q, "background queue: %s", strerror(errno));
	while (exchange_queue_next(q, &m, 10000) == 1) {
		memcpy(&v, m.data, sizeof(v));
		cr_assert_eq(v, 7 + n);
		n++;
		channel_msg_free(&m);
	}
	cr_assert_eq(n, 5);
	exchange_free(q);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* ------------------------------------------------------------------------ */
/* The socket file                                                          */
/* ------------------------------------------------------------------------ */

Test(persistent, path_too_long, .timeout = 10)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 20];
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
	int fds = count_fds();

	/* Exactly sun_path bytes leaves no room for the NUL. */
	memset(path, 'a', sizeof(path));
	memcpy(path, "/tmp/", 5);
	path[max] = '\0';
	errno = 0;
	cr_assert_eq(channel_start_persistent(path, produce, NULL, 0, NULL),
		     -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	errno = 0;
	cr_assert_null(channel_connect(path, 0));
	cr_assert_eq(errno, ENAMETOOLONG);
	errno = 0;
	cr_assert_null(exchange_background_queue(path, 0));
	cr_assert_eq(errno, ENAMETOOLONG);
	path[sizeof(path) - 1] = '\0';
	cr_assert_eq(exchange_background(path, produce, NULL, 0, NULL), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	cr_assert_eq(channel_start_persistent("", produce, NULL, 0, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_start_persistent("/tmp/x", NULL, NULL, 0, NULL),
		     -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* The longest path that fits is accepted, not truncated. */
Test(persistent, longest_path_fits, .timeout = 30)
{
	char dir[64], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int range[2] = { 1, 1 }, v;
	struct channel *ch;
	size_t at;

	make_dir(dir, sizeof(dir));
	at = (size_t)snprintf(path, sizeof(path), "%s/", dir);
	memset(path + at, 'p', sizeof(path) - 1 - at);
	path[sizeof(path) - 1] = '\0';
	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0,
		     "start: %s", strerror(errno));
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(v, 1);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* A live listener keeps its address: a second start fails with
 * EADDRINUSE and the first process is undisturbed. A path that is no
 * socket is not replaced either. */
Test(persistent, address_in_use, .timeout = 30)
{
	char dir[64], path[128], file[128];
	int range[2] = { 5, 3 }, v, i, fd, fds;
	struct channel *ch;
	struct stat st;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/busy.socket", dir);
	snprintf(file, sizeof(file), "%s/plain-file", dir);
	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0);
	fds = count_fds();
	errno = 0;
	cr_assert_eq(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), -1);
	cr_assert_eq(errno, EADDRINUSE, "errno %d", errno);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());

	fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	errno = 0;
	cr_assert_eq(channel_start_persistent(file, produce, range,
					      sizeof(range), NULL), -1);
	cr_assert_eq(errno, EADDRINUSE);
	cr_assert_eq(lstat(file, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(unlink(file), 0);

	/* The first process still serves its address. */
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(recv_int(ch, &v), 1);
		cr_assert_eq(v, 5 + i);
	}
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* A socket file whose owner is gone (bound, closed, never unlinked) is
 * replaced. */
Test(persistent, stale_socket_file_is_replaced, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 3, 2 }, v, fd;
	struct sockaddr_un sa;
	struct channel *ch;
	struct stat st;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/stale.socket", dir);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	close(fd);
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	errno = 0;
	ch = channel_connect(path, 0);
	cr_assert_null(ch);
	cr_assert_eq(errno, ECONNREFUSED);

	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0,
		     "start over a stale file: %s", strerror(errno));
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(v, 3);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(v, 4);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* The socket file lets only its owner in, whatever the umask. */
Test(persistent, socket_file_is_0600, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 1 }, v;
	struct channel *ch;
	struct stat st;
	mode_t old;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/mode.socket", dir);
	old = umask(0);
	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0);
	umask(old);
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o",
		     (unsigned)(st.st_mode & 07777));
	cr_assert_eq(st.st_uid, geteuid());
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* Nothing is left behind after a normal end: no socket file, no
 * descriptor in the caller, no child, an empty directory. */
Test(persistent, nothing_left_behind, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 3 }, v, fds, round;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/clean.socket", dir);
	fds = count_fds();
	/* Twice at the same address: the first leaves it free. */
	for (round = 0; round < 2; round++) {
		cr_assert_gt(channel_start_persistent(path, produce, range,
						      sizeof(range), NULL),
			     0, "round %d: %s", round, strerror(errno));
		ch = channel_connect(path, 5000);
		cr_assert_not_null(ch);
		while (recv_int(ch, &v) == 1)
			;
		cr_assert_eq(channel_close(ch), 0);
		cr_assert(gone(path, 5000));
	}
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
	cr_assert_eq(rmdir(dir), 0, "rmdir: %s", strerror(errno));
}

/* Nobody listens: connect fails once its timeout has run out. */
Test(persistent, connect_to_nobody, .timeout = 10)
{
	char dir[64], path[128];
	int fds = count_fds();

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/none.socket", dir);
	errno = 0;
	cr_assert_null(channel_connect(path, 50));
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(exchange_connect(NULL, path, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */
/* ------------------------------------------------------------------------ */

/* fork fails on its fail_at-th call (counted in the caller and, after the
 * first fork, in the go-between that inherits the count). */
static int fork_calls, fork_fail_at;

static pid_t failing_fork(void)
{
	if (++fork_calls == fork_fail_at) {
		errno = EAGAIN;
		return -1;
	}
	return fork();
}

/* Either fork failing (the caller's, or the go-between's) gives -1 with
 * its errno, and leaves no descriptor, child or socket file. */
Test(persistent, fork_failure_leaves_nothing, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 1 }, fds, at;
	struct stat st;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/nofork.socket", dir);
	fds = count_fds();
	for (at = 1; at <= 2; at++) {
		fork_calls = 0;
		fork_fail_at = at;
		exchange_hooks.fork = failing_fork;
		errno = 0;
		cr_assert_eq(channel_start_persistent(path, produce, range,
						      sizeof(range), NULL),
			     -1, "fork %d", at);
		exchange_hooks.fork = NULL;
		cr_assert_eq(errno, EAGAIN, "fork %d: %s", at,
			     strerror(errno));
		cr_assert_eq(count_fds(), fds);
		cr_assert(no_children());
		cr_assert_eq(lstat(path, &st), -1);
	}
	cr_assert_eq(rmdir(dir), 0);
}

/* Sends "one", then waits for its peer to say anything. */
static void one_then_wait(struct channel *ch, const void *arg, size_t len,
			  void *ctx)
{
	struct channel_msg m;

	(void)arg;
	(void)len;
	(void)ctx;
	if (channel_send(ch, "one", 3, -1) < 0)
		return;
	if (channel_recv(ch, &m, -1) == 1)
		channel_msg_free(&m);
}

/* A process killed before it could clean up leaves its socket file; the
 * next start at that address replaces it. */
Test(persistent, killed_process_file_is_replaced, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 42, 1 }, v;
	struct channel_msg m;
	struct channel *ch;
	struct stat st;
	pid_t pid;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/killed.socket", dir);
	pid = channel_start_persistent(path, one_then_wait, NULL, 0, NULL);
	cr_assert_gt(pid, 0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "one");
	channel_msg_free(&m);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	/* Its end of the connection closes as it dies. */
	cr_assert_leq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	cr_assert(unlistened(path, 5000), "the killed process still listens");
	cr_assert_eq(lstat(path, &st), 0, "the killed process cleaned up?");

	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0,
		     "start: %s", strerror(errno));
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(v, 42);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* channel_exit in a persistent function still delivers what was sent. */
static void send_then_exit(struct channel *ch, const void *arg, size_t len,
			   void *ctx)
{
	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, "a", 1, -1);
	channel_send_error(ch, "b went wrong", -1);
	channel_exit(ch, 3);
}

Test(persistent, channel_exit_delivers_first, .timeout = 30)
{
	char dir[64], path[128];
	struct channel_msg m;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/exit.socket", dir);
	cr_assert_gt(channel_start_persistent(path, send_then_exit, NULL, 0,
					      NULL), 0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_str_eq(m.data, "a");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	cr_assert_eq(m.cause, CHANNEL_SENT_ERROR);
	cr_assert_str_eq(m.data, "b went wrong");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* Item streams have no message to acknowledge: refused in the process. */
static void tries_put(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	int items[4] = { 1, 2, 3, 4 }, res[2];

	(void)arg;
	(void)len;
	(void)ctx;
	res[0] = channel_put(ch, items, 4, sizeof(items[0]), -1);
	res[1] = errno;
	channel_send(ch, res, sizeof(res), -1);
}

Test(persistent, streams_are_refused, .timeout = 30)
{
	char dir[64], path[128];
	struct channel_msg m;
	struct channel *ch;
	int res[2];

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/put.socket", dir);
	cr_assert_gt(channel_start_persistent(path, tries_put, NULL, 0, NULL),
		     0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.len, sizeof(res));
	memcpy(res, m.data, sizeof(res));
	channel_msg_free(&m);
	cr_assert_eq(res[0], -1);
	cr_assert_eq(res[1], ENOTSUP);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* Refused in the peer too: a put on a connection sends nothing, and the
 * connection carries messages both ways afterwards. */
Test(persistent, peer_put_is_refused_and_the_link_still_works,
     .timeout = 30)
{
	char dir[64], path[128];
	struct channel *ch;
	int items[4] = { 1, 2, 3, 4 }, v, stop = -1;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/peerput.socket", dir);
	cr_assert_gt(channel_start_persistent(path, doubler, NULL, 0, NULL),
		     0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	errno = 0;
	cr_assert_eq(channel_put(ch, items, 4, sizeof(items[0]), 5000), -1);
	cr_assert_eq(errno, ENOTSUP, "errno %d", errno);
	errno = 0;
	cr_assert_eq(channel_put(ch, items, 0, sizeof(items[0]), 5000), -1);
	cr_assert_eq(errno, ENOTSUP, "errno %d", errno);
	v = 21;
	cr_assert_eq(channel_send(ch, &v, sizeof(v), 5000), 0);
	cr_assert_eq(recv_int(ch, &v), 1, "%s", strerror(errno));
	cr_assert_eq(v, 42);
	cr_assert_eq(channel_send(ch, &stop, sizeof(stop), 5000), 0);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* A large message, then a small one. The first peer gives up in the
 * middle of the large one; between the two peers each
 * message arrives exactly once, whole. */
#define BIG_LEN (3u << 20)

static void big_then_small(struct channel *ch, const void *arg, size_t len,
			   void *ctx)
{
	unsigned char *big = malloc(BIG_LEN);
	size_t k;

	(void)arg;
	(void)len;
	(void)ctx;
	if (!big)
		return;
	for (k = 0; k < BIG_LEN; k++)
		big[k] = (unsigned char)(k * 7 + k / 251);
	channel_send(ch, big, BIG_LEN, -1);
	free(big);
	channel_send(ch, "small", 5, -1);
}

static int check_msg(const struct channel_msg *m, int *big_seen,
		     int *small_seen)
{
	const unsigned char *p = m->data;
	size_t k;

	if (m->len == 5 && memcmp(p, "small", 5) == 0) {
		++*small_seen;
		return 0;
	}
	if (m->len != BIG_LEN)
		return -1;
	for (k = 0; k < BIG_LEN; k++)
		if (p[k] != (unsigned char)(k * 7 + k / 251))
			return -1;
	++*big_seen;
	return 0;
}

Test(persistent, large_message_across_peers, .timeout = 60)
{
	char dir[64], path[128];
	int big_seen = 0, small_seen = 0, r, round;
	struct channel_msg m;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/big.socket", dir);
	cr_assert_gt(channel_start_persistent(path, big_then_small, NULL, 0,
					      NULL), 0);
	for (round = 0; round < 2; round++) {
		ch = channel_connect(path, 5000);
		cr_assert_not_null(ch, "connect: %s", strerror(errno));
		if (round == 0) {
			/* Short receives until half the large message is
			 * here (or, on a fast day, all of it), then away. */
			do
				r = channel_recv(ch, &m, 1);
			while (r < 0 && errno == ETIMEDOUT &&
			       channel_size(ch) < (ssize_t)(BIG_LEN / 2));
			cr_assert(r == 1 || errno == ETIMEDOUT, "%s",
				  strerror(errno));
			if (r == 1) {
				cr_assert_eq(check_msg(&m, &big_seen,
						       &small_seen), 0);
				channel_msg_free(&m);
			}
			channel_close(ch);
			continue;
		}
		while ((r = channel_recv(ch, &m, 10000)) == 1) {
			cr_assert_eq(check_msg(&m, &big_seen, &small_seen), 0);
			channel_msg_free(&m);
		}
		cr_assert_eq(r, 0, "%s", strerror(errno));
		channel_close(ch);
	}
	cr_assert_eq(big_seen, 1);
	cr_assert_eq(small_seen, 1);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* One exchange holds a connection and a local child side by side. */
static void local_child(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	int v = -7;

	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, &v, sizeof(v), -1);
}

Test(persistent, exchange_mixes_connections_and_children, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 3 }, v, sum = 0, n = 0;
	struct channel_msg m;
	struct exchange *q;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/mixed.socket", dir);
	cr_assert_gt(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), 0);
	q = exchange_new_queue(NULL);
	cr_assert_not_null(q);
	cr_assert_eq(exchange_start(q, local_child, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_connect(q, path, 5000), 1);
	while (exchange_queue_next(q, &m, 10000) == 1) {
		cr_assert_eq(m.len, sizeof(v));
		memcpy(&v, m.data, sizeof(v));
		sum += v;
		n++;
		channel_msg_free(&m);
	}
	cr_assert_eq(n, 4);
	cr_assert_eq(sum, 0 + 1 + 2 - 7);
	exchange_free(q);
	cr_assert(gone(path, 5000));
	cr_assert(no_children());
	cr_assert_eq(rmdir(dir), 0);
}

/* Waits (not accepting anyone) until the test writes to the pipe whose
 * read end is arg, then sends one message. */
static void wait_for_go(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	int fd = *(const int *)arg, v = 9;
	char c;

	(void)len;
	(void)ctx;
	if (read(fd, &c, 1) != 1)
		return;
	close(fd);
	channel_send(ch, &v, sizeof(v), -1);
}

/* A listener whose backlog is full is still alive: its address is not
 * taken over, and it serves its peers once it gets round to them. */
Test(persistent, full_backlog_is_not_stale, .timeout = 30)
{
	char dir[64], path[128];
	int range[2] = { 0, 1 }, go[2], conns[200], n = 0, i, v;
	struct sockaddr_un sa;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/backlog.socket", dir);
	cr_assert_eq(pipe(go), 0);
	cr_assert_gt(channel_start_persistent(path, wait_for_go, &go[0],
					      sizeof(go[0]), NULL), 0);
	close(go[0]);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	/* Fill the backlog with connections nobody accepts yet. */
	for (n = 0; n < 200; n++) {
		conns[n] = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert_geq(conns[n], 0);
		fcntl(conns[n], F_SETFL, O_NONBLOCK);
		if (connect(conns[n], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
			close(conns[n]);
			break;
		}
	}
	cr_assert_lt(n, 200, "the backlog never filled");
	errno = 0;
	cr_assert_eq(channel_start_persistent(path, produce, range,
					      sizeof(range), NULL), -1);
	cr_assert_eq(errno, EADDRINUSE, "%s", strerror(errno));
	for (i = 0; i < n; i++)
		close(conns[i]);
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(recv_int(ch, &v), 1);
	cr_assert_eq(v, 9);
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* Five small messages, a large one, a small one. */
static void smalls_big_small(struct channel *ch, const void *arg, size_t len,
			     void *ctx)
{
	unsigned char *big = malloc(BIG_LEN);
	size_t k;
	int i;

	(void)arg;
	(void)len;
	(void)ctx;
	if (!big)
		return;
	for (k = 0; k < BIG_LEN; k++)
		big[k] = (unsigned char)(k * 7 + k / 251);
	for (i = 0; i < 5; i++)
		channel_send(ch, &i, sizeof(i), -1);
	channel_send(ch, big, BIG_LEN, -1);
	free(big);
	channel_send(ch, "small", 5, -1);
}

/* The first peer acknowledges the small messages while the process is
 * busy writing the large one, then leaves half way through it: those
 * acknowledgements still count, and the second peer receives only the
 * large message and the last one. */
Test(persistent, acks_during_a_large_write_count, .timeout = 60)
{
	char dir[64], path[128];
	int big_seen = 0, small_seen = 0, r, v, i;
	struct channel_msg m;
	struct channel *ch;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/acks.socket", dir);
	cr_assert_gt(channel_start_persistent(path, smalls_big_small, NULL, 0,
					      NULL), 0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	/* Let the process fill the connection and block in the large
	 * write, so the acknowledgements below reach it there. (The pause
	 * only makes that order likely; what is asserted holds in any.) */
	sleep_ms(200);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(recv_int(ch, &v), 1);
		cr_assert_eq(v, i);
	}
	do
		r = channel_recv(ch, &m, 1);
	while (r < 0 && errno == ETIMEDOUT &&
	       channel_size(ch) < (ssize_t)(BIG_LEN / 2));
	if (r == 1) {
		cr_assert_eq(check_msg(&m, &big_seen, &small_seen), 0);
		channel_msg_free(&m);
	}
	channel_close(ch);

	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	while ((r = channel_recv(ch, &m, 10000)) == 1) {
		cr_assert_eq(check_msg(&m, &big_seen, &small_seen), 0,
			     "unexpected message of %zu bytes", m.len);
		channel_msg_free(&m);
	}
	cr_assert_eq(r, 0, "%s", strerror(errno));
	channel_close(ch);
	cr_assert_eq(big_seen, 1);
	cr_assert_eq(small_seen, 1);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* The number of listening sockets this process has open. */
static int listening_sockets(void)
{
	int fd, on, n = 0;
	socklen_t len;

	for (fd = 0; fd < 1024; fd++) {
		on = 0;
		len = sizeof(on);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 &&
		    on)
			n++;
	}
	return n;
}

static void count_listeners(struct channel *ch, const void *arg, size_t len,
			    void *ctx)
{
	int n = listening_sockets();

	(void)arg;
	(void)len;
	(void)ctx;
	channel_send(ch, &n, sizeof(n), -1);
}

/* Processes the persistent function forks do not hold its listening
 * socket (so it closes when the process ends, even if they live on). */
static void forks_a_child(struct channel *ch, const void *arg, size_t len,
			  void *ctx)
{
	struct channel *child;
	struct channel_msg m;
	int counts[2] = { listening_sockets(), -1 };

	(void)arg;
	(void)len;
	(void)ctx;
	child = channel_start(count_listeners, NULL, 0, NULL);
	if (child && channel_recv(child, &m, 5000) == 1) {
		if (m.len == sizeof(int))
			memcpy(&counts[1], m.data, sizeof(int));
		channel_msg_free(&m);
	}
	channel_close(child);
	channel_send(ch, counts, sizeof(counts), -1);
}

Test(persistent, children_do_not_hold_the_listener, .timeout = 30)
{
	char dir[64], path[128];
	struct channel_msg m;
	struct channel *ch;
	int counts[2];

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/fork.socket", dir);
	cr_assert_gt(channel_start_persistent(path, forks_a_child, NULL, 0,
					      NULL), 0);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 10000), 1);
	cr_assert_eq(m.len, sizeof(counts));
	memcpy(counts, m.data, sizeof(counts));
	channel_msg_free(&m);
	cr_assert_geq(counts[0], 1, "the process does not listen?");
	cr_assert_eq(counts[1], counts[0] - 1, "process %d, its child %d",
		     counts[0], counts[1]);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* ------------------------------------------------------------------------ */
/* Persistent work under an exchange's limit                                */
/* ------------------------------------------------------------------------ */

/* Collects the 3 * n values of a limit-1 queue whose task k sent 3k to
 * 3k + 2, checking each came once under its own task number. */
static void collect_triples(struct exchange *q, int n)
{
	bool seen[30] = { false };
	struct channel_msg m;
	int v, got = 0;

	while (exchange_queue_next(q, &m, 10000) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		memcpy(&v, m.data, sizeof(v));
		cr_assert(v >= 0 && v < 3 * n);
		cr_assert_not(seen[v]);
		cr_assert_eq(m.task, (size_t)(v / 3));
		seen[v] = true;
		got++;
		channel_msg_free(&m);
	}
	cr_assert_eq(got, 3 * n);
}

/* exchange_start_persistent queues while the exchange is busy, as pprocess
 * does: with limit 1 each start returns its task number at once, the later
 * ones are not started (their addresses are not there) until the work
 * before them has ended, and every message arrives under its task. */
Test(persistent, start_through_an_exchange_queues_under_its_limit,
     .timeout = 60)
{
	struct exchange_options o = { .limit = 1 };
	char dir[64], path[3][128];
	struct exchange *q;
	int range[2], i, fds;

	make_dir(dir, sizeof(dir));
	fds = count_fds();
	q = exchange_new_queue(&o);
	cr_assert_not_null(q);
	for (i = 0; i < 3; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/limited-%d.socket", dir,
			 i);
		range[0] = 3 * i;
		range[1] = 3;
		cr_assert_eq(exchange_start_persistent(q, path[i], produce,
						       range, sizeof(range),
						       NULL, 5000), i,
			     "start %d: %s", i, strerror(errno));
		cr_assert_leq(exchange_active(q, NULL, 0), 1);
	}
	cr_assert_eq(access(path[0], F_OK), 0, "the first started at once");
	cr_assert_eq(access(path[1], F_OK), -1, "the second is queued");
	cr_assert_eq(access(path[2], F_OK), -1, "the third is queued");
	collect_triples(q, 3);
	cr_assert_eq(exchange_start_persistent(NULL, path[0], produce, range,
					       sizeof(range), NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(exchange_start_persistent(q, NULL, produce, range,
					       sizeof(range), NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_free(q);
	for (i = 0; i < 3; i++)
		cr_assert(gone(path[i], 5000), "%s left", path[i]);
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}

/* Checks that task i of map has the outcome NOT_STARTED with code err. */
static void assert_not_started(struct exchange *map, size_t i, int err)
{
	struct channel_msg m;

	cr_assert_eq(exchange_map_get(map, i, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE, "task %zu: kind %d", i, m.kind);
	cr_assert_eq(m.cause, CHANNEL_NOT_STARTED, "task %zu: cause %d", i,
		     m.cause);
	cr_assert_eq(m.code, err, "task %zu: code %d (%s), not %d", i, m.code,
		     strerror(m.code), err);
}

/* Checks that task i of map sent the int 9 first. */
static void assert_nine(struct exchange *map, size_t i)
{
	struct channel_msg m;
	int v;

	cr_assert_eq(exchange_map_get(map, i, &m, 10000), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA, "task %zu: kind %d", i, m.kind);
	cr_assert_eq(m.len, sizeof(v));
	memcpy(&v, m.data, sizeof(v));
	cr_assert_eq(v, 9);
}

/* Queued persistent work cancelled, or whose process cannot listen, has
 * the one outcome NOT_STARTED with the reason as its code; the cancelled
 * one is never started. */
Test(persistent, queued_start_cancelled_or_failing_is_an_outcome,
     .timeout = 60)
{
	struct exchange_options o = { .limit = 1 };
	char dir[64], path[128], path2[128];
	int go[2], range[2] = { 0, 1 }, fds;
	struct exchange *map;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/first.socket", dir);
	snprintf(path2, sizeof(path2), "%s/cancelled.socket", dir);
	fds = count_fds();
	cr_assert_eq(pipe(go), 0);
	map = exchange_new_map(&o);
	cr_assert_not_null(map);
	cr_assert_eq(exchange_start_persistent(map, path, wait_for_go, &go[0],
					       sizeof(go[0]), NULL, 5000), 0);
	close(go[0]);
	cr_assert_eq(exchange_start_persistent(map, path2, produce, range,
					       sizeof(range), NULL, 5000), 1);
	cr_assert_eq(exchange_start_persistent(map,
					       "/nonexistent-xchg-dir/x.socket",
					       produce, range, sizeof(range),
					       NULL, 5000), 2);
	cr_assert_eq(exchange_cancel(map, 1), 0, "%s", strerror(errno));
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	assert_nine(map, 0);
	assert_not_started(map, 1, ECANCELED);
	assert_not_started(map, 2, ENOENT);
	cr_assert_eq(exchange_finish(map), 0);
	cr_assert_eq(access(path2, F_OK), -1, "the cancelled one started");
	exchange_free(map);
	cr_assert(gone(path, 5000));
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}

/* exchange_manage_persistent (pprocess's Persistent.manage): each call
 * starts the function at the handle's address under the limit; a call
 * while the last call's process still listens there fails with
 * EADDRINUSE, and one after it has gone starts a new process. */
Test(persistent, managed_persistent_calls_start_at_its_address,
     .timeout = 60)
{
	struct exchange_options o = { .limit = 2 };
	struct exchange_managed *m;
	char dir[64], path[128];
	struct exchange *map;
	int go[2], fds;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/managed.socket", dir);
	fds = count_fds();
	map = exchange_new_map(&o);
	cr_assert_not_null(map);
	m = exchange_manage_persistent(map, path, wait_for_go, NULL, 5000);
	cr_assert_not_null(m);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(exchange_call(m, &go[0], sizeof(go[0])), 0);
	cr_assert_eq(exchange_call(m, &go[0], sizeof(go[0])), 1);
	close(go[0]);
	assert_not_started(map, 1, EADDRINUSE);
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	assert_nine(map, 0);
	cr_assert(gone(path, 5000));
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(exchange_call(m, &go[0], sizeof(go[0])), 2);
	close(go[0]);
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	assert_nine(map, 2);
	cr_assert_eq(exchange_finish(map), 0);
	cr_assert_null(exchange_manage_persistent(NULL, path, wait_for_go,
						  NULL, 0));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(exchange_manage_persistent(map, NULL, wait_for_go,
						  NULL, 0));
	cr_assert_eq(errno, EINVAL);
	exchange_free(map);
	cr_assert(gone(path, 5000));
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}

/* exchange_connect counts under the limit too (pprocess's connect uses
 * add_wait): the second connection comes once the first has ended. */
Test(persistent, connect_waits_under_the_limit, .timeout = 60)
{
	struct exchange_options o = { .limit = 1 };
	char dir[64], path[2][128];
	struct exchange *q;
	int range[2], i;

	make_dir(dir, sizeof(dir));
	for (i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/wait-%d.socket", dir,
			 i);
		range[0] = 3 * i;
		range[1] = 3;
		cr_assert_gt(channel_start_persistent(path[i], produce, range,
						      sizeof(range), NULL), 0);
	}
	q = exchange_new_queue(&o);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(exchange_connect(q, path[i], 5000), i);
		cr_assert_eq(exchange_active(q, NULL, 0), 1);
		cr_assert_geq(exchange_queue_len(q), (size_t)(3 * i));
	}
	collect_triples(q, 2);
	exchange_free(q);
	for (i = 0; i < 2; i++)
		cr_assert(gone(path[i], 5000));
	cr_assert_eq(rmdir(dir), 0);
}

/* channel_create_persistent (pprocess create_persistent): the new process
 * goes on with the caller's code, and what it sends before channel_exit
 * waits for whoever connects. */
Test(persistent, create_persistent_goes_on_in_the_callers_code,
     .timeout = 30)
{
	char dir[64], path[128];
	struct channel *child, *ch;
	int v, fds;
	pid_t pid;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/created.socket", dir);
	fds = count_fds();
	pid = channel_create_persistent(path, &child);
	if (pid == 0) {
		for (v = 40; v < 43; v++)
			channel_send(child, &v, sizeof(v), -1);
		channel_exit(child, 0);
	}
	cr_assert_gt(pid, 0, "%s", strerror(errno));
	cr_assert_null(child);
	ch = channel_connect(path, 5000);
	cr_assert_not_null(ch);
	for (v = 40; v < 43; v++) {
		int got;

		cr_assert_eq(recv_int(ch, &got), 1);
		cr_assert_eq(got, v);
	}
	cr_assert_eq(recv_int(ch, &v), 0);
	channel_close(ch);
	cr_assert(gone(path, 5000));
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(channel_create_persistent(path, NULL), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(rmdir(dir), 0);
}

/* exchange_create_persistent (pprocess Persistent.create): the new
 * process's messages reach the exchange's queue under its task number, and
 * it counts under the limit: the second create waits for the first. */
Test(persistent, exchange_create_persistent_under_the_limit, .timeout = 60)
{
	struct exchange_options o = { .limit = 1 };
	char dir[64], path[2][128];
	struct channel *child;
	struct exchange *q;
	struct channel_msg m;
	int i, v, got = 0, fds;
	pid_t pid;

	make_dir(dir, sizeof(dir));
	fds = count_fds();
	q = exchange_new_queue(&o);
	cr_assert_not_null(q);
	for (i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/made-%d.socket", dir, i);
		pid = exchange_create_persistent(q, path[i], &child, 5000);
		if (pid == 0) {
			for (v = 10 * i; v < 10 * i + 3; v++)
				channel_send(child, &v, sizeof(v), -1);
			channel_exit(child, 0);
		}
		cr_assert_gt(pid, 0, "create %d: %s", i, strerror(errno));
		cr_assert_leq(exchange_active(q, NULL, 0), 1);
		cr_assert_geq(exchange_queue_len(q), (size_t)(3 * i),
			      "the first had ended before the second");
	}
	while (exchange_queue_next(q, &m, 10000) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		memcpy(&v, m.data, sizeof(v));
		cr_assert_eq(m.task, (size_t)(v / 10));
		cr_assert_lt(v % 10, 3);
		got++;
		channel_msg_free(&m);
	}
	cr_assert_eq(got, 6);
	cr_assert_eq(exchange_create_persistent(NULL, path[0], &child, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(exchange_create_persistent(q, path[0], NULL, 0), -1);
	cr_assert_eq(errno, EINVAL);
	exchange_free(q);
	for (i = 0; i < 2; i++)
		cr_assert(gone(path[i], 5000), "%s left", path[i]);
	cr_assert_eq(count_fds(), fds);
	cr_assert_eq(rmdir(dir), 0);
}
