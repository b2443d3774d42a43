/* The engine's LMDB store: DATA_DIR/engine with named databases
 *   nodes  u64 id (big-endian)            -> node record (JSON)
 *   jobs   u64 id                         -> job record (JSON)
 *   deps   u64 id                         -> deployment record (JSON)
 *   dflow  u64 id                         -> the deployment's flow text and
 *          inputs (JSON), written once with its first commit
 *   devs   u64 deployment, u32 sequence   -> one step event (JSON);
 *          e->db_step_events in memory, "devs" on disk
 *   extra  a caller's key                 -> its bytes (rz_engine_extra_put)
 * A pending step's job has no record until it first changes: ids of
 * running deployments' steps may be missing (rz__engine_dep_rebuild makes
 * those jobs again); any other gap is corruption.
 * A commit writes what the call changed and nothing else: a step costs its
 * job's record, its step events and the small deployment record (state and
 * event count), never the flow, so a commit's cost does not grow with the
 * deployment (the final status, once, when it finishes). Deployment
 * records written before "dflow" carry the flow themselves; they are read
 * as they are, and the deployment's next commit moves the flow out.
 * Big-endian keys keep LMDB's byte order equal to id order, so loading
 * walks each table once in id order. Records are JSON: small, readable
 * with mdb_dump, and tolerant of fields added later. Each value starts with
 * an 8-byte header, "RZc1" and a CRC-32C (little-endian) of the key and the
 * JSON, checked on every read: LMDB's pages carry no checksum. Values
 * written before it (bare JSON, "{...") are given one at open. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "common/crc32c.h"
#include "common/fs.h"
#include "common/json.h"
#include "engine/engine_impl.h"

#define ENGINE_MAP_SIZE (8ull * 1024 * 1024 * 1024)
/* Commits between two rz__engine_store_shed: on /dev/shm (embedded runs)
 * the pages a map faults in count as the process's memory, up to ~120 MiB
 * in 1,024 commits of a 100,000-step run (up to 45 MiB in 256 of them was
 * seen on top of the heap's peak; 64: up to 21 MiB at load 20, which
 * alone put the run past 256 MiB; 16: a quarter). */
#define SHED_COMMITS 16
#define SHED_FAULTS 128          /* a store that is not durable: shed_due */

/* LMDB's own codes are negative; a positive one is the system's errno from
 * its I/O: a storage failure (a short write on a disk that filled reads as
 * EIO), not a damaged store, which is as its last commit left it. */
static int db_error(int rc, const char *what)
{
    int code = rc == MDB_MAP_FULL ? RZ_ETOOBIG : rc == ENOMEM ? RZ_ENOMEM
               : rc > 0 ? RZ_EIO : RZ_EDB;
    bool disk = rc == EIO || rc == ENOSPC || rc == EDQUOT || rc == EFBIG;
    return rz__error(code, "engine %s: %s%s", what, mdb_strerror(rc),
                     disk ? " (a write to the engine's store "
                     "failed: is the disk full? The store holds what its "
                     "last commit did)" : "");
}

static void key_u64(unsigned char k[12], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t u64_of(const unsigned char *k)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | k[i];
    return v;
}

enum { HDR = 8 };
static const unsigned char MAGIC[4] = { 'R', 'Z', 'c', '1' };

static uint32_t record_crc(const void *k, size_t klen, const void *json,
                           size_t len)
{
    return rz__crc32c(rz__crc32c(0, k, klen), json, len);
}

/* The value for key k and `len` bytes of JSON (malloc'ed), or NULL. */
static unsigned char *wrap(const void *k, size_t klen, const char *json,
                           size_t len)
{
    unsigned char *v = rz__malloc(HDR + len);
    if (!v)
        return NULL;
    uint32_t crc = record_crc(k, klen, json, len);
    memcpy(v, MAGIC, 4);
    for (int i = 0; i < 4; i++)
        v[4 + i] = (unsigned char)(crc >> (8 * i));
    memcpy(v + HDR, json, len);
    return v;
}

/* The JSON in a stored value, its checksum verified. */
static int unwrap(const MDB_val *k, const MDB_val *v, const char **json,
                  size_t *len)
{
    const unsigned char *p = v->mv_data;
    unsigned long long id = k->mv_size >= 8 ? (unsigned long long)
                            u64_of(k->mv_data) : 0;
    if (v->mv_size < HDR || memcmp(p, MAGIC, 4) != 0)
        return rz__error(RZ_EDB, "engine store: record %llu has no header: "
                         "data.mdb is damaged. Restore the data directory "
                         "from a backup: docs/ledger.md, \"Recovery\"", id);
    uint32_t crc = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
                   (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    if (crc != record_crc(k->mv_data, k->mv_size, p + HDR, v->mv_size - HDR))
        return rz__error(RZ_EDB, "engine store: record %llu fails its "
                         "checksum: data.mdb is damaged. Restore the data "
                         "directory from a backup: docs/ledger.md, "
                         "\"Recovery\"", id);
    *json = (const char *)p + HDR;
    *len = v->mv_size - HDR;
    return RZ_OK;
}

/* Give one bare-JSON value its header. */
static int migrate_one(MDB_txn *txn, MDB_dbi dbi, const unsigned char *kb,
                       size_t klen)
{
    MDB_val k = { klen, (void *)kb }, v;
    int mrc = mdb_get(txn, dbi, &k, &v);
    if (mrc)
        return db_error(mrc, "migrate");
    unsigned char *w = wrap(kb, klen, v.mv_data, v.mv_size);
    if (!w)
        return rz__error(RZ_ENOMEM, "out of memory");
    MDB_val nv = { HDR + v.mv_size, w };
    mrc = mdb_put(txn, dbi, &k, &nv, 0);
    free(w);
    return mrc ? db_error(mrc, "migrate") : RZ_OK;
}

/* Give every bare-JSON value (written before checksums, "{...") its
 * header, in one transaction; values that have one are left, so this is
 * idempotent. Keys (at most 12 bytes) are listed first: a put that changes
 * a value's size moves the cursor's page under it. */
static int migrate(rz_engine *e, const MDB_dbi *dbis, size_t n)
{
    enum { KEY = 12 };
    MDB_txn *txn;
    int mrc = mdb_txn_begin(e->env, NULL, 0, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    int rc = RZ_OK;
    bool changed = false;
    unsigned char *keys = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n && rc == RZ_OK; i++) {
        size_t nk = 0;
        MDB_cursor *cur;
        if ((mrc = mdb_cursor_open(txn, dbis[i], &cur)) != 0) {
            rc = db_error(mrc, "cursor");
            break;
        }
        MDB_val k, v;
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
             mrc == 0 && rc == RZ_OK;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (!v.mv_size || *(const char *)v.mv_data != '{')
                continue;
            if (k.mv_size != 8 && k.mv_size != KEY)
                rc = rz__error(RZ_EDB, "engine store: a key of %zu bytes",
                               k.mv_size);
            else if (!rz__engine_grow((void **)&keys, &cap, nk + 1, KEY + 1))
                rc = rz__error(RZ_ENOMEM, "out of memory");
            else {
                unsigned char *slot = keys + nk++ * (KEY + 1);
                slot[0] = (unsigned char)k.mv_size;
                memcpy(slot + 1, k.mv_data, k.mv_size);
            }
        }
        if (rc == RZ_OK && mrc != MDB_NOTFOUND)
            rc = db_error(mrc, "read");
        mdb_cursor_close(cur);
        for (size_t j = 0; j < nk && rc == RZ_OK; j++) {
            const unsigned char *slot = keys + j * (KEY + 1);
            rc = migrate_one(txn, dbis[i], slot + 1, slot[0]);
            changed = true;
        }
    }
    free(keys);
    if (rc != RZ_OK || !changed) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    return mrc ? db_error(mrc, "commit") : RZ_OK;
}

/* ---- the client index ----
 * "bycl" keys each job and deployment record by its client: 16 bytes of
 * client id, 'j' or 'd', 8 bytes of id, all big-endian, so one client's
 * records of a kind are one range in id order and a listing is a walk
 * over its page, not a scan of every record. Written in the commit that
 * writes the record (write_dirty); a store from before it gets it at open
 * (index_build), marked done by the key "v". */
#define CLIENT_KEY 25

static void client_key(unsigned char k[CLIENT_KEY], rz_ledger_id c, char kind,
                       uint64_t id)
{
    for (int i = 0; i < 8; i++) {
        k[i] = (unsigned char)(c.hi >> (56 - 8 * i));
        k[8 + i] = (unsigned char)(c.lo >> (56 - 8 * i));
    }
    k[16] = (unsigned char)kind;
    for (int i = 0; i < 8; i++)
        k[17 + i] = (unsigned char)(id >> (56 - 8 * i));
}

static int index_put(MDB_txn *txn, MDB_dbi dbi, rz_ledger_id c, char kind,
                     uint64_t id)
{
    unsigned char k[CLIENT_KEY];
    client_key(k, c, kind, id);
    MDB_val key = { CLIENT_KEY, k }, val = { 0, NULL };
    int mrc = mdb_put(txn, dbi, &key, &val, MDB_NOOVERWRITE);
    return mrc && mrc != MDB_KEYEXIST ? db_error(mrc, "write") : RZ_OK;
}

/* The client member of a stored record, as cJSON_PrintUnformatted wrote
 * it ("client":"<32 hex>"). */
static bool record_client(const char *json, size_t len, rz_ledger_id *out)
{
    static const char tag[] = "\"client\":\"";
    const char *at = memmem(json, len, tag, sizeof tag - 1);
    char hex[33];
    if (!at || (size_t)(json + len - at) < sizeof tag - 1 + 32)
        return false;
    memcpy(hex, at + sizeof tag - 1, 32);
    hex[32] = '\0';
    return rz_ledger_id_parse(hex, out) == RZ_OK;
}

static int index_table(MDB_txn *txn, MDB_dbi from, MDB_dbi to, char kind)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, from, &cur);
    if (mrc)
        return db_error(mrc, "cursor");
    int rc = RZ_OK;
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == RZ_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *json;
        size_t len;
        rz_ledger_id c;
        rc = k.mv_size == 8 ? unwrap(&k, &v, &json, &len)
                            : rz__error(RZ_EDB, "engine store: a key of %zu "
                                        "bytes", k.mv_size);
        if (rc == RZ_OK && !record_client(json, len, &c))
            rc = rz__error(RZ_EDB, "engine store: record %llu names no client",
                           (unsigned long long)u64_of(k.mv_data));
        if (rc == RZ_OK)   /* the put may move the page: the cursor stays */
            rc = index_put(txn, to, c, kind, u64_of(k.mv_data));
    }
    if (rc == RZ_OK && mrc != MDB_NOTFOUND)
        rc = db_error(mrc, "read");
    mdb_cursor_close(cur);
    return rc;
}

/* Entries the index holds and the records it should hold (each job and
 * deployment has one entry, and the mark one more). */
static int index_counts(MDB_txn *txn, const rz_engine *e, bool *marked,
                        size_t *have, size_t *want)
{
    MDB_val key = { 1, "v" }, val;
    MDB_stat ix, jobs, deps;
    int mrc = mdb_get(txn, e->db_by_client, &key, &val);
    *marked = mrc == 0;
    if (mrc && mrc != MDB_NOTFOUND)
        return db_error(mrc, "read");
    if ((mrc = mdb_stat(txn, e->db_by_client, &ix)) ||
        (mrc = mdb_stat(txn, e->db_jobs, &jobs)) ||
        (mrc = mdb_stat(txn, e->db_deps, &deps)))
        return db_error(mrc, "read");
    *have = ix.ms_entries - *marked;
    *want = jobs.ms_entries + deps.ms_entries;
    return RZ_OK;
}

/* The index made again from the records, in one transaction: for a store
 * from before it, or one whose mark cannot be trusted (an older version
 * wrote records without their entries after the mark was set). A new
 * store (no records yet) is marked by its first commit: an open costs no
 * commit of its own. */
static int index_build(rz_engine *e)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    bool marked;
    size_t have, want;
    int rc = index_counts(txn, e, &marked, &have, &want);
    mdb_txn_abort(txn);
    if (rc != RZ_OK || (marked && have == want))
        return rc;
    if (!marked && !want && !have) {
        e->index_mark = true;
        return RZ_OK;
    }
    if ((mrc = mdb_txn_begin(e->env, NULL, 0, &txn)))
        return db_error(mrc, "begin");
    if ((mrc = mdb_drop(txn, e->db_by_client, 0)))   /* stale entries too */
        rc = db_error(mrc, "write");
    if (rc == RZ_OK)
        rc = index_table(txn, e->db_jobs, e->db_by_client, 'j');
    if (rc == RZ_OK)
        rc = index_table(txn, e->db_deps, e->db_by_client, 'd');
    MDB_val key = { 1, "v" }, val = { 1, "1" };
    if (rc == RZ_OK && (mrc = mdb_put(txn, e->db_by_client, &key, &val, 0)))
        rc = db_error(mrc, "write");
    if (rc != RZ_OK) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    return mrc ? db_error(mrc, "commit") : RZ_OK;
}

int rz__engine_store_index_check(const rz_engine *e)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    bool marked;
    size_t have, want;
    int rc = index_counts(txn, e, &marked, &have, &want);
    mdb_txn_abort(txn);
    if (rc == RZ_OK && (marked || want) && (!marked || have != want))
        rc = rz__error(RZ_EINTERNAL, "the client index holds %zu entries%s "
                       "for %zu records", have, marked ? "" : " (unmarked)",
                       want);
    return rc;
}

static int ret_read(rz_engine *e);

int rz__engine_store_open(rz_engine *e, const char *data_dir)
{
    int rc = rz__mkdir(data_dir);
    char *dir = rz__asprintf("%s/engine", data_dir);
    if (!dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK)
        rc = rz__mkdir(dir);
    if (rc != RZ_OK) {
        free(dir);
        return rc;
    }
    if ((rc = rz__lmdb_check_file(dir)) != RZ_OK) {
        free(dir);
        return rc;
    }
    static const char *const names[] = {"nodes", "jobs", "deps", "devs",
                                        "dflow", "bycl", "ret", "extra"};
    MDB_dbi dbis[RZ_ARRAY_LEN(names)];
    int mrc = rz__lmdb_open(&e->env, dir, ENGINE_MAP_SIZE,
                            e->opts.durable ? 0 : MDB_NOSYNC, names, dbis,
                            RZ_ARRAY_LEN(names));
    free(dir);
    if (mrc)
        return db_error(mrc, "open");
    if ((rc = migrate(e, dbis, 5)) != RZ_OK)   /* the record tables */
        return rc;
    rz__lmdb_map_find(e->env, ENGINE_MAP_SIZE, &e->map, &e->map_len);
    e->db_nodes = dbis[0];
    e->db_jobs = dbis[1];
    e->db_deps = dbis[2];
    e->db_step_events = dbis[3];
    e->db_dep_flows = dbis[4];
    e->db_by_client = dbis[5];
    e->db_ret = dbis[6];
    e->db_extra = dbis[7];
    if ((rc = ret_read(e)) != RZ_OK)
        return rc;
    return index_build(e);
}

void rz__engine_store_close(rz_engine *e)
{
    if (e->env)
        mdb_env_close(e->env);
    e->env = NULL;
}

/* ---- records ---- */

/* The add_* helpers say whether the member was added: a record missing a
 * field it should have would load as something else (a job without its
 * "state" is pending), so a record that cannot be built whole is not
 * written at all (print_record). */
static bool add_id(cJSON *o, const char *k, rz_ledger_id id)
{
    char buf[33];
    rz_ledger_id_format(id, buf);
    return cJSON_AddStringToObject(o, k, buf) != NULL;
}

static bool add_u64(cJSON *o, const char *k, uint64_t v)
{
    char buf[24], *p = buf + sizeof buf;   /* not snprintf: a hot path */
    *--p = '\0';
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    return cJSON_AddStringToObject(o, k, p) != NULL;   /* doubles lose bits */
}

/* A field a loader reads as 0 when absent: left out when 0, which is most
 * of a job's fields most of its life (records are written once a step). */
static bool add_nz(cJSON *o, const char *k, uint64_t v)
{
    return !v || add_u64(o, k, v);
}

static bool add_str(cJSON *o, const char *k, const char *v)
{
    return !v || cJSON_AddStringToObject(o, k, v) != NULL;
}

/* The record `o` as text, freeing `o`; NULL (out of memory) when it is
 * missing a member (`whole` false) or cannot be printed. */
static char *print_record(cJSON *o, bool whole)
{
    char *s = o && whole ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static uint64_t get_u64(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strtoull(v->valuestring, NULL, 10) : 0;
}

/* An amount: "<k>_micros", or "<k>" from before micro-dollars (cents,
 * converted exactly) so that an old store is never misread. */
static int get_money(const cJSON *o, const char *k, uint64_t job,
                     uint64_t *out)
{
    char key[40];
    snprintf(key, sizeof key, "%s_micros", k);
    if (cJSON_GetObjectItemCaseSensitive(o, key)) {
        *out = get_u64(o, key);
        return RZ_OK;
    }
    uint64_t cents = get_u64(o, k);
    if (cents > UINT64_MAX / 10000)
        return rz__error(RZ_EOVERFLOW, "engine store: job %llu: %s of %llu "
                         "cents is past 2^64-1 micro-dollars",
                         (unsigned long long)job, k, (unsigned long long)cents);
    *out = cents * 10000;
    return RZ_OK;
}

static const char *get_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static rz_ledger_id get_id(const cJSON *o, const char *k)
{
    rz_ledger_id id = {0, 0};
    const char *s = get_str(o, k);
    if (s)
        (void)!rz_ledger_id_parse(s, &id);   /* malformed: {0,0}, none */
    return id;
}

void rz__engine_node_caps_forget(rz__enode *n)
{
    free(n->caps_rec);
    n->caps_rec = NULL;
}

/* n->caps_rec for the caps and trust n has now: kept while its trust is
 * the one it was printed with (the trust is the only part of caps that
 * changes in place; a replaced caps is forgotten by its replacer). */
static int node_caps_rec(rz__enode *n)
{
    const rz_caps_info *ci = rz_caps_get(n->caps);
    if (n->caps_rec && ci->reputation == n->caps_rec_rep &&
        ci->unverified == n->caps_rec_unv)
        return RZ_OK;
    rz__engine_node_caps_forget(n);
    char *caps = NULL;
    int rc = rz_caps_to_json(n->caps, 0, &caps);
    if (rc != RZ_OK)
        return rc;
    size_t len = rz__json_quoted_len(caps);
    n->caps_rec = rz__malloc(len);
    if (n->caps_rec)
        rz__json_quoted_put(n->caps_rec, caps);
    rz_free(caps);
    if (!n->caps_rec)
        return rz__error(RZ_ENOMEM, "out of memory");
    n->caps_rec_len = len;
    n->caps_rec_rep = ci->reputation;
    n->caps_rec_unv = ci->unverified;
    return RZ_OK;
}

static int load_declined(rz__ejob *j, const cJSON *rec)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "declined");
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (n <= 0)
        return RZ_OK;
    j->declined = rz__calloc((size_t)n, sizeof *j->declined);
    if (!j->declined)
        return rz__error(RZ_ENOMEM, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, a)
        if (cJSON_IsString(v))
            j->declined[j->n_declined++] = strtoull(v->valuestring, NULL, 10);
    return RZ_OK;
}

/* ---- records printed without a cJSON tree ---- */

/* A job's record is printed at every change of the job (a tree of its
 * members, three allocations each, was 7% of the embedded runner's CPU):
 * these print what cJSON prints, {"k":"v",...}, into one buffer. */
typedef rz__buf recw;

static void w_raw(recw *w, const char *s, size_t n)
{
    rz__buf_append(w, s, n);
}

static void w_key(recw *w, const char *k)
{
    w_raw(w, w->len > 1 ? ",\"" : "\"", w->len > 1 ? 2 : 1);
    w_raw(w, k, strlen(k));
    w_raw(w, "\":", 2);
}

/* A string as cJSON quotes it (NULL: left out, as add_str). */
static void w_str(recw *w, const char *k, const char *v)
{
    if (v) {
        w_key(w, k);
        rz__json_quote(w, v);
    }
}

static void w_u64(recw *w, const char *k, uint64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    *--p = '"';
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    *--p = '"';
    w_key(w, k);
    w_raw(w, p, (size_t)(buf + sizeof buf - p));
}

static void w_nz(recw *w, const char *k, uint64_t v)
{
    if (v)
        w_u64(w, k, v);
}

static void w_id(recw *w, const char *k, rz_ledger_id id)
{
    char buf[33];
    rz_ledger_id_format(id, buf);
    w_str(w, k, buf);
}

/* The text (malloc'ed, NUL-ended), or NULL when memory ran out. */
static char *w_end(recw *w)
{
    w_raw(w, "}", 1);
    return rz__buf_take(w);
}

/* "declined": the nodes that turned the job down, as decimal strings. */
static void w_declined(recw *w, const rz__ejob *j)
{
    w_key(w, "declined");
    w_raw(w, "[", 1);
    for (size_t i = 0; i < j->n_declined; i++) {
        char buf[24];
        int n = snprintf(buf, sizeof buf, "%s\"%llu\"", i ? "," : "",
                         (unsigned long long)j->declined[i]);
        w_raw(w, buf, (size_t)n);
    }
    w_raw(w, "]", 1);
}

/* "rep", a replicated job's set (rare: printed through cJSON). */
static void w_replica(recw *w, const rz__ejob *j)
{
    cJSON *o = cJSON_CreateObject();
    char *t = o && rz__replica_save(o, j)
              ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, "rep"))
              : NULL;
    cJSON_Delete(o);
    if (!t) {
        w->failed = true;
        return;
    }
    w_key(w, "rep");
    w_raw(w, t, strlen(t));
    free(t);
}

static void job_fields(recw *w, const rz__ejob *j)
{
    w_u64(w, "id", j->id);
    w_u64(w, "state", (uint64_t)j->state);
    w_id(w, "client", j->client);
    w_nz(w, "priority", (uint64_t)(uint32_t)j->priority);
    w_str(w, "reqs", j->reqs_json);
    w_str(w, "module", j->module_id);
    w_str(w, "version", j->module_version);
    w_str(w, "request", j->request);
    w_str(w, "exec", j->exec);
    w_nz(w, "max_cost_micros", j->max_cost);
    w_nz(w, "attempt", j->attempt);
    w_nz(w, "node", j->node);
    w_nz(w, "deployment", j->deployment);
    w_nz(w, "step", (uint64_t)j->step);
    w_str(w, "step_id", j->step_id);
    w_str(w, "outputs", j->outputs);
    w_str(w, "error", j->error);
    w_nz(w, "cost_micros", j->cost);
    w_nz(w, "run_ms", j->run_ms);
    w_nz(w, "handed", j->handed_ms);
    w_nz(w, "submitted", j->submitted_ms);
    w_nz(w, "queue_timeout", j->queue_timeout_ms);
    w_nz(w, "queue_deadline", j->queue_deadline);
    w_nz(w, "owed", (uint64_t)j->owed);
}

static char *job_record(const rz__ejob *j)
{
    recw w = { 0 };
    (void)rz__buf_room(&w, 511);   /* most records fit: one allocation */
    w_raw(&w, "{", 1);
    job_fields(&w, j);
    w_nz(&w, "done_node", j->done_node);
    w_nz(&w, "done_attempt", j->done_attempt);
    if (j->done_known) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, j->done_digest, sizeof j->done_digest);
        w_str(&w, "done_digest", hex);
    }
    w_str(&w, "cache_key", j->cache_key);
    w_str(&w, "reused", j->reused);
    w_nz(&w, "cache_ms", j->cache_ms);
    w_nz(&w, "ended", j->ended_ms);
    w_nz(&w, "iv", j->iv);
    w_nz(&w, "iv_start", j->iv_start);
    w_nz(&w, "iv_run", j->iv_running);
    w_nz(&w, "result_due", j->result_due);
    w_nz(&w, "iv_paid", j->iv_paid_micros);
    w_nz(&w, "iv_owed", j->iv_owed);
    w_nz(&w, "iv_owed_micros", j->iv_owed_micros);
    w_nz(&w, "iv_owed_node", j->iv_owed_node);
    if (j->n_declined)
        w_declined(&w, j);
    if (j->rep_head)
        w_replica(&w, j);
    return w_end(&w);
}

/* The node's record but its caps (put_node adds them): rewritten at every
 * outcome of the node's jobs (its counts move), printed as job_record is
 * (a tree of its twelve members was 2% of the embedded runner's CPU). */
static char *node_record(const rz__enode *n)
{
    const char *keys[RZ__VERIFY_FIELDS];
    uint64_t vals[RZ__VERIFY_FIELDS];
    size_t k = rz__verify_fields(n, keys, vals);
    recw w = { 0 };
    w_raw(&w, "{", 1);
    w_u64(&w, "id", n->id);
    w_u64(&w, "state", (uint64_t)n->state);
    w_u64(&w, "registered", n->registered_ms);
    for (size_t i = 0; i < k; i++)
        w_u64(&w, keys[i], vals[i]);
    return w_end(&w);
}

/* The deployment's flow lives in "dflow" (dep_flow_record): this one is
 * rewritten on every step event and must stay small. Its final status is
 * added by put_dep. */
static char *dep_record(const rz__edep *d)
{
    cJSON *o = cJSON_CreateObject();
    bool whole = o &&
        add_u64(o, "id", d->id) &&
        add_id(o, "client", d->client) &&
        add_u64(o, "created", d->created_ms) &&
        add_u64(o, "first_job", d->first_job) &&
        add_u64(o, "steps", d->n_steps) &&
        add_u64(o, "state", (uint64_t)d->state) &&
        add_u64(o, "events", d->n_events) &&
        add_nz(o, "ended", d->ended_ms) &&
        (!d->paused || add_u64(o, "paused", 1));
    return print_record(o, whole);
}

static char *dep_flow_record(const rz__edep *d)
{
    cJSON *o = cJSON_CreateObject();
    bool whole = o && add_str(o, "text", d->text) &&
                 add_str(o, "inputs", d->inputs) &&
                 add_str(o, "reuse", d->reuse_text);
    return print_record(o, whole);
}

static char *step_event_record(const rz__step_event *v)
{
    cJSON *o = cJSON_CreateObject();
    bool whole = o && add_u64(o, "kind", (uint64_t)v->kind) &&
                 add_nz(o, "step", (uint64_t)v->step) &&
                 add_u64(o, "now", v->now) && add_str(o, "text", v->text);
    return print_record(o, whole);
}

/* Value v's header for key k and its `len` bytes of JSON after it. */
static void seal(unsigned char *v, const unsigned char *k, size_t klen,
                 size_t len)
{
    uint32_t crc = record_crc(k, klen, v + HDR, len);
    memcpy(v, MAGIC, 4);
    for (int i = 0; i < 4; i++)
        v[4 + i] = (unsigned char)(crc >> (8 * i));
}

static int put(MDB_txn *txn, MDB_dbi dbi, const unsigned char *k, size_t klen,
               char *rec)
{
    if (!rec)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t len = strlen(rec);
    /* Written in place (MDB_RESERVE), not copied once more. */
    MDB_val key = { klen, (void *)k }, val = { HDR + len, NULL };
    int mrc = mdb_put(txn, dbi, &key, &val, MDB_RESERVE);
    if (!mrc) {
        memcpy((unsigned char *)val.mv_data + HDR, rec, len);
        seal(val.mv_data, k, klen, len);
    }
    free(rec);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

/* The deployment's record with its final status last, the text cJSON
 * printed with the status as a member, written straight into LMDB's
 * reserved value: a big deployment's status (megabytes) is not copied
 * into a printed record first. */
static int put_dep(MDB_txn *txn, MDB_dbi dbi, const unsigned char *k,
                   const rz__edep *d)
{
    char *rec = dep_record(d);
    if (!rec || !d->final_status)
        return put(txn, dbi, k, 8, rec);
    static const char key[] = ",\"final\":";
    size_t head = strlen(rec) - 1;   /* without its "}" */
    size_t len = head + sizeof key - 1 + rz__json_quoted_len(d->final_status) + 1;
    MDB_val kv = { 8, (void *)k }, val = { HDR + len, NULL };
    int mrc = mdb_put(txn, dbi, &kv, &val, MDB_RESERVE);
    if (!mrc) {
        unsigned char *v = val.mv_data;
        char *o = (char *)v + HDR;
        memcpy(o, rec, head);
        memcpy(o + head, key, sizeof key - 1);
        o = rz__json_quoted_put(o + head + sizeof key - 1, d->final_status);
        *o = '}';
        seal(v, k, 8, len);
    }
    free(rec);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

/* The node's record with its caps last, from its printed caps
 * (node_caps_rec), written straight into LMDB's reserved value. */
static int put_node(MDB_txn *txn, MDB_dbi dbi, const unsigned char *k,
                    rz__enode *n)
{
    int rc = node_caps_rec(n);
    char *rec = rc == RZ_OK ? node_record(n) : NULL;
    if (!rec)
        return rc != RZ_OK ? rc : rz__error(RZ_ENOMEM, "out of memory");
    static const char key[] = ",\"caps\":";
    size_t head = strlen(rec) - 1;   /* without its "}" */
    size_t len = head + sizeof key - 1 + n->caps_rec_len + 1;
    MDB_val kv = { 8, (void *)k }, val = { HDR + len, NULL };
    int mrc = mdb_put(txn, dbi, &kv, &val, MDB_RESERVE);
    if (!mrc) {
        unsigned char *v = val.mv_data, *o = v + HDR;
        memcpy(o, rec, head);
        memcpy(o + head, key, sizeof key - 1);
        memcpy(o + head + sizeof key - 1, n->caps_rec, n->caps_rec_len);
        o[len - 1] = '}';
        seal(v, k, 8, len);
    }
    free(rec);
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

int rz__engine_step_event_room(rz_engine *e)
{
    if (!rz__engine_grow((void **)&e->step_events, &e->cap_step_events,
                         e->n_step_events + 1, sizeof *e->step_events))
        return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

void rz__engine_step_event_put(rz_engine *e, rz__edep *d,
                               rz__step_event_kind kind, size_t step,
                               uint64_t now, char *text)
{
    rz__step_event *v = &e->step_events[e->n_step_events];
    *v = (rz__step_event){ d->id, d->n_events, kind, step, now, text };
    e->n_step_events++;
    d->n_events++;
    rz__engine_touch_dep(e, d);
    rz__engine_local_event(e, d, kind, step, now, text);
}

int rz__engine_step_event_add(rz_engine *e, rz__edep *d,
                              rz__step_event_kind kind, size_t step,
                              uint64_t now, const char *text)
{
    char *copy = NULL;
    if (rz__engine_step_event_room(e) != RZ_OK ||
        (text && !(copy = rz__strdup(text))))
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__engine_step_event_put(e, d, kind, step, now, copy);
    return RZ_OK;
}

static int write_dirty(rz_engine *e, MDB_txn *txn)
{
    unsigned char k[12];
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < e->n_dirty_nodes; i++) {
        rz__enode *n = rz__engine_node(e, e->dirty_nodes[i]);
        key_u64(k, n->id);
        rc = put_node(txn, e->db_nodes, k, n);
    }
    for (size_t i = 0; rc == RZ_OK && i < e->n_dirty_jobs; i++) {
        rz__ejob *j = rz__engine_job(e, e->dirty_jobs[i]);
        key_u64(k, j->id);
        if (j->state >= RZ_JOB_SUCCEEDED && !j->ended_ms)
            j->ended_ms = e->now;   /* where retention counts its age from */
        rc = put(txn, e->db_jobs, k, 8, job_record(j));
        if (rc == RZ_OK)
            rc = index_put(txn, e->db_by_client, j->client, 'j', j->id);
    }
    for (size_t i = 0; rc == RZ_OK && i < e->n_dirty_deps; i++) {
        rz__edep *d = rz__engine_dep(e, e->dirty_deps[i]);
        key_u64(k, d->id);
        if (rz__engine_dep_finished(d) && !d->ended_ms)
            d->ended_ms = e->now;
        if (!d->flow_stored)   /* new, or a record that held its flow */
            rc = put(txn, e->db_dep_flows, k, 8, dep_flow_record(d));
        if (rc == RZ_OK)
            rc = put_dep(txn, e->db_deps, k, d);
        if (rc == RZ_OK)
            rc = index_put(txn, e->db_by_client, d->client, 'd', d->id);
    }
    if (rc == RZ_OK && e->index_mark) {
        MDB_val key = { 1, "v" }, val = { 1, "1" };
        int mrc = mdb_put(txn, e->db_by_client, &key, &val, 0);
        rc = mrc ? db_error(mrc, "write") : RZ_OK;
    }
    for (size_t i = 0; rc == RZ_OK && i < e->n_step_events; i++) {
        key_u64(k, e->step_events[i].dep);
        uint32_t s = e->step_events[i].seq;
        k[8] = (unsigned char)(s >> 24); k[9] = (unsigned char)(s >> 16);
        k[10] = (unsigned char)(s >> 8); k[11] = (unsigned char)s;
        rc = put(txn, e->db_step_events, k, 12,
                 step_event_record(&e->step_events[i]));
    }
    return rc;
}

/* Records now final on disk become candidates to leave memory (live.c). */
static void clear_dirty(rz_engine *e)
{
    for (size_t i = 0; i < e->n_dirty_nodes; i++)
        rz__engine_node(e, e->dirty_nodes[i])->dirty = false;
    for (size_t i = 0; i < e->n_dirty_jobs; i++) {
        rz__ejob *j = rz__engine_job(e, e->dirty_jobs[i]);
        j->dirty = false;
        if (rz__engine_job_done(e, j))
            rz__engine_evict_later(e, j->id, false);
    }
    for (size_t i = 0; i < e->n_dirty_deps; i++) {
        rz__edep *d = rz__engine_dep(e, e->dirty_deps[i]);
        d->dirty = false;
        d->flow_stored = true;
        if (d->flow_shared) {   /* stored: its flow is parsed already */
            free(d->text);
            d->text = NULL;
        }
        if (d->final_status)
            rz__engine_evict_later(e, d->id, true);
        if (d->final_status && d->n_steps >= 4096)
            rz__engine_store_shed(e);   /* its status: megabytes of pages */
    }
    for (size_t i = 0; i < e->n_step_events; i++)
        free(e->step_events[i].text);
    e->n_dirty_nodes = e->n_dirty_jobs = e->n_dirty_deps = e->n_step_events = 0;
    e->index_mark = false;
}

/* Whether the commit just made should shed the store's map. Not durable
 * (embedded runs): the store is on /dev/shm, where the pages a commit
 * reads through the map count as the process's memory until shed. A shed
 * flushes the TLB of every CPU the runner's children ran on, and the next
 * commits fault the pages back, 16 pages a fault (the kernel's
 * fault-around, 64 KiB). So it sheds once the commits since the last shed
 * took SHED_FAULTS page faults (f0: the process's count as this one
 * began): what they map stays under SHED_FAULTS x 64 KiB (8 MiB) whatever
 * the store's size. Only the commits' own faults count: counting the
 * process's (the ledger's map, the heap) shed the store ~3 times as often
 * at 20,000 steps, each shed faulting back the tree's top, for no memory
 * of the store's. Reads outside commits shed on their own (live.c). */
static bool shed_due(rz_engine *e, uint64_t f0)
{
    ++e->stats.commits;
    if (e->opts.durable)
        return e->stats.commits % SHED_COMMITS == 0;
    e->shed_faults += rz__lmdb_faults() - f0;
    if (e->shed_faults < SHED_FAULTS)
        return false;
    e->shed_faults = 0;
    return true;
}

void (*rz__engine_commit_seam)(void);

/* One write transaction with everything the call changed (and the paid
 * marks that waited for one: rz__engine_paid_later). A failure leaves
 * memory ahead of the disk, so the handle refuses further changes. */
int rz__engine_commit(rz_engine *e)
{
    if (e->dirty_lost) {   /* storing the rest would store half a call */
        e->broken = true;
        return rz__error(RZ_ENOMEM, "out of memory listing a change to store");
    }
    rz__engine_paid_merge(e);
    if (!e->n_dirty_nodes && !e->n_dirty_jobs && !e->n_dirty_deps &&
        !e->n_step_events && !rz__engine_extra_due(e))
        return RZ_OK;
    uint64_t f0 = e->opts.durable ? 0 : rz__lmdb_faults();
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, 0, &txn);
    if (mrc) {
        e->broken = true;
        return db_error(mrc, "begin");
    }
    int rc = write_dirty(e, txn);
    if (rc == RZ_OK)
        rc = rz__engine_extra_write(e, txn);
    if (rc != RZ_OK) {
        mdb_txn_abort(txn);
        e->broken = true;
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    if (mrc) {
        e->broken = true;
        return db_error(mrc, "commit");
    }
    if (rz__engine_commit_seam)
        rz__engine_commit_seam();
    clear_dirty(e);
    rz__engine_extra_clear(e);
    if (shed_due(e, f0))
        rz__engine_store_shed(e);
    return RZ_OK;
}

/* The caller's records (extra.c), in call order: a put sealed as the
 * engine's records are, a delete of what may not be there. */
int rz__engine_extra_write(rz_engine *e, MDB_txn *txn)
{
    int mrc = 0;
    for (size_t i = 0; mrc == 0 && i < e->n_extra; i++) {
        const rz__extra_op *op = &e->extra[i];
        MDB_val key = { op->klen, op->key }, val = { HDR + op->vlen, NULL };
        if (!op->put) {
            mrc = mdb_del(txn, e->db_extra, &key, NULL);
            mrc = mrc == MDB_NOTFOUND ? 0 : mrc;
            continue;
        }
        mrc = mdb_put(txn, e->db_extra, &key, &val, MDB_RESERVE);
        if (mrc == 0) {
            memcpy((unsigned char *)val.mv_data + HDR, op->val, op->vlen);
            seal(val.mv_data, op->key, op->klen, op->vlen);
        }
    }
    return mrc ? db_error(mrc, "write") : RZ_OK;
}

int rz_engine_extra_each(rz_engine *e, rz_engine_extra_fn fn, void *arg)
{
    if (!e || !fn)
        return rz__error(RZ_EINVAL, "no engine or function");
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, e->db_extra, &cur);
    MDB_val k, v;
    int rc = RZ_OK;
    if (mrc == 0)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; mrc == 0 && rc == RZ_OK; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *val;
        size_t len;
        rc = unwrap(&k, &v, &val, &len);
        if (rc == RZ_OK && fn(arg, k.mv_data, k.mv_size, val, len) != 0)
            rc = rz__error(RZ_ECANCELED, "stopped by the caller");
    }
    if (rc == RZ_OK && mrc != MDB_NOTFOUND)
        rc = db_error(mrc, "read");
    mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* The store's mapped pages out of RSS (rz__lmdb_shed): it would grow with
 * the store, not with the live work. */
void rz__engine_store_shed(rz_engine *e)
{
    rz__lmdb_shed(e->map, e->map_len);
}

/* ---- loading ---- */

typedef int (*load_fn)(rz_engine *e, const unsigned char *key, size_t klen,
                       const cJSON *rec);

/* A stored record parsed into *out (NULL on failure). cJSON fails alike
 * for a damaged text and for memory: a text that is valid JSON is out of
 * memory, anything else the store's damage, said as a corrupt `what` (the
 * record of `what` `id` when id is not 0). */
static int record_parse(const char *json, size_t len, cJSON **out,
                        const char *what, uint64_t id)
{
    *out = cJSON_ParseWithLength(json, len);
    if (*out)
        return RZ_OK;
    if (rz__json_valid(json, len))
        return rz__error(RZ_ENOMEM, "out of memory");
    return id ? rz__error(RZ_EDB, "engine store: %s %llu: a corrupt record", what,
                          (unsigned long long)id)
              : rz__error(RZ_EDB, "engine store: a corrupt %s", what);
}

static int walk(rz_engine *e, MDB_txn *txn, MDB_dbi dbi, load_fn fn)
{
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, dbi, &cur);
    if (mrc)
        return db_error(mrc, "cursor");
    MDB_val k, v;
    int rc = RZ_OK;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == RZ_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *json;
        size_t len;
        if ((rc = unwrap(&k, &v, &json, &len)) != RZ_OK)
            break;
        cJSON *rec = NULL;
        rc = k.mv_size < 8 ? rz__error(RZ_EDB, "engine store: a corrupt record")
                           : record_parse(json, len, &rec, "record", 0);
        if (rc == RZ_OK)
            rc = fn(e, k.mv_data, k.mv_size, rec);
        cJSON_Delete(rec);
    }
    mdb_cursor_close(cur);
    if (rc == RZ_OK && mrc != MDB_NOTFOUND)
        rc = db_error(mrc, "read");
    return rc;
}

static int load_node(rz_engine *e, const unsigned char *key, size_t klen,
                     const cJSON *rec)
{
    (void)klen;
    uint64_t id = u64_of(key);
    if (id != e->n_nodes + 1)
        return rz__error(RZ_EDB, "engine store: node %llu out of sequence",
                         (unsigned long long)id);
    if (!rz__engine_grow((void **)&e->nodes, &e->cap_nodes, e->n_nodes + 1,
                         sizeof *e->nodes))
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__enode *n = &e->nodes[e->n_nodes];
    memset(n, 0, sizeof *n);
    const char *caps = get_str(rec, "caps");
    int rc = rz_caps_parse(&n->caps, caps ? caps : "", caps ? strlen(caps) : 0);
    if (rc != RZ_OK)
        return rc;
    n->id = id;
    n->state = (rz_node_state)get_u64(rec, "state");
    n->registered_ms = get_u64(rec, "registered");
    n->mindex = RZ_NPOS;
    e->n_nodes++;
    return rz__verify_load(e, n, rec);
}

static char *dup_opt(const char *s, int *rc)
{
    if (!s)
        return NULL;
    char *d = rz__strdup(s);
    if (!d)
        *rc = rz__error(RZ_ENOMEM, "out of memory");
    return d;
}

/* A job record's fields into j (zeroed), but its requirements. */
static int parse_job(rz__ejob *j, uint64_t id, const cJSON *rec)
{
    int rc = RZ_OK;
    j->id = id;
    j->state = (rz_job_state)get_u64(rec, "state");
    j->client = get_id(rec, "client");
    j->priority = (int32_t)(uint32_t)get_u64(rec, "priority");
    j->module_id = dup_opt(get_str(rec, "module"), &rc);
    j->module_version = dup_opt(get_str(rec, "version"), &rc);
    j->request = dup_opt(get_str(rec, "request"), &rc);
    j->exec = dup_opt(get_str(rec, "exec"), &rc);   /* absent: a module job */
    if (rc == RZ_OK)
        rc = get_money(rec, "max_cost", id, &j->max_cost);
    j->attempt = (uint32_t)get_u64(rec, "attempt");
    j->node = get_u64(rec, "node");
    j->deployment = get_u64(rec, "deployment");
    j->step = (size_t)get_u64(rec, "step");
    j->step_id = dup_opt(get_str(rec, "step_id"), &rc);
    j->outputs = dup_opt(get_str(rec, "outputs"), &rc);
    j->error = dup_opt(get_str(rec, "error"), &rc);
    if (rc == RZ_OK)
        rc = get_money(rec, "cost", id, &j->cost);
    j->run_ms = get_u64(rec, "run_ms");
    j->handed_ms = get_u64(rec, "handed");   /* absent: 0 */
    j->submitted_ms = get_u64(rec, "submitted");
    j->queue_timeout_ms = get_u64(rec, "queue_timeout");   /* absent: 0 */
    j->queue_deadline = get_u64(rec, "queue_deadline");
    j->owed = (int)get_u64(rec, "owed");
    j->done_node = get_u64(rec, "done_node");
    j->done_attempt = (uint32_t)get_u64(rec, "done_attempt");
    j->cache_key = dup_opt(get_str(rec, "cache_key"), &rc);   /* absent: none */
    j->reused = dup_opt(get_str(rec, "reused"), &rc);
    j->cache_ms = get_u64(rec, "cache_ms");
    j->ended_ms = get_u64(rec, "ended");
    j->iv = (uint32_t)get_u64(rec, "iv");   /* absent: not billed by time */
    j->iv_start = get_u64(rec, "iv_start");
    j->iv_running = get_u64(rec, "iv_run") != 0;
    j->result_due = get_u64(rec, "result_due") != 0;
    j->iv_paid_micros = get_u64(rec, "iv_paid");
    j->iv_owed = get_u64(rec, "iv_owed") != 0;
    j->iv_owed_micros = get_u64(rec, "iv_owed_micros");
    j->iv_owed_node = get_u64(rec, "iv_owed_node");
    const char *dd = get_str(rec, "done_digest");   /* absent: unknown */
    j->done_known = dd && strlen(dd) == 64 &&
                    sodium_hex2bin(j->done_digest, sizeof j->done_digest, dd,
                                   64, NULL, NULL, NULL) == 0;
    if (rc == RZ_OK)
        rc = rz__replica_load(j, rec);
    if (rc == RZ_OK)
        rc = load_declined(j, rec);
    return rc;
}

/* Ids [from, to) are steps of running deployments: pending steps have no
 * record until their job first changes (deploy.c). */
static bool unwritten_steps(const rz_engine *e, uint64_t from, uint64_t to)
{
    size_t k = 0;
    for (uint64_t id = from; id < to; id++) {
        while (k < e->n_live_deps &&
               e->deps[k]->first_job + e->deps[k]->n_steps <= id)
            k++;
        if (k == e->n_live_deps || e->deps[k]->first_job > id)
            return false;
    }
    return true;
}

/* Memory gets live work only (engine_impl.h): open jobs, jobs owing the
 * ledger, and the steps of running deployments (loaded before the jobs). */
static int load_job(rz_engine *e, const unsigned char *key, size_t klen,
                    const cJSON *rec)
{
    (void)klen;
    uint64_t id = u64_of(key);
    /* Ids retention removed leave gaps (rz_engine_compact). */
    uint64_t from = e->n_jobs < e->ret.max_job ? e->ret.max_job : e->n_jobs;
    if (id <= e->n_jobs || !unwritten_steps(e, from + 1 < id ? from + 1 : id, id))
        return rz__error(RZ_EDB, "engine store: job %llu out of sequence",
                         (unsigned long long)id);
    e->n_jobs = id - 1;
    rz__ejob *j = rz__calloc(1, sizeof *j);
    if (!j)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = parse_job(j, id, rec);
    e->n_jobs++;
    if (rc == RZ_OK && rz__engine_job_done(e, j)) {
        if ((unsigned)j->state <= RZ_JOB_CANCELLED)
            e->gone_jobs[j->state]++;
        e->gone_volume += rz__engine_charged(j);
        rz__engine_job_clear(e, j);
        free(j);
        return RZ_OK;
    }
    if (rc == RZ_OK)
        rc = rz__engine_reqs_set(e, j, get_str(rec, "reqs"), UINT64_MAX);
    if (rc == RZ_OK && !rz__engine_live_add_job(e, j))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        rz__engine_job_clear(e, j);
        free(j);
    }
    return rc;
}

/* A deployment record's fields into d (zeroed), but its flow. */
static int parse_dep(rz__edep *d, uint64_t id, const cJSON *rec)
{
    int rc = RZ_OK;
    d->id = id;
    d->client = get_id(rec, "client");
    /* A record from before "dflow" holds the flow; else load_dep_flow. */
    d->text = dup_opt(get_str(rec, "text"), &rc);
    d->inputs = dup_opt(get_str(rec, "inputs"), &rc);
    d->flow_stored = !d->text;
    d->created_ms = get_u64(rec, "created");
    d->first_job = get_u64(rec, "first_job");
    d->n_steps = (size_t)get_u64(rec, "steps");
    d->state = (rz_run_state)get_u64(rec, "state");
    d->n_events = (uint32_t)get_u64(rec, "events");
    d->ended_ms = get_u64(rec, "ended");
    d->paused = get_u64(rec, "paused") != 0;
    d->final_status = dup_opt(get_str(rec, "final"), &rc);
    return rc;
}

static int load_dep(rz_engine *e, const unsigned char *key, size_t klen,
                    const cJSON *rec)
{
    (void)klen;
    uint64_t id = u64_of(key);
    if (id <= e->n_deps || (id != e->n_deps + 1 && id - 1 > e->ret.max_dep))
        return rz__error(RZ_EDB, "engine store: deployment %llu out of sequence",
                         (unsigned long long)id);
    e->n_deps = id;
    rz__edep *d = rz__calloc(1, sizeof *d);
    if (!d)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = parse_dep(d, id, rec);
    bool keep = rc == RZ_OK && !d->final_status;   /* finished: gone */
    if (keep && !rz__engine_live_add_dep(e, d))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK && !keep)
        e->gone_deps++;
    if (rc != RZ_OK || !keep) {
        rz__engine_dep_free(d);
        free(d);
    }
    return rc;
}

/* The flow of a deployment whose record does not hold it. */
static int load_dep_flow(rz_engine *e, MDB_txn *txn, rz__edep *d)
{
    if (!d->flow_stored)
        return RZ_OK;
    unsigned char k[12];
    key_u64(k, d->id);
    MDB_val key = { 8, k }, val;
    int mrc = mdb_get(txn, e->db_dep_flows, &key, &val);
    if (mrc == MDB_NOTFOUND)
        return rz__error(RZ_EDB, "engine store: deployment %llu without a "
                         "flow", (unsigned long long)d->id);
    if (mrc)
        return db_error(mrc, "read");
    const char *json;
    size_t len;
    int rc = unwrap(&key, &val, &json, &len);
    if (rc != RZ_OK)
        return rc;
    cJSON *rec;
    rc = record_parse(json, len, &rec, "flow of deployment", d->id);
    if (rc != RZ_OK)
        return rc;
    d->text = dup_opt(get_str(rec, "text"), &rc);
    d->inputs = dup_opt(get_str(rec, "inputs"), &rc);
    d->reuse_text = dup_opt(get_str(rec, "reuse"), &rc);
    cJSON_Delete(rec);
    if (rc == RZ_OK && !d->text)
        rc = rz__error(RZ_EDB, "engine store: deployment %llu without a flow",
                       (unsigned long long)d->id);
    return rc;
}

int rz__engine_store_dep_flow(const rz_engine *e, uint64_t id, char **text, char **inputs)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    rz__edep d;
    memset(&d, 0, sizeof d);
    d.id = id;
    d.flow_stored = true;
    int rc = load_dep_flow((rz_engine *)e, txn, &d);   /* reads only */
    mdb_txn_abort(txn);
    *text = d.text;
    *inputs = d.inputs;
    free(d.reuse_text);
    return rc;
}

int rz__engine_load(rz_engine *e)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    int rc = walk(e, txn, e->db_nodes, load_node);
    if (rc == RZ_OK)   /* before the jobs: a running one keeps its steps */
        rc = walk(e, txn, e->db_deps, load_dep);
    if (rc == RZ_OK)
        rc = walk(e, txn, e->db_jobs, load_job);
    /* What retention removed: its ids stay used, its counts stay counted. */
    if (e->n_jobs < e->ret.max_job)
        e->n_jobs = e->ret.max_job;
    if (e->n_deps < e->ret.max_dep)
        e->n_deps = e->ret.max_dep;
    for (int s = 0; s <= RZ_JOB_CANCELLED; s++)
        e->gone_jobs[s] += e->ret.jobs[s];
    e->gone_deps += e->ret.deps;
    e->gone_volume += e->ret.volume;
    /* The last deployment's last steps may have no record yet. */
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_deps; i++) {
        uint64_t end = e->deps[i]->first_job + e->deps[i]->n_steps - 1;
        if (e->deps[i]->n_steps && end > e->n_jobs) {
            if (!unwritten_steps(e, e->n_jobs + 1, end + 1))
                rc = rz__error(RZ_EDB, "engine store: job %llu out of "
                               "sequence", (unsigned long long)e->n_jobs + 1);
            e->n_jobs = end;
        }
    }
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_deps; i++)
        rc = load_dep_flow(e, txn, e->deps[i]);
    mdb_txn_abort(txn);
    rz__engine_store_shed(e);   /* the walk read every record */
    return rc;
}

/* Apply one stored step event to the deployment's run, exactly as the live
 * path did: a start is preceded by the readiness check that promoted it. */
static int apply_step_event(rz__edep *d, const cJSON *rec)
{
    rz__step_event_kind kind = (rz__step_event_kind)get_u64(rec, "kind");
    size_t step = (size_t)get_u64(rec, "step");
    uint64_t now = get_u64(rec, "now");
    const char *text = get_str(rec, "text");
    size_t dummy;
    switch (kind) {
    case RZ__STEP_EVENT_START:
        rz_run_ready(d->run, now, &dummy, 0);
        return rz_run_start(d->run, step, now);
    case RZ__STEP_EVENT_SUCCEED: {
        /* RZ_EINVALID replays too; out of memory would replay otherwise. */
        int rc = rz_run_succeed(d->run, step, text, now);
        return rc == RZ_ENOMEM ? rc : RZ_OK;
    }
    case RZ__STEP_EVENT_FAIL:
        return rz_run_fail(d->run, step, text, now);
    case RZ__STEP_EVENT_TICK:
        rz_run_tick(d->run, now, &dummy, 0);
        return RZ_OK;
    case RZ__STEP_EVENT_CANCEL:
        d->cancelled = true;
        return rz_run_cancel(d->run, now);
    case RZ__STEP_EVENT_READY:
    case RZ__STEP_EVENT_EMIT:
        return rz__engine_service_apply(d->run, kind, step, now, text);
    case RZ__STEP_EVENT_STOP:
        return rz__bill_stop_apply(d->run, step, now, text);
    }
    return rz__error(RZ_EDB, "engine store: unknown step event %d", (int)kind);
}

int rz__engine_replay(rz_engine *e, rz__edep *d)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    MDB_cursor *cur = NULL;
    mrc = mdb_cursor_open(txn, e->db_step_events, &cur);
    if (mrc) {
        mdb_txn_abort(txn);
        return db_error(mrc, "cursor");
    }
    unsigned char k[12] = {0};
    key_u64(k, d->id);
    MDB_val key = { 12, k }, val;
    int rc = RZ_OK;
    uint32_t seen = 0;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         mrc == 0 && rc == RZ_OK && seen < d->n_events;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 12 || u64_of(key.mv_data) != d->id)
            break;
        const char *json;
        size_t len;
        if ((rc = unwrap(&key, &val, &json, &len)) != RZ_OK)
            break;
        cJSON *rec;
        rc = record_parse(json, len, &rec, "step event", 0);
        if (rc == RZ_OK)
            rc = apply_step_event(d, rec);
        cJSON_Delete(rec);
        seen++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc == RZ_OK && seen != d->n_events)
        rc = rz__error(RZ_EDB, "deployment %llu: %u of %u step events found",
                       (unsigned long long)d->id, seen, d->n_events);
    return rc;
}

/* ---- reading back what left memory ---- */

/* The JSON of record `id` of `dbi` in txn, its checksum verified. */
static int get_record(MDB_txn *txn, MDB_dbi dbi, uint64_t id,
                      const char **json, size_t *len)
{
    unsigned char k[12];
    key_u64(k, id);
    MDB_val key = { 8, k }, val;
    int mrc = mdb_get(txn, dbi, &key, &val);
    if (mrc == MDB_NOTFOUND)
        return rz__error(RZ_ENOENT, "no record %llu", (unsigned long long)id);
    if (mrc)
        return db_error(mrc, "read");
    return unwrap(&key, &val, json, len);
}

typedef int (*parse_fn)(void *out, uint64_t id, const cJSON *rec);

static int parse_job_v(void *out, uint64_t id, const cJSON *rec)
{
    return parse_job(out, id, rec);
}

static int parse_dep_v(void *out, uint64_t id, const cJSON *rec)
{
    return parse_dep(out, id, rec);
}

static int read_one(const rz_engine *e, MDB_dbi dbi, uint64_t id,
                    parse_fn fn, void *out, const char *what)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    const char *json;
    size_t len;
    int rc = get_record(txn, dbi, id, &json, &len);
    if (rc == RZ_ENOENT)
        rc = rz__error(RZ_ENOENT, "no %s %llu", what, (unsigned long long)id);
    cJSON *rec = NULL;
    if (rc == RZ_OK)
        rc = record_parse(json, len, &rec, what, id);
    if (rc == RZ_OK)
        rc = fn(out, id, rec);
    cJSON_Delete(rec);
    mdb_txn_abort(txn);
    return rc;
}

int rz__engine_store_job(const rz_engine *e, uint64_t id, rz__ejob *out)
{
    return read_one(e, e->db_jobs, id, parse_job_v, out, "job");
}

int rz__engine_store_dep(const rz_engine *e, uint64_t id, rz__edep *out)
{
    return read_one(e, e->db_deps, id, parse_dep_v, out, "deployment");
}

int rz__engine_store_dep_read(rz_engine *e, uint64_t id, rz__edep *out)
{
    int rc = rz__engine_store_dep(e, id, out);
    MDB_txn *txn = NULL;
    int mrc = rc == RZ_OK ? mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn) : 0;
    if (mrc)
        return db_error(mrc, "begin");
    if (rc == RZ_OK)
        rc = load_dep_flow(e, txn, out);
    mdb_txn_abort(txn);
    return rc;
}

/* A descending walk over one client's ids of a kind in the index. */
/* Ids walked down a table: the client index (keys of CLIENT_KEY bytes,
 * a 17-byte client-and-kind prefix) or the records themselves (8-byte
 * keys, no prefix: other keys are skipped). */
typedef struct index_walk {
    MDB_cursor *cur;
    unsigned char prefix[17];
    size_t plen, klen;
    int op;   /* the next cursor move; 0: done */
} index_walk;

/* Position at the greatest id <= top: k, the key of top (w->klen bytes). */
static void walk_at(index_walk *w, const unsigned char *k)
{
    memcpy(w->prefix, k, w->plen);
    MDB_val key = { w->klen, (void *)k }, val;
    int mrc = mdb_cursor_get(w->cur, &key, &val, MDB_SET_RANGE);
    if (mrc == 0 && key.mv_size == w->klen && memcmp(key.mv_data, k, w->klen) == 0)
        w->op = MDB_GET_CURRENT;
    else
        w->op = mrc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV;
}

static void walk_start(index_walk *w, const rz_ledger_id *c, char kind,
                       uint64_t top)
{
    unsigned char k[CLIENT_KEY];
    w->plen = c ? 17 : 0;
    w->klen = c ? CLIENT_KEY : 8;
    if (c)
        client_key(k, *c, kind, top);
    else
        key_u64(k, top);
    walk_at(w, k);
}

/* The next id, 0 when the range ends. */
static uint64_t walk_next(index_walk *w)
{
    MDB_val key, val;
    while (w->op && mdb_cursor_get(w->cur, &key, &val, (MDB_cursor_op)w->op) == 0 &&
           memcmp(key.mv_data, w->prefix, key.mv_size < w->plen ? key.mv_size
                                                                 : w->plen) == 0) {
        w->op = MDB_PREV;
        if (key.mv_size == w->klen)
            return u64_of((const unsigned char *)key.mv_data + w->plen);
        if (w->plen)
            break;   /* the client's range is over */
    }
    w->op = 0;
    return 0;
}

/* The next live record of the client (NULL: anyone's) below index *i
 * (memory holds pending steps whose record is not written yet), 0: none. */
static uint64_t live_next(const rz_engine *e, bool deps, const rz_ledger_id *c,
                          size_t *i)
{
    while (*i > 0) {
        --*i;
        const rz_ledger_id *x = deps ? &e->deps[*i]->client : &e->jobs[*i]->client;
        if (!c || rz_ledger_id_equal(*x, *c))
            return deps ? e->deps[*i]->id : e->jobs[*i]->id;
    }
    return 0;
}

size_t rz__engine_store_list(const rz_engine *e, bool deps,
                             const rz_ledger_id *client, uint64_t top,
                             uint64_t *ids, size_t cap)
{
    size_t n = 0;
    MDB_txn *txn = NULL;
    index_walk w = { 0 };
    if (mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn))
        return 0;
    /* Everyone's: the records themselves, so the ids retention removed
     * are not listed (a page of `cap` is full while more exist). */
    MDB_dbi dbi = client ? e->db_by_client : deps ? e->db_deps : e->db_jobs;
    if (mdb_cursor_open(txn, dbi, &w.cur)) {
        mdb_txn_abort(txn);
        return 0;
    }
    walk_start(&w, client, deps ? 'd' : 'j', top);
    /* Live ones at or below top: the first index past them, walked down. */
    size_t lo = 0, i = deps ? e->n_live_deps : e->n_live_jobs;
    while (lo < i) {   /* the first live id > top */
        size_t mid = lo + (i - lo) / 2;
        if ((deps ? e->deps[mid]->id : e->jobs[mid]->id) <= top)
            lo = mid + 1;
        else
            i = mid;
    }
    uint64_t a = walk_next(&w), b = live_next(e, deps, client, &i);
    while ((a || b) && n < cap) {
        uint64_t id = a > b ? a : b;
        ids[n++] = id;
        if (a == id)
            a = walk_next(&w);
        if (b == id)
            b = live_next(e, deps, client, &i);
    }
    mdb_cursor_close(w.cur);
    mdb_txn_abort(txn);
    return n;
}

int rz__engine_store_each_gone(rz_engine *e, int (*fn)(rz_engine *, rz__ejob *))
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    MDB_cursor *cur = NULL;
    if ((mrc = mdb_cursor_open(txn, e->db_jobs, &cur)) != 0) {
        mdb_txn_abort(txn);
        return db_error(mrc, "cursor");
    }
    MDB_val k, v;
    int rc = RZ_OK;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == RZ_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id = k.mv_size == 8 ? u64_of(k.mv_data) : 0;
        if (!id || rz__engine_job(e, id))
            continue;
        const char *json;
        size_t len;
        if ((rc = unwrap(&k, &v, &json, &len)) != RZ_OK)
            break;
        cJSON *rec;
        rz__ejob j;
        memset(&j, 0, sizeof j);
        rc = record_parse(json, len, &rec, "record", 0);
        if (rc == RZ_OK)
            rc = parse_job(&j, id, rec);
        cJSON_Delete(rec);
        if (rc == RZ_OK)
            rc = fn(e, &j);
        rz__engine_job_clear(e, &j);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    rz__engine_store_shed(e);
    if (rc == RZ_OK && mrc != MDB_NOTFOUND && mrc != 0)
        rc = db_error(mrc, "read");
    return rc;
}

/* ---- retention (rz_engine_compact) ----
 * A pass is one write transaction: the records it removes, their entries
 * in the client index and the "ret" record (the highest ids removed, what
 * was removed by state, the volume it had) go together, so a crash leaves
 * the store as it was before the pass or after it, never between. Open
 * accepts the gaps at or below the highest ids removed and adds the counts
 * back, so no id is given twice (a ledger id is made from it) and the
 * totals do not move. The ledger is never written: a removed job's hold
 * stays there, closed (a pass skips a job whose hold is open, which memory
 * would hold anyway). A deployment goes before its jobs: its step events
 * (over as many passes as their number needs; a finished deployment never
 * replays them), then its flow and record, once no job of it (a step, a
 * for_each element, a step's replica run) is in memory; its jobs, which
 * nothing reads through it then, in the same or a later pass. A replica
 * set goes whole in one pass, once no run of it is in memory, so no run
 * outlives the head its record and refund name. The read-back cache is
 * cleared in place after a pass (nothing allocated, nothing to fail). */

#define RET_BUDGET_MAX 65536u   /* records a pass removes at most */

static const char *const RET_STATES[RZ_JOB_CANCELLED + 1] = {
    "s0", "s1", "s2", "s3", "s4", "s5", "s6" };

static int ret_read(rz_engine *e)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    MDB_val key = { 1, "v" }, val;
    const char *json;
    size_t len;
    int rc = RZ_OK;
    mrc = mdb_get(txn, e->db_ret, &key, &val);
    if (mrc && mrc != MDB_NOTFOUND)
        rc = db_error(mrc, "read");
    else if (!mrc && (rc = unwrap(&key, &val, &json, &len)) == RZ_OK) {
        cJSON *rec;
        rc = record_parse(json, len, &rec, "retention record", 0);
        struct rz__eret *r = &e->ret;
        r->max_job = get_u64(rec, "max_job");
        r->max_dep = get_u64(rec, "max_dep");
        for (int i = 0; i <= RZ_JOB_CANCELLED; i++)
            r->jobs[i] = get_u64(rec, RET_STATES[i]);
        r->deps = get_u64(rec, "deps");
        r->volume = get_u64(rec, "volume");
        r->events = get_u64(rec, "events");
        cJSON_Delete(rec);
    }
    mdb_txn_abort(txn);
    return rc;
}

static char *ret_record(const struct rz__eret *r)
{
    cJSON *o = cJSON_CreateObject();
    bool whole = o && add_u64(o, "max_job", r->max_job) &&
                 add_u64(o, "max_dep", r->max_dep) &&
                 add_u64(o, "deps", r->deps) && add_u64(o, "volume", r->volume) &&
                 add_u64(o, "events", r->events);
    for (int i = 0; whole && i <= RZ_JOB_CANCELLED; i++)
        whole = add_u64(o, RET_STATES[i], r->jobs[i]);
    return print_record(o, whole);
}

/* A member of a record as add_u64 writes it ("k":"digits"), found without
 * parsing the record: a finished deployment's holds its status, megabytes.
 * Members before "final" are numbers and ids, and an escaped quote inside
 * the status cannot match. */
static uint64_t scan_u64(const char *json, size_t len, const char *k)
{
    char tag[32];
    int n = snprintf(tag, sizeof tag, "\"%s\":\"", k);
    const char *at = memmem(json, len, tag, (size_t)n);
    return at ? strtoull(at + n, NULL, 10) : 0;
}

typedef struct ret_pass {
    rz_engine *e;
    MDB_txn *txn;
    uint64_t before;          /* what ended before this may go */
    size_t budget;            /* removals left */
    bool young;               /* met a record too young: start over next time */
    bool end;                 /* the ids listed reach the table's end */
    struct rz__eret ret;      /* e->ret after this pass */
    uint64_t *ids; size_t n_ids, cap_ids;   /* removed: jobs then deps */
    size_t n_removed;         /* ids[0..n_removed): removed so far */
    uint64_t events;
    uint64_t *live_deps; size_t n_live_deps;   /* rz__engine_live_dep_ids, */
    bool live_deps_read;                       /* read once a pass */
    uint64_t *runs; size_t n_runs, cap_runs;   /* replica runs removed with
                                                  their heads */
} ret_pass;

static int del_key(ret_pass *p, MDB_dbi dbi, const unsigned char *k, size_t klen)
{
    MDB_val key = { klen, (void *)k };
    int mrc = mdb_del(p->txn, dbi, &key, NULL);
    return mrc && mrc != MDB_NOTFOUND ? db_error(mrc, "delete") : RZ_OK;
}

static int del_record(ret_pass *p, MDB_dbi dbi, uint64_t id, rz_ledger_id c,
                      char kind)
{
    unsigned char k[CLIENT_KEY];
    key_u64(k, id);   /* 12 bytes of room */
    int rc = del_key(p, dbi, k, 8);
    client_key(k, c, kind, id);
    return rc == RZ_OK ? del_key(p, p->e->db_by_client, k, CLIENT_KEY) : rc;
}

static bool stored(ret_pass *p, MDB_dbi dbi, uint64_t id)
{
    unsigned char k[12];
    key_u64(k, id);
    MDB_val key = { 8, k }, val;
    return mdb_get(p->txn, dbi, &key, &val) == 0;
}

/* Up to `cap` ids of `dbi` from `from` on, in order. */
static int ret_ids(ret_pass *p, MDB_dbi dbi, uint64_t from, size_t cap)
{
    p->n_ids = 0;
    if (!rz__engine_grow((void **)&p->ids, &p->cap_ids, cap, sizeof *p->ids))
        return rz__error(RZ_ENOMEM, "out of memory");
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(p->txn, dbi, &cur);
    if (mrc)
        return db_error(mrc, "cursor");
    unsigned char k[12];
    key_u64(k, from);
    MDB_val key = { 8, k }, val;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         mrc == 0 && p->n_ids < cap;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT))
        if (key.mv_size == 8)
            p->ids[p->n_ids++] = u64_of(key.mv_data);
    mdb_cursor_close(cur);
    p->end = mrc == MDB_NOTFOUND;
    return mrc && mrc != MDB_NOTFOUND ? db_error(mrc, "read") : RZ_OK;
}

/* The id after the last one listed (0 when none was: the walk is over). */
static uint64_t id_after(const ret_pass *p)
{
    return p->n_ids ? p->ids[p->n_ids - 1] + 1 : 0;
}

/* Remove up to the budget of deployment `dep`'s step events; *all: none
 * is left. Keys are listed first, then removed (a delete moves the
 * cursor's page under it). */
static int ret_events(ret_pass *p, uint64_t dep, bool *all)
{
    uint32_t *seq = p->budget ? malloc(p->budget * sizeof *seq) : NULL;
    if (p->budget && !seq)
        return rz__error(RZ_ENOMEM, "out of memory");
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(p->txn, p->e->db_step_events, &cur);
    if (mrc) {
        free(seq);
        return db_error(mrc, "cursor");
    }
    unsigned char k[12] = { 0 };
    key_u64(k, dep);
    MDB_val key = { 12, k }, val;
    size_t n = 0;
    *all = false;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); ;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (mrc || key.mv_size != 12 || u64_of(key.mv_data) != dep) {
            *all = true;
            break;
        }
        if (n == p->budget)
            break;
        const unsigned char *b = key.mv_data;
        seq[n++] = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 |
                   (uint32_t)b[10] << 8 | b[11];
    }
    mdb_cursor_close(cur);
    int rc = mrc && mrc != MDB_NOTFOUND ? db_error(mrc, "read") : RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        k[8] = (unsigned char)(seq[i] >> 24); k[9] = (unsigned char)(seq[i] >> 16);
        k[10] = (unsigned char)(seq[i] >> 8); k[11] = (unsigned char)seq[i];
        rc = del_key(p, p->e->db_step_events, k, 12);
    }
    free(seq);
    p->budget -= n;
    p->events += n;
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Has deployment `id` a job in memory (a step, a for_each element, a
 * step's replica run)? It goes after them. */
static int dep_live(ret_pass *p, uint64_t id, bool *live)
{
    if (!p->live_deps_read) {
        int rc = rz__engine_live_dep_ids(p->e, &p->live_deps, &p->n_live_deps);
        if (rc != RZ_OK)
            return rc;
        p->live_deps_read = true;
    }
    *live = p->live_deps &&
            bsearch(&id, p->live_deps, p->n_live_deps, sizeof id, cmp_u64) != NULL;
    return RZ_OK;
}

/* Deployments from e->ret_dep_next on: a finished one that ended before
 * p->before goes (events, flow, record); the walk starts over at the
 * first one created since. */
static int ret_deps(ret_pass *p, size_t look)
{
    rz_engine *e = p->e;
    int rc = ret_ids(p, e->db_deps, e->ret_dep_next, look);
    uint64_t next = 0, after = id_after(p);
    for (size_t i = 0; rc == RZ_OK && i < p->n_ids && p->budget; i++) {
        uint64_t id = p->ids[i];
        next = id + 1;
        if (rz__engine_dep(e, id))
            continue;   /* running, or finished and not yet evicted */
        const char *json;
        size_t len;
        MDB_txn *t = p->txn;
        if ((rc = get_record(t, e->db_deps, id, &json, &len)) != RZ_OK)
            break;
        uint64_t created = scan_u64(json, len, "created");
        uint64_t ended = scan_u64(json, len, "ended");
        bool done = memmem(json, len, "\"final\":\"", 9) != NULL;
        if (created >= p->before) {
            p->young = true;
            next = 0;
            break;
        }
        if (!done || (ended ? ended : created) >= p->before)
            continue;   /* running or young */
        bool live = false;
        if ((rc = dep_live(p, id, &live)) != RZ_OK)
            break;
        if (live)
            continue;   /* a step or element still owes the ledger */
        rz_ledger_id c;
        if (!record_client(json, len, &c)) {
            rc = rz__error(RZ_EDB, "engine store: deployment %llu names no client",
                           (unsigned long long)id);
            break;
        }
        bool all = false;
        if ((rc = ret_events(p, id, &all)) != RZ_OK || !all) {
            next = id;   /* its other events next time */
            break;
        }
        unsigned char k[12];
        key_u64(k, id);
        rc = del_key(p, e->db_dep_flows, k, 8);
        if (rc == RZ_OK)
            rc = del_record(p, e->db_deps, id, c, 'd');
        if (rc != RZ_OK)
            break;
        p->ret.deps++;
        if (p->ret.max_dep < id)
            p->ret.max_dep = id;
        p->ids[p->n_removed++] = id;   /* removed ones first, in place */
        if (p->budget)
            p->budget--;
    }
    if (rc == RZ_OK)   /* past the last one, or at a young one: over again */
        e->ret_dep_next = p->young || (p->end && next == after) ? 0 : next;
    return rc;
}

/* Is finished job `j` (stored, not in memory) settled and old enough to
 * go, its deployment gone? */
static bool job_settled(ret_pass *p, const rz__ejob *j)
{
    rz_engine *e = p->e;
    if (rz__engine_job(e, j->id) || j->state < RZ_JOB_SUCCEEDED ||
        j->owed != RZ__OWE_NONE || j->iv_owed ||
        (j->ended_ms ? j->ended_ms : j->submitted_ms) >= p->before)
        return false;
    if (j->deployment && (rz__engine_dep(e, j->deployment) ||
                          stored(p, e->db_deps, j->deployment)))
        return false;   /* its deployment goes first */
    /* Never held, or its hold closed; a hold that cannot be read keeps it.
     * Billed by time: its last interval's hold (the only one left open,
     * billing.c B1), not interval 1's. */
    rz_ledger_transfer t;
    int lrc = rz_ledger_transfer_get(e->ledger, rz__bill_hold_id(j->id, j->iv), &t);
    return lrc == RZ_ENOENT || (lrc == RZ_OK && t.state != RZ_LEDGER_OPEN);
}

/* May job `j` go on its own? A replica set's runs go with its head
 * (ret_set), so no run ever names a head that is gone; a run is taken
 * alone only when its head is gone already (a store compacted before
 * sets went whole). */
static bool job_may_go(ret_pass *p, const rz__ejob *j)
{
    rz_engine *e = p->e;
    if (j->rep_head && j->rep_head != j->id &&
        (rz__engine_job(e, j->rep_head) || stored(p, e->db_jobs, j->rep_head)))
        return false;
    return job_settled(p, j);
}

/* Job `id`'s record parsed into *j (cleared by the caller). */
static int read_job(ret_pass *p, uint64_t id, rz__ejob *j)
{
    const char *json;
    size_t len;
    memset(j, 0, sizeof *j);
    int rc = get_record(p->txn, p->e->db_jobs, id, &json, &len);
    if (rc != RZ_OK)
        return rc;
    cJSON *rec;
    rc = record_parse(json, len, &rec, "job", id);
    if (rc == RZ_OK)
        rc = parse_job(j, id, rec);
    cJSON_Delete(rec);
    return rc;
}

static int ret_one(ret_pass *p, const rz__ejob *j)
{
    int rc = del_record(p, p->e->db_jobs, j->id, j->client, 'j');
    if (rc != RZ_OK)
        return rc;
    if ((unsigned)j->state <= RZ_JOB_CANCELLED)
        p->ret.jobs[j->state]++;
    p->ret.volume += rz__engine_charged(j);
    if (p->ret.max_job < j->id)
        p->ret.max_job = j->id;
    if (p->budget)
        p->budget--;
    return RZ_OK;
}

/* A replica set's head `h` (may go) and its runs, all in this pass or
 * none: *gone, and the runs' ids appended to p->runs. */
static int ret_set(ret_pass *p, const rz__ejob *h, bool *gone)
{
    *gone = false;
    uint32_t n = h->replicas > 1 ? h->replicas - 1 : 0;
    if (n + 1 > p->budget)
        return RZ_OK;   /* next pass, with its whole budget */
    rz__ejob runs[RZ_ENGINE_REPLICAS_MAX];
    uint32_t k = 0;
    int rc = RZ_OK;
    bool all = n <= RZ_ENGINE_REPLICAS_MAX;
    for (uint32_t r = 0; all && rc == RZ_OK && r < n; r++) {
        uint64_t id = h->rep_first + r;
        if (rz__engine_job(p->e, id)) {
            all = false;
            break;
        }
        if (!stored(p, p->e->db_jobs, id))
            continue;   /* gone before */
        rc = read_job(p, id, &runs[k]);
        all = rc == RZ_OK && job_settled(p, &runs[k]);
        k++;
    }
    if (rc == RZ_OK && all &&
        !rz__engine_grow((void **)&p->runs, &p->cap_runs, p->n_runs + k,
                         sizeof *p->runs))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    for (uint32_t r = 0; rc == RZ_OK && all && r < k; r++) {
        rc = ret_one(p, &runs[r]);
        if (rc == RZ_OK)
            p->runs[p->n_runs++] = runs[r].id;
    }
    for (uint32_t r = 0; r < k; r++)
        rz__engine_job_clear(p->e, &runs[r]);
    *gone = rc == RZ_OK && all;
    return rc;
}

static int ret_jobs(ret_pass *p, size_t look)
{
    rz_engine *e = p->e;
    p->young = false;
    int rc = ret_ids(p, e->db_jobs, e->ret_job_next, look);
    uint64_t next = 0, after = id_after(p);
    for (size_t i = 0; rc == RZ_OK && i < p->n_ids && p->budget; i++) {
        uint64_t id = p->ids[i];
        next = id + 1;
        if (rz__engine_job(e, id) || !stored(p, e->db_jobs, id))
            continue;   /* in memory, or a run gone with its head */
        rz__ejob j;
        rc = read_job(p, id, &j);
        bool go = false;
        if (rc == RZ_OK && j.submitted_ms >= p->before) {
            p->young = true;
            next = 0;
        } else if (rc == RZ_OK && job_may_go(p, &j)) {
            go = true;
            if (j.rep_head == id && j.replicas > 1)
                rc = ret_set(p, &j, &go);
        }
        if (rc == RZ_OK && go && (rc = ret_one(p, &j)) == RZ_OK)
            p->ids[p->n_removed++] = id;
        rz__engine_job_clear(e, &j);
        if (p->young)
            break;
    }
    if (rc == RZ_OK)
        e->ret_job_next = p->young || (p->end && next == after) ? 0 : next;
    /* The runs that went with their heads join the list, in order. */
    if (rc == RZ_OK && p->n_runs) {
        if (!rz__engine_grow((void **)&p->ids, &p->cap_ids, p->n_removed + p->n_runs,
                             sizeof *p->ids))
            return rz__error(RZ_ENOMEM, "out of memory");
        memcpy(p->ids + p->n_removed, p->runs, p->n_runs * sizeof *p->ids);
        p->n_removed += p->n_runs;
        qsort(p->ids, p->n_removed, sizeof *p->ids, cmp_u64);
    }
    return rc;
}

/* What a pass removed, and all passes have. */
static void ret_said(const rz_engine *e, const ret_pass *p, size_t n_jobs,
                     size_t n_deps, rz_engine_compacted *out)
{
    out->jobs = n_jobs;
    out->deployments = n_deps;
    out->events = p->events;
    /* Stopped at its budget, or before either walk reached its end. */
    out->more = !p->budget || e->ret_job_next || e->ret_dep_next;
    out->total_jobs = 0;
    for (int s = 0; s <= RZ_JOB_CANCELLED; s++)
        out->total_jobs += e->ret.jobs[s];
    out->total_deployments = e->ret.deps;
    out->total_events = e->ret.events;
}

int rz_engine_compact(rz_engine *e, uint64_t now_ms, uint64_t older_than_ms,
                      size_t budget, rz_engine_compact_fn fn, void *userdata,
                      rz_engine_compacted *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!e || !budget)
        return rz__error(RZ_EINVAL, e ? "a compaction needs a budget" : "no engine");
    if (e->in_group)
        return rz__error(RZ_ESTATE, "a group is open: commit it first");
    int rc = rz__engine_begin(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    if (budget > RET_BUDGET_MAX)
        budget = RET_BUDGET_MAX;
    ret_pass p = { .e = e, .before = now_ms > older_than_ms ? now_ms - older_than_ms : 0,
                   .budget = budget, .ret = e->ret };
    if (!p.before)
        return RZ_OK;
    int mrc = mdb_txn_begin(e->env, NULL, 0, &p.txn);
    if (mrc)
        return db_error(mrc, "begin");
    size_t look = budget * 4 + 16;   /* records read at most, per table */
    rc = ret_deps(&p, look);
    size_t n_deps = p.n_removed;
    uint64_t *deps = NULL;
    if (rc == RZ_OK && n_deps && !(deps = malloc(n_deps * sizeof *deps)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (deps)
        memcpy(deps, p.ids, n_deps * sizeof *deps);
    p.n_removed = 0;
    if (rc == RZ_OK)
        rc = ret_jobs(&p, look);
    size_t n_jobs = p.n_removed;
    p.ret.events += p.events;
    bool any = n_jobs || n_deps || p.events;
    unsigned char k[1] = { 'v' };
    if (rc == RZ_OK && any)
        rc = put(p.txn, e->db_ret, k, 1, ret_record(&p.ret));
    /* The caller's records of them go first: a crash after leaves records
     * that the next pass removes again, never a caller's record of a job
     * that is gone. */
    if (rc == RZ_OK && any && fn && fn(userdata, p.ids, n_jobs, deps, n_deps) != 0)
        rc = rz__error(RZ_EIO, "compaction: the caller's records could not be "
                       "removed: %s", rz_error_last()->message);
    /* A caller's extra deletes waiting for a commit go in this one: its
     * copies of the jobs removed must not outlive them (extra.c). */
    bool extra = e->n_extra > 0;
    if (rc == RZ_OK && extra)
        rc = rz__engine_extra_write(e, p.txn);
    if (rc == RZ_OK && (any || extra)) {
        mrc = mdb_txn_commit(p.txn);
        rc = mrc ? db_error(mrc, "commit") : RZ_OK;
    } else
        mdb_txn_abort(p.txn);
    if (rc == RZ_OK && extra)
        rz__engine_extra_clear(e);
    if (rc == RZ_OK && any) {
        e->ret = p.ret;
        /* Read-back copies of what went, dropped in place: a cache lost
         * to a failed allocation would make kept work read as missing. */
        rz__engine_cache_clear(e);
    }
    if (rc != RZ_OK)   /* the walk starts over */
        e->ret_job_next = e->ret_dep_next = 0;
    if (out && rc == RZ_OK)
        ret_said(e, &p, n_jobs, n_deps, out);
    free(deps);
    free(p.ids);
    free(p.live_deps);
    free(p.runs);
    return rc;
}

int rz_engine_compacted_id(const rz_engine *e, int deployment, uint64_t id)
{
    if (!e || !id || id > (deployment ? e->ret.max_dep : e->ret.max_job))
        return false;
    if (deployment ? rz__engine_dep(e, id) != NULL : rz__engine_job(e, id) != NULL)
        return false;
    rz__ejob j;
    rz__edep d;
    memset(&j, 0, sizeof j);
    memset(&d, 0, sizeof d);
    int rc = deployment ? rz__engine_store_dep(e, id, &d)
                        : rz__engine_store_job(e, id, &j);
    if (deployment)
        rz__engine_dep_free(&d);
    else
        rz__engine_job_clear((rz_engine *)e, &j);
    return rc == RZ_ENOENT;
}

int rz__engine_store_each_removed(rz_engine *e, int (*fn)(rz_engine *, uint64_t))
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return db_error(mrc, "begin");
    int rc = RZ_OK;
    unsigned char k[12];
    for (uint64_t id = 1; rc == RZ_OK && id <= e->ret.max_job; id++) {
        key_u64(k, id);
        MDB_val key = { 8, k }, val;
        mrc = mdb_get(txn, e->db_jobs, &key, &val);
        if (mrc == MDB_NOTFOUND && !rz__engine_job(e, id))
            rc = fn(e, id);
        else if (mrc && mrc != MDB_NOTFOUND)
            rc = db_error(mrc, "read");
    }
    mdb_txn_abort(txn);
    return rc;
}
