/* Scratch folders left by a killed process are swept by the next process
 * that makes one in the same parent; a live process's, another user's and
 * another pid namespace's are kept (lib/exec/scratch_sweep.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/adapter.h"
#include "exec/exec_impl.h"

static char parent[64];

static void make(const char *name, uid_t owner)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", parent, name);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/%s/in", parent, name);
    assert_int_equal(mkdir(path, 0700), 0);   /* not empty: a whole tree goes */
    if (owner != geteuid()) {
        snprintf(path, sizeof path, "%s/%s", parent, name);
        assert_int_equal(chown(path, owner, owner), 0);
    }
}

static bool there(const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", parent, name);
    return stat(path, &st) == 0;
}

/* A pid that existed and is gone: a child reaped. */
static long dead_pid(void)
{
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0)
        _exit(0);
    assert_int_equal(waitpid(p, NULL, 0), p);
    return (long)p;
}

static void test_dead_makers_swept(void **state)
{
    (void)state;
    snprintf(parent, sizeof parent, "/tmp/rz-sweep-test-XXXXXX");
    assert_non_null(mkdtemp(parent));
    unsigned long long ns = rz__exec_pidns();
    assert_true(ns != 0);
    char dead[64], live[64], other_ns[64], old_style[] = "rz-abcdef", bad[64],
         foreign[64];
    long gone = dead_pid();
    snprintf(dead, sizeof dead, "rz-%llx-%ld-AbC123", ns, gone);
    snprintf(live, sizeof live, "rz-%llx-%ld-AbC123", ns, (long)getppid());
    snprintf(other_ns, sizeof other_ns, "rz-%llx-%ld-AbC123", ns + 1, gone);
    snprintf(bad, sizeof bad, "rz-%llx-%ld-toolongname", ns, gone);
    snprintf(foreign, sizeof foreign, "rz-%llx-%ld-XyZ789", ns, gone);
    make(dead, geteuid());
    make(live, geteuid());
    make(other_ns, geteuid());
    make(old_style, geteuid());
    make(bad, geteuid());
    bool root = geteuid() == 0;
    if (root)
        make(foreign, 65534);
    char *mine = NULL;
    assert_int_equal(rz__exec_mkdtemp(parent, &mine), RZ_OK);
    /* The sweep runs on its own thread: wait for it (bounded). */
    for (int i = 0; i < 200 && there(dead); i++)
        nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
    assert_false(there(dead));
    assert_true(there(live));
    assert_true(there(other_ns));
    assert_true(there(old_style));
    assert_true(there(bad));
    if (root)
        assert_true(there(foreign));
    /* The new folder carries its maker: this process in this namespace. */
    char want[160];
    snprintf(want, sizeof want, "%s/rz-%llx-%ld-", parent, ns, (long)getpid());
    assert_memory_equal(mine, want, strlen(want));
    assert_int_equal(strlen(mine), strlen(want) + 6);
    free(mine);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", parent);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_makers_swept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
