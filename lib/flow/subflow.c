/* Sub-flows: a step `flow: PATH` runs another flow file.
 *
 * rz_flow_expand puts the child's steps in the step's place, so that a run
 * or a deployment holds only module steps: embedded and on the network the
 * child's steps are jobs of the same run, with its holds and costs. Ids
 * become "<step>-<child id>". The rewrite works on expressions' references:
 *   - in the child, steps.X becomes steps.<step>-X, and inputs.N (or
 *     trigger) becomes the value the step gives N (its default otherwise);
 *   - in the parent, steps.<step>.outputs.P becomes the child's output P;
 *     a step that needs <step> needs the child's final steps, and the
 *     child's steps need what <step> needs and take its `when`.
 * Every value becomes one expression: a literal a quoted string or
 * fromJSON('...'), a template a format(...). Problems are located: in the
 * child's own file for the child, at the step for the interface (unknown
 * or missing inputs, unknown outputs, cycles between files).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flow/loader.h"

#define SUBFLOW_DEPTH_MAX 8
/* Steps and files read for one expansion, all levels together: a diamond
 * of sub-flows cannot grow without bound. */
#define SUBFLOW_BUDGET 100000u
#define STEP_ID_MAX 64

typedef struct chain {
    const char *canon;        /* realpath of the flow file, or flow://NAME@N */
    const char *file;         /* as named */
    const struct chain *up;
    unsigned depth;
    bool named;               /* a named flow: its sub-flows are named too */
} chain;

typedef struct kid {
    size_t step;              /* the sub-flow step in the parent */
    rz_flow *flow;            /* the child, expanded and validated */
    cJSON *in_exprs;          /* child input -> expression text, parent names */
    cJSON *outs;              /* child output -> expression text, parent names */
    cJSON *finals;            /* ids (parent names) a step after it needs */
    int state;                /* 0 new, 1 computing, 2 ready */
    bool each;                /* the step maps a list: every child step runs
                                 once per element (for_each) */
} kid;

typedef struct xctx {
    rz_flow *f;
    const rz_registry *reg;
    const rz_flow_expand_opts *o;
    rz_diags *d;
    const chain *ch;
    size_t *budget;
    kid *kids;
    size_t n_kids;
    size_t errors;
    bool oom;
} xctx;

static void xdiag(xctx *x, const char *ptr, const char *sfx, const char *fmt, ...)
    RZ_PRINTF(4, 5);

static void xdiag(xctx *x, const char *ptr, const char *sfx, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *p = rz__asprintf("%s%s", ptr ? ptr : "", sfx ? sfx : "");
    rz__flow_diag(x->f, x->d, RZ_EINVALID, p ? p : "", "%s", msg);
    free(p);
    x->errors++;
}

static kid *kid_named(xctx *x, const char *id)
{
    for (size_t i = 0; i < x->n_kids; i++)
        if (strcmp(x->f->steps[x->kids[i].step].id, id) == 0)
            return &x->kids[i];
    return NULL;
}

/* ---- values as one expression ---- */

static void quote(rz__buf *b, const char *s, size_t n)
{
    rz__buf_append(b, "'", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'' || s[i] == '\\')
            rz__buf_append(b, "\\", 1);
        rz__buf_append(b, s + i, 1);
    }
    rz__buf_append(b, "'", 1);
}

/* A format string's text: braces doubled. */
static void format_text(rz__buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '{' || s[i] == '}')
            rz__buf_append(b, s + i, 1);
        rz__buf_append(b, s + i, 1);
    }
}

/* `text` (a string value, or a `when` if `cond`) as one expression; NULL
 * with the reason in `why` (or out of memory: why empty). */
static char *text_expr(const char *text, bool cond, char *why, size_t cap)
{
    why[0] = '\0';
    rz__expr *e = NULL;
    size_t off;
    if (rz__expr_parse(&e, text, cond, why, cap, &off) != RZ_OK)
        return NULL;
    rz__buf b = {0};
    size_t n = rz__expr_part_count(e), start, len, args = 0;
    if (rz__expr_is_literal(e)) {
        quote(&b, text, strlen(text));
    } else if (n == 1 && rz__expr_part(e, 0, &start, &len)) {
        rz__buf_printf(&b, "(%.*s)", (int)len, text + start);
    } else {
        rz__buf fmt = {0}, tail = {0};
        for (size_t i = 0; i < n; i++) {
            if (!rz__expr_part(e, i, &start, &len)) {
                format_text(&fmt, text + start, len);
                continue;
            }
            rz__buf_printf(&fmt, "{%zu}", args++);
            rz__buf_printf(&tail, ", (%.*s)", (int)len, text + start);
        }
        if (args < RZ_EXPR_MAX_ARGS) {
            rz__buf_append(&b, "format(", 7);
            quote(&b, fmt.data ? fmt.data : "", fmt.len);
            rz__buf_append(&b, tail.data ? tail.data : "", tail.len);
            rz__buf_append(&b, ")", 1);
        } else {
            snprintf(why, cap, "a template of more than %d ${{ }} parts cannot pass "
                     "into or out of a sub-flow; join them in one format()",
                     RZ_EXPR_MAX_ARGS - 1);
        }
        rz__buf_free(&fmt);
        rz__buf_free(&tail);
    }
    rz__expr_free(e);
    if (why[0]) {
        rz__buf_free(&b);
        return NULL;
    }
    return rz__buf_take(&b);
}

static char *json_expr(const cJSON *v, char *why, size_t cap)
{
    why[0] = '\0';
    if (!v || cJSON_IsNull(v))
        return rz__strdup("null");
    if (cJSON_IsString(v))
        return text_expr(v->valuestring, false, why, cap);
    char *json = cJSON_PrintUnformatted(v);
    if (!json)
        return NULL;
    rz__buf b = {0};
    rz__buf_append(&b, "fromJSON(", 9);
    quote(&b, json, strlen(json));
    rz__buf_append(&b, ")", 1);
    free(json);
    return rz__buf_take(&b);
}

/* ---- rewriting references ---- */

static int kid_ready(xctx *x, kid *k);

/* How a text's references change: on the child's side (`k` set) or the
 * parent's. */
typedef struct scope {
    xctx *x;
    kid *k;
    const char *ptr;          /* where problems are reported */
    bool elem;                /* a mapped child step's inputs/config: a child
                                 step's output is its element's, [index] */
    bool whole;               /* a mapped child step's `when`: evaluated once
                                 for all elements, so no element's values */
} scope;

/* The source span of reference `r` in `text`; false if it is not spelt the
 * way the parser reads it (never expected: then nothing is rewritten). */
static bool ref_span(const char *text, const rz__ref *r, size_t *len)
{
    static const char *const fields[] = {"outputs", "status", "error", "attempts",
                                         "duration_ms"};
    char want[300];
    if (r->kind == RZ_REF_INPUT && strncmp(text + r->offset, "inputs.", 7) != 0)
        snprintf(want, sizeof want, "trigger");
    else if (r->kind == RZ_REF_INPUT)
        snprintf(want, sizeof want, "inputs.%s", r->name);
    else if (r->field == RZ_FIELD_OUTPUTS)
        snprintf(want, sizeof want, "steps.%s.outputs.%s", r->name, r->port ? r->port : "");
    else
        snprintf(want, sizeof want, "steps.%s.%s", r->name, fields[r->field]);
    *len = strlen(want);
    return strncmp(text + r->offset, want, *len) == 0;
}

/* Whether expression `text` reads an element (item, index, indices); *oom
 * set when it cannot be parsed for want of memory. */
static bool per_element(const char *text, bool *oom)
{
    rz__expr *e = NULL;
    if (rz__expr_parse(&e, text, true, NULL, 0, NULL) != RZ_OK) {
        *oom = true;
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < rz__expr_ref_count(e) && !found; i++)
        found = rz__expr_ref(e, i)->kind == RZ_REF_EACH;
    rz__expr_free(e);
    return found;
}

/* What replaces reference `r`, or NULL to keep it; *bad on a problem
 * (reported, or x->oom: a reference is never kept for want of memory). */
static char *replacement(scope *sc, const char *text, size_t len, const rz__ref *r,
                         bool *bad)
{
    xctx *x = sc->x;
    char *with = NULL;
    if (sc->k && r->kind == RZ_REF_STEP && (sc->elem || sc->whole) &&
        (sc->whole || r->field != RZ_FIELD_OUTPUTS)) {
        xdiag(x, sc->ptr, NULL, "'%s' maps a list over sub-flow %s, whose steps run once "
              "per element: %s", x->f->steps[sc->k->step].id, x->f->steps[sc->k->step].subflow,
              sc->whole ? "a `when` is evaluated once for all elements, so it cannot read "
              "a step of the sub-flow" : "a step can read another's outputs (its element's), "
              "not how it ran");
        *bad = true;
        return NULL;
    } else if (sc->k && r->kind == RZ_REF_STEP) {   /* steps.X... -> steps.<step>-X... */
        with = rz__asprintf("steps.%s-%.*s%s", x->f->steps[sc->k->step].id,
                            (int)(len - 6), text + r->offset + 6, sc->elem ? "[index]" : "");
    } else if (sc->k && r->kind == RZ_REF_INPUT) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(sc->k->in_exprs, r->name);
        if (sc->whole && cJSON_IsString(e) && per_element(e->valuestring, bad)) {
            xdiag(x, sc->ptr, NULL, "'%s' maps a list over sub-flow %s: a `when` is "
                  "evaluated once for all elements, and input '%s' is given an element's "
                  "value", x->f->steps[sc->k->step].id, x->f->steps[sc->k->step].subflow,
                  r->name);
            *bad = true;
            return NULL;
        }
        if (*bad) {   /* out of memory parsing it */
            x->oom = true;
            return NULL;
        }
        with = rz__asprintf("(%s)", cJSON_IsString(e) ? e->valuestring : "null");
    } else {
        kid *k = r->kind == RZ_REF_STEP ? kid_named(x, r->name) : NULL;
        if (!k)
            return NULL;
        if (r->field != RZ_FIELD_OUTPUTS) {
            xdiag(x, sc->ptr, NULL, "'%s' runs a sub-flow: its outputs can be read, not "
                  "how it ran (read a step of the sub-flow through an output)", r->name);
            *bad = true;
            return NULL;
        }
        if (kid_ready(x, k) != RZ_OK) {
            *bad = true;
            return NULL;
        }
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(k->outs, r->port);
        if (!cJSON_IsString(e)) {
            rz__buf names = {0};
            for (const cJSON *o = k->outs ? k->outs->child : NULL; o; o = o->next)
                rz__buf_printf(&names, "%s%s", names.len ? ", " : "", o->string);
            xdiag(x, sc->ptr, NULL, "sub-flow step '%s' (%s) has no output '%s' (its "
                  "outputs: %s)", r->name, x->f->steps[k->step].subflow, r->port,
                  names.data ? names.data : "none declared");
            rz__buf_free(&names);
            *bad = true;
            return NULL;
        }
        with = rz__asprintf("(%s)", e->valuestring);
    }
    if (!with)
        *bad = x->oom = true;
    return with;
}

/* `text` with its references rewritten; NULL on a problem (reported) or
 * out of memory (x->oom). */
static char *rewrite(scope *sc, const char *text, bool cond)
{
    rz__expr *e = NULL;
    if (rz__expr_parse(&e, text, cond, NULL, 0, NULL) != RZ_OK) {
        /* Validated already: only memory fails here. */
        sc->x->oom = true;
        return NULL;
    }
    rz__buf b = {0};
    size_t at = 0, n = rz__expr_ref_count(e);
    bool bad = false;
    for (size_t i = 0; i < n && !bad; i++) {
        const rz__ref *r = rz__expr_ref(e, i);
        size_t len;
        if (r->kind != RZ_REF_STEP && r->kind != RZ_REF_INPUT)
            continue;
        if (r->offset < at || !ref_span(text, r, &len))
            continue;
        char *with = replacement(sc, text, len, r, &bad);
        if (!with)
            continue;
        rz__buf_append(&b, text + at, r->offset - at);
        rz__buf_append(&b, with, strlen(with));
        free(with);
        at = r->offset + len;
    }
    rz__expr_free(e);
    rz__buf_append(&b, text + at, strlen(text + at));
    if (bad) {
        rz__buf_free(&b);
        return NULL;
    }
    char *out = rz__buf_take(&b);
    if (!out)
        sc->x->oom = true;
    return out;
}

/* Every string inside `v` rewritten in place; false on a problem. Problems
 * are located at the string's pointer: sc->ptr, then its keys and indices. */
static bool rewrite_tree(scope *sc, cJSON *v, bool cond)
{
    const char *base = sc->ptr;
    size_t k = 0;
    bool ok = true;
    for (cJSON *c = v ? v->child : NULL, *next; !sc->x->oom && c; c = next, k++) {
        next = c->next;
        char *ptr = c->string ? rz__asprintf("%s/%s", base, c->string)
                              : rz__asprintf("%s/%zu", base, k);
        if (!ptr)
            return !(sc->x->oom = true);
        sc->ptr = ptr;
        ok = rewrite_tree(sc, c, false) && ok;
        sc->ptr = base;
        free(ptr);
    }
    if (!ok)
        return false;
    /* A template without ${{ }} is text; a bare condition is all expression. */
    if (!cJSON_IsString(v) || (!cond && !strstr(v->valuestring, "${{")))
        return true;
    char *t = rewrite(sc, v->valuestring, cond);
    if (!t)
        return false;
    /* cJSON's own allocator holds the new text. */
    ok = cJSON_SetValuestring(v, t) != NULL;
    free(t);
    return ok || !(sc->x->oom = true);
}

/* ---- the child's interface ---- */

static bool add_str(cJSON *o, const char *k, char *v)
{
    cJSON *s = v ? cJSON_CreateString(v) : NULL;
    free(v);
    if (s && (k ? cJSON_AddItemToObject(o, k, s) : cJSON_AddItemToArray(o, s)))
        return true;
    cJSON_Delete(s);
    return false;
}

/* obj[key] = v, replacing or adding; v is freed when it cannot be put. */
static bool put_key(cJSON *obj, const char *key, cJSON *v)
{
    bool ok = v && obj && (cJSON_GetObjectItemCaseSensitive(obj, key)
                           ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v)
                           : cJSON_AddItemToObject(obj, key, v));
    if (!ok)
        cJSON_Delete(v);
    return ok;
}

/* The step's inputs as expressions for the child's inputs. */
static bool kid_inputs(xctx *x, kid *k, scope *parent)
{
    const rz__step *s = &x->f->steps[k->step];
    const rz_flow *c = k->flow;
    if (!(k->in_exprs = cJSON_CreateObject()))
        return !(x->oom = true);
    char why[300];
    for (size_t i = 0; i < c->n_inputs; i++) {
        const rz__flow_input *in = &c->inputs[i];
        const rz__input *given = NULL;
        for (size_t j = 0; j < s->n_inputs && !given; j++)
            if (strcmp(s->inputs[j].name, in->name) == 0)
                given = &s->inputs[j];
        cJSON *v = given ? cJSON_Duplicate(given->value, true) : NULL;
        if (given && !v)
            return !(x->oom = true);
        if (!given && in->required) {
            xdiag(x, s->ptr, NULL, "sub-flow step '%s' does not give input '%s', which "
                  "%s requires", s->id, in->name, s->subflow);
            continue;
        }
        parent->ptr = given ? given->ptr : s->ptr;
        bool ok = !v || rewrite_tree(parent, v, false);
        char *e = ok ? json_expr(v ? v : in->def, why, sizeof why) : NULL;
        cJSON_Delete(v);
        if (ok && !e && why[0])
            xdiag(x, parent->ptr, NULL, "%s", why);
        else if (ok && !add_str(k->in_exprs, in->name, e))
            x->oom = true;
    }
    for (size_t j = 0; j < s->n_inputs; j++) {
        bool known = false;
        for (size_t i = 0; i < c->n_inputs && !known; i++)
            known = strcmp(c->inputs[i].name, s->inputs[j].name) == 0;
        if (!known)
            xdiag(x, s->inputs[j].ptr, NULL, "sub-flow %s has no input '%s'", s->subflow,
                  s->inputs[j].name);
    }
    return !x->oom;
}

/* Whether output value `v` is one step output read as it is
 * (${{ steps.X.outputs.P }}): what a mapped sub-flow can return, the
 * step's list. */
static bool one_output_ref(const cJSON *v, bool *oom)
{
    rz__expr *e = NULL;
    if (!cJSON_IsString(v))
        return false;
    if (rz__expr_parse(&e, v->valuestring, false, NULL, 0, NULL) != RZ_OK) {
        *oom = true;   /* validated already: only memory fails here */
        return false;
    }
    const char *t = v->valuestring;
    size_t start = 0, len = 0, rl = 0;
    bool ok = rz__expr_part_count(e) == 1 && !rz__expr_is_literal(e) &&
              rz__expr_part(e, 0, &start, &len) && rz__expr_ref_count(e) == 1;
    const rz__ref *r = ok ? rz__expr_ref(e, 0) : NULL;
    /* Blanks and outer parentheses (an expanded child's outputs have them)
     * aside; the span must then be the reference's own. */
    for (;;) {
        if (len && (t[start] == ' ' || t[start] == '\t'))
            start++, len--;
        else if (len && (t[start + len - 1] == ' ' || t[start + len - 1] == '\t'))
            len--;
        else if (len >= 2 && t[start] == '(' && t[start + len - 1] == ')')
            start++, len -= 2;
        else
            break;
    }
    ok = r && r->kind == RZ_REF_STEP && r->field == RZ_FIELD_OUTPUTS &&
         r->offset == start && ref_span(t, r, &rl) && rl == len;
    rz__expr_free(e);
    return ok;
}

/* A mapped sub-flow's steps run as for_each steps of the parent: what a
 * for_each step cannot be, or what would not be one element's, is said
 * at the step. */
static void check_mapped(xctx *x, const kid *k)
{
    const rz__step *s = &x->f->steps[k->step];
    const rz_flow *c = k->flow;
    for (size_t i = 0; i < c->n_steps; i++) {
        const rz__step *cs = &c->steps[i];
        const char *why = cs->for_each ? "maps a list of its own (a map within a mapped "
                                         "sub-flow is not supported yet)"
                        : cs->service ? "is a service"
                        : cs->on_step ? "runs once per event"
                        : rz__step_approval(cs) ? "waits for an approval"
                        : cs->replicas > 1 ? "asks for verify replicas" : NULL;
        if (why)
            xdiag(x, s->ptr, "/for_each", "'%s' maps a list over sub-flow %s, whose steps "
                  "run once per element, but its step '%s' %s", s->id, s->subflow, cs->id,
                  why);
    }
    bool oom = false;
    for (size_t i = 0; i < c->n_outputs && !oom; i++)
        if (!one_output_ref(c->outputs[i].value, &oom) && !oom)
            xdiag(x, s->ptr, "/for_each", "'%s' maps a list over sub-flow %s: its output "
                  "'%s' must read one step output as it is (${{ steps.X.outputs.P }}), "
                  "which becomes the list of the elements' values", s->id, s->subflow,
                  c->outputs[i].name);
    if (oom)
        x->oom = true;
}

/* The child's outputs in parent names, and its final steps (renamed): those
 * no other child step needs. Every child step is upstream of one, so a
 * step that needs them all reads any child step settled, and a branch the
 * child skipped does not skip it (only a final step that is skipped does). */
static bool kid_outputs(xctx *x, kid *k, scope *child)
{
    const rz_flow *c = k->flow;
    const char *sid = x->f->steps[k->step].id;
    if (!(k->outs = cJSON_CreateObject()) || !(k->finals = cJSON_CreateArray()))
        return !(x->oom = true);
    char why[300];
    for (size_t i = 0; i < c->n_outputs && !x->oom; i++) {
        cJSON *v = cJSON_Duplicate(c->outputs[i].value, true);
        if (!v && c->outputs[i].value) {
            x->oom = true;
            break;
        }
        bool ok = !v || rewrite_tree(child, v, false);
        char *ex = ok ? json_expr(v, why, sizeof why) : NULL;
        cJSON_Delete(v);
        if (ok && !ex && why[0])
            xdiag(x, x->f->steps[k->step].ptr, "/flow", "output '%s' of %s: %s",
                  c->outputs[i].name, x->f->steps[k->step].subflow, why);
        else if (ok && !add_str(k->outs, c->outputs[i].name, ex))
            x->oom = true;
    }
    bool *needed = rz__calloc(c->n_steps + 1, sizeof *needed);
    if (!needed)
        return !(x->oom = true);
    for (size_t i = 0; i < c->n_steps; i++) {
        size_t nd;
        const size_t *deps = rz_flow_step_deps(c, i, &nd);
        for (size_t j = 0; j < nd; j++)
            needed[deps[j]] = true;
    }
    for (size_t i = 0; i < c->n_steps && !x->oom; i++)
        if (!needed[i] && !add_str(k->finals, NULL, rz__asprintf("%s-%s", sid, c->steps[i].id)))
            x->oom = true;
    free(needed);
    return !x->oom;
}

static int kid_ready(xctx *x, kid *k)
{
    if (k->state == 2)
        return RZ_OK;
    if (k->state == 1)   /* the parent validated acyclic: never expected */
        return RZ_EINVALID;
    k->state = 1;
    size_t before = x->errors;
    scope parent = {x, NULL, x->f->steps[k->step].ptr, false, false};
    scope child = {x, k, x->f->steps[k->step].ptr, false, false};
    if (k->each)
        check_mapped(x, k);
    if (kid_inputs(x, k, &parent))
        kid_outputs(x, k, &child);
    k->state = 2;
    return x->oom ? RZ_ENOMEM : x->errors > before ? RZ_EINVALID : RZ_OK;
}

/* ---- loading the children ---- */

static int expand_flow(rz_flow **io, const rz_registry *reg, const rz_flow_expand_opts *o,
                       rz_diags *d, const chain *ch, size_t *budget);

static bool is_named(const char *ref)
{
    return strncmp(ref, "flow://", 7) == 0;
}

bool rz__flow_named_ref(const char *ref, char *name, size_t cap, uint64_t *version,
                        char *why, size_t whycap)
{
    const char *n = ref + 7, *at = strchr(n, '@');
    size_t len = at ? (size_t)(at - n) : strlen(n);
    const char *bad = NULL;
    if (!is_named(ref) || len == 0 || len > 128)
        bad = "a name of 1 to 128 bytes follows flow://";
    else if (n[0] == '.')
        bad = "a flow name does not start with '.'";
    for (size_t i = 0; !bad && i < len; i++)
        if ((unsigned char)n[i] < 0x20 || n[i] == 0x7f || n[i] == '/')
            bad = "a flow name holds no '/' or control byte";
    uint64_t v = 0;
    if (!bad && at) {
        const char *d = at + 1;
        if (!*d || strspn(d, "0123456789") != strlen(d) || d[0] == '0' || strlen(d) > 15)
            bad = "the version after '@' is a number, 1 or more (a named flow's versions "
                  "are 1, 2, 3, ... as `rhizos flow deploy` numbers them)";
        else
            v = strtoull(d, NULL, 10);
    }
    if (bad) {
        snprintf(why, whycap, "%s", bad);
        return false;
    }
    if (name)
        snprintf(name, cap, "%.*s", (int)len, n);
    if (version)
        *version = v;
    return true;
}

/* The child file of step `s`, relative to the parent's folder. */
static char *child_path(const rz_flow *f, const rz__step *s)
{
    const char *file = f->file ? f->file : "";
    const char *slash = strrchr(file, '/');
    if (!slash || strcmp(file, "<stdin>") == 0)
        return rz__strdup(s->subflow);
    return rz__asprintf("%.*s/%s", (int)(slash - file), file, s->subflow);
}

/* The file of a named flow in the flows folder; NULL (said) if none. */
static char *named_file(xctx *x, const rz__step *s, const char *name, uint64_t v)
{
    static const char *const exts[] = {".yaml", ".yml", ".json"};
    for (size_t e = 0; e < RZ_ARRAY_LEN(exts); e++) {
        char *p = v ? rz__asprintf("%s/%s@%llu%s", x->o->flows_dir, name,
                                   (unsigned long long)v, exts[e])
                    : rz__asprintf("%s/%s%s", x->o->flows_dir, name, exts[e]);
        struct stat sb;
        if (!p) {
            x->oom = true;
            return NULL;
        }
        if (stat(p, &sb) == 0)
            return p;
        free(p);
    }
    xdiag(x, s->ptr, "/flow", "sub-flow %s of step '%s': no %s%s%.0llu.yaml (or .yml, "
          ".json) in the flows folder %s", s->subflow, s->id, name, v ? "@" : "",
          (unsigned long long)v, x->o->flows_dir);
    return NULL;
}

/* Step i's child: a file to read (*path) or a named flow's text (*text);
 * *canon and *label name it. False: said (or x->oom). */
static bool find_kid(xctx *x, size_t i, char **path, char **text, char **canon, char **label)
{
    const rz__step *s = &x->f->steps[i];
    *path = *text = *canon = *label = NULL;
    if (!is_named(s->subflow)) {
        if (x->ch->named || x->o->no_files) {
            xdiag(x, s->ptr, "/flow", "sub-flow %s of step '%s' is a file: %s", s->subflow,
                  s->id, x->ch->named ? "a named flow's sub-flows are named flows "
                  "(flow://NAME@N)" : "files are not read here (a server never reads a "
                  "file a document names); expand it where the file is, as `rhizos flow "
                  "deploy` does");
            return false;
        }
        *path = child_path(x->f, s);
        char buf[PATH_MAX];
        if (*path && !realpath(*path, buf)) {
            xdiag(x, s->ptr, "/flow", "sub-flow '%s' of step '%s': %s", s->subflow, s->id,
                  strerror(errno));
            return false;
        }
        *canon = *path ? rz__strdup(buf) : NULL;
        *label = *path ? rz__strdup(*path) : NULL;
        return *canon && *label ? true : !(x->oom = true);
    }
    char name[129], why[200];
    uint64_t v = 0;
    unsigned long long found = 0;
    if (!rz__flow_named_ref(s->subflow, name, sizeof name, &v, why, sizeof why)) {
        xdiag(x, s->ptr, "/flow", "'flow' names '%s': %s", s->subflow, why);
        return false;
    }
    found = v;
    if (x->o->named) {
        char msg[300] = "";
        int rc = x->o->named(x->o->named_ctx, name, v, text, &found, msg, sizeof msg);
        if (rc == RZ_ENOMEM)
            return !(x->oom = true);
        if (rc != RZ_OK || !*text) {
            xdiag(x, s->ptr, "/flow", "sub-flow %s of step '%s': %s", s->subflow, s->id,
                  msg[0] ? msg : rc != RZ_OK ? rz_strerror(rc) : "no text");
            return false;
        }
    } else if (x->o->flows_dir) {
        if (!(*path = named_file(x, s, name, v)))
            return false;
    } else {
        xdiag(x, s->ptr, "/flow", "sub-flow %s of step '%s' is a named flow, deployed on an "
              "orchestrator: `rhizos flow deploy` has it expanded there; to run it here, "
              "set RHIZOS_FLOWS to a folder holding %s@N.yaml (`rhizos --orchestrator URL flow "
              "validate` checks it there)", s->subflow, s->id, name);
        return false;
    }
    *canon = found ? rz__asprintf("flow://%s@%llu", name, found)
                   : rz__asprintf("flow://%s", name);
    *label = *path ? rz__strdup(*path) : rz__strdup(*canon);
    return *canon && *label ? true : !(x->oom = true);
}

static void load_kid(xctx *x, size_t i)
{
    const rz__step *s = &x->f->steps[i];
    char *path, *text, *canon, *label;
    if (!find_kid(x, i, &path, &text, &canon, &label)) {
        free(path);
        free(text);
        free(canon);
        free(label);
        return;
    }
    struct stat sb;
    if (path && (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        xdiag(x, s->ptr, "/flow", "sub-flow '%s' of step '%s' is not a regular file",
              s->subflow, s->id);
        goto out;
    }
    /* The files from the first visit of this one down to here. */
    rz__buf cyc = {0};
    const chain *first = NULL;
    for (const chain *c = x->ch; c; c = c->up)
        if (strcmp(c->canon, canon) == 0)
            first = c;
    for (unsigned lvl = first ? first->depth : UINT_MAX; first && lvl <= x->ch->depth; lvl++)
        for (const chain *p = x->ch; p; p = p->up)
            if (p->depth == lvl)
                rz__buf_printf(&cyc, "%s -> ", p->file);
    if (cyc.len) {
        xdiag(x, s->ptr, "/flow", "sub-flows form a cycle: %s%s", cyc.data, label);
    } else if (x->ch->depth >= SUBFLOW_DEPTH_MAX) {
        xdiag(x, s->ptr, "/flow", "sub-flows nested deeper than %d levels",
              SUBFLOW_DEPTH_MAX);
    } else if (*x->budget == 0) {
        xdiag(x, s->ptr, "/flow", "the sub-flows hold more than %u steps in all",
              SUBFLOW_BUDGET);
    } else {
        (*x->budget)--;
        chain here = {canon, label, x->ch, x->ch->depth + 1, is_named(s->subflow)};
        rz_flow *c = NULL;
        int rc = path ? rz_flow_load(&c, path, RZ_FORMAT_AUTO, x->d)
                      : rz_flow_parse(&c, text, strlen(text), RZ_FORMAT_AUTO, label, x->d);
        if (rc == RZ_OK)
            rc = expand_flow(&c, x->reg, x->o, x->d, &here, x->budget);
        if (rc == RZ_OK && c->n_steps && c->steps[c->n_steps - 1].is_exit)
            xdiag(x, s->ptr, "/flow", "sub-flow %s has an on_exit step: not supported "
                  "in a sub-flow yet", s->subflow);
        else if (rc == RZ_OK && c->n_steps > *x->budget)
            xdiag(x, s->ptr, "/flow", "the sub-flows hold more than %u steps in all",
                  SUBFLOW_BUDGET);
        else if (rc == RZ_ENOMEM)
            x->oom = true;
        else if (rc != RZ_OK)
            xdiag(x, s->ptr, "/flow", "sub-flow %s of step '%s' is not valid (its "
                  "problems are above)", s->subflow, s->id);
        if (rc == RZ_OK && x->errors == 0 && !x->oom) {
            *x->budget -= c->n_steps;
            x->kids[x->n_kids++] = (kid){.step = i, .flow = c, .each = s->for_each != NULL};
            c = NULL;
        }
        rz_flow_free(c);
    }
    rz__buf_free(&cyc);
out:
    free(path);
    free(text);
    free(canon);
    free(label);
}

/* ---- the expanded document ---- */

/* `needs` of a parent step: each sub-flow step by the steps it ends with. */
static bool map_needs(xctx *x, cJSON *step)
{
    cJSON *needs = cJSON_GetObjectItemCaseSensitive(step, "needs");
    cJSON *out = cJSON_CreateArray();
    if (!out)
        return !(x->oom = true);
    for (const cJSON *n = needs ? needs->child : NULL; n; n = n->next) {
        kid *k = cJSON_IsString(n) ? kid_named(x, n->valuestring) : NULL;
        if (k && kid_ready(x, k) != RZ_OK) {
            cJSON_Delete(out);
            return false;
        }
        const cJSON *src = k ? k->finals : NULL;
        for (const cJSON *f = src ? src->child : n; f; f = src ? f->next : NULL)
            if (!cJSON_AddItemToArray(out, cJSON_Duplicate(f, false))) {
                cJSON_Delete(out);
                return !(x->oom = true);
            }
    }
    if (!needs)
        cJSON_Delete(out);
    else if (!put_key(step, "needs", out))
        return !(x->oom = true);
    return true;
}

/* A step's values rewritten; sc->ptr is the step's pointer. */
static bool fix_step(scope *sc, cJSON *step)
{
    static const char *const keys[] = {"inputs", "config", "for_each", "when"};
    const char *base = sc->ptr;
    bool ok = true, each = sc->k && sc->k->each;
    for (size_t i = 0; !sc->x->oom && i < RZ_ARRAY_LEN(keys); i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(step, keys[i]);
        char *ptr = v ? rz__asprintf("%s/%s", base, keys[i]) : NULL;
        if (v && !ptr)
            return !(sc->x->oom = true);
        sc->ptr = ptr;
        sc->elem = each && i < 2;
        sc->whole = each && i == 3;
        ok = (!v || rewrite_tree(sc, v, i == 3)) && ok;
        sc->ptr = base;
        sc->elem = sc->whole = false;
        free(ptr);
    }
    return ok;
}

/* `when` of a child step: the sub-flow step's and its own, both true. */
static bool join_when(xctx *x, cJSON *step, const char *outer)
{
    if (!outer)
        return true;
    cJSON *w = cJSON_GetObjectItemCaseSensitive(step, "when");
    char why[300];
    char *own = cJSON_IsString(w) ? text_expr(w->valuestring, true, why, sizeof why) : NULL;
    char *both = own ? rz__asprintf("${{ (%s) && (%s) }}", outer, own)
                     : rz__asprintf("${{ %s }}", outer);
    free(own);
    bool ok = both && put_key(step, "when", cJSON_CreateString(both));
    free(both);
    return ok || !(x->oom = true);
}

/* A child step's needs renamed, then the sub-flow step's own added. */
static bool rename_needs(xctx *x, cJSON *step, const char *sid, const cJSON *outer)
{
    const cJSON *needs = cJSON_GetObjectItemCaseSensitive(step, "needs");
    cJSON *out = cJSON_CreateArray();
    bool ok = out != NULL;
    for (const cJSON *n = needs ? needs->child : NULL; ok && n; n = n->next)
        ok = cJSON_IsString(n) && add_str(out, NULL, rz__asprintf("%s-%s", sid, n->valuestring));
    for (const cJSON *n = outer ? outer->child : NULL; ok && n; n = n->next)
        ok = cJSON_AddItemToArray(out, cJSON_Duplicate(n, false));
    if (ok && cJSON_GetArraySize(out) > 0)
        ok = put_key(step, "needs", out);
    else
        cJSON_Delete(out);
    return ok || !(x->oom = true);
}

/* The child's connections renamed into `conns`. */
static bool inline_conns(xctx *x, const char *sid, cJSON *tree, cJSON *conns)
{
    bool ok = true;
    cJSON *cc = cJSON_GetObjectItemCaseSensitive(tree, "connections");
    for (cJSON *c = cc ? cc->child : NULL, *next; ok && c; c = next) {
        next = c->next;
        static const char *const ends[] = {"source", "target"};
        for (size_t e = 0; e < 2 && ok; e++) {
            cJSON *end = cJSON_GetObjectItemCaseSensitive(c, ends[e]);
            cJSON *node = cJSON_GetObjectItemCaseSensitive(end, "nodeId");
            char *r = cJSON_IsString(node) ? rz__asprintf("%s-%s", sid, node->valuestring) : NULL;
            ok = r && put_key(end, "nodeId", cJSON_CreateString(r));
            free(r);
        }
        cJSON *cid = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (ok && cJSON_IsString(cid)) {
            char *r = rz__asprintf("%s-%s", sid, cid->valuestring);
            ok = r && put_key(c, "id", cJSON_CreateString(r));
            free(r);
        }
        if (ok) {
            cJSON_DetachItemViaPointer(cc, c);
            if (!cJSON_AddItemToArray(conns, c)) {
                cJSON_Delete(c);
                ok = !(x->oom = true);
            }
        } else if (!x->errors) {
            x->oom = true;
        }
    }
    return ok;
}

/* `ui.group` names the sub-flow step a child step came from, so a viewer
 * can draw a sub-flow's steps together (rz_flow_step_group); a step of a
 * nested sub-flow keeps its inner group, renamed as the steps are. */
static bool mark_group(xctx *x, cJSON *step, const char *sid)
{
    cJSON *ui = cJSON_GetObjectItemCaseSensitive(step, "ui");
    if (!ui && !(ui = cJSON_AddObjectToObject(step, "ui")))
        return !(x->oom = true);
    const char *inner = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ui, "group"));
    char *g = inner ? rz__asprintf("%s-%s", sid, inner) : rz__strdup(sid);
    cJSON *v = g ? cJSON_CreateString(g) : NULL;
    free(g);
    return put_key(ui, "group", v) || !(x->oom = true);
}

/* `step` needs <sid>-<src> (once). */
static bool add_need(cJSON *step, const char *sid, const char *src)
{
    char *id = rz__asprintf("%s-%s", sid, src);
    cJSON *needs = cJSON_GetObjectItemCaseSensitive(step, "needs");
    if (!needs)
        needs = cJSON_AddArrayToObject(step, "needs");
    bool have = false;
    for (const cJSON *n = needs ? needs->child : NULL; id && n && !have; n = n->next)
        have = cJSON_IsString(n) && strcmp(n->valuestring, id) == 0;
    bool ok = id && needs && (have || add_str(needs, NULL, rz__strdup(id)));
    free(id);
    return ok;
}

/* A mapped child's connections as its steps' inputs: element i of the
 * target reads element i of the source's list. */
static bool conns_as_inputs(xctx *x, const char *sid, cJSON *tree, cJSON *steps)
{
    cJSON *cc = cJSON_GetObjectItemCaseSensitive(tree, "connections");
    for (const cJSON *c = cc ? cc->child : NULL; c; c = c->next) {
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(c, "source");
        const cJSON *dst = cJSON_GetObjectItemCaseSensitive(c, "target");
        const char *sn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(src, "nodeId"));
        const char *sp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(src, "port"));
        const char *dn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dst, "nodeId"));
        const char *dp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dst, "port"));
        char *id = sn && sp && dn && dp ? rz__asprintf("%s-%s", sid, dn) : NULL;
        cJSON *step = id ? cJSON_GetObjectItemCaseSensitive(steps, id) : NULL;
        free(id);
        cJSON *in = cJSON_GetObjectItemCaseSensitive(step, "inputs");
        if (step && !in)
            in = cJSON_AddObjectToObject(step, "inputs");
        char *e = in ? rz__asprintf("${{ steps.%s-%s.outputs.%s[index] }}", sid, sn, sp) : NULL;
        if (!e || !put_key(in, dp, cJSON_CreateString(e)) || !add_need(step, sid, sn)) {
            free(e);
            return !(x->oom = true);
        }
        free(e);
    }
    return true;
}

/* The list a mapped sub-flow step gives, in parent names (it is
 * evaluated by each child step, when it may run). */
static bool mapped_list(xctx *x, const rz__step *s, cJSON *each)
{
    char *ptr = rz__asprintf("%s/for_each", s->ptr);
    if (!ptr)
        return !(x->oom = true);
    scope parent = {x, NULL, ptr, false, false};
    bool ok = rewrite_tree(&parent, each, false);
    free(ptr);
    return ok;
}

/* Each child step renamed and rewired into `steps`; the child's
 * connections into `conns`. */
static bool inline_kid(xctx *x, kid *k, cJSON *sstep, cJSON *steps, cJSON *conns)
{
    const rz__step *s = &x->f->steps[k->step];
    if (kid_ready(x, k) != RZ_OK || !map_needs(x, sstep))
        return false;
    char *wptr = rz__asprintf("%s/when", s->ptr);
    if (!wptr)
        return !(x->oom = true);
    scope parent = {x, NULL, wptr, false, false};
    cJSON *w = cJSON_GetObjectItemCaseSensitive(sstep, "when");
    char why[300] = "";
    char *outer = NULL;
    bool wok = !cJSON_IsString(w) || rewrite_tree(&parent, w, true);
    free(wptr);
    if (!wok)
        return false;   /* reported, or x->oom */
    if (cJSON_IsString(w) && !(outer = text_expr(w->valuestring, true, why, sizeof why)))
        return why[0] ? (xdiag(x, s->ptr, "/when", "%s", why), false) : !(x->oom = true);
    const cJSON *outer_needs = cJSON_GetObjectItemCaseSensitive(sstep, "needs");
    cJSON *each = k->each ? cJSON_GetObjectItemCaseSensitive(sstep, "for_each") : NULL;
    if (each && !mapped_list(x, s, each)) {
        free(outer);
        return false;
    }
    const cJSON *maxp = cJSON_GetObjectItemCaseSensitive(sstep, "max_parallel");
    cJSON *tree = rz__flow_flux_tree(k->flow);
    cJSON *csteps = cJSON_GetObjectItemCaseSensitive(tree, "steps");
    scope child = {x, k, s->ptr, false, false};
    bool ok = tree != NULL;
    for (cJSON *c = csteps ? csteps->child : NULL, *next; ok && c; c = next) {
        next = c->next;
        char *id = rz__asprintf("%s-%s", s->id, c->string);
        if (!id) {
            ok = !(x->oom = true);
            break;
        }
        if (strlen(id) > STEP_ID_MAX || rz_flow_step_find(x->f, id) != RZ_NPOS ||
            cJSON_GetObjectItemCaseSensitive(steps, id)) {
            xdiag(x, s->ptr, NULL, "step '%s' of sub-flow %s becomes '%s', which is %s",
                  c->string, s->subflow, id, strlen(id) > STEP_ID_MAX
                  ? "longer than 64 characters: shorten the ids" : "taken already");
            free(id);
            ok = false;
            break;
        }
        ok = rename_needs(x, c, s->id, outer_needs);
        ok = ok && fix_step(&child, c) && join_when(x, c, outer) && mark_group(x, c, s->id);
        /* Every child step maps the step's list: element i of each is
         * element i's run of the child. */
        if (ok && each)
            ok = put_key(c, "for_each", cJSON_Duplicate(each, true)) &&
                 (!maxp || put_key(c, "max_parallel", cJSON_Duplicate(maxp, true)));
        if (!ok && !x->errors)
            x->oom = true;
        if (ok) {
            cJSON_DetachItemViaPointer(csteps, c);
            ok = cJSON_AddItemToObject(steps, id, c) || !(x->oom = true);
            if (!ok)
                cJSON_Delete(c);
        }
        free(id);
    }
    if (ok)
        ok = each ? conns_as_inputs(x, s->id, tree, steps)
                  : inline_conns(x, s->id, tree, conns);
    free(outer);
    cJSON_Delete(tree);
    return ok;
}

/* A sub-flow step takes no connections: its ports are the child's inputs
 * and outputs, wired through `inputs` and ${{ }}. */
static void check_conns(xctx *x)
{
    for (size_t i = 0; i < x->f->n_conns; i++) {
        const rz__conn *c = &x->f->conns[i];
        const char *end = kid_named(x, c->src_node ? c->src_node : "") ? c->src_node
                        : kid_named(x, c->dst_node ? c->dst_node : "") ? c->dst_node : NULL;
        if (end)
            xdiag(x, c->ptr, NULL, "step '%s' runs a sub-flow: it takes no connections "
                  "(give its inputs as `inputs`, read its outputs with ${{ }})", end);
    }
}

static cJSON *build_doc(xctx *x)
{
    cJSON *doc = rz__flow_flux_tree(x->f);
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
    cJSON *out = cJSON_CreateObject();
    cJSON *conns = cJSON_GetObjectItemCaseSensitive(doc, "connections");
    if (!conns && doc)
        conns = cJSON_AddArrayToObject(doc, "connections");
    if (!doc || !steps || !out || !conns) {
        x->oom = true;
        cJSON_Delete(out);
        cJSON_Delete(doc);
        return NULL;
    }
    /* Every step is seen, so that every problem is reported at once. */
    bool ok = true;
    for (cJSON *c = steps->child, *next; !x->oom && c; c = next) {
        next = c->next;
        size_t i = rz_flow_step_find(x->f, c->string);
        kid *k = i != RZ_NPOS ? kid_named(x, c->string) : NULL;
        scope sc = {x, NULL, i != RZ_NPOS ? x->f->steps[i].ptr : "", false, false};
        if (k) {
            ok = inline_kid(x, k, c, out, conns) && ok;
        } else if (map_needs(x, c) && fix_step(&sc, c)) {
            cJSON_DetachItemViaPointer(steps, c);
            if (!cJSON_AddItemToObject(out, c->string, c)) {
                cJSON_Delete(c);
                x->oom = true;
            }
        } else {
            ok = false;
        }
    }
    if (!put_key(doc, "steps", out))
        x->oom = true;
    scope top = {x, NULL, "/on_exit", false, false};
    cJSON *ex = cJSON_GetObjectItemCaseSensitive(doc, "on_exit");
    if (ex && !x->oom)
        ok = fix_step(&top, ex) && ok;
    top.ptr = "/outputs";
    cJSON *outs = cJSON_GetObjectItemCaseSensitive(doc, "outputs");
    if (outs && !x->oom)
        ok = rewrite_tree(&top, outs, false) && ok;
    if (cJSON_GetArraySize(conns) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "connections");
    if (!ok || x->oom || x->errors) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* Step i is expanded here (a named one may be kept for the orchestrator). */
static bool expands(const rz_flow_expand_opts *o, const rz__step *s)
{
    return s->subflow && !(o->keep_named && is_named(s->subflow));
}

static int expand_flow(rz_flow **io, const rz_registry *reg, const rz_flow_expand_opts *o,
                       rz_diags *d, const chain *ch, size_t *budget)
{
    rz_flow *f = *io;
    int rc = rz__flow_validate(f, reg, d, true);
    size_t n = 0;
    for (size_t i = 0; i < f->n_steps; i++)
        n += expands(o, &f->steps[i]);
    if (rc != RZ_OK || n == 0)
        return rc;
    xctx x = {.f = f, .reg = reg, .o = o, .d = d, .ch = ch, .budget = budget,
              .kids = rz__calloc(n, sizeof(kid))};
    if (!x.kids)
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n_steps && !x.oom; i++)
        if (expands(o, &f->steps[i]))
            load_kid(&x, i);
    if (!x.oom && !x.errors)
        check_conns(&x);
    cJSON *doc = !x.oom && !x.errors ? build_doc(&x) : NULL;
    char *text = doc && rz__json_raw_numbers(doc) ? cJSON_PrintUnformatted(doc) : NULL;
    if (doc && !text)
        x.oom = true;
    rz_flow *out = NULL;
    if (text) {
        rc = rz_flow_parse(&out, text, strlen(text), RZ_FORMAT_JSON, rz_flow_file(f), d);
        if (rc == RZ_OK)
            rc = rz__flow_validate(out, reg, d, o->keep_named != 0);
    } else {
        rc = x.oom ? rz__error(RZ_ENOMEM, "out of memory expanding sub-flows")
                   : rz__error(RZ_EINVALID, "%s: sub-flows could not be expanded (see "
                               "the diagnostics)", rz_flow_file(f));
    }
    free(text);
    cJSON_Delete(doc);
    for (size_t i = 0; i < x.n_kids; i++) {
        rz_flow_free(x.kids[i].flow);
        cJSON_Delete(x.kids[i].in_exprs);
        cJSON_Delete(x.kids[i].outs);
        cJSON_Delete(x.kids[i].finals);
    }
    free(x.kids);
    if (rc != RZ_OK) {
        rz_flow_free(out);
        return rc;
    }
    rz_flow_free(f);
    *io = out;
    return RZ_OK;
}

int rz_flow_expand_with(rz_flow **flow, const rz_registry *reg,
                        const rz_flow_expand_opts *opts, rz_diags *diags)
{
    static const rz_flow_expand_opts defaults = RZ_FLOW_EXPAND_OPTS_INIT;
    if (!flow || !*flow)
        return rz__error(RZ_EINVAL, "rz_flow_expand: NULL flow");
    if (opts && (opts->version < 1 || opts->version > RZ_FLOW_EXPAND_OPTS_VERSION))
        return rz__error(RZ_EINVAL, "rz_flow_expand_opts version %d is not known "
                         "(this library knows 1 to %d)", opts->version,
                         RZ_FLOW_EXPAND_OPTS_VERSION);
    char canon[PATH_MAX];
    const char *file = rz_flow_file(*flow);
    chain top = {realpath(file, canon) ? canon : file, file, NULL, 0, false};
    size_t budget = SUBFLOW_BUDGET;
    return expand_flow(flow, reg, opts ? opts : &defaults, diags, &top, &budget);
}

int rz_flow_expand(rz_flow **flow, const rz_registry *reg, rz_diags *diags)
{
    return rz_flow_expand_with(flow, reg, NULL, diags);
}
