/* Allocation failure injection, as SQLite does it: each scenario (a flow
 * parsed from JSON, YAML and CBOR and exported; a ledger opened and given
 * ops; an engine opened, a job submitted, run and reported) is run once to
 * count its allocations, then again with the Nth one failing, for every N
 * over the whole run: once with every later allocation failing too, once
 * with only the Nth. Each run must end without a crash, return RZ_OK or an
 * error with a message, and leak nothing (the sanitizer build checks at
 * exit); a run that returns RZ_OK must have the clean run's result (a
 * failure swallowed must not change what was stored or exported). cJSON
 * allocates through the same seam (its hooks); LMDB, libyaml and libcbor
 * (built without custom allocators on Debian) keep their own malloc.
 *
 * Every N is tried (about 5,500 runs: 3 s plain, 11 s under ASan); to
 * bound a slower machine, RZ_ALLOC_FAIL_TRIES=K tries K values of N per
 * scenario and mode, spread evenly, the first 50 always among them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/engine.h"
#include "rhizos/flow.h"
#include "rhizos/ledger.h"
#include "rhizos/module.h"
#include "rhizos/run.h"
#include "helpers.h"

#ifndef RZ_SOURCE_ROOT
#define RZ_SOURCE_ROOT "."
#endif

typedef struct tally {
    long total, tried, failed_clean, ok;
} tally;

static void report_failure(const char *what, int rc)
{
    const rz_error *e = rz_error_last();
    if (rc != RZ_OK && (!e || !e->message[0]))
        fprintf(stderr, "%s: rc %d (%s) without a message\n", what,
                rc, rz_status_name(rc));
    assert_true(rc == RZ_OK || (rc < 0 && e && e->message[0]));
}

/* Scenarios check their result with the seam disarmed (the checks
 * allocate too); how many calls the scenario made by then is kept here. */
static long calls_made = -1;

static void disarm(void)
{
    if (calls_made < 0)
        calls_made = rz__alloc_calls();
    rz__alloc_fail_at(0, false);
}

static long calls_of_run(void)
{
    long c = calls_made >= 0 ? calls_made : rz__alloc_calls();
    calls_made = -1;
    rz__alloc_fail_at(0, false);
    return c;
}

/* Run `fn` with every chosen N failing, in both modes. */
static void each_failure(const char *name, int (*fn)(void *), void *ctx)
{
    calls_made = -1;
    rz__alloc_fail_at(LONG_MAX, true);    /* armed to count, never failing */
    int rc = fn(ctx);
    long total = calls_of_run();
    if (rc != RZ_OK)
        fprintf(stderr, "%s: clean run: %s\n", name, rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    assert_true(total > 0);
    const char *tries_env = getenv("RZ_ALLOC_FAIL_TRIES");
    long tries = tries_env ? atol(tries_env) : 0;
    long stride = 1;
    if (tries > 0 && total > tries)
        stride = (total + tries - 1) / tries;
    for (int persist = 1; persist >= 0; persist--) {
        tally t = {total, 0, 0, 0};
        for (long n = 1; n <= total; n += n < 50 ? 1 : stride) {
            rz_error_clear();
            rz__alloc_fail_at(n, persist);
            rc = fn(ctx);
            long calls = calls_of_run();
            t.tried++;
            char what[112];
            snprintf(what, sizeof what, "%s, allocation %ld of %ld failing%s", name, n,
                     total, persist ? " and on" : "");
            report_failure(what, rc);
            if (calls < n)
                continue;      /* the run took another path: fewer calls */
            if (rc == RZ_OK && getenv("RZ_ALLOC_FAIL_SHOW"))
                fprintf(stderr, "%s: completed anyway\n", what);
            if (rc == RZ_OK)
                t.ok++;
            else
                t.failed_clean++;
        }
        fprintf(stderr, "%s (%s): %ld allocations, %ld failure points tried: %ld clean "
                "errors, %ld completed with the clean run's result\n", name,
                persist ? "failing on" : "failing once", t.total, t.tried, t.failed_clean,
                t.ok);
    }
}

/* ---- flows ---- */

typedef struct flow_ctx {
    char *text;
    size_t len;
    rz_format fmt;
    char *want_json, *want_yaml;   /* the clean run's exports */
} flow_ctx;

/* The first run's text is kept; every later run that succeeds must match. */
static void same_as_first(char **want, const char *got)
{
    if (!*want) {
        *want = strdup(got);
        assert_non_null(*want);
    } else if (strcmp(got, *want) != 0) {
        fprintf(stderr, "export differs from the clean run's:\n%s\n%s\n", *want, got);
        fail();
    }
}

static int flow_scenario(void *p)
{
    flow_ctx *c = p;
    rz_diags *d = NULL;
    int rc = rz_diags_new(&d);
    if (rc != RZ_OK)
        return rc;
    rz_flow *f = NULL, *g = NULL;
    char *json = NULL, *yaml = NULL;
    unsigned char *cbor = NULL;
    size_t n = 0, yn = 0;
    rc = rz_flow_parse(&f, c->text, c->len, c->fmt, "doc", d);
    if (rc == RZ_OK)
        rc = rz_flow_to_json(f, 0, &json, NULL);
    if (rc == RZ_OK)
        rc = rz_flow_to_cbor(f, &cbor, &n);
    if (rc == RZ_OK)
        rc = rz_flow_parse(&g, cbor, n, RZ_FORMAT_CBOR, "cbor", NULL);
    if (rc == RZ_OK)
        rc = rz_flow_to_yaml(g, &yaml, &yn);
    disarm();
    if (rc == RZ_OK) {
        same_as_first(&c->want_json, json);
        same_as_first(&c->want_yaml, yaml);
    }
    rz_free(json);
    rz_free(yaml);
    rz_free(cbor);
    rz_flow_free(f);
    rz_flow_free(g);
    rz_diags_free(d);
    return rc;
}

static void flow_file(const char *name, rz_format fmt)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/flows/%s", RZ_SOURCE_ROOT, name);
    flow_ctx c = {.fmt = fmt};
    c.text = file_read(path, &c.len);
    assert_non_null(c.text);
    each_failure(name, flow_scenario, &c);
    free(c.text);
    free(c.want_json);
    free(c.want_yaml);
}

static void flows_json_yaml_cbor(void **state)
{
    (void)state;
    flow_file("builder.json", RZ_FORMAT_JSON);
    flow_file("wordcount.yaml", RZ_FORMAT_YAML);
}

/* Sub-flows two levels deep expanded: every allocation that fails is a
 * clean error with a message (and no leak under ASan), or the same flow. */
static int expand_scenario(char **want, const char *path)
{
    rz_flow *f = NULL;
    char *json = NULL;
    int rc = rz_flow_load(&f, path, RZ_FORMAT_AUTO, NULL);
    if (rc == RZ_OK)
        rc = rz_flow_expand(&f, NULL, NULL);
    if (rc == RZ_OK)
        rc = rz_flow_to_json(f, 0, &json, NULL);
    disarm();
    if (rc == RZ_OK)
        same_as_first(want, json);
    rz_free(json);
    rz_flow_free(f);
    return rc;
}

static int subflow_scenario(void *p)
{
    return expand_scenario(p, RZ_SOURCE_ROOT "/examples/flows/subflows/classify.yaml");
}

/* A for_each over a sub-flow of two steps: the same. */
static char g_mapped[64];

static int mapped_scenario(void *p)
{
    char path[96];
    snprintf(path, sizeof path, "%s/map.yaml", g_mapped);
    return expand_scenario(p, path);
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void subflows_expand(void **state)
{
    (void)state;
    char *want = NULL;
    each_failure("classify.yaml", subflow_scenario, &want);
    assert_non_null(strstr(want, "\"note-say\":{\"module\":\"echo@1\",\"needs\":[\"pick\"],"
                                 "\"inputs\":{\"message\":\"${{ (( steps.pick.outputs.message )) }}!\"},"
                                 "\"ui\":{\"group\":\"note\"}}"));
    free(want);
    want = NULL;
    snprintf(g_mapped, sizeof g_mapped, "/tmp/rz-alloc-XXXXXX");
    assert_non_null(mkdtemp(g_mapped));
    put_file(g_mapped, "kid.yaml", "flux: 1\ninputs:\n  t: {type: string}\nsteps:\n"
             "  a: {module: echo@1, inputs: {message: \"${{ inputs.t }}\"}}\n"
             "  b: {module: echo@1, needs: [a], inputs: {message: \"${{ steps.a.outputs.message }}\"}}\n"
             "outputs:\n  o: \"${{ steps.b.outputs.message }}\"\n");
    put_file(g_mapped, "map.yaml", "flux: 1\nsteps:\n  m:\n    flow: kid.yaml\n"
             "    for_each: [x, y]\n    inputs: {t: \"${{ item }}\"}\n");
    each_failure("map.yaml", mapped_scenario, &want);
    assert_non_null(strstr(want, "steps.m-a.outputs.message[index]"));
    free(want);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_mapped);
    assert_int_equal(system(cmd), 0);
}

/* A nested map (for_each_depth 2) made, run and gathered back into its
 * shape: every failing allocation a clean error, or the same outputs. */
static int nested_map_scenario(void *p)
{
    char **want = p;
    static const char *const y =
        "flux: 1\nname: n\ninputs:\n  xs: {type: any}\nsteps:\n"
        "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n    for_each_depth: 2\n"
        "    inputs: {v: \"${{ item }}\", at: \"${{ indices }}\"}\n";
    rz_flow *f = NULL;
    rz_run *r = NULL;
    char *out = NULL;
    int rc = rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, "n.yaml", NULL);
    if (rc == RZ_OK)
        rc = rz_run_new(&r, f, "{\"xs\":[[1,2],[],[3]]}", "r1", 0);
    size_t t[8];
    size_t n = rc == RZ_OK ? rz_run_ready(r, 0, t, 8) : 0;
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        char *req = NULL;
        rc = rz_run_request(r, t[i], &req);
        rz_free(req);
        if (rc == RZ_OK)
            rc = rz_run_start(r, t[i], 1);
        if (rc == RZ_OK)
            rc = rz_run_succeed(r, t[i], "{\"y\":7}", 2);
    }
    if (rc == RZ_OK && r)
        rc = rz_run_step_outputs(r, 0, &out);
    disarm();
    if (rc == RZ_OK && n == 3 && rz_run_step_state(r, 0) == RZ_STEP_SUCCEEDED)
        same_as_first(want, out);
    rz_free(out);
    rz_run_free(r);
    rz_flow_free(f);
    return rc;
}

static void nested_map_run(void **state)
{
    (void)state;
    char *want = NULL;
    each_failure("nested map", nested_map_scenario, &want);
    assert_string_equal(want, "{\"y\":[[7,7],[],[7]]}");
    free(want);
}

/* ---- the ledger ---- */

static int ledger_scenario(void *p)
{
    (void)p;
    char dir[64];
    if (!tmp_dir_make(dir, sizeof dir, "allocfail"))
        return rz__error(RZ_EIO, "no temporary folder");
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 0;
    o.map_size = 16u << 20;
    o.journal_size = 1u << 20;
    rz_ledger *l = NULL;
    rz_ledger_id client = rz_ledger_id_make(9, 1), node = rz_ledger_id_make(9, 2);
    rz_ledger_id job = rz_ledger_id_make(9, 3);
    int rc = rz_ledger_open(&l, dir, &o);
    if (rc == RZ_OK)
        rc = rz_ledger_create_account(l, client, RZ_LEDGER_CLIENT);
    if (rc == RZ_OK)
        rc = rz_ledger_create_account(l, node, RZ_LEDGER_NODE);
    if (rc == RZ_OK)
        rc = rz_ledger_test_credit(l, rz_ledger_id_make(9, 4), client, 1000);
    if (rc == RZ_OK)
        rc = rz_ledger_hold(l, rz_ledger_id_make(9, 5), job, client, 500, 0);
    if (rc == RZ_OK)
        rc = rz_ledger_settle(l, rz_ledger_id_make(9, 6), job, node, 200, NULL);
    if (rc == RZ_OK)
        rc = rz_ledger_checkpoint(l);
    if (rc == RZ_OK)
        rc = rz_ledger_verify(l);
    char *out = NULL;
    if (rc == RZ_OK)
        rc = rz_ledger_export(l, 1, &out);
    disarm();
    if (rc == RZ_OK) {
        rz_ledger_account a;
        assert_int_equal(rz_ledger_balance(l, client, &a), RZ_OK);
        assert_int_equal(rz_ledger_available(&a), 800);
        assert_int_equal(rz_ledger_balance(l, node, &a), RZ_OK);
        assert_int_equal(rz_ledger_available(&a), 190);
        assert_non_null(strstr(out, "\"accounts\""));
    }
    rz_free(out);
    rz_ledger_close(l);
    assert_int_equal(tmp_dir_remove(dir), 0);
    return rc;
}

static void ledger_open_and_ops(void **state)
{
    (void)state;
    each_failure("ledger", ledger_scenario, NULL);
}

/* ---- the engine ---- */

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2}"

static int engine_scenario(void *p)
{
    rz_registry *reg = p;
    char dir[64];
    if (!tmp_dir_make(dir, sizeof dir, "allocfail"))
        return rz__error(RZ_EIO, "no temporary folder");
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.registry = reg;
    o.ref_cpu_hour_micros = 36000;
    rz_engine *e = NULL;
    rz_ledger_id client = rz_ledger_id_make(7, 1);
    uint64_t node = 0, job = 0;
    int rc = rz_engine_open(&e, dir, &o);
    if (rc == RZ_OK)
        rc = rz_ledger_create_account(rz_engine_ledger(e), client, RZ_LEDGER_CLIENT);
    if (rc == RZ_OK)
        rc = rz_ledger_test_credit(rz_engine_ledger(e), rz_ledger_id_make(7, 2), client,
                                   10000);
    if (rc == RZ_OK)
        rc = rz_engine_node_register(e, NODE_CAPS, strlen(NODE_CAPS), 0, &node);
    if (rc == RZ_OK) {
        rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
        s.client = client;
        s.requirements_json = "{\"cpu_cores\":2,\"estimate_seconds\":10}";
        s.module_id = "count";
        s.module_version = "1.0.0";
        s.request_json = "{\"inputs\":{\"text\":\"a b\"},\"config\":{}}";
        s.max_cost_micros = 500;
        rc = rz_engine_submit(e, &s, 1, &job);
    }
    rz_engine_assignment a;
    if (rc == RZ_OK)
        rc = rz_engine_poll(e, node, 2, &a);
    if (rc == RZ_OK)
        rc = node_report(e, node, job, 1, "{\"n\":2}", NULL, 10000, 10002);
    if (rc == RZ_OK)
        rc = rz_engine_check(e);
    disarm();
    if (rc == RZ_OK) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(e, job, &ji), RZ_OK);
        if (ji.state != RZ_JOB_SUCCEEDED)
            fprintf(stderr, "job state %d, error %s\n", (int)ji.state,
                    ji.error ? ji.error : "(none)");
        assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
        assert_int_equal(ji.cost_micros, 200);
        assert_string_equal(ji.outputs_json, "{\"n\":2}");
        char *caps = NULL;   /* stored whole: prices, adapters and all */
        assert_int_equal(rz_engine_node_caps(e, node, &caps), RZ_OK);
        assert_non_null(strstr(caps, "\"cpu_hour_micros\":36000"));
        assert_non_null(strstr(caps, "\"adapters\":[\"process\"]"));
        rz_free(caps);
        rz_ledger_account acc;
        assert_int_equal(rz_ledger_balance(rz_engine_ledger(e), client, &acc), RZ_OK);
        assert_int_equal(rz_ledger_available(&acc), 9800);
    }
    rz_engine_close(e);
    assert_int_equal(tmp_dir_remove(dir), 0);
    return rc;
}

static void engine_submit_and_report(void **state)
{
    (void)state;
    char mods[64];
    assert_non_null(tmp_dir_make(mods, sizeof mods, "allocfail-mods"));
    char path[128];
    snprintf(path, sizeof path, "%s/count", mods);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/count/module.json", mods);
    file_write(path, "{\"id\":\"count\",\"version\":\"1.0.0\",\"name\":\"count\","
               "\"description\":\"test\",\"inputs\":[{\"name\":\"text\",\"type\":\"string\"}],"
               "\"outputs\":[{\"name\":\"n\",\"type\":\"integer\"}],"
               "\"requirements\":{\"adapter\":\"process\",\"cpu_cores\":1},"
               "\"estimate\":{\"seconds\":10},"
               "\"exec\":{\"adapter\":\"process\",\"command\":[\"true\"]}}");
    rz_registry *reg = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, mods, NULL), RZ_OK);
    each_failure("engine", engine_scenario, reg);
    rz_registry_free(reg);
    assert_int_equal(tmp_dir_remove(mods), 0);
}

int main(void)
{
    /* cJSON's nodes and strings come through the seam too. */
    cJSON_Hooks hooks = {rz__malloc, free};
    cJSON_InitHooks(&hooks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flows_json_yaml_cbor),
        cmocka_unit_test(subflows_expand),
        cmocka_unit_test(nested_map_run),
        cmocka_unit_test(ledger_open_and_ops),
        cmocka_unit_test(engine_submit_and_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
