/* JSON Schema validator: edge cases beyond the official suite (numbers,
 * multipleOf on decimals, Unicode lengths and patterns, $ref recursion and
 * loops, defaults, messages and pointers, hostile schemas), the text API
 * with FILE:LINE:COLUMN, and step configs checked inside rz_flow_validate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "flow/model.h"
#include "rhizos/rhizos.h"
#include "schema/schema_impl.h"

/* ---- Helpers ---- */

static rz_schema *compile(const char *json)
{
    rz_schema *s = NULL;
    int rc = rz_schema_compile(&s, json, strlen(json));
    if (rc != RZ_OK)
        fprintf(stderr, "compile failed: %s: %s\n", rz_status_name(rc),
                rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    assert_non_null(s);
    return s;
}

static int compile_rc(const char *json)
{
    rz_schema *s = (rz_schema *)1;
    int rc = rz_schema_compile(&s, json, strlen(json));
    if (rc == RZ_OK)
        rz_schema_free(s);
    else
        assert_null(s);
    return rc;
}

/* Errors as "POINTER [KEYWORD] MESSAGE\n" lines. */
static int collect(void *ud, const rz_schema_error *e)
{
    rz__buf *b = ud;
    rz__buf_printf(b, "%s [%s] %s\n", e->pointer, e->keyword, e->message);
    return 0;
}

static rz__buf g_errs;

/* Validate and keep the error text in g_errs. */
static int check(const char *schema, const char *inst)
{
    rz_schema *s = compile(schema);
    rz__buf_free(&g_errs);
    rz__buf_append(&g_errs, "", 0);
    int rc = rz_schema_validate(s, inst, strlen(inst), collect, &g_errs);
    rz_schema_free(s);
    return rc;
}

static bool valid(const char *schema, const char *inst)
{
    int rc = check(schema, inst);
    assert_true(rc == RZ_OK || rc == RZ_EINVALID);
    /* Valid <=> no errors reported. */
    assert_int_equal(rc == RZ_OK, g_errs.len == 0);
    return rc == RZ_OK;
}

static void expect_errors(const char *schema, const char *inst, const char *want)
{
    assert_int_equal(check(schema, inst), RZ_EINVALID);
    if (strcmp(g_errs.data, want) != 0)
        fprintf(stderr, "want:\n%sgot:\n%s", want, g_errs.data);
    assert_string_equal(g_errs.data, want);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Numbers ---- */

static void test_integers(void **state)
{
    (void)state;
    const char *integer = "{\"type\":\"integer\"}";
    assert_true(valid(integer, "1.0"));
    assert_true(valid(integer, "-0"));
    assert_true(valid(integer, "1e308"));
    assert_true(valid(integer, "12345678901234567890123"));
    assert_false(valid(integer, "1.5"));
    assert_false(valid(integer, "1e-7"));
    assert_false(valid(integer, "\"1\""));
    /* An integer is a number; a number is not an integer. */
    assert_true(valid("{\"type\":\"number\"}", "3"));
    assert_true(valid("{\"type\":[\"integer\",\"string\"]}", "\"x\""));
    /* Large bounds compare as doubles, without overflow. */
    assert_true(valid("{\"maximum\":1e300}", "9.99e299"));
    assert_false(valid("{\"maximum\":1e300}", "1.01e300"));
    assert_false(valid("{\"minimum\":-1e300}", "-1e301"));
    assert_true(valid("{\"exclusiveMinimum\":0}", "5e-324"));
    assert_false(valid("{\"exclusiveMinimum\":0}", "0"));
    /* Non-numbers ignore numeric keywords. */
    assert_true(valid("{\"maximum\":0}", "\"big\""));
    expect_errors(integer, "2.5", " [type] must be integer, not number\n");
}

static void test_multiple_of_decimals(void **state)
{
    (void)state;
    static const struct { const char *x, *m; bool ok; } cases[] = {
        {"0.0075", "0.0001", true}, {"0.00751", "0.0001", false},
        {"0.3", "0.1", true},       {"0.7", "0.1", true},
        {"19.99", "0.01", true},    {"19.995", "0.01", false},
        {"4.5", "1.5", true},       {"10", "3", false},
        {"1e-300", "1e-301", true}, {"1e308", "0.123456789", false},
        {"7e20", "7", true},        {"1e20", "7", false},
        {"123456789012", "0.5", true}, {"-2.4", "1.2", true},
        {"0", "0.37", true},        {"0.1", "0.3", false},
        {"1e-7", "1e-8", true},     {"3", "1e-17", true},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        char schema[64];
        snprintf(schema, sizeof schema, "{\"multipleOf\":%s}", cases[i].m);
        if (valid(schema, cases[i].x) != cases[i].ok)
            fail_msg("%s multipleOf %s: want %s", cases[i].x, cases[i].m,
                     cases[i].ok ? "valid" : "invalid");
    }
    expect_errors("{\"multipleOf\":0.01}", "0.005",
                  " [multipleOf] 0.005 is not a multiple of 0.01\n");
    assert_int_equal(compile_rc("{\"multipleOf\":0}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"multipleOf\":-1}"), RZ_EINVAL);
}

/* ---- Strings ---- */

static void test_unicode_lengths(void **state)
{
    (void)state;
    /* Code points, not bytes: é is 2 bytes, 💩 4 bytes, each one point. */
    assert_true(valid("{\"maxLength\":5}", "\"h\\u00e9llo\""));
    assert_true(valid("{\"maxLength\":5}", "\"héllo\""));
    assert_false(valid("{\"maxLength\":4}", "\"héllo\""));
    assert_true(valid("{\"maxLength\":2,\"minLength\":2}", "\"💩💩\""));
    assert_true(valid("{\"maxLength\":1}", "\"\\ud83d\\udca9\""));
    assert_false(valid("{\"minLength\":3}", "\"💩💩\""));
    /* A combining accent is its own code point. */
    assert_false(valid("{\"maxLength\":1}", "\"e\\u0301\""));
    assert_true(valid("{\"minLength\":0}", "\"\""));
    expect_errors("{\"minLength\":3}", "\"💩\"",
                  " [minLength] \"💩\" is shorter than 3 characters\n");
}

static void test_patterns(void **state)
{
    (void)state;
    assert_true(valid("{\"pattern\":\"^\\\\p{L}+$\"}", "\"héllo\""));
    assert_false(valid("{\"pattern\":\"^\\\\p{L}+$\"}", "\"h3llo\""));
    /* "." is one code point, also outside the BMP. */
    assert_true(valid("{\"pattern\":\"^.$\"}", "\"💩\""));
    /* ECMA-262 \\uXXXX escapes. */
    assert_true(valid("{\"pattern\":\"^caf\\\\u00e9$\"}", "\"café\""));
    /* Unanchored search; $ only at the very end. */
    assert_true(valid("{\"pattern\":\"b+\"}", "\"abbbc\""));
    assert_false(valid("{\"pattern\":\"^a$\"}", "\"a\\n\""));
    /* Non-strings ignore pattern. */
    assert_true(valid("{\"pattern\":\"^x$\"}", "12"));
    assert_true(valid("{\"patternProperties\":{\"^é\":{\"type\":\"integer\"}}}",
                      "{\"éa\":1,\"ea\":\"x\"}"));
    assert_false(valid("{\"patternProperties\":{\"^é\":{\"type\":\"integer\"}}}",
                       "{\"éa\":\"x\"}"));
    /* A bad regex is a schema error naming where it is. */
    assert_int_equal(compile_rc("{\"properties\":{\"a\":{\"pattern\":\"(\"}}}"),
                     RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "/properties/a/pattern"));
    assert_int_equal(compile_rc("{\"patternProperties\":{\"[\":{}}}"), RZ_EINVAL);
}

static void test_catastrophic_regex(void **state)
{
    (void)state;
    char inst[128];
    memset(inst, 'a', sizeof inst);
    inst[0] = '"';
    inst[sizeof inst - 3] = '!';
    inst[sizeof inst - 2] = '"';
    inst[sizeof inst - 1] = '\0';
    double t0 = now_s();
    int rc = check("{\"pattern\":\"^(a+)+$\"}", inst);
    double dt = now_s() - t0;
    assert_int_equal(rc, RZ_EINVALID);
    assert_non_null(strstr(g_errs.data, "too expensive to match"));
    assert_true(dt < 2.0);
    /* The same in patternProperties, on a property name. */
    char obj[160];
    snprintf(obj, sizeof obj, "{%s:1}", inst);
    assert_int_equal(check("{\"patternProperties\":{\"^(a|aa)+$\":{}}}", obj),
                     RZ_EINVALID);
    assert_non_null(strstr(g_errs.data, "[patternProperties]"));
}

/* ---- Equality ---- */

static void test_equality(void **state)
{
    (void)state;
    assert_true(valid("{\"enum\":[1.0]}", "1"));
    assert_true(valid("{\"const\":{\"a\":1,\"b\":[1,2]}}", "{\"b\":[1.0,2],\"a\":1}"));
    assert_false(valid("{\"const\":{\"a\":1}}", "{\"a\":1,\"b\":1}"));
    assert_false(valid("{\"const\":[1,2]}", "[2,1]"));
    assert_false(valid("{\"enum\":[0]}", "false"));
    assert_false(valid("{\"enum\":[null]}", "0"));
    assert_false(valid("{\"uniqueItems\":true}", "[1,1.0]"));
    assert_false(valid("{\"uniqueItems\":true}", "[{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]"));
    assert_true(valid("{\"uniqueItems\":true}", "[0,false,null,\"0\",[0],{\"0\":0}]"));
    /* 0 and -0 are equal. */
    assert_false(valid("{\"uniqueItems\":true}", "[0,-0]"));
    expect_errors("{\"uniqueItems\":true}", "[1,2,3,2]",
                  " [uniqueItems] items 1 and 3 are equal; items must be unique\n");
}

static void test_unique_large(void **state)
{
    (void)state;
    /* 100k distinct objects, then one duplicate: the hashed path. */
    rz__buf b = {0};
    rz__buf_puts(&b, "[");
    for (int i = 0; i < 100000; i++)
        rz__buf_printf(&b, "%s{\"k\":%d,\"v\":[%d]}", i ? "," : "", i, i % 7);
    rz__buf_puts(&b, "]");
    double t0 = now_s();
    assert_true(valid("{\"uniqueItems\":true}", b.data));
    b.data[b.len - 1] = '\0';
    b.len--;
    rz__buf_puts(&b, ",{\"v\":[2],\"k\":99997.0}]");
    expect_errors("{\"uniqueItems\":true}", b.data,
                  " [uniqueItems] items 99997 and 100000 are equal; items must "
                  "be unique\n");
    assert_true(now_s() - t0 < 10.0);
    rz__buf_free(&b);
}

static void test_huge_enum(void **state)
{
    (void)state;
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"enum\":[");
    for (int i = 0; i < 100000; i++)
        rz__buf_printf(&b, "%s\"v%d\"", i ? "," : "", i);
    rz__buf_puts(&b, "]}");
    rz_schema *s = compile(b.data);
    assert_int_equal(rz_schema_validate(s, "\"v99999\"", 8, NULL, NULL), RZ_OK);
    rz__buf_free(&g_errs);
    assert_int_equal(rz_schema_validate(s, "\"nope\"", 6, collect, &g_errs),
                     RZ_EINVALID);
    /* The message shows the start of the list, not all of it. */
    assert_true(g_errs.len < 400);
    assert_non_null(strstr(g_errs.data, "must be one of [\"v0\",\"v1\""));
    rz_schema_free(s);
    rz__buf_free(&b);
}

/* ---- Messages and pointers ---- */

static void test_messages(void **state)
{
    (void)state;
    const char *schema =
        "{\"type\":\"object\",\"required\":[\"exchange\",\"parameters\"],"
        " \"properties\":{"
        "  \"parameters\":{\"type\":\"object\",\"additionalProperties\":false,"
        "   \"properties\":{\"bidSpread\":{\"type\":\"number\",\"maximum\":0.5},"
        "                  \"pairs\":{\"type\":\"array\",\"minItems\":1,"
        "                             \"items\":{\"type\":\"string\"}}}},"
        "  \"a/b\":{\"const\":1},\"t~\":{\"enum\":[\"x\",\"y\"]}}}";
    expect_errors(schema,
        "{\"parameters\":{\"bidSpread\":0.7,\"pairs\":[\"a\",2],\"extra\":1},"
        " \"a/b\":2,\"t~\":\"z\"}",
        "/parameters/bidSpread [maximum] 0.7 is greater than the maximum 0.5\n"
        "/parameters/pairs/1 [type] must be string, not integer\n"
        "/parameters/extra [additionalProperties] property 'extra' is not allowed\n"
        "/a~1b [const] must be 1\n"
        "/t~0 [enum] must be one of [\"x\",\"y\"]\n"
        " [required] missing required property 'exchange'\n");
    expect_errors("{\"properties\":{\"p\":{\"minItems\":2,\"maxItems\":0}}}",
                  "{\"p\":[1]}",
                  "/p [minItems] array has 1 item, fewer than the minimum 2\n"
                  "/p [maxItems] array has 1 item, more than the maximum 0\n");
    expect_errors("{\"exclusiveMaximum\":3,\"exclusiveMinimum\":3,\"minimum\":4}", "3",
                  " [minimum] 3 is less than the minimum 4\n"
                  " [exclusiveMinimum] 3 is not greater than the exclusive minimum 3\n"
                  " [exclusiveMaximum] 3 is not less than the exclusive maximum 3\n");
    expect_errors("{\"anyOf\":[{\"type\":\"string\"},{\"minimum\":5}]}", "1",
                  " [anyOf] does not match any of the 2 schemas in anyOf\n");
    expect_errors("{\"oneOf\":[{\"minimum\":0},{\"maximum\":5},{}]}", "1",
                  " [oneOf] matches both schema 0 and schema 1 of oneOf; it must "
                  "match exactly one\n");
    expect_errors("{\"not\":{\"type\":\"null\"}}", "null",
                  " [not] must not match the schema in not\n");
    expect_errors("{\"dependencies\":{\"a\":[\"b\",\"c\"]}}", "{\"a\":1,\"c\":1}",
                  " [dependencies] property 'a' requires property 'b'\n");
    expect_errors("{\"propertyNames\":{\"maxLength\":2}}", "{\"abc\":1}",
                  "/abc [propertyNames] property name 'abc' does not match "
                  "propertyNames\n");
    expect_errors("{\"items\":[{}],\"additionalItems\":false}", "[1,2,3]",
                  " [additionalItems] array has 3 items, more than the 1 that "
                  "items allows\n");
    expect_errors("{\"items\":{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":10},"
                  "\"else\":{\"maximum\":0}}}", "[15, 5]",
                  "/0 [multipleOf] 15 is not a multiple of 10\n"
                  "/1 [maximum] 5 is greater than the maximum 0\n");
    expect_errors("{\"contains\":{\"const\":3},\"minProperties\":1}", "[1,2]",
                  " [contains] array has no item that matches contains\n");
    expect_errors("false", "{}", " [false] no value is allowed here\n");
    /* Long strings are cut in messages. */
    assert_int_equal(check("{\"maxLength\":1}", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""),
                     RZ_EINVALID);
    assert_non_null(strstr(g_errs.data, "...\" is longer than 1 character\n"));
}

static void test_if_then_else_errors(void **state)
{
    (void)state;
    /* The invalid case of the if/then above, where errors are expected. */
    const char *s = "{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":10},"
                    "\"else\":{\"maximum\":0}}";
    assert_false(valid(s, "15"));
    assert_false(valid(s, "5"));
    assert_true(valid(s, "20"));
    assert_true(valid(s, "-1"));
    assert_true(valid(s, "\"not a number\""));
}

static int stop_at_first(void *ud, const rz_schema_error *e)
{
    (void)e;
    (*(int *)ud)++;
    return 1;
}

static void test_stop_and_first_error(void **state)
{
    (void)state;
    rz_schema *s = compile("{\"items\":{\"type\":\"string\"}}");
    int calls = 0;
    assert_int_equal(rz_schema_validate(s, "[1,2,3]", 7, stop_at_first, &calls),
                     RZ_EINVALID);
    assert_int_equal(calls, 1);
    /* Without a callback the first error is the thread's last error. */
    assert_int_equal(rz_schema_validate(s, "[\"a\",2]", 7, NULL, NULL), RZ_EINVALID);
    assert_string_equal(rz_error_last()->pointer, "/1");
    assert_string_equal(rz_error_last()->message, "/1: must be string, not integer");
    assert_int_equal(rz_schema_validate(s, "[1,", 3, NULL, NULL), RZ_ESYNTAX);
    assert_int_equal(rz_schema_validate(s, "[] x", 4, NULL, NULL), RZ_ESYNTAX);
    assert_int_equal(rz_schema_validate(s, "  [ ]\n ", 7, NULL, NULL), RZ_OK);
    assert_int_equal(rz_schema_validate(NULL, "1", 1, NULL, NULL), RZ_EINVAL);
    rz_schema_free(s);
    rz_schema_free(NULL);
}

/* ---- Compile errors ---- */

static void test_compile_errors(void **state)
{
    (void)state;
    assert_int_equal(compile_rc("{\"type\": }"), RZ_ESYNTAX);
    assert_int_equal(rz_error_last()->line, 1);
    assert_int_equal(compile_rc("{} {}"), RZ_ESYNTAX);
    assert_int_equal(compile_rc("3"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"type\":\"text\"}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"type\":[\"string\",3]}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"minLength\":-1}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"minItems\":1.5}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"maximum\":\"5\"}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"required\":[1]}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"enum\":3}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"allOf\":[]}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"properties\":{\"a\":3}}"), RZ_EINVAL);
    assert_string_equal(rz_error_last()->pointer, "/properties/a");
    assert_int_equal(compile_rc("{\"items\":[{},7]}"), RZ_EINVAL);
    assert_string_equal(rz_error_last()->pointer, "/items/1");
    assert_int_equal(compile_rc("{\"dependencies\":{\"a\":[1]}}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"uniqueItems\":1}"), RZ_EINVAL);
    /* Unknown keywords and format are ignored. */
    assert_int_equal(compile_rc("{\"format\":\"email\",\"x-ui\":{\"a\":1}}"), RZ_OK);
    /* Siblings of $ref are ignored, broken or not. */
    assert_int_equal(compile_rc("{\"definitions\":{\"a\":{}},"
                                "\"properties\":{\"p\":{\"$ref\":\"#/definitions/a\","
                                "\"maxItems\":\"x\"}}}"), RZ_OK);
}

/* ---- $ref ---- */

static void test_ref_resolution(void **state)
{
    (void)state;
    const char *tree =
        "{\"definitions\":{\"node\":{\"type\":\"object\",\"required\":[\"v\"],"
        "  \"properties\":{\"v\":{\"type\":\"integer\"},"
        "   \"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/node\"}}},"
        "  \"additionalProperties\":false}},"
        " \"$ref\":\"#/definitions/node\"}";
    /* A tree 200 levels deep, then the same with a bad innermost node. */
    for (int bad = 0; bad < 2; bad++) {
        rz__buf b = {0};
        for (int i = 0; i < 200; i++)
            rz__buf_puts(&b, "{\"v\":1,\"kids\":[");
        rz__buf_puts(&b, bad ? "{\"v\":\"2\"}" : "{\"v\":2}");
        for (int i = 0; i < 200; i++)
            rz__buf_puts(&b, "]}");
        assert_int_equal(valid(tree, b.data), !bad);
        if (bad) {
            assert_non_null(strstr(g_errs.data, "/kids/0/kids/0/kids/0"));
            assert_non_null(strstr(g_errs.data, "/v [type] must be integer, not string"));
        }
        rz__buf_free(&b);
    }
    /* "#" is the root; pointers with ~0 ~1 and %-escapes. */
    assert_false(valid("{\"properties\":{\"a\":{\"$ref\":\"#\"}},\"maxProperties\":1}",
                       "{\"a\":{\"a\":{\"b\":1,\"c\":2}}}"));
    assert_true(valid("{\"definitions\":{\"a b\":{\"type\":\"null\"},"
                      "\"c/d\":{\"type\":\"string\"}},"
                      "\"items\":[{\"$ref\":\"#/definitions/a%20b\"},"
                      "{\"$ref\":\"#/definitions/c~1d\"}]}", "[null,\"s\"]"));
    assert_false(valid("{\"definitions\":{\"a b\":{\"type\":\"null\"}},"
                       "\"items\":{\"$ref\":\"#/definitions/a%20b\"}}", "[1]"));
    /* A ref into an array of schemas. */
    assert_false(valid("{\"anyOf\":[{\"type\":\"string\"}],"
                       "\"not\":{\"$ref\":\"#/anyOf/0\"}}", "\"s\""));
}

static void test_ref_errors(void **state)
{
    (void)state;
    assert_int_equal(compile_rc("{\"$ref\":\"http://example.com/s.json\"}"),
                     RZ_EUNSUPPORTED);
    assert_int_equal(compile_rc("{\"$ref\":\"other.json#/a\"}"), RZ_EUNSUPPORTED);
    assert_int_equal(compile_rc("{\"$ref\":\"#/definitions/missing\"}"), RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "points to nothing"));
    assert_int_equal(compile_rc("{\"$ref\":\"#/definitions/a%zz\"}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"$ref\":\"#foo\"}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"$ref\":\"#/items/07\",\"items\":[{}]}"), RZ_EINVAL);
    /* A ref to something that is not a schema. */
    assert_int_equal(compile_rc("{\"$ref\":\"#/x\",\"x\":3}"), RZ_EINVAL);
    /* Pure $ref loops are refused at compile time... */
    assert_int_equal(compile_rc("{\"$ref\":\"#\"}"), RZ_EINVAL);
    assert_int_equal(compile_rc("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},"
                                "\"b\":{\"$ref\":\"#/definitions/c\"},"
                                "\"c\":{\"$ref\":\"#/definitions/a\"}},"
                                "\"properties\":{\"x\":{\"$ref\":\"#/definitions/a\"}}}"),
                     RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "loop"));
    /* ...a loop through a keyword fails at validation, bounded. */
    rz_schema *s = compile("{\"allOf\":[{\"$ref\":\"#\"}]}");
    assert_int_equal(rz_schema_validate(s, "1", 1, NULL, NULL), RZ_ETOOBIG);
    assert_non_null(strstr(rz_error_last()->message, "deeper"));
    rz_schema_free(s);
    /* A long, loop-free chain is fine. */
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"$ref\":\"#/definitions/d0\",\"definitions\":{");
    for (int i = 0; i < 500; i++)
        rz__buf_printf(&b, "\"d%d\":{\"$ref\":\"#/definitions/d%d\"},", i, i + 1);
    rz__buf_puts(&b, "\"d500\":{\"type\":\"string\"}}}");
    assert_true(valid(b.data, "\"x\""));
    assert_false(valid(b.data, "1"));
    rz__buf_free(&b);
}

/* ---- Hostile schemas ---- */

static void test_exponential_schema(void **state)
{
    (void)state;
    /* d_i = anyOf [d_{i+1}, d_{i+1}] and the last is false: 2^40 paths. */
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"$ref\":\"#/definitions/d0\",\"definitions\":{");
    for (int i = 0; i < 40; i++)
        rz__buf_printf(&b, "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/definitions/d%d\"},"
                       "{\"$ref\":\"#/definitions/d%d\"}]},", i, i + 1, i + 1);
    rz__buf_puts(&b, "\"d40\":false}}");
    rz_schema *s = compile(b.data);
    cJSON *one = cJSON_CreateNumber(1);
    rz__schema_opts o = {.budget = 200000};
    double t0 = now_s();
    assert_int_equal(rz__schema_eval(s, one, &o, NULL, NULL), RZ_ETOOBIG);
    assert_true(now_s() - t0 < 2.0);
    assert_non_null(strstr(rz_error_last()->message, "too much work"));
    cJSON_Delete(one);
    rz_schema_free(s);
    rz__buf_free(&b);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* A schema nested 400 levels (items of items ...) and an instance to
     * match; then one 900 levels of allOf. */
    rz__buf s = {0}, x = {0};
    for (int i = 0; i < 400; i++) {
        rz__buf_puts(&s, "{\"items\":");
        rz__buf_puts(&x, "[");
    }
    rz__buf_puts(&s, "{\"type\":\"integer\"}");
    rz__buf_puts(&x, "1");
    for (int i = 0; i < 400; i++) {
        rz__buf_puts(&s, "}");
        rz__buf_puts(&x, "]");
    }
    assert_true(valid(s.data, x.data));
    rz__buf_free(&s);
    for (int i = 0; i < 450; i++)
        rz__buf_puts(&s, "{\"allOf\":[");
    rz__buf_puts(&s, "{\"type\":\"string\"}");
    for (int i = 0; i < 450; i++)
        rz__buf_puts(&s, "]}");
    assert_false(valid(s.data, "1"));
    assert_true(valid(s.data, "\"a\""));
    rz__buf_free(&s);
    rz__buf_free(&x);
    /* Deeper than cJSON's nesting limit: a syntax error, not a crash. */
    for (int i = 0; i < 5000; i++)
        rz__buf_puts(&s, "{\"not\":");
    assert_int_equal(compile_rc(s.data), RZ_ESYNTAX);
    rz__buf_free(&s);
}

static void test_many_properties(void **state)
{
    (void)state;
    rz__buf s = {0}, x = {0};
    rz__buf_puts(&s, "{\"additionalProperties\":false,\"properties\":{");
    rz__buf_puts(&x, "{");
    for (int i = 0; i < 20000; i++) {
        rz__buf_printf(&s, "%s\"p%d\":{\"type\":\"integer\"}", i ? "," : "", i);
        rz__buf_printf(&x, "%s\"p%d\":%d", i ? "," : "", i, i);
    }
    rz__buf_puts(&s, "}}");
    rz__buf_puts(&x, "}");
    double t0 = now_s();
    assert_true(valid(s.data, x.data));
    assert_true(now_s() - t0 < 5.0);
    rz__buf_free(&s);
    rz__buf_free(&x);
}

/* ---- Templates (the flow's "${{ }}" values) ---- */

static bool is_template(const cJSON *x)
{
    return cJSON_IsString(x) && strstr(x->valuestring, "${{");
}

static void test_opaque_values(void **state)
{
    (void)state;
    rz_schema *s = compile("{\"properties\":{\"n\":{\"type\":\"integer\",\"maximum\":3},"
                           "\"m\":{\"enum\":[1]}}}");
    cJSON *x = cJSON_Parse("{\"n\":\"${{ inputs.n }}\",\"m\":\"${{ x }}\"}");
    rz__schema_opts o = {.opaque = is_template};
    assert_int_equal(rz__schema_eval(s, x, &o, NULL, NULL), RZ_OK);
    assert_int_equal(rz__schema_eval(s, x, NULL, NULL, NULL), RZ_EINVALID);
    cJSON_Delete(x);
    rz_schema_free(s);
}

/* ---- Defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    rz_schema *s = compile(
        "{\"definitions\":{\"mode\":{\"enum\":[\"paper\",\"live\"],\"default\":\"paper\"}},"
        " \"properties\":{"
        "  \"mode\":{\"$ref\":\"#/definitions/mode\"},"
        "  \"dryRun\":{\"type\":\"boolean\",\"default\":true},"
        "  \"risk\":{\"type\":\"object\",\"default\":{},"
        "           \"properties\":{\"max\":{\"default\":0.5}}},"
        "  \"legs\":{\"items\":{\"properties\":{\"w\":{\"default\":1}}}},"
        "  \"kept\":{\"default\":1}},"
        " \"allOf\":[{\"properties\":{\"fromAllOf\":{\"default\":[1,2]}}}]}");
    char *out = NULL;
    const char *in = "{\"kept\":2,\"legs\":[{},{\"w\":3}]}";
    assert_int_equal(rz_schema_apply_defaults(s, in, strlen(in), &out), RZ_OK);
    cJSON *got = cJSON_Parse(out);
    cJSON *want = cJSON_Parse(
        "{\"kept\":2,\"legs\":[{\"w\":1},{\"w\":3}],\"mode\":\"paper\","
        "\"dryRun\":true,\"risk\":{\"max\":0.5},\"fromAllOf\":[1,2]}");
    if (!rz__sc_equal(got, want))
        fail_msg("defaults gave %s", out);
    cJSON_Delete(got);
    cJSON_Delete(want);
    rz_free(out);
    /* Not an object: unchanged. */
    assert_int_equal(rz_schema_apply_defaults(s, "[1]", 3, &out), RZ_OK);
    assert_string_equal(out, "[1]");
    rz_free(out);
    assert_int_equal(rz_schema_apply_defaults(s, "{", 1, &out), RZ_ESYNTAX);
    assert_null(out);
    rz_schema_free(s);
    /* A recursive schema with defaults terminates. */
    s = compile("{\"properties\":{\"a\":{\"$ref\":\"#\"},\"b\":{\"default\":1}},"
                "\"allOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#\"}]}");
    assert_int_equal(rz_schema_apply_defaults(s, "{\"a\":{}}", 8, &out), RZ_OK);
    assert_string_equal(out, "{\"a\":{\"b\":1},\"b\":1}");
    rz_free(out);
    rz_schema_free(s);
    /* Defaults that describe an unbounded tree stop at a cap. */
    s = compile("{\"definitions\":{\"n\":{\"default\":{},\"properties\":{"
                "\"a\":{\"$ref\":\"#/definitions/n\"},"
                "\"b\":{\"$ref\":\"#/definitions/n\"}}}},"
                "\"$ref\":\"#/definitions/n\"}");
    double t0 = now_s();
    assert_int_equal(rz_schema_apply_defaults(s, "{}", 2, &out), RZ_ETOOBIG);
    assert_null(out);
    assert_true(now_s() - t0 < 2.0);
    rz_schema_free(s);
}

/* ---- rz_schema_check: FILE:LINE:COLUMN ---- */

static void test_check_locations(void **state)
{
    (void)state;
    rz_schema *s = compile("{\"properties\":{\"parameters\":{\"properties\":"
                           "{\"bidSpread\":{\"maximum\":0.5}}}},\"required\":[\"x\"]}");
    const char *doc = "{\n"
                      "  \"parameters\": {\n"
                      "    \"bidSpread\": 0.7\n"
                      "  }\n"
                      "}\n";
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_schema_check(s, doc, strlen(doc), "cfg.json", d), RZ_EINVALID);
    assert_int_equal(rz_diags_count(d), 2);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_string_equal(x->file, "cfg.json");
    assert_int_equal(x->line, 3);
    assert_int_equal(x->column, 18);
    assert_string_equal(x->message, "/parameters/bidSpread: 0.7 is greater than "
                        "the maximum 0.5");
    x = rz_diags_get(d, 1);
    assert_int_equal(x->line, 1);
    assert_string_equal(x->message, "(root): missing required property 'x'");
    rz_diags_free(d);
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_schema_check(s, "{\n  x", 5, "bad.json", d), RZ_ESYNTAX);
    assert_int_equal(rz_diags_count(d), 1);
    assert_int_equal(rz_diags_get(d, 0)->line, 2);
    rz_diags_free(d);
    rz_schema_free(s);
}

/* ---- Step configs in rz_flow_validate ---- */

static const char *const manifest =
    "{\"id\":\"mm\",\"version\":\"1.0.0\",\"name\":\"Market maker\","
    " \"description\":\"test\",\"inputs\":[],\"outputs\":[],\"credentials\":[],"
    " \"exec\":{\"adapter\":\"process\",\"command\":[\"true\"]},"
    " \"config\":{\"type\":\"object\",\"required\":[\"exchange\",\"parameters\"],"
    "  \"additionalProperties\":false,"
    "  \"definitions\":{\"spread\":{\"type\":\"number\",\"minimum\":0,\"maximum\":0.5}},"
    "  \"properties\":{"
    "   \"exchange\":{\"enum\":[\"binance\",\"kraken\"]},"
    "   \"dryRun\":{\"type\":\"boolean\",\"default\":true},"
    "   \"parameters\":{\"type\":\"object\",\"properties\":{"
    "     \"bidSpread\":{\"$ref\":\"#/definitions/spread\"},"
    "     \"pairs\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"string\","
    "                \"pattern\":\"^[A-Z]+-[A-Z]+$\"}},"
    "     \"amount\":{\"type\":\"number\",\"exclusiveMinimum\":0}}}}}}";

static void test_flow_configs(void **state)
{
    (void)state;
    char dir[] = "/tmp/rz-schema-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[64], path[96];
    snprintf(sub, sizeof sub, "%s/mm", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/module.json", sub);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(manifest, f);
    fclose(f);
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    const char *src =
        "flux: 1\n"
        "inputs: {amount: {type: number}}\n"
        "steps:\n"
        "  a:\n"
        "    module: mm\n"                                      /* 5 */
        "    config:\n"
        "      exchange: kraken\n"
        "      parameters:\n"
        "        bidSpread: 0.7\n"
        "        pairs: [BTC-USDT, eth]\n"
        "        amount: \"${{ inputs.amount }}\"\n"              /* 10 */
        "      dryrun: false\n"
        "  b:\n"
        "    module: mm\n"
        "    config: {exchange: ftx, parameters: {pairs: []}}\n" /* 15 */
        "  c:\n"
        "    module: mm\n"
        "    config: {exchange: binance, parameters: {amount: 5}}\n";
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *fl;
    assert_int_equal(rz_flow_parse(&fl, src, strlen(src), RZ_FORMAT_YAML, "mm.yaml",
                                   d), RZ_OK);
    assert_int_equal(rz_flow_validate(fl, reg, d), RZ_EINVALID);
    char *text = NULL;
    assert_int_equal(rz_diags_to_text(d, &text), RZ_OK);
    /* Nested values are located; the template in 'amount' is not checked;
     * step c is valid once dryRun defaults. (An empty flow sequence is
     * located at its key.) */
    const char *want =
        "mm.yaml:9:20: error: config 'parameters/bidSpread' of step 'a': 0.7 is "
        "greater than the maximum 0.5\n"
        "mm.yaml:10:27: error: config 'parameters/pairs/1' of step 'a': \"eth\" does "
        "not match the pattern '^[A-Z]+-[A-Z]+$'\n"
        "mm.yaml:12:15: error: module mm has no config 'dryrun'; did you mean "
        "'dryRun'?\n"
        "mm.yaml:15:24: error: config 'exchange' of step 'b' must be one of "
        "[\"binance\",\"kraken\"]\n"
        "mm.yaml:15:42: error: config 'parameters/pairs' of step 'b': array has 0 "
        "items, fewer than the minimum 1\n";
    if (strcmp(text, want) != 0)
        fprintf(stderr, "got:\n%s", text);
    assert_string_equal(text, want);
    rz_free(text);
    /* Defaults were applied into the configs. */
    const cJSON *dry = cJSON_GetObjectItemCaseSensitive(
        fl->steps[2].config, "dryRun");
    assert_true(cJSON_IsTrue(dry));
    rz_diags_free(d);
    rz_flow_free(fl);
    rz_registry_free(reg);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_multiple_of_decimals),
        cmocka_unit_test(test_unicode_lengths),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_catastrophic_regex),
        cmocka_unit_test(test_equality),
        cmocka_unit_test(test_unique_large),
        cmocka_unit_test(test_huge_enum),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_if_then_else_errors),
        cmocka_unit_test(test_stop_and_first_error),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_ref_resolution),
        cmocka_unit_test(test_ref_errors),
        cmocka_unit_test(test_exponential_schema),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_properties),
        cmocka_unit_test(test_opaque_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_check_locations),
        cmocka_unit_test(test_flow_configs),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rz__buf_free(&g_errs);
    return rc;
}
