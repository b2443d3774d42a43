/* Cron schedules: published cases, errors with columns, DST in several
 * zones by hand, and a year of fire times per expression and zone checked
 * minute by minute against glibc's own reading of the same tzdata. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rhizos/rhizos.h"
#include "helpers.h"

/* "2026-03-29T01:00" (UTC) -> unix seconds. */
static int64_t utc(const char *s)
{
    struct tm tm = {0};
    assert_int_equal(sscanf(s, "%d-%d-%dT%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min), 5);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static rz_cron *cron_in(const char *expr, const char *tz)
{
    rz_cron_opts o = RZ_CRON_OPTS_INIT;
    o.tz = tz;
    rz_cron *c = NULL;
    int rc = rz_cron_parse(&c, expr, &o);
    if (rc != RZ_OK)
        fail_msg("%s in %s: %s", expr, tz ? tz : "UTC", rz_error_last()->message);
    return c;
}

static bool have_tzdata(void)
{
    return access("/usr/share/zoneinfo/Europe/Lisbon", R_OK) == 0;
}

/* Fires after `from` (UTC), each as local ISO 8601 in the schedule's zone. */
static void expect_fires(const char *expr, const char *tz, const char *from,
                         const char *const *want, size_t n)
{
    rz_cron *c = cron_in(expr, tz);
    int64_t t = utc(from);
    for (size_t i = 0; i < n; i++) {
        char buf[RZ_CRON_TIME_MAX];
        assert_int_equal(rz_cron_next(c, t, &t), RZ_OK);
        assert_int_equal(rz_cron_format(c, t, buf, sizeof buf), RZ_OK);
        if (strcmp(buf, want[i]) != 0)
            fail_msg("'%s' in %s, fire %zu after %s: got %s, want %s", expr,
                     tz ? tz : "UTC", i + 1, from, buf, want[i]);
    }
    rz_cron_free(c);
}

#define FIRES(expr, tz, from, ...) do { \
    static const char *const w_[] = {__VA_ARGS__}; \
    expect_fires(expr, tz, from, w_, sizeof w_ / sizeof *w_); \
} while (0)

/* The examples of crontab(5) (Vixie/cronie) and other well-known ones.
 * 2026-01-01 is a Thursday. */
static void published_cases(void **state)
{
    (void)state;
    /* crontab(5): "run five minutes after midnight, every day" */
    FIRES("5 0 * * *", NULL, "2026-01-01T00:00", "2026-01-01T00:05:00+00:00",
          "2026-01-02T00:05:00+00:00");
    /* "run at 2:15pm on the first of every month" */
    FIRES("15 14 1 * *", NULL, "2026-01-01T15:00", "2026-02-01T14:15:00+00:00",
          "2026-03-01T14:15:00+00:00");
    /* "run at 10 pm on weekdays" */
    FIRES("0 22 * * 1-5", NULL, "2026-01-02T23:00", "2026-01-05T22:00:00+00:00",
          "2026-01-06T22:00:00+00:00");
    /* "23 minutes after midn, 2am, 4am ..., everyday" */
    FIRES("23 0-23/2 * * *", NULL, "2026-01-01T00:00", "2026-01-01T00:23:00+00:00",
          "2026-01-01T02:23:00+00:00", "2026-01-01T04:23:00+00:00");
    /* "run at 5 after 4 every sunday" */
    FIRES("5 4 * * sun", NULL, "2026-01-01T00:00", "2026-01-04T04:05:00+00:00",
          "2026-01-11T04:05:00+00:00");
    /* "30 4 1,15 * 5": 4:30 on the 1st and 15th, and every Friday (OR) */
    FIRES("30 4 1,15 * 5", NULL, "2026-01-01T05:00", "2026-01-02T04:30:00+00:00",
          "2026-01-09T04:30:00+00:00", "2026-01-15T04:30:00+00:00",
          "2026-01-16T04:30:00+00:00");
    /* both day fields restricted: OR (Fridays, and the 13th) */
    FIRES("0 0 13 * 5", NULL, "2026-01-01T00:00", "2026-01-02T00:00:00+00:00",
          "2026-01-09T00:00:00+00:00", "2026-01-13T00:00:00+00:00",
          "2026-01-16T00:00:00+00:00");
    /* a day field starting with `*` makes it AND: the 1st, 14th or 27th, on a Friday */
    FIRES("0 0 */13 * 5", NULL, "2026-01-01T00:00", "2026-02-27T00:00:00+00:00",
          "2026-03-27T00:00:00+00:00");
    FIRES("*/15 9-10 * * mon-fri", NULL, "2026-01-02T10:40", "2026-01-02T10:45:00+00:00",
          "2026-01-05T09:00:00+00:00");
    FIRES("0 0 29 2 *", NULL, "2026-01-01T00:00", "2028-02-29T00:00:00+00:00",
          "2032-02-29T00:00:00+00:00");
    FIRES("0 12 * * 7", NULL, "2026-01-01T00:00", "2026-01-04T12:00:00+00:00");
    FIRES("0 12 * JAN,jul SUN", NULL, "2026-01-26T00:00", "2026-07-05T12:00:00+00:00");
    FIRES("5/20 * * * *", NULL, "2026-01-01T00:00", "2026-01-01T00:05:00+00:00",
          "2026-01-01T00:25:00+00:00", "2026-01-01T00:45:00+00:00",
          "2026-01-01T01:05:00+00:00");
    FIRES("59 23 31 12 *", NULL, "2026-12-31T23:59", "2027-12-31T23:59:00+00:00");
    FIRES("@hourly", NULL, "2026-01-01T00:00", "2026-01-01T01:00:00+00:00");
    FIRES("@daily", NULL, "2026-01-01T00:00", "2026-01-02T00:00:00+00:00");
    FIRES("@midnight", NULL, "2026-01-01T00:00", "2026-01-02T00:00:00+00:00");
    FIRES("@weekly", NULL, "2026-01-01T00:00", "2026-01-04T00:00:00+00:00");
    FIRES("@monthly", NULL, "2026-01-01T00:00", "2026-02-01T00:00:00+00:00");
    FIRES("@yearly", NULL, "2026-01-01T00:00", "2027-01-01T00:00:00+00:00");
    FIRES("@ANNUALLY", NULL, "2026-01-01T00:00", "2027-01-01T00:00:00+00:00");
    FIRES("  * * * * *  ", NULL, "2026-01-01T00:00", "2026-01-01T00:01:00+00:00");
    /* strictly after: a fire time given as `after` is not returned again */
    rz_cron *c = cron_in("0 * * * *", NULL);
    int64_t t;
    assert_int_equal(rz_cron_next(c, utc("2026-01-01T01:00"), &t), RZ_OK);
    assert_int_equal(t, utc("2026-01-01T02:00"));
    assert_int_equal(rz_cron_next(c, utc("2026-01-01T01:00") - 1, &t), RZ_OK);
    assert_int_equal(t, utc("2026-01-01T01:00"));
    /* before 1970 too */
    assert_int_equal(rz_cron_next(c, utc("1969-12-31T23:30"), &t), RZ_OK);
    assert_int_equal(t, 0);
    assert_int_equal(rz_cron_is_fixed(c), 0);
    assert_string_equal(rz_cron_zone(c), "UTC");
    rz_cron_free(c);
}

static void expect_error(const char *expr, int code, uint32_t column, const char *msg)
{
    rz_cron *c = (rz_cron *)1;
    assert_int_equal(rz_cron_parse(&c, expr, NULL), code);
    assert_null(c);
    const rz_error *e = rz_error_last();
    if (column && e->column != column)
        fail_msg("'%s': column %u, want %u (%s)", expr, e->column, column, e->message);
    if (!strstr(e->message, msg))
        fail_msg("'%s': message '%s' lacks '%s'", expr, e->message, msg);
}

static void errors_are_located(void **state)
{
    (void)state;
    expect_error("61 * * * *", RZ_ESYNTAX, 1, "the minute field: 61 is out of range 0-59");
    expect_error("0 24 * * *", RZ_ESYNTAX, 3, "the hour field: 24 is out of range 0-23");
    expect_error("0 0 0 * *", RZ_ESYNTAX, 5, "day-of-month field: 0 is out of range 1-31");
    expect_error("0 0 * 13 *", RZ_ESYNTAX, 7, "month field: 13 is out of range 1-12");
    expect_error("0 0 * * 8", RZ_ESYNTAX, 9, "day-of-week field: 8 is out of range 0-7");
    expect_error("* *", RZ_ESYNTAX, 4, "2 fields, cron wants 5");
    expect_error("", RZ_ESYNTAX, 1, "0 fields, cron wants 5");
    expect_error("* * * * * *", RZ_ESYNTAX, 11, "more than 5 fields");
    expect_error("*/0 * * * *", RZ_ESYNTAX, 3, "a step from 1 to 60");
    expect_error("5-1 * * * *", RZ_ESYNTAX, 1, "range 5-1 runs backwards");
    expect_error("1,,2 * * * *", RZ_ESYNTAX, 3, "empty item in the minute field");
    expect_error("0 0 * foo *", RZ_ESYNTAX, 7, "the month field wants a number or a name");
    expect_error("0 0 * * mon-", RZ_ESYNTAX, 13, "after '-'");
    expect_error("1x * * * *", RZ_ESYNTAX, 2, "unexpected 'x' in the minute field");
    expect_error("? * * * *", RZ_ESYNTAX, 1, "the minute field wants a number");
    expect_error("@reboot", RZ_ESYNTAX, 1, "unknown macro '@reboot'");
    expect_error("@daily 5", RZ_ESYNTAX, 7, "nothing may follow a macro");
    expect_error("0 0 30 2 *", RZ_EINVALID, 5, "never fires");
    expect_error("0 0 31 4,6,9,11 *", RZ_EINVALID, 5, "never fires");
    /* ...but day-of-week makes it OR, so this one fires on Mondays */
    rz_cron *c = NULL;
    assert_int_equal(rz_cron_parse(&c, "0 0 30 2 1", NULL), RZ_OK);
    rz_cron_free(c);
    rz_cron_free(NULL);

    rz_cron_opts o = RZ_CRON_OPTS_INIT;
    o.tz = "../../etc/passwd";
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_EINVAL);
    assert_null(c);
    o.tz = "Europe/../Europe/Lisbon";
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_EINVAL);
    o.tz = "/etc/localtime";
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_EINVAL);
    o.tz = "Nowhere/Atlantis";
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_ENOENT);
    assert_non_null(strstr(rz_error_last()->message, "unknown time zone 'Nowhere/Atlantis'"));
    if (have_tzdata()) {
        o.tz = "Europe";
        assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_ENOENT);
    }
    /* a file that is not TZif, in a zone folder of our own */
    char dir[64];
    assert_non_null(tmp_dir_make(dir, sizeof dir, "tz"));
    char path[128];
    snprintf(path, sizeof path, "%s/Bad", dir);
    file_write(path, "TZif2 but cut short");
    o.tz = "Bad";
    o.tzdir = dir;
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_EIO);
    assert_non_null(strstr(rz_error_last()->message, "not a valid TZif file"));
    assert_int_equal(tmp_dir_remove(dir), 0);
    o.version = 99;
    assert_int_equal(rz_cron_parse(&c, "* * * * *", &o), RZ_EINVAL);
}

/* DST by hand. Lisbon 2026: 01:00 WET -> 02:00 WEST on 29 March (01:00Z);
 * 02:00 WEST -> 01:00 WET on 25 October (01:00Z). New York: 02:00 EST ->
 * 03:00 EDT on 8 March (07:00Z); 02:00 EDT -> 01:00 EST on 1 November. */
static void dst_rules(void **state)
{
    (void)state;
    if (!have_tzdata()) {
        skip();
    }
    /* fixed time in the gap: once, when the gap ends */
    FIRES("30 1 * * *", "Europe/Lisbon", "2026-03-28T00:00", "2026-03-28T01:30:00+00:00",
          "2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00");
    /* two fixed times in one gap still fire once */
    FIRES("15,45 1 * * *", "Europe/Lisbon", "2026-03-28T12:00",
          "2026-03-29T02:00:00+01:00", "2026-03-30T01:15:00+01:00");
    /* a fixed time at the gap's end fires once, not twice */
    FIRES("0,30 1,2 * * *", "Europe/Lisbon", "2026-03-28T12:00",
          "2026-03-29T02:00:00+01:00", "2026-03-29T02:30:00+01:00",
          "2026-03-30T01:00:00+01:00");
    /* wildcard: the skipped hour has no fires */
    FIRES("*/30 * * * *", "Europe/Lisbon", "2026-03-29T00:00", "2026-03-29T00:30:00+00:00",
          "2026-03-29T02:00:00+01:00", "2026-03-29T02:30:00+01:00");
    /* fixed time in the repeated hour: its first pass only */
    FIRES("30 1 * * *", "Europe/Lisbon", "2026-10-24T12:00", "2026-10-25T01:30:00+01:00",
          "2026-10-26T01:30:00+00:00");
    /* wildcard: both passes */
    FIRES("*/30 1 * * *", "Europe/Lisbon", "2026-10-24T12:00", "2026-10-25T01:00:00+01:00",
          "2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00",
          "2026-10-25T01:30:00+00:00", "2026-10-26T01:00:00+00:00");
    FIRES("30 2 * * *", "America/New_York", "2026-03-07T12:00", "2026-03-08T03:00:00-04:00",
          "2026-03-09T02:30:00-04:00");
    FIRES("30 1 * * *", "America/New_York", "2026-10-31T12:00", "2026-11-01T01:30:00-04:00",
          "2026-11-02T01:30:00-05:00");
    /* half-hour shifts (Lord Howe: +11 -> +10:30 on 5 April 2026, 02:00) */
    FIRES("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00",
          "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30");
    /* no DST at all, and an offset that is not whole hours */
    FIRES("0 9 * * *", "Asia/Kolkata", "2026-06-01T00:00", "2026-06-01T09:00:00+05:30");
    /* past the file's table (2037): the POSIX rule in its footer */
    FIRES("30 2 * * *", "America/New_York", "2050-03-12T12:00", "2050-03-13T03:00:00-04:00",
          "2050-03-14T02:30:00-04:00");
    rz_cron *c = cron_in("0 3 * * *", "Europe/Lisbon");
    assert_int_equal(rz_cron_is_fixed(c), 1);
    assert_int_equal(rz_cron_utc_offset(c, utc("2026-07-01T00:00")), 3600);
    assert_int_equal(rz_cron_utc_offset(c, utc("2026-12-01T00:00")), 0);
    assert_int_equal(rz_cron_utc_offset(c, utc("2099-07-01T00:00")), 3600);
    assert_string_equal(rz_cron_zone(c), "Europe/Lisbon");
    rz_cron_free(c);
}

/* ---- a year, minute by minute, against glibc ---- */

typedef struct wall {
    int16_t year;
    int8_t mon, mday, hour, min, wday;
} wall;

static bool fields_match(const char *spec, int v, int lo)
{
    /* the reference's own tiny matcher: lists of N, A-B, *, with /S */
    char buf[64];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *el = strtok_r(buf, ",", &save); el; el = strtok_r(NULL, ",", &save)) {
        int a = lo, b = 99, s = 1;
        char *slash = strchr(el, '/');
        if (slash) {
            s = atoi(slash + 1);
            *slash = '\0';
        }
        if (strcmp(el, "*") != 0) {
            a = atoi(el);
            char *dash = strchr(el, '-');
            b = dash ? atoi(dash + 1) : (slash ? 99 : a);
        }
        if (v >= a && v <= b && (v - a) % s == 0)
            return true;
    }
    return false;
}

typedef struct ref {
    uint64_t bits[5];
    bool or_days;
} ref;

static void ref_compile(ref *r, char f[5][64])
{
    static const int lo[5] = {0, 0, 1, 1, 0};
    for (int k = 0; k < 5; k++) {
        r->bits[k] = 0;
        for (int v = lo[k]; v < 64; v++)
            if (fields_match(f[k], v, lo[k]))
                r->bits[k] |= 1ULL << v;
    }
    r->bits[4] |= r->bits[4] >> 7 & 1;     /* 7 is Sunday */
    r->or_days = f[2][0] != '*' && f[4][0] != '*';
}

static bool ref_match(const ref *r, const wall *w)
{
    bool dom = r->bits[2] >> w->mday & 1, dow = r->bits[4] >> w->wday & 1;
    return (r->bits[0] >> w->min & 1) && (r->bits[1] >> w->hour & 1)
        && (r->bits[3] >> w->mon & 1) && (r->or_days ? dom || dow : dom && dow);
}

static int64_t wall_key(const wall *w)
{
    return ((((int64_t)w->year * 13 + w->mon) * 32 + w->mday) * 24 + w->hour) * 60 + w->min;
}

static void wall_next_minute(wall *w)
{
    struct tm tm = {.tm_year = w->year - 1900, .tm_mon = w->mon - 1, .tm_mday = w->mday,
                    .tm_hour = w->hour, .tm_min = w->min + 1};
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    *w = (wall){(int16_t)(tm.tm_year + 1900), (int8_t)(tm.tm_mon + 1), (int8_t)tm.tm_mday,
                (int8_t)tm.tm_hour, (int8_t)tm.tm_min, (int8_t)tm.tm_wday};
}

static void year_against_glibc(const char *tz, int year, const char *const *exprs, size_t n)
{
    setenv("TZ", tz, 1);      /* single-threaded test: the reference may */
    tzset();
    int64_t t0 = utc("2026-01-01T00:00");
    char y[32];
    snprintf(y, sizeof y, "%d-01-01T00:00", year);
    t0 = utc(y);
    snprintf(y, sizeof y, "%d-01-01T00:00", year + 1);
    int64_t t1 = utc(y);
    size_t mins = (size_t)(t1 - t0) / 60;
    wall *w = malloc(mins * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < mins; i++) {
        time_t t = (time_t)(t0 + (int64_t)i * 60);
        struct tm tm;
        localtime_r(&t, &tm);
        w[i] = (wall){(int16_t)(tm.tm_year + 1900), (int8_t)(tm.tm_mon + 1),
                      (int8_t)tm.tm_mday, (int8_t)tm.tm_hour, (int8_t)tm.tm_min,
                      (int8_t)tm.tm_wday};
    }
    for (size_t e = 0; e < n; e++) {
        char f[5][64];
        assert_int_equal(sscanf(exprs[e], "%63s %63s %63s %63s %63s", f[0], f[1], f[2], f[3],
                                f[4]), 5);
        bool fixed = f[0][0] != '*' && f[1][0] != '*';
        ref r;
        ref_compile(&r, f);
        rz_cron *c = cron_in(exprs[e], tz);
        int64_t got = t0 - 1;
        size_t fires = 0;
        assert_int_equal(rz_cron_next(c, got, &got), RZ_OK);
        for (size_t i = 0; i < mins; i++) {
            bool want = ref_match(&r, &w[i]);
            if (fixed && want && i > 0) {
                /* the same wall time seen before (fall back): first pass only */
                for (size_t back = 1; back <= 180 && back <= i; back++)
                    if (wall_key(&w[i - back]) == wall_key(&w[i]))
                        want = false;
            }
            if (fixed && !want && i > 0) {
                /* right after a spring-forward gap: fires if a skipped time matched */
                wall s = w[i - 1];
                wall_next_minute(&s);
                for (int k = 0; k < 180 && wall_key(&s) < wall_key(&w[i]); k++) {
                    want = want || ref_match(&r, &s);
                    wall_next_minute(&s);
                }
            }
            int64_t t = t0 + (int64_t)i * 60;
            if (want) {
                if (got != t) {
                    char a[RZ_CRON_TIME_MAX], b[RZ_CRON_TIME_MAX];
                    assert_int_equal(rz_cron_format(c, t, a, sizeof a), RZ_OK);
                    assert_int_equal(rz_cron_format(c, got, b, sizeof b), RZ_OK);
                    fail_msg("'%s' in %s: want a fire at %s, got %s", exprs[e], tz, a, b);
                }
                fires++;
                assert_int_equal(rz_cron_next(c, got, &got), RZ_OK);
            }
        }
        assert_true(got >= t1);
        assert_true(fires > 0);
        rz_cron_free(c);
    }
    free(w);
    unsetenv("TZ");
    tzset();
}

static const char *const year_exprs[] = {
    "30 1 * * *", "0 2 * * *", "30 2 * * *", "*/15 * * * *", "0 * * * *",
    "15,45 1-3 * * *", "* 1 * * 0", "0 0 1 * *", "45 23 * * 6", "0 12 13 * 5",
    "0 0,12 1,15 * 1-5",
};

/* Three zones by default (north and south, a half-hour shift, transitions
 * at midnight), a few seconds under ASan; RZ_TEST_CRON_FULL=1 adds UTC, New
 * York, Kolkata, Chatham and years past 2037 (the files' POSIX rules). */
static void a_year_in_each_zone(void **state)
{
    (void)state;
    if (!have_tzdata()) {
        skip();
    }
    const char *zones[] = {"Europe/Lisbon", "Australia/Lord_Howe", "America/Santiago",
                           "UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"};
    bool full = getenv("RZ_TEST_CRON_FULL") != NULL;
    size_t nz = full ? sizeof zones / sizeof *zones : 3;
    for (size_t z = 0; z < nz; z++)
        year_against_glibc(zones[z], 2026, year_exprs, sizeof year_exprs / sizeof *year_exprs);
    if (full) {
        year_against_glibc("Europe/Lisbon", 2050, year_exprs, 4);
        year_against_glibc("America/Santiago", 2061, year_exprs, 4);
    }
}

/* Parsed schedules are shared by threads; no TZ, no libc zone state. */
static void *next_in_thread(void *arg)
{
    const rz_cron *c = arg;
    int64_t t = 1767225600, n = 0;      /* 2026-01-01 */
    for (int i = 0; i < 2000; i++)
        if (rz_cron_next(c, t, &t) == RZ_OK)
            n++;
    return (void *)(intptr_t)(n == 2000 ? t : -1);
}

static void threads_share_a_schedule(void **state)
{
    (void)state;
    if (!have_tzdata()) {
        skip();
    }
    rz_cron *c = cron_in("*/7 1-3 * * *", "Europe/Lisbon");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, next_in_thread, c), 0);
    void *r[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], &r[i]), 0);
    assert_true((intptr_t)r[0] > 0);
    for (int i = 1; i < 4; i++)
        assert_true(r[i] == r[0]);
    rz_cron_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(published_cases),
        cmocka_unit_test(errors_are_located),
        cmocka_unit_test(dst_rules),
        cmocka_unit_test(a_year_in_each_zone),
        cmocka_unit_test(threads_share_a_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
