/* Typed JSON field readers whose errors name the field's JSON pointer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

/* Documents bigger than this are refused before parsing. */
#define JSON_MAX_BYTES ((size_t)512 << 20)

int rz__json_field_error(const char *base, const char *name, const char *what)
{
    char ptr[256];
    snprintf(ptr, sizeof ptr, "%s/%s", base, name);
    return rz__error_at(RZ_EINVALID, "", 0, 0, ptr, "%s: %s", ptr, what);
}

int rz__json_u64(const cJSON *obj, const char *name, uint64_t max,
                 const char *base, uint64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    if (!cJSON_IsNumber(it))
        return rz__json_field_error(base, name, "must be a number");
    double v = it->valuedouble;
    if (!isfinite(v) || v < 0)
        return rz__json_field_error(base, name, "must be a non-negative number");
    if (v != floor(v))
        return rz__json_field_error(base, name, "must be a whole number");
    if (v > (double)max)
        return rz__json_field_error(base, name, "is too large");
    *out = (uint64_t)v;
    return RZ_OK;
}

int rz__json_money(const cJSON *obj, const char *name, uint64_t max,
                   const char *base, uint64_t *out, bool *found)
{
    char old[64];
    size_t n = strlen(name);
    if (found)
        *found = false;
    if (n < 7 || n - 7 + sizeof "_cents" > sizeof old ||
        strcmp(name + n - 7, "_micros") != 0)
        return rz__error(RZ_EINTERNAL, "money field '%s'", name);
    snprintf(old, sizeof old, "%.*s_cents", (int)(n - 7), name);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, old);
    if (m && c)
        return rz__json_field_error(base, old, "replaced by the micro-dollar "
                                    "field beside it; give one");
    if (!c || cJSON_IsNull(c)) {
        if (found)
            *found = m && !cJSON_IsNull(m);
        return rz__json_u64(obj, name, max, base, out);
    }
    uint64_t cents = 0;
    int rc = rz__json_u64(obj, old, max / 10000, base, &cents);
    if (rc != RZ_OK)
        return rc;
    *out = cents * 10000;
    if (found)
        *found = true;
    return RZ_OK;
}

int rz__json_real(const cJSON *obj, const char *name, double lo, double hi,
                  const char *base, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    if (!cJSON_IsNumber(it))
        return rz__json_field_error(base, name, "must be a number");
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be between %g and %g", lo, hi);
        return rz__json_field_error(base, name, msg);
    }
    *out = v;
    return RZ_OK;
}

int rz__json_str(const cJSON *obj, const char *name, const char *base,
                 const char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    if (!cJSON_IsString(it))
        return rz__json_field_error(base, name, "must be a string");
    if (strlen(it->valuestring) > RZ__JSON_STR_MAX)
        return rz__json_field_error(base, name, "is too long");
    *out = it->valuestring;
    return RZ_OK;
}

int rz__json_obj(const cJSON *obj, const char *name, const char *base,
                 const cJSON **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    if (!cJSON_IsObject(it))
        return rz__json_field_error(base, name, "must be an object");
    *out = it;
    return RZ_OK;
}

int rz__json_strv(const cJSON *obj, const char *name, const char *base,
                  rz__strv *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    if (!cJSON_IsArray(it))
        return rz__json_field_error(base, name, "must be an array of strings");
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsString(e) || strlen(e->valuestring) > RZ__JSON_STR_MAX)
            return rz__json_field_error(base, name, "must be an array of strings");
        if (rz__strv_add(out, e->valuestring) != RZ_OK)
            return RZ_ENOMEM;
    }
    return RZ_OK;
}

int rz__json_labels(const cJSON *obj, const char *name, const char *base,
                    rz__labels *out)
{
    const cJSON *it = NULL;
    int rc = rz__json_obj(obj, name, base, &it);
    if (rc != RZ_OK || !it)
        return rc;
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        char buf[64];
        const char *v = NULL;
        if (cJSON_IsString(e))
            v = e->valuestring;
        else if (cJSON_IsNumber(e) && isfinite(e->valuedouble))
            v = (snprintf(buf, sizeof buf, "%.17g", e->valuedouble), buf);
        else if (cJSON_IsBool(e))
            v = cJSON_IsTrue(e) ? "true" : "false";
        if (!v || !*e->string || strlen(v) > RZ__JSON_STR_MAX ||
            strlen(e->string) > RZ__JSON_STR_MAX)
            return rz__json_field_error(base, name, "must map names to strings");
        if (rz__labels_set(out, e->string, v) != RZ_OK)
            return RZ_ENOMEM;
    }
    return RZ_OK;
}

int rz__json_keep_unknown(cJSON *dst, const cJSON *src)
{
    if (cJSON_IsArray(dst) && cJSON_IsArray(src)) {
        cJSON *d = dst->child;
        for (const cJSON *s = src->child; s && d; s = s->next, d = d->next)
            if (cJSON_IsObject(d) && cJSON_IsObject(s) &&
                rz__json_keep_unknown(d, s) != RZ_OK)
                return RZ_ENOMEM;
        return RZ_OK;
    }
    if (!cJSON_IsObject(dst) || !cJSON_IsObject(src))
        return RZ_OK;
    for (const cJSON *s = src->child; s; s = s->next) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, s->string);
        if (d) {
            if (rz__json_keep_unknown(d, s) != RZ_OK)
                return RZ_ENOMEM;
            continue;
        }
        cJSON *copy = cJSON_Duplicate(s, 1);
        if (!copy || !cJSON_AddItemToObject(dst, s->string, copy)) {
            cJSON_Delete(copy);
            return rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    return RZ_OK;
}

int rz__json_list(const cJSON *root, const char *key, const cJSON **arr)
{
    if (cJSON_IsObject(root))
        root = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(root))
        return rz__error_at(RZ_EINVALID, "", 0, 0, "",
                            "expected an array or an object with \"%s\": [...]", key);
    *arr = root;
    return RZ_OK;
}

int rz__json_parse(cJSON **out, const char *json, size_t len)
{
    *out = NULL;
    if (!json)
        return rz__error(RZ_EINVAL, "no JSON given");
    if (len > JSON_MAX_BYTES)
        return rz__error(RZ_ETOOBIG, "JSON document larger than %zu bytes",
                         JSON_MAX_BYTES);
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!doc && rz__json_valid(json, len))   /* cJSON fails alike for memory */
        return rz__error(RZ_ENOMEM, "out of memory");
    if (!doc) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        return rz__error(RZ_ESYNTAX, "malformed JSON near byte %zu", off);
    }
    *out = doc;
    return RZ_OK;
}

int rz__json_major_minor(const cJSON *obj, const char *name, const char *base,
                         uint32_t *major, uint32_t *minor)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it))
        return RZ_OK;
    char buf[64];
    const char *s = NULL;
    if (cJSON_IsString(it))
        s = it->valuestring;
    else if (cJSON_IsNumber(it) && isfinite(it->valuedouble) && it->valuedouble >= 0 &&
             it->valuedouble < 1000)
        s = (snprintf(buf, sizeof buf, "%.1f", it->valuedouble), buf);
    unsigned a = 0, b = 0;
    int n = 0;
    /* A sign would wrap in %u: only digits. */
    if (!s || !(*s >= '0' && *s <= '9') || sscanf(s, "%3u.%3u%n", &a, &b, &n) != 2 ||
        s[n] != '\0')
        return rz__json_field_error(base, name, "must be \"MAJOR.MINOR\"");
    *major = a;
    *minor = b;
    return RZ_OK;
}

int rz__json_parse_list(void **out, size_t *count, const char *json, size_t len,
                        const char *key, size_t elem_size, rz__json_item_fn item,
                        void (*free_list)(void *list, size_t n))
{
    *out = NULL;
    *count = 0;
    cJSON *doc;
    const cJSON *arr;
    int rc = rz__json_parse(&doc, json, len);
    if (rc != RZ_OK)
        return rc;
    if ((rc = rz__json_list(doc, key, &arr)) != RZ_OK) {
        cJSON_Delete(doc);
        return rc;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    void *list = rz__calloc(n ? n : 1, elem_size);
    if (!list) {
        cJSON_Delete(doc);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char base[64];
        snprintf(base, sizeof base, "/%zu", i);
        if ((rc = item(list, i, e, base)) != RZ_OK)
            break;
        i++;
    }
    cJSON_Delete(doc);
    if (rc != RZ_OK) {
        free_list(list, i);
        return rc;
    }
    *out = list;
    *count = n;
    return RZ_OK;
}
