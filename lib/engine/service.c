/* Service steps and their events (docs/services.md).
 *
 * A service is a deployment step whose job runs until it ends; its node
 * reports, while it runs, that it is ready and the events it emits. Each
 * is a step event (READY, EMIT) recorded in the call's commit like a
 * result, and applied to the run (lib/run/service.h): a replay rebuilds
 * the same listeners' runs, and the same jobs for them (fanout.c), so an
 * event is taken once and handled once per listener, whatever the crash.
 * The node numbers each attempt's events and sends each until it is
 * acknowledged: the run drops a number it has taken already (at-least-once
 * on the wire, once in the run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "flow/model.h"
#include "run/service.h"

#define EVENT_NAME_MAX 64

int rz__engine_service_apply(rz_run *run, rz__step_event_kind kind, size_t step,
                             uint64_t now, const char *text)
{
    if (kind == RZ__STEP_EVENT_READY) {
        int rc = rz__run_service_ready(run, step, now);
        return rc < 0 ? rc : RZ_OK;
    }
    cJSON *x = text ? cJSON_Parse(text) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(x, "name");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(x, "data");
    double a = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "attempt"));
    double s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "seq"));
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "key"));
    char *d = data ? cJSON_PrintUnformatted(data) : NULL;
    int rc = !cJSON_IsString(name) || !d
        ? rz__error(x ? RZ_EDB : RZ_ENOMEM, "engine store: a malformed event")
        : rz__run_emit(run, step, a >= 0 && a <= UINT32_MAX ? (uint32_t)a : 0,
                       s >= 0 && s <= UINT32_MAX ? (uint32_t)s : 0, key,
                       name->valuestring, d, now, NULL);
    cJSON_free(d);
    cJSON_Delete(x);
    /* Over a listener's cap the others took it, as when it was recorded. */
    return rc == RZ_ETOOBIG || rc == 1 ? RZ_OK : rc;
}

static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > EVENT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* The running service job `job` of a deployment, held by `node` at
 * `attempt`; NULL (error set) if there is none. */
static rz__ejob *service_job(rz_engine *e, uint64_t node, uint64_t job,
                             uint32_t attempt, rz__edep **dep)
{
    rz__ejob *j = rz__engine_job(e, job);
    rz__edep *d = j && j->deployment ? rz__engine_dep(e, j->deployment) : NULL;
    *dep = d;
    if (!j || j->state != RZ_JOB_RUNNING || j->node != node || j->attempt != attempt) {
        rz__error(RZ_ESTATE, "node %llu does not hold attempt %u of job %llu",
                  (unsigned long long)node, attempt, (unsigned long long)job);
        return NULL;
    }
    if (!d || !d->run || j->step >= d->n_steps || !d->flow->steps[j->step].service) {
        rz__error(RZ_ESTATE, "job %llu is not a service step of a running "
                  "deployment", (unsigned long long)job);
        return NULL;
    }
    return j;
}

int rz_engine_job_service(const rz_engine *e, uint64_t job)
{
    const rz__ejob *j = e ? rz__engine_job(e, job) : NULL;
    const rz__edep *d = j && j->deployment ? rz__engine_dep(e, j->deployment) : NULL;
    return d && d->run && j->step < d->n_steps && d->flow->steps[j->step].service;
}

const char *rz_engine_job_ready_check(const rz_engine *e, uint64_t job,
                                      uint32_t *timeout_s)
{
    if (timeout_s)
        *timeout_s = 0;
    if (!rz_engine_job_service(e, job))
        return NULL;
    const rz__ejob *j = rz__engine_job(e, job);
    const rz__step *s = &rz__engine_dep(e, j->deployment)->flow->steps[j->step];
    if (timeout_s && s->ready_check)
        *timeout_s = s->ready_timeout_s;
    return s->ready_check;
}

int rz_engine_report_ready(rz_engine *e, uint64_t node, uint64_t job,
                           uint32_t attempt, uint64_t now_ms)
{
    int rc = rz__engine_begin(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__edep *d;
    rz__ejob *j = service_job(e, node, job, attempt, &d);
    if (!j)
        return rz_error_last()->code;
    if ((rc = rz__engine_step_event_room(e)) != RZ_OK)
        return rc;
    rc = rz__run_service_ready(d->run, j->step, now_ms);
    if (rc <= 0)
        return rc;   /* told before (0), or refused: nothing changed */
    rz__engine_step_event_put(e, d, RZ__STEP_EVENT_READY, j->step, now_ms, NULL);
    return rz__engine_commit_call(e, rz__engine_dep_advance(e, d, now_ms));
}

static char *event_text(uint32_t attempt, uint32_t seq, const char *key,
                        const char *name, const char *data)
{
    cJSON *x = cJSON_CreateObject();
    cJSON *v = data ? cJSON_Parse(data) : cJSON_CreateNull();
    char *out = NULL;
    if (x && v && cJSON_AddNumberToObject(x, "attempt", attempt) &&
        cJSON_AddNumberToObject(x, "seq", seq) &&
        (!key || cJSON_AddStringToObject(x, "key", key)) &&
        cJSON_AddStringToObject(x, "name", name) &&
        cJSON_AddItemToObject(x, "data", v)) {
        v = NULL;
        char *t = cJSON_PrintUnformatted(x);
        out = t ? rz__strdup(t) : NULL;
        cJSON_free(t);
    }
    cJSON_Delete(v);
    cJSON_Delete(x);
    return out;
}

int rz_engine_report_event(rz_engine *e, uint64_t node, uint64_t job,
                           uint32_t attempt, uint32_t seq, const char *key,
                           const char *name, const char *data_json,
                           uint64_t now_ms, int *was_repeat)
{
    if (was_repeat)
        *was_repeat = 0;
    if (!name_ok(name))
        return rz__error(RZ_EINVALID, "an event name is 1-%d letters, digits, '_', "
                         "'-' or '.'", EVENT_NAME_MAX);
    if (key && (!*key || strlen(key) > RZ_ENGINE_EVENT_KEY_MAX))
        return rz__error(RZ_EINVALID, "event '%s': its key has 1-%u bytes", name,
                         RZ_ENGINE_EVENT_KEY_MAX);
    if (data_json && strlen(data_json) > RZ_ENGINE_EVENT_MAX)
        return rz__error(RZ_ETOOBIG, "event '%s': its data is over %u bytes", name,
                         RZ_ENGINE_EVENT_MAX);
    int rc = rz__engine_begin(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__edep *d;
    rz__ejob *j = service_job(e, node, job, attempt, &d);
    if (!j)
        return rz_error_last()->code;
    char *text = event_text(attempt, seq, key, name, data_json);
    if (!text) {
        cJSON *v = data_json ? cJSON_Parse(data_json) : NULL;
        bool bad = data_json && !v;
        cJSON_Delete(v);
        return bad ? rz__error(RZ_EINVALID, "event '%s': its data is not JSON", name)
                   : rz__error(RZ_ENOMEM, "out of memory");
    }
    if ((rc = rz__engine_step_event_room(e)) != RZ_OK) {
        free(text);
        return rc;
    }
    rc = rz__run_emit(d->run, j->step, attempt, seq, key, name, data_json, now_ms,
                      NULL);
    if (rc == 1 || (rc != RZ_OK && rc != RZ_ETOOBIG)) {
        free(text);
        if (rc == 1 && was_repeat)
            *was_repeat = 1;
        return rc == 1 ? RZ_OK : rc;
    }
    int over = rc;
    char msg[sizeof rz_error_last()->message];
    snprintf(msg, sizeof msg, "%s", over ? rz_error_last()->message : "");
    rz__engine_step_event_put(e, d, RZ__STEP_EVENT_EMIT, j->step, now_ms, text);
    rc = rz__engine_commit_call(e, rz__engine_dep_advance(e, d, now_ms));
    if (rc == RZ_OK && over)
        return rz__error(over, "%s", msg);
    return rc;
}
