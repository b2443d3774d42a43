/* rhizos/store.h — durable records of runs in an LMDB environment.
 *
 * A store is a directory (created if missing). Records are written in one
 * transaction each; readers never block writers.
 */
#ifndef RHIZOS_STORE_H
#define RHIZOS_STORE_H

#include "rhizos/common.h"
#include "rhizos/run.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_store rz_store;

RZ_EXTERN RZ_NODISCARD int rz_store_open(rz_store **out, const char *dir);

/* Whether the LMDB database in folder `dir` (dir/data.mdb: a run store's,
 * or an engine's, ledger's or auth store's folder) is as long as its meta
 * page says. RZ_OK, also when there is none yet; RZ_EDB naming the file
 * when it is cut short or has no meta page (LMDB would die of SIGBUS
 * reading it). Reads two pages; opens and changes nothing. */
RZ_EXTERN RZ_NODISCARD int rz_store_check_file(const char *dir);
RZ_EXTERN void rz_store_close(rz_store *st);

/* Record (or replace) a run: its JSON as rz_run_to_json gives it, plus the
 * flow file and start/end wall-clock times in ms since the epoch. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_put(rz_store *st, const rz_run *run,
                                            uint64_t started_ms,
                                            uint64_t finished_ms);
/* Every recorded run, newest first, as a JSON array of
 * {"id","flow","file","status","started_ms","finished_ms","steps":N}.
 * Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_list(const rz_store *st, char **out);
/* The newest `limit` runs (0: all), the same way, reading only their
 * records (the time index orders them), and the number of runs recorded in
 * *total (may be NULL): listing 20 of 10,000 costs 20 reads. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_list_newest(const rz_store *st,
                                                    size_t limit, char **out,
                                                    size_t *total);
/* Retention: remove up to `budget` (at most 4,096) runs that ended before `before_ms`
 * (ms since the epoch; a run without an end counts from its start; one
 * still running is kept), oldest first, in one transaction; how many in
 * *removed. Call again while *removed == budget. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_prune(rz_store *st, uint64_t before_ms,
                                              size_t budget, size_t *removed);
/* Retention of file outputs (docs/flow-format.md, "File outputs"): the
 * blobs of DIR/blobs (DIR the store's folder) that no run record of this
 * store names (its steps' outputs, its step cache) removed, when last
 * written before `before_ms` and before the oldest run still going started
 * (what it made is in no record yet). A blob a record names is never
 * removed. How many and their bytes in *removed and *bytes. Call after
 * rz_store_run_prune. */
RZ_EXTERN RZ_NODISCARD int rz_store_blobs_sweep(rz_store *st, uint64_t before_ms,
                                                size_t *removed, uint64_t *bytes);
/* A new run id, as `rhizos flow run` and `rhizos ui` name runs: "run-",
 * the UTC date and time (YYYYMMDD-hhmmss) and four random hex digits, NUL
 * terminated in out (cap bytes, at least RZ_STORE_RUN_ID_LEN + 1). Two
 * runs started in the same second may draw the same digits: a caller that
 * must not reuse an id checks the ids it holds and draws again. RZ_EINVAL
 * (out unchanged) when cap is too small. */
#define RZ_STORE_RUN_ID_LEN 24
RZ_EXTERN RZ_NODISCARD int rz_store_run_id_make(char *out, size_t cap);

/* One run's full record. RZ_ENOENT if unknown. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_get(const rz_store *st, const char *id,
                                            char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_STORE_H */
