/* llm jobs (docs/llm.md): POST /api/v1/jobs {"type":"llm", "model",
 * "prompt" | "messages", "max_tokens", "temperature"} and GET
 * /api/v1/models, what the network's nodes serve and at what price.
 *
 * An llm job has no module: like an ad-hoc image it carries what the node
 * runs ({"adapter":"llm","model"}) and is matched on requirements
 * {"adapter":"llm","llm":{"model","tokens","seconds"}}: only nodes serving
 * that model, priced per 1,000 tokens or per second of the run, as each
 * node prices it. "tokens" bounds what can be billed per token: max_tokens
 * for the completion plus the prompt's bytes (no tokenizer makes more
 * tokens than bytes) and a little per message for the chat template;
 * "seconds" (the job's timeout_s) what can be billed per second. The
 * hold is those tokens at --llm-price unless the client names
 * max_cost_micros; a node asking more than the hold covers is not matched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

#define LLM_MAX_TOKENS 1000000u
#define LLM_MESSAGES_MAX 1024
#define LLM_MODEL_MAX 200u

static const char *const llm_fields[] = { "model", "prompt", "messages",
                                          "max_tokens", "temperature", "timeout_s",
                                          NULL };

bool llm_fields_elsewhere(req *q, bool llm)
{
    if (llm)
        return true;
    for (size_t i = 0; llm_fields[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(q->body, llm_fields[i])) {
            reply_error(q, RZ_EINVAL, "\"%s\" goes with \"type\": \"llm\"",
                        llm_fields[i]);
            return false;
        }
    return true;
}

/* 1..max bytes, no control character: what a node takes as a model name
 * or a role (UTF-8 is the server's check of every body). */
static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return n >= 1 && n <= max;
}

static bool model_ok(req *q, const char **model)
{
    if (!body_str(q, "model", false, model))
        return false;
    if (!*model || !printable(*model, LLM_MODEL_MAX)) {
        reply_error(q, RZ_EINVAL, "an llm job needs \"model\": 1 to %u "
                    "characters, none a control character (GET /api/v1/models "
                    "lists what is served)", LLM_MODEL_MAX);
        return false;
    }
    return true;
}

/* "prompt" or "messages" into `request`; *tokens what they weigh in tokens
 * at most (rz_llm_prompt_bound, as the llm adapter bounds it). */
static bool text_ok(req *q, cJSON *request, uint64_t *tokens)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(q->body, "prompt");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q->body, "messages"), *x;
    if (!p == !m) {
        reply_error(q, RZ_EINVAL, "an llm job has exactly one of \"prompt\" "
                    "and \"messages\"");
        return false;
    }
    if (p) {
        if (!cJSON_IsString(p) || !p->valuestring[0]) {
            reply_error(q, RZ_EINVAL, "\"prompt\" must be a non-empty string");
            return false;
        }
        *tokens = rz_llm_prompt_bound(strlen(p->valuestring), 1);
        cJSON_AddStringToObject(request, "prompt", p->valuestring);
        return true;
    }
    int n = cJSON_GetArraySize(m);
    if (!cJSON_IsArray(m) || n < 1 || n > LLM_MESSAGES_MAX) {
        reply_error(q, RZ_EINVAL, "\"messages\" must be a list of 1 to %d "
                    "messages", LLM_MESSAGES_MAX);
        return false;
    }
    cJSON *out = cJSON_AddArrayToObject(request, "messages");
    uint64_t bytes = 0;
    cJSON_ArrayForEach(x, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(x, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(x, "content");
        if (!cJSON_IsObject(x) || !cJSON_IsString(role) || !printable(role->valuestring, 32) ||
            !cJSON_IsString(content)) {
            reply_error(q, RZ_EINVAL, "each message must be {\"role\": \"...\" "
                        "(1 to 32 characters, none a control character), "
                        "\"content\": \"...\"}");
            return false;
        }
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "role", role->valuestring);
        cJSON_AddStringToObject(c, "content", content->valuestring);
        cJSON_AddItemToArray(out, c);
        bytes += strlen(content->valuestring);
    }
    *tokens = rz_llm_prompt_bound(bytes, (size_t)n);
    return true;
}

/* "timeout_s": the run time the job is priced on at most on a node priced
 * per second (1 .. RZ_LLM_MAX_SECONDS, default RZ_LLM_DEFAULT_SECONDS); the
 * node stops the generation there. */
static bool seconds_ok(req *q, uint64_t *seconds)
{
    bool have = false;
    if (!body_u64(q, "timeout_s", false, RZ_LLM_MAX_SECONDS, seconds, &have))
        return false;
    if (!have)
        *seconds = RZ_LLM_DEFAULT_SECONDS;
    if (!*seconds) {
        reply_error(q, RZ_EINVAL, "\"timeout_s\" must be at least 1");
        return false;
    }
    return true;
}

static bool numbers_ok(req *q, cJSON *request, uint64_t *max_tokens)
{
    bool have = false;
    if (!body_u64(q, "max_tokens", false, LLM_MAX_TOKENS, max_tokens, &have))
        return false;
    if (!have)
        *max_tokens = RZ_LLM_DEFAULT_MAX_TOKENS;
    if (!*max_tokens) {
        reply_error(q, RZ_EINVAL, "\"max_tokens\" must be at least 1");
        return false;
    }
    cJSON_AddNumberToObject(request, "max_tokens", (double)*max_tokens);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(q->body, "temperature");
    if (t && !(cJSON_IsNumber(t) && t->valuedouble >= 0 && t->valuedouble <= 2)) {
        reply_error(q, RZ_EINVAL, "\"temperature\" must be a number from 0 to 2");
        return false;
    }
    if (t)
        cJSON_AddNumberToObject(request, "temperature", t->valuedouble);
    return true;
}

/* The client's requirements with the llm adapter and model. */
static char *llm_reqs(const char *client_reqs, const char *model,
                      uint64_t tokens, uint64_t seconds)
{
    cJSON *r = client_reqs ? cJSON_Parse(client_reqs) : cJSON_CreateObject();
    if (!r)
        return NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(r, "adapter");
    cJSON_DeleteItemFromObjectCaseSensitive(r, "llm");
    cJSON_AddStringToObject(r, "adapter", "llm");
    cJSON *l = cJSON_AddObjectToObject(r, "llm");
    cJSON_AddStringToObject(l, "model", model);
    cJSON_AddNumberToObject(l, "tokens", (double)tokens);
    cJSON_AddNumberToObject(l, "seconds", (double)seconds);
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return text;
}

void llm_job_submit(req *q, const rz_engine_module_job *mj)
{
    const char *model = NULL;
    uint64_t prompt_tokens = 0, max_tokens = 0, seconds = 0;
    cJSON *request = cJSON_CreateObject();
    if (!model_ok(q, &model) || !text_ok(q, request, &prompt_tokens) ||
        !numbers_ok(q, request, &max_tokens) || !seconds_ok(q, &seconds)) {
        cJSON_Delete(request);
        return;
    }
    if (mj->inputs_json || mj->config_json) {
        cJSON_Delete(request);
        reply_error(q, RZ_EINVAL, "an llm job takes \"prompt\" or \"messages\", "
                    "not \"inputs\" or \"config\"");
        return;
    }
    uint64_t tokens = prompt_tokens + max_tokens;
    cJSON_AddStringToObject(request, "model", model);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "adapter", "llm");
    cJSON_AddStringToObject(x, "model", model);
    char *rq = llm_reqs(mj->requirements_json, model, tokens, seconds);
    char *rt = cJSON_PrintUnformatted(request), *ex = cJSON_PrintUnformatted(x);
    cJSON_Delete(request);
    cJSON_Delete(x);
    uint64_t price = q->o->opts.llm_price_micros ? q->o->opts.llm_price_micros
                                                 : ORCH_LLM_PRICE_MICROS;
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = mj->client;
    s.requirements_json = rq;
    s.request_json = rt;
    s.module_id = "llm";
    s.module_version = "";
    s.max_cost_micros = mj->max_cost_micros ? mj->max_cost_micros
        : (uint64_t)(((unsigned __int128)tokens * price + 999) / 1000);
    s.priority = mj->priority;
    s.queue_timeout_ms = mj->queue_timeout_ms;
    s.replicas = mj->replicas;
    s.exec_json = ex;
    uint64_t id = 0;
    int rc = rq && rt && ex ? RZ_OK : RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = rz_engine_submit(q->o->e, &s, orch_now_ms(), &id);
    cJSON_free(rq);
    cJSON_free(rt);
    cJSON_free(ex);
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_json(q, 201, job_json(q->o, id, false));
}

/* ---- GET /api/v1/models ---- */

static cJSON *model_entry(cJSON *doc, const char *name)
{
    cJSON *m;
    cJSON_ArrayForEach(m, doc)
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")), name) == 0)
            return m;
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddArrayToObject(m, "nodes");
    cJSON_AddItemToArray(doc, m);
    return m;
}

/* The price `o` sets (a model or the node's llm), its key in *key; NULL
 * when it sets none. */
static const cJSON *llm_price(const cJSON *o, const char **key)
{
    static const char *const keys[] = { "price_1k_tokens_micros", "price_second_micros" };
    for (size_t i = 0; i < 2; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsNumber(p)) {
            *key = keys[i];
            return p;
        }
    }
    return NULL;
}

/* One node's models into `models`. */
static void node_models(cJSON *models, uint64_t id, const cJSON *caps)
{
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(caps, "llm"), *m;
    static const char *const keep[] = { "size_bytes", "quantization",
        "context_length", "family", "parameters", "kind" };
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(llm, "models")) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
        if (!name || !*name)
            continue;
        cJSON *n = cJSON_CreateObject();
        cJSON_AddNumberToObject(n, "node", (double)id);
        /* A model's own price (the node's llm_model_prices or
         * llm_model_second_prices) wins over the node's; each is per 1,000
         * tokens or per second, never both (the node's caps were checked). */
        const char *key = "price_1k_tokens_micros";
        const cJSON *p = llm_price(m, &key);
        if (!p)
            p = llm_price(llm, &key);
        cJSON_AddNumberToObject(n, key, p ? p->valuedouble : 0);
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keep[k]);
            if (cJSON_IsString(v) || cJSON_IsNumber(v))
                cJSON_AddItemToObject(n, keep[k], cJSON_Duplicate(v, 0));
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(model_entry(models, name),
                                                 "nodes"), n);
    }
}

static int by_name(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(x, "name")),
                  cJSON_GetStringValue(cJSON_GetObjectItem(y, "name")));
}

void r_models(req *q)
{
    orch *o = q->o;
    cJSON *models = cJSON_CreateArray();
    uint64_t n = rz_engine_node_count(o->e);
    for (uint64_t id = 1; id <= n; id++) {
        rz_engine_node_info ni;
        char *caps = NULL;
        if (rz_engine_node_get(o->e, id, &ni) != RZ_OK || ni.state != RZ_NODE_ACTIVE ||
            rz_engine_node_caps(o->e, id, &caps) != RZ_OK)
            continue;
        cJSON *c = parse_json_text(caps);
        rz_free(caps);
        node_models(models, id, c);
        cJSON_Delete(c);
    }
    /* Sorted by name, so the answer does not depend on node order. */
    int k = cJSON_GetArraySize(models);
    cJSON **v = k ? malloc((size_t)k * sizeof *v) : NULL;
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "models");
    if (k && !v) {
        cJSON_Delete(models);
        cJSON_Delete(doc);
        reply_rz(q, RZ_ENOMEM);
        return;
    }
    for (int i = 0; i < k; i++)
        v[i] = cJSON_DetachItemFromArray(models, 0);
    if (k)   /* qsort(NULL, 0, ...) is undefined */
        qsort(v, (size_t)k, sizeof *v, by_name);
    for (int i = 0; i < k; i++)
        cJSON_AddItemToArray(arr, v[i]);
    free(v);
    cJSON_Delete(models);
    reply_json(q, 200, doc);
}
