/* Node capabilities as JSON (DESIGN §4): the node object in and out, lists
 * of nodes, and a readable summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_impl.h"

/* ---- The node object in ---- */

static int parse_gpu(rz_caps *c, const cJSON *g, const char *base)
{
    if (!cJSON_IsObject(g))
        return rz__error_at(RZ_EINVALID, "", 0, 0, base, "%s: must be an object", base);
    rz_gpu_info gi = { .utilization_pct = -1 };
    uint64_t util = UINT64_MAX;
    int rc = rz__json_str(g, "vendor", base, &gi.vendor);
    if (rc == RZ_OK) rc = rz__json_str(g, "model", base, &gi.model);
    if (rc == RZ_OK) rc = rz__json_str(g, "driver", base, &gi.driver);
    if (rc == RZ_OK) rc = rz__json_str(g, "cuda_version", base, &gi.cuda_version);
    if (rc == RZ_OK) rc = rz__json_str(g, "bus_id", base, &gi.bus_id);
    if (rc == RZ_OK) rc = rz__json_u64(g, "vram_mb", UINT64_C(1) << 32, base, &gi.vram_mb);
    if (rc == RZ_OK) rc = rz__json_u64(g, "utilization_pct", 100, base, &util);
    if (rc == RZ_OK)
        rc = rz__json_major_minor(g, "compute_capability", base, &gi.cc_major, &gi.cc_minor);
    if (rc != RZ_OK)
        return rc;
    if (util != UINT64_MAX)
        gi.utilization_pct = (int32_t)util;
    if (!gi.vendor || !*gi.vendor)
        gi.vendor = "unknown";
    rc = rz__caps_add_gpu(c, &gi);
    if (rc == RZ_EINVALID)
        rz__error_at(rc, "", 0, 0, base, "%s: %s", base, rz_error_last()->message);
    return rc;
}

static int parse_cpu(rz_caps *c, const cJSON *cpu, const char *base)
{
    char b[128];
    snprintf(b, sizeof b, "%s/cpu", base);
    const char *vendor = NULL, *model = NULL, *arch = NULL;
    uint64_t cores = 0, threads = 0, pk = 0, numa = 0, l1 = 0, l2 = 0, l3 = 0;
    const cJSON *caches = NULL;
    int rc = rz__json_str(cpu, "vendor", b, &vendor);
    if (rc == RZ_OK) rc = rz__json_str(cpu, "model", b, &model);
    if (rc == RZ_OK) rc = rz__json_str(cpu, "arch", b, &arch);
    if (rc == RZ_OK) rc = rz__json_u64(cpu, "cores", 1 << 20, b, &cores);
    if (rc == RZ_OK) rc = rz__json_u64(cpu, "threads", 1 << 22, b, &threads);
    if (rc == RZ_OK) rc = rz__json_u64(cpu, "packages", 1 << 16, b, &pk);
    if (rc == RZ_OK) rc = rz__json_u64(cpu, "numa_nodes", 1 << 16, b, &numa);
    if (rc == RZ_OK) rc = rz__json_strv(cpu, "features", b, &c->features);
    if (rc == RZ_OK) rc = rz__json_obj(cpu, "caches", b, &caches);
    if (rc == RZ_OK && caches) {
        char cb[160];
        snprintf(cb, sizeof cb, "%s/caches", b);
        rc = rz__json_u64(caches, "l1d_kb", UINT64_C(1) << 40, cb, &l1);
        if (rc == RZ_OK) rc = rz__json_u64(caches, "l2_kb", UINT64_C(1) << 40, cb, &l2);
        if (rc == RZ_OK) rc = rz__json_u64(caches, "l3_kb", UINT64_C(1) << 40, cb, &l3);
    }
    if (rc == RZ_OK) rc = rz__set_str(&c->cpu_vendor, vendor);
    if (rc == RZ_OK) rc = rz__set_str(&c->cpu_model, model);
    if (rc == RZ_OK) rc = rz__set_str(&c->arch, arch);
    c->info.cores = (uint32_t)cores;
    c->info.threads = (uint32_t)threads;
    c->info.packages = (uint32_t)pk;
    c->info.numa_nodes = (uint32_t)numa;
    c->info.l1d_kb = l1;
    c->info.l2_kb = l2;
    c->info.l3_kb = l3;
    rz__strv_sort_unique(&c->features);
    return rc;
}

static int parse_storage(rz_caps *c, const cJSON *st, const char *base)
{
    char b[128];
    snprintf(b, sizeof b, "%s/storage", base);
    const char *kind = NULL;
    uint64_t total = 0, free_gb = 0;
    int rc = rz__json_u64(st, "total_gb", UINT64_C(1) << 40, b, &total);
    if (rc == RZ_OK) rc = rz__json_u64(st, "free_gb", UINT64_C(1) << 40, b, &free_gb);
    if (rc == RZ_OK) rc = rz__json_str(st, "kind", b, &kind);
    if (rc == RZ_OK && free_gb > total && total)
        rc = rz__json_field_error(b, "free_gb", "is larger than total_gb");
    if (rc == RZ_OK) rc = rz__set_str(&c->storage_kind, kind);
    c->info.storage_total_gb = total;
    c->info.storage_free_gb = free_gb;
    return rc;
}

static int parse_market(rz_caps *c, const cJSON *o, const char *base)
{
    const cJSON *prices = NULL;
    uint64_t maxj = 0;
    const uint64_t pmax = UINT64_C(1) << 53;   /* 9 billion dollars an hour */
    int rc = rz__json_obj(o, "prices", base, &prices);
    if (rc == RZ_OK && prices) {
        char b[128];
        snprintf(b, sizeof b, "%s/prices", base);
        rc = rz__json_money(prices, "gpu_hour_micros", pmax, b, &c->info.gpu_hour_micros, NULL);
        if (rc == RZ_OK)
            rc = rz__json_money(prices, "cpu_hour_micros", pmax, b, &c->info.cpu_hour_micros, NULL);
        if (rc == RZ_OK)
            rc = rz__json_money(prices, "memory_gb_hour_micros", pmax, b,
                                &c->info.memory_gb_hour_micros, NULL);
    }
    if (rc == RZ_OK) rc = rz__json_real(o, "reputation", 0, 1, base, &c->info.reputation);
    if (rc == RZ_OK) rc = rz__json_u64(o, "max_concurrent_jobs", 1 << 24, base, &maxj);
    c->info.max_concurrent_jobs = (uint32_t)maxj;
    return rc;
}

static int parse_bench(rz_caps *c, const cJSON *o, const char *base)
{
    const cJSON *b = NULL;
    int rc = rz__json_obj(o, "benchmark", base, &b);
    if (rc != RZ_OK || !b)
        return rc;
    char p[128];
    snprintf(p, sizeof p, "%s/benchmark", base);
    rc = rz__json_real(b, "cpu_mops", 0, 1e12, p, &c->info.bench_cpu_mops);
    if (rc == RZ_OK)
        rc = rz__json_real(b, "memory_mbps", 0, 1e12, p, &c->info.bench_memory_mbps);
    c->has_benchmark = rc == RZ_OK;
    return rc;
}

/* An llm price of `o` (the node's or a model's): per 1,000 tokens or per
 * second, never both (which unit would a job be charged in?). */
static int parse_llm_price(const cJSON *o, const char *b, uint64_t *micros,
                           bool *per_second, bool *found)
{
    const uint64_t max = UINT64_C(1) << 53;
    bool tok = false, sec = false;
    uint64_t pt = 0, ps = 0;
    int rc = rz__json_money(o, "price_1k_tokens_micros", max, b, &pt, &tok);
    if (rc == RZ_OK)
        rc = rz__json_money(o, "price_second_micros", max, b, &ps, &sec);
    if (rc == RZ_OK && tok && sec)
        return rz__json_field_error(b, "price_second_micros",
                                    "and price_1k_tokens_micros are both set: "
                                    "a price is per token or per second");
    if (rc == RZ_OK && (tok || sec)) {
        *micros = sec ? ps : pt;
        *per_second = sec;
    }
    if (found)
        *found = tok || sec;
    return rc;
}

/* "llm": {"models": [{"name", ...}], "price_1k_tokens_micros" |
 * "price_second_micros"}: what an llm job is matched and priced on; the
 * rest of it is the node's to say. */
static int parse_llm(rz_caps *c, const cJSON *o, const char *base)
{
    const cJSON *llm = NULL, *models, *m;
    int rc = rz__json_obj(o, "llm", base, &llm);
    if (rc != RZ_OK || !llm)
        return rc;
    char b[128];
    snprintf(b, sizeof b, "%s/llm", base);
    rc = parse_llm_price(llm, b, &c->llm_1k_micros, &c->llm_per_second, NULL);
    models = cJSON_GetObjectItemCaseSensitive(llm, "models");
    if (rc == RZ_OK && models && !cJSON_IsNull(models) && !cJSON_IsArray(models))
        rc = rz__json_field_error(b, "models", "must be an array");
    size_t i = 0;
    if (rc != RZ_OK || !cJSON_IsArray(models))
        return rc;
    cJSON_ArrayForEach(m, models) {
        char mb[160];
        snprintf(mb, sizeof mb, "%s/models/%zu", b, i++);
        const char *name = NULL;
        rc = cJSON_IsObject(m) ? rz__json_str(m, "name", mb, &name)
                               : rz__json_field_error(b, "models",
                                                      "must hold objects");
        if (rc == RZ_OK && (!name || !*name))
            rc = rz__json_field_error(mb, "name", "must be a non-empty string");
        if (rc == RZ_OK)
            rc = rz__strv_add(&c->llm_models, name);
        bool own = false, per_second = false;
        uint64_t price = 0;
        if (rc == RZ_OK)
            rc = parse_llm_price(m, mb, &price, &per_second, &own);
        if (rc == RZ_OK && own)
            rc = rz__caps_llm_price_set(c, name, price, per_second);
        if (rc != RZ_OK)
            return rc;
    }
    rz__strv_sort_unique(&c->llm_models);
    return rc;
}

static int parse_fields(rz_caps *c, const cJSON *o, const char *base)
{
    const char *id = NULL, *region = NULL;
    const cJSON *cpu = NULL, *st = NULL;
    uint64_t mem = 0, avail = 0;
    int rc = rz__json_str(o, "id", base, &id);
    if (rc == RZ_OK) rc = rz__json_obj(o, "cpu", base, &cpu);
    if (rc == RZ_OK && cpu) rc = parse_cpu(c, cpu, base);
    if (rc == RZ_OK) rc = rz__json_u64(o, "memory_mb", UINT64_C(1) << 40, base, &mem);
    if (rc == RZ_OK)
        rc = rz__json_u64(o, "memory_available_mb", UINT64_C(1) << 40, base, &avail);
    if (rc == RZ_OK) rc = rz__json_obj(o, "storage", base, &st);
    if (rc == RZ_OK && st) rc = parse_storage(c, st, base);
    if (rc == RZ_OK) rc = rz__json_strv(o, "adapters", base, &c->adapters);
    if (rc == RZ_OK) rc = rz__json_strv(o, "runtimes", base, &c->runtimes);
    if (rc == RZ_OK) rc = rz__json_labels(o, "labels", base, &c->labels);
    if (rc == RZ_OK) rc = rz__json_str(o, "region", base, &region);
    if (rc == RZ_OK) rc = parse_market(c, o, base);
    if (rc == RZ_OK) rc = parse_bench(c, o, base);
    if (rc == RZ_OK) rc = parse_llm(c, o, base);
    const cJSON *gpus = cJSON_GetObjectItemCaseSensitive(o, "gpus");
    if (rc == RZ_OK && gpus && !cJSON_IsNull(gpus) && !cJSON_IsArray(gpus))
        rc = rz__json_field_error(base, "gpus", "must be an array");
    size_t gi = 0;
    const cJSON *g;
    if (rc == RZ_OK && cJSON_IsArray(gpus)) {
        cJSON_ArrayForEach(g, gpus) {
            char b[128];
            snprintf(b, sizeof b, "%s/gpus/%zu", base, gi++);
            if ((rc = parse_gpu(c, g, b)) != RZ_OK)
                break;
        }
    }
    if (rc == RZ_OK) rc = rz__set_str(&c->id, id);
    if (rc == RZ_OK) rc = rz__set_str(&c->region, region);
    c->info.memory_mb = mem;
    c->info.memory_available_mb = avail;
    if (rc == RZ_OK && c->adapters.n == 0)
        rc = rz__strv_add(&c->adapters, "process");
    return rc;
}

int rz__caps_from_cjson(rz_caps **out, const cJSON *obj, const char *base)
{
    *out = NULL;
    if (!cJSON_IsObject(obj))
        return rz__error_at(RZ_EINVALID, "", 0, 0, base,
                            "%s: a node must be a JSON object", *base ? base : "/");
    rz_caps *c;
    int rc = rz__caps_new(&c);
    if (rc != RZ_OK)
        return rc;
    rc = parse_fields(c, obj, base);
    if (rc == RZ_OK && !(c->doc = cJSON_Duplicate(obj, 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        rz_caps_free(c);
        return rc;
    }
    rz__caps_sync(c);
    *out = c;
    return RZ_OK;
}

int rz_caps_parse(rz_caps **out, const char *json, size_t len)
{
    cJSON *doc;
    *out = NULL;
    int rc = rz__json_parse(&doc, json, len);
    if (rc != RZ_OK)
        return rc;
    rc = rz__caps_from_cjson(out, doc, "");
    cJSON_Delete(doc);
    return rc;
}

static int caps_item(void *list, size_t i, const cJSON *item, const char *base)
{
    return rz__caps_from_cjson(&((rz_caps **)list)[i], item, base);
}

static void caps_free_list(void *list, size_t n)
{
    rz_caps_free_list(list, n);
}

int rz_caps_parse_list(rz_caps ***out, size_t *count, const char *json, size_t len)
{
    void *list;
    int rc = rz__json_parse_list(&list, count, json, len, "nodes", sizeof(rz_caps *),
                                 caps_item, caps_free_list);
    *out = list;
    return rc;
}

/* ---- The node object out ----
 * Every add is checked: a node written without its prices or adapters
 * because memory ran out would be matched and billed wrongly. */

static cJSON *chk(bool *ok, cJSON *v)
{
    if (!v)
        *ok = false;
    return v;
}

/* Add v (taking it) under k of o; v is freed when it cannot be added. */
static void add(bool *ok, cJSON *o, const char *k, cJSON *v)
{
    if (!v || !o || !cJSON_AddItemToObject(o, k, v)) {
        cJSON_Delete(v);
        *ok = false;
    }
}

static void push(bool *ok, cJSON *arr, cJSON *v)
{
    if (!v || !arr || !cJSON_AddItemToArray(arr, v)) {
        cJSON_Delete(v);
        *ok = false;
    }
}

static cJSON *strv_json(const rz__strv *s)
{
    return cJSON_CreateStringArray((const char *const *)s->v, (int)s->n);
}

static cJSON *gpu_json(bool *ok, const rz_gpu_info *g)
{
    cJSON *o = chk(ok, cJSON_CreateObject());
    char cc[32];
    snprintf(cc, sizeof cc, "%u.%u", g->cc_major, g->cc_minor);
    chk(ok, cJSON_AddStringToObject(o, "vendor", g->vendor));
    chk(ok, cJSON_AddStringToObject(o, "model", g->model));
    chk(ok, cJSON_AddNumberToObject(o, "vram_mb", (double)g->vram_mb));
    if (g->cc_major || g->cc_minor)
        chk(ok, cJSON_AddStringToObject(o, "compute_capability", cc));
    chk(ok, cJSON_AddStringToObject(o, "driver", g->driver));
    if (*g->cuda_version)
        chk(ok, cJSON_AddStringToObject(o, "cuda_version", g->cuda_version));
    if (*g->bus_id)
        chk(ok, cJSON_AddStringToObject(o, "bus_id", g->bus_id));
    if (g->utilization_pct >= 0)
        chk(ok, cJSON_AddNumberToObject(o, "utilization_pct", g->utilization_pct));
    return o;
}

static cJSON *cpu_json(bool *ok, const rz_caps *c)
{
    const rz_caps_info *i = &c->info;
    cJSON *o = chk(ok, cJSON_CreateObject());
    chk(ok, cJSON_AddStringToObject(o, "vendor", i->cpu_vendor));
    chk(ok, cJSON_AddStringToObject(o, "model", i->cpu_model));
    if (*i->arch)
        chk(ok, cJSON_AddStringToObject(o, "arch", i->arch));
    chk(ok, cJSON_AddNumberToObject(o, "cores", i->cores));
    chk(ok, cJSON_AddNumberToObject(o, "threads", i->threads));
    if (i->packages)
        chk(ok, cJSON_AddNumberToObject(o, "packages", i->packages));
    if (i->numa_nodes)
        chk(ok, cJSON_AddNumberToObject(o, "numa_nodes", i->numa_nodes));
    if (i->l1d_kb || i->l2_kb || i->l3_kb) {
        cJSON *ca = chk(ok, cJSON_AddObjectToObject(o, "caches"));
        chk(ok, cJSON_AddNumberToObject(ca, "l1d_kb", (double)i->l1d_kb));
        chk(ok, cJSON_AddNumberToObject(ca, "l2_kb", (double)i->l2_kb));
        chk(ok, cJSON_AddNumberToObject(ca, "l3_kb", (double)i->l3_kb));
    }
    if (c->features.v)   /* a list never set is left out */
        add(ok, o, "features", strv_json(&c->features));
    return o;
}

static cJSON *caps_json(bool *ok, const rz_caps *c)
{
    const rz_caps_info *i = &c->info;
    cJSON *o = chk(ok, cJSON_CreateObject());
    chk(ok, cJSON_AddStringToObject(o, "id", i->id));
    add(ok, o, "cpu", cpu_json(ok, c));
    chk(ok, cJSON_AddNumberToObject(o, "memory_mb", (double)i->memory_mb));
    if (i->memory_available_mb)
        chk(ok, cJSON_AddNumberToObject(o, "memory_available_mb", (double)i->memory_available_mb));
    cJSON *st = chk(ok, cJSON_AddObjectToObject(o, "storage"));
    chk(ok, cJSON_AddNumberToObject(st, "total_gb", (double)i->storage_total_gb));
    chk(ok, cJSON_AddNumberToObject(st, "free_gb", (double)i->storage_free_gb));
    chk(ok, cJSON_AddStringToObject(st, "kind", i->storage_kind));
    cJSON *gpus = chk(ok, cJSON_AddArrayToObject(o, "gpus"));
    for (size_t k = 0; k < i->n_gpus; k++)
        push(ok, gpus, gpu_json(ok, &i->gpus[k]));
    if (c->adapters.v)   /* a list never set is left out */
        add(ok, o, "adapters", strv_json(&c->adapters));
    if (c->runtimes.v)   /* a list never set is left out */
        add(ok, o, "runtimes", strv_json(&c->runtimes));
    cJSON *labels = chk(ok, cJSON_AddObjectToObject(o, "labels"));
    for (size_t k = 0; k < c->labels.n; k++)
        chk(ok, cJSON_AddStringToObject(labels, c->labels.keys[k], c->labels.vals[k]));
    if (*c->region)
        chk(ok, cJSON_AddStringToObject(o, "region", c->region));
    cJSON *pr = chk(ok, cJSON_AddObjectToObject(o, "prices"));
    chk(ok, cJSON_AddNumberToObject(pr, "gpu_hour_micros", (double)i->gpu_hour_micros));
    chk(ok, cJSON_AddNumberToObject(pr, "cpu_hour_micros", (double)i->cpu_hour_micros));
    chk(ok, cJSON_AddNumberToObject(pr, "memory_gb_hour_micros", (double)i->memory_gb_hour_micros));
    chk(ok, cJSON_AddNumberToObject(o, "reputation", i->reputation));
    chk(ok, cJSON_AddNumberToObject(o, "max_concurrent_jobs", i->max_concurrent_jobs));
    if (c->has_benchmark) {
        cJSON *b = chk(ok, cJSON_AddObjectToObject(o, "benchmark"));
        chk(ok, cJSON_AddNumberToObject(b, "cpu_mops", i->bench_cpu_mops));
        chk(ok, cJSON_AddNumberToObject(b, "memory_mbps", i->bench_memory_mbps));
    }
    return o;
}

int rz_caps_to_json(const rz_caps *caps, int pretty, char **out)
{
    *out = NULL;
    bool ok = true;
    cJSON *o = caps_json(&ok, caps);
    if (!ok || (caps->doc && rz__json_keep_unknown(o, caps->doc) != RZ_OK)) {
        cJSON_Delete(o);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    /* The cents spelling of a price was read into its micros field. */
    cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prices");
    static const char *const old[] = { "gpu_hour_cents", "cpu_hour_cents",
                                       "memory_gb_hour_cents" };
    for (size_t k = 0; k < sizeof old / sizeof old[0]; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(pr, old[k]);
    char *s = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    /* cJSON's allocator is malloc; rz_free is free. */
    *out = s;
    return RZ_OK;
}

/* ---- A readable summary ---- */

static void join(rz__buf *b, const char *const *v, size_t n, const char *none)
{
    if (n == 0)
        rz__buf_puts(b, none);
    for (size_t i = 0; i < n; i++) {
        if (i)
            rz__buf_puts(b, " ");
        rz__buf_puts(b, v[i]);
    }
}

int rz_caps_to_text(const rz_caps *caps, char **out)
{
    const rz_caps_info *i = &caps->info;
    rz__buf b = {0};
    rz__buf_printf(&b, "node      %s\n", i->id);
    rz__buf_printf(&b, "cpu       %s (%s, %s)\n", *i->cpu_model ? i->cpu_model : "unknown model",
                   *i->cpu_vendor ? i->cpu_vendor : "unknown vendor",
                   *i->arch ? i->arch : "unknown arch");
    rz__buf_printf(&b, "          %u package(s), %u cores, %u threads, %u NUMA node(s)\n",
                   i->packages, i->cores, i->threads, i->numa_nodes);
    if (i->l1d_kb || i->l2_kb || i->l3_kb)
        rz__buf_printf(&b, "caches    L1d %llu KiB, L2 %llu KiB, L3 %llu KiB\n",
                       (unsigned long long)i->l1d_kb, (unsigned long long)i->l2_kb,
                       (unsigned long long)i->l3_kb);
    rz__buf_puts(&b, "features  ");
    join(&b, i->features, i->n_features, "(none detected)");
    rz__buf_printf(&b, "\nmemory    %llu MB total, %llu MB available\n",
                   (unsigned long long)i->memory_mb,
                   (unsigned long long)i->memory_available_mb);
    rz__buf_printf(&b, "storage   %llu GB free of %llu GB (%s)\n",
                   (unsigned long long)i->storage_free_gb,
                   (unsigned long long)i->storage_total_gb,
                   *i->storage_kind ? i->storage_kind : "kind unknown");
    if (i->n_gpus == 0)
        rz__buf_puts(&b, "gpus      none\n");
    for (size_t k = 0; k < i->n_gpus; k++) {
        const rz_gpu_info *g = &i->gpus[k];
        rz__buf_printf(&b, "gpu %-5zu %s %s, %llu MB VRAM", k, g->vendor,
                       *g->model ? g->model : "(model unknown)",
                       (unsigned long long)g->vram_mb);
        if (g->cc_major)
            rz__buf_printf(&b, ", compute %u.%u", g->cc_major, g->cc_minor);
        if (*g->driver)
            rz__buf_printf(&b, ", driver %s", g->driver);
        if (*g->cuda_version)
            rz__buf_printf(&b, ", CUDA %s", g->cuda_version);
        rz__buf_puts(&b, "\n");
    }
    rz__buf_puts(&b, "runtimes  ");
    join(&b, i->runtimes, i->n_runtimes, "none reachable");
    rz__buf_puts(&b, "\nadapters  ");
    join(&b, i->adapters, i->n_adapters, "none");
    rz__buf_puts(&b, "\n");
    if (caps->has_benchmark)
        rz__buf_printf(&b, "benchmark %.0f Mops/s (one thread), memcpy %.0f MB/s\n",
                       i->bench_cpu_mops, i->bench_memory_mbps);
    if (b.failed) {
        rz__buf_free(&b);
        *out = NULL;
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    *out = rz__buf_take(&b);
    return RZ_OK;
}
