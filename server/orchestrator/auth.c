/* DATA/auth: who a key belongs to, node keys, sealed deployment
 * credentials, job logs and account names. An LMDB environment of its own
 * (the engine's and the ledger's stores are theirs):
 *   keys      BLAKE2b-256 of a key      -> {"kind","account"?,"node"?}
 *   nodes     u64 node (big-endian)     -> {"x25519","ed25519"?}
 *   creds     u64 deployment            -> {"sealed":{id:b64},"steps":{..}}
 *   logs      u64 job                   -> the node's log (<= 64 KiB)
 *   accounts  16-byte account id        -> {"name"?,"wallet_address"?}
 * Keys are never stored, only their hashes; the admin key's hash is kept
 * in memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "orch.h"

#define AUTH_MAP_SIZE (4ull * 1024 * 1024 * 1024)

static int mdb_fail(int mrc, const char *what)
{
    fprintf(stderr, ORCH_NAME ": auth store %s: %s\n", what, mdb_strerror(mrc));
    return mrc == MDB_MAP_FULL ? RZ_ETOOBIG : RZ_EDB;
}

int auth_open(orch *o)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/auth", o->opts.data);
    if (rz_fs_mkdirs(dir, 0700) != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": %s\n", rz_error_last()->message);
        return RZ_EIO;
    }
    /* The library's LMDB open (lib/common/fs.c) is internal: a public one
     * would put LMDB's types in include/. Until the auth store moves into
     * the library, this is the one copy outside it, kept in step by hand
     * (stale reader slots of killed processes cleared the same way). */
    MDB_txn *txn = NULL;
    int mrc = mdb_env_create(&o->auth);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(o->auth, 8);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(o->auth, AUTH_MAP_SIZE);
    if (mrc == 0)
        mrc = mdb_env_open(o->auth, dir, MDB_NOTLS, 0600);
    if (mrc == 0) {
        int dead;
        mdb_reader_check(o->auth, &dead);
    }
    if (mrc == 0)
        mrc = mdb_txn_begin(o->auth, NULL, 0, &txn);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, "keys", MDB_CREATE, &o->db_keys);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, "nodes", MDB_CREATE, &o->db_nodes);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, "creds", MDB_CREATE, &o->db_creds);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, "logs", MDB_CREATE, &o->db_logs);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, "accounts", MDB_CREATE, &o->db_accounts);
    if (mrc == 0) {
        mrc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    return mrc ? mdb_fail(mrc, "open") : RZ_OK;
}

void auth_close(orch *o)
{
    if (o->auth)
        mdb_env_close(o->auth);
    o->auth = NULL;
}

/* ---- small codecs ---- */

void hex_encode(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, in, n);
}

bool hex_decode(const char *hex, unsigned char *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;
    return hex && strlen(hex) == n * 2 &&
           sodium_hex2bin(out, n, hex, n * 2, NULL, &got, &end) == 0 &&
           got == n && end && *end == '\0';
}

char *b64_encode(const unsigned char *in, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out)
        sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

unsigned char *b64_decode(const char *in, size_t *n)
{
    size_t len = strlen(in), got = 0;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    const char *end = NULL;
    if (!out || sodium_base642bin(out, len / 4 * 3 + 3, in, len, NULL, &got,
                                  &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        !end || *end) {
        free(out);
        return NULL;
    }
    *n = got;
    return out;
}

static void key_hash(const char *key, unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)key, strlen(key), NULL, 0);
}

void auth_new_key(const char *prefix, char *buf, size_t cap)
{
    unsigned char raw[32];
    char hex[65];
    randombytes_buf(raw, sizeof raw);
    hex_encode(raw, sizeof raw, hex);
    snprintf(buf, cap, "%s%s", prefix, hex);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(hex, sizeof hex);
}

rz_ledger_id auth_random_id(void)
{
    rz_ledger_id id;
    do
        randombytes_buf(&id, sizeof id);
    while (id.hi == 0);   /* {0, *} holds the ledger's reserved ids */
    return id;
}

/* ---- generic records ---- */

static void key_u64(unsigned char k[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(v >> (56 - 8 * i));
}

static int put(orch *o, MDB_dbi dbi, const void *k, size_t kl, const void *v,
               size_t vl)
{
    MDB_txn *txn = NULL;
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    int mrc = mdb_txn_begin(o->auth, NULL, 0, &txn);
    if (mrc == 0)
        mrc = mdb_put(txn, dbi, &key, &val, 0);
    if (mrc == 0) {
        mrc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    return mrc ? mdb_fail(mrc, "write") : RZ_OK;
}

/* A copy of the value, NUL-terminated; NULL when absent. */
static char *get(orch *o, MDB_dbi dbi, const void *k, size_t kl, size_t *len)
{
    MDB_txn *txn = NULL;
    MDB_val key = { kl, (void *)k }, val;
    char *out = NULL;
    if (mdb_txn_begin(o->auth, NULL, MDB_RDONLY, &txn) != 0)
        return NULL;
    if (mdb_get(txn, dbi, &key, &val) == 0 && (out = malloc(val.mv_size + 1))) {
        memcpy(out, val.mv_data, val.mv_size);
        out[val.mv_size] = '\0';
        if (len)
            *len = val.mv_size;
    }
    mdb_txn_abort(txn);
    return out;
}

/* ---- principals ---- */

int auth_lookup(orch *o, const char *key, principal *out)
{
    unsigned char h[32];
    key_hash(key, h);
    memset(out, 0, sizeof *out);
    if (sodium_memcmp(h, o->admin_hash, 32) == 0) {
        out->kind = P_ADMIN;
        return RZ_OK;
    }
    char *rec = get(o, o->db_keys, h, sizeof h, NULL);
    cJSON *doc = parse_json_text(rec);
    free(rec);
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "kind"));
    const char *acct = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "account"));
    const char *node = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "node"));
    int rc = RZ_EAUTH;
    if (kind && acct && rz_ledger_id_parse(acct, &out->account) == RZ_OK) {
        if (strcmp(kind, "client") == 0) {
            out->kind = P_CLIENT;
            rc = RZ_OK;
        } else if (strcmp(kind, "node") == 0 && node) {
            out->kind = P_NODE;
            out->node = strtoull(node, NULL, 10);
            rc = out->node ? RZ_OK : RZ_EAUTH;
        }
    }
    cJSON_Delete(doc);
    return rc;
}

int auth_put_key(orch *o, const char *key, const principal *p)
{
    unsigned char h[32];
    char acct[33], node[24];
    key_hash(key, h);
    rz_ledger_id_format(p->account, acct);
    snprintf(node, sizeof node, "%llu", (unsigned long long)p->node);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "kind", p->kind == P_NODE ? "node" : "client");
    cJSON_AddStringToObject(doc, "account", acct);
    if (p->kind == P_NODE)
        cJSON_AddStringToObject(doc, "node", node);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = text ? put(o, o->db_keys, h, sizeof h, text, strlen(text)) : RZ_ENOMEM;
    free(text);
    return rc;
}

int auth_put_node(orch *o, uint64_t node, const char *x25519_hex,
                  const char *ed25519_hex)
{
    unsigned char k[8];
    key_u64(k, node);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "x25519", x25519_hex);
    if (ed25519_hex)
        cJSON_AddStringToObject(doc, "ed25519", ed25519_hex);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = text ? put(o, o->db_nodes, k, 8, text, strlen(text)) : RZ_ENOMEM;
    free(text);
    return rc;
}

int auth_node_pk(orch *o, uint64_t node, unsigned char pk[32])
{
    unsigned char k[8];
    key_u64(k, node);
    char *rec = get(o, o->db_nodes, k, 8, NULL);
    cJSON *doc = parse_json_text(rec);
    free(rec);
    bool ok = hex_decode(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "x25519")),
                         pk, 32);
    cJSON_Delete(doc);
    return ok ? RZ_OK : RZ_ENOENT;
}

int auth_put_account(orch *o, rz_ledger_id id, const char *name,
                     const char *wallet)
{
    unsigned char k[16];
    key_u64(k, id.hi);
    key_u64(k + 8, id.lo);
    cJSON *doc = cJSON_CreateObject();
    if (name)
        cJSON_AddStringToObject(doc, "name", name);
    if (wallet)
        cJSON_AddStringToObject(doc, "wallet_address", wallet);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = text ? put(o, o->db_accounts, k, 16, text, strlen(text)) : RZ_ENOMEM;
    free(text);
    return rc;
}

int auth_put_creds(orch *o, uint64_t dep, const char *json)
{
    unsigned char k[8];
    key_u64(k, dep);
    return put(o, o->db_creds, k, 8, json, strlen(json));
}

char *auth_get_creds(orch *o, uint64_t dep)
{
    unsigned char k[8];
    key_u64(k, dep);
    return get(o, o->db_creds, k, 8, NULL);
}

int auth_put_log(orch *o, uint64_t job, const char *log, size_t len)
{
    unsigned char k[8];
    key_u64(k, job);
    return put(o, o->db_logs, k, 8, log, len);
}

char *auth_get_log(orch *o, uint64_t job)
{
    unsigned char k[8];
    key_u64(k, job);
    return get(o, o->db_logs, k, 8, NULL);
}
