/* A process that ends while the sandbox's probe runs on another thread (a
 * `flow run` of a flow with errors): exit does not wait for a probe that
 * waits for the helper or its step, and never cuts one short while it
 * holds its step's host folder (/tmp/rz-probe-*), which is gone after.
 * And a run started while the probe goes on (`flow run`'s start) records
 * itself before it waits for the probe; the first cell's zygote is in its
 * cgroups before the probe has the helper's answer (its root built). Each case probes in a child of
 * its own (the probe runs once per process); this process never probes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/sandbox.h"
#include "rhizos/exec.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/store.h"

#define SKIPPED 77
#define EXITED 7

static int note[2];

static void *probe_thread(void *arg)
{
    (void)arg;
    (void)rz_sandbox_available();
    (void)!write(note[1], "done", 5);   /* it never stopped where asked */
    return NULL;
}

/* What the probe said, up to its NUL. */
static void read_note(char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap && read(note[0], buf + n, 1) == 1 && buf[n])
        n++;
    buf[n] = '\0';
}

/* The child: probe on a thread, held at `where`; tell `up` what it holds,
 * then exit(EXITED) with it held. */
static _Noreturn void child(int where, int hold, int up)
{
    char what[128];
    rz__sbx_test_probe_hold(where, note[1], hold);
    pthread_t t;
    if (pthread_create(&t, NULL, probe_thread, NULL) != 0)
        _exit(1);
    read_note(what, sizeof what);
    if (strcmp(what, "done") == 0)
        _exit(SKIPPED);   /* no helper here: nothing held */
    (void)!write(up, what, strlen(what) + 1);
    exit(EXITED);
}

/* The child's exit status once it ends, within `ms`; -1 if it has not. */
static int wait_ms(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        struct timespec one = { 0, 1000000L };
        nanosleep(&one, NULL);
    }
    return -1;
}

static pid_t start(int where, int hold[2], int up[2], char *what, size_t cap)
{
    assert_int_equal(pipe(note), 0);
    assert_int_equal(pipe(hold), 0);
    assert_int_equal(pipe(up), 0);
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(up[0]);
        close(hold[1]);
        child(where, hold[0], up[1]);
    }
    close(note[0]);
    close(note[1]);
    close(hold[0]);
    close(up[1]);
    size_t n = 0;
    while (n + 1 < cap && read(up[0], what + n, 1) == 1 && what[n])
        n++;
    what[n] = '\0';
    return pid;
}

static void test_exit_cuts_short_a_probe_that_waits(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();   /* the helper runs only as root */
    int hold[2], up[2];
    char what[128];
    pid_t pid = start(RZ__SBX_HOLD_WAITING, hold, up, what, sizeof what);
    int code = wait_ms(pid, 20000);
    if (code < 0)
        kill(pid, SIGKILL);
    close(hold[1]);
    close(up[0]);
    if (code == SKIPPED)
        skip();
    /* Held for good: only an exit that does not wait for it ends. */
    assert_string_equal(what, "root");
    assert_int_equal(code, EXITED);
}

static void test_exit_waits_for_the_probes_folder(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    int hold[2], up[2];
    char what[128];
    pid_t pid = start(RZ__SBX_HOLD_FOLDER, hold, up, what, sizeof what);
    int code = wait_ms(pid, 200);
    if (code == SKIPPED) {
        close(hold[1]);
        close(up[0]);
        skip();
    }
    assert_int_equal(strncmp(what, "/tmp/rz-probe-", 14), 0);
    /* Exit is under way, the probe holds its folder: exit waits. */
    assert_int_equal(code, -1);
    assert_int_equal(access(what, F_OK), 0);
    assert_int_equal(write(hold[1], "g", 1), 1);
    code = wait_ms(pid, 20000);
    if (code < 0)
        kill(pid, SIGKILL);
    close(hold[1]);
    close(up[0]);
    assert_int_equal(code, EXITED);
    assert_int_not_equal(access(what, F_OK), 0);   /* removed before exit */
}

static char data_dir[64];

static void *run_thread(void *arg)
{
    static const char src[] =
        "{\"id\":\"one\",\"name\":\"one\",\"version\":\"1.0.0\","
        "\"nodes\":[{\"id\":\"n0\",\"moduleId\":\"sh\",\"needs\":[]}],"
        "\"connections\":[]}";
    (void)arg;
    rz_registry *reg = NULL;
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    rz_run *run = NULL;
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.sandbox = 1;
    o.run_id = "run-ahead";
    o.data_dir = data_dir;
    if (rz_registry_new(&reg) != RZ_OK ||
        rz_registry_add_dir(reg, RZ_SOURCE_ROOT "/bench/runner/modules",
                            NULL) != RZ_OK ||
        rz_diags_new(&d) != RZ_OK ||
        rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_JSON, "one.json",
                      d) != RZ_OK ||
        rz_flow_validate(f, reg, d) != RZ_OK ||
        rz_runner_run(&run, f, &o) != RZ_OK)
        _exit(2);
    return NULL;
}

/* The run's record is there, within `ms`. */
static bool recorded_within(int ms)
{
    for (int i = 0; i < ms; i++) {
        rz_store *st = NULL;
        char *rec = NULL;
        bool there = rz_store_open(&st, data_dir) == RZ_OK &&
                     rz_store_run_get(st, "run-ahead", &rec) == RZ_OK;
        rz_free(rec);
        rz_store_close(st);
        if (there)
            return true;
        struct timespec one = { 0, 1000000L };
        nanosleep(&one, NULL);
    }
    return false;
}

static void test_first_record_before_the_probe_ends(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    snprintf(data_dir, sizeof data_dir, "/tmp/rz-test-sbx-exit-XXXXXX");
    assert_non_null(mkdtemp(data_dir));
    int hold[2];
    char what[128];
    assert_int_equal(pipe(note), 0);
    assert_int_equal(pipe(hold), 0);
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rz__sbx_test_probe_hold(RZ__SBX_HOLD_WAITING, note[1], hold[0]);
        pthread_t t;
        if (pthread_create(&t, NULL, probe_thread, NULL) != 0)
            _exit(1);
        read_note(what, sizeof what);
        if (strcmp(what, "done") == 0)
            _exit(SKIPPED);
        /* The probe held for good: the run waits for it before its step. */
        if (pthread_create(&t, NULL, run_thread, NULL) != 0)
            _exit(1);
        _exit(recorded_within(20000) ? EXITED : 3);
    }
    close(hold[0]);
    int code = wait_ms(pid, 30000);
    if (code < 0)
        kill(pid, SIGKILL);
    close(hold[1]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    assert_int_equal(system(cmd), 0);
    if (code == SKIPPED)
        skip();
    assert_int_equal(code, EXITED);
}

/* A child of ours named rz-sandbox-cell whose cgroups are a step's
 * ("/rz-PID-SEQ"), within about `ms` (pgrep's time not counted). */
static bool zygote_in_cgroups_within(int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        char cmd[160], line[64] = "";
        snprintf(cmd, sizeof cmd,
                 "for p in $(pgrep -P %ld -x rz-sandbox-cell); do "
                 "grep -q ':/.*rz-%ld-' /proc/$p/cgroup && echo in; done",
                 (long)getpid(), (long)getpid());
        FILE *f = popen(cmd, "r");
        bool in = f && fgets(line, sizeof line, f) && strncmp(line, "in", 2) == 0;
        if (f)
            pclose(f);
        if (in)
            return true;
        struct timespec ten = { 0, 10000000L };
        nanosleep(&ten, NULL);
    }
    return false;
}

static void test_first_cell_joins_before_the_root(void **state)
{
    (void)state;
    if (geteuid() != 0 || system("command -v pgrep >/dev/null") != 0)
        skip();
    int hold[2];
    char what[128];
    assert_int_equal(pipe(note), 0);
    assert_int_equal(pipe(hold), 0);
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rz__sbx_test_probe_hold(RZ__SBX_HOLD_WAITING, note[1], hold[0]);
        pthread_t t;
        if (pthread_create(&t, NULL, probe_thread, NULL) != 0)
            _exit(1);
        read_note(what, sizeof what);
        if (strcmp(what, "done") == 0)
            _exit(SKIPPED);
        /* Held before it reads the helper's first answer. */
        _exit(zygote_in_cgroups_within(5000) ? EXITED : 3);
    }
    close(hold[0]);
    int code = wait_ms(pid, 30000);
    if (code < 0)
        kill(pid, SIGKILL);
    close(hold[1]);
    if (code == SKIPPED)
        skip();
    assert_int_equal(code, EXITED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_cuts_short_a_probe_that_waits),
        cmocka_unit_test(test_exit_waits_for_the_probes_folder),
        cmocka_unit_test(test_first_record_before_the_probe_ends),
        cmocka_unit_test(test_first_cell_joins_before_the_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
