/* The sandbox's first cell is made ahead, while the runner starts: once the
 * probe has seen the helper work, one cell (cgroups and their zygote)
 * exists before any step asked for one, and the first step runs in it, with
 * its own limits written then (the cell is made with none); its check runs
 * the helper's own program. Its own executable: the probe runs once per
 * process, and this must be the first. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/exec_impl.h"
#include "exec/sandbox.h"
#include "exec/sandbox_helper.h"
#include "rhizos/exec.h"

static char tmp_root[64];

static rz_proc *run_to_end(rz_proc_opts *o, const char *const *argv)
{
    o->argv = argv;
    o->scratch_parent = tmp_root;
    rz_proc *p = NULL;
    if (rz_proc_spawn(&p, o) != RZ_OK)
        fail_msg("spawn: %s", rz_error_last()->message);
    uint64_t give_up = rz__now_ms() + 20000;
    int r = 0;
    while (r == 0 && rz__now_ms() < give_up)
        assert_true((r = rz_proc_poll(p, 100)) >= 0);
    assert_int_equal(r, 1);
    return p;
}

/* A child of ours named `comm` (the sandbox's processes are: CLONE_PARENT),
 * waited for up to 10 s; its pid, or -1. */
static pid_t child_named(const char *comm)
{
    uint64_t give_up = rz__now_ms() + 10000;
    do {
        DIR *d = opendir("/proc");
        struct dirent *e;
        pid_t found = -1;
        while (d && found < 0 && (e = readdir(d))) {
            char path[300], buf[512];
            snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
            FILE *f = e->d_name[0] > '0' && e->d_name[0] <= '9' ? fopen(path, "re") : NULL;
            size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
            if (f)
                fclose(f);
            buf[n] = '\0';
            char *open = strchr(buf, '('), *close = strrchr(buf, ')');
            if (!open || !close || close < open)
                continue;
            *close = '\0';
            int ppid = 0;
            if (strcmp(open + 1, comm) == 0 && sscanf(close + 2, "%*c %d", &ppid) == 1 &&
                ppid == getpid())
                found = atoi(e->d_name);
        }
        if (d)
            closedir(d);
        if (found > 0)
            return found;
        usleep(10000);
    } while (rz__now_ms() < give_up);
    return -1;
}

static void test_first_cell_made_ahead(void **state)
{
    (void)state;
    if (geteuid() != 0 || !rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        !rz__sandbox_has_cgroup() || system("command -v python3 >/dev/null 2>&1") != 0)
        skip();
    pid_t before[4], after[4];
    /* Waits for the one being made, as a step would. */
    size_t n = rz__sbx_cell_pids(before, 4);
    assert_int_equal(n, 1);
    /* Its first step's init is made ahead too (a spare, the runner's
     * child as every init), and that step takes it. */
    pid_t spare = child_named("rz-step-init");
    assert_true(spare > 0);
    /* The first step takes it, its memory cap written then: 256 MiB under
     * a 64 MiB cap is killed. */
    const char *const hog[] = { "python3", "-c", "b = bytearray(256 << 20)", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.memory_mb = 64;
    rz_proc *p = run_to_end(&o, hog);
    assert_int_not_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
    assert_true(kill(spare, 0) != 0 && errno == ESRCH);   /* it ran the step */
    /* No other cell was made for it (its own may have gone with the
     * kill: the OOM killer may take the zygote too). */
    n = rz__sbx_cell_pids(after, 4);
    assert_true(n <= 1);
    if (n == 1)
        assert_int_equal(after[0], before[0]);
    /* The next step runs, within the same limits as any. */
    const char *const ok[] = { "sh", "-c", "printf '{}'", NULL };
    o.memory_mb = 0;
    p = run_to_end(&o, ok);
    assert_int_equal(rz_proc_exit_code(p), 0);
    rz_proc_free(p);
}

/* The first step's check (before any step: this runs first) is the
 * helper's own program, which starts no libc: a static executable. */
static void test_check_is_the_helpers_program(void **state)
{
    (void)state;
    if (geteuid() != 0 || !rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        rz__sbx_true_len == 0)
        skip();
    assert_string_equal(rz__sbx_check_exe(), RZ__SBX_TRUE_PATH);
    const unsigned char *e = rz__sbx_true;
    assert_true(rz__sbx_true_len > 64 && memcmp(e, "\177ELF", 4) == 0);
    assert_int_equal(e[16], 2);   /* ET_EXEC: no interpreter, no loader */
}

/* After the first step passed its check, the program is in every step's
 * root as the helper wrote it: root's, read-only, runs. */
static void test_check_program_in_the_root(void **state)
{
    (void)state;
    if (geteuid() != 0 || !rz_sandbox_available() || rz__sbx_helper_pid() <= 0 ||
        rz__sbx_true_len == 0)
        skip();
    assert_null(rz__sbx_check_exe());   /* the first step passed it */
    const char *const look[] = {
        "sh", "-c", "p=" RZ__SBX_TRUE_PATH "; [ \"$(stat -c %u:%a $p)\" = 0:755 ]"
        " && ! [ -w $p ] && $p && [ -r /etc/passwd ] && printf '{}'", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    rz_proc *p = run_to_end(&o, look);
    size_t len;
    const char *log = rz_proc_log(p, &len);
    if (rz_proc_exit_code(p) != 0)
        fail_msg("exit %d: %.*s", rz_proc_exit_code(p), (int)len, log);
    rz_proc_free(p);
}

int main(void)
{
    /* An embedding program's tight umask: what the helper writes into the
     * root (the check program, /etc) must still be the step's to read. */
    umask(077);
    snprintf(tmp_root, sizeof tmp_root, "/tmp/rz-test-ahead-XXXXXX");
    if (!mkdtemp(tmp_root))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_is_the_helpers_program),
        cmocka_unit_test(test_first_cell_made_ahead),
        cmocka_unit_test(test_check_program_in_the_root),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? rc : 1;
}
