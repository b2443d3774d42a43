/* LMDB's own writes failing for real (issue 14): the ledger's and the
 * engine's stores on a tmpfs of a few hundred KiB that fills up, so the
 * writes inside mdb_txn_commit fail with ENOSPC part way through a commit
 * (its pages partly written, its meta page not). LMDB is a system library
 * and its writes cannot go through the ledger's I/O seam; a full file
 * system is the real fault, without LD_PRELOAD.
 *
 * Each failed commit must give the caller a clear error (RZ_EIO naming
 * the system's error and asking whether the disk is full), leave the store
 * as its last commit left it
 * (LMDB's two meta pages byte for byte the same), make the handle refuse
 * further writes, and, once space is freed, reopen with every acknowledged
 * operation there and every invariant holding.
 *
 * Needs to mount: the program moves itself into a private mount namespace
 * (nothing stays mounted when it ends, however it ends) and skips (exit 77)
 * where it may not (not root, or no CAP_SYS_ADMIN). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/engine.h"
#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define CLIENT rz_ledger_id_make(0, 100)
#define FS_KIB 768
#define BALLAST_KIB 256
#define OPS 8

typedef struct fx {
    char dir[64];       /* the mount point */
    char data[96];      /* the stores' data directory inside it */
    char ballast[96];   /* a file removed to free space */
} fx;

static int mount_fs(void **state, unsigned kib)
{
    fx *f = calloc(1, sizeof *f);
    if (!f || !tmp_dir_make(f->dir, sizeof f->dir, "lmdb-full"))
        return -1;
    char opt[48];
    snprintf(opt, sizeof opt, "size=%uk,mode=0700", kib);
    if (mount("rz-lmdb-full", f->dir, "tmpfs", MS_NOSUID | MS_NODEV, opt) != 0)
        return -1;
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->ballast, sizeof f->ballast, "%s/ballast", f->dir);
    int fd = open(f->ballast, O_WRONLY | O_CREAT | O_EXCL, 0600);
    static char zero[1024];
    for (int i = 0; fd >= 0 && i < BALLAST_KIB; i++)
        if (write(fd, zero, sizeof zero) != (ssize_t)sizeof zero)
            return -1;
    if (fd < 0 || close(fd) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return mount_fs(state, FS_KIB);
}

/* The engine's ledger preallocates its 64 MiB journal. */
static int setup_engine(void **state)
{
    return mount_fs(state, (unsigned)(RZ_LEDGER_DEFAULT_JOURNAL_SIZE >> 10) + FS_KIB);
}

static int teardown(void **state)
{
    fx *f = *state;
    /* Detached: a failed test may have left a store open in it. */
    int rc = umount2(f->dir, MNT_DETACH) == 0 && rmdir(f->dir) == 0 ? 0 : -1;
    free(f);
    return rc;
}

/* LMDB's two meta pages, which say what the store holds. */
static void meta_read(const char *store, unsigned char *buf, size_t len)
{
    char path[160];
    snprintf(path, sizeof path, "%s/data.mdb", store);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
    close(fd);
}

/* LMDB reports a write cut short by the full disk as EIO, one refused
 * outright as ENOSPC: the message says which, and what to look at. */
static void assert_full_error(int rc)
{
    const char *m = rz_error_last()->message;
    if (rc != RZ_EIO || (!strstr(m, "No space left") && !strstr(m, "Input/output")) ||
        !strstr(m, "is the disk full?"))
        fail_msg("a full disk gave %d: %s", rc, m);
}

static rz_ledger_opts ledger_opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 1;
    o.map_size = 64u << 20;        /* address space; the disk is the limit */
    o.journal_size = 64u << 10;
    o.checkpoint_ops = 1u << 30;   /* checkpoints only where the test says */
    return o;
}

static rz_ledger_id op_id(uint64_t i)
{
    return rz_ledger_id_make(7, 1000 + i);
}

/* Batches of test credits, a checkpoint after every fourth, until a
 * checkpoint fails for want of space: the credits acknowledged, and the
 * meta pages of the last good checkpoint in meta. */
static uint64_t fill_ledger(rz_ledger *l, const char *store, unsigned char *meta,
                            size_t meta_len)
{
    uint64_t acked = 0, checkpoints = 0;
    int rc = RZ_OK;
    for (uint64_t b = 0; rc == RZ_OK && b < 100000; b++) {
        rz_ledger_op ops[OPS];
        rz_ledger_result res[OPS];
        memset(ops, 0, sizeof ops);
        for (int i = 0; i < OPS; i++) {
            ops[i].type = RZ_LEDGER_OP_TEST_CREDIT;
            ops[i].id = op_id(acked + (uint64_t)i);
            ops[i].account = CLIENT;
            ops[i].amount = 1;
        }
        rc = rz_ledger_submit(l, ops, OPS, res);
        if (rc != RZ_OK)
            break;
        for (int i = 0; i < OPS; i++)
            assert_int_equal(res[i].status, RZ_OK);
        acked += OPS;
        if (b % 4 == 3 && (rc = rz_ledger_checkpoint(l)) == RZ_OK) {
            checkpoints++;
            meta_read(store, meta, meta_len);
        }
    }
    assert_full_error(rc);
    assert_true(checkpoints > 2);   /* it filled up over several commits */
    print_message("ledger: %llu credits acknowledged over %llu checkpoints "
                  "before the disk filled\n", (unsigned long long)acked,
                  (unsigned long long)checkpoints);
    return acked;
}

static void test_ledger_checkpoint_on_a_full_disk(void **state)
{
    fx *f = *state;
    char store[128];
    snprintf(store, sizeof store, "%s/ledger", f->data);
    size_t meta_len = 2 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *meta = malloc(meta_len), *after = malloc(meta_len);
    assert_non_null(meta);
    assert_non_null(after);
    rz_ledger_opts o = ledger_opts();
    rz_ledger *l;
    assert_int_equal(rz_ledger_open(&l, f->data, &o), RZ_OK);
    assert_int_equal(rz_ledger_create_account(l, CLIENT, RZ_LEDGER_CLIENT), RZ_OK);
    assert_int_equal(rz_ledger_checkpoint(l), RZ_OK);
    meta_read(store, meta, meta_len);
    uint64_t acked = fill_ledger(l, store, meta, meta_len);
    /* As the last good checkpoint left it; and no write goes on. */
    meta_read(store, after, meta_len);
    assert_memory_equal(meta, after, meta_len);
    rz_ledger_op op = { 0 };
    op.type = RZ_LEDGER_OP_TEST_CREDIT;
    op.id = op_id(acked);
    op.account = CLIENT;
    op.amount = 1;
    rz_ledger_result res;
    assert_int_equal(rz_ledger_submit(l, &op, 1, &res), RZ_ESTATE);
    rz_ledger_close(l);
    meta_read(store, after, meta_len);
    assert_memory_equal(meta, after, meta_len);
    /* Still full: the open's replay cannot commit either, and says so. */
    int rc = rz_ledger_open(&l, f->data, &o);
    if (rc == RZ_OK)
        rz_ledger_close(l);
    else
        assert_full_error(rc);
    /* Space again: everything acknowledged is there. */
    assert_int_equal(unlink(f->ballast), 0);
    assert_int_equal(rz_ledger_open(&l, f->data, &o), RZ_OK);
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(l, CLIENT, &a), RZ_OK);
    assert_int_equal(rz_ledger_available(&a), acked);
    for (uint64_t i = 0; i < acked; i++) {
        rz_ledger_transfer t;
        if (rz_ledger_transfer_get(l, op_id(i), &t) != RZ_OK)
            fail_msg("acknowledged credit %llu lost", (unsigned long long)i);
    }
    assert_int_equal(rz_ledger_verify(l), RZ_OK);
    assert_int_equal(rz_ledger_checkpoint(l), RZ_OK);
    rz_ledger_close(l);
    free(meta);
    free(after);
}

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2," \
    "\"labels\":{\"pad\":\"%0600d\"}}"

/* Node registrations (an engine record and a ledger account each, every
 * one durable) until one fails for want of space. */
static void test_engine_commit_on_a_full_disk(void **state)
{
    fx *f = *state;
    char store[128];
    snprintf(store, sizeof store, "%s/engine", f->data);
    size_t meta_len = 2 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *meta = malloc(meta_len), *after = malloc(meta_len);
    assert_non_null(meta);
    assert_non_null(after);
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 1;
    rz_engine *e;
    assert_int_equal(rz_engine_open(&e, f->data, &o), RZ_OK);
    meta_read(store, meta, meta_len);
    uint64_t *ids = NULL, n = 0;
    int rc = RZ_OK;
    char caps[sizeof NODE_CAPS + 700];
    while (rc == RZ_OK && n < 100000) {
        int len = snprintf(caps, sizeof caps, NODE_CAPS, (int)n);
        uint64_t id;
        rc = rz_engine_node_register(e, caps, (size_t)len, 10 + n, &id);
        if (rc == RZ_OK) {
            ids = realloc(ids, (n + 1) * sizeof *ids);
            assert_non_null(ids);
            ids[n++] = id;
            meta_read(store, meta, meta_len);
        }
    }
    /* The ledger's account or the engine's record: either store may be
     * the one that found the disk full; both say so. */
    assert_full_error(rc);
    assert_true(n > 2);
    meta_read(store, after, meta_len);
    assert_memory_equal(meta, after, meta_len);
    uint64_t id;
    int len = snprintf(caps, sizeof caps, NODE_CAPS, 0);
    assert_int_not_equal(rz_engine_node_register(e, caps, (size_t)len, 1, &id), RZ_OK);
    rz_engine_close(e);
    meta_read(store, after, meta_len);
    assert_memory_equal(meta, after, meta_len);
    assert_int_equal(unlink(f->ballast), 0);
    assert_int_equal(rz_engine_open(&e, f->data, &o), RZ_OK);
    for (uint64_t i = 0; i < n; i++) {
        rz_engine_node_info info;
        if (rz_engine_node_get(e, ids[i], &info) != RZ_OK)
            fail_msg("acknowledged node %llu lost", (unsigned long long)ids[i]);
    }
    assert_int_equal(rz_engine_check(e), RZ_OK);
    len = snprintf(caps, sizeof caps, NODE_CAPS, 1);
    assert_int_equal(rz_engine_node_register(e, caps, (size_t)len, 1, &id), RZ_OK);
    rz_engine_close(e);
    print_message("engine: %llu nodes registered before the disk filled; all "
                  "there after reopening\n", (unsigned long long)n);
    free(ids);
    free(meta);
    free(after);
}

int main(void)
{
    /* A mount namespace of our own: the tmpfs goes with the process. */
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        printf("skipped: mounting a small tmpfs needs root with "
               "CAP_SYS_ADMIN (%s)\n", strerror(errno ? errno : EPERM));
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ledger_checkpoint_on_a_full_disk,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_commit_on_a_full_disk,
                                        setup_engine, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
