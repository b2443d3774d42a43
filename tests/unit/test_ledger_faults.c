/* Storage-fault simulation of the ledger (in the spirit of TigerBeetle's
 * VOPR): a child writes one-op batches through a journal whose I/O seam
 * (rz__ledger_io_seam) fails at random — a power cut in the middle of a
 * write (a prefix reaches the disk, the process dies, and any subset of
 * the writes not yet made durable — on a descriptor without O_DSYNC, since
 * its last successful fsync — is lost with it), EIO or ENOSPC on a
 * write (sometimes after part of it was written), a failed fsync — and
 * acknowledges each batch on a pipe; after each failure it reopens, as a
 * restarted server would. Then the parent opens the ledger with reads that
 * come back with a flipped bit now and then, and sometimes with a byte of
 * the journal's interior damaged on disk. Every round must end with every
 * acknowledged batch present, or (only when the disk was damaged) the open
 * refused with RZ_EDB: never an open that silently lost one.
 *
 * LMDB's commits (checkpoints, and the one at close) go through the seam
 * too: one fails as LMDB's own does (the transaction gone, the store as it
 * was), or the power goes just before or after it. LMDB's writes inside a
 * commit are not (a system library): a full file system makes them fail
 * for real in test_lmdb_full.c.
 *
 * The last record of the journal is never damaged on disk here: a flipped
 * bit there reads exactly as a torn write and is taken for one (the one
 * case docs/ledger.md names).
 * RZ_LEDGER_FAULT_ROUNDS and RZ_LEDGER_FAULT_SEED override the defaults
 * (40 rounds, a fixed seed) for longer runs. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ledger/ledger_impl.h"
#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define CLIENT rz_ledger_id_make(0, 100)
enum { BATCHES = 120, POWER_CUT = 42 };

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Chances in 1000 per call. */
static unsigned p_cut, p_werr, p_ferr, p_flip, p_cerr;
static unsigned clean_reads;   /* reads left before the next flip may come */

/* Writes the page cache holds and the disk may not: those on a descriptor
 * without O_DSYNC since the file's last successful fsync. A power cut
 * loses any subset of them (a disk persists out of order), so an
 * acknowledgement that came before its fsync shows up as a lost batch.
 * Kept per file; a durable write to the file (O_DSYNC, fsync) counts as
 * making all of it durable, which is kinder than a disk, so that undoing
 * an old write never undoes a later durable one. */
#define UNSYNCED_MAX 512
static struct unsynced {
    int fd;
    dev_t dev;
    ino_t ino;
    off_t off, old_size;
    size_t old_len;
    uint8_t *old;
} unsynced[UNSYNCED_MAX];
static size_t n_unsynced;

static void synced_file(dev_t dev, ino_t ino)
{
    size_t k = 0;
    for (size_t i = 0; i < n_unsynced; i++) {
        if (unsynced[i].dev == dev && unsynced[i].ino == ino)
            free(unsynced[i].old);
        else
            unsynced[k++] = unsynced[i];
    }
    n_unsynced = k;
}

static void note_unsynced(int fd, size_t n, off_t off)
{
    int fl = fcntl(fd, F_GETFL);
    struct stat st;
    if (fl < 0 || fstat(fd, &st) != 0)
        return;
    if (fl & (O_DSYNC | O_SYNC)) {
        synced_file(st.st_dev, st.st_ino);
        return;
    }
    if (n_unsynced == UNSYNCED_MAX)
        _exit(7);   /* more than the test expects between two syncs */
    struct unsynced *u = &unsynced[n_unsynced++];
    u->fd = fd;
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    u->off = off;
    u->old_size = st.st_size;
    u->old_len = st.st_size > off ? (size_t)(st.st_size - off) : 0;
    if (u->old_len > n)
        u->old_len = n;
    u->old = malloc(u->old_len ? u->old_len : 1);
    if (!u->old || pread(fd, u->old, u->old_len, off) != (ssize_t)u->old_len)
        _exit(7);
}

static void synced(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0)
        synced_file(st.st_dev, st.st_ino);
}

/* The power goes: some unsynced writes never reached the disk (undone
 * newest first: old bytes back, an append cut off). */
static void power_cut(void)
{
    for (size_t i = n_unsynced; i-- > 0;) {
        struct unsynced *u = &unsynced[i];
        struct stat st;
        if ((rnd() & 1) || fstat(u->fd, &st) != 0 || st.st_ino != u->ino ||
            st.st_dev != u->dev)
            continue;   /* kept, or its descriptor is gone or reused */
        if ((u->old_len && pwrite(u->fd, u->old, u->old_len, u->off) < 0) ||
            ftruncate(u->fd, u->old_size) != 0)
            _exit(3);
    }
    _exit(POWER_CUT);
}

static ssize_t fault_pwrite(int fd, const void *p, size_t n, off_t off)
{
    unsigned r = (unsigned)(rnd() % 1000);
    note_unsynced(fd, n, off);
    if (r < p_cut) {   /* the power goes: part of the write is on disk */
        if (n > 1 && pwrite(fd, p, rnd() % n, off) < 0)
            _exit(3);
        power_cut();
    }
    if (r < p_cut + p_werr) {
        if (n > 1 && (rnd() & 1) && pwrite(fd, p, rnd() % n, off) < 0)
            _exit(3);
        errno = rnd() & 1 ? EIO : ENOSPC;
        return -1;
    }
    return pwrite(fd, p, n, off);
}

static int fault_fsync(int fd)
{
    if (rnd() % 1000 < p_ferr) {
        errno = EIO;
        return -1;
    }
    int rc = fsync(fd);
    if (rc == 0)
        synced(fd);
    return rc;
}

/* A damaged read is transient and isolated: the next few reads come back
 * right (a bus or controller error, not a dying disk: that one is the
 * damage on disk below). */
static ssize_t fault_pread(int fd, void *p, size_t n, off_t off)
{
    ssize_t r = pread(fd, p, n, off);
    if (clean_reads) {
        clean_reads--;
    } else if (r > 0 && rnd() % 1000 < p_flip) {
        size_t bit = (size_t)(rnd() % ((uint64_t)r * 8));
        ((uint8_t *)p)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        clean_reads = 4;
    }
    return r;
}

/* LMDB's commit (a checkpoint, or the one at close) fails as LMDB's does:
 * the transaction freed, the store as it was (its meta page not written);
 * or the power goes just before it or just after it. */
static int fault_commit(MDB_txn *txn)
{
    unsigned r = (unsigned)(rnd() % 1000);
    if (r < p_cut)
        power_cut();
    if (r < p_cut + p_cerr) {
        mdb_txn_abort(txn);
        return rnd() & 1 ? EIO : ENOSPC;
    }
    int mrc = mdb_txn_commit(txn);
    if (mrc == 0 && r < 2 * p_cut + p_cerr)
        power_cut();
    return mrc;
}

static const rz__ledger_io fault_io = { fault_pwrite, fault_pread,
                                        fault_fsync, fault_commit };

static rz_ledger_opts opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 1;
    o.map_size = 64u << 20;
    o.journal_size = 8u << 10;   /* wraps every few dozen batches */
    o.checkpoint_ops = 40;
    return o;
}

static rz_ledger_id batch_id(uint64_t round, uint64_t i)
{
    return rz_ledger_id_make(1 + round, 1000 + i);
}

static int open_retrying(rz_ledger **l, const char *dir)
{
    rz_ledger_opts o = opts();
    int rc = RZ_EIO;
    for (int tries = 0; tries < 50 && rc != RZ_OK; tries++) {
        rc = rz_ledger_open(l, dir, &o);
        if (rc == RZ_EDB)
            return rc;   /* refused: the parent finds out why */
    }
    return rc;
}

static void child(const char *dir, uint64_t round, int fd)
{
    rz__ledger_io_seam = &fault_io;
    rz_ledger *l;
    if (open_retrying(&l, dir) != RZ_OK)
        _exit(4);
    while (rz_ledger_create_account(l, CLIENT, RZ_LEDGER_CLIENT) != RZ_OK) {
        rz_ledger_close(l);
        if (open_retrying(&l, dir) != RZ_OK)
            _exit(4);
    }
    for (uint64_t i = 0; i < BATCHES; i++) {
        rz_ledger_op op = { 0 };
        op.type = RZ_LEDGER_OP_TEST_CREDIT;
        op.id = batch_id(round, i);
        op.account = CLIENT;
        op.amount = 1;
        rz_ledger_result res;
        if (rz_ledger_submit(l, &op, 1, &res) == RZ_OK) {
            if (res.status != RZ_OK && res.status != RZ_EEXISTS)
                _exit(6);
            if (write(fd, &i, sizeof i) != sizeof i)
                _exit(5);
            continue;
        }
        rz_ledger_close(l);   /* broken: nothing is committed on the way */
        if (open_retrying(&l, dir) != RZ_OK)
            _exit(4);
        /* The batch that failed may be retried: same id, same fields. */
        i--;
    }
    rz_ledger_close(l);
    _exit(0);
}

/* Damage a byte on disk inside one of the current round's records that is
 * not its last one; false when the round has fewer than two. */
static bool damage_interior(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ledger/journal", dir);
    size_t len;
    char *buf = file_read(path, &len);
    rz_ledger_op *ops = malloc(sizeof *ops * RZ_LEDGER_BATCH_MAX);
    uint64_t starts[512], last_seq = 0;
    size_t n = 0, off = 0, used;
    rz__ledger_jhdr h;
    /* The round ends where sequence numbers stop rising: records after
     * that are an earlier round's. */
    while (n < 512 && off < len &&
           rz__ledger_record_decode(buf + off, len - off, &h, ops, &used) ==
               RZ_OK && (n == 0 || h.seq > last_seq)) {
        starts[n++] = off;
        last_seq = h.seq;
        off += used;
    }
    free(ops);
    free(buf);
    if (n < 2)
        return false;
    size_t k = (size_t)(rnd() % (n - 1));
    uint64_t at = starts[k] + rnd() % (starts[k + 1] - starts[k]);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
    b ^= (uint8_t)(1u << (rnd() % 8));
    assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
    close(fd);
    return true;
}

static const char *scratch_root(void)
{
    struct stat st;
    return stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

typedef struct tally {
    unsigned opened, refused, cuts, damaged;
} tally;

/* The writer under write faults; what it acknowledged in acked[]. */
static void write_round(const char *dir, uint64_t round, bool *acked,
                        tally *t)
{
    p_cut = (unsigned)(rnd() % 12);
    p_werr = (unsigned)(rnd() % 30);
    p_ferr = (unsigned)(rnd() % 100);
    p_cerr = (unsigned)(rnd() % 300);
    p_flip = 0;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child(dir, round, pfd[1]);
    }
    close(pfd[1]);
    uint64_t i;
    while (read(pfd[0], &i, sizeof i) == sizeof i)
        if (i < BATCHES)
            acked[i] = true;
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    if (code != 0 && code != POWER_CUT)
        fail_msg("round %llu: the writer exited %d", (unsigned long long)round,
                 code);
    t->cuts += code == POWER_CUT;
}

/* The restart, reads damaged now and then: every acknowledged batch is
 * there, or the open is refused and the disk was damaged. */
static void check_round(const char *dir, uint64_t round, const bool *acked,
                        bool damage, tally *t)
{
    const rz__ledger_io *plain = rz__ledger_io_seam;
    p_cut = p_werr = p_ferr = p_cerr = 0;
    p_flip = 20;
    clean_reads = 0;
    rz__ledger_io_seam = &fault_io;
    rz_ledger_opts o = opts();
    rz_ledger *l;
    int rc = rz_ledger_open(&l, dir, &o);
    rz__ledger_io_seam = plain;
    if (rc != RZ_OK) {
        if (!damage || rc != RZ_EDB)
            fail_msg("round %llu: open refused without damage on disk: %s",
                     (unsigned long long)round, rz_error_last()->message);
        t->refused++;
        return;
    }
    t->opened++;
    for (uint64_t b = 0; b < BATCHES; b++) {
        rz_ledger_transfer tr;
        if (acked[b] &&
            rz_ledger_transfer_get(l, batch_id(round, b), &tr) != RZ_OK)
            fail_msg("round %llu: acknowledged batch %llu lost%s",
                     (unsigned long long)round, (unsigned long long)b,
                     damage ? " (journal damaged on disk)" : "");
    }
    assert_int_equal(rz_ledger_verify(l), RZ_OK);
    rz_ledger_close(l);
}

static void test_faults(void **state)
{
    (void)state;
    const char *e = getenv("RZ_LEDGER_FAULT_ROUNDS");
    uint64_t rounds = e ? strtoull(e, NULL, 10) : 40;
    e = getenv("RZ_LEDGER_FAULT_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 10) : 0x5eed5eedull;
    tally t = { 0 };
    for (uint64_t round = 0; round < rounds; round++) {
        rng = seed * 0x9e3779b97f4a7c15ull + round + 1;
        for (int w = 0; w < 8; w++)
            rnd();
        char dir[128];
        snprintf(dir, sizeof dir, "%s/rz-ledger-faults-XXXXXX", scratch_root());
        assert_non_null(mkdtemp(dir));
        bool *acked = calloc(BATCHES, sizeof *acked);
        write_round(dir, round, acked, &t);
        bool damage = rnd() % 3 == 0 && damage_interior(dir);
        t.damaged += damage;
        check_round(dir, round, acked, damage, &t);
        free(acked);
        assert_int_equal(tmp_dir_remove(dir), 0);
    }
    print_message("%llu rounds: %u power cuts, %u damaged on disk, %u opened "
                  "with every acknowledged batch, %u refused\n",
                  (unsigned long long)rounds, t.cuts, t.damaged, t.opened,
                  t.refused);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
