/* A flow's triggers, normalised (rz_flow_triggers, docs/triggers.md). */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "flow/model.h"
#include "trigger/trigger_impl.h"

int rz_flow_triggers(const rz_flow *f, char **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_flow_triggers: out is NULL");
    *out = NULL;
    if (!f)
        return rz__error(RZ_EINVAL, "rz_flow_triggers: flow is NULL");
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t i = 0;
    for (const cJSON *t = f->triggers ? f->triggers->child : NULL; t; t = t->next, i++) {
        cJSON *n = rz__trigger_normalize(t, i);
        if (!n || !cJSON_AddItemToArray(arr, n)) {
            cJSON_Delete(n);
            cJSON_Delete(arr);
            return rz__error(RZ_EINVALID, "trigger %zu is malformed (validate the flow first)", i);
        }
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = rz__strdup(s);
    cJSON_free(s);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}
