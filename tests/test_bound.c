/*
 * test_bound.c - bounded channels (channel_set_bound): a send waits, then
 * fails with ETIMEDOUT, once bound messages are in flight unreceived,
 * whatever room the pipe has; the credits that free it are never seen by
 * a reader; a bounded child in an exchange delivers everything.
 *
 * The other side is held still by a plain pipe ("go"), never by a sleep:
 * the child blocks reading one byte before each step it takes. Children
 * report through their channel or exit status; assertions stay here.
 */
#include "exchange.h"
#include "internal.h"
#include "channel_impl.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BOUND 4

/* A child and the pipe that steps it. */
struct peer {
	struct channel *ch;	/* the test's end */
	int go;			/* write one byte: the child takes a step */
	int fds;		/* descriptors open before */
};

/* In the child: waits for the next step; false once the test is gone. */
static bool step(int go)
{
	char c;

	return read(go, &c, 1) == 1;
}

static void release(const struct peer *p, int steps)
{
	char c = 's';

	while (steps-- > 0)
		cr_assert_eq(write(p->go, &c, 1), 1);
}

/* Forks a child running body(ch, go); the test keeps the write end. */
static void peer_start(struct peer *p, int (*body)(struct channel *, int))
{
	int go[2];
	struct channel *ch;

	p->fds = count_fds();
	cr_assert_eq(pipe(go), 0);
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0) {
		close(go[1]);
		channel_exit(ch, body(ch, go[0]));
	}
	close(go[0]);
	p->ch = ch;
	p->go = go[1];
}

/* Ends the child, which must exit with status 0, and checks hygiene. */
static void peer_end(struct peer *p)
{
	pid_t pid = channel_pid(p->ch);
	int st;

	close(p->go);
	cr_assert_eq(channel_wait(p->ch, 10000), 0);
	cr_assert_eq(channel_status(p->ch, &st), 1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	cr_assert_eq(channel_close(p->ch), 0);
	cr_assert(reaped(pid));
	cr_assert_eq(count_fds(), p->fds);
}

static int send_u32(struct channel *ch, uint32_t v, int timeout_ms)
{
	return channel_send(ch, &v, sizeof(v), timeout_ms);
}

/* Receives one message that must be the uint32 want. */
static bool recv_u32(struct channel *ch, uint32_t want)
{
	struct channel_msg m;
	bool ok;

	if (channel_recv(ch, &m, -1) != 1)
		return false;
	ok = m.kind == CHANNEL_DATA && m.len == sizeof(want) &&
	     memcmp(m.data, &want, sizeof(want)) == 0;
	channel_msg_free(&m);
	return ok;
}

/* Takes one message at each step, checking the order from next on; at
 * end of stream of the go pipe, takes the rest. 0 when all came in order. */
static int take_from(struct channel *ch, int go, uint32_t next)
{
	struct channel_msg m;

	while (step(go))
		if (!recv_u32(ch, next++))
			return 1;
	while (channel_recv(ch, &m, -1) == 1) {
		bool ok = m.len == sizeof(next) &&
			  memcmp(m.data, &next, sizeof(next)) == 0;

		channel_msg_free(&m);
		if (!ok)
			return 2;
		next++;
	}
	return 0;
}

static int taker(struct channel *ch, int go)
{
	return take_from(ch, go, 0);
}

/* Starts body as p's child, bounds the test's end at BOUND and sends that
 * many messages, 0 to BOUND - 1, none of which waits. Returns BOUND, the
 * next value. */
static uint32_t fill_to_bound(struct peer *p,
			      int (*body)(struct channel *, int))
{
	uint32_t i;

	peer_start(p, body);
	cr_assert_eq(channel_set_bound(p->ch, BOUND), 0);
	for (i = 0; i < BOUND; i++)
		cr_assert_eq(send_u32(p->ch, i, 0), 0);
	return i;
}

Test(bound, send_times_out_at_the_bound_with_room_in_the_pipe,
     .timeout = 20)
{
	struct peer p;
	uint32_t i = fill_to_bound(&p, taker);

	/* Bound + 1: 20 bytes against a pipe of 64 KiB. */
	errno = 0;
	cr_assert_eq(send_u32(p.ch, i, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	errno = 0;
	cr_assert_eq(send_u32(p.ch, i, 50), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	/* The child takes one: one more goes, waiting for ever for it. */
	release(&p, 1);
	cr_assert_eq(send_u32(p.ch, i++, -1), 0);
	errno = 0;
	cr_assert_eq(send_u32(p.ch, i, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	/* Lifted, the bound no longer holds a send back. */
	cr_assert_eq(channel_set_bound(p.ch, 0), 0);
	cr_assert_eq(send_u32(p.ch, i++, 0), 0);
	cr_assert_eq(send_u32(p.ch, i++, 0), 0);
	/* Set again: counted from the messages sent after it. */
	cr_assert_eq(channel_set_bound(p.ch, 1), 0);
	cr_assert_eq(send_u32(p.ch, i++, 0), 0);
	errno = 0;
	cr_assert_eq(send_u32(p.ch, i, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_eq(channel_shutdown(p.ch), 0);
	peer_end(&p);
}

Test(bound, refuses_what_it_cannot_do)
{
	unsigned char frame[FRAME_HEADER_SIZE + sizeof(uint64_t)] = { 0 };
	struct channel *ch;
	int fds = count_fds();

	errno = 0;
	cr_assert_eq(channel_set_bound(NULL, 1), -1);
	cr_assert_eq(errno, EINVAL);
	/* A credit is the other side's word: never preloaded. */
	ch = channel_create();
	cr_assert_not_null(ch);
	if (channel_pid(ch) == 0)
		channel_exit(ch, 0);
	frame_encode(frame, FRAME_CREDIT, sizeof(uint64_t));
	errno = 0;
	cr_assert_eq(channel_preload(ch, frame, sizeof(frame)), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(channel_close(ch), 0);
	cr_assert_eq(count_fds(), fds);
}

/* Exits without taking anything once stepped. */
static int leaver(struct channel *ch, int go)
{
	(void)ch;
	step(go);
	return 0;
}

Test(bound, a_peer_that_exits_gives_epipe_not_a_hang, .timeout = 20)
{
	struct peer p;
	uint32_t i = fill_to_bound(&p, leaver);

	release(&p, 1);
	errno = 0;
	cr_assert_eq(send_u32(p.ch, i, -1), -1);
	cr_assert_eq(errno, EPIPE);
	peer_end(&p);
}

/* The BOUND frame waits in the channel for the next write, which may be
 * the flush of a receive's wait: that write follows the same SIGPIPE rule
 * as a send's, so a peer that has gone makes it fail, never kills. */
Test(bound, setting_a_bound_on_a_gone_peer_never_raises_sigpipe,
     .timeout = 20)
{
	struct peer p;
	struct channel_msg m;
	int r;

	peer_start(&p, leaver);
	release(&p, 1);
	/* The child has ended and its read end with it. */
	cr_assert_eq(channel_wait(p.ch, 10000), 0);
	cr_assert_eq(channel_set_bound(p.ch, BOUND), 0);
	errno = 0;
	r = channel_recv(p.ch, &m, 1000);
	cr_assert(r == 0 || (r == -1 && errno == EPIPE),
		  "channel_recv: %d (%s)", r, strerror(errno));
	peer_end(&p);
}

#define ONLY_SENDS (slow_run() ? 2000 : 20000)

/* Sends ONLY_SENDS messages bounded at 1 and never receives: exits with 0
 * when the credits it was given no longer sit in its input (a few that
 * came after the last wait may), else 1. */
static int only_sends(struct channel *ch, int go)
{
	uint32_t i;

	(void)go;
	if (channel_set_bound(ch, 1) < 0)
		return 2;
	for (i = 0; i < (uint32_t)ONLY_SENDS; i++)
		if (send_u32(ch, i, -1) < 0)
			return 3;
	return ch->ilen - ch->ipos > 1024 ? 1 : 0;
}

/* A sender that never receives is given a credit for every message: each
 * counts once and leaves its input, so its memory and its waits stay
 * the same size however many it sends. */
Test(bound, a_sender_that_never_receives_keeps_no_credits, .timeout = 60)
{
	struct peer p;
	uint32_t n = 0;

	peer_start(&p, only_sends);
	while (recv_u32(p.ch, n))
		n++;
	cr_assert_eq(n, (uint32_t)ONLY_SENDS);
	peer_end(&p);
}

/* Bounded at 1: sends 0, waits for a step (reading nothing meanwhile),
 * then sends 1, which waits for the credit of 0. */
static int send_two(struct channel *ch, int go)
{
	if (channel_set_bound(ch, 1) < 0)
		return 2;
	if (send_u32(ch, 0, -1) < 0)
		return 3;
	if (!step(go))
		return 4;
	return send_u32(ch, 1, -1) < 0 ? 5 : 0;
}

/* Fills the test's direction of p's channel while the child reads
 * nothing: the next credit finds no room and stays owed. */
static void fill_towards(const struct peer *p)
{
	char block[1000] = { 0 };
	int sent = 0;

	while (channel_send(p->ch, block, sizeof(block), 0) == 0)
		sent++;
	cr_assert_eq(errno, ETIMEDOUT);
	cr_assert_gt(sent, 0);
	/* Then empty messages, the smallest frames, into the last page's
	 * remainder: what is left is too little for a credit. */
	while (channel_send(p->ch, NULL, 0, 0) == 0)
		;
	cr_assert_eq(errno, ETIMEDOUT);
}

/* A credit that found the pipe full goes once there is room: a receive
 * that waits watches for it (the bounded child empties the pipe as it
 * waits for the credit, and sends nothing until it comes). */
Test(bound, a_credit_that_found_no_room_goes_once_there_is_some,
     .timeout = 30)
{
	struct peer p;

	peer_start(&p, send_two);
	fill_towards(&p);
	cr_assert(recv_u32(p.ch, 0));
	release(&p, 1);
	cr_assert(recv_u32(p.ch, 1), "the second message never came");
	peer_end(&p);
}

static int count_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int *got = udata;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		if (m.kind == CHANNEL_DATA && m.len == sizeof(uint32_t))
			++*got;
		channel_msg_free(&m);
	}
	return 0;
}

/* The same in an exchange, whose poll watches only its channels' read
 * ends: the owed credit is tried again while it waits. */
Test(bound, an_exchange_pays_a_credit_that_found_no_room, .timeout = 30)
{
	struct peer p;
	int got = 0, waits = 0;
	struct exchange_options o = { .store_data = count_store,
				      .udata = &got };
	struct exchange *ex = exchange_new(&o);

	cr_assert_not_null(ex);
	peer_start(&p, send_two);
	fill_towards(&p);
	cr_assert_geq(exchange_add(ex, p.ch), 0);
	while (got < 1 && waits++ < 100)
		cr_assert_geq(exchange_store(ex, 100), 0);
	cr_assert_eq(got, 1);
	release(&p, 1);
	waits = 0;
	while (got < 2 && waits++ < 50)
		cr_assert_geq(exchange_store(ex, 100), 0);
	cr_assert_eq(got, 2, "the second message never came");
	close(p.go);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_eq(count_fds(), p.fds);
}

/* Two-way: for each message of the test's it takes, sends three of its
 * own, so that the test's waiting sends find data arriving. */
#define ROUNDS 200
#define REPLIES 3

static int chatter(struct channel *ch, int go)
{
	uint32_t i, k;

	(void)go;
	for (i = 0; i < ROUNDS; i++) {
		if (!recv_u32(ch, i))
			return 1;
		for (k = 0; k < REPLIES; k++)
			if (send_u32(ch, i * REPLIES + k, -1) < 0)
				return 2;
	}
	return 0;
}

Test(bound, nothing_is_lost_or_reordered_while_a_send_waits, .timeout = 30)
{
	struct peer p;
	uint32_t i;

	peer_start(&p, chatter);
	cr_assert_eq(channel_set_bound(p.ch, 1), 0);
	/* Every send after the first waits for the child's credit, reading
	 * the child's replies into the buffer meanwhile. */
	for (i = 0; i < ROUNDS; i++)
		cr_assert_eq(send_u32(p.ch, i, -1), 0, "send %u: %s", i,
			     strerror(errno));
	for (i = 0; i < ROUNDS * REPLIES; i++)
		cr_assert(recv_u32(p.ch, i), "reply %u", i);
	peer_end(&p);
}

/* Sends one reply, then takes one message, then reports that both are
 * done, and waits to be released to take the rest. */
static int replier(struct channel *ch, int go)
{
	if (send_u32(ch, 77, -1) < 0 || !recv_u32(ch, 0))
		return 1;
	if (!step(go))
		return 2;
	return take_from(ch, go, 1) == 0 ? 0 : 3;
}

Test(bound, credits_are_never_seen_by_a_reader, .timeout = 20)
{
	struct channel_msg m;
	struct peer p;
	void *frames;
	size_t len, off = 0;

	peer_start(&p, replier);
	cr_assert_eq(channel_set_bound(p.ch, 1), 0);
	cr_assert_eq(send_u32(p.ch, 0, -1), 0);
	/* The second send waits for the credit of the first, which comes
	 * behind the child's reply: both are read, and the reply stays. */
	cr_assert_eq(send_u32(p.ch, 1, -1), 0);
	/* Buffered: the reply, then the credit, which size leaves out. */
	cr_assert_eq(channel_size(p.ch), FRAME_HEADER_SIZE + sizeof(uint32_t));
	cr_assert_eq(channel_ready(p.ch, 0), 1);
	cr_assert_eq(channel_peek(p.ch, &m, 0), 1);
	cr_assert_eq(*(uint32_t *)m.data, 77);
	cr_assert_eq(channel_flush(p.ch, &frames, &len, 0), 1);
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 1);
	cr_assert_eq(*(uint32_t *)m.data, 77);
	channel_msg_free(&m);
	cr_assert_eq(channel_frames_next(frames, len, &off, &m), 0);
	free(frames);
	/* Nothing is left to see: the credit went with the flush. */
	cr_assert_eq(channel_size(p.ch), 0);
	cr_assert_eq(channel_ready(p.ch, 0), 0);
	errno = 0;
	cr_assert_eq(channel_recv(p.ch, &m, 0), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	release(&p, 1);
	cr_assert_eq(channel_shutdown(p.ch), 0);
	peer_end(&p);
}

/* The bounded side is the child: it sends COUNT messages with a bound of
 * 2 and leaves. */
#define COUNT 50

static int bounded_sender(struct channel *ch, int go)
{
	uint32_t i;

	(void)go;
	if (channel_set_bound(ch, 2) < 0)
		return 1;
	for (i = 0; i < COUNT; i++)
		if (send_u32(ch, i, -1) < 0)
			return 2;
	return 0;
}

Test(bound, a_receiver_credits_by_recv_and_by_flush, .timeout = 20)
{
	struct channel_msg m;
	struct peer p;
	void *frames;
	size_t len, off = 0;
	uint32_t i = 0;

	peer_start(&p, bounded_sender);
	/* The announcement is no message: the first receive is message 0. */
	cr_assert(recv_u32(p.ch, i++));
	cr_assert(recv_u32(p.ch, i++));
	/* A flush for ever ends at end of stream: it took, and credited,
	 * every message the child could send only after the flush took the
	 * ones before. */
	cr_assert_eq(channel_flush(p.ch, &frames, &len, -1), COUNT - 2);
	while (channel_frames_next(frames, len, &off, &m) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA);
		cr_assert_eq(*(uint32_t *)m.data, i++);
		channel_msg_free(&m);
	}
	free(frames);
	cr_assert_eq(i, COUNT);
	cr_assert_eq(channel_recv(p.ch, &m, -1), 0);
	peer_end(&p);
}

/* In an exchange: the task's child bounds its own end and sends COUNT
 * values, task * COUNT + i; store_data, a Map and a Queue take them. */
static void bounded_task(struct channel *ch, const void *arg, size_t len,
			 void *ctx)
{
	uint32_t base = *(const uint32_t *)arg, i;

	(void)len, (void)ctx;
	if (channel_set_bound(ch, 1) < 0) {
		channel_send_error(ch, "channel_set_bound failed", -1);
		return;
	}
	for (i = 0; i < COUNT; i++)
		if (send_u32(ch, base * COUNT + i, -1) < 0)
			return;
}

#define TASKS 4

struct seen {
	uint32_t next[TASKS];	/* the value expected next from each task */
	int messages;		/* DATA messages in order */
	int wrong;		/* anything else */
};

static void seen_init(struct seen *s)
{
	uint32_t t;

	for (t = 0; t < TASKS; t++)
		s->next[t] = t * COUNT;
	s->messages = s->wrong = 0;
}

static void seen_one(struct seen *s, const struct channel_msg *m)
{
	uint32_t v;

	if (m->kind != CHANNEL_DATA || m->len != sizeof(v)) {
		s->wrong++;
		return;
	}
	memcpy(&v, m->data, sizeof(v));
	if (v / COUNT >= TASKS || v != s->next[v / COUNT]) {
		s->wrong++;
		return;
	}
	s->next[v / COUNT]++;
	s->messages++;
}

static int seen_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;

	(void)ex;
	if (channel_recv(ch, &m, 0) == 1) {
		seen_one(udata, &m);
		channel_msg_free(&m);
	}
	return 0;
}

static void start_tasks(struct exchange *ex)
{
	uint32_t t;

	for (t = 0; t < TASKS; t++)
		cr_assert_geq(exchange_start(ex, bounded_task, &t, sizeof(t),
					     NULL), 0);
}

static void store_everything(bool continuous, bool reuse)
{
	struct seen s;
	struct exchange_options o = {
		.limit = 2, .continuous = continuous, .reuse = reuse,
		.store_data = seen_store, .udata = &s,
	};
	struct exchange *ex;
	int fds = count_fds();
	uint32_t t;

	seen_init(&s);
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	start_tasks(ex);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert_eq(s.wrong, 0);
	cr_assert_eq(s.messages, TASKS * COUNT);
	for (t = 0; t < TASKS; t++)
		cr_assert_eq(s.next[t], t * COUNT + COUNT);
	cr_assert(no_children());
	cr_assert_eq(count_fds(), fds);
}

Test(bound, a_bounded_child_delivers_everything_to_store_data,
     .timeout = 60)
{
	store_everything(true, false);
	store_everything(false, false);
	store_everything(false, true);
}

Test(bound, a_bounded_child_delivers_everything_to_a_queue, .timeout = 60)
{
	struct seen s;
	struct exchange_options o = { .limit = 2, .continuous = true };
	struct channel_msg m;
	struct exchange *ex;
	int fds = count_fds();

	seen_init(&s);
	ex = exchange_new_queue(&o);
	cr_assert_not_null(ex);
	start_tasks(ex);
	while (exchange_queue_next(ex, &m, -1) == 1) {
		seen_one(&s, &m);
		channel_msg_free(&m);
	}
	exchange_free(ex);
	cr_assert_eq(s.wrong, 0);
	cr_assert_eq(s.messages, TASKS * COUNT);
	cr_assert(no_children());
	cr_assert_eq(count_fds(), fds);
}

Test(bound, a_map_takes_every_message_of_a_bounded_child, .timeout = 60)
{
	struct exchange_options o = { .limit = 2, .continuous = true };
	struct channel_msg m;
	struct exchange *ex;
	int fds = count_fds();
	uint32_t t = 0;

	/* A map keeps each task's first message; the others are taken and
	 * credited too, or the children would wait for ever. */
	ex = exchange_new_map(&o);
	cr_assert_not_null(ex);
	start_tasks(ex);
	while (exchange_map_next(ex, &m) == 1) {
		cr_assert_eq(m.kind, CHANNEL_DATA, "task %u: %s", t,
			     (char *)m.data);
		cr_assert_eq(*(uint32_t *)m.data, t * COUNT);
		t++;
	}
	cr_assert_eq(t, TASKS);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert(no_children());
	cr_assert_eq(count_fds(), fds);
}
