/* JSON pointers (RFC 6901) and the lazy pointer -> LINE:COLUMN mapping. */
#include <stdio.h>
#include <string.h>

#include "flow/loader.h"

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

void rz__flow_locate(const rz_flow *f, const char *pointer, uint32_t *line,
                     uint32_t *column)
{
    *line = *column = 0;
    if (!f || !pointer)
        return;
    if (f->format == RZ_FORMAT_JSON && f->src)
        rz__json_locate(f->src, f->src_len, pointer, line, column);
    else if (f->format == RZ_FORMAT_YAML && f->yaml_doc)
        rz__yaml_locate(f->yaml_doc, pointer, line, column);
}

int rz__flow_diag(const rz_flow *f, rz_diags *diags, int code,
                  const char *pointer, const char *fmt, ...)
{
    uint32_t line, column;
    rz__flow_locate(f, pointer, &line, &column);
    va_list ap;
    va_start(ap, fmt);
    rz__vdiag(diags, RZ_SEV_ERROR, code, f ? f->file : NULL, line, column,
              pointer, fmt, ap);
    va_end(ap);
    return code;
}
