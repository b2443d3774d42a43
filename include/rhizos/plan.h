/* rhizos/plan.h — execution plans: stages by Kahn's algorithm.
 *
 * Stage k holds the steps whose dependencies all lie in stages < k, sorted by
 * id. The critical path is the longest chain by estimated seconds (the
 * module's estimate, RZ_PLAN_DEFAULT_STEP_SECONDS when unknown), ties broken
 * by id.
 */
#ifndef RHIZOS_PLAN_H
#define RHIZOS_PLAN_H

#include "rhizos/common.h"
#include "rhizos/flow.h"

/* The weight of a step whose module gives no estimate. */
#define RZ_PLAN_DEFAULT_STEP_SECONDS 1.0

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_plan rz_plan;

/* Plan a flow (linking it first if needed). A cycle is RZ_ECYCLE with one
 * diagnostic per disjoint cycle naming it whole, "cycle: a -> b -> c -> a",
 * starting and located at its earliest step in the document (very long
 * cycles are shortened in the middle). The flow must outlive the plan.
 * O(steps + edges) time and memory, no recursion. */
RZ_EXTERN RZ_NODISCARD int rz_plan_build(rz_plan **out, const rz_flow *flow,
                                         rz_diags *diags);
RZ_EXTERN void rz_plan_free(rz_plan *plan);

RZ_EXTERN size_t rz_plan_stage_count(const rz_plan *plan);
RZ_EXTERN size_t rz_plan_stage_size(const rz_plan *plan, size_t stage);
/* Step index (as in rz_flow_step_id) of the i-th step of a stage. */
RZ_EXTERN size_t rz_plan_stage_step(const rz_plan *plan, size_t stage, size_t i);

/* Critical path as step indices, upstream first. Borrowed, valid while the
 * plan lives. */
RZ_EXTERN const size_t *rz_plan_critical_path(const rz_plan *plan, size_t *len);
RZ_EXTERN double rz_plan_critical_seconds(const rz_plan *plan);

/* {"stages":[["a"],["b","c"]],"critical_path":["a","c"],
 *  "critical_seconds":N,"steps":N}. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_plan_to_json(const rz_plan *plan, char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_PLAN_H */
