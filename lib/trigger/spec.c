/* A trigger in one shape, whichever of the two forms was written
 * (docs/triggers.md): what the orchestrator schedules and routes from.
 * rz_flow_triggers (lib/flow/triggers.c) applies it to a flow's list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "trigger/trigger_impl.h"

/* The type and the settings map (or scalar) of one entry; NULL type when
 * the entry has neither shape. */
static const char *split(const cJSON *t, const cJSON **settings)
{
    *settings = NULL;
    if (!cJSON_IsObject(t))
        return NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (type) {
        *settings = t;
        return cJSON_IsString(type) ? type->valuestring : NULL;
    }
    if (!t->child || t->child->next)
        return NULL;
    *settings = t->child;
    return t->child->string;
}

static const char *str_of(const cJSON *settings, const char *k)
{
    const cJSON *v = cJSON_IsObject(settings) ? cJSON_GetObjectItemCaseSensitive(settings, k)
                                              : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

char *rz__trigger_name(const cJSON *t, size_t index)
{
    const cJSON *s;
    const char *type = split(t, &s);
    if (!type)
        return NULL;
    const char *name = str_of(s, "name");
    return name ? rz__strdup(name) : rz__asprintf("%s-%zu", type, index);
}

cJSON *rz__trigger_normalize(const cJSON *t, size_t index)
{
    const cJSON *s;
    const char *type = split(t, &s);
    if (!type)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    char *name = rz__trigger_name(t, index);
    bool ok = o && name && cJSON_AddNumberToObject(o, "index", (double)index)
        && cJSON_AddStringToObject(o, "type", type) && cJSON_AddStringToObject(o, "name", name);
    free(name);
    const cJSON *en = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "enabled") : NULL;
    ok = ok && cJSON_AddBoolToObject(o, "enabled", !cJSON_IsFalse(en));
    if (ok && strcmp(type, "cron") == 0) {
        const char *sched = cJSON_IsString(s) ? s->valuestring : str_of(s, "schedule");
        const char *tz = str_of(s, "tz"), *cu = str_of(s, "catchup"), *ov = str_of(s, "overlap");
        ok = sched && cJSON_AddStringToObject(o, "schedule", sched)
            && cJSON_AddStringToObject(o, "tz", tz ? tz : "UTC")
            && cJSON_AddStringToObject(o, "catchup", cu ? cu : "one")
            && cJSON_AddStringToObject(o, "overlap", ov ? ov : "skip");
    } else if (ok && strcmp(type, "flow") == 0) {
        const char *src = cJSON_IsString(s) ? s->valuestring : str_of(s, "flow");
        const char *st = str_of(s, "status");
        ok = src && cJSON_AddStringToObject(o, "flow", src)
            && cJSON_AddStringToObject(o, "status", st ? st : "succeeded");
    } else if (ok && strcmp(type, "event") == 0) {
        const char *ev = cJSON_IsString(s) ? s->valuestring : str_of(s, "event");
        ok = ev && cJSON_AddStringToObject(o, "event", ev);
    } else if (ok && strcmp(type, "webhook") == 0) {
        const cJSON *sec = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "secret")
                                             : NULL;
        const char *id = str_of(sec, "credentialId");
        const cJSON *mb = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "max_body_bytes")
                                            : NULL;
        ok = id && cJSON_AddStringToObject(o, "secret", id)
            && cJSON_AddNumberToObject(o, "max_body_bytes",
                                       cJSON_IsNumber(mb) ? mb->valuedouble : 65536);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
