/* Export: the model as one canonical tree (fixed key order, defaults left
 * out, credentials reduced to {credentialId, type}), then written as JSON,
 * YAML or CBOR. Kept values (config, inputs, extra keys) enter the tree as
 * cJSON references, so exporting copies no document content.
 *
 * The tree is a fixed point of parse∘export: loading an export and exporting
 * again gives the same bytes, whichever syntax carried it in between. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/loader.h"

typedef struct ex {
    bool failed;
} ex;

static cJSON *obj(ex *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        x->failed = true;
    return o;
}

/* Add v under k, taking ownership; NULL v marks failure. False when v is
 * not in o (it is then freed). */
static bool put(ex *x, cJSON *o, const char *k, cJSON *v)
{
    if (!v || !o || !cJSON_AddItemToObject(o, k, v)) {
        x->failed = true;
        cJSON_Delete(v);
        return false;
    }
    return true;
}

static void put_str(ex *x, cJSON *o, const char *k, const char *s)
{
    if (s)
        put(x, o, k, cJSON_CreateString(s));
}

static void put_num(ex *x, cJSON *o, const char *k, double d)
{
    put(x, o, k, cJSON_CreateNumber(d));
}

/* A reference to a value the flow owns. Made here, not with
 * cJSON_AddItemReferenceToObject, which leaks the reference when the key's
 * copy cannot be allocated. */
static void put_ref(ex *x, cJSON *o, const char *k, const cJSON *v)
{
    if (!v || !o)
        return;
    cJSON *r = cJSON_CreateNull();
    if (r) {
        *r = *v;
        r->next = r->prev = NULL;
        r->string = NULL;
        r->type |= cJSON_IsReference;   /* cJSON_Delete leaves v's parts alone */
    }
    put(x, o, k, r);
}

/* Unknown keys kept from a builder document: beside the known ones in the
 * builder shape, under `ui:` in FluxGraph (which has no unknown keys). */
/* Kept keys (x-*; a step's own cost ceiling) go first, then the rest (in
 * FluxGraph under `ui:`): the two sets cannot stay interleaved through a
 * FluxGraph document, so every export orders them this one way and a
 * round trip through any format gives the same text. */
static void put_extra(ex *x, cJSON *o, const cJSON *extra, bool builder, bool top)
{
    if (!extra || !extra->child)
        return;
    for (const cJSON *c = extra->child; c; c = c->next)
        if (rz__flux_kept_key(c->string, top))
            put_ref(x, o, c->string, c);
    cJSON *dst = o;
    if (!builder) {
        dst = o ? obj(x) : NULL;
        if (!put(x, o, "ui", dst))
            return;
    }
    for (const cJSON *c = extra->child; dst && c; c = c->next)
        if (!rz__flux_kept_key(c->string, top))
            put_ref(x, dst, c->string, c);
    if (!builder && dst && !dst->child)
        cJSON_Delete(cJSON_DetachItemViaPointer(o, dst));
}

static cJSON *creds_tree(ex *x, const rz__step *s)
{
    cJSON *o = obj(x);
    for (size_t i = 0; o && i < s->n_creds; i++) {
        const rz__cred *c = &s->creds[i];
        if (!c->credential_id || !c->type)
            continue;
        cJSON *r = obj(x);
        put_str(x, r, "credentialId", c->credential_id);
        put_str(x, r, "type", c->type);
        put(x, o, c->field, r);
    }
    return o;
}

static bool retry_is_default(const rz__step *s)
{
    return s->retry.max_attempts == 1 && s->retry.backoff == RZ_BACKOFF_FIXED &&
           s->retry.initial_ms == 1000 && s->retry.max_ms == 60000;
}

static void put_needs(ex *x, cJSON *o, const rz__step *s)
{
    if (!s->n_needs)
        return;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < s->n_needs; i++)
        if (!cJSON_AddItemToArray(arr, cJSON_CreateString(s->needs[i])))
            x->failed = true;
    put(x, o, "needs", arr);
}

static void put_inputs(ex *x, cJSON *o, const rz__step *s)
{
    if (!s->n_inputs)
        return;
    cJSON *in = obj(x);
    for (size_t i = 0; in && i < s->n_inputs; i++)
        put_ref(x, in, s->inputs[i].name, s->inputs[i].value);
    put(x, o, "inputs", in);
}

/* kind: service with its restart policy and readiness. */
static void put_service(ex *x, cJSON *o, const rz__step *s)
{
    static const char *const policies[] = {"on-failure", "always", "never"};
    cJSON *r = obj(x);
    put_str(x, o, "kind", "service");
    put_str(x, r, "policy", policies[s->restart]);
    put_num(x, r, "max_restarts", s->retry.max_attempts - 1);
    put_num(x, r, "backoff_ms", s->retry.initial_ms);
    put(x, o, "restart", r);
    if (s->ready_check) {
        cJSON *rd = obj(x);
        if (strncmp(s->ready_check, "tcp:", 4) == 0)
            put_num(x, rd, "tcp", strtod(s->ready_check + 4, NULL));
        else
            put_str(x, rd, "http", s->ready_check);
        if (s->ready_timeout_s)
            put_num(x, rd, "timeout_s", s->ready_timeout_s);
        put(x, o, "ready", rd);
    } else if (s->ready_line) {
        put_str(x, o, "ready", "line");
    }
}

/* Fields common to both shapes, in canonical order: the builder leads with
 * what a node is (config, credentials, position), FluxGraph with how a step
 * is wired (needs, inputs). */
static void step_body(ex *x, cJSON *o, const rz__step *s, bool builder)
{
    if (!builder) {
        put_needs(x, o, s);
        put_inputs(x, o, s);
    }
    if ((builder && !s->subflow) || cJSON_GetArraySize(s->config) > 0)
        put_ref(x, o, "config", s->config);
    if (s->n_creds)
        put(x, o, "credentials", creds_tree(x, s));
    if (builder) {
        put_ref(x, o, "position", s->position);
        put_needs(x, o, s);
        put_inputs(x, o, s);
    }
    put_str(x, o, "when", s->when);
    if (s->service)
        put_service(x, o, s);
    if (s->on_step) {
        cJSON *on = obj(x);
        char *ev = rz__asprintf("steps.%s.events.%s", s->on_step, s->on_event);
        if (!ev)
            x->failed = true;
        put_str(x, on, "event", ev);
        free(ev);
        put(x, o, "on", on);
    }
    if (!retry_is_default(s) && !s->service) {
        cJSON *r = obj(x);
        put_num(x, r, "max_attempts", s->retry.max_attempts);
        put_str(x, r, "backoff",
                s->retry.backoff == RZ_BACKOFF_EXPONENTIAL ? "exponential" : "fixed");
        put_num(x, r, "initial_ms", s->retry.initial_ms);
        put_num(x, r, "max_ms", s->retry.max_ms);
        put(x, o, "retry", r);
    }
    if (s->timeout_s)
        put_num(x, o, "timeout_s", s->timeout_s);
    if (s->queue_timeout_s)
        put_num(x, o, "queue_timeout_s", s->queue_timeout_s);
    if (s->on_failure == RZ_ON_FAILURE_CONTINUE)
        put_str(x, o, "on_failure", "continue");
    if (s->replicas > 1) {
        cJSON *v = obj(x);
        put_num(x, v, "replicas", s->replicas);
        put(x, o, "verify", v);
    }
    if (s->join != RZ_JOIN_ALL_SUCCEEDED && !s->is_exit)
        put_str(x, o, "join", rz__join_name(s->join));
    if (s->for_each)
        put_ref(x, o, "for_each", s->for_each);
    if (s->max_parallel)
        put_num(x, o, "max_parallel", s->max_parallel);
    if (s->for_each_depth > 1)
        put_num(x, o, "for_each_depth", s->for_each_depth);
    if (!builder)
        put_ref(x, o, "position", s->position);
    put_extra(x, o, s->extra, builder, false);
}

static cJSON *node_tree(ex *x, const rz__step *s)
{
    cJSON *o = obj(x);
    put_str(x, o, "id", s->id ? s->id : "");
    if (s->subflow) {
        put_str(x, o, "flow", s->subflow);
    } else if (s->module_id || !rz__step_approval(s)) {   /* an approval step has none */
        put_str(x, o, "moduleId", s->module_id ? s->module_id : "");
        put_str(x, o, "moduleVersion", s->module_spec);
    }
    step_body(x, o, s, true);
    return o;
}

static cJSON *step_tree(ex *x, const rz__step *s)
{
    cJSON *o = obj(x);
    const char *id = s->module_id ? s->module_id : "";
    if (s->subflow) {
        put_str(x, o, "flow", s->subflow);
    } else if (s->module_spec) {
        char *m = rz__asprintf("%s@%s", id, s->module_spec);
        if (m)
            put_str(x, o, "module", m);
        else
            x->failed = true;
        free(m);
    } else if (s->module_id || !rz__step_approval(s)) {   /* an approval step has none */
        put_str(x, o, "module", id);
    }
    step_body(x, o, s, false);
    return o;
}

static cJSON *conn_tree(ex *x, const rz__conn *c)
{
    cJSON *o = obj(x), *src = obj(x), *dst = obj(x);
    put_str(x, o, "id", c->id);
    put_str(x, src, "nodeId", c->src_node ? c->src_node : "");
    put_str(x, src, "port", c->src_port ? c->src_port : "");
    put_str(x, dst, "nodeId", c->dst_node ? c->dst_node : "");
    put_str(x, dst, "port", c->dst_port ? c->dst_port : "");
    put(x, o, "source", src);
    put(x, o, "target", dst);
    return o;
}

static cJSON *inputs_tree(ex *x, const rz_flow *f)
{
    cJSON *o = obj(x);
    for (size_t i = 0; o && i < f->n_inputs; i++) {
        const rz__flow_input *in = &f->inputs[i];
        cJSON *d = obj(x);
        put_str(x, d, "type", in->type);
        /* Left out, an input is required exactly when it has no default. */
        if (in->required)
            put(x, d, "required", cJSON_CreateTrue());
        else if (!in->def)
            put(x, d, "required", cJSON_CreateFalse());
        put_ref(x, d, "default", in->def);
        put(x, o, in->name, d);
    }
    return o;
}

static cJSON *list(ex *x, size_t n, const void *items, size_t size,
                   cJSON *(*one)(ex *, const void *))
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        x->failed = true;
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *v = one(x, (const char *)items + i * size);
        if (!v || !cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            x->failed = true;
        }
    }
    return arr;
}

static cJSON *one_node(ex *x, const void *s) { return node_tree(x, s); }
static cJSON *one_conn(ex *x, const void *c) { return conn_tree(x, c); }

static cJSON *flow_tree(const rz_flow *f, bool builder)
{
    ex x = {0};
    cJSON *o = obj(&x);
    if (!builder)
        put_num(&x, o, "flux", 1);
    put_str(&x, o, "id", f->id);
    put_str(&x, o, "name", f->name);
    put_str(&x, o, "version", f->version);
    put_str(&x, o, "description", f->description);
    put_str(&x, o, "createdAt", f->created_at);
    put_str(&x, o, "updatedAt", f->updated_at);
    put_ref(&x, o, "triggers", f->triggers);
    if (f->n_inputs)
        put(&x, o, "inputs", inputs_tree(&x, f));
    /* The on_exit step is lowered last: it leaves the steps list. */
    const rz__step *exit_step = f->n_steps && f->steps[f->n_steps - 1].is_exit
                                    ? &f->steps[f->n_steps - 1] : NULL;
    size_t n_steps = f->n_steps - (exit_step != NULL);
    if (builder) {
        put(&x, o, "nodes", list(&x, n_steps, f->steps, sizeof *f->steps, one_node));
    } else {
        cJSON *steps = obj(&x);
        for (size_t i = 0; steps && i < n_steps; i++)
            put(&x, steps, f->steps[i].id ? f->steps[i].id : "", step_tree(&x, &f->steps[i]));
        put(&x, o, "steps", steps);
    }
    if (builder || f->n_conns)
        put(&x, o, "connections", list(&x, f->n_conns, f->conns, sizeof *f->conns, one_conn));
    if (exit_step)
        put(&x, o, "on_exit", builder ? node_tree(&x, exit_step) : step_tree(&x, exit_step));
    if (f->n_outputs) {
        cJSON *outs = obj(&x);
        for (size_t i = 0; outs && i < f->n_outputs; i++)
            put_ref(&x, outs, f->outputs[i].name, f->outputs[i].value);
        put(&x, o, "outputs", outs);
    }
    put_extra(&x, o, f->extra, builder, true);
    if (x.failed) {
        cJSON_Delete(o);
        rz__error(RZ_ENOMEM, "out of memory");
        return NULL;
    }
    return o;
}

/* The tree holds references to the flow's values, so it is copied before
 * its numbers become exact raw text. */
static bool exact_numbers(cJSON **t)
{
    cJSON *copy = cJSON_Duplicate(*t, true);
    cJSON_Delete(*t);
    *t = copy;
    if (copy && rz__json_raw_numbers(copy))
        return true;
    cJSON_Delete(copy);
    *t = NULL;
    return false;
}

cJSON *rz__flow_flux_tree(const rz_flow *f)
{
    cJSON *t = flow_tree(f, false);
    cJSON *copy = t ? cJSON_Duplicate(t, true) : NULL;
    cJSON_Delete(t);
    return copy;
}

int rz_flow_to_json(const rz_flow *f, unsigned flags, char **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (!f || !out)
        return rz__error(RZ_EINVAL, "rz_flow_to_json: NULL argument");
    cJSON *t = flow_tree(f, f->builder || (flags & RZ_EXPORT_BUILDER));
    if (!t)
        return RZ_ENOMEM;
    if (!exact_numbers(&t))
        return rz__error(RZ_ENOMEM, "out of memory");
    char *s = flags & RZ_EXPORT_PRETTY ? cJSON_Print(t) : cJSON_PrintUnformatted(t);
    cJSON_Delete(t);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = s;
    if (len)
        *len = strlen(s);
    return RZ_OK;
}

int rz_flow_to_yaml(const rz_flow *f, char **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (!f || !out)
        return rz__error(RZ_EINVAL, "rz_flow_to_yaml: NULL argument");
    /* FluxGraph keys steps by id: a builder flow whose ids are missing or
     * repeated (which validation reports) has no faithful YAML form. */
    for (size_t i = 0; i < f->n_steps; i++) {
        const char *id = f->steps[i].id;
        if (!id || !*id)
            return rz__error(RZ_EINVAL, "step %zu has no id; FluxGraph YAML "
                             "needs one (validate the flow first)", i + 1);
        if (rz__map_get(&f->index, id) != i)
            return rz__error(RZ_EINVAL, "step id '%s' appears twice; FluxGraph "
                             "YAML cannot hold both (validate the flow first)", id);
    }
    cJSON *t = flow_tree(f, false);
    if (!t)
        return RZ_ENOMEM;
    size_t n = 0;
    int rc = rz__yaml_emit(t, out, &n);
    cJSON_Delete(t);
    if (rc == RZ_OK && len)
        *len = n;
    return rc;
}

int rz_flow_to_cbor(const rz_flow *f, unsigned char **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (!f || !out)
        return rz__error(RZ_EINVAL, "rz_flow_to_cbor: NULL argument");
    cJSON *t = flow_tree(f, f->builder);
    if (!t)
        return RZ_ENOMEM;
    size_t n = 0;
    int rc = rz__cbor_emit(t, out, &n);
    cJSON_Delete(t);
    if (rc == RZ_OK && len)
        *len = n;
    return rc;
}
