/* The run store's parts for the runner (lib/exec/runner.c), which builds a
 * small record on its own thread and writes it on another, and writes a big
 * one in parts. */
#ifndef RZ_STORE_IMPL_H
#define RZ_STORE_IMPL_H

#include <stdint.h>

#include "common/internal.h"
#include "rhizos/run.h"
#include "rhizos/store.h"

/* The record rz_store_run_put writes, as JSON, with `extra` (",..."
 * members, or NULL) before its end; NULL when out of memory. For a record
 * the runner writes on another thread while the run goes on. */
RZ_HIDDEN char *rz__store_record(const rz_run *run, uint64_t started_ms,
                                 uint64_t finished_ms, const char *extra);

/* Writes rec (from rz__store_record; freed here) as run id's record, in
 * one durable commit. Reads nothing of a run, so it may run on any thread
 * that has st to itself. */
RZ_HIDDEN int rz__store_put_record(rz_store *st, const char *id,
                                   uint64_t started_ms, char *rec);

/* rz_store_run_put with `extra` as in rz__store_record: the record is
 * written in parts straight into the store (never whole in memory beside
 * LMDB's own copy), so the run must not change until it returns. */
RZ_HIDDEN int rz__store_put_run(rz_store *st, const rz_run *run,
                                uint64_t started_ms, uint64_t finished_ms,
                                const char *extra);

#endif
