/* JSON text with exact numbers. cJSON prints a number with a tolerance
 * (2^53 comes out as 9.00719925474099e+15, -0 as 0); a module's inputs, its
 * outputs and the run record must carry what was given, bit for bit. And
 * strings quoted as cJSON quotes them, for text printed without a tree. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "common/text.h"

/* Past 2^53 an integral double is written with an exponent: as a plain
 * integer literal the loaders would (rightly) refuse it as inexact, and a
 * value there only ever came in as a float (1.5e16 from YAML's
 * 15051091192184831.5). */
void rz__number_format(double d, char *buf, size_t cap)
{
    /* A whole number under 10^15 (counts, sizes, times: most numbers a
     * run record holds) is what "%.15g" prints, its digits; without
     * printf and strtod (a step's record printed a few a step). */
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d &&
        (d != 0 || !signbit(d)) && cap >= 18) {
        long long v = (long long)d;
        unsigned long long u = v < 0 ? 0ull - (unsigned long long)v
                                     : (unsigned long long)v;
        char tmp[20], *p = tmp + sizeof tmp;
        do
            *--p = (char)('0' + u % 10);
        while (u /= 10);
        if (v < 0)
            *--p = '-';
        size_t n = (size_t)(tmp + sizeof tmp - p);
        memcpy(buf, p, n);
        buf[n] = '\0';
        return;
    }
    static const char *const forms[] = { "%.15g", "%.16g", "%.17g" };
    static const char *const exps[] = { "%.14e", "%.15e", "%.16e" };
    bool big = fabs(d) > 9007199254740992.0;
    for (size_t i = 0; i < RZ_ARRAY_LEN(forms); i++) {
        snprintf(buf, cap, forms[i], d);
        if (big && !strpbrk(buf, ".eEni"))
            snprintf(buf, cap, exps[i], d);
        double back = strtod(buf, NULL);
        if (back == d && (d != 0 || signbit(back) == signbit(d)))
            return;
    }
}

/* Numbers become raw text in the shortest exact form; JSON has no NaN or
 * infinity, so those are null. */
bool rz__json_raw_numbers(cJSON *v)
{
    for (cJSON *c = v->child; c; c = c->next)
        if (!rz__json_raw_numbers(c))
            return false;
    if (!cJSON_IsNumber(v))
        return true;
    char buf[64];
    if (isnan(v->valuedouble) || isinf(v->valuedouble))
        snprintf(buf, sizeof buf, "null");
    else
        rz__number_format(v->valuedouble, buf, sizeof buf);
    char *s = rz__strdup(buf);
    if (!s)
        return false;
    v->type = cJSON_Raw;
    v->valuestring = s;
    return true;
}

char *rz__json_print(const cJSON *v, bool pretty)
{
    if (!v)
        return NULL;
    cJSON *copy = cJSON_Duplicate(v, true);
    char *out = NULL;
    if (copy && rz__json_raw_numbers(copy))
        out = pretty ? cJSON_Print(copy) : cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return out;
}

/* cJSON's escapes: the two-character ones, \u00XX for the other control
 * characters, every other byte as it is (UTF-8, valid or not, and DEL). */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

size_t rz__json_quoted_len(const char *s)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        n += *p >= 32 && *p != '"' && *p != '\\' ? 1 : short_escape(*p) ? 2 : 6;
    return n;
}

char *rz__json_quoted_put(char *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char e;
        if (*p >= 32 && *p != '"' && *p != '\\') {
            *o++ = (char)*p;
        } else if ((e = short_escape(*p))) {
            *o++ = '\\';
            *o++ = e;
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            o += 6;
        }
    }
    *o++ = '"';
    return o;
}

void rz__json_quote(rz__buf *b, const char *s)
{
    size_t n = rz__json_quoted_len(s);
    char *o = rz__buf_room(b, n);
    if (!o)
        return;
    rz__json_quoted_put(o, s);
    b->len += n;
    b->data[b->len] = '\0';
}

/* The integer literal at `p` (digits only, `n` of them) is past 2^53: a
 * double would round it, so an id or an amount would silently change. */
static bool digits_past_2_53(const char *p, size_t n)
{
    static const char lim[] = "9007199254740992";
    while (n > 1 && *p == '0') {
        p++;
        n--;
    }
    if (n != sizeof lim - 1)
        return n > sizeof lim - 1;
    return memcmp(p, lim, n) > 0;
}

int rz__json_text_check(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (u[i] == '"') {
            size_t j = ++i;
            while (j < len && u[j] != '"') {
                if (u[j] == '\\' && j + 1 < len) {
                    if (u[j + 1] == 'u' && j + 5 < len && memcmp(s + j + 2, "0000", 4) == 0)
                        return rz__error(RZ_ESYNTAX, "a \\u0000 escape at byte %zu: "
                                         "text may not hold NUL characters", j);
                    j += 2;
                } else {
                    j++;
                }
            }
            size_t bad = rz__utf8_bad_at(u + i, j - i);
            if (bad != j - i)
                return rz__error(RZ_ESYNTAX, "text that is not UTF-8 at byte %zu", i + bad);
            i = j + 1;
            continue;
        }
        if (u[i] == '-' || (u[i] >= '0' && u[i] <= '9')) {
            size_t d0 = i + (u[i] == '-'), j = d0;
            while (j < len && u[j] >= '0' && u[j] <= '9')
                j++;
            bool fraction = j < len && (u[j] == '.' || u[j] == 'e' || u[j] == 'E');
            if (!fraction && digits_past_2_53(s + d0, j - d0))
                return rz__error(RZ_ESYNTAX, "the integer at byte %zu is past 2^53 "
                                 "(9007199254740992): it cannot be kept exact", i);
            while (j < len && (isalnum(u[j]) || u[j] == '.' || u[j] == '+' || u[j] == '-'))
                j++;
            i = j;
            continue;
        }
        if (u[i] >= 0x80)
            return rz__error(RZ_ESYNTAX, "a byte 0x%02x outside any string at byte %zu",
                             u[i], i);
        i++;
    }
    return RZ_OK;
}

/* ---- a syntax check that allocates nothing ----
 * It tells a document cJSON could not parse for want of memory from one it
 * refuses; it accepts what cJSON accepts of RFC 8259 (nesting up to cJSON's
 * limit, surrogate escapes in pairs, numbers of at most 63 bytes). When in
 * doubt it refuses: the caller then treats the text as malformed, as it
 * did before this check existed. */

#define VALID_DEPTH_MAX 1000   /* CJSON_NESTING_LIMIT */

typedef struct vp {
    const char *p, *end;
} vp;

static void v_ws(vp *v)
{
    while (v->p < v->end && (*v->p == ' ' || *v->p == '\t' || *v->p == '\n' || *v->p == '\r'))
        v->p++;
}

static bool v_lit(vp *v, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(v->end - v->p) < n || memcmp(v->p, word, n) != 0)
        return false;
    v->p += n;
    return true;
}

static long v_hex4(vp *v)
{
    if (v->end - v->p < 4)
        return -1;
    long cp = 0;
    for (int i = 0; i < 4; i++) {
        char c = *v->p++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        cp = cp * 16 + d;
    }
    return cp;
}

static bool v_string(vp *v)
{
    v->p++;   /* the opening quote */
    while (v->p < v->end) {
        unsigned char c = (unsigned char)*v->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        if (v->p == v->end)
            return false;
        char e = *v->p++;
        if (e != 'u') {
            if (!strchr("\"\\/bfnrt", e) || !e)
                return false;
            continue;
        }
        long cp = v_hex4(v);
        if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
            return false;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!v_lit(v, "\\u"))
                return false;
            long lo = v_hex4(v);
            if (lo < 0xdc00 || lo > 0xdfff)
                return false;
        }
    }
    return false;
}

static bool v_number_syntax(vp *v);

static bool v_digits(vp *v)
{
    const char *s = v->p;
    while (v->p < v->end && *v->p >= '0' && *v->p <= '9')
        v->p++;
    return v->p > s;
}

static bool v_number(vp *v)
{
    const char *start = v->p;
    if (!v_number_syntax(v))
        return false;
    return v->p - start <= 63;   /* cJSON 1.7.15 reads at most 63 bytes of one */
}

static bool v_number_syntax(vp *v)
{
    if (*v->p == '-')
        v->p++;
    if (v->p < v->end && *v->p == '0')
        v->p++;
    else if (!v_digits(v))
        return false;
    if (v->p < v->end && *v->p == '.') {
        v->p++;
        if (!v_digits(v))
            return false;
    }
    if (v->p < v->end && (*v->p == 'e' || *v->p == 'E')) {
        v->p++;
        if (v->p < v->end && (*v->p == '+' || *v->p == '-'))
            v->p++;
        if (!v_digits(v))
            return false;
    }
    return true;
}

static bool v_value(vp *v, int depth);

static bool v_container(vp *v, int depth, char close, bool members)
{
    if (depth >= VALID_DEPTH_MAX)
        return false;
    v->p++;
    v_ws(v);
    if (v->p < v->end && *v->p == close) {
        v->p++;
        return true;
    }
    for (;;) {
        if (members) {
            if (v->p == v->end || *v->p != '"' || !v_string(v))
                return false;
            v_ws(v);
            if (v->p == v->end || *v->p++ != ':')
                return false;
        }
        if (!v_value(v, depth + 1))
            return false;
        v_ws(v);
        if (v->p == v->end)
            return false;
        char c = *v->p++;
        if (c == close)
            return true;
        if (c != ',')
            return false;
        v_ws(v);
    }
}

static bool v_value(vp *v, int depth)
{
    v_ws(v);
    if (v->p == v->end)
        return false;
    switch (*v->p) {
    case '{': return v_container(v, depth, '}', true);
    case '[': return v_container(v, depth, ']', false);
    case '"': return v_string(v);
    case 't': return v_lit(v, "true");
    case 'f': return v_lit(v, "false");
    case 'n': return v_lit(v, "null");
    default:  return v_number(v);
    }
}

bool rz__json_valid(const char *s, size_t len)
{
    vp v = {s, s + len};
    if (!v_value(&v, 0))
        return false;
    v_ws(&v);
    return v.p == v.end;
}
