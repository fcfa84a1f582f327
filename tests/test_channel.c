/*
 * test_channel.c - one channel between the test and one forked process.
 *
 * Children report only through their channel or their exit status; every
 * assertion stays in the test body. Each test that waits on a child has a
 * timeout, and most check that the descriptors open before are the ones
 * open after and that the child was reaped.
 */
#include "exchange.h"
#include "channel_impl.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Children of these tests block on their channel rather than sleeping:
 * the parent's close or a message wakes them. */
static void wait_for_parent(struct channel *ch)
{
	struct channel_msg m;

	while (channel_recv(ch, &m, -1) == 1)
		channel_msg_free(&m);
}

static void echo_fn(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	struct channel_msg m;

	(void)ctx;
	channel_send(ch, arg, len, -1);
	while (channel_recv(ch, &m, -1) == 1) {
		channel_send(ch, m.data, m.len, -1);
		channel_msg_free(&m);
	}
}

static void silent_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	(void)ch, (void)arg, (void)len, (void)ctx;
}

Test(channel, create_runs_child_with_pid_zero, .timeout = 10)
{
	int fds = count_fds();
	struct channel *ch = channel_create();
	struct channel_msg m;
	pid_t pid;
	int st;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		/* The child tells the parent what it sees. */
		pid_t mine = getpid();

		channel_send(ch, &mine, sizeof(mine), -1);
		channel_exit(ch, 7);
	}
	pid = channel_pid(ch);
	cr_assert_gt(pid, 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_DATA);
	cr_assert_eq(m.len, sizeof(pid_t));
	cr_assert_eq(*(pid_t *)m.data, pid);
	cr_assert_eq(m.task, CHANNEL_NO_TASK);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0, "end of stream");
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 7);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert(reaped(pid));
	cr_assert_eq(count_fds(), fds);
}

Test(channel, start_echoes_in_both_directions, .timeout = 10)
{
	int fds = count_fds();
	struct channel *ch = channel_start(echo_fn, "hello", 5, NULL);
	struct channel_msg m;
	char buf[32];
	pid_t pid;
	int i;

	cr_assert_not_null(ch);
	pid = channel_pid(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.len, 5);
	cr_assert_str_eq(m.data, "hello", "payloads are NUL-terminated");
	channel_msg_free(&m);
	for (i = 0; i < 100; i++) {
		snprintf(buf, sizeof(buf), "ping %d", i);
		cr_assert_eq(channel_send(ch, buf, strlen(buf), 5000), 0);
		cr_assert_eq(channel_recv(ch, &m, 5000), 1);
		cr_assert_str_eq(m.data, buf);
		channel_msg_free(&m);
	}
	cr_assert_eq(channel_close(ch), 0);
	cr_assert(reaped(pid));
	cr_assert_eq(count_fds(), fds);
}

Test(channel, function_without_result_is_end_of_stream, .timeout = 10)
{
	struct channel *ch = channel_start(silent_fn, NULL, 0, NULL);
	struct channel_msg m;
	int st;

	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_active(ch), 0);
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	channel_close(ch);
}

Test(channel, child_exit_status_and_signal_are_kept, .timeout = 10)
{
	struct channel *a = channel_create(), *b;
	struct channel_msg m;
	int st;

	cr_assert_not_null(a);
	if (channel_pid(a) == 0)
		channel_exit(a, 3);
	b = channel_create();
	cr_assert_not_null(b);
	if (channel_pid(b) == 0) {
		kill(getpid(), SIGKILL);
		channel_exit(b, 0);
	}
	cr_assert_eq(channel_recv(a, &m, 5000), 0);
	cr_assert_eq(channel_recv(b, &m, 5000), 0);
	cr_assert_eq(channel_wait(a, 5000), 0);
	cr_assert_eq(channel_wait(b, 5000), 0);
	cr_assert_eq(channel_status(a, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3);
	cr_assert_eq(channel_status(b, &st), 1);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	channel_close(a);
	channel_close(b);
	cr_assert(no_children());
}

Test(channel, error_frame_is_not_data, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		channel_send_error(ch, "disk on fire", -1);
		channel_exit(ch, 1);
	}
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	cr_assert_eq(m.cause, CHANNEL_SENT_ERROR);
	cr_assert_str_eq(m.data, "disk on fire");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
}

/* A child that sends and leaves at once still has everything delivered:
 * the parent reads to end of stream, with no acknowledgement. */
Test(channel, send_and_exit_loses_nothing, .timeout = 20)
{
	struct channel *ch = channel_create();
	struct channel_msg m;
	int i, n = 0;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		for (i = 0; i < 5000; i++)
			channel_send(ch, &i, sizeof(i), -1);
		_exit(0);
	}
	while (channel_recv(ch, &m, 5000) == 1) {
		cr_assert_eq(*(int *)m.data, n);
		n++;
		channel_msg_free(&m);
	}
	cr_assert_eq(n, 5000);
	channel_close(ch);
}

static void sizes_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	const size_t *sizes = arg;
	size_t i, j;

	(void)ctx;
	for (i = 0; i < len / sizeof(size_t); i++) {
		unsigned char *p = malloc(sizes[i] ? sizes[i] : 1);

		if (!p)
			channel_exit(ch, 99);
		for (j = 0; j < sizes[i]; j++)
			p[j] = (unsigned char)(j * 31 + i);
		if (channel_send(ch, p, sizes[i], -1) < 0)
			channel_exit(ch, 98);
		free(p);
	}
}

Test(channel, messages_of_every_size, .timeout = 60)
{
	size_t sizes[] = {
		0, 1, 15, 16, 4095, 65535, 65536, 65537, 262143, 262144,
		1 << 20, (1 << 20) + 3, 256u << 20,
	};
	int fds = count_fds();
	struct channel *ch;

	/* valgrind checks every byte: 32 MiB there, 256 MiB otherwise. */
	if (slow_run())
		sizes[sizeof(sizes) / sizeof(sizes[0]) - 1] = 32u << 20;
	ch = channel_start(sizes_fn, sizes, sizeof(sizes), NULL);
	struct channel_msg m;
	size_t i, j;
	int st;

	cr_assert_not_null(ch);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		const unsigned char *p;

		cr_assert_eq(channel_recv(ch, &m, 30000), 1, "message %zu", i);
		cr_assert_eq(m.len, sizes[i]);
		p = m.data;
		for (j = 0; j < m.len; j++)
			if (p[j] != (unsigned char)(j * 31 + i))
				break;
		cr_assert_eq(j, m.len, "payload %zu intact", i);
		cr_assert_eq(p[m.len], 0);
		channel_msg_free(&m);
	}
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert_eq(WEXITSTATUS(st), 0);
	channel_close(ch);
	cr_assert_eq(count_fds(), fds);
}

Test(channel, large_messages_parent_to_child, .timeout = 30)
{
	size_t len = 16u << 20, i;
	unsigned char *p = malloc(len);
	struct channel *ch = channel_start(echo_fn, "x", 1, NULL);
	struct channel_msg m;

	cr_assert_not_null(p);
	cr_assert_not_null(ch);
	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	channel_msg_free(&m);
	/* The child echoes while the parent still sends: the parent must
	 * not block sending while the child blocks sending back. So send
	 * and then receive one message at a time, each smaller than what
	 * the two pipes buffer together is not required: the child reads
	 * the whole message before answering. */
	cr_assert_eq(channel_send(ch, p, len, 10000), 0);
	cr_assert_eq(channel_recv(ch, &m, 10000), 1);
	cr_assert_eq(m.len, len);
	cr_assert_eq(memcmp(m.data, p, len), 0);
	channel_msg_free(&m);
	free(p);
	channel_close(ch);
}

Test(channel, maximum_is_enforced_before_allocation, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;
	char big[100] = { 0 };

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		channel_send(ch, big, 10, -1);
		channel_send(ch, big, 100, -1);
		wait_for_parent(ch);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_set_max(ch, 50), 0);
	cr_assert_eq(channel_send(ch, big, 51, 1000), -1);
	cr_assert_eq(errno, EMSGSIZE);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.len, 10);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), -1);
	cr_assert_eq(errno, EMSGSIZE);
	/* The channel stays failed rather than reading a payload as a
	 * header. */
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, EMSGSIZE);
	channel_close(ch);
}

/* Writes raw bytes on the child's side of a channel, as a broken peer
 * would, and leaves. */
static struct channel *raw_child(const void *bytes, size_t len)
{
	struct channel *ch = channel_create();

	if (ch && channel_pid(ch) == 0) {
		const char *p = bytes;

		while (len > 0) {
			ssize_t n = write(ch->wfd, p, len);

			if (n <= 0)
				_exit(1);
			p += n;
			len -= (size_t)n;
		}
		_exit(0);
	}
	return ch;
}

static void expect_bad_frame(const void *bytes, size_t len, int err)
{
	struct channel *ch = raw_child(bytes, len);
	struct channel_msg m = { 0 };

	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), -1);
	cr_assert_eq(errno, err, "errno %d, expected %d", errno, err);
	cr_assert_null(m.data);
	cr_assert_eq(channel_close(ch), 0);
}

Test(channel, bad_frames_fail_cleanly, .timeout = 20)
{
	unsigned char h[FRAME_HEADER_SIZE + 4];
	struct frame_header fh;
	int fds = count_fds();

	/* A header that claims an absurd length. */
	frame_encode(h, FRAME_DATA, (uint64_t)1 << 60);
	expect_bad_frame(h, FRAME_HEADER_SIZE, EMSGSIZE);
	/* A length below the header. */
	fh = (struct frame_header){ .size = 3, .kind = FRAME_DATA,
				    .magic = FRAME_MAGIC };
	memcpy(h, &fh, sizeof(fh));
	expect_bad_frame(h, FRAME_HEADER_SIZE, EPROTO);
	/* An unknown kind. */
	fh = (struct frame_header){ .size = 16, .kind = 99,
				    .magic = FRAME_MAGIC };
	memcpy(h, &fh, sizeof(fh));
	expect_bad_frame(h, FRAME_HEADER_SIZE, EPROTO);
	/* Not a frame at all. */
	expect_bad_frame("GET / HTTP/1.0\r\n\r\n", 18, EPROTO);
	/* A header cut short by end of stream. */
	frame_encode(h, FRAME_DATA, 4);
	expect_bad_frame(h, 9, ECONNRESET);
	/* A payload cut short. */
	memcpy(h + FRAME_HEADER_SIZE, "ab", 2);
	expect_bad_frame(h, FRAME_HEADER_SIZE + 2, ECONNRESET);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(channel, writing_to_a_gone_reader_is_epipe, .timeout = 10)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL }, old;
	struct channel *ch;
	struct channel_msg m;
	char buf[4096] = { 0 };
	int i, rc = 0;

	/* The default disposition would kill the test on SIGPIPE. */
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGPIPE, &dfl, &old);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0)
		channel_exit(ch, 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	for (i = 0; i < 100 && rc == 0; i++)
		rc = channel_send(ch, buf, sizeof(buf), 1000);
	cr_assert_eq(rc, -1);
	cr_assert_eq(errno, EPIPE);
	{
		sigset_t pending;

		sigpending(&pending);
		cr_assert_not(sigismember(&pending, SIGPIPE),
			      "the SIGPIPE was consumed");
	}
	channel_close(ch);
	sigaction(SIGPIPE, &old, NULL);
}

Test(channel, socket_link_behaves_the_same, .timeout = 10)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL }, old;
	struct channel *ch;
	struct channel_msg m;
	int fds = count_fds(), i, rc = 0;
	pid_t pid;

	sigemptyset(&dfl.sa_mask);
	sigaction(SIGPIPE, &dfl, &old);
	pid = channel_fork(&ch, CHANNEL_LINK_SOCKET);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (channel_recv(ch, &m, -1) == 1)
			channel_send(ch, m.data, m.len, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, "over a socket", 13, 1000), 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "over a socket");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	for (i = 0; i < 1000 && rc == 0; i++)
		rc = channel_send(ch, "x", 1, 1000);
	cr_assert_eq(rc, -1);
	cr_assert(errno == EPIPE || errno == ECONNRESET);
	channel_close(ch);
	sigaction(SIGPIPE, &old, NULL);
	cr_assert_eq(count_fds(), fds);
	cr_assert(reaped(pid));
}

Test(channel, receive_times_out_distinctly_from_eof, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;
	struct timespec t0, t1;
	long ms;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		wait_for_parent(ch);
		channel_exit(ch, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(channel_recv(ch, &m, 50), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_geq(ms, 49, "waited %ld ms", ms);
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(channel_ready(ch, 0), 0);
	cr_assert_eq(channel_active(ch), 1);
	channel_close(ch);
}

Test(channel, send_into_a_full_channel_times_out, .timeout = 10)
{
	struct channel *ch = channel_create();
	size_t len = 8u << 20;
	char *p = calloc(1, len);

	cr_assert_not_null(ch);
	cr_assert_not_null(p);
	if (channel_pid(ch) == 0) {
		/* Never reads: waits for its parent to close. */
		struct pollfd pf = { .fd = ch->rfd, .events = 0 };

		poll(&pf, 1, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, p, len, 100), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	/* Part of a frame went out: this direction can no longer send. */
	cr_assert_eq(channel_send(ch, "x", 1, 0), -1);
	cr_assert_eq(errno, ECONNABORTED);
	free(p);
	channel_close(ch);
}

Test(channel, ready_active_and_size, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		channel_send(ch, "0123456789", 10, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_ready(ch, 5000), 1);
	cr_assert_geq(channel_size(ch), (ssize_t)(FRAME_HEADER_SIZE + 10));
	cr_assert_eq(channel_active(ch), 1);
	cr_assert_eq(channel_recv(ch, &m, 0), 1);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_active(ch), 0);
	cr_assert_eq(channel_size(ch), 0);
	cr_assert_eq(channel_ready(ch, 0), 1, "a receive returns at once");
	channel_close(ch);
}

Test(channel, peek_then_receive_the_same_message, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg p, m;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		channel_send(ch, "first", 5, -1);
		channel_send(ch, "second", 6, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_peek(ch, &p, 5000), 1);
	cr_assert_str_eq(p.data, "first");
	cr_assert_eq(channel_peek(ch, &p, 5000), 1);
	cr_assert_str_eq(p.data, "first");
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "first");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "second");
	channel_msg_free(&m);
	channel_close(ch);
}

/* A failure frame too short for its cause and code: peek lends what
 * receive gives, an empty text with the default cause and code. */
Test(channel, peek_agrees_with_receive_on_a_short_failure, .timeout = 10)
{
	unsigned char f[FRAME_HEADER_SIZE + 3];
	struct channel *ch;
	struct channel_msg p, m;

	/* Preloaded: a FAILURE frame from the other side is refused. */
	frame_encode(f, FRAME_FAILURE, 3);
	memcpy(f + FRAME_HEADER_SIZE, "abc", 3);
	ch = raw_child("", 0);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_preload(ch, f, sizeof(f)), 0);
	cr_assert_eq(channel_peek(ch, &p, 5000), 1);
	cr_assert_eq(p.kind, CHANNEL_FAILURE);
	cr_assert_eq(p.len, 0);
	cr_assert_str_eq(p.data, "");
	cr_assert_eq(p.cause, CHANNEL_PROTOCOL);
	cr_assert_eq(p.code, EPROTO);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_FAILURE);
	cr_assert_eq(m.len, 0);
	cr_assert_str_eq(m.data, "");
	cr_assert_eq(m.cause, p.cause);
	cr_assert_eq(m.code, p.code);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_close(ch), 0);
}

Test(channel, flush_and_preload_move_messages, .timeout = 10)
{
	struct channel *a = channel_create(), *b;
	struct channel_msg m;
	void *frames;
	size_t len;
	int i;

	cr_assert_not_null(a);
	if (channel_pid(a) == 0) {
		for (i = 0; i < 5; i++)
			channel_send(a, &i, sizeof(i), -1);
		channel_send_error(a, "and an error", -1);
		channel_exit(a, 0);
	}
	b = channel_create();
	cr_assert_not_null(b);
	if (channel_pid(b) == 0) {
		i = 100;
		channel_send(b, &i, sizeof(i), -1);
		channel_exit(b, 0);
	}
	/* Drain a (waiting for its end of stream) into one buffer. */
	cr_assert_eq(channel_flush(a, &frames, &len, 5000), 6);
	cr_assert_eq(channel_recv(a, &m, 0), 0);
	/* Wait for b's message to be there, then put a's in front of it. */
	cr_assert_eq(channel_ready(b, 5000), 1);
	cr_assert_eq(channel_preload(b, frames, len), 0);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(channel_recv(b, &m, 5000), 1);
		cr_assert_eq(*(int *)m.data, i);
		channel_msg_free(&m);
	}
	cr_assert_eq(channel_recv(b, &m, 5000), 1);
	cr_assert_eq(m.kind, CHANNEL_ERROR);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(b, &m, 5000), 1);
	cr_assert_eq(*(int *)m.data, 100);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(b, &m, 5000), 0);
	/* Bytes that are not whole frames are refused, and nothing moves. */
	cr_assert_eq(channel_preload(b, frames, len - 1), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_preload(b, "garbage garbage!", 16), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_recv(b, &m, 0), 0);
	free(frames);
	channel_close(a);
	channel_close(b);
}

/* A truncated header (fewer than 16 bytes) is EPROTO whatever errno held
 * before the call. */
Test(channel, preload_of_a_truncated_header_is_eproto, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0)
		channel_exit(ch, 0);
	errno = EMSGSIZE;
	cr_assert_eq(channel_preload(ch, "trunc", 5), -1);
	cr_assert_eq(errno, EPROTO, "errno %d", errno);
	errno = 0;
	cr_assert_eq(channel_preload(ch, "trunc", 5), -1);
	cr_assert_eq(errno, EPROTO, "errno %d", errno);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0, "nothing was preloaded");
	cr_assert_eq(channel_close(ch), 0);
}

/* A child sends two messages, then the bytes of bad; the parent flushes
 * with maximum max (0: the default). The flush returns both messages and
 * the next receive fails with err; put back in front of the fault, they
 * are received again before it. */
static void flush_before_fault(const void *bad, size_t blen, size_t max,
			       int err)
{
	unsigned char bytes[256], *p = bytes;
	struct channel *ch;
	struct channel_msg m;
	void *frames, *none;
	size_t len, nlen;
	int i;

	cr_assert_leq(2 * FRAME_HEADER_SIZE + 7 + blen, sizeof(bytes));
	frame_encode(p, FRAME_DATA, 3);
	memcpy(p + FRAME_HEADER_SIZE, "one", 3);
	p += FRAME_HEADER_SIZE + 3;
	frame_encode(p, FRAME_ERROR, 4);
	memcpy(p + FRAME_HEADER_SIZE, "two!", 4);
	p += FRAME_HEADER_SIZE + 4;
	memcpy(p, bad, blen);
	ch = raw_child(bytes, (size_t)(p - bytes) + blen);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_set_max(ch, max), 0);
	cr_assert_eq(channel_flush(ch, &frames, &len, 5000), 2,
		     "the messages before the fault are returned");
	cr_assert_eq(len, 2 * FRAME_HEADER_SIZE + 7);
	cr_assert_eq(memcmp(frames, bytes, len), 0);
	/* The error comes on the next call, and stays. */
	cr_assert_eq(channel_flush(ch, &none, &nlen, 0), -1);
	cr_assert_eq(errno, err, "errno %d, expected %d", errno, err);
	cr_assert_null(none);
	cr_assert_eq(nlen, 0);
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, err);
	/* Preloaded in front of the fault, they are received first. */
	cr_assert_eq(channel_preload(ch, frames, len), 0);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(channel_recv(ch, &m, 0), 1, "message %d", i);
		cr_assert_str_eq(m.data, i ? "two!" : "one");
		cr_assert_eq(m.kind, i ? CHANNEL_ERROR : CHANNEL_DATA);
		channel_msg_free(&m);
	}
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, err);
	free(frames);
	cr_assert_eq(channel_close(ch), 0);
}

Test(channel, flush_returns_the_messages_before_a_fault, .timeout = 20)
{
	unsigned char h[FRAME_HEADER_SIZE + 2];
	int fds = count_fds();

	/* Not a frame at all. */
	flush_before_fault("GET / HTTP/1.0\r\n\r\n", 18, 0, EPROTO);
	/* A frame above the maximum. */
	frame_encode(h, FRAME_DATA, 100);
	flush_before_fault(h, FRAME_HEADER_SIZE, 50, EMSGSIZE);
	/* A frame cut short by end of stream. */
	memcpy(h + FRAME_HEADER_SIZE, "ab", 2);
	flush_before_fault(h, sizeof(h), 0, ECONNRESET);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

/* Control frames are the library's: a flush consumes a reuse DONE frame
 * as channel_recv does, returns only the messages, and a TASK frame coming
 * the wrong way is a protocol error after the messages before it. */
Test(channel, flush_hands_over_messages_only, .timeout = 10)
{
	unsigned char bytes[4 * FRAME_HEADER_SIZE + 2], *p = bytes;
	struct channel *ch;
	struct channel_msg m;
	void *frames;
	size_t len;

	frame_encode(p, FRAME_DONE, 0);
	p += FRAME_HEADER_SIZE;
	frame_encode(p, FRAME_DATA, 1);
	p[FRAME_HEADER_SIZE] = 'a';
	p += FRAME_HEADER_SIZE + 1;
	frame_encode(p, FRAME_DONE, 0);
	p += FRAME_HEADER_SIZE;
	frame_encode(p, FRAME_TASK, 1);
	p[FRAME_HEADER_SIZE] = 't';
	ch = raw_child(bytes, sizeof(bytes));
	cr_assert_not_null(ch);
	cr_assert_eq(channel_flush(ch, &frames, &len, 5000), 1);
	cr_assert_eq(len, FRAME_HEADER_SIZE + 1);
	cr_assert_eq(memcmp(frames, bytes + FRAME_HEADER_SIZE, len), 0);
	free(frames);
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert(no_children());
}

/* A channel that met a malformed frame receives nothing more, but frames
 * preloaded into it are still received, in order, before the error. */
Test(channel, preload_goes_in_front_of_a_fault, .timeout = 10)
{
	unsigned char f[2 * FRAME_HEADER_SIZE + 2];
	struct channel *ch = raw_child("not a frame at all", 18);
	struct channel_msg m;

	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 5000), -1);
	cr_assert_eq(errno, EPROTO);
	frame_encode(f, FRAME_DATA, 1);
	f[FRAME_HEADER_SIZE] = 'a';
	frame_encode(f + FRAME_HEADER_SIZE + 1, FRAME_DATA, 1);
	f[2 * FRAME_HEADER_SIZE + 1] = 'b';
	cr_assert_eq(channel_preload(ch, f + FRAME_HEADER_SIZE + 1,
				     FRAME_HEADER_SIZE + 1), 0);
	cr_assert_eq(channel_preload(ch, f, FRAME_HEADER_SIZE + 1), 0);
	cr_assert_eq(channel_peek(ch, &m, 0), 1);
	cr_assert_str_eq(m.data, "a");
	cr_assert_eq(channel_recv(ch, &m, 0), 1);
	cr_assert_str_eq(m.data, "a");
	channel_msg_free(&m);
	cr_assert_eq(channel_ready(ch, 0), 1);
	cr_assert_eq(channel_recv(ch, &m, 0), 1);
	cr_assert_str_eq(m.data, "b");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_ready(ch, 0), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_close(ch), 0);
}

/* A read that fails after a flush has taken messages: they are returned
 * and the next receive reports the failure. A child that leaves with bytes
 * of ours unread resets its socket, so the parent's read, once the
 * child's messages are read, fails with ECONNRESET. */
Test(channel, flush_keeps_a_read_error_for_the_next_call, .timeout = 10)
{
	struct channel *ch;
	struct channel_msg m;
	void *frames;
	size_t len;
	pid_t pid;

	pid = channel_fork(&ch, CHANNEL_LINK_SOCKET);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct pollfd pf = { .fd = ch->rfd, .events = POLLIN };

		/* Leaves once the parent's byte is there, unread. */
		poll(&pf, 1, 5000);
		channel_send(ch, "one", 3, -1);
		channel_send(ch, "two", 3, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, "x", 1, 1000), 0);
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_flush(ch, &frames, &len, 0), 2);
	free(frames);
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, ECONNRESET);
	cr_assert_eq(channel_flush(ch, &frames, &len, 0), -1);
	cr_assert_eq(errno, ECONNRESET);
	channel_close(ch);
	cr_assert(reaped(pid));
}

Test(channel, streams_keep_order_across_put_and_get_sizes, .timeout = 10)
{
	struct channel *ch = channel_create();
	int out[64];
	size_t got;
	int i, next = 0;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		int items[10];

		for (int k = 0; k < 3; k++) {
			for (i = 0; i < 10; i++)
				items[i] = k * 10 + i;
			channel_put(ch, items, 10, sizeof(int), -1);
		}
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_get(ch, out, 7, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 7);
	for (i = 0; i < 7; i++)
		cr_assert_eq(out[i], next++);
	cr_assert_eq(channel_get(ch, out, 16, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 16);
	for (i = 0; i < 16; i++)
		cr_assert_eq(out[i], next++);
	/* Only 7 remain and the writer has gone: what is there, and a
	 * distinct "closed" error. */
	cr_assert_eq(channel_get(ch, out, 20, sizeof(int), &got, 5000), -1);
	cr_assert_eq(errno, EPIPE);
	cr_assert_eq(got, 7);
	for (i = 0; i < 7; i++)
		cr_assert_eq(out[i], next++);
	channel_close(ch);
}

Test(channel, stream_get_times_out_and_resumes, .timeout = 10)
{
	struct channel *ch = channel_create();
	int out[8];
	size_t got;
	int i;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		struct channel_msg m;
		int items[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };

		channel_put(ch, items, 3, sizeof(int), -1);
		/* The rest once the parent asks for it. */
		if (channel_recv(ch, &m, -1) == 1)
			channel_msg_free(&m);
		channel_put(ch, items + 3, 5, sizeof(int), -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_get(ch, out, 8, sizeof(int), &got, 100), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(got, 3);
	cr_assert_eq(channel_send(ch, "more", 4, 1000), 0);
	cr_assert_eq(channel_get(ch, out + 3, 5, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 5);
	for (i = 0; i < 8; i++)
		cr_assert_eq(out[i], i);
	channel_close(ch);
}

/* A put of no items sends nothing: the message after it is received as if
 * the put had not happened, with or without a get of no items first. */
Test(channel, put_of_no_items_sends_nothing, .timeout = 10)
{
	struct channel *ch = channel_create();
	struct channel_msg m;
	int items[2] = { 7, 8 }, out[2];
	size_t got = 99;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		int res = channel_put(ch, items, 0, sizeof(int), -1);

		res |= channel_put(ch, NULL, 0, sizeof(int), -1);
		channel_send(ch, &res, sizeof(res), -1);
		res = channel_put(ch, items, 0, sizeof(int), -1);
		channel_send(ch, "after", 5, -1);
		channel_put(ch, items, 2, sizeof(int), -1);
		channel_put(ch, items, 0, sizeof(int), -1);
		channel_exit(ch, res == 0 ? 0 : 1);
	}
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_eq(m.len, sizeof(int));
	cr_assert_eq(*(int *)m.data, 0, "the puts of no items succeeded");
	channel_msg_free(&m);
	cr_assert_eq(channel_get(ch, out, 0, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "after");
	channel_msg_free(&m);
	cr_assert_eq(channel_get(ch, out, 2, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 2);
	cr_assert(out[0] == 7 && out[1] == 8);
	/* Nothing follows the items: end of stream, not a stream frame. */
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_wait(ch, 5000), 0);
	channel_close(ch);
}

Test(channel, large_arrays_stream_whole, .timeout = 30)
{
	size_t n = 4u << 20, i, got;
	uint32_t *out = malloc(n * sizeof(uint32_t));
	struct channel *ch = channel_create();

	cr_assert_not_null(out);
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		for (i = 0; i < n; i++)
			out[i] = (uint32_t)(i * 2654435761u);
		channel_put(ch, out, n, sizeof(uint32_t), -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_get(ch, out, n, sizeof(uint32_t), &got, 20000), 0);
	cr_assert_eq(got, n);
	for (i = 0; i < n; i++)
		if (out[i] != (uint32_t)(i * 2654435761u))
			break;
	cr_assert_eq(i, n);
	free(out);
	channel_close(ch);
}

/* A child created while others are alive holds none of their descriptors:
 * each one's end of stream arrives while the others still run. */
Test(channel, siblings_do_not_hold_each_others_pipes, .timeout = 20)
{
	struct channel *waiting[3], *quick;
	struct channel_msg m;
	int fds = count_fds(), i;

	for (i = 0; i < 3; i++) {
		waiting[i] = channel_create();
		cr_assert_not_null(waiting[i]);
		if (channel_pid(waiting[i]) == 0) {
			wait_for_parent(waiting[i]);
			channel_exit(waiting[i], 0);
		}
	}
	quick = channel_create();
	cr_assert_not_null(quick);
	if (channel_pid(quick) == 0) {
		channel_send(quick, "done", 4, -1);
		channel_exit(quick, 0);
	}
	cr_assert_eq(channel_recv(quick, &m, 5000), 1);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(quick, &m, 5000), 0,
		     "end of stream while siblings are alive");
	channel_close(quick);
	/* And the first-born, closed last, still ends. */
	for (i = 2; i >= 0; i--) {
		pid_t pid = channel_pid(waiting[i]);

		cr_assert_eq(channel_close(waiting[i]), 0);
		cr_assert(reaped(pid));
	}
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(channel, kill_wait_and_waitall, .timeout = 10)
{
	struct channel *a = channel_create(), *b;
	int st;

	cr_assert_not_null(a);
	if (channel_pid(a) == 0) {
		wait_for_parent(a);
		channel_exit(a, 0);
	}
	cr_assert_eq(channel_wait(a, 30), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(channel_status(a, &st), 0);
	cr_assert_eq(channel_kill(a, SIGTERM), 0);
	cr_assert_eq(channel_wait(a, 5000), 0);
	cr_assert_eq(channel_status(a, &st), 1);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
	cr_assert_eq(channel_kill(a, SIGTERM), -1);
	cr_assert_eq(errno, ESRCH);

	b = channel_create();
	cr_assert_not_null(b);
	if (channel_pid(b) == 0)
		channel_exit(b, 5);
	cr_assert_eq(channel_waitall(), 1, "only b is left to reap");
	cr_assert_eq(channel_status(b, &st), 1);
	cr_assert_eq(WEXITSTATUS(st), 5);
	channel_close(a);
	channel_close(b);
	cr_assert(no_children());
}

Test(channel, stdio_is_not_written_twice, .timeout = 10)
{
	FILE *f = tmpfile();
	struct channel *ch;
	struct channel_msg m;
	char buf[64] = { 0 };

	cr_assert_not_null(f);
	fputs("before fork", f);	/* still in f's buffer */
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0)
		channel_exit(ch, 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	channel_close(ch);
	fflush(f);
	rewind(f);
	cr_assert_eq(fread(buf, 1, sizeof(buf) - 1, f), 11);
	cr_assert_str_eq(buf, "before fork");
	fclose(f);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* A signal every 300 microseconds interrupts the transfer's system calls;
 * every byte still arrives, and timeouts still end on time. */
Test(channel, signals_during_a_large_transfer, .timeout = 30)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct itimerval it = { { 0, 300 }, { 0, 300 } };
	size_t len = 64u << 20, i;
	struct channel *ch;
	struct channel_msg m;
	struct timespec t0, t1;
	long ms;

	if (slow_run()) {
		/* Under valgrind, whose check of a large write's buffer before
		 * the call outlasts a short period and is started again after
		 * each signal: every 20 ms, 1 MiB. */
		it.it_interval.tv_usec = it.it_value.tv_usec = 20000;
		len = 1u << 20;
	}
	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: EINTR everywhere */
	sigaction(SIGALRM, &sa, &old);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		unsigned char *p = malloc(len);

		/* The storm starts with the transfer: under valgrind, a
		 * signal every few milliseconds leaves a filling loop
		 * almost no time to run. */
		for (i = 0; p && i < len; i++)
			p[i] = (unsigned char)(i % 251);
		setitimer(ITIMER_REAL, &it, NULL);
		channel_send(ch, p, len, -1);
		wait_for_parent(ch);
		channel_exit(ch, 0);
	}
	setitimer(ITIMER_REAL, &it, NULL);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(m.len, len);
	for (i = 0; i < len; i++)
		if (((unsigned char *)m.data)[i] != (unsigned char)(i % 251))
			break;
	cr_assert_eq(i, len);
	channel_msg_free(&m);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(channel_recv(ch, &m, 200), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	timer_stop(&old);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert(ms >= 199 && ms < 5000, "the 200 ms timeout took %ld ms", ms);
	channel_close(ch);
}

/* Hooks that make every other read and write fail with EINTR and move at
 * most 3 bytes otherwise. */
static int hook_calls;

static ssize_t short_read(int fd, void *buf, size_t len)
{
	if (hook_calls++ % 2 == 0) {
		errno = EINTR;
		return -1;
	}
	return read(fd, buf, len < 3 ? len : 3);
}

static ssize_t short_write(int fd, const void *buf, size_t len)
{
	if (hook_calls++ % 2 == 0) {
		errno = EINTR;
		return -1;
	}
	return write(fd, buf, len < 3 ? len : 3);
}

Test(channel, interrupted_and_short_transfers_complete, .timeout = 20)
{
	struct channel *ch;
	struct channel_msg m;
	char text[1000];
	int i;

	for (i = 0; i < 999; i++)
		text[i] = (char)('a' + i % 26);
	text[999] = '\0';
	exchange_hooks.read = short_read;
	exchange_hooks.write = short_write;
	ch = channel_start(echo_fn, text, sizeof(text), NULL);
	cr_assert_not_null(ch);
	cr_assert_eq(channel_recv(ch, &m, 10000), 1);
	cr_assert_eq(m.len, sizeof(text));
	cr_assert_str_eq(m.data, text);
	channel_msg_free(&m);
	cr_assert_eq(channel_send(ch, "short and slow", 14, 10000), 0);
	cr_assert_eq(channel_recv(ch, &m, 10000), 1);
	cr_assert_str_eq(m.data, "short and slow");
	channel_msg_free(&m);
	memset(&exchange_hooks, 0, sizeof(exchange_hooks));
	cr_assert_gt(hook_calls, 100);
	channel_close(ch);
}

static pid_t failing_fork(void)
{
	errno = EAGAIN;
	return -1;
}

static int failing_pipe(int fds[2])
{
	(void)fds;
	errno = EMFILE;
	return -1;
}

Test(channel, fork_and_pipe_failures_leak_nothing, .timeout = 10)
{
	int fds = count_fds();

	exchange_hooks.fork = failing_fork;
	cr_assert_null(channel_create());
	cr_assert_eq(errno, EAGAIN);
	cr_assert_null(channel_start(silent_fn, NULL, 0, NULL));
	cr_assert_eq(errno, EAGAIN);
	exchange_hooks.fork = NULL;
	exchange_hooks.pipe = failing_pipe;
	cr_assert_null(channel_create());
	cr_assert_eq(errno, EMFILE);
	exchange_hooks.pipe = NULL;
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}

Test(channel, bad_arguments, .timeout = 5)
{
	struct channel_msg m;

	cr_assert_null(channel_start(NULL, NULL, 0, NULL));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_send(NULL, "x", 1, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_recv(NULL, &m, 0), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_kill(NULL, SIGTERM), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(channel_close(NULL), 0);
	channel_msg_free(NULL);
	cr_assert_str_eq(exchange_version(), EXCHANGE_VERSION);
}

/* Both sides send a large message before either receives: a sender
 * waiting for room reads what comes meanwhile, so neither waits for ever. */
Test(channel, large_messages_both_ways_at_once, .timeout = 60)
{
	size_t len = slow_run() ? 4u << 20 : 24u << 20, i;
	unsigned char *p = malloc(len);
	struct channel *ch;
	struct channel_msg m;
	size_t ok = 0;

	cr_assert_not_null(p);
	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(i % 253);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		if (channel_send(ch, p, len, 20000) < 0)
			channel_exit(ch, 2);
		if (channel_recv(ch, &m, 20000) == 1)
			ok = m.len == len && memcmp(m.data, p, len) == 0;
		channel_send(ch, &ok, sizeof(ok), 20000);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, p, len, 20000), 0);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(m.len, len);
	cr_assert_eq(memcmp(m.data, p, len), 0);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(*(size_t *)m.data, 1, "the child got the parent's message");
	channel_msg_free(&m);
	free(p);
	cr_assert_eq(channel_close(ch), 0);
}

/* The same over a socket link, where one descriptor carries both ways. */
Test(channel, large_messages_both_ways_over_a_socket, .timeout = 60)
{
	/* Far above the socket's buffers either way; smaller under valgrind,
	 * whose copies are slow enough to run out the sends' timeouts. */
	size_t len = slow_run() ? 4u << 20 : 24u << 20;
	unsigned char *p = calloc(1, len);
	struct channel *ch;
	struct channel_msg m;
	pid_t pid;

	cr_assert_not_null(p);
	pid = channel_fork(&ch, CHANNEL_LINK_SOCKET);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		size_t ok = 0;

		if (channel_send(ch, p, len, 20000) < 0)
			channel_exit(ch, 2);
		if (channel_recv(ch, &m, 20000) == 1)
			ok = m.len == len;
		channel_send(ch, &ok, sizeof(ok), 20000);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, p, len, 20000), 0);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(m.len, len);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(*(size_t *)m.data, 1);
	channel_msg_free(&m);
	free(p);
	cr_assert_eq(channel_close(ch), 0);
}

/* Both sides flood at once: the child sends four messages of 1 MiB, then
 * receives; the parent sends 16 MiB, then receives. While its send waits
 * for room, each side reads what the other sends, and every byte of every
 * message must arrive, in order. With blocking set, both read ends block
 * (as a reuse worker's does), which must not stop that reading. */
static void flood_both_ways(bool blocking)
{
	size_t small = 1u << 20, large = 16u << 20, i;
	unsigned char *p = malloc(large);
	int fds = count_fds(), st;
	struct channel *ch;
	struct channel_msg m;
	pid_t pid;

	cr_assert_not_null(p);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		size_t ok = 0;

		if (blocking && channel_set_blocking(ch) < 0)
			channel_exit(ch, 3);
		for (i = 0; i < 4; i++) {
			pattern_fill(p, small, i);
			if (channel_send(ch, p, small, 20000) < 0)
				channel_exit(ch, 2);
		}
		if (channel_recv(ch, &m, 20000) == 1)
			ok = (size_t)pattern_check(m.data, m.len, large, 100);
		if (channel_send(ch, &ok, sizeof(ok), 20000) < 0)
			channel_exit(ch, 4);
		channel_exit(ch, 0);
	}
	pid = channel_pid(ch);
	if (blocking)
		cr_assert_eq(channel_set_blocking(ch), 0);
	pattern_fill(p, large, 100);
	cr_assert_eq(channel_send(ch, p, large, 20000), 0, "errno %d", errno);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(channel_recv(ch, &m, 20000), 1,
			     "message %zu of 4 (errno %d)", i, errno);
		cr_assert(pattern_check(m.data, m.len, small, i),
			  "message %zu exact", i);
		channel_msg_free(&m);
	}
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_eq(m.len, sizeof(size_t));
	cr_assert_eq(*(size_t *)m.data, 1, "the child got the 16 MiB exact");
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 20000), 0, "end of stream");
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert(reaped(pid));
	cr_assert_eq(count_fds(), fds);
	free(p);
}

Test(channel, a_waiting_send_keeps_what_arrives_meanwhile, .timeout = 60)
{
	flood_both_ways(false);
}

Test(channel, a_waiting_send_reads_on_blocking_descriptors, .timeout = 60)
{
	flood_both_ways(true);
}

/* The messages of the tests below: a sequence number, then a pattern
 * that depends on it. 116 bytes a frame, below PIPE_BUF, so a pipe takes
 * each one whole or not at all. */
#define SEQ_LEN 100
#define SEQ_MAX 4096

static int send_seq(struct channel *ch, size_t seq, int timeout_ms)
{
	unsigned char buf[SEQ_LEN];

	memcpy(buf, &seq, sizeof(seq));
	pattern_fill(buf + sizeof(seq), SEQ_LEN - sizeof(seq), seq);
	return channel_send(ch, buf, SEQ_LEN, timeout_ms);
}

/* The child of the tests below: waits until the test writes to go (it
 * reads nothing before, so the channel fills), then receives to the end
 * of stream and sends back the sequence numbers of the messages it got,
 * SIZE_MAX for any that was not exact. */
static void seq_child(struct channel *ch, int go)
{
	size_t *seen = malloc(SEQ_MAX * sizeof(size_t)), n = 0, seq;
	struct channel_msg m;
	char c;

	if (!seen || read(go, &c, 1) != 1)
		channel_exit(ch, 2);
	while (n < SEQ_MAX && channel_recv(ch, &m, 20000) == 1) {
		seq = SIZE_MAX;
		if (m.len == SEQ_LEN) {
			memcpy(&seq, m.data, sizeof(seq));
			if (!pattern_check((unsigned char *)m.data +
					   sizeof(seq), SEQ_LEN - sizeof(seq),
					   SEQ_LEN - sizeof(seq), seq))
				seq = SIZE_MAX;
		}
		seen[n++] = seq;
		channel_msg_free(&m);
	}
	channel_send(ch, seen, n * sizeof(size_t), 20000);
	channel_exit(ch, 0);
}

/* Fills the channel of a child that does not read: sends messages 0, 1,
 * ... with timeout 0 until one times out. Returns how many went. */
static size_t fill_with_seq(struct channel *ch)
{
	size_t k;

	for (k = 0; k < SEQ_MAX / 2; k++)
		if (send_seq(ch, k, 0) < 0)
			break;
	cr_assert_lt(k, SEQ_MAX / 2, "the channel filled up");
	cr_assert_eq(errno, ETIMEDOUT);
	return k;
}

/* Receives the child's list and checks it is want[0..n). */
static void expect_seen(struct channel *ch, const size_t *want, size_t n)
{
	struct channel_msg m;
	const size_t *seen;
	size_t i;

	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	seen = m.data;
	cr_assert_eq(m.len, n * sizeof(size_t), "%zu messages, expected %zu",
		     m.len / sizeof(size_t), n);
	for (i = 0; i < n; i++)
		cr_assert_eq(seen[i], want[i], "message %zu: %zu, expected %zu",
			     i, seen[i], want[i]);
	channel_msg_free(&m);
}

/* Starts seq_child on a new pipe go, which is made first: *fds counts the
 * descriptors open with it, before the channel. */
static struct channel *seq_child_start(int go[2], int *fds)
{
	struct channel *ch;

	cr_assert_eq(pipe(go), 0);
	*fds = count_fds();
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		close(go[1]);
		seq_child(ch, go[0]);
	}
	return ch;
}

/* A send that times out before writing any byte of its frame leaves the
 * channel as it was: later sends work, and the reader gets every message
 * sent whole and nothing of the one that timed out. */
Test(channel, a_send_that_timed_out_unwritten_leaves_the_channel_usable,
     .timeout = 30)
{
	size_t want[SEQ_MAX], k, i;
	struct channel *ch;
	int go[2], fds, st;

	ch = seq_child_start(go, &fds);
	k = fill_with_seq(ch);
	/* Message k timed out; k + 1 times out with a wait, too. */
	cr_assert_eq(send_seq(ch, k + 1, 50), -1);
	cr_assert_eq(errno, ETIMEDOUT, "errno %d", errno);
	cr_assert_eq(write(go[1], "g", 1), 1);
	cr_assert_eq(send_seq(ch, k + 2, 20000), 0, "errno %d", errno);
	cr_assert_eq(channel_shutdown(ch), 0);
	for (i = 0; i < k; i++)
		want[i] = i;
	want[k] = k + 2;
	expect_seen(ch, want, k + 1);
	cr_assert_eq(channel_wait(ch, 5000), 0);
	cr_assert_eq(channel_status(ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert_eq(count_fds(), fds);
	close(go[0]);
	close(go[1]);
}

/* The same with frames held back by cork: a flush or a send that writes
 * none of them keeps them held, and they leave, in order, with the next
 * write. */
Test(channel, held_frames_survive_a_write_that_timed_out_unwritten,
     .timeout = 30)
{
	size_t want[SEQ_MAX], k, i;
	struct channel *ch;
	int go[2], fds;

	ch = seq_child_start(go, &fds);
	k = fill_with_seq(ch);
	ch->cork = true;
	cr_assert_eq(send_seq(ch, k + 1, 0), 0, "held");
	cr_assert_eq(send_seq(ch, k + 2, 0), 0, "held");
	cr_assert_eq(channel_uncork(ch, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	/* Not corked now: the held frames go first, with this one. */
	cr_assert_eq(send_seq(ch, k + 3, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT, "errno %d", errno);
	cr_assert_eq(write(go[1], "g", 1), 1);
	cr_assert_eq(send_seq(ch, k + 4, 20000), 0, "errno %d", errno);
	cr_assert_eq(channel_shutdown(ch), 0);
	for (i = 0; i < k; i++)
		want[i] = i;
	want[k] = k + 1;
	want[k + 1] = k + 2;
	want[k + 2] = k + 4;
	expect_seen(ch, want, k + 3);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert_eq(count_fds(), fds);
	close(go[0]);
	close(go[1]);
}

/* A held frame that a write with a timeout stops inside was accepted when
 * it was held: its rest leaves with the next write, and sending goes on.
 * The socket's small send buffer makes the kernel take part of the 32 KiB
 * frame and then no more while nobody reads. */
Test(channel, a_held_frame_a_timeout_stopped_inside_goes_on_later,
     .timeout = 30)
{
	size_t len = 32 * 1024, got = 0, tries;
	char *big = malloc(len);
	struct channel *w, *r;
	struct channel_msg m;
	int sv[2], small = 4096;

	cr_assert_not_null(big);
	pattern_fill(big, len, 7);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small,
				sizeof(small)), 0);
	w = channel_from_socket(sv[0]);
	r = channel_from_socket(sv[1]);
	cr_assert(w && r);
	w->cork = true;
	cr_assert_eq(channel_send(w, big, len, 0), 0, "held");
	cr_assert_eq(channel_send(w, "after", 5, 0), 0, "held");
	cr_assert_eq(channel_uncork(w, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT, "errno %d", errno);
	cr_assert_gt(w->olen, 0, "the rest of the frame is held");
	/* Read what has come, then let the writer go on, until both
	 * messages are in. */
	for (tries = 0; got < 2 && tries < 10000; tries++) {
		cr_assert_eq(channel_uncork(w, 0) == 0 || errno == ETIMEDOUT,
			     1, "errno %d", errno);
		while (got < 2 && channel_recv(r, &m, 0) == 1) {
			if (got == 0)
				cr_assert(pattern_check(m.data, m.len, len, 7),
					  "the big message, whole");
			else
				cr_assert(m.len == 5 &&
					  memcmp(m.data, "after", 5) == 0);
			channel_msg_free(&m);
			got++;
		}
	}
	cr_assert_eq(got, 2, "%zu messages of 2", got);
	cr_assert_eq(channel_send(w, "last", 4, 1000), 0, "errno %d", errno);
	cr_assert_eq(channel_recv(r, &m, 1000), 1);
	cr_assert(m.len == 4 && memcmp(m.data, "last", 4) == 0);
	channel_msg_free(&m);
	cr_assert_eq(channel_close(w), 0);
	cr_assert_eq(channel_close(r), 0);
	free(big);
}

/* A frame cut in the middle by a timeout cannot be taken back: sending
 * ends, and every later send says so with ECONNABORTED (not EPIPE: the
 * reader is still there). Receiving still works. */
Test(channel, a_frame_cut_by_a_timeout_ends_sending, .timeout = 30)
{
	size_t len = 8u << 20;
	char *p = calloc(1, len);
	struct channel *ch;
	struct channel_msg m;
	int go[2], item = 1;

	cr_assert_not_null(p);
	cr_assert_eq(pipe(go), 0);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		char c;

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			channel_exit(ch, 2);
		channel_send(ch, "still here", 10, 20000);
		wait_for_parent(ch);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_send(ch, p, len, 100), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(channel_send(ch, "x", 1, 0), -1);
	cr_assert_eq(errno, ECONNABORTED, "errno %d", errno);
	cr_assert_eq(channel_send_error(ch, "x", 1000), -1);
	cr_assert_eq(errno, ECONNABORTED);
	cr_assert_eq(channel_put(ch, &item, 1, sizeof(item), 1000), -1);
	cr_assert_eq(errno, ECONNABORTED);
	cr_assert_eq(write(go[1], "g", 1), 1);
	cr_assert_eq(channel_recv(ch, &m, 20000), 1);
	cr_assert_str_eq(m.data, "still here");
	channel_msg_free(&m);
	cr_assert_eq(channel_send(ch, "x", 1, 1000), -1);
	cr_assert_eq(errno, ECONNABORTED);
	free(p);
	cr_assert_eq(channel_close(ch), 0);
	close(go[0]);
	close(go[1]);
}

/* Stream items at the head, or a get in the middle of a stream frame, make
 * the message calls fail with ENOMSG; a message at the head makes a get
 * fail with ENOMSG. Neither breaks the channel: the right call then works.
 * The message kinds are distinct from EPROTO, which a malformed frame
 * gives. */
Test(channel, items_and_messages_each_ask_for_their_own_call, .timeout = 20)
{
	size_t big = 1u << 20, got = 99, len;
	struct channel *ch = channel_create();
	struct channel_msg m;
	int out[3] = { 0 };
	uint32_t kind;
	void *data;

	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		int items[3] = { 10, 11, 12 };
		unsigned char *p = malloc(big);

		if (!p)
			channel_exit(ch, 2);
		pattern_fill(p, big, 7);
		channel_put(ch, items, 3, sizeof(int), -1);
		channel_send(ch, "msg", 3, -1);
		channel_put(ch, items, 2, sizeof(int), -1);
		channel_send(ch, p, big, -1);
		channel_exit(ch, 0);
	}
	cr_assert_eq(channel_recv(ch, &m, 5000), -1);
	cr_assert_eq(errno, ENOMSG, "errno %d", errno);
	cr_assert_eq(channel_peek(ch, &m, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_recv_frame(ch, &kind, &data, &len, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_flush(ch, &data, &len, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_null(data);
	cr_assert_eq(channel_get(ch, out, 1, sizeof(int), &got, 5000), 0);
	cr_assert_eq(got, 1);
	cr_assert_eq(out[0], 10);
	/* A get is in the middle of the stream frame. */
	cr_assert_eq(channel_recv(ch, &m, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_peek(ch, &m, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_recv_frame(ch, &kind, &data, &len, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_flush(ch, &data, &len, 0), -1);
	cr_assert_eq(errno, ENOMSG);
	cr_assert_eq(channel_get(ch, out + 1, 2, sizeof(int), &got, 5000), 0);
	cr_assert(out[1] == 11 && out[2] == 12);
	/* A message is next. */
	cr_assert_eq(channel_get(ch, out, 1, sizeof(int), &got, 5000), -1);
	cr_assert_eq(errno, ENOMSG, "errno %d", errno);
	cr_assert_eq(got, 0);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert_str_eq(m.data, "msg");
	channel_msg_free(&m);
	cr_assert_eq(channel_get(ch, out, 2, sizeof(int), &got, 5000), 0);
	cr_assert(out[0] == 10 && out[1] == 11);
	/* A large message, received into its own allocation, is next. */
	cr_assert_eq(channel_get(ch, out, 1, sizeof(int), &got, 5000), -1);
	cr_assert_eq(errno, ENOMSG, "errno %d", errno);
	cr_assert_eq(channel_recv(ch, &m, 5000), 1);
	cr_assert(pattern_check(m.data, m.len, big, 7));
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(ch, &m, 5000), 0);
	cr_assert_eq(channel_close(ch), 0);
}

/* Item bytes that look like the header of a large frame, in the middle of
 * a stream frame, are items: a send that waits, and reads meanwhile, must
 * not take them for a frame. The child puts two items (the second one
 * such a header), waits for "go", sends "x" while the parent's large send
 * waits for room, then receives that send. */
Test(channel, items_that_look_like_a_header_stay_items, .timeout = 60)
{
	enum { BIG = 4 << 20 };
	unsigned char items[2][FRAME_HEADER_SIZE], got[FRAME_HEADER_SIZE];
	struct channel *ch;
	struct channel_msg m;
	char *big;
	size_t n = 0;

	memset(items[0], 'i', sizeof(items[0]));
	frame_encode(items[1], FRAME_DATA, 1u << 20);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		int ok = channel_put(ch, items, 2, sizeof(items[0]), 10000) == 0;

		ok = ok && channel_recv(ch, &m, 10000) == 1;
		ok = ok && channel_send(ch, "x", 1, 10000) == 0;
		channel_msg_free(&m);
		ok = ok && channel_recv(ch, &m, 20000) == 1 && m.len == BIG;
		channel_exit(ch, ok ? 0 : 1);
	}
	big = calloc(1, BIG);
	cr_assert_not_null(big);
	cr_assert_eq(channel_get(ch, got, 1, sizeof(got), &n, 10000), 0);
	cr_assert_eq(memcmp(got, items[0], sizeof(got)), 0);
	cr_assert_eq(channel_send(ch, "go", 2, 10000), 0);
	cr_assert_eq(channel_send(ch, big, BIG, 20000), 0);
	cr_assert_eq(channel_get(ch, got, 1, sizeof(got), &n, 10000), 0,
		     "get: %s", strerror(errno));
	cr_assert_eq(memcmp(got, items[1], sizeof(got)), 0,
		     "the second item was taken for a frame");
	cr_assert_eq(channel_recv(ch, &m, 10000), 1, "recv: %s",
		     strerror(errno));
	cr_assert_eq(m.len, 1);
	cr_assert_eq(((char *)m.data)[0], 'x');
	channel_msg_free(&m);
	free(big);
	cr_assert_eq(channel_wait(ch, 20000), 0);
	{
		int st;

		cr_assert_eq(channel_status(ch, &st), 1);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	cr_assert_eq(channel_close(ch), 0);
}

/* A closed channel's memory serves the next channel made (proc.c keeps it
 * on the registry), and it serves it as new: not broken, the default
 * maximum, no task, nothing buffered from before. */
Test(channel, a_recycled_channel_starts_clean, .timeout = 20)
{
	char big[100] = "a hundred bytes";
	int fds = count_fds();
	struct channel *a, *b;
	struct channel_msg m;
	uintptr_t was;

	a = channel_create();
	cr_assert_not_null(a);
	if (channel_pid(a) == 0) {
		channel_send(a, big, sizeof(big), -1);
		channel_send(a, "left", 4, -1);
		channel_exit(a, 0);
	}
	cr_assert_eq(channel_set_max(a, 10), 0);
	cr_assert_eq(channel_recv(a, &m, 5000), -1);
	cr_assert_eq(errno, EMSGSIZE);
	channel_set_task(a, 7);
	was = (uintptr_t)a;
	cr_assert_eq(channel_close(a), 0);

	b = channel_create();
	cr_assert_not_null(b);
	if (channel_pid(b) == 0) {
		channel_send(b, big, sizeof(big), -1);
		channel_exit(b, 0);
	}
	cr_assert_eq((uintptr_t)b, was, "the closed channel's memory was reused");
	cr_assert_eq(channel_recv(b, &m, 5000), 1);
	cr_assert_eq(m.len, sizeof(big));
	cr_assert_str_eq(m.data, big);
	cr_assert_eq(m.task, CHANNEL_NO_TASK);
	channel_msg_free(&m);
	cr_assert_eq(channel_recv(b, &m, 5000), 0, "nothing of a's is left");
	cr_assert_eq(channel_close(b), 0);
	cr_assert_eq(count_fds(), fds);
	cr_assert(no_children());
}
