/*
 * bottles - nested continuous queues following files (pprocess
 * examples/concurrency-sig/bottles.py): every line appended to /tmp/test,
 * /tmp/test2 or /tmp/test3 that holds "pants", "trousers" or "shorts" is
 * printed, once per pattern it matches. See bottles.h for the processes
 * and the command line.
 */
#include "bottles.h"

int main(int argc, char **argv)
{
	struct exchange *queue;
	struct channel_msg m;
	long printed = 0;
	int r;

	bottles_parse(argc, argv, false);
	queue = bottles_start();
	/* Print incoming lines: pprocess's printer(). */
	while ((r = exchange_queue_next(queue, &m, -1)) == 1) {
		if (m.kind == CHANNEL_DATA)
			bottles_print(m.data, m.len);
		else
			fprintf(stderr, "%s\n", (const char *)m.data);
		channel_msg_free(&m);
		if (m.kind == CHANNEL_DATA && ++printed == bottles.count)
			break;
	}
	if (r < 0)
		perror("exchange_queue_next");
	bottles_stop(queue);
	return r < 0;
}
