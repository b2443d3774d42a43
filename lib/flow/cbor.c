/* CBOR: libcbor's streaming decoder feeding an explicit container stack (no
 * recursion, no allocation sized by declared lengths), and an encoder over
 * libcbor's head writers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "flow/loader.h"

typedef struct frame {
    cJSON *node;
    uint64_t left;      /* entries (pairs for maps) still expected */
    bool is_map;
    char *key;          /* map key read, value pending */
    rz__keyset keys;    /* keys of a map so far (borrowed from node) */
} frame;

typedef struct cdec {
    frame stack[RZ_FLOW_MAX_DEPTH];
    size_t depth;
    cJSON *root;
    size_t remaining;   /* input bytes after the current item's head */
    const char *err;
} cdec;

static void fail(cdec *cd, const char *msg)
{
    if (!cd->err)
        cd->err = msg;
}

static void pop_finished(cdec *cd)
{
    while (cd->depth && cd->stack[cd->depth - 1].left == 0)
        rz__keyset_free(&cd->stack[--cd->depth].keys);
}

/* Place a decoded item; containers also open a frame of `n` entries. */
static void attach(cdec *cd, cJSON *item, bool container, bool is_map, uint64_t n)
{
    if (cd->err) {
        cJSON_Delete(item);
        return;
    }
    if (!item) {
        fail(cd, "out of memory");
        return;
    }
    if (cd->depth == 0) {
        cd->root = item;
    } else {
        frame *top = &cd->stack[cd->depth - 1];
        if (top->is_map && !top->key) {
            if (!cJSON_IsString(item)) {
                cJSON_Delete(item);
                fail(cd, "map keys must be text strings");
                return;
            }
            top->key = item->valuestring;
            item->valuestring = NULL;
            cJSON_Delete(item);
            return;
        }
        if (top->is_map) {
            bool added = cJSON_AddItemToObject(top->node, top->key, item);
            free(top->key);
            top->key = NULL;
            if (!added) {
                cJSON_Delete(item);
                fail(cd, "out of memory");
                return;
            }
            /* The keyset borrows the key copy the object owns. */
            uint32_t l, c;
            if (item->string && rz__keyset_seen(&top->keys, item->string, 0, 0, &l, &c)) {
                fail(cd, "duplicate map key");
                return;
            }
        } else {
            cJSON_AddItemToArray(top->node, item);
        }
        top->left--;
    }
    if (container) {
        if (cd->depth == RZ_FLOW_MAX_DEPTH) {
            fail(cd, "nesting deeper than 64 levels");
            return;
        }
        cd->stack[cd->depth++] = (frame){.node = item, .left = n, .is_map = is_map};
    }
    pop_finished(cd);
}

/* A double holds integers exactly up to 2^53: past it one would be
 * silently rounded, so it is refused. */
#define EXACT_MAX ((uint64_t)1 << 53)

static void on_uint(cdec *cd, uint64_t v)
{
    if (v > EXACT_MAX) {
        fail(cd, "an integer past 2^53 (it would not stay exact)");
        return;
    }
    attach(cd, cJSON_CreateNumber((double)v), false, false, 0);
}

static void on_negint(cdec *cd, uint64_t v)
{
    if (v >= EXACT_MAX) {
        fail(cd, "an integer below -2^53 (it would not stay exact)");
        return;
    }
    attach(cd, cJSON_CreateNumber(-1.0 - (double)v), false, false, 0);
}

static void cb_u8(void *c, uint8_t v) { on_uint(c, v); }
static void cb_u16(void *c, uint16_t v) { on_uint(c, v); }
static void cb_u32(void *c, uint32_t v) { on_uint(c, v); }
static void cb_u64(void *c, uint64_t v) { on_uint(c, v); }
static void cb_n8(void *c, uint8_t v) { on_negint(c, v); }
static void cb_n16(void *c, uint16_t v) { on_negint(c, v); }
static void cb_n32(void *c, uint32_t v) { on_negint(c, v); }
static void cb_n64(void *c, uint64_t v) { on_negint(c, v); }

/* No infinity or NaN in the canonical JSON: null, as YAML's .inf is. */
static void cb_double(void *c, double v)
{
    attach(c, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(), false, false, 0);
}

static void cb_float(void *c, float v)
{
    cb_double(c, v);
}

static void cb_null(void *c)
{
    attach(c, cJSON_CreateNull(), false, false, 0);
}

static void cb_bool(void *c, bool v)
{
    attach(c, cJSON_CreateBool(v), false, false, 0);
}

static void cb_string(void *c, cbor_data data, size_t len)
{
    cdec *cd = c;
    if (memchr(data, '\0', len)) {
        fail(cd, "text string contains a NUL byte");
        return;
    }
    if (!rz__utf8_valid(data, len)) {
        fail(cd, "text string is not UTF-8");
        return;
    }
    char *s = rz__strndup((const char *)data, len);
    cJSON *item = s ? cJSON_CreateString(s) : NULL;
    free(s);
    attach(cd, item, false, false, 0);
}

static void cb_array(void *c, size_t n)
{
    cdec *cd = c;
    /* Every entry takes at least one byte: a larger count is a lie. */
    if (n > cd->remaining) {
        fail(cd, "array length exceeds the data");
        return;
    }
    attach(cd, cJSON_CreateArray(), true, false, n);
}

static void cb_map(void *c, size_t n)
{
    cdec *cd = c;
    if (n > cd->remaining / 2) {
        fail(cd, "map length exceeds the data");
        return;
    }
    attach(cd, cJSON_CreateObject(), true, true, n);
}

static void cb_bytes(void *c, cbor_data d, size_t n)
{
    fail(c, "byte strings are not supported");
}

static void cb_indef(void *c)
{
    fail(c, "indefinite-length items are not supported");
}

static void cb_undefined(void *c)
{
    fail(c, "'undefined' is not supported");
}

static void cb_tag(void *c, uint64_t tag)
{
    /* Tags only qualify the next item; the value itself is what we keep. */
}

static const struct cbor_callbacks callbacks = {
    .uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
    .negint8 = cb_n8, .negint16 = cb_n16, .negint32 = cb_n32, .negint64 = cb_n64,
    .byte_string_start = cb_indef, .byte_string = cb_bytes,
    .string = cb_string, .string_start = cb_indef,
    .indef_array_start = cb_indef, .array_start = cb_array,
    .indef_map_start = cb_indef, .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_float, .float4 = cb_float, .float8 = cb_double,
    .undefined = cb_undefined, .null = cb_null, .boolean = cb_bool,
    .indef_break = cb_indef,
};

cJSON *rz__cbor_tree(rz__load *ld, const void *data, size_t len)
{
    const unsigned char *p = data;
    cdec cd = {0};
    size_t off = 0;
    if (len == 0)
        fail(&cd, "empty document");
    while (!cd.err && (!cd.root || cd.depth)) {
        if (off >= len) {
            fail(&cd, "truncated document");
            break;
        }
        cd.remaining = len - off;
        struct cbor_decoder_result r = cbor_stream_decode(p + off, len - off,
                                                          &callbacks, &cd);
        if (r.status == CBOR_DECODER_NEDATA)
            fail(&cd, "truncated document");
        else if (r.status == CBOR_DECODER_ERROR)
            fail(&cd, "malformed item");
        off += r.read;
    }
    if (!cd.err && off < len)
        fail(&cd, "trailing bytes after the document");
    for (size_t i = 0; i < cd.depth; i++) {
        free(cd.stack[i].key);
        rz__keyset_free(&cd.stack[i].keys);
    }
    if (cd.err) {
        rz__load_diag_at(ld, strcmp(cd.err, "out of memory") == 0 ? RZ_ENOMEM
                         : strstr(cd.err, "nesting") ? RZ_ETOOBIG
                         : strstr(cd.err, "duplicate") ? RZ_EDUPLICATE : RZ_ESYNTAX,
                         0, 0, NULL, "CBOR: %s (at byte %zu)", cd.err, off);
        cJSON_Delete(cd.root);
        return NULL;
    }
    return cd.root;
}

/* ---- encoder ---- */

static void head(rz__buf *b, size_t (*enc)(size_t, unsigned char *, size_t), size_t n)
{
    unsigned char tmp[9];
    rz__buf_append(b, tmp, enc(n, tmp, sizeof tmp));
}

static void put_text(rz__buf *b, const char *s)
{
    size_t n = strlen(s);
    head(b, cbor_encode_string_start, n);
    rz__buf_append(b, s, n);
}

static void put_number(rz__buf *b, double d)
{
    unsigned char tmp[9];
    size_t n;
    /* Integral values travel as CBOR integers, others as float64, so that
     * JSON integers come back as integers; -0 stays a float. Past 2^53 a
     * value is a float that happens to be integral (1.3e18 from YAML):
     * as an integer the decoder would rightly refuse it as inexact. */
    if (d == floor(d) && !(d == 0 && signbit(d)) && d >= -(double)EXACT_MAX &&
        d <= (double)EXACT_MAX)
        n = d >= 0 ? cbor_encode_uint((uint64_t)d, tmp, sizeof tmp)
                   : cbor_encode_negint((uint64_t)(-1.0 - d), tmp, sizeof tmp);
    else
        n = cbor_encode_double(d, tmp, sizeof tmp);
    rz__buf_append(b, tmp, n);
}

static void put_value(rz__buf *b, const cJSON *v)
{
    unsigned char tmp[9];
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
        head(b, cJSON_IsObject(v) ? cbor_encode_map_start : cbor_encode_array_start, n);
        for (const cJSON *c = v->child; c; c = c->next) {
            if (cJSON_IsObject(v))
                put_text(b, c->string ? c->string : "");
            put_value(b, c);
        }
    } else if (cJSON_IsString(v)) {
        put_text(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        put_number(b, v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        rz__buf_append(b, tmp, cbor_encode_bool(cJSON_IsTrue(v), tmp, sizeof tmp));
    } else {
        rz__buf_append(b, tmp, cbor_encode_null(tmp, sizeof tmp));
    }
}

int rz__cbor_emit(const cJSON *root, unsigned char **out, size_t *len)
{
    rz__buf b = {0};
    put_value(&b, root);
    *len = b.len;
    *out = (unsigned char *)rz__buf_take(&b);
    if (!*out) {
        *len = 0;
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}
