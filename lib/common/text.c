/* Text positions, UTF-8 encoding, edit distance and "did you mean". */
#include <stdio.h>
#include <string.h>

#include "common/text.h"

void rz__text_position(const char *src, size_t len, size_t off,
                       uint32_t *line, uint32_t *column)
{
    if (off > len)
        off = len;
    uint32_t l = 1;
    size_t bol = 0;
    for (const char *p = src; (p = memchr(p, '\n', off - (size_t)(p - src)));) {
        p++;
        l++;
        bol = (size_t)(p - src);
    }
    *line = l;
    *column = (uint32_t)(off - bol + 1);
}

size_t rz__utf8_put(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t rz__edit_distance(const char *a, const char *b, size_t limit)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > limit)
        return limit + 1;
    size_t r0[65], r1[65], r2[65];
    size_t *prev2 = r0, *prev = r1, *cur = r2;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb] <= limit ? prev[lb] : limit + 1;
}

void rz__suggest_init_limit(rz__suggest *s, const char *want, size_t limit)
{
    s->want = want;
    s->best = NULL;
    s->limit = limit;
    s->dist = limit + 1;
}

void rz__suggest_init(rz__suggest *s, const char *want)
{
    size_t n = strlen(want);
    rz__suggest_init_limit(s, want, n < 3 ? 0 : n < 6 ? 1 : n < 10 ? 2 : 3);
}

void rz__suggest_try(rz__suggest *s, const char *cand)
{
    if (!cand || strcmp(cand, s->want) == 0)
        return;
    size_t d = rz__edit_distance(s->want, cand, s->limit);
    if (d < s->dist) {
        s->dist = d;
        s->best = cand;
    }
}

const char *rz__suggest_text(const rz__suggest *s, char *buf, size_t cap)
{
    if (!s->best)
        return "";
    snprintf(buf, cap, "; did you mean '%s'?", s->best);
    return buf;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF): what CBOR text strings must hold, and what every text the
 * library takes in must be. */
size_t rz__utf8_bad_at(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
                 : (c & 0xf8) == 0xf0 ? 3 : 0;
        if (k == 0 || n - i <= k)
            return i;
        uint32_t cp = c & (0x3fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3fu);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += k + 1;
    }
    return n;
}

bool rz__utf8_valid(const unsigned char *s, size_t n)
{
    return rz__utf8_bad_at(s, n) == n;
}
