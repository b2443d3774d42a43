/* Module manifests: <dir>/module.json (DESIGN §4) into struct rz_module.
 *
 * Every problem in a manifest is reported (RZ_EMANIFEST, FILE:LINE:COLUMN of
 * the offending value) before the manifest is rejected, so an author fixes
 * them all in one go. */
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "module/module_impl.h"
#include "rhizos/schema.h"

/* requirements.scratch_mb: a runner bounds it further (its maximum). */
#define MAX_SCRATCH_MB (1u << 20)

typedef struct mctx {
    const char *file;      /* path of module.json, for diagnostics */
    const char *text;
    size_t len;
    rz_diags *diags;
    unsigned errors;
} mctx;

/* ---- Locations: walk a JSON pointer over the raw text ---- */

static size_t skip_ws(const char *t, size_t n, size_t i)
{
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

static size_t skip_string(const char *t, size_t n, size_t i)
{
    for (i++; i < n && t[i] != '"'; i++)
        if (t[i] == '\\')
            i++;
    return i < n ? i + 1 : n;
}

/* Past the value starting at `i` (the text already parsed, so it is valid). */
static size_t skip_value(const char *t, size_t n, size_t i)
{
    if (i >= n)
        return n;
    if (t[i] == '"')
        return skip_string(t, n, i);
    if (t[i] != '{' && t[i] != '[') {
        while (i < n && !strchr(",}] \t\r\n", t[i]))
            i++;
        return i;
    }
    size_t depth = 0;
    for (; i < n; i++) {
        if (t[i] == '"') {
            i = skip_string(t, n, i) - 1;
        } else if (t[i] == '{' || t[i] == '[') {
            depth++;
        } else if ((t[i] == '}' || t[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return n;
}

/* Does the raw key at t[i] (a quoted string) equal pointer token tok[0..tn)?
 * Keys with escapes are not matched; the caller then falls back to the
 * enclosing value, which is still a useful location. */
static bool key_equals(const char *t, size_t n, size_t i, const char *tok, size_t tn)
{
    size_t k = i + 1, j = 0;
    while (k < n && t[k] != '"' && j < tn) {
        char want = tok[j];
        size_t adv = 1;
        if (want == '~' && j + 1 < tn) {
            want = tok[j + 1] == '1' ? '/' : '~';
            adv = 2;
        }
        if (t[k] != want)
            return false;
        k++;
        j += adv;
    }
    return j == tn && k < n && t[k] == '"';
}

/* Offset of the child named by `tok` in the container at `i`, or 0 if none. */
static size_t find_child(const char *t, size_t n, size_t i, const char *tok, size_t tn)
{
    if (t[i] == '{') {
        for (i = skip_ws(t, n, i + 1); i < n && t[i] == '"';) {
            bool match = key_equals(t, n, i, tok, tn);
            i = skip_ws(t, n, skip_string(t, n, i));
            i = skip_ws(t, n, i + 1);   /* past ':' */
            if (match)
                return i;
            i = skip_ws(t, n, skip_value(t, n, i));
            if (i < n && t[i] == ',')
                i = skip_ws(t, n, i + 1);
        }
        return 0;
    }
    if (t[i] == '[') {
        char *end;
        unsigned long idx = strtoul(tok, &end, 10);
        if (end != tok + tn)
            return 0;
        i = skip_ws(t, n, i + 1);
        for (unsigned long k = 0; i < n && t[i] != ']'; k++) {
            if (k == idx)
                return i;
            i = skip_ws(t, n, skip_value(t, n, i));
            if (i < n && t[i] == ',')
                i = skip_ws(t, n, i + 1);
        }
    }
    return 0;
}

static void offset_to_linecol(const char *t, size_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (t[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void locate(const mctx *c, const char *pointer, uint32_t *line, uint32_t *col)
{
    size_t i = skip_ws(c->text, c->len, 0);
    const char *p = pointer;
    while (*p == '/' && i < c->len) {
        const char *tok = p + 1;
        size_t tn = strcspn(tok, "/");
        size_t at = find_child(c->text, c->len, i, tok, tn);
        if (!at)
            break;
        i = at;
        p = tok + tn;
    }
    offset_to_linecol(c->text, i, line, col);
}

static void bad(mctx *c, const char *pointer, const char *fmt, ...) RZ_PRINTF(3, 4);

static void bad(mctx *c, const char *pointer, const char *fmt, ...)
{
    uint32_t line, col;
    locate(c, pointer, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    rz__vdiag(c->diags, RZ_SEV_ERROR, RZ_EMANIFEST, c->file, line, col,
              pointer, fmt, ap);
    va_end(ap);
    c->errors++;
}

/* ---- Field checks ---- */

static const char *const port_types[] = {
    "string", "number", "integer", "boolean", "object", "array", "any", "file"
};

static bool known_type(const char *t)
{
    for (size_t i = 0; i < RZ_ARRAY_LEN(port_types); i++)
        if (strcmp(t, port_types[i]) == 0)
            return true;
    return false;
}

/* Module ids travel in URLs (chain://<id>) and in "<id>@<spec>" references. */
static bool valid_id(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* A string member; NULL (and a diagnostic if `required`) when absent or not
 * a string. */
static const char *get_str(mctx *c, const cJSON *o, const char *key,
                           const char *ptr, bool required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required)
            bad(c, ptr, "missing required field '%s'", key);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        char *p = rz__asprintf("%s/%s", ptr, key);
        bad(c, p ? p : ptr, "'%s' must be a string", key);
        free(p);
        return NULL;
    }
    return v->valuestring;
}

/* A non-negative number member, `def` when absent. */
static double get_num(mctx *c, const cJSON *o, const char *key,
                      const char *ptr, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return def;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
        char *p = rz__asprintf("%s/%s", ptr, key);
        bad(c, p ? p : ptr, "'%s' must be a non-negative number", key);
        free(p);
        return def;
    }
    return v->valuedouble;
}

static bool get_bool(mctx *c, const cJSON *o, const char *key,
                     const char *ptr, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return def;
    if (!cJSON_IsBool(v)) {
        char *p = rz__asprintf("%s/%s", ptr, key);
        bad(c, p ? p : ptr, "'%s' must be true or false", key);
        free(p);
        return def;
    }
    return cJSON_IsTrue(v);
}

/* Optional member that must be an object when present. */
static const cJSON *get_obj(mctx *c, const cJSON *o, const char *key, const char *ptr)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && !cJSON_IsObject(v)) {
        char *p = rz__asprintf("%s/%s", ptr, key);
        bad(c, p ? p : ptr, "'%s' must be an object", key);
        free(p);
        return NULL;
    }
    return v;
}

static int load_ports(mctx *c, const cJSON *root, const char *key, bool inputs,
                      rz__port **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!arr)
        return RZ_OK;
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/%s", key);
    if (!cJSON_IsArray(arr)) {
        bad(c, ptr, "'%s' must be an array of {name, type}", key);
        return RZ_OK;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    rz__port *ports = rz__calloc(n ? n : 1, sizeof *ports);
    if (!ports)
        return RZ_ENOMEM;
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        snprintf(ptr, sizeof ptr, "/%s/%zu", key, k);
        if (!cJSON_IsObject(it)) {
            bad(c, ptr, "each of '%s' must be an object {name, type}", key);
            k++;
            continue;
        }
        const char *name = get_str(c, it, "name", ptr, true);
        const char *type = get_str(c, it, "type", ptr, false);
        if (type && !known_type(type)) {
            char tp[80];
            snprintf(tp, sizeof tp, "%s/type", ptr);
            bad(c, tp, "unknown type '%s' (expected string, number, integer, "
                "boolean, object, array, any or file)", type);
        }
        /* An input with a default need not be wired; otherwise it must be
         * unless the manifest says "required": false. */
        bool def_req = inputs && !cJSON_GetObjectItemCaseSensitive(it, "default");
        bool req = inputs ? get_bool(c, it, "required", ptr, def_req) : false;
        for (size_t j = 0; name && j < k; j++)
            if (ports[j].name && strcmp(ports[j].name, name) == 0) {
                char np[80];
                snprintf(np, sizeof np, "%s/name", ptr);
                bad(c, np, "duplicate %s '%s'", inputs ? "input" : "output", name);
                name = NULL;
            }
        ports[k].name = rz__strdup(name);
        ports[k].type = rz__strdup(type ? type : "any");
        ports[k].required = req;
        if ((name && !ports[k].name) || !ports[k].type) {
            *out = ports;
            *n_out = k + 1;
            return RZ_ENOMEM;
        }
        k++;
    }
    *out = ports;
    *n_out = k;
    return RZ_OK;
}

static int load_creds(mctx *c, const cJSON *root, rz_module *m)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "credentials");
    if (!arr)
        return RZ_OK;
    if (!cJSON_IsArray(arr)) {
        bad(c, "/credentials", "'credentials' must be an array of "
            "{name, type, required}");
        return RZ_OK;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    m->creds = rz__calloc(n ? n : 1, sizeof *m->creds);
    if (!m->creds)
        return RZ_ENOMEM;
    const cJSON *it;
    size_t k = 0;
    cJSON_ArrayForEach(it, arr) {
        char ptr[64];
        snprintf(ptr, sizeof ptr, "/credentials/%zu", k++);
        if (!cJSON_IsObject(it)) {
            bad(c, ptr, "each credential must be an object {name, type, required}");
            continue;
        }
        const char *name = get_str(c, it, "name", ptr, true);
        const char *type = get_str(c, it, "type", ptr, true);
        bool req = get_bool(c, it, "required", ptr, true);
        rz__cred_decl *d = &m->creds[m->n_creds++];
        d->name = rz__strdup(name);
        d->type = rz__strdup(type);
        d->required = req;
        if ((name && !d->name) || (type && !d->type))
            return RZ_ENOMEM;
    }
    return RZ_OK;
}

static void check_gpu(mctx *c, const cJSON *req)
{
    const cJSON *gpu = get_obj(c, req, "gpu", "/requirements");
    if (!gpu)
        return;
    get_num(c, gpu, "count", "/requirements/gpu", 0);
    get_num(c, gpu, "vram_mb", "/requirements/gpu", 0);
    get_str(c, gpu, "vendor", "/requirements/gpu", false);
    const cJSON *cc = cJSON_GetObjectItemCaseSensitive(gpu, "min_compute_capability");
    if (cc && !cJSON_IsString(cc) && !cJSON_IsNumber(cc))
        bad(c, "/requirements/gpu/min_compute_capability",
            "'min_compute_capability' must be a string like \"8.0\" or a number");
}

static void load_requirements(mctx *c, const cJSON *root, rz_module *m)
{
    const cJSON *req = get_obj(c, root, "requirements", "");
    m->requirements = req;
    if (!req)
        return;
    get_str(c, req, "adapter", "/requirements", false);
    get_num(c, req, "cpu_cores", "/requirements", 0);
    double mem = get_num(c, req, "memory_mb", "/requirements", 0);
    m->memory_mb = mem > UINT32_MAX ? UINT32_MAX : (uint32_t)mem;
    get_num(c, req, "storage_gb", "/requirements", 0);
    double scratch = get_num(c, req, "scratch_mb", "/requirements", 0);
    if (scratch > MAX_SCRATCH_MB || scratch != (double)(uint32_t)scratch)
        bad(c, "/requirements/scratch_mb", "'scratch_mb' must be a whole "
            "number of MiB, at most %u", MAX_SCRATCH_MB);
    else
        m->scratch_mb = (uint32_t)scratch;
    check_gpu(c, req);
}

static int load_command(mctx *c, const cJSON *ex, rz_module *m)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(ex, "command");
    if (!cmd) {
        if (strcmp(m->adapter, "process") == 0)
            bad(c, "/exec", "the process adapter needs 'command' "
                "(e.g. [\"python3\", \"./main.py\"])");
        return RZ_OK;
    }
    int n = cJSON_IsArray(cmd) ? cJSON_GetArraySize(cmd) : 0;
    if (n == 0) {
        bad(c, "/exec/command", "'command' must be a non-empty array of strings");
        return RZ_OK;
    }
    m->command = rz__calloc((size_t)n + 1, sizeof *m->command);
    if (!m->command)
        return RZ_ENOMEM;
    int k = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, cmd) {
        if (!cJSON_IsString(w) || !w->valuestring[0]) {
            char ptr[48];
            snprintf(ptr, sizeof ptr, "/exec/command/%d", k);
            bad(c, ptr, "each word of 'command' must be a non-empty string");
            continue;
        }
        if (!(m->command[k++] = rz__strdup(w->valuestring)))
            return RZ_ENOMEM;
    }
    return RZ_OK;
}

/* exec.image / pull / read_only: required and checked for the docker
 * adapter, ignored (but still type-checked) for others. */
static void load_container(mctx *c, const cJSON *ex, rz_module *m)
{
    bool docker = strcmp(m->adapter, "docker") == 0;
    m->image = get_str(c, ex, "image", "/exec", false);
    if (docker && (!m->image || !*m->image)) {
        bad(c, "/exec", "the docker adapter needs 'image' "
            "(e.g. \"localhost/rhizos-demo:latest\")");
        m->image = NULL;
    }
    m->pull = get_str(c, ex, "pull", "/exec", false);
    if (m->pull && strcmp(m->pull, "if-not-present") != 0 &&
        strcmp(m->pull, "always") != 0 && strcmp(m->pull, "never") != 0) {
        bad(c, "/exec/pull", "'pull' must be \"if-not-present\", \"always\" "
            "or \"never\"");
        m->pull = NULL;
    }
    m->read_only = get_bool(c, ex, "read_only", "/exec", true);
}

/* A relative path inside the module folder: no leading '/', no ".."
 * part, no empty name. */
static bool inside_path(const char *p)
{
    if (!*p || *p == '/')
        return false;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return false;
        s += n;
        if (*s == '/' && *++s == '\0')
            return false;
    }
    return true;
}

/* exec.module / sha256: required and checked for the wasm adapter,
 * type-checked for others. */
static void load_wasm(mctx *c, const cJSON *ex, rz_module *m)
{
    bool wasm = strcmp(m->adapter, "wasm") == 0;
    m->wasm_module = get_str(c, ex, "module", "/exec", false);
    m->wasm_sha256 = get_str(c, ex, "sha256", "/exec", false);
    if (!wasm)
        return;
    if (!m->wasm_module || !inside_path(m->wasm_module)) {
        bad(c, "/exec", "the wasm adapter needs 'module', a path inside the "
            "module's folder (e.g. \"./step.wasm\")");
        m->wasm_module = NULL;
    }
    const char *h = m->wasm_sha256;
    bool hex = h && strlen(h) == 64;
    for (size_t i = 0; hex && i < 64; i++)
        hex = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f');
    if (!hex) {
        bad(c, "/exec", "the wasm adapter needs 'sha256', the module file's "
            "SHA-256 as 64 lowercase hex digits");
        m->wasm_sha256 = NULL;
    }
}

static int load_exec(mctx *c, const cJSON *root, rz_module *m)
{
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exec");
    if (!ex) {
        bad(c, "", "missing required field 'exec' (how the module runs)");
        return RZ_OK;
    }
    if (!cJSON_IsObject(ex)) {
        bad(c, "/exec", "'exec' must be an object");
        return RZ_OK;
    }
    const char *adapter = get_str(c, ex, "adapter", "/exec", false);
    m->adapter = rz__strdup(adapter ? adapter : "process");
    if (!m->adapter)
        return RZ_ENOMEM;
    m->network = get_bool(c, ex, "network", "/exec", false);
    load_container(c, ex, m);
    load_wasm(c, ex, m);
    double t = get_num(c, ex, "timeout_s", "/exec", 0);
    m->timeout_s = t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
    return load_command(c, ex, m);
}

static void load_estimate(mctx *c, const cJSON *root, rz_module *m)
{
    const cJSON *est = get_obj(c, root, "estimate", "");
    if (est)
        m->estimate_seconds = get_num(c, est, "seconds", "/estimate", 0);
}

static int load_header(mctx *c, const cJSON *root, rz_module *m)
{
    const char *id = get_str(c, root, "id", "", true);
    if (id && !valid_id(id)) {
        bad(c, "/id", "module id '%s' must be 1-128 letters, digits, '-', "
            "'_' or '.'", id);
        id = NULL;
    }
    const char *ver = get_str(c, root, "version", "", true);
    if (ver && rz__semver_parse(ver, m->ver) != RZ_OK) {
        bad(c, "/version", "version '%s' is not MAJOR.MINOR.PATCH "
            "(e.g. 1.0.0)", ver);
        ver = NULL;
    }
    const char *name = get_str(c, root, "name", "", false);
    const char *desc = get_str(c, root, "description", "", false);
    m->id = rz__strdup(id ? id : "");
    m->version = rz__strdup(ver ? ver : "");
    m->name = rz__strdup(name ? name : (id ? id : ""));
    m->description = rz__strdup(desc ? desc : "");
    if (!m->id || !m->version || !m->name || !m->description)
        return RZ_ENOMEM;
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(root, "outputs_check");
    if (oc && !(cJSON_IsString(oc) && (strcmp(oc->valuestring, "strict") == 0 ||
                                       strcmp(oc->valuestring, "warn") == 0)))
        bad(c, "/outputs_check", "'outputs_check' must be \"strict\" or \"warn\"");
    else
        m->outputs_warn = oc && strcmp(oc->valuestring, "warn") == 0;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (kind && !(cJSON_IsString(kind) && (strcmp(kind->valuestring, "job") == 0 ||
                                           strcmp(kind->valuestring, "service") == 0)))
        bad(c, "/kind", "'kind' must be \"job\" (the default: runs and exits) or "
            "\"service\" (runs until stopped)");
    else
        m->service = kind && strcmp(kind->valuestring, "service") == 0;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (cfg && !cJSON_IsObject(cfg))
        bad(c, "/config", "'config' must be a JSON Schema object");
    else
        m->config = cfg;
    return RZ_OK;
}

/* A pointer member of "local_llm": "" or "/..." (RFC 6901). */
static const char *local_ptr(mctx *c, const cJSON *o, const char *key, bool required)
{
    const char *p = get_str(c, o, key, "/local_llm", required);
    if (p && *p && *p != '/') {
        char *at = rz__asprintf("/local_llm/%s", key);
        bad(c, at ? at : "/local_llm", "'%s' must be a JSON pointer into the "
            "step's config (e.g. \"/llm/provider\")", key);
        free(at);
        return NULL;
    }
    return p;
}

static const char *local_port(mctx *c, const cJSON *o, const char *key,
                              const rz__port *ports, size_t n)
{
    const char *p = get_str(c, o, key, "/local_llm", false);
    for (size_t i = 0; p && i < n; i++)
        if (strcmp(ports[i].name, p) == 0)
            return p;
    if (p) {
        char *at = rz__asprintf("/local_llm/%s", key);
        bad(c, at ? at : "/local_llm", "'%s' must name one of the module's "
            "%s", key, strcmp(key, "input") == 0 ? "inputs" : "outputs");
        free(at);
    }
    return NULL;
}

/* A required bound: the hold and the price are made from it. */
static uint32_t local_bound(mctx *c, const cJSON *o, const char *key, uint32_t max)
{
    if (!cJSON_HasObjectItem(o, key)) {
        bad(c, "/local_llm", "missing required field '%s'", key);
        return 1;
    }
    double v = get_num(c, o, key, "/local_llm", 0);
    if (v >= 1 && v <= max && v == (double)(uint32_t)v)
        return (uint32_t)v;
    char *at = rz__asprintf("/local_llm/%s", key);
    bad(c, at ? at : "/local_llm", "'%s' must be a whole number from 1 to %u",
        key, max);
    free(at);
    return 1;
}

/* "local_llm" (docs/modules.md): a node-served model in place of an API. */
static void load_local_llm(mctx *c, const cJSON *root, rz_module *m)
{
    const cJSON *l = get_obj(c, root, "local_llm", "");
    if (!l)
        return;
    const char *prov = local_ptr(c, l, "provider", true);
    const char *model = local_ptr(c, l, "model", true);
    m->local_llm.context = local_ptr(c, l, "context", false);
    m->local_llm.instructions = get_str(c, l, "instructions", "/local_llm", false);
    m->local_llm.input = local_port(c, l, "input", m->inputs, m->n_inputs);
    m->local_llm.output = local_port(c, l, "output", m->outputs, m->n_outputs);
    m->local_llm.max_tokens = local_bound(c, l, "max_tokens", 1000000);
    m->local_llm.max_prompt_tokens = local_bound(c, l, "max_prompt_tokens",
                                                 1000000000);
    if (prov && model) {
        m->local_llm.provider = prov;
        m->local_llm.model = model;
    }
}

static int load_fields(mctx *c, const cJSON *root, rz_module *m)
{
    int rc;
    if ((rc = load_header(c, root, m)) != RZ_OK ||
        (rc = load_ports(c, root, "inputs", true, &m->inputs, &m->n_inputs)) != RZ_OK ||
        (rc = load_ports(c, root, "outputs", false, &m->outputs, &m->n_outputs)) != RZ_OK ||
        (rc = load_creds(c, root, m)) != RZ_OK ||
        (rc = load_exec(c, root, m)) != RZ_OK)
        return rc;
    load_requirements(c, root, m);
    load_estimate(c, root, m);
    load_local_llm(c, root, m);
    return RZ_OK;
}

static int parse_text(mctx *c, cJSON **out)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(c->text, c->len, &end, false);
    if (*out && cJSON_IsObject(*out))
        return RZ_OK;
    uint32_t line = 1, col = 1;
    if (!*out) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        size_t off = at && at >= c->text && at <= c->text + c->len
                         ? (size_t)(at - c->text) : 0;
        offset_to_linecol(c->text, off, &line, &col);
        rz__diag(c->diags, RZ_SEV_ERROR, RZ_EMANIFEST, c->file, line, col, "",
                 "JSON syntax error in module manifest");
    } else {
        rz__diag(c->diags, RZ_SEV_ERROR, RZ_EMANIFEST, c->file, line, col, "",
                 "a module manifest must be a JSON object");
        cJSON_Delete(*out);
        *out = NULL;
    }
    return RZ_EMANIFEST;
}

int rz__module_load_text(rz_module **out, const char *file, const char *text,
                         size_t len, const char *dir, rz_diags *diags)
{
    *out = NULL;
    mctx c = {.file = file, .text = text, .len = len, .diags = diags};
    cJSON *root = NULL;
    int rc;
    rz_module *m = rz__calloc(1, sizeof *m);
    if (!m) {
        rc = RZ_ENOMEM;
    } else if ((rc = parse_text(&c, &root)) == RZ_OK) {
        m->manifest = root;
        m->dir = dir ? rz__strdup(dir) : NULL;
        m->origin = rz__strdup(file);
        rc = (dir && !m->dir) || !m->origin ? RZ_ENOMEM : load_fields(&c, root, m);
        if (rc == RZ_OK && c.errors)
            rc = RZ_EMANIFEST;
    }
    if (rc == RZ_ENOMEM)
        rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        rz__module_free(m);
        return rc;
    }
    *out = m;
    return RZ_OK;
}

int rz__module_load(rz_module **out, const char *dir, rz_diags *diags)
{
    *out = NULL;
    char *file = rz__asprintf("%s/module.json", dir);
    if (!file)
        return rz__error(RZ_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    int rc = rz__read_file(file, RZ_MODULE_MANIFEST_MAX, &text, &len);
    if (rc != RZ_OK) {
        if (rc == RZ_ETOOBIG)
            rz__diag(diags, RZ_SEV_ERROR, RZ_EMANIFEST, file, 0, 0, "",
                     "manifest larger than the limit of %u bytes",
                     RZ_MODULE_MANIFEST_MAX);
        else
            rz__diag(diags, RZ_SEV_ERROR, RZ_EMANIFEST, file, 0, 0, "", "%s",
                     rz_error_last()->message);
        free(file);
        return rc == RZ_ENOMEM ? rc : RZ_EMANIFEST;
    }
    rc = rz__module_load_text(out, file, text, len, dir, diags);
    free(text);
    free(file);
    return rc;
}

static void free_ports(rz__port *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].type);
    }
    free(p);
}

static void module_canon_free(rz_module *m);

void rz__module_free(rz_module *m)
{
    if (!m)
        return;
    free(m->id);
    free(m->version);
    free(m->name);
    free(m->description);
    free(m->dir);
    free(m->origin);
    free(m->publisher);
    rz_schema_free(m->schema_cache);
    module_canon_free(m);
    cJSON_Delete(m->manifest);
    free_ports(m->inputs, m->n_inputs);
    free_ports(m->outputs, m->n_outputs);
    for (size_t i = 0; i < m->n_creds; i++) {
        free(m->creds[i].name);
        free(m->creds[i].type);
    }
    free(m->creds);
    free(m->adapter);
    for (char **w = m->command; w && *w; w++)
        free(*w);
    free(m->command);
    free(m);
}

/* ---- Accessors ---- */

static const rz__port *find_port(const rz__port *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].name && strcmp(p[i].name, name) == 0)
            return &p[i];
    return NULL;
}

const rz__port *rz__module_input(const rz_module *m, const char *name)
{
    return m && name ? find_port(m->inputs, m->n_inputs, name) : NULL;
}

const rz__port *rz__module_output(const rz_module *m, const char *name)
{
    return m && name ? find_port(m->outputs, m->n_outputs, name) : NULL;
}

bool rz__port_type_ok(const char *t, const cJSON *x)
{
    if (!t || strcmp(t, "any") == 0) return true;
    if (strcmp(t, "string") == 0) return cJSON_IsString(x);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(x);
    if (strcmp(t, "integer") == 0)
        return cJSON_IsNumber(x) && isfinite(x->valuedouble) &&
               x->valuedouble == floor(x->valuedouble);
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(x);
    if (strcmp(t, "object") == 0) return cJSON_IsObject(x);
    if (strcmp(t, "array") == 0) return cJSON_IsArray(x);
    if (strcmp(t, "file") == 0) return rz__file_ref_digest(x) != NULL;
    return true;
}

const char *rz__file_ref_digest(const cJSON *v)
{
    const cJSON *f = cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1
                         ? cJSON_GetObjectItemCaseSensitive(v, "$file") : NULL;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(f, "sha256");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "size");
    const char *hex = cJSON_GetStringValue(h);
    if (!hex || strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64 ||
        !cJSON_IsNumber(n) || n->valuedouble < 0 ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "name")))
        return NULL;
    return hex;
}

const char *rz_module_id(const rz_module *m) { return m ? m->id : NULL; }
const char *rz_module_version(const rz_module *m) { return m ? m->version : NULL; }
const char *rz_module_name(const rz_module *m) { return m ? m->name : NULL; }
const char *rz_module_description(const rz_module *m) { return m ? m->description : NULL; }
const char *rz_module_dir(const rz_module *m) { return m ? m->dir : NULL; }

static int cmp_key(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* Relink every object's members in key order, recursively. */
static int sort_keys(cJSON *v)
{
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
        return RZ_OK;
    size_t n = 0;
    for (cJSON *c = v->child; c; c = c->next)
        n++;
    for (cJSON *c = v->child; c; c = c->next)
        if (sort_keys(c) != RZ_OK)
            return RZ_ENOMEM;
    if (!cJSON_IsObject(v) || n < 2)
        return RZ_OK;
    cJSON **items = rz__malloc(n * sizeof *items);
    if (!items)
        return RZ_ENOMEM;
    size_t i = 0;
    for (cJSON *c = v->child; c; c = c->next)
        items[i++] = c;
    qsort(items, n, sizeof *items, cmp_key);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1];   /* cJSON: head->prev is tail */
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    v->child = items[0];
    free(items);
    return RZ_OK;
}

int rz__manifest_canonical(const cJSON *manifest, char **out)
{
    *out = NULL;
    cJSON *copy = cJSON_Duplicate(manifest, true);
    if (copy)
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "signature");
    char *s = NULL;
    if (copy && sort_keys(copy) == RZ_OK)
        s = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = s;
    return RZ_OK;
}

/* The module's canonical manifest (keys sorted at every level) and its
 * SHA-256: the manifest is not changed after the load, so both are made
 * once and shared by every caller and thread. */
typedef struct rz__module_canon {
    char *json;
    char hex[65];
} rz__module_canon;

static const rz__module_canon *module_canon(const rz_module *m)
{
    void **slot = &((rz_module *)m)->canon_cache;
    rz__module_canon *c = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (c)
        return c;
    cJSON *copy = cJSON_Duplicate(m->manifest, true);
    char *s = NULL;
    if (copy && sort_keys(copy) == RZ_OK)
        s = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    c = s ? rz__malloc(sizeof *c) : NULL;
    if (!c) {
        cJSON_free(s);
        rz__error(RZ_ENOMEM, "out of memory");
        return NULL;
    }
    c->json = s;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)s, strlen(s));
    sodium_bin2hex(c->hex, sizeof c->hex, h, sizeof h);
    void *none = NULL;
    if (!__atomic_compare_exchange_n(slot, &none, c, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        cJSON_free(c->json);   /* a racing caller published first */
        free(c);
        c = none;
    }
    return c;
}

static void module_canon_free(rz_module *m)
{
    rz__module_canon *c = m->canon_cache;
    if (c)
        cJSON_free(c->json);
    free(c);
    m->canon_cache = NULL;
}

int rz_module_manifest_json(const rz_module *m, char **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!m)
        return rz__error(RZ_EINVAL, "module is NULL");
    const rz__module_canon *c = module_canon(m);
    if (!c)
        return RZ_ENOMEM;
    if (!(*out = rz__strdup(c->json)))
        return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

int rz_module_digest(const rz_module *m, char hex[65])
{
    if (!hex)
        return rz__error(RZ_EINVAL, "hex is NULL");
    hex[0] = '\0';
    if (!m)
        return rz__error(RZ_EINVAL, "module is NULL");
    const rz__module_canon *c = module_canon(m);
    if (!c)
        return RZ_ENOMEM;
    memcpy(hex, c->hex, 65);
    return RZ_OK;
}

const char *rz_module_origin(const rz_module *m) { return m ? m->origin : NULL; }
const char *rz_module_publisher(const rz_module *m) { return m ? m->publisher : NULL; }
