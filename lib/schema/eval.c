/* Schema evaluation over the compiled node graph, and defaults.
 *
 * One recursive pass; the instance path is kept in a buffer and turned into
 * a JSON pointer only when an error is reported. Inside anyOf, oneOf, not,
 * if, contains and propertyNames the pass runs "quiet": nothing is reported
 * and the first failing keyword ends the node, so alternatives cost only
 * what they must. Every node evaluated spends one unit of a budget, which
 * bounds the exponential cases ($ref under nested anyOf) a hostile schema
 * can build; a depth limit bounds the recursion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema_impl.h"

typedef struct ectx {
    const rz_schema *s;
    bool (*opaque)(const cJSON *x);
    rz_schema_error_fn fn;
    void *ud;
    rz__buf path;
    unsigned quiet;         /* > 0: inside an alternative */
    bool stop;              /* the callback said stop, or a fatal error */
    int fatal;              /* RZ_ETOOBIG, RZ_ENOMEM */
    uint64_t budget;
    unsigned depth;
    size_t errors;
    pcre2_match_data *md;
    char first_ptr[256], first_msg[400];
} ectx;

/* ---- Reporting ---- */

static void fatal(ectx *c, int code, const char *msg)
{
    if (!c->fatal) {
        c->fatal = code;
        rz__error(code, "%s", msg);
    }
    c->stop = true;
}

static void report(ectx *c, const char *keyword, const char *name,
                   const char *fmt, ...) RZ_PRINTF(4, 5);

static void report(ectx *c, const char *keyword, const char *name,
                   const char *fmt, ...)
{
    if (c->quiet || c->stop)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *ptr = c->path.data ? c->path.data : "";
    if (!c->errors++) {
        snprintf(c->first_ptr, sizeof c->first_ptr, "%s", ptr);
        snprintf(c->first_msg, sizeof c->first_msg, "%s", msg);
    }
    rz_schema_error e = {ptr, keyword, msg, name};
    if (c->fn && c->fn(c->ud, &e))
        c->stop = true;
}

/* A value rendered for a message into `buf`. */
static const char *render(const cJSON *x, char *buf, size_t cap)
{
    rz__buf b = {0};
    rz__sc_render(&b, x);
    snprintf(buf, cap, "%s", b.data ? b.data : "value");
    rz__buf_free(&b);
    return buf;
}

static const char *num(double x, char *buf, size_t cap)
{
    rz__sc_fmt_number(buf, cap, x);
    return buf;
}

/* ---- Instance path ---- */

static size_t push_key(ectx *c, const char *key)
{
    size_t len = c->path.len;
    rz__buf_puts(&c->path, "/");
    for (const char *p = key; *p; p++) {
        size_t run = strcspn(p, "~/");
        rz__buf_append(&c->path, p, run);
        p += run;
        if (!*p)
            break;
        rz__buf_puts(&c->path, *p == '~' ? "~0" : "~1");
    }
    return len;
}

static size_t push_index(ectx *c, size_t i)
{
    size_t len = c->path.len;
    rz__buf_printf(&c->path, "/%zu", i);
    return len;
}

static void pop(ectx *c, size_t len)
{
    if (c->path.data) {
        c->path.len = len;
        c->path.data[len] = '\0';
    }
}

/* ---- Keywords ---- */

static bool eval(ectx *c, const sc_node *n, const cJSON *x);

/* 1 match, 0 none, -1 over the backtracking limits. */
static int re_match(ectx *c, const pcre2_code *re, const char *s)
{
    if (!c->md && !(c->md = pcre2_match_data_create(1, NULL))) {
        fatal(c, RZ_ENOMEM, "out of memory matching a pattern");
        return 0;
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, c->md, c->s->mctx);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc == PCRE2_ERROR_NOMEMORY)
        fatal(c, RZ_ENOMEM, "out of memory matching a pattern");
    return -1;
}

static void type_names(unsigned types, char *buf, size_t cap)
{
    static const char *const names[] = {"null", "boolean", "object", "array",
                                        "number", "string", "integer"};
    size_t len = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < RZ_ARRAY_LEN(names); i++)
        if ((types & (1u << i)) && len < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s",
                                    len ? " or " : "", names[i]);
    if (!len)
        snprintf(buf, cap, "nothing");
}

static bool check_type(ectx *c, const sc_node *n, const cJSON *x)
{
    unsigned bit = rz__sc_type_bit(x);
    if (!n->types || (n->types & bit) ||
        (bit == SC_INTEGER && (n->types & SC_NUMBER)))
        return true;
    char want[80];
    type_names(n->types, want, sizeof want);
    report(c, "type", NULL, "must be %s, not %s", want, rz__sc_type_name(x));
    return false;
}

static bool check_values(ectx *c, const sc_node *n, const cJSON *x)
{
    bool ok = true;
    char a[200];
    if (n->enum_) {
        const cJSON *e;
        bool found = false;
        cJSON_ArrayForEach(e, n->enum_)
            if ((found = rz__sc_equal(x, e)))
                break;
        if (!found) {
            ok = false;
            report(c, "enum", NULL, "must be one of %s", render(n->enum_, a, sizeof a));
        }
    }
    if (n->const_ && !rz__sc_equal(x, n->const_)) {
        ok = false;
        report(c, "const", NULL, "must be %s", render(n->const_, a, sizeof a));
    }
    return ok;
}

static bool check_number(ectx *c, const sc_node *n, const cJSON *x)
{
    if (!cJSON_IsNumber(x))
        return true;
    double v = x->valuedouble;
    char a[40], b[40];
    bool ok = true;
    if (n->has_min && v < n->min) {
        ok = false;
        report(c, "minimum", NULL, "%s is less than the minimum %s",
               num(v, a, sizeof a), num(n->min, b, sizeof b));
    }
    if (n->has_max && v > n->max) {
        ok = false;
        report(c, "maximum", NULL, "%s is greater than the maximum %s",
               num(v, a, sizeof a), num(n->max, b, sizeof b));
    }
    if (n->has_xmin && v <= n->xmin) {
        ok = false;
        report(c, "exclusiveMinimum", NULL, "%s is not greater than the "
               "exclusive minimum %s", num(v, a, sizeof a), num(n->xmin, b, sizeof b));
    }
    if (n->has_xmax && v >= n->xmax) {
        ok = false;
        report(c, "exclusiveMaximum", NULL, "%s is not less than the exclusive "
               "maximum %s", num(v, a, sizeof a), num(n->xmax, b, sizeof b));
    }
    if (n->has_mult && !rz__sc_multiple_of(v, n->mult)) {
        ok = false;
        report(c, "multipleOf", NULL, "%s is not a multiple of %s",
               num(v, a, sizeof a), num(n->mult, b, sizeof b));
    }
    return ok;
}

static bool check_string(ectx *c, const sc_node *n, const cJSON *x)
{
    if (!cJSON_IsString(x))
        return true;
    bool ok = true;
    char a[200];
    if (n->min_len >= 0 || n->max_len >= 0) {
        size_t len = rz__sc_utf8_len(x->valuestring);
        if (n->min_len >= 0 && len < (uint64_t)n->min_len) {
            ok = false;
            report(c, "minLength", NULL, "%s is shorter than %lld character%s",
                   render(x, a, sizeof a), (long long)n->min_len,
                   n->min_len == 1 ? "" : "s");
        }
        if (n->max_len >= 0 && len > (uint64_t)n->max_len) {
            ok = false;
            report(c, "maxLength", NULL, "%s is longer than %lld character%s",
                   render(x, a, sizeof a), (long long)n->max_len,
                   n->max_len == 1 ? "" : "s");
        }
    }
    if (n->pattern.re) {
        int m = re_match(c, n->pattern.re, x->valuestring);
        if (m <= 0) {
            ok = false;
            report(c, "pattern", NULL, m < 0 ? "%s is too expensive to match "
                   "against the pattern '%s'" : "%s does not match the pattern "
                   "'%s'", render(x, a, sizeof a), n->pattern.src);
        }
    }
    return ok;
}

static int cmp_hash(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Indices (i < j) of two equal items, or false. Small arrays pairwise;
 * large ones sorted by hash, comparing only equal-hash neighbours. */
static bool find_duplicate(ectx *c, const cJSON *arr, size_t n, size_t *i,
                           size_t *j)
{
    const cJSON **items = rz__malloc((n ? n : 1) * sizeof *items);
    uint64_t (*h)[2] = n > 16 ? rz__malloc(n * sizeof *h) : NULL;
    if (!items || (n > 16 && !h)) {
        free(items);
        free(h);
        fatal(c, RZ_ENOMEM, "out of memory checking uniqueItems");
        return false;
    }
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
        items[k++] = e;
    bool found = false;
    if (!h) {
        for (size_t a = 0; a < n && !found; a++)
            for (size_t b = a + 1; b < n && !found; b++)
                if ((found = rz__sc_equal(items[a], items[b]))) {
                    *i = a;
                    *j = b;
                }
    } else {
        for (k = 0; k < n; k++) {
            h[k][0] = rz__sc_hash(items[k]);
            h[k][1] = k;
        }
        qsort(h, n, sizeof *h, cmp_hash);
        for (size_t a = 0; a < n && !found; a++)
            for (size_t b = a + 1; b < n && h[b][0] == h[a][0] && !found; b++)
                if ((found = rz__sc_equal(items[h[a][1]], items[h[b][1]]))) {
                    *i = h[a][1] < h[b][1] ? h[a][1] : h[b][1];
                    *j = h[a][1] < h[b][1] ? h[b][1] : h[a][1];
                }
    }
    free(items);
    free(h);
    return found;
}

static bool eval_at_index(ectx *c, const sc_node *n, const cJSON *x, size_t i)
{
    size_t mark = push_index(c, i);
    bool ok = eval(c, n, x);
    pop(c, mark);
    return ok;
}

static bool check_items(ectx *c, const sc_node *n, const cJSON *x)
{
    bool ok = true;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, x) {
        const sc_node *sn = NULL;
        if (!n->items_is_list)
            sn = n->items;
        else if (i < n->items_list.n)
            sn = n->items_list.v[i];
        else if (n->additional_items && n->additional_items->boolean == 0) {
            report(c, "additionalItems", NULL, "array has %d items, more than "
                   "the %zu that items allows", cJSON_GetArraySize(x),
                   n->items_list.n);
            return false;
        } else {
            sn = n->additional_items;
        }
        if (sn && !eval_at_index(c, sn, e, i)) {
            ok = false;
            if (c->quiet || c->stop)
                return false;
        }
        i++;
    }
    return ok;
}

static bool check_array(ectx *c, const sc_node *n, const cJSON *x)
{
    if (!cJSON_IsArray(x))
        return true;
    bool ok = check_items(c, n, x);
    if (!ok && (c->quiet || c->stop))
        return false;
    size_t count = (size_t)cJSON_GetArraySize(x);
    if (n->contains) {
        bool found = false;
        const cJSON *e;
        c->quiet++;
        cJSON_ArrayForEach(e, x)
            if ((found = eval(c, n->contains, e)) || c->stop)
                break;
        c->quiet--;
        if (!found) {
            ok = false;
            report(c, "contains", NULL, "array has no item that matches contains");
        }
    }
    if (n->min_items >= 0 && count < (uint64_t)n->min_items) {
        ok = false;
        report(c, "minItems", NULL, "array has %zu item%s, fewer than the "
               "minimum %lld", count, count == 1 ? "" : "s", (long long)n->min_items);
    }
    if (n->max_items >= 0 && count > (uint64_t)n->max_items) {
        ok = false;
        report(c, "maxItems", NULL, "array has %zu item%s, more than the "
               "maximum %lld", count, count == 1 ? "" : "s", (long long)n->max_items);
    }
    size_t i, j;
    if (n->unique && count > 1 && find_duplicate(c, x, count, &i, &j)) {
        ok = false;
        report(c, "uniqueItems", NULL, "items %zu and %zu are equal; items "
               "must be unique", i, j);
    }
    return ok;
}

static bool eval_member(ectx *c, const sc_node *n, const cJSON *m)
{
    size_t mark = push_key(c, m->string);
    bool ok = eval(c, n, m);
    pop(c, mark);
    return ok;
}

/* properties, patternProperties, additionalProperties, propertyNames for
 * one member. */
static bool check_member(ectx *c, const sc_node *n, const cJSON *m)
{
    bool ok = true, matched = false;
    if (n->n_props) {
        size_t idx = rz__map_get(&n->props_index, m->string);
        if (idx != RZ_NPOS) {
            matched = true;
            ok = eval_member(c, n->props[idx].node, m);
        }
    }
    for (size_t k = 0; k < n->n_pprops && (ok || !c->quiet) && !c->stop; k++) {
        int r = re_match(c, n->pprops[k].re, m->string);
        if (r < 0) {
            ok = false;
            size_t mark = push_key(c, m->string);
            report(c, "patternProperties", m->string, "property name '%s' is "
                   "too expensive to match against '%s'", m->string,
                   n->pprops[k].src);
            pop(c, mark);
        } else if (r) {
            matched = true;
            ok = eval_member(c, n->pprops[k].node, m) && ok;
        }
    }
    if (!matched && n->additional_props && (ok || !c->quiet)) {
        if (n->additional_props->boolean == 0) {
            ok = false;
            size_t mark = push_key(c, m->string);
            report(c, "additionalProperties", m->string, "property '%s' is not "
                   "allowed", m->string);
            pop(c, mark);
        } else {
            ok = eval_member(c, n->additional_props, m) && ok;
        }
    }
    if (n->property_names && (ok || !c->quiet)) {
        cJSON key = {.type = cJSON_String, .valuestring = m->string};
        c->quiet++;
        bool good = eval(c, n->property_names, &key);
        c->quiet--;
        if (!good) {
            ok = false;
            size_t mark = push_key(c, m->string);
            report(c, "propertyNames", m->string, "property name '%s' does not "
                   "match propertyNames", m->string);
            pop(c, mark);
        }
    }
    return ok;
}

static bool check_deps(ectx *c, const sc_node *n, const cJSON *x)
{
    bool ok = true;
    for (size_t d = 0; d < n->n_deps && (ok || !c->quiet) && !c->stop; d++) {
        const sc_dep *dep = &n->deps[d];
        if (!cJSON_GetObjectItemCaseSensitive(x, dep->name))
            continue;
        if (dep->node) {
            ok = eval(c, dep->node, x) && ok;
            continue;
        }
        for (size_t k = 0; k < dep->n_names; k++)
            if (!cJSON_GetObjectItemCaseSensitive(x, dep->names[k])) {
                ok = false;
                report(c, "dependencies", dep->names[k], "property '%s' requires "
                       "property '%s'", dep->name, dep->names[k]);
            }
    }
    return ok;
}

static bool check_object(ectx *c, const sc_node *n, const cJSON *x)
{
    if (!cJSON_IsObject(x))
        return true;
    bool ok = true;
    size_t count = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, x) {
        count++;
        if (!check_member(c, n, m)) {
            ok = false;
            if (c->quiet || c->stop)
                return false;
        }
    }
    for (size_t k = 0; k < n->n_required; k++)
        if (!cJSON_GetObjectItemCaseSensitive(x, n->required[k])) {
            ok = false;
            report(c, "required", n->required[k], "missing required property "
                   "'%s'", n->required[k]);
            if (c->quiet)
                return false;
        }
    if (n->min_props >= 0 && count < (uint64_t)n->min_props) {
        ok = false;
        report(c, "minProperties", NULL, "object has %zu propert%s, fewer than "
               "the minimum %lld", count, count == 1 ? "y" : "ies",
               (long long)n->min_props);
    }
    if (n->max_props >= 0 && count > (uint64_t)n->max_props) {
        ok = false;
        report(c, "maxProperties", NULL, "object has %zu propert%s, more than "
               "the maximum %lld", count, count == 1 ? "y" : "ies",
               (long long)n->max_props);
    }
    return check_deps(c, n, x) && ok;
}

/* How many alternatives match, stopping at `enough`; the first two found
 * go to first/second. */
static size_t count_matches(ectx *c, const sc_list *l, const cJSON *x,
                            size_t enough, size_t *first, size_t *second)
{
    size_t hits = 0;
    c->quiet++;
    for (size_t i = 0; i < l->n && hits < enough && !c->stop; i++)
        if (eval(c, l->v[i], x)) {
            if (hits == 0)
                *first = i;
            else
                *second = i;
            hits++;
        }
    c->quiet--;
    return hits;
}

static bool check_combinators(ectx *c, const sc_node *n, const cJSON *x)
{
    bool ok = true;
    for (size_t i = 0; i < n->all_of.n; i++)
        if (!eval(c, n->all_of.v[i], x)) {
            ok = false;
            if (c->quiet || c->stop)
                return false;
        }
    size_t a = 0, b = 0;
    if (n->any_of.n && !count_matches(c, &n->any_of, x, 1, &a, &b)) {
        ok = false;
        report(c, "anyOf", NULL, "does not match any of the %zu schemas in anyOf",
               n->any_of.n);
    }
    if (n->one_of.n) {
        size_t hits = count_matches(c, &n->one_of, x, 2, &a, &b);
        if (hits == 0)
            report(c, "oneOf", NULL, "does not match any of the %zu schemas in "
                   "oneOf", n->one_of.n);
        else if (hits > 1)
            report(c, "oneOf", NULL, "matches both schema %zu and schema %zu of "
                   "oneOf; it must match exactly one", a, b);
        ok = ok && hits == 1;
    }
    if (n->not_) {
        c->quiet++;
        bool r = eval(c, n->not_, x);
        c->quiet--;
        if (r) {
            ok = false;
            report(c, "not", NULL, "must not match the schema in not");
        }
    }
    if (n->if_ && (n->then_ || n->else_)) {
        c->quiet++;
        bool r = eval(c, n->if_, x);
        c->quiet--;
        const sc_node *branch = r ? n->then_ : n->else_;
        if (branch && !c->stop)
            ok = eval(c, branch, x) && ok;
    }
    return ok;
}

typedef bool (*check_fn)(ectx *c, const sc_node *n, const cJSON *x);

static const check_fn checks[] = {
    check_type, check_values, check_number, check_string, check_array,
    check_object, check_combinators,
};

static bool eval_node(ectx *c, const sc_node *n, const cJSON *x)
{
    if (n->boolean >= 0) {
        if (!n->boolean)
            report(c, "false", NULL, "no value is allowed here");
        return n->boolean;
    }
    if (c->opaque && c->opaque(x))
        return true;
    if (n->ref)
        return eval(c, n->ref, x);
    bool ok = true;
    for (size_t i = 0; i < RZ_ARRAY_LEN(checks); i++)
        if (!checks[i](c, n, x)) {
            ok = false;
            if (c->quiet || c->stop)
                break;
        }
    return ok;
}

static bool eval(ectx *c, const sc_node *n, const cJSON *x)
{
    if (c->stop)
        return false;
    if (!n)
        return true;
    if (!c->budget--) {
        fatal(c, RZ_ETOOBIG, "the schema needs too much work on this instance "
              "(nested anyOf/oneOf or $ref recursion?)");
        return false;
    }
    if (c->depth >= SC_MAX_DEPTH) {
        fatal(c, RZ_ETOOBIG, "schema evaluation nested deeper than 1000 levels "
              "(a $ref loop that never descends into the instance?)");
        return false;
    }
    c->depth++;
    bool ok = eval_node(c, n, x);
    c->depth--;
    return ok;
}

int rz__schema_eval(const rz_schema *s, const cJSON *instance,
                    const rz__schema_opts *opts, rz_schema_error_fn fn,
                    void *ud)
{
    if (!s || !instance)
        return rz__error(RZ_EINVAL, "schema or instance is NULL");
    ectx c = {
        .s = s, .fn = fn, .ud = ud,
        .opaque = opts ? opts->opaque : NULL,
        .budget = opts && opts->budget ? opts->budget : SC_DEFAULT_BUDGET,
    };
    rz__buf_append(&c.path, "", 0);
    bool ok = eval(&c, s->root, instance);
    if (c.path.failed)
        fatal(&c, RZ_ENOMEM, "out of memory validating");
    pcre2_match_data_free(c.md);
    rz__buf_free(&c.path);
    if (c.fatal)
        return c.fatal;
    if (ok)
        return RZ_OK;
    return rz__error_at(RZ_EINVALID, NULL, 0, 0, c.first_ptr, "%s: %s",
                        c.first_ptr, c.first_msg);
}

/* ---- Defaults ---- */

/* Recursive schemas with defaults can describe unbounded documents
 * ({"properties":{"a":{"$ref":"#","default":{}}}}): both the walk and the
 * number of values added are capped. */
#define DEFAULTS_MAX_STEPS 100000
#define DEFAULTS_MAX_ADDED RZ_SCHEMA_DEFAULTS_MAX

typedef struct dctx {
    uint64_t budget;
    size_t added;
    int rc;
} dctx;

static const sc_node *follow(const sc_node *n)
{
    while (n && n->ref)
        n = n->ref;
    return n;
}

static void apply(dctx *d, const sc_node *n, cJSON *x, unsigned depth);

static void apply_props(dctx *d, const sc_node *n, cJSON *x, unsigned depth)
{
    for (size_t i = 0; i < n->n_props && !d->rc; i++) {
        const sc_prop *p = &n->props[i];
        cJSON *m = cJSON_GetObjectItemCaseSensitive(x, p->name);
        const sc_node *pn = follow(p->node);
        if (!m && pn && pn->default_) {
            if (++d->added > DEFAULTS_MAX_ADDED) {
                d->rc = RZ_ETOOBIG;
                return;
            }
            m = cJSON_Duplicate(pn->default_, true);
            if (!m || !cJSON_AddItemToObject(x, p->name, m)) {
                cJSON_Delete(m);
                d->rc = RZ_ENOMEM;
                return;
            }
        }
        if (m)
            apply(d, p->node, m, depth + 1);
    }
}

static void apply(dctx *d, const sc_node *n, cJSON *x, unsigned depth)
{
    n = follow(n);
    if (!n || n->boolean >= 0 || depth >= SC_MAX_DEPTH || !d->budget || d->rc)
        return;
    d->budget--;
    if (cJSON_IsObject(x))
        apply_props(d, n, x, depth);
    if (cJSON_IsArray(x)) {
        size_t i = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, x) {
            const sc_node *in = !n->items_is_list ? n->items
                : i < n->items_list.n ? n->items_list.v[i] : n->additional_items;
            if (in)
                apply(d, in, e, depth + 1);
            i++;
        }
    }
    for (size_t i = 0; i < n->all_of.n; i++)
        apply(d, n->all_of.v[i], x, depth + 1);
}

int rz__schema_defaults(const rz_schema *s, cJSON *instance)
{
    if (!s || !instance)
        return rz__error(RZ_EINVAL, "schema or instance is NULL");
    dctx d = {.budget = DEFAULTS_MAX_STEPS};
    apply(&d, s->root, instance, 0);
    if (d.rc == RZ_ETOOBIG)
        return rz__error(d.rc, "the schema's defaults would add more than %d "
                         "values (a recursive default?)", DEFAULTS_MAX_ADDED);
    if (d.rc)
        return rz__error(d.rc, "out of memory applying defaults");
    return RZ_OK;
}
