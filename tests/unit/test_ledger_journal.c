/* The journal at open: a torn last record is recovered from; a damaged
 * record with acknowledged batches after it, a missing, emptied or cut-short
 * journal, and a database that lost committed batches are refused with the
 * file and offset named, and nothing on disk is changed by the refusal. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crc32c.h"
#include "ledger/ledger_impl.h"
#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define ID(n) rz_ledger_id_make(0, (n))
#define CLIENT ID(100)
enum { NBATCH = 100, REC = RZ__LEDGER_JHDR_SIZE + RZ__LEDGER_OP_SIZE };

typedef struct fixture {
    char dir[64];
    char journal[128];
    char db[128];
} fixture;

static rz_ledger_opts test_opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 0;
    o.map_size = 64u << 20;
    o.journal_size = 1u << 20;
    return o;
}

/* A ledger with CLIENT, closed cleanly; then a writer that acknowledges
 * NBATCH one-op batches (credit i cents, i = 1..NBATCH) and dies without a
 * checkpoint: they are only in the journal, at 64 + REC * (i - 1). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !tmp_dir_make(f->dir, sizeof f->dir, "ledger-journal"))
        return -1;
    snprintf(f->journal, sizeof f->journal, "%s/ledger/journal", f->dir);
    snprintf(f->db, sizeof f->db, "%s/ledger/data.mdb", f->dir);
    rz_ledger_opts o = test_opts();
    rz_ledger *l;
    if (rz_ledger_open(&l, f->dir, &o) != RZ_OK ||
        rz_ledger_create_account(l, CLIENT, RZ_LEDGER_CLIENT) != RZ_OK)
        return -1;
    rz_ledger_close(l);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (rz_ledger_open(&l, f->dir, &o) != RZ_OK)
            _exit(1);
        for (uint64_t i = 1; i <= NBATCH; i++)
            if (rz_ledger_test_credit(l, ID(1000 + i), CLIENT, i) != RZ_OK)
                _exit(2);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = tmp_dir_remove(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static uint64_t avail(rz_ledger *l)
{
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(l, CLIENT, &a), RZ_OK);
    return rz_ledger_available(&a);
}

static void flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static off_t batch_at(uint64_t i)
{
    return (off_t)(RZ__LEDGER_MARKER_SIZE + REC * (i - 1));
}

/* Open must succeed with every batch up to `upto`, and verify. */
static void opens_with(fixture *f, uint64_t upto)
{
    rz_ledger_opts o = test_opts();
    rz_ledger *l;
    int rc = rz_ledger_open(&l, f->dir, &o);
    if (rc != RZ_OK)
        fail_msg("open: %s", rz_error_last()->message);
    assert_int_equal(avail(l), upto * (upto + 1) / 2);
    assert_int_equal(rz_ledger_verify(l), RZ_OK);
    rz_ledger_close(l);
}

/* Open must be refused with RZ_EDB and a message holding each of `want`. */
static void refused(fixture *f, const char *const *want)
{
    rz_ledger_opts o = test_opts();
    rz_ledger *l = (rz_ledger *)1;
    assert_int_equal(rz_ledger_open(&l, f->dir, &o), RZ_EDB);
    assert_null(l);
    const char *msg = rz_error_last()->message;
    for (; *want; want++)
        if (!strstr(msg, *want))
            fail_msg("'%s' not in: %s", *want, msg);
    assert_non_null(strstr(msg, "docs/ledger.md"));
}

static void test_torn_tail_recovers(void **state)
{
    fixture *f = *state;
    flip(f->journal, batch_at(NBATCH) + 100);   /* the last record */
    opens_with(f, NBATCH - 1);
    opens_with(f, NBATCH - 1);   /* and stays so after the checkpoint */
}

static void test_flip_mid_journal_refused(void **state)
{
    fixture *f = *state;
    char where[64];
    snprintf(where, sizeof where, "corrupt at byte %lld",
             (long long)batch_at(50));
    const char *want[] = { f->journal, where, "up to", NULL };
    flip(f->journal, batch_at(50) + 100);        /* an op's bytes */
    refused(f, want);
    refused(f, want);   /* the refusal changed nothing */
    /* `ledger verify` (a reader) no longer calls it consistent. */
    rz_ledger_opts o = test_opts();
    o.read_only = 1;
    rz_ledger *r;
    assert_int_equal(rz_ledger_open(&r, f->dir, &o), RZ_EDB);
    assert_non_null(strstr(rz_error_last()->message, where));
    flip(f->journal, batch_at(50) + 100);
    assert_int_equal(rz_ledger_open(&r, f->dir, &o), RZ_OK);
    rz_ledger_close(r);
    opens_with(f, NBATCH);   /* every acknowledged batch is still there */
    /* Beside a live writer a reader leaves the journal alone. */
    rz_ledger *w;
    o.read_only = 0;
    assert_int_equal(rz_ledger_open(&w, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(w, ID(5000), CLIENT, 1), RZ_OK);
    o.read_only = 1;
    assert_int_equal(rz_ledger_open(&r, f->dir, &o), RZ_OK);
    rz_ledger_close(r);
    rz_ledger_close(w);
}

static void test_flip_record_header_refused(void **state)
{
    fixture *f = *state;
    char where[64];
    snprintf(where, sizeof where, "corrupt at byte %lld",
             (long long)batch_at(7));
    const char *want[] = { where, NULL };
    flip(f->journal, batch_at(7));   /* the magic */
    refused(f, want);
    flip(f->journal, 3);             /* and the marker too */
    snprintf(where, sizeof where, "corrupt at byte 0");
    refused(f, want);
}

static void test_missing_journal_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(unlink(f->journal), 0);
    const char *want[] = { f->journal, "missing", NULL };
    refused(f, want);
    assert_int_not_equal(access(f->journal, F_OK), 0);   /* not recreated */
}

static void test_emptied_journal_refused(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);   /* all in LMDB now: only the marker is needed */
    assert_int_equal(truncate(f->journal, 0), 0);
    const char *want[] = { f->journal, "is empty", NULL };
    refused(f, want);
}

static void test_zeroed_journal_refused(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    struct stat st;
    assert_int_equal(stat(f->journal, &st), 0);
    assert_int_equal(truncate(f->journal, 0), 0);
    assert_int_equal(truncate(f->journal, st.st_size), 0);
    const char *want[] = { "no record of batch", NULL };
    refused(f, want);
}

static void test_cut_short_journal_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(truncate(f->journal, batch_at(60) + 20), 0);
    const char *want[] = { f->journal, "truncated", NULL };
    refused(f, want);
}

static void test_lost_database_refused(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    char lock[160];
    snprintf(lock, sizeof lock, "%s/ledger/lock.mdb", f->dir);
    assert_int_equal(unlink(f->db), 0);
    unlink(lock);
    const char *want[] = { "lost committed batches", NULL };
    refused(f, want);
}

/* LMDB maps data.mdb: reading past a cut-off end would be SIGBUS. */
static void test_truncated_database_refused(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    struct stat st;
    assert_int_equal(stat(f->db, &st), 0);
    assert_true(st.st_size >= 4 * 4096);
    assert_int_equal(truncate(f->db, st.st_size / 2), 0);
    const char *want[] = { f->db, "meta page says", NULL };
    refused(f, want);
    assert_int_equal(truncate(f->db, 100), 0);   /* not even a meta page */
    const char *want2[] = { f->db, "not an LMDB database", NULL };
    refused(f, want2);
}

/* A damaged meta page whose last page number times the page size wraps
 * past 2^64 must not pass for one that fits the file. */
static void test_meta_last_page_overflow_refused(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    int fd = open(f->db, O_RDWR);
    assert_true(fd >= 0);
    uint32_t psize;
    assert_int_equal(pread(fd, &psize, 4, 40), 4);
    assert_true(psize >= 512 && (psize & (psize - 1)) == 0);
    /* (last + 1) * psize == 2^64 + psize: wraps to one page. */
    uint64_t last = (UINT64_MAX / psize) + 1;
    for (int m = 0; m < 2; m++)
        assert_int_equal(pwrite(fd, &last, 8, (off_t)m * psize + 136), 8);
    close(fd);
    const char *want[] = { f->db, "meta page says", NULL };
    refused(f, want);
}

/* Damage to records LMDB already holds loses nothing: no refusal. */
static void test_stale_damage_opens(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);   /* checkpointed: the batches are stale now */
    flip(f->journal, batch_at(20) + 70);
    opens_with(f, NBATCH);
}

/* Open the ledger's LMDB as a foreign program would, run fn on its
 * "accounts", "transfers" and "meta" tables, commit. */
static void raw_edit(fixture *f, void (*fn)(MDB_txn *, MDB_dbi[3]))
{
    char path[128];
    snprintf(path, sizeof path, "%s/ledger", f->dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[3];
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "accounts", 0, &dbi[0]), 0);
    assert_int_equal(mdb_dbi_open(txn, "transfers", 0, &dbi[1]), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi[2]), 0);
    fn(txn, dbi);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* What the version before markers and checksums wrote: no format key,
 * records of version 1 with their checksum slot zero. */
static void make_previous(MDB_txn *txn, MDB_dbi dbi[3])
{
    MDB_val key = { 6, (void *)"format" }, val;
    assert_int_equal(mdb_del(txn, dbi[2], &key, NULL), 0);
    for (int t = 0; t < 2; t++) {
        MDB_cursor *cur;
        assert_int_equal(mdb_cursor_open(txn, dbi[t], &cur), 0);
        while (mdb_cursor_get(cur, &key, &val, MDB_NEXT) == 0) {
            uint8_t rec[RZ__LEDGER_TRANSFER_SIZE];
            memcpy(rec, val.mv_data, val.mv_size);
            rec[0] = 1;
            memset(rec + (t == 0 ? 64 : 12), 0, 4);
            MDB_val nv = { val.mv_size, rec };
            assert_int_equal(mdb_cursor_put(cur, &key, &nv, MDB_CURRENT), 0);
        }
        mdb_cursor_close(cur);
    }
}

/* A data directory from before markers and checksums: no format key,
 * version 1 records, and a closed ledger's journal began with a zeroed
 * header. A writer's open migrates it. */
static void test_previous_format_opens(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    raw_edit(f, make_previous);
    int fd = open(f->journal, O_RDWR);
    static const uint8_t zeros[RZ__LEDGER_MARKER_SIZE];
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, 0), sizeof zeros);
    close(fd);
    /* A reader is told to migrate, and cannot misread. */
    rz_ledger_opts o = test_opts();
    o.read_only = 1;
    rz_ledger *r;
    assert_int_equal(rz_ledger_open(&r, f->dir, &o), RZ_EUNSUPPORTED);
    assert_non_null(strstr(rz_error_last()->message, "migrate"));
    /* The writer converts its cents to micro-dollars on the way. */
    o.read_only = 0;
    assert_int_equal(rz_ledger_open(&r, f->dir, &o), RZ_OK);
    assert_int_equal(avail(r), (uint64_t)NBATCH * (NBATCH + 1) / 2 * 10000);
    assert_int_equal(rz_ledger_verify(r), RZ_OK);
    rz_ledger_close(r);
    /* Upgraded: the marker is back, so emptying is now seen. */
    assert_int_equal(truncate(f->journal, 0), 0);
    const char *want[] = { "is empty", NULL };
    refused(f, want);
}

static void bump_client_credits(MDB_txn *txn, MDB_dbi dbi[3])
{
    uint8_t k[16];
    rz__ledger_id_key(CLIENT, k);
    MDB_val key = { 16, k }, val;
    assert_int_equal(mdb_get(txn, dbi[0], &key, &val), 0);
    uint8_t rec[RZ__LEDGER_ACCOUNT_SIZE];
    memcpy(rec, val.mv_data, sizeof rec);
    rec[40] ^= 0x04;   /* credits_posted, the checksum left as it was */
    MDB_val nv = { sizeof rec, rec };
    assert_int_equal(mdb_put(txn, dbi[0], &key, &nv, 0), 0);
}

/* A stored record that was changed is refused on read, not misread. */
static void test_record_checksum(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    raw_edit(f, bump_client_credits);
    rz_ledger_opts o = test_opts();
    rz_ledger *l;
    assert_int_equal(rz_ledger_open(&l, f->dir, &o), RZ_OK);
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(l, CLIENT, &a), RZ_EDB);
    assert_non_null(strstr(rz_error_last()->message, "fails its checksum"));
    assert_int_not_equal(rz_ledger_verify(l), RZ_OK);
    assert_int_not_equal(rz_ledger_test_credit(l, ID(9000), CLIENT, 1), RZ_OK);
    rz_ledger_close(l);
}

static void drop_a_transfer(MDB_txn *txn, MDB_dbi dbi[3])
{
    MDB_cursor *cur;
    MDB_val key, val;
    assert_int_equal(mdb_cursor_open(txn, dbi[1], &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_int_equal(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
}

/* A sample reads far less than a full verify and still sees lost records
 * and damaged ones it reads; a small ledger is verified whole. */
static void test_verify_sample(void **state)
{
    fixture *f = *state;
    opens_with(f, NBATCH);
    rz_ledger_opts o = test_opts();
    rz_ledger *l;
    assert_int_equal(rz_ledger_open(&l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_verify_sample(l, 10), RZ_OK);
    assert_int_equal(rz_ledger_verify_sample(l, 100000), RZ_OK);
    assert_int_equal(rz_ledger_verify_sample(NULL, 10), RZ_EINVAL);
    rz_ledger_close(l);
    raw_edit(f, drop_a_transfer);
    assert_int_equal(rz_ledger_open(&l, f->dir, &o), RZ_OK);
    assert_int_not_equal(rz_ledger_verify_sample(l, 10), RZ_OK);
    assert_non_null(strstr(rz_error_last()->message, "transfers stored"));
    rz_ledger_close(l);
}

/* The published check value of CRC-32C, and continuation. */
static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(rz__crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(rz__crc32c(rz__crc32c(0, "1234", 4), "56789", 5),
                     0xE3069283u);
    assert_int_equal(rz__crc32c(0, "", 0), 0);
    assert_int_equal(rz__crc32c_table(0, "123456789", 9), 0xE3069283u);
}

/* The instruction's path and the table's agree at every length and
 * alignment, continued from any CRC. */
static void test_crc32c_paths_agree(void **state)
{
    (void)state;
    unsigned char buf[80];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; off + n <= sizeof buf; n++) {
            uint32_t seed = (uint32_t)(off * 0x9E3779B9u + n);
            assert_int_equal(rz__crc32c(seed, buf + off, n),
                             rz__crc32c_table(seed, buf + off, n));
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_crc32c_paths_agree),
        cmocka_unit_test_setup_teardown(test_torn_tail_recovers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flip_mid_journal_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flip_record_header_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_missing_journal_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_emptied_journal_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zeroed_journal_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cut_short_journal_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lost_database_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncated_database_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_meta_last_page_overflow_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_damage_opens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_previous_format_opens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_record_checksum, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_sample, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
