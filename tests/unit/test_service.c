/* Services and events in the run state machine (lib/run/service.h) and
 * the validation of their declarations (docs/services.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "flow/model.h"
#include "run/service.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/run.h"

static rz_flow *yaml(const char *src)
{
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_YAML, "t.yaml", d);
    rz_diags_free(d);
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(rz__flow_link(f), RZ_OK);
    return f;
}

static size_t S(const rz_run *r, const char *id)
{
    size_t i = rz_flow_step_find(rz_run_flow(r), id);
    assert_int_not_equal(i, RZ_NPOS);
    return i;
}

static bool step_of_is_exit(const rz_run *r, size_t i)
{
    return rz_run_flow(r)->steps[i].is_exit;
}

/* The tasks ready now (up to 16). */
static size_t ready(rz_run *r, uint64_t now, size_t *t)
{
    size_t n = rz_run_ready(r, now, t, 16);
    assert_true(n <= 16);
    return n;
}

static cJSON *step_doc(const rz_run *r, const char *id)
{
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    cJSON *s = cJSON_DetachItemFromObject(cJSON_GetObjectItem(doc, "steps"), id);
    cJSON_Delete(doc);
    return s;
}

static const char *DESK =
    "flux: 1\nname: desk\nsteps:\n"
    "  hb: {module: m, kind: service, ready: line, restart: {policy: never}}\n"
    "  ui: {module: m, needs: [hb]}\n"
    "  ann:\n    module: m\n    on: {event: steps.hb.events.trade}\n"
    "    max_parallel: 1\n    retry: {max_attempts: 2, initial_ms: 10}\n"
    "    inputs: {x: \"${{ event.data.n }}\", id: \"${{ event.id }}\"}\n"
    "  sum: {module: m, needs: [ann], inputs: {all: \"${{ steps.ann.outputs.y }}\"}}\n";

/* Dependants start once the service is ready, not before; its end does
 * not tell them again; the run ends when it has ended. */
static void test_ready_then_end(void **state)
{
    (void)state;
    rz_flow *f = yaml(DESK);
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r", 0), RZ_OK);
    size_t t[16], hb = S(r, "hb"), ui = S(r, "ui"), ann = S(r, "ann");
    assert_int_equal(ready(r, 0, t), 1);
    assert_int_equal(t[0], hb);
    assert_int_equal(rz_run_start(r, hb, 1), RZ_OK);
    assert_int_equal(ready(r, 1, t), 0);
    assert_int_equal(rz_run_step_state(r, ann), RZ_STEP_PENDING);
    assert_int_equal(rz__run_service_ready(r, ui, 2), RZ_ESTATE);
    assert_int_equal(rz__run_service_ready(r, hb, 2), 1);
    assert_int_equal(rz__run_service_ready(r, hb, 2), 0);
    assert_int_equal(ready(r, 2, t), 1);
    assert_int_equal(t[0], ui);
    assert_int_equal(rz_run_step_state(r, ann), RZ_STEP_RUNNING);   /* listens */
    assert_int_equal(rz_run_start(r, ui, 3), RZ_OK);
    assert_int_equal(rz_run_succeed(r, ui, "{}", 4), RZ_OK);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_RUNNING);
    assert_int_equal(rz_run_succeed(r, hb, "{}", 5), RZ_OK);
    /* No event came: the listener ends with no runs, its dependant runs. */
    assert_int_equal(rz_run_step_state(r, ann), RZ_STEP_SUCCEEDED);
    assert_int_equal(ready(r, 5, t), 1);
    assert_int_equal(t[0], S(r, "sum"));
    assert_int_equal(rz_run_start(r, t[0], 6), RZ_OK);
    assert_int_equal(rz_run_succeed(r, t[0], "{}", 7), RZ_OK);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* Each event one run, started in the order emitted (max_parallel 1),
 * with its data; a repeat is dropped; a run failing after its retries is
 * dead-lettered and the others go on; the step fails at the end. */
static void dead_letter_checked(rz_run *r);

static void test_events_runs_and_dead_letters(void **state)
{
    (void)state;
    rz_flow *f = yaml(DESK);
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r", 0), RZ_OK);
    size_t t[16], hb = S(r, "hb"), ann = S(r, "ann");
    assert_int_equal(rz_run_start(r, hb, 1), RZ_OK);
    size_t got = 9;
    /* Before it is ready: kept for the listener, which is not running. */
    assert_int_equal(rz__run_emit(r, hb, 1, 1, NULL, "trade", "{\"n\":1}", 2, &got), RZ_OK);
    assert_int_equal(got, 1);
    assert_int_equal(rz__run_emit(r, hb, 1, 1, NULL, "trade", "{\"n\":1}", 2, &got), 1);
    assert_int_equal(got, 0);
    assert_int_equal(rz__run_emit(r, hb, 1, 2, NULL, "quote", "{}", 2, &got), RZ_OK);
    assert_int_equal(got, 0);   /* nobody listens to quotes */
    assert_int_equal(rz__run_emit(r, hb, 1, 3, NULL, "trade", "{nope", 2, &got),
                     RZ_EINVALID);
    assert_int_equal(rz__run_emit(r, S(r, "ui"), 1, 3, NULL, "trade", "1", 2, &got),
                     RZ_ESTATE);
    assert_int_equal(rz_run_task_count(r), 4);   /* no run made yet */
    assert_int_equal(rz__run_service_ready(r, hb, 3), 1);
    assert_int_equal(rz__run_emit(r, hb, 1, 3, NULL, "trade", "{\"n\":2}", 4, &got), RZ_OK);
    assert_int_equal(rz__run_emit(r, hb, 1, 4, NULL, "trade", "{\"n\":3}", 4, &got), RZ_OK);
    assert_int_equal(rz__run_events_emitted(r, hb), 4);
    /* ui and the first run; one run at a time. */
    size_t n = ready(r, 4, t);
    assert_int_equal(n, 2);
    size_t e1 = t[0] == S(r, "ui") ? t[1] : t[0];
    char *req = NULL;
    assert_int_equal(rz_run_request(r, e1, &req), RZ_OK);
    assert_non_null(strstr(req, "\"x\":1"));
    assert_non_null(strstr(req, "\"id\":\"hb:1\""));
    rz_free(req);
    assert_int_equal(rz_run_start(r, e1, 5), RZ_OK);
    assert_int_equal(rz_run_fail(r, e1, "boom", 6), RZ_OK);   /* retried */
    assert_int_equal(ready(r, 100, t) >= 1, 1);
    assert_int_equal(rz_run_start(r, e1, 100), RZ_OK);
    assert_int_equal(rz_run_fail(r, e1, "boom again", 101), RZ_OK);
    /* Dead-lettered: the next event's run goes on. */
    n = ready(r, 101, t);
    size_t e2 = RZ_NPOS;
    for (size_t k = 0; k < n; k++)
        if (rz_run_task_step(r, t[k], NULL) == ann)
            e2 = t[k];
    assert_int_not_equal(e2, RZ_NPOS);
    assert_int_equal(rz_run_request(r, e2, &req), RZ_OK);
    assert_non_null(strstr(req, "\"x\":2"));
    rz_free(req);
    assert_int_equal(rz_run_start(r, e2, 102), RZ_OK);
    assert_int_equal(rz_run_succeed(r, e2, "{\"y\":2}", 103), RZ_OK);
    n = ready(r, 103, t);
    size_t e3 = t[n - 1];
    assert_int_equal(rz_run_task_step(r, e3, NULL), ann);
    assert_int_equal(rz_run_start(r, e3, 104), RZ_OK);
    assert_int_equal(rz_run_succeed(r, e3, "{\"y\":3}", 105), RZ_OK);
    /* Every event handled, but the source still runs. */
    assert_int_equal(rz_run_step_state(r, ann), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_succeed(r, hb, "{}", 106), RZ_OK);
    assert_int_equal(rz_run_step_state(r, ann), RZ_STEP_FAILED);
    dead_letter_checked(r);
    rz_run_free(r);
    rz_flow_free(f);
}

/* The listener's record after test_events_runs_and_dead_letters: its
 * error, its runs; the run fails once the rest has settled. */
static void dead_letter_checked(rz_run *r)
{
    cJSON *s = step_doc(r, "ann");
    assert_string_equal(cJSON_GetObjectItem(s, "error")->valuestring,
                        "1 of 3 events dead-lettered after their retries; event "
                        "hb:1: boom again");
    cJSON *runs = cJSON_GetObjectItem(s, "runs");
    assert_int_equal(cJSON_GetArraySize(runs), 3);
    const char *want[][2] = { {"hb:1", "failed"}, {"hb:3", "succeeded"},
                              {"hb:4", "succeeded"} };
    for (int k = 0; k < 3; k++) {
        cJSON *x = cJSON_GetArrayItem(runs, k);
        assert_string_equal(cJSON_GetObjectItem(x, "event_id")->valuestring, want[k][0]);
        assert_string_equal(cJSON_GetObjectItem(x, "status")->valuestring, want[k][1]);
    }
    cJSON_Delete(s);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_RUNNING);   /* ui is ready */
    assert_int_equal(rz_run_start(r, S(r, "ui"), 107), RZ_OK);
    assert_int_equal(rz_run_succeed(r, S(r, "ui"), "{}", 108), RZ_OK);
    assert_int_equal(rz_run_step_state(r, S(r, "sum")), RZ_STEP_SKIPPED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
}

/* A service's own event keys dedup across its attempts (restarted
 * elsewhere, it emits its fills again): each key is one run. */
static void test_keys_dedup_across_attempts(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: k\nsteps:\n"
                      "  hb: {module: m, kind: service, restart: {backoff_ms: 10}}\n"
                      "  ann: {module: m, on: {event: steps.hb.events.trade}}\n");
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r", 0), RZ_OK);
    size_t hb = S(r, "hb"), got = 0;
    assert_int_equal(rz_run_start(r, hb, 1), RZ_OK);
    assert_int_equal(rz__run_emit(r, hb, 1, 1, "fill-1", "trade", "1", 2, &got), RZ_OK);
    assert_int_equal(rz__run_emit(r, hb, 1, 2, "fill-2", "trade", "2", 2, &got), RZ_OK);
    assert_int_equal(rz_run_fail(r, hb, "node lost", 3), RZ_OK);   /* restarts */
    assert_int_equal(rz_run_step_state(r, hb), RZ_STEP_BACKOFF);
    assert_int_equal(rz_run_ready(r, 5000, NULL, 0) >= 1, 1);
    assert_int_equal(rz_run_start(r, hb, 5000), RZ_OK);
    assert_int_equal(rz__run_emit(r, hb, 2, 1, "fill-1", "trade", "1", 5001, &got), 1);
    assert_int_equal(rz__run_emit(r, hb, 2, 2, "fill-2", "trade", "2", 5001, &got), 1);
    assert_int_equal(rz__run_emit(r, hb, 2, 3, "fill-3", "trade", "3", 5001, &got), RZ_OK);
    assert_int_equal(got, 1);
    assert_int_equal(rz__run_events_emitted(r, hb), 3);
    rz_run_free(r);
    rz_flow_free(f);
}

/* The on_exit step waits for the service's end, not its readiness. */
static void test_on_exit_after_service_end(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: x\nsteps:\n"
                      "  s: {module: m, kind: service, restart: {policy: never}}\n"
                      "  b: {module: m, needs: [s]}\n"
                      "on_exit: {module: m}\n");
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r", 0), RZ_OK);
    size_t t[16], s = S(r, "s"), b = S(r, "b");
    assert_int_equal(rz_run_start(r, s, 1), RZ_OK);   /* ready at once */
    assert_int_equal(ready(r, 1, t), 1);
    assert_int_equal(t[0], b);
    assert_int_equal(rz_run_start(r, b, 2), RZ_OK);
    assert_int_equal(rz_run_succeed(r, b, "{}", 3), RZ_OK);
    assert_int_equal(ready(r, 3, t), 0);   /* s still runs */
    assert_int_equal(rz_run_succeed(r, s, "{}", 4), RZ_OK);
    assert_int_equal(ready(r, 4, t), 1);   /* now on_exit */
    assert_true(step_of_is_exit(r, t[0]));
    rz_run_free(r);
    rz_flow_free(f);
}

/* restart: always restarts a clean exit too, up to max_restarts; a service
 * has no timeout of its module's. */
static void test_restart_always(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: a\nsteps:\n"
                      "  s: {module: m, kind: service,"
                      " restart: {policy: always, max_restarts: 1, backoff_ms: 5}}\n");
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r", 0), RZ_OK);
    size_t t[16];
    assert_int_equal(ready(r, 0, t), 1);
    assert_int_equal(rz_run_start(r, 0, 0), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), UINT64_MAX);
    assert_int_equal(rz_run_succeed(r, 0, "{}", 10), RZ_OK);
    assert_int_equal(rz_run_step_state(r, 0), RZ_STEP_BACKOFF);
    assert_string_equal(rz_run_step_error(r, 0), "exited 0; restarted (restart: always)");
    assert_int_equal(ready(r, 15, t), 1);
    assert_int_equal(rz_run_start(r, 0, 15), RZ_OK);
    assert_int_equal(rz_run_succeed(r, 0, "{}", 20), RZ_OK);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(rz_run_step_attempts(r, 0), 2);
    rz_run_free(r);
    rz_flow_free(f);
}

/* The first error of a flow that does not load or validate, located. */
static void expect_error(const char *src, const char *msg, uint32_t line)
{
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_YAML, "t.yaml", d);
    /* With modules (none named m): whether a step is a service is known. */
    rz_registry *reg = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    if (rc == RZ_OK)
        rc = rz_flow_validate(f, reg, d);
    rz_registry_free(reg);
    assert_int_not_equal(rc, RZ_OK);
    bool found = false;
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *g = rz_diags_get(d, i);
        if (strstr(g->message, msg)) {
            found = true;
            assert_int_equal(g->line, line);
        }
    }
    if (!found) {
        char *text = NULL;
        (void)!rz_diags_to_text(d, &text);
        fprintf(stderr, "want '%s', got:\n%s\n", msg, text ? text : "");
        rz_free(text);
    }
    assert_true(found);
    rz_diags_free(d);
    rz_flow_free(f);
}

static void test_bad_declarations_located(void **state)
{
    (void)state;
    const char *head = "flux: 1\nname: b\nsteps:\n";
    char src[1024];
    struct { const char *steps, *msg; uint32_t line; } cases[] = {
        { "  a: {module: m}\n  b: {module: m, on: {event: steps.a.events.t}}\n",
          "step 'b' listens to events of 'a', which is not a service", 5 },
        { "  b: {module: m, on: {event: steps.zz.events.t}}\n",
          "step 'b' listens to events of unknown step 'zz'", 4 },
        { "  b: {module: m, kind: service, on: {event: steps.b.events.t}}\n",
          "service 'b' cannot have for_each, on or verify", 4 },
        { "  b: {module: m, on: {event: hb.trade}}\n",
          "'event' must be steps.<id>.events.<name>", 4 },
        { "  b: {module: m, restart: {policy: never}}\n",
          "'restart' is for services: step 'b' has no 'kind: service'", 4 },
        { "  b: {module: m, kind: service, retry: 2}\n",
          "service 'b' restarts by its 'restart' policy, not 'retry'", 4 },
        { "  b: {module: m, kind: daemon}\n", "'kind' must be job or service", 4 },
        { "  b: {module: m, kind: service, restart: {policy: sometimes}}\n",
          "'policy' must be on-failure, always or never", 4 },
        { "  b: {module: m, kind: service, ready: tcp}\n",
          "'ready' must be line", 4 },
        { "  a: {module: m, inputs: {x: \"${{ event.data }}\"}}\n",
          "event.data is known only in the inputs and config of a step with 'on", 4 },
        /* The listener before its source: a cycle through the event edge. */
        { "  s: {module: m, kind: service, needs: [b]}\n"
          "  b: {module: m, on: {event: steps.s.events.t}}\n", "cycle", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(src, sizeof src, "%s%s", head, cases[i].steps);
        if (strcmp(cases[i].msg, "cycle") == 0) {
            rz_flow *f = NULL;
            rz_diags *d = NULL;
            assert_int_equal(rz_diags_new(&d), RZ_OK);
            assert_int_equal(rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_YAML,
                                           "t.yaml", d), RZ_OK);
            assert_int_not_equal(rz_flow_validate(f, NULL, d), RZ_OK);
            bool cyc = false;
            for (size_t k = 0; k < rz_diags_count(d); k++)
                cyc |= rz_diags_get(d, k)->code == RZ_ECYCLE;
            assert_true(cyc);
            rz_diags_free(d);
            rz_flow_free(f);
            continue;
        }
        expect_error(src, cases[i].msg, cases[i].line);
    }
}

/* A module whose manifest says "kind": "service" makes its steps services
 * (events may be listened to); what a service cannot have is refused. */
static void test_module_kind_service(void **state)
{
    (void)state;
    rz_registry *reg = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, RZ_SOURCE_ROOT
                                         "/tests/data/modules/service", NULL), RZ_OK);
    struct { const char *steps, *msg; } cases[] = {
        { "  t: {module: ticker@1}\n"
          "  l: {module: ticker@1, kind: job, on: {event: steps.t.events.x}}\n",
          "module 'ticker' is a service (its manifest's kind): step 'l' cannot be "
          "kind: job" },
        { "  t: {module: ticker@1, retry: 2}\n",
          "module 'ticker' is a service: step 't' restarts by its 'restart' policy" },
        { "  t: {module: ticker@1, for_each: [1, 2]}\n",
          "module 'ticker' is a service: step 't' cannot have for_each, on or verify" },
        { "  t: {module: ticker@1}\n", NULL },
        { "  t: {module: ticker@1, restart: {policy: never}, ready: line}\n", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "flux: 1\nname: k\nsteps:\n%s", cases[i].steps);
        rz_flow *f = NULL;
        rz_diags *d = NULL;
        assert_int_equal(rz_diags_new(&d), RZ_OK);
        assert_int_equal(rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_YAML,
                                       "t.yaml", d), RZ_OK);
        int rc = rz_flow_validate(f, reg, d);
        if (!cases[i].msg) {
            assert_int_equal(rc, RZ_OK);
            assert_true(f->steps[0].service);
            assert_int_equal(f->steps[0].retry.max_attempts,
                             f->steps[0].restart == RZ_RESTART_NEVER ? 1 : 4);
        } else {
            assert_int_not_equal(rc, RZ_OK);
            bool found = false;
            for (size_t k = 0; k < rz_diags_count(d); k++)
                found |= strstr(rz_diags_get(d, k)->message, cases[i].msg) != NULL;
            assert_true(found);
        }
        rz_diags_free(d);
        rz_flow_free(f);
    }
    rz_registry_free(reg);
}

/* ready: {tcp|http} is kept as its check string and written back. */
static void test_ready_check_round_trip(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: r\nsteps:\n"
                      "  a: {module: m@1, kind: service, ready: {tcp: 8080}}\n"
                      "  b: {module: m@1, kind: service, ready: {http: "
                      "\"http://localhost:9/h\", timeout_s: 5}}\n");
    const rz__step *a = &f->steps[0], *b = &f->steps[1];
    assert_string_equal(a->ready_check, "tcp:8080");
    assert_true(a->ready_line);
    assert_int_equal(a->ready_timeout_s, 0);
    assert_string_equal(b->ready_check, "http://localhost:9/h");
    assert_int_equal(b->ready_timeout_s, 5);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(rz_flow_to_json(f, 0, &json, &len), RZ_OK);
    assert_non_null(strstr(json, "\"ready\":{\"tcp\":8080}"));
    assert_non_null(strstr(json, "\"ready\":{\"http\":\"http://localhost:9/h\","
                           "\"timeout_s\":5}"));
    rz_free(json);
    rz_flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_then_end),
        cmocka_unit_test(test_events_runs_and_dead_letters),
        cmocka_unit_test(test_keys_dedup_across_attempts),
        cmocka_unit_test(test_on_exit_after_service_end),
        cmocka_unit_test(test_restart_always),
        cmocka_unit_test(test_bad_declarations_located),
        cmocka_unit_test(test_ready_check_round_trip),
        cmocka_unit_test(test_module_kind_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
