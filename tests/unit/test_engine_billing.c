/* Billing by time (lib/engine/billing.c, docs/services.md): a service
 * step with a budget holds one interval at a time, is paid interval by
 * interval on a clock the test drives, stops with its reason when the
 * balance cannot hold the next interval or its hours are spent, restarts
 * on another node when its node is lost (counted against max_restarts,
 * no interval paid twice), and survives a kill -9 at every commit of a
 * roll-over with every interval settled exactly once. The ledger's and
 * the engine's invariants (rz_engine_check: double entry, holds) are
 * checked after every call that moves money. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "ledger/ledger_impl.h"
#include "rhizos/engine.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "helpers.h"
#include "engine_fixture.h"

/* 36,000 micros per core-hour; the service asks 1 core: a minute on the
 * node costs exactly 600 micros, of which the fee is 30. */
#define NODE_CAPS EFX_NODE_CAPS
#define MIN 60000u
#define CREDIT 10000u

/* 72,000 micros an hour at most: a minute's hold is 1,200 micros. */
static const char *FLOW =
    "flux: 1\nname: billed\nsteps:\n"
    "  hb:\n    module: svc@1.0.0\n    kind: service\n"
    "    restart: {policy: on-failure, max_restarts: 1, backoff_ms: 10}\n"
    "    budget: {max_micros_per_hour: 72000, interval_s: 60}\n"
    "    inputs: {text: x}\n";

typedef efx fx;

static void reopen(fx *f)
{
    efx_reopen(f);
}

static int setup(void **state)
{
    static const efx_module svc = { "svc", EFX_TEXT_IN, "[]", NULL, NULL };
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 30000;
    o.ref_cpu_hour_micros = 36000;
    *state = efx_new("billing", &svc, 1, &o, CREDIT);
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static void check(fx *f)
{
    efx_check(f);
    assert_int_equal(rz_ledger_verify(rz_engine_ledger(f->e)), RZ_OK);
}

static uint64_t avail(fx *f, rz_ledger_id id)
{
    rz_ledger_account a;
    if (rz_ledger_balance(rz_engine_ledger(f->e), id, &a) != RZ_OK)
        return 0;
    return rz_ledger_available(&a);
}

static uint64_t node_add(fx *f, uint64_t now)
{
    return efx_node_add(f, NODE_CAPS, now);
}

static uint64_t deploy(fx *f, const char *text, uint64_t now)
{
    return efx_deploy(f, text, NULL, now);
}

static cJSON *step_view(fx *f, uint64_t d, const char *step)
{
    cJSON *doc = efx_status(f, d);
    cJSON *s = cJSON_DetachItemFromObject(cJSON_GetObjectItem(doc, "steps"), step);
    cJSON_Delete(doc);
    assert_non_null(s);
    return s;
}

static double billing(cJSON *view, const char *key)
{
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(view, "billing"), key);
    assert_non_null(v);
    return v->valuedouble;
}

static bool stopped(fx *f, uint64_t job, uint64_t node)
{
    rz_engine_event ev;
    bool seen = false;
    while (rz_engine_next_event(f->e, &ev))
        seen |= ev.type == RZ_EV_JOB_STOP && ev.job == job && ev.node == node;
    return seen;
}

/* No money is held in the ledger's escrow. */
static void nothing_held(fx *f)
{
    rz_ledger_stats ls;
    assert_int_equal(rz_ledger_stats_get(rz_engine_ledger(f->e), &ls), RZ_OK);
    assert_int_equal(ls.escrow_held_micros, 0);
}

/* A fixture made anew: the test's next case starts clean. */
static fx *fresh(void **state)
{
    teardown(state);
    setup(state);
    return *state;
}

/* A service billed by time: the node that runs it, its deployment, and
 * the node's assignment (the job, its attempt). */
typedef struct billed {
    uint64_t n, d;
    rz_engine_assignment a;
} billed;

/* `flow` deployed at 0 on a node of its own (registered at 0), which takes
 * it at `start`: its first interval runs from then. */
static billed bill_service(fx *f, const char *flow, uint64_t start)
{
    billed b = { node_add(f, 0), deploy(f, flow, 0), { 0 } };
    int rc = rz_engine_poll(f->e, b.n, start, &b.a);
    if (rc != RZ_OK) {
        rz_engine_job_info ji;
        (void)!rz_engine_job_get(f->e, 1, &ji);
        fprintf(stderr, "poll: %s; job 1 %s %s %s\n", rz_error_last()->message,
                rz_job_state_name(ji.state), ji.waiting_reason ? ji.waiting_reason : "",
                rz_engine_job_requirements(f->e, 1));
    }
    assert_int_equal(rc, RZ_OK);
    return b;
}

/* Node n beats and the engine ticks at from, from + step, ... up to until. */
static void bill_run(fx *f, uint64_t n, uint64_t from, uint64_t until, uint64_t step)
{
    for (uint64_t now = from; now <= until; now += step) {
        assert_int_equal(rz_engine_node_heartbeat(f->e, n, now, 0), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
}

/* FLOW taken at 1000, and its first interval's roll-over decided in a
 * group at 1000 + MIN (the orchestrator ticks inside its pass): owed,
 * paid only at the group's commit, which the caller makes. */
static billed roll_over_owed(fx *f)
{
    billed b = bill_service(f, FLOW, 1000);
    uint64_t now = 1000 + MIN;
    assert_int_equal(rz_engine_node_heartbeat(f->e, b.n, now, 0), RZ_OK);
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);   /* decided, owed */
    return b;
}

/* Deployment d failed, its step "hb" stopped by the money with `error`
 * after `intervals` paid `paid` micros: the step's view (cJSON_Delete it). */
static cJSON *stopped_view(fx *f, uint64_t d, const char *error, int intervals,
                           int paid)
{
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    cJSON *v = step_view(f, d, "hb");
    assert_string_equal(cJSON_GetObjectItem(v, "status")->valuestring, "failed");
    assert_string_equal(cJSON_GetObjectItem(v, "error")->valuestring, error);
    assert_int_equal((int)billing(v, "intervals_paid"), intervals);
    assert_int_equal((int)billing(v, "paid_micros"), paid);
    return v;
}

/* After the 15th interval: the step failed for good with its reason, the
 * money exact, and a reopen changes nothing. */
static void exhausted_checked(fx *f, uint64_t d, uint64_t hb, uint64_t n,
                              uint32_t attempt, uint64_t end)
{
    cJSON *v = stopped_view(f, d, "budget exhausted: 15 intervals paid ($0.009000); the "
                            "balance ($0.001000) cannot cover the next ($0.001200)",
                            15, 9000);
    assert_int_equal(cJSON_GetObjectItem(v, "attempts")->valueint, 1);   /* no restart */
    cJSON_Delete(v);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, hb, &ji), RZ_OK);
    assert_int_equal(ji.cost_micros, 9000);   /* every interval, the last too */
    assert_int_equal(ji.max_cost_micros, 1200);
    /* Exact: 15 x 600 paid, 95% to the node, 5% fee; nothing held. */
    assert_int_equal(avail(f, f->client), CREDIT - 9000);
    assert_int_equal(avail(f, rz_engine_node_account(n)), 15u * 570);
    assert_int_equal(avail(f, RZ_LEDGER_PLATFORM_ID), 15u * 30);
    nothing_held(f);
    /* The node's late result changes nothing; a reopen replays the stop. */
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = attempt;
    assert_int_equal(rz_engine_report_result(f->e, n, hb, &r, end + 5, NULL), RZ_ESTATE);
    reopen(f);
    check(f);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    assert_int_equal(avail(f, f->client), CREDIT - 9000);
}

/* The node keeps beating and the clock moves a minute at a time; every
 * interval is paid once, the balance falls by 600 each, and the 15th
 * cannot be followed: 10,000 - 1,200 held leaves 8,800, which pays 14
 * roll-overs of 600 with 400 left; with the 15th's remainder back (600)
 * the balance is 1,000 < 1,200. */
static void test_intervals_paid_until_the_balance_runs_out(void **state)
{
    fx *f = *state;
    billed b = bill_service(f, FLOW, 1000);
    uint64_t n = b.n, d = b.d, hb = b.a.job;
    assert_int_equal(avail(f, f->client), CREDIT - 1200);
    assert_string_equal(b.a.step, "hb");
    assert_int_equal(rz__bill_next(f->e), 1000 + MIN);
    /* Not yet a minute: nothing is paid. */
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 1000 + MIN - 1, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 1000 + MIN - 1), RZ_OK);
    assert_int_equal(avail(f, rz_engine_node_account(n)), 0);
    for (uint32_t k = 1; k <= 14; k++) {
        uint64_t now = 1000 + (uint64_t)k * MIN;
        assert_int_equal(rz_engine_node_heartbeat(f->e, n, now, 0), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);   /* once, not twice */
        check(f);
        assert_int_equal(avail(f, rz_engine_node_account(n)), 570u * k);
        assert_int_equal(avail(f, RZ_LEDGER_PLATFORM_ID), 30u * k);
        assert_int_equal(avail(f, f->client), CREDIT - 600u * k - 1200);
        cJSON *v = step_view(f, d, "hb");
        assert_int_equal((int)billing(v, "intervals_paid"), (int)k);
        assert_int_equal((int)billing(v, "paid_micros"), (int)(600 * k));
        assert_int_equal((int)billing(v, "interval_hold_micros"), 1200);
        cJSON_Delete(v);
    }
    assert_false(stopped(f, hb, n));
    uint64_t end = 1000 + 15u * MIN;
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, end, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, end), RZ_OK);
    check(f);
    assert_true(stopped(f, hb, n));   /* the node is told to stop it */
    exhausted_checked(f, d, hb, n, b.a.attempt, end);
}

/* hours: 1 at 10-minute intervals: six intervals, then it stops, spent. A
 * service that exits by itself pays its last interval pro rata. */
static void test_hours_spent_and_a_clean_exit(void **state)
{
    fx *f = *state;
    assert_int_equal(rz_ledger_test_credit(rz_engine_ledger(f->e),
                                           rz_ledger_id_make(7, 3), f->client,
                                           90000), RZ_OK);
    static const char *hours =
        "flux: 1\nname: h\nsteps:\n"
        "  hb:\n    module: svc@1.0.0\n    kind: service\n    restart: {policy: never}\n"
        "    budget: {max_cents_per_hour: 4, hours: 1, interval_s: 600}\n"
        "    inputs: {text: x}\n";
    billed b = bill_service(f, hours, 0);
    uint64_t n = b.n, d = b.d;
    bill_run(f, n, 10000, 3600000, 10000);
    check(f);
    cJSON *v = step_view(f, d, "hb");
    /* 40,000 micros an hour: 6,667 held a interval; the node's 6,000 paid. */
    assert_int_equal((int)billing(v, "interval_hold_micros"), 6667);
    assert_int_equal((int)billing(v, "intervals_paid"), 6);
    assert_string_equal(cJSON_GetObjectItem(v, "error")->valuestring,
                        "budget spent: its 1 hours ran out (6 intervals paid, $0.036000)");
    cJSON_Delete(v);
    assert_int_equal(avail(f, f->client), CREDIT + 90000 - 36000);

    /* A second one exits 0 after 90 s, in its first 10-minute interval:
     * the node's price for 90 s, 900 micros. */
    uint64_t d2 = deploy(f, hours, 4000000);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 4000000, &a), RZ_OK);
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = a.attempt;
    r.run_ms = 90000;
    assert_int_equal(rz_engine_report_result(f->e, n, a.job, &r, 4090000, NULL), RZ_OK);
    check(f);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d2, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_SUCCEEDED);
    v = step_view(f, d2, "hb");
    assert_int_equal((int)billing(v, "intervals_paid"), 1);
    assert_int_equal((int)billing(v, "paid_micros"), 900);
    cJSON_Delete(v);
    assert_int_equal(avail(f, f->client), CREDIT + 90000 - 36000 - 900);
}

/* Node A runs two intervals and half a third, then goes silent: the
 * service restarts on B (an attempt of its max_restarts 1), A's half
 * interval is not paid, and the third interval runs on B from B's start.
 * B lost too: no restarts left, the step fails; every hold is closed. */
static void test_node_lost_restarts_counted_never_billed_twice(void **state)
{
    fx *f = *state;
    billed b = bill_service(f, FLOW, 0);
    uint64_t na = b.n, d = b.d, hb = b.a.job;
    bill_run(f, na, 0, 150000, 10000);
    uint64_t now = 160000;
    check(f);
    assert_int_equal(avail(f, rz_engine_node_account(na)), 2u * 570);
    uint64_t nb = node_add(f, now);
    /* A is silent from 150 s: lost after 30 s. */
    for (; now <= 200000; now += 10000) {
        assert_int_equal(rz_engine_node_heartbeat(f->e, nb, now, 0), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    cJSON *v = step_view(f, d, "hb");
    assert_int_equal(cJSON_GetObjectItem(v, "attempts")->valueint, 2);
    cJSON_Delete(v);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, nb, now, &a), RZ_OK);
    assert_int_equal(a.job, hb);
    uint64_t b_start = now;
    bill_run(f, nb, b_start, b_start + 70000, 10000);
    now = b_start + 80000;
    check(f);
    /* Interval 3 ran on B (a whole minute from its start); A got nothing
     * for its half. */
    assert_int_equal(avail(f, rz_engine_node_account(na)), 2u * 570);
    assert_int_equal(avail(f, rz_engine_node_account(nb)), 570u);
    /* B goes silent too: its restarts are spent. */
    for (now += 40000; now < b_start + 200000; now += 10000)
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    check(f);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_int_equal(rs, RZ_RUN_FAILED);
    v = step_view(f, d, "hb");
    assert_string_equal(cJSON_GetObjectItem(v, "error")->valuestring, "its node was lost");
    assert_int_equal((int)billing(v, "intervals_paid"), 3);
    cJSON_Delete(v);
    assert_int_equal(avail(f, f->client), CREDIT - 3u * 600);
    nothing_held(f);
}

/* Ten minutes of FLOW on node 1 from 0: ten intervals, each paid once. */
static void ten_intervals_paid(fx *f)
{
    cJSON *v = step_view(f, 1, "hb");
    assert_int_equal((int)billing(v, "intervals_paid"), 10);
    assert_int_equal((int)billing(v, "paid_micros"), 6000);
    cJSON_Delete(v);
    assert_int_equal(avail(f, rz_engine_node_account(1)), 10u * 570);
    assert_int_equal(avail(f, RZ_LEDGER_PLATFORM_ID), 10u * 30);
    assert_int_equal(avail(f, f->client), CREDIT - 6000 - 1200);
}

/* kill -9 of the engine's process right after its k-th commit from the
 * third roll-over on (k = 1: the roll-over is on disk, the ledger not yet
 * touched; 2: both done; 3, 4: the next one), or (k = 0) right after the
 * ledger was paid, before the store knows it: the
 * reopened engine finishes what was owed and goes on; at the end every
 * interval was paid exactly once, as without the crash. */
static int kill_after;
static void kill_point(void)
{
    if (kill_after > 0 && --kill_after == 0)
        raise(SIGKILL);
}

static void run_crash(fx *f, int k)
{
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        uint64_t n = bill_service(f, FLOW, 0).n;
        for (uint64_t now = 10000; now <= 10 * MIN; now += 10000) {
            if (now == 3 * MIN) {   /* mid-way through the run */
                kill_after = k;
                rz__engine_commit_seam = k ? kill_point : NULL;
            }
            if (rz_engine_node_heartbeat(f->e, n, now, 0) != RZ_OK ||
                rz_engine_tick(f->e, now) != RZ_OK)
                _exit(4);
            if (now == 3 * MIN && k == 0)
                raise(SIGKILL);
        }
        _exit(5);
    }
    efx_wait_signaled(pid, SIGKILL);
}

static void test_kill9_mid_interval_bills_each_once(void **state)
{
    fx *f = *state;
    /* One fixture per crash point: each a fresh directory. */
    for (int k = 0; k <= 4; k++) {
        if (k > 0)
            f = fresh(state);
        run_crash(f, k);
        reopen(f);
        check(f);
        uint64_t now = 3 * MIN;
        /* The node polls again (it never stopped the service). */
        for (; now <= 10 * MIN; now += 10000) {
            assert_int_equal(rz_engine_node_heartbeat(f->e, 1, now, 0), RZ_OK);
            assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
            check(f);
        }
        ten_intervals_paid(f);
        rz_ledger_transfer t;
        rz_ledger_id id = rz_ledger_id_make(RZ__EID(RZ__EID_IV_SETTLE),
                                            (uint64_t)1 << 24 | 3);
        assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e), id, &t), RZ_OK);
        assert_int_equal(t.amount, 600);
    }
}

/* A roll-over decided in a group (the orchestrator ticks inside its pass)
 * is paid only at the commit: the group's later holds leave what it will
 * take. 8,800 available, 600 owed: six deploys of 1,200 fit, a seventh
 * is refused at once, and the commit pays interval 1 and holds 2. */
static void test_group_holds_leave_the_owed_roll_over(void **state)
{
    fx *f = *state;
    billed b = roll_over_owed(f);
    uint64_t n = b.n, now = 1000 + MIN;
    for (int i = 0; i < 7; i++) {
        uint64_t d = 0;
        int rc = rz_engine_deploy(f->e, FLOW, strlen(FLOW), f->client, NULL, now,
                                  &d, NULL);
        assert_int_equal(rc, i < 6 ? RZ_OK : RZ_EFUNDS);
    }
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    check(f);
    assert_int_equal(avail(f, rz_engine_node_account(n)), 570);
    assert_int_equal(avail(f, f->client), CREDIT - 1200 - 600 - 6u * 1200);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, b.a.job, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_RUNNING);
    assert_int_equal(rz__bill_next(f->e), 1000 + 2 * MIN);
}

/* Interval 2's hold refused (a withdrawal took the balance between the
 * decision and the group's commit): interval 1 stands as settled, the
 * service stops exhausted, nothing is owed, and a reopen agrees. */
static void refused_checked(fx *f, uint64_t d, uint64_t hb, uint64_t n)
{
    check(f);
    cJSON_Delete(stopped_view(f, d, "budget exhausted: 1 intervals paid ($0.000600); the "
                              "balance ($0.000600) cannot cover the next ($0.001200)",
                              1, 600));
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, hb, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_FAILED);
    assert_int_equal(ji.cost_micros, 600);
    /* Paid once: 570 to the node, 30 fee; the remainder back. */
    assert_int_equal(avail(f, rz_engine_node_account(n)), 570);
    assert_int_equal(avail(f, RZ_LEDGER_PLATFORM_ID), 30);
    assert_int_equal(avail(f, f->client), 600);
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e),
                                            rz__bill_hold_id(hb, 2), &t), RZ_ENOENT);
    uint64_t w = rz_engine_next_wakeup(f->e);
    assert_true(w != 0);   /* nothing owed: no busy loop */
}

static uint64_t refusal_begin(fx *f, uint64_t *d, uint64_t *hb)
{
    billed b = roll_over_owed(f);
    *d = b.d;
    *hb = b.a.job;
    assert_int_equal(rz_ledger_withdraw_request(rz_engine_ledger(f->e),
                                                rz_ledger_id_make(9, 9), f->client,
                                                CREDIT - 1200), RZ_OK);
    return b.n;
}

static void test_refused_next_hold_stops_exhausted(void **state)
{
    fx *f = *state;
    uint64_t d, hb, n = refusal_begin(f, &d, &hb);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    assert_true(stopped(f, hb, n));   /* the node is told to stop it */
    refused_checked(f, d, hb, n);
    /* Later calls and a reopen go on; nothing is paid again. */
    assert_int_equal(rz_engine_node_heartbeat(f->e, n, 1000 + 2 * MIN, 0), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, 1000 + 2 * MIN), RZ_OK);
    refused_checked(f, d, hb, n);
    reopen(f);
    refused_checked(f, d, hb, n);
}

/* kill -9 right after the group's commit stored the roll-over as owed,
 * before the ledger was touched: the reopened engine pays interval 1 and
 * is refused interval 2 (stops, as without the crash), or, with the money
 * back by then, holds it and goes on. Interval 1 is paid once either way. */
static void test_refused_next_hold_kill9(void **state)
{
    fx *f = *state;
    for (int back = 0; back <= 1; back++) {
        if (back)
            f = fresh(state);
        pid_t pid = efx_fork(f);
        if (pid == 0) {
            uint64_t d, hb;
            (void)refusal_begin(f, &d, &hb);
            kill_after = 1;
            rz__engine_commit_seam = kill_point;
            (void)!rz_engine_group_commit(f->e);
            _exit(5);
        }
        efx_wait_signaled(pid, SIGKILL);
        if (back) {   /* a deposit while the orchestrator was down */
            rz_ledger *l = NULL;
            rz_ledger_opts lo = RZ_LEDGER_OPTS_INIT;
            lo.durable = 0;
            assert_int_equal(rz_ledger_open(&l, f->dir, &lo), RZ_OK);
            assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(7, 3),
                                                   f->client, 5000), RZ_OK);
            rz_ledger_close(l);
        }
        reopen(f);
        if (!back) {
            refused_checked(f, 1, 1, 1);
            continue;
        }
        check(f);
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, 1, &ji), RZ_OK);
        assert_int_equal(ji.state, RZ_JOB_RUNNING);
        cJSON *v = step_view(f, 1, "hb");
        assert_int_equal((int)billing(v, "interval"), 2);
        assert_int_equal((int)billing(v, "intervals_paid"), 1);
        cJSON_Delete(v);
        assert_int_equal(avail(f, rz_engine_node_account(1)), 570);
        assert_int_equal(avail(f, f->client), 5000 + 600 - 1200);
        assert_int_equal(rz__bill_next(f->e), 1000 + 2 * MIN);
    }
}

/* Rounded up once over the run, not once an interval: a node at 10,000
 * micros an hour with 1 s intervals is paid ceil(10,000 x k / 3,600)
 * after k of them (3, 6, 9, 12, 14, ...: 100 after 36 s, not 108). */
static void test_rounded_up_once_not_per_interval(void **state)
{
    fx *f = *state;
    static const char *caps =
        "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192,"
        "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"],"
        "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":10000,"
        "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2}";
    static const char *flow =
        "flux: 1\nname: cheap\nsteps:\n"
        "  hb:\n    module: svc@1.0.0\n    kind: service\n    restart: {policy: never}\n"
        "    budget: {max_micros_per_hour: 10000, interval_s: 1}\n"
        "    inputs: {text: x}\n";
    uint64_t n = 0;
    assert_int_equal(rz_engine_node_register(f->e, caps, strlen(caps), 0, &n), RZ_OK);
    uint64_t d = deploy(f, flow, 0);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, n, 0, &a), RZ_OK);
    for (uint64_t k = 1; k <= 36; k++) {
        assert_int_equal(rz_engine_node_heartbeat(f->e, n, k * 1000, 0), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, k * 1000), RZ_OK);
        check(f);
        cJSON *v = step_view(f, d, "hb");
        assert_int_equal((int)billing(v, "interval_hold_micros"), 3);
        assert_int_equal((int)billing(v, "intervals_paid"), (int)k);
        assert_int_equal((int)billing(v, "paid_micros"), (int)((10000 * k + 3599) / 3600));
        cJSON_Delete(v);
    }
    assert_int_equal(avail(f, f->client), CREDIT - 100 - 3);
}

/* Case i, the flow `text` with a budget on its line 7: it loads (want
 * NULL), or is refused with a diagnostic holding `want` on that line (at
 * `pointer` too, unless NULL). */
static void budget_loads(size_t i, const char *text, const char *want,
                         const char *pointer)
{
    rz_flow *fl = NULL;
    rz_diags *dg = NULL;
    assert_int_equal(rz_diags_new(&dg), RZ_OK);
    int rc = rz_flow_parse(&fl, text, strlen(text), RZ_FORMAT_YAML, "b.yaml", dg);
    if (rc == RZ_OK)
        rc = rz_flow_validate(fl, NULL, dg);
    if ((rc == RZ_OK) != !want)
        fprintf(stderr, "case %zu: %s\n", i,
                rc == RZ_OK ? "passed" : rz_error_last()->message);
    assert_int_equal(rc == RZ_OK, !want);
    bool found = !want;
    for (size_t k = 0; want && k < rz_diags_count(dg); k++) {
        const rz_diag *x = rz_diags_get(dg, k);
        if (strstr(x->message, want)) {
            found = true;
            assert_int_equal(x->line, 7);   /* the budget's line */
            if (pointer)
                assert_string_equal(x->pointer, pointer);
        }
    }
    if (!found)
        fprintf(stderr, "case %zu: %s\n", i, rz_error_last()->message);
    assert_true(found);
    rz_flow_free(fl);
    rz_diags_free(dg);
}

/* budget: checked at load with the line of the mistake; not for jobs. */
static void test_budget_validation(void **state)
{
    (void)state;
    static const struct { const char *budget; const char *kind; const char *want; } bad[] = {
        { "{max_cents_per_hour: 1.5}", "service", "'max_cents_per_hour' must be a whole" },
        { "{max_cents_per_hour: 0}", "service", "'max_cents_per_hour' must be a whole" },
        { "{hours: 2}", "service", "'budget' needs a rate" },
        { "{max_cents_per_hour: 1, max_micros_per_hour: 1}", "service", "one rate" },
        { "{max_cents_per_hour: 1, interval_s: 3601}", "service", "'interval_s' must be" },
        { "{max_cents_per_hour: 1, hours: 0}", "service", "'hours' must be" },
        { "{max_cents_per_hour: 1, every: 5}", "service", "unknown key 'every'" },
        { "5", "service", "'budget' must be a map" },
        { "{max_cents_per_hour: 1}", "job", "'budget' is for services" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "flux: 1\nname: b\nsteps:\n  hb:\n    module: svc@1\n"
                 "    kind: %s\n    budget: %s\n", bad[i].kind, bad[i].budget);
        budget_loads(i, text, bad[i].want, NULL);
    }
}

/* A roll-over decided in a pass (owed until the pass commits) and a
 * client in the same pass: the engine's one "available" (ledger balance
 * less held, less owed) decides every hold and withdrawal. 8,800 is
 * available in the ledger and 600 owed: neither a withdrawal of the 8,800
 * nor a replicated job holding 2 x 4,400 may take the interval's money;
 * each is refused with the reason and changes nothing; 8,200 may go. The
 * commit then pays interval 1 and holds 2: the service runs on. */
static void test_withdrawal_and_holds_leave_the_owed_roll_over(void **state)
{
    fx *f = *state;
    billed b = roll_over_owed(f);
    uint64_t n = b.n, d = b.d, now = 1000 + MIN;
    uint64_t have = 0;
    assert_int_equal(rz_engine_available(f->e, f->client, &have), RZ_OK);
    assert_int_equal(have, CREDIT - 1200 - 600);
    assert_int_equal(avail(f, f->client), CREDIT - 1200);
    rz_ledger_id w1 = rz_ledger_id_make(9, 1), w2 = rz_ledger_id_make(9, 2);
    assert_int_equal(rz_engine_withdraw(f->e, w1, f->client, CREDIT - 1200), RZ_EFUNDS);
    assert_non_null(strstr(rz_error_last()->message, "insufficient available"));
    assert_non_null(strstr(rz_error_last()->message, "8200 micros available"));
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e), w1, &t), RZ_ENOENT);
    assert_int_equal(avail(f, f->client), CREDIT - 1200);
    /* A hold that is not a deploy's: a replicated job (its own batch). */
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = "{\"cpu_cores\":1}";
    s.module_id = "svc";
    s.module_version = "1.0.0";
    s.max_cost_micros = 4400;
    s.replicas = 2;
    uint64_t job = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, now, &job), RZ_EFUNDS);
    assert_non_null(strstr(rz_error_last()->message, "insufficient available"));
    assert_int_equal(avail(f, f->client), CREDIT - 1200);
    /* What is not owed may go, and its replay is the ledger's (done). */
    assert_int_equal(rz_engine_withdraw(f->e, w2, f->client, CREDIT - 1800), RZ_OK);
    assert_int_equal(rz_engine_withdraw(f->e, w2, f->client, CREDIT - 1800), RZ_OK);
    assert_int_equal(rz_engine_available(f->e, f->client, &have), RZ_OK);
    assert_int_equal(have, 0);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
    check(f);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, b.a.job, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_RUNNING);
    cJSON *v = step_view(f, d, "hb");
    assert_int_equal((int)billing(v, "interval"), 2);
    assert_int_equal((int)billing(v, "intervals_paid"), 1);
    cJSON_Delete(v);
    assert_int_equal(avail(f, rz_engine_node_account(n)), 570);
    assert_int_equal(avail(f, f->client), 0);
    assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e),
                                            rz__bill_hold_id(b.a.job, 2), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_OPEN);
}

/* A pass whose commit fails (memory runs out while its records are
 * written) leaves the engine broken: memory says interval 1's roll-over is
 * owed, the store and the ledger do not. A withdrawal through it is
 * refused like every change (RZ_EDB), and the ledger is not touched; the
 * reopened engine takes it, and the roll-over is decided again. */
static void test_withdraw_refused_by_a_broken_engine(void **state)
{
    fx *f = *state;
    billed b = roll_over_owed(f);
    rz__alloc_fail_at(1, true);
    int rc = rz_engine_group_commit(f->e);
    rz__alloc_fail_at(0, false);
    assert_int_not_equal(rc, RZ_OK);
    assert_true(f->e->broken);
    rz_ledger_id w = rz_ledger_id_make(9, 5);
    assert_int_equal(rz_engine_withdraw(f->e, w, f->client, 100), RZ_EDB);
    assert_non_null(strstr(rz_error_last()->message, "an earlier commit failed"));
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e), w, &t), RZ_ENOENT);
    assert_int_equal(avail(f, f->client), CREDIT - 1200);
    reopen(f);
    check(f);
    assert_int_equal(rz_engine_withdraw(f->e, w, f->client, 100), RZ_OK);
    assert_int_equal(avail(f, f->client), CREDIT - 1200 - 100);
    bill_run(f, b.n, 1000 + MIN, 1000 + MIN, MIN);   /* decided again, paid */
    check(f);
    assert_int_equal(avail(f, rz_engine_node_account(b.n)), 570);
    assert_int_equal(avail(f, f->client), CREDIT - 1200 - 100 - 600);
}

/* hours x 3600 / interval_s past the 2^24 - 1 intervals a job's ledger
 * ids can number: refused at load, placed on the budget's hours, not
 * stopped at interval 16,777,215 with the wrong reason. At the edge it
 * loads; a deploy of one too many is refused and holds nothing. */
static void test_budget_hours_past_the_interval_ids(void **state)
{
    fx *f = *state;
    static const struct { const char *budget; const char *want; } cases[] = {
        { "{max_cents_per_hour: 1, interval_s: 1, hours: 4661}",
          "'hours' x 3600 / 'interval_s' is 16779600 intervals; a service is billed "
          "for at most 16777215 (fewer hours or a longer interval_s: at 1 s, at most "
          "4660 hours)" },
        { "{max_cents_per_hour: 1, hours: 87600, interval_s: 18}", "is 17520000 intervals" },
        { "{max_cents_per_hour: 1, interval_s: 1, hours: 4660}", NULL },   /* 16,776,000 */
        { "{max_cents_per_hour: 1, hours: 87600}", NULL },   /* 60 s: 5,256,000 */
        { "{max_cents_per_hour: 1, hours: 87600, interval_s: 19}", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "flux: 1\nname: b\nsteps:\n  hb:\n    module: svc@1\n"
                 "    kind: service\n    budget: %s\n    inputs: {text: x}\n",
                 cases[i].budget);
        budget_loads(i, text, cases[i].want, "/steps/hb/budget/hours");
    }
    static const char *past =
        "flux: 1\nname: b\nsteps:\n  hb:\n    module: svc@1.0.0\n    kind: service\n"
        "    budget: {max_cents_per_hour: 1, interval_s: 1, hours: 4661}\n"
        "    inputs: {text: x}\n";
    uint64_t d = 7;
    assert_int_not_equal(rz_engine_deploy(f->e, past, strlen(past), f->client, NULL, 0,
                                          &d, NULL), RZ_OK);
    assert_int_equal(d, 0);
    assert_int_equal(avail(f, f->client), CREDIT);
}

/* Retention asks whether a finished job's money is still held: for a
 * service billed by time that is its last interval's hold, not interval
 * 1's (posted long ago). A cancelled service whose record names interval
 * 4, whose hold is open (a store and ledger out of step, as a lost write
 * could leave them), keeps its record, which is what releases the hold;
 * once the hold is closed it goes. */
static void test_retention_reads_the_last_interval_hold(void **state)
{
    fx *f = *state;
    billed b = bill_service(f, FLOW, 0);
    uint64_t d = b.d;
    const rz_engine_assignment a = b.a;
    bill_run(f, b.n, MIN, 2 * MIN, MIN);
    assert_int_equal(rz_engine_deployment_cancel(f->e, d, 2 * MIN + 1), RZ_OK);
    check(f);
    rz__ejob *j = rz__engine_job(f->e, a.job);
    assert_non_null(j);
    assert_int_equal(j->iv, 3);
    j->iv = 4;
    rz__engine_touch_job(f->e, j);
    assert_int_equal(rz__engine_commit(f->e), RZ_OK);
    rz_ledger *l = rz_engine_ledger(f->e);
    assert_int_equal(rz_ledger_hold(l, rz__bill_hold_id(a.job, 4),
                                    rz_engine_job_ledger_id(a.job), f->client, 1200, 0),
                     RZ_OK);
    reopen(f);
    uint64_t later = 40 * 86400000ull, age = 86400000ull;
    rz_engine_compacted c;
    for (int pass = 0; pass < 4; pass++)
        assert_int_equal(rz_engine_compact(f->e, later, age, 1000, NULL, NULL, &c), RZ_OK);
    assert_true(rz_engine_compacted_id(f->e, 1, d));
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, a.job, &ji), RZ_OK);   /* kept */
    assert_false(rz_engine_compacted_id(f->e, 0, a.job));
    rz_ledger_result res;
    assert_int_equal(rz_ledger_refund(rz_engine_ledger(f->e), rz_ledger_id_make(9, 4),
                                      rz_engine_job_ledger_id(a.job), &res), RZ_OK);
    check(f);
    for (int pass = 0; pass < 2; pass++)
        assert_int_equal(rz_engine_compact(f->e, later, age, 1000, NULL, NULL, &c), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, a.job, &ji), RZ_ENOENT);
    assert_true(rz_engine_compacted_id(f->e, 0, a.job));
    assert_int_equal(avail(f, f->client), CREDIT - 1200);   /* two intervals, paid */
}

/* rz_engine_check after retention removed a service billed by time: its
 * record, which named the last interval, is gone, so every interval's
 * hold is read from the ledger. Intervals 1 and 2 paid, 3 refunded at the
 * cancel: clean. Then interval 4 held for the removed job (what a
 * retention that read only interval 1's hold, posted at the first
 * roll-over, would have left): a breach, which the check that read only
 * interval 1's hold passed. */
static void test_check_reads_every_hold_of_a_removed_service(void **state)
{
    fx *f = *state;
    billed b = bill_service(f, FLOW, 0);
    uint64_t hb = b.a.job;
    bill_run(f, b.n, MIN, 2 * MIN, MIN);
    assert_int_equal(rz_engine_deployment_cancel(f->e, b.d, 2 * MIN + 1), RZ_OK);
    reopen(f);   /* finished: out of memory, where retention may take it */
    rz_engine_compacted c;
    for (int pass = 0; pass < 4; pass++)
        assert_int_equal(rz_engine_compact(f->e, 40 * 86400000ull, 86400000ull, 1000,
                                           NULL, NULL, &c), RZ_OK);
    assert_true(rz_engine_compacted_id(f->e, 0, hb));
    reopen(f);
    check(f);
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e),
                                            rz__bill_hold_id(hb, 3), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_VOIDED);
    assert_int_equal(rz_ledger_hold(rz_engine_ledger(f->e), rz__bill_hold_id(hb, 4),
                                    rz_engine_job_ledger_id(hb), f->client, 1200, 0),
                     RZ_OK);
    reopen(f);   /* the check walks removed jobs once an open */
    assert_int_equal(rz_engine_check(f->e), RZ_EINTERNAL);
    char want[96];
    snprintf(want, sizeof want, "job %llu was removed by retention with interval 4's "
             "hold open", (unsigned long long)hb);
    assert_non_null(strstr(rz_error_last()->message, want));
}

/* kill -9 exactly between an interval's settlement and what follows it:
 * the ledger's journal has just taken the roll-over's batch (interval k
 * settled, k + 1 held, or refused), the engine's store still says the
 * roll-over is owed. The ledger's own seam kills the process right after
 * that write, inside rz_ledger_submit. */
static const rz__ledger_io *plain_io;
static bool journal_kill;
static ssize_t killing_pwrite(int fd, const void *p, size_t n, off_t off)
{
    ssize_t w = plain_io->pwrite(fd, p, n, off);
    if (journal_kill && off > 0)   /* a batch's record, not a round's marker */
        raise(SIGKILL);
    return w;
}

static void killed_in_ledger(fx *f, bool refusal)
{
    pid_t pid = efx_fork(f);
    if (pid == 0) {
        static rz__ledger_io io;
        plain_io = rz__ledger_io_seam;
        io = *plain_io;
        io.pwrite = killing_pwrite;
        rz__ledger_io_seam = &io;
        if (refusal) {   /* settled, the next hold refused: one batch */
            uint64_t d, hb;
            (void)refusal_begin(f, &d, &hb);
            journal_kill = true;
            (void)!rz_engine_group_commit(f->e);
            _exit(5);
        }
        uint64_t n = bill_service(f, FLOW, 0).n;
        for (uint64_t now = 10000; now <= 3 * MIN; now += 10000) {
            if (rz_engine_node_heartbeat(f->e, n, now, 0) != RZ_OK)
                _exit(4);
            journal_kill = now == 3 * MIN;   /* the third roll-over's batch */
            if (rz_engine_tick(f->e, now) != RZ_OK)
                _exit(4);
        }
        _exit(5);
    }
    efx_wait_signaled(pid, SIGKILL);
    reopen(f);
}

static void test_kill9_between_settlement_and_next_hold(void **state)
{
    fx *f = *state;
    /* A roll-over: intervals 1..10 each paid once across the crash. */
    killed_in_ledger(f, false);
    check(f);
    cJSON *v = step_view(f, 1, "hb");
    assert_int_equal((int)billing(v, "interval"), 4);
    assert_int_equal((int)billing(v, "intervals_paid"), 3);
    cJSON_Delete(v);
    assert_int_equal(avail(f, rz_engine_node_account(1)), 3u * 570);
    for (uint64_t now = 3 * MIN; now <= 10 * MIN; now += 10000) {
        assert_int_equal(rz_engine_node_heartbeat(f->e, 1, now, 0), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
        check(f);
    }
    ten_intervals_paid(f);
    for (uint32_t k = 1; k <= 10; k++) {   /* each settled by its own id, once */
        rz_ledger_transfer t;
        rz_ledger_id id = rz_ledger_id_make(RZ__EID(RZ__EID_IV_SETTLE),
                                            (uint64_t)1 << 24 | k);
        assert_int_equal(rz_ledger_transfer_get(rz_engine_ledger(f->e), id, &t), RZ_OK);
        assert_int_equal(t.amount, 600);
    }
    size_t got = 0, total = 0;
    rz_ledger_transfer ts[64];
    assert_int_equal(rz_ledger_job_transfers(rz_engine_ledger(f->e),
                                             rz_engine_job_ledger_id(1), ts, 64, &got,
                                             &total), RZ_OK);
    size_t holds = 0, posts = 0, open = 0;
    for (size_t i = 0; i < got; i++) {
        holds += (ts[i].flags & RZ_LEDGER_PENDING) != 0;
        open += ts[i].state == RZ_LEDGER_OPEN;
        if (ts[i].flags & RZ_LEDGER_POST) {
            posts++;
            assert_int_equal(ts[i].amount, 600);
        }
    }
    assert_int_equal(got, total);
    assert_int_equal(holds, 11);   /* intervals 1..11, the 11th open */
    assert_int_equal(open, 1);
    assert_int_equal(posts, 10);

    /* A refusal: interval 1 settled, 2 refused; the store knew neither. */
    f = fresh(state);
    killed_in_ledger(f, true);
    refused_checked(f, 1, 1, 1);
}

/* The service ends by itself in the pass that decided its roll-over, and
 * the next interval's hold is then refused (money taken from the ledger
 * directly): interval 1 stands as its whole bill, paid once; the 30 s it
 * ran into interval 2 were never held and are not paid; nothing stays
 * held or owed, and a reopen agrees. Its deployment is over by the
 * commit, so the refusal cannot need its run (the commit failed, and so
 * did every reopen). The same with kill -9 right after the commit stored
 * the pass: the reopen pays and is refused. */
static void ended_pass(fx *f, bool kill)
{
    uint64_t d, hb, n = refusal_begin(f, &d, &hb);
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = 1;
    r.run_ms = MIN + 30000;
    assert_int_equal(rz_engine_report_result(f->e, n, hb, &r, 1000 + MIN + 30000, NULL),
                     RZ_OK);
    if (kill) {
        kill_after = 1;
        rz__engine_commit_seam = kill_point;
    }
    int rc = rz_engine_group_commit(f->e);
    if (rc != RZ_OK)
        fprintf(stderr, "commit: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
}

static void test_ended_in_the_pass_of_a_refused_roll_over(void **state)
{
    fx *f = *state;
    for (int kill = 0; kill <= 1; kill++) {
        if (kill) {
            f = fresh(state);
            pid_t pid = efx_fork(f);
            if (pid == 0) {
                ended_pass(f, true);
                _exit(5);
            }
            efx_wait_signaled(pid, 0);
            reopen(f);
        } else {
            ended_pass(f, false);
        }
        for (int round = 0; round < 2; round++) {
            check(f);
            rz_engine_job_info ji;
            assert_int_equal(rz_engine_job_get(f->e, 1, &ji), RZ_OK);
            assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
            assert_int_equal(ji.cost_micros, 600);
            rz_run_state rs;
            assert_int_equal(rz_engine_deployment_state(f->e, 1, &rs), RZ_OK);
            assert_int_equal(rs, RZ_RUN_SUCCEEDED);
            assert_int_equal(avail(f, rz_engine_node_account(1)), 570);
            assert_int_equal(avail(f, RZ_LEDGER_PLATFORM_ID), 30);
            assert_int_equal(avail(f, f->client), 600);
            nothing_held(f);
            reopen(f);
        }
    }
}

/* Its node leaves in the pass that decided the roll-over (the service is
 * to restart elsewhere: interval 1 ran in full there and is paid to it),
 * then the next interval's hold is refused: the restart, waiting out its
 * backoff or queued, stops exhausted (its run's step was not "running",
 * so the commit failed and left the engine broken, and every reopen
 * failed the same way); interval 1 paid once, nothing held; a reopen
 * agrees. */
static void test_node_gone_in_the_pass_of_a_refused_roll_over(void **state)
{
    fx *f = *state;
    for (int queued = 0; queued <= 1; queued++) {
        if (queued)
            f = fresh(state);
        uint64_t d, hb, n = refusal_begin(f, &d, &hb);
        assert_int_equal(rz_engine_node_deregister(f->e, n, 1000 + MIN + 1), RZ_OK);
        if (queued)   /* its 10 ms backoff over */
            assert_int_equal(rz_engine_tick(f->e, 1000 + MIN + 50), RZ_OK);
        rz_engine_job_info ji;
        assert_int_equal(rz_engine_job_get(f->e, hb, &ji), RZ_OK);
        assert_int_equal(ji.state, queued ? RZ_JOB_QUEUED : RZ_JOB_PENDING);
        int rc = rz_engine_group_commit(f->e);
        if (rc != RZ_OK)
            fprintf(stderr, "commit: %s\n", rz_error_last()->message);
        assert_int_equal(rc, RZ_OK);
        for (int round = 0; round < 2; round++) {
            check(f);
            assert_int_equal(rz_engine_job_get(f->e, hb, &ji), RZ_OK);
            assert_int_equal(ji.state, RZ_JOB_FAILED);
            assert_int_equal(ji.cost_micros, 600);
            rz_run_state rs;
            assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
            assert_int_equal(rs, RZ_RUN_FAILED);
            cJSON *v = step_view(f, d, "hb");
            assert_non_null(strstr(cJSON_GetObjectItem(v, "error")->valuestring,
                                   "budget exhausted: 1 intervals paid ($0.000600)"));
            cJSON_Delete(v);
            assert_int_equal(avail(f, rz_engine_node_account(n)), 570);
            assert_int_equal(avail(f, f->client), 600);
            nothing_held(f);
            reopen(f);
        }
    }
}

int main(void)
{
    /* cJSON's allocations fail too (test_withdraw_refused_by_a_broken_engine). */
    cJSON_Hooks hooks = { rz__malloc, free };
    cJSON_InitHooks(&hooks);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_intervals_paid_until_the_balance_runs_out),
        T(test_hours_spent_and_a_clean_exit),
        T(test_node_lost_restarts_counted_never_billed_twice),
        T(test_kill9_mid_interval_bills_each_once),
        T(test_group_holds_leave_the_owed_roll_over),
        T(test_refused_next_hold_stops_exhausted),
        T(test_refused_next_hold_kill9),
        T(test_rounded_up_once_not_per_interval),
        T(test_budget_validation),
        T(test_withdrawal_and_holds_leave_the_owed_roll_over),
        T(test_withdraw_refused_by_a_broken_engine),
        T(test_budget_hours_past_the_interval_ids),
        T(test_retention_reads_the_last_interval_hold),
        T(test_check_reads_every_hold_of_a_removed_service),
        T(test_kill9_between_settlement_and_next_hold),
        T(test_ended_in_the_pass_of_a_refused_roll_over),
        T(test_node_gone_in_the_pass_of_a_refused_roll_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
