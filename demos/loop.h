/*
 * loop.h - the two sides of create_loop and start_loop (pprocess
 * tests/create_loop.py and start_loop.py), which differ only in how the
 * child is made. Static inline, as demo.h: each demo is one program that
 * includes it.
 */
#ifndef DEMO_LOOP_H
#define DEMO_LOOP_H

#include "demo.h"

/* The child: prints each number that arrives while it is below limit
 * (sleeping --delay after each), flushes, then answers "Done". 0, or -1
 * when the channel failed first. */
static inline int loop_child(struct channel *channel, int32_t limit)
{
	struct channel_msg m;
	int32_t i;

	for (;;) {
		if (channel_recv(channel, &m, -1) != 1 ||
		    m.kind != CHANNEL_DATA || m.len != sizeof(i))
			return -1;
		memcpy(&i, m.data, sizeof(i));
		channel_msg_free(&m);
		if (i >= limit)
			break;
		printf("%ld\n", (long)i);
		demo_sleep();
	}
	fflush(stdout);
	return channel_send(channel, "Done", 4, -1);
}

/* The parent: sends 0 to limit, prints the answer, closes the channel.
 * Returns the program's exit status. */
static inline int loop_parent(struct channel *channel, int32_t limit,
			      const char *prog)
{
	struct channel_msg m;
	int32_t i;

	for (i = 0; i <= limit; i++)
		if (channel_send(channel, &i, sizeof(i), -1) < 0)
			demo_die("channel_send");
	if (channel_recv(channel, &m, -1) != 1 || m.kind != CHANNEL_DATA) {
		fprintf(stderr, "%s: no answer from the child\n", prog);
		return 1;
	}
	printf("%.*s\n", (int)m.len, (const char *)m.data);
	channel_msg_free(&m);
	if (channel_close(channel) < 0)
		demo_die("channel_close");
	return 0;
}

#endif /* DEMO_LOOP_H */
