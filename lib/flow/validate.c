/* rz_flow_validate: check a loaded flow against a module registry and report
 * every problem in one pass.
 *
 * All checks are linear in the size of the flow except where noted:
 *  - ids, modules and flow inputs are looked up through hash maps;
 *  - cycles come from one iterative Tarjan pass over the declared graph
 *    (needs + connections), which also yields a topological order;
 *  - "is step x upstream of step i" is answered by a direct/two-hop look at
 *    the declared predecessors, then a topological-position test, and only
 *    the references left after that go to bitset passes over the graph in
 *    topological order (64*W targets per pass).
 * Nothing here recurses on the graph, so 100k-step chains are fine. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/graph.h"
#include "flow/loader.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "schema/schema_impl.h"

/* Suggestions compare against every step id; above this many steps the
 * quadratic worst case is not worth a hint. */
#define SUGGEST_MAX_CANDIDATES 5000
/* 64-bit words per node in one upstream bitset pass. */
#define UPSTREAM_WORDS 8

typedef struct pending_ref {
    size_t step, target;
    char *ptr;            /* pointer of the string holding the reference */
    const char *text;     /* that string, for the column of the reference */
    uint32_t offset;
} pending_ref;

typedef struct vctx {
    rz_flow *f;
    const rz_registry *reg;
    rz_diags *diags;
    size_t errors;
    int oom;                       /* RZ_ENOMEM once an allocation failed */

    const rz__map *ids;            /* step id -> first index */
    rz__map own_ids;               /* built here when the loader's is empty */
    bool linked;                   /* connection ends resolved by the linker */
    rz__map flow_inputs;           /* flow input name -> index */

    /* Declared graph: predecessors of each step, CSR, sorted per step. */
    size_t *pred_off, *pred;

    /* Inputs wired or given, one flag per module input port of each step. */
    size_t *in_base;
    unsigned char *given;

    /* Topological order of the declared graph (Tarjan's emission order). */
    size_t *order, *pos;
    unsigned char *tainted;        /* in or downstream of a cycle */

    pending_ref *pending;
    size_t n_pending, cap_pending;

    bool event_ok;                 /* scanning an `on: event` step's inputs
                                      or config: event.* is known */
    bool each_ok;                  /* scanning a for_each step's inputs or
                                      config: each.value/index are known */
    size_t *line_starts;           /* lazily built, for expression columns */
    size_t n_lines;

    /* The first problem, restored as the thread's last error at the end
     * (helpers such as the expression parser overwrite it meanwhile). */
    struct {
        int code;
        uint32_t line, col;
        char ptr[256], msg[512];
    } first;
} vctx;

/* ---- Reporting ---- */

/* Byte offset of each line start, built on first use. */
static bool build_lines(vctx *v)
{
    if (v->line_starts)
        return true;
    const rz_flow *f = v->f;
    size_t n = 1;
    for (size_t i = 0; i < f->src_len; i++)
        n += f->src[i] == '\n';
    v->line_starts = rz__malloc(n * sizeof *v->line_starts);
    if (!v->line_starts)
        return false;
    v->line_starts[0] = 0;
    size_t k = 1;
    for (size_t i = 0; i < f->src_len; i++)
        if (f->src[i] == '\n')
            v->line_starts[k++] = i + 1;
    v->n_lines = n;
    return true;
}

/* Move *col from the start of a JSON string token to byte `off` of its
 * value, but only where the source spells that prefix verbatim, in ASCII,
 * on the same line (no escapes before the offset). */
static void shift_json(vctx *v, uint32_t line, uint32_t *col, const char *s,
                       size_t off)
{
    const rz_flow *f = v->f;
    if (!build_lines(v) || line > v->n_lines)
        return;
    size_t bol = v->line_starts[line - 1];
    size_t at = bol + *col - 1;
    if (at >= f->src_len || f->src[at] != '"')
        return;
    for (size_t i = bol; i < at; i++)
        if ((unsigned char)f->src[i] >= 0x80)
            return;
    if (f->src_len - at < 1 + off)
        return;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n' || (unsigned char)s[i] >= 0x80 || s[i] == '\\' ||
            s[i] == '"')
            return;
    if (memcmp(f->src + at + 1, s, off) != 0)
        return;
    *col += (uint32_t)(1 + off);
}

/* The YAML node at a pointer, or NULL. */
static const yaml_node_t *yaml_node_at(yaml_document_t *doc, const char *pointer)
{
    yaml_node_t *n = yaml_document_get_root_node(doc);
    char tok[512];
    size_t tl;
    const char *p = pointer;
    while (n && rz__pointer_next(&p, tok, sizeof tok, &tl)) {
        yaml_node_t *next = NULL;
        if (tl >= sizeof tok)
            return NULL;
        if (n->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *pr = n->data.mapping.pairs.start;
                 !next && pr < n->data.mapping.pairs.top; pr++) {
                yaml_node_t *k = yaml_document_get_node(doc, pr->key);
                if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == tl &&
                    memcmp(k->data.scalar.value, tok, tl) == 0)
                    next = yaml_document_get_node(doc, pr->value);
            }
        } else if (n->type == YAML_SEQUENCE_NODE) {
            char *end;
            unsigned long idx = strtoul(tok, &end, 10);
            size_t len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
            if (*end == '\0' && tl && idx < len)
                next = yaml_document_get_node(doc, n->data.sequence.items.start[idx]);
        }
        n = next;
    }
    return n;
}

/* The same for a YAML scalar: only a one-line plain or quoted scalar whose
 * source span is exactly its ASCII value (plus quotes), i.e. no escapes. */
static void shift_yaml(vctx *v, const char *ptr, uint32_t *col, const char *s,
                       size_t off)
{
    const yaml_node_t *n = yaml_node_at(v->f->yaml_doc, ptr);
    if (!n || n->type != YAML_SCALAR_NODE ||
        n->start_mark.line != n->end_mark.line)
        return;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return;
    size_t quotes;
    switch (n->data.scalar.style) {
    case YAML_PLAIN_SCALAR_STYLE: quotes = 0; break;
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: quotes = 2; break;
    default: return;
    }
    if (n->end_mark.index - n->start_mark.index != len + quotes)
        return;
    *col += (uint32_t)(quotes / 2 + off);
}

static void shift_column(vctx *v, const char *ptr, uint32_t line, uint32_t *col,
                         const char *s, size_t off)
{
    if (!s || !off || !line || !*col || strlen(s) < off)
        return;
    if (v->f->format == RZ_FORMAT_JSON && v->f->src)
        shift_json(v, line, col, s, off);
    else if (v->f->format == RZ_FORMAT_YAML && v->f->yaml_doc)
        shift_yaml(v, ptr, col, s, off);
}

static void vreport(vctx *v, int code, const char *ptr, const char *text,
                    size_t off, const char *fmt, va_list ap)
{
    uint32_t line, col;
    rz__flow_locate(v->f, ptr, &line, &col);
    shift_column(v, ptr, line, &col, text, off);
    if (!v->errors) {
        va_list ap2;
        va_copy(ap2, ap);
        vsnprintf(v->first.msg, sizeof v->first.msg, fmt, ap2);
        va_end(ap2);
        snprintf(v->first.ptr, sizeof v->first.ptr, "%s", ptr);
        v->first.code = code;
        v->first.line = line;
        v->first.col = col;
    }
    rz__vdiag(v->diags, RZ_SEV_ERROR, code, v->f->file, line, col, ptr, fmt, ap);
    v->errors++;
}

/* A problem at `base` + printf-style `suffix` (no suffix: NULL). */
static void report(vctx *v, int code, const char *base, const char *suffix,
                   const char *fmt, ...) RZ_PRINTF(5, 6);

static void report(vctx *v, int code, const char *base, const char *suffix,
                   const char *fmt, ...)
{
    char *ptr = suffix ? rz__asprintf("%s%s", base ? base : "", suffix) : NULL;
    va_list ap;
    va_start(ap, fmt);
    vreport(v, code, ptr ? ptr : (base ? base : ""), NULL, 0, fmt, ap);
    va_end(ap);
    free(ptr);
}

/* A problem inside string `text` (at byte `off`) held at pointer `ptr`. */
static void report_in(vctx *v, int code, const char *ptr, const char *text,
                      size_t off, const char *fmt, ...) RZ_PRINTF(6, 7);

static void report_in(vctx *v, int code, const char *ptr, const char *text,
                      size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(v, code, ptr, text, off, fmt, ap);
    va_end(ap);
}

/* ---- Suggestions ---- */

static const char *hint_step(const vctx *v, const char *want, char *buf, size_t cap)
{
    rz__suggest s;
    rz__suggest_init(&s, want);
    if (v->f->n_steps <= SUGGEST_MAX_CANDIDATES)
        for (size_t i = 0; i < v->f->n_steps; i++)
            rz__suggest_try(&s, v->f->steps[i].id);
    return rz__suggest_text(&s, buf, cap);
}

static const char *hint_port(const rz__port *p, size_t n, const char *want,
                             char *buf, size_t cap)
{
    rz__suggest s;
    rz__suggest_init(&s, want);
    for (size_t i = 0; i < n; i++)
        rz__suggest_try(&s, p[i].name);
    return rz__suggest_text(&s, buf, cap);
}

/* ---- Small helpers ---- */

static const char *step_name(const vctx *v, size_t i)
{
    const char *id = v->f->steps[i].id;
    return id ? id : "?";
}

static size_t step_index(const vctx *v, const char *id)
{
    return id ? rz__map_get(v->ids, id) : RZ_NPOS;
}

/* Step indices of a connection's ends (RZ_NPOS for unknown names). */
static void conn_ends(const vctx *v, const rz__conn *cn, size_t *a, size_t *b)
{
    if (v->linked) {
        *a = cn->src;
        *b = cn->dst;
    } else {
        *a = step_index(v, cn->src_node);
        *b = step_index(v, cn->dst_node);
    }
}

/* Port types: 'any' matches all; an integer fits where a number is wanted. */
static bool port_compatible(const char *out, const char *in)
{
    if (!out || !in || strcmp(out, "any") == 0 || strcmp(in, "any") == 0)
        return true;
    if (strcmp(out, in) == 0)
        return true;
    /* A file reaches its dependant as the path of a read-only copy. */
    if (strcmp(out, "file") == 0 && strcmp(in, "string") == 0)
        return true;
    return strcmp(out, "integer") == 0 && strcmp(in, "number") == 0;
}

/* What a step's output port gives downstream: a for_each step's is a list
 * of the port's values, one per element. */
static const char *given_type(const vctx *v, size_t step, const rz__port *out)
{
    return v->f->steps[step].for_each ? "array" : out->type;
}

static bool is_integral(const cJSON *x)
{
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) &&
           x->valuedouble == floor(x->valuedouble);
}

/* JSON Schema / port type test; unknown type names accept anything. */
static bool json_has_type(const cJSON *x, const char *t)
{
    if (strcmp(t, "string") == 0) return cJSON_IsString(x);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(x);
    if (strcmp(t, "integer") == 0) return is_integral(x);
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(x);
    if (strcmp(t, "object") == 0) return cJSON_IsObject(x);
    if (strcmp(t, "array") == 0) return cJSON_IsArray(x);
    if (strcmp(t, "null") == 0) return cJSON_IsNull(x);
    return true;
}

static const char *json_type_name(const cJSON *x)
{
    if (cJSON_IsString(x)) return "string";
    if (is_integral(x)) return "integer";
    if (cJSON_IsNumber(x)) return "number";
    if (cJSON_IsBool(x)) return "boolean";
    if (cJSON_IsObject(x)) return "object";
    if (cJSON_IsArray(x)) return "array";
    return "null";
}

static bool has_expr(const cJSON *x)
{
    return cJSON_IsString(x) && strstr(x->valuestring, "${{");
}

static void *xcalloc(vctx *v, size_t n, size_t size)
{
    void *p = rz__calloc(n ? n : 1, size);
    if (!p)
        v->oom = RZ_ENOMEM;
    return p;
}

/* ---- Step ids ---- */

static const char *id_suffix(const vctx *v)
{
    return v->f->builder ? "/id" : NULL;
}

/* The loader's id index (first occurrence wins) when it has one. */
static void index_ids(vctx *v)
{
    rz_flow *f = v->f;
    if (f->index.cap || !f->n_steps) {
        v->ids = &f->index;
        return;
    }
    v->ids = &v->own_ids;
    if (rz__map_init(&v->own_ids, f->n_steps) != RZ_OK) {
        v->oom = RZ_ENOMEM;
        return;
    }
    for (size_t i = 0; i < f->n_steps; i++)
        if (f->steps[i].id && rz__map_put(&v->own_ids, f->steps[i].id, i) == RZ_ENOMEM) {
            v->oom = RZ_ENOMEM;
            return;
        }
}

static void check_ids(vctx *v)
{
    rz_flow *f = v->f;
    index_ids(v);
    if (v->oom)
        return;
    size_t named = 0;
    for (size_t i = 0; i < f->n_steps; i++)
        named += f->steps[i].id != NULL;
    if (v->ids->len == named)
        return;   /* every id distinct: nothing to report */
    for (size_t i = 0; i < f->n_steps; i++) {
        const char *id = f->steps[i].id;
        size_t first = step_index(v, id);
        if (!id || first == i || first == RZ_NPOS)
            continue;
        const char *fptr = f->steps[first].ptr ? f->steps[first].ptr : "";
        char *fp = rz__asprintf("%s%s", fptr, id_suffix(v) ? id_suffix(v) : "");
        uint32_t line = 0, col = 0;
        rz__flow_locate(f, fp ? fp : fptr, &line, &col);
        free(fp);
        report(v, RZ_EDUPLICATE, f->steps[i].ptr, id_suffix(v),
               "duplicate step id '%s' (first defined at line %u)", id, line);
    }
}

/* ---- Modules ---- */

static void list_versions(const vctx *v, const char *id, char *buf, size_t cap)
{
    size_t n, first = rz__registry_find(v->reg, id, &n);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; first != RZ_NPOS && k < n && used + 1 < cap; k++) {
        int w = snprintf(buf + used, cap - used, "%s%s", k ? ", " : "",
                         rz_module_version(rz_registry_get(v->reg, first + k)));
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static const char *hint_module(const vctx *v, const char *want, char *buf, size_t cap)
{
    rz__suggest s;
    rz__suggest_init(&s, want);
    size_t n = rz_registry_count(v->reg);
    for (size_t i = 0; i < n; i++)
        rz__suggest_try(&s, rz_module_id(rz_registry_get(v->reg, i)));
    return rz__suggest_text(&s, buf, cap);
}

/* A module whose manifest says "kind": "service" makes its steps services
 * (docs/services.md), with the default restart policy, unless the step
 * says otherwise; what a service cannot have is refused as lower.c does. */
static void module_service(vctx *v, rz__step *s)
{
    if (!s->module || !s->module->service || s->service)
        return;
    /* On its node's model the step is one generation: a job. */
    if (rz__local_llm_on(s->module, s->config))
        return;
    const char *id = s->id ? s->id : "?";
    if (s->kind_given)
        report(v, RZ_EINVALID, s->ptr, "/kind", "module '%s' is a service (its "
               "manifest's kind): step '%s' cannot be kind: job", s->module_id, id);
    else if (s->retry_given)
        report(v, RZ_EINVALID, s->ptr, "/retry", "module '%s' is a service: step "
               "'%s' restarts by its 'restart' policy (say kind: service), not "
               "'retry'", s->module_id, id);
    else if (s->for_each || s->on_step || s->replicas > 1)
        report(v, RZ_EINVALID, s->ptr, "/module", "module '%s' is a service: step "
               "'%s' cannot have for_each, on or verify", s->module_id, id);
    else {
        s->service = true;
        rz__step_service_restarts(s);
    }
}

/* What only a service has (restart, ready, budget) on a step that is none, by its
 * own kind or its module's (checked only where the modules are known). */
static void service_fields(vctx *v, const rz__step *s)
{
    bool budget = s->extra && cJSON_GetObjectItemCaseSensitive(s->extra, "budget");
    if (s->service || !(s->restart_given || s->ready_given || budget) || !v->reg)
        return;   /* without modules, its module may be a service */
    const char *k = s->restart_given ? "restart" : s->ready_given ? "ready" : "budget";
    char sfx[16];
    snprintf(sfx, sizeof sfx, "/%s", k);
    report(v, RZ_EINVALID, s->ptr, sfx, "'%s' is for services: step '%s' has no "
           "'kind: service' (nor a service module)", k, s->id ? s->id : "?");
}

static void resolve_module(vctx *v, rz__step *s)
{
    s->module = NULL;
    if (!v->reg || !s->module_id)
        return;
    const char *mod_sfx = v->f->builder ? "/moduleId" : "/module";
    const char *ver_sfx = v->f->builder ? "/moduleVersion" : "/module";
    const rz_module *m;
    /* "chain://<id>[@<spec>]" resolves through the same registries. */
    int rc = rz_registry_resolve(v->reg, s->module_id, s->module_spec, &m);
    if (rc == RZ_OK) {
        s->module = m;
        return;
    }
    const char *id = rz__module_ref_id(s->module_id);
    char hint[160], versions[512];
    if (rc == RZ_ENOENT) {
        report(v, RZ_EMODULE, s->ptr, mod_sfx, "unknown module '%s'%s",
               s->module_id, hint_module(v, id, hint, sizeof hint));
    } else if (rc == RZ_EINVAL) {
        report(v, RZ_EMODULE, s->ptr, ver_sfx, "malformed version '%s' of "
               "module '%s' (expected 1.2.3, 1.2, 1, ^1.2 or ~1.2.3)",
               s->module_spec, s->module_id);
    } else if (rc == RZ_EMODULE) {
        list_versions(v, id, versions, sizeof versions);
        report(v, RZ_EMODULE, s->ptr, ver_sfx, "no version of module '%s' "
               "matches '%s' (available: %s)", s->module_id,
               s->module_spec ? s->module_spec : "", versions);
    } else if (rc == RZ_ENOMEM) {
        v->oom = rc;
    }
}

/* ---- Declared graph: needs + connections ---- */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Predecessor lists are mostly a handful long: insertion sort those. */
static void sort_sizes(size_t *a, size_t n)
{
    if (n > 16) {
        qsort(a, n, sizeof *a, cmp_size);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        size_t x = a[i], j = i;
        for (; j > 0 && a[j - 1] > x; j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

/* The step an `on: event` step listens to: it must be another step, and a
 * service (only a service's stdout is read for events). Its edge makes the
 * listener downstream of the source, so cycles through it are found.
 * RZ_NPOS (reported) if it cannot be. */
static size_t event_source(vctx *v, size_t i)
{
    const rz__step *s = &v->f->steps[i];
    char hint[160];
    size_t p = step_index(v, s->on_step);
    if (p == RZ_NPOS)
        report(v, RZ_EUNKNOWN, s->ptr, "/on/event", "step '%s' listens to events of "
               "unknown step '%s'%s", step_name(v, i), s->on_step,
               hint_step(v, s->on_step, hint, sizeof hint));
    else if (p == i)
        report(v, RZ_EINVALID, s->ptr, "/on/event", "step '%s' cannot listen to its "
               "own events", step_name(v, i));
    else if (!v->f->steps[p].service && v->reg)   /* without modules: maybe */
        report(v, RZ_EINVALID, s->ptr, "/on/event", "step '%s' listens to events of "
               "'%s', which is not a service (kind: service): only a service emits "
               "events", step_name(v, i), s->on_step);
    else if (v->f->steps[p].is_exit)
        report(v, RZ_EUPSTREAM, s->ptr, "/on/event", "the on_exit step emits no "
               "events");
    else
        return p;
    return RZ_NPOS;
}

/* Report unknown names and build the predecessor lists. */
/* Each step's `needs` looked up once into need_idx (RZ_NPOS: unknown, or
 * the on_exit step, both reported), counted into pred_off. */
static void resolve_needs(vctx *v, size_t *need_idx)
{
    rz_flow *f = v->f;
    char hint[160], sfx[48];
    size_t at = 0;
    for (size_t i = 0; i < f->n_steps; i++) {
        rz__step *s = &f->steps[i];
        for (size_t k = 0; k < s->n_needs; k++) {
            size_t p = need_idx[at++] = step_index(v, s->needs[k]);
            snprintf(sfx, sizeof sfx, "/needs/%zu", k);
            if (p != RZ_NPOS && f->steps[p].is_exit) {
                report(v, RZ_EUPSTREAM, s->ptr, sfx, "step '%s' needs the on_exit "
                       "step, which runs after every other step", step_name(v, i));
                need_idx[at - 1] = RZ_NPOS;
            } else if (p != RZ_NPOS) {
                v->pred_off[i + 1]++;
            } else {
                report(v, RZ_EUNKNOWN, s->ptr, sfx, "step '%s' needs unknown step "
                       "'%s'%s", step_name(v, i), s->needs[k] ? s->needs[k] : "",
                       hint_step(v, s->needs[k] ? s->needs[k] : "", hint, sizeof hint));
            }
        }
        if (s->on_step) {
            size_t p = need_idx[at++] = event_source(v, i);
            if (p != RZ_NPOS)
                v->pred_off[i + 1]++;
        }
    }
}

static void build_graph(vctx *v)
{
    rz_flow *f = v->f;
    size_t n = f->n_steps;
    v->pred_off = xcalloc(v, n + 1, sizeof *v->pred_off);
    if (!v->pred_off)
        return;
    /* Each `needs` name is looked up once; the second pass reuses it. */
    size_t n_needs = 0, at = 0;
    for (size_t i = 0; i < n; i++)
        n_needs += f->steps[i].n_needs + (f->steps[i].on_step != NULL);
    size_t *need_idx = xcalloc(v, n_needs ? n_needs : 1, sizeof *need_idx);
    if (!need_idx)
        return;
    resolve_needs(v, need_idx);
    char hint[160];
    for (size_t c = 0; c < f->n_conns; c++) {
        rz__conn *cn = &f->conns[c];
        size_t a, b;
        conn_ends(v, cn, &a, &b);
        if (a == RZ_NPOS)
            report(v, RZ_EUNKNOWN, cn->ptr, "/source/nodeId", "connection from "
                   "unknown node '%s'%s", cn->src_node ? cn->src_node : "",
                   hint_step(v, cn->src_node ? cn->src_node : "", hint, sizeof hint));
        if (b == RZ_NPOS)
            report(v, RZ_EUNKNOWN, cn->ptr, "/target/nodeId", "connection to "
                   "unknown node '%s'%s", cn->dst_node ? cn->dst_node : "",
                   hint_step(v, cn->dst_node ? cn->dst_node : "", hint, sizeof hint));
        if (a != RZ_NPOS && f->steps[a].is_exit) {
            report(v, RZ_EUPSTREAM, cn->ptr, "/source/nodeId", "a connection cannot "
                   "leave the on_exit step: it runs after every other step");
            a = RZ_NPOS;
        }
        if (a != RZ_NPOS && b != RZ_NPOS)
            v->pred_off[b + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        v->pred_off[i + 1] += v->pred_off[i];
    v->pred = xcalloc(v, v->pred_off[n], sizeof *v->pred);
    size_t *fill = xcalloc(v, n, sizeof *fill);
    if (!v->pred || !fill) {
        free(fill);
        free(need_idx);
        return;
    }
    at = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < f->steps[i].n_needs + (f->steps[i].on_step != NULL); k++) {
            size_t p = need_idx[at++];
            if (p != RZ_NPOS)
                v->pred[v->pred_off[i] + fill[i]++] = p;
        }
    }
    free(need_idx);
    for (size_t c = 0; c < f->n_conns; c++) {
        size_t a, b;
        conn_ends(v, &f->conns[c], &a, &b);
        if (a != RZ_NPOS && b != RZ_NPOS && !f->steps[a].is_exit)
            v->pred[v->pred_off[b] + fill[b]++] = a;
    }
    free(fill);
    for (size_t i = 0; i < n; i++)
        sort_sizes(v->pred + v->pred_off[i], v->pred_off[i + 1] - v->pred_off[i]);
}

static bool is_pred(const vctx *v, size_t i, size_t x)
{
    const size_t *lo = v->pred + v->pred_off[i];
    size_t n = v->pred_off[i + 1] - v->pred_off[i];
    return n && bsearch(&x, lo, n, sizeof *lo, cmp_size) != NULL;
}

/* ---- Ports on connections ---- */

static const rz__port *conn_port(vctx *v, const rz__conn *cn, size_t step,
                                 const char *port, bool output)
{
    const rz_module *m = v->f->steps[step].module;
    if (!m)
        return NULL;
    const rz__port *p = output ? rz__module_output(m, port) : rz__module_input(m, port);
    if (p)
        return p;
    char hint[160];
    const rz__port *all = output ? m->outputs : m->inputs;
    size_t n = output ? m->n_outputs : m->n_inputs;
    report(v, RZ_EUNKNOWN, cn->ptr, output ? "/source/port" : "/target/port",
           "step '%s' (module %s@%s) has no %s '%s'%s", step_name(v, step),
           m->id, m->version, output ? "output" : "input", port ? port : "",
           hint_port(all, n, port ? port : "", hint, sizeof hint));
    return NULL;
}

static void mark_given(vctx *v, size_t step, const rz__port *p)
{
    const rz_module *m = v->f->steps[step].module;
    if (v->given && m && p)
        v->given[v->in_base[step] + (size_t)(p - m->inputs)] = 1;
}

static void check_connections(vctx *v)
{
    rz_flow *f = v->f;
    for (size_t c = 0; c < f->n_conns; c++) {
        rz__conn *cn = &f->conns[c];
        size_t a, b;
        conn_ends(v, cn, &a, &b);
        const rz__port *out = NULL, *in = NULL;
        if (a != RZ_NPOS)
            out = conn_port(v, cn, a, cn->src_port, true);
        if (b != RZ_NPOS)
            in = conn_port(v, cn, b, cn->dst_port, false);
        if (in)
            mark_given(v, b, in);
        if (out && in && !port_compatible(given_type(v, a, out), in->type))
            report(v, RZ_ETYPE, cn->ptr, NULL, "output '%s' of '%s' is %s but "
                   "input '%s' of '%s' is %s", out->name, step_name(v, a),
                   given_type(v, a, out), in->name, step_name(v, b), in->type);
    }
}

/* ---- One value per input port ----
 * The run feeds a port from every connection into it, then from the
 * step's `inputs`: the last one would win without a word. Checked by
 * name, so it holds without a registry too: the connections sorted by
 * (target step, port), then each step's `inputs` looked up among them. */

typedef struct feed {
    size_t dst;
    const char *port;
    size_t conn;
} feed;

static int cmp_feed(const void *a, const void *b)
{
    const feed *x = a, *y = b;
    if (x->dst != y->dst)
        return x->dst < y->dst ? -1 : 1;
    int c = strcmp(x->port, y->port);
    if (c)
        return c;
    return x->conn < y->conn ? -1 : x->conn > y->conn;
}

/* "connection 'c1' (from a.out)", or "connection #3 (...)" without an id. */
static void conn_label(const rz__conn *cn, size_t c, char *buf, size_t cap)
{
    if (cn->id)
        snprintf(buf, cap, "connection '%s' (from %s.%s)", cn->id,
                 cn->src_node ? cn->src_node : "?", cn->src_port ? cn->src_port : "?");
    else
        snprintf(buf, cap, "connection #%zu (from %s.%s)", c,
                 cn->src_node ? cn->src_node : "?", cn->src_port ? cn->src_port : "?");
}

static void check_conn_ids(vctx *v)
{
    rz_flow *f = v->f;
    rz__map ids;
    if (rz__map_init(&ids, f->n_conns) != RZ_OK) {
        v->oom = RZ_ENOMEM;
        return;
    }
    for (size_t c = 0; c < f->n_conns; c++) {
        const rz__conn *cn = &f->conns[c];
        if (!cn->id)
            continue;
        int rc = rz__map_put(&ids, cn->id, c);
        if (rc == RZ_ENOMEM) {
            v->oom = RZ_ENOMEM;
            break;
        }
        if (rc != RZ_EEXISTS)
            continue;
        const rz__conn *first = &f->conns[rz__map_get(&ids, cn->id)];
        char *fp = rz__asprintf("%s/id", first->ptr ? first->ptr : "");
        uint32_t line = 0, col = 0;
        rz__flow_locate(f, fp ? fp : "", &line, &col);
        free(fp);
        report(v, RZ_EDUPLICATE, cn->ptr, "/id", "duplicate connection id '%s' "
               "(first defined at line %u)", cn->id, line);
    }
    rz__map_free(&ids);
}

static void check_feeds(vctx *v)
{
    rz_flow *f = v->f;
    feed *fd = xcalloc(v, f->n_conns, sizeof *fd);
    if (!fd)
        return;
    size_t n = 0;
    for (size_t c = 0; c < f->n_conns; c++) {
        const rz__conn *cn = &f->conns[c];
        size_t a, b;
        conn_ends(v, cn, &a, &b);
        if (b != RZ_NPOS && cn->dst_port)
            fd[n++] = (feed){b, cn->dst_port, c};
    }
    qsort(fd, n, sizeof *fd, cmp_feed);
    char l1[256], l2[256];
    /* Every extra one is named beside the first into the port. */
    for (size_t k = 1, j = 0; k < n; k++) {
        if (fd[k].dst != fd[j].dst || strcmp(fd[k].port, fd[j].port) != 0) {
            j = k;
            continue;
        }
        const rz__conn *cn = &f->conns[fd[k].conn];
        conn_label(&f->conns[fd[j].conn], fd[j].conn, l1, sizeof l1);
        conn_label(cn, fd[k].conn, l2, sizeof l2);
        report(v, RZ_EDUPLICATE, cn->ptr, "/target/port", "input '%s' of step '%s' "
               "gets two values: %s and %s", fd[k].port, step_name(v, fd[k].dst), l1, l2);
    }
    for (size_t i = 0; i < f->n_steps && n; i++) {
        const rz__step *s = &f->steps[i];
        for (size_t k = 0; k < s->n_inputs; k++) {
            if (!s->inputs[k].name)
                continue;
            feed key = {i, s->inputs[k].name, 0};
            /* The first connection into the port, if any: lower bound. */
            size_t lo = 0, hi = n;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cmp_feed(&fd[mid], &key) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == n || fd[lo].dst != i || strcmp(fd[lo].port, key.port) != 0)
                continue;
            conn_label(&f->conns[fd[lo].conn], fd[lo].conn, l1, sizeof l1);
            report(v, RZ_EDUPLICATE, s->inputs[k].ptr, NULL, "input '%s' of step '%s' "
                   "gets two values: its 'inputs' value and %s", key.port,
                   step_name(v, i), l1);
        }
    }
    free(fd);
}

/* ---- Expressions and references ---- */

static void push_pending(vctx *v, size_t i, size_t x, const char *ptr,
                         const char *text, uint32_t off)
{
    pending_ref *p = rz__grow(v->pending, &v->cap_pending, v->n_pending + 1, sizeof *p, 16);
    if (!p) {
        v->oom = RZ_ENOMEM;
        return;
    }
    v->pending = p;
    char *copy = rz__strdup(ptr);
    if (!copy) {
        v->oom = RZ_ENOMEM;
        return;
    }
    v->pending[v->n_pending++] = (pending_ref){i, x, copy, text, off};
}

static void report_not_upstream(vctx *v, size_t i, size_t x, const char *ptr,
                                const char *text, size_t off)
{
    report_in(v, RZ_EUPSTREAM, ptr, text, off, "step '%s' uses outputs of "
              "'%s', which is not upstream of it (add '%s' to its needs)",
              step_name(v, i), step_name(v, x), step_name(v, x));
}

/* Upstream via needs/connections: decided now when cheap, else queued. */
static void check_upstream(vctx *v, size_t i, size_t x, const char *ptr,
                           const char *text, uint32_t off)
{
    /* Flow outputs (i: none) are read once every step has settled, and the
     * on_exit step runs after all the others. */
    if (i == RZ_NPOS || v->f->steps[i].is_exit)
        return;
    if (v->f->steps[x].is_exit) {
        report_in(v, RZ_EUPSTREAM, ptr, text, off, "step '%s' refers to the "
                  "on_exit step, which runs after every other step", step_name(v, i));
        return;
    }
    if (is_pred(v, i, x))
        return;
    size_t lo = v->pred_off[i], hi = v->pred_off[i + 1];
    if (hi - lo <= 64)
        for (size_t k = lo; k < hi; k++)
            if (is_pred(v, v->pred[k], x))
                return;
    push_pending(v, i, x, ptr, text, off);
}

static void check_ref(vctx *v, size_t i, const rz__ref *r, const char *ptr,
                      const char *text)
{
    char hint[160];
    const char *name = r->name ? r->name : "";
    if (r->kind == RZ_REF_FLOW) {
        if (i == RZ_NPOS || !v->f->steps[i].is_exit)
            report_in(v, RZ_EUPSTREAM, ptr, text, r->offset, "flow.%s is known only "
                      "in the on_exit step, once every other step has settled", name);
        return;
    }
    if (r->kind == RZ_REF_EACH) {
        /* Said as written: `item`, `index` or the alias `each.value`. */
        bool bare = !text || strncmp(text + r->offset, "each.", 5) != 0;
        if (!v->each_ok)
            report_in(v, RZ_EUNKNOWN, ptr, text, r->offset, "%s%s is known only "
                      "in the inputs and config of a step with 'for_each'",
                      bare ? "" : "each.", name);
        return;
    }
    if (r->kind == RZ_REF_EVENT) {
        if (!v->event_ok)
            report_in(v, RZ_EUNKNOWN, ptr, text, r->offset, "event.%s is known only "
                      "in the inputs and config of a step with 'on: {event: ...}'",
                      name);
        return;
    }
    if (r->kind == RZ_REF_INPUT) {
        if (rz__map_get(&v->flow_inputs, name) == RZ_NPOS && strcmp(name, "trigger") == 0)
            report_in(v, RZ_EUNKNOWN, ptr, text, r->offset, "${{ trigger... }} reads the "
                      "flow input 'trigger', which a webhook fills: declare it "
                      "(inputs: {trigger: {required: false}})");
        else if (rz__map_get(&v->flow_inputs, name) == RZ_NPOS)
            report_in(v, RZ_EUNKNOWN, ptr, text, r->offset,
                      "unknown flow input '%s'", name);
        return;
    }
    size_t x = step_index(v, name);
    if (x == RZ_NPOS) {
        report_in(v, RZ_EUNKNOWN, ptr, text, r->offset, "reference to unknown "
                  "step '%s'%s", name, hint_step(v, name, hint, sizeof hint));
        return;
    }
    if (x == i) {
        report_in(v, RZ_EUPSTREAM, ptr, text, r->offset, "step '%s' refers to "
                  "its own outputs", name);
        return;
    }
    const rz_module *m = v->f->steps[x].module;
    if (m && r->port && !rz__module_output(m, r->port))
        report_in(v, RZ_EUNKNOWN, ptr, text, r->offset, "step '%s' (module "
                  "%s@%s) has no output '%s'%s", name, m->id, m->version,
                  r->port, hint_port(m->outputs, m->n_outputs, r->port, hint,
                                     sizeof hint));
    check_upstream(v, i, x, ptr, text, r->offset);
}

/* Parse one expression string and check its references. */
static void check_expr(vctx *v, size_t i, const char *text, const char *ptr,
                       bool condition)
{
    rz__expr *e = NULL;
    char err[256] = "";
    size_t off = 0;
    int rc = rz__expr_parse(&e, text, condition, err, sizeof err, &off);
    if (rc == RZ_ENOMEM) {
        v->oom = rc;
        return;
    }
    if (rc != RZ_OK) {
        report_in(v, RZ_EEXPR, ptr, text, off, "malformed expression: %s",
                  err[0] ? err : "syntax error");
        return;
    }
    size_t n = rz__expr_ref_count(e);
    for (size_t k = 0; k < n; k++)
        check_ref(v, i, rz__expr_ref(e, k), ptr, text);
    /* A constant expression that cannot be evaluated fails every run. */
    rc = rz__expr_check(e, err, sizeof err, &off);
    if (rc == RZ_ENOMEM)
        v->oom = rc;
    else if (rc != RZ_OK)
        report_in(v, RZ_EEXPR, ptr, text, off, "expression cannot be evaluated: %s",
                  err);
    rz__expr_free(e);
}

/* Every string inside an input value may hold ${{ }}. `path` holds the
 * pointer of `x` and is restored on return. */
static void scan_value(vctx *v, size_t i, const cJSON *x, rz__buf *path, int depth)
{
    if (cJSON_IsString(x)) {
        if (strstr(x->valuestring, "${{"))
            check_expr(v, i, x->valuestring, path->data ? path->data : "", false);
        return;
    }
    if ((!cJSON_IsObject(x) && !cJSON_IsArray(x)) || depth > RZ_FLOW_MAX_DEPTH)
        return;
    size_t len = path->len, k = 0;
    for (const cJSON *c = x->child; c; c = c->next, k++) {
        if (cJSON_IsObject(x)) {
            const char *key = c->string ? c->string : "";
            rz__pointer_push(path, key, strlen(key));
        } else {
            rz__buf_printf(path, "/%zu", k);
        }
        scan_value(v, i, c, path, depth + 1);
        path->len = len;
        if (path->data)
            path->data[len] = '\0';
    }
}

static void scan_at(vctx *v, size_t i, const cJSON *x, const char *base,
                    const char *key)
{
    rz__buf path = {0};
    rz__buf_puts(&path, base ? base : "");
    if (key)
        rz__pointer_push(&path, key, strlen(key));
    scan_value(v, i, x, &path, 0);
    if (path.failed)
        v->oom = RZ_ENOMEM;
    rz__buf_free(&path);
}

/* ---- Inputs given in the step ---- */

/* The output port a value takes whole, when it is exactly
 * "${{ steps.X.outputs.P }}" (no text around, no operator, no subkey):
 * then its type is the port's type. NULL otherwise. */
static const rz__port *whole_output_ref(const vctx *v, const cJSON *x,
                                        size_t *src)
{
    if (!cJSON_IsString(x))
        return NULL;
    const char *t = x->valuestring;
    t += strspn(t, " \t");
    if (strncmp(t, "${{", 3) != 0)
        return NULL;
    t += 3;
    t += strspn(t, " \t");
    if (strncmp(t, "steps.", 6) != 0)
        return NULL;
    t += 6;
    const char *mid = strstr(t, ".outputs.");
    if (!mid)
        return NULL;
    const char *port = mid + 9;
    size_t plen = strcspn(port, " \t}.");
    const char *rest = port + plen;
    rest += strspn(rest, " \t");
    if (plen == 0 || strncmp(rest, "}}", 2) != 0 || rest[2 + strspn(rest + 2, " \t")])
        return NULL;
    char id[256], name[256];
    if ((size_t)(mid - t) >= sizeof id || plen >= sizeof name)
        return NULL;
    memcpy(id, t, (size_t)(mid - t));
    id[mid - t] = '\0';
    memcpy(name, port, plen);
    name[plen] = '\0';
    *src = step_index(v, id);
    const rz_module *m = *src == RZ_NPOS ? NULL : v->f->steps[*src].module;
    return m ? rz__module_output(m, name) : NULL;
}

static void check_literal_type(vctx *v, size_t i, const rz__input *in,
                               const rz__port *p)
{
    const cJSON *x = in->value;
    size_t src;
    const rz__port *out = x && p->type ? whole_output_ref(v, x, &src) : NULL;
    if (out && out->type && !port_compatible(given_type(v, src, out), p->type)) {
        report(v, RZ_ETYPE, in->ptr, NULL, "output '%s' of '%s' is %s but input "
               "'%s' of '%s' is %s", out->name, step_name(v, src),
               given_type(v, src, out), p->name, step_name(v, i), p->type);
        return;
    }
    if (!x || has_expr(x) || cJSON_IsNull(x) || !p->type ||
        strcmp(p->type, "any") == 0 || json_has_type(x, p->type) ||
        (strcmp(p->type, "number") == 0 && cJSON_IsNumber(x)))
        return;
    report(v, RZ_ETYPE, in->ptr, NULL, "input '%s' of '%s' is %s but the value "
           "given is %s", p->name, step_name(v, i), p->type, json_type_name(x));
}

static void check_inputs(vctx *v, size_t i)
{
    rz__step *s = &v->f->steps[i];
    const rz_module *m = s->module;
    char hint[160];
    for (size_t k = 0; k < s->n_inputs; k++) {
        rz__input *in = &s->inputs[k];
        if (m) {
            const rz__port *p = rz__module_input(m, in->name);
            if (!p)
                report(v, RZ_EUNKNOWN, in->ptr, NULL, "module '%s' has no input "
                       "'%s'%s", m->id, in->name ? in->name : "",
                       hint_port(m->inputs, m->n_inputs, in->name ? in->name : "",
                                 hint, sizeof hint));
            else
                check_literal_type(v, i, in, p);
            mark_given(v, i, p);
        }
        v->each_ok = s->for_each != NULL;
        v->event_ok = s->on_step != NULL;
        scan_at(v, i, in->value, in->ptr, NULL);
        v->each_ok = v->event_ok = false;
    }
    /* Config values may be ${{ }} too (resolved when the step starts). */
    v->each_ok = s->for_each != NULL;
    v->event_ok = s->on_step != NULL;
    if (s->config && s->config->child)
        scan_at(v, i, s->config, s->ptr, "config");
    v->each_ok = v->event_ok = false;
    /* The list is read once, when the step starts (its elements not yet). */
    if (s->for_each)
        scan_at(v, i, s->for_each, s->ptr, "for_each");
    if (s->when) {
        char *ptr = rz__asprintf("%s/when", s->ptr ? s->ptr : "");
        if (!ptr) {
            v->oom = RZ_ENOMEM;
            return;
        }
        check_expr(v, i, s->when, ptr, true);
        free(ptr);
    }
}

static void check_unconnected(vctx *v, size_t i)
{
    const rz__step *s = &v->f->steps[i];
    const rz_module *m = s->module;
    if (!m || !v->given)
        return;
    for (size_t k = 0; k < m->n_inputs; k++)
        if (m->inputs[k].required && !v->given[v->in_base[i] + k])
            report(v, RZ_EUNCONNECTED, s->ptr, NULL, "required input '%s' of "
                   "step '%s' (module %s@%s) is neither connected nor given",
                   m->inputs[k].name, step_name(v, i), m->id, m->version);
}

/* ---- Credentials ---- */

static const rz__cred *find_cred(const rz__step *s, const char *field)
{
    for (size_t k = 0; k < s->n_creds; k++)
        if (s->creds[k].field && strcmp(s->creds[k].field, field) == 0)
            return &s->creds[k];
    return NULL;
}

static void check_creds(vctx *v, size_t i)
{
    const rz__step *s = &v->f->steps[i];
    const rz_module *m = s->module;
    if (!m)
        return;
    for (size_t k = 0; k < m->n_creds; k++) {
        const rz__cred_decl *d = &m->creds[k];
        if (!d->name)
            continue;
        const rz__cred *c = find_cred(s, d->name);
        if (!c) {
            if (d->required)
                report(v, RZ_ECREDENTIAL, s->ptr, s->n_creds ? "/credentials" : NULL,
                       "step '%s' (module %s) needs credential '%s' of type '%s'",
                       step_name(v, i), m->id, d->name, d->type ? d->type : "");
            continue;
        }
        /* A malformed reference was already reported by the loader. */
        if (c->type && d->type && strcmp(c->type, d->type) != 0)
            report(v, RZ_ECREDENTIAL, c->ptr, NULL, "credential '%s' of step '%s' "
                   "has type '%s' but module %s wants '%s'", d->name,
                   step_name(v, i), c->type, m->id, d->type);
    }
    for (size_t k = 0; k < s->n_creds; k++) {
        const rz__cred *c = &s->creds[k];
        /* The loader warned; a flow about to run must not carry a secret. */
        if (c->extra_fields)
            report(v, RZ_ECREDENTIAL, c->ptr, NULL, "credential reference '%s' of "
                   "step '%s' carries fields besides {credentialId, type}; keep the "
                   "secret in the vault", c->field ? c->field : "", step_name(v, i));
        bool known = false;
        for (size_t j = 0; c->field && j < m->n_creds && !known; j++)
            known = m->creds[j].name && strcmp(m->creds[j].name, c->field) == 0;
        if (!known)
            report(v, RZ_ECREDENTIAL, c->ptr, NULL, "module %s takes no "
                   "credential '%s'", m->id, c->field ? c->field : "");
    }
}

/* ---- Config against the module's JSON Schema (lib/schema) ---- */

/* The module's compiled config schema, built once per module and kept on
 * it. NULL when it does not compile (reported at the step). */
static const rz_schema *module_schema(vctx *v, size_t i)
{
    const rz__step *s = &v->f->steps[i];
    rz_module *m = (rz_module *)s->module;
    const rz_schema *sc;
    int rc = rz__schema_cached(&m->schema_cache, m->config, &sc);
    if (rc == RZ_ENOMEM)
        v->oom = RZ_ENOMEM;
    else if (rc != RZ_OK)
        report(v, RZ_EMANIFEST, s->ptr, NULL, "module %s has an invalid config "
               "schema: %s", m->id, rz_error_last()->message);
    return rc == RZ_OK ? sc : NULL;
}

typedef struct config_check {
    vctx *v;
    size_t i;
} config_check;

/* Exactly one reference token: a member of the config itself. */
static bool top_level(const char *pointer)
{
    return pointer[0] == '/' && !strchr(pointer + 1, '/');
}

static void report_unknown_key(vctx *v, size_t i, const char *ptr,
                               const char *key)
{
    const rz_module *m = v->f->steps[i].module;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(m->config, "properties");
    rz__suggest sg;
    char hint[160];
    rz__suggest_init(&sg, key);
    const cJSON *p;
    cJSON_ArrayForEach(p, props)
        rz__suggest_try(&sg, p->string);
    report(v, RZ_ECONFIG, ptr, NULL, "module %s has no config '%s'%s", m->id,
           key, rz__suggest_text(&sg, hint, sizeof hint));
}

/* One schema error as a diagnostic at the offending config value. */
static int config_error(void *ud, const rz_schema_error *e)
{
    config_check *k = ud;
    vctx *v = k->v;
    const rz__step *s = &v->f->steps[k->i];
    char *ptr = rz__asprintf("%s/config%s", s->ptr ? s->ptr : "", e->pointer);
    if (!ptr) {
        v->oom = RZ_ENOMEM;
        return 1;
    }
    const char *kw = e->keyword;
    if (strcmp(kw, "required") == 0 && !*e->pointer)
        report(v, RZ_ECONFIG, ptr, NULL, "step '%s' (module %s) needs config "
               "'%s'", step_name(v, k->i), s->module->id, e->name);
    else if (strcmp(kw, "additionalProperties") == 0 && top_level(e->pointer))
        report_unknown_key(v, k->i, ptr, e->name);
    else if (!*e->pointer)
        report(v, RZ_ECONFIG, ptr, NULL, "config of step '%s'%s%s",
               step_name(v, k->i), strncmp(e->message, "must ", 5) ? ": " : " ",
               e->message);
    else
        report(v, RZ_ECONFIG, ptr, NULL, "config '%s' of step '%s'%s%s",
               e->pointer + 1, step_name(v, k->i),
               strncmp(e->message, "must ", 5) ? ": " : " ", e->message);
    free(ptr);
    return v->oom != 0;
}

/* Defaults first (runs see the full config and a defaulted key satisfies
 * `required`), then every schema error; template values ("${{ ... }}") are
 * resolved at run time, so they pass any schema here. */
static void check_config(vctx *v, size_t i)
{
    rz__step *s = &v->f->steps[i];
    const rz_module *m = s->module;
    if (!m || !(cJSON_IsObject(m->config) || cJSON_IsBool(m->config)) ||
        !cJSON_IsObject(s->config))
        return;
    const rz_schema *sc = module_schema(v, i);
    if (!sc)
        return;
    int rc = rz__schema_defaults(sc, s->config);
    if (rc == RZ_ENOMEM) {
        v->oom = RZ_ENOMEM;
        return;
    }
    if (rc != RZ_OK)
        report(v, RZ_ECONFIG, s->ptr, "/config", "config of step '%s': %s",
               step_name(v, i), rz_error_last()->message);
    config_check k = {v, i};
    rz__schema_opts opts = {.opaque = has_expr};
    rc = rz__schema_eval(sc, s->config, &opts, config_error, &k);
    if (rc == RZ_ENOMEM)
        v->oom = RZ_ENOMEM;
    else if (rc == RZ_ETOOBIG)
        report(v, RZ_ECONFIG, s->ptr, "/config", "config of step '%s' could not "
               "be checked: %s", step_name(v, i), rz_error_last()->message);
}

/* ---- Cycles and the order ----
 * common/graph.c orders the steps (upstream first) and finds the cycles;
 * everything in or downstream of one is tainted: its order means nothing. */

static const char *cycle_name(const void *ud, size_t i)
{
    return step_name(ud, i);
}

static void cycle_found(void *ud, const size_t *comp, size_t n_comp,
                        const size_t *cycle, size_t n_cycle)
{
    vctx *v = ud;
    for (size_t k = 0; k < n_comp; k++)
        v->tainted[comp[k]] = 1;
    rz__buf b = {0};
    rz__cycle_text(&b, cycle, n_cycle, cycle_name, v);
    if (b.failed)
        v->oom = RZ_ENOMEM;
    report(v, RZ_ECYCLE, v->f->steps[cycle[0]].ptr, NULL, "cycle: %s",
           b.data ? b.data : step_name(v, cycle[0]));
    rz__buf_free(&b);
}

static void find_cycles(vctx *v)
{
    size_t n = v->f->n_steps;
    v->order = xcalloc(v, n, sizeof *v->order);
    v->pos = xcalloc(v, n, sizeof *v->pos);
    v->tainted = xcalloc(v, n, 1);
    if (v->oom)
        return;
    rz__graph g = {n, v->pred_off, v->pred};
    if (rz__graph_order(&g, v->order, cycle_found, v) != RZ_OK) {
        v->oom = RZ_ENOMEM;
        return;
    }
    for (size_t k = 0; k < n; k++) {
        size_t u = v->order[k];
        v->pos[u] = k;
        for (size_t e = v->pred_off[u]; e < v->pred_off[u + 1] && !v->tainted[u]; e++)
            v->tainted[u] = v->tainted[v->pred[e]];
    }
}

/* ---- Upstream references left after the cheap checks ----
 * Ancestor sets restricted to the referenced targets, as bitsets filled in
 * topological order: a node's set is the union of its predecessors' sets
 * plus the predecessors themselves. 64*W targets per pass. */

static void upstream_passes(vctx *v, size_t nt, const size_t *tbit, bool *ok)
{
    size_t n = v->f->n_steps;
    size_t w = (nt + 63) / 64;
    if (w > UPSTREAM_WORDS)
        w = UPSTREAM_WORDS;
    uint64_t *bits = xcalloc(v, n * w, sizeof *bits);
    if (!bits)
        return;
    for (size_t base = 0; base < nt; base += 64 * w) {
        memset(bits, 0, n * w * sizeof *bits);
        for (size_t k = 0; k < n; k++) {
            size_t u = v->order[k];
            uint64_t *row = bits + u * w;
            for (size_t e = v->pred_off[u]; e < v->pred_off[u + 1]; e++) {
                size_t p = v->pred[e];
                const uint64_t *prow = bits + p * w;
                for (size_t j = 0; j < w; j++)
                    row[j] |= prow[j];
                size_t b = tbit[p];
                if (b != RZ_NPOS && b >= base && b - base < 64 * w)
                    row[(b - base) / 64] |= 1ull << ((b - base) % 64);
            }
        }
        for (size_t r = 0; r < v->n_pending; r++) {
            const pending_ref *pr = &v->pending[r];
            size_t b = tbit[pr->target];
            if (b == RZ_NPOS || b < base || b - base >= 64 * w)
                continue;
            b -= base;
            if (bits[pr->step * w + b / 64] & (1ull << (b % 64)))
                ok[r] = true;
        }
    }
    free(bits);
}

static void resolve_pending(vctx *v)
{
    if (!v->n_pending || !v->order)
        return;
    size_t n = v->f->n_steps;
    bool *ok = xcalloc(v, v->n_pending, sizeof *ok);
    size_t *tbit = xcalloc(v, n, sizeof *tbit);
    if (!v->oom) {
        size_t nt = 0;
        for (size_t i = 0; i < n; i++)
            tbit[i] = RZ_NPOS;
        for (size_t r = 0; r < v->n_pending; r++) {
            const pending_ref *pr = &v->pending[r];
            /* Inside or below a cycle the order is not topological: say
             * nothing rather than something wrong (the cycle is reported). */
            if (v->tainted[pr->step])
                ok[r] = true;
            else if (v->pos[pr->target] < v->pos[pr->step] &&
                     tbit[pr->target] == RZ_NPOS)
                tbit[pr->target] = nt++;
        }
        if (nt)
            upstream_passes(v, nt, tbit, ok);
        for (size_t r = 0; r < v->n_pending && !v->oom; r++) {
            const pending_ref *pr = &v->pending[r];
            if (!ok[r])
                report_not_upstream(v, pr->step, pr->target, pr->ptr, pr->text,
                                    pr->offset);
        }
    }
    free(ok);
    free(tbit);
}

/* ---- Entry point ---- */

static int index_flow_inputs(vctx *v)
{
    const rz_flow *f = v->f;
    if (rz__map_init(&v->flow_inputs, f->n_inputs) != RZ_OK)
        return RZ_ENOMEM;
    for (size_t i = 0; i < f->n_inputs; i++)
        if (f->inputs[i].name &&
            rz__map_put(&v->flow_inputs, f->inputs[i].name, i) == RZ_ENOMEM)
            return RZ_ENOMEM;
    return RZ_OK;
}

/* One flag per input port of each resolved step, for "unconnected". */
static void alloc_given(vctx *v)
{
    size_t n = v->f->n_steps;
    v->in_base = xcalloc(v, n + 1, sizeof *v->in_base);
    if (!v->in_base)
        return;
    for (size_t i = 0; i < n; i++) {
        const rz_module *m = v->f->steps[i].module;
        v->in_base[i + 1] = v->in_base[i] + (m ? m->n_inputs : 0);
    }
    v->given = xcalloc(v, v->in_base[n], 1);
}

/* Flow outputs: expressions over the steps and inputs, read at the end. */
static void check_flow_outputs(vctx *v)
{
    for (size_t k = 0; k < v->f->n_outputs && !v->oom; k++)
        scan_at(v, RZ_NPOS, v->f->outputs[k].value, v->f->outputs[k].ptr, NULL);
}

/* A module's node-served model (docs/modules.md): the provider and the
 * model written out (nodes are matched to the model before the step
 * runs), and then no credential, nothing only a service has. */
static void check_local_llm(vctx *v, size_t i)
{
    const rz__step *s = &v->f->steps[i];
    const rz_module *m = s->module;
    if (!m || !m->local_llm.provider)
        return;
    const cJSON *p = rz__json_at(s->config, m->local_llm.provider);
    if (has_expr(p)) {
        report(v, RZ_EINVALID, s->ptr, "/config", "step '%s': config %s (the "
               "llm provider) must be written out, not an expression",
               step_name(v, i), m->local_llm.provider);
        return;
    }
    if (!rz__local_llm_on(m, s->config))
        return;
    const char *model = rz__local_llm_model(m, s->config);
    if (!model || !*model || strstr(model, "${{"))
        report(v, RZ_EINVALID, s->ptr, "/config", "step '%s': with llm provider "
               "'local', config %s must be a model's name written out (nodes "
               "are matched to it before the step runs)", step_name(v, i),
               m->local_llm.model);
    for (size_t k = 0; k < s->n_creds; k++)
        report(v, RZ_ECREDENTIAL, s->creds[k].ptr, NULL, "step '%s': llm provider "
               "'local' runs on a model its node serves and takes no credential: "
               "remove '%s'", step_name(v, i),
               s->creds[k].field ? s->creds[k].field : "");
    if (s->service)
        report(v, RZ_EINVALID, s->ptr, "/kind", "step '%s': with llm provider "
               "'local' the step is one generation per run, not a service (say "
               "kind: job, or run it per event with 'on')", step_name(v, i));
}

static void check_steps(vctx *v)
{
    for (size_t i = 0; i < v->f->n_steps && !v->oom; i++) {
        check_inputs(v, i);
        check_local_llm(v, i);
        check_creds(v, i);
        check_config(v, i);
        check_unconnected(v, i);
    }
}

static void vctx_free(vctx *v)
{
    rz__map_free(&v->own_ids);
    rz__map_free(&v->flow_inputs);
    free(v->pred_off);
    free(v->pred);
    free(v->in_base);
    free(v->given);
    free(v->order);
    free(v->pos);
    free(v->tainted);
    for (size_t r = 0; r < v->n_pending; r++)
        free(v->pending[r].ptr);
    free(v->pending);
    free(v->line_starts);
}

/* A sub-flow step runs once rz_flow_expand has put the child's steps in its
 * place: a run, a deployment or a server never reads a flow file a
 * document names. */
static void check_unexpanded(vctx *v)
{
    for (size_t i = 0; i < v->f->n_steps; i++)
        if (v->f->steps[i].subflow)
            report(v, RZ_EINVALID, v->f->steps[i].ptr, "/flow", "step '%s' runs the "
                   "sub-flow '%s', which must be expanded first (rz_flow_expand; the "
                   "rhizos commands do it, a server does not)", step_name(v, i),
                   v->f->steps[i].subflow);
}

int rz_flow_validate(rz_flow *flow, const rz_registry *reg, rz_diags *diags)
{
    return rz__flow_validate(flow, reg, diags, false);
}

int rz__flow_validate(rz_flow *flow, const rz_registry *reg, rz_diags *diags,
                      bool subflows)
{
    if (!flow)
        return rz__error(RZ_EINVAL, "flow is NULL");
    int rc = rz__flow_link(flow);
    if (rc == RZ_ENOMEM)
        return rc;
    vctx v = {.f = flow, .reg = reg, .diags = diags, .linked = rc == RZ_OK};
    check_ids(&v);
    if (!subflows)
        check_unexpanded(&v);
    if (!v.oom && index_flow_inputs(&v) != RZ_OK)
        v.oom = RZ_ENOMEM;
    for (size_t i = 0; i < flow->n_steps && !v.oom; i++) {
        resolve_module(&v, &flow->steps[i]);
        module_service(&v, &flow->steps[i]);
        service_fields(&v, &flow->steps[i]);
    }
    if (!v.oom && reg)
        alloc_given(&v);
    if (!v.oom)
        build_graph(&v);
    if (!v.oom)
        check_connections(&v);
    if (!v.oom)
        check_conn_ids(&v);
    if (!v.oom)
        check_feeds(&v);
    if (!v.oom)
        check_steps(&v);
    if (!v.oom)
        check_flow_outputs(&v);
    if (!v.oom)
        find_cycles(&v);
    if (!v.oom)
        resolve_pending(&v);
    rc = v.oom ? rz__error(RZ_ENOMEM, "out of memory validating the flow")
               : v.errors ? RZ_EINVALID : RZ_OK;
    if (rc == RZ_EINVALID)
        rz__error_at(v.first.code, flow->file, v.first.line, v.first.col,
                     v.first.ptr, "%s", v.first.msg);
    vctx_free(&v);
    return rc;
}
