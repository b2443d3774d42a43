/* Expressions: ${{ ... }} templates and `when` conditions.
 *
 * A text is split into parts (plain text and ${{ expr }}); each expr is
 * parsed by recursive descent into a node array. Precedence, lowest first:
 * ||, &&, == !=, < <= > >=, unary !, then literals, references and
 * parentheses. Nesting is capped so hostile input cannot exhaust the stack. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/loader.h"

#define EXPR_MAX_NESTING 64
/* Operator chains (a == b == c ...) deepen the tree without parentheses;
 * evaluation recurses on the tree, so its height is capped too. */
#define EXPR_MAX_HEIGHT 256

typedef enum nkind {
    N_LIT, N_REF, N_NOT, N_AND, N_OR, N_EQ, N_NE, N_LT, N_LE, N_GT, N_GE
} nkind;

typedef struct node {
    nkind kind;
    size_t a, b;        /* operands (node indices) */
    cJSON *lit;         /* N_LIT */
    size_t ref;         /* N_REF: index into refs */
    char **keys;        /* N_REF: .key path after the port / input name */
    size_t n_keys;
    unsigned height;    /* 1 for leaves */
} node;

typedef struct part {
    const char *text;   /* plain text (NULL for an expression) */
    size_t len;
    size_t root;        /* expression root node */
} part;

struct rz__expr {
    rz__arena arena;
    char *text;
    node *nodes;
    size_t n_nodes, cap_nodes;
    rz__ref *refs;
    size_t n_refs, cap_refs;
    part *parts;
    size_t n_parts, cap_parts;
    bool literal;       /* no ${{ }} at all: the text itself */
    bool whole;         /* one expression and nothing else: typed value */
};

typedef struct parser {
    rz__expr *e;
    const char *s;
    size_t i, n;
    unsigned depth;
    const char *msg;    /* first error */
    size_t msg_off;
    char msgbuf[160];
} parser;

/* ---- building ---- */

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    void *q = rz__grow(*p, cap, need, size, 8);
    if (!q)
        return false;
    *p = q;
    return true;
}

static bool fail(parser *p, size_t off, const char *msg)
{
    if (!p->msg) {
        p->msg = msg;
        p->msg_off = off;
    }
    return false;
}

static bool new_node(parser *p, nkind k, size_t *out)
{
    rz__expr *e = p->e;
    if (!grow((void **)&e->nodes, &e->cap_nodes, e->n_nodes + 1, sizeof *e->nodes))
        return fail(p, p->i, "out of memory");
    e->nodes[e->n_nodes] = (node){.kind = k, .height = 1};
    *out = e->n_nodes++;
    return true;
}

/* ---- lexing helpers ---- */

static void ws(parser *p)
{
    while (p->i < p->n && strchr(" \t\r\n", p->s[p->i]) && p->s[p->i])
        p->i++;
}

static bool at(parser *p, const char *tok)
{
    size_t n = strlen(tok);
    return p->i + n <= p->n && memcmp(p->s + p->i, tok, n) == 0;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A name segment ([A-Za-z0-9_-]+) copied into the arena. */
static char *segment(parser *p, const char *what)
{
    size_t start = p->i;
    while (p->i < p->n && is_name_char(p->s[p->i]))
        p->i++;
    if (p->i == start) {
        snprintf(p->msgbuf, sizeof p->msgbuf, "expected %s", what);
        fail(p, start, p->msgbuf);
        return NULL;
    }
    char *s = rz__arena_strndup(&p->e->arena, p->s + start, p->i - start);
    if (!s)
        fail(p, start, "out of memory");
    return s;
}

static bool expect_dot(parser *p, const char *after)
{
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        return true;
    }
    snprintf(p->msgbuf, sizeof p->msgbuf, "expected '.' after '%s'", after);
    return fail(p, p->i, p->msgbuf);
}

/* ---- grammar ---- */

static bool parse_or(parser *p, size_t *out);

static bool parse_keys(parser *p, size_t nid)
{
    while (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        char *k = segment(p, "a key after '.'");
        if (!k)
            return false;
        node *nd = &p->e->nodes[nid];
        char **keys = rz__arena_alloc(&p->e->arena, (nd->n_keys + 1) * sizeof *keys);
        if (!keys)
            return fail(p, p->i, "out of memory");
        if (nd->n_keys)
            memcpy(keys, nd->keys, nd->n_keys * sizeof *keys);
        keys[nd->n_keys++] = k;
        nd->keys = keys;
    }
    return true;
}

static bool parse_ref(parser *p, rz__ref_kind kind, size_t start, size_t *out)
{
    rz__expr *e = p->e;
    rz__ref r = {.kind = kind, .offset = (uint32_t)start};
    if (!expect_dot(p, kind == RZ_REF_STEP ? "steps" : "inputs"))
        return false;
    if (!(r.name = segment(p, kind == RZ_REF_STEP ? "a step id" : "an input name")))
        return false;
    if (kind == RZ_REF_STEP) {
        if (!expect_dot(p, r.name))
            return false;
        size_t o = p->i;
        char *w = segment(p, "'outputs'");
        if (!w)
            return false;
        if (strcmp(w, "outputs") != 0)
            return fail(p, o, "expected 'outputs' (steps.<id>.outputs.<port>)");
        if (!expect_dot(p, "outputs") || !(r.port = segment(p, "an output port")))
            return false;
    }
    if (!grow((void **)&e->refs, &e->cap_refs, e->n_refs + 1, sizeof *e->refs))
        return fail(p, start, "out of memory");
    size_t nid;
    if (!new_node(p, N_REF, &nid))
        return false;
    e->refs[e->n_refs] = r;
    e->nodes[nid].ref = e->n_refs++;
    *out = nid;
    return parse_keys(p, nid);
}

static bool literal(parser *p, cJSON *v, size_t start, size_t *out)
{
    if (!v)
        return fail(p, start, "out of memory");
    if (!new_node(p, N_LIT, out)) {
        cJSON_Delete(v);
        return false;
    }
    p->e->nodes[*out].lit = v;
    return true;
}

static bool parse_string(parser *p, size_t *out)
{
    size_t start = p->i;
    char q = p->s[p->i++];
    rz__buf b = {0};
    while (p->i < p->n && p->s[p->i] != q) {
        char c = p->s[p->i++];
        if (c == '\\' && p->i < p->n) {
            c = p->s[p->i++];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
        rz__buf_append(&b, &c, 1);
    }
    if (p->i >= p->n) {
        rz__buf_free(&b);
        return fail(p, start, "unterminated string");
    }
    p->i++;
    char *s = rz__buf_take(&b);
    bool ok = s && literal(p, cJSON_CreateString(s), start, out);
    if (!s)
        fail(p, start, "out of memory");
    free(s);
    return ok;
}

static bool parse_number(parser *p, size_t *out)
{
    size_t start = p->i;
    if (p->s[p->i] == '-')
        p->i++;
    size_t d0 = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    if (p->i == d0)
        return fail(p, start, "expected a number after '-'");
    if (p->i + 1 < p->n && p->s[p->i] == '.' && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        p->i++;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t save = p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        size_t e0 = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == e0)
            p->i = save;
    }
    char buf[64];
    size_t n = p->i - start;
    if (n >= sizeof buf)
        return fail(p, start, "number too long");
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    return literal(p, cJSON_CreateNumber(strtod(buf, NULL)), start, out);
}

static bool parse_primary(parser *p, size_t *out)
{
    ws(p);
    size_t start = p->i;
    char c = p->i < p->n ? p->s[p->i] : '\0';
    if (c == '(') {
        p->i++;
        if (!parse_or(p, out))
            return false;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ')') {
            p->i++;
            return true;
        }
        return fail(p, p->i, "expected ')'");
    }
    if (c == '\'' || c == '"')
        return parse_string(p, out);
    if ((c >= '0' && c <= '9') || c == '-')
        return parse_number(p, out);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
        while (p->i < p->n && (is_name_char(p->s[p->i])))
            p->i++;
        size_t n = p->i - start;
        const char *w = p->s + start;
        if (n == 4 && memcmp(w, "true", 4) == 0)
            return literal(p, cJSON_CreateTrue(), start, out);
        if (n == 5 && memcmp(w, "false", 5) == 0)
            return literal(p, cJSON_CreateFalse(), start, out);
        if (n == 4 && memcmp(w, "null", 4) == 0)
            return literal(p, cJSON_CreateNull(), start, out);
        if (n == 5 && memcmp(w, "steps", 5) == 0)
            return parse_ref(p, RZ_REF_STEP, start, out);
        if (n == 6 && memcmp(w, "inputs", 6) == 0)
            return parse_ref(p, RZ_REF_INPUT, start, out);
        snprintf(p->msgbuf, sizeof p->msgbuf,
                 "unknown name '%.*s' (expected steps.<id>.outputs.<port>, inputs.<name>, "
                 "true, false or null)", (int)(n > 40 ? 40 : n), w);
        return fail(p, start, p->msgbuf);
    }
    if (at(p, "}}") || p->i >= p->n)
        return fail(p, start, "expected a value");
    snprintf(p->msgbuf, sizeof p->msgbuf, "unexpected '%c'", c);
    return fail(p, start, p->msgbuf);
}

static bool parse_unary(parser *p, size_t *out)
{
    ws(p);
    if (p->i < p->n && p->s[p->i] == '!' && !at(p, "!=")) {
        size_t start = p->i++;
        if (++p->depth > EXPR_MAX_NESTING)
            return fail(p, start, "expression nested too deeply");
        size_t a;
        bool ok = parse_unary(p, &a) && new_node(p, N_NOT, out);
        p->depth--;
        if (ok) {
            p->e->nodes[*out].a = a;
            p->e->nodes[*out].height = p->e->nodes[a].height + 1;
        }
        return ok;
    }
    if (p->i < p->n && p->s[p->i] == '(') {
        if (++p->depth > EXPR_MAX_NESTING)
            return fail(p, p->i, "expression nested too deeply");
        bool ok = parse_primary(p, out);
        p->depth--;
        return ok;
    }
    return parse_primary(p, out);
}

static bool binary(parser *p, nkind k, size_t a, size_t b, size_t *out)
{
    unsigned ha = p->e->nodes[a].height, hb = p->e->nodes[b].height;
    unsigned h = (ha > hb ? ha : hb) + 1;
    if (h > EXPR_MAX_HEIGHT)
        return fail(p, p->i, "expression too complex");
    if (!new_node(p, k, out))
        return false;
    p->e->nodes[*out].a = a;
    p->e->nodes[*out].b = b;
    p->e->nodes[*out].height = h;
    return true;
}

static bool parse_rel(parser *p, size_t *out)
{
    if (!parse_unary(p, out))
        return false;
    for (;;) {
        ws(p);
        nkind k;
        size_t len = 2;
        if (at(p, "<="))
            k = N_LE;
        else if (at(p, ">="))
            k = N_GE;
        else if (at(p, "<"))
            k = N_LT, len = 1;
        else if (at(p, ">"))
            k = N_GT, len = 1;
        else
            return true;
        p->i += len;
        size_t b;
        if (!parse_unary(p, &b) || !binary(p, k, *out, b, out))
            return false;
    }
}

static bool parse_eq(parser *p, size_t *out)
{
    if (!parse_rel(p, out))
        return false;
    for (;;) {
        ws(p);
        nkind k;
        if (at(p, "=="))
            k = N_EQ;
        else if (at(p, "!="))
            k = N_NE;
        else if (at(p, "=") )
            return fail(p, p->i, "'=' is not an operator (use '==')");
        else
            return true;
        p->i += 2;
        size_t b;
        if (!parse_rel(p, &b) || !binary(p, k, *out, b, out))
            return false;
    }
}

static bool parse_and(parser *p, size_t *out)
{
    if (!parse_eq(p, out))
        return false;
    for (;;) {
        ws(p);
        if (!at(p, "&&"))
            return at(p, "&") ? fail(p, p->i, "'&' is not an operator (use '&&')") : true;
        p->i += 2;
        size_t b;
        if (!parse_eq(p, &b) || !binary(p, N_AND, *out, b, out))
            return false;
    }
}

static bool parse_or(parser *p, size_t *out)
{
    if (!parse_and(p, out))
        return false;
    for (;;) {
        ws(p);
        if (!at(p, "||"))
            return at(p, "|") ? fail(p, p->i, "'|' is not an operator (use '||')") : true;
        p->i += 2;
        size_t b;
        if (!parse_and(p, &b) || !binary(p, N_OR, *out, b, out))
            return false;
    }
}

static bool add_part(parser *p, const char *text, size_t len, size_t root)
{
    rz__expr *e = p->e;
    if (!grow((void **)&e->parts, &e->cap_parts, e->n_parts + 1, sizeof *e->parts))
        return fail(p, p->i, "out of memory");
    e->parts[e->n_parts++] = (part){text, len, root};
    return true;
}

static bool trailing(parser *p)
{
    ws(p);
    if (p->i >= p->n)
        return true;
    snprintf(p->msgbuf, sizeof p->msgbuf, "unexpected '%c' after the expression", p->s[p->i]);
    return fail(p, p->i, p->msgbuf);
}

/* Text with ${{ }} parts. */
static bool parse_template(parser *p)
{
    size_t n = p->n, text0 = 0;
    for (;;) {
        const char *open = NULL;
        for (size_t j = text0; j + 3 <= n; j++)
            if (p->s[j] == '$' && p->s[j + 1] == '{' && p->s[j + 2] == '{') {
                open = p->s + j;
                break;
            }
        size_t stop = open ? (size_t)(open - p->s) : n;
        if (stop > text0 && !add_part(p, p->s + text0, stop - text0, 0))
            return false;
        if (!open)
            return true;
        p->i = stop + 3;
        size_t root;
        if (!parse_or(p, &root))
            return false;
        ws(p);
        if (!at(p, "}}")) {
            if (p->i >= p->n)
                return fail(p, stop, "unterminated '${{' (missing '}}')");
            snprintf(p->msgbuf, sizeof p->msgbuf, "expected '}}', found '%c'", p->s[p->i]);
            return fail(p, p->i, p->msgbuf);
        }
        p->i += 2;
        if (!add_part(p, NULL, 0, root))
            return false;
        text0 = p->i;
    }
}

int rz__expr_parse(rz__expr **out, const char *text, bool is_condition,
                   char *err, size_t errlen, size_t *err_off)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (err_off)
        *err_off = 0;
    if (!text)
        return rz__error(RZ_EINVAL, "rz__expr_parse: NULL text");
    rz__expr *e = rz__calloc(1, sizeof *e);
    if (!e || !(e->text = rz__strdup(text))) {
        free(e);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    parser p = {.e = e, .s = e->text, .n = strlen(text)};
    bool templ = strstr(text, "${{") != NULL;
    bool ok;
    if (templ || !is_condition) {
        ok = parse_template(&p);
        e->literal = !templ;
        e->whole = e->n_parts == 1 && !e->parts[0].text;
    } else {
        size_t root;
        ok = parse_or(&p, &root) && trailing(&p) && add_part(&p, NULL, 0, root);
        e->whole = ok;
    }
    if (!ok) {
        if (err && errlen)
            snprintf(err, errlen, "%s", p.msg ? p.msg : "malformed expression");
        if (err_off)
            *err_off = p.msg_off;
        int rc = p.msg && strcmp(p.msg, "out of memory") == 0
                     ? rz__error(RZ_ENOMEM, "out of memory")
                     : rz__error(RZ_EEXPR, "%s at offset %zu",
                                 p.msg ? p.msg : "malformed expression", p.msg_off);
        rz__expr_free(e);
        return rc;
    }
    *out = e;
    return RZ_OK;
}

void rz__expr_free(rz__expr *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_nodes; i++)
        cJSON_Delete(e->nodes[i].lit);
    free(e->nodes);
    free(e->refs);
    free(e->parts);
    free(e->text);
    rz__arena_free(&e->arena);
    free(e);
}

bool rz__expr_is_literal(const rz__expr *e)
{
    return e && e->literal;
}

size_t rz__expr_ref_count(const rz__expr *e)
{
    return e ? e->n_refs : 0;
}

const rz__ref *rz__expr_ref(const rz__expr *e, size_t i)
{
    return e && i < e->n_refs ? &e->refs[i] : NULL;
}

/* ---- evaluation ---- */

bool rz__json_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0 && !isnan(v->valuedouble);
    if (cJSON_IsString(v))
        return v->valuestring && v->valuestring[0];
    return true;
}

typedef struct evalctx {
    const rz__expr *e;
    rz__resolve_fn resolve;
    void *ud;
} evalctx;

static const cJSON *walk_keys(const cJSON *v, char **keys, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        if (cJSON_IsObject(v)) {
            v = cJSON_GetObjectItemCaseSensitive(v, keys[i]);
        } else if (cJSON_IsArray(v) && keys[i][0] >= '0' && keys[i][0] <= '9' &&
                   strspn(keys[i], "0123456789") == strlen(keys[i]) && strlen(keys[i]) < 10) {
            v = cJSON_GetArrayItem(v, atoi(keys[i]));
        } else {
            v = NULL;
        }
    }
    return v;
}

/* Type classes for comparison: bools are one class. */
static int klass(const cJSON *v)
{
    if (cJSON_IsBool(v))
        return cJSON_True;
    return v->type & 0xff;
}

static bool compare(nkind k, const cJSON *a, const cJSON *b)
{
    bool same = klass(a) == klass(b);
    if (same && cJSON_IsNumber(a)) {
        double x = a->valuedouble, y = b->valuedouble;
        switch (k) {
        case N_EQ: return x == y;
        case N_NE: return x != y;
        case N_LT: return x < y;
        case N_LE: return x <= y;
        case N_GT: return x > y;
        default: return x >= y;
        }
    }
    if (same && cJSON_IsString(a)) {
        int c = strcmp(a->valuestring, b->valuestring);
        switch (k) {
        case N_EQ: return c == 0;
        case N_NE: return c != 0;
        case N_LT: return c < 0;
        case N_LE: return c <= 0;
        case N_GT: return c > 0;
        default: return c >= 0;
        }
    }
    bool eq = same && cJSON_Compare(a, b, true);
    if (k == N_EQ)
        return eq;
    if (k == N_NE)
        return !eq;
    return false;   /* no order across types or among containers */
}

static cJSON *eval_node(const evalctx *cx, size_t id)
{
    const node *nd = &cx->e->nodes[id];
    switch (nd->kind) {
    case N_LIT:
        return cJSON_Duplicate(nd->lit, true);
    case N_REF: {
        const cJSON *v = cx->resolve ? cx->resolve(&cx->e->refs[nd->ref], cx->ud) : NULL;
        v = walk_keys(v, nd->keys, nd->n_keys);
        return v ? cJSON_Duplicate(v, true) : cJSON_CreateNull();
    }
    case N_NOT: {
        cJSON *a = eval_node(cx, nd->a);
        if (!a)
            return NULL;
        bool t = rz__json_truthy(a);
        cJSON_Delete(a);
        return cJSON_CreateBool(!t);
    }
    case N_AND:
    case N_OR: {
        cJSON *a = eval_node(cx, nd->a);
        if (!a)
            return NULL;
        bool t = rz__json_truthy(a);
        cJSON_Delete(a);
        if (t == (nd->kind == N_OR))
            return cJSON_CreateBool(t);
        cJSON *b = eval_node(cx, nd->b);
        if (!b)
            return NULL;
        t = rz__json_truthy(b);
        cJSON_Delete(b);
        return cJSON_CreateBool(t);
    }
    default: {
        cJSON *a = eval_node(cx, nd->a);
        cJSON *b = a ? eval_node(cx, nd->b) : NULL;
        cJSON *r = b ? cJSON_CreateBool(compare(nd->kind, a, b)) : NULL;
        cJSON_Delete(a);
        cJSON_Delete(b);
        return r;
    }
    }
}

/* How a value reads inside a template string. */
static void stringify(rz__buf *b, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        rz__buf_puts(b, v->valuestring);
    } else if (cJSON_IsNull(v)) {
        /* absent values read as nothing */
    } else if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
               fabs(v->valuedouble) < 1e15) {
        rz__buf_printf(b, "%.0f", v->valuedouble);
    } else {
        char *s = cJSON_PrintUnformatted(v);
        if (s)
            rz__buf_puts(b, s);
        else
            b->failed = true;
        cJSON_free(s);
    }
}

int rz__expr_eval(const rz__expr *e, rz__resolve_fn resolve, void *ud, cJSON **out)
{
    *out = NULL;
    if (!e)
        return rz__error(RZ_EINVAL, "rz__expr_eval: NULL expression");
    evalctx cx = {e, resolve, ud};
    if (e->whole) {
        *out = eval_node(&cx, e->parts[0].root);
        return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    }
    rz__buf b = {0};
    for (size_t i = 0; i < e->n_parts; i++) {
        const part *pt = &e->parts[i];
        if (pt->text) {
            rz__buf_append(&b, pt->text, pt->len);
            continue;
        }
        cJSON *v = eval_node(&cx, pt->root);
        if (!v)
            b.failed = true;
        else
            stringify(&b, v);
        cJSON_Delete(v);
    }
    char *s = rz__buf_take(&b);
    *out = s ? cJSON_CreateString(s) : NULL;
    free(s);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}
