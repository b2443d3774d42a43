/* Flow inputs from NAME=VALUE texts: the `--input` rule in the library, so
 * that every shell (the CLI, the bindings) reads them alike and none lets a
 * NUL through (cJSON ends a string at \u0000 and drops the rest unseen). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "flow/model.h"

/* The value of one pair: JSON if it parses as JSON, else the text. */
static int pair_value(const char *name, size_t name_len, const char *text,
                      cJSON **out)
{
    *out = cJSON_Parse(text);
    if (*out && rz__json_text_check(text, strlen(text)) != RZ_OK) {
        cJSON_Delete(*out);
        *out = NULL;
        return rz__error(RZ_EINVALID, "input %.*s: %s", (int)name_len, name,
                         strstr(rz_error_last()->message, "0000")
                             ? "a NUL character (\\u0000) in the value"
                             : rz_error_last()->message);
    }
    if (!*out)
        *out = cJSON_CreateString(text);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_flow_inputs_parse(char **out, const char *const *pairs, size_t n)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_flow_inputs_parse: out is NULL");
    *out = NULL;
    if (n && !pairs)
        return rz__error(RZ_EINVAL, "rz_flow_inputs_parse: pairs is NULL");
    cJSON *obj = cJSON_CreateObject();
    int rc = obj ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        const char *kv = pairs[i] ? pairs[i] : "";
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            rc = rz__error(RZ_EINVALID, "input '%s' is not NAME=VALUE", kv);
            break;
        }
        size_t len = (size_t)(eq - kv);
        char *name = rz__malloc(len + 1);
        cJSON *v = NULL;
        rc = name ? pair_value(kv, len, eq + 1, &v) : rz__error(RZ_ENOMEM, "out of memory");
        if (rc == RZ_OK) {
            memcpy(name, kv, len);
            name[len] = '\0';
            cJSON_DeleteItemFromObjectCaseSensitive(obj, name);   /* the last wins */
            if (!cJSON_AddItemToObject(obj, name, v)) {
                cJSON_Delete(v);
                rc = rz__error(RZ_ENOMEM, "out of memory");
            }
        }
        free(name);
    }
    if (rc == RZ_OK && !(*out = cJSON_PrintUnformatted(obj)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(obj);
    return rc;
}
