/* The catch-up rule of cron triggers (trigplan.c). */
#ifndef RZ_ORCH_TRIGPLAN_H
#define RZ_ORCH_TRIGPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/trigger.h"

typedef enum trig_catchup {
    TRIG_CATCHUP_NONE = 0,   /* fires missed by more than the grace are dropped */
    TRIG_CATCHUP_ONE,        /* all that are due run once, as the newest */
    TRIG_CATCHUP_ALL         /* each due fire runs (at most `cap` a pass) */
} trig_catchup;

/* A fire is on time when it runs within this of its time; an older one was
 * missed (the orchestrator was down or stalled). */
#define TRIG_GRACE_S 60
/* Due times walked in one pass at most. */
#define TRIG_WALK_MAX 100000u

/* The fire times (unix seconds) to run now, oldest first, of the schedule
 * whose fires up to `last` are done, at time `now`: into fires[cap]; their
 * count is returned. *missed: due fires that will never run (dropped or
 * folded into one). *new_last: where the next pass starts (the newest due
 * time; with `all` and more than cap due, the last one returned). */
size_t trig_plan(const rz_cron *c, int64_t last, int64_t now, trig_catchup catchup,
                 int64_t *fires, size_t cap, uint64_t *missed, int64_t *new_last);
const char *trig_catchup_name(trig_catchup c);

#endif
