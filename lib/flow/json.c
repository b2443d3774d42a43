/* JSON: a nesting pre-check and a strict parser into cJSON-shaped nodes
 * (locating a pointer in the kept text is common/pointer.c). */
#include <stdlib.h>
#include <string.h>

#include "flow/loader.h"

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ---- parser ----
 * A strict RFC 8259 recursive-descent parser that builds cJSON-shaped nodes
 * in an arena (no malloc per value; the tree is dropped in one go). The
 * elements of the top-level "nodes" and "connections" lists, which make up
 * nearly all of a large builder document, are parsed one at a time into a
 * scratch arena, lowered at once and forgotten, so memory stays flat. */

typedef struct jp {
    const char *s;
    size_t len, i;
    rz__arena tree, scratch;
    rz__arena *cur;
    rz__load *ld;
    rz__lower *L;
    bool failed;
    bool streamed_nodes, streamed_conns;
    size_t dups;          /* duplicate keys reported */
} jp;


static void jfail(jp *p, size_t off, const char *what)
{
    if (p->failed)
        return;
    p->failed = true;
    uint32_t line, column;
    rz__text_position(p->s, p->len, off, &line, &column);
    if (off >= p->len)
        rz__load_diag_at(p->ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected end of input%s%s",
                         what ? ", expected " : "", what ? what : "");
    else if ((unsigned char)p->s[off] >= 0x20 && (unsigned char)p->s[off] < 0x7f)
        rz__load_diag_at(p->ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected '%c'%s%s", p->s[off],
                         what ? ", expected " : "", what ? what : "");
    else
        rz__load_diag_at(p->ld, RZ_ESYNTAX, line, column, NULL,
                         "JSON syntax error: unexpected byte 0x%02x%s%s",
                         (unsigned char)p->s[off], what ? ", expected " : "",
                         what ? what : "");
}

static void jws(jp *p)
{
    while (p->i < p->len && is_ws(p->s[p->i]))
        p->i++;
}

static void joom(jp *p)
{
    if (!p->failed)
        rz__load_diag_at(p->ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
    p->failed = true;
}

static cJSON *jnode(jp *p, int type)
{
    cJSON *n = rz__arena_alloc(p->cur, sizeof *n);
    if (!n) {
        joom(p);
        return NULL;
    }
    n->type = type;
    return n;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int h = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* At '"': the string's bytes, unescaped, NUL-terminated, in the arena. */
/* Strings are UTF-8: one that is not would be kept and served as it came. */
static bool utf8_ok(jp *p, size_t from, size_t to)
{
    const unsigned char *u = (const unsigned char *)p->s;
    size_t bad = rz__utf8_bad_at(u + from, to - from);
    if (bad == to - from)
        return true;
    jfail(p, from + bad, "text in UTF-8");
    return false;
}

static char *jstring(jp *p)
{
    size_t start = ++p->i;
    const char *s = p->s;
    size_t j = start;
    while (j < p->len && s[j] != '"' && s[j] != '\\' && (unsigned char)s[j] >= 0x20)
        j++;
    if (j < p->len && s[j] == '"') {       /* no escapes: one copy */
        if (!utf8_ok(p, start, j))
            return NULL;
        char *out = rz__arena_strndup(p->cur, s + start, j - start);
        p->i = j + 1;
        if (!out)
            joom(p);
        return out;
    }
    /* Escapes never lengthen the text, so the raw length bounds the output. */
    const char *end = rz__json_string_end(s + start, s + p->len);
    char *out = rz__arena_alloc(p->cur, (size_t)(end - s) - start + 1);
    if (!out) {
        joom(p);
        return NULL;
    }
    size_t o = 0;
    for (j = start; j < p->len; ) {
        unsigned char c = (unsigned char)s[j];
        if (c == '"') {
            p->i = j + 1;
            out[o] = '\0';
            return out;
        }
        if (c < 0x20) {
            jfail(p, j, "a control character to be escaped");
            return NULL;
        }
        if (c != '\\') {
            size_t k = j;   /* a run of raw bytes, checked as one */
            while (k < p->len && s[k] != '"' && s[k] != '\\' && (unsigned char)s[k] >= 0x20)
                k++;
            if (!utf8_ok(p, j, k))
                return NULL;
            memcpy(out + o, s + j, k - j);
            o += k - j;
            j = k;
            continue;
        }
        if (j + 1 >= p->len)
            break;
        char e = s[j + 1];
        j += 2;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            int cp = j + 4 <= p->len ? hex4(s + j) : -1;
            if (cp < 0) {
                jfail(p, j - 2, "a \\uXXXX escape");
                return NULL;
            }
            j += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && j + 6 <= p->len && s[j] == '\\' &&
                s[j + 1] == 'u') {
                int lo = hex4(s + j + 2);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    j += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) {
                jfail(p, j - 6, "no unpaired surrogate escapes (not UTF-8)");
                return NULL;
            }
            if (cp == 0) {
                jfail(p, j - 6, "no NUL characters in strings");
                return NULL;
            }
            o += rz__utf8_put((uint32_t)cp, out + o);
            break;
        }
        default:
            jfail(p, j - 1, "a valid escape");
            return NULL;
        }
    }
    jfail(p, p->len, "'\"'");
    return NULL;
}

static size_t digits_at(const jp *p, size_t j)
{
    size_t k = j;
    while (k < p->len && p->s[k] >= '0' && p->s[k] <= '9')
        k++;
    return k - j;
}

static cJSON *jnumber(jp *p)
{
    size_t start = p->i, j = p->i;
    const char *s = p->s;
    bool neg = j < p->len && s[j] == '-';
    if (neg)
        j++;
    size_t d = digits_at(p, j);
    if (d == 0 || (d > 1 && s[j] == '0')) {
        jfail(p, j, d ? "no leading zeros" : "a digit");
        return NULL;
    }
    bool integral = true;
    uint64_t iv = 0;
    for (size_t k = 0; k < d && k < 18; k++)
        iv = iv * 10 + (uint64_t)(s[j + k] - '0');
    integral = d <= 15;
    size_t digits_at_j = j;
    j += d;
    if (j < p->len && s[j] == '.') {
        size_t f = digits_at(p, j + 1);
        if (!f) {
            jfail(p, j + 1, "a digit");
            return NULL;
        }
        j += 1 + f;
        integral = false;
    }
    if (j < p->len && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < p->len && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t e = digits_at(p, j);
        if (!e) {
            jfail(p, j, "a digit");
            return NULL;
        }
        j += e;
        integral = false;
    }
    bool is_int = j == digits_at_j + d;
    if (is_int && (d > 16 || (d == 16 && memcmp(s + digits_at_j, "9007199254740992", 16) > 0))) {
        jfail(p, start, "an integer within 2^53 (a larger one would not stay exact)");
        return NULL;
    }
    double v;
    if (integral) {
        v = neg ? -(double)iv : (double)iv;
    } else {
        char buf[64];
        size_t n = j - start;
        if (n < sizeof buf) {
            memcpy(buf, s + start, n);
            buf[n] = '\0';
            v = strtod(buf, NULL);
        } else {
            char *tmp = rz__strndup(s + start, n);
            v = tmp ? strtod(tmp, NULL) : 0;
            free(tmp);
        }
    }
    p->i = j;
    cJSON *n = jnode(p, cJSON_Number);
    if (n) {
        n->valuedouble = v;
        /* As cJSON does: valueint saturates. */
        n->valueint = v >= 2147483647.0    ? 2147483647
                      : v <= -2147483648.0 ? (-2147483647 - 1)
                                           : (int)v;
    }
    return n;
}

static cJSON *jvalue(jp *p, unsigned depth);

static void append(cJSON *parent, cJSON **last, cJSON *item)
{
    if (*last) {
        (*last)->next = item;
        item->prev = *last;
    } else {
        parent->child = item;
    }
    parent->child->prev = item;   /* cJSON keeps the tail in child->prev */
    *last = item;
}

static bool stream_array(jp *p, bool nodes, unsigned depth)
{
    p->i++;   /* '[' */
    jws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
        return true;
    }
    for (;;) {
        rz__arena *saved = p->cur;
        p->cur = &p->scratch;
        jws(p);
        cJSON *v = jvalue(p, depth + 1);
        p->cur = saved;
        if (!v)
            return false;
        if (nodes)
            rz__lower_node(p->L, v);
        else
            rz__lower_conn(p->L, v);
        rz__arena_reset(&p->scratch);
        jws(p);
        if (p->i < p->len && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->len && p->s[p->i] == ']') {
            p->i++;
            return true;
        }
        jfail(p, p->i, "',' or ']'");
        return false;
    }
}

/* A repeated key is reported at the repeat and its value dropped, so the
 * lowering sees only the first. Offsets, not positions, are kept: turning
 * an offset into LINE:COLUMN scans the text, so that waits for a report. */
#define MAX_DUP_REPORTS 100

static bool duplicate_key(jp *p, rz__keyset *ks, const char *key, size_t off)
{
    uint32_t first, unused;
    if (!rz__keyset_seen(ks, key, (uint32_t)off, 0, &first, &unused))
        return false;
    /* Each report scans the text: a hostile document gets a bounded few. */
    if (p->dups++ >= MAX_DUP_REPORTS)
        return true;
    uint32_t l1, c1, l2, c2;
    rz__text_position(p->s, p->len, first, &l1, &c1);
    rz__text_position(p->s, p->len, off, &l2, &c2);
    rz__load_diag_pos(p->ld, RZ_EDUPLICATE, l2, c2,
                      "duplicate key '%s' (first at %u:%u)", key, l1, c1);
    return true;
}

static cJSON *jobject_in(jp *p, unsigned depth, rz__keyset *ks);

static cJSON *jobject(jp *p, unsigned depth)
{
    rz__keyset ks = {0};
    cJSON *o = jobject_in(p, depth, &ks);
    rz__keyset_free(&ks);
    return o;
}

static cJSON *jobject_in(jp *p, unsigned depth, rz__keyset *ks)
{
    cJSON *o = jnode(p, cJSON_Object), *last = NULL;
    if (!o)
        return NULL;
    p->i++;
    jws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
        return o;
    }
    for (;;) {
        jws(p);
        if (p->i >= p->len || p->s[p->i] != '"') {
            jfail(p, p->i, "a string key");
            return NULL;
        }
        size_t key_off = p->i;
        char *key = jstring(p);
        if (!key)
            return NULL;
        jws(p);
        if (p->i >= p->len || p->s[p->i] != ':') {
            jfail(p, p->i, "':'");
            return NULL;
        }
        p->i++;
        jws(p);
        bool dup = duplicate_key(p, ks, key, key_off);
        bool top = !dup && depth == 1 && p->L && p->i < p->len && p->s[p->i] == '[';
        bool is_nodes = top && strcmp(key, "nodes") == 0;
        bool is_conns = top && strcmp(key, "connections") == 0;
        if (top &&
            ((is_nodes && !p->streamed_nodes) || (is_conns && !p->streamed_conns))) {
            if (is_nodes)
                p->streamed_nodes = true;
            else
                p->streamed_conns = true;
            if (!stream_array(p, is_nodes, depth))
                return NULL;
        } else {
            cJSON *v = jvalue(p, depth + 1);
            if (!v)
                return NULL;
            v->string = key;
            if (!dup)
                append(o, &last, v);
        }
        jws(p);
        if (p->i < p->len && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->len && p->s[p->i] == '}') {
            p->i++;
            return o;
        }
        jfail(p, p->i, "',' or '}'");
        return NULL;
    }
}

static cJSON *jarray(jp *p, unsigned depth)
{
    cJSON *a = jnode(p, cJSON_Array), *last = NULL;
    if (!a)
        return NULL;
    p->i++;
    jws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
        return a;
    }
    for (;;) {
        jws(p);
        cJSON *v = jvalue(p, depth + 1);
        if (!v)
            return NULL;
        append(a, &last, v);
        jws(p);
        if (p->i < p->len && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->len && p->s[p->i] == ']') {
            p->i++;
            return a;
        }
        jfail(p, p->i, "',' or ']'");
        return NULL;
    }
}

static cJSON *jword(jp *p, const char *w, int type)
{
    size_t n = strlen(w);
    if (p->i + n > p->len || memcmp(p->s + p->i, w, n) != 0) {
        jfail(p, p->i, "a value");
        return NULL;
    }
    p->i += n;
    return jnode(p, type);
}

static cJSON *jvalue(jp *p, unsigned depth)
{
    if (p->i >= p->len) {
        jfail(p, p->i, "a value");
        return NULL;
    }
    char c = p->s[p->i];
    if ((c == '{' || c == '[') && depth > RZ_FLOW_MAX_DEPTH) {
        if (!p->failed) {
            p->failed = true;
            uint32_t line, column;
            rz__text_position(p->s, p->len, p->i, &line, &column);
            rz__load_diag_at(p->ld, RZ_ETOOBIG, line, column, NULL,
                             "nesting deeper than %d levels", RZ_FLOW_MAX_DEPTH);
        }
        return NULL;
    }
    switch (c) {
    case '{':
        return jobject(p, depth);
    case '[':
        return jarray(p, depth);
    case '"': {
        char *s = jstring(p);
        cJSON *n = s ? jnode(p, cJSON_String) : NULL;
        if (n)
            n->valuestring = s;
        return n;
    }
    case 't':
        return jword(p, "true", cJSON_True);
    case 'f':
        return jword(p, "false", cJSON_False);
    case 'n':
        return jword(p, "null", cJSON_NULL);
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return jnumber(p);
        jfail(p, p->i, "a value");
        return NULL;
    }
}

void rz__json_load(rz__load *ld, const char *text, size_t len)
{
    jp p = {.s = text, .len = len, .ld = ld};
    p.cur = &p.tree;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        p.i = 3;
    p.L = rz__lower_new(ld, true);
    if (!p.L) {
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
        return;
    }
    jws(&p);
    cJSON *root = jvalue(&p, 1);
    if (root) {
        jws(&p);
        if (p.i < len)
            jfail(&p, p.i, "the end of the document");
    }
    if (root && !p.failed)
        rz__lower_root(p.L, root, p.streamed_nodes, p.streamed_conns);
    rz__lower_free(p.L);
    rz__arena_free(&p.tree);
    rz__arena_free(&p.scratch);
}
