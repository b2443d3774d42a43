/* A helper gone right after forking its early zygote (killed, out of
 * memory), before any answer: that zygote, the runner's child, is killed
 * and reaped, not left a zombie, and the early cell's cgroups are removed.
 * Its own executable: the hook must be set before the probe, which runs
 * once per process. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/exec_impl.h"
#include "exec/sandbox.h"
#include "exec/sandbox_helper.h"
#include "rhizos/exec.h"

/* Children of this process (any state, zombies included). */
static int children(void)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = e->d_name[0] >= '1' && e->d_name[0] <= '9'
                      ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        const char *close = strrchr(buf, ')');
        char state;
        long ppid;
        if (close && sscanf(close + 1, " %c %ld", &state, &ppid) == 2 &&
            ppid == (long)getpid())
            n++;
    }
    closedir(d);
    return n;
}

/* This process's cgroups left (rz-<pid>-*), in any hierarchy. */
static int cgroups_left(void)
{
    char cmd[256], out[64] = "";
    snprintf(cmd, sizeof cmd,
             "find /sys/fs/cgroup -maxdepth 6 -type d -name 'rz-%ld-*' "
             "2>/dev/null | wc -l", (long)getpid());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(out, sizeof out, p))
        out[0] = 0;
    pclose(p);
    return atoi(out);
}

static void test_helper_lost_before_root(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    rz__sbx_test_die_before_root(true);
    (void)rz_sandbox_available();   /* the probe: its helper dies */
    rz__sbx_test_die_before_root(false);
    if (!rz__sandbox_has_cgroup())
        skip();   /* no early cell was made */
    assert_int_equal(children(), 0);
    assert_int_equal(cgroups_left(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helper_lost_before_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
