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
 * {"id","flow","file","status","started_ms","finished_ms","steps":N}, and
 * "process_gone": true for a run recorded as "running" whose process is
 * gone (killed: it will never write its end). Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_list(const rz_store *st, char **out);
/* The newest `limit` runs (0: all), the same way, reading only their
 * records (the time index orders them), and the number of runs recorded in
 * *total (may be NULL): listing 20 of 10,000 costs 20 reads. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_list_newest(const rz_store *st,
                                                    size_t limit, char **out,
                                                    size_t *total);
/* Retention: remove up to `budget` (at most 4,096) runs that ended before `before_ms`
 * (ms since the epoch; a run without an end counts from its start; one
 * still running is kept, but one whose record says "running" while its
 * process is gone, killed, counts from its start), oldest first, in one
 * transaction; how many in *removed. Call again while *removed == budget.
 *
 * A store that writes a record saying its run is going holds a lock for
 * that run (DIR/running/<hash of the id>.lock) until it writes one saying
 * the run ended, or is closed: the kernel lets it go with a killed
 * process, which is how a run killed is told from one going. */
RZ_EXTERN RZ_NODISCARD int rz_store_run_prune(rz_store *st, uint64_t before_ms,
                                              size_t budget, size_t *removed);
/* Retention of file outputs (docs/flow-format.md, "File outputs"): the
 * blobs of DIR/blobs (DIR the store's folder) that no run record of this
 * store names (its steps' outputs, its step cache) removed, when last
 * written before `before_ms` and before the oldest run still going started
 * (what it made is in no record yet; a run killed is not going). A blob a
 * record names is never removed. How many and their bytes in *removed and *bytes. Call after
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

/* One run's full record. RZ_ENOENT if unknown. Release with rz_free. A
 * record that says "running" while its run's process is gone (killed: it
 * will never write its end) gets "process_gone": true as its last member,
 * as rz_store_run_list tells it: told only when no one held the run's lock
 * and the record read again after that was the same (a run that ends lets
 * its lock go after its last record). */
RZ_EXTERN RZ_NODISCARD int rz_store_run_get(const rz_store *st, const char *id,
                                            char **out);
/* For run `id` whose record says "running": 1 when no one holds its lock
 * now (see rz_store_run_prune), 0 while it goes. Reads no record: a run
 * that ended holds no lock either, so ask only of a "running" one, and
 * read the record again after asking (rz_store_run_get does both). */
RZ_EXTERN int rz_store_run_process_gone(const rz_store *st, const char *id);

/* ---- Content-addressed files: the blob store of file outputs ----
 * The store lib/store/blob.c keeps for `type: file` outputs (folder DIR:
 * DIR/sha256/<2 hex>/<64 hex>, read-only), for a program that moves blobs
 * in parts (the node and the orchestrator): bytes written to a writer go
 * to a temporary file in DIR, hashed as they come; a commit checks the
 * digest and renames the file into place. Nothing is held in memory but a
 * hash state. */
#define RZ_BLOB_HEX_LEN 64
typedef struct rz_blob_writer rz_blob_writer;
/* A writer into folder `dir` (created if missing) of at most `max` bytes.
 * RZ_EIO when the temporary file cannot be made. */
RZ_EXTERN RZ_NODISCARD int rz_blob_writer_open(rz_blob_writer **out, const char *dir,
                                               uint64_t max);
/* Appends `len` bytes. RZ_ETOOBIG past the writer's `max` (nothing of
 * them written), RZ_EIO for a write that failed. */
RZ_EXTERN RZ_NODISCARD int rz_blob_writer_write(rz_blob_writer *w, const void *data,
                                                size_t len);
/* Bytes written so far. */
RZ_EXTERN uint64_t rz_blob_writer_size(const rz_blob_writer *w);
/* Ends the file: its SHA-256 (lowercase hex) must be `expect_hex` (NULL:
 * any), else RZ_EINVALID and nothing is stored. On RZ_OK the blob is in
 * the store (an equal one already there is kept) and its digest is in
 * `hex` (may be NULL; 65 bytes). The writer takes nothing more but must
 * still be freed. */
RZ_EXTERN RZ_NODISCARD int rz_blob_writer_commit(rz_blob_writer *w,
                                                 const char *expect_hex, char *hex);
/* Frees the writer; an uncommitted one's temporary file is removed. NULL
 * is fine. */
RZ_EXTERN void rz_blob_writer_free(rz_blob_writer *w);
/* Opens blob `hex` of the store in `dir` for reading: *fd (the caller
 * closes it) and *size. RZ_EINVAL for a string that is not 64 lowercase
 * hex digits, RZ_ENOENT when the store has no such blob. */
RZ_EXTERN RZ_NODISCARD int rz_blob_open(const char *dir, const char *hex, int *fd,
                                        uint64_t *size);
/* Whether `hex` is a SHA-256 digest as the store names blobs: 64
 * lowercase hex digits. */
RZ_EXTERN int rz_blob_hex_ok(const char *hex);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_STORE_H */
