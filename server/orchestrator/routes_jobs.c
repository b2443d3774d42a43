/* Job routes: submit, list, get, cancel, refund. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    add_u64(j, "max_cost_cents", ji.max_cost_cents);
    add_u64(j, "cost_cents", ji.cost_cents);
    add_u64(j, "run_ms", ji.run_ms);
    cJSON *out = ji.outputs_json ? cJSON_Parse(ji.outputs_json) : NULL;
    cJSON_AddItemToObject(j, "outputs", out ? out : cJSON_CreateNull());
    if (ji.error)
        cJSON_AddStringToObject(j, "error", ji.error);
    else
        cJSON_AddNullToObject(j, "error");
    if (with_log) {
        char *log = auth_get_log(o, id);
        if (log)
            cJSON_AddStringToObject(j, "log", log);
        else
            cJSON_AddNullToObject(j, "log");
        free(log);
    }
    return j;
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
        reply_error(q, RZ_ENOENT, "no job %llu", (unsigned long long)*id);
        return false;
    }
    return true;
}

/* ---- submit ---- */

static bool resolve_module(req *q, const char *spec, const rz_module **m)
{
    char id[256];
    const char *at = strchr(spec, '@');
    size_t n = at ? (size_t)(at - spec) : strlen(spec);
    if (!n || n >= sizeof id) {
        reply_error(q, RZ_EINVAL, "\"module\" must be id[@version]");
        return false;
    }
    memcpy(id, spec, n);
    id[n] = '\0';
    const char *bare = strncmp(id, "chain://", 8) == 0 ? id + 8 : id;
    int rc = rz_registry_resolve(q->o->reg, bare, at ? at + 1 : NULL, m);
    if (rc != RZ_OK) {
        reply_error(q, RZ_EMODULE, "no module %.200s in the registry", spec);
        return false;
    }
    return true;
}

typedef struct schema_ctx { char msg[400]; } schema_ctx;

static int first_error(void *ud, const rz_schema_error *err)
{
    schema_ctx *c = ud;
    snprintf(c->msg, sizeof c->msg, "config%s: %s", err->pointer, err->message);
    return 1;
}

/* What a submission needs from a module, made once per module (the
 * registry does not change while the server runs): its manifest parsed and
 * its config schema compiled. */
typedef struct mod_info {
    const rz_module *m;
    cJSON *manifest;
    rz_schema *schema;       /* NULL: no config schema (or it did not compile) */
    int schema_rc;           /* rz_schema_compile's status */
    char schema_err[512];
} mod_info;

static mod_info *mod_info_of(orch *o, const rz_module *m)
{
    for (size_t i = 0; i < o->n_mods; i++)
        if (o->mods[i].m == m)
            return &o->mods[i];
    if (o->n_mods == o->cap_mods) {
        size_t cap = o->cap_mods ? o->cap_mods * 2 : 16;
        mod_info *v = realloc(o->mods, cap * sizeof *v);
        if (!v)
            return NULL;
        o->mods = v;
        o->cap_mods = cap;
    }
    mod_info *mi = &o->mods[o->n_mods];
    memset(mi, 0, sizeof *mi);
    mi->m = m;
    char *man = NULL;
    rz_module_manifest_json(m, &man);
    mi->manifest = parse_json_text(man);
    rz_free(man);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(mi->manifest, "config");
    if (cJSON_IsObject(schema)) {
        char *stext = cJSON_PrintUnformatted(schema);
        mi->schema_rc = stext ? rz_schema_compile(&mi->schema, stext, strlen(stext))
                              : RZ_ENOMEM;
        if (mi->schema_rc != RZ_OK)
            snprintf(mi->schema_err, sizeof mi->schema_err, "%s",
                     rz_error_last()->message);
        free(stext);
    }
    o->n_mods++;
    return mi;
}

void orch_mods_free(orch *o)
{
    for (size_t i = 0; i < o->n_mods; i++) {
        cJSON_Delete(o->mods[i].manifest);
        rz_schema_free(o->mods[i].schema);
    }
    free(o->mods);
    o->mods = NULL;
    o->n_mods = o->cap_mods = 0;
}

/* config checked against the module's schema, its defaults filled in. */
static bool check_config(req *q, const mod_info *mi, const cJSON *config,
                         char **out)
{
    *out = NULL;
    char *text = cJSON_PrintUnformatted(config);
    if (!text || (!mi->schema && mi->schema_rc == RZ_OK)) {
        *out = text;
        if (!text)
            reply_error(q, RZ_ENOMEM, "out of memory");
        return text != NULL;
    }
    if (mi->schema_rc != RZ_OK) {
        free(text);
        reply_error(q, RZ_EINVALID, "config cannot be checked: %s", mi->schema_err);
        return false;
    }
    schema_ctx c = { "" };
    char *filled = NULL;
    int rc = rz_schema_validate(mi->schema, text, strlen(text), first_error, &c);
    if (rc == RZ_OK)
        rc = rz_schema_apply_defaults(mi->schema, text, strlen(text), &filled);
    free(text);
    if (rc == RZ_EINVALID)
        reply_error(q, RZ_EINVALID, "%s", c.msg);
    else if (rc != RZ_OK)
        reply_error(q, RZ_EINVALID, "config cannot be checked: %s",
                    rz_error_last()->message);
    else if (!(*out = strdup(filled)))
        reply_error(q, RZ_ENOMEM, "out of memory");
    rz_free(filled);
    return *out != NULL;
}

/* The module's requirements and estimate, overridden by the body's. */
static char *merged_requirements(const cJSON *manifest, const cJSON *given)
{
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(manifest, "requirements");
    cJSON *r = cJSON_IsObject(base) ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
    const cJSON *est = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(manifest, "estimate"),
                                           "seconds");
    if (r && cJSON_IsNumber(est) && !(cJSON_GetObjectItemCaseSensitive(r, "estimate_seconds") != NULL))
        cJSON_AddNumberToObject(r, "estimate_seconds", est->valuedouble);
    for (const cJSON *c = given ? given->child : NULL; r && c; c = c->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(r, c->string);
        cJSON_AddItemToObject(r, c->string, cJSON_Duplicate(c, 1));
    }
    char *s = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return s;
}

static bool module_spec(req *q, const char **spec)
{
    const char *m = NULL, *t = NULL;
    if (!body_str(q, "module", false, &m) || !body_str(q, "type", false, &t))
        return false;
    if (!m == !t) {
        reply_error(q, RZ_EINVAL, "exactly one of \"module\" and \"type\"");
        return false;
    }
    *spec = m ? m : t;
    return true;
}

void r_job_submit(req *q)
{
    static const char *const fields[] = { "module", "type", "inputs", "config",
        "requirements", "max_cost_cents", "priority", NULL };
    orch *o = q->o;
    const char *spec;
    cJSON *inputs, *config, *reqs;
    uint64_t max_cost = 0;
    bool have_max = false;
    const rz_module *m = NULL;
    if (!body_fields(q, fields) || !module_spec(q, &spec) ||
        !body_obj(q, "inputs", &inputs) || !body_obj(q, "config", &config) ||
        !body_obj(q, "requirements", &reqs) ||
        !body_u64(q, "max_cost_cents", false, (uint64_t)1 << 53, &max_cost, &have_max))
        return;
    const cJSON *prio = cJSON_GetObjectItemCaseSensitive(q->body, "priority");
    double pv = cJSON_IsNumber(prio) ? prio->valuedouble : 0.5;
    if (prio && !(pv >= INT32_MIN && pv <= INT32_MAX && pv == (double)(int64_t)pv)) {
        reply_error(q, RZ_EINVAL, "\"priority\" must be a 32-bit whole number");
        return;
    }
    if (have_max && !max_cost) {
        reply_error(q, RZ_EINVAL, "\"max_cost_cents\" must be at least 1");
        return;
    }
    if (!resolve_module(q, spec, &m))
        return;
    const mod_info *mi = mod_info_of(o, m);
    if (!mi) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    const cJSON *manifest = mi->manifest;
    cJSON *empty = cJSON_CreateObject();
    char *cfg = NULL, *req_text = NULL, *request = NULL;
    bool ok = check_config(q, mi, config ? config : empty, &cfg);
    if (ok && !(req_text = merged_requirements(manifest, reqs)))
        ok = (reply_error(q, RZ_ENOMEM, "out of memory"), false);
    if (ok) {
        char *in = cJSON_PrintUnformatted(inputs ? inputs : empty);
        size_t n = (in ? strlen(in) : 0) + strlen(cfg) + 32;
        request = in ? malloc(n) : NULL;
        if (request)
            snprintf(request, n, "{\"inputs\":%s,\"config\":%s}", in, cfg);
        free(in);
        if (!request)
            ok = (reply_error(q, RZ_ENOMEM, "out of memory"), false);
    }
    int rc = RZ_OK;
    if (ok && !have_max && (rc = rz_engine_reference_cost(o->e, req_text, &max_cost)) != RZ_OK)
        ok = (reply_rz(q, rc == RZ_ESYNTAX ? RZ_EINVAL : rc), false);
    uint64_t id = 0;
    if (ok) {
        rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
        s.client = q->who.account;
        s.requirements_json = req_text;
        s.module_id = rz_module_id(m);
        s.module_version = rz_module_version(m);
        s.request_json = request;
        s.max_cost_cents = max_cost;
        s.priority = prio ? (int32_t)prio->valuedouble : 0;
        rc = rz_engine_submit(o->e, &s, orch_now_ms(), &id);
        if (rc != RZ_OK)
            reply_rz(q, rc);
    }
    free(cfg);
    free(req_text);
    free(request);
    cJSON_Delete(empty);
    if (ok && rc == RZ_OK)
        reply_json(q, 201, job_json(o, id, false));
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

void r_job_get(req *q)
{
    uint64_t id;
    rz_engine_job_info ji;
    if (visible_job(q, &id, &ji))
        reply_json(q, 200, job_json(q->o, id, true));
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
    int rc = rz_engine_cancel_job(q->o->e, id, orch_now_ms());
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
                               : rz_engine_cancel_job(q->o->e, id, orch_now_ms());
        if (rc != RZ_OK) {
            if (ji.deployment)
                reply_error(q, RZ_ESTATE, "job %llu is a running step of deployment "
                            "%llu", (unsigned long long)id,
                            (unsigned long long)ji.deployment);
            else
                reply_rz(q, rc);
            return;
        }
        rz_engine_job_get(q->o->e, id, &ji);
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "job", (double)id);
    cJSON_AddNumberToObject(doc, "refunded_cents",
                            (double)(ji.max_cost_cents - ji.cost_cents));
    cJSON_AddNumberToObject(doc, "charged_cents", (double)ji.cost_cents);
    reply_json(q, 200, doc);
}
