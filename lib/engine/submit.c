/* A standalone job of a registry module: the same checks a deployment step
 * gets (module resolved, config defaulted and checked against the module's
 * schema, requirements and estimate from the manifest, the reference cost
 * when no maximum is given), then rz_engine_submit. A server only translates
 * its request into this. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "module/module_impl.h"
#include "schema/schema_impl.h"

/* Longest module id accepted in a reference. */
#define MODULE_ID_MAX 255

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

char *rz__engine_module_reqs(const rz_module *m, const cJSON *overrides)
{
    cJSON *doc = m && cJSON_IsObject(m->requirements)
                     ? cJSON_Duplicate(m->requirements, true)
                     : cJSON_CreateObject();
    if (!doc)
        return NULL;
    if (m && m->estimate_seconds > 0 &&
        !cJSON_HasObjectItem(doc, "estimate_seconds"))
        cJSON_AddNumberToObject(doc, "estimate_seconds", m->estimate_seconds);
    const cJSON *c;
    cJSON_ArrayForEach(c, overrides) {
        cJSON *copy = cJSON_Duplicate(c, true);
        cJSON_DeleteItemFromObjectCaseSensitive(doc, c->string);
        if (!copy || !cJSON_AddItemToObject(doc, c->string, copy)) {
            cJSON_Delete(copy);
            cJSON_Delete(doc);
            return NULL;
        }
    }
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return s;
}

/* "<id>[@<version>]", the id optionally prefixed "chain://". */
static int resolve(const rz_engine *e, const char *ref, const rz_module **m)
{
    const char *at = strchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    if (!n || n > MODULE_ID_MAX)
        return rz__error(RZ_EINVAL, "\"module\" must be id[@version]");
    char id[MODULE_ID_MAX + 1];
    memcpy(id, ref, n);
    id[n] = '\0';
    if (rz_registry_resolve(e->opts.registry, rz__module_ref_id(id),
                            at ? at + 1 : NULL, m) != RZ_OK)
        return rz__error(RZ_EMODULE, "no module %.200s in the registry", ref);
    return RZ_OK;
}

/* A member of the spec: a JSON object, or a new empty one for NULL. */
static int object_of(const char *json, const char *what, cJSON **out)
{
    *out = json ? cJSON_Parse(json) : cJSON_CreateObject();
    if (cJSON_IsObject(*out))
        return RZ_OK;
    cJSON_Delete(*out);
    *out = NULL;
    return json ? rz__error(RZ_EINVAL, "%s must be a JSON object", what)
                : no_memory();
}

typedef struct first_problem { char text[400]; } first_problem;

static int first_error(void *ud, const rz_schema_error *err)
{
    first_problem *p = ud;
    snprintf(p->text, sizeof p->text, "config%s: %s", err->pointer, err->message);
    return 1;
}

/* As a step's config: the module's defaults filled in first (a defaulted
 * key satisfies `required`), then the schema; the first problem is the
 * error. */
static int check_config(const rz_module *m, cJSON *config)
{
    if (!cJSON_IsObject(m->config) && !cJSON_IsBool(m->config))
        return RZ_OK;
    const rz_schema *sc;
    int rc = rz__schema_cached(&((rz_module *)m)->schema_cache, m->config, &sc);
    if (rc == RZ_OK)
        rc = rz__schema_defaults(sc, config);
    if (rc == RZ_ENOMEM)
        return rc;
    if (rc != RZ_OK)
        return rz__error(RZ_EINVALID, "config cannot be checked: %s",
                         rz_error_last()->message);
    first_problem p = { "" };
    rc = rz__schema_eval(sc, config, NULL, first_error, &p);
    if (rc == RZ_EINVALID)
        return rz__error(RZ_EINVALID, "%s", p.text);
    if (rc != RZ_OK && rc != RZ_ENOMEM)
        return rz__error(RZ_EINVALID, "config cannot be checked: %s",
                         rz_error_last()->message);
    return rc;
}

/* The inputs against the module's declared inputs, as a flow step's are:
 * no unknown name, each of its port's type, every required one given and
 * not null. */
static int check_inputs(const rz_module *m, const cJSON *inputs)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, inputs) {
        const rz__port *p = rz__module_input(m, v->string);
        if (!p) {
            rz__buf names = {0};
            for (size_t k = 0; k < m->n_inputs; k++)
                rz__buf_printf(&names, "%s%s", k ? ", " : "", m->inputs[k].name);
            int rc = rz__error(RZ_EINVALID, "module %s@%s has no input '%.100s' "
                               "(inputs: %s)", m->id, m->version, v->string,
                               names.data ? names.data : "none");
            rz__buf_free(&names);
            return rc;
        }
        if (!cJSON_IsNull(v) && !rz__port_type_ok(p->type, v))
            return rz__error(RZ_ETYPE, "input '%s' of module %s@%s is %s, not %s",
                             p->name, m->id, m->version, p->type,
                             cJSON_IsString(v) ? "a string" : cJSON_IsNumber(v)
                                 ? "a number" : cJSON_IsBool(v) ? "a boolean"
                                 : cJSON_IsArray(v) ? "an array" : "an object");
    }
    for (size_t k = 0; k < m->n_inputs; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(inputs, m->inputs[k].name);
        if (m->inputs[k].required && (!x || cJSON_IsNull(x)))
            return rz__error(RZ_EINVALID, "required input '%s' of module %s@%s is "
                             "missing", m->inputs[k].name, m->id, m->version);
    }
    return RZ_OK;
}

/* {"inputs":...,"config":...}, taking both. */
static char *request_of(cJSON *inputs, cJSON *config)
{
    cJSON *doc = cJSON_CreateObject();
    bool in = doc && cJSON_AddItemToObject(doc, "inputs", inputs);
    bool cf = in && cJSON_AddItemToObject(doc, "config", config);
    if (!in)
        cJSON_Delete(inputs);
    if (!cf)
        cJSON_Delete(config);
    char *s = cf ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    return s;
}

/* Everything but the hold: module, request, requirements and maximum. */
static int prepare(rz_engine *e, const rz_engine_module_job *spec,
                   const rz_module **m, char **request, char **reqs,
                   uint64_t *max_cost)
{
    if (!spec->module)
        return rz__error(RZ_EINVAL, "\"module\" must be id[@version]");
    int rc = resolve(e, spec->module, m);
    cJSON *inputs = NULL, *config = NULL, *given = NULL;
    if (rc == RZ_OK)
        rc = object_of(spec->inputs_json, "inputs", &inputs);
    if (rc == RZ_OK)
        rc = object_of(spec->config_json, "config", &config);
    if (rc == RZ_OK)
        rc = object_of(spec->requirements_json, "requirements", &given);
    if (rc == RZ_OK)
        rc = check_inputs(*m, inputs);
    if (rc == RZ_OK)
        rc = check_config(*m, config);
    /* A generation on a node's model is matched to nodes serving it and
     * paid per token: as an llm job or a flow step, not a module job
     * priced by time (docs/llm.md). */
    if (rc == RZ_OK && (((*m)->adapter && strcmp((*m)->adapter, "llm") == 0) ||
                        rz__local_llm_on(*m, config)))
        rc = rz__error(RZ_EINVALID, "module %s runs on a model a node serves: "
                       "submit an llm job ({\"type\": \"llm\"}) or deploy it as a "
                       "flow step, which are matched to nodes serving the model and "
                       "paid per token", (*m)->id);
    if (rc == RZ_OK && !(*reqs = rz__engine_module_reqs(*m, given)))
        rc = no_memory();
    cJSON_Delete(given);
    if (rc != RZ_OK) {
        cJSON_Delete(inputs);
        cJSON_Delete(config);
        return rc;
    }
    if (!(*request = request_of(inputs, config)))
        return no_memory();
    *max_cost = spec->max_cost_micros;
    return *max_cost ? RZ_OK : rz_engine_reference_cost(e, *reqs, max_cost);
}

int rz_engine_submit_module(rz_engine *e, const rz_engine_module_job *spec,
                            uint64_t now_ms, uint64_t *job_id)
{
    if (job_id)
        *job_id = 0;
    if (!e || !spec || spec->version < 1 ||
        spec->version > RZ_ENGINE_MODULE_JOB_VERSION)
        return rz__error(RZ_EINVAL, "no engine, or no job of a known version");
    if (!e->opts.registry)
        return rz__error(RZ_EINVAL, "the engine was opened without a registry");
    const rz_module *m = NULL;
    char *request = NULL, *reqs = NULL;
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    int rc = prepare(e, spec, &m, &request, &reqs, &s.max_cost_micros);
    if (rc == RZ_OK) {
        s.client = spec->client;
        s.requirements_json = reqs;
        s.module_id = m->id;
        s.module_version = m->version;
        s.request_json = request;
        s.priority = spec->priority;
        s.queue_timeout_ms = spec->queue_timeout_ms;
        s.replicas = spec->version >= 2 ? spec->replicas : 0;
        rc = rz_engine_submit(e, &s, now_ms, job_id);
    }
    free(request);
    free(reqs);
    return rc;
}
