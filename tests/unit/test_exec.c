/* Unit tests of the process adapter (rz_proc_*), attempts through an
 * adapter (rz_attempt_*) and the local runner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "exec/adapter.h"
#include "exec/exec_impl.h"
#include "exec/sandbox.h"
#include "rhizos/exec.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/run.h"
#include "rhizos/store.h"

/* ---- helpers ---- */

static char tmp_root[256];   /* a private folder for each test */

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/rz-test-exec-XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Run to completion; fails the test if it takes more than 20 s. */
static void finish(rz_proc *p)
{
    uint64_t give_up = rz__now_ms() + 20000;
    while (rz__now_ms() < give_up) {
        int r = rz_proc_poll(p, 100);
        assert_true(r >= 0);
        if (r == 1)
            return;
    }
    fail_msg("process did not finish");
}

/* Spawn `sh -c script` with the given options and run it to the end. */
static rz_proc *run_sh(rz_proc_opts *o, const char *script)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    o->argv = argv;
    o->scratch_parent = tmp_root;
    rz_proc *p = NULL;
    int rc = rz_proc_spawn(&p, o);
    if (rc != RZ_OK)
        fail_msg("spawn: %s", rz_error_last()->message);
    assert_non_null(p);
    finish(p);
    o->argv = NULL;
    return p;
}

static cJSON *outputs_of(const rz_proc *p)
{
    const char *s = rz_proc_outputs(p);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

/* `sh -c script` run to the end (run_sh), exited 0: its outputs. */
static cJSON *run_outputs(rz_proc_opts *o, const char *script)
{
    rz_proc *p = run_sh(o, script);
    assert_int_equal(rz_proc_exit_code(p), 0);
    cJSON *j = outputs_of(p);
    rz_proc_free(p);
    return j;
}

static const char *str_field(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double num_field(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n == 0;
}

/* True while any live process has `needle` in its command line. */
static bool process_with_arg(const char *needle)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        if (n > 0) {
            buf[n] = '\0';
            found = strstr(buf, needle) != NULL;
        }
    }
    closedir(d);
    return found;
}

static bool process_gone_soon(const char *needle)
{
    for (int i = 0; i < 100; i++) {
        if (!process_with_arg(needle))
            return true;
        sleep_ms(20);
    }
    return false;
}

/* ---- outputs ---- */

static void test_stdout_json(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    rz_proc *p = run_sh(&o, "printf '{\"a\": 1, \"b\": [\"x\"]}\\n'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    assert_int_equal(rz_proc_timed_out(p), 0);
    assert_string_equal(rz_proc_outputs(p), "{\"a\":1,\"b\":[\"x\"]}");
    assert_null(rz__proc_output_error(p));
    rz_proc_free(p);
}

static void test_output_file(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    rz_proc *p = run_sh(&o, "test -f \"$RZ_OUTPUT\" || exit 9;"
                            "printf '{\"b\":2}' > \"$RZ_OUTPUT\";"
                            "echo 'not json on stdout'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    assert_string_equal(rz_proc_outputs(p), "{\"b\":2}");
    rz_proc_free(p);
}

static void test_bad_outputs(void **state)
{
    (void)state;
    static const char *const scripts[] = {
        "echo hello",                          /* not JSON */
        "echo '[1, 2]'",                       /* JSON but not an object */
        "echo '{\"a\":1} trailing'",           /* garbage after the object */
        "true",                                /* nothing at all */
        "printf '[1]' > \"$RZ_OUTPUT\"; echo '{\"a\":1}'",  /* file wins */
        "rm \"$RZ_OUTPUT\"; ln -s /etc/passwd \"$RZ_OUTPUT\"",
        "rm \"$RZ_OUTPUT\"; mkfifo \"$RZ_OUTPUT\"",  /* must not block */
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(scripts); i++) {
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = 0;
        rz_proc *p = run_sh(&o, scripts[i]);
        assert_int_equal(rz_proc_exit_code(p), 0);
        assert_null(rz_proc_outputs(p));
        assert_non_null(rz__proc_output_error(p));
        rz_proc_free(p);
    }
}

static void test_stdin_request(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    const char *req = "{\"inputs\":{\"text\":\"hi\"},\"config\":{}}";
    o.input = req;
    o.input_len = strlen(req);
    rz_proc *p = run_sh(&o, "n=$(wc -c); printf '{\"n\":%d}' \"$n\"");
    cJSON *j = outputs_of(p);
    assert_int_equal((int)num_field(j, "n"), (int)strlen(req));
    cJSON_Delete(j);
    rz_proc_free(p);
}

/* ---- exit status, signals, logs, caps ---- */

static void test_exit_codes(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    rz_proc *p = run_sh(&o, "echo '{}'; exit 3");
    assert_int_equal(rz_proc_exit_code(p), 3);
    rz_proc_free(p);
    p = run_sh(&o, "exit 255");
    assert_int_equal(rz_proc_exit_code(p), 255);
    rz_proc_free(p);
}

static void test_signals(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    rz_proc *p = run_sh(&o, "kill -9 $$");
    assert_int_equal(rz_proc_exit_code(p), -9);
    assert_int_equal(rz_proc_timed_out(p), 0);
    rz_proc_free(p);
    p = run_sh(&o, "kill -TERM $$");
    assert_int_equal(rz_proc_exit_code(p), -15);
    rz_proc_free(p);
}

static void test_stderr_tail(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.max_log = 100;
    /* 300 KB of noise, then a marker that must survive as the tail. */
    rz_proc *p = run_sh(&o, "i=0; while [ $i -lt 3000 ]; do "
                            "echo 'noise noise noise noise noise noise noise "
                            "noise noise noise noise noise noise noise' >&2;"
                            " i=$((i+1)); done; echo 'END-MARKER' >&2;"
                            "echo '{}'");
    size_t len = 0;
    const char *log = rz_proc_log(p, &len);
    assert_int_equal(len, 100);
    assert_memory_equal(log + len - 11, "END-MARKER\n", 11);
    assert_string_equal(rz_proc_outputs(p), "{}");
    rz_proc_free(p);

    /* A short log is kept whole. */
    o.max_log = 0;
    p = run_sh(&o, "echo oops >&2; exit 1");
    log = rz_proc_log(p, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(log, "oops\n", 5);
    rz_proc_free(p);
}

static void test_stdout_cap(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.max_output = 1000;
    /* 2 MB: far over the cap and over the pipe buffer; must not block. */
    rz_proc *p = run_sh(&o, "printf '{\"a\":\"'; head -c 2000000 /dev/zero |"
                            " tr '\\0' x; printf '\"}'");
    /* Past the cap the module is stopped, not waited for. */
    assert_int_equal(rz_proc_exit_code(p), -SIGKILL);
    assert_int_equal(rz__proc_output_over(p), 1);
    assert_null(rz_proc_outputs(p));
    assert_non_null(strstr(rz__proc_output_error(p), "exceeds"));
    rz_proc_free(p);

    /* A module that streams forever ends at the cap, long before its
     * timeout would. */
    o.timeout_ms = 600000;
    p = run_sh(&o, "yes");
    assert_int_equal(rz_proc_timed_out(p), 0);
    assert_int_equal(rz__proc_output_over(p), 1);
    assert_int_equal(rz_proc_exit_code(p), -SIGKILL);
    rz_proc_free(p);
}

/* ---- timeouts and process groups ---- */

static void check_timeout_kills_group(int sandbox)
{
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = sandbox;
    o.timeout_ms = 300;
    char script[200];
    /* Unique durations so /proc can tell these sleeps from any other. */
    int tag = (int)getpid() % 1000 + (sandbox ? 1000 : 2000);
    snprintf(script, sizeof script,
             "sh -c 'sleep 77.%d' & sleep 78.%d; echo '{}'", tag, tag);
    char child[32], grandchild[32];
    snprintf(child, sizeof child, "sleep 78.%d", tag);
    snprintf(grandchild, sizeof grandchild, "sleep 77.%d", tag);
    rz_proc *p = run_sh(&o, script);
    assert_int_equal(rz_proc_timed_out(p), 1);
    assert_null(rz_proc_outputs(p));
    assert_int_equal(rz_proc_exit_code(p), -9);
    assert_true(process_gone_soon(child));
    assert_true(process_gone_soon(grandchild));
    rz_proc_free(p);
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    check_timeout_kills_group(0);
}

static void test_kill_and_free_while_running(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.scratch_parent = tmp_root;
    const char *argv[] = { "sh", "-c", "sleep 79.5 & sleep 79.5", NULL };
    o.argv = argv;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    assert_int_equal(rz_proc_poll(p, 0), 0);
    rz_proc_kill(p);
    finish(p);
    assert_int_equal(rz_proc_exit_code(p), -9);
    assert_int_equal(rz_proc_timed_out(p), 0);
    rz_proc_free(p);

    /* Freed while running: killed, reaped, scratch removed. */
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    rz_proc_free(p);
    assert_true(process_gone_soon("sleep 79.5"));
    assert_true(dir_is_empty(tmp_root));
}

/* The permissions ("rw-p") of the mapping holding `addr` in
 * /proc/self/maps, into perms[5]; false if none holds it. */
static bool map_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    unsigned long lo, hi, a = (unsigned long)addr;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 &&
                lo <= a && a < hi;
    fclose(f);
    return found;
}

/* A step's child stack (clone CLONE_VM, kept for the next start) has a
 * guard below it: its lowest page cannot be read or written, so a child
 * that overflows it faults instead of writing the runner's memory. */
static void test_child_stack_has_a_guard_page(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    rz_proc *p = run_sh(&o, "true");
    rz_proc_free(p);
    char *stack = rz__proc_test_kept_stack();
    assert_non_null(stack);
    long page = sysconf(_SC_PAGESIZE);
    char perms[5];
    assert_true(map_perms(stack, perms));
    assert_string_equal(perms, "---p");
    assert_true(map_perms(stack + page, perms));
    assert_string_equal(perms, "rw-p");
}

static int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Every descriptor is closed again, whichever way the process ends. */
static void test_no_fd_leak(void **state)
{
    (void)state;
    int before = open_fd_count();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.input = "{}";
    o.input_len = 2;
    o.timeout_ms = 200;
    rz_proc_free(run_sh(&o, "cat; echo log >&2"));
    rz_proc_free(run_sh(&o, "sleep 5"));
    const char *argv[] = { "sh", "-c", "sleep 5", NULL };
    o.argv = argv;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    rz_proc_free(p);
    const char *missing[] = { "rz-no-such-program-anywhere", NULL };
    o.argv = missing;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_ENOENT);
    assert_int_equal(open_fd_count(), before);
}

/* The caller can wait on rz_proc_fd() alone: it wakes on exit. */
static void test_fd_wakes_on_exit(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.scratch_parent = tmp_root;
    const char *argv[] = { "sh", "-c", "sleep 0.1; echo '{\"ok\":true}'",
                           NULL };
    o.argv = argv;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    int fd = rz_proc_fd(p);
    assert_true(fd >= 0);
    int done = 0;
    for (int i = 0; i < 100 && !done; i++) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        assert_true(poll(&pfd, 1, 5000) >= 0);
        done = rz_proc_poll(p, 0);
    }
    assert_int_equal(done, 1);
    assert_string_equal(rz_proc_outputs(p), "{\"ok\":true}");
    rz_proc_free(p);
}

/* ---- stdin ---- */

static void test_stdin_not_read(void **state)
{
    (void)state;
    size_t n = 4u << 20;   /* far over any pipe buffer */
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.input = big;
    o.input_len = n;
    rz_proc *p = run_sh(&o, "sleep 0.05; echo '{\"done\":1}'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    assert_string_equal(rz_proc_outputs(p), "{\"done\":1}");
    rz_proc_free(p);

    /* The child closes stdin at once: EPIPE, never SIGPIPE. */
    p = run_sh(&o, "exec 0<&-; sleep 0.05; echo '{}'");
    assert_string_equal(rz_proc_outputs(p), "{}");
    rz_proc_free(p);

    /* And one that reads it all gets every byte. */
    p = run_sh(&o, "n=$(wc -c); printf '{\"n\":%d}' \"$n\"");
    cJSON *j = outputs_of(p);
    assert_int_equal((size_t)num_field(j, "n"), n);
    cJSON_Delete(j);
    rz_proc_free(p);
    free(big);
}

/* A request that fits the pipe is in it before the child starts: the
 * caller is not woken to write it (the fd stays quiet while the child
 * sleeps), and the child reads every byte. */
static void test_short_input_written_at_start(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.scratch_parent = tmp_root;
    o.input = "{\"a\":1}";
    o.input_len = 7;
    const char *argv[] = { "sh", "-c", "sleep 0.3; cat", NULL };
    o.argv = argv;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    struct pollfd pfd = { .fd = rz_proc_fd(p), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 100), 0);
    int done = 0;
    for (int i = 0; i < 100 && !done; i++)
        done = rz_proc_poll(p, 100);
    assert_int_equal(done, 1);
    assert_string_equal(rz_proc_outputs(p), "{\"a\":1}");
    rz_proc_free(p);
}

/* ---- environment, scratch, paths ---- */

static void test_environment(void **state)
{
    (void)state;
    setenv("RZ_TEST_PARENT_SECRET", "hunter2", 1);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    const char *env[] = { "RZ_RUN_ID=run-7", "RZ_STEP_ID=count",
                          "RZ_ATTEMPT=2", "LANG=en_US.UTF-8", NULL };
    o.env = env;
    rz_proc *p = run_sh(&o,
        "printf '{\"secret\":\"%s\",\"run\":\"%s\",\"step\":\"%s\","
        "\"attempt\":\"%s\",\"home\":\"%s\",\"tmp\":\"%s\",\"pwd\":\"%s\","
        "\"lang\":\"%s\",\"path\":\"%s\",\"out\":\"%s\"}' "
        "\"${RZ_TEST_PARENT_SECRET-unset}\" \"$RZ_RUN_ID\" \"$RZ_STEP_ID\" "
        "\"$RZ_ATTEMPT\" \"$HOME\" \"$TMPDIR\" \"$(pwd)\" \"$LANG\" "
        "\"${PATH:+set}\" \"$RZ_OUTPUT\"");
    cJSON *j = outputs_of(p);
    assert_string_equal(str_field(j, "secret"), "unset");
    assert_string_equal(str_field(j, "run"), "run-7");
    assert_string_equal(str_field(j, "step"), "count");
    assert_string_equal(str_field(j, "attempt"), "2");
    assert_string_equal(str_field(j, "lang"), "en_US.UTF-8");
    assert_string_equal(str_field(j, "path"), "set");
    const char *pwd = str_field(j, "pwd");
    assert_string_equal(str_field(j, "home"), pwd);
    assert_string_equal(str_field(j, "tmp"), pwd);
    assert_true(strncmp(pwd, tmp_root, strlen(tmp_root)) == 0);
    assert_true(strncmp(str_field(j, "out"), pwd, strlen(pwd)) == 0);
    cJSON_Delete(j);
    rz_proc_free(p);
    unsetenv("RZ_TEST_PARENT_SECRET");

    /* Malformed entries are refused. */
    const char *bad[] = { "NOEQUALS", NULL };
    const char *argv[] = { "true", NULL };
    o.env = bad;
    o.argv = argv;
    p = (rz_proc *)&o;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);
    assert_null(p);
    assert_true(dir_is_empty(tmp_root));
}

static void test_limits(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.memory_mb = 512;
    o.cpu_seconds = 7;
    rz_proc *p = run_sh(&o, "printf '{\"as\":\"%s\",\"cpu\":\"%s\","
                            "\"files\":\"%s\",\"core\":\"%s\"}' "
                            "\"$(ulimit -v)\" \"$(ulimit -t)\" "
                            "\"$(ulimit -n)\" \"$(ulimit -c)\"");
    cJSON *j = outputs_of(p);
    assert_string_equal(str_field(j, "as"), "524288");
    assert_string_equal(str_field(j, "cpu"), "7");
    assert_string_equal(str_field(j, "files"), "1024");
    assert_string_equal(str_field(j, "core"), "0");
    cJSON_Delete(j);
    rz_proc_free(p);
}

static void test_scratch_removed(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    /* Files, a locked directory and a symlink out that must not be
     * followed when cleaning up. */
    char keep[300];
    snprintf(keep, sizeof keep, "%s/keep", tmp_root);
    assert_int_equal(mkdir(keep, 0700), 0);
    char script[1024];
    snprintf(script, sizeof script,
             "mkdir -p a/b/c && echo x > a/b/c/f && echo y > top &&"
             " mkdir locked && echo z > locked/f && chmod 000 locked &&"
             " ln -s '%s' link && printf '{\"dir\":\"%%s\"}' \"$(pwd)\"",
             keep);
    char keep_file[320];
    snprintf(keep_file, sizeof keep_file, "%s/precious", keep);
    write_file(keep_file, "data", 0600);
    rz_proc *p = run_sh(&o, script);
    cJSON *j = outputs_of(p);
    char *dir = rz__strdup(str_field(j, "dir"));
    cJSON_Delete(j);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    rz_proc_free(p);
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(keep_file, &st), 0);
    free(dir);
}

/* A module folder with hello.sh (prints {"hello": $1}) and an empty
 * scratch parent, under tmp_root. */
static void module_dir(char *mod, size_t mcap, char *scratch, size_t scap)
{
    char script[340];
    snprintf(mod, mcap, "%s/mod", tmp_root);
    assert_int_equal(mkdir(mod, 0755), 0);
    snprintf(script, sizeof script, "%s/hello.sh", mod);
    write_file(script, "#!/bin/sh\nprintf '{\"hello\":\"%s\"}' \"$1\"\n",
               0755);
    snprintf(scratch, scap, "%s/scratch", tmp_root);
    assert_int_equal(mkdir(scratch, 0700), 0);
}

/* What `argv` run in module folder `mod` says as "hello". */
static char *hello_of(const char *const *argv, const char *mod, const char *scratch)
{
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.argv = argv;
    o.module_dir = mod;
    o.scratch_parent = scratch;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
    finish(p);
    cJSON *j = outputs_of(p);
    const char *h = str_field(j, "hello");
    assert_non_null(h);
    char *hello = strdup(h);
    cJSON_Delete(j);
    rz_proc_free(p);
    return hello;
}

static void test_module_dir_runs_a_relative_program(void **state)
{
    (void)state;
    char mod[300], scratch[300];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    const char *direct[] = { "./hello.sh", "world", NULL };
    char *hello = hello_of(direct, mod, scratch);
    assert_string_equal(hello, "world");
    free(hello);
}

static void test_module_dir_resolves_every_dot_slash_word(void **state)
{
    (void)state;
    char mod[300], scratch[300], expect[400];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    const char *via_sh[] = { "sh", "./hello.sh", "./relative", NULL };
    char *hello = hello_of(via_sh, mod, scratch);
    snprintf(expect, sizeof expect, "%s/relative", mod);
    assert_string_equal(hello, expect);
    free(hello);
}

/* The module folder is resolved only where it is used ("./" words, the
 * sandbox): a step of /bin/sh runs though its folder is gone, a "./" one
 * is refused for it. */
static void test_module_dir_resolved_only_when_used(void **state)
{
    (void)state;
    char mod[300], scratch[300], gone[340];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    snprintf(gone, sizeof gone, "%s/gone", mod);
    const char *sh[] = { "/bin/sh", "-c", "printf '{\"hello\":\"sh\"}'", NULL };
    char *hello = hello_of(sh, gone, scratch);
    assert_string_equal(hello, "sh");
    free(hello);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    const char *dot[] = { "./hello.sh", NULL };
    o.argv = dot;
    o.module_dir = gone;
    o.scratch_parent = scratch;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_ENOENT);
    assert_null(p);
    assert_non_null(strstr(rz_error_last()->message, "module folder"));
}

/* Each refused spawn leaves no scratch folder behind. */
static void spawn_refused(const char *const *argv, const char *scratch, int want)
{
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.scratch_parent = scratch;
    o.argv = argv;
    rz_proc *p = NULL;
    assert_int_equal(rz_proc_spawn(&p, &o), want);
    assert_null(p);
    assert_true(dir_is_empty(scratch));
}

static void test_dot_slash_without_a_module_dir_is_einval(void **state)
{
    (void)state;
    char mod[300], scratch[300];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    const char *direct[] = { "./hello.sh", "world", NULL };
    spawn_refused(direct, scratch, RZ_EINVAL);
}

static void test_unknown_program_is_enoent(void **state)
{
    (void)state;
    char mod[300], scratch[300];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    const char *missing[] = { "rz-no-such-program-anywhere", NULL };
    spawn_refused(missing, scratch, RZ_ENOENT);
}

static void test_non_executable_is_eexec(void **state)
{
    (void)state;
    char mod[300], scratch[300], plain[340];
    module_dir(mod, sizeof mod, scratch, sizeof scratch);
    snprintf(plain, sizeof plain, "%s/plain.txt", mod);
    write_file(plain, "not a program\n", 0644);
    const char *noexec[] = { plain, NULL };
    spawn_refused(noexec, scratch, RZ_EEXEC);
}

static void test_invalid_options(void **state)
{
    (void)state;
    rz_proc *p = (rz_proc *)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    assert_int_equal(rz_proc_spawn(&p, NULL), RZ_EINVAL);
    assert_null(p);
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);   /* no argv */
    const char *empty[] = { NULL };
    o.argv = empty;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);
    const char *argv[] = { "true", NULL };
    o.argv = argv;
    o.input_len = 5;   /* length without data */
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);
    o.input_len = 0;
    o.version = 99;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);
    o.version = RZ_PROC_OPTS_VERSION;
    o.scratch_parent = "/nonexistent/rz/parent";
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EIO);
    assert_null(p);
    /* NULL-safe accessors. */
    rz_proc_free(NULL);
    rz_proc_kill(NULL);
    assert_int_equal(rz_proc_poll(NULL, 0), 1);
    assert_int_equal(rz_proc_fd(NULL), -1);
    assert_null(rz_proc_outputs(NULL));
}

/* ---- the sandbox ---- */

static void test_sandbox(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    char mod[300], secret[300];
    snprintf(mod, sizeof mod, "%s/mod", tmp_root);
    assert_int_equal(mkdir(mod, 0755), 0);
    snprintf(secret, sizeof secret, "%s/secret", tmp_root);
    write_file(secret, "top secret", 0600);
    char script[1024];
    snprintf(script, sizeof script,
             "if [ \"$1\" = 1 ]; then touch /usr/rz-x 2>/dev/null && u=yes"
             " || u=no; else u=no; fi;"
             "touch '%s/x' 2>/dev/null && m=yes || m=no;"
             "test -e '%s' && s=yes || s=no;"
             "echo data > here && w=yes || w=no;"
             "n=$(grep -c : /proc/net/dev);"
             "printf '{\"usr\":\"%%s\",\"mod\":\"%%s\",\"secret\":\"%%s\","
             "\"scratch\":\"%%s\",\"ifaces\":%%d}' $u $m $s $w $n",
             mod, secret);
    for (int sandbox = 1; sandbox >= 0; sandbox--) {
        /* Only the sandboxed run tries to write to /usr (tests may run as
         * root, where the unsandboxed write would succeed). */
        const char *argv[] = { "sh", "-c", script, "sh", sandbox ? "1" : "0",
                               NULL };
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = sandbox;
        o.argv = argv;
        o.module_dir = mod;
        o.scratch_parent = tmp_root;
        rz_proc *p = NULL;
        assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
        finish(p);
        cJSON *j = outputs_of(p);
        assert_string_equal(str_field(j, "usr"), "no");
        assert_string_equal(str_field(j, "scratch"), "yes");
        if (sandbox) {
            assert_string_equal(str_field(j, "mod"), "no");
            assert_string_equal(str_field(j, "secret"), "no");
            assert_int_equal((int)num_field(j, "ifaces"), 1);   /* lo */
        } else {
            assert_string_equal(str_field(j, "mod"), "yes");
            assert_string_equal(str_field(j, "secret"), "yes");
        }
        cJSON_Delete(j);
        rz_proc_free(p);
    }
}

static void test_sandbox_network_and_exit(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.network = 1;
    rz_proc *p = run_sh(&o, "echo bad >&2; exit 4");
    assert_int_equal(rz_proc_exit_code(p), 4);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(log, "bad\n", 4);
    rz_proc_free(p);
    p = run_sh(&o, "kill -TERM $$");
    assert_int_equal(rz_proc_exit_code(p), -15);
    rz_proc_free(p);
    check_timeout_kills_group(1);
    assert_true(dir_is_empty(tmp_root));
}


/* ---- the local runner ---- */

typedef struct rec_event {
    rz_event_kind kind;
    size_t step;
    uint32_t attempt;
    uint64_t elapsed_ms;
    char *message;
} rec_event;

typedef struct recorder {
    rec_event ev[256];
    size_t n;
    volatile int *cancel;        /* set when a step starts, if non-NULL */
} recorder;

static void record(const rz_event *e, void *ud)
{
    recorder *r = ud;
    assert_non_null(e->run);
    if (r->n < RZ_ARRAY_LEN(r->ev)) {
        rec_event *x = &r->ev[r->n++];
        x->kind = e->kind;
        x->step = e->step;
        x->attempt = e->attempt;
        x->elapsed_ms = e->elapsed_ms;
        x->message = rz__strdup(e->message);
    }
    if (r->cancel && e->kind == RZ_EVENT_STEP_STARTED)
        *r->cancel = 1;
}

static void recorder_free(recorder *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[i].message);
    r->n = 0;
}

static size_t count_events(const recorder *r, rz_event_kind kind,
                           size_t step)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->ev[i].kind == kind && (step == RZ_NPOS || r->ev[i].step == step))
            n++;
    return n;
}

static const rec_event *find_event(const recorder *r, rz_event_kind kind,
                                   size_t step)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ev[i].kind == kind && r->ev[i].step == step)
            return &r->ev[i];
    return NULL;
}

/* Test-only modules (sh, no python needed) in <tmp_root>/modules. */
/* A container engine that is certainly not there, and the reason a docker
 * step gets then: it names the socket and how to point at another. */
#define NO_ENGINE "unix:///nonexistent/rz-test-engine.sock"
static void assert_no_engine(const char *reason)
{
    static const char head[] = "adapter 'docker' is not available on this "
                               "machine: no container engine answers at "
                               "/nonexistent/rz-test-engine.sock";
    assert_non_null(reason);
    assert_int_equal(strncmp(reason, head, sizeof head - 1), 0);
    assert_non_null(strstr(reason, "--container-host"));
}

static void add_module(const char *reg, const char *id, const char *adapter,
                       const char *script)
{
    char dir[400], path[450];
    snprintf(dir, sizeof dir, "%s/%s", reg, id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", dir);
    char json[1200];
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"version\":\"1.0.0\",\"name\":\"%s\","
             "\"inputs\":[{\"name\":\"after\",\"type\":\"any\","
             "\"required\":false}],"
             "\"outputs\":[{\"name\":\"value\",\"type\":\"any\"}],"
             "\"config\":{\"type\":\"object\"},"
             "\"requirements\":{\"adapter\":\"%s\",\"memory_mb\":256},"
             "\"exec\":{\"adapter\":\"%s\"%s}}",
             id, id, adapter, adapter,
             strcmp(adapter, "process") == 0
                 ? ",\"command\":[\"sh\",\"./run.sh\"]" : ",\"image\":\"x\"");
    write_file(path, json, 0644);
    if (script) {
        snprintf(path, sizeof path, "%s/run.sh", dir);
        write_file(path, script, 0755);
    }
}

static rz_registry *test_registry(void)
{
    char reg[300], examples[300];
    snprintf(reg, sizeof reg, "%s/modules", tmp_root);
    assert_int_equal(mkdir(reg, 0755), 0);
    add_module(reg, "fail", "process",
               "cat >/dev/null; echo 'getting ready' >&2;"
               " echo 'boom: the widget broke' >&2; exit 3\n");
    add_module(reg, "env", "process",
               "cat >/dev/null; printf '{\"value\":\"%s|%s|%s|%s\"}'"
               " \"$RZ_RUN_ID\" \"$RZ_STEP_ID\" \"$RZ_ATTEMPT\""
               " \"${RZ_CRED_API-none}\"\n");
    add_module(reg, "hang", "process",
               "cat >/dev/null; sleep 61.25 & sleep 61.25\n");
    add_module(reg, "nap", "process",
               "cat >/dev/null; sleep 1.5; echo '{\"value\":1}'\n");
    add_module(reg, "boxed", "docker", NULL);
    /* The scratch folder as a step finds it: its path, every entry, and
     * whether in/request.json is what came on stdin. */
    add_module(reg, "look", "process",
               "req=$(cat); cd \"$HOME\" || exit 1;"
               " same=no; [ \"$req\" = \"$(cat in/request.json)\" ] && same=yes;"
               " [ -s out/outputs.json ] && same=dirty;"
               " printf '{\"value\":\"%s|%s|%s\"}' \"$HOME\""
               " \"$(find . | sort | tr '\\n' ' ')\" \"$same\"\n");
    /* Leaves its folder in a state no step may find: an extra file, a
     * request with a second name outside, unreadable. */
    add_module(reg, "litter", "process",
               "cat >/dev/null; cd \"$HOME\"; echo junk > junk;"
               " ln in/request.json ../leak; chmod 0 in/request.json;"
               " echo '{\"value\":1}'\n");
    /* Writes all over its folder: as a sandboxed step, only its outputs
     * file is the host's. */
    add_module(reg, "scrawl", "process",
               "cat >/dev/null; cd \"$HOME\"; echo junk > junk;"
               " echo junk > in/junk; echo '{\"value\":2}' > out/outputs.json;"
               " echo '{\"value\":1}'\n");
    add_module(reg, "talk", "process",
               "cat >/dev/null; echo 'first line' >&2; sleep 1;"
               " echo 'second line' >&2; echo '{\"value\":1}'\n");
    snprintf(examples, sizeof examples, "%s/examples/modules",
             RZ_SOURCE_ROOT);
    rz_registry *r = NULL;
    assert_int_equal(rz_registry_new(&r), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, examples, NULL), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, reg, NULL), RZ_OK);
    return r;
}

static rz_flow *load_flow(const rz_registry *reg, const char *example,
                          const char *yaml)
{
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc;
    if (example) {
        char path[400];
        snprintf(path, sizeof path, "%s/examples/flows/%s", RZ_SOURCE_ROOT,
                 example);
        rc = rz_flow_load(&f, path, RZ_FORMAT_AUTO, d);
    } else {
        rc = rz_flow_parse(&f, yaml, strlen(yaml), RZ_FORMAT_YAML,
                           "test.yaml", d);
    }
    if (rc == RZ_OK)
        rc = rz_flow_validate(f, reg, d);
    if (rc != RZ_OK) {
        char *text = NULL;
        (void)!rz_diags_to_text(d, &text);   /* diagnostics of a failure */
        fail_msg("%s: %s", example ? example : "inline flow",
                 text ? text : rz_error_last()->message);
    }
    rz_diags_free(d);
    return f;
}

static rz_run *run_flow(const rz_flow *f, rz_runner_opts *o, recorder *rec)
{
    o->on_event = record;
    o->userdata = rec;
    rz_run *run = NULL;
    int rc = rz_runner_run(&run, f, o);
    if (rc != RZ_OK)
        fail_msg("rz_runner_run: %s", rz_error_last()->message);
    assert_non_null(run);
    assert_int_equal(rz_run_done(run), 1);
    assert_int_equal(count_events(rec, RZ_EVENT_RUN_FINISHED, RZ_NPOS), 1);
    assert_int_equal(rec->ev[rec->n - 1].kind, RZ_EVENT_RUN_FINISHED);
    return run;
}

static cJSON *step_outputs(const rz_run *run, const rz_flow *f,
                           const char *id)
{
    size_t i = rz_flow_step_find(f, id);
    assert_int_not_equal(i, RZ_NPOS);
    char *s = NULL;
    assert_int_equal(rz_run_step_outputs(run, i, &s), RZ_OK);
    cJSON *j = cJSON_Parse(s);
    rz_free(s);
    assert_non_null(j);
    return j;
}

static rz_step_state state_of(const rz_run *run, const rz_flow *f,
                              const char *id)
{
    size_t i = rz_flow_step_find(f, id);
    assert_int_not_equal(i, RZ_NPOS);
    return rz_run_step_state(run, i);
}

static int count_of(const cJSON *counts, const char *word)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(counts, word);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static void test_runner_wordcount(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "wordcount.yaml", NULL);
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.inputs_json = "{\"text\":\"To be, or not to be: that is the question."
                    " To be!\"}";
    o.run_id = "wc-1";
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    assert_string_equal(rz_run_id(run), "wc-1");
    size_t n = rz_flow_step_count(f);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rz_run_step_state(run, i), RZ_STEP_SUCCEEDED);
        assert_int_equal(count_events(&rec, RZ_EVENT_STEP_STARTED, i), 1);
        assert_int_equal(count_events(&rec, RZ_EVENT_STEP_SUCCEEDED, i), 1);
    }
    cJSON *m = step_outputs(run, f, "merge");
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(m, "counts");
    assert_int_equal(count_of(counts, "to"), 3);
    assert_int_equal(count_of(counts, "be"), 3);
    assert_int_equal(count_of(counts, "question"), 1);
    assert_int_equal(count_of(counts, "or"), 1);
    assert_int_equal((int)num_field(m, "total"), 12);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(m, "top");
    assert_true(cJSON_IsArray(top));
    assert_string_equal(str_field(cJSON_GetArrayItem(top, 0), "word"), "be");
    assert_string_equal(str_field(cJSON_GetArrayItem(top, 1), "word"), "to");
    cJSON_Delete(m);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);

    /* The builder format of the same pipeline, default text. */
    f = load_flow(reg, "wordcount.json", NULL);
    o.inputs_json = NULL;
    o.run_id = NULL;
    run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    m = step_outputs(run, f, "merge");
    top = cJSON_GetObjectItemCaseSensitive(m, "top");
    assert_int_equal(cJSON_GetArraySize(top), 3);
    assert_string_equal(str_field(cJSON_GetArrayItem(top, 0), "word"), "the");
    assert_int_equal((int)num_field(cJSON_GetArrayItem(top, 0), "count"), 4);
    assert_int_equal((int)num_field(m, "total"), 13);
    cJSON_Delete(m);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_flaky(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "flaky.yaml", NULL);
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    size_t u = rz_flow_step_find(f, "unreliable");
    assert_int_equal(rz_run_step_attempts(run, u), 3);
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_STARTED, u), 3);
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_RETRYING, u), 2);
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_FAILED, u), 0);
    const rec_event *retry = find_event(&rec, RZ_EVENT_STEP_RETRYING, u);
    assert_int_equal(retry->attempt, 1);
    assert_non_null(retry->message);
    assert_non_null(strstr(retry->message, "exit status 1: flaky: attempt 1"));
    cJSON *out = step_outputs(run, f, "unreliable");
    assert_int_equal((int)num_field(out, "attempt"), 3);
    cJSON_Delete(out);
    out = step_outputs(run, f, "report");
    assert_string_equal(str_field(out, "message"), "succeeded on attempt 3");
    cJSON_Delete(out);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* A clock that moves 1 ms at every read: every backoff's due falls, for
 * one of the delays tried, between two reads of the runner's loop (its
 * tick's and its poll's). */
static _Atomic uint64_t stepped_ms = 1000000;

static uint64_t stepping_clock(void)
{
    return stepped_ms++;
}

/* A retry whose backoff ends after the engine's tick but by the runner's
 * next poll is the engine's to start: the run it shares with the runner
 * must not be promoted behind its back (the step was READY with no job and
 * no timer: "cannot make progress", about 1 run in 100 at initial_ms 1). */
static void test_runner_retry_due_between_reads(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz__test_now_ms = stepping_clock;
    for (unsigned delay = 1; delay <= 12; delay++) {
        char yaml[400];
        snprintf(yaml, sizeof yaml,
                 "flux: 1\nname: retry\nsteps:\n  unreliable:\n"
                 "    module: flaky@1\n    config: {fail_times: 1}\n"
                 "    retry: {max_attempts: 2, initial_ms: %u}\n"
                 "  after:\n    module: echo@1\n    needs: [unreliable]\n"
                 "    inputs: {message: done}\n", delay);
        rz_flow *f = load_flow(reg, NULL, yaml);
        recorder rec = { .n = 0 };
        rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
        rz_run *run = NULL;
        o.on_event = record;
        o.userdata = &rec;
        int rc = rz_runner_run(&run, f, &o);
        if (rc != RZ_OK)
            rz__test_now_ms = NULL;
        if (rc != RZ_OK)
            fail_msg("initial_ms %u: %s", delay, rz_error_last()->message);
        assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
        assert_int_equal(rz_run_step_attempts(run, rz_flow_step_find(f, "unreliable")), 2);
        recorder_free(&rec);
        rz_run_free(run);
        rz_flow_free(f);
    }
    rz__test_now_ms = NULL;
    rz_registry_free(reg);
}

static void test_runner_branch(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "branch.yaml", NULL);
    static const char *const inputs[] = { NULL, "{\"value\":3}" };
    static const char *const ran[] = { "high", "low" };
    static const char *const skipped[] = { "low", "high" };
    for (size_t k = 0; k < 2; k++) {
        recorder rec = { .n = 0 };
        rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
        o.inputs_json = inputs[k];
        rz_run *run = run_flow(f, &o, &rec);
        assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
        size_t r = rz_flow_step_find(f, ran[k]);
        size_t s = rz_flow_step_find(f, skipped[k]);
        assert_int_equal(rz_run_step_state(run, r), RZ_STEP_SUCCEEDED);
        assert_int_equal(rz_run_step_state(run, s), RZ_STEP_SKIPPED);
        assert_int_equal(count_events(&rec, RZ_EVENT_STEP_SKIPPED, s), 1);
        assert_int_equal(count_events(&rec, RZ_EVENT_STEP_STARTED, s), 0);
        assert_int_equal(count_events(&rec, RZ_EVENT_STEP_SUCCEEDED, r), 1);
        recorder_free(&rec);
        rz_run_free(run);
    }
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_failure(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: failing\nsteps:\n"
        "  broken:\n    module: fail\n"
        "  after:\n    module: echo\n    needs: [broken]\n"
        "  boxed:\n    module: boxed\n"
        "  fine:\n    module: env\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.container_host = NO_ENGINE;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_FAILED);
    assert_int_equal(state_of(run, f, "broken"), RZ_STEP_FAILED);
    assert_int_equal(state_of(run, f, "after"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(run, f, "boxed"), RZ_STEP_FAILED);
    assert_int_equal(state_of(run, f, "fine"), RZ_STEP_SUCCEEDED);
    size_t b = rz_flow_step_find(f, "broken");
    const rec_event *e = find_event(&rec, RZ_EVENT_STEP_FAILED, b);
    assert_non_null(e);
    assert_string_equal(e->message, "exit status 3: boom: the widget broke");
    assert_string_equal(rz_run_step_error(run, b),
                        "exit status 3: boom: the widget broke");
    size_t x = rz_flow_step_find(f, "boxed");
    assert_no_engine(rz_run_step_error(run, x));
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_SKIPPED,
                                  rz_flow_step_find(f, "after")), 1);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_env(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: env\nsteps:\n  probe:\n    module: env\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    const char *env[] = { "RZ_CRED_API=s3cret", NULL };
    o.env = env;
    o.run_id = "run-42";
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    cJSON *out = step_outputs(run, f, "probe");
    assert_string_equal(str_field(out, "value"), "run-42|probe|1|s3cret");
    cJSON_Delete(out);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* A step's log lines reach the events as they come, not at its end. */
static void test_runner_live_log(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: talk\nsteps:\n  chat:\n    module: talk\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    size_t first = RZ_NPOS, second = RZ_NPOS, done = RZ_NPOS;
    for (size_t i = 0; i < rec.n; i++) {
        const rec_event *e = &rec.ev[i];
        if (e->kind == RZ_EVENT_STEP_LOG && strstr(e->message, "first line"))
            first = i;
        if (e->kind == RZ_EVENT_STEP_LOG && strstr(e->message, "second line"))
            second = i;
        if (e->kind == RZ_EVENT_STEP_SUCCEEDED)
            done = i;
    }
    assert_true(first != RZ_NPOS && second != RZ_NPOS && done != RZ_NPOS);
    assert_true(first < second && second < done);
    /* The module sleeps 1 s between its lines. */
    assert_true(rec.ev[done].elapsed_ms >= rec.ev[first].elapsed_ms + 500);
    assert_string_equal(rec.ev[first].message, "first line");
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* Overlap is read from the timestamps the steps record, not from timing
 * the run, so a loaded machine cannot make this flaky. */
static void check_overlap(const rz_registry *reg, unsigned jobs,
                          bool want_overlap)
{
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: par\nsteps:\n"
        "  a:\n    module: sleep\n    config: { seconds: 0.3 }\n"
        "  b:\n    module: sleep\n    config: { seconds: 0.3 }\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.jobs = jobs;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    cJSON *a = step_outputs(run, f, "a"), *b = step_outputs(run, f, "b");
    double a0 = num_field(a, "started"), a1 = num_field(a, "finished");
    double b0 = num_field(b, "started"), b1 = num_field(b, "finished");
    bool overlap = a0 < b1 && b0 < a1;
    assert_true(overlap == want_overlap);
    cJSON_Delete(a);
    cJSON_Delete(b);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
}

static void test_runner_parallel(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    check_overlap(reg, 2, true);
    check_overlap(reg, 1, false);
    rz_registry_free(reg);
}

/* A step's timeout counts from when it starts, not while it waits for a
 * free slot: with one job, `quick` (1 s) waits for `nap` (1.5 s) and still
 * succeeds, started only after `nap` finished. */
static void test_runner_wait_is_not_timed(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: wait\nsteps:\n"
        "  nap:\n    module: nap\n"
        "  quick:\n    module: env\n    timeout_s: 1\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.jobs = 1;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    size_t nap = rz_flow_step_find(f, "nap"), quick = rz_flow_step_find(f, "quick");
    assert_int_equal(rz_run_step_attempts(run, quick), 1);
    size_t nap_done = RZ_NPOS, quick_started = RZ_NPOS;
    for (size_t i = 0; i < rec.n; i++) {
        if (rec.ev[i].kind == RZ_EVENT_STEP_SUCCEEDED && rec.ev[i].step == nap)
            nap_done = i;
        if (rec.ev[i].kind == RZ_EVENT_STEP_STARTED && rec.ev[i].step == quick)
            quick_started = i;
    }
    assert_int_not_equal(nap_done, RZ_NPOS);
    assert_int_not_equal(quick_started, RZ_NPOS);
    assert_true(quick_started > nap_done);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_timeout(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: slow\nsteps:\n"
        "  slow:\n    module: hang\n    timeout_s: 1\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_FAILED);
    assert_int_equal(state_of(run, f, "slow"), RZ_STEP_FAILED);
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_FAILED, 0), 1);
    assert_true(process_gone_soon("sleep 61.25"));
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_cancel(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: cancel\nsteps:\n"
        "  slow:\n    module: hang\n"
        "  later:\n    module: echo\n    needs: [slow]\n");
    volatile int cancel = 0;
    recorder rec = { .n = 0, .cancel = &cancel };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.cancel = &cancel;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_CANCELLED);
    assert_int_not_equal(state_of(run, f, "slow"), RZ_STEP_SUCCEEDED);
    assert_int_equal(state_of(run, f, "later"), RZ_STEP_CANCELLED);
    assert_int_equal(count_events(&rec, RZ_EVENT_STEP_CANCELLED,
                                  rz_flow_step_find(f, "later")), 1);
    assert_true(process_gone_soon("sleep 61.25"));
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static const char *look_of(const rz_run *run, const rz_flow *f,
                           const char *id, char *buf, size_t len)
{
    cJSON *out = step_outputs(run, f, id);
    snprintf(buf, len, "%s", str_field(out, "value"));
    cJSON_Delete(out);
    return buf;
}

/* One run of f with TMPDIR = tmp and options *o; it must succeed. */
static rz_run *run_with_tmp(const rz_flow *f, rz_runner_opts *o, const char *tmp)
{
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    assert_int_equal(setenv("TMPDIR", tmp, 1), 0);
    recorder rec = { .n = 0 };
    rz_run *run = run_flow(f, o, &rec);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    recorder_free(&rec);
    return run;
}

static void run_in_tmp(const rz_flow *f, const char *tmp)
{
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    rz_run_free(run_with_tmp(f, &o, tmp));
}

/* Steps `ids` (`look` modules) each found the protocol's clean layout, in
 * a folder under `parent`: what each saw, into seen[i]. */
static void looked_clean(const rz_run *run, const rz_flow *f, const char *const *ids,
                         size_t n, char (*seen)[600], const char *parent)
{
    const char *clean = "|. ./in ./in/request.json ./out ./out/outputs.json |yes";
    for (size_t i = 0; i < n; i++) {
        look_of(run, f, ids[i], seen[i], sizeof seen[i]);
        assert_non_null(strstr(seen[i], clean));
        assert_int_equal(strncmp(seen[i], parent, strlen(parent)), 0);
    }
}

/* How many steps' folders (rz-*) are in `parent`. */
static int step_folders_in(const char *parent)
{
    DIR *d = opendir(parent);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "rz-", 3) == 0;
    closedir(d);
    return n;
}

/* Unsandboxed steps reuse the folders of finished ones: every step finds
 * exactly the protocol's layout, whatever the step before left (a folder
 * in any other state is replaced); nothing stays behind after the run. */
static void test_runner_scratch_reuse(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: reuse\nsteps:\n"
        "  a:\n    module: look\n"
        "  b:\n    module: look\n    needs: [a]\n"
        "  c:\n    module: litter\n    needs: [b]\n"
        "  d:\n    module: look\n    needs: [c]\n"
        "  e:\n    module: look\n    needs: [d]\n");
    char parent[300];
    snprintf(parent, sizeof parent, "%s/scratch", tmp_root);
    assert_int_equal(mkdir(parent, 0700), 0);
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.sandbox = 0;
    o.jobs = 1;
    rz_run *run = run_with_tmp(f, &o, parent);
    char seen[4][600];
    const char *const ids[] = { "a", "b", "d", "e" };
    looked_clean(run, f, ids, 4, seen, parent);
    /* One slot: b had a's folder, refilled; d had a new one after c's
     * litter, and e had d's. */
    size_t len = strcspn(seen[0], "|") + 1;
    assert_int_equal(strncmp(seen[0], seen[1], len), 0);
    assert_int_not_equal(strncmp(seen[1], seen[2], len), 0);
    len = strcspn(seen[2], "|") + 1;
    assert_int_equal(strncmp(seen[2], seen[3], len), 0);
    /* Only the engine's folder may remain until its cleanup; no rz-*. */
    assert_int_equal(step_folders_in(parent), 0);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* Sandboxed steps reuse folders too: what a step writes lands in its own
 * tmpfs but for its outputs file, which the next step finds empty, in the
 * same folder. */
static void test_runner_scratch_fresh_sandboxed(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: reuse\nsteps:\n"
        "  a:\n    module: look\n"
        "  b:\n    module: litter\n    needs: [a]\n"
        "  c:\n    module: look\n    needs: [b]\n"
        "  d:\n    module: scrawl\n    needs: [c]\n"
        "  e:\n    module: look\n    needs: [d]\n");
    char parent[300];
    snprintf(parent, sizeof parent, "%s/scratch-sbx", tmp_root);
    assert_int_equal(mkdir(parent, 0700), 0);
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.sandbox = 1;
    o.jobs = 1;
    rz_run *run = run_with_tmp(f, &o, parent);
    char seen[3][600];
    const char *const ids[] = { "a", "c", "e" };
    looked_clean(run, f, ids, 3, seen, parent);
    /* Sandboxed steps never share a folder: a step with network could pass
     * a descriptor of its request or outputs file to a step that outlives
     * it, which would then read or rewrite the next step's in place. */
    size_t len = strcspn(seen[0], "|") + 1;
    assert_int_not_equal(strncmp(seen[0], seen[1], len), 0);
    assert_int_not_equal(strncmp(seen[0], seen[2], len), 0);
    assert_int_not_equal(strncmp(seen[1], seen[2], strcspn(seen[1], "|") + 1), 0);
    assert_int_equal(step_folders_in(parent), 0);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

static void test_runner_invalid(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "branch.yaml", NULL);
    rz_run *run = (rz_run *)state;
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    assert_int_equal(rz_runner_run(NULL, f, &o), RZ_EINVAL);
    assert_int_equal(rz_runner_run(&run, NULL, &o), RZ_EINVAL);
    assert_null(run);
    o.version = 0;
    assert_int_equal(rz_runner_run(&run, f, &o), RZ_EINVAL);
    o.version = RZ_RUNNER_OPTS_VERSION;
    o.inputs_json = "{\"value\": ";   /* malformed inputs */
    assert_true(rz_runner_run(&run, f, &o) < 0);
    assert_null(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* A pid that no process has now: a child that has exited and been reaped. */
static long gone_pid(void)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    return (long)child;
}

/* An engine folder's name: rhizos-run-<pid namespace>-<pid>-<suffix>. */
static void make_dir_ns(const char *parent, unsigned long long ns, long pid,
                        const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/rhizos-run-%llx-%ld-%s", parent, ns, pid, suffix);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void make_dir(const char *parent, const char *suffix, long pid,
                     char *out, size_t cap)
{
    make_dir_ns(parent, rz__exec_pidns(), pid, suffix, out, cap);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The engine folder of a run killed with SIGKILL is removed by the next
 * run: only folders of processes that are gone (this one's parent is
 * alive: its folder stays), and only folders. Engine folders live in
 * TMPDIR/rhizos-runs-UID, which is all a run reads; folders that runs made
 * in TMPDIR itself (before that folder existed) go when it is made. */
static void test_runner_removes_stale_folders(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "branch.yaml", NULL);
    char tmp[400], parent[500], dead[600], alive[600], file[600], inner[700];
    snprintf(tmp, sizeof tmp, "%s/stale", tmp_root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(parent, sizeof parent, "%s/rhizos-runs-%ld", tmp, (long)geteuid());

    /* 1. Folders in TMPDIR itself, from before the runs' folder. */
    make_dir(tmp, "abcdef", gone_pid(), dead, sizeof dead);
    snprintf(inner, sizeof inner, "%s/ledger", dead);
    assert_int_equal(mkdir(inner, 0700), 0);
    make_dir(tmp, "abcdef", (long)getppid(), alive, sizeof alive);
    snprintf(file, sizeof file, "%s/rhizos-run-%llx-%ld-file00", tmp, rz__exec_pidns(),
             gone_pid());
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    run_in_tmp(f, tmp);
    assert_false(exists(dead));
    assert_true(exists(alive));
    assert_true(exists(file));
    struct stat st;
    assert_int_equal(lstat(parent, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 077, 0);
    assert_int_equal(st.st_uid, geteuid());

    /* 2. In the runs' folder, where the run made and removed its own. */
    DIR *d = opendir(parent);
    assert_non_null(d);
    const struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 0);
    make_dir(parent, "ghijkl", gone_pid(), dead, sizeof dead);
    snprintf(inner, sizeof inner, "%s/engine", dead);
    assert_int_equal(mkdir(inner, 0700), 0);
    char alive2[600], later[600];
    make_dir(parent, "ghijkl", (long)getppid(), alive2, sizeof alive2);
    /* a folder made in TMPDIR after the runs' folder exists is not read */
    make_dir(tmp, "mnopqr", gone_pid(), later, sizeof later);
    run_in_tmp(f, tmp);
    assert_false(exists(dead));
    assert_true(exists(alive2));
    assert_true(exists(alive));
    assert_true(exists(later));

    /* 3. A runs' folder name taken by something else (here a file): the
     * run works in TMPDIR itself and sweeps it, as before. */
    char tmp2[400], taken[500];
    snprintf(tmp2, sizeof tmp2, "%s/stale2", tmp_root);
    assert_int_equal(mkdir(tmp2, 0700), 0);
    snprintf(taken, sizeof taken, "%s/rhizos-runs-%ld", tmp2, (long)geteuid());
    fp = fopen(taken, "w");
    assert_non_null(fp);
    fclose(fp);
    make_dir(tmp2, "stuvwx", gone_pid(), dead, sizeof dead);
    run_in_tmp(f, tmp2);
    assert_false(exists(dead));
    assert_int_equal(lstat(taken, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    rz_flow_free(f);
    rz_registry_free(reg);
}


/* An engine folder of another pid namespace (a container sharing the
 * folder), whose pid means nothing here, and one named without a
 * namespace (older versions) stay; a dead one of ours goes. */
static void test_runner_keeps_other_namespaces_folders(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, "branch.yaml", NULL);
    char tmp[400], parent[500], dead[600], other_ns[600], no_ns[600];
    snprintf(tmp, sizeof tmp, "%s/stale-ns", tmp_root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(parent, sizeof parent, "%s/rhizos-runs-%ld", tmp, (long)geteuid());
    assert_int_equal(mkdir(parent, 0700), 0);
    make_dir(parent, "abcdef", gone_pid(), dead, sizeof dead);
    make_dir_ns(parent, rz__exec_pidns() + 1, gone_pid(), "abcdef", other_ns,
                sizeof other_ns);
    snprintf(no_ns, sizeof no_ns, "%s/rhizos-run-%ld-abcdef", parent, gone_pid());
    assert_int_equal(mkdir(no_ns, 0700), 0);
    run_in_tmp(f, tmp);
    assert_false(exists(dead));
    assert_true(exists(other_ns));
    assert_true(exists(no_ns));
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* With an open store (rz_runner_opts.store) the run is recorded there, as
 * with data_dir, step cache and all, and the store stays open: the
 * caller's, also read and written by the next run. */
static void test_runner_records_in_open_store(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: rec\nsteps:\n  only:\n    module: env\n");
    char data[400];
    snprintf(data, sizeof data, "%s/open-store", tmp_root);
    assert_int_equal(rz_fs_mkdirs(data, 0700), RZ_OK);
    rz_store *st = NULL;
    assert_int_equal(rz_store_open(&st, data), RZ_OK);
    for (int i = 0; i < 2; i++) {
        recorder rec = { .n = 0 };
        rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
        o.run_id = i ? "open-2" : "open-1";
        o.store = st;
        rz_run *run = run_flow(f, &o, &rec);
        assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
        assert_int_equal(count_events(&rec, RZ_EVENT_NOTICE, RZ_NPOS), 0);
        rz_run_free(run);
        recorder_free(&rec);
        char *json = NULL;
        assert_int_equal(rz_store_run_get(st, o.run_id, &json), RZ_OK);
        cJSON *doc = cJSON_Parse(json);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status")),
                            "succeeded");
        assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "step_cache")));
        cJSON_Delete(doc);
        rz_free(json);
    }
    rz_store_close(st);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* With data_dir the run is on record (finished); a folder that cannot hold
 * a store gives a notice and the store's error, with the run still out. */
static void test_runner_records_run(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: rec\nsteps:\n  only:\n    module: env\n");
    char data[400];
    snprintf(data, sizeof data, "%s/data", tmp_root);
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.run_id = "rec-1";
    o.data_dir = data;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    assert_int_equal(count_events(&rec, RZ_EVENT_NOTICE, RZ_NPOS), 0);
    rz_run_free(run);
    rz_store *st = NULL;
    char *json = NULL;
    assert_int_equal(rz_store_open(&st, data), RZ_OK);
    assert_int_equal(rz_store_run_get(st, "rec-1", &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(doc, "status");
    assert_true(cJSON_IsString(status));
    assert_string_equal(status->valuestring, "succeeded");
    cJSON_Delete(doc);
    rz_free(json);
    rz_store_close(st);
    recorder_free(&rec);

    char file[400];
    snprintf(file, sizeof file, "%s/plain-file", tmp_root);
    write_file(file, "x", 0644);
    recorder rec2 = { .n = 0 };
    o.run_id = "rec-2";
    o.data_dir = file;
    o.on_event = record;
    o.userdata = &rec2;
    run = NULL;
    int rc = rz_runner_run(&run, f, &o);
    assert_true(rc < 0);
    assert_non_null(run);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    assert_non_null(strstr(rz_error_last()->message, "run not recorded in"));
    const rec_event *e = find_event(&rec2, RZ_EVENT_NOTICE, RZ_NPOS);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "run not recorded in"));
    recorder_free(&rec2);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* What another process (a reader of the store elsewhere) finds in the
 * store at `data`: run `id`'s first record (finished_ms 0), tried up to
 * `tries` times 10 ms apart. Fails the test when it does not. */
static void going_record_found_apart(const char *data, const char *id, int tries)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < tries; i++) {
            rz_store *st = NULL;
            char *json = NULL;
            int ok = 0;
            if (rz_store_open(&st, data) == RZ_OK &&
                rz_store_run_get(st, id, &json) == RZ_OK) {
                cJSON *doc = cJSON_Parse(json);
                const cJSON *fin = cJSON_GetObjectItemCaseSensitive(doc, "finished_ms");
                ok = cJSON_IsNumber(fin) && fin->valuedouble == 0 ? 1 : 2;
                cJSON_Delete(doc);
            }
            rz_free(json);
            rz_store_close(st);
            if (ok)
                _exit(ok == 1 ? 0 : 2);
            if (i + 1 < tries)
                usleep(10000);
        }
        _exit(1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* While the run goes another process sees its first record, waited for up
 * to 5 s since it is written on a thread of its own while the first steps
 * run. */
static void first_record_seen(const rz_event *e, void *ud)
{
    if (e->kind == RZ_EVENT_STEP_SUCCEEDED)
        going_record_found_apart(ud, "first-1", 500);
}

/* The run is on record while it goes (its first record, before the final
 * one), and finished afterwards. */
static void test_runner_first_record(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: first\nsteps:\n  a:\n    module: env\n"
        "  b:\n    module: env\n    needs: [a]\n");
    char data[400];
    snprintf(data, sizeof data, "%s/first-data", tmp_root);
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.run_id = "first-1";
    o.data_dir = data;
    o.jobs = 1;
    o.on_event = first_record_seen;
    o.userdata = data;
    rz_run *run = NULL;
    assert_int_equal(rz_runner_run(&run, f, &o), RZ_OK);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    rz_run_free(run);
    rz_store *st = NULL;
    char *json = NULL;
    assert_int_equal(rz_store_open(&st, data), RZ_OK);
    assert_int_equal(rz_store_run_get(st, "first-1", &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(doc, "status");
    assert_string_equal(status->valuestring, "succeeded");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(doc, "finished_ms");
    assert_true(cJSON_IsNumber(fin) && fin->valuedouble > 0);
    cJSON_Delete(doc);
    rz_free(json);
    rz_store_close(st);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* RZ_EVENT_RUN_RECORDED: told once, and by then another process reading
 * the store finds the run at its first try (its first record: finished_ms
 * 0), so a caller that tells the run's id then leaves no one to wait. */
typedef struct told {
    const char *data;
    int n;
} told;

static void found_when_told(const rz_event *e, void *ud)
{
    told *t = ud;
    if (e->kind != RZ_EVENT_RUN_RECORDED)
        return;
    t->n++;
    assert_null(e->message);
    going_record_found_apart(t->data, "told-1", 1);
}

static void test_runner_tells_when_recorded(void **state)
{
    (void)state;
    rz_registry *reg = test_registry();
    rz_flow *f = load_flow(reg, NULL,
        "flux: 1\nname: told\nsteps:\n  a:\n    module: env\n"
        "  b:\n    module: env\n    needs: [a]\n");
    char data[400];
    snprintf(data, sizeof data, "%s/told-data", tmp_root);
    told t = { data, 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.run_id = "told-1";
    o.data_dir = data;
    o.jobs = 1;
    o.on_event = found_when_told;
    o.userdata = &t;
    rz_run *run = NULL;
    assert_int_equal(rz_runner_run(&run, f, &o), RZ_OK);
    assert_int_equal(t.n, 1);
    rz_run_free(run);
    /* Not recorded: not told. */
    o.data_dir = NULL;
    o.run_id = "told-2";
    run = NULL;
    assert_int_equal(rz_runner_run(&run, f, &o), RZ_OK);
    assert_int_equal(t.n, 1);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* ---- hostile modules against the sandbox's limits (issue 14) ---- */

/* Run `script` sandboxed in a scratch folder this test makes, so what it
 * leaves on the host can be looked at afterwards. */
static rz_proc *run_hostile(const char *script, uint32_t timeout_ms,
                            char *scratch, size_t scratch_len)
{
    static int seq;
    snprintf(scratch, scratch_len, "%s/scratch-%d", tmp_root, ++seq);
    assert_int_equal(mkdir(scratch, 0700), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/out.json", scratch);
    write_file(out, "", 0600);
    const char *argv[] = { "sh", "-c", script, NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.argv = argv;
    o.sandbox = 1;
    o.timeout_ms = timeout_ms;
    rz_proc *p = NULL;
    if (rz__proc_spawn_in(&p, &o, scratch, out, NULL) != RZ_OK)
        fail_msg("spawn: %s", rz_error_last()->message);
    finish(p);
    return p;
}

static bool log_has(const rz_proc *p, const char *needle)
{
    size_t len;
    const char *log = rz_proc_log(p, &len);
    char *s = rz__strndup(log, len);
    bool found = s && strstr(s, needle);
    free(s);
    return found;
}

/* No secret of the host's /etc, no capability, no root. */
static void test_hostile_etc_and_identity(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    char scratch[300];
    rz_proc *p = run_hostile(
        "for f in /etc/shadow /etc/gshadow /etc/sudoers /etc/ssl/private"
        " /etc/ssh /root; do test -e $f && echo \"visible: $f\" >&2; done;"
        "grep -q '^nobody:' /etc/passwd || echo 'no nobody' >&2;"
        "[ $(grep -c . /etc/passwd) -le 3 ] || echo 'host users' >&2;"
        "grep '^Cap\\(Eff\\|Prm\\|Bnd\\)' /proc/self/status |"
        " grep -v '0000000000000000' >&2;"
        "printf '{\"uid\":%d,\"gid\":%d}' $(id -u) $(id -g)",
        0, scratch, sizeof scratch);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    if (len)
        fail_msg("%.*s", (int)len, log);
    cJSON *j = outputs_of(p);
    if (geteuid() == 0 && rz__sbx_helper_pid() > 0) {
        uint32_t first = 0, count = 0;
        rz__sbx_uid_range(&first, &count);
        double uid = num_field(j, "uid");
        assert_true(uid >= first && uid < (double)first + count);
        assert_true(num_field(j, "gid") == uid);
    } else if (geteuid() == 0) {
        assert_int_equal((int)num_field(j, "uid"), 65534);
        assert_int_equal((int)num_field(j, "gid"), 65534);
    } else {
        assert_int_equal((int)num_field(j, "uid"), (int)geteuid());
    }
    cJSON_Delete(j);
    rz_proc_free(p);
}

/* The uid of the live process with `needle` in its command line, as the
 * host sees it (the real uid of /proc/PID/status); -1 if none. */
static long host_uid_of(const char *needle)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    long uid = -1;
    while (uid < 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        if (n <= 0 || (buf[n] = '\0', !strstr(buf, needle)))
            continue;
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "Uid:", 4) == 0)
                uid = strtol(line + 4, NULL, 10);
        if (f)
            fclose(f);
    }
    closedir(d);
    return uid;
}

/* A uid no entry of the host's /etc/passwd or /etc/group has. */
static bool uid_unused_on_host(long uid)
{
    FILE *f = fopen("/etc/passwd", "r");
    struct passwd *pw;
    bool free_id = true;
    while (f && (pw = fgetpwent(f)) != NULL)
        free_id &= (long)pw->pw_uid != uid && (long)pw->pw_gid != uid;
    if (f)
        fclose(f);
    f = fopen("/etc/group", "r");
    struct group *gr;
    while (f && (gr = fgetgrent(f)) != NULL)
        free_id &= (long)gr->gr_gid != uid;
    if (f)
        fclose(f);
    return free_id;
}

/* Run as root, the step is not root on the host either (issue 14): its
 * process, seen from outside every namespace, has an unprivileged uid of
 * its own, which no host user (nobody included: it could read the step's
 * /proc/PID/environ, where secrets are) has, and two steps running at
 * once have different ones. */
static void test_hostile_host_uid(void **state)
{
    (void)state;
    /* Under bwrap as root the step is root outside its user namespace
     * (docs/node.md): only the helper gives it a host uid of its own. */
    if (!rz_sandbox_available() || geteuid() != 0 ||
        rz__sbx_helper_pid() <= 0)
        skip();
    char needle[2][32], script[2][96];
    rz_proc *p[2] = { NULL, NULL };
    for (int k = 0; k < 2; k++) {
        snprintf(needle[k], sizeof needle[k], "sleep 84.%d%d",
                 (int)getpid() % 1000, k);
        snprintf(script[k], sizeof script[k], "%s; echo '{}'", needle[k]);
        const char *argv[] = { "sh", "-c", script[k], NULL };
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = 1;
        o.argv = argv;
        o.scratch_parent = tmp_root;
        assert_int_equal(rz_proc_spawn(&p[k], &o), RZ_OK);
    }
    long uid[2] = { -1, -1 };
    for (int i = 0; i < 250 && (uid[0] < 0 || uid[1] < 0); i++) {
        for (int k = 0; k < 2; k++)
            if (uid[k] < 0)
                uid[k] = host_uid_of(needle[k]);
        if (uid[0] < 0 || uid[1] < 0)
            sleep_ms(20);
    }
    for (int k = 0; k < 2; k++) {
        rz_proc_kill(p[k]);
        finish(p[k]);
        rz_proc_free(p[k]);
    }
    for (int k = 0; k < 2; k++) {
        assert_true(uid[k] > 0);
        assert_true(uid[k] != 65534);
        if (!uid_unused_on_host(uid[k]))
            fail_msg("step uid %ld is a host user's", uid[k]);
        if (rz__sbx_helper_pid() > 0) {
            uint32_t first = 0, count = 0;
            rz__sbx_uid_range(&first, &count);
            assert_true(uid[k] >= (long)first &&
                        uid[k] < (long)first + (long)count);
        }
        assert_true(process_gone_soon(needle[k]));
    }
    if (rz__sbx_helper_pid() > 0)
        assert_true(uid[0] != uid[1]);
}

/* A helper that dies is replaced, and so are the processes that start
 * steps in each cgroup: the next step still runs, sandboxed. */
static void test_sandbox_helper_restarts(void **state)
{
    (void)state;
    pid_t helper = rz__sbx_helper_pid(), cells[64];
    if (!rz_sandbox_available() || helper <= 0)
        skip();
    size_t n = rz__sbx_cell_pids(cells, 64);
    assert_int_equal(kill(helper, SIGKILL), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(kill(cells[i], SIGKILL), 0);
    sleep_ms(50);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    cJSON *j = run_outputs(&o, "printf '{\"uid\":%d}' $(id -u)");
    uint32_t first = 0, count = 0;
    rz__sbx_uid_range(&first, &count);
    double uid = num_field(j, "uid");
    assert_true(uid >= first && uid < (double)first + count);
    cJSON_Delete(j);
    pid_t now = rz__sbx_helper_pid();
    assert_true(now > 0 && now != helper);
}

/* The resolver's files are a network step's only (as under bwrap): a step
 * without network sees neither, one with network sees the host's. */
static void test_hostile_resolver_only_with_network(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || access("/etc/resolv.conf", R_OK) != 0 ||
        access("/etc/hosts", R_OK) != 0)
        skip();
    const char *script =
        "for f in /etc/resolv.conf /etc/hosts; do"
        " if [ -e $f ]; then echo \"seen $f\" >&2; fi; done; echo '{}'";
    for (int net = 0; net <= 1; net++) {
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = 1;
        o.network = net;
        rz_proc *p = run_sh(&o, script);
        assert_int_equal(rz_proc_exit_code(p), 0);
        size_t len;
        const char *log = rz_proc_log(p, &len);
        char *s = rz__strndup(log, len);
        assert_non_null(s);
        if (net && (!strstr(s, "seen /etc/resolv.conf") ||
                    !strstr(s, "seen /etc/hosts")))
            fail_msg("network step: %s", s);
        if (!net && len)
            fail_msg("step without network: %s", s);
        free(s);
        rz_proc_free(p);
    }
}

/* A cell's steps without network get no mount of the network steps' /etc
 * (/.rz-net): their namespaces are copies of one without it (17 binds
 * fewer a step to copy and tear down); a network step between them still
 * gets it, with passwd naming its uid, and the cell goes back: the fourth
 * step's init is the first made after the network step's (the third's
 * was made ahead, before it). */
static void test_sandbox_cell_net_etc_apart(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        access("/etc/resolv.conf", R_OK) != 0)
        skip();
    rz__sbx_test_cells(true);
    const char *script =
        "grep -c ' /.rz-net' /proc/self/mountinfo >&2;"
        " test -e /etc/resolv.conf && echo resolver >&2;"
        " grep -q \"^rhizos:x:$(id -u):\" /etc/passwd && echo named >&2;"
        " exit 0";
    for (int i = 0; i < 4; i++) {
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = 1;
        o.network = i == 1;
        rz_proc *p = run_sh(&o, script);
        assert_int_equal(rz_proc_exit_code(p), 0);
        size_t len;
        const char *log = rz_proc_log(p, &len);
        char *s = rz__strndup(log, len);
        assert_non_null(s);
        bool ok = i == 1 ? strstr(s, "resolver") && strstr(s, "named")
                         : strncmp(s, "0\n", 2) == 0 && !strstr(s, "resolver") &&
                               strstr(s, "named");
        if (!ok)
            fail_msg("step %d (network %d): %s", i, i == 1, s);
        free(s);
        rz_proc_free(p);
    }
}

/* Make the helper and its cells start again (the root is rebuilt). */
static void helper_restart(void)
{
    pid_t cells[256], helper = rz__sbx_helper_pid();
    size_t n = rz__sbx_cell_pids(cells, 256);
    if (helper > 0)
        kill(helper, SIGKILL);
    for (size_t i = 0; i < n; i++)
        kill(cells[i], SIGKILL);
    sleep_ms(50);
}

/* A cell reads its memory cgroup's usage and limit to tell whether an
 * ended step left room for the next spare; anything but a plain number or
 * "max" is not a number of bytes (the cell then keeps the safe order). */
static void test_sandbox_mem_bytes(void **state)
{
    (void)state;
    unsigned long long v = 0;
    assert_int_equal(rz__sbx_mem_bytes("16777216\n", &v), 0);
    assert_true(v == 16777216ull);
    assert_int_equal(rz__sbx_mem_bytes("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(rz__sbx_mem_bytes("max\n", &v), 0);
    assert_true(v == ULLONG_MAX);
    static const char *const bad[] = {
        "", "\n", "max", "max\n\n", "-1\n", " 12\n", "+12\n", "12 \n",
        "12x\n", "12\n3", "0x10\n", "99999999999999999999999\n", "nan\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (rz__sbx_mem_bytes(bad[i], &v) != -1)
            fail_msg("\"%s\" read as %llu", bad[i], v);
}

/* A step starts with every signal at its default action, whatever the
 * runner ignored when the helper started (nohup's SIGHUP, a shell's
 * background job's SIGINT; the helper's own SIGPIPE): exec keeps ignored
 * signals, and the step's start resets only the helper's. */
static void test_sandbox_signals_default(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    struct sigaction ign, old_hup, old_int;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    assert_int_equal(sigaction(SIGHUP, &ign, &old_hup), 0);
    assert_int_equal(sigaction(SIGINT, &ign, &old_int), 0);
    helper_restart();   /* the next helper is forked with them ignored */
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    cJSON *j = run_outputs(&o, "printf '{\"ign\":\"%s\"}' \"$(sed -n "
                           "'s/^SigIgn:[[:space:]]*//p' /proc/$$/status)\"");
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGINT, &old_int, NULL);
    helper_restart();   /* the later tests' helper without them */
    assert_string_equal(str_field(j, "ign"), "0000000000000000");
    cJSON_Delete(j);
}

/* A process that is there and not a zombie (waitpid's to reap). */
static bool alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');
    return close && close[1] == ' ' && close[2] != 'Z';
}

static void on_signal_noop(int sig)
{
    (void)sig;
}

/* The helper and its cells share the runner's process group: a SIGHUP
 * the runner ignores (nohup, a terminal closing) or a SIGINT it handles
 * (flow run's cancel) must not end them, and a step still starts with
 * every signal at the default. */
static void test_sandbox_runner_ignored_signal_kept(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    struct sigaction ign, hnd, old_hup, old_int;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    hnd = ign;
    hnd.sa_handler = on_signal_noop;
    assert_int_equal(sigaction(SIGHUP, &ign, &old_hup), 0);
    assert_int_equal(sigaction(SIGINT, &hnd, &old_int), 0);
    helper_restart();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    cJSON_Delete(run_outputs(&o, "echo '{}'"));
    pid_t cells[256], helper = rz__sbx_helper_pid();
    size_t n = rz__sbx_cell_pids(cells, 256);
    assert_true(helper > 0 && n > 0);
    kill(helper, SIGHUP);   /* what the process group's signals do */
    kill(helper, SIGINT);
    for (size_t i = 0; i < n; i++) {
        kill(cells[i], SIGHUP);
        kill(cells[i], SIGINT);
    }
    sleep_ms(50);
    bool all = alive(helper);
    for (size_t i = 0; i < n; i++)
        all &= alive(cells[i]);
    cJSON *j = run_outputs(&o, "printf '{\"ign\":\"%s\"}' \"$(sed -n "
                           "'s/^SigIgn:[[:space:]]*//p' /proc/$$/status)\"");
    pid_t after = rz__sbx_helper_pid();
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGINT, &old_int, NULL);
    helper_restart();
    assert_true(all);
    assert_int_equal(after, helper);
    assert_string_equal(str_field(j, "ign"), "0000000000000000");
    cJSON_Delete(j);
}

/* /proc/PID/maps of `pid` names `path`. */
static bool maps_name(pid_t pid, const char *path)
{
    char file[64], line[PATH_MAX + 128];
    snprintf(file, sizeof file, "/proc/%ld/maps", (long)pid);
    FILE *f = fopen(file, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, path) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* The helper and its cells run the helper's own program (`own`), or are
 * copies of the runner (this test program): each one's /proc/PID/exe
 * and maps say which. */
static void helper_program_is(bool own)
{
    pid_t procs[257];
    size_t n = rz__sbx_cell_pids(procs, 256);
    procs[n++] = rz__sbx_helper_pid();
    char self[PATH_MAX], exe[PATH_MAX], link[64];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(k > 0 && n >= 2 && procs[n - 1] > 0);
    self[k] = '\0';
    for (size_t i = 0; i < n; i++) {
        snprintf(link, sizeof link, "/proc/%ld/exe", (long)procs[i]);
        k = readlink(link, exe, sizeof exe - 1);
        assert_true(k > 0);
        exe[k] = '\0';
        assert_int_equal(strncmp(exe, "/memfd:rz-sandbox ", 18) == 0, own);
        assert_int_equal(maps_name(procs[i], self), !own);
    }
}

/* The hook reset even when an assertion of the test fails, so the later
 * tests' helpers run the own program. */
static int teardown_own_program(void **state)
{
    rz__sbx_test_no_program(false);
    return teardown_tmp(state);
}

/* The helper and its cells, whose clones are the steps' inits, are the
 * helper's own small program exec'd from a memfd, not copies of the
 * runner: none maps the runner's program. Where that exec is refused the
 * helper goes on as the runner's copy, and steps run all the same. */
static void test_sandbox_helper_own_program(void **state)
{
    (void)state;
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    if (!rz_sandbox_available())
        skip();
    cJSON_Delete(run_outputs(&o, "echo '{}'"));
    if (rz__sbx_helper_pid() <= 0)
        skip();   /* bwrap */
    helper_program_is(rz__sbx_helper_own_program());
    rz__sbx_test_no_program(true);
    helper_restart();
    cJSON *j = run_outputs(&o, "echo '{\"ran\":1}'");
    assert_false(rz__sbx_helper_own_program());
    helper_program_is(false);
    rz__sbx_test_no_program(false);
    helper_restart();
    assert_int_equal(cJSON_GetObjectItem(j, "ran")->valueint, 1);
    cJSON_Delete(j);
}

/* A cell's next step with a lower memory limit than the last: the last
 * one's /tmp (a tmpfs charged to the cell) may still be let go of by the
 * spare when the runner lowers the limit (cgroup v1: EBUSY, v2: an OOM
 * kill); the step must start and run. */
static void test_sandbox_cell_lower_limit_after_tmp(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    helper_restart();   /* one cell: the second step takes the first's */
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    for (int i = 0; i < 3; i++) {
        o.memory_mb = 512;
        cJSON_Delete(run_outputs(&o, "head -c 200M /dev/zero >/tmp/big && "
                                     "echo '{}'"));
        o.memory_mb = 64;
        cJSON_Delete(run_outputs(&o, "echo '{}'"));
    }
}

/* rz__sbx_mem_limit_seam: the memory limit writes left to refuse. */
static atomic_int mem_busy_left;

static int mem_busy(void)
{
    return atomic_fetch_sub(&mem_busy_left, 1) > 0;
}

/* A cell whose memory limit cannot be lowered yet (cgroup v1's EBUSY for
 * what its last step left charged, here made sure by refusing the write
 * once) is dropped for a new cell: the step runs, in another cell. */
static void test_sandbox_cell_lower_limit_refused(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        !rz__sbx_has_cgroup())
        skip();   /* no cgroups here: no limit is written */
    rz__sbx_test_cells(true);
    helper_restart();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.memory_mb = 512;
    cJSON_Delete(run_outputs(&o, "echo '{}'"));
    pid_t before[4], after[4];
    size_t n0 = rz__sbx_cell_pids(before, 4);
    atomic_store(&mem_busy_left, 1);
    rz__sbx_mem_limit_seam = mem_busy;
    o.memory_mb = 64;
    rz_proc *p = run_sh(&o, "echo '{}'");
    rz__sbx_mem_limit_seam = NULL;
    int code = rz_proc_exit_code(p);
    size_t n1 = rz__sbx_cell_pids(after, 4);
    rz_proc_free(p);
    assert_true(atomic_load(&mem_busy_left) <= 0);   /* a write was refused */
    assert_int_equal(code, 0);
    assert_int_equal(n0, 1);
    assert_int_equal(n1, 1);
    assert_int_not_equal(after[0], before[0]);
}

/* A mount under a read-only system folder is read-only in the step too
 * (the binds are recursive, and so is their read-only flag): here a
 * world-writable tmpfs mounted under /usr/lib. */
static void test_hostile_submount_read_only(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || geteuid() != 0 ||
        rz__sbx_helper_pid() <= 0)
        skip();
    char dir[64];
    snprintf(dir, sizeof dir, "/usr/lib/rz-test-submount-%ld", (long)getpid());
    if (mkdir(dir, 0755) != 0)
        skip();   /* a read-only /usr here */
    if (mount("rz-test", dir, "tmpfs", 0, "mode=1777,size=1m") != 0) {
        rmdir(dir);
        skip();
    }
    helper_restart();
    char script[320];
    snprintf(script, sizeof script,
             "grep -q ' %s ' /proc/self/mountinfo || echo 'no submount' >&2;"
             " touch %s/x 2>/dev/null && echo wrote >&2; echo {}",
             dir, dir);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    rz_proc *p = run_sh(&o, script);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    char *s = rz__strndup(log, len);
    int code = rz_proc_exit_code(p);
    rz_proc_free(p);
    char x[100];
    snprintf(x, sizeof x, "%s/x", dir);
    bool wrote = access(x, F_OK) == 0;
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    helper_restart();   /* the next tests' root without it */
    if (code != 0 || wrote || len)
        fail_msg("exit %d, wrote on the host: %d; %s", code, wrote, s);
    free(s);
}

/* The process that starts a step dies after its clone, before it
 * answers (rz__sbx_test_die_after_clone): the step's init waits for the
 * runner's go, which never comes, so nothing of that try runs; its init
 * is found, killed and reaped, and the step starts again, once. Cells
 * with cgroups and without (where nothing else could find a lost step).
 * Each start appends a line to the outputs file. */
static void start_lost_answer(bool cgroups)
{
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        skip();
    rz__sbx_test_cells(cgroups);
    char flag[300], scratch[300], out[400];
    snprintf(flag, sizeof flag, "%s/die-flag-%d", tmp_root, cgroups);
    write_file(flag, "1", 0600);
    rz__sbx_test_die_after_clone(flag);
    helper_restart();
    snprintf(scratch, sizeof scratch, "%s/once-%d", tmp_root, cgroups);
    assert_int_equal(mkdir(scratch, 0700), 0);
    snprintf(out, sizeof out, "%s/out.json", scratch);
    write_file(out, "", 0600);
    const char *argv[] = { "sh", "-c",
                           "echo started >> out.json; sleep 0.3; echo '{}'",
                           NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.argv = argv;
    o.sandbox = 1;
    rz_proc *p = NULL;
    int rc = rz__proc_spawn_in(&p, &o, scratch, out, NULL);
    char *why = rc != RZ_OK ? rz__strdup(rz_error_last()->message) : NULL;
    int code = -1;
    if (p) {
        finish(p);
        code = rz_proc_exit_code(p);
        rz_proc_free(p);
    }
    sleep_ms(500);   /* a second copy, had one run, would have written */
    /* No zombie of ours is left: the lost try's init was reaped. */
    pid_t zombie = waitpid(-1, NULL, WNOHANG);
    rz__sbx_test_die_after_clone(NULL);
    helper_restart();
    rz__sbx_test_cells(true);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    int starts = 0;
    char line[64];
    while (fgets(line, sizeof line, f))
        starts += strcmp(line, "started\n") == 0;
    fclose(f);
    f = fopen(flag, "r");
    assert_non_null(f);
    assert_int_equal(fgetc(f), '0');   /* the hook fired */
    fclose(f);
    if (rc != RZ_OK || code != 0 || starts != 1)
        fail_msg("spawn %d (%s), exit %d, %d starts", rc, why ? why : "",
                 code, starts);
    free(why);
    assert_true(zombie <= 0);
    /* The next step runs as usual. */
    p = run_sh(&o, "echo '{}'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
}

static void test_sandbox_start_lost_answer(void **state)
{
    (void)state;
    start_lost_answer(true);
}

static void test_sandbox_start_lost_answer_no_cgroup(void **state)
{
    (void)state;
    start_lost_answer(false);
}

/* The die-after-clone hook is a hidden function of the tests': the
 * environment variable that once armed it does nothing now, so no
 * installed program can be made to drop a step's start. */
static void test_sandbox_no_env_hook(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        skip();
    char flag[300];
    snprintf(flag, sizeof flag, "%s/env-flag", tmp_root);
    write_file(flag, "1", 0600);
    setenv("RHIZOS_TEST_SBX_DIE_AFTER_CLONE", flag, 1);
    rz__sbx_test_cells(true);
    helper_restart();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    rz_proc *p = run_sh(&o, "echo '{}'");
    int code = rz_proc_exit_code(p);
    rz_proc_free(p);
    unsetenv("RHIZOS_TEST_SBX_DIE_AFTER_CLONE");
    FILE *f = fopen(flag, "r");
    assert_non_null(f);
    int c = fgetc(f);
    fclose(f);
    assert_int_equal(code, 0);
    assert_int_equal(c, '1');   /* never fired */
}

/* A step uid another runner on the host holds (its lock byte, taken here
 * by another process) is passed over: this runner's steps get another;
 * once it is let go, steps still run. */
static void test_sandbox_uid_lock(void **state)
{
    (void)state;
    uint32_t first = 0, count = 0;
    rz__sbx_uid_range(&first, &count);
    if (!rz_sandbox_available() || count < 2)
        skip();
    rz__sbx_test_cells(true);   /* no cell holds a uid now */
    int ready[2], done[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid_t other = fork();
    if (other == 0) {
        /* Its own ends only: a test that fails must not leave it waiting. */
        close(ready[0]);
        close(done[1]);
        /* The first uid of the range no runner holds now (the runners of
         * other test programs on this host hold some). */
        int fd = open(RZ__SBX_UID_LOCK_DIR "/" RZ__SBX_UID_LOCK_FILE, O_RDWR);
        uint32_t took = UINT32_MAX;
        for (uint32_t u = first; fd >= 0 && u < first + count && took == UINT32_MAX; u++) {
            struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                                .l_start = (off_t)u, .l_len = 1 };
            if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
                took = u;
        }
        char x;
        if (write(ready[1], &took, sizeof took) != sizeof took ||
            read(done[0], &x, 1) < 0)
            _exit(1);
        _exit(0);
    }
    close(done[0]);
    close(ready[1]);
    uint32_t taken = UINT32_MAX;
    assert_int_equal(read(ready[0], &taken, sizeof taken), sizeof taken);
    assert_true(taken != UINT32_MAX);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    cJSON *j = run_outputs(&o, "printf '{\"uid\":%d}' $(id -u)");
    double held = cJSON_GetObjectItem(j, "uid")->valuedouble;
    cJSON_Delete(j);
    assert_int_equal(write(done[1], "x", 1), 1);
    assert_int_equal(waitpid(other, NULL, 0), other);
    close(ready[0]);
    close(done[1]);
    rz__sbx_test_cells(true);
    j = run_outputs(&o, "printf '{\"uid\":%d}' $(id -u)");
    double freed = cJSON_GetObjectItem(j, "uid")->valuedouble;
    cJSON_Delete(j);
    /* Other test programs' runners may hold some uids of the range too:
     * only the one held here is known to be passed over. */
    if (held == (double)taken || held < first || held >= first + count ||
        freed < first || freed >= first + count)
        fail_msg("uid %.0f while %u was held, %.0f after", held, taken,
                 freed);
}

/* What a step sees of its pid 1 is a name, not the runner's command line
 * (the init is a copy of the runner), and its cgroups are its namespace's
 * root: no host cgroup path. */
static void test_hostile_init_and_cgroup_names(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        skip();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    rz_proc *p = run_sh(&o,
        "printf 'cmdline=%s comm=%s\\n' \"$(tr '\\0' ' ' </proc/1/cmdline)\""
        " \"$(cat /proc/1/comm)\" >&2;"
        " grep -v ':/$' /proc/self/cgroup >&2; echo '{}'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    char *s = rz__strndup(log, len);
    assert_non_null(s);
    if (strcmp(s, "cmdline=rz-step-init  comm=rz-step-init\n") != 0)
        fail_msg("%s", s);
    free(s);
    rz_proc_free(p);
}

/* A bubblewrap step's child joins its cgroups (cgroup v1) through their
 * `tasks` file: a one-thread process moved by its thread, with no wait for
 * the kernel's threadgroup lock (an RCU grace period a cgroup.procs move
 * waits for, 8-16 ms). Each descriptor names the step's own folder. */
static void test_hostile_cgroup_joined_by_thread(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() > 0 ||
        !rz__sandbox_has_cgroup() || access("/proc/self/fd", F_OK) != 0)
        skip();
    char scratch[300];
    snprintf(scratch, sizeof scratch, "%s/join-XXXXXX", tmp_root);
    assert_non_null(mkdtemp(scratch));
    rz__sbx_opts o = { .scratch = scratch, .exe = "/bin/sh" };
    rz__sbx s;
    rz__argv a = { 0 };
    assert_int_equal(rz__sbx_prepare(&s, &a, &o), RZ_OK);
    assert_true(s.n_cg > 0);
    for (size_t i = 0; i < s.n_cg; i++) {
        char fd[64], target[PATH_MAX], want[PATH_MAX], v2[PATH_MAX];
        snprintf(fd, sizeof fd, "/proc/self/fd/%d", s.procs[i]);
        ssize_t n = readlink(fd, target, sizeof target - 1);
        assert_true(n > 0);
        target[n] = '\0';
        snprintf(v2, sizeof v2, "%s/cgroup.controllers", s.cg[i]);
        snprintf(want, sizeof want, "%s/%s", s.cg[i],
                 access(v2, F_OK) == 0 ? "cgroup.procs" : "tasks");
        assert_string_equal(target, want);
    }
    rz__sbx_started(&s);
    rz__sbx_report r = { false, false };
    rz__sbx_finish(&s, &r);
    rz__argv_free(&a);
    assert_int_equal(rmdir(scratch), 0);
}

/* A step's processes and threads, all made after its join (cgroup v1: a
 * write to `tasks`, which moves the writing thread, before the step's
 * cgroup namespace is made), are all in its cgroups: a process its shell
 * backgrounds and a python with three threads, every
 * /proc/PID/task/TID/cgroup of the step's pid namespace read while they
 * run, each the python's own and each line the namespace's root (":/");
 * a thread left outside would read "/.." or a path. */
static void test_hostile_cgroup_holds_every_thread(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || !rz__sandbox_has_cgroup())
        skip();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    cJSON *j = run_outputs(&o,
        "command -v python3 >/dev/null || { echo '{\"skip\":1}'; exit 0; }\n"
        "sleep 30 & python3 -c '\n"
        "import glob, json, threading\n"
        "e = threading.Event()\n"
        "ts = [threading.Thread(target=e.wait) for i in range(3)]\n"
        "for t in ts: t.start()\n"
        "own = open(\"/proc/self/cgroup\").read()\n"
        "seen = {}\n"
        "for f in glob.glob(\"/proc/[0-9]*/task/*/cgroup\"):\n"
        "    try: seen[f] = open(f).read()\n"
        "    except OSError: pass\n"
        "e.set()\n"
        "for t in ts: t.join()\n"
        "print(json.dumps({\"own\": own, \"n\": len(seen),\n"
        "  \"other\": sorted(f for f, v in seen.items() if v != own)}))'\n"
        "r=$?; kill $!; exit $r");
    if (cJSON_GetObjectItem(j, "skip")) {
        cJSON_Delete(j);
        skip();
    }
    const cJSON *other = cJSON_GetObjectItem(j, "other");
    char *text = cJSON_PrintUnformatted(j);
    assert_true(cJSON_IsArray(other));
    /* python and its 3 threads, sh, sleep: 6 at least */
    if (cJSON_GetArraySize(other) != 0 ||
        cJSON_GetObjectItem(j, "n")->valuedouble < 6)
        fail_msg("%s", text);
    const char *own = str_field(j, "own");
    for (const char *l = own; *l;) {
        size_t n = strcspn(l, "\n");
        if (n < 2 || strncmp(l + n - 2, ":/", 2) != 0)
            fail_msg("%s", text);
        l += n + (l[n] == '\n');
    }
    free(text);
    cJSON_Delete(j);
}

/* A kept folder in the protocol's layout, its top (or in/) handed to a
 * step uid, is not reused by a root runner: only the runner's own are. */
static void test_scratch_reuse_refuses_step_owned(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    uint32_t first = 0, count = 0;
    rz__sbx_uid_range(&first, &count);
    uid_t step = count ? first : 65534;
    for (int which = 0; which < 3; which++) {
        rz__scratch_pool *pool = NULL;
        assert_int_equal(rz__scratch_pool_new(&pool, tmp_root), RZ_OK);
        char dir[400], path[500];
        snprintf(dir, sizeof dir, "%s/rz-kept%d", tmp_root, which);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/in", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/in/request.json", dir);
        write_file(path, "{}", 0600);
        snprintf(path, sizeof path, "%s/out", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/out/outputs.json", dir);
        write_file(path, "", 0600);
        /* 0: the runner's own (reused); 1: the top a step's; 2: in/ */
        if (which == 1)
            assert_int_equal(chown(dir, step, step), 0);
        snprintf(path, sizeof path, "%s/in", dir);
        if (which == 2)
            assert_int_equal(chown(path, step, step), 0);
        char *real = realpath(dir, NULL);
        assert_non_null(real);
        rz__scratch_give(pool, real);
        char *got = rz__scratch_take(pool, "{\"x\":1}");
        if (which == 0) {
            assert_non_null(got);
            assert_string_equal(got, real);
            free(got);
        } else {
            assert_null(got);
            assert_int_equal(access(dir, F_OK), -1);   /* removed */
        }
        rz__scratch_pool_free(pool);
    }
}

/* A nested user namespace and ptrace are refused; the step says so. */
static void test_hostile_userns_and_ptrace(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    char scratch[300];
    rz_proc *p = run_hostile("unshare -U -r true && exit 9; exit 3",
                             0, scratch, sizeof scratch);
    assert_int_equal(rz_proc_exit_code(p), 3);
    assert_true(log_has(p, "unshare failed"));
    rz_proc_free(p);
    /* PTRACE_TRACEME always succeeds unfiltered; keyctl asks for the
     * session keyring. Python's ctypes, where there is a python3. */
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return;
    p = run_hostile(
        "python3 -c 'import ctypes, os, sys\n"
        "c = ctypes.CDLL(None, use_errno=True)\n"
        "r = c.ptrace(0, 0, None, None)\n"
        "print(\"ptrace:\", r, os.strerror(ctypes.get_errno()), file=sys.stderr)\n"
        "r = c.syscall(250, 0, -3, 0)\n"
        "print(\"keyctl:\", r, os.strerror(ctypes.get_errno()), file=sys.stderr)\n"
        "'; echo '{}'", 0, scratch, sizeof scratch);
    assert_true(log_has(p, "ptrace: -1 Operation not permitted"));
#if defined(__x86_64__)
    assert_true(log_has(p, "keyctl: -1 Operation not permitted"));
#endif
    rz_proc_free(p);
}

/* A fork bomb stops at the pids limit, the reason names it, and nothing
 * of it outlives the step. */
static void test_hostile_fork_bomb(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || !rz__sandbox_has_cgroup())
        skip();
    char script[300], needle[32], scratch[300];
    int tag = (int)getpid() % 1000;
    snprintf(needle, sizeof needle, "sleep 81.%d", tag);
    snprintf(script, sizeof script,
             "i=0; while [ $i -lt 3000 ]; do sleep 81.%d & i=$((i+1));"
             " done; wait", tag);
    rz_proc *p = run_hostile(script, 4000, scratch, sizeof scratch);
    const char *why = rz__proc_limit_reason(p);
    assert_non_null(why);
    assert_non_null(strstr(why, "process limit reached (512 processes)"));
    assert_true(log_has(p, "fork"));
    assert_true(process_gone_soon(needle));
    rz_proc_free(p);
}

/* 300 MB into the scratch folder: ENOSPC at its 256 MiB tmpfs, nothing on
 * the host's disk. /tmp is the same. */
static void test_hostile_scratch_quota(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    char scratch[300];
    rz_proc *p = run_hostile(
        "dd if=/dev/zero of=big bs=1M count=300 2>&1 | grep -i space >&2;"
        "dd if=/dev/zero of=/tmp/big bs=1M count=300 2>&1 | grep -i space"
        " >&2; exit 1", 0, scratch, sizeof scratch);
    assert_int_equal(rz_proc_exit_code(p), 1);
    assert_true(log_has(p, "'big': No space left on device"));
    assert_true(log_has(p, "'/tmp/big': No space left on device"));
    char big[400];
    snprintf(big, sizeof big, "%s/big", scratch);
    struct stat st;
    assert_int_equal(stat(big, &st), -1);
    rz_proc_free(p);
}

/* The helper restarted with RHIZOS_SANDBOX_NET set to `mode` (NULL: unset,
 * the default: a namespace per step). */
static void net_mode(const char *mode)
{
    if (mode)
        setenv("RHIZOS_SANDBOX_NET", mode, 1);
    else
        unsetenv("RHIZOS_SANDBOX_NET");
    rz__sbx_test_cells(true);
    helper_restart();
}

/* A step that leaves a TCP connection closing (TIME_WAIT) on its loopback. */
static const char closed_tcp_sh[] =
    "python3 -c 'import socket; s = socket.socket(); "
    "s.bind((\"127.0.0.1\", 0)); s.listen(); "
    "c = socket.create_connection(s.getsockname()); "
    "a, _ = s.accept(); c.close(); a.close()' >&2; ";

/* The kernel's cookie of this process's network namespace (never given
 * to another namespace, unlike its inode number, which a namespace made
 * after this one's end may get); false where it has none (before 5.14). */
static bool netns_cookie_known(void)
{
#ifdef SO_NETNS_COOKIE
    int sk = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    uint64_t c = 0;
    socklen_t len = sizeof c;
    bool ok = sk >= 0 && getsockopt(sk, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len) == 0;
    if (sk >= 0)
        close(sk);
    return ok;
#else
    return false;
#endif
}

/* This process's network namespace's cookie, as a step reports its own. */
static void own_netns_cookie(char *buf, size_t size)
{
    uint64_t c = 0;
#ifdef SO_NETNS_COOKIE
    int sk = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof c;
    assert_true(sk >= 0 && getsockopt(sk, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len) == 0);
    close(sk);
#endif
    snprintf(buf, size, "%llu", (unsigned long long)c);
}

/* A step's report of its network namespace: its cookie ("ns"), its TCP
 * sockets ("tcp"), whether it keeps TCP metrics ("nm": 1, none). */
static const char net_report_sh[] =
    "python3 -c 'import json, socket, struct; "
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "o = getattr(socket, \"SO_NETNS_COOKIE\", 71); "
    "c = struct.unpack(\"Q\", s.getsockopt(socket.SOL_SOCKET, o, 8))[0]; "
    "n = len(open(\"/proc/net/tcp\").readlines()) - 1; "
    "m = int(open(\"/proc/sys/net/ipv4/tcp_no_metrics_save\").read()); "
    "print(json.dumps({\"ns\": str(c), \"tcp\": n, \"nm\": m}))'";

/* By default a cell's steps without network each get a namespace of their
 * own, never one an earlier step had: the first leaves a TCP connection
 * closing on its loopback, and neither later step sees it, nor shares a
 * namespace (told by the namespaces' cookies: an ended step's namespace's
 * inode number may be a later one's), nor is in the runner's. */
static void test_sandbox_cell_net_fresh(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0 ||
        !netns_cookie_known())
        skip();
    rz__sbx_test_cells(true);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    char ns[3][64];
    int tcp[3];
    for (int i = 0; i < 3; i++) {
        char script[800];
        snprintf(script, sizeof script, "%s%s",
                 i == 0 ? closed_tcp_sh : "", net_report_sh);
        cJSON *j = run_outputs(&o, script);
        snprintf(ns[i], sizeof ns[i], "%s", str_field(j, "ns"));
        tcp[i] = (int)num_field(j, "tcp");
        cJSON_Delete(j);
    }
    if (tcp[0] < 1 || strcmp(ns[1], ns[0]) == 0 || tcp[1] != 0 ||
        strcmp(ns[2], ns[1]) == 0 || strcmp(ns[2], ns[0]) == 0 || tcp[2] != 0)
        fail_msg("%s (%d TCP), %s (%d), %s (%d)", ns[0], tcp[0], ns[1], tcp[1],
                 ns[2], tcp[2]);
    char own[32];   /* nor the runner's (the host's), whence the pool's come */
    own_netns_cookie(own, sizeof own);
    for (int i = 0; i < 3; i++)
        if (strcmp(ns[i], own) == 0)
            fail_msg("step %d in the runner's namespace %s", i, own);
}

/* With RHIZOS_SANDBOX_NET=cell a cell's steps without network share the
 * cell's loopback namespace, one at a time, when the last step left
 * nothing in it: the first leaves a TCP
 * connection closing (TIME_WAIT), so the second gets a fresh namespace
 * with no socket in it; the third, after a clean second, gets the second's
 * (namespaces told by their cookies, as above).
 * A cell's namespace keeps no TCP metrics. */
static void test_sandbox_cell_net_reuse(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0 ||
        !netns_cookie_known())
        skip();
    net_mode("cell");
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    char ns[3][64];
    int tcp[3], nm[3];
    for (int i = 0; i < 3; i++) {
        char script[800];
        snprintf(script, sizeof script, "%s%s",
                 i == 0 ? closed_tcp_sh : "", net_report_sh);
        cJSON *j = run_outputs(&o, script);
        snprintf(ns[i], sizeof ns[i], "%s", str_field(j, "ns"));
        tcp[i] = (int)num_field(j, "tcp");
        nm[i] = (int)num_field(j, "nm");
        cJSON_Delete(j);
    }
    if (tcp[0] < 1 || strcmp(ns[1], ns[0]) == 0 || tcp[1] != 0 ||
        strcmp(ns[2], ns[1]) != 0 || tcp[2] != 0)
        fail_msg("%s (%d TCP), %s (%d), %s (%d)", ns[0], tcp[0], ns[1], tcp[1],
                 ns[2], tcp[2]);
    /* No TCP metrics are kept in a shared namespace (RTT and window of one
     * step's connections to 127.0.0.1 are not the next one's). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(nm[i], 1);
    net_mode(NULL);
}

/* A step that listens on loopback (TCP, and an abstract unix name) and
 * ends: the next step of its cell cannot connect to either, whether the
 * listeners closed with their process or were kept alive in flight (sent
 * in an SCM_RIGHTS message to a unix socket that is itself in flight, so
 * only the kernel's garbage collector ends them). */
static void test_sandbox_cell_net_listeners_gone(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0)
        skip();
    net_mode("cell");
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    for (int in_flight = 0; in_flight < 2; in_flight++) {
        char script[1200];
        snprintf(script, sizeof script,
                 "python3 -c 'import socket, json, os, sys\n"
                 "s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen()\n"
                 "u = socket.socket(socket.AF_UNIX); name = \"rz-left-%%d\" %% os.getpid()\n"
                 "u.bind(\"\\0\" + name); u.listen()\n"
                 "if %d:\n"
                 "    a, b = socket.socketpair()\n"
                 "    socket.send_fds(a, [b\"x\"], [s.fileno(), u.fileno(), b.fileno()])\n"
                 "json.dump({\"port\": s.getsockname()[1], \"name\": name},"
                 " sys.stdout)'",
                 in_flight);
        cJSON *j = run_outputs(&o, script);
        int port = (int)num_field(j, "port");
        char name[64];
        snprintf(name, sizeof name, "%s", str_field(j, "name"));
        cJSON_Delete(j);
        snprintf(script, sizeof script,
                 "python3 -c 'import socket, json, os, sys\n"
                 "def tcp():\n"
                 "    try: socket.create_connection((\"127.0.0.1\", %d), 2); return \"connected\"\n"
                 "    except OSError as e: return e.__class__.__name__\n"
                 "def unix():\n"
                 "    try: socket.socket(socket.AF_UNIX).connect(\"\\0%s\"); return \"connected\"\n"
                 "    except OSError as e: return e.__class__.__name__\n"
                 "json.dump({\"tcp\": tcp(), \"unix\": unix()},"
                 " sys.stdout)'",
                 port, name);
        j = run_outputs(&o, script);
        if (strcmp(str_field(j, "tcp"), "ConnectionRefusedError") != 0 ||
            strcmp(str_field(j, "unix"), "ConnectionRefusedError") != 0)
            fail_msg("in flight %d: port %d %s, %s %s", in_flight, port,
                     str_field(j, "tcp"), name, str_field(j, "unix"));
        cJSON_Delete(j);
    }
    net_mode(NULL);
}

/* A step that leaves a shareable IPv6 flow label lingering (an unprivileged
 * IPV6_FLOWLABEL_MGR, kept up to a minute after its socket closed): the
 * next step of its cell does not find it (a fresh namespace), neither in
 * /proc/net/ip6_flowlabel nor by making the same label exclusively. */
static const char flowlabel_py[] =
    "python3 -c 'import socket, struct, json, sys\n"
    "def label(excl):\n"
    "    r = socket.inet_pton(socket.AF_INET6, \"::1\") + struct.pack(\"!I\", 0x5eed)\n"
    "    r += struct.pack(\"=BBHHHI\", 0, 255, 3 if excl else 1, 0, 60, 0)\n"
    "    try:\n"
    "        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).setsockopt(41, 32, r)\n"
    "        return \"made\"\n"
    "    except OSError as e: return e.__class__.__name__\n"
    "seen = open(\"/proc/net/ip6_flowlabel\").read().count(\"\\n\") - 1\n"
    "json.dump({\"label\": label(%d), \"seen\": seen}, sys.stdout)'";

static void test_sandbox_cell_net_flowlabel_gone(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0)
        skip();
    net_mode("cell");
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    char script[1200];
    snprintf(script, sizeof script, flowlabel_py, 0);
    cJSON *j = run_outputs(&o, script);
    bool made = strcmp(str_field(j, "label"), "made") == 0;
    cJSON_Delete(j);
    if (!made) {   /* no IPv6 in the step's namespace */
        net_mode(NULL);
        skip();
    }
    snprintf(script, sizeof script, flowlabel_py, 1);
    j = run_outputs(&o, script);
    if (strcmp(str_field(j, "label"), "made") != 0 ||
        num_field(j, "seen") != 0)
        fail_msg("the next step found the flow label: %s, %d listed",
                 str_field(j, "label"), (int)num_field(j, "seen"));
    cJSON_Delete(j);
    net_mode(NULL);
}

/* Two steps running at once never share a network namespace. */
static void test_sandbox_cell_net_apart(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        skip();
    net_mode("cell");
    const char *argv[] = { "sh", "-c",
                           "printf '{\"ns\": \"%s\"}' "
                           "$(readlink /proc/self/ns/net); sleep 1", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.argv = argv;
    o.scratch_parent = tmp_root;
    for (int round = 0; round < 2; round++) {   /* fresh cells, then reused */
        rz_proc *p[2] = { NULL, NULL };
        for (int i = 0; i < 2; i++)
            assert_int_equal(rz_proc_spawn(&p[i], &o), RZ_OK);
        char ns[2][64];
        for (int i = 0; i < 2; i++) {
            finish(p[i]);
            assert_int_equal(rz_proc_exit_code(p[i]), 0);
            cJSON *j = outputs_of(p[i]);
            snprintf(ns[i], sizeof ns[i], "%s", str_field(j, "ns"));
            cJSON_Delete(j);
            rz_proc_free(p[i]);
        }
        if (strcmp(ns[0], ns[1]) == 0)
            fail_msg("round %d: both in %s", round, ns[0]);
    }
    net_mode(NULL);
}

/* A step cannot change the namespace the next step of its cell inherits:
 * lo down, an address, a route, a sysctl all refused; the next step, in
 * the same namespace, finds everything as the first step did. */
static void test_sandbox_cell_net_unchanged(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v ip >/dev/null 2>&1") != 0)
        skip();
    net_mode("cell");
    static const char state_sh[] =
        "printf '{\"ns\": \"%s\", \"state\": \"%s\"}' "
        "$(readlink /proc/self/ns/net) "
        "$( (ip -o link; ip -o addr; ip route show table all; "
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/tcp_fin_timeout"
        " /proc/sys/net/ipv4/ip_local_port_range) | cksum | tr -d ' ')";
    static const char change_sh[] =
        "n=0; ip link set lo down 2>/dev/null || n=$((n+1)); "
        "ip addr add 10.9.9.9/32 dev lo 2>/dev/null || n=$((n+1)); "
        "ip route add 10.1.0.0/16 dev lo 2>/dev/null || n=$((n+1)); "
        "(echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null || n=$((n+1)); "
        "(echo 7 > /proc/sys/net/ipv4/tcp_fin_timeout) 2>/dev/null || n=$((n+1)); "
        "printf '{\"ns\": \"%s\", \"refused\": %d}' "
        "$(readlink /proc/self/ns/net) $n";
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    const char *scripts[3] = { state_sh, change_sh, state_sh };
    char ns[3][64], st[2][64];
    int refused = -1;
    for (int i = 0; i < 3; i++) {
        cJSON *j = run_outputs(&o, scripts[i]);
        snprintf(ns[i], sizeof ns[i], "%s", str_field(j, "ns"));
        if (i == 1)
            refused = (int)num_field(j, "refused");
        else
            snprintf(st[i / 2], sizeof st[i / 2], "%s", str_field(j, "state"));
        cJSON_Delete(j);
    }
    if (refused != 5 || strcmp(st[0], st[1]) != 0 ||
        strcmp(ns[0], ns[1]) != 0 || strcmp(ns[1], ns[2]) != 0)
        fail_msg("refused %d of 5; state %s then %s; %s, %s, %s", refused,
                 st[0], st[1], ns[0], ns[1], ns[2]);
    net_mode(NULL);
}

/* RHIZOS_SANDBOX_NET: unset, "fresh" and a value that is neither cell nor
 * fresh give each step a network namespace no earlier step had; "cell"
 * gives a clean step's namespace to the next one (told by cookies: a
 * fresh namespace may get the inode number of the last step's, ended). */
static void test_sandbox_net_setting(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        system("command -v python3 >/dev/null 2>&1") != 0 ||
        !netns_cookie_known())
        skip();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    const char *values[4] = { "fresh", "bogus", NULL, "cell" };
    for (int v = 0; v < 4; v++) {
        net_mode(values[v]);
        char ns[2][64];
        for (int i = 0; i < 2; i++) {
            cJSON *j = run_outputs(&o, net_report_sh);
            snprintf(ns[i], sizeof ns[i], "%s", str_field(j, "ns"));
            cJSON_Delete(j);
        }
        bool cell = values[v] && strcmp(values[v], "cell") == 0;
        if ((strcmp(ns[0], ns[1]) == 0) != cell)
            fail_msg("%s: %s then %s", values[v] ? values[v] : "unset",
                     ns[0], ns[1]);
    }
    net_mode(NULL);
}

/* A module that writes 8 MiB of outputs, its cap 1 MiB: through the
 * helper its outputs file is in its own tmpfs and at most the cap reaches
 * the host's (on /dev/shm under `flow run`: memory, charged to no
 * cgroup); here nothing does, and the step fails saying why. */
static void test_hostile_output_cap(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        skip();   /* bubblewrap binds the host's file (on /tmp's disk) */
    char scratch[300], outdir[400], out[450];
    snprintf(scratch, sizeof scratch, "%s/outcap", tmp_root);
    assert_int_equal(mkdir(scratch, 0700), 0);
    snprintf(outdir, sizeof outdir, "%s/out", scratch);
    assert_int_equal(mkdir(outdir, 0700), 0);
    snprintf(out, sizeof out, "%s/outputs.json", outdir);
    write_file(out, "", 0600);
    const char *argv[] = { "sh", "-c",
                           "head -c 8388608 /dev/zero > \"$RZ_OUTPUT\"; "
                           "touch out/other 2>/dev/null && echo made >&2; "
                           "ls -l \"$RZ_OUTPUT\" >&2", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.argv = argv;
    o.sandbox = 1;
    o.max_output = 1u << 20;
    rz_proc *p = NULL;
    if (rz__proc_spawn_in(&p, &o, scratch, out, NULL) != RZ_OK)
        fail_msg("spawn: %s", rz_error_last()->message);
    finish(p);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    char *s = rz__strndup(log, len);
    if (rz_proc_exit_code(p) == 0 || st.st_size != 0 ||
        !strstr(s, "output is larger than 1024 KiB") || strstr(s, "made"))
        fail_msg("exit %d, host file %lld bytes; %s", rz_proc_exit_code(p),
                 (long long)st.st_size, s);
    free(s);
    rz_proc_free(p);
    /* Within the cap, the outputs reach the host as before. */
    argv[2] = "printf '{\"ok\": true}' > \"$RZ_OUTPUT\"";
    write_file(out, "", 0600);
    assert_int_equal(rz__proc_spawn_in(&p, &o, scratch, out, NULL), RZ_OK);
    finish(p);
    assert_int_equal(rz_proc_exit_code(p), 0);
    cJSON *j = outputs_of(p);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    rz_proc_free(p);
}

/* A module with no memory_mb allocating 3 GiB is killed at the runner's
 * default cap, and the step's reason says which. */
static void test_hostile_memory_default(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || !rz__sandbox_has_cgroup() ||
        system("command -v python3 >/dev/null 2>&1") != 0)
        skip();
    char reg[300], dir[400], path[450];
    snprintf(reg, sizeof reg, "%s/hostile", tmp_root);
    assert_int_equal(mkdir(reg, 0755), 0);
    snprintf(dir, sizeof dir, "%s/hog", reg);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", dir);
    write_file(path,
               "{\"id\":\"hog\",\"version\":\"1.0.0\",\"name\":\"hog\","
               "\"outputs\":[{\"name\":\"value\",\"type\":\"any\"}],"
               "\"requirements\":{\"adapter\":\"process\"},"
               "\"exec\":{\"adapter\":\"process\","
               "\"command\":[\"python3\",\"-c\","
               "\"b = bytearray(3 << 30); print('{}')\"]}}", 0644);
    rz_registry *r = NULL;
    assert_int_equal(rz_registry_new(&r), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, reg, NULL), RZ_OK);
    rz_flow *f = load_flow(r, NULL,
                           "flux: 1\nname: hog\nsteps:\n"
                           "  hog:\n    module: hog@1.0.0\n");
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.jobs = 1;
    o.default_memory_mb = 64;
    rz_run *run = run_flow(f, &o, &rec);
    assert_int_equal(rz_run_state_get(run), RZ_RUN_FAILED);
    const rec_event *e = find_event(&rec, RZ_EVENT_STEP_FAILED, 0);
    assert_non_null(e);
    assert_non_null(e->message);
    if (!strstr(e->message, "killed for memory (limit 64 MB)"))
        fail_msg("%s", e->message);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(r);
}

/* Run a one-step flow of a module asking for `scratch_mb`, writing 20 MB
 * into its scratch folder, under a runner whose maximum is `max_mb`; the
 * step's failure message (NULL if it succeeded). */
static char *run_scratch_module(const char *id, unsigned scratch_mb,
                                unsigned max_mb)
{
    char reg[300], dir[400], path[450], manifest[1024], flow[200];
    snprintf(reg, sizeof reg, "%s/%s-reg", tmp_root, id);
    assert_int_equal(mkdir(reg, 0755), 0);
    snprintf(dir, sizeof dir, "%s/%s", reg, id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", dir);
    snprintf(manifest, sizeof manifest,
             "{\"id\":\"%s\",\"version\":\"1.0.0\",\"name\":\"w\","
             "\"requirements\":{\"adapter\":\"process\",\"scratch_mb\":%u},"
             "\"exec\":{\"adapter\":\"process\",\"command\":[\"sh\",\"-c\","
             "\"e=$(dd if=/dev/zero of=big bs=1M count=20 2>&1) ||"
             " { echo \\\"$e\\\" | head -n 1 >&2; exit 3; };"
             " echo '{}'\"]}}", id, scratch_mb);
    write_file(path, manifest, 0644);
    rz_registry *r = NULL;
    assert_int_equal(rz_registry_new(&r), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, reg, NULL), RZ_OK);
    snprintf(flow, sizeof flow,
             "flux: 1\nname: w\nsteps:\n  w:\n    module: %s@1.0.0\n", id);
    rz_flow *f = load_flow(r, NULL, flow);
    recorder rec = { .n = 0 };
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.jobs = 1;
    o.max_scratch_mb = max_mb;
    rz_run *run = run_flow(f, &o, &rec);
    const rec_event *e = find_event(&rec, RZ_EVENT_STEP_FAILED, 0);
    char *msg = e && e->message ? rz__strdup(e->message) : NULL;
    if (!e)
        assert_int_equal(rz_run_state_get(run), RZ_RUN_SUCCEEDED);
    recorder_free(&rec);
    rz_run_free(run);
    rz_flow_free(f);
    rz_registry_free(r);
    return msg;
}

/* requirements.scratch_mb sizes the scratch tmpfs: 20 MB fit in 32, not
 * in 8 (the reason says which space was full), and a module cannot ask
 * for more than the runner allows. */
static void test_hostile_scratch_per_manifest(void **state)
{
    (void)state;
    if (!rz_sandbox_available())
        skip();
    char *msg = run_scratch_module("roomy", 32, 0);
    if (msg)
        fail_msg("%s", msg);
    msg = run_scratch_module("cramped", 8, 0);
    assert_non_null(msg);
    if (!strstr(msg, "exit status 3") ||
        !strstr(msg, rz__sbx_helper_pid() > 0
                         ? "the step's scratch folder is full (8 MiB"
                         : "the step ran out of space: its scratch folder or "
                           "/tmp is full (8 MiB each"))
        fail_msg("%s", msg);
    free(msg);
    msg = run_scratch_module("greedy", 64, 16);
    assert_non_null(msg);
    if (!strstr(msg, "asks for 64 MiB of scratch space (requirements."
                     "scratch_mb), over this runner's maximum of 16 MiB"))
        fail_msg("%s", msg);
    free(msg);
}

/* ---- one attempt through an adapter (rz_attempt_*) ---- */

/* A registry with one module `id` running `script`; *m resolved in it. */
static rz_registry *one_module(const char *id, const char *adapter,
                               const char *script, const rz_module **m)
{
    char reg[300];
    snprintf(reg, sizeof reg, "%s/attempt-modules", tmp_root);
    mkdir(reg, 0755);
    add_module(reg, id, adapter, script);
    rz_registry *r = NULL;
    assert_int_equal(rz_registry_new(&r), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, reg, NULL), RZ_OK);
    assert_int_equal(rz_registry_resolve(r, id, "1.0.0", m), RZ_OK);
    return r;
}

/* Start and drive to the end through its descriptor, as a poll loop does. */
static rz_attempt *attempt_run(rz_attempt_opts *o, rz_attempt_result *res)
{
    o->scratch_parent = tmp_root;
    o->sandbox = 0;
    rz_attempt *a = NULL;
    if (rz_attempt_start(&a, o) != RZ_OK)
        fail_msg("rz_attempt_start: %s", rz_error_last()->message);
    uint64_t give_up = rz__now_ms() + 20000;
    int r;
    while ((r = rz_attempt_poll(a, 0)) == 0) {
        assert_true(rz__now_ms() < give_up);
        struct pollfd pfd = { rz_attempt_fd(a), POLLIN, 0 };
        assert_true(pfd.fd >= 0);
        poll(&pfd, 1, 100);
    }
    assert_int_equal(r, 1);
    assert_int_equal(rz_attempt_fd(a), -1);
    assert_int_equal(rz_attempt_result_get(a, res), RZ_OK);
    return a;
}

static void test_attempt_request_file(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("req", "process",
        "stdin=$(cat); file=$(cat in/request.json) || exit 4;"
        " [ \"$stdin\" = \"$file\" ] || exit 5;"
        " [ -d out ] || exit 6;"
        " printf '{\"value\":\"%s|%s|%s|%s|%s\"}' \"$RZ_RUN_ID\""
        " \"$RZ_STEP_ID\" \"$RZ_ATTEMPT\" \"$RZ_JOB_ID\" \"$RZ_NODE_ID\"\n",
        &m);
    const char *req = "{\"inputs\":{\"text\":\"hi\"},\"config\":{\"n\":1}}";
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.request_json = req;
    o.run_id = "run-7";
    o.step_id = "count";
    o.attempt = 2;
    o.job_id = 42;
    o.node_id = "n1";
    rz_attempt_result res;
    rz_attempt *a = attempt_run(&o, &res);
    if (!res.ok)
        fail_msg("reason: %s", res.reason);
    assert_string_equal(res.outputs, "{\"value\":\"run-7|count|2|42|n1\"}");
    assert_null(res.reason);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(step_folders_in(tmp_root), 1);
    rz_attempt_free(a);
    assert_int_equal(step_folders_in(tmp_root), 0);   /* the scratch folder is gone */
    rz_registry_free(reg);
}

static void test_attempt_outputs_file(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("outfile", "process",
        "cat >/dev/null; [ \"$RZ_OUTPUT\" = \"$PWD/out/outputs.json\" ]"
        " || exit 4; printf '{\"value\": 2}' > out/outputs.json;"
        " echo 'not json on stdout'\n", &m);
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    rz_attempt_result res;
    rz_attempt *a = attempt_run(&o, &res);
    if (!res.ok)
        fail_msg("reason: %s", res.reason);
    assert_string_equal(res.outputs, "{\"value\":2}");
    rz_attempt_free(a);
    rz_registry_free(reg);
}

static void test_attempt_scrubs_secrets(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    /* Echoes its secret into the log, the outputs (JSON-escaped) and,
     * with config fail, its last log line (the failure reason). */
    rz_registry *reg = one_module("leak", "process",
        "req=$(cat); v=$(printf '%s' \"$RZ_CRED_API_KEY\" | sed 's/[\"\\\\]/\\\\&/g');"
        " printf 'the key is %s\\n' \"$RZ_CRED_API_KEY\" >&2;"
        " case \"$req\" in *fail*) printf 'bad key %s\\n' \"$RZ_CRED_API_KEY\" >&2;"
        " exit 1;; esac;"
        " printf '{\"value\":\"key=%s\"}' \"$v\"\n", &m);
    const char *secret = "s3\"cr\\et";
    rz_attempt_secret sec = { "api-key", secret };
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.secrets = &sec;
    o.n_secrets = 1;
    rz_attempt_result res;
    rz_attempt *a = attempt_run(&o, &res);
    if (!res.ok)
        fail_msg("reason: %s", res.reason);
    assert_string_equal(res.outputs, "{\"value\":\"key=[redacted]\"}");
    assert_non_null(res.log);
    if (!strstr(res.log, "the key is [redacted]"))
        fail_msg("log: %s", res.log);
    assert_null(strstr(res.log, secret));
    rz_attempt_free(a);

    o.request_json = "{\"inputs\":{},\"config\":{\"fail\":true}}";
    a = attempt_run(&o, &res);
    assert_false(res.ok);
    assert_string_equal(res.reason, "exit status 1: bad key [redacted]");
    assert_null(strstr(res.log, secret));
    rz_attempt_free(a);
    rz_registry_free(reg);
}

/* A secret the log tail's cut falls inside: no suffix of it survives. */
static void test_attempt_scrubs_secret_at_cut(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("cutleak", "process",
        "cat >/dev/null; printf 'lead %s%s\\n' \"$RZ_CRED_API_KEY\""
        " \"$(printf '%095d' 0)\" >&2; exit 1\n", &m);
    const char *secret = "TOPSECRET-XYZ";
    rz_attempt_secret sec = { "api-key", secret };
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.secrets = &sec;
    o.n_secrets = 1;
    o.max_log = 100;   /* 5 + 13 + 96 bytes: the cut is 9 bytes into it */
    rz_attempt_result res;
    rz_attempt *a = attempt_run(&o, &res);
    assert_false(res.ok);
    assert_non_null(res.log);
    assert_true(res.log_len <= 100);
    assert_null(strstr(res.log, "XYZ"));
    assert_null(strstr(res.log, "ET-"));
    char zeros[97];
    memset(zeros, '0', 95);
    zeros[95] = '\n';
    zeros[96] = '\0';
    assert_string_equal(res.log, zeros);
    rz_attempt_free(a);

    /* Whole inside the tail: redacted as ever. */
    o.max_log = 200;
    a = attempt_run(&o, &res);
    assert_non_null(res.log);
    assert_non_null(strstr(res.log, "lead [redacted]0000"));
    rz_attempt_free(a);
    rz_registry_free(reg);
}

/* An unsandboxed attempt of module `m` with one secret, "api-key" =
 * `value`, keeping `max_log` bytes of log (0: the default): started. */
static rz_attempt *start_with_secret(const rz_module *m, const char *value, size_t max_log)
{
    rz_attempt_secret sec = { "api-key", value };   /* copied by the start */
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.secrets = &sec;
    o.n_secrets = 1;
    o.scratch_parent = tmp_root;
    o.sandbox = 0;
    o.max_log = max_log;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    return a;
}

/* Live lines hold back what may be the start of a secret: one written in
 * two pieces, a newline in it, is never handed out in part. */
static void test_attempt_live_lines_scrubbed(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("halves", "process",
        "cat >/dev/null; printf 'early\\nkey=AAAA\\n' >&2; sleep 0.5;"
        " printf 'BBBB done\\n' >&2; echo '{\"value\":1}'\n", &m);
    rz_attempt *a = start_with_secret(m, "AAAA\nBBBB", 0);
    rz__buf all = {0};
    bool early_before_end = false;
    uint64_t give_up = rz__now_ms() + 20000;
    int r;
    while ((r = rz_attempt_poll(a, 50)) == 0) {
        assert_true(rz__now_ms() < give_up);
        char *l = rz__attempt_log_lines(a, false);
        if (l && strstr(l, "early"))
            early_before_end = true;
        if (l)
            rz__buf_printf(&all, "%s\n", l);
        free(l);
    }
    assert_int_equal(r, 1);
    char *l = rz__attempt_log_lines(a, true);
    if (l)
        rz__buf_printf(&all, "%s\n", l);
    free(l);
    assert_null(rz__attempt_log_lines(a, true));
    char *text = rz__buf_take(&all);
    assert_non_null(text);
    assert_true(early_before_end);
    assert_string_equal(text, "early\nkey=[redacted] done\n");
    free(text);
    rz_attempt_free(a);
    rz_registry_free(reg);
}

/* A whole line goes as soon as it is written, secrets or not (only a
 * secret with a newline in it can straddle a line's end), scrubbed; the
 * public rz_attempt_log_lines gives what the runner's events give. */
static void test_attempt_live_line_not_held(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("quiet", "process",
        "cat >/dev/null; printf 'first SECRETVALUE123\\n' >&2; sleep 1;"
        " printf 'second\\n' >&2; echo '{\"value\":1}'\n", &m);
    rz_attempt *a = start_with_secret(m, "SECRETVALUE123", 0);
    char *first = NULL;
    uint64_t give_up = rz__now_ms() + 20000;
    int r;
    while ((r = rz_attempt_poll(a, 50)) == 0) {
        assert_true(rz__now_ms() < give_up);
        char *l = NULL;
        assert_int_equal(rz_attempt_log_lines(a, 0, &l), RZ_OK);
        if (l && !first)
            first = l;
        else
            rz_free(l);
    }
    assert_int_equal(r, 1);
    assert_non_null(first);   /* before the end, not at the flush */
    assert_string_equal(first, "first [redacted]");
    rz_free(first);
    char *rest = NULL;
    assert_int_equal(rz_attempt_log_lines(a, 1, &rest), RZ_OK);
    if (rest)
        assert_null(strstr(rest, "SECRETVALUE"));
    rz_free(rest);
    assert_int_equal(rz_attempt_log_lines(NULL, 0, &rest), RZ_EINVAL);
    assert_null(rest);
    rz_attempt_free(a);
    rz_registry_free(reg);
}

/* An attempt with secrets in a process where nothing started libsodium
 * yet (a binding's first call): keeping them must not abort the process.
 * First in the list, before anything else starts it. */
static void test_attempt_secrets_first_call(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("first", "process",
        "cat >/dev/null; echo '{\"value\":1}'\n", &m);
    rz_attempt *a = start_with_secret(m, "SECRETVALUE123", 0);
    uint64_t give_up = rz__now_ms() + 20000;
    while (rz_attempt_poll(a, 50) == 0)
        assert_true(rz__now_ms() < give_up);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    assert_true(res.ok);
    rz_attempt_free(a);
    rz_registry_free(reg);
}

/* Live lines after bytes the adapter no longer held (more log than it
 * keeps between two looks): the window may start inside a secret, and
 * that tail of it is never handed out. Here the whole 119 bytes come at
 * once; the adapter keeps max_log + 13, the window starts 6 bytes into
 * the secret. */
static void test_attempt_live_lines_gap_scrubbed(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("gap", "process",
        "cat >/dev/null; printf 'SECRETVALUE123%0104d\\n' 0 >&2; sleep 0.5;"
        " echo '{\"value\":1}'\n", &m);
    const char *secret = "SECRETVALUE123";
    rz_attempt *a = start_with_secret(m, secret, 100);
    rz__buf all = {0};
    uint64_t give_up = rz__now_ms() + 20000;
    int r;
    while ((r = rz_attempt_poll(a, 50)) == 0) {
        assert_true(rz__now_ms() < give_up);
        char *l = rz__attempt_log_lines(a, false);
        if (l)
            rz__buf_printf(&all, "%s\n", l);
        free(l);
    }
    assert_int_equal(r, 1);
    char *l = rz__attempt_log_lines(a, true);
    if (l)
        rz__buf_printf(&all, "%s\n", l);
    free(l);
    char *text = rz__buf_take(&all);
    for (size_t k = 1; text && k + 4 <= strlen(secret); k++)
        if (strstr(text, secret + k))
            fail_msg("the secret's last %zu bytes in: %s", strlen(secret) - k, text);
    free(text);
    rz_attempt_free(a);
    rz_registry_free(reg);
}

static void test_attempt_unknown_adapter(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("boxed", "docker", NULL, &m);
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.scratch_parent = tmp_root;
    o.container_host = NO_ENGINE;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    /* Finished at once: nothing to wait on, no hang. */
    assert_int_equal(rz_attempt_fd(a), -1);
    assert_int_equal(rz_attempt_poll(a, 0), 1);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    assert_false(res.ok);
    assert_null(res.outputs);
    assert_no_engine(res.reason);
    rz_attempt_free(a);
    assert_int_equal(step_folders_in(tmp_root), 0);
    o.adapter = "nope";
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    assert_int_equal(rz_attempt_poll(a, 0), 1);
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    assert_string_equal(res.reason,
                        "adapter 'nope' is not available on this machine");
    rz_attempt_free(a);
    assert_int_equal(rz_attempt_adapter_check_at("docker", NO_ENGINE),
                     RZ_EUNSUPPORTED);
    assert_no_engine(rz_error_last()->message);
    assert_int_equal(rz_attempt_adapter_check("nope"), RZ_EUNSUPPORTED);
    assert_int_equal(rz_attempt_adapter_check("process"), RZ_OK);
    assert_int_equal(rz_attempt_adapter_check(NULL), RZ_OK);
    rz_registry_free(reg);
}

static void test_attempt_timeout(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("slow", "process",
        "cat >/dev/null; echo 'waiting' >&2; sleep 30\n", &m);
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.timeout_s = 1;
    rz_attempt_result res;
    uint64_t t0 = rz__now_ms();
    rz_attempt *a = attempt_run(&o, &res);
    assert_true(rz__now_ms() - t0 < 10000);
    assert_false(res.ok);
    assert_string_equal(res.reason, "timed out after 1 s");
    assert_true(res.run_ms >= 1000);
    assert_non_null(strstr(res.log, "waiting"));
    rz_attempt_free(a);
    rz_registry_free(reg);
}

static void test_attempt_stop(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("stoppable", "process",
        "cat >/dev/null; echo 'started' >&2; sleep 30\n", &m);
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.scratch_parent = tmp_root;
    o.sandbox = 0;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    assert_int_equal(rz_attempt_poll(a, 300), 0);
    rz_attempt_stop(a);
    uint64_t give_up = rz__now_ms() + 10000;
    while (rz_attempt_poll(a, 100) == 0)
        assert_true(rz__now_ms() < give_up);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    assert_false(res.ok);
    assert_string_equal(res.reason, "stopped");
    rz_attempt_free(a);
    rz_registry_free(reg);
}

static void test_attempt_output_cap(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    /* config.n bytes of outputs, near enough. */
    rz_registry *reg = one_module("sized", "process",
        "n=$(cat | sed 's/.*\"n\":\\([0-9]*\\).*/\\1/');"
        " printf '{\"value\":\"'; head -c \"$n\" /dev/zero | tr '\\0' x;"
        " printf '\"}'\n", &m);
    static const struct { int n; bool ok; } cases[] = {
        { 500, true },      /* under the cap */
        { 1500, false },    /* over it, within what stdout reads */
        { 5000, false },    /* past what stdout reads */
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        char req[80];
        snprintf(req, sizeof req, "{\"inputs\":{},\"config\":{\"n\":%d}}",
                 cases[i].n);
        rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
        o.module = m;
        o.request_json = req;
        o.max_output = 1024;
        rz_attempt_result res;
        rz_attempt *a = attempt_run(&o, &res);
        assert_int_equal(res.ok, cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(strlen(res.outputs), (size_t)cases[i].n + 12);
        else
            assert_string_equal(res.reason, "outputs over 1 KiB");
        rz_attempt_free(a);
    }
    rz_registry_free(reg);
}

static void test_attempt_log_utf8(void **state)
{
    (void)state;
    const rz_module *m = NULL;
    rz_registry *reg = one_module("bytes", "process",
        "cat >/dev/null; printf 'ok \\303\\251 bad \\377\\376 end\\n' >&2;"
        " exit 2\n", &m);
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    rz_attempt_result res;
    rz_attempt *a = attempt_run(&o, &res);
    assert_false(res.ok);
    assert_string_equal(res.log, "ok \xc3\xa9 bad ?? end\n");
    assert_string_equal(res.reason, "exit status 2: ok \xc3\xa9 bad ?? end");
    rz_attempt_free(a);
    rz_registry_free(reg);
}

static void test_attempt_invalid(void **state)
{
    (void)state;
    rz_attempt *a = (rz_attempt *)1;
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_EINVAL);   /* no module */
    assert_null(a);
    assert_int_equal(rz_attempt_start(NULL, &o), RZ_EINVAL);
    assert_int_equal(rz_attempt_poll(NULL, 0), RZ_EINVAL);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(NULL, &res), RZ_EINVAL);
    rz_attempt_stop(NULL);
    rz_attempt_free(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_tmp, teardown_tmp)

/* A new cell's process lives on: its cgroups have the first step's limits
 * from the start (they once had 0 until the step's were written, and on
 * cgroup v1 a memory limit of 0 OOM-killed it at its first touched page,
 * which the silent resend hid). Fresh cells, rounds of two steps each. */
static void test_sandbox_new_cell_survives(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        !rz__sandbox_has_cgroup())
        skip();
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    for (int round = 0; round < 8; round++) {
        helper_restart();
        pid_t cell[2][8];
        size_t n[2];
        for (int k = 0; k < 2; k++) {
            rz_proc *p = run_sh(&o, "echo '{}'");
            assert_int_equal(rz_proc_exit_code(p), 0);
            rz_proc_free(p);
            n[k] = rz__sbx_cell_pids(cell[k], 8);
        }
        /* One cell, the same process for both steps. */
        assert_int_equal(n[0], 1);
        assert_int_equal(n[1], 1);
        assert_int_equal(cell[0][0], cell[1][0]);
        assert_int_equal(kill(cell[1][0], 0), 0);
    }
}

/* Our children named rz-step-init (zombies too): a cell's spare init,
 * made ahead between steps, is one; at most `max` pids into out. */
static size_t spare_inits(pid_t *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && n < max) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = e->d_name[0] >= '1' && e->d_name[0] <= '9'
                      ? fopen(path, "re") : NULL;
        size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[got] = '\0';
        char *close_paren = strrchr(buf, ')');
        long ppid = 0;
        if (got && strstr(buf, "(rz-step-init)") && close_paren &&
            sscanf(close_paren + 1, " %*c %ld", &ppid) == 1 &&
            ppid == (long)getpid())
            out[n++] = (pid_t)atol(e->d_name);
    }
    if (d)
        closedir(d);
    return n;
}

static pid_t await_spare(void)
{
    pid_t got[4];
    for (int i = 0; i < 200; i++) {
        if (spare_inits(got, 4) == 1)
            return got[0];
        sleep_ms(10);
    }
    fail_msg("no spare init appeared");
    return -1;
}

/* A cell makes the next step's init ahead once the runner is done with
 * a step: the next step without network runs in it (and it is gone with
 * that step), a step with network does not (a fresh init joins the
 * host's network); the runner's leftover kill spares it; an idle cell's
 * end reaps it (no zombie left). */
static void test_sandbox_spare_init(void **state)
{
    (void)state;
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        !rz__sandbox_has_cgroup())
        skip();
    rz__sbx_test_cells(true);
    pid_t none[4];
    assert_int_equal(spare_inits(none, 4), 0);
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    rz_proc *p = run_sh(&o, "echo '{}'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
    pid_t first = await_spare();
    p = run_sh(&o, "echo '{}'");   /* in `first` */
    assert_int_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
    pid_t second = await_spare();
    assert_int_not_equal(second, first);
    o.network = 1;
    p = run_sh(&o, "echo '{}'");
    assert_int_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
    o.network = 0;
    sleep_ms(50);
    pid_t after[4];
    assert_int_equal(spare_inits(after, 4), 1);
    assert_int_equal(after[0], second);   /* neither used nor killed */
    rz__sbx_test_cells(true);   /* the idle cell ends */
    assert_int_equal(spare_inits(after, 4), 0);
}

/* A cell's end reads every spare's note on the cell's socket, also
 * past the ECONNRESET that comes first when the cell's process died with
 * a message of ours unread (the last 'f': a spare is made as the last
 * step's init ends, before the runner's 'f' is read), and reaps that
 * spare. Here the "spare" is a child that notes itself and keeps only
 * its end of the socket, closing it last with our message unread. */
static void test_sandbox_cell_end_past_reset(void **state)
{
    (void)state;
    int sv[2], gate[2], on = 1;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &on,
                                sizeof on), 0);
    assert_int_equal(pipe(gate), 0);
    assert_int_equal(send(sv[0], "f\0\0\0\0\0\0\0", 8, 0), 8);   /* unread */
    pid_t spare = fork();
    assert_true(spare >= 0);
    if (spare == 0) {
        int32_t note[2] = { RZ__SBX_SPARE_NOTE, 0 };
        close(sv[0]);
        close(gate[1]);
        if (send(sv[1], note, sizeof note, 0) != sizeof note)
            _exit(1);
        close(sv[1]);   /* the last copy: our 'f' unread, ECONNRESET */
        char c;
        (void)!read(gate[0], &c, 1);   /* until killed */
        _exit(0);
    }
    close(sv[1]);
    close(gate[0]);
    struct pollfd pf = { sv[0], POLLIN, 0 };
    while (poll(&pf, 1, 5000) == 1 && !(pf.revents & POLLHUP))
        sleep_ms(5);   /* the note queued, the other end gone */
    assert_true(pf.revents & POLLHUP);
    pid_t noted = -1;
    rz__sbx_helper_cell_end(sv[0], &noted);
    int status = 0;
    pid_t r = waitpid(spare, &status, WNOHANG);
    if (r == 0) {
        kill(spare, SIGKILL);
        waitpid(spare, NULL, 0);
        fail_msg("the spare was neither killed nor reaped");
    }
    assert_int_equal(r, -1);   /* reaped by the cell's end */
    assert_int_equal(errno, ECHILD);
    assert_int_equal(noted, -1);
    close(sv[0]);
    close(gate[1]);
}

/* The sandbox helper: identity, roots, start. */
static const struct CMUnitTest helper_tests[] = {
    T(test_hostile_resolver_only_with_network),
    T(test_hostile_submount_read_only),
    T(test_sandbox_signals_default),
    T(test_sandbox_runner_ignored_signal_kept),
    cmocka_unit_test_setup_teardown(test_sandbox_helper_own_program,
                                    setup_tmp, teardown_own_program),
    T(test_sandbox_cell_lower_limit_after_tmp),
    T(test_sandbox_cell_lower_limit_refused),
    T(test_sandbox_mem_bytes),
    T(test_sandbox_start_lost_answer),
    T(test_sandbox_start_lost_answer_no_cgroup),
    T(test_sandbox_no_env_hook),
    T(test_sandbox_uid_lock),
    T(test_sandbox_cell_net_fresh),
    T(test_sandbox_cell_net_reuse),
    T(test_sandbox_cell_net_flowlabel_gone),
    T(test_sandbox_cell_net_listeners_gone),
    T(test_sandbox_cell_net_apart),
    T(test_sandbox_cell_net_unchanged),
    T(test_sandbox_net_setting),
    T(test_sandbox_cell_net_etc_apart),
    T(test_hostile_init_and_cgroup_names),
    T(test_hostile_cgroup_joined_by_thread),
    T(test_hostile_cgroup_holds_every_thread),
    T(test_scratch_reuse_refuses_step_owned),
    T(test_sandbox_new_cell_survives),
    T(test_sandbox_spare_init),
    T(test_sandbox_cell_end_past_reset),
};

/* RZ_TEST_FILTER=test_hostile_* runs only the matching tests. */
static void only_matching(void)
{
    const char *only = getenv("RZ_TEST_FILTER");
    if (only && *only)
        cmocka_set_test_filter(only);
}

/* The attempt layer's (rz_attempt_*). */
static const struct CMUnitTest attempt_tests[] = {
        T(test_attempt_request_file),
        T(test_attempt_outputs_file),
        T(test_attempt_scrubs_secrets),
        T(test_attempt_scrubs_secret_at_cut),
        T(test_attempt_live_lines_scrubbed),
        T(test_attempt_live_lines_gap_scrubbed),
        T(test_attempt_live_line_not_held),
        T(test_attempt_unknown_adapter),
        T(test_attempt_timeout),
        T(test_attempt_stop),
        T(test_attempt_output_cap),
        T(test_attempt_log_utf8),
        T(test_attempt_invalid),
};

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_attempt_secrets_first_call),
        T(test_stdout_json),
        T(test_output_file),
        T(test_bad_outputs),
        T(test_stdin_request),
        T(test_exit_codes),
        T(test_signals),
        T(test_stderr_tail),
        T(test_stdout_cap),
        T(test_timeout_kills_group),
        T(test_kill_and_free_while_running),
        T(test_child_stack_has_a_guard_page),
        T(test_fd_wakes_on_exit),
        T(test_no_fd_leak),
        T(test_stdin_not_read),
        T(test_short_input_written_at_start),
        T(test_environment),
        T(test_limits),
        T(test_scratch_removed),
        T(test_module_dir_runs_a_relative_program),
        T(test_module_dir_resolves_every_dot_slash_word),
        T(test_module_dir_resolved_only_when_used),
        T(test_dot_slash_without_a_module_dir_is_einval),
        T(test_unknown_program_is_enoent),
        T(test_non_executable_is_eexec),
        T(test_invalid_options),
        T(test_sandbox),
        T(test_sandbox_network_and_exit),
        T(test_runner_wordcount),
        T(test_runner_flaky),
        T(test_runner_retry_due_between_reads),
        T(test_runner_branch),
        T(test_runner_failure),
        T(test_runner_env),
        T(test_runner_live_log),
        T(test_runner_parallel),
        T(test_runner_wait_is_not_timed),
        T(test_runner_timeout),
        T(test_runner_cancel),
        T(test_runner_removes_stale_folders),
        T(test_runner_keeps_other_namespaces_folders),
        T(test_runner_invalid),
        T(test_runner_scratch_reuse),
        T(test_runner_scratch_fresh_sandboxed),
        T(test_runner_records_run),
        T(test_runner_records_in_open_store),
        T(test_runner_first_record),
        T(test_runner_tells_when_recorded),
        T(test_hostile_etc_and_identity),
        T(test_hostile_host_uid),
        T(test_sandbox_helper_restarts),
        T(test_hostile_userns_and_ptrace),
        T(test_hostile_fork_bomb),
        T(test_hostile_scratch_quota),
        T(test_hostile_scratch_per_manifest),
        T(test_hostile_output_cap),
        T(test_hostile_memory_default),
    };
    only_matching();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += cmocka_run_group_tests(attempt_tests, NULL, NULL);
    return failed + cmocka_run_group_tests(helper_tests, NULL, NULL);
}
