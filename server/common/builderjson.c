/* The builder's answers (see builderjson.h). */
#include <string.h>
#include <strings.h>

#include "builderjson.h"

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; hay && *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return !*needle;
}

bool builder_module_matches(const rz_module *m, const char *q)
{
    return !q || !*q || contains_ci(rz_module_id(m), q) ||
           contains_ci(rz_module_name(m), q) || contains_ci(rz_module_description(m), q);
}

cJSON *builder_module_json(const rz_module *m)
{
    char *manifest = NULL;
    char digest[65];
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", rz_module_id(m));
    cJSON_AddStringToObject(doc, "version", rz_module_version(m));
    cJSON_AddStringToObject(doc, "name", rz_module_name(m) ? rz_module_name(m) : "");
    cJSON_AddStringToObject(doc, "description",
                            rz_module_description(m) ? rz_module_description(m) : "");
    if (rz_module_publisher(m))
        cJSON_AddStringToObject(doc, "publisher", rz_module_publisher(m));
    else
        cJSON_AddNullToObject(doc, "publisher");
    if (rz_module_digest(m, digest) == RZ_OK)
        cJSON_AddStringToObject(doc, "digest", digest);
    cJSON *man = rz_module_manifest_json(m, &manifest) == RZ_OK ? cJSON_Parse(manifest) : NULL;
    rz_free(manifest);
    cJSON_AddItemToObject(doc, "manifest", man ? man : cJSON_CreateObject());
    return doc;
}

cJSON *builder_diags_json(const rz_diags *d)
{
    char *json = NULL;
    cJSON *list = rz_diags_to_json(d, &json) == RZ_OK ? cJSON_Parse(json) : NULL;
    rz_free(json);
    return cJSON_IsArray(list) ? list : (cJSON_Delete(list), cJSON_CreateArray());
}

cJSON *builder_validate_json(int rc, const rz_diags *d)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddBoolToObject(doc, "valid", rc == RZ_OK);
    cJSON_AddNumberToObject(doc, "errors", (double)rz_diags_error_count(d));
    cJSON_AddNumberToObject(doc, "warnings",
                            (double)(rz_diags_count(d) - rz_diags_error_count(d)));
    cJSON_AddItemToObject(doc, "diagnostics", builder_diags_json(d));
    return doc;
}
