/* GET /api/v1/flows/{id}/logs[?step=S]: every step's log of a deployment
 * at once (docs/api.md "Flow logs"), what `rhizos flow logs` prints.
 *
 * One entry per job, in the flow's order: a step's, then its for_each
 * elements'. A running job's log is what its node streamed so far, with
 * "log_end": the bytes of the attempt's stream taken, so a reader that
 * then follows the deployment's events (step_log, whose "offset" counts
 * the same bytes) prints each line once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "orch.h"

#define STEP_ID_MAX 256u

/* ?step=S: 1 with it copied (or none given: ""), 0 when answered 400. */
static int step_filter(req *q, char *out, size_t len)
{
    out[0] = '\0';
    const char *v;
    if (!query_get(q, "step", &v))
        return 0;
    int ok = !v || (*v && strlen(v) < len);
    if (ok && v)
        snprintf(out, len, "%s", v);
    else if (!ok)
        reply_error(q, RZ_EINVAL, "\"step\" must be a step's id (1 to %u bytes)",
                    STEP_ID_MAX - 1);
    return ok;
}

/* {"step", "element"?, "job", "attempt", "status", "log", "log_end"?}. */
static cJSON *job_entry(orch *o, const char *step, int element, uint64_t job,
                        uint64_t since)
{
    rz_engine_job_info ji;
    if (rz_engine_job_get(o->e, job, &ji) != RZ_OK)
        return NULL;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "step", step);
    if (element >= 0)
        cJSON_AddNumberToObject(e, "element", element);
    cJSON_AddNumberToObject(e, "job", (double)job);
    cJSON_AddNumberToObject(e, "attempt", ji.attempt);
    cJSON_AddStringToObject(e, "status", rz_job_state_name(ji.state));
    uint32_t attempt = 0;
    uint64_t end = orch_live_taken(o, job, &attempt);
    const char *live = since ? NULL : orch_live_log(o, job);
    /* ?since: only the lines that arrived since (log_times.c). */
    char *stored = live ? NULL : since ? orch_log_since(o, job, 0, since)
                                       : auth_get_log(o, job, 0);
    bool streaming = since ? orch_live_log(o, job) != NULL : live != NULL;
    if (live || stored)
        cJSON_AddStringToObject(e, "log", live ? live : stored);
    else
        cJSON_AddNullToObject(e, "log");
    if (streaming && attempt == ji.attempt)
        cJSON_AddNumberToObject(e, "log_end", (double)end);
    free(stored);
    return e;
}

void r_flow_logs(req *q)
{
    uint64_t dep;
    rz_engine_deployment_info di;
    char only[STEP_ID_MAX];
    if (!param_u64(q, 0, &dep))
        return;
    if (rz_engine_deployment_get(q->o->e, dep, &di) != RZ_OK ||
        (q->who.kind != P_ADMIN && (di.client.hi != q->who.account.hi ||
                                    di.client.lo != q->who.account.lo))) {
        if (!reply_if_removed(q, true, dep))
            reply_error(q, RZ_ENOENT, "no deployment %llu", (unsigned long long)dep);
        return;
    }
    uint64_t since;
    if (!step_filter(q, only, sizeof only) ||
        !query_u64(q, "since", 0, (uint64_t)1 << 53, &since))
        return;
    char *text = flow_status_text(q->o, dep);
    cJSON *st = parse_json_text(text);
    free(text);
    if (!st) {
        reply_error(q, RZ_EINTERNAL, "no status for deployment %llu",
                    (unsigned long long)dep);
        return;
    }
    cJSON *doc = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddNumberToObject(doc, "id", (double)dep);
    const char *status = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(st, "status"));
    cJSON_AddStringToObject(doc, "status", status ? status : "unknown");
    const cJSON *s;
    bool found = !only[0];
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(st, "steps")) {
        if (only[0] && strcmp(s->string, only) != 0)
            continue;
        found = true;
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(s, "job"), *el;
        cJSON *e = cJSON_IsNumber(j)
            ? job_entry(q->o, s->string, -1, (uint64_t)j->valuedouble, since) : NULL;
        if (e)
            cJSON_AddItemToArray(list, e);
        int k = 0;
        cJSON_ArrayForEach(el, cJSON_GetObjectItemCaseSensitive(s, "elements")) {
            j = cJSON_GetObjectItemCaseSensitive(el, "job");
            if (cJSON_IsNumber(j) &&
                (e = job_entry(q->o, s->string, k, (uint64_t)j->valuedouble, since)))
                cJSON_AddItemToArray(list, e);
            k++;
        }
    }
    cJSON_Delete(st);
    cJSON_AddItemToObject(doc, "steps", list);
    if (!found) {
        cJSON_Delete(doc);
        reply_error(q, RZ_ENOENT, "deployment %llu has no step \"%.200s\"",
                    (unsigned long long)dep, only);
        return;
    }
    reply_json(q, 200, doc);
}
