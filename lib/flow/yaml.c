/* YAML: libyaml's document API -> cJSON tree (YAML 1.2 core schema for
 * plain scalars, aliases expanded under a budget), pointer lookups in the
 * kept document, and the writer (libyaml's emitter). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "flow/loader.h"

/* Aliases can make a small document expand exponentially ("billion
 * laughs"); no flow legitimately needs more values than this. */
#define YAML_MAX_NODES 1000000u

/* ---- scalar resolution (YAML 1.2 core schema) ---- */

static bool is_any(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(*words, s, n) == 0)
            return true;
    return false;
}

static const char *const null_words[] = {"~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};
static const char *const inf_words[] = {".inf", ".Inf", ".INF", NULL};
static const char *const nan_words[] = {".nan", ".NaN", ".NAN", NULL};

static size_t digits(const char *s, size_t n, size_t i, const char *set)
{
    size_t j = i;
    while (j < n && strchr(set, s[j]) && s[j])
        j++;
    return j - i;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_decimal(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t d = digits(s, n, i, "0123456789");
    i += d;
    if (i < n && s[i] == '.') {
        size_t f = digits(s, n, i + 1, "0123456789");
        if (!d && !f)
            return false;
        i += 1 + f;
    } else if (!d) {
        return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = digits(s, n, i, "0123456789");
        if (!e)
            return false;
        i += e;
    }
    return i == n;
}

/* What a plain scalar is, allocating nothing: 0 for a string, else the
 * cJSON type, with a number's value in *d. */
static int plain_type(const char *s, size_t n, double *d)
{
    if (n == 0 || is_any(s, n, null_words))
        return cJSON_NULL;
    if (is_any(s, n, true_words))
        return cJSON_True;
    if (is_any(s, n, false_words))
        return cJSON_False;
    char buf[64];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (is_decimal(s, n)) {
        *d = strtod(buf, NULL);
        return cJSON_Number;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        const char *set = s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567";
        if (digits(s, n, 2, set) == n - 2) {
            *d = (double)strtoull(buf + 2, NULL, s[1] == 'x' ? 16 : 8);
            return cJSON_Number;
        }
    }
    size_t sign = s[0] == '-' || s[0] == '+';
    if (is_any(s + sign, n - sign, inf_words)) {
        *d = s[0] == '-' ? -INFINITY : INFINITY;
        return cJSON_Number;
    }
    if (is_any(s, n, nan_words)) {
        *d = NAN;
        return cJSON_Number;
    }
    return 0;
}

int rz__yaml_resolve_plain(const char *s, size_t n, cJSON **out)
{
    double d = 0;
    int t = plain_type(s, n, &d);
    /* JSON, the canonical form, has no infinity or NaN: they are null, here
     * as in every export, so what is loaded is what comes back. */
    if (t == cJSON_Number && !isfinite(d))
        t = cJSON_NULL;
    *out = t == cJSON_NULL ? cJSON_CreateNull() : t == cJSON_True ? cJSON_CreateTrue()
         : t == cJSON_False ? cJSON_CreateFalse() : t == cJSON_Number ? cJSON_CreateNumber(d)
         : NULL;
    return t && !*out ? RZ_ENOMEM : RZ_OK;
}

/* ---- document -> tree ---- */

typedef struct conv {
    rz__load *ld;
    yaml_document_t *doc;
    size_t nodes;
} conv;

static void mark_diag(conv *cv, int code, yaml_mark_t m, const char *msg)
{
    rz__load_diag_at(cv->ld, code, (uint32_t)m.line + 1, (uint32_t)m.column + 1,
                     NULL, "%s", msg);
}

/* A plain integer a double would round (past 2^53) is refused, as in JSON
 * and CBOR: the value would silently change. */
static bool inexact_int(const char *s, size_t n, const cJSON *v)
{
    if (!cJSON_IsNumber(v) || fabs(v->valuedouble) < 9007199254740992.0)
        return false;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        char buf[64];
        if (n >= sizeof buf)
            return false;
        memcpy(buf, s + 2, n - 2);
        buf[n - 2] = '\0';
        errno = 0;
        unsigned long long u = strtoull(buf, NULL, s[1] == 'x' ? 16 : 8);
        return errno == ERANGE || u > (1ull << 53);
    }
    return rz__json_text_check(s, n) != RZ_OK;
}

/* A "\0" escape puts a NUL in a scalar: the C string would end there and
 * silently drop the rest, so it is refused as JSON refuses \u0000. */
static bool has_nul(conv *cv, const yaml_node_t *n)
{
    if (!memchr(n->data.scalar.value, 0, n->data.scalar.length))
        return false;
    mark_diag(cv, RZ_ESYNTAX, n->start_mark, "a NUL character (\\0) in a string");
    return true;
}

static cJSON *scalar(conv *cv, const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (has_nul(cv, n))
        return NULL;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        cJSON *v = NULL;
        if (rz__yaml_resolve_plain(s, len, &v) != RZ_OK)
            return NULL;   /* out of memory, reported by the caller */
        if (v && inexact_int(s, len, v)) {
            cJSON_Delete(v);
            mark_diag(cv, RZ_ESYNTAX, n->start_mark,
                      "an integer past 2^53 (it would not stay exact); quote it for text");
            return NULL;
        }
        if (v)
            return v;
    }
    return cJSON_CreateString(s);
}

static cJSON *convert(conv *cv, yaml_node_t *n, unsigned depth);

/* A repeated key is reported at the repeat (every one, in one pass) and its
 * value dropped, so the lowering sees only the first. */
static bool duplicate_key(conv *cv, rz__keyset *ks, const yaml_node_t *k)
{
    uint32_t line = (uint32_t)k->start_mark.line + 1;
    uint32_t col = (uint32_t)k->start_mark.column + 1, l1, c1;
    if (!rz__keyset_seen(ks, (const char *)k->data.scalar.value, line, col, &l1, &c1))
        return false;
    rz__load_diag_at(cv->ld, RZ_EDUPLICATE, line, col, NULL,
                     "duplicate key '%s' (first at %u:%u)",
                     (const char *)k->data.scalar.value, l1, c1);
    return true;
}

static cJSON *convert_map(conv *cv, yaml_node_t *n, unsigned depth, rz__keyset *ks)
{
    cJSON *obj = cJSON_CreateObject();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         obj && p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(cv->doc, p->key);
        if (k->type != YAML_SCALAR_NODE) {
            mark_diag(cv, RZ_ESYNTAX, k->start_mark, "mapping keys must be scalars");
            cJSON_Delete(obj);
            return NULL;
        }
        if (has_nul(cv, k)) {
            cJSON_Delete(obj);
            return NULL;
        }
        /* libyaml reads `<<` as an ordinary key: it would reach the flow
         * as a key named "<<" instead of merging. */
        if (k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            strcmp((const char *)k->data.scalar.value, "<<") == 0) {
            mark_diag(cv, RZ_ESYNTAX, k->start_mark, "YAML merge keys ('<<') are not "
                      "supported; write the keys out (an alias of a whole value works)");
            cJSON_Delete(obj);
            return NULL;
        }
        bool dup = duplicate_key(cv, ks, k);
        cJSON *v = convert(cv, yaml_document_get_node(cv->doc, p->value), depth + 1);
        if (!v) {
            cJSON_Delete(obj);
            return NULL;
        }
        if (dup) {
            cJSON_Delete(v);
        } else if (!cJSON_AddItemToObject(obj, (const char *)k->data.scalar.value, v)) {
            cJSON_Delete(v);
            cJSON_Delete(obj);
            return NULL;
        }
    }
    return obj;
}

static cJSON *convert(conv *cv, yaml_node_t *n, unsigned depth)
{
    if (++cv->nodes > YAML_MAX_NODES) {
        if (cv->nodes == YAML_MAX_NODES + 1)
            mark_diag(cv, RZ_ETOOBIG, n->start_mark,
                      "document expands to more than 1000000 values (alias bomb?)");
        return NULL;
    }
    /* Containers count, as in JSON and CBOR: a scalar inside the 64th is
     * fine (what one loader takes, the others must take back). */
    if (depth > RZ_FLOW_MAX_DEPTH && n->type != YAML_SCALAR_NODE) {
        mark_diag(cv, RZ_ETOOBIG, n->start_mark, "nesting deeper than 64 levels");
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE)
        return scalar(cv, n);
    if (n->type == YAML_SEQUENCE_NODE) {
        cJSON *arr = cJSON_CreateArray();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             arr && it < n->data.sequence.items.top; it++) {
            cJSON *v = convert(cv, yaml_document_get_node(cv->doc, *it), depth + 1);
            if (!v) {
                cJSON_Delete(arr);
                return NULL;
            }
            cJSON_AddItemToArray(arr, v);
        }
        return arr;
    }
    rz__keyset ks = {0};
    cJSON *obj = convert_map(cv, n, depth, &ks);
    rz__keyset_free(&ks);
    return obj;
}

void rz__yaml_doc_free(void *doc)
{
    if (!doc)
        return;
    yaml_document_delete(doc);
    free(doc);
}

static void parser_error(rz__load *ld, const yaml_parser_t *p)
{
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_MEMORY_ERROR) {
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
        return;
    }
    if (p->context)
        rz__load_diag_at(ld, RZ_ESYNTAX, (uint32_t)m.line + 1, (uint32_t)m.column + 1,
                         NULL, "YAML syntax error: %s %s", p->problem ? p->problem : "error",
                         p->context);
    else
        rz__load_diag_at(ld, RZ_ESYNTAX, (uint32_t)m.line + 1, (uint32_t)m.column + 1,
                         NULL, "YAML syntax error: %s", p->problem ? p->problem : "error");
}

/* libyaml's scanner slows down quadratically with flow nesting ("[[[["),
 * so deep bracket runs are refused before it sees them. Brackets are
 * counted everywhere, quoted or not: a legitimate document never holds a
 * thousand unbalanced ones, and a hostile one cannot hide them in quotes. */
#define YAML_MAX_BRACKETS 1000

static bool brackets_ok(rz__load *ld, const char *s, size_t len)
{
    size_t depth = 0, deep_at = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '[' || s[i] == '{') {
            /* Where the run crossed the depth limit is what to point at. */
            if (++depth == RZ_FLOW_MAX_DEPTH + 1)
                deep_at = i;
            if (depth > YAML_MAX_BRACKETS) {
                uint32_t line, column;
                rz__text_position(s, len, deep_at, &line, &column);
                rz__load_diag_at(ld, RZ_ETOOBIG, line, column, NULL,
                                 "nesting deeper than %d levels", RZ_FLOW_MAX_DEPTH);
                return false;
            }
        } else if ((s[i] == ']' || s[i] == '}') && depth) {
            depth--;
        }
    }
    return true;
}

/* A flow file is one document: a second one ("---") would otherwise be
 * dropped without a word. True (reported) if the stream holds another. */
static bool second_document(rz__load *ld, yaml_parser_t *p)
{
    yaml_document_t next;
    if (!yaml_parser_load(p, &next)) {
        parser_error(ld, p);
        return true;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root)
        rz__load_diag_at(ld, RZ_ESYNTAX, (uint32_t)next.start_mark.line + 1,
                         (uint32_t)next.start_mark.column + 1, NULL,
                         "a second YAML document: a flow file holds exactly one");
    yaml_document_delete(&next);
    return root != NULL;
}

cJSON *rz__yaml_tree(rz__load *ld, const void *data, size_t len)
{
    if (!brackets_ok(ld, data, len))
        return NULL;
    yaml_parser_t parser;
    yaml_document_t *doc = rz__calloc(1, sizeof *doc);
    if (!doc || !yaml_parser_initialize(&parser)) {
        free(doc);
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, data, len);
    if (!yaml_parser_load(&parser, doc)) {
        parser_error(ld, &parser);
        yaml_parser_delete(&parser);
        free(doc);
        return NULL;
    }
    bool more = second_document(ld, &parser);
    yaml_parser_delete(&parser);
    ld->f->yaml_doc = doc;
    if (more)
        return NULL;
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) {
        rz__load_diag_at(ld, RZ_EINVALID, 1, 1, NULL, "empty document");
        return NULL;
    }
    conv cv = {ld, doc, 0};
    cJSON *tree = convert(&cv, root, 1);
    if (!tree && ld->status == RZ_OK)
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
    return tree;
}

/* ---- pointer lookups ---- */

static yaml_node_t *member(yaml_document_t *doc, yaml_node_t *n, const char *tok,
                           size_t toklen, yaml_mark_t *mark)
{
    if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (k->type == YAML_SCALAR_NODE && k->data.scalar.length == toklen &&
                memcmp(k->data.scalar.value, tok, toklen) == 0) {
                yaml_node_t *v = yaml_document_get_node(doc, p->value);
                /* A block under a key reads best at the key's line. */
                *mark = v->type == YAML_SCALAR_NODE ? v->start_mark : k->start_mark;
                return v;
            }
        }
        return NULL;
    }
    if (n->type != YAML_SEQUENCE_NODE || toklen == 0 || toklen > 18 ||
        strspn(tok, "0123456789") != toklen)
        return NULL;
    size_t idx = (size_t)strtoull(tok, NULL, 10);
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (idx >= count)
        return NULL;
    yaml_node_t *v = yaml_document_get_node(doc, n->data.sequence.items.start[idx]);
    *mark = v->start_mark;
    return v;
}

void rz__yaml_locate(void *docp, const char *pointer, uint32_t *line,
                     uint32_t *column)
{
    yaml_document_t *doc = docp;
    yaml_node_t *n = yaml_document_get_root_node(doc);
    if (!n)
        return;
    yaml_mark_t mark = n->start_mark;
    char tok[512];
    size_t toklen;
    const char *p = pointer;
    while (n && rz__pointer_next(&p, tok, sizeof tok, &toklen) && toklen < sizeof tok)
        n = member(doc, n, tok, toklen, &mark);
    *line = (uint32_t)mark.line + 1;
    *column = (uint32_t)mark.column + 1;
}

/* ---- writer ---- */

static int write_cb(void *data, unsigned char *buffer, size_t size)
{
    rz__buf *b = data;
    rz__buf_append(b, buffer, size);
    return !b->failed;
}

/* Plain text that other YAML readers (1.1) would take for a boolean. */
static const char *const yaml11_words[] = {
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
    "on", "On", "ON", "off", "Off", "OFF", NULL};

static bool needs_quotes(const char *s)
{
    size_t n = strlen(s);
    double d;
    /* A plain "<<" would read back as a merge key, which is refused. */
    return plain_type(s, n, &d) != 0 || is_any(s, n, yaml11_words) ||
           strcmp(s, "<<") == 0;
}

static bool emit_scalar(yaml_emitter_t *e, const char *s, bool quote)
{
    yaml_event_t ev;
    yaml_scalar_style_t style = quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                      : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s,
                                      (int)strlen(s), 1, 1, style))
        return false;
    return yaml_emitter_emit(e, &ev);
}

static void format_number(double d, char *buf, size_t cap)
{
    if (isnan(d))
        snprintf(buf, cap, ".nan");
    else if (isinf(d))
        snprintf(buf, cap, d < 0 ? "-.inf" : ".inf");
    else if (d == floor(d) && fabs(d) <= 9007199254740992.0)
        snprintf(buf, cap, "%.0f", d);   /* past 2^53 it would read as inexact */
    else {
        rz__number_format(d, buf, cap);
        /* "%.17g" may print an integral-looking value; keep it a float. */
        if (!strpbrk(buf, ".eE"))
            strncat(buf, ".0", cap - strlen(buf) - 1);
    }
}

static bool emit_value(yaml_emitter_t *e, const cJSON *v)
{
    yaml_event_t ev;
    if (cJSON_IsObject(v)) {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (const cJSON *c = v->child; c; c = c->next)
            if (!emit_scalar(e, c->string ? c->string : "",
                             needs_quotes(c->string ? c->string : "")) ||
                !emit_value(e, c))
                return false;
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    if (cJSON_IsArray(v)) {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (const cJSON *c = v->child; c; c = c->next)
            if (!emit_value(e, c))
                return false;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    if (cJSON_IsString(v))
        return emit_scalar(e, v->valuestring, needs_quotes(v->valuestring));
    if (cJSON_IsNumber(v)) {
        char buf[64];
        format_number(v->valuedouble, buf, sizeof buf);
        return emit_scalar(e, buf, false);
    }
    if (cJSON_IsBool(v))
        return emit_scalar(e, cJSON_IsTrue(v) ? "true" : "false", false);
    return emit_scalar(e, "null", false);
}

int rz__yaml_emit(const cJSON *root, char **out, size_t *len)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    rz__buf b = {0};
    if (!yaml_emitter_initialize(&e))
        return rz__error(RZ_ENOMEM, "out of memory");
    yaml_emitter_set_output(&e, write_cb, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
              yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
              yaml_emitter_emit(&e, &ev) && emit_value(&e, root) &&
              yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev);
    int rc = RZ_OK;
    if (!ok)
        rc = b.failed || e.error == YAML_MEMORY_ERROR
                 ? rz__error(RZ_ENOMEM, "out of memory")
                 : rz__error(RZ_EINVAL, "cannot write YAML: %s",
                             e.problem ? e.problem : "emitter error");
    yaml_emitter_delete(&e);
    if (rc != RZ_OK) {
        rz__buf_free(&b);
        return rc;
    }
    *len = b.len;
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}
