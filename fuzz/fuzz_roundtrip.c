/*
 * fuzz_roundtrip.c - libFuzzer target: what one channel sends, the other
 * receives unchanged.
 *
 * Two channels share a socket pair (channel_from_socket on each end). The
 * input is a list of records [op][size lo][size hi][split][fill]; each
 * becomes one send: a message (channel_send), an error text
 * (channel_send_error), or n items of a stream (channel_put). Sends go in
 * batches that fit the socket's buffer; after each batch the other channel
 * receives everything: messages with channel_recv, items with channel_get
 * cut at a different place than the put, and every payload is compared
 * with what was sent. Each record also checks the header codec alone:
 * frame_encode then frame_decode gives back the kind and length, or
 * EMSGSIZE above the maximum.
 */
#include "exchange.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: check failed: %s\n",	\
				__FILE__, __LINE__, #cond);		\
			abort();					\
		}							\
	} while (0)

#define RECORD 5
#define MAX_BATCH 16
/* A batch stays well inside a socket pair's default buffer, so that the
 * sends never wait for a receiver that runs later in the same thread. */
#define BATCH_BYTES (64 * 1024)

/* One send of a batch. */
struct sent {
	int op;			/* 0 message, 1 error text, 2 stream items */
	unsigned char *buf;	/* the payload sent */
	size_t len;		/* its bytes */
	size_t item;		/* stream item size */
	size_t split;		/* stream: items in the first get */
};

/* The payload of a record: a pattern seeded by its fill byte, so that a
 * byte moved or lost shows. Error texts hold no NUL. */
static unsigned char *make_payload(size_t len, unsigned fill, int text)
{
	unsigned char *p = malloc(len + 1);
	size_t i;

	CHECK(p);
	for (i = 0; i < len; i++) {
		p[i] = (unsigned char)(fill + i * 7 + (i >> 8));
		if (text && p[i] == 0)
			p[i] = 'x';
	}
	p[len] = 0;
	return p;
}

static void check_codec(uint32_t kind, uint64_t len, size_t max)
{
	unsigned char hdr[FRAME_HEADER_SIZE];
	struct frame_header h;
	int r;

	frame_encode(hdr, kind, len);
	CHECK(frame_decode(hdr, FRAME_HEADER_SIZE - 1, max, &h) == 0);
	r = frame_decode(hdr, FRAME_HEADER_SIZE, max, &h);
	if (kind == 0 || kind > FRAME_KIND_MAX ||
	    len > UINT64_MAX - FRAME_HEADER_SIZE) {
		CHECK(r == -1 && errno == EPROTO);
		return;
	}
	if (len > max) {
		CHECK(r == -1 && errno == EMSGSIZE);
		return;
	}
	CHECK(r == 1);
	CHECK(h.kind == kind && h.size == len + FRAME_HEADER_SIZE);
	CHECK(h.magic == FRAME_MAGIC);
}

/* Receives the batch on rx and compares it with what was sent. */
static void receive_batch(struct channel *rx, struct sent *b, size_t nb)
{
	struct channel_msg m;
	size_t i, n, got;
	unsigned char *items;

	for (i = 0; i < nb; i++) {
		if (b[i].op == 2) {
			n = b[i].len / b[i].item;
			items = malloc(b[i].len + 1);
			CHECK(items);
			CHECK(channel_get(rx, items, b[i].split, b[i].item,
					  &got, 1000) == 0);
			CHECK(got == b[i].split);
			CHECK(channel_get(rx, items + b[i].split * b[i].item,
					  n - b[i].split, b[i].item, &got,
					  1000) == 0);
			CHECK(got == n - b[i].split);
			CHECK(memcmp(items, b[i].buf, b[i].len) == 0);
			free(items);
			continue;
		}
		CHECK(channel_recv(rx, &m, 1000) == 1);
		CHECK(m.len == b[i].len);
		CHECK(memcmp(m.data, b[i].buf, m.len) == 0);
		CHECK(((char *)m.data)[m.len] == '\0');
		if (b[i].op == 1) {
			CHECK(m.kind == CHANNEL_ERROR);
			CHECK(m.cause == CHANNEL_SENT_ERROR);
		} else {
			CHECK(m.kind == CHANNEL_DATA);
			CHECK(m.cause == CHANNEL_OK);
		}
		channel_msg_free(&m);
	}
	/* Nothing more than was sent. */
	CHECK(channel_ready(rx, 0) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sent batch[MAX_BATCH];
	struct channel *tx, *rx;
	size_t off, nb = 0, bytes = 0, i;
	struct channel_msg m;
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	tx = channel_from_socket(sv[0]);
	rx = channel_from_socket(sv[1]);
	CHECK(tx && rx);

	for (off = 0; off + RECORD <= size; off += RECORD) {
		const uint8_t *r = data + off;
		size_t len = (size_t)r[1] | (size_t)r[2] << 8;
		struct sent *s;

		check_codec(r[0] & 15, (uint64_t)len << (r[3] & 31),
			    (size_t)r[4] << (r[3] >> 3));
		if (nb == MAX_BATCH || bytes + len > BATCH_BYTES) {
			receive_batch(rx, batch, nb);
			for (i = 0; i < nb; i++)
				free(batch[i].buf);
			nb = bytes = 0;
		}
		s = &batch[nb];
		s->op = r[0] % 3;
		s->item = 1 + r[3] % 16;
		if (s->op == 2) {
			/* Whole items, maybe none (a put of none sends
			 * nothing); a get may take part of a put. */
			len -= len % s->item;
			s->split = len ? (size_t)r[4] % (len / s->item + 1)
				       : 0;
		}
		s->buf = make_payload(len, r[4], s->op == 1);
		s->len = len;
		if (s->op == 0)
			CHECK(channel_send(tx, s->buf, len, 0) == 0);
		else if (s->op == 1)
			CHECK(channel_send_error(tx, (char *)s->buf, 0) == 0);
		else
			CHECK(channel_put(tx, s->buf, len / s->item, s->item,
					  0) == 0);
		nb++;
		bytes += len + FRAME_HEADER_SIZE;
	}
	receive_batch(rx, batch, nb);
	for (i = 0; i < nb; i++)
		free(batch[i].buf);

	/* End of stream after everything. */
	CHECK(channel_shutdown(tx) == 0);
	CHECK(channel_recv(rx, &m, 1000) == 0);
	CHECK(channel_close(tx) == 0);
	CHECK(channel_close(rx) == 0);
	return 0;
}
