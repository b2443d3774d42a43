/* What rhizos-node advertises of its [[llm]] servers (llm.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "llm.h"
#include "rhizos/rhizos.h"

static const char *kind_name(node_llm_kind k)
{
    return k == NODE_LLM_OPENAI ? "openai" : "ollama";
}

void llm_server_spec(const node_llm *srv, char *out, size_t len)
{
    snprintf(out, len, "%s=%s", kind_name(srv->kind), srv->url);
}

/* The server's models as cJSON, or NULL with why. */
static cJSON *list(const node_llm *srv, int details, char *err, size_t errlen)
{
    char *text = NULL;
    cJSON *models = NULL;
    if (rz_llm_models(&text, kind_name(srv->kind), srv->url, details) != RZ_OK)
        snprintf(err, errlen, "%s", rz_error_last()->message);
    else if (!(models = cJSON_Parse(text)))
        snprintf(err, errlen, "out of memory");
    rz_free(text);
    return models;
}

cJSON *llm_caps(const node_config *cfg, char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    if (!cfg->n_llm)
        return NULL;
    cJSON *llm = cJSON_CreateObject();
    cJSON *all = cJSON_AddArrayToObject(llm, "models");
    /* The node's price in its one unit (docs/llm.md). */
    cJSON_AddNumberToObject(llm, cfg->llm_per_second ? "price_second_micros"
                                                     : "price_1k_tokens_micros",
                            (double)(cfg->llm_per_second ? cfg->llm_second_micros
                                                         : cfg->llm_1k_tokens_micros));
    cJSON *servers = cJSON_AddArrayToObject(llm, "servers");
    for (size_t i = 0; i < cfg->n_llm; i++) {
        const node_llm *srv = &cfg->llm[i];
        char err[1024];
        cJSON *models = list(srv, 1, err, sizeof err), *m, *next;
        int ok = models != NULL;
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "kind", kind_name(srv->kind));
        cJSON_AddBoolToObject(s, "up", ok);
        cJSON_AddNumberToObject(s, "models", ok ? cJSON_GetArraySize(models) : 0);
        cJSON_AddItemToArray(servers, s);
        if (!ok) {
            size_t used = strlen(why);
            if (used + 1 < whylen)
                snprintf(why + used, whylen - used, "%s%s server %s: %s",
                         used ? "\n" : "", kind_name(srv->kind), srv->url, err);
            continue;
        }
        /* A model two servers serve is the first one's. */
        for (m = models->child; m; m = next) {
            next = m->next;
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
            int dup = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, all)
                dup |= strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(x, "name")),
                              name) == 0;
            if (dup || cJSON_GetArraySize(all) >= (int)LLM_MODELS_MAX)
                continue;
            cJSON_AddStringToObject(m, "kind", kind_name(srv->kind));
            int own = 0, per_s = 0;
            uint64_t price = node_llm_price(cfg, name, &own, &per_s);
            if (own)   /* its own price in [pricing] llm_model_(second_)prices */
                cJSON_AddNumberToObject(m, per_s ? "price_second_micros"
                                                 : "price_1k_tokens_micros",
                                        (double)price);
            cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(models, m));
        }
        cJSON_Delete(models);
    }
    return llm;
}

int llm_find(const node_config *cfg, const char *model)
{
    char servers[NODE_CONFIG_MAX_LLM * (NODE_LLM_URL_MAX + 16)] = "";
    for (size_t i = 0; i < cfg->n_llm; i++) {
        size_t used = strlen(servers);
        if (used)
            servers[used++] = ' ';
        llm_server_spec(&cfg->llm[i], servers + used, sizeof servers - used);
    }
    int index = -1;
    return cfg->n_llm && rz_llm_find(&index, servers, model) == RZ_OK ? index : -1;
}
