/* What changed in a run since its owner last looked (lib/run/run.c), so the
 * engine and the local runner follow a run of N steps in O(changes) per
 * event instead of comparing every step. */
#ifndef RZ_RUN_CHANGES_H
#define RZ_RUN_CHANGES_H

#include <stddef.h>

#include "common/internal.h"
#include "rhizos/run.h"

/* Two readers follow a run's changes, each on its own: the engine that
 * drives it and the embedded runner that shares it (rz_engine_replica's
 * `share`). */
enum { RZ__RUN_ENGINE = 0, RZ__RUN_OWNER = 1, RZ__RUN_READERS = 2 };

/* The steps whose state changed since `reader`'s last call (since
 * rz_run_new for the first), each once, in index order; *steps is valid
 * until its next call. Their current states are rz_run_step_state's. */
RZ_HIDDEN size_t rz__run_take_changes(rz_run *run, unsigned reader,
                                      const size_t **steps);
/* Tasks RUNNING now, for_each steps aside (their elements count). */
RZ_HIDDEN size_t rz__run_started(const rz_run *run);

/* Step `step` as rz_run_to_json writes it under "steps" (a new object to
 * delete; NULL out of memory or out of range). */
struct cJSON;
RZ_HIDDEN struct cJSON *rz__run_step_json(const rz_run *run, size_t step);
/* The same without a for_each step's "elements" (O(1), not O(elements)):
 * for a stream of changes, where every element's change names its step. */
RZ_HIDDEN struct cJSON *rz__run_step_json_brief(const rz_run *run, size_t step);
/* The run as rz_run_to_json writes it, as a tree to delete (NULL: out of
 * memory): a caller that adds to it need not print and parse it again. */
RZ_HIDDEN struct cJSON *rz__run_json(const rz_run *run);
/* The same without "steps" (every other member, in the same order): for a
 * caller that writes the steps one at a time. */
RZ_HIDDEN struct cJSON *rz__run_json_summary(const rz_run *run);

#endif
