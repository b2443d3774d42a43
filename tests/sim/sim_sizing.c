/* Sizing run (issue 21, docs/scale.md "Sizing"): the real engine, as the
 * orchestrator drives it, under a simulated network with simulated time,
 * to measure what one orchestrator can carry. Not a test of behaviour
 * (tests/sim/sim_engine.c is): it prints figures.
 *
 * The orchestrator serves one event-loop pass at a time: the calls of a
 * pass run inside one group (rz_engine_group_begin) and one commit makes
 * them durable (one LMDB transaction, one ledger batch). So here: passes
 * of up to RZ_SIZE_BATCH calls, each a group. First RZ_SIZE_QUEUED
 * standalone jobs are submitted with no node (memory and store per queued
 * job), then the nodes register (memory per node) and every node
 * heartbeats and polls once per RZ_SIZE_HB_S simulated seconds; a job's
 * assignment is taken by its node's poll (at once, on its event) and
 * reported after a simulated run of
 * 1-60 s; deployments (chains of RZ_SIZE_STEPS steps) are kept
 * RZ_SIZE_DEPS at a time until RZ_SIZE_JOBS jobs in all have run.
 *
 *   sim_sizing                 RZ_SIZE_NODES (100000), RZ_SIZE_JOBS (1000000),
 *                              RZ_SIZE_DEPS (10000), RZ_SIZE_STEPS (8),
 *                              RZ_SIZE_QUEUED (100000), RZ_SIZE_BATCH (256),
 *                              RZ_SIZE_HB_S (30), RZ_SIZE_DURABLE (0),
 *                              RZ_SIZE_DIR (a new folder under /tmp)
 *
 * Printed: time per call type (wall, one thread: the engine is single-
 * threaded), ops/s, commits, memory per node and per queued job (RSS
 * deltas), store bytes per job (data.mdb sizes), and the peak. */
#define _XOPEN_SOURCE 700   /* nftw */
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rhizos/engine.h"
#include "rhizos/ledger.h"

enum { OP_REGISTER, OP_SUBMIT, OP_DEPLOY, OP_POLL, OP_REPORT, OP_HEARTBEAT,
       OP_TICK, OP_COMMIT, OP_N };
static const char *const OP_NAMES[OP_N] = {
    "register", "submit", "deploy", "poll", "report", "heartbeat", "tick",
    "group commit" };

typedef struct run {
    uint64_t node, job, due;
    uint32_t attempt;
} run;

typedef struct sizing {
    rz_engine *e;
    char dir[64];
    uint64_t now;                     /* simulated ms */
    size_t nodes, jobs, deps, steps, queued, batch, hb_ms;
    uint64_t *node;
    uint64_t next_hb;                 /* next node to heartbeat */
    double hb_owed;                   /* heartbeats due, not yet sent */
    rz_ledger_id client;
    double ns[OP_N];
    double commit_wall_ns;
    unsigned long count[OP_N];
    size_t in_pass;
    run *runs; size_t n_runs, cap_runs;
    uint64_t *wake; size_t n_wake, cap_wake;   /* nodes told to poll */
    unsigned long done_jobs, live_deps, made_deps, finished_deps;
    char *flow;
} sizing;

static size_t env_num(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : def;
}

static void die(const char *what)
{
    fprintf(stderr, "sim_sizing: %s: %s\n", what, rz_error_last()->message);
    exit(1);
}

static double clock_ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* Calls are timed in this thread's CPU time, so a loaded machine (other
 * processes on the cores) does not inflate them; commits in wall time
 * too (their fsyncs and writes wait on the disk, not the CPU). */
static double cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* A field of /proc/self/status, in KiB. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Bytes the store files hold on disk (sparse files: their blocks). */
static long long dir_bytes(const char *dir, const char *sub)
{
    char path[160];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    return stat(path, &st) == 0 ? (long long)st.st_blocks * 512 : 0;
}

static void grow(void **a, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return;
    *cap = *cap ? *cap * 2 : 1024;
    if (*cap < n)
        *cap = n;
    *a = realloc(*a, *cap * size);
    if (!*a)
        abort();
}

/* Start a timed call (opening the pass's group when none is open). */
static double op_begin(sizing *s)
{
    if (!rz_engine_in_group(s->e) && rz_engine_group_begin(s->e) != RZ_OK)
        die("group_begin");
    return cpu_ns();
}

static void pass_end(sizing *s)
{
    if (!rz_engine_in_group(s->e))
        return;
    double t = cpu_ns(), w = mono_ns();
    if (rz_engine_group_commit(s->e) != RZ_OK)
        die("group_commit");
    s->ns[OP_COMMIT] += cpu_ns() - t;
    s->commit_wall_ns += mono_ns() - w;
    s->count[OP_COMMIT]++;
    s->in_pass = 0;
}

static void op_end(sizing *s, int op, double t0)
{
    s->ns[op] += cpu_ns() - t0;
    s->count[op]++;
    if (++s->in_pass >= s->batch)
        pass_end(s);
}

static void drain_events(sizing *s)
{
    rz_engine_event ev;
    while (rz_engine_next_event(s->e, &ev)) {
        if (ev.type == RZ_EV_JOB_ASSIGNED) {
            grow((void **)&s->wake, &s->cap_wake, s->n_wake + 1, sizeof *s->wake);
            s->wake[s->n_wake++] = ev.node;
        } else if (ev.type == RZ_EV_DEPLOYMENT_FINISHED) {
            s->live_deps--;
            s->finished_deps++;
        }
    }
}

static void register_nodes(sizing *s)
{
    static const char caps[] =
        "{\"cpu\":{\"cores\":8},\"memory_mb\":16384,"
        "\"storage\":{\"total_gb\":100,\"free_gb\":100},"
        "\"prices\":{\"cpu_hour_micros\":3600,\"gpu_hour_micros\":0,"
        "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2}";
    s->node = calloc(s->nodes, sizeof *s->node);
    for (size_t i = 0; i < s->nodes; i++) {
        double t = op_begin(s);
        if (rz_engine_node_register(s->e, caps, sizeof caps - 1, s->now,
                                    &s->node[i]) != RZ_OK)
            die("register");
        op_end(s, OP_REGISTER, t);
    }
    pass_end(s);
}

static int submit_one(sizing *s)
{
    rz_engine_job_spec j = RZ_ENGINE_JOB_SPEC_INIT;
    j.client = s->client;
    j.requirements_json = "{\"cpu_cores\":1,\"memory_mb\":512,"
                          "\"estimate_seconds\":30}";
    j.module_id = "sizing";
    j.max_cost_micros = 1000;
    uint64_t id;
    double t = op_begin(s);
    int rc = rz_engine_submit(s->e, &j, s->now, &id);
    op_end(s, OP_SUBMIT, t);
    return rc;
}

static char *chain_flow(size_t steps)
{
    size_t cap = 64 + steps * 96, len = 0;
    char *f = malloc(cap);
    len += (size_t)snprintf(f, cap, "flux: 1\nname: sizing\nsteps:\n");
    for (size_t i = 0; i < steps; i++)   /* s0; s1..: s(i-1); last: s0 too */
        len += (size_t)snprintf(f + len, cap - len,
                                "  s%zu: {module: m, max_cost_micros: 1000%s%zu%s}\n",
                                i, i ? ", needs: [s" : "", i ? i - 1 : 0,
                                i ? "]" : "");
    return f;
}

static void deploy_one(sizing *s)
{
    uint64_t id;
    double t = op_begin(s);
    if (rz_engine_deploy(s->e, s->flow, strlen(s->flow), s->client, NULL,
                         s->now, &id, NULL) != RZ_OK)
        die("deploy");
    op_end(s, OP_DEPLOY, t);
    s->live_deps++;
    s->made_deps++;
}

/* Nodes told of an assignment poll for it; its result is due after a
 * simulated run of 1..60 s. */
static void poll_woken(sizing *s)
{
    for (size_t i = 0; i < s->n_wake; i++) {
        rz_engine_assignment a;
        double t = op_begin(s);
        int rc = rz_engine_poll(s->e, s->wake[i], s->now, &a);
        op_end(s, OP_POLL, t);
        if (rc != RZ_OK)
            continue;   /* taken by an earlier poll of this node */
        grow((void **)&s->runs, &s->cap_runs, s->n_runs + 1, sizeof *s->runs);
        s->runs[s->n_runs++] = (run){ s->wake[i], a.job,
                                      s->now + 1000 + (a.job * 7919) % 59000,
                                      a.attempt };
    }
    s->n_wake = 0;
}

static void report_due(sizing *s)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->n_runs; i++) {
        run *r = &s->runs[i];
        if (r->due > s->now) {
            s->runs[keep++] = *r;
            continue;
        }
        rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
        rep.attempt = r->attempt;
        rep.outputs_json = "{\"v\":1}";
        rep.run_ms = r->due > 1000 ? 1000 : r->due;
        double t = op_begin(s);
        if (rz_engine_report_result(s->e, r->node, r->job, &rep, s->now, NULL)
            != RZ_OK)
            die("report");
        op_end(s, OP_REPORT, t);
        s->done_jobs++;
    }
    s->n_runs = keep;
}

/* The heartbeats that fall in [now - dt, now): nodes / hb_ms per ms. */
static void heartbeats(sizing *s, uint64_t dt)
{
    s->hb_owed += (double)s->nodes * (double)dt / (double)s->hb_ms;
    size_t n = (size_t)s->hb_owed;
    s->hb_owed -= (double)n;
    for (size_t k = 0; k < n; k++) {
        uint64_t node = s->node[s->next_hb++ % s->nodes];
        double t = op_begin(s);
        if (rz_engine_node_heartbeat(s->e, node, s->now, 0) != RZ_OK)
            die("heartbeat");
        op_end(s, OP_HEARTBEAT, t);
        /* A node polls on its own timer too: an assignment whose event
         * was not seen (the event ring holds RZ_ENGINE_EVENTS_MAX) is
         * taken then. */
        grow((void **)&s->wake, &s->cap_wake, s->n_wake + 1, sizeof *s->wake);
        s->wake[s->n_wake++] = node;
    }
}

static void report_line(const sizing *s, double wall_s)
{
    double busy = 0;
    for (int op = 0; op < OP_N; op++)
        busy += s->ns[op];
    printf("\n%-13s %10s %10s %10s %7s   (CPU time)\n", "call", "count",
           "us/call", "calls/s", "share");
    for (int op = 0; op < OP_N; op++) {
        double us = s->count[op] ? s->ns[op] / 1e3 / (double)s->count[op] : 0;
        printf("%-13s %10lu %10.1f %10.0f %6.1f%%\n", OP_NAMES[op],
               s->count[op], us, us > 0 ? 1e6 / us : 0,
               busy > 0 ? 100.0 * s->ns[op] / busy : 0);
    }
    printf("engine CPU %.1f s (%.1f s wall); group commits %.1f s wall "
           "(%.0f us each: CPU and the disk); simulated %.0f s\n", busy / 1e9,
           wall_s, s->commit_wall_ns / 1e9, s->count[OP_COMMIT]
           ? s->commit_wall_ns / 1e3 / (double)s->count[OP_COMMIT] : 0,
           (double)s->now / 1e3);
}

static void setup(sizing *s)
{
    s->nodes = env_num("RZ_SIZE_NODES", 100000);
    s->jobs = env_num("RZ_SIZE_JOBS", 1000000);
    s->deps = env_num("RZ_SIZE_DEPS", 10000);
    s->steps = env_num("RZ_SIZE_STEPS", 8);
    s->queued = env_num("RZ_SIZE_QUEUED", 100000);
    s->batch = env_num("RZ_SIZE_BATCH", 256);
    s->hb_ms = env_num("RZ_SIZE_HB_S", 30) * 1000;
    if (!s->nodes || !s->batch || !s->hb_ms || !s->steps)
        exit(2);
    const char *dir = getenv("RZ_SIZE_DIR");
    snprintf(s->dir, sizeof s->dir, "%s", dir ? dir : "/tmp/rz-sizing-XXXXXX");
    if (!dir && !mkdtemp(s->dir))
        exit(2);
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = (int)env_num("RZ_SIZE_DURABLE", 0);
    o.node_timeout_ms = 3 * s->hb_ms;
    s->now = 1000;
    if (rz_engine_open(&s->e, s->dir, &o) != RZ_OK)
        die("open");
    s->client = rz_ledger_id_make(0x5153, 1);
    rz_ledger *l = rz_engine_ledger(s->e);
    if (rz_ledger_create_account(l, s->client, RZ_LEDGER_CLIENT) != RZ_OK ||
        rz_ledger_test_credit(l, rz_ledger_id_make(0x5154, 1), s->client,
                              UINT64_MAX / 4) != RZ_OK)
        die("client");
    printf("sim_sizing: %zu nodes, %zu jobs, %zu deployments of %zu steps at "
           "once, %zu queued at once, passes of %zu calls, heartbeat every "
           "%zu s, durable %d, in %s\n", s->nodes, s->jobs, s->deps, s->steps,
           s->queued, s->batch, s->hb_ms / 1000, o.durable, s->dir);
}

/* Queued jobs before any node (memory and store per queued job), then the
 * nodes (memory per node). Returns the jobs submitted. */
static size_t queue_then_register(sizing *s)
{
    long k0 = status_kib("VmRSS");
    long long b0 = dir_bytes(s->dir, "engine/data.mdb");
    size_t queued = s->queued < s->jobs ? s->queued : s->jobs;
    for (size_t i = 0; i < queued; i++)
        if (submit_one(s) != RZ_OK)
            die("submit");
    pass_end(s);
    long k1 = status_kib("VmRSS");
    long long b1 = dir_bytes(s->dir, "engine/data.mdb");
    double n = (double)(queued ? queued : 1);
    printf("queued: %zu jobs, %.0f bytes of memory and %.0f bytes of store "
           "each\n", queued, (double)(k1 - k0) * 1024 / n, (double)(b1 - b0) / n);
    register_nodes(s);
    long k2 = status_kib("VmRSS");
    printf("nodes: %zu registered, %.0f bytes of memory each\n", s->nodes,
           (double)(k2 - k1) * 1024 / (double)s->nodes);
    return queued;
}

/* The rest of the jobs are deployments' steps, `deps` at a time, with
 * the queued ones running beside them. */
static size_t run_all(sizing *s, size_t submitted)
{
    s->flow = chain_flow(s->steps);
    uint64_t dt = 100, last_done = 0, stalled = 0;   /* simulated ms */
    while (s->done_jobs < s->jobs && stalled < 100000) {
        s->now += dt;
        heartbeats(s, dt);
        while (s->live_deps < s->deps && submitted + s->steps <= s->jobs) {
            deploy_one(s);
            submitted += s->steps;
        }
        double t = op_begin(s);
        if (rz_engine_tick(s->e, s->now) != RZ_OK)
            die("tick");
        op_end(s, OP_TICK, t);
        pass_end(s);
        drain_events(s);
        poll_woken(s);
        report_due(s);
        pass_end(s);
        drain_events(s);
        stalled = s->done_jobs == last_done ? stalled + dt : 0;
        last_done = s->done_jobs;
        rz_engine_stats st;
        rz_engine_stats_get(s->e, &st);
        if (submitted + s->steps > s->jobs && !s->live_deps && !s->n_runs &&
            !st.jobs[RZ_JOB_QUEUED] && !st.jobs[RZ_JOB_ASSIGNED])
            break;   /* what fits in the total has run */
    }
    return submitted;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void)
{
    sizing s;
    memset(&s, 0, sizeof s);
    setvbuf(stdout, NULL, _IOLBF, 0);   /* figures as they come */
    double w0 = mono_ns();
    setup(&s);
    size_t submitted = run_all(&s, queue_then_register(&s));
    double wall = (mono_ns() - w0) / 1e9;
    long long eng = dir_bytes(s.dir, "engine/data.mdb");
    long long led = dir_bytes(s.dir, "ledger/data.mdb") +
                    dir_bytes(s.dir, "ledger/journal");
    double n = (double)(submitted ? submitted : 1);
    printf("ran: %lu jobs reported, %lu deployments (%lu finished), peak "
           "%ld KiB RSS\n", s.done_jobs, s.made_deps, s.finished_deps,
           status_kib("VmHWM"));
    printf("store: engine %.1f MiB (%.0f bytes a job), ledger %.1f MiB "
           "(%.0f bytes a job)\n", (double)eng / 1048576.0, (double)eng / n,
           (double)led / 1048576.0, (double)led / n);
    report_line(&s, wall);
    rz_engine_close(s.e);
    if (!getenv("RZ_SIZE_DIR"))   /* a folder of its own: gone */
        (void)nftw(s.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(s.node);
    free(s.runs);
    free(s.wake);
    free(s.flow);
    return 0;
}
