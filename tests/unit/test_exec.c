/* Unit tests of the process adapter (rz_proc_*) and the local runner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "exec/exec_impl.h"
#include "rhizos/exec.h"

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
    assert_int_equal(rz_proc_exit_code(p), 0);
    assert_null(rz_proc_outputs(p));
    assert_non_null(strstr(rz__proc_output_error(p), "exceeds"));
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

static void test_module_dir_resolution(void **state)
{
    (void)state;
    char mod[300], script[340];
    snprintf(mod, sizeof mod, "%s/mod", tmp_root);
    assert_int_equal(mkdir(mod, 0755), 0);
    snprintf(script, sizeof script, "%s/hello.sh", mod);
    write_file(script, "#!/bin/sh\nprintf '{\"hello\":\"%s\"}' \"$1\"\n",
               0755);
    char scratch[300];
    snprintf(scratch, sizeof scratch, "%s/scratch", tmp_root);
    assert_int_equal(mkdir(scratch, 0700), 0);

    const char *direct[] = { "./hello.sh", "world", NULL };
    const char *via_sh[] = { "sh", "./hello.sh", "./relative", NULL };
    const char *const *cmds[] = { direct, via_sh };
    const char *want[] = { "world", NULL };
    for (size_t i = 0; i < 2; i++) {
        rz_proc_opts o = RZ_PROC_OPTS_INIT;
        o.sandbox = 0;
        o.argv = cmds[i];
        o.module_dir = mod;
        o.scratch_parent = scratch;
        rz_proc *p = NULL;
        assert_int_equal(rz_proc_spawn(&p, &o), RZ_OK);
        finish(p);
        cJSON *j = outputs_of(p);
        if (want[i]) {
            assert_string_equal(str_field(j, "hello"), want[i]);
        } else {   /* every ./ word is resolved, not only the first */
            char expect[400];
            snprintf(expect, sizeof expect, "%s/relative", mod);
            assert_string_equal(str_field(j, "hello"), expect);
        }
        cJSON_Delete(j);
        rz_proc_free(p);
    }

    /* ./ without a module folder, unknown programs, non-executables. */
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 0;
    o.scratch_parent = scratch;
    rz_proc *p = NULL;
    o.argv = direct;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EINVAL);
    assert_null(p);
    const char *missing[] = { "rz-no-such-program-anywhere", NULL };
    o.argv = missing;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_ENOENT);
    assert_null(p);
    char plain[340];
    snprintf(plain, sizeof plain, "%s/plain.txt", mod);
    write_file(plain, "not a program\n", 0644);
    const char *noexec[] = { plain, NULL };
    o.argv = noexec;
    assert_int_equal(rz_proc_spawn(&p, &o), RZ_EEXEC);
    assert_null(p);
    assert_true(dir_is_empty(scratch));
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup_tmp, teardown_tmp)

int main(void)
{
    const struct CMUnitTest tests[] = {
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
        T(test_fd_wakes_on_exit),
        T(test_stdin_not_read),
        T(test_environment),
        T(test_limits),
        T(test_scratch_removed),
        T(test_module_dir_resolution),
        T(test_invalid_options),
        T(test_sandbox),
        T(test_sandbox_network_and_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
