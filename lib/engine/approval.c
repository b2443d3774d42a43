/* Pause, resume and approval steps (docs/triggers.md).
 *
 * A paused deployment starts no step and its queued jobs go to no node
 * (queue.c holds them) until the resume: running ones (and those already
 * assigned) finish, retries wait, holds stay. The flag is part of the
 * deployment's record, so it is durable with the commit of the call that
 * set it; open holds its queued jobs again from it.
 *
 * An approval step runs no module: when the run makes it ready it is
 * started (a START event, as any step) but its job is never queued; it
 * waits until a decision. Approving succeeds it with the outputs
 * {approved, by, comment}; rejecting fails it ("rejected by ..."), so the
 * steps after it are skipped unless it says on_failure: continue. With
 * approval.timeout_s its default decision (reject unless it says approve)
 * is taken once that long has passed since it started. Each decision is a
 * recorded step event, so a reopen replays it and nothing is decided (or
 * charged) twice. Its job's hold (the reference minimum) is refunded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "flow/model.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

int rz__engine_dep_approvals(rz__edep *d)
{
    free(d->appr);
    d->appr = NULL;
    d->n_appr = 0;
    for (size_t i = 0; d->flow && i < d->flow->n_steps; i++) {
        if (!rz__step_approval(&d->flow->steps[i]))
            continue;
        size_t *a = realloc(d->appr, (d->n_appr + 1) * sizeof *a);
        if (!a)
            return no_memory();
        d->appr = a;
        d->appr[d->n_appr++] = i;
    }
    return RZ_OK;
}

bool rz__engine_is_approval(const rz__edep *d, size_t task)
{
    return d->flow && task < d->n_steps && rz__step_approval(&d->flow->steps[task]);
}

bool rz__engine_job_paused(const rz_engine *e, const rz__ejob *j)
{
    uint64_t dep = j->deployment;
    if (!dep && j->rep_head && j->rep_head != j->id) {
        const rz__ejob *h = rz__engine_job(e, j->rep_head);   /* live while undecided */
        dep = h ? h->deployment : 0;
    }
    const rz__edep *d = dep ? rz__engine_dep(e, dep) : NULL;
    return d && d->paused && !rz__engine_dep_finished(d);   /* run is NULL during open too */
}

static bool awaiting(const rz__edep *d, size_t i)
{
    return d->run && rz_run_step_state(d->run, i) == RZ_STEP_RUNNING;
}

/* When step i takes its default decision; UINT64_MAX: it waits for ever. */
static uint64_t deadline(const rz__edep *d, size_t i)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(
        rz__step_approval(&d->flow->steps[i]), "timeout_s");
    uint64_t started, ended;
    if (!cJSON_IsNumber(t) || rz_run_step_times(d->run, i, &started, &ended) != RZ_OK)
        return UINT64_MAX;
    return d->created_ms + started + (uint64_t)t->valuedouble * 1000u;
}

static bool default_approves(const rz__edep *d, size_t i)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        rz__step_approval(&d->flow->steps[i]), "default");
    return cJSON_IsString(v) && strcmp(v->valuestring, "approve") == 0;
}

uint64_t rz__engine_approvals_next(const rz__edep *d)
{
    uint64_t t = UINT64_MAX;
    for (size_t k = 0; k < d->n_appr; k++)
        if (awaiting(d, d->appr[k])) {
            uint64_t x = deadline(d, d->appr[k]);
            t = x < t ? x : t;
        }
    return t;
}

/* Settle approval step i: a recorded event, then its job released. */
static int decide(rz_engine *e, rz__edep *d, size_t i, bool approve, const char *by,
                  const char *comment, uint64_t now)
{
    rz__ejob *j = rz__engine_task_job(e, d, i);
    if (!j)
        return rz__error(RZ_EINTERNAL, "approval step %zu has no job", i);
    int rc;
    if (approve) {
        cJSON *o = cJSON_CreateObject();
        bool ok = o && cJSON_AddTrueToObject(o, "approved") &&
                  cJSON_AddStringToObject(o, "by", by) &&
                  (comment ? cJSON_AddStringToObject(o, "comment", comment)
                           : cJSON_AddNullToObject(o, "comment"));
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!text)
            return no_memory();
        rc = rz_run_succeed(d->run, i, text, now);
        if (rc == RZ_OK)
            rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_SUCCEED, i, now, text);
        if (rc == RZ_OK) {
            free(j->outputs);
            j->outputs = text;
            text = NULL;
            rz__engine_finish(e, j, RZ_JOB_SUCCEEDED, RZ__OWE_REFUND);
        }
        free(text);
        return rc;
    }
    char *why = rz__asprintf("rejected by %s%s%s", by, comment ? ": " : "",
                             comment ? comment : "");
    if (!why)
        return no_memory();
    rc = rz_run_fail(d->run, i, why, now);
    if (rc == RZ_OK)
        rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_FAIL, i, now, why);
    free(j->error);
    j->error = why;   /* the job is finished by the advance that follows */
    return rc;
}

int rz__engine_approvals_due(rz_engine *e, rz__edep *d, uint64_t now)
{
    int rc = RZ_OK;
    for (size_t k = 0; rc == RZ_OK && k < d->n_appr; k++) {
        size_t i = d->appr[k];
        if (awaiting(d, i) && deadline(d, i) <= now)
            rc = decide(e, d, i, default_approves(d, i), "timeout",
                        "no decision in time: the step's default was taken", now);
    }
    return rc;
}

bool rz__engine_dep_waits_json(const rz__edep *d, cJSON *doc)
{
    if (d->paused && !cJSON_AddTrueToObject(doc, "paused"))
        return false;
    cJSON *arr = NULL;
    for (size_t k = 0; k < d->n_appr; k++) {
        size_t i = d->appr[k];
        if (!awaiting(d, i))
            continue;
        if (!arr && !(arr = cJSON_AddArrayToObject(doc, "awaiting_approval")))
            return false;
        const cJSON *ap = rz__step_approval(&d->flow->steps[i]);
        cJSON *w = cJSON_CreateObject();
        const cJSON *who = cJSON_GetObjectItemCaseSensitive(ap, "approvers");
        uint64_t at = deadline(d, i);
        bool ok = w && cJSON_AddItemToArray(arr, w) &&
                  cJSON_AddStringToObject(w, "step", d->flow->steps[i].id) &&
                  cJSON_AddItemToObject(w, "approvers", who ? cJSON_Duplicate(who, 1)
                                                            : cJSON_CreateArray()) &&
                  cJSON_AddStringToObject(w, "default",
                                          default_approves(d, i) ? "approve" : "reject") &&
                  (at == UINT64_MAX || cJSON_AddNumberToObject(w, "deadline_ms", (double)at));
        if (!ok)
            return false;
    }
    return true;
}

uint64_t rz_engine_approval_wait(const rz_engine *e, uint64_t dep, const char **forever)
{
    const rz__edep *d = e ? rz__engine_dep(e, dep) : NULL;
    const char *none = NULL;
    if (!forever)
        forever = &none;
    *forever = NULL;
    if (!d || !d->run)
        return UINT64_MAX;
    for (size_t k = 0; k < d->n_appr && !*forever; k++)
        if (awaiting(d, d->appr[k]) && deadline(d, d->appr[k]) == UINT64_MAX)
            *forever = d->flow->steps[d->appr[k]].id;
    return rz__engine_approvals_next(d);
}

/* ---- the public calls ---- */

static rz__edep *running_dep(rz_engine *e, uint64_t id)
{
    if (e && !e->broken && !e->in_group)
        rz__engine_evict(e);
    rz__edep *d = e ? rz__engine_dep(e, id) : NULL;
    if (!d && (!e || !rz__engine_dep_read(e, id))) {
        rz__error(RZ_ENOENT, "no deployment %llu", (unsigned long long)id);
        return NULL;
    }
    if (e->broken) {
        rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
        return NULL;
    }
    if (!d || !d->run) {
        rz__error(RZ_ESTATE, "deployment %llu has finished", (unsigned long long)id);
        return NULL;
    }
    return d;
}

int rz_engine_deployment_pause(rz_engine *e, uint64_t deployment, int paused,
                               uint64_t now_ms)
{
    rz__edep *d = running_dep(e, deployment);
    if (!d)
        return rz_error_last()->code;
    e->now = now_ms;
    int rc = RZ_OK;
    if (d->paused != (paused != 0)) {
        d->paused = paused != 0;
        rz__engine_touch_dep(e, d);
        rc = rz__engine_queue_pause_sync(e);   /* its queued jobs wait too */
        if (rc == RZ_OK && !d->paused)   /* what became ready meanwhile starts now */
            rc = rz__engine_dep_advance(e, d, now_ms);
    }
    int crc = rz__engine_commit_call(e, RZ_OK);
    return rc != RZ_OK ? rc : crc;
}

int rz_engine_deployment_approve(rz_engine *e, uint64_t deployment, const char *step,
                                 int approve, const char *by, const char *comment,
                                 uint64_t now_ms)
{
    if (!step || !by || !by[0])
        return rz__error(RZ_EINVAL, "no step or no decider");
    rz__edep *d = running_dep(e, deployment);
    if (!d)
        return rz_error_last()->code;
    size_t i = 0;
    while (i < d->n_steps && strcmp(d->flow->steps[i].id, step) != 0)
        i++;
    if (i >= d->n_steps)
        return rz__error(RZ_ENOENT, "deployment %llu has no step '%.64s'",
                         (unsigned long long)deployment, step);
    if (!rz__engine_is_approval(d, i))
        return rz__error(RZ_EINVALID, "step '%.64s' is not an approval step", step);
    if (!awaiting(d, i))
        return rz__error(RZ_ESTATE, "step '%.64s' is not awaiting approval (it is %s)",
                         step, rz_step_state_name(rz_run_step_state(d->run, i)));
    e->now = now_ms;
    int rc = decide(e, d, i, approve != 0, by, comment, now_ms);
    if (rc == RZ_OK)
        rc = rz__engine_dep_advance(e, d, now_ms);
    int crc = rz__engine_commit_call(e, RZ_OK);
    return rc != RZ_OK ? rc : crc;
}
