/* The lazy pointer -> LINE:COLUMN mapping of a loaded flow. */
#include <stdio.h>
#include <string.h>

#include "flow/loader.h"

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

void rz_flow_locate(const rz_flow *f, const char *pointer, uint32_t *line, uint32_t *column)
{
    uint32_t l, c;
    rz__flow_locate(f, pointer, &l, &c);
    if (line)
        *line = l;
    if (column)
        *column = c;
}
