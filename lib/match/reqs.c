/* Job requirements (DESIGN §4): parsing, the group signature, cost and the
 * static constraints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_impl.h"
#include "match/match_impl.h"

/* ---- Lifetime ---- */

void rz_reqs_free(rz_reqs *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->adapter);
    free(r->llm_model);
    free(r->gpu_vendor);
    free(r->region);
    rz__strv_free(&r->features);
    rz__labels_free(&r->labels);
    free(r->sig);
    cJSON_Delete(r->doc);
    free(r);
}

void rz_reqs_free_list(rz_reqs **list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        rz_reqs_free(list[i]);
    free(list);
}

const rz_reqs_info *rz_reqs_get(const rz_reqs *r)
{
    return &r->info;
}

size_t rz_reqs_label_count(const rz_reqs *r)
{
    return r->labels.n;
}

int rz_reqs_label_at(const rz_reqs *r, size_t i, const char **key, const char **value)
{
    if (i >= r->labels.n)
        return RZ_ENOENT;
    *key = r->labels.keys[i];
    *value = r->labels.vals[i];
    return RZ_OK;
}

/* ---- Parsing ---- */

static int parse_gpu(rz_reqs *r, const cJSON *req, const char *base)
{
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(req, "gpu");
    if (!g || cJSON_IsNull(g))
        return RZ_OK;
    uint64_t count = UINT64_MAX;
    if (cJSON_IsNumber(g)) {   /* "gpu": 2 as a shorthand for the count */
        int rc = rz__json_u64(req, "gpu", RZ_CAPS_MAX_GPUS, base, &count);
        r->info.gpu_count = (uint32_t)count;
        return rc;
    }
    char b[128];
    snprintf(b, sizeof b, "%s/gpu", base);
    if (!cJSON_IsObject(g))
        return rz__error_at(RZ_EINVALID, "", 0, 0, b, "%s: must be an object", b);
    const char *vendor = NULL;
    int rc = rz__json_u64(g, "count", RZ_CAPS_MAX_GPUS, b, &count);
    if (rc == RZ_OK) rc = rz__json_u64(g, "vram_mb", UINT64_C(1) << 32, b, &r->info.gpu_vram_mb);
    if (rc == RZ_OK) rc = rz__json_str(g, "vendor", b, &vendor);
    if (rc == RZ_OK)
        rc = rz__json_major_minor(g, "min_compute_capability", b, &r->info.gpu_cc_major,
                                  &r->info.gpu_cc_minor);
    if (rc == RZ_OK) rc = rz__set_str(&r->gpu_vendor, vendor);
    /* A GPU section without a count asks for one GPU. */
    r->info.gpu_count = count == UINT64_MAX ? 1 : (uint32_t)count;
    return rc;
}

static int parse_estimate(rz_reqs *r, const cJSON *req, const cJSON *job, const char *base)
{
    double secs = -1;
    const cJSON *est = NULL;
    int rc = rz__json_real(req, "estimate_seconds", 0, 1e9, base, &secs);
    if (rc == RZ_OK && secs < 0 && job && job != req)
        rc = rz__json_real(job, "estimate_seconds", 0, 1e9, "", &secs);
    if (rc == RZ_OK && secs < 0 && job && rz__json_obj(job, "estimate", "", &est) == RZ_OK && est)
        rc = rz__json_real(est, "seconds", 0, 1e9, "/estimate", &secs);
    if (rc == RZ_OK && secs > 0)
        r->info.estimate_ms = (uint64_t)ceil(secs * 1000.0);
    return rc;
}

/* After the GPU count: a GPU job asks for verified claims unless it says. */
static int parse_verified(rz_reqs *r, const cJSON *req, const char *base)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "verified");
    if (!v || cJSON_IsNull(v)) {
        r->info.verified = r->info.gpu_count > 0;
        return RZ_OK;
    }
    if (!cJSON_IsBool(v))
        return rz__json_field_error(base, "verified", "must be true or false");
    r->info.verified = cJSON_IsTrue(v);
    return RZ_OK;
}

/* "llm": {"model": NAME, "tokens": N, "seconds": S}: only nodes serving
 * NAME; priced on N tokens at most (prompt and completion) per token, on S
 * seconds at most (default RZ_LLM_DEFAULT_SECONDS) per second. */
static int parse_llm(rz_reqs *r, const cJSON *req, const char *base)
{
    const cJSON *llm = NULL;
    int rc = rz__json_obj(req, "llm", base, &llm);
    if (rc != RZ_OK || !llm)
        return rc;
    char b[128];
    const char *model = NULL;
    snprintf(b, sizeof b, "%s/llm", base);
    rc = rz__json_str(llm, "model", b, &model);
    if (rc == RZ_OK && (!model || !*model))
        rc = rz__json_field_error(b, "model", "must be a non-empty string");
    if (rc == RZ_OK)
        rc = rz__json_u64(llm, "tokens", UINT64_C(1) << 40, b, &r->llm_tokens);
    r->llm_seconds = RZ_LLM_DEFAULT_SECONDS;
    if (rc == RZ_OK)
        rc = rz__json_u64(llm, "seconds", RZ_LLM_MAX_SECONDS, b, &r->llm_seconds);
    if (rc == RZ_OK && !r->llm_seconds)
        rc = rz__json_field_error(b, "seconds", "must be at least 1");
    if (rc == RZ_OK)
        rc = rz__set_str(&r->llm_model, model);
    return rc;
}

static int parse_reqs(rz_reqs *r, const cJSON *req, const cJSON *job, const char *base)
{
    const char *adapter = NULL, *mcp = NULL, *region = NULL;
    uint64_t cores = 1, cost = UINT64_MAX;
    int rc = rz__json_str(req, "adapter", base, &adapter);
    if (rc == RZ_OK) rc = rz__json_str(req, "mcp_adapter", base, &mcp);
    if (rc == RZ_OK) rc = rz__json_u64(req, "cpu_cores", 1 << 20, base, &cores);
    if (rc == RZ_OK) rc = rz__json_strv(req, "cpu_features", base, &r->features);
    if (rc == RZ_OK)
        rc = rz__json_u64(req, "memory_mb", UINT64_C(1) << 40, base, &r->info.memory_mb);
    if (rc == RZ_OK) rc = parse_gpu(r, req, base);
    if (rc == RZ_OK)
        rc = rz__json_u64(req, "storage_gb", UINT64_C(1) << 40, base, &r->info.storage_gb);
    if (rc == RZ_OK) rc = rz__json_labels(req, "labels", base, &r->labels);
    if (rc == RZ_OK) rc = rz__json_str(req, "region", base, &region);
    if (rc == RZ_OK) rc = rz__json_real(req, "min_reputation", 0, 1, base, &r->info.min_reputation);
    if (rc == RZ_OK)
        rc = rz__json_money(req, "max_cost_micros", UINT64_C(1) << 53, base, &cost, NULL);
    if (rc == RZ_OK) rc = parse_estimate(r, req, job, base);
    if (rc == RZ_OK) rc = parse_verified(r, req, base);
    if (rc == RZ_OK) rc = parse_llm(r, req, base);
    if (rc != RZ_OK)
        return rc;
    /* The handoff's job shape names the adapter mcp_adapter, or only in
     * payload.type. */
    const cJSON *payload = job ? cJSON_GetObjectItemCaseSensitive(job, "payload") : NULL;
    const char *ptype = NULL;
    if (!adapter && !mcp && cJSON_IsObject(payload))
        rc = rz__json_str(payload, "type", "/payload", &ptype);
    if (rc == RZ_OK)
        rc = rz__set_str(&r->adapter, adapter ? adapter : mcp ? mcp : ptype);
    if (rc == RZ_OK) {
        const char *lr = rz__labels_get(&r->labels, "region");
        rc = rz__set_str(&r->region, region ? region : lr);
    }
    r->info.cpu_cores = (uint32_t)cores;
    r->info.max_cost_micros = cost;
    return rc;
}

static int parse_id(rz_reqs *r, const cJSON *job)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(job, "id");
    char buf[64];
    const char *id = NULL;
    if (cJSON_IsString(it) && strlen(it->valuestring) <= RZ__JSON_STR_MAX)
        id = it->valuestring;
    else if (cJSON_IsNumber(it) && isfinite(it->valuedouble))
        id = (snprintf(buf, sizeof buf, "%.17g", it->valuedouble), buf);
    else if (it && !cJSON_IsNull(it))
        return rz__error_at(RZ_EINVALID, "", 0, 0, "/id", "/id: must be a string");
    return rz__set_str(&r->id, id);
}

/* ---- Feature bits ----
 * CPU features the matcher tests as bits; others are compared as strings. */

static const char *const feature_names[] = {
    "sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2",
    "fma", "f16c", "bmi1", "bmi2", "aes", "pclmulqdq", "sha", "rdrand",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "vaes", "vpclmulqdq", "gfni",
    "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "fp16", "sve",
    "sve2", "crc32", "atomics", "dotprod", "i8mm", "bf16", "sha2", "sha3",
    "pmull", "fphp", "asimdhp", "sm4", "rng",
};

static int feature_bit(const char *name)
{
    for (size_t i = 0; i < RZ_ARRAY_LEN(feature_names); i++)
        if (strcmp(feature_names[i], name) == 0)
            return (int)i;
    return -1;
}

static void features_sync(rz_reqs *r)
{
    rz__strv_sort_unique(&r->features);
    r->feature_mask = 0;
    r->other_features = false;
    for (size_t i = 0; i < r->features.n; i++) {
        int bit = feature_bit(r->features.v[i]);
        if (bit >= 0)
            r->feature_mask |= UINT64_C(1) << bit;
        else
            r->other_features = true;
    }
}

/* Every constraint as text, strings length-prefixed so that no two
 * different requirement sets can print the same. */
static int make_sig(rz_reqs *r)
{
    const rz_reqs_info *i = &r->info;
    rz__buf b = {0};
    rz__buf_printf(&b, "%zu:%s|%u|%llu|%u|%llu|%zu:%s|%u.%u|%llu|%zu:%s|%.17g|%llu|%llu|%d|",
                   strlen(r->adapter), r->adapter, i->cpu_cores,
                   (unsigned long long)i->memory_mb, i->gpu_count,
                   (unsigned long long)i->gpu_vram_mb, strlen(r->gpu_vendor),
                   r->gpu_vendor, i->gpu_cc_major, i->gpu_cc_minor,
                   (unsigned long long)i->storage_gb, strlen(r->region), r->region,
                   i->min_reputation, (unsigned long long)i->max_cost_micros,
                   /* The estimate only constrains with a cost limit; the
                    * cost itself is computed per placement. */
                   (unsigned long long)(i->max_cost_micros == UINT64_MAX ? 0 : i->estimate_ms),
                   i->verified);
    if (r->llm_model)
        rz__buf_printf(&b, "m%zu:%s|%llu|%llu|", strlen(r->llm_model), r->llm_model,
                       (unsigned long long)r->llm_tokens,
                       (unsigned long long)r->llm_seconds);
    for (size_t k = 0; k < r->features.n; k++)
        rz__buf_printf(&b, "f%zu:%s", strlen(r->features.v[k]), r->features.v[k]);
    for (size_t k = 0; k < r->labels.n; k++)
        rz__buf_printf(&b, "l%zu:%s=%zu:%s", strlen(r->labels.keys[k]), r->labels.keys[k],
                       strlen(r->labels.vals[k]), r->labels.vals[k]);
    if (b.failed) {
        rz__buf_free(&b);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    r->sig = rz__buf_take(&b);
    return RZ_OK;
}

static void reqs_sync(rz_reqs *r)
{
    rz_reqs_info *i = &r->info;
    i->id = r->id;
    i->adapter = r->adapter;
    i->gpu_vendor = r->gpu_vendor;
    i->region = r->region;
    i->cpu_features = (const char *const *)r->features.v;
    i->n_cpu_features = r->features.n;
}

static int reqs_from_cjson(rz_reqs **out, const cJSON *obj, const char *base)
{
    *out = NULL;
    if (!cJSON_IsObject(obj))
        return rz__error_at(RZ_EINVALID, "", 0, 0, base,
                            "%s: a job must be a JSON object", *base ? base : "/");
    rz_reqs *r = rz__calloc(1, sizeof *r);
    if (!r)
        return rz__error(RZ_ENOMEM, "out of memory");
    const cJSON *req = obj;
    char rbase[96];
    snprintf(rbase, sizeof rbase, "%s", base);
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(obj, "requirements");
    int rc = RZ_OK;
    if (inner && !cJSON_IsNull(inner)) {
        snprintf(rbase, sizeof rbase, "%s/requirements", base);
        if (!cJSON_IsObject(inner))
            rc = rz__error_at(RZ_EINVALID, "", 0, 0, rbase, "%s: must be an object", rbase);
        req = inner;
    }
    if (rc == RZ_OK) rc = parse_id(r, obj);
    if (rc == RZ_OK) rc = rz__set_str(&r->gpu_vendor, "");
    if (rc == RZ_OK) rc = parse_reqs(r, req, obj, rbase);
    if (rc == RZ_OK) {
        features_sync(r);
        rc = make_sig(r);
    }
    if (rc == RZ_OK && !(r->doc = cJSON_Duplicate(obj, 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        rz_reqs_free(r);
        return rc;
    }
    reqs_sync(r);
    *out = r;
    return RZ_OK;
}

int rz_reqs_parse(rz_reqs **out, const char *json, size_t len)
{
    cJSON *doc;
    *out = NULL;
    int rc = rz__json_parse(&doc, json, len);
    if (rc != RZ_OK)
        return rc;
    rc = reqs_from_cjson(out, doc, "");
    cJSON_Delete(doc);
    return rc;
}

static int reqs_item(void *list, size_t i, const cJSON *item, const char *base)
{
    return reqs_from_cjson(&((rz_reqs **)list)[i], item, base);
}

static void reqs_free_list(void *list, size_t n)
{
    rz_reqs_free_list(list, n);
}

int rz_reqs_parse_list(rz_reqs ***out, size_t *count, const char *json, size_t len)
{
    void *list;
    int rc = rz__json_parse_list(&list, count, json, len, "jobs", sizeof(rz_reqs *),
                                 reqs_item, reqs_free_list);
    *out = list;
    return rc;
}

int rz_reqs_to_json(const rz_reqs *r, char **out)
{
    const rz_reqs_info *i = &r->info;
    *out = NULL;
    cJSON *o = cJSON_CreateObject(), *q = cJSON_CreateObject();
    if (!o || !q) {
        cJSON_Delete(o);
        cJSON_Delete(q);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    cJSON_AddStringToObject(o, "id", i->id);
    cJSON_AddItemToObject(o, "requirements", q);
    if (*i->adapter)
        cJSON_AddStringToObject(q, "adapter", i->adapter);
    cJSON_AddNumberToObject(q, "cpu_cores", i->cpu_cores);
    cJSON_AddItemToObject(q, "cpu_features",
        cJSON_CreateStringArray((const char *const *)r->features.v, (int)r->features.n));
    cJSON_AddNumberToObject(q, "memory_mb", (double)i->memory_mb);
    if (i->gpu_count) {
        cJSON *g = cJSON_AddObjectToObject(q, "gpu");
        char cc[32];
        cJSON_AddNumberToObject(g, "count", i->gpu_count);
        cJSON_AddNumberToObject(g, "vram_mb", (double)i->gpu_vram_mb);
        if (*i->gpu_vendor)
            cJSON_AddStringToObject(g, "vendor", i->gpu_vendor);
        snprintf(cc, sizeof cc, "%u.%u", i->gpu_cc_major, i->gpu_cc_minor);
        cJSON_AddStringToObject(g, "min_compute_capability", cc);
    }
    cJSON_AddNumberToObject(q, "storage_gb", (double)i->storage_gb);
    cJSON *l = cJSON_AddObjectToObject(q, "labels");
    for (size_t k = 0; k < r->labels.n; k++)
        cJSON_AddStringToObject(l, r->labels.keys[k], r->labels.vals[k]);
    if (*i->region)
        cJSON_AddStringToObject(q, "region", i->region);
    cJSON_AddNumberToObject(q, "min_reputation", i->min_reputation);
    if (i->max_cost_micros != UINT64_MAX)
        cJSON_AddNumberToObject(q, "max_cost_micros", (double)i->max_cost_micros);
    cJSON_AddNumberToObject(q, "estimate_seconds", (double)i->estimate_ms / 1000.0);
    if (i->verified != (i->gpu_count > 0))   /* the default is left out */
        cJSON_AddBoolToObject(q, "verified", i->verified);
    const cJSON *src = r->doc;
    const cJSON *inner = src ? cJSON_GetObjectItemCaseSensitive(src, "requirements") : NULL;
    int rc = RZ_OK;
    if (src && cJSON_IsObject(inner))
        rc = rz__json_keep_unknown(o, src);
    else if (src) {
        /* A bare requirements object: its fields go under requirements. */
        rc = rz__json_keep_unknown(q, src);
        cJSON_DeleteItemFromObjectCaseSensitive(q, "id");
    }
    char *s = rc == RZ_OK ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = s;
    return RZ_OK;
}

/* ---- Cost and static constraints ---- */

unsigned __int128 rz__match_rate(const rz_caps_info *c, const rz_reqs_info *r)
{
    typedef unsigned __int128 u128;
    return (u128)r->gpu_count * c->gpu_hour_micros * 1024 +
           (u128)r->cpu_cores * c->cpu_hour_micros * 1024 +
           (u128)r->memory_mb * c->memory_gb_hour_micros;
}

uint64_t rz__match_cost(unsigned __int128 rate, uint64_t estimate_ms)
{
    typedef unsigned __int128 u128;
    const u128 div = (u128)3600 * 1000 * 1024;
    u128 num = rate * estimate_ms;   /* rate < 2^81, ms < 2^40: fits */
    u128 micros = (num + div - 1) / div;
    return micros > UINT64_MAX ? UINT64_MAX : (uint64_t)micros;
}

/* An llm job's most on `c`: per 1,000 tokens (rounded up) or per second. */
static unsigned __int128 llm_max(const rz_caps *c, const rz_reqs *r)
{
    bool per_s = false;
    unsigned __int128 p = rz__caps_llm_price(c, r->llm_model, &per_s);
    return per_s ? p * r->llm_seconds : (p * r->llm_tokens + 999) / 1000;  /* < 2^93 */
}

unsigned __int128 rz__match_job_rate(const rz_caps *c, const rz_reqs *r)
{
    return r->llm_model ? llm_max(c, r) : rz__match_rate(rz_caps_get(c), &r->info);
}

uint64_t rz__match_job_cost(unsigned __int128 rate, const rz_reqs *r)
{
    if (!r->llm_model)
        return rz__match_cost(rate, r->info.estimate_ms);
    return rate > UINT64_MAX ? UINT64_MAX : (uint64_t)rate;
}

uint64_t rz__match_token_cost(uint64_t price_1k, uint64_t tokens)
{
    unsigned __int128 micros = ((unsigned __int128)price_1k * tokens + 999) / 1000;
    return micros > UINT64_MAX ? UINT64_MAX : (uint64_t)micros;
}

uint64_t rz__match_llm_cost(const rz_caps *c, const rz_reqs *r, uint64_t tokens,
                            uint64_t run_ms)
{
    bool per_s = false;
    unsigned __int128 p = rz__caps_llm_price(c, r->llm_model, &per_s);
    uint64_t ms_max = r->llm_seconds * 1000;   /* seconds <= 86400 */
    unsigned __int128 micros = per_s
        ? (p * (run_ms < ms_max ? run_ms : ms_max) + 999) / 1000
        : (p * (tokens < r->llm_tokens ? tokens : r->llm_tokens) + 999) / 1000;
    return micros > UINT64_MAX ? UINT64_MAX : (uint64_t)micros;
}

uint64_t rz_match_cost(const rz_caps *node, const rz_reqs *reqs)
{
    return rz__match_job_cost(rz__match_job_rate(node, reqs), reqs);
}

bool rz__gpu_ok(const rz_gpu_info *g, const rz_reqs_info *r)
{
    if (g->vram_mb < r->gpu_vram_mb)
        return false;
    if (*r->gpu_vendor && strcmp(g->vendor, r->gpu_vendor) != 0)
        return false;
    if (g->cc_major != r->gpu_cc_major)
        return g->cc_major > r->gpu_cc_major;
    return g->cc_minor >= r->gpu_cc_minor;
}

uint64_t rz__caps_feature_mask(const rz_caps_info *c)
{
    uint64_t mask = 0;
    for (size_t k = 0; k < c->n_features; k++) {
        int bit = feature_bit(c->features[k]);
        if (bit >= 0)
            mask |= UINT64_C(1) << bit;
    }
    return mask;
}

bool rz__caps_list_has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static bool features_ok(const rz_caps_info *c, uint64_t mask, const rz_reqs *r)
{
    if (r->feature_mask & ~mask)
        return false;
    if (!r->other_features)
        return true;
    for (size_t i = 0; i < r->features.n; i++)
        if (!rz__caps_list_has(c->features, c->n_features, r->features.v[i]))
            return false;
    return true;
}

static bool labels_ok(const rz_caps *c, const rz_reqs *r)
{
    for (size_t i = 0; i < r->labels.n; i++) {
        const char *v = rz_caps_label(c, r->labels.keys[i]);
        if (strcmp(r->labels.keys[i], "region") == 0)
            continue;   /* compared as the region below */
        if (!v || strcmp(v, r->labels.vals[i]) != 0)
            return false;
    }
    return !*r->region || strcmp(rz_caps_get(c)->region, r->region) == 0;
}

static uint32_t capacity_cores(const rz_caps_info *c)
{
    return c->cores ? c->cores : c->threads;
}

bool rz__gpu_containers_ok(const rz_caps_info *n, const rz_reqs_info *q)
{
    return q->gpu_count == 0 || strcmp(q->adapter, "docker") != 0 ||
           n->n_runtimes == 0 ||
           rz__caps_list_has(n->runtimes, n->n_runtimes, "nvidia");
}

bool rz__match_verified(const rz_caps_info *n, const rz_reqs_info *q)
{
    uint32_t relied = RZ_CAP_CPU | RZ_CAP_MEMORY | (q->gpu_count ? RZ_CAP_GPU : 0);
    return !q->verified || !(n->unverified & relied);
}

bool rz__match_static(const rz_caps *c, uint64_t feature_mask, const rz_reqs *r)
{
    const rz_caps_info *n = rz_caps_get(c);
    const rz_reqs_info *q = &r->info;
    if (*q->adapter && !rz__caps_list_has(n->adapters, n->n_adapters, q->adapter))
        return false;
    if (r->llm_model && !rz__caps_llm_serves(c, r->llm_model))
        return false;
    if (!rz__gpu_containers_ok(n, q) || !rz__match_verified(n, q))
        return false;
    /* A wasm module runs on any CPU: its cpu_features say nothing of
     * the node's (the runtime compiles it for whatever CPU it finds). */
    bool any_cpu = strcmp(q->adapter, "wasm") == 0;
    if (n->reputation < q->min_reputation ||
        (!any_cpu && !features_ok(n, feature_mask, r)) ||
        !labels_ok(c, r))
        return false;
    if (q->max_cost_micros != UINT64_MAX &&
        rz__match_job_cost(rz__match_job_rate(c, r), r) > q->max_cost_micros)
        return false;
    return true;
}

int rz_match_fits(const rz_caps *node, const rz_reqs *reqs)
{
    const rz_caps_info *n = rz_caps_get(node);
    const rz_reqs_info *q = &reqs->info;
    if (!rz__match_static(node, rz__caps_feature_mask(n), reqs) ||
        capacity_cores(n) < q->cpu_cores || n->memory_mb < q->memory_mb ||
        n->storage_free_gb < q->storage_gb)
        return 0;
    uint32_t gpus = 0;
    for (size_t i = 0; i < n->n_gpus; i++)
        gpus += rz__gpu_ok(&n->gpus[i], q);
    return gpus >= q->gpu_count;
}

uint64_t rz_llm_prompt_bound(uint64_t text_bytes, size_t n_messages)
{
    uint64_t per = (uint64_t)n_messages * RZ_LLM_TOKENS_PER_MESSAGE;
    uint64_t n = text_bytes + per + RZ_LLM_TOKENS_OVERHEAD;
    return n < text_bytes ? UINT64_MAX : n;   /* saturated */
}
