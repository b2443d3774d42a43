/* The ledger handle: opening (with journal replay), durable batches,
 * checkpoints, one-op conveniences and queries. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/fs.h"
#include "ledger/ledger_impl.h"

/* A ledger that is not durable sheds its map once its batches took this
 * many page faults (shed_after). */
#define LEDGER_SHED_FAULTS 128

/* ---- small public helpers ---- */

uint64_t rz_ledger_available(const rz_ledger_account *a)
{
    if (!a)
        return 0;
    uint64_t out = a->debits_posted + a->debits_pending;
    if (out < a->debits_posted || out > a->credits_posted)
        return 0;
    return a->credits_posted - out;
}

uint64_t rz_ledger_fee(uint64_t micros, uint32_t fee_bps)
{
    if (fee_bps > 10000)
        fee_bps = 10000;
    /* round(micros * bps / 10000), halves up, without a 128-bit product:
     * micros = q * 10000 + r, so the exact fee is q * bps + r * bps / 10000
     * and only the second term has a fraction. q * bps <= micros. */
    return (micros / 10000) * fee_bps + ((micros % 10000) * fee_bps + 5000) / 10000;
}

uint64_t rz__ledger_fee_rule(uint64_t amount, uint32_t jfee)
{
    uint32_t bps = jfee & ~RZ__LEDGER_JFEE_MICROS;
    if (jfee & RZ__LEDGER_JFEE_MICROS)
        return rz_ledger_fee(amount, bps);
    /* Batches acknowledged before micro-dollars: cents, fee floored. */
    if (bps > 10000)
        bps = 10000;
    return (amount / 10000) * bps + (amount % 10000) * bps / 10000;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

rz_ledger_id rz_ledger_derive_id(rz_ledger_id id, uint32_t n)
{
    uint64_t hi = mix64(id.hi ^ mix64(id.lo + 0x9e3779b97f4a7c15ull * n));
    uint64_t lo = mix64(id.lo ^ mix64(hi + n));
    if (hi == 0 && lo < 16)
        lo |= 16;   /* never a reserved id */
    return rz_ledger_id_make(hi, lo);
}

void rz_ledger_id_format(rz_ledger_id id, char buf[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        buf[i] = hex[(id.hi >> (60 - 4 * i)) & 15];
        buf[16 + i] = hex[(id.lo >> (60 - 4 * i)) & 15];
    }
    buf[32] = '\0';
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int rz_ledger_id_parse(const char *s, rz_ledger_id *out)
{
    if (!s || !out)
        return rz__error(RZ_EINVAL, "no id given");
    size_t len = strlen(s);
    bool hex = len == 32 || (len > 2 && s[0] == '0' && (s[1] == 'x' ||
                                                        s[1] == 'X'));
    rz_ledger_id id = { 0, 0 };
    if (hex) {
        const char *p = len == 32 ? s : s + 2;
        size_t n = strlen(p);
        if (n == 0 || n > 32)
            return rz__error(RZ_EINVAL, "id '%s': at most 32 hex digits", s);
        for (size_t i = 0; i < n; i++) {
            int v = hexval(p[i]);
            if (v < 0)
                return rz__error(RZ_EINVAL, "id '%s' is not hex", s);
            id.hi = (id.hi << 4) | (id.lo >> 60);
            id.lo = (id.lo << 4) | (uint64_t)v;
        }
    } else {
        if (len == 0 || len > 20)
            return rz__error(RZ_EINVAL, "id '%s' is not a number", s);
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return rz__error(RZ_EINVAL, "id '%s' is not a number", s);
            uint64_t d = (uint64_t)(s[i] - '0');
            if (id.lo > (UINT64_MAX - d) / 10)
                return rz__error(RZ_EINVAL, "id '%s' is above 2^64-1", s);
            id.lo = id.lo * 10 + d;
        }
    }
    *out = id;
    return RZ_OK;
}

/* ---- LMDB plumbing ---- */

/* LMDB's own codes are negative; a positive one is the system's errno
 * from its I/O (a full disk, EIO): a storage failure, not a damaged store,
 * so RZ_EIO, and the store is as its last commit left it. */
int rz__ledger_db_error(int mrc, const char *what)
{
    int rc = mrc == MDB_MAP_FULL ? RZ_ETOOBIG : mrc == ENOMEM ? RZ_ENOMEM
             : mrc > 0 ? RZ_EIO : RZ_EDB;
    /* LMDB reports a short write (a disk that filled during it) as EIO; the
     * disk hint only for the errors a full or failing disk gives. */
    bool disk = mrc == EIO || mrc == ENOSPC || mrc == EDQUOT || mrc == EFBIG;
    return rz__error(rc, "ledger %s: %s%s", what, mdb_strerror(mrc),
                     disk ? " (a write to the ledger's store failed: "
                     "is the disk full? The store holds what its last commit "
                     "did; batches acknowledged since are in its journal)" : "");
}

static const char META_KEY[] = "meta";
static const char FORMAT_KEY[] = "format";

static int format_read(rz_ledger *l, MDB_txn *txn)
{
    MDB_val key = { sizeof FORMAT_KEY - 1, (void *)FORMAT_KEY }, val;
    int mrc = mdb_get(txn, l->dbs.meta, &key, &val);
    l->format = 0;
    if (mrc == MDB_NOTFOUND)
        return RZ_OK;
    if (mrc)
        return rz__ledger_db_error(mrc, "read format");
    if (val.mv_size != 4)
        return rz__error(RZ_EDB, "%s: ledger format record of %zu bytes",
                         l->dir, val.mv_size);
    const uint8_t *p = val.mv_data;
    l->format = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                (uint32_t)p[2] << 8 | p[3];
    if (l->format != RZ__LEDGER_FORMAT && l->format != RZ__LEDGER_FORMAT_CENTS)
        return rz__error(RZ_EUNSUPPORTED, "%s: ledger format %u; this "
                         "version reads format %u (docs/formats.md)", l->dir,
                         l->format, RZ__LEDGER_FORMAT);
    return RZ_OK;
}

/* A reader never reads cents as micro-dollars. */
static int format_reader_check(const rz_ledger *l)
{
    if (l->format == RZ__LEDGER_FORMAT)
        return RZ_OK;
    return rz__error(RZ_EUNSUPPORTED, "%s holds amounts in cents (ledger "
                     "format %u); this version counts micro-dollars. Convert "
                     "it once, with nothing else running on it: "
                     "`rhizos-orchestrator migrate --data DIR` (starting "
                     "rhizos-orchestrator on it does the same; docs/formats.md)",
                     l->dir, l->format ? l->format : 1);
}

static int scale_u64(uint64_t *v, const char *what, const rz_ledger_id *id)
{
    if (*v > UINT64_MAX / RZ__LEDGER_MICROS_PER_CENT) {
        char h[33];
        rz_ledger_id_format(*id, h);
        return rz__error(RZ_EOVERFLOW, "%s %s: %llu cents are more than "
                         "2^64-1 micro-dollars; cannot convert the ledger",
                         what, h, (unsigned long long)*v);
    }
    *v *= RZ__LEDGER_MICROS_PER_CENT;
    return RZ_OK;
}

/* Every amount of a cents ledger (format 2 or before) times 10,000, in
 * the writer's transaction: the next checkpoint commits it together with
 * the new format, so a crash leaves either all cents or all micros. */
static int to_micros(rz_ledger *l, MDB_dbi dbi, bool accounts)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(l->wtxn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "convert to micro-dollars");
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint8_t rec[RZ__LEDGER_TRANSFER_SIZE];
        size_t len = accounts ? RZ__LEDGER_ACCOUNT_SIZE : RZ__LEDGER_TRANSFER_SIZE;
        if (accounts) {
            rz_ledger_account a;
            rc = rz__ledger_account_decode(val.mv_data, val.mv_size, &a);
            if (rc == RZ_OK)
                rc = scale_u64(&a.debits_posted, "account", &a.id);
            if (rc == RZ_OK)
                rc = scale_u64(&a.debits_pending, "account", &a.id);
            if (rc == RZ_OK)
                rc = scale_u64(&a.credits_posted, "account", &a.id);
            if (rc == RZ_OK)
                rc = scale_u64(&a.credits_pending, "account", &a.id);
            if (rc == RZ_OK)
                rz__ledger_account_encode(&a, rec);
        } else {
            rz_ledger_transfer t;
            rc = rz__ledger_transfer_decode(val.mv_data, val.mv_size, &t);
            if (rc == RZ_OK)
                rc = scale_u64(&t.amount, "transfer", &t.id);
            if (rc == RZ_OK)
                rc = scale_u64(&t.posted_amount, "transfer", &t.id);
            if (rc == RZ_OK)
                rz__ledger_transfer_encode(&t, rec);
        }
        if (rc == RZ_OK) {
            MDB_val nv = { len, rec };
            int prc = mdb_cursor_put(cur, &key, &nv, MDB_CURRENT);
            rc = prc ? rz__ledger_db_error(prc, "convert to micro-dollars") : RZ_OK;
        }
    }
    mdb_cursor_close(cur);
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "convert to micro-dollars");
    return rc;
}

static int format_write(rz_ledger *l)
{
    uint8_t p[4] = { 0, 0, 0, RZ__LEDGER_FORMAT };
    MDB_val key = { sizeof FORMAT_KEY - 1, (void *)FORMAT_KEY },
            val = { sizeof p, p };
    int mrc = mdb_put(l->wtxn, l->dbs.meta, &key, &val, 0);
    if (mrc)
        return rz__ledger_db_error(mrc, "write format");
    l->format = RZ__LEDGER_FORMAT;
    return RZ_OK;
}

int rz__ledger_meta_read(MDB_txn *txn, const rz__ledger_dbs *d,
                         rz__ledger_meta *m)
{
    MDB_val key = { sizeof META_KEY - 1, (void *)META_KEY }, val;
    memset(m, 0, sizeof *m);
    int mrc = mdb_get(txn, d->meta, &key, &val);
    if (mrc == MDB_NOTFOUND)
        return RZ_OK;
    if (mrc)
        return rz__ledger_db_error(mrc, "read meta");
    if (val.mv_size != 48)
        return rz__error(RZ_EDB, "ledger meta record of %zu bytes",
                         val.mv_size);
    const uint8_t *p = val.mv_data;
    m->applied = rz__ledger_get_be64(p);
    m->seq = rz__ledger_get_be64(p + 8);
    m->accounts = rz__ledger_get_be64(p + 16);
    m->transfers = rz__ledger_get_be64(p + 24);
    m->batches = rz__ledger_get_be64(p + 32);
    m->open_pending = rz__ledger_get_be64(p + 40);
    return RZ_OK;
}

int rz__ledger_meta_write(MDB_txn *txn, const rz__ledger_dbs *d,
                          const rz__ledger_meta *m)
{
    uint8_t p[48];
    rz__ledger_be64(p, m->applied);
    rz__ledger_be64(p + 8, m->seq);
    rz__ledger_be64(p + 16, m->accounts);
    rz__ledger_be64(p + 24, m->transfers);
    rz__ledger_be64(p + 32, m->batches);
    rz__ledger_be64(p + 40, m->open_pending);
    MDB_val key = { sizeof META_KEY - 1, (void *)META_KEY }, val = { 48, p };
    int mrc = mdb_put(txn, d->meta, &key, &val, 0);
    return mrc ? rz__ledger_db_error(mrc, "write meta") : RZ_OK;
}

int rz__ledger_read_begin(const rz_ledger *l, MDB_txn **txn)
{
    if (l->broken)
        return rz__error(RZ_ESTATE, "a write failed; reopen the ledger");
    if (l->wtxn) {
        *txn = l->wtxn;
        return RZ_OK;
    }
    int mrc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, txn);
    return mrc ? rz__ledger_db_error(mrc, "begin read") : RZ_OK;
}

void rz__ledger_read_end(const rz_ledger *l, MDB_txn *txn)
{
    if (txn != l->wtxn)
        mdb_txn_abort(txn);
}

static int open_dbs(rz_ledger *l, MDB_txn *txn)
{
    unsigned flags = l->read_only ? 0 : MDB_CREATE;
    struct { const char *name; MDB_dbi *dbi; } t[] = {
        { "accounts", &l->dbs.accounts }, { "transfers", &l->dbs.transfers },
        { "history", &l->dbs.history }, { "jobs", &l->dbs.jobs },
        { "expiry", &l->dbs.expiry }, { "meta", &l->dbs.meta },
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(t); i++) {
        int mrc = mdb_dbi_open(txn, t[i].name, flags, t[i].dbi);
        if (mrc == MDB_NOTFOUND)
            return rz__error(RZ_ENOENT, "%s holds no ledger", l->dir);
        if (mrc)
            return rz__ledger_db_error(mrc, "open table");
    }
    /* Older directories have no open index until a writer builds it. */
    int mrc = mdb_dbi_open(txn, "open", flags | MDB_DUPSORT | MDB_DUPFIXED,
                           &l->dbs.open);
    if (mrc == MDB_NOTFOUND && l->read_only) {
        l->dbs.open = 0;
        return RZ_OK;
    }
    return mrc ? rz__ledger_db_error(mrc, "open table") : RZ_OK;
}

int rz__ledger_open_index(MDB_txn *txn, const rz__ledger_dbs *d,
                          const rz_ledger_transfer *t, bool open)
{
    rz_ledger_id side[2] = { t->debit, t->credit };
    uint8_t id[16];
    rz__ledger_id_key(t->id, id);
    for (size_t i = 0; i < 2; i++) {
        uint8_t k[20];
        rz__ledger_open_key(side[i], t->code, k);
        MDB_val key = { sizeof k, k }, val = { sizeof id, id };
        int mrc = open ? mdb_put(txn, d->open, &key, &val, MDB_NODUPDATA)
                       : mdb_del(txn, d->open, &key, &val);
        if (mrc == MDB_KEYEXIST || mrc == MDB_NOTFOUND)
            return rz__error(RZ_EDB, "open-transfer index: entry %s",
                             open ? "already there" : "missing");
        if (mrc)
            return rz__ledger_db_error(mrc, "open-transfer index");
    }
    return RZ_OK;
}

static const char OPEN_INDEX_KEY[] = "open_index";

/* A directory from before the open index gets it from its transfers, in
 * the transaction that records that it has it: a crash leaves both or
 * neither. */
static int open_index_build(rz_ledger *l, MDB_txn *txn)
{
    MDB_val mk = { sizeof OPEN_INDEX_KEY - 1, (void *)OPEN_INDEX_KEY }, mv;
    int mrc = mdb_get(txn, l->dbs.meta, &mk, &mv);
    if (mrc != MDB_NOTFOUND)
        return mrc ? rz__ledger_db_error(mrc, "read meta") : RZ_OK;
    mrc = mdb_drop(txn, l->dbs.open, 0);
    MDB_cursor *cur;
    if (!mrc)
        mrc = mdb_cursor_open(txn, l->dbs.transfers, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "build the open-transfer index");
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        rz_ledger_transfer t;
        rc = rz__ledger_transfer_decode(val.mv_data, val.mv_size, &t);
        if (rc == RZ_OK && t.state == RZ_LEDGER_OPEN)
            rc = rz__ledger_open_index(txn, &l->dbs, &t, true);
    }
    mdb_cursor_close(cur);
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "build the open-transfer index");
    if (rc != RZ_OK)
        return rc;
    uint8_t one = 1;
    mv = (MDB_val){ 1, &one };
    mrc = mdb_put(txn, l->dbs.meta, &mk, &mv, 0);
    return mrc ? rz__ledger_db_error(mrc, "write meta") : RZ_OK;
}

/* Accounts and transfers written before checksums get one, in place; a
 * record that has one already is left (a migration cut short by a crash
 * is finished by the next open). */
static int migrate_table(MDB_txn *txn, MDB_dbi dbi, const char *name)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "migrate");
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint8_t rec[RZ__LEDGER_TRANSFER_SIZE];
        if (val.mv_size > sizeof rec) {
            rc = rz__error(RZ_EDB, "ledger %s record of %zu bytes", name,
                           val.mv_size);
            break;
        }
        memcpy(rec, val.mv_data, val.mv_size);
        rc = rz__ledger_record_upgrade(rec, val.mv_size);
        if (rc == 1) {
            MDB_val nv = { val.mv_size, rec };
            int prc = mdb_cursor_put(cur, &key, &nv, MDB_CURRENT);
            rc = prc ? rz__ledger_db_error(prc, "migrate") : RZ_OK;
        }
    }
    mdb_cursor_close(cur);
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "migrate");
    return rc;
}

/* The platform, escrow and external accounts exist from the start. */
static int init_accounts(rz_ledger *l, MDB_txn *txn)
{
    static const struct { uint64_t lo; uint32_t kind; uint32_t flags; } sys[] = {
        { 1, RZ_LEDGER_PLATFORM, RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS },
        { 2, RZ_LEDGER_ESCROW, RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS },
        { 3, RZ_LEDGER_EXTERNAL, 0 },
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(sys); i++) {
        rz_ledger_account a;
        int rc = rz__ledger_get_account(txn, &l->dbs,
                                        rz_ledger_id_make(0, sys[i].lo), &a);
        if (rc == RZ_OK)
            continue;
        if (rc != RZ_ENOENT)
            return rc;
        memset(&a, 0, sizeof a);
        a.id = rz_ledger_id_make(0, sys[i].lo);
        a.kind = sys[i].kind;
        a.flags = sys[i].flags;
        uint8_t k[16], rec[RZ__LEDGER_ACCOUNT_SIZE];
        rz__ledger_id_key(a.id, k);
        rz__ledger_account_encode(&a, rec);
        MDB_val key = { 16, k }, val = { sizeof rec, rec };
        int mrc = mdb_put(txn, l->dbs.accounts, &key, &val, 0);
        if (mrc)
            return rz__ledger_db_error(mrc, "create system account");
        l->meta.accounts++;
    }
    return rz__ledger_meta_write(txn, &l->dbs, &l->meta);
}

static int setup(rz_ledger *l)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(l->env, NULL, l->read_only ? MDB_RDONLY : 0, &txn);
    if (mrc)
        return rz__ledger_db_error(mrc, "begin");
    int rc = open_dbs(l, txn);
    if (rc == RZ_OK)
        rc = rz__ledger_meta_read(txn, &l->dbs, &l->meta);
    if (rc == RZ_OK)
        rc = format_read(l, txn);
    if (rc == RZ_OK && !l->read_only && !l->format)
        rc = migrate_table(txn, l->dbs.accounts, "account");
    if (rc == RZ_OK && !l->read_only && !l->format)
        rc = migrate_table(txn, l->dbs.transfers, "transfer");
    if (rc == RZ_OK && !l->read_only)
        rc = init_accounts(l, txn);
    if (rc == RZ_OK && !l->read_only)
        rc = open_index_build(l, txn);
    if (rc != RZ_OK) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = rz__ledger_io_seam->commit(txn);
    return mrc ? rz__ledger_db_error(mrc, "commit") : RZ_OK;
}

/* The writer keeps one LMDB write transaction open across batches; each
 * batch is durable through its journal record. A checkpoint commits that
 * transaction (LMDB syncs data, then meta) and starts the journal over. */
static int begin_write(rz_ledger *l)
{
    int mrc = mdb_txn_begin(l->env, NULL, 0, &l->wtxn);
    if (mrc) {
        l->wtxn = NULL;
        l->broken = true;
        return rz__ledger_db_error(mrc, "begin");
    }
    return RZ_OK;
}

static void fail_write(rz_ledger *l)
{
    /* Everything acknowledged is in the journal; reopening replays it. */
    mdb_txn_abort(l->wtxn);
    l->wtxn = NULL;
    l->broken = true;
}

/* After a checkpoint: the marker that starts the next round names the last
 * batch LMDB now holds, so that a journal lost or emptied later is seen. */
static int journal_restart(rz_ledger *l)
{
    int rc = rz__journal_restart(&l->journal, l->meta.applied);
    if (rc != RZ_OK)
        l->broken = true;
    return rc;
}

static int checkpoint(rz_ledger *l)
{
    int mrc = rz__ledger_io_seam->commit(l->wtxn);
    l->wtxn = NULL;
    if (mrc) {
        l->broken = true;
        return rz__ledger_db_error(mrc, "checkpoint commit");
    }
    l->ops_since = 0;
    rz__lmdb_shed(l->map, l->map_len);   /* RSS follows the live data */
    int rc = journal_restart(l);
    return rc == RZ_OK ? begin_write(l) : rc;
}

int rz_ledger_checkpoint(rz_ledger *l)
{
    if (!l)
        return rz__error(RZ_EINVAL, "no ledger");
    if (l->read_only)
        return rz__error(RZ_ESTATE, "the ledger is open read-only");
    if (l->broken)
        return rz__error(RZ_ESTATE, "a write failed; reopen the ledger");
    return checkpoint(l);
}

/* The pages the open transaction read stay mapped, and on /dev/shm
 * (embedded runs, not durable) they count as the process's memory until
 * shed: 1,024 batches of a 100,000-step run let them reach 60 MB. Shedding
 * every 16 ops kept them small but cost 15% of the embedded runner's CPU
 * at 20,000 steps: each shed unmaps the accounts' and the tree's hot pages
 * (a TLB flush of every CPU the runner's children ran on) and the next
 * batches fault them back, 16 pages a fault. So a ledger that is not
 * durable sheds once its own batches took LEDGER_SHED_FAULTS page faults
 * (f0: the process's count as the batch began) since its last shed: what
 * they map stays under LEDGER_SHED_FAULTS x 64 KiB (8 MiB), and the
 * engine's faults and the heap's no longer shed it. A durable one sheds
 * every 32 batches. */
static void shed_after(rz_ledger *l, uint64_t f0)
{
    if (l->shed_by_faults)
        l->shed_faults += rz__lmdb_faults() - f0;
    if (l->shed_by_faults ? l->shed_faults >= LEDGER_SHED_FAULTS
                          : l->meta.batches % 32 == 0) {
        rz__lmdb_shed(l->map, l->map_len);
        l->shed_faults = 0;
    }
}

/* Apply one batch into the open write transaction, journaled first if
 * asked. A failure here leaves the transaction unusable: the handle is
 * marked broken and reopening recovers every acknowledged batch. */
static int apply_batch(rz_ledger *l, uint32_t fee_bps, const rz_ledger_op *ops,
                       size_t n, rz_ledger_result *results, bool journal)
{
    rz__ledger_meta m = l->meta;
    uint64_t f0 = l->shed_by_faults ? rz__lmdb_faults() : 0;
    int rc = rz__ledger_apply(l->wtxn, &l->dbs, &m, fee_bps, ops, n, results);
    m.applied++;
    m.batches++;
    if (rc == RZ_OK)
        rc = rz__ledger_meta_write(l->wtxn, &l->dbs, &m);
    if (rc == RZ_OK && journal) {
        rz__ledger_jhdr h = { m.applied, (uint32_t)n, fee_bps, 0 };
        rc = rz__journal_append(&l->journal, &h, ops);
    }
    if (rc != RZ_OK) {
        fail_write(l);
        return rc;
    }
    l->meta = m;
    l->ops_since += n;
    shed_after(l, f0);
    return RZ_OK;
}

static int replay_one(void *ctx, const rz__ledger_jhdr *h,
                      const rz_ledger_op *ops)
{
    rz_ledger *l = ctx;
    if (!h->n_ops && h->seq > l->meta.applied)
        return rz__error(RZ_EDB, "%s/journal begins after batch %llu but "
                         "%s/data.mdb holds batches only up to %llu: LMDB lost "
                         "committed batches. " RZ__LEDGER_RECOVER, l->dir,
                         (unsigned long long)h->seq, l->dir,
                         (unsigned long long)l->meta.applied);
    if (h->seq <= l->meta.applied)
        return RZ_OK;
    if (h->seq != l->meta.applied + 1)
        return rz__error(RZ_EDB, "%s/journal has batch %llu, LMDB ends at "
                         "%llu. " RZ__LEDGER_RECOVER, l->dir,
                         (unsigned long long)h->seq,
                         (unsigned long long)l->meta.applied);
    if (l->read_only) {   /* a reader only counts what a writer would apply */
        l->meta.applied++;
        return RZ_OK;
    }
    rz_ledger_result *res = rz__malloc(sizeof *res * h->n_ops);
    if (!res)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = apply_batch(l, h->fee_bps, ops, h->n_ops, res, false);
    free(res);
    return rc;
}

static int open_env(rz_ledger *l, const rz_ledger_opts *o)
{
    unsigned flags = (l->read_only ? MDB_RDONLY : 0) | (o->durable ? 0 : MDB_NOSYNC);
    int rc = rz__lmdb_check_file(l->dir);
    if (rc != RZ_OK)
        return rc;
    size_t size = o->map_size ? o->map_size : RZ_LEDGER_DEFAULT_MAP_SIZE;
    int mrc = rz__lmdb_open(&l->env, l->dir, size, flags, NULL, NULL, 0);
    if (!mrc)
        rz__lmdb_map_find(l->env, size, &l->map, &l->map_len);
    return mrc ? rz__ledger_db_error(mrc, "open") : RZ_OK;
}

/* Whether what the scan saw is a journal that lost acknowledged batches:
 * a bad record with batches LMDB lacks after it, or (once every round
 * starts with a marker) no record of the last batch LMDB holds, or a file
 * shorter than its marker says. A torn last record is none of these. */
static int journal_check(rz_ledger *l, uint64_t lmdb_applied,
                         const rz__journal_scan_info *in)
{
    const rz__journal *j = &l->journal;
    if (in->later_seq > l->meta.applied)
        return rz__error(RZ_EDB, "%s/journal is corrupt at byte %llu: the "
                         "record there is damaged and acknowledged batches "
                         "up to %llu follow it (LMDB holds up to %llu); "
                         "refusing to open. " RZ__LEDGER_RECOVER, l->dir,
                         (unsigned long long)in->end,
                         (unsigned long long)in->later_seq,
                         (unsigned long long)l->meta.applied);
    if (in->marker_size > j->found)
        return rz__error(RZ_EDB, "%s/journal is truncated: %llu bytes, its "
                         "marker says %llu; refusing to open. "
                         RZ__LEDGER_RECOVER, l->dir,
                         (unsigned long long)j->found,
                         (unsigned long long)in->marker_size);
    if (l->format && (!in->valid || in->max_seq < lmdb_applied))
        return rz__error(RZ_EDB, "%s/journal %s: %s/data.mdb holds batches "
                         "up to %llu but the journal has no record of batch "
                         "%llu or later (it was emptied, replaced or cut "
                         "short at byte %llu); refusing to open. "
                         RZ__LEDGER_RECOVER, l->dir,
                         j->found ? "does not match the database" : "is empty",
                         l->dir, (unsigned long long)lmdb_applied,
                         (unsigned long long)lmdb_applied,
                         (unsigned long long)in->end);
    return RZ_OK;
}

static int open_journal(rz_ledger *l, const char *jpath)
{
    /* The journal is created before data.mdb: a database without its
     * journal lost it, and a new empty one would hide that. */
    struct stat st;
    char *db = rz__asprintf("%s/data.mdb", l->dir);
    if (!db)
        return rz__error(RZ_ENOMEM, "out of memory");
    bool create = stat(db, &st) != 0 || st.st_size == 0;
    free(db);
    int rc = rz__journal_open(&l->journal, jpath, create);
    if (rc == RZ_ENOENT)
        rc = rz__error(RZ_EDB, "%s is missing while %s/data.mdb holds a "
                       "ledger; refusing to open. " RZ__LEDGER_RECOVER, jpath,
                       l->dir);
    return rc;
}

static int open_writer(rz_ledger *l, const char *data_dir,
                       const rz_ledger_opts *o)
{
    int rc = rz__mkdir(data_dir);
    if (rc == RZ_OK)
        rc = rz__mkdir(l->dir);
    char *jpath = rc == RZ_OK ? rz__asprintf("%s/journal", l->dir) : NULL;
    if (rc == RZ_OK && !jpath)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK)
        rc = open_journal(l, jpath);
    if (rc == RZ_OK)
        rc = open_env(l, o);
    if (rc == RZ_OK)
        rc = setup(l);
    if (rc == RZ_OK)
        rc = begin_write(l);
    uint64_t lmdb_applied = l->meta.applied;
    rz__journal_scan_info info;
    if (rc == RZ_OK)
        rc = rz__journal_scan(&l->journal, replay_one, l, &info);
    if (rc == RZ_OK)
        rc = journal_check(l, lmdb_applied, &info);
    if (rc == RZ_OK)
        rc = rz__journal_prepare(&l->journal, jpath,
                                 o->journal_size ? o->journal_size
                                                 : RZ_LEDGER_DEFAULT_JOURNAL_SIZE,
                                 o->durable != 0);
    free(jpath);
    /* The marker of the round LMDB is at stays: nothing to write. */
    if (rc == RZ_OK && l->journal.marker == l->meta.applied)
        l->journal.pos = RZ__LEDGER_MARKER_SIZE;
    if (rc == RZ_OK)
        rc = checkpoint(l);
    /* A new ledger, or one from before markers: the format is recorded
     * only once a marker is on disk, so that a crash between the two never
     * leaves a format that promises one. */
    if (rc == RZ_OK && l->format != RZ__LEDGER_FORMAT) {
        rc = to_micros(l, l->dbs.accounts, true);
        if (rc == RZ_OK)
            rc = to_micros(l, l->dbs.transfers, false);
        if (rc == RZ_OK)
            rc = format_write(l);
        if (rc == RZ_OK)
            rc = checkpoint(l);
    }
    return rc;
}

/* A reader checks the journal too when no writer holds it (a live writer's
 * journal moves under a scan); it applies nothing and changes nothing. */
static int check_reader(rz_ledger *l)
{
    char *jpath = rz__asprintf("%s/journal", l->dir);
    if (!jpath)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = rz__journal_open_reader(&l->journal, jpath);
    if (rc == RZ_ENOENT)
        rc = rz__error(RZ_EDB, "%s is missing while %s/data.mdb holds a "
                       "ledger. " RZ__LEDGER_RECOVER, jpath, l->dir);
    free(jpath);
    if (rc == RZ_ESTATE) {
        rz_error_clear();
        return RZ_OK;
    }
    uint64_t lmdb_applied = l->meta.applied;
    rz__journal_scan_info info;
    /* A journal settled since the last checkpoint (the usual state of a
     * stopped server) needs no scan; a writer's open always scans. */
    bool settled = rc == RZ_OK && l->format &&
                   rz__journal_settled(&l->journal, lmdb_applied);
    if (rc == RZ_OK && !settled)
        rc = rz__journal_scan(&l->journal, replay_one, l, &info);
    if (rc == RZ_OK && !settled)
        rc = journal_check(l, lmdb_applied, &info);
    l->meta.applied = lmdb_applied;
    rz__journal_close(&l->journal);
    return rc;
}

int rz_ledger_open(rz_ledger **out, const char *data_dir,
                   const rz_ledger_opts *opts)
{
    if (out)
        *out = NULL;
    if (!out || !data_dir || !*data_dir)
        return rz__error(RZ_EINVAL, "no data directory given");
    rz_ledger_opts defaults = RZ_LEDGER_OPTS_INIT;
    const rz_ledger_opts *o = opts ? opts : &defaults;
    if (o->version != RZ_LEDGER_OPTS_VERSION || o->fee_bps > 10000)
        return rz__error(RZ_EINVAL, "ledger options: unknown version or fee "
                         "above 10000 basis points");
    if (sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libsodium failed to initialise");
    rz_ledger *l = rz__calloc(1, sizeof *l);
    if (!l)
        return rz__error(RZ_ENOMEM, "out of memory");
    l->journal.fd = l->journal.wfd = -1;
    l->fee_bps = o->fee_bps;
    l->read_only = o->read_only != 0;
    l->shed_by_faults = !o->durable;
    l->checkpoint_ops = o->checkpoint_ops ? o->checkpoint_ops
                                         : RZ_LEDGER_DEFAULT_CHECKPOINT_OPS;
    l->dir = rz__asprintf("%s/ledger", data_dir);
    int rc = l->dir ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    struct stat st;
    if (rc == RZ_OK && l->read_only && stat(l->dir, &st) != 0)
        rc = rz__error(RZ_ENOENT, "no ledger in %s", data_dir);
    if (rc == RZ_OK)
        rc = l->read_only ? open_env(l, o) : open_writer(l, data_dir, o);
    if (rc == RZ_OK && l->read_only)
        rc = setup(l);
    if (rc == RZ_OK && l->read_only)
        rc = check_reader(l);
    if (rc == RZ_OK && l->read_only)
        rc = format_reader_check(l);
    if (rc != RZ_OK) {
        l->broken = true;   /* no checkpoint on the way out */
        rz_ledger_close(l);
        return rc;
    }
    rz__lmdb_shed(l->map, l->map_len);   /* what recovery and checks read */
    *out = l;
    return RZ_OK;
}

void rz_ledger_close(rz_ledger *l)
{
    if (!l)
        return;
    if (l->wtxn && !l->broken) {
        /* A failed commit has freed the transaction too; the journal
         * still holds what it had. */
        int mrc = rz__ledger_io_seam->commit(l->wtxn);
        l->wtxn = NULL;
        if (mrc == 0)
            journal_restart(l);
    }
    if (l->wtxn)
        mdb_txn_abort(l->wtxn);
    if (l->env)
        mdb_env_close(l->env);
    rz__journal_close(&l->journal);
    free(l->dir);
    free(l);
}

int rz_ledger_submit(rz_ledger *l, const rz_ledger_op *ops, size_t n,
                     rz_ledger_result *results)
{
    if (!l || !ops || !results || n == 0 || n > RZ_LEDGER_BATCH_MAX)
        return rz__error(RZ_EINVAL, "a batch is 1..%d ops with room for "
                         "their results", RZ_LEDGER_BATCH_MAX);
    if (l->read_only)
        return rz__error(RZ_ESTATE, "the ledger is open read-only");
    if (l->broken)
        return rz__error(RZ_ESTATE, "a write failed; reopen the ledger");
    if (!rz__journal_fits(&l->journal, rz__ledger_record_size(n)) ||
        l->ops_since + n > l->checkpoint_ops) {
        int rc = checkpoint(l);
        if (rc != RZ_OK)
            return rc;
    }
    return apply_batch(l, l->fee_bps | RZ__LEDGER_JFEE_MICROS, ops, n, results,
                       true);
}

/* ---- one-op conveniences ---- */

static int submit_one(rz_ledger *l, const rz_ledger_op *op,
                      rz_ledger_result *res)
{
    rz_ledger_result r;
    int rc = rz_ledger_submit(l, op, 1, &r);
    if (rc != RZ_OK)
        return rc;
    if (res)
        *res = r;
    return r.status;
}

static rz_ledger_op make_op(uint32_t type, rz_ledger_id id)
{
    rz_ledger_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.id = id;
    return op;
}

int rz_ledger_create_account(rz_ledger *l, rz_ledger_id id,
                             rz_ledger_kind kind)
{
    rz_ledger_op op = make_op(RZ_LEDGER_OP_CREATE_ACCOUNT, id);
    op.kind = kind;
    return submit_one(l, &op, NULL);
}

static int account_op(rz_ledger *l, uint32_t type, rz_ledger_id id,
                      rz_ledger_id account, uint64_t micros)
{
    rz_ledger_op op = make_op(type, id);
    op.account = account;
    op.amount = micros;
    return submit_one(l, &op, NULL);
}

static int ref_op(rz_ledger *l, uint32_t type, rz_ledger_id id,
                  rz_ledger_id ref)
{
    rz_ledger_op op = make_op(type, id);
    op.pending_id = ref;
    return submit_one(l, &op, NULL);
}

int rz_ledger_deposit_request(rz_ledger *l, rz_ledger_id id,
                              rz_ledger_id client, uint64_t micros)
{
    return account_op(l, RZ_LEDGER_OP_DEPOSIT_REQUEST, id, client, micros);
}

int rz_ledger_deposit_confirm(rz_ledger *l, rz_ledger_id id,
                              rz_ledger_id request)
{
    return ref_op(l, RZ_LEDGER_OP_DEPOSIT_CONFIRM, id, request);
}

int rz_ledger_deposit_cancel(rz_ledger *l, rz_ledger_id id,
                             rz_ledger_id request)
{
    return ref_op(l, RZ_LEDGER_OP_DEPOSIT_CANCEL, id, request);
}

int rz_ledger_test_credit(rz_ledger *l, rz_ledger_id id, rz_ledger_id client,
                          uint64_t micros)
{
    return account_op(l, RZ_LEDGER_OP_TEST_CREDIT, id, client, micros);
}

int rz_ledger_hold(rz_ledger *l, rz_ledger_id id, rz_ledger_id job,
                   rz_ledger_id client, uint64_t max_micros, uint64_t timeout)
{
    rz_ledger_op op = make_op(RZ_LEDGER_OP_HOLD, id);
    op.job = job;
    op.account = client;
    op.amount = max_micros;
    op.timeout = timeout;
    return submit_one(l, &op, NULL);
}

int rz_ledger_settle(rz_ledger *l, rz_ledger_id id, rz_ledger_id job,
                     rz_ledger_id node, uint64_t actual_micros,
                     rz_ledger_result *res)
{
    rz_ledger_op op = make_op(RZ_LEDGER_OP_SETTLE, id);
    op.job = job;
    op.counterparty = node;
    op.amount = actual_micros;
    return submit_one(l, &op, res);
}

int rz_ledger_refund(rz_ledger *l, rz_ledger_id id, rz_ledger_id job,
                     rz_ledger_result *res)
{
    rz_ledger_op op = make_op(RZ_LEDGER_OP_REFUND, id);
    op.job = job;
    return submit_one(l, &op, res);
}

int rz_ledger_withdraw_request(rz_ledger *l, rz_ledger_id id,
                               rz_ledger_id account, uint64_t micros)
{
    return account_op(l, RZ_LEDGER_OP_WITHDRAW_REQUEST, id, account, micros);
}

int rz_ledger_withdraw_complete(rz_ledger *l, rz_ledger_id id,
                                rz_ledger_id request)
{
    return ref_op(l, RZ_LEDGER_OP_WITHDRAW_COMPLETE, id, request);
}

int rz_ledger_withdraw_cancel(rz_ledger *l, rz_ledger_id id,
                              rz_ledger_id request)
{
    return ref_op(l, RZ_LEDGER_OP_WITHDRAW_CANCEL, id, request);
}

int rz_ledger_tick(rz_ledger *l, uint64_t now, uint64_t *expired)
{
    rz_ledger_op op = make_op(RZ_LEDGER_OP_TICK, rz_ledger_id_make(0, 0));
    op.amount = now;
    rz_ledger_result r;
    int rc = submit_one(l, &op, &r);
    if (rc == RZ_OK && expired)
        *expired = r.expired;
    return rc;
}

/* ---- queries ---- */

int rz_ledger_balance(const rz_ledger *l, rz_ledger_id account,
                      rz_ledger_account *out)
{
    if (!l || !out)
        return rz__error(RZ_EINVAL, "no ledger or output");
    MDB_txn *txn;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    rc = rz__ledger_get_account(txn, &l->dbs, account, out);
    rz__ledger_read_end(l, txn);
    if (rc == RZ_ENOENT) {
        char h[33];
        rz_ledger_id_format(account, h);
        return rz__error(RZ_ENOENT, "no account %s", h);
    }
    return rc;
}

int rz_ledger_transfer_get(const rz_ledger *l, rz_ledger_id id,
                           rz_ledger_transfer *out)
{
    if (!l || !out)
        return rz__error(RZ_EINVAL, "no ledger or output");
    MDB_txn *txn;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    rc = rz__ledger_get_transfer(txn, &l->dbs, id, out);
    rz__ledger_read_end(l, txn);
    if (rc == RZ_ENOENT) {
        char h[33];
        rz_ledger_id_format(id, h);
        return rz__error(RZ_ENOENT, "no transfer %s", h);
    }
    return rc;
}

/* The transfer an index entry names. */
static int index_transfer(MDB_txn *txn, const rz__ledger_dbs *d,
                          const MDB_val *val, rz_ledger_transfer *t)
{
    if (val->mv_size != 16)
        return rz__error(RZ_EDB, "malformed index entry");
    int rc = rz__ledger_get_transfer(txn, d, rz__ledger_key_id(val->mv_data),
                                     t);
    return rc == RZ_ENOENT ? rz__error(RZ_EDB, "index names a missing "
                                       "transfer") : rc;
}

int rz_ledger_history(const rz_ledger *l, rz_ledger_id account, uint64_t before_seq,
                      rz_ledger_transfer *out, size_t cap, size_t *n)
{
    if (!l || !n || (cap && !out))
        return rz__error(RZ_EINVAL, "no ledger or output");
    *n = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    int mrc = mdb_cursor_open(txn, l->dbs.history, &cur);
    if (mrc) {
        rz__ledger_read_end(l, txn);
        return rz__ledger_db_error(mrc, "cursor");
    }
    uint8_t k[24];
    rz__ledger_id_key(account, k);
    rz__ledger_be64(k + 16, before_seq ? before_seq : UINT64_MAX);
    MDB_val key = { 24, k }, val;
    mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    mrc = mdb_cursor_get(cur, &key, &val, mrc == MDB_NOTFOUND ? MDB_LAST
                                                              : MDB_PREV);
    for (; mrc == 0 && *n < cap;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_PREV)) {
        if (key.mv_size != 24 || memcmp(key.mv_data, k, 16) != 0)
            break;
        if ((rc = index_transfer(txn, &l->dbs, &val, &out[*n])) != RZ_OK)
            break;
        ++*n;
    }
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "history");
    mdb_cursor_close(cur);
    rz__ledger_read_end(l, txn);
    return rc;
}

int rz_ledger_open_count(const rz_ledger *l, rz_ledger_id account,
                         uint32_t code, uint64_t *n)
{
    if (!l || !n)
        return rz__error(RZ_EINVAL, "no ledger or output");
    *n = 0;
    if (!l->dbs.open)
        return rz__error(RZ_EUNSUPPORTED, "%s has no open-transfer index yet "
                         "(a writer's open builds it)", l->dir);
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    int mrc = mdb_cursor_open(txn, l->dbs.open, &cur);
    if (mrc) {
        rz__ledger_read_end(l, txn);
        return rz__ledger_db_error(mrc, "cursor");
    }
    uint8_t k[20];
    rz__ledger_open_key(account, code, k);
    MDB_val key = { sizeof k, k }, val;
    mrc = mdb_cursor_get(cur, &key, &val, MDB_SET);
    size_t count = 0;
    if (!mrc)
        mrc = mdb_cursor_count(cur, &count);
    if (mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "open-transfer index");
    *n = count;
    mdb_cursor_close(cur);
    rz__ledger_read_end(l, txn);
    return rc;
}

int rz_ledger_job_transfers(const rz_ledger *l, rz_ledger_id job,
                            rz_ledger_transfer *out, size_t cap, size_t *n,
                            size_t *total)
{
    if (!l || !n || !total || (cap && !out))
        return rz__error(RZ_EINVAL, "no ledger or output");
    *n = *total = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    int mrc = mdb_cursor_open(txn, l->dbs.jobs, &cur);
    if (mrc) {
        rz__ledger_read_end(l, txn);
        return rz__ledger_db_error(mrc, "cursor");
    }
    uint8_t k[24] = { 0 };
    rz__ledger_id_key(job, k);
    MDB_val key = { 24, k }, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 24 || memcmp(key.mv_data, k, 16) != 0)
            break;
        if (*n < cap) {
            if ((rc = index_transfer(txn, &l->dbs, &val, &out[*n])) != RZ_OK)
                break;
            ++*n;
        }
        ++*total;
    }
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "job index");
    mdb_cursor_close(cur);
    rz__ledger_read_end(l, txn);
    return rc;
}

int rz_ledger_stats_get(const rz_ledger *l, rz_ledger_stats *out)
{
    if (!l || !out)
        return rz__error(RZ_EINVAL, "no ledger or output");
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    rz__ledger_meta m;
    rz_ledger_account esc, plat, ext;
    rc = rz__ledger_meta_read(txn, &l->dbs, &m);
    if (rc == RZ_OK)
        rc = rz__ledger_get_account(txn, &l->dbs, RZ_LEDGER_ESCROW_ID, &esc);
    if (rc == RZ_OK)
        rc = rz__ledger_get_account(txn, &l->dbs, RZ_LEDGER_PLATFORM_ID, &plat);
    if (rc == RZ_OK)
        rc = rz__ledger_get_account(txn, &l->dbs, RZ_LEDGER_EXTERNAL_ID, &ext);
    rz__ledger_read_end(l, txn);
    if (rc == RZ_ENOENT)
        return rz__error(RZ_EDB, "a system account is missing");
    if (rc != RZ_OK)
        return rc;
    out->accounts = m.accounts;
    out->transfers = m.transfers;
    out->batches = m.batches;
    out->open_pending = m.open_pending;
    out->escrow_held_micros = esc.credits_pending;
    out->escrow_micros = rz_ledger_available(&esc);
    out->fees_micros = plat.credits_posted;
    out->deposited_micros = ext.debits_posted;
    out->withdrawn_micros = ext.credits_posted;
    return RZ_OK;
}
