/* Internal to lib/trigger: time zones read from TZif files, civil calendar. */
#ifndef RZ_TRIGGER_IMPL_H
#define RZ_TRIGGER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"

/* A zone as offsets between transitions: off[i] holds from at[i] (UTC
 * seconds) until at[i+1]; off0 before at[0]. Transitions past the file's
 * table are generated from its POSIX TZ footer up to RZ__ZONE_LAST_YEAR;
 * after that the last offset holds. */
#define RZ__ZONE_LAST_YEAR 2200
typedef struct rz__zone {
    int64_t *at;
    int32_t *off;
    size_t n;
    int32_t off0;
} rz__zone;

/* Load zone `name` from folder `tzdir` (NULL: $TZDIR, else
 * /usr/share/zoneinfo). UTC (NULL, "", "UTC", "Etc/UTC") needs no file. */
RZ_HIDDEN int rz__zone_load(rz__zone *z, const char *name, const char *tzdir);
/* Parse a TZif image (tests feed made-up ones). */
RZ_HIDDEN int rz__zone_parse(rz__zone *z, const unsigned char *p, size_t len, const char *name);
RZ_HIDDEN void rz__zone_clear(rz__zone *z);
/* Index of the segment holding t: -1 for before at[0]. */
RZ_HIDDEN long rz__zone_segment(const rz__zone *z, int64_t t);
RZ_HIDDEN int32_t rz__zone_offset(const rz__zone *z, int64_t t);

/* Proleptic Gregorian calendar on days since 1970-01-01. */
RZ_HIDDEN int64_t rz__days_from_civil(int64_t y, unsigned m, unsigned d);
RZ_HIDDEN void rz__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
RZ_HIDDEN int64_t rz__floor_div(int64_t a, int64_t b);

/* Triggers as a flow writes them (either form, docs/triggers.md). */
typedef struct cJSON cJSON;
/* Its name: the given one, else "<type>-<index>"; NULL if not a trigger. */
RZ_HIDDEN char *rz__trigger_name(const cJSON *t, size_t index);
/* {"index","type","name","enabled", cron: "schedule","tz","catchup",
 * "overlap"; webhook: "secret" (a vault id),"max_body_bytes"; flow:
 * "flow","status"; event: "event"}; NULL when
 * malformed (the flow was not validated) or out of memory. */
RZ_HIDDEN cJSON *rz__trigger_normalize(const cJSON *t, size_t index);

#endif
