/*
 * start_loop - a loop over one channel to a function started in a new
 * process (pprocess tests/start_loop.py). channel_start runs loop() with
 * the limit as its argument: it prints "loop to LIMIT", then each number
 * it receives while it is below the limit, then sends "Done"; the parent
 * sends 0 to the limit and prints what comes back.
 *
 * --n sets the limit (default 100, as pprocess); --delay makes the child
 * sleep that long after each number it prints (default 0). The child
 * flushes its lines before it answers, so "Done" comes last, as pprocess
 * prints it on a terminal.
 */
#include "demo.h"

/* Runs in the child with the limit. */
static void loop(struct channel *channel, const void *arg, size_t len,
		 void *ctx)
{
	struct channel_msg m;
	int32_t i, limit;

	(void)ctx;
	if (len != sizeof(limit))
		return;
	memcpy(&limit, arg, sizeof(limit));
	printf("loop to %ld\n", (long)limit);
	for (;;) {
		if (channel_recv(channel, &m, -1) != 1 ||
		    m.kind != CHANNEL_DATA || m.len != sizeof(i))
			return;
		memcpy(&i, m.data, sizeof(i));
		channel_msg_free(&m);
		if (i >= limit)
			break;
		printf("%ld\n", (long)i);
		demo_sleep();
	}
	fflush(stdout);
	channel_send(channel, "Done", 4, -1);
}

int main(int argc, char **argv)
{
	struct channel *channel;
	struct channel_msg m;
	int32_t i, limit;

	demo_n_help = "the parent sends 0 to N";
	demo_delay_help = "the child sleeps this long after each number";
	demo_parse(argc, argv, 100, 1, 0.0);
	limit = demo.n;
	channel = channel_start(loop, &limit, sizeof(limit), NULL);
	if (!channel)
		demo_die("channel_start");
	for (i = 0; i <= limit; i++)
		if (channel_send(channel, &i, sizeof(i), -1) < 0)
			demo_die("channel_send");
	if (channel_recv(channel, &m, -1) != 1 || m.kind != CHANNEL_DATA) {
		fprintf(stderr, "%s: no answer from the child\n", argv[0]);
		return 1;
	}
	printf("%.*s\n", (int)m.len, (const char *)m.data);
	channel_msg_free(&m);
	if (channel_close(channel) < 0)
		demo_die("channel_close");
	return 0;
}
