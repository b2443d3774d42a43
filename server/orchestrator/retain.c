/* Retention (docs/scale.md "Retention"): work that finished longer ago
 * than --retention-days leaves the engine's store (rz_engine_compact);
 * in the same pass its logs, signed results and sealed credentials leave
 * the auth store, and a triggered run's record (d/<dep>) and the marks of
 * what it fired (o/<dep>/...) leave the flows store. A pass is bounded
 * (ORCH_RETAIN_BUDGET records, one write transaction in each store), run
 * from the one-second housekeeping timer: while there is more, the next
 * second takes the next batch; once a walk is through, the next starts a
 * quarter of the age later, at most ORCH_RETAIN_IDLE_MS.
 *
 * Crash story: the auth and flows stores' records go first (their own
 * commits, after a kept auth group's: auth_pass.c), then the
 * engine's. A crash between leaves jobs without their
 * logs that the next pass removes; never a log of a job that is gone. The
 * ledger is never written: its transfers stay, and a job whose hold is
 * open is never removed. */
#include <stdio.h>

#include "orch.h"

#define ORCH_RETAIN_BUDGET 256
#define ORCH_RETAIN_IDLE_MS 60000u

static int forget(void *userdata, const uint64_t *jobs, size_t n_jobs,
                  const uint64_t *deps, size_t n_deps)
{
    orch *o = userdata;
    orch_blobs_forget(o, jobs, n_jobs, deps, n_deps);
    return rz_auth_forget(o->auth, jobs, n_jobs, deps, n_deps) == RZ_OK &&
           flows_forget(o, deps, n_deps) == RZ_OK ? 0 : -1;
}

static uint64_t idle_ms(const orch *o)
{
    uint64_t q = o->opts.retention_ms / 4;
    return q < ORCH_RETAIN_IDLE_MS ? q : ORCH_RETAIN_IDLE_MS;
}

void orch_retain(orch *o, uint64_t now)
{
    if (!o->opts.retention_ms || o->grouped || o->stopping || now < o->retain_next)
        return;
    auth_settle(o);   /* the forgets below then go first, on their own */
    rz_engine_compacted c;
    if (rz_engine_compact(o->e, now, o->opts.retention_ms, ORCH_RETAIN_BUDGET,
                          forget, o, &c) != RZ_OK) {
        orch_log(o, ORCH_LOG_WARN, "retention_failed", "reason", LOG_STR,
                 rz_error_last()->message, NULL);
        o->retain_next = now + idle_ms(o);
        return;
    }
    o->retained = c;
    if (c.jobs || c.deployments || c.events)
        orch_log(o, ORCH_LOG_DEBUG, "retention_pass", "jobs", LOG_U64, c.jobs,
                 "deployments", LOG_U64, c.deployments, "events", LOG_U64, c.events,
                 NULL);
    o->retain_next = c.more ? now : now + idle_ms(o);
}
