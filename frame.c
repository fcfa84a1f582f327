/*
 * frame.c - the wire format, and nothing else of the library: a frame is a
 * 16-byte header (size of the whole frame, kind, magic) in the host's byte
 * order, then the payload (internal.h describes each kind). The channel
 * layer, preload, the persistent protocol and the fuzz targets all read
 * headers through frame_decode, so that one function decides what is a
 * well-formed frame.
 */
#include "internal.h"

#include <errno.h>
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

