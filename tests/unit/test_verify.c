/* Verification: the reputation formula, capability challenges (answered
 * right, wrong, late, never), and what an unverified node may not run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rhizos/engine.h"
#include "helpers.h"

#define CPU_CAPS "{\"cpu\":{\"cores\":4},\"memory_mb\":4," \
    "\"storage\":{\"total_gb\":10,\"free_gb\":10},\"adapters\":[\"process\"]," \
    "\"prices\":{\"cpu_hour_micros\":36000000}}"
/* Claims 8 GPUs and a reputation it has not earned. */
#define GPU_CAPS "{\"cpu\":{\"cores\":4},\"memory_mb\":4," \
    "\"storage\":{\"total_gb\":10,\"free_gb\":10},\"adapters\":[\"process\"]," \
    "\"gpus\":[{\"vendor\":\"nvidia\",\"model\":\"H100\",\"vram_mb\":81920}," \
    "{},{},{},{},{},{},{}],\"reputation\":1," \
    "\"prices\":{\"cpu_hour_micros\":36000000,\"gpu_hour_micros\":36000000}}"

typedef struct fx {
    char dir[64];
    rz_engine *e;
    rz_ledger_id client;
} fx;

static void open_engine(fx *f, uint64_t interval)
{
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = UINT64_MAX / 4;
    o.run_tolerance_ms = UINT64_MAX / 4;
    o.challenge_interval_ms = interval;
    o.challenge_seed = 42;
    o.challenge_cpu_iterations = 1000;
    o.challenge_grace_ms = 500;
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(tmp_dir_make(f->dir, sizeof f->dir, "verify"));
    open_engine(f, 60000);
    f->client = rz_ledger_id_make(7, 1);
    rz_ledger *l = rz_engine_ledger(f->e);
    assert_int_equal(rz_ledger_create_account(l, f->client, RZ_LEDGER_CLIENT), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(7, 2), f->client,
                                           1000000000), RZ_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rz_engine_close(f->e);
    assert_int_equal(tmp_dir_remove(f->dir), 0);
    free(f);
    return 0;
}

static uint64_t node_add(fx *f, const char *caps, uint64_t now)
{
    uint64_t id = 0;
    assert_int_equal(rz_engine_node_register(f->e, caps, strlen(caps), now, &id),
                     RZ_OK);
    return id;
}

static uint64_t submit(fx *f, const char *reqs, uint64_t now)
{
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = reqs;
    s.module_id = "m";
    s.max_cost_micros = 10000000;
    uint64_t id = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, now, &id), RZ_OK);
    return id;
}

static rz_engine_node_trust trust(fx *f, uint64_t node)
{
    rz_engine_node_trust t;
    assert_int_equal(rz_engine_node_trust_get(f->e, node, &t), RZ_OK);
    return t;
}

/* The node's side: fetch the challenge and answer it, or answer it wrong. */
static int answer(fx *f, uint64_t node, uint64_t now, const char *spoil)
{
    char *ch = NULL, *ans = NULL;
    assert_int_equal(rz_engine_node_challenge(f->e, node, now, &ch), RZ_OK);
    assert_int_equal(rz_challenge_answer(ch, strlen(ch), &ans), RZ_OK);
    if (spoil) {   /* replace one member with a wrong digest */
        cJSON *a = cJSON_Parse(ans);
        cJSON_ReplaceItemInObject(a, spoil, cJSON_CreateString("00"));
        rz_free(ans);
        ans = cJSON_PrintUnformatted(a);
        cJSON_Delete(a);
    }
    int passed = -1;
    assert_int_equal(rz_engine_node_answer(f->e, node, ans, strlen(ans), now + 1,
                                           &passed), RZ_OK);
    rz_free(ch);
    rz_free(ans);
    return passed;
}

static void test_reputation_formula(void **state)
{
    (void)state;
    rz_engine_record r = {0};
    assert_true(rz_engine_reputation(&r) == 1.0);
    assert_true(rz_engine_reputation(NULL) == 1.0);
    r.succeeded = 100;
    assert_true(rz_engine_reputation(&r) == 1.0);
    /* (100 + 4) / (100 + 1 + 4) = 0.9904..: rounded down to 0.99. */
    r.failed = 1;
    assert_true(fabs(rz_engine_reputation(&r) - 0.99) < 1e-12);
    /* One unanswered challenge of a new node: 4 / (4 + 4) = 0.5. */
    rz_engine_record c = { .challenges_failed = 1 };
    assert_true(fabs(rz_engine_reputation(&c) - 0.5) < 1e-12);
    /* Weights: a decline costs half a failure, a loss two, a disagreement
     * four; each success earns one back. */
    rz_engine_record d = { .declined = 2 }, g = { .failed = 1 };
    assert_true(rz_engine_reputation(&d) == rz_engine_reputation(&g));
    rz_engine_record l = { .lost = 1 }, f2 = { .failed = 2 };
    assert_true(rz_engine_reputation(&l) == rz_engine_reputation(&f2));
    rz_engine_record x = { .disagreed = 1 }, y = { .challenges_failed = 1 };
    assert_true(rz_engine_reputation(&x) == rz_engine_reputation(&y));
    /* Monotone: more bad never raises it, more good never lowers it. */
    for (uint64_t b = 0; b < 50; b++) {
        rz_engine_record p = { .succeeded = 10, .failed = b };
        rz_engine_record q = { .succeeded = 10, .failed = b + 1 };
        rz_engine_record s = { .succeeded = 11, .failed = b };
        assert_true(rz_engine_reputation(&q) <= rz_engine_reputation(&p));
        assert_true(rz_engine_reputation(&s) >= rz_engine_reputation(&p));
        assert_true(rz_engine_reputation(&q) >= 0.0);
    }
}

/* The record is counted from what happens and decides reputation; a
 * node's own "reputation" is ignored; the record survives a reopen. */
static void test_record_counts(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, GPU_CAPS, 1);
    rz_engine_assignment as;
    uint64_t j1 = submit(f, "{\"estimate_seconds\":1}", 2);
    assert_int_equal(rz_engine_poll(f->e, n, 3, &as), RZ_OK);
    rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
    rep.attempt = as.attempt;
    rep.error = "boom";
    assert_int_equal(rz_engine_report_result(f->e, n, j1, &rep, 4, NULL), RZ_OK);
    uint64_t j2 = submit(f, "{\"estimate_seconds\":1}", 5);
    assert_int_equal(rz_engine_poll(f->e, n, 6, &as), RZ_OK);
    assert_int_equal(rz_engine_decline(f->e, n, j2, as.attempt, 7), RZ_OK);
    rz_engine_node_trust t = trust(f, n);
    assert_int_equal(t.record.failed, 1);
    assert_int_equal(t.record.declined, 1);
    assert_int_equal(t.claims, RZ_CAP_CPU | RZ_CAP_MEMORY | RZ_CAP_GPU);
    /* (0 + 4) / (1.5 + 4) = 0.727..: 0.72. */
    assert_true(fabs(t.reputation - 0.72) < 1e-12);
    char *caps = NULL;
    assert_int_equal(rz_engine_node_caps(f->e, n, &caps), RZ_OK);
    assert_non_null(strstr(caps, "\"reputation\":0.72"));
    rz_free(caps);
    rz_engine_close(f->e);
    open_engine(f, 60000);
    t = trust(f, n);
    assert_int_equal(t.record.failed, 1);
    assert_int_equal(t.record.declined, 1);
    assert_true(fabs(t.reputation - 0.72) < 1e-12);
    /* Claims stay unverified across the reopen. */
    assert_int_equal(t.unverified, t.claims);
}

/* A GPU job (verified by default) is not placed on a node whose claims
 * are unverified; an honest answer verifies them and the job is placed. A
 * CPU job does not ask unless it says verified: true. */
static void test_challenge_gates_placement(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, GPU_CAPS, 1);
    rz_engine_node_trust t = trust(f, n);
    assert_int_equal(t.state, RZ_VERIFY_UNVERIFIED);
    uint64_t gj = submit(f, "{\"gpu\":{\"count\":8},\"estimate_seconds\":1}", 2);
    uint64_t vj = submit(f, "{\"verified\":true,\"estimate_seconds\":1}", 2);
    uint64_t cj = submit(f, "{\"estimate_seconds\":1}", 2);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, n, 3, &as), RZ_OK);
    assert_int_equal(as.job, cj);
    assert_int_equal(rz_engine_poll(f->e, n, 3, &as), RZ_ENOENT);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, gj, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_QUEUED);
    assert_non_null(ji.waiting_reason);
    assert_non_null(strstr(ji.waiting_reason, "verified"));
    assert_int_equal(answer(f, n, 10, NULL), 1);
    t = trust(f, n);
    assert_int_equal(t.state, RZ_VERIFY_VERIFIED);
    assert_int_equal(t.unverified, 0);
    assert_int_equal(t.record.challenges_passed, 1);
    assert_int_equal(rz_engine_tick(f->e, 12), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 12, &as), RZ_OK);
    assert_true(as.job == gj || as.job == vj);
    assert_int_equal(rz_engine_poll(f->e, n, 12, &as), RZ_OK);
    assert_true(as.job == gj || as.job == vj);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    /* Verified, it cannot stay so by not fetching the next challenge: once
     * one is due and its time has passed, its claims are unverified. */
    uint64_t wake = rz_engine_next_wakeup(f->e);
    assert_true(wake > 12 + 30000 && wake < 12 + 90000 + 1000);
    assert_int_equal(rz_engine_tick(f->e, wake - 1), RZ_OK);
    assert_int_equal(trust(f, n).state, RZ_VERIFY_VERIFIED);
    assert_int_equal(rz_engine_tick(f->e, wake), RZ_OK);
    t = trust(f, n);
    assert_int_equal(t.state, RZ_VERIFY_UNVERIFIED);
    assert_int_equal(t.record.challenges_failed, 1);
}

/* A wrong GPU digest unverifies the GPUs only; a wrong CPU digest the
 * CPU; an unanswered challenge everything, at its deadline (the tick's
 * wakeup says when); a late answer counts as none. */
static void test_challenge_failures(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, GPU_CAPS, 1);
    assert_int_equal(answer(f, n, 2, "gpu"), 0);
    rz_engine_node_trust t = trust(f, n);
    assert_int_equal(t.unverified, RZ_CAP_GPU);
    assert_int_equal(t.record.challenges_failed, 1);
    assert_int_equal(t.state, RZ_VERIFY_UNVERIFIED);
    /* A GPU job stays queued; a verified CPU job runs. */
    uint64_t gj = submit(f, "{\"gpu\":{\"count\":1},\"estimate_seconds\":1}", 3);
    uint64_t vj = submit(f, "{\"verified\":true,\"estimate_seconds\":1}", 3);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, n, 4, &as), RZ_OK);
    assert_int_equal(as.job, vj);
    assert_int_equal(rz_engine_poll(f->e, n, 4, &as), RZ_ENOENT);
    (void)gj;
    /* No new challenge before the interval (at least half of 60 s). */
    char *ch = NULL;
    assert_int_equal(rz_engine_node_challenge(f->e, n, 5, &ch), RZ_ENOENT);
    assert_null(ch);
    /* The next one, left unanswered. */
    uint64_t due = 2 + 1 + 90000;
    for (uint64_t now = 30000; now <= due; now += 1000)
        if (rz_engine_node_challenge(f->e, n, now, &ch) == RZ_OK)
            break;
    assert_non_null(ch);
    t = trust(f, n);
    assert_int_equal(t.state, RZ_VERIFY_PENDING);
    uint64_t deadline = t.challenge_deadline_ms;
    assert_true(deadline > 0);
    /* The same challenge again while it is outstanding. */
    char *again = NULL;
    assert_int_equal(rz_engine_node_challenge(f->e, n, deadline - 1, &again), RZ_OK);
    assert_string_equal(ch, again);
    rz_free(again);
    assert_true(rz_engine_next_wakeup(f->e) <= deadline + 1);
    assert_int_equal(rz_engine_tick(f->e, deadline + 1), RZ_OK);
    t = trust(f, n);
    assert_int_equal(t.unverified, t.claims);
    assert_int_equal(t.record.challenges_failed, 2);
    /* An answer after that is to no outstanding challenge. */
    char *ans = NULL;
    assert_int_equal(rz_challenge_answer(ch, strlen(ch), &ans), RZ_OK);
    assert_int_equal(rz_engine_node_answer(f->e, n, ans, strlen(ans),
                                           deadline + 2, NULL), RZ_ENOENT);
    rz_free(ans);
    rz_free(ch);
}

/* The same seed, node and number give the same challenge; another seed
 * another nonce. Malformed challenges are refused by the answerer. */
static void test_challenge_deterministic(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, CPU_CAPS, 1);
    char *a = NULL, *b = NULL, *ans = NULL;
    assert_int_equal(rz_engine_node_challenge(f->e, n, 2, &a), RZ_OK);
    rz_engine_close(f->e);
    open_engine(f, 60000);
    /* After a reopen the outstanding one is forgotten, the number kept:
     * the next is a new nonce. */
    assert_int_equal(rz_engine_node_challenge(f->e, n, 3, &b), RZ_OK);
    assert_string_not_equal(a, b);
    assert_non_null(strstr(b, "\"seq\":2"));
    assert_null(strstr(b, "\"gpu\""));
    assert_non_null(strstr(b, "\"memory\":{\"mb\":4}"));
    rz_free(a);
    rz_free(b);
    static const char *const bad[] = {
        "", "[]", "{\"seq\":1}", "{\"seq\":1,\"nonce\":\"zz\"}",
        "{\"seq\":1,\"nonce\":\"0000000000000000000000000000000000000000000000"
        "000000000000000000\",\"cpu\":{\"iterations\":0}}",
        "{\"seq\":1,\"nonce\":\"0000000000000000000000000000000000000000000000"
        "000000000000000000\",\"gpu\":{\"n\":65}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(rz_challenge_answer(bad[i], strlen(bad[i]), &ans), RZ_EINVAL);
        assert_null(ans);
    }
}

/* A node registering again (the same key: the same node) keeps its record
 * but proves what it claims now again. */
static void test_rejoin_reproves(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, CPU_CAPS, 1);
    assert_int_equal(answer(f, n, 2, "cpu"), 0);
    assert_int_equal(answer(f, n, 100000, NULL), 1);
    assert_int_equal(trust(f, n).state, RZ_VERIFY_VERIFIED);
    assert_int_equal(rz_engine_node_rejoin(f->e, n, GPU_CAPS, strlen(GPU_CAPS),
                                           100010), RZ_OK);
    rz_engine_node_trust t = trust(f, n);
    assert_int_equal(t.claims, RZ_CAP_CPU | RZ_CAP_MEMORY | RZ_CAP_GPU);
    assert_int_equal(t.unverified, t.claims);
    assert_int_equal(t.record.challenges_failed, 1);
    assert_int_equal(t.record.challenges_passed, 1);
    /* (1 + 4) / (1 + 4 + 4) = 0.555..: its own "reputation":1 is ignored. */
    assert_true(fabs(t.reputation - 0.55) < 1e-12);
    assert_int_equal(answer(f, n, 100020, NULL), 1);
    assert_int_equal(trust(f, n).state, RZ_VERIFY_VERIFIED);
}

/* A job placed on a node while it was verified is placed there again on
 * reopen though the node failed a challenge since (the simulator found
 * the engine refusing to open); new verified jobs still avoid it. */
static void test_reopen_keeps_placement(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, CPU_CAPS, 1);
    assert_int_equal(answer(f, n, 2, NULL), 1);
    uint64_t j = submit(f, "{\"verified\":true,\"estimate_seconds\":1}", 3);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, n, 4, &as), RZ_OK);
    assert_int_equal(as.job, j);
    assert_int_equal(answer(f, n, 100000, "cpu"), 0);
    rz_engine_close(f->e);
    open_engine(f, 60000);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
    assert_int_equal(trust(f, n).unverified, RZ_CAP_CPU);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_RUNNING);
    uint64_t k = submit(f, "{\"verified\":true,\"estimate_seconds\":1}", 100001);
    assert_int_equal(rz_engine_poll(f->e, n, 100002, &as), RZ_ENOENT);
    assert_int_equal(rz_engine_job_get(f->e, k, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_QUEUED);
}

/* With challenges off every claim is taken at its word (state "off"). */
static void test_challenges_off(void **state)
{
    fx *f = *state;
    rz_engine_close(f->e);
    open_engine(f, 0);
    uint64_t n = node_add(f, GPU_CAPS, 1);
    rz_engine_node_trust t = trust(f, n);
    assert_int_equal(t.state, RZ_VERIFY_OFF);
    assert_int_equal(t.unverified, 0);
    char *ch = NULL;
    assert_int_equal(rz_engine_node_challenge(f->e, n, 2, &ch), RZ_ENOENT);
    uint64_t gj = submit(f, "{\"gpu\":{\"count\":1},\"estimate_seconds\":1}", 3);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, n, 4, &as), RZ_OK);
    assert_int_equal(as.job, gj);
    assert_string_equal(rz_verify_state_name(RZ_VERIFY_PENDING), "pending");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reputation_formula),
        cmocka_unit_test_setup_teardown(test_record_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenge_gates_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenge_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenge_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenges_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejoin_reproves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_placement, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
