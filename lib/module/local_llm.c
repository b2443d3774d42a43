/* A module's node-served model (docs/modules.md, "A node-served model"):
 * a manifest's "local_llm" says where in a step's config the provider and
 * the model are, and how its one generation is asked for. With the
 * provider "local" the step runs through the llm adapter on a node that
 * serves the model: the step's program never runs, so it reaches no model
 * server (nor anything else on the node), needs no API key, and its tokens
 * are billed to the deployment as an llm step's are. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "module/module_impl.h"

const cJSON *rz__json_at(const cJSON *root, const char *ptr)
{
    if (!ptr)
        return NULL;
    const char *p = ptr;
    char tok[256];
    size_t n;
    const cJSON *x = root;
    while (x && rz__pointer_next(&p, tok, sizeof tok, &n)) {
        if (n >= sizeof tok)
            return NULL;
        if (cJSON_IsObject(x)) {
            x = cJSON_GetObjectItemCaseSensitive(x, tok);
        } else if (cJSON_IsArray(x)) {
            char *end = NULL;
            unsigned long i = strtoul(tok, &end, 10);
            x = *tok && end && !*end && i < 1000000 ? cJSON_GetArrayItem(x, (int)i)
                                                     : NULL;
        } else {
            x = NULL;
        }
    }
    return x;
}

bool rz__local_llm_on(const rz_module *m, const cJSON *config)
{
    if (!m || !m->local_llm.provider)
        return false;
    const char *p = cJSON_GetStringValue(rz__json_at(config, m->local_llm.provider));
    return p && strcmp(p, "local") == 0;
}

const char *rz__local_llm_model(const rz_module *m, const cJSON *config)
{
    return m && m->local_llm.model
        ? cJSON_GetStringValue(rz__json_at(config, m->local_llm.model)) : NULL;
}

/* A value as message text: a string as it is, anything else as JSON. */
static char *as_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return rz__strdup(v->valuestring);
    return v ? cJSON_PrintUnformatted(v) : rz__strdup("null");
}

static bool add_message(cJSON *list, const char *role, const char *text)
{
    cJSON *msg = cJSON_CreateObject();
    if (!msg || !cJSON_AddItemToArray(list, msg))
        return cJSON_Delete(msg), false;
    return cJSON_AddStringToObject(msg, "role", role) &&
           cJSON_AddStringToObject(msg, "content", text);
}

/* The system message: the instructions, then the context's data. */
static char *system_text(const rz_module *m, const cJSON *config)
{
    const char *ins = m->local_llm.instructions ? m->local_llm.instructions : "";
    const cJSON *ctx = m->local_llm.context
        ? rz__json_at(config, m->local_llm.context) : NULL;
    if (!ctx)
        return rz__strdup(ins);
    char *data = as_text(ctx);
    char *s = data ? rz__asprintf("%s%s%s", ins, *ins ? "\n\n" : "", data) : NULL;
    free(data);
    return s;
}

/* Whether the text's output port takes a list (then it gets [text]). */
static bool list_output(const rz_module *m)
{
    const rz__port *p = rz__module_output(m, m->local_llm.output);
    return p && p->type && strcmp(p->type, "array") == 0;
}

static cJSON *build(const rz_module *m, const cJSON *req)
{
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(req, "config");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(req, "inputs");
    const char *model = rz__local_llm_model(m, config);
    if (!model) {
        rz__error(RZ_EINVALID, "config %s must name the model (a string)",
                  m->local_llm.model);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *in = cJSON_AddObjectToObject(o, "inputs");
    cJSON *cf = cJSON_AddObjectToObject(o, "config");
    cJSON *msgs = in ? cJSON_AddArrayToObject(in, "messages") : NULL;
    char *sys = system_text(m, config);
    const cJSON *user = m->local_llm.input
        ? cJSON_GetObjectItemCaseSensitive(inputs, m->local_llm.input) : NULL;
    char *ut = as_text(user);
    bool ok = msgs && cf && sys && ut &&
              (!*sys || add_message(msgs, "system", sys)) &&
              add_message(msgs, "user", ut) &&
              cJSON_AddStringToObject(cf, "model", model) &&
              cJSON_AddNumberToObject(cf, "max_tokens", m->local_llm.max_tokens) &&
              cJSON_AddNumberToObject(cf, "max_prompt_tokens",
                                      m->local_llm.max_prompt_tokens) &&
              (!m->local_llm.output ||
               (cJSON_AddStringToObject(cf, "output", m->local_llm.output) &&
                cJSON_AddBoolToObject(cf, "output_list", list_output(m))));
    free(sys);
    free(ut);
    if (!ok) {
        cJSON_Delete(o);
        rz__error(RZ_ENOMEM, "out of memory");
        return NULL;
    }
    return o;
}

char *rz__local_llm_request(const rz_module *m, const char *request)
{
    cJSON *req = request ? cJSON_Parse(request) : cJSON_CreateObject();
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        rz__error(RZ_EINVALID, "the step's request is not a JSON object");
        return NULL;
    }
    cJSON *o = build(m, req);
    cJSON_Delete(req);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (o && !text)
        rz__error(RZ_ENOMEM, "out of memory");
    /* cJSON's allocator is the library's (malloc): free() releases it. */
    return text;
}

const char *rz_module_step_adapter(const rz_module *m, const char *config_json)
{
    if (!m)
        return NULL;
    if (m->local_llm.provider && config_json) {
        cJSON *c = cJSON_Parse(config_json);
        bool on = rz__local_llm_on(m, c);
        cJSON_Delete(c);
        if (on)
            return "llm";
    }
    return m->adapter && *m->adapter ? m->adapter : "process";
}
