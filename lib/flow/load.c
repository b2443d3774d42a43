/* Loading entry points: pick the syntax, build a tree, lower it, index it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdarg.h>
#include <strings.h>


#include "flow/loader.h"

/* ---- arena ---- */

struct rz__arena_chunk {
    rz__arena_chunk *next;
    size_t cap, used;
    max_align_t data[];
};

#define ARENA_CHUNK (256u * 1024u)

/* n bytes, not zeroed, aligned to `align` (a power of two). */
static void *arena_raw(rz__arena *a, size_t n, size_t align)
{
    rz__arena_chunk *c = a->head;
    size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (!c || at > c->cap || c->cap - at < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        rz__arena_chunk *nc = rz__malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->cap = cap;
        nc->used = 0;
        /* A big one-off block goes behind the current chunk so the current
         * chunk keeps serving small requests. */
        if (c && cap != ARENA_CHUNK) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
        at = 0;
    }
    void *p = (char *)c->data + at;
    c->used = at + n;
    return p;
}

void *rz__arena_alloc(rz__arena *a, size_t n)
{
    void *p = arena_raw(a, n, 16);
    if (p)
        memset(p, 0, n);
    return p;
}

char *rz__arena_strndup(rz__arena *a, const char *s, size_t n)
{
    char *p = arena_raw(a, n + 1, 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *rz__arena_strdup(rz__arena *a, const char *s)
{
    return s ? rz__arena_strndup(a, s, strlen(s)) : NULL;
}

void rz__arena_reset(rz__arena *a)
{
    rz__arena_chunk *keep = a->head;
    if (!keep)
        return;
    rz__arena_chunk *c = keep->next;
    while (c) {
        rz__arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    keep->next = NULL;
    keep->used = 0;
}

void rz__arena_free(rz__arena *a)
{
    rz__arena_chunk *c = a->head;
    while (c) {
        rz__arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- diagnostics during a load ---- */

/* Problems after which the document is not lowered at all. */
static bool is_hard(int code)
{
    return code == RZ_ESYNTAX || code == RZ_ETOOBIG || code == RZ_ENOMEM;
}

static void emit_sev(rz__load *ld, rz_severity sev, int code, uint32_t line,
                     uint32_t column, const char *pointer, const char *msg)
{
    rz__diag(ld->diags, sev, code, ld->f->file, line, column, pointer, "%s", msg);
}

static void emit(rz__load *ld, int code, uint32_t line, uint32_t column,
                 const char *pointer, const char *msg)
{
    emit_sev(ld, RZ_SEV_ERROR, code, line, column, pointer, msg);
    /* rz_error_last() names the first problem of this parse even when the
     * caller's list already held errors from earlier files. */
    if (ld->problems++ == 0)
        rz__error_at(code, ld->f->file, line, column, pointer, "%s", msg);
}

static void note_status(rz__load *ld, int code)
{
    if (is_hard(code)) {
        if (!is_hard(ld->status))
            ld->status = code;
    } else if (ld->status == RZ_OK) {
        ld->status = RZ_EINVALID;
    }
}

/* Past this many held-back problems the rest only count. */
#define MAX_PENDING 1000

static void defer(rz__load *ld, rz_severity sev, int code, uint32_t line,
                  uint32_t column, const char *pointer, const char *msg)
{
    if (ld->n_pending == MAX_PENDING)
        return;
    rz__pending *grown = rz__grow(ld->pending, &ld->cap_pending, ld->n_pending + 1,
                                  sizeof *grown, 16);
    if (!grown) {
        note_status(ld, rz__error(RZ_ENOMEM, "out of memory keeping a diagnostic"));
        return;
    }
    ld->pending = grown;
    rz__pending *p = &ld->pending[ld->n_pending];
    p->code = code;
    p->sev = sev;
    p->line = line;
    p->column = column;
    p->pointer = rz__strdup(pointer ? pointer : "");
    p->message = rz__strdup(msg);
    if (!p->pointer || !p->message) {
        free(p->pointer);
        free(p->message);
        note_status(ld, rz__error(RZ_ENOMEM, "out of memory keeping a diagnostic"));
        return;
    }
    ld->n_pending++;
}

static void flush_pending(rz__load *ld)
{
    for (size_t i = 0; i < ld->n_pending; i++) {
        rz__pending *p = &ld->pending[i];
        if (!is_hard(ld->status)) {
            uint32_t line = p->line, column = p->column;
            if (!line)
                rz__flow_locate(ld->f, p->pointer, &line, &column);
            if (p->sev == RZ_SEV_ERROR)
                emit(ld, p->code, line, column, p->pointer, p->message);
            else
                emit_sev(ld, p->sev, p->code, line, column, p->pointer, p->message);
        }
        free(p->pointer);
        free(p->message);
    }
    free(ld->pending);
    ld->pending = NULL;
    ld->n_pending = ld->cap_pending = 0;
    ld->defer = false;
}

void rz__load_diag_at(rz__load *ld, int code, uint32_t line, uint32_t column,
                      const char *pointer, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note_status(ld, code);
    emit(ld, code, line, column, pointer, msg);
}

void rz__load_diag(rz__load *ld, int code, const char *pointer,
                   const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note_status(ld, code);
    if (ld->defer) {
        defer(ld, RZ_SEV_ERROR, code, 0, 0, pointer, msg);
        return;
    }
    uint32_t line, column;
    rz__flow_locate(ld->f, pointer, &line, &column);
    emit(ld, code, line, column, pointer, msg);
}

void rz__load_diag_pos(rz__load *ld, int code, uint32_t line, uint32_t column,
                       const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note_status(ld, code);
    if (ld->defer)
        defer(ld, RZ_SEV_ERROR, code, line, column, "", msg);
    else
        emit(ld, code, line, column, NULL, msg);
}

void rz__load_warn(rz__load *ld, int code, const char *pointer, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ld->defer) {
        defer(ld, RZ_SEV_WARNING, code, 0, 0, pointer, msg);
        return;
    }
    uint32_t line, column;
    rz__flow_locate(ld->f, pointer, &line, &column);
    emit_sev(ld, RZ_SEV_WARNING, code, line, column, pointer, msg);
}

/* ---- duplicate keys ---- */

#define KEYSET_SMALL 16

static uint64_t pack(uint32_t line, uint32_t col)
{
    return (uint64_t)line << 32 | col;
}

bool rz__keyset_seen(rz__keyset *ks, const char *key, uint32_t line,
                     uint32_t col, uint32_t *fline, uint32_t *fcol)
{
    if (!ks->hashed) {
        for (size_t i = 0; i < ks->n; i++)
            if (strcmp(ks->keys[i], key) == 0) {
                *fline = ks->lines[i];
                *fcol = ks->cols[i];
                return true;
            }
        if (ks->n < KEYSET_SMALL) {
            ks->keys[ks->n] = key;
            ks->lines[ks->n] = line;
            ks->cols[ks->n++] = col;
            return false;
        }
        /* Past a handful of keys a linear scan would make a hostile
         * object of n keys cost n^2: move to a hash. */
        if (rz__map_init(&ks->big, 64) != RZ_OK)
            return false;
        ks->hashed = true;
        for (size_t i = 0; i < ks->n; i++)
            rz__map_put(&ks->big, ks->keys[i], (size_t)pack(ks->lines[i], ks->cols[i]));
    }
    size_t v = rz__map_get(&ks->big, key);
    if (v != RZ_NPOS) {
        *fline = (uint32_t)((uint64_t)v >> 32);
        *fcol = (uint32_t)v;
        return true;
    }
    rz__map_put(&ks->big, key, (size_t)pack(line, col));
    return false;
}

void rz__keyset_free(rz__keyset *ks)
{
    if (ks->hashed)
        rz__map_free(&ks->big);
    ks->hashed = false;
    ks->n = 0;
}

/* ---- numbers ---- */

/* ---- format detection ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static rz_format by_extension(const char *name)
{
    if (!name)
        return RZ_FORMAT_AUTO;
    if (ends_with(name, ".json"))
        return RZ_FORMAT_JSON;
    if (ends_with(name, ".yaml") || ends_with(name, ".yml"))
        return RZ_FORMAT_YAML;
    if (ends_with(name, ".cbor"))
        return RZ_FORMAT_CBOR;
    return RZ_FORMAT_AUTO;
}

static rz_format by_content(const unsigned char *p, size_t len)
{
    /* A CBOR document is a map: major type 5 (0xa0..0xbf). Those bytes are
     * not valid UTF-8 lead bytes, so no text document starts with one. */
    if (len && p[0] >= 0xa0 && p[0] <= 0xbf)
        return RZ_FORMAT_CBOR;
    size_t i = 0;
    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        i = 3;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i < len && p[i] == '{' ? RZ_FORMAT_JSON : RZ_FORMAT_YAML;
}

/* ---- parse ---- */

/* Load `data` in its syntax into ld->f. */
static void load_syntax(rz__load *ld, rz_format fmt, char *owned,
                        const void *data, size_t len)
{
    rz_flow *f = ld->f;
    if (fmt == RZ_FORMAT_JSON) {
        /* The text is kept for lazy locations. */
        f->src = owned ? owned : rz__strndup(data, len);
        f->src_len = len;
        if (!f->src) {
            rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
            return;
        }
        ld->defer = true;
        rz__json_load(ld, f->src, len);
        flush_pending(ld);
        return;
    }
    cJSON *root = fmt == RZ_FORMAT_YAML ? rz__yaml_tree(ld, data, len)
                                        : rz__cbor_tree(ld, data, len);
    free(owned);
    if (root)
        rz__flow_lower(ld, root);
    cJSON_Delete(root);
}

static void build_index(rz__load *ld)
{
    rz_flow *f = ld->f;
    if (rz__map_init(&f->index, f->n_steps) != RZ_OK) {
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < f->n_steps; i++)
        if (f->steps[i].id && rz__map_put(&f->index, f->steps[i].id, i) == RZ_ENOMEM) {
            rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
            return;
        }
}

/* Takes ownership of `owned` (the same bytes as data/len) when non-NULL. */
static int parse(rz_flow **out, char *owned, const void *data, size_t len,
                 rz_format format, const char *filename, rz_diags *diags)
{
    *out = NULL;
    rz__flow_impl *fi = rz__calloc(1, sizeof *fi);
    rz_flow *f = fi ? &fi->pub : NULL;
    if (f)
        f->file = rz__strdup(filename ? filename : "<input>");
    if (!f || !f->file) {
        free(owned);
        free(fi);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    rz__load ld = {.f = f, .diags = diags};
    if (!data && len) {
        free(owned);
        rz_flow_free(f);
        return rz__error(RZ_EINVAL, "rz_flow_parse: NULL data");
    }
    if (!data)
        data = "";   /* NULL, 0 is an empty document */
    if (format == RZ_FORMAT_AUTO)
        format = by_extension(filename);
    if (format == RZ_FORMAT_AUTO)
        format = by_content(data, len);
    if (format < RZ_FORMAT_JSON || format > RZ_FORMAT_CBOR) {
        free(owned);
        rz_flow_free(f);
        return rz__error(RZ_EINVAL, "rz_flow_parse: unknown format %d", (int)format);
    }
    f->format = format;
    if (len > RZ_FLOW_MAX_BYTES) {
        free(owned);
        rz__load_diag_at(&ld, RZ_ETOOBIG, 0, 0, NULL,
                         "document of %zu bytes exceeds the limit of %u bytes",
                         len, RZ_FLOW_MAX_BYTES);
        rz_flow_free(f);
        return ld.status;
    }
    load_syntax(&ld, format, owned, data, len);
    if (ld.status == RZ_OK)
        build_index(&ld);
    if (ld.status != RZ_OK) {
        rz_flow_free(f);
        return ld.status;
    }
    *out = f;
    return RZ_OK;
}

int rz_flow_parse(rz_flow **out, const void *data, size_t len, rz_format format,
                  const char *filename, rz_diags *diags)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_flow_parse: NULL out");
    return parse(out, NULL, data, len, format, filename, diags);
}

int rz_flow_load(rz_flow **out, const char *path, rz_format format,
                 rz_diags *diags)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_flow_load: NULL out");
    *out = NULL;
    if (!path)
        return rz__error(RZ_EINVAL, "rz_flow_load: NULL path");
    char *text;
    size_t len;
    int rc = rz__read_file(path, RZ_FLOW_MAX_BYTES, &text, &len);
    if (rc != RZ_OK) {
        const rz_error *e = rz_error_last();
        rz__diag(diags, RZ_SEV_ERROR, rc, path, 0, 0, NULL, "%s", e->message);
        return rc;
    }
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    return parse(out, text, text, len, format, name, diags);
}

void rz_flow_free(rz_flow *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_steps; i++) {
        rz__step *s = &f->steps[i];
        cJSON_Delete(s->config);
        cJSON_Delete(s->for_each);
        cJSON_Delete(s->position);
        cJSON_Delete(s->extra);
        for (size_t j = 0; j < s->n_inputs; j++)
            cJSON_Delete(s->inputs[j].value);
    }
    free(f->steps);
    free(f->conns);
    for (size_t i = 0; i < f->n_inputs; i++)
        cJSON_Delete(f->inputs[i].def);
    for (size_t i = 0; i < f->n_outputs; i++)
        cJSON_Delete(f->outputs[i].value);
    cJSON_Delete(f->triggers);
    cJSON_Delete(f->extra);
    rz__map_free(&f->index);
    rz__yaml_doc_free(f->yaml_doc);
    free(f->src);
    free(f->file);
    rz__arena_free(RZ_FLOW_ARENA(f));
    free(f);
}

/* ---- accessors ---- */

const char *rz_flow_name(const rz_flow *f)
{
    if (!f)
        return "";
    return f->name ? f->name : f->id ? f->id : "";
}

const char *rz_flow_file(const rz_flow *f)
{
    return f && f->file ? f->file : "";
}

rz_format rz_flow_format(const rz_flow *f)
{
    return f ? f->format : RZ_FORMAT_AUTO;
}

size_t rz_flow_output_count(const rz_flow *f)
{
    return f ? f->n_outputs : 0;
}

size_t rz_flow_step_count(const rz_flow *f)
{
    return f ? f->n_steps : 0;
}

const char *rz_flow_step_id(const rz_flow *f, size_t i)
{
    return f && i < f->n_steps ? f->steps[i].id : NULL;
}

const char *rz_flow_step_module(const rz_flow *f, size_t i)
{
    return f && i < f->n_steps ? f->steps[i].module_id : NULL;
}

const char *rz_flow_step_subflow(const rz_flow *f, size_t i)
{
    return f && i < f->n_steps ? f->steps[i].subflow : NULL;
}

const char *rz_flow_step_group(const rz_flow *f, size_t i)
{
    const cJSON *g = f && i < f->n_steps
                   ? cJSON_GetObjectItemCaseSensitive(f->steps[i].extra, "group") : NULL;
    return cJSON_IsString(g) && g->valuestring[0] ? g->valuestring : NULL;
}

const size_t *rz_flow_step_deps(const rz_flow *f, size_t i, size_t *n)
{
    if (!f || !f->linked || i >= f->n_steps) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = f->steps[i].n_deps;
    return f->steps[i].deps;
}

size_t rz_flow_step_find(const rz_flow *f, const char *id)
{
    return f && id ? rz__map_get(&f->index, id) : RZ_NPOS;
}
