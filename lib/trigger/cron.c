/* Cron expressions and their next fire time in a zone (rhizos/trigger.h).
 *
 * The zone is a list of segments of constant UTC offset. Inside one, local
 * time is UTC plus that offset and runs straight, so the next fire is a plain
 * calendar search over local time; only the ends of a segment need the DST
 * rule (a gap behind a forward jump, a repeat after a backward one). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rhizos/trigger.h"
#include "trigger/trigger_impl.h"

struct rz_cron {
    uint64_t min;               /* bit i: minute i */
    uint32_t hour, dom;         /* hours 0-23; days 1-31 */
    uint16_t mon;               /* months 1-12 */
    uint8_t dow;                /* 0 (Sunday) - 6 */
    bool dom_star, dow_star;    /* the field starts with '*' (Vixie's rule) */
    bool fixed;                 /* neither minute nor hour starts with '*' */
    rz__zone zone;
    char *tz;
};

#define YEAR_SECS (366 * 86400LL)
#define HORIZON (30 * YEAR_SECS)
/* Years 1..9999 only: every sum below then stays far from overflow. */
#define T_MIN (-62135596800LL)
#define T_MAX (253402300799LL)

typedef struct field {
    const char *name;
    int lo, hi;
    const char *const *names;   /* names[i] is value lo+i, or NULL */
} field;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static const field fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, day_names},
};

static const struct { const char *name, *expr; } macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

RZ_PRINTF(3, 4)
static int syntax(const char *expr, const char *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rz__error_at(RZ_ESYNTAX, "", 1, (uint32_t)(at - expr) + 1, "",
                        "cron '%s': %s", expr, msg);
}

/* A number or (where the field has them) a three-letter name. */
static bool value(const field *f, const char **s, const char *end, int *out)
{
    const char *p = *s;
    if (p < end && *p >= '0' && *p <= '9') {
        int v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            if (v > 1000)
                return false;
        }
        *s = p;
        *out = v;
        return true;
    }
    if (f->names && end - p >= 3) {
        for (int i = 0; i <= f->hi - f->lo; i++) {
            if (f->names[i] && strncasecmp(p, f->names[i], 3) == 0
                && (end - p == 3 || !((p[3] | 32) >= 'a' && (p[3] | 32) <= 'z'))) {
                *s = p + 3;
                *out = f->lo + i;
                return true;
            }
        }
    }
    return false;
}

static int parse_field(const char *expr, const field *f, const char *s, const char *end,
                       uint64_t *bits)
{
    *bits = 0;
    for (const char *el = s; el <= end;) {
        const char *el_end = memchr(el, ',', (size_t)(end - el));
        if (!el_end)
            el_end = end;
        const char *p = el;
        int a, b;
        bool range = false;
        if (p == el_end)
            return syntax(expr, el, "empty item in the %s field", f->name);
        if (*p == '*') {
            a = f->lo, b = f->hi, p++;
            range = true;
        } else {
            if (!value(f, &p, el_end, &a))
                return syntax(expr, p, "the %s field wants a number%s", f->name,
                              f->names ? " or a name" : "");
            b = a;
            if (p < el_end && *p == '-') {
                p++;
                if (!value(f, &p, el_end, &b))
                    return syntax(expr, p, "the %s field wants a number%s after '-'", f->name,
                                  f->names ? " or a name" : "");
                range = true;
            }
        }
        int step = 1;
        if (p < el_end && *p == '/') {
            const char *sp = ++p;
            step = 0;
            while (p < el_end && *p >= '0' && *p <= '9' && step <= 1000)
                step = step * 10 + (*p++ - '0');
            if (p == sp || step == 0 || step > f->hi - f->lo + 1)
                return syntax(expr, sp, "the %s field wants a step from 1 to %d after '/'",
                              f->name, f->hi - f->lo + 1);
            if (!range)
                b = f->hi;       /* N/S: from N to the field's end */
        }
        if (p != el_end)
            return syntax(expr, p, "unexpected '%.1s' in the %s field", p, f->name);
        if (a < f->lo || a > f->hi || b < f->lo || b > f->hi)
            return syntax(expr, el, "the %s field: %d is out of range %d-%d", f->name,
                          a < f->lo || a > f->hi ? a : b, f->lo, f->hi);
        if (a > b)
            return syntax(expr, el, "the %s field: range %d-%d runs backwards", f->name, a, b);
        for (int v = a; v <= b; v += step)
            *bits |= 1ULL << v;
        el = el_end + 1;
    }
    return RZ_OK;
}

static int parse_expr(rz_cron *c, const char *expr)
{
    const char *p = expr + strspn(expr, " \t");
    if (*p == '@') {
        size_t n = strcspn(p, " \t");
        if (p[n + strspn(p + n, " \t")] != '\0')
            return syntax(expr, p + n, "nothing may follow a macro");
        for (size_t i = 0; i < RZ_ARRAY_LEN(macros); i++)
            if (strlen(macros[i].name) == n && strncasecmp(p, macros[i].name, n) == 0)
                return parse_expr(c, macros[i].expr);
        return syntax(expr, p, "unknown macro '%.*s' (@yearly, @annually, @monthly, "
                      "@weekly, @daily, @midnight, @hourly)", (int)n, p);
    }
    uint64_t bits[5];
    const char *start[5];
    int k = 0;
    while (*p) {
        size_t n = strcspn(p, " \t");
        if (k == 5)
            return syntax(expr, p, "more than 5 fields (minute hour day-of-month month "
                          "day-of-week)");
        start[k] = p;
        int rc = parse_field(expr, &fields[k], p, p + n, &bits[k]);
        if (rc < 0)
            return rc;
        k++;
        p += n;
        p += strspn(p, " \t");
    }
    if (k < 5)
        return syntax(expr, p, "%d field%s, cron wants 5 (minute hour day-of-month month "
                      "day-of-week)", k, k == 1 ? "" : "s");
    c->min = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->mon = (uint16_t)bits[3];
    c->dow = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);   /* 7 is Sunday too */
    c->dom_star = *start[2] == '*';
    c->dow_star = *start[4] == '*';
    c->fixed = *start[0] != '*' && *start[1] != '*';
    /* With dom restricted and dow `*` only the date decides: is there one? */
    if (c->dow_star && !c->dom_star) {
        static const int mdays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool any = false;
        for (int m = 1; m <= 12 && !any; m++)
            for (int d = 1; d <= mdays[m] && !any; d++)
                any = (c->mon >> m & 1) && (c->dom >> d & 1);
        if (!any)
            return rz__error_at(RZ_EINVALID, "", 1, (uint32_t)(start[2] - expr) + 1, "",
                                "cron '%s' never fires: no month it names has such a day",
                                expr);
    }
    return RZ_OK;
}

int rz_cron_parse(rz_cron **out, const char *expr, const rz_cron_opts *opts)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_cron_parse: out is NULL");
    *out = NULL;
    if (!expr)
        return rz__error(RZ_EINVAL, "rz_cron_parse: expr is NULL");
    if (opts && opts->version != RZ_CRON_OPTS_VERSION)
        return rz__error(RZ_EINVAL, "rz_cron_parse: opts->version %u, this library knows %u",
                         opts->version, RZ_CRON_OPTS_VERSION);
    if (strlen(expr) > 256)
        return rz__error(RZ_ESYNTAX, "cron: an expression of %zu bytes (at most 256)",
                         strlen(expr));
    rz_cron *c = rz__calloc(1, sizeof *c);
    if (!c)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = parse_expr(c, expr);
    const char *tz = opts && opts->tz && *opts->tz ? opts->tz : "UTC";
    if (rc == RZ_OK)
        rc = rz__zone_load(&c->zone, tz, opts ? opts->tzdir : NULL);
    if (rc == RZ_OK && !(c->tz = rz__strdup(tz)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc < 0) {
        rz_cron_free(c);
        return rc;
    }
    *out = c;
    return RZ_OK;
}

void rz_cron_free(rz_cron *c)
{
    if (!c)
        return;
    rz__zone_clear(&c->zone);
    free(c->tz);
    free(c);
}

static bool day_matches(const rz_cron *c, unsigned m, unsigned d, int64_t days)
{
    if (!(c->mon >> m & 1))
        return false;
    unsigned dow = (unsigned)(((days + 4) % 7 + 7) % 7);
    bool a = c->dom >> d & 1, b = c->dow >> dow & 1;
    return (c->dom_star || c->dow_star) ? a && b : a || b;
}

/* The first matching local time in [lo, hi) (local seconds, as if UTC). */
static bool find_local(const rz_cron *c, int64_t lo, int64_t hi, int64_t *out)
{
    lo = rz__floor_div(lo + 59, 60) * 60;
    int64_t day = rz__floor_div(lo, 86400);
    int sod = (int)(lo - day * 86400), sh = sod / 3600, sm = sod % 3600 / 60;
    while (day * 86400 < hi) {
        int64_t y;
        unsigned m, d;
        rz__civil_from_days(day, &y, &m, &d);
        if (!(c->mon >> m & 1)) {           /* on to the first of next month */
            day = m == 12 ? rz__days_from_civil(y + 1, 1, 1) : rz__days_from_civil(y, m + 1, 1);
            sh = sm = 0;
            continue;
        }
        if (day_matches(c, m, d, day)) {
            for (int h = sh; h < 24; h++) {
                if (!(c->hour >> h & 1))
                    continue;
                for (int mi = h == sh ? sm : 0; mi < 60; mi++) {
                    if (!(c->min >> mi & 1))
                        continue;
                    int64_t t = day * 86400 + h * 3600 + mi * 60;
                    if (t >= hi)
                        return false;
                    *out = t;
                    return true;
                }
            }
        }
        day++;
        sh = sm = 0;
    }
    return false;
}

int rz_cron_next(const rz_cron *c, int64_t after, int64_t *next)
{
    if (!c || !next)
        return rz__error(RZ_EINVAL, "rz_cron_next: NULL argument");
    *next = 0;
    if (after < T_MIN || after > T_MAX - HORIZON)
        return rz__error(RZ_EINVAL, "rz_cron_next: time %lld is outside years 1-9969",
                         (long long)after);
    const rz__zone *z = &c->zone;
    int64_t start = rz__floor_div(after, 60) * 60 + 60, horizon = start + HORIZON;
    for (long i = rz__zone_segment(z, start);; i++) {
        int64_t a = i < 0 ? INT64_MIN : z->at[i];
        int64_t b = (size_t)(i + 1) < z->n ? z->at[i + 1] : INT64_MAX;
        int32_t o = i < 0 ? z->off0 : z->off[i], po = i <= 0 ? z->off0 : z->off[i - 1];
        int64_t t;
        if (a >= horizon)
            break;
        /* Spring forward: the skipped local times of a fixed-time expression
         * fire once, when the gap ends. */
        if (i >= 0 && c->fixed && o > po && a >= start && find_local(c, a + po, a + o, &t)) {
            *next = a;
            return RZ_OK;
        }
        int64_t lo = a > start ? a : start, hi = b < horizon ? b : horizon;
        int64_t llo = lo + o;
        /* Fall back: a fixed-time expression fired on the first pass. */
        if (i >= 0 && c->fixed && o < po && llo < a + po)
            llo = a + po;
        if (find_local(c, llo, hi + o, &t)) {
            *next = t - o;
            return RZ_OK;
        }
        if (b >= horizon)
            break;
    }
    return rz__error(RZ_ENOENT, "cron: no fire time in the 30 years after %lld",
                     (long long)after);
}

int32_t rz_cron_utc_offset(const rz_cron *c, int64_t t)
{
    return c ? rz__zone_offset(&c->zone, t) : 0;
}

int rz_cron_format(const rz_cron *c, int64_t t, char *buf, size_t n)
{
    if (!c || !buf || n < RZ_CRON_TIME_MAX || t < T_MIN || t > T_MAX)
        return rz__error(RZ_EINVAL, "rz_cron_format: bad argument");
    int32_t o = rz__zone_offset(&c->zone, t);
    int64_t local = t + o, day = rz__floor_div(local, 86400), y;
    int sod = (int)(local - day * 86400);
    unsigned m, d;
    rz__civil_from_days(day, &y, &m, &d);
    int ao = o < 0 ? -o : o;
    snprintf(buf, n, "%04lld-%02u-%02uT%02d:%02d:%02d%c%02d:%02d", (long long)y, m, d,
             sod / 3600, sod % 3600 / 60, sod % 60, o < 0 ? '-' : '+', ao / 3600,
             ao % 3600 / 60);
    return RZ_OK;
}

const char *rz_cron_zone(const rz_cron *c)
{
    return c ? c->tz : "";
}

int rz_cron_is_fixed(const rz_cron *c)
{
    return c && c->fixed;
}
