/*
 * exchange_mpi.h - exchange_pmap over many machines: the companion library
 * libexchange_mpi, which runs one MPI process (a rank) per node and, in each,
 * spreads its share of the work over the node's cores with exchange's
 * forked workers.
 *
 * Every call here is collective: every rank of the communicator calls it,
 * with the same n, element sizes, function and options (the pointers aside).
 * The ranks first compare what they were given (one non-blocking
 * allreduce); when they disagree, every rank returns -1 with EINVAL and
 * exchange_mpi_error() says what differed, instead of waiting for ever.
 *
 * The work is dealt out from the root rank in chunks of consecutive
 * elements: a rank that finishes its chunk reports its results with the
 * request for the next, so uneven elements balance across ranks as pmap's
 * batches balance them across cores. The root computes a share too: one
 * thread of the library, which makes no MPI call, runs its chunks while the
 * calling thread answers the other ranks. Each rank runs its chunks on
 * pmap workers forked for its first chunk and kept for the others
 * (exchange_pmap_again with keep_workers: each batch carries its input;
 * elements of more than 64 KiB of input get workers forked per chunk), or,
 * for the reduce forms, with reuse workers of a Queue forked per chunk. A
 * kept worker sees ctx as it was at its fork.
 *
 * Input. Unless root_input is set, the input array must be on every rank
 * (each rank reads the elements it is dealt from its own copy, as pmap's
 * workers read theirs), and in may be NULL only where in_size is 0. With
 * root_input only the root's array is read: each chunk's input travels
 * with the chunk.
 *
 * Results and outcomes are gathered in element order on the root, or on
 * every rank with everywhere; elsewhere out and outcomes are not touched and
 * may be NULL. Every rank returns the same count.
 *
 * Children. The processes forked inside a rank are copies of an MPI
 * process, but they must never call MPI (nor anything that does): they
 * share the rank's connections, and a message sent or received there would
 * corrupt the rank's own. fn, fold and the like compute from their arguments
 * and return. Ranks and elements are assumed to be of one architecture:
 * results and outcomes travel as bytes.
 *
 * A rank that dies (a signal, exit without MPI_Finalize) ends the whole job,
 * as any MPI program's rank does; an element that kills its worker is only
 * an outcome, as with exchange_pmap.
 *
 * The calls block the calling thread; it must be the thread that calls MPI
 * (MPI_THREAD_FUNNELED is enough, and MPI_THREAD_SINGLE works with Open MPI
 * and MPICH, which do not mind threads that never call MPI). Waits are
 * polled with MPI_Test and short sleeps, so a waiting rank does not spin a
 * core that its workers need.
 */
#ifndef EXCHANGE_MPI_H
#define EXCHANGE_MPI_H

#include <mpi.h>

#include "exchange.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Options of the collective calls. A zeroed struct gives the defaults. */
struct exchange_mpi_options {
	int workers;		/* processes per rank; 0: exchange_cores() of
				   each rank */
	size_t batch;		/* pmap: elements per worker message; reduce:
				   elements per fold call; 0: chosen */
	void *ctx;		/* given to fn, fold and combine */
	struct exchange_outcome *outcomes; /* n entries to fill on the root
				   (on every rank with everywhere), or NULL */
	int time_limit_ms;	/* per batch (pmap) or fold call; 0: none.
				   SIGTERM, then SIGKILL 1 s later, as
				   exchange_pmap's */
	int root;		/* the rank that deals the work and gathers
				   the results */
	bool everywhere;	/* results and outcomes on every rank */
	bool root_input;	/* the input is read on the root only */
	size_t chunk;		/* elements per hand-out to a rank; 0: guided
				   (shrinking as the work runs out) */
};

/* The collective exchange_pmap: computes fn(in + i * in_size,
 * out + i * out_size, ctx) for every i in [0, n) on the ranks of comm and
 * stores the results in out on the root (on every rank with everywhere),
 * in order, with each element's outcome in opts->outcomes: an element whose
 * fn returned -1 is CHANNEL_SENT_ERROR, one that killed its worker
 * CHANNEL_SIGNALED, exactly as with exchange_pmap on one node. Returns, on
 * every rank, the number of elements computed (n when all succeeded), or -1
 * with errno on every rank: EINVAL (bad or mismatched arguments: see
 * exchange_mpi_error), ENOMEM, or what exchange_pmap failed with on some
 * rank. opts may be NULL. The sizes are checked as exchange_pmap checks
 * them, and out_size must leave room for a chunk's reply in one MPI message
 * (below 1 GiB). */
ssize_t exchange_mpi_pmap(exchange_pmap_fn *fn, const void *in, size_t n,
			  size_t in_size, void *out, size_t out_size,
			  const struct exchange_mpi_options *opts,
			  MPI_Comm comm);

/* The fold of a map-reduce: runs in a worker process and folds the count
 * elements first, first + 1, ... into one value, which it returns in memory
 * from malloc with its size in *len (the library frees it); or returns NULL
 * with errno set to fail those elements. in points to element first (the
 * next ones follow in_size bytes apart); with in_size 0 it is the array's
 * pointer itself, as exchange_pmap gives it. Called with count 0 (in the
 * calling process itself) it must return the value of no elements: the
 * identity of the combine. */
typedef void *exchange_mpi_fold_fn(const void *in, size_t first, size_t count,
				   size_t *len, void *ctx);

/* Combines two values into a new one from malloc (its size in *len), or
 * returns NULL with errno to fail the call; a and b stay the caller's. It
 * must be associative and commutative: values are combined in an order that
 * depends on how the work was dealt. It runs in the ranks' own processes
 * (on the root, in the library's thread too), never in a worker, and must
 * not call MPI. */
typedef void *exchange_mpi_combine_fn(const void *a, size_t alen,
				      const void *b, size_t blen, size_t *len,
				      void *ctx);

/* Map-reduce over bytes: each rank folds its chunks in pieces of
 * opts->batch elements (fold, in its workers), combines the pieces' values
 * into one as they arrive, and the ranks' values are combined on the root
 * (and sent to every rank with everywhere). *value (from malloc, the caller
 * frees it) and *len receive the result there; elsewhere they are set to
 * NULL and 0. With n = 0, or when no element succeeded, the result is
 * fold's value of no elements. A piece that fails is folded again one
 * element at a time, so only the elements that fail are left out, each with
 * its outcome in opts->outcomes (CHANNEL_SENT_ERROR when fold returned NULL,
 * CHANNEL_SIGNALED or CHANNEL_EXITED when it killed its worker,
 * CHANNEL_TIMED_OUT). Returns the number of elements folded, on every
 * rank, or -1 with errno on every rank as exchange_mpi_pmap. */
ssize_t exchange_mpi_reduce(exchange_mpi_fold_fn *fold, const void *in,
			    size_t n, size_t in_size,
			    exchange_mpi_combine_fn *combine, void **value,
			    size_t *len, const struct exchange_mpi_options *opts,
			    MPI_Comm comm);

/* Map-reduce into count items of type, combined with op: as
 * exchange_mpi_reduce, but every value fold returns must be count items of
 * type (count times its extent, in bytes), values are combined within a
 * rank with MPI_Reduce_local and across ranks with MPI_Reduce (MPI_Allreduce
 * with everywhere), and the result is stored in value (count items of type)
 * on the root, or on every rank with everywhere. A rank given no element
 * contributes fold's value of no elements. Returns as exchange_mpi_reduce;
 * EINVAL also for a value of the wrong size. */
ssize_t exchange_mpi_reduce_op(exchange_mpi_fold_fn *fold, const void *in,
			       size_t n, size_t in_size, void *value,
			       int count, MPI_Datatype type, MPI_Op op,
			       const struct exchange_mpi_options *opts,
			       MPI_Comm comm);

/* What the last failed call of this thread found wrong, as a sentence (for
 * mismatched arguments: which one, and its smallest and largest values
 * over the ranks); "" when no call has failed. The text is the library's;
 * it stays until the next call of this thread. */
const char *exchange_mpi_error(void);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EXCHANGE_MPI_H */
