/* Engine simulator: a seeded random world of nodes, clients, jobs and
 * deployments thrown at the engine with faults — nodes that vanish,
 * duplicate and late results, declines, assignments lost on the way
 * (found by heartbeats' running lists), cancels, engine restarts — with every
 * invariant checked after every step (after TigerBeetle's VOPR).
 *
 *   sim_engine [SEED]            RZ_SIM_SEED, RZ_SIM_STEPS (default 1000),
 *                                RZ_SIM_NODES (default 1000), RZ_SIM_BIG
 * RZ_SIM_BIG=N also deploys, at the start, one deployment of N steps (a
 * tree with retries, timeouts and failures that continue) and runs the
 * world until it has finished, faults and restarts included: the checks
 * after every step are the same. CI runs N=1000; RZ_SIM_BIG=100000 is the
 * large run (minutes).
 * Memory holds live work only (lib/engine/engine_impl.h): at the end, with
 * every job finished, none is left in memory, before and after a restart,
 * and each one reads back the same from the store. After every step each
 * running deployment read back as a reopen would (its stored flow and
 * events) equals its run in memory.
 * Issue 18: deployments are paused and resumed (no job of a paused one is
 * assigned from the pause's commit to the resume's), approval steps are
 * decided (or take their default), failed and cancelled deployments are
 * resumed with their step cache, and trigger fires are made as the
 * orchestrator makes them (a record, then the engine's group commit). Now
 * and then one of those actions is swept: run from the same state with a
 * crash (SIGKILL, in a child) after its first durable write, then after
 * its second, ... (engine commits, ledger journal appends and checkpoints,
 * fire records); after each crash the engine opens, fires the crash lost
 * run again, every invariant holds and each fire ran exactly once.
 * RZ_SIM_SWEEP=0 turns the sweeps off.
 * Issue 22: a third of the attempts are said ended (rz_engine_node_ended,
 * a node's poll) a while before their result, freeing their slots.
 * Issue 17: each deployment has a service billed by time (step s, 1-second
 * intervals, restarts), so intervals roll over among the faults and
 * crashes, rz_engine_check holding each interval settled once.
 * A failure prints the seed and step; run again with that seed to replay:
 * the world and the engine are both deterministic. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"   /* rz__engine_live_jobs, the commit seam */
#include "ledger/ledger_impl.h"   /* the ledger's I/O seam */
#include "rhizos/engine.h"

typedef struct world {
    uint64_t seed, rng, now;
    unsigned long step, steps;
    char dir[64];
    rz_engine *e;
    rz_engine_opts opts;
    /* nodes the world runs: engine id, alive (heartbeats and answers) */
    uint64_t *node; bool *alive; size_t n_nodes;
    /* work in flight on nodes */
    struct flight { uint64_t node, job; uint32_t attempt; uint64_t due;
                    int dup, ended; } *fl;
    size_t n_fl, cap_fl;
    /* results kept back to be sent late */
    struct flight *late; size_t n_late, cap_late;
    rz_ledger_id clients[8];
    unsigned long submitted, deployed, results, rejected, restarts, lost;
    unsigned long declined, dropped, reconciled;
    unsigned long ended;          /* attempts said ended before the result */
    size_t big;                   /* steps of the big deployment; 0: none */
    uint64_t big_dep;
    rz_ledger_id rich;            /* who pays for it */
    unsigned long ch_right, ch_wrong, ch_silent;
    /* Deployments made (ids), and which the world paused (by id, as the
     * engine acknowledged): none of their jobs may be assigned from the
     * pause's commit to the resume's. */
    uint64_t *deps; size_t n_deps, cap_deps;
    bool *paused; size_t cap_paused;
    unsigned long pauses, resumes, decided, resumed_cached, reused;
    /* Trigger fires (act_fire): fire t (1..n_fires) deploys FIRED with
     * input fire = t; DIR/sim-fires records "t deployment created_ms" as
     * the orchestrator records a fire (docs/triggers.md, Durability). */
    uint64_t n_fires;
    unsigned long sweeps, crashes, fires_lost;
    bool sweep;                   /* crash sweeps on (RZ_SIM_SWEEP, default on) */
} world;

static uint64_t rnd(world *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    w->rng = x;
    return x * 2685821657736338717ull;
}

static uint64_t below(world *w, uint64_t n) { return n ? rnd(w) % n : 0; }

static void die(world *w, const char *what)
{
    const rz_error *err = rz_error_last();
    fprintf(stderr, "sim: FAILED at step %lu (now %llu): %s: %s [%s]\n"
            "sim: replay with: RZ_SIM_SEED=%llu RZ_SIM_STEPS=%lu\n",
            w->step, (unsigned long long)w->now, what, err->message,
            rz_status_name(err->code), (unsigned long long)w->seed, w->steps);
    exit(1);
}

static void push(struct flight **a, size_t *n, size_t *cap, struct flight f)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *a = realloc(*a, *cap * sizeof **a);
        if (!*a)
            abort();
    }
    (*a)[(*n)++] = f;
}

static void open_engine(world *w)
{
    if (rz_engine_open(&w->e, w->dir, &w->opts) != RZ_OK)
        die(w, "open");
}

static void add_node(world *w, size_t slot)
{
    /* One draw per statement: the order of arguments' evaluation is
     * unspecified, and the same seed must give the same world with any
     * compiler. */
    unsigned cores = 1 + (unsigned)below(w, 16);
    unsigned mem = 1024 * (1 + (unsigned)below(w, 32));
    unsigned cpu_price = 100 + (unsigned)below(w, 5000);
    unsigned mem_price = (unsigned)below(w, 50);
    unsigned slots = 1 + (unsigned)below(w, 4);
    char caps[512];
    snprintf(caps, sizeof caps,
             "{\"cpu\":{\"cores\":%u},\"memory_mb\":%u,"
             "\"storage\":{\"total_gb\":50,\"free_gb\":50},"
             "\"prices\":{\"cpu_hour_micros\":%u,\"gpu_hour_micros\":0,"
             "\"memory_gb_hour_micros\":%u},\"max_concurrent_jobs\":%u}",
             cores, mem, cpu_price, mem_price, slots);
    uint64_t id;
    if (rz_engine_node_register(w->e, caps, strlen(caps), w->now, &id) != RZ_OK)
        die(w, "register");
    w->node[slot] = id;
    w->alive[slot] = true;
}

static void act_submit(world *w)
{
    unsigned cores = 1 + (unsigned)below(w, 4);
    unsigned mem = 256 * (unsigned)below(w, 16);
    unsigned secs = 1 + (unsigned)below(w, 120);
    int verified = below(w, 4) == 0;   /* only on nodes that proved it */
    char reqs[256];
    snprintf(reqs, sizeof reqs,
             "{\"cpu_cores\":%u,\"memory_mb\":%u,\"estimate_seconds\":%u%s}",
             cores, mem, secs, verified ? ",\"verified\":true" : "");
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = w->clients[below(w, 8)];
    s.requirements_json = reqs;
    s.module_id = "sim";
    s.max_cost_micros = 1 + below(w, below(w, 50) ? 3000 : 2000000);
    s.priority = (int32_t)below(w, 3);
    /* One in eight on 2..4 distinct nodes (their outputs are random: the
     * runs agree or not, fail, are lost, cancelled, reopened). */
    s.replicas = below(w, 8) == 0 ? 2 + (uint32_t)below(w, 3) : 0;
    uint64_t id;
    int rc = rz_engine_submit(w->e, &s, w->now, &id);
    if (rc != RZ_OK && rc != RZ_EFUNDS)
        die(w, "submit");
    w->submitted += rc == RZ_OK;
}

static const char *FLOW =
    "flux: 1\nname: sim\nsteps:\n"
    "  a: {module: m, max_cost_micros: 400, verify: {replicas: 3}}\n"
    "  b: {module: m, needs: [a], retry: {max_attempts: 3, initial_ms: 50},"
    " max_cost_micros: 400}\n"
    "  c: {module: m, needs: [a], timeout_s: 2, max_cost_micros: 400,"
    " verify: {replicas: 2}}\n"
    "  d: {module: m, needs: [b, c], on_failure: continue, max_cost_micros: 400}\n"
    "  e: {module: m, needs: [d], when: \"steps.b.outputs.v > 5\", max_cost_micros: 400}\n"
    /* for_each: element jobs made and held mid-deployment (fanout.c) */
    "  f: {module: m, needs: [a], for_each: [1, 2, 3], max_parallel: 2,"
    " retry: {max_attempts: 2, initial_ms: 50}, max_cost_micros: 400}\n"
    "  g: {module: m, needs: [f], on_failure: continue, max_cost_micros: 400,"
    " for_each: \"${{ steps.f.outputs.v }}\"}\n"
    /* an approval: decided by the world (act_approve), or its default */
    "  h: {needs: [a], approval: {timeout_s: 3, default: approve}}\n"
    "  i: {module: m, needs: [h], max_cost_micros: 400}\n"
    /* a service billed by time (billing.c): 1-second intervals, restarts */
    "  s: {module: m, kind: service, restart: {max_restarts: 2,"
    " backoff_ms: 50}, budget: {max_micros_per_hour: 7200000, interval_s: 1}}\n";

static void dep_made(world *w, uint64_t id)
{
    if (w->n_deps == w->cap_deps) {
        w->cap_deps = w->cap_deps ? w->cap_deps * 2 : 64;
        if (!(w->deps = realloc(w->deps, w->cap_deps * sizeof *w->deps)))
            abort();
    }
    w->deps[w->n_deps++] = id;
    if (id >= w->cap_paused) {
        size_t cap = (id + 1) * 2;
        if (!(w->paused = realloc(w->paused, cap * sizeof *w->paused)))
            abort();
        memset(w->paused + w->cap_paused, 0, (cap - w->cap_paused) * sizeof *w->paused);
        w->cap_paused = cap;
    }
}

static void act_deploy(world *w)
{
    uint64_t id;
    int rc = rz_engine_deploy(w->e, FLOW, strlen(FLOW), w->clients[below(w, 8)],
                              NULL, w->now, &id, NULL);
    if (rc != RZ_OK && rc != RZ_EFUNDS)
        die(w, "deploy");
    w->deployed += rc == RZ_OK;
    if (rc == RZ_OK)
        dep_made(w, id);
}

/* The decisions since the last call: no job of a deployment the world
 * paused is assigned (a replica's deployment is its head's). */
static void drain_events(world *w)
{
    rz_engine_event ev;
    while (rz_engine_next_event(w->e, &ev)) {
        if (ev.type != RZ_EV_JOB_ASSIGNED)
            continue;
        rz_engine_job_info ji;
        if (rz_engine_job_get(w->e, ev.job, &ji) != RZ_OK)
            die(w, "job_get");
        if (ji.deployment && ji.deployment < w->cap_paused && w->paused[ji.deployment]) {
            fprintf(stderr, "sim: job %llu of paused deployment %llu assigned\n",
                    (unsigned long long)ev.job, (unsigned long long)ji.deployment);
            die(w, "a paused deployment's job was assigned");
        }
    }
}

/* A deployment the world made, running if one of a few draws is. */
static uint64_t some_dep(world *w, bool running)
{
    uint64_t d = 0;
    for (int k = 0; w->n_deps && k < 4; k++) {
        rz_run_state st;
        d = w->deps[below(w, w->n_deps)];
        if (rz_engine_deployment_state(w->e, d, &st) != RZ_OK)
            die(w, "deployment state");
        if ((st == RZ_RUN_RUNNING) == running)
            break;
    }
    return d;
}

/* Pause or resume a deployment; RZ_ESTATE once it has finished. */
static void act_pause(world *w)
{
    uint64_t d = some_dep(w, true);
    if (!d)
        return;
    int pause = !w->paused[d];
    drain_events(w);   /* what was assigned before it */
    int rc = rz_engine_deployment_pause(w->e, d, pause, w->now);
    if (rc != RZ_OK && rc != RZ_ESTATE)
        die(w, "pause");
    if (rc == RZ_OK) {
        w->paused[d] = pause;
        *(pause ? &w->pauses : &w->resumes) += 1;
    }
}

/* Decide a deployment's approval step h, if it waits (else RZ_ESTATE). */
static void act_approve(world *w)
{
    uint64_t d = some_dep(w, true);
    if (!d)
        return;
    int approve = below(w, 3) != 0;
    int rc = rz_engine_deployment_approve(w->e, d, "h", approve, "sim",
                                          approve ? NULL : "no", w->now);
    if (rc != RZ_OK && rc != RZ_ESTATE && rc != RZ_ENOENT)   /* a fire's: no h */
        die(w, "approve");
    w->decided += rc == RZ_OK;
}

/* Resume a failed or cancelled deployment with its step cache: what
 * succeeded there is reused (not run, not paid again). */
static void act_resume_cached(world *w)
{
    uint64_t d = some_dep(w, false);
    rz_engine_deployment_info di;
    if (!d || rz_engine_deployment_get(w->e, d, &di) != RZ_OK)
        return;
    if (di.state != RZ_RUN_FAILED && di.state != RZ_RUN_CANCELLED)
        return;
    char *map = NULL, *text = NULL, *inputs = NULL;
    if (rz_engine_reuse_map(w->e, d, &map) != RZ_OK ||
        rz_engine_deployment_flow(w->e, d, &text, &inputs) != RZ_OK)
        die(w, "reuse map");
    uint64_t id;
    int rc = rz_engine_deploy_reuse(w->e, text, strlen(text), di.client, inputs, map,
                                    w->now, &id, NULL);
    if (rc != RZ_OK && rc != RZ_EFUNDS)
        die(w, "deploy with reuse");
    rz_free(map);
    rz_free(text);
    rz_free(inputs);
    if (rc == RZ_OK) {
        dep_made(w, id);
        w->resumed_cached++;
    }
}

/* A tree: step i needs step (i-1)/2; retries keep most of it alive
 * through the world's 20% failures, every 7th failure continues, every
 * 11th step can time out (its results take up to 3 s; a lost node longer). */
static char *big_flow(size_t n)
{
    size_t cap = 128 + n * 160, len = 0;
    char *s = malloc(cap);
    if (!s)
        abort();
    len += (size_t)snprintf(s, cap, "flux: 1\nname: big\nsteps:\n");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(s + len, cap - len, "  s%zu: {module: m, "
                                "max_cost_micros: 10000, retry: {max_attempts: 4,"
                                " initial_ms: 50}", i);
        if (i)
            len += (size_t)snprintf(s + len, cap - len, ", needs: [s%zu]",
                                    (i - 1) / 2);
        if (i % 7 == 3)
            len += (size_t)snprintf(s + len, cap - len,
                                    ", on_failure: continue");
        if (i % 11 == 5)
            len += (size_t)snprintf(s + len, cap - len, ", timeout_s: 4");
        len += (size_t)snprintf(s + len, cap - len, "}\n");
    }
    return s;
}

static void deploy_big(world *w)
{
    rz_ledger_id rich = w->rich = rz_ledger_id_make(0x5151, 100);
    rz_ledger *l = rz_engine_ledger(w->e);
    if (rz_ledger_create_account(l, rich, RZ_LEDGER_CLIENT) != RZ_OK ||
        rz_ledger_test_credit(l, rz_ledger_id_make(0x5152, 100), rich,
                              100000 * (uint64_t)w->big) != RZ_OK)
        die(w, "big client");
    char *flow = big_flow(w->big);
    if (rz_engine_deploy(w->e, flow, strlen(flow), rich, NULL, w->now,
                         &w->big_dep, NULL) != RZ_OK)
        die(w, "big deploy");
    free(flow);
}

static bool big_running(world *w)
{
    rz_run_state st;
    if (!w->big)
        return false;
    if (rz_engine_deployment_state(w->e, w->big_dep, &st) != RZ_OK)
        die(w, "big state");
    return st == RZ_RUN_RUNNING;
}

static void act_poll(world *w)
{
    size_t i = below(w, w->n_nodes);
    if (!w->alive[i])
        return;
    rz_engine_assignment a;
    int rc = rz_engine_poll(w->e, w->node[i], w->now, &a);
    if (rc == RZ_ENOENT) {
        /* Nothing yet: like a held long-poll, the node waits (or gives up
         * waiting); placement prefers waiting nodes on ties. */
        int waiting = below(w, 2) == 0;
        if (rz_engine_node_waiting(w->e, w->node[i], waiting) != RZ_OK)
            die(w, "waiting");
        return;
    }
    if (rc == RZ_ESTATE) {    /* lost before the world noticed: rejoin */
        add_node(w, i);
        return;
    }
    if (rc != RZ_OK)
        die(w, "poll");
    uint64_t fate = below(w, 100);
    if (fate < 5) {               /* the node cannot run it: it declines */
        if (rz_engine_decline(w->e, w->node[i], a.job, a.attempt, w->now) != RZ_OK)
            die(w, "decline");
        w->declined++;
        return;
    }
    if (fate < 8) {               /* the assignment never reaches the node */
        w->dropped++;
        return;
    }
    uint64_t due = w->now + below(w, 3000);
    int dup = (int)below(w, 20) == 0;
    push(&w->fl, &w->n_fl, &w->cap_fl, (struct flight){ w->node[i], a.job,
         a.attempt, due, dup, 0 });
}

static void send_result(world *w, const struct flight *f, bool late)
{
    bool ok = below(w, 10) < 8;
    char out[64];
    snprintf(out, sizeof out, "{\"v\":%u}", (unsigned)below(w, 10));
    rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
    rep.attempt = f->attempt;
    rep.outputs_json = ok ? out : NULL;
    rep.error = ok ? NULL : "sim failure";
    rep.run_ms = below(w, 200000);
    int rc = rz_engine_report_result(w->e, f->node, f->job, &rep, w->now, NULL);
    if (rc != RZ_OK && rc != RZ_ESTATE)
        die(w, "result");
    /* RZ_ESTATE: the job was cancelled, timed out or its node lost
     * meanwhile, or this is a late copy. */
    (void)late;
    w->results += rc == RZ_OK;
    w->rejected += rc == RZ_ESTATE;
}

static bool node_alive(const world *w, uint64_t node)
{
    for (size_t i = 0; i < w->n_nodes; i++)
        if (w->node[i] == node)
            return w->alive[i];
    return false;
}

/* The node's poll says flight f's attempt ended; its result follows
 * later (it stays in flight: the node's heartbeat still lists it). */
static void say_ended(world *w, struct flight *f)
{
    int rc = rz_engine_node_ended(w->e, f->node, f->job, f->attempt, w->now);
    if (rc != RZ_OK && rc != RZ_ESTATE)
        die(w, "ended");
    w->ended += rc == RZ_OK;
    f->ended = 1;
    f->due = w->now + below(w, 1000);
}

static void act_results(world *w)
{
    for (size_t i = 0; i < w->n_fl;) {
        struct flight f = w->fl[i];
        if (f.due > w->now) {
            i++;
            continue;
        }
        if (!f.ended && node_alive(w, f.node) && below(w, 3) == 0) {
            say_ended(w, &w->fl[i++]);
            continue;
        }
        w->fl[i] = w->fl[--w->n_fl];
        if (!node_alive(w, f.node))
            continue;
        send_result(w, &f, false);
        if (f.dup)
            send_result(w, &f, false);
        if (below(w, 20) == 0)
            push(&w->late, &w->n_late, &w->cap_late, f);
    }
    if (w->n_late && below(w, 5) == 0) {
        struct flight f = w->late[below(w, w->n_late)];
        send_result(w, &f, true);
    }
}

/* What node `node` runs: the world's flights on it. */
static size_t running_on(const world *w, uint64_t node, uint64_t **ids,
                         size_t *cap)
{
    size_t n = 0;
    for (size_t k = 0; k < w->n_fl; k++) {
        if (w->fl[k].node != node)
            continue;
        if (n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            if (!(*ids = realloc(*ids, *cap * sizeof **ids)))
                abort();
        }
        (*ids)[n++] = w->fl[k].job;
    }
    return n;
}

/* Heartbeats with their running lists: assignments that never arrived go
 * back to the queue once the grace has passed. */
static void act_heartbeats(world *w)
{
    uint64_t *ids = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < w->n_nodes; i++) {
        if (!w->alive[i] || below(w, 4) != 0)
            continue;
        size_t n = running_on(w, w->node[i], &ids, &cap), back = 0;
        int rc = rz_engine_node_heartbeat(w->e, w->node[i], w->now, 0.5);
        if (rc == RZ_OK)
            rc = rz_engine_node_running(w->e, w->node[i], ids, n, 1000,
                                        w->now, &back);
        if (rc != RZ_OK) {
            /* the engine may have lost it before the world noticed */
            if (rz_error_last()->code != RZ_ESTATE)
                die(w, "heartbeat");
            add_node(w, i);
        }
        w->reconciled += back;
    }
    free(ids);
}

static void act_cancel(world *w)
{
    rz_engine_stats st;
    rz_engine_stats_get(w->e, &st);
    uint64_t total = 0;
    for (int s = 0; s <= RZ_JOB_CANCELLED; s++)
        total += st.jobs[s];
    if (!total)
        return;
    uint64_t job = 1 + below(w, total);
    rz_engine_job_info ji;
    if (rz_engine_job_get(w->e, job, &ji) != RZ_OK)
        die(w, "job_get");
    if (w->big && ji.deployment == w->big_dep)
        return;                   /* it is to run to its end */
    int rc = ji.deployment ? rz_engine_deployment_cancel(w->e, ji.deployment, w->now)
                           : rz_engine_job_cancel(w->e, job, w->now);
    if (rc != RZ_OK && rc != RZ_ESTATE)
        die(w, "cancel");
}

/* A node fetches its capability challenge, if one is due, and answers it
 * right, wrong or not at all. */
static void act_challenge(world *w)
{
    size_t i = below(w, w->n_nodes);
    uint64_t fate = below(w, 10);
    if (!w->alive[i])
        return;
    char *ch = NULL, *ans = NULL;
    int rc = rz_engine_node_challenge(w->e, w->node[i], w->now, &ch);
    if (rc == RZ_ENOENT || rc == RZ_ESTATE)   /* none due; lost meanwhile */
        return;
    if (rc != RZ_OK)
        die(w, "challenge");
    if (fate >= 8) {
        w->ch_silent++;
    } else {
        if (rz_challenge_answer(ch, strlen(ch), &ans) != RZ_OK)
            die(w, "challenge answer");
        if (fate == 7) {   /* a made-up CPU digest (not the true one) */
            char *d = strstr(ans, "\"cpu\":\"") + 7;
            memcpy(d, d[0] == '0' && d[1] == '0' ? "ff" : "00", 2);
        }
        /* One fetched earlier and left may be late by now (the tick that
         * would fail it comes after this). */
        rz_engine_node_trust t;
        if (rz_engine_node_trust_get(w->e, w->node[i], &t) != RZ_OK)
            die(w, "trust");
        int passed = -1, late = w->now > t.challenge_deadline_ms;
        int arc = rz_engine_node_answer(w->e, w->node[i], ans, strlen(ans),
                                        w->now, &passed);
        if (arc == RZ_ESTATE) {   /* the engine found it lost meanwhile */
            rz_free(ch);
            rz_free(ans);
            return;
        }
        if (arc != RZ_OK || passed != (fate < 7 && !late))
            die(w, "challenge answered");
        *(fate < 7 ? &w->ch_right : &w->ch_wrong) += 1;
    }
    rz_free(ch);
    rz_free(ans);
}

/* ---- trigger fires and crashes at every commit point ----
 * A fire is made as the orchestrator makes one: the deployment in an
 * engine group, its record written (and synced) before the group's
 * commit; at a start each record is looked up in the engine (the
 * deployment with that id, made at that time, for that fire): one the
 * crash lost is dropped, and the fire is due again (the catch-up rule).
 * So each fire runs exactly once. */

static const char *FIRED =
    "flux: 1\nname: fired\ninputs:\n  fire: {required: false}\nsteps:\n"
    "  a: {module: m, max_cost_micros: 400, inputs: {n: \"${{ inputs.fire }}\"}}\n";

/* Where a crash strikes in a child: after the `crash_at`-th durable write
 * (an engine commit, a ledger journal append or checkpoint, a fire
 * record); 0: never. */
static unsigned long crash_at, crash_seen;
static const rz__ledger_io *plain_io;

static void durable_point(void)
{
    if (crash_at && ++crash_seen == crash_at)
        raise(SIGKILL);
}

static ssize_t seam_pwrite(int fd, const void *p, size_t n, off_t off)
{
    ssize_t r = plain_io->pwrite(fd, p, n, off);
    durable_point();
    return r;
}

static int seam_commit(MDB_txn *txn)
{
    int r = plain_io->commit(txn);
    durable_point();
    return r;
}

static void seams_on(unsigned long at)
{
    static rz__ledger_io io;
    plain_io = rz__ledger_io_seam;
    io = *plain_io;
    io.pwrite = seam_pwrite;
    io.commit = seam_commit;
    rz__ledger_io_seam = &io;
    rz__engine_commit_seam = durable_point;
    crash_at = at;
    crash_seen = 0;
}

static void fires_path(const world *w, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/sim-fires", w->dir);
}

static void fire_once(world *w, uint64_t t)
{
    char in[64], path[96];
    snprintf(in, sizeof in, "{\"fire\":%llu}", (unsigned long long)t);
    uint64_t id = 0;
    if (rz_engine_group_begin(w->e) != RZ_OK)
        die(w, "group");
    int rc = rz_engine_deploy(w->e, FIRED, strlen(FIRED), w->clients[0], in, w->now,
                              &id, NULL);
    if (rc != RZ_OK && rc != RZ_EFUNDS)
        die(w, "fire deploy");
    fires_path(w, path, sizeof path);
    FILE *f = fopen(path, "a");
    if (!f || fprintf(f, "%llu %llu %llu\n", (unsigned long long)t,
                      (unsigned long long)(rc == RZ_OK ? id : 0),
                      (unsigned long long)w->now) < 0 ||
        fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
        die(w, "fire record");
    durable_point();
    if (rz_engine_group_commit(w->e) != RZ_OK)
        die(w, "group commit");
}

/* The fire number deployment `id` was made for; 0: not a fire. */
static uint64_t fire_of(world *w, uint64_t id, uint64_t *created)
{
    char *text = NULL, *inputs = NULL;
    rz_engine_deployment_info di;
    if (rz_engine_deployment_get(w->e, id, &di) != RZ_OK ||
        rz_engine_deployment_flow(w->e, id, &text, &inputs) != RZ_OK)
        die(w, "deployment read");
    cJSON *in = inputs ? cJSON_Parse(inputs) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "fire");
    uint64_t n = cJSON_IsNumber(t) ? (uint64_t)t->valuedouble : 0;
    cJSON_Delete(in);
    rz_free(text);
    rz_free(inputs);
    *created = di.created_ms;
    return n;
}

/* At a start: keep the records whose deployment the engine has; every
 * fire decided and not kept is due again (returned in lost[], their
 * count), as the catch-up rule would run it. */
static size_t fires_recover(world *w, uint64_t *lost, size_t cap)
{
    char path[96], tmp[104];
    fires_path(w, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(path, "r"), *o = fopen(tmp, "w");
    bool *kept = calloc(w->n_fires + 1, sizeof *kept);
    if (!o || !kept)
        die(w, "fire records");
    unsigned long long t, dep, ms;
    while (f && fscanf(f, "%llu %llu %llu", &t, &dep, &ms) == 3) {
        uint64_t created = 0;
        if (t > w->n_fires || kept[t])
            die(w, "a fire recorded twice");
        if (!dep || (dep <= w->e->n_deps && fire_of(w, dep, &created) == t &&
                     created == ms)) {
            kept[t] = true;
            fprintf(o, "%llu %llu %llu\n", t, dep, ms);
        }
    }
    if (f)
        fclose(f);
    if (fflush(o) != 0 || fsync(fileno(o)) != 0 || fclose(o) != 0 || rename(tmp, path) != 0)
        die(w, "fire records");
    size_t n = 0;
    for (uint64_t k = 1; k <= w->n_fires; k++)
        if (!kept[k] && n < cap)
            lost[n++] = k;
    free(kept);
    return n;
}

/* Every fire decided so far ran exactly once (a refused one: none), as
 * the engine and the records say. */
static void fires_check(world *w)
{
    uint64_t n_deps = w->e->n_deps;
    unsigned *runs = calloc(w->n_fires + 1, sizeof *runs);
    bool *rec = calloc(w->n_fires + 1, sizeof *rec);
    if (!runs || !rec)
        abort();
    for (uint64_t d = 1; d <= n_deps; d++) {
        uint64_t created, t = fire_of(w, d, &created);
        if (t > w->n_fires)
            die(w, "a deployment for a fire not yet decided");
        runs[t] += t != 0;
    }
    char path[96];
    fires_path(w, path, sizeof path);
    FILE *f = fopen(path, "r");
    unsigned long long t, dep, ms;
    while (f && fscanf(f, "%llu %llu %llu", &t, &dep, &ms) == 3) {
        if (t > w->n_fires || rec[t])
            die(w, "a fire recorded twice");
        rec[t] = true;
        if (!dep)
            runs[t]++;   /* refused (funds): handled, nothing runs */
    }
    if (f)
        fclose(f);
    for (uint64_t k = 1; k <= w->n_fires; k++)
        if (runs[k] != 1 || !rec[k]) {
            fprintf(stderr, "sim: fire %llu ran %u times (recorded: %d)\n",
                    (unsigned long long)k, runs[k], rec[k]);
            die(w, "a fire was lost or doubled");
        }
    free(runs);
    free(rec);
}

/* A start after a crash: lost fires run again (the catch-up rule). */
static void restart_after_crash(world *w)
{
    open_engine(w);
    uint64_t lost[64];
    size_t n = fires_recover(w, lost, 64);
    for (size_t i = 0; i < n; i++)
        fire_once(w, lost[i]);
    w->fires_lost += n;
    if (rz_engine_tick(w->e, w->now) != RZ_OK)   /* readiness as of now, as step() has it */
        die(w, "tick");
    if (rz_engine_check(w->e) != RZ_OK)
        die(w, "invariant after a crash");
    for (size_t i = 0; i < w->e->n_live_deps; i++)
        if (rz__engine_dep_readback(w->e, w->e->deps[i]) != RZ_OK)
            die(w, "a run read back after a crash differs from memory");
    fires_check(w);
}

enum { SW_FIRE, SW_PAUSE, SW_APPROVE, SW_RESUME, SW_KINDS };

typedef struct sweep_act {
    int kind;
    uint64_t dep, t;
    int flag;
} sweep_act;

/* The action, as a child runs it (it must not draw from the world). */
static void sweep_do(world *w, const sweep_act *a)
{
    int rc = RZ_OK;
    switch (a->kind) {
    case SW_FIRE:
        fire_once(w, a->t);
        return;
    case SW_PAUSE:
        rc = rz_engine_deployment_pause(w->e, a->dep, a->flag, w->now);
        break;
    case SW_APPROVE:
        rc = rz_engine_deployment_approve(w->e, a->dep, "h", a->flag, "sim", NULL, w->now);
        break;
    case SW_RESUME: {
        char *map = NULL, *text = NULL, *inputs = NULL;
        rz_engine_deployment_info di;
        uint64_t id;
        if (rz_engine_deployment_get(w->e, a->dep, &di) != RZ_OK ||
            rz_engine_reuse_map(w->e, a->dep, &map) != RZ_OK ||
            rz_engine_deployment_flow(w->e, a->dep, &text, &inputs) != RZ_OK)
            die(w, "reuse map");
        rc = rz_engine_deploy_reuse(w->e, text, strlen(text), di.client, inputs, map,
                                    w->now, &id, NULL);
        rc = rc == RZ_EFUNDS ? RZ_OK : rc;
        rz_free(map);
        rz_free(text);
        rz_free(inputs);
        break;
    }
    }
    if (rc != RZ_OK && rc != RZ_ESTATE && rc != RZ_ENOENT)
        die(w, "swept action");
}

/* Run one action with a crash after its first durable write, then from
 * the same state with one after its second, ... until it completes: after
 * each crash the engine opens, lost fires run again, every invariant
 * holds. Then the world goes on from the completed action. */
static void crash_sweep(world *w, const sweep_act *a)
{
    char snap[96], cmd[512];
    snprintf(snap, sizeof snap, "%s.snap", w->dir);
    uint64_t before = w->e->n_deps;
    rz_engine_close(w->e);
    w->e = NULL;
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", snap, w->dir, snap);
    if (system(cmd) != 0)
        die(w, "snapshot");
    for (unsigned long k = 1;; k++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", w->dir, snap, w->dir);
        if (k > 1 && system(cmd) != 0)
            die(w, "restore");
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die(w, "fork");
        if (pid == 0) {
            open_engine(w);
            seams_on(k);
            sweep_do(w, a);
            rz_engine_close(w->e);
            _exit(0);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid)
            die(w, "wait");
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
            break;   /* it completed before the k-th durable write */
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            die(w, "the swept action failed");
        w->crashes++;
        restart_after_crash(w);
        rz_engine_close(w->e);
        w->e = NULL;
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", snap);
    if (system(cmd) != 0)
        die(w, "snapshot");
    restart_after_crash(w);   /* nothing lost: the checks again */
    if (a->kind == SW_PAUSE) {
        rz_engine_deployment_info di;
        if (rz_engine_deployment_get(w->e, a->dep, &di) != RZ_OK)
            die(w, "deployment");
        if (di.state == RZ_RUN_RUNNING)
            w->paused[a->dep] = a->flag;
    }
    for (uint64_t id = before + 1; id <= w->e->n_deps; id++)
        dep_made(w, id);   /* what the completed action made */
    w->sweeps++;
}

static void act_fire(world *w, bool sweep)
{
    uint64_t t = ++w->n_fires, before = w->e->n_deps;
    if (!sweep) {
        fire_once(w, t);
        for (uint64_t id = before + 1; id <= w->e->n_deps; id++)
            dep_made(w, id);
        return;
    }
    sweep_act a = { .kind = SW_FIRE, .t = t };
    crash_sweep(w, &a);
}

/* One of the swept actions, with crashes at each of its commit points. */
static void act_sweep(world *w)
{
    sweep_act a = { .kind = (int)below(w, SW_KINDS) };
    if (a.kind == SW_FIRE) {
        act_fire(w, true);
        return;
    }
    a.dep = some_dep(w, a.kind != SW_RESUME);
    if (!a.dep)
        return;
    a.flag = a.kind == SW_PAUSE ? !w->paused[a.dep] : below(w, 2) == 0;
    if (a.kind == SW_RESUME) {
        rz_engine_deployment_info di;
        if (rz_engine_deployment_get(w->e, a.dep, &di) != RZ_OK)
            die(w, "deployment");
        if (di.state != RZ_RUN_FAILED && di.state != RZ_RUN_CANCELLED)
            return;
    }
    drain_events(w);
    crash_sweep(w, &a);
}

static void step(world *w)
{
    w->now += below(w, 200);
    uint64_t r = below(w, 1000);
    if (r < 150)
        act_submit(w);
    else if (r < 170)
        act_deploy(w);
    else if (r < 180)
        act_cancel(w);
    else if (r < 190) {           /* a node vanishes; a new one joins */
        size_t i = below(w, w->n_nodes);
        if (w->alive[i]) {
            w->alive[i] = false;
            w->lost++;
        } else
            add_node(w, i);
    } else if (r < 195) {         /* the engine restarts */
        rz_engine_close(w->e);
        w->e = NULL;
        open_engine(w);
        w->restarts++;
    } else if (r < 199)
        act_pause(w);
    else if (r < 201)
        act_resume_cached(w);
    else if (r < 203)
        act_fire(w, false);
    else if (r < 205 && w->sweep)
        act_sweep(w);
    else
        for (int k = 0; k < 8; k++)
            act_poll(w);
    act_results(w);
    if (below(w, 3) == 0)
        act_heartbeats(w);
    if (below(w, 2) == 0)
        act_challenge(w);
    if (below(w, 4) == 0)
        act_approve(w);
    if (below(w, 10) == 0)
        act_pause(w);
    if (rz_engine_tick(w->e, w->now) != RZ_OK)
        die(w, "tick");
    drain_events(w);
    /* With a big deployment the engine's side is still checked whole every
     * step, the ledger (every record read, O(transfers)) by a sample of
     * it but whole every 100 steps and at the end. */
    int rc = w->big && w->step % 100 ? rz_engine_check_sampled(w->e, 64)
                                     : rz_engine_check(w->e);
    if (rc != RZ_OK)
        die(w, "invariant");
    /* Every running deployment's record, read back as a reopen would
     * (stored flow, stored events replayed), equals its run in memory
     * after every commit; a big one's replay is O(its events): every 100
     * steps. */
    for (size_t i = 0; i < w->e->n_live_deps; i++) {
        const rz__edep *d = w->e->deps[i];
        if ((!w->big || d->n_steps < 1000 || w->step % 100 == 0) &&
            rz__engine_dep_readback(w->e, d) != RZ_OK)
            die(w, "a run read back differs from memory");
    }
}

/* Money: what clients paid equals what succeeded jobs cost; nothing is held
 * once every job is closed. */
/* The sum of every job's cost, read as queries read it. */
static uint64_t cost_of(world *w, uint64_t total)
{
    uint64_t cost = 0;
    for (uint64_t j = 1; j <= total; j++) {
        rz_engine_job_info ji;
        if (rz_engine_job_get(w->e, j, &ji) != RZ_OK)
            die(w, "job_get");
        cost += ji.cost_micros;
    }
    return cost;
}

/* Once everything has finished and its settlement's mark is committed
 * (two more calls, the first once the mark waited: RZ__PAID_WRITE_MS),
 * memory holds no job and no deployment: they are read back from the
 * store, with the same answers, before and after a restart. */
static void finished_leave_memory(world *w, uint64_t total, uint64_t cost)
{
    for (int i = 0; i < 2; i++)
        if (rz_engine_tick(w->e, w->now += RZ__PAID_WRITE_MS) != RZ_OK)
            die(w, "tick");
    for (int round = 0; round < 2; round++) {
        if (rz__engine_live_jobs(w->e) || rz__engine_live_deps(w->e)) {
            fprintf(stderr, "sim: %zu jobs and %zu deployments in memory\n",
                    rz__engine_live_jobs(w->e), rz__engine_live_deps(w->e));
            die(w, "finished work stayed in memory");
        }
        if (cost_of(w, total) != cost || rz_engine_check(w->e) != RZ_OK)
            die(w, "a finished job read back differs");
        rz_engine_close(w->e);
        open_engine(w);
    }
}

/* A replicated job's charge is its paid runs' sum; a run is paid only
 * when it agreed with a majority, and then the job succeeded. */
static void replicated_check(world *w, const rz_engine_job_info *ji,
                             unsigned long *by_state)
{
    rz_engine_replica_run r[RZ_ENGINE_REPLICAS_MAX];
    size_t n = rz_engine_job_replicas(w->e, ji->id, r, RZ_ENGINE_REPLICAS_MAX);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        bool agreed = strcmp(r[i].verdict, "agreed") == 0;
        if ((r[i].cost_micros && !agreed) ||
            (agreed && ji->state != RZ_JOB_SUCCEEDED))
            die(w, "a replica paid without a majority");
        sum += r[i].cost_micros;
    }
    if (n != ji->replicas || sum != ji->cost_micros)
        die(w, "a replicated job's charge");
    by_state[ji->state]++;
}

/* Services billed by time (step s): intervals rolled over (each settled
 * once: rz_engine_check's B2) and what the billed jobs were charged. */
static void summary_billing(world *w, uint64_t total)
{
    unsigned long jobs = 0, intervals = 0;
    uint64_t micros = 0;
    for (uint64_t j = 1; j <= total; j++) {
        const rz__ejob *x = rz__engine_job_read(w->e, j);
        if (!x || !x->iv)
            continue;
        jobs++;
        intervals += x->iv - 1;
        micros += x->iv_paid_micros + x->cost;
    }
    printf("sim: %lu services billed by time, %lu intervals rolled over, %llu "
           "micros charged for them\n", jobs, intervals, (unsigned long long)micros);
}

static void summary_18(const world *w)
{
    printf("sim: %lu pauses, %lu resumes, %lu approvals decided, %lu deployments "
           "resumed with their step cache, %llu trigger fires (%lu lost to a crash "
           "and run again); %lu actions swept through %lu crashes at their commit "
           "points; %lu attempts said ended before their result\n", w->pauses,
           w->resumes, w->decided, w->resumed_cached, (unsigned long long)w->n_fires,
           w->fires_lost, w->sweeps, w->crashes, w->ended);
}

static void finish(world *w)
{
    rz_engine_stats st;
    rz_engine_stats_get(w->e, &st);
    uint64_t total = 0;
    for (int s = 0; s <= RZ_JOB_CANCELLED; s++)
        total += st.jobs[s];
    for (uint64_t j = 1; j <= total; j++) {
        rz_engine_job_info ji;
        if (rz_engine_job_get(w->e, j, &ji) != RZ_OK)
            die(w, "job_get");
        if (ji.state >= RZ_JOB_SUCCEEDED)
            continue;
        int rc = ji.deployment ? rz_engine_deployment_cancel(w->e, ji.deployment, w->now)
                               : rz_engine_job_cancel(w->e, j, w->now);
        if (rc != RZ_OK && rc != RZ_ESTATE)
            die(w, "final cancel");
    }
    uint64_t cost = 0;
    unsigned long rep[RZ_JOB_CANCELLED + 1] = {0};
    for (uint64_t j = 1; j <= total; j++) {
        rz_engine_job_info ji;
        if (rz_engine_job_get(w->e, j, &ji) != RZ_OK)
            die(w, "job_get");
        if (ji.state < RZ_JOB_SUCCEEDED)
            die(w, "a job stayed open after cancel");
        cost += ji.cost_micros;
        if (ji.replicas)
            replicated_check(w, &ji, rep);
    }
    uint64_t paid = 0;
    for (int c = 0; c < (w->big ? 9 : 8); c++) {
        rz_ledger_account a;
        rz_ledger_id who = c < 8 ? w->clients[c] : w->rich;
        if (rz_ledger_balance(rz_engine_ledger(w->e), who, &a) != RZ_OK)
            die(w, "balance");
        if (a.debits_pending)
            die(w, "money still held after every job closed");
        paid += a.debits_posted;
    }
    if (paid != cost) {
        fprintf(stderr, "sim: clients paid %llu, jobs cost %llu\n",
                (unsigned long long)paid, (unsigned long long)cost);
        die(w, "money");
    }
    if (rz_engine_check(w->e) != RZ_OK)
        die(w, "final invariant");
    fires_check(w);
    finished_leave_memory(w, total, cost);
    /* Every node's reputation is the formula's over its record; only what
     * it claims is unverified. */
    for (uint64_t n = 1; n <= rz_engine_node_count(w->e); n++) {
        rz_engine_node_trust t;
        if (rz_engine_node_trust_get(w->e, n, &t) != RZ_OK)
            die(w, "trust");
        if (t.reputation != rz_engine_reputation(&t.record) ||
            (t.unverified & ~t.claims))
            die(w, "trust invariant");
    }
    printf("sim: seed %llu: %lu steps, %lu nodes, %lu jobs submitted, %lu "
           "deployments, %lu results accepted, %lu rejected, %lu nodes lost, "
           "%lu restarts, %lu declines, %lu assignments lost and %lu "
           "re-queued by heartbeats, %lu/%lu/%lu challenges answered "
           "right/wrong/not, %llu micros charged; replicated jobs %lu "
           "succeeded, %lu failed, %lu cancelled\n",
           (unsigned long long)w->seed, w->steps, (unsigned long)w->n_nodes,
           w->submitted, w->deployed, w->results, w->rejected, w->lost,
           w->restarts, w->declined, w->dropped, w->reconciled, w->ch_right,
           w->ch_wrong, w->ch_silent, (unsigned long long)cost,
           rep[RZ_JOB_SUCCEEDED], rep[RZ_JOB_FAILED], rep[RZ_JOB_CANCELLED]);
    summary_18(w);
    summary_billing(w, total);
}

/* Small capability challenges, often, among the faults (act_challenge). */
static void challenges_on(rz_engine_opts *o, uint64_t seed)
{
    o->challenge_interval_ms = 20000;
    o->challenge_seed = seed;
    o->challenge_cpu_iterations = 64;
    o->challenge_memory_mb = 1;
    o->challenge_grace_ms = 1000;
}

static unsigned long env_num(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 10) : def;
}

static void world_free(world *w)
{
    free(w->node);
    free(w->alive);
    free(w->fl);
    free(w->late);
    free(w->deps);
    free(w->paused);
}

int main(int argc, char **argv)
{
    world w;
    memset(&w, 0, sizeof w);
    w.seed = argc > 1 ? strtoull(argv[1], NULL, 10) : env_num("RZ_SIM_SEED", 0);
    if (!w.seed)
        w.seed = 20261121;
    w.rng = w.seed * 0x9E3779B97F4A7C15ull | 1;
    w.steps = env_num("RZ_SIM_STEPS", 1000);
    w.n_nodes = env_num("RZ_SIM_NODES", 1000);
    if (!w.n_nodes)
        w.n_nodes = 1;
    w.now = 1000;
    snprintf(w.dir, sizeof w.dir, "/tmp/rz-sim-XXXXXX");
    if (!mkdtemp(w.dir))
        return 2;
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 5000;
    o.max_attempts = 4;
    challenges_on(&o, w.seed);
    w.opts = o;
    open_engine(&w);
    rz_ledger *l = rz_engine_ledger(w.e);
    for (int c = 0; c < 8; c++) {
        w.clients[c] = rz_ledger_id_make(0x5151, (uint64_t)c + 1);
        if (rz_ledger_create_account(l, w.clients[c], RZ_LEDGER_CLIENT) != RZ_OK ||
            rz_ledger_test_credit(l, rz_ledger_id_make(0x5152, (uint64_t)c + 1),
                                  w.clients[c], c == 7 ? 500 : 5000000) != RZ_OK)
            die(&w, "client");
    }
    w.node = calloc(w.n_nodes, sizeof *w.node);
    w.alive = calloc(w.n_nodes, sizeof *w.alive);
    for (size_t i = 0; i < w.n_nodes; i++)
        add_node(&w, i);
    w.big = env_num("RZ_SIM_BIG", 0);
    w.sweep = env_num("RZ_SIM_SWEEP", 1) != 0;
    if (w.big)
        deploy_big(&w);
    /* The big deployment runs to its end, within a bound far past what
     * its steps need (about 8 are placed per world step). */
    unsigned long cap = w.steps + 40 * (unsigned long)w.big;
    for (w.step = 1; w.step <= w.steps || (big_running(&w) && w.step <= cap);
         w.step++)
        step(&w);
    if (big_running(&w))
        die(&w, "the big deployment did not finish");
    if (w.big) {
        rz_engine_deployment_info di;
        if (rz_engine_deployment_get(w.e, w.big_dep, &di) != RZ_OK)
            die(&w, "big info");
        unsigned long ok = 0;
        for (size_t i = 0; i < di.n_steps; i++) {
            rz_engine_job_info ji;
            if (rz_engine_job_get(w.e, di.first_job + i, &ji) != RZ_OK)
                die(&w, "big job");
            ok += ji.state == RZ_JOB_SUCCEEDED;
        }
        printf("sim: big deployment of %zu steps %s (%lu steps succeeded) "
               "after %lu world steps\n", w.big, rz_run_state_name(di.state),
               ok, w.step - 1);
    }
    finish(&w);
    rz_engine_close(w.e);
    world_free(&w);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w.dir);
    return system(cmd) == 0 ? 0 : 2;
}
