/* Flow cost estimates: price tables, rounding, node choice, API vs rental,
 * saturation, JSON, and the catalog flow against data/prices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rhizos/rhizos.h"

#define MODS RZ_SOURCE_ROOT "/tests/data/modules/estimate"

/* Prices chosen so every expected figure can be worked out by hand. */
static const char *const TABLE =
    "{\"date\":\"2026-01-01\",\"source\":\"test\","
    " \"nodes\":["
    "  {\"id\":\"c\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,"
    "   \"adapters\":[\"process\"],"
    "   \"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":3,\"memory_gb_hour_micros\":2}},"
    "  {\"id\":\"g-small\",\"cpu\":{\"cores\":8},\"memory_mb\":32768,"
    "   \"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":8192,\"compute_capability\":\"8.6\"}],"
    "   \"adapters\":[\"process\",\"docker\"],"
    "   \"prices\":{\"gpu_hour_micros\":10,\"cpu_hour_micros\":3,\"memory_gb_hour_micros\":2}},"
    "  {\"id\":\"g-pricey\",\"cpu\":{\"cores\":8},\"memory_mb\":32768,"
    "   \"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":24576,\"compute_capability\":\"8.0\"}],"
    "   \"adapters\":[\"docker\"],"
    "   \"prices\":{\"gpu_hour_micros\":80,\"cpu_hour_micros\":3,\"memory_gb_hour_micros\":2}},"
    "  {\"id\":\"g-big\",\"cpu\":{\"cores\":8},\"memory_mb\":32768,"
    "   \"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":24576,\"compute_capability\":\"8.0\"}],"
    "   \"adapters\":[\"docker\"],"
    "   \"prices\":{\"gpu_hour_micros\":50,\"cpu_hour_micros\":3,\"memory_gb_hour_micros\":2}}"
    " ],"
    " \"providers\":["
    "  {\"provider\":\"p\",\"model\":\"m\","
    "   \"micros_per_million\":{\"input_token\":7,\"output_token\":100}},"
    "  {\"provider\":\"p\",\"model\":\"img\",\"micros_per_million\":{\"image\":2500000}},"
    "  {\"provider\":\"p\",\"model\":\"max\",\"micros_per_million\":{\"image\":9007199254740992}}"
    " ]}";

static rz_prices *prices(void)
{
    rz_prices *p;
    assert_int_equal(rz_prices_new(&p), RZ_OK);
    assert_int_equal(rz_prices_add_json(p, TABLE, strlen(TABLE), "t"), RZ_OK);
    assert_int_equal(rz_prices_node_count(p), 4);
    assert_int_equal(rz_prices_provider_count(p), 3);
    assert_string_equal(rz_prices_nodes_date(p), "2026-01-01");
    return p;
}

static rz_flow *flow_of(const rz_registry *reg, const char *yaml)
{
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, yaml, strlen(yaml), RZ_FORMAT_YAML, "t.yaml", d);
    if (rc == RZ_OK)
        rc = rz_flow_validate(f, reg, d);
    if (rc != RZ_OK) {
        char *t;
        if (rz_diags_to_text(d, &t) == RZ_OK)
            fputs(t, stderr);
        rz_free(t);
    }
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);
    return f;
}

static rz_registry *registry_of(const char *dir)
{
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    return reg;
}

/* The test's modules (MODS), or the examples'. */
static rz_registry *registry(void)
{
    return registry_of(MODS);
}

static rz_registry *example_modules(void)
{
    return registry_of(RZ_SOURCE_ROOT "/examples/modules");
}

/* The estimate of a one-step flow (`body`: the step's YAML). */
typedef struct one {
    rz_registry *reg;
    rz_prices *p;
    rz_flow *f;
    rz_estimate *e;
} one;

static const rz_step_estimate *estimate_one(one *o, const char *body)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml, "flux: 1\nname: t\nsteps:\n  s: %s\n", body);
    o->reg = registry();
    o->p = prices();
    o->f = flow_of(o->reg, yaml);
    assert_int_equal(rz_estimate_flow(&o->e, o->f, o->p), RZ_OK);
    assert_int_equal(rz_estimate_count(o->e), 1);
    return rz_estimate_get(o->e, 0);
}

static void one_free(one *o)
{
    rz_estimate_free(o->e);
    rz_flow_free(o->f);
    rz_prices_free(o->p);
    rz_registry_free(o->reg);
}

/* 1800 s x (2 cores x 3 + 2 GB x 2) = 0.5 h x 10 = 5 micros exactly. */
static void test_rent_on_the_cheapest_class(void **state)
{
    (void)state;
    one o;
    const rz_step_estimate *s = estimate_one(&o, "{module: cheap-cpu}");
    assert_string_equal(s->step, "s");
    assert_string_equal(s->module, "cheap-cpu@1.0.0");
    assert_int_equal(s->estimate_ms, 1800000);
    assert_true(s->rent_ok);
    assert_string_equal(s->node_class, "c");
    assert_int_equal(s->rent_micros, 5);
    assert_false(s->api_ok);
    assert_string_equal(s->api_reason, "");
    assert_int_equal(s->choice, RZ_CHOICE_RENT);
    assert_int_equal(s->cost_micros, 5);
    one_free(&o);
}

/* One second more than cheap-cpu: 5.003 micros, rounded up. */
static void test_rent_rounds_up(void **state)
{
    (void)state;
    one o;
    assert_int_equal(estimate_one(&o, "{module: odd-cpu}")->rent_micros, 6);
    one_free(&o);
}

/* The measured run time instead of the estimate, on the same class:
 * cheap-cpu is 10 micros an hour there, so 1800 s is 5, 1801 s 5.003 -> 6,
 * 0 ms nothing; a module no class fits is RZ_ENOENT. */
static void test_rent_for_a_run_time(void **state)
{
    (void)state;
    rz_registry *reg = registry();
    rz_prices *p = prices();
    rz_flow *f = flow_of(reg, "flux: 1\nname: t\nsteps:\n  a: {module: cheap-cpu}\n"
                              "  b: {module: huge}\n");
    uint64_t m = 9;
    assert_int_equal(rz_prices_rent_step(p, f, 0, 1800000, &m), RZ_OK);
    assert_int_equal(m, 5);
    assert_int_equal(rz_prices_rent_step(p, f, 0, 1801000, &m), RZ_OK);
    assert_int_equal(m, 6);
    assert_int_equal(rz_prices_rent_step(p, f, 0, 360000000, &m), RZ_OK);
    assert_int_equal(m, 1000);
    assert_int_equal(rz_prices_rent_step(p, f, 0, 0, &m), RZ_OK);
    assert_int_equal(m, 0);
    m = 9;
    assert_int_equal(rz_prices_rent_step(p, f, 1, 1000, &m), RZ_ENOENT);
    assert_int_equal(m, 0);
    assert_non_null(strstr(rz_error_last()->message, "fits step 'b'"));
    assert_int_equal(rz_prices_rent_step(p, f, 2, 1000, &m), RZ_EINVAL);
    assert_int_equal(rz_prices_rent_step(NULL, f, 0, 1000, &m), RZ_EINVAL);
    rz_prices *empty;
    assert_int_equal(rz_prices_new(&empty), RZ_OK);
    assert_int_equal(rz_prices_rent_step(empty, f, 0, 1000, &m), RZ_ENOENT);
    rz_prices_free(empty);
    rz_flow_free(f);
    rz_prices_free(p);
    rz_registry_free(reg);
}

/* GPU job: the cheapest class that fits (g-small lacks VRAM, g-pricey costs
 * more): 1 h x (50 + 3 + 2) = 55. API: 1e6 x 7 + 250000 x 100 = 32e6
 * micros x 1e6 = 32 micros, cheaper. */
static void test_api_when_cheaper_than_rent(void **state)
{
    (void)state;
    one o;
    const rz_step_estimate *s =
        estimate_one(&o, "{module: gpu-llm, config: {max_tokens: 250000}}");
    assert_true(s->rent_ok);
    assert_string_equal(s->node_class, "g-big");
    assert_int_equal(s->rent_micros, 55);
    assert_true(s->api_ok);
    assert_string_equal(s->provider, "p");
    assert_string_equal(s->api_model, "m");
    assert_int_equal(s->api_micros, 32);
    assert_int_equal(s->choice, RZ_CHOICE_API);
    assert_int_equal(s->cost_micros, 32);
    one_free(&o);
}

/* Without config, the manifest's default: 7e6 + 1000 x 100 = 7.1e6 -> 8
 * micros (rounded up). */
static void test_api_uses_the_manifest_default(void **state)
{
    (void)state;
    one o;
    assert_int_equal(estimate_one(&o, "{module: gpu-llm}")->api_micros, 8);
    one_free(&o);
}

/* Nothing fits, no API: NONE, with the matcher's reason. */
static void test_none_says_why(void **state)
{
    (void)state;
    one o;
    const rz_step_estimate *s = estimate_one(&o, "{module: huge}");
    assert_false(s->rent_ok);
    assert_non_null(strstr(s->rent_reason, "VRAM"));
    assert_int_equal(s->choice, RZ_CHOICE_NONE);
    assert_int_equal(s->cost_micros, 0);
    assert_false(rz_estimate_complete(o.e));
    one_free(&o);
}

/* No node, API priced: 3 images x 2.5 micros = 7.5 -> 8. */
static void test_api_only(void **state)
{
    (void)state;
    one o;
    const rz_step_estimate *s = estimate_one(&o, "{module: api-only}");
    assert_int_equal(s->choice, RZ_CHOICE_API);
    assert_int_equal(s->api_micros, 8);
    one_free(&o);
}

/* An API unknown to the table: rent, and say why not the API. */
static void test_unpriced_api_rents(void **state)
{
    (void)state;
    one o;
    const rz_step_estimate *s = estimate_one(&o, "{module: unpriced-api}");
    assert_false(s->api_ok);
    assert_non_null(strstr(s->api_reason, "nobody/m"));
    assert_int_equal(s->choice, RZ_CHOICE_RENT);
    assert_int_equal(s->rent_micros, 1);     /* 60 s x 3 c/h -> 0.05 -> 1 */
    one_free(&o);
}

/* A flow of all of the above: the total, in the order of the steps, and the
 * JSON report. */
static void test_flow_total_and_json(void **state)
{
    (void)state;
    rz_registry *reg = registry();
    rz_prices *p = prices();
    rz_flow *f = flow_of(reg,
        "flux: 1\nname: t\nsteps:\n"
        "  a: {module: cheap-cpu}\n"
        "  b: {module: odd-cpu}\n"
        "  c: {module: gpu-llm, config: {max_tokens: 250000}}\n"
        "  d: {module: gpu-llm}\n"
        "  e: {module: huge}\n"
        "  f: {module: api-only}\n"
        "  g: {module: unpriced-api}\n");
    rz_estimate *e;
    assert_int_equal(rz_estimate_flow(&e, f, p), RZ_OK);
    assert_int_equal(rz_estimate_count(e), 7);
    assert_string_equal(rz_estimate_get(e, 0)->step, "a");
    assert_string_equal(rz_estimate_get(e, 6)->step, "g");
    assert_int_equal(rz_estimate_total_micros(e), 5 + 6 + 32 + 8 + 0 + 8 + 1);
    assert_false(rz_estimate_complete(e));
    assert_null(rz_estimate_get(e, 7));

    char *json;
    assert_int_equal(rz_estimate_to_json(e, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    assert_non_null(doc);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "total_micros")), 60);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(doc, "complete")));
    cJSON *steps = cJSON_GetObjectItem(doc, "steps");
    cJSON *c = cJSON_GetArrayItem(steps, 2);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, "recommendation")), "api");
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(c, "rent"), "cost_micros")), 55);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(c, "rent"), "node_class")), "g-big");
    cJSON *h = cJSON_GetArrayItem(steps, 4);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(h, "rent")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(h, "rent_unavailable")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(h, "recommendation")), "none");
    cJSON_Delete(doc);
    rz_free(json);

    rz_estimate_free(e);
    rz_flow_free(f);
    rz_prices_free(p);
    rz_registry_free(reg);
}

static void test_saturation(void **state)
{
    (void)state;
    rz_registry *reg = registry();
    rz_prices *p = prices();
    rz_flow *f = flow_of(reg, "flux: 1\nname: t\nsteps:\n"
                              "  a: {module: overflow}\n  b: {module: overflow}\n"
                              "  c: {module: cheap-cpu}\n");
    rz_estimate *e;
    assert_int_equal(rz_estimate_flow(&e, f, p), RZ_OK);
    assert_int_equal(rz_estimate_get(e, 0)->api_micros, UINT64_MAX);
    assert_int_equal(rz_estimate_total_micros(e), UINT64_MAX);
    assert_true(rz_estimate_complete(e));
    char *json;
    assert_int_equal(rz_estimate_to_json(e, &json), RZ_OK);
    /* Exact integers in the JSON text, even past 2^53. */
    assert_non_null(strstr(json, "\"total_micros\":18446744073709551615,"));
    assert_non_null(strstr(json, "\"cost_micros\":5}"));
    rz_free(json);
    rz_estimate_free(e);
    rz_flow_free(f);

    /* Not validated: no modules resolved. */
    const char *y = "flux: 1\nname: t\nsteps:\n  a: {module: cheap-cpu}\n";
    assert_int_equal(rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, "t", NULL), RZ_OK);
    e = (rz_estimate *)1;
    assert_int_equal(rz_estimate_flow(&e, f, p), RZ_ESTATE);
    assert_null(e);
    assert_int_equal(rz_estimate_flow(&e, NULL, p), RZ_EINVAL);
    assert_int_equal(rz_estimate_flow(NULL, f, p), RZ_EINVAL);
    rz_flow_free(f);
    rz_estimate_free(NULL);
    assert_int_equal(rz_estimate_count(NULL), 0);
    assert_string_equal(rz_choice_name(RZ_CHOICE_API), "api");
    rz_prices_free(p);
    rz_registry_free(reg);
}

static void expect_bad(const char *json, int rc, const char *needle)
{
    rz_prices *p;
    assert_int_equal(rz_prices_new(&p), RZ_OK);
    assert_int_equal(rz_prices_add_json(p, json, strlen(json), "bad.json"), rc);
    if (needle && !strstr(rz_error_last()->message, needle))
        fail_msg("'%s' lacks '%s'", rz_error_last()->message, needle);
    /* Nothing of a rejected document is kept. */
    assert_int_equal(rz_prices_node_count(p), 0);
    assert_int_equal(rz_prices_provider_count(p), 0);
    rz_prices_free(p);
}

static void test_bad_tables(void **state)
{
    (void)state;
    expect_bad("", RZ_ESYNTAX, "not a JSON object");
    expect_bad("[1]", RZ_ESYNTAX, NULL);
    expect_bad("{\"date\":\"x\"}", RZ_EINVALID, "\"nodes\" or \"providers\"");
    expect_bad("{\"providers\":{}}", RZ_EINVALID, "must be an array");
    expect_bad("{\"providers\":[{\"provider\":\"p\"}]}", RZ_EINVALID, "'model'");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\"}]}",
               RZ_EINVALID, "micros_per_million");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\","
               "\"micros_per_million\":{}}]}", RZ_EINVALID, "micros_per_million");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\","
               "\"micros_per_million\":{\"t\":1.5}}]}", RZ_EINVALID, "whole");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\","
               "\"micros_per_million\":{\"t\":-1}}]}", RZ_EINVALID, "whole");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\","
               "\"micros_per_million\":{\"t\":1e300}}]}", RZ_EINVALID, "whole");
    expect_bad("{\"providers\":[{\"provider\":\"p\",\"model\":\"m\","
               "\"micros_per_million\":{\"t\":\"1\"}}]}", RZ_EINVALID, "whole");
    /* A bad node drops the whole document, its good providers included. */
    expect_bad("{\"nodes\":[{\"id\":\"n\",\"memory_mb\":-5}],\"providers\":[{\"provider\":"
               "\"p\",\"model\":\"m\",\"micros_per_million\":{\"t\":1}}]}",
               RZ_EINVALID, "bad.json: node table");
    expect_bad("{\"nodes\":5}", RZ_EINVALID, NULL);

    rz_prices *p;
    assert_int_equal(rz_prices_new(&p), RZ_OK);
    assert_int_equal(rz_prices_add_file(p, "/nonexistent/prices.json"), RZ_ENOENT);
    assert_non_null(strstr(rz_error_last()->message, "/nonexistent/prices.json"));
    assert_int_equal(rz_prices_add_json(p, NULL, 0, NULL), RZ_EINVAL);
    assert_string_equal(rz_prices_nodes_date(p), "");
    rz_prices_free(p);
    rz_prices_free(NULL);
}

/* The catalog flow against the shipped tables: every step priced. */
static void test_catalog_flow(void **state)
{
    (void)state;
    rz_prices *p;
    assert_int_equal(rz_prices_new(&p), RZ_OK);
    assert_int_equal(rz_prices_add_file(p, RZ_SOURCE_ROOT "/data/prices/nodes.json"), RZ_OK);
    assert_int_equal(rz_prices_add_file(p, RZ_SOURCE_ROOT "/data/prices/providers.json"), RZ_OK);
    assert_true(rz_prices_node_count(p) >= 4);
    assert_true(*rz_prices_providers_date(p));
    rz_registry *reg = example_modules();
    static const char *const flows[] = {
        RZ_SOURCE_ROOT "/examples/flows/catalog/transcribe-summarize.yaml",
        RZ_SOURCE_ROOT "/examples/flows/catalog/trading-agent.json",
    };
    for (size_t k = 0; k < 2; k++) {
        rz_flow *f;
        assert_int_equal(rz_flow_load(&f, flows[k], RZ_FORMAT_AUTO, NULL), RZ_OK);
        assert_int_equal(rz_flow_validate(f, reg, NULL), RZ_OK);
        rz_estimate *e;
        assert_int_equal(rz_estimate_flow(&e, f, p), RZ_OK);
        assert_true(rz_estimate_complete(e));
        uint64_t sum = 0;
        for (size_t i = 0; i < rz_estimate_count(e); i++) {
            const rz_step_estimate *s = rz_estimate_get(e, i);
            assert_true(s->rent_ok);
            assert_true(s->cost_micros >= 1);
            sum += s->cost_micros;
            if (strcmp(s->step, "transcript") == 0) {
                /* 45 minutes from the step's config at $0.006/minute. */
                assert_true(s->api_ok);
                assert_int_equal(s->api_micros, 270000);
                assert_string_equal(s->node_class, "gpu-rtx3090");
                assert_int_equal(s->choice, RZ_CHOICE_RENT);
            }
        }
        assert_int_equal(rz_estimate_total_micros(e), sum);
        rz_estimate_free(e);
        rz_flow_free(f);
    }
    rz_registry_free(reg);
    rz_prices_free(p);
}

/* An llm step of each case's config estimated against price table
 * `table`: rented on class `cls` for `micros`. */
typedef struct llm_case {
    const char *config, *cls;
    uint64_t micros;
} llm_case;

static void expect_llm_steps(const rz_registry *reg, const char *table, const llm_case *cases,
                             size_t n)
{
    rz_prices *p;
    assert_int_equal(rz_prices_new(&p), RZ_OK);
    assert_int_equal(rz_prices_add_json(p, table, strlen(table), "t"), RZ_OK);
    for (size_t i = 0; i < n; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "flux: 1\nname: t\nsteps:\n  s: "
                 "{module: llm@1, config: %s, inputs: {prompt: hi}}\n",
                 cases[i].config);
        rz_flow *f = flow_of(reg, yaml);
        rz_estimate *e;
        assert_int_equal(rz_estimate_flow(&e, f, p), RZ_OK);
        const rz_step_estimate *s = rz_estimate_get(e, 0);
        assert_true(s->rent_ok);
        assert_string_equal(s->node_class, cases[i].cls);
        assert_int_equal(s->rent_micros, cases[i].micros);
        rz_estimate_free(e);
        rz_flow_free(f);
    }
    rz_prices_free(p);
}

/* An llm step: max_tokens + max_prompt_tokens at the cheapest class that
 * serves llm steps, per 1,000 tokens, rounded up; no such class: why. */
static void test_llm_step_per_token(void **state)
{
    (void)state;
    const char *table =
        "{\"nodes\":["
        " {\"id\":\"cpu\",\"adapters\":[\"process\"],"
        "  \"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":1,\"memory_gb_hour_micros\":0}},"
        " {\"id\":\"llm-a\",\"adapters\":[\"llm\"],\"llm\":{\"models\":[],\"price_1k_tokens_micros\":3}},"
        " {\"id\":\"llm-b\",\"adapters\":[\"llm\"],\"llm\":{\"models\":[],\"price_1k_tokens_micros\":2}},"
        " {\"id\":\"no-adapter\",\"adapters\":[\"process\"],\"llm\":{\"models\":[],\"price_1k_tokens_micros\":1}}"
        "]}";
    rz_registry *reg = example_modules();
    const llm_case cases[] = {
        { "{model: m, max_tokens: 100, max_prompt_tokens: 900}", "llm-b", 2 },
        { "{model: m}", "llm-b", 9 },   /* 256 + 4096 defaults: 8.704 -> 9 */
    };
    expect_llm_steps(reg, table, cases, 2);
    /* The test table has no llm class. */
    rz_prices *p = prices();
    rz_flow *f = flow_of(reg, "flux: 1\nname: t\nsteps:\n  s: {module: llm@1, "
                              "config: {model: m}, inputs: {prompt: hi}}\n");
    rz_estimate *e;
    assert_int_equal(rz_estimate_flow(&e, f, p), RZ_OK);
    assert_false(rz_estimate_get(e, 0)->rent_ok);
    assert_non_null(strstr(rz_estimate_get(e, 0)->rent_reason,
                           "no node class serves llm steps"));
    rz_estimate_free(e);
    rz_flow_free(f);
    rz_prices_free(p);
    rz_registry_free(reg);
}

/* A class priced per second: the module's timeout_s (llm@1: 300) at its
 * price, against the token classes' tokens: the least wins. */
static void test_llm_step_per_second(void **state)
{
    (void)state;
    const char *table =
        "{\"nodes\":["
        " {\"id\":\"llm-tok\",\"adapters\":[\"llm\"],\"llm\":{\"models\":[],"
        "\"price_1k_tokens_micros\":1000000}},"
        " {\"id\":\"llm-sec\",\"adapters\":[\"llm\"],\"llm\":{\"models\":[],"
        "\"price_second_micros\":10}}"
        "]}";
    rz_registry *reg = example_modules();
    const llm_case cases[] = {
        { "{model: m, max_tokens: 100, max_prompt_tokens: 900}", "llm-sec", 3000 },
        { "{model: m, max_tokens: 1, max_prompt_tokens: 1}", "llm-tok", 2000 },
    };
    expect_llm_steps(reg, table, cases, 2);
    rz_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rent_on_the_cheapest_class),
        cmocka_unit_test(test_rent_rounds_up),
        cmocka_unit_test(test_rent_for_a_run_time),
        cmocka_unit_test(test_api_when_cheaper_than_rent),
        cmocka_unit_test(test_api_uses_the_manifest_default),
        cmocka_unit_test(test_none_says_why),
        cmocka_unit_test(test_api_only),
        cmocka_unit_test(test_unpriced_api_rents),
        cmocka_unit_test(test_flow_total_and_json),
        cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_catalog_flow),
        cmocka_unit_test(test_llm_step_per_token),
        cmocka_unit_test(test_llm_step_per_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
