/* Public entry points over JSON text (rhizos/schema.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/text.h"
#include "schema/schema_impl.h"

/* Parse exactly one JSON value (surrounding whitespace allowed). */
static int parse(const char *json, size_t len, const char *what, cJSON **out)
{
    *out = NULL;
    if (!json)
        return rz__error(RZ_EINVAL, "%s is NULL", what);
    const char *end = NULL;
    cJSON *x = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    if (x) {
        while (off < len && strchr(" \t\r\n", json[off]) && json[off])
            off++;
        if (off == len)
            return (*out = x), RZ_OK;
        cJSON_Delete(x);
    }
    if (off > len)
        off = len;
    uint32_t line, col;
    rz__text_position(json, len, off, &line, &col);
    return rz__error_at(RZ_ESYNTAX, NULL, line, col, NULL, "%s is not valid "
                        "JSON (line %u, column %u)", what, line, col);
}

int rz_schema_compile(rz_schema **out, const char *json, size_t len)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    cJSON *doc;
    int rc = parse(json, len, "the schema", &doc);
    if (rc != RZ_OK)
        return rc;
    rc = rz__schema_compile(out, doc);
    cJSON_Delete(doc);
    return rc;
}

int rz_schema_validate(const rz_schema *schema, const char *json, size_t len,
                       rz_schema_error_fn fn, void *ud)
{
    if (!schema)
        return rz__error(RZ_EINVAL, "schema is NULL");
    cJSON *x;
    int rc = parse(json, len, "the instance", &x);
    if (rc != RZ_OK)
        return rc;
    rc = rz__schema_eval(schema, x, NULL, fn, ud);
    cJSON_Delete(x);
    return rc;
}

typedef struct check_ctx {
    const char *json, *file;
    size_t len;
    rz_diags *diags;
} check_ctx;

static int to_diag(void *ud, const rz_schema_error *e)
{
    check_ctx *k = ud;
    uint32_t line, col;
    rz__json_locate(k->json, k->len, e->pointer, &line, &col);
    rz__diag(k->diags, RZ_SEV_ERROR, RZ_EINVALID, k->file, line, col,
             e->pointer, "%s: %s", *e->pointer ? e->pointer : "(root)",
             e->message);
    return 0;
}

int rz_schema_check(const rz_schema *schema, const char *json, size_t len,
                    const char *file, rz_diags *diags)
{
    if (!schema)
        return rz__error(RZ_EINVAL, "schema is NULL");
    cJSON *x;
    int rc = parse(json, len, "the instance", &x);
    if (rc != RZ_OK) {
        const rz_error *e = rz_error_last();
        rz__diag(diags, RZ_SEV_ERROR, RZ_ESYNTAX, file, e->line, e->column,
                 NULL, "not valid JSON");
        return rc;
    }
    check_ctx k = {json, file, len, diags};
    rc = rz__schema_eval(schema, x, NULL, to_diag, &k);
    cJSON_Delete(x);
    if (rc == RZ_ETOOBIG)
        rz__diag(diags, RZ_SEV_ERROR, rc, file, 0, 0, NULL, "%s",
                 rz_error_last()->message);
    return rc;
}

int rz_schema_apply_defaults(const rz_schema *schema, const char *json,
                             size_t len, char **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!schema)
        return rz__error(RZ_EINVAL, "schema is NULL");
    cJSON *x;
    int rc = parse(json, len, "the instance", &x);
    if (rc != RZ_OK)
        return rc;
    rc = rz__schema_defaults(schema, x);
    if (rc == RZ_OK && !(*out = cJSON_PrintUnformatted(x)))
        rc = rz__error(RZ_ENOMEM, "out of memory printing the instance");
    cJSON_Delete(x);
    return rc;
}
