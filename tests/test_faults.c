/*
 * test_faults.c - the fault suite: every task ends in one visible outcome,
 * nothing is lost or duplicated, nothing hangs, nothing leaks, whatever
 * goes wrong around the library.
 *
 * Faults come from the test hooks of internal.h (read, write, fork and
 * pipe replaced by functions that fail or fall short on purpose), from
 * signals (an interval timer firing every few hundred microseconds with a
 * handler installed without SA_RESTART), from SIGKILLs of children, from
 * children that write malformed frames straight to their descriptor, from
 * a lowered descriptor limit, and from the caller's own arrangements
 * (SIGCHLD ignored or handled, many descriptors open, atexit handlers,
 * stdio buffers).
 *
 * Children report only through their channel, their exit status or a page
 * of shared memory (mapped from /dev/zero) where they count the faults
 * injected in them; every assertion stays in the test body. Each test
 * checks hygiene at its end: the same number of descriptors open as at
 * its start, no zombie, no child left running.
 *
 * Figures. When FAULTS_REPORT names a file, each test appends lines
 * "CLASS KEY VALUE" to it (one write each, O_APPEND): the faults injected,
 * the tasks submitted, completed and failed, results lost and duplicated,
 * descriptors leaked, zombies, orphans. "injected" is written as soon as
 * the faults have happened, "survived" only once every assertion of the
 * test has passed, so a failing test shows as injected but not survived.
 * make faults adds them up.
 */
#include "exchange.h"
#include "channel_impl.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif

/* ------------------------------------------------------------------------ */
/* Shared memory, figures, hygiene                                          */
/* ------------------------------------------------------------------------ */

#define MAX_PIDS 64

/* Counters shared between a test and its children. */
struct shared {
	atomic_long injected;	/* faults injected, in any process */
	atomic_int npids;	/* entries used in pids */
	atomic_int pids[MAX_PIDS];	/* processes to look for afterwards */
	atomic_int flag;	/* a test-specific mark */
};

static struct shared *sh;

static void shared_new(void)
{
	int fd = open("/dev/zero", O_RDWR);
	void *p;

	cr_assert_geq(fd, 0);
	p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
		 MAP_SHARED, fd, 0);
	close(fd);
	cr_assert_neq(p, MAP_FAILED);
	sh = p;
}

static void shared_free(void)
{
	munmap(sh, sizeof(*sh));
	sh = NULL;
}

/* Appends "cls key value" to $FAULTS_REPORT, if set. */
static void record(const char *cls, const char *key, long value)
{
	const char *path = getenv("FAULTS_REPORT");
	char line[160];
	int fd, n;

	if (!path || !*path)
		return;
	n = snprintf(line, sizeof(line), "%s %s %ld\n", cls, key, value);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n) {
		/* The figures are best effort; the assertions decide. */
	}
	close(fd);
}

/* Reaps every child left: returns the number of zombies found, and sets
 * *alive when some child is still running (it is then killed and reaped,
 * so one failing test does not spoil the next). */
static int reap_leftovers(int *alive)
{
	int st, n = 0;
	pid_t p;

	*alive = 0;
	for (;;) {
		p = waitpid(-1, &st, WNOHANG);
		if (p > 0) {
			n++;
			continue;
		}
		if (p == 0) {
			*alive = 1;
			/* Running children of ours: wait for them briefly,
			 * they should have been reaped already. */
			{
				struct timespec ts = { 0, 50000000 };

				nanosleep(&ts, NULL);
			}
			p = waitpid(-1, &st, WNOHANG);
			if (p > 0) {
				n++;
				continue;
			}
		}
		return n;
	}
}

struct hygiene {
	int fds;		/* descriptors open at the start */
	const char *cls;	/* the fault class, for the figures */
};

static void hygiene_begin(struct hygiene *h, const char *cls)
{
	h->cls = cls;
	h->fds = count_fds();
}

static void hygiene_end(const struct hygiene *h)
{
	int leaked = count_fds() - h->fds, alive, zombies;

	zombies = reap_leftovers(&alive);
	record(h->cls, "fds_leaked", leaked > 0 ? leaked : 0);
	record(h->cls, "zombies", zombies);
	record(h->cls, "children_alive", alive);
	cr_assert_eq(leaked, 0, "%d descriptors leaked", leaked);
	cr_assert_eq(zombies, 0, "%d zombies left", zombies);
	cr_assert_eq(alive, 0, "a child was left running");
}

/* ------------------------------------------------------------------------ */
/* Outcomes                                                                 */
/* ------------------------------------------------------------------------ */

#define MAX_TASKS 256

/* What came back, per task. */
struct tally {
	int data[MAX_TASKS];	/* data messages */
	int error[MAX_TASKS];	/* error messages */
	int failure[MAX_TASKS];	/* failures recorded by the parent */
	int cause[MAX_TASKS];	/* cause of the last failure */
	int code[MAX_TASKS];	/* and its code */
	int bad;		/* data that did not match what was sent */
	int stray;		/* messages with no task number in range */
};

/* Each task sends its task number's pattern: len bytes of (task + i) %
 * 251, with the task number in the first bytes. */
static void fill(unsigned char *p, size_t len, size_t task)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)((task + i) % 251);
}

static int check_fill(const unsigned char *p, size_t len, size_t task)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (unsigned char)((task + i) % 251))
			return 0;
	return 1;
}

/* The argument every task gets: its number and the size to send. */
struct job {
	size_t task;		/* the task number it will get */
	size_t len;		/* bytes to send back */
	int mode;		/* what the task does (per test) */
	int spare;		/* fills what would be padding: the struct
				   travels whole, and memcheck rightly calls
				   padding bytes sent uninitialised */
};

static int tally_store(struct exchange *ex, struct channel *ch, void *udata)
{
	struct tally *t = udata;
	struct channel_msg m;
	size_t k;

	(void)ex;
	while (channel_recv(ch, &m, 0) == 1) {
		k = m.task;
		if (k >= MAX_TASKS) {
			t->stray++;
		} else if (m.kind == CHANNEL_DATA) {
			/* The payload: the task number, then the pattern. */
			size_t task;

			if (m.len < sizeof(task)) {
				t->bad++;
			} else {
				memcpy(&task, m.data, sizeof(task));
				if (task != k ||
				    !check_fill((unsigned char *)m.data +
						sizeof(task),
						m.len - sizeof(task), k))
					t->bad++;
			}
			t->data[k]++;
		} else if (m.kind == CHANNEL_ERROR) {
			t->error[k]++;
		} else {
			t->failure[k]++;
			t->cause[k] = m.cause;
			t->code[k] = m.code;
		}
		channel_msg_free(&m);
	}
	return 0;
}

/* Sends the job's answer: task number then pattern. */
static void send_answer(struct channel *ch, const struct job *j)
{
	size_t len = sizeof(j->task) + j->len;
	unsigned char *p = malloc(len);

	if (!p)
		channel_exit(ch, 99);
	memcpy(p, &j->task, sizeof(j->task));
	fill(p + sizeof(j->task), j->len, j->task);
	channel_send(ch, p, len, -1);
	free(p);
}

static void answer_fn(struct channel *ch, const void *arg, size_t len,
		      void *ctx)
{
	(void)len, (void)ctx;
	send_answer(ch, arg);
}

/* Counts, over tasks [0, n): completed (one result), failed (one failure
 * or error), lost (nothing) and duplicated (more than one outcome). */
struct sums {
	int completed, failed, lost, duplicated;
};

static struct sums sum_up(const struct tally *t, int n)
{
	struct sums s = { 0 };
	int i, k;

	for (i = 0; i < n; i++) {
		k = t->data[i] + t->error[i] + t->failure[i];
		if (k == 0)
			s.lost++;
		else if (k > 1)
			s.duplicated++;
		else if (t->data[i])
			s.completed++;
		else
			s.failed++;
	}
	return s;
}

/* Logs the tasks that did not end with exactly one result, to explain a
 * failing assertion (failures may be expected). */
static void log_odd_tasks(const struct tally *t, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (t->data[i] != 1 || t->error[i] || t->failure[i])
			cr_log_info("task %d: %d results, %d errors, %d "
				    "failures (cause %d, code %d)", i,
				    t->data[i], t->error[i], t->failure[i],
				    t->cause[i], t->code[i]);
	if (t->bad || t->stray)
		cr_log_info("%d results damaged, %d stray", t->bad, t->stray);
}

static void record_sums(const char *cls, int submitted, struct sums s)
{
	record(cls, "submitted", submitted);
	record(cls, "completed", s.completed);
	record(cls, "failed", s.failed);
	record(cls, "lost", s.lost);
	record(cls, "duplicated", s.duplicated);
}

/* Starts n answer tasks of the given sizes on ex and runs it to the end. */
static void run_answers(struct exchange *ex, int n, size_t (*size_of)(int))
{
	struct job j = { 0 };
	int i;

	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = size_of(i);
		cr_assert_eq(exchange_start(ex, answer_fn, &j, sizeof(j), NULL),
			     i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------------ */
/* EINTR and short transfers                                                */
/* ------------------------------------------------------------------------ */

/* Every other call fails with EINTR before doing anything, in whichever
 * process the hook runs (children inherit it). */
static int flip;

static ssize_t eintr_read(int fd, void *buf, size_t len)
{
	if (flip++ % 2 == 0) {
		atomic_fetch_add(&sh->injected, 1);
		errno = EINTR;
		return -1;
	}
	return read(fd, buf, len);
}

static ssize_t eintr_write(int fd, const void *buf, size_t len)
{
	if (flip++ % 2 == 0) {
		atomic_fetch_add(&sh->injected, 1);
		errno = EINTR;
		return -1;
	}
	return write(fd, buf, len);
}

static size_t mixed_size(int i)
{
	/* From empty to beyond the channel's own buffer (256 KiB). */
	static const size_t sizes[] = { 0, 1, 15, 4096, 65537, 300000 };

	return sizes[i % 6];
}

static size_t small_size(int i)
{
	return (size_t)(i * 97 % 1500);
}

static void run_hooked(const char *cls, bool reuse, size_t (*size_of)(int),
		       int n)
{
	struct exchange_options o = { .limit = 4, .reuse = reuse,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;
	struct sums s;

	cr_assert_not_null(t);
	hygiene_begin(&h, cls);
	shared_new();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	run_answers(ex, n, size_of);
	exchange_free(ex);
	memset(&exchange_hooks, 0, sizeof(exchange_hooks));
	s = sum_up(t, n);
	record(cls, "injected", atomic_load(&sh->injected));
	record_sums(cls, n, s);
	log_odd_tasks(t, n);
	cr_assert_eq(s.completed, n);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	cr_assert_gt(atomic_load(&sh->injected), n);
	record(cls, "survived", atomic_load(&sh->injected));
	shared_free();
	free(t);
	hygiene_end(&h);
}

Test(faults, eintr_on_every_read_and_write, .timeout = 60)
{
	exchange_hooks.read = eintr_read;
	exchange_hooks.write = eintr_write;
	run_hooked("eintr", false, mixed_size, 24);
}

Test(faults, eintr_on_every_read_and_write_reuse, .timeout = 60)
{
	exchange_hooks.read = eintr_read;
	exchange_hooks.write = eintr_write;
	run_hooked("eintr", true, mixed_size, 24);
}

/* Every read and write moves one byte at most. */
static ssize_t one_byte_read(int fd, void *buf, size_t len)
{
	if (len > 1)
		atomic_fetch_add(&sh->injected, 1);
	return read(fd, buf, len ? 1 : 0);
}

static ssize_t one_byte_write(int fd, const void *buf, size_t len)
{
	if (len > 1)
		atomic_fetch_add(&sh->injected, 1);
	return write(fd, buf, len ? 1 : 0);
}

Test(faults, one_byte_reads_and_writes, .timeout = 60)
{
	exchange_hooks.read = one_byte_read;
	exchange_hooks.write = one_byte_write;
	run_hooked("short", false, small_size, 16);
}

Test(faults, one_byte_reads_and_writes_reuse, .timeout = 60)
{
	exchange_hooks.read = one_byte_read;
	exchange_hooks.write = one_byte_write;
	run_hooked("short", true, small_size, 16);
}

/* ------------------------------------------------------------------------ */
/* fork and pipe failures                                                   */
/* ------------------------------------------------------------------------ */

static int calls;

/* Every third fork fails with EAGAIN, as when the process table is full. */
static pid_t failing_fork(void)
{
	if (calls++ % 3 == 1) {
		atomic_fetch_add(&sh->injected, 1);
		errno = EAGAIN;
		return -1;
	}
	return fork();
}

/* Every fifth pipe fails with EMFILE: sometimes a channel's first pipe,
 * sometimes its second. */
static int failing_pipe(int fds[2])
{
	if (calls++ % 5 == 1) {
		atomic_fetch_add(&sh->injected, 1);
		errno = EMFILE;
		return -1;
	}
	return pipe(fds);
}

/* The same for the socket pair of a task that answers once (a fork-per-task
 * child that is not continuous). */
static int failing_socketpair(int fds[2])
{
	if (calls++ % 5 == 1) {
		atomic_fetch_add(&sh->injected, 1);
		errno = EMFILE;
		return -1;
	}
	return socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
}

/* Runs n answer tasks with a hook in place and checks that each failed
 * start is the task's NOT_STARTED outcome with the injected errno. */
static void run_start_failures(const char *cls, bool reuse, int err)
{
	struct exchange_options o = { .limit = 3, .reuse = reuse,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;
	struct sums s;
	int i, n = 30, not_started = 0;

	cr_assert_not_null(t);
	hygiene_begin(&h, cls);
	shared_new();
	calls = 0;
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	run_answers(ex, n, small_size);
	exchange_free(ex);
	memset(&exchange_hooks, 0, sizeof(exchange_hooks));
	s = sum_up(t, n);
	record(cls, "injected", atomic_load(&sh->injected));
	record_sums(cls, n, s);
	for (i = 0; i < n; i++) {
		if (!t->failure[i])
			continue;
		cr_assert_eq(t->cause[i], CHANNEL_NOT_STARTED, "task %d", i);
		cr_assert_eq(t->code[i], err, "task %d", i);
		not_started++;
	}
	cr_assert_eq(s.completed + s.failed, n);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	cr_assert_gt(not_started, 0);
	/* In reuse mode one failed fork may leave a task for a worker that
	 * did start, so failures are at most the faults injected. */
	cr_assert_leq(not_started, atomic_load(&sh->injected));
	if (!reuse)
		cr_assert_eq(not_started, atomic_load(&sh->injected));
	record(cls, "survived", atomic_load(&sh->injected));
	shared_free();
	free(t);
	hygiene_end(&h);
}

Test(faults, fork_failure_is_the_task_outcome, .timeout = 60)
{
	exchange_hooks.fork = failing_fork;
	run_start_failures("fork", false, EAGAIN);
}

Test(faults, fork_failure_is_the_task_outcome_reuse, .timeout = 60)
{
	exchange_hooks.fork = failing_fork;
	run_start_failures("fork", true, EAGAIN);
}

Test(faults, pipe_failure_is_the_task_outcome, .timeout = 60)
{
	exchange_hooks.pipe = failing_pipe;
	exchange_hooks.socketpair = failing_socketpair;
	run_start_failures("pipe", false, EMFILE);
}

Test(faults, pipe_failure_is_the_task_outcome_reuse, .timeout = 60)
{
	exchange_hooks.pipe = failing_pipe;
	run_start_failures("pipe", true, EMFILE);
}

/* Real exhaustion: the descriptor limit lowered to leave room for about
 * two channels. Tasks past that fail with EMFILE; once the limit is back,
 * the same exchange runs new work. */
Test(faults, descriptor_exhaustion_then_recovery, .timeout = 60)
{
	struct exchange_options o = { .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct rlimit old, low;
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 12, emfile = 0, rc_finish;

	/* valgrind keeps descriptors of its own near the limit and checks
	 * each new one against a lowered limit itself (closing what it
	 * refuses), so the test means nothing there; the plain and the
	 * sanitizer runs have it. */
	if (slow_run()) {
		free(t);
		cr_skip_test("valgrind handles a lowered descriptor limit itself");
	}
	cr_assert_not_null(t);
	hygiene_begin(&h, "emfile");
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	/* Two channels: four descriptors each while forking. */
	low.rlim_cur = (rlim_t)h.fds + 9;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 10;
		if (exchange_start(ex, answer_fn, &j, sizeof(j), NULL) != i)
			break;
	}
	rc_finish = exchange_finish(ex);
	setrlimit(RLIMIT_NOFILE, &old);
	cr_assert_eq(i, n);
	cr_assert_eq(rc_finish, 0);
	for (i = 0; i < n; i++)
		if (t->failure[i] && t->cause[i] == CHANNEL_NOT_STARTED &&
		    t->code[i] == EMFILE)
			emfile++;
	record("emfile", "injected", emfile);
	s = sum_up(t, n);
	cr_assert_eq(s.completed + s.failed, n);
	cr_assert_gt(emfile, 0, "the lowered limit never bit");
	cr_assert_gt(s.completed, 0);
	/* Resources are back: the same exchange runs more work. */
	for (i = n; i < 2 * n; i++) {
		j.task = (size_t)i;
		cr_assert_eq(exchange_start(ex, answer_fn, &j, sizeof(j), NULL),
			     i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	s = sum_up(t, 2 * n);
	record_sums("emfile", 2 * n, s);
	for (i = n; i < 2 * n; i++)
		cr_assert_eq(t->data[i], 1, "task %d after recovery", i);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	record("emfile", "survived", emfile);
	free(t);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */
/* ------------------------------------------------------------------------ */

static void on_alarm(int sig)
{
	(void)sig;
	if (sh)
		atomic_fetch_add(&sh->injected, 1);
}

static long storm_period_us(void)
{
	return slow_run() ? 5000 : 300;
}

/* SIGALRM every 300 us, its handler installed without SA_RESTART, so that
 * every blocking call can fail with EINTR. Timers are not inherited by
 * fork: tasks that want the storm too start their own. */
static void storm_start(struct sigaction *old)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { { 0, storm_period_us() },
				{ 0, storm_period_us() } };

	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGALRM, &sa, old), 0);
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static void stormy_answer_fn(struct channel *ch, const void *arg, size_t len,
			     void *ctx)
{
	struct itimerval it = { { 0, storm_period_us() },
				{ 0, storm_period_us() } };

	(void)len, (void)ctx;
	setitimer(ITIMER_REAL, &it, NULL);
	send_answer(ch, arg);
}

Test(faults, signal_storm_during_large_transfers, .timeout = 120)
{
	struct exchange_options o = { .limit = 2, .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct sigaction old;
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 6;

	cr_assert_not_null(t);
	hygiene_begin(&h, "signal");
	shared_new();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	storm_start(&old);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = ((size_t)(slow_run() ? 1 : 8) << 20) +
			(size_t)i * 4099;
		cr_assert_eq(exchange_start(ex, stormy_answer_fn, &j,
					    sizeof(j), NULL), i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	timer_stop(&old);
	exchange_free(ex);
	s = sum_up(t, n);
	record("signal", "injected", atomic_load(&sh->injected));
	record_sums("signal", n, s);
	cr_assert_eq(s.completed, n);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	cr_assert_gt(atomic_load(&sh->injected), 0);
	record("signal", "survived", atomic_load(&sh->injected));
	shared_free();
	free(t);
	hygiene_end(&h);
}

/* A task that waits for the parent to close its channel. */
static void idle_fn(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	struct channel_msg m;

	(void)arg, (void)len, (void)ctx;
	while (channel_recv(ch, &m, -1) == 1)
		channel_msg_free(&m);
}

Test(faults, store_timeout_holds_under_a_signal_storm, .timeout = 30)
{
	struct exchange_options o = { .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct sigaction old;
	struct hygiene h;
	struct exchange *ex;
	int64_t t0, ms[3];
	int k, r[3];

	cr_assert_not_null(t);
	hygiene_begin(&h, "signal");
	shared_new();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, idle_fn, NULL, 0, NULL), 0);
	storm_start(&old);
	for (k = 0; k < 3; k++) {
		t0 = now_ms();
		r[k] = exchange_store(ex, 250);
		ms[k] = now_ms() - t0;
	}
	timer_stop(&old);
	exchange_free(ex);
	record("signal", "injected", atomic_load(&sh->injected));
	for (k = 0; k < 3; k++) {
		cr_assert_eq(r[k], 0, "store returned %d", r[k]);
		/* Generous: two shared cores, sanitizers, valgrind. */
		cr_assert(ms[k] >= 245 && ms[k] < 3000,
			  "a 250 ms store took %lld ms", (long long)ms[k]);
	}
	cr_assert_gt(atomic_load(&sh->injected), 10);
	record("signal", "survived", atomic_load(&sh->injected));
	shared_free();
	free(t);
	hygiene_end(&h);
}

/* Tasks that exit with a status and no result, among ones that answer. */
static void exit_or_answer_fn(struct channel *ch, const void *arg,
			      size_t len, void *ctx)
{
	const struct job *j = arg;

	(void)len, (void)ctx;
	if (j->mode == 1)
		channel_exit(ch, 3);
	send_answer(ch, j);
}

static void run_mixed(struct tally *t, int n)
{
	struct exchange_options o = { .limit = 3, .store_data = tally_store,
				      .udata = t };
	struct exchange *ex = exchange_new(&o);
	struct job j = { 0 };
	int i;

	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = (size_t)i * 1000;
		j.mode = i % 4 == 3;
		cr_assert_eq(exchange_start(ex, exit_or_answer_fn, &j,
					    sizeof(j), NULL), i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
}

Test(faults, caller_ignores_sigchld, .timeout = 60)
{
	struct tally *t = calloc(1, sizeof(*t));
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	struct hygiene h;
	struct sums s;
	int i, n = 16;

	cr_assert_not_null(t);
	hygiene_begin(&h, "sigchld");
	sigemptyset(&ign.sa_mask);
	cr_assert_eq(sigaction(SIGCHLD, &ign, &old), 0);
	run_mixed(t, n);
	sigaction(SIGCHLD, &old, NULL);
	s = sum_up(t, n);
	record("sigchld", "injected", 1);
	record_sums("sigchld", n, s);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	for (i = 0; i < n; i++) {
		if (i % 4 != 3) {
			cr_assert_eq(t->data[i], 1, "task %d", i);
			continue;
		}
		/* The kernel reaped it: the status is unknown, but the task
		 * still has its one failure. */
		cr_assert_eq(t->failure[i], 1, "task %d", i);
		cr_assert_eq(t->cause[i], CHANNEL_EXITED, "task %d", i);
	}
	record("sigchld", "survived", 1);
	free(t);
	hygiene_end(&h);
}

static atomic_int sigchld_seen;

static void on_sigchld(int sig)
{
	(void)sig;
	atomic_fetch_add(&sigchld_seen, 1);
}

Test(faults, caller_has_its_own_sigchld_handler, .timeout = 60)
{
	struct tally *t = calloc(1, sizeof(*t));
	struct sigaction sa = { .sa_handler = on_sigchld }, old;
	struct hygiene h;
	struct sums s;
	int i, n = 16;

	cr_assert_not_null(t);
	hygiene_begin(&h, "sigchld");
	sigemptyset(&sa.sa_mask);	/* no SA_RESTART */
	cr_assert_eq(sigaction(SIGCHLD, &sa, &old), 0);
	run_mixed(t, n);
	sigaction(SIGCHLD, &old, NULL);
	s = sum_up(t, n);
	record("sigchld", "injected", atomic_load(&sigchld_seen));
	record_sums("sigchld", n, s);
	cr_assert_gt(atomic_load(&sigchld_seen), 0);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	for (i = 0; i < n; i++) {
		if (i % 4 != 3) {
			cr_assert_eq(t->data[i], 1, "task %d", i);
			continue;
		}
		/* The statuses are ours: the handler reaped nothing. */
		cr_assert_eq(t->failure[i], 1, "task %d", i);
		cr_assert_eq(t->cause[i], CHANNEL_EXITED, "task %d", i);
		cr_assert_eq(t->code[i], 3, "task %d", i);
	}
	record("sigchld", "survived", atomic_load(&sigchld_seen));
	free(t);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* The caller's descriptors, atexit handlers and stdio                      */
/* ------------------------------------------------------------------------ */

/* Answers only if the caller's descriptor given in ctx is still open in
 * the child: a child keeps the caller's descriptors. */
static void fd_check_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	int fd = *(const int *)ctx;

	(void)len;
	if (fcntl(fd, F_GETFD) < 0)
		channel_exit(ch, 4);
	send_answer(ch, arg);
}

Test(faults, caller_with_many_descriptors, .timeout = 60)
{
	struct exchange_options o = { .limit = 4, .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct rlimit old, rl;
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int *fds, nfds = 0, want, i, n = 12, top = -1;

	cr_assert_not_null(t);
	hygiene_begin(&h, "fds");
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	rl = old;
	if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096)
		rl.rlim_cur = 4096;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	/* Far past 1024, where select() would stop working, and leaving
	 * room for the tasks' channels. */
	want = (int)(rl.rlim_cur > 4096 ? 4096 : rl.rlim_cur) - h.fds - 64;
	fds = malloc(sizeof(int) * (size_t)want);
	cr_assert_not_null(fds);
	while (nfds < want) {
		fds[nfds] = open("/dev/null", O_RDONLY);
		if (fds[nfds] < 0)
			break;
		if (fds[nfds] > top)
			top = fds[nfds];
		nfds++;
	}
	cr_assert_gt(top, 1024, "only %d descriptors opened", nfds);
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 5000;
		cr_assert_eq(exchange_start(ex, fd_check_fn, &j, sizeof(j),
					    &top), i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	free(fds);
	setrlimit(RLIMIT_NOFILE, &old);
	s = sum_up(t, n);
	record("fds", "injected", nfds);
	record_sums("fds", n, s);
	cr_assert_eq(s.completed, n);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	record("fds", "survived", nfds);
	free(t);
	hygiene_end(&h);
}

static char atexit_path[64];

/* Appends one byte to the file at atexit_path: a child that runs it
 * leaves a mark. */
static void atexit_mark(void)
{
	int fd = open(atexit_path, O_WRONLY | O_APPEND);

	if (fd >= 0) {
		if (write(fd, "x", 1) < 0) {
			/* Nothing to do: the mark is the test. */
		}
		close(fd);
	}
}

static void print_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	(void)ctx;
	printf("child %zu.", ((const struct job *)arg)->task);
	(void)len;
	send_answer(ch, arg);
}

static void print_exit_fn(struct channel *ch, const void *arg, size_t len,
			  void *ctx)
{
	(void)len, (void)ctx;
	printf("exit %zu.", ((const struct job *)arg)->task);
	/* channel_exit, the way a task ends early. */
	channel_exit(ch, 0);
}

/* Reads the whole file at path into buf (NUL-terminated). */
static size_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;
	size_t have = 0;

	if (fd < 0)
		return 0;
	while (have + 1 < cap &&
	       (n = read(fd, buf + have, cap - 1 - have)) > 0)
		have += (size_t)n;
	close(fd);
	buf[have] = '\0';
	return have;
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

Test(faults, children_run_no_atexit_and_print_once, .timeout = 60)
{
	struct exchange_options o = { .limit = 2, .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	char out_path[64], text[4096], word[32];
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 8, saved, fd;

	cr_assert_not_null(t);
	hygiene_begin(&h, "stdio");
	snprintf(atexit_path, sizeof(atexit_path), "/tmp/faults-atexit-%d",
		 (int)getpid());
	snprintf(out_path, sizeof(out_path), "/tmp/faults-stdout-%d",
		 (int)getpid());
	fd = open(atexit_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(atexit(atexit_mark), 0);

	/* stdout to a file, fully buffered, with text waiting in its buffer
	 * when the children are forked. */
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	cr_assert_geq(saved, 0);
	cr_assert_not_null(freopen(out_path, "w", stdout));
	setvbuf(stdout, NULL, _IOFBF, BUFSIZ);
	printf("before the forks.");
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 10;
		cr_assert_eq(exchange_start(ex, i % 2 ? print_exit_fn : print_fn,
					    &j, sizeof(j), NULL), i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	printf("after.");
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	clearerr(stdout);

	slurp(out_path, text, sizeof(text));
	unlink(out_path);
	record("stdio", "injected", n);
	s = sum_up(t, n);
	cr_assert_eq(count_of(text, "before the forks."), 1, "stdout: %s",
		     text);
	cr_assert_eq(count_of(text, "after."), 1, "stdout: %s", text);
	for (i = 0; i < n; i++) {
		snprintf(word, sizeof(word), "%s %d.", i % 2 ? "exit" : "child",
			 i);
		cr_assert_eq(count_of(text, word), 1, "%s in: %s", word, text);
	}
	cr_assert_eq(slurp(atexit_path, word, sizeof(word)), 0,
		     "a child ran the caller's atexit handler");
	unlink(atexit_path);
	/* This worker's own exit will run the handler: nothing left to
	 * mark. */
	atexit_path[0] = '\0';
	for (i = 0; i < n; i += 2)
		cr_assert_eq(t->data[i], 1);
	cr_assert_eq(s.lost + s.duplicated, 0);
	record("stdio", "survived", n);
	free(t);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Bad frames                                                               */
/* ------------------------------------------------------------------------ */

/* The ways a child can break its channel: raw bytes written straight to
 * its descriptor. */
enum bad_frame {
	BAD_TRUNCATED,		/* 10 bytes of a header, then end of stream */
	BAD_BELOW_HEADER,	/* a size of 8, below the 16-byte header */
	BAD_ABOVE_MAX,		/* a size far above the exchange's maximum */
	BAD_KIND,		/* kind 99 */
	BAD_MAGIC,		/* a header that is not ours at all */
	BAD_COUNT
};

static void write_bad_frame(struct channel *ch, int how)
{
	unsigned char hdr[FRAME_HEADER_SIZE];
	struct frame_header fh = { .size = 0, .kind = FRAME_DATA,
				   .magic = FRAME_MAGIC };
	size_t n = sizeof(hdr);

	switch (how) {
	case BAD_TRUNCATED:
		frame_encode(hdr, FRAME_DATA, 100);
		n = 10;
		break;
	case BAD_BELOW_HEADER:
		fh.size = 8;
		memcpy(hdr, &fh, sizeof(fh));
		break;
	case BAD_ABOVE_MAX:
		frame_encode(hdr, FRAME_DATA, (uint64_t)1 << 40);
		break;
	case BAD_KIND:
		frame_encode(hdr, 99, 0);
		break;
	default:
		memcpy(hdr, "GET / HTTP/1.0\r\n", sizeof(hdr));
		break;
	}
	if (write(ch->wfd, hdr, n) != (ssize_t)n)
		channel_exit(ch, 5);
	if (how == BAD_TRUNCATED)
		channel_exit(ch, 0);
	/* The others wait: the parent must stop reading and kill them. */
	for (;;)
		pause();
}

Test(faults, bad_frames_fail_their_channel_only, .timeout = 60)
{
	static const int want[BAD_COUNT] = {
		[BAD_TRUNCATED] = ECONNRESET,
		[BAD_BELOW_HEADER] = EPROTO,
		[BAD_ABOVE_MAX] = EMSGSIZE,
		[BAD_KIND] = EPROTO,
		[BAD_MAGIC] = EPROTO,
	};
	struct exchange_options o = { .max_message = 1 << 20,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct channel *child;
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 3 * BAD_COUNT, protocol = 0;
	pid_t pid;

	cr_assert_not_null(t);
	hygiene_begin(&h, "frames");
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	/* Tasks 3k and 3k+2 are good, 3k+1 writes bad frame k. */
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 70000;
		if (i % 3 != 1) {
			cr_assert_eq(exchange_start(ex, answer_fn, &j,
						    sizeof(j), NULL), i);
			continue;
		}
		pid = exchange_create(ex, &child);
		cr_assert_geq(pid, 0);
		if (pid == 0)
			write_bad_frame(child, i / 3);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	s = sum_up(t, n);
	record("frames", "injected", BAD_COUNT);
	record_sums("frames", n, s);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	for (i = 0; i < n; i++) {
		if (i % 3 != 1) {
			cr_assert_eq(t->data[i], 1, "good task %d", i);
			continue;
		}
		cr_assert_eq(t->failure[i], 1, "bad frame %d", i / 3);
		cr_assert_eq(t->cause[i], CHANNEL_PROTOCOL, "bad frame %d",
			     i / 3);
		cr_assert_eq(t->code[i], want[i / 3], "bad frame %d: %s",
			     i / 3, strerror(t->code[i]));
		protocol++;
	}
	record("frames", "survived", protocol);
	free(t);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Random SIGKILLs: completed + failed = submitted in every mode            */
/* ------------------------------------------------------------------------ */

/* A small generator per test, seeded from the clock and printed, so that
 * a failing run can be repeated. */
static unsigned long rng_state;

static unsigned rnd(unsigned n)
{
	rng_state = rng_state * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)((rng_state >> 33) % n);
}

static void rng_seed(void)
{
	const char *env = getenv("FAULTS_SEED");

	rng_state = env ? strtoul(env, NULL, 0) : (unsigned long)now_ms();
	cr_log_info("FAULTS_SEED=%lu", rng_state);
}

/* Tasks take a few milliseconds, so that the parent's kills land while
 * they run; modes 1 and 2 kill themselves before or after answering. */
static void killable_fn(struct channel *ch, const void *arg, size_t len,
			void *ctx)
{
	const struct job *j = arg;

	(void)len, (void)ctx;
	pause_ms(1 + (int)(j->task % 7));
	if (j->mode == 1)
		raise(SIGKILL);
	send_answer(ch, j);
	if (j->mode == 2)
		raise(SIGKILL);
}

/* Kills one running child of ex at random; returns 1 if it sent a kill. */
static int kill_one(struct exchange *ex)
{
	struct channel *chs[64];
	size_t n = exchange_active(ex, chs, 64);
	pid_t pid;

	if (n == 0)
		return 0;
	if (n > 64)
		n = 64;
	pid = channel_pid(chs[rnd((unsigned)n)]);
	if (pid <= 0)
		return 0;
	return kill(pid, SIGKILL) == 0;
}

/* after: tasks may also be killed once they have answered (by themselves
 * or by the parent's random kills), which must not add a second outcome. */
static void run_sigkills(const char *cls, bool reuse, bool continuous,
			 bool after)
{
	struct exchange_options o = { .limit = 4, .reuse = reuse,
				      .continuous = continuous,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 60, kills = 0, r;

	cr_assert_not_null(t);
	hygiene_begin(&h, cls);
	rng_seed();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = rnd(3) ? rnd(2000) : 100000 + rnd(200000);
		j.mode = rnd(10) == 0 ? 1 + (int)rnd(after ? 2 : 1) : 0;
		kills += j.mode != 0;
		cr_assert_eq(exchange_start(ex, killable_fn, &j, sizeof(j),
					    NULL), i);
	}
	while (exchange_unfinished(ex)) {
		r = exchange_store(ex, (int)rnd(5));
		cr_assert_geq(r, 0);
		if (after && rnd(4) == 0)
			kills += kill_one(ex);
	}
	exchange_free(ex);
	s = sum_up(t, n);
	record(cls, "injected", kills);
	record_sums(cls, n, s);
	log_odd_tasks(t, n);
	cr_assert_eq(s.completed + s.failed, n, "lost %d, duplicated %d",
		     s.lost, s.duplicated);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	for (i = 0; i < n; i++)
		if (t->failure[i])
			cr_assert(t->cause[i] == CHANNEL_SIGNALED ||
				  t->cause[i] == CHANNEL_LOST,
				  "task %d: cause %d", i, t->cause[i]);
	record(cls, "survived", kills);
	free(t);
	hygiene_end(&h);
}

Test(faults, sigkills_fork_per_task, .timeout = 120)
{
	run_sigkills("sigkill", false, false, true);
}

Test(faults, sigkills_continuous, .timeout = 120)
{
	run_sigkills("sigkill", false, true, true);
}

Test(faults, sigkills_reuse_before_answering, .timeout = 120)
{
	run_sigkills("sigkill", true, false, false);
}

/* Reuse workers killed at any moment, also after a task sent its result
 * and before its DONE frame: that task's one outcome is its result. */
Test(faults, sigkills_reuse, .timeout = 120)
{
	run_sigkills("sigkill", true, false, true);
}

/* Map and Queue: the children kill themselves at random (the collectors
 * keep the loop to themselves). */
Test(faults, sigkills_map, .timeout = 120)
{
	struct hygiene h;
	struct exchange *ex;
	struct exchange_options o = { .limit = 4 };
	struct channel_msg m;
	struct job j = { 0 };
	int i, n = 40, kills = 0, completed = 0, failed = 0, lost = 0, bad = 0;
	int r;

	hygiene_begin(&h, "sigkill");
	rng_seed();
	ex = exchange_new_map(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = rnd(2000);
		j.mode = rnd(4) == 0 ? 1 + (int)rnd(2) : 0;
		kills += j.mode != 0;
		cr_assert_eq(exchange_start(ex, killable_fn, &j, sizeof(j),
					    NULL), i);
	}
	for (i = 0; i < n; i++) {
		r = exchange_map_get(ex, (size_t)i, &m, 30000);
		if (r != 1) {
			lost++;
			continue;
		}
		if (m.kind == CHANNEL_DATA) {
			size_t task;

			memcpy(&task, m.data, sizeof(task));
			bad += task != (size_t)i;
			completed++;
		} else {
			bad += m.cause != CHANNEL_SIGNALED;
			failed++;
		}
	}
	/* The iterator gives each outcome once more, in order, then ends. */
	for (i = 0; exchange_map_next(ex, &m) == 1; i++)
		;
	exchange_free(ex);
	record("sigkill", "injected", kills);
	record("sigkill", "submitted", n);
	record("sigkill", "completed", completed);
	record("sigkill", "failed", failed);
	record("sigkill", "lost", lost);
	record("sigkill", "duplicated", i > n ? i - n : 0);
	cr_assert_eq(completed + failed, n);
	cr_assert_eq(i, n);
	cr_assert_eq(bad, 0);
	cr_assert_geq(failed, 1);
	record("sigkill", "survived", kills);
	hygiene_end(&h);
}

Test(faults, sigkills_queue, .timeout = 120)
{
	struct hygiene h;
	struct exchange *ex;
	struct exchange_options o = { .limit = 4 };
	struct channel_msg m;
	struct job j = { 0 };
	int seen[MAX_TASKS] = { 0 };
	int i, n = 40, kills = 0, completed = 0, failed = 0, lost = 0, dup = 0;

	hygiene_begin(&h, "sigkill");
	rng_seed();
	ex = exchange_new_queue(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = rnd(2000);
		j.mode = rnd(4) == 0 ? 1 + (int)rnd(2) : 0;
		kills += j.mode != 0;
		cr_assert_eq(exchange_start(ex, killable_fn, &j, sizeof(j),
					    NULL), i);
	}
	while (exchange_queue_next(ex, &m, 30000) == 1) {
		if (m.task < (size_t)n)
			seen[m.task]++;
		if (m.kind == CHANNEL_DATA)
			completed++;
		else
			failed++;
		channel_msg_free(&m);
	}
	exchange_free(ex);
	for (i = 0; i < n; i++) {
		lost += seen[i] == 0;
		dup += seen[i] > 1;
	}
	record("sigkill", "injected", kills);
	record("sigkill", "submitted", n);
	record("sigkill", "completed", completed);
	record("sigkill", "failed", failed);
	record("sigkill", "lost", lost);
	record("sigkill", "duplicated", dup);
	cr_assert_eq(completed + failed, n);
	cr_assert_eq(lost + dup, 0);
	record("sigkill", "survived", kills);
	hygiene_end(&h);
}

/* pmap: elements whose value is 4 modulo 9 kill their worker. */
static int square_or_die(const void *in, void *out, void *ctx)
{
	int v = *(const int *)in;

	(void)ctx;
	if (v % 9 == 4)
		raise(SIGKILL);
	*(int *)out = v * v;
	return 0;
}

Test(faults, sigkills_pmap, .timeout = 120)
{
	enum { N = 200 };
	static int in[N], out[N];
	static struct exchange_outcome oc[N];
	struct exchange_pmap_options po = { .workers = 3, .batch = 1,
					    .outcomes = oc };
	struct hygiene h;
	int i, ok = 0, failed = 0, kills = 0, bad = 0;
	ssize_t got;

	hygiene_begin(&h, "sigkill");
	for (i = 0; i < N; i++) {
		in[i] = i;
		out[i] = -1;
		kills += i % 9 == 4;
	}
	got = exchange_pmap(square_or_die, in, N, sizeof(int), out,
			    sizeof(int), &po);
	for (i = 0; i < N; i++) {
		if (oc[i].cause == CHANNEL_OK) {
			ok++;
			bad += out[i] != i * i;
		} else {
			failed++;
			bad += i % 9 != 4;
		}
	}
	record("sigkill", "injected", kills);
	record("sigkill", "submitted", N);
	record("sigkill", "completed", ok);
	record("sigkill", "failed", failed);
	record("sigkill", "lost", N - ok - failed);
	record("sigkill", "duplicated", 0);
	cr_assert_eq(got, ok);
	cr_assert_eq(ok + failed, N);
	cr_assert_eq(failed, kills);
	cr_assert_eq(bad, 0);
	record("sigkill", "survived", kills);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Time limits                                                              */
/* ------------------------------------------------------------------------ */

/* mode 0 answers, 1 sleeps until killed, 2 also ignores SIGTERM, 3 forks a
 * grandchild that holds the channel (and the life pipe) and sleeps. The
 * sleeps are bounded, so that a failing test leaves nothing for ever. */
static void slow_fn(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	const struct job *j = arg;

	(void)len, (void)ctx;
	if (j->mode == 0)
		send_answer(ch, j);
	if (j->mode == 2)
		signal(SIGTERM, SIG_IGN);
	if (j->mode == 3 && fork() == 0) {
		pause_ms(20000);
		_exit(0);
	}
	if (j->mode != 0)
		pause_ms(20000);
}

static void run_time_limits(const int *modes, int n, bool watch)
{
	int lifefds[2], *life = watch ? lifefds : NULL;
	struct exchange_options o = { .time_limit_ms = 300, .grace_ms = 300,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, timed_out = 0, expected = 0;
	int64_t t0, ms;

	cr_assert_not_null(t);
	hygiene_begin(&h, "timelimit");
	/* With watch, every task and what it starts holds the write end of
	 * a life pipe: its end of stream says they have all gone. */
	if (life)
		cr_assert_eq(pipe(life), 0);
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	t0 = now_ms();
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 100;
		j.mode = modes[i];
		expected += modes[i] != 0;
		cr_assert_eq(exchange_start(ex, slow_fn, &j, sizeof(j), NULL),
			     i);
	}
	if (life) {
		/* Only the tasks (and what they start) hold it now. */
		close(life[1]);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	ms = now_ms() - t0;
	exchange_free(ex);
	s = sum_up(t, n);
	record("timelimit", "injected", expected);
	record_sums("timelimit", n, s);
	for (i = 0; i < n; i++) {
		if (modes[i] == 0) {
			cr_assert_eq(t->data[i], 1, "task %d", i);
			continue;
		}
		cr_assert_eq(t->failure[i], 1, "task %d", i);
		cr_assert_eq(t->cause[i], CHANNEL_TIMED_OUT, "task %d: cause %d",
			     i, t->cause[i]);
		cr_assert_eq(t->code[i], 300, "task %d", i);
		timed_out++;
	}
	/* 300 ms, 300 ms of grace, and a lot of slack for slow machines. */
	cr_assert_lt(ms, 8000, "the time limits took %lld ms", (long long)ms);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	if (life) {
		/* Everything the task started has ended too: the last holder
		 * of the life pipe is gone. */
		struct pollfd p = { .fd = life[0], .events = POLLIN };
		char c;

		cr_assert_eq(poll(&p, 1, 5000), 1, "a grandchild lives on");
		cr_assert_eq(read(life[0], &c, 1), 0);
		close(life[0]);
	}
	record("timelimit", "survived", timed_out);
	free(t);
	hygiene_end(&h);
}

Test(faults, time_limit_terms_then_kills, .timeout = 60)
{
	static const int modes[] = { 0, 1, 2, 0, 1, 2, 0 };

	run_time_limits(modes, 7, false);
}

/* Each child leads a process group of its own, so the time limit stops
 * what the task started too (a grandchild holding the channel). */
Test(faults, time_limit_stops_what_the_task_started, .timeout = 60)
{
	static const int modes[] = { 0, 3, 0 };

	run_time_limits(modes, 3, true);
}

static volatile sig_atomic_t term_seen;

static void on_term(int sig)
{
	(void)sig;
	term_seen = 1;
}

/* On SIGTERM: closes its channel at once, then cleans up for 200 ms and
 * marks that it finished. */
static void tidy_fn(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	struct sigaction sa = { .sa_handler = on_term };

	(void)arg, (void)len, (void)ctx;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	while (!term_seen)
		pause_ms(5);
	channel_close(ch);
	pause_ms(200);
	atomic_store(&sh->flag, 1);
	_exit(0);
}

/* A task that closes its channel on SIGTERM and then cleans up keeps its
 * grace period: the SIGKILL does not follow the end of its stream. */
Test(faults, time_limit_grace_outlasts_the_channel, .timeout = 30)
{
	struct exchange_options o = { .time_limit_ms = 100, .grace_ms = 5000,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;

	cr_assert_not_null(t);
	hygiene_begin(&h, "timelimit");
	shared_new();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	cr_assert_eq(exchange_start(ex, tidy_fn, NULL, 0, NULL), 0);
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
	cr_assert_eq(atomic_load(&sh->flag), 1, "killed while cleaning up");
	cr_assert_eq(t->failure[0], 1);
	cr_assert_eq(t->cause[0], CHANNEL_TIMED_OUT);
	record("timelimit", "injected", 1);
	record("timelimit", "survived", 1);
	shared_free();
	free(t);
	hygiene_end(&h);
}

/* mode 1 answers, then leaves behind a grandchild that holds the channel
 * (it inherits the task's descriptors) and sleeps; mode 0 only answers. */
static void leaving_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	const struct job *j = arg;
	pid_t pid;

	(void)len, (void)ctx;
	send_answer(ch, j);
	if (j->mode == 1) {
		pid = fork();
		if (pid == 0) {
			pause_ms(20000);
			_exit(0);
		}
		if (pid > 0) {
			int k = atomic_fetch_add(&sh->npids, 1);

			if (k < MAX_PIDS)
				atomic_store(&sh->pids[k], (int)pid);
		}
	}
}

/* A task's process decides when it has finished, not the end of stream
 * on its channel: a grandchild holding the channel for 20 s does not hold
 * the exchange (in fork-per-task, continuous and reuse modes). */
static void run_leavers(bool reuse, bool continuous)
{
	static const int modes[] = { 0, 1, 0, 1, 0, 0 };
	struct exchange_options o = { .limit = 2, .reuse = reuse,
				      .continuous = continuous,
				      .store_data = tally_store };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	struct sums s;
	int i, n = 6, k;
	int64_t t0, ms;

	cr_assert_not_null(t);
	hygiene_begin(&h, "leavers");
	shared_new();
	o.udata = t;
	ex = exchange_new(&o);
	cr_assert_not_null(ex);
	t0 = now_ms();
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 100;
		j.mode = modes[i];
		cr_assert_eq(exchange_start(ex, leaving_fn, &j, sizeof(j),
					    NULL), i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	ms = now_ms() - t0;
	exchange_free(ex);
	/* The grandchildren are not ours to reap: they are stopped here, and
	 * whoever adopted them reaps them. */
	for (k = 0; k < atomic_load(&sh->npids) && k < MAX_PIDS; k++)
		kill(atomic_load(&sh->pids[k]), SIGKILL);
	s = sum_up(t, n);
	record_sums("leavers", n, s);
	cr_assert_eq(atomic_load(&sh->npids), 2);
	for (i = 0; i < n; i++)
		cr_assert_eq(t->data[i], 1, "task %d", i);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	cr_assert_eq(s.failed, 0);
	/* The grandchildren sleep 20 s; a few seconds allow for a loaded
	 * machine. */
	cr_assert_lt(ms, 10000, "the exchange waited %lld ms for them",
		     (long long)ms);
	record("leavers", "injected", 2);
	record("leavers", "survived", 2);
	shared_free();
	free(t);
	hygiene_end(&h);
}

Test(faults, exit_ends_a_task_whose_channel_is_held, .timeout = 60)
{
	run_leavers(false, false);
}

Test(faults, exit_ends_a_task_whose_channel_is_held_continuous,
     .timeout = 60)
{
	run_leavers(false, true);
}

Test(faults, exit_ends_a_task_whose_channel_is_held_reuse, .timeout = 60)
{
	run_leavers(true, false);
}

/* ------------------------------------------------------------------------ */
/* The parent's death                                                       */
/* ------------------------------------------------------------------------ */

static void register_self(void)
{
	int k = atomic_fetch_add(&sh->npids, 1);

	if (k < MAX_PIDS)
		atomic_store(&sh->pids[k], (int)getpid());
}

/* A task that waits on its channel; it ends at end of stream. */
static void waiting_fn(struct channel *ch, const void *arg, size_t len,
		       void *ctx)
{
	struct channel_msg m;
	int r;

	(void)arg, (void)len, (void)ctx;
	register_self();
	/* Bounded, so that a failing test leaves no process for ever. */
	while ((r = channel_recv(ch, &m, 30000)) == 1)
		channel_msg_free(&m);
}

/* The middle process: an exchange with tasks waiting on their channels,
 * a reuse worker waiting for its next task, and a plain channel_start
 * child; says "ready" once all have registered, then waits to be killed.
 * No cr_ call here. */
static _Noreturn void middle(int ready_fd, int life_w, int n)
{
	struct exchange_options o = { 0 };
	struct exchange_options ro = { .reuse = true, .limit = 1 };
	struct exchange *ex = exchange_new(&o), *rx = exchange_new(&ro);
	int i;

	if (!ex || !rx)
		_exit(2);
	for (i = 0; i < n; i++)
		if (exchange_start(ex, waiting_fn, NULL, 0, NULL) < 0)
			_exit(3);
	if (exchange_start(rx, waiting_fn, NULL, 0, NULL) < 0)
		_exit(3);
	if (!channel_start(waiting_fn, NULL, 0, NULL))
		_exit(3);
	close(life_w);
	while (atomic_load(&sh->npids) < n + 2)
		pause_ms(1);
	if (write(ready_fd, "r", 1) != 1)
		_exit(4);
	for (;;)
		pause();
}

Test(faults, children_end_when_the_parent_is_killed, .timeout = 60)
{
	struct hygiene h;
	int life[2], ready[2], st, i, n = 4, orphans = 0, k;
	struct pollfd p;
	pid_t mid;
	char c;

	hygiene_begin(&h, "orphans");
	shared_new();
	cr_assert_eq(pipe(life), 0);
	cr_assert_eq(pipe(ready), 0);
	mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0) {
		close(life[0]);
		close(ready[0]);
		middle(ready[1], life[1], n);
	}
	close(life[1]);
	close(ready[1]);
	p.fd = ready[0];
	p.events = POLLIN;
	cr_assert_eq(poll(&p, 1, 20000), 1);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	cr_assert_eq(kill(mid, SIGKILL), 0);
	cr_assert_eq(waitpid(mid, &st, 0), mid);
	record("orphans", "injected", atomic_load(&sh->npids));

	/* The grandchildren hold the life pipe's write end: end of file
	 * comes when the last of them has ended. */
	p.fd = life[0];
	p.events = POLLIN;
	k = poll(&p, 1, 10000);
	if (k != 1 || read(life[0], &c, 1) != 0) {
		for (i = 0; i < atomic_load(&sh->npids) && i < MAX_PIDS; i++)
			if (kill(atomic_load(&sh->pids[i]), 0) == 0) {
				orphans++;
				kill(atomic_load(&sh->pids[i]), SIGKILL);
			}
	}
	close(life[0]);
	record("orphans", "orphans", orphans);
	cr_assert_eq(orphans, 0, "%d children outlived their parent",
		     orphans);
	cr_assert_eq(k, 1);
	record("orphans", "survived", atomic_load(&sh->npids));
	shared_free();
	hygiene_end(&h);
}

#ifdef __linux__
/* Children that never touch their channel see no end of stream when their
 * parent dies: only the parent-death signal the library asks for ends
 * them. Each sends its pid down a pipe it inherited (children keep the
 * caller's descriptors), then sleeps. */
#define DEAF_CHILDREN 4

static void report_and_sleep(int fd)
{
	struct timespec ts = { 30, 0 };
	pid_t self = getpid();

	if (write(fd, &self, sizeof(self)) != (ssize_t)sizeof(self))
		_exit(5);
	nanosleep(&ts, NULL);
}

static void deaf_fn(struct channel *ch, const void *arg, size_t len,
		    void *ctx)
{
	(void)ch, (void)len, (void)ctx;
	report_and_sleep(*(const int *)arg);
}

static int deaf_map(const void *in, void *out, void *ctx)
{
	(void)out, (void)ctx;
	report_and_sleep(*(const int *)in);
	return 0;
}

/* The middle process: a channel_start child, a fork-per-task child, a
 * reuse worker and a pmap worker, all deaf; pmap then waits for ever.
 * No cr_ call here. */
static void deaf_middle(int fd)
{
	struct exchange_options ro = { .reuse = true };
	struct exchange_pmap_options po = { .workers = 1 };
	struct exchange *ex = exchange_new(NULL), *rx = exchange_new(&ro);

	if (!ex || !rx)
		_exit(2);
	if (!channel_start(deaf_fn, &fd, sizeof(fd), NULL) ||
	    exchange_start(ex, deaf_fn, &fd, sizeof(fd), NULL) < 0 ||
	    exchange_start(rx, deaf_fn, &fd, sizeof(fd), NULL) < 0)
		_exit(3);
	exchange_pmap(deaf_map, &fd, 1, sizeof(fd), NULL, 0, &po);
	_exit(4);
}

/* A fork that lets its parent die first: the child reports its pid, waits
 * until it has been adopted, and only then returns into channel_fork, as
 * if the parent had been killed between fork and the parent-death request.
 * Set in the middle process only. */
static int adopt_fd = -1;

static pid_t fork_then_outlive(void)
{
	pid_t parent = getpid(), pid = fork(), self;

	if (pid != 0)
		return pid;
	self = getpid();
	if (write(adopt_fd, &self, sizeof(self)) != (ssize_t)sizeof(self))
		_exit(5);
	while (getppid() == parent)
		pause_ms(1);
	return 0;
}

/* The middle process for the race: one channel_start child, forked
 * through fork_then_outlive; then it waits to be killed. */
static _Noreturn void late_middle(int fd)
{
	adopt_fd = fd;
	exchange_hooks.fork = fork_then_outlive;
	if (!channel_start(deaf_fn, &fd, sizeof(fd), NULL))
		_exit(3);
	exchange_hooks.fork = NULL;
	for (;;)
		pause();
}

/* Forks a process that runs start_children(fd), which starts n children
 * that each write their pid to fd; SIGKILLs that process once all have,
 * and checks that every child ends by SIGKILL within a few seconds. The
 * test adopts the orphans (a child subreaper), so it can reap them and see
 * how they ended. */
static void check_orphans_end(void (*start_children)(int fd), int n)
{
	pid_t mid, pids[DEAF_CHILDREN];
	int rep[2], st[DEAF_CHILDREN], done[DEAF_CHILDREN] = { 0 };
	int i, left = n, orphans = 0, mst = 0;
	size_t got = 0, want = (size_t)n * sizeof(pid_t);
	struct hygiene h;
	struct pollfd p;
	int64_t deadline;
	ssize_t r;

	cr_assert_leq(n, DEAF_CHILDREN);
	hygiene_begin(&h, "orphans");
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL), 0);
	cr_assert_eq(pipe(rep), 0);
	mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0) {
		close(rep[0]);
		start_children(rep[1]);
		_exit(6);
	}
	close(rep[1]);
	p.fd = rep[0];
	p.events = POLLIN;
	while (got < want) {
		if (poll(&p, 1, 20000) != 1)
			break;
		r = read(rep[0], (char *)pids + got, want - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	cr_assert_eq(kill(mid, SIGKILL), 0);
	cr_assert_eq(waitpid(mid, &mst, 0), mid);
	cr_assert_eq(got, want, "the middle process reported %zu bytes "
		     "(status %#x)", got, mst);
	record("orphans", "injected", n);

	/* Adopted by the test, each is reaped here once it has ended. */
	deadline = now_ms() + 5000;
	while (left > 0 && now_ms() < deadline) {
		for (i = 0; i < n; i++)
			if (!done[i] &&
			    waitpid(pids[i], &st[i], WNOHANG) == pids[i]) {
				done[i] = 1;
				left--;
			}
		if (left > 0)
			pause_ms(10);
	}
	for (i = 0; i < n; i++) {
		if (done[i])
			continue;
		orphans++;
		kill(pids[i], SIGKILL);
		waitpid(pids[i], &st[i], 0);
	}
	close(rep[0]);
	prctl(PR_SET_CHILD_SUBREAPER, 0UL, 0UL, 0UL, 0UL);
	record("orphans", "orphans", orphans);
	cr_assert_eq(orphans, 0, "%d children outlived their parent",
		     orphans);
	for (i = 0; i < n; i++)
		cr_assert(WIFSIGNALED(st[i]) && WTERMSIG(st[i]) == SIGKILL,
			  "child %d: status %#x", i, st[i]);
	record("orphans", "survived", n);
	hygiene_end(&h);
}

Test(faults, deaf_children_end_when_the_parent_is_killed, .timeout = 60)
{
	check_orphans_end(deaf_middle, DEAF_CHILDREN);
}

Test(faults, a_child_whose_parent_died_during_fork_ends, .timeout = 60)
{
	check_orphans_end(late_middle, 1);
}
#endif

/* ------------------------------------------------------------------------ */
/* Large messages both ways at once                                         */
/* ------------------------------------------------------------------------ */

/* A send blocked on a full pipe must read what the other side sends
 * meanwhile, or two large sends in opposite directions wait for each other
 * until their timeouts. */
#define BIDIR_LEN ((size_t)(slow_run() ? 4 : 24) << 20)

/* Sends a large message while the parent sends one to it, then receives
 * the parent's and answers with its length. */
static void bidir_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	unsigned char *p = malloc(BIDIR_LEN);
	struct channel_msg m;
	size_t ok = 0;

	(void)arg, (void)len, (void)ctx;
	if (!p)
		channel_exit(ch, 6);
	fill(p, BIDIR_LEN, 7);
	if (channel_send(ch, p, BIDIR_LEN, 20000) < 0)
		channel_exit(ch, 7);
	if (channel_recv(ch, &m, 20000) == 1) {
		ok = m.len == BIDIR_LEN && check_fill(m.data, m.len, 3);
		channel_msg_free(&m);
	}
	channel_send(ch, &ok, sizeof(ok), 20000);
	free(p);
}

Test(faults, large_messages_both_ways_at_once, .timeout = 120)
{
	unsigned char *p = malloc(BIDIR_LEN);
	struct channel_msg m;
	struct hygiene h;
	struct channel *ch;
	size_t ok = 0;
	int r_send, r_recv, good = 0, err;

	cr_assert_not_null(p);
	hygiene_begin(&h, "bidir");
	fill(p, BIDIR_LEN, 3);
	ch = channel_start(bidir_fn, NULL, 0, NULL);
	cr_assert_not_null(ch);
	/* Both sides send first: neither reads until its send is done. */
	r_send = channel_send(ch, p, BIDIR_LEN, 20000);
	err = errno;
	r_recv = channel_recv(ch, &m, 20000);
	if (r_recv == 1) {
		good = m.len == BIDIR_LEN && check_fill(m.data, m.len, 7);
		channel_msg_free(&m);
		if (channel_recv(ch, &m, 20000) == 1) {
			if (m.len == sizeof(ok))
				memcpy(&ok, m.data, sizeof(ok));
			channel_msg_free(&m);
		}
	}
	channel_close(ch);
	free(p);
	record("bidir", "injected", 2);
	cr_assert_eq(r_send, 0, "send: %s", strerror(err));
	cr_assert_eq(r_recv, 1);
	cr_assert(good);
	cr_assert_eq(ok, 1);
	record("bidir", "survived", 2);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Failure policies                                                         */
/* ------------------------------------------------------------------------ */

/* mode 1: exits 3 on its first two attempts, then answers; mode 2: always
 * exits 3. Attempts are counted in the shared page, per task. */
static void flaky_fn(struct channel *ch, const void *arg, size_t len,
		     void *ctx)
{
	const struct job *j = arg;
	int attempt = atomic_fetch_add(&sh->pids[j->task], 1);

	(void)len, (void)ctx;
	if (j->mode == 2 || (j->mode == 1 && attempt < 2))
		channel_exit(ch, 3);
	send_answer(ch, j);
}

static void run_policy(int policy, bool reuse, const int *modes, int n,
		       struct tally *t)
{
	struct exchange_options o = { .limit = 1, .policy = policy,
				      .retries = 2, .reuse = reuse,
				      .store_data = tally_store, .udata = t };
	struct exchange *ex = exchange_new(&o);
	struct job j = { 0 };
	int i;

	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 100;
		j.mode = modes[i];
		cr_assert_eq(exchange_start(ex, flaky_fn, &j, sizeof(j), NULL),
			     i);
	}
	cr_assert_eq(exchange_finish(ex), 0);
	exchange_free(ex);
}

static void check_retry(bool reuse)
{
	static const int modes[] = { 0, 1, 0, 2, 0 };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct sums s;
	int n = 5;

	cr_assert_not_null(t);
	hygiene_begin(&h, "policy");
	shared_new();
	run_policy(EXCHANGE_RETRY, reuse, modes, n, t);
	s = sum_up(t, n);
	record("policy", "injected", 2 + 3);
	record_sums("policy", n, s);
	log_odd_tasks(t, n);
	/* The flaky task succeeds on its third run, with one outcome; the
	 * hopeless one fails after 1 + 2 runs, once. */
	cr_assert_eq(t->data[1], 1);
	cr_assert_eq(t->failure[1], 0);
	cr_assert_eq(atomic_load(&sh->pids[1]), 3);
	cr_assert_eq(t->failure[3], 1);
	cr_assert_eq(t->cause[3], reuse ? CHANNEL_LOST : CHANNEL_EXITED);
	cr_assert_eq(atomic_load(&sh->pids[3]), 3);
	cr_assert_eq(s.completed, n - 1);
	cr_assert_eq(s.lost + s.duplicated + t->bad + t->stray, 0);
	record("policy", "survived", 2 + 3);
	shared_free();
	free(t);
	hygiene_end(&h);
}

Test(faults, retry_policy_runs_a_failed_task_again, .timeout = 60)
{
	check_retry(false);
}

Test(faults, retry_policy_runs_a_failed_task_again_reuse, .timeout = 60)
{
	check_retry(true);
}

Test(faults, stop_policy_starts_nothing_after_a_failure, .timeout = 60)
{
	static const int modes[] = { 0, 2, 0, 0, 0, 0 };
	struct tally *t = calloc(1, sizeof(*t));
	struct hygiene h;
	struct sums s;
	int i, n = 6;

	cr_assert_not_null(t);
	hygiene_begin(&h, "policy");
	shared_new();
	run_policy(EXCHANGE_STOP, false, modes, n, t);
	s = sum_up(t, n);
	record("policy", "injected", 1);
	record_sums("policy", n, s);
	/* limit 1: the failure is known before task 2 starts, and every
	 * later task is reported as not started, cancelled. */
	cr_assert_eq(t->data[0], 1);
	cr_assert_eq(t->failure[1], 1);
	cr_assert_eq(t->cause[1], CHANNEL_EXITED);
	cr_assert_eq(t->code[1], 3);
	for (i = 2; i < n; i++) {
		cr_assert_eq(t->failure[i], 1, "task %d", i);
		cr_assert_eq(t->cause[i], CHANNEL_NOT_STARTED, "task %d", i);
		cr_assert_eq(atomic_load(&sh->pids[i]), 0, "task %d ran", i);
	}
	cr_assert_eq(s.completed + s.failed, n);
	cr_assert_eq(s.lost + s.duplicated, 0);
	record("policy", "survived", 1);
	shared_free();
	free(t);
	hygiene_end(&h);
}

/* ------------------------------------------------------------------------ */
/* Start failures in Map and pmap                                           */
/* ------------------------------------------------------------------------ */

Test(faults, fork_failure_in_a_map, .timeout = 60)
{
	struct exchange_options o = { .limit = 3 };
	struct channel_msg m;
	struct hygiene h;
	struct exchange *ex;
	struct job j = { 0 };
	int i, n = 20, completed = 0, not_started = 0, other = 0;

	hygiene_begin(&h, "fork");
	shared_new();
	calls = 0;
	exchange_hooks.fork = failing_fork;
	ex = exchange_new_map(&o);
	cr_assert_not_null(ex);
	for (i = 0; i < n; i++) {
		j.task = (size_t)i;
		j.len = 50;
		cr_assert_eq(exchange_start(ex, answer_fn, &j, sizeof(j), NULL),
			     i);
	}
	for (i = 0; i < n; i++) {
		if (exchange_map_get(ex, (size_t)i, &m, 30000) != 1)
			continue;
		if (m.kind == CHANNEL_DATA)
			completed++;
		else if (m.cause == CHANNEL_NOT_STARTED && m.code == EAGAIN)
			not_started++;
		else
			other++;
	}
	exchange_free(ex);
	memset(&exchange_hooks, 0, sizeof(exchange_hooks));
	record("fork", "injected", atomic_load(&sh->injected));
	record("fork", "submitted", n);
	record("fork", "completed", completed);
	record("fork", "failed", not_started + other);
	record("fork", "lost", n - completed - not_started - other);
	cr_assert_eq(completed + not_started, n);
	cr_assert_eq(not_started, atomic_load(&sh->injected));
	cr_assert_gt(not_started, 0);
	record("fork", "survived", atomic_load(&sh->injected));
	shared_free();
	hygiene_end(&h);
}

static int square(const void *in, void *out, void *ctx)
{
	int v = *(const int *)in;

	(void)ctx;
	*(int *)out = v * v;
	return 0;
}

Test(faults, fork_failure_in_pmap_leaves_fewer_workers, .timeout = 60)
{
	enum { N = 500 };
	static int in[N], out[N];
	struct exchange_pmap_options po = { .workers = 4 };
	struct hygiene h;
	ssize_t got;
	int i, bad = 0;

	hygiene_begin(&h, "fork");
	shared_new();
	for (i = 0; i < N; i++)
		in[i] = i;
	calls = 0;
	exchange_hooks.fork = failing_fork;
	got = exchange_pmap(square, in, N, sizeof(int), out, sizeof(int),
			    &po);
	exchange_hooks.fork = NULL;
	for (i = 0; i < N; i++)
		bad += out[i] != i * i;
	record("fork", "injected", atomic_load(&sh->injected));
	record("fork", "submitted", N);
	record("fork", "completed", got > 0 ? (long)got : 0);
	record("fork", "failed", 0);
	record("fork", "lost", got >= 0 ? N - got : N);
	cr_assert_gt(atomic_load(&sh->injected), 0);
	cr_assert_eq(got, N);
	cr_assert_eq(bad, 0);
	record("fork", "survived", atomic_load(&sh->injected));
	shared_free();
	hygiene_end(&h);
}
