/* libFuzzer target: the expression parser and evaluator (lib/flow/expr.c).
 *
 * The first byte picks the mode (even: a `when` condition, odd: a string
 * value with ${{ }}); the rest is the text. Every parse that succeeds is
 * evaluated against a fixed context. Checks: no crash, leak or undefined
 * behaviour; a failed parse or evaluation gives RZ_EEXPR (or RZ_ENOMEM)
 * with an offset inside the text and no value; a string result stays under
 * the cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow/model.h"

static cJSON *ctx;

static const cJSON *resolve(const rz__ref *r, void *ud)
{
    static const char *const fields[] = {"outputs", "status", "error", "attempts",
                                         "duration_ms"};
    const cJSON *c = ud;
    if (r->kind == RZ_REF_INPUT)
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(c, "inputs"), r->name);
    if (r->kind == RZ_REF_FLOW)
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(c, "flow"), r->name);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(c, "steps"), r->name);
    if (r->field != RZ_FIELD_OUTPUTS)
        return cJSON_GetObjectItemCaseSensitive(s, fields[r->field]);
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(s, "outputs"), r->port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        ctx = cJSON_Parse("{\"inputs\": {\"s\": \"abc\", \"n\": 3, \"big\": 9007199254740991,"
                          " \"l\": [1, \"x\", null, [2], {\"k\": true}], \"j\": \"{\\\"a\\\":[1]}\"},"
                          " \"steps\": {\"a\": {\"outputs\": {\"o\": {\"k\": [1, 2]}, \"t\": \"{0}{0}\"},"
                          " \"status\": \"failed\", \"error\": \"boom\", \"attempts\": 2,"
                          " \"duration_ms\": 10}},"
                          " \"flow\": {\"status\": \"failed\", \"failed_steps\": [\"a\"]}}");
    if (!ctx || size < 1 || memchr(data + 1, '\0', size - 1))
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    rz__expr *e = NULL;
    char err[256];
    size_t off = 0;
    int rc = rz__expr_parse(&e, text, (data[0] & 1) == 0, err, sizeof err, &off);
    if (rc != RZ_OK) {
        if (e || (rc != RZ_EEXPR && rc != RZ_ENOMEM) || off > size - 1 || !err[0])
            abort();
        free(text);
        return 0;
    }
    for (size_t i = 0; i < rz__expr_ref_count(e); i++)
        if (!rz__expr_ref(e, i)->name || rz__expr_ref(e, i)->offset > size - 1)
            abort();
    /* Without references the check and the evaluation agree. */
    int checked = rz__expr_check(e, err, sizeof err, &off);
    cJSON *v = NULL;
    rc = rz__expr_eval(e, resolve, ctx, &v);
    if (rz__expr_ref_count(e) == 0 && checked != RZ_ENOMEM && rc != RZ_ENOMEM &&
        (checked == RZ_OK) != (rc == RZ_OK))
        abort();
    if (rc == RZ_OK) {
        if (!v || (cJSON_IsString(v) && strlen(v->valuestring) > RZ_EXPR_MAX_STRING +
                                                                     size))
            abort();
    } else if (v || (rc != RZ_EEXPR && rc != RZ_ENOMEM)) {
        abort();
    }
    cJSON_Delete(v);
    rz__expr_free(e);
    free(text);
    return 0;
}
