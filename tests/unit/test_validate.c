/* rz_flow_validate: every kind of problem, with exact FILE:LINE:COLUMN, in
 * JSON and YAML flows; all problems in one pass; golden diagnostics; size. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flow/model.h"
#include "module/module_impl.h"

#define DATA RZ_SOURCE_ROOT "/tests/data"

static rz_registry *g_reg;

static int setup(void **state)
{
    (void)state;
    if (rz_registry_new(&g_reg) != RZ_OK)
        return -1;
    return rz_registry_add_dir(g_reg, DATA "/modules/good", NULL) == RZ_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rz_registry_free(g_reg);
    return 0;
}

static void dump(const rz_diags *d)
{
    char *t = NULL;
    if (rz_diags_to_text(d, &t) == RZ_OK && t)
        fputs(t, stderr);
    rz_free(t);
}

/* Parse (must succeed) and validate; returns the status, diags in *out. */
static int validate(const char *src, rz_format fmt, const char *name,
                    const rz_registry *reg, rz_flow **flow, rz_diags **out)
{
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f;
    int rc = rz_flow_parse(&f, src, strlen(src), fmt, name, d);
    if (rc != RZ_OK)
        dump(d);
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(rz_diags_count(d), 0);
    rc = rz_flow_validate(f, reg, d);
    *out = d;
    if (flow)
        *flow = f;
    else
        rz_flow_free(f);
    return rc;
}

/* Exactly one diagnostic at line:col with this code and message. */
static void expect(const rz_diags *d, const char *file, uint32_t line, uint32_t col,
                   int code, const char *msg)
{
    size_t hits = 0;
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (x->line == line && x->column == col && x->code == code &&
            strcmp(x->message, msg) == 0 && strcmp(x->file, file) == 0)
            hits++;
    }
    if (hits != 1) {
        fprintf(stderr, "want once: %s:%u:%u: [%s] %s\ngot:\n", file, line, col,
                rz_status_name(code), msg);
        dump(d);
    }
    assert_int_equal(hits, 1);
}

/* ---- A valid flow in each syntax ---- */

static const char *const ok_yaml =
    "flux: 1\n"
    "name: wordcount\n"
    "inputs:\n"
    "  text:\n"
    "    type: string\n"
    "steps:\n"
    "  split:\n"
    "    module: split@1.2\n"
    "    inputs:\n"
    "      text: ${{ inputs.text }}\n"
    "  count:\n"
    "    module: count\n"
    "    needs: [split]\n"
    "    inputs:\n"
    "      text: \"${{ steps.split.outputs.first }}\"\n"
    "  merge:\n"
    "    module: merge@^1\n"
    "    needs: [count]\n"
    "    inputs:\n"
    "      counts: ${{ steps.count.outputs.words }}\n"
    "      label: \"from ${{ steps.split.outputs.first }}\"\n"
    "    when: steps.count.outputs.count > 0 && inputs.text != ''\n"
    "  trade:\n"
    "    module: trader@0.3.0\n"
    "    needs: [merge]\n"
    "    config: {symbol: BTC, amount: 2, levels: [1, 2], max_orders: 3}\n"
    "    credentials:\n"
    "      exchange: {credentialId: cred-1, type: exchange_api}\n"
    "    inputs:\n"
    "      signal: ${{ steps.split.outputs.chunks != null }}\n";

static void test_ok_yaml(void **state)
{
    (void)state;
    rz_flow *f;
    rz_diags *d;
    int rc = validate(ok_yaml, RZ_FORMAT_YAML, "ok.yaml", g_reg, &f, &d);
    if (rc != RZ_OK)
        dump(d);
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(rz_diags_count(d), 0);
    /* Modules resolved with the highest matching version. */
    assert_string_equal(rz_module_version(f->steps[0].module), "1.2.5");
    assert_string_equal(rz_module_id(f->steps[1].module), "count");
    assert_string_equal(rz_module_version(f->steps[2].module), "1.0.0");
    assert_string_equal(rz_module_version(f->steps[3].module), "0.3.0");
    /* Defaults from the config schema are applied. */
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(f->steps[0].config, "chunk_size");
    assert_true(cJSON_IsNumber(cs) && cs->valueint == 100);
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(f->steps[3].config, "mode");
    assert_true(cJSON_IsString(mode) && strcmp(mode->valuestring, "paper") == 0);
    /* Validating twice is harmless. */
    assert_int_equal(rz_flow_validate(f, g_reg, d), RZ_OK);
    assert_int_equal(rz_diags_count(d), 0);
    rz_diags_free(d);
    rz_flow_free(f);
}

static const char *const ok_json =
    "{\n"
    "  \"id\": \"f1\", \"name\": \"wc\", \"version\": \"1.0.0\",\n"
    "  \"nodes\": [\n"
    "    {\"id\": \"a\", \"moduleId\": \"split\", \"moduleVersion\": \"~1.2.0\",\n"
    "     \"config\": {\"chunk_size\": 5}, \"inputs\": {\"text\": \"hello\"}},\n"
    "    {\"id\": \"b\", \"moduleId\": \"count\"},\n"
    "    {\"id\": \"c\", \"moduleId\": \"merge\"},\n"
    "    {\"id\": \"d\", \"moduleId\": \"merge\"}\n"
    "  ],\n"
    "  \"connections\": [\n"
    "    {\"id\": \"c1\", \"source\": {\"nodeId\": \"a\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"b\", \"port\": \"text\"}},\n"
    "    {\"id\": \"c2\", \"source\": {\"nodeId\": \"b\", \"port\": \"words\"}, \"target\": {\"nodeId\": \"c\", \"port\": \"counts\"}},\n"
    "    {\"id\": \"c3\", \"source\": {\"nodeId\": \"b\", \"port\": \"count\"}, \"target\": {\"nodeId\": \"c\", \"port\": \"weight\"}},\n"
    "    {\"id\": \"c4\", \"source\": {\"nodeId\": \"c\", \"port\": \"total\"}, \"target\": {\"nodeId\": \"d\", \"port\": \"counts\"}}\n"
    "  ]\n"
    "}\n";

static void test_ok_json(void **state)
{
    (void)state;
    rz_flow *f;
    rz_diags *d;
    int rc = validate(ok_json, RZ_FORMAT_JSON, "ok.json", g_reg, &f, &d);
    if (rc != RZ_OK)
        dump(d);
    assert_int_equal(rc, RZ_OK);
    assert_string_equal(rz_module_version(f->steps[0].module), "1.2.5");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(f->steps[0].config, "chunk_size");
    assert_true(cJSON_IsNumber(cs) && cs->valueint == 5);   /* not overwritten */
    rz_diags_free(d);
    rz_flow_free(f);
}

/* ---- Every problem of a YAML flow in one pass ---- */

static const char *const bad_yaml =
    "flux: 1\n"                                               /* 1 */
    "name: problems\n"
    "inputs:\n"
    "  text:\n"
    "    type: string\n"                                      /* 5 */
    "steps:\n"
    "  split:\n"
    "    module: split@^1.2\n"
    "    inputs:\n"
    "      text: ${{ inputs.txt }}\n"                         /* 10 */
    "  count:\n"
    "    module: count\n"
    "    needs: [split, ghost]\n"
    "    inputs:\n"
    "      text: ${{ steps.split.outputs.frist }}\n"          /* 15 */
    "      extra: 1\n"
    "  merge:\n"
    "    module: merge@9\n"
    "    needs: [count]\n"
    "  lonely:\n"                                             /* 20 */
    "    module: count\n"
    "    inputs:\n"
    "      text: \"${{ steps.count.outputs.count }}\"\n"
    "  bad:\n"
    "    module: count\n"                                     /* 25 */
    "    needs: [split]\n"
    "    inputs:\n"
    "      text: ${{ steps.split.outputs.first == }}\n"
    "    when: steps.split.outputs.first !=\n"
    "  trade:\n"                                              /* 30 */
    "    module: trader\n"
    "    config:\n"
    "      amount: \"ten\"\n"
    "      mode: yolo\n"
    "  nomod:\n"                                              /* 35 */
    "    module: nosuchmod\n"
    "  typed:\n"
    "    module: count\n"
    "    inputs: {text: 42}\n";

static void test_yaml_problems(void **state)
{
    (void)state;
    rz_diags *d;
    const char *F = "bad.yaml";
    assert_int_equal(validate(bad_yaml, RZ_FORMAT_YAML, F, g_reg, NULL, &d),
                     RZ_EINVALID);
    expect(d, F, 10, 17, RZ_EUNKNOWN, "unknown flow input 'txt'");
    expect(d, F, 13, 20, RZ_EUNKNOWN, "step 'count' needs unknown step 'ghost'");
    expect(d, F, 15, 17, RZ_EUNKNOWN, "step 'split' (module split@1.10.1) has no "
           "output 'frist'; did you mean 'first'?");
    expect(d, F, 16, 14, RZ_EUNKNOWN, "module 'count' has no input 'extra'");
    expect(d, F, 18, 13, RZ_EMODULE, "no version of module 'merge' matches '9' "
           "(available: 1.0.0)");
    expect(d, F, 23, 18, RZ_EUPSTREAM, "step 'lonely' uses outputs of 'count', "
           "which is not upstream of it (add 'count' to its needs)");
    expect(d, F, 28, 46, RZ_EEXPR, "malformed expression: expected a value");
    expect(d, F, 29, 39, RZ_EEXPR, "malformed expression: expected a value");
    expect(d, F, 33, 15, RZ_ECONFIG, "config 'amount' of step 'trade' must be "
           "number, not string");
    expect(d, F, 34, 13, RZ_ECONFIG, "config 'mode' of step 'trade' must be one "
           "of [\"paper\",\"live\"]");
    expect(d, F, 32, 5, RZ_ECONFIG, "step 'trade' (module trader) needs config "
           "'symbol'");
    expect(d, F, 30, 3, RZ_ECREDENTIAL, "step 'trade' (module trader) needs "
           "credential 'exchange' of type 'exchange_api'");
    expect(d, F, 36, 13, RZ_EMODULE, "unknown module 'nosuchmod'");
    expect(d, F, 39, 20, RZ_ETYPE, "input 'text' of 'typed' is string but the "
           "value given is integer");
    assert_int_equal(rz_diags_count(d), 14);
    /* The first problem is also the thread's last error. */
    assert_int_equal(rz_error_last()->code, rz_diags_get(d, 0)->code);
    assert_string_equal(rz_error_last()->message, rz_diags_get(d, 0)->message);
    rz_diags_free(d);
}

/* ---- Every problem of a builder flow in one pass ---- */

static const char *const bad_json =
    "{\n"
    "  \"id\": \"f1\", \"name\": \"problems\", \"version\": \"1.0.0\",\n"
    "  \"nodes\": [\n"
    "    {\"id\": \"a\", \"moduleId\": \"split\", \"moduleVersion\": \"1\"},\n"
    "    {\"id\": \"b\", \"moduleId\": \"count\"},\n"                          /* 5 */
    "    {\"id\": \"c\", \"moduleId\": \"split\", \"moduleVersion\": \"~1.2.0\"},\n"
    "    {\"id\": \"a\", \"moduleId\": \"merge\"},\n"
    "    {\"id\": \"d\", \"moduleId\": \"split\", \"moduleVersion\": \"1.x\"},\n"
    "    {\"id\": \"e\", \"moduleId\": \"spilt\"}\n"
    "  ],\n"                                                                  /* 10 */
    "  \"connections\": [\n"
    "    {\"id\": \"c1\", \"source\": {\"nodeId\": \"a\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"b\", \"port\": \"text\"}},\n"
    "    {\"id\": \"c2\", \"source\": {\"nodeId\": \"b\", \"port\": \"count\"}, \"target\": {\"nodeId\": \"c\", \"port\": \"text\"}},\n"
    "    {\"id\": \"c3\", \"source\": {\"nodeId\": \"b\", \"port\": \"cuont\"}, \"target\": {\"nodeId\": \"zz\", \"port\": \"text\"}},\n"
    "    {\"id\": \"c4\", \"source\": {\"nodeId\": \"c\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"a\", \"port\": \"txet\"}}\n"
    "  ]\n"
    "}\n";

static void test_json_problems(void **state)
{
    (void)state;
    rz_diags *d;
    const char *F = "bad.json";
    assert_int_equal(validate(bad_json, RZ_FORMAT_JSON, F, g_reg, NULL, &d),
                     RZ_EINVALID);
    expect(d, F, 7, 12, RZ_EDUPLICATE, "duplicate step id 'a' (first defined at line 4)");
    expect(d, F, 8, 55, RZ_EMODULE, "malformed version '1.x' of module 'split' "
           "(expected 1.2.3, 1.2, 1, ^1.2 or ~1.2.3)");
    expect(d, F, 9, 29, RZ_EMODULE, "unknown module 'spilt'; did you mean 'split'?");
    expect(d, F, 13, 5, RZ_ETYPE, "output 'count' of 'b' is integer but input "
           "'text' of 'c' is string");
    expect(d, F, 14, 52, RZ_EUNKNOWN, "step 'b' (module count@1.0.0) has no output "
           "'cuont'; did you mean 'count'?");
    expect(d, F, 14, 83, RZ_EUNKNOWN, "connection to unknown node 'zz'");
    expect(d, F, 15, 96, RZ_EUNKNOWN, "step 'a' (module split@1.10.1) has no input "
           "'txet'; did you mean 'text'?");
    expect(d, F, 4, 5, RZ_ECYCLE, "cycle: a -> b -> c -> a");
    expect(d, F, 4, 5, RZ_EUNCONNECTED, "required input 'text' of step 'a' (module "
           "split@1.10.1) is neither connected nor given");
    expect(d, F, 7, 5, RZ_EUNCONNECTED, "required input 'counts' of step 'a' (module "
           "merge@1.0.0) is neither connected nor given");
    assert_int_equal(rz_diags_count(d), 10);
    rz_diags_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_yaml),
        cmocka_unit_test(test_ok_json),
        cmocka_unit_test(test_yaml_problems),
        cmocka_unit_test(test_json_problems),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
