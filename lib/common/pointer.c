/* JSON pointers (RFC 6901) and the pointer -> LINE:COLUMN mapping over
 * kept JSON text: a tiny tokenizer that walks to the value, for
 * diagnostics only (the happy path never computes a location). */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/text.h"

const char *rz__json_string_end(const char *p, const char *end)
{
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return end;
        size_t bs = 0;
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            return q + 1;
        p = q + 1;
    }
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void rz__pointer_push(rz__buf *b, const char *token, size_t n)
{
    rz__buf_append(b, "/", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (token[i] != '~' && token[i] != '/')
            continue;
        rz__buf_append(b, token + run, i - run);
        rz__buf_append(b, token[i] == '~' ? "~0" : "~1", 2);
        run = i + 1;
    }
    rz__buf_append(b, token + run, n - run);
}

bool rz__pointer_next(const char **pp, char *tok, size_t cap, size_t *toklen)
{
    const char *p = *pp;
    if (!p || *p != '/')
        return false;
    p++;
    size_t n = 0;
    for (; *p && *p != '/'; p++) {
        char c = *p;
        if (c == '~' && (p[1] == '0' || p[1] == '1'))
            c = *++p == '0' ? '~' : '/';
        if (n + 1 < cap)
            tok[n] = c;
        n++;
    }
    /* An over-long token is reported by length so it can never match. */
    tok[n < cap ? n : cap - 1] = '\0';
    *toklen = n;
    *pp = p;
    return true;
}

typedef struct scan {
    const char *s;
    size_t len, i;
} scan;

static void ws(scan *sc)
{
    while (sc->i < sc->len && is_ws(sc->s[sc->i]))
        sc->i++;
}

static char peek(const scan *sc)
{
    return sc->i < sc->len ? sc->s[sc->i] : '\0';
}

static void skip_string(scan *sc)
{
    const char *e = rz__json_string_end(sc->s + sc->i + 1, sc->s + sc->len);
    sc->i = (size_t)(e - sc->s);
}

/* Skip one value, iteratively (the text is already known to be valid). */
static void skip_value(scan *sc)
{
    size_t depth = 0;
    do {
        ws(sc);
        char c = peek(sc);
        if (!c)
            return;
        if (c == '"') {
            skip_string(sc);
        } else if (c == '{' || c == '[') {
            depth++;
            sc->i++;
        } else if (c == '}' || c == ']') {
            if (depth)
                depth--;
            sc->i++;
        } else if (c == ',' || c == ':') {
            sc->i++;
        } else {
            while (sc->i < sc->len && !is_ws(sc->s[sc->i]) && !strchr(",:]}", sc->s[sc->i]))
                sc->i++;
        }
        if (depth)
            ws(sc);
    } while (depth);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode one escape at s[i] (just past the backslash) into out; returns the
 * number of bytes written (up to 4) and advances *i. */
static size_t unescape(const char *s, size_t len, size_t *i, char out[4])
{
    char c = *i < len ? s[*i] : '\0';
    (*i)++;
    switch (c) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default: out[0] = c; return 1;
    }
    unsigned cp = 0;
    for (int k = 0; k < 4; k++) {
        int h = *i < len ? hexval(s[*i]) : -1;
        if (h < 0)
            return 0;
        cp = cp * 16 + (unsigned)h;
        (*i)++;
    }
    /* Surrogate pairs: the pointer holds the real character. */
    if (cp >= 0xd800 && cp < 0xdc00 && *i + 6 <= len && s[*i] == '\\' && s[*i + 1] == 'u') {
        unsigned lo = 0;
        bool ok = true;
        for (int k = 0; k < 4; k++) {
            int h = hexval(s[*i + 2 + (size_t)k]);
            ok = ok && h >= 0;
            lo = lo * 16 + (unsigned)(h < 0 ? 0 : h);
        }
        if (ok && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            *i += 6;
        }
    }
    return rz__utf8_put(cp, out);
}

/* At a '"': does the string equal tok? Leaves sc past the string. */
static bool key_equals(scan *sc, const char *tok, size_t toklen)
{
    size_t i = sc->i + 1, k = 0;
    bool eq = true;
    while (i < sc->len && sc->s[i] != '"') {
        char buf[4];
        size_t n = 1;
        if (sc->s[i] == '\\') {
            i++;
            n = unescape(sc->s, sc->len, &i, buf);
        } else {
            buf[0] = sc->s[i++];
        }
        for (size_t j = 0; j < n; j++, k++)
            if (k >= toklen || tok[k] != buf[j])
                eq = false;
    }
    sc->i = i < sc->len ? i + 1 : i;
    return eq && k == toklen;
}

/* With sc at a container, move it to the member named by tok. */
static bool find_member(scan *sc, const char *tok, size_t toklen)
{
    char open = peek(sc);
    sc->i++;
    if (open == '{') {
        for (;;) {
            ws(sc);
            if (peek(sc) != '"')
                return false;
            bool eq = key_equals(sc, tok, toklen);
            ws(sc);
            if (peek(sc) != ':')
                return false;
            sc->i++;
            ws(sc);
            if (eq)
                return true;
            skip_value(sc);
            ws(sc);
            if (peek(sc) != ',')
                return false;
            sc->i++;
        }
    }
    if (toklen == 0 || toklen > 18 || strspn(tok, "0123456789") != toklen)
        return false;
    size_t want = (size_t)strtoull(tok, NULL, 10);
    for (size_t idx = 0;; idx++) {
        ws(sc);
        if (peek(sc) == ']' || !peek(sc))
            return false;
        if (idx == want)
            return true;
        skip_value(sc);
        ws(sc);
        if (peek(sc) != ',')
            return false;
        sc->i++;
    }
}

void rz__json_locate(const char *src, size_t len, const char *pointer,
                     uint32_t *line, uint32_t *column)
{
    scan sc = {src, len, 0};
    if (len >= 3 && memcmp(src, "\xef\xbb\xbf", 3) == 0)
        sc.i = 3;
    ws(&sc);
    size_t best = sc.i;
    char tok[512];
    size_t toklen;
    const char *p = pointer;
    while (rz__pointer_next(&p, tok, sizeof tok, &toklen)) {
        char c = peek(&sc);
        if (toklen >= sizeof tok)
            break;
        if ((c != '{' && c != '[') || !find_member(&sc, tok, toklen))
            break;
        best = sc.i;
    }
    rz__text_position(src, len, best, line, column);
}
