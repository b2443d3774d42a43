/* The run store's parts for the runner, which builds a record on its own
 * thread and writes it on another (lib/exec/runner.c). */
#ifndef RZ_STORE_IMPL_H
#define RZ_STORE_IMPL_H

#include <stdint.h>

#include "common/internal.h"
#include "rhizos/run.h"
#include "rhizos/store.h"

/* The record rz_store_run_put writes, as JSON; NULL when out of memory. */
RZ_HIDDEN char *rz__store_record(const rz_run *run, uint64_t started_ms,
                                 uint64_t finished_ms);

/* Writes rec (from rz__store_record; freed here) as run id's record, in
 * one durable commit. Reads nothing of a run, so it may run on any thread
 * that has st to itself. */
RZ_HIDDEN int rz__store_put_record(rz_store *st, const char *id,
                                   uint64_t started_ms, char *rec);

#endif
