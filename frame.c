/*
 * frame.c - the wire format, and nothing else of the library: a frame is a
 * 16-byte header (size of the whole frame, kind, magic) in the host's byte
 * order, then the payload (internal.h describes each kind). The channel
 * layer, preload, the persistent protocol and the fuzz targets all read
 * headers through frame_decode, so that one function decides what is a
 * well-formed frame. A FAILURE frame's payload (cause, code, text) is
 * turned into a message by frame_decode_failure alone, for channel_recv
 * and for channel_frames_next, the decoder of flushed frames.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void frame_encode(void *out, uint32_t kind, uint64_t payload_len)
{
	struct frame_header h = {
		.size = payload_len + FRAME_HEADER_SIZE,
		.kind = kind,
		.magic = FRAME_MAGIC,
	};

	memcpy(out, &h, FRAME_HEADER_SIZE);
}

int frame_decode(const void *buf, size_t len, size_t max,
		 struct frame_header *h)
{
	if (len < FRAME_HEADER_SIZE)
		return 0;
	memcpy(h, buf, FRAME_HEADER_SIZE);
	if (h->magic != FRAME_MAGIC || h->kind == 0 ||
	    h->kind > FRAME_KIND_MAX || h->size < FRAME_HEADER_SIZE) {
		errno = EPROTO;
		return -1;
	}
	if (h->size - FRAME_HEADER_SIZE > max) {
		errno = EMSGSIZE;
		return -1;
	}
	return 1;
}


void frame_decode_failure(struct channel_msg *msg)
{
	int32_t cc[2] = { CHANNEL_PROTOCOL, EPROTO };
	unsigned char *p = msg->data;

	if (msg->len >= sizeof(cc)) {
		memcpy(cc, p, sizeof(cc));
		memmove(p, p + sizeof(cc), msg->len - sizeof(cc) + 1);
		msg->len -= sizeof(cc);
	} else {
		p[0] = '\0';
		msg->len = 0;
	}
	msg->cause = cc[0];
	msg->code = cc[1];
}

int channel_frames_next(const void *frames, size_t len, size_t *off,
			struct channel_msg *msg)
{
	const unsigned char *p;
	struct frame_header h;
	unsigned char *data;
	size_t payload;
	int r;

	if ((!frames && len) || !off || !msg || *off > len) {
		errno = EINVAL;
		return -1;
	}
	if (*off == len)
		return 0;
	p = (const unsigned char *)frames + *off;
	r = frame_decode(p, len - *off, SIZE_MAX - FRAME_HEADER_SIZE, &h);
	if (r < 0)
		return -1;
	/* A header or payload cut short, or a kind flush never returns. */
	if (r == 0 || h.size > len - *off ||
	    (h.kind != FRAME_DATA && h.kind != FRAME_ERROR &&
	     h.kind != FRAME_FAILURE)) {
		errno = EPROTO;
		return -1;
	}
	payload = (size_t)(h.size - FRAME_HEADER_SIZE);
	data = malloc(payload + 1);
	if (!data)
		return -1;
	memcpy(data, p + FRAME_HEADER_SIZE, payload);
	data[payload] = '\0';
	*msg = (struct channel_msg){ .data = data, .len = payload,
				     .kind = (int)h.kind,
				     .task = CHANNEL_NO_TASK };
	if (h.kind == FRAME_FAILURE)
		frame_decode_failure(msg);
	else if (h.kind == FRAME_ERROR)
		msg->cause = CHANNEL_SENT_ERROR;
	*off += (size_t)h.size;
	return 1;
}
