/* Content-addressed files (lib/store/blob.c) and the file outputs over
 * them (lib/exec/files.c): stored once under their
 * SHA-256, streamed with a cap that a growing file cannot pass, nothing
 * but plain files beneath the output folder (no symlink at any level, no
 * FIFO, no '..'), and copies out checked against the digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "exec/exec_impl.h"
#include "module/module_impl.h"
#include "rhizos/common.h"
#include "rhizos/store.h"
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

/* lib/exec/files.c: a step's file output taken into the store and
 * replaced by its reference; a dependant's reference copied out to a
 * read-only file whose path replaces it, in a list too. */
static void file_outputs_to_inputs(void **state)
{
    (void)state;
    char p[300];
    snprintf(p, sizeof p, "%s/files", g_out);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/in", g_dir);
    assert_int_equal(mkdir(p, 0755), 0);
    put_file("files/r/a.txt", "abc", 1);
    char *const ports[] = { "f" };
    rz__files_ctx c = { g_store, g_dir, ports, 1, 100, 1000 };
    char *out = strdup("{\"f\":\"r/a.txt\",\"n\":1}");
    uint64_t stored = 0;
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_OK);
    assert_int_equal(stored, 3);
    assert_non_null(strstr(out, "\"f\":{\"$file\":{\"sha256\":\"" ABC "\",\"size\":3,"
                                "\"name\":\"r/a.txt\""));
    assert_non_null(strstr(out, "\"n\":1"));
    assert_int_equal(rz__files_size(out), 3);
    /* as a dependant's input, alone and in a list, beside plain values */
    const char *ref = strstr(out, "{\"$file\"");
    size_t len = strlen(ref) - strlen(strstr(ref, ",\"n\""));
    char req[1200];
    snprintf(req, sizeof req, "{\"inputs\":{\"x\":%.*s,\"l\":[%.*s,5],\"s\":\"p\"},"
             "\"config\":{}}", (int)len, ref, (int)len, ref);
    char *got = NULL;
    assert_int_equal(rz__files_inputs(g_store, g_dir, req, &got), RZ_OK);
    assert_non_null(got);
    char path[300], want[700];
    snprintf(path, sizeof path, "%s/in/files/%s/a.txt", g_dir, ABC);
    snprintf(want, sizeof want, "{\"inputs\":{\"x\":\"%s\",\"l\":[\"%s\",5],"
             "\"s\":\"p\"},\"config\":{}}", path, path);
    assert_string_equal(got, want);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    assert_int_equal(sb.st_size, 3);
    free(got);
    /* nothing to do: no parse, no change */
    assert_int_equal(rz__files_inputs(g_store, g_dir, "{\"inputs\":{}}", &got), RZ_OK);
    assert_null(got);
    free(out);
}

/* Forged or missing references and values, and the caps: a clear error
 * naming the port, nothing stored. */
static void file_refs_refused(void **state)
{
    (void)state;
    char *got = NULL;
    /* a digest this store never had */
    const char *req = "{\"inputs\":{\"x\":{\"$file\":{\"sha256\":\""
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
        "\"size\":1,\"name\":\"../../etc/passwd\"}}}}";
    assert_int_equal(rz__files_inputs(g_store, g_dir, req, &got), RZ_ENOENT);
    assert_null(got);
    assert_non_null(strstr(rz_error_last()->message, "input 'x'"));
    assert_non_null(strstr(rz_error_last()->message, "not in this machine's blob store"));
    /* no store here */
    assert_int_not_equal(rz__files_inputs(NULL, g_dir, req, &got), RZ_OK);
    /* not a reference (a digest that is no digest): left as it is */
    assert_int_equal(rz__files_inputs(g_store, g_dir,
        "{\"inputs\":{\"x\":{\"$file\":{\"sha256\":\"../x\",\"size\":1,"
        "\"name\":\"a\"}}}}", &got), RZ_OK);
    assert_null(got);
    /* an output that is not a name: a number, a forged reference */
    char *const ports[] = { "f" };
    rz__files_ctx c = { g_store, g_dir, ports, 1, 100, 1000 };
    uint64_t stored = 0;
    char *out = strdup("{\"f\":7}");
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "output 'f' is a file"));
    assert_string_equal(out, "{\"f\":7}");
    free(out);
    /* over the cap on a file, over the step's share of the run's */
    put_file("files/ten.txt", "0123456789", 1);
    out = strdup("{\"f\":\"ten.txt\"}");
    c.file_cap = 9;
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_ETOOBIG);
    assert_non_null(strstr(rz_error_last()->message, "the cap on a file"));
    c.file_cap = 100;
    c.files_cap = 9;
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_ETOOBIG);
    assert_non_null(strstr(rz_error_last()->message, "the run's cap"));
    c.files_cap = 10;
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_OK);
    assert_int_equal(stored, 10);
    free(out);
    /* no store: the step is told */
    c.blob_dir = NULL;
    out = strdup("{\"f\":\"ten.txt\"}");
    assert_int_equal(rz__files_outputs(&c, &out, &stored), RZ_EUNSUPPORTED);
    assert_non_null(strstr(rz_error_last()->message, "keeps no blob store"));
    free(out);
}

/* Only digests a run's file outputs hold pass (file_refs.c): a lookalike
 * in a JSON output is not learnt, and a request naming another is refused,
 * naming the input. */
static void forged_refs_refused(void **state)
{
    (void)state;
    rz__port outs[] = { { .name = "f", .type = "file" },
                        { .name = "j", .type = "any" } };
    rz_module m = { .outputs = outs, .n_outputs = 2 };
    rz__file_refs k = { 0 };
#define REF(h) "{\"$file\":{\"sha256\":\"" h "\",\"size\":3,\"name\":\"a\"}}"
#define OTHER "0000000000000000000000000000000000000000000000000000000000000001"
    assert_int_equal(rz__file_refs_learn(&k, &m, "{\"f\":" REF(ABC) ",\"j\":" REF(OTHER) "}"),
                     RZ_OK);
    assert_true(rz__file_refs_has(&k, ABC));
    assert_false(rz__file_refs_has(&k, OTHER));
    assert_int_equal(rz__file_refs_check(&k, "{\"inputs\":{\"x\":" REF(ABC) "}}"), RZ_OK);
    assert_int_equal(rz__file_refs_check(&k, "{\"inputs\":{\"x\":[" REF(ABC) "," REF(OTHER)
                                             "]}}"), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "input 'x' is a '$file' reference this "
                                                     "run did not make (sha256:000000000000"));
    assert_int_equal(rz__file_refs_check(&k, "{\"inputs\":{\"y\":" REF(OTHER) "}}"),
                     RZ_EINVALID);
    assert_int_equal(rz__file_refs_check(&k, "{\"inputs\":{\"y\":\"plain\"}}"), RZ_OK);
    rz__file_refs_free(&k);
#undef REF
#undef OTHER
}

/* The mark: 64 lowercase hex digits exactly, in plain or escaped JSON. */
static void digests_found_in_records(void **state)
{
    (void)state;
    rz__blob_set k = { 0 };
    const char *rec = "{\"a\":{\"$file\":{\"sha256\":\"" ABC "\"}},"
                      "\"c\":\"{\\\"sha256\\\":\\\"" ABC "\\\"}\","
                      "\"long\":\"0" ABC "\",\"upper\":\"BA7816BF8F01CFEA414140DE5DAE2223"
                      "B00361A396177A9CB410FF61F20015AD\",\"short\":\"ba7816\"}";
    assert_int_equal(rz__blob_set_scan(&k, rec, strlen(rec)), RZ_OK);
    assert_int_equal(k.n, 2);   /* the plain and the escaped one */
    rz__blob_set_seal(&k);
    unsigned char d[32];
    const char *abc = ABC;
    for (size_t i = 0; i < 32; i++)
        sscanf(abc + 2 * i, "%2hhx", &d[i]);
    assert_true(rz__blob_set_has(&k, d));
    d[31] ^= 1;
    assert_false(rz__blob_set_has(&k, d));
    rz__blob_set_free(&k);
}

/* One at a time (file_refs.c's way): sorted and once each after every
 * insert, so a lookup between two inserts finds what is in. */
static void set_insert_keeps_order(void **state)
{
    (void)state;
    rz__blob_set k = { 0 };
    unsigned char d[32];
    const unsigned char order[] = { 7, 3, 9, 3, 0, 255, 7, 128 };
    for (size_t i = 0; i < sizeof order; i++) {
        memset(d, 0, sizeof d);
        d[0] = order[i];
        d[31] = (unsigned char)(order[i] ^ 0x5a);
        assert_int_equal(rz__blob_set_insert(&k, d), RZ_OK);
        assert_true(rz__blob_set_has(&k, d));
        for (size_t j = 1; j < k.n; j++)
            assert_true(memcmp(k.d[j - 1], k.d[j], 32) < 0);
    }
    assert_int_equal(k.n, 6);   /* 3 and 7 came twice */
    memset(d, 0, sizeof d);
    d[0] = 4;
    assert_false(rz__blob_set_has(&k, d));
    assert_false(rz__blob_digest_of("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                                    d));
    assert_false(rz__blob_digest_of(ABC "0", d));
    assert_true(rz__blob_digest_of(ABC, d));
    assert_int_equal(d[0], 0xba);
    assert_int_equal(d[31], 0xad);
    rz__blob_set_free(&k);
}

static void set_mtime(const char *path, time_t ago)
{
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= ago;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

/* The sweep: what is marked or newer stays; old partial writes go; names
 * that are not a blob's are not touched. */
static void sweep_keeps_marked_and_new(void **state)
{
    (void)state;
    char hex[RZ_BLOB_HEX + 1], other[RZ_BLOB_HEX + 1], p[512];
    uint64_t size = 0, bytes = 0, now = (uint64_t)time(NULL) * 1000;
    size_t removed = 0;
    put_file("keep.txt", "abc", 1);
    put_file("drop.txt", "abcd", 1);
    assert_int_equal(rz__blob_put(g_store, g_out, "keep.txt", 100, hex, &size), RZ_OK);
    assert_int_equal(rz__blob_put(g_store, g_out, "drop.txt", 100, other, &size), RZ_OK);
    char kp[512], dp[512], tmp[512], odd[512];
    snprintf(kp, sizeof kp, "%s/sha256/%.2s/%s", g_store, hex, hex);
    snprintf(dp, sizeof dp, "%s/sha256/%.2s/%s", g_store, other, other);
    snprintf(tmp, sizeof tmp, "%s/tmp.abcdef", g_store);
    snprintf(odd, sizeof odd, "%s/sha256/%.2s/notes", g_store, other);
    FILE *f = fopen(tmp, "w");
    fputs("partial", f);
    fclose(f);
    f = fopen(odd, "w");
    fclose(f);
    rz__blob_set k = { 0 };
    snprintf(p, sizeof p, "{\"x\":\"%s\"}", hex);
    assert_int_equal(rz__blob_set_scan(&k, p, strlen(p)), RZ_OK);
    rz__blob_set_seal(&k);
    /* all new: nothing goes */
    assert_int_equal(rz__blob_sweep(g_store, &k, now - 60000, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 0);
    const char *all[] = { kp, dp, tmp, odd };
    for (size_t i = 0; i < 4; i++)
        set_mtime(all[i], 3600);
    assert_int_equal(rz__blob_sweep(g_store, &k, now - 60000, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(bytes, 4 + 7);   /* the blob and the partial write */
    assert_int_equal(access(kp, F_OK), 0);
    assert_int_equal(access(dp, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(odd, F_OK), 0);
    /* no store yet: nothing to do */
    assert_int_equal(rz__blob_sweep("/nonexistent/rz-blobs", &k, now, &removed, &bytes),
                     RZ_OK);
    rz__blob_set_free(&k);
}

/* A blob `text` stored, moved aside as a sweep does (gc.<hex>) and left
 * there, as by a sweep that died; last written `ago` seconds ago. */
static void left_aside(const char *store, const char *text, time_t ago, char hex[RZ_BLOB_HEX + 1],
                       char blob[512], char aside[512])
{
    uint64_t size = 0;
    put_file("aside.txt", text, 1);
    assert_int_equal(rz__blob_put(store, g_out, "aside.txt", 100, hex, &size), RZ_OK);
    snprintf(blob, 512, "%s/sha256/%.2s/%s", store, hex, hex);
    snprintf(aside, 512, "%s/sha256/%.2s/gc.%s", store, hex, hex);
    assert_int_equal(rename(blob, aside), 0);
    set_mtime(aside, ago);
}

/* What a sweep that died between moving a blob aside and removing it left
 * goes at the next sweep if it is garbage, and is put back if a record
 * names it or it is fresh; nothing else named gc.* is touched. */
static void sweep_clears_what_a_dead_sweep_left(void **state)
{
    (void)state;
    char drop[RZ_BLOB_HEX + 1], kept[RZ_BLOB_HEX + 1], fresh[RZ_BLOB_HEX + 1];
    char twice[RZ_BLOB_HEX + 1];
    char b_drop[512], a_drop[512], b_kept[512], a_kept[512], b_fresh[512], a_fresh[512];
    char b_twice[512], a_twice[512];
    uint64_t now = (uint64_t)time(NULL) * 1000, bytes = 0, size = 0;
    size_t removed = 0;
    char store[256];   /* a store of its own: the others' old blobs stay out */
    snprintf(store, sizeof store, "%s/blobs-gc", g_dir);
    left_aside(store, "garbage left aside", 3600, drop, b_drop, a_drop);
    left_aside(store, "named by a record", 3600, kept, b_kept, a_kept);
    left_aside(store, "written a moment ago", 0, fresh, b_fresh, a_fresh);
    left_aside(store, "stored again since", 3600, twice, b_twice, a_twice);
    assert_int_equal(rz__blob_put(store, g_out, "aside.txt", 100, twice, &size), RZ_OK);
    /* Names of the pattern's look-alikes, in the same folder. */
    char odd[3][600];
    snprintf(odd[0], sizeof odd[0], "%s/sha256/%.2s/gc.notes", store, drop);
    snprintf(odd[1], sizeof odd[1], "%s/sha256/%.2s/gc.%s.x", store, drop, drop);
    snprintf(odd[2], sizeof odd[2], "%s/sha256/%.2s/gc.%s", store, drop,
             "ff00000000000000000000000000000000000000000000000000000000000000");
    for (size_t i = 0; i < 3; i++) {
        FILE *f = fopen(odd[i], "w");
        assert_non_null(f);
        fputs("not a blob of this folder", f);
        fclose(f);
        set_mtime(odd[i], 3600);
    }
    rz__blob_set k = { 0 };
    char rec[128];
    snprintf(rec, sizeof rec, "{\"x\":\"%s\"}", kept);
    assert_int_equal(rz__blob_set_scan(&k, rec, strlen(rec)), RZ_OK);
    rz__blob_set_seal(&k);
    assert_int_equal(rz__blob_sweep(store, &k, now - 60000, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(bytes, strlen("garbage left aside"));
    assert_int_equal(access(a_drop, F_OK), -1);
    assert_int_equal(access(b_drop, F_OK), -1);
    const char *back[] = { b_kept, b_fresh, b_twice };
    const char *gone[] = { a_kept, a_fresh, a_twice };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(access(back[i], F_OK), 0);
        assert_int_equal(access(gone[i], F_OK), -1);
    }
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(access(odd[i], F_OK), 0);
    char dest[256];
    snprintf(dest, sizeof dest, "%s/kept.copy", g_dir);
    assert_int_equal(rz__blob_copy_out(store, kept, dest), RZ_OK);
    rz__blob_set_free(&k);
}

/* The writer in parts (rhizos/store.h): the node's and orchestrator's
 * hops. Stored only when the digest is the one named; a cap holds. */
static size_t stored_count(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "find '%s' -type f 2>/dev/null | wc -l", g_store);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

static void writer_in_parts(void **state)
{
    (void)state;
    size_t before = stored_count();
    rz_blob_writer *w = NULL;
    char hex[RZ_BLOB_HEX_LEN + 1];
    /* The wrong digest: nothing stored, no temporary file left. */
    assert_int_equal(rz_blob_writer_open(&w, g_store, 3), RZ_OK);
    assert_int_equal(rz_blob_writer_write(w, "abd", 3), RZ_OK);
    assert_int_equal(rz_blob_writer_commit(w, ABC, hex), RZ_EINVALID);
    assert_int_equal(rz_blob_writer_write(w, "x", 1), RZ_ESTATE);
    rz_blob_writer_free(w);
    assert_int_equal(stored_count(), before);
    /* Past the cap: refused, nothing of the part written. */
    assert_int_equal(rz_blob_writer_open(&w, g_store, 3), RZ_OK);
    assert_int_equal(rz_blob_writer_write(w, "ab", 2), RZ_OK);
    assert_int_equal(rz_blob_writer_write(w, "cd", 2), RZ_ETOOBIG);
    assert_int_equal(rz_blob_writer_size(w), 2);
    /* ... and on: "abc" in two parts is stored under its digest. */
    assert_int_equal(rz_blob_writer_write(w, "c", 1), RZ_OK);
    assert_int_equal(rz_blob_writer_commit(w, ABC, hex), RZ_OK);
    assert_string_equal(hex, ABC);
    rz_blob_writer_free(w);
    size_t after = stored_count();
    assert_true(after == before || after == before + 1);   /* "abc" may be there */
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(rz_blob_open(g_store, ABC, &fd, &size), RZ_OK);
    char buf[8] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), 3);
    assert_string_equal(buf, "abc");
    assert_int_equal(size, 3);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0444);
    close(fd);
    /* Again (a retried upload): kept once; freed without a commit: gone. */
    assert_int_equal(rz_blob_writer_open(&w, g_store, 3), RZ_OK);
    assert_int_equal(rz_blob_writer_write(w, "abc", 3), RZ_OK);
    assert_int_equal(rz_blob_writer_commit(w, NULL, hex), RZ_OK);
    rz_blob_writer_free(w);
    assert_int_equal(rz_blob_writer_open(&w, g_store, 9), RZ_OK);
    assert_int_equal(rz_blob_writer_write(w, "abc", 3), RZ_OK);
    rz_blob_writer_free(w);
    assert_int_equal(stored_count(), after);
    rz_blob_writer_free(NULL);
    /* Names: only 64 lowercase hex digits. */
    assert_int_equal(rz_blob_open(g_store, "../x", &fd, &size), RZ_EINVAL);
    assert_int_equal(fd, -1);
    assert_false(rz_blob_hex_ok("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
    assert_false(rz_blob_hex_ok(ABC "0"));
    assert_false(rz_blob_hex_ok(NULL));
    assert_true(rz_blob_hex_ok(ABC));
    assert_int_equal(rz_blob_open(g_store, "0000000000000000000000000000000000000000000000000000000000000000",
                                  &fd, &size), RZ_ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stored_once_and_copied_out),
        cmocka_unit_test(damaged_blob_refused),
        cmocka_unit_test(cap_enforced_while_streaming),
        cmocka_unit_test(hostile_names_and_files),
        cmocka_unit_test(file_outputs_to_inputs),
        cmocka_unit_test(file_refs_refused),
        cmocka_unit_test(forged_refs_refused),
        cmocka_unit_test(digests_found_in_records),
        cmocka_unit_test(set_insert_keeps_order),
        cmocka_unit_test(sweep_keeps_marked_and_new),
        cmocka_unit_test(sweep_clears_what_a_dead_sweep_left),
        cmocka_unit_test(writer_in_parts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
