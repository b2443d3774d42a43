/* Services and events in the run (docs/services.md), for the engine that
 * records them as step events and replays them.
 *
 * A step with kind: service runs until it ends; its dependants are told
 * it is ready (rz__run_service_ready; at its first start when it declares
 * no `ready: line`) and then start as if it had settled; its own end
 * settles it as any step's would (its dependants are not told twice). A
 * service restarts by its retries (restart: always also after a clean
 * exit). A step with `on: {event: steps.S.events.N}` is RUNNING from the
 * moment its other needs are met until S has settled and every event it
 * was given has been handled: each event S emits named N becomes one more
 * element task of it (event.id / .name / .data in its expressions),
 * started in the order S emitted them, at most max_parallel (default
 * RZ__EVENT_PARALLEL) at once; an element that fails after its retries is
 * dead-lettered: the others go on, and the step fails at its end (its
 * on_failure applies then). Events given before the step may run are kept
 * and made elements when it may. */
#ifndef RZ_RUN_SERVICE_H
#define RZ_RUN_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"
#include "rhizos/run.h"

#define RZ__EVENT_PARALLEL 4u
/* Events one listener is given at most (more are refused, RZ_ETOOBIG). */
#define RZ__RUN_EVENTS_MAX RZ_FLOW_FOR_EACH_MAX

/* Service `step` (RUNNING) is ready: 1 if its dependants were told now, 0
 * if they had been already; RZ_ESTATE if it is not a running service. */
RZ_HIDDEN int rz__run_service_ready(rz_run *run, size_t step, uint64_t now_ms);

/* Running service `step` emitted event `name` with `data_json` (NULL:
 * null), number `seq` (from 1) of its attempt `attempt` as its node counts
 * them: an event at or before the last one taken from that attempt is a
 * repeat (a node sends again what it is not sure arrived) and returns 1,
 * changing nothing; seq 0 is never a repeat. `key` (NULL: none) is the
 * service's own id of the event: one it gave before, in any attempt (a
 * service restarted elsewhere emitting its fills again), is a repeat too
 * (the first RZ__RUN_KEYS_MAX keys of a step are remembered). Its id is "<step>:<n>", n
 * counting the events taken from the step, from 1. *delivered (may be
 * NULL): the listeners that took it. RZ_EINVALID for data that is not
 * JSON, RZ_ESTATE if the step is not a running service (nothing changes
 * then), RZ_ETOOBIG if a listener holds RZ__RUN_EVENTS_MAX events already
 * (the others took it: the event happened). */
RZ_HIDDEN int rz__run_emit(rz_run *run, size_t step, uint32_t attempt,
                           uint32_t seq, const char *key, const char *name,
                           const char *data_json, uint64_t now_ms,
                           size_t *delivered);
#define RZ__RUN_KEYS_MAX 100000u

/* Running service `step` (or one waiting out its restart's backoff) is
 * stopped for good (its budget ran out): it fails with `reason`, not
 * restarted whatever its policy. RZ_ESTATE if it is not such a service
 * (nothing changes). */
RZ_HIDDEN int rz__run_service_stop(rz_run *run, size_t step, const char *reason,
                                   uint64_t now_ms);

/* Events service `step` emitted so far. */
RZ_HIDDEN uint32_t rz__run_events_emitted(const rz_run *run, size_t step);

#endif
