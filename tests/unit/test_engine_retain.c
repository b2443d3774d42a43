/* Retention (rz_engine_compact): finished work older than an age leaves
 * the store in bounded passes, so a store driven over simulated months
 * stays the size of the retained window; the ledger and anything open
 * stay; a pass killed midway leaves a store that opens and checks. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "engine/engine_impl.h"
#include "rhizos/engine.h"
#include "rhizos/rhizos.h"
#include "helpers.h"
#include "engine_fixture.h"

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":4}"
#define DAY 86400000ull
#define KEEP (7 * DAY)

static const char *FLOW = "flux: 1\nname: two\nsteps:\n  a:\n    module: count@1\n"
                          "    inputs:\n      text: \"a\"\n  b:\n    module: count@1\n"
                          "    inputs:\n      text: \"b\"\n";

typedef efx fx;

/* What the compaction hook was told, since setup. */
static uint64_t seen_jobs, seen_deps;

static void check(fx *f)
{
    efx_check(f);
}

static int setup(void **state)
{
    static const efx_module count = EFX_COUNT;
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = UINT64_MAX / 4;   /* days pass between calls */
    o.ref_cpu_hour_micros = 36000;
    o.run_tolerance_ms = UINT64_MAX / 2;
    fx *f = efx_new("engine-retain", &count, 1, &o, 1000000000);
    efx_node_add(f, NODE_CAPS, 0);
    seen_jobs = seen_deps = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static uint64_t submit(fx *f, const char *reqs, uint64_t now)
{
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = reqs;
    s.module_id = "count";
    s.module_version = "1.0.0";
    s.request_json = "{\"inputs\":{\"text\":\"a b\"},\"config\":{}}";
    s.max_cost_micros = 500;
    uint64_t id = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, now, &id), RZ_OK);
    return id;
}

/* Everything queued runs: the node takes and finishes jobs until none is
 * left (every third one fails, to have both kinds of hold). */
static void drain(fx *f, uint64_t now)
{
    rz_engine_assignment a;
    for (int k = 0; rz_engine_poll(f->e, f->node[0], now, &a) == RZ_OK; k++) {
        bool fail = k % 3 == 2;
        assert_int_equal(node_report(f->e, f->node[0], a.job, a.attempt,
                                     fail ? NULL : "{\"n\":1}",
                                     fail ? "no" : NULL, 1000, now), RZ_OK);
        assert_int_equal(rz_engine_tick(f->e, now), RZ_OK);
    }
    /* The last payments' marks are stored by the first call once they
     * waited long enough; the next call lets their jobs go. */
    assert_int_equal(rz_engine_tick(f->e, now + RZ__PAID_WRITE_MS), RZ_OK);
    assert_int_equal(rz_engine_tick(f->e, now + RZ__PAID_WRITE_MS), RZ_OK);
}

static int hook(void *ud, const uint64_t *jobs, size_t n_jobs,
                const uint64_t *deps, size_t n_deps)
{
    (void)ud;
    for (size_t i = 1; i < n_jobs; i++)
        assert_true(jobs[i] > jobs[i - 1]);
    (void)deps;
    seen_jobs += n_jobs;
    seen_deps += n_deps;
    return 0;
}

/* Passes until one finishes under its budget. */
static void compact(fx *f, uint64_t now, size_t budget)
{
    rz_engine_compacted c;
    int passes = 0;
    do {
        int rc = rz_engine_compact(f->e, now, KEEP, budget, hook, f, &c);
        if (rc != RZ_OK)
            fprintf(stderr, "compact: %s\n", rz_error_last()->message);
        assert_int_equal(rc, RZ_OK);
        assert_true(c.jobs + c.deployments + c.events <= budget);
        assert_true(++passes < 10000);
    } while (c.more);
}

static size_t stored_jobs(fx *f)
{
    uint64_t ids[4096];
    size_t n = rz_engine_job_list(f->e, &f->client, 0, ids, 4096);
    assert_true(n < 4096);
    return n;
}

static long file_size(fx *f)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/engine/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static uint64_t total_jobs(fx *f)
{
    rz_engine_stats s;
    rz_engine_stats_get(f->e, &s);
    uint64_t t = 0;
    for (int i = 0; i <= RZ_JOB_CANCELLED; i++)
        t += s.jobs[i];
    return t;
}

/* Sixty simulated days of 40 jobs and 4 deployments a day, a seven-day
 * window: the store holds about a window's worth, its file stops
 * growing, the totals and the ledger are whole, and a job that never ran
 * (queued all along, its hold open) is never removed. */
static void test_bounded_over_time(void **state)
{
    fx *f = *state;
    uint64_t stuck = submit(f, "{\"cpu_cores\":64,\"estimate_seconds\":10}", 1);
    uint64_t first = 0, first_dep = 0;
    long size_day30 = 0;
    uint64_t volume_before = 0;
    for (uint64_t day = 0; day < 60; day++) {
        uint64_t now = day * DAY + 1000;
        for (int i = 0; i < 40; i++) {
            uint64_t j = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", now);
            if (!first)
                first = j;
            if (i == 39)
                assert_int_equal(rz_engine_job_cancel(f->e, j, now), RZ_OK);
            drain(f, now);
        }
        for (int i = 0; i < 4; i++) {
            uint64_t d = 0;
            assert_int_equal(rz_engine_deploy(f->e, FLOW, strlen(FLOW), f->client,
                                              NULL, now, &d, NULL), RZ_OK);
            if (!first_dep)
                first_dep = d;
            drain(f, now);
        }
        compact(f, now + DAY / 2, 64);
        if (day % 10 == 9) {
            uint64_t t = total_jobs(f);
            uint64_t v = rz_engine_volume_micros(f->e);
            efx_reopen(f);   /* the gaps load; the totals stay */
            assert_int_equal(total_jobs(f), t);
            assert_int_equal(rz_engine_volume_micros(f->e), v);
            check(f);
        }
        if (day == 30)
            size_day30 = file_size(f);
        assert_true(rz_engine_volume_micros(f->e) >= volume_before);
        volume_before = rz_engine_volume_micros(f->e);
    }
    check(f);
    /* 48 jobs a day (40 + 4 x 2 steps), 7 days kept and the day that
     * has not aged yet, plus the stuck one. */
    size_t kept = stored_jobs(f);
    assert_true(kept <= 48 * 9 + 1);
    assert_true(kept >= 48 * 6);
    assert_true(seen_jobs >= 48 * 50);
    assert_true(seen_deps >= 4 * 50);
    assert_true(file_size(f) <= size_day30 + size_day30 / 4);
    /* Removed: told apart from never given. */
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, first, &ji), RZ_ENOENT);
    assert_true(rz_engine_compacted_id(f->e, 0, first));
    assert_true(rz_engine_compacted_id(f->e, 1, first_dep));
    assert_false(rz_engine_compacted_id(f->e, 0, 1000000));
    assert_false(rz_engine_compacted_id(f->e, 0, stuck));
    /* The job that never ran is there, its hold open. */
    assert_int_equal(rz_engine_job_get(f->e, stuck, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_QUEUED);
    /* New ids follow on: none is given twice. */
    uint64_t next = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", 61 * DAY);
    efx_reopen(f);
    uint64_t after = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", 61 * DAY);
    assert_true(after > next);
    check(f);
}

/* Bad input changes nothing. */
static void test_compact_refuses(void **state)
{
    fx *f = *state;
    rz_engine_compacted c;
    assert_int_equal(rz_engine_compact(NULL, 1, 1, 1, NULL, NULL, &c), RZ_EINVAL);
    assert_int_equal(rz_engine_compact(f->e, 1, 1, 0, NULL, NULL, &c), RZ_EINVAL);
    assert_int_equal(rz_engine_group_begin(f->e), RZ_OK);
    assert_int_equal(rz_engine_compact(f->e, 1, 1, 1, NULL, NULL, &c), RZ_ESTATE);
    assert_int_equal(rz_engine_group_commit(f->e), RZ_OK);
}

static int refuse_hook(void *ud, const uint64_t *jobs, size_t n_jobs,
                       const uint64_t *deps, size_t n_deps)
{
    (void)ud; (void)jobs; (void)n_jobs; (void)deps; (void)n_deps;
    return -1;
}

/* A caller that cannot remove its own records stops the pass: nothing
 * goes. */
static void test_hook_failure_removes_nothing(void **state)
{
    fx *f = *state;
    uint64_t j = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", 1000);
    drain(f, 1000);
    rz_engine_compacted c;
    assert_int_not_equal(rz_engine_compact(f->e, 30 * DAY, KEEP, 16, refuse_hook,
                                           NULL, &c), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_OK);
    assert_int_equal(rz_engine_compact(f->e, 30 * DAY, KEEP, 16, NULL, NULL, &c),
                     RZ_OK);
    assert_int_equal(c.jobs, 1);
    assert_int_equal(rz_engine_job_get(f->e, j, &ji), RZ_ENOENT);
    check(f);
}

/* A compaction killed at a random moment, many times over: each reopen
 * finds a store that loads and checks, and the work ends whole. */
static void test_killed_mid_compaction(void **state)
{
    fx *f = *state;
    for (uint64_t day = 0; day < 3; day++) {
        for (int i = 0; i < 150; i++)
            submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", day * DAY + 1);
        drain(f, day * DAY + 1);
        for (int i = 0; i < 10; i++) {
            uint64_t d;
            assert_int_equal(rz_engine_deploy(f->e, FLOW, strlen(FLOW), f->client,
                                              NULL, day * DAY + 2, &d, NULL), RZ_OK);
            drain(f, day * DAY + 2);
        }
    }
    uint64_t total = total_jobs(f), vol = rz_engine_volume_micros(f->e);
    rz_engine_close(f->e);
    f->e = NULL;
    srand((unsigned)time(NULL));
    for (int round = 0; round < 12; round++) {
        pid_t pid = efx_fork(f);
        if (pid == 0) {
            rz_engine_compacted c;
            for (;;)   /* passes of 2 records: many commits to land in */
                if (rz_engine_compact(f->e, 30 * DAY, KEEP, 2, NULL, NULL, &c) != RZ_OK ||
                    !c.more)
                    _exit(0);
        }
        usleep((useconds_t)(rand() % 20000));
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        efx_reopen(f);
        check(f);
        assert_int_equal(total_jobs(f), total);
        assert_int_equal(rz_engine_volume_micros(f->e), vol);
        rz_engine_close(f->e);
        f->e = NULL;
    }
    efx_reopen(f);
    compact(f, 30 * DAY, 50);
    assert_int_equal(stored_jobs(f), 0);
    assert_int_equal(total_jobs(f), total);
    check(f);
}

/* A pass whose allocations fail one by one (each N in turn) never makes
 * kept work read as missing: the read-back cache is cleared in place, not
 * made again (a failed re-allocation used to leave none, so every
 * finished job read 404 until a restart). */
static void test_out_of_memory_keeps_reads(void **state)
{
    fx *f = *state;
    rz_engine_job_info ji;
    bool past = false;   /* a pass made fewer calls than n: all were tried */
    for (long n = 1; !past; n++) {
        assert_true(n < 100000);
        uint64_t base = (uint64_t)n * 30 * DAY;
        uint64_t old = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", base);
        drain(f, base);
        uint64_t kept = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", base + 20 * DAY);
        drain(f, base + 20 * DAY);
        assert_int_equal(rz_engine_job_get(f->e, kept, &ji), RZ_OK);   /* read back */
        rz_engine_compacted c;
        rz__alloc_fail_at(n, false);
        int rc = rz_engine_compact(f->e, base + 20 * DAY + 1000, KEEP, 64, NULL, NULL, &c);
        past = rz__alloc_calls() < n;
        rz__alloc_fail_at(0, false);
        assert_true(rc == RZ_OK || rz_error_last()->message[0]);
        assert_int_equal(rz_engine_job_get(f->e, kept, &ji), RZ_OK);
        assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
        int gone = rz_engine_job_get(f->e, old, &ji);
        assert_true(gone == RZ_ENOENT ? rc == RZ_OK : gone == RZ_OK);
    }
    compact(f, 200 * 30 * DAY, 64);
    check(f);
}

static const char *FE_FLOW = "flux: 1\nname: fe\ninputs: {xs: {type: array}}\nsteps:\n"
                             "  c:\n    module: count@1\n    for_each: \"${{ inputs.xs }}\"\n"
                             "    inputs: {text: \"${{ each.value }}\"}\n";

/* A finished deployment stays while any job of it is in memory, a
 * for_each element too, whose id lies past the deployment's steps. (What
 * keeps one there is a payment still owed, which the engine settles in
 * the same call: it is put there by hand.) */
static void test_deployment_waits_for_its_elements(void **state)
{
    fx *f = *state;
    uint64_t d = 0;
    const char *in = "{\"xs\":[\"a\",\"b c\",\"d\"]}";
    assert_int_equal(rz_engine_deploy(f->e, FE_FLOW, strlen(FE_FLOW), f->client, in,
                                      1000, &d, NULL), RZ_OK);
    drain(f, 1000);
    rz_run_state rs;
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    assert_true(rs == RZ_RUN_SUCCEEDED || rs == RZ_RUN_FAILED);
    assert_int_equal(rz_engine_tick(f->e, 2000), RZ_OK);   /* all leave memory */
    assert_int_equal(rz__engine_live_jobs(f->e), 0);
    uint64_t ids[16];
    size_t n = rz_engine_job_list(f->e, &f->client, 0, ids, 16);
    assert_int_equal(n, 4);   /* the step and its three elements */
    rz__ejob *el = calloc(1, sizeof *el);
    el->id = ids[0];   /* the newest: an element */
    el->deployment = d;
    el->client = f->client;
    el->state = RZ_JOB_SUCCEEDED;
    el->owed = RZ__OWE_SETTLE;
    assert_true(rz__engine_live_add_job(f->e, el));
    rz_engine_compacted c;
    assert_int_equal(rz_engine_compact(f->e, 30 * DAY, KEEP, 64, NULL, NULL, &c), RZ_OK);
    assert_int_equal(c.deployments, 0);
    assert_false(rz_engine_compacted_id(f->e, 1, d));
    assert_int_equal(rz_engine_deployment_state(f->e, d, &rs), RZ_OK);
    f->e->n_live_jobs--;   /* paid: it leaves */
    free(el);
    compact(f, 30 * DAY, 64);
    assert_true(rz_engine_compacted_id(f->e, 1, d));
    assert_int_equal(rz_engine_job_list(f->e, &f->client, 0, ids, 16), 0);
    check(f);
}

/* A replica set goes whole in one pass or not at all: no pass leaves a
 * run whose head is gone (its refund and its record name the head). */
static void test_replica_set_goes_whole(void **state)
{
    fx *f = *state;
    uint64_t nodes[3] = { f->node[0], 0, 0 };
    for (int i = 1; i < 3; i++)
        assert_int_equal(rz_engine_node_register(f->e, NODE_CAPS, strlen(NODE_CAPS), 0,
                                                 &nodes[i]), RZ_OK);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = "{\"cpu_cores\":1,\"estimate_seconds\":10}";
    s.module_id = "count";
    s.module_version = "1.0.0";
    s.request_json = "{\"inputs\":{\"text\":\"a b\"},\"config\":{}}";
    s.max_cost_micros = 500;
    s.replicas = 3;
    uint64_t head = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, 1000, &head), RZ_OK);
    for (int i = 0; i < 3; i++) {
        rz_engine_assignment a;
        assert_int_equal(rz_engine_poll(f->e, nodes[i], 1000, &a), RZ_OK);
        assert_int_equal(node_report(f->e, nodes[i], a.job, a.attempt, "{\"n\":2}", NULL,
                                     1000, 1000), RZ_OK);
    }
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, head, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    assert_int_equal(rz_engine_tick(f->e, 2000), RZ_OK);
    /* Budgets smaller than the set remove nothing of it. */
    for (size_t budget = 1; budget < 3; budget++) {
        rz_engine_compacted c;
        assert_int_equal(rz_engine_compact(f->e, 30 * DAY, KEEP, budget, hook, f, &c),
                         RZ_OK);
        assert_int_equal(c.jobs, 0);
        for (uint64_t id = head; id < head + 3; id++)
            assert_int_equal(rz_engine_job_get(f->e, id, &ji), RZ_OK);
    }
    rz_engine_compacted c;
    assert_int_equal(rz_engine_compact(f->e, 30 * DAY, KEEP, 3, hook, f, &c), RZ_OK);
    assert_int_equal(c.jobs, 3);
    for (uint64_t id = head; id < head + 3; id++) {
        assert_int_equal(rz_engine_job_get(f->e, id, &ji), RZ_ENOENT);
        assert_true(rz_engine_compacted_id(f->e, 0, id));
    }
    check(f);
    efx_reopen(f);
    check(f);
}

/* Everyone's job list (the admin's) is full while more jobs exist: the
 * ids retention removed are skipped, not listed and dropped. */
static void test_unfiltered_list_is_full(void **state)
{
    fx *f = *state;
    uint64_t first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        last = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", 1000);
        first = first ? first : last;
        drain(f, 1000);
    }
    for (int i = 0; i < 5; i++) {
        last = submit(f, "{\"cpu_cores\":1,\"estimate_seconds\":10}", 20 * DAY);
        drain(f, 20 * DAY);
    }
    compact(f, 20 * DAY, 64);   /* the first ten go */
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, first, &ji), RZ_ENOENT);
    uint64_t ids[32];
    /* A page of 4, then the rest from below it: 5 in all, newest first. */
    size_t n = rz_engine_job_list(f->e, NULL, 0, ids, 4);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], last);
    size_t m = rz_engine_job_list(f->e, NULL, ids[3], ids + 4, 28);
    assert_int_equal(m, 1);
    for (size_t i = 0; i < n + m; i++) {
        assert_int_equal(rz_engine_job_get(f->e, ids[i], &ji), RZ_OK);
        if (i)
            assert_true(ids[i] < ids[i - 1]);
    }
    /* A job still queued (its record not yet the newest) is listed too. */
    uint64_t q = submit(f, "{\"cpu_cores\":64,\"estimate_seconds\":10}", 20 * DAY);
    assert_int_equal(rz_engine_job_list(f->e, NULL, 0, ids, 1), 1);
    assert_int_equal(ids[0], q);
    /* Deployments the same way. */
    assert_int_equal(rz_engine_deployment_list(f->e, NULL, 0, ids, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bounded_over_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_failure_removes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_mid_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory_keeps_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deployment_waits_for_its_elements, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replica_set_goes_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfiltered_list_is_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
