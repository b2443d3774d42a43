/* What changed in a run since its owner last looked (lib/run/run.c), so the
 * engine and the local runner follow a run of N steps in O(changes) per
 * event instead of comparing every step. */
#ifndef RZ_RUN_CHANGES_H
#define RZ_RUN_CHANGES_H

#include <stddef.h>

#include "common/internal.h"
#include "rhizos/run.h"

/* The steps whose state changed since the last call (since rz_run_new for
 * the first), each once, in index order; *steps is valid until the next
 * call. Their current states are rz_run_step_state's. */
RZ_HIDDEN size_t rz__run_take_changes(rz_run *run, const size_t **steps);

/* Step `step` as rz_run_to_json writes it under "steps" (a new object to
 * delete; NULL out of memory or out of range). */
struct cJSON;
RZ_HIDDEN struct cJSON *rz__run_step_json(const rz_run *run, size_t step);
/* The run as rz_run_to_json writes it, as a tree to delete (NULL: out of
 * memory): a caller that adds to it need not print and parse it again. */
RZ_HIDDEN struct cJSON *rz__run_json(const rz_run *run);

/* The inputs step `step` was given (rebuilt from the settled steps it
 * reads), as a new object to delete; NULL if it never started or they
 * cannot be built. For the run's record. */
RZ_HIDDEN struct cJSON *rz__run_step_inputs(const rz_run *run, size_t step);

/* When step `step` first started and last ended, in ms after the run was
 * created (its rz_run_new `now_ms`); false if it never started. */
RZ_HIDDEN bool rz__run_step_times(const rz_run *run, size_t step,
                                  uint64_t *started, uint64_t *ended);

#endif
