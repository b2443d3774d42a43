/* Scratch folders left by a killed process are swept by the next process
 * that makes one in the same parent; a live process's, another user's and
 * another pid namespace's are kept (lib/exec/scratch_sweep.c). By default
 * that parent is the user's private folder TMPDIR/rhizos-runs-UID, used
 * only when it is a folder of ours that no one else may use. */
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

static char parent[160];

static void make(const char *name, uid_t owner)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", parent, name);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/%s/in", parent, name);
    assert_int_equal(mkdir(path, 0700), 0);   /* not empty: a whole tree goes */
    if (owner != geteuid()) {
        snprintf(path, sizeof path, "%s/%s", parent, name);
        assert_int_equal(chown(path, owner, owner), 0);
    }
}

static bool there_at(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool there(const char *name)
{
    char path[512];
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
    char want[256];
    snprintf(want, sizeof want, "%s/rz-%llx-%ld-", parent, ns, (long)getpid());
    assert_memory_equal(mine, want, strlen(want));
    assert_int_equal(strlen(mine), strlen(want) + 6);
    free(mine);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", parent);
    assert_int_equal(system(cmd), 0);
}

/* Waits (bounded) until path is gone; whether it went. */
static bool gone_soon(const char *path)
{
    struct stat st;
    for (int i = 0; i < 200 && lstat(path, &st) == 0; i++)
        nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
    return lstat(path, &st) != 0;
}

static void rm_rf(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

/* The folder that holds `path` (cut at the last slash), in buf. */
static const char *dirname_of(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    assert_non_null(slash);
    *slash = '\0';
    return buf;
}

/* A dead maker's folder name (for this namespace). */
static void dead_name(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "rz-%llx-%ld-%s", rz__exec_pidns(), dead_pid(), tag);
}

/* With no parent given, scratch goes in TMPDIR/rhizos-runs-UID, made
 * private; made just now, TMPDIR itself is swept once (folders of earlier
 * versions); existing, only it is read: a dead folder in TMPDIR stays. */
static void test_default_parent_is_users_folder(void **state)
{
    (void)state;
    char tmp[64], mine_dir[128], dead[64], where[512];
    snprintf(tmp, sizeof tmp, "/tmp/rz-userdir-test-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    assert_int_equal(setenv("TMPDIR", tmp, 1), 0);
    snprintf(mine_dir, sizeof mine_dir, "%s/rhizos-runs-%ld", tmp, (long)geteuid());

    /* 1. Made now: the folder is private and ours; TMPDIR's dead one goes. */
    snprintf(parent, sizeof parent, "%s", tmp);
    dead_name(dead, sizeof dead, "Old001");
    make(dead, geteuid());
    char *mine = NULL;
    assert_int_equal(rz__exec_mkdtemp(NULL, &mine), RZ_OK);
    assert_string_equal(dirname_of(mine, where, sizeof where), mine_dir);
    struct stat st;
    assert_int_equal(lstat(mine_dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    snprintf(where, sizeof where, "%s/%s", tmp, dead);
    assert_true(gone_soon(where));
    /* The pool of recycled folders uses the same parent. */
    rz__scratch_pool *pool = NULL;
    assert_int_equal(rz__scratch_pool_new(&pool, NULL), RZ_OK);
    assert_string_equal(rz__scratch_pool_parent(pool), mine_dir);
    rz__scratch_pool_free(pool);
    free(mine);
    rm_rf(tmp);

    /* 2. Already there (another TMPDIR, so this process sweeps afresh):
     * its dead folder goes, one in TMPDIR itself is not even read. */
    snprintf(tmp, sizeof tmp, "/tmp/rz-userdir-test-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    assert_int_equal(setenv("TMPDIR", tmp, 1), 0);
    snprintf(mine_dir, sizeof mine_dir, "%s/rhizos-runs-%ld", tmp, (long)geteuid());
    assert_int_equal(mkdir(mine_dir, 0700), 0);
    char outside[64];
    snprintf(parent, sizeof parent, "%s", tmp);
    dead_name(outside, sizeof outside, "Out001");
    make(outside, geteuid());
    snprintf(parent, sizeof parent, "%s", mine_dir);
    dead_name(dead, sizeof dead, "In0001");
    make(dead, geteuid());
    assert_int_equal(rz__exec_mkdtemp(NULL, &mine), RZ_OK);
    assert_string_equal(dirname_of(mine, where, sizeof where), mine_dir);
    snprintf(where, sizeof where, "%s/%s", mine_dir, dead);
    assert_true(gone_soon(where));
    snprintf(where, sizeof where, "%s/%s", tmp, outside);
    assert_true(there_at(where));
    free(mine);
    /* A parent given is used as it is. */
    assert_int_equal(rz__exec_mkdtemp(tmp, &mine), RZ_OK);
    assert_string_equal(dirname_of(mine, where, sizeof where), tmp);
    free(mine);
    rm_rf(tmp);
    unsetenv("TMPDIR");
}

typedef enum { TAKEN_MODE, TAKEN_OWNER, TAKEN_LINK, TAKEN_FILE } taken_kind;

static const struct {
    taken_kind kind;
    mode_t mode;
    const char *what;
} takens[] = {
    { TAKEN_MODE, 0777, "world-writable" },
    { TAKEN_MODE, 0702, "world-writable only" },
    { TAKEN_MODE, 0770, "group-writable" },
    { TAKEN_MODE, 0750, "group-readable" },
    { TAKEN_OWNER, 0700, "another user's" },
    { TAKEN_LINK, 0700, "a link to a private folder" },
    { TAKEN_FILE, 0600, "a file" },
};

/* A name taken by anything but a private folder of ours is not used (nor
 * changed): scratch goes in TMPDIR itself, which is then swept as before. */
static void test_unsafe_users_folder_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof takens / sizeof takens[0]; i++) {
        if (takens[i].kind == TAKEN_OWNER && geteuid() != 0)
            continue;   /* only root can give a folder away */
        char tmp[64], name[128], where[512], dead[64];
        snprintf(tmp, sizeof tmp, "/tmp/rz-userdir-bad-XXXXXX");
        assert_non_null(mkdtemp(tmp));
        assert_int_equal(setenv("TMPDIR", tmp, 1), 0);
        snprintf(name, sizeof name, "%s/rhizos-runs-%ld", tmp, (long)geteuid());
        if (takens[i].kind == TAKEN_FILE) {
            FILE *fp = fopen(name, "w");
            assert_non_null(fp);
            fclose(fp);
        } else if (takens[i].kind == TAKEN_LINK) {
            snprintf(where, sizeof where, "%s/elsewhere", tmp);
            assert_int_equal(mkdir(where, 0700), 0);
            assert_int_equal(symlink(where, name), 0);
        } else {
            assert_int_equal(mkdir(name, 0700), 0);
            assert_int_equal(chmod(name, takens[i].mode), 0);
            if (takens[i].kind == TAKEN_OWNER)
                assert_int_equal(chown(name, 65534, 65534), 0);
        }
        snprintf(parent, sizeof parent, "%s", tmp);
        dead_name(dead, sizeof dead, "Bad001");
        make(dead, geteuid());
        char *mine = NULL;
        assert_int_equal(rz__exec_mkdtemp(NULL, &mine), RZ_OK);
        print_message("%s\n", takens[i].what);
        assert_string_equal(dirname_of(mine, where, sizeof where), tmp);
        struct stat st;
        assert_int_equal(lstat(name, &st), 0);
        if (takens[i].kind == TAKEN_MODE || takens[i].kind == TAKEN_OWNER)
            assert_int_equal(st.st_mode & 0777, takens[i].mode);
        if (takens[i].kind == TAKEN_OWNER)
            assert_int_equal(st.st_uid, 65534);
        /* A process sweeps a few parents (SWEPT_MAX): the first case's. */
        snprintf(where, sizeof where, "%s/%s", tmp, dead);
        if (i == 0)
            assert_true(gone_soon(where));
        free(mine);
        rm_rf(tmp);
    }
    unsetenv("TMPDIR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_makers_swept),
        cmocka_unit_test(test_default_parent_is_users_folder),
        cmocka_unit_test(test_unsafe_users_folder_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
