/* Flow cost estimates: node rental (through lib/match's cost formula and
 * fit test, so the estimate and the placement agree) versus API providers.
 * Integer micros only; every product and sum is overflow-checked and
 * saturates. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/array.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "rhizos/estimate.h"
#include "rhizos/hw.h"
#include "rhizos/match.h"

#define UNITS_MAX 64

typedef struct unit_price {
    char *unit;
    uint64_t micros_per_million;
} unit_price;

typedef struct provider {
    char *provider, *model;
    unit_price *units;
    size_t n_units;
} provider;

struct rz_prices {
    rz_caps **nodes;
    size_t n_nodes;
    provider *provs;
    size_t n_provs;
    char *nodes_date, *providers_date;
};

struct rz_estimate {
    rz_step_estimate *steps;
    size_t n;
    char **strings;         /* everything the step views borrow */
    size_t n_strings, cap_strings;
    uint64_t total;
    bool complete;
    char *nodes_date, *providers_date;
};

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* ---- Price tables ---- */

int rz_prices_new(rz_prices **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = rz__calloc(1, sizeof **out);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

static void provider_free(provider *p)
{
    free(p->provider);
    free(p->model);
    for (size_t i = 0; i < p->n_units; i++)
        free(p->units[i].unit);
    free(p->units);
}

void rz_prices_free(rz_prices *p)
{
    if (!p)
        return;
    rz_caps_free_list(p->nodes, p->n_nodes);
    for (size_t i = 0; i < p->n_provs; i++)
        provider_free(&p->provs[i]);
    free(p->provs);
    free(p->nodes_date);
    free(p->providers_date);
    free(p);
}

size_t rz_prices_node_count(const rz_prices *p) { return p ? p->n_nodes : 0; }
size_t rz_prices_provider_count(const rz_prices *p) { return p ? p->n_provs : 0; }
const char *rz_prices_nodes_date(const rz_prices *p)
{
    return p && p->nodes_date ? p->nodes_date : "";
}
const char *rz_prices_providers_date(const rz_prices *p)
{
    return p && p->providers_date ? p->providers_date : "";
}

static int bad_entry(const char *source, const char *ptr, const char *what)
{
    return rz__error_at(RZ_EINVALID, source, 0, 0, ptr, "%s: %s: %s", source,
                        ptr, what);
}

/* A whole number of micros in [0, 2^53] (exact in a double). */
static bool whole_micros(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

/* scale: 1, or 10000 for the cents spelling (cents_per_million). */
static int parse_units(const cJSON *cpm, uint64_t scale, provider *p,
                       const char *source, const char *ptr)
{
    int n = cJSON_IsObject(cpm) ? cJSON_GetArraySize(cpm) : 0;
    if (n == 0 || n > UNITS_MAX)
        return bad_entry(source, ptr, "'micros_per_million' must be an object "
                         "of 1-64 {\"<unit>\": <whole micro-dollars>}");
    p->units = rz__calloc((size_t)n, sizeof *p->units);
    if (!p->units)
        return rz__error(RZ_ENOMEM, "out of memory");
    const cJSON *u;
    cJSON_ArrayForEach(u, cpm) {
        unit_price *up = &p->units[p->n_units];
        if (!whole_micros(u, &up->micros_per_million) ||
            up->micros_per_million > (UINT64_C(1) << 53) / scale)
            return bad_entry(source, ptr, "each price must be a whole, "
                             "non-negative number of micro-dollars up to 2^53");
        up->micros_per_million *= scale;
        if (!(up->unit = rz__strdup(u->string)))
            return rz__error(RZ_ENOMEM, "out of memory");
        p->n_units++;
    }
    return RZ_OK;
}

static int parse_provider(const cJSON *e, provider *p, const char *source,
                          size_t i)
{
    char ptr[48];
    snprintf(ptr, sizeof ptr, "/providers/%zu", i);
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(e, "provider");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(e, "model");
    if (!cJSON_IsString(pv) || !cJSON_IsString(md) || !pv->valuestring[0] ||
        !md->valuestring[0])
        return bad_entry(source, ptr, "needs non-empty strings 'provider' "
                         "and 'model'");
    if (!(p->provider = rz__strdup(pv->valuestring)) ||
        !(p->model = rz__strdup(md->valuestring)))
        return rz__error(RZ_ENOMEM, "out of memory");
    const cJSON *mpm = cJSON_GetObjectItemCaseSensitive(e, "micros_per_million");
    const cJSON *cpm = cJSON_GetObjectItemCaseSensitive(e, "cents_per_million");
    if (mpm && cpm)
        return bad_entry(source, ptr, "give 'micros_per_million' or the older "
                         "'cents_per_million', not both");
    return mpm || !cpm ? parse_units(mpm, 1, p, source, ptr)
                       : parse_units(cpm, 10000, p, source, ptr);
}

static int add_providers(rz_prices *p, const cJSON *arr, const char *source)
{
    if (!cJSON_IsArray(arr))
        return bad_entry(source, "/providers", "must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    provider *tmp = rz__calloc(n ? n : 1, sizeof *tmp);
    if (!tmp)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t k = 0;
    int rc = RZ_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if ((rc = parse_provider(e, &tmp[k], source, k)) != RZ_OK)
            break;
        k++;
    }
    provider *grown = rc == RZ_OK
        ? rz__realloc(p->provs, (p->n_provs + k + 1) * sizeof *grown) : NULL;
    if (rc == RZ_OK && !grown)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        for (size_t i = 0; i <= k && i < n; i++)
            provider_free(&tmp[i]);
        free(tmp);
        return rc;
    }
    memcpy(grown + p->n_provs, tmp, k * sizeof *tmp);
    p->provs = grown;
    p->n_provs += k;
    free(tmp);
    return RZ_OK;
}

static int parse_nodes(const cJSON *doc, const char *source, rz_caps ***list,
                       size_t *n)
{
    char *text = cJSON_PrintUnformatted(doc);
    if (!text)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = rz_caps_parse_list(list, n, text, strlen(text));
    free(text);
    if (rc != RZ_OK) {
        rz_error why = *rz_error_last();    /* formatted over below */
        return rz__error_at(rc, source, 0, 0, why.pointer,
                            "%s: node table: %s", source, why.message);
    }
    return RZ_OK;
}

static int commit_nodes(rz_prices *p, rz_caps **list, size_t n)
{
    rz_caps **grown = rz__realloc(p->nodes, (p->n_nodes + n + 1) * sizeof *grown);
    if (!grown) {
        rz_caps_free_list(list, n);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    memcpy(grown + p->n_nodes, list, n * sizeof *list);
    p->nodes = grown;
    p->n_nodes += n;
    free(list);     /* the array only: its nodes moved into p->nodes */
    return RZ_OK;
}

static int keep_date(char **slot, const cJSON *root)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "date");
    if (*slot || !cJSON_IsString(d))
        return RZ_OK;
    *slot = rz__strdup(d->valuestring);
    return *slot ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_prices_add_json(rz_prices *p, const char *json, size_t len,
                       const char *source)
{
    if (!p || !json)
        return rz__error(RZ_EINVAL, "prices or text is NULL");
    if (!source)
        source = "prices";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rz__error_at(RZ_ESYNTAX, source, 0, 0, "", "%s: not a JSON "
                            "object", source);
    }
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    const cJSON *provs = cJSON_GetObjectItemCaseSensitive(root, "providers");
    int rc = RZ_OK;
    if (!nodes && !provs)
        rc = bad_entry(source, "", "a price table needs \"nodes\" or "
                       "\"providers\"");
    /* Parse the nodes, add the providers (all or nothing), then commit the
     * nodes, so a malformed document adds nothing. */
    rz_caps **list = NULL;
    size_t n = 0;
    if (rc == RZ_OK && nodes)
        rc = parse_nodes(root, source, &list, &n);
    if (rc == RZ_OK && provs && (rc = add_providers(p, provs, source)) == RZ_OK)
        rc = keep_date(&p->providers_date, root);
    if (rc == RZ_OK && nodes && (rc = commit_nodes(p, list, n)) == RZ_OK)
        rc = keep_date(&p->nodes_date, root);
    else if (rc != RZ_OK)
        rz_caps_free_list(list, n);
    cJSON_Delete(root);
    return rc;
}

int rz_prices_add_file(rz_prices *p, const char *path)
{
    if (!p || !path)
        return rz__error(RZ_EINVAL, "prices or path is NULL");
    char *text;
    size_t len;
    int rc = rz__read_file(path, RZ_PRICES_FILE_MAX, &text, &len);
    if (rc != RZ_OK) {
        rz_error why = *rz_error_last();    /* formatted over below */
        return rz__error_at(rc, path, 0, 0, "", "%s: %s", path, why.message);
    }
    rc = rz_prices_add_json(p, text, len, path);
    free(text);
    return rc;
}

/* ---- Estimates ---- */

const char *rz_choice_name(rz_choice c)
{
    return c == RZ_CHOICE_RENT ? "rent" : c == RZ_CHOICE_API ? "api" : "none";
}

/* Keep a copy of `s` for the lifetime of the estimate. */
static const char *keep(rz_estimate *e, const char *s, int *rc)
{
    if (*rc != RZ_OK)
        return "";
    char **g = rz__grow(e->strings, &e->cap_strings, e->n_strings + 1, sizeof *g, 32);
    if (!g) {
        *rc = rz__error(RZ_ENOMEM, "out of memory");
        return "";
    }
    e->strings = g;
    char *c = rz__strdup(s ? s : "");
    if (!c) {
        *rc = rz__error(RZ_ENOMEM, "out of memory");
        return "";
    }
    e->strings[e->n_strings++] = c;
    return c;
}

/* The module's requirements as a job: its "requirements", the exec adapter
 * when the requirements name none, and `seconds` (its estimate_seconds). */
static int module_reqs_for(const rz_module *m, double seconds, rz_reqs **out)
{
    *out = NULL;
    cJSON *r = m->requirements ? cJSON_Duplicate(m->requirements, true)
                               : cJSON_CreateObject();
    if (r && !cJSON_GetObjectItemCaseSensitive(r, "adapter") && m->adapter)
        cJSON_AddStringToObject(r, "adapter", m->adapter);
    if (r) {
        cJSON_DeleteItemFromObjectCaseSensitive(r, "estimate_seconds");
        cJSON_AddNumberToObject(r, "estimate_seconds", seconds);
    }
    char *text = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    if (!text)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = rz_reqs_parse(out, text, strlen(text));
    free(text);
    return rc;
}

static int module_reqs(const rz_module *m, rz_reqs **out)
{
    return module_reqs_for(m, m->estimate_seconds, out);
}

/* The cheapest class of `p` that fits `q`, and its cost; RZ_NPOS if none. */
static size_t cheapest_fit(const rz_prices *p, const rz_reqs *q, uint64_t *cost)
{
    size_t best = RZ_NPOS;
    *cost = UINT64_MAX;
    for (size_t i = 0; i < p->n_nodes; i++) {
        if (!rz_match_fits(p->nodes[i], q))
            continue;
        uint64_t c = rz_match_cost(p->nodes[i], q);
        if (best == RZ_NPOS || c < *cost) {
            best = i;
            *cost = c;
        }
    }
    return best;
}

int rz_prices_rent_step(const rz_prices *p, const rz_flow *flow, size_t step,
                        uint64_t run_ms, uint64_t *micros)
{
    if (micros)
        *micros = 0;
    if (!p || !flow || !micros || step >= flow->n_steps)
        return rz__error(RZ_EINVAL, "rz_prices_rent_step: invalid arguments");
    const rz_module *m = flow->steps[step].module;
    if (!m)
        return rz__error(RZ_ESTATE, "step '%s' has no resolved module",
                         flow->steps[step].id);
    rz_reqs *q;
    int rc = module_reqs_for(m, (double)run_ms / 1000.0, &q);
    if (rc != RZ_OK)
        return rc;
    uint64_t cost;
    if (cheapest_fit(p, q, &cost) == RZ_NPOS)
        rc = rz__error(RZ_ENOENT, "no node class of the price table fits step '%s'",
                       flow->steps[step].id);
    else
        *micros = cost;
    rz_reqs_free(q);
    return rc;
}

/* Why no node class fits, from the matcher's per-constraint explanation. */
static int no_fit_reason(rz_estimate *e, const rz_prices *p, const rz_reqs *q,
                         rz_step_estimate *s)
{
    int rc = RZ_OK;
    if (!p->n_nodes) {
        s->rent_reason = keep(e, "no node price table", &rc);
        return rc;
    }
    rz_matcher *mt = NULL;
    char *why = NULL;
    rc = rz_matcher_new(&mt, RZ_POLICY_CHEAPEST);
    for (size_t i = 0; rc == RZ_OK && i < p->n_nodes; i++)
        rc = rz_matcher_add(mt, p->nodes[i], NULL);
    if (rc == RZ_OK)
        rc = rz_matcher_explain(mt, q, &why);
    rz_matcher_free(mt);
    if (rc != RZ_OK && rc != RZ_ENOMEM)
        rc = RZ_OK;     /* no explanation: the plain reason will do */
    s->rent_reason = keep(e, why && *why ? why : "no node class fits", &rc);
    rz_free(why);
    return rc;
}

static int estimate_rent(rz_estimate *e, const rz_prices *p,
                         const rz_module *m, rz_step_estimate *s)
{
    rz_reqs *q;
    int rc = module_reqs(m, &q);
    if (rc == RZ_ENOMEM)
        return rc;
    if (rc != RZ_OK) {
        rc = RZ_OK;
        s->rent_reason = keep(e, rz_error_last()->message, &rc);
        return rc;
    }
    s->estimate_ms = rz_reqs_get(q)->estimate_ms;
    uint64_t best_cost;
    size_t best = cheapest_fit(p, q, &best_cost);
    if (best != RZ_NPOS) {
        s->rent_ok = 1;
        s->rent_micros = best_cost;
        s->node_class = keep(e, rz_caps_get(p->nodes[best])->id, &rc);
    } else {
        rc = no_fit_reason(e, p, q, s);
    }
    rz_reqs_free(q);
    return rc;
}

/* A number of an llm step's config, else its schema's default, else def. */
static double llm_setting(const rz_module *m, const cJSON *config,
                          const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    if (!cJSON_IsNumber(v))
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(m->config, "properties"), key),
            "default");
    return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 1e9
        ? v->valuedouble : def;
}

/* A node class's llm price (0: none): llm.price_1k_tokens_micros, or
 * llm.price_second_micros with *per_second set. */
static uint64_t class_llm_price(const rz_caps *c, bool *per_second)
{
    char *text = NULL;
    uint64_t price = 0;
    *per_second = false;
    if (rz_caps_to_json(c, 0, &text) != RZ_OK)
        return 0;
    cJSON *doc = cJSON_Parse(text);
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(doc, "llm");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(llm, "price_second_micros");
    *per_second = ps != NULL;
    (void)whole_micros(ps ? ps : cJSON_GetObjectItemCaseSensitive(llm, "price_1k_tokens_micros"),
                       &price);
    cJSON_Delete(doc);
    rz_free(text);
    return price;
}

/* An llm step (exec.adapter "llm") is paid per 1,000 tokens or per second:
 * its most at the cheapest node class that serves llm steps (adapters
 * ["llm"] and a price), whatever its model (a table cannot know which
 * models a network serves): max_tokens + max_prompt_tokens at a price per
 * 1,000 tokens, the module's timeout_s (else RZ_LLM_DEFAULT_SECONDS: the
 * seconds the engine prices the step's job on) at a price per second. */
static int estimate_llm(rz_estimate *e, const rz_prices *p, const rz_module *m,
                        const cJSON *config, rz_step_estimate *s)
{
    /* On its node's model (a manifest's local_llm): the manifest's bounds. */
    uint64_t tokens = rz__local_llm_on(m, config)
        ? (uint64_t)m->local_llm.max_tokens + m->local_llm.max_prompt_tokens
        : (uint64_t)llm_setting(m, config, "max_tokens", RZ_LLM_DEFAULT_MAX_TOKENS) +
          (uint64_t)llm_setting(m, config, "max_prompt_tokens",
                                RZ_LLM_DEFAULT_MAX_PROMPT_TOKENS);
    uint64_t secs = m->timeout_s >= 1 && m->timeout_s <= RZ_LLM_MAX_SECONDS
        ? m->timeout_s : RZ_LLM_DEFAULT_SECONDS;   /* as the engine's */
    size_t best = RZ_NPOS;
    uint64_t best_cost = UINT64_MAX;
    for (size_t i = 0; i < p->n_nodes; i++) {
        const rz_caps_info *ci = rz_caps_get(p->nodes[i]);
        bool llm = false, per_s = false;
        for (size_t a = 0; a < ci->n_adapters; a++)
            llm |= strcmp(ci->adapters[a], "llm") == 0;
        uint64_t price = llm ? class_llm_price(p->nodes[i], &per_s) : 0;
        if (!price)
            continue;
        uint64_t c = sat_mul(per_s ? secs : tokens, price);
        c = c == UINT64_MAX || per_s ? c : c / 1000 + (c % 1000 != 0);
        if (c < best_cost) {
            best = i;
            best_cost = c;
        }
    }
    int rc = RZ_OK;
    if (best == RZ_NPOS) {
        s->rent_reason = keep(e, "no node class serves llm steps (adapters "
                              "[\"llm\"] and llm.price_1k_tokens_micros or "
                              "price_second_micros)", &rc);
        return rc;
    }
    s->rent_ok = 1;
    s->rent_micros = best_cost;
    s->node_class = keep(e, rz_caps_get(p->nodes[best])->id, &rc);
    return rc;
}

static const provider *find_provider(const rz_prices *p, const char *prov,
                                     const char *model)
{
    for (size_t i = 0; i < p->n_provs; i++)
        if (strcmp(p->provs[i].provider, prov) == 0 &&
            strcmp(p->provs[i].model, model) == 0)
            return &p->provs[i];
    return NULL;
}

static const unit_price *find_unit(const provider *pv, const char *unit)
{
    for (size_t i = 0; i < pv->n_units; i++)
        if (strcmp(pv->units[i].unit, unit) == 0)
            return &pv->units[i];
    return NULL;
}

/* Units per run: a whole number, or {"config": KEY, "default": N} taking the
 * step's config value of KEY when it is a non-negative whole number. */
static bool unit_count(const cJSON *v, const cJSON *config, uint64_t *out)
{
    if (cJSON_IsObject(v)) {
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(v, "config");
        const cJSON *cv = cJSON_IsString(key) && cJSON_IsObject(config)
            ? cJSON_GetObjectItemCaseSensitive(config, key->valuestring) : NULL;
        if (cv && whole_micros(cv, out))
            return true;
        v = cJSON_GetObjectItemCaseSensitive(v, "default");
    }
    return whole_micros(v, out);
}

/* Sets *why (static text or kept) when the API side cannot be priced. */
static int api_price(const provider *pv, const cJSON *units,
                     const cJSON *config, uint64_t *micros, const char **why)
{
    uint64_t micro = 0;     /* micros x 1e6 */
    const cJSON *u;
    if (!cJSON_IsObject(units) || !units->child) {
        *why = "api_alternative needs 'units' {\"<unit>\": <count>}";
        return RZ_EINVAL;
    }
    cJSON_ArrayForEach(u, units) {
        const unit_price *up = find_unit(pv, u->string);
        uint64_t n;
        if (!up) {
            *why = "the provider table has no price for a unit of this module";
            return RZ_ENOENT;
        }
        if (!unit_count(u, config, &n)) {
            *why = "api_alternative units must be whole numbers";
            return RZ_EINVAL;
        }
        micro = sat_add(micro, sat_mul(n, up->micros_per_million));
    }
    *micros = micro == UINT64_MAX ? UINT64_MAX
           : micro / 1000000u + (micro % 1000000u != 0);
    return RZ_OK;
}

static int estimate_api(rz_estimate *e, const rz_prices *p, const rz_module *m,
                        const cJSON *config, rz_step_estimate *s)
{
    const cJSON *alt = cJSON_GetObjectItemCaseSensitive(m->manifest,
                                                        "api_alternative");
    int rc = RZ_OK;
    if (!alt)
        return RZ_OK;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(alt, "provider");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(alt, "model");
    if (!cJSON_IsString(pv) || !cJSON_IsString(md)) {
        s->api_reason = keep(e, "api_alternative needs string 'provider' and "
                             "'model'", &rc);
        return rc;
    }
    s->provider = keep(e, pv->valuestring, &rc);
    s->api_model = keep(e, md->valuestring, &rc);
    const provider *prov = find_provider(p, pv->valuestring, md->valuestring);
    if (rc != RZ_OK)
        return rc;
    if (!prov) {
        char *why = rz__asprintf("no price for %s/%s in the provider table",
                                 pv->valuestring, md->valuestring);
        s->api_reason = keep(e, why ? why : "no provider price", &rc);
        free(why);
        return rc;
    }
    const char *why = NULL;
    if (api_price(prov, cJSON_GetObjectItemCaseSensitive(alt, "units"), config,
                  &s->api_micros, &why) == RZ_OK)
        s->api_ok = 1;
    else
        s->api_reason = keep(e, why, &rc);
    return rc;
}

static void choose(rz_step_estimate *s)
{
    if (s->api_ok && (!s->rent_ok || s->api_micros < s->rent_micros)) {
        s->choice = RZ_CHOICE_API;
        s->cost_micros = s->api_micros;
    } else if (s->rent_ok) {
        s->choice = RZ_CHOICE_RENT;
        s->cost_micros = s->rent_micros;
    }
}

static int estimate_step(rz_estimate *e, const rz_prices *p,
                         const rz__step *st, rz_step_estimate *s)
{
    const rz_module *m = st->module;
    int rc = RZ_OK;
    if (rz__step_approval(st)) {   /* a person decides: nothing runs, nothing costs */
        s->step = keep(e, st->id, &rc);
        s->module = s->rent_reason = s->provider = s->api_model = s->api_reason = "";
        s->node_class = "approval (no node)";
        s->rent_ok = 1;
        choose(s);
        return rc;
    }
    char *mod = rz__asprintf("%s@%s", m->id, m->version);
    s->step = keep(e, st->id, &rc);
    s->module = keep(e, mod ? mod : "", &rc);
    free(mod);
    s->node_class = s->rent_reason = s->provider = s->api_model =
        s->api_reason = "";
    if (rc == RZ_OK && !mod)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK && ((m->adapter && strcmp(m->adapter, "llm") == 0) ||
                        rz__local_llm_on(m, st->config)))
        rc = estimate_llm(e, p, m, st->config, s);
    else if (rc == RZ_OK)
        rc = estimate_rent(e, p, m, s);
    if (rc == RZ_OK)
        rc = estimate_api(e, p, m, st->config, s);
    choose(s);
    return rc;
}

int rz_estimate_flow(rz_estimate **out, const rz_flow *flow,
                     const rz_prices *prices)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!flow || !prices)
        return rz__error(RZ_EINVAL, "flow or prices is NULL");
    for (size_t i = 0; i < flow->n_steps; i++)
        if (!flow->steps[i].module && !rz__step_approval(&flow->steps[i]))
            return rz__error(RZ_ESTATE, "step '%s' has no resolved module: "
                             "validate the flow first", flow->steps[i].id);
    rz_estimate *e = rz__calloc(1, sizeof *e);
    if (!e || !(e->steps = rz__calloc(flow->n_steps ? flow->n_steps : 1,
                                  sizeof *e->steps))) {
        free(e);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    e->complete = true;
    int rc = RZ_OK;
    e->nodes_date = rz__strdup(rz_prices_nodes_date(prices));
    e->providers_date = rz__strdup(rz_prices_providers_date(prices));
    if (!e->nodes_date || !e->providers_date)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; rc == RZ_OK && i < flow->n_steps; i++) {
        rc = estimate_step(e, prices, &flow->steps[i], &e->steps[i]);
        e->n++;
        e->total = sat_add(e->total, e->steps[i].cost_micros);
        if (e->steps[i].choice == RZ_CHOICE_NONE)
            e->complete = false;
    }
    if (rc != RZ_OK) {
        rz_estimate_free(e);
        return rc;
    }
    *out = e;
    return RZ_OK;
}

void rz_estimate_free(rz_estimate *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_strings; i++)
        free(e->strings[i]);
    free(e->strings);
    free(e->steps);
    free(e->nodes_date);
    free(e->providers_date);
    free(e);
}

size_t rz_estimate_count(const rz_estimate *e) { return e ? e->n : 0; }

const rz_step_estimate *rz_estimate_get(const rz_estimate *e, size_t i)
{
    return e && i < e->n ? &e->steps[i] : NULL;
}

uint64_t rz_estimate_total_micros(const rz_estimate *e) { return e ? e->total : 0; }
int rz_estimate_complete(const rz_estimate *e) { return e && e->complete; }

/* ---- JSON ---- */

/* Cents as exact decimal integers: cJSON would print a double with 15
 * significant digits. */
static cJSON *add_micros(cJSON *o, const char *key, uint64_t c)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, c);
    return cJSON_AddRawToObject(o, key, buf);
}

static bool step_json(cJSON *arr, const rz_step_estimate *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o))
        return (cJSON_Delete(o), false);
    bool ok = cJSON_AddStringToObject(o, "step", s->step) &&
              cJSON_AddStringToObject(o, "module", s->module) &&
              cJSON_AddNumberToObject(o, "estimate_seconds",
                                      (double)s->estimate_ms / 1000.0);
    cJSON *r = s->rent_ok ? cJSON_AddObjectToObject(o, "rent")
                          : cJSON_AddNullToObject(o, "rent");
    ok = ok && r;
    if (ok && s->rent_ok)
        ok = cJSON_AddStringToObject(r, "node_class", s->node_class) &&
             add_micros(r, "cost_micros", s->rent_micros);
    else if (ok)
        ok = cJSON_AddStringToObject(o, "rent_unavailable", s->rent_reason);
    cJSON *a = s->api_ok ? cJSON_AddObjectToObject(o, "api")
                         : cJSON_AddNullToObject(o, "api");
    ok = ok && a;
    if (ok && s->api_ok)
        ok = cJSON_AddStringToObject(a, "provider", s->provider) &&
             cJSON_AddStringToObject(a, "model", s->api_model) &&
             add_micros(a, "cost_micros", s->api_micros);
    else if (ok && *s->api_reason)
        ok = cJSON_AddStringToObject(o, "api_unavailable", s->api_reason);
    return ok && cJSON_AddStringToObject(o, "recommendation",
                                         rz_choice_name(s->choice)) &&
           add_micros(o, "cost_micros", s->cost_micros);
}

int rz_estimate_to_json(const rz_estimate *e, char **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!e)
        return rz__error(RZ_EINVAL, "estimate is NULL");
    cJSON *root = cJSON_CreateObject();
    cJSON *steps = root ? cJSON_AddArrayToObject(root, "steps") : NULL;
    bool ok = steps != NULL;
    for (size_t i = 0; ok && i < e->n; i++)
        ok = step_json(steps, &e->steps[i]);
    cJSON *pr = ok ? cJSON_CreateObject() : NULL;
    ok = ok && add_micros(root, "total_micros", e->total) &&
         cJSON_AddBoolToObject(root, "complete", e->complete) && pr &&
         cJSON_AddItemToObject(root, "prices", pr);
    if (!ok)
        cJSON_Delete(pr);
    ok = ok && cJSON_AddStringToObject(pr, "nodes_date", e->nodes_date) &&
         cJSON_AddStringToObject(pr, "providers_date", e->providers_date);
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = s;
    return RZ_OK;
}
