/* Redundant execution (verify: {replicas: k}): k runs on distinct nodes,
 * k holds, the majority's outputs, the agreeing runs paid, a disagreeing
 * minority not paid and counted, no majority: nobody paid; a reopen
 * between votes loses nothing. Every test ends with rz_engine_check (the
 * ledger sums to zero, every hold in the state its job says). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "rhizos/engine.h"
#include "helpers.h"
#include "engine_fixture.h"

/* 36 micros a second of one core: 1 s of 1 core costs 36. */
#define CAPS "{\"cpu\":{\"cores\":4},\"memory_mb\":64," \
    "\"storage\":{\"total_gb\":10,\"free_gb\":10},\"adapters\":[\"process\"]," \
    "\"max_concurrent_jobs\":4,\"prices\":{\"cpu_hour_micros\":129600}}"
#define REQS "{\"cpu_cores\":1,\"estimate_seconds\":1}"
#define MAX_COST 1000u
#define CREDIT 100000u

typedef efx fx;

static int setup(void **state)
{
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = UINT64_MAX / 4;
    o.max_attempts = 2;
    fx *f = efx_new("replica", NULL, 0, &o, CREDIT);
    for (int i = 0; i < 4; i++)
        efx_node_add(f, CAPS, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static int submit_k(fx *f, uint32_t k, uint64_t max_cost, uint64_t *id)
{
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = REQS;
    s.module_id = "m";
    s.max_cost_micros = max_cost;
    s.replicas = k;
    return rz_engine_submit(f->e, &s, 10, id);
}

static rz_ledger_account acct(fx *f, rz_ledger_id id)
{
    rz_ledger_account a;
    memset(&a, 0, sizeof a);
    int rc = rz_ledger_balance(rz_engine_ledger(f->e), id, &a);
    assert_true(rc == RZ_OK || rc == RZ_ENOENT);
    return a;
}

static uint64_t earned(fx *f, uint64_t node)
{
    return acct(f, rz_engine_node_account(node)).credits_posted;
}

/* Node i takes its next assignment: the job it got (0: none). */
static uint64_t take(fx *f, int i, uint64_t now, uint32_t *attempt)
{
    rz_engine_assignment a;
    int rc = rz_engine_poll(f->e, f->node[i], now, &a);
    assert_true(rc == RZ_OK || rc == RZ_ENOENT);
    if (rc != RZ_OK)
        return 0;
    if (attempt)
        *attempt = a.attempt;
    return a.job;
}

static int report(fx *f, int i, uint64_t job, const char *outputs,
                  const char *error, uint64_t now)
{
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = 1;
    r.outputs_json = outputs;
    r.error = error;
    r.run_ms = 1000;   /* 36 micros */
    return rz_engine_report_result(f->e, f->node[i], job, &r, now, NULL);
}

static rz_engine_job_info info(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    return ji;
}

/* Every node polls: the runs go to k distinct nodes, never two to one;
 * who[i] is the node index that took run i (the job's i-th id). */
static void take_runs(fx *f, uint64_t head, uint32_t k, int *who)
{
    for (uint32_t i = 0; i < k; i++)
        who[i] = -1;
    uint32_t got = 0;
    for (int n = 0; n < 4; n++) {
        uint64_t job = take(f, n, 20, NULL);
        if (!job)
            continue;
        assert_true(job >= head && job < head + k);
        assert_int_equal(who[job - head], -1);
        who[job - head] = n;
        got++;
        /* The same node polls again: no second run of this job for it. */
        assert_int_equal(take(f, n, 21, NULL), 0);
    }
    assert_int_equal(got, k);
}

/* Between the steps of a long loop: the ledger sampled, the rest whole. */
static void check_quick(fx *f)
{
    int rc = rz_engine_check_sampled(f->e, 16);
    if (rc != RZ_OK)
        fprintf(stderr, "check: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
}

static void check(fx *f)
{
    efx_check(f);
}

/* A job of k replicas handed out (who[i]: the node of run i), run i
 * reporting outs[i] at 2000, or failing with "boom" where NULL: the job. */
static uint64_t voted(fx *f, uint32_t k, const char *const *outs, int *who)
{
    uint64_t job = 0;
    assert_int_equal(submit_k(f, k, MAX_COST, &job), RZ_OK);
    take_runs(f, job, k, who);
    for (uint32_t i = 0; i < k; i++)
        assert_int_equal(report(f, who[i], job + i, outs[i], outs[i] ? NULL : "boom", 2000),
                         RZ_OK);
    return job;
}

/* One liar among three: the two honest runs are paid, the liar is not
 * and its record counts a disagreement; the client pays two runs; the
 * job's outputs are the majority's. A reopen between votes loses
 * nothing. */
static void test_liar_not_paid(void **state)
{
    fx *f = *state;
    uint64_t job = 0;
    int who[3];
    assert_int_equal(submit_k(f, 3, MAX_COST, &job), RZ_OK);
    /* Three holds of the maximum. */
    assert_int_equal(acct(f, f->client).debits_pending, 3 * MAX_COST);
    assert_int_equal(info(f, job).replicas, 3);
    assert_int_equal(info(f, job).max_cost_micros, 3 * MAX_COST);
    assert_int_equal(info(f, job + 1).replica_of, job);
    assert_int_equal(info(f, job + 1).max_cost_micros, 0);
    take_runs(f, job, 3, who);
    assert_int_equal(report(f, who[0], job, "{\"y\":42}", NULL, 2000), RZ_OK);
    assert_int_equal(report(f, who[2], job + 2, "{\"y\":666}", NULL, 2000), RZ_OK);
    /* Not decided yet: nothing paid, the job still runs. */
    assert_int_equal(info(f, job).state, RZ_JOB_RUNNING);
    assert_int_equal(earned(f, f->node[who[0]]), 0);
    check(f);
    /* Another report of a voted run changes nothing. */
    assert_int_equal(report(f, who[2], job + 2, "{\"y\":667}", NULL, 2001),
                     RZ_ESTATE);
    efx_reopen(f);
    check(f);
    assert_int_equal(rz_engine_node_heartbeat(f->e, f->node[who[1]], 2100, 0),
                     RZ_OK);
    assert_int_equal(report(f, who[1], job + 1, "{\"y\":42}", NULL, 2200), RZ_OK);
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_string_equal(ji.outputs_json, "{\"y\":42}");
    /* Two runs of 1 s at 36 micros; fee 5% (1.8 -> 2): 34 each node. */
    assert_int_equal(ji.cost_micros, 2 * 36);
    assert_int_equal(earned(f, f->node[who[0]]), 34);
    assert_int_equal(earned(f, f->node[who[1]]), 34);
    assert_int_equal(earned(f, f->node[who[2]]), 0);
    rz_ledger_account c = acct(f, f->client);
    assert_int_equal(c.debits_pending, 0);
    assert_int_equal(c.debits_posted, 2 * 36);
    rz_engine_replica_run r[5];
    assert_int_equal(rz_engine_job_replicas(f->e, job + 2, r, 5), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].job, job + (uint64_t)i);
        assert_int_equal(r[i].node, f->node[who[i]]);
        assert_string_equal(r[i].verdict, i == 2 ? "disagreed" : "agreed");
        assert_int_equal(r[i].cost_micros, i == 2 ? 0 : 36);
        assert_true(r[i].has_digest);
    }
    assert_memory_not_equal(r[0].digest, r[2].digest, 32);
    assert_memory_equal(r[0].digest, r[1].digest, 32);
    rz_engine_node_trust t;
    assert_int_equal(rz_engine_node_trust_get(f->e, f->node[who[2]], &t), RZ_OK);
    assert_int_equal(t.record.disagreed, 1);
    assert_int_equal(t.record.succeeded, 0);
    assert_true(t.reputation < 1.0);
    assert_int_equal(rz_engine_node_trust_get(f->e, f->node[who[0]], &t), RZ_OK);
    assert_int_equal(t.record.succeeded, 1);
    assert_int_equal(t.record.disagreed, 0);
    check(f);
    efx_reopen(f);
    check(f);
    assert_int_equal(info(f, job).cost_micros, 2 * 36);
    assert_int_equal(info(f, job + 1).cost_micros, 0);   /* counted once */
}

/* The client's run is the liar: the job still succeeds with the
 * majority's outputs, its run is not paid. */
static void test_head_disagrees(void **state)
{
    fx *f = *state;
    int who[3];
    static const char *const outs[] = {"{\"y\":0}", "{\"y\":1}", "{\"y\":1}"};
    uint64_t job = voted(f, 3, outs, who);
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_string_equal(ji.outputs_json, "{\"y\":1}");
    assert_int_equal(ji.cost_micros, 2 * 36);
    assert_int_equal(earned(f, f->node[who[0]]), 0);
    check(f);
}

/* Two runs that differ: no majority, the job fails saying so, nobody is
 * paid, nobody's record is blamed, every hold is refunded. */
static void test_no_majority(void **state)
{
    fx *f = *state;
    int who[2];
    static const char *const outs[] = {"{\"y\":1}", "{\"y\":2}"};
    uint64_t job = voted(f, 2, outs, who);
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_non_null(strstr(ji.error, "no majority among 2 replicas"));
    assert_int_equal(ji.cost_micros, 0);
    rz_ledger_account c = acct(f, f->client);
    assert_int_equal(c.debits_pending + c.debits_posted, 0);
    assert_int_equal(earned(f, f->node[who[0]]) + earned(f, f->node[who[1]]), 0);
    rz_engine_node_trust t;
    assert_int_equal(rz_engine_node_trust_get(f->e, f->node[who[0]], &t), RZ_OK);
    assert_int_equal(t.record.disagreed + t.record.succeeded, 0);
    check(f);
}

/* A run that fails (an error) is not paid; the two that agree are: 2 of
 * 3 is a majority. A run whose nodes are lost too often is a failed vote
 * too. */
static void test_failed_run(void **state)
{
    fx *f = *state;
    int who[3];
    static const char *const outs[] = {NULL, "{\"y\":1}", "{\"y\":1}"};
    uint64_t job = voted(f, 3, outs, who);
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_string_equal(ji.outputs_json, "{\"y\":1}");
    assert_int_equal(ji.cost_micros, 2 * 36);
    assert_int_equal(earned(f, f->node[who[0]]), 0);
    assert_int_equal(acct(f, f->client).debits_posted, 2 * 36);
    check(f);
    /* A job of 2 whose second run's nodes go twice (max_attempts 2) has
     * one vote of outputs out of 2: no majority, all refunded. */
    uint64_t j2 = 0;
    int w2[2];
    assert_int_equal(submit_k(f, 2, MAX_COST, &j2), RZ_OK);
    take_runs(f, j2, 2, w2);
    assert_int_equal(report(f, w2[0], j2, "{\"y\":1}", NULL, 3000), RZ_OK);
    assert_int_equal(rz_engine_node_deregister(f->e, f->node[w2[1]], 3001), RZ_OK);
    check(f);
    int again = -1;
    for (int n = 0; n < 4 && again < 0; n++)
        if (n != w2[1] && take(f, n, 3002, NULL) == j2 + 1)
            again = n;
    assert_true(again >= 0 && again != w2[0]);   /* never where run 1 ran */
    assert_int_equal(rz_engine_node_deregister(f->e, f->node[again], 3003), RZ_OK);
    ji = info(f, j2);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_non_null(strstr(ji.error, "no majority"));
    assert_int_equal(acct(f, f->client).debits_posted, 2 * 36);
    assert_int_equal(acct(f, f->client).debits_pending, 0);
    check(f);
}

/* Cancelling the job (or any run) refunds every run. Too little money for
 * k holds: nothing is held. A count outside 2..5 is refused. */
static void test_cancel_and_bounds(void **state)
{
    fx *f = *state;
    uint64_t job = 0;
    int who[3];
    assert_int_equal(submit_k(f, 3, MAX_COST, &job), RZ_OK);
    take_runs(f, job, 3, who);
    assert_int_equal(report(f, who[0], job, "{\"y\":1}", NULL, 2000), RZ_OK);
    assert_int_equal(rz_engine_job_cancel(f->e, job + 2, 2001), RZ_OK);
    for (uint64_t i = 0; i < 3; i++)
        assert_int_equal(info(f, job + i).state, RZ_JOB_CANCELLED);
    rz_ledger_account c = acct(f, f->client);
    assert_int_equal(c.debits_pending + c.debits_posted, 0);
    check(f);
    uint64_t id = 0;
    assert_int_equal(submit_k(f, 5, CREDIT / 4, &id), RZ_EFUNDS);
    assert_int_equal(acct(f, f->client).debits_pending, 0);
    assert_int_equal(submit_k(f, 6, MAX_COST, &id), RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "replicas must be 2 to 5"));
    check(f);
}

/* The verdict takes nothing more from the client: a set that holds all
 * its money is still decided, its agreeing runs paid. */
static void test_verdict_needs_no_more(void **state)
{
    fx *f = *state;
    uint64_t job = 0;
    int who[3];
    assert_int_equal(submit_k(f, 3, CREDIT / 3, &job), RZ_OK);
    take_runs(f, job, 3, who);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(report(f, who[i], job + i, "{\"y\":1}", NULL, 2000), RZ_OK);
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_int_equal(ji.cost_micros, 3 * 36);
    assert_int_equal(earned(f, f->node[who[0]]), 34);
    assert_int_equal(acct(f, f->client).debits_posted, 3 * 36);
    check(f);
}

/* A decided set leaves memory like any finished job (engine_impl.h): the
 * job and its five runs read back from the store answer as before the
 * verdict left memory, and after a reopen; the job's own answer survives
 * the reads of its runs (rz_engine_job_get). */
static void same_answers(fx *f, uint64_t job, const rz_engine_replica_run *want)
{
    rz_engine_job_info ji = info(f, job);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_string_equal(ji.outputs_json, "{\"y\":1}");
    assert_int_equal(ji.replicas, 5);
    assert_int_equal(ji.cost_micros, 4 * 36);
    assert_int_equal(ji.max_cost_micros, 5 * MAX_COST);
    rz_engine_job_info liar = info(f, job + 4);
    assert_int_equal(liar.state, RZ_JOB_FAILED);
    assert_int_equal(liar.replica_of, job);
    assert_non_null(strstr(liar.error, "differ from the majority"));
    rz_engine_replica_run r[5];
    assert_int_equal(rz_engine_job_replicas(f->e, job + 4, r, 5), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].job, want[i].job);
        assert_int_equal(r[i].node, want[i].node);
        assert_int_equal(r[i].state, want[i].state);
        assert_string_equal(r[i].verdict, want[i].verdict);
        assert_int_equal(r[i].cost_micros, want[i].cost_micros);
        assert_memory_equal(r[i].digest, want[i].digest, 32);
    }
    assert_int_equal(rz_engine_job_cancel(f->e, job + 1, 4000), RZ_ESTATE);
    check(f);
}

static void test_decided_set_leaves_memory(void **state)
{
    fx *f = *state;
    uint64_t fifth = 0, job = 0;
    assert_int_equal(rz_engine_node_register(f->e, CAPS, strlen(CAPS), 1,
                                             &fifth), RZ_OK);
    assert_int_equal(submit_k(f, 5, MAX_COST, &job), RZ_OK);
    uint64_t nodes[5] = { f->node[0], f->node[1], f->node[2], f->node[3], fifth };
    for (int n = 0; n < 5; n++) {
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(f->e, nodes[n], 20, &a), RZ_OK);
        rz_engine_report r = RZ_ENGINE_REPORT_INIT;
        r.attempt = 1;
        r.outputs_json = a.job == job + 4 ? "{\"y\":2}" : "{\"y\":1}";
        r.run_ms = 1000;
        assert_int_equal(rz_engine_report_result(f->e, nodes[n], a.job, &r,
                                                 2000, NULL), RZ_OK);
        /* Undecided: every run is open and in memory. */
        for (uint64_t i = 0; n < 4 && i < 5; i++)
            assert_non_null(rz__engine_job(f->e, job + i));
    }
    rz_engine_replica_run want[5];
    assert_int_equal(rz_engine_job_replicas(f->e, job, want, 5), 5);
    assert_string_equal(want[4].verdict, "disagreed");
    same_answers(f, job, want);
    /* The verdict's commit, its payments' commit: then they leave. */
    assert_int_equal(rz_engine_tick(f->e, 3000), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 3001), RZ_OK);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    same_answers(f, job, want);
    efx_reopen(f);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    same_answers(f, job, want);
}

/* A write that failed leaves the engine, or its ledger, refusing more
 * (a ledger answers RZ_ESTATE to everything until reopened). */
static bool broken(fx *f)
{
    rz_ledger_account a;
    return f->e->broken ||
           rz_ledger_balance(rz_engine_ledger(f->e), f->client, &a) == RZ_ESTATE;
}

/* A fresh fixture once the store has grown: most failure points end in a
 * reopen, whose first check reads every stored record. */
static fx *fresh_when_big(void **state)
{
    fx *f = *state;
    if (f->e->n_jobs < 120)
        return f;
    teardown(state);
    assert_int_equal(setup(state), 0);
    return *state;
}

/* Which allocation fails next: every one failing once; from there on,
 * every one of the first 40, then spread (each such run ends in a
 * reopen, which reads the whole store: bounded for CI). */
static long next_try(long n, int persist)
{
    return !persist || n < 40 ? n + 1 : n + 1 + n / 16;
}

/* Memory running out at any allocation of a replicated submission (once,
 * or from there on): an error with nothing held and nothing left for the
 * next commit to trip on (it wrote the freed runs' ids before), or the
 * set a clean run makes. A failed write leaves the engine (or its ledger)
 * broken, as engine.h says: the reopen refunds what it held. */
static void test_submit_out_of_memory(void **state)
{
    fx *f = *state;
    for (int persist = 0; persist <= 1; persist++) {
        long n = 1, calls = 0, failed = 0;
        for (; n < 5000; n = next_try(n, persist)) {
            uint64_t last = f->e->n_jobs;
            uint64_t job = 0;
            rz__alloc_fail_at(n, persist);
            int rc = submit_k(f, 3, MAX_COST, &job);
            calls = rz__alloc_calls();
            rz__alloc_fail_at(0, false);
            if (rc == RZ_OK) {
                assert_int_equal(rz_engine_job_cancel(f->e, job, 30), RZ_OK);
            } else if (broken(f)) {
                efx_reopen(f);
            } else {
                /* No job of it anywhere: the ids are free again. */
                assert_int_equal(f->e->n_jobs, last);
                assert_null(rz__engine_job(f->e, last + 1));
                assert_int_equal(rz_engine_tick(f->e, 11), RZ_OK);
            }
            failed += rc != RZ_OK;
            assert_int_equal(acct(f, f->client).debits_pending, 0);
            check_quick(f);
            if (calls < n)
                break;   /* the whole submission ran before the failure */
            f = fresh_when_big(state);
        }
        assert_true(calls < n && failed > 10);
        check(f);
    }
}

/* Memory running out at any allocation of the vote that decides a set:
 * the verdict is applied whole or not at all (rz_engine_check refuses a
 * set decided in part), and the node's report sent again decides it (a
 * set with every vote and no verdict must not stay stuck, its money held
 * and its nodes unpaid). */
static void test_verdict_out_of_memory(void **state)
{
    fx *f = *state;
    for (int persist = 0; persist <= 1; persist++) {
        long n = 1, calls = 0, failed = 0;
        for (; n < 5000; n = next_try(n, persist)) {
            uint64_t job = 0;
            int who[3];
            assert_int_equal(submit_k(f, 3, MAX_COST, &job), RZ_OK);
            take_runs(f, job, 3, who);
            assert_int_equal(report(f, who[0], job, "{\"y\":1}", NULL, 2000), RZ_OK);
            assert_int_equal(report(f, who[1], job + 1, "{\"y\":2}", NULL, 2000),
                             RZ_OK);
            rz__alloc_fail_at(n, persist);
            int rc = report(f, who[2], job + 2, "{\"y\":1}", NULL, 2000);
            calls = rz__alloc_calls();
            rz__alloc_fail_at(0, false);
            failed += rc != RZ_OK;
            if (broken(f)) {
                efx_reopen(f);
            }
            check_quick(f);
            rz_engine_job_info ji = info(f, job);
            if (ji.state != RZ_JOB_SUCCEEDED) {
                assert_int_equal(report(f, who[2], job + 2, "{\"y\":1}", NULL, 2000),
                                 RZ_OK);
                ji = info(f, job);
            }
            assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
            assert_string_equal(ji.outputs_json, "{\"y\":1}");
            assert_non_null(strstr(info(f, job + 1).error, "differ"));
            assert_int_equal(rz_engine_tick(f->e, 2002), RZ_OK);
            assert_int_equal(acct(f, f->client).debits_pending, 0);
            check_quick(f);
            if (calls < n)
                break;
            f = fresh_when_big(state);
        }
        assert_true(calls < n && failed > 5);
        check(f);
    }
}

int main(void)
{
    /* cJSON's allocations fail too (test_submit_out_of_memory). */
    cJSON_Hooks hooks = {rz__malloc, free};
    cJSON_InitHooks(&hooks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_liar_not_paid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_disagrees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_majority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_needs_no_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decided_set_leaves_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_submit_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
