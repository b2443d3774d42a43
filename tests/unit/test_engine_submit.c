/* rz_engine_submit_module: a standalone job of a registry module gets the
 * checks of a deployment step (module, config defaults and schema,
 * requirements, reference cost); bad input changes nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "engine_fixture.h"
#include "rhizos/engine.h"
#include "rhizos/module.h"

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"adapters\":[\"process\"],\"prices\":{\"gpu_hour_micros\":0," \
    "\"cpu_hour_micros\":36000,\"memory_gb_hour_micros\":0}," \
    "\"max_concurrent_jobs\":2}"

/* "greeting" is required and has a default: the default satisfies it. */
#define GREET_CONFIG ",\"config\":{\"type\":\"object\",\"properties\":{" \
    "\"greeting\":{\"type\":\"string\",\"default\":\"hi\"}," \
    "\"times\":{\"type\":\"integer\"}},\"required\":[\"greeting\"]," \
    "\"additionalProperties\":false}"

typedef efx fx;

static int setup(void **state)
{
    static const efx_module greet = {
        "greet", "[{\"name\":\"who\",\"type\":\"string\"}]", "[]", GREET_CONFIG, "1.2.0"
    };
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.ref_cpu_hour_micros = 36000;   /* 10 s x 200% on 1 core: 200 micros */
    *state = efx_new("submit", &greet, 1, &o, 1000);
    return 0;
}

static int teardown(void **state)
{
    efx_free(*state);
    return 0;
}

static uint64_t available(fx *f)
{
    return efx_available(f, f->client);
}

static rz_engine_module_job greet_job(const fx *f)
{
    rz_engine_module_job j = RZ_ENGINE_MODULE_JOB_INIT;
    j.client = f->client;
    j.module = "greet@1";
    j.inputs_json = "{\"who\":\"ann\"}";
    return j;
}

/* The node receives the config with its default filled in. */
static void test_defaults_reach_the_node(void **state)
{
    fx *f = *state;
    uint64_t node, job;
    assert_int_equal(rz_engine_node_register(f->e, NODE_CAPS, strlen(NODE_CAPS),
                                             1, &node), RZ_OK);
    rz_engine_module_job j = greet_job(f);
    j.inputs_json = "{\"who\":\"ann\"}";
    j.config_json = "{\"times\":2}";
    j.max_cost_micros = 300;
    assert_int_equal(rz_engine_submit_module(f->e, &j, 2, &job), RZ_OK);
    rz_engine_assignment a;
    assert_int_equal(rz_engine_poll(f->e, node, 3, &a), RZ_OK);
    assert_int_equal(a.job, job);
    assert_string_equal(a.module_id, "greet");
    assert_string_equal(a.module_version, "1.2.0");
    assert_int_equal(a.max_cost_micros, 300);
    cJSON *req = cJSON_Parse(a.request_json);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(req, "config");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(req, "inputs");
    assert_string_equal(cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cfg, "greeting")), "hi");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(cfg, "times")->valueint, 2);
    assert_string_equal(cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(in, "who")), "ann");
    cJSON_Delete(req);
    assert_int_equal(available(f), 700);
}

/* Without a maximum the hold is the reference cost of the module's
 * requirements and estimate, as replaced by the job's own. */
static void test_reference_cost_of_merged_requirements(void **state)
{
    fx *f = *state;
    uint64_t job;
    rz_engine_module_job j = greet_job(f);
    j.module = "chain://greet";
    assert_int_equal(rz_engine_submit_module(f->e, &j, 1, &job), RZ_OK);
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    assert_int_equal(ji.max_cost_micros, 200);
    j.requirements_json = "{\"cpu_cores\":2}";
    assert_int_equal(rz_engine_submit_module(f->e, &j, 2, &job), RZ_OK);
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    assert_int_equal(ji.max_cost_micros, 400);
    assert_int_equal(available(f), 400);
}

/* Each bad job: its code, a message, and no job nor hold. */
static void test_bad_jobs_change_nothing(void **state)
{
    fx *f = *state;
    static const struct {
        const char *module, *inputs, *config, *reqs;
        uint64_t max;
        int rc;
        const char *message;
    } cases[] = {
        { "", NULL, NULL, NULL, 0, RZ_EINVAL, "\"module\" must be id[@version]" },
        { "@1", NULL, NULL, NULL, 0, RZ_EINVAL, "\"module\" must be id[@version]" },
        { "nope", NULL, NULL, NULL, 0, RZ_EMODULE, "no module nope in the registry" },
        { "greet@2", NULL, NULL, NULL, 0, RZ_EMODULE, "no module greet@2 in the registry" },
        { "greet", "[1]", NULL, NULL, 0, RZ_EINVAL, "inputs must be a JSON object" },
        /* Inputs are checked against the module's, as a flow step's are. */
        { "greet", "{}", NULL, NULL, 0, RZ_EINVALID,
          "required input 'who' of module greet@1.2.0 is missing" },
        { "greet", "{\"who\":null}", NULL, NULL, 0, RZ_EINVALID,
          "required input 'who' of module greet@1.2.0 is missing" },
        { "greet", "{\"who\":5}", NULL, NULL, 0, RZ_ETYPE,
          "input 'who' of module greet@1.2.0 is string, not a number" },
        { "greet", "{\"who\":\"a\",\"whom\":1}", NULL, NULL, 0, RZ_EINVALID,
          "module greet@1.2.0 has no input 'whom' (inputs: who)" },
        { "greet", NULL, "{\"times\":", NULL, 0, RZ_EINVAL, "config must be a JSON object" },
        { "greet", NULL, NULL, "7", 0, RZ_EINVAL, "requirements must be a JSON object" },
        { "greet", NULL, "{\"times\":\"x\"}", NULL, 0, RZ_EINVALID, "config/times: " },
        { "greet", NULL, "{\"bogus\":1}", NULL, 0, RZ_EINVALID, "config" },
        { "greet", NULL, "{\"greeting\":null}", NULL, 0, RZ_EINVALID, "config/greeting: " },
        { "greet", NULL, NULL, "{\"cpu_cores\":\"many\"}", 0, RZ_EINVALID, "cpu_cores" },
        { "greet", NULL, NULL, "{\"cpu_cores\":\"many\"}", 5, RZ_EINVALID, "cpu_cores" },
        { "greet", NULL, NULL, NULL, 1001, RZ_EFUNDS, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rz_engine_module_job j = greet_job(f);
        j.module = cases[i].module;
        if (cases[i].inputs)
            j.inputs_json = cases[i].inputs;
        j.config_json = cases[i].config;
        j.requirements_json = cases[i].reqs;
        j.max_cost_micros = cases[i].max;
        uint64_t job = 99;
        int rc = rz_engine_submit_module(f->e, &j, 1, &job);
        if (rc != cases[i].rc || !strstr(rz_error_last()->message, cases[i].message))
            fail_msg("case %zu: %s: %s", i, rz_status_name(rc),
                     rz_error_last()->message);
        assert_int_equal(job, 0);
    }
    uint64_t ids[4];
    assert_int_equal(rz_engine_job_list(f->e, NULL, 0, ids, 4), 0);
    assert_int_equal(available(f), 1000);
    assert_int_equal(rz_engine_check(f->e), RZ_OK);
}

/* An engine without a registry cannot resolve modules: a clear error. */
static void test_no_registry(void **state)
{
    fx *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/other", f->dir);
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    rz_engine *e;
    assert_int_equal(rz_engine_open(&e, path, &o), RZ_OK);
    rz_engine_module_job j = greet_job(f);
    uint64_t job;
    assert_int_equal(rz_engine_submit_module(e, &j, 1, &job), RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "registry"));
    j.version = 0;
    assert_int_equal(rz_engine_submit_module(f->e, &j, 1, &job), RZ_EINVAL);
    rz_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_reach_the_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_cost_of_merged_requirements,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_jobs_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_registry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
