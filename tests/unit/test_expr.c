/* Expressions: grammar, precedence, errors with offsets, evaluation,
 * templates and truthiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "flow/model.h"

/* Resolver over {"steps": {id: {port: value}}, "inputs": {name: value}}. */
static const cJSON *resolve(const rz__ref *r, void *ud)
{
    const cJSON *ctx = ud;
    if (r->kind == RZ_REF_STEP) {
        const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(ctx, "steps"), r->name);
        return cJSON_GetObjectItem(s, r->port);
    }
    return cJSON_GetObjectItem(cJSON_GetObjectItem(ctx, "inputs"), r->name);
}

static cJSON *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = cJSON_Parse("{\"steps\": {\"a\": {\"n\": 5, \"s\": \"abc\", \"obj\": {\"k\": [10, 20]},"
                      " \"t\": true, \"zero\": 0}, \"b-2\": {\"n\": 7}},"
                      " \"inputs\": {\"name\": \"world\", \"cfg\": {\"deep\": {\"x\": 1.5}}, \"empty\": \"\"}}");
    return ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(ctx);
    return 0;
}

/* Evaluate and print compactly; the caller frees. */
static char *eval(const char *text, bool cond)
{
    rz__expr *e;
    char err[128];
    size_t off;
    int rc = rz__expr_parse(&e, text, cond, err, sizeof err, &off);
    if (rc != RZ_OK)
        fprintf(stderr, "%s: %s at %zu\n", text, err, off);
    assert_int_equal(rc, RZ_OK);
    cJSON *v;
    assert_int_equal(rz__expr_eval(e, resolve, ctx, &v), RZ_OK);
    char *s = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    rz__expr_free(e);
    return s;
}

static void expect(const char *text, bool cond, const char *want)
{
    char *got = eval(text, cond);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "%s => %s, want %s\n", text, got, want);
    assert_string_equal(got, want);
    free(got);
}

static void expect_error(const char *text, bool cond, size_t want_off, const char *msg_part)
{
    rz__expr *e = (rz__expr *)1;
    char err[128];
    size_t off = 999;
    assert_int_equal(rz__expr_parse(&e, text, cond, err, sizeof err, &off), RZ_EEXPR);
    assert_null(e);
    if (off != want_off || !strstr(err, msg_part))
        fprintf(stderr, "%s: '%s' at %zu, want '%s' at %zu\n", text, err, off, msg_part, want_off);
    assert_int_equal(off, want_off);
    assert_non_null(strstr(err, msg_part));
    assert_int_equal(rz_error_last()->code, RZ_EEXPR);
}

static void literals_and_references(void **state)
{
    (void)state;
    expect("${{ 42 }}", false, "42");
    expect("${{ -1.5 }}", false, "-1.5");
    expect("${{ 'single' }}", false, "\"single\"");
    expect("${{ \"dq \\\" esc\" }}", false, "\"dq \\\" esc\"");
    expect("${{ true }}", false, "true");
    expect("${{ null }}", false, "null");
    expect("${{ steps.a.outputs.n }}", false, "5");
    expect("${{ steps.a.outputs.obj }}", false, "{\"k\":[10,20]}");
    expect("${{ steps.a.outputs.obj.k.1 }}", false, "20");
    expect("${{ steps.b-2.outputs.n }}", false, "7");
    expect("${{ inputs.cfg.deep.x }}", false, "1.5");
    expect("${{ inputs.missing }}", false, "null");
    expect("${{ steps.a.outputs.obj.nope.deeper }}", false, "null");
    expect("${{ steps.a.outputs.n.k }}", false, "null");   /* key into a number */
}

static void references_are_listed(void **state)
{
    (void)state;
    rz__expr *e;
    const char *t = "x ${{ steps.a.outputs.n > inputs.lim }} y ${{ steps.b.outputs.o.k }}";
    assert_int_equal(rz__expr_parse(&e, t, false, NULL, 0, NULL), RZ_OK);
    assert_false(rz__expr_is_literal(e));
    assert_int_equal(rz__expr_ref_count(e), 3);
    const rz__ref *r = rz__expr_ref(e, 0);
    assert_int_equal(r->kind, RZ_REF_STEP);
    assert_string_equal(r->name, "a");
    assert_string_equal(r->port, "n");
    assert_int_equal(r->offset, 6);
    r = rz__expr_ref(e, 1);
    assert_int_equal(r->kind, RZ_REF_INPUT);
    assert_string_equal(r->name, "lim");
    assert_null(r->port);
    assert_int_equal(r->offset, strstr(t, "inputs") - t);
    assert_string_equal(rz__expr_ref(e, 2)->port, "o");
    assert_null(rz__expr_ref(e, 3));
    rz__expr_free(e);

    assert_int_equal(rz__expr_parse(&e, "plain text, no braces {x}", false, NULL, 0, NULL), RZ_OK);
    assert_true(rz__expr_is_literal(e));
    assert_int_equal(rz__expr_ref_count(e), 0);
    rz__expr_free(e);
    rz__expr_free(NULL);
}

static void precedence_and_operators(void **state)
{
    (void)state;
    expect("true || false && false", true, "true");      /* && binds tighter */
    expect("(true || false) && false", true, "false");
    expect("!false && true", true, "true");
    expect("!(1 == 1)", true, "false");
    expect("!!steps.a.outputs.s", true, "true");
    expect("1 < 2 == true", true, "true");               /* relational before equality */
    expect("steps.a.outputs.n >= 5 && steps.a.outputs.n <= 5", true, "true");
    expect("steps.a.outputs.n > 5 || steps.a.outputs.n < 5", true, "false");
    expect("steps.a.outputs.n != 4", true, "true");
    expect("${{ steps.a.outputs.n == 5 }}", true, "true");   /* wrapped condition */
    expect("  steps.a.outputs.t  ", true, "true");
}

static void comparison_semantics(void **state)
{
    (void)state;
    expect("10 > 9", true, "true");                       /* numeric, not textual */
    expect("'10' < '9'", true, "true");                   /* strings: lexicographic */
    expect("'abc' == steps.a.outputs.s", true, "true");
    expect("'5' == 5", true, "false");                    /* mixed types: unequal */
    expect("'5' != 5", true, "true");
    expect("'5' < 6", true, "false");                     /* no order across types */
    expect("'5' >= 6", true, "false");
    expect("null == inputs.absent", true, "true");
    expect("steps.a.outputs.obj == steps.a.outputs.obj", true, "true");   /* deep equal */
    expect("steps.a.outputs.obj < steps.a.outputs.obj", true, "false");
    expect("true == true", true, "true");
    expect("true == false", true, "false");
    expect("true != 1", true, "true");
}

static void truthiness(void **state)
{
    (void)state;
    assert_false(rz__json_truthy(NULL));
    cJSON *v = cJSON_CreateNull();
    assert_false(rz__json_truthy(v));
    cJSON_Delete(v);
    v = cJSON_CreateNumber(0);
    assert_false(rz__json_truthy(v));
    cJSON_Delete(v);
    v = cJSON_CreateString("");
    assert_false(rz__json_truthy(v));
    cJSON_Delete(v);
    v = cJSON_CreateString("0");
    assert_true(rz__json_truthy(v));
    cJSON_Delete(v);
    v = cJSON_CreateArray();
    assert_true(rz__json_truthy(v));
    cJSON_Delete(v);
    expect("inputs.empty || steps.a.outputs.zero", true, "false");
    expect("!inputs.nothing", true, "true");
}

static void templates(void **state)
{
    (void)state;
    expect("hello ${{ inputs.name }}!", false, "\"hello world!\"");
    expect("n=${{ steps.a.outputs.n }}, x=${{ inputs.cfg.deep.x }}", false, "\"n=5, x=1.5\"");
    expect("${{ steps.a.outputs.obj }} as text", false, "\"{\\\"k\\\":[10,20]} as text\"");
    expect("[${{ inputs.absent }}]", false, "\"[]\"");
    expect("${{ steps.a.outputs.t }}${{ steps.a.outputs.n }}", false, "\"true5\"");
    expect("no expressions here", false, "\"no expressions here\"");
    expect(" ${{ 1 }}", false, "\" 1\"");                  /* text around: a string */
    expect("${{ '}}' }}", false, "\"}}\"");               /* }} inside a string literal */
    expect("", false, "\"\"");
}

static void errors_with_offsets(void **state)
{
    (void)state;
    expect_error("${{ steps.a }}", false, 11, "expected '.'");
    expect_error("${{ steps.a.result.x }}", false, 12, "expected 'outputs'");
    expect_error("${{ steps.a.outputs }}", false, 19, "expected '.'");
    expect_error("${{ steps.a.outputs. }}", false, 20, "expected an output port");
    expect_error("${{ inputs }}", false, 10, "expected '.'");
    expect_error("${{ env.HOME }}", false, 4, "unknown name 'env'");
    expect_error("${{ 1 ^ 2 }}", false, 6, "expected '}}'");
    expect_error("ab ${{ inputs.x", false, 3, "unterminated");
    expect_error("${{ }}", false, 4, "expected a value");
    expect_error("${{ 'open }}", false, 4, "unterminated string");
    expect_error("${{ (1 == 1 }}", false, 12, "expected ')'");
    expect_error("a = b", true, 0, "unknown name 'a'");
    expect_error("1 = 2", true, 2, "'=' is not an operator");
    expect_error("true & false", true, 5, "'&&'");
    expect_error("true | false", true, 5, "'||'");
    expect_error("1 == 1 junk", true, 7, "after the expression");
    expect_error("", true, 0, "expected a value");
    expect_error("-x", true, 0, "expected a number");
}

static void hostile_expressions(void **state)
{
    (void)state;
    /* Deep parentheses and long operator chains are refused, not recursed. */
    size_t n = 100000;
    char *s = malloc(n + 2);
    memset(s, '(', n);
    s[n] = '1';
    s[n + 1] = '\0';
    rz__expr *e = (rz__expr *)1;
    assert_int_equal(rz__expr_parse(&e, s, true, NULL, 0, NULL), RZ_EEXPR);
    assert_null(e);
    memset(s, '!', n);
    assert_int_equal(rz__expr_parse(&e, s, true, NULL, 0, NULL), RZ_EEXPR);
    free(s);
    rz__buf b = {0};
    for (int i = 0; i < 5000; i++)
        rz__buf_puts(&b, "1 == ");
    rz__buf_puts(&b, "1");
    char err[64];
    size_t off;
    assert_int_equal(rz__expr_parse(&e, b.data, true, err, sizeof err, &off), RZ_EEXPR);
    assert_non_null(strstr(err, "too complex"));
    rz__buf_free(&b);
    /* Within limits, evaluation works. */
    expect("((((((((((1 == 1))))))))))", true, "true");
    expect("!!!!!!!!false", true, "false");
}

static void eval_without_resolver(void **state)
{
    (void)state;
    rz__expr *e;
    cJSON *v;
    assert_int_equal(rz__expr_parse(&e, "${{ steps.a.outputs.n }}", false, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_eval(e, NULL, NULL, &v), RZ_OK);
    assert_true(cJSON_IsNull(v));
    cJSON_Delete(v);
    rz__expr_free(e);
    assert_int_equal(rz__expr_eval(NULL, NULL, NULL, &v), RZ_EINVAL);
    assert_null(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literals_and_references),
        cmocka_unit_test(references_are_listed),
        cmocka_unit_test(precedence_and_operators),
        cmocka_unit_test(comparison_semantics),
        cmocka_unit_test(truthiness),
        cmocka_unit_test(templates),
        cmocka_unit_test(errors_with_offsets),
        cmocka_unit_test(hostile_expressions),
        cmocka_unit_test(eval_without_resolver),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
