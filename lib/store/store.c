/* Run records in LMDB: one named database "runs", key = run id, value = the
 * record as JSON. A second database "runs_by_time" orders ids by start time
 * so listings come newest first without a scan-and-sort. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "common/fs.h"
#include "common/internal.h"
#include "rhizos/store.h"
#include "run/changes.h"
#include "store/blob.h"
#include "store/run_lock.h"
#include "store/store_impl.h"

/* Runs are small; 1 GiB of address space is plenty and costs nothing until
 * used (LMDB maps the file sparsely). */
#define STORE_MAP_SIZE (1024ull * 1024 * 1024)

struct rz_store {
    MDB_env *env;
    MDB_dbi runs;
    MDB_dbi by_time;
    char *blobs;                 /* DIR/blobs, the file outputs' store */
    char *dir;                   /* DIR: its runs' locks are in DIR/running */
    rz__run_locks *locks;        /* of the runs it records as going */
};

static int db_error(int rc, const char *what)
{
    return rz__error(rc == MDB_MAP_FULL ? RZ_ETOOBIG : RZ_EDB, "%s: %s", what,
                     mdb_strerror(rc));
}

int rz_store_open(rz_store **out, const char *dir)
{
    *out = NULL;
    if (!dir || !*dir)
        return rz__error(RZ_EINVAL, "no data directory given");
    int rc = rz__mkdirs(dir);
    if (rc == RZ_OK)
        rc = rz__lmdb_check_file(dir);
    if (rc != RZ_OK)
        return rc;
    rz_store *st = rz__calloc(1, sizeof *st);
    if (!st)
        return rz__error(RZ_ENOMEM, "out of memory");
    static const char *const names[] = {"runs", "runs_by_time"};
    MDB_dbi dbis[RZ_ARRAY_LEN(names)];
    int mrc = rz__lmdb_open(&st->env, dir, STORE_MAP_SIZE, 0, names, dbis,
                            RZ_ARRAY_LEN(names));
    if (mrc != 0) {
        rc = db_error(mrc, dir);
        rz_store_close(st);
        return rc;
    }
    st->runs = dbis[0];
    st->by_time = dbis[1];
    if (!(st->blobs = rz__asprintf("%s/blobs", dir)) || !(st->dir = strdup(dir)) ||
        !(st->locks = rz__run_locks_new(dir))) {
        rz_store_close(st);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    *out = st;
    return RZ_OK;
}

int rz_store_check_file(const char *dir)
{
    if (!dir || !*dir)
        return rz__error(RZ_EINVAL, "no directory given");
    return rz__lmdb_check_file(dir);
}

void rz_store_close(rz_store *st)
{
    if (!st)
        return;
    rz__run_locks_free(st->locks);
    if (st->env)
        mdb_env_close(st->env);
    free(st->blobs);
    free(st->dir);
    free(st);
}

/* Big-endian start time then the id: byte order is time order. */
static size_t time_key(char *buf, size_t cap, uint64_t t, const char *id)
{
    size_t n = strlen(id);
    if (n > cap - 8)
        n = cap - 8;
    for (int i = 0; i < 8; i++)
        buf[i] = (char)(t >> (56 - 8 * i));
    memcpy(buf + 8, id, n);
    return 8 + n;
}

/* What `rhizos flow runs RUN_ID` shows beyond the run's JSON: each task
 * that started (a step, or a for_each element) gets its wall-clock start and
 * end (from the run's own clock, offset by the run's start) and the inputs
 * it was given. */
static void add_task_details(const rz_run *run, size_t task, cJSON *sj,
                             uint64_t started)
{
    uint64_t t0, t1;
    if (!sj || rz_run_step_times(run, task, &t0, &t1) != RZ_OK)
        return;
    cJSON_AddNumberToObject(sj, "started_ms", (double)(started + t0));
    if (t1)
        cJSON_AddNumberToObject(sj, "finished_ms", (double)(started + t1));
    char *in = NULL;
    if (rz_run_step_inputs(run, task, &in) != RZ_OK)
        return;   /* cannot be built (the error says), or a for_each step's */
    cJSON *v = cJSON_Parse(in);
    rz_free(in);
    if (v && !cJSON_AddItemToObject(sj, "inputs", v))
        cJSON_Delete(v);
}

/* ---- a record written in parts ----
 *
 * The record is the run's JSON (rz_run_to_json) with each task's details
 * and the run's times added, printed as one JSON text. At 100,000 steps it
 * is ~100 MB, so it is never held whole, as a string or as a tree: it is
 * written one step at a time, twice — once to count its bytes, once into
 * the space LMDB reserves for it (or a string of that size). The text is
 * the one printing the whole tree gave: cJSON prints a member the same
 * inside a document as alone, and numbers are exact either way. The run
 * must not change between the two passes. */

typedef struct rec_out {
    char *p;            /* NULL: count only */
    size_t len, cap;    /* bytes so far; room at p */
    bool bad;           /* out of memory, or past cap */
} rec_out;

static void out_add(rec_out *o, const char *s, size_t n)
{
    if (o->bad)
        return;
    if (o->p) {
        if (n > o->cap - o->len) {
            o->bad = true;
            return;
        }
        memcpy(o->p + o->len, s, n);
    }
    o->len += n;
}

/* v printed with exact numbers (as rz__json_print, without its copy); v is
 * the caller's and changed. */
static void out_value(rec_out *o, cJSON *v)
{
    char *t = v && rz__json_raw_numbers(v) ? cJSON_PrintUnformatted(v) : NULL;
    if (!t)
        o->bad = true;
    else
        out_add(o, t, strlen(t));
    free(t);
}

static void out_json(rec_out *o, cJSON *v)   /* v consumed */
{
    out_value(o, v);
    cJSON_Delete(v);
}

static void out_key(rec_out *o, const char *key)
{
    out_json(o, cJSON_CreateString(key));
    out_add(o, ":", 1);
}

/* The first task of each step's for_each elements (a step's elements are
 * consecutive tasks), RZ_NPOS for none; NULL when the run has none. */
static size_t *element_index(const rz_run *run, bool *bad)
{
    size_t n = rz_flow_step_count(rz_run_flow(run)), nt = rz_run_task_count(run);
    if (nt <= n)
        return NULL;
    size_t *first = malloc(n * sizeof *first);
    if (!first) {
        *bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        first[i] = RZ_NPOS;
    for (size_t t = nt; t-- > n;) {
        size_t i = rz_run_task_step(run, t, NULL);
        if (i < n)
            first[i] = t;
    }
    return first;
}

/* Step i's object as the record has it: the run's, with the details of
 * its task and of its elements' tasks. */
static cJSON *step_record(const rz_run *run, size_t i, const size_t *el_first,
                          uint64_t started)
{
    cJSON *sj = rz__run_step_json(run, i);
    add_task_details(run, i, sj, started);
    size_t t = sj && el_first ? el_first[i] : RZ_NPOS;
    if (t == RZ_NPOS)
        return sj;
    cJSON *els = cJSON_GetObjectItemCaseSensitive(sj, "elements");
    cJSON *x = els ? els->child : NULL;
    for (size_t k = 0, nt = rz_run_task_count(run); t < nt; t++, k++) {
        size_t el = 0;
        if (rz_run_task_step(run, t, &el) != i)
            break;
        add_task_details(run, t, el == k ? x : cJSON_GetArrayItem(els, (int)el),
                         started);
        x = x ? x->next : NULL;
    }
    return sj;
}

/* The record, its steps one at a time; `extra` (",..." members, or NULL)
 * goes before its end. */
static void record_write(const rz_run *run, uint64_t started, uint64_t finished,
                         const char *extra, const size_t *el_first, rec_out *o)
{
    const rz_flow *flow = rz_run_flow(run);
    cJSON *head = rz__run_json_summary(run);
    const char *file = rz_flow_file(flow);
    bool ok = head && (!file || cJSON_AddStringToObject(head, "file", file)) &&
              cJSON_AddNumberToObject(head, "started_ms", (double)started) &&
              cJSON_AddNumberToObject(head, "finished_ms", (double)finished) &&
              cJSON_GetObjectItemCaseSensitive(head, "outputs");
    if (!ok)
        o->bad = true;
    out_add(o, "{", 1);
    for (cJSON *c = ok ? head->child : NULL; c && !o->bad; c = c->next) {
        if (c != head->child)
            out_add(o, ",", 1);
        if (strcmp(c->string, "outputs") == 0) {   /* the steps go before */
            out_add(o, "\"steps\":{", 9);
            for (size_t i = 0, n = rz_flow_step_count(flow); i < n && !o->bad; i++) {
                if (i)
                    out_add(o, ",", 1);
                out_key(o, rz_flow_step_id(flow, i));
                out_json(o, step_record(run, i, el_first, started));
            }
            out_add(o, "},", 2);
        }
        out_key(o, c->string);
        out_value(o, c);
    }
    cJSON_Delete(head);
    if (extra)
        out_add(o, extra, strlen(extra));
    out_add(o, "}", 1);
}

/* A record to write: a text built already, or the run's, written in parts. */
typedef struct rec_src {
    const char *text;
    const rz_run *run;
    uint64_t started, finished;
    const char *extra;
    size_t *el_first;
} rec_src;

static bool src_write(const rec_src *s, rec_out *o)
{
    if (s->text)
        out_add(o, s->text, strlen(s->text));
    else
        record_write(s->run, s->started, s->finished, s->extra, s->el_first, o);
    return !o->bad;
}

/* Both passes; *len the record's size. */
static char *src_string(const rec_src *s)
{
    rec_out o = { NULL, 0, 0, false };
    if (!src_write(s, &o))
        return NULL;
    rec_out w = { malloc(o.len + 1), 0, o.len, false };
    if (!w.p || !src_write(s, &w) || w.len != o.len) {
        free(w.p);
        return NULL;
    }
    w.p[w.len] = '\0';
    return w.p;
}

static uint64_t record_started(const char *json, size_t len)
{
    cJSON *rec = cJSON_ParseWithLength(json, len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "started_ms");
    uint64_t v = cJSON_IsNumber(t) ? (uint64_t)t->valuedouble : 0;
    cJSON_Delete(rec);
    return v;
}

char *rz__store_record(const rz_run *run, uint64_t started_ms,
                       uint64_t finished_ms, const char *extra)
{
    rec_src s = { NULL, run, started_ms, finished_ms, extra, NULL };
    bool bad = false;
    s.el_first = element_index(run, &bad);
    char *rec = bad ? NULL : src_string(&s);
    free(s.el_first);
    return rec;
}

/* Whether a record is of a run still going: its first "status" is the
 * run's (id, flow and status lead; a string's quotes are escaped). */
static bool text_running(const char *text, size_t len)
{
    static const char key[] = "\"status\":\"";
    const char *p = memmem(text, len, key, sizeof key - 1);
    size_t off = p ? (size_t)(p - text) + sizeof key - 1 : 0;
    return p && len - off >= 8 && memcmp(text + off, "running\"", 8) == 0;
}

/* One durable commit of the record and its index entry. */
static int commit_record(rz_store *st, const char *id, uint64_t started_ms,
                         const rec_src *src)
{
    rec_out count = { NULL, 0, 0, false };
    if (!src_write(src, &count))
        return rz__error(RZ_ENOMEM, "out of memory");
    MDB_txn *txn;
    int mrc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (mrc != 0)
        return db_error(mrc, "begin");
    MDB_val key = { strlen(id), (void *)id }, old, none;
    char tk[300];
    MDB_val k2 = { time_key(tk, sizeof tk, started_ms, id), tk };
    /* A replaced record may have a different start time: drop its index.
     * (Its own start is read only when the index does not have this one:
     * the runner's records of a run all have the same.) */
    if (mdb_get(txn, st->by_time, &k2, &none) != 0 &&
        mdb_get(txn, st->runs, &key, &old) == 0) {
        char ok[300];
        MDB_val k3 = { time_key(ok, sizeof ok,
                                record_started(old.mv_data, old.mv_size), id), ok };
        mdb_del(txn, st->by_time, &k3, NULL);
    }
    /* Written in place: LMDB's copy is the only one of a record built in
     * parts. */
    MDB_val val = { count.len, NULL };
    mrc = mdb_put(txn, st->runs, &key, &val, MDB_RESERVE);
    bool written = false;
    if (mrc == 0) {
        rec_out w = { val.mv_data, 0, count.len, false };
        written = src_write(src, &w) && w.len == count.len;
    }
    if (mrc == 0 && written) {
        MDB_val v2 = { strlen(id), (void *)id };
        mrc = mdb_put(txn, st->by_time, &k2, &v2, 0);
    }
    if (mrc != 0 || !written) {
        mdb_txn_abort(txn);
        return mrc ? db_error(mrc, "write run")
                   : rz__error(RZ_ENOMEM, "out of memory");
    }
    mrc = mdb_txn_commit(txn);
    return mrc == 0 ? RZ_OK : db_error(mrc, "commit");
}

/* A record that says its run is going is committed with the run's lock
 * held (run_lock.h), which goes once a record says the run ended: the
 * sweep's mark and the prune tell a run killed from one going. */
static int put_record(rz_store *st, const char *id, uint64_t started_ms,
                      const rec_src *src)
{
    if (!st || !id || !*id || strlen(id) > 256)
        return rz__error(RZ_EINVAL, "run id must be 1..256 bytes");
    bool going = src->text ? text_running(src->text, strlen(src->text))
                           : rz_run_state_get(src->run) == RZ_RUN_RUNNING;
    int rc = going ? rz__run_lock_take(st->locks, id) : RZ_OK;
    if (rc == RZ_OK)
        rc = commit_record(st, id, started_ms, src);
    if (rc == RZ_OK && !going)
        rz__run_lock_drop(st->locks, id);
    return rc;
}

int rz__store_put_run(rz_store *st, const rz_run *run, uint64_t started_ms,
                      uint64_t finished_ms, const char *extra)
{
    const char *id = run ? rz_run_id(run) : NULL;
    rec_src s = { NULL, run, started_ms, finished_ms, extra, NULL };
    bool bad = false;
    if (run)
        s.el_first = element_index(run, &bad);
    int rc = bad ? rz__error(RZ_ENOMEM, "out of memory")
                 : put_record(st, id, started_ms, &s);
    free(s.el_first);
    return rc;
}

int rz_store_run_put(rz_store *st, const rz_run *run, uint64_t started_ms,
                     uint64_t finished_ms)
{
    return rz__store_put_run(st, run, started_ms, finished_ms, NULL);
}

int rz__store_put_record(rz_store *st, const char *id, uint64_t started_ms,
                         char *rec)
{
    rec_src s = { rec, NULL, 0, 0, NULL, NULL };
    int rc = rec ? put_record(st, id, started_ms, &s)
                 : rz__error(RZ_ENOMEM, "out of memory");
    free(rec);
    return rc;
}

static bool run_killed(const rz_store *st, const MDB_val *id, const MDB_val *seen);

/* A record's summary for the list; a run recorded as going whose process
 * is gone (killed, run_killed) says so, "process_gone". */
static cJSON *summary_of(const rz_store *st, const MDB_val *id, const MDB_val *v)
{
    cJSON *rec = cJSON_ParseWithLength(v->mv_data, v->mv_size);
    if (!rec)
        return NULL;
    cJSON *s = cJSON_CreateObject();
    static const char *keep[] = { "id", "flow", "file", "status", "started_ms",
                                  "finished_ms", "cost_micros" };
    for (size_t i = 0; s && i < RZ_ARRAY_LEN(keep); i++) {
        cJSON *x = cJSON_GetObjectItemCaseSensitive(rec, keep[i]);
        if (x)
            cJSON_AddItemToObject(s, keep[i], cJSON_Duplicate(x, 1));
    }
    cJSON_AddNumberToObject(s, "steps",
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "steps")));
    if (s && run_killed(st, id, v))
        cJSON_AddTrueToObject(s, "process_gone");
    cJSON_Delete(rec);
    return s;
}

int rz_store_run_list(const rz_store *st, char **out)
{
    return rz_store_run_list_newest(st, 0, out, NULL);
}

int rz_store_run_list_newest(const rz_store *st, size_t limit, char **out,
                             size_t *total)
{
    *out = NULL;
    if (total)
        *total = 0;
    if (!st)
        return rz__error(RZ_EINVAL, "no store");
    MDB_txn *txn;
    MDB_cursor *cur;
    int mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0)
        return db_error(mrc, "begin");
    mrc = mdb_cursor_open(txn, st->by_time, &cur);
    if (mrc != 0) {
        mdb_txn_abort(txn);
        return db_error(mrc, "cursor");
    }
    MDB_stat ms;
    if (total && mdb_stat(txn, st->by_time, &ms) == 0)
        *total = ms.ms_entries;
    cJSON *arr = cJSON_CreateArray();
    MDB_val k, v, rec;
    size_t n = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
         mrc == 0 && arr && (!limit || n < limit);
         mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (mdb_get(txn, st->runs, &v, &rec) != 0)
            continue;
        cJSON *s = summary_of(st, &v, &rec);
        if (s && cJSON_AddItemToArray(arr, s))
            n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    *out = arr ? rz__json_print(arr, false) : NULL;
    cJSON_Delete(arr);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_store_run_id_make(char *out, size_t cap)
{
    if (!out || cap < RZ_STORE_RUN_ID_LEN + 1)
        return rz__error(RZ_EINVAL, "a run id needs %d bytes", RZ_STORE_RUN_ID_LEN + 1);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned short r = 0;
    /* Without randomness (a very early boot), the clock still varies it. */
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (unsigned short)((unsigned)now ^ (unsigned)clock());
    snprintf(out, cap, "run-%04d%02d%02d-%02d%02d%02d-%04x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)r);
    return RZ_OK;
}

/* A killed run's record with "process_gone": true added as its last
 * member (malloc'ed), or NULL when out of memory. */
static char *told_gone(const MDB_val *rec)
{
    static const char member[] = ",\"process_gone\":true}";
    const char *t = rec->mv_data;
    size_t end = rec->mv_size;
    while (end && t[end - 1] != '}')
        end--;
    if (!end)   /* not an object: as it is */
        return rz__strndup(t, rec->mv_size);
    bool empty = end >= 2 && t[end - 2] == '{';
    char *s = rz__malloc(end - 1 + sizeof member);
    if (s) {
        memcpy(s, t, end - 1);
        memcpy(s + end - 1, member + empty, sizeof member - empty);
    }
    return s;
}

int rz_store_run_get(const rz_store *st, const char *id, char **out)
{
    *out = NULL;
    MDB_txn *txn;
    int mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0)
        return db_error(mrc, "begin");
    MDB_val key = { strlen(id), (void *)id }, val;
    mrc = mdb_get(txn, st->runs, &key, &val);
    int rc = RZ_OK;
    if (mrc == MDB_NOTFOUND)
        rc = rz__error(RZ_ENOENT, "no run with id '%s'", id);
    else if (mrc != 0)
        rc = db_error(mrc, "read run");
    else if (!(*out = run_killed(st, &key, &val) ? told_gone(&val)
                                                  : rz__strndup(val.mv_data, val.mv_size)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    mdb_txn_abort(txn);
    return rc;
}

/* Whether run `id` (a key of "runs"), recorded as going, has no process
 * left: no one holds its lock (run_lock.h). */
static bool run_gone(const rz_store *st, const MDB_val *id)
{
    char *s = rz__strndup(id->mv_data, id->mv_size);
    bool gone = s && !rz__run_lock_held(st->dir, s);
    free(s);
    return gone;
}

/* Whether run `id`, whose record `seen` (read in a transaction still
 * open) says "running", was killed: no one holds its lock, and a read
 * begun after that finds the record as it was. A run that ends writes its
 * last record before it lets its lock go, and one going holds it; so a
 * record that stayed the same across a moment no one held the lock is a
 * killed run's. The list, a single run and so every reader share this. */
static bool run_killed(const rz_store *st, const MDB_val *id, const MDB_val *seen)
{
    if (!text_running(seen->mv_data, seen->mv_size) || !run_gone(st, id))
        return false;
    MDB_txn *txn;   /* a second reader: the store's env is MDB_NOTLS */
    if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0)
        return false;
    MDB_val key = *id, now;
    bool same = mdb_get(txn, st->runs, &key, &now) == 0 &&
                now.mv_size == seen->mv_size &&
                memcmp(now.mv_data, seen->mv_data, now.mv_size) == 0;
    mdb_txn_abort(txn);
    return same;
}

int rz_store_run_process_gone(const rz_store *st, const char *id)
{
    return st && id && !rz__run_lock_held(st->dir, id);
}

/* When a record ended (its start if it never did, or if its process is
 * gone while it says "running"); UINT64_MAX: running. */
static uint64_t record_ended(const rz_store *st, const MDB_val *id, const MDB_val *v)
{
    cJSON *rec = cJSON_ParseWithLength(v->mv_data, v->mv_size);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "finished_ms");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(rec, "started_ms");
    const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "status"));
    /* Read in the prune's write transaction: no record is committed
     * meanwhile, and a run holds its lock from before its first record
     * until after its last. */
    uint64_t t = state && strcmp(state, "running") == 0 && !run_gone(st, id) ? UINT64_MAX
               : cJSON_IsNumber(f) && f->valuedouble > 0 ? (uint64_t)f->valuedouble
               : cJSON_IsNumber(s) ? (uint64_t)s->valuedouble : 0;
    cJSON_Delete(rec);
    return t;
}

/* The lock files killed runs left (run_lock.h), of the time index's keys
 * of runs whose records are gone. */
static void locks_clear(const rz_store *st, char (*keys)[300], const size_t *klen, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *id = rz__strndup(keys[i] + 8, klen[i] - 8);
        if (id)
            rz__run_lock_clear(st->dir, id);
        free(id);
    }
}

/* The time index is in start order: the walk stops at the first run that
 * started after the cutoff (it cannot have ended before it). Keys are
 * listed, then removed (a delete moves the cursor's page under it). */
int rz_store_run_prune(rz_store *st, uint64_t before_ms, size_t budget,
                       size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!st || !budget || !removed)
        return rz__error(RZ_EINVAL, "no store, budget or count");
    if (budget > 4096)
        budget = 4096;   /* the keys are listed in memory first */
    MDB_txn *txn;
    MDB_cursor *cur;
    int mrc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (mrc != 0)
        return db_error(mrc, "begin");
    if ((mrc = mdb_cursor_open(txn, st->by_time, &cur)) != 0) {
        mdb_txn_abort(txn);
        return db_error(mrc, "cursor");
    }
    char (*keys)[300] = malloc(budget * sizeof *keys);
    size_t *klen = malloc(budget * sizeof *klen), n = 0;
    int rc = keys && klen ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    MDB_val k, v, rec;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == RZ_OK && mrc == 0 && n < budget && k.mv_size >= 8 && k.mv_size <= 300;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t started = 0;
        for (int i = 0; i < 8; i++)
            started = started << 8 | ((const unsigned char *)k.mv_data)[i];
        if (started >= before_ms)
            break;
        if (mdb_get(txn, st->runs, &v, &rec) == 0 && record_ended(st, &v, &rec) >= before_ms)
            continue;
        memcpy(keys[n], k.mv_data, k.mv_size);
        klen[n++] = k.mv_size;
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        MDB_val tk = { klen[i], keys[i] }, id = { klen[i] - 8, keys[i] + 8 };
        mrc = mdb_del(txn, st->runs, &id, NULL);
        if (mrc == 0 || mrc == MDB_NOTFOUND)
            mrc = mdb_del(txn, st->by_time, &tk, NULL);
        if (mrc != 0)
            rc = db_error(mrc, "remove run");
    }
    if (rc != RZ_OK)
        mdb_txn_abort(txn);
    else if ((mrc = mdb_txn_commit(txn)) != 0)
        rc = db_error(mrc, "commit");
    if (rc == RZ_OK)
        locks_clear(st, keys, klen, n);
    free(keys);
    free(klen);
    if (rc == RZ_OK)
        *removed = n;
    return rc;
}

/* ---- the blobs' retention (mark and sweep) ---- */

/* text_running of a stored record. */
static bool record_running(const MDB_val *v)
{
    return text_running(v->mv_data, v->mv_size);
}

/* Ids of runs recorded as going. */
typedef struct ids {
    char **v;
    size_t n;
} ids;

static bool ids_has(const ids *l, const MDB_val *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == id->mv_size && memcmp(l->v[i], id->mv_data, id->mv_size) == 0)
            return true;
    return false;
}

static void ids_free(ids *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* The runs recorded as going whose process is gone (killed), told before
 * the mark's snapshot: one that ends between the two is "running" here,
 * ended there, and found gone here only if it let its lock go, after its
 * final record. So a run gone here and still "running" there is killed. */
static int runs_gone(rz_store *st, ids *gone)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0 && (mrc = mdb_cursor_open(txn, st->runs, &cur)) != 0)
        mdb_txn_abort(txn);
    if (mrc != 0)
        return db_error(mrc, "read runs");
    int rc = RZ_OK;
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == RZ_OK && mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (!record_running(&v) || !run_gone(st, &k))
            continue;
        char **p = realloc(gone->v, (gone->n + 1) * sizeof *p);
        if (p)
            gone->v = p;
        if (!p || !(p[gone->n] = rz__strndup(k.mv_data, k.mv_size)))
            rc = rz__error(RZ_ENOMEM, "out of memory");
        else
            gone->n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* When the oldest run still going started (UINT64_MAX: none); those of
 * `gone` are not going. */
static uint64_t oldest_going(rz_store *st, MDB_txn *txn, const ids *gone)
{
    MDB_cursor *cur;
    MDB_val k, v, rec;
    uint64_t oldest = UINT64_MAX;
    if (mdb_cursor_open(txn, st->by_time, &cur) != 0)
        return 0;   /* cannot tell: every blob as new as the oldest run stays */
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && k.mv_size >= 8;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t started = 0;
        for (int i = 0; i < 8; i++)
            started = started << 8 | ((const unsigned char *)k.mv_data)[i];
        if (mdb_get(txn, st->runs, &v, &rec) == 0 && record_running(&rec) &&
            !ids_has(gone, &v)) {
            oldest = started;   /* in start order: the first */
            break;
        }
    }
    mdb_cursor_close(cur);
    return oldest;
}

/* Every digest any record names (its steps' outputs, its step cache), and
 * when the oldest run still going started (UINT64_MAX: none). */
static int mark(rz_store *st, rz__blob_set *keep, uint64_t *oldest_running)
{
    *oldest_running = UINT64_MAX;
    ids gone = { NULL, 0 };
    int rc = runs_gone(st, &gone);
    MDB_txn *txn;
    MDB_cursor *cur;
    int mrc = rc == RZ_OK ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) : 0;
    if (mrc != 0)
        rc = db_error(mrc, "begin");
    if (rc != RZ_OK) {
        ids_free(&gone);
        return rc;
    }
    MDB_val k, v;
    if ((mrc = mdb_cursor_open(txn, st->runs, &cur)) == 0) {
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == RZ_OK && mrc == 0;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            rc = rz__blob_set_scan(keep, v.mv_data, v.mv_size);
        mdb_cursor_close(cur);
    }
    if (rc == RZ_OK && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = db_error(mrc, "read runs");
    if (rc == RZ_OK)
        *oldest_running = oldest_going(st, txn, &gone);
    mdb_txn_abort(txn);
    ids_free(&gone);
    rz__blob_set_seal(keep);
    return rc;
}

int rz_store_blobs_sweep(rz_store *st, uint64_t before_ms, size_t *removed,
                         uint64_t *bytes)
{
    if (removed)
        *removed = 0;
    if (bytes)
        *bytes = 0;
    if (!st || !removed || !bytes)
        return rz__error(RZ_EINVAL, "no store or counts");
    rz__blob_set keep = { 0 };
    uint64_t running = UINT64_MAX;
    int rc = mark(st, &keep, &running);
    /* What a run still going made is in no record yet: kept (and a second
     * for clocks). A run killed is not going (runs_gone). */
    uint64_t cutoff = running < before_ms ? running : before_ms;
    cutoff = cutoff > 1000 ? cutoff - 1000 : 0;
    if (rc == RZ_OK)
        rc = rz__blob_sweep(st->blobs, &keep, cutoff, removed, bytes);
    rz__blob_set_free(&keep);
    return rc;
}
