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
    /* A whole-value reference has its output port's type. */
    expect(d, F, 23, 13, RZ_ETYPE, "output 'count' of 'count' is integer but "
           "input 'text' of 'lonely' is string");
    assert_int_equal(rz_diags_count(d), 15);
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

/* ---- Structure only (no registry) ---- */

static void test_no_registry(void **state)
{
    (void)state;
    rz_flow *f;
    rz_diags *d;
    const char *F = "bad.json";
    assert_int_equal(validate(bad_json, RZ_FORMAT_JSON, F, NULL, &f, &d), RZ_EINVALID);
    expect(d, F, 7, 12, RZ_EDUPLICATE, "duplicate step id 'a' (first defined at line 4)");
    expect(d, F, 14, 83, RZ_EUNKNOWN, "connection to unknown node 'zz'");
    expect(d, F, 4, 5, RZ_ECYCLE, "cycle: a -> b -> c -> a");
    assert_int_equal(rz_diags_count(d), 3);
    for (size_t i = 0; i < f->n_steps; i++)
        assert_null(f->steps[i].module);
    rz_diags_free(d);
    rz_flow_free(f);
    assert_int_equal(rz_flow_validate(NULL, NULL, NULL), RZ_EINVAL);
}

/* ---- Cycles ---- */

static void test_cycles(void **state)
{
    (void)state;
    const char *src =
        "flux: 1\n"
        "steps:\n"
        "  a: {module: m, needs: [c]}\n"
        "  b: {module: m, needs: [a]}\n"
        "  c: {module: m, needs: [b]}\n"
        "  d: {module: m, needs: [d]}\n"
        "  e: {module: m, needs: [a, x]}\n";
    rz_diags *d;
    const char *F = "cycle.yaml";
    assert_int_equal(validate(src, RZ_FORMAT_YAML, F, NULL, NULL, &d), RZ_EINVALID);
    expect(d, F, 3, 3, RZ_ECYCLE, "cycle: a -> b -> c -> a");
    expect(d, F, 6, 3, RZ_ECYCLE, "cycle: d -> d");
    expect(d, F, 7, 29, RZ_EUNKNOWN, "step 'e' needs unknown step 'x'");
    assert_int_equal(rz_diags_count(d), 3);
    rz_diags_free(d);

    /* A ring of 100 is named with its middle elided. */
    rz__buf b = {0};
    rz__buf_puts(&b, "flux: 1\nsteps:\n  s0: {module: m, needs: [s99]}\n");
    for (int i = 1; i < 100; i++)
        rz__buf_printf(&b, "  s%d: {module: m, needs: [s%d]}\n", i, i - 1);
    assert_int_equal(validate(b.data, RZ_FORMAT_YAML, "ring.yaml", NULL, NULL, &d),
                     RZ_EINVALID);
    assert_int_equal(rz_diags_count(d), 1);
    assert_string_equal(rz_diags_get(d, 0)->message,
        "cycle: s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> s8 -> s9 -> s10"
        " -> s11 -> s12 -> s13 -> s14 -> s15 -> ... (68 more) -> s84 -> s85 -> s86"
        " -> s87 -> s88 -> s89 -> s90 -> s91 -> s92 -> s93 -> s94 -> s95 -> s96"
        " -> s97 -> s98 -> s99 -> s0");
    rz_diags_free(d);
    rz__buf_free(&b);
}

/* ---- References and upstream ---- */

static void test_upstream(void **state)
{
    (void)state;
    const char *src =
        "flux: 1\n"
        "steps:\n"
        "  a: {module: m}\n"
        "  b: {module: m, needs: [a]}\n"
        "  c: {module: m, needs: [b]}\n"                                   /* 5 */
        "  d: {module: m, needs: [c], inputs: {x: '${{ steps.a.outputs.o }}'}}\n"
        "  e: {module: m, needs: [a], inputs: {x: '${{ steps.d.outputs.o }}'}}\n"
        "  f: {module: m, inputs: {x: '${{ steps.f.outputs.o }}'}}\n"
        "  g: {module: m, needs: [e], when: steps.c.outputs.o == 1}\n"
        "  h:\n"                                                           /* 10 */
        "    module: m\n"
        "    needs: [g]\n"
        "    config:\n"
        "      k: '${{ steps.a.outputs.o }} and ${{ steps.nope.outputs.o }}'\n"
        "      l: [1, {m: \"${{ steps.b.outputs.o }}\"}]\n"               /* 15 */
        "      n: |\n"
        "        ${{ steps.zzz.outputs.o }}\n";
    rz_diags *d;
    const char *F = "up.yaml";
    assert_int_equal(validate(src, RZ_FORMAT_YAML, F, NULL, NULL, &d), RZ_EINVALID);
    expect(d, F, 7, 47, RZ_EUPSTREAM, "step 'e' uses outputs of 'd', which is not "
           "upstream of it (add 'd' to its needs)");
    expect(d, F, 8, 35, RZ_EUPSTREAM, "step 'f' refers to its own outputs");
    expect(d, F, 9, 36, RZ_EUPSTREAM, "step 'g' uses outputs of 'c', which is not "
           "upstream of it (add 'c' to its needs)");
    expect(d, F, 14, 44, RZ_EUNKNOWN, "reference to unknown step 'nope'");
    /* Nested values have their own pointer and column. */
    expect(d, F, 15, 23, RZ_EUPSTREAM, "step 'h' uses outputs of 'b', which is not "
           "upstream of it (add 'b' to its needs)");
    /* A block scalar keeps the value's own location. */
    expect(d, F, 16, 10, RZ_EUNKNOWN, "reference to unknown step 'zzz'");
    assert_int_equal(rz_diags_count(d), 6);
    rz_diags_free(d);

    /* A 300-step chain: far references need the bitset pass. */
    rz__buf b = {0};
    rz__buf_puts(&b, "flux: 1\nsteps:\n  s0: {module: m}\n");
    for (int i = 1; i < 300; i++) {
        rz__buf_printf(&b, "  s%d: {module: m, needs: [s%d]", i, i - 1);
        if (i % 7 == 0)
            rz__buf_printf(&b, ", inputs: {x: '${{ steps.s%d.outputs.o }}'}", i / 3);
        if (i == 150)
            rz__buf_puts(&b, ", when: steps.s299.outputs.o");
        rz__buf_puts(&b, "}\n");
    }
    /* A side branch off s10 that is not upstream of anything after it. */
    rz__buf_puts(&b, "  side: {module: m, needs: [s10]}\n"
                     "  tail: {module: m, needs: [s299], inputs: {x: '${{ steps.side.outputs.o }}'}}\n");
    assert_int_equal(validate(b.data, RZ_FORMAT_YAML, "chain.yaml", NULL, NULL, &d),
                     RZ_EINVALID);
    expect(d, "chain.yaml", 153, 42, RZ_EUPSTREAM, "step 's150' uses outputs of "
           "'s299', which is not upstream of it (add 's299' to its needs)");
    expect(d, "chain.yaml", 304, 53, RZ_EUPSTREAM, "step 'tail' uses outputs of "
           "'side', which is not upstream of it (add 'side' to its needs)");
    assert_int_equal(rz_diags_count(d), 2);
    rz_diags_free(d);
    rz__buf_free(&b);
}

/* Expression columns in JSON: shifted only when the source is verbatim. */
static void test_json_expr_columns(void **state)
{
    (void)state;
    const char *src =
        "{\"nodes\": [\n"
        "  {\"id\": \"a\", \"moduleId\": \"count\", \"inputs\": {\"text\": \"${{ steps.zz.outputs.x }}\"}},\n"
        "  {\"id\": \"b\", \"moduleId\": \"count\", \"inputs\": {\"text\": \"\\u0041 ${{ steps.zz.outputs.x }}\"}},\n"
        "  {\"id\": \"c\", \"moduleId\": \"count\", \"inputs\": {\"text\": \"x ${{ 1 ^ 2 }}\"}}\n"
        "]}\n";
    rz_diags *d;
    const char *F = "cols.json";
    assert_int_equal(validate(src, RZ_FORMAT_JSON, F, g_reg, NULL, &d), RZ_EINVALID);
    expect(d, F, 2, 60, RZ_EUNKNOWN, "reference to unknown step 'zz'");
    /* An escape before the reference: the string's own column. */
    expect(d, F, 3, 55, RZ_EUNKNOWN, "reference to unknown step 'zz'");
    expect(d, F, 4, 64, RZ_EEXPR, "malformed expression: expected '}}', found '^'");
    assert_int_equal(rz_diags_count(d), 3);
    assert_string_equal(rz_diags_get(d, 2)->pointer, "/nodes/2/inputs/text");
    rz_diags_free(d);
}

/* Expressions: run fields validate, and a bad expression is located at its
 * column inside ${{ }}, in both formats. */
static void test_expr_diagnostics(void **state)
{
    (void)state;
    const char *src =
        "flux: 1\n"
        "steps:\n"
        "  split:\n"
        "    module: split@1.2\n"
        "    inputs:\n"
        "      text: hello\n"
        "  count:\n"
        "    module: count\n"
        "    needs: [split]\n"
        "    when: \"${{ steps.split.status == 'failed' && steps.split.attempts > 1 }}\"\n"
        "    inputs:\n"
        "      text: \"${{ format('{0}: {1}', steps.split.status, steps.split.error) }}\"\n"
        "  bad:\n"
        "    module: count\n"
        "    needs: [split]\n"
        "    when: \"${{ steps.split.status == 'failed' && lenght(steps.split.error) }}\"\n"
        "    inputs:\n"
        "      text: \"${{ steps.nope.status + steps.count.duration_ms }}\"\n"
        "  worse:\n"
        "    module: count\n"
        "    inputs:\n"
        "      text: \"${{ inputs.x ? 'a' 'b' }}\"\n";
    rz_diags *d;
    const char *F = "expr.yaml";
    assert_int_equal(validate(src, RZ_FORMAT_YAML, F, g_reg, NULL, &d), RZ_EINVALID);
    expect(d, F, 16, 50, RZ_EEXPR, "malformed expression: unknown function 'lenght' "
           "(known: length, contains, startsWith, endsWith, format, join, toJSON, "
           "fromJSON, default)");
    expect(d, F, 18, 18, RZ_EUNKNOWN, "reference to unknown step 'nope'");
    expect(d, F, 18, 38, RZ_EUPSTREAM, "step 'bad' uses outputs of 'count', which is "
           "not upstream of it (add 'count' to its needs)");
    expect(d, F, 22, 33, RZ_EEXPR, "malformed expression: expected ':' (c ? a : b)");
    assert_int_equal(rz_diags_count(d), 4);
    rz_diags_free(d);

    const char *json =
        "{\"nodes\": [\n"
        "  {\"id\": \"a\", \"moduleId\": \"split\", \"inputs\": {\"text\": \"x\"}},\n"
        "  {\"id\": \"b\", \"moduleId\": \"count\", \"needs\": [\"a\"], \"when\": \"steps.a.status == 'failed'\", \"inputs\": {\"text\": \"${{ join(steps.a.outputs.chunks, ', ' }}\"}}\n"
        "]}\n";
    /* Constant expressions are evaluated now: their errors are located too. */
    const char *konst =
        "flux: 1\n"
        "steps:\n"
        "  a:\n"
        "    module: count\n"
        "    when: \"1 + 1 == 2 && length(5) > 0\"\n"
        "    inputs:\n"
        "      text: \"n=${{ 10 % 3 }} ${{ format('{0}{1}', 'x') }}\"\n";
    assert_int_equal(validate(konst, RZ_FORMAT_YAML, "k.yaml", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "k.yaml", 5, 26, RZ_EEXPR, "expression cannot be evaluated: length() takes "
           "a string, an array or an object, not a number");
    expect(d, "k.yaml", 7, 34, RZ_EEXPR, "expression cannot be evaluated: format(): {1} but "
           "1 argument after the format string");
    assert_int_equal(rz_diags_count(d), 2);
    rz_diags_free(d);

    F = "expr.json";
    assert_int_equal(validate(json, RZ_FORMAT_JSON, F, g_reg, NULL, &d), RZ_EINVALID);
    expect(d, F, 3, 148, RZ_EEXPR, "malformed expression: expected ',' or ')' in the "
           "arguments of join()");
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
}

/* ---- Credentials ---- */

static void test_credentials(void **state)
{
    (void)state;
    const char *src =
        "flux: 1\n"
        "steps:\n"
        "  t:\n"
        "    module: trader\n"
        "    config: {symbol: ETH, max_orders: 2.5, dry_run: 1}\n"   /* 5 */
        "    credentials:\n"
        "      exchange: {credentialId: c1, type: llm_api}\n"
        "      notify: {credentialId: c2, type: bot_token}\n"
        "      foo: {credentialId: c3, type: x}\n";
    rz_diags *d;
    const char *F = "cred.yaml";
    assert_int_equal(validate(src, RZ_FORMAT_YAML, F, g_reg, NULL, &d), RZ_EINVALID);
    expect(d, F, 7, 7, RZ_ECREDENTIAL, "credential 'exchange' of step 't' has type "
           "'llm_api' but module trader wants 'exchange_api'");
    expect(d, F, 9, 7, RZ_ECREDENTIAL, "module trader takes no credential 'foo'");
    expect(d, F, 5, 39, RZ_ECONFIG, "config 'max_orders' of step 't' must be "
           "integer, not number");
    expect(d, F, 5, 53, RZ_ECONFIG, "config 'dry_run' of step 't' must be "
           "boolean, not integer");
    assert_int_equal(rz_diags_count(d), 4);
    rz_diags_free(d);
}

/* ---- Golden files: tests/data/diag/<name>.{yaml,json} + <name>.expected ---- */

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static void check_golden(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, DATA "/diag/%s", name);
    char *src;
    size_t len;
    assert_int_equal(rz__read_file(path, 1 << 20, &src, &len), RZ_OK);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f;
    if (rz_flow_parse(&f, src, len, RZ_FORMAT_AUTO, name, d) == RZ_OK) {
        (void)!rz_flow_validate(f, g_reg, d);   /* the problems are in d */
        rz_flow_free(f);
    }
    rz_diags_sort(d);
    char *text;
    assert_int_equal(rz_diags_to_text(d, &text), RZ_OK);
    char *dot = strrchr(path, '.');
    strcpy(dot, ".expected");
    if (getenv("RZ_REGEN_GOLDEN")) {
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(text, fp);
        fclose(fp);
    }
    char *want;
    assert_int_equal(rz__read_file(path, 1 << 20, &want, &len), RZ_OK);
    if (strcmp(text, want) != 0)
        fprintf(stderr, "golden %s differs; got:\n%s", name, text);
    assert_string_equal(text, want);
    rz_free(text);
    free(want);
    free(src);
    rz_diags_free(d);
}

static void test_golden(void **state)
{
    (void)state;
    DIR *dir = opendir(DATA "/diag");
    assert_non_null(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (ends_with(e->d_name, ".yaml") || ends_with(e->d_name, ".json")) {
            check_golden(e->d_name);
            n++;
        }
    closedir(dir);
    assert_true(n >= 4);
}

/* ---- One value per input port; connection ids unique ---- */

static const char *const feeds_json =
    "{\"nodes\": [\n"
    "  {\"id\": \"a\", \"moduleId\": \"split\"},\n"
    "  {\"id\": \"b\", \"moduleId\": \"split\"},\n"
    "  {\"id\": \"c\", \"moduleId\": \"count\", \"inputs\": {\"text\": \"hi\"}}\n"
    " ],\n"                                                                     /* 5 */
    " \"connections\": [\n"
    "  {\"id\": \"c1\", \"source\": {\"nodeId\": \"a\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"c\", \"port\": \"text\"}},\n"
    "  {\"id\": \"c2\", \"source\": {\"nodeId\": \"b\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"c\", \"port\": \"text\"}},\n"
    "  {\"id\": \"c1\", \"source\": {\"nodeId\": \"a\", \"port\": \"first\"}, \"target\": {\"nodeId\": \"b\", \"port\": \"text\"}}\n"
    " ]}\n";

static const char *const feeds_yaml =
    "flux: 1\n"
    "steps:\n"
    "  a: {module: split, inputs: {text: x}}\n"
    "  b: {module: split, inputs: {text: y}}\n"
    "  c:\n"                                                                    /* 5 */
    "    module: count\n"
    "    needs: [a, b]\n"
    "    inputs:\n"
    "      text: ${{ steps.a.outputs.first }}\n"
    "connections:\n"                                                            /* 10 */
    "  - source: {nodeId: b, port: first}\n"
    "    target: {nodeId: c, port: text}\n";

static void test_one_value_per_port(void **state)
{
    (void)state;
    rz_diags *d;
    const char *F = "feeds.json";
    /* Without a registry too: ports are compared by name. */
    for (int with_reg = 0; with_reg < 2; with_reg++) {
        assert_int_equal(validate(feeds_json, RZ_FORMAT_JSON, F, with_reg ? g_reg : NULL,
                                  NULL, &d), RZ_EINVALID);
        expect(d, F, 8, 94, RZ_EDUPLICATE, "input 'text' of step 'c' gets two values: "
               "connection 'c1' (from a.first) and connection 'c2' (from b.first)");
        expect(d, F, 4, 55, RZ_EDUPLICATE, "input 'text' of step 'c' gets two values: "
               "its 'inputs' value and connection 'c1' (from a.first)");
        expect(d, F, 9, 10, RZ_EDUPLICATE, "duplicate connection id 'c1' (first defined "
               "at line 7)");
        assert_int_equal(rz_diags_count(d), with_reg ? 4 : 3);
        rz_diags_free(d);
    }
    F = "feeds.yaml";
    assert_int_equal(validate(feeds_yaml, RZ_FORMAT_YAML, F, g_reg, NULL, &d),
                     RZ_EINVALID);
    expect(d, F, 9, 13, RZ_EDUPLICATE, "input 'text' of step 'c' gets two values: "
           "its 'inputs' value and connection #0 (from b.first)");
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
}

/* ---- Size: 100k steps, ~400k connections, builder JSON ---- */

/* N merge steps, four edges into each past the first 8: one value per
 * input port (three ports, from random earlier steps) and a `needs`.
 * Returns the number of edges. */
static size_t dense_graph(rz__buf *out, int n)
{
    rz__buf b = *out;
    unsigned seed = 12345;
    rz__buf_puts(&b, "{\"id\":\"big\",\"nodes\":[");
    size_t edges = 0, conns = 0;
    for (int i = 0; i < n; i++) {
        int span = i < 1000 ? i : 1000;
        seed = seed * 1103515245u + 12345u;
        rz__buf_printf(&b, "%s{\"id\":\"n%d\",\"moduleId\":\"merge\"", i ? "," : "", i);
        if (i < 8) {
            rz__buf_puts(&b, ",\"inputs\":{\"counts\":1}");
        } else {
            rz__buf_printf(&b, ",\"needs\":[\"n%d\"]",
                           i - 1 - (int)((seed >> 8) % (unsigned)span));
            edges++;
        }
        rz__buf_puts(&b, "}");
    }
    rz__buf_puts(&b, "],\"connections\":[");
    static const char *const ports[3][2] = {
        {"total", "counts"}, {"total", "weight"}, {"summary", "label"}};
    for (int i = 8; i < n; i++)
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            int span = i < 1000 ? i : 1000;
            int j = i - 1 - (int)((seed >> 8) % (unsigned)span);
            rz__buf_printf(&b, "%s{\"source\":{\"nodeId\":\"n%d\",\"port\":\"%s\"},"
                           "\"target\":{\"nodeId\":\"n%d\",\"port\":\"%s\"}}",
                           conns++ ? "," : "", j, ports[k][0], i, ports[k][1]);
            edges++;
        }
    rz__buf_puts(&b, "]}");
    *out = b;
    return edges;
}

static void test_large(void **state)
{
    (void)state;
    enum { N = 100000 };
    rz__buf b = {0};
    size_t edges = dense_graph(&b, N);
    assert_false(b.failed);
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, b.data, b.len, RZ_FORMAT_JSON, "big.json", d),
                     RZ_OK);
    assert_int_equal(rz__flow_link(f), RZ_OK);
    /* Validation is idempotent: a second pass finds the same nothing.
     * (Its speed is measured in bench/, not asserted here.) */
    for (int k = 0; k < 2; k++) {
        int rc = rz_flow_validate(f, g_reg, d);
        if (rc != RZ_OK)
            dump(d);
        assert_int_equal(rc, RZ_OK);
    }
    assert_int_equal(rz_diags_error_count(d), 0);
    assert_true(edges > 390000);
    rz_flow_free(f);
    rz_diags_free(d);
    rz__buf_free(&b);

    /* One ring through 100k steps: iterative Tarjan, one elided cycle. */
    rz__buf_puts(&b, "{\"nodes\":[");
    for (int i = 0; i < N; i++)
        rz__buf_printf(&b, "%s{\"id\":\"n%d\",\"moduleId\":\"m\"}", i ? "," : "", i);
    rz__buf_puts(&b, "],\"connections\":[");
    for (int i = 0; i < N; i++)
        rz__buf_printf(&b, "%s{\"source\":{\"nodeId\":\"n%d\",\"port\":\"o\"},"
                       "\"target\":{\"nodeId\":\"n%d\",\"port\":\"i\"}}",
                       i ? "," : "", i, (i + 1) % N);
    rz__buf_puts(&b, "]}");
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, b.data, b.len, RZ_FORMAT_JSON, "ring.json", d),
                     RZ_OK);
    assert_int_equal(rz_flow_validate(f, NULL, d), RZ_EINVALID);
    assert_int_equal(rz_diags_count(d), 1);
    assert_non_null(strstr(rz_diags_get(d, 0)->message, "cycle: n0 -> n1 -> "));
    assert_non_null(strstr(rz_diags_get(d, 0)->message, "(99968 more) -> n99984"));
    assert_true(ends_with(rz_diags_get(d, 0)->message, "-> n99999 -> n0"));
    rz_flow_free(f);
    rz_diags_free(d);
    rz__buf_free(&b);
}

/* ---- on_exit and flow outputs ---- */

static void test_exit_and_outputs(void **state)
{
    (void)state;
    rz_diags *d;
    const char *ok = "flux: 1\nname: x\nsteps:\n"
                     "  c: {module: count, inputs: {text: hi}}\n"
                     "on_exit:\n  module: count\n"
                     "  inputs: {text: \"${{ flow.status }} ${{ steps.c.outputs.count }}\"}\n"
                     "outputs:\n  n: \"${{ steps.c.outputs.count }}\"\n";
    int rc = validate(ok, RZ_FORMAT_YAML, "f.yaml", g_reg, NULL, &d);
    if (rc != RZ_OK)
        dump(d);
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);

    const char *bad = "flux: 1\nname: x\nsteps:\n"
                      "  c: {module: count, inputs: {text: \"${{ flow.status }}\"}}\n"
                      "  d: {module: count, needs: [on_exit], inputs: {text: a}}\n"
                      "on_exit:\n  module: count\n  inputs: {text: a}\n"
                      "outputs:\n  n: \"${{ steps.c.outputs.cuont }}\"\n"
                      "  m: \"${{ steps.ghost.outputs.x }}\"\n"
                      "  s: \"${{ flow.status }}\"\n";
    assert_int_equal(validate(bad, RZ_FORMAT_YAML, "f.yaml", g_reg, NULL, &d),
                     RZ_EINVALID);
    expect(d, "f.yaml", 4, 42, RZ_EUPSTREAM, "flow.status is known only in the "
           "on_exit step, once every other step has settled");
    expect(d, "f.yaml", 5, 30, RZ_EUPSTREAM, "step 'd' needs the on_exit step, which "
           "runs after every other step");
    expect(d, "f.yaml", 10, 11, RZ_EUNKNOWN, "step 'c' (module count@1.0.0) has no "
           "output 'cuont'; did you mean 'count'?");
    expect(d, "f.yaml", 11, 11, RZ_EUNKNOWN, "reference to unknown step 'ghost'");
    expect(d, "f.yaml", 12, 11, RZ_EUPSTREAM, "flow.status is known only in the "
           "on_exit step, once every other step has settled");
    rz_diags_free(d);
}

static void test_for_each(void **state)
{
    (void)state;
    rz_diags *d;
    const char *y = "flux: 1\nname: x\nsteps:\n"
                    "  c: {module: count, inputs: {text: \"${{ each.value }}\"}}\n"
                    "  d: {module: count, for_each: [a], inputs: {text: \"${{ each.value }}\"}}\n";
    assert_int_equal(validate(y, RZ_FORMAT_YAML, "f.yaml", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "f.yaml", 4, 42, RZ_EUNKNOWN, "each.value is known only in the inputs "
           "and config of a step with 'for_each'");
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
    /* The documented spelling, item and index, is said as written. */
    const char *yi = "flux: 1\nname: x\nsteps:\n"
                     "  c: {module: count, inputs: {text: \"${{ format('{0}', item.k, index) }}\"}}\n"
                     "  d: {module: count, for_each: [a], inputs: {text: \"${{ item }} ${{ index }}\"}}\n";
    assert_int_equal(validate(yi, RZ_FORMAT_YAML, "f.yaml", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "f.yaml", 4, 56, RZ_EUNKNOWN, "item is known only in the inputs "
           "and config of a step with 'for_each'");
    expect(d, "f.yaml", 4, 64, RZ_EUNKNOWN, "index is known only in the inputs "
           "and config of a step with 'for_each'");
    assert_int_equal(rz_diags_count(d), 2);
    rz_diags_free(d);
    const char *j = "{\"id\":\"f\",\"name\":\"x\",\"nodes\":[{\"id\":\"a\",\"moduleId\":"
                    "\"count\",\"config\":{},\"inputs\":{\"text\":\"${{ each.index }}\"}},"
                    "{\"id\":\"b\",\"moduleId\":\"count\",\"for_each\":[1,2],\"max_parallel\":1,"
                    "\"config\":{},\"inputs\":{\"text\":\"${{ each.index }}\"}}],"
                    "\"connections\":[]}";
    assert_int_equal(validate(j, RZ_FORMAT_JSON, "f.json", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "f.json", 1, 94, RZ_EUNKNOWN, "each.index is known only in the inputs "
           "and config of a step with 'for_each'");
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
    /* A for_each step's outputs are lists downstream. */
    const char *lists = "flux: 1\nname: x\nsteps:\n"
        "  c: {module: count, for_each: [a, b], inputs: {text: \"${{ each.value }}\"}}\n"
        "  d: {module: count, needs: [c], inputs: {text: \"${{ steps.c.outputs.count }}\"}}\n";
    assert_int_equal(validate(lists, RZ_FORMAT_YAML, "l.yaml", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "l.yaml", 5, 49, RZ_ETYPE, "output 'count' of 'c' is array but input "
           "'text' of 'd' is string");
    rz_diags_free(d);
    /* Shapes the loader refuses, located. */
    const char *bad = "flux: 1\nname: x\nsteps:\n  c: {module: count, for_each: 3}\n"
                      "  d: {module: count, max_parallel: 2}\n"
                      "  e: {module: count, for_each: [1], max_parallel: 0}\n";
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f = NULL;
    assert_int_equal(rz_flow_parse(&f, bad, strlen(bad), RZ_FORMAT_YAML, "b.yaml", d),
                     RZ_EINVALID);
    assert_null(f);
    expect(d, "b.yaml", 4, 32, RZ_EINVALID, "'for_each' must be a list or a ${{ }} "
           "expression that gives one, not a number");
    expect(d, "b.yaml", 5, 36, RZ_EINVALID, "'max_parallel' bounds the elements of a "
           "for_each step; this step has no 'for_each'");
    expect(d, "b.yaml", 6, 51, RZ_EINVALID, "'max_parallel' is out of range: 0 is not "
           "between 1 and 10000");
    rz_diags_free(d);
}

/* Nested maps: a depth of 1 to 4, on a for_each step; not on a sub-flow. */
static void test_for_each_depth(void **state)
{
    (void)state;
    rz_diags *d;
    rz_flow *f = NULL;
    const char *deep = "flux: 1\nname: x\nsteps:\n"
                       "  c: {module: count, for_each: [[a]], for_each_depth: 5}\n"
                       "  d: {module: count, for_each_depth: 2}\n"
                       "  e: {module: count, for_each: [[1]], for_each_depth: two}\n"
                       "  g: {flow: x.yaml, for_each_depth: 2}\n";
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, deep, strlen(deep), RZ_FORMAT_YAML, "b.yaml", d),
                     RZ_EINVALID);
    expect(d, "b.yaml", 4, 55, RZ_EINVALID, "'for_each_depth' is out of range: 5 is not "
           "between 1 and 4");
    expect(d, "b.yaml", 5, 38, RZ_EINVALID, "'for_each_depth' says how deep a for_each "
           "step's lists nest; this step has no 'for_each'");
    expect(d, "b.yaml", 6, 55, RZ_EINVALID, "'for_each_depth' must be a positive integer, "
           "not a string");
    expect(d, "b.yaml", 7, 37, RZ_EINVALID, "a sub-flow step takes no 'for_each_depth' "
           "(the sub-flow's steps carry their own)");
    rz_diags_free(d);
    /* indices, as item and index, only where elements are. */
    const char *idx = "flux: 1\nname: x\nsteps:\n"
                      "  c: {module: count, inputs: {text: \"${{ indices[0] }}\"}}\n"
                      "  e: {module: count, for_each: [[1]], for_each_depth: 2,"
                      " inputs: {text: \"${{ each.indices[1] }} ${{ indices }}\"}}\n";
    assert_int_equal(validate(idx, RZ_FORMAT_YAML, "i.yaml", g_reg, NULL, &d), RZ_EINVALID);
    expect(d, "i.yaml", 4, 42, RZ_EUNKNOWN, "indices is known only in the inputs "
           "and config of a step with 'for_each'");
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_yaml),
        cmocka_unit_test(test_ok_json),
        cmocka_unit_test(test_yaml_problems),
        cmocka_unit_test(test_json_problems),
        cmocka_unit_test(test_no_registry),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_upstream),
        cmocka_unit_test(test_json_expr_columns),
        cmocka_unit_test(test_expr_diagnostics),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_one_value_per_port),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_exit_and_outputs),
        cmocka_unit_test(test_for_each),
        cmocka_unit_test(test_for_each_depth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
