/* The local runner: `rhizos flow run` as a thin driver of the orchestrator
 * engine (docs/engine.md, "Embedded mode"). The flow is deployed to an
 * engine of its own, in a private folder removed afterwards, with one
 * in-process node for this machine; this file is that node: it polls for
 * assignments, runs each as an attempt through its module's adapter
 * (rz_attempt_*: scratch folder, sandbox, limits, outputs cap, credentials
 * scrubbed from what comes back, the log tail kept as the step's log) and
 * reports the result. The engine's
 * run decides everything flow-shaped (readiness, `when`, retries, timeouts,
 * on_failure, cancel), exactly as for a network deployment.
 *
 * The caller's rz_run is the deployment's own run (rz_engine_replica with
 * `share`: one run in memory, not two): the engine drives it, and events
 * come from its changes (the run's second reader of them) after each
 * engine call, so skips and cancellations the run makes on its own are
 * reported too. One thread, one poll() over every running attempt.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>


#include "exec/exec_impl.h"
#include "exec/sandbox.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "rhizos/engine.h"
#include "rhizos/estimate.h"
#include "rhizos/hw.h"
#include "rhizos/store.h"
#include "run/changes.h"
#include "run/usage.h"
#include "store/store_impl.h"

#define MAX_WAIT_MS 200          /* also bounds the reaction to *cancel */
#define RECORD_WAIT_MS 2         /* while the first record is written */
#define REAP_WAIT_MS 2000        /* for the log of an attempt stopped on cancel */
/* The local node is never lost: it polls whenever it has room, but a long
 * step (or a suspended laptop) must not make the engine requeue its jobs. */
#define LOCAL_NODE_TIMEOUT_MS (1ull << 60)

typedef struct slot {
    size_t step;
    size_t task;                 /* the run's task: the step, or one of its
                                    for_each elements */
    uint64_t job;
    uint32_t attempt;            /* the engine's, reported back */
    rz_attempt *att;
    bool status_shown;           /* its own progress line was sent once */
    /* A service's (docs/services.md): its stdout lines as they come. */
    bool service;
    uint32_t seq;                /* events sent (the engine's dedup) */
    rz_service_rate rate;        /* the caps on its events */
    uint64_t dropped_told;       /* stdout bytes dropped, said so far */
    uint64_t files_reserved;     /* of the run's cap on files (files_opts) */
} slot;

/* A step's price for a run time (price_attempt). */
typedef struct price_memo {
    const rz_module *module;     /* NULL: empty */
    uint64_t run_ms, micros;
    bool ok;
} price_memo;
#define PRICE_MEMO 64

/* A record of the run being written on a thread of its own (below). */
typedef struct bg_record {
    pthread_t thread;
    bool pending;                /* record_join has something to wait for */
    bool thread_started;
    const char *dir, *id;
    uint64_t started;
    char *rec;                   /* the thread's to free; NULL: */
    const rz_run *run;           /* written in parts from the run, */
    uint64_t finished;           /* with these, on the runner's thread */
    const char *extra;
    rz_store *store;             /* the thread's until joined */
    atomic_bool done;            /* written: record_join will not wait */
    int rc;
    char msg[512];               /* rz_error_last() is per thread */
} bg_record;

typedef struct runner {
    const rz_flow *flow;
    const rz_runner_opts *opts;
    rz_run *run;                 /* the deployment's replica */
    uint64_t t0;
    unsigned jobs;
    slot *slots;                 /* running attempts, n_slots of them */
    size_t n_slots;
    rz_step_state *seen;         /* last reported state of every step */
    struct pollfd *pfds;
    bool cancelled;
    uint64_t last_progress;      /* when RZ_EVENT_PROGRESS was last sent */
    char *dir;                   /* the engine's private data folder */
    rz__scratch_pool *scratch;   /* unsandboxed steps' folders, reused */
    rz_engine *engine;
    rz_store *store;             /* opts->data_dir's, open for the run, or
                                    opts->store (not ours to close) */
    bg_record bg;                 /* the record being written */
    uint64_t started_wall;       /* for the run's record */
    uint64_t node, dep;
    char *resume_rec;            /* ,"step_cache":..,"inputs":..,"reused":..
                                    for the final record (resume_record) */
    char *resume_map;            /* the engine's step cache, and its */
    char *resume_reused;         /* reused steps, for resume_record */
    bool finished;               /* the deployment finished */
    int recorded;                /* the last record's outcome */
    bool told_recorded;          /* RZ_EVENT_RUN_RECORDED sent */
    char *blob_dir;              /* file outputs' store (files.c) */
    uint64_t files_used;         /* bytes of file outputs the run stored */
    uint64_t files_reserved;     /* held by running steps (files_opts) */
    rz__file_refs refs;          /* the files this run made (file_refs.c) */
    bool refs_read;              /* and those of steps it reused, read */
    price_memo prices[PRICE_MEMO];
    unsigned sandbox_told;       /* rz__sandbox_changes() at the notice */
} runner;

/* ---- events ---- */

static void emit(runner *r, rz_event_kind kind, size_t step,
                 const char *message)
{
    if (!r->opts->on_event)
        return;
    rz_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.run = r->run;
    ev.step = step;
    ev.attempt = step == RZ_NPOS ? 0 : rz_run_step_attempts(r->run, step);
    ev.elapsed_ms = rz__now_ms() - r->t0;
    ev.message = message;
    r->opts->on_event(&ev, r->opts->userdata);
}

/* The event a change from `was` to `now` stands for; 0 for none. */
static rz_event_kind change_event(rz_step_state was, rz_step_state now)
{
    switch (now) {
    case RZ_STEP_RUNNING: return RZ_EVENT_STEP_STARTED;
    case RZ_STEP_SUCCEEDED: return RZ_EVENT_STEP_SUCCEEDED;
    case RZ_STEP_FAILED: return RZ_EVENT_STEP_FAILED;
    case RZ_STEP_SKIPPED: return RZ_EVENT_STEP_SKIPPED;
    case RZ_STEP_CANCELLED: return RZ_EVENT_STEP_CANCELLED;
    case RZ_STEP_BACKOFF: return RZ_EVENT_STEP_RETRYING;
    case RZ_STEP_PENDING:
    case RZ_STEP_READY:
        /* A retry that is due at once may skip BACKOFF. */
        return was == RZ_STEP_RUNNING ? RZ_EVENT_STEP_RETRYING : 0;
    }
    return 0;
}

/* Only steps the run says changed are compared: O(changes) per event, so a
 * step's cost does not grow with the flow. */
static void report_changes(runner *r)
{
    const size_t *changed;
    size_t n = rz__run_take_changes(r->run, RZ__RUN_OWNER, &changed);
    for (size_t k = 0; k < n; k++) {
        size_t i = changed[k];
        if (i >= rz_flow_step_count(r->flow))
            continue;   /* a for_each element: its step tells */
        rz_step_state now = rz_run_step_state(r->run, i);
        rz_step_state was = r->seen[i];
        if (now == was)
            continue;
        r->seen[i] = now;
        rz_event_kind kind = change_event(was, now);
        const char *from = kind == RZ_EVENT_STEP_SUCCEEDED && r->engine
                               ? rz_engine_task_reused_from(r->engine, r->dep, i) : NULL;
        char msg[200];
        if (from)
            snprintf(msg, sizeof msg, "reused from %s", from);
        if (kind)
            emit(r, kind, i, from ? msg : rz_run_step_error(r->run, i));
    }
}

/* rz_engine_replica.on_change: after every step event, as before. */
static void on_change(void *userdata)
{
    report_changes(userdata);
}

/* ---- running a step ---- */

static uint32_t step_timeout(const rz__step *s)
{
    if (s->timeout_s || s->service)   /* a service runs until it ends */
        return s->timeout_s;
    return s->module ? s->module->timeout_s : 0;
}

/* ---- credentials ---- */

static int get_secrets(runner *r, size_t step, char ***env)
{
    if (r->opts->step_env)
        return r->opts->step_env(step, env, r->opts->userdata);
    if (r->opts->vault && rz_vault_flow_references(r->flow) > 0)
        return rz_vault_resolve_step(r->opts->vault, r->flow, step, env);
    *env = NULL;
    return RZ_OK;
}

static void free_secrets(runner *r, char **secrets)
{
    if (!secrets)
        return;
    if (r->opts->step_env) {
        if (r->opts->step_env_free)
            r->opts->step_env_free(secrets, r->opts->userdata);
    } else {
        rz_vault_env_free(secrets);
    }
}

static void drop_slot(runner *r, size_t k)
{
    r->files_reserved -= r->slots[k].files_reserved;
    rz_attempt_free(r->slots[k].att);
    r->slots[k] = r->slots[--r->n_slots];
}

/* The step's "RZ_CRED_<NAME>=value" entries as the attempt's secrets;
 * names point into *names, values into the entries. */
static int to_secrets(char **env, rz_attempt_secret **out, char ***names,
                      size_t *n)
{
    *out = NULL;
    *names = NULL;
    *n = 0;
    size_t count = 0;
    while (env && env[count])
        count++;
    if (count == 0)
        return RZ_OK;
    *out = rz__calloc(count, sizeof **out);
    *names = rz__calloc(count + 1, sizeof **names);
    if (!*out || !*names)
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const char *eq = strchr(env[i], '=');
        if (!eq)
            continue;
        const char *name = env[i];
        if (strncmp(name, "RZ_CRED_", 8) == 0)
            name += 8;
        if (!((*names)[*n] = rz__strndup(name, (size_t)(eq - name))))
            return rz__error(RZ_ENOMEM, "out of memory");
        (*out)[*n] = (rz_attempt_secret){ (*names)[*n], eq + 1 };
        (*n)++;
    }
    return RZ_OK;
}

static void free_names(rz_attempt_secret *list, char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
    free(list);
}

/* The request is the one the engine built for this attempt (upstream
 * outputs wired in by the deployment's run). */
/* Where a sandboxed step's host folder goes. Through the helper the step
 * works in a tmpfs of its own at that path and the folder only carries
 * in/request.json and out/outputs.json: in the engine's folder (on
 * /dev/shm when it has room) it costs no ext4 inodes, no journal and no
 * discard at its removal (3-4 ms a step here), and goes with the run.
 * Under bwrap, or unsandboxed, $TMPDIR or /tmp as before. */
static const char *sandbox_scratch_parent(const runner *r)
{
    uint32_t first = 0, count = 0;
    if (!r->opts->sandbox || !r->dir)
        return NULL;
    rz__sbx_uid_range(&first, &count);
    return count ? r->dir : NULL;
}

/* What of the run's cap on files no step has stored or holds. */
static uint64_t files_left(const runner *r)
{
    const rz_runner_opts *o = r->opts;
    uint64_t mb = o->version >= 10 && o->max_run_files_mb ? o->max_run_files_mb : 4096;
    uint64_t cap = mb << 20;
    uint64_t held = r->files_used + r->files_reserved;
    return held < cap ? cap - held : 0;
}

/* File outputs go to data_dir/blobs, where the run's record can name
 * them. A step with file outputs holds its share of the run's cap while it
 * runs (its scratch_mb, else the cap on a file, at most what is left), so
 * steps running together never store more than the cap; what it did not
 * store is given back when it ends (drop_slot). */
static int files_opts(runner *r, const rz_module *m, rz_attempt_opts *ao,
                      uint64_t *reserved)
{
    const rz_runner_opts *o = r->opts;
    uint64_t file_mb = o->version >= 10 && o->max_file_mb ? o->max_file_mb : 1024;
    if (!r->blob_dir)
        r->blob_dir = rz__asprintf("%s/blobs", o->data_dir ? o->data_dir : r->dir);
    if (!r->blob_dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    ao->blob_dir = r->blob_dir;
    ao->max_file = file_mb << 20;
    size_t ports = 0;
    for (size_t k = 0; m && k < m->n_outputs; k++)
        ports += m->outputs[k].type && strcmp(m->outputs[k].type, "file") == 0;
    uint64_t want = m && m->scratch_mb ? (uint64_t)m->scratch_mb << 20 : ao->max_file;
    if (want > ports * ao->max_file)
        want = ports * ao->max_file;
    uint64_t left = files_left(r);
    *reserved = want < left ? want : left;
    /* 0 would mean the default: one byte is the least there is. */
    ao->max_files = *reserved ? *reserved : 1;
    return RZ_OK;
}

static int start_step(runner *r, size_t step, const rz__step *s,
                      const rz_engine_assignment *asg, char **secret_env,
                      rz_attempt **out, uint64_t *reserved)
{
    rz_attempt_secret *secrets = NULL;
    char **names = NULL;
    size_t n = 0;
    int rc = to_secrets(secret_env, &secrets, &names, &n);
    if (rc == RZ_OK) {
        const rz_module *m = s->module;
        rz_attempt_opts ao = RZ_ATTEMPT_OPTS_INIT;
        ao.module = m;
        ao.request_json = asg->request_json;
        ao.run_id = rz_run_id(r->run);
        ao.step_id = rz_flow_step_id(r->flow, step);
        size_t task = step;
        (void)!rz_engine_job_task(r->engine, asg->job, &task);   /* else step */
        ao.attempt = rz_run_step_attempts(r->run, task != RZ_NPOS ? task : step);
        ao.env = r->opts->env;
        ao.secrets = secrets;
        ao.n_secrets = n;
        ao.timeout_s = step_timeout(s);
        ao.memory_mb = m->memory_mb ? m->memory_mb
                                    : r->opts->default_memory_mb;
        ao.sandbox = r->opts->sandbox;
        ao.scratch_parent = sandbox_scratch_parent(r);
        ao.max_scratch_mb = r->opts->max_scratch_mb;
        ao.container_host = r->opts->container_host;
        ao.llm_servers = r->opts->llm_servers;
        ao.service = s->service && task == step;
        ao.ready_check = ao.service ? s->ready_check : NULL;
        ao.ready_timeout_s = s->ready_timeout_s;
        rc = files_opts(r, m, &ao, reserved);
        if (rc == RZ_OK)
            rc = rz__attempt_start_pooled(out, &ao, r->scratch);
        if (rc == RZ_OK)
            r->files_reserved += *reserved;
    }
    free_names(secrets, names);
    return rc;
}

/* The log tail becomes the step's log in the run record (scrubbed). */
static void keep_log(runner *r, const slot *sl)
{
    rz_attempt_result res;
    memset(&res, 0, sizeof res);
    (void)!rz_attempt_result_get(sl->att, &res);   /* finished: cannot fail */
    /* Always replace: a quiet retry must not show the last attempt's log. */
    /* A log that cannot be kept (out of memory) leaves the step without one. */
    (void)!rz_run_set_step_log(r->run, sl->task, res.log,
                               res.log ? res.log_len : 0);
}

/* ---- talking to the engine ---- */

/* The local node stops a job (its step timed out, or the run was
 * cancelled): stop the attempt. On cancel its log is kept, as the module
 * got to write it; a timed-out attempt's is not. */
static void stop_job(runner *r, uint64_t job)
{
    size_t k = 0;
    while (k < r->n_slots && r->slots[k].job != job)
        k++;
    if (k == r->n_slots)
        return;
    if (r->cancelled) {
        rz_attempt *a = r->slots[k].att;
        rz_attempt_stop(a);
        for (int waited = 0;
             waited < REAP_WAIT_MS && rz_attempt_poll(a, 50) == 0;
             waited += 50)
            ;
        keep_log(r, &r->slots[k]);
    }
    drop_slot(r, k);
}

/* After every engine call: act on its decisions, report what changed.
 * The run is the engine's own (`share`): only the engine moves it. A
 * readiness pass here would promote a retry whose backoff ended after the
 * engine's last tick (a poll's `now` is later): the step would be READY
 * with no job and off the run's timers, so no tick would ever start it. */
static int settle(runner *r)
{
    rz_engine_event ev;
    while (rz_engine_next_event(r->engine, &ev)) {
        if (ev.type == RZ_EV_JOB_STOP && ev.node == r->node)
            stop_job(r, ev.job);
        else if (ev.type == RZ_EV_DEPLOYMENT_FINISHED && ev.deployment == r->dep)
            r->finished = true;
    }
    report_changes(r);
    return rz_engine_local_check(r->engine);
}

static int report(runner *r, uint64_t job, uint32_t attempt,
                  const char *outputs, const char *error, uint64_t run_ms)
{
    uint64_t now = rz__now_ms();
    rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
    rep.attempt = attempt;
    rep.outputs_json = outputs;
    rep.error = error;
    rep.run_ms = run_ms;
    int rc = rz_engine_report_result(r->engine, r->node, job, &rep, now, NULL);
    /* RZ_ESTATE: the engine settled the attempt first (its timeout). */
    if (rc != RZ_OK && rc != RZ_ESTATE)
        return rc;
    return settle(r);
}

/* ---- starting assignments ---- */

/* Why the step cannot run here; NULL if it can (then *secrets is set).
 * The adapter and the command are the attempt's to judge. */
static char *cannot_run(runner *r, size_t step, const rz__step *s,
                        char ***secrets)
{
    *secrets = NULL;
    if (!s->module)
        return rz__asprintf("module '%s' is not resolved (validate the flow "
                            "against a registry first)", s->module_id);
    if (get_secrets(r, step, secrets) != RZ_OK) {
        *secrets = NULL;
        return rz__asprintf("credentials: %s", rz_error_last()->message);
    }
    return NULL;
}

/* A request whose files are not all this run's (a forged `$file`
 * reference): why; NULL when they are. The run's outputs are read once
 * (the step cache's reused steps), then each step's as it ends. */
static char *forged_files(runner *r, const char *req)
{
    if (!req || !strstr(req, "\"$file\""))
        return NULL;
    for (size_t i = 0; !r->refs_read && i < r->flow->n_steps; i++) {
        char *out = NULL;
        if (r->flow->steps[i].module && rz_run_step_outputs(r->run, i, &out) == RZ_OK &&
            rz__file_refs_learn(&r->refs, r->flow->steps[i].module, out) != RZ_OK) {
            rz_free(out);
            return rz__strdup(rz_error_last()->message);
        }
        rz_free(out);
    }
    r->refs_read = true;
    return rz__file_refs_check(&r->refs, req) == RZ_OK
               ? NULL : rz__strdup(rz_error_last()->message);
}

static void sandbox_notice(runner *r);

static int start_assignment(runner *r, const rz_engine_assignment *a)
{
    size_t step = rz_flow_step_find(r->flow, a->step);
    if (step == RZ_NPOS || a->deployment != r->dep)
        return rz__error(RZ_EINTERNAL, "job %llu: step '%s' is not in the "
                         "flow", (unsigned long long)a->job, a->step);
    const rz__step *s = &r->flow->steps[step];
    char **secrets = NULL;
    rz_attempt *att = NULL;
    uint64_t reserved = 0;
    char *why = cannot_run(r, step, s, &secrets);
    if (!why)
        why = forged_files(r, a->request_json);
    if (!why && start_step(r, step, s, a, secrets, &att, &reserved) != RZ_OK)
        why = rz__asprintf("cannot start: %s", rz_error_last()->message);
    if (r->opts->sandbox && rz__sandbox_changes() != r->sandbox_told)
        sandbox_notice(r);
    /* The attempt keeps its own copy of each value, to scrub. */
    free_secrets(r, secrets);
    if (att) {
        size_t task = RZ_NPOS;
        (void)!rz_engine_job_task(r->engine, a->job, &task);
        r->slots[r->n_slots++] = (slot){ step, task != RZ_NPOS ? task : step,
                                         a->job, a->attempt, att, false,
                                         s->service && (task == RZ_NPOS || task == step),
                                         0, {0, 0, 0}, 0, reserved };
        return RZ_OK;
    }
    int rc = report(r, a->job, a->attempt, NULL,
                    why ? why : "out of memory", 0);
    free(why);
    return rc;
}

/* Nothing of the run's cap on files is left to hold, but a step that will
 * end holds some: the next step waits for it to give its share back. (A
 * service may run for days: one waits for no service.) */
static bool files_wait(const runner *r)
{
    if (files_left(r))
        return false;
    for (size_t k = 0; k < r->n_slots; k++)
        if (r->slots[k].files_reserved && !r->slots[k].service)
            return true;
    return false;
}

/* Take assignments while there is room. */
static int take_work(runner *r)
{
    while (!r->cancelled && !r->finished && r->n_slots < r->jobs && !files_wait(r)) {
        rz_engine_assignment a;
        uint64_t now = rz__now_ms();
        int rc = rz_engine_poll(r->engine, r->node, now, &a);
        if (rc == RZ_ENOENT)
            return settle(r);
        if (rc == RZ_OK)
            rc = start_assignment(r, &a);
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

/* ---- finishing assignments ---- */

/* What the attempt's machine time would cost to rent (opts->prices), kept
 * in the run: an embedded run is charged nothing, its record says what it
 * used. A task that cannot be kept (out of memory) only goes unpriced. */
static void price_attempt(runner *r, const slot *sl, uint64_t run_ms)
{
    if (!r->opts->prices)
        return;
    /* The price is a function of the module and run_ms alone, and
     * rz_prices_rent_step makes and parses the module's requirements each
     * time (5% of the runner's CPU at a trivial step): short steps repeat
     * the same few run_ms, so the last answers are kept. */
    const rz_module *m = r->flow->steps[sl->step].module;
    price_memo *pm = &r->prices[((uintptr_t)m / 64u ^ run_ms) % PRICE_MEMO];
    if (!m || pm->module != m || pm->run_ms != run_ms) {
        uint64_t micros = 0;
        int rc = rz_prices_rent_step(r->opts->prices, r->flow, sl->step, run_ms,
                                     &micros);
        *pm = (price_memo){ m, run_ms, micros, rc == RZ_OK };
    }
    (void)!rz__run_add_usage(r->run, sl->task, run_ms, pm->ok, pm->micros);
}

static int finish_slot(runner *r, size_t k)
{
    slot *sl = &r->slots[k];
    rz_attempt_result res;
    int rc = rz_attempt_result_get(sl->att, &res);
    if (rc != RZ_OK)
        return rc;
    keep_log(r, sl);
    price_attempt(r, sl, res.run_ms);
    char *outputs = res.ok ? rz__strdup(res.outputs) : NULL;
    char *why = res.ok ? NULL : rz__strdup(res.reason);
    if (res.ok)
        r->files_used += rz__files_size(res.outputs);
    if (res.ok && rz__file_refs_learn(&r->refs, r->flow->steps[sl->step].module,
                                      res.outputs) != RZ_OK)
        return RZ_ENOMEM;
    uint64_t job = sl->job;
    uint32_t attempt = sl->attempt;
    drop_slot(r, k);   /* before reporting: the report may stop others */
    rc = report(r, job, attempt, outputs,
                outputs ? NULL : why ? why : "out of memory", res.run_ms);
    free(why);
    free(outputs);
    return rc;
}

static int tick(runner *r)
{
    uint64_t now = rz__now_ms();
    if (rz_engine_next_wakeup(r->engine) > now)
        return RZ_OK;
    int rc = rz_engine_tick(r->engine, now);
    return rc == RZ_OK ? settle(r) : rc;
}

static int check_cancel(runner *r)
{
    if (r->cancelled || !r->opts->cancel || !*r->opts->cancel)
        return RZ_OK;
    r->cancelled = true;
    uint64_t now = rz__now_ms();
    int rc = rz_engine_deployment_cancel(r->engine, r->dep, now);
    if (rc == RZ_ESTATE)   /* it finished first */
        rc = RZ_OK;
    return rc == RZ_OK ? settle(r) : rc;
}

/* ---- the run's record ---- */

/* The first record puts the run on record from the start, so `flow runs`
 * shows it while it goes and a killed run still leaves a trace. It is
 * committed on a thread of its own while the engine starts and the first
 * steps run; the final record likewise while the runner frees the engine
 * and the steps' folders, and it is joined before rz_runner_run returns.
 * Their durable commits (the store's LMDB files made and fdatasync'd on a
 * fresh store, and two flushes each time) waited for everything the other
 * processes had written to the same file system: a fifth of a one-step
 * run's wall time.
 *
 * What a crash leaves is unchanged: each record is the same single LMDB
 * transaction as before, durable when its commit returns (data
 * fdatasync'd, then the meta page written O_DSYNC), so the store is never
 * half-written. A run killed in the few milliseconds before the first
 * commit has no record (as a run killed before this point always had
 * none); one killed after it has its first record; a finished run's record
 * is durable before rz_runner_run returns. One commit at a time: the first
 * is joined before the final one starts, and nothing else touches the
 * store meanwhile. The record is built on the runner's thread, from the
 * run as it is then; the thread only writes it. */
static void *write_record(void *arg)
{
    bg_record *f = arg;
    int rc = f->store ? RZ_OK : rz_store_open(&f->store, f->dir);
    if (rc == RZ_OK && !f->rec)
        rc = rz__store_put_run(f->store, f->run, f->started, f->finished,
                               f->extra);
    else if (rc == RZ_OK)
        rc = rz__store_put_record(f->store, f->id, f->started, f->rec);
    else
        free(f->rec);
    f->rec = NULL;
    if (rc != RZ_OK)
        snprintf(f->msg, sizeof f->msg, "%s", rz_error_last()->message);
    f->rc = rc;
    atomic_store(&f->done, true);
    return NULL;
}

static void record_failed(runner *r, int rc, const char *why)
{
    char *msg = rz__asprintf("run not recorded in %s: %s", r->opts->data_dir
                             ? r->opts->data_dir : "the run store", why);
    emit(r, RZ_EVENT_NOTICE, RZ_NPOS, msg ? msg : "run not recorded");
    rz__error(rc, "%s", msg ? msg : "run not recorded");
    free(msg);
}

/* Waits for the record being written; a failure is told as a notice and
 * returned, with rz_error_last() set. */
static int record_join(runner *r)
{
    bg_record *f = &r->bg;
    if (!f->pending)
        return RZ_OK;
    if (f->thread_started)
        pthread_join(f->thread, NULL);
    f->pending = f->thread_started = false;
    r->store = f->store;
    f->store = NULL;
    if (f->rc != RZ_OK)
        record_failed(r, f->rc, f->msg);
    return f->rc;
}

/* RZ_EVENT_RUN_RECORDED once the first record's write is over (at once
 * if `wait`, else only if it is): from then on a reader of the store finds
 * the run, so a caller may tell its id. */
static void tell_recorded(runner *r, bool wait)
{
    if (r->told_recorded || !r->bg.pending || (!wait && !atomic_load(&r->bg.done)))
        return;
    int rc = record_join(r);
    r->told_recorded = true;
    emit(r, RZ_EVENT_RUN_RECORDED, RZ_NPOS, rc == RZ_OK ? NULL : rz_error_last()->message);
}

/* `v` (consumed) as cJSON prints it inside a document. */
static bool buf_json(rz__buf *b, cJSON *v)
{
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    if (t)
        rz__buf_puts(b, t);
    free(t);
    return t != NULL;
}

/* What `rhizos flow resume RUN` needs of a finished run, for its record:
 * its step cache and which steps it reused itself, taken from the engine
 * before it stops (resume_record writes them after: a big run's engine is
 * gone by then). */
static void resume_take(runner *r)
{
    /* The engine names this run's own results as the record does. */
    bool recorded = r->opts->data_dir || r->opts->store;
    char *own = recorded ? rz__asprintf("run %s step ", rz_run_id(r->run)) : NULL;
    int rc = !recorded ? RZ_EINVAL
           : own ? rz_engine_reuse_map_named(r->engine, r->dep, own, &r->resume_map)
                 : RZ_ENOMEM;
    free(own);
    if (rc != RZ_OK)
        return;
    cJSON *reused = cJSON_CreateObject();
    for (size_t i = 0; reused && i < rz_flow_step_count(r->flow); i++) {
        const char *from = rz_engine_task_reused_from(r->engine, r->dep, i);
        if (from)
            cJSON_AddStringToObject(reused, rz_flow_step_id(r->flow, i), from);
    }
    if (reused && reused->child)
        r->resume_reused = cJSON_PrintUnformatted(reused);
    cJSON_Delete(reused);
}

/* The record's last members: the step cache, the inputs and the steps
 * reused. */
static void resume_record(runner *r)
{
    if (!r->resume_map)
        return;
    rz__buf b = {0};
    bool ok = true;
    cJSON *in = r->opts->inputs_json ? cJSON_Parse(r->opts->inputs_json) : NULL;
    if (in) {
        rz__buf_puts(&b, ",\"inputs\":");
        ok = buf_json(&b, in);
    }
    if (ok && r->resume_reused) {
        rz__buf_puts(&b, ",\"reused\":");
        rz__buf_puts(&b, r->resume_reused);
    }
    char *tail = rz__buf_take(&b);
    /* The step cache's text grows in place (~15 MB at 100,000 steps): not
     * copied into a second buffer. */
    static const char pre[] = ",\"step_cache\":";
    size_t len = strlen(r->resume_map), n = tail ? strlen(tail) : 0;
    char *t = ok && tail ? realloc(r->resume_map, sizeof pre - 1 + len + n + 1) : NULL;
    if (t) {
        memmove(t + sizeof pre - 1, t, len);
        memcpy(t, pre, sizeof pre - 1);
        memcpy(t + sizeof pre - 1 + len, tail, n + 1);
        r->resume_rec = t;
    } else {
        rz_free(r->resume_map);
    }
    r->resume_map = NULL;
    free(tail);
}

/* Starts writing the run's record as it is now (finished: 0 while it
 * goes); record_join waits for it. A big run's final record is written in
 * parts, here (the run no longer changes), so that it is never whole in
 * memory: at 100,000 steps it is ~100 MB. */
static void record(runner *r, uint64_t finished, bool in_parts)
{
    bg_record *f = &r->bg;
    tell_recorded(r, true);
    (void)record_join(r);   /* told; the next record says it again */
    if (!r->opts->data_dir && !r->opts->store)
        return;
    f->dir = r->opts->data_dir;
    f->id = rz_run_id(r->run);
    f->started = r->started_wall;
    const char *extra = finished ? r->resume_rec : NULL;
    f->rc = RZ_OK;
    f->msg[0] = '\0';
    atomic_store(&f->done, false);
    f->pending = true;
    f->store = r->store;   /* the thread's until joined */
    r->store = NULL;
    if (in_parts) {
        f->rec = NULL;
        f->run = r->run;
        f->finished = finished;
        f->extra = extra;
        (void)write_record(f);
        return;
    }
    f->rec = rz__store_record(r->run, r->started_wall, finished, extra);
    if (!f->rec) {
        f->rc = RZ_ENOMEM;
        snprintf(f->msg, sizeof f->msg, "out of memory");
        atomic_store(&f->done, true);
        return;
    }
    /* Signals stay with the runner's thread (the caller's handlers). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    f->thread_started = pthread_create(&f->thread, NULL, write_record, f) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!f->thread_started)
        (void)write_record(f);   /* no thread to be had: here, as before */
}

/* ---- the loop ---- */

static int wait_ms(const runner *r)
{
    uint64_t next = rz_engine_next_wakeup(r->engine), now = rz__now_ms();
    /* The first record is told as soon as it is written (tell_recorded). */
    uint64_t most = r->bg.pending && !r->told_recorded ? RECORD_WAIT_MS : MAX_WAIT_MS;
    if (next <= now)
        return 0;
    return next - now < most ? (int)(next - now) : (int)most;
}

/* A step's log lines as they come (adapters that stream them). */
static void live_log(runner *r, size_t k, bool done)
{
    char *lines = rz__attempt_log_lines(r->slots[k].att, done);
    if (lines)
        emit(r, RZ_EVENT_STEP_LOG, r->slots[k].step, lines);
    free(lines);
}

/* ---- a service's stdout ---- */

static size_t slot_of(const runner *r, uint64_t job)
{
    for (size_t k = 0; k < r->n_slots; k++)
        if (r->slots[k].job == job)
            return k;
    return RZ_NPOS;
}

static void service_note(runner *r, size_t step, const char *fmt, ...)
    RZ_PRINTF(3, 4);
static void service_note(runner *r, size_t step, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(r, RZ_EVENT_STEP_LOG, step, msg);
}

/* The engine takes an event of slot k's service, or refuses it (said in
 * the step's log: the service goes on). */
static int service_event(runner *r, size_t k, const char *name, const char *key,
                         const char *data, size_t len)
{
    slot *sl = &r->slots[k];
    uint64_t now = rz__now_ms();
    const char *no = rz_service_event_admit(&sl->rate, len, now);
    if (no) {
        if (*no)
            service_note(r, sl->step, "event '%.64s' refused: %s", name, no);
        return RZ_OK;
    }
    size_t step = sl->step;
    int rc = rz_engine_report_event(r->engine, r->node, sl->job, sl->attempt,
                                    ++sl->seq, key, name, data, now, NULL);
    if (rc == RZ_EINVALID || rc == RZ_ETOOBIG || rc == RZ_ESTATE) {
        service_note(r, step, "event '%.64s' refused: %s", name,
                     rz_error_last()->message);
        rc = RZ_OK;
    }
    return rc == RZ_OK ? settle(r) : rc;
}

static int service_ready(runner *r, size_t k)
{
    uint64_t now = rz__now_ms();
    int rc = rz_engine_report_ready(r->engine, r->node, r->slots[k].job,
                                    r->slots[k].attempt, now);
    if (rc == RZ_ESTATE)
        rc = RZ_OK;
    return rc == RZ_OK ? settle(r) : rc;
}

/* Slot k's service wrote these lines (rz_service_line sorts them). The
 * slot may move or go with any engine call: it is found again by its job
 * each time. */
static int service_lines(runner *r, size_t k, char *text)
{
    uint64_t job = r->slots[k].job;
    size_t step = r->slots[k].step;
    rz__buf logs = {0};
    int rc = RZ_OK;
    for (char *line = text, *next; line && rc == RZ_OK; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        char *name = NULL, *key = NULL, *data = NULL;
        rz_service_line_kind kind = rz_service_line(line, len, &name, &key, &data);
        k = kind != RZ_SERVICE_LINE_LOG ? slot_of(r, job) : k;
        if (kind == RZ_SERVICE_LINE_LOG)
            rz__buf_printf(&logs, "%s%s", logs.len ? "\n" : "", line);
        else if (k == RZ_NPOS)
            next = NULL;   /* stopped meanwhile */
        else if (kind == RZ_SERVICE_LINE_EVENT)
            rc = service_event(r, k, name, key, data, len);
        else
            rc = service_ready(r, k);
        rz_free(name);
        rz_free(key);
        rz_free(data);
    }
    if (logs.len && !logs.failed)
        emit(r, RZ_EVENT_STEP_LOG, step, logs.data);
    rz__buf_free(&logs);
    return rc;
}

static int service_out(runner *r, size_t k)
{
    if (!r->slots[k].service)
        return RZ_OK;
    uint64_t dropped = 0;
    char *text = rz__attempt_out_lines(r->slots[k].att, &dropped);
    if (dropped > r->slots[k].dropped_told) {
        service_note(r, r->slots[k].step, "stdout: %llu bytes of lines over the "
                     "cap dropped", (unsigned long long)(dropped -
                                                         r->slots[k].dropped_told));
        r->slots[k].dropped_told = dropped;
    }
    int rc = text ? service_lines(r, k, text) : RZ_OK;
    free(text);
    return rc;
}

/* Blocks until a slot has something to say, a readiness check or the
 * engine is due, or MAX_WAIT_MS. */
static int wait_slots(runner *r)
{
    int wait = wait_ms(r);
    for (size_t k = 0; k < r->n_slots; k++) {
        r->pfds[k].fd = rz_attempt_fd(r->slots[k].att);
        r->pfds[k].events = POLLIN;
        r->pfds[k].revents = 0;
        if (r->pfds[k].fd < 0)
            wait = 0;   /* finished already, or nothing to wait on */
        int wake = rz__attempt_wake_ms(r->slots[k].att);
        if (wake >= 0 && wake < wait)
            wait = wake;   /* its readiness check, tried without blocking */
    }
    if (poll(r->pfds, r->n_slots, wait) < 0 && errno != EINTR)
        return rz__error(RZ_EIO, "poll: %s", strerror(errno));
    return RZ_OK;
}

/* What the slots said: logs, a service's lines, attempts that ended. */
static int collect(runner *r)
{
    /* A report may stop other slots (and reorder them): rescan after one. */
    for (size_t k = 0; k < r->n_slots;) {
        int done = rz_attempt_poll(r->slots[k].att, 0);
        if (done < 0)
            return done;
        live_log(r, k, done == 1);
        uint64_t job = r->slots[k].job;
        int rc = service_out(r, k);
        if (rc != RZ_OK)
            return rc;
        if (slot_of(r, job) != k) {   /* the slots moved: rescan */
            k = 0;
            continue;
        }
        if (!done) {
            k++;
            continue;
        }
        rc = finish_slot(r, k);
        /* The freed slot is filled before the next ended one is reported:
         * with two slots ending together the first waited for the second's
         * report too. */
        if (rc == RZ_OK)
            rc = check_cancel(r);
        if (rc == RZ_OK)
            rc = take_work(r);
        if (rc != RZ_OK)
            return rc;
        k = 0;
    }
    return RZ_OK;
}

/* Nothing runs, nothing is due and the engine had nothing to hand over
 * (an approval step with a timeout is due then: it takes its default). */
static bool stalled(const runner *r, const char **gate)
{
    return r->n_slots == 0 && !r->finished &&
           rz_run_next_wakeup(r->run) == UINT64_MAX &&
           rz_engine_approval_wait(r->engine, r->dep, gate) == UINT64_MAX;
}

#define PROGRESS_EVERY_MS 250

/* Every PROGRESS_EVERY_MS; and at once for an attempt's first line of its
 * own (an image pull), which may not last until the next tick. */
static void progress_tick(runner *r)
{
    uint64_t now = rz__now_ms();
    if (r->n_slots == 0)
        return;
    bool due = now - r->last_progress >= PROGRESS_EVERY_MS;
    char line[160];
    for (size_t k = 0; k < r->n_slots; k++) {
        if (!due && r->slots[k].status_shown)
            continue;
        rz__attempt_status(r->slots[k].att, line, sizeof line);
        if (line[0]) {
            r->slots[k].status_shown = true;
            r->last_progress = now;
            emit(r, RZ_EVENT_PROGRESS, r->slots[k].step, line);
            return;
        }
    }
    if (due) {
        r->last_progress = now;
        emit(r, RZ_EVENT_PROGRESS, RZ_NPOS, NULL);
    }
}

/* One turn's engine calls: what the slots said, a cancel, the engine's
 * timers, new work. They share one group commit (rz_engine_group_*), so
 * the path from one step's exit to the next one's spawn holds one commit
 * and one ledger batch, not two of each. The engine is not durable here
 * (its folder goes with the run, a crash leaves nothing of it to resume),
 * so a step may start before the commit that hands it over; a failed
 * commit fails the run as before. */
static int turn(runner *r, bool waited)
{
    int rc = rz_engine_group_begin(r->engine);
    if (rc != RZ_OK)
        return rc;
    if (waited)
        rc = collect(r);
    bool over = r->finished && r->n_slots == 0;
    if (rc == RZ_OK && !over)
        rc = check_cancel(r);
    if (rc == RZ_OK && !over)
        rc = tick(r);
    if (rc == RZ_OK && !over)
        rc = take_work(r);
    int crc = rz_engine_group_commit(r->engine);
    return rc != RZ_OK ? rc : crc;
}

static int drive(runner *r)
{
    bool waited = false;
    while (!r->finished || r->n_slots > 0) {
        int rc = turn(r, waited);
        if (rc != RZ_OK)
            return rc;
        if (waited)
            progress_tick(r);
        if (r->finished && r->n_slots == 0)
            break;
        const char *gate = NULL;
        if (stalled(r, &gate) && gate)
            return rz__error(RZ_ESTATE, "run %s waits for a decision on approval "
                             "step '%s', which nobody can give on this machine "
                             "(give it approval.timeout_s and a default, or deploy "
                             "it to an orchestrator)", rz_run_id(r->run), gate);
        if (stalled(r, &gate))
            return rz__error(RZ_EINTERNAL, "run %s cannot make progress",
                             rz_run_id(r->run));
        rc = wait_slots(r);
        if (rc != RZ_OK)
            return rc;
        tell_recorded(r, false);
        waited = true;
    }
    if (!rz_run_done(r->run))
        return rz__error(RZ_EINTERNAL, "run %s: the deployment finished "
                         "before its run", rz_run_id(r->run));
    return RZ_OK;
}

/* ---- the engine ---- */

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_dir(char *dir)
{
    if (dir)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* A run killed with SIGKILL cannot remove its folder. Folders are named
 * after the process that made them, rhizos-run-<pid namespace>-<pid>-XXXXXX,
 * so the next run removes those of processes that are gone: only ours
 * (same owner, a real folder) and only of our pid namespace, since a pid
 * means nothing in another (containers sharing /dev/shm or /tmp: a live
 * run's folder there would look like a dead one's). Folders named without
 * a namespace (rhizos-run-<pid>-XXXXXX, older versions) are left alone. */
static void remove_stale_dirs(const char *tmp)
{
    DIR *d = opendir(tmp);
    unsigned long long ns = rz__exec_pidns();
    if (!d)
        return;
    const struct dirent *e;
    while (ns && (e = readdir(d))) {
        unsigned long long their_ns = 0;
        long pid = 0;
        int end = 0;
        if (strncmp(e->d_name, "rhizos-run-", 11) != 0 ||
            sscanf(e->d_name, "rhizos-run-%llx-%ld-%*6[A-Za-z0-9]%n", &their_ns,
                   &pid, &end) != 2 || !end || e->d_name[end] ||
            their_ns != ns || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;                   /* alive, or not ours to ask */
        char *path = rz__asprintf("%s/%s", tmp, e->d_name);
        struct stat st;
        if (path && lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
            st.st_uid == geteuid())
            remove_dir(path);
        else
            free(path);
    }
    closedir(d);
}

#define SHM_DIR "/dev/shm"
#define SHM_BYTES_PER_STEP (16u << 10)   /* ten times what a step takes */

/* Where the engine's folder goes: $TMPDIR when set; else a memory file
 * system when there is one with room to spare for this flow (creating
 * and removing LMDB files on ext4 is a fifth of a short run), else /tmp.
 * Nothing in it outlives the run. */
static const char *engine_parent(size_t steps)
{
    const char *env = getenv("TMPDIR");
    if (env && *env)
        return env;
    struct statfs fs;
    uint64_t need = (uint64_t)steps * SHM_BYTES_PER_STEP + (1u << 20);
    if (statfs(SHM_DIR, &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
        access(SHM_DIR, W_OK | X_OK) == 0 &&
        (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize / 4 > need)
        return SHM_DIR;
    return "/tmp";
}

/* Sweep tmp's folder of engine folders; and tmp itself the first time that
 * folder is made (and whenever it cannot be used), for folders made in tmp
 * directly by runs before it existed. */
static void sweep(const char *tmp, char **parent)
{
    bool made = false;
    char *p = rz__exec_user_dir(tmp, &made);   /* NULL: tmp itself */
    if (p)
        remove_stale_dirs(p);
    if (!p || made)
        remove_stale_dirs(tmp);
    if (parent)
        *parent = p;
    else
        free(p);
}

static int engine_dir(char **out, size_t steps)
{
    const char *tmp = engine_parent(steps);
    char *parent = NULL;
    sweep(tmp, &parent);
    if (strcmp(tmp, SHM_DIR) == 0)
        sweep("/tmp", NULL);   /* of runs that chose it */
    char *dir = rz__asprintf("%s/rhizos-run-%llx-%ld-XXXXXX", parent ? parent : tmp,
                             rz__exec_pidns(), (long)getpid());
    free(parent);
    if (!dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (!mkdtemp(dir)) {
        int rc = rz__error(RZ_EIO, "engine folder %s: %s", dir,
                           strerror(errno));
        free(dir);
        return rc;
    }
    *out = dir;
    return RZ_OK;
}

static bool has_docker_step(const rz_flow *f)
{
    for (size_t i = 0; i < f->n_steps; i++) {
        const rz_module *m = f->steps[i].module;
        if (m && m->adapter && strcmp(m->adapter, "docker") == 0 &&
            !rz__local_llm_on(m, f->steps[i].config))
            return true;
    }
    return false;
}

/* This machine as the local node sees it. No GPU probing, no hwloc, and
 * the container engine is asked only when a step runs in a container: those
 * probes cost more than the rest of a small run. */
static int local_caps(const runner *r, char **out)
{
    rz_hw_opts ho = RZ_HW_OPTS_INIT;
    ho.skip_gpus = 1;
    ho.skip_runtimes = 1;
    ho.light_topology = 1;   /* hwloc's load alone costs a short run's time */
    rz_caps *caps = NULL;
    int rc = rz_hw_detect(&caps, &ho);
    rz_container_info ci;
    if (rc == RZ_OK && has_docker_step(r->flow) &&
        rz__container_answers(&ci, r->opts->container_host) == RZ_OK &&
        ci.answers) {
        static const char *const both[] = {"docker", "process"};
        static const char *const engine[] = {"docker"};
        rc = rz_caps_set_adapters(caps, both, 2);
        if (rc == RZ_OK)
            rc = rz_caps_set_runtimes(caps, engine, 1);
    }
    if (rc == RZ_OK)
        rc = rz_caps_to_json(caps, 0, out);
    rz_caps_free(caps);
    return rc;
}

/* What the sandbox's probe found, told before the first step starts.
 * The probe (rz_sandbox_available) is waited for here, after the run's
 * first record and the engine's start: at one step, `flow run` started it
 * on a thread of its own, and it ends about now. Told again if the first
 * steps' start changed it (a failed check: see sandbox.c). */
static void sandbox_notice(runner *r)
{
    r->sandbox_told = rz__sandbox_changes();
    if (r->opts->sandbox && !rz_sandbox_available())
        emit(r, RZ_EVENT_NOTICE, RZ_NPOS, rz__sandbox_installed()
             ? "bubblewrap cannot create a sandbox here (no user "
               "namespaces?); steps run without a sandbox"
             : "bubblewrap not found; steps run without a sandbox");
    else if (r->opts->sandbox && rz_sandbox_status())
        emit(r, RZ_EVENT_NOTICE, RZ_NPOS, rz_sandbox_status());
}

/* Nothing here outlives the run, so nothing is fsync'd; no registry (the
 * flow's modules are resolved) and nothing costs anything. */
static int engine_start(runner *r)
{
    int rc = engine_dir(&r->dir, rz_flow_step_count(r->flow));
    if (rc != RZ_OK)
        return rc;
    rz_engine_opts eo = RZ_ENGINE_OPTS_INIT;
    eo.durable = 0;
    eo.node_timeout_ms = LOCAL_NODE_TIMEOUT_MS;
    eo.fee_bps = 0;
    eo.ref_gpu_hour_micros = eo.ref_cpu_hour_micros = 0;
    eo.ref_memory_gb_hour_micros = 0;
    rc = rz_engine_open(&r->engine, r->dir, &eo);
    char *caps = NULL;
    if (rc == RZ_OK)
        rc = local_caps(r, &caps);
    if (rc == RZ_OK)
        rc = rz_engine_local_node(r->engine, caps, r->jobs, r->t0, &r->node);
    rz_free(caps);
    if (rc != RZ_OK)
        return rc;
    rz_engine_replica rep = RZ_ENGINE_REPLICA_INIT;
    rep.run = r->run;
    rep.max_started = r->jobs;
    rep.on_change = on_change;
    rep.userdata = r;
    rep.share = 1;   /* one run in memory: the engine's is this one */
    rz_engine_local_reuse(r->engine, r->opts->reuse_json);
    rc = rz_engine_local_deploy(r->engine, r->flow, r->opts->inputs_json,
                                &rep, r->t0, &r->dep);
    if (rc == RZ_OK)
        sandbox_notice(r);
    return rc == RZ_OK ? settle(r) : rc;
}

static int runner_init(runner *r, const rz_flow *flow,
                       const rz_runner_opts *opts)
{
    size_t n = rz_flow_step_count(flow);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    r->flow = flow;
    r->opts = opts;
    r->store = opts->store;   /* borrowed; else data_dir's, opened by the first record */
    r->jobs = opts->jobs ? opts->jobs : (cpus > 0 ? (unsigned)cpus : 1);
    bool fan_out = false;   /* a for_each step may run more tasks than steps */
    for (size_t i = 0; i < n && !fan_out; i++)
        fan_out = flow->steps[i].for_each != NULL;
    for (size_t i = 0; i < n && !fan_out; i++)
        fan_out = flow->steps[i].on_step != NULL;   /* once per event */
    if (r->jobs > n && !fan_out)
        r->jobs = n ? (unsigned)n : 1;
    /* A service holds its slot while it runs: the steps it feeds get
     * theirs beside it. */
    for (size_t i = 0; i < n; i++)
        r->jobs += flow->steps[i].service;
    r->slots = rz__calloc(r->jobs, sizeof *r->slots);
    r->pfds = rz__calloc(r->jobs, sizeof *r->pfds);
    r->seen = rz__calloc(n ? n : 1, sizeof *r->seen);
    if (!r->slots || !r->pfds || !r->seen)
        return rz__error(RZ_ENOMEM, "out of memory");
    r->t0 = rz__now_ms();
    /* The same instant on the wall clock: the record's step times are the
     * run's clock offset by it, so taken later they could end after the
     * run's own end. */
    r->started_wall = rz__wall_ms();
    int rc = rz_run_new(&r->run, flow, opts->inputs_json, opts->run_id,
                        r->t0);
    if (rc != RZ_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        r->seen[i] = RZ_STEP_PENDING;
    /* Without a pool every step makes its own folder, as before. */
    if (!opts->sandbox && rz__scratch_pool_new(&r->scratch, NULL) != RZ_OK)
        r->scratch = NULL;
    return RZ_OK;
}

/* The engine and the steps' folders; idempotent. */
static void engine_stop(runner *r)
{
    while (r->n_slots > 0)
        drop_slot(r, r->n_slots - 1);
    rz__scratch_pool_free(r->scratch);
    r->scratch = NULL;
    rz_engine_close(r->engine);
    r->engine = NULL;
    remove_dir(r->dir);
    r->dir = NULL;
}

static void runner_free(runner *r)
{
    engine_stop(r);
    r->recorded = record_join(r);   /* the final record, written meanwhile */
    if (r->store != r->opts->store)
        rz_store_close(r->store);
    free(r->slots);
    free(r->pfds);
    free(r->seen);
    free(r->resume_rec);
    rz_free(r->resume_map);
    free(r->resume_reused);
    free(r->blob_dir);
    rz__file_refs_free(&r->refs);
}

int rz_runner_check(const rz_flow *flow, const rz_runner_opts *opts)
{
    if (!flow)
        return rz__error(RZ_EINVAL, "rz_runner_check: no flow");
    for (size_t i = 0; i < flow->n_steps; i++) {
        const cJSON *a = rz__step_approval(&flow->steps[i]);
        if (a && !cJSON_GetObjectItemCaseSensitive(a, "timeout_s"))
            return rz__error(RZ_EUNSUPPORTED, "approval step '%s' has no timeout_s: on "
                             "this machine nobody can decide it (give it a timeout and a "
                             "default, or deploy the flow to an orchestrator)",
                             flow->steps[i].id);
    }
    const char *host = opts && opts->version >= 3 ? opts->container_host
                                                   : NULL;
    if (!has_docker_step(flow))
        return RZ_OK;
    rz_container_info ci;
    int rc = rz__container_answers(&ci, host);
    if (rc != RZ_OK || ci.answers)
        return rc;
    rz__buf b = {0};
    rz__buf_puts(&b, "no container engine answers, and ");
    size_t n = 0;
    for (size_t i = 0; i < flow->n_steps; i++) {
        const rz_module *m = flow->steps[i].module;
        if (m && m->adapter && strcmp(m->adapter, "docker") == 0 &&
            !rz__local_llm_on(m, flow->steps[i].config))
            rz__buf_printf(&b, "%s'%s' (image %s)", n++ ? ", " : "step ",
                           flow->steps[i].id, m->image ? m->image : "?");
    }
    rz__buf_printf(&b, " need%s one: %s", n == 1 ? "s" : "", ci.why);
    char *msg = rz__buf_take(&b);
    rc = rz__error(RZ_EUNSUPPORTED, "%s", msg ? msg : "no container engine");
    free(msg);
    return rc;
}

/* An older caller's options as this version's (the fields it lacks at
 * their defaults, in *to). */
static const rz_runner_opts *opts_upgrade(const rz_runner_opts *opts,
                                          rz_runner_opts *to)
{
    if (opts->version == RZ_RUNNER_OPTS_VERSION)
        return opts;
    /* Version 2 ends before container_host, 3 before default_memory_mb,
     * 4 before max_scratch_mb, 5 before prices, 6 before reuse_json,
     * 7 before llm_servers, 8 before store, 9 before max_file_mb. */
    memcpy(to, opts, opts->version == 2
               ? offsetof(rz_runner_opts, container_host)
               : opts->version == 3
               ? offsetof(rz_runner_opts, default_memory_mb)
               : opts->version == 4
               ? offsetof(rz_runner_opts, max_scratch_mb)
               : opts->version == 5
               ? offsetof(rz_runner_opts, prices)
               : opts->version == 6
               ? offsetof(rz_runner_opts, reuse_json)
               : opts->version == 7
               ? offsetof(rz_runner_opts, llm_servers)
               : opts->version == 8
               ? offsetof(rz_runner_opts, store)
               : offsetof(rz_runner_opts, max_file_mb));
    to->version = RZ_RUNNER_OPTS_VERSION;
    return to;
}

/* A finished run's final record. A big run's (the whole run as JSON) is
 * built after the engine (its own copy of the flow, run and jobs) is gone,
 * so the two are not in memory together: at 100,000 steps each is ~100
 * MiB. A small one is built first, so its commit overlaps the teardown. */
static void record_end(runner *r)
{
    resume_take(r);
    bool big = rz_flow_step_count(r->flow) >= 4096;
    if (big) {
        engine_stop(r);
#ifdef __GLIBC__
        /* The engine's pages, freed among the run's, go back before the
         * record's (LMDB copies a value of ~33 MB at 100,000 steps). */
        malloc_trim(0);
#endif
    }
    resume_record(r);
    record(r, rz__wall_ms(), big);   /* joined in runner_free */
}

int rz_runner_run(rz_run **out, const rz_flow *flow,
                  const rz_runner_opts *opts)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_runner_run: out is NULL");
    *out = NULL;
    rz_runner_opts defaults = RZ_RUNNER_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    if (!flow || opts->version < 2 || opts->version > RZ_RUNNER_OPTS_VERSION)
        return rz__error(RZ_EINVAL, "rz_runner_run: invalid arguments");
    rz_runner_opts upgraded = RZ_RUNNER_OPTS_INIT;
    opts = opts_upgrade(opts, &upgraded);
    runner r;
    memset(&r, 0, sizeof r);
    int rc = runner_init(&r, flow, opts);
    if (rc == RZ_OK) {
        report_changes(&r);
        record(&r, 0, false);   /* told; the final record says it again */
        rc = engine_start(&r);
    }
    if (rc == RZ_OK)
        rc = drive(&r);
    if (rc == RZ_OK)
        record_end(&r);
    runner_free(&r);
    int recorded = rc == RZ_OK ? r.recorded : RZ_OK;
    if (rc != RZ_OK) {
        rz_run_free(r.run);
        return rc;
    }
    emit(&r, RZ_EVENT_RUN_FINISHED, RZ_NPOS,
         rz_run_state_name(rz_run_state_get(r.run)));
    *out = r.run;
    if (recorded != RZ_OK)   /* after the events, which may set errors */
        rz__error(recorded, "run not recorded in %s",
                  opts->data_dir ? opts->data_dir : "the run store");
    return recorded;
}
