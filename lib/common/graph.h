/* Dependency graphs: one order-and-cycle finder and one cycle text, shared
 * by the validator and the planner. */
#ifndef RZ_COMMON_GRAPH_H
#define RZ_COMMON_GRAPH_H

#include "common/internal.h"

/* Edges point upstream, in CSR form: node u depends on
 * dep[off[u]] .. dep[off[u + 1] - 1]. */
typedef struct rz__graph {
    size_t n;
    const size_t *off, *dep;
} rz__graph;

/* Called once per cycle, in the order the components are found: `comp` is
 * the whole strongly connected component, `cycle` the shortest cycle
 * through its lowest-numbered node, in dependency order starting there
 * (a -> b means b depends on a). Both are borrowed for the call. */
typedef void rz__cycle_fn(void *ud, const size_t *comp, size_t n_comp,
                          const size_t *cycle, size_t n_cycle);

/* Orders the nodes into `order` (n slots) so that a node comes after what
 * it depends on, except within a cycle, and reports every cycle (a
 * component of two or more nodes, or a node that depends on itself).
 * Iterative (Tarjan), so a ring of 100k nodes is fine. RZ_OK or RZ_ENOMEM
 * (then `order` is incomplete and some cycles may not have been reported). */
RZ_HIDDEN int rz__graph_order(const rz__graph *g, size_t *order,
                              rz__cycle_fn *on_cycle, void *ud);

/* Names a cycle's text shows at most; the middle of a longer one is elided. */
#define RZ__CYCLE_TEXT_NAMES 32

/* "a -> b -> c -> a" for the cycle of n nodes, past RZ__CYCLE_TEXT_NAMES
 * names "a -> ... (N more) -> z -> a". */
RZ_HIDDEN void rz__cycle_text(rz__buf *b, const size_t *cycle, size_t n,
                              const char *(*name)(const void *ud, size_t node),
                              const void *ud);

#endif
