/* rhizos/estimate.h — what a flow costs: renting nodes versus API providers.
 *
 * For each step of a validated flow, the cost of renting the cheapest node
 * class of a price table that fits the module's requirements (docs/formats.md:
 * estimate.seconds/3600 x (GPUs x gpu_hour + cores x cpu_hour + memory GB x
 * memory_gb_hour), whole micro-dollars rounded up; rz_match_cost), against the cost
 * of the module's `api_alternative` at a provider's prices (whole micro-dollars per
 * million units, so ceil(sum(units x price) / 1e6) micros), and which to pick.
 * Money is integer micro-dollars (1e-6 USD) throughout; sums saturate at UINT64_MAX.
 *
 * Price tables (data/prices/, docs/modules.md):
 *   nodes:     {"source", "date", "nodes": [<node capabilities object>...]}
 *   providers: {"source", "date", "providers": [{"provider", "model",
 *               "micros_per_million": {"<unit>": <micros>, ...}}]}
 */
#ifndef RHIZOS_ESTIMATE_H
#define RHIZOS_ESTIMATE_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"
#include "rhizos/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_prices rz_prices;

RZ_EXTERN RZ_NODISCARD int rz_prices_new(rz_prices **out);
RZ_EXTERN void rz_prices_free(rz_prices *p);
/* Add the tables of one JSON document holding "nodes" and/or "providers"
 * (RZ_EINVALID with a JSON pointer in rz_error_last() for a malformed entry
 * or a document with neither; nothing is added then). `source` names the
 * document in errors. Later node classes with an id already present replace
 * nothing: the first table given wins. */
RZ_EXTERN RZ_NODISCARD int rz_prices_add_json(rz_prices *p, const char *json,
                                              size_t len, const char *source);
/* rz_prices_add_json of a file (at most RZ_PRICES_FILE_MAX bytes). */
#define RZ_PRICES_FILE_MAX (16u * 1024u * 1024u)               /* 16 MiB */
RZ_EXTERN RZ_NODISCARD int rz_prices_add_file(rz_prices *p, const char *path);
RZ_EXTERN size_t rz_prices_node_count(const rz_prices *p);
RZ_EXTERN size_t rz_prices_provider_count(const rz_prices *p);
/* "source" and "date" of the first node / provider table; "" if none.
 * Borrowed: valid while `p` lives. */
RZ_EXTERN const char *rz_prices_nodes_date(const rz_prices *p);
RZ_EXTERN const char *rz_prices_providers_date(const rz_prices *p);

typedef enum rz_choice {
    RZ_CHOICE_NONE = 0,     /* neither a node class nor a provider prices it */
    RZ_CHOICE_RENT,         /* rent a node (also on a tie: data stays put) */
    RZ_CHOICE_API           /* call the API provider */
} rz_choice;

/* "none", "rent", "api". */
RZ_EXTERN const char *rz_choice_name(rz_choice c);

/* One step. Strings are borrowed from the estimate; "" when absent. */
typedef struct rz_step_estimate {
    const char *step;
    const char *module;         /* "<id>@<version>" */
    uint64_t estimate_ms;       /* estimate.seconds x 1000, rounded up */
    int rent_ok;                /* a node class fits */
    const char *node_class;     /* its id */
    uint64_t rent_micros;
    const char *rent_reason;    /* why none fits, when !rent_ok */
    int api_ok;                 /* the module has an api_alternative priced
                                   by the provider table */
    const char *provider, *api_model;
    uint64_t api_micros;
    const char *api_reason;     /* why no API price, "" if the module has
                                   no api_alternative */
    rz_choice choice;
    uint64_t cost_micros;        /* of the choice; 0 for NONE */
} rz_step_estimate;

typedef struct rz_estimate rz_estimate;

/* Estimate a flow that rz_flow_validate accepted (RZ_ESTATE otherwise).
 * A step that cannot be priced is not an error: its choice is NONE. */
RZ_EXTERN RZ_NODISCARD int rz_estimate_flow(rz_estimate **out,
                                            const rz_flow *flow,
                                            const rz_prices *prices);
RZ_EXTERN void rz_estimate_free(rz_estimate *e);
/* What renting the cheapest node class of `p` that fits step `step` of a
 * validated flow costs for `run_ms` of run time (the estimate's formula
 * with run_ms for estimate.seconds): how an embedded run prices the time
 * its steps took. RZ_ENOENT when no class fits (or no node table). */
RZ_EXTERN RZ_NODISCARD int rz_prices_rent_step(const rz_prices *p,
                                               const rz_flow *flow, size_t step,
                                               uint64_t run_ms, uint64_t *micros);
RZ_EXTERN size_t rz_estimate_count(const rz_estimate *e);
/* Borrowed, valid while `e` lives; NULL out of range. In flow order. */
RZ_EXTERN const rz_step_estimate *rz_estimate_get(const rz_estimate *e,
                                                  size_t i);
/* Sum of the chosen costs. */
RZ_EXTERN uint64_t rz_estimate_total_micros(const rz_estimate *e);
/* 1 when every step was priced (no NONE choice). */
RZ_EXTERN RZ_NODISCARD int rz_estimate_complete(const rz_estimate *e);
/* {"steps":[{"step","module","estimate_seconds","rent":{"node_class",
 * "cost_micros"}|null,"rent_unavailable"?,"api":{"provider","model",
 * "cost_micros"}|null,"api_unavailable"?,"recommendation","cost_micros"}],
 * "total_micros","complete","prices":{"nodes_date","providers_date"}};
 * micros are written as exact integers. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_estimate_to_json(const rz_estimate *e,
                                               char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_ESTIMATE_H */
