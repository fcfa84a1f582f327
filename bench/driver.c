/*
 * driver.c - make bench: runs every pair side by side and prints one line
 * per figure.
 *
 *   bench [-r REPS] [-g GROUP]   run the groups (all, or the one named)
 *   bench run NAME ARGS...       run one trial and print its result line
 *
 * A group is a set of entries measured in the same run: a reference and the
 * sides compared with it. Each repetition runs every entry of the group
 * once, in an order rotated by one from the repetition before, so that a
 * burst of load from elsewhere on the machine falls on every side alike.
 * Each entry's figure is the median of its repetitions; the spread is
 * (max - min) / median. The ratio is the entry's median divided by the
 * median of the entry named as its reference.
 *
 * Every trial is a shell command run in a process group of its own, whose
 * standard output carries one line, "ok VALUE" or "na REASON"; a trial that
 * prints nothing else, fails or outlives its time limit is reported as not
 * available and its process group is killed, so a side that does not work
 * yet costs one line, not the run.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The most repetitions of one entry. */
#define MAX_REPS 15
/* The most entries in one group. */
#define MAX_ENTRIES 6

/* How a figure is judged. */
enum goal_kind {
	GOAL_NONE = 0,
	GOAL_RATIO_AT_LEAST,	/* value / reference >= goal */
	GOAL_RATIO_AT_MOST,	/* value / reference <= goal */
	GOAL_VALUE_AT_MOST,	/* value <= goal */
};

struct entry {
	const char *name;	/* the figure's name, first on its line */
	const char *unit;	/* of the value */
	const char *cmd;	/* shell command running one trial */
	const char *ref;	/* entry the ratio is taken to, NULL: none */
	int goal_kind;		/* enum goal_kind */
	double goal;		/* the goal's threshold */
	const char *also;	/* a second entry the ratio is shown to */
	int max_reps;		/* at most this many repetitions; 0: the
				   group's (a slow reference needs one) */
};

struct group {
	const char *name;	/* for -g */
	const char *what;	/* one line saying what is measured */
	int reps;		/* repetitions; 0: the default */
	int timeout_s;		/* per trial */
	int budget_s;		/* once two repetitions are done, no new one
				   starts after this many seconds */
	struct entry e[MAX_ENTRIES];
};

/* What one entry measured. */
struct result {
	double v[MAX_REPS];	/* values of the successful repetitions */
	int n;			/* how many */
	char na[256];		/* reason it is not available, or "" */
	double median;		/* of v */
	double spread;		/* (max - min) / median */
};

#define SELF "\"$BENCH\" run "

static const struct group groups[] = {
	{ "fork",
	  "5,000 tasks returning i*i, one fork each, limit 2 and 64", 5, 120, 90, {
		{ "fork_ref_l2", "tasks/s", SELF "ref_fork 5000 2",
		  NULL, 0, 0, NULL, 0 },
		{ "fork_lib_l2", "tasks/s", SELF "lib_fork 5000 2",
		  "fork_ref_l2", GOAL_RATIO_AT_LEAST, 0.9, NULL, 0 },
		{ "fork_lib_nf_l2", "tasks/s", SELF "lib_fork 5000 2 noflush",
		  "fork_ref_l2", 0, 0, NULL, 0 },
		{ "fork_ref_l64", "tasks/s", SELF "ref_fork 5000 64",
		  NULL, 0, 0, NULL, 0 },
		{ "fork_lib_l64", "tasks/s", SELF "lib_fork 5000 64",
		  "fork_ref_l64", GOAL_RATIO_AT_LEAST, 0.9, NULL, 0 },
	} },
	{ "heap",
	  "tasks from a parent with 1 GiB of heap touched, limit 2", 3, 180, 60, {
		{ "heap_fork_small", "tasks/s", SELF "lib_heap 500 2 0 fork",
		  NULL, 0, 0, NULL, 0 },
		{ "heap_fork_1g", "tasks/s", SELF "lib_heap 500 2 1024 fork",
		  "heap_fork_small", 0, 0, NULL, 0 },
		{ "heap_reuse_1g", "tasks/s", SELF "lib_heap 20000 2 1024 reuse",
		  "heap_fork_1g", 0, 0, NULL, 0 },
		{ "heap_early_1g", "tasks/s", SELF "lib_heap 20000 2 1024 early",
		  "heap_fork_1g", 0, 0, "heap_reuse_1g", 0 },
	} },
	{ "reuse",
	  "200,000 tasks round trip to 2 workers forked once", 3, 120, 30, {
		{ "reuse_ref", "tasks/s", SELF "ref_reuse 200000 2",
		  NULL, 0, 0, NULL, 0 },
		{ "reuse_lib", "tasks/s", SELF "lib_reuse 200000 2",
		  "reuse_ref", GOAL_RATIO_AT_LEAST, 0.8, NULL, 0 },
	} },
	{ "queue",
	  "2 children sending 100,000 8-byte messages in all", 5, 60, 15, {
		{ "stream_ref", "msgs/s", SELF "ref_stream 100000 2",
		  NULL, 0, 0, NULL, 0 },
		{ "queue_lib", "msgs/s", SELF "lib_queue 100000 2",
		  "stream_ref", GOAL_RATIO_AT_LEAST, 0.8, NULL, 0 },
	} },
	{ "big",
	  "1 GiB as 1 MiB messages, child to parent", 3, 120, 25, {
		{ "big_ref", "MiB/s", SELF "ref_big 1048576 1024",
		  NULL, 0, 0, NULL, 0 },
		{ "big_lib", "MiB/s", SELF "lib_big 1048576 1024",
		  "big_ref", GOAL_RATIO_AT_LEAST, 1.5, NULL, 0 },
	} },
	{ "pmap",
	  "1,000,000 elements, out = in * in, 2 workers", 3, 120, 20, {
		{ "map_serial", "elems/s", SELF "ref_serial 1000000",
		  NULL, 0, 0, NULL, 0 },
		{ "map_pool_py", "elems/s",
		  "command -v python3 >/dev/null || "
		  "{ echo 'na python3 not found'; exit 0; }; "
		  "exec python3 \"$BENCH_SRC/pool.py\" 1000000",
		  "map_serial", 0, 0, NULL, 0 },
		{ "map_pmap", "elems/s", SELF "lib_pmap 1000000",
		  "map_pool_py", GOAL_RATIO_AT_LEAST, 1.0, "map_serial", 0 },
	} },
	{ "mandel",
	  "Mandelbrot rows, CPU-bound, 2 workers", 3, 120, 20, {
		{ "mandel_serial", "s", SELF "ref_mandel",
		  NULL, 0, 0, NULL, 0 },
		{ "mandel_omp", "s",
		  "[ -x \"$BENCH_DIR/omp\" ] || "
		  "{ echo 'na not built: the compiler lacks -fopenmp'; "
		  "exit 0; }; exec \"$BENCH_DIR/omp\"",
		  "mandel_serial", 0, 0, NULL, 0 },
		{ "mandel_pmap", "s", SELF "lib_mandel",
		  "mandel_omp", GOAL_RATIO_AT_MOST, 1.1, "mandel_serial", 0 },
	} },
	{ "runner",
	  "2,000 runs of true, 2 at a time", 3, 120, 45, {
		{ "runner_xargs", "runs/s",
		  SELF "shell 2000 'seq 2000 | xargs -P2 -n1 true'",
		  NULL, 0, 0, NULL, 0 },
		{ "runner_parallel", "runs/s",
		  "command -v parallel >/dev/null || "
		  "{ echo 'na GNU parallel not installed'; exit 0; }; "
		  SELF "shell 2000 "
		  "'seq 2000 | parallel --will-cite -j2 true'",
		  "runner_xargs", 0, 0, NULL, 1 },
		{ "runner_prun", "runs/s",
		  "[ -x \"$PRUN\" ] || "
		  "{ echo \"na $PRUN not built\"; exit 0; }; "
		  SELF "shell 2000 'seq 2000 | \"$PRUN\" -j 2 -k true'",
		  "runner_xargs", GOAL_RATIO_AT_LEAST, 1.0,
		  "runner_parallel", 0 },
	} },
	{ "sleepers",
	  "one child sending, each message answered, among N-1 sleeping", 3, 120, 25, {
		{ "sleepers_ref_10", "us/msg", SELF "ref_sleepers 10 5000",
		  NULL, 0, 0, NULL, 0 },
		{ "sleepers_10", "us/msg", SELF "lib_sleepers 10 5000",
		  "sleepers_ref_10", 0, 0, NULL, 0 },
		{ "sleepers_ref_100", "us/msg", SELF "ref_sleepers 100 5000",
		  NULL, 0, 0, NULL, 0 },
		{ "sleepers_100", "us/msg", SELF "lib_sleepers 100 5000",
		  "sleepers_10", 0, 0, "sleepers_ref_100", 0 },
		{ "sleepers_ref_1000", "us/msg", SELF "ref_sleepers 1000 5000",
		  NULL, 0, 0, NULL, 0 },
		{ "sleepers_1000", "us/msg", SELF "lib_sleepers 1000 5000",
		  "sleepers_10", 0, 0, "sleepers_ref_1000", 0 },
	} },
	{ "syscalls",
	  "strace -f -c: run of N tasks minus run of 0, over N", 1, 180, 180, {
		{ "syscalls_fork_ref", "calls/task",
		  SELF "syscalls 500 ref_fork N 2", NULL, 0, 0, NULL, 0 },
		{ "syscalls_fork_lib", "calls/task",
		  SELF "syscalls 500 lib_fork N 2", "syscalls_fork_ref",
		  GOAL_VALUE_AT_MOST, 12, NULL, 0 },
		{ "syscalls_reuse_ref", "calls/task",
		  SELF "syscalls 5000 ref_reuse N 2", NULL, 0, 0, NULL, 0 },
		{ "syscalls_reuse_lib", "calls/task",
		  SELF "syscalls 5000 lib_reuse N 2", "syscalls_reuse_ref",
		  GOAL_VALUE_AT_MOST, 5, NULL, 0 },
	} },
	{ "faults",
	  "page faults per fork-per-task task (getrusage): run of N minus run of 0",
	  3, 120, 60, {
		{ "faults_fork_ref", "faults/task",
		  SELF "faults self 2000 ref_fork N 2", NULL, 0, 0, NULL, 0 },
		{ "faults_fork_lib", "faults/task",
		  SELF "faults self 2000 lib_fork N 2", "faults_fork_ref", 0, 0,
		  NULL, 0 },
		{ "faults_fork_ref_kids", "faults/task",
		  SELF "faults children 2000 ref_fork N 2", NULL, 0, 0, NULL,
		  0 },
		{ "faults_fork_lib_kids", "faults/task",
		  SELF "faults children 2000 lib_fork N 2",
		  "faults_fork_ref_kids", 0, 0, NULL, 0 },
	} },
	{ "memory",
	  "peak RSS of the parent (getrusage), fresh process each", 1, 120, 120, {
		{ "mem_baseline", "MiB", SELF "lib_mem_base",
		  NULL, 0, 0, NULL, 0 },
		{ "mem_1000_channels", "MiB", SELF "lib_mem_channels 1000",
		  "mem_baseline", 0, 0, NULL, 0 },
		{ "mem_256MiB_message", "x msg", SELF "lib_mem_big 256",
		  NULL, GOAL_VALUE_AT_MOST, 1.1, NULL, 0 },
	} },
};

#define NGROUPS (sizeof groups / sizeof groups[0])

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* In a run for trial_faults: what bench_ok reports instead of the value,
 * 0 for none, 1 for the process's own page faults, 2 for its children's. */
static int report_faults;

void bench_ok(double value)
{
	struct rusage ru;

	if (report_faults && getrusage(report_faults == 1 ? RUSAGE_SELF
							  : RUSAGE_CHILDREN,
				       &ru) == 0)
		value = (double)ru.ru_minflt + (double)ru.ru_majflt;
	printf("ok %.9g\n", value);
	fflush(stdout);
	_exit(0);
}

void bench_na(const char *fmt, ...)
{
	va_list ap;

	printf("na ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	_exit(0);
}

long bench_count(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		bench_na("bad count '%s'", s);
	return v;
}

int bench_square(const void *in, void *out, void *ctx)
{
	uint64_t x;

	(void)ctx;
	memcpy(&x, in, sizeof x);
	x *= x;
	memcpy(out, &x, sizeof x);
	return 0;
}

/* "shell COUNT CMD": runs CMD with sh -c, its output discarded, and
 * reports COUNT divided by its wall time. */
static void trial_shell(int argc, char **argv)
{
	long count;
	double t0;
	pid_t pid;
	int st;

	if (argc != 2)
		bench_na("usage: shell COUNT CMD");
	count = bench_count(argv[0]);
	t0 = bench_now();
	pid = fork();
	if (pid < 0)
		bench_na("fork: %s", strerror(errno));
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execl("/bin/sh", "sh", "-c", argv[1], (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			bench_na("waitpid: %s", strerror(errno));
	t0 = bench_now() - t0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		bench_na("'%s' failed (status %d)", argv[1], st);
	bench_ok(count / t0);
}

/* Copies the argc arguments of argv to dst, the argument N replaced by
 * num: the count of the tasks a trial runs. */
static void put_args(char **dst, int argc, char **argv, char *num)
{
	int k;

	for (k = 0; k < argc; k++)
		dst[k] = strcmp(argv[k], "N") == 0 ? num : argv[k];
}

/* The trial of that name, in ref.c or lib.c; an unknown name ends the run
 * with "na". */
static bench_trial_fn *trial_named(const char *name)
{
	bench_trial_fn *fn = bench_ref_trial(name);

	if (!fn)
		fn = bench_lib_trial(name);
	if (!fn)
		bench_na("no trial named %s", name);
	return fn;
}

/* Runs "strace -f -c" on "bench run ARGS", with the argument N replaced by
 * n, and returns the total number of system calls, or -1 with the reason
 * in na (the trial's own "na" line when it had one). */
static long strace_calls(const char *self, long n, int argc, char **argv,
			 char *na, size_t nalen)
{
	char out[] = "/tmp/bench-strace-XXXXXX";
	char res[] = "/tmp/bench-result-XXXXXX";
	char num[32], line[512];
	char **av = calloc((size_t)argc + 8, sizeof *av);
	long calls = -1;
	pid_t pid;
	FILE *f;
	int fd, st, i = 0;

	if (!av)
		return -1;
	snprintf(na, nalen, "strace or the trial failed");
	fd = mkstemp(out);
	if (fd < 0) {
		free(av);
		return -1;
	}
	close(fd);
	fd = mkstemp(res);
	if (fd < 0) {
		unlink(out);
		free(av);
		return -1;
	}
	snprintf(num, sizeof num, "%ld", n);
	av[i++] = "strace";
	av[i++] = "-f";
	av[i++] = "-c";
	av[i++] = "-o";
	av[i++] = out;
	av[i++] = (char *)self;
	av[i++] = "run";
	put_args(av + i, argc, argv, num);
	av[i + argc] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(fd, 1);
		execvp("strace", av);
		_exit(127);
	}
	close(fd);
	/* The trial must have measured: a "na" run has no calls per task. */
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0 && (f = fopen(res, "r"))) {
		if (!fgets(line, sizeof line, f))
			line[0] = '\0';
		fclose(f);
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "na ", 3) == 0)
			snprintf(na, nalen, "%.200s", line + 3);
		if (strncmp(line, "ok ", 3) != 0)
			pid = -1;
	}
	if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	    (f = fopen(out, "r"))) {
		/* The last line: "100.00 SECS USECS CALLS [ERRORS] total". */
		while (fgets(line, sizeof line, f)) {
			double pct, secs;
			long usecs, c;

			if (strstr(line, " total") &&
			    sscanf(line, "%lf %lf %ld %ld", &pct, &secs,
				   &usecs, &c) == 4)
				calls = c;
		}
		fclose(f);
	}
	unlink(out);
	unlink(res);
	free(av);
	return calls;
}

/* "syscalls N TRIAL ARGS": system calls per task of TRIAL, from a run of N
 * tasks minus a run of none (ARGS holds the literal N where the count
 * goes), so that start-up and worker forks cancel out. */
static void trial_syscalls(const char *self, int argc, char **argv)
{
	long n, with, without;
	char na[256];

	if (argc < 2)
		bench_na("usage: syscalls N TRIAL ARGS");
	if (system("command -v strace >/dev/null") != 0)
		bench_na("strace not installed");
	n = bench_count(argv[0]);
	with = strace_calls(self, n, argc - 1, argv + 1, na, sizeof na);
	if (with < 0)
		bench_na("%s", na);
	without = strace_calls(self, 0, argc - 1, argv + 1, na, sizeof na);
	if (without < 0)
		bench_na("%s", na);
	bench_ok((double)(with - without) / (double)n);
}

/* The page faults of one run of TRIAL ARGS (N replaced by n), of the
 * trial's process (whose children are tasks) or of its children, or -1
 * when the trial could not measure. */
static double run_faults(int which, long n, int argc, char **argv)
{
	char num[32], line[128] = "";
	char **av = calloc((size_t)argc + 1, sizeof *av);
	bench_trial_fn *fn;
	double v = -1;
	int p[2], st;
	pid_t pid;
	FILE *f;

	if (!av || pipe(p) < 0)
		bench_na("no memory or no pipe");
	snprintf(num, sizeof num, "%ld", n);
	put_args(av, argc, argv, num);
	fn = trial_named(av[0]);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 1);
		report_faults = which;
		fn(argc - 1, av + 1);
		_exit(1);
	}
	close(p[1]);
	f = fdopen(p[0], "r");
	if (f && fgets(line, sizeof line, f) && strncmp(line, "ok ", 3) == 0)
		v = strtod(line + 3, NULL);
	if (f)
		fclose(f);
	else
		close(p[0]);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		v = -1;
	free(av);
	return v;
}

/* "faults WHICH N TRIAL ARGS": page faults per task of TRIAL's own process
 * (WHICH self) or of its children (children), from a run of N tasks minus
 * a run of none, so that start-up cancels out. Counts, not times: steady
 * on a loaded machine, where the fork trials' rates are not. */
static void trial_faults(int argc, char **argv)
{
	double with, without;
	int which;
	long n;

	if (argc < 3)
		bench_na("usage: faults self|children N TRIAL ARGS");
	which = strcmp(argv[0], "children") == 0 ? 2 : 1;
	n = bench_count(argv[1]);
	with = run_faults(which, n, argc - 2, argv + 2);
	without = run_faults(which, 0, argc - 2, argv + 2);
	if (with < 0 || without < 0 || n == 0)
		bench_na("the trial did not measure");
	bench_ok((with - without) / (double)n);
}

static int run_one(const char *self, int argc, char **argv)
{
	bench_trial_fn *fn;

	if (argc < 1)
		bench_na("usage: run NAME ARGS");
	if (strcmp(argv[0], "shell") == 0)
		trial_shell(argc - 1, argv + 1);
	if (strcmp(argv[0], "syscalls") == 0)
		trial_syscalls(self, argc - 1, argv + 1);
	if (strcmp(argv[0], "faults") == 0)
		trial_faults(argc - 1, argv + 1);
	fn = trial_named(argv[0]);
	fn(argc - 1, argv + 1);
	bench_na("trial %s printed nothing", argv[0]);
}

/* Runs one trial: cmd in its own process group, timeout_s at most. Returns
 * 0 with *value, or -1 with the reason in na. */
static int trial(const char *cmd, int timeout_s, double *value, char *na,
		 size_t nalen)
{
	char buf[512];
	size_t len = 0;
	double deadline = bench_now() + timeout_s;
	int p[2], st, timed_out = 0;
	pid_t pid;

	if (pipe(p) < 0) {
		snprintf(na, nalen, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(na, nalen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		close(p[0]);
		dup2(p[1], 1);
		close(p[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	close(p[1]);
	/* Read up to the first newline: the trial's children may hold the
	 * pipe open after the trial has answered. */
	while (len + 1 < sizeof buf && !memchr(buf, '\n', len)) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		double left = deadline - bench_now();
		ssize_t r;

		if (left <= 0) {
			timed_out = 1;
			break;
		}
		if (poll(&pfd, 1, (int)(left * 1000) + 1) < 0 &&
		    errno != EINTR)
			break;
		if (!pfd.revents)
			continue;
		r = read(p[0], buf + len, sizeof buf - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(p[0]);
	buf[len] = '\0';
	/* Whatever is left of the trial's process group goes now. */
	if (timed_out)
		kill(-pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	kill(-pid, SIGKILL);
	buf[strcspn(buf, "\n")] = '\0';
	if (timed_out) {
		snprintf(na, nalen, "timed out after %d s", timeout_s);
		return -1;
	}
	if (strncmp(buf, "ok ", 3) == 0) {
		char *end;

		*value = strtod(buf + 3, &end);
		if (end != buf + 3 && isfinite(*value))
			return 0;
	}
	if (strncmp(buf, "na ", 3) == 0)
		snprintf(na, nalen, "%.200s", buf + 3);
	else if (WIFSIGNALED(st))
		snprintf(na, nalen, "trial killed by signal %d",
			 WTERMSIG(st));
	else
		snprintf(na, nalen, "trial exited with status %d, output '%.160s'",
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1, buf);
	return -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summarise(struct result *r)
{
	double s[MAX_REPS];

	if (r->n == 0)
		return;
	memcpy(s, r->v, sizeof s);
	qsort(s, (size_t)r->n, sizeof s[0], cmp_double);
	r->median = r->n % 2 ? s[r->n / 2] : (s[r->n / 2 - 1] + s[r->n / 2]) / 2;
	r->spread = r->median > 0 ? (s[r->n - 1] - s[0]) / r->median : 0;
}

static const struct result *find(const struct group *g,
				  const struct result *res, const char *name)
{
	int k;

	for (k = 0; k < MAX_ENTRIES && g->e[k].name; k++)
		if (strcmp(g->e[k].name, name) == 0)
			return &res[k];
	return NULL;
}

static void print_line(const struct group *g, const struct result *res,
		       int k)
{
	const struct entry *e = &g->e[k];
	const struct result *r = &res[k], *ref = NULL, *also = NULL;
	double ratio = NAN, measure;
	char goal[96] = "", extra[96] = "";

	if (r->na[0]) {
		printf("%-20s not available (%s)\n", e->name, r->na);
		return;
	}
	if (e->ref)
		ref = find(g, res, e->ref);
	if (ref && !ref->na[0] && ref->median > 0)
		ratio = r->median / ref->median;
	if (e->also)
		also = find(g, res, e->also);
	if (also && !also->na[0] && also->median > 0)
		snprintf(extra, sizeof extra, "  %.3gx %s",
			 r->median / also->median, e->also);
	measure = e->goal_kind == GOAL_VALUE_AT_MOST ? r->median : ratio;
	if (e->goal_kind && isnan(measure))
		snprintf(goal, sizeof goal, "goal %s%.3g: no reference",
			 e->goal_kind == GOAL_RATIO_AT_LEAST ? ">=" : "<=",
			 e->goal);
	else if (e->goal_kind)
		snprintf(goal, sizeof goal, "goal %s%.3g%s: %s",
			 e->goal_kind == GOAL_RATIO_AT_LEAST ? ">=" : "<=",
			 e->goal,
			 e->goal_kind == GOAL_VALUE_AT_MOST ? "" : "x",
			 (e->goal_kind == GOAL_RATIO_AT_LEAST ?
			  measure >= e->goal : measure <= e->goal) ?
			 "met" : "MISSED");
	if (isnan(ratio))
		printf("%-20s %11.4g %-10s %7s %-18s n=%d spread %4.1f%%  %s%s\n",
		       e->name, r->median, e->unit, "-",
		       e->ref ? "(no reference)" :
		       e->goal_kind ? "" : "(reference)", r->n,
		       100 * r->spread, goal, extra);
	else
		printf("%-20s %11.4g %-10s %6.3gx %-18s n=%d spread %4.1f%%  %s%s\n",
		       e->name, r->median, e->unit, ratio, e->ref, r->n,
		       100 * r->spread, goal, extra);
	fflush(stdout);
}

static void run_group(const struct group *g, int reps)
{
	struct result res[MAX_ENTRIES];
	int m = 0, rep, j, k, done = 0;
	double t0 = bench_now();

	memset(res, 0, sizeof res);
	while (m < MAX_ENTRIES && g->e[m].name)
		m++;
	if (g->reps == 1)
		reps = 1;
	else if (reps == 0)
		reps = g->reps;
	else if (reps < 0)
		reps = g->reps > 2 ? 2 : g->reps;
	if (reps > MAX_REPS)
		reps = MAX_REPS;
	printf("# %s: %s%s\n", g->name, g->what,
	       reps < g->reps ? " (fewer repetitions: time budget)" : "");
	fflush(stdout);
	for (rep = 0; rep < reps; rep++) {
		/* A slow machine (forks cost ten times more on some virtual
		 * machines) keeps the whole run within its few minutes:
		 * medians of two rather than of five. */
		if (rep >= 2 && bench_now() - t0 > g->budget_s)
			break;
		done++;
		for (j = 0; j < m; j++) {
			/* Rotate the order each repetition. */
			k = (j + rep) % m;
			if (res[k].na[0])
				continue;
			if (g->e[k].max_reps && res[k].n >= g->e[k].max_reps)
				continue;
			if (trial(g->e[k].cmd, g->timeout_s,
				  &res[k].v[res[k].n], res[k].na,
				  sizeof res[k].na) == 0)
				res[k].n++;
		}
	}
	for (k = 0; k < m; k++) {
		summarise(&res[k]);
		print_line(g, res, k);
	}
	if (done < reps)
		printf("# %s: %d repetitions of %d within its %d s budget\n",
		       g->name, done, reps, g->budget_s);
	if (strcmp(g->name, "mandel") == 0) {
		const struct result *s = &res[0];

		for (k = 1; k < m; k++)
			if (!s->na[0] && !res[k].na[0] && res[k].median > 0)
				printf("%-20s %11.3g %-10s over mandel_serial\n",
				       k == 1 ? "mandel_omp_speedup" :
				       "mandel_pmap_speedup",
				       s->median / res[k].median, "x");
	}
}

/* Sets the variables the trial commands use. */
static void set_env(const char *self)
{
	char path[4096];
	const char *slash;

	/* An absolute path, so trials find it from any directory. */
	if (self[0] == '/' || !getcwd(path, sizeof path - 1024))
		snprintf(path, sizeof path, "%.1000s", self);
	else
		snprintf(path + strlen(path), 1024, "/%.1000s", self);
	setenv("BENCH", path, 1);
	slash = strrchr(path, '/');
	if (slash)
		path[slash - path] = '\0';
	if (!getenv("BENCH_DIR"))
		setenv("BENCH_DIR", path, 1);
	if (!getenv("BENCH_SRC"))
		setenv("BENCH_SRC", "bench", 1);
	if (!getenv("PRUN"))
		setenv("PRUN", "build/demos/prun", 1);
}

static void raise_nofile(void)
{
	struct rlimit rl;

	/* The sleeping-children figure holds a thousand channels. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void header(void)
{
	char line[256], model[256] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	double load[3] = { 0, 0, 0 };

	if (f) {
		while (fgets(line, sizeof line, f))
			if (strncmp(line, "model name", 10) == 0) {
				char *c = strchr(line, ':');

				if (c) {
					snprintf(model, sizeof model, "%s",
						 c + 2);
					model[strcspn(model, "\n")] = '\0';
				}
				break;
			}
		fclose(f);
	}
	f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
			load[0] = -1;
		fclose(f);
	}
	printf("# exchange bench: %ld cpus, %s, load %.2f %.2f %.2f\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, load[0], load[1],
	       load[2]);
	printf("# %-18s %11s %-10s %7s %-18s\n", "figure", "median", "unit",
	       "ratio", "to");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	int reps = 0, opt;
	double budget = getenv("BENCH_BUDGET") ? atof(getenv("BENCH_BUDGET"))
					       : 150;
	size_t g;
	double t0 = bench_now();

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (argc > 1 && strcmp(argv[1], "run") == 0)
		return run_one(argv[0], argc - 2, argv + 2);
	while ((opt = getopt(argc, argv, "r:g:")) != -1) {
		if (opt == 'r')
			reps = atoi(optarg) > 0 ? atoi(optarg) : 1;
		else if (opt == 'g')
			only = optarg;
		else {
			fprintf(stderr, "usage: %s [-r REPS] [-g GROUP]\n",
				argv[0]);
			return 2;
		}
	}
	set_env(argv[0]);
	header();
	for (g = 0; g < NGROUPS; g++) {
		if (only && strcmp(only, groups[g].name) != 0)
			continue;
		/* On a machine so loaded that the run is late, the groups
		 * left get two repetitions each (medians of two). */
		if (!reps && bench_now() - t0 > budget)
			run_group(&groups[g], -1);
		else
			run_group(&groups[g], reps);
	}
	printf("# done in %.0f s\n", bench_now() - t0);
	return 0;
}
