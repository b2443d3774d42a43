/* Node capabilities: the model, its lists, and its lifetime. */
#include <stdlib.h>
#include <string.h>

#include "hw/hw_impl.h"

/* ---- The model ---- */

int rz__caps_new(rz_caps **out)
{
    *out = NULL;
    rz_caps *c = rz__calloc(1, sizeof *c);
    if (!c)
        return rz__error(RZ_ENOMEM, "out of memory");
    char **strs[] = { &c->id, &c->cpu_vendor, &c->cpu_model, &c->arch,
                      &c->storage_kind, &c->region };
    for (size_t i = 0; i < RZ_ARRAY_LEN(strs); i++) {
        if (rz__set_str(strs[i], "") != RZ_OK) {
            rz_caps_free(c);
            return RZ_ENOMEM;
        }
    }
    c->info.reputation = 1.0;
    rz__caps_sync(c);
    *out = c;
    return RZ_OK;
}

static void gpu_free_strings(rz_gpu_info *g)
{
    free((char *)g->vendor);
    free((char *)g->model);
    free((char *)g->driver);
    free((char *)g->cuda_version);
    free((char *)g->bus_id);
}

int rz__caps_add_gpu(rz_caps *c, const rz_gpu_info *g)
{
    if (c->info.n_gpus >= RZ_CAPS_MAX_GPUS)
        return rz__error(RZ_EINVALID, "more than %d GPUs on one node",
                         RZ_CAPS_MAX_GPUS);
    rz_gpu_info *v = rz__realloc(c->gpus, (c->info.n_gpus + 1) * sizeof *v);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    c->gpus = v;
    rz_gpu_info *d = &v[c->info.n_gpus];
    *d = *g;
    d->vendor = rz__strdup(g->vendor ? g->vendor : "");
    d->model = rz__strdup(g->model ? g->model : "");
    d->driver = rz__strdup(g->driver ? g->driver : "");
    d->cuda_version = rz__strdup(g->cuda_version ? g->cuda_version : "");
    d->bus_id = rz__strdup(g->bus_id ? g->bus_id : "");
    if (!d->vendor || !d->model || !d->driver || !d->cuda_version || !d->bus_id) {
        gpu_free_strings(d);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    c->info.n_gpus++;
    rz__caps_sync(c);
    return RZ_OK;
}

void rz__caps_sync(rz_caps *c)
{
    rz_caps_info *i = &c->info;
    i->id = c->id;
    i->cpu_vendor = c->cpu_vendor;
    i->cpu_model = c->cpu_model;
    i->arch = c->arch;
    i->storage_kind = c->storage_kind;
    i->features = (const char *const *)c->features.v;
    i->n_features = c->features.n;
    i->adapters = (const char *const *)c->adapters.v;
    i->n_adapters = c->adapters.n;
    i->runtimes = (const char *const *)c->runtimes.v;
    i->n_runtimes = c->runtimes.n;
    i->gpus = c->gpus;
    const char *lr = rz__labels_get(&c->labels, "region");
    i->region = c->region[0] ? c->region : lr ? lr : c->region;
}

bool rz__caps_llm_serves(const rz_caps *c, const char *model)
{
    return rz__strv_has(&c->llm_models, model);
}

uint64_t rz__caps_llm_price(const rz_caps *c, const char *model, bool *per_second)
{
    for (size_t i = 0; model && i < c->n_llm_prices; i++)
        if (strcmp(c->llm_prices[i].model, model) == 0) {
            *per_second = c->llm_prices[i].per_second;
            return c->llm_prices[i].micros;
        }
    *per_second = c->llm_per_second;
    return c->llm_1k_micros;
}

int rz__caps_llm_price_set(rz_caps *c, const char *model, uint64_t micros,
                           bool per_second)
{
    for (size_t i = 0; i < c->n_llm_prices; i++)
        if (strcmp(c->llm_prices[i].model, model) == 0) {
            c->llm_prices[i].micros = micros;
            c->llm_prices[i].per_second = per_second;
            return RZ_OK;
        }
    struct rz__llm_price *p = rz__realloc(c->llm_prices,
                                          (c->n_llm_prices + 1) * sizeof *p);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    c->llm_prices = p;
    if (!(p[c->n_llm_prices].model = rz__strdup(model)))
        return rz__error(RZ_ENOMEM, "out of memory");
    p[c->n_llm_prices].per_second = per_second;
    p[c->n_llm_prices++].micros = micros;
    return RZ_OK;
}

void rz_caps_free(rz_caps *c)
{
    if (!c)
        return;
    free(c->id);
    free(c->cpu_vendor);
    free(c->cpu_model);
    free(c->arch);
    free(c->storage_kind);
    free(c->region);
    rz__strv_free(&c->features);
    rz__strv_free(&c->adapters);
    rz__strv_free(&c->runtimes);
    rz__strv_free(&c->llm_models);
    for (size_t i = 0; i < c->n_llm_prices; i++)
        free(c->llm_prices[i].model);
    free(c->llm_prices);
    for (size_t i = 0; i < c->info.n_gpus; i++)
        gpu_free_strings(&c->gpus[i]);
    free(c->gpus);
    rz__labels_free(&c->labels);
    cJSON_Delete(c->doc);
    free(c);
}

void rz_caps_free_list(rz_caps **list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        rz_caps_free(list[i]);
    free(list);
}

const rz_caps_info *rz_caps_get(const rz_caps *caps)
{
    return &caps->info;
}

const char *rz_caps_label(const rz_caps *caps, const char *key)
{
    return rz__labels_get(&caps->labels, key);
}

size_t rz_caps_label_count(const rz_caps *caps)
{
    return caps->labels.n;
}

int rz_caps_label_at(const rz_caps *caps, size_t i, const char **key,
                     const char **value)
{
    if (i >= caps->labels.n)
        return RZ_ENOENT;
    *key = caps->labels.keys[i];
    *value = caps->labels.vals[i];
    return RZ_OK;
}

int rz_caps_set_id(rz_caps *caps, const char *id)
{
    if (!id || strlen(id) > RZ__JSON_STR_MAX)
        return rz__error(RZ_EINVAL, "node id missing or too long");
    int rc = rz__set_str(&caps->id, id);
    rz__caps_sync(caps);
    return rc;
}

int rz_caps_set_label(rz_caps *caps, const char *key, const char *value)
{
    if (!key || !value || !*key)
        return rz__error(RZ_EINVAL, "a label needs a key and a value");
    int rc = rz__labels_set(&caps->labels, key, value);
    rz__caps_sync(caps);
    return rc;
}

/* Replace a list with copies of v[0..n); on failure the list is left as
 * it was. */
static int set_strv(rz_caps *caps, rz__strv *dst, const char *const *v,
                    size_t n)
{
    if (n && !v)
        return rz__error(RZ_EINVAL, "a list of %zu names without names", n);
    rz__strv fresh = {0};
    int rc = RZ_OK;
    for (size_t i = 0; i < n && rc == RZ_OK; i++)
        rc = v[i] && *v[i] ? rz__strv_add(&fresh, v[i])
                           : rz__error(RZ_EINVAL, "an empty name in a list");
    if (rc != RZ_OK) {
        rz__strv_free(&fresh);
        return rc;
    }
    rz__strv_sort_unique(&fresh);
    rz__strv_free(dst);
    *dst = fresh;
    rz__caps_sync(caps);
    return RZ_OK;
}

int rz_caps_set_adapters(rz_caps *caps, const char *const *adapters, size_t n)
{
    return set_strv(caps, &caps->adapters, adapters, n);
}

int rz_caps_set_runtimes(rz_caps *caps, const char *const *runtimes, size_t n)
{
    return set_strv(caps, &caps->runtimes, runtimes, n);
}

int rz_caps_set_prices(rz_caps *caps, uint64_t gpu_hour_micros,
                       uint64_t cpu_hour_micros, uint64_t memory_gb_hour_micros)
{
    caps->info.gpu_hour_micros = gpu_hour_micros;
    caps->info.cpu_hour_micros = cpu_hour_micros;
    caps->info.memory_gb_hour_micros = memory_gb_hour_micros;
    return RZ_OK;
}

int rz_caps_set_market(rz_caps *caps, double reputation,
                       uint32_t max_concurrent_jobs)
{
    if (!(reputation >= 0.0 && reputation <= 1.0))
        return rz__error(RZ_EINVAL, "reputation must be between 0 and 1");
    caps->info.reputation = reputation;
    caps->info.max_concurrent_jobs = max_concurrent_jobs;
    return RZ_OK;
}

int rz_caps_set_trust(rz_caps *caps, double reputation, uint32_t unverified)
{
    if (!(reputation >= 0.0 && reputation <= 1.0) ||
        (unverified & ~(RZ_CAP_CPU | RZ_CAP_MEMORY | RZ_CAP_GPU)))
        return rz__error(RZ_EINVAL, "reputation must be between 0 and 1 and "
                         "unverified a set of RZ_CAP_* bits");
    caps->info.reputation = reputation;
    caps->info.unverified = unverified;
    return RZ_OK;
}

int rz_caps_set_benchmark(rz_caps *caps, const rz_hw_bench *b)
{
    if (!b || !(b->cpu_mops >= 0) || !(b->memory_mbps >= 0))
        return rz__error(RZ_EINVAL, "invalid benchmark figures");
    caps->info.bench_cpu_mops = b->cpu_mops;
    caps->info.bench_memory_mbps = b->memory_mbps;
    caps->has_benchmark = true;
    return RZ_OK;
}

static int copy_strv(rz__strv *dst, const rz__strv *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (rz__strv_add(dst, src->v[i]) != RZ_OK)
            return RZ_ENOMEM;
    return RZ_OK;
}

int rz_caps_clone(rz_caps **out, const rz_caps *src)
{
    rz_caps *c;
    int rc = rz__caps_new(&c);
    if (rc != RZ_OK) {
        *out = NULL;
        return rc;
    }
    c->info = src->info;
    c->info.n_gpus = 0;
    c->has_benchmark = src->has_benchmark;
    const char *s[] = { src->id, src->cpu_vendor, src->cpu_model, src->arch,
                        src->storage_kind, src->region };
    char **d[] = { &c->id, &c->cpu_vendor, &c->cpu_model, &c->arch,
                   &c->storage_kind, &c->region };
    for (size_t i = 0; i < RZ_ARRAY_LEN(s) && rc == RZ_OK; i++)
        rc = rz__set_str(d[i], s[i]);
    if (rc == RZ_OK)
        rc = copy_strv(&c->features, &src->features);
    if (rc == RZ_OK)
        rc = copy_strv(&c->adapters, &src->adapters);
    if (rc == RZ_OK)
        rc = copy_strv(&c->runtimes, &src->runtimes);
    if (rc == RZ_OK)
        rc = copy_strv(&c->llm_models, &src->llm_models);
    c->llm_1k_micros = src->llm_1k_micros;
    c->llm_per_second = src->llm_per_second;
    for (size_t i = 0; i < src->n_llm_prices && rc == RZ_OK; i++)
        rc = rz__caps_llm_price_set(c, src->llm_prices[i].model,
                                    src->llm_prices[i].micros,
                                    src->llm_prices[i].per_second);
    for (size_t i = 0; i < src->labels.n && rc == RZ_OK; i++)
        rc = rz__labels_set(&c->labels, src->labels.keys[i], src->labels.vals[i]);
    for (size_t i = 0; i < src->info.n_gpus && rc == RZ_OK; i++)
        rc = rz__caps_add_gpu(c, &src->gpus[i]);
    if (rc == RZ_OK && src->doc && !(c->doc = cJSON_Duplicate(src->doc, 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        rz_caps_free(c);
        *out = NULL;
        return rc;
    }
    rz__caps_sync(c);
    *out = c;
    return RZ_OK;
}
