/* Folders and LMDB environments, opened the one way every area needs. */
#ifndef RZ_COMMON_FS_H
#define RZ_COMMON_FS_H

#include <lmdb.h>

#include "common/internal.h"

/* Create folder `path` (mode 0700) unless it exists; its parent must.
 * RZ_EIO naming the folder. */
RZ_HIDDEN int rz__mkdir(const char *path);
/* The same, creating missing parents too (mkdir -p). */
RZ_HIDDEN int rz__mkdirs(const char *path);

/* Whether dir/data.mdb (if there) is as long as its newest meta page says:
 * LMDB maps the file and would die of SIGBUS reading past a cut-off end.
 * RZ_OK, or RZ_EDB naming the file and both sizes. Call before opening. */
RZ_HIDDEN int rz__lmdb_check_file(const char *dir);

/* Open an LMDB environment in folder `dir` (which must exist): up to 8
 * named databases, `map_size` bytes, MDB_NOTLS | `flags`, reader slots that
 * killed processes left cleared; then, unless `n` is 0, open the `n`
 * databases `names` into `dbis` in one write transaction (MDB_CREATE;
 * with MDB_RDONLY in `flags`, a read transaction: they must exist).
 * Returns 0 or the LMDB error code, for the caller to word; on error *env
 * is closed and NULL. */
RZ_HIDDEN int rz__lmdb_open(MDB_env **env, const char *dir, size_t map_size,
                            unsigned flags, const char *const *names,
                            MDB_dbi *dbis, size_t n);

/* Where LMDB mapped env's data file (the shared mapping of its inode of at
 * least `map_size` bytes in /proc/self/maps; mdb_env_info's address is
 * only the fixed-map hint). *addr NULL when not found (not Linux). */
RZ_HIDDEN void rz__lmdb_map_find(MDB_env *env, size_t map_size, void **addr,
                                 size_t *len);
/* Drop that map's pages from the process's page tables (MADV_DONTNEED):
 * every page a read touched otherwise stays counted in RSS, which then
 * grows with the store. Safe on LMDB's read-only shared map without
 * MDB_WRITEMAP: the pages stay in the page cache (LMDB writes with pwrite)
 * and the next read faults them back in. addr NULL: nothing. */
RZ_HIDDEN void rz__lmdb_shed(void *addr, size_t len);
/* The page faults the process took so far (getrusage; 0 where it fails). */
RZ_HIDDEN uint64_t rz__lmdb_faults(void);

#endif
