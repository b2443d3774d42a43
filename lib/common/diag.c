/* Diagnostic lists: collected in discovery order, printed compiler-style. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/array.h"
#include "common/internal.h"

/* Hostile documents can produce a problem per byte; past this we stop
 * collecting and say so once. */
#define RZ_DIAGS_MAX 1000

struct rz_diags {
    rz_diag *items;
    size_t len, cap;
    size_t errors;
    bool truncated;
};

int rz_diags_new(rz_diags **out)
{
    *out = rz__calloc(1, sizeof **out);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

static void diag_release(rz_diag *d)
{
    free((char *)d->file);
    free((char *)d->message);
    free((char *)d->pointer);
}

void rz_diags_free(rz_diags *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->len; i++)
        diag_release(&d->items[i]);
    free(d->items);
    free(d);
}

size_t rz_diags_count(const rz_diags *d)
{
    return d ? d->len : 0;
}

size_t rz_diags_error_count(const rz_diags *d)
{
    return d ? d->errors : 0;
}

const rz_diag *rz_diags_get(const rz_diags *d, size_t i)
{
    return d && i < d->len ? &d->items[i] : NULL;
}

static int push(rz_diags *d, rz_severity sev, int code, const char *file,
                uint32_t line, uint32_t column, const char *pointer, char *msg)
{
    rz_diag *p = rz__grow(d->items, &d->cap, d->len + 1, sizeof *p, 8);
    if (!p) {
        free(msg);
        return RZ_ENOMEM;
    }
    d->items = p;
    rz_diag *x = &d->items[d->len];
    x->file = rz__strdup(file ? file : "");
    x->pointer = rz__strdup(pointer ? pointer : "");
    x->message = msg;
    x->line = line;
    x->column = column;
    x->code = code;
    x->severity = sev;
    if (!x->file || !x->pointer) {
        diag_release(x);
        return RZ_ENOMEM;
    }
    d->len++;
    if (sev == RZ_SEV_ERROR)
        d->errors++;
    return RZ_OK;
}

int rz__vdiag(rz_diags *diags, rz_severity sev, int code, const char *file,
              uint32_t line, uint32_t column, const char *pointer,
              const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* The first error of a pass is what rz_error_last() reports. */
    if (sev == RZ_SEV_ERROR && (!diags || diags->errors == 0))
        rz__error_at(code, file, line, column, pointer, "%s", buf);
    if (!diags)
        return code;
    if (diags->len >= RZ_DIAGS_MAX) {
        if (!diags->truncated) {
            diags->truncated = true;
            push(diags, RZ_SEV_NOTE, code, file, 0, 0, NULL,
                 rz__strdup("too many problems; stopped reporting"));
        }
        if (sev == RZ_SEV_ERROR)
            diags->errors++;
        return code;
    }
    push(diags, sev, code, file, line, column, pointer, rz__strdup(buf));
    return code;
}

int rz__diag(rz_diags *diags, rz_severity sev, int code, const char *file,
             uint32_t line, uint32_t column, const char *pointer,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rz__vdiag(diags, sev, code, file, line, column, pointer, fmt, ap);
    va_end(ap);
    return code;
}

static int cmp_diag(const void *a, const void *b)
{
    const rz_diag *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    if (c)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return 0;
}

void rz_diags_sort(rz_diags *d)
{
    if (!d || d->len < 2)
        return;
    /* qsort is not stable: sort (key, original index) by insertion sort on
     * small lists, which is what diagnostics are in practice. */
    for (size_t i = 1; i < d->len; i++) {
        rz_diag tmp = d->items[i];
        size_t j = i;
        while (j > 0 && cmp_diag(&d->items[j - 1], &tmp) > 0) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = tmp;
    }
}

static const char *sev_name(rz_severity s)
{
    switch (s) {
    case RZ_SEV_WARNING: return "warning";
    case RZ_SEV_NOTE: return "note";
    default: return "error";
    }
}

int rz_diags_to_text(const rz_diags *d, char **out)
{
    rz__buf b = {0};
    for (size_t i = 0; d && i < d->len; i++) {
        const rz_diag *x = &d->items[i];
        const char *file = x->file[0] ? x->file : "<input>";
        if (x->line)
            rz__buf_printf(&b, "%s:%u:%u: %s: %s\n", file, x->line, x->column,
                           sev_name(x->severity), x->message);
        else
            rz__buf_printf(&b, "%s: %s: %s\n", file, sev_name(x->severity),
                           x->message);
    }
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_diags_to_json(const rz_diags *d, char **out)
{
    *out = NULL;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && d && i < d->len; i++) {
        const rz_diag *x = &d->items[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o))
            break;
        cJSON_AddStringToObject(o, "file", x->file);
        cJSON_AddNumberToObject(o, "line", x->line);
        cJSON_AddNumberToObject(o, "column", x->column);
        cJSON_AddStringToObject(o, "code", rz_status_name(x->code));
        cJSON_AddStringToObject(o, "severity", sev_name(x->severity));
        cJSON_AddStringToObject(o, "message", x->message);
        if (x->pointer[0])
            cJSON_AddStringToObject(o, "pointer", x->pointer);
    }
    char *s = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    /* cJSON allocates with malloc by default, so rz_free releases it. */
    *out = s;
    return RZ_OK;
}
