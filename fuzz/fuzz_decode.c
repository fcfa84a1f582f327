/*
 * fuzz_decode.c - libFuzzer target: random bytes, in random chunk sizes,
 * through a channel's real receive path.
 *
 * The input is turned into a byte stream and a way of cutting it: byte 0
 * picks the channel's maximum message size, then come records of
 * [n][op][n bytes]. The n bytes of every record, end to end, are the
 * stream. One end of a socket pair becomes a channel (channel_from_socket);
 * the target writes each record's bytes into the other end, then drives the
 * channel with the record's operation (receive, peek, ready, flush and
 * preload) until nothing more is complete. At the end it closes its end
 * and receives to the end of the stream.
 *
 * The oracle is a model decoder: the whole stream parsed at once with
 * frame_decode, giving the messages a receiver must see and how the stream
 * must end (clean end of stream, EPROTO, EMSGSIZE, ECONNRESET, or ENOMSG for
 * stream items where messages are expected). However the
 * bytes are cut and whichever operations run, the channel must deliver
 * exactly those messages, in order, then end the same way. Any difference
 * aborts, and libFuzzer reports the input.
 */
#include "exchange.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One message the model expects. */
struct expect {
	uint32_t kind;		/* FRAME_DATA or FRAME_ERROR (FAILURE frames
				   preloaded by a test would be taken too) */
	const uint8_t *payload;	/* into the stream */
	size_t len;		/* payload bytes */
};

/* What the whole stream must produce. */
struct model {
	struct expect *msgs;	/* in order */
	size_t n;		/* how many */
	size_t next;		/* the next one the channel must deliver */
	int end;		/* 0: clean end of stream; else the errno */
};

/* The maxima byte 0 chooses from: the default, tiny ones, the header size
 * and ones on both sides of the channel's buffer limit (256 KiB). */
static const size_t maxima[] = {
	0, 1, 15, 16, 100, 4096, 300000, (size_t)1 << 20,
};

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: check failed: %s\n",	\
				__FILE__, __LINE__, #cond);		\
			abort();					\
		}							\
	} while (0)

/* Parses the stream as a receiver must see it. */
static void model_build(struct model *md, const uint8_t *s, size_t len,
			size_t max)
{
	struct frame_header h;
	size_t off = 0, payload;
	int r;

	md->msgs = malloc((len / FRAME_HEADER_SIZE + 1) * sizeof(*md->msgs));
	CHECK(md->msgs);
	md->n = md->next = 0;
	for (;;) {
		if (off == len) {
			md->end = 0;
			return;
		}
		r = frame_decode(s + off, len - off, max, &h);
		if (r < 0) {
			md->end = errno;
			return;
		}
		if (r == 1 && h.kind == FRAME_FAILURE) {
			/* Only the receiving process makes FAILURE frames:
			 * one from the other side is forged. */
			md->end = EPROTO;
			return;
		}
		if (r == 1 && h.kind == FRAME_STREAM) {
			/* Stream data where a message is expected: its
			 * header alone says so. */
			md->end = ENOMSG;
			return;
		}
		if (r == 0 || h.size > len - off) {
			/* End of stream inside a frame. */
			md->end = ECONNRESET;
			return;
		}
		payload = (size_t)(h.size - FRAME_HEADER_SIZE);
		if (h.kind == FRAME_DONE ||
		    (h.kind == FRAME_CREDIT &&
		     payload == sizeof(uint64_t)) ||
		    (h.kind == FRAME_BOUND &&
		     payload == 2 * sizeof(uint64_t))) {
			/* Control frames go to on_control (none here); a
			 * bounded channel's flow control, well formed, is
			 * taken by the channel itself. */
			off += h.size;
			continue;
		}
		if (h.kind > FRAME_FAILURE) {
			/* Reuse control where a message is expected. */
			md->end = EPROTO;
			return;
		}
		md->msgs[md->n].kind = h.kind;
		md->msgs[md->n].payload = s + off + FRAME_HEADER_SIZE;
		md->msgs[md->n].len = payload;
		md->n++;
		off += h.size;
	}
}

/* A message received whole (kind, cause and code as channel_recv gives
 * them) must be the model's next one. */
static void model_take(struct model *md, const struct channel_msg *m)
{
	const struct expect *e;

	CHECK(md->next < md->n);
	e = &md->msgs[md->next++];
	CHECK(m->data != NULL);
	CHECK(((const char *)m->data)[m->len] == '\0');
	CHECK((uint32_t)m->kind == e->kind);
	if (e->kind == FRAME_FAILURE) {
		int32_t cc[2] = { CHANNEL_PROTOCOL, EPROTO };

		if (e->len >= sizeof(cc)) {
			memcpy(cc, e->payload, sizeof(cc));
			CHECK(m->len == e->len - sizeof(cc));
			CHECK(memcmp(m->data, e->payload + sizeof(cc),
				     m->len) == 0);
		} else {
			CHECK(m->len == 0);
		}
		CHECK(m->cause == cc[0] && m->code == cc[1]);
		return;
	}
	CHECK(m->len == e->len);
	CHECK(memcmp(m->data, e->payload, m->len) == 0);
	CHECK(m->cause == (e->kind == FRAME_ERROR ? CHANNEL_SENT_ERROR
						  : CHANNEL_OK));
}

/* Frames handed out by channel_flush are re-encoded whole: their raw
 * payload is the model's. */
static void model_take_frames(struct model *md, const uint8_t *p, size_t len)
{
	struct frame_header h;
	const struct expect *e;
	size_t off = 0;

	while (off < len) {
		CHECK(frame_decode(p + off, len - off, SIZE_MAX, &h) == 1);
		CHECK(h.size <= len - off);
		CHECK(md->next < md->n);
		e = &md->msgs[md->next++];
		CHECK(h.kind == e->kind);
		CHECK(h.size - FRAME_HEADER_SIZE == e->len);
		CHECK(memcmp(p + off + FRAME_HEADER_SIZE, e->payload,
			     e->len) == 0);
		off += h.size;
	}
}

/* Runs op on the channel until nothing complete remains (0), or the
 * stream ended (1). Each outcome is checked against the model. */
static int drive(struct channel *ch, struct model *md, unsigned op,
		 int timeout_ms)
{
	struct channel_msg m;
	void *frames;
	size_t flen;
	ssize_t k;
	int r;

	for (;;) {
		switch (op % 4) {
		case 1:
			/* Peek, then receive the same message. */
			r = channel_peek(ch, &m, timeout_ms);
			if (r == 1) {
				struct channel_msg m2;
				void *lent = malloc(m.len + 1);

				/* The lent data lasts until the receive. */
				CHECK(lent);
				memcpy(lent, m.data, m.len + 1);
				m.data = lent;
				CHECK(channel_recv(ch, &m2, 0) == 1);
				CHECK(m2.kind == m.kind);
				CHECK(m2.cause == m.cause && m2.code == m.code);
				CHECK(m2.len == m.len);
				CHECK(memcmp(m2.data, m.data, m.len) == 0);
				free(lent);
				model_take(md, &m2);
				channel_msg_free(&m2);
				continue;
			}
			break;
		case 2:
			/* Ready says whether a receive would return at once. */
			r = channel_ready(ch, timeout_ms);
			if (r == 0)
				return 0;
			if (r < 0)
				break;
			r = channel_recv(ch, &m, 0);
			CHECK(r != -1 || errno != ETIMEDOUT);
			if (r == 1) {
				model_take(md, &m);
				channel_msg_free(&m);
				continue;
			}
			break;
		case 3:
			/* Flush what is complete (up to a fault, which the
			 * next call meets), and put it back in front. */
			k = channel_flush(ch, &frames, &flen, 0);
			if (k < 0) {
				/* Nothing was taken: the error is the one a
				 * receive meets, checked below. */
				r = -1;
				break;
			}
			if (k == 0) {
				free(frames);
				r = channel_recv(ch, &m, timeout_ms);
				if (r == 1) {
					model_take(md, &m);
					channel_msg_free(&m);
					continue;
				}
				break;
			}
			if (channel_preload(ch, frames, flen) < 0) {
				/* A large frame is half received behind
				 * them: nothing can go in front. */
				CHECK(errno == EBUSY);
				model_take_frames(md, frames, flen);
				free(frames);
				continue;
			}
			free(frames);
			op = 0;
			continue;
		default:
			r = channel_recv(ch, &m, timeout_ms);
			if (r == 1) {
				model_take(md, &m);
				channel_msg_free(&m);
				continue;
			}
			break;
		}
		if (r < 0 && errno == ETIMEDOUT)
			return 0;
		/* The end: every expected message delivered, the same
		 * ending, and it stays. */
		CHECK(md->next == md->n);
		if (r == 0) {
			CHECK(md->end == 0);
			CHECK(channel_recv(ch, &m, 0) == 0);
		} else {
			CHECK(errno == md->end);
			CHECK(channel_recv(ch, &m, 0) == -1);
			CHECK(errno == md->end);
		}
		return 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *stream;
	size_t slen = 0, max, off, n;
	struct model md;
	struct channel *ch;
	int sv[2], ended = 0;

	if (size < 1)
		return 0;
	max = maxima[data[0] % (sizeof(maxima) / sizeof(maxima[0]))];

	/* The stream, end to end. */
	stream = malloc(size);
	CHECK(stream);
	for (off = 1; off + 2 <= size; off += 2 + n) {
		n = data[off];
		if (n > size - off - 2)
			n = size - off - 2;
		memcpy(stream + slen, data + off + 2, n);
		slen += n;
	}
	model_build(&md, stream, slen, max ? max : CHANNEL_MAX_DEFAULT);

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	ch = channel_from_socket(sv[0]);
	CHECK(ch);
	CHECK(channel_set_max(ch, max) == 0);

	for (off = 1; off + 2 <= size && !ended; off += 2 + n) {
		size_t done = 0;

		n = data[off];
		if (n > size - off - 2)
			n = size - off - 2;
		/* The socket holds far more than one input: the channel
		 * reads everything between records, so this never blocks. */
		while (done < n) {
			ssize_t w = write(sv[1], data + off + 2 + done,
					  n - done);

			CHECK(w > 0);
			done += (size_t)w;
		}
		ended = drive(ch, &md, data[off + 1], 0);
	}
	close(sv[1]);
	if (!ended)
		CHECK(drive(ch, &md, 0, 1000) == 1);
	channel_close(ch);
	free(md.msgs);
	free(stream);
	return 0;
}
