/* Named flows: versions, and the triggers of each one's active version
 * (docs/triggers.md). State lives in DATA/flows (LMDB), JSON by key:
 *
 *   c/flows                last flow id given
 *   n/<owner>/<name>       the flow id of an owner's named flow
 *   f/<id>                 {"id","owner","name","active","latest","versions":[...],
 *                           "triggers":{<name>: fire state}}
 *   v/<id>/<version>       {"text","inputs","creds","hooks"}: what a fire deploys
 *   d/<deployment>         {"flow","version","trigger","fire"}: a run's version
 *   h/<id>/<hook>/<delivery>  {"t","dep","ms"}: webhook deliveries seen
 *
 * Crash safety: a fire deploys in the engine's open group (durable at the
 * pass's flush) and writes its record here at once, listing the deployment
 * as unconfirmed. At the next start each unconfirmed deployment is looked
 * up in the engine: one the crash lost rolls its trigger back to before it,
 * so the catch-up rule decides again; one that is there stays done. So a
 * fire is neither lost nor doubled across kill -9. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <lmdb.h>
#include <sodium.h>

#include "orch.h"

#define FLOWS_MAP_SIZE (1ull << 30)
#define FIRES_PER_PASS 100
#define EVENTS_KEPT 20
#define QUEUE_MAX 10
#define HOOK_WINDOW_S 300
#define SEAL_SELF_MS (10ull * 365 * 86400 * 1000)   /* see docs/triggers.md */

typedef struct sched {
    uint64_t flow;
    char trigger[80];
    rz_cron *cron;
    rz_cron_catchup catchup;
    int overlap;              /* 0 skip, 1 queue, 2 allow */
    int64_t last;             /* fires up to here are done */
    int64_t next;             /* its next fire, INT64_MAX: none */
    unsigned queued;
    uint64_t last_dep;
} sched;

struct flows {
    MDB_env *env;
    MDB_dbi dbi;
    sched *s;
    size_t n, cap;
    struct event *timer;
    size_t followers;        /* flow triggers in active versions: 0 skips
                                the lookup at every run's end */
    size_t listeners;        /* event triggers in active versions: 0 skips
                                the lookup at every service event */
};

/* ---- the store ---- */

static char *kv_get(flows *F, const char *key)
{
    MDB_txn *t;
    if (mdb_txn_begin(F->env, NULL, MDB_RDONLY, &t) != 0)
        return NULL;
    MDB_val k = { strlen(key), (void *)key }, v;
    char *out = NULL;
    if (mdb_get(t, F->dbi, &k, &v) == 0 && (out = malloc(v.mv_size + 1))) {
        memcpy(out, v.mv_data, v.mv_size);
        out[v.mv_size] = '\0';
    }
    mdb_txn_abort(t);
    return out;
}

static cJSON *kv_json(flows *F, const char *key)
{
    char *s = kv_get(F, key);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Keys and values in pairs (a NULL value deletes), in one durable commit. */
static int kv_write(flows *F, const char *const *kv, size_t pairs)
{
    MDB_txn *t;
    int mrc = mdb_txn_begin(F->env, NULL, 0, &t);
    for (size_t i = 0; mrc == 0 && i < pairs; i++) {
        MDB_val k = { strlen(kv[2 * i]), (void *)kv[2 * i] };
        if (kv[2 * i + 1]) {
            MDB_val v = { strlen(kv[2 * i + 1]), (void *)kv[2 * i + 1] };
            mrc = mdb_put(t, F->dbi, &k, &v, 0);
        } else {
            mrc = mdb_del(t, F->dbi, &k, NULL);
            if (mrc == MDB_NOTFOUND)
                mrc = 0;
        }
    }
    if (mrc == 0)
        mrc = mdb_txn_commit(t);
    else
        mdb_txn_abort(t);
    if (mrc != 0)
        fprintf(stderr, ORCH_NAME ": flows store: %s\n", mdb_strerror(mrc));
    return mrc == 0 ? RZ_OK : RZ_EDB;
}

static int kv_put_json(flows *F, const char *key, const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    const char *kv[2] = { key, s };
    int rc = s ? kv_write(F, kv, 1) : RZ_ENOMEM;
    free(s);
    return rc;
}

/* Keys under `prefix`, into a JSON array of [key, value] (NULL on error). */
static cJSON *kv_scan(flows *F, const char *prefix)
{
    MDB_txn *t;
    MDB_cursor *c;
    cJSON *arr = cJSON_CreateArray();
    if (!arr || mdb_txn_begin(F->env, NULL, MDB_RDONLY, &t) != 0)
        return arr;
    if (mdb_cursor_open(t, F->dbi, &c) == 0) {
        size_t pl = strlen(prefix);
        MDB_val k = { pl, (void *)prefix }, v;
        for (int r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); r == 0;
             r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)
                break;
            cJSON *pair = cJSON_CreateArray();
            char *ks = strndup(k.mv_data, k.mv_size), *vs = strndup(v.mv_data, v.mv_size);
            if (pair && ks && vs) {
                cJSON_AddItemToArray(pair, cJSON_CreateString(ks));
                cJSON_AddItemToArray(pair, cJSON_CreateString(vs));
                cJSON_AddItemToArray(arr, pair);
            } else {
                cJSON_Delete(pair);
            }
            free(ks);
            free(vs);
        }
        mdb_cursor_close(c);
    }
    mdb_txn_abort(t);
    return arr;
}

static void owner_hex(rz_ledger_id id, char out[33])
{
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, id.hi, id.lo);
}

static bool owner_is(const cJSON *rec, rz_ledger_id id)
{
    char h[33];
    owner_hex(id, h);
    const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "owner"));
    return o && strcmp(o, h) == 0;
}

static rz_ledger_id owner_of(const cJSON *rec)
{
    rz_ledger_id id = { 0, 0 };
    const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "owner"));
    if (o && strlen(o) == 32) {
        char a[17], b[17];
        memcpy(a, o, 16);
        a[16] = '\0';
        memcpy(b, o + 16, 16);
        b[16] = '\0';
        id.hi = strtoull(a, NULL, 16);
        id.lo = strtoull(b, NULL, 16);
    }
    return id;
}

static cJSON *flow_rec(flows *F, uint64_t id)
{
    char key[32];
    snprintf(key, sizeof key, "f/%" PRIu64, id);
    return kv_json(F, key);
}

static int flow_put(flows *F, const cJSON *rec)
{
    char key[32];
    snprintf(key, sizeof key, "f/%" PRIu64,
             (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "id")));
    return kv_put_json(F, key, rec);
}

static cJSON *version_rec(flows *F, uint64_t id, uint64_t v)
{
    char key[48];
    snprintf(key, sizeof key, "v/%" PRIu64 "/%" PRIu64, id, v);
    return kv_json(F, key);
}

static uint64_t num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

static int64_t inum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static cJSON *obj_at(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(v)) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
        v = cJSON_AddObjectToObject(o, k);
    }
    return v;
}

static void set_num(cJSON *o, const char *k, double v)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNumber(x))
        cJSON_SetNumberValue(x, v);
    else {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
        cJSON_AddNumberToObject(o, k, v);
    }
}

/* A trigger's latest events, newest last, EVENTS_KEPT of them. */
static void add_event(cJSON *st, int64_t t, const char *what, const char *reason,
                      uint64_t dep)
{
    cJSON *ev = cJSON_GetObjectItemCaseSensitive(st, "events");
    if (!cJSON_IsArray(ev))
        ev = cJSON_AddArrayToObject(st, "events");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "t", (double)t);
    cJSON_AddStringToObject(e, "what", what);
    if (reason)
        cJSON_AddStringToObject(e, "reason", reason);
    if (dep)
        cJSON_AddNumberToObject(e, "deployment", (double)dep);
    cJSON_AddItemToArray(ev, e);
    while (cJSON_GetArraySize(ev) > EVENTS_KEPT)
        cJSON_DeleteItemFromArray(ev, 0);
    cJSON *cnt = obj_at(st, "counts");
    set_num(cnt, what, (double)(num(cnt, what) + 1));
}

/* Has the owner switched trigger `name` of flow record `rec` off
 * (POST .../triggers/{name}/disable)? Its state says so, whatever the
 * version: a trigger's state is by name. */
static bool switched_off(const cJSON *rec, const char *name)
{
    const cJSON *st = name ? cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetObjectItemCaseSensitive(rec, "triggers"), name)
                           : NULL;
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "disabled"));
}

/* Is the deployment the one a fire made (its owner, its creation time)? */
static bool dep_is(orch *o, uint64_t dep, rz_ledger_id owner, uint64_t ms)
{
    rz_engine_deployment_info di;
    return dep && rz_engine_deployment_get(o->e, dep, &di) == RZ_OK &&
           di.client.hi == owner.hi && di.client.lo == owner.lo && di.created_ms == ms;
}

/* ---- credentials kept for later fires ----
 * What a deployer seals to this orchestrator expires within the hour; a
 * trigger fires later, so each value is sealed again to the orchestrator's
 * own key, for longer (SEAL_SELF_MS). */
static char *reseal_self(orch *o, const char *b64, const char *cid, uint64_t now)
{
    size_t n = 0;
    unsigned char *sealed = b64_decode(b64, &n);
    rz_secret *s = NULL;
    if (!sealed || rz_vault_unseal(&s, NULL, sealed, n, o->pk, o->sk,
                                   RZ_VAULT_ORCHESTRATOR_JOB, now) != RZ_OK) {
        free(sealed);
        return NULL;
    }
    free(sealed);
    unsigned char *out = NULL;
    size_t out_len = 0;
    char *res = NULL;
    if (rz_vault_seal_value(&out, &out_len, rz_secret_data(s), rz_secret_len(s),
                            RZ_VAULT_ORCHESTRATOR_JOB, cid, now + SEAL_SELF_MS, o->pk) == RZ_OK)
        res = b64_encode(out, out_len);
    rz_free(out);
    rz_secret_free(s);
    return res;
}

/* Every value of a {"<cid>":"<b64>"} map resealed; NULL if one fails. */
static cJSON *reseal_map(orch *o, const cJSON *m, uint64_t now)
{
    cJSON *out = cJSON_CreateObject();
    for (const cJSON *c = m ? m->child : NULL; out && c; c = c->next) {
        char *r = cJSON_IsString(c) ? reseal_self(o, c->valuestring, c->string, now) : NULL;
        if (!r) {
            cJSON_Delete(out);
            return NULL;
        }
        cJSON_AddStringToObject(out, c->string, r);
        free(r);
    }
    return out;
}

/* ---- the schedule in memory ---- */

static void sched_clear(flows *F)
{
    F->followers = 0;
    F->listeners = 0;
    for (size_t i = 0; i < F->n; i++)
        rz_cron_free(F->s[i].cron);
    F->n = 0;
}

static int64_t next_of(const sched *e)
{
    int64_t nx;
    return rz_cron_next(e->cron, e->last, &nx) == RZ_OK ? nx : INT64_MAX;
}

/* The cron triggers of one flow's active version, with their state. */
static void sched_add_flow(orch *o, cJSON *rec, int64_t now_s, bool *dirty)
{
    flows *F = o->flows;
    uint64_t id = num(rec, "id"), active = num(rec, "active");
    cJSON *ver = version_rec(F, id, active);
    cJSON *trigs = cJSON_GetObjectItemCaseSensitive(ver, "triggers");
    cJSON *states = obj_at(rec, "triggers");
    const cJSON *t;
    cJSON_ArrayForEach(t, trigs) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        if (type && !strcmp(type, "flow"))
            F->followers++;
        if (type && !strcmp(type, "event"))
            F->listeners++;
        if (!type || !name || strcmp(type, "cron") != 0 ||
            cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "enabled")) ||
            switched_off(rec, name))
            continue;
        rz_cron_opts co = RZ_CRON_OPTS_INIT;
        co.tz = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "tz"));
        rz_cron *c = NULL;
        const char *expr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "schedule"));
        if (!expr || rz_cron_parse(&c, expr, &co) != RZ_OK) {
            fprintf(stderr, ORCH_NAME ": flow %" PRIu64 " trigger %s: %s\n", id, name,
                    rz_error_last()->message);
            continue;
        }
        if (F->n == F->cap) {
            size_t cap = F->cap ? F->cap * 2 : 16;
            sched *s = realloc(F->s, cap * sizeof *s);
            if (!s) {
                rz_cron_free(c);
                break;
            }
            F->s = s;
            F->cap = cap;
        }
        cJSON *st = cJSON_GetObjectItemCaseSensitive(states, name);
        if (!st) {      /* new: it fires from now on */
            st = cJSON_AddObjectToObject(states, name);
            cJSON_AddNumberToObject(st, "last", (double)now_s);
            *dirty = true;
        }
        sched *e = &F->s[F->n++];
        memset(e, 0, sizeof *e);
        e->flow = id;
        snprintf(e->trigger, sizeof e->trigger, "%s", name);
        e->cron = c;
        const char *cu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "catchup"));
        const char *ov = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "overlap"));
        e->catchup = RZ_CRON_CATCHUP_ONE;   /* validated at deploy */
        (void)!rz_cron_catchup_parse(cu, &e->catchup);
        e->overlap = ov && !strcmp(ov, "queue") ? 1 : ov && !strcmp(ov, "allow") ? 2 : 0;
        e->last = inum(st, "last");
        e->queued = (unsigned)num(st, "queued");
        e->last_dep = num(st, "last_dep");
        e->next = next_of(e);
    }
    cJSON_Delete(ver);
}

static void sched_rebuild(orch *o)
{
    flows *F = o->flows;
    sched_clear(F);
    cJSON *all = kv_scan(F, "f/");
    int64_t now_s = (int64_t)(orch_now_ms() / 1000);
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *rec = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        bool dirty = false;
        if (rec)
            sched_add_flow(o, rec, now_s, &dirty);
        if (dirty)
            (void)!flow_put(F, rec);   /* said on stderr; the state is rebuilt next time */
        cJSON_Delete(rec);
    }
    cJSON_Delete(all);
}

static void arm(orch *o);

/* ---- firing ---- */

/* Deploy the active version for one fire at `t`; its outcome is recorded
 * on `st` (and a run record into `runs`). `prev`: where the trigger stood
 * before this pass, to go back to if a crash loses the run. */
static uint64_t fire(orch *o, cJSON *rec, cJSON *st, const char *trig, int64_t t,
                     int64_t prev, uint64_t now_ms, cJSON *runs)
{
    flows *F = o->flows;
    uint64_t id = num(rec, "id"), v = num(rec, "active");
    rz_ledger_id owner = owner_of(rec);
    cJSON *ver = version_rec(F, id, v);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "text"));
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(ver, "inputs");
    char *inputs = cJSON_IsObject(in) ? cJSON_PrintUnformatted(in) : NULL;
    uint64_t dep = 0;
    int rc = text ? rz_engine_deploy(o->e, text, strlen(text), owner, inputs, now_ms, &dep, NULL)
                  : RZ_ENOENT;
    free(inputs);
    if (rc == RZ_EFUNDS) {
        add_event(st, t, "refused", rz_error_last()->message, 0);
    } else if (rc != RZ_OK) {
        add_event(st, t, "failed", text ? rz_error_last()->message : "its version is gone", 0);
    } else {
        const char *creds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "creds"));
        if (creds && auth_put_creds(o, dep, creds) != RZ_OK) {
            (void)!rz_engine_deployment_cancel(o->e, dep, now_ms);   /* just made */
            add_event(st, t, "failed", "cannot store the run's credentials", dep);
            dep = 0;
        } else {
            add_event(st, t, "fired", NULL, dep);
            set_num(st, "last_dep", (double)dep);
            cJSON *u = cJSON_GetObjectItemCaseSensitive(st, "unconfirmed");
            if (!cJSON_IsArray(u))
                u = cJSON_AddArrayToObject(st, "unconfirmed");
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "t", (double)t);
            cJSON_AddNumberToObject(x, "dep", (double)dep);
            cJSON_AddNumberToObject(x, "ms", (double)now_ms);
            cJSON_AddNumberToObject(x, "prev", (double)prev);
            cJSON_AddItemToArray(u, x);
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "flow", (double)id);
            cJSON_AddNumberToObject(r, "version", (double)v);
            cJSON_AddStringToObject(r, "trigger", trig);
            cJSON_AddNumberToObject(r, "fire", (double)t);
            cJSON_AddNumberToObject(r, "deployment", (double)dep);
            cJSON_AddItemToArray(runs, r);
        }
    }
    cJSON_Delete(ver);
    return dep;
}

/* Run records d/<dep> of `runs`, with the flow record, in one commit. */
static int commit_fires(flows *F, const cJSON *rec, const cJSON *runs)
{
    size_t n = (size_t)cJSON_GetArraySize(runs) + 1, i = 0;
    const char **kv = calloc(2 * n, sizeof *kv);
    char (*keys)[32] = calloc(n, sizeof *keys);
    char *recs = cJSON_PrintUnformatted(rec);
    int rc = RZ_ENOMEM;
    if (kv && keys && recs) {
        snprintf(keys[0], 32, "f/%" PRIu64, num(rec, "id"));
        kv[0] = keys[0];
        kv[1] = recs;
        const cJSON *r;
        i = 1;
        cJSON_ArrayForEach(r, runs) {
            snprintf(keys[i], 32, "d/%" PRIu64, num(r, "deployment"));
            kv[2 * i] = keys[i];
            kv[2 * i + 1] = cJSON_PrintUnformatted(r);
            i++;
        }
        rc = kv_write(F, kv, i);
        for (size_t j = 1; j < i; j++)
            free((char *)kv[2 * j + 1]);
    }
    free(recs);
    free(keys);
    free(kv);
    return rc;
}

static bool running(orch *o, uint64_t dep)
{
    rz_run_state s;
    return dep && rz_engine_deployment_state(o->e, dep, &s) == RZ_OK && s == RZ_RUN_RUNNING;
}

/* One trigger's due work at now. */
static void tick_one(orch *o, sched *e, int64_t now_s, uint64_t now_ms)
{
    flows *F = o->flows;
    bool queue_ready = e->queued && !running(o, e->last_dep);
    if (e->next > now_s && !queue_ready)
        return;
    cJSON *rec = flow_rec(F, e->flow);
    cJSON *st = rec ? cJSON_GetObjectItemCaseSensitive(obj_at(rec, "triggers"), e->trigger) : NULL;
    if (!st) {
        cJSON_Delete(rec);
        e->next = INT64_MAX;
        return;
    }
    /* The deployments a previous pass made are durable by now. */
    cJSON_DeleteItemFromObjectCaseSensitive(st, "unconfirmed");
    cJSON *runs = cJSON_CreateArray();
    int64_t fires[FIRES_PER_PASS], new_last;
    uint64_t missed = 0;
    size_t n = rz_cron_plan(e->cron, e->last, now_s, e->catchup, fires, FIRES_PER_PASS, &missed,
                         &new_last);
    if (missed) {
        char why[96];
        snprintf(why, sizeof why, "%" PRIu64 " fire(s) missed while the orchestrator was "
                 "down (catchup: %s)", missed, rz_cron_catchup_name(e->catchup));
        add_event(st, new_last, "missed", why, 0);
        cJSON *cnt = obj_at(st, "counts");
        set_num(cnt, "missed", (double)(num(cnt, "missed") + missed - 1));
    }
    if (queue_ready) {          /* the run it waited for is over */
        e->queued--;
        uint64_t d = fire(o, rec, st, e->trigger, now_s, e->last, now_ms, runs);
        if (d)
            e->last_dep = d;
    }
    for (size_t i = 0; i < n; i++) {
        set_num(st, "last", (double)fires[i]);
        if (running(o, e->last_dep) && e->overlap != 2) {
            if (e->overlap == 1 && e->queued < QUEUE_MAX) {
                e->queued++;
                add_event(st, fires[i], "queued", "the last triggered run is still running", 0);
            } else {
                add_event(st, fires[i], "skipped", e->overlap == 1 ? "the queue is full"
                          : "the last triggered run is still running (overlap: skip)", 0);
            }
            continue;
        }
        uint64_t d = fire(o, rec, st, e->trigger, fires[i], e->last, now_ms, runs);
        if (d)
            e->last_dep = d;
    }
    e->last = new_last;
    set_num(st, "last", (double)new_last);
    set_num(st, "queued", e->queued);
    e->next = next_of(e);
    int crc = commit_fires(F, rec, runs);
    /* Tests only: die between the record and the engine's commit, the
     * window the recovery at start covers (tests/e2e/triggers.py). */
    if (crc == RZ_OK && cJSON_GetArraySize(runs) && getenv("RHIZOS_TEST_KILL_AFTER_FIRE"))
        raise(SIGKILL);
    if (crc != RZ_OK) {
        /* Not recorded: undo what this pass started, so nothing runs that
         * a restart would fire again. */
        const cJSON *r;
        cJSON_ArrayForEach(r, runs)
            (void)!rz_engine_deployment_cancel(o->e, num(r, "deployment"), now_ms);
    }
    cJSON_Delete(runs);
    cJSON_Delete(rec);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    if (o->stopping)
        return;
    orch_group_open(o);
    uint64_t now_ms = orch_now_ms();
    for (size_t i = 0; i < o->flows->n; i++)
        tick_one(o, &o->flows->s[i], (int64_t)(now_ms / 1000), now_ms);
    o->changed = true;
    if (!o->grouped)
        orch_after(o);
    arm(o);
}

/* Wake at the next fire (at least once a minute; every second while a
 * queued fire waits for its run to end). */
static void arm(orch *o)
{
    flows *F = o->flows;
    if (!F || o->stopping)
        return;
    if (!F->timer && !(F->timer = evtimer_new(o->base, on_timer, o)))
        return;
    uint64_t now = orch_now_ms(), at = now + 60000;
    for (size_t i = 0; i < F->n; i++) {
        if (F->s[i].queued)
            at = now + 1000 < at ? now + 1000 : at;
        if (F->s[i].next != INT64_MAX && (uint64_t)F->s[i].next * 1000 < at)
            at = (uint64_t)F->s[i].next * 1000;
    }
    uint64_t d = at > now ? at - now : 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };
    evtimer_del(F->timer);
    evtimer_add(F->timer, &tv);
}

/* ---- open: recover what a crash left unconfirmed ---- */

static void recover(orch *o)
{
    flows *F = o->flows;
    cJSON *all = kv_scan(F, "f/");
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *rec = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        rz_ledger_id owner = owner_of(rec);
        bool dirty = false;
        cJSON *st;
        cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(rec, "triggers")) {
            cJSON *u = cJSON_GetObjectItemCaseSensitive(st, "unconfirmed");
            const cJSON *x;
            cJSON_ArrayForEach(x, u) {
                if (dep_is(o, num(x, "dep"), owner, num(x, "ms")))
                    continue;
                /* The crash took this fire (and those after it, made in the
                 * same pass): start again from before it. */
                set_num(st, "last", (double)inum(x, "prev"));
                add_event(st, inum(x, "t"), "lost", "the orchestrator stopped before the "
                          "run was stored; the catch-up rule runs it again", 0);
                char key[32];
                for (const cJSON *y = x; y; y = y->next) {
                    snprintf(key, sizeof key, "d/%" PRIu64, num(y, "dep"));
                    const char *kv[2] = { key, NULL };
                    (void)!kv_write(F, kv, 1);   /* a stale run record only */
                }
                break;
            }
            if (u) {
                cJSON_DeleteItemFromObjectCaseSensitive(st, "unconfirmed");
                dirty = true;
            }
        }
        if (dirty)
            (void)!flow_put(F, rec);   /* said on stderr */
        cJSON_Delete(rec);
    }
    cJSON_Delete(all);
}

int flows_open(orch *o)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/flows", o->opts.data);
    if (rz_fs_mkdirs(dir, 0700) != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": %s\n", rz_error_last()->message);
        return -1;
    }
    flows *F = calloc(1, sizeof *F);
    MDB_txn *t = NULL;
    int mrc = F ? mdb_env_create(&F->env) : ENOMEM;
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(F->env, FLOWS_MAP_SIZE);
    if (mrc == 0)
        mrc = mdb_env_open(F->env, dir, MDB_NOTLS, 0600);
    if (mrc == 0)
        mrc = mdb_txn_begin(F->env, NULL, 0, &t);
    if (mrc == 0)
        mrc = mdb_dbi_open(t, NULL, 0, &F->dbi);
    if (mrc == 0)
        mrc = mdb_txn_commit(t);
    else if (t)
        mdb_txn_abort(t);
    if (mrc != 0) {
        fprintf(stderr, ORCH_NAME ": cannot open %s: %s\n", dir, mdb_strerror(mrc));
        if (F && F->env)
            mdb_env_close(F->env);
        free(F);
        return -1;
    }
    o->flows = F;
    recover(o);
    sched_rebuild(o);
    arm(o);
    return 0;
}

void flows_close(orch *o)
{
    flows *F = o->flows;
    if (!F)
        return;
    sched_clear(F);
    free(F->s);
    if (F->timer)
        event_free(F->timer);
    mdb_env_close(F->env);
    free(F);
    o->flows = NULL;
}

/* ---- deploy: versions ---- */

/* Problems a deploy must refuse before anything is held: a webhook whose
 * secret was not supplied. False: answered. */
bool flows_deploy_check(req *q, const char *text, const cJSON *creds)
{
    rz_flow *f = NULL;
    if (rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) != RZ_OK)
        return true;     /* the engine's validation says why */
    char *tj = NULL;
    bool ok = true;
    if (rz_flow_triggers(f, &tj) == RZ_OK) {
        cJSON *arr = cJSON_Parse(tj);
        char cyc[400];
        const char *name = rz_flow_name(f)[0] ? rz_flow_name(f) : "(unnamed)";
        if (flows_cycle(q->o, q->who.account, name, arr, cyc, sizeof cyc)) {
            reply_error(q, RZ_EINVALID, "the flow triggers would run in a circle (%s): "
                        "change one of them", cyc);
            ok = false;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, arr) {
            if (!ok)
                break;
            const char *sec = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "secret"));
            if (sec && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(creds, sec))) {
                reply_error(q, RZ_EINVALID, "credential \"%s\" (the secret of webhook '%s') "
                            "is referenced but not supplied", sec,
                            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name")));
                ok = false;
                break;
            }
        }
        cJSON_Delete(arr);
    }
    rz_free(tj);
    rz_flow_free(f);
    return ok;
}

/* ---- named sub-flows ---- */

typedef struct named_ctx {
    flows *F;
    rz_ledger_id owner;
    cJSON *creds;           /* the deploy's sealed credentials, or NULL */
} named_ctx;

/* The sealed values a named flow's own deploy left (sealed to this
 * orchestrator), added to the deploy's where it gives none of that id: the
 * child's steps keep the credentials they were deployed with. */
static void carry_creds(named_ctx *n, const cJSON *ver)
{
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "creds"));
    cJSON *rec = n->creds && c ? cJSON_Parse(c) : NULL;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rec, "sealed"))
        if (cJSON_IsString(s) && !cJSON_GetObjectItemCaseSensitive(n->creds, s->string))
            cJSON_AddStringToObject(n->creds, s->string, s->valuestring);
    cJSON_Delete(rec);
}

/* The text of the owner's flow NAME at version v (0: its active one): a
 * deploy runs only the caller's own named flows. */
static int named_text(void *ctx, const char *name, unsigned long long v, char **text,
                      unsigned long long *found, char *why, size_t cap)
{
    named_ctx *n = ctx;
    char hex[33], nkey[400];
    owner_hex(n->owner, hex);
    snprintf(nkey, sizeof nkey, "n/%s/%s", hex, name);
    char *idtext = kv_get(n->F, nkey);
    cJSON *rec = idtext ? flow_rec(n->F, strtoull(idtext, NULL, 10)) : NULL;
    free(idtext);
    if (!rec) {
        snprintf(why, cap, "you have no flow named '%s' (`rhizos flow deploy` names a "
                 "flow by its `name:`)", name);
        return RZ_ENOENT;
    }
    uint64_t want = v ? v : num(rec, "active");
    cJSON *ver = version_rec(n->F, num(rec, "id"), want);
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "text"));
    int rc = RZ_OK;
    if (!t) {
        snprintf(why, cap, "flow '%s' has no version %llu (its latest is %llu)", name,
                 (unsigned long long)want, (unsigned long long)num(rec, "latest"));
        rc = RZ_ENOENT;
    } else if (!(*text = strdup(t))) {
        rc = RZ_ENOMEM;
    } else {
        carry_creds(n, ver);
    }
    *found = want;
    cJSON_Delete(ver);
    cJSON_Delete(rec);
    return rc;
}

int flows_expand(req *q, rz_flow **f, const rz_registry *reg, rz_diags *d)
{
    return flows_expand_creds(q, f, reg, d, NULL);
}

int flows_expand_creds(req *q, rz_flow **f, const rz_registry *reg, rz_diags *d,
                       cJSON *creds)
{
    named_ctx n = { q->o->flows, q->who.account, creds };
    rz_flow_expand_opts xo = RZ_FLOW_EXPAND_OPTS_INIT;
    xo.no_files = 1;
    xo.named = q->o->flows ? named_text : NULL;
    xo.named_ctx = &n;
    return rz_flow_expand_with(f, reg, &xo, d);
}

char *flows_expand_named(req *q, char *text, cJSON **creds)
{
    rz_flow *f = NULL;
    if (!text)
        return NULL;
    if (rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) != RZ_OK)
        return text;     /* the validation after says why */
    bool any = false;
    for (size_t i = 0; i < rz_flow_step_count(f); i++)
        any = any || rz_flow_step_subflow(f, i) != NULL;
    rz_diags *d = NULL;
    char *json = NULL;
    int rc = any ? rz_diags_new(&d) : RZ_OK;
    if (any && rc == RZ_OK && !*creds &&
        !(*creds = cJSON_AddObjectToObject(q->body, "credentials")))
        rc = RZ_ENOMEM;
    if (any && rc == RZ_OK) {
        rc = flows_expand_creds(q, &f, NULL, d, *creds);
        if (rc == RZ_OK)
            rc = rz_flow_to_json(f, 0, &json, NULL);
    }
    rz_flow_free(f);
    char *out = text;
    if (rc != RZ_OK) {
        if (rz_diags_count(d) > 0)
            reply_diags(q, RZ_EINVALID, d);
        else
            reply_rz(q, rc);
        out = NULL;
    } else if (json) {
        out = strdup(json);
        if (!out)
            reply_error(q, RZ_ENOMEM, "out of memory");
    }
    if (out != text)
        free(text);
    rz_free(json);
    rz_diags_free(d);
    return out;
}

/* Content digest: of the canonical builder JSON, so reformatting a file
 * is not a new version. */
static void digest_of(const rz_flow *f, const char *text, char hex[RZ_AUTH_DIGEST_HEX + 1])
{
    char *json = NULL;
    size_t len = 0;
    if (rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &len) == RZ_OK)
        rz_auth_digest_hex(json, len, hex);
    else
        rz_auth_digest_hex(text, strlen(text), hex);
    rz_free(json);
}

static cJSON *new_flow_rec(uint64_t id, const char *hex, const char *name)
{
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "id", (double)id);
    cJSON_AddStringToObject(rec, "owner", hex);
    cJSON_AddStringToObject(rec, "name", name);
    cJSON_AddNumberToObject(rec, "active", 0);
    cJSON_AddNumberToObject(rec, "latest", 0);
    cJSON_AddArrayToObject(rec, "versions");
    cJSON_AddObjectToObject(rec, "triggers");
    return rec;
}

/* The active version, when its content is `digest`; else 0. */
static uint64_t same_version(const cJSON *rec, const char *digest)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(rec, "versions")) {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "digest"));
        if (num(x, "version") == num(rec, "active") && d && !strcmp(d, digest))
            return num(x, "version");
    }
    return 0;
}

/* What fires deploy later: the text, inputs, and the step credentials and
 * webhook secrets sealed again to this orchestrator for that long. */
static char *version_text(orch *o, const char *text, const cJSON *inputs, const char *creds_rec,
                          const cJSON *creds, cJSON *triggers, uint64_t now_ms, int *rc)
{
    cJSON *ver = cJSON_CreateObject();
    cJSON_AddStringToObject(ver, "text", text);
    cJSON_AddItemToObject(ver, "inputs", inputs ? cJSON_Duplicate(inputs, 1) : cJSON_CreateNull());
    cJSON *cr = creds_rec ? cJSON_Parse(creds_rec) : NULL;
    cJSON *sealed = cJSON_GetObjectItemCaseSensitive(cr, "sealed");
    if (sealed) {
        cJSON *self = reseal_map(o, sealed, now_ms);
        if (self)
            cJSON_ReplaceItemInObjectCaseSensitive(cr, "sealed", self);
        else
            *rc = RZ_EAUTH;
    }
    char *crt = cr ? cJSON_PrintUnformatted(cr) : NULL;
    cJSON_AddItemToObject(ver, "creds", crt ? cJSON_CreateString(crt) : cJSON_CreateNull());
    free(crt);
    cJSON_Delete(cr);
    cJSON *hooks = cJSON_AddObjectToObject(ver, "hooks");
    const cJSON *x;
    cJSON_ArrayForEach(x, triggers) {
        const char *sec = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "secret"));
        const cJSON *v = sec ? cJSON_GetObjectItemCaseSensitive(creds, sec) : NULL;
        char *r = cJSON_IsString(v) ? reseal_self(o, v->valuestring, sec, now_ms) : NULL;
        if (sec && !r)
            *rc = RZ_EAUTH;
        if (r)
            cJSON_AddStringToObject(hooks, sec, r);
        free(r);
    }
    cJSON_AddItemToObject(ver, "triggers", cJSON_Duplicate(triggers, 1));
    char *out = cJSON_PrintUnformatted(ver);
    cJSON_Delete(ver);
    return out;
}

static void add_version(cJSON *rec, uint64_t v, const char *digest, const char *note,
                        uint64_t dep, uint64_t now_ms)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "version", (double)v);
    cJSON_AddStringToObject(e, "digest", digest);
    cJSON_AddStringToObject(e, "note", note ? note : "");
    cJSON_AddNumberToObject(e, "created_ms", (double)now_ms);
    cJSON_AddNumberToObject(e, "deployment", (double)dep);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(rec, "versions"), e);
    set_num(rec, "latest", (double)v);
    set_num(rec, "active", (double)v);
}

static char *run_text(uint64_t id, uint64_t v)
{
    cJSON *run = cJSON_CreateObject();
    cJSON_AddNumberToObject(run, "flow", (double)id);
    cJSON_AddNumberToObject(run, "version", (double)v);
    cJSON_AddNullToObject(run, "trigger");
    char *t = cJSON_PrintUnformatted(run);
    cJSON_Delete(run);
    return t;
}

/* The flow's name, content digest and normalised triggers. */
static int describe(const char *text, char name[300], char digest[RZ_AUTH_DIGEST_HEX + 1],
                    cJSON **triggers)
{
    rz_flow *f = NULL;
    if (rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) != RZ_OK)
        return RZ_EINVAL;
    snprintf(name, 300, "%s", rz_flow_name(f)[0] ? rz_flow_name(f) : "(unnamed)");
    digest_of(f, text, digest);
    char *trig = NULL;
    *triggers = rz_flow_triggers(f, &trig) == RZ_OK ? cJSON_Parse(trig) : cJSON_CreateArray();
    rz_free(trig);
    rz_flow_free(f);
    return RZ_OK;
}

int flows_record_deploy(orch *o, rz_ledger_id owner, const char *text, const cJSON *inputs,
                        const char *creds_rec, const cJSON *creds, const char *note,
                        uint64_t dep, uint64_t now_ms, cJSON *reply)
{
    flows *F = o->flows;
    if (!F)
        return RZ_OK;       /* no store of named flows (the HTTP fuzz target) */
    char hex[33], nkey[400], name[300], digest[RZ_AUTH_DIGEST_HEX + 1];
    cJSON *triggers = NULL;
    if (describe(text, name, digest, &triggers) != RZ_OK)
        return RZ_EINVAL;
    owner_hex(owner, hex);
    snprintf(nkey, sizeof nkey, "n/%s/%s", hex, name);
    char *idtext = kv_get(F, nkey), *c = idtext ? NULL : kv_get(F, "c/flows");
    uint64_t id = idtext ? strtoull(idtext, NULL, 10) : (c ? strtoull(c, NULL, 10) : 0) + 1;
    free(idtext);
    free(c);
    cJSON *rec = flow_rec(F, id);
    bool fresh = !rec;
    if (fresh)
        rec = new_flow_rec(id, hex, name);
    int rc = RZ_OK;
    char *vtext = NULL;
    uint64_t v = same_version(rec, digest);
    bool newver = !v;
    if (newver) {
        v = num(rec, "latest") + 1;
        vtext = version_text(o, text, inputs, creds_rec, creds, triggers, now_ms, &rc);
        add_version(rec, v, digest, note, dep, now_ms);
    }
    cJSON_Delete(triggers);
    char *rtext = run_text(id, v), *ftext = cJSON_PrintUnformatted(rec);
    char vkey[48], idbuf[24], dkey[32], fkey[32];
    snprintf(vkey, sizeof vkey, "v/%" PRIu64 "/%" PRIu64, id, v);
    snprintf(idbuf, sizeof idbuf, "%" PRIu64, id);
    snprintf(dkey, sizeof dkey, "d/%" PRIu64, dep);
    snprintf(fkey, sizeof fkey, "f/%" PRIu64, id);
    const char *kv[] = { fkey, ftext, dkey, rtext, vkey, vtext, nkey, idbuf, "c/flows", idbuf };
    if (rc == RZ_OK && (!ftext || !rtext || (newver && !vtext)))
        rc = RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = kv_write(F, kv, fresh ? 5 : vtext ? 3 : 2);
    if (rc == RZ_OK && reply) {
        cJSON_AddNumberToObject(reply, "flow_id", (double)id);
        cJSON_AddNumberToObject(reply, "version", (double)v);
    }
    free(vtext);
    free(rtext);
    free(ftext);
    cJSON_Delete(rec);
    if (rc == RZ_OK) {
        sched_rebuild(o);
        arm(o);
    }
    return rc;
}

/* Delete every key under `prefix` in t: from the prefix again after each
 * delete (a delete moves the cursor's page under it). */
static int del_prefix(flows *F, MDB_txn *t, const char *prefix)
{
    MDB_cursor *c = NULL;
    int mrc = mdb_cursor_open(t, F->dbi, &c);
    if (mrc)
        return mrc;
    size_t pl = strlen(prefix);
    for (;;) {
        MDB_val k = { pl, (void *)prefix }, v;
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (mrc || k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)
            break;
        if ((mrc = mdb_cursor_del(c, 0)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND || mrc == 0 ? 0 : mrc;
}

int flows_forget(orch *o, const uint64_t *deps, size_t n)
{
    flows *F = o->flows;
    if (!F || !n)
        return RZ_OK;
    MDB_txn *t = NULL;
    int mrc = mdb_txn_begin(F->env, NULL, 0, &t);
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        char key[40];
        snprintf(key, sizeof key, "d/%" PRIu64, deps[i]);
        MDB_val k = { strlen(key), key };
        mrc = mdb_del(t, F->dbi, &k, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
        snprintf(key, sizeof key, "o/%" PRIu64 "/", deps[i]);
        if (mrc == 0)
            mrc = del_prefix(F, t, key);
    }
    if (mrc == 0)
        mrc = mdb_txn_commit(t);
    else if (t)
        mdb_txn_abort(t);
    if (mrc != 0)
        fprintf(stderr, ORCH_NAME ": flows store: %s\n", mdb_strerror(mrc));
    return mrc == 0 ? RZ_OK : RZ_EDB;
}

void flows_status_extra(orch *o, uint64_t dep, cJSON *doc)
{
    if (!o->flows)
        return;
    char key[32];
    snprintf(key, sizeof key, "d/%" PRIu64, dep);
    cJSON *r = kv_json(o->flows, key);
    if (!r)
        return;
    cJSON_AddNumberToObject(doc, "flow_id", (double)num(r, "flow"));
    cJSON_AddNumberToObject(doc, "version", (double)num(r, "version"));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "trigger");
    if (cJSON_IsString(t)) {
        cJSON *tr = cJSON_AddObjectToObject(doc, "trigger");
        cJSON_AddStringToObject(tr, "name", t->valuestring);
        if (cJSON_GetObjectItemCaseSensitive(r, "fire"))
            cJSON_AddNumberToObject(tr, "fire", (double)inum(r, "fire"));
        if (cJSON_GetObjectItemCaseSensitive(r, "delivery"))
            cJSON_AddStringToObject(tr, "delivery", cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(r, "delivery")));
    }
    cJSON_Delete(r);
}

char *flows_dep_creds(orch *o, uint64_t dep)
{
    if (!o->flows)
        return NULL;
    char key[32];
    snprintf(key, sizeof key, "d/%" PRIu64, dep);
    cJSON *r = kv_json(o->flows, key);
    cJSON *ver = r ? version_rec(o->flows, num(r, "flow"), num(r, "version")) : NULL;
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "creds"));
    char *out = c ? strdup(c) : NULL;
    cJSON_Delete(ver);
    cJSON_Delete(r);
    return out;
}

/* ---- routes ---- */

/* The named flow of the path, the caller's own (admin: any). */
static cJSON *visible_flow(req *q, int param)
{
    uint64_t id;
    if (!param_u64(q, param, &id))
        return NULL;
    cJSON *rec = q->o->flows ? flow_rec(q->o->flows, id) : NULL;
    if (!rec || (q->who.kind != P_ADMIN && !owner_is(rec, q->who.account))) {
        cJSON_Delete(rec);
        reply_error(q, RZ_ENOENT, "no flow %" PRIu64, id);
        return NULL;
    }
    return rec;
}

/* A flow record as clients see it: no owner key, no unconfirmed list;
 * next fire times of its cron triggers added. */
static cJSON *public_flow(orch *o, const cJSON *rec, unsigned count)
{
    cJSON *out = cJSON_Duplicate(rec, 1);
    cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(out, "triggers"))
        cJSON_DeleteItemFromObjectCaseSensitive(st, "unconfirmed");
    uint64_t id = num(rec, "id");
    cJSON *ver = version_rec(o->flows, id, num(rec, "active"));
    cJSON *trigs = cJSON_AddArrayToObject(out, "active_triggers");
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ver, "triggers")) {
        cJSON *c = cJSON_Duplicate(t, 1);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        if (cJSON_GetObjectItemCaseSensitive(c, "secret"))   /* an id, but keep it private */
            cJSON_DeleteItemFromObjectCaseSensitive(c, "secret");
        if (switched_off(rec, name))
            cJSON_AddTrueToObject(c, "disabled");
        for (size_t i = 0; i < o->flows->n; i++) {
            sched *e = &o->flows->s[i];
            if (e->flow != id || !name || strcmp(e->trigger, name) != 0)
                continue;
            cJSON *nx = cJSON_AddArrayToObject(c, "next");
            int64_t at = e->last;
            for (unsigned k = 0; k < count && rz_cron_next(e->cron, at, &at) == RZ_OK; k++) {
                char buf[RZ_CRON_TIME_MAX];
                cJSON *f = cJSON_CreateObject();
                cJSON_AddNumberToObject(f, "t", (double)at);
                if (rz_cron_format(e->cron, at, buf, sizeof buf) == RZ_OK)
                    cJSON_AddStringToObject(f, "local", buf);
                cJSON_AddItemToArray(nx, f);
            }
        }
        cJSON_AddItemToArray(trigs, c);
    }
    cJSON_Delete(ver);
    return out;
}

void r_named_flows_list(req *q)
{
    cJSON *all = q->o->flows ? kv_scan(q->o->flows, "f/") : cJSON_CreateArray();
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "flows");
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *rec = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        if (rec && (q->who.kind == P_ADMIN || owner_is(rec, q->who.account))) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddNumberToObject(f, "id", (double)num(rec, "id"));
            cJSON_AddStringToObject(f, "name", cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(rec, "name")) ?: "");
            cJSON_AddNumberToObject(f, "active", (double)num(rec, "active"));
            cJSON_AddNumberToObject(f, "latest", (double)num(rec, "latest"));
            cJSON *ver = version_rec(q->o->flows, num(rec, "id"), num(rec, "active"));
            cJSON *tn = cJSON_AddArrayToObject(f, "triggers");
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ver, "triggers"))
                cJSON_AddItemToArray(tn, cJSON_CreateString(cJSON_GetStringValue(
                    cJSON_GetObjectItemCaseSensitive(t, "name")) ?: ""));
            cJSON_Delete(ver);
            cJSON_AddItemToArray(arr, f);
        }
        cJSON_Delete(rec);
    }
    cJSON_Delete(all);
    reply_json(q, 200, doc);
}

void r_named_flow_get(req *q)
{
    uint64_t count;
    if (!query_u64(q, "count", 5, 100, &count))
        return;
    cJSON *rec = visible_flow(q, 0);
    if (!rec)
        return;
    reply_json(q, 200, public_flow(q->o, rec, (unsigned)count));
    cJSON_Delete(rec);
}

void r_named_flow_rollback(req *q)
{
    static const char *const fields[] = { "version", NULL };
    uint64_t v;
    if (!body_fields(q, fields) || !body_u64(q, "version", true, UINT32_MAX, &v, NULL))
        return;
    cJSON *rec = visible_flow(q, 0);
    if (!rec)
        return;
    bool known = false;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(rec, "versions"))
        known = known || num(x, "version") == v;
    if (!known) {
        reply_error(q, RZ_ENOENT, "flow %" PRIu64 " has no version %" PRIu64,
                    num(rec, "id"), v);
    } else {
        set_num(rec, "active", (double)v);
        if (flow_put(q->o->flows, rec) != RZ_OK) {
            reply_error(q, RZ_EDB, "cannot store the flow");
        } else {
            sched_rebuild(q->o);
            arm(q->o);
            reply_json(q, 200, public_flow(q->o, rec, 5));
        }
    }
    cJSON_Delete(rec);
}

/* POST /api/v1/named-flows/{id}/triggers/{name}/disable | enable: a
 * trigger of the flow switched off or on by its owner, whatever version
 * is active (docs/triggers.md, "Switching a trigger off"). A cron trigger
 * switched on again starts from now: the fires of the time it was off
 * are not caught up. */
static void switch_trigger(req *q, bool on)
{
    cJSON *rec = visible_flow(q, 0);
    if (!rec)
        return;
    const char *name = q->params[1];
    cJSON *ver = version_rec(q->o->flows, num(rec, "id"), num(rec, "active"));
    bool known = false;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ver, "triggers")) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        known = known || (n && !strcmp(n, name));
    }
    cJSON_Delete(ver);
    if (!known) {
        reply_error(q, RZ_ENOENT, "flow %" PRIu64 " has no trigger '%.64s' in its active "
                    "version", num(rec, "id"), name);
        cJSON_Delete(rec);
        return;
    }
    cJSON *st = obj_at(obj_at(rec, "triggers"), name);
    int64_t now_s = (int64_t)(orch_now_ms() / 1000);
    if (on != !switched_off(rec, name)) {   /* a change: said in its events */
        cJSON_DeleteItemFromObjectCaseSensitive(st, "disabled");
        if (!on)
            cJSON_AddTrueToObject(st, "disabled");
        else
            set_num(st, "last", (double)now_s);
        add_event(st, now_s, on ? "enabled" : "disabled", NULL, 0);
    }
    if (flow_put(q->o->flows, rec) != RZ_OK) {
        reply_error(q, RZ_EDB, "cannot store the flow");
    } else {
        sched_rebuild(q->o);
        arm(q->o);
        reply_json(q, 200, public_flow(q->o, rec, 5));
    }
    cJSON_Delete(rec);
}

void r_named_flow_trigger_disable(req *q)
{
    switch_trigger(q, false);
}

void r_named_flow_trigger_enable(req *q)
{
    switch_trigger(q, true);
}

/* ---- webhooks ---- */

/* The deployment's inputs as text: "trigger" only where the flow declares
 * that input (a flow that does not read the call still runs). */
static char *inputs_for(const char *text, cJSON *inputs)
{
    rz_flow *f = NULL;
    char *json = NULL;
    size_t len = 0;
    bool wants = false;
    if (text && rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) == RZ_OK &&
        rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &len) == RZ_OK) {
        cJSON *doc = cJSON_ParseWithLength(json, len);
        wants = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "inputs"),
                                                 "trigger") != NULL;
        cJSON_Delete(doc);
    }
    rz_free(json);
    rz_flow_free(f);
    if (!wants)
        cJSON_DeleteItemFromObjectCaseSensitive(inputs, "trigger");
    return inputs->child ? cJSON_PrintUnformatted(inputs) : NULL;
}

static const char *header(req *q, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(q->r), name);
}

static bool delivery_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
              || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* HMAC-SHA256 of "<ts>.<body>" with the hook's key against "sha256=<hex>". */
static bool signature_ok(orch *o, const char *sealed_b64, const char *cid, const char *ts,
                         const unsigned char *body, size_t len, const char *sig, uint64_t now)
{
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    if (!sig || strncmp(sig, "sha256=", 7) != 0 || strlen(sig + 7) != 2 * sizeof got ||
        !hex_decode(sig + 7, got, sizeof got))
        return false;
    size_t n = 0;
    unsigned char *sealed = b64_decode(sealed_b64, &n);
    rz_secret *s = NULL;
    int rc = sealed ? rz_vault_unseal(&s, NULL, sealed, n, o->pk, o->sk,
                                      RZ_VAULT_ORCHESTRATOR_JOB, now) : RZ_ESYNTAX;
    free(sealed);
    (void)cid;
    if (rc != RZ_OK)
        return false;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, rz_secret_data(s), rz_secret_len(s));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, body, len);
    crypto_auth_hmacsha256_final(&st, want);
    sodium_memzero(&st, sizeof st);
    rz_secret_free(s);
    return sodium_memcmp(want, got, sizeof got) == 0;
}

/* Forget deliveries older than twice the window (a replay that old is
 * refused as stale anyway). */
static void prune_deliveries(flows *F, const char *prefix, int64_t now_s)
{
    cJSON *all = kv_scan(F, prefix);
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *d = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        if (inum(d, "t") < now_s - 2 * HOOK_WINDOW_S) {
            const char *kv[2] = { cJSON_GetArrayItem(p, 0)->valuestring, NULL };
            (void)!kv_write(F, kv, 1);   /* kept: pruned next time */
        }
        cJSON_Delete(d);
    }
    cJSON_Delete(all);
}

/* One webhook call being answered. */
typedef struct hook_call {
    req *q;
    uint64_t id, v, now_ms;
    const char *name, *delivery;
    cJSON *rec, *ver;
    const cJSON *trig;
    const unsigned char *body;
    size_t len;
} hook_call;

static const cJSON *find_hook(const cJSON *ver, const char *hook)
{
    const cJSON *trig = NULL, *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ver, "triggers")) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        if (type && name && !strcmp(type, "webhook") && !strcmp(name, hook))
            trig = t;
    }
    return trig;
}

/* Is the call one this hook takes: known, small enough, signed within the
 * window, with a delivery id? False: answered. */
static bool hook_admit(hook_call *h)
{
    req *q = h->q;
    int64_t now_s = (int64_t)(h->now_ms / 1000);
    const char *ts = header(q, "X-Rhizos-Timestamp"), *sig = header(q, "X-Rhizos-Signature");
    char *end = NULL;
    long long tsv = ts ? strtoll(ts, &end, 10) : 0;
    const cJSON *trig = h->trig;
    const char *cid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(trig, "secret"));
    const char *sealed = cid ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(h->ver, "hooks"), cid)) : NULL;
    if (!trig || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(trig, "enabled")) ||
        switched_off(h->rec, h->name))
        reply_error(q, RZ_ENOENT, "no enabled webhook '%.64s' on flow %" PRIu64, h->name,
                    h->id);
    else if (h->len > num(trig, "max_body_bytes"))
        reply_error(q, RZ_ETOOBIG, "the body is %zu bytes; this webhook takes at most %"
                    PRIu64, h->len, num(trig, "max_body_bytes"));
    else if (!ts || !sig || !end || *end || ts == end)
        reply_error(q, RZ_EAUTH, "a webhook call must be signed (X-Rhizos-Timestamp and "
                    "X-Rhizos-Signature: sha256=<hex HMAC-SHA256 of \"<timestamp>.<body>\">)");
    else if (tsv < now_s - HOOK_WINDOW_S || tsv > now_s + HOOK_WINDOW_S)
        reply_error(q, RZ_EAUTH, "the timestamp is outside the %d-second window (stale or "
                    "replayed call)", HOOK_WINDOW_S);
    else if (!sealed || !signature_ok(q->o, sealed, cid, ts, h->body, h->len, sig, h->now_ms))
        reply_error(q, RZ_EAUTH, "the signature does not match");
    else if (!delivery_ok(h->delivery))
        reply_error(q, RZ_EINVAL, "X-Rhizos-Delivery must be 1-128 of A-Z a-z 0-9 . _ -");
    return !q->answered;
}

/* A delivery seen before whose run exists: 409 naming it. */
static bool hook_replayed(hook_call *h, const char *hkey)
{
    cJSON *seen = kv_json(h->q->o->flows, hkey);
    bool again = seen && dep_is(h->q->o, num(seen, "dep"), owner_of(h->rec), num(seen, "ms"));
    if (again) {
        cJSON *err = cJSON_CreateObject();
        cJSON *e = cJSON_AddObjectToObject(err, "error");
        cJSON_AddStringToObject(e, "code", rz_status_name(RZ_EEXISTS));
        cJSON_AddStringToObject(e, "message", "this delivery was received before");
        cJSON_AddNumberToObject(err, "run", (double)num(seen, "dep"));
        reply_json(h->q, 409, err);
    }
    cJSON_Delete(seen);
    return again;
}

/* The run's inputs: the version's, and `trigger` {body, name, delivery}
 * (the body parsed when it is JSON). */
static char *hook_inputs(hook_call *h, const char *text)
{
    char *bodytext = strndup((const char *)h->body, h->len);
    cJSON *inputs = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(h->ver, "inputs"), 1);
    if (!cJSON_IsObject(inputs)) {
        cJSON_Delete(inputs);
        inputs = cJSON_CreateObject();
    }
    cJSON *t = cJSON_CreateObject();
    cJSON *parsed = bodytext ? cJSON_Parse(bodytext) : NULL;
    cJSON_AddItemToObject(t, "body", parsed ? parsed : cJSON_CreateString(bodytext ?: ""));
    cJSON_AddStringToObject(t, "name", h->name);
    cJSON_AddStringToObject(t, "delivery", h->delivery);
    cJSON_AddItemToObject(inputs, "trigger", t);
    free(bodytext);
    char *out = inputs_for(text, inputs);
    cJSON_Delete(inputs);
    return out;
}

/* The flow record (with the event), the run's and the delivery's, in one
 * commit. */
static int hook_record(hook_call *h, const char *hkey, uint64_t dep)
{
    char fkey[32], dkey[32];
    snprintf(fkey, sizeof fkey, "f/%" PRIu64, h->id);
    snprintf(dkey, sizeof dkey, "d/%" PRIu64, dep);
    cJSON *run = cJSON_CreateObject();
    cJSON_AddNumberToObject(run, "flow", (double)h->id);
    cJSON_AddNumberToObject(run, "version", (double)h->v);
    cJSON_AddStringToObject(run, "trigger", h->name);
    cJSON_AddStringToObject(run, "delivery", h->delivery);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "t", (double)(h->now_ms / 1000));
    cJSON_AddNumberToObject(d, "dep", (double)dep);
    cJSON_AddNumberToObject(d, "ms", (double)h->now_ms);
    char *ftext = cJSON_PrintUnformatted(h->rec), *dtext = cJSON_PrintUnformatted(run);
    char *htext = cJSON_PrintUnformatted(d);
    const char *kv[] = { fkey, ftext, dkey, dtext, hkey, htext };
    int rc = ftext && dtext && htext ? kv_write(h->q->o->flows, kv, 3) : RZ_ENOMEM;
    free(ftext);
    free(dtext);
    free(htext);
    cJSON_Delete(run);
    cJSON_Delete(d);
    return rc;
}

static void hook_run(hook_call *h, const char *hkey)
{
    req *q = h->q;
    orch *o = q->o;
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h->ver, "text"));
    char *in = hook_inputs(h, text);
    uint64_t dep = 0;
    int rc = text ? rz_engine_deploy(o->e, text, strlen(text), owner_of(h->rec), in, h->now_ms,
                                     &dep, NULL) : RZ_ENOENT;
    free(in);
    cJSON *st = obj_at(obj_at(h->rec, "triggers"), h->name);
    int64_t now_s = (int64_t)(h->now_ms / 1000);
    if (rc != RZ_OK) {
        add_event(st, now_s, rc == RZ_EFUNDS ? "refused" : "failed", rz_error_last()->message, 0);
        (void)!flow_put(o->flows, h->rec);   /* the refusal is recorded, or said on stderr */
        reply_rz(q, rc);
        return;
    }
    const char *creds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h->ver, "creds"));
    add_event(st, now_s, "fired", NULL, dep);
    if ((creds && auth_put_creds(o, dep, creds) != RZ_OK) || hook_record(h, hkey, dep) != RZ_OK) {
        (void)!rz_engine_deployment_cancel(o->e, dep, h->now_ms);   /* just made */
        reply_error(q, RZ_EDB, "cannot record the delivery; no run was started");
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "run", (double)dep);
    cJSON_AddNumberToObject(doc, "flow_id", (double)h->id);
    cJSON_AddNumberToObject(doc, "version", (double)h->v);
    reply_json(q, 202, doc);
}

void r_hook(req *q)
{
    flows *F = q->o->flows;
    hook_call h = { .q = q, .name = q->params[1], .now_ms = orch_now_ms(),
                    .delivery = header(q, "X-Rhizos-Delivery") };
    if (!param_u64(q, 0, &h.id))
        return;
    h.rec = F ? flow_rec(F, h.id) : NULL;
    h.v = num(h.rec, "active");
    h.ver = h.rec ? version_rec(F, h.id, h.v) : NULL;
    h.trig = find_hook(h.ver, h.name);
    struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
    h.len = evbuffer_get_length(in);
    h.body = h.len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
    char prefix[256], hkey[400];
    snprintf(prefix, sizeof prefix, "h/%" PRIu64 "/%s/", h.id, h.name);
    snprintf(hkey, sizeof hkey, "%s%s", prefix, h.delivery ? h.delivery : "");
    if (hook_admit(&h) && !hook_replayed(&h, hkey)) {
        prune_deliveries(F, prefix, (int64_t)(h.now_ms / 1000));
        hook_run(&h, hkey);
    }
    cJSON_Delete(h.ver);
    cJSON_Delete(h.rec);
}

/* ---- flow and event triggers (docs/triggers.md) ----
 * A run of flow A ending fires the owner's flows whose active version
 * has {type: flow, flow: A, status}; an event published through the API
 * fires the owner's flows with {type: event, event: NAME}. Each firing
 * deploys the active version with `trigger` as its input (where the flow
 * declares it), holds its cost at fire time (refused: recorded with the
 * reason), and is recorded with its run in one commit of DATA/flows; a
 * source run fires a flow's trigger once (o/<run>/<flow>/<trigger>, checked
 * against the engine like a webhook delivery, so a crash that lost the
 * fire lets it fire again). Cycles of flow triggers are refused at deploy;
 * a chain is cut at FLOW_CHAIN_MAX anyway. */

#define FLOW_CHAIN_MAX 16

/* One firing of a flow or event trigger. */
typedef struct follow {
    orch *o;
    cJSON *rec;              /* the flow fired (its record) */
    const cJSON *ver;        /* its active version */
    const char *trig;        /* the trigger's name */
    cJSON *trigger;          /* the `trigger` input (taken) */
    const char *okey;        /* the once-only key, or NULL */
    uint64_t source, chain, now_ms;
} follow;

static uint64_t follow_fire(follow *f)
{
    orch *o = f->o;
    flows *F = o->flows;
    uint64_t id = num(f->rec, "id"), v = num(f->rec, "active");
    rz_ledger_id owner = owner_of(f->rec);
    cJSON *st = obj_at(obj_at(f->rec, "triggers"), f->trig);
    int64_t now_s = (int64_t)(f->now_ms / 1000);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->ver, "text"));
    cJSON *inputs = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(f->ver, "inputs"), 1);
    if (!cJSON_IsObject(inputs)) {
        cJSON_Delete(inputs);
        inputs = cJSON_CreateObject();
    }
    cJSON_AddItemToObject(inputs, "trigger", f->trigger);
    f->trigger = NULL;
    char *in = inputs_for(text, inputs);
    cJSON_Delete(inputs);
    uint64_t dep = 0;
    int rc = f->chain > FLOW_CHAIN_MAX ? RZ_EDENIED : text
        ? rz_engine_deploy(o->e, text, strlen(text), owner, in, f->now_ms, &dep, NULL)
        : RZ_ENOENT;
    free(in);
    if (rc != RZ_OK) {
        add_event(st, now_s, rc == RZ_EFUNDS ? "refused" : "failed",
                  rc == RZ_EDENIED ? "a chain of more than 16 flow triggers"
                  : text ? rz_error_last()->message : "its version is gone", 0);
        (void)!flow_put(F, f->rec);   /* recorded, or said on stderr */
        return 0;
    }
    const char *creds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->ver, "creds"));
    add_event(st, now_s, "fired", NULL, dep);
    cJSON *run = cJSON_CreateObject();
    cJSON_AddNumberToObject(run, "flow", (double)id);
    cJSON_AddNumberToObject(run, "version", (double)v);
    cJSON_AddStringToObject(run, "trigger", f->trig);
    if (f->source)
        cJSON_AddNumberToObject(run, "source", (double)f->source);
    cJSON_AddNumberToObject(run, "chain", (double)f->chain);
    cJSON *once = cJSON_CreateObject();
    cJSON_AddNumberToObject(once, "dep", (double)dep);
    cJSON_AddNumberToObject(once, "ms", (double)f->now_ms);
    char fkey[32], dkey[32];
    snprintf(fkey, sizeof fkey, "f/%" PRIu64, id);
    snprintf(dkey, sizeof dkey, "d/%" PRIu64, dep);
    char *ftext = cJSON_PrintUnformatted(f->rec), *dtext = cJSON_PrintUnformatted(run);
    char *otext = cJSON_PrintUnformatted(once);
    const char *kv[] = { fkey, ftext, dkey, dtext, f->okey, otext };
    if ((creds && auth_put_creds(o, dep, creds) != RZ_OK) || !ftext || !dtext || !otext ||
        kv_write(F, kv, f->okey ? 3 : 2) != RZ_OK) {
        (void)!rz_engine_deployment_cancel(o->e, dep, f->now_ms);   /* just made */
        dep = 0;
    } else if (f->okey && getenv("RHIZOS_TEST_KILL_AFTER_FOLLOW")) {
        /* Tests only: die between the fire's record and the engine's
         * commit of its run (and of the end it follows), the window the
         * replay of that end covers (tests/e2e/approvals.py, LostFire). */
        raise(SIGKILL);
    }
    free(ftext);
    free(dtext);
    free(otext);
    cJSON_Delete(run);
    cJSON_Delete(once);
    return dep;
}

static bool status_matches(const char *want, rz_run_state s)
{
    if (!want || !strcmp(want, "succeeded"))
        return s == RZ_RUN_SUCCEEDED;
    if (!strcmp(want, "failed"))
        return s == RZ_RUN_FAILED || s == RZ_RUN_CANCELLED;
    return !strcmp(want, "any");
}

/* The flows of `owner` and, for each, its active version's triggers of
 * `type` whose `key` is `value`: calls fn for each. */
typedef void match_fn(orch *o, cJSON *rec, const cJSON *ver, const cJSON *t, void *ud);

static void each_trigger(orch *o, rz_ledger_id owner, const char *type, const char *key,
                         const char *value, match_fn *fn, void *ud)
{
    cJSON *all = kv_scan(o->flows, "f/");
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *rec = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        if (!rec || !owner_is(rec, owner)) {
            cJSON_Delete(rec);
            continue;
        }
        cJSON *ver = version_rec(o->flows, num(rec, "id"), num(rec, "active"));
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ver, "triggers")) {
            const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, key));
            if (ty && v && !strcmp(ty, type) && !strcmp(v, value) &&
                !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "enabled")) &&
                !switched_off(rec, cJSON_GetStringValue(
                                       cJSON_GetObjectItemCaseSensitive(t, "name"))))
                fn(o, rec, ver, t, ud);
        }
        cJSON_Delete(ver);
        cJSON_Delete(rec);
    }
    cJSON_Delete(all);
}

typedef struct finished {
    uint64_t dep, chain, now_ms;
    rz_run_state state;
    const char *name;
    cJSON *status;           /* read on the first follower: a big run's
                                status is large, and most have none */
    bool read;
} finished;

static const cJSON *finished_outputs(orch *o, finished *fin)
{
    if (!fin->read) {
        char *text = NULL;
        fin->read = true;
        if (rz_engine_deployment_status(o->e, fin->dep, &text) == RZ_OK)
            fin->status = cJSON_Parse(text);
        rz_free(text);
    }
    return cJSON_GetObjectItemCaseSensitive(fin->status, "outputs");
}

static void on_source_end(orch *o, cJSON *rec, const cJSON *ver, const cJSON *t, void *ud)
{
    finished *fin = ud;
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "status"));
    const char *trig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
    if (!status_matches(want, fin->state) || !trig)
        return;
    char okey[200];
    snprintf(okey, sizeof okey, "o/%" PRIu64 "/%" PRIu64 "/%.64s", fin->dep, num(rec, "id"),
             trig);
    cJSON *seen = kv_json(o->flows, okey);
    bool done = seen && dep_is(o, num(seen, "dep"), owner_of(rec), num(seen, "ms"));
    if (seen && !done)   /* recorded, but a crash took its run: fired again */
        add_event(obj_at(obj_at(rec, "triggers"), trig), (int64_t)(fin->now_ms / 1000),
                  "lost", "the orchestrator stopped before the run was stored; the end "
                  "of the run it follows fires it again", 0);
    cJSON_Delete(seen);
    if (done)
        return;
    cJSON *tr = cJSON_CreateObject();
    cJSON_AddStringToObject(tr, "type", "flow");
    cJSON_AddStringToObject(tr, "flow", fin->name);
    cJSON_AddStringToObject(tr, "status", rz_run_state_name(fin->state));
    cJSON_AddNumberToObject(tr, "deployment", (double)fin->dep);
    const cJSON *outputs = finished_outputs(o, fin);
    cJSON_AddItemToObject(tr, "outputs", outputs ? cJSON_Duplicate(outputs, 1)
                                                 : cJSON_CreateObject());
    follow f = { .o = o, .rec = rec, .ver = ver, .trig = trig, .trigger = tr, .okey = okey,
                 .source = fin->dep, .chain = fin->chain + 1, .now_ms = fin->now_ms };
    (void)follow_fire(&f);   /* its outcome is recorded on the trigger */
    cJSON_Delete(f.trigger);
}

void flows_on_finished(orch *o, uint64_t dep)
{
    if (!o->flows || o->stopping || !o->flows->followers)
        return;
    char key[32];
    snprintf(key, sizeof key, "d/%" PRIu64, dep);
    cJSON *r = kv_json(o->flows, key);
    cJSON *src = r ? flow_rec(o->flows, num(r, "flow")) : NULL;
    rz_run_state state;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(src, "name"));
    if (name && rz_engine_deployment_state(o->e, dep, &state) == RZ_OK &&
        state != RZ_RUN_RUNNING) {
        finished fin = { .dep = dep, .chain = num(r, "chain"), .now_ms = orch_now_ms(),
                         .state = state, .name = name };
        each_trigger(o, owner_of(src), "flow", "flow", name, on_source_end, &fin);
        cJSON_Delete(fin.status);
    }
    cJSON_Delete(src);
    cJSON_Delete(r);
}

/* ---- events published through the API ---- */

typedef struct published {
    const char *event;
    const cJSON *data;
    uint64_t now_ms;
    uint64_t chain;          /* 0: from the API (1) */
    cJSON *runs, *refused;
} published;

static void on_event_published(orch *o, cJSON *rec, const cJSON *ver, const cJSON *t,
                               void *ud)
{
    published *pb = ud;
    const char *trig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
    if (!trig)
        return;
    cJSON *tr = cJSON_CreateObject();
    cJSON_AddStringToObject(tr, "type", "event");
    cJSON_AddStringToObject(tr, "event", pb->event);
    cJSON_AddItemToObject(tr, "data", pb->data ? cJSON_Duplicate(pb->data, 1)
                                               : cJSON_CreateNull());
    follow f = { .o = o, .rec = rec, .ver = ver, .trig = trig, .trigger = tr,
                 .chain = pb->chain ? pb->chain : 1, .now_ms = pb->now_ms };
    uint64_t dep = follow_fire(&f);
    cJSON_Delete(f.trigger);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "flow_id", (double)num(rec, "id"));
    cJSON_AddStringToObject(x, "trigger", trig);
    if (dep) {
        cJSON_AddNumberToObject(x, "run", (double)dep);
        cJSON_AddItemToArray(pb->runs, x);
    } else {
        cJSON_AddItemToArray(pb->refused, x);
    }
}

static bool event_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return n > 0 && n <= 64;
}

void r_event_publish(req *q)
{
    static const char *const fields[] = { "event", "data", NULL };
    const char *event = NULL;
    if (!body_fields(q, fields) || !body_str(q, "event", true, &event))
        return;
    if (!event_name_ok(event)) {
        reply_error(q, RZ_EINVAL, "\"event\" is 1-64 letters, digits, '_' or '-'");
        return;
    }
    if (!q->o->flows) {
        reply_error(q, RZ_EUNSUPPORTED, "this orchestrator keeps no named flows");
        return;
    }
    published pb = { .event = event, .now_ms = orch_now_ms(),
                     .data = cJSON_GetObjectItemCaseSensitive(q->body, "data"),
                     .runs = cJSON_CreateArray(), .refused = cJSON_CreateArray() };
    each_trigger(q->o, q->who.account, "event", "event", event, on_event_published, &pb);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "event", event);
    cJSON_AddItemToObject(doc, "runs", pb.runs);
    cJSON_AddItemToObject(doc, "refused", pb.refused);
    reply_json(q, 202, doc);
}

/* ---- events from service steps ---- */

void flows_on_service_event(orch *o, uint64_t job, const char *event, const char *data)
{
    rz_engine_job_info ji;
    if (!o->flows || o->stopping || !o->flows->listeners || !event_name_ok(event) ||
        rz_engine_job_get(o->e, job, &ji) != RZ_OK)
        return;
    /* A run that an event made, emitting events that run flows...: the
     * chain of its deployment goes on, and is cut as flow triggers are. */
    char key[32];
    snprintf(key, sizeof key, "d/%" PRIu64, ji.deployment);
    cJSON *r = ji.deployment ? kv_json(o->flows, key) : NULL;
    cJSON *d = data ? cJSON_Parse(data) : NULL;
    published pb = { .event = event, .data = d, .now_ms = orch_now_ms(),
                     .chain = num(r, "chain") + 1, .runs = cJSON_CreateArray(),
                     .refused = cJSON_CreateArray() };
    each_trigger(o, ji.client, "event", "event", event, on_event_published, &pb);
    cJSON_Delete(pb.runs);
    cJSON_Delete(pb.refused);
    cJSON_Delete(d);
    cJSON_Delete(r);
}

/* ---- cycles of flow triggers, refused at deploy ---- */

/* Flow names of the owner that follow `name` (their triggers name it),
 * with `self`'s triggers taken from `mine` instead of its stored version. */
static bool follows(const cJSON *trigs, const char *src)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, trigs) {
        const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
        const char *f = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "flow"));
        if (ty && f && !strcmp(ty, "flow") && !strcmp(f, src))
            return true;
    }
    return false;
}

bool flows_cycle(orch *o, rz_ledger_id owner, const char *self, const cJSON *mine,
                 char *path, size_t cap)
{
    if (!o->flows)
        return false;
    /* name -> triggers, for the owner's flows (self's from `mine`). */
    cJSON *g = cJSON_CreateObject();
    cJSON *all = kv_scan(o->flows, "f/");
    const cJSON *p;
    cJSON_ArrayForEach(p, all) {
        cJSON *rec = cJSON_Parse(cJSON_GetArrayItem(p, 1)->valuestring);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "name"));
        if (rec && name && owner_is(rec, owner) && strcmp(name, self) != 0) {
            cJSON *ver = version_rec(o->flows, num(rec, "id"), num(rec, "active"));
            cJSON *tr = cJSON_DetachItemFromObjectCaseSensitive(ver, "triggers");
            cJSON_AddItemToObject(g, name, tr ? tr : cJSON_CreateArray());
            cJSON_Delete(ver);
        }
        cJSON_Delete(rec);
    }
    cJSON_Delete(all);
    cJSON_AddItemToObject(g, self, cJSON_Duplicate(mine, 1));
    /* Breadth first from self along "is followed by"; back at self: a cycle. */
    size_t n = (size_t)cJSON_GetArraySize(g);
    const char **queue = calloc(n + 1, sizeof *queue);
    const char **from = calloc(n + 1, sizeof *from);
    size_t head = 0, tail = 0;
    bool cycle = false;
    if (queue && from)
        queue[tail++] = self;
    while (!cycle && head < tail) {
        const char *cur = queue[head++];
        for (const cJSON *c = g->child; c && !cycle; c = c->next) {
            if (!follows(c, cur))
                continue;
            if (!strcmp(c->string, self)) {
                /* self <- ... <- cur: write it from self forwards */
                size_t len = (size_t)snprintf(path, cap, "%s", self);
                const char *chain[64];
                size_t k = 0;
                for (const char *x = cur; x && k < 64 && strcmp(x, self) != 0;) {
                    chain[k++] = x;
                    const char *up = NULL;
                    for (size_t i = 0; i < tail; i++)
                        if (queue[i] == x)
                            up = from[i];
                    x = up;
                }
                while (k > 0 && len < cap)
                    len += (size_t)snprintf(path + len, cap - len, " -> %s", chain[--k]);
                if (len < cap)
                    snprintf(path + len, cap - len, " -> %s", self);
                cycle = true;
                break;
            }
            bool seen = false;
            for (size_t i = 0; i < tail && !seen; i++)
                seen = !strcmp(queue[i], c->string);
            if (!seen && tail < n + 1) {
                from[tail] = cur;
                queue[tail++] = c->string;
            }
        }
    }
    free(queue);
    free(from);
    cJSON_Delete(g);
    return cycle;
}

/* ---- diff of two versions ---- */

/* A version's flow as canonical builder JSON (nodes by id), or NULL. */
static cJSON *version_doc(flows *F, uint64_t id, uint64_t v)
{
    cJSON *ver = version_rec(F, id, v);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ver, "text"));
    rz_flow *f = NULL;
    char *json = NULL;
    size_t len = 0;
    cJSON *doc = NULL;
    if (text && rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) == RZ_OK &&
        rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &len) == RZ_OK)
        doc = cJSON_ParseWithLength(json, len);
    rz_free(json);
    rz_flow_free(f);
    cJSON_Delete(ver);
    return doc;
}

static const cJSON *node_of(const cJSON *doc, const char *id)
{
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(doc, "nodes")) {
        const char *x = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "id"));
        if (x && !strcmp(x, id))
            return n;
    }
    return NULL;
}

/* The keys whose values differ between two maps (either side absent too). */
static cJSON *changed_keys(const cJSON *a, const cJSON *b, const char *skip)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        if ((!skip || strcmp(x->string, skip)) && (!y || !cJSON_Compare(x, y, 1)))
            cJSON_AddItemToArray(out, cJSON_CreateString(x->string));
    }
    cJSON_ArrayForEach(x, b)
        if ((!skip || strcmp(x->string, skip)) && !cJSON_GetObjectItemCaseSensitive(a, x->string))
            cJSON_AddItemToArray(out, cJSON_CreateString(x->string));
    return out;
}

/* {"from","to","steps":{"added","removed","changed":[{"step","fields"}]},
 *  "flow":[top-level keys changed, steps aside]} */
static cJSON *diff_docs(const cJSON *a, const cJSON *b)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *steps = cJSON_AddObjectToObject(out, "steps");
    cJSON *added = cJSON_AddArrayToObject(steps, "added");
    cJSON *removed = cJSON_AddArrayToObject(steps, "removed");
    cJSON *changed = cJSON_AddArrayToObject(steps, "changed");
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(a, "nodes")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "id"));
        const cJSON *m = id ? node_of(b, id) : NULL;
        if (id && !m) {
            cJSON_AddItemToArray(removed, cJSON_CreateString(id));
        } else if (id && !cJSON_Compare(n, m, 1)) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "step", id);
            cJSON_AddItemToObject(c, "fields", changed_keys(n, m, "position"));
            if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c, "fields")))
                cJSON_AddItemToArray(changed, c);
            else
                cJSON_Delete(c);   /* moved on the canvas only */
        }
    }
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(b, "nodes")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "id"));
        if (id && !node_of(a, id))
            cJSON_AddItemToArray(added, cJSON_CreateString(id));
    }
    cJSON *top = changed_keys(a, b, "nodes");
    cJSON_AddItemToObject(out, "flow", top);
    return out;
}

void r_named_flow_diff(req *q)
{
    uint64_t from, to;
    if (!query_u64(q, "from", 0, UINT32_MAX, &from) || !query_u64(q, "to", 0, UINT32_MAX, &to))
        return;
    cJSON *rec = visible_flow(q, 0);
    if (!rec)
        return;
    uint64_t id = num(rec, "id");
    if (!to)
        to = num(rec, "active");
    cJSON *a = from ? version_doc(q->o->flows, id, from) : NULL;
    cJSON *b = version_doc(q->o->flows, id, to);
    if (!from) {
        reply_error(q, RZ_EINVAL, "give ?from=VERSION (and ?to=VERSION, default the active "
                    "one)");
    } else if (!a || !b) {
        reply_error(q, RZ_ENOENT, "flow %" PRIu64 " has no version %" PRIu64, id,
                    !a ? from : to);
    } else {
        cJSON *d = diff_docs(a, b);
        cJSON_AddNumberToObject(d, "flow_id", (double)id);
        cJSON_AddNumberToObject(d, "from", (double)from);
        cJSON_AddNumberToObject(d, "to", (double)to);
        reply_json(q, 200, d);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(rec);
}

/* ---- clearing the step cache (docs/triggers.md, "Clearing the cache") ----
 *
 * A clear is a mark, k/<owner> = [{"flow","step","ms"}, ...]: results of
 * the owner's matching steps taken at or before "ms" are never reused
 * again. The deployments keep their outputs (their status shows them);
 * only their reuse ends. A newer mark covers the older ones it implies. */

#define CACHE_MARKS_MAX 256

static bool mark_covers(const cJSON *m, const char *flow, const char *step)
{
    const char *mf = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "flow"));
    const char *ms = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "step"));
    return (!mf || (flow && !strcmp(mf, flow))) && (!ms || (step && !strcmp(ms, step)));
}

int flows_cache_clear(orch *o, rz_ledger_id owner, const char *flow, const char *step,
                      uint64_t ms)
{
    if (!o->flows)
        return RZ_EUNSUPPORTED;
    char key[40], h[33];
    owner_hex(owner, h);
    snprintf(key, sizeof key, "k/%s", h);
    cJSON *marks = kv_json(o->flows, key), *keep = cJSON_CreateArray();
    cJSON *mine = cJSON_CreateObject();
    if (!keep || !mine) {
        cJSON_Delete(marks);
        cJSON_Delete(keep);
        cJSON_Delete(mine);
        return RZ_ENOMEM;
    }
    cJSON_AddItemToObject(mine, "flow", flow ? cJSON_CreateString(flow) : cJSON_CreateNull());
    cJSON_AddItemToObject(mine, "step", step ? cJSON_CreateString(step) : cJSON_CreateNull());
    cJSON_AddNumberToObject(mine, "ms", (double)ms);
    const cJSON *m;
    cJSON_ArrayForEach(m, marks) {   /* the ones this one does not imply */
        const char *mf = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "flow"));
        const char *ms2 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "step"));
        if (!mark_covers(mine, mf, ms2))
            cJSON_AddItemToArray(keep, cJSON_Duplicate(m, true));
    }
    cJSON_Delete(marks);
    if (cJSON_GetArraySize(keep) >= CACHE_MARKS_MAX) {
        /* Too many narrow marks: one that clears everything up to now
         * (more than asked, never less). */
        cJSON_Delete(keep);
        keep = cJSON_CreateArray();
        cJSON_ReplaceItemInObject(mine, "flow", cJSON_CreateNull());
        cJSON_ReplaceItemInObject(mine, "step", cJSON_CreateNull());
    }
    cJSON_AddItemToArray(keep, mine);
    int rc = kv_put_json(o->flows, key, keep);
    cJSON_Delete(keep);
    return rc;
}

int flows_cache_filter(orch *o, rz_ledger_id owner, uint64_t from, char **map)
{
    if (!o->flows || !*map)
        return RZ_OK;
    char key[40], h[33];
    owner_hex(owner, h);
    snprintf(key, sizeof key, "k/%s", h);
    cJSON *marks = kv_json(o->flows, key);
    if (!cJSON_GetArraySize(marks)) {
        cJSON_Delete(marks);
        return RZ_OK;
    }
    /* The flow the results are of: the deployment's named flow. */
    snprintf(key, sizeof key, "d/%" PRIu64, from);
    cJSON *d = kv_json(o->flows, key);
    cJSON *rec = d ? flow_rec(o->flows, num(d, "flow")) : NULL;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "name"));
    int rc = RZ_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, marks) {
        const char *mf = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "flow"));
        if (rc != RZ_OK || (mf && (!name || strcmp(mf, name) != 0)))
            continue;
        char *out = NULL;
        rc = rz_engine_reuse_drop(&out, *map,
                                  cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "step")),
                                  num(m, "ms"), NULL);
        if (rc == RZ_OK) {
            rz_free(*map);
            *map = out;
        }
    }
    cJSON_Delete(rec);
    cJSON_Delete(d);
    cJSON_Delete(marks);
    return rc;
}
