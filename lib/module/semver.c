/* Module versions (MAJOR.MINOR.PATCH) and the version specs of DESIGN §4. */
#include <string.h>

#include "module/module_impl.h"

/* One decimal part: digits only, no leading zero, fits in 32 bits. Returns
 * the number of bytes read, 0 if there is no valid part at `s`. */
static size_t parse_part(const char *s, uint32_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return 0;
        i++;
    }
    if (i == 0 || (i > 1 && s[0] == '0'))
        return 0;
    *out = (uint32_t)v;
    return i;
}

/* Up to three dot-separated parts filling the whole string; 0 on error. */
static unsigned parse_parts(const char *s, uint32_t v[3])
{
    unsigned n = 0;
    v[0] = v[1] = v[2] = 0;
    for (;;) {
        size_t k = parse_part(s, &v[n]);
        if (!k)
            return 0;
        s += k;
        n++;
        if (*s == '\0')
            return n;
        if (*s != '.' || n == 3)
            return 0;
        s++;
    }
}

int rz__semver_parse(const char *s, uint32_t v[3])
{
    if (!s || parse_parts(s, v) != 3)
        return RZ_EINVAL;
    return RZ_OK;
}

int rz__semver_cmp(const uint32_t a[3], const uint32_t b[3])
{
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

int rz__verspec_parse(const char *spec, rz__verspec *out)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec || strcmp(spec, "*") == 0)
        return RZ_OK;
    const char *p = spec;
    rz__spec_op op = RZ_SPEC_PREFIX;
    if (*p == '^' || *p == '~') {
        op = *p == '^' ? RZ_SPEC_CARET : RZ_SPEC_TILDE;
        p++;
    }
    unsigned n = parse_parts(p, out->v);
    if (!n)
        return rz__error(RZ_EINVAL, "malformed version spec '%s' (expected "
                         "1.2.3, 1.2, 1, ^1.2 or ~1.2.3)", spec);
    if (op == RZ_SPEC_PREFIX && n == 3)
        op = RZ_SPEC_EXACT;
    out->op = op;
    out->n = n;
    return RZ_OK;
}

bool rz__verspec_match(const rz__verspec *s, const uint32_t v[3])
{
    switch (s->op) {
    case RZ_SPEC_ANY:
        return true;
    case RZ_SPEC_EXACT:
        return rz__semver_cmp(s->v, v) == 0;
    case RZ_SPEC_PREFIX:
        for (unsigned i = 0; i < s->n; i++)
            if (s->v[i] != v[i])
                return false;
        return true;
    case RZ_SPEC_CARET:
        /* npm and Cargo: below 1.0.0 the first non-zero written part is
         * the one that must not change ("^0.2" < 0.3.0, "^0.0.3" = 0.0.3). */
        if (v[0] != s->v[0] || rz__semver_cmp(v, s->v) < 0)
            return false;
        if (s->v[0] == 0 && s->n >= 2 && v[1] != s->v[1])
            return false;
        if (s->v[0] == 0 && s->v[1] == 0 && s->n == 3 && v[2] != s->v[2])
            return false;
        return true;
    case RZ_SPEC_TILDE:
        /* "~1" pins only the major, as npm does. */
        if (v[0] != s->v[0] || (s->n >= 2 && v[1] != s->v[1]))
            return false;
        return rz__semver_cmp(v, s->v) >= 0;
    }
    return false;
}
