/* Lowering: one pass over the document tree that fills the rz_flow model and
 * reports every shape problem (wrong types, missing fields, bad values).
 *
 * The same pass serves every syntax: the builder shape (nodes/connections)
 * and the FluxGraph shape (steps map) may each come as JSON, YAML or CBOR.
 * Pointers are built as the walk descends; a problem is located from its
 * pointer only when it is reported. Kept sub-values (config, inputs, extra
 * keys) are detached from the tree, never copied. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ready_check.h"
#include "flow/loader.h"
#include "rhizos/trigger.h"
#include "trigger/trigger_impl.h"

typedef struct rz__lower lower;

struct rz__lower {
    rz__load *ld;
    rz_flow *f;
    rz__arena *a;
    rz__buf path;       /* JSON pointer of the value being lowered */
    bool oom;
    bool arena_tree;    /* the tree is not ours to take apart: copy */
    size_t cap_steps, cap_conns;
};

/* ---- pointers and problems ---- */

static size_t push_key(lower *L, const char *k)
{
    size_t mark = L->path.len;
    rz__pointer_push(&L->path, k ? k : "", k ? strlen(k) : 0);
    return mark;
}

static size_t push_index(lower *L, size_t i)
{
    size_t mark = L->path.len;
    char buf[24];
    size_t n = sizeof buf;
    do {
        buf[--n] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    buf[--n] = '/';
    rz__buf_append(&L->path, buf + n, sizeof buf - n);
    return mark;
}

static void pop(lower *L, size_t mark)
{
    L->path.len = mark;
    if (L->path.data)
        L->path.data[mark] = '\0';
}

static const char *here(const lower *L)
{
    return L->path.data && !L->path.failed ? L->path.data : "";
}

static void no_memory(lower *L)
{
    if (!L->oom)
        rz__load_diag_at(L->ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
    L->oom = true;
}

/* A problem at the current pointer, or below it at /k1[/k2]. */
RZ_PRINTF(5, 6)
static void bad(lower *L, int code, const char *k1, const char *k2,
                const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mark = L->path.len;
    if (k1)
        push_key(L, k1);
    if (k2)
        push_key(L, k2);
    if (L->path.failed)
        no_memory(L);
    else
        rz__load_diag(L->ld, code, here(L), "%s", msg);
    pop(L, mark);
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsObject(v))
        return "a map";
    if (cJSON_IsArray(v))
        return "a list";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    return "null";
}

/* ---- small conversions ---- */

static void *alloc(lower *L, size_t n)
{
    void *p = rz__arena_alloc(L->a, n ? n : 1);
    if (!p)
        no_memory(L);
    return p;
}

static char *sdup(lower *L, const char *s)
{
    char *p = rz__arena_strdup(L->a, s);
    if (s && !p)
        no_memory(L);
    return p;
}

static char *ptr_here(lower *L)
{
    if (L->path.failed) {
        no_memory(L);
        return NULL;
    }
    return sdup(L, here(L));
}

/* A string field (numbers are accepted where `lenient`, e.g. version: 1). */
static char *want_string(lower *L, const cJSON *v, const char *key, bool lenient)
{
    if (cJSON_IsString(v))
        return sdup(L, v->valuestring);
    if (lenient && cJSON_IsNumber(v)) {
        char *s = cJSON_PrintUnformatted(v);
        char *p = s ? sdup(L, s) : NULL;
        if (!s)
            no_memory(L);
        cJSON_free(s);
        return p;
    }
    bad(L, RZ_EINVALID, key, NULL, "'%s' must be a string, not %s", key, type_name(v));
    return NULL;
}

static bool want_u32(lower *L, const cJSON *v, const char *k1, const char *k2,
                     uint32_t min, uint32_t *out)
{
    const char *name = k2 ? k2 : k1;
    const char *kind = min ? "a positive integer" : "a non-negative integer";
    if (!cJSON_IsNumber(v)) {
        bad(L, RZ_EINVALID, k1, k2, "'%s' must be %s, not %s", name, kind, type_name(v));
        return false;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) {
        bad(L, RZ_EINVALID, k1, k2, "'%s' must be %s, not a fraction", name, kind);
        return false;
    }
    if (d < min || d > UINT32_MAX) {
        bad(L, RZ_EINVALID, k1, k2, "'%s' is out of range: %.0f is not between %u "
            "and 4294967295", name, d, min);
        return false;
    }
    *out = (uint32_t)d;
    return true;
}

static size_t child_count(const cJSON *v)
{
    size_t n = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        n++;
    return n;
}

/* A value the model keeps: detached from a malloc'd tree, copied out of
 * an arena tree. Its key string comes along. */
static cJSON *take(lower *L, cJSON *parent, cJSON *item)
{
    if (!L->arena_tree)
        return cJSON_DetachItemViaPointer(parent, item);
    cJSON *copy = cJSON_Duplicate(item, true);
    if (!copy)
        no_memory(L);
    return copy;
}

/* Keep an unknown key in the object *dst (created on demand). */
static void keep_extra(lower *L, cJSON **dst, cJSON *parent, cJSON *item)
{
    if (!*dst && !(*dst = cJSON_CreateObject())) {
        no_memory(L);
        return;
    }
    cJSON *v = take(L, parent, item);
    /* Adding via the array path keeps the item's own key string. */
    if (v)
        cJSON_AddItemToArray(*dst, v);
}

static void *grow(lower *L, void *arr, size_t *cap, size_t need, size_t size)
{
    void *p = rz__grow(arr, cap, need, size, 16);
    if (!p)
        no_memory(L);
    return p;
}

static rz__step *new_step(lower *L)
{
    rz_flow *f = L->f;
    rz__step *v = grow(L, f->steps, &L->cap_steps, f->n_steps + 1, sizeof *v);
    if (!v)
        return NULL;
    f->steps = v;
    memset(&v[f->n_steps], 0, sizeof *v);
    return &v[f->n_steps++];
}

/* ---- step fields ---- */

/* A module id: an optional chain:// prefix, then [A-Za-z0-9._-]+. Ids
 * travel in "<id>@<spec>" references and URLs, so nothing else may appear
 * (an '@' inside an id would read back as a different module). */
static bool module_id_ok(lower *L, const char *key, const char *id, size_t n)
{
    if (n >= 8 && memcmp(id, "chain://", 8) == 0) {
        id += 8;
        n -= 8;
    }
    if (n == 0) {
        bad(L, RZ_EINVALID, key, NULL, "'%s' names no module id", key);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
            continue;
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            bad(L, RZ_EINVALID, key, NULL, "module id '%.*s' contains '%c': "
                "ids hold only letters, digits, '.', '_' and '-'", (int)n, id, c);
        else
            bad(L, RZ_EINVALID, key, NULL, "module id contains byte 0x%02x: "
                "ids hold only letters, digits, '.', '_' and '-'", (unsigned char)c);
        return false;
    }
    return true;
}

/* "<id>" or "<id>@<spec>" into the step; false (reported) if malformed. */
static bool split_module(lower *L, rz__step *s, const char *key, const char *ref)
{
    const char *at = strchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    if (!module_id_ok(L, key, ref, n))
        return false;
    s->module_id = rz__arena_strndup(L->a, ref, n);
    if (!s->module_id)
        no_memory(L);
    if (at && at[1])
        s->module_spec = sdup(L, at + 1);
    return true;
}

static void lower_module(lower *L, rz__step *s, const cJSON *v)
{
    if (!cJSON_IsString(v)) {
        bad(L, RZ_EINVALID, "module", NULL, "'module' must be a string like \"<id>@<version>\", not %s",
            type_name(v));
        return;
    }
    split_module(L, s, "module", v->valuestring);
}

/* Builder moduleId/moduleVersion, once both are known: "id@spec" in
 * moduleId alone is accepted as id + spec; with a moduleVersion too, the
 * version would be given twice. */
static void finish_module_id(lower *L, rz__step *s, const char *raw, bool has_version)
{
    if (strchr(raw, '@') && has_version) {
        bad(L, RZ_EINVALID, "moduleId", NULL, "'moduleId' '%s' carries a version "
            "and 'moduleVersion' gives one too", raw);
        return;
    }
    if (!split_module(L, s, "moduleId", raw))
        s->module_spec = NULL;
}

/* A field beside credentialId and type is most likely a pasted secret. It
 * is a warning here, so that `flow export` can still strip it, and an error
 * in the validator. The message names the field, never its value. */
static void extra_cred_fields(lower *L, rz__step *s, rz__cred *cr, const cJSON *ref)
{
    for (const cJSON *f = ref->child; f; f = f->next) {
        if (strcmp(f->string, "credentialId") == 0 || strcmp(f->string, "type") == 0)
            continue;
        cr->extra_fields = true;
        size_t m = push_key(L, f->string);
        if (L->path.failed)
            no_memory(L);
        else
            rz__load_warn(L->ld, RZ_ECREDENTIAL, here(L), "credential reference '%s' "
                          "of step '%s' carries '%s': flows hold only {credentialId, "
                          "type}; keep the secret in the vault", ref->string,
                          s->id ? s->id : "?", f->string);
        pop(L, m);
    }
}

static void lower_creds(lower *L, rz__step *s, cJSON *v)
{
    if (!cJSON_IsObject(v)) {
        bad(L, RZ_ECREDENTIAL, "credentials", NULL,
            "'credentials' must be a map of name -> {credentialId, type}, not %s", type_name(v));
        return;
    }
    s->creds = alloc(L, child_count(v) * sizeof *s->creds);
    if (!s->creds)
        return;
    size_t m0 = push_key(L, "credentials");
    for (cJSON *c = v->child; c; c = c->next) {
        rz__cred *cr = &s->creds[s->n_creds++];
        size_t m = push_key(L, c->string);
        cr->field = sdup(L, c->string);
        cr->ptr = ptr_here(L);
        if (!cJSON_IsObject(c)) {
            bad(L, RZ_ECREDENTIAL, NULL, NULL,
                "credential '%s' must be a reference {credentialId, type}, not %s",
                c->string, type_name(c));
            pop(L, m);
            continue;
        }
        /* Only the reference survives: any other field (a pasted secret
         * value) is dropped here and never reaches an export. */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "credentialId");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        if (!cJSON_IsString(id) || !cJSON_IsString(type)) {
            const char *which = !cJSON_IsString(id) ? "credentialId" : "type";
            const cJSON *got = !cJSON_IsString(id) ? id : type;
            bad(L, RZ_ECREDENTIAL, got ? which : NULL, NULL,
                "credential '%s' must be a reference {credentialId, type}: '%s' %s",
                c->string, which, got ? "must be a string" : "is missing");
        } else {
            cr->credential_id = sdup(L, id->valuestring);
            cr->type = sdup(L, type->valuestring);
        }
        extra_cred_fields(L, s, cr, c);
        pop(L, m);
    }
    pop(L, m0);
}

static void lower_inputs(lower *L, rz__step *s, cJSON *v)
{
    if (!cJSON_IsObject(v)) {
        bad(L, RZ_EINVALID, "inputs", NULL, "'inputs' must be a map of port -> value, not %s",
            type_name(v));
        return;
    }
    s->inputs = alloc(L, child_count(v) * sizeof *s->inputs);
    if (!s->inputs)
        return;
    size_t m0 = push_key(L, "inputs");
    for (cJSON *c = v->child, *next; c; c = next) {
        next = c->next;
        rz__input *in = &s->inputs[s->n_inputs++];
        size_t m = push_key(L, c->string);
        in->name = sdup(L, c->string);
        in->ptr = ptr_here(L);
        in->value = take(L, v, c);
        pop(L, m);
    }
    pop(L, m0);
}

static void lower_needs(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        s->needs = alloc(L, sizeof *s->needs);
        if (s->needs) {
            s->needs[0] = sdup(L, v->valuestring);
            s->n_needs = 1;
        }
        return;
    }
    if (!cJSON_IsArray(v)) {
        bad(L, RZ_EINVALID, "needs", NULL, "'needs' must be a list of step ids, not %s",
            type_name(v));
        return;
    }
    s->needs = alloc(L, child_count(v) * sizeof *s->needs);
    if (!s->needs)
        return;
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (cJSON_IsString(c)) {
            s->needs[s->n_needs++] = sdup(L, c->valuestring);
            continue;
        }
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        bad(L, RZ_EINVALID, "needs", idx, "'needs' entries must be step ids, not %s",
            type_name(c));
    }
}

static void lower_retry(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsNumber(v)) {   /* retry: 3 is short for max_attempts */
        want_u32(L, v, "retry", NULL, 1, &s->retry.max_attempts);
        return;
    }
    if (!cJSON_IsObject(v)) {
        bad(L, RZ_EINVALID, "retry", NULL, "'retry' must be a map, not %s", type_name(v));
        return;
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *k = c->string;
        if (strcmp(k, "max_attempts") == 0) {
            want_u32(L, c, "retry", k, 1, &s->retry.max_attempts);
        } else if (strcmp(k, "initial_ms") == 0) {
            want_u32(L, c, "retry", k, 0, &s->retry.initial_ms);
        } else if (strcmp(k, "max_ms") == 0) {
            want_u32(L, c, "retry", k, 0, &s->retry.max_ms);
        } else if (strcmp(k, "backoff") == 0) {
            if (cJSON_IsString(c) && strcmp(c->valuestring, "fixed") == 0)
                s->retry.backoff = RZ_BACKOFF_FIXED;
            else if (cJSON_IsString(c) && strcmp(c->valuestring, "exponential") == 0)
                s->retry.backoff = RZ_BACKOFF_EXPONENTIAL;
            else
                bad(L, RZ_EINVALID, "retry", k, "'backoff' must be fixed or exponential");
        } else {
            bad(L, RZ_EINVALID, "retry", k,
                "unknown retry field '%s' (max_attempts, backoff, initial_ms, max_ms)", k);
        }
    }
}

/* verify: {replicas: k}: run the step on k distinct nodes and keep the
 * majority's outputs (docs/flow-format.md); 1 is one run. */
static void lower_verify(lower *L, rz__step *s, const cJSON *v)
{
    if (!cJSON_IsObject(v)) {
        bad(L, RZ_EINVALID, "verify", NULL, "'verify' must be a map "
            "{replicas: 2..%u}, not %s", RZ__STEP_REPLICAS_MAX, type_name(v));
        return;
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *k = c->string;
        if (strcmp(k, "replicas") != 0) {
            bad(L, RZ_EINVALID, "verify", k, "unknown verify field '%s' "
                "(replicas)", k);
        } else if (cJSON_IsNumber(c) && c->valuedouble == floor(c->valuedouble) &&
                   (c->valuedouble < 1 || c->valuedouble > RZ__STEP_REPLICAS_MAX)) {
            bad(L, RZ_EINVALID, "verify", k, "'replicas' is out of range: %.0f "
                "is not between 1 and %u", c->valuedouble, RZ__STEP_REPLICAS_MAX);
        } else {
            want_u32(L, c, "verify", k, 1, &s->replicas);
        }
    }
}

static void lower_when(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsString(v))
        s->when = sdup(L, v->valuestring);
    else if (cJSON_IsBool(v))
        s->when = sdup(L, cJSON_IsTrue(v) ? "true" : "false");
    else
        bad(L, RZ_EINVALID, "when", NULL, "'when' must be an expression string, not %s",
            type_name(v));
}

static void lower_on_failure(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, "fail") == 0)
        s->on_failure = RZ_ON_FAILURE_FAIL;
    else if (cJSON_IsString(v) && strcmp(v->valuestring, "continue") == 0)
        s->on_failure = RZ_ON_FAILURE_CONTINUE;
    else
        bad(L, RZ_EINVALID, "on_failure", NULL, "'on_failure' must be fail or continue");
}

static const char *const join_names[] = {
    "all_succeeded", "any_succeeded", "all_done", "none_failed", "one_failed",
};

const char *rz__join_name(rz__join j)
{
    return (size_t)j < RZ_ARRAY_LEN(join_names) ? join_names[j] : NULL;
}

static void lower_join(lower *L, rz__step *s, const cJSON *v)
{
    for (size_t i = 0; cJSON_IsString(v) && i < RZ_ARRAY_LEN(join_names); i++)
        if (strcmp(v->valuestring, join_names[i]) == 0) {
            s->join = (rz__join)i;
            return;
        }
    bad(L, RZ_EINVALID, "join", NULL, "'join' must be all_succeeded, any_succeeded, "
        "all_done, none_failed or one_failed");
}

/* for_each: a list, or one ${{ }} expression that gives a list when the
 * step starts (checked then); a written-out list is bounded now. */
static void lower_for_each(lower *L, rz__step *s, cJSON *obj, cJSON *v)
{
    if (cJSON_IsString(v) && strstr(v->valuestring, "${{")) {
        s->for_each = take(L, obj, v);
        return;
    }
    if (!cJSON_IsArray(v)) {
        bad(L, RZ_EINVALID, "for_each", NULL, "'for_each' must be a list or a "
            "${{ }} expression that gives one, not %s", type_name(v));
        return;
    }
    size_t n = child_count(v);
    if (n > RZ_FLOW_FOR_EACH_MAX) {
        bad(L, RZ_EINVALID, "for_each", NULL, "'for_each' has %zu elements; a step "
            "runs at most %u", n, RZ_FLOW_FOR_EACH_MAX);
        return;
    }
    s->for_each = take(L, obj, v);
}

static void lower_max_parallel(lower *L, rz__step *s, const cJSON *v)
{
    uint32_t n = 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (cJSON_IsNumber(v) && d == floor(d) && (d < 1 || d > RZ_FLOW_FOR_EACH_MAX))
        bad(L, RZ_EINVALID, "max_parallel", NULL, "'max_parallel' is out of range: "
            "%.0f is not between 1 and %u", d, RZ_FLOW_FOR_EACH_MAX);
    else if (want_u32(L, v, "max_parallel", NULL, 1, &n))
        s->max_parallel = n;
}

/* kind: service (docs/services.md); "job" is the default, said out. */
static void lower_kind(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, "service") == 0)
        s->service = true;
    else if (!cJSON_IsString(v) || strcmp(v->valuestring, "job") != 0)
        bad(L, RZ_EINVALID, "kind", NULL, "'kind' must be job or service");
}

/* restart: {policy: on-failure|always|never, max_restarts, backoff_ms}. */
static void lower_restart(lower *L, rz__step *s, const cJSON *v)
{
    static const char *const names[] = {"on-failure", "always", "never"};
    if (!cJSON_IsObject(v)) {
        bad(L, RZ_EINVALID, "restart", NULL, "'restart' must be a map {policy, "
            "max_restarts, backoff_ms}, not %s", type_name(v));
        return;
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *k = c->string;
        uint32_t n = 0;
        if (strcmp(k, "policy") == 0) {
            size_t i = 0;
            while (cJSON_IsString(c) && i < RZ_ARRAY_LEN(names) &&
                   strcmp(c->valuestring, names[i]) != 0)
                i++;
            if (!cJSON_IsString(c) || i == RZ_ARRAY_LEN(names))
                bad(L, RZ_EINVALID, "restart", k, "'policy' must be on-failure, "
                    "always or never");
            else
                s->restart = (rz__restart)i;
        } else if (strcmp(k, "max_restarts") == 0) {
            if (want_u32(L, c, "restart", k, 0, &n) && n > 10000)
                bad(L, RZ_EINVALID, "restart", k, "'max_restarts' is out of range: "
                    "%u is more than 10000", n);
            else
                s->retry.max_attempts = n + 1;
        } else if (strcmp(k, "backoff_ms") == 0) {
            if (want_u32(L, c, "restart", k, 0, &n))
                s->retry.initial_ms = n;
        } else {
            bad(L, RZ_EINVALID, "restart", k, "unknown key '%s' in 'restart' (keys: "
                "policy, max_restarts, backoff_ms)", k);
        }
    }
}

/* ready: {tcp: PORT | http: URL, timeout_s}: the check exec/ready.h
 * makes, in its one-string form. */
static void lower_ready_check(lower *L, rz__step *s, const cJSON *v)
{
    char spec[600] = "", why[200];
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *k = c->string;
        uint32_t n = 0;
        if (strcmp(k, "tcp") == 0 && cJSON_IsNumber(c) && c->valuedouble >= 1 &&
            c->valuedouble <= 65535 && c->valuedouble == (double)(int)c->valuedouble)
            snprintf(spec, sizeof spec, "tcp:%d", (int)c->valuedouble);
        else if (strcmp(k, "tcp") == 0)
            bad(L, RZ_EINVALID, "ready", k, "'tcp' must be a port, 1-65535");
        else if (strcmp(k, "http") == 0 && cJSON_IsString(c))
            snprintf(spec, sizeof spec, "%.590s", c->valuestring);
        else if (strcmp(k, "http") == 0)
            bad(L, RZ_EINVALID, "ready", k, "'http' must be a URL, e.g. "
                "http://127.0.0.1:8080/health");
        else if (strcmp(k, "timeout_s") == 0) {
            if (want_u32(L, c, "ready", k, 1, &n))
                s->ready_timeout_s = n;
        } else
            bad(L, RZ_EINVALID, "ready", k, "unknown key '%s' in 'ready' (keys: "
                "tcp or http, timeout_s)", k);
    }
    bool both = cJSON_GetObjectItemCaseSensitive(v, "tcp") &&
                cJSON_GetObjectItemCaseSensitive(v, "http");
    if (both || (!spec[0] && !cJSON_GetObjectItemCaseSensitive(v, "tcp") &&
                 !cJSON_GetObjectItemCaseSensitive(v, "http"))) {
        bad(L, RZ_EINVALID, "ready", NULL, "'ready' takes one check: {tcp: PORT} "
            "or {http: URL}");
        return;
    }
    if (!spec[0])
        return;   /* said above */
    rz__ready_target t;
    if (rz__ready_parse(spec, &t, why, sizeof why) != RZ_OK) {
        bad(L, RZ_EINVALID, "ready", "http", "'http': %s", why);
        return;
    }
    s->ready_check = sdup(L, spec);
    s->ready_line = true;
}

/* ready: line (the first {"ready": true} on stdout), start, or a check. */
static void lower_ready(lower *L, rz__step *s, const cJSON *v)
{
    if (cJSON_IsObject(v))
        lower_ready_check(L, s, v);
    else if (cJSON_IsString(v) && strcmp(v->valuestring, "line") == 0)
        s->ready_line = true;
    else if (!cJSON_IsString(v) || strcmp(v->valuestring, "start") != 0)
        bad(L, RZ_EINVALID, "ready", NULL, "'ready' must be line (the service "
            "prints {\"ready\": true}), start, {tcp: PORT} or {http: URL}");
}

/* on: {event: steps.<id>.events.<name>} (a ${{ }} around it is allowed). */
static void lower_on(lower *L, rz__step *s, const cJSON *v)
{
    const cJSON *ev = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "event")
                                        : NULL;
    if (!cJSON_IsObject(v) || !ev || (v->child && v->child->next)) {
        bad(L, RZ_EINVALID, "on", NULL, "'on' must be a map {event: "
            "steps.<id>.events.<name>}");
        return;
    }
    const char *t = cJSON_IsString(ev) ? ev->valuestring : "";
    size_t n = strlen(t);
    if (strncmp(t, "${{", 3) == 0 && n >= 5 && strcmp(t + n - 2, "}}") == 0) {
        t += 3;
        n -= 5;
    }
    while (n && *t == ' ') {
        t++;
        n--;
    }
    while (n && t[n - 1] == ' ')
        n--;
    const char *dot = n > 6 ? memchr(t + 6, '.', n - 6) : NULL;
    if (n <= 6 || strncmp(t, "steps.", 6) != 0 || !dot || dot == t + 6 ||
        (size_t)(t + n - dot) <= 8 || strncmp(dot, ".events.", 8) != 0 ||
        memchr(dot + 8, '.', (size_t)(t + n - dot - 8))) {
        bad(L, RZ_EINVALID, "on", "event", "'event' must be steps.<id>.events.<name>");
        return;
    }
    char *step = rz__arena_alloc(L->a, (size_t)(dot - t - 6) + 1);
    char *name = rz__arena_alloc(L->a, (size_t)(t + n - dot - 8) + 1);
    if (!step || !name) {
        no_memory(L);
        return;
    }
    memcpy(step, t + 6, (size_t)(dot - t - 6));
    step[dot - t - 6] = '\0';
    memcpy(name, dot + 8, (size_t)(t + n - dot - 8));
    name[t + n - dot - 8] = '\0';
    s->on_step = step;
    s->on_event = name;
}

/* A known key seen again in the same map: the first one counts. */
static bool repeated(lower *L, unsigned *seen, unsigned bit, const char *k)
{
    if (*seen & bit) {
        bad(L, RZ_EINVALID, NULL, NULL, "duplicate key '%s'", k);
        return true;
    }
    *seen |= bit;
    return false;
}

/* ---- The fields of a step ---- */

typedef void field_fn(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key);

static void field_config(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    if (cJSON_IsObject(c))
        s->config = take(L, obj, c);
    else
        bad(L, RZ_EINVALID, c->string, NULL, "'config' must be a map, not %s", type_name(c));
}

static void field_credentials(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_creds(L, s, c);
}

static void field_id(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    if (!id_from_key)
        s->id = want_string(L, c, c->string, true);
}

static void field_inputs(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_inputs(L, s, c);
}

static void field_module(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_module(L, s, c);
}

/* `flow: PATH`: a flow file relative to this one's (lib/flow/subflow.c).
 * Kept portable: no absolute path, nothing a shell or URL would read
 * differently. */
#define SUBFLOW_PATH_MAX 1024

static void field_flow(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    if (!cJSON_IsString(c) || !c->valuestring[0]) {
        bad(L, RZ_EINVALID, "flow", NULL, "'flow' must name a flow file (a path relative "
            "to this flow's file), not %s", cJSON_IsString(c) ? "an empty string"
                                                                 : type_name(c));
        return;
    }
    const char *p = c->valuestring;
    size_t n = strlen(p);
    if (strncmp(p, "flow://", 7) == 0) {
        char why[200];
        if (!rz__flow_named_ref(p, NULL, 0, NULL, why, sizeof why)) {
            bad(L, RZ_EINVALID, "flow", NULL, "'flow' names '%.200s': %s", p, why);
            return;
        }
        s->subflow = sdup(L, p);
        return;
    }
    if (p[0] == '/' || n > SUBFLOW_PATH_MAX) {
        bad(L, RZ_EINVALID, "flow", NULL, "'flow' must be a path relative to this flow's "
            "file, %d bytes at most, not %s", SUBFLOW_PATH_MAX,
            p[0] == '/' ? "an absolute path" : "a longer one");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
            bad(L, RZ_EINVALID, "flow", NULL, "'flow' holds the control byte 0x%02x",
                (unsigned char)p[i]);
            return;
        }
    s->subflow = sdup(L, p);
}

/* Checked in lower_step, once moduleVersion is known too. */
static void field_module_id(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    if (!cJSON_IsString(c))
        bad(L, RZ_EINVALID, c->string, NULL, "'moduleId' must be a string, not %s",
            type_name(c));
}

/* "" is no version, as null is: the builder sends it for "any", and
 * "id@" would otherwise export a spec that reloads as none. */
static void field_module_version(lower *L, rz__step *s, cJSON *obj, cJSON *c,
                                 bool id_from_key)
{
    if (cJSON_IsString(c) && !c->valuestring[0])
        return;
    s->module_spec = want_string(L, c, c->string, true);
}

static void field_needs(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_needs(L, s, c);
}

static void field_on_failure(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_on_failure(L, s, c);
}

static void field_join(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_join(L, s, c);
}

static void field_for_each(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_for_each(L, s, obj, c);
}

static void field_max_parallel(lower *L, rz__step *s, cJSON *obj, cJSON *c,
                               bool id_from_key)
{
    lower_max_parallel(L, s, c);
}

static void field_kind(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_kind(L, s, c);
}

static void field_restart(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_restart(L, s, c);
}

static void field_ready(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_ready(L, s, c);
}

static void field_on(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_on(L, s, c);
}

/* Maps within maps: for_each walks this many levels of nested lists. */
static void field_for_each_depth(lower *L, rz__step *s, cJSON *obj, cJSON *c,
                                 bool id_from_key)
{
    double d = cJSON_IsNumber(c) ? c->valuedouble : 0;
    if (cJSON_IsNumber(c) && d == floor(d) && (d < 1 || d > RZ_FLOW_FOR_EACH_DEPTH_MAX))
        bad(L, RZ_EINVALID, c->string, NULL, "'for_each_depth' is out of range: %.0f is "
            "not between 1 and %u", d, RZ_FLOW_FOR_EACH_DEPTH_MAX);
    else
        want_u32(L, c, c->string, NULL, 1, &s->for_each_depth);
}

static void field_position(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    if (cJSON_IsObject(c))
        s->position = take(L, obj, c);
    else
        bad(L, RZ_EINVALID, c->string, NULL, "'position' must be a map {x, y}, not %s",
            type_name(c));
}

static void field_retry(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_retry(L, s, c);
}

static void field_timeout(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    want_u32(L, c, c->string, NULL, 0, &s->timeout_s);
}

static void field_queue_timeout(lower *L, rz__step *s, cJSON *obj, cJSON *c,
                                bool id_from_key)
{
    want_u32(L, c, c->string, NULL, 1, &s->queue_timeout_s);
}

static void field_verify(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_verify(L, s, c);
}

static void field_when(lower *L, rz__step *s, cJSON *obj, cJSON *c, bool id_from_key)
{
    lower_when(L, s, c);
}

/* The keys a step may hold, in the order hints and the key list name them;
 * anything else in a FluxGraph step is most likely a typo (`need:` for
 * `needs:`) that would silently change what runs. */
static const struct step_field {
    const char *key;
    field_fn *lower;   /* NULL: lower_step handles it (ui) */
    bool listed;       /* named in the "unknown key" message's key list */
} step_fields[] = {
    {"module", field_module, true},
    {"flow", field_flow, true},
    {"needs", field_needs, true},
    {"inputs", field_inputs, true},
    {"config", field_config, true},
    {"credentials", field_credentials, true},
    {"when", field_when, true},
    {"retry", field_retry, true},
    {"timeout_s", field_timeout, true},
    {"queue_timeout_s", field_queue_timeout, true},
    {"on_failure", field_on_failure, true},
    {"verify", field_verify, true},
    {"join", field_join, true},
    {"for_each", field_for_each, true},
    {"max_parallel", field_max_parallel, true},
    {"for_each_depth", field_for_each_depth, true},
    {"position", field_position, true},
    {"ui", NULL, true},
    {"kind", field_kind, true},
    {"restart", field_restart, true},
    {"ready", field_ready, true},
    {"on", field_on, true},
    {"id", field_id, false},              /* the builder format's node keys */
    {"moduleId", field_module_id, false},
    {"moduleVersion", field_module_version, false},
};

_Static_assert(RZ_ARRAY_LEN(step_fields) <= 32, "one bit each in `seen`");

/* The index of `k` in step_fields, or -1. */
static int step_field_of(const char *k)
{
    for (size_t i = 0; i < RZ_ARRAY_LEN(step_fields); i++)
        if (step_fields[i].key[0] == k[0] && strcmp(step_fields[i].key, k) == 0)
            return (int)i;
    return -1;
}

/* One field of a step; false if the key is not one lowered here. */
static bool lower_step_field(lower *L, rz__step *s, cJSON *obj, cJSON *c,
                             bool id_from_key, unsigned *seen)
{
    int i = step_field_of(c->string);
    if (i < 0 || !step_fields[i].lower)
        return false;
    if (!repeated(L, seen, 1u << i, c->string))
        step_fields[i].lower(L, s, obj, c, id_from_key);
    return true;
}

/* Step keys the flow model does not interpret but other parts read from
 * the step's `extra` (the engine: a step's own cost ceiling). */
bool rz__flux_kept_key(const char *k, bool top)
{
    return top ? strncmp(k, "x-", 2) == 0 : (strcmp(k, "max_cost_micros") == 0 ||
                                            strcmp(k, "max_cost_cents") == 0 ||
                                            strcmp(k, "approval") == 0 ||
                                            strcmp(k, "budget") == 0 ||
                                            strcmp(k, "cache") == 0);
}

static const char *const top_keys[] = {
    "flux", "id", "name", "version", "description", "createdAt", "updatedAt",
    "triggers", "inputs", "nodes", "steps", "connections", "on_exit", "outputs",
};

static bool known_top_key(const char *k)
{
    for (size_t i = 0; i < RZ_ARRAY_LEN(top_keys); i++)
        if (strcmp(k, top_keys[i]) == 0)
            return true;
    return false;
}

static bool known_step_key(const char *k)
{
    return rz__flux_kept_key(k, false) || step_field_of(k) >= 0;
}

static void unknown_step_key(lower *L, const char *step, const char *k)
{
    rz__suggest sg;
    rz__suggest_init_limit(&sg, k, 2);
    for (size_t i = 0; i < RZ_ARRAY_LEN(step_fields); i++)
        rz__suggest_try(&sg, step_fields[i].key);
    if (sg.best) {
        bad(L, RZ_EINVALID, k, NULL, "unknown key '%s' in step '%s'; did you mean '%s'?",
            k, step, sg.best);
        return;
    }
    rz__buf keys = {0};
    for (size_t i = 0; i < RZ_ARRAY_LEN(step_fields); i++)
        if (step_fields[i].listed)
            rz__buf_printf(&keys, "%s%s", keys.len ? ", " : "", step_fields[i].key);
    bad(L, RZ_EINVALID, k, NULL, "unknown key '%s' in step '%s' (keys: %s)", k, step,
        keys.data ? keys.data : "");
    rz__buf_free(&keys);
}

/* FluxGraph `ui:` carries what a builder keeps beside a node or a flow
 * (labels, viewport...), so that builder -> YAML -> builder loses nothing. */

/* A builder keeps these beside the node or flow itself: in `ui:` they would
 * come back as a second key of the same name. */
static bool reserved_in_ui(const char *k, bool top)
{
    if (strcmp(k, "ui") == 0)
        return false;
    return top ? known_top_key(k) || rz__flux_kept_key(k, true) : known_step_key(k);
}

static void lower_ui(lower *L, cJSON **dst, cJSON *ui, bool top)
{
    if (!cJSON_IsObject(ui)) {
        bad(L, RZ_EINVALID, "ui", NULL, "'ui' must be a map, not %s", type_name(ui));
        return;
    }
    for (cJSON *c = ui->child, *next; c; c = next) {
        next = c->next;
        if (reserved_in_ui(c->string, top))
            bad(L, RZ_EINVALID, "ui", c->string, "'ui' cannot hold '%s': it is a "
                "key of the %s itself", c->string, top ? "flow" : "step");
        else if (!cJSON_IsNull(c))
            keep_extra(L, dst, ui, c);
    }
}

/* A step's own budget, checked as the job route checks a job's: a whole
 * number of micro-dollars from 1 to 2^53 (or, for one release, of cents
 * up to 2^53 / 10000 as max_cost_cents). The engine would otherwise fall
 * back to the reference estimate without a word. */
static void check_max_cost(lower *L, const cJSON *c)
{
    bool cents = strcmp(c->string, "max_cost_cents") == 0;
    double max = cents ? 900719925474.0 : 9007199254740992.0;
    double d = cJSON_IsNumber(c) ? c->valuedouble : 0;
    if (!cJSON_IsNumber(c) || d != floor(d) || d < 1 || d > max)
        bad(L, RZ_EINVALID, c->string, NULL, "'%s' must be a whole number of %s "
            "from 1 to %.0f, not %s", c->string, cents ? "cents" : "micro-dollars",
            max, cJSON_IsNumber(c) ? "a number outside that" : type_name(c));
}

/* approval: {timeout_s, default: approve|reject, approvers: [account ids]}
 * (docs/triggers.md): kept as written; the engine reads it. */
static void check_approval(lower *L, const cJSON *c)
{
    if (!cJSON_IsObject(c)) {
        bad(L, RZ_EINVALID, "approval", NULL, "'approval' must be a map (timeout_s, "
            "default, approvers), not %s", type_name(c));
        return;
    }
    uint32_t u;
    for (const cJSON *k = c->child; k; k = k->next) {
        const char *n = k->string;
        if (strcmp(n, "timeout_s") == 0) {
            (void)want_u32(L, k, "approval", n, 1, &u);
        } else if (strcmp(n, "default") == 0) {
            if (!cJSON_IsString(k) || (strcmp(k->valuestring, "approve") != 0 &&
                                       strcmp(k->valuestring, "reject") != 0))
                bad(L, RZ_EINVALID, "approval", n, "'approval.default' must be \"approve\" or "
                    "\"reject\"");
        } else if (strcmp(n, "approvers") == 0) {
            bool ok = cJSON_IsArray(k) && child_count(k) <= RZ__APPROVERS_MAX;
            for (const cJSON *a = ok ? k->child : NULL; a; a = a->next)
                ok = cJSON_IsString(a) && a->valuestring[0] &&
                     strlen(a->valuestring) <= 64;
            if (!ok)
                bad(L, RZ_EINVALID, "approval", n, "'approval.approvers' must be a list of at "
                    "most %d account ids", RZ__APPROVERS_MAX);
        } else {
            bad(L, RZ_EINVALID, "approval", n, "unknown key '%s' in 'approval' "
                "(keys: timeout_s, default, approvers)", n);
        }
    }
}

/* cache: true | false | {ttl_s: N} (docs/triggers.md, "Resume and cache"). */
static void check_cache(lower *L, const cJSON *c)
{
    uint32_t u;
    if (cJSON_IsBool(c))
        return;
    if (!cJSON_IsObject(c)) {
        bad(L, RZ_EINVALID, "cache", NULL, "'cache' must be true, false or {ttl_s: N}, "
            "not %s", type_name(c));
        return;
    }
    for (const cJSON *k = c->child; k; k = k->next)
        if (strcmp(k->string, "ttl_s") == 0)
            (void)want_u32(L, k, "cache", k->string, 1, &u);
        else
            bad(L, RZ_EINVALID, "cache", k->string, "unknown key '%s' in 'cache' (keys: "
                "ttl_s)", k->string);
}

/* A whole number in [min, max] as a double read exactly; false if not. */
static bool whole_in(const cJSON *v, double min, double max)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
           v->valuedouble == floor(v->valuedouble) && v->valuedouble >= min &&
           v->valuedouble <= max;
}

/* budget: {max_cents_per_hour | max_micros_per_hour, hours?, interval_s?}
 * (docs/services.md): whole numbers only, money in the ledger's
 * micro-dollars (a cent is 10,000), one rate, not both. */
static void check_budget(lower *L, const cJSON *c)
{
    if (!cJSON_IsObject(c)) {
        bad(L, RZ_EINVALID, "budget", NULL, "'budget' must be a map (max_cents_per_hour "
            "or max_micros_per_hour, hours, interval_s), not %s", type_name(c));
        return;
    }
    int rates = 0;
    const cJSON *hours = NULL, *interval = NULL;
    for (const cJSON *k = c->child; k; k = k->next) {
        const char *n = k->string;
        if (strcmp(n, "hours") == 0)
            hours = k;
        else if (strcmp(n, "interval_s") == 0)
            interval = k;
        if (strcmp(n, "max_cents_per_hour") == 0 || strcmp(n, "max_micros_per_hour") == 0) {
            bool cents = n[4] == 'c';
            double max = cents ? 900719925474.0 : 9007199254740992.0;
            rates++;
            if (!whole_in(k, 1, max))
                bad(L, RZ_EINVALID, "budget", n, "'%s' must be a whole number of %s "
                    "from 1 to %.0f", n, cents ? "cents" : "micro-dollars", max);
        } else if (strcmp(n, "hours") == 0) {
            if (!whole_in(k, 1, RZ__BUDGET_HOURS_MAX))
                bad(L, RZ_EINVALID, "budget", n, "'hours' must be a whole number from 1 "
                    "to %u", RZ__BUDGET_HOURS_MAX);
        } else if (strcmp(n, "interval_s") == 0) {
            if (!whole_in(k, 1, RZ__BUDGET_INTERVAL_MAX_S))
                bad(L, RZ_EINVALID, "budget", n, "'interval_s' must be a whole number "
                    "of seconds from 1 to %u", RZ__BUDGET_INTERVAL_MAX_S);
        } else {
            bad(L, RZ_EINVALID, "budget", n, "unknown key '%s' in 'budget' (keys: "
                "max_cents_per_hour, max_micros_per_hour, hours, interval_s)", n);
        }
    }
    /* Each interval has ledger ids of its own, numbered in 24 bits: a
     * budget that would run past them is refused now, not stopped there. */
    double s = whole_in(interval, 1, RZ__BUDGET_INTERVAL_MAX_S) ? interval->valuedouble
                                                               : RZ__BUDGET_INTERVAL_S;
    if (whole_in(hours, 1, RZ__BUDGET_HOURS_MAX) &&
        floor(hours->valuedouble * 3600.0 / s) > RZ__BUDGET_INTERVALS_MAX)
        bad(L, RZ_EINVALID, "budget", "hours", "'hours' x 3600 / 'interval_s' is %.0f "
            "intervals; a service is billed for at most %u (fewer hours or a longer "
            "interval_s: at %.0f s, at most %.0f hours)", floor(hours->valuedouble * 3600.0 / s),
            RZ__BUDGET_INTERVALS_MAX, s, floor(RZ__BUDGET_INTERVALS_MAX * s / 3600.0));
    if (rates != 1)
        bad(L, RZ_EINVALID, "budget", NULL, rates ? "'budget' takes one rate: "
            "max_cents_per_hour or max_micros_per_hour, not both"
            : "'budget' needs a rate: max_cents_per_hour or max_micros_per_hour");
}

bool rz__step_budget(const rz__step *s, rz__budget *out)
{
    const cJSON *b = s->extra ? cJSON_GetObjectItemCaseSensitive(s->extra, "budget") : NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(b, "max_cents_per_hour");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(b, "max_micros_per_hour");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(b, "hours");
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(b, "interval_s");
    if (!cJSON_IsObject(b) || (c != NULL) == (m != NULL) ||
        (c && !whole_in(c, 1, 900719925474.0)) || (m && !whole_in(m, 1, 9007199254740992.0)) ||
        (h && !whole_in(h, 1, RZ__BUDGET_HOURS_MAX)) ||
        (i && !whole_in(i, 1, RZ__BUDGET_INTERVAL_MAX_S)))
        return false;
    out->micros_per_hour = c ? (uint64_t)c->valuedouble * 10000u : (uint64_t)m->valuedouble;
    out->hours = h ? (uint32_t)h->valuedouble : 0;
    out->interval_s = i ? (uint32_t)i->valuedouble : RZ__BUDGET_INTERVAL_S;
    return true;
}

uint64_t rz__budget_interval_micros(const rz__budget *b)
{
    uint64_t r = b->micros_per_hour, s = b->interval_s;
    return r / 3600u * s + ((r % 3600u) * s + 3599u) / 3600u;
}

/* An approval step waits for a person: it runs nothing. */
static void approval_step_rules(lower *L, const rz__step *s)
{
    const char *id = s->id ? s->id : "?";
    if (s->module_id)
        bad(L, RZ_EINVALID, "approval", NULL, "step '%s' has both 'approval' and a "
            "module: an approval step runs no module", id);
    if (s->for_each || s->replicas > 1 || s->retry.max_attempts > 1 || s->n_creds ||
        s->timeout_s)
        bad(L, RZ_EINVALID, "approval", NULL, "approval step '%s' cannot have "
            "for_each, verify, retry, credentials or timeout_s (its wait is "
            "approval.timeout_s)", id);
}

/* One rule for step ids in every syntax, so that each can be named in
 * ${{ steps.<id> }}: [A-Za-z_][A-Za-z0-9_-]{0,63}. */
#define STEP_ID_MAX 64

static bool step_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > STEP_ID_MAX || !(id[0] == '_' || (id[0] >= 'a' && id[0] <= 'z') ||
                                      (id[0] >= 'A' && id[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void check_step_id(lower *L, const rz__step *s, bool from_key)
{
    if (!s->id || step_id_ok(s->id))
        return;
    size_t n = strlen(s->id);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s->id[i] < 0x20 || (unsigned char)s->id[i] >= 0x7f) {
            bad(L, RZ_EINVALID, from_key ? NULL : "id", NULL, "step id holds byte 0x%02x: "
                "an id starts with a letter or '_' and holds only letters, digits, '_' "
                "and '-', %d characters at most", (unsigned char)s->id[i], STEP_ID_MAX);
            return;
        }
    bad(L, RZ_EINVALID, from_key ? NULL : "id", NULL, "step id '%.*s%s' is not valid: "
        "an id starts with a letter or '_' and holds only letters, digits, '_' and "
        "'-', %d characters at most", n > 80 ? 80 : (int)n, s->id, n > 80 ? "..." : "",
        STEP_ID_MAX);
}

/* A sub-flow step is wired like a step (needs, inputs, when) and runs the
 * child's steps, which carry their own modules, retries and limits.
 * `seen`: the step_fields bits of the keys the step holds. */
static void check_subflow_step(lower *L, const rz__step *s, unsigned seen, bool has_module)
{
    static const char *const refused[] = {
        "config", "credentials", "retry", "timeout_s", "queue_timeout_s", "on_failure",
        "verify", "join", "for_each_depth", "max_cost_micros",
        "max_cost_cents",
    };
    if (has_module)
        bad(L, RZ_EINVALID, "flow", NULL, "a step runs a module or a sub-flow ('flow'), "
            "not both");
    for (size_t i = 0; i < RZ_ARRAY_LEN(refused); i++) {
        int k = step_field_of(refused[i]);
        if (k >= 0 ? (seen & (1u << k)) != 0
                   : cJSON_GetObjectItemCaseSensitive(s->extra, refused[i]) != NULL)
            bad(L, RZ_EINVALID, refused[i], NULL, "a sub-flow step takes no '%s' (the "
                "sub-flow's steps carry their own)", refused[i]);
    }
}

static bool has_field(unsigned seen, const char *k)
{
    int i = step_field_of(k);
    return i >= 0 && (seen & (1u << i)) != 0;
}

/* A service runs until it ends or is stopped: its restarts replace retry,
 * and what only a service does (restart, ready) needs kind: service. An
 * `on: event` step runs once per event, so it cannot also map a list. */
static void service_rules(lower *L, rz__step *s, unsigned seen, const cJSON *obj)
{
    const char *id = s->id ? s->id : "?";
    if (s->service) {
        if (has_field(seen, "retry"))
            bad(L, RZ_EINVALID, "retry", NULL, "service '%s' restarts by its "
                "'restart' policy, not 'retry'", id);
        if (s->for_each || s->on_step || s->replicas > 1)
            bad(L, RZ_EINVALID, "kind", NULL, "service '%s' cannot have for_each, "
                "on or verify", id);
    } else if (has_field(seen, "kind") && s->extra &&
               cJSON_GetObjectItemCaseSensitive(s->extra, "budget")) {
        bad(L, RZ_EINVALID, "budget", NULL, "'budget' is for services (billed by "
            "time): step '%s' is kind: job", id);
    }
    /* Without kind: service, its module may be one: validate.c decides. */
    s->max_restarts_given = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "restart"), "max_restarts") != NULL;
    s->restart_given = has_field(seen, "restart");
    s->ready_given = has_field(seen, "ready");
    if (s->service)
        rz__step_service_restarts(s);
    if (s->on_step && s->for_each)
        bad(L, RZ_EINVALID, "on", NULL, "step '%s' runs once per event ('on'): it "
            "takes no 'for_each'", id);
}

/* `obj` is the step's map; `key_id` its id when it comes from a steps map. */
static void lower_step(lower *L, rz__step *s, cJSON *obj, const char *key_id)
{
    s->retry.max_attempts = 1;
    s->retry.backoff = RZ_BACKOFF_FIXED;
    s->retry.initial_ms = 1000;
    s->retry.max_ms = 60000;
    s->on_failure = RZ_ON_FAILURE_FAIL;
    s->ptr = ptr_here(L);
    if (key_id)
        s->id = sdup(L, key_id);
    if (!cJSON_IsObject(obj)) {
        bad(L, RZ_EINVALID, NULL, NULL, "%s must be a map, not %s",
            key_id ? "a step" : "a node", type_name(obj));
        return;
    }
    unsigned seen = 0;
    for (cJSON *c = obj->child, *next; c; c = next) {
        next = c->next;
        if (key_id && !known_step_key(c->string)) {
            unknown_step_key(L, key_id, c->string);
            continue;
        }
        if (cJSON_IsNull(c))
            continue;   /* an empty field is an absent one */
        if (strcmp(c->string, "max_cost_micros") == 0 ||
            strcmp(c->string, "max_cost_cents") == 0)
            check_max_cost(L, c);
        if (strcmp(c->string, "approval") == 0)
            check_approval(L, c);
        if (strcmp(c->string, "cache") == 0)
            check_cache(L, c);
        if (strcmp(c->string, "budget") == 0)
            check_budget(L, c);
        if (key_id && strcmp(c->string, "ui") == 0)
            lower_ui(L, &s->extra, c, false);
        else if (!lower_step_field(L, s, obj, c, key_id != NULL, &seen))
            keep_extra(L, &s->extra, obj, c);
    }
    if (!s->id)
        bad(L, RZ_EINVALID, NULL, NULL, "node is missing its 'id'");
    check_step_id(L, s, key_id != NULL);
    const cJSON *mk = cJSON_GetObjectItemCaseSensitive(obj, "module");
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(obj, "moduleId");
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(obj, "moduleVersion");
    if (cJSON_IsString(mi))
        finish_module_id(L, s, mi->valuestring, mv && !cJSON_IsNull(mv) &&
                         !(cJSON_IsString(mv) && !mv->valuestring[0]));
    bool has_module = (mk && !cJSON_IsNull(mk)) || (mi && !cJSON_IsNull(mi));
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(obj, "flow");
    if (fl && !cJSON_IsNull(fl))
        check_subflow_step(L, s, seen, has_module);
    else if (rz__step_approval(s))   /* kept in extra (detached from obj) */
        approval_step_rules(L, s);
    /* A present but malformed module field was reported already. */
    else if (!s->module_id && !has_module)
        bad(L, RZ_EINVALID, NULL, NULL, "%s '%s' names no module ('%s') or sub-flow "
            "('flow')", key_id ? "step" : "node", s->id ? s->id : "?",
            key_id ? "module" : "moduleId");
    if (s->max_parallel && !s->for_each && !s->on_step)
        bad(L, RZ_EINVALID, "max_parallel", NULL, "'max_parallel' bounds the elements "
            "of a for_each step; this step has no 'for_each'");
    if (s->for_each_depth && !s->for_each && !s->subflow)
        bad(L, RZ_EINVALID, "for_each_depth", NULL, "'for_each_depth' says how deep a "
            "for_each step's lists nest; this step has no 'for_each'");
    if (s->for_each && s->replicas > 1)
        bad(L, RZ_EINVALID, "for_each", NULL, "a for_each step cannot ask for verify "
            "replicas yet (each element would need its own set)");
    service_rules(L, s, seen, obj);
    s->kind_given = has_field(seen, "kind");
    s->retry_given = has_field(seen, "retry");
    if (!s->config && !(s->config = cJSON_CreateObject()))
        no_memory(L);
}

void rz__lower_node(lower *L, cJSON *c)
{
    size_t m = push_key(L, "nodes");
    push_index(L, L->f->n_steps);
    rz__step *s = new_step(L);
    if (s)
        lower_step(L, s, c, NULL);
    pop(L, m);
}

static void lower_nodes(lower *L, cJSON *arr)
{
    if (!cJSON_IsArray(arr)) {
        bad(L, RZ_EINVALID, "nodes", NULL, "'nodes' must be a list, not %s", type_name(arr));
        return;
    }
    for (cJSON *c = arr->child; c; c = c->next)
        rz__lower_node(L, c);
}

static void lower_steps(lower *L, cJSON *map)
{
    if (!cJSON_IsObject(map)) {
        bad(L, RZ_EINVALID, "steps", NULL, "'steps' must be a map of id -> step, not %s",
            type_name(map));
        return;
    }
    size_t m0 = push_key(L, "steps");
    for (cJSON *c = map->child; c; c = c->next) {
        size_t m = push_key(L, c->string);
        rz__step *s = new_step(L);
        if (s)
            lower_step(L, s, c, c->string);
        pop(L, m);
    }
    pop(L, m0);
}

/* ---- connections ---- */

/* One end {nodeId, port} of a connection; `e` may be NULL (missing). */
static void lower_end(lower *L, const cJSON *e, const char *which,
                      char **node, char **port)
{
    if (!cJSON_IsObject(e)) {
        bad(L, RZ_EINVALID, e ? which : NULL, NULL, "connection %s must be a map {nodeId, port}%s",
            which, e ? "" : " (missing)");
        return;
    }
    const cJSON *n = NULL, *p = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        if (!n && strcmp(c->string, "nodeId") == 0)
            n = c;
        else if (!p && strcmp(c->string, "port") == 0)
            p = c;
    }
    if (cJSON_IsString(n))
        *node = sdup(L, n->valuestring);
    else
        bad(L, RZ_EINVALID, which, n ? "nodeId" : NULL, "connection %s.nodeId must be a string%s",
            which, n ? "" : " (missing)");
    if (cJSON_IsString(p))
        *port = sdup(L, p->valuestring);
    else
        bad(L, RZ_EINVALID, which, p ? "port" : NULL, "connection %s.port must be a string%s",
            which, p ? "" : " (missing)");
}

void rz__lower_conn(lower *L, cJSON *c)
{
    rz_flow *f = L->f;
    rz__conn *v = grow(L, f->conns, &L->cap_conns, f->n_conns + 1, sizeof *v);
    if (!v)
        return;
    f->conns = v;
    rz__conn *cn = &v[f->n_conns];
    memset(cn, 0, sizeof *cn);
    size_t m = push_key(L, "connections");
    push_index(L, f->n_conns++);
    cn->src = cn->dst = RZ_NPOS;
    cn->ptr = ptr_here(L);
    if (!cJSON_IsObject(c)) {
        bad(L, RZ_EINVALID, NULL, NULL, "a connection must be a map, not %s", type_name(c));
        pop(L, m);
        return;
    }
    const cJSON *id = NULL, *src = NULL, *dst = NULL;
    for (const cJSON *k = c->child; k; k = k->next) {
        if (!id && strcmp(k->string, "id") == 0)
            id = k;
        else if (!src && strcmp(k->string, "source") == 0)
            src = k;
        else if (!dst && strcmp(k->string, "target") == 0)
            dst = k;
    }
    if (id && !cJSON_IsNull(id))
        cn->id = want_string(L, id, "id", true);
    lower_end(L, src, "source", &cn->src_node, &cn->src_port);
    lower_end(L, dst, "target", &cn->dst_node, &cn->dst_port);
    pop(L, m);
}

static void lower_conns(lower *L, cJSON *arr)
{
    if (!cJSON_IsArray(arr)) {
        bad(L, RZ_EINVALID, "connections", NULL, "'connections' must be a list, not %s",
            type_name(arr));
        return;
    }
    for (cJSON *c = arr->child; c; c = c->next)
        rz__lower_conn(L, c);
}

/* ---- flow inputs ---- */

static const char *const input_types[] = {
    "string", "number", "integer", "boolean", "object", "array", "any",
};

static bool value_has_type(const cJSON *v, const char *t)
{
    if (strcmp(t, "string") == 0)
        return cJSON_IsString(v);
    if (strcmp(t, "number") == 0)
        return cJSON_IsNumber(v);
    if (strcmp(t, "integer") == 0)
        return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
               v->valuedouble == floor(v->valuedouble);
    if (strcmp(t, "boolean") == 0)
        return cJSON_IsBool(v);
    if (strcmp(t, "object") == 0)
        return cJSON_IsObject(v);
    if (strcmp(t, "array") == 0)
        return cJSON_IsArray(v);
    return true;
}

/* The declared type is one we know, and the default is of that type. */
static void check_input_type(lower *L, rz__flow_input *in)
{
    if (!in->type)
        return;
    bool known = false;
    for (size_t i = 0; i < RZ_ARRAY_LEN(input_types) && !known; i++)
        known = strcmp(in->type, input_types[i]) == 0;
    if (!known) {
        bad(L, RZ_EINVALID, "type", NULL, "input '%s' has unknown type '%s' (string, number, "
            "integer, boolean, object, array, any)", in->name, in->type);
        in->type = NULL;
        return;
    }
    if (in->def && !value_has_type(in->def, in->type))
        bad(L, RZ_EINVALID, "default", NULL, "default of input '%s' is %s, but its type is %s",
            in->name, type_name(in->def), in->type);
}

/* `required` left out means: required unless there is a default. */
static void lower_input_decl(lower *L, rz__flow_input *in, cJSON *decl)
{
    bool said = false;
    for (cJSON *c = decl->child, *next; c; c = next) {
        next = c->next;
        const char *k = c->string;
        if (strcmp(k, "type") == 0) {
            in->type = cJSON_IsNull(c) ? NULL : want_string(L, c, k, false);
        } else if (strcmp(k, "required") == 0) {
            said = true;
            if (cJSON_IsBool(c))
                in->required = cJSON_IsTrue(c);
            else
                bad(L, RZ_EINVALID, k, NULL, "'required' must be true or false");
        } else if (strcmp(k, "default") == 0) {
            if (!cJSON_IsNull(c) && !in->def)
                in->def = take(L, decl, c);
        } else if (strcmp(k, "description") == 0) {
            if (!cJSON_IsString(c) && !cJSON_IsNull(c))
                bad(L, RZ_EINVALID, k, NULL, "'description' must be a string");
        } else {
            bad(L, RZ_EINVALID, k, NULL,
                "unknown input field '%s' (type, required, default, description)", k);
        }
    }
    if (!said)
        in->required = !in->def;
}

static void lower_flow_inputs(lower *L, cJSON *map)
{
    rz_flow *f = L->f;
    if (!cJSON_IsObject(map)) {
        bad(L, RZ_EINVALID, "inputs", NULL, "'inputs' must be a map of name -> declaration, not %s",
            type_name(map));
        return;
    }
    f->inputs = alloc(L, child_count(map) * sizeof *f->inputs);
    if (!f->inputs)
        return;
    size_t m0 = push_key(L, "inputs");
    for (cJSON *c = map->child, *next; c; c = next) {
        next = c->next;
        rz__flow_input *in = &f->inputs[f->n_inputs++];
        size_t m = push_key(L, c->string);
        in->name = sdup(L, c->string);
        in->ptr = ptr_here(L);
        if (cJSON_IsObject(c)) {
            lower_input_decl(L, in, c);
            check_input_type(L, in);
        }
        else if (!cJSON_IsNull(c))   /* name: <default> */
            in->def = take(L, map, c);
        else                         /* name: (nothing) */
            in->required = true;
        pop(L, m);
    }
    pop(L, m0);
}

/* ---- triggers ----
 * Kept verbatim (exports give them back as written) and run by the
 * orchestrator (docs/triggers.md); checked here so a trigger that would
 * never fire does not pass as one that will. An entry is either a map of one
 * type to its settings (`manual: {}`, `cron: "0 * * * *"`, `cron: {schedule,
 * tz, ...}`, `webhook: {name, secret}`) or a flat map with `type:`
 * (`{type: cron, schedule: "...", tz: Europe/Lisbon}`). */

#define TRIGGER_TYPES "manual, cron, webhook, flow, event"

static bool one_of(const cJSON *v, const char *const *words)
{
    for (; cJSON_IsString(v) && *words; words++)
        if (strcmp(v->valuestring, *words) == 0)
            return true;
    return false;
}

/* Webhook and trigger names travel in a URL path: keep them plain. */
static bool trigger_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
              || *s == '_' || *s == '-'))
            return false;
    return true;
}

static void check_schedule(lower *L, const cJSON *schedule, const cJSON *tz, const char *k)
{
    rz_cron_opts o = RZ_CRON_OPTS_INIT;
    o.tz = cJSON_IsString(tz) ? tz->valuestring : NULL;
    rz_cron *c = NULL;
    int rc = rz_cron_parse(&c, schedule->valuestring, &o);
    if (rc == RZ_ENOMEM) {
        no_memory(L);
    } else if (rc < 0) {
        /* a zone problem is the tz's; anything else the schedule's */
        bool zone = rc == RZ_EINVAL || rc == RZ_ENOENT || rc == RZ_EIO;
        bad(L, RZ_EINVALID, zone && tz ? "tz" : k, NULL, "%s", rz_error_last()->message);
    }
    rz_cron_free(c);
}

/* A field of a flow or event trigger (its source into *src); false when
 * `c` is none of theirs. */
static bool follow_field(lower *L, bool flow, bool event, const cJSON *c, const cJSON **src)
{
    static const char *const statuses[] = {"succeeded", "failed", "any", NULL};
    const char *k = c->string;
    if (flow && strcmp(k, "flow") == 0) {
        if (!cJSON_IsString(c) || !c->valuestring[0] || strlen(c->valuestring) > 200)
            bad(L, RZ_EINVALID, k, NULL, "'flow' must name a flow (its 'name:', 1-200 bytes)");
        else
            *src = c;
    } else if (flow && strcmp(k, "status") == 0) {
        if (!one_of(c, statuses))
            bad(L, RZ_EINVALID, k, NULL, "'status' must be succeeded, failed or any");
    } else if (event && strcmp(k, "event") == 0) {
        if (!cJSON_IsString(c) || !trigger_name_ok(c->valuestring))
            bad(L, RZ_EINVALID, k, NULL, "an event's name is 1-64 letters, digits, '_' or '-'");
        else
            *src = c;
    } else {
        return false;
    }
    return true;
}

/* The settings of one trigger: `t` holds them (with `type` when flat). */
static void check_trigger_settings(lower *L, const char *type, const cJSON *t)
{
    static const char *const catchups[] = {"none", "one", "all", NULL};
    static const char *const overlaps[] = {"skip", "queue", "allow", NULL};
    bool cron = strcmp(type, "cron") == 0, hook = strcmp(type, "webhook") == 0;
    bool flow = strcmp(type, "flow") == 0, event = strcmp(type, "event") == 0;
    const cJSON *schedule = NULL, *tz = NULL, *name = NULL, *secret = NULL, *src = NULL;
    for (const cJSON *c = t->child; c; c = c->next) {
        const char *k = c->string;
        if (strcmp(k, "type") == 0)
            continue;
        if (strcmp(k, "enabled") == 0) {
            if (!cJSON_IsBool(c))
                bad(L, RZ_EINVALID, k, NULL, "'enabled' must be true or false");
        } else if (follow_field(L, flow, event, c, &src)) {   /* checked there */
        } else if (strcmp(k, "name") == 0 && (cron || hook || flow || event)) {
            if (!cJSON_IsString(c) || !trigger_name_ok(c->valuestring))
                bad(L, RZ_EINVALID, k, NULL, "a trigger's 'name' is 1-64 letters, digits, "
                    "'_' or '-'");
            else
                name = c;
        } else if (cron && strcmp(k, "schedule") == 0) {
            if (cJSON_IsString(c))
                schedule = c;
            else
                bad(L, RZ_EINVALID, k, NULL, "'schedule' must be a string of 5 fields "
                    "(minute hour day-of-month month day-of-week), not %s", type_name(c));
        } else if (cron && strcmp(k, "tz") == 0) {
            if (cJSON_IsString(c))
                tz = c;
            else
                bad(L, RZ_EINVALID, k, NULL, "'tz' must be an IANA time zone name "
                    "(Europe/Lisbon), not %s", type_name(c));
        } else if (cron && strcmp(k, "catchup") == 0) {
            if (!one_of(c, catchups))
                bad(L, RZ_EINVALID, k, NULL, "'catchup' must be none, one or all");
        } else if (cron && strcmp(k, "overlap") == 0) {
            if (!one_of(c, overlaps))
                bad(L, RZ_EINVALID, k, NULL, "'overlap' must be skip, queue or allow");
        } else if (hook && strcmp(k, "secret") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "credentialId");
            if (!cJSON_IsObject(c) || !cJSON_IsString(id) || !id->valuestring[0])
                bad(L, RZ_EINVALID, k, NULL, "a webhook's 'secret' must be "
                    "{credentialId: <vault id>}: the secret itself never goes in a flow");
            else
                secret = c;
        } else if (hook && strcmp(k, "max_body_bytes") == 0) {
            uint32_t v;
            if (want_u32(L, c, k, NULL, 1, &v) && v > 1024u * 1024u)
                bad(L, RZ_EINVALID, k, NULL, "'max_body_bytes' is at most 1048576");
        } else {
            bad(L, RZ_EINVALID, k, NULL, "unknown %s trigger field '%s' (%s)", type, k,
                cron ? "schedule, tz, catchup, overlap, name, enabled"
                     : hook ? "name, secret, max_body_bytes, enabled"
                     : flow ? "flow, status, name, enabled"
                     : event ? "event, name, enabled" : "enabled");
        }
    }
    if (cron && !schedule)
        bad(L, RZ_EINVALID, NULL, NULL, "a cron trigger needs a 'schedule'");
    else if (cron)
        check_schedule(L, schedule, tz, "schedule");
    if ((flow || event) && !src)
        bad(L, RZ_EINVALID, NULL, NULL, flow ? "a flow trigger needs the 'flow' it follows "
            "({flow: <name>, status: succeeded|failed|any})"
            : "an event trigger needs its 'event' (a name)");
    if (hook && !name)
        bad(L, RZ_EINVALID, NULL, NULL, "a webhook trigger needs a 'name' (its URL is "
            "/api/v1/hooks/<flow>/<name>)");
    if (hook && !secret)
        bad(L, RZ_EINVALID, NULL, NULL, "a webhook trigger needs a 'secret' "
            "({credentialId: <vault id>}): unsigned calls are refused");
}

static bool known_trigger(const char *k)
{
    return !strcmp(k, "manual") || !strcmp(k, "cron") || !strcmp(k, "webhook") ||
           !strcmp(k, "flow") || !strcmp(k, "event");
}

static void check_trigger(lower *L, const cJSON *t)
{
    const cJSON *type = cJSON_IsObject(t) ? cJSON_GetObjectItemCaseSensitive(t, "type") : NULL;
    if (type) {                                    /* {type: cron, schedule: ...} */
        if (!cJSON_IsString(type) || !known_trigger(type->valuestring))
            bad(L, RZ_EINVALID, "type", NULL, "unknown trigger type '%s' (" TRIGGER_TYPES ")",
                cJSON_IsString(type) ? type->valuestring : "?");
        else
            check_trigger_settings(L, type->valuestring, t);
        return;
    }
    if (!cJSON_IsObject(t) || !t->child || t->child->next) {
        bad(L, RZ_EINVALID, NULL, NULL, "a trigger must be a map of exactly one type "
            "to its settings (manual: {} or cron: \"0 * * * *\") or have a 'type', not %s",
            cJSON_IsObject(t) ? (t->child ? "several" : "an empty map") : type_name(t));
        return;
    }
    const cJSON *c = t->child;
    const char *k = c->string;
    if (!known_trigger(k)) {
        bad(L, RZ_EINVALID, k, NULL, "unknown trigger type '%s' (" TRIGGER_TYPES ")", k);
    } else if (strcmp(k, "manual") == 0) {
        if (!cJSON_IsNull(c) && !(cJSON_IsObject(c) && !c->child))
            bad(L, RZ_EINVALID, k, NULL, "a manual trigger takes no settings ({})");
    } else if (strcmp(k, "cron") == 0 && cJSON_IsString(c)) {
        check_schedule(L, c, NULL, k);
    } else if ((strcmp(k, "flow") == 0 && cJSON_IsString(c) && c->valuestring[0] &&
                strlen(c->valuestring) <= 200) ||
               (strcmp(k, "event") == 0 && cJSON_IsString(c) &&
                trigger_name_ok(c->valuestring))) {
        /* flow: <name> (when it succeeds), event: <name> */
    } else if (strcmp(k, "event") == 0 && cJSON_IsString(c)) {
        bad(L, RZ_EINVALID, k, NULL, "an event's name is 1-64 letters, digits, '_' or '-'");
    } else if (!cJSON_IsObject(c)) {
        bad(L, RZ_EINVALID, k, NULL, strcmp(k, "cron") == 0
            ? "'cron' must be a string of 5 fields (minute hour day-of-month month "
              "day-of-week) or a map with a 'schedule', not %s"
            : "'%s' must be a map of its settings, not %s",
            strcmp(k, "cron") == 0 ? type_name(c) : k, type_name(c));
    } else {
        size_t m = push_key(L, k);
        check_trigger_settings(L, k, c);
        pop(L, m);
    }
}

static void check_triggers(lower *L, const cJSON *v)
{
    if (!cJSON_IsArray(v)) {
        bad(L, RZ_EINVALID, "triggers", NULL, "'triggers' must be a list, not %s",
            type_name(v));
        return;
    }
    size_t m0 = push_key(L, "triggers"), i = 0;
    for (const cJSON *t = v->child; t; t = t->next, i++) {
        size_t m = push_index(L, i);
        check_trigger(L, t);
        char *name = rz__trigger_name(t, i);
        size_t j = 0;
        for (const cJSON *u = v->child; name && u != t; u = u->next, j++) {
            char *other = rz__trigger_name(u, j);
            if (other && strcmp(other, name) == 0)
                bad(L, RZ_EDUPLICATE, NULL, NULL, "two triggers are named '%s'", name);
            free(other);
        }
        free(name);
        pop(L, m);
    }
    pop(L, m0);
}

/* The flow's on_exit step: a step map (either syntax's keys) whose id is
 * `on_exit`; it runs after every other step, so it takes no needs or join. */
#define EXIT_STEP_ID "on_exit"

static void lower_exit(lower *L, cJSON *c)
{
    size_t m = push_key(L, "on_exit");
    rz__step *s = new_step(L);
    if (s) {
        lower_step(L, s, c, EXIT_STEP_ID);
        s->is_exit = true;
        if (s->n_needs)
            bad(L, RZ_EINVALID, "needs", NULL, "the on_exit step runs after every "
                "other step: it takes no 'needs'");
        if (s->join != RZ_JOIN_ALL_SUCCEEDED)
            bad(L, RZ_EINVALID, "join", NULL, "the on_exit step runs after every "
                "other step whatever their state: it takes no 'join'");
        if (s->for_each)
            bad(L, RZ_EINVALID, "for_each", NULL, "the on_exit step runs once: it "
                "takes no 'for_each'");
        if (s->subflow)
            bad(L, RZ_EINVALID, "flow", NULL, "the on_exit step runs a module, not a "
                "sub-flow");
        s->join = RZ_JOIN_ALL_DONE;
    }
    pop(L, m);
}

/* outputs: name -> value, usually ${{ steps.X.outputs.P }} (checked by the
 * validator, evaluated when the run ends). */
static void lower_flow_outputs(lower *L, cJSON *map)
{
    rz_flow *f = L->f;
    if (!cJSON_IsObject(map)) {
        bad(L, RZ_EINVALID, "outputs", NULL, "'outputs' must be a map of name -> "
            "value, not %s", type_name(map));
        return;
    }
    f->outputs = alloc(L, child_count(map) * sizeof *f->outputs);
    if (!f->outputs)
        return;
    size_t m0 = push_key(L, "outputs");
    for (cJSON *c = map->child, *next; c; c = next) {
        next = c->next;
        rz__input *o = &f->outputs[f->n_outputs++];
        size_t m = push_key(L, c->string);
        o->name = sdup(L, c->string);
        o->ptr = ptr_here(L);
        o->value = take(L, map, c);
        pop(L, m);
    }
    pop(L, m0);
}

/* ---- top level ---- */

static bool top_string(lower *L, cJSON *c, const char *k)
{
    rz_flow *f = L->f;
    struct { const char *key; char **dst; bool lenient; } fields[] = {
        {"id", &f->id, true},           {"name", &f->name, true},
        {"version", &f->version, true}, {"description", &f->description, false},
        {"createdAt", &f->created_at, false}, {"updatedAt", &f->updated_at, false},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(fields); i++) {
        if (strcmp(k, fields[i].key) != 0)
            continue;
        if (!*fields[i].dst && !cJSON_IsNull(c))
            *fields[i].dst = want_string(L, c, k, fields[i].lenient);
        return true;
    }
    return false;
}

/* In a FluxGraph document the unknown top-level keys set aside while the
 * shape was not yet known are errors; `ui:` holds the kept ones. */
static void flux_top_extra(lower *L)
{
    cJSON *held = L->f->extra;
    L->f->extra = NULL;
    for (cJSON *c = held ? held->child : NULL, *next; c; c = next) {
        next = c->next;
        if (strcmp(c->string, "ui") == 0) {
            lower_ui(L, &L->f->extra, c, true);
        } else if (rz__flux_kept_key(c->string, true)) {
            /* x-*: a home for YAML anchors, as in compose files. */
            keep_extra(L, &L->f->extra, held, c);
        } else {
            bad(L, RZ_EINVALID, c->string, NULL, "unknown top-level key '%s' (keys: flux, "
                "id, name, version, description, createdAt, updatedAt, triggers, inputs, "
                "steps, connections, on_exit, outputs, ui)", c->string);
        }
    }
    cJSON_Delete(held);
}

/* An empty field is an absent one, for a builder document's unknown
 * top-level keys as for its steps' (and FluxGraph's `ui:`): kept, a null
 * would not survive a round trip through FluxGraph. */
static void drop_null_extra(rz_flow *f)
{
    for (cJSON *c = f->extra ? f->extra->child : NULL, *next; c; c = next) {
        next = c->next;
        if (cJSON_IsNull(c))
            cJSON_Delete(cJSON_DetachItemViaPointer(f->extra, c));
    }
}

lower *rz__lower_new(rz__load *ld, bool arena_tree)
{
    lower *L = rz__calloc(1, sizeof *L);
    if (L) {
        L->ld = ld;
        L->f = ld->f;
        L->a = RZ_FLOW_ARENA(ld->f);
        L->arena_tree = arena_tree;
    }
    return L;
}

void rz__lower_free(lower *L)
{
    if (!L)
        return;
    if (L->path.failed)
        no_memory(L);
    rz__buf_free(&L->path);
    free(L);
}

void rz__lower_root(lower *L, cJSON *root, bool streamed_nodes, bool streamed_conns)
{
    rz_flow *f = L->f;
    if (!cJSON_IsObject(root)) {
        bad(L, RZ_EINVALID, NULL, NULL, "a flow document must be a map, not %s",
            type_name(root));
        return;
    }
    cJSON *nodes = NULL, *steps = NULL, *conns = NULL, *inputs = NULL;
    cJSON *on_exit = NULL, *outputs = NULL;
    for (cJSON *c = root->child, *next; c; c = next) {
        next = c->next;
        const char *k = c->string;
        if (top_string(L, c, k))
            continue;
        if (strcmp(k, "flux") == 0) {
            if (!cJSON_IsNumber(c) || c->valuedouble != 1)
                bad(L, RZ_EINVALID, k, NULL, "unsupported 'flux' version (expected 1)");
        } else if (strcmp(k, "triggers") == 0) {
            if (!f->triggers && !cJSON_IsNull(c)) {
                check_triggers(L, c);
                f->triggers = take(L, root, c);
            }
        } else if (strcmp(k, "nodes") == 0) {
            nodes = nodes ? nodes : c;
        } else if (strcmp(k, "steps") == 0) {
            steps = steps ? steps : c;
        } else if (strcmp(k, "connections") == 0) {
            conns = conns ? conns : c;
        } else if (strcmp(k, "inputs") == 0) {
            inputs = inputs ? inputs : c;
        } else if (strcmp(k, "on_exit") == 0) {
            on_exit = on_exit ? on_exit : c;
        } else if (strcmp(k, "outputs") == 0) {
            outputs = outputs ? outputs : c;
        } else {
            keep_extra(L, &f->extra, root, c);
        }
    }
    bool has_nodes = streamed_nodes || nodes;
    f->builder = has_nodes || (!steps && f->format == RZ_FORMAT_JSON);
    if (!f->builder)
        flux_top_extra(L);
    else
        drop_null_extra(f);
    if (has_nodes && steps)
        bad(L, RZ_EINVALID, "steps", NULL, "a flow has either 'nodes' or 'steps', not both");
    if (nodes && !streamed_nodes)
        lower_nodes(L, nodes);
    else if (steps && !has_nodes && !cJSON_IsNull(steps))
        lower_steps(L, steps);
    else if (!steps && !has_nodes)
        bad(L, RZ_EINVALID, NULL, NULL, "the flow has no '%s'", f->builder ? "nodes" : "steps");
    if (conns && !streamed_conns && !cJSON_IsNull(conns))
        lower_conns(L, conns);
    if (inputs && !cJSON_IsNull(inputs))
        lower_flow_inputs(L, inputs);
    if (on_exit && !cJSON_IsNull(on_exit))
        lower_exit(L, on_exit);
    if (outputs && !cJSON_IsNull(outputs))
        lower_flow_outputs(L, outputs);
}

void rz__flow_lower(rz__load *ld, cJSON *root)
{
    lower *L = rz__lower_new(ld, false);
    if (!L) {
        rz__load_diag_at(ld, RZ_ENOMEM, 0, 0, NULL, "out of memory");
        return;
    }
    rz__lower_root(L, root, false, false);
    rz__lower_free(L);
}
