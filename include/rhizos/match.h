/* rhizos/match.h — which node gets which job.
 *
 * An rz_reqs is one job's requirements (docs/formats.md). A matcher holds nodes
 * (rz_caps), filters them by the hard constraints, scores the rest by a
 * policy and reserves the chosen node's capacity until the job is released,
 * so capacity is never oversubscribed. Identical requirement sets share one
 * cached, sorted candidate set (HTCondor's autoclusters), so a burst of like
 * jobs is matched as one.
 *
 * Capacity of a node: cpu.cores (else threads), memory_mb, storage.free_gb,
 * each GPU as a whole device, and max_concurrent_jobs (0: no limit).
 * Estimated cost = estimate_seconds/3600 x (GPUs x gpu_hour + cores x
 * cpu_hour + memory GB x memory_gb_hour), in whole micro-dollars rounded up.
 */
#ifndef RHIZOS_MATCH_H
#define RHIZOS_MATCH_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"
#include "rhizos/hw.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_reqs rz_reqs;

/* A read-only view; borrowed like rz_caps_get(). */
typedef struct rz_reqs_info {
    const char *id;              /* job id; "" none */
    const char *adapter;         /* "" any */
    uint32_t cpu_cores;          /* 1 when not given */
    const char *const *cpu_features;
    size_t n_cpu_features;
    uint64_t memory_mb;
    uint32_t gpu_count;
    uint64_t gpu_vram_mb;        /* per GPU */
    const char *gpu_vendor;      /* "" any */
    uint32_t gpu_cc_major, gpu_cc_minor; /* minimum compute capability */
    uint64_t storage_gb;
    const char *region;          /* "" any */
    double min_reputation;       /* 0 when not given */
    uint64_t max_cost_micros;     /* UINT64_MAX when not given */
    uint64_t estimate_ms;        /* estimate_seconds x 1000, rounded up */
    /* "verified": only nodes whose claims this job relies on (CPU and
     * memory; GPUs when it asks for any) passed the orchestrator's
     * challenges (rz_caps_info.unverified). Default: 1 when it asks for a
     * GPU, else 0. */
    int verified;
} rz_reqs_info;

/* Parse a requirements object, or a job object {"id", "requirements":{...}}
 * (the handoff's {"requirements":{"mcp_adapter"}, "payload":{"type"}} too).
 * Every field is optional; unknown fields are kept. */
RZ_EXTERN RZ_NODISCARD int rz_reqs_parse(rz_reqs **out, const char *json,
                                         size_t len);
/* A list of jobs: a JSON array, or {"jobs":[...]}. */
RZ_EXTERN RZ_NODISCARD int rz_reqs_parse_list(rz_reqs ***out, size_t *count,
                                              const char *json, size_t len);
RZ_EXTERN void rz_reqs_free_list(rz_reqs **list, size_t count);
RZ_EXTERN const rz_reqs_info *rz_reqs_get(const rz_reqs *reqs);
RZ_EXTERN size_t rz_reqs_label_count(const rz_reqs *reqs);
RZ_EXTERN RZ_NODISCARD int rz_reqs_label_at(const rz_reqs *reqs, size_t i,
                                            const char **key,
                                            const char **value);
/* {"id", "requirements":{...}}; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_reqs_to_json(const rz_reqs *reqs, char **out);
RZ_EXTERN void rz_reqs_free(rz_reqs *reqs);

/* Estimated cost of running `reqs` on `node`, whole micro-dollars rounded up
 * (saturates at UINT64_MAX). */
RZ_EXTERN uint64_t rz_match_cost(const rz_caps *node, const rz_reqs *reqs);
/* 1 when the node, entirely free, satisfies every hard constraint. */
RZ_EXTERN int rz_match_fits(const rz_caps *node, const rz_reqs *reqs);

typedef enum rz_policy {
    RZ_POLICY_CHEAPEST = 0,   /* lowest estimated cost (hourly rate) */
    RZ_POLICY_FASTEST,        /* best GPU compute capability for GPU jobs,
                                 highest benchmark for CPU jobs */
    RZ_POLICY_REPUTATION,     /* highest reputation */
    RZ_POLICY_BINPACK,        /* the fullest node that fits */
    RZ_POLICY_SPREAD          /* the emptiest node that fits */
} rz_policy;
/* Ties under every policy: lower hourly rate, then higher reputation, then
 * a preferred node (rz_matcher_prefer), then the node added first. */

/* "cheapest", ...; RZ_EINVAL for an unknown name. */
RZ_EXTERN RZ_NODISCARD int rz_policy_parse(const char *name, rz_policy *out);
RZ_EXTERN const char *rz_policy_name(rz_policy p);

typedef struct rz_matcher rz_matcher;

RZ_EXTERN RZ_NODISCARD int rz_matcher_new(rz_matcher **out, rz_policy policy);
RZ_EXTERN void rz_matcher_free(rz_matcher *m);
/* Add a node (copied; `node` may be freed afterwards). Ids must be unique
 * (RZ_EDUPLICATE). *index (may be NULL) is the node's index. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_add(rz_matcher *m, const rz_caps *node,
                                          size_t *index);
/* Prefer a node (1) or not (0, the default) where the policy's order ties:
 * a server prefers the nodes that hold a long-poll, so work goes where it
 * can be handed over at once. Never picks a node the policy ranks worse.
 * O(groups holding the node x log nodes). RZ_ENOENT for an unknown index. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_prefer(rz_matcher *m, size_t index,
                                             int preferred);
/* Set a node's reputation and unverified claims (rz_caps_set_trust) as
 * its orchestrator measured them. A change drops every cached candidate
 * set (the next placement of each group rebuilds it: O(nodes log nodes)),
 * so callers change it rarely (an engine rounds reputation). RZ_ENOENT for
 * an unknown index, RZ_EINVAL as rz_caps_set_trust. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_set_trust(rz_matcher *m, size_t index,
                                                double reputation,
                                                uint32_t unverified);
/* Take a node out of placement (it stays indexed so that its reservations
 * can still be released). RZ_ENOENT for an unknown id. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_remove(rz_matcher *m,
                                             const char *node_id);
/* A removed node comes back into placement with new capabilities (copied;
 * the same id, the same index into *index). RZ_ENOENT for an unknown id,
 * RZ_ESTATE for a node not removed or still holding reservations. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_readd(rz_matcher *m, const rz_caps *node,
                                            size_t *index);
RZ_EXTERN size_t rz_matcher_count(const rz_matcher *m);
RZ_EXTERN const char *rz_matcher_node_id(const rz_matcher *m, size_t index);

typedef struct rz_placement {
    size_t node;              /* index in the matcher */
    const char *node_id;      /* borrowed: valid while the matcher lives */
    uint64_t cost_micros;      /* estimated */
    uint64_t ticket;          /* hand back to rz_matcher_release */
} rz_placement;

/* Place a job and reserve its capacity: O(log nodes) for a known
 * requirement group. RZ_ENOENT when no node fits now; rz_error_last() then
 * says only whether no node meets the requirements or all that do are busy.
 * rz_matcher_explain() gives the reason per constraint. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_place(rz_matcher *m, const rz_reqs *reqs,
                                            rz_placement *out);
/* Release a placement's reservation; RZ_ENOENT for an unknown ticket. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_release(rz_matcher *m, uint64_t ticket);
/* Why `reqs` fits no node now, per constraint, with the best the nodes
 * offer: "needs 24576 MB VRAM; the largest free GPU has 16384 MB". "" if it
 * fits. O(nodes). Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_matcher_explain(const rz_matcher *m,
                                              const rz_reqs *reqs, char **out);

typedef struct rz_node_usage {
    uint32_t cores_used, cores_total;
    uint64_t memory_used_mb, memory_total_mb;
    uint64_t storage_used_gb, storage_total_gb;
    uint32_t gpus_used, gpus_total;
    uint32_t jobs;
} rz_node_usage;

RZ_EXTERN RZ_NODISCARD int rz_matcher_usage(const rz_matcher *m, size_t index,
                                            rz_node_usage *out);

typedef struct rz_matcher_stats {
    uint64_t placements, failures, releases;
    uint64_t cache_hits, cache_builds; /* requirement groups reused / built */
    size_t groups;                      /* cached requirement groups now */
} rz_matcher_stats;
RZ_EXTERN void rz_matcher_stats_get(const rz_matcher *m, rz_matcher_stats *out);

/* The llm adapter's bounds (docs/llm.md), the same for the orchestrator's
 * llm jobs, the engine's llm steps, the adapter and the estimate: a
 * generation's max_tokens and a flow step's max_prompt_tokens when not
 * given, and what a prompt can weigh in tokens at most: its bytes (no
 * tokenizer makes more tokens than bytes), RZ_LLM_TOKENS_PER_MESSAGE a
 * message (a prompt is one) for the chat template, and
 * RZ_LLM_TOKENS_OVERHEAD around the whole. */
#define RZ_LLM_DEFAULT_MAX_TOKENS 256u
#define RZ_LLM_DEFAULT_MAX_PROMPT_TOKENS 4096u
#define RZ_LLM_TOKENS_PER_MESSAGE 16u
#define RZ_LLM_TOKENS_OVERHEAD 64u
/* The run time an llm job is priced on at most on a node priced per second
 * when it does not say ("llm": {"seconds"}; an llm job's timeout_s), and
 * the most it may say: the node stops the generation there. */
#define RZ_LLM_DEFAULT_SECONDS 300u
#define RZ_LLM_MAX_SECONDS 86400u
RZ_EXTERN uint64_t rz_llm_prompt_bound(uint64_t text_bytes, size_t n_messages);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_MATCH_H */
