/*
 * arena.c - memory for records that only the parent reads, kept out of its
 * children.
 *
 * A fork copies the page table entry of every page the parent has written
 * and write-protects the page in both processes; a child's exit undoes it
 * all again. An exchange with a long queue keeps its queued work in pages
 * no child ever reads (5,000 queued tasks are about 120 pages), and each
 * fork paid for every one of them. So those records live in blocks mapped
 * on their own and marked MADV_DONTFORK where the system has it: a fork
 * leaves them out of the child, copies no entry for them, and the parent
 * writes them afterwards without a copy-on-write fault. Whatever a child
 * needs of such a record goes with the fork as a copy (exchange.c, the
 * task's argument).
 *
 * Blocks are bump-allocated: records come and go in about the order they
 * were made, so a block is unmapped once all it handed out has been freed.
 * Without MADV_DONTFORK (or anonymous mappings), or when a mapping or its
 * MADV_DONTFORK fails, a block comes from malloc and children inherit it,
 * as they inherit the rest of the heap. The two kinds are kept on two
 * lists: a child frees its copies of the one and forgets the other,
 * without reading a block it does not have.
 */
#include "internal.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Under AddressSanitizer (gcc's __SANITIZE_ADDRESS__, clang's feature):
 * the records handed out are addressable and the rest of each block is
 * not, so that a record used after arena_free is reported as a heap
 * block's would be. The two calls are AddressSanitizer's own interface
 * (sanitizer/asan_interface.h). */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The usual block: room for several hundred small records. */
#define BLOCK_SIZE (64 * 1024)

/* A record larger than this has a block of its own. */
#define BLOCK_SHARE_MAX (BLOCK_SIZE / 4)

/* What every allocation is rounded to, as malloc aligns. */
#define ALIGN alignof(max_align_t)

struct arena_block {
	struct arena_block *prev;	/* the arena's list, newest first */
	struct arena_block *next;
	size_t size;		/* bytes of the block, header included */
	size_t used;		/* bytes handed out, header included */
	size_t live;		/* allocations not yet freed */
	bool mapped;		/* a mapping of its own (else from malloc) */
};

/* In front of every allocation: its block, and its size with this
 * prefix (for the poisoning above). */
struct arena_prefix {
	struct arena_block *block;
	size_t size;
};

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

#define HEADER round_up(sizeof(struct arena_block), ALIGN)
#define PREFIX round_up(sizeof(struct arena_prefix), ALIGN)

/* size bytes mapped on their own and kept out of children (size rounded
 * up to whole pages), or NULL where that cannot be had: a mapping children
 * get is no better than malloc's. */
static struct arena_block *map_unforked(struct arena *a, size_t *size)
{
	struct arena_block *b = sys_map_kept(size, false);

	if (b && !a->blocks)
		a->pid = sys_getpid();
	return b;
}

/* The list b is on: two, so that a child never follows a link into a
 * block it does not have. */
static struct arena_block **list_of(struct arena *a,
				    const struct arena_block *b)
{
	return b->mapped ? &a->blocks : &a->heap;
}

/* A block of at least size bytes, out of children if it can be. */
static struct arena_block *block_new(struct arena *a, size_t size)
{
	struct arena_block *b = map_unforked(a, &size), **list;

	if (b) {
		b->mapped = true;
	} else {
		b = malloc(size);
		if (!b)
			return NULL;
		b->mapped = false;
	}
	/* A mapping may lie where another process's block lay when this
	 * one was forked: its shadow says nothing of this block. */
	UNPOISON(b, size);
	POISON((unsigned char *)b + HEADER, size - HEADER);
	list = list_of(a, b);
	b->size = size;
	b->used = HEADER;
	b->live = 0;
	b->prev = NULL;
	b->next = *list;
	if (*list)
		(*list)->prev = b;
	*list = b;
	return b;
}

static void block_unmap(struct arena_block *b)
{
	UNPOISON(b, b->size);
	if (b->mapped)
		munmap(b, b->size);
	else
		free(b);
}

static void block_free(struct arena *a, struct arena_block *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		*list_of(a, b) = b->next;
	if (b->next)
		b->next->prev = b->prev;
	block_unmap(b);
}

void *arena_alloc(struct arena *a, size_t size)
{
	struct arena_block *b = a->cur;
	struct arena_prefix *p;
	size_t need;

	if (size > SIZE_MAX - HEADER - PREFIX - BLOCK_SIZE) {
		errno = ENOMEM;
		return NULL;
	}
	need = PREFIX + round_up(size, ALIGN);
	if (need > BLOCK_SHARE_MAX) {
		/* Alone in its block, which goes when it does. */
		b = block_new(a, HEADER + need);
		if (!b)
			return NULL;
	} else if (!b || b->size - b->used < need) {
		b = block_new(a, BLOCK_SIZE);
		if (!b)
			return NULL;
		a->cur = b;
	}
	p = (struct arena_prefix *)((unsigned char *)b + b->used);
	UNPOISON(p, need);
	p->block = b;
	p->size = need;
	b->used += need;
	b->live++;
	return (unsigned char *)p + PREFIX;
}

void arena_free(struct arena *a, void *ptr)
{
	struct arena_prefix *p;
	struct arena_block *b;

	if (!ptr)
		return;
	p = (struct arena_prefix *)((unsigned char *)ptr - PREFIX);
	b = p->block;
	POISON(p, p->size);
	if (--b->live > 0)
		return;
	if (b == a->cur)
		b->used = HEADER;	/* the one in use: kept, emptied */
	else
		block_free(a, b);
}

static void release_list(struct arena_block **list)
{
	while (*list) {
		struct arena_block *b = *list;

		*list = b->next;
		block_unmap(b);
	}
}

void arena_release(struct arena *a, bool in_child)
{
	/* A child of the caller's own fork holds a copy too. The mapped
	 * blocks are not in it: nothing there to free, nothing to read. The
	 * heap's are its copies, freed as the parent frees its own. */
	if (a->blocks && (in_child || sys_getpid() != a->pid))
		a->blocks = NULL;
	release_list(&a->blocks);
	release_list(&a->heap);
	a->cur = NULL;
}
