/* Which cron fires are due, and which of them run, by the catch-up rule
 * (rhizos/trigger.h, docs/triggers.md). Pure: time is passed in, nothing
 * is read or written, so tests drive it with a fake clock across a
 * simulated outage. */
#include <stdbool.h>
#include <string.h>

#include "rhizos/trigger.h"
#include "trigger/trigger_impl.h"

size_t rz_cron_plan(const rz_cron *c, int64_t last, int64_t now, rz_cron_catchup catchup,
                 int64_t *fires, size_t cap, uint64_t *missed, int64_t *new_last)
{
    size_t n = 0;
    uint64_t due = 0;
    int64_t t = last, newest = last;
    *missed = 0;
    *new_last = last;
    /* Walk the due times; a long outage of a frequent schedule is cut at
     * RZ_CRON_WALK_MAX (its missed count is then a lower bound). */
    while (due < RZ_CRON_WALK_MAX) {
        int64_t nx;
        if (rz_cron_next(c, t, &nx) != RZ_OK || nx > now)
            break;
        t = nx;
        due++;
        bool late = nx < now - RZ_CRON_GRACE_S;
        switch (catchup) {
        case RZ_CRON_CATCHUP_NONE:
            if (late)
                (*missed)++;
            else if (n < cap)
                fires[n++] = nx;
            break;
        case RZ_CRON_CATCHUP_ONE:
            newest = nx;
            break;
        case RZ_CRON_CATCHUP_ALL:
            if (n < cap) {
                fires[n++] = nx;
            } else {        /* the rest on the next pass, from here */
                *new_last = fires[n - 1];
                return n;
            }
            break;
        }
    }
    if (catchup == RZ_CRON_CATCHUP_ONE && due && cap) {
        fires[n++] = newest;
        *missed = due - 1;
    }
    *new_last = due >= RZ_CRON_WALK_MAX ? now : (due ? t : last);
    return n;
}

const char *rz_cron_catchup_name(rz_cron_catchup c)
{
    return c == RZ_CRON_CATCHUP_NONE ? "none" : c == RZ_CRON_CATCHUP_ALL ? "all" : "one";
}

int rz_cron_catchup_parse(const char *s, rz_cron_catchup *out)
{
    rz_cron_catchup c = !s || !strcmp(s, "one") ? RZ_CRON_CATCHUP_ONE
                      : !strcmp(s, "none") ? RZ_CRON_CATCHUP_NONE
                      : !strcmp(s, "all") ? RZ_CRON_CATCHUP_ALL : (rz_cron_catchup)-1;
    if ((int)c < 0)
        return rz__error(RZ_EINVAL, "catchup is none, one or all, not '%.40s'", s);
    if (out)
        *out = c;
    return RZ_OK;
}
