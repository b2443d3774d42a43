/* Which runs a record says are going still have a process (run_lock.c).
 *
 * A record written while its run goes says "status":"running"; a run
 * killed (SIGKILL, a crash, a power cut) keeps saying so. The store that
 * writes such a record holds a lock for the run while its record says so:
 * DIR/running/<hash of the id>.lock, an open file description lock
 * (F_OFD_SETLK) taken before that record is committed and let go after
 * the run's final record is. The kernel lets it go with the last
 * descriptor of the process, so a record that says "running" while no one
 * holds its lock is a run whose process is gone. Other processes ask
 * without taking it (F_OFD_GETLK), so asking never stands in a run's way.
 */
#ifndef RZ_STORE_RUN_LOCK_H
#define RZ_STORE_RUN_LOCK_H

#include <stdbool.h>

#include "common/internal.h"

typedef struct rz__run_locks rz__run_locks;

/* The locks a store holds, in folder DIR/running (made when first
 * needed). NULL when out of memory. */
RZ_HIDDEN rz__run_locks *rz__run_locks_new(const char *dir);
/* Every lock let go (and its file removed), then freed; NULL is fine. */
RZ_HIDDEN void rz__run_locks_free(rz__run_locks *l);
/* Holds run id's lock (already held: nothing to do). RZ_OK, or an error
 * when the folder or file cannot be made or another process holds it (a
 * run of the same id going there). Safe from several threads. */
RZ_HIDDEN int rz__run_lock_take(rz__run_locks *l, const char *id);
/* Lets run id's lock go and removes its file (not held: nothing). */
RZ_HIDDEN void rz__run_lock_drop(rz__run_locks *l, const char *id);
/* Whether any process (this one included) holds run id's lock in DIR's
 * store. True when that cannot be told (so a caller errs on keeping). */
RZ_HIDDEN bool rz__run_lock_held(const char *dir, const char *id);
/* The file of run id's lock in DIR's store removed if no one holds it (a
 * killed run's, once its record is gone): taken first, so a run of that
 * id starting meanwhile keeps its own. */
RZ_HIDDEN void rz__run_lock_clear(const char *dir, const char *id);

#endif
