/*
 * test_prun.c - the command runner demos/prun next to GNU parallel.
 *
 * Most tests run one shell script twice, with $R set to prun and then to
 * GNU parallel (parallel --will-cite), on the same input, and compare what
 * the two print on standard output and their exit status. Where prun
 * differs from parallel on purpose (README, "prun and GNU parallel"), prun
 * is tested alone. GNU parallel is required: make deps installs it.
 *
 * Every script runs under timeout(1), so a hung prun fails its test
 * instead of stalling the run; nothing here passes or fails on timing.
 * The scripts run through popen and system, so no test code runs in a
 * forked child.
 */
#include "helpers.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The longest a script may run before timeout(1) ends it. */
#define SCRIPT_SECONDS "20"

/* The path of the prun binary, next to this test's build directory
 * ($(BUILD)/tests/test_prun runs $(BUILD)/demos/prun) or in DEMO_DIR. */
static const char *prun_path(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("DEMO_DIR");
	ssize_t n;
	char *slash;

	if (path[0])
		return path;
	if (env && *env) {
		snprintf(path, sizeof(path), "%s/prun", env);
	} else {
		n = readlink("/proc/self/exe", path, sizeof(path) - 16);
		cr_assert(n > 0, "cannot find the test binary: %s",
			  strerror(errno));
		path[n] = '\0';
		slash = strrchr(path, '/');
		cr_assert(slash);
		strcpy(slash, "/../demos/prun");
	}
	cr_assert(access(path, X_OK) == 0, "%s is not built", path);
	return path;
}

/* printf into a fresh buffer. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	cr_assert(n >= 0);
	s = malloc((size_t)n + 1);
	cr_assert(s);
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

/* The whole content of a file, malloc'd. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t len = 0, cap = 4096, n;
	char *buf = malloc(cap);

	cr_assert(f, "%s: %s", path, strerror(errno));
	cr_assert(buf);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf);
		}
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

/* What one script run gave. */
struct result {
	int status;		/* exit status, or 256 + signal */
	char *out;		/* standard output, malloc'd */
	char *err;		/* standard error, malloc'd */
};

static void result_free(struct result *res)
{
	free(res->out);
	free(res->err);
}

/* Runs the shell script text with $R set to runner (and $PRUN to prun)
 * in a fresh temporary directory, its working directory; returns what it
 * printed and its exit status. */
static struct result script(const char *runner, const char *text)
{
	char dir[] = "/tmp/test_prun.XXXXXX";
	struct result res;
	char *path, *cmd, *outp, *errp;
	FILE *f;
	int st;

	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	path = fmt("%s/script.sh", dir);
	outp = fmt("%s/.out", dir);
	errp = fmt("%s/.err", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs(text, f);
	fclose(f);
	cmd = fmt("cd %s && R='%s' PRUN='%s' timeout -k 2 " SCRIPT_SECONDS
		  " sh ./script.sh > .out 2> .err < /dev/null", dir, runner,
		  prun_path());
	fflush(NULL);
	st = system(cmd);
	cr_assert(st != -1, "system: %s", strerror(errno));
	res.status = WIFEXITED(st) ? WEXITSTATUS(st) : 256 + WTERMSIG(st);
	res.out = slurp(outp);
	res.err = slurp(errp);
	free(cmd);
	cmd = fmt("rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	free(cmd);
	free(path);
	free(outp);
	free(errp);
	return res;
}

/* Runs the script with prun. */
static struct result with_prun(const char *text)
{
	return script(prun_path(), text);
}

#define PARALLEL "parallel --will-cite"

/* Runs the script with prun and with GNU parallel and checks that both
 * print the same on standard output and exit with the same status; the
 * status is returned, prun's output left in *out when out is not NULL. */
static int same(const char *text, char **out)
{
	struct result p = with_prun(text), g = script(PARALLEL, text);

	cr_assert_neq(g.status, 124, "GNU parallel timed out on:\n%s", text);
	cr_assert_neq(g.status, 127, "GNU parallel is missing (make deps)");
	cr_assert_str_eq(p.out, g.out,
			 "prun and parallel print differently for\n%s\n"
			 "prun's stderr:\n%s", text, p.err);
	cr_assert_eq(p.status, g.status,
		     "prun exits %d, parallel %d, for\n%s\nprun's stderr:\n%s",
		     p.status, g.status, text, p.err);
	if (out)
		*out = strdup(p.out);
	result_free(&p);
	result_free(&g);
	return g.status;
}

/* ------------------------------------------------------------------------ */
/* The two ways work was lost                                               */
/* ------------------------------------------------------------------------ */

Test(prun, halt_takes_gnu_specs, .timeout = 60)
{
	char *out;

	/* --halt now,fail=1 was taken as the command. */
	cr_assert_eq(same("printf '0\\n3\\n0\\n0\\n' | "
			  "$R -j1 --halt now,fail=1 'echo {}; exit {}'", &out),
		     3);
	cr_assert_str_eq(out, "0\n3\n");
	free(out);
	/* --halt never, and the same spelled 0: every job runs. */
	cr_assert_eq(same("printf '1\\n0\\n2\\n' | "
			  "$R -j1 --halt never 'echo {}; exit {}'; "
			  "echo $?; printf '1\\n0\\n2\\n' | "
			  "$R -j1 --halt=0 'echo {}; exit {}'", &out), 2);
	cr_assert_str_eq(out, "1\n0\n2\n2\n1\n0\n2\n");
	free(out);
	/* soon,fail=2: the count of failures. */
	cr_assert_eq(same("printf '0\\n3\\n4\\n0\\n0\\n' | "
			  "$R -j1 --halt soon,fail=2 'echo {}; exit {}'",
			  NULL), 2);
}

Test(prun, halt_percent_success_and_numbers, .timeout = 60)
{
	/* 50% of six jobs: halted at the third failure, status 50. */
	cr_assert_eq(same("printf '0\\n0\\n1\\n1\\n1\\n1\\n' | "
			  "$R -j1 --halt now,fail=50% 'echo {}; exit {}'",
			  NULL), 50);
	/* The first success stops the run with status 0. */
	cr_assert_eq(same("printf '5\\n0\\n0\\n' | "
			  "$R -j1 --halt now,success=1 'echo {}; exit {}'",
			  NULL), 0);
	/* The old numbers: 2 is now,fail=1, 1 is soon,fail=1. */
	cr_assert_eq(same("printf '0\\n4\\n0\\n' | "
			  "$R -j1 --halt 2 'echo {}; exit {}'; echo $?; "
			  "printf '0\\n4\\n0\\n' | "
			  "$R -j1 --halt-on-error 1 'echo {}; exit {}'", NULL),
		     4);
}

Test(prun, halt_now_kills_running_jobs, .timeout = 60)
{
	char *out;

	/* The job of 30 s is killed when the other fails; its output is
	 * dropped. Without the kill the script would time out. */
	cr_assert_eq(same("printf '30\\n0\\n' | $R -j2 --halt now,fail=1 "
			  "'sleep {}; echo end {}; exit 1'", &out), 1);
	cr_assert_str_eq(out, "end 0\n");
	free(out);
}

Test(prun, halt_done_counts_finished_jobs, .timeout = 30)
{
	struct result r = with_prun("printf '1\\n2\\n3\\n' | "
				    "$R -j1 --halt soon,done=2 echo");

	/* parallel 20221122 exits 101 here, as if more than 100 jobs had
	 * failed; prun gives the number of failed jobs. */
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "1\n2\n");
	cr_assert(strstr(r.err, "This job finished:\necho 1\n"), "%s", r.err);
	result_free(&r);
}

Test(prun, bad_halt_specs, .timeout = 30)
{
	static const char *const bad[] = {
		"bogus", "now", "now,fail", "now,fail=", "now,fail=x",
		"now,fail=0", "soon,fail=101%", "now,sucess=1", "fail=1",
		"now,fail=1.5",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = fmt("echo 1 | $R --halt '%s' echo", bad[i]);
		struct result r = with_prun(text);

		cr_assert_eq(r.status, 255, "--halt %s: %d", bad[i], r.status);
		cr_assert_str_eq(r.out, "", "--halt %s ran:\n%s", bad[i], r.out);
		cr_assert(strstr(r.err, "--halt"), "%s", r.err);
		result_free(&r);
		free(text);
	}
}

Test(prun, nul_in_input_is_not_lost, .timeout = 60)
{
	struct result r;
	char *out;

	/* As parallel: the NUL becomes \0, with a warning; the rest of the
	 * line is kept. */
	cr_assert_eq(same("printf 'a\\0b\\nc\\n' | $R -k "
			  "'printf \"%s\\\\n\" X{}X'",
			  &out), 0);
	cr_assert_str_eq(out, "Xa\\0bX\nXcX\n");
	free(out);
	r = with_prun("printf 'a\\0b\\n' | $R -k echo");
	cr_assert(strstr(r.err, "NUL"), "no warning: %s", r.err);
	result_free(&r);
}

Test(prun, null_and_delimiter_separate_items, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("printf 'a b\\0c\\nd\\0' | $R -k -0 'printf \"[%s]\\\\n\"';"
			  "printf 'a b\\0c' | $R -k --null 'printf \"[%s]\\\\n\"'",
			  &out), 0);
	cr_assert_str_eq(out, "[a b]\n[c\nd]\n[a b]\n[c]\n");
	free(out);
	/* The last item keeps what follows the last delimiter, newline
	 * included; a delimiter at the very end makes no empty item. */
	cr_assert_eq(same("printf 'a,b,c\\n' | $R -k -d , 'printf \"[%s]\\\\n\"';"
			  "printf 'a,b,' | $R -k -d, 'printf \"[%s]\\\\n\"';"
			  "printf 'a\\tb' | $R -k -d '\\t' 'printf \"[%s]\\\\n\"';"
			  "printf 'a\\0b' | $R -k -d '\\0' 'printf \"[%s]\\\\n\"'",
			  &out), 0);
	cr_assert_str_eq(out, "[a]\n[b]\n[c\n]\n[a]\n[b]\n[a]\n[b]\n[a]\n[b]\n");
	free(out);
}

/* ------------------------------------------------------------------------ */
/* The command line                                                         */
/* ------------------------------------------------------------------------ */

Test(prun, options_the_getopt_way, .timeout = 60)
{
	char *out;

	/* Bundled flags, --opt=value, -j forms; options end at the
	 * command, whose own options stay its own. */
	cr_assert_eq(same("seq 3 | $R -kj2 echo -n x{}; echo;"
			  "seq 3 | $R --jobs=2 -k echo;"
			  "seq 3 | $R -j 0 -k echo;"
			  "seq 3 | $R -j +1 -k echo;"
			  "seq 3 | $R -j -1 -k echo;"
			  "seq 3 | $R -j 50% -k echo;"
			  "seq 3 | $R -P 2 --keep-order -- echo", &out), 0);
	cr_assert_str_eq(out, "x1x2x3\n1\n2\n3\n1\n2\n3\n1\n2\n3\n"
			 "1\n2\n3\n1\n2\n3\n1\n2\n3\n");
	free(out);
}

Test(prun, bad_options_say_what_and_exit_255, .timeout = 30)
{
	static const char *const bad[][2] = {
		{ "-j x echo", "-j" },
		{ "--jobs=1.5 echo", "--jobs" },
		{ "-j -99999 echo", "-j" },
		{ "-j 0% echo", "-j" },
		{ "-j", "-j" },
		{ "--timeout 0 echo", "--timeout" },
		{ "--timeout=x echo", "--timeout" },
		{ "--bogus echo", "--bogus" },
		{ "-q echo", "-q" },
		{ "-d ab echo", "-d" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = fmt("echo 1 | $R %s", bad[i][0]);
		struct result r = with_prun(text);
		char *nl = strchr(r.err, '\n');

		cr_assert_eq(r.status, 255, "prun %s: %d", bad[i][0], r.status);
		cr_assert_str_eq(r.out, "", "prun %s ran", bad[i][0]);
		/* One line naming the option, then the pointer to --help. */
		cr_assert(nl, "prun %s: %s", bad[i][0], r.err);
		*nl = '\0';
		cr_assert(strstr(r.err, bad[i][1]), "prun %s: %s", bad[i][0],
			  r.err);
		cr_assert(strncmp(nl + 1, "Try 'prun --help'", 17) == 0,
			  "prun %s: %s", bad[i][0], nl + 1);
		result_free(&r);
		free(text);
	}
}

Test(prun, help_goes_to_stdout, .timeout = 30)
{
	struct result r = with_prun("$R --help");

	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "usage: prun"), "%s", r.out);
	cr_assert(strstr(r.out, "--halt"), "%s", r.out);
	cr_assert_str_eq(r.err, "");
	result_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Replacement strings, sources, quoting                                    */
/* ------------------------------------------------------------------------ */

Test(prun, replacement_strings, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("$R -k echo {.} {/} {//} {/.} ::: foo/bar.tar.gz "
			  ".bashrc a. dir.x/file / a/ '' file x/.y;"
			  "$R -k -j2 echo {#}-{} ::: a b c;"
			  "$R -k -j1 echo {%}{#} ::: a b;"
			  "$R -k echo {1.} {1/} {2//} {3}. ::: a/b.c ::: d/e;"
			  "$R -k echo {} {{}} {x} ::: a", &out), 0);
	cr_assert_str_eq(out, "foo/bar.tar bar.tar.gz foo bar.tar\n"
			 " .bashrc . \n" "a a. . a\n"
			 "dir.x/file file dir.x file\n" "/  / \n" "a/  . \n"
			 "  . \n" "file file . file\n" "x/ .y x \n"
			 "1-a\n2-b\n3-c\n" "11\n12\n" "a/b b.c d .\n"
			 "a {a} {x}\n");
	free(out);
}

Test(prun, sources_combine, .timeout = 60)
{
	char *out;

	/* Several ::: lists: every argument of one with every argument of
	 * the next, the last turning fastest; {N} is the Nth. */
	cr_assert_eq(same("$R -k echo ::: a b ::: 1 2;"
			  "$R -k echo {2}{1} ::: a b ::: 1 2 3", &out), 0);
	cr_assert_str_eq(out, "a 1\na 2\nb 1\nb 2\n"
			 "1a\n2a\n3a\n1b\n2b\n3b\n");
	free(out);
	/* Files with :::: and -a, mixed with a list; - is stdin. */
	cr_assert_eq(same("printf 'a\\nb\\n' > f1; printf '1\\n2' > f2;"
			  "$R -k echo :::: f1 f2;"
			  "$R -k -a f1 echo ::: x;"
			  "$R -k --arg-file=f2 echo;"
			  "printf 's\\n' | $R -k echo {1}{2} :::: - ::: 7;"
			  "$R echo ::: ; echo empty $?", &out), 0);
	cr_assert_str_eq(out, "a 1\na 2\nb 1\nb 2\na x\nb x\n1\n2\ns7\n"
			 "empty 0\n");
	free(out);
	/* A file that is not there is prun's own error. */
	cr_assert_eq(same("$R echo :::: ./missing", NULL), 255);
}

Test(prun, colsep_splits_columns, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("printf 'a,b\\nc,d,e\\n' | "
			  "$R -k --colsep , echo {} / {1} / {3}/;"
			  "printf 'a , b\\n' | $R -C ' *, *' echo {2}x;"
			  "printf 'a\\tb c\\n' | $R --colsep '\\t' echo {2};"
			  "$R -k --colsep - echo {2} {1} ::: x-y", &out), 0);
	cr_assert_str_eq(out, "a b / a / /\nc d e / c / e/\nbx\nb c\ny x\n");
	free(out);
}

Test(prun, quoting_as_parallel, .timeout = 60)
{
	char *out;

	/* An argument is one word, whatever it holds; a plain one is left
	 * bare, so it works inside the user's own shell syntax. */
	cr_assert_eq(same("$R -k 'printf \"[%s]\\n\" {}' ::: 'a b' \"it's\" "
			  "\"'a\" \"a'\" '' '$HOME' '*' 'a\\\\b' '\"';"
			  "echo 3 | $R 'echo $(( {} * 2 ))';"
			  "$R -k echo '\"{}\"' ::: 'a b' c", &out), 0);
	cr_assert_str_eq(out, "[a b]\n[it's]\n['a]\n[a']\n[]\n[$HOME]\n[*]\n"
			 "[a\\\\b]\n[\"]\n6\n'a b'\nc\n");
	free(out);
}

Test(prun, shell_is_dollar_shell, .timeout = 30)
{
	/* parallel runs the shell it was started from (or
	 * $PARALLEL_SHELL); prun runs $SHELL, and sh without it. */
	struct result r = with_prun("SHELL=/bin/bash $R -k "
				    "'echo ${BASH_VERSION:+bash}' ::: 1;"
				    "SHELL= $R 'echo ${BASH_VERSION:-sh}' ::: 1;"
				    "SHELL=/bin/bash $R -k 'echo $0' ::: 1");

	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "bash 1\nsh 1\nbash 1\n");
	result_free(&r);
}

Test(prun, no_command_runs_the_input, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("printf 'echo a\\necho b c\\n' | $R -k;"
			  "$R -k ::: 'echo x' 'exit 3'", &out), 1);
	cr_assert_str_eq(out, "a\nb c\nx\n");
	free(out);
}

Test(prun, too_long_for_exec_says_so, .timeout = 30)
{
	/* One argument over Linux's limit for one string (128 KiB).
	 * parallel refuses such a job before it starts, with status 255;
	 * prun runs the others and names the job. */
	struct result r = with_prun("{ echo a; head -c 200000 /dev/zero | "
				    "tr '\\0' x; echo; echo b; } | "
				    "$R -k -j1 'echo {} | cut -c1'");

	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_str_eq(r.out, "a\nb\n");
	cr_assert(strstr(r.err, "job 2: the command line is too long"), "%s",
		  r.err);
	result_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Failure handling                                                         */
/* ------------------------------------------------------------------------ */

Test(prun, exit_status_counts_failed_jobs, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("$R 'exit {}' ::: 0 1 2 0 3; echo $?;"
			  "$R 'exit {}' ::: 0 0; echo $?;"
			  "$R 'kill -9 $$ #{}' ::: 1; echo $?;"
			  "seq 102 | $R -j 20 false", &out), 101);
	cr_assert_str_eq(out, "3\n0\n1\n");
	free(out);
}

Test(prun, retries_run_a_failed_job_again, .timeout = 60)
{
	char *out;

	/* Three attempts, the output of the last one printed. */
	cr_assert_eq(same("$R --retries 3 'echo try >> n; echo out "
			  "$(wc -l < n); exit 2 #{}' ::: 1; echo $?; cat n;"
			  "rm n; $R --retries=3 'echo try >> n; "
			  "test $(wc -l < n) -ge 2 #{}' ::: 1; echo $?; cat n",
			  &out), 0);
	cr_assert_str_eq(out, "out 3\n1\ntry\ntry\ntry\n0\ntry\ntry\n");
	free(out);
}

Test(prun, second_signal_kills_the_jobs, .timeout = 30)
{
	/* The job ignores SIGTERM, so the first signal, passed on, does
	 * not end it; the second one makes prun send SIGKILL. The script
	 * waits for the job to have started before signalling (bounded). */
	struct result r = with_prun(
		"$R 'trap \"\" TERM; echo go > ready; sleep 60; echo no' "
		"::: 1 & p=$!;"
		"n=0; while [ ! -s ready ] && [ $n -lt 200 ]; do "
		"sleep 0.05; n=$((n + 1)); done;"
		"kill -TERM $p; sleep 0.2; kill -TERM $p; wait $p; echo $?");

	cr_assert_str_eq(r.out, "143\n", "%s", r.err);
	result_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Seeing the work                                                          */
/* ------------------------------------------------------------------------ */

Test(prun, tag_and_dry_run, .timeout = 60)
{
	char *out;

	cr_assert_eq(same("$R -k --tag 'echo x; echo y' ::: a 'b c';"
			  "$R -k --tag echo ::: a ::: 1 2;"
			  "$R --dry-run -k 'echo {} {#}' ::: a 'b c' \"it's\";"
			  "$R --dry-run 'touch {}' ::: made; ls", &out), 0);
	cr_assert_str_eq(out, "a\tx\na\ty a\nb c\tx\nb c\ty b c\n"
			 "a 1\ta 1\na 2\ta 2\n"
			 "echo a 1\necho 'b c' 2\necho 'it'\"'\"'s' 3\n"
			 "touch made\nscript.sh\n");
	free(out);
}

Test(prun, joblog_has_parallels_columns, .timeout = 60)
{
	char *out;

	/* Everything but the two times, which differ from run to run. */
	cr_assert_eq(same("$R -j1 --joblog log 'echo {}; exit {}' ::: 0 1 22;"
			  "echo $?; cut -f 1,2,5- log;"
			  "awk -F '\\t' 'NR > 1 && ($3 !~ /^[0-9]+[.][0-9][0-9][0-9]$/ "
			  "|| $4 !~ /^ *[0-9]+[.][0-9][0-9][0-9]$/) { print \"bad\" }' "
			  "log", &out), 0);
	cr_assert_str_eq(out, "0\n1\n22\n2\n"
			 "Seq\tHost\tSend\tReceive\tExitval\tSignal\tCommand\n"
			 "1\t:\t0\t2\t0\t0\techo 0; exit 0\n"
			 "2\t:\t0\t2\t1\t0\techo 1; exit 1\n"
			 "3\t:\t0\t3\t22\t0\techo 22; exit 22\n");
	free(out);
}

/* A script for prun OPTS where the job prints START, then waits (at most
 * 10 s) for a file "go"; meanwhile the script watches prun's output (for
 * at most 2 s) for START and says whether it was seen before the job
 * ended. */
/* The job prints start, then waits for the file go before it ends; the
 * script looks for start in prun's output for up to looks * 50 ms, then
 * makes go. A job that should be seen is looked for long (a loaded machine
 * is slow, but prun forwards it whatever the time); one that should not is
 * looked for briefly, which passes however slow the machine. */
static char *live_script(const char *opts, const char *start, int looks)
{
	return fmt("$R %s 'printf \"%s\"; n=0; while [ ! -e go ] && "
		   "[ $n -lt 360 ]; do sleep 0.05; n=$((n + 1)); done; "
		   "echo end #{}' ::: 1 > out & p=$!;"
		   "n=0; while ! grep -q start out && [ $n -lt %d ]; do "
		   "sleep 0.05; n=$((n + 1)); done;"
		   "if grep -q start out; then echo seen; else echo unseen; "
		   "fi; touch go; wait $p; cat out", opts, start, looks);
}

Test(prun, line_buffer_and_ungroup_print_as_it_comes, .timeout = 60)
{
	static const struct {
		const char *opts, *start, *want;
		int looks;
	} cases[] = {
		/* Whole lines at once with --line-buffer... */
		{ "--line-buffer", "start\\n", "seen\nstart\nend\n", 300 },
		{ "--lb -k", "start\\n", "seen\nstart\nend\n", 300 },
		/* ...but not half a line. */
		{ "--lb", "start", "unseen\nstartend\n", 20 },
		/* Anything at once with --ungroup. */
		{ "-u", "start", "seen\nstartend\n", 300 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = live_script(cases[i].opts, cases[i].start,
					 cases[i].looks);
		struct result r = with_prun(text);

		cr_assert_eq(r.status, 0, "%s: %s", cases[i].opts, r.err);
		cr_assert_str_eq(r.out, cases[i].want, "prun %s",
				 cases[i].opts);
		result_free(&r);
		free(text);
	}
}

Test(prun, line_buffer_keeps_order_with_k, .timeout = 60)
{
	char *out;

	/* The later job's lines wait for the earlier job's. */
	cr_assert_eq(same("$R -k --lb -j2 'echo a{}; sleep 0.{}; echo b{}' "
			  "::: 3 1", &out), 0);
	cr_assert_str_eq(out, "a3\nb3\na1\nb1\n");
	free(out);
}

Test(prun, big_output_goes_to_a_file, .timeout = 60)
{
	struct rusage ru;
	struct result r;

	/* Two jobs of 40 MB each, kept in order: prun's memory stays far
	 * below the output it holds. */
	r = with_prun("$R -k -j2 'head -c 40000000 /dev/zero | tr \"\\0\" "
		      "{}' ::: a b > big; wc -c < big; tr -s ab < big; echo;"
		      "$R 'head -c 40000000 /dev/zero #{}' ::: 1 | wc -c");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "80000000\nab\n40000000\n");
	result_free(&r);
	cr_assert_eq(getrusage(RUSAGE_CHILDREN, &ru), 0);
	/* Under valgrind (FAULTS_SLOW), which runs prun too, the figure is
	 * valgrind's own. */
	if (!slow_run())
		cr_assert_lt(ru.ru_maxrss, 30 * 1024, "%ld KiB",
			     ru.ru_maxrss);
}

Test(prun, progress_eta_and_bar_on_stderr, .timeout = 30)
{
	struct result r = with_prun("seq 4 | $R -k --bar echo 2> bar;"
				    "seq 4 | $R --eta true 2> eta;"
				    "seq 4 | $R --progress true 2> progress;"
				    "cat bar eta progress >&2");

	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "1\n2\n3\n4\n");
	cr_assert(strstr(r.err, "100% 4:0="), "%s", r.err);
	cr_assert(strstr(r.err, "ETA: 0s Left: 0 AVG: "), "%s", r.err);
	cr_assert(strstr(r.err, "local:0/4/0 failed/"), "%s", r.err);
	result_free(&r);
}
