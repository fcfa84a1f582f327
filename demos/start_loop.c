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
#include "loop.h"

/* Runs in the child with the limit. */
static void loop(struct channel *channel, const void *arg, size_t len,
		 void *ctx)
{
	int32_t limit;

	(void)ctx;
	if (len != sizeof(limit))
		return;
	memcpy(&limit, arg, sizeof(limit));
	printf("loop to %ld\n", (long)limit);
	loop_child(channel, limit);
}

int main(int argc, char **argv)
{
	struct channel *channel;
	int32_t limit;

	demo_n_help = "the parent sends 0 to N";
	demo_delay_help = "the child sleeps this long after each number";
	demo_parse(argc, argv, 100, 1, 0.0);
	limit = demo.n;
	channel = channel_start(loop, &limit, sizeof(limit), NULL);
	if (!channel)
		demo_die("channel_start");
	return loop_parent(channel, limit, argv[0]);
}
