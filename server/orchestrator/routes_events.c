/* POST /api/v1/nodes/{id}/jobs/{job}/events: a running service's
 * readiness and events, sent by its node as they come (docs/services.md).
 *
 * The body is {attempt, ready?: true, events?: [{seq, name, data?}]}: seq
 * numbers the attempt's events from 1, and the node sends each until an
 * answer says it was taken. The engine records each (a step event, durable
 * with the call) and drops a seq it has taken already, so a retried POST
 * is taken once; the answer says how many were new. An event the engine
 * refuses (a bad name, data over the cap) is answered in "refused" and not
 * sent again; a job this node no longer runs is a 409. An event taken
 * runs the owner's flows that have an event trigger of its name
 * (docs/triggers.md, "Flow and event triggers"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

#define EVENTS_PER_POST_MAX 1024

static bool refused(cJSON *list, double seq, int rc)
{
    cJSON *x = cJSON_CreateObject();
    return x && cJSON_AddNumberToObject(x, "seq", seq) &&
           cJSON_AddStringToObject(x, "error", rz_error_last()->message) &&
           cJSON_AddStringToObject(x, "status", rz_status_name(rc)) &&
           cJSON_AddItemToArray(list, x);
}

/* Each event to the engine, in order; one it refuses is listed in `bad`.
 * RZ_EINVAL for a malformed entry, or the engine's failure: both stop. */
static int take_events(orch *o, uint64_t node, uint64_t job, uint32_t attempt,
                       const cJSON *events, cJSON *bad, size_t *taken,
                       size_t *repeats)
{
    int rc = RZ_OK;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(ev, "seq");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "name");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(ev, "id");
        double s = cJSON_GetNumberValue(seq);
        if (!cJSON_IsNumber(seq) || s < 1 || s > UINT32_MAX || s != (double)(uint32_t)s ||
            !cJSON_IsString(name) || (key && !cJSON_IsString(key))) {
            rz_error_clear();
            rc = RZ_EINVAL;
            break;
        }
        char *d = data ? cJSON_PrintUnformatted(data) : NULL;
        int repeat = 0;
        int r = data && !d ? RZ_ENOMEM
              : rz_engine_report_event(o->e, node, job, attempt,
                                       (uint32_t)s, cJSON_GetStringValue(key),
                                       name->valuestring, d,
                                       orch_now_ms(), &repeat);
        if (r == RZ_OK && !repeat)   /* once per event: a retried POST repeats */
            flows_on_service_event(o, job, name->valuestring, d);
        cJSON_free(d);
        if (r == RZ_OK) {
            *taken += !repeat;
            *repeats += repeat != 0;
        } else if (r == RZ_EINVALID || r == RZ_ETOOBIG) {
            (void)refused(bad, s, r);   /* its answer, not a failure of the POST */
        } else {
            rc = r;
            break;
        }
    }
    return rc;
}

void r_node_events(req *q)
{
    static const char *const fields[] = { "attempt", "ready", "events", NULL };
    orch *o = q->o;
    uint64_t node, job, attempt;
    if (!own_node(q, &node) || !param_u64(q, 1, &job) ||
        !body_fields(q, fields) ||
        !body_u64(q, "attempt", true, UINT32_MAX, &attempt, NULL))
        return;
    const cJSON *ready = cJSON_GetObjectItemCaseSensitive(q->body, "ready");
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(q->body, "events");
    if ((ready && !cJSON_IsBool(ready)) || (events && !cJSON_IsArray(events))) {
        reply_error(q, RZ_EINVAL, "\"ready\" is a boolean and \"events\" a list");
        return;
    }
    if (cJSON_GetArraySize(events) > EVENTS_PER_POST_MAX) {
        reply_error(q, RZ_ETOOBIG, "at most %d events a POST", EVENTS_PER_POST_MAX);
        return;
    }
    int rc = RZ_OK;
    if (cJSON_IsTrue(ready))
        rc = rz_engine_report_ready(o->e, node, job, (uint32_t)attempt, orch_now_ms());
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    size_t taken = 0, repeats = 0;
    cJSON *bad = cJSON_CreateArray();
    rc = take_events(o, node, job, (uint32_t)attempt, events, bad, &taken, &repeats);
    if (rc == RZ_EINVAL) {
        cJSON_Delete(bad);
        reply_error(q, RZ_EINVAL, "each event is {seq: 1.., name: string, data?}");
        return;
    }
    if (rc != RZ_OK) {   /* what was taken before it stays taken */
        cJSON_Delete(bad);
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddTrueToObject(doc, "accepted");
    cJSON_AddNumberToObject(doc, "taken", (double)taken);
    cJSON_AddNumberToObject(doc, "repeats", (double)repeats);
    cJSON_AddItemToObject(doc, "refused", bad);
    reply_json(q, 200, doc);
}
