/* rhizos.node — the N-API addon under bindings/node/index.js.
 *
 * A thin layer: each export wraps one or two library calls and passes JSON
 * text where the library speaks JSON, so index.js shapes the JavaScript API.
 * Handles are napi_externals around a small box; close() empties the box,
 * so any later use throws Error{code:'RZ_ESTATE'} instead of touching freed
 * memory, and the GC finalizer frees what close() did not. A flow or vault
 * in use by a run on a worker thread cannot be closed until the run ends.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <node_api.h>

#include "rhizos/common.h"
#include "rhizos/exec.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/plan.h"
#include "rhizos/run.h"
#include "rhizos/hw.h"
#include "rhizos/ledger.h"
#include "rhizos/match.h"
#include "rhizos/vault.h"
#include "rhizos/estimate.h"

#include "addon.h"

static const char *const kind_names[] = { "", "Flow", "Matcher", "Ledger", "Vault",
                                          "Client" };

void throw_napi(napi_env env)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) {
        const napi_extended_error_info *info = NULL;
        napi_get_last_error_info(env, &info);
        napi_throw_error(env, "RZ_EINTERNAL",
                         info && info->error_message ? info->error_message
                                                     : "N-API call failed");
    }
}

void set_str(napi_env env, napi_value obj, const char *key, const char *s)
{
    napi_value v;
    if (napi_create_string_utf8(env, s ? s : "", NAPI_AUTO_LENGTH, &v) == napi_ok)
        napi_set_named_property(env, obj, key, v);
}

void set_num(napi_env env, napi_value obj, const char *key, double d)
{
    napi_value v;
    if (napi_create_double(env, d, &v) == napi_ok)
        napi_set_named_property(env, obj, key, v);
}

static void set_big(napi_env env, napi_value obj, const char *key, uint64_t u)
{
    napi_value v;
    if (napi_create_bigint_uint64(env, u, &v) == napi_ok)
        napi_set_named_property(env, obj, key, v);
}

static napi_value diags_array(napi_env env, rz_diags *d)
{
    napi_value arr;
    if (napi_create_array(env, &arr) != napi_ok)
        return NULL;
    if (!d)
        return arr;
    rz_diags_sort(d);
    static const char *const sev[] = { "error", "warning", "note" };
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *g = rz_diags_get(d, i);
        napi_value o;
        if (napi_create_object(env, &o) != napi_ok)
            return NULL;
        set_str(env, o, "file", g->file);
        set_num(env, o, "line", g->line);
        set_num(env, o, "column", g->column);
        set_str(env, o, "code", rz_status_name(g->code));
        set_str(env, o, "message", g->message);
        set_str(env, o, "severity", sev[g->severity <= 2 ? g->severity : 0]);
        set_str(env, o, "pointer", g->pointer);
        napi_set_element(env, arr, (uint32_t)i, o);
    }
    return arr;
}

/* An Error for status `rc` from a saved rz_error (the detail when it is
 * about this failure), with .code, .status, location and diagnostics. */
napi_value make_error(napi_env env, int rc, const rz_error *e, rz_diags *d,
                             const char *context)
{
    char msg[768];
    const char *detail = e && e->code == rc && e->message[0] ? e->message
                                                             : rz_strerror(rc);
    if (context)
        snprintf(msg, sizeof msg, "%s: %s", context, detail);
    else
        snprintf(msg, sizeof msg, "%s", detail);
    napi_value m, code, err;
    if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
        napi_create_string_utf8(env, rz_status_name(rc), NAPI_AUTO_LENGTH, &code) != napi_ok ||
        napi_create_error(env, code, m, &err) != napi_ok)
        return NULL;
    set_num(env, err, "status", rc);
    if (e && e->code == rc) {
        set_str(env, err, "file", e->file);
        set_num(env, err, "line", e->line);
        set_num(env, err, "column", e->column);
        set_str(env, err, "pointer", e->pointer);
    }
    napi_value arr = diags_array(env, d);
    if (arr)
        napi_set_named_property(env, err, "diagnostics", arr);
    return err;
}

/* Throw for a failed library call on this thread; always returns NULL. */
napi_value throw_rz(napi_env env, int rc, rz_diags *d, const char *context)
{
    rz_error saved = *rz_error_last();
    napi_value err = make_error(env, rc, &saved, d, context);
    if (err)
        napi_throw(env, err);
    else
        throw_napi(env);
    return NULL;
}

napi_value throw_code(napi_env env, const char *code, const char *msg)
{
    napi_throw_error(env, code, msg);
    return NULL;
}

/* ---- arguments --------------------------------------------------------- */

napi_value *args(napi_env env, napi_callback_info info, napi_value *argv,
                        size_t want)
{
    size_t argc = want;
    for (size_t i = 0; i < want; i++)
        argv[i] = NULL;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    napi_value undef;
    napi_get_undefined(env, &undef);
    for (size_t i = argc; i < want; i++)
        argv[i] = undef;
    return argv;
}

bool is_nullish(napi_env env, napi_value v)
{
    napi_valuetype t;
    return !v || napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null;
}

/* A string argument copied to the heap (free with free), NUL bytes refused.
 * NULL with an exception pending on error. */
char *get_str(napi_env env, napi_value v, const char *what)
{
    size_t len = 0;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
        char m[128];
        snprintf(m, sizeof m, "%s must be a string", what);
        napi_throw_type_error(env, "RZ_EINVAL", m);
        return NULL;
    }
    char *s = malloc(len + 1);
    if (!s) {
        napi_throw_error(env, "RZ_ENOMEM", "out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    if (strlen(s) != len) {
        free(s);
        char m[128];
        snprintf(m, sizeof m, "%s contains a NUL character", what);
        napi_throw_type_error(env, "RZ_EINVAL", m);
        return NULL;
    }
    return s;
}

char *get_opt_str(napi_env env, napi_value v, const char *what, bool *ok)
{
    *ok = true;
    if (is_nullish(env, v))
        return NULL;
    char *s = get_str(env, v, what);
    *ok = s != NULL;
    return s;
}

static bool get_u64(napi_env env, napi_value v, const char *what, uint64_t *out)
{
    bool lossless = false;
    napi_valuetype t;
    napi_typeof(env, v, &t);
    if (t == napi_bigint &&
        napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless)
        return true;
    if (t == napi_number) {
        double d;
        napi_get_value_double(env, v, &d);
        if (d >= 0 && d <= 9007199254740991.0 && d == (double)(uint64_t)d) {
            *out = (uint64_t)d;
            return true;
        }
    }
    char m[160];
    snprintf(m, sizeof m, "%s must be a whole number from 0 to 2^64-1", what);
    napi_throw_range_error(env, "RZ_EINVAL", m);
    return false;
}

bool get_int(napi_env env, napi_value v, int32_t *out)
{
    if (napi_get_value_int32(env, v, out) != napi_ok) {
        napi_throw_type_error(env, "RZ_EINVAL", "expected a number");
        return false;
    }
    return true;
}

box *get_box(napi_env env, napi_value v, enum kind k, bool open)
{
    box *b = NULL;
    napi_valuetype t;
    if (!v || napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, v, (void **)&b) != napi_ok || !b || b->kind != k) {
        char m[96];
        snprintf(m, sizeof m, "expected a %s handle", kind_names[k]);
        napi_throw_type_error(env, "RZ_EINVAL", m);
        return NULL;
    }
    if (open && (!b->p || b->closing)) {
        char m[96];
        snprintf(m, sizeof m, "%s is closed", kind_names[k]);
        napi_throw_error(env, "RZ_ESTATE", m);
        return NULL;
    }
    return b;
}

/* ---- handles ------------------------------------------------------------ */

void box_release(box *b)
{
    switch (b->kind) {
    case K_FLOW:    rz_flow_free(b->p); rz_registry_free(b->reg); b->reg = NULL; break;
    case K_MATCHER: rz_matcher_free(b->p); break;
    case K_LEDGER:  rz_ledger_close(b->p); break;
    case K_VAULT:   rz_vault_close(b->p); break;
    case K_CLIENT:  client_release(b->p); break;
    }
    b->p = NULL;
}

static void box_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    box *b = data;
    box_release(b);
    free(b);
}

napi_value wrap(napi_env env, enum kind k, void *p)
{
    box *b = calloc(1, sizeof *b);
    napi_value v;
    if (!b) {
        box tmp = { .kind = k, .p = p };
        box_release(&tmp);
        return throw_code(env, "RZ_ENOMEM", "out of memory");
    }
    b->kind = k;
    b->p = p;
    if (napi_create_external(env, b, box_finalize, NULL, &v) != napi_ok) {
        box_finalize(env, b, NULL);
        throw_napi(env);
        return NULL;
    }
    return v;
}

static napi_value close_kind(napi_env env, napi_callback_info info, enum kind k)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], k, false);
    if (!b)
        return NULL;
    if (b->busy) {
        char m[96];
        snprintf(m, sizeof m, "%s is in use by a run; close it when the run ends",
                 kind_names[k]);
        return throw_code(env, "RZ_ESTATE", m);
    }
    box_release(b);
    return NULL;
}

napi_value str_result(napi_env env, char *s, size_t len)
{
    napi_value v;
    napi_status st = napi_create_string_utf8(env, s ? s : "", s ? len : 0, &v);
    rz_free(s);
    if (st != napi_ok) {
        throw_napi(env);
        return NULL;
    }
    return v;
}

/* ---- common ------------------------------------------------------------- */

static napi_value js_version(napi_env env, napi_callback_info info)
{
    (void)info;
    napi_value v;
    CALL(env, napi_create_string_utf8(env, rz_version(), NAPI_AUTO_LENGTH, &v));
    return v;
}

static napi_value js_status_name(napi_env env, napi_callback_info info)
{
    napi_value a[1], v;
    int32_t code;
    if (!args(env, info, a, 1) || !get_int(env, a[0], &code))
        return NULL;
    CALL(env, napi_create_string_utf8(env, rz_status_name(code), NAPI_AUTO_LENGTH, &v));
    return v;
}

/* ---- flows ------------------------------------------------------------- */

static int parse_format(napi_env env, napi_value v, rz_format *out)
{
    bool ok;
    char *s = get_opt_str(env, v, "format", &ok);
    if (!ok)
        return -1;
    *out = RZ_FORMAT_AUTO;
    int rc = 0;
    if (!s || !strcmp(s, "auto"))
        *out = RZ_FORMAT_AUTO;
    else if (!strcmp(s, "json"))
        *out = RZ_FORMAT_JSON;
    else if (!strcmp(s, "yaml") || !strcmp(s, "yml"))
        *out = RZ_FORMAT_YAML;
    else if (!strcmp(s, "cbor"))
        *out = RZ_FORMAT_CBOR;
    else {
        napi_throw_range_error(env, "RZ_EINVAL", "format must be json, yaml or cbor");
        rc = -1;
    }
    free(s);
    return rc;
}

/* A flow handle that a call may replace (validate and expand put sub-flows
 * in place): open, and not lent to a run in progress. */
static box *flow_to_change(napi_env env, napi_value v)
{
    box *b = get_box(env, v, K_FLOW, true);
    if (b && b->busy) {
        throw_code(env, "RZ_ESTATE", "Flow is in use by a run");
        return NULL;
    }
    return b;
}

/* flowLoad(path, format) */
static napi_value js_flow_load(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    rz_format fmt;
    if (!args(env, info, a, 2) || parse_format(env, a[1], &fmt) != 0)
        return NULL;
    char *path = get_str(env, a[0], "path");
    if (!path)
        return NULL;
    rz_diags *d = NULL;
    rz_flow *f = NULL;
    int rc = rz_diags_new(&d);
    if (rc == RZ_OK)
        rc = rz_flow_load(&f, path, fmt, d);
    napi_value out = rc == RZ_OK ? wrap(env, K_FLOW, f) : throw_rz(env, rc, d, NULL);
    rz_diags_free(d);
    free(path);
    return out;
}

/* flowParse(stringOrBuffer, format, filename) */
static napi_value js_flow_parse(napi_env env, napi_callback_info info)
{
    napi_value a[3];
    rz_format fmt;
    if (!args(env, info, a, 3) || parse_format(env, a[1], &fmt) != 0)
        return NULL;
    bool is_buf = false, ok;
    napi_is_buffer(env, a[0], &is_buf);
    void *data = NULL;
    size_t len = 0;
    char *text = NULL;
    if (is_buf) {
        CALL(env, napi_get_buffer_info(env, a[0], &data, &len));
    } else {
        if (napi_get_value_string_utf8(env, a[0], NULL, 0, &len) != napi_ok)
            return throw_code(env, "RZ_EINVAL", "a flow document is a string or a Buffer");
        if (!(text = malloc(len + 1)))
            return throw_code(env, "RZ_ENOMEM", "out of memory");
        napi_get_value_string_utf8(env, a[0], text, len + 1, &len);
        data = text;
    }
    char *name = get_opt_str(env, a[2], "filename", &ok);
    if (!ok) {
        free(text);
        return NULL;
    }
    rz_diags *d = NULL;
    rz_flow *f = NULL;
    int rc = rz_diags_new(&d);
    if (rc == RZ_OK)
        rc = rz_flow_parse(&f, data, len, fmt, name, d);
    napi_value out = rc == RZ_OK ? wrap(env, K_FLOW, f) : throw_rz(env, rc, d, NULL);
    rz_diags_free(d);
    free(name);
    free(text);
    return out;
}

static napi_value js_flow_info(napi_env env, napi_callback_info info)
{
    napi_value a[1], o, steps;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_FLOW, true);
    if (!b)
        return NULL;
    static const char *const fmts[] = { "auto", "json", "yaml", "cbor" };
    rz_flow *f = b->p;
    CALL(env, napi_create_object(env, &o));
    set_str(env, o, "name", rz_flow_name(f));
    set_str(env, o, "file", rz_flow_file(f));
    rz_format fm = rz_flow_format(f);
    set_str(env, o, "format", fmts[fm <= RZ_FORMAT_CBOR ? fm : 0]);
    CALL(env, napi_create_array(env, &steps));
    for (size_t i = 0; i < rz_flow_step_count(f); i++) {
        napi_value s;
        CALL(env, napi_create_object(env, &s));
        set_str(env, s, "id", rz_flow_step_id(f, i));
        set_str(env, s, "module", rz_flow_step_module(f, i));
        if (rz_flow_step_subflow(f, i))
            set_str(env, s, "flow", rz_flow_step_subflow(f, i));
        napi_set_element(env, steps, (uint32_t)i, s);
    }
    napi_set_named_property(env, o, "steps", steps);
    return o;
}

/* As the CLI expands: named sub-flows (flow://NAME@N) from $RHIZOS_FLOWS. */
static const rz_flow_expand_opts *expand_opts(rz_flow_expand_opts *o)
{
    const char *dir = getenv("RHIZOS_FLOWS");
    *o = (rz_flow_expand_opts)RZ_FLOW_EXPAND_OPTS_INIT;
    o->flows_dir = dir && dir[0] ? dir : NULL;
    return o;
}

/* flowValidate(flow, registries: string[] | null, structureOnly: bool)
 * -> { diagnostics, valid } ; registries null: none given, the flow is
 * checked for structure only. */
static napi_value js_flow_validate(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    if (!args(env, info, a, 2))
        return NULL;
    box *b = flow_to_change(env, a[0]);
    if (!b)
        return NULL;
    rz_registry *reg = NULL;
    rz_diags *d = NULL;
    int rc = rz_diags_new(&d);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, NULL);
    if (!is_nullish(env, a[1])) {
        uint32_t n = 0;
        if (napi_get_array_length(env, a[1], &n) != napi_ok) {
            rz_diags_free(d);
            return throw_code(env, "RZ_EINVAL", "registries must be an array of strings");
        }
        rc = rz_registry_new(&reg);
        for (uint32_t i = 0; rc == RZ_OK && i < n; i++) {
            napi_value e;
            napi_get_element(env, a[1], i, &e);
            char *p = get_str(env, e, "registry");
            if (!p) {
                rz_registry_free(reg);
                rz_diags_free(d);
                return NULL;
            }
            rc = rz_registry_add(reg, p, NULL);
            if (rc != RZ_OK) {
                napi_value out = throw_rz(env, rc, NULL, p);
                free(p);
                rz_registry_free(reg);
                rz_diags_free(d);
                return out;
            }
            free(p);
        }
        if (rc != RZ_OK) {
            rz_registry_free(reg);
            rz_diags_free(d);
            return throw_rz(env, rc, NULL, NULL);
        }
    }
    /* Validates too; a flow with sub-flows is replaced by its expansion. */
    rz_flow *f = b->p;
    rz_flow_expand_opts xo;
    rc = rz_flow_expand_with(&f, reg, expand_opts(&xo), d);
    b->p = f;
    if (rc != RZ_OK && rc != RZ_EINVALID && rz_diags_count(d) == 0) {
        rz_registry_free(reg);   /* nothing resolved: the flow keeps its old one */
        napi_value out = throw_rz(env, rc, d, NULL);
        rz_diags_free(d);
        return out;
    }
    /* The flow now points into `reg`: it lives as long as the flow. */
    rz_registry_free(b->reg);
    b->reg = reg;
    napi_value o, arr = diags_array(env, d), valid;
    rz_diags_free(d);
    CALL(env, napi_create_object(env, &o));
    if (arr)
        napi_set_named_property(env, o, "diagnostics", arr);
    CALL(env, napi_get_boolean(env, rc == RZ_OK && reg != NULL, &valid));
    napi_set_named_property(env, o, "valid", valid);
    return o;
}

/* flowExpand(flow) -> diagnostics (warnings); sub-flows put in place,
 * structure checked (modules are validate's). Throws with every problem,
 * the flow unchanged. */
static napi_value js_flow_expand(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = flow_to_change(env, a[0]);
    if (!b)
        return NULL;
    rz_diags *d = NULL;
    int rc = rz_diags_new(&d);
    rz_flow *f = b->p;
    rz_flow_expand_opts xo;
    if (rc == RZ_OK)
        rc = rz_flow_expand_with(&f, NULL, expand_opts(&xo), d);
    b->p = f;
    napi_value out = rc == RZ_OK ? diags_array(env, d) : throw_rz(env, rc, d, NULL);
    rz_diags_free(d);
    return out;
}

static napi_value js_flow_plan(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_FLOW, true);
    if (!b)
        return NULL;
    rz_diags *d = NULL;
    rz_plan *p = NULL;
    char *json = NULL;
    int rc = rz_diags_new(&d);
    if (rc == RZ_OK)
        rc = rz_plan_build(&p, b->p, d);
    if (rc == RZ_OK)
        rc = rz_plan_to_json(p, &json);
    napi_value out = rc == RZ_OK ? str_result(env, json, strlen(json))
                                 : throw_rz(env, rc, d, NULL);
    rz_plan_free(p);
    rz_diags_free(d);
    return out;
}

/* flowExport(flow, how: "json" | "yaml", flags) */
static napi_value js_flow_export(napi_env env, napi_callback_info info)
{
    napi_value a[3];
    int32_t flags = 0;
    if (!args(env, info, a, 3) || !get_int(env, a[2], &flags))
        return NULL;
    box *b = get_box(env, a[0], K_FLOW, true);
    char *how = b ? get_str(env, a[1], "format") : NULL;
    if (!how)
        return NULL;
    char *out = NULL;
    size_t len = 0;
    int rc = !strcmp(how, "yaml") ? rz_flow_to_yaml(b->p, &out, &len)
                                  : rz_flow_to_json(b->p, (unsigned)flags, &out, &len);
    free(how);
    return rc == RZ_OK ? str_result(env, out, len) : throw_rz(env, rc, NULL, NULL);
}

static napi_value js_flow_close(napi_env env, napi_callback_info info)
{
    return close_kind(env, info, K_FLOW);
}

/* flowEstimate(flow, [priceTableFile, ...]) -> JSON (rz_estimate_to_json) */
static napi_value js_flow_estimate(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    uint32_t n = 0;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_FLOW, true);
    if (!b)
        return NULL;
    if (napi_get_array_length(env, a[1], &n) != napi_ok)
        return throw_code(env, "RZ_EINVAL", "price tables must be an array of paths");
    rz_prices *p = NULL;
    int rc = rz_prices_new(&p);
    for (uint32_t i = 0; rc == RZ_OK && i < n; i++) {
        napi_value e;
        napi_get_element(env, a[1], i, &e);
        char *path = get_str(env, e, "price table");
        if (!path) {
            rz_prices_free(p);
            return NULL;
        }
        rc = rz_prices_add_file(p, path);
        if (rc != RZ_OK) {
            napi_value out = throw_rz(env, rc, NULL, path);
            free(path);
            rz_prices_free(p);
            return out;
        }
        free(path);
    }
    rz_estimate *est = NULL;
    char *json = NULL;
    if (rc == RZ_OK)
        rc = rz_estimate_flow(&est, b->p, p);
    if (rc == RZ_OK)
        rc = rz_estimate_to_json(est, &json);
    rz_estimate_free(est);
    rz_prices_free(p);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "estimate");
    return str_result(env, json, strlen(json));
}

/* ---- runs (on a worker thread) ------------------------------------------ */

typedef struct run_work {
    napi_async_work work;
    napi_deferred deferred;
    napi_ref flow_ref, vault_ref;
    box *flow, *vault;
    char *inputs, *run_id, *data_dir, *llm_servers;
    unsigned jobs;
    int sandbox;
    int rc;
    rz_error err;        /* rz_error_last() of the worker, saved for the reject */
    char *json;          /* the finished run */
} run_work;

static void run_execute(napi_env env, void *data)
{
    (void)env;
    run_work *w = data;
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.jobs = w->jobs;
    o.inputs_json = w->inputs;
    o.run_id = w->run_id;
    o.sandbox = w->sandbox;
    o.vault = w->vault ? w->vault->p : NULL;
    o.data_dir = w->data_dir;
    o.llm_servers = w->llm_servers;
    rz_run *run = NULL;
    /* With a run, an error is its record (dataDir) not written. */
    int rc = rz_runner_run(&run, w->flow->p, &o);
    if (run && rc == RZ_OK)
        rc = rz_run_to_json(run, &w->json);
    if (rc != RZ_OK)
        w->err = *rz_error_last();
    w->rc = rc;
    rz_run_free(run);
}

static void run_work_free(napi_env env, run_work *w)
{
    if (w->flow_ref)
        napi_delete_reference(env, w->flow_ref);
    if (w->vault_ref)
        napi_delete_reference(env, w->vault_ref);
    free(w->inputs);
    free(w->run_id);
    free(w->data_dir);
    free(w->llm_servers);
    rz_free(w->json);
    free(w);
}

static void run_complete(napi_env env, napi_status status, void *data)
{
    run_work *w = data;
    w->flow->busy--;
    if (w->vault)
        w->vault->busy--;
    napi_value v = NULL;
    if (status == napi_ok && w->rc == RZ_OK && w->json &&
        napi_create_string_utf8(env, w->json, NAPI_AUTO_LENGTH, &v) == napi_ok) {
        napi_resolve_deferred(env, w->deferred, v);
    } else {
        int rc = w->rc != RZ_OK ? w->rc : RZ_EINTERNAL;
        v = make_error(env, rc, &w->err, NULL, NULL);
        if (!v)
            napi_get_undefined(env, &v);
        napi_reject_deferred(env, w->deferred, v);
    }
    napi_delete_async_work(env, w->work);
    run_work_free(env, w);
}

/* run(flow, inputsJson, runId, dataDir|null, jobs, sandbox, vault|null,
 *     llmServers|null) -> Promise<string> */
static napi_value js_run(napi_env env, napi_callback_info info)
{
    napi_value a[8];
    if (!args(env, info, a, 8))
        return NULL;
    box *fb = get_box(env, a[0], K_FLOW, true);
    if (!fb)
        return NULL;
    box *vb = NULL;
    if (!is_nullish(env, a[6]) && !(vb = get_box(env, a[6], K_VAULT, true)))
        return NULL;
    int32_t jobs = 0, sandbox = 1;
    if (!get_int(env, a[4], &jobs) || !get_int(env, a[5], &sandbox))
        return NULL;
    if (jobs < 0 || jobs > 4096)
        return throw_code(env, "RZ_EINVAL", "jobs must be 0..4096");
    run_work *w = calloc(1, sizeof *w);
    if (!w)
        return throw_code(env, "RZ_ENOMEM", "out of memory");
    bool ok = true;
    w->flow = fb;
    w->vault = vb;
    w->jobs = (unsigned)jobs;
    w->sandbox = sandbox ? 1 : 0;
    if (!(w->inputs = get_str(env, a[1], "inputs")) ||
        !(w->run_id = get_str(env, a[2], "runId")) ||
        (w->data_dir = get_opt_str(env, a[3], "dataDir", &ok), !ok) ||
        (w->llm_servers = get_opt_str(env, a[7], "llmServers", &ok), !ok)) {
        run_work_free(env, w);
        return NULL;
    }
    napi_value promise, name;
    if (napi_create_reference(env, a[0], 1, &w->flow_ref) != napi_ok ||
        (vb && napi_create_reference(env, a[6], 1, &w->vault_ref) != napi_ok) ||
        napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
        napi_create_string_utf8(env, "rhizos.run", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, NULL, name, run_execute, run_complete, w,
                               &w->work) != napi_ok) {
        run_work_free(env, w);
        throw_napi(env);
        return NULL;
    }
    if (napi_queue_async_work(env, w->work) != napi_ok) {
        napi_delete_async_work(env, w->work);
        run_work_free(env, w);
        throw_napi(env);
        return NULL;
    }
    fb->busy++;
    if (vb)
        vb->busy++;
    return promise;
}

/* ---- matcher -------------------------------------------------------------- */

static napi_value js_matcher_new(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    char *name = get_str(env, a[0], "policy");
    if (!name)
        return NULL;
    rz_policy pol;
    rz_matcher *m = NULL;
    int rc = rz_policy_parse(name, &pol);
    if (rc == RZ_OK)
        rc = rz_matcher_new(&m, pol);
    napi_value out = rc == RZ_OK ? wrap(env, K_MATCHER, m) : throw_rz(env, rc, NULL, name);
    free(name);
    return out;
}

/* matcherAdd(m, nodeJson) -> index */
static napi_value js_matcher_add(napi_env env, napi_callback_info info)
{
    napi_value a[2], v;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    char *json = b ? get_str(env, a[1], "node") : NULL;
    if (!json)
        return NULL;
    rz_caps *c = NULL;
    size_t idx = 0;
    int rc = rz_caps_parse(&c, json, strlen(json));
    if (rc == RZ_OK)
        rc = rz_matcher_add(b->p, c, &idx);
    rz_caps_free(c);
    free(json);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "node");
    CALL(env, napi_create_uint32(env, (uint32_t)idx, &v));
    return v;
}

static napi_value js_matcher_remove(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    char *id = b ? get_str(env, a[1], "node id") : NULL;
    if (!id)
        return NULL;
    int rc = rz_matcher_remove(b->p, id);
    napi_value out = rc == RZ_OK ? NULL : throw_rz(env, rc, NULL, id);
    free(id);
    return out;
}

static napi_value js_matcher_nodes(napi_env env, napi_callback_info info)
{
    napi_value a[1], arr;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    if (!b)
        return NULL;
    CALL(env, napi_create_array(env, &arr));
    for (size_t i = 0; i < rz_matcher_count(b->p); i++) {
        napi_value s;
        CALL(env, napi_create_string_utf8(env, rz_matcher_node_id(b->p, i),
                                          NAPI_AUTO_LENGTH, &s));
        napi_set_element(env, arr, (uint32_t)i, s);
    }
    return arr;
}

/* matcherPlace(m, jobJson) -> {node, costMicros, ticket} | null */
static napi_value js_matcher_place(napi_env env, napi_callback_info info)
{
    napi_value a[2], o;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    char *json = b ? get_str(env, a[1], "job") : NULL;
    if (!json)
        return NULL;
    rz_reqs *r = NULL;
    rz_placement pl;
    int rc = rz_reqs_parse(&r, json, strlen(json));
    free(json);
    if (rc == RZ_OK)
        rc = rz_matcher_place(b->p, r, &pl);
    rz_reqs_free(r);
    if (rc == RZ_ENOENT) {
        CALL(env, napi_get_null(env, &o));
        return o;
    }
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "job");
    CALL(env, napi_create_object(env, &o));
    set_str(env, o, "node", pl.node_id);
    set_num(env, o, "costMicros", (double)pl.cost_micros);
    set_big(env, o, "ticket", pl.ticket);
    return o;
}

static napi_value js_matcher_release(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    uint64_t ticket;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    if (!b || !get_u64(env, a[1], "ticket", &ticket))
        return NULL;
    int rc = rz_matcher_release(b->p, ticket);
    return rc == RZ_OK ? NULL : throw_rz(env, rc, NULL, "release");
}

static napi_value js_matcher_explain(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    char *json = b ? get_str(env, a[1], "job") : NULL;
    if (!json)
        return NULL;
    rz_reqs *r = NULL;
    char *out = NULL;
    int rc = rz_reqs_parse(&r, json, strlen(json));
    free(json);
    if (rc == RZ_OK)
        rc = rz_matcher_explain(b->p, r, &out);
    rz_reqs_free(r);
    return rc == RZ_OK ? str_result(env, out, strlen(out)) : throw_rz(env, rc, NULL, "job");
}

/* matcherUsage(m, index) */
static napi_value js_matcher_usage(napi_env env, napi_callback_info info)
{
    napi_value a[2], o;
    int32_t idx;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    if (!b || !get_int(env, a[1], &idx))
        return NULL;
    rz_node_usage u;
    int rc = idx < 0 ? RZ_ENOENT : rz_matcher_usage(b->p, (size_t)idx, &u);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "usage");
    CALL(env, napi_create_object(env, &o));
    set_num(env, o, "coresUsed", u.cores_used);
    set_num(env, o, "coresTotal", u.cores_total);
    set_num(env, o, "memoryUsedMb", (double)u.memory_used_mb);
    set_num(env, o, "memoryTotalMb", (double)u.memory_total_mb);
    set_num(env, o, "storageUsedGb", (double)u.storage_used_gb);
    set_num(env, o, "storageTotalGb", (double)u.storage_total_gb);
    set_num(env, o, "gpusUsed", u.gpus_used);
    set_num(env, o, "gpusTotal", u.gpus_total);
    set_num(env, o, "jobs", u.jobs);
    return o;
}

static napi_value js_matcher_stats(napi_env env, napi_callback_info info)
{
    napi_value a[1], o;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_MATCHER, true);
    if (!b)
        return NULL;
    rz_matcher_stats s;
    rz_matcher_stats_get(b->p, &s);
    CALL(env, napi_create_object(env, &o));
    set_num(env, o, "placements", (double)s.placements);
    set_num(env, o, "failures", (double)s.failures);
    set_num(env, o, "releases", (double)s.releases);
    set_num(env, o, "cacheHits", (double)s.cache_hits);
    set_num(env, o, "cacheBuilds", (double)s.cache_builds);
    set_num(env, o, "groups", (double)s.groups);
    return o;
}

static napi_value js_matcher_close(napi_env env, napi_callback_info info)
{
    return close_kind(env, info, K_MATCHER);
}

static napi_value js_detect_hardware(napi_env env, napi_callback_info info)
{
    (void)info;
    rz_caps *c = NULL;
    char *json = NULL;
    int rc = rz_hw_detect(&c, NULL);
    if (rc == RZ_OK)
        rc = rz_caps_to_json(c, 0, &json);
    rz_caps_free(c);
    return rc == RZ_OK ? str_result(env, json, strlen(json)) : throw_rz(env, rc, NULL, NULL);
}

/* ---- ledger ------------------------------------------------------------- */

/* ledgerOpen(path, feeBps, durable) */
static napi_value js_ledger_open(napi_env env, napi_callback_info info)
{
    napi_value a[3];
    int32_t fee, durable;
    if (!args(env, info, a, 3) || !get_int(env, a[1], &fee) || !get_int(env, a[2], &durable))
        return NULL;
    if (fee < 0 || fee > 10000)
        return throw_code(env, "RZ_EINVAL", "feeBps must be 0..10000");
    char *path = get_str(env, a[0], "path");
    if (!path)
        return NULL;
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.fee_bps = (uint32_t)fee;
    o.durable = durable ? 1 : 0;
    rz_ledger *l = NULL;
    int rc = rz_ledger_open(&l, path, &o);
    napi_value out = rc == RZ_OK ? wrap(env, K_LEDGER, l) : throw_rz(env, rc, NULL, path);
    free(path);
    return out;
}

static bool get_id(napi_env env, napi_value v, const char *what, rz_ledger_id *out)
{
    char *s = get_str(env, v, what);
    if (!s)
        return false;
    int rc = rz_ledger_id_parse(s, out);
    free(s);
    if (rc != RZ_OK) {
        char m[128];
        snprintf(m, sizeof m, "%s is not a 128-bit ledger id", what);
        napi_throw_range_error(env, "RZ_EINVAL", m);
        return false;
    }
    return true;
}

/* ledgerOp(l, op, ids[], amounts[]) -> [a, b] as BigInts. One entry point
 * for the one-op conveniences keeps the surface small. */
static napi_value js_ledger_op(napi_env env, napi_callback_info info)
{
    napi_value a[4];
    if (!args(env, info, a, 4))
        return NULL;
    box *b = get_box(env, a[0], K_LEDGER, true);
    char *op = b ? get_str(env, a[1], "op") : NULL;
    if (!op)
        return NULL;
    rz_ledger_id id[4] = { { 0, 0 } };
    uint64_t amt[2] = { 0, 0 };
    uint32_t nid = 0, namt = 0;
    napi_get_array_length(env, a[2], &nid);
    napi_get_array_length(env, a[3], &namt);
    for (uint32_t i = 0; i < nid && i < 4; i++) {
        napi_value e;
        napi_get_element(env, a[2], i, &e);
        if (!get_id(env, e, "id", &id[i])) {
            free(op);
            return NULL;
        }
    }
    for (uint32_t i = 0; i < namt && i < 2; i++) {
        napi_value e;
        napi_get_element(env, a[3], i, &e);
        if (!get_u64(env, e, "amount", &amt[i])) {
            free(op);
            return NULL;
        }
    }
    rz_ledger *l = b->p;
    rz_ledger_result res = { 0, 0, 0, 0, 0 };
    int rc;
    int tick = !strcmp(op, "tick");
    if (!strcmp(op, "createClient"))
        rc = rz_ledger_create_account(l, id[0], RZ_LEDGER_CLIENT);
    else if (!strcmp(op, "createNode"))
        rc = rz_ledger_create_account(l, id[0], RZ_LEDGER_NODE);
    else if (!strcmp(op, "testCredit"))
        rc = rz_ledger_test_credit(l, id[0], id[1], amt[0]);
    else if (!strcmp(op, "depositRequest"))
        rc = rz_ledger_deposit_request(l, id[0], id[1], amt[0]);
    else if (!strcmp(op, "depositConfirm"))
        rc = rz_ledger_deposit_confirm(l, id[0], id[1]);
    else if (!strcmp(op, "withdrawRequest"))
        rc = rz_ledger_withdraw_request(l, id[0], id[1], amt[0]);
    else if (!strcmp(op, "withdrawComplete"))
        rc = rz_ledger_withdraw_complete(l, id[0], id[1]);
    else if (!strcmp(op, "withdrawCancel"))
        rc = rz_ledger_withdraw_cancel(l, id[0], id[1]);
    else if (!strcmp(op, "hold"))
        rc = rz_ledger_hold(l, id[0], id[1], id[2], amt[0], amt[1]);
    else if (!strcmp(op, "settle"))
        rc = rz_ledger_settle(l, id[0], id[1], id[2], amt[0], &res);
    else if (!strcmp(op, "refund"))
        rc = rz_ledger_refund(l, id[0], id[1], &res);
    else if (tick)
        rc = rz_ledger_tick(l, amt[0], &res.expired);
    else if (!strcmp(op, "verify"))
        rc = rz_ledger_verify(l);
    else if (!strcmp(op, "checkpoint"))
        rc = rz_ledger_checkpoint(l);
    else {
        free(op);
        return throw_code(env, "RZ_EINVAL", "unknown ledger operation");
    }
    napi_value out = NULL;
    if (rc != RZ_OK)
        out = throw_rz(env, rc, NULL, op);
    free(op);
    if (rc != RZ_OK)
        return out;
    napi_value va, vb;
    CALL(env, napi_create_array_with_length(env, 2, &out));
    /* [payout or released amount, fee], or [expired] for a tick. */
    CALL(env, napi_create_bigint_uint64(env, tick ? res.expired : res.amount,
                                        &va));
    CALL(env, napi_create_bigint_uint64(env, res.fee, &vb));
    napi_set_element(env, out, 0, va);
    napi_set_element(env, out, 1, vb);
    return out;
}

static napi_value js_ledger_balance(napi_env env, napi_callback_info info)
{
    napi_value a[2], o;
    rz_ledger_id id;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_LEDGER, true);
    if (!b || !get_id(env, a[1], "account", &id))
        return NULL;
    rz_ledger_account acc;
    int rc = rz_ledger_balance(b->p, id, &acc);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "balance");
    static const char *const kinds[] = { "", "client", "node", "platform", "escrow",
                                         "external" };
    char hex[33];
    rz_ledger_id_format(acc.id, hex);
    CALL(env, napi_create_object(env, &o));
    set_str(env, o, "id", hex);
    set_str(env, o, "kind", acc.kind <= 5 ? kinds[acc.kind] : "");
    set_big(env, o, "debitsPosted", acc.debits_posted);
    set_big(env, o, "debitsPending", acc.debits_pending);
    set_big(env, o, "creditsPosted", acc.credits_posted);
    set_big(env, o, "creditsPending", acc.credits_pending);
    set_big(env, o, "available", rz_ledger_available(&acc));
    return o;
}

static napi_value js_ledger_export(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_LEDGER, true);
    if (!b)
        return NULL;
    char *out = NULL;
    int rc = rz_ledger_export(b->p, 1, &out);
    return rc == RZ_OK ? str_result(env, out, strlen(out)) : throw_rz(env, rc, NULL, "export");
}

static napi_value js_ledger_stats(napi_env env, napi_callback_info info)
{
    napi_value a[1], o;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_LEDGER, true);
    if (!b)
        return NULL;
    rz_ledger_stats s;
    int rc = rz_ledger_stats_get(b->p, &s);
    if (rc != RZ_OK)
        return throw_rz(env, rc, NULL, "stats");
    CALL(env, napi_create_object(env, &o));
    set_big(env, o, "accounts", s.accounts);
    set_big(env, o, "transfers", s.transfers);
    set_big(env, o, "escrowHeldMicros", s.escrow_held_micros);
    set_big(env, o, "escrowMicros", s.escrow_micros);
    set_big(env, o, "feesMicros", s.fees_micros);
    set_big(env, o, "depositedMicros", s.deposited_micros);
    set_big(env, o, "withdrawnMicros", s.withdrawn_micros);
    set_big(env, o, "openPending", s.open_pending);
    return o;
}

static napi_value js_ledger_close(napi_env env, napi_callback_info info)
{
    return close_kind(env, info, K_LEDGER);
}

/* ---- vault ------------------------------------------------------------------ */

/* vaultOpen(path, passwordBuffer, create: bool, opslimit, memlimit)
 * opslimit 0: the default (MODERATE) cost. */
static napi_value js_vault_open(napi_env env, napi_callback_info info)
{
    napi_value a[5];
    bool create = false, is_buf = false;
    uint64_t ops = 0, mem = 0;
    if (!args(env, info, a, 5))
        return NULL;
    napi_is_buffer(env, a[1], &is_buf);
    if (!is_buf)
        return throw_code(env, "RZ_EINVAL", "the password must be a Buffer");
    void *pw = NULL;
    size_t pwlen = 0;
    CALL(env, napi_get_buffer_info(env, a[1], &pw, &pwlen));
    if (napi_get_value_bool(env, a[2], &create) != napi_ok ||
        !get_u64(env, a[3], "opslimit", &ops) || !get_u64(env, a[4], "memlimit", &mem))
        return NULL;
    char *path = get_str(env, a[0], "path");
    if (!path)
        return NULL;
    rz_vault *v = NULL;
    int rc;
    if (create) {
        rz_vault_opts o = RZ_VAULT_OPTS_INIT;
        if (ops) {
            o.kdf = RZ_VAULT_KDF_CUSTOM;
            o.opslimit = ops;
            o.memlimit = mem;
        }
        rc = rz_vault_create(&v, path, pw ? pw : "", pwlen, &o);
    } else {
        rc = rz_vault_open(&v, path, NULL);
        if (rc == RZ_OK)
            rc = rz_vault_unlock(v, pw ? pw : "", pwlen);
    }
    napi_value out = NULL;
    if (rc == RZ_OK)
        out = wrap(env, K_VAULT, v);
    else {
        out = throw_rz(env, rc, NULL, path);
        rz_vault_close(v);
    }
    free(path);
    return out;
}

static napi_value js_vault_list(napi_env env, napi_callback_info info)
{
    napi_value a[1], arr;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_VAULT, true);
    if (!b)
        return NULL;
    CALL(env, napi_create_array(env, &arr));
    for (size_t i = 0; i < rz_vault_count(b->p); i++) {
        rz_vault_entry e;
        napi_value o;
        int rc = rz_vault_get(b->p, i, &e);
        if (rc != RZ_OK)
            return throw_rz(env, rc, NULL, "list");
        CALL(env, napi_create_object(env, &o));
        set_str(env, o, "id", e.id);
        set_str(env, o, "name", e.name);
        set_str(env, o, "type", e.type);
        set_num(env, o, "createdMs", (double)e.created_ms);
        set_num(env, o, "updatedMs", (double)e.updated_ms);
        set_str(env, o, "metadata", e.metadata);
        set_num(env, o, "valueLength", (double)e.value_len);
        napi_set_element(env, arr, (uint32_t)i, o);
    }
    return arr;
}

/* vaultAdd(v, name, type, metadataJson|null, valueBuffer, save) -> id */
static napi_value js_vault_add(napi_env env, napi_callback_info info)
{
    napi_value a[6];
    bool is_buf = false, ok, save = true;
    if (!args(env, info, a, 6))
        return NULL;
    box *b = get_box(env, a[0], K_VAULT, true);
    if (!b)
        return NULL;
    napi_is_buffer(env, a[4], &is_buf);
    if (!is_buf)
        return throw_code(env, "RZ_EINVAL", "the value must be a Buffer");
    void *val = NULL;
    size_t len = 0;
    CALL(env, napi_get_buffer_info(env, a[4], &val, &len));
    napi_get_value_bool(env, a[5], &save);
    char *name = get_str(env, a[1], "name");
    char *type = name ? get_str(env, a[2], "type") : NULL;
    char *meta = type ? get_opt_str(env, a[3], "metadata", &ok) : NULL;
    if (!name || !type || !ok) {
        free(name);
        free(type);
        return NULL;
    }
    char id[RZ_VAULT_ID_LEN + 1] = "";
    int rc = rz_vault_add(b->p, name, type, meta, val ? val : "", len, id);
    if (rc == RZ_OK && save)
        rc = rz_vault_save(b->p);
    napi_value out = NULL;
    if (rc != RZ_OK)
        throw_rz(env, rc, NULL, name);
    else if (napi_create_string_utf8(env, id, NAPI_AUTO_LENGTH, &out) != napi_ok)
        throw_napi(env);
    free(name);
    free(type);
    free(meta);
    return out;
}

/* vaultRemove(v, idOrName, save) */
static napi_value js_vault_remove(napi_env env, napi_callback_info info)
{
    napi_value a[3];
    bool save = true;
    if (!args(env, info, a, 3))
        return NULL;
    box *b = get_box(env, a[0], K_VAULT, true);
    char *key = b ? get_str(env, a[1], "id or name") : NULL;
    if (!key)
        return NULL;
    napi_get_value_bool(env, a[2], &save);
    int rc = rz_vault_remove(b->p, key);
    if (rc == RZ_OK && save)
        rc = rz_vault_save(b->p);
    if (rc != RZ_OK)
        throw_rz(env, rc, NULL, key);
    free(key);
    return NULL;
}

static napi_value js_vault_reveal(napi_env env, napi_callback_info info)
{
    napi_value a[2], out = NULL;
    if (!args(env, info, a, 2))
        return NULL;
    box *b = get_box(env, a[0], K_VAULT, true);
    char *key = b ? get_str(env, a[1], "id or name") : NULL;
    if (!key)
        return NULL;
    size_t i = rz_vault_find(b->p, key);
    rz_secret *s = NULL;
    int rc = i == (size_t)-1 ? RZ_ENOENT : rz_vault_reveal(b->p, i, &s);
    if (rc == RZ_OK) {
        if (napi_create_buffer_copy(env, rz_secret_len(s), rz_secret_data(s), NULL,
                                    &out) != napi_ok)
            throw_napi(env);
    } else if (rc == RZ_ENOENT && i == (size_t)-1) {
        char m[200];
        snprintf(m, sizeof m, "no vault entry '%.128s'", key);
        throw_code(env, "RZ_ENOENT", m);
    } else {
        throw_rz(env, rc, NULL, key);
    }
    rz_secret_free(s);
    free(key);
    return out;
}

static napi_value js_vault_save(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_VAULT, true);
    if (!b)
        return NULL;
    int rc = rz_vault_save(b->p);
    return rc == RZ_OK ? NULL : throw_rz(env, rc, NULL, "save");
}

static napi_value js_vault_close(napi_env env, napi_callback_info info)
{
    return close_kind(env, info, K_VAULT);
}

/* flowReferences(flow) -> how many credential references its steps carry */
static napi_value js_flow_references(napi_env env, napi_callback_info info)
{
    napi_value a[1], out;
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_FLOW, true);
    if (!b)
        return NULL;
    CALL(env, napi_create_double(env, (double)rz_vault_flow_references(b->p), &out));
    return out;
}

/* vaultSealFlow(v, flow, publicKeyBuffer, expiresMs) -> JSON text
 * {credentialId: base64} (rz_vault_seal_flow) */
static napi_value js_vault_seal_flow(napi_env env, napi_callback_info info)
{
    napi_value a[4];
    bool is_buf = false;
    uint64_t expires = 0;
    if (!args(env, info, a, 4))
        return NULL;
    box *v = get_box(env, a[0], K_VAULT, true);
    box *f = v ? get_box(env, a[1], K_FLOW, true) : NULL;
    if (!f || !get_u64(env, a[3], "expiresMs", &expires))
        return NULL;
    napi_is_buffer(env, a[2], &is_buf);
    void *pk = NULL;
    size_t len = 0;
    if (is_buf)
        CALL(env, napi_get_buffer_info(env, a[2], &pk, &len));
    if (len != RZ_VAULT_NODE_PK_BYTES)
        return throw_code(env, "RZ_EINVAL", "the public key must be a 32-byte Buffer");
    char *json = NULL;
    int rc = rz_vault_seal_flow(&json, v->p, f->p, pk, expires);
    return rc == RZ_OK ? str_result(env, json, strlen(json))
                       : throw_rz(env, rc, NULL, "sealing the flow's credentials");
}

/* flowInputsParse(["NAME=VALUE", ...]) -> JSON text (rz_flow_inputs_parse) */
static napi_value js_flow_inputs_parse(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    bool is_array = false;
    uint32_t n = 0;
    if (!args(env, info, a, 1))
        return NULL;
    napi_is_array(env, a[0], &is_array);
    if (!is_array)
        return throw_code(env, "RZ_EINVAL", "pairs must be an array of strings");
    CALL(env, napi_get_array_length(env, a[0], &n));
    char **pairs = calloc(n ? n : 1, sizeof *pairs);
    if (!pairs)
        return throw_code(env, "RZ_ENOMEM", "out of memory");
    bool ok = true;
    for (uint32_t i = 0; ok && i < n; i++) {
        napi_value e;
        ok = napi_get_element(env, a[0], i, &e) == napi_ok &&
             (pairs[i] = get_str(env, e, "each pair")) != NULL;
    }
    char *json = NULL;
    int rc = ok ? rz_flow_inputs_parse(&json, (const char *const *)pairs, n) : RZ_OK;
    for (uint32_t i = 0; i < n; i++)
        free(pairs[i]);
    free(pairs);
    if (!ok)
        return NULL;   /* get_str threw */
    return rc == RZ_OK ? str_result(env, json, strlen(json))
                       : throw_rz(env, rc, NULL, "reading the inputs");
}

/* ---- module ------------------------------------------------------------- */

#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default, NULL }

static napi_value init(napi_env env, napi_value exports)
{
    static const napi_property_descriptor props[] = {
        FN("version", js_version), FN("statusName", js_status_name),
        FN("flowLoad", js_flow_load), FN("flowParse", js_flow_parse),
        FN("flowInfo", js_flow_info), FN("flowValidate", js_flow_validate),
        FN("flowPlan", js_flow_plan), FN("flowExpand", js_flow_expand),
        FN("flowExport", js_flow_export),
        FN("flowClose", js_flow_close), FN("flowEstimate", js_flow_estimate),
        FN("flowInputsParse", js_flow_inputs_parse),
        FN("run", js_run),
        FN("matcherNew", js_matcher_new), FN("matcherAdd", js_matcher_add),
        FN("matcherRemove", js_matcher_remove), FN("matcherNodes", js_matcher_nodes),
        FN("matcherPlace", js_matcher_place), FN("matcherRelease", js_matcher_release),
        FN("matcherExplain", js_matcher_explain), FN("matcherUsage", js_matcher_usage),
        FN("matcherStats", js_matcher_stats), FN("matcherClose", js_matcher_close),
        FN("detectHardware", js_detect_hardware),
        FN("ledgerOpen", js_ledger_open), FN("ledgerOp", js_ledger_op),
        FN("ledgerBalance", js_ledger_balance), FN("ledgerExport", js_ledger_export),
        FN("ledgerStats", js_ledger_stats), FN("ledgerClose", js_ledger_close),
        FN("vaultOpen", js_vault_open), FN("vaultList", js_vault_list),
        FN("vaultAdd", js_vault_add), FN("vaultRemove", js_vault_remove),
        FN("vaultReveal", js_vault_reveal), FN("vaultSave", js_vault_save),
        FN("vaultClose", js_vault_close),
        FN("flowReferences", js_flow_references), FN("vaultSealFlow", js_vault_seal_flow),
        FN("clientNew", js_client_new), FN("clientCall", js_client_call),
        FN("clientWatch", js_client_watch), FN("clientWatchStop", js_client_watch_stop),
        FN("clientClose", js_client_close),
    };
    if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props)
        != napi_ok) {
        throw_napi(env);
        return NULL;
    }
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
