/* Run state machine: every transition, retries, timeouts, conditions,
 * failure policies, cancel, inputs, requests and the JSON view. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "run/changes.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "run/usage.h"
#include "rhizos/engine.h"
#include "rhizos/run.h"
#include "helpers.h"

static rz_flow *parse(const char *src, rz_format fmt)
{
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, src, strlen(src), fmt, "t", d);
    if (rc != RZ_OK) {
        char *text = NULL;
        (void)!rz_diags_to_text(d, &text);   /* diagnostics of a failure */
        fprintf(stderr, "parse failed: %s\n", text ? text : "");
        rz_free(text);
    }
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);
    assert_int_equal(rz__flow_link(f), RZ_OK);
    return f;
}

static rz_flow *yaml(const char *src)
{
    return parse(src, RZ_FORMAT_YAML);
}

static rz_run *start_run(const rz_flow *f, const char *inputs)
{
    rz_run *r = NULL;
    int rc = rz_run_new(&r, f, inputs, "r1", 0);
    if (rc != RZ_OK)
        fprintf(stderr, "rz_run_new: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    return r;
}

static size_t S(const rz_run *r, const char *id)
{
    size_t i = rz_flow_step_find(rz_run_flow(r), id);
    assert_int_not_equal(i, RZ_NPOS);
    return i;
}

static rz_step_state state_of(const rz_run *r, const char *id)
{
    return rz_run_step_state(r, S(r, id));
}

/* The ready steps' ids, comma-separated, into a static buffer. */
static const char *ready_ids(rz_run *r, uint64_t now)
{
    static char buf[256];
    size_t idx[16];
    size_t n = rz_run_ready(r, now, idx, 16);
    assert_true(n <= 16);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(buf, i ? "," : "");
        strcat(buf, rz_flow_step_id(rz_run_flow(r), idx[i]));
    }
    return buf;
}

static void run_ok(rz_run *r, const char *id, const char *outputs, uint64_t now)
{
    assert_int_equal(rz_run_start(r, S(r, id), now), RZ_OK);
    assert_int_equal(rz_run_succeed(r, S(r, id), outputs, now), RZ_OK);
}

/* Step `id` started at `started` and failed with `error` at `ended`. */
static void run_fails(rz_run *r, const char *id, const char *error, uint64_t started,
                      uint64_t ended)
{
    assert_int_equal(rz_run_start(r, S(r, id), started), RZ_OK);
    assert_int_equal(rz_run_fail(r, S(r, id), error, ended), RZ_OK);
}

static void expect_json(const rz_run *r, const char *want)
{
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_string_equal(json, want);
    rz_free(json);
}

static void expect_request(const rz_run *r, const char *id, const char *want)
{
    char *req = NULL;
    int rc = rz_run_request(r, S(r, id), &req);
    if (rc != RZ_OK)
        fprintf(stderr, "rz_run_request: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    assert_string_equal(req, want);
    rz_free(req);
}

/* ---- the happy path and the JSON view ---- */

static void test_linear_success(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: lin\nsteps:\n"
                      "  a: {module: noop}\n"
                      "  b: {module: noop, needs: [a]}\n");
    rz_run *r = start_run(f, NULL);
    assert_string_equal(rz_run_id(r), "r1");
    assert_ptr_equal(rz_run_flow(r), f);
    assert_int_equal(state_of(r, "a"), RZ_STEP_READY);
    assert_int_equal(state_of(r, "b"), RZ_STEP_PENDING);
    assert_string_equal(ready_ids(r, 0), "a");
    assert_int_equal(rz_run_state_get(r), RZ_RUN_RUNNING);
    assert_false(rz_run_done(r));

    assert_int_equal(rz_run_start(r, S(r, "a"), 10), RZ_OK);
    assert_int_equal(state_of(r, "a"), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_step_attempts(r, S(r, "a")), 1);
    assert_string_equal(ready_ids(r, 10), "");
    expect_json(r, "{\"id\":\"r1\",\"flow\":\"lin\",\"status\":\"running\","
                   "\"steps\":{\"a\":{\"status\":\"running\",\"attempts\":1,"
                   "\"outputs\":{},\"started_ms\":10},\"b\":{\"status\":\"pending\","
                   "\"attempts\":0,\"outputs\":{}}},\"outputs\":{}}");

    assert_int_equal(rz_run_succeed(r, S(r, "a"), "{\"x\": 1}", 20), RZ_OK);
    assert_int_equal(state_of(r, "a"), RZ_STEP_SUCCEEDED);
    assert_string_equal(ready_ids(r, 20), "b");
    char *outs = NULL;
    assert_int_equal(rz_run_step_outputs(r, S(r, "a"), &outs), RZ_OK);
    assert_string_equal(outs, "{\"x\":1}");
    rz_free(outs);
    assert_int_equal(rz_run_step_outputs(r, S(r, "b"), &outs), RZ_OK);
    assert_string_equal(outs, "{}");
    rz_free(outs);

    assert_int_equal(rz_run_start(r, S(r, "b"), 30), RZ_OK);
    assert_int_equal(rz_run_succeed(r, S(r, "b"), NULL, 40), RZ_OK);
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    /* "outputs" holds final steps only (b), keyed by step id. */
    expect_json(r, "{\"id\":\"r1\",\"flow\":\"lin\",\"status\":\"succeeded\","
                   "\"steps\":{\"a\":{\"status\":\"succeeded\",\"attempts\":1,"
                   "\"outputs\":{\"x\":1},\"started_ms\":10,\"duration_ms\":10},"
                   "\"b\":{\"status\":\"succeeded\",\"attempts\":1,\"outputs\":{},"
                   "\"started_ms\":30,\"duration_ms\":10}},\"outputs\":{\"b\":{}}}");
    rz_run_free(r);
    rz_flow_free(f);
}

/* rz_run_ready against the states themselves, after every transition of a
 * random run (steps started out of the listed order, failures with retries
 * and timeouts, on_failure: continue so that nothing stops it): the count
 * is the number of READY tasks, every listed step is READY and, with room
 * for all, the list is exactly the READY set, in the order they became
 * ready. */
static void expect_ready_is_states(rz_run *r, uint64_t now, size_t *ids, size_t cap)
{
    size_t n = rz_run_ready(r, now, ids, cap), want = 0;
    for (size_t i = 0; i < rz_run_task_count(r); i++)
        want += rz_run_step_state(r, i) == RZ_STEP_READY;
    assert_int_equal(n, want);
    for (size_t k = 0; k < (n < cap ? n : cap); k++) {
        assert_int_equal(rz_run_step_state(r, ids[k]), RZ_STEP_READY);
        for (size_t m = 0; m < k; m++)
            assert_int_not_equal(ids[m], ids[k]);
    }
}

static void test_ready_list_matches_states(void **state)
{
    (void)state;
    enum { N = 240 };
    char *src = malloc(N * 160 + 64);
    assert_non_null(src);
    size_t len = (size_t)sprintf(src, "flux: 1\nname: ready\nsteps:\n");
    uint64_t seed = 12345;
    for (size_t i = 0; i < N; i++) {
        len += (size_t)sprintf(src + len, "  s%zu:\n    module: noop\n    on_failure: continue\n"
                               "    timeout_s: 1\n"
                               "    retry: {max_attempts: 3, backoff: fixed, initial_ms: 5}\n",
                               i);
        if (i >= 8) {   /* up to two earlier steps: a wide DAG */
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            len += (size_t)sprintf(src + len, "    needs: [s%zu, s%zu]\n",
                                   (size_t)(seed >> 33) % i, (size_t)(seed >> 45) % i);
        }
    }
    rz_flow *f = yaml(src);
    rz_run *r = start_run(f, NULL);
    size_t ids[N], small[3];
    uint64_t now = 0;
    for (int turn = 0; !rz_run_done(r) && turn < 20000; turn++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        unsigned pick = (unsigned)(seed >> 40);
        size_t n = rz_run_ready(r, now, ids, N);
        expect_ready_is_states(r, now, small, 3);
        expect_ready_is_states(r, now, ids, N);
        if (n && pick % 4 != 0)   /* any ready one, not only the first */
            assert_int_equal(rz_run_start(r, ids[pick % n], now), RZ_OK);
        for (size_t i = 0; i < rz_run_task_count(r); i++) {
            if (rz_run_step_state(r, i) != RZ_STEP_RUNNING || (pick >> 8) % 3 == 0)
                continue;
            if ((pick >> 12) % 5 == 0)
                assert_int_equal(rz_run_fail(r, i, "boom", now), RZ_OK);
            else
                assert_int_equal(rz_run_succeed(r, i, "{}", now), RZ_OK);
            break;
        }
        now += (pick >> 16) % 7 == 0 ? 1500 : 1;   /* now and then past a timeout */
        size_t expired[8];
        (void)rz_run_tick(r, now, expired, 8);
        expect_ready_is_states(r, now, ids, N);
    }
    assert_true(rz_run_done(r));
    rz_run_free(r);
    rz_flow_free(f);
    free(src);
}

/* ---- deadlines: earliest first, against a model ---- */

/* A tick fails the steps past their deadlines earliest deadline first (then
 * by step), whatever order they started in. */
static void test_timeouts_earliest_first(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: order\nsteps:\n"
                      "  a: {module: noop, timeout_s: 9}\n"
                      "  b: {module: noop, timeout_s: 2}\n"
                      "  c: {module: noop, timeout_s: 5}\n"
                      "  d: {module: noop, timeout_s: 2}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a"), b = S(r, "b"), c = S(r, "c"), d = S(r, "d");
    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_start(r, d, 100), RZ_OK);
    assert_int_equal(rz_run_start(r, c, 0), RZ_OK);
    assert_int_equal(rz_run_start(r, b, 100), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 2100);
    size_t exp[4];
    assert_int_equal(rz_run_tick(r, 99999, exp, 4), 4);
    assert_int_equal(exp[0], b);   /* 2100, the lower step of the two */
    assert_int_equal(exp[1], d);   /* 2100 */
    assert_int_equal(exp[2], c);   /* 5000 */
    assert_int_equal(exp[3], a);   /* 9000 */
    assert_int_equal(rz_run_next_wakeup(r), UINT64_MAX);
    rz_run_free(r);
    rz_flow_free(f);
}

/* Retries due together are made ready earliest first (then by step),
 * whatever order their steps failed in. */
static void test_retries_ready_earliest_first(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: order\nsteps:\n"
                      "  a:\n    module: noop\n    retry: {max_attempts: 2, initial_ms: 300}\n"
                      "  b:\n    module: noop\n    retry: {max_attempts: 2, initial_ms: 100}\n"
                      "  c:\n    module: noop\n    retry: {max_attempts: 2, initial_ms: 200}\n"
                      "  d:\n    module: noop\n    retry: {max_attempts: 2, initial_ms: 100}\n");
    rz_run *r = start_run(f, NULL);
    assert_string_equal(ready_ids(r, 0), "a,b,c,d");
    const char *order[] = {"a", "d", "c", "b"};
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(rz_run_start(r, S(r, order[k]), 0), RZ_OK);
    assert_string_equal(ready_ids(r, 0), "");
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(rz_run_fail(r, S(r, order[k]), "boom", 10), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 110);
    assert_string_equal(ready_ids(r, 5000), "b,d,c,a");
    rz_run_free(r);
    rz_flow_free(f);
}

/* What the test knows of step i: its timeout and backoff are set by i. */
typedef struct {
    rz_step_state st;
    uint32_t attempts;
    uint64_t due;
} model_step;

enum { DL_N = 300, DL_MAX_ATTEMPTS = 3 };

static uint32_t dl_timeout_s(size_t i) { return (uint32_t)(i % 4); }   /* 0: none */
static uint64_t dl_backoff_ms(size_t i) { return 40 * (i % 6); }

static bool dl_timed(const model_step *m)
{
    return m->st == RZ_STEP_BACKOFF || (m->st == RZ_STEP_RUNNING && m->due);
}

/* The next wake-up as a walk of every step would find it. */
static uint64_t dl_scan_min(const model_step *m)
{
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; i < DL_N; i++)
        if (dl_timed(&m[i]) && m[i].due < t)
            t = m[i].due;
    return t;
}

/* Steps in `want` (n) whose state is `st`, due by now, earliest first. */
static size_t dl_due(const model_step *m, rz_step_state st, uint64_t now, size_t *want)
{
    size_t n = 0;
    for (uint64_t t = 0; ; ) {   /* by due time, then by step */
        uint64_t next = UINT64_MAX;
        for (size_t i = 0; i < DL_N; i++) {
            if (m[i].st != st || !dl_timed(&m[i]) || m[i].due > now)
                continue;
            if (m[i].due == t)
                want[n++] = i;
            else if (m[i].due > t && m[i].due < next)
                next = m[i].due;
        }
        if (next == UINT64_MAX)
            return n;
        t = next;
    }
}

static void dl_failed(model_step *m, size_t i, uint64_t now)
{
    bool again = m[i].attempts < DL_MAX_ATTEMPTS;
    m[i].st = again ? RZ_STEP_BACKOFF : RZ_STEP_FAILED;
    m[i].due = again ? now + dl_backoff_ms(i) : 0;
}

static int by_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* rz_run_ready: the steps left ready and the retries due. (Where a retry
 * lands in the list depends on the list's lazy drops: a set here.) */
static void dl_sweep(rz_run *r, model_step *m, size_t *ready, size_t *n_ready,
                     uint64_t now)
{
    size_t got[DL_N], want[DL_N];
    *n_ready += dl_due(m, RZ_STEP_BACKOFF, now, ready + *n_ready);
    for (size_t k = 0; k < *n_ready; k++)
        m[ready[k]].st = RZ_STEP_READY;
    assert_int_equal(rz_run_ready(r, now, got, DL_N), *n_ready);
    memcpy(want, ready, *n_ready * sizeof *want);
    qsort(want, *n_ready, sizeof *want, by_size);
    qsort(got, *n_ready, sizeof *got, by_size);
    for (size_t k = 0; k < *n_ready; k++)
        assert_int_equal(got[k], want[k]);
}

static void dl_tick(rz_run *r, model_step *m, uint64_t now)
{
    size_t want[DL_N], got[DL_N];
    size_t n = dl_due(m, RZ_STEP_RUNNING, now, want);
    assert_int_equal(rz_run_tick(r, now, got, DL_N), n);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(got[k], want[k]);
        dl_failed(m, want[k], now);
    }
}

/* One random step of the test's: start, finish, or move time on. */
static void dl_turn(rz_run *r, model_step *m, size_t *ready, size_t *n_ready,
                    uint64_t now, unsigned pick)
{
    if (*n_ready && pick % 3 == 0) {   /* start a ready one */
        size_t k = (pick >> 4) % *n_ready, i = ready[k];
        memmove(ready + k, ready + k + 1, (--*n_ready - k) * sizeof *ready);
        assert_int_equal(rz_run_start(r, i, now), RZ_OK);
        m[i].st = RZ_STEP_RUNNING;
        m[i].attempts++;
        m[i].due = dl_timeout_s(i) ? now + dl_timeout_s(i) * 1000u : 0;
        return;
    }
    size_t i = (pick >> 4) % DL_N;
    if (m[i].st != RZ_STEP_RUNNING || pick % 3 == 2)
        return;
    if ((pick >> 16) % 3 == 0) {
        assert_int_equal(rz_run_succeed(r, i, "{}", now), RZ_OK);
        m[i].st = RZ_STEP_SUCCEEDED;
    } else {
        assert_int_equal(rz_run_fail(r, i, "boom", now), RZ_OK);
        dl_failed(m, i, now);
    }
}

/* Many deadlines and retries at once, with ties: the next wake-up is what a
 * walk of every step finds, a tick fails exactly the steps past their
 * deadlines and a sweep makes ready exactly the retries due, both earliest
 * first (then by step); every state as the model has it. */
static void test_deadlines_match_a_scan(void **state)
{
    (void)state;
    char *src = malloc(DL_N * 160 + 64);
    assert_non_null(src);
    size_t len = (size_t)sprintf(src, "flux: 1\nname: deadlines\nsteps:\n");
    for (size_t i = 0; i < DL_N; i++)
        len += (size_t)sprintf(src + len, "  s%03zu:\n    module: noop\n"
                               "    on_failure: continue\n    timeout_s: %u\n"
                               "    retry: {max_attempts: %d, backoff: fixed, "
                               "initial_ms: %llu}\n", i, dl_timeout_s(i),
                               DL_MAX_ATTEMPTS, (unsigned long long)dl_backoff_ms(i));
    rz_flow *f = yaml(src);
    rz_run *r = start_run(f, NULL);
    model_step m[DL_N] = {{0}};
    size_t ready[DL_N], n_ready = DL_N;
    for (size_t i = 0; i < DL_N; i++) {
        assert_int_equal(S(r, rz_flow_step_id(f, i)), i);
        ready[i] = i;
        m[i].st = RZ_STEP_READY;
    }
    uint64_t now = 0, seed = 22;
    for (int turn = 0; !rz_run_done(r) && turn < 40000; turn++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        unsigned pick = (unsigned)(seed >> 33);
        dl_turn(r, m, ready, &n_ready, now, pick);
        assert_int_equal(rz_run_next_wakeup(r), dl_scan_min(m));
        now += (pick >> 20) % 5 == 0 ? (pick >> 8) % 1700 : 0;
        if ((pick >> 24) % 4 == 0)
            dl_tick(r, m, now);
        dl_sweep(r, m, ready, &n_ready, now);
        assert_int_equal(rz_run_next_wakeup(r), dl_scan_min(m));
        for (size_t i = 0; i < DL_N; i++)
            assert_int_equal(rz_run_step_state(r, i), m[i].st);
    }
    assert_true(rz_run_done(r));
    rz_run_free(r);
    rz_flow_free(f);
    free(src);
}

static void test_names_and_defaults(void **state)
{
    (void)state;
    static const char *const steps[] = {"pending", "ready", "backoff", "running",
                                        "succeeded", "failed", "skipped",
                                        "cancelled"};
    for (int i = 0; i <= RZ_STEP_CANCELLED; i++)
        assert_string_equal(rz_step_state_name((rz_step_state)i), steps[i]);
    assert_string_equal(rz_step_state_name((rz_step_state)99), "unknown");
    assert_string_equal(rz_run_state_name(RZ_RUN_RUNNING), "running");
    assert_string_equal(rz_run_state_name(RZ_RUN_SUCCEEDED), "succeeded");
    assert_string_equal(rz_run_state_name(RZ_RUN_FAILED), "failed");
    assert_string_equal(rz_run_state_name(RZ_RUN_CANCELLED), "cancelled");
    assert_string_equal(rz_run_state_name((rz_run_state)-1), "unknown");

    rz_flow *f = yaml("flux: 1\nname: one\nsteps:\n  a: {module: noop}\n");
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, NULL, 0), RZ_OK);
    assert_string_equal(rz_run_id(r), "run");
    assert_int_equal(rz_run_next_wakeup(r), UINT64_MAX);
    rz_run_free(r);
    rz_run_free(NULL);
    r = (rz_run *)&r;
    assert_int_equal(rz_run_new(&r, NULL, NULL, NULL, 0), RZ_EINVAL);
    assert_null(r);
    rz_flow_free(f);
}

/* ---- invalid transitions ---- */

static void test_invalid_transitions(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: bad\nsteps:\n"
                      "  a: {module: noop}\n"
                      "  b: {module: noop, needs: [a]}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a"), b = S(r, "b");
    char *req = (char *)&req;
    assert_int_equal(rz_run_start(r, b, 0), RZ_ESTATE);          /* pending */
    assert_non_null(strstr(rz_error_last()->message, "'b'"));
    assert_int_equal(rz_run_succeed(r, a, "{}", 0), RZ_ESTATE);  /* ready */
    assert_int_equal(rz_run_fail(r, a, "x", 0), RZ_ESTATE);
    assert_int_equal(rz_run_request(r, b, &req), RZ_ESTATE);
    assert_null(req);
    assert_int_equal(rz_run_start(r, 2, 0), RZ_EINVAL);
    assert_int_equal(rz_run_start(r, RZ_NPOS, 0), RZ_EINVAL);
    assert_int_equal(rz_run_request(r, 7, &req), RZ_EINVAL);
    assert_int_equal(rz_run_step_outputs(r, 7, &req), RZ_EINVAL);
    assert_int_equal(rz_run_step_state(r, 7), RZ_STEP_PENDING);
    assert_null(rz_run_step_error(r, 7));
    assert_int_equal(rz_run_step_attempts(r, 7), 0);

    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_start(r, a, 0), RZ_ESTATE);          /* running */
    assert_int_equal(rz_run_succeed(r, a, "{}", 1), RZ_OK);
    assert_int_equal(rz_run_succeed(r, a, "{}", 1), RZ_ESTATE);  /* done */
    run_ok(r, "b", "{}", 2);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_invalid_after_done(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: done\nsteps:\n  a: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    run_ok(r, "a", "{}", 5);
    assert_int_equal(rz_run_succeed(r, 0, "{}", 6), RZ_ESTATE);
    assert_int_equal(rz_run_fail(r, 0, "late", 6), RZ_ESTATE);
    assert_int_equal(rz_run_start(r, 0, 6), RZ_ESTATE);
    assert_int_equal(rz_run_cancel(r, 6), RZ_ESTATE);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- retries ---- */

static void test_retry_fixed(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fixed\nsteps:\n"
                      "  a:\n    module: noop\n"
                      "    retry: {max_attempts: 3, backoff: fixed, initial_ms: 500}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a");
    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, a, "boom 1", 100), RZ_OK);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_BACKOFF);
    assert_string_equal(rz_run_step_error(r, a), "boom 1");
    assert_int_equal(rz_run_next_wakeup(r), 600);
    assert_int_equal(rz_run_start(r, a, 300), RZ_ESTATE);        /* backoff */
    assert_string_equal(ready_ids(r, 599), "");
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_BACKOFF);
    assert_string_equal(ready_ids(r, 600), "a");
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_READY);
    assert_int_equal(rz_run_next_wakeup(r), UINT64_MAX);

    assert_int_equal(rz_run_start(r, a, 650), RZ_OK);
    assert_int_equal(rz_run_step_attempts(r, a), 2);
    assert_int_equal(rz_run_fail(r, a, "boom 2", 700), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 1200);               /* fixed */
    assert_string_equal(ready_ids(r, 5000), "a");
    assert_int_equal(rz_run_start(r, a, 5000), RZ_OK);
    assert_int_equal(rz_run_fail(r, a, NULL, 5001), RZ_OK);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_FAILED);
    assert_int_equal(rz_run_step_attempts(r, a), 3);
    assert_string_equal(rz_run_step_error(r, a), "failed");
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    expect_json(r, "{\"id\":\"r1\",\"flow\":\"fixed\",\"status\":\"failed\","
                   "\"steps\":{\"a\":{\"status\":\"failed\",\"attempts\":3,"
                   "\"outputs\":{},\"started_ms\":0,\"duration_ms\":5001,"
                   "\"error\":\"failed\"}},\"outputs\":{},"
                   "\"failed_steps\":[\"a\"]}");
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_retry_exponential_capped(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: expo\nsteps:\n"
                      "  a:\n    module: noop\n"
                      "    retry: {max_attempts: 6, backoff: exponential,"
                      " initial_ms: 100, max_ms: 700}\n"
                      "  b: {module: noop, needs: [a]}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a");
    /* 100, 200, 400, then 800 and 1600 capped at 700. */
    static const uint64_t delay[] = {100, 200, 400, 700, 700};
    uint64_t now = 1000;
    for (size_t k = 0; k < RZ_ARRAY_LEN(delay); k++) {
        assert_int_equal(rz_run_start(r, a, now), RZ_OK);
        assert_int_equal(rz_run_step_attempts(r, a), k + 1);
        now += 10;
        assert_int_equal(rz_run_fail(r, a, "again", now), RZ_OK);
        assert_int_equal(rz_run_step_state(r, a), RZ_STEP_BACKOFF);
        assert_int_equal(rz_run_next_wakeup(r), now + delay[k]);
        assert_int_equal(rz_run_ready(r, now + delay[k] - 1, NULL, 0), 0);
        assert_int_equal(rz_run_ready(r, now + delay[k], NULL, 0), 1);
        now += delay[k];
    }
    /* The sixth attempt succeeds; the run carries on downstream. */
    run_ok(r, "a", "{\"v\":true}", now);
    assert_int_equal(rz_run_step_attempts(r, a), 6);
    assert_null(rz_run_step_error(r, a));
    assert_string_equal(ready_ids(r, now), "b");
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- timeouts ---- */

static void test_timeout(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: slow\nsteps:\n"
                      "  a: {module: noop, timeout_s: 2}\n"
                      "  b:\n    module: noop\n    timeout_s: 5\n"
                      "    retry: {max_attempts: 2, initial_ms: 50}\n"
                      "  c: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a"), b = S(r, "b"), c = S(r, "c");
    assert_int_equal(rz_run_start(r, a, 1000), RZ_OK);
    assert_int_equal(rz_run_start(r, b, 1500), RZ_OK);
    assert_int_equal(rz_run_start(r, c, 1500), RZ_OK);           /* no limit */
    assert_int_equal(rz_run_next_wakeup(r), 3000);
    size_t exp[4];
    assert_int_equal(rz_run_tick(r, 2999, exp, 4), 0);
    assert_int_equal(rz_run_tick(r, 3000, exp, 4), 1);
    assert_int_equal(exp[0], a);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, a), "timed out after 2 s");
    assert_int_equal(rz_run_next_wakeup(r), 6500);
    /* Timed out with attempts left: back off like any failure. The caller's
     * cap bounds what is written, not what is failed. */
    assert_int_equal(rz_run_tick(r, 7000, exp, 0), 1);
    assert_int_equal(rz_run_step_state(r, b), RZ_STEP_BACKOFF);
    assert_string_equal(rz_run_step_error(r, b), "timed out after 5 s");
    assert_int_equal(rz_run_next_wakeup(r), 7050);
    assert_string_equal(ready_ids(r, 7050), "b");
    assert_int_equal(rz_run_start(r, b, 7100), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 12100);
    assert_int_equal(rz_run_succeed(r, b, "{}", 7200), RZ_OK);
    assert_int_equal(rz_run_tick(r, 999999, exp, 4), 0);
    assert_int_equal(rz_run_step_state(r, c), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_succeed(r, c, "{}", 999999), RZ_OK);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* rz_run_expire: one step, only once its timeout has passed, with a note. */
static void test_expire_one(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: slow\nsteps:\n"
                      "  a: {module: noop, timeout_s: 2}\n"
                      "  b: {module: noop, timeout_s: 2}\n"
                      "  c: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a"), b = S(r, "b"), c = S(r, "c");
    assert_int_equal(rz_run_expire(r, a, " x", 1000), 0);         /* not running */
    assert_int_equal(rz_run_start(r, a, 1000), RZ_OK);
    assert_int_equal(rz_run_start(r, b, 1000), RZ_OK);
    assert_int_equal(rz_run_start(r, c, 1000), RZ_OK);
    assert_int_equal(rz_run_expire(r, a, " x", 2999), 0);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_expire(r, c, " x", 999999), 0);       /* no limit */
    assert_int_equal(rz_run_expire(r, 9, " x", 3000), RZ_EINVAL);
    assert_int_equal(rz_run_expire(r, a, " waiting", 3000), 1);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, a), "timed out after 2 s waiting");
    assert_int_equal(rz_run_expire(r, a, " x", 3000), 0);         /* settled */
    /* The tick takes the rest, with the plain reason. */
    size_t exp[2];
    assert_int_equal(rz_run_tick(r, 3000, exp, 2), 1);
    assert_int_equal(exp[0], b);
    assert_string_equal(rz_run_step_error(r, b), "timed out after 2 s");
    assert_int_equal(rz_run_expire(r, b, NULL, 3000), 0);
    assert_int_equal(rz_run_succeed(r, c, "{}", 3001), RZ_OK);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* Without its own timeout_s a step takes its module's exec.timeout_s. */
static void test_module_timeout(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: modt\nsteps:\n"
                      "  a: {module: m}\n"
                      "  b: {module: m, timeout_s: 9}\n");
    struct rz_module m = {0};
    m.timeout_s = 4;
    f->steps[0].module = &m;
    f->steps[1].module = &m;
    rz_run *r = start_run(f, NULL);
    assert_int_equal(rz_run_start(r, S(r, "a"), 100), RZ_OK);
    assert_int_equal(rz_run_start(r, S(r, "b"), 100), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 4100);
    size_t exp[2];
    assert_int_equal(rz_run_tick(r, 4100, exp, 2), 1);
    assert_int_equal(exp[0], S(r, "a"));
    assert_string_equal(rz_run_step_error(r, S(r, "a")), "timed out after 4 s");
    assert_int_equal(rz_run_next_wakeup(r), 9100);
    assert_int_equal(rz_run_tick(r, 9100, exp, 2), 1);
    assert_string_equal(rz_run_step_error(r, S(r, "b")), "timed out after 9 s");
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- when ---- */

static const char *WHEN_FLOW =
    "flux: 1\nname: branch\n"
    "inputs:\n  mode: {type: string, default: full}\n"
    "steps:\n"
    "  a: {module: noop}\n"
    "  b:\n    module: noop\n    needs: [a]\n"
    "    when: \"${{ steps.a.outputs.go }}\"\n"
    "  c: {module: noop, needs: [b]}\n"
    "  d: {module: noop, needs: [a, c]}\n"
    "  e: {module: noop, needs: [a]}\n"
    "  f:\n    module: noop\n    when: \"inputs.mode == 'full'\"\n";

static void test_when_false_skips_downstream(void **state)
{
    (void)state;
    rz_flow *f = yaml(WHEN_FLOW);
    rz_run *r = start_run(f, NULL);
    assert_string_equal(ready_ids(r, 0), "a,f");   /* bare condition: true */
    run_ok(r, "f", "{}", 0);
    run_ok(r, "a", "{\"go\": false}", 1);
    assert_int_equal(state_of(r, "b"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(r, "c"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(r, "d"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(r, "e"), RZ_STEP_READY);
    assert_non_null(strstr(rz_run_step_error(r, S(r, "b")), "condition is false"));
    assert_string_equal(rz_run_step_error(r, S(r, "c")),
                        "upstream step 'b' was skipped");
    assert_false(rz_run_done(r));
    run_ok(r, "e", "{\"n\":2}", 2);
    assert_true(rz_run_done(r));
    /* Skipped by a condition is not a failure. */
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"outputs\":{\"e\":{\"n\":2},\"f\":{}}}"));
    assert_non_null(strstr(json, "\"c\":{\"status\":\"skipped\",\"attempts\":0"));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_when_true_and_inputs(void **state)
{
    (void)state;
    rz_flow *f = yaml(WHEN_FLOW);
    rz_run *r = start_run(f, "{\"mode\":\"lite\"}");
    assert_string_equal(ready_ids(r, 0), "a");
    assert_int_equal(state_of(r, "f"), RZ_STEP_SKIPPED);
    run_ok(r, "a", "{\"go\": 1}", 1);
    assert_string_equal(ready_ids(r, 1), "b,e");
    run_ok(r, "b", "{}", 2);
    run_ok(r, "c", "{}", 3);
    run_ok(r, "d", "{}", 4);
    run_ok(r, "e", "{}", 5);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* A 100k chain skipped from the top: propagation must not recurse. */
static void test_skip_long_chain(void **state)
{
    (void)state;
    const size_t n = 100000;
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"name\":\"long\",\"nodes\":[{\"id\":\"s0\","
                     "\"moduleId\":\"noop\",\"when\":\"false\"}");
    for (size_t i = 1; i < n; i++)
        rz__buf_printf(&b, ",{\"id\":\"s%zu\",\"moduleId\":\"noop\"}", i);
    rz__buf_puts(&b, "],\"connections\":[");
    for (size_t i = 0; i + 1 < n; i++)
        rz__buf_printf(&b, "%s{\"id\":\"e%zu\",\"source\":{\"nodeId\":\"s%zu\","
                       "\"port\":\"o\"},\"target\":{\"nodeId\":\"s%zu\","
                       "\"port\":\"i\"}}", i ? "," : "", i, i, i + 1);
    rz__buf_puts(&b, "]}");
    char *src = rz__buf_take(&b);
    rz_flow *f = parse(src, RZ_FORMAT_JSON);
    free(src);
    rz_run *r = start_run(f, NULL);
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(rz_run_step_state(r, n - 1), RZ_STEP_SKIPPED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- on_failure ---- */

static void test_on_failure_fail(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: ff\nsteps:\n"
                      "  a: {module: noop}\n"
                      "  b: {module: noop, needs: [a]}\n"
                      "  c: {module: noop, needs: [b]}\n"
                      "  x: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    assert_int_equal(rz_run_start(r, S(r, "a"), 0), RZ_OK);
    assert_int_equal(rz_run_start(r, S(r, "x"), 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, S(r, "a"), "exit status 3", 5), RZ_OK);
    assert_int_equal(state_of(r, "a"), RZ_STEP_FAILED);
    assert_int_equal(state_of(r, "b"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(r, "c"), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_step_error(r, S(r, "b")), "upstream step 'a' failed");
    assert_string_equal(rz_run_step_error(r, S(r, "c")),
                        "upstream step 'b' was skipped");
    /* The independent step still runs; the run ends once it is done. */
    assert_false(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_RUNNING);
    assert_int_equal(rz_run_succeed(r, S(r, "x"), "{\"k\":1}", 6), RZ_OK);
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"a\":{\"status\":\"failed\",\"attempts\":1,"
                                 "\"outputs\":{},\"started_ms\":0,\"duration_ms\":5,"
                                 "\"error\":\"exit status 3\"}"));
    assert_non_null(strstr(json, "\"outputs\":{\"x\":{\"k\":1}},\"failed_steps\":[\"a\"]}"));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_on_failure_continue(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fc\nsteps:\n"
                      "  a: {module: noop, on_failure: continue}\n"
                      "  ok: {module: noop}\n"
                      "  b:\n    module: noop\n    needs: [a, ok]\n"
                      "    inputs:\n"
                      "      x: \"${{ steps.a.outputs.v }}\"\n"
                      "      y: \"${{ steps.ok.outputs.v }}\"\n");
    rz_run *r = start_run(f, NULL);
    run_ok(r, "ok", "{\"v\":7}", 0);
    run_fails(r, "a", "nope", 0, 1);
    assert_int_equal(state_of(r, "a"), RZ_STEP_FAILED);
    assert_string_equal(ready_ids(r, 1), "b");
    /* The failed step's outputs are absent: they evaluate as null. */
    expect_request(r, "b", "{\"inputs\":{\"x\":null,\"y\":7},\"config\":{}}");
    run_ok(r, "b", "{}", 2);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- error handlers: steps.X.status / error / attempts / duration_ms ---- */

#define FALLBACK_FLOW \
    "flux: 1\nname: fb\nsteps:\n" \
    "  primary:\n    module: noop\n    on_failure: continue\n" \
    "    retry: {max_attempts: 2, initial_ms: 10}\n" \
    "  fallback:\n    module: noop\n    needs: [primary]\n" \
    "    when: \"${{ steps.primary.status == 'failed' }}\"\n" \
    "    inputs:\n" \
    "      why: \"${{ steps.primary.error }}\"\n" \
    "      tries: \"${{ steps.primary.attempts }}\"\n" \
    "      took: \"${{ steps.primary.duration_ms }}\"\n" \
    "      note: \"${{ format('{0} after {1} tries', steps.primary.status, steps.primary.attempts) }}\"\n"

static void test_fallback_runs_after_failure(void **state)
{
    (void)state;
    rz_flow *f = yaml(FALLBACK_FLOW);
    rz_run *r = start_run(f, NULL);
    assert_string_equal(ready_ids(r, 0), "primary");
    run_fails(r, "primary", "exit 3", 0, 5);
    assert_int_equal(state_of(r, "primary"), RZ_STEP_BACKOFF);
    assert_string_equal(ready_ids(r, 15), "primary");
    run_fails(r, "primary", "boom", 15, 40);
    assert_int_equal(state_of(r, "primary"), RZ_STEP_FAILED);
    assert_string_equal(ready_ids(r, 40), "fallback");
    expect_request(r, "fallback", "{\"inputs\":{\"why\":\"boom\",\"tries\":2,\"took\":40,"
                   "\"note\":\"failed after 2 tries\"},\"config\":{}}");
    run_ok(r, "fallback", "{}", 41);
    /* The failure was handled: on_failure: continue keeps the run green. */
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_fallback_skipped_after_success(void **state)
{
    (void)state;
    rz_flow *f = yaml(FALLBACK_FLOW);
    rz_run *r = start_run(f, NULL);
    run_ok(r, "primary", "{}", 0);
    assert_int_equal(state_of(r, "fallback"), RZ_STEP_SKIPPED);
    assert_non_null(strstr(rz_run_step_error(r, S(r, "fallback")), "condition is false"));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* A condition that cannot be evaluated (here 1 / 0) fails the step with the
 * offset inside the expression, and the run with it. */
static void test_when_eval_error(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: we\nsteps:\n"
                      "  a: {module: noop}\n"
                      "  b:\n    module: noop\n    needs: [a]\n"
                      "    when: \"${{ steps.a.attempts / 0 > 1 }}\"\n"
                      "  c:\n    module: noop\n    needs: [a]\n"
                      "    inputs: {x: \"${{ length(steps.a.attempts) }}\"}\n");
    rz_run *r = start_run(f, NULL);
    run_ok(r, "a", "{}", 0);
    assert_int_equal(state_of(r, "b"), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, S(r, "b")),
                        "when: division by zero at offset 21");
    char *req = NULL;
    assert_int_equal(rz_run_request(r, S(r, "c"), &req), RZ_EEXPR);
    assert_null(req);
    assert_non_null(strstr(rz_error_last()->message, "step 'c': input 'x': length() takes"));
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- cancel ---- */

static void test_cancel(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: cx\nsteps:\n"
                      "  a:\n    module: noop\n"
                      "    retry: {max_attempts: 5, initial_ms: 10}\n"
                      "  b: {module: noop}\n"
                      "  c: {module: noop, needs: [a]}\n"
                      "  d:\n    module: noop\n"
                      "    retry: {max_attempts: 5, initial_ms: 10}\n"
                      "  e: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    assert_int_equal(rz_run_start(r, S(r, "a"), 0), RZ_OK);
    assert_int_equal(rz_run_start(r, S(r, "d"), 0), RZ_OK);
    assert_int_equal(rz_run_start(r, S(r, "e"), 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, S(r, "d"), "x", 1), RZ_OK);   /* backoff */
    assert_int_equal(rz_run_cancel(r, 2), RZ_OK);
    assert_int_equal(state_of(r, "b"), RZ_STEP_CANCELLED);       /* was ready */
    assert_int_equal(state_of(r, "c"), RZ_STEP_CANCELLED);       /* pending */
    assert_int_equal(state_of(r, "d"), RZ_STEP_CANCELLED);       /* backoff */
    assert_int_equal(state_of(r, "a"), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_ready(r, 100, NULL, 0), 0);
    assert_int_equal(rz_run_next_wakeup(r), UINT64_MAX);
    assert_int_equal(rz_run_cancel(r, 3), RZ_OK);                /* again */
    assert_false(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_RUNNING);
    /* Running steps report back: stopped by the cancel, they are cancelled
     * (not failed, no retry), the reason kept. */
    assert_int_equal(rz_run_fail(r, S(r, "a"), "killed", 4), RZ_OK);
    assert_int_equal(state_of(r, "a"), RZ_STEP_CANCELLED);
    assert_string_equal(rz_run_step_error(r, S(r, "a")), "killed");
    assert_int_equal(rz_run_succeed(r, S(r, "e"), "{}", 5), RZ_OK);
    assert_true(rz_run_done(r));
    assert_int_equal(rz_run_state_get(r), RZ_RUN_CANCELLED);
    assert_int_equal(rz_run_start(r, S(r, "b"), 6), RZ_ESTATE);
    assert_int_equal(rz_run_cancel(r, 6), RZ_ESTATE);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- inputs ---- */

static const char *INPUT_FLOW =
    "flux: 1\nname: ins\n"
    "inputs:\n"
    "  name: {type: string, required: true}\n"
    "  region: {type: string, required: true}\n"
    "  n: {type: number, default: 3}\n"
    "  opt: {type: string, required: false}\n"
    "  req: {type: string}\n"
    "steps:\n"
    "  a:\n    module: noop\n"
    "    inputs: {who: \"${{ inputs.name }}\", n: \"${{ inputs.n }}\","
    " o: \"${{ inputs.opt }}\"}\n";

static void test_inputs_required_and_defaults(void **state)
{
    (void)state;
    rz_flow *f = yaml(INPUT_FLOW);
    rz_run *r = (rz_run *)&r;
    assert_int_equal(rz_run_new(&r, f, NULL, NULL, 0), RZ_EINVALID);
    assert_null(r);
    /* No default and no `required`: required too. */
    assert_non_null(strstr(rz_error_last()->message, "'name', 'region', 'req'"));
    assert_int_equal(rz_run_new(&r, f, "{\"name\":\"ann\",\"req\":\"x\"}", NULL, 0),
                     RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "input: 'region'"));
    /* cJSON would cut the string at the NUL and go on without a word. */
    assert_int_equal(rz_run_new(&r, f, "{\"name\":\"a\\u0000b\",\"region\":\"eu\","
                                       "\"req\":\"x\"}", NULL, 0), RZ_EINVALID);
    assert_null(r);
    assert_non_null(strstr(rz_error_last()->message, "NUL"));
    assert_int_equal(rz_run_new(&r, f, "[1,2]", NULL, 0), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "object"));
    assert_int_equal(rz_run_new(&r, f, "{\"name\":", NULL, 0), RZ_EINVALID);
    assert_int_equal(rz_run_new(&r, f, "", NULL, 0), RZ_EINVALID);
    assert_null(r);

    /* A name the flow does not declare is a mistake, not something to drop. */
    assert_int_equal(rz_run_new(&r, f, "{\"name\":\"ann\",\"region\":\"eu\","
                                       "\"extra\":true}", NULL, 0), RZ_EINVALID);
    assert_null(r);
    assert_non_null(strstr(rz_error_last()->message, "unknown flow input 'extra'"));
    assert_non_null(strstr(rz_error_last()->message, "name, region, n, opt, req"));

    r = start_run(f, "{\"name\":\"ann\",\"region\":\"eu\",\"req\":\"x\"}");
    expect_request(r, "a", "{\"inputs\":{\"who\":\"ann\",\"n\":3,\"o\":null},"
                           "\"config\":{}}");
    rz_run_free(r);
    /* A given value beats the default. */
    r = start_run(f, "{\"name\":\"bo\",\"region\":\"us\",\"n\":7.5,\"req\":\"x\"}");
    expect_request(r, "a", "{\"inputs\":{\"who\":\"bo\",\"n\":7.5,\"o\":null},"
                           "\"config\":{}}");
    rz_run_free(r);
    /* Given values must have the declared type. */
    r = NULL;
    assert_int_equal(rz_run_new(&r, f, "{\"name\":\"bo\",\"region\":\"us\","
                                       "\"n\":[1],\"req\":\"x\"}", NULL, 0), RZ_EINVALID);
    assert_null(r);
    assert_string_equal(rz_error_last()->message, "flow input 'n' must be a number");
    assert_int_equal(rz_run_new(&r, f, "{\"name\":5,\"region\":\"us\",\"req\":\"x\"}", NULL, 0),
                     RZ_EINVALID);
    assert_string_equal(rz_error_last()->message, "flow input 'name' must be a string");
    rz_flow_free(f);
}

/* ---- contracts with the module: required inputs, declared outputs ---- */

static rz_flow *validated(rz_registry *reg, const char *src)
{
    rz_flow *f = yaml(src);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_validate(f, reg, d);
    if (rc != RZ_OK) {
        char *t = NULL;
        (void)!rz_diags_to_text(d, &t);
        fprintf(stderr, "%s", t ? t : "");
        rz_free(t);
    }
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);
    return f;
}

static void test_module_contracts(void **state)
{
    (void)state;
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, RZ_SOURCE_ROOT "/tests/data/modules/good",
                                         NULL), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, RZ_SOURCE_ROOT "/tests/data/modules/outcheck",
                                         NULL), RZ_OK);
    rz_flow *f = validated(reg,
        "flux: 1\ninputs:\n  t: {type: string, required: false}\n"
        "steps:\n  c:\n    module: count\n    inputs: {text: \"${{ inputs.t }}\"}\n"
        "  w: {module: warnmod}\n");
    /* A required input that would be null: no request, a clear reason. */
    rz_run *r = start_run(f, NULL);
    size_t c = S(r, "c"), w = S(r, "w");
    assert_int_equal(rz_run_start(r, c, 0), RZ_OK);
    char *req = NULL;
    assert_int_equal(rz_run_request(r, c, &req), RZ_EINVALID);
    assert_null(req);
    assert_string_equal(rz_error_last()->message, "required input 'text' of step 'c' "
                        "(module count@1.0.0) would receive null");
    rz_run_free(r);

    /* Outputs against the manifest: strict by default. */
    r = start_run(f, "{\"t\":\"hello\"}");
    assert_int_equal(rz_run_start(r, c, 0), RZ_OK);
    assert_int_equal(rz_run_request(r, c, &req), RZ_OK);
    rz_free(req);
    assert_int_equal(rz_run_succeed(r, c, "{\"count\":2}", 1), RZ_EINVALID);
    assert_int_equal(rz_run_step_state(r, c), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, c), "module count@1.0.0 declares output "
                        "'words', which the step did not return");
    rz_run_free(r);
    r = start_run(f, "{\"t\":\"hello\"}");
    assert_int_equal(rz_run_start(r, c, 0), RZ_OK);
    assert_int_equal(rz_run_succeed(r, c, "{\"count\":\"2\",\"words\":{}}", 1),
                     RZ_EINVALID);
    assert_string_equal(rz_run_step_error(r, c), "output 'count' is a string but "
                        "module count@1.0.0 declares it integer");
    /* "outputs_check": "warn": the step succeeds, the record says why. */
    assert_int_equal(rz_run_start(r, w, 0), RZ_OK);
    assert_int_equal(rz_run_succeed(r, w, "{\"n\":1.5}", 1), RZ_OK);
    assert_int_equal(rz_run_step_state(r, w), RZ_STEP_SUCCEEDED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"warning\":\"output 'n' is a number but module "
                                 "warnmod@1.0.0 declares it integer\""));
    rz_free(json);
    rz_run_free(r);
    /* All there and of the right types. */
    r = start_run(f, "{\"t\":\"hello\"}");
    assert_int_equal(rz_run_start(r, c, 0), RZ_OK);
    assert_int_equal(rz_run_succeed(r, c, "{\"count\":2,\"words\":{\"a\":1},\"more\":1}", 1),
                     RZ_OK);
    assert_int_equal(rz_run_step_state(r, c), RZ_STEP_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
    rz_registry_free(reg);
}

/* ---- requests ---- */

static void test_request_templates(void **state)
{
    (void)state;
    rz_flow *f = yaml(
        "flux: 1\nname: req\n"
        "inputs:\n  who: {type: string, default: world}\n"
        "steps:\n"
        "  a: {module: noop}\n"
        "  b:\n    module: noop\n    needs: [a]\n"
        "    inputs:\n"
        "      count: \"${{ steps.a.outputs.count }}\"\n"
        "      label: \"n=${{ steps.a.outputs.count }}!\"\n"
        "      deep: {k: [\"${{ steps.a.outputs.obj.x }}\", 2, true, null]}\n"
        "      plain: just text\n"
        "    config:\n"
        "      greeting: \"hello ${{ inputs.who }}\"\n"
        "      nested: {list: [\"${{ inputs.who }}\", 1.5]}\n"
        "      flag: false\n");
    rz_run *r = start_run(f, NULL);
    /* a has no inputs and no config. */
    expect_request(r, "a", "{\"inputs\":{},\"config\":{}}");
    run_ok(r, "a", "{\"count\": 42, \"obj\": {\"x\": \"deep\"}}", 1);
    assert_int_equal(rz_run_start(r, S(r, "b"), 2), RZ_OK);
    expect_request(r, "b",
        "{\"inputs\":{\"count\":42,\"label\":\"n=42!\","
        "\"deep\":{\"k\":[\"deep\",2,true,null]},\"plain\":\"just text\"},"
        "\"config\":{\"greeting\":\"hello world\","
        "\"nested\":{\"list\":[\"world\",1.5]},\"flag\":false}}");
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_request_connections(void **state)
{
    (void)state;
    rz_flow *f = parse(
        "{\"id\":\"f\",\"name\":\"conn\",\"nodes\":["
        "{\"id\":\"src\",\"moduleId\":\"noop\",\"config\":{}},"
        "{\"id\":\"other\",\"moduleId\":\"noop\",\"config\":{}},"
        "{\"id\":\"dst\",\"moduleId\":\"noop\",\"config\":{\"mode\":\"x\"}}],"
        "\"connections\":["
        "{\"id\":\"c1\",\"source\":{\"nodeId\":\"src\",\"port\":\"words\"},"
        "\"target\":{\"nodeId\":\"dst\",\"port\":\"text\"}},"
        "{\"id\":\"c2\",\"source\":{\"nodeId\":\"src\",\"port\":\"meta\"},"
        "\"target\":{\"nodeId\":\"dst\",\"port\":\"info\"}},"
        "{\"id\":\"c3\",\"source\":{\"nodeId\":\"other\",\"port\":\"missing\"},"
        "\"target\":{\"nodeId\":\"dst\",\"port\":\"gone\"}}]}",
        RZ_FORMAT_JSON);
    rz_run *r = start_run(f, NULL);
    run_ok(r, "src", "{\"words\":[\"a\",\"b\"],\"meta\":{\"n\":2}}", 1);
    run_ok(r, "other", "{}", 1);
    assert_string_equal(ready_ids(r, 2), "dst");
    /* An output port the source did not produce is left out. */
    expect_request(r, "dst", "{\"inputs\":{\"text\":[\"a\",\"b\"],"
                             "\"info\":{\"n\":2}},\"config\":{\"mode\":\"x\"}}");
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- outputs ---- */

static void test_outputs_must_be_object(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: outs\nsteps:\n"
                      "  a:\n    module: noop\n"
                      "    retry: {max_attempts: 2, initial_ms: 0}\n"
                      "  b: {module: noop}\n"
                      "  c: {module: noop}\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a");
    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_succeed(r, a, "[1,2]", 1), RZ_EINVALID);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_BACKOFF);
    assert_string_equal(rz_run_step_error(r, a), "outputs are not a JSON object");
    /* 0 ms backoff: ready again at once, in its old place in the queue. */
    assert_string_equal(ready_ids(r, 1), "a,b,c");
    assert_int_equal(rz_run_start(r, a, 2), RZ_OK);
    assert_int_equal(rz_run_succeed(r, a, "{\"a\":1} trailing", 3), RZ_EINVALID);
    assert_int_equal(rz_run_step_state(r, a), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, a), "outputs are not valid JSON");

    /* Hostile: deeper than the JSON parser goes, and a bare scalar. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    assert_int_equal(rz_run_start(r, S(r, "b"), 4), RZ_OK);
    assert_int_equal(rz_run_succeed(r, S(r, "b"), deep, 5), RZ_EINVALID);
    free(deep);
    assert_int_equal(rz_run_start(r, S(r, "c"), 4), RZ_OK);
    assert_int_equal(rz_run_succeed(r, S(r, "c"), "\"text\"", 5), RZ_EINVALID);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- flows the machine refuses ---- */

static void test_step_logs(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: logs\nsteps:\n  a:\n    module: m\n");
    rz_run *r = start_run(f, NULL);
    size_t a = S(r, "a");
    assert_null(rz_run_step_log(r, a));
    /* Control bytes and broken UTF-8 become '?'; text and newlines stay. */
    const char raw[] = "ok \xc3\xa9\n\x01" "bad \xff\xfe\tend";
    assert_int_equal(rz_run_set_step_log(r, a, raw, sizeof raw - 1), RZ_OK);
    assert_string_equal(rz_run_step_log(r, a), "ok \xc3\xa9\n?bad ??\tend");
    char *json;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    cJSON *log = cJSON_GetObjectItem(cJSON_GetObjectItem(
        cJSON_GetObjectItem(doc, "steps"), "a"), "log");
    assert_string_equal(cJSON_GetStringValue(log), "ok \xc3\xa9\n?bad ??\tend");
    cJSON_Delete(doc);
    /* Only the tail of a long log is kept. */
    size_t big = RZ_RUN_LOG_MAX + 100;
    char *buf = malloc(big);
    memset(buf, 'a', big);
    memcpy(buf + big - 4, "TAIL", 4);
    assert_int_equal(rz_run_set_step_log(r, a, buf, big), RZ_OK);
    assert_int_equal(strlen(rz_run_step_log(r, a)), RZ_RUN_LOG_MAX);
    assert_string_equal(rz_run_step_log(r, a) + RZ_RUN_LOG_MAX - 4, "TAIL");
    free(buf);
    /* An empty log clears it. */
    assert_int_equal(rz_run_set_step_log(r, a, NULL, 0), RZ_OK);
    assert_null(rz_run_step_log(r, a));
    assert_int_equal(rz_run_set_step_log(r, 99, "x", 1), RZ_EINVAL);
    assert_int_equal(rz_run_set_step_log(r, a, NULL, 3), RZ_EINVAL);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_exact_numbers(void **state)
{
    (void)state;
    /* A module gets the numbers it was configured with, bit for bit. */
    rz_flow *f = yaml("flux: 1\nname: nums\nsteps:\n  a:\n    module: m\n"
                      "    config: {big: 9007199254740992, neg: -0.0, "
                      "third: 0.30000000000000004}\n");
    rz_run *r = start_run(f, NULL);
    expect_request(r, "a", "{\"inputs\":{},\"config\":{\"big\":9007199254740992,"
                           "\"neg\":-0,\"third\":0.30000000000000004}}");
    size_t a = S(r, "a"), ready[1];
    assert_int_equal(rz_run_ready(r, 0, ready, 1), 1);
    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_succeed(r, a, "{\"n\":9007199254740993e0}", 1), RZ_OK);
    char *out;
    assert_int_equal(rz_run_step_outputs(r, a, &out), RZ_OK);
    assert_string_equal(out, "{\"n\":9007199254740992}");
    rz_free(out);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_refused_flows(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: loop\nsteps:\n"
                      "  a: {module: noop, needs: [b]}\n"
                      "  b: {module: noop, needs: [a]}\n");
    rz_run *r = (rz_run *)&r;
    assert_int_equal(rz_run_new(&r, f, NULL, NULL, 0), RZ_ECYCLE);
    assert_null(r);
    assert_non_null(strstr(rz_error_last()->message, "a -> b -> a"));
    rz_flow_free(f);

    /* Unvalidated flows with malformed expressions: refused with RZ_EEXPR
     * up front for `when`, at request time for inputs and config. */
    f = yaml("flux: 1\nname: badwhen\nsteps:\n"
             "  a: {module: noop, when: \"(1 ==\"}\n");
    r = (rz_run *)&r;
    assert_int_equal(rz_run_new(&r, f, NULL, NULL, 0), RZ_EEXPR);
    assert_null(r);
    assert_non_null(strstr(rz_error_last()->message, "step 'a': when:"));
    rz_flow_free(f);
    f = yaml("flux: 1\nname: badin\nsteps:\n"
             "  a:\n    module: noop\n    inputs: {x: \"${{ 1 == }}\"}\n"
             "  b:\n    module: noop\n    config: {deep: [\"${{ && }}\"]}\n");
    r = start_run(f, NULL);
    char *req = (char *)&req;
    assert_int_equal(rz_run_request(r, S(r, "a"), &req), RZ_EEXPR);
    assert_null(req);
    assert_non_null(strstr(rz_error_last()->message, "step 'a': input 'x':"));
    assert_int_equal(rz_run_request(r, S(r, "b"), &req), RZ_EEXPR);
    assert_non_null(strstr(rz_error_last()->message, "step 'b': config:"));
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- a replica following an engine deployment (embedded mode) ---- */

static rz_engine *local_engine(char *dir, const rz_registry *reg)
{
    assert_non_null(mkdtemp(dir));
    rz_engine_opts eo = RZ_ENGINE_OPTS_INIT;
    eo.durable = 0;
    eo.registry = reg;
    eo.ref_gpu_hour_micros = eo.ref_cpu_hour_micros = 0;
    eo.ref_memory_gb_hour_micros = 0;
    rz_engine *e = NULL;
    assert_int_equal(rz_engine_open(&e, dir, &eo), RZ_OK);
    return e;
}

/* An embedded engine in `dir` with one node of 2 cores: its id in *node. */
static rz_engine *local_engine_node(char *dir, uint64_t *node)
{
    rz_engine *e = local_engine(dir, NULL);
    assert_int_equal(rz_engine_local_node(e, "{\"cpu\":{\"cores\":2,"
                                     "\"threads\":2},\"memory_mb\":4096,"
                                     "\"adapters\":[\"process\"]}", 1, 0,
                                     node), RZ_OK);
    return e;
}

/* After a step a: b retried once at once, c beside, d when b says go. */
#define B_C_D \
    "  b:\n    module: m\n    needs: [a]\n" \
    "    retry: {max_attempts: 2, initial_ms: 0}\n" \
    "  c: {module: m}\n" \
    "  d:\n    module: m\n    needs: [b]\n" \
    "    when: \"${{ steps.b.outputs.go }}\"\n"

/* The flow of `text`, its four steps all of *m, which times out at 4 s. */
static rz_flow *flow_of_m(const char *text, struct rz_module *m)
{
    rz_flow *f = yaml(text);
    m->timeout_s = 4;
    for (size_t i = 0; i < 4; i++)
        f->steps[i].module = m;
    return f;
}

/* The node's report of assignment *a: b's first attempt fails ("flaky"),
 * everything else succeeds with `outputs`. True for b's failure. */
static bool report_b_fails_once(rz_engine *e, uint64_t node,
                                const rz_engine_assignment *a, uint64_t now,
                                bool *b_failed, const char *outputs)
{
    if (strcmp(a->step, "b") == 0 && !*b_failed) {
        *b_failed = true;
        assert_int_equal(node_report(e, node, a->job, a->attempt, NULL,
                                     "flaky", 5, now), RZ_OK);
        return true;
    }
    assert_int_equal(node_report(e, node, a->job, a->attempt, outputs, NULL, 5, now),
                     RZ_OK);
    return false;
}

/* Every step of the replica has the status and attempts the engine's own
 * run of the deployment reports. */
static void assert_follows(rz_engine *e, uint64_t dep, const rz_run *r)
{
    char *json = NULL;
    assert_int_equal(rz_engine_deployment_status(e, dep, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    assert_non_null(doc);
    const rz_flow *f = rz_run_flow(r);
    const cJSON *steps = cJSON_GetObjectItem(doc, "steps");
    for (size_t i = 0; i < rz_flow_step_count(f); i++) {
        const cJSON *s = cJSON_GetObjectItem(steps, rz_flow_step_id(f, i));
        assert_non_null(s);
        assert_string_equal(cJSON_GetObjectItem(s, "status")->valuestring,
                            rz_step_state_name(rz_run_step_state(r, i)));
        assert_int_equal(cJSON_GetObjectItem(s, "attempts")->valueint,
                         rz_run_step_attempts(r, i));
    }
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring,
                        rz_run_state_name(rz_run_state_get(r)));
    cJSON_Delete(doc);
    assert_int_equal(rz_engine_local_check(e), RZ_OK);
}

static size_t count_running(const rz_run *r)
{
    size_t n = 0;
    for (size_t i = 0; i < rz_flow_step_count(rz_run_flow(r)); i++)
        n += rz_run_step_state(r, i) == RZ_STEP_RUNNING;
    return n;
}

static void count_change(void *userdata)
{
    (*(int *)userdata)++;
}

static void test_replica_follows_deployment(void **state)
{
    (void)state;
    struct rz_module m = {0};
    rz_flow *f = flow_of_m("flux: 1\nname: rep\nsteps:\n"
                           "  a: {module: m, max_cost_micros: 500}\n" B_C_D, &m);
    char dir[] = "/tmp/rz-test-local-XXXXXX";
    uint64_t node = 0, dep = 0;
    rz_engine *e = local_engine_node(dir, &node);
    rz_run *r = start_run(f, NULL);
    int changes = 0;
    rz_engine_replica rep = RZ_ENGINE_REPLICA_INIT;
    rep.run = r;
    rep.max_started = 1;
    rep.on_change = count_change;
    rep.userdata = &changes;
    /* The step's own max_cost_micros is left out: the holds are the
     * reference cost, which is all the client was credited. */
    assert_int_equal(rz_engine_local_deploy(e, f, NULL, &rep, 0, &dep), RZ_OK);
    assert_int_equal(dep, 1);
    /* One parsed flow: the deployment runs on the caller's, and keeps no
     * copy of its text once stored. */
    assert_ptr_equal(rz__engine_dep(e, dep)->flow, f);
    assert_null(rz__engine_dep(e, dep)->text);
    assert_int_equal(changes, 1);
    assert_int_equal(count_running(r), 1);     /* a and c ready, one started */
    assert_follows(e, dep, r);
    uint64_t now = 0;
    bool b_failed = false;
    rz_engine_assignment a;
    while (!rz_run_done(r)) {
        now += 10;
        assert_int_equal(rz_engine_poll(e, node, now, &a), RZ_OK);
        assert_int_equal(count_running(r), 1);
        if (report_b_fails_once(e, node, &a, now, &b_failed, "{\"go\":false}"))
            /* Retried at once: the replica went through the failure. */
            assert_int_equal(rz_run_step_attempts(r, S(r, "b")), 2);
        rz_run_ready(r, now, NULL, 0);   /* skips the engine made quietly */
        assert_follows(e, dep, r);
    }
    assert_true(b_failed);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(state_of(r, "d"), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_id(r), "r1");
    rz_run_free(r);

    /* The module's timeout reaches the engine: the document carries it. */
    rz_flow *g = yaml("flux: 1\nname: slow\nsteps:\n  t: {module: m}\n");
    g->steps[0].module = &m;
    r = start_run(g, NULL);
    rep = (rz_engine_replica)RZ_ENGINE_REPLICA_INIT;
    rep.run = r;
    assert_int_equal(rz_engine_local_deploy(e, g, NULL, &rep, 0, &dep), RZ_OK);
    assert_int_equal(dep, 2);
    assert_int_equal(rz_engine_poll(e, node, 0, &a), RZ_OK);
    assert_int_equal(rz_engine_next_wakeup(e), 4000);
    assert_int_equal(rz_engine_tick(e, 4000), RZ_OK);
    assert_int_equal(state_of(r, "t"), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, 0), "timed out after 4 s");
    assert_follows(e, dep, r);
    assert_int_equal(rz_engine_check(e), RZ_OK);

    /* A replica of another flow, and an engine with a registry, are
     * refused. */
    rep.run = r;
    assert_int_equal(rz_engine_local_deploy(e, f, NULL, &rep, 0, &dep),
                     RZ_EINVAL);
    assert_int_equal(dep, 0);
    rz_run_free(r);
    rz_engine_close(e);
    assert_int_equal(tmp_dir_remove(dir), 0);

    rz_registry *reg = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    char dir2[] = "/tmp/rz-test-local-XXXXXX";
    e = local_engine(dir2, reg);
    assert_int_equal(rz_engine_local_deploy(e, f, NULL, NULL, 0, &dep),
                     RZ_EINVAL);
    rz_engine_close(e);
    assert_int_equal(tmp_dir_remove(dir2), 0);
    rz_registry_free(reg);
    rz_flow_free(g);
    rz_flow_free(f);
}

/* Shared (version 2): the deployment runs on the caller's run itself (one
 * run in memory), the engine and the caller each read its changes, the
 * slots cap holds, and the engine never frees the run. */
static void test_shared_run_is_the_deployment(void **state)
{
    (void)state;
    struct rz_module m = {0};
    rz_flow *f = flow_of_m("flux: 1\nname: shared\nsteps:\n  a: {module: m}\n" B_C_D, &m);
    char dir[] = "/tmp/rz-test-local-XXXXXX";
    uint64_t node = 0, dep = 0;
    rz_engine *e = local_engine_node(dir, &node);
    rz_run *r = NULL;
    assert_int_equal(rz_run_new(&r, f, NULL, "r2", 0), RZ_OK);
    int changes = 0;
    rz_engine_replica rep = RZ_ENGINE_REPLICA_INIT;
    rep.run = r;
    rep.max_started = 1;
    rep.on_change = count_change;
    rep.userdata = &changes;
    rep.share = 1;
    assert_int_equal(rz_engine_local_deploy(e, f, NULL, &rep, 0, &dep), RZ_OK);
    assert_ptr_equal(rz__engine_dep(e, dep)->run, r);
    assert_int_equal(count_running(r), 1);
    assert_int_equal(changes, 1);
    const size_t *seen;   /* the caller's reader: a, c ready, one started */
    assert_int_equal(rz__run_take_changes(r, RZ__RUN_OWNER, &seen), 2);
    uint64_t now = 0;
    bool b_failed = false;
    rz_engine_assignment a;
    while (!rz_run_done(r)) {
        now += 10;
        assert_int_equal(rz_engine_poll(e, node, now, &a), RZ_OK);
        assert_int_equal(count_running(r), 1);
        assert_int_equal(rz__run_started(r), 1);
        if (report_b_fails_once(e, node, &a, now, &b_failed, "{\"go\":false}"))
            assert_int_equal(rz_run_step_attempts(r, S(r, "b")), 2);
        /* The engine took its changes; the caller's are still there. */
        assert_true(rz__run_take_changes(r, RZ__RUN_OWNER, &seen) >= 1);
        assert_follows(e, dep, r);
    }
    assert_true(b_failed);
    assert_int_equal(rz__run_started(r), 0);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(state_of(r, "d"), RZ_STEP_SKIPPED);
    rz_engine_close(e);   /* the run is the caller's still */
    assert_string_equal(rz_run_id(r), "r2");
    rz_run_free(r);
    assert_int_equal(tmp_dir_remove(dir), 0);
    rz_flow_free(f);
}

/* The flow of test_shared_run_is_the_deployment run to its end by a local
 * deployment on the caller's run (share) or on one of the engine's own:
 * its final status. */
static char *finished_status(rz_flow *f, int share)
{
    char dir[] = "/tmp/rz-test-local-XXXXXX";
    uint64_t node = 0, dep = 0;
    rz_engine *e = local_engine_node(dir, &node);
    rz_run *r = NULL;
    rz_engine_replica rep = RZ_ENGINE_REPLICA_INIT;
    if (share) {
        assert_int_equal(rz_run_new(&r, f, NULL, "r3", 0), RZ_OK);
        rep.run = r;   /* no slot cap: steps start as the engine's own run's */
        rep.share = 1;
    }
    assert_int_equal(rz_engine_local_deploy(e, f, NULL, share ? &rep : NULL, 0,
                                            &dep), RZ_OK);
    uint64_t now = 0;
    bool b_failed = false;
    rz_run_state st = RZ_RUN_RUNNING;
    while (st == RZ_RUN_RUNNING) {
        now += 10;
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(e, node, now, &a), RZ_OK);
        if (a.job)
            report_b_fails_once(e, node, &a, now, &b_failed, "{\"go\":true}");
        assert_int_equal(rz_engine_deployment_state(e, dep, &st), RZ_OK);
        assert_true(now < 10000);
    }
    /* Its jobs leave memory as any finished deployment's: the status
     * reads them back; asked twice, the same text. */
    assert_int_equal(rz_engine_tick(e, now + 10), RZ_OK);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    if (share) {   /* kept, with no text: its run is the caller's */
        const rz__edep *d = rz__engine_dep(e, dep);
        assert_non_null(d);
        assert_null(d->final_status);
        assert_true(d->final_lazy);
        /* The step cache named as the runner's record names it. */
        char *map = NULL, *named = NULL;
        assert_int_equal(rz_engine_reuse_map(e, dep, &map), RZ_OK);
        assert_int_equal(rz_engine_reuse_map_named(e, dep, "run r3 step ", &named), RZ_OK);
        assert_non_null(strstr(map, "\"from\":\"deployment 1 step a\""));
        assert_non_null(strstr(named, "\"from\":\"run r3 step a\""));
        assert_null(strstr(named, "deployment 1 step"));
        assert_int_equal(strlen(named), strlen(map) + 4 * (strlen("run r3") -
                                                           strlen("deployment 1")));
        rz_free(map);
        rz_free(named);
    }
    rz_engine_stats es;
    rz_engine_stats_get(e, &es);
    assert_int_equal(es.deployments_done, 1);
    assert_int_equal(es.deployments_running, 0);
    char *json = NULL, *again = NULL;
    assert_int_equal(rz_engine_deployment_status(e, dep, &json), RZ_OK);
    assert_int_equal(rz_engine_deployment_status(e, dep, &again), RZ_OK);
    assert_string_equal(json, again);
    rz_free(again);
    rz_engine_close(e);
    rz_run_free(r);
    assert_int_equal(tmp_dir_remove(dir), 0);
    return json;
}

/* A finished deployment on the caller's run keeps no status text (built
 * when asked: ~16 MB at 100,000 steps): the one built is the text a
 * deployment on its own run keeps. */
static void test_shared_run_status_when_asked(void **state)
{
    (void)state;
    struct rz_module m = {0};
    rz_flow *f = flow_of_m("flux: 1\nname: shared\nsteps:\n  a: {module: m}\n" B_C_D, &m);
    char *own = finished_status(f, 0), *shared = finished_status(f, 1);
    assert_non_null(strstr(own, "\"job_status\":\"succeeded\""));
    assert_string_equal(shared, own);
    rz_free(own);
    rz_free(shared);
    rz_flow_free(f);
}

/* ---- joins ---- */

#define IF_ELSE_FLOW \
    "flux: 1\nname: ie\nsteps:\n" \
    "  check: {module: noop}\n" \
    "  high: {module: noop, needs: [check], when: \"${{ steps.check.outputs.above }}\"}\n" \
    "  low: {module: noop, needs: [check], when: \"${{ !steps.check.outputs.above }}\"}\n" \
    "  merge:\n    module: noop\n    needs: [high, low]\n    join: any_succeeded\n" \
    "    inputs:\n      m: \"${{ default(steps.high.outputs.m, steps.low.outputs.m) }}\"\n"

/* The if/else case: the merge runs after whichever branch ran. */
static void test_join_if_else(void **state)
{
    (void)state;
    rz_flow *f = yaml(IF_ELSE_FLOW);
    for (int above = 0; above < 2; above++) {
        rz_run *r = start_run(f, NULL);
        run_ok(r, "check", above ? "{\"above\":true}" : "{\"above\":false}", 0);
        const char *ran = above ? "high" : "low", *other = above ? "low" : "high";
        assert_int_equal(state_of(r, other), RZ_STEP_SKIPPED);
        assert_string_equal(ready_ids(r, 1), ran);
        run_ok(r, ran, above ? "{\"m\":\"H\"}" : "{\"m\":\"L\"}", 1);
        assert_string_equal(ready_ids(r, 2), "merge");
        expect_request(r, "merge", above ? "{\"inputs\":{\"m\":\"H\"},\"config\":{}}"
                                         : "{\"inputs\":{\"m\":\"L\"},\"config\":{}}");
        run_ok(r, "merge", "{}", 3);
        assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
        rz_run_free(r);
    }
    rz_flow_free(f);
}

/* rz_run_summary_to_json is rz_run_to_json's document less "steps", while
 * the run goes and once it has ended. */
static void assert_summary_is_whole_less_steps(const rz_run *r)
{
    char *whole = NULL, *sum = NULL;
    assert_int_equal(rz_run_to_json(r, &whole), RZ_OK);
    assert_int_equal(rz_run_summary_to_json(r, &sum), RZ_OK);
    cJSON *w = cJSON_Parse(whole), *s = cJSON_Parse(sum);
    assert_non_null(cJSON_GetObjectItem(w, "steps"));
    cJSON_DeleteItemFromObject(w, "steps");
    char *a = cJSON_PrintUnformatted(w), *b = cJSON_PrintUnformatted(s);
    assert_string_equal(a, b);
    free(a);
    free(b);
    cJSON_Delete(w);
    cJSON_Delete(s);
    rz_free(whole);
    rz_free(sum);
}

static void test_run_summary(void **state)
{
    (void)state;
    rz_flow *f = yaml(IF_ELSE_FLOW);
    rz_run *r = start_run(f, NULL);
    run_ok(r, "check", "{\"above\":true}", 0);
    assert_summary_is_whole_less_steps(r);
    run_ok(r, "high", "{\"m\":\"H\"}", 1);
    run_ok(r, "merge", "{}", 3);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_summary_is_whole_less_steps(r);
    char *sum = NULL;
    assert_int_equal(rz_run_summary_to_json(NULL, &sum), RZ_EINVAL);
    assert_null(sum);
    rz_run_free(r);
    rz_flow_free(f);
}

/* any_succeeded after needs that all were skipped: never met, skipped with
 * the rule as the reason; so are the steps after it. */
static void test_join_any_unmet(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: j\nsteps:\n"
                      "  a: {module: noop, when: false}\n"
                      "  b: {module: noop, when: false}\n"
                      "  m: {module: noop, needs: [a, b], join: any_succeeded}\n"
                      "  after: {module: noop, needs: [m]}\n");
    rz_run *r = start_run(f, NULL);
    assert_int_equal(state_of(r, "m"), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_step_error(r, S(r, "m")),
                        "join any_succeeded not met: none of its needs succeeded");
    assert_int_equal(state_of(r, "after"), RZ_STEP_SKIPPED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* all_done runs after a failure (cleanup); the run still fails. It waits
 * for every need, also those still running when the first one failed. */
static void test_join_all_done(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: j\nsteps:\n"
                      "  a: {module: noop}\n  b: {module: noop}\n"
                      "  after_a: {module: noop, needs: [a]}\n"
                      "  clean: {module: noop, needs: [after_a, b], join: all_done}\n");
    rz_run *r = start_run(f, NULL);
    assert_int_equal(rz_run_start(r, S(r, "b"), 0), RZ_OK);
    run_fails(r, "a", "boom", 0, 1);
    assert_int_equal(state_of(r, "after_a"), RZ_STEP_SKIPPED);
    assert_int_equal(state_of(r, "clean"), RZ_STEP_PENDING);
    assert_int_equal(rz_run_succeed(r, S(r, "b"), "{}", 2), RZ_OK);
    assert_string_equal(ready_ids(r, 2), "clean");
    run_ok(r, "clean", "{}", 3);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* none_failed: skipped needs are fine; a failed one, or one skipped because
 * of a failure above it, skips the step at once. */
static void test_join_none_failed(void **state)
{
    (void)state;
    const char *src = "flux: 1\nname: j\nsteps:\n"
                      "  a: {module: noop, on_failure: continue}\n"
                      "  off: {module: noop, when: false}\n"
                      "  slow: {module: noop}\n"
                      "  n: {module: noop, needs: [a, off, slow], join: none_failed}\n";
    rz_flow *f = yaml(src);
    rz_run *r = start_run(f, NULL);
    run_ok(r, "a", "{}", 0);
    run_ok(r, "slow", "{}", 0);
    assert_string_equal(ready_ids(r, 1), "n");
    rz_run_free(r);

    r = start_run(f, NULL);
    run_fails(r, "a", "boom", 0, 1);
    assert_int_equal(state_of(r, "n"), RZ_STEP_SKIPPED);   /* slow still pending */
    assert_string_equal(rz_run_step_error(r, S(r, "n")),
                        "join none_failed not met: upstream step 'a' failed");
    rz_run_free(r);
    rz_flow_free(f);

    f = yaml("flux: 1\nname: j\nsteps:\n"
             "  a: {module: noop}\n  b: {module: noop, needs: [a]}\n"
             "  n: {module: noop, needs: [b], join: none_failed}\n"
             "  o: {module: noop, needs: [b], join: one_failed}\n");
    r = start_run(f, NULL);
    run_fails(r, "a", "boom", 0, 1);
    assert_int_equal(state_of(r, "n"), RZ_STEP_SKIPPED);
    /* b was skipped because a failed: one_failed counts it as failed. */
    assert_string_equal(ready_ids(r, 1), "o");
    rz_run_free(r);
    rz_flow_free(f);
}

/* one_failed: an alert that runs only when something failed. */
static void test_join_one_failed(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: j\nsteps:\n"
                      "  a: {module: noop}\n  b: {module: noop}\n"
                      "  alert: {module: noop, needs: [a, b], join: one_failed}\n");
    rz_run *r = start_run(f, NULL);
    run_ok(r, "a", "{}", 0);
    run_ok(r, "b", "{}", 0);
    assert_int_equal(state_of(r, "alert"), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_step_error(r, S(r, "alert")),
                        "join one_failed not met: none of its needs failed");
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    rz_run_free(r);

    r = start_run(f, NULL);
    run_ok(r, "a", "{}", 0);
    run_fails(r, "b", "boom", 0, 1);
    assert_string_equal(ready_ids(r, 1), "alert");
    run_ok(r, "alert", "{}", 2);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* The same join in the builder format, and a cancel reaching a join. */
static void test_join_builder_and_cancel(void **state)
{
    (void)state;
    rz_flow *f = parse("{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"noop\",\"when\":false},"
                       "{\"id\":\"b\",\"moduleId\":\"noop\"},"
                       "{\"id\":\"m\",\"moduleId\":\"noop\",\"needs\":[\"a\",\"b\"],"
                       "\"join\":\"any_succeeded\"}],\"connections\":[]}", RZ_FORMAT_JSON);
    rz_run *r = start_run(f, NULL);
    run_ok(r, "b", "{}", 0);
    assert_string_equal(ready_ids(r, 0), "m");
    rz_run_free(r);

    r = start_run(f, NULL);
    assert_int_equal(rz_run_start(r, S(r, "b"), 0), RZ_OK);
    assert_int_equal(rz_run_cancel(r, 1), RZ_OK);
    assert_int_equal(rz_run_fail(r, S(r, "b"), "cancelled", 2), RZ_OK);
    assert_int_equal(state_of(r, "m"), RZ_STEP_CANCELLED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_CANCELLED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- on_exit and flow outputs ---- */

#define EXIT_FLOW \
    "flux: 1\nname: ex\nsteps:\n" \
    "  a: {module: noop, on_failure: continue}\n" \
    "  b: {module: noop}\n" \
    "on_exit:\n  module: noop\n" \
    "  inputs:\n    status: \"${{ flow.status }}\"\n" \
    "    failed: \"${{ join(flow.failed_steps, ' ') }}\"\n" \
    "    b: \"${{ steps.b.status }}\"\n" \
    "outputs:\n  total: \"${{ steps.b.outputs.n + 1 }}\"\n" \
    "  a_said: \"${{ steps.a.outputs.v }}\"\n"

/* on_exit runs last, whatever happened, and reads how the run went; the
 * flow's outputs are its own (not the final steps' ones). */
static void test_on_exit_and_outputs(void **state)
{
    (void)state;
    rz_flow *f = yaml(EXIT_FLOW);
    rz_run *r = start_run(f, NULL);
    assert_string_equal(ready_ids(r, 0), "a,b");
    run_fails(r, "a", "boom", 0, 1);
    assert_string_equal(ready_ids(r, 1), "b");
    run_ok(r, "b", "{\"n\":41}", 2);
    assert_string_equal(ready_ids(r, 2), "on_exit");
    expect_request(r, "on_exit", "{\"inputs\":{\"status\":\"succeeded\",\"failed\":\"a\","
                                 "\"b\":\"succeeded\"},\"config\":{}}");
    assert_false(rz_run_done(r));
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"outputs\":{\"total\":null,\"a_said\":null}"));
    rz_free(json);
    run_ok(r, "on_exit", "{}", 3);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    /* a failed but was handled: the run succeeded and says a failed. */
    assert_non_null(strstr(json, "\"outputs\":{\"total\":42,\"a_said\":null},"
                                 "\"failed_steps\":[\"a\"]}"));
    rz_free(json);
    rz_run_free(r);

    /* A fatal failure: on_exit still runs and sees "failed". */
    r = start_run(f, NULL);
    run_ok(r, "a", "{\"v\":1}", 0);
    run_fails(r, "b", "boom", 0, 1);
    assert_string_equal(ready_ids(r, 1), "on_exit");
    expect_request(r, "on_exit", "{\"inputs\":{\"status\":\"failed\",\"failed\":\"b\","
                                 "\"b\":\"failed\"},\"config\":{}}");
    run_ok(r, "on_exit", "{}", 2);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);

    /* on_exit failing fails a run that would have succeeded. */
    r = start_run(f, NULL);
    run_ok(r, "a", "{}", 0);
    run_ok(r, "b", "{\"n\":1}", 0);
    run_fails(r, "on_exit", "alert failed", 1, 2);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);

    /* A cancel cancels it too. */
    r = start_run(f, NULL);
    assert_int_equal(rz_run_cancel(r, 0), RZ_OK);
    assert_int_equal(state_of(r, "on_exit"), RZ_STEP_CANCELLED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_CANCELLED);
    rz_run_free(r);
    rz_flow_free(f);
}

/* An output that cannot be evaluated fails the run, saying which. */
static void test_flow_output_error(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: o\nsteps:\n  a: {module: noop}\n"
                      "outputs:\n  n: \"${{ steps.a.outputs.s * 2 }}\"\n");
    rz_run *r = start_run(f, NULL);
    run_ok(r, "a", "{\"s\":\"text\"}", 0);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"outputs\":{\"n\":null},\"error\":\"flow output 'n': "));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- for_each ---- */

/* The ready tasks, at most 64. */
static size_t ready_tasks(rz_run *r, uint64_t now, size_t *out)
{
    size_t n = rz_run_ready(r, now, out, 64);
    assert_true(n <= 64);
    return n;
}

static const char *FE_FLOW =
    "flux: 1\nname: fe\n"
    "inputs:\n  xs: {type: array}\n"
    "steps:\n"
    "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n    max_parallel: 2\n"
    "    inputs: {v: \"${{ item }}\", i: \"${{ index }}\"}\n"
    "  after:\n    module: noop\n    needs: [m]\n"
    "    inputs: {all: \"${{ steps.m.outputs.y }}\"}\n";

static void test_for_each_order_and_bound(void **state)
{
    (void)state;
    rz_flow *f = yaml(FE_FLOW);
    rz_run *r = start_run(f, "{\"xs\":[\"a\",\"b\",\"c\",\"d\"]}");
    size_t m = S(r, "m"), t[64];
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_task_count(r), 2 + 4);
    assert_int_equal(ready_tasks(r, 0, t), 2);   /* max_parallel */
    size_t el = 9;
    assert_int_equal(rz_run_task_step(r, t[1], &el), m);
    assert_int_equal(el, 1);
    char *req = NULL;
    assert_int_equal(rz_run_request(r, t[1], &req), RZ_OK);
    assert_string_equal(req, "{\"inputs\":{\"v\":\"b\",\"i\":1},\"config\":{}}");
    rz_free(req);
    /* The step itself is never started, completed or asked for a request. */
    assert_int_equal(rz_run_start(r, m, 0), RZ_ESTATE);
    assert_int_equal(rz_run_succeed(r, m, NULL, 0), RZ_ESTATE);
    assert_int_equal(rz_run_request(r, m, &req), RZ_ESTATE);
    /* Elements end out of order; the outputs keep the list's order. */
    size_t first = t[0], second = t[1];
    assert_int_equal(rz_run_start(r, first, 1), RZ_OK);
    assert_int_equal(rz_run_start(r, second, 1), RZ_OK);
    assert_int_equal(ready_tasks(r, 1, t), 0);
    assert_int_equal(rz_run_succeed(r, second, "{\"y\":\"B\"}", 2), RZ_OK);
    assert_int_equal(ready_tasks(r, 2, t), 1);
    size_t third = t[0];
    assert_int_equal(rz_run_start(r, third, 2), RZ_OK);
    assert_int_equal(rz_run_succeed(r, third, "{\"y\":\"C\"}", 3), RZ_OK);
    assert_int_equal(ready_tasks(r, 3, t), 1);
    size_t fourth = t[0];
    assert_int_equal(rz_run_start(r, fourth, 3), RZ_OK);
    assert_int_equal(rz_run_succeed(r, fourth, "{\"y\":\"D\"}", 4), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_succeed(r, first, "{\"y\":\"A\"}", 5), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_SUCCEEDED);
    assert_int_equal(rz_run_step_attempts(r, m), 4);
    expect_request(r, "after", "{\"inputs\":{\"all\":[\"A\",\"B\",\"C\",\"D\"]},"
                   "\"config\":{}}");
    char *out = NULL;
    assert_int_equal(rz_run_step_outputs(r, m, &out), RZ_OK);
    assert_string_equal(out, "{\"y\":[\"A\",\"B\",\"C\",\"D\"]}");
    rz_free(out);
    run_ok(r, "after", NULL, 6);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"elements\":[{\"status\":\"succeeded\","
                             "\"attempts\":1,\"outputs\":{\"y\":\"A\"},"
                             "\"started_ms\":1,\"duration_ms\":4},"));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

/* What an embedded runner measured: each task's run time and price, a
 * for_each step's summed over its elements, the run's over its steps; an
 * unpriced task named; nothing written for a run given none. */
static void test_usage_and_cost(void **state)
{
    (void)state;
    rz_flow *f = yaml(FE_FLOW);
    rz_run *r = start_run(f, "{\"xs\":[\"a\",\"b\"]}");
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_null(strstr(json, "cost_micros"));
    assert_null(strstr(json, "run_ms"));
    rz_free(json);
    size_t t[64];
    assert_int_equal(ready_tasks(r, 0, t), 2);
    assert_int_equal(rz__run_add_usage(r, t[0], 100, true, 3), RZ_OK);
    assert_int_equal(rz__run_add_usage(r, t[0], 50, true, 2), RZ_OK);   /* a retry */
    assert_int_equal(rz__run_add_usage(r, t[1], 40, true, UINT64_MAX), RZ_OK);
    assert_int_equal(rz__run_add_usage(r, 99, 1, true, 1), RZ_EINVAL);
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    /* Saturated at 2^53, never wrapped around or rounded. */
    assert_non_null(strstr(json, "\"m\":{\"status\":\"running\",\"attempts\":0,"
                                 "\"run_ms\":190,\"cost_micros\":9007199254740992,"));
    assert_non_null(strstr(json, "\"elements\":[{\"status\":\"ready\",\"attempts\":0,"
                                 "\"run_ms\":150,\"cost_micros\":5,"));
    rz_free(json);
    size_t after = S(r, "after");
    assert_int_equal(rz__run_add_usage(r, after, 7, false, 0), RZ_OK);
    assert_int_equal(rz__run_add_usage(r, after, 5, true, 4), RZ_OK);   /* stays unpriced */
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"after\":{\"status\":\"pending\",\"attempts\":0,"
                                 "\"run_ms\":12,\"outputs\""));
    assert_non_null(strstr(json, "\"run_ms\":202,\"cost_micros\":9007199254740992,"
                                 "\"unpriced_steps\":[\"after\"]"));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

/* n elements finishing in a random order give n results in list order. */
static void test_for_each_any_completion_order(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fe\ninputs:\n  xs: {type: array}\nsteps:\n"
                      "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n"
                      "    inputs: {v: \"${{ each.value }}\"}\n");
    unsigned seed = 12345;
    for (int round = 0; round < 20; round++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % 40);
        char in[1024] = "{\"xs\":[";
        for (size_t k = 0; k < n; k++)
            snprintf(in + strlen(in), sizeof in - strlen(in), "%s%zu", k ? "," : "", k);
        strcat(in, "]}");
        rz_run *r = start_run(f, in);
        size_t t[64];
        size_t k = ready_tasks(r, 0, t);
        assert_int_equal(k, n);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(rz_run_start(r, t[i], 0), RZ_OK);
        for (size_t i = k; i > 1; i--) {   /* shuffle, then finish */
            size_t j = (size_t)rand_r(&seed) % i, x = t[i - 1];
            t[i - 1] = t[j];
            t[j] = x;
        }
        for (size_t i = 0; i < k; i++) {
            size_t el = 0;
            rz_run_task_step(r, t[i], &el);
            char o[64];
            snprintf(o, sizeof o, "{\"y\":%zu}", el * 10);
            assert_int_equal(rz_run_succeed(r, t[i], o, 1), RZ_OK);
        }
        assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
        char *out = NULL;
        assert_int_equal(rz_run_step_outputs(r, S(r, "m"), &out), RZ_OK);
        cJSON *o = cJSON_Parse(out);
        rz_free(out);
        const cJSON *y = cJSON_GetObjectItem(o, "y");
        assert_int_equal(cJSON_GetArraySize(y), n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(cJSON_GetArrayItem(y, (int)i)->valueint, (int)i * 10);
        cJSON_Delete(o);
        rz_run_free(r);
    }
    rz_flow_free(f);
}

static void test_for_each_failure_fails_map(void **state)
{
    (void)state;
    rz_flow *f = yaml(FE_FLOW);
    rz_run *r = start_run(f, "{\"xs\":[1,2,3,4]}");
    size_t t[64], m = S(r, "m");
    assert_int_equal(ready_tasks(r, 0, t), 2);
    size_t a = t[0], b = t[1];
    assert_int_equal(rz_run_start(r, a, 0), RZ_OK);
    assert_int_equal(rz_run_start(r, b, 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, a, "boom", 1), RZ_OK);
    /* No more elements start; the one running finishes the map. */
    assert_int_equal(ready_tasks(r, 1, t), 0);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_step_state(r, b + 1), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_step_error(r, b + 1), "element 0 failed");
    assert_int_equal(rz_run_succeed(r, b, "{\"y\":2}", 2), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, m), "element 0 (of 4) failed: boom");
    assert_int_equal(state_of(r, "after"), RZ_STEP_SKIPPED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_for_each_retry_and_continue(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fe\nsteps:\n"
                      "  m:\n    module: noop\n    for_each: [x, y, z]\n"
                      "    on_failure: continue\n"
                      "    retry: {max_attempts: 2, initial_ms: 10}\n"
                      "  after:\n    module: noop\n    needs: [m]\n"
                      "    inputs: {all: \"${{ steps.m.outputs.y }}\"}\n");
    rz_run *r = start_run(f, NULL);
    size_t t[64], m = S(r, "m");
    assert_int_equal(ready_tasks(r, 0, t), 3);
    size_t x = t[0], y = t[1], z = t[2];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rz_run_start(r, t[i], 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, x, "once", 1), RZ_OK);
    assert_int_equal(rz_run_step_state(r, x), RZ_STEP_BACKOFF);
    assert_int_equal(rz_run_fail(r, y, "first", 1), RZ_OK);
    assert_int_equal(rz_run_succeed(r, z, "{\"y\":3}", 1), RZ_OK);
    assert_int_equal(ready_tasks(r, 11, t), 2);   /* both retries are due */
    assert_int_equal(rz_run_start(r, x, 11), RZ_OK);
    assert_int_equal(rz_run_start(r, y, 11), RZ_OK);
    assert_int_equal(rz_run_succeed(r, x, "{\"y\":1}", 12), RZ_OK);
    assert_int_equal(rz_run_fail(r, y, "second", 12), RZ_OK);
    assert_int_equal(rz_run_step_attempts(r, x), 2);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, m), "element 1 (of 3) failed: second");
    /* on_failure: continue hands the lists on, null where one failed. */
    expect_request(r, "after", "{\"inputs\":{\"all\":[1,null,3]},\"config\":{}}");
    run_ok(r, "after", NULL, 13);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    char *json = NULL;
    assert_int_equal(rz_run_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"failed_steps\":[\"m\"]"));
    rz_free(json);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_for_each_empty_bad_and_cap(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fe\ninputs:\n  xs: {type: any}\nsteps:\n"
                      "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n");
    rz_run *r = start_run(f, "{\"xs\":[]}");
    assert_int_equal(rz_run_state_get(r), RZ_RUN_SUCCEEDED);
    assert_int_equal(state_of(r, "m"), RZ_STEP_SUCCEEDED);
    rz_run_free(r);
    r = start_run(f, "{\"xs\":{\"a\":1}}");
    assert_int_equal(state_of(r, "m"), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, S(r, "m")),
                        "for_each must give a list, not an object");
    rz_run_free(r);
    size_t n = RZ_FLOW_FOR_EACH_MAX + 1;
    char *in = malloc(n * 2 + 16);
    assert_non_null(in);
    strcpy(in, "{\"xs\":[");
    for (size_t k = 0; k < n; k++)
        strcat(in + strlen(in) - 1, k ? ",0" : "0");
    strcat(in, "]}");
    r = start_run(f, in);
    free(in);
    assert_int_equal(state_of(r, "m"), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, S(r, "m")),
                        "for_each gives 10001 elements; a step runs at most 10000");
    assert_int_equal(rz_run_task_count(r), 1);
    rz_run_free(r);
    rz_flow_free(f);
}

/* ---- nested maps (for_each_depth) ---- */

static const char *NEST_FLOW =
    "flux: 1\nname: nest\ninputs:\n  xs: {type: any}\nsteps:\n"
    "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n    for_each_depth: 2\n"
    "    inputs: {v: \"${{ item }}\", i: \"${{ index }}\", at: \"${{ indices }}\"}\n"
    "  after:\n    module: noop\n    needs: [m]\n"
    "    inputs: {all: \"${{ steps.m.outputs.y }}\", one: \"${{ steps.m.outputs.y[2][0] }}\"}\n";

/* Element `task` of NEST_FLOW is told its value (10 * row + column), its
 * inner index and its place; returns the value. */
static int nested_element_checked(rz_run *r, size_t task)
{
    char *req = NULL;
    assert_int_equal(rz_run_request(r, task, &req), RZ_OK);
    cJSON *q = cJSON_Parse(req);
    rz_free(req);
    const cJSON *in = cJSON_GetObjectItem(q, "inputs");
    int v = cJSON_GetObjectItem(in, "v")->valueint;
    const cJSON *at = cJSON_GetObjectItem(in, "at");
    assert_int_equal(cJSON_GetArraySize(at), 2);
    assert_int_equal(cJSON_GetArrayItem(at, 0)->valueint, v / 10);
    assert_int_equal(cJSON_GetArrayItem(at, 1)->valueint, v % 10);
    assert_int_equal(cJSON_GetObjectItem(in, "i")->valueint, v % 10);
    cJSON_Delete(q);
    return v;
}

/* A map within a map: every element of every inner list runs, in any
 * order; outputs come back in the lists' shape (empty inner lists kept). */
static void test_nested_map_shape_any_order(void **state)
{
    (void)state;
    rz_flow *f = yaml(NEST_FLOW);
    unsigned seed = 777;
    for (int round = 0; round < 20; round++) {
        /* 1 to 6 inner lists of 0 to 5 numbers each, some empty */
        size_t rows = 1 + (size_t)(rand_r(&seed) % 6), n = 0, len[8];
        char in[1024] = "{\"xs\":[";
        for (size_t a = 0; a < rows; a++) {
            len[a] = a == 2 ? 1 : (size_t)(rand_r(&seed) % 6);
            strcat(in, a ? ",[" : "[");
            for (size_t b = 0; b < len[a]; b++)
                snprintf(in + strlen(in), sizeof in - strlen(in), "%s%zu", b ? "," : "",
                         a * 10 + b);
            strcat(in, "]");
            n += len[a];
        }
        strcat(in, "]}");
        rz_run *r = start_run(f, in);
        assert_int_equal(rz_run_task_count(r), 2 + n);
        size_t t[64];
        size_t k = ready_tasks(r, 0, t);
        assert_int_equal(k, n);
        for (size_t i = k; i > 1; i--) {
            size_t j = (size_t)rand_r(&seed) % i, x = t[i - 1];
            t[i - 1] = t[j];
            t[j] = x;
        }
        for (size_t i = 0; i < k; i++) {
            int v = nested_element_checked(r, t[i]);
            char o[64];
            snprintf(o, sizeof o, "{\"y\":%d}", v * 2);
            assert_int_equal(rz_run_start(r, t[i], 0), RZ_OK);
            assert_int_equal(rz_run_succeed(r, t[i], o, 1), RZ_OK);
        }
        assert_int_equal(state_of(r, "m"), RZ_STEP_SUCCEEDED);
        char *out = NULL;
        assert_int_equal(rz_run_step_outputs(r, S(r, "m"), &out), RZ_OK);
        cJSON *o = cJSON_Parse(out);
        rz_free(out);
        const cJSON *y = cJSON_GetObjectItem(o, "y");
        assert_int_equal(cJSON_GetArraySize(y), rows);
        for (size_t a = 0; a < rows; a++) {
            const cJSON *row = cJSON_GetArrayItem(y, (int)a);
            assert_true(cJSON_IsArray(row));
            assert_int_equal(cJSON_GetArraySize(row), len[a]);
            for (size_t b = 0; b < len[a]; b++)
                assert_int_equal(cJSON_GetArrayItem(row, (int)b)->valueint,
                                 (int)(a * 10 + b) * 2);
        }
        cJSON_Delete(o);
        if (rows > 2) {   /* y[2][0] is element 20's */
            char *req = NULL;
            assert_int_equal(rz_run_request(r, S(r, "after"), &req), RZ_OK);
            assert_non_null(strstr(req, "\"one\":40"));
            rz_free(req);
        }
        rz_run_free(r);
    }
    rz_flow_free(f);
}

/* An inner value that is not a list fails the step, saying where; only
 * empty lists: success at once, the shape kept; three levels; a failed
 * element fails the map (or leaves a null in its place with continue). */
static void test_nested_map_edges(void **state)
{
    (void)state;
    rz_flow *f = yaml(NEST_FLOW);
    rz_run *r = start_run(f, "{\"xs\":[[1],[2,3],4]}");
    assert_int_equal(state_of(r, "m"), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, S(r, "m")),
                        "for_each_depth 2: for_each must give lists 2 deep; item [2] is a "
                        "number, not a list");
    assert_int_equal(rz_run_task_count(r), 2);
    rz_run_free(r);
    r = start_run(f, "{\"xs\":[[],[]]}");
    assert_int_equal(state_of(r, "m"), RZ_STEP_SUCCEEDED);
    char *out = NULL;
    assert_int_equal(rz_run_step_outputs(r, S(r, "m"), &out), RZ_OK);
    assert_string_equal(out, "{}");   /* noop declares no port (an empty list's [] stays:
                                         the three levels below) */
    rz_free(out);
    rz_run_free(r);
    rz_flow_free(f);
    f = yaml("flux: 1\nname: n3\ninputs:\n  xs: {type: any}\nsteps:\n"
             "  m:\n    module: noop\n    for_each: \"${{ inputs.xs }}\"\n"
             "    for_each_depth: 3\n    on_failure: continue\n"
             "    inputs: {at: \"${{ each.indices }}\"}\n");
    r = start_run(f, "{\"xs\":[[[1,2]],[[],[3]],[[[4]]]]}");
    size_t t[64];
    assert_int_equal(ready_tasks(r, 0, t), 4);   /* [[4]] is one leaf: a list */
    char *req = NULL;
    assert_int_equal(rz_run_request(r, t[3], &req), RZ_OK);
    assert_string_equal(req, "{\"inputs\":{\"at\":[2,0,0]},\"config\":{}}");
    rz_free(req);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(rz_run_start(r, t[i], 0), RZ_OK);
        if (i == 1)
            assert_int_equal(rz_run_fail(r, t[i], "boom", 1), RZ_OK);
        else
            assert_int_equal(rz_run_succeed(r, t[i], "{\"y\":1}", 1), RZ_OK);
    }
    assert_int_equal(state_of(r, "m"), RZ_STEP_FAILED);
    assert_int_equal(rz_run_step_outputs(r, S(r, "m"), &out), RZ_OK);
    assert_string_equal(out, "{\"y\":[[[1,null]],[[],[1]],[[1]]]}");
    rz_free(out);
    rz_run_free(r);
    rz_flow_free(f);
}

/* Each element has the step's timeout; one that expires fails the map
 * like a failure would; rz_run_fail on the step fails the whole map. */
static void test_for_each_timeout_and_fail_map(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: fe\nsteps:\n"
                      "  m: {module: noop, for_each: [1, 2, 3], timeout_s: 2}\n");
    rz_run *r = start_run(f, NULL);
    size_t t[64], m = S(r, "m");
    assert_int_equal(ready_tasks(r, 0, t), 3);
    assert_int_equal(rz_run_start(r, t[0], 0), RZ_OK);
    assert_int_equal(rz_run_start(r, t[1], 1000), RZ_OK);
    assert_int_equal(rz_run_next_wakeup(r), 2000);
    size_t expired[4];
    assert_int_equal(rz_run_tick(r, 2000, expired, 4), 1);
    assert_int_equal(expired[0], t[0]);
    assert_string_equal(rz_run_step_error(r, t[0]), "timed out after 2 s");
    assert_int_equal(rz_run_step_state(r, t[2]), RZ_STEP_SKIPPED);
    assert_int_equal(rz_run_succeed(r, t[1], NULL, 2500), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, m),
                        "element 0 (of 3) failed: timed out after 2 s");
    rz_run_free(r);

    r = start_run(f, NULL);
    assert_int_equal(ready_tasks(r, 0, t), 3);
    assert_int_equal(rz_run_start(r, t[0], 0), RZ_OK);
    assert_int_equal(rz_run_fail(r, m, "no money", 1), RZ_OK);
    assert_int_equal(rz_run_step_state(r, t[1]), RZ_STEP_SKIPPED);
    assert_string_equal(rz_run_step_error(r, t[1]), "not run: no money");
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_succeed(r, t[0], NULL, 2), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_FAILED);
    assert_string_equal(rz_run_step_error(r, m), "no money");
    assert_int_equal(rz_run_state_get(r), RZ_RUN_FAILED);
    rz_run_free(r);
    rz_flow_free(f);
}

static void test_for_each_cancel(void **state)
{
    (void)state;
    rz_flow *f = yaml(FE_FLOW);
    rz_run *r = start_run(f, "{\"xs\":[1,2,3]}");
    size_t t[64], m = S(r, "m");
    assert_int_equal(ready_tasks(r, 0, t), 2);
    assert_int_equal(rz_run_start(r, t[0], 0), RZ_OK);
    assert_int_equal(rz_run_cancel(r, 1), RZ_OK);
    assert_int_equal(rz_run_step_state(r, t[1]), RZ_STEP_CANCELLED);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_RUNNING);
    assert_int_equal(rz_run_fail(r, t[0], "stopped", 2), RZ_OK);
    assert_int_equal(rz_run_step_state(r, m), RZ_STEP_CANCELLED);
    assert_int_equal(rz_run_state_get(r), RZ_RUN_CANCELLED);
    rz_run_free(r);
    rz_flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_each_order_and_bound),
        cmocka_unit_test(test_usage_and_cost),
        cmocka_unit_test(test_for_each_any_completion_order),
        cmocka_unit_test(test_nested_map_shape_any_order),
        cmocka_unit_test(test_nested_map_edges),
        cmocka_unit_test(test_for_each_failure_fails_map),
        cmocka_unit_test(test_for_each_retry_and_continue),
        cmocka_unit_test(test_for_each_empty_bad_and_cap),
        cmocka_unit_test(test_for_each_cancel),
        cmocka_unit_test(test_for_each_timeout_and_fail_map),
        cmocka_unit_test(test_linear_success),
        cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_invalid_transitions),
        cmocka_unit_test(test_invalid_after_done),
        cmocka_unit_test(test_retry_fixed),
        cmocka_unit_test(test_retry_exponential_capped),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_expire_one),
        cmocka_unit_test(test_module_timeout),
        cmocka_unit_test(test_timeouts_earliest_first),
        cmocka_unit_test(test_retries_ready_earliest_first),
        cmocka_unit_test(test_deadlines_match_a_scan),
        cmocka_unit_test(test_when_false_skips_downstream),
        cmocka_unit_test(test_when_true_and_inputs),
        cmocka_unit_test(test_skip_long_chain),
        cmocka_unit_test(test_on_failure_fail),
        cmocka_unit_test(test_on_failure_continue),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_inputs_required_and_defaults),
        cmocka_unit_test(test_module_contracts),
        cmocka_unit_test(test_request_templates),
        cmocka_unit_test(test_request_connections),
        cmocka_unit_test(test_outputs_must_be_object),
        cmocka_unit_test(test_refused_flows),
        cmocka_unit_test(test_step_logs),
        cmocka_unit_test(test_fallback_runs_after_failure),
        cmocka_unit_test(test_fallback_skipped_after_success),
        cmocka_unit_test(test_when_eval_error),
        cmocka_unit_test(test_exact_numbers),
        cmocka_unit_test(test_ready_list_matches_states),
        cmocka_unit_test(test_replica_follows_deployment),
        cmocka_unit_test(test_shared_run_is_the_deployment),
        cmocka_unit_test(test_shared_run_status_when_asked),
        cmocka_unit_test(test_join_if_else),
        cmocka_unit_test(test_run_summary),
        cmocka_unit_test(test_on_exit_and_outputs),
        cmocka_unit_test(test_flow_output_error),
        cmocka_unit_test(test_join_any_unmet),
        cmocka_unit_test(test_join_all_done),
        cmocka_unit_test(test_join_none_failed),
        cmocka_unit_test(test_join_one_failed),
        cmocka_unit_test(test_join_builder_and_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
