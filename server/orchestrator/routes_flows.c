/* Flow deployment routes: deploy, list, status, live events, cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "orch.h"

#define LIST_MAX 1000

static bool same_id(rz_ledger_id a, rz_ledger_id b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static void job_money(orch *o, uint64_t job, uint64_t *held, uint64_t *charged)
{
    rz_engine_job_info ji;
    if (rz_engine_job_get(o->e, job, &ji) != RZ_OK)
        return;
    *held += ji.max_cost_micros;
    *charged += ji.cost_micros;
}

/* Held and charged micros over the deployment's steps and their for_each
 * elements (each its own job, listed in the status). */
static void step_money(orch *o, const rz_engine_deployment_info *di,
                       const cJSON *doc, uint64_t *held, uint64_t *charged)
{
    *held = *charged = 0;
    for (size_t i = 0; i < di->n_steps; i++)
        job_money(o, di->first_job + i, held, charged);
    const cJSON *s, *e;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "elements")) {
            const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, "job");
            if (cJSON_IsNumber(j))
                job_money(o, (uint64_t)j->valuedouble, held, charged);
        }
}

/* What a running deployment's for_each elements hold (those whose list was
 * known at the deploy). */
static void element_money(orch *o, uint64_t dep, uint64_t *held, uint64_t *charged)
{
    size_t n = rz_engine_deployment_element_jobs(o->e, dep, NULL, 0);
    uint64_t *el = n ? calloc(n, sizeof *el) : NULL;
    n = el ? rz_engine_deployment_element_jobs(o->e, dep, el, n) : 0;
    for (size_t k = 0; k < n; k++)
        job_money(o, el[k], held, charged);
    free(el);
}

char *flow_status_text(orch *o, uint64_t dep)
{
    rz_engine_deployment_info di;
    char *json = NULL;
    if (rz_engine_deployment_get(o->e, dep, &di) != RZ_OK ||
        rz_engine_deployment_status(o->e, dep, &json) != RZ_OK)
        return NULL;
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    if (!doc)
        return NULL;
    uint64_t held, charged;
    step_money(o, &di, doc, &held, &charged);
    cJSON_AddNumberToObject(doc, "held_micros", (double)held);
    cJSON_AddNumberToObject(doc, "charged_micros", (double)charged);
    flows_status_extra(o, dep, doc);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}

static bool visible_dep(req *q, uint64_t *id, rz_engine_deployment_info *di)
{
    if (!param_u64(q, 0, id))
        return false;
    if (rz_engine_deployment_get(q->o->e, *id, di) != RZ_OK ||
        (q->who.kind != P_ADMIN && !same_id(di->client, q->who.account))) {
        if (!reply_if_removed(q, true, *id))
            reply_error(q, RZ_ENOENT, "no deployment %llu", (unsigned long long)*id);
        return false;
    }
    return true;
}

static void reply_status(req *q, uint64_t dep)
{
    char *text = flow_status_text(q->o, dep);
    cJSON *doc = parse_json_text(text);
    free(text);
    if (doc)
        reply_json(q, 200, doc);
    else
        reply_error(q, RZ_EINTERNAL, "no status for deployment %llu",
                    (unsigned long long)dep);
}

/* ---- deploy ---- */

/* {"field","credential_id"} per credential reference of each step, from
 * the flow's canonical builder JSON; the ids not supplied go to `missing`. */
static cJSON *step_refs(const rz_flow *flow, const cJSON *supplied,
                        char *missing, size_t cap)
{
    char *json = NULL;
    size_t len = 0;
    if (rz_flow_to_json(flow, RZ_EXPORT_BUILDER, &json, &len) != RZ_OK)
        return NULL;
    cJSON *doc = cJSON_ParseWithLength(json, len);
    rz_free(json);
    cJSON *steps = cJSON_CreateObject();
    const cJSON *node;
    cJSON_ArrayForEach(node, cJSON_GetObjectItemCaseSensitive(doc, "nodes")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(node, "id"));
        const cJSON *creds = cJSON_GetObjectItemCaseSensitive(node, "credentials");
        if (!id || !cJSON_GetArraySize(creds))
            continue;
        cJSON *list = cJSON_AddArrayToObject(steps, id);
        for (const cJSON *c = creds->child; c; c = c->next) {
            const char *cid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "credentialId"));
            if (!cid)
                continue;
            if (!cJSON_GetObjectItemCaseSensitive(supplied, cid) && !missing[0])
                snprintf(missing, cap, "%s", cid);
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "field", c->string);
            cJSON_AddStringToObject(r, "credential_id", cid);
            cJSON_AddItemToArray(list, r);
        }
    }
    cJSON_Delete(doc);
    return steps;
}

static bool check_sealed(req *q, const cJSON *creds)
{
    for (const cJSON *c = creds ? creds->child : NULL; c; c = c->next) {
        size_t n = 0;
        unsigned char *raw = cJSON_IsString(c) ? b64_decode(c->valuestring, &n) : NULL;
        bool ok = raw && n > RZ_VAULT_SEAL_OVERHEAD;
        free(raw);
        if (!ok) {
            reply_error(q, RZ_EINVAL, "credential \"%.64s\" is not a base64 sealed "
                        "value", c->string);
            return false;
        }
    }
    return true;
}

/* The flow document as text: a string as it is, an object printed. */
static char *flow_text(req *q)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(q->body, "flow");
    if (cJSON_IsString(f))
        return strdup(f->valuestring);
    if (cJSON_IsObject(f))
        return cJSON_PrintUnformatted(f);
    reply_error(q, RZ_EINVAL, "\"flow\" must be a YAML or JSON text, or an object");
    return NULL;
}

/* Parse and validate as the engine will, to read the credential references
 * (and answer 422 with diagnostics before anything is held). */
static cJSON *prepare(req *q, const char *text, const cJSON *creds)
{
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = rz_flow_parse(&flow, text, strlen(text), RZ_FORMAT_AUTO, "flow", d);
    if (rc == RZ_OK)
        rc = rz_flow_validate(flow, q->o->reg, d);
    cJSON *refs = NULL;
    char missing[200] = "";
    if (rc == RZ_OK && !(refs = step_refs(flow, creds, missing, sizeof missing)))
        rc = RZ_ENOMEM;
    rz_flow_free(flow);
    if (rc == RZ_OK && missing[0]) {
        reply_error(q, RZ_EINVALID, "credential \"%s\" is referenced but not "
                    "supplied", missing);
        cJSON_Delete(refs);
        refs = NULL;
    } else if (rc == RZ_ENOMEM) {
        reply_error(q, rc, "out of memory");
    } else if (rc != RZ_OK) {
        reply_diags(q, RZ_EINVALID, d);
    }
    rz_diags_free(d);
    return refs;
}

/* 201 with the deployment, once its flow's version is recorded (the
 * flow's triggers follow that version from now on). */
static void deployed(req *q, uint64_t dep, const char *text, const cJSON *inputs,
                     const char *rtext, const cJSON *creds, const char *note, uint64_t from)
{
    orch *o = q->o;
    rz_engine_deployment_info di;
    uint64_t held = 0, charged = 0;
    if (rz_engine_deployment_get(o->e, dep, &di) == RZ_OK)
        step_money(o, &di, NULL, &held, &charged);
    element_money(o, dep, &held, &charged);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "id", (double)dep);
    cJSON_AddStringToObject(doc, "status", rz_run_state_name(di.state));
    cJSON_AddNumberToObject(doc, "held_micros", (double)held);
    if (from)
        cJSON_AddNumberToObject(doc, "resumed_from", (double)from);
    if (flows_record_deploy(o, q->who.account, text, inputs, rtext, creds, note, dep,
                            orch_now_ms(), doc) != RZ_OK) {
        (void)!rz_engine_deployment_cancel(o->e, dep, orch_now_ms());   /* just made */
        cJSON_Delete(doc);
        reply_error(q, RZ_EDB, "cannot record the flow's version");
        return;
    }
    reply_json(q, 201, doc);
}

/* The step results of the caller's own deployment `from`, as a reuse map
 * (a cache never crosses accounts); NULL: answered. */
static char *reuse_map_of(req *q, uint64_t from)
{
    rz_engine_deployment_info di;
    char *map = NULL;
    if (rz_engine_deployment_get(q->o->e, from, &di) != RZ_OK ||
        !same_id(di.client, q->who.account)) {
        reply_error(q, RZ_ENOENT, "no deployment %llu to resume from",
                    (unsigned long long)from);
        return NULL;
    }
    int rc = rz_engine_reuse_map(q->o->e, from, &map);
    if (rc == RZ_OK)   /* what the owner cleared is not reused */
        rc = flows_cache_filter(q->o, q->who.account, from, &map);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        rz_free(map);
        map = NULL;
    }
    return map;
}

/* A flow name or step id as a query value: 1-128 of A-Za-z0-9_-. */
static bool cache_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 128 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789_-") == n;
}

/* DELETE /api/v1/cache[?flow=NAME][&step=ID]: the caller's step results
 * up to now (of that flow, that step) are never reused again
 * (docs/triggers.md, "Clearing the cache"). Another account's never. */
void r_cache_clear(req *q)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(q->r));
    struct evkeyvalq qs;
    if (evhttp_parse_query_str(query ? query : "", &qs) != 0) {
        reply_error(q, RZ_EINVAL, "malformed query string");
        return;
    }
    const char *flow = evhttp_find_header(&qs, "flow"), *step = evhttp_find_header(&qs, "step");
    bool other = false;
    for (struct evkeyval *kv = qs.tqh_first; kv; kv = kv->next.tqe_next)
        other = other || (strcmp(kv->key, "flow") != 0 && strcmp(kv->key, "step") != 0);
    if (other || (flow && !cache_name_ok(flow)) || (step && !cache_name_ok(step))) {
        reply_error(q, RZ_EINVAL, "the query takes flow=NAME and step=ID, each 1-128 of "
                    "letters, digits, '_' or '-'");
        evhttp_clear_headers(&qs);
        return;
    }
    uint64_t now = orch_now_ms();
    int rc = flows_cache_clear(q->o, q->who.account, flow, step, now);
    if (rc != RZ_OK) {
        reply_error(q, rc, rc == RZ_EUNSUPPORTED ? "this orchestrator keeps no named flows"
                                                 : "cannot record the clear");
    } else {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddItemToObject(doc, "flow", flow ? cJSON_CreateString(flow) : cJSON_CreateNull());
        cJSON_AddItemToObject(doc, "step", step ? cJSON_CreateString(step) : cJSON_CreateNull());
        cJSON_AddNumberToObject(doc, "cleared_before_ms", (double)now);
        reply_json(q, 200, doc);
    }
    evhttp_clear_headers(&qs);
}

void r_flow_deploy(req *q)
{
    static const char *const fields[] = { "flow", "inputs", "credentials", "note",
                                          "resume_from", NULL };
    orch *o = q->o;
    cJSON *inputs, *creds;
    const char *note;
    uint64_t from = 0;
    char *map = NULL;
    if (!body_fields(q, fields) || !body_obj(q, "inputs", &inputs) ||
        !body_obj(q, "credentials", &creds) || !check_sealed(q, creds) ||
        !body_str(q, "note", false, &note) ||
        !body_u64(q, "resume_from", false, UINT64_MAX, &from, NULL) ||
        (from && !(map = reuse_map_of(q, from))) || !quota_client_room(q, true)) {
        free(map);
        return;
    }
    char *text = flows_expand_named(q, flow_text(q), &creds);
    if (!text || !creds_fill_stored(q, text, &creds) || !flows_deploy_check(q, text, creds)) {
        free(text);
        free(map);
        return;
    }
    cJSON *refs = prepare(q, text, creds);
    char *in = refs && inputs ? cJSON_PrintUnformatted(inputs) : NULL;
    uint64_t dep = 0;
    int rc = RZ_OK;
    rz_diags *d = NULL;
    if (refs && rz_diags_new(&d) == RZ_OK) {
        rc = rz_engine_deploy_reuse(o->e, text, strlen(text), q->who.account, in, map,
                                    orch_now_ms(), &dep, d);
        /* Flow inputs are checked after the document: their problem is
         * in rz_error_last(), not in a diagnostic. */
        if (rc == RZ_EINVALID && rz_diags_count(d) > 0)
            reply_diags(q, rc, d);
        else if (rc != RZ_OK)
            reply_rz(q, rc);
    } else if (refs) {
        reply_error(q, RZ_ENOMEM, "out of memory");
    }
    rz_diags_free(d);
    free(in);
    free(map);
    if (!refs || q->answered) {
        cJSON_Delete(refs);
        free(text);
        return;
    }
    /* Only the sealed values the flow references are kept. */
    cJSON *rec = cJSON_CreateObject();
    cJSON *sealed = cJSON_AddObjectToObject(rec, "sealed");
    for (const cJSON *s = refs->child; s; s = s->next)
        for (const cJSON *r = s->child; r; r = r->next) {
            const char *cid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "credential_id"));
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(creds, cid);
            if (!(cJSON_GetObjectItemCaseSensitive(sealed, cid) != NULL))
                cJSON_AddStringToObject(sealed, cid, v->valuestring);
        }
    cJSON_AddItemToObject(rec, "steps", refs);
    char *rtext = sealed->child ? cJSON_PrintUnformatted(rec) : NULL;
    cJSON_Delete(rec);
    if (rtext && auth_put_creds(o, dep, rtext) != RZ_OK) {
        /* Without its credentials the deployment cannot run: undo it. */
        (void)!rz_engine_deployment_cancel(o->e, dep, orch_now_ms());   /* just made */
        free(rtext);
        free(text);
        reply_error(q, RZ_EDB, "cannot store the deployment's credentials");
        return;
    }
    deployed(q, dep, text, inputs, rtext, creds, note, from);
    free(rtext);
    free(text);
}

/* ---- read, watch, cancel ---- */

void r_flows_list(req *q)
{
    uint64_t limit;
    if (!query_u64(q, "limit", 100, LIST_MAX, &limit))
        return;
    uint64_t ids[LIST_MAX];
    size_t n = rz_engine_deployment_list(q->o->e, q->who.kind == P_ADMIN ? NULL
                                         : &q->who.account, 0, ids, (size_t)limit);
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "flows");
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        if (rz_engine_deployment_status(q->o->e, ids[i], &json) != RZ_OK)
            continue;
        cJSON *st = cJSON_Parse(json);
        rz_free(json);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "id", (double)ids[i]);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "flow"));
        const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "status"));
        cJSON_AddStringToObject(f, "flow", name ? name : "");
        cJSON_AddStringToObject(f, "status", status ? status : "unknown");
        cJSON_Delete(st);
        cJSON_AddItemToArray(arr, f);
    }
    reply_json(q, 200, doc);
}

void r_flow_status(req *q)
{
    uint64_t id;
    rz_engine_deployment_info di;
    if (visible_dep(q, &id, &di))
        reply_status(q, id);
}

void r_flow_events(req *q)
{
    uint64_t id;
    rz_engine_deployment_info di;
    if (visible_dep(q, &id, &di))
        orch_watch(q, id);
}

void r_flow_cancel(req *q)
{
    uint64_t id;
    rz_engine_deployment_info di;
    if (!visible_dep(q, &id, &di))
        return;
    int rc = rz_engine_deployment_cancel(q->o->e, id, orch_now_ms());
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_status(q, id);
}

/* ---- pause, resume, approvals (docs/triggers.md) ---- */

static void pause_or_resume(req *q, int paused)
{
    uint64_t id;
    rz_engine_deployment_info di;
    if (paused && !visible_dep(q, &id, &di))
        return;
    if (!paused)
        (void)!param_u64(q, 0, &id);   /* checked by r_flow_resume */
    int rc = rz_engine_deployment_pause(q->o->e, id, paused, orch_now_ms());
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_status(q, id);
}

void r_flow_pause(req *q)
{
    pause_or_resume(q, 1);
}

/* A finished deployment run again with a step cache: its flow and inputs,
 * its version's credentials, and every step whose key matches a result
 * of it reused (docs/triggers.md, "Resume and cache"). 201 as a deploy. */
static void resume_finished(req *q, uint64_t id, const rz_engine_deployment_info *di)
{
    orch *o = q->o;
    if (q->who.kind == P_ADMIN || !same_id(di->client, q->who.account)) {
        reply_error(q, RZ_EDENIED, "only the deployment's owner can resume it (it pays)");
        return;
    }
    if (di->state == RZ_RUN_SUCCEEDED) {
        reply_error(q, RZ_ESTATE, "deployment %llu succeeded: nothing to resume",
                    (unsigned long long)id);
        return;
    }
    if (!quota_client_room(q, true))
        return;
    char *text = NULL, *in = NULL, *map = reuse_map_of(q, id);
    int rc = map ? rz_engine_deployment_flow(o->e, id, &text, &in) : RZ_OK;
    char *creds = map && rc == RZ_OK ? flows_dep_creds(o, id) : NULL;
    if (map && rc == RZ_OK && !creds)
        creds = auth_get_creds(o, id);   /* sealed for the hour: may be stale */
    uint64_t dep = 0;
    uint64_t now = orch_now_ms();
    if (map && rc == RZ_OK)
        rc = rz_engine_deploy_reuse(o->e, text, strlen(text), di->client, in, map, now,
                                    &dep, NULL);
    if (map && rc != RZ_OK) {
        reply_rz(q, rc);
    } else if (map && creds && auth_put_creds(o, dep, creds) != RZ_OK) {
        (void)!rz_engine_deployment_cancel(o->e, dep, now);   /* just made */
        reply_error(q, RZ_EDB, "cannot store the deployment's credentials");
    } else if (map) {
        cJSON *inputs = in ? cJSON_Parse(in) : NULL;
        char note[64];
        snprintf(note, sizeof note, "resume of deployment %llu", (unsigned long long)id);
        deployed(q, dep, text, inputs, creds, NULL, note, id);
        cJSON_Delete(inputs);
    }
    free(creds);
    rz_free(text);
    rz_free(in);
    free(map);
}

void r_flow_resume(req *q)
{
    uint64_t id;
    rz_engine_deployment_info di;
    if (!visible_dep(q, &id, &di))
        return;
    if (di.state == RZ_RUN_RUNNING)
        pause_or_resume(q, 0);
    else
        resume_finished(q, id, &di);
}

/* The awaiting approval entry of `step` in the status, or NULL. */
static const cJSON *awaiting_entry(const cJSON *doc, const char *step)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(doc, "awaiting_approval")) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "step"));
        if (s && strcmp(s, step) == 0)
            return w;
    }
    return NULL;
}

static bool listed_approver(const cJSON *entry, rz_ledger_id who)
{
    char hex[33];
    rz_ledger_id_format(who, hex);
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(entry, "approvers")) {
        rz_ledger_id id;
        if (cJSON_IsString(a) && (strcmp(a->valuestring, hex) == 0 ||
                                  (rz_ledger_id_parse(a->valuestring, &id) == RZ_OK &&
                                   same_id(id, who))))
            return true;
    }
    return false;
}

static bool comment_ok(const char *c)
{
    size_t n = 0;
    for (; c && c[n]; n++)
        if ((unsigned char)c[n] < 0x20 || c[n] == 0x7f)
            return false;
    return n <= 1000;
}

/* The owner, the admin or a listed approver decides an awaiting step;
 * anyone else finds no deployment (404), as for its other routes. */
static void decide(req *q, int approve)
{
    static const char *const fields[] = { "comment", NULL };
    const char *comment = NULL, *step = q->params[1];
    uint64_t id;
    if (!param_u64(q, 0, &id))
        return;
    rz_engine_deployment_info di;
    char *json = NULL;
    cJSON *doc = NULL;
    if (rz_engine_deployment_get(q->o->e, id, &di) == RZ_OK &&
        rz_engine_deployment_status(q->o->e, id, &json) == RZ_OK)
        doc = cJSON_Parse(json);
    rz_free(json);
    const cJSON *entry = doc ? awaiting_entry(doc, step) : NULL;
    bool owner = doc && same_id(di.client, q->who.account);
    bool may = doc && (q->who.kind == P_ADMIN || owner ||
                       (entry && listed_approver(entry, q->who.account)));
    char by[40];
    if (q->who.kind == P_ADMIN)
        snprintf(by, sizeof by, "admin");
    else
        rz_ledger_id_format(q->who.account, by);
    cJSON_Delete(doc);
    if (!may) {
        if (!reply_if_removed(q, true, id))
            reply_error(q, RZ_ENOENT, "no deployment %llu", (unsigned long long)id);
        return;
    }
    if (!body_fields(q, fields) || !body_str(q, "comment", false, &comment))
        return;
    if (!comment_ok(comment)) {
        reply_error(q, RZ_EINVAL, "\"comment\" must be at most 1000 bytes without "
                    "control characters");
        return;
    }
    int rc = rz_engine_deployment_approve(q->o->e, id, step, approve, by, comment,
                                          orch_now_ms());
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_status(q, id);
}

void r_flow_approve(req *q)
{
    decide(q, 1);
}

void r_flow_reject(req *q)
{
    decide(q, 0);
}
