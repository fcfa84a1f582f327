/*
 * install_prog.c - a program built against an installed libexchange.
 *
 * It is compiled by tests/install.sh with the flags pkg-config gives for the
 * installed copy, and by make check-header as C11 and as C++ (so it uses
 * only what both languages accept). It checks that the library linked is the
 * version the header describes, then makes one channel round trip: a forked
 * child sends "ping", the parent receives it, sees end of stream and reaps
 * the child. It prints one line and exits 0 when everything held.
 */
#include "exchange.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

int main(void)
{
	const char *version = exchange_version();
	struct channel *ch;
	struct channel_msg msg;
	int status = -1;
	int ok;

	if (version == NULL || strcmp(version, EXCHANGE_VERSION) != 0) {
		fprintf(stderr, "install_prog: header %s, library %s\n",
			EXCHANGE_VERSION, version ? version : "(null)");
		return 1;
	}

	ch = channel_create();
	if (ch == NULL) {
		perror("install_prog: channel_create");
		return 1;
	}
	if (channel_pid(ch) == 0) {
		/* The child: no stdio, no assertions; its exit status and its
		 * one message are its whole report. */
		channel_exit(ch, channel_send(ch, "ping", 4, 5000) == 0 ? 0 : 3);
	}

	memset(&msg, 0, sizeof msg);
	ok = channel_recv(ch, &msg, 5000) == 1 && msg.kind == CHANNEL_DATA &&
	     msg.len == 4 && memcmp(msg.data, "ping", 4) == 0;
	channel_msg_free(&msg);
	/* After the one message the child has closed: end of stream. */
	ok = ok && channel_recv(ch, &msg, 5000) == 0;
	ok = ok && channel_wait(ch, 5000) == 0 &&
	     channel_status(ch, &status) == 1 && WIFEXITED(status) &&
	     WEXITSTATUS(status) == 0;
	if (channel_close(ch) != 0)
		ok = 0;
	if (!ok) {
		fprintf(stderr, "install_prog: channel round trip failed "
			"(status %d)\n", status);
		return 1;
	}
	printf("exchange %s: channel round trip ok\n", version);
	return 0;
}
