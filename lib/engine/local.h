/* The engine's internal calls for the embedded runner (lib/exec/runner.c). */
#ifndef RZ_ENGINE_LOCAL_H
#define RZ_ENGINE_LOCAL_H

#include "common/internal.h"
#include "rhizos/engine.h"

/* rz_engine_reuse_map with the deployment's own results named `own`
 * followed by the step's id ("run <id> step S") instead of "deployment N
 * step S": the runner's record takes the text as it is, not parsed and
 * printed again (at 100,000 steps each copy is ~15 MB). */
RZ_HIDDEN int rz__engine_reuse_map_named(const rz_engine *e, uint64_t deployment,
                                         const char *own, char **json);

#endif
