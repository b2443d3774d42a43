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

/* Resolver over {"steps": {id: {port: value}}, "inputs": {name: value},
 * "runs": {id: {status, error, attempts, duration_ms}}}. */
static const cJSON *resolve(const rz__ref *r, void *ud)
{
    const cJSON *ctx = ud;
    static const char *const fields[] = {"", "status", "error", "attempts", "duration_ms"};
    if (r->kind == RZ_REF_STEP && r->field != RZ_FIELD_OUTPUTS) {
        assert_null(r->port);
        const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(ctx, "runs"), r->name);
        return cJSON_GetObjectItem(s, fields[r->field]);
    }
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
                      " \"inputs\": {\"name\": \"world\", \"cfg\": {\"deep\": {\"x\": 1.5}}, \"empty\": \"\","
                      " \"list\": [\"x\", 2, null, true, {\"o\": 1}], \"json\": \"{\\\"k\\\": [1, 2]}\","
                      " \"big\": 9007199254740991, \"uni\": \"h\u00e9llo\"},"
                      " \"runs\": {\"p\": {\"status\": \"failed\", \"error\": \"exit 3\","
                      " \"attempts\": 2, \"duration_ms\": 1500}}}");
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

    /* item / index are the element of a for_each step; each.value / each.index
     * the same references under their older names. */
    t = "${{ item.k[index] }} ${{ each.value }} ${{ each.index }} ${{ items }}";
    char err[128];
    size_t off;
    assert_int_equal(rz__expr_parse(&e, t, false, err, sizeof err, &off), RZ_EEXPR);
    assert_int_equal(off, strstr(t, "items") - t);
    assert_non_null(strstr(err, "unknown name 'items'"));
    t = "${{ item.k[index] }} ${{ each.value }} ${{ each.index }}";
    assert_int_equal(rz__expr_parse(&e, t, false, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_ref_count(e), 4);
    const char *names[] = {"item", "index", "value", "index"};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(rz__expr_ref(e, k)->kind, RZ_REF_EACH);
        assert_string_equal(rz__expr_ref(e, k)->name, names[k]);
    }
    assert_int_equal(rz__expr_ref(e, 1)->offset, strstr(t, "index") - t);
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

/* Constant expressions can be checked before any run. */
static void check_constants(void **state)
{
    (void)state;
    rz__expr *e;
    char err[128];
    size_t off;
    const char *t = "x ${{ 1 + 1 }} ${{ 2 / 0 }}";
    assert_int_equal(rz__expr_parse(&e, t, false, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_check(e, err, sizeof err, &off), RZ_EEXPR);
    assert_string_equal(err, "division by zero");
    assert_int_equal(off, 21);
    rz__expr_free(e);
    /* References make it a run-time matter. */
    assert_int_equal(rz__expr_parse(&e, "inputs.x / 0", true, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_check(e, err, sizeof err, &off), RZ_OK);
    assert_string_equal(err, "");
    rz__expr_free(e);
    t = "length('abc') == 3 ? 'y' : 1 / 0";   /* the branch not taken */
    assert_int_equal(rz__expr_parse(&e, t, true, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_check(e, err, sizeof err, &off), RZ_OK);
    rz__expr_free(e);
    assert_int_equal(rz__expr_check(NULL, err, sizeof err, &off), RZ_EINVAL);
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

/* Parses, but evaluating fails with RZ_EEXPR at `want_off`. */
static void expect_eval_error(const char *text, size_t want_off, const char *msg_part)
{
    rz__expr *e;
    assert_int_equal(rz__expr_parse(&e, text, true, NULL, 0, NULL), RZ_OK);
    cJSON *v = (cJSON *)1;
    int rc = rz__expr_eval(e, resolve, ctx, &v);
    char want[64];
    snprintf(want, sizeof want, "at offset %zu", want_off);
    const char *msg = rz_error_last()->message;
    if (rc != RZ_EEXPR || !strstr(msg, msg_part) || !strstr(msg, want))
        fprintf(stderr, "%s: rc %d '%s', want '%s' %s\n", text, rc, msg, msg_part, want);
    assert_int_equal(rc, RZ_EEXPR);
    assert_null(v);
    assert_non_null(strstr(msg, msg_part));
    assert_non_null(strstr(msg, want));
    rz__expr_free(e);
}

static void arithmetic(void **state)
{
    (void)state;
    expect("1 + 2 * 3", true, "7");                      /* * before + */
    expect("(1 + 2) * 3", true, "9");
    expect("10 - 4 - 3", true, "3");                     /* left-associative */
    expect("7 / 2", true, "3.5");
    expect("6 / 3", true, "2");
    expect("7 % 3", true, "1");
    expect("-7 % 3", true, "-1");
    expect("7.5 % 2", true, "1.5");
    expect("steps.a.outputs.n * 2 + 1", true, "11");
    expect("1 - -1", true, "2");
    expect("inputs.big - 1 == 9007199254740990", true, "true");  /* exact */
    expect("${{ inputs.big - 1 }}!", false, "\"9007199254740990!\"");
    expect("0.5 + 0.25", true, "0.75");
    expect("1 + 2 == 3 && 2 * 2 > 3", true, "true");     /* arithmetic binds tighter */
    expect("'ab' + 'cd'", true, "\"abcd\"");
    expect("${{ inputs.name + '!' }}", false, "\"world!\"");
    expect_eval_error("1 / 0", 2, "division by zero");
    expect_eval_error("1 % 0", 2, "division by zero");
    expect_eval_error("inputs.big + 1", 11, "beyond 2^53");
    expect_eval_error("inputs.big * 2", 11, "beyond 2^53");
    expect_eval_error("'a' + 1", 4, "'+' needs two numbers or two strings, not a string and a number");
    expect_eval_error("inputs.absent - 1", 14, "'-' needs two numbers, not null");
    expect_eval_error("1e308 * 10", 6, "out of range");
}

static void ternary_and_indexing(void **state)
{
    (void)state;
    expect("true ? 'y' : 'n'", true, "\"y\"");
    expect("inputs.empty ? 'y' : 'n'", true, "\"n\"");
    expect("false ? 1 : true ? 2 : 3", true, "2");       /* right-associative */
    expect("1 == 1 ? 1 + 1 : 0", true, "2");
    expect("true ? 1 / 1 : 1 / 0", true, "1");           /* only the branch taken */
    expect("inputs.list[0]", true, "\"x\"");
    expect("inputs.list[1 + 3].o", true, "1");
    expect("inputs.list[9]", true, "null");
    expect("inputs.list[-1]", true, "null");
    expect("inputs.list[0.5]", true, "null");
    expect("inputs.cfg['deep']['x']", true, "1.5");
    expect("inputs.cfg['nope'].x", true, "null");
    expect("steps.a.outputs.obj.k[1]", true, "20");
    expect("fromJSON(inputs.json).k[0]", true, "1");
    expect("'abc'[0]", true, "null");                    /* no indexing into strings */
    expect_error("true ? 1", true, 8, "expected ':'");
    expect_error("inputs.list[0", true, 13, "expected ']'");
    expect_error("inputs.list[]", true, 12, "unexpected ']'");
}

static void run_fields(void **state)
{
    (void)state;
    expect("steps.p.status == 'failed'", true, "true");
    expect("steps.p.error", true, "\"exit 3\"");
    expect("steps.p.attempts + 1", true, "3");
    expect("steps.p.duration_ms", true, "1500");
    expect("default(steps.q.error, 'none')", true, "\"none\"");
    rz__expr *e;
    assert_int_equal(rz__expr_parse(&e, "steps.p.status", true, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_ref(e, 0)->field, RZ_FIELD_STATUS);
    assert_string_equal(rz__expr_ref(e, 0)->name, "p");
    assert_null(rz__expr_ref(e, 0)->port);
    rz__expr_free(e);
    assert_int_equal(rz__expr_parse(&e, "steps.p.outputs.x", true, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_ref(e, 0)->field, RZ_FIELD_OUTPUTS);
    rz__expr_free(e);
    expect_error("steps.p.state", true, 8, "expected 'outputs'");
}

static void string_functions(void **state)
{
    (void)state;
    expect("length('abc')", true, "3");
    expect("length(inputs.uni)", true, "5");              /* characters, not bytes */
    expect("length(inputs.list)", true, "5");
    expect("length(inputs.cfg)", true, "1");
    expect("length(inputs.absent)", true, "0");
    expect("LENGTH('ab')", true, "2");                    /* names: any case */
    expect_eval_error("length(5)", 0, "length() takes a string, an array or an object, not a number");
    expect("contains('hello', 'ell')", true, "true");
    expect("contains('hello', 'L')", true, "false");      /* case-sensitive */
    expect("contains('a1', 1)", true, "true");
    expect("contains(inputs.list, 2)", true, "true");
    expect("contains(inputs.list, '2')", true, "false");
    expect("contains(inputs.list, inputs.list[4])", true, "true");
    expect("contains(inputs.absent, 'x')", true, "false");
    expect_eval_error("contains(5, 'x')", 0, "contains() searches a string or an array");
    expect_eval_error("contains('x', inputs.list)", 0, "looks for an array");
    expect("startsWith('hello', 'he')", true, "true");
    expect("startsWith('hello', 'lo')", true, "false");
    expect("endsWith('hello', 'lo')", true, "true");
    expect("endsWith('lo', 'hello')", true, "false");
    expect("startsWith('x', '')", true, "true");
    expect_eval_error("startsWith(1, 'x')", 0, "startsWith() takes two strings, not a number and a string");
    expect_eval_error("endsWith('x', true)", 0, "endsWith() takes two strings");
}

static void format_and_join(void **state)
{
    (void)state;
    expect("format('{0} and {1}', 'a', 2)", true, "\"a and 2\"");
    expect("format('{1}{0}{1}', 'x', 'y')", true, "\"yxy\"");
    expect("format('{{0}} {0}', null)", true, "\"{0} \"");
    expect("format('plain')", true, "\"plain\"");
    expect("format('{0}', inputs.cfg)", true, "\"{\\\"deep\\\":{\\\"x\\\":1.5}}\"");
    expect_eval_error("format('{2}', 'a')", 0, "{2} but 1 argument");
    expect_eval_error("format('{x}', 'a')", 0, "is not {N}");
    expect_eval_error("format('a}b')", 0, "unmatched '}'");
    expect_eval_error("format('{0', 1)", 0, "is not {N}");
    expect_eval_error("format(1)", 0, "format string first");
    expect("join(inputs.list)", true, "\"x,2,,true,{\\\"o\\\":1}\"");
    expect("join(inputs.list, ' | ')", true, "\"x | 2 |  | true | {\\\"o\\\":1}\"");
    expect("join(fromJSON('[]'), '-')", true, "\"\"");
    expect("join('solo')", true, "\"solo\"");
    expect_eval_error("join(5)", 0, "join() takes an array, not a number");
    expect_eval_error("join(inputs.list, 1)", 0, "string separator");
    expect_error("format()", true, 0, "format() takes 1 to 16 arguments, not 0");
    expect_error("length('a', 'b')", true, 0, "length() takes 1 argument, not 2");
    expect_error("join(1, 2, 3)", true, 0, "join() takes 1 to 2 arguments, not 3");
    expect_error("nosuch(1)", true, 0, "unknown function 'nosuch'");
    expect_error("length('a' 'b')", true, 11, "expected ',' or ')'");
    /* 17 arguments */
    expect_error("format('', 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16)", true, 47,
                 "too many arguments");
}

static void json_and_default(void **state)
{
    (void)state;
    expect("toJSON(inputs.cfg)", true, "\"{\\\"deep\\\":{\\\"x\\\":1.5}}\"");
    expect("toJSON('s')", true, "\"\\\"s\\\"\"");
    expect("toJSON(null)", true, "\"null\"");
    expect("fromJSON(inputs.json)", true, "{\"k\":[1,2]}");
    expect("fromJSON('3') + 1", true, "4");
    expect("fromJSON(toJSON(inputs.list)) == inputs.list", true, "true");
    expect_eval_error("fromJSON('{bad')", 0, "not valid JSON");
    expect_eval_error("fromJSON('1 2')", 0, "not valid JSON");
    expect_eval_error("fromJSON(1)", 0, "fromJSON() takes a string, not a number");
    expect("default(inputs.absent, 'd')", true, "\"d\"");
    expect("default(inputs.empty, 'd')", true, "\"\"");   /* only null falls back */
    expect("default(steps.a.outputs.zero, 1)", true, "0");
    expect("default(null, null)", true, "null");
    expect("default('x', 1 / 0)", true, "\"x\"");          /* lazy */
}

/* format('{0}' x 8, ...) k times around 8 bytes: 8 * 8^k bytes. */
static void nest8(rz__buf *b, int k)
{
    for (int i = 0; i < k; i++)
        rz__buf_puts(b, "format('{0}{0}{0}{0}{0}{0}{0}{0}', ");
    rz__buf_puts(b, "'xxxxxxxx'");
    for (int i = 0; i < k; i++)
        rz__buf_puts(b, ")");
}

/* Strings an evaluation builds are capped one by one and in total. */
static void output_bounds(void **state)
{
    (void)state;
    /* 2^19 + 1 bytes through doubling concatenation. */
    rz__buf b = {0};
    rz__buf_puts(&b, "join(fromJSON('[1,2]'), format('{0}{0}', format('{0}{0}', ");
    for (int i = 0; i < 15; i++)
        rz__buf_puts(&b, "format('{0}{0}', ");
    rz__buf_puts(&b, "'xxxxxxxx'");
    for (int i = 0; i < 17; i++)
        rz__buf_puts(&b, ")");
    rz__buf_puts(&b, ")");
    /* 8 * 2^17 = 1 MiB: over the per-string cap at the last format. */
    rz__expr *e;
    assert_int_equal(rz__expr_parse(&e, b.data, true, NULL, 0, NULL), RZ_OK);
    cJSON *v;
    assert_int_equal(rz__expr_eval(e, resolve, ctx, &v), RZ_EEXPR);
    assert_non_null(strstr(rz_error_last()->message, "result longer than 524288 bytes"));
    rz__expr_free(e);
    rz__buf_free(&b);
    /* Each string within the cap, their sum over the budget: 20 x ~293 KiB
     * built (each nest8(5) builds 8 * (8 + 8^2 + ... + 8^5) bytes). */
    for (int i = 0; i < 20; i++) {
        rz__buf_puts(&b, i ? " + length(" : "length(");
        nest8(&b, 5);
        rz__buf_puts(&b, ")");
    }
    assert_int_equal(rz__expr_parse(&e, b.data, true, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_eval(e, resolve, ctx, &v), RZ_EEXPR);
    assert_non_null(strstr(rz_error_last()->message, "more than 4194304 bytes of strings"));
    rz__expr_free(e);
    rz__buf_free(&b);
    /* A template joining big parts is capped too: 2 x 256 KiB + " and ". */
    rz__buf_puts(&b, "${{ ");
    nest8(&b, 5);
    rz__buf_puts(&b, " }} and ${{ ");
    nest8(&b, 5);
    rz__buf_puts(&b, " }}");
    assert_int_equal(rz__expr_parse(&e, b.data, false, NULL, 0, NULL), RZ_OK);
    assert_int_equal(rz__expr_eval(e, resolve, ctx, &v), RZ_EEXPR);
    assert_non_null(strstr(rz_error_last()->message, "result longer"));
    rz__expr_free(e);
    rz__buf_free(&b);
    /* Up to the cap works: 8 * 8^5 * 2 = 512 KiB exactly. */
    rz__buf_puts(&b, "length(format('{0}{0}', ");
    nest8(&b, 5);
    rz__buf_puts(&b, "))");
    char *got = eval(b.data, true);
    assert_string_equal(got, "524288");
    free(got);
    rz__buf_free(&b);
}

/* Parse-time bounds: terms, nesting through calls and indices. */
static void parse_bounds(void **state)
{
    (void)state;
    rz__buf b = {0};
    for (int i = 0; i < 100; i++)
        rz__buf_puts(&b, "length(");
    rz__buf_puts(&b, "'x'");
    for (int i = 0; i < 100; i++)
        rz__buf_puts(&b, ")");
    rz__expr *e = (rz__expr *)1;
    char err[128];
    size_t off;
    assert_int_equal(rz__expr_parse(&e, b.data, true, err, sizeof err, &off), RZ_EEXPR);
    assert_non_null(strstr(err, "nested too deeply"));
    rz__buf_free(&b);
    for (int i = 0; i < 100; i++)
        rz__buf_puts(&b, "inputs.list[");
    rz__buf_puts(&b, "0");
    for (int i = 0; i < 100; i++)
        rz__buf_puts(&b, "]");
    assert_int_equal(rz__expr_parse(&e, b.data, true, err, sizeof err, &off), RZ_EEXPR);
    assert_non_null(strstr(err, "nested too deeply"));
    rz__buf_free(&b);
    /* More terms than RZ_EXPR_MAX_NODES, in a flat shape (no height). */
    rz__buf_puts(&b, "${{ 1 }}");
    for (int i = 0; i < RZ_EXPR_MAX_NODES; i++)
        rz__buf_puts(&b, " ${{ 1 }}");
    assert_int_equal(rz__expr_parse(&e, b.data, false, err, sizeof err, &off), RZ_EEXPR);
    assert_non_null(strstr(err, "too large"));
    rz__buf_free(&b);
    /* Long chains of + are refused by height, not recursed. */
    for (int i = 0; i < 5000; i++)
        rz__buf_puts(&b, "1 + ");
    rz__buf_puts(&b, "1");
    assert_int_equal(rz__expr_parse(&e, b.data, true, err, sizeof err, &off), RZ_EEXPR);
    assert_non_null(strstr(err, "too complex"));
    rz__buf_free(&b);
    for (int i = 0; i < 200; i++)
        rz__buf_puts(&b, "1 + ");
    rz__buf_puts(&b, "1");
    char *got = eval(b.data, true);
    assert_string_equal(got, "201");
    free(got);
    rz__buf_free(&b);
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
        cmocka_unit_test(check_constants),
        cmocka_unit_test(arithmetic),
        cmocka_unit_test(ternary_and_indexing),
        cmocka_unit_test(run_fields),
        cmocka_unit_test(string_functions),
        cmocka_unit_test(format_and_join),
        cmocka_unit_test(json_and_default),
        cmocka_unit_test(output_bounds),
        cmocka_unit_test(parse_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
