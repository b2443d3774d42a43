/* Job routes: submit, list, get, cancel, refund. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fnmatch.h>

#include "orch.h"

#define LIST_MAX 1000

/* Whole numbers as raw JSON text: cJSON would print each double with
 * "%1.15g" and read it back to check, a hot spot of every job reply. */
static void add_u64(cJSON *o, const char *k, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    cJSON_AddRawToObject(o, k, b);
}

static void add_opt_u64(cJSON *o, const char *k, uint64_t v)
{
    if (v)
        add_u64(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

/* A replicated job's runs (docs/api.md, "Redundant execution"): on the job
 * the client submitted, "verify" and each run's node, digest and verdict;
 * on another run, the job it is a replica of. */
static void replicas_json(orch *o, cJSON *j, const rz_engine_job_info *ji)
{
    if (ji->replica_of) {
        add_u64(j, "replica_of", ji->replica_of);
        return;
    }
    if (!ji->replicas)
        return;
    rz_engine_replica_run r[RZ_ENGINE_REPLICAS_MAX];
    size_t n = rz_engine_job_replicas(o->e, ji->id, r, RZ_ENGINE_REPLICAS_MAX);
    cJSON *v = cJSON_AddObjectToObject(j, "verify");
    add_u64(v, "replicas", ji->replicas);
    cJSON *arr = cJSON_AddArrayToObject(j, "replicas");
    for (size_t i = 0; i < n && i < RZ_ENGINE_REPLICAS_MAX; i++) {
        cJSON *x = cJSON_CreateObject();
        add_u64(x, "job", r[i].job);
        add_opt_u64(x, "node", r[i].node);
        cJSON_AddStringToObject(x, "status", rz_job_state_name(r[i].state));
        if (r[i].has_digest) {
            char hex[65];
            for (int b = 0; b < 32; b++)
                snprintf(hex + 2 * b, 3, "%02x", r[i].digest[b]);
            cJSON_AddStringToObject(x, "digest", hex);
        } else {
            cJSON_AddNullToObject(x, "digest");
        }
        cJSON_AddStringToObject(x, "verdict", r[i].verdict);
        cJSON_AddBoolToObject(x, "paid", strcmp(r[i].verdict, "agreed") == 0);
        add_u64(x, "cost_micros", r[i].cost_micros);
        add_u64(x, "run_ms", r[i].run_ms);
        cJSON_AddItemToArray(arr, x);
    }
}

cJSON *job_json(orch *o, uint64_t id, bool with_log)
{
    rz_engine_job_info ji;
    if (rz_engine_job_get(o->e, id, &ji) != RZ_OK)
        return NULL;
    cJSON *j = cJSON_CreateObject();
    add_u64(j, "id", ji.id);
    cJSON_AddStringToObject(j, "status", rz_job_state_name(ji.state));
    add_u64(j, "attempt", ji.attempt);
    add_opt_u64(j, "node", ji.node);
    orch_job_attest(o, j, &ji);
    cJSON *trust = ji.node ? verify_json(o, ji.node, false) : NULL;
    if (cJSON_IsObject(trust))   /* that node's state now (docs/node.md) */
        cJSON_AddItemToObject(j, "node_verification", trust);
    else
        cJSON_Delete(trust);
    cJSON_AddStringToObject(j, "module", ji.module_id);
    cJSON_AddStringToObject(j, "version", ji.module_version);
    add_opt_u64(j, "deployment", ji.deployment);
    if (ji.step && ji.step[0])
        cJSON_AddStringToObject(j, "step", ji.step);
    else
        cJSON_AddNullToObject(j, "step");
    char prio[16];
    snprintf(prio, sizeof prio, "%d", (int)ji.priority);
    cJSON_AddRawToObject(j, "priority", prio);
    add_u64(j, "max_cost_micros", ji.max_cost_micros);
    add_u64(j, "cost_micros", ji.cost_micros);
    add_u64(j, "run_ms", ji.run_ms);
    replicas_json(o, j, &ji);
    cJSON *out = ji.outputs_json ? cJSON_Parse(ji.outputs_json) : NULL;
    cJSON_AddItemToObject(j, "outputs", out ? out : cJSON_CreateNull());
    if (ji.error)
        cJSON_AddStringToObject(j, "error", ji.error);
    else
        cJSON_AddNullToObject(j, "error");
    if (ji.waiting_reason)
        cJSON_AddStringToObject(j, "waiting_reason", ji.waiting_reason);
    else
        cJSON_AddNullToObject(j, "waiting_reason");
    cJSON *x = ji.exec_json ? cJSON_Parse(ji.exec_json) : NULL;
    const char *xa = cJSON_GetStringValue(cJSON_GetObjectItem(x, "adapter"));
    if (x && xa && strcmp(xa, "llm") == 0) {   /* an llm job: its model */
        cJSON_AddItemToObject(j, "model", cJSON_DetachItemFromObject(x, "model"));
        cJSON_Delete(x);
    } else if (x) {   /* an ad-hoc image: what runs */
        cJSON_AddItemToObject(j, "image", cJSON_DetachItemFromObject(x, "image"));
        cJSON *cmd = cJSON_DetachItemFromObject(x, "command");
        cJSON_AddItemToObject(j, "command", cmd ? cmd : cJSON_CreateNull());
        cJSON_Delete(x);
    }
    if (with_log) {   /* a running job's: what its node streamed so far */
        const char *live = orch_live_log(o, id);
        char *log = live ? NULL : auth_get_log(o, id, 0);
        if (live || log)
            cJSON_AddStringToObject(j, "log", live ? live : log);
        else
            cJSON_AddNullToObject(j, "log");
        free(log);
        /* How far the attempt's stream is, so a follower prints each line
         * once although "log" keeps only the last ORCH_LOG_MAX bytes. */
        uint32_t attempt = 0;
        uint64_t end = orch_live_taken(o, id, &attempt);
        if (live && attempt == ji.attempt)
            add_u64(j, "log_end", end);
    }
    return j;
}

/* The attempts whose logs are kept: a read of the auth store, so only for
 * a GET that names ?attempt (`job logs --follow` GETs every 200 ms). */
static void add_log_attempts(orch *o, cJSON *j, uint64_t id)
{
    uint32_t kept[RZ_AUTH_LOG_ATTEMPTS];
    size_t n = 0;
    cJSON *at = cJSON_AddArrayToObject(j, "log_attempts");
    if (at && rz_auth_log_attempts(o->auth, id, kept, RZ_AUTH_LOG_ATTEMPTS, &n) == RZ_OK)
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(at, cJSON_CreateNumber(kept[i]));
}

static bool same_id(rz_ledger_id a, rz_ledger_id b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

/* The job of the path, visible to the caller (another client's: 404). */
static bool visible_job(req *q, uint64_t *id, rz_engine_job_info *ji)
{
    if (!param_u64(q, 0, id))
        return false;
    if (rz_engine_job_get(q->o->e, *id, ji) != RZ_OK ||
        (q->who.kind != P_ADMIN && !same_id(ji->client, q->who.account))) {
        if (!reply_if_removed(q, false, *id))
            reply_error(q, RZ_ENOENT, "no job %llu", (unsigned long long)*id);
        return false;
    }
    return true;
}

/* ---- submit ---- */

static bool module_spec(req *q, const char **spec, const char **image)
{
    const char *m = NULL, *t = NULL;
    if (!body_str(q, "module", false, &m) || !body_str(q, "type", false, &t) ||
        !body_str(q, "image", false, image))
        return false;
    if ((m != NULL) + (t != NULL) + (*image != NULL) != 1) {
        reply_error(q, RZ_EINVAL, "exactly one of \"module\", \"type\" and "
                    "\"image\"");
        return false;
    }
    *spec = m ? m : t;
    if (!*image && cJSON_GetObjectItemCaseSensitive(q->body, "command")) {
        reply_error(q, RZ_EINVAL, "\"command\" goes with \"image\"");
        return false;
    }
    return true;
}

/* ---- ad-hoc images ---- */

/* rhizos-node's NODE_ADHOC_LABEL: what a node that allows ad-hoc images
 * advertises. */
#define ADHOC_LABEL "rhizos.adhoc_images"

/* The orchestrator's policy: an image runs without a module only when an
 * --allow-images glob matches it. */
static bool image_allowed(req *q, const char *image)
{
    const orch_opts *op = &q->o->opts;
    if (!op->n_allow_images) {
        reply_error(q, RZ_EDENIED, "this orchestrator runs no ad-hoc images; "
                    "its operator allows them with --allow-images PATTERN");
        return false;
    }
    for (size_t i = 0; i < op->n_allow_images; i++)
        if (fnmatch(op->allow_images[i], image, 0) == 0)
            return true;
    reply_error(q, RZ_EDENIED, "image \"%.200s\" matches no --allow-images "
                "pattern of this orchestrator", image);
    return false;
}

/* {"adapter":"docker","image","command"?} for the node, from the body. */
static char *image_exec(req *q, const char *image)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(q->body, "command");
    if (strlen(image) > 512 || !*image) {
        reply_error(q, RZ_EINVAL, "\"image\" must be 1 to 512 characters");
        return NULL;
    }
    if (cmd && (!cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) > 256)) {
        reply_error(q, RZ_EINVAL, "\"command\" must be an array of at most "
                    "256 strings");
        return NULL;
    }
    for (const cJSON *a = cmd ? cmd->child : NULL; a; a = a->next)
        if (!cJSON_IsString(a)) {
            reply_error(q, RZ_EINVAL, "\"command\" must be an array of strings");
            return NULL;
        }
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "adapter", "docker");
    cJSON_AddStringToObject(x, "image", image);
    if (cmd)
        cJSON_AddItemToObject(x, "command", cJSON_Duplicate(cmd, 1));
    char *s = cJSON_PrintUnformatted(x);
    cJSON_Delete(x);
    if (!s)
        reply_rz(q, RZ_ENOMEM);
    return s;
}

/* The job's requirements with the docker adapter; the request {inputs,
 * config}. */
static int image_job(orch *o, const rz_engine_module_job *mj, const char *exec,
                     uint64_t now, uint64_t *id)
{
    cJSON *reqs = mj->requirements_json ? cJSON_Parse(mj->requirements_json)
                                        : cJSON_CreateObject();
    cJSON *request = cJSON_CreateObject();
    cJSON *in = mj->inputs_json ? cJSON_Parse(mj->inputs_json) : NULL;
    cJSON *cfg = mj->config_json ? cJSON_Parse(mj->config_json) : NULL;
    cJSON_AddItemToObject(request, "inputs", in ? in : cJSON_CreateObject());
    cJSON_AddItemToObject(request, "config", cfg ? cfg : cJSON_CreateObject());
    cJSON_DeleteItemFromObjectCaseSensitive(reqs, "adapter");
    cJSON_AddStringToObject(reqs, "adapter", "docker");
    /* Only a node whose operator allows ad-hoc images (rhizos-node's
     * [container] allow_images) advertises this label. */
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(reqs, "labels");
    if (!cJSON_IsObject(labels)) {
        cJSON_DeleteItemFromObjectCaseSensitive(reqs, "labels");
        labels = cJSON_AddObjectToObject(reqs, "labels");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(labels, ADHOC_LABEL);
    cJSON_AddStringToObject(labels, ADHOC_LABEL, "yes");
    char *rq = cJSON_PrintUnformatted(reqs), *rt = cJSON_PrintUnformatted(request);
    cJSON_Delete(reqs);
    cJSON_Delete(request);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = mj->client;
    s.requirements_json = rq;
    s.request_json = rt;
    s.max_cost_micros = mj->max_cost_micros;
    s.priority = mj->priority;
    s.queue_timeout_ms = mj->queue_timeout_ms;
    s.replicas = mj->replicas;
    s.exec_json = exec;
    int rc = rq && rt ? RZ_OK : RZ_ENOMEM;
    if (rc == RZ_OK && !s.max_cost_micros)
        rc = rz_engine_reference_cost(o->e, rq, &s.max_cost_micros);
    if (rc == RZ_OK)
        rc = rz_engine_submit(o->e, &s, now, id);
    cJSON_free(rq);
    cJSON_free(rt);
    return rc;
}

/* "verify": {"replicas": k}, k 1..RZ_ENGINE_REPLICAS_MAX (1: one run). */
static bool verify_spec(req *q, uint32_t *replicas)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q->body, "verify");
    *replicas = 0;
    if (!v)
        return true;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(v, "replicas");
    bool only = cJSON_IsObject(v) && v->child && !v->child->next && k;
    if (!only || !cJSON_IsNumber(k) || k->valuedouble < 1 ||
        k->valuedouble > RZ_ENGINE_REPLICAS_MAX ||
        k->valuedouble != (double)(int)k->valuedouble) {
        reply_error(q, RZ_EINVAL, "\"verify\" must be {\"replicas\": k} with k "
                    "a whole number from 1 to %u", RZ_ENGINE_REPLICAS_MAX);
        return false;
    }
    *replicas = (uint32_t)k->valuedouble;
    return true;
}

/* A member of the body as JSON text for the library; NULL when absent. */
static bool member_text(const cJSON *v, char **out)
{
    *out = v ? cJSON_PrintUnformatted(v) : NULL;
    return !v || *out;
}

/* The job shape of the first node design ({"requirements": {"mcp_adapter",
 * "max_cost_cents", "currency"}, "payload": {"type", "image"}}) is not
 * taken: its money is in cents, it names no module, and guessing would
 * charge someone for what they did not ask. Say what to send instead. */
static bool refuse_seed_shape(req *q)
{
    /* (max_cost_cents is read for one release: docs/api.md, Money.) */
    static const char *const seed[] = { "mcp_adapter", "currency" };
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(q->body, "requirements");
    const char *what = cJSON_GetObjectItemCaseSensitive(q->body, "payload")
                     ? "payload" : NULL;
    for (size_t i = 0; !what && i < sizeof seed / sizeof seed[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(reqs, seed[i]))
            what = seed[i];
    if (!what)
        return false;
    reply_error(q, RZ_EINVAL, "\"%s\" is the first node design's job shape, which this "
                "API does not take; send {\"image\": \"IMAGE\", \"max_cost_micros\": N} "
                "for a container (payload.image; the adapter follows), or {\"module\": "
                "\"ID\", \"inputs\": {...}, \"max_cost_micros\": N}; amounts are "
                "integer micro-dollars (1 cent = 10000), in the account's one currency "
                "(docs/api.md, Jobs)", what);
    return true;
}

void r_job_submit(req *q)
{
    static const char *const fields[] = { "module", "type", "inputs", "config",
        "requirements", "max_cost_micros", "priority", "queue_timeout_s", "image",
        "command", "verify", "model", "prompt", "messages", "max_tokens",
        "temperature", "timeout_s", NULL };
    rz_engine_module_job job = RZ_ENGINE_MODULE_JOB_INIT;
    cJSON *inputs, *config, *reqs;
    bool have_max = false, have_qt = false;
    uint64_t qt = 0;
    const char *image = NULL;
    if (refuse_seed_shape(q) || !body_fields(q, fields) ||
        !module_spec(q, &job.module, &image) ||
        !body_u64(q, "queue_timeout_s", false, 31536000, &qt, &have_qt) ||
        !body_obj(q, "inputs", &inputs) || !body_obj(q, "config", &config) ||
        !body_obj(q, "requirements", &reqs) ||
        !body_u64(q, "max_cost_micros", false, (uint64_t)1 << 53,
                  &job.max_cost_micros, &have_max) || !quota_client_room(q, false))
        return;
    const cJSON *prio = cJSON_GetObjectItemCaseSensitive(q->body, "priority");
    double pv = cJSON_IsNumber(prio) ? prio->valuedouble : 0.5;
    if (prio && !(pv >= INT32_MIN && pv <= INT32_MAX && pv == (double)(int64_t)pv)) {
        reply_error(q, RZ_EINVAL, "\"priority\" must be a 32-bit whole number");
        return;
    }
    if (have_max && !job.max_cost_micros) {
        reply_error(q, RZ_EINVAL, "\"max_cost_micros\" must be at least 1");
        return;
    }
    if (have_qt && !qt) {
        reply_error(q, RZ_EINVAL, "\"queue_timeout_s\" must be at least 1");
        return;
    }
    if (!verify_spec(q, &job.replicas))
        return;
    job.queue_timeout_ms = qt * 1000u;
    job.client = q->who.account;
    char *exec = NULL;
    if (image && (!image_allowed(q, image) || !(exec = image_exec(q, image))))
        return;
    job.priority = prio ? (int32_t)pv : 0;
    const char *type = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(q->body, "type"));
    bool llm = type && strcmp(type, "llm") == 0;
    if (!llm_fields_elsewhere(q, llm))
        return;
    char *in = NULL, *cfg = NULL, *rq = NULL;
    uint64_t id = 0;
    int rc = member_text(inputs, &in) && member_text(config, &cfg) &&
             member_text(reqs, &rq) ? RZ_OK : RZ_ENOMEM;
    job.inputs_json = in;
    job.config_json = cfg;
    job.requirements_json = rq;
    if (rc == RZ_OK && llm) {
        llm_job_submit(q, &job);
        free(in);
        free(cfg);
        free(rq);
        return;
    }
    if (rc == RZ_OK && exec)
        rc = image_job(q->o, &job, exec, orch_now_ms(), &id);
    else if (rc == RZ_OK)
        rc = rz_engine_submit_module(q->o->e, &job, orch_now_ms(), &id);
    cJSON_free(exec);
    free(in);
    free(cfg);
    free(rq);
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_json(q, 201, job_json(q->o, id, false));
}

/* ---- read, cancel, refund ---- */

void r_jobs_list(req *q)
{
    uint64_t limit;
    if (!query_u64(q, "limit", 100, LIST_MAX, &limit))
        return;
    uint64_t ids[LIST_MAX];
    size_t n = rz_engine_job_list(q->o->e, q->who.kind == P_ADMIN ? NULL
                                  : &q->who.account, 0, ids, (size_t)limit);
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "jobs");
    for (size_t i = 0; i < n; i++) {
        cJSON *j = job_json(q->o, ids[i], false);
        if (j)
            cJSON_AddItemToArray(arr, j);
    }
    reply_json(q, 200, doc);
}

/* ?attempt=N: "log" is that attempt's (null when not kept); ?since=MS
 * (unix ms): only its lines that arrived at or after then. */
void r_job_get(req *q)
{
    uint64_t id, attempt, since;
    rz_engine_job_info ji;
    /* UINT64_MAX, past the most allowed: ?attempt is absent. */
    if (!query_u64(q, "attempt", UINT64_MAX, UINT32_MAX, &attempt) ||
        !query_u64(q, "since", 0, (uint64_t)1 << 53, &since) ||
        !visible_job(q, &id, &ji))
        return;
    bool asked = attempt != UINT64_MAX;
    attempt = asked ? attempt : 0;
    cJSON *j = job_json(q->o, id, true);
    if (j && asked)
        add_log_attempts(q->o, j, id);
    if (j && since) {
        char *log = orch_log_since(q->o, id, (uint32_t)attempt, since);
        cJSON_DeleteItemFromObjectCaseSensitive(j, "log");
        cJSON_AddItemToObject(j, "log", log ? cJSON_CreateString(log) : cJSON_CreateNull());
        free(log);
        if (attempt) {   /* answered: that attempt's lines since */
            cJSON_DeleteItemFromObjectCaseSensitive(j, "log_end");
            reply_json(q, 200, j);
            return;
        }
    }
    uint32_t live_attempt = 0;
    (void)orch_live_taken(q->o, id, &live_attempt);
    if (j && attempt && !(orch_live_log(q->o, id) && live_attempt == attempt)) {
        char *log = auth_get_log(q->o, id, (uint32_t)attempt);
        cJSON_DeleteItemFromObjectCaseSensitive(j, "log");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "log_end");
        cJSON_AddItemToObject(j, "log", log ? cJSON_CreateString(log) : cJSON_CreateNull());
        free(log);
    }
    reply_json(q, 200, j);
}

void r_job_cancel(req *q)
{
    uint64_t id;
    rz_engine_job_info ji;
    if (!visible_job(q, &id, &ji))
        return;
    if (ji.deployment) {
        reply_error(q, RZ_ESTATE, "job %llu is a step of deployment %llu; "
                    "cancel the deployment", (unsigned long long)id,
                    (unsigned long long)ji.deployment);
        return;
    }
    int rc = rz_engine_job_cancel(q->o->e, id, orch_now_ms());
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_json(q, 200, job_json(q->o, id, false));
}

void r_job_refund(req *q)
{
    uint64_t id;
    rz_engine_job_info ji;
    if (!visible_job(q, &id, &ji))
        return;
    if (ji.state < RZ_JOB_SUCCEEDED) {
        int rc = ji.deployment ? RZ_ESTATE
                               : rz_engine_job_cancel(q->o->e, id, orch_now_ms());
        if (rc != RZ_OK) {
            if (ji.deployment)
                reply_error(q, RZ_ESTATE, "job %llu is a running step of deployment "
                            "%llu", (unsigned long long)id,
                            (unsigned long long)ji.deployment);
            else
                reply_rz(q, rc);
            return;
        }
        (void)!rz_engine_job_get(q->o->e, id, &ji);   /* exists: cancelled */
    }
    if (ji.replica_of) {   /* a replicated job's money is on its first job */
        id = ji.replica_of;
        (void)!rz_engine_job_get(q->o->e, id, &ji);   /* exists */
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "job", (double)id);
    cJSON_AddNumberToObject(doc, "refunded_micros",
                            (double)(ji.max_cost_micros - ji.cost_micros));
    cJSON_AddNumberToObject(doc, "charged_micros", (double)ji.cost_micros);
    reply_json(q, 200, doc);
}
