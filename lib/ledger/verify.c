/* rz_ledger_verify: recompute every balance from the transfers and check
 * each invariant; rz_ledger_export: every account and transfer. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/array.h"
#include "common/fs.h"
#include "ledger/ledger_impl.h"

/* An id -> index map (open addressing, power-of-two table). */
typedef struct idmap {
    rz_ledger_id *keys;
    size_t *vals;
    size_t cap, len;
} idmap;

static size_t idmap_slot(const idmap *m, rz_ledger_id id)
{
    uint64_t h = id.hi * 0x9e3779b97f4a7c15ull ^ id.lo;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    size_t i = (size_t)(h ^ (h >> 32)) & (m->cap - 1);
    while (m->vals[i] && !rz_ledger_id_equal(m->keys[i], id))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int idmap_grow(idmap *m)
{
    idmap n = { NULL, NULL, m->cap ? m->cap * 2 : 64, 0 };
    n.keys = rz__calloc(n.cap, sizeof *n.keys);
    n.vals = rz__calloc(n.cap, sizeof *n.vals);
    if (!n.keys || !n.vals) {
        free(n.keys);
        free(n.vals);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->vals[i])
            continue;
        size_t s = idmap_slot(&n, m->keys[i]);
        n.keys[s] = m->keys[i];
        n.vals[s] = m->vals[i];
    }
    n.len = m->len;
    free(m->keys);
    free(m->vals);
    *m = n;
    return RZ_OK;
}

/* Index of id, or RZ_NPOS. */
static size_t idmap_get(const idmap *m, rz_ledger_id id)
{
    if (!m->cap)
        return RZ_NPOS;
    size_t s = idmap_slot(m, id);
    return m->vals[s] ? m->vals[s] - 1 : RZ_NPOS;
}

static int idmap_put(idmap *m, rz_ledger_id id, size_t val)
{
    if ((m->len + 1) * 2 > m->cap && idmap_grow(m) != RZ_OK)
        return RZ_ENOMEM;
    size_t s = idmap_slot(m, id);
    if (!m->vals[s])
        m->len++;
    m->keys[s] = id;
    m->vals[s] = val + 1;
    return RZ_OK;
}

static void idmap_free(idmap *m)
{
    free(m->keys);
    free(m->vals);
}

/* ---- verify ---- */

typedef struct sums {
    rz_ledger_account stored;
    uint64_t dpost, dpend, cpost, cpend;
} sums;

typedef struct resolution {
    rz_ledger_id by;        /* the post or void */
    uint32_t flags;
    uint32_t code;
    uint64_t amount;
} resolution;

typedef struct vctx {
    MDB_txn *txn;
    const rz__ledger_dbs *d;
    rz__ledger_meta meta;
    sums *acc;
    size_t nacc;
    idmap accounts;
    resolution *res;
    size_t nres, capres;
    idmap resolved;          /* pending id -> index in res */
    uint64_t transfers, open, open_timed, with_job;
} vctx;

#define HEX(id, buf) (rz_ledger_id_format((id), (buf)), (buf))

static int breach(const char *fmt, ...) RZ_PRINTF(1, 2);
static int breach(const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rz__error(RZ_EINVALID, "ledger breach: %s", msg);
}

static int corrupt(const char *what, rz_ledger_id id)
{
    char h[33];
    return breach("%s %s: %s", what, HEX(id, h), rz_error_last()->message);
}

static int load_accounts(vctx *v)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(v->txn, v->d->accounts, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    size_t cap = 0;
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        sums *n = rz__grow(v->acc, &cap, v->nacc + 1, sizeof *n, 64);
        if (!n) {
            rc = rz__error(RZ_ENOMEM, "out of memory");
            break;
        }
        v->acc = n;
        sums *s = &v->acc[v->nacc];
        memset(s, 0, sizeof *s);
        rz_ledger_id kid = key.mv_size == 16 ? rz__ledger_key_id(key.mv_data)
                                             : rz_ledger_id_make(0, 0);
        if (key.mv_size != 16)
            rc = breach("an account key of %zu bytes", key.mv_size);
        else if (rz__ledger_account_decode(val.mv_data, val.mv_size,
                                           &s->stored) != RZ_OK)
            rc = corrupt("account", kid);
        else if (!rz_ledger_id_equal(kid, s->stored.id))
            rc = corrupt("account key and record differ:", kid);
        else
            rc = idmap_put(&v->accounts, kid, v->nacc++);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "accounts");
    if (!rc && v->nacc != v->meta.accounts)
        rc = breach("%zu accounts stored, the counter says %" PRIu64,
                    v->nacc, v->meta.accounts);
    return rc;
}

/* Walk every transfer record, decoded and checked against its key. */
typedef int (*transfer_fn)(vctx *v, const rz_ledger_transfer *t);

static int each_transfer(vctx *v, transfer_fn fn)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(v->txn, v->d->transfers, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        rz_ledger_transfer t;
        rz_ledger_id kid = key.mv_size == 16 ? rz__ledger_key_id(key.mv_data)
                                             : rz_ledger_id_make(0, 0);
        if (key.mv_size != 16)
            rc = breach("a transfer key of %zu bytes", key.mv_size);
        else if (rz__ledger_transfer_decode(val.mv_data, val.mv_size, &t))
            rc = corrupt("transfer", kid);
        else if (!rz_ledger_id_equal(kid, t.id))
            rc = corrupt("transfer key and record differ:", kid);
        else
            rc = fn(v, &t);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "transfers");
    return rc;
}

/* Pass 1: who resolved which pending transfer; twice is a breach. */
static int note_resolution(vctx *v, const rz_ledger_transfer *t)
{
    if (!(t->flags & (RZ_LEDGER_POST | RZ_LEDGER_VOID)))
        return RZ_OK;
    char a[33], b[33], c[33];
    size_t i = idmap_get(&v->resolved, t->pending_id);
    if (i != RZ_NPOS)
        return breach("pending transfer %s resolved twice: by %s and by %s",
                      HEX(t->pending_id, a), HEX(v->res[i].by, b),
                      HEX(t->id, c));
    resolution *n = rz__grow(v->res, &v->capres, v->nres + 1, sizeof *n, 64);
    if (!n)
        return rz__error(RZ_ENOMEM, "out of memory");
    v->res = n;
    v->res[v->nres] = (resolution){ t->id, t->flags, t->code, t->amount };
    return idmap_put(&v->resolved, t->pending_id, v->nres++);
}

static int sum_add(uint64_t *x, uint64_t v, rz_ledger_id acct)
{
    char h[33];
    if (*x > UINT64_MAX - v)
        return breach("the transfers of account %s overflow 64 bits",
                      HEX(acct, h));
    *x += v;
    return RZ_OK;
}

static int check_pending(vctx *v, const rz_ledger_transfer *t)
{
    char a[33], b[33];
    size_t i = idmap_get(&v->resolved, t->id);
    if (t->state == RZ_LEDGER_OPEN) {
        if (i != RZ_NPOS)
            return breach("pending transfer %s is open but %s resolved it",
                          HEX(t->id, a), HEX(v->res[i].by, b));
        v->open++;
        v->open_timed += t->timeout != 0;
        return RZ_OK;
    }
    if (i == RZ_NPOS)
        return breach("pending transfer %s is %s but nothing resolved it",
                      HEX(t->id, a), t->state == RZ_LEDGER_POSTED ? "posted"
                                                                 : "voided");
    const resolution *r = &v->res[i];
    bool post = r->flags & RZ_LEDGER_POST;
    uint32_t want = post ? RZ_LEDGER_POSTED
                         : r->code == RZ_LEDGER_CODE_EXPIRE ? RZ_LEDGER_EXPIRED
                                                            : RZ_LEDGER_VOIDED;
    if (t->state != want)
        return breach("pending transfer %s has state %u, its resolution %s "
                      "says %u", HEX(t->id, a), t->state, HEX(r->by, b), want);
    if (post ? (r->amount > t->amount || r->amount != t->posted_amount)
             : r->amount != t->amount)
        return breach("pending transfer %s of %" PRIu64 " micros: resolution "
                      "%s moved %" PRIu64, HEX(t->id, a), t->amount,
                      HEX(r->by, b), r->amount);
    return RZ_OK;
}

/* A post or void must name a pending transfer with the same accounts. */
static int check_resolver(vctx *v, const rz_ledger_transfer *t)
{
    char a[33], b[33];
    rz_ledger_transfer p;
    int rc = rz__ledger_get_transfer(v->txn, v->d, t->pending_id, &p);
    if (rc == RZ_ENOENT || (rc == RZ_OK && !(p.flags & RZ_LEDGER_PENDING)))
        return breach("transfer %s resolves %s, which is not a pending "
                      "transfer", HEX(t->id, a), HEX(t->pending_id, b));
    if (rc != RZ_OK)
        return rc == RZ_EDB ? corrupt("transfer", t->pending_id) : rc;
    if (!rz_ledger_id_equal(p.debit, t->debit) ||
        !rz_ledger_id_equal(p.credit, t->credit))
        return breach("transfer %s names other accounts than the pending %s",
                      HEX(t->id, a), HEX(p.id, b));
    return RZ_OK;
}

/* Pass 2: recompute the balances. */
static int tally(vctx *v, const rz_ledger_transfer *t)
{
    char a[33], b[33];
    size_t di = idmap_get(&v->accounts, t->debit);
    size_t ci = idmap_get(&v->accounts, t->credit);
    if (di == RZ_NPOS || ci == RZ_NPOS)
        return breach("transfer %s names a missing account %s", HEX(t->id, a),
                      HEX(di == RZ_NPOS ? t->debit : t->credit, b));
    if (t->seq == 0 || t->seq > v->meta.seq)
        return breach("transfer %s has seq %" PRIu64 " beyond the counter %"
                      PRIu64, HEX(t->id, a), t->seq, v->meta.seq);
    v->transfers++;
    v->with_job += !rz__ledger_id_zero(t->job);
    sums *d = &v->acc[di], *c = &v->acc[ci];
    int rc;
    if (t->flags & RZ_LEDGER_PENDING) {
        if ((rc = check_pending(v, t)) != RZ_OK || t->state != RZ_LEDGER_OPEN)
            return rc;
        rc = sum_add(&d->dpend, t->amount, d->stored.id);
        return rc ? rc : sum_add(&c->cpend, t->amount, c->stored.id);
    }
    if (t->flags & (RZ_LEDGER_POST | RZ_LEDGER_VOID)) {
        if ((rc = check_resolver(v, t)) != RZ_OK || (t->flags & RZ_LEDGER_VOID))
            return rc;
    }
    rc = sum_add(&d->dpost, t->amount, d->stored.id);
    return rc ? rc : sum_add(&c->cpost, t->amount, c->stored.id);
}

static int check_field(const sums *s, const char *name, uint64_t stored,
                       uint64_t summed)
{
    char h[33];
    if (stored == summed)
        return RZ_OK;
    return breach("account %s: %s is %" PRIu64 " but its transfers sum to %"
                  PRIu64, HEX(s->stored.id, h), name, stored, summed);
}

static int check_accounts(vctx *v)
{
    unsigned __int128 dpost = 0, cpost = 0, dpend = 0, cpend = 0;
    char h[33];
    for (size_t i = 0; i < v->nacc; i++) {
        const sums *s = &v->acc[i];
        const rz_ledger_account *a = &s->stored;
        int rc = check_field(s, "debits_posted", a->debits_posted, s->dpost);
        if (!rc)
            rc = check_field(s, "debits_pending", a->debits_pending, s->dpend);
        if (!rc)
            rc = check_field(s, "credits_posted", a->credits_posted, s->cpost);
        if (!rc)
            rc = check_field(s, "credits_pending", a->credits_pending,
                             s->cpend);
        if (rc)
            return rc;
        if ((a->flags & RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
            (unsigned __int128)a->debits_posted + a->debits_pending >
                a->credits_posted)
            return breach("account %s is below zero: debits %" PRIu64 " + %"
                          PRIu64 " pending exceed credits %" PRIu64,
                          HEX(a->id, h), a->debits_posted, a->debits_pending,
                          a->credits_posted);
        dpost += a->debits_posted;
        cpost += a->credits_posted;
        dpend += a->debits_pending;
        cpend += a->credits_pending;
    }
    if (dpost != cpost)
        return breach("total debits posted differ from total credits posted");
    if (dpend != cpend)
        return breach("total debits pending differ from total credits pending");
    return RZ_OK;
}

/* One entry of an index checked: RZ_OK, or a breach (or a read error). */
typedef int (*entry_fn)(vctx *v, const MDB_val *key, const MDB_val *val,
                        const void *arg);

/* The walk every index check shares: each entry of `dbi` through fn, then
 * its count against `want` (what that counts in `counted`). */
static int walk_index(vctx *v, MDB_dbi dbi, const char *name, entry_fn fn,
                      const void *arg, uint64_t want, const char *counted)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(v->txn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    uint64_t n = 0;
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        n++;
        rc = fn(v, &key, &val, arg);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, name);
    if (!rc && n != want)
        rc = breach("%s index has %" PRIu64 " entries, %" PRIu64 " expected "
                    "(%s)", name, n, want, counted);
    return rc;
}

/* history and job (arg: which of v->d's tables): the entry names an
 * existing transfer with that seq, of the account or job it is under. */
static int index_entry(vctx *v, const MDB_val *key, const MDB_val *val,
                       const void *arg)
{
    bool history = arg == &v->d->history;
    const char *name = history ? "history" : "job";
    char h[33];
    if (key->mv_size != 24 || val->mv_size != 16)
        return breach("malformed %s index entry", name);
    rz_ledger_id owner = rz__ledger_key_id(key->mv_data);
    uint64_t seq = rz__ledger_get_be64((const uint8_t *)key->mv_data + 16);
    rz_ledger_id id = rz__ledger_key_id(val->mv_data);
    rz_ledger_transfer t;
    int rc = rz__ledger_get_transfer(v->txn, v->d, id, &t);
    if (rc == RZ_ENOENT || (rc == RZ_OK && t.seq != seq))
        return breach("%s index entry %" PRIu64 " names transfer %s, which "
                      "is not there", name, seq, HEX(id, h));
    if (rc == RZ_OK && history &&
        !rz_ledger_id_equal(owner, t.debit) && !rz_ledger_id_equal(owner, t.credit))
        return breach("history of %s lists transfer %s of other accounts",
                      HEX(owner, h), HEX(id, h));
    if (rc == RZ_OK && !history && !rz_ledger_id_equal(owner, t.job))
        return breach("job index lists transfer %s under another job", HEX(id, h));
    return rc;
}

/* expiry: (timeout, id) of an open pending transfer with that timeout. */
static int expiry_entry(vctx *v, const MDB_val *key, const MDB_val *val,
                        const void *arg)
{
    (void)val, (void)arg;
    char h[33];
    if (key->mv_size != 24)
        return breach("malformed expiry index entry");
    rz_ledger_id id = rz__ledger_key_id((const uint8_t *)key->mv_data + 8);
    rz_ledger_transfer t;
    int rc = rz__ledger_get_transfer(v->txn, v->d, id, &t);
    if (rc == RZ_ENOENT || (rc == RZ_OK && (t.state != RZ_LEDGER_OPEN ||
             t.timeout != rz__ledger_get_be64(key->mv_data))))
        return breach("expiry index names %s, not an open pending transfer "
                      "with that timeout", HEX(id, h));
    return rc;
}

/* open: (account, code) -> id of an open pending transfer of that code
 * under its debit or credit account. */
static int open_entry(vctx *v, const MDB_val *key, const MDB_val *val,
                      const void *arg)
{
    (void)arg;
    char h[33];
    if (key->mv_size != 20 || val->mv_size != 16)
        return breach("malformed open-transfer index entry");
    const uint8_t *k = key->mv_data;
    rz_ledger_id owner = rz__ledger_key_id(k);
    uint32_t code = (uint32_t)k[16] << 24 | (uint32_t)k[17] << 16 |
                    (uint32_t)k[18] << 8 | k[19];
    rz_ledger_id id = rz__ledger_key_id(val->mv_data);
    rz_ledger_transfer t;
    int rc = rz__ledger_get_transfer(v->txn, v->d, id, &t);
    if (rc == RZ_ENOENT ||
        (rc == RZ_OK && (t.state != RZ_LEDGER_OPEN || t.code != code ||
                         (!rz_ledger_id_equal(owner, t.debit) &&
                          !rz_ledger_id_equal(owner, t.credit)))))
        return breach("open-transfer index lists %s, not an open pending "
                      "transfer of that code and account", HEX(id, h));
    return rc;
}

static int check_indexes(vctx *v)
{
    int rc = walk_index(v, v->d->history, "history", index_entry, &v->d->history,
                        2 * v->transfers, "two per transfer");
    if (!rc)
        rc = walk_index(v, v->d->jobs, "job", index_entry, &v->d->jobs,
                        v->with_job, "one per transfer of a job");
    if (!rc)
        rc = walk_index(v, v->d->expiry, "expiry", expiry_entry, NULL,
                        v->open_timed, "one per open pending transfer with a "
                        "timeout");
    /* A reader of a directory not yet migrated has no open index. */
    if (!rc && v->d->open)
        rc = walk_index(v, v->d->open, "open-transfer", open_entry, NULL,
                        2 * v->open, "two per open pending transfer");
    return rc;
}

static int check_counters(vctx *v)
{
    if (v->transfers != v->meta.transfers)
        return breach("%" PRIu64 " transfers stored, the counter says %" PRIu64,
                      v->transfers, v->meta.transfers);
    if (v->open != v->meta.open_pending)
        return breach("%" PRIu64 " open pending transfers, the counter says %"
                      PRIu64, v->open, v->meta.open_pending);
    return RZ_OK;
}

int rz_ledger_verify(const rz_ledger *l)
{
    if (!l)
        return rz__error(RZ_EINVAL, "no ledger");
    vctx v;
    memset(&v, 0, sizeof v);
    v.d = &l->dbs;
    int rc = rz__ledger_read_begin(l, &v.txn);
    if (rc != RZ_OK)
        return rc;
    rc = rz__ledger_meta_read(v.txn, v.d, &v.meta);
    if (!rc)
        rc = load_accounts(&v);
    if (!rc)
        rc = each_transfer(&v, note_resolution);
    if (!rc)
        rc = each_transfer(&v, tally);
    if (!rc)
        rc = check_accounts(&v);
    if (!rc)
        rc = check_counters(&v);
    if (!rc)
        rc = check_indexes(&v);
    rz__ledger_read_end(l, v.txn);
    rz__lmdb_shed(l->map, l->map_len);   /* it read every page */
    free(v.acc);
    free(v.res);
    idmap_free(&v.accounts);
    idmap_free(&v.resolved);
    return rc;
}

/* ---- a sample, for every start of a server ---- */

/* The records at n random keys of a table, read back (checksum) and matched
 * to their keys. */
static int sample_table(vctx *v, MDB_dbi dbi, bool accounts, size_t n)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(v->txn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    int rc = RZ_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t k[16];
        randombytes_buf(k, sizeof k);
        MDB_val key = { sizeof k, k }, val;
        mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (mrc == MDB_NOTFOUND)
            mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
        if (mrc) {
            rc = mrc == MDB_NOTFOUND ? RZ_OK
                                     : rz__ledger_db_error(mrc, "sample");
            break;
        }
        rz_ledger_id kid = key.mv_size == 16 ? rz__ledger_key_id(key.mv_data)
                                             : rz_ledger_id_make(0, 0);
        rz_ledger_account a;
        rz_ledger_transfer t;
        rz_ledger_id id;
        if (key.mv_size != 16)
            rc = breach("a key of %zu bytes", key.mv_size);
        else if (accounts ? rz__ledger_account_decode(val.mv_data,
                                                      val.mv_size, &a)
                          : rz__ledger_transfer_decode(val.mv_data,
                                                       val.mv_size, &t))
            rc = corrupt(accounts ? "account" : "transfer", kid);
        else if (id = accounts ? a.id : t.id, !rz_ledger_id_equal(kid, id))
            rc = breach("%s key and record differ", accounts ? "account"
                                                            : "transfer");
    }
    mdb_cursor_close(cur);
    return rc;
}

static int sample_counts(vctx *v)
{
    MDB_stat a, t, h;
    int mrc = mdb_stat(v->txn, v->d->accounts, &a);
    if (!mrc)
        mrc = mdb_stat(v->txn, v->d->transfers, &t);
    if (!mrc)
        mrc = mdb_stat(v->txn, v->d->history, &h);
    if (mrc)
        return rz__ledger_db_error(mrc, "stat");
    if (a.ms_entries != v->meta.accounts)
        return breach("%zu accounts stored, the counter says %" PRIu64,
                      a.ms_entries, v->meta.accounts);
    if (t.ms_entries != v->meta.transfers)
        return breach("%zu transfers stored, the counter says %" PRIu64,
                      t.ms_entries, v->meta.transfers);
    if (h.ms_entries != 2 * v->meta.transfers)
        return breach("history index has %zu entries for %" PRIu64
                      " transfers", h.ms_entries, v->meta.transfers);
    if (v->d->open && (mrc = mdb_stat(v->txn, v->d->open, &h)) != 0)
        return rz__ledger_db_error(mrc, "stat");
    if (v->d->open && h.ms_entries != 2 * v->meta.open_pending)
        return breach("open-transfer index has %zu entries for %" PRIu64
                      " open pending transfers", h.ms_entries,
                      v->meta.open_pending);
    return RZ_OK;
}

int rz_ledger_verify_sample(const rz_ledger *l, size_t n)
{
    if (!l)
        return rz__error(RZ_EINVAL, "no ledger");
    vctx v;
    memset(&v, 0, sizeof v);
    v.d = &l->dbs;
    int rc = rz__ledger_read_begin(l, &v.txn);
    if (rc != RZ_OK)
        return rc;
    rc = rz__ledger_meta_read(v.txn, v.d, &v.meta);
    bool small = v.meta.transfers + v.meta.accounts <= n;
    if (!rc && !small)
        rc = sample_counts(&v);
    if (!rc && !small)
        rc = sample_table(&v, v.d->accounts, true, n / 4 + 1);
    if (!rc && !small)
        rc = sample_table(&v, v.d->transfers, false, n);
    rz__ledger_read_end(l, v.txn);
    return rc == RZ_OK && small ? rz_ledger_verify(l) : rc;
}

/* ---- export ---- */

static const char *kind_name(uint32_t k)
{
    static const char *names[] = { "?", "client", "node", "platform",
                                   "escrow", "external" };
    return k < RZ_ARRAY_LEN(names) ? names[k] : "?";
}

static const char *flow_name(uint32_t flags)
{
    return flags & RZ_LEDGER_PENDING ? "pending"
         : flags & RZ_LEDGER_POST    ? "post"
         : flags & RZ_LEDGER_VOID    ? "void" : "plain";
}

static const char *state_name(uint32_t s)
{
    static const char *names[] = { "", "open", "posted", "voided", "expired" };
    return s < RZ_ARRAY_LEN(names) ? names[s] : "?";
}

static void export_account(rz__buf *b, const rz_ledger_account *a, int json,
                           bool first)
{
    char h[33];
    rz_ledger_id_format(a->id, h);
    if (json)
        rz__buf_printf(b, "%s\n    {\"id\":\"%s\",\"kind\":\"%s\",\"flags\":%u,"
                       "\"debits_posted\":%" PRIu64 ",\"debits_pending\":%"
                       PRIu64 ",\"credits_posted\":%" PRIu64
                       ",\"credits_pending\":%" PRIu64 ",\"available\":%"
                       PRIu64 "}", first ? "" : ",", h, kind_name(a->kind),
                       a->flags, a->debits_posted, a->debits_pending,
                       a->credits_posted, a->credits_pending,
                       rz_ledger_available(a));
    else
        rz__buf_printf(b, "account %s %-8s debits %" PRIu64 " (+%" PRIu64
                       " pending) credits %" PRIu64 " (+%" PRIu64
                       " pending) available %" PRIu64 "\n", h,
                       kind_name(a->kind), a->debits_posted,
                       a->debits_pending, a->credits_posted,
                       a->credits_pending, rz_ledger_available(a));
}

static void export_transfer(rz__buf *b, const rz_ledger_transfer *t, int json,
                            bool first)
{
    char id[33], dr[33], cr[33], pid[33], job[33];
    rz_ledger_id_format(t->id, id);
    rz_ledger_id_format(t->debit, dr);
    rz_ledger_id_format(t->credit, cr);
    rz_ledger_id_format(t->pending_id, pid);
    rz_ledger_id_format(t->job, job);
    if (json)
        rz__buf_printf(b, "%s\n    {\"id\":\"%s\",\"seq\":%" PRIu64
                       ",\"type\":\"%s\",\"code\":%u,\"state\":\"%s\","
                       "\"debit\":\"%s\",\"credit\":\"%s\",\"amount\":%" PRIu64
                       ",\"posted_amount\":%" PRIu64 ",\"pending_id\":\"%s\","
                       "\"job\":\"%s\",\"timeout\":%" PRIu64 "}",
                       first ? "" : ",", id, t->seq, flow_name(t->flags),
                       t->code, state_name(t->state), dr, cr, t->amount,
                       t->posted_amount, pid, job, t->timeout);
    else
        rz__buf_printf(b, "transfer %s seq %" PRIu64 " %s code %u%s%s "
                       "%s -> %s amount %" PRIu64 " job %s\n", id, t->seq,
                       flow_name(t->flags), t->code, t->state ? " " : "",
                       state_name(t->state), dr, cr, t->amount, job);
}

static int export_table(const rz_ledger *l, MDB_txn *txn, MDB_dbi dbi, bool accts,
                        int json, rz__buf *b)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    int rc = RZ_OK;
    bool first = true;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), first = false) {
        rz_ledger_account a;
        rz_ledger_transfer t;
        if (accts ? rz__ledger_account_decode(val.mv_data, val.mv_size, &a)
                  : rz__ledger_transfer_decode(val.mv_data, val.mv_size, &t)) {
            rc = rz__error(RZ_EDB, "corrupt record: %s",
                           rz_error_last()->message);
            break;
        }
        if (accts)
            export_account(b, &a, json, first);
        else
            export_transfer(b, &t, json, first);
    }
    mdb_cursor_close(cur);
    (void)l;
    if (!rc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "export");
    return rc;
}

int rz_ledger_export(const rz_ledger *l, int json, char **out)
{
    if (out)
        *out = NULL;
    if (!l || !out)
        return rz__error(RZ_EINVAL, "no ledger or output");
    MDB_txn *txn;
    int rc = rz__ledger_read_begin(l, &txn);
    if (rc != RZ_OK)
        return rc;
    rz__buf b = { 0 };
    if (json)
        rz__buf_puts(&b, "{\n  \"accounts\": [");
    rc = export_table(l, txn, l->dbs.accounts, true, json, &b);
    if (json)
        rz__buf_puts(&b, "\n  ],\n  \"transfers\": [");
    if (!rc)
        rc = export_table(l, txn, l->dbs.transfers, false, json, &b);
    if (json)
        rz__buf_puts(&b, "\n  ]\n}\n");
    rz__ledger_read_end(l, txn);
    if (!rc && b.failed)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc) {
        rz__buf_free(&b);
        return rc;
    }
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}
