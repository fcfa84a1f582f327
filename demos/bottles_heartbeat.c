/*
 * bottles_heartbeat - bottles with a heartbeat (pprocess
 * examples/concurrency-sig/bottles_heartbeat.py): the printer waits up to
 * --heartbeat milliseconds (default 5000) for input, then prints one line
 * if any has arrived, or "No input received for MS ms." if none has. See
 * bottles.h for the processes and the command line; --count does not
 * count the heartbeat lines.
 */
#include "bottles.h"

int main(int argc, char **argv)
{
	struct exchange *queue;
	struct channel_msg m;
	long printed = 0;

	bottles_parse(argc, argv, true);
	queue = bottles_start();
	/* pprocess's printer(lines, delay): one store, then one line or
	 * the heartbeat. */
	while (bottles.count == 0 || printed < bottles.count) {
		if (exchange_store(queue, bottles.heartbeat_ms) < 0) {
			perror("exchange_store");
			bottles_stop(queue);
			return 1;
		}
		if (exchange_queue_len(queue) > 0) {
			if (exchange_queue_next(queue, &m, 0) != 1)
				continue;
			if (m.kind == CHANNEL_DATA) {
				bottles_print(m.data, m.len);
				printed++;
			} else {
				fprintf(stderr, "%s\n", (const char *)m.data);
			}
			channel_msg_free(&m);
		} else {
			printf("No input received for %d ms.\n",
			       bottles.heartbeat_ms);
			fflush(stdout);
		}
	}
	bottles_stop(queue);
	return 0;
}
