/* Time zones from TZif files (RFC 8536), read into a table of offsets.
 * Reading the file ourselves keeps every conversion free of TZ/setenv and
 * of libc's process-wide zone state, so schedules work on any thread. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trigger/trigger_impl.h"

#define ZONE_FILE_MAX (1u << 20)     /* real ones are under 4 KiB */
#define OFFSET_MAX (26 * 3600)       /* RFC 8536: |utoff| < 25 h; slack */

int64_t rz__floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t rz__days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = rz__floor_div(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void rz__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = rz__floor_div(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void rz__zone_clear(rz__zone *z)
{
    if (!z)
        return;
    free(z->at);
    free(z->off);
    memset(z, 0, sizeof *z);
}

long rz__zone_segment(const rz__zone *z, int64_t t)
{
    size_t lo = 0, hi = z->n;        /* first index with at[i] > t */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (long)lo - 1;
}

int32_t rz__zone_offset(const rz__zone *z, int64_t t)
{
    long i = rz__zone_segment(z, t);
    return i < 0 ? z->off0 : z->off[i];
}

static bool push(rz__zone *z, size_t *cap, int64_t at, int32_t off)
{
    if (z->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int64_t *a = rz__realloc(z->at, nc * sizeof *a);
        if (!a)
            return false;
        z->at = a;
        int32_t *o = rz__realloc(z->off, nc * sizeof *o);
        if (!o)
            return false;
        z->off = o;
        *cap = nc;
    }
    z->at[z->n] = at;
    z->off[z->n] = off;
    z->n++;
    return true;
}

/* ---- the POSIX TZ footer ("WET0WEST,M3.5.0/1,M10.5.0") ---- */

typedef struct rule {
    char kind;          /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
    int n, m, w, d;
    int32_t time;       /* seconds after local midnight; may be negative */
} rule;

static bool tz_name(const char **s)
{
    const char *p = *s;
    if (*p == '<') {
        p = strchr(p, '>');
        if (!p || p - *s < 4)
            return false;
        *s = p + 1;
        return true;
    }
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    if (p - *s < 3)
        return false;
    *s = p;
    return true;
}

static bool tz_num(const char **s, int max, int *out)
{
    const char *p = *s;
    int v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > max)
            return false;
    }
    *s = p;
    *out = v;
    return true;
}

/* [+-]hh[:mm[:ss]] up to max_h hours, as signed seconds. */
static bool tz_hms(const char **s, int max_h, int32_t *out)
{
    int sign = 1, h, m = 0, sec = 0;
    if (**s == '+' || **s == '-')
        sign = *(*s)++ == '-' ? -1 : 1;
    if (!tz_num(s, max_h, &h))
        return false;
    if (**s == ':') {
        (*s)++;
        if (!tz_num(s, 59, &m))
            return false;
        if (**s == ':') {
            (*s)++;
            if (!tz_num(s, 59, &sec))
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + sec);
    return true;
}

static bool tz_rule(const char **s, rule *r)
{
    memset(r, 0, sizeof *r);
    r->time = 7200;
    if (**s == 'J') {
        (*s)++;
        r->kind = 'J';
        if (!tz_num(s, 365, &r->n) || r->n < 1)
            return false;
    } else if (**s == 'M') {
        (*s)++;
        r->kind = 'M';
        if (!tz_num(s, 12, &r->m) || r->m < 1 || *(*s)++ != '.' || !tz_num(s, 5, &r->w)
            || r->w < 1 || *(*s)++ != '.' || !tz_num(s, 6, &r->d))
            return false;
    } else {
        r->kind = 'D';
        if (!tz_num(s, 365, &r->n))
            return false;
    }
    if (**s == '/') {
        (*s)++;
        if (!tz_hms(s, 167, &r->time))
            return false;
    }
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Local seconds (days since the epoch x 86400 + time) the rule names in year y. */
static int64_t rule_local(const rule *r, int64_t y)
{
    int64_t day;
    if (r->kind == 'J') {
        day = rz__days_from_civil(y, 1, 1) + r->n - 1 + (is_leap(y) && r->n >= 60);
    } else if (r->kind == 'D') {
        day = rz__days_from_civil(y, 1, 1) + r->n;
    } else {
        int64_t first = rz__days_from_civil(y, (unsigned)r->m, 1);
        int64_t next = r->m == 12 ? rz__days_from_civil(y + 1, 1, 1)
                                  : rz__days_from_civil(y, (unsigned)r->m + 1, 1);
        int64_t dow = ((first + 4) % 7 + 7) % 7;
        day = first + (r->d - dow + 7) % 7 + (int64_t)(r->w - 1) * 7;
        while (day >= next)
            day -= 7;
    }
    return day * 86400 + r->time;
}

/* Extend the table from the footer; a footer we cannot read leaves the
 * table's last offset standing (and says so). */
static int apply_footer(rz__zone *z, size_t *cap, const char *tz, const char *name)
{
    const char *p = tz;
    int32_t std, dst;
    rule start, end;
    if (!*p)
        return RZ_OK;
    if (!tz_name(&p) || !tz_hms(&p, 24, &std))
        goto bad;
    std = -std;                       /* POSIX counts west as positive */
    if (!*p) {
        if (z->n == 0)
            z->off0 = std;
        else if (z->off[z->n - 1] != std && !push(z, cap, z->at[z->n - 1] + 1, std))
            return rz__error(RZ_ENOMEM, "out of memory");
        return RZ_OK;
    }
    if (!tz_name(&p))
        goto bad;
    dst = std + 3600;
    if (*p && *p != ',') {
        if (!tz_hms(&p, 24, &dst))
            goto bad;
        dst = -dst;
    }
    if (*p++ != ',' || !tz_rule(&p, &start) || *p++ != ',' || !tz_rule(&p, &end) || *p)
        goto bad;
    int64_t last = z->n ? z->at[z->n - 1] : INT64_MIN;
    int64_t y0 = 1900;
    if (z->n) {
        int64_t yy;
        unsigned mm, dd;
        rz__civil_from_days(rz__floor_div(last, 86400), &yy, &mm, &dd);
        y0 = yy;
    }
    for (int64_t y = y0; y <= RZ__ZONE_LAST_YEAR; y++) {
        int64_t a = rule_local(&start, y) - std, b = rule_local(&end, y) - dst;
        int64_t t1 = a < b ? a : b, t2 = a < b ? b : a;
        int32_t o1 = a < b ? dst : std, o2 = a < b ? std : dst;
        int32_t cur = z->n ? z->off[z->n - 1] : z->off0;
        if (t1 > last && o1 != cur) {
            if (!push(z, cap, t1, o1))
                return rz__error(RZ_ENOMEM, "out of memory");
            cur = o1;
        }
        if (t2 > last && o2 != cur && !push(z, cap, t2, o2))
            return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
bad:
    return rz__error(RZ_EIO, "time zone '%s': cannot read its rule '%s'", name, tz);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

int rz__zone_parse(rz__zone *z, const unsigned char *p, size_t len, const char *name)
{
    memset(z, 0, sizeof *z);
    size_t cap = 0;
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        goto bad;
    int wide = p[4] >= '2';
    uint32_t c[6];
    for (int i = 0; i < 6; i++)
        c[i] = be32(p + 20 + 4 * i);
    /* counts: isut, isstd, leap, time, type, char */
    size_t body = (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
    size_t pos = 44;
    if (wide) {
        if (body > len - pos || len - pos - body < 44 || memcmp(p + pos + body, "TZif", 4))
            goto bad;
        pos += body;
        for (int i = 0; i < 6; i++)
            c[i] = be32(p + pos + 20 + 4 * i);
        pos += 44;
        body = (size_t)c[3] * 9 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 12 + c[1] + c[0];
    }
    if (c[4] == 0 || c[4] > 256 || c[3] > 100000 || body > len - pos)
        goto bad;
    size_t tsz = wide ? 8 : 4;
    const unsigned char *times = p + pos, *idx = times + (size_t)c[3] * tsz;
    const unsigned char *types = idx + c[3];
    int32_t utoff[256];
    for (uint32_t i = 0; i < c[4]; i++) {
        utoff[i] = (int32_t)be32(types + 6 * i);
        if (utoff[i] < -OFFSET_MAX || utoff[i] > OFFSET_MAX)
            goto bad;
    }
    z->off0 = utoff[0];
    for (uint32_t i = 0; i < c[3]; i++) {
        int64_t t = wide ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
        if (idx[i] >= c[4] || (z->n && t <= z->at[z->n - 1]))
            goto bad;
        if (!push(z, &cap, t, utoff[idx[i]])) {
            rz__zone_clear(z);
            return rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    pos += body;
    if (wide && pos < len) {
        const unsigned char *f = p + pos, *e;
        if (*f != '\n' || !(e = memchr(f + 1, '\n', len - pos - 1)) || e - f > 128)
            goto bad;
        char tz[130];
        memcpy(tz, f + 1, (size_t)(e - f - 1));
        tz[e - f - 1] = '\0';
        int rc = apply_footer(z, &cap, tz, name);
        if (rc < 0) {
            rz__zone_clear(z);
            return rc;
        }
    }
    return RZ_OK;
bad:
    rz__zone_clear(z);
    return rz__error(RZ_EIO, "time zone '%s': not a valid TZif file", name);
}

static bool is_utc(const char *name)
{
    return !name || !*name || !strcmp(name, "UTC") || !strcmp(name, "Etc/UTC");
}

/* An IANA name: letters, digits and ._+- in '/'-separated parts, none empty
 * nor "." / "..", so it cannot leave the zone folder. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '/' || s[n - 1] == '/')
        return false;
    for (const char *part = s; *part;) {
        size_t k = strcspn(part, "/");
        if (k == 0 || (k == 1 && part[0] == '.') || (k == 2 && part[0] == '.' && part[1] == '.'))
            return false;
        for (size_t i = 0; i < k; i++) {
            char ch = part[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
                  || ch == '_' || ch == '-' || ch == '+' || ch == '.'))
                return false;
        }
        part += k;
        if (*part == '/')
            part++;
    }
    return true;
}

int rz__zone_load(rz__zone *z, const char *name, const char *tzdir)
{
    memset(z, 0, sizeof *z);
    if (is_utc(name))
        return RZ_OK;
    if (!name_ok(name))
        return rz__error(RZ_EINVAL, "'%s' is not a time zone name (an IANA name such "
                         "as Europe/Lisbon)", name);
    if (!tzdir || !*tzdir)
        tzdir = getenv("TZDIR");
    if (!tzdir || !*tzdir)
        tzdir = "/usr/share/zoneinfo";
    char *path = rz__asprintf("%s/%s", tzdir, name);
    if (!path)
        return rz__error(RZ_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return rz__error(errno == ENOENT || errno == ENOTDIR ? RZ_ENOENT : RZ_EIO,
                         "unknown time zone '%s' (no such zone in %s)", name, tzdir);
    struct stat st = {0};
    unsigned char *buf = NULL;
    int rc = RZ_EIO;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0
        && (size_t)st.st_size <= ZONE_FILE_MAX && (buf = rz__malloc((size_t)st.st_size))) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        rc = got == (size_t)st.st_size ? rz__zone_parse(z, buf, got, name)
                                       : rz__error(RZ_EIO, "time zone '%s': cannot read it", name);
    } else {
        rc = S_ISDIR(st.st_mode) ? rz__error(RZ_ENOENT, "unknown time zone '%s' (a folder "
                                             "of zones, not a zone)", name)
                                 : rz__error(RZ_EIO, "time zone '%s': cannot read it", name);
    }
    free(buf);
    close(fd);
    return rc;
}
