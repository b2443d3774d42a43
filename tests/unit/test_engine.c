/* The engine: jobs with exact escrow, lost nodes, stale and duplicate
 * results, deployments (fan-out/fan-in, retries, when, timeouts, cancel),
 * restart after close and after SIGKILL, hostile input; group commit and
 * shared requirements. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "ledger/ledger_impl.h"
#include "run/changes.h"
#include "rhizos/engine.h"
#include "rhizos/module.h"
#include "helpers.h"
#include "engine_fixture.h"

/* 36000 micros per core-hour: 10 s on 2 cores costs exactly 200 micros. */
#define NODE_CAPS EFX_NODE_CAPS

typedef efx fx;

static int setup(void **state)
{
    static const efx_module mods[] = {
        { "split", EFX_TEXT_IN, "[{\"name\":\"left\",\"type\":\"string\"},"
          "{\"name\":\"right\",\"type\":\"string\"}]", NULL, NULL },
        EFX_COUNT,
        { "svc", EFX_TEXT_IN, "[]", NULL, NULL },
        { "merge", "[{\"name\":\"x\",\"type\":\"any\"},"
          "{\"name\":\"y\",\"type\":\"any\"}]",
          "[{\"name\":\"sum\",\"type\":\"integer\"}]", NULL, NULL },
    };
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 1000;
    o.ref_cpu_hour_micros = 36000;   /* 10 s x 200% on 1 core: 200 micros */
    /* These tests step the clock by a few ms around runs of seconds; the
     * bound of the run time by the clock has its own test
     * (test_run_time_bounded). */
    o.run_tolerance_ms = UINT64_MAX / 2;
    /* cJSON's allocations fail too: the engine's records are printed
     * through it, so the out-of-memory loops reach a commit's writers. */
    cJSON_Hooks hooks = { rz__malloc, free };
    cJSON_InitHooks(&hooks);
    *state = efx_new("engine", mods, sizeof mods / sizeof mods[0], &o, 10000);
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static uint64_t node_add(fx *f, uint64_t now)
{
    uint64_t id = efx_node_add(f, NODE_CAPS, now);
    assert_true(id > 0);
    return id;
}

static uint64_t submit(fx *f, uint64_t max, int32_t prio, uint64_t now)
{
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = "{\"cpu_cores\":2,\"estimate_seconds\":10}";
    s.module_id = "count";
    s.module_version = "1.0.0";
    s.request_json = "{\"inputs\":{\"text\":\"a b\"},\"config\":{}}";
    s.max_cost_micros = max;
    s.priority = prio;
    uint64_t id = 0;
    int rc = rz_engine_submit(f->e, &s, now, &id);
    if (rc != RZ_OK)
        return 0;
    return id;
}

/* A node and a job of at most `max` handed to it: submitted at `now`,
 * polled at now + 1. The job's id; its node in *node. */
static uint64_t job_running(fx *f, uint64_t max, uint64_t now, uint64_t *node)
{
    *node = node_add(f, 0);
    uint64_t j = submit(f, max, 0, now);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, *node, now + 1, &a), RZ_OK);
    assert_int_equal(a.job, j);
    return j;
}

/* The invariants, and the property that each running deployment read
 * back as a reopen would (its stored flow and events) equals its run in
 * memory: after every call the tests check at. */
static void check(fx *f)
{
    int rc = rz_engine_check(f->e);
    for (size_t i = 0; rc == RZ_OK && i < f->e->n_live_deps; i++)
        rc = rz__engine_dep_readback(f->e, f->e->deps[i]);
    if (rc != RZ_OK)
        fprintf(stderr, "check: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
}

static rz_job_state job_state(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    return ji.state;
}

static void test_settle_exact(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, 0);
    uint64_t j = submit(f, 500, 0, 1);
    assert_true(j > 0);
    assert_int_equal(efx_available(f, f->client), 9500);
    assert_int_equal(job_state(f, j), RZ_JOB_QUEUED);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2, &a), RZ_OK);
    assert_int_equal(a.job, j);
    assert_int_equal(a.attempt, 1);
    assert_string_equal(a.module_id, "count");
    assert_non_null(strstr(a.request_json, "a b"));
    assert_int_equal(job_state(f, j), RZ_JOB_RUNNING);
    check(f);
    assert_int_equal(rz_engine_poll(f->e, n, 3, &a), RZ_ENOENT);
    assert_int_equal(node_report(f->e, n, j, 1, "{\"n\":2}", NULL, 10000, 4),
                     RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_int_equal(ji.cost_micros, 200);
    assert_string_equal(ji.outputs_json, "{\"n\":2}");
    /* Client pays the actual cost, node 95%, platform 5%. */
    assert_int_equal(efx_available(f, f->client), 9800);
    assert_int_equal(efx_available(f, rz_engine_node_account(n)), 190);
    assert_int_equal(efx_available(f, RZ_LEDGER_PLATFORM_ID), 10);
    rz_engine_event ev;
    int seen_assign = 0, seen_finish = 0;
    while (rz_engine_next_event(f->e, &ev)) {
        seen_assign += ev.type == RZ_EV_JOB_ASSIGNED && ev.job == j && ev.node == n;
        seen_finish += ev.type == RZ_EV_JOB_FINISHED && ev.job == j &&
                       ev.state == RZ_JOB_SUCCEEDED;
    }
    assert_int_equal(seen_assign, 1);
    assert_int_equal(seen_finish, 1);
    check(f);
    /* A run longer than the hold is capped at the hold. */
    uint64_t j2 = submit(f, 250, 0, 5);
    assert_int_equal(rz_engine_poll(f->e, n, 6, &a), RZ_OK);
    assert_int_equal(node_report(f->e, n, j2, 1, NULL, NULL, 3600000, 7), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, j2, &ji), RZ_OK);
    assert_int_equal(ji.cost_micros, 250);
    assert_int_equal(efx_available(f, f->client), 9550);
    assert_int_equal(efx_available(f, RZ_LEDGER_PLATFORM_ID), 10 + 13);   /* 12.5 -> 13 */
    /* A hold below the node's estimate is never placed there. */
    uint64_t j3 = submit(f, 150, 0, 8);
    assert_int_equal(rz_engine_poll(f->e, n, 9, &a), RZ_ENOENT);
    assert_int_equal(job_state(f, j3), RZ_JOB_QUEUED);
    check(f);
}

/* The engine bills from its own clock: the time it measured from handing
 * the job over to the report's arrival, bounded by what the node reports
 * (min of the two), never more. */
static void test_run_time_bounded(void **state)
{
    fx *f = *state;
    rz_engine_close(f->e);
    rz_engine_opts o = f->opts;
    o.run_tolerance_ms = 0;   /* the default: none */
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    uint64_t n = node_add(f, 1000);
    uint64_t j = submit(f, 500, 0, 1000);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2000, &a), RZ_OK);
    /* 2^53 ms claimed half a second later: billed the 0.5 s measured. */
    assert_int_equal(node_report(f->e, n, j, 1, "{\"n\":1}", NULL,
                                 (uint64_t)1 << 53, 2500), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_int_equal(ji.run_ms, 500);
    /* 2 cores at 36000 micros/h: 0.5 s is 10 micros, far below the hold. */
    assert_int_equal(ji.cost_micros, 10);
    assert_int_equal(efx_available(f, f->client), 10000 - 10);
    /* One millisecond more than measured is not billed either. */
    uint64_t x = submit(f, 500, 0, 2500);
    assert_int_equal(rz_engine_poll(f->e, n, 2600, &a), RZ_OK);
    assert_int_equal(a.job, x);
    assert_int_equal(node_report(f->e, n, x, 1, "{\"n\":1}", NULL, 1001,
                                 3600), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, x, &ji), RZ_OK);
    assert_int_equal(ji.run_ms, 1000);
    /* The hand-over time is stored: a reopen keeps the measure. */
    uint64_t k = submit(f, 500, 0, 3000);
    assert_int_equal(rz_engine_poll(f->e, n, 4000, &a), RZ_OK);
    assert_int_equal(a.job, k);
    rz_engine_close(f->e);
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 5000, 0), RZ_OK);
    assert_int_equal(node_report(f->e, n, k, 1, "{\"n\":1}", NULL, 3600000,
                                 14000), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, k, &ji), RZ_OK);
    assert_int_equal(ji.run_ms, 10000);
    /* A node that ran less than the engine saw (the network, its queue)
     * bills what it reports. */
    uint64_t m = submit(f, 500, 0, 15000);
    assert_int_equal(rz_engine_poll(f->e, n, 16000, &a), RZ_OK);
    assert_int_equal(node_report(f->e, n, m, 1, "{\"n\":1}", NULL, 4000,
                                 20500), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, m, &ji), RZ_OK);
    assert_int_equal(ji.run_ms, 4000);
    /* An explicit allowance adds to the measure, still bounded by the
     * report. */
    rz_engine_close(f->e);
    o.run_tolerance_ms = 250;
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 21000, 0), RZ_OK);
    uint64_t t = submit(f, 500, 0, 21000);
    assert_int_equal(rz_engine_poll(f->e, n, 21000, &a), RZ_OK);
    assert_int_equal(a.job, t);
    assert_int_equal(node_report(f->e, n, t, 1, "{\"n\":1}", NULL, 9999,
                                 22000), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, t, &ji), RZ_OK);
    assert_int_equal(ji.run_ms, 1250);
    check(f);
}

/* A client's open standalone jobs, for a server's per-account limits. */
static void test_client_open(void **state)
{
    fx *f = *state;
    uint64_t jobs = 9, deps = 9;
    rz_engine_client_open(f->e, f->client, &jobs, &deps);
    assert_int_equal(jobs, 0);
    assert_int_equal(deps, 0);
    uint64_t a = submit(f, 100, 0, 1), b = submit(f, 100, 0, 2);
    assert_true(a && b);
    rz_engine_client_open(f->e, f->client, &jobs, NULL);
    assert_int_equal(jobs, 2);
    rz_engine_client_open(f->e, rz_ledger_id_make(7, 99), &jobs, &deps);
    assert_int_equal(jobs, 0);
    assert_int_equal(rz_engine_job_cancel(f->e, a, 3), RZ_OK);
    rz_engine_client_open(f->e, f->client, &jobs, &deps);
    assert_int_equal(jobs, 1);
    assert_int_equal(deps, 0);
}

static void test_failed_job_is_refunded(void **state)
{
    fx *f = *state;
    uint64_t n, j = job_running(f, 700, 1, &n);
    assert_int_equal(node_report(f->e, n, j, 1, NULL, "exit 1", 500, 3), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_string_equal(ji.error, "exit 1");
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static void test_cancel_queued_job_is_refunded_once(void **state)
{
    fx *f = *state;
    uint64_t q = submit(f, 300, 0, 4);
    assert_int_equal(rz_engine_job_cancel(f->e, q, 5), RZ_OK);
    assert_int_equal(rz_engine_job_cancel(f->e, q, 5), RZ_ESTATE);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static void test_cancel_running_job_refuses_its_late_result(void **state)
{
    fx *f = *state;
    uint64_t n, r = job_running(f, 300, 6, &n);
    assert_int_equal(rz_engine_job_cancel(f->e, r, 8), RZ_OK);
    assert_int_equal(node_report(f->e, n, r, 1, "{}", NULL, 10, 9), RZ_ESTATE);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static void test_insufficient_funds_change_nothing(void **state)
{
    fx *f = *state;
    rz_engine_stats before, after;
    rz_engine_stats_get(f->e, &before);
    assert_int_equal(submit(f, 10001, 0, 10), 0);
    assert_int_equal(rz_error_last()->code, RZ_EFUNDS);
    rz_engine_stats_get(f->e, &after);
    assert_memory_equal(before.jobs, after.jobs, sizeof before.jobs);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, 1, &ji), RZ_ENOENT);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static void test_hostile_submit_changes_nothing(void **state)
{
    fx *f = *state;
    rz_engine_stats before, after;
    rz_engine_stats_get(f->e, &before);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.max_cost_micros = 10;
    s.requirements_json = "{\"cpu_cores\": \"many\"";
    uint64_t id;
    assert_int_not_equal(rz_engine_submit(f->e, &s, 11, &id), RZ_OK);
    s.requirements_json = NULL;
    s.request_json = "[1,2]";
    assert_int_not_equal(rz_engine_submit(f->e, &s, 11, &id), RZ_OK);
    s.request_json = NULL;
    s.max_cost_micros = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, 11, &id), RZ_EINVAL);
    s.max_cost_micros = 5;
    s.client = rz_ledger_id_make(99, 99);   /* no such account */
    assert_int_not_equal(rz_engine_submit(f->e, &s, 11, &id), RZ_OK);
    rz_engine_stats_get(f->e, &after);
    assert_memory_equal(before.jobs, after.jobs, sizeof before.jobs);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static void test_hostile_node_calls_change_nothing(void **state)
{
    fx *f = *state;
    uint64_t id;
    assert_int_not_equal(rz_engine_node_register(f->e, "{\"cpu\":", 7, 12, &id), RZ_OK);
    assert_int_equal(rz_engine_node_heartbeat(f->e, 999, 12, 0.5), RZ_ENOENT);
    assert_int_equal(rz_engine_node_count(f->e), 0);
    check(f);
}

static void test_priority_fifo(void **state)
{
    fx *f = *state;
    uint64_t low = submit(f, 500, 0, 1), high = submit(f, 500, 5, 2);
    uint64_t low2 = submit(f, 500, 0, 3);
    uint64_t n = node_add(f, 4);   /* two slots */
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
    assert_int_equal(a.job, high);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
    assert_int_equal(a.job, low);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_ENOENT);
    assert_int_equal(job_state(f, low2), RZ_JOB_QUEUED);
    check(f);
}

static void test_lost_node(void **state)
{
    fx *f = *state;
    uint64_t a, j = job_running(f, 500, 1, &a);
    rz_engine_assignment as;
    uint64_t b = node_add(f, 900);
    assert_int_equal(rz_engine_node_heartbeat(f->e, b, 1500, 0.1), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 1500), RZ_OK);   /* a: silent > 1 s */
    rz_engine_node_info ni;
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_LOST);
    check(f);
    /* Its late result is refused; it must register again. */
    assert_int_equal(node_report(f->e, a, j, 1, "{}", NULL, 10000, 1600), RZ_ESTATE);
    assert_int_equal(rz_engine_poll(f->e, a, 1600, &as), RZ_ESTATE);
    assert_int_equal(rz_engine_poll(f->e, b, 1600, &as), RZ_OK);
    assert_int_equal(as.job, j);
    assert_int_equal(as.attempt, 2);
    assert_int_equal(node_report(f->e, b, j, 2, "{\"n\":1}", NULL, 10000, 1700), RZ_OK);
    assert_int_equal(efx_available(f, f->client), 9800);   /* charged once */
    assert_int_equal(efx_available(f, rz_engine_node_account(b)), 190);
    assert_int_equal(efx_available(f, rz_engine_node_account(a)), 0);
    size_t nt = 0, total = 0;
    rz_ledger_transfer t[8];
    assert_int_equal(rz_ledger_job_transfers(rz_engine_ledger(f->e),
                     rz_engine_job_ledger_id(j), t, 8, &nt, &total), RZ_OK);
    assert_int_equal(total, 4);   /* hold, settle, payout, fee */
    check(f);
    /* Deregistering puts a node's jobs back too. */
    uint64_t k = submit(f, 500, 0, 1800);
    assert_int_equal(rz_engine_poll(f->e, b, 1800, &as), RZ_OK);
    assert_int_equal(rz_engine_node_deregister(f->e, b, 1801), RZ_OK);
    assert_int_equal(job_state(f, k), RZ_JOB_QUEUED);
    check(f);
}

/* A node that says its attempt ended gets its next job before the result
 * (the attempt no longer holds its reservation, but stays the node's); a
 * reopen between the two reserves only what runs; the result is taken and
 * paid once after it; a lost node's attempt with its result due is
 * requeued as any of its jobs. */
static void test_result_due_frees_the_slot(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, 0);   /* room for two jobs */
    uint64_t j[4];
    for (int i = 0; i < 4; i++)
        j[i] = submit(f, 500, 0, 1);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, n, 2, &as), RZ_OK);
    assert_int_equal(as.job, j[0]);
    assert_int_equal(rz_engine_poll(f->e, n, 2, &as), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 3, &as), RZ_ENOENT);
    assert_int_equal(rz_engine_node_ended(f->e, n, j[0], 2, 3), RZ_ESTATE);
    assert_int_equal(rz_engine_node_ended(f->e, n, j[2], 1, 3), RZ_ESTATE);
    assert_int_equal(rz_engine_node_ended(f->e, n + 1, j[0], 1, 3), RZ_ENOENT);
    assert_int_equal(rz_engine_node_ended(f->e, n, j[0], 1, 4), RZ_OK);
    assert_int_equal(rz_engine_node_ended(f->e, n, j[0], 1, 4), RZ_OK);
    check(f);
    assert_int_equal(job_state(f, j[0]), RZ_JOB_RUNNING);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &as), RZ_OK);
    assert_int_equal(as.job, j[2]);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &as), RZ_ENOENT);
    rz_engine_node_info ni;
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_node_get(f->e, n, &ni), RZ_OK);
    assert_int_equal(ni.jobs, 3);   /* two running, one result due */
    check(f);
    efx_reopen(f);
    check(f);
    assert_int_equal(rz_engine_poll(f->e, n, 6, &as), RZ_ENOENT);
    assert_int_equal(node_report(f->e, n, j[0], 1, "{\"n\":2}", NULL, 10000, 7),
                     RZ_OK);
    assert_int_equal(job_state(f, j[0]), RZ_JOB_SUCCEEDED);
    assert_int_equal(rz_engine_poll(f->e, n, 7, &as), RZ_ENOENT);
    check(f);
    /* Lost with a result due: back to the queue, its hold kept. */
    assert_int_equal(rz_engine_node_ended(f->e, n, j[1], 1, 8), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 8, &as), RZ_OK);
    assert_int_equal(as.job, j[3]);
    uint64_t b = node_add(f, 1500);
    assert_int_equal(rz_engine_tick(f->e, 1500), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, j[1], &ji), RZ_OK);
    assert_true(ji.state == RZ_JOB_ASSIGNED && ji.node == b && ji.attempt == 2);
    assert_int_equal(node_report(f->e, n, j[1], 1, "{\"n\":2}", NULL, 10000, 1501),
                     RZ_ESTATE);
    check(f);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(rz_engine_poll(f->e, b, 1600, &as), RZ_OK);
        assert_int_equal(node_report(f->e, b, as.job, as.attempt, "{\"n\":2}",
                                     NULL, 10000, 1600), RZ_OK);
    }
    check(f);
    assert_int_equal(efx_available(f, f->client), 10000 - 4 * 200);
    assert_int_equal(efx_available(f, rz_engine_node_account(n)), 190);
}

/* A node has at most max_concurrent_jobs results due: one that never
 * sends them cannot take the whole queue. */
static void test_results_due_bounded(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, 0);   /* max_concurrent_jobs 2 */
    uint64_t j[5];
    for (int i = 0; i < 5; i++)
        j[i] = submit(f, 500, 0, 1);
    rz_engine_assignment as;
    for (int i = 0; i < 2; i++)
        assert_int_equal(rz_engine_poll(f->e, n, 2, &as), RZ_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rz_engine_node_ended(f->e, n, j[i], 1, 3), RZ_OK);
        assert_int_equal(rz_engine_poll(f->e, n, 3, &as), RZ_OK);
        assert_int_equal(as.job, j[2 + i]);
    }
    assert_int_equal(rz_engine_node_ended(f->e, n, j[2], 1, 4), RZ_ESTATE);
    assert_int_equal(rz_engine_poll(f->e, n, 4, &as), RZ_ENOENT);
    check(f);
    assert_int_equal(node_report(f->e, n, j[0], 1, "{\"n\":2}", NULL, 10000, 5),
                     RZ_OK);
    assert_int_equal(rz_engine_node_ended(f->e, n, j[2], 1, 5), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &as), RZ_OK);
    assert_int_equal(as.job, j[4]);
    check(f);
}

/* A node that says every attempt ended and sends no result: its results
 * due are bounded by its reservations, not by the max_concurrent_jobs it
 * declares, so it holds twice what its cores allow, not the queue. */
static void test_results_due_bounded_by_reservations(void **state)
{
    fx *f = *state;
    uint64_t n = efx_node_add(f, "{\"cpu\":{\"cores\":4,\"threads\":8},"
        "\"memory_mb\":8192,\"storage\":{\"total_gb\":100,\"free_gb\":100},"
        "\"adapters\":[\"process\"],\"prices\":{\"gpu_hour_micros\":0,"
        "\"cpu_hour_micros\":36000,\"memory_gb_hour_micros\":0},"
        "\"max_concurrent_jobs\":100000}", 0);   /* 2 jobs of 2 cores at once */
    assert_true(n > 0);
    for (int i = 0; i < 20; i++)
        assert_true(submit(f, 500, 0, 1) > 0);
    rz_engine_assignment as;
    int taken = 0;
    for (int i = 0; i < 40; i++) {
        if (rz_engine_poll(f->e, n, 2, &as) != RZ_OK)
            continue;
        taken++;
        (void)!rz_engine_node_ended(f->e, n, as.job, as.attempt, 2);
    }
    assert_int_equal(taken, 4);
    check(f);
}

static void test_stale_duplicate(void **state)
{
    fx *f = *state;
    uint64_t a = node_add(f, 0), b = node_add(f, 0);
    uint64_t j = submit(f, 500, 0, 1);
    rz_engine_assignment as;
    uint64_t holder = rz_engine_poll(f->e, a, 2, &as) == RZ_OK ? a : b;
    if (holder == b)
        assert_int_equal(rz_engine_poll(f->e, b, 2, &as), RZ_OK);
    uint64_t other = holder == a ? b : a;
    assert_int_equal(node_report(f->e, other, j, 1, "{}", NULL, 10000, 3), RZ_ESTATE);
    assert_int_equal(node_report(f->e, holder, j, 2, "{}", NULL, 10000, 3), RZ_ESTATE);
    assert_int_equal(node_report(f->e, holder, 999, 1, "{}", NULL, 1, 3), RZ_ENOENT);
    assert_int_equal(node_report(f->e, holder, j, 1, "{\"n\":3}", NULL, 10000, 4), RZ_OK);
    /* The same report again changes nothing (and says it was a repeat);
     * the same attempt with other content is refused. */
    int repeat = 0;
    rz_engine_report same = RZ_ENGINE_REPORT_INIT;
    same.attempt = 1;
    same.outputs_json = "{\"n\":3}";
    same.run_ms = 10000;
    assert_int_equal(rz_engine_report_result(f->e, holder, j, &same, 5, &repeat),
                     RZ_OK);
    assert_int_equal(repeat, 1);
    assert_int_equal(node_report(f->e, holder, j, 1, NULL, "late", 1, 6), RZ_ESTATE);
    rz_engine_report other_outputs = same;
    other_outputs.outputs_json = "{\"n\":4}";
    assert_int_equal(rz_engine_report_result(f->e, holder, j, &other_outputs, 6,
                                             &repeat), RZ_ESTATE);
    assert_int_equal(repeat, 0);
    assert_int_equal(node_report(f->e, holder, j, 1, "{\"n\":3}", NULL, 10001, 6), RZ_ESTATE);
    assert_int_equal(job_state(f, j), RZ_JOB_SUCCEEDED);
    assert_int_equal(efx_available(f, f->client), 9800);
    rz_engine_stats st;
    rz_engine_stats_get(f->e, &st);
    assert_int_equal(st.results_rejected, 5);
    /* The accepted report's digest is kept with the job. */
    efx_reopen(f);
    assert_int_equal(node_report(f->e, holder, j, 1, "{\"n\":3}", NULL, 10000, 7), RZ_OK);
    assert_int_equal(node_report(f->e, holder, j, 1, "{\"n\":5}", NULL, 10000, 7), RZ_ESTATE);
    assert_int_equal(job_state(f, j), RZ_JOB_SUCCEEDED);
    /* Outputs that are not an object fail the job (refunded). */
    uint64_t k = submit(f, 500, 0, 7);
    assert_int_equal(rz_engine_poll(f->e, holder, 8, &as), RZ_OK);
    assert_int_equal(node_report(f->e, holder, k, 1, "[1]", NULL, 10, 9), RZ_OK);
    assert_int_equal(job_state(f, k), RZ_JOB_FAILED);
    /* Its repeat is recognised by what was sent, not what was stored. */
    rz_engine_report not_object = RZ_ENGINE_REPORT_INIT;
    not_object.attempt = 1;
    not_object.outputs_json = "[1]";
    not_object.run_ms = 10;
    assert_int_equal(rz_engine_report_result(f->e, holder, k, &not_object, 10,
                                             &repeat), RZ_OK);
    assert_int_equal(repeat, 1);
    /* A report of another version is refused before anything is read. */
    not_object.version = RZ_ENGINE_REPORT_VERSION + 1;
    assert_int_equal(rz_engine_report_result(f->e, holder, k, &not_object, 10,
                                             &repeat), RZ_EINVAL);
    assert_int_equal(repeat, 0);
    assert_int_equal(rz_engine_report_result(f->e, holder, k, NULL, 10, NULL),
                     RZ_EINVAL);
    assert_int_equal(efx_available(f, f->client), 9800);
    check(f);
}

/* ---- deployments ---- */

static const char *FANOUT =
    "flux: 1\n"
    "name: fan\n"
    "inputs:\n"
    "  text: {type: string, required: true}\n"
    "steps:\n"
    "  split:\n"
    "    module: split@1.0.0\n"
    "    inputs: {text: \"${{ inputs.text }}\"}\n"
    "  a:\n"
    "    module: count@1.0.0\n"
    "    needs: [split]\n"
    "    inputs: {text: \"${{ steps.split.outputs.left }}\"}\n"
    "    retry: {max_attempts: 2, backoff: fixed, initial_ms: 100}\n"
    "  b:\n"
    "    module: count@1.0.0\n"
    "    needs: [split]\n"
    "    inputs: {text: \"${{ steps.split.outputs.right }}\"}\n"
    "  merge:\n"
    "    module: merge@1.0.0\n"
    "    needs: [a, b]\n"
    "    when: steps.a.outputs.n > 0\n"
    "    inputs: {x: \"${{ steps.a.outputs.n }}\", y: \"${{ steps.b.outputs.n }}\"}\n"
    "  never:\n"
    "    module: merge@1.0.0\n"
    "    needs: [a]\n"
    "    when: steps.a.outputs.n > 100\n"
    "    inputs: {x: 1, y: 2}\n";

static int words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        n += !in && *s != ' ';
        in = *s != ' ';
    }
    return n;
}

/* What the modules do, computed from the request the engine built. */
static char *module_outputs(const rz_engine_assignment *a)
{
    cJSON *req = cJSON_Parse(a->request_json);
    cJSON *in = cJSON_GetObjectItem(req, "inputs");
    char buf[512];
    if (strcmp(a->module_id, "split") == 0) {
        const char *t = cJSON_GetObjectItem(in, "text")->valuestring;
        size_t half = strlen(t) / 2;
        while (t[half] && t[half] != ' ')
            half++;
        snprintf(buf, sizeof buf, "{\"left\":\"%.*s\",\"right\":\"%s\"}",
                 (int)half, t, t[half] ? t + half + 1 : "");
    } else if (strcmp(a->module_id, "count") == 0) {
        snprintf(buf, sizeof buf, "{\"n\":%d}",
                 words(cJSON_GetObjectItem(in, "text")->valuestring));
    } else {
        snprintf(buf, sizeof buf, "{\"sum\":%d}",
                 cJSON_GetObjectItem(in, "x")->valueint +
                 cJSON_GetObjectItem(in, "y")->valueint);
    }
    cJSON_Delete(req);
    return strdup(buf);
}

/* Poll every node and answer each assignment; `fail_step` fails its first
 * attempt. Returns how many jobs were run. */
static int drive(fx *f, const uint64_t *nodes, size_t n, uint64_t now,
                 const char *fail_step)
{
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        rz_engine_assignment a;
        while (rz_engine_poll(f->e, nodes[i], now, &a) == RZ_OK) {
            uint64_t job = a.job;
            uint32_t att = a.attempt;
            int fail = fail_step && strcmp(a.step, fail_step) == 0 && att == 1;
            char *out = fail ? NULL : module_outputs(&a);
            assert_int_equal(node_report(f->e, nodes[i], job, att, out,
                                    fail ? "flaky" : NULL, 10000, now), RZ_OK);
            free(out);
            ran++;
            check(f);
        }
    }
    return ran;
}

static uint64_t deploy(fx *f, const char *text, uint64_t now)
{
    return efx_deploy(f, text, "{\"text\":\"one two three four five\"}", now);
}

/* Client paid the sum of the jobs' costs; nodes 95%, platform 5% of each. */
static void assert_money(fx *f, uint64_t first_job, uint64_t last_job,
                         const uint64_t *nodes, size_t n)
{
    uint64_t total = 0, fees = 0, paid = 0;
    for (uint64_t j = first_job; j <= last_job; j++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
        total += ji.cost_micros;
        fees += rz_ledger_fee(ji.cost_micros, 500);
    }
    for (size_t i = 0; i < n; i++)
        paid += efx_available(f, rz_engine_node_account(nodes[i]));
    assert_int_equal(efx_available(f, f->client), 10000 - total);
    assert_int_equal(paid, total - fees);
    assert_int_equal(efx_available(f, RZ_LEDGER_PLATFORM_ID), fees);
}

/* The status as one cJSON tree printed whole (how the engine built it
 * before it wrote it step by step): the text must be the same. */
static void assert_status_as_tree(fx *f, uint64_t dep)
{
    const rz__edep *d = rz__engine_dep(f->e, dep);
    assert_non_null(d);
    assert_non_null(d->run);
    cJSON *doc = rz__run_json(d->run);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "id");
    cJSON_AddNumberToObject(doc, "id", (double)d->id);
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
    for (cJSON *s = steps->child; s; s = s->next) {
        size_t i = rz_flow_step_find(d->flow, s->string);
        const rz__ejob *j = rz__engine_job(f->e, d->first_job + i);
        cJSON_AddStringToObject(s, "module", rz_flow_step_module(d->flow, i));
        size_t nd = 0;
        const size_t *deps = rz_flow_step_deps(d->flow, i, &nd);
        cJSON *needs = cJSON_AddArrayToObject(s, "needs");
        for (size_t k = 0; k < nd; k++)
            cJSON_AddItemToArray(needs, cJSON_CreateString(rz_flow_step_id(d->flow, deps[k])));
        cJSON_AddNumberToObject(s, "job", (double)j->id);
        cJSON_AddStringToObject(s, "job_status", rz_job_state_name(j->state));
        cJSON_AddNumberToObject(s, "dispatches", (double)j->attempt);
        if (rz__engine_waiting_reason(j))
            cJSON_AddStringToObject(s, "waiting_reason",
                                    rz__engine_waiting_reason(j));
    }
    char *want = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    char *got = NULL;
    assert_int_equal(rz_engine_deployment_status(f->e, dep, &got), RZ_OK);
    assert_string_equal(got, want);
    rz_free(got);
    free(want);
}

/* A final step's outputs are in the status while another still runs. */
static void test_status_text(void **state)
{
    fx *f = *state;
    static const char *two =
        "flux: 1\nname: two\ninputs:\n  text: {type: string, required: true}\n"
        "steps:\n"
        "  x: {module: count@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n"
        "  y-2: {module: count@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n";
    uint64_t n = node_add(f, 0);
    uint64_t d = deploy(f, two, 1);
    assert_status_as_tree(f, d);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2, &a), RZ_OK);
    uint64_t job = a.job;
    char *out = module_outputs(&a);
    assert_int_equal(rz_engine_poll(f->e, n, 3, &a), RZ_OK);
    assert_status_as_tree(f, d);
    assert_int_equal(node_report(f->e, n, job, 1, out, NULL, 10000, 4), RZ_OK);
    free(out);
    assert_status_as_tree(f, d);
    char *text = NULL;
    assert_int_equal(rz_engine_deployment_status(f->e, d, &text), RZ_OK);
    assert_non_null(strstr(text, "\"outputs\":{\""));
    rz_free(text);
    check(f);
}

static void test_deploy_fanout(void **state)
{
    fx *f = *state;
    uint64_t nodes[3] = { node_add(f, 0), node_add(f, 0), node_add(f, 0) };
    uint64_t d = deploy(f, FANOUT, 1);
    /* Five steps held at 200 micros each (reference estimate). */
    assert_int_equal(efx_available(f, f->client), 9000);
    check(f);
    uint64_t now = 2;
    for (int round = 0; round < 10; round++, now += 150) {
        if (rz__engine_dep(f->e, d) && rz__engine_dep(f->e, d)->run)
            assert_status_as_tree(f, d);
        drive(f, nodes, 3, now, "a");
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "succeeded");
    assert_string_equal(efx_step_status(doc, "never"), "skipped");
    cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "a");
    assert_int_equal(cJSON_GetObjectItem(a, "attempts")->valueint, 2);
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "merge");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "outputs"),
                                         "sum")->valueint, 5);
    cJSON_Delete(doc);
    rz_engine_event ev;
    int finished = 0;
    while (rz_engine_next_event(f->e, &ev))
        finished += ev.type == RZ_EV_DEPLOYMENT_FINISHED && ev.deployment == d &&
                    ev.run_state == RZ_RUN_SUCCEEDED;
    assert_int_equal(finished, 1);
    /* 4 jobs ran at 1 core x 10 s = 100 micros; the skipped one is refunded. */
    assert_money(f, 1, 5, nodes, 3);
    assert_int_equal(efx_available(f, f->client), 9600);
    assert_int_equal(rz_engine_deployment_cancel(f->e, d, now), RZ_ESTATE);
    efx_reopen(f);   /* finished deployments keep their status */
    doc = efx_status(f, d);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "succeeded");
    cJSON_Delete(doc);
    check(f);
}

/* What a finished job or deployment answers, as text, to compare it before
 * it left memory, after, and after a reopen. */
static char *job_text(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    uint64_t sub = 0;
    assert_int_equal(rz_engine_job_times(f->e, job, &sub, NULL), RZ_OK);
    char *t = malloc(4096);
    snprintf(t, 4096, "%llu %d %u %llu %d %llu %llu %llu %llu %s %s %s %s %s "
             "%s %llu", (unsigned long long)ji.id, (int)ji.state, ji.attempt,
             (unsigned long long)ji.node, ji.priority,
             (unsigned long long)ji.max_cost_micros,
             (unsigned long long)ji.cost_micros, (unsigned long long)ji.run_ms,
             (unsigned long long)ji.deployment, ji.step, ji.module_id,
             ji.module_version, ji.outputs_json ? ji.outputs_json : "-",
             ji.error ? ji.error : "-", ji.exec_json ? ji.exec_json : "-",
             (unsigned long long)sub);
    return t;
}

static void assert_same_answers(fx *f, char **texts, uint64_t n, uint64_t dep,
                                const char *dep_status,
                                const rz_engine_stats *st)
{
    for (uint64_t j = 1; j <= n; j++) {
        char *t = job_text(f, j);
        assert_string_equal(t, texts[j - 1]);
        free(t);
    }
    char *json = NULL;
    assert_int_equal(rz_engine_deployment_status(f->e, dep, &json), RZ_OK);
    assert_string_equal(json, dep_status);
    rz_free(json);
    rz_engine_deployment_info di;
    assert_int_equal(rz_engine_deployment_get(f->e, dep, &di), RZ_OK);
    assert_int_equal(di.state, RZ_RUN_SUCCEEDED);
    assert_int_equal(di.first_job, n - 4);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, dep, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    uint64_t ids[64];
    rz_ledger_id other = rz_ledger_id_make(7, 99);
    assert_int_equal(rz_engine_job_list(f->e, &f->client, 0, ids, 64), n);
    assert_int_equal(ids[0], n);
    assert_int_equal(rz_engine_job_list(f->e, &f->client, 5, ids, 2), 2);
    assert_int_equal(ids[0], 4);
    assert_int_equal(rz_engine_job_list(f->e, &other, 0, ids, 64), 0);
    assert_int_equal(rz_engine_deployment_list(f->e, &f->client, 0, ids, 64), 1);
    assert_int_equal(rz_engine_deployment_list(f->e, &other, 0, ids, 64), 0);
    uint64_t volume = 0;
    for (uint64_t j = 1; j <= n; j++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
        volume += ji.cost_micros;
    }
    assert_true(volume > 0);
    assert_int_equal(rz_engine_volume_micros(f->e), volume);
    rz_engine_stats now;
    rz_engine_stats_get(f->e, &now);
    assert_memory_equal(now.jobs, st->jobs, sizeof now.jobs);
    assert_int_equal(now.deployments_done, st->deployments_done);
    assert_int_equal(now.deployments_running, st->deployments_running);
    /* A finished job refuses what it refused in memory. */
    assert_int_equal(rz_engine_job_cancel(f->e, 1, 10000), RZ_ESTATE);
    assert_int_equal(rz_engine_job_cancel(f->e, n, 10000), RZ_EINVAL);
    assert_int_equal(rz_engine_deployment_cancel(f->e, dep, 10000), RZ_ESTATE);
    assert_int_equal(rz_engine_job_get(f->e, n + 1, &(rz_engine_job_info){0}),
                     RZ_ENOENT);
    check(f);
}

/* After finished work left memory, a new queued job is all memory holds,
 * across a reopen; cancelled, it leaves too and reads back the same. */
static void live_work_stays(fx *f, char **texts, uint64_t n, uint64_t now,
                            const rz_engine_stats *st)
{
    uint64_t q = submit(f, 300, 0, now++);
    assert_int_equal(rz__engine_live_jobs(f->e), 1);
    assert_non_null(rz__engine_job(f->e, q));
    efx_reopen(f);
    assert_int_equal(rz__engine_live_jobs(f->e), 1);
    assert_int_equal(rz__engine_live_deps(f->e), 0);
    assert_int_equal(rz_engine_job_cancel(f->e, q, now++), RZ_OK);
    char *tq = job_text(f, q);
    /* Its refund's mark is stored once it waited, then it goes. */
    now += RZ__PAID_WRITE_MS;
    assert_int_equal(rz_engine_tick(f->e, now++), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, now++), RZ_OK);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    for (uint64_t j = 1; j <= n + 1; j++) {
        char *t = job_text(f, j);
        assert_string_equal(t, j <= n ? texts[j - 1] : tq);
        free(t);
    }
    rz_engine_stats now_st;
    rz_engine_stats_get(f->e, &now_st);
    assert_int_equal(now_st.jobs[RZ_JOB_CANCELLED],
                     st->jobs[RZ_JOB_CANCELLED] + 1);
    free(tq);
    for (uint64_t j = 0; j < n; j++)
        free(texts[j]);
}

/* Finished jobs and deployments leave memory once their final record is
 * committed; every query answers as before, with and without a reopen. */
static void test_finished_leave_memory(void **state)
{
    fx *f = *state;
    uint64_t node = node_add(f, 0);
    enum { N = 12 };
    uint64_t now = 1;
    for (int i = 0; i < N; i++, now++) {
        uint64_t j = submit(f, 300, 0, now);
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(f->e, node, now, &a), RZ_OK);
        assert_int_equal(a.job, j);
        assert_int_equal(node_report(f->e, node, j, 1, i % 3 ? "{\"n\":1}" : NULL,
                                     i % 3 ? NULL : "broke", 5000, now), RZ_OK);
    }
    uint64_t c = submit(f, 300, 0, now++);
    assert_int_equal(rz_engine_job_cancel(f->e, c, now++), RZ_OK);
    uint64_t nodes[1] = { node };
    uint64_t d = deploy(f, FANOUT, now++);
    for (int round = 0; round < 10; round++, now += 150) {
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    uint64_t n = N + 1 + 5;
    char *texts[N + 1 + 5];
    for (uint64_t j = 1; j <= n; j++)
        texts[j - 1] = job_text(f, j);
    char *dep_status = NULL;
    assert_int_equal(rz_engine_deployment_status(f->e, d, &dep_status), RZ_OK);
    rz_engine_stats st;
    rz_engine_stats_get(f->e, &st);
    assert_int_equal(st.jobs[RZ_JOB_SUCCEEDED] + st.jobs[RZ_JOB_FAILED] +
                     st.jobs[RZ_JOB_CANCELLED], n);
    /* Two more calls: the last settlements are committed, then dropped. */
    assert_int_equal(rz_engine_tick(f->e, now++), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, now++), RZ_OK);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    assert_int_equal(rz__engine_live_deps(f->e), 0);
    assert_null(rz__engine_job(f->e, 1));
    /* A repeat of an accepted report is still one. */
    int again = 0;
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = 1;
    r.outputs_json = "{\"n\":1}";
    r.run_ms = 5000;
    assert_int_equal(rz_engine_report_result(f->e, node, 2, &r, now++, &again),
                     RZ_OK);
    assert_int_equal(again, 1);
    r.run_ms = 6000;
    assert_int_equal(rz_engine_report_result(f->e, node, 2, &r, now++, &again),
                     RZ_ESTATE);
    assert_same_answers(f, texts, n, d, dep_status, &st);
    efx_reopen(f);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    assert_same_answers(f, texts, n, d, dep_status, &st);
    live_work_stays(f, texts, n, now, &st);
    rz_free(dep_status);
    check(f);
}

/* `flow` deployed on one node and driven to its end (ticks 2 to 9). */
static uint64_t deploy_to_end(fx *f, const char *flow)
{
    uint64_t nodes[1] = { node_add(f, 0) };
    uint64_t d = deploy(f, flow, 1);
    for (uint64_t now = 2; now < 10; now++) {
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    return d;
}

/* A join on the network: one branch skipped by its condition, the merge
 * runs after the other (join: any_succeeded), and a restart replays it. */
static void test_deploy_join(void **state)
{
    fx *f = *state;
    const char *flow =
        "flux: 1\nname: j\ninputs: {text: {type: string}}\nsteps:\n"
        "  split: {module: split@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n"
        "  a:\n    module: count@1.0.0\n    needs: [split]\n    when: false\n"
        "    inputs: {text: \"${{ steps.split.outputs.left }}\"}\n"
        "  b:\n    module: count@1.0.0\n    needs: [split]\n"
        "    inputs: {text: \"${{ steps.split.outputs.right }}\"}\n"
        "  merge:\n    module: merge@1.0.0\n    needs: [a, b]\n    join: any_succeeded\n"
        "    inputs: {x: \"${{ default(steps.a.outputs.n, 100) }}\", y: \"${{ steps.b.outputs.n }}\"}\n";
    uint64_t d = deploy_to_end(f, flow);
    efx_reopen(f);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "succeeded");
    assert_string_equal(efx_step_status(doc, "a"), "skipped");
    assert_string_equal(efx_step_status(doc, "merge"), "succeeded");
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "merge");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "outputs"),
                                         "sum")->valueint, 102);   /* 100 + "four five" */
    cJSON_Delete(doc);
    check(f);
}

/* on_exit and flow outputs on the network: the exit step is a job that runs
 * last, and the status shows the flow's declared outputs, also after a
 * restart. */
static void test_deploy_on_exit_outputs(void **state)
{
    fx *f = *state;
    const char *flow =
        "flux: 1\nname: x\ninputs: {text: {type: string}}\nsteps:\n"
        "  split: {module: split@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n"
        "  b:\n    module: count@1.0.0\n    needs: [split]\n"
        "    inputs: {text: \"${{ steps.split.outputs.right }}\"}\n"
        "on_exit:\n  module: merge@1.0.0\n"
        "  inputs: {x: \"${{ flow.status == 'succeeded' ? 1000 : 0 }}\", y: \"${{ steps.b.outputs.n }}\"}\n"
        "outputs:\n  total: \"${{ steps.on_exit.outputs.sum }}\"\n";
    uint64_t d = deploy_to_end(f, flow);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "succeeded");
    assert_string_equal(efx_step_status(doc, "on_exit"), "succeeded");
    cJSON *outs = cJSON_GetObjectItem(doc, "outputs");
    assert_int_equal(cJSON_GetArraySize(outs), 1);
    assert_int_equal(cJSON_GetObjectItem(outs, "total")->valueint, 1002);
    cJSON_Delete(doc);
    efx_reopen(f);
    doc = efx_status(f, d);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "outputs"),
                                         "total")->valueint, 1002);
    cJSON_Delete(doc);
    check(f);
}

static void test_deploy_invalid_flow_gives_diagnostics(void **state)
{
    fx *f = *state;
    uint64_t d = 0;
    rz_diags *diags = NULL;
    assert_int_equal(rz_diags_new(&diags), RZ_OK);
    const char *bad = "flux: 1\nname: x\nsteps:\n  a: {module: nosuch@1}\n";
    assert_int_not_equal(rz_engine_deploy(f->e, bad, strlen(bad), f->client,
                                          NULL, 1, &d, diags), RZ_OK);
    assert_true(rz_diags_error_count(diags) > 0);
    rz_diags_free(diags);
    check(f);
}

static void test_deploy_refuses_unparseable_text(void **state)
{
    fx *f = *state;
    uint64_t d = 0;
    assert_int_not_equal(rz_engine_deploy(f->e, "{{{", 3, f->client, NULL, 1, &d, NULL),
                         RZ_OK);
    check(f);
}

static void test_deploy_refuses_a_missing_required_input(void **state)
{
    fx *f = *state;
    uint64_t d = 0;
    assert_int_not_equal(rz_engine_deploy(f->e, FANOUT, strlen(FANOUT), f->client,
                                          NULL, 1, &d, NULL), RZ_OK);
    check(f);
}

/* Not enough money for every step: nothing held at all. */
static void test_deploy_without_funds_for_every_step_holds_nothing(void **state)
{
    fx *f = *state;
    uint64_t d = 0;
    rz_ledger_id poor = rz_ledger_id_make(7, 50);
    efx_client_add(f, poor, rz_ledger_id_make(7, 51), 900);
    assert_int_equal(rz_engine_deploy(f->e, FANOUT, strlen(FANOUT), poor,
                                      "{\"text\":\"x\"}", 1, &d, NULL), RZ_EFUNDS);
    assert_int_equal(d, 0);
    assert_int_equal(efx_available(f, poor), 900);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, 1, &ji), RZ_ENOENT);
    check(f);
}

static void test_deploy_timeout_cancel(void **state)
{
    fx *f = *state;
    const char *flow =
        "flux: 1\nname: slow\nsteps:\n"
        "  s:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n"
        "    timeout_s: 1\n    max_cost_micros: 150\n"
        "  t:\n    module: count@1.0.0\n    needs: [s]\n    inputs: {text: \"y\"}\n";
    uint64_t n = node_add(f, 0);
    uint64_t d = efx_deploy(f, flow, NULL, 10);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 20, &a), RZ_OK);
    assert_string_equal(a.step, "s");
    assert_int_equal(a.max_cost_micros, 150);
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 1000, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 1011), RZ_OK);   /* s timed out */
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    assert_int_equal(job_state(f, a.job), RZ_JOB_FAILED);
    assert_int_equal(node_report(f->e, n, a.job, 1, "{}", NULL, 5, 1012), RZ_ESTATE);
    assert_int_equal(efx_available(f, f->client), 10000);
    int stops = 0;
    rz_engine_event ev;
    while (rz_engine_next_event(f->e, &ev))
        stops += ev.type == RZ_EV_JOB_STOP && ev.job == a.job && ev.node == n;
    assert_int_equal(stops, 1);
    check(f);
    /* Cancel mid-run: everything refunded, the running node told to stop. */
    uint64_t d2 = deploy(f, FANOUT, 2000);
    assert_int_equal(rz_engine_poll(f->e, n, 2001, &a), RZ_OK);
    assert_int_equal(rz_engine_deployment_cancel(f->e, d2, 2002), RZ_OK);
    assert_int_equal(rz_engine_deployment_state(f->e, d2, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_CANCELLED);
    assert_int_equal(job_state(f, a.job), RZ_JOB_CANCELLED);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

static const char *step_field(cJSON *doc, const char *step, const char *key)
{
    cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), step);
    cJSON *v = cJSON_GetObjectItem(s, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int step_int(cJSON *doc, const char *step, const char *key)
{
    cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), step);
    cJSON *v = cJSON_GetObjectItem(s, key);
    assert_true(cJSON_IsNumber(v));
    return v->valueint;
}

/* The step's error in the status: in backoff, its deployment still runs,
 * so a reopened engine rebuilds it by replaying the step events. */
static void assert_step_error(fx *f, uint64_t d, const char *want)
{
    cJSON *doc = efx_status(f, d);
    assert_string_equal(step_field(doc, "s", "status"), "backoff");
    assert_non_null(step_field(doc, "s", "error"));
    assert_string_equal(step_field(doc, "s", "error"), want);
    cJSON_Delete(doc);
}

/* A step that times out while its job waits for a node (queued, or placed
 * and never taken) says it never ran; one a node took says only that it
 * timed out. The messages survive a restart. */
static void test_timeout_reason(void **state)
{
    fx *f = *state;
    const char *flow =
        "flux: 1\nname: slow\nsteps:\n"
        "  s:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n"
        "    timeout_s: 1\n"
        "    retry: {max_attempts: 2, backoff: fixed, initial_ms: 3600000}\n";
    const char *waiting = "timed out after 1 s waiting for a node "
                          "(no node took it)";
    const char *no_node = "timed out after 1 s waiting for a node: "
                          "no active node";
    /* No node at all: the reason says why. */
    uint64_t d1 = efx_deploy(f, flow, NULL, 10);
    assert_int_equal(rz_engine_tick(f->e, 1011), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, 1, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_PENDING);   /* waits for its retry */
    assert_step_error(f, d1, no_node);
    /* Placed on a node that never picked it up. */
    uint64_t n = node_add(f, 1100);
    uint64_t d2 = efx_deploy(f, flow, NULL, 1200);
    assert_int_equal(rz_engine_tick(f->e, 1201), RZ_OK);   /* places it */
    assert_int_equal(job_state(f, 2), RZ_JOB_ASSIGNED);
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 2100, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 2201), RZ_OK);
    assert_step_error(f, d2, waiting);
    /* Taken by the node: the plain message. */
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 2300, 0), RZ_OK);
    uint64_t d3 = efx_deploy(f, flow, NULL, 2300);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2301, &a), RZ_OK);
    assert_int_equal(a.job, 3);
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 3200, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 3302), RZ_OK);
    assert_step_error(f, d3, "timed out after 1 s");
    check(f);
    efx_reopen(f);
    assert_step_error(f, d1, no_node);
    assert_step_error(f, d2, waiting);
    assert_step_error(f, d3, "timed out after 1 s");
    check(f);
}

/* After a decline the run's step is still running on attempt 1, and the
 * status shows its job queued again, dispatched twice. */
static void test_status_job_view(void **state)
{
    fx *f = *state;
    const char *flow =
        "flux: 1\nname: one\nsteps:\n"
        "  s:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n";
    uint64_t d = efx_deploy(f, flow, NULL, 10);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(step_field(doc, "s", "status"), "running");
    assert_string_equal(step_field(doc, "s", "job_status"), "queued");
    assert_int_equal(step_int(doc, "s", "dispatches"), 1);
    cJSON_Delete(doc);
    uint64_t n = node_add(f, 11);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 12, &a), RZ_OK);
    doc = efx_status(f, d);
    assert_string_equal(step_field(doc, "s", "job_status"), "running");
    cJSON_Delete(doc);
    assert_int_equal(rz_engine_decline(f->e, n, a.job, a.attempt, 13), RZ_OK);
    for (int pass = 0; pass < 2; pass++) {
        doc = efx_status(f, d);
        assert_string_equal(step_field(doc, "s", "status"), "running");
        assert_int_equal(step_int(doc, "s", "attempts"), 1);
        assert_int_equal(step_int(doc, "s", "job"), (int)a.job);
        assert_string_equal(step_field(doc, "s", "job_status"), "queued");
        assert_int_equal(step_int(doc, "s", "dispatches"), 2);
        cJSON_Delete(doc);
        if (!pass)
            efx_reopen(f);
    }
    /* A second node finishes it: the final status keeps the job's view. */
    uint64_t m = node_add(f, 20);
    assert_int_equal(rz_engine_poll(f->e, m, 21, &a), RZ_OK);
    assert_int_equal(node_report(f->e, m, a.job, 2, "{\"n\":1}", NULL,
                            1000, 22), RZ_OK);
    doc = efx_status(f, d);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "succeeded");
    assert_string_equal(step_field(doc, "s", "job_status"), "succeeded");
    assert_int_equal(step_int(doc, "s", "dispatches"), 2);
    cJSON_Delete(doc);
    check(f);
}

static void test_restart_close(void **state)
{
    fx *f = *state;
    uint64_t nodes[2] = { node_add(f, 0), node_add(f, 0) };
    uint64_t d = deploy(f, FANOUT, 1);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, nodes[0], 2, &a), RZ_OK);   /* split */
    char *out = module_outputs(&a);
    assert_int_equal(node_report(f->e, nodes[0], a.job, 1, out, NULL, 10000, 3), RZ_OK);
    free(out);
    assert_int_equal(rz_engine_poll(f->e, nodes[0], 4, &a), RZ_OK);   /* a (ties: first node) */
    uint64_t running = a.job;
    efx_reopen(f);
    check(f);
    assert_int_equal(job_state(f, running), RZ_JOB_RUNNING);
    /* A queued standalone job survives too. */
    uint64_t now = 5000;   /* long after: the grace period starts now */
    assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    rz_engine_node_info ni;
    assert_int_equal(rz_engine_node_get(f->e, nodes[1], &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_ACTIVE);
    for (int round = 0; round < 10; round++, now += 150) {
        drive(f, nodes, 2, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        if (round == 0) {
            rz_engine_job_info ji;
            assert_int_equal(rz_engine_job_get(f->e, running, &ji), RZ_OK);
            if (ji.state == RZ_JOB_RUNNING)   /* still held: report it */
                assert_int_equal(node_report(f->e, ji.node, running, 1,
                                        "{\"n\":1}", NULL, 10000, now), RZ_OK);
        }
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    assert_money(f, 1, 5, nodes, 2);
    check(f);
}

/* A deploy writes the records of the steps that start, not of every step:
 * the others are made again from the flow at open, with their holds'
 * amounts (reference prices changed since do not change them). After a
 * SIGKILL right after the deploy the deployment ends as without one. */
static void test_deploy_lazy_records(void **state)
{
    fx *f = *state;
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        node_add(f, 0);
        deploy(f, FANOUT, 1);
        rz__ejob j;
        memset(&j, 0, sizeof j);
        if (rz__engine_store_job(f->e, 1, &j) != RZ_OK)   /* split: queued */
            _exit(3);
        rz__engine_job_clear(f->e, &j);
        for (uint64_t id = 2; id <= 5; id++) {   /* pending: no record */
            memset(&j, 0, sizeof j);
            if (rz__engine_store_job(f->e, id, &j) != RZ_ENOENT)
                _exit(4);
        }
        raise(SIGKILL);
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
    rz_engine_opts o = f->opts;
    o.ref_cpu_hour_micros = 72000;   /* new steps would hold twice as much */
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    check(f);
    assert_int_equal(efx_available(f, f->client), 9000);
    for (uint64_t id = 1; id <= 5; id++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, id, &ji), RZ_OK);
        assert_int_equal(ji.state, id == 1 ? RZ_JOB_QUEUED : RZ_JOB_PENDING);
        assert_int_equal(ji.max_cost_micros, 200);   /* as held */
        assert_int_equal(ji.deployment, 1);
        uint64_t sub = 0;
        assert_int_equal(rz_engine_job_times(f->e, id, &sub, NULL), RZ_OK);
        assert_int_equal(sub, 1);
    }
    assert_int_equal(rz_engine_deploy(f->e, FANOUT, strlen(FANOUT), f->client,
                                      "{\"text\":\"x\"}", 2, &(uint64_t){0},
                                      NULL), RZ_OK);
    rz_engine_job_info ji;   /* a new deployment holds at today's prices */
    assert_int_equal(rz_engine_job_get(f->e, 6, &ji), RZ_OK);
    assert_int_equal(ji.max_cost_micros, 400);
    assert_int_equal(rz_engine_deployment_cancel(f->e, 2, 3), RZ_OK);
    uint64_t nodes[1] = { 1 };
    uint64_t now = 100;
    for (int round = 0; round < 10; round++, now += 150) {
        drive(f, nodes, 1, now, "a");
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, 1, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    cJSON *doc = efx_status(f, 1);
    assert_string_equal(efx_step_status(doc, "never"), "skipped");
    assert_string_equal(efx_step_status(doc, "merge"), "succeeded");
    cJSON_Delete(doc);
    assert_money(f, 1, 5, nodes, 1);
    assert_int_equal(efx_available(f, f->client), 9600);
    efx_reopen(f);
    check(f);
}

/* A child deploys `flow` (a replicated step b) on three nodes, finds the
 * records a deploy writes, and is killed with SIGKILL. */
static void deploy_killed(fx *f, const char *flow)
{
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            node_add(f, 0);
        deploy(f, flow, 1);
        /* split 1 (queued), b 2 and its runs 4, 5: written; c 3: not. */
        for (uint64_t id = 1; id <= 5; id++) {
            rz__ejob j;
            memset(&j, 0, sizeof j);
            int rc = rz__engine_store_job(f->e, id, &j);
            bool set = id == 2 ? j.replicas == 3 && j.rep_first == 4
                               : id >= 4 ? j.rep_head == 2 : true;
            rz__engine_job_clear(f->e, &j);
            if (rc != (id == 3 ? RZ_ENOENT : RZ_OK) || !set)
                _exit(3);
        }
        raise(SIGKILL);
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
}

/* A replicated step's job and its runs are written at the deploy (their
 * set was made and held then), the other pending steps stay lazy: after a
 * crash the set is the one the deploy made (same ids, same holds, even at
 * new prices), runs on three nodes, and leaves memory once decided. */
static void test_deploy_replicated_records(void **state)
{
    static const char *flow =
        "flux: 1\nname: r\ninputs: {text: {type: string}}\nsteps:\n"
        "  split: {module: split@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n"
        "  b:\n    module: count@1.0.0\n    needs: [split]\n"
        "    verify: {replicas: 3}\n"
        "    inputs: {text: \"${{ steps.split.outputs.right }}\"}\n"
        "  c:\n    module: count@1.0.0\n    needs: [split]\n"
        "    inputs: {text: \"${{ steps.split.outputs.left }}\"}\n";
    fx *f = *state;
    deploy_killed(f, flow);
    rz_engine_opts o = f->opts;
    o.ref_cpu_hour_micros = 72000;   /* new steps would hold twice as much */
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    check(f);
    assert_int_equal(efx_available(f, f->client), 10000 - 5 * 200);
    rz_engine_replica_run r[5];
    assert_int_equal(rz_engine_job_replicas(f->e, 5, r, 5), 3);
    assert_int_equal(r[0].job, 2);
    assert_int_equal(r[1].job, 4);
    assert_int_equal(r[2].job, 5);
    for (uint64_t id = 1; id <= 5; id++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, id, &ji), RZ_OK);
        assert_int_equal(ji.max_cost_micros, id == 2 ? 3 * 200
                                             : id >= 4 ? 0 : 200);
    }
    uint64_t nodes[3] = { 1, 2, 3 };
    uint64_t now = 100;
    for (int round = 0; round < 6; round++, now += 150) {
        drive(f, nodes, 3, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, 1, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    assert_int_equal(rz__engine_live_deps(f->e), 0);
    assert_int_equal(rz_engine_job_replicas(f->e, 2, r, 5), 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(r[i].verdict, "agreed");
    cJSON *doc = efx_status(f, 1);
    assert_string_equal(efx_step_status(doc, "b"), "succeeded");
    cJSON_Delete(doc);
    efx_reopen(f);
    check(f);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    assert_int_equal(rz_engine_job_replicas(f->e, 4, r, 5), 3);
    assert_string_equal(r[2].verdict, "agreed");
}

/* Memory running out at any one allocation of the vote that decides a
 * replicated step: the step's verdict is whole or none. Its head takes
 * it through the run before any other run is settled, so either every run
 * and the step are settled, or none is and the set waits undecided
 * (rz_engine_check refuses a set decided in part); the last node's report
 * sent again then decides it. Agreeing votes and votes with no majority. */
static void replicated_step_oom(void **state, bool agree)
{
    static const char *flow =
        "flux: 1\nname: r\ninputs: {text: {type: string}}\nsteps:\n"
        "  b:\n    module: count@1.0.0\n    verify: {replicas: 3}\n"
        "    inputs: {text: \"${{ inputs.text }}\"}\n";
    long calls = 0, failed = 0;
    for (long n = 1; n < 20000; n += n < 80 ? 1 : 7) {
        fx *f = *state;
        uint64_t nodes[3] = { node_add(f, 0), node_add(f, 0), node_add(f, 0) };
        uint64_t dep = deploy(f, flow, 1);
        uint64_t job[3];
        uint32_t att[3];
        for (int i = 0; i < 3; i++) {
            rz_engine_assignment a;
            assert_int_equal(rz_engine_poll(f->e, nodes[i], 2, &a), RZ_OK);
            job[i] = a.job;
            att[i] = a.attempt;
        }
        const char *out[3] = { "{\"n\":1}", agree ? "{\"n\":1}" : "{\"n\":2}",
                               agree ? "{\"n\":1}" : "{\"n\":3}" };
        for (int i = 0; i < 2; i++)
            assert_int_equal(node_report(f->e, nodes[i], job[i], att[i], out[i],
                                         NULL, 10000, 3), RZ_OK);
        rz__alloc_fail_at(n, false);
        int rc = node_report(f->e, nodes[2], job[2], att[2], out[2], NULL, 10000, 4);
        calls = rz__alloc_calls();
        rz__alloc_fail_at(0, false);
        failed += rc != RZ_OK;
        /* A write that failed leaves the engine, or its ledger, refusing
         * more until reopened (engine.h). */
        rz_ledger_account acc;
        if (f->e->broken || rz_ledger_balance(rz_engine_ledger(f->e), f->client,
                                              &acc) == RZ_ESTATE)
            efx_reopen(f);
        check(f);
        rz_engine_replica_run r[3];
        assert_int_equal(rz_engine_job_replicas(f->e, job[0], r, 3), 3);
        bool decided = strcmp(r[0].verdict, "pending") != 0;
        for (int i = 1; i < 3; i++)
            assert_int_equal(strcmp(r[i].verdict, "pending") != 0, decided);
        if (!decided)   /* the report again: it decides now */
            assert_int_equal(node_report(f->e, nodes[2], job[2], att[2], out[2],
                                         NULL, 10000, 5), RZ_OK);
        rz_run_state rs;
        assert_int_equal(rz_engine_deployment_state(f->e, dep, &rs), RZ_OK);
        assert_int_equal(rs, agree ? RZ_RUN_SUCCEEDED : RZ_RUN_FAILED);
        assert_int_equal(rz_engine_job_replicas(f->e, job[0], r, 3), 3);
        for (int i = 0; i < 3; i++)
            assert_string_equal(r[i].verdict, agree ? "agreed" : "no_majority");
        assert_int_equal(rz_engine_tick(f->e, 6), RZ_OK);
        check(f);
        efx_reopen(f);
        check(f);
        teardown(state);
        assert_int_equal(setup(state), 0);
        if (calls < n)
            break;   /* the whole report ran before the failure */
    }
    assert_true(calls > 0 && failed > 5);
}

static void test_replicated_step_verdict_out_of_memory(void **state)
{
    replicated_step_oom(state, true);
    replicated_step_oom(state, false);
}

/* A child drives the engine and is killed with SIGKILL mid-deployment; the
 * parent reopens and finishes. */
static void test_restart_sigkill(void **state)
{
    fx *f = *state;
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        uint64_t n = node_add(f, 0);
        deploy(f, FANOUT, 1);
        rz_engine_assignment a;
        if (rz_engine_poll(f->e, n, 2, &a) != RZ_OK)
            _exit(3);
        char *out = module_outputs(&a);
        if (node_report(f->e, n, a.job, 1, out, NULL, 10000, 3) != RZ_OK)
            _exit(4);
        if (rz_engine_poll(f->e, n, 4, &a) != RZ_OK)   /* a step runs */
            _exit(5);
        raise(SIGKILL);
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
    efx_reopen(f);
    check(f);
    uint64_t nodes[1] = { 1 };
    uint64_t now = 100;
    for (int round = 0; round < 10; round++, now += 150) {
        assert_int_equal(rz_engine_node_heartbeat(f->e, 1, now, 0), RZ_OK);
        for (uint64_t j = 1; j <= 5; j++) {   /* the step that was running */
            rz_engine_job_info ji;
            assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
            if (ji.state == RZ_JOB_RUNNING) {
                rz_engine_assignment a = { .job = j, .module_id = "count",
                    .request_json = "{\"inputs\":{\"text\":\"a b\"}}" };
                char *out = module_outputs(&a);
                assert_int_equal(node_report(f->e, 1, j, ji.attempt, out,
                                        NULL, 10000, now), RZ_OK);
                free(out);
            }
        }
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, 1, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    assert_money(f, 1, 5, nodes, 1);
    check(f);
}

/* ---- for_each: element jobs made mid-deployment (lib/engine/fanout.c) ---- */

static const char *FE_FLOW =
    "flux: 1\nname: fe\ninputs: {text: {type: string}, xs: {type: array}}\nsteps:\n"
    "  split: {module: split@1.0.0, inputs: {text: \"${{ inputs.text }}\"}}\n"
    "  c:\n    module: count@1.0.0\n    needs: [split]\n"
    "    for_each: \"${{ inputs.xs }}\"\n    max_parallel: 2\n"
    "    inputs: {text: \"${{ each.value }} ${{ steps.split.outputs.left }}\"}\n"
    "  m:\n    module: merge@1.0.0\n    needs: [c]\n"
    "    inputs: {x: \"${{ steps.c.outputs.n[0] }}\", y: \"${{ steps.c.outputs.n[2] }}\"}\n";
static const char *FE_INPUTS = "{\"text\":\"one two\",\"xs\":[\"a b\",\"c\",\"d e f\"]}";

/* Runs the deployment to its end on node 1 and checks what it gave. */
static void fe_finish(fx *f, uint64_t dep, uint64_t last_job)
{
    uint64_t nodes[1] = { 1 };
    uint64_t now = 100;
    for (int round = 0; round < 8; round++, now += 150) {
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, dep, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    cJSON *doc = efx_status(f, dep);
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "c");
    char *n = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "outputs"));
    assert_string_equal(n, "{\"n\":[3,2,4]}");   /* "a b one", "c one", ... */
    free(n);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "elements")), 3);
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "m");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "outputs"),
                                         "sum")->valueint, 7);
    cJSON_Delete(doc);
    /* Every job is charged once: one per step and one per element, the
     * for_each step's own refunded. */
    assert_money(f, 1, last_job, nodes, 1);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, last_job + 1, &ji), RZ_ENOENT);
    efx_reopen(f);
    check(f);
}

/* The reuse map lists each step key once: two elements asking the same
 * of one module share a key (written once), the others are all there. */
static void test_reuse_map_keys_once(void **state)
{
    fx *f = *state;
    node_add(f, 0);
    uint64_t d = efx_deploy(f, FE_FLOW,
                            "{\"text\":\"one two\",\"xs\":[\"c\",\"c\",\"d e f\"]}", 1);
    uint64_t nodes[1] = { 1 };
    for (uint64_t now = 2; now < 2000; now += 150) {
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    char *json = NULL;
    assert_int_equal(rz_engine_reuse_map(f->e, d, &json), RZ_OK);
    cJSON *map = cJSON_Parse(json);
    rz_free(json);
    assert_non_null(map);
    int n = 0;
    for (const cJSON *a = map->child; a; a = a->next, n++)
        for (const cJSON *b = a->next; b; b = b->next)
            assert_string_not_equal(a->string, b->string);
    assert_true(n >= 4);   /* split, m, two distinct elements */
    cJSON_Delete(map);
}

static void test_for_each_jobs(void **state)
{
    fx *f = *state;
    node_add(f, 0);
    uint64_t d = efx_deploy(f, FE_FLOW, FE_INPUTS, 1);
    assert_int_equal(efx_available(f, f->client), 10000 - 3 * 200);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, 1, 2, &a), RZ_OK);
    assert_string_equal(a.step, "split");
    char *out = module_outputs(&a);
    assert_int_equal(node_report(f->e, 1, a.job, a.attempt, out, NULL, 0, 3), RZ_OK);
    free(out);
    check(f);
    /* split cost nothing (0 ms): three holds of steps, three of elements. */
    assert_int_equal(efx_available(f, f->client), 10000 - 5 * 200);
    uint64_t ids[8] = {0};
    assert_int_equal(rz_engine_deployment_element_jobs(f->e, d, ids, 8), 3);
    assert_int_equal(ids[0], 4);
    assert_int_equal(ids[2], 6);
    /* The elements are jobs 4..6, made when split ended, held then. */
    for (uint64_t j = 4; j <= 6; j++) {
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
        assert_string_equal(ji.step, "c");
        size_t task = 0;
        assert_int_equal(rz_engine_job_task(f->e, j, &task), RZ_OK);
        assert_int_equal(task, 3 + (j - 4));
    }
    efx_reopen(f);   /* the run and its elements' jobs come back */
    check(f);
    fe_finish(f, d, 6);
    /* Finished: its status names each element's job instead. */
    assert_int_equal(rz_engine_deployment_element_jobs(f->e, d, ids, 8), 0);
    cJSON *doc = efx_status(f, d);
    const cJSON *els = cJSON_GetObjectItem(cJSON_GetObjectItem(
        cJSON_GetObjectItem(doc, "steps"), "c"), "elements");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(els, 1), "job")->valueint, 5);
    cJSON_Delete(doc);
}

/* kill -9 after the report that made the elements: they come back with
 * their jobs and holds, and are neither made nor charged again. */
static void test_for_each_killed_after_fan_out(void **state)
{
    fx *f = *state;
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        uint64_t n = node_add(f, 0);
        efx_deploy(f, FE_FLOW, FE_INPUTS, 1);
        rz_engine_assignment a;
        if (rz_engine_poll(f->e, n, 2, &a) != RZ_OK || strcmp(a.step, "split") != 0)
            _exit(3);
        char *out = module_outputs(&a);
        if (node_report(f->e, n, a.job, 1, out, NULL, 10000, 3) != RZ_OK)
            _exit(4);
        if (rz_engine_poll(f->e, n, 4, &a) != RZ_OK || a.job != 4)   /* one runs */
            _exit(5);
        raise(SIGKILL);
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
    efx_reopen(f);
    check(f);
    rz_engine_job_info ji;
    for (uint64_t j = 5; j <= 6; j++) {   /* held: one queued, one waits */
        assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
        assert_true(j == 5 ? ji.state == RZ_JOB_QUEUED || ji.state == RZ_JOB_ASSIGNED
                           : ji.state == RZ_JOB_PENDING);
        assert_int_equal(ji.max_cost_micros, 200);
    }
    assert_int_equal(rz_engine_job_get(f->e, 7, &ji), RZ_ENOENT);
    /* Element 0 was running on node 1 when it died: its result counts. */
    assert_int_equal(rz_engine_job_get(f->e, 4, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_RUNNING);
    assert_int_equal(rz_engine_node_heartbeat(f->e, 1, 50, 0), RZ_OK);
    assert_int_equal(node_report(f->e, 1, 4, ji.attempt, "{\"n\":3}", NULL, 10000, 60),
                     RZ_OK);
    check(f);
    fe_finish(f, 1, 6);
}

/* A crash between the elements' holds and the commit: the holds are
 * orphans that the next open refunds (their ids never used again); the
 * report is made again and the elements get new jobs and holds, once. */
static void test_for_each_crash_before_commit(void **state)
{
    fx *f = *state;
    node_add(f, 0);
    uint64_t d = efx_deploy(f, FE_FLOW, FE_INPUTS, 1);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, 1, 2, &a), RZ_OK);
    char *out = module_outputs(&a);   /* a's texts go with the engine */
    uint64_t job = a.job;
    uint32_t attempt = a.attempt;
    rz_ledger *l = rz_engine_ledger(f->e);
    for (uint64_t j = 4; j <= 6; j++)   /* what fan_out held before dying */
        assert_int_equal(rz_ledger_hold(l, rz__engine_hold_id(j),
                         rz_engine_job_ledger_id(j), f->client, 200, 0), RZ_OK);
    efx_reopen(f);
    assert_int_equal(efx_available(f, f->client), 10000 - 3 * 200);
    for (uint64_t j = 4; j <= 6; j++)
        assert_int_equal(job_state(f, j), RZ_JOB_CANCELLED);
    check(f);
    assert_int_equal(rz_engine_node_heartbeat(f->e, 1, 3, 0), RZ_OK);
    assert_int_equal(node_report(f->e, 1, job, attempt, out, NULL, 0, 4), RZ_OK);
    free(out);
    check(f);
    /* split cost nothing; c, m and three new elements are held, once. */
    assert_int_equal(efx_available(f, f->client), 10000 - 5 * 200);
    size_t task = 0;
    assert_int_equal(rz_engine_job_task(f->e, 7, &task), RZ_OK);
    assert_int_equal(task, 3);
    uint64_t nodes[1] = { 1 };
    uint64_t now = 100;
    for (int round = 0; round < 8; round++, now += 150) {
        drive(f, nodes, 1, now, NULL);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    /* Jobs 4..6 cost nothing (refunded orphans); 1..3 and 7..9 paid. */
    assert_money(f, 1, 9, nodes, 1);
    check(f);
}

/* Memory runs out at any one allocation of the report that makes the
 * elements: the report's event may be committed while the elements got no
 * jobs (fan_out dropped them). The next tick makes them; so does the
 * first tick after a crash there (the rebuild at open finds an expansion
 * with no element jobs and leaves them to be made), each held once. */
static void test_for_each_out_of_memory_then_crash(void **state)
{
    long calls = 0, failed = 0, repaired = 0, run_oom = 0;
    for (long n = 1; n < 20000; n += n < 120 ? 1 : 5) {
        fx *f = *state;
        node_add(f, 0);
        efx_deploy(f, FE_FLOW, FE_INPUTS, 1);
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(f->e, 1, 2, &a), RZ_OK);
        char *out = module_outputs(&a);
        rz__alloc_fail_at(n, false);
        int rc = node_report(f->e, 1, a.job, a.attempt, out, NULL, 0, 3);
        calls = rz__alloc_calls();
        rz__alloc_fail_at(0, false);
        failed += rc != RZ_OK;
        rz_ledger_account acc;
        bool broken = f->e->broken ||
                      rz_ledger_balance(rz_engine_ledger(f->e), f->client,
                                        &acc) == RZ_ESTATE;
        rz_engine_job_info ji;
        if (rc != RZ_OK && !broken &&
            rz_engine_job_get(f->e, a.job, &ji) == RZ_OK &&
            ji.state == RZ_JOB_SUCCEEDED &&
            rz_engine_job_get(f->e, 4, &ji) == RZ_ENOENT)
            repaired++;   /* split done, its elements not made */
        if (!broken && rz_engine_job_get(f->e, 2, &ji) == RZ_OK &&
            ji.state == RZ_JOB_FAILED) {
            /* The run itself could not make the list (lib/run fails a
             * for_each step whose elements it cannot make for memory):
             * whole, but not what this test is about. */
            assert_non_null(strstr(ji.error, "out of memory"));
            check(f);
            run_oom++;
            free(out);
            teardown(state);
            assert_int_equal(setup(state), 0);
            continue;
        }
        if (broken || n % 2)
            efx_reopen(f);   /* the crash: the commit stands, memory is gone */
        check(f);
        if (job_state(f, a.job) != RZ_JOB_SUCCEEDED) {   /* nothing applied */
            assert_int_equal(rz_engine_node_heartbeat(f->e, 1, 3, 0), RZ_OK);
            assert_int_equal(node_report(f->e, 1, a.job, a.attempt, out, NULL, 0, 3),
                             RZ_OK);
        }
        free(out);
        /* A commit that failed after the elements' holds left them to the
         * reopen, which refunds them (jobs 4..6, cancelled): the elements
         * are jobs 7..9. */
        bool orphans = rz_engine_job_get(f->e, 4, &ji) == RZ_OK &&
                       ji.state == RZ_JOB_CANCELLED;
        fe_finish(f, 1, orphans ? 9 : 6);
        teardown(state);
        assert_int_equal(setup(state), 0);
        if (calls < n)
            break;
    }
    fprintf(stderr, "for_each out of memory: %ld failed reports, %ld left "
            "elements without jobs, %ld failed the map in the run\n", failed,
            repaired, run_oom);
    assert_true(calls > 0 && failed > 5 && repaired > 0);
}

/* ---- money through failed calls, crashes and reopens ---- */

/* The process dies: the engine's memory is dropped without the commit a
 * close makes (marked broken, as a failed commit marks it), and it opens
 * again from what its store and the ledger hold. */
static void crash_reopen(fx *f)
{
    f->e->broken = true;
    efx_reopen(f);
}

/* The ledger and the engine agree on every micro-dollar: the client's
 * held funds are exactly the open holds of the jobs the engine knows (none
 * orphaned, none leaked), and the client, the nodes and the platform hold
 * together what was deposited. */
static void money_whole(fx *f, uint64_t deposit)
{
    rz_ledger *l = rz_engine_ledger(f->e);
    uint64_t held = 0;
    rz_engine_job_info ji;
    for (uint64_t j = 1; rz_engine_job_get(f->e, j, &ji) == RZ_OK; j++) {
        rz_ledger_transfer t;
        if (rz_ledger_transfer_get(l, rz__engine_hold_id(j), &t) == RZ_OK &&
            t.state == RZ_LEDGER_OPEN)
            held += t.amount;
    }
    rz_ledger_id ids[6] = { f->client, RZ_LEDGER_PLATFORM_ID };
    size_t n = 2;
    for (size_t i = 0; i < f->n_nodes; i++)
        ids[n++] = rz_engine_node_account(f->node[i]);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        rz_ledger_account a;
        assert_int_equal(rz_ledger_balance(l, ids[i], &a), RZ_OK);
        if (i == 0)
            assert_int_equal(a.debits_pending, held);
        sum += a.credits_posted - a.debits_posted;
    }
    assert_int_equal(sum, deposit);
}

/* One run of FE_FLOW by one node in which the `target`th engine call
 * (deploy, poll, report or tick, in the order made) runs out of memory at
 * its `n`th allocation. */
typedef struct oom_run {
    fx *f;
    long target, n;
    long call;        /* engine calls made */
    long allocs;      /* the target call's allocations (< n: all passed) */
    bool hit;         /* the target call was made */
    bool failed;      /* it returned an error */
} oom_run;

static void oom_arm(oom_run *o)
{
    if (o->call == o->target)
        rz__alloc_fail_at(o->n, false);
}

/* After a call: when it was the target, disarm and note what it did. */
static bool oom_disarm(oom_run *o, int rc)
{
    if (o->call++ != o->target)
        return false;
    o->allocs = rz__alloc_calls();
    rz__alloc_fail_at(0, false);
    o->hit = true;
    o->failed = rc != RZ_OK;
    return true;
}

/* Then crash (a commit that failed leaves nothing else to do; every odd
 * failure point crashes too) and check the money. */
static void oom_recover(oom_run *o, bool was_target)
{
    if (!was_target)
        return;
    fx *f = o->f;
    rz_ledger_account acc;
    if (f->e->broken || o->n % 2 ||
        rz_ledger_balance(rz_engine_ledger(f->e), f->client, &acc) == RZ_ESTATE)
        crash_reopen(f);
    check(f);
    money_whole(f, 10000);
}

static void oom_after(oom_run *o, int rc)
{
    oom_recover(o, oom_disarm(o, rc));
}

typedef struct held_report {
    uint64_t job;
    uint32_t attempt;
    char *out;
} held_report;

/* The node resends each result it holds until the engine takes it (as a
 * node's outbox does), then polls for more. */
static void oom_node(oom_run *o, held_report *h, size_t *nh, uint64_t now)
{
    fx *f = o->f;
    for (size_t i = 0; i < *nh;) {
        oom_arm(o);
        int rc = node_report(f->e, 1, h[i].job, h[i].attempt, h[i].out, NULL,
                             100, now);
        oom_after(o, rc);
        if (rc != RZ_OK && rc != RZ_ESTATE) {
            i++;   /* again next round */
            continue;
        }
        free(h[i].out);
        h[i] = h[--*nh];
    }
    rz_engine_assignment a;
    for (;;) {
        oom_arm(o);
        int rc = rz_engine_poll(f->e, 1, now, &a);
        bool was_target = oom_disarm(o, rc);
        if (rc == RZ_OK) {   /* read before a crash frees what `a` points to */
            assert_true(*nh < 4);
            h[(*nh)++] = (held_report){ a.job, a.attempt, module_outputs(&a) };
        }
        oom_recover(o, was_target);
        if (rc != RZ_OK)
            break;
    }
}

/* The deployment made (again when the failed deploy left none) and run to
 * its end; then every job is charged once, whatever failed on the way. */
static void oom_run_once(oom_run *o)
{
    fx *f = o->f;
    node_add(f, 0);
    uint64_t d = 0;
    while (!d) {
        oom_arm(o);
        int rc = rz_engine_deploy(f->e, FE_FLOW, strlen(FE_FLOW), f->client,
                                  FE_INPUTS, 1, &d, NULL);
        oom_after(o, rc);
        rz_run_state rs;
        if (rc != RZ_OK && rz_engine_deployment_state(f->e, 1, &rs) == RZ_OK)
            d = 1;   /* stored before the call failed */
    }
    held_report h[4];
    size_t nh = 0;
    rz_run_state rs = RZ_RUN_RUNNING;
    for (uint64_t now = 2; rs == RZ_RUN_RUNNING || nh; now += 10) {
        assert_true(now < 1000);   /* within the node's timeout */
        oom_node(o, h, &nh, now);
        oom_arm(o);
        oom_after(o, rz_engine_tick(f->e, now));
        assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    }
    uint64_t nodes[1] = { 1 }, last = 0;
    rz_engine_job_info ji;
    while (rz_engine_job_get(f->e, last + 1, &ji) == RZ_OK)
        last++;
    assert_money(f, 1, last, nodes, 1);
    money_whole(f, 10000);
    crash_reopen(f);
    check(f);
    assert_money(f, 1, last, nodes, 1);
    money_whole(f, 10000);
}

/* Memory runs out at each allocation in turn of each call of a for_each
 * deployment's life (its deploy, polls, the report that makes the
 * elements, theirs, ticks), the records its commit writes included (cJSON
 * is hooked: main); then the process dies (a failed commit, and every
 * odd failure point) or carries on. After each, the ledger's holds are
 * exactly those of the engine's open jobs and the accounts sum to the
 * deposit; the node resends what it had until it is taken, and the run's
 * end charges each job once. */
static void test_every_failure_point_keeps_money(void **state)
{
    long points = 0, failed = 0;
    for (long target = 0;; target++) {
        /* The call's allocations counted, none failing; then each of its
         * first 12 and last 50 fails (where it starts and where it
         * changes state), and one in 17 between. */
        oom_run o = { *state, target, LONG_MAX, 0, 0, false, false };
        oom_run_once(&o);
        teardown(state);
        assert_int_equal(setup(state), 0);
        if (!o.hit)
            break;   /* past the last call */
        long all = o.allocs, dense = all - 50;
        for (long n = 1; n <= all; n = n < 12 || n >= dense ? n + 1
                                     : n + 17 < dense ? n + 17 : dense) {
            o = (oom_run){ *state, target, n, 0, 0, false, false };
            oom_run_once(&o);
            teardown(state);
            assert_int_equal(setup(state), 0);
            points++;
            failed += o.failed;
        }
    }
    fprintf(stderr, "every failure point: %ld runs, %ld calls failed\n",
            points, failed);
    assert_true(failed > 100);
}

/* Memory runs out at each allocation in turn of an open that replays a
 * running deployment whose last event is a step's success (the other
 * step runs on): the open fails, or its run agrees with the jobs (the
 * outputs, parsed again for the replay, never leave the step running for
 * memory) and with the ledger. */
static void test_open_out_of_memory_replays_whole(void **state)
{
    static const char *flow = "flux: 1\nname: two\nsteps:\n"
        "  a: {module: count@1.0.0, inputs: {text: \"x y\"}}\n"
        "  b: {module: count@1.0.0, inputs: {text: \"z\"}}\n";
    fx *f = *state;
    uint64_t nodes[1] = { node_add(f, 0) };
    uint64_t d = efx_deploy(f, flow, NULL, 1);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, 1, 2, &a), RZ_OK);
    uint64_t job = a.job;
    assert_int_equal(node_report(f->e, 1, job, a.attempt, "{\"n\":2}", NULL, 0, 3),
                     RZ_OK);
    rz_engine_close(f->e);
    f->e = NULL;
    long opened = 0, n = 1;
    for (bool past = false; !past; n += n < 200 ? 1 : 3) {
        rz__alloc_fail_at(n, false);
        int rc = rz_engine_open(&f->e, f->dir, &f->opts);
        past = rz__alloc_calls() < n;
        rz__alloc_fail_at(0, false);
        if (rc != RZ_OK) {   /* said as memory, never as a damaged store */
            if (rc != RZ_ENOMEM)
                fprintf(stderr, "open: %s\n", rz_error_last()->message);
            assert_int_equal(rc, RZ_ENOMEM);
            continue;
        }
        opened++;
        check(f);
        money_whole(f, 10000);
        assert_int_equal(job_state(f, job), RZ_JOB_SUCCEEDED);
        f->e->broken = true;   /* closed as a crash: nothing written */
        rz_engine_close(f->e);
        f->e = NULL;
    }
    efx_reopen(f);
    for (uint64_t now = 10; now < 40; now += 10)
        drive(f, nodes, 1, now, NULL);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    assert_money(f, 1, 2, nodes, 1);
    fprintf(stderr, "open out of memory: %ld points, %ld opened\n", n - 1, opened);
}

/* The ledger's journal writes fail while `journal_fails`. */
static const rz__ledger_io *plain_ledger_io;
static bool journal_fails;
static ssize_t failing_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (journal_fails) {
        errno = EIO;
        return -1;
    }
    return plain_ledger_io->pwrite(fd, p, n, off);
}

/* A payment batch the ledger failed keeps its jobs owed: once the ledger
 * works again (reopened under the same engine) the next call pays them,
 * with no reopen of the engine. */
static void test_failed_payment_stays_owed(void **state)
{
    fx *f = *state;
    uint64_t n, j = job_running(f, 500, 1, &n);
    static rz__ledger_io io;
    plain_ledger_io = rz__ledger_io_seam;
    io = *plain_ledger_io;
    io.pwrite = failing_pwrite;
    rz__ledger_io_seam = &io;
    journal_fails = true;
    int rc = node_report(f->e, n, j, 1, "{\"n\":2}", NULL, 10000, 4);
    journal_fails = false;
    assert_int_not_equal(rc, RZ_OK);
    assert_int_equal(job_state(f, j), RZ_JOB_SUCCEEDED);   /* stored as owed */
    rz_ledger_close(f->e->ledger);   /* broken by the failed write */
    rz__ledger_io_seam = plain_ledger_io;
    rz_ledger_opts lo = RZ_LEDGER_OPTS_INIT;
    lo.fee_bps = f->e->opts.fee_bps;
    lo.durable = f->e->opts.durable;
    if (!lo.durable)   /* as the engine opens it */
        lo.checkpoint_ops = RZ_LEDGER_DEFAULT_CHECKPOINT_OPS / 64;
    assert_int_equal(rz_ledger_open(&f->e->ledger, f->dir, &lo), RZ_OK);
    assert_int_equal(efx_available(f, rz_engine_node_account(n)), 0);
    assert_int_equal(rz_engine_tick(f->e, 5), RZ_OK);
    assert_int_equal(efx_available(f, rz_engine_node_account(n)), 190);
    assert_int_equal(efx_available(f, f->client), 9800);
    check(f);
}

/* Memory runs out at each allocation in turn of the first call after an
 * open, a job's result (the lists of changed records grow from nothing
 * then): a report that succeeded stored the job's end, and a crash after
 * it finds the job succeeded (the node, told so, never sends it again). */
static void test_succeeded_call_stored_whole(void **state)
{
    long ok = 0, n = 1;
    for (bool past = false; !past; n++) {
        fx *f = *state;
        uint64_t node, j = job_running(f, 500, 1, &node);
        efx_reopen(f);
        rz__alloc_fail_at(n, false);
        int rc = node_report(f->e, node, j, 1, "{\"n\":2}", NULL, 10000, 4);
        past = rz__alloc_calls() < n;
        rz__alloc_fail_at(0, false);
        if (rc == RZ_OK) {
            ok++;
            crash_reopen(f);
            assert_int_equal(job_state(f, j), RZ_JOB_SUCCEEDED);
            check(f);
        }
        teardown(state);
        assert_int_equal(setup(state), 0);
    }
    assert_true(ok > 0);   /* the last: nothing failed */
    fprintf(stderr, "stored whole: %ld points, %ld succeeded\n", n - 1, ok);
}

/* Holds the client cannot cover fail the map (recorded: a reopen agrees),
 * not the engine call. */
static void test_for_each_no_funds(void **state)
{
    fx *f = *state;
    node_add(f, 0);
    char in[8192] = "{\"text\":\"one two\",\"xs\":[";
    for (int k = 0; k < 60; k++)   /* 60 x 200 > what is left of 10,000 */
        strcat(in, k ? ",\"w\"" : "\"w\"");
    strcat(in, "]}");
    uint64_t d = efx_deploy(f, FE_FLOW, in, 1);
    uint64_t nodes[1] = { 1 };
    drive(f, nodes, 1, 2, NULL);
    check(f);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(efx_step_status(doc, "c"), "failed");
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "c");
    assert_non_null(strstr(cJSON_GetObjectItem(c, "error")->valuestring,
                           "cannot hold its for_each elements: 60 for_each elements "
                           "need 12000 micros held"));
    assert_string_equal(efx_step_status(doc, "m"), "skipped");
    cJSON_Delete(doc);
    assert_money(f, 1, 3, nodes, 1);
    efx_reopen(f);
    check(f);
}

/* A hold made for a submission that crashed before its commit is refunded
 * on open, and its job id is never handed out again. */
static void test_orphan_hold(void **state)
{
    fx *f = *state;
    rz_ledger *l = rz_engine_ledger(f->e);
    assert_int_equal(rz_ledger_hold(l, rz__engine_hold_id(1),
                     rz_engine_job_ledger_id(1), f->client, 400, 0), RZ_OK);
    assert_int_equal(efx_available(f, f->client), 9600);
    efx_reopen(f);
    assert_int_equal(efx_available(f, f->client), 10000);
    assert_int_equal(job_state(f, 1), RZ_JOB_CANCELLED);
    check(f);
    uint64_t j = submit(f, 300, 0, 1);
    assert_int_equal(j, 2);
    assert_int_equal(efx_available(f, f->client), 9700);
    efx_reopen(f);
    assert_int_equal(job_state(f, 1), RZ_JOB_CANCELLED);
    assert_int_equal(job_state(f, 2), RZ_JOB_QUEUED);
    check(f);
}

/* A declined job goes elsewhere and never back to the node that declined
 * it, also after a restart; the attempt is counted; the money is exact. */
static void test_decline(void **state)
{
    fx *f = *state;
    uint64_t a, j = job_running(f, 500, 1, &a);
    rz_engine_assignment as;
    /* Only the holder of the current attempt may decline. */
    assert_int_equal(rz_engine_decline(f->e, a, j, 2, 3), RZ_ESTATE);
    assert_int_equal(rz_engine_decline(f->e, a + 1, j, 1, 3), RZ_ESTATE);
    assert_int_equal(rz_engine_decline(f->e, a, j + 9, 1, 3), RZ_ENOENT);
    assert_int_equal(rz_engine_decline(f->e, a, j, 1, 3), RZ_OK);
    assert_int_equal(job_state(f, j), RZ_JOB_QUEUED);
    check(f);
    /* a has room but declined it: it is not placed there again. */
    assert_int_equal(rz_engine_poll(f->e, a, 4, &as), RZ_ENOENT);
    assert_int_equal(job_state(f, j), RZ_JOB_QUEUED);
    efx_reopen(f);
    assert_int_equal(rz_engine_poll(f->e, a, 5, &as), RZ_ENOENT);
    uint64_t b = node_add(f, 6);
    assert_int_equal(rz_engine_poll(f->e, b, 7, &as), RZ_OK);
    assert_int_equal(as.job, j);
    assert_int_equal(as.attempt, 2);
    check(f);
    assert_int_equal(node_report(f->e, b, j, 2, "{\"n\":1}", NULL, 10000, 10), RZ_OK);
    /* The decline is in a's record and costs it some reputation (b wins
     * a tie now), but a still gets other jobs. */
    rz_engine_node_trust t;
    assert_int_equal(rz_engine_node_trust_get(f->e, a, &t), RZ_OK);
    assert_int_equal(t.record.declined, 1);
    assert_true(t.reputation < 1.0);
    assert_int_equal(rz_engine_node_deregister(f->e, b, 10), RZ_OK);
    uint64_t k = submit(f, 500, 0, 10);
    assert_int_equal(rz_engine_poll(f->e, a, 10, &as), RZ_OK);
    assert_int_equal(as.job, k);
    assert_int_equal(efx_available(f, f->client), 10000 - 200 - 500);
    assert_int_equal(rz_engine_job_cancel(f->e, k, 11), RZ_OK);
    assert_int_equal(efx_available(f, f->client), 9800);
    check(f);
}

/* A job every node declines fails after max_attempts dispatches, refunded. */
static void test_decline_exhausts(void **state)
{
    fx *f = *state;
    uint64_t j = submit(f, 500, 0, 1);
    rz_engine_assignment as;
    for (uint32_t i = 1; i <= 5; i++) {
        uint64_t n = node_add(f, 10 * i);
        assert_int_equal(rz_engine_poll(f->e, n, 10 * i + 1, &as), RZ_OK);
        assert_int_equal(as.attempt, i);
        assert_int_equal(rz_engine_decline(f->e, n, j, i, 10 * i + 2), RZ_OK);
        check(f);
    }
    assert_int_equal(job_state(f, j), RZ_JOB_FAILED);
    assert_int_equal(efx_available(f, f->client), 10000);
}

/* Listings newest first, by client; deployment info; caps; times; the
 * reference estimate. */
/* A second client with 1000 micros; jobs 1 and 3 are f->client's at t=1
 * and t=3, job 2 the other client's. */
static rz_ledger_id three_jobs(fx *f, uint64_t j[3])
{
    rz_ledger_id other = rz_ledger_id_make(7, 3);
    efx_client_add(f, other, rz_ledger_id_make(7, 4), 1000);
    j[0] = submit(f, 100, 0, 1);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = other;
    s.max_cost_micros = 100;
    assert_int_equal(rz_engine_submit(f->e, &s, 2, &j[1]), RZ_OK);
    j[2] = submit(f, 100, 0, 3);
    return other;
}

static void test_job_list_newest_first_by_client(void **state)
{
    fx *f = *state;
    uint64_t j[3], ids[8];
    rz_ledger_id other = three_jobs(f, j);
    assert_int_equal(rz_engine_job_list(f->e, NULL, 0, ids, 8), 3);
    assert_int_equal(ids[0], j[2]);
    assert_int_equal(ids[2], j[0]);
    assert_int_equal(rz_engine_job_list(f->e, &f->client, 0, ids, 8), 2);
    assert_int_equal(ids[0], j[2]);
    assert_int_equal(ids[1], j[0]);
    assert_int_equal(rz_engine_job_list(f->e, &other, 0, ids, 1), 1);
    assert_int_equal(ids[0], j[1]);
    check(f);
}

static void test_job_list_pages_and_caps(void **state)
{
    fx *f = *state;
    uint64_t j[3], ids[8];
    three_jobs(f, j);
    assert_int_equal(rz_engine_job_list(f->e, &f->client, j[2], ids, 8), 1);
    assert_int_equal(ids[0], j[0]);
    assert_int_equal(rz_engine_job_list(f->e, NULL, 0, ids, 0), 0);
    check(f);
}

static void test_job_times(void **state)
{
    fx *f = *state;
    uint64_t j[3], sub = 0, q = 0;
    three_jobs(f, j);
    assert_int_equal(rz_engine_job_times(f->e, j[2], &sub, &q), RZ_OK);
    assert_int_equal(sub, 3);
    assert_int_equal(q, 3);
    assert_int_equal(rz_engine_job_times(f->e, 99, &sub, &q), RZ_ENOENT);
}

static const char *one_step_flow = "flux: 1\nname: one\nsteps:\n  c:\n    module: count@1\n"
                                   "    inputs:\n      text: \"a\"\n";

static void test_deployment_get_and_list(void **state)
{
    fx *f = *state;
    uint64_t j[3], ids[8], d = 0;
    rz_ledger_id other = three_jobs(f, j);
    assert_int_equal(rz_engine_deploy(f->e, one_step_flow, strlen(one_step_flow),
                                      f->client, NULL, 4, &d, NULL), RZ_OK);
    rz_engine_deployment_info di;
    assert_int_equal(rz_engine_deployment_get(f->e, d, &di), RZ_OK);
    assert_true(di.client.hi == f->client.hi && di.client.lo == f->client.lo);
    assert_int_equal(di.n_steps, 1);
    assert_int_equal(di.first_job, j[2] + 1);
    assert_int_equal(di.state, RZ_RUN_RUNNING);
    assert_int_equal(rz_engine_deployment_get(f->e, d + 1, &di), RZ_ENOENT);
    assert_int_equal(rz_engine_deployment_list(f->e, &f->client, 0, ids, 8), 1);
    assert_int_equal(rz_engine_deployment_list(f->e, &other, 0, ids, 8), 0);
    check(f);
}

/* Finished deployments read back are cached by bytes, not only by count:
 * eight whose final status carries a 300 KiB error each do not stay in
 * memory together, and each still reads back whole. */
static void test_read_back_cache_bounded(void **state)
{
    fx *f = *state;
    size_t big = 300u << 10;
    char *error = malloc(big + 1);
    memset(error, 'e', big);
    error[big] = '\0';
    uint64_t n = node_add(f, 0), d[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rz_engine_deploy(f->e, one_step_flow, strlen(one_step_flow),
                                          f->client, NULL, 4, &d[i], NULL), RZ_OK);
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
        assert_int_equal(node_report(f->e, n, a.job, 1, NULL, error, 1000, 6),
                         RZ_OK);
    }
    assert_int_equal(rz_engine_tick(f->e, 7), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 8), RZ_OK);
    assert_int_equal(rz__engine_live_deps(f->e), 0);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 8; i++) {
            char *status = NULL;
            assert_int_equal(rz_engine_deployment_status(f->e, d[i], &status), RZ_OK);
            assert_true(strlen(status) > big);
            rz_free(status);
            size_t held = rz__engine_cache_dep_bytes(f->e);
            assert_true(held > big && held <= (1u << 20) + big + 4096);
        }
    free(error);
    check(f);
}

static void test_node_caps(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, 5);
    assert_int_equal(rz_engine_node_count(f->e), 1);
    char *caps = NULL;
    assert_int_equal(rz_engine_node_caps(f->e, n, &caps), RZ_OK);
    cJSON *c = cJSON_Parse(caps);
    assert_string_equal(cJSON_GetObjectItem(c, "id")->valuestring, "1");
    cJSON_Delete(c);
    rz_free(caps);
    assert_int_equal(rz_engine_node_caps(f->e, n + 1, &caps), RZ_ENOENT);
    assert_null(caps);
}

/* The module's 10 s on 1 core, x2, at 36000 micros/hour: 200 micros, the
 * same as a deployment step is held for. */
static void test_reference_cost_is_what_a_step_holds(void **state)
{
    fx *f = *state;
    uint64_t micros = 0, d = 0;
    assert_int_equal(rz_engine_deploy(f->e, one_step_flow, strlen(one_step_flow),
                                      f->client, NULL, 4, &d, NULL), RZ_OK);
    node_add(f, 5);
    assert_int_equal(rz_engine_reference_cost(f->e,
        "{\"cpu_cores\":1,\"estimate_seconds\":10}", &micros), RZ_OK);
    assert_int_equal(micros, 200);
    rz_engine_deployment_info di;
    assert_int_equal(rz_engine_deployment_get(f->e, d, &di), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, di.first_job, &ji), RZ_OK);
    assert_int_equal(ji.max_cost_micros, 200);
    check(f);
}

static void test_reference_cost_refuses_bad_json(void **state)
{
    fx *f = *state;
    uint64_t micros = 0;
    assert_int_equal(rz_engine_reference_cost(f->e, "[", &micros), RZ_ESYNTAX);
}

/* Group commit: calls inside a group are applied in memory, their holds
 * checked against the ledger less the group's own and written at the
 * commit with everything else; the result survives a reopen. */
static void test_group_commit(void **state)
{
    fx *f = *state;
    uint64_t n = node_add(f, 0);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_ESTATE);
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    assert_int_equal(rz_engine_group_begin(f->e), RZ_ESTATE);
    assert_true(rz_engine_in_group(f->e));
    uint64_t j1 = submit(f, 300, 0, 1), j2 = submit(f, 300, 0, 1);
    uint64_t j3 = submit(f, 300, 0, 1), j4 = submit(f, 9000, 0, 1);
    assert_true(j1 && j2 && j3 && j4);
    /* 9900 of 10000 are spoken for, though the ledger holds none yet. */
    assert_int_equal(efx_available(f, f->client), 10000);
    assert_int_equal(submit(f, 200, 0, 1), 0);
    assert_int_equal(rz_error_last()->code, RZ_EFUNDS);
    assert_int_equal(rz_engine_check(f->e), RZ_ESTATE);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2, &a), RZ_OK);
    assert_int_equal(a.job, j1);
    assert_int_equal(rz_engine_job_cancel(f->e, j2, 2), RZ_OK);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    assert_false(rz_engine_in_group(f->e));
    assert_int_equal(efx_available(f, f->client), 10000 - 300 - 300 - 9000);
    check(f);
    efx_reopen(f);
    check(f);
    assert_int_equal(job_state(f, j1), RZ_JOB_RUNNING);
    assert_int_equal(job_state(f, j2), RZ_JOB_CANCELLED);
    assert_int_equal(job_state(f, j3), RZ_JOB_QUEUED);
    assert_int_equal(efx_available(f, f->client), 400);
    /* Money taken out of the ledger directly after the check: the hold is
     * refused at the commit and its job fails, holding nothing. */
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    uint64_t j5 = submit(f, 300, 0, 3);
    assert_true(j5 > 0);
    assert_int_equal(rz_ledger_withdraw_request(rz_engine_ledger(f->e),
                     rz_ledger_id_make(7, 9), f->client, 300), RZ_OK);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j5, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_int_equal(ji.max_cost_micros, 0);
    assert_non_null(strstr(ji.error, "refused"));
    check(f);
    efx_reopen(f);
    check(f);
    /* Closing with a group open commits it. */
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    uint64_t j6 = submit(f, 50, 0, 4);
    efx_reopen(f);
    assert_int_equal(job_state(f, j6), RZ_JOB_QUEUED);
    assert_int_equal(efx_available(f, f->client), 50);
    check(f);
}

/* A job's owed flag as its stored record has it. */
static int stored_owed(fx *f, uint64_t id)
{
    rz__ejob rec;
    memset(&rec, 0, sizeof rec);
    if (rz__engine_store_job(f->e, id, &rec) != RZ_OK)
        return -1;
    int owed = rec.owed;
    rz__engine_job_clear(f->e, &rec);
    return owed;
}

/* The result's call pays the job, then a poll that finds no work (a
 * server's held poll) and nothing else: still one commit, not a second
 * for the paid mark. */
static bool paid_then_idle_poll(fx *f, uint64_t node, uint64_t t)
{
    uint64_t j = submit(f, 300, 0, t);
    rz_engine_assignment a;
    if (rz_engine_poll(f->e, node, t + 1, &a) != RZ_OK || a.job != j ||
        node_report(f->e, node, j, 1, "{\"n\":1}", NULL, 10000, t + 2) != RZ_OK)
        return false;
    rz_engine_stats before, after;
    rz_engine_stats_get(f->e, &before);
    bool idle = rz_engine_poll(f->e, node, t + 3, &a) == RZ_ENOENT;
    rz_engine_stats_get(f->e, &after);
    return idle && after.commits == before.commits &&
           rz__engine_job(f->e, j)->owed == RZ__OWE_NONE &&
           stored_owed(f, j) == RZ__OWE_SETTLE;
}

/* A payment's mark (owed cleared) waits for the next commit with a change
 * of its own: a killed process then pays again at open, a replay that
 * moves no money twice; or, RZ__PAID_WRITE_MS after the payment, the
 * first call stores it (the engine's next wake-up). */
static void test_paid_mark_waits(void **state)
{
    fx *f = *state;
    uint64_t node = node_add(f, 1);
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        if (!paid_then_idle_poll(f, node, 10))
            _exit(3);
        raise(SIGKILL);
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
    efx_reopen(f);
    check(f);
    assert_int_equal(job_state(f, 1), RZ_JOB_SUCCEEDED);
    assert_int_equal(stored_owed(f, 1), RZ__OWE_NONE);
    assert_money(f, 1, 1, &node, 1);   /* 200 micros, paid once */
    assert_true(paid_then_idle_poll(f, node, 100));
    assert_int_equal(rz_engine_next_wakeup(f->e), 102 + RZ__PAID_WRITE_MS);
    rz_engine_stats before, after;
    rz_engine_stats_get(f->e, &before);
    assert_int_equal(rz_engine_tick(f->e, 101 + RZ__PAID_WRITE_MS), RZ_OK);
    assert_int_equal(stored_owed(f, 2), RZ__OWE_SETTLE);
    assert_int_equal(rz_engine_tick(f->e, 102 + RZ__PAID_WRITE_MS), RZ_OK);
    rz_engine_stats_get(f->e, &after);
    assert_int_equal(after.commits, before.commits + 1);
    assert_int_equal(stored_owed(f, 2), RZ__OWE_NONE);
    assert_money(f, 1, 2, &node, 1);
    check(f);
}

/* The stored extra records, as "key=value;" (values printed with %.*s). */
typedef struct extras { char text[256]; size_t n; } extras;

static int extra_seen(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    extras *x = arg;
    size_t at = strlen(x->text);
    snprintf(x->text + at, sizeof x->text - at, "%.*s=%zu:%.*s;", (int)kl,
             (const char *)k, vl, (int)vl, (const char *)v);
    x->n++;
    return 0;
}

static const char *extras_of(fx *f, extras *x)
{
    memset(x, 0, sizeof *x);
    assert_int_equal(rz_engine_extra_each(f->e, extra_seen, x), RZ_OK);
    return x->text;
}

/* A caller's extra records go with the engine's commit, all or nothing:
 * a crash before the group's commit loses the group's jobs and its
 * records alike. Deletes wait for a commit with a change of its own. */
static void test_extra_records_commit_with_the_engine(void **state)
{
    fx *f = *state;
    extras x;
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        bool ok = rz_engine_group_begin(f->e) == RZ_OK && submit(f, 300, 0, 1) &&
                  rz_engine_extra_put(f->e, "k1", 2, "v1", 2) == RZ_OK &&
                  rz_engine_extra_put(f->e, "k2", 2, "a\0b", 3) == RZ_OK &&
                  rz_engine_extra_put(f->e, "k0", 2, NULL, 0) == RZ_OK &&
                  rz_engine_group_commit(f->e) == RZ_OK &&
                  rz_engine_group_begin(f->e) == RZ_OK && submit(f, 300, 0, 2) &&
                  rz_engine_extra_put(f->e, "k3", 2, "v3", 2) == RZ_OK &&
                  rz_engine_extra_del(f->e, "k1", 2) == RZ_OK;
        if (!ok)
            _exit(3);
        raise(SIGKILL);   /* the second group never committed */
        _exit(6);
    }
    efx_wait_signaled(pid, SIGKILL);
    efx_reopen(f);
    check(f);
    assert_string_equal(extras_of(f, &x), "k0=0:;k1=2:v1;k2=3:a;");
    assert_int_equal(f->e->n_jobs, 1);
    /* A delete alone makes no commit of its own; the close writes it (a
     * copy deleted must not come back at the next open). */
    assert_int_equal(rz_engine_extra_del(f->e, "k1", 2), RZ_OK);
    assert_int_equal(rz_engine_extra_del(f->e, "kx", 2), RZ_OK);   /* not there */
    assert_int_equal(rz_engine_tick(f->e, 3), RZ_OK);
    assert_string_equal(extras_of(f, &x), "k0=0:;k1=2:v1;k2=3:a;");
    efx_reopen(f);
    assert_string_equal(extras_of(f, &x), "k0=0:;k2=3:a;");
    /* With a change it goes at once. */
    assert_int_equal(rz_engine_extra_del(f->e, "k2", 2), RZ_OK);
    assert_true(submit(f, 300, 0, 3) > 0);
    assert_string_equal(extras_of(f, &x), "k0=0:;");
    /* So with a compaction's commit, even one that removes nothing: the
     * copies of the jobs it removes must go with them. */
    assert_int_equal(rz_engine_extra_del(f->e, "k0", 2), RZ_OK);
    rz_engine_compacted c;
    assert_int_equal(rz_engine_compact(f->e, 5000, 1000, 10, NULL, NULL, &c), RZ_OK);
    assert_int_equal(c.jobs, 0);
    assert_string_equal(extras_of(f, &x), "");
    assert_int_equal(f->e->n_extra, 0);
    /* Bad input: refused, nothing queued. */
    char big[RZ_ENGINE_EXTRA_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    assert_int_equal(rz_engine_extra_put(f->e, NULL, 2, "v", 1), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_put(f->e, "k", 0, "v", 1), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_put(f->e, big, sizeof big, "v", 1), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_put(f->e, "k", 1, NULL, 1), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_del(f->e, "", 0), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_each(f->e, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_engine_extra_put(f->e, "k", 1, big,
                                         RZ_ENGINE_EXTRA_VAL_MAX + 1), RZ_ETOOBIG);
    assert_int_equal(rz_engine_extra_put(f->e, "k", 1, big, SIZE_MAX), RZ_ETOOBIG);
    assert_int_equal(f->e->n_extra, 0);
    /* Those waiting for a commit hold at most RZ_ENGINE_EXTRA_PENDING_MAX. */
    char *mib = calloc(1, RZ_ENGINE_EXTRA_VAL_MAX);
    assert_non_null(mib);
    int rc = RZ_OK;
    size_t n = 0;
    while ((rc = rz_engine_extra_put(f->e, "kb", 2, mib, RZ_ENGINE_EXTRA_VAL_MAX)) == RZ_OK)
        n++;
    free(mib);
    assert_int_equal(rc, RZ_ETOOBIG);
    assert_int_equal(n, RZ_ENGINE_EXTRA_PENDING_MAX / RZ_ENGINE_EXTRA_VAL_MAX - 1);
    assert_int_equal(f->e->n_extra, n);
    rz__engine_extra_clear(f->e);   /* not for the store's map */
    check(f);
}

/* A caller whose every call is in a group (the embedded runner) still
 * lets finished work leave memory: what the last commits finished goes
 * when the next group begins, as at a call outside a group. */
static void test_group_evicts(void **state)
{
    fx *f = *state;
    uint64_t q = submit(f, 300, 0, 1);
    assert_int_equal(rz__engine_live_jobs(f->e), 1);
    /* The cancel's refund marks the job paid, stored once it waited. */
    for (uint64_t now = 2; now < 3 + 2 * RZ__PAID_WRITE_MS; now += RZ__PAID_WRITE_MS) {
        assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
        if (now == 2)
            assert_int_equal(rz_engine_job_cancel(f->e, q, now), RZ_OK);
        else
            assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    }
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    assert_int_equal(job_state(f, q), RZ_JOB_CANCELLED);
    check(f);
}

/* What a group will hold is visible to the server (a withdrawal must leave
 * it), and a deployment in the same group cannot take it either. */
static void test_group_pending(void **state)
{
    fx *f = *state;
    assert_int_equal(rz_engine_group_pending(f->e, f->client), 0);
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    uint64_t j = submit(f, 9000, 0, 1);
    assert_true(j > 0);
    assert_int_equal(rz_engine_group_pending(f->e, f->client), 9000);
    assert_int_equal(rz_engine_group_pending(f->e, rz_ledger_id_make(7, 99)), 0);
    /* 1000 left after the group's hold: a 1800-cent flow does not fit. */
    const char *flow = "flux: 1\nname: g\nsteps:\n"
                       "  a: {module: count, max_cost_micros: 900, inputs: {text: x}}\n"
                       "  b: {module: count, max_cost_micros: 900, inputs: {text: y}}\n";
    uint64_t d = 0;
    assert_int_equal(rz_engine_deploy(f->e, flow, strlen(flow), f->client, NULL, 2,
                                      &d, NULL), RZ_EFUNDS);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    assert_int_equal(rz_engine_group_pending(f->e, f->client), 0);
    assert_int_equal(job_state(f, j), RZ_JOB_QUEUED);
    assert_int_equal(efx_available(f, f->client), 1000);
    check(f);
}

/* A crash between a group's ledger batch and its LMDB commit leaves holds
 * past the last job, with a gap where the ledger refused one: every one is
 * refunded, the gap kept as a cancelled job, no id reused. */
static void test_group_orphans_gap(void **state)
{
    fx *f = *state;
    rz_ledger *l = rz_engine_ledger(f->e);
    assert_int_equal(rz_ledger_hold(l, rz__engine_hold_id(1),
                     rz_engine_job_ledger_id(1), f->client, 100, 0), RZ_OK);
    assert_int_equal(rz_ledger_hold(l, rz__engine_hold_id(3),
                     rz_engine_job_ledger_id(3), f->client, 200, 0), RZ_OK);
    assert_int_equal(efx_available(f, f->client), 9700);
    efx_reopen(f);
    assert_int_equal(efx_available(f, f->client), 10000);
    for (uint64_t j = 1; j <= 3; j++)
        assert_int_equal(job_state(f, j), RZ_JOB_CANCELLED);
    check(f);
    assert_int_equal(submit(f, 10, 0, 1), 4);
    efx_reopen(f);
    check(f);
}

/* Jobs with equal requirements share one parsed copy; it lives as long as
 * one of them does (the sanitizer build sees any leak or early free). */
static void test_shared_requirements(void **state)
{
    fx *f = *state;
    uint64_t a = submit(f, 200, 0, 1), b = submit(f, 200, 0, 1);
    uint64_t c = submit(f, 300, 0, 1);   /* another max: other text */
    assert_ptr_equal(rz__engine_job(f->e, a)->reqs, rz__engine_job(f->e, b)->reqs);
    assert_ptr_not_equal(rz__engine_job(f->e, a)->reqs,
                         rz__engine_job(f->e, c)->reqs);
    assert_string_equal(rz__engine_job(f->e, a)->reqs_json,
                        "{\"max_cost_micros\":200,\"cpu_cores\":2,"
                        "\"estimate_seconds\":10}");
    uint64_t d = submit(f, 200, 0, 1);
    assert_int_equal(rz_engine_job_cancel(f->e, a, 2), RZ_OK);
    efx_reopen(f);
    assert_null(rz__engine_job(f->e, a));   /* finished: not in memory */
    assert_ptr_equal(rz__engine_job(f->e, d)->reqs, rz__engine_job(f->e, b)->reqs);
    uint64_t n = node_add(f, 3);
    rz_engine_assignment x;
    assert_int_equal(rz_engine_poll(f->e, n, 4, &x), RZ_OK);
    assert_int_equal(x.job, b);
    check(f);
}

static uint64_t submit_reqs(fx *f, const char *reqs, uint64_t max, int32_t prio)
{
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = reqs;
    s.module_id = "count";
    s.request_json = "{\"inputs\":{\"text\":\"a\"},\"config\":{}}";
    s.max_cost_micros = max;
    s.priority = prio;
    uint64_t id = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, 1, &id), RZ_OK);
    return id;
}

/* The queue is kept per requirement group; placement still follows the
 * global (priority, id) order, and a group that fits nowhere does not hold
 * the others back. */
static void test_queue_groups(void **state)
{
    fx *f = *state;
    const char *cpu = "{\"cpu_cores\":2,\"estimate_seconds\":10}";
    const char *none = "{\"labels\":{\"zone\":\"nowhere\"}}";
    uint64_t x[3];
    for (int i = 0; i < 3; i++)
        x[i] = submit_reqs(f, none, 50, 9);      /* fit no node, first */
    uint64_t b = submit_reqs(f, cpu, 300, 1);
    uint64_t c = submit_reqs(f, cpu, 400, 3);    /* another group */
    uint64_t d = submit_reqs(f, cpu, 300, 3);
    uint64_t n = node_add(f, 2);                 /* 2 slots */
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 3, &a), RZ_OK);
    assert_int_equal(a.job, c);
    assert_int_equal(job_state(f, d), RZ_JOB_ASSIGNED);
    assert_int_equal(job_state(f, b), RZ_JOB_QUEUED);
    for (int i = 0; i < 3; i++)
        assert_int_equal(job_state(f, x[i]), RZ_JOB_QUEUED);
    check(f);
    assert_int_equal(node_report(f->e, n, c, 1, "{\"n\":1}", NULL, 10, 4), RZ_OK);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
    assert_int_equal(a.job, d);
    assert_int_equal(job_state(f, b), RZ_JOB_ASSIGNED);
    assert_int_equal(rz_engine_job_cancel(f->e, x[1], 6), RZ_OK);
    check(f);
    efx_reopen(f);
    check(f);
    assert_int_equal(job_state(f, x[0]), RZ_JOB_QUEUED);
    assert_int_equal(job_state(f, x[2]), RZ_JOB_QUEUED);
}

/* A flow of "count" steps, each with its own max_cost_micros. */
static char *many_steps(size_t n, unsigned cost)
{
    size_t cap = 64 + n * 96;
    char *t = malloc(cap);
    assert_non_null(t);
    size_t len = (size_t)snprintf(t, cap, "flux: 1\nname: many\nsteps:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, cap - len,
                                "  s%zu:\n    module: count\n    max_cost_micros: %u\n"
                                "    inputs:\n      text: hi\n", i, cost);
    return t;
}

/* More steps than one ledger batch takes: held in several batches, all or
 * none (a shortfall is found before anything is held). */
static void test_deploy_many_steps(void **state)
{
    fx *f = *state;
    size_t n = RZ_LEDGER_BATCH_MAX + 810;     /* 9000 */
    char *poor = many_steps(n, 2);            /* 18000 micros > 10000 */
    uint64_t d = 0;
    assert_int_equal(rz_engine_deploy(f->e, poor, strlen(poor), f->client, NULL,
                                      1, &d, NULL), RZ_EFUNDS);
    assert_int_equal(efx_available(f, f->client), 10000);
    free(poor);
    char *text = many_steps(n, 1);
    d = efx_deploy(f, text, NULL, 2);
    free(text);
    assert_int_equal(efx_available(f, f->client), 10000 - n);
    check(f);
    assert_int_equal(rz_engine_deployment_cancel(f->e, d, 3), RZ_OK);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}

/* Memory runs out at each allocation in turn of the cancel of a 20-step
 * deployment, two of its steps running (each of the first 100, then one
 * in 11); then a crash, or not. The cancel is whole or not made: the jobs, the run and the ledger
 * agree, before a reopen and after, and once cancelled every hold is
 * given back. */
static void test_cancel_out_of_memory_keeps_money(void **state)
{
    char *text = many_steps(20, 100);
    long failed = 0, points = 0;
    for (long n = 1, past = 0; !past; n += n < 100 ? 1 : 11, points++) {
        fx *f = *state;
        uint64_t node = node_add(f, 0);
        uint64_t d = efx_deploy(f, text, NULL, 1);
        rz_engine_assignment a;
        for (int k = 0; k < 2; k++)   /* two steps running, the rest queued */
            assert_int_equal(rz_engine_poll(f->e, node, 1, &a), RZ_OK);
        rz__alloc_fail_at(n, false);
        int rc = rz_engine_deployment_cancel(f->e, d, 2);
        past = rz__alloc_calls() < n;
        rz__alloc_fail_at(0, false);
        failed += rc != RZ_OK;
        rz_ledger_account acc;
        if (f->e->broken || n % 2 ||   /* the engine's, or its ledger's, write failed */
            rz_ledger_balance(rz_engine_ledger(f->e), f->client, &acc) == RZ_ESTATE)
            crash_reopen(f);
        check(f);
        money_whole(f, 10000);
        rz_run_state rs;
        assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
        if (rs == RZ_RUN_RUNNING)
            assert_int_equal(rz_engine_deployment_cancel(f->e, d, 3), RZ_OK);
        else   /* pays what a payment that failed left owing */
            assert_int_equal(rz_engine_tick(f->e, 3), RZ_OK);
        check(f);
        money_whole(f, 10000);
        assert_int_equal(efx_available(f, f->client), 10000);
        crash_reopen(f);
        check(f);
        assert_int_equal(efx_available(f, f->client), 10000);
        teardown(state);
        assert_int_equal(setup(state), 0);
    }
    free(text);
    fprintf(stderr, "cancel out of memory: %ld points, %ld failed\n", points, failed);
    assert_true(failed > 3);
}

static uint64_t job_node(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    return ji.node;
}


static const char *waiting_reason(fx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    return ji.waiting_reason;
}

/* A queued job that no active node can run says why, per constraint, from
 * its submission on; the reason follows the nodes and is gone once the job
 * is placed. Past its queue timeout such a job fails with that reason and
 * is fully refunded; a reopened engine keeps the deadline. */
static void test_waiting_reason_queue_timeout(void **state)
{
    fx *f = *state;
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = "{\"adapter\":\"docker\",\"estimate_seconds\":10}";
    s.module_id = "count";
    s.max_cost_micros = 300;
    s.queue_timeout_ms = 5000;
    uint64_t dk = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, 10, &dk), RZ_OK);
    assert_string_equal(waiting_reason(f, dk), "no active node");
    uint64_t n = node_add(f, 20);
    uint64_t ok = submit(f, 300, 0, 30);   /* fits the process node */
    assert_null(waiting_reason(f, ok));
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 40, &a), RZ_OK);
    assert_int_equal(a.job, ok);
    assert_null(waiting_reason(f, ok));    /* placed: no reason */
    assert_string_equal(waiting_reason(f, dk),
                        "no node offers adapter 'docker'");
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, dk, &ji), RZ_OK);
    assert_int_equal(ji.queue_deadline_ms, 5010);
    assert_int_equal(rz_engine_next_wakeup(f->e), 1041);   /* heartbeat first */
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 1000, 0), RZ_OK);
    assert_int_equal(node_report(f->e, n, ok, 1, "{\"n\":1}", NULL, 10000, 1000), RZ_OK);
    efx_reopen(f);   /* the deadline is stored; the reason is worked out again */
    assert_null(waiting_reason(f, dk));
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 5000, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 5009), RZ_OK);
    assert_int_equal(job_state(f, dk), RZ_JOB_QUEUED);
    assert_string_equal(waiting_reason(f, dk),
                        "no node offers adapter 'docker'");
    assert_int_equal(rz_engine_next_wakeup(f->e), 5010);
    assert_int_equal(rz_engine_tick(f->e, 5010), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, dk, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_null(ji.waiting_reason);
    assert_string_equal(ji.error, "no node could run it within 5 s: no node "
                        "offers adapter 'docker'");
    assert_int_equal(efx_available(f, f->client), 10000 - 200);   /* ok's cost only */
    check(f);
}

/* The options' default applies to jobs without their own; a flow step's
 * queue_timeout_s fails it through its run, like a timeout. */
static void test_queue_timeout_default_and_step(void **state)
{
    fx *f = *state;
    rz_engine_close(f->e);
    f->e = NULL;
    rz_engine_opts o = f->opts;
    o.queue_timeout_ms = 2000;
    assert_int_equal(rz_engine_open(&f->e, f->dir, &o), RZ_OK);
    uint64_t j = submit(f, 300, 0, 100);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.queue_deadline_ms, 2100);
    assert_int_equal(rz_engine_tick(f->e, 2100), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_string_equal(ji.error, "no node could run it within 2 s: "
                        "no active node");
    const char *flow =
        "flux: 1\nname: q\nsteps:\n"
        "  s:\n    module: count@1.0.0\n    inputs: {text: \"x\"}\n"
        "    queue_timeout_s: 1\n";
    uint64_t d = efx_deploy(f, flow, NULL, 3000);
    assert_int_equal(rz_engine_tick(f->e, 3999), RZ_OK);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_RUNNING);
    assert_int_equal(rz_engine_tick(f->e, 4000), RZ_OK);
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    cJSON *doc = efx_status(f, d);
    assert_string_equal(step_field(doc, "s", "error"),
                        "no node could run it within 1 s: no active node");
    cJSON_Delete(doc);
    assert_int_equal(efx_available(f, f->client), 10000);
    check(f);
}


/* An ad-hoc job carries its exec to the node's assignment, across a
 * reopen; a malformed exec is refused with nothing held. */
static void test_adhoc_exec(void **state)
{
    fx *f = *state;
    const char *x = "{\"adapter\":\"docker\",\"image\":\"localhost/wc\","
                    "\"command\":[\"true\"]}";
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = "{\"cpu_cores\":1}";
    s.max_cost_micros = 50;
    s.exec_json = "{\"adapter\":\"docker\"}";
    uint64_t id = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, 1, &id), RZ_EINVALID);
    assert_int_equal(efx_available(f, f->client), 10000);
    s.exec_json = x;
    assert_int_equal(rz_engine_submit(f->e, &s, 1, &id), RZ_OK);
    efx_reopen(f);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, id, &ji), RZ_OK);
    assert_string_equal(ji.exec_json, x);
    uint64_t n = node_add(f, 2);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 3, &a), RZ_OK);
    assert_int_equal(a.job, id);
    assert_string_equal(a.exec_json, x);
    uint64_t m = submit(f, 300, 0, 4);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
    assert_int_equal(a.job, m);
    assert_null(a.exec_json);   /* a module job */
    check(f);
}

/* Equal nodes: a waiting one gets the next job; its first placement ends
 * its wait; without waiting nodes the policy's order is unchanged. */
static void test_waiting_nodes(void **state)
{
    fx *f = *state;
    uint64_t n1 = node_add(f, 1), n2 = node_add(f, 1), n3 = node_add(f, 1);
    uint64_t j1 = submit(f, 500, 0, 2);
    assert_int_equal(rz_engine_tick(f->e, 2), RZ_OK);
    assert_int_equal(job_node(f, j1), n1);   /* cheapest, then added first */
    assert_int_equal(rz_engine_node_waiting(f->e, n3, 1), RZ_OK);
    uint64_t j2 = submit(f, 500, 0, 3);
    assert_int_equal(rz_engine_tick(f->e, 3), RZ_OK);
    assert_int_equal(job_node(f, j2), n3);
    uint64_t j3 = submit(f, 500, 0, 4);   /* n3's wait ended with j2 */
    assert_int_equal(rz_engine_tick(f->e, 4), RZ_OK);
    assert_int_equal(job_node(f, j3), n1);
    /* Two waiting, three jobs in one pass: one each, then the policy. */
    assert_int_equal(rz_engine_node_waiting(f->e, n2, 1), RZ_OK);
    assert_int_equal(rz_engine_node_waiting(f->e, n3, 1), RZ_OK);
    uint64_t j4 = submit(f, 500, 0, 5), j5 = submit(f, 500, 0, 5);
    uint64_t j6 = submit(f, 500, 0, 5);
    assert_int_equal(rz_engine_tick(f->e, 5), RZ_OK);
    assert_int_equal(job_node(f, j4), n2);
    assert_int_equal(job_node(f, j5), n3);
    assert_int_equal(job_node(f, j6), n2);   /* n1 is full (2 slots) */
    /* A full node's wait changes nothing; a withdrawn wait is forgotten. */
    assert_int_equal(rz_engine_job_cancel(f->e, j5, 6), RZ_OK);
    assert_int_equal(rz_engine_job_cancel(f->e, j6, 6), RZ_OK);
    assert_int_equal(rz_engine_node_waiting(f->e, n1, 1), RZ_OK);
    assert_int_equal(rz_engine_node_waiting(f->e, n3, 1), RZ_OK);
    assert_int_equal(rz_engine_node_waiting(f->e, n3, 0), RZ_OK);
    uint64_t j7 = submit(f, 500, 0, 6);
    assert_int_equal(rz_engine_tick(f->e, 6), RZ_OK);
    assert_int_equal(job_node(f, j7), n2);
    assert_int_equal(rz_engine_node_waiting(f->e, 99, 1), RZ_ENOENT);
    assert_int_equal(rz_engine_node_deregister(f->e, n1, 7), RZ_OK);
    assert_int_equal(rz_engine_node_waiting(f->e, n1, 1), RZ_OK);   /* gone */
    check(f);
    /* Not state: after a restart no node waits. */
    uint64_t n4 = node_add(f, 8), n5 = node_add(f, 8);
    assert_int_equal(rz_engine_node_waiting(f->e, n5, 1), RZ_OK);
    efx_reopen(f);
    uint64_t j8 = submit(f, 500, 0, 9);
    assert_int_equal(rz_engine_tick(f->e, 9), RZ_OK);
    assert_int_equal(job_node(f, j8), n4);
    check(f);
}

/* ---- a node registering again (its key bound to its id) ---- */

#define ONE_SLOT_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":1}"

static bool caps_have(fx *f, uint64_t node, const char *text)
{
    char *caps = NULL;
    assert_int_equal(rz_engine_node_caps(f->e, node, &caps), RZ_OK);
    bool yes = strstr(caps, text) != NULL;
    rz_free(caps);
    return yes;
}

static void test_lost_node_rejoins_with_its_account(void **state)
{
    fx *f = *state;
    uint64_t a, j = job_running(f, 500, 1, &a);
    rz_engine_assignment as;
    assert_int_equal(node_report(f->e, a, j, 1, "{\"n\":1}", NULL, 10000, 3), RZ_OK);
    uint64_t earned = efx_available(f, rz_engine_node_account(a));
    assert_true(earned > 0);
    assert_int_equal(rz_engine_tick(f->e, 1500), RZ_OK);
    rz_engine_node_info ni;
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_LOST);
    assert_int_equal(rz_engine_node_heartbeat(f->e, a, 1600, 0), RZ_ESTATE);
    assert_int_equal(rz_engine_node_rejoin(f->e, a, ONE_SLOT_CAPS,
                                           strlen(ONE_SLOT_CAPS), 1700), RZ_OK);
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_ACTIVE);
    assert_true(rz_ledger_id_equal(ni.account, rz_engine_node_account(a)));
    assert_int_equal(efx_available(f, rz_engine_node_account(a)), earned);
    assert_int_equal(rz_engine_node_count(f->e), 1);
    assert_true(caps_have(f, a, "\"max_concurrent_jobs\":1"));
    /* Placed on again, with its new capabilities. */
    uint64_t k = submit(f, 500, 0, 1800);
    assert_int_equal(rz_engine_poll(f->e, a, 1800, &as), RZ_OK);
    assert_int_equal(as.job, k);
    check(f);
}

static void test_lost_node_rejoins_after_reopen(void **state)
{
    fx *f = *state;
    uint64_t a = node_add(f, 0);
    assert_int_equal(rz_engine_tick(f->e, 1500), RZ_OK);
    efx_reopen(f);   /* the matcher is rebuilt without the lost node */
    assert_int_equal(rz_engine_node_rejoin(f->e, a, NODE_CAPS, strlen(NODE_CAPS),
                                           2000), RZ_OK);
    uint64_t k = submit(f, 500, 0, 2001);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, a, 2002, &as), RZ_OK);
    assert_int_equal(as.job, k);
    efx_reopen(f);   /* and it stays active */
    rz_engine_node_info ni;
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_ACTIVE);
    check(f);
}

static void test_active_node_holding_a_job_keeps_its_caps(void **state)
{
    fx *f = *state;
    uint64_t a = node_add(f, 0);
    uint64_t j = submit(f, 500, 0, 1);
    rz_engine_assignment as;
    assert_int_equal(rz_engine_poll(f->e, a, 2, &as), RZ_OK);
    assert_int_equal(rz_engine_node_rejoin(f->e, a, ONE_SLOT_CAPS,
                                           strlen(ONE_SLOT_CAPS), 900), RZ_OK);
    assert_true(caps_have(f, a, "\"max_concurrent_jobs\":2"));
    assert_int_equal(job_state(f, j), RZ_JOB_RUNNING);
    /* It counted as a sign of life: not lost at 1500. */
    assert_int_equal(rz_engine_tick(f->e, 1500), RZ_OK);
    assert_int_equal(node_report(f->e, a, j, 1, "{\"n\":1}", NULL, 10000, 1600), RZ_OK);
    /* Holding nothing, it takes the new capabilities. */
    assert_int_equal(rz_engine_node_rejoin(f->e, a, ONE_SLOT_CAPS,
                                           strlen(ONE_SLOT_CAPS), 1700), RZ_OK);
    assert_true(caps_have(f, a, "\"max_concurrent_jobs\":1"));
    uint64_t k = submit(f, 500, 0, 1800);
    assert_int_equal(rz_engine_poll(f->e, a, 1800, &as), RZ_OK);
    assert_int_equal(as.job, k);
    check(f);
}

static void test_rejoin_gone_unknown_and_bad_caps(void **state)
{
    fx *f = *state;
    uint64_t a = node_add(f, 0);
    assert_int_equal(rz_engine_node_deregister(f->e, a, 10), RZ_OK);
    assert_int_equal(rz_engine_node_rejoin(f->e, a, "{", 1, 20), RZ_ESYNTAX);
    rz_engine_node_info ni;
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_GONE);
    assert_int_equal(rz_engine_node_rejoin(f->e, a, NODE_CAPS, strlen(NODE_CAPS),
                                           30), RZ_OK);
    assert_int_equal(rz_engine_node_get(f->e, a, &ni), RZ_OK);
    assert_int_equal(ni.state, RZ_NODE_ACTIVE);
    assert_int_equal(rz_engine_node_rejoin(f->e, 99, NODE_CAPS, strlen(NODE_CAPS),
                                           40), RZ_ENOENT);
    check(f);
}


/* A service's readiness and events are step events: each event is taken
 * once (a node's repeat changes nothing, before or after a reopen), each
 * listener runs once per event with the event's data, and the flow ends
 * when the service has ended and every event was handled. */
static void desk_status_checked(fx *f, uint64_t d);

static void test_deploy_service_events(void **state)
{
    fx *f = *state;
    static const char *desk =
        "flux: 1\nname: desk\ninputs:\n  text: {type: string, required: true}\n"
        "steps:\n"
        "  hb: {module: svc@1.0.0, kind: service, ready: line, restart: {policy: never},"
        " inputs: {text: \"${{ inputs.text }}\"}}\n"
        "  gate: {module: count@1.0.0, needs: [hb], inputs: {text: go}}\n"
        "  ann: {module: count@1.0.0, on: {event: steps.hb.events.trade},"
        " inputs: {text: \"${{ event.data.t }} ${{ event.id }}\"}}\n";
    uint64_t n = node_add(f, 0);
    uint64_t d = deploy(f, desk, 1);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 2, &a), RZ_OK);
    assert_string_equal(a.step, "hb");
    uint64_t hb = a.job;
    uint32_t att = a.attempt;
    /* Not ready: nothing else may start; then ready, once. */
    assert_int_equal(rz_engine_poll(f->e, n, 3, &a), RZ_ENOENT);
    assert_int_equal(rz_engine_report_ready(f->e, n, hb, att, 4), RZ_OK);
    assert_int_equal(rz_engine_report_ready(f->e, n, hb, att, 4), RZ_OK);
    assert_int_equal(rz_engine_report_ready(f->e, n + 7, hb, att, 4), RZ_ESTATE);
    assert_int_equal(rz_engine_poll(f->e, n, 5, &a), RZ_OK);
    assert_string_equal(a.step, "gate");
    assert_int_equal(node_report(f->e, n, a.job, a.attempt, "{\"n\":1}", NULL, 10, 6),
                     RZ_OK);
    int rep = -1;
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 1, NULL, "trade",
                                            "{\"t\":\"a b\"}", 7, &rep), RZ_OK);
    assert_int_equal(rep, 0);
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 1, NULL, "trade",
                                            "{\"t\":\"a b\"}", 8, &rep), RZ_OK);
    assert_int_equal(rep, 1);
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 2, NULL, "bad name",
                                            NULL, 8, NULL), RZ_EINVALID);
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 2, NULL, "trade",
                                            "{nope", 8, NULL), RZ_EINVALID);
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 2, NULL, "quote",
                                            "1", 9, NULL), RZ_OK);   /* no listener */
    efx_reopen(f);   /* the events are on disk; a repeat after it is still one */
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 1, NULL, "trade",
                                            "{\"t\":\"a b\"}", 10, &rep), RZ_OK);
    assert_int_equal(rep, 1);
    assert_int_equal(rz_engine_report_event(f->e, n, hb, att, 3, NULL, "trade",
                                            "{\"t\":\"c\"}", 11, &rep), RZ_OK);
    assert_int_equal(rep, 0);
    check(f);
    /* One run per event, with its data. */
    const char *want[] = { "a b hb:1", "c hb:3" };
    for (int k = 0; k < 2; k++) {
        assert_int_equal(rz_engine_poll(f->e, n, 12, &a), RZ_OK);
        assert_string_equal(a.step, "ann");
        cJSON *req = cJSON_Parse(a.request_json);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "inputs"),
                                                "text")->valuestring, want[k]);
        cJSON_Delete(req);
        assert_int_equal(node_report(f->e, n, a.job, a.attempt, "{\"n\":2}", NULL,
                                     10, 13), RZ_OK);
    }
    assert_int_equal(rz_engine_poll(f->e, n, 14, &a), RZ_ENOENT);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_RUNNING);   /* the service still runs */
    assert_int_equal(node_report(f->e, n, hb, att, "{}", NULL, 10, 15), RZ_OK);
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    desk_status_checked(f, d);
}

/* A service's node lost while it runs is a failed attempt of the step: it
 * counts against max_restarts, so the second loss (max_restarts 1) fails
 * the service with the reason, where a batch job would be requeued. */
static void test_service_node_lost_counts_restart(void **state)
{
    fx *f = *state;
    static const char *flow =
        "flux: 1\nname: lost\ninputs:\n  text: {type: string, required: true}\n"
        "steps:\n"
        "  hb: {module: svc@1.0.0, kind: service,"
        " restart: {policy: on-failure, max_restarts: 1, backoff_ms: 0},"
        " inputs: {text: \"${{ inputs.text }}\"}}\n";
    uint64_t d = deploy(f, flow, 1);
    rz_engine_assignment a;
    for (int k = 0; k < 2; k++) {
        uint64_t n = node_add(f, 2 + 10 * (uint64_t)k);
        assert_int_equal(rz_engine_poll(f->e, n, 3 + 10 * (uint64_t)k, &a), RZ_OK);
        assert_string_equal(a.step, "hb");
        assert_int_equal(rz_engine_node_deregister(f->e, n, 4 + 10 * (uint64_t)k),
                         RZ_OK);
        (void)!rz_engine_tick(f->e, 5 + 10 * (uint64_t)k);
    }
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    cJSON *doc = efx_status(f, d);
    cJSON *hb = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "hb");
    assert_int_equal(cJSON_GetObjectItem(hb, "attempts")->valueint, 2);
    assert_string_equal(cJSON_GetObjectItem(hb, "error")->valuestring,
                        "its node was lost");
    cJSON_Delete(doc);
    efx_reopen(f);   /* replayed the same */
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    check(f);
}

/* The finished desk: two runs, the second of event hb:3; three events. */
static void desk_status_checked(fx *f, uint64_t d)
{
    cJSON *doc = efx_status(f, d);
    cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), "ann");
    cJSON *runs = cJSON_GetObjectItem(ann, "runs");
    assert_int_equal(cJSON_GetArraySize(runs), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(runs, 1),
                                            "event_id")->valuestring, "hb:3");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(
        cJSON_GetObjectItem(doc, "steps"), "hb"), "events")->valueint, 3);
    cJSON_Delete(doc);
    check(f);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* A call failing part-way (out of memory at each allocation in turn). */
static int failure_point_tests(void)
{
    const struct CMUnitTest tests[] = {
        T(test_replicated_step_verdict_out_of_memory),
        T(test_for_each_out_of_memory_then_crash),
        T(test_every_failure_point_keeps_money),
        T(test_cancel_out_of_memory_keeps_money),
        T(test_open_out_of_memory_replays_whole),
        T(test_failed_payment_stays_owed),
        T(test_succeeded_call_stored_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_settle_exact),
        T(test_run_time_bounded),
        T(test_client_open),
        T(test_lost_node_rejoins_with_its_account),
        T(test_lost_node_rejoins_after_reopen),
        T(test_active_node_holding_a_job_keeps_its_caps),
        T(test_rejoin_gone_unknown_and_bad_caps),
        T(test_failed_job_is_refunded),
        T(test_cancel_queued_job_is_refunded_once),
        T(test_cancel_running_job_refuses_its_late_result),
        T(test_insufficient_funds_change_nothing),
        T(test_hostile_submit_changes_nothing),
        T(test_hostile_node_calls_change_nothing),
        T(test_priority_fifo),
        T(test_lost_node),
        T(test_stale_duplicate),
        T(test_deploy_fanout),
        T(test_deploy_service_events),
        T(test_service_node_lost_counts_restart),
        T(test_deploy_join),
        T(test_deploy_on_exit_outputs),
        T(test_deploy_invalid_flow_gives_diagnostics),
        T(test_deploy_refuses_unparseable_text),
        T(test_deploy_refuses_a_missing_required_input),
        T(test_deploy_without_funds_for_every_step_holds_nothing),
        T(test_deploy_many_steps),
        T(test_deploy_timeout_cancel),
        T(test_restart_close),
        T(test_restart_sigkill),
        T(test_for_each_jobs),
        T(test_reuse_map_keys_once),
        T(test_for_each_killed_after_fan_out),
        T(test_for_each_crash_before_commit),
        T(test_for_each_no_funds),
        T(test_orphan_hold),
        T(test_timeout_reason),
        T(test_status_job_view),
        T(test_decline),
        T(test_decline_exhausts),
        T(test_job_list_newest_first_by_client),
        T(test_job_list_pages_and_caps),
        T(test_job_times),
        T(test_deployment_get_and_list),
        T(test_read_back_cache_bounded),
        T(test_node_caps),
        T(test_reference_cost_is_what_a_step_holds),
        T(test_reference_cost_refuses_bad_json),
        T(test_group_commit),
        T(test_group_evicts),
        T(test_group_pending),
        T(test_group_orphans_gap),
        T(test_shared_requirements),
        T(test_queue_groups),
        T(test_waiting_nodes),
        T(test_waiting_reason_queue_timeout),
        T(test_queue_timeout_default_and_step),
        T(test_adhoc_exec),
        T(test_finished_leave_memory),
        T(test_paid_mark_waits),
        T(test_extra_records_commit_with_the_engine),
        T(test_result_due_frees_the_slot),
        T(test_results_due_bounded),
        T(test_results_due_bounded_by_reservations),
        T(test_deploy_lazy_records),
        T(test_deploy_replicated_records),
        T(test_status_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) + failure_point_tests();
}
