/*
 * two_way - a conversation in both directions over one channel (pprocess
 * tests/two_way.py). The child sends a number; the exchange's store_data
 * receives it in the parent and sends back one less; the child receives
 * that and sends it again, until the number reaches 0. Both sides print as
 * they go. --n sets the starting number (default 20).
 *
 * The lines come in the order pprocess prints them on a terminal. There,
 * every send waits for the receiver's acknowledgement, and each side
 * prints "sent" once the other has received; here each side waits, after
 * a send, until the other's next message is there (channel_peek: seen,
 * not taken), which the other sends only after printing. So the order is
 * the same every time:
 *
 *   Child: 20, Parent: 20, Child sent, Child: 19, Parent sent,
 *   Parent: 19, Child sent, ... Parent: 1, Child sent, Parent sent
 */
#include "demo.h"

#include <unistd.h>

/* Runs in the child: counts down with the parent's help. */
static void child(struct channel *ch, const void *arg, size_t len, void *ctx)
{
	int32_t data;

	(void)ctx;
	if (len != sizeof(data))
		return;
	memcpy(&data, arg, sizeof(data));
	while (data != 0) {
		struct channel_msg m;

		printf("Child: %ld\n", (long)data);
		fflush(stdout);
		if (channel_send(ch, &data, sizeof(data), -1) < 0)
			return;
		/* The parent answers after printing its line. */
		if (channel_peek(ch, &m, -1) < 0)
			return;
		printf("Child sent\n");
		fflush(stdout);
		if (channel_recv(ch, &m, -1) != 1)
			return;
		if (m.kind == CHANNEL_DATA && m.len == sizeof(data))
			memcpy(&data, m.data, sizeof(data));
		else
			data = 0;
		channel_msg_free(&m);
	}
}

/* Called in the parent for each number the child sends. */
static int store_data(struct exchange *ex, struct channel *ch, void *udata)
{
	struct channel_msg m;
	int32_t data;

	(void)ex;
	(void)udata;
	if (channel_recv(ch, &m, 0) != 1)
		return -1;
	if (m.kind != CHANNEL_DATA || m.len != sizeof(data))
		demo_fail(&m);
	memcpy(&data, m.data, sizeof(data));
	channel_msg_free(&m);
	printf("Parent: %ld\n", (long)data);
	fflush(stdout);
	data--;
	if (channel_send(ch, &data, sizeof(data), -1) < 0)
		return -1;
	/* The child sends its next number (or leaves, after 0) once it has
	 * printed its lines: wait for that without taking it. */
	if (channel_peek(ch, &m, -1) < 0)
		return -1;
	printf("Parent sent\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct exchange_options opts = { 0 };
	struct exchange *ex;
	struct channel *ch;
	int32_t start;

	demo_n_help = "count down from N";
	demo_delay_help = "accepted as by the other twins, not used";
	demo_parse(argc, argv, 20, 1, 0.0);
	start = demo.n;

	opts.store_data = store_data;
	ex = exchange_new(&opts);
	if (!ex)
		demo_die("exchange_new");
	ch = channel_start(child, &start, sizeof(start), NULL);
	if (!ch)
		demo_die("channel_start");
	if (exchange_add(ex, ch) < 0)
		demo_die("exchange_add");
	if (exchange_finish(ex) < 0)
		demo_die("exchange_finish");
	exchange_free(ex);
	return 0;
}
