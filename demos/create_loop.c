/*
 * create_loop - a loop over one channel to a forked process (pprocess
 * tests/create_loop.py). channel_create forks; the child (channel_pid 0)
 * receives numbers and prints each while it is below the limit, then
 * sends "Done"; the parent sends 0 to the limit and prints what comes
 * back.
 *
 * --n sets the limit (default 100, as pprocess); --delay makes the child
 * sleep that long after each number it prints (default 0). The child
 * flushes its lines before it answers, so "Done" comes last, as pprocess
 * prints it on a terminal.
 */
#include "loop.h"

int main(int argc, char **argv)
{
	struct channel *channel;
	int32_t limit;

	demo_n_help = "the parent sends 0 to N";
	demo_delay_help = "the child sleeps this long after each number";
	demo_parse(argc, argv, 100, 1, 0.0);
	limit = demo.n;
	channel = channel_create();
	if (!channel)
		demo_die("channel_create");
	if (channel_pid(channel) == 0) {
		/* The child: print what arrives until the limit. */
		channel_exit(channel, loop_child(channel, limit) < 0 ? 1 : 0);
	}
	return loop_parent(channel, limit, argv[0]);
}
