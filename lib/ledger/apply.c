/* Applying a batch of ops inside one LMDB write transaction.
 *
 * Accounts are cached for the whole batch and written once at its end. A
 * chain (ops joined by RZ_LEDGER_LINKED; a single op is a chain of one)
 * stages its transfers in memory and keeps an undo log of the accounts it
 * touched: if any op of the chain fails, the undo log restores the cache
 * and the staged transfers are dropped, so nothing of it reaches LMDB.
 *
 * Transfer records and index entries (history, jobs) of committed chains
 * wait until the end of the batch and go in sorted, through one cursor per
 * table: LMDB then finds most next keys on the leaf page the cursor is on
 * instead of walking down from the root. Until then the batch reads its
 * own transfers from a map (tget), and the hold of a job from a job ->
 * newest hold map. The expiry and open indexes are written at once, in
 * chain order (a transfer opened and resolved in one batch leaves none). */
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "ledger/ledger_impl.h"

typedef struct cached {
    rz_ledger_account a;
    bool exists;
    bool dirty;
    uint64_t chain;        /* the chain that last saved it to the undo log */
} cached;

typedef struct undo {
    size_t idx;
    cached old;
} undo;

typedef struct staged {
    rz_ledger_transfer t;
    bool is_new;           /* else: a pending transfer's new state */
} staged;

/* An index entry waiting for the end of the batch. */
typedef struct ientry {
    rz_ledger_id owner;    /* account or job */
    uint64_t seq;
    rz_ledger_id id;
} ientry;

typedef struct ilist {
    ientry *e;
    size_t n, cap;
} ilist;

/* job -> its newest hold made in this batch (open addressing). */
typedef struct holdmap {
    rz_ledger_id *job, *hold;
    size_t n, cap;
} holdmap;

/* The latest version of every transfer committed chains of this batch
 * wrote (open addressing over indexes + 1). */
typedef struct tmap {
    rz_ledger_transfer *t;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots;
} tmap;

typedef struct ctx {
    MDB_txn *txn;
    const rz__ledger_dbs *d;
    rz__ledger_meta *m;
    uint32_t fee_bps;
    cached *acc;
    size_t nacc, capacc;
    size_t *slots;         /* open addressing: index + 1, 0 empty */
    size_t nslots;
    undo *undo;
    size_t nundo, capundo;
    staged *st;
    size_t nst, capst;
    uint64_t chain;
    rz__ledger_meta saved;
    MDB_cursor *jobs_cur;
    rz_ledger_transfer last;   /* the last transfer read from LMDB */
    bool has_last;
    ilist history, jobs;
    holdmap holds;
    tmap bt;
} ctx;

typedef struct plan {
    rz_ledger_transfer t[3];
    size_t n;
} plan;

static bool fatal(int rc)
{
    return rc == RZ_ENOMEM || rc == RZ_EDB || rc == RZ_EIO ||
           rc == RZ_ETOOBIG || rc == RZ_EINTERNAL;
}

static int nomem(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    void *np = rz__grow(*p, cap, need, size, 16);
    if (!np)
        return nomem();
    *p = np;
    return RZ_OK;
}

/* ---- reads ---- */

int rz__ledger_get_account(MDB_txn *txn, const rz__ledger_dbs *d,
                           rz_ledger_id id, rz_ledger_account *a)
{
    uint8_t k[16];
    rz__ledger_id_key(id, k);
    MDB_val key = { 16, k }, val;
    int mrc = mdb_get(txn, d->accounts, &key, &val);
    if (mrc == MDB_NOTFOUND)
        return RZ_ENOENT;   /* no detail: callers decide if it is an error */
    if (mrc)
        return rz__ledger_db_error(mrc, "read account");
    if (rz__ledger_account_decode(val.mv_data, val.mv_size, a) != RZ_OK)
        return rz__error(RZ_EDB, "corrupt account record: %s",
                         rz_error_last()->message);
    return RZ_OK;
}

int rz__ledger_get_transfer(MDB_txn *txn, const rz__ledger_dbs *d,
                            rz_ledger_id id, rz_ledger_transfer *t)
{
    uint8_t k[16];
    rz__ledger_id_key(id, k);
    MDB_val key = { 16, k }, val;
    int mrc = mdb_get(txn, d->transfers, &key, &val);
    if (mrc == MDB_NOTFOUND)
        return RZ_ENOENT;
    if (mrc)
        return rz__ledger_db_error(mrc, "read transfer");
    if (rz__ledger_transfer_decode(val.mv_data, val.mv_size, t) != RZ_OK)
        return rz__error(RZ_EDB, "corrupt transfer record: %s",
                         rz_error_last()->message);
    return RZ_OK;
}

static size_t id_hash(rz_ledger_id id);

static size_t tmap_slot(const tmap *m, rz_ledger_id id)
{
    size_t h = id_hash(id) & (m->nslots - 1);
    while (m->slots[h] && !rz_ledger_id_equal(m->t[m->slots[h] - 1].id, id))
        h = (h + 1) & (m->nslots - 1);
    return h;
}

static const rz_ledger_transfer *tmap_get(const tmap *m, rz_ledger_id id)
{
    if (!m->n)
        return NULL;
    uint32_t v = m->slots[tmap_slot(m, id)];
    return v ? &m->t[v - 1] : NULL;
}

static int tmap_rehash(tmap *m)
{
    size_t ns = m->nslots ? m->nslots * 2 : 64;
    uint32_t *s = rz__calloc(ns, sizeof *s);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(m->slots);
    m->slots = s;
    m->nslots = ns;
    for (size_t i = 0; i < m->n; i++)
        s[tmap_slot(m, m->t[i].id)] = (uint32_t)(i + 1);
    return RZ_OK;
}

static int grow(void **p, size_t *cap, size_t need, size_t size);

/* Insert or replace t's version. */
static int tmap_put(tmap *m, const rz_ledger_transfer *t)
{
    if ((m->n + 1) * 2 > m->nslots && tmap_rehash(m) != RZ_OK)
        return RZ_ENOMEM;
    size_t h = tmap_slot(m, t->id);
    if (m->slots[h]) {
        m->t[m->slots[h] - 1] = *t;
        return RZ_OK;
    }
    int rc = grow((void **)&m->t, &m->cap, m->n + 1, sizeof *m->t);
    if (rc != RZ_OK)
        return rc;
    m->t[m->n++] = *t;
    m->slots[h] = (uint32_t)m->n;
    return RZ_OK;
}

/* A transfer as the chain sees it: staged versions first, then what
 * earlier chains of the batch wrote, then LMDB. */
static int tget(ctx *c, rz_ledger_id id, rz_ledger_transfer *t)
{
    for (size_t i = c->nst; i-- > 0;)
        if (rz_ledger_id_equal(c->st[i].t.id, id)) {
            *t = c->st[i].t;
            return RZ_OK;
        }
    const rz_ledger_transfer *b = tmap_get(&c->bt, id);
    if (b) {
        *t = *b;
        return RZ_OK;
    }
    /* An op reads its pending transfer when planned and again when
     * applied: remember the last one (dropped when a chain writes). */
    if (c->has_last && rz_ledger_id_equal(c->last.id, id)) {
        *t = c->last;
        return RZ_OK;
    }
    int rc = rz__ledger_get_transfer(c->txn, c->d, id, t);
    if (rc == RZ_OK) {
        c->last = *t;
        c->has_last = true;
    }
    return rc;
}

/* ---- the account cache ---- */

static size_t id_hash(rz_ledger_id id)
{
    uint64_t h = (id.hi ^ (id.lo * 0x9e3779b97f4a7c15ull));
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return (size_t)(h ^ (h >> 29));
}

static int rehash(ctx *c)
{
    size_t ns = c->nslots ? c->nslots * 2 : 64;
    size_t *s = rz__calloc(ns, sizeof *s);
    if (!s)
        return nomem();
    for (size_t i = 0; i < c->nacc; i++) {
        size_t h = id_hash(c->acc[i].a.id) & (ns - 1);
        while (s[h])
            h = (h + 1) & (ns - 1);
        s[h] = i + 1;
    }
    free(c->slots);
    c->slots = s;
    c->nslots = ns;
    return RZ_OK;
}

/* Index of the cache entry of `id`, loading it (or its absence) once. */
static int acct(ctx *c, rz_ledger_id id, size_t *idx)
{
    if (c->nslots) {
        size_t h = id_hash(id) & (c->nslots - 1);
        for (; c->slots[h]; h = (h + 1) & (c->nslots - 1))
            if (rz_ledger_id_equal(c->acc[c->slots[h] - 1].a.id, id)) {
                *idx = c->slots[h] - 1;
                return RZ_OK;
            }
    }
    if ((c->nacc + 1) * 2 > c->nslots && rehash(c) != RZ_OK)
        return RZ_ENOMEM;
    int rc = grow((void **)&c->acc, &c->capacc, c->nacc + 1, sizeof *c->acc);
    if (rc != RZ_OK)
        return rc;
    cached *e = &c->acc[c->nacc];
    memset(e, 0, sizeof *e);
    rc = rz__ledger_get_account(c->txn, c->d, id, &e->a);
    if (rc != RZ_OK && rc != RZ_ENOENT)
        return rc;
    e->exists = rc == RZ_OK;
    e->a.id = id;
    size_t h = id_hash(id) & (c->nslots - 1);
    while (c->slots[h])
        h = (h + 1) & (c->nslots - 1);
    c->slots[h] = ++c->nacc;
    *idx = c->nacc - 1;
    return RZ_OK;
}

/* Save an entry to the undo log before the chain first changes it. */
static int touch(ctx *c, size_t idx)
{
    cached *e = &c->acc[idx];
    if (e->chain != c->chain) {
        int rc = grow((void **)&c->undo, &c->capundo, c->nundo + 1,
                      sizeof *c->undo);
        if (rc != RZ_OK)
            return rc;
        c->undo[c->nundo].idx = idx;
        c->undo[c->nundo].old = *e;
        c->nundo++;
        e->chain = c->chain;
    }
    e->dirty = true;
    return RZ_OK;
}

/* An existing account's entry, touched for change. */
static int acct_use(ctx *c, rz_ledger_id id, size_t *idx)
{
    int rc = acct(c, id, idx);
    if (rc != RZ_OK)
        return rc;
    if (!c->acc[*idx].exists) {
        char h[33];
        rz_ledger_id_format(id, h);
        return rz__error(RZ_ENOENT, "no account %s", h);
    }
    return touch(c, *idx);
}

/* ---- chains ---- */

static void chain_begin(ctx *c)
{
    c->chain++;
    c->nundo = 0;
    c->nst = 0;
    c->saved = *c->m;
}

static void chain_rollback(ctx *c)
{
    for (size_t i = c->nundo; i-- > 0;) {
        uint64_t chain = c->acc[c->undo[i].idx].chain;
        c->acc[c->undo[i].idx] = c->undo[i].old;
        c->acc[c->undo[i].idx].chain = chain;
    }
    c->nundo = 0;
    c->nst = 0;
    *c->m = c->saved;
}

static int put(ctx *c, MDB_dbi dbi, void *k, size_t kl, void *v, size_t vl)
{
    MDB_val key = { kl, k }, val = { vl, v };
    int mrc = mdb_put(c->txn, dbi, &key, &val, 0);
    return mrc ? rz__ledger_db_error(mrc, "write") : RZ_OK;
}

static int defer_index(ilist *l, rz_ledger_id owner, uint64_t seq,
                       rz_ledger_id id)
{
    int rc = grow((void **)&l->e, &l->cap, l->n + 1, sizeof *l->e);
    if (rc != RZ_OK)
        return rc;
    l->e[l->n].owner = owner;
    l->e[l->n].seq = seq;
    l->e[l->n].id = id;
    l->n++;
    return RZ_OK;
}

static size_t holdmap_slot(const holdmap *m, rz_ledger_id job)
{
    size_t i = id_hash(job) & (m->cap - 1);
    while (!rz__ledger_id_zero(m->job[i]) && !rz_ledger_id_equal(m->job[i], job))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int holdmap_grow(holdmap *m)
{
    holdmap n = { NULL, NULL, 0, m->cap ? m->cap * 2 : 64 };
    n.job = rz__calloc(n.cap, sizeof *n.job);
    n.hold = rz__calloc(n.cap, sizeof *n.hold);
    if (!n.job || !n.hold) {
        free(n.job);
        free(n.hold);
        return nomem();
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (rz__ledger_id_zero(m->job[i]))
            continue;
        size_t s = holdmap_slot(&n, m->job[i]);
        n.job[s] = m->job[i];
        n.hold[s] = m->hold[i];
    }
    n.n = m->n;
    free(m->job);
    free(m->hold);
    *m = n;
    return RZ_OK;
}

static int holdmap_put(holdmap *m, rz_ledger_id job, rz_ledger_id hold)
{
    if ((m->n + 1) * 2 > m->cap && holdmap_grow(m) != RZ_OK)
        return RZ_ENOMEM;
    size_t s = holdmap_slot(m, job);
    m->n += rz__ledger_id_zero(m->job[s]);
    m->job[s] = job;
    m->hold[s] = hold;
    return RZ_OK;
}

/* The newest hold of job made in this batch, or false. */
static bool holdmap_get(const holdmap *m, rz_ledger_id job, rz_ledger_id *hold)
{
    if (!m->n)
        return false;
    size_t s = holdmap_slot(m, job);
    if (rz__ledger_id_zero(m->job[s]))
        return false;
    *hold = m->hold[s];
    return true;
}

/* One owner's entries in a batch. */
typedef struct group {
    rz_ledger_id owner;
    size_t count, at;
    uint32_t idx;          /* order of first appearance */
} group;

static int group_cmp(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->owner.hi != y->owner.hi)
        return x->owner.hi < y->owner.hi ? -1 : 1;
    return x->owner.lo < y->owner.lo ? -1 : x->owner.lo > y->owner.lo;
}

/* Order entries by owner, then seq. They arrive in seq order, so grouping
 * them by owner (stable) is enough: count per owner, sort the owners,
 * scatter. O(n + owners log owners) rather than a sort of every entry. */
static int sort_entries(ilist *l)
{
    size_t n = l->n, ns = 16, k = 0;
    while (ns < 2 * n)
        ns *= 2;
    uint32_t *slot = rz__calloc(ns, sizeof *slot);   /* group + 1, 0 empty */
    uint32_t *of = rz__malloc(n * sizeof *of);       /* entry -> group */
    group *g = rz__malloc(n * sizeof *g);
    size_t *at = rz__malloc(n * sizeof *at);         /* by first appearance */
    ientry *out = rz__malloc(n * sizeof *out);
    int rc = slot && of && g && at && out ? RZ_OK : nomem();
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        rz_ledger_id o = l->e[i].owner;
        size_t h = id_hash(o) & (ns - 1);
        while (slot[h] && !rz_ledger_id_equal(g[slot[h] - 1].owner, o))
            h = (h + 1) & (ns - 1);
        if (!slot[h]) {
            g[k] = (group){ o, 0, 0, (uint32_t)k };
            slot[h] = (uint32_t)++k;
        }
        of[i] = slot[h] - 1;
        g[of[i]].count++;
    }
    if (rc == RZ_OK) {
        qsort(g, k, sizeof *g, group_cmp);
        for (size_t i = 0, off = 0; i < k; off += g[i].count, i++)
            at[g[i].idx] = off;
        for (size_t i = 0; i < n; i++)
            out[at[of[i]]++] = l->e[i];
        free(l->e);
        l->e = out;
        l->cap = n;
        out = NULL;
    }
    free(slot);
    free(of);
    free(g);
    free(at);
    free(out);
    return rc;
}

/* The batch's transfers into LMDB, in id order, through one cursor. */
typedef struct tkey {
    rz_ledger_id id;
    size_t idx;
} tkey;

static int tkey_cmp(const void *a, const void *b)
{
    const tkey *x = a, *y = b;
    if (x->id.hi != y->id.hi)
        return x->id.hi < y->id.hi ? -1 : 1;
    return x->id.lo < y->id.lo ? -1 : x->id.lo > y->id.lo;
}

static int flush_transfers(ctx *c)
{
    if (!c->bt.n)
        return RZ_OK;
    tkey *order = rz__malloc(c->bt.n * sizeof *order);
    if (!order)
        return nomem();
    for (size_t i = 0; i < c->bt.n; i++)
        order[i] = (tkey){ c->bt.t[i].id, i };
    qsort(order, c->bt.n, sizeof *order, tkey_cmp);
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(c->txn, c->d->transfers, &cur);
    if (mrc) {
        free(order);
        return rz__ledger_db_error(mrc, "cursor");
    }
    for (size_t i = 0; !mrc && i < c->bt.n; i++) {
        uint8_t k[16], rec[RZ__LEDGER_TRANSFER_SIZE];
        rz__ledger_id_key(order[i].id, k);
        rz__ledger_transfer_encode(&c->bt.t[order[i].idx], rec);
        MDB_val key = { sizeof k, k }, val = { sizeof rec, rec };
        mrc = mdb_cursor_put(cur, &key, &val, 0);
    }
    mdb_cursor_close(cur);
    free(order);
    return mrc ? rz__ledger_db_error(mrc, "write transfer") : RZ_OK;
}

/* Insert a batch's entries of one index, sorted, through one cursor. */
static int flush_index(ctx *c, MDB_dbi dbi, ilist *l)
{
    if (!l->n)
        return RZ_OK;
    int rc = sort_entries(l);
    if (rc != RZ_OK)
        return rc;
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(c->txn, dbi, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    for (size_t i = 0; !mrc && i < l->n; i++) {
        uint8_t k[24], v[16];
        rz__ledger_id_key(l->e[i].owner, k);
        rz__ledger_be64(k + 16, l->e[i].seq);
        rz__ledger_id_key(l->e[i].id, v);
        MDB_val key = { sizeof k, k }, val = { sizeof v, v };
        mrc = mdb_cursor_put(cur, &key, &val, 0);
    }
    mdb_cursor_close(cur);
    return mrc ? rz__ledger_db_error(mrc, "write index") : RZ_OK;
}

static int expiry_key(const rz_ledger_transfer *t, uint8_t k[24])
{
    rz__ledger_be64(k, t->timeout);
    rz__ledger_id_key(t->id, k + 8);
    return 24;
}

static int flush_one(ctx *c, const staged *s)
{
    const rz_ledger_transfer *t = &s->t;
    uint8_t k[24];
    int rc = tmap_put(&c->bt, t);
    if (rc == RZ_OK && s->is_new) {
        rc = defer_index(&c->history, t->debit, t->seq, t->id);
        if (rc == RZ_OK)
            rc = defer_index(&c->history, t->credit, t->seq, t->id);
        if (rc == RZ_OK && !rz__ledger_id_zero(t->job))
            rc = defer_index(&c->jobs, t->job, t->seq, t->id);
        if (rc == RZ_OK && !rz__ledger_id_zero(t->job) &&
            t->code == RZ_LEDGER_CODE_HOLD)
            rc = holdmap_put(&c->holds, t->job, t->id);
    }
    /* A new pending transfer opens; a staged old one was just resolved. */
    if (rc == RZ_OK && (!s->is_new || t->state == RZ_LEDGER_OPEN))
        rc = rz__ledger_open_index(c->txn, c->d, t, s->is_new);
    if (rc != RZ_OK || !t->timeout)
        return rc;
    MDB_val key = { (size_t)expiry_key(t, k), k }, val = { 0, "" };
    int mrc = t->state == RZ_LEDGER_OPEN
                  ? mdb_put(c->txn, c->d->expiry, &key, &val, 0)
                  : mdb_del(c->txn, c->d->expiry, &key, NULL);
    return mrc && mrc != MDB_NOTFOUND ? rz__ledger_db_error(mrc, "expiry")
                                      : RZ_OK;
}

static int chain_flush(ctx *c)
{
    c->has_last = false;
    for (size_t i = 0; i < c->nst; i++) {
        int rc = flush_one(c, &c->st[i]);
        if (rc != RZ_OK)
            return rc;
    }
    c->nst = 0;
    c->nundo = 0;
    return RZ_OK;
}

static int stage(ctx *c, const rz_ledger_transfer *t, bool is_new)
{
    int rc = grow((void **)&c->st, &c->capst, c->nst + 1, sizeof *c->st);
    if (rc != RZ_OK)
        return rc;
    c->st[c->nst].t = *t;
    c->st[c->nst].is_new = is_new;
    c->nst++;
    return RZ_OK;
}

/* ---- arithmetic ---- */

static int add(uint64_t *x, uint64_t v)
{
    if (*x > UINT64_MAX - v)
        return rz__error(RZ_EOVERFLOW, "amount overflows 64 bits");
    *x += v;
    return RZ_OK;
}

static int sub(uint64_t *x, uint64_t v)
{
    if (*x < v)
        return rz__error(RZ_EINTERNAL, "ledger amount would go below zero");
    *x -= v;
    return RZ_OK;
}

/* Would debiting `amount` more break the debit account's limit? */
static int check_limit(const rz_ledger_account *a, uint64_t amount)
{
    if (!(a->flags & RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS))
        return RZ_OK;
    uint64_t out = a->debits_posted;
    int rc = add(&out, a->debits_pending);
    if (rc == RZ_OK)
        rc = add(&out, amount);
    if (rc != RZ_OK)
        return rc;
    if (out > a->credits_posted) {
        char h[33];
        rz_ledger_id_format(a->id, h);
        uint64_t avail = rz_ledger_available(a);
        return rz__error(RZ_EFUNDS, "account %s has %llu micros available, "
                         "%llu needed", h, (unsigned long long)avail,
                         (unsigned long long)amount);
    }
    return RZ_OK;
}

/* ---- applying single transfers ---- */

static int pending_state_error(const rz_ledger_transfer *p)
{
    char h[33];
    rz_ledger_id_format(p->id, h);
    switch (p->state) {
    case RZ_LEDGER_POSTED:
        return rz__error(RZ_EPOSTED, "pending transfer %s is already posted", h);
    case RZ_LEDGER_VOIDED:
        return rz__error(RZ_EVOIDED, "pending transfer %s is already voided", h);
    case RZ_LEDGER_EXPIRED:
        return rz__error(RZ_EEXPIRED, "pending transfer %s has expired", h);
    default:
        return rz__error(RZ_EINVAL, "transfer %s is not pending", h);
    }
}

/* Plain or pending: move (or reserve) amount from debit to credit. */
static int apply_new(ctx *c, rz_ledger_transfer *t)
{
    size_t di, ci;
    int rc = acct_use(c, t->debit, &di);
    if (rc == RZ_OK)
        rc = acct_use(c, t->credit, &ci);
    if (rc != RZ_OK)
        return rc;
    rz_ledger_account *da = &c->acc[di].a, *ca = &c->acc[ci].a;
    if ((rc = check_limit(da, t->amount)) != RZ_OK)
        return rc;
    bool pending = t->flags & RZ_LEDGER_PENDING;
    rc = add(pending ? &da->debits_pending : &da->debits_posted, t->amount);
    if (rc == RZ_OK)
        rc = add(pending ? &ca->credits_pending : &ca->credits_posted,
                 t->amount);
    t->state = pending ? RZ_LEDGER_OPEN : RZ_LEDGER_NOT_PENDING;
    c->m->open_pending += pending;
    return rc;
}

/* Post or void pending transfer t->pending_id. */
static int apply_resolve(ctx *c, rz_ledger_transfer *t, uint32_t void_state)
{
    rz_ledger_transfer p;
    int rc = tget(c, t->pending_id, &p);
    if (rc == RZ_ENOENT) {
        char h[33];
        rz_ledger_id_format(t->pending_id, h);
        return rz__error(RZ_ENOENT, "no pending transfer %s", h);
    }
    if (rc != RZ_OK)
        return rc;
    if (p.state != RZ_LEDGER_OPEN)
        return pending_state_error(&p);
    bool post = t->flags & RZ_LEDGER_POST;
    if (post && t->amount > p.amount)
        return rz__error(RZ_EAMOUNT, "post of %llu micros above the %llu held",
                         (unsigned long long)t->amount,
                         (unsigned long long)p.amount);
    size_t di, ci;
    rc = acct_use(c, p.debit, &di);
    if (rc == RZ_OK)
        rc = acct_use(c, p.credit, &ci);
    if (rc != RZ_OK)
        return rc;
    rz_ledger_account *da = &c->acc[di].a, *ca = &c->acc[ci].a;
    rc = sub(&da->debits_pending, p.amount);
    if (rc == RZ_OK)
        rc = sub(&ca->credits_pending, p.amount);
    if (rc == RZ_OK && post)
        rc = add(&da->debits_posted, t->amount);
    if (rc == RZ_OK && post)
        rc = add(&ca->credits_posted, t->amount);
    if (rc != RZ_OK)
        return rc;
    p.state = post ? RZ_LEDGER_POSTED : void_state;
    p.posted_amount = post ? t->amount : 0;
    t->debit = p.debit;
    t->credit = p.credit;
    if (!post)
        t->amount = p.amount;
    t->state = RZ_LEDGER_NOT_PENDING;
    c->m->open_pending--;
    return stage(c, &p, false);
}

static int apply_transfer(ctx *c, rz_ledger_transfer *t, uint32_t void_state)
{
    int rc = t->flags & (RZ_LEDGER_POST | RZ_LEDGER_VOID)
                 ? apply_resolve(c, t, void_state)
                 : apply_new(c, t);
    if (rc != RZ_OK)
        return rc;
    t->seq = ++c->m->seq;
    c->m->transfers++;
    return stage(c, t, true);
}

/* ---- planning: the transfers an op makes ---- */

static rz_ledger_transfer *plan_add(plan *p, rz_ledger_id id, uint32_t flags,
                                    uint32_t code, rz_ledger_id debit,
                                    rz_ledger_id credit, uint64_t amount)
{
    rz_ledger_transfer *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    t->id = id;
    t->flags = flags;
    t->code = code;
    t->debit = debit;
    t->credit = credit;
    t->amount = amount;
    return t;
}

static int need_kind(ctx *c, rz_ledger_id id, uint32_t k1, uint32_t k2)
{
    size_t idx;
    int rc = acct(c, id, &idx);
    if (rc != RZ_OK)
        return rc;
    uint32_t k = c->acc[idx].a.kind;
    if (c->acc[idx].exists && (k == k1 || k == k2))
        return RZ_OK;
    char h[33];
    rz_ledger_id_format(id, h);
    if (!c->acc[idx].exists)
        return rz__error(RZ_ENOENT, "no account %s", h);
    return rz__error(RZ_EINVAL, "account %s is of the wrong kind (%u)", h, k);
}

static int need_amount(uint64_t amount)
{
    return amount ? RZ_OK : rz__error(RZ_EINVAL, "amount must be above 0");
}

/* A pending transfer of the given code (0: any) by id. */
static int get_pending(ctx *c, rz_ledger_id id, uint32_t code,
                       rz_ledger_transfer *p)
{
    int rc = tget(c, id, p);
    if (rc != RZ_OK && rc != RZ_ENOENT)
        return rc;
    if (rc == RZ_OK && (p->flags & RZ_LEDGER_PENDING) &&
        (!code || p->code == code))
        return RZ_OK;
    char h[33];
    rz_ledger_id_format(id, h);
    if (rc == RZ_ENOENT)
        return rz__error(RZ_ENOENT, "no pending transfer %s", h);
    return rz__error(RZ_EINVAL, "transfer %s is not a pending transfer of "
                     "the right kind", h);
}

/* The newest hold of a job: staged ones first, then those of earlier
 * chains of this batch, then the job index. None: RZ_ENOENT without detail
 * (a new hold looks for one every time). */
static int job_hold(ctx *c, rz_ledger_id job, rz_ledger_transfer *p)
{
    for (size_t i = c->nst; i-- > 0;)
        if (c->st[i].t.code == RZ_LEDGER_CODE_HOLD &&
            rz_ledger_id_equal(c->st[i].t.job, job))
            return tget(c, c->st[i].t.id, p);
    rz_ledger_id hold;
    if (holdmap_get(&c->holds, job, &hold)) {
        int rc = tget(c, hold, p);
        return rc == RZ_ENOENT ? rz__error(RZ_EINTERNAL, "a hold of this "
                                           "batch is missing") : rc;
    }
    int mrc = c->jobs_cur ? 0 : mdb_cursor_open(c->txn, c->d->jobs,
                                                &c->jobs_cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    uint8_t k[24];
    rz__ledger_id_key(job, k);
    rz__ledger_be64(k + 16, UINT64_MAX);
    MDB_val key = { 24, k }, val;
    mrc = mdb_cursor_get(c->jobs_cur, &key, &val, MDB_SET_RANGE);
    mrc = mdb_cursor_get(c->jobs_cur, &key, &val,
                         mrc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    for (; mrc == 0; mrc = mdb_cursor_get(c->jobs_cur, &key, &val, MDB_PREV)) {
        if (key.mv_size != 24 || memcmp(key.mv_data, k, 16) != 0 ||
            val.mv_size != 16)
            break;
        int rc = tget(c, rz__ledger_key_id(val.mv_data), p);
        if (rc != RZ_OK)
            return rc == RZ_ENOENT ? rz__error(RZ_EDB, "job index names a "
                                               "missing transfer") : rc;
        if (p->code == RZ_LEDGER_CODE_HOLD)
            return RZ_OK;
    }
    if (mrc && mrc != MDB_NOTFOUND)
        return rz__ledger_db_error(mrc, "job index");
    return RZ_ENOENT;
}

static int op_hold(ctx *c, const rz_ledger_op *op, rz_ledger_transfer *p)
{
    if (!rz__ledger_id_zero(op->pending_id)) {
        int rc = get_pending(c, op->pending_id, RZ_LEDGER_CODE_HOLD, p);
        if (rc == RZ_OK && !rz__ledger_id_zero(op->job) &&
            !rz_ledger_id_equal(op->job, p->job))
            return rz__error(RZ_EINVAL, "the hold belongs to another job");
        return rc;
    }
    if (rz__ledger_id_zero(op->job))
        return rz__error(RZ_EINVAL, "a job or a hold id is needed");
    int rc = job_hold(c, op->job, p);
    if (rc == RZ_ENOENT) {
        char h[33];
        rz_ledger_id_format(op->job, h);
        return rz__error(RZ_ENOENT, "job %s has no hold", h);
    }
    return rc;
}

/* One open hold per job (a replay of that very hold aside). */
static int no_open_hold(ctx *c, const rz_ledger_op *op)
{
    rz_ledger_transfer h;
    int rc = job_hold(c, op->job, &h);
    if (rc == RZ_ENOENT)
        return RZ_OK;
    if (rc != RZ_OK)
        return rc;
    if (h.state != RZ_LEDGER_OPEN || rz_ledger_id_equal(h.id, op->id))
        return RZ_OK;
    char a[33], b[33];
    rz_ledger_id_format(op->job, a);
    rz_ledger_id_format(h.id, b);
    return rz__error(RZ_EEXISTS, "job %s already has the open hold %s", a, b);
}

static int plan_raw(ctx *c, const rz_ledger_op *op, plan *p)
{
    uint32_t kind = op->flags & (RZ_LEDGER_PENDING | RZ_LEDGER_POST |
                                 RZ_LEDGER_VOID);
    if (kind & (kind - 1))
        return rz__error(RZ_EINVAL, "at most one of pending, post, void");
    if (op->code < RZ_LEDGER_CODE_USER)
        return rz__error(RZ_EINVAL, "a raw transfer's code must be >= %d",
                         RZ_LEDGER_CODE_USER);
    if (op->timeout && kind != RZ_LEDGER_PENDING)
        return rz__error(RZ_EINVAL, "only a pending transfer has a timeout");
    if (kind == RZ_LEDGER_POST || kind == RZ_LEDGER_VOID) {
        rz_ledger_transfer pend;
        int rc = get_pending(c, op->pending_id, 0, &pend);
        if (rc != RZ_OK)
            return rc;
        if ((!rz__ledger_id_zero(op->account) &&
             !rz_ledger_id_equal(op->account, pend.debit)) ||
            (!rz__ledger_id_zero(op->counterparty) &&
             !rz_ledger_id_equal(op->counterparty, pend.credit)))
            return rz__error(RZ_EINVAL, "accounts differ from the pending "
                             "transfer's");
        uint64_t amount = kind == RZ_LEDGER_VOID || op->amount == 0
                              ? pend.amount : op->amount;
        if (kind == RZ_LEDGER_VOID && op->amount && op->amount != pend.amount)
            return rz__error(RZ_EINVAL, "a void releases the whole amount");
        rz_ledger_transfer *t = plan_add(p, op->id, kind, op->code, pend.debit,
                                         pend.credit, amount);
        t->pending_id = op->pending_id;
        t->job = op->job;
        return RZ_OK;
    }
    if (rz__ledger_id_zero(op->account) || rz__ledger_id_zero(op->counterparty) ||
        rz_ledger_id_equal(op->account, op->counterparty))
        return rz__error(RZ_EINVAL, "two different accounts are needed");
    int rc = need_amount(op->amount);
    if (rc != RZ_OK)
        return rc;
    rz_ledger_transfer *t = plan_add(p, op->id, kind, op->code, op->account,
                                     op->counterparty, op->amount);
    t->timeout = op->timeout;
    t->job = op->job;
    return RZ_OK;
}

static int plan_resolve(ctx *c, const rz_ledger_op *op, plan *p,
                        uint32_t want, uint32_t flags, uint32_t code)
{
    rz_ledger_transfer pend;
    int rc = get_pending(c, op->pending_id, want, &pend);
    if (rc != RZ_OK)
        return rc;
    rz_ledger_transfer *t = plan_add(p, op->id, flags, code, pend.debit,
                                     pend.credit, pend.amount);
    t->pending_id = pend.id;
    t->job = pend.job;
    return RZ_OK;
}

static int plan_settle(ctx *c, const rz_ledger_op *op, plan *p)
{
    rz_ledger_transfer hold;
    int rc = op_hold(c, op, &hold);
    if (rc == RZ_OK)
        rc = need_kind(c, op->counterparty, RZ_LEDGER_NODE, RZ_LEDGER_NODE);
    if (rc != RZ_OK)
        return rc;
    uint64_t fee = rz__ledger_fee_rule(op->amount, c->fee_bps);
    rz_ledger_transfer *t = plan_add(p, op->id, RZ_LEDGER_POST,
                                     RZ_LEDGER_CODE_SETTLE, hold.debit,
                                     hold.credit, op->amount);
    t->pending_id = hold.id;
    t->job = hold.job;
    if (op->amount - fee) {
        t = plan_add(p, rz_ledger_derive_id(op->id, 1), 0,
                     RZ_LEDGER_CODE_PAYOUT, RZ_LEDGER_ESCROW_ID, op->counterparty,
                     op->amount - fee);
        t->job = hold.job;
    }
    if (fee) {
        t = plan_add(p, rz_ledger_derive_id(op->id, 2), 0, RZ_LEDGER_CODE_FEE,
                     RZ_LEDGER_ESCROW_ID, RZ_LEDGER_PLATFORM_ID, fee);
        t->job = hold.job;
    }
    return RZ_OK;
}

/* A deposit request (pending) or a test credit: external -> client. */
static int plan_credit(ctx *c, const rz_ledger_op *op, plan *p)
{
    int rc = need_kind(c, op->account, RZ_LEDGER_CLIENT, RZ_LEDGER_CLIENT);
    if (rc == RZ_OK)
        rc = need_amount(op->amount);
    if (rc != RZ_OK)
        return rc;
    bool dep = op->type == RZ_LEDGER_OP_DEPOSIT_REQUEST;
    rz_ledger_transfer *t = plan_add(p, op->id, dep ? RZ_LEDGER_PENDING : 0,
                                     dep ? RZ_LEDGER_CODE_DEPOSIT
                                         : RZ_LEDGER_CODE_TEST_CREDIT,
                                     RZ_LEDGER_EXTERNAL_ID, op->account,
                                     op->amount);
    /* An unpaid request expires, so none holds the external account's
     * totals forever. */
    if (dep)
        t->timeout = op->timeout;
    return RZ_OK;
}

static int plan_op(ctx *c, const rz_ledger_op *op, plan *p)
{
    int rc;
    rz_ledger_transfer *t;
    switch (op->type) {
    case RZ_LEDGER_OP_TRANSFER:
        return plan_raw(c, op, p);
    case RZ_LEDGER_OP_DEPOSIT_REQUEST:
    case RZ_LEDGER_OP_TEST_CREDIT:
        return plan_credit(c, op, p);
    case RZ_LEDGER_OP_DEPOSIT_CONFIRM:
        return plan_resolve(c, op, p, RZ_LEDGER_CODE_DEPOSIT, RZ_LEDGER_POST,
                            RZ_LEDGER_CODE_DEPOSIT_CONFIRM);
    case RZ_LEDGER_OP_DEPOSIT_CANCEL:
        return plan_resolve(c, op, p, RZ_LEDGER_CODE_DEPOSIT, RZ_LEDGER_VOID,
                            RZ_LEDGER_CODE_DEPOSIT_CANCEL);
    case RZ_LEDGER_OP_HOLD:
        if (rz__ledger_id_zero(op->job))
            return rz__error(RZ_EINVAL, "a hold needs a job id");
        rc = need_kind(c, op->account, RZ_LEDGER_CLIENT, RZ_LEDGER_CLIENT);
        if (rc == RZ_OK)
            rc = need_amount(op->amount);
        if (rc == RZ_OK)
            rc = no_open_hold(c, op);
        if (rc != RZ_OK)
            return rc;
        t = plan_add(p, op->id, RZ_LEDGER_PENDING, RZ_LEDGER_CODE_HOLD,
                     op->account, RZ_LEDGER_ESCROW_ID, op->amount);
        t->job = op->job;
        t->timeout = op->timeout;
        return RZ_OK;
    case RZ_LEDGER_OP_SETTLE:
        return plan_settle(c, op, p);
    case RZ_LEDGER_OP_REFUND: {
        rz_ledger_transfer hold;
        if ((rc = op_hold(c, op, &hold)) != RZ_OK)
            return rc;
        t = plan_add(p, op->id, RZ_LEDGER_VOID, RZ_LEDGER_CODE_REFUND,
                     hold.debit, hold.credit, hold.amount);
        t->pending_id = hold.id;
        t->job = hold.job;
        return RZ_OK;
    }
    case RZ_LEDGER_OP_WITHDRAW_REQUEST:
        rc = need_kind(c, op->account, RZ_LEDGER_CLIENT, RZ_LEDGER_NODE);
        if (rc == RZ_OK)
            rc = need_amount(op->amount);
        if (rc == RZ_OK)
            plan_add(p, op->id, RZ_LEDGER_PENDING, RZ_LEDGER_CODE_WITHDRAW,
                     op->account, RZ_LEDGER_EXTERNAL_ID, op->amount);
        return rc;
    case RZ_LEDGER_OP_WITHDRAW_COMPLETE:
        return plan_resolve(c, op, p, RZ_LEDGER_CODE_WITHDRAW, RZ_LEDGER_POST,
                            RZ_LEDGER_CODE_WITHDRAW_COMPLETE);
    case RZ_LEDGER_OP_WITHDRAW_CANCEL:
        return plan_resolve(c, op, p, RZ_LEDGER_CODE_WITHDRAW, RZ_LEDGER_VOID,
                            RZ_LEDGER_CODE_WITHDRAW_CANCEL);
    default:
        return rz__error(RZ_EINVAL, "unknown op type %u", op->type);
    }
}

/* ---- ops ---- */

static bool same_transfer(const rz_ledger_transfer *a,
                          const rz_ledger_transfer *b)
{
    return rz_ledger_id_equal(a->debit, b->debit) &&
           rz_ledger_id_equal(a->credit, b->credit) &&
           rz_ledger_id_equal(a->pending_id, b->pending_id) &&
           rz_ledger_id_equal(a->job, b->job) && a->amount == b->amount &&
           a->timeout == b->timeout && a->flags == b->flags &&
           a->code == b->code;
}

static int exists_different(rz_ledger_id id)
{
    char h[33];
    rz_ledger_id_format(id, h);
    return rz__error(RZ_EEXISTS_DIFFERENT, "id %s exists with other fields",
                     h);
}

static void plan_result(const rz_ledger_op *op, const plan *p,
                        rz_ledger_result *res)
{
    if (op->type == RZ_LEDGER_OP_SETTLE) {
        for (size_t i = 1; i < p->n; i++) {
            if (p->t[i].code == RZ_LEDGER_CODE_PAYOUT)
                res->amount = p->t[i].amount;
            else
                res->fee = p->t[i].amount;
        }
    } else if (p->t[0].flags & RZ_LEDGER_VOID) {
        res->amount = p->t[0].amount;
    }
}

/* The op's first id already exists: the same op again, or a clash. */
static int replay(ctx *c, const rz_ledger_op *op, const plan *p, int plan_rc,
                  rz_ledger_result *res)
{
    if (plan_rc != RZ_OK) {
        if (fatal(plan_rc))
            return plan_rc;
        return exists_different(op->id);
    }
    for (size_t i = 0; i < p->n; i++) {
        rz_ledger_transfer old;
        int rc = tget(c, p->t[i].id, &old);
        if (rc == RZ_ENOENT || (rc == RZ_OK && !same_transfer(&old, &p->t[i])))
            return exists_different(p->t[i].id);
        if (rc != RZ_OK)
            return rc;
    }
    res->replayed = 1;
    plan_result(op, p, res);
    return RZ_OK;
}

static int op_transfers(ctx *c, const rz_ledger_op *op, rz_ledger_result *res)
{
    if (rz__ledger_id_zero(op->id))
        return rz__error(RZ_EINVAL, "transfer id 0");
    rz_ledger_transfer old;
    int found = tget(c, op->id, &old);
    if (found != RZ_OK && found != RZ_ENOENT)
        return found;
    plan p = { .n = 0 };
    int rc = plan_op(c, op, &p);
    if (found == RZ_OK)
        return replay(c, op, &p, rc, res);
    if (rc != RZ_OK)
        return rc;
    for (size_t i = 1; i < p.n; i++) {
        rc = tget(c, p.t[i].id, &old);
        if (rc == RZ_OK)
            return exists_different(p.t[i].id);
        if (rc != RZ_ENOENT)
            return rc;
    }
    for (size_t i = 0; i < p.n; i++)
        if ((rc = apply_transfer(c, &p.t[i], RZ_LEDGER_VOIDED)) != RZ_OK)
            return rc;
    plan_result(op, &p, res);
    return RZ_OK;
}

static int op_create_account(ctx *c, const rz_ledger_op *op,
                             rz_ledger_result *res)
{
    if (op->id.hi == 0 && op->id.lo < 16)
        return rz__error(RZ_EINVAL, "account ids 0..15 are reserved");
    if (op->kind != RZ_LEDGER_CLIENT && op->kind != RZ_LEDGER_NODE)
        return rz__error(RZ_EINVAL, "an account is a client or a node");
    size_t idx;
    int rc = acct(c, op->id, &idx);
    if (rc != RZ_OK)
        return rc;
    if (c->acc[idx].exists) {
        if (c->acc[idx].a.kind != op->kind)
            return exists_different(op->id);
        res->replayed = 1;
        return RZ_OK;
    }
    if ((rc = touch(c, idx)) != RZ_OK)
        return rc;
    cached *e = &c->acc[idx];
    memset(&e->a, 0, sizeof e->a);
    e->a.id = op->id;
    e->a.kind = op->kind;
    e->a.flags = RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS;
    e->a.created_seq = ++c->m->seq;
    e->exists = true;
    c->m->accounts++;
    return RZ_OK;
}

/* Void every open pending transfer whose timeout has come. */
static int op_tick(ctx *c, const rz_ledger_op *op, rz_ledger_result *res)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(c->txn, c->d->expiry, &cur);
    if (mrc)
        return rz__ledger_db_error(mrc, "cursor");
    rz_ledger_id *due = NULL;
    size_t n = 0, cap = 0;
    int rc = RZ_OK;
    MDB_val key, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 24) {
            rc = rz__error(RZ_EDB, "malformed expiry key");
            break;
        }
        if (rz__ledger_get_be64(key.mv_data) > op->amount)
            break;
        if ((rc = grow((void **)&due, &cap, n + 1, sizeof *due)) != RZ_OK)
            break;
        due[n++] = rz__ledger_key_id((const uint8_t *)key.mv_data + 8);
    }
    mdb_cursor_close(cur);
    if (rc == RZ_OK && mrc && mrc != MDB_NOTFOUND)
        rc = rz__ledger_db_error(mrc, "expiry index");
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        rz_ledger_transfer t;
        memset(&t, 0, sizeof t);
        t.id = rz_ledger_derive_id(due[i], 3);
        t.flags = RZ_LEDGER_VOID;
        t.code = RZ_LEDGER_CODE_EXPIRE;
        t.pending_id = due[i];
        rz_ledger_transfer p;
        rc = get_pending(c, due[i], 0, &p);
        if (rc == RZ_OK) {
            t.job = p.job;
            rc = apply_transfer(c, &t, RZ_LEDGER_EXPIRED);
        }
        if (rc != RZ_OK && !fatal(rc))
            rc = rz__error(RZ_EDB, "expiry index names transfer that cannot "
                           "expire: %s", rz_error_last()->message);
    }
    free(due);
    res->expired = n;
    return rc;
}

static int op_apply(ctx *c, const rz_ledger_op *op, bool chained,
                    rz_ledger_result *res)
{
    if (op->flags & ~(RZ_LEDGER_LINKED | RZ_LEDGER_PENDING | RZ_LEDGER_POST |
                      RZ_LEDGER_VOID))
        return rz__error(RZ_EINVAL, "unknown op flags 0x%x", op->flags);
    if (op->type != RZ_LEDGER_OP_TRANSFER &&
        (op->flags & ~RZ_LEDGER_LINKED))
        return rz__error(RZ_EINVAL, "transfer flags on a non-transfer op");
    switch (op->type) {
    case RZ_LEDGER_OP_CREATE_ACCOUNT:
        return op_create_account(c, op, res);
    case RZ_LEDGER_OP_TICK:
        if (chained)
            return rz__error(RZ_EINVAL, "a tick cannot be linked");
        return op_tick(c, op, res);
    default:
        return op_transfers(c, op, res);
    }
}

/* ---- the batch ---- */

static int flush_accounts(ctx *c)
{
    for (size_t i = 0; i < c->nacc; i++) {
        if (!c->acc[i].dirty || !c->acc[i].exists)
            continue;
        uint8_t k[16], rec[RZ__LEDGER_ACCOUNT_SIZE];
        rz__ledger_id_key(c->acc[i].a.id, k);
        rz__ledger_account_encode(&c->acc[i].a, rec);
        int rc = put(c, c->d->accounts, k, 16, rec, sizeof rec);
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

/* One chain: ops [i, end]. Returns RZ_OK or a fatal error. */
static int run_chain(ctx *c, const rz_ledger_op *ops, size_t i, size_t end,
                     bool open_chain, rz_ledger_result *results)
{
    chain_begin(c);
    size_t fail = end + 1;
    int frc = RZ_OK;
    for (size_t k = i; k <= end; k++) {
        int rc = op_apply(c, &ops[k], end > i, &results[k]);
        if (fatal(rc))
            return rc;
        if (rc != RZ_OK) {
            fail = k;
            frc = rc;
            break;
        }
    }
    if (fail > end && open_chain) {
        fail = end;
        frc = rz__error(RZ_EINVAL, "the last op of the batch is linked to "
                        "nothing");
    }
    if (fail > end)
        return chain_flush(c);
    chain_rollback(c);
    for (size_t k = i; k <= end; k++) {
        memset(&results[k], 0, sizeof results[k]);
        results[k].status = k == fail ? frc : RZ_ELINKED;
    }
    return RZ_OK;
}

int rz__ledger_apply(MDB_txn *txn, const rz__ledger_dbs *d,
                     rz__ledger_meta *m, uint32_t fee_bps,
                     const rz_ledger_op *ops, size_t n,
                     rz_ledger_result *results)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.txn = txn;
    c.d = d;
    c.m = m;
    c.fee_bps = fee_bps;
    memset(results, 0, n * sizeof *results);
    int rc = RZ_OK;
    for (size_t i = 0; i < n && rc == RZ_OK;) {
        size_t end = i;
        while (end < n - 1 && (ops[end].flags & RZ_LEDGER_LINKED))
            end++;
        bool open_chain = end == n - 1 && (ops[end].flags & RZ_LEDGER_LINKED);
        rc = run_chain(&c, ops, i, end, open_chain, results);
        i = end + 1;
    }
    if (rc == RZ_OK)
        rc = flush_accounts(&c);
    if (c.jobs_cur)
        mdb_cursor_close(c.jobs_cur);
    if (rc == RZ_OK)
        rc = flush_transfers(&c);
    if (rc == RZ_OK)
        rc = flush_index(&c, d->history, &c.history);
    if (rc == RZ_OK)
        rc = flush_index(&c, d->jobs, &c.jobs);
    free(c.history.e);
    free(c.jobs.e);
    free(c.holds.job);
    free(c.holds.hold);
    free(c.bt.t);
    free(c.bt.slots);
    free(c.acc);
    free(c.slots);
    free(c.undo);
    free(c.st);
    return rc;
}
