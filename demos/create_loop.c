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
#include "demo.h"

int main(int argc, char **argv)
{
	struct channel *channel;
	struct channel_msg m;
	int32_t i, limit;

	demo_n_help = "the parent sends 0 to N";
	demo_delay_help = "the child sleeps this long after each number";
	demo_parse(argc, argv, 100, 1, 0.0);
	limit = demo.n;
	channel = channel_create();
	if (!channel)
		demo_die("channel_create");
	if (channel_pid(channel) == 0) {
		/* The child: print what arrives until the limit. */
		for (;;) {
			if (channel_recv(channel, &m, -1) != 1 ||
			    m.kind != CHANNEL_DATA || m.len != sizeof(i))
				channel_exit(channel, 1);
			memcpy(&i, m.data, sizeof(i));
			channel_msg_free(&m);
			if (i >= limit)
				break;
			printf("%ld\n", (long)i);
			demo_sleep();
		}
		fflush(stdout);
		if (channel_send(channel, "Done", 4, -1) < 0)
			channel_exit(channel, 1);
		channel_exit(channel, 0);
	}
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
