/* JSON text <-> CBOR for the node protocol: a generic mapping of the JSON
 * data model, so both ends speak the shapes of docs/api.md in either form. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cbor.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "common/json.h"
#include "common/text.h"
#include "rhizos/client.h"

static bool keys_unique(const cJSON *obj)
{
    rz__map seen;
    if (rz__map_init(&seen, (size_t)cJSON_GetArraySize(obj)) != RZ_OK)
        return false;
    bool ok = true;
    for (const cJSON *c = obj->child; ok && c; c = c->next)
        ok = rz__map_put(&seen, c->string, 0) == RZ_OK;
    rz__map_free(&seen);
    return ok;
}

/* What the peer's decoder would refuse: keys or strings that are not UTF-8,
 * and repeated keys (the CBOR map would repeat them). */
static bool tree_ok(const cJSON *v, int depth)
{
    if (depth > RZ_WIRE_DEPTH_MAX + 1)
        return true;        /* too deep: encode_value refuses it anyway */
    if (v->string && !rz__utf8_valid((const unsigned char *)v->string, strlen(v->string)))
        return false;
    if (cJSON_IsString(v))
        return rz__utf8_valid((const unsigned char *)v->valuestring, strlen(v->valuestring));
    if (cJSON_IsObject(v) && !keys_unique(v))
        return false;
    for (const cJSON *c = v->child; c; c = c->next)
        if (!tree_ok(c, depth + 1))
            return false;
    return true;
}

/* ---- encode ---- */

static cbor_item_t *encode_number(double d)
{
    /* Integral values within 2^53 are exact in a double: send them as
     * integers, which is what ids and micros are. */
    if (d == floor(d) && fabs(d) <= 9007199254740992.0 && !(d == 0 && signbit(d))) {
        if (d >= 0)
            return cbor_build_uint64((uint64_t)d);
        cbor_item_t *n = cbor_build_uint64((uint64_t)(-(d + 1)));
        if (n)
            cbor_mark_negint(n);
        return n;
    }
    return cbor_build_float8(d);
}

static cbor_item_t *encode_value(const cJSON *v, int depth);

static cbor_item_t *encode_object(const cJSON *v, int depth)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    cbor_item_t *map = cbor_new_definite_map(n);
    if (!map)
        return NULL;
    for (const cJSON *c = v->child; c; c = c->next) {
        struct cbor_pair pair = { cbor_build_string(c->string),
                                  encode_value(c, depth + 1) };
        bool ok = pair.key && pair.value && cbor_map_add(map, pair);
        if (pair.key)
            cbor_decref(&pair.key);
        if (pair.value)
            cbor_decref(&pair.value);
        if (!ok) {
            cbor_decref(&map);
            return NULL;
        }
    }
    return map;
}

static cbor_item_t *encode_array(const cJSON *v, int depth)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    cbor_item_t *arr = cbor_new_definite_array(n);
    if (!arr)
        return NULL;
    for (const cJSON *c = v->child; c; c = c->next) {
        cbor_item_t *item = encode_value(c, depth + 1);
        bool ok = item && cbor_array_push(arr, item);
        if (item)
            cbor_decref(&item);
        if (!ok) {
            cbor_decref(&arr);
            return NULL;
        }
    }
    return arr;
}

static cbor_item_t *encode_value(const cJSON *v, int depth)
{
    if (depth > RZ_WIRE_DEPTH_MAX)
        return NULL;
    if (cJSON_IsObject(v))
        return encode_object(v, depth);
    if (cJSON_IsArray(v))
        return encode_array(v, depth);
    if (cJSON_IsString(v))
        return cbor_build_string(v->valuestring);
    if (cJSON_IsNumber(v))
        return encode_number(v->valuedouble);
    if (cJSON_IsBool(v))
        return cbor_build_bool(cJSON_IsTrue(v));
    return cbor_new_null();
}

int rz_wire_encode(const char *json, size_t len, unsigned char **out,
                   size_t *out_len)
{
    if (!out || !out_len)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    *out_len = 0;
    if (!json)
        return rz__error(RZ_EINVAL, "json is NULL");
    if (len > RZ_WIRE_BYTES_MAX)
        return rz__error(RZ_ETOOBIG, "JSON of %zu bytes is over the %u-byte limit",
                         len, RZ_WIRE_BYTES_MAX);
    if (memchr(json, '\0', len))
        return rz__error(RZ_ESYNTAX, "JSON text with a NUL byte");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root)
        return rz__error(RZ_ESYNTAX, "malformed JSON near byte %zu",
                         end ? (size_t)(end - json) : 0);
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' ||
                                *end == '\r'))
        end++;
    if (end != json + len) {
        cJSON_Delete(root);
        return rz__error(RZ_ESYNTAX, "text after the JSON value at byte %zu",
                         (size_t)(end - json));
    }
    if (!tree_ok(root, 0)) {
        cJSON_Delete(root);
        return rz__error(RZ_ESYNTAX, "JSON with a repeated key or text that is not UTF-8");
    }
    cbor_item_t *item = encode_value(root, 0);
    cJSON_Delete(root);
    if (!item)
        return rz__error(RZ_ETOOBIG, "JSON nests deeper than %d levels or memory ran out",
                         RZ_WIRE_DEPTH_MAX);
    unsigned char *buf = NULL;
    size_t cap = 0;
    size_t n = cbor_serialize_alloc(item, &buf, &cap);
    cbor_decref(&item);
    if (n == 0) {
        free(buf);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    *out = buf;
    *out_len = n;
    return RZ_OK;
}

/* ---- decode ---- */

static cJSON *decode_item(const cbor_item_t *it, int depth);

static cJSON *decode_int(const cbor_item_t *it)
{
    char buf[32];
    uint64_t v = cbor_get_int(it);
    if (cbor_isa_uint(it))
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    else if (v == UINT64_MAX)
        snprintf(buf, sizeof buf, "-18446744073709551616");
    else
        snprintf(buf, sizeof buf, "-%llu", (unsigned long long)v + 1);
    /* Raw text keeps integers past 2^53 exact in the JSON we print. */
    return cJSON_CreateRaw(buf);
}

static cJSON *decode_float(const cbor_item_t *it)
{
    double d = cbor_float_get_float(it);
    if (isnan(d) || isinf(d))
        return cJSON_CreateNull();
    char buf[64];
    rz__number_format(d, buf, sizeof buf);
    return cJSON_CreateRaw(buf);
}

static char *decode_text(const cbor_item_t *it)
{
    if (!cbor_isa_string(it) || !cbor_string_is_definite(it))
        return NULL;
    size_t n = cbor_string_length(it);
    const unsigned char *p = cbor_string_handle(it);
    if (memchr(p, 0, n) || !rz__utf8_valid(p, n))
        return NULL;        /* a NUL cannot live in a C string */
    return rz__strndup((const char *)p, n);
}

static cJSON *decode_map(const cbor_item_t *it, int depth)
{
    if (!cbor_map_is_definite(it))
        return NULL;
    cJSON *obj = cJSON_CreateObject();
    struct cbor_pair *pairs = cbor_map_handle(it);
    size_t n = cbor_map_size(it);
    for (size_t i = 0; obj && i < n; i++) {
        char *key = decode_text(pairs[i].key);
        cJSON *val = key ? decode_item(pairs[i].value, depth + 1) : NULL;
        if (!val) {
            cJSON_Delete(obj);
            obj = NULL;
        } else {
            cJSON_AddItemToObject(obj, key, val);
        }
        free(key);
    }
    /* A duplicate key is malformed. One hash pass at the end: a lookup per
     * insert would make a map of n keys cost n^2 (a 1 MB body, a minute). */
    if (obj && !keys_unique(obj)) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    return obj;
}

static cJSON *decode_array(const cbor_item_t *it, int depth)
{
    if (!cbor_array_is_definite(it))
        return NULL;
    cJSON *arr = cJSON_CreateArray();
    cbor_item_t **items = cbor_array_handle(it);
    size_t n = cbor_array_size(it);
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *val = decode_item(items[i], depth + 1);
        if (!val) {
            cJSON_Delete(arr);
            arr = NULL;
        } else {
            cJSON_AddItemToArray(arr, val);
        }
    }
    return arr;
}

static cJSON *decode_item(const cbor_item_t *it, int depth)
{
    if (depth > RZ_WIRE_DEPTH_MAX)
        return NULL;
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT:
    case CBOR_TYPE_NEGINT:
        return decode_int(it);
    case CBOR_TYPE_STRING: {
        char *s = decode_text(it);
        cJSON *v = s ? cJSON_CreateString(s) : NULL;
        free(s);
        return v;
    }
    case CBOR_TYPE_ARRAY:
        return decode_array(it, depth);
    case CBOR_TYPE_MAP:
        return decode_map(it, depth);
    case CBOR_TYPE_FLOAT_CTRL:
        if (cbor_float_get_width(it) != CBOR_FLOAT_0)
            return decode_float(it);
        if (cbor_is_bool(it))
            return cJSON_CreateBool(cbor_get_bool(it));
        if (cbor_is_null(it))
            return cJSON_CreateNull();
        return NULL;        /* undefined and other simple values */
    default:
        return NULL;        /* byte strings, tags, undefined */
    }
}

/* Walk the raw bytes before libcbor sees them: libcbor allocates a
 * container for its declared size up front, so a few bytes claiming 2^32
 * entries would ask for gigabytes. Every declared length must fit in the
 * bytes left (an entry takes at least one byte); byte strings, tags and
 * indefinite lengths, which decoding refuses anyway, stop the walk. */
static bool precheck(const unsigned char *p, size_t n, size_t *pos, int depth)
{
    if (depth > RZ_WIRE_DEPTH_MAX + 1 || *pos >= n)
        return false;
    unsigned major = p[*pos] >> 5, info = p[*pos] & 31u;
    (*pos)++;
    uint64_t arg = info;
    if (info >= 24) {
        size_t k = info == 24 ? 1 : info == 25 ? 2 : info == 26 ? 4 : info == 27 ? 8 : 0;
        if (k == 0 || n - *pos < k)
            return false;           /* reserved or indefinite, or cut short */
        arg = 0;
        for (size_t i = 0; i < k; i++)
            arg = (arg << 8) | p[(*pos)++];
    }
    size_t left = n - *pos;
    switch (major) {
    case 0: case 1: case 7:
        return true;
    case 3:
        if (arg > left)
            return false;
        *pos += (size_t)arg;
        return true;
    case 4: case 5: {
        uint64_t items = major == 5 ? arg * 2 : arg;
        if (arg > left || items > left)
            return false;
        for (uint64_t i = 0; i < items; i++)
            if (!precheck(p, n, pos, depth + 1))
                return false;
        return true;
    }
    default:
        return false;               /* byte string, tag */
    }
}

int rz_wire_decode(const unsigned char *cbor, size_t len, char **json)
{
    if (!json)
        return rz__error(RZ_EINVAL, "json is NULL");
    *json = NULL;
    if (!cbor && len)
        return rz__error(RZ_EINVAL, "cbor is NULL");
    if (len > RZ_WIRE_BYTES_MAX)
        return rz__error(RZ_ETOOBIG, "CBOR of %zu bytes is over the %u-byte limit",
                         len, RZ_WIRE_BYTES_MAX);
    size_t pos = 0;
    if (!precheck(cbor, len, &pos, 0))
        return rz__error(RZ_ESYNTAX, "malformed CBOR, or outside the JSON subset, "
                         "near byte %zu", pos);
    struct cbor_load_result res;
    cbor_item_t *item = cbor_load(cbor, len, &res);
    if (!item)
        return rz__error(RZ_ESYNTAX, "malformed CBOR at byte %zu",
                         res.error.position);
    if (res.read != len) {
        cbor_decref(&item);
        return rz__error(RZ_ESYNTAX, "%zu bytes after the CBOR item", len - res.read);
    }
    cJSON *root = decode_item(item, 0);
    cbor_decref(&item);
    if (!root)
        return rz__error(RZ_ESYNTAX,
                         "CBOR outside the JSON subset (byte string, tag, "
                         "indefinite length, duplicate key, NUL or non-UTF-8 "
                         "text, or "
                         "nesting over %d)", RZ_WIRE_DEPTH_MAX);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *json = s;
    return RZ_OK;
}

int rz_wire_check_json(const char *json, size_t len)
{
    if (!json && len)
        return rz__error(RZ_EINVAL, "json is NULL");
    return len ? rz__json_text_check(json, len) : RZ_OK;
}
