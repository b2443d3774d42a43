/* DATA/config.toml: the TOML subset a node's configuration needs.
 *
 * Lines are blank, a comment (# ...), a section header [name], or
 * key = value where value is a "basic string" (escapes \" \\ \n \t \r),
 * a 'literal string', an integer (digits, optional sign and _ separators),
 * a float (digits with a fraction and/or exponent), true/false or an array
 * of strings on one line (["a", 'b']), each optionally followed by a
 * comment. [[llm]] is the one array of tables: each one is a model
 * server. Everything else (other arrays, inline tables, dotted keys,
 * multi-line strings) is refused with FILE:LINE.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

typedef enum { V_STRING, V_INT, V_FLOAT, V_BOOL, V_STRV } vtype;

/* A price per hour (or per 1,000 tokens): at most $1,000,000. */
#define PRICE_MAX UINT64_C(1000000000000)

typedef struct value {
    vtype type;
    char *s;            /* V_STRING, malloc'd */
    char **sv;          /* V_STRV, n_sv malloc'd strings */
    size_t n_sv;
    int64_t i;
    double f;
    int b;
} value;

typedef struct parser {
    node_config *c;
    const char *file;
    unsigned line;
    char section[64];
    char *err;
    size_t errlen;
    unsigned seen_sections;   /* bit per known section */
    unsigned long long seen_keys; /* bit per key of the table below */
    unsigned llm_seen;        /* keys of the current [[llm]] */
    unsigned llm_line[NODE_CONFIG_MAX_LLM]; /* where each [[llm]] began */
} parser;

static int perr(parser *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%u: %s", p->file, p->line, msg);
    return -1;
}

/* ---- the keys a node knows ---- */

typedef enum { K_URL, K_MODULES, K_SANDBOX, K_HEARTBEAT, K_GPU, K_CPU, K_MEM,
               K_GPU_CENTS, K_CPU_CENTS, K_MEM_CENTS,
               K_MAXJOBS, K_MAXMEM, K_MAXOUT, K_CONTAINER_HOST,
               K_ALLOW_IMAGES, K_ORCH_KEY, K_MAXSCRATCH, K_MAXFILE, K_MAXJOBFILES, K_UID_FIRST,
               K_UID_COUNT, K_LLM_PRICE, K_LLM_REFRESH, K_API_LISTEN, K_CA_FILE,
               K_BK_KIND, K_BK_PARTITION, K_BK_ACCOUNT, K_BK_QOS, K_BK_SPOOL,
               K_BK_COMMAND, K_BK_MEMORY, K_BK_POLL, K_LLM_MODEL_PRICES,
               K_BK_REST, K_BK_REST_USER, K_BK_REST_TOKEN, K_LLM_SECOND,
               K_LLM_MODEL_SECOND_PRICES } key_id;

typedef struct key_def {
    const char *section, *name;
    key_id id;
    vtype type;
} key_def;

static const key_def keys[] = {
    { "orchestrator", "url", K_URL, V_STRING },
    { "orchestrator", "key", K_ORCH_KEY, V_STRING },
    { "orchestrator", "ca_file", K_CA_FILE, V_STRING },
    { "node", "modules", K_MODULES, V_STRING },
    { "node", "sandbox", K_SANDBOX, V_BOOL },
    { "node", "heartbeat_s", K_HEARTBEAT, V_FLOAT },
    { "node", "llm_refresh_s", K_LLM_REFRESH, V_FLOAT },
    { "pricing", "llm_1k_tokens_micros", K_LLM_PRICE, V_INT },
    { "pricing", "llm_model_prices", K_LLM_MODEL_PRICES, V_STRV },
    { "pricing", "llm_second_micros", K_LLM_SECOND, V_INT },
    { "pricing", "llm_model_second_prices", K_LLM_MODEL_SECOND_PRICES, V_STRV },
    { "pricing", "gpu_hour_micros", K_GPU, V_INT },
    { "pricing", "cpu_hour_micros", K_CPU, V_INT },
    { "pricing", "memory_gb_hour_micros", K_MEM, V_INT },
    /* Files written before micro-dollars: cents, converted exactly. */
    { "pricing", "gpu_hour_cents", K_GPU_CENTS, V_INT },
    { "pricing", "cpu_hour_cents", K_CPU_CENTS, V_INT },
    { "pricing", "memory_gb_hour_cents", K_MEM_CENTS, V_INT },
    { "limits", "max_concurrent_jobs", K_MAXJOBS, V_INT },
    { "limits", "max_memory_mb", K_MAXMEM, V_INT },
    { "limits", "max_output_kb", K_MAXOUT, V_INT },
    { "limits", "max_scratch_mb", K_MAXSCRATCH, V_INT },
    { "limits", "max_file_mb", K_MAXFILE, V_INT },
    { "limits", "max_job_files_mb", K_MAXJOBFILES, V_INT },
    { "limits", "step_uid_first", K_UID_FIRST, V_INT },
    { "limits", "step_uid_count", K_UID_COUNT, V_INT },
    { "container", "host", K_CONTAINER_HOST, V_STRING },
    { "container", "allow_images", K_ALLOW_IMAGES, V_STRV },
    { "api", "listen", K_API_LISTEN, V_STRING },
    { "backend", "kind", K_BK_KIND, V_STRING },
    { "backend", "partition", K_BK_PARTITION, V_STRING },
    { "backend", "account", K_BK_ACCOUNT, V_STRING },
    { "backend", "qos", K_BK_QOS, V_STRING },
    { "backend", "spool", K_BK_SPOOL, V_STRING },
    { "backend", "command", K_BK_COMMAND, V_STRING },
    { "backend", "default_memory_mb", K_BK_MEMORY, V_INT },
    { "backend", "poll_s", K_BK_POLL, V_FLOAT },
    { "backend", "slurmrestd", K_BK_REST, V_STRING },
    { "backend", "slurmrestd_user", K_BK_REST_USER, V_STRING },
    { "backend", "slurmrestd_token_file", K_BK_REST_TOKEN, V_STRING },
};

static const char *const sections[] = {
    "orchestrator", "node", "pricing", "limits", "labels", "container",
    "api",
    "backend",
};

static const char *type_name(vtype t)
{
    switch (t) {
    case V_STRING: return "a string";
    case V_INT: return "an integer";
    case V_FLOAT: return "a number";
    case V_STRV: return "an array of strings";
    default: return "true or false";
    }
}

/* ---- lexing ---- */

static const char *skip_ws(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

/* Only whitespace or a comment may follow a value or header. */
static int rest_is_empty(const char *s, const char *end)
{
    s = skip_ws(s, end);
    return s == end || *s == '#';
}

static int is_key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

/* [[llm]]: one more model server; its keys follow. */
static int parse_table_array(parser *p, const char *s, const char *end)
{
    const char *name = skip_ws(s + 2, end), *q = name;
    while (q < end && is_key_char(*q))
        q++;
    size_t n = (size_t)(q - name);
    const char *close = skip_ws(q, end);
    if (close + 1 >= end || close[0] != ']' || close[1] != ']')
        return perr(p, "malformed array-of-tables header (want [[llm]])");
    if (!rest_is_empty(close + 2, end))
        return perr(p, "unexpected text after the section header");
    if (n != 3 || memcmp(name, "llm", 3) != 0)
        return perr(p, "unknown array of tables [[%.*s]] (known: [[llm]])",
                    (int)(n < 40 ? n : 40), name);
    if (p->c->n_llm == NODE_CONFIG_MAX_LLM)
        return perr(p, "more than %u [[llm]] servers", NODE_CONFIG_MAX_LLM);
    p->llm_line[p->c->n_llm] = p->line;
    p->c->llm[p->c->n_llm++] = (node_llm){ 0, NULL, NODE_LLM_TIMEOUT_S };
    p->llm_seen = 0;
    snprintf(p->section, sizeof p->section, "llm");
    return 0;
}

static int parse_header(parser *p, const char *s, const char *end)
{
    if (end - s > 1 && s[1] == '[')
        return parse_table_array(p, s, end);
    const char *name = skip_ws(s + 1, end), *q = name;
    while (q < end && is_key_char(*q))
        q++;
    size_t n = (size_t)(q - name);
    const char *close = skip_ws(q, end);
    if (close >= end || *close != ']')
        return perr(p, n ? "expected ']' after the section name"
                         : "malformed section header (want [name])");
    if (n == 0)
        return perr(p, "empty section name");
    if (!rest_is_empty(close + 1, end))
        return perr(p, "unexpected text after the section header");
    if (n >= sizeof p->section)
        return perr(p, "section name too long");
    memcpy(p->section, name, n);
    p->section[n] = '\0';
    if (strcmp(p->section, "llm") == 0)
        return perr(p, "a model server is an array table: write [[llm]], "
                    "one per server");
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        if (strcmp(sections[i], p->section) == 0) {
            if (p->seen_sections & (1u << i))
                return perr(p, "section [%s] appears twice", p->section);
            p->seen_sections |= 1u << i;
            return 0;
        }
    return perr(p, "unknown section [%s] (known: [orchestrator] [node] "
                   "[pricing] [limits] [labels] [container] [api] [backend])", p->section);
}

static int parse_basic_string(parser *p, const char **sp, const char *end,
                              value *v)
{
    const char *s = *sp + 1;
    char *out = malloc((size_t)(end - s) + 1), *o = out;
    if (!out)
        return perr(p, "out of memory");
    for (;;) {
        if (s >= end) {
            free(out);
            return perr(p, "unterminated string");
        }
        char ch = *s++;
        if (ch == '"')
            break;
        if ((unsigned char)ch < 0x20 && ch != '\t') {
            free(out);
            return perr(p, "control character in a string");
        }
        if (ch != '\\') {
            *o++ = ch;
            continue;
        }
        char e = s < end ? *s++ : '\0';
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        default:
            free(out);
            return perr(p, "unsupported escape in a string (use \\\" \\\\ "
                           "\\n \\t \\r)");
        }
    }
    *o = '\0';
    v->type = V_STRING;
    v->s = out;
    *sp = s;
    return 0;
}

static int parse_literal_string(parser *p, const char **sp, const char *end,
                                value *v)
{
    const char *s = *sp + 1, *close = memchr(s, '\'', (size_t)(end - s));
    if (!close)
        return perr(p, "unterminated string");
    size_t n = (size_t)(close - s);
    v->s = malloc(n + 1);
    if (!v->s)
        return perr(p, "out of memory");
    memcpy(v->s, s, n);
    v->s[n] = '\0';
    v->type = V_STRING;
    *sp = close + 1;
    return 0;
}

/* Digits with single '_' between them; returns the end or NULL. */
static const char *scan_digits(const char *s, const char *end)
{
    if (s >= end || *s < '0' || *s > '9')
        return NULL;
    while (s < end && ((*s >= '0' && *s <= '9') ||
                       (*s == '_' && s + 1 < end && s[1] >= '0' && s[1] <= '9')))
        s++;
    return s;
}

/* A number token without its underscores, for strtoll/strtod. */
static int parse_number(parser *p, const char **sp, const char *end, value *v)
{
    const char *s = *sp, *q = s;
    int is_float = 0;
    if (q < end && (*q == '+' || *q == '-'))
        q++;
    q = scan_digits(q, end);
    if (q && q < end && *q == '.') {
        is_float = 1;
        q = scan_digits(q + 1, end);
    }
    if (q && q < end && (*q == 'e' || *q == 'E')) {
        is_float = 1;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        q = scan_digits(q, end);
    }
    if (!q || (q < end && !(*q == ' ' || *q == '\t' || *q == '#')))
        return perr(p, "malformed value (want \"string\", a number, true "
                       "or false)");
    char buf[64];
    size_t n = 0;
    for (const char *t = s; t < q; t++)
        if (*t != '_') {
            if (n + 1 >= sizeof buf)
                return perr(p, "number too long");
            buf[n++] = *t;
        }
    buf[n] = '\0';
    errno = 0;
    if (is_float) {
        v->type = V_FLOAT;
        v->f = strtod(buf, NULL);
        if (errno == ERANGE || !isfinite(v->f))
            return perr(p, "number out of range");
    } else {
        v->type = V_INT;
        v->i = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return perr(p, "integer out of range");
    }
    *sp = q;
    return 0;
}

static void value_free(value *v)
{
    free(v->s);
    v->s = NULL;
    for (size_t i = 0; i < v->n_sv; i++)
        free(v->sv[i]);
    free(v->sv);
    v->sv = NULL;
    v->n_sv = 0;
}

/* ["a", 'b', ] on one line: strings only. */
static int parse_string_array(parser *p, const char **sp, const char *end,
                              value *v)
{
    const char *s = skip_ws(*sp + 1, end);
    v->type = V_STRV;
    while (s < end && *s != ']') {
        value item = {0};
        if (*s == '"' && !(end - s >= 3 && s[1] == '"' && s[2] == '"')) {
            if (parse_basic_string(p, &s, end, &item) != 0)
                return -1;
        } else if (*s == '\'') {
            if (parse_literal_string(p, &s, end, &item) != 0)
                return -1;
        } else {
            return perr(p, "an array may hold only strings, on one line");
        }
        if (v->n_sv == NODE_CONFIG_MAX_LIST) {
            free(item.s);
            return perr(p, "more than %u entries in an array",
                        NODE_CONFIG_MAX_LIST);
        }
        char **more = realloc(v->sv, (v->n_sv + 1) * sizeof *more);
        if (!more) {
            free(item.s);
            return perr(p, "out of memory");
        }
        v->sv = more;
        v->sv[v->n_sv++] = item.s;
        s = skip_ws(s, end);
        if (s < end && *s == ',')
            s = skip_ws(s + 1, end);
        else if (s < end && *s != ']')
            return perr(p, "expected ',' or ']' in the array");
    }
    if (s >= end)
        return perr(p, "unterminated array (arrays are on one line)");
    *sp = s + 1;
    return 0;
}

static int parse_value(parser *p, const char **sp, const char *end, value *v)
{
    const char *s = *sp;
    if (s >= end || *s == '#')
        return perr(p, "missing value after '='");
    if (*s == '"') {
        if (end - s >= 3 && s[1] == '"' && s[2] == '"')
            return perr(p, "multi-line strings are not supported");
        return parse_basic_string(p, sp, end, v);
    }
    if (*s == '\'')
        return parse_literal_string(p, sp, end, v);
    if (*s == '[')
        return parse_string_array(p, sp, end, v);
    if (*s == '{')
        return perr(p, "inline tables are not supported");
    for (int b = 0; b < 2; b++) {
        const char *word = b ? "true" : "false";
        size_t n = strlen(word);
        if ((size_t)(end - s) >= n && memcmp(s, word, n) == 0 &&
            (s + n == end || s[n] == ' ' || s[n] == '\t' || s[n] == '#')) {
            v->type = V_BOOL;
            v->b = b;
            *sp = s + n;
            return 0;
        }
    }
    return parse_number(p, sp, end, v);
}

/* ---- applying values ---- */

static int want_uint(parser *p, const key_def *k, const value *v,
                     uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (v->i < 0 || (uint64_t)v->i < lo || (uint64_t)v->i > hi)
        return perr(p, "%s must be between %llu and %llu", k->name,
                    (unsigned long long)lo, (unsigned long long)hi);
    *out = (uint64_t)v->i;
    return 0;
}

static int set_string(char **slot, value *v)
{
    free(*slot);
    *slot = v->s;
    v->s = NULL;
    return 0;
}

static int apply_url(parser *p, value *v)
{
    if (strncmp(v->s, "http://", 7) != 0 && strncmp(v->s, "https://", 8) != 0)
        return perr(p, "url must start with http:// or https://");
    return set_string(&p->c->orchestrator_url, v);
}

/* A pinned orchestrator key: one spelling, so a plain comparison. */
static int apply_orch_key(parser *p, value *v)
{
    size_t n = strlen(v->s);
    int ok = n == 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (v->s[i] >= '0' && v->s[i] <= '9') || (v->s[i] >= 'a' && v->s[i] <= 'f');
    if (!ok)
        return perr(p, "key must be the orchestrator's X25519 public key: 64 "
                    "lowercase hex digits (GET /api/v1/identity)");
    return set_string(&p->c->orchestrator_key, v);
}

/* The local API's address: "off", or an IP literal and a port
 * ("127.0.0.1:7180", "[::1]:7180"); names are not looked up, so what is
 * served never depends on DNS. */
static int apply_api_listen(parser *p, value *v)
{
    if (strcmp(v->s, "off") != 0 && node_api_split(v->s, NULL, 0, NULL) != 0)
        return perr(p, "listen must be \"off\" or ADDRESS:PORT with an IP "
                    "address (e.g. \"127.0.0.1:7180\"), not \"%.80s\"", v->s);
    return set_string(&p->c->api_listen, v);
}

/* Image globs (fnmatch, as --allow-images of the orchestrator). */
static int apply_allow_images(parser *p, value *v)
{
    node_config *c = p->c;
    for (size_t i = 0; i < v->n_sv; i++)
        if (!v->sv[i][0] || strlen(v->sv[i]) > 512)
            return perr(p, "allow_images: a pattern is 1 to 512 characters");
    for (size_t i = 0; i < c->n_allow_images; i++)
        free(c->allow_images[i]);
    free(c->allow_images);
    c->allow_images = v->sv;
    c->n_allow_images = v->n_sv;
    v->sv = NULL;
    v->n_sv = 0;
    return 0;
}

/* "MODEL=MICROS": the last '=' splits (a model name may hold one). */
static int model_price_split(const char *e, size_t *name_len, uint64_t *micros)
{
    const char *eq = strrchr(e, '=');
    if (!eq || eq == e || (size_t)(eq - e) > 200 || !eq[1] || strlen(eq + 1) > 16)
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(eq + 1, &end, 10);
    if (errno || *end || eq[1] < '0' || eq[1] > '9' || v > PRICE_MAX)
        return -1;
    *name_len = (size_t)(eq - e);
    *micros = v;
    return 0;
}

/* Is the model of entry e (its name n bytes long) priced in list v? */
static int model_priced(char **v, size_t nv, const char *e, size_t n)
{
    for (size_t k = 0; k < nv; k++)
        if (strncmp(v[k], e, n + 1) == 0)
            return 1;
    return 0;
}

/* Per-model llm prices, each "MODEL=MICROS", per 1,000 tokens
 * (llm_model_prices) or per second (llm_model_second_prices): a model is
 * priced in one unit, so it may not be in both lists. */
static int apply_model_prices(parser *p, value *v, int per_second)
{
    node_config *c = p->c;
    const char *key = per_second ? "llm_model_second_prices" : "llm_model_prices";
    char **other = per_second ? c->llm_model_prices : c->llm_model_second_prices;
    size_t n_other = per_second ? c->n_llm_model_prices : c->n_llm_model_second_prices;
    for (size_t i = 0; i < v->n_sv; i++) {
        size_t n;
        uint64_t m;
        if (model_price_split(v->sv[i], &n, &m) != 0)
            return perr(p, "%s: \"%.80s\" is not \"MODEL=MICROS\" "
                        "(a model name of 1-200 bytes, a whole price up to %llu)",
                        key, v->sv[i], (unsigned long long)PRICE_MAX);
        if (model_priced(v->sv, i, v->sv[i], n))
            return perr(p, "%s: model \"%.*s\" priced twice", key, (int)n, v->sv[i]);
        if (model_priced(other, n_other, v->sv[i], n))
            return perr(p, "%s: model \"%.*s\" is priced per %s already: a "
                        "model is priced per token or per second", key, (int)n,
                        v->sv[i], per_second ? "token" : "second");
    }
    *(per_second ? &c->llm_model_second_prices : &c->llm_model_prices) = v->sv;
    *(per_second ? &c->n_llm_model_second_prices : &c->n_llm_model_prices) = v->n_sv;
    v->sv = NULL;
    v->n_sv = 0;
    return 0;
}

/* MODEL's price in list v (*found 1), else *found 0. */
static uint64_t list_price(char **v, size_t nv, const char *model, int *found)
{
    size_t n, len = strlen(model);
    uint64_t m;
    for (size_t i = 0; i < nv; i++)
        if (model_price_split(v[i], &n, &m) == 0 && n == len &&
            strncmp(v[i], model, n) == 0) {
            *found = 1;
            return m;
        }
    *found = 0;
    return 0;
}

uint64_t node_llm_price(const node_config *c, const char *model, int *own,
                        int *per_second)
{
    int found = 0;
    uint64_t m = model ? list_price(c->llm_model_prices, c->n_llm_model_prices,
                                    model, &found) : 0;
    *per_second = 0;
    if (!found && model &&
        (m = list_price(c->llm_model_second_prices, c->n_llm_model_second_prices,
                        model, &found), found))
        *per_second = 1;
    if (own)
        *own = found;
    if (found)
        return m;
    *per_second = c->llm_per_second;
    return c->llm_per_second ? c->llm_second_micros : c->llm_1k_tokens_micros;
}

/* ---- [backend] ---- */

/* A Slurm name (partition, account, QoS): what sbatch takes as one
 * argument, nothing a shell or a log could misread. */
static int slurm_word(parser *p, const char *key, char **slot, value *v)
{
    size_t n = strlen(v->s);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v->s[i]) || strchr("-_.", v->s[i]);
    if (!ok)
        return perr(p, "%s must be 1 to 64 of A-Z a-z 0-9 - _ .", key);
    return set_string(slot, v);
}

static int apply_backend(parser *p, const key_def *k, value *v)
{
    node_config *c = p->c;
    uint64_t u = 0;
    int rc = 0;
    switch (k->id) {
    case K_BK_KIND:
        if (strcmp(v->s, "process") == 0)
            c->backend = NODE_BACKEND_LOCAL;
        else if (strcmp(v->s, "slurm") == 0)
            c->backend = NODE_BACKEND_SLURM;
        else
            return perr(p, "kind must be \"process\" (run jobs here) or "
                        "\"slurm\" (hand them to Slurm)");
        return 0;
    case K_BK_PARTITION: return slurm_word(p, k->name, &c->slurm_partition, v);
    case K_BK_ACCOUNT: return slurm_word(p, k->name, &c->slurm_account, v);
    case K_BK_QOS: return slurm_word(p, k->name, &c->slurm_qos, v);
    case K_BK_SPOOL: case K_BK_COMMAND:
        if (v->s[0] != '/' || strlen(v->s) > 1024)
            return perr(p, "%s must be an absolute path", k->name);
        return set_string(k->id == K_BK_SPOOL ? &c->slurm_spool
                                              : &c->slurm_command, v);
    case K_BK_MEMORY:
        if ((rc = want_uint(p, k, v, 1, UINT32_MAX, &u)) == 0)
            c->slurm_default_memory_mb = (uint32_t)u;
        return rc;
    case K_BK_POLL:
        if (!(v->f >= 0.2 && v->f <= 300))
            return perr(p, "poll_s must be between 0.2 and 300");
        c->slurm_poll_s = v->f;
        return 0;
    case K_BK_REST:
        /* unix:/absolute/socket or http://host:port (no path, no
         * credentials: the token comes from its own file). */
        if (!((strncmp(v->s, "unix:/", 6) == 0 && strlen(v->s) <= 108) ||
              (strncmp(v->s, "http://", 7) == 0 && strlen(v->s) <= 200 &&
               v->s[7] && !strpbrk(v->s + 7, "/@?# \t"))))
            return perr(p, "slurmrestd must be \"unix:/path/to/socket\" or "
                        "\"http://host:port\"");
        return set_string(&c->slurm_rest, v);
    case K_BK_REST_USER:
        return slurm_word(p, k->name, &c->slurm_rest_user, v);
    case K_BK_REST_TOKEN:
        if (v->s[0] != '/' || strlen(v->s) > 1024)
            return perr(p, "%s must be an absolute path", k->name);
        return set_string(&c->slurm_rest_token, v);
    default:
        return 0;
    }
}

/* [limits]: whole numbers within their bounds. */
static int apply_limit(parser *p, const key_def *k, value *v)
{
    static const struct { key_id id; uint64_t lo, hi; size_t at; } lim[] = {
        { K_MAXJOBS, 1, 1024, offsetof(node_config, max_concurrent_jobs) },
        { K_MAXMEM, 0, UINT32_MAX, offsetof(node_config, max_memory_mb) },
        { K_MAXOUT, 1, NODE_MAX_OUTPUT_KB, offsetof(node_config, max_output_kb) },
        { K_MAXSCRATCH, 1, NODE_MAX_SCRATCH_MB, offsetof(node_config, max_scratch_mb) },
        { K_MAXFILE, 1, NODE_MAX_FILE_MB, offsetof(node_config, max_file_mb) },
        { K_MAXJOBFILES, 1, NODE_MAX_FILE_MB, offsetof(node_config, max_job_files_mb) },
        /* 65536 up: never root, nobody or a system id */
        { K_UID_FIRST, 65536, UINT32_MAX - 256, offsetof(node_config, step_uid_first) },
        { K_UID_COUNT, 1, 256, offsetof(node_config, step_uid_count) },
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        if (lim[i].id != k->id)
            continue;
        uint64_t u = 0;
        int rc = want_uint(p, k, v, lim[i].lo, lim[i].hi, &u);
        if (rc == 0)
            *(uint32_t *)(void *)((char *)p->c + lim[i].at) = (uint32_t)u;
        return rc;
    }
    return 0;
}

/* The llm keys: prices (one unit each, assign() refuses both) and the
 * model lists' refresh. */
static int apply_llm(parser *p, const key_def *k, value *v)
{
    node_config *c = p->c;
    switch (k->id) {
    case K_LLM_MODEL_PRICES: return apply_model_prices(p, v, 0);
    case K_LLM_MODEL_SECOND_PRICES: return apply_model_prices(p, v, 1);
    case K_LLM_REFRESH:
        if (!(v->f >= 1 && v->f <= 86400))
            return perr(p, "llm_refresh_s must be between 1 and 86400");
        c->llm_refresh_s = v->f;
        return 0;
    default:
        c->llm_per_second = k->id == K_LLM_SECOND;
        return want_uint(p, k, v, 0, PRICE_MAX, c->llm_per_second
                         ? &c->llm_second_micros : &c->llm_1k_tokens_micros);
    }
}

static int apply(parser *p, const key_def *k, value *v)
{
    node_config *c = p->c;
    uint64_t u = 0;
    int rc = 0;
    switch (k->id) {
    case K_URL: return apply_url(p, v);
    case K_ORCH_KEY: return apply_orch_key(p, v);
    case K_CA_FILE:
        if (!*v->s)
            return perr(p, "ca_file must name a PEM file of CA certificates");
        return set_string(&p->c->orchestrator_ca_file, v);
    case K_MODULES: return set_string(&c->modules, v);
    case K_CONTAINER_HOST:
        if (!v->s || strncmp(v->s, "unix://", 7) != 0 || !v->s[7])
            return perr(p, "host must be unix:///PATH (the container "
                        "engine's socket)");
        return set_string(&c->container_host, v);
    case K_ALLOW_IMAGES: return apply_allow_images(p, v);
    case K_API_LISTEN: return apply_api_listen(p, v);
    case K_SANDBOX: c->sandbox = v->b; return 0;
    case K_HEARTBEAT:
        if (v->f < 0.1 || v->f > 60)
            return perr(p, "heartbeat_s must be between 0.1 and 60");
        c->heartbeat_s = v->f;
        return 0;
    case K_GPU: rc = want_uint(p, k, v, 0, PRICE_MAX, &c->gpu_hour_micros); break;
    case K_CPU: rc = want_uint(p, k, v, 0, PRICE_MAX, &c->cpu_hour_micros); break;
    case K_MEM: rc = want_uint(p, k, v, 0, PRICE_MAX, &c->memory_gb_hour_micros); break;
    case K_GPU_CENTS: case K_CPU_CENTS: case K_MEM_CENTS:
        if ((rc = want_uint(p, k, v, 0, PRICE_MAX / 10000, &u)) == 0)
            *(k->id == K_GPU_CENTS ? &c->gpu_hour_micros
              : k->id == K_CPU_CENTS ? &c->cpu_hour_micros
              : &c->memory_gb_hour_micros) = u * 10000;
        break;
    case K_MAXJOBS: case K_MAXMEM: case K_MAXOUT: case K_MAXSCRATCH:
    case K_MAXFILE: case K_MAXJOBFILES: case K_UID_FIRST: case K_UID_COUNT:
        return apply_limit(p, k, v);
    case K_BK_KIND: case K_BK_PARTITION: case K_BK_ACCOUNT: case K_BK_QOS:
    case K_BK_SPOOL: case K_BK_COMMAND: case K_BK_MEMORY: case K_BK_POLL:
    case K_BK_REST: case K_BK_REST_USER: case K_BK_REST_TOKEN:
        return apply_backend(p, k, v);
    case K_LLM_PRICE: case K_LLM_SECOND: case K_LLM_MODEL_PRICES:
    case K_LLM_MODEL_SECOND_PRICES: case K_LLM_REFRESH:
        return apply_llm(p, k, v);
    }
    return rc;
}

/* ---- [[llm]] ---- */

static int llm_url(parser *p, node_llm *l, value *v)
{
    const char *u = v->s;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return perr(p, "url must start with http:// or https:// (the model "
                    "server, e.g. \"http://127.0.0.1:11434\")");
    size_t n = strlen(u);
    if (n > NODE_LLM_URL_MAX)
        return perr(p, "url is over %u characters", NODE_LLM_URL_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f || u[i] == '?' ||
            u[i] == '#')
            return perr(p, "url must be a base URL: no spaces, control "
                        "characters, query or fragment");
    const char *host = strstr(u, "://") + 3, *slash = strchr(host, '/');
    const char *at = memchr(host, '@', slash ? (size_t)(slash - host) : strlen(host));
    if (at)   /* it is printed in messages: no password in it */
        return perr(p, "url must not carry a user or password");
    while (n > 8 && u[n - 1] == '/')   /* the paths are appended to it */
        v->s[--n] = '\0';
    for (size_t i = 0; i + 1 < p->c->n_llm; i++)
        if (p->c->llm[i].url && strcmp(p->c->llm[i].url, u) == 0)
            return perr(p, "url \"%.200s\" is already another [[llm]]'s", u);
    return set_string(&l->url, v);
}

static int llm_assign(parser *p, const char *key, value *v)
{
    static const char *const names[] = { "kind", "url", "timeout_s" };
    node_llm *l = &p->c->llm[p->c->n_llm - 1];
    unsigned i = 0;
    while (i < 3 && strcmp(names[i], key) != 0)
        i++;
    if (i == 3)
        return perr(p, "unknown key '%s' in [[llm]] (known: kind, url, "
                    "timeout_s)", key);
    if (p->llm_seen & (1u << i))
        return perr(p, "key '%s' appears twice in this [[llm]]", key);
    p->llm_seen |= 1u << i;
    if (i == 2) {
        double f = v->type == V_INT ? (double)v->i : v->f;
        if ((v->type != V_INT && v->type != V_FLOAT) || !(f >= 1 && f <= 86400))
            return perr(p, "timeout_s must be a number between 1 and 86400");
        l->timeout_s = f;
        return 0;
    }
    if (v->type != V_STRING)
        return perr(p, "%s must be a string", key);
    if (i == 1)
        return llm_url(p, l, v);
    if (strcmp(v->s, "ollama") == 0)
        l->kind = NODE_LLM_OLLAMA;
    else if (strcmp(v->s, "openai") == 0)
        l->kind = NODE_LLM_OPENAI;
    else
        return perr(p, "kind must be \"ollama\" or \"openai\" (an "
                    "OpenAI-compatible server), not \"%.40s\"", v->s);
    return 0;
}

static int apply_label(parser *p, const char *key, value *v)
{
    node_config *c = p->c;
    if (v->type != V_STRING)
        return perr(p, "label %s must be a string", key);
    for (size_t i = 0; i < c->n_labels; i++)
        if (strcmp(c->label_keys[i], key) == 0)
            return perr(p, "key '%s' appears twice in [labels]", key);
    if (c->n_labels == NODE_CONFIG_MAX_LABELS)
        return perr(p, "more than %u labels", NODE_CONFIG_MAX_LABELS);
    char *k = strdup(key);
    if (!k)
        return perr(p, "out of memory");
    c->label_keys[c->n_labels] = k;
    c->label_values[c->n_labels++] = v->s;
    v->s = NULL;
    return 0;
}

/* The index in keys[] of a price's other spelling (micros / cents), or
 * SIZE_MAX. */
static size_t price_twin(key_id id)
{
    key_id twin = id == K_GPU ? K_GPU_CENTS : id == K_GPU_CENTS ? K_GPU
                : id == K_CPU ? K_CPU_CENTS : id == K_CPU_CENTS ? K_CPU
                : id == K_MEM ? K_MEM_CENTS : id == K_MEM_CENTS ? K_MEM
                : id == K_LLM_PRICE ? K_LLM_SECOND : id == K_LLM_SECOND ? K_LLM_PRICE
                : id;
    for (size_t i = 0; twin != id && i < sizeof keys / sizeof *keys; i++)
        if (keys[i].id == twin)
            return i;
    return SIZE_MAX;
}

static int assign(parser *p, const char *key, value *v)
{
    if (!p->section[0])
        return perr(p, "key '%s' outside a [section]", key);
    if (strcmp(p->section, "labels") == 0)
        return apply_label(p, key, v);
    if (strcmp(p->section, "llm") == 0)
        return llm_assign(p, key, v);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const key_def *k = &keys[i];
        if (strcmp(k->section, p->section) != 0 || strcmp(k->name, key) != 0)
            continue;
        if (p->seen_keys & (1ull << i))
            return perr(p, "key '%s' appears twice in [%s]", key, p->section);
        size_t other = price_twin(k->id);
        if (other != SIZE_MAX && (p->seen_keys & (1ull << other)))
            return perr(p, "'%s' and '%s' set the same price%s: keep one", key,
                        keys[other].name, k->id == K_LLM_PRICE || k->id == K_LLM_SECOND
                        ? " (an llm price is per token or per second)" : "");
        p->seen_keys |= 1ull << i;
        if (k->type == V_FLOAT && v->type == V_INT) {
            v->type = V_FLOAT;
            v->f = (double)v->i;
        }
        if (v->type != k->type)
            return perr(p, "%s must be %s", key, type_name(k->type));
        return apply(p, k, v);
    }
    return perr(p, "unknown key '%s' in [%s]", key, p->section);
}

static int parse_assignment(parser *p, const char *s, const char *end)
{
    const char *q = s;
    while (q < end && is_key_char(*q))
        q++;
    size_t n = (size_t)(q - s);
    const char *eq = skip_ws(q, end);
    if (n == 0)
        return perr(p, eq < end && *eq == '=' ? "missing key before '='"
                                              : "expected key = value");
    if (eq >= end || *eq != '=')
        return perr(p, eq < end && *eq == '.' ? "dotted keys are not supported"
                                  : "expected '=' after the key");
    char key[64];
    if (n >= sizeof key)
        return perr(p, "key too long");
    memcpy(key, s, n);
    key[n] = '\0';
    const char *vs = skip_ws(eq + 1, end);
    value v = {0};
    int rc = parse_value(p, &vs, end, &v);
    if (rc == 0 && !rest_is_empty(vs, end))
        rc = perr(p, "unexpected text after the value");
    if (rc == 0)
        rc = assign(p, key, &v);
    value_free(&v);
    return rc;
}

static int parse_line(parser *p, const char *s, const char *end)
{
    if (end > s && end[-1] == '\r')
        end--;
    s = skip_ws(s, end);
    if (s == end || *s == '#')
        return 0;
    if (*s == '[')
        return parse_header(p, s, end);
    return parse_assignment(p, s, end);
}

int node_config_parse(node_config *c, const char *text, size_t len,
                      const char *file, char *err, size_t errlen)
{
    parser p = { .c = c, .file = file ? file : "<config>", .err = err,
                 .errlen = errlen };
    if (len > NODE_CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u bytes", p.file,
                 NODE_CONFIG_MAX_BYTES);
        return -1;
    }
    const char *s = text, *end = text + len;
    while (s < end) {
        p.line++;
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl ? nl : end;
        if (memchr(s, '\0', (size_t)(eol - s)))
            return perr(&p, "NUL byte");
        if (parse_line(&p, s, eol) != 0)
            return -1;
        s = nl ? nl + 1 : end;
    }
    for (size_t i = 0; i < c->n_llm; i++)
        if (!c->llm[i].kind || !c->llm[i].url) {
            p.line = p.llm_line[i];
            return perr(&p, "this [[llm]] needs %s", !c->llm[i].kind
                        ? "kind = \"ollama\" or \"openai\""
                        : "url = \"http://HOST:PORT\"");
        }
    if (c->backend == NODE_BACKEND_SLURM &&
        (!c->slurm_partition || !c->slurm_spool)) {
        snprintf(err, errlen, "%s: [backend] kind = \"slurm\" needs "
                 "partition = \"NAME\" and spool = \"/shared/folder\"",
                 p.file);
        return -1;
    }
    if (c->backend == NODE_BACKEND_SLURM &&
        !c->slurm_rest_user != !c->slurm_rest_token) {
        snprintf(err, errlen, "%s: [backend] slurmrestd_user and "
                 "slurmrestd_token_file go together (JWT)", p.file);
        return -1;
    }
    return 0;
}

void node_config_defaults(node_config *c)
{
    memset(c, 0, sizeof *c);
    c->sandbox = 1;
    c->heartbeat_s = 5;
    /* The node-agent handoff's example prices and limit. */
    c->gpu_hour_micros = 500000;      /* $0.50 */
    c->cpu_hour_micros = 20000;       /* $0.02 */
    c->memory_gb_hour_micros = 10000; /* $0.01 */
    c->max_concurrent_jobs = 4;
    c->max_output_kb = NODE_DEFAULT_OUTPUT_KB;
    c->max_scratch_mb = NODE_DEFAULT_SCRATCH_MB;
    c->max_file_mb = NODE_DEFAULT_FILE_MB;
    c->max_job_files_mb = NODE_DEFAULT_JOB_FILES_MB;
    c->llm_1k_tokens_micros = 1000;  /* $1 per million tokens */
    c->llm_refresh_s = NODE_LLM_REFRESH_S;
    c->backend = NODE_BACKEND_LOCAL;
    c->slurm_default_memory_mb = 512;
    c->slurm_poll_s = 2;
}

int node_config_load(node_config *c, const char *path, char *err,
                     size_t errlen)
{
    node_config_defaults(c);
    size_t len = 0;
    char *text = node_read_file(path, NODE_CONFIG_MAX_BYTES, &len);
    if (!text) {
        if (errno == EFBIG)
            snprintf(err, errlen, "%s: larger than %u bytes", path,
                     NODE_CONFIG_MAX_BYTES);
        else
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = node_config_parse(c, text, len, path, err, errlen);
    free(text);
    return rc;
}

void node_config_free(node_config *c)
{
    if (!c)
        return;
    free(c->orchestrator_url);
    free(c->orchestrator_key);
    free(c->orchestrator_ca_file);
    free(c->modules);
    free(c->container_host);
    free(c->api_listen);
    for (size_t i = 0; i < c->n_allow_images; i++)
        free(c->allow_images[i]);
    free(c->allow_images);
    for (size_t i = 0; i < c->n_llm_model_prices; i++)
        free(c->llm_model_prices[i]);
    free(c->llm_model_prices);
    for (size_t i = 0; i < c->n_llm_model_second_prices; i++)
        free(c->llm_model_second_prices[i]);
    free(c->llm_model_second_prices);
    free(c->slurm_partition);
    free(c->slurm_account);
    free(c->slurm_qos);
    free(c->slurm_spool);
    free(c->slurm_command);
    free(c->slurm_rest);
    free(c->slurm_rest_user);
    free(c->slurm_rest_token);
    for (size_t i = 0; i < c->n_labels; i++) {
        free(c->label_keys[i]);
        free(c->label_values[i]);
    }
    for (size_t i = 0; i < c->n_llm; i++)
        free(c->llm[i].url);
    node_config_defaults(c);
}

int node_config_image_allowed(const node_config *c, const char *image)
{
    for (size_t i = 0; image && i < c->n_allow_images; i++)
        if (fnmatch(c->allow_images[i], image, 0) == 0)
            return 1;
    return 0;
}

int node_config_set_container_host(node_config *c, const char *host,
                                   char *err, size_t errlen)
{
    if (!host || strncmp(host, "unix://", 7) != 0 || !host[7]) {
        snprintf(err, errlen, "--container-host must be unix:///PATH (the "
                 "container engine's socket), not '%s'", host ? host : "");
        return -1;
    }
    char *copy = strdup(host);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(c->container_host);
    c->container_host = copy;
    return 0;
}

/* A basic string: quotes, backslashes and control characters escaped. */
static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '\t')
            fputs("\\t", f);
        else if (*s == '\r')
            fputs("\\r", f);
        else if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

int node_config_set_ca_file(node_config *c, const char *path)
{
    char *copy = *path ? strdup(path) : NULL;
    if (!copy) {
        fprintf(stderr, "rhizos-node: --ca-file: %s\n", *path ? "out of memory"
                : "give a PEM file of CA certificates");
        return -1;
    }
    free(c->orchestrator_ca_file);
    c->orchestrator_ca_file = copy;
    return 0;
}

static void put_orchestrator(FILE *f, const node_config *c)
{
    fputs("[orchestrator]\nurl = ", f);
    put_string(f, c->orchestrator_url ? c->orchestrator_url : NODE_DEFAULT_URL);
    if (c->orchestrator_key) {
        fputs("\nkey = ", f);
        put_string(f, c->orchestrator_key);
    } else {
        fputs("\n# Pin the orchestrator's key (GET /api/v1/identity): registration\n"
              "# refuses an orchestrator answering another.\n# key = \"<64 hex>\"", f);
    }
    if (c->orchestrator_ca_file) {
        fputs("\nca_file = ", f);
        put_string(f, c->orchestrator_ca_file);
    }
}

/* A [pricing] list of model prices as written (nothing when empty). */
static void put_prices(FILE *m, const char *key, char **v, size_t n)
{
    if (!n)
        return;
    fprintf(m, "%s = [", key);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", m);
        put_string(m, v[i]);
    }
    fputs("]\n", m);
}

/* [pricing]'s llm prices as written (or a commented example), with the
 * blank line after; malloc'ed, NULL when out of memory. */
static char *model_prices_text(const node_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return NULL;
    if (c->llm_per_second)
        fprintf(m, "llm_second_micros = %llu\n", (unsigned long long)c->llm_second_micros);
    else
        fprintf(m, "llm_1k_tokens_micros = %llu\n",
                (unsigned long long)c->llm_1k_tokens_micros);
    if (!c->n_llm_model_prices && !c->n_llm_model_second_prices)
        fputs("# A model's own price: llm_model_prices = [\"llama3:8b=2000\"]\n"
              "# (per 1,000 tokens), llm_model_second_prices = [\"qwen2:72b=300\"]\n"
              "# (per second of its run)\n", m);
    put_prices(m, "llm_model_prices", c->llm_model_prices, c->n_llm_model_prices);
    put_prices(m, "llm_model_second_prices", c->llm_model_second_prices,
               c->n_llm_model_second_prices);
    fputc('\n', m);
    fclose(m);
    return text;
}

static void put_container(FILE *f, const node_config *c)
{
    fputs("\n# The container engine of docker jobs (Docker Engine API); "
          "default:\n# DOCKER_HOST, else /var/run/docker.sock, else "
          "/run/podman/podman.sock.\n[container]\n", f);
    if (c->container_host) {
        fputs("host = ", f);
        put_string(f, c->container_host);
        fputc('\n', f);
    } else {
        fputs("# host = \"unix:///run/podman/podman.sock\"\n", f);
    }
    fputs("# Images a client may run here without a module (rhizos run -t "
          "docker -i IMAGE),\n# as globs; none by default.\n", f);
    if (c->n_allow_images) {
        fputs("allow_images = [", f);
        for (size_t i = 0; i < c->n_allow_images; i++) {
            if (i)
                fputs(", ", f);
            put_string(f, c->allow_images[i]);
        }
        fputs("]\n", f);
    } else {
        fputs("# allow_images = [\"registry.example/tools/*\"]\n", f);
    }
}

static void put_llm(FILE *f, const node_config *c)
{
    fputs("\n# Model servers this node serves llm jobs from (docs/llm.md), one\n"
          "# [[llm]] each: kind = \"ollama\" or \"openai\", url, timeout_s.\n", f);
    for (size_t i = 0; i < c->n_llm; i++) {
        fprintf(f, "[[llm]]\nkind = \"%s\"\nurl = ",
                c->llm[i].kind == NODE_LLM_OPENAI ? "openai" : "ollama");
        put_string(f, c->llm[i].url);
        fprintf(f, "\ntimeout_s = %.17g\n", c->llm[i].timeout_s);
    }
    if (!c->n_llm)
        fputs("# [[llm]]\n# kind = \"ollama\"\n# url = \"http://127.0.0.1:11434\"\n", f);
}
/* Written commented out while unset: an unset address may move to a free
 * port when 7180 is taken (several nodes on one machine), a set one may not. */
static void put_api(FILE *f, const node_config *c)
{
    fputs("\n# The node's local status API, read by `rhizos-node status`: \"off\",\n"
          "# or an IP address and port that only this machine should reach.\n"
          "[api]\n", f);
    if (c->api_listen) {
        fputs("listen = ", f);
        put_string(f, c->api_listen);
        fputc('\n', f);
    } else {
        fputs("# listen = \"" NODE_API_DEFAULT "\"\n", f);
    }
}


/* Only a Slurm gateway's: a plain node's file stays as it was. */
static void put_backend(FILE *f, const node_config *c)
{
    if (c->backend != NODE_BACKEND_SLURM)
        return;
    fputs("\n# Jobs go to Slurm as batch jobs (docs/node.md \"[backend]\").\n"
          "[backend]\nkind = \"slurm\"\n", f);
    const char *const names[] = { "partition", "account", "qos", "spool",
                                  "command", "slurmrestd", "slurmrestd_user",
                                  "slurmrestd_token_file" };
    const char *const vals[] = { c->slurm_partition, c->slurm_account,
                                 c->slurm_qos, c->slurm_spool,
                                 c->slurm_command, c->slurm_rest,
                                 c->slurm_rest_user, c->slurm_rest_token };
    for (size_t i = 0; i < 8; i++)
        if (vals[i]) {
            fprintf(f, "%s = ", names[i]);
            put_string(f, vals[i]);
            fputc('\n', f);
        }
    fprintf(f, "default_memory_mb = %u\npoll_s = %.17g\n",
            c->slurm_default_memory_mb, c->slurm_poll_s);
}

char *node_config_format(const node_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputs("# rhizos-node configuration (docs/node.md).\n\n", f);
    put_orchestrator(f, c);
    fprintf(f, "\n\n[node]\n"
            "# Jobs from the network run under bubblewrap; false runs them\n# unconfined, as --no-sandbox does (trusted work only).\n"
            "sandbox = %s\nheartbeat_s = %g\n# How often the [[llm]] servers' model lists are read again (s).\n"
            "llm_refresh_s = %g\n", c->sandbox ? "true" : "false",
            c->heartbeat_s, c->llm_refresh_s);
    if (c->modules) {
        fputs("modules = ", f);
        put_string(f, c->modules);
        fputc('\n', f);
    } else {
        fputs("# modules = \"/srv/modules:/opt/more-modules\"\n", f);
    }
    char *prices = model_prices_text(c);
    if (!prices) {   /* a config without its prices would bill at the defaults */
        fclose(f);
        free(text);
        return NULL;
    }
    fprintf(f, "\n# What this node charges, in micro-dollars (1e-6 USD; 1000000 is $1)\n"
            "# per hour of each resource.\n[pricing]\ngpu_hour_micros = %llu\ncpu_hour_micros = "
            "%llu\nmemory_gb_hour_micros = %llu\n# llm jobs: per 1,000 tokens (prompt and completion),\n"
            "# or llm_second_micros per second of the run instead (not both).\n%s[limits]\n"
            "max_concurrent_jobs = %u\n# Memory cap of one job in MiB, also "
            "when its module names none (0: the module's own requirement,\n"
            "# else 2048 in the sandbox).\nmax_memory_mb = "
            "%u\n# Largest outputs of one job in KiB (1-%u); more fails the "
            "job.\nmax_output_kb = %u\n# Most scratch space (MiB, 1-%u) a "
            "step may ask for with requirements.scratch_mb;\n# more fails "
            "the step.\nmax_scratch_mb = %u\n# File outputs (MiB, 1-%u): one "
            "file a job makes or takes, and all\n# of one job's files; more "
            "fails the job.\nmax_file_mb = %u\nmax_job_files_mb = %u\n"
            "# As root, sandboxed jobs' "
            "host uids (no /etc/passwd or /etc/group\n# entry may use one):"
            "\n# step_uid_first = 1900000000\n# step_uid_count = 256\n",
            (unsigned long long)c->gpu_hour_micros,
            (unsigned long long)c->cpu_hour_micros,
            (unsigned long long)c->memory_gb_hour_micros,
            prices,
            c->max_concurrent_jobs, c->max_memory_mb, NODE_MAX_OUTPUT_KB,
            c->max_output_kb, NODE_MAX_SCRATCH_MB, c->max_scratch_mb,
            NODE_MAX_FILE_MB, c->max_file_mb, c->max_job_files_mb);
    free(prices);
    put_container(f, c);
    put_llm(f, c);
    put_api(f, c);
    put_backend(f, c);
    fputs("\n# Free-form labels jobs can require (region, tier, ...).\n"
          "[labels]\n", f);
    for (size_t i = 0; i < c->n_labels; i++) {
        fprintf(f, "%s = ", c->label_keys[i]);
        put_string(f, c->label_values[i]);
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
