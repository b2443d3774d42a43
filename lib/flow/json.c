/* JSON: a nesting pre-check, cJSON for the tree, and a tiny tokenizer that
 * finds the value at a JSON pointer in the kept text (for diagnostics). */
#include <stdlib.h>
#include <string.h>

#include "flow/loader.h"

/* ---- nesting pre-check ----
 * cJSON recurses once per level (its own cap is 1000); checking first keeps
 * a document of 100k brackets from ever reaching it. */

static const char *string_end(const char *p, const char *end)
{
    /* p is just past the opening quote; returns just past the closing one. */
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

static bool depth_ok(rz__load *ld, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    unsigned depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = string_end(p + 1, end);
            continue;
        }
        if (c == '{' || c == '[') {
            if (++depth > RZ_FLOW_MAX_DEPTH) {
                uint32_t line, column;
                rz__text_position(text, len, (size_t)(p - text), &line, &column);
                rz__load_diag_at(ld, RZ_ETOOBIG, line, column, NULL,
                                 "nesting deeper than %d levels", RZ_FLOW_MAX_DEPTH);
                return false;
            }
        } else if ((c == '}' || c == ']') && depth) {
            depth--;
        }
        p++;
    }
    return true;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void syntax_error(rz__load *ld, const char *text, size_t len, size_t off)
{
    uint32_t line, column;
    rz__text_position(text, len, off, &line, &column);
    if (off >= len)
        rz__load_diag_at(ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected end of input");
    else if ((unsigned char)text[off] >= 0x20 && (unsigned char)text[off] < 0x7f)
        rz__load_diag_at(ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected '%c'", text[off]);
    else
        rz__load_diag_at(ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected byte 0x%02x",
                         (unsigned char)text[off]);
}

cJSON *rz__json_tree(rz__load *ld, const char *text, size_t len)
{
    if (!depth_ok(ld, text, len))
        return NULL;
    size_t skip = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text + skip, len - skip, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - text) : len;
        syntax_error(ld, text, len, off);
        return NULL;
    }
    /* cJSON stops after the first value; anything but space after it is an
     * error (its own NUL check misfires on length-bounded input). */
    size_t off = (size_t)(end - text);
    while (off < len && is_ws(text[off]))
        off++;
    if (off < len) {
        cJSON_Delete(root);
        syntax_error(ld, text, len, off);
        return NULL;
    }
    return root;
}

/* ---- locating a pointer in the text ---- */

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
    const char *e = string_end(sc->s + sc->i + 1, sc->s + sc->len);
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
