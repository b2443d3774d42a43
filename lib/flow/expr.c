/* Expressions: ${{ ... }} templates and `when` conditions.
 *
 * A text is split into parts (plain text and ${{ expr }}); each expr is
 * parsed by recursive descent into a node array. Precedence, lowest first:
 * ?:, ||, &&, == !=, < <= > >=, + -, * / %, unary !, then postfix [i] and
 * .key, then literals, references, calls and parentheses. Nesting, tree
 * height and size are capped (RZ_EXPR_MAX_* in model.h) so hostile input
 * cannot exhaust the stack; every string an evaluation builds is capped, and
 * so is their sum, so a short expression cannot allocate without bound. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "flow/loader.h"

#define EXPR_MAX_NESTING RZ_EXPR_MAX_NESTING
#define EXPR_MAX_HEIGHT RZ_EXPR_MAX_HEIGHT
/* Integers below this magnitude are exact in a double. */
#define EXACT_LIMIT 9007199254740992.0

typedef enum nkind {
    N_LIT, N_REF, N_NOT, N_AND, N_OR, N_EQ, N_NE, N_LT, N_LE, N_GT, N_GE,
    N_ADD, N_SUB, N_MUL, N_DIV, N_MOD, N_INDEX, N_COND, N_CALL
} nkind;

typedef enum fnid {
    F_LENGTH, F_CONTAINS, F_STARTSWITH, F_ENDSWITH, F_FORMAT, F_JOIN,
    F_TOJSON, F_FROMJSON, F_DEFAULT
} fnid;

static const struct {
    const char *name;
    unsigned min, max;
} fns[] = {
    [F_LENGTH] = {"length", 1, 1},         [F_CONTAINS] = {"contains", 2, 2},
    [F_STARTSWITH] = {"startsWith", 2, 2}, [F_ENDSWITH] = {"endsWith", 2, 2},
    [F_FORMAT] = {"format", 1, RZ_EXPR_MAX_ARGS},
    [F_JOIN] = {"join", 1, 2},             [F_TOJSON] = {"toJSON", 1, 1},
    [F_FROMJSON] = {"fromJSON", 1, 1},     [F_DEFAULT] = {"default", 2, 2},
};

typedef struct node {
    nkind kind;
    size_t a, b, c;     /* operands (node indices); c: the else of ?: */
    cJSON *lit;         /* N_LIT */
    size_t ref;         /* N_REF: index into refs */
    char **keys;        /* N_REF: .key path after the port / input name */
    size_t n_keys;
    size_t *args;       /* N_CALL */
    size_t n_args;
    fnid fn;
    uint32_t off;       /* byte offset of the operator / term, for errors */
    unsigned height;    /* 1 for leaves */
} node;

typedef struct part {
    const char *text;   /* plain text (NULL for an expression) */
    size_t len;
    size_t root;        /* expression root node */
    size_t src, src_len;   /* an expression's source in the text */
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
    if (e->n_nodes >= RZ_EXPR_MAX_NODES)
        return fail(p, p->i, "expression too large (more than 4096 terms)");
    if (!grow((void **)&e->nodes, &e->cap_nodes, e->n_nodes + 1, sizeof *e->nodes))
        return fail(p, p->i, "out of memory");
    e->nodes[e->n_nodes] = (node){.kind = k, .height = 1, .off = (uint32_t)p->i};
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

static bool parse_expr(parser *p, size_t *out);

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

/* A reference node for `r`, then its .key chain. */
static bool push_ref(parser *p, const rz__ref *r, size_t start, size_t *out)
{
    rz__expr *e = p->e;
    if (!r->name || !grow((void **)&e->refs, &e->cap_refs, e->n_refs + 1, sizeof *e->refs))
        return fail(p, start, "out of memory");
    size_t nid;
    if (!new_node(p, N_REF, &nid))
        return false;
    e->nodes[nid].off = (uint32_t)start;
    e->refs[e->n_refs] = *r;
    e->nodes[nid].ref = e->n_refs++;
    *out = nid;
    return parse_keys(p, nid);
}

static bool parse_ref(parser *p, rz__ref_kind kind, size_t start, size_t *out)
{
    rz__ref r = {.kind = kind, .offset = (uint32_t)start};
    static const char *const heads[] = {
        [RZ_REF_STEP] = "steps", [RZ_REF_INPUT] = "inputs", [RZ_REF_FLOW] = "flow",
        [RZ_REF_EACH] = "each", [RZ_REF_EVENT] = "event",
    };
    static const char *const what[] = {
        [RZ_REF_STEP] = "a step id", [RZ_REF_INPUT] = "an input name",
        [RZ_REF_FLOW] = "'status' or 'failed_steps'",
        [RZ_REF_EACH] = "'value', 'index' or 'indices'",
        [RZ_REF_EVENT] = "'id', 'name' or 'data'",
    };
    if (!expect_dot(p, heads[kind]))
        return false;
    size_t name_at = p->i;
    if (!(r.name = segment(p, what[kind])))
        return false;
    if (kind == RZ_REF_FLOW && strcmp(r.name, "status") != 0 &&
        strcmp(r.name, "failed_steps") != 0)
        return fail(p, name_at, "expected flow.status or flow.failed_steps");
    if (kind == RZ_REF_EACH && strcmp(r.name, "value") != 0 &&
        strcmp(r.name, "index") != 0 && strcmp(r.name, "indices") != 0)
        return fail(p, name_at, "expected each.value, each.index or each.indices");
    if (kind == RZ_REF_EVENT && strcmp(r.name, "id") != 0 &&
        strcmp(r.name, "name") != 0 && strcmp(r.name, "data") != 0)
        return fail(p, name_at, "expected event.id, event.name or event.data");
    if (kind == RZ_REF_STEP) {
        if (!expect_dot(p, r.name))
            return false;
        size_t o = p->i;
        char *w = segment(p, "'outputs'");
        if (!w)
            return false;
        static const char *const fields[] = {
            [RZ_FIELD_OUTPUTS] = "outputs", [RZ_FIELD_STATUS] = "status",
            [RZ_FIELD_ERROR] = "error", [RZ_FIELD_ATTEMPTS] = "attempts",
            [RZ_FIELD_DURATION_MS] = "duration_ms",
        };
        size_t f = 0;
        while (f < RZ_ARRAY_LEN(fields) && strcmp(w, fields[f]) != 0)
            f++;
        if (f == RZ_ARRAY_LEN(fields))
            return fail(p, o, "expected 'outputs' (steps.<id>.outputs.<port>) or "
                              "status, error, attempts, duration_ms");
        r.field = (rz__ref_field)f;
        if (r.field == RZ_FIELD_OUTPUTS &&
            (!expect_dot(p, "outputs") || !(r.port = segment(p, "an output port"))))
            return false;
    }
    return push_ref(p, &r, start, out);
}

/* `item` and `index` (the issue's spelling, the documented one) are exactly
 * `each.value` and `each.index`: the element a for_each step runs for. The
 * name keeps the spelling written, for diagnostics; the run reads both. */
static bool item_ref(parser *p, const char *w, size_t n, size_t start, size_t *out)
{
    rz__ref r = {.kind = RZ_REF_EACH, .offset = (uint32_t)start,
                 .name = rz__arena_strndup(&p->e->arena, w, n)};
    return push_ref(p, &r, start, out);
}

/* `trigger.body` is `inputs.trigger.body`: what started the run
 * (docs/triggers.md), as the flow input a trigger fills. */
static bool trigger_ref(parser *p, size_t start, size_t *out)
{
    rz__ref r = {.kind = RZ_REF_INPUT, .offset = (uint32_t)start,
                 .name = rz__arena_strndup(&p->e->arena, "trigger", 7)};
    return push_ref(p, &r, start, out);
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
    p->e->nodes[*out].off = (uint32_t)start;
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

static bool parse_call(parser *p, const char *w, size_t n, size_t start, size_t *out)
{
    size_t f = 0;
    while (f < RZ_ARRAY_LEN(fns) &&
           !(strlen(fns[f].name) == n && strncasecmp(fns[f].name, w, n) == 0))
        f++;
    if (f == RZ_ARRAY_LEN(fns)) {
        snprintf(p->msgbuf, sizeof p->msgbuf, "unknown function '%.*s' (known: length, "
                 "contains, startsWith, endsWith, format, join, toJSON, fromJSON, "
                 "default)", (int)(n > 40 ? 40 : n), w);
        return fail(p, start, p->msgbuf);
    }
    p->i++;   /* ( */
    size_t args[RZ_EXPR_MAX_ARGS], na = 0;
    unsigned h = 0;
    ws(p);
    if (p->i < p->n && p->s[p->i] == ')') {
        p->i++;
    } else {
        for (;;) {
            ws(p);
            if (na == RZ_EXPR_MAX_ARGS)
                return fail(p, p->i, "too many arguments (at most 16)");
            if (!parse_expr(p, &args[na]))
                return false;
            if (p->e->nodes[args[na]].height > h)
                h = p->e->nodes[args[na]].height;
            na++;
            ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == ')') {
                p->i++;
                break;
            }
            snprintf(p->msgbuf, sizeof p->msgbuf, "expected ',' or ')' in the "
                     "arguments of %s()", fns[f].name);
            return fail(p, p->i, p->msgbuf);
        }
    }
    if (na < fns[f].min || na > fns[f].max) {
        if (fns[f].min == fns[f].max)
            snprintf(p->msgbuf, sizeof p->msgbuf, "%s() takes %u argument%s, not %zu",
                     fns[f].name, fns[f].min, fns[f].min > 1 ? "s" : "", na);
        else
            snprintf(p->msgbuf, sizeof p->msgbuf, "%s() takes %u to %u arguments, "
                     "not %zu", fns[f].name, fns[f].min, fns[f].max, na);
        return fail(p, start, p->msgbuf);
    }
    if (h + 1 > EXPR_MAX_HEIGHT)
        return fail(p, start, "expression too complex");
    size_t *copy = rz__arena_alloc(&p->e->arena, (na ? na : 1) * sizeof *copy);
    if (!copy)
        return fail(p, start, "out of memory");
    memcpy(copy, args, na * sizeof *copy);
    if (!new_node(p, N_CALL, out))
        return false;
    node *nd = &p->e->nodes[*out];
    nd->fn = (fnid)f;
    nd->args = copy;
    nd->n_args = na;
    nd->off = (uint32_t)start;
    nd->height = h + 1;
    return true;
}

static bool parse_primary(parser *p, size_t *out)
{
    ws(p);
    size_t start = p->i;
    char c = p->i < p->n ? p->s[p->i] : '\0';
    if (c == '(') {
        p->i++;
        if (!parse_expr(p, out))
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
        if (p->i < p->n && p->s[p->i] == '(')
            return parse_call(p, w, n, start, out);
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
        if (n == 4 && memcmp(w, "flow", 4) == 0)
            return parse_ref(p, RZ_REF_FLOW, start, out);
        if (n == 7 && memcmp(w, "trigger", 7) == 0)
            return trigger_ref(p, start, out);
        if (n == 4 && memcmp(w, "each", 4) == 0)
            return parse_ref(p, RZ_REF_EACH, start, out);
        if (n == 5 && memcmp(w, "event", 5) == 0)
            return parse_ref(p, RZ_REF_EVENT, start, out);
        if ((n == 4 && memcmp(w, "item", 4) == 0) || (n == 5 && memcmp(w, "index", 5) == 0) ||
            (n == 7 && memcmp(w, "indices", 7) == 0))
            return item_ref(p, w, n, start, out);
        snprintf(p->msgbuf, sizeof p->msgbuf,
                 "unknown name '%.*s' (expected steps.<id>..., inputs.<name>, trigger..., "
                 "flow.status, item, index, indices, event..., true, false, null or a "
                 "function call)",
                 (int)(n > 40 ? 40 : n), w);
        return fail(p, start, p->msgbuf);
    }
    if (at(p, "}}") || p->i >= p->n)
        return fail(p, start, "expected a value");
    snprintf(p->msgbuf, sizeof p->msgbuf, "unexpected '%c'", c);
    return fail(p, start, p->msgbuf);
}

static bool binary(parser *p, nkind k, size_t a, size_t b, size_t off, size_t *out)
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
    p->e->nodes[*out].off = (uint32_t)off;
    return true;
}

/* A key literal for a.key after a value that is not a reference. */
static bool key_node(parser *p, size_t *out)
{
    size_t start = p->i;
    rz__expr *e = p->e;
    while (p->i < p->n && is_name_char(p->s[p->i]))
        p->i++;
    if (p->i == start)
        return fail(p, start, "expected a key after '.'");
    char *k = rz__arena_strndup(&e->arena, p->s + start, p->i - start);
    return k ? literal(p, cJSON_CreateString(k), start, out)
             : fail(p, start, "out of memory");
}

/* a[i] and a.key after a primary (no space before them). */
static bool parse_postfix(parser *p, size_t *out)
{
    if (!parse_primary(p, out))
        return false;
    for (;;) {
        size_t o = p->i, k;
        if (p->i < p->n && p->s[p->i] == '[') {
            p->i++;
            if (!parse_expr(p, &k))
                return false;
            ws(p);
            if (p->i >= p->n || p->s[p->i] != ']')
                return fail(p, p->i, "expected ']'");
            p->i++;
        } else if (p->i < p->n && p->s[p->i] == '.') {
            p->i++;
            if (!key_node(p, &k))
                return false;
        } else {
            return true;
        }
        if (!binary(p, N_INDEX, *out, k, o, out))
            return false;
    }
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
            p->e->nodes[*out].off = (uint32_t)start;
        }
        return ok;
    }
    return parse_postfix(p, out);
}

static bool parse_mul(parser *p, size_t *out)
{
    if (!parse_unary(p, out))
        return false;
    for (;;) {
        ws(p);
        char c = p->i < p->n ? p->s[p->i] : '\0';
        nkind k = c == '*' ? N_MUL : c == '/' ? N_DIV : c == '%' ? N_MOD : N_LIT;
        if (k == N_LIT)
            return true;
        size_t o = p->i++, b;
        if (!parse_unary(p, &b) || !binary(p, k, *out, b, o, out))
            return false;
    }
}

static bool parse_add(parser *p, size_t *out)
{
    if (!parse_mul(p, out))
        return false;
    for (;;) {
        ws(p);
        char c = p->i < p->n ? p->s[p->i] : '\0';
        if (c != '+' && c != '-')
            return true;
        size_t o = p->i++, b;
        if (!parse_mul(p, &b) || !binary(p, c == '+' ? N_ADD : N_SUB, *out, b, o, out))
            return false;
    }
}

static bool parse_rel(parser *p, size_t *out)
{
    if (!parse_add(p, out))
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
        size_t o = p->i, b;
        p->i += len;
        if (!parse_add(p, &b) || !binary(p, k, *out, b, o, out))
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
        size_t o = p->i, b;
        p->i += 2;
        if (!parse_rel(p, &b) || !binary(p, k, *out, b, o, out))
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
        size_t o = p->i, b;
        p->i += 2;
        if (!parse_eq(p, &b) || !binary(p, N_AND, *out, b, o, out))
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
        size_t o = p->i, b;
        p->i += 2;
        if (!parse_and(p, &b) || !binary(p, N_OR, *out, b, o, out))
            return false;
    }
}

/* c ? a : b (right-associative), the lowest level; every nested
 * expression (parentheses, arguments, indices) starts here. */
static bool parse_expr(parser *p, size_t *out)
{
    if (++p->depth > EXPR_MAX_NESTING)
        return fail(p, p->i, "expression nested too deeply");
    bool ok = parse_or(p, out);
    ws(p);
    if (ok && p->i < p->n && p->s[p->i] == '?') {
        size_t q = p->i++, a = 0, b = 0;
        ok = parse_expr(p, &a);
        if (ok) {
            ws(p);
            if (p->i < p->n && p->s[p->i] == ':') {
                p->i++;
                ok = parse_expr(p, &b);
            } else {
                ok = fail(p, p->i, "expected ':' (c ? a : b)");
            }
        }
        size_t c = *out;
        if (ok && binary(p, N_COND, a, b, q, out)) {
            node *nd = &p->e->nodes[*out];
            nd->c = b;
            nd->b = a;
            nd->a = c;
            unsigned hc = p->e->nodes[c].height + 1;
            if (hc > nd->height)
                nd->height = hc;
            if (nd->height > EXPR_MAX_HEIGHT)
                ok = fail(p, q, "expression too complex");
        } else {
            ok = false;
        }
    }
    p->depth--;
    return ok;
}

static bool add_part(parser *p, const char *text, size_t len, size_t root)
{
    rz__expr *e = p->e;
    if (!grow((void **)&e->parts, &e->cap_parts, e->n_parts + 1, sizeof *e->parts))
        return fail(p, p->i, "out of memory");
    e->parts[e->n_parts++] = (part){text, len, root, 0, 0};
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
        if (!parse_expr(p, &root))
            return false;
        size_t src_end = p->i;
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
        p->e->parts[p->e->n_parts - 1].src = stop + 3;
        p->e->parts[p->e->n_parts - 1].src_len = src_end - (stop + 3);
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
        ok = parse_expr(&p, &root) && trailing(&p) && add_part(&p, NULL, 0, root);
        e->whole = ok;
        if (ok)
            e->parts[0].src_len = p.n;
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

size_t rz__expr_part_count(const rz__expr *e)
{
    return e ? e->n_parts : 0;
}

bool rz__expr_part(const rz__expr *e, size_t i, size_t *start, size_t *len)
{
    const part *pt = &e->parts[i];
    *start = pt->text ? (size_t)(pt->text - e->text) : pt->src;
    *len = pt->text ? pt->len : pt->src_len;
    return !pt->text;
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
    size_t budget;      /* string bytes this evaluation may still build */
    const char *msg;    /* first error; NULL with a NULL result: out of memory */
    size_t off;
    char msgbuf[200];
} evalctx;

static cJSON *efail(evalctx *cx, size_t off, const char *fmt, ...) RZ_PRINTF(3, 4);

static cJSON *efail(evalctx *cx, size_t off, const char *fmt, ...)
{
    if (!cx->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cx->msgbuf, sizeof cx->msgbuf, fmt, ap);
        va_end(ap);
        cx->msg = cx->msgbuf;
        cx->off = off;
    }
    return NULL;
}

static const char *type_name(const cJSON *v)
{
    if (!v || cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

/* A string of `len` bytes is about to be built: within the caps? */
static bool room(evalctx *cx, size_t off, size_t len)
{
    if (len > RZ_EXPR_MAX_STRING) {
        efail(cx, off, "result longer than %u bytes", RZ_EXPR_MAX_STRING);
        return false;
    }
    if (len > cx->budget) {
        efail(cx, off, "expression builds more than %u bytes of strings",
              RZ_EXPR_BUDGET);
        return false;
    }
    return true;
}

/* Take a finished buffer as a string value, charging the budget. */
static cJSON *take_string(evalctx *cx, size_t off, rz__buf *b)
{
    if (!room(cx, off, b->len)) {
        rz__buf_free(b);
        return NULL;
    }
    cx->budget -= b->len;
    if (b->failed) {
        rz__buf_free(b);
        return NULL;
    }
    cJSON *r = cJSON_CreateString(b->data ? b->data : "");
    rz__buf_free(b);
    return r;
}

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

static bool exact_int(double x)
{
    return x == floor(x) && fabs(x) < EXACT_LIMIT;
}

/* How a value reads inside a template string (and in format and join). */
static void stringify(rz__buf *b, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        rz__buf_puts(b, v->valuestring);
    } else if (!v || cJSON_IsNull(v)) {
        /* absent values read as nothing */
    } else if (cJSON_IsNumber(v) && exact_int(v->valuedouble)) {
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

static cJSON *arith(evalctx *cx, const node *nd, const cJSON *a, const cJSON *b)
{
    static const char ops[] = {[N_ADD] = '+', [N_SUB] = '-', [N_MUL] = '*',
                               [N_DIV] = '/', [N_MOD] = '%'};
    char op = ops[nd->kind];
    if (nd->kind == N_ADD && cJSON_IsString(a) && cJSON_IsString(b)) {
        size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
        if (!room(cx, nd->off, la + lb))
            return NULL;
        rz__buf buf = {0};
        rz__buf_append(&buf, a->valuestring, la);
        rz__buf_append(&buf, b->valuestring, lb);
        return take_string(cx, nd->off, &buf);
    }
    if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b))
        return efail(cx, nd->off, "'%c' needs two numbers%s, not %s and %s", op,
                     nd->kind == N_ADD ? " or two strings" : "", type_name(a),
                     type_name(b));
    double x = a->valuedouble, y = b->valuedouble, r;
    bool ints = exact_int(x) && exact_int(y);
    if ((nd->kind == N_DIV || nd->kind == N_MOD) && y == 0)
        return efail(cx, nd->off, "division by zero");
    switch (nd->kind) {
    case N_ADD: r = x + y; break;
    case N_SUB: r = x - y; break;
    case N_MUL: r = x * y; break;
    case N_DIV: r = x / y; break;
    default:
        r = ints ? (double)((long long)x % (long long)y) : fmod(x, y);
        break;
    }
    if (!isfinite(r))
        return efail(cx, nd->off, "'%c' gives a number out of range", op);
    /* Integers stay exact: a result that could have been rounded is refused. */
    if (ints && nd->kind != N_DIV && fabs(r) >= EXACT_LIMIT)
        return efail(cx, nd->off, "'%c' gives an integer beyond 2^53, which "
                     "cannot be exact", op);
    return cJSON_CreateNumber(r);
}

/* The element of a container at a key or index; NULL if absent. */
static cJSON *index_of(cJSON *v, const cJSON *k)
{
    if (cJSON_IsObject(v) && cJSON_IsString(k))
        return cJSON_GetObjectItemCaseSensitive(v, k->valuestring);
    if (!cJSON_IsArray(v))
        return NULL;
    double i = -1;
    if (cJSON_IsNumber(k))
        i = k->valuedouble;
    else if (cJSON_IsString(k) && k->valuestring[0] &&
             strspn(k->valuestring, "0123456789") == strlen(k->valuestring) &&
             strlen(k->valuestring) < 10)
        i = atof(k->valuestring);
    if (i < 0 || i != floor(i) || i >= 2147483647.0)
        return NULL;
    return cJSON_GetArrayItem(v, (int)i);
}

static cJSON *eval_node(evalctx *cx, size_t id);

/* Evaluate argument `k` of a call. */
static cJSON *arg(evalctx *cx, const node *nd, size_t k)
{
    return eval_node(cx, nd->args[k]);
}

static size_t utf8_count(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Strings for startsWith/endsWith/contains: null reads as "". */
static const char *text_of(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    return !v || cJSON_IsNull(v) ? "" : NULL;
}

static cJSON *fn_length(evalctx *cx, const node *nd, const cJSON *v)
{
    if (cJSON_IsString(v))
        return cJSON_CreateNumber((double)utf8_count(v->valuestring));
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return cJSON_CreateNumber(cJSON_GetArraySize(v));
    if (cJSON_IsNull(v))
        return cJSON_CreateNumber(0);
    return efail(cx, nd->off, "length() takes a string, an array or an object, "
                 "not %s", type_name(v));
}

static cJSON *fn_contains(evalctx *cx, const node *nd, const cJSON *hay,
                          const cJSON *needle)
{
    if (cJSON_IsArray(hay)) {
        const cJSON *el;
        cJSON_ArrayForEach(el, hay)
            if (klass(el) == klass(needle) && cJSON_Compare(el, needle, true))
                return cJSON_CreateTrue();
        return cJSON_CreateFalse();
    }
    const char *h = text_of(hay);
    if (!h)
        return efail(cx, nd->off, "contains() searches a string or an array, "
                     "not %s", type_name(hay));
    if (cJSON_IsArray(needle) || cJSON_IsObject(needle))
        return efail(cx, nd->off, "contains() looks for %s in a string",
                     type_name(needle));
    rz__buf b = {0};
    stringify(&b, needle);
    if (b.failed) {
        rz__buf_free(&b);
        return NULL;
    }
    bool found = strstr(h, b.data ? b.data : "") != NULL;
    rz__buf_free(&b);
    return cJSON_CreateBool(found);
}

static cJSON *fn_affix(evalctx *cx, const node *nd, const cJSON *s, const cJSON *x)
{
    const char *name = nd->fn == F_STARTSWITH ? "startsWith" : "endsWith";
    const char *a = text_of(s), *b = text_of(x);
    if (!a || !b)
        return efail(cx, nd->off, "%s() takes two strings, not %s and %s", name,
                     type_name(s), type_name(x));
    size_t la = strlen(a), lb = strlen(b);
    if (lb > la)
        return cJSON_CreateFalse();
    const char *at_ = nd->fn == F_STARTSWITH ? a : a + la - lb;
    return cJSON_CreateBool(memcmp(at_, b, lb) == 0);
}

/* format('{0} and {1}', a, b): {N} is argument N, {{ and }} are braces. */
static cJSON *fn_format(evalctx *cx, const node *nd, cJSON **v)
{
    if (!cJSON_IsString(v[0]))
        return efail(cx, nd->off, "format() takes a format string first, not %s",
                     type_name(v[0]));
    const char *f = v[0]->valuestring;
    size_t nargs = nd->n_args - 1;
    rz__buf b = {0};
    for (size_t i = 0; f[i];) {
        if (b.len > RZ_EXPR_MAX_STRING)
            break;
        if ((f[i] == '{' && f[i + 1] == '{') || (f[i] == '}' && f[i + 1] == '}')) {
            rz__buf_append(&b, f + i, 1);
            i += 2;
            continue;
        }
        if (f[i] == '}') {
            rz__buf_free(&b);
            return efail(cx, nd->off, "format(): unmatched '}' at position %zu of "
                         "the format string", i);
        }
        if (f[i] != '{') {
            size_t run = strcspn(f + i, "{}");
            rz__buf_append(&b, f + i, run);
            i += run;
            continue;
        }
        size_t d = strspn(f + i + 1, "0123456789");
        if (d == 0 || d > 2 || f[i + 1 + d] != '}') {
            rz__buf_free(&b);
            return efail(cx, nd->off, "format(): '{' at position %zu of the format "
                         "string is not {N} (write {{ for a brace)", i);
        }
        size_t k = (size_t)atoi(f + i + 1);
        if (k >= nargs) {
            rz__buf_free(&b);
            return efail(cx, nd->off, "format(): {%zu} but %zu argument%s after "
                         "the format string", k, nargs, nargs == 1 ? "" : "s");
        }
        stringify(&b, v[k + 1]);
        i += d + 2;
    }
    return take_string(cx, nd->off, &b);
}

/* join(array, sep = ','): elements read as in templates. */
static cJSON *fn_join(evalctx *cx, const node *nd, const cJSON *a, const cJSON *sep)
{
    const char *s = sep ? text_of(sep) : ",";
    if (!s)
        return efail(cx, nd->off, "join() takes a string separator, not %s",
                     type_name(sep));
    if (cJSON_IsString(a) || cJSON_IsNull(a)) {
        rz__buf b = {0};
        stringify(&b, a);
        return take_string(cx, nd->off, &b);
    }
    if (!cJSON_IsArray(a))
        return efail(cx, nd->off, "join() takes an array, not %s", type_name(a));
    rz__buf b = {0};
    const cJSON *el;
    bool first = true;
    cJSON_ArrayForEach(el, a) {
        if (b.len > RZ_EXPR_MAX_STRING)
            break;   /* take_string reports it */
        if (!first)
            rz__buf_puts(&b, s);
        first = false;
        stringify(&b, el);
    }
    return take_string(cx, nd->off, &b);
}

static cJSON *fn_tojson(evalctx *cx, const node *nd, const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    if (!s)
        return NULL;
    rz__buf b = {0};
    size_t len = strlen(s);
    if (room(cx, nd->off, len))
        rz__buf_append(&b, s, len);
    else
        len = (size_t)-1;
    cJSON_free(s);
    if (len == (size_t)-1)
        return NULL;
    return take_string(cx, nd->off, &b);
}

static cJSON *fn_fromjson(evalctx *cx, const node *nd, const cJSON *v)
{
    if (!cJSON_IsString(v))
        return efail(cx, nd->off, "fromJSON() takes a string, not %s", type_name(v));
    size_t len = strlen(v->valuestring);
    if (!room(cx, nd->off, len))
        return NULL;
    cx->budget -= len;
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithOpts(v->valuestring, &end, true);
    if (!r)
        return efail(cx, nd->off, "fromJSON(): not valid JSON (at byte %zu)",
                     end && end >= v->valuestring ? (size_t)(end - v->valuestring) : 0);
    return r;
}

static cJSON *eval_call(evalctx *cx, const node *nd)
{
    if (nd->fn == F_DEFAULT) {   /* lazy: the fallback only when needed */
        cJSON *x = arg(cx, nd, 0);
        if (!x || !cJSON_IsNull(x))
            return x;
        cJSON_Delete(x);
        return arg(cx, nd, 1);
    }
    cJSON *v[RZ_EXPR_MAX_ARGS] = {0};
    cJSON *r = NULL;
    size_t n = 0;
    for (; n < nd->n_args; n++)
        if (!(v[n] = arg(cx, nd, n)))
            goto out;
    switch (nd->fn) {
    case F_LENGTH: r = fn_length(cx, nd, v[0]); break;
    case F_CONTAINS: r = fn_contains(cx, nd, v[0], v[1]); break;
    case F_STARTSWITH:
    case F_ENDSWITH: r = fn_affix(cx, nd, v[0], v[1]); break;
    case F_FORMAT: r = fn_format(cx, nd, v); break;
    case F_JOIN: r = fn_join(cx, nd, v[0], nd->n_args > 1 ? v[1] : NULL); break;
    case F_TOJSON: r = fn_tojson(cx, nd, v[0]); break;
    default: r = fn_fromjson(cx, nd, v[0]); break;
    }
out:
    for (size_t k = 0; k < n; k++)
        cJSON_Delete(v[k]);
    return r;
}

static cJSON *eval_node(evalctx *cx, size_t id)
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
    case N_COND: {
        cJSON *c = eval_node(cx, nd->a);
        if (!c)
            return NULL;
        bool t = rz__json_truthy(c);
        cJSON_Delete(c);
        return eval_node(cx, t ? nd->b : nd->c);
    }
    case N_CALL:
        return eval_call(cx, nd);
    default: {
        cJSON *a = eval_node(cx, nd->a);
        cJSON *b = a ? eval_node(cx, nd->b) : NULL;
        cJSON *r = NULL;
        if (!b) {
            /* error already recorded */
        } else if (nd->kind == N_INDEX) {
            cJSON *item = index_of(a, b);
            r = item ? cJSON_DetachItemViaPointer(a, item) : cJSON_CreateNull();
        } else if (nd->kind >= N_ADD && nd->kind <= N_MOD) {
            r = arith(cx, nd, a, b);
        } else {
            r = cJSON_CreateBool(compare(nd->kind, a, b));
        }
        cJSON_Delete(a);
        cJSON_Delete(b);
        return r;
    }
    }
}

/* Evaluate into *out; on failure *out is NULL and cx says why (no message:
 * out of memory). */
static void eval_all(const rz__expr *e, evalctx *cx, cJSON **out)
{
    *out = NULL;
    if (e->whole) {
        *out = eval_node(cx, e->parts[0].root);
        return;
    }
    rz__buf b = {0};
    for (size_t i = 0; i < e->n_parts && !cx->msg; i++) {
        const part *pt = &e->parts[i];
        if (pt->text) {
            rz__buf_append(&b, pt->text, pt->len);
            continue;
        }
        cJSON *v = eval_node(cx, pt->root);
        if (!v)
            b.failed = true;
        else
            stringify(&b, v);
        cJSON_Delete(v);
        if (b.len > RZ_EXPR_MAX_STRING)
            efail(cx, e->nodes[pt->root].off, "result longer than %u bytes",
                  RZ_EXPR_MAX_STRING);
    }
    if (!cx->msg && !b.failed)
        *out = cJSON_CreateString(b.data ? b.data : "");
    rz__buf_free(&b);
}

int rz__expr_eval(const rz__expr *e, rz__resolve_fn resolve, void *ud, cJSON **out)
{
    *out = NULL;
    if (!e)
        return rz__error(RZ_EINVAL, "rz__expr_eval: NULL expression");
    evalctx cx = {.e = e, .resolve = resolve, .ud = ud, .budget = RZ_EXPR_BUDGET};
    eval_all(e, &cx, out);
    if (*out)
        return RZ_OK;
    if (!cx.msg)
        return rz__error(RZ_ENOMEM, "out of memory");
    return rz__error(RZ_EEXPR, "%s at offset %zu", cx.msg, cx.off);
}

int rz__expr_check(const rz__expr *e, char *err, size_t errlen, size_t *err_off)
{
    if (err && errlen)
        err[0] = '\0';
    if (err_off)
        *err_off = 0;
    if (!e)
        return rz__error(RZ_EINVAL, "rz__expr_check: NULL expression");
    if (e->n_refs)
        return RZ_OK;   /* depends on values known only when it runs */
    evalctx cx = {.e = e, .budget = RZ_EXPR_BUDGET};
    cJSON *v;
    eval_all(e, &cx, &v);
    cJSON_Delete(v);
    if (v)
        return RZ_OK;
    if (!cx.msg)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (err && errlen)
        snprintf(err, errlen, "%s", cx.msg);
    if (err_off)
        *err_off = cx.off;
    return rz__error(RZ_EEXPR, "%s at offset %zu", cx.msg, cx.off);
}
