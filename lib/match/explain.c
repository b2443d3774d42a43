/* Why a job fits no node: each constraint checked alone against every node's
 * free capacity. A constraint no node meets is named with the best the
 * network has ("needs 24576 MB VRAM; the largest free GPU has 16384 MB").
 * When each constraint is met somewhere but never all on one node, the
 * closest node is named with what it lacks. This is the slow path: O(nodes). */
#include <stdlib.h>
#include <string.h>

#include "hw/hw_impl.h"
#include "match/match_impl.h"

enum {
    F_ADAPTER, F_GPU_CTR, F_FEATURES, F_LABELS, F_REGION, F_REPUTATION, F_CORES, F_MEMORY,
    F_STORAGE, F_SLOTS, F_VENDOR, F_VRAM, F_CC, F_GPUS, F_COST, F_VERIFIED, F_MODEL, F_COUNT
};

static const char *const short_names[F_COUNT] = {
    "adapter", "GPU containers", "CPU features", "labels", "region", "reputation", "cores",
    "memory", "storage", "job slots", "GPU vendor", "VRAM", "compute capability",
    "GPU count", "cost", "verified", "model",
};

/* The best the network offers, per constraint. */
typedef struct best {
    uint32_t cores, gpus_eligible, cc_major, cc_minor;
    uint64_t mem, disk, vram, cost;
    double rep;
    bool any_free_gpu;
    bool *has_feature;         /* per required feature: some node has it */
    bool *has_label;           /* per required label */
} best;

static bool cc_less(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    return a != c ? a < c : b < d;
}

static uint32_t gpu_checks(const rz__mview *v, const rz_reqs_info *q, best *b)
{
    const rz_caps_info *c = rz_caps_get(v->caps);
    bool vendor = false, vram = false, cc = false;
    uint32_t eligible = 0;
    for (uint32_t i = 0; i < c->n_gpus; i++) {
        if (!(v->gpu_free >> i & 1u))
            continue;
        const rz_gpu_info *g = &c->gpus[i];
        b->any_free_gpu = true;
        if (g->vram_mb > b->vram)
            b->vram = g->vram_mb;
        if (cc_less(b->cc_major, b->cc_minor, g->cc_major, g->cc_minor)) {
            b->cc_major = g->cc_major;
            b->cc_minor = g->cc_minor;
        }
        vendor |= !*q->gpu_vendor || strcmp(g->vendor, q->gpu_vendor) == 0;
        vram |= g->vram_mb >= q->gpu_vram_mb;
        cc |= !cc_less(g->cc_major, g->cc_minor, q->gpu_cc_major, q->gpu_cc_minor);
        eligible += rz__gpu_ok(g, q);
    }
    if (eligible > b->gpus_eligible)
        b->gpus_eligible = eligible;
    uint32_t f = 0;
    if (!vendor) f |= 1u << F_VENDOR;
    if (!vram) f |= 1u << F_VRAM;
    if (!cc) f |= 1u << F_CC;
    if (eligible < q->gpu_count) f |= 1u << F_GPUS;
    return f;
}

static uint32_t label_checks(const rz_caps *c, const rz_reqs *r, best *b)
{
    uint32_t f = 0;
    for (size_t k = 0; k < r->features.n; k++) {
        if (rz__caps_list_has(rz_caps_get(c)->features, rz_caps_get(c)->n_features,
                              r->features.v[k]))
            b->has_feature[k] = true;
        else
            f |= 1u << F_FEATURES;
    }
    for (size_t k = 0; k < r->labels.n; k++) {
        if (strcmp(r->labels.keys[k], "region") == 0)
            continue;
        const char *v = rz_caps_label(c, r->labels.keys[k]);
        if (v && strcmp(v, r->labels.vals[k]) == 0)
            b->has_label[k] = true;
        else
            f |= 1u << F_LABELS;
    }
    if (*r->region && strcmp(rz_caps_get(c)->region, r->region) != 0)
        f |= 1u << F_REGION;
    return f;
}

static uint32_t node_fails(const rz__mview *v, const rz_reqs *r, best *b)
{
    const rz_caps_info *c = rz_caps_get(v->caps);
    const rz_reqs_info *q = &r->info;
    uint32_t f = label_checks(v->caps, r, b);
    if (r->llm_model && !rz__caps_llm_serves(v->caps, r->llm_model))
        f |= 1u << F_MODEL;
    if (*q->adapter && !rz__caps_list_has(c->adapters, c->n_adapters, q->adapter))
        f |= 1u << F_ADAPTER;
    else if (!rz__gpu_containers_ok(c, q))
        f |= 1u << F_GPU_CTR;
    if (!rz__match_verified(c, q)) f |= 1u << F_VERIFIED;
    if (c->reputation > b->rep)
        b->rep = c->reputation;
    if (c->reputation < q->min_reputation) f |= 1u << F_REPUTATION;
    if (v->cores_free > b->cores) b->cores = v->cores_free;
    if (v->cores_free < q->cpu_cores) f |= 1u << F_CORES;
    if (v->mem_free > b->mem) b->mem = v->mem_free;
    if (v->mem_free < q->memory_mb) f |= 1u << F_MEMORY;
    if (v->disk_free > b->disk) b->disk = v->disk_free;
    if (v->disk_free < q->storage_gb) f |= 1u << F_STORAGE;
    if (v->slots_full) f |= 1u << F_SLOTS;
    if (q->gpu_count) f |= gpu_checks(v, q, b);
    if (!f && q->max_cost_micros != UINT64_MAX) {
        uint64_t cost = rz__match_job_cost(rz__match_job_rate(v->caps, r), r);
        if (cost < b->cost)
            b->cost = cost;
        if (cost > q->max_cost_micros)
            f |= 1u << F_COST;
    }
    return f;
}

static void say_first_missing(rz__buf *o, const char *what, char **names,
                              char **vals, const bool *has, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (has[k] || (vals && strcmp(names[k], "region") == 0))
            continue;
        if (vals)
            rz__buf_printf(o, "needs %s %s=%s; no node has it", what, names[k], vals[k]);
        else
            rz__buf_printf(o, "needs %s %s; no node has it", what, names[k]);
        return;
    }
    rz__buf_printf(o, "needs %s that no single node has together", what);
}

/* What no node offers: the adapter, or an llm job's model. */
static void say_offer(rz__buf *o, bool model, const rz_reqs *r)
{
    if (model)
        rz__buf_printf(o, "no node serves model '%s'", r->llm_model);
    else
        rz__buf_printf(o, "no node offers adapter '%s'", r->info.adapter);
}

static void say(rz__buf *o, int f, const rz_reqs *r, const best *b)
{
    const rz_reqs_info *q = &r->info;
    typedef unsigned long long ull;
    switch (f) {
    case F_ADAPTER: case F_MODEL:
        say_offer(o, f == F_MODEL, r);
        break;
    case F_GPU_CTR:
        rz__buf_printf(o, "needs GPU containers; no node's container engine "
                       "reports an NVIDIA runtime or CDI devices");
        break;
    case F_FEATURES:
        say_first_missing(o, "CPU feature", r->features.v, NULL, b->has_feature,
                          r->features.n);
        break;
    case F_LABELS:
        say_first_missing(o, "label", r->labels.keys, r->labels.vals, b->has_label,
                          r->labels.n);
        break;
    case F_REGION:
        rz__buf_printf(o, "needs region %s; no node is in it", q->region);
        break;
    case F_VERIFIED:
        rz__buf_printf(o, "needs verified %s; no node's passed its challenges",
                       q->gpu_count ? "GPUs, CPU and memory" : "CPU and memory");
        break;
    case F_REPUTATION:
        rz__buf_printf(o, "needs reputation %.2f; the best node has %.2f",
                       q->min_reputation, b->rep);
        break;
    case F_CORES:
        rz__buf_printf(o, "needs %u cores; the most free on one node is %u",
                       q->cpu_cores, b->cores);
        break;
    case F_MEMORY:
        rz__buf_printf(o, "needs %llu MB memory; the most free on one node is %llu MB",
                       (ull)q->memory_mb, (ull)b->mem);
        break;
    case F_STORAGE:
        rz__buf_printf(o, "needs %llu GB storage; the most free on one node is %llu GB",
                       (ull)q->storage_gb, (ull)b->disk);
        break;
    case F_SLOTS:
        rz__buf_puts(o, "every node already runs its maximum of concurrent jobs");
        break;
    case F_VENDOR:
        rz__buf_printf(o, "needs a GPU from %s; no free GPU is one", q->gpu_vendor);
        break;
    case F_VRAM:
        rz__buf_printf(o, "needs %llu MB VRAM; the largest free GPU has %llu MB",
                       (ull)q->gpu_vram_mb, (ull)b->vram);
        break;
    case F_CC:
        rz__buf_printf(o, "needs compute capability %u.%u; the highest free GPU has %u.%u",
                       q->gpu_cc_major, q->gpu_cc_minor, b->cc_major, b->cc_minor);
        break;
    case F_GPUS:
        if (!b->any_free_gpu) {
            rz__buf_printf(o, "needs %u GPU%s; no GPU is free on any node", q->gpu_count,
                           q->gpu_count == 1 ? "" : "s");
            break;
        }
        rz__buf_printf(o, "needs %u GPU%s meeting its GPU requirements; the most free "
                       "on one node is %u", q->gpu_count, q->gpu_count == 1 ? "" : "s",
                       b->gpus_eligible);
        break;
    case F_COST:
        rz__buf_printf(o, "costs at least %llu micros on every node that fits, over "
                       "the maximum of %llu", (ull)b->cost, (ull)q->max_cost_micros);
        break;
    }
}

/* Constraints that fail on every node; else the closest node's failures. */
static void compose(rz__buf *o, const rz_matcher *m, const rz_reqs *r, const best *b,
                    uint32_t all_fail, uint32_t closest_mask, size_t closest)
{
    const uint32_t per_gpu = (1u << F_VENDOR) | (1u << F_VRAM) | (1u << F_CC);
    /* No free GPU at all says it once; otherwise a per-GPU constraint
     * failing everywhere already explains the count. */
    if (r->info.gpu_count && !b->any_free_gpu)
        all_fail = (all_fail & ~per_gpu) | (1u << F_GPUS);
    else if (all_fail & per_gpu)
        all_fail &= ~(1u << F_GPUS);
    if (all_fail) {
        bool first = true;
        for (int f = 0; f < F_COUNT; f++) {
            if (!(all_fail >> f & 1u))
                continue;
            if (!first)
                rz__buf_puts(o, "; and ");
            say(o, f, r, b);
            first = false;
        }
        return;
    }
    rz__buf_printf(o, "no node meets every requirement at once; the closest, %s, lacks ",
                   rz_matcher_node_id(m, closest));
    bool first = true;
    for (int f = 0; f < F_COUNT; f++) {
        if (!(closest_mask >> f & 1u))
            continue;
        rz__buf_printf(o, "%s%s", first ? "" : ", ", short_names[f]);
        first = false;
    }
}

int rz__matcher_explain_into(const rz_matcher *m, const rz_reqs *r, char **out)
{
    *out = NULL;
    best b = { .cost = UINT64_MAX };
    b.has_feature = rz__calloc(r->features.n + 1, sizeof *b.has_feature);
    b.has_label = rz__calloc(r->labels.n + 1, sizeof *b.has_label);
    rz__buf o = {0};
    if (!b.has_feature || !b.has_label) {
        free(b.has_feature);
        free(b.has_label);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    uint32_t all_fail = (1u << F_COUNT) - 1, closest_mask = 0;
    size_t closest = RZ_NPOS, live = 0;
    int closest_n = F_COUNT + 1;
    bool fits = false;
    for (size_t i = 0; i < rz_matcher_count(m) && !fits; i++) {
        rz__mview v;
        if (rz__matcher_view(m, i, &v) != RZ_OK || v.removed)
            continue;
        live++;
        uint32_t f = node_fails(&v, r, &b);
        fits = f == 0;
        all_fail &= f;
        int n = __builtin_popcount(f);
        if (n < closest_n) {
            closest_n = n;
            closest = i;
            closest_mask = f;
        }
    }
    if (live == 0)
        rz__buf_puts(&o, "no nodes to place on");
    else if (!fits)
        compose(&o, m, r, &b, all_fail, closest_mask, closest);
    else
        rz__buf_puts(&o, "");
    free(b.has_feature);
    free(b.has_label);
    if (o.failed) {
        rz__buf_free(&o);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    if (!o.data)
        return (*out = rz__strdup("")) ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    *out = rz__buf_take(&o);
    return RZ_OK;
}

int rz_matcher_explain(const rz_matcher *m, const rz_reqs *reqs, char **out)
{
    return rz__matcher_explain_into(m, reqs, out);
}
