/* JSON values as JSON Schema sees them: types, equality, hashing, exact
 * decimal multipleOf, code-point lengths, short renderings for messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema_impl.h"

bool rz__sc_is_integer(const cJSON *x)
{
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) &&
           x->valuedouble == floor(x->valuedouble);
}

unsigned rz__sc_type_bit(const cJSON *x)
{
    if (cJSON_IsNull(x)) return SC_NULL;
    if (cJSON_IsBool(x)) return SC_BOOLEAN;
    if (cJSON_IsObject(x)) return SC_OBJECT;
    if (cJSON_IsArray(x)) return SC_ARRAY;
    if (cJSON_IsString(x)) return SC_STRING;
    if (rz__sc_is_integer(x)) return SC_INTEGER;
    return SC_NUMBER;
}

const char *rz__sc_type_name(const cJSON *x)
{
    switch (rz__sc_type_bit(x)) {
    case SC_NULL: return "null";
    case SC_BOOLEAN: return "boolean";
    case SC_OBJECT: return "object";
    case SC_ARRAY: return "array";
    case SC_STRING: return "string";
    case SC_INTEGER: return "integer";
    default: return "number";
    }
}

static bool object_subset(const cJSON *a, const cJSON *b)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        if (!y || !rz__sc_equal(x, y))
            return false;
    }
    return true;
}

/* Numbers by value (1 == 1.0), arrays in order, objects as sets of members.
 * cJSON_Compare is not used: it compares doubles with a tolerance. */
bool rz__sc_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble;
    if (cJSON_IsBool(a) && cJSON_IsBool(b))
        return cJSON_IsTrue(a) == cJSON_IsTrue(b);
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return false;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!rz__sc_equal(x, y))
                return false;
        return !x && !y;
    }
    if (cJSON_IsObject(a))
        return cJSON_GetArraySize(a) == cJSON_GetArraySize(b) &&
               object_subset(a, b) && object_subset(b, a);
    return true; /* null */
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Consistent with rz__sc_equal: -0 and 0 hash alike, member order does not
 * matter (members are summed). */
uint64_t rz__sc_hash(const cJSON *x)
{
    if (cJSON_IsNumber(x)) {
        double d = x->valuedouble == 0 ? 0 : x->valuedouble;
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return mix(bits ^ 1);
    }
    if (cJSON_IsBool(x))
        return cJSON_IsTrue(x) ? 3 : 2;
    if (cJSON_IsString(x))
        return mix(hash_str(x->valuestring) ^ 4);
    uint64_t h = mix((uint64_t)(x->type & 0xFF));
    const cJSON *c;
    if (cJSON_IsArray(x)) {
        cJSON_ArrayForEach(c, x)
            h = mix(h * 31 + rz__sc_hash(c));
    } else if (cJSON_IsObject(x)) {
        cJSON_ArrayForEach(c, x)
            h += mix(hash_str(c->string) * 7 + rz__sc_hash(c));
    }
    return h;
}

/* ---- Exact multipleOf over shortest decimal forms ---- */

/* |x| = mant * 10^exp with mant < 10^17, the shortest digits that read back
 * as x. */
static void decimal_parts(double x, uint64_t *mant, int *exp)
{
    char buf[40];
    x = fabs(x);
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x || p == 17)
            break;
    }
    uint64_t m = 0;
    int digits = 0;
    const char *s = buf;
    for (; *s && *s != 'e'; s++) {
        if (*s >= '0' && *s <= '9') {
            m = m * 10 + (uint64_t)(*s - '0');
            digits++;
        }
    }
    int e = *s == 'e' ? atoi(s + 1) : 0;
    e -= digits - 1;
    while (m && m % 10 == 0) {
        m /= 10;
        e++;
    }
    *mant = m;
    *exp = e;
}

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t n)
{
    return (uint64_t)((unsigned __int128)a * b % n);
}

static uint64_t pow10mod(int k, uint64_t n)
{
    uint64_t r = 1 % n, base = 10 % n;
    for (; k; k >>= 1) {
        if (k & 1)
            r = mulmod(r, base, n);
        base = mulmod(base, base, n);
    }
    return r;
}

bool rz__sc_multiple_of(double x, double m)
{
    if (!isfinite(x) || !isfinite(m) || m <= 0)
        return false;
    if (x == 0)
        return true;
    uint64_t a, b;
    int ea, eb;
    decimal_parts(x, &a, &ea);
    decimal_parts(m, &b, &eb);
    int k = ea - eb;
    /* x/m = (a/b) * 10^k */
    if (k >= 0)
        return mulmod(a % b, pow10mod(k, b), b) == 0;
    if (-k > 20)
        return false; /* b * 10^-k > 10^20 > a */
    unsigned __int128 d = b;
    for (int i = 0; i < -k; i++)
        d *= 10;
    return (unsigned __int128)a % d == 0;
}

void rz__sc_fmt_number(char *buf, size_t cap, double x)
{
    if (isfinite(x) && x == floor(x) && fabs(x) < 1e17) {
        snprintf(buf, cap, "%.0f", x);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

size_t rz__sc_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

void rz__sc_render(rz__buf *b, const cJSON *x)
{
    char num[40];
    if (cJSON_IsNumber(x)) {
        rz__sc_fmt_number(num, sizeof num, x->valuedouble);
        rz__buf_puts(b, num);
        return;
    }
    if (cJSON_IsString(x)) {
        const char *s = x->valuestring;
        size_t i = 0, cps = 0;
        while (s[i] && cps < 40) {
            i++;
            while (((unsigned char)s[i] & 0xC0) == 0x80)
                i++;
            cps++;
        }
        rz__buf_puts(b, "\"");
        rz__buf_append(b, s, i);
        rz__buf_puts(b, s[i] ? "...\"" : "\"");
        return;
    }
    char *text = cJSON_PrintUnformatted(x);
    if (!text) {
        rz__buf_puts(b, rz__sc_type_name(x));
        return;
    }
    size_t n = strlen(text);
    if (n > 80) {
        size_t cut = 77;
        while (cut && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--;
        rz__buf_append(b, text, cut);
        rz__buf_puts(b, "...");
    } else {
        rz__buf_append(b, text, n);
    }
    free(text);
}
