/* Schema compiler: a cJSON schema document becomes a graph of sc_node, one
 * per (sub)schema, with keyword values checked and converted once, regexes
 * compiled once and $refs resolved to node pointers (so recursion is a
 * cycle in the graph, not a lookup per use).
 *
 * $ref targets are compiled on demand: a schema is reached either through
 * the tree or through a $ref, and a map from cJSON node to sc_node makes
 * both land on the same node. Refs are resolved from a work list after the
 * tree, so deep or cyclic ref graphs never recurse in the compiler. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "schema/schema_impl.h"

/* Pointer-keyed open-addressing map: cJSON node -> sc_node. */
typedef struct pmap {
    const cJSON **keys;
    sc_node **vals;
    size_t cap, len;
} pmap;

typedef struct pending_ref {
    sc_node *node;
    char *where;            /* schema pointer of the $ref, for errors */
} pending_ref;

typedef struct cctx {
    rz_schema *s;
    pmap map;
    rz__buf path;           /* schema pointer of the node being compiled */
    pending_ref *refs;
    size_t n_refs, cap_refs;
    pcre2_compile_context *pcc;
    int rc;                 /* first failure */
} cctx;

static size_t phash(const cJSON *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static sc_node *pmap_get(const pmap *m, const cJSON *k)
{
    if (!m->cap)
        return NULL;
    for (size_t i = phash(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (m->keys[i] == k)
            return m->vals[i];
    }
}

static bool pmap_put(pmap *m, const cJSON *k, sc_node *v)
{
    if ((m->len + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        pmap n = {rz__calloc(cap, sizeof *n.keys), rz__calloc(cap, sizeof *n.vals), cap, 0};
        if (!n.keys || !n.vals) {
            free(n.keys);
            free(n.vals);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                pmap_put(&n, m->keys[i], m->vals[i]);
        free(m->keys);
        free(m->vals);
        *m = n;
    }
    size_t i = phash(k, m->cap);
    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = k;
    m->vals[i] = v;
    m->len++;
    return true;
}

/* ---- Errors ---- */

static const char *where(cctx *c)
{
    return c->path.data ? c->path.data : "";
}

static void fail(cctx *c, int code, const char *fmt, ...) RZ_PRINTF(3, 4);

static void fail(cctx *c, int code, const char *fmt, ...)
{
    if (c->rc)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = code;
    if (code == RZ_ENOMEM)
        rz__error(code, "out of memory compiling a schema");
    else
        rz__error_at(code, NULL, 0, 0, where(c), "schema %s: %s",
                     *where(c) ? where(c) : "(root)", msg);
}

static void oom(cctx *c)
{
    fail(c, RZ_ENOMEM, "out of memory");
}

/* Push a pointer token onto the schema path; returns the length to pop to. */
static size_t push(cctx *c, const char *tok)
{
    size_t len = c->path.len;
    rz__buf_puts(&c->path, "/");
    for (const char *p = tok; *p; p++) {
        if (*p == '~')
            rz__buf_puts(&c->path, "~0");
        else if (*p == '/')
            rz__buf_puts(&c->path, "~1");
        else
            rz__buf_append(&c->path, p, 1);
    }
    if (c->path.failed)
        oom(c);
    return len;
}

static size_t push_index(cctx *c, size_t i)
{
    char tok[24];
    snprintf(tok, sizeof tok, "%zu", i);
    return push(c, tok);
}

static void pop(cctx *c, size_t len)
{
    if (c->path.data) {
        c->path.len = len;
        c->path.data[len] = '\0';
    }
}

/* ---- Keyword values ---- */

static const cJSON *kw(const cJSON *schema, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(schema, name);
}

static bool get_number(cctx *c, const cJSON *v, const char *name, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        fail(c, RZ_EINVAL, "%s must be a number", name);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

/* A non-negative integer keyword, -1 when absent. */
static int64_t get_count(cctx *c, const cJSON *schema, const char *name)
{
    const cJSON *v = kw(schema, name);
    if (!v)
        return -1;
    if (!rz__sc_is_integer(v) || v->valuedouble < 0) {
        fail(c, RZ_EINVAL, "%s must be a non-negative integer", name);
        return -1;
    }
    return v->valuedouble >= 9.2e18 ? INT64_MAX : (int64_t)v->valuedouble;
}

static unsigned type_bit(const char *name)
{
    static const struct { const char *n; unsigned bit; } names[] = {
        {"null", SC_NULL}, {"boolean", SC_BOOLEAN}, {"object", SC_OBJECT},
        {"array", SC_ARRAY}, {"number", SC_NUMBER}, {"string", SC_STRING},
        {"integer", SC_INTEGER},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(names); i++)
        if (strcmp(name, names[i].n) == 0)
            return names[i].bit;
    return 0;
}

static void compile_type(cctx *c, sc_node *n, const cJSON *t)
{
    if (cJSON_IsString(t)) {
        n->types = type_bit(t->valuestring);
        if (!n->types)
            fail(c, RZ_EINVAL, "unknown type '%s'", t->valuestring);
        return;
    }
    if (!cJSON_IsArray(t)) {
        fail(c, RZ_EINVAL, "type must be a string or an array of strings");
        return;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, t) {
        unsigned bit = cJSON_IsString(e) ? type_bit(e->valuestring) : 0;
        if (!bit) {
            fail(c, RZ_EINVAL, "type must list known type names");
            return;
        }
        n->types |= bit;
    }
    /* An empty list allows nothing; keep that distinct from "any". */
    if (!n->types)
        n->types = 1u << 30;
}

static bool compile_regex(cctx *c, sc_pattern *p, const char *src)
{
    int err;
    PCRE2_SIZE off;
    p->src = src;
    p->re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY |
                          PCRE2_ALT_BSUX | PCRE2_MATCH_INVALID_UTF,
                          &err, &off, c->pcc);
    if (p->re)
        return true;
    if (err == PCRE2_ERROR_NOMEMORY) {
        oom(c);
        return false;
    }
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail(c, RZ_EINVAL, "bad regular expression /%s/ at offset %zu: %s", src,
         (size_t)off, (const char *)msg);
    return false;
}

/* ---- Nodes ---- */

static sc_node *compile_node(cctx *c, const cJSON *x);

static sc_node *child(cctx *c, const cJSON *x, const char *tok)
{
    size_t mark = push(c, tok);
    sc_node *n = compile_node(c, x);
    pop(c, mark);
    return n;
}

static void compile_list(cctx *c, sc_list *l, const cJSON *arr,
                         const char *name)
{
    if (!cJSON_IsArray(arr) || !arr->child) {
        fail(c, RZ_EINVAL, "%s must be a non-empty array of schemas", name);
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    l->v = rz__calloc(n, sizeof *l->v);
    if (!l->v) {
        oom(c);
        return;
    }
    size_t mark = push(c, name);
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        size_t m2 = push_index(c, l->n);
        l->v[l->n++] = compile_node(c, e);
        pop(c, m2);
    }
    pop(c, mark);
}

static void compile_props(cctx *c, sc_node *n, const cJSON *props)
{
    if (!cJSON_IsObject(props)) {
        fail(c, RZ_EINVAL, "properties must be an object");
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(props);
    n->props = rz__calloc(count ? count : 1, sizeof *n->props);
    if (!n->props || rz__map_init(&n->props_index, count) != RZ_OK) {
        oom(c);
        return;
    }
    size_t mark = push(c, "properties");
    const cJSON *p;
    cJSON_ArrayForEach(p, props) {
        sc_prop *sp = &n->props[n->n_props];
        sp->name = p->string;
        sp->node = child(c, p, p->string);
        if (rz__map_put(&n->props_index, p->string, n->n_props) == RZ_ENOMEM)
            oom(c);
        n->n_props++;
    }
    pop(c, mark);
}

static void compile_pprops(cctx *c, sc_node *n, const cJSON *pp)
{
    if (!cJSON_IsObject(pp)) {
        fail(c, RZ_EINVAL, "patternProperties must be an object");
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(pp);
    n->pprops = rz__calloc(count ? count : 1, sizeof *n->pprops);
    if (!n->pprops) {
        oom(c);
        return;
    }
    size_t mark = push(c, "patternProperties");
    const cJSON *p;
    cJSON_ArrayForEach(p, pp) {
        sc_pattern *sp = &n->pprops[n->n_pprops++];
        size_t m2 = push(c, p->string);
        if (compile_regex(c, sp, p->string))
            sp->node = compile_node(c, p);
        pop(c, m2);
    }
    pop(c, mark);
}

static bool string_array(cctx *c, const cJSON *arr, const char *name,
                         const char ***out, size_t *n)
{
    if (!cJSON_IsArray(arr)) {
        fail(c, RZ_EINVAL, "%s must be an array of strings", name);
        return false;
    }
    size_t count = (size_t)cJSON_GetArraySize(arr);
    *out = rz__calloc(count ? count : 1, sizeof **out);
    if (!*out) {
        oom(c);
        return false;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e)) {
            fail(c, RZ_EINVAL, "%s must be an array of strings", name);
            return false;
        }
        (*out)[(*n)++] = e->valuestring;
    }
    return true;
}

static void compile_deps(cctx *c, sc_node *n, const cJSON *deps)
{
    if (!cJSON_IsObject(deps)) {
        fail(c, RZ_EINVAL, "dependencies must be an object");
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(deps);
    n->deps = rz__calloc(count ? count : 1, sizeof *n->deps);
    if (!n->deps) {
        oom(c);
        return;
    }
    size_t mark = push(c, "dependencies");
    const cJSON *d;
    cJSON_ArrayForEach(d, deps) {
        sc_dep *sd = &n->deps[n->n_deps++];
        sd->name = d->string;
        size_t m2 = push(c, d->string);
        if (cJSON_IsArray(d))
            string_array(c, d, "a property dependency", &sd->names, &sd->n_names);
        else
            sd->node = compile_node(c, d);
        pop(c, m2);
    }
    pop(c, mark);
}

static void compile_numbers(cctx *c, sc_node *n, const cJSON *x)
{
    const cJSON *v;
    if ((v = kw(x, "minimum")))
        n->has_min = get_number(c, v, "minimum", &n->min);
    if ((v = kw(x, "maximum")))
        n->has_max = get_number(c, v, "maximum", &n->max);
    if ((v = kw(x, "exclusiveMinimum")))
        n->has_xmin = get_number(c, v, "exclusiveMinimum", &n->xmin);
    if ((v = kw(x, "exclusiveMaximum")))
        n->has_xmax = get_number(c, v, "exclusiveMaximum", &n->xmax);
    if ((v = kw(x, "multipleOf"))) {
        n->has_mult = get_number(c, v, "multipleOf", &n->mult);
        if (n->has_mult && n->mult <= 0)
            fail(c, RZ_EINVAL, "multipleOf must be greater than 0");
    }
}

static void compile_strings(cctx *c, sc_node *n, const cJSON *x)
{
    n->min_len = get_count(c, x, "minLength");
    n->max_len = get_count(c, x, "maxLength");
    const cJSON *v = kw(x, "pattern");
    if (!v)
        return;
    if (!cJSON_IsString(v)) {
        fail(c, RZ_EINVAL, "pattern must be a string");
        return;
    }
    size_t mark = push(c, "pattern");
    compile_regex(c, &n->pattern, v->valuestring);
    pop(c, mark);
}

static void compile_arrays(cctx *c, sc_node *n, const cJSON *x)
{
    const cJSON *v;
    if ((v = kw(x, "items"))) {
        if (cJSON_IsArray(v)) {
            n->items_is_list = true;
            size_t count = (size_t)cJSON_GetArraySize(v);
            n->items_list.v = rz__calloc(count ? count : 1, sizeof *n->items_list.v);
            if (!n->items_list.v) {
                oom(c);
                return;
            }
            size_t mark = push(c, "items");
            const cJSON *e;
            cJSON_ArrayForEach(e, v) {
                size_t m2 = push_index(c, n->items_list.n);
                n->items_list.v[n->items_list.n++] = compile_node(c, e);
                pop(c, m2);
            }
            pop(c, mark);
        } else {
            n->items = child(c, v, "items");
        }
    }
    if ((v = kw(x, "additionalItems")))
        n->additional_items = child(c, v, "additionalItems");
    if ((v = kw(x, "contains")))
        n->contains = child(c, v, "contains");
    n->min_items = get_count(c, x, "minItems");
    n->max_items = get_count(c, x, "maxItems");
    if ((v = kw(x, "uniqueItems"))) {
        if (!cJSON_IsBool(v))
            fail(c, RZ_EINVAL, "uniqueItems must be a boolean");
        n->unique = cJSON_IsTrue(v);
    }
}

static void compile_objects(cctx *c, sc_node *n, const cJSON *x)
{
    const cJSON *v;
    if ((v = kw(x, "properties")))
        compile_props(c, n, v);
    if ((v = kw(x, "patternProperties")))
        compile_pprops(c, n, v);
    if ((v = kw(x, "additionalProperties")))
        n->additional_props = child(c, v, "additionalProperties");
    if ((v = kw(x, "propertyNames")))
        n->property_names = child(c, v, "propertyNames");
    if ((v = kw(x, "required"))) {
        size_t mark = push(c, "required");
        string_array(c, v, "required", &n->required, &n->n_required);
        pop(c, mark);
    }
    if ((v = kw(x, "dependencies")))
        compile_deps(c, n, v);
    n->min_props = get_count(c, x, "minProperties");
    n->max_props = get_count(c, x, "maxProperties");
}

static void compile_combinators(cctx *c, sc_node *n, const cJSON *x)
{
    const cJSON *v;
    if ((v = kw(x, "allOf")))
        compile_list(c, &n->all_of, v, "allOf");
    if ((v = kw(x, "anyOf")))
        compile_list(c, &n->any_of, v, "anyOf");
    if ((v = kw(x, "oneOf")))
        compile_list(c, &n->one_of, v, "oneOf");
    if ((v = kw(x, "not")))
        n->not_ = child(c, v, "not");
    if ((v = kw(x, "if")))
        n->if_ = child(c, v, "if");
    if ((v = kw(x, "then")))
        n->then_ = child(c, v, "then");
    if ((v = kw(x, "else")))
        n->else_ = child(c, v, "else");
}

/* Definitions are compiled eagerly so a broken one is reported even when
 * nothing refers to it yet. */
static void compile_definitions(cctx *c, const cJSON *x)
{
    const cJSON *defs = kw(x, "definitions");
    if (!defs)
        return;
    if (!cJSON_IsObject(defs)) {
        fail(c, RZ_EINVAL, "definitions must be an object");
        return;
    }
    size_t mark = push(c, "definitions");
    const cJSON *d;
    cJSON_ArrayForEach(d, defs)
        child(c, d, d->string);
    pop(c, mark);
}

static bool add_ref(cctx *c, sc_node *n)
{
    pending_ref *r = rz__grow(c->refs, &c->cap_refs, c->n_refs + 1, sizeof *r, 16);
    if (!r)
        return false;
    c->refs = r;
    char *w = rz__strdup(where(c));
    if (!w)
        return false;
    c->refs[c->n_refs++] = (pending_ref){n, w};
    return true;
}

static sc_node *new_node(cctx *c, const cJSON *x)
{
    rz_schema *s = c->s;
    sc_node **v = rz__grow(s->nodes, &s->cap_nodes, s->n_nodes + 1, sizeof *v, 32);
    if (!v)
        return NULL;
    s->nodes = v;
    sc_node *n = rz__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    s->nodes[s->n_nodes++] = n;
    n->src = x;
    n->boolean = -1;
    n->min_len = n->max_len = n->min_items = n->max_items = -1;
    n->min_props = n->max_props = -1;
    if (!pmap_put(&c->map, x, n))
        return NULL;
    return n;
}

static void compile_body(cctx *c, sc_node *n, const cJSON *x)
{
    const cJSON *v = kw(x, "$ref");
    if (v) {
        if (!cJSON_IsString(v))
            fail(c, RZ_EINVAL, "$ref must be a string");
        else if (v->valuestring[0] != '#')
            fail(c, RZ_EUNSUPPORTED, "$ref '%s' names another document; only "
                 "local references ('#...') are supported", v->valuestring);
        else if (!add_ref(c, n))
            oom(c);
        n->ref_text = cJSON_IsString(v) ? v->valuestring : NULL;
        return; /* draft-07: every sibling of $ref is ignored */
    }
    if ((v = kw(x, "type")))
        compile_type(c, n, v);
    if ((v = kw(x, "enum"))) {
        if (!cJSON_IsArray(v))
            fail(c, RZ_EINVAL, "enum must be an array");
        n->enum_ = v;
    }
    n->const_ = kw(x, "const");
    n->default_ = kw(x, "default");
    compile_numbers(c, n, x);
    compile_strings(c, n, x);
    compile_arrays(c, n, x);
    compile_objects(c, n, x);
    compile_combinators(c, n, x);
    compile_definitions(c, x);
}

static sc_node *compile_node(cctx *c, const cJSON *x)
{
    sc_node *n = pmap_get(&c->map, x);
    if (n || c->rc)
        return n;
    if (!cJSON_IsObject(x) && !cJSON_IsBool(x)) {
        fail(c, RZ_EINVAL, "a schema must be an object or a boolean");
        return NULL;
    }
    n = new_node(c, x);
    if (!n) {
        oom(c);
        return NULL;
    }
    if (cJSON_IsBool(x))
        n->boolean = cJSON_IsTrue(x);
    else
        compile_body(c, n, x);
    return n;
}

/* ---- $ref resolution ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* URI fragment -> JSON pointer text (percent-decoded); NULL if malformed. */
static char *fragment_decode(const char *frag)
{
    char *out = rz__malloc(strlen(frag) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = frag; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        p += 2;
    }
    *o = '\0';
    return out;
}

/* The value at JSON pointer `ptr` in `root`, or NULL. */
static const cJSON *pointer_get(const cJSON *root, const char *ptr)
{
    char *tok = rz__malloc(strlen(ptr) + 1);
    if (!tok)
        return NULL;
    const cJSON *x = root;
    const char *p = ptr;
    while (x && *p == '/') {
        size_t n = 0;
        for (p++; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1'))
                ch = *++p == '0' ? '~' : '/';
            else if (ch == '~')
                x = NULL;
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (cJSON_IsObject(x)) {
            x = cJSON_GetObjectItemCaseSensitive(x, tok);
        } else if (cJSON_IsArray(x)) {
            char *end;
            unsigned long idx = strtoul(tok, &end, 10);
            bool ok = tok[0] >= '0' && tok[0] <= '9' && *end == '\0' &&
                      (tok[0] != '0' || tok[1] == '\0');
            x = ok && idx < (unsigned long)cJSON_GetArraySize(x)
                ? cJSON_GetArrayItem(x, (int)idx) : NULL;
        } else {
            x = NULL;
        }
    }
    free(tok);
    return x;
}

static void set_path(cctx *c, const char *a, const char *b)
{
    c->path.len = 0;
    if (c->path.data)
        c->path.data[0] = '\0';
    rz__buf_puts(&c->path, a);
    rz__buf_puts(&c->path, b);
}

/* `r` points into c->refs, which compiling the target may grow (and move):
 * read everything needed from it first. */
static void resolve_one(cctx *c, const pending_ref *r)
{
    sc_node *node = r->node;
    char *ptr = fragment_decode(node->ref_text + 1);
    set_path(c, r->where, "/$ref");
    if (!ptr || (*ptr && *ptr != '/')) {
        fail(c, RZ_EINVAL, "malformed $ref '%s'", node->ref_text);
        free(ptr);
        return;
    }
    const cJSON *target = pointer_get(c->s->doc, ptr);
    if (!target) {
        fail(c, RZ_EINVAL, "$ref '%s' points to nothing", node->ref_text);
        free(ptr);
        return;
    }
    set_path(c, ptr, "");
    free(ptr);
    node->ref = compile_node(c, target);
}

/* A chain of $refs that comes back to itself can never be evaluated. */
static void check_ref_loops(cctx *c)
{
    rz_schema *s = c->s;
    for (size_t i = 0; i < s->n_nodes && !c->rc; i++) {
        uint32_t walk = (uint32_t)i + 1;
        sc_node *n = s->nodes[i];
        while (n->ref && !n->ref_ok) {
            if (n->walk == walk) {
                set_path(c, "", "");
                fail(c, RZ_EINVAL, "$ref '%s' refers to itself through a "
                     "loop of $refs", n->ref_text);
                return;
            }
            n->walk = walk;
            n = n->ref;
        }
        for (n = s->nodes[i]; n->ref && !n->ref_ok; n = n->ref)
            n->ref_ok = true;
    }
}

static void resolve_refs(cctx *c)
{
    /* Targets compiled here may add refs: the list grows as we go. */
    for (size_t i = 0; i < c->n_refs && !c->rc; i++)
        resolve_one(c, &c->refs[i]);
    if (!c->rc)
        check_ref_loops(c);
}

/* ---- Entry points ---- */

static void free_node(sc_node *n)
{
    free(n->items_list.v);
    free(n->props);
    rz__map_free(&n->props_index);
    for (size_t i = 0; i < n->n_pprops; i++)
        pcre2_code_free(n->pprops[i].re);
    free(n->pprops);
    pcre2_code_free(n->pattern.re);
    free(n->required);
    for (size_t i = 0; i < n->n_deps; i++)
        free(n->deps[i].names);
    free(n->deps);
    free(n->all_of.v);
    free(n->any_of.v);
    free(n->one_of.v);
    free(n);
}

void rz_schema_free(rz_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_nodes; i++)
        free_node(s->nodes[i]);
    free(s->nodes);
    pcre2_match_context_free(s->mctx);
    cJSON_Delete(s->doc);
    free(s);
}

/* Backtracking bounds: a hostile pattern fails to match instead of hanging
 * (roughly a millisecond of work per string at most). */
static pcre2_match_context *match_limits(void)
{
    pcre2_match_context *m = pcre2_match_context_create(NULL);
    if (m) {
        pcre2_set_match_limit(m, 200000);
        pcre2_set_depth_limit(m, 10000);
        pcre2_set_heap_limit(m, 16384); /* KiB */
    }
    return m;
}

int rz__schema_compile(rz_schema **out, const cJSON *doc)
{
    *out = NULL;
    if (!doc)
        return rz__error(RZ_EINVAL, "schema is NULL");
    rz_schema *s = rz__calloc(1, sizeof *s);
    cctx c = {.s = s};
    if (!s || !(s->doc = cJSON_Duplicate(doc, true)) ||
        !(s->mctx = match_limits()) ||
        !(c.pcc = pcre2_compile_context_create(NULL))) {
        rz_schema_free(s);
        return rz__error(RZ_ENOMEM, "out of memory compiling a schema");
    }
    pcre2_set_compile_extra_options(c.pcc, PCRE2_EXTRA_ALT_BSUX);
    pcre2_set_max_pattern_length(c.pcc, 1u << 16);
    rz__buf_append(&c.path, "", 0);
    s->root = compile_node(&c, s->doc);
    if (!c.rc)
        resolve_refs(&c);
    if (!c.rc && c.path.failed)
        oom(&c);
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].where);
    free(c.refs);
    free(c.map.keys);
    free(c.map.vals);
    rz__buf_free(&c.path);
    pcre2_compile_context_free(c.pcc);
    if (c.rc) {
        rz_schema_free(s);
        return c.rc;
    }
    *out = s;
    return RZ_OK;
}

int rz__schema_cached(void **slot, const cJSON *doc, const rz_schema **out)
{
    *out = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (*out)
        return RZ_OK;
    rz_schema *s;
    int rc = rz__schema_compile(&s, doc);
    if (rc != RZ_OK)
        return rc;
    void *none = NULL;
    if (!__atomic_compare_exchange_n(slot, &none, s, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        rz_schema_free(s);   /* a racing caller published first */
        s = none;
    }
    *out = s;
    return RZ_OK;
}
