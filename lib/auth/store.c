/* The auth store: one LMDB environment, five named databases:
 *   keys      BLAKE2b-256 of a key      -> {"kind","account","node"?}
 *   nodes     u64 node (big-endian)     -> {"x25519","ed25519"?}
 *   creds     u64 deployment            -> the sealed credentials' text
 *   logs      u64 job                   -> a job's log kept before attempts
 *                                          were told apart
 *             u64 job + u32 attempt     -> that attempt's log (the last
 *                                          RZ_AUTH_LOG_ATTEMPTS of a job)
 *   accounts  16-byte account id        -> {"name"?,"wallet_address"?}
 *   ids       32-byte Ed25519 key        -> {"node","retired"?}
 *   results   u64 job                   -> the signed result's record
 *   refs      "w" + wallet address      -> the account's 16-byte id
 *             "x" + 16-byte withdrawal  -> its record (JSON)
 *             "a"                       -> the audit log's head: seq (u64
 *                                          big-endian) + hash (32) +
 *                                          keyed_since (u64 big-endian)
 *             "c" + 16-byte account + id -> a credential the account
 *                                          stored (JSON, its value sealed)
 *             "d"                       -> the redo mark: the highest
 *                                          sequence of a server's redo
 *                                          copies whose writes are in the
 *                                          store (u64 big-endian)
 * Each put is one write transaction (LMDB fsyncs at commit). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lmdb.h>
#include <sodium.h>

#include "auth/auth_impl.h"
#include "common/fs.h"
#include "rhizos/auth.h"

/* Address space only: LMDB maps the file sparsely. */
#define AUTH_MAP_SIZE (4ull * 1024 * 1024 * 1024)
/* The mapped pages leave RSS this often (rz__lmdb_shed), as the engine's
 * do: logs and results make the file grow with every job, and the pages
 * a commit touched would otherwise stay counted as the process's. */
#define SHED_COMMITS 256

enum { DB_KEYS, DB_NODES, DB_CREDS, DB_LOGS, DB_ACCOUNTS, DB_IDS, DB_RESULTS,
       DB_REFS, DB_COUNT };

struct rz_auth {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    void *map;           /* LMDB's map, for rz__lmdb_shed */
    size_t map_len;
    uint64_t commits;
    MDB_txn *group;      /* rz_auth_group_begin's, or NULL */
    uint64_t group_writes;   /* writes it holds (rz_auth_group_writes) */
    pthread_t group_thread;
    bool has_admin;
    unsigned char admin_hash[32];
};

static int db_error(int mrc, const char *what)
{
    return rz__error(mrc == MDB_MAP_FULL ? RZ_ETOOBIG : RZ_EDB, "auth store %s: %s",
                     what, mdb_strerror(mrc));
}

/* Inside the group (of the thread that opened it) a write or read is a
 * child of the group's transaction: its writes join the group's commit,
 * a read sees them; a read's child is aborted like a read transaction. */
static int txn_begin(const rz_auth *a, unsigned flags, MDB_txn **txn)
{
    if (a->group && pthread_equal(a->group_thread, pthread_self()))
        return mdb_txn_begin(a->env, a->group, 0, txn);
    return mdb_txn_begin(a->env, NULL, flags, txn);
}

/* Every write's commit: durable (or, inside a group, part of the group's
 * commit), and now and then the map shed. */
static int commit(rz_auth *a, MDB_txn *txn)
{
    int mrc = mdb_txn_commit(txn);
    if (mrc == 0 && ++a->commits % SHED_COMMITS == 0)
        rz__lmdb_shed(a->map, a->map_len);
    return mrc;
}

/* The end of every write: committed when LMDB said nothing wrong (mrc 0)
 * and the caller's own checks passed (ok), else aborted. The LMDB code of
 * the begin, the writes or the commit: 0 when none failed. */
static int end_write(rz_auth *a, MDB_txn *txn, int mrc, bool ok)
{
    if (!txn)
        return mrc;
    if (mrc == 0 && ok) {
        mrc = commit(a, txn);
        a->group_writes += mrc == 0 && a->group &&
                           pthread_equal(a->group_thread, pthread_self());
        return mrc;
    }
    mdb_txn_abort(txn);
    return mrc;
}

static int auth_open(rz_auth **out, const char *dir, unsigned flags)
{
    *out = NULL;
    if (!dir || !*dir)
        return rz__error(RZ_EINVAL, "no auth store folder given");
    int rc = rz__auth_sodium();
    if (rc == RZ_OK && !(flags & MDB_RDONLY))
        rc = rz__mkdirs(dir);
    if (rc != RZ_OK)
        return rc;
    rz_auth *a = rz__calloc(1, sizeof *a);
    if (!a)
        return rz__error(RZ_ENOMEM, "out of memory");
    static const char *const names[DB_COUNT] = {"keys", "nodes", "creds", "logs",
                                                "accounts", "ids", "results",
                                                "refs"};
    int mrc = rz__lmdb_open(&a->env, dir, AUTH_MAP_SIZE, flags, names, a->dbi, DB_COUNT);
    if (mrc != 0) {
        rc = db_error(mrc, dir);
        free(a);
        return rc;
    }
    rz__lmdb_map_find(a->env, AUTH_MAP_SIZE, &a->map, &a->map_len);
    *out = a;
    return RZ_OK;
}

int rz_auth_open(rz_auth **out, const char *dir)
{
    return auth_open(out, dir, 0);
}

int rz_auth_open_readonly(rz_auth **out, const char *dir)
{
    return auth_open(out, dir, MDB_RDONLY);
}

int rz_auth_group_begin(rz_auth *a)
{
    if (!a)
        return rz__error(RZ_EINVAL, "no auth store");
    if (a->group)
        return rz__error(RZ_ESTATE, "the auth store's group is open already");
    int mrc = mdb_txn_begin(a->env, NULL, 0, &a->group);
    if (mrc != 0) {
        a->group = NULL;
        return db_error(mrc, "group");
    }
    a->group_thread = pthread_self();
    a->group_writes = 0;
    return RZ_OK;
}

uint64_t rz_auth_group_writes(const rz_auth *a)
{
    return a && a->group ? a->group_writes : 0;
}

int rz_auth_group_abort(rz_auth *a)
{
    if (!a || !a->group)
        return RZ_OK;
    if (!pthread_equal(a->group_thread, pthread_self()))
        return rz__error(RZ_ESTATE, "auth store: the group is another thread's");
    mdb_txn_abort(a->group);
    a->group = NULL;
    a->group_writes = 0;
    return RZ_OK;
}

int rz_auth_group_commit(rz_auth *a)
{
    if (!a || !a->group)
        return RZ_OK;
    MDB_txn *g = a->group;
    a->group = NULL;
    a->group_writes = 0;
    int mrc = commit(a, g);
    return mrc ? db_error(mrc, "group commit") : RZ_OK;
}

void rz_auth_close(rz_auth *a)
{
    if (!a)
        return;
    (void)!rz_auth_group_commit(a);
    if (a->env)
        mdb_env_close(a->env);
    sodium_memzero(a->admin_hash, sizeof a->admin_hash);
    free(a);
}

int rz_auth_admin_set(rz_auth *a, const char *key)
{
    int rc = rz_auth_key_check(key);
    if (rc != RZ_OK)
        return rz__error(rc, "the admin key is too weak: %s", rz_error_last()->message);
    rz__auth_key_hash(key, a->admin_hash);
    a->has_admin = true;
    return RZ_OK;
}

/* ---- records ---- */

static void key_u64(unsigned char k[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(v >> (56 - 8 * i));
}

static int put(rz_auth *a, int db, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_txn *txn = NULL;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    int mrc = txn_begin(a, 0, &txn);
    if (mrc == 0)
        mrc = mdb_put(txn, a->dbi[db], &key, &val, 0);
    mrc = end_write(a, txn, mrc, true);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

/* A NUL-terminated copy of the value into *out. */
static int get(const rz_auth *a, int db, const void *k, size_t kl, char **out,
               size_t *len)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    MDB_val key = { kl, (void *)k }, val;
    int mrc = txn_begin(a, MDB_RDONLY, &txn);
    if (mrc == 0)
        mrc = mdb_get(txn, a->dbi[db], &key, &val);
    int rc = RZ_OK;
    if (mrc == MDB_NOTFOUND)
        rc = rz__error(RZ_ENOENT, "no such record");
    else if (mrc != 0)
        rc = db_error(mrc, "read");
    else if (!(*out = rz__malloc(val.mv_size + 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK) {
        memcpy(*out, val.mv_data, val.mv_size);
        (*out)[val.mv_size] = '\0';
        if (len)
            *len = val.mv_size;
    }
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* The tables keyed by one 64-bit id (a deployment's credentials, a job's
 * log or result record): the id as the big-endian key. */
static int put_by_id(rz_auth *a, int db, uint64_t id, const void *v, size_t vl)
{
    unsigned char k[8];
    key_u64(k, id);
    return put(a, db, k, sizeof k, v, vl);
}

static int get_by_id(const rz_auth *a, int db, uint64_t id, char **out,
                     size_t *len)
{
    unsigned char k[8];
    key_u64(k, id);
    return get(a, db, k, sizeof k, out, len);
}

/* Put the JSON text of `doc` (taken). */
static int put_json(rz_auth *a, int db, const void *k, size_t kl, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    int rc = text ? put(a, db, k, kl, text, strlen(text))
                  : rz__error(RZ_ENOMEM, "out of memory");
    free(text);
    return rc;
}

/* ---- principals ---- */

static int principal_parse(const char *rec, rz_auth_principal *out)
{
    cJSON *doc = rec ? cJSON_Parse(rec) : NULL;
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "kind"));
    const char *acct = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "account"));
    const char *node = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "node"));
    int rc = RZ_EAUTH;
    if (kind && acct && rz_ledger_id_parse(acct, &out->account) == RZ_OK) {
        if (strcmp(kind, "client") == 0) {
            out->kind = RZ_AUTH_CLIENT;
            rc = RZ_OK;
        } else if (strcmp(kind, "node") == 0 && node) {
            out->kind = RZ_AUTH_NODE;
            out->node = strtoull(node, NULL, 10);
            rc = out->node ? RZ_OK : RZ_EAUTH;
        }
    }
    cJSON_Delete(doc);
    return rc;
}

int rz_auth_key_lookup(const rz_auth *a, const char *key, rz_auth_principal *out)
{
    memset(out, 0, sizeof *out);
    if (!key || !*key)
        return rz__error(RZ_EAUTH, "no API key");
    unsigned char h[32];
    rz__auth_key_hash(key, h);
    if (a->has_admin && rz__auth_hash_equal(h, a->admin_hash)) {
        out->kind = RZ_AUTH_ADMIN;
        return RZ_OK;
    }
    char *rec = NULL;
    int rc = get(a, DB_KEYS, h, sizeof h, &rec, NULL);
    if (rc == RZ_OK)
        rc = principal_parse(rec, out);
    else if (rc == RZ_ENOENT)
        rc = RZ_EAUTH;
    free(rec);
    if (rc != RZ_OK) {
        memset(out, 0, sizeof *out);
        if (rc == RZ_EAUTH)
            rz__error(RZ_EAUTH, "unknown API key");
    }
    return rc;
}

int rz_auth_key_put(rz_auth *a, const char *key, const rz_auth_principal *p)
{
    if (!key || !*key || !p)
        return rz__error(RZ_EINVAL, "an API key and its principal are required");
    if (p->kind != RZ_AUTH_CLIENT && !(p->kind == RZ_AUTH_NODE && p->node))
        return rz__error(RZ_EINVAL, "a stored key names a client, or a node "
                         "with a non-zero id");
    unsigned char h[32];
    char acct[33], node[24];
    rz__auth_key_hash(key, h);
    rz_ledger_id_format(p->account, acct);
    snprintf(node, sizeof node, "%llu", (unsigned long long)p->node);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "kind", p->kind == RZ_AUTH_NODE ? "node" : "client");
    cJSON_AddStringToObject(doc, "account", acct);
    if (p->kind == RZ_AUTH_NODE)
        cJSON_AddStringToObject(doc, "node", node);
    return put_json(a, DB_KEYS, h, sizeof h, doc);
}

/* ---- nodes ---- */

static bool hex32(const char *hex, unsigned char out[32])
{
    size_t got = 0;
    const char *end = NULL;
    return hex && strlen(hex) == 64 &&
           sodium_hex2bin(out, 32, hex, 64, NULL, &got, &end) == 0 && got == 32 &&
           end && *end == '\0';
}

int rz_auth_node_put(rz_auth *a, uint64_t node, const char *x25519_hex,
                     const char *ed25519_hex)
{
    unsigned char pk[32];
    if (!node || !hex32(x25519_hex, pk) || (ed25519_hex && !hex32(ed25519_hex, pk)))
        return rz__error(RZ_EINVAL, "a node needs a non-zero id and public keys "
                         "of 64 hex digits");
    unsigned char k[8];
    key_u64(k, node);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "x25519", x25519_hex);
    if (ed25519_hex)
        cJSON_AddStringToObject(doc, "ed25519", ed25519_hex);
    return put_json(a, DB_NODES, k, sizeof k, doc);
}

int rz_auth_node_key_get(const rz_auth *a, uint64_t node, unsigned char x25519[32])
{
    unsigned char k[8];
    key_u64(k, node);
    char *rec = NULL;
    int rc = get(a, DB_NODES, k, sizeof k, &rec, NULL);
    cJSON *doc = rec ? cJSON_Parse(rec) : NULL;
    free(rec);
    if (rc == RZ_OK &&
        !hex32(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "x25519")),
               x25519))
        rc = rz__error(RZ_ENOENT, "node %llu has no X25519 key",
                       (unsigned long long)node);
    cJSON_Delete(doc);
    return rc;
}

/* ---- accounts, credentials, logs ---- */

static void key_account(unsigned char k[16], rz_ledger_id id)
{
    key_u64(k, id.hi);
    key_u64(k + 8, id.lo);
}

/* "w" + the wallet address: the key of its account in DB_REFS. */
static size_t wallet_key(unsigned char *k, size_t cap, const char *wallet)
{
    size_t n = strlen(wallet);
    if (n + 1 > cap)
        return 0;
    k[0] = 'w';
    memcpy(k + 1, wallet, n);
    return n + 1;
}

int rz_auth_account_put(rz_auth *a, rz_ledger_id id, const char *name,
                        const char *wallet)
{
    unsigned char k[16], wk[RZ_AUTH_WALLET_MAX + 1];
    key_account(k, id);
    size_t wkl = wallet ? wallet_key(wk, sizeof wk, wallet) : 0;
    if (wallet && (!*wallet || !wkl))
        return rz__error(RZ_EINVAL, "a wallet address has 1 to %u bytes",
                         RZ_AUTH_WALLET_MAX);
    cJSON *doc = cJSON_CreateObject();
    if (name)
        cJSON_AddStringToObject(doc, "name", name);
    if (wallet)
        cJSON_AddStringToObject(doc, "wallet_address", wallet);
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return rz__error(RZ_ENOMEM, "out of memory");
    /* The record and the wallet's index in one transaction. */
    MDB_txn *txn = NULL;
    MDB_val key = { sizeof k, k }, val = { strlen(text), text };
    MDB_val wkey = { wkl, wk }, wval = { sizeof k, k };
    int mrc = txn_begin(a, 0, &txn);
    if (mrc == 0)
        mrc = mdb_put(txn, a->dbi[DB_ACCOUNTS], &key, &val, 0);
    if (mrc == 0 && wallet)
        mrc = mdb_put(txn, a->dbi[DB_REFS], &wkey, &wval, 0);
    mrc = end_write(a, txn, mrc, true);
    free(text);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

int rz_auth_wallet_account(const rz_auth *a, const char *wallet,
                           rz_ledger_id *out)
{
    unsigned char wk[RZ_AUTH_WALLET_MAX + 1];
    size_t wkl = wallet ? wallet_key(wk, sizeof wk, wallet) : 0;
    if (!wkl || !out)
        return rz__error(RZ_EINVAL, "a wallet address has 1 to %u bytes",
                         RZ_AUTH_WALLET_MAX);
    char *rec = NULL;
    size_t len = 0;
    int rc = get(a, DB_REFS, wk, wkl, &rec, &len);
    if (rc == RZ_OK && len != 16)
        rc = rz__error(RZ_EDB, "auth store: a wallet index of %zu bytes", len);
    if (rc == RZ_OK) {
        const unsigned char *p = (const unsigned char *)rec;
        out->hi = out->lo = 0;
        for (int i = 0; i < 8; i++) {
            out->hi = out->hi << 8 | p[i];
            out->lo = out->lo << 8 | p[8 + i];
        }
    }
    free(rec);
    return rc;
}

static void withdrawal_key(unsigned char k[17], rz_ledger_id id)
{
    k[0] = 'x';
    key_account(k + 1, id);
}

int rz_auth_withdrawal_put(rz_auth *a, rz_ledger_id id, const char *json)
{
    if (!json || *json != '{')
        return rz__error(RZ_EINVAL, "a withdrawal record is a JSON object");
    unsigned char k[17];
    withdrawal_key(k, id);
    return put(a, DB_REFS, k, sizeof k, json, strlen(json));
}

int rz_auth_withdrawal_get(const rz_auth *a, rz_ledger_id id, char **out)
{
    unsigned char k[17];
    withdrawal_key(k, id);
    return get(a, DB_REFS, k, sizeof k, out, NULL);
}

/* "c" + account + credential id: one stored credential in DB_REFS (an
 * account's keys sort together, so listing is one cursor walk). */
static size_t cred_key(unsigned char k[1 + 16 + RZ_AUTH_CRED_ID_MAX], rz_ledger_id account,
                       const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > RZ_AUTH_CRED_ID_MAX)
        return 0;
    k[0] = 'c';
    key_account(k + 1, account);
    memcpy(k + 17, id, n);
    return n + 17;
}

static int cred_id_error(void)
{
    return rz__error(RZ_EINVAL, "a credential id is 1 to %d bytes",
                     RZ_AUTH_CRED_ID_MAX);
}

int rz_auth_account_cred_put(rz_auth *a, rz_ledger_id account, const char *id,
                             const char *text)
{
    unsigned char k[1 + 16 + RZ_AUTH_CRED_ID_MAX];
    size_t kl = cred_key(k, account, id);
    if (!kl)
        return cred_id_error();
    if (!text || !*text)
        return rz__error(RZ_EINVAL, "an empty credential record");
    return put(a, DB_REFS, k, kl, text, strlen(text));
}

int rz_auth_account_cred_get(const rz_auth *a, rz_ledger_id account, const char *id,
                             char **out)
{
    *out = NULL;
    unsigned char k[1 + 16 + RZ_AUTH_CRED_ID_MAX];
    size_t kl = cred_key(k, account, id);
    return kl ? get(a, DB_REFS, k, kl, out, NULL) : cred_id_error();
}

int rz_auth_account_cred_del(rz_auth *a, rz_ledger_id account, const char *id)
{
    unsigned char k[1 + 16 + RZ_AUTH_CRED_ID_MAX];
    size_t kl = cred_key(k, account, id);
    if (!kl)
        return cred_id_error();
    MDB_txn *txn = NULL;
    MDB_val key = { kl, k };
    int mrc = txn_begin(a, 0, &txn);
    if (mrc == 0)
        mrc = mdb_del(txn, a->dbi[DB_REFS], &key, NULL);
    if (mrc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return rz__error(RZ_ENOENT, "no such credential");
    }
    mrc = end_write(a, txn, mrc, true);
    return mrc ? db_error(mrc, "delete") : RZ_OK;
}

/* Each record of the walk as {"id", ...its members}; false: out of memory. */
static bool cred_list_add(cJSON *arr, const MDB_val *k, const MDB_val *v)
{
    cJSON *rec = cJSON_ParseWithLength(v->mv_data, v->mv_size);
    if (!cJSON_IsObject(rec)) {
        cJSON_Delete(rec);
        return true;     /* not a record this version wrote: left out */
    }
    char *id = rz__malloc(k->mv_size - 17 + 1);
    if (!id) {
        cJSON_Delete(rec);
        return false;
    }
    memcpy(id, (const char *)k->mv_data + 17, k->mv_size - 17);
    id[k->mv_size - 17] = '\0';
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "id");
    bool ok = cJSON_AddStringToObject(rec, "id", id) != NULL;
    free(id);
    cJSON_AddItemToArray(arr, rec);
    return ok;
}

int rz_auth_account_cred_list(const rz_auth *a, rz_ledger_id account, char **out)
{
    *out = NULL;
    unsigned char pre[17];
    pre[0] = 'c';
    key_account(pre + 1, account);
    cJSON *arr = cJSON_CreateArray();
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    int mrc = arr ? txn_begin(a, MDB_RDONLY, &txn) : 0;
    if (arr && mrc == 0)
        mrc = mdb_cursor_open(txn, a->dbi[DB_REFS], &c);
    MDB_val k = { sizeof pre, pre }, v;
    bool ok = arr != NULL;
    if (ok && mrc == 0) {
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (ok && mrc == 0 && k.mv_size > sizeof pre &&
               memcmp(k.mv_data, pre, sizeof pre) == 0) {
            ok = cred_list_add(arr, &k, &v);
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    if (c)
        mdb_cursor_close(c);
    if (txn)
        mdb_txn_abort(txn);
    if (ok && mrc == 0)
        *out = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (mrc)
        return db_error(mrc, "read");
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_auth_account_get(const rz_auth *a, rz_ledger_id id, char **out)
{
    unsigned char k[16];
    key_account(k, id);
    return get(a, DB_ACCOUNTS, k, sizeof k, out, NULL);
}

int rz_auth_creds_put(rz_auth *a, uint64_t deployment, const char *text)
{
    if (!text || !*text)
        return rz__error(RZ_EINVAL, "no credentials to keep");
    return put_by_id(a, DB_CREDS, deployment, text, strlen(text));
}

int rz_auth_creds_get(const rz_auth *a, uint64_t deployment, char **out)
{
    return get_by_id(a, DB_CREDS, deployment, out, NULL);
}

int rz_auth_log_put(rz_auth *a, uint64_t job, const char *log, size_t len)
{
    if (len && !log)
        return rz__error(RZ_EINVAL, "no log text");
    return put_by_id(a, DB_LOGS, job, len ? log : "", len);
}

int rz_auth_log_get(const rz_auth *a, uint64_t job, char **out, size_t *len)
{
    return rz_auth_attempt_log_get(a, job, 0, out, len, NULL);
}

/* ---- a job's logs, one per attempt ----
 * A job's keys sit together, as LMDB orders a key before its longer
 * extensions: the job's own (a log kept before attempts were told apart),
 * then job + attempt, in attempt order. */

static void key_attempt(unsigned char k[12], uint64_t job, uint32_t attempt)
{
    key_u64(k, job);
    for (int i = 0; i < 4; i++)
        k[8 + i] = (unsigned char)(attempt >> (24 - 8 * i));
}

static uint32_t attempt_of(const MDB_val *k)
{
    const unsigned char *b = k->mv_data;
    return (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
}

static bool job_key(const MDB_val *k, const unsigned char job[8])
{
    return (k->mv_size == 8 || k->mv_size == 12) && memcmp(k->mv_data, job, 8) == 0;
}

/* The job's attempts below `below` removed (its own key too when `all`). */
static int drop_attempts(MDB_txn *txn, MDB_dbi db, uint64_t job, uint32_t below,
                         bool all)
{
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, db, &c);
    if (mrc)
        return mrc;
    unsigned char j[8];
    key_u64(j, job);
    MDB_val k = { 8, j }, v;
    mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && job_key(&k, j)) {
        bool drop = all || (k.mv_size == 12 && attempt_of(&k) < below);
        if (!drop && k.mv_size == 12)
            break;                      /* the rest are newer */
        mrc = drop ? mdb_cursor_del(c, 0) : 0;
        if (mrc == 0)   /* after a delete the cursor is on the next key */
            mrc = mdb_cursor_get(c, &k, &v, drop ? MDB_GET_CURRENT : MDB_NEXT);
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

int rz_auth_attempt_log_put(rz_auth *a, uint64_t job, uint32_t attempt,
                            const char *log, size_t len)
{
    if (!a || !attempt || (len && !log))
        return rz__error(RZ_EINVAL, "no store, attempt or log text");
    unsigned char k[12];
    key_attempt(k, job, attempt);
    MDB_val key = { sizeof k, k }, val = { len, len ? (void *)log : "" };
    MDB_txn *txn = NULL;
    int mrc = txn_begin(a, 0, &txn);
    if (mrc == 0)
        mrc = mdb_put(txn, a->dbi[DB_LOGS], &key, &val, 0);
    if (mrc == 0 && attempt > RZ_AUTH_LOG_ATTEMPTS)
        mrc = drop_attempts(txn, a->dbi[DB_LOGS], job,
                            attempt - RZ_AUTH_LOG_ATTEMPTS + 1, false);
    mrc = end_write(a, txn, mrc, true);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

/* The job's key at `attempt`, or its last one (0). */
static int seek_attempt(MDB_cursor *c, uint64_t job, uint32_t attempt,
                        MDB_val *k, MDB_val *v)
{
    unsigned char want[12], j[8];
    key_attempt(want, job, attempt ? attempt : UINT32_MAX);
    key_u64(j, job);
    *k = (MDB_val){ sizeof want, want };
    int mrc = mdb_cursor_get(c, k, v, attempt ? MDB_SET_KEY : MDB_SET_RANGE);
    if (attempt)
        return mrc;
    if (mrc == 0 && job_key(k, j) && k->mv_size == 12 && attempt_of(k) == UINT32_MAX)
        return 0;
    mrc = mdb_cursor_get(c, k, v, mrc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    return mrc == 0 && !job_key(k, j) ? MDB_NOTFOUND : mrc;
}

int rz_auth_attempt_log_get(const rz_auth *a, uint64_t job, uint32_t attempt,
                            char **out, size_t *len, uint32_t *which)
{
    if (!a || !out)
        return rz__error(RZ_EINVAL, "no store or output");
    *out = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int mrc = txn_begin(a, MDB_RDONLY, &txn);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, a->dbi[DB_LOGS], &c);
    if (mrc == 0)
        mrc = seek_attempt(c, job, attempt, &k, &v);
    int rc = RZ_OK;
    if (mrc == MDB_NOTFOUND)
        rc = rz__error(RZ_ENOENT, "no log kept for job %llu%s",
                       (unsigned long long)job, attempt ? " at that attempt" : "");
    else if (mrc)
        rc = db_error(mrc, "read");
    else if (!(*out = rz__malloc(v.mv_size + 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK) {
        memcpy(*out, v.mv_data, v.mv_size);
        (*out)[v.mv_size] = '\0';
        if (len)
            *len = v.mv_size;
        if (which)
            *which = k.mv_size == 12 ? attempt_of(&k) : 0;
    }
    mdb_cursor_close(c);
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

int rz_auth_log_attempts(const rz_auth *a, uint64_t job, uint32_t *out,
                         size_t cap, size_t *n)
{
    if (!a || !n || (cap && !out))
        return rz__error(RZ_EINVAL, "no store or output");
    *n = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    unsigned char j[8];
    key_u64(j, job);
    MDB_val k = { 8, j }, v;
    int mrc = txn_begin(a, MDB_RDONLY, &txn);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, a->dbi[DB_LOGS], &c);
    if (mrc == 0)
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    for (; mrc == 0 && job_key(&k, j); mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (k.mv_size == 12 && *n < cap)
            out[(*n)++] = attempt_of(&k);
    mdb_cursor_close(c);
    if (txn)
        mdb_txn_abort(txn);
    return mrc && mrc != MDB_NOTFOUND ? db_error(mrc, "read") : RZ_OK;
}

/* ---- node identities ---- */

/* The record at `k` parsed, NULL when absent (*mrc 0) or on error. */
static cJSON *txn_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl,
                       int *mrc)
{
    MDB_val key = { kl, (void *)k }, val;
    *mrc = mdb_get(txn, db, &key, &val);
    if (*mrc == MDB_NOTFOUND) {
        *mrc = 0;
        return NULL;
    }
    return *mrc ? NULL : cJSON_ParseWithLength(val.mv_data, val.mv_size);
}

/* Put the JSON text of `doc` (taken) in the transaction. */
static int txn_put_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl,
                        cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return ENOMEM;
    MDB_val key = { kl, (void *)k }, val = { strlen(text), text };
    int mrc = mdb_put(txn, db, &key, &val, 0);
    free(text);
    return mrc;
}

static int txn_error(int mrc)
{
    return mrc == ENOMEM ? rz__error(RZ_ENOMEM, "out of memory")
                         : db_error(mrc, "write");
}

static uint64_t rec_node(const cJSON *rec)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "node"));
    return s ? strtoull(s, NULL, 10) : 0;
}

static int rec_flag(const cJSON *rec, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, name));
}

int rz_auth_identity_find(const rz_auth *a, const unsigned char ed25519[32],
                          uint64_t *node, int *retired)
{
    *node = 0;
    if (retired)
        *retired = 0;
    char *rec = NULL;
    int rc = get(a, DB_IDS, ed25519, 32, &rec, NULL);
    cJSON *doc = rec ? cJSON_Parse(rec) : NULL;
    free(rec);
    if (rc == RZ_OK && !(*node = rec_node(doc)))
        rc = rz__error(RZ_EDB, "auth store: an identity record without a node");
    if (rc == RZ_OK && retired)
        *retired = rec_flag(doc, "retired");
    cJSON_Delete(doc);
    return rc;
}

/* The checks of rz_auth_identity_bind inside its transaction: the key's
 * record, and the node's, whose old token goes. */
static int bind_txn(rz_auth *a, MDB_txn *txn, const unsigned char ed[32],
                    uint64_t node, const unsigned char tok[32], int *rc)
{
    int mrc;
    cJSON *id = txn_json(txn, a->dbi[DB_IDS], ed, 32, &mrc);
    if (!mrc && id && rec_node(id) != node)
        *rc = rz__error(RZ_EEXISTS, "this key is node %llu's",
                        (unsigned long long)rec_node(id));
    else if (!mrc && id && rec_flag(id, "retired"))
        *rc = rz__error(RZ_EDENIED, "node %llu's key was retired",
                        (unsigned long long)node);
    cJSON_Delete(id);
    if (mrc || *rc != RZ_OK)
        return mrc;
    unsigned char k[8];
    key_u64(k, node);
    cJSON *old = txn_json(txn, a->dbi[DB_NODES], k, 8, &mrc);
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(old, "token"));
    unsigned char oh[32];
    size_t got = 0;
    if (!mrc && h && sodium_hex2bin(oh, 32, h, strlen(h), NULL, &got, NULL) == 0 &&
        got == 32 && !rz__auth_hash_equal(oh, tok)) {
        MDB_val key = { 32, oh };
        mrc = mdb_del(txn, a->dbi[DB_KEYS], &key, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    if (!mrc && old && !cJSON_GetObjectItemCaseSensitive(old, "bound"))
        *rc = rz__error(RZ_EEXISTS, "node %llu was registered without a key "
                        "binding", (unsigned long long)node);
    cJSON_Delete(old);
    return mrc;
}

int rz_auth_identity_bind(rz_auth *a, const unsigned char ed25519[32],
                          uint64_t node, const char *x25519_hex,
                          const char *token, rz_ledger_id account)
{
    unsigned char x[32];
    if (!node || !hex32(x25519_hex, x) || !token || !*token)
        return rz__error(RZ_EINVAL, "a binding needs a node id, an X25519 key "
                         "of 64 hex digits and a token");
    unsigned char tok[32], k[8];
    char ed_hex[65], tok_hex[65], node_s[24], acct[33];
    rz__auth_key_hash(token, tok);
    sodium_bin2hex(ed_hex, sizeof ed_hex, ed25519, 32);
    sodium_bin2hex(tok_hex, sizeof tok_hex, tok, 32);
    snprintf(node_s, sizeof node_s, "%llu", (unsigned long long)node);
    rz_ledger_id_format(account, acct);
    key_u64(k, node);
    MDB_txn *txn = NULL;
    int rc = RZ_OK;
    int mrc = txn_begin(a, 0, &txn);
    if (!mrc)
        mrc = bind_txn(a, txn, ed25519, node, tok, &rc);
    if (!mrc && rc == RZ_OK) {
        cJSON *id = cJSON_CreateObject();
        cJSON_AddStringToObject(id, "node", node_s);
        mrc = txn_put_json(txn, a->dbi[DB_IDS], ed25519, 32, id);
    }
    if (!mrc && rc == RZ_OK) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "x25519", x25519_hex);
        cJSON_AddStringToObject(n, "ed25519", ed_hex);
        cJSON_AddTrueToObject(n, "bound");
        cJSON_AddStringToObject(n, "token", tok_hex);
        mrc = txn_put_json(txn, a->dbi[DB_NODES], k, 8, n);
    }
    if (!mrc && rc == RZ_OK) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "kind", "node");
        cJSON_AddStringToObject(p, "account", acct);
        cJSON_AddStringToObject(p, "node", node_s);
        mrc = txn_put_json(txn, a->dbi[DB_KEYS], tok, 32, p);
    }
    mrc = end_write(a, txn, mrc, rc == RZ_OK);
    sodium_memzero(tok, sizeof tok);
    sodium_memzero(tok_hex, sizeof tok_hex);
    return mrc ? txn_error(mrc) : rc;
}

int rz_auth_node_identity(const rz_auth *a, uint64_t node,
                          unsigned char ed25519[32], int *bound, int *retired)
{
    unsigned char k[8];
    key_u64(k, node);
    char *rec = NULL;
    int rc = get(a, DB_NODES, k, sizeof k, &rec, NULL);
    cJSON *doc = rec ? cJSON_Parse(rec) : NULL;
    free(rec);
    if (rc == RZ_OK &&
        !hex32(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "ed25519")),
               ed25519))
        rc = rz__error(RZ_ENOENT, "node %llu has no Ed25519 key",
                       (unsigned long long)node);
    if (bound)
        *bound = rc == RZ_OK && rec_flag(doc, "bound");
    if (retired)
        *retired = rc == RZ_OK && rec_flag(doc, "retired");
    cJSON_Delete(doc);
    return rc;
}

int rz_auth_identity_retire(rz_auth *a, uint64_t node)
{
    unsigned char k[8];
    key_u64(k, node);
    MDB_txn *txn = NULL;
    int rc = RZ_OK;
    int mrc = txn_begin(a, 0, &txn);
    cJSON *n = !mrc ? txn_json(txn, a->dbi[DB_NODES], k, 8, &mrc) : NULL;
    unsigned char ed[32];
    bool has_ed = hex32(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "ed25519")), ed);
    if (!mrc && !n)
        rc = rz__error(RZ_ENOENT, "node %llu has no keys on record",
                       (unsigned long long)node);
    if (!mrc && rc == RZ_OK && !rec_flag(n, "retired")) {
        cJSON_AddTrueToObject(n, "retired");
        mrc = txn_put_json(txn, a->dbi[DB_NODES], k, 8, n);
        n = NULL;
        /* A bound key is refused from now on; a legacy node's key was never
         * proven, so it binds nothing. */
        cJSON *id = !mrc && has_ed ? txn_json(txn, a->dbi[DB_IDS], ed, 32, &mrc) : NULL;
        if (!mrc && id && rec_node(id) == node && !rec_flag(id, "retired")) {
            cJSON_AddTrueToObject(id, "retired");
            mrc = txn_put_json(txn, a->dbi[DB_IDS], ed, 32, id);
            id = NULL;
        }
        cJSON_Delete(id);
    }
    cJSON_Delete(n);
    mrc = end_write(a, txn, mrc, rc == RZ_OK);
    return mrc ? txn_error(mrc) : rc;
}

int rz_auth_result_put(rz_auth *a, uint64_t job, const char *text)
{
    if (!text || !*text)
        return rz__error(RZ_EINVAL, "no result record to keep");
    return put_by_id(a, DB_RESULTS, job, text, strlen(text));
}

int rz_auth_result_get(const rz_auth *a, uint64_t job, char **out)
{
    return get_by_id(a, DB_RESULTS, job, out, NULL);
}

/* Retention: one transaction, so the records of a pass go together. */
static int del_ids(MDB_txn *txn, MDB_dbi db, const uint64_t *ids, size_t n)
{
    int mrc = 0;
    unsigned char k[8];
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        key_u64(k, ids[i]);
        MDB_val key = { 8, k };
        mrc = mdb_del(txn, db, &key, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    return mrc;
}

int rz_auth_forget(rz_auth *a, const uint64_t *jobs, size_t n_jobs,
                   const uint64_t *deployments, size_t n_deployments)
{
    if (!a || (n_jobs && !jobs) || (n_deployments && !deployments))
        return rz__error(RZ_EINVAL, "nothing to forget");
    MDB_txn *txn = NULL;
    int mrc = txn_begin(a, 0, &txn);
    for (size_t i = 0; mrc == 0 && i < n_jobs; i++)
        mrc = drop_attempts(txn, a->dbi[DB_LOGS], jobs[i], 0, true);
    if (mrc == 0)
        mrc = del_ids(txn, a->dbi[DB_RESULTS], jobs, n_jobs);
    if (mrc == 0)
        mrc = del_ids(txn, a->dbi[DB_CREDS], deployments, n_deployments);
    mrc = end_write(a, txn, mrc, true);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

/* ---- the audit log's head ---- */

/* The head's value: seq (u64 big-endian), hash (32), then keyed_since (u64
 * big-endian), absent in heads written before it was recorded. */
#define HEAD_OLD 40
#define HEAD_LEN 48

static uint64_t be64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

/* keep: take keyed_since from the stored head (put), in the same write. */
static int head_write(rz_auth *a, uint64_t seq, const unsigned char hash[32],
                      uint64_t keyed_since, bool keep)
{
    if (!a || !hash)
        return rz__error(RZ_EINVAL, "no auth store or hash");
    MDB_txn *txn = NULL;
    MDB_val key = { 1, "a" }, val;
    int mrc = txn_begin(a, 0, &txn);
    if (mrc == 0 && keep) {
        mrc = mdb_get(txn, a->dbi[DB_REFS], &key, &val);
        keyed_since = mrc == 0 && val.mv_size == HEAD_LEN
                      ? be64((const unsigned char *)val.mv_data + 40) : 0;
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    unsigned char v[HEAD_LEN];
    key_u64(v, seq);
    memcpy(v + 8, hash, 32);
    key_u64(v + 40, keyed_since);
    val = (MDB_val){ sizeof v, v };
    if (mrc == 0)
        mrc = mdb_put(txn, a->dbi[DB_REFS], &key, &val, 0);
    mrc = end_write(a, txn, mrc, true);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

int rz_auth_audit_head_put(rz_auth *a, uint64_t seq, const unsigned char hash[32])
{
    return head_write(a, seq, hash, 0, true);
}

int rz_auth_audit_head_put2(rz_auth *a, uint64_t seq, const unsigned char hash[32],
                            uint64_t keyed_since)
{
    return head_write(a, seq, hash, keyed_since, false);
}

int rz_auth_audit_head_get2(const rz_auth *a, uint64_t *seq, unsigned char hash[32],
                            uint64_t *keyed_since)
{
    if (!a || !seq || !hash || !keyed_since)
        return rz__error(RZ_EINVAL, "no auth store or output");
    char *v = NULL;
    size_t len = 0;
    int rc = get(a, DB_REFS, "a", 1, &v, &len);
    if (rc == RZ_OK && len != HEAD_OLD && len != HEAD_LEN)
        rc = rz__error(RZ_EDB, "auth store: the audit head record has %zu "
                       "bytes, not %d", len, HEAD_LEN);
    if (rc == RZ_OK) {
        const unsigned char *p = (const unsigned char *)v;
        *seq = be64(p);
        memcpy(hash, p + 8, 32);
        *keyed_since = len == HEAD_LEN ? be64(p + 40) : 0;
    }
    free(v);
    return rc;
}

int rz_auth_audit_head_get(const rz_auth *a, uint64_t *seq, unsigned char hash[32])
{
    uint64_t since;
    if (!seq || !hash)
        return rz__error(RZ_EINVAL, "no auth store or output");
    return rz_auth_audit_head_get2(a, seq, hash, &since);
}

/* "d" in DB_REFS: the redo mark (rz_auth_redo_mark_put), 8 bytes. */
int rz_auth_redo_mark_put(rz_auth *a, uint64_t seq)
{
    if (!a)
        return rz__error(RZ_EINVAL, "no auth store");
    unsigned char v[8];
    key_u64(v, seq);
    return put(a, DB_REFS, "d", 1, v, sizeof v);
}

int rz_auth_redo_mark_get(const rz_auth *a, uint64_t *seq)
{
    if (!a || !seq)
        return rz__error(RZ_EINVAL, "no auth store or output");
    *seq = 0;
    char *v = NULL;
    size_t len = 0;
    int rc = get(a, DB_REFS, "d", 1, &v, &len);
    if (rc == RZ_ENOENT)
        rc = RZ_OK;
    else if (rc == RZ_OK && len != 8)
        rc = rz__error(RZ_EDB, "auth store: the redo mark has %zu bytes, not 8", len);
    else if (rc == RZ_OK)
        *seq = be64((const unsigned char *)v);
    free(v);
    return rc;
}
