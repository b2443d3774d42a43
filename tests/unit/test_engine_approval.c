/* Pause/resume of a deployment and approval steps (lib/engine/approval.c):
 * no step starts while paused, a decision releases what follows, a
 * timeout takes the default, bad calls change nothing, and both survive a
 * SIGKILL with every step paid once. Resume with a step cache
 * (lib/engine/reuse.c): what succeeded is reused and not paid again, a
 * changed step runs, cache: false opts out, a kill -9 keeps it all. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "rhizos/engine.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "helpers.h"
#include "engine_fixture.h"

/* 36000 micros per core-hour: 10 s on 1 core costs exactly 100 micros. */
#define NODE_CAPS EFX_NODE_CAPS

static const char *GATED =
    "flux: 1\nname: gated\nsteps:\n"
    "  a:\n    module: count@1.0.0\n    inputs: {text: \"a b\"}\n"
    "  gate:\n    needs: [a]\n"
    "    approval: {timeout_s: 60, default: reject, approvers: [\"ops\"]}\n"
    "  b:\n    module: count@1.0.0\n    needs: [gate]\n"
    "    inputs: {text: \"${{ steps.gate.outputs.by }}\"}\n";

typedef efx fx;

static int setup(void **state)
{
    static const efx_module mods[] = {
        EFX_COUNT,
        /* A side-effecting module (a trade): never reused. */
        { "trade", EFX_TEXT_IN, EFX_N_OUT, ",\"cacheable\":false", NULL },
        /* A module with a credential: the cache key names which one. */
        { "post", EFX_TEXT_IN, EFX_N_OUT,
          ",\"credentials\":[{\"name\":\"api\",\"type\":\"llm_api\"}]", NULL },
    };
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 1000000;
    o.ref_cpu_hour_micros = 36000;
    o.run_tolerance_ms = UINT64_MAX / 2;
    *state = efx_new("approval", mods, sizeof mods / sizeof mods[0], &o, 10000);
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static uint64_t balance(fx *f)
{
    return efx_available(f, f->client);
}

static uint64_t deploy(fx *f, const char *text, uint64_t now)
{
    return efx_deploy(f, text, NULL, now);
}

/* Take one queued job and report it: `fail` fails it. Its step, or NULL
 * when nothing was queued. */
static const char *take(fx *f, uint64_t node, uint64_t now, bool fail)
{
    static char step[64];
    rz_engine_assignment a;
    assert_int_equal(rz_engine_node_heartbeat(f->e, node, now, 0), RZ_OK);
    if (rz_engine_poll(f->e, node, now, &a) != RZ_OK)
        return NULL;
    snprintf(step, sizeof step, "%s", a.step);
    assert_int_equal(node_report(f->e, node, a.job, a.attempt, fail ? NULL : "{\"n\":1}",
                                 fail ? "boom" : NULL, 10000, now + 1), RZ_OK);
    return step;
}

/* Take one queued job and report it done. */
static const char *run_one(fx *f, uint64_t node, uint64_t now)
{
    return take(f, node, now, false);
}

static uint64_t node_add(fx *f)
{
    return efx_node_add(f, NODE_CAPS, 0);
}

static rz_run_state state_of(fx *f, uint64_t d)
{
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    return rs;
}

static void test_approve_releases_the_rest(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d = deploy(f, GATED, 1);
    assert_string_equal(run_one(f, n, 2), "a");
    assert_null(run_one(f, n, 3));   /* the gate queues no job */
    cJSON *doc = efx_status(f, d);
    assert_string_equal(efx_step_status(doc, "gate"), "running");
    cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "awaiting_approval"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(w, "step")), "gate");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(
        cJSON_GetObjectItem(w, "approvers"), 0)), "ops");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(w, "default")), "reject");
    assert_int_equal((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(w, "deadline_ms")),
                     3 + 60000);
    cJSON_Delete(doc);
    /* Bad calls change nothing. */
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "a", 1, "me", NULL, 4), RZ_EINVALID);
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "nope", 1, "me", NULL, 4), RZ_ENOENT);
    assert_int_equal(rz_engine_deployment_approve(f->e, d + 1, "gate", 1, "me", NULL, 4),
                     RZ_ENOENT);
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "gate", 1, "", NULL, 4), RZ_EINVAL);
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "gate", 1, "alice", "ship it", 5),
                     RZ_OK);
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "gate", 0, "bob", NULL, 6),
                     RZ_ESTATE);
    assert_string_equal(run_one(f, n, 7), "b");
    assert_int_equal(state_of(f, d), RZ_RUN_SUCCEEDED);
    doc = efx_status(f, d);
    cJSON *out = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"),
                                                         "gate"), "outputs");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(out, "approved")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(out, "by")), "alice");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(out, "comment")), "ship it");
    assert_null(cJSON_GetObjectItem(doc, "awaiting_approval"));
    cJSON_Delete(doc);
    /* Two steps ran at 100 micros; the gate's hold came back. */
    assert_int_equal(balance(f), 10000 - 200);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

static void test_reject_skips_the_rest(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d = deploy(f, GATED, 1);
    assert_string_equal(run_one(f, n, 2), "a");
    assert_int_equal(rz_engine_deployment_approve(f->e, d, "gate", 0, "ops", "too risky", 5),
                     RZ_OK);
    assert_null(run_one(f, n, 6));
    assert_int_equal(state_of(f, d), RZ_RUN_FAILED);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(efx_step_status(doc, "gate"), "failed");
    assert_string_equal(efx_step_status(doc, "b"), "skipped");
    cJSON *g = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "gate");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(g, "error")),
                        "rejected by ops: too risky");
    cJSON_Delete(doc);
    assert_int_equal(balance(f), 10000 - 100);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

static void test_timeout_takes_the_default(void **state)
{
    fx *f = *state;
    static const char *flow =
        "flux: 1\nname: t\nsteps:\n"
        "  gate:\n    approval: {timeout_s: 30, default: approve}\n"
        "  b:\n    module: count@1.0.0\n    needs: [gate]\n    inputs: {text: \"x\"}\n";
    uint64_t n = node_add(f);
    uint64_t d = deploy(f, flow, 1000);
    assert_int_equal(rz_engine_next_wakeup(f->e) <= 31000, 1);
    assert_int_equal(rz_engine_tick(f->e, 30999), RZ_OK);
    assert_null(run_one(f, n, 30999));
    assert_int_equal(rz_engine_tick(f->e, 31000), RZ_OK);
    assert_string_equal(run_one(f, n, 31001), "b");
    cJSON *doc = efx_status(f, d);
    cJSON *out = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"),
                                                         "gate"), "outputs");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(out, "approved")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(out, "by")), "timeout");
    cJSON_Delete(doc);
    assert_int_equal(state_of(f, d), RZ_RUN_SUCCEEDED);
}

static const char *job_waiting(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_QUEUED);
    return ji.waiting_reason;
}

/* A pause holds the jobs already queued (not yet assigned) as well as the
 * steps not started: none goes to a node, their queue deadline stops, a
 * reopen holds them still; the resume queues them again. */
static void test_pause_holds_new_steps(void **state)
{
    fx *f = *state;
    static const char *flow =
        "flux: 1\nname: two\nsteps:\n"
        "  a:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n"
        "    queue_timeout_s: 5\n"
        "  b:\n    module: count@1.0.0\n    needs: [a]\n    inputs: {text: \"y\"}\n";
    uint64_t n = node_add(f);
    uint64_t d = deploy(f, flow, 1);
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 1, 2), RZ_OK);
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 1, 2), RZ_OK);   /* again: fine */
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    /* a was queued before the pause: it waits with b, past its queue
     * timeout, and says why. */
    assert_null(run_one(f, n, 3));
    assert_string_equal(job_waiting(f, d), "its deployment is paused");
    assert_int_equal(rz_engine_tick(f->e, 100000), RZ_OK);
    assert_null(run_one(f, n, 100001));
    cJSON *doc = efx_status(f, d);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "paused")));
    assert_string_equal(efx_step_status(doc, "a"), "running");   /* started: queued */
    assert_string_equal(efx_step_status(doc, "b"), "pending");
    cJSON_Delete(doc);
    efx_reopen(f);   /* the flag is the deployment's; open holds a again */
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    doc = efx_status(f, d);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "paused")));
    cJSON_Delete(doc);
    assert_null(run_one(f, n, 100002));
    assert_string_equal(job_waiting(f, d), "its deployment is paused");
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 0, 100003), RZ_OK);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    assert_string_equal(run_one(f, n, 100004), "a");
    assert_string_equal(run_one(f, n, 100006), "b");
    assert_int_equal(state_of(f, d), RZ_RUN_SUCCEEDED);
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 1, 100007), RZ_ESTATE);
    assert_int_equal(rz_engine_deployment_pause(f->e, d + 1, 1, 100007), RZ_ENOENT);
    assert_int_equal(balance(f), 10000 - 200);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* What a node already holds finishes; what is queued waits; a step that
 * becomes ready waits; a resume runs the rest in order; a queue deadline
 * starts again at the resume. */
static void test_pause_lets_handed_jobs_finish(void **state)
{
    fx *f = *state;
    static const char *flow =
        "flux: 1\nname: three\nsteps:\n"
        "  a:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n"
        "  b:\n    module: count@1.0.0\n    inputs: {text: \"y\"}\n"
        "    queue_timeout_s: 5\n"
        "  c:\n    module: count@1.0.0\n    needs: [a]\n    inputs: {text: \"z\"}\n";
    /* One job at a time: b stays queued while a runs. */
    char caps[sizeof NODE_CAPS];
    snprintf(caps, sizeof caps, "%s", NODE_CAPS);
    *strstr(caps, "\"max_concurrent_jobs\":2") = '\0';
    char one[sizeof NODE_CAPS + 32];
    snprintf(one, sizeof one, "%s\"max_concurrent_jobs\":1}", caps);
    uint64_t n = 0;
    assert_int_equal(rz_engine_node_register(f->e, one, strlen(one), 0, &n), RZ_OK);
    uint64_t d = deploy(f, flow, 1);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 2, 0), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 2, &a), RZ_OK);   /* a: handed over */
    assert_string_equal(a.step, "a");
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 1, 3), RZ_OK);
    assert_int_equal(node_report(f->e, n, a.job, a.attempt, "{\"n\":1}", NULL, 10000, 4),
                     RZ_OK);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    assert_null(run_one(f, n, 5));   /* b held, c ready but not started */
    cJSON *doc = efx_status(f, d);
    assert_string_equal(efx_step_status(doc, "a"), "succeeded");
    assert_string_equal(efx_step_status(doc, "c"), "ready");
    cJSON_Delete(doc);
    assert_int_equal(rz_engine_deployment_pause(f->e, d, 0, 20000), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, d + 1, &ji), RZ_OK);
    assert_int_equal(ji.queue_deadline_ms, 20000 + 5000);   /* from the resume */
    assert_null(ji.waiting_reason);
    assert_int_equal(rz_engine_tick(f->e, 20001), RZ_OK);
    assert_string_equal(run_one(f, n, 20002), "b");   /* queued first: id order */
    assert_string_equal(run_one(f, n, 20004), "c");
    assert_int_equal(state_of(f, d), RZ_RUN_SUCCEEDED);
    assert_int_equal(balance(f), 10000 - 300);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* kill -9 while paused and awaiting approval: both stand after reopen,
 * and every step is paid once. */
static void test_sigkill_while_paused_and_awaiting(void **state)
{
    fx *f = *state;
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        uint64_t n = node_add(f);
        uint64_t d = deploy(f, GATED, 1);
        const char *s = run_one(f, n, 2);
        if (!s || strcmp(s, "a") != 0 || rz_engine_deployment_pause(f->e, d, 1, 3) != RZ_OK)
            _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    efx_wait_signaled(pid, 0);
    efx_reopen(f);
    if (rz_engine_check(f->e) != RZ_OK)
        fprintf(stderr, "check: %s\n", rz_error_last()->message);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    cJSON *doc = efx_status(f, 1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "paused")));
    assert_non_null(cJSON_GetObjectItem(doc, "awaiting_approval"));
    assert_string_equal(efx_step_status(doc, "a"), "succeeded");
    cJSON_Delete(doc);
    /* Decided while paused: b still waits for the resume. */
    assert_int_equal(rz_engine_deployment_approve(f->e, 1, "gate", 1, "ops", NULL, 10), RZ_OK);
    assert_null(run_one(f, 1, 11));
    assert_int_equal(rz_engine_deployment_pause(f->e, 1, 0, 12), RZ_OK);
    assert_string_equal(run_one(f, 1, 13), "b");
    assert_int_equal(state_of(f, 1), RZ_RUN_SUCCEEDED);
    assert_int_equal(balance(f), 10000 - 200);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* A malformed approval is a located error and nothing is held. */
static void test_bad_approval_refused(void **state)
{
    fx *f = *state;
    static const char *const bad[][2] = {
        { "  gate:\n    approval: {}\n    module: count@1.0.0\n", "both 'approval' and a module" },
        { "  gate:\n    approval: {default: maybe}\n", "'approval.default' must be" },
        { "  gate:\n    approval: {timeout_s: 0}\n", "'timeout_s' is out of range" },
        { "  gate:\n    approval: {approvers: [1]}\n", "'approval.approvers' must be" },
        { "  gate:\n    approval: {who: [a]}\n", "unknown key 'who' in 'approval'" },
        { "  gate:\n    approval: yes\n", "'approval' must be a map" },
        { "  gate:\n    approval: {}\n    retry: 3\n", "cannot have for_each, verify, retry" },
        { "  gate:\n    approval: {}\n    timeout_s: 5\n", "its wait is approval.timeout_s" },
        { "  gate:\n    cache: 3\n    module: count@1.0.0\n", "'cache' must be true, false" },
        { "  gate:\n    cache: {ttl: 5}\n    module: count@1.0.0\n", "unknown key 'ttl' in 'cache'" },
        { "  gate:\n    cache: {ttl_s: 0}\n    module: count@1.0.0\n", "'ttl_s' is out of range" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[512];
        snprintf(text, sizeof text, "flux: 1\nname: bad\nsteps:\n%s", bad[i][0]);
        uint64_t d = 7;
        rz_diags *diags = NULL;
        assert_int_equal(rz_diags_new(&diags), RZ_OK);
        assert_int_equal(rz_engine_deploy(f->e, text, strlen(text), f->client, NULL, 1, &d,
                                          diags), RZ_EINVALID);
        char *t = NULL;
        assert_int_equal(rz_diags_to_text(diags, &t), RZ_OK);
        if (!strstr(t, bad[i][1]) || !strstr(t, "flow:5:"))
            fprintf(stderr, "case %zu: %s\n", i, t);
        assert_non_null(strstr(t, bad[i][1]));
        assert_non_null(strstr(t, "flow:5:"));   /* located */
        rz_free(t);
        rz_diags_free(diags);
        assert_int_equal(d, 0);
    }
    assert_int_equal(balance(f), 10000);
}

/* Every export of a flow with a gate parses back to the same text: the
 * gate keeps its approval and gets no module. */
static void test_gate_round_trips(void **state)
{
    (void)state;
    rz_flow *f = NULL;
    assert_int_equal(rz_flow_parse(&f, GATED, strlen(GATED), RZ_FORMAT_AUTO, "g", NULL), RZ_OK);
    char *json = NULL, *yaml = NULL, *again = NULL;
    size_t n = 0;
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &n), RZ_OK);
    assert_non_null(strstr(json, "\"approval\":{\"timeout_s\":60"));
    assert_int_equal(rz_flow_to_yaml(f, &yaml, &n), RZ_OK);
    const char *texts[] = { json, yaml };
    for (int i = 0; i < 2; i++) {
        rz_flow *g = NULL;
        assert_int_equal(rz_flow_parse(&g, texts[i], strlen(texts[i]), RZ_FORMAT_AUTO, "g",
                                       NULL), RZ_OK);
        assert_int_equal(rz_flow_to_json(g, RZ_EXPORT_BUILDER, &again, &n), RZ_OK);
        assert_string_equal(again, json);
        rz_free(again);
        rz_flow_free(g);
    }
    rz_free(json);
    rz_free(yaml);
    rz_flow_free(f);
}

static const char *CHAIN =
    "flux: 1\nname: chain\nsteps:\n"
    "  a:\n    module: count@1.0.0\n    inputs: {text: \"%s\"}\n"
    "  b:\n    module: count@1.0.0\n    needs: [a]\n    inputs: {text: \"b\"}\n%s"
    "  c:\n    module: count@1.0.0\n    needs: [b]\n    inputs: {text: \"c\"}\n";

static char *chain(const char *a_text, const char *b_extra)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, CHAIN, a_text, b_extra);
    return buf;
}

static char *map_of(fx *f, uint64_t d)
{
    char *m = NULL;
    assert_int_equal(rz_engine_reuse_map(f->e, d, &m), RZ_OK);
    return m;
}

static uint64_t deploy_reuse(fx *f, const char *text, const char *map, uint64_t now)
{
    uint64_t d = 0;
    int rc = rz_engine_deploy_reuse(f->e, text, strlen(text), f->client, NULL, map, now, &d,
                                    NULL);
    if (rc != RZ_OK)
        fprintf(stderr, "deploy: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    return d;
}

static void test_resume_reuses_what_succeeded(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d1 = deploy(f, chain("a b", ""), 1);
    assert_string_equal(take(f, n, 2, false), "a");
    assert_string_equal(take(f, n, 3, true), "b");   /* fails: c is skipped */
    assert_int_equal(state_of(f, d1), RZ_RUN_FAILED);
    assert_int_equal(balance(f), 10000 - 100);
    char *m1 = map_of(f, d1);
    cJSON *mj = cJSON_Parse(m1);
    assert_int_equal(cJSON_GetArraySize(mj), 1);   /* a only */
    cJSON_Delete(mj);
    /* Resumed: a is reused at once (no job), b and c run. */
    uint64_t d2 = deploy_reuse(f, chain("a b", ""), m1, 10);
    free(m1);
    assert_string_equal(take(f, n, 11, false), "b");
    assert_string_equal(take(f, n, 12, false), "c");
    assert_null(take(f, n, 13, false));
    assert_int_equal(state_of(f, d2), RZ_RUN_SUCCEEDED);
    cJSON *doc = efx_status(f, d2);
    cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "a");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "reused")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "reused_from")),
                        "deployment 1 step a");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "outputs"), "n")->valueint, 1);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "b"),
                                    "reused"));
    cJSON_Delete(doc);
    /* Only b and c were paid again. */
    assert_int_equal(balance(f), 10000 - 300);
    /* A change to a: a runs again; b and c (same module, config, inputs)
     * are reused from the second run; the chain names the first one. */
    char *m2 = map_of(f, d2);
    uint64_t d3 = deploy_reuse(f, chain("changed", ""), m2, 20);
    free(m2);
    assert_string_equal(take(f, n, 21, false), "a");
    assert_null(take(f, n, 22, false));
    assert_int_equal(state_of(f, d3), RZ_RUN_SUCCEEDED);
    doc = efx_status(f, d3);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "c");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reused_from")),
                        "deployment 2 step c");
    cJSON_Delete(doc);
    assert_int_equal(balance(f), 10000 - 400);
    /* cache: false on b: it runs every time. */
    char *m3 = map_of(f, d3);
    uint64_t d4 = deploy_reuse(f, chain("changed", "    cache: false\n"), m3, 30);
    free(m3);
    assert_string_equal(take(f, n, 31, false), "b");
    assert_null(take(f, n, 32, false));   /* c: reused */
    assert_int_equal(state_of(f, d4), RZ_RUN_SUCCEEDED);
    assert_int_equal(balance(f), 10000 - 500);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

static void test_resume_refuses_a_bad_map(void **state)
{
    fx *f = *state;
    static const char *bad[] = {
        "[]", "{", "{\"abc\":{\"outputs\":{}}}",
        "{\"0000000000000000000000000000000000000000000000000000000000000000\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t d = 9;
        const char *t = chain("x", "");
        assert_int_equal(rz_engine_deploy_reuse(f->e, t, strlen(t), f->client, NULL, bad[i], 1,
                                                &d, NULL), RZ_EINVAL);
        assert_int_equal(d, 0);
    }
    char *m = NULL;
    assert_int_equal(rz_engine_reuse_map(f->e, 99, &m), RZ_ENOENT);
    assert_null(m);
    assert_int_equal(balance(f), 10000);
}

/* kill -9 in the middle of a resumed run: the reused step stays reused,
 * the rest goes on, each paid once. */
static void test_resume_survives_sigkill(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d1 = deploy(f, chain("a b", ""), 1);
    assert_string_equal(take(f, n, 2, false), "a");
    assert_string_equal(take(f, n, 3, true), "b");
    char *m1 = map_of(f, d1);
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        (void)deploy_reuse(f, chain("a b", ""), m1, 10);
        const char *s = take(f, 1, 11, false);
        if (!s || strcmp(s, "b") != 0)
            _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    free(m1);
    efx_wait_signaled(pid, 0);
    efx_reopen(f);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    assert_string_equal(take(f, 1, 20, false), "c");
    assert_null(take(f, 1, 21, false));
    assert_int_equal(state_of(f, 2), RZ_RUN_SUCCEEDED);
    cJSON *doc = efx_status(f, 2);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(
        cJSON_GetObjectItem(doc, "steps"), "a"), "reused")));
    cJSON_Delete(doc);
    assert_int_equal(balance(f), 10000 - 300);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* Clearing the cache: entries dropped by step and time; a cleared step
 * runs (and is paid) again on resume; a bad map changes nothing. */
static void test_reuse_drop_clears(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d1 = deploy(f, chain("a b", ""), 1);
    assert_string_equal(take(f, n, 2, false), "a");
    assert_string_equal(take(f, n, 3, true), "b");
    char *m1 = map_of(f, d1), *out = NULL;
    size_t dropped = 9;
    /* Another step's clear, or one older than the result: kept. */
    assert_int_equal(rz_engine_reuse_drop(&out, m1, "b", 100, &dropped), RZ_OK);
    assert_int_equal(dropped, 0);
    assert_string_equal(out, m1);
    rz_free(out);
    /* a's key was taken when it started, at its deploy (1). */
    assert_int_equal(rz_engine_reuse_drop(&out, m1, "a", 0, &dropped), RZ_OK);
    assert_int_equal(dropped, 0);
    rz_free(out);
    /* A step id that only ends like "a" is another step. */
    assert_int_equal(rz_engine_reuse_drop(&out, m1, "xa", 100, &dropped), RZ_OK);
    assert_int_equal(dropped, 0);
    rz_free(out);
    assert_int_equal(rz_engine_reuse_drop(&out, m1, "a", 1, &dropped), RZ_OK);
    assert_int_equal(dropped, 1);
    assert_string_equal(out, "{}");
    rz_free(out);
    assert_int_equal(rz_engine_reuse_drop(&out, m1, NULL, 50, NULL), RZ_OK);
    assert_string_equal(out, "{}");
    /* Resumed with the cleared cache: a runs and is paid again. */
    uint64_t d2 = deploy_reuse(f, chain("a b", ""), out, 10);
    rz_free(out);
    assert_string_equal(take(f, n, 11, false), "a");
    assert_string_equal(take(f, n, 12, false), "b");
    assert_string_equal(take(f, n, 13, false), "c");
    assert_int_equal(state_of(f, d2), RZ_RUN_SUCCEEDED);
    assert_int_equal(balance(f), 10000 - 100 - 300);
    out = (char *)1;
    assert_int_equal(rz_engine_reuse_drop(&out, "[1]", NULL, 5, &dropped), RZ_EINVAL);
    assert_null(out);
    assert_int_equal(rz_engine_reuse_drop(&out, NULL, NULL, 5, NULL), RZ_EINVAL);
    free(m1);
}

/* The cache key covers which credential a step used (its id, never its
 * value): the same step with another credential runs again. */
static const char *posting(const char *cred)
{
    static char t[320];
    snprintf(t, sizeof t, "flux: 1\nname: posts\nsteps:\n"
             "  p:\n    module: post@1.0.0\n    inputs: {text: \"hi\"}\n"
             "    credentials: {api: {credentialId: %s, type: llm_api}}\n", cred);
    return t;
}

static void test_reuse_key_names_the_credential(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    uint64_t d1 = deploy(f, posting("key-one"), 1);
    assert_string_equal(take(f, n, 2, false), "p");
    assert_int_equal(state_of(f, d1), RZ_RUN_SUCCEEDED);
    char *m = map_of(f, d1);
    /* The same credential: reused, nothing runs. */
    uint64_t d2 = deploy_reuse(f, posting("key-one"), m, 10);
    assert_null(take(f, n, 11, false));
    assert_int_equal(state_of(f, d2), RZ_RUN_SUCCEEDED);
    /* Another one: the step runs (and is paid) again. */
    uint64_t d3 = deploy_reuse(f, posting("key-two"), m, 20);
    assert_string_equal(take(f, n, 21, false), "p");
    assert_int_equal(state_of(f, d3), RZ_RUN_SUCCEEDED);
    assert_int_equal(balance(f), 10000 - 200);
    free(m);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* A module with "cacheable": false is never reused; `cache: {ttl_s}`
 * reuses a result only while it is young enough. */
static void test_reuse_opt_outs(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f);
    static const char *T = "flux: 1\nname: trades\nsteps:\n"
        "  a:\n    module: count@1.0.0\n    inputs: {text: \"a\"}\n    cache: {ttl_s: 5}\n"
        "  t:\n    module: trade@1.0.0\n    needs: [a]\n    inputs: {text: \"t\"}\n"
        "  z:\n    module: count@1.0.0\n    needs: [t]\n    inputs: {text: \"z\"}\n";
    uint64_t d1 = deploy(f, T, 1);
    assert_string_equal(take(f, n, 2, false), "a");
    assert_string_equal(take(f, n, 3, false), "t");
    assert_string_equal(take(f, n, 4, true), "z");
    char *m = map_of(f, d1);
    cJSON *mj = cJSON_Parse(m);
    assert_int_equal(cJSON_GetArraySize(mj), 1);   /* a only: the trade keeps no key */
    cJSON_Delete(mj);
    /* a's result (taken at 1 ms) within its 5 s: reused; the trade runs again. */
    uint64_t d2 = deploy_reuse(f, T, m, 3000);
    assert_string_equal(take(f, n, 3001, false), "t");
    assert_string_equal(take(f, n, 3002, false), "z");
    assert_null(take(f, n, 3003, false));
    assert_int_equal(state_of(f, d2), RZ_RUN_SUCCEEDED);
    /* Past its ttl: a runs again too. */
    uint64_t d3 = deploy_reuse(f, T, m, 10000);
    assert_string_equal(take(f, n, 10001, false), "a");
    assert_string_equal(take(f, n, 10002, false), "t");
    assert_string_equal(take(f, n, 10003, false), "z");
    assert_int_equal(state_of(f, d3), RZ_RUN_SUCCEEDED);
    free(m);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_approve_releases_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_skips_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_takes_the_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_holds_new_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_lets_handed_jobs_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_while_paused_and_awaiting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_approval_refused, setup, teardown),
        cmocka_unit_test(test_gate_round_trips),
        cmocka_unit_test_setup_teardown(test_resume_reuses_what_succeeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_refuses_a_bad_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_survives_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_drop_clears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_opt_outs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_key_names_the_credential, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
