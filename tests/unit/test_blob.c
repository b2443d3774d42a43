/* Content-addressed files (lib/store/blob.c): stored once under their
 * SHA-256, streamed with a cap that a growing file cannot pass, nothing
 * but plain files beneath the output folder (no symlink at any level, no
 * FIFO, no '..'), and copies out checked against the digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/blob.h"

static char g_dir[64], g_out[128], g_store[128];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rz-blob-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_out, sizeof g_out, "%s/out", g_dir);
    snprintf(g_store, sizeof g_store, "%s/blobs", g_dir);
    return mkdir(g_out, 0755);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *name, const char *text, size_t repeat)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_out, name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (size_t i = 0; i < repeat; i++)
        fputs(text, f);
    fclose(f);
}

/* sha256("abc"), the standard's test vector */
#define ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void stored_once_and_copied_out(void **state)
{
    (void)state;
    put_file("a.txt", "abc", 1);
    put_file("sub/b.txt", "abc", 1);
    char hex[RZ_BLOB_HEX + 1];
    uint64_t size = 0;
    assert_int_equal(rz__blob_put(g_store, g_out, "a.txt", 100, hex, &size), RZ_OK);
    assert_string_equal(hex, ABC);
    assert_int_equal(size, 3);
    assert_int_equal(rz__blob_put(g_store, g_out, "sub/b.txt", 100, hex, &size), RZ_OK);
    assert_string_equal(hex, ABC);
    char p[256];
    struct stat sb;
    snprintf(p, sizeof p, "%s/sha256/ba/%s", g_store, ABC);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    char dest[256];
    snprintf(dest, sizeof dest, "%s/copy.txt", g_dir);
    assert_int_equal(rz__blob_copy_out(g_store, ABC, dest), RZ_OK);
    assert_int_equal(stat(dest, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    assert_int_equal(sb.st_mode & 0777, 0444);
    /* never over an existing file, never for a digest not stored */
    assert_int_equal(rz__blob_copy_out(g_store, ABC, dest), RZ_EIO);
    char other[RZ_BLOB_HEX + 1];
    memset(other, 'a', RZ_BLOB_HEX);
    other[RZ_BLOB_HEX] = '\0';
    snprintf(dest, sizeof dest, "%s/none.txt", g_dir);
    assert_int_equal(rz__blob_copy_out(g_store, other, dest), RZ_ENOENT);
    assert_int_equal(rz__blob_copy_out(g_store, "../../etc/passwd", dest), RZ_EINVAL);
    assert_int_not_equal(access(dest, F_OK), 0);
}

/* A damaged blob is caught on the way out, and leaves no copy. */
static void damaged_blob_refused(void **state)
{
    (void)state;
    put_file("d.txt", "abc", 1);
    char hex[RZ_BLOB_HEX + 1], p[256], dest[256];
    uint64_t size;
    assert_int_equal(rz__blob_put(g_store, g_out, "d.txt", 100, hex, &size), RZ_OK);
    snprintf(p, sizeof p, "%s/sha256/ba/%s", g_store, ABC);
    assert_int_equal(chmod(p, 0644), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("abd", f);
    fclose(f);
    snprintf(dest, sizeof dest, "%s/bad.txt", g_dir);
    assert_int_equal(rz__blob_copy_out(g_store, ABC, dest), RZ_EIO);
    assert_int_not_equal(access(dest, F_OK), 0);
    assert_int_equal(unlink(p), 0);
}

/* Over the cap, the store keeps nothing (no blob, no temporary file). */
static void cap_enforced_while_streaming(void **state)
{
    (void)state;
    put_file("big.bin", "0123456789abcdef", 64 * 1024);   /* 1 MiB */
    char hex[RZ_BLOB_HEX + 1];
    uint64_t size = 0;
    assert_int_equal(rz__blob_put(g_store, g_out, "big.bin", 1024 * 1024 - 1, hex, &size),
                     RZ_ETOOBIG);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -name 'tmp.*')\"", g_store);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rz__blob_put(g_store, g_out, "big.bin", 1024 * 1024, hex, &size), RZ_OK);
    assert_int_equal(size, 1024 * 1024);
}

/* Only plain files beneath the folder. */
static void hostile_names_and_files(void **state)
{
    (void)state;
    static const char *const names[] = {
        "", "/etc/passwd", "../x", "a/../../x", "./a", "a//b", "a/", "a\\b", "a\tb",
    };
    char hex[RZ_BLOB_HEX + 1], why[120];
    uint64_t size;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        assert_false(rz__blob_name_ok(names[i], why, sizeof why));
        assert_int_equal(rz__blob_put(g_store, g_out, names[i], 100, hex, &size), RZ_EINVAL);
    }
    char longname[300];
    memset(longname, 'x', 256);
    longname[256] = '\0';
    assert_false(rz__blob_name_ok(longname, why, sizeof why));
    assert_true(rz__blob_name_ok("dir/file.bin", why, sizeof why));
    /* a symlink, as the file or as a folder on the way; a FIFO; a folder */
    put_file("real/f.txt", "abc", 1);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/link.txt", g_out);
    assert_int_equal(symlink("/etc/hostname", p), 0);
    snprintf(q, sizeof q, "%s/linkdir", g_out);
    assert_int_equal(symlink("real", q), 0);
    snprintf(p, sizeof p, "%s/fifo", g_out);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(rz__blob_put(g_store, g_out, "link.txt", 100, hex, &size), RZ_EINVAL);
    assert_int_equal(rz__blob_put(g_store, g_out, "linkdir/f.txt", 100, hex, &size),
                     RZ_EINVAL);
    assert_int_equal(rz__blob_put(g_store, g_out, "fifo", 100, hex, &size), RZ_EINVAL);
    assert_int_equal(rz__blob_put(g_store, g_out, "real", 100, hex, &size), RZ_EINVAL);
    assert_int_equal(rz__blob_put(g_store, g_out, "nothere", 100, hex, &size), RZ_ENOENT);
    assert_int_equal(rz__blob_put(g_store, g_out, "real/f.txt", 100, hex, &size), RZ_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stored_once_and_copied_out),
        cmocka_unit_test(damaged_blob_refused),
        cmocka_unit_test(cap_enforced_while_streaming),
        cmocka_unit_test(hostile_names_and_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
