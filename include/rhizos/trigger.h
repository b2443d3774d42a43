/* rhizos/trigger.h — cron schedules in an IANA time zone.
 *
 * Expressions (docs/triggers.md): five fields, minute (0-59) hour (0-23)
 * day-of-month (1-31) month (1-12 or JAN-DEC) day-of-week (0-7 or SUN-SAT,
 * 0 and 7 both Sunday); each a comma list of `*`, `N`, `A-B`, `A-B/S`,
 * `N/S` (N to the field's end, every S) or `*` with `/S` (every S).
 * Names are case-insensitive. The macros @yearly (@annually), @monthly,
 * @weekly, @daily (@midnight) and @hourly stand for "0 0 1 1 *",
 * "0 0 1 * *", "0 0 * * 0", "0 0 * * *" and "0 * * * *". As in Vixie cron,
 * when both day fields are restricted (neither starts with `*`) a day
 * matches if either does; otherwise both must.
 *
 * Time zones are read from the system's TZif files (TZDIR, else
 * /usr/share/zoneinfo), never through TZ/localtime, so any thread may parse
 * and compute; a parsed schedule is immutable and may be shared by threads.
 *
 * Daylight-saving time, cronie's rule: an expression whose minute or hour
 * field starts with `*` is a *wildcard* one and follows the wall clock (no
 * fire for local times a spring-forward skips; both passes of a repeated
 * hour fire). Any other is a *fixed-time* one: the times a spring-forward
 * skips fire once, at the instant the gap ends; a repeated local time fires
 * only on its first pass.
 *
 * Time is passed in: unix seconds (UTC), no clock is read. A flow's
 * triggers as written: rz_flow_triggers (rhizos/flow.h).
 */
#ifndef RHIZOS_TRIGGER_H
#define RHIZOS_TRIGGER_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_cron rz_cron;

typedef struct rz_cron_opts {
    unsigned version;       /* RZ_CRON_OPTS_VERSION */
    /* IANA zone ("Europe/Lisbon"); NULL, "", "UTC" or "Etc/UTC" is UTC
     * and needs no tzdata. */
    const char *tz;
    /* Folder of TZif files; NULL: $TZDIR, else /usr/share/zoneinfo. */
    const char *tzdir;
} rz_cron_opts;

#define RZ_CRON_OPTS_VERSION 1u
#define RZ_CRON_OPTS_INIT { RZ_CRON_OPTS_VERSION, NULL, NULL }

/* Parse `expr` (NUL-terminated) under opts (NULL: UTC). RZ_ESYNTAX for a
 * malformed expression, with rz_error_last()->column the 1-based column in
 * `expr` of the offending field; RZ_EINVALID for one that can never fire
 * ("0 0 30 2 *"); RZ_EINVAL for a malformed zone name; RZ_ENOENT for a zone
 * with no TZif file; RZ_EIO for an unreadable or malformed one. *out is
 * NULL on failure. */
RZ_EXTERN RZ_NODISCARD int rz_cron_parse(rz_cron **out, const char *expr,
                                         const rz_cron_opts *opts);
RZ_EXTERN void rz_cron_free(rz_cron *c);

/* The first fire time strictly after `after` (unix seconds) into *next.
 * RZ_ENOENT if there is none in the 30 years after `after` (a schedule that
 * parsed always has one: every calendar date recurs within 28 years). */
RZ_EXTERN RZ_NODISCARD int rz_cron_next(const rz_cron *c, int64_t after, int64_t *next);

/* `t` as local ISO 8601 in the schedule's zone, "2026-03-29T02:00:00+01:00",
 * into buf (at least RZ_CRON_TIME_MAX bytes). RZ_EINVAL if buf is too small
 * or t is outside years 1..9999. */
#define RZ_CRON_TIME_MAX 32u
RZ_EXTERN RZ_NODISCARD int rz_cron_format(const rz_cron *c, int64_t t, char *buf, size_t n);

/* The zone's UTC offset in seconds at instant `t` (east positive). */
RZ_EXTERN int32_t rz_cron_utc_offset(const rz_cron *c, int64_t t);

/* The zone's name as given ("UTC" for UTC). Borrowed: valid while c lives. */
RZ_EXTERN const char *rz_cron_zone(const rz_cron *c);

/* 1 if a fixed-time expression (DST rule above), 0 if a wildcard one. */
RZ_EXTERN int rz_cron_is_fixed(const rz_cron *c);

/* ---- Which fires run: the catch-up rule ------------------------------------
 * The rule a cron trigger follows after downtime (its `catchup:`,
 * docs/triggers.md), the same on an orchestrator and in `rhizos flow
 * serve`. Pure: time is passed in, nothing is read or written, so tests
 * drive it with a fake clock across a simulated outage. */
typedef enum rz_cron_catchup {
    RZ_CRON_CATCHUP_NONE = 0,   /* fires missed by more than the grace are dropped */
    RZ_CRON_CATCHUP_ONE,        /* all that are due run once, as the newest */
    RZ_CRON_CATCHUP_ALL         /* each due fire runs (at most `cap` a call) */
} rz_cron_catchup;

/* A fire is on time when it runs within this of its time; an older one was
 * missed (the server was down or stalled). */
#define RZ_CRON_GRACE_S 60
/* Due times walked in one call at most. */
#define RZ_CRON_WALK_MAX 100000u

/* The fire times (unix seconds) to run now, oldest first, of schedule `c`
 * whose fires up to `last` are done, at time `now`: into fires[cap]; their
 * count is returned. *missed: due fires that will never run (dropped, or
 * folded into one; a lower bound past RZ_CRON_WALK_MAX due). *new_last:
 * where the next call starts (the newest due time; with `all` and more than
 * cap due, the last one returned; `now` past RZ_CRON_WALK_MAX due). With
 * cap 0 nothing is returned and `one` folds nothing. */
RZ_EXTERN size_t rz_cron_plan(const rz_cron *c, int64_t last, int64_t now,
                              rz_cron_catchup catchup, int64_t *fires, size_t cap,
                              uint64_t *missed, int64_t *new_last);
/* "none", "one" or "all". */
RZ_EXTERN const char *rz_cron_catchup_name(rz_cron_catchup catchup);
/* A trigger's `catchup:` value: "none", "one" or "all"; NULL (not given)
 * is `one`, the default. RZ_EINVAL for another word (*out unchanged). */
RZ_EXTERN RZ_NODISCARD int rz_cron_catchup_parse(const char *s, rz_cron_catchup *out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_TRIGGER_H */
