/* The engine stores per-step changes, not whole deployments: what it reads
 * back after any commit must still be what it had in memory. A seeded
 * property test drives deployments (retries, timeouts, `when`, failures
 * that continue, declines, cancels) one engine call at a time and, after
 * every call, reopens the engine from disk and compares everything a
 * caller can see. Also: the flow text is stored once, apart from the
 * deployment record, and a store written before that layout (the flow in
 * the deployment record, bare JSON) is read and moved on. After every
 * call, too, a status followed from rz_engine_deployment_changes alone
 * equals the status. And a node's stored caps (printed once, kept until
 * they change) follow its trust and its rejoins. RZ_RECORDS_CALLS
 * (default 120) calls per seed, 3 seeds (1.5 s; 8 s under ASan). */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <lmdb.h>

#include "rhizos/engine.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100}," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":3}"

/* Every feature of a run that leaves step events: retries with backoff, a
 * timeout, a failure that continues, a `when` on an upstream output. */
static const char FLOW[] =
    "flux: 1\nname: prop\ninputs:\n  x: {type: number, default: 0}\nsteps:\n"
    "  a: {module: m, max_cost_micros: 500000}\n"
    "  b: {module: m, needs: [a], retry: {max_attempts: 3, initial_ms: 40},"
    " max_cost_micros: 500000}\n"
    "  c: {module: m, needs: [a], timeout_s: 1, max_cost_micros: 500000}\n"
    "  d: {module: m, needs: [b, c], on_failure: continue, max_cost_micros: 500000}\n"
    "  e: {module: m, needs: [d], when: \"steps.b.outputs.v > 5\","
    " max_cost_micros: 500000}\n"
    "  f: {module: m, needs: [a], max_cost_micros: 500000}\n"
    "  g: {module: m, needs: [f, e], on_failure: continue, max_cost_micros: 500000}\n";

/* A stream's view of one deployment: its status as first read, kept up to
 * date with the steps rz_engine_deployment_changes names. */
typedef struct mirror {
    cJSON *doc;               /* NULL: not followed yet */
    uint64_t pos;
} mirror;

typedef struct world {
    char dir[64];
    mirror m[128];
    rz_engine *e;
    uint64_t rng, now, node;
    rz_ledger_id client;
    struct held { uint64_t job; uint32_t attempt; } held[8];
    size_t n_held;
} world;

static uint64_t below(world *w, uint64_t n)
{
    uint64_t x = w->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    w->rng = x;
    return (x * 2685821657736338717ull) % n;
}

static void open_w(world *w)
{
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 1ull << 40;
    int rc = rz_engine_open(&w->e, w->dir, &o);
    if (rc != RZ_OK)
        fail_msg("open: %s", rz_error_last()->message);
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        assert_non_null(*buf);
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

/* Everything a caller can read of the deployments and their jobs, except
 * what is memory only by contract (waiting reasons, heartbeats). */
static char *snapshot(rz_engine *e)
{
    char *buf = NULL, line[512];
    size_t len = 0, cap = 0;
    append(&buf, &len, &cap, "");
    uint64_t ids[1024];
    size_t n = rz_engine_deployment_list(e, NULL, 0, ids, 1024);
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        assert_int_equal(rz_engine_deployment_status(e, ids[i], &json), RZ_OK);
        /* A step's waiting reason is worked out again after open. */
        cJSON *doc = cJSON_Parse(json), *st;
        assert_non_null(doc);
        cJSON_ArrayForEach(st, cJSON_GetObjectItem(doc, "steps"))
            cJSON_DeleteItemFromObject(st, "waiting_reason");
        char *text = cJSON_PrintUnformatted(doc);
        append(&buf, &len, &cap, text);
        cJSON_free(text);
        cJSON_Delete(doc);
        rz_free(json);
        rz_engine_deployment_info di;
        assert_int_equal(rz_engine_deployment_get(e, ids[i], &di), RZ_OK);
        snprintf(line, sizeof line, "\ndep %llu %d %zu\n",
                 (unsigned long long)di.id, (int)di.state, di.n_steps);
        append(&buf, &len, &cap, line);
    }
    n = rz_engine_job_list(e, NULL, 0, ids, 1024);
    for (size_t i = 0; i < n; i++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(e, ids[i], &ji), RZ_OK);
        snprintf(line, sizeof line, "job %llu %d a%u n%llu c%llu r%llu q%llu %s %s %s\n",
                 (unsigned long long)ji.id, (int)ji.state, ji.attempt,
                 (unsigned long long)ji.node, (unsigned long long)ji.cost_micros,
                 (unsigned long long)ji.run_ms,
                 (unsigned long long)ji.queue_deadline_ms, ji.step,
                 ji.outputs_json ? ji.outputs_json : "-",
                 ji.error ? ji.error : "-");
        append(&buf, &len, &cap, line);
    }
    return buf;
}

/* The property: what a reopen reads back equals what was in memory. */
static void read_back_equals(world *w, int call)
{
    char *before = snapshot(w->e);
    rz_engine_close(w->e);
    w->e = NULL;
    open_w(w);
    char *after = snapshot(w->e);
    if (strcmp(before, after) != 0)
        fail_msg("call %d: read back differs\n--- memory\n%s\n--- disk\n%s",
                 call, before, after);
    free(before);
    free(after);
    assert_int_equal(rz_engine_check(w->e), RZ_OK);
}

static cJSON *status_doc(rz_engine *e, uint64_t dep)
{
    char *json = NULL;
    assert_int_equal(rz_engine_deployment_status(e, dep, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json), *st;
    rz_free(json);
    assert_non_null(doc);
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(doc, "steps"))
        cJSON_DeleteItemFromObject(st, "waiting_reason");   /* memory only */
    return doc;
}

/* Every running deployment's mirror, brought up to date from its changes
 * alone, equals its status: the change log misses nothing. A reopen
 * starts the log again, so mirrors are then read afresh (`fresh`). */
static void mirrors_follow(world *w, bool fresh)
{
    uint64_t ids[1024];
    size_t n = rz_engine_deployment_list(w->e, NULL, 0, ids, 1024);
    for (size_t i = 0; i < n; i++) {
        rz_run_state st;
        assert_int_equal(rz_engine_deployment_state(w->e, ids[i], &st), RZ_OK);
        assert_true(ids[i] < 128);
        mirror *m = &w->m[ids[i]];
        if (st != RZ_RUN_RUNNING) {
            cJSON_Delete(m->doc);
            m->doc = NULL;
            continue;
        }
        size_t steps[16];
        uint64_t next;
        if (!m->doc || fresh) {
            cJSON_Delete(m->doc);
            m->doc = status_doc(w->e, ids[i]);
            (void)rz_engine_deployment_changes(w->e, ids[i], UINT64_MAX,
                                               steps, 16, &m->pos);
            continue;
        }
        size_t k;
        while ((k = rz_engine_deployment_changes(w->e, ids[i], m->pos, steps,
                                                 16, &next)) > 0) {
            for (size_t s = 0; s < k; s++) {
                char *json = NULL;
                assert_int_equal(rz_engine_deployment_step_status(
                                     w->e, ids[i], steps[s], &json), RZ_OK);
                cJSON *one = cJSON_Parse(json);
                rz_free(json);
                assert_non_null(one);
                cJSON *id = cJSON_DetachItemFromObject(one, "step");
                assert_true(cJSON_IsString(id));
                cJSON_DeleteItemFromObject(one, "waiting_reason");
                cJSON_ReplaceItemInObject(cJSON_GetObjectItem(m->doc, "steps"),
                                          id->valuestring, one);
                cJSON_Delete(id);
            }
            assert_true(next > m->pos);
            m->pos = next;
        }
        assert_int_equal(next, m->pos);
        cJSON *now = status_doc(w->e, ids[i]);
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(m->doc, "steps"));
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(now, "steps"));
        if (strcmp(a, b) != 0) {
            cJSON *x, *y;
            cJSON_ArrayForEach(x, cJSON_GetObjectItem(m->doc, "steps")) {
                y = cJSON_GetObjectItem(cJSON_GetObjectItem(now, "steps"),
                                        x->string);
                if (!cJSON_Compare(x, y, true)) {
                    char *p = cJSON_PrintUnformatted(x);
                    char *q = cJSON_PrintUnformatted(y);
                    print_error("step %s: followed %s, status %s\n",
                                x->string, p, q);
                    cJSON_free(p);
                    cJSON_free(q);
                }
            }
            fail_msg("deployment %llu: changes missed",
                     (unsigned long long)ids[i]);
        }
        cJSON_free(a);
        cJSON_free(b);
        cJSON_Delete(now);
    }
}

static void act(world *w)
{
    w->now += below(w, 400);
    uint64_t r = below(w, 100);
    if (r < 8) {
        uint64_t dep;
        int rc = rz_engine_deploy(w->e, FLOW, strlen(FLOW), w->client, NULL,
                                  w->now, &dep, NULL);
        assert_true(rc == RZ_OK || rc == RZ_EFUNDS);
    } else if (r < 40 && w->n_held < 8) {
        rz_engine_assignment a;
        int rc = rz_engine_poll(w->e, w->node, w->now, &a);
        assert_true(rc == RZ_OK || rc == RZ_ENOENT);
        if (rc == RZ_OK)
            w->held[w->n_held++] = (struct held){ a.job, a.attempt };
    } else if (r < 85 && w->n_held) {
        size_t k = below(w, w->n_held);
        struct held h = w->held[k];
        w->held[k] = w->held[--w->n_held];
        if (below(w, 10) == 0) {
            int rc = rz_engine_decline(w->e, w->node, h.job, h.attempt, w->now);
            assert_true(rc == RZ_OK || rc == RZ_ESTATE);
            return;
        }
        char out[32];
        snprintf(out, sizeof out, "{\"v\":%u}", (unsigned)below(w, 10));
        rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
        rep.attempt = h.attempt;
        rep.outputs_json = out;
        rep.error = below(w, 4) == 0 ? "it broke" : NULL;
        rep.run_ms = below(w, 2000);
        int rc = rz_engine_report_result(w->e, w->node, h.job, &rep, w->now,
                                         NULL);
        /* A step that timed out or was cancelled meanwhile: stale. */
        assert_true(rc == RZ_OK || rc == RZ_ESTATE);
    } else if (r < 88) {
        uint64_t ids[1];
        if (rz_engine_deployment_list(w->e, NULL, 0, ids, 1) == 1) {
            int rc = rz_engine_deployment_cancel(w->e, ids[0], w->now);
            assert_true(rc == RZ_OK || rc == RZ_ESTATE);
        }
    } else {
        assert_int_equal(rz_engine_tick(w->e, w->now), RZ_OK);
    }
    rz_engine_event ev;
    while (rz_engine_next_event(w->e, &ev))
        ;
}

static void world_start(world *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    assert_non_null(tmp_dir_make(w->dir, sizeof w->dir, "engine-records"));
    w->rng = seed * 0x9E3779B97F4A7C15ull | 1;
    w->now = 1000;
    open_w(w);
    w->client = rz_ledger_id_make(0x5151, 1);
    rz_ledger *l = rz_engine_ledger(w->e);
    assert_int_equal(rz_ledger_create_account(l, w->client, RZ_LEDGER_CLIENT),
                     RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(0x5152, 1),
                                           w->client, 1000000000), RZ_OK);
    assert_int_equal(rz_engine_node_register(w->e, NODE_CAPS,
                                             strlen(NODE_CAPS), w->now,
                                             &w->node), RZ_OK);
}

static void world_end(world *w)
{
    for (size_t i = 0; i < 128; i++)
        cJSON_Delete(w->m[i].doc);
    rz_engine_close(w->e);
    assert_int_equal(tmp_dir_remove(w->dir), 0);
}

static void test_read_back_after_every_commit(void **state)
{
    (void)state;
    const char *env = getenv("RZ_RECORDS_CALLS");
    int calls = env && *env ? atoi(env) : 120;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        world w;
        world_start(&w, seed);
        for (int i = 0; i < calls; i++) {
            act(&w);
            mirrors_follow(&w, false);
            read_back_equals(&w, i);
            mirrors_follow(&w, true);
        }
        world_end(&w);
    }
}

/* ---- the stored layout ---- */

typedef struct raw {
    MDB_env *env;
    MDB_txn *txn;
} raw;

static void raw_open(raw *r, const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/engine", dir);
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(r->env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(r->env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
}

static void raw_close(raw *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* The JSON of a value of table `name` at u64 key `id` (malloc'ed), or
 * NULL when there is none. */
static char *raw_get(raw *r, const char *name, uint64_t id)
{
    MDB_dbi dbi;
    if (mdb_dbi_open(r->txn, name, 0, &dbi) != 0)
        return NULL;
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(id >> (56 - 8 * i));
    MDB_val key = { 8, k }, v;
    if (mdb_get(r->txn, dbi, &key, &v) != 0)
        return NULL;
    assert_true(v.mv_size > 8);
    assert_memory_equal(v.mv_data, "RZc1", 4);
    char *s = calloc(1, v.mv_size - 7);
    memcpy(s, (char *)v.mv_data + 8, v.mv_size - 8);
    return s;
}

static void raw_put(raw *r, const char *name, uint64_t id, const char *json)
{
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(r->txn, name, 0, &dbi), 0);
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(id >> (56 - 8 * i));
    MDB_val key = { 8, k }, v = { strlen(json), (void *)json };
    assert_int_equal(mdb_put(r->txn, dbi, &key, &v, 0), 0);
}

static void raw_del(raw *r, const char *name, uint64_t id)
{
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(r->txn, name, 0, &dbi), 0);
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(id >> (56 - 8 * i));
    MDB_val key = { 8, k };
    assert_int_equal(mdb_del(r->txn, dbi, &key, NULL), 0);
}

/* The next step, polled at `at`, ends with `outputs` or `error`. */
static void step_ends(world *w, uint64_t at, const char *outputs, const char *error)
{
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(w->e, w->node, at, &a), RZ_OK);
    rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
    rep.attempt = a.attempt;
    rep.outputs_json = outputs;
    rep.error = error;
    assert_int_equal(rz_engine_report_result(w->e, w->node, a.job, &rep,
                                             ++w->now, NULL), RZ_OK);
}

static void run_one_step(world *w)
{
    step_ends(w, w->now, "{\"v\":9}", NULL);
}

/* FLOW deployed without inputs: its id. */
static uint64_t deploy_flow(world *w)
{
    uint64_t dep;
    assert_int_equal(rz_engine_deploy(w->e, FLOW, strlen(FLOW), w->client,
                                      NULL, w->now, &dep, NULL), RZ_OK);
    return dep;
}

static void test_flow_stored_once(void **state)
{
    (void)state;
    world w;
    world_start(&w, 7);
    uint64_t dep;
    assert_int_equal(rz_engine_deploy(w.e, FLOW, strlen(FLOW), w.client,
                                      "{\"x\":1}", w.now, &dep, NULL), RZ_OK);
    run_one_step(&w);
    rz_engine_close(w.e);
    raw r;
    raw_open(&r, w.dir);
    char *d = raw_get(&r, "deps", dep), *fl = raw_get(&r, "dflow", dep);
    assert_non_null(d);
    assert_non_null(fl);
    assert_null(strstr(d, "flux"));            /* the flow is not in it */
    assert_non_null(strstr(fl, "name: prop"));
    assert_non_null(strstr(fl, "\"inputs\""));
    free(d);
    free(fl);
    raw_close(&r);
    open_w(&w);
    char *before = snapshot(w.e);
    run_one_step(&w);
    rz_engine_close(w.e);
    /* The deployment record changed, the flow record did not move. */
    raw_open(&r, w.dir);
    fl = raw_get(&r, "dflow", dep);
    assert_non_null(strstr(fl, "name: prop"));
    free(fl);
    raw_close(&r);
    open_w(&w);
    assert_int_equal(rz_engine_check(w.e), RZ_OK);
    char *after = snapshot(w.e);
    assert_string_not_equal(before, after);   /* the step moved on */
    free(before);
    free(after);
    world_end(&w);
}

/* A deployment record from before "dflow" (bare JSON, the flow inside) is
 * read as it is; its next commit moves the flow out. */
static void test_previous_layout_read(void **state)
{
    (void)state;
    world w;
    world_start(&w, 8);
    uint64_t dep = deploy_flow(&w);
    run_one_step(&w);
    char *before = snapshot(w.e);
    rz_engine_close(w.e);
    raw r;
    raw_open(&r, w.dir);
    char *d = raw_get(&r, "deps", dep);
    /* {"id":...} -> {"text":"<flow>","id":...}: a record holding its flow. */
    cJSON *o = cJSON_Parse(d), *text = cJSON_CreateString(FLOW);
    assert_non_null(o);
    cJSON_AddItemReferenceToObject(o, "text", text);
    char *old = cJSON_PrintUnformatted(o);
    raw_put(&r, "deps", dep, old);
    raw_del(&r, "dflow", dep);
    cJSON_free(old);
    cJSON_Delete(o);
    cJSON_Delete(text);
    free(d);
    raw_close(&r);
    open_w(&w);
    char *after = snapshot(w.e);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(rz_engine_check(w.e), RZ_OK);
    run_one_step(&w);   /* a commit of the deployment */
    rz_engine_close(w.e);
    raw_open(&r, w.dir);
    d = raw_get(&r, "deps", dep);
    char *fl = raw_get(&r, "dflow", dep);
    assert_null(strstr(d, "flux"));
    assert_non_null(fl);
    assert_non_null(strstr(fl, "name: prop"));
    free(d);
    free(fl);
    raw_close(&r);
    open_w(&w);
    assert_int_equal(rz_engine_check(w.e), RZ_OK);
    world_end(&w);
}

/* Job records are printed without a cJSON tree: every one stored must be
 * the text cJSON prints for it, strings with hostile bytes included (the
 * outputs' JSON text, an error with control characters, UTF-8 and not). */
static void test_job_records_print_as_cjson(void **state)
{
    (void)state;
    world w;
    world_start(&w, 10);
    (void)deploy_flow(&w);
    step_ends(&w, w.now, "{\"v\":9,\"s\":\"\\u0001\\b\\f\\n\\\"\\\\ caf\\u00e9 \xe2\x82\xac\"}",
              NULL);
    for (int i = 0; i < 2; i++)
        step_ends(&w, ++w.now, NULL, "bad \b\f\x01\x1f\x7f \"q\" \\ caf\xc3\xa9 \xff\xfe end");
    rz_engine_close(w.e);
    raw r;
    raw_open(&r, w.dir);
    MDB_dbi dbi;
    MDB_cursor *c;
    assert_int_equal(mdb_dbi_open(r.txn, "jobs", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(r.txn, dbi, &c), 0);
    MDB_val k, v;
    int n = 0, hostile = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT, n++) {
        char *rec = strndup((char *)v.mv_data + 8, v.mv_size - 8);
        cJSON *o = cJSON_Parse(rec);
        assert_non_null(o);
        char *again = cJSON_PrintUnformatted(o);
        assert_string_equal(rec, again);
        hostile += strstr(rec, "\\b\\f\\u0001\\u001f\x7f") != NULL;
        cJSON_free(again);
        cJSON_Delete(o);
        free(rec);
    }
    mdb_cursor_close(c);
    raw_close(&r);
    assert_true(n >= 7 && hostile >= 1);
    open_w(&w);
    world_end(&w);
}

/* A store whose deployment lost its flow record is refused, not misread. */
static void test_missing_flow_refused(void **state)
{
    (void)state;
    world w;
    world_start(&w, 9);
    uint64_t dep = deploy_flow(&w);
    rz_engine_close(w.e);
    raw r;
    raw_open(&r, w.dir);
    raw_del(&r, "dflow", dep);
    raw_close(&r);
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    w.e = (rz_engine *)1;
    assert_int_equal(rz_engine_open(&w.e, w.dir, &o), RZ_EDB);
    assert_null(w.e);
    assert_non_null(strstr(rz_error_last()->message, "without a flow"));
    assert_int_equal(tmp_dir_remove(w.dir), 0);
}

/* The node's stored caps, as text, equal its caps in memory. */
static void node_caps_stored(world *w)
{
    char *mem = NULL;
    assert_int_equal(rz_engine_node_caps(w->e, w->node, &mem), RZ_OK);
    rz_engine_close(w->e);
    raw r;
    raw_open(&r, w->dir);
    char *rec = raw_get(&r, "nodes", w->node);
    raw_close(&r);
    cJSON *o = cJSON_Parse(rec);
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(o, "caps");
    assert_true(cJSON_IsString(caps));
    assert_string_equal(caps->valuestring, mem);
    cJSON_Delete(o);
    free(rec);
    rz_free(mem);
    open_w(w);
}

/* The node record is rewritten at every outcome, its caps printed once:
 * what is stored follows the trust that failures move and the caps a
 * rejoin brings. */
static void test_node_record_follows_caps(void **state)
{
    (void)state;
    world w;
    world_start(&w, 10);
    uint64_t dep = deploy_flow(&w);
    run_one_step(&w);
    node_caps_stored(&w);
    assert_int_equal(rz_engine_deployment_cancel(w.e, dep, ++w.now), RZ_OK);
    for (int i = 0; i < 3; i++) {   /* failures: its reputation falls */
        dep = deploy_flow(&w);
        step_ends(&w, ++w.now, NULL, "it broke");
    }
    char *mem = NULL;
    assert_int_equal(rz_engine_node_caps(w.e, w.node, &mem), RZ_OK);
    cJSON *c = cJSON_Parse(mem);
    double rep = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "reputation"));
    assert_true(rep > 0 && rep < 0.9);
    cJSON_Delete(c);
    rz_free(mem);
    node_caps_stored(&w);
    static const char more[] = "{\"cpu\":{\"cores\":4,\"threads\":8},"
        "\"memory_mb\":16384,\"storage\":{\"total_gb\":100,\"free_gb\":100},"
        "\"max_concurrent_jobs\":3}";
    dep = deploy_flow(&w);
    run_one_step(&w);   /* its caps printed in this open engine */
    assert_int_equal(rz_engine_node_rejoin(w.e, w.node, more, strlen(more),
                                           ++w.now), RZ_OK);
    assert_int_equal(rz_engine_node_caps(w.e, w.node, &mem), RZ_OK);
    assert_non_null(strstr(mem, "16384"));   /* its trust as before */
    rz_free(mem);
    node_caps_stored(&w);
    world_end(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_back_after_every_commit),
        cmocka_unit_test(test_flow_stored_once),
        cmocka_unit_test(test_previous_layout_read),
        cmocka_unit_test(test_missing_flow_refused),
        cmocka_unit_test(test_node_record_follows_caps),
        cmocka_unit_test(test_job_records_print_as_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
