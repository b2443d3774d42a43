/* What a local node needs of fanout.c: which task of its deployment's run a
 * job runs (a for_each element's task is not its step). */
#ifndef RZ_ENGINE_FANOUT_H
#define RZ_ENGINE_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"
#include "rhizos/engine.h"

/* The task of the deployment's run that job `job` runs; RZ_NPOS if it is
 * no live deployment job. */
RZ_HIDDEN size_t rz__engine_job_task(const rz_engine *e, uint64_t job);

#endif
