/* What the tasks of a run used and cost (lib/run/run.c), as an embedded
 * runner measured them: rz_run_to_json then writes "run_ms" and
 * "cost_micros" for each step (a for_each step's summed over its
 * elements) and for the run. A run never given any writes neither, so the
 * network's status, which has its own money, is unchanged. */
#ifndef RZ_RUN_USAGE_H
#define RZ_RUN_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/internal.h"
#include "rhizos/run.h"

/* Add one attempt of task `task` (a step, or a for_each element): its run
 * time, and its price when `priced` (a task once unpriced stays so, and
 * the run lists it under "unpriced_steps"). Sums stop at 2^53. */
RZ_HIDDEN int rz__run_add_usage(rz_run *run, size_t task, uint64_t run_ms,
                                bool priced, uint64_t micros);

#endif
