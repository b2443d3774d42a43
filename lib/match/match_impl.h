/* Internal shape of job requirements, shared by parsing and the matcher. */
#ifndef RZ_MATCH_IMPL_H
#define RZ_MATCH_IMPL_H

#include "common/json.h"
#include "rhizos/hw.h"
#include "rhizos/match.h"

struct rz_reqs {
    rz_reqs_info info;        /* the public view */
    char *id, *adapter, *gpu_vendor, *region;
    rz__strv features;
    uint64_t feature_mask;    /* features with a bit */
    bool other_features;      /* some have none: compare as strings */
    rz__labels labels;
    char *llm_model;          /* "llm": {"model", "tokens", "seconds"}: an */
    uint64_t llm_tokens;      /* llm job, priced on at most these tokens on */
    uint64_t llm_seconds;     /* nodes serving it per token, these seconds
                                 on those priced per second */
    char *sig;                /* canonical text of every constraint: jobs
                                 with equal sig are one group */
    cJSON *doc;               /* the parsed document (unknown fields) */
};

/* Per-hour rate of `r` on `c` in micros x 1024 (memory is in MB), and the
 * estimated cost in whole micro-dollars rounded up (saturating). */
RZ_HIDDEN unsigned __int128 rz__match_rate(const rz_caps_info *c, const rz_reqs_info *r);
RZ_HIDDEN uint64_t rz__match_cost(unsigned __int128 rate, uint64_t estimate_ms);

/* The rate of `r` on `c` and the estimated cost at that rate: per hour
 * (as above) for a job priced by time. An llm job's "rate" is its most on
 * the node, whatever the node's unit: its "tokens" at a price per 1,000
 * tokens, its "seconds" at a price per second (docs/llm.md), so nodes of
 * either unit compare by what the job may cost on them. */
RZ_HIDDEN unsigned __int128 rz__match_job_rate(const rz_caps *c, const rz_reqs *r);
RZ_HIDDEN uint64_t rz__match_job_cost(unsigned __int128 rate, const rz_reqs *r);
/* `tokens` at `price_1k` per 1,000 tokens, rounded up (saturating): an llm
 * job's hold at a reference price. */
RZ_HIDDEN uint64_t rz__match_token_cost(uint64_t price_1k, uint64_t tokens);
/* What an llm job that ran `run_ms` and counted `tokens` costs on `c` at
 * its price for the model, each bounded by the job's (rounded up): the
 * actual cost, per token or per second as the node prices it. */
RZ_HIDDEN uint64_t rz__match_llm_cost(const rz_caps *c, const rz_reqs *r,
                                      uint64_t tokens, uint64_t run_ms);

/* Does the GPU satisfy the per-GPU constraints (vram, vendor, capability)? */
RZ_HIDDEN bool rz__gpu_ok(const rz_gpu_info *g, const rz_reqs_info *r);
/* The static (hardware, labels, market) constraints, ignoring capacity;
 * `feature_mask` is rz__caps_feature_mask of the node (kept by callers that
 * test a node often). */
RZ_HIDDEN bool rz__match_static(const rz_caps *c, uint64_t feature_mask,
                                const rz_reqs *r);
/* The node's CPU features that have a bit, as bits. */
RZ_HIDDEN uint64_t rz__caps_feature_mask(const rz_caps_info *c);
/* A docker job that needs GPUs only goes to a node whose engine runs GPU
 * containers: it advertises the runtime "nvidia" (an NVIDIA runtime or CDI
 * devices); a process job's GPUs need no engine. A node that lists no
 * runtimes at all (a hand-written catalog for estimates; rhizos-node
 * always lists "docker" with its engine) is taken at its adapters' word. */
RZ_HIDDEN bool rz__gpu_containers_ok(const rz_caps_info *n,
                                     const rz_reqs_info *q);
/* A job asking for verified claims: the node's claims it relies on passed
 * their challenges (CPU and memory; GPUs when it asks for any). */
RZ_HIDDEN bool rz__match_verified(const rz_caps_info *n, const rz_reqs_info *q);
/* Is `s` one of the n strings of `v` (a node's features, adapters)? */
RZ_HIDDEN bool rz__caps_list_has(const char *const *v, size_t n, const char *s);

/* One node as the explainer sees it (matcher.c). */
typedef struct rz__mview {
    const rz_caps *caps;
    uint32_t cores_free;
    uint64_t mem_free, disk_free, gpu_free;
    bool slots_full, removed;
} rz__mview;

RZ_HIDDEN int rz__matcher_view(const rz_matcher *m, size_t i, rz__mview *out);
/* Why `r` fits no node now, per constraint; "" when it fits (explain.c). */
RZ_HIDDEN int rz__matcher_explain_into(const rz_matcher *m, const rz_reqs *r, char **out);

#endif
