/* A runner started chrooted into a folder that is a mount point (schroot,
 * `unshare --root`, mock): the sandbox's steps still see only its root.
 * A cell's network step is cloned from the cell's second mount namespace
 * and the cell goes back to its own; entering a namespace puts the
 * process at the top mount on its root, here the host's `/`, so each
 * switch must set the sandbox's root again. The case runs in a child of
 * its own (its own mount namespace; the probe runs once per process).
 * The early zygote, which enters the helper's namespace, too. */
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/sandbox.h"
#include "exec/sandbox_helper.h"
#include "rhizos/exec.h"

#define SKIPPED 77
#define PASSED 7

/* What `script` printed on stderr through the sandbox, with network or
 * not, or NULL where it could not start. Its exit code in *code. */
static char *step_log(const char *scratch, const char *script, bool net,
                      int *code)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.network = net;
    o.argv = argv;
    o.scratch_parent = scratch;
    rz_proc *p = NULL;
    if (rz_proc_spawn(&p, &o) != RZ_OK) {
        fprintf(stderr, "spawn: %s\n", rz_error_last()->message);
        return NULL;
    }
    while (rz_proc_poll(p, 1000) != 1)
        ;
    size_t len;
    const char *log = rz_proc_log(p, &len);
    char *s = rz__strndup(log, len);
    *code = rz_proc_exit_code(p);
    rz_proc_free(p);
    return s;
}

/* Steps without network, with, and two without again, in one cell: each
 * runs and none sees the host's /var or this source tree. The cell made
 * by the probe (the early zygote, which enters the helper's namespace)
 * serves them: it is not lost for a new one. */
static int steps_in_cell(void)
{
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    char scratch[] = "/tmp/rz-test-chroot-scratch-XXXXXX";
    if (!mkdtemp(scratch))
        return 1;
    pid_t before[8], after[8];
    size_t nb = rz__sbx_cell_pids(before, 8);   /* the early zygote's */
    const char *script =
        "test -e /var && echo host-var >&2;"
        " test -e '" RZ_SOURCE_ROOT "/meson.build' && echo host-tree >&2;"
        " echo ran >&2";
    int rc = PASSED;
    for (int i = 0; i < 4; i++) {
        int code = -1;
        char *log = step_log(scratch, script, i == 1, &code);
        if (!log || code != 0 || strcmp(log, "ran\n") != 0) {
            fprintf(stderr, "step %d (network %d): exit %d: %s\n", i, i == 1,
                    code, log ? log : "not started");
            rc = 2;
        }
        free(log);
    }
    size_t na = rz__sbx_cell_pids(after, 8);
    for (size_t i = 0; i < nb; i++) {
        bool kept = false;
        for (size_t j = 0; j < na; j++)
            kept |= after[j] == before[i];
        if (!kept) {
            fprintf(stderr, "cell %ld, made before the steps, is gone\n",
                    (long)before[i]);
            rc = 3;
        }
    }
    rmdir(scratch);
    return rc;
}

/* This process in a mount namespace of its own, chrooted into `dir` with
 * the whole of `/` bound recursively on it: `/` is then a mount point's
 * folder, not the namespace's root. */
static int chrooted_child(const char *dir)
{
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("/", dir, NULL, MS_BIND | MS_REC, NULL) != 0)
        return SKIPPED;
    if (chroot(dir) != 0 || chdir("/") != 0)
        return 1;
    return steps_in_cell();
}

static void test_chrooted_runner_steps_see_only_the_root(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char dir[] = "/tmp/rz-test-chroot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);   /* a hang fails the case (killed), not meson's wait */
        _exit(chrooted_child(dir));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    rmdir(dir);   /* the binds went with the child's namespace */
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == SKIPPED)
        skip();
    assert_int_equal(WEXITSTATUS(status), PASSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chrooted_runner_steps_see_only_the_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
