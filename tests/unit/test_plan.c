/* Planner: stages, id order, critical path, cycles, scale, golden plans. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/model.h"
#include "module/module_impl.h"
#include "rhizos/plan.h"

#define PLANS RZ_SOURCE_ROOT "/tests/data/plans"

static rz_flow *parse(const char *src, rz_format fmt)
{
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, src, strlen(src), fmt, "t", d);
    if (rc != RZ_OK) {
        char *text = NULL;
        (void)!rz_diags_to_text(d, &text);   /* diagnostics of a failure */
        fprintf(stderr, "parse failed: %s\n", text ? text : "");
        rz_free(text);
    }
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);
    assert_int_equal(rz__flow_link(f), RZ_OK);
    return f;
}

static rz_flow *yaml(const char *src)
{
    return parse(src, RZ_FORMAT_YAML);
}

/* Plan and compare the JSON rendering with `want`. */
static void expect_plan(rz_flow *f, const char *want)
{
    rz_plan *p = NULL;
    assert_int_equal(rz_plan_build(&p, f, NULL), RZ_OK);
    char *json = NULL;
    assert_int_equal(rz_plan_to_json(p, &json), RZ_OK);
    assert_string_equal(json, want);
    rz_free(json);
    rz_plan_free(p);
}

static void test_diamond(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: diamond\nsteps:\n"
                      "  d: {module: noop, needs: [c, b]}\n"
                      "  c: {module: noop, needs: [a]}\n"
                      "  b: {module: noop, needs: [a]}\n"
                      "  a: {module: noop}\n");
    rz_plan *p = NULL;
    assert_int_equal(rz_plan_build(&p, f, NULL), RZ_OK);
    assert_int_equal(rz_plan_stage_count(p), 3);
    assert_int_equal(rz_plan_stage_size(p, 0), 1);
    assert_int_equal(rz_plan_stage_size(p, 1), 2);
    assert_int_equal(rz_plan_stage_size(p, 2), 1);
    assert_string_equal(rz_flow_step_id(f, rz_plan_stage_step(p, 0, 0)), "a");
    assert_string_equal(rz_flow_step_id(f, rz_plan_stage_step(p, 1, 0)), "b");
    assert_string_equal(rz_flow_step_id(f, rz_plan_stage_step(p, 1, 1)), "c");
    assert_string_equal(rz_flow_step_id(f, rz_plan_stage_step(p, 2, 0)), "d");
    /* Out of range asks are answered, not crashed on. */
    assert_int_equal(rz_plan_stage_size(p, 3), 0);
    assert_int_equal(rz_plan_stage_step(p, 1, 2), RZ_NPOS);
    assert_int_equal(rz_plan_stage_step(p, 9, 0), RZ_NPOS);
    size_t len = 0;
    const size_t *cp = rz_plan_critical_path(p, &len);
    assert_int_equal(len, 3);
    /* b and c tie at 2 s: the smaller id wins. */
    assert_string_equal(rz_flow_step_id(f, cp[0]), "a");
    assert_string_equal(rz_flow_step_id(f, cp[1]), "b");
    assert_string_equal(rz_flow_step_id(f, cp[2]), "d");
    assert_true(rz_plan_critical_seconds(p) == 3.0);
    rz_plan_free(p);
    expect_plan(f, "{\"stages\":[[\"a\"],[\"b\",\"c\"],[\"d\"]],"
                   "\"critical_path\":[\"a\",\"b\",\"d\"],"
                   "\"critical_seconds\":3,\"steps\":4}");
    /* The edges behind the plan: d waits for b and c (sorted by index). */
    size_t nd = 9;
    const size_t *deps = rz_flow_step_deps(f, rz_flow_step_find(f, "d"), &nd);
    assert_int_equal(nd, 2);
    assert_string_equal(rz_flow_step_id(f, deps[0]), "c");
    assert_string_equal(rz_flow_step_id(f, deps[1]), "b");
    (void)rz_flow_step_deps(f, rz_flow_step_find(f, "a"), &nd);
    assert_int_equal(nd, 0);
    assert_null(rz_flow_step_deps(f, 99, &nd));
    assert_int_equal(nd, 0);
    rz_flow_free(f);
}

/* Stages are ordered by strcmp of the id, not by document order, and a step
 * lands one stage after its deepest dependency, not its first. */
static void test_sort_and_depth(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: order\nsteps:\n"
                      "  zeta: {module: noop}\n"
                      "  alpha: {module: noop}\n"
                      "  Beta: {module: noop}\n"
                      "  m2: {module: noop, needs: [zeta]}\n"
                      "  m10: {module: noop, needs: [zeta]}\n"
                      "  deep: {module: noop, needs: [m2]}\n"
                      "  last: {module: noop, needs: [alpha, deep]}\n");
    expect_plan(f, "{\"stages\":[[\"Beta\",\"alpha\",\"zeta\"],[\"m10\",\"m2\"],"
                   "[\"deep\"],[\"last\"]],"
                   "\"critical_path\":[\"zeta\",\"m2\",\"deep\",\"last\"],"
                   "\"critical_seconds\":4,\"steps\":7}");
    rz_flow_free(f);
}

/* Ids that share their first 8 bytes, or end exactly there, still sort as
 * strcmp says (the planner compares an 8-byte prefix first). */
static void test_long_ids(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: ids\nsteps:\n"
                      "  prefix_b: {module: noop}\n"
                      "  prefix_a_longer: {module: noop}\n"
                      "  prefix_a: {module: noop}\n"
                      "  prefix_: {module: noop}\n"
                      "  prefix_a_long: {module: noop}\n"
                      "  pre: {module: noop}\n"
                      "  prefix_Z: {module: noop}\n");
    /* Byte order, not a locale's: 'Z' before 'a'. (Ids are ASCII.) */
    expect_plan(f, "{\"stages\":[[\"pre\",\"prefix_\",\"prefix_Z\",\"prefix_a\","
                   "\"prefix_a_long\",\"prefix_a_longer\",\"prefix_b\"]],"
                   "\"critical_path\":[\"pre\"],"
                   "\"critical_seconds\":1,\"steps\":7}");
    rz_flow_free(f);
}

static void test_disconnected(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: parts\nsteps:\n"
                      "  y: {module: noop}\n"
                      "  z: {module: noop, needs: [y]}\n"
                      "  x: {module: noop}\n"
                      "  a: {module: noop}\n"
                      "  b: {module: noop, needs: [a]}\n");
    /* Two chains of two tie at 2 s; the path ending at the smaller id wins. */
    expect_plan(f, "{\"stages\":[[\"a\",\"x\",\"y\"],[\"b\",\"z\"]],"
                   "\"critical_path\":[\"a\",\"b\"],"
                   "\"critical_seconds\":2,\"steps\":5}");
    rz_flow_free(f);
}

/* Module estimates weight the path; unknown (0) counts as 1 s. */
static void test_critical_weights(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: weights\nsteps:\n"
                      "  a: {module: noop}\n"
                      "  short1: {module: noop, needs: [a]}\n"
                      "  short2: {module: noop, needs: [short1]}\n"
                      "  long: {module: slow, needs: [a]}\n"
                      "  end: {module: noop, needs: [short2, long]}\n"
                      "  tail: {module: half, needs: [end]}\n");
    struct rz_module slow = {0}, half = {0};
    slow.estimate_seconds = 10;
    half.estimate_seconds = 0.25;
    f->steps[rz_flow_step_find(f, "long")].module = &slow;
    f->steps[rz_flow_step_find(f, "tail")].module = &half;
    expect_plan(f, "{\"stages\":[[\"a\"],[\"long\",\"short1\"],[\"short2\"],"
                   "[\"end\"],[\"tail\"]],"
                   "\"critical_path\":[\"a\",\"long\",\"end\",\"tail\"],"
                   "\"critical_seconds\":12.25,\"steps\":6}");
    /* Make the short branch heavier: the path switches to it. */
    f->steps[rz_flow_step_find(f, "short1")].module = &slow;
    f->steps[rz_flow_step_find(f, "short2")].module = &half;
    rz_plan *p = NULL;
    assert_int_equal(rz_plan_build(&p, f, NULL), RZ_OK);
    size_t len;
    const size_t *cp = rz_plan_critical_path(p, &len);
    assert_int_equal(len, 5);
    assert_string_equal(rz_flow_step_id(f, cp[1]), "short1");
    assert_string_equal(rz_flow_step_id(f, cp[2]), "short2");
    assert_true(rz_plan_critical_seconds(p) == 12.5);
    rz_plan_free(p);
    rz_flow_free(f);
}

/* Plan a cyclic flow; return the diagnostics for inspection. */
static rz_diags *plan_cycle(rz_flow *f)
{
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_plan *p = (rz_plan *)&p;   /* must be reset to NULL */
    assert_int_equal(rz_plan_build(&p, f, d), RZ_ECYCLE);
    assert_null(p);
    assert_int_equal(rz_error_last()->code, RZ_ECYCLE);
    return d;
}

static void test_cycle_named_in_full(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: cyc\nsteps:\n"
                      "  start: {module: noop}\n"
                      "  a: {module: noop, needs: [start, c]}\n"
                      "  b: {module: noop, needs: [a]}\n"
                      "  c: {module: noop, needs: [b]}\n"
                      "  after: {module: noop, needs: [c]}\n");
    rz_diags *d = plan_cycle(f);
    assert_int_equal(rz_diags_error_count(d), 1);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_int_equal(x->code, RZ_ECYCLE);
    assert_string_equal(x->message, "cycle: a -> b -> c -> a");
    assert_string_equal(x->pointer, f->steps[rz_flow_step_find(f, "a")].ptr);
    assert_true(x->line > 0);
    assert_non_null(strstr(rz_error_last()->message, "a -> b -> c -> a"));
    rz_diags_free(d);
    rz_flow_free(f);
}

static void test_cycles_disjoint_and_self(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: cyc2\nsteps:\n"
                      "  solo: {module: noop, needs: [solo]}\n"
                      "  q: {module: noop, needs: [p]}\n"
                      "  p: {module: noop, needs: [q]}\n"
                      "  fine: {module: noop}\n"
                      "  behind: {module: noop, needs: [p, fine]}\n");
    rz_diags *d = plan_cycle(f);
    assert_int_equal(rz_diags_error_count(d), 2);
    assert_string_equal(rz_diags_get(d, 0)->message, "cycle: solo -> solo");
    /* Starts at the cycle's first step in the document. */
    assert_string_equal(rz_diags_get(d, 1)->message, "cycle: q -> p -> q");
    rz_diags_free(d);
    rz_flow_free(f);
}

/* A JSON builder flow of n steps chained s0 -> s1 -> ...; `ring` closes it. */
static rz_flow *chain(size_t n, bool ring)
{
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"id\":\"c\",\"name\":\"chain\",\"nodes\":[");
    for (size_t i = 0; i < n; i++)
        rz__buf_printf(&b, "%s{\"id\":\"s%zu\",\"moduleId\":\"noop\"}",
                       i ? "," : "", i);
    rz__buf_puts(&b, "],\"connections\":[");
    size_t edges = ring ? n : n - 1;
    for (size_t i = 0; i < edges; i++)
        rz__buf_printf(&b, "%s{\"id\":\"e%zu\",\"source\":{\"nodeId\":\"s%zu\","
                       "\"port\":\"out\"},\"target\":{\"nodeId\":\"s%zu\","
                       "\"port\":\"in\"}}", i ? "," : "", i, i, (i + 1) % n);
    rz__buf_puts(&b, "]}");
    char *src = rz__buf_take(&b);
    assert_non_null(src);
    rz_flow *f = parse(src, RZ_FORMAT_JSON);
    free(src);
    return f;
}

static void test_long_chain(void **state)
{
    (void)state;
    const size_t n = 100000;
    rz_flow *f = chain(n, false);
    rz_plan *p = NULL;
    assert_int_equal(rz_plan_build(&p, f, NULL), RZ_OK);
    assert_int_equal(rz_plan_stage_count(p), n);
    assert_string_equal(rz_flow_step_id(f, rz_plan_stage_step(p, n - 1, 0)),
                        "s99999");
    size_t len;
    const size_t *cp = rz_plan_critical_path(p, &len);
    assert_int_equal(len, n);
    assert_string_equal(rz_flow_step_id(f, cp[0]), "s0");
    assert_string_equal(rz_flow_step_id(f, cp[n - 1]), "s99999");
    assert_true(rz_plan_critical_seconds(p) == (double)n);
    char *json = NULL;
    assert_int_equal(rz_plan_to_json(p, &json), RZ_OK);
    assert_non_null(strstr(json, "[\"s99998\"],[\"s99999\"]]"));
    rz_free(json);
    rz_plan_free(p);
    rz_flow_free(f);
}

/* A 100k ring is one cycle: found without recursion, reported shortened. */
static void test_long_ring(void **state)
{
    (void)state;
    rz_flow *f = chain(100000, true);
    rz_diags *d = plan_cycle(f);
    assert_int_equal(rz_diags_error_count(d), 1);
    const char *msg = rz_diags_get(d, 0)->message;
    assert_true(strncmp(msg, "cycle: s0 -> s1 -> s2 -> ", 25) == 0);
    /* The same text as the validator's: 32 names, the middle elided. */
    assert_non_null(strstr(msg, " -> s15 -> ... (99968 more) -> s99984 -> "));
    assert_non_null(strstr(msg, " -> s99999 -> s0"));
    assert_true(strlen(msg) < 1000);
    rz_diags_free(d);
    rz_flow_free(f);
}

static void test_json_escapes_and_args(void **state)
{
    (void)state;
    rz_flow *f = yaml("flux: 1\nname: esc\nsteps:\n"
                      "  solo: {module: noop}\n");
    /* The model owns ids; give one the characters JSON must escape. */
    char *id = f->steps[0].id;
    char weird[] = "q\"b\\n\x01";
    f->steps[0].id = weird;
    expect_plan(f, "{\"stages\":[[\"q\\\"b\\\\n\\u0001\"]],"
                   "\"critical_path\":[\"q\\\"b\\\\n\\u0001\"],"
                   "\"critical_seconds\":1,\"steps\":1}");
    f->steps[0].id = id;

    rz_plan *p = (rz_plan *)&p;
    assert_int_equal(rz_plan_build(&p, NULL, NULL), RZ_EINVAL);
    assert_null(p);
    char *s = (char *)&s;
    assert_int_equal(rz_plan_to_json(NULL, &s), RZ_EINVAL);
    assert_null(s);
    rz_plan_free(NULL);
    assert_int_equal(rz_plan_stage_count(NULL), 0);
    size_t len = 7;
    assert_null(rz_plan_critical_path(NULL, &len));
    assert_int_equal(len, 0);
    rz_flow_free(f);
}

/* tests/data/plans/NAME.{yaml,json} plans to NAME.plan.json. */
static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(rz__read_file(path, 1 << 20, &data, &len), RZ_OK);
    while (len && (data[len - 1] == '\n' || data[len - 1] == ' '))
        data[--len] = '\0';
    return data;
}

static void golden(const char *name, const char *ext)
{
    char path[512];
    snprintf(path, sizeof path, PLANS "/%s.%s", name, ext);
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_load(&f, path, RZ_FORMAT_AUTO, d), RZ_OK);
    int rc = rz_flow_validate(f, NULL, d);
    if (rc != RZ_OK) {
        char *text = NULL;
        (void)!rz_diags_to_text(d, &text);   /* diagnostics of a failure */
        fprintf(stderr, "%s", text ? text : "");
        rz_free(text);
    }
    assert_int_equal(rc, RZ_OK);
    rz_diags_free(d);
    snprintf(path, sizeof path, PLANS "/%s.plan.json", name);
    char *want = slurp(path);
    expect_plan(f, want);
    free(want);
    rz_flow_free(f);
}

static void test_golden(void **state)
{
    (void)state;
    golden("wordcount", "yaml");
    golden("pipeline", "yaml");
    golden("builder", "json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond),
        cmocka_unit_test(test_sort_and_depth),
        cmocka_unit_test(test_long_ids),
        cmocka_unit_test(test_disconnected),
        cmocka_unit_test(test_critical_weights),
        cmocka_unit_test(test_cycle_named_in_full),
        cmocka_unit_test(test_cycles_disjoint_and_self),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_long_ring),
        cmocka_unit_test(test_json_escapes_and_args),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
