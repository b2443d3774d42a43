/* Which cron fires are due, and which of them run, by the catch-up rule
 * (docs/triggers.md). Pure: time is passed in, nothing is read or written,
 * so tests drive it with a fake clock across a simulated outage. */
#include <stdbool.h>

#include "trigplan.h"

size_t trig_plan(const rz_cron *c, int64_t last, int64_t now, trig_catchup catchup,
                 int64_t *fires, size_t cap, uint64_t *missed, int64_t *new_last)
{
    size_t n = 0;
    uint64_t due = 0;
    int64_t t = last, newest = last;
    *missed = 0;
    *new_last = last;
    /* Walk the due times; a long outage of a frequent schedule is cut at
     * TRIG_WALK_MAX (its missed count is then a lower bound). */
    while (due < TRIG_WALK_MAX) {
        int64_t nx;
        if (rz_cron_next(c, t, &nx) != RZ_OK || nx > now)
            break;
        t = nx;
        due++;
        bool late = nx < now - TRIG_GRACE_S;
        switch (catchup) {
        case TRIG_CATCHUP_NONE:
            if (late)
                (*missed)++;
            else if (n < cap)
                fires[n++] = nx;
            break;
        case TRIG_CATCHUP_ONE:
            newest = nx;
            break;
        case TRIG_CATCHUP_ALL:
            if (n < cap) {
                fires[n++] = nx;
            } else {        /* the rest on the next pass, from here */
                *new_last = fires[n - 1];
                return n;
            }
            break;
        }
    }
    if (catchup == TRIG_CATCHUP_ONE && due && cap) {
        fires[n++] = newest;
        *missed = due - 1;
    }
    *new_last = due >= TRIG_WALK_MAX ? now : (due ? t : last);
    return n;
}

const char *trig_catchup_name(trig_catchup c)
{
    return c == TRIG_CATCHUP_NONE ? "none" : c == TRIG_CATCHUP_ALL ? "all" : "one";
}
