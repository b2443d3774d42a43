/* Flow deployments: every step is a job, released by the deployment's
 * rz_run. The run decides (readiness, `when`, retries, timeouts,
 * on_failure); the engine turns its decisions into queued jobs and its
 * outcomes into settlements. Every call into the run that changes it is
 * recorded as a step event, so the run is rebuilt on open by replaying them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "flow/loader.h"
#include "flow/model.h"
#include "match/match_impl.h"
#include "module/module_impl.h"
#include "run/changes.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

void rz__engine_dep_free(rz__edep *d)
{
    if (!d->run_shared)
        rz_run_free(d->run);
    if (!d->flow_shared)
        rz_flow_free(d->flow);
    free(d->text);
    free(d->inputs);
    free(d->final_status);
    rz__engine_dep_log_free(d);
    free(d->el_jobs);
    free(d->appr);
    free(d->reuse_text);
    cJSON_Delete(d->reuse);
    free(d->key_manifest_text);
    memset(d, 0, sizeof *d);
}

/* ---- change log (rz_engine_deployment_changes) ---- */

void rz__engine_dep_log(rz__edep *d, size_t step)
{
    if (step >= d->n_steps && d->run)   /* an element: its step changed */
        step = rz_run_task_step(d->run, step, NULL);
    if (step >= d->n_steps || d->n_log >= RZ__LOG_DEAD - 1)
        return;
    if (!d->log_at && !(d->log_at = rz__calloc(d->n_steps, sizeof *d->log_at)))
        return;   /* out of memory: streams fall back to snapshots */
    if (!rz__engine_grow((void **)&d->log, &d->cap_log, d->n_log + 1,
                         sizeof *d->log))
        return;
    if (d->log_at[step])
        d->log[d->log_at[step] - 1] = RZ__LOG_DEAD;
    d->log[d->n_log++] = (uint32_t)step;
    d->log_at[step] = (uint32_t)d->n_log;
}

void rz__engine_dep_log_free(rz__edep *d)
{
    free(d->log);
    free(d->log_at);
    d->log = d->log_at = NULL;
    d->n_log = d->cap_log = 0;
}

static rz__ejob *step_job(rz_engine *e, const rz__edep *d, size_t step)
{
    return rz__engine_task_job(e, d, step);
}

/* The deploy's jobs: its steps', then its replicated steps' runs. */
static rz__ejob *deploy_job(rz_engine *e, const rz__edep *d, size_t i)
{
    return rz__engine_job(e, d->first_job + i);
}

static bool job_open(const rz__ejob *j)
{
    return j->state < RZ_JOB_SUCCEEDED;
}

/* ---- status ---- */

/* A text built piece by piece (status_json); `bad` once memory ran out. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool bad;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->bad || !rz__engine_grow((void **)&b->p, &b->cap, b->len + n + 1, 1)) {
        b->bad = true;
        return;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* `v` printed as cJSON prints it inside a document; then deleted. */
static void sb_item(sbuf *b, cJSON *v)
{
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    if (!t)
        b->bad = true;
    else
        sb_add(b, t);
    free(t);
    cJSON_Delete(v);
}

/* A job's own view beside its step's (or element's) run state. */
static bool add_job_view(const rz_engine *e, cJSON *s, const rz__ejob *j)
{
    if (!rz__bill_json(e, j, s))
        return false;
    const char *why = j ? rz__engine_waiting_reason(j) : NULL;
    if (j && j->reused && (!cJSON_AddTrueToObject(s, "reused") ||
                           !cJSON_AddStringToObject(s, "reused_from", j->reused)))
        return false;
    return !j || (cJSON_AddNumberToObject(s, "job", (double)j->id) &&
                  cJSON_AddStringToObject(s, "job_status", rz_job_state_name(j->state)) &&
                  cJSON_AddNumberToObject(s, "dispatches", (double)j->attempt) &&
                  (!why || cJSON_AddStringToObject(s, "waiting_reason", why)));
}

/* Step i's module, the sub-flow step it came from ("group"), and the steps
 * it waits for ("needs": its needs, the steps its expressions read, its
 * connections): enough for a viewer that
 * has only the status to draw the graph. */
static bool add_step_shape(cJSON *s, const rz_flow *f, size_t i)
{
    const char *mod = rz_flow_step_module(f, i);
    if (mod && *mod && !cJSON_AddStringToObject(s, "module", mod))
        return false;
    const char *group = rz_flow_step_group(f, i);   /* the sub-flow it came from */
    if (group && !cJSON_AddStringToObject(s, "group", group))
        return false;
    size_t n = 0;
    const size_t *deps = rz_flow_step_deps(f, i, &n);
    cJSON *needs = cJSON_AddArrayToObject(s, "needs");
    for (size_t k = 0; needs && k < n; k++) {
        cJSON *id = cJSON_CreateString(rz_flow_step_id(f, deps[k]));
        if (!id || !cJSON_AddItemToArray(needs, id)) {
            cJSON_Delete(id);
            return false;
        }
    }
    return needs != NULL;
}

/* Step i as the run gives it, with its job's own view: after a decline or
 * a lost node the run's step is still running (same attempt) while its job
 * waits in the queue again, dispatched once more. */
/* Task t's job: a finished deployment's are read back from the store
 * (they left memory after their commit). */
static const rz__ejob *task_job(const rz_engine *e, const rz__edep *d, size_t t)
{
    if (!d->final_lazy)
        return rz__engine_task_job(e, d, t);
    size_t k = t - d->n_steps;
    uint64_t id = t < d->n_steps ? d->first_job + t
                : k < d->n_el_jobs ? d->el_jobs[k] : 0;
    return id ? rz__engine_job_read(e, id) : NULL;
}

static cJSON *step_status_json(const rz_engine *e, const rz__edep *d, size_t i)
{
    cJSON *s = rz__run_step_json(d->run, i);
    bool ok = s && add_step_shape(s, d->flow, i) &&
              add_job_view(e, s, task_job(e, d, i));
    /* A for_each step's elements: each its own job. */
    cJSON *el = ok ? cJSON_GetObjectItemCaseSensitive(s, "elements") : NULL;
    if (el) {
        size_t first = RZ_NPOS, n = rz_run_task_count(d->run);
        for (size_t t = d->n_steps; t < n && first == RZ_NPOS; t++)
            if (rz_run_task_step(d->run, t, NULL) == i)
                first = t;   /* a step's elements are consecutive tasks */
        size_t k = 0;
        for (cJSON *x = el->child; ok && x && first != RZ_NPOS; x = x->next, k++)
            ok = add_job_view(e, x, task_job(e, d, first + k));
    }
    /* An event step's runs, made as events came: among other tasks. */
    cJSON *runs = ok ? cJSON_GetObjectItemCaseSensitive(s, "runs") : NULL;
    cJSON *x = runs ? runs->child : NULL;
    for (size_t t = d->n_steps; ok && x && t < rz_run_task_count(d->run); t++)
        if (rz_run_task_step(d->run, t, NULL) == i) {
            ok = add_job_view(e, x, task_job(e, d, t));
            x = x->next;
        }
    if (!ok) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

/* `v` printed as cJSON prints it inside a document (borrowed). */
static void sb_print(sbuf *b, const cJSON *v)
{
    char *t = cJSON_PrintUnformatted(v);
    if (!t)
        b->bad = true;
    else
        sb_add(b, t);
    free(t);
}

/* The run's document (rz_run_to_json's members, "id" the deployment's
 * number, last) with each step's job view, written one step at a time:
 * the same text as printing the whole tree, without holding a tree of
 * every step (~1 KiB a step) at once. The other members (outputs, an
 * error, failed steps) come from the run as it writes them. */
static int status_json(const rz_engine *e, const rz__edep *d, char **out)
{
    *out = NULL;
    cJSON *doc = rz__run_json_summary(d->run);
    if (!doc || !rz__engine_dep_waits_json(d, doc)) {
        cJSON_Delete(doc);
        return no_memory();
    }
    sbuf b = { NULL, 0, 0, false };
    sb_add(&b, "{");
    bool first = true;
    for (const cJSON *c = doc->child; c && !b.bad; c = c->next) {
        if (strcmp(c->string, "id") == 0)
            continue;
        if (strcmp(c->string, "outputs") == 0) {   /* the steps go before */
            sb_add(&b, ",\"steps\":{");
            for (size_t i = 0; i < d->n_steps && !b.bad; i++) {
                if (i)
                    sb_add(&b, ",");
                sb_item(&b, cJSON_CreateString(d->flow->steps[i].id));
                sb_add(&b, ":");
                sb_item(&b, step_status_json(e, d, i));
            }
            sb_add(&b, "}");
        }
        if (!first)
            sb_add(&b, ",");
        first = false;
        sb_item(&b, cJSON_CreateString(c->string));
        sb_add(&b, ":");
        sb_print(&b, c);
    }
    cJSON_Delete(doc);
    sb_add(&b, ",\"id\":");
    sb_item(&b, cJSON_CreateNumber((double)d->id));
    sb_add(&b, "}");
    if (b.bad) {
        free(b.p);
        return no_memory();
    }
    *out = b.p;
    return RZ_OK;
}

static int finish_dep(rz_engine *e, rz__edep *d)
{
    char *status = NULL;
    /* The embedded caller's run and flow outlive the engine: its status
     * is built when asked (final_lazy), not at every run's end. */
    bool lazy = d->run_shared && d->flow_shared;
    int rc = lazy ? RZ_OK : status_json(e, d, &status);
    if (rc != RZ_OK)
        return rc;
    d->state = rz_run_state_get(d->run);
    d->final_status = status;
    d->final_lazy = lazy;
    d->kept_run = lazy ? d->run : NULL;
    d->kept_flow = lazy ? d->flow : NULL;
    rz__engine_dep_log_free(d);   /* streams end with the final status */
    if (!d->run_shared)
        rz_run_free(d->run);
    d->run = NULL;
    d->run_shared = false;
    if (!d->flow_shared)
        rz_flow_free(d->flow);
    d->flow = NULL;
    rz__engine_trim(d->n_steps);
    rz__engine_touch_dep(e, d);
    rz__engine_emit_deployment_finished(e, d);
    return RZ_OK;
}

/* ---- driving the run ---- */

static int set_text(char **dst, const char *src)
{
    free(*dst);
    *dst = NULL;
    if (src && !(*dst = rz__strdup(src)))
        return no_memory();
    return RZ_OK;
}

/* Steps the run settled without a job outcome (skipped, cancelled, failed
 * by a timeout or a bad request) release their jobs and holds. Only steps
 * whose state changed since the last pass are looked at: a step's cost
 * must not grow with the deployment. */
static void sync_steps(rz_engine *e, rz__edep *d)
{
    const size_t *changed;
    size_t n = rz__run_take_changes(d->run, RZ__RUN_ENGINE, &changed);
    for (size_t k = 0; k < n; k++) {
        size_t i = changed[k];
        rz__ejob *j = step_job(e, d, i);
        rz_step_state s = rz_run_step_state(d->run, i);
        if (!j || !job_open(j))
            continue;
        /* A for_each step ran as its elements' jobs: its own gives its
         * hold back whatever the outcome. */
        if (s == RZ_STEP_SUCCEEDED && i < d->n_steps &&
            rz__step_maps(&d->flow->steps[i])) {
            rz__engine_finish(e, j, RZ_JOB_SUCCEEDED, RZ__OWE_REFUND);
            continue;
        }
        if (s != RZ_STEP_FAILED && s != RZ_STEP_SKIPPED && s != RZ_STEP_CANCELLED)
            continue;
        rz__engine_unplace(e, j, true);
        if (rz_run_step_error(d->run, i))
            set_text(&j->error, rz_run_step_error(d->run, i));
        rz_job_state st = s == RZ_STEP_FAILED && !d->cancelled
                              ? RZ_JOB_FAILED : RZ_JOB_CANCELLED;
        rz__engine_finish(e, j, st, RZ__OWE_REFUND);
    }
}

/* The step was failed by the run (a timeout or a report) and may retry. */
static void step_back(rz_engine *e, rz__edep *d, rz__ejob *j)
{
    if (rz_run_step_state(d->run, j->step) != RZ_STEP_BACKOFF)
        return;
    rz__engine_unplace(e, j, true);
    j->state = RZ_JOB_PENDING;
    rz__engine_touch_job(e, j);
}

/* A step whose timeout passes while its job still waits for a node (queued,
 * or placed but never taken) did not run at all: its reason says so, with
 * why no node could run it when that is known (waiting.c). It
 * fails through rz_run_expire and is recorded as a failure with that reason,
 * so a replay (which replays the failure, not the expiry) gives the same
 * message. Steps whose job is running are left to the tick. */
static int expire_waiting(rz_engine *e, rz__edep *d, uint64_t now,
                          size_t *count)
{
    int rc = RZ_OK;
    size_t n = rz_run_task_count(d->run);
    for (size_t i = 0; i < n && rc == RZ_OK; i++) {
        const rz__ejob *j = step_job(e, d, i);
        if (!j || (j->state != RZ_JOB_QUEUED && j->state != RZ_JOB_ASSIGNED))
            continue;
        if (j->state == RZ_JOB_QUEUED)
            rc = rz__engine_why_refresh(e, j->req_group, true);
        const char *why = rz__engine_waiting_reason(j);
        char *note = why ? rz__asprintf(" waiting for a node: %s", why) : NULL;
        if (rc == RZ_OK && why && !note)
            rc = no_memory();
        if (rc == RZ_OK)
            rc = rz_run_expire(d->run, i, note ? note
                               : " waiting for a node (no node took it)", now);
        free(note);
        if (rc == 1) {
            (*count)++;
            rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_FAIL, i, now,
                                    rz_run_step_error(d->run, i));
        }
    }
    return rc;
}

static int expire(rz_engine *e, rz__edep *d, uint64_t now)
{
    if (rz_run_next_wakeup(d->run) > now)
        return RZ_OK;   /* no timeout (nor retry) is due */
    size_t n = 0, buf[64];
    int rc = expire_waiting(e, d, now, &n);
    size_t ticked = rc == RZ_OK ? rz_run_tick(d->run, now, buf,
                                              RZ_ARRAY_LEN(buf)) : 0;
    if (ticked)
        rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_TICK, 0, now, NULL);
    if (rc != RZ_OK || n + ticked == 0)
        return rc;
    /* More than fit in buf were expired as well: their jobs are found by
     * comparing states below. */
    for (size_t i = 0; i < rz_run_task_count(d->run) && rc == RZ_OK; i++) {
        rz__ejob *j = step_job(e, d, i);
        if (j && j->state >= RZ_JOB_QUEUED && j->state <= RZ_JOB_RUNNING &&
            rz_run_step_state(d->run, i) != RZ_STEP_RUNNING) {
            set_text(&j->error, rz_run_step_error(d->run, i));
            step_back(e, d, j);
        }
    }
    return rc;
}

static int request_failed(rz_engine *e, rz__edep *d, rz__ejob *j, size_t step,
                          uint64_t now);

/* A started task's job gets its request and its queue entry, unless an
 * earlier result is reused (nothing runs: reuse.c) or it is an approval
 * (it waits for a decision). *bad: the request could not be built (not
 * for memory). */
static int queue_started(rz_engine *e, rz__ejob *j, rz__edep *d, size_t step,
                         uint64_t now, bool *bad)
{
    char *req = NULL;
    int rc = rz_run_request(d->run, step, &req);
    *bad = rc != RZ_OK && rc != RZ_ENOMEM;
    if (rc != RZ_OK)
        return rc;
    bool reused = false;
    rc = rz__engine_reuse_try(e, d, j, step, req, now, &reused);
    if (rc != RZ_OK || reused || rz__engine_is_approval(d, step)) {
        if (rc == RZ_OK && !reused)
            rz__engine_touch_job(e, j);
        rz_free(req);
        return rc;
    }
    char *copy = rz__strdup(req);
    rz_free(req);
    if (!copy)
        return no_memory();
    free(j->request);
    j->request = copy;
    rc = rz__engine_enqueue(e, j);
    if (rc == RZ_OK && j->rep_head)   /* its replicas run now too */
        rc = rz__replica_step_start(e, j);
    return rc;
}

static int start_step(rz_engine *e, rz__edep *d, size_t step, uint64_t now)
{
    rz__ejob *j = step_job(e, d, step);
    if (!j)
        return rz__error(RZ_EINTERNAL, "deployment %llu: task %zu has no job",
                         (unsigned long long)d->id, step);
    int rc = rz__engine_step_event_room(e);   /* recording it cannot fail */
    if (rc == RZ_OK)
        rc = rz_run_start(d->run, step, now);
    if (rc != RZ_OK)
        return rc;
    rz__engine_step_event_put(e, d, RZ__STEP_EVENT_START, step, now, NULL);
    bool bad;
    rc = queue_started(e, j, d, step, now, &bad);
    if (rc == RZ_ENOMEM)
        d->start_due = true;   /* started, not queued: the next tick */
    return bad ? request_failed(e, d, j, step, now) : rc;
}

/* The request cannot be built (an expression failed): the attempt fails
 * as if the node had failed it. */
static int request_failed(rz_engine *e, rz__edep *d, rz__ejob *j, size_t step,
                          uint64_t now)
{
    char why[600];
    snprintf(why, sizeof why, "cannot build the request: %s",
             rz_error_last()->message);
    (void)!rz_run_fail(d->run, step, why, now);   /* its state tells */
    int rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_FAIL, step, now, why);
    set_text(&j->error, why);
    step_back(e, d, j);
    return rc;
}

/* Tasks the run started whose jobs were never queued (start_due). */
static int queue_due(rz_engine *e, rz__edep *d, uint64_t now)
{
    int rc = RZ_OK;
    size_t n = rz_run_task_count(d->run);
    for (size_t t = 0; rc == RZ_OK && t < n; t++) {
        rz__ejob *j = step_job(e, d, t);
        if (j && j->state == RZ_JOB_PENDING &&
            rz_run_step_state(d->run, t) == RZ_STEP_RUNNING &&
            !(t < d->n_steps && (rz__step_maps(&d->flow->steps[t]) ||
                                 rz__engine_is_approval(d, t)))) {
            bool bad;
            rc = queue_started(e, j, d, t, now, &bad);
            if (bad)
                rc = request_failed(e, d, j, t, now);
        }
    }
    if (rc == RZ_OK)
        d->start_due = false;
    return rc;
}

int rz__engine_dep_advance(rz_engine *e, rz__edep *d, uint64_t now)
{
    if (!d->run)
        return RZ_OK;
    int rc = d->start_due ? queue_due(e, d, now) : RZ_OK;
    if (rc == RZ_OK)
        rc = rz__engine_approvals_due(e, d, now);
    if (rc == RZ_OK)
        rc = expire(e, d, now);
    for (bool more = true; rc == RZ_OK && more;) {
        size_t buf[64];
        rc = rz__engine_fan_out(e, d, now);   /* elements the run made */
        if (rc != RZ_OK)
            break;
        if (d->paused) {   /* readiness worked out (as a reopen does), nothing started */
            rz_run_ready(d->run, now, NULL, 0);
            break;
        }
        size_t n = rz_run_ready(d->run, now, buf, RZ_ARRAY_LEN(buf));
        size_t room = rz__engine_local_room(e, d);   /* embedded mode */
        if (n > room)
            n = room;
        more = n > 0;
        for (size_t i = 0; rc == RZ_OK && i < n && i < RZ_ARRAY_LEN(buf); i++)
            rc = start_step(e, d, buf[i], now);
    }
    /* The run's changes so far reach its jobs whatever failed: the call
     * commits its step events (a step not queued for memory waits for
     * start_due), and a job left behind them would disagree after a crash. */
    sync_steps(e, d);
    if (rc != RZ_OK)
        return rc;
    return rz_run_done(d->run) ? finish_dep(e, d) : RZ_OK;
}

int rz__engine_dep_report_prep(rz_engine *e, const char *outputs,
                               const char *error, rz__dep_texts *t)
{
    const char *what = error ? error : outputs ? outputs : "{}";
    t->event = rz__engine_step_event_room(e) == RZ_OK ? rz__strdup(what) : NULL;
    t->kept = t->event ? rz__strdup(what) : NULL;
    if (t->kept)
        return RZ_OK;
    free(t->event);
    t->event = NULL;
    return no_memory();
}

static void texts_free(rz__dep_texts *t)
{
    free(t->event);
    free(t->kept);
    t->event = t->kept = NULL;
}

int rz__engine_dep_report_with(rz_engine *e, rz__ejob *j, const char *outputs,
                               const char *error, uint64_t now, rz__dep_texts *t)
{
    rz__edep *d = rz__engine_dep(e, j->deployment);
    if (!d || !d->run) {
        texts_free(t);
        return rz__error(RZ_EINTERNAL, "job %llu: its deployment has finished",
                         (unsigned long long)j->id);
    }
    if (error && rz__replica_step_failed(e, j)) {
        texts_free(t);
        return RZ_OK;   /* a replicated step's run: a vote (replica.c) */
    }
    /* RZ_EINVALID (outputs off the contract) fails the step: its state
     * below tells which. */
    int rc = error ? rz_run_fail(d->run, j->step, error, now)
                   : rz_run_succeed(d->run, j->step, outputs, now);
    if (rc == RZ_ENOMEM) {   /* refused before the run changed */
        texts_free(t);
        return rc;
    }
    rz__engine_step_event_put(e, d, error ? RZ__STEP_EVENT_FAIL
                                          : RZ__STEP_EVENT_SUCCEED,
                              j->step, now, t->event);
    t->event = NULL;
    if (!error && rz_run_step_state(d->run, j->step) == RZ_STEP_SUCCEEDED) {
        free(j->outputs);
        j->outputs = t->kept;
        t->kept = NULL;
        rz__engine_finish(e, j, RZ_JOB_SUCCEEDED,
                          j->cost ? RZ__OWE_SETTLE : RZ__OWE_REFUND);
    } else {
        if (error) {
            free(j->error);
            j->error = t->kept;
            t->kept = NULL;
        } else {
            set_text(&j->error, rz_run_step_error(d->run, j->step));
        }
        step_back(e, d, j);
    }
    texts_free(t);
    return rz__engine_dep_advance(e, d, now);
}

int rz__engine_dep_report(rz_engine *e, rz__ejob *j, const char *outputs,
                          const char *error, uint64_t now)
{
    if (error && rz__replica_step_failed(e, j))
        return RZ_OK;   /* a replicated step's run: a vote (replica.c) */
    /* What may fail is made first: out of memory changes nothing (the
     * step is as it was, and the deployment's n_events tells a caller so). */
    rz__dep_texts t;
    int rc = rz__engine_dep_report_prep(e, outputs, error, &t);
    return rc == RZ_OK ? rz__engine_dep_report_with(e, j, outputs, error, now, &t)
                       : rc;
}

/* ---- deploying ---- */

/* An llm step's (docs/llm.md): matched to nodes serving its model, priced
 * on what its tokens can be: max_tokens plus max_prompt_tokens, the bound
 * the llm adapter holds the prompt to. The model must be written out, as
 * nodes are matched before the step's inputs are known. */
#define LLM_TOKENS_MAX 1e9

static double llm_number(const cJSON *config, const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* The model, token and seconds bounds of an llm step, or of a step on its
 * node's model (a module's local_llm: the numbers are the manifest's). */
static int llm_reqs(const rz__step *st, cJSON **out)
{
    const rz_module *m = st->module;
    bool local = rz__local_llm_on(m, st->config);
    const char *name = local ? rz__local_llm_model(m, st->config)
        : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st->config, "model"));
    if (!name || !*name || strstr(name, "${{"))
        return rz__error(RZ_EINVALID, "step '%s': an llm step's config.model "
                         "must be a model's name written out (nodes are "
                         "matched to it before the step's inputs are known)",
                         st->id);
    double mt = local ? m->local_llm.max_tokens
        : llm_number(st->config, "max_tokens", RZ_LLM_DEFAULT_MAX_TOKENS);
    double mp = local ? m->local_llm.max_prompt_tokens
        : llm_number(st->config, "max_prompt_tokens",
                     RZ_LLM_DEFAULT_MAX_PROMPT_TOKENS);
    if (!(mt >= 1 && mt <= LLM_TOKENS_MAX && mp >= 1 && mp <= LLM_TOKENS_MAX))
        return rz__error(RZ_EINVALID, "step '%s': max_tokens and "
                         "max_prompt_tokens must be from 1 to 10^9", st->id);
    cJSON *o = cJSON_CreateObject(), *l = cJSON_CreateObject();
    if (!o || !l || !cJSON_AddStringToObject(o, "adapter", "llm") ||
        !cJSON_AddItemToObject(o, "llm", l)) {
        cJSON_Delete(o);
        cJSON_Delete(l);
        return no_memory();
    }
    /* Its seconds on a node priced per second: the module's timeout, where
     * its node stops it. */
    uint32_t secs = m->timeout_s >= 1 && m->timeout_s <= RZ_LLM_MAX_SECONDS
        ? m->timeout_s : RZ_LLM_DEFAULT_SECONDS;
    if (!cJSON_AddStringToObject(l, "model", name) ||
        !cJSON_AddNumberToObject(l, "tokens", (double)((uint64_t)mt + (uint64_t)mp)) ||
        !cJSON_AddNumberToObject(l, "seconds", secs)) {
        cJSON_Delete(o);
        return no_memory();
    }
    *out = o;
    return RZ_OK;
}

static bool is_llm(const rz__step *st)
{
    return st->module && ((st->module->adapter &&
                           strcmp(st->module->adapter, "llm") == 0) ||
                          rz__local_llm_on(st->module, st->config));
}

/* Requirements of a step: those of module m (NULL: none, as an embedded
 * deployment's), with its estimate; an llm step's with its model and
 * tokens. NULL with the error set. */
static char *step_reqs(const rz__step *st, const rz_module *m)
{
    cJSON *over = NULL;
    /* Embedded, the one local node runs every step: nothing to match. */
    if (m && is_llm(st) && llm_reqs(st, &over) != RZ_OK)
        return NULL;
    /* On its node's model, the module's container needs nothing of a node. */
    char *r = rz__engine_module_reqs(m && !rz__local_llm_on(m, st->config) ? m : NULL,
                                     over);
    cJSON_Delete(over);
    if (!r)
        no_memory();
    return r;
}

/* A step's own max_cost_micros, else the reference estimate. */
static uint64_t step_max_cost(const rz_engine *e, const rz__step *st,
                              const rz_reqs *r)
{
    const cJSON *m = st->extra
        ? cJSON_GetObjectItemCaseSensitive(st->extra, "max_cost_micros") : NULL;
    if (cJSON_IsNumber(m) && m->valuedouble >= 1 && m->valuedouble < 1e15)
        return (uint64_t)m->valuedouble;
    /* The cents spelling, for one release: exact (x 10,000). */
    const cJSON *c = st->extra
        ? cJSON_GetObjectItemCaseSensitive(st->extra, "max_cost_cents") : NULL;
    if (!m && cJSON_IsNumber(c) && c->valuedouble >= 1 && c->valuedouble < 1e11)
        return (uint64_t)c->valuedouble * 10000;
    return rz__engine_ref_cost(e, r);
}

uint64_t rz__engine_ref_cost(const rz_engine *e, const rz_reqs *r)
{
    if (r->llm_model)   /* an llm step: its tokens at the reference price */
        return rz__match_token_cost(e->opts.ref_llm_1k_tokens_micros, r->llm_tokens);
    const rz_reqs_info *ri = rz_reqs_get(r);
    uint64_t est = ri->estimate_ms ? ri->estimate_ms
                                   : (uint64_t)e->opts.default_step_seconds * 1000;
    est = est / 100 * e->opts.estimate_factor_pct +
          est % 100 * e->opts.estimate_factor_pct / 100;
    rz_caps_info ref;
    memset(&ref, 0, sizeof ref);
    ref.gpu_hour_micros = e->opts.ref_gpu_hour_micros;
    ref.cpu_hour_micros = e->opts.ref_cpu_hour_micros;
    ref.memory_gb_hour_micros = e->opts.ref_memory_gb_hour_micros;
    uint64_t c = rz__match_cost(rz__match_rate(&ref, ri), est);
    return c ? c : 1;
}

int rz__engine_step_job_fill(rz_engine *e, rz__ejob *j, const rz__edep *d,
                             const rz__step *st, size_t i, uint64_t now)
{
    j->client = d->client;
    j->deployment = d->id;
    j->step = i;
    j->submitted_ms = now;
    j->queue_timeout_ms = (uint64_t)st->queue_timeout_s * 1000u;
    j->step_id = rz__strdup(st->id);
    /* An embedded deployment's steps are jobs as its document says
     * (local.c: no module requirements, no max_cost), though its flow is
     * the caller's, with modules resolved. An approval step has no module
     * (approval.c): its job is never queued. */
    const rz_module *m = d->flow_shared ? NULL : st->module;
    const char *id = m ? m->id : st->module_id;
    if (!id && st->module && st->module->id)   /* a step made with its module */
        id = st->module->id;
    j->module_id = rz__strdup(id ? id : "");
    j->module_version = rz__strdup(m ? m->version
                                   : st->module_spec ? st->module_spec : "");
    j->request = rz__strdup("{}");
    if (!j->step_id || !j->module_id || !j->module_version || !j->request)
        return no_memory();
    char *reqs = step_reqs(st, m);
    if (!reqs)
        return rz_error_last()->code;
    int rc = rz__engine_reqs_set(e, j, reqs, UINT64_MAX);
    free(reqs);
    if (rc != RZ_OK)
        return rc;
    j->max_cost = d->flow_shared ? rz__engine_ref_cost(e, j->reqs)
                                 : step_max_cost(e, st, j->reqs);
    rc = rz__engine_reqs_set(e, j, j->reqs_json, j->max_cost);
    return rc == RZ_OK ? rz__bill_fill(e, j, d, st) : rc;
}

/* Holds of steps [from, from + n) in one linked batch: all or none. */
static int hold_batch(rz_engine *e, const rz__edep *d, size_t from, size_t n)
{
    rz_ledger_op *ops = rz__calloc(n, sizeof *ops);
    rz_ledger_result *res = rz__calloc(n, sizeof *res);
    int rc = ops && res ? RZ_OK : no_memory();
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        const rz__ejob *j = deploy_job(e, d, from + i);
        ops[i].type = RZ_LEDGER_OP_HOLD;
        ops[i].flags = i + 1 < n ? RZ_LEDGER_LINKED : 0;
        ops[i].id = rz__engine_hold_id(j->id);
        ops[i].job = rz_engine_job_ledger_id(j->id);
        ops[i].account = d->client;
        ops[i].amount = j->max_cost;
    }
    if (rc == RZ_OK)
        rc = rz_ledger_submit(e->ledger, ops, n, res);
    for (size_t i = 0; rc == RZ_OK && i < n; i++)
        if (res[i].status != RZ_OK && res[i].status != RZ_ELINKED)
            rc = rz__error(res[i].status, "step %s: cannot hold %llu micros: %s",
                           deploy_job(e, d, from + i)->step_id
                               ? deploy_job(e, d, from + i)->step_id : "?",
                           (unsigned long long)ops[i].amount,
                           rz_strerror(res[i].status));
    free(ops);
    free(res);
    return rc;
}

/* The client can cover every hold from what the engine counts available
 * (billing.c: less what roll-overs owe): checked before any is made, so a
 * deployment too big for one ledger batch is held in several. */
static int can_cover(rz_engine *e, const rz__edep *d, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t m = deploy_job(e, d, i)->max_cost;
        if (m > UINT64_MAX - sum)
            return rz__error(RZ_EOVERFLOW, "the steps' holds overflow 64 bits");
        sum += m;
    }
    uint64_t have;
    int rc = rz__engine_available(e, d->client, 0, &have);
    if (rc == RZ_OK && have < sum)
        rc = rz__error(RZ_EFUNDS, "insufficient funds: the deployment needs %llu "
                       "micros held; %llu available", (unsigned long long)sum,
                       (unsigned long long)have);
    return rc;
}

/* Every step's hold: all or none. Up to RZ_LEDGER_BATCH_MAX steps that is
 * one linked batch. A bigger deployment is held batch by batch (a batch
 * another writer's spending refuses leaves the engine broken), and a
 * crash between batches is repaired on open like any hold of a job that
 * was never committed. */
static int hold_all(rz_engine *e, const rz__edep *d)
{
    size_t n = e->n_jobs + 1 - d->first_job;   /* steps, then replicas */
    int rc = n ? can_cover(e, d, n) : RZ_OK;
    if (n <= RZ_LEDGER_BATCH_MAX)
        return n && rc == RZ_OK ? hold_batch(e, d, 0, n) : rc;
    for (size_t from = 0; rc == RZ_OK && from < n; from += RZ_LEDGER_BATCH_MAX) {
        size_t k = n - from < RZ_LEDGER_BATCH_MAX ? n - from : RZ_LEDGER_BATCH_MAX;
        rc = hold_batch(e, d, from, k);
        if (rc != RZ_OK && from > 0)
            e->broken = true;   /* earlier holds stand: reopen repairs them */
    }
    return rc;
}

/* verify.replicas on a step (replica.c): the runs are made and held at
 * deploy, queued when the step starts, and decided once. So a step asking
 * for replicas may not retry (a retry would need a new set), and may not
 * have credentials (its secrets would go to k nodes). Embedded mode
 * (rz_engine_local_deploy: one node) runs such a step once. */
static bool embedded(const rz_engine *e)   /* the deployment being made */
{
    return e->local.dep && e->local.dep == e->n_deps + 1;
}

static int steps_replicas(const rz_engine *e, const rz_flow *f, rz_diags *diags)
{
    int rc = RZ_OK;
    for (size_t i = 0; !embedded(e) && i < f->n_steps; i++) {
        const rz__step *st = &f->steps[i];
        if (st->replicas < 2)
            continue;
        char ptr[512];
        snprintf(ptr, sizeof ptr, "%s/verify/replicas", st->ptr ? st->ptr : "");
        if (st->retry.max_attempts > 1)
            rc = rz__flow_diag(f, diags, RZ_EINVALID, ptr, "step '%s': verify "
                               "replicas and retry together are not supported "
                               "yet (each run is decided once)",
                               st->id ? st->id : "");
        if (st->n_creds)
            rc = rz__flow_diag(f, diags, RZ_EINVALID, ptr, "step '%s': a step "
                               "with credentials cannot ask for replicas (its "
                               "secrets would go to %u nodes)",
                               st->id ? st->id : "", st->replicas);
    }
    if (rc != RZ_OK)
        rz__error(rc, "a step asks for verify replicas with retry or "
                  "credentials");
    return rc;
}

static int load_flow(rz_flow **out, const rz_engine *e, const char *text,
                     size_t len, rz_diags *diags, bool fallback)
{
    int rc = rz_flow_parse(out, text, len, RZ_FORMAT_AUTO, "flow", diags);
    if (rc != RZ_OK)
        return rc;
    rc = rz_flow_validate(*out, e->opts.registry, diags);
    if (rc == RZ_OK && !fallback)
        rc = steps_replicas(e, *out, diags);
    if (rc != RZ_OK && fallback && e->opts.registry)
        rc = rz_flow_validate(*out, NULL, NULL);   /* modules gone since */
    if (rc != RZ_OK) {
        rz_flow_free(*out);
        *out = NULL;
        return rc;
    }
    /* The YAML node tree only places diagnostics, all given by now; it is
     * the largest part of a parsed flow (~1.5 KB a step). */
    rz__yaml_doc_free((*out)->yaml_doc);
    (*out)->yaml_doc = NULL;
    return rc;
}

static int new_run(rz__edep *d, uint64_t now)
{
    d->run_shared = false;
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)d->id);
    return rz_run_new(&d->run, d->flow, d->inputs, id, now);
}

/* A pending step's job gets its record when it first changes (queued,
 * skipped, cancelled): the deploy's commit holds the deployment, its flow
 * and the steps ready now, not N job records (a reopen derives the others:
 * rz__engine_dep_rebuild). A replicated step's job and its runs are
 * written now: open finds its set as the deploy made it (ids, holds),
 * never derived. Streams list every step once. */
static void deploy_records(rz_engine *e, rz__edep *dp)
{
    for (size_t i = 0; i < dp->n_steps; i++) {
        rz__engine_dep_log(dp, i);
        rz__ejob *j = rz__engine_job(e, dp->first_job + i);
        if (j->rep_head)
            rz__engine_touch_job(e, j);
    }
    for (uint64_t id = dp->first_job + dp->n_steps; id <= e->n_jobs; id++)
        rz__engine_touch_job(e, rz__engine_job(e, id));   /* the runs */
}

/* A new deployment's jobs (its steps', then its replicated steps' runs,
 * held with them) and their holds; on failure none of them is left. */
static int make_jobs(rz_engine *e, rz__edep *d, uint64_t now_ms)
{
    size_t before = e->n_jobs;
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < d->n_steps; i++) {
        rz__ejob *j = rz__engine_job_new(e);
        rc = j ? rz__engine_step_job_fill(e, j, d, &d->flow->steps[i], i, now_ms)
               : no_memory();
    }
    for (size_t i = 0; rc == RZ_OK && !embedded(e) && i < d->n_steps; i++)
        if (d->flow->steps[i].replicas >= 2)
            rc = rz__replica_step_new(e, d->first_job + i,
                                      d->flow->steps[i].replicas);
    if (rc == RZ_OK && e->in_group)   /* a group's holds come first */
        rc = rz__engine_group_flush(e);
    if (rc == RZ_OK)
        rc = hold_all(e, d);
    if (rc != RZ_OK)
        rz__engine_jobs_truncate(e, before);
    return rc;
}

/* shared: the caller's parsed flow, borrowed instead of parsing `text`
 * again (embedded mode); reuse_json: earlier results to reuse (reuse.c). */
static int deploy(rz_engine *e, const char *text, size_t len,
                  const rz_flow *shared, rz_ledger_id client,
                  const char *inputs_json, const char *reuse_json,
                  uint64_t now_ms, uint64_t *deployment, rz_diags *diags)
{
    if (deployment)
        *deployment = 0;
    if (e)
        e->now = now_ms;
    if (!e || e->broken || !text)
        return rz__error(e && e->broken ? RZ_EDB : RZ_EINVAL,
                         e && e->broken ? "an earlier commit failed"
                                        : "no engine or no flow");
    if (!e->in_group)
        rz__engine_evict(e);   /* as every call that changes state */
    rz__edep *dp = rz__malloc(sizeof *dp);
    if (!dp || !rz__engine_live_add_dep(e, dp)) {
        free(dp);
        return no_memory();
    }
    e->n_live_deps--;   /* listed once it is held and committed */
    rz__edep d;
    memset(&d, 0, sizeof d);
    d.id = e->n_deps + 1;
    d.client = client;
    d.created_ms = now_ms;
    d.state = RZ_RUN_RUNNING;
    d.text = rz__strndup(text, len);
    d.inputs = inputs_json ? rz__strdup(inputs_json) : NULL;
    d.reuse_text = reuse_json ? rz__strdup(reuse_json) : NULL;
    int rc = d.text && (!inputs_json || d.inputs) && (!reuse_json || d.reuse_text)
                 ? rz__engine_reuse_set(&d, reuse_json) : no_memory();
    d.flow_shared = shared != NULL;
    d.flow = (rz_flow *)shared;   /* borrowed: never changed nor freed here */
    if (rc == RZ_OK && !shared)
        rc = load_flow(&d.flow, e, text, len, diags, false);
    if (rc == RZ_OK)
        rc = rz__engine_dep_approvals(&d);
    /* An embedded caller's run, when it shares it (local.c). */
    bool own_run = !(shared && e->local.shared && e->local.dep == d.id);
    if (rc == RZ_OK && own_run)
        rc = new_run(&d, now_ms);
    else if (rc == RZ_OK) {
        d.run = e->local.replica;
        d.run_shared = true;
    }
    d.first_job = e->n_jobs + 1;
    d.n_steps = d.flow ? rz_flow_step_count(d.flow) : 0;
    if (rc == RZ_OK)
        rc = make_jobs(e, &d, now_ms);
    if (rc != RZ_OK) {
        rz__engine_dep_free(&d);
        free(dp);
        return rc;
    }
    *dp = d;
    e->deps[e->n_live_deps++] = dp;   /* room was made above */
    e->n_deps++;
    deploy_records(e, dp);
    rz__engine_touch_dep(e, dp);
    rz__engine_trim(dp->n_steps);
    rc = rz__engine_dep_advance(e, dp, now_ms);
    int crc = rz__engine_commit_call(e, RZ_OK);
    if (rc == RZ_OK)
        rc = crc;
    if (rc == RZ_OK && deployment)
        *deployment = dp->id;
    return rc;
}

int rz__engine_deploy(rz_engine *e, const char *text, size_t len,
                      rz_ledger_id client, const char *inputs_json,
                      const char *reuse_json, uint64_t now_ms,
                      uint64_t *deployment, rz_diags *diags)
{
    return deploy(e, text, len, NULL, client, inputs_json, reuse_json, now_ms,
                  deployment, diags);
}

int rz_engine_deploy(rz_engine *e, const char *text, size_t len,
                     rz_ledger_id client, const char *inputs_json,
                     uint64_t now_ms, uint64_t *deployment, rz_diags *diags)
{
    return deploy(e, text, len, NULL, client, inputs_json, NULL, now_ms,
                  deployment, diags);
}

int rz__engine_deploy_shared(rz_engine *e, const char *text,
                             const rz_flow *flow, rz_ledger_id client,
                             const char *inputs_json, const char *reuse_json,
                             uint64_t now_ms, uint64_t *deployment)
{
    return deploy(e, text, text ? strlen(text) : 0, flow, client, inputs_json,
                  reuse_json, now_ms, deployment, NULL);
}

static int cmp_job(const void *a, const void *b)
{
    uint64_t x = (*(rz__ejob *const *)a)->id, y = (*(rz__ejob *const *)b)->id;
    return (x > y) - (x < y);
}

/* The jobs of steps that never changed since the deploy have no record:
 * made again as the deploy made them, pending, with the amount their hold
 * in the ledger has (held at deploy, so options changed since do not
 * change it). */
static int unwritten_jobs(rz_engine *e, rz__edep *d)
{
    size_t added = 0;
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < d->n_steps; i++) {
        uint64_t id = d->first_job + i;
        if (rz__engine_job(e, id))
            continue;
        rz_ledger_transfer t;
        rc = rz_ledger_transfer_get(e->ledger, rz__engine_hold_id(id), &t);
        if (rc != RZ_OK) {
            rc = rz__error(RZ_EDB, "deployment %llu: step %zu has no job "
                           "record and no hold", (unsigned long long)d->id, i);
            break;
        }
        rz__ejob *j = rz__calloc(1, sizeof *j);
        if (!j || !rz__engine_grow((void **)&e->jobs, &e->cap_jobs,
                                   e->n_live_jobs + added + 1,
                                   sizeof *e->jobs)) {
            free(j);
            rc = no_memory();
            break;
        }
        j->id = id;
        e->jobs[e->n_live_jobs + added++] = j;   /* sorted below */
        rc = rz__engine_step_job_fill(e, j, d, &d->flow->steps[i], i, d->created_ms);
        if (rc == RZ_OK && j->max_cost != t.amount) {
            j->max_cost = t.amount;
            rc = rz__engine_reqs_set(e, j, j->reqs_json, j->max_cost);
        }
    }
    e->n_live_jobs += added;
    if (added)
        qsort(e->jobs, e->n_live_jobs, sizeof *e->jobs, cmp_job);
    return rc;
}

int rz__engine_dep_rebuild(rz_engine *e, rz__edep *d)
{
    int rc = load_flow(&d->flow, e, d->text, strlen(d->text), NULL, true);
    if (rc == RZ_OK && rz_flow_step_count(d->flow) != d->n_steps)
        rc = rz__error(RZ_EDB, "deployment %llu: the flow changed",
                       (unsigned long long)d->id);
    if (rc == RZ_OK)
        rc = rz__engine_dep_approvals(d);
    if (rc == RZ_OK)
        rc = rz__engine_reuse_set(d, d->reuse_text);
    if (rc == RZ_OK)
        rc = unwritten_jobs(e, d);
    if (rc == RZ_OK)
        rc = new_run(d, d->created_ms);
    if (rc == RZ_OK)
        rc = rz__engine_replay(e, d);
    if (rc == RZ_OK)
        rc = rz__engine_fan_out_rebuild(e, d);
    d->start_due = true;   /* a start may have been recorded, its job not
                              queued: looked at by the first tick */
    return rc;
}

static const rz__edep *find_dep(const rz_engine *e, uint64_t id, int *rc)
{
    const rz__edep *d = e ? rz__engine_dep_read(e, id) : NULL;
    if (!d)
        *rc = e ? rz_error_last()->code
                : rz__error(RZ_ENOENT, "no deployment %llu",
                            (unsigned long long)id);
    return d;
}

int rz_engine_deployment_status(const rz_engine *e, uint64_t deployment, char **json)
{
    int rc = RZ_OK;
    if (json)
        *json = NULL;
    const rz__edep *d = find_dep(e, deployment, &rc);
    if (!d || !json)
        return d ? rz__error(RZ_EINVAL, "no output pointer") : rc;
    if (d->final_status) {
        *json = rz__strdup(d->final_status);
        return *json ? RZ_OK : no_memory();
    }
    if (d->final_lazy) {   /* as finish_dep would have built it */
        rz__edep v = *d;
        v.run = d->kept_run;
        v.flow = d->kept_flow;
        return status_json(e, &v, json);
    }
    return status_json(e, d, json);
}

size_t rz_engine_deployment_changes(const rz_engine *e, uint64_t deployment,
                                    uint64_t since, size_t *steps, size_t cap,
                                    uint64_t *next)
{
    const rz__edep *d = e ? rz__engine_dep(e, deployment) : NULL;   /* a
        finished one (in memory or not) has no changes left */
    uint64_t end = d ? d->n_log : 0, pos = since < end ? since : end;
    size_t n = 0;
    for (; pos < end && n < cap; pos++)
        if (d->log[pos] != RZ__LOG_DEAD)
            steps[n++] = d->log[pos];
    if (next)
        *next = pos;
    return n;
}

int rz_engine_deployment_step_status(const rz_engine *e, uint64_t deployment,
                                     size_t step, char **json)
{
    int rc = RZ_OK;
    if (json)
        *json = NULL;
    const rz__edep *d = find_dep(e, deployment, &rc);
    if (!d || !json)
        return d ? rz__error(RZ_EINVAL, "no output pointer") : rc;
    if (!d->run)
        return rz__error(RZ_ESTATE, "deployment %llu has finished",
                         (unsigned long long)deployment);
    if (step >= d->n_steps)
        return rz__error(RZ_ENOENT, "deployment %llu has no step %zu",
                         (unsigned long long)deployment, step);
    /* A for_each step's elements are left out: each of their changes
     * names the step, and the stream must stay O(changes). */
    cJSON *s = rz__run_step_json_brief(d->run, step);
    if (!s)
        return no_memory();
    const rz__ejob *j = rz__engine_job(e, d->first_job + step);
    const char *why = rz__engine_waiting_reason(j);
    bool ok = add_step_shape(s, d->flow, step) &&
              cJSON_AddStringToObject(s, "step", rz_flow_step_id(d->flow, step)) &&
              cJSON_AddNumberToObject(s, "job", (double)j->id) &&
              cJSON_AddStringToObject(s, "job_status",
                                      rz_job_state_name(j->state)) &&
              cJSON_AddNumberToObject(s, "dispatches", (double)j->attempt) &&
              (!why || cJSON_AddStringToObject(s, "waiting_reason", why));
    *json = ok ? cJSON_PrintUnformatted(s) : NULL;
    cJSON_Delete(s);
    return *json ? RZ_OK : no_memory();
}

int rz_engine_deployment_state(const rz_engine *e, uint64_t deployment, rz_run_state *out)
{
    int rc = RZ_OK;
    const rz__edep *d = find_dep(e, deployment, &rc);
    if (d && out)
        *out = d->run ? rz_run_state_get(d->run) : d->state;
    return rc;
}

int rz_engine_deployment_cancel(rz_engine *e, uint64_t deployment, uint64_t now_ms)
{
    int rc;
    if (e && !e->broken && !e->in_group)
        rz__engine_evict(e);
    rz__edep *d = e ? rz__engine_dep(e, deployment) : NULL;
    if (!d && (!e || !rz__engine_dep_read(e, deployment)))
        return rz__error(RZ_ENOENT, "no deployment %llu",
                         (unsigned long long)deployment);
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    if (!d || !d->run)
        return rz__error(RZ_ESTATE, "deployment %llu has finished",
                         (unsigned long long)deployment);
    e->now = now_ms;
    rc = rz__engine_step_event_room(e);   /* recording the cancel cannot fail */
    if (rc == RZ_OK)
        rc = rz_run_cancel(d->run, now_ms);
    if (rc != RZ_OK)
        return rc;   /* nothing changed */
    d->cancelled = true;
    rz__engine_step_event_put(e, d, RZ__STEP_EVENT_CANCEL, 0, now_ms, NULL);
    for (size_t i = 0; rc == RZ_OK && i < rz_run_task_count(d->run); i++) {
        if (rz_run_step_state(d->run, i) != RZ_STEP_RUNNING ||
            (i < d->n_steps && rz__step_maps(&d->flow->steps[i])))   /* its elements */
            continue;
        rc = rz_run_fail(d->run, i, "cancelled", now_ms);
        if (rc == RZ_OK)
            rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_FAIL, i,
                                           now_ms, "cancelled");
    }
    if (rc != RZ_OK) {
        /* A running step's stop was not recorded: memory is ahead of the
         * store, whose last commit a reopen restores (and the cancel is
         * asked again). */
        e->broken = true;
        return rc;
    }
    rc = rz__engine_dep_advance(e, d, now_ms);
    int crc = rz__engine_commit_call(e, RZ_OK);
    return rc != RZ_OK ? rc : crc;
}

/* Where two texts part, for the error. */
static size_t parted_at(const char *a, const char *b)
{
    size_t i = 0;
    while (a[i] && a[i] == b[i])
        i++;
    return i;
}

static int runs_equal(const rz__edep *d, const rz_run *stored)
{
    cJSON *x = rz__run_json(d->run), *y = rz__run_json(stored);
    char *a = x ? cJSON_PrintUnformatted(x) : NULL;
    char *b = y ? cJSON_PrintUnformatted(y) : NULL;
    cJSON_Delete(x);
    cJSON_Delete(y);
    int rc = !a || !b ? no_memory() : RZ_OK;
    if (rc == RZ_OK && strcmp(a, b) != 0) {
        size_t at = parted_at(a, b), from = at > 60 ? at - 60 : 0;
        rc = rz__error(RZ_EINTERNAL, "deployment %llu read back differs from "
                       "memory at byte %zu: memory ...%.120s; stored ...%.120s",
                       (unsigned long long)d->id, at, a + from, b + from);
    }
    free(a);
    free(b);
    return rc;
}

int rz__engine_dep_readback(rz_engine *e, const rz__edep *d)
{
    if (!d->run || d->dirty)
        return RZ_OK;   /* finished (its final record), or not committed */
    rz__edep t;
    memset(&t, 0, sizeof t);
    int rc = rz__engine_store_dep_read(e, d->id, &t);
    if (rc == RZ_OK && (t.n_events != d->n_events || t.n_steps != d->n_steps))
        rc = rz__error(RZ_EINTERNAL, "deployment %llu: %u events and %zu steps "
                       "stored, %u and %zu in memory", (unsigned long long)d->id,
                       t.n_events, t.n_steps, d->n_events, d->n_steps);
    if (rc == RZ_OK)
        rc = load_flow(&t.flow, e, t.text, strlen(t.text), NULL, true);
    if (rc == RZ_OK)
        rc = new_run(&t, t.created_ms);
    if (rc == RZ_OK)
        rc = rz__engine_replay(e, &t);
    if (rc == RZ_OK) {
        /* Readiness is worked out, not recorded: as the last call did. */
        rz_run_ready(t.run, e->now, NULL, 0);
        rc = runs_equal(d, t.run);
    }
    rz__engine_dep_free(&t);
    return rc;
}
