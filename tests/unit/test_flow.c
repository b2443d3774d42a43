/* Flow loading: JSON builder, YAML FluxGraph and CBOR; shape and syntax
 * diagnostics with locations; limits against hostile input; export round
 * trips; credential stripping; dependency linking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "flow/model.h"
#include "rhizos/rhizos.h"

#ifndef RZ_SOURCE_ROOT
#define RZ_SOURCE_ROOT "."
#endif

static char *fixture_path(const char *name)
{
    const char *root = getenv("RZ_SOURCE_ROOT");
    char *p = malloc(4096);
    assert_non_null(p);
    snprintf(p, 4096, "%s/tests/data/flows/%s", root ? root : RZ_SOURCE_ROOT, name);
    return p;
}

static rz_flow *load_fixture(const char *name)
{
    char *p = fixture_path(name);
    rz_flow *f = NULL;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_load(&f, p, RZ_FORMAT_AUTO, d);
    if (rc != RZ_OK) {
        char *t = NULL;
        (void)!rz_diags_to_text(d, &t);   /* diagnostics of a failure */
        fprintf(stderr, "%s", t ? t : "");
        rz_free(t);
    }
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(rz_diags_error_count(d), 0);
    rz_diags_free(d);
    free(p);
    return f;
}

/* Parse text that must fail; returns the diagnostics. */
static rz_diags *parse_fail(const char *text, rz_format fmt, int want_rc)
{
    rz_diags *d;
    rz_flow *f = (rz_flow *)1;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, text, strlen(text), fmt, "doc", d);
    assert_int_equal(rc, want_rc);
    assert_null(f);
    assert_true(rz_diags_error_count(d) > 0);
    return d;
}

static rz_flow *parse_ok(const void *data, size_t len, rz_format fmt)
{
    rz_diags *d;
    rz_flow *f = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&f, data, len, fmt, NULL, d);
    if (rc != RZ_OK) {
        char *t = NULL;
        (void)!rz_diags_to_text(d, &t);   /* diagnostics of a failure */
        fprintf(stderr, "%s", t ? t : "");
        rz_free(t);
    }
    assert_int_equal(rc, RZ_OK);
    assert_non_null(f);
    rz_diags_free(d);
    return f;
}

/* LINE:COLUMN of the first occurrence of `needle` in `text` (computed here,
 * independently of the library). */
static void where(const char *text, const char *needle, uint32_t *line, uint32_t *col)
{
    const char *p = strstr(text, needle);
    assert_non_null(p);
    *line = 1;
    const char *bol = text;
    for (const char *q = text; q < p; q++)
        if (*q == '\n') {
            (*line)++;
            bol = q + 1;
        }
    *col = (uint32_t)(p - bol) + 1;
}

/* Find the diagnostic with this pointer; check code and location. */
static void expect_diag(const rz_diags *d, const char *pointer, int code,
                        uint32_t line, uint32_t col)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (strcmp(x->pointer, pointer) == 0 && x->code == code) {
            if (x->line != line || x->column != col)
                fprintf(stderr, "%s: got %u:%u want %u:%u (%s)\n", pointer, x->line,
                        x->column, line, col, x->message);
            assert_int_equal(x->line, line);
            assert_int_equal(x->column, col);
            assert_string_equal(x->file, "doc");
            return;
        }
    }
    fprintf(stderr, "no diagnostic %s code %d\n", pointer, code);
    fail();
}

static char *to_json(const rz_flow *f)
{
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(rz_flow_to_json(f, 0, &s, &n), RZ_OK);
    assert_int_equal(strlen(s), n);
    return s;
}

/* ---- loading ---- */

static void builder_json_loads(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("builder.json");
    assert_int_equal(rz_flow_format(f), RZ_FORMAT_JSON);
    assert_true(f->builder);
    assert_string_equal(rz_flow_name(f), "Trading pipeline");
    assert_non_null(strstr(rz_flow_file(f), "builder.json"));
    assert_string_equal(f->id, "flow-1");
    assert_string_equal(f->created_at, "2024-05-01T10:00:00Z");
    assert_int_equal(rz_flow_step_count(f), 3);
    assert_string_equal(rz_flow_step_id(f, 0), "fetch");
    assert_string_equal(rz_flow_step_module(f, 1), "llm-agent");
    assert_null(rz_flow_step_id(f, 3));
    assert_int_equal(rz_flow_step_find(f, "trade"), 2);
    assert_int_equal(rz_flow_step_find(f, "nope"), RZ_NPOS);

    const rz__step *fetch = &f->steps[0];
    assert_string_equal(fetch->module_spec, "^1.2");
    assert_string_equal(fetch->ptr, "/nodes/0");
    assert_int_equal(fetch->n_creds, 1);
    assert_string_equal(fetch->creds[0].field, "api");
    assert_string_equal(fetch->creds[0].credential_id, "cred-123");
    assert_string_equal(fetch->creds[0].type, "api_key");
    assert_string_equal(fetch->creds[0].ptr, "/nodes/0/credentials/api");
    assert_int_equal(cJSON_GetObjectItem(fetch->config, "retries")->valuedouble, 3);
    assert_non_null(fetch->position);
    assert_non_null(cJSON_GetObjectItem(fetch->extra, "label"));

    const rz__step *an = &f->steps[1];
    assert_int_equal(an->retry.max_attempts, 3);
    assert_int_equal(an->retry.backoff, RZ_BACKOFF_EXPONENTIAL);
    assert_int_equal(an->retry.initial_ms, 500);
    assert_int_equal(an->retry.max_ms, 8000);
    assert_string_equal(an->when, "${{ steps.fetch.outputs.status }} == 200");

    const rz__step *tr = &f->steps[2];
    assert_int_equal(tr->timeout_s, 120);
    assert_int_equal(tr->on_failure, RZ_ON_FAILURE_CONTINUE);
    assert_int_equal(tr->n_inputs, 2);
    assert_string_equal(tr->inputs[0].name, "signal");
    assert_string_equal(tr->inputs[0].ptr, "/nodes/2/inputs/signal");
    assert_int_equal(tr->n_needs, 1);
    assert_null(tr->module_spec);
    assert_non_null(tr->config);

    assert_int_equal(f->n_conns, 2);
    assert_string_equal(f->conns[1].id, "c2");
    assert_string_equal(f->conns[1].src_node, "analyze");
    assert_string_equal(f->conns[1].dst_port, "signal");
    assert_string_equal(f->conns[1].ptr, "/connections/1");
    assert_int_equal(f->conns[1].src, RZ_NPOS);
    assert_non_null(cJSON_GetObjectItem(f->extra, "ui"));
    rz_flow_free(f);
}

static void yaml_loads_with_core_schema(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("wordcount.yaml");
    assert_int_equal(rz_flow_format(f), RZ_FORMAT_YAML);
    assert_false(f->builder);
    assert_string_equal(rz_flow_name(f), "wordcount");
    assert_string_equal(f->description, "Count words in a text, fan-out / fan-in");
    assert_true(cJSON_IsArray(f->triggers));
    assert_int_equal(f->n_inputs, 2);
    assert_string_equal(f->inputs[0].name, "text");
    assert_string_equal(f->inputs[0].type, "string");
    assert_true(f->inputs[0].required);
    assert_null(f->inputs[0].def);
    assert_int_equal(f->inputs[1].def->valuedouble, 3);

    /* Document order is kept. */
    const char *order[] = {"split", "count_a", "count_b", "merge"};
    assert_int_equal(rz_flow_step_count(f), 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(rz_flow_step_id(f, i), order[i]);
    const rz__step *split = &f->steps[0];
    assert_string_equal(split->module_id, "wordcount-split");
    assert_string_equal(split->module_spec, "1.0.0");
    assert_string_equal(split->ptr, "/steps/split");
    const rz__step *ca = &f->steps[1];
    assert_int_equal(ca->n_needs, 1);           /* needs: split (a string) */
    assert_string_equal(ca->needs[0], "split");
    assert_string_equal(ca->module_spec, "^1");
    assert_int_equal(ca->retry.max_attempts, 3);
    assert_null(f->steps[2].module_spec);

    const rz__step *m = &f->steps[3];
    assert_int_equal(m->on_failure, RZ_ON_FAILURE_CONTINUE);
    assert_non_null(m->when);
    const cJSON *c = m->config;
    assert_true(cJSON_IsString(cJSON_GetObjectItem(c, "quoted")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(c, "plain")));
    assert_true(cJSON_GetObjectItem(c, "float")->valuedouble == 1.5);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(c, "flag")));   /* YAML 1.2: yes is text */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "nothing")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "truth")));
    assert_int_equal(cJSON_GetObjectItem(c, "hex")->valuedouble, 31);
    assert_string_equal(m->creds[0].credential_id, "vault-7");
    rz_flow_free(f);
}

static void format_detection_by_content(void **state)
{
    (void)state;
    const char *json = "  {\"nodes\": [{\"id\": \"a\", \"moduleId\": \"m\"}]}";
    rz_flow *f = parse_ok(json, strlen(json), RZ_FORMAT_AUTO);
    assert_int_equal(rz_flow_format(f), RZ_FORMAT_JSON);
    assert_string_equal(rz_flow_file(f), "<input>");
    unsigned char *cbor;
    size_t n;
    assert_int_equal(rz_flow_to_cbor(f, &cbor, &n), RZ_OK);
    rz_flow_free(f);
    assert_true(cbor[0] >= 0xa0 && cbor[0] <= 0xbf);
    f = parse_ok(cbor, n, RZ_FORMAT_AUTO);
    assert_int_equal(rz_flow_format(f), RZ_FORMAT_CBOR);
    assert_true(f->builder);
    rz_flow_free(f);
    rz_free(cbor);
    const char *yaml = "steps:\n  a: {module: m}\n";
    f = parse_ok(yaml, strlen(yaml), RZ_FORMAT_AUTO);
    assert_int_equal(rz_flow_format(f), RZ_FORMAT_YAML);
    rz_flow_free(f);
    /* JSON written in the FluxGraph shape. */
    const char *fj = "{\"steps\": {\"x\": {\"module\": \"m@2\", \"needs\": []}}}";
    f = parse_ok(fj, strlen(fj), RZ_FORMAT_JSON);
    assert_false(f->builder);
    assert_string_equal(f->steps[0].module_spec, "2");
    rz_flow_free(f);
}

static void missing_file_and_bad_arguments(void **state)
{
    (void)state;
    rz_flow *f = (rz_flow *)1;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_load(&f, "/nonexistent/flow.yaml", RZ_FORMAT_AUTO, d), RZ_ENOENT);
    assert_null(f);
    assert_int_equal(rz_diags_count(d), 1);
    rz_diags_free(d);
    assert_int_equal(rz_flow_parse(NULL, "{}", 2, RZ_FORMAT_JSON, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_flow_parse(&f, "{}", 2, (rz_format)9, NULL, NULL), RZ_EINVAL);
    assert_null(f);
    rz_flow_free(NULL);
    assert_string_equal(rz_flow_name(NULL), "");
    assert_int_equal(rz_flow_step_count(NULL), 0);
}

/* ---- shape errors ---- */

static const char json_shapes[] =
    "{\n"
    "  \"nodes\": [\n"
    "    {\"id\": \"a\", \"moduleId\": \"m\", \"retry\": {\"max_attempts\": 0}},\n"
    "    {\"id\": \"b\", \"moduleId\": \"m\", \"on_failure\": \"explode\", \"timeout_s\": -3},\n"
    "    {\"id\": \"c\", \"config\": 5},\n"
    "    \"oops\",\n"
    "    {\"id\": \"e\", \"moduleId\": \"m\", \"credentials\": {\"api\": {\"credentialId\": 7, \"type\": \"k\"}, \"db\": \"plain\"}}\n"
    "  ],\n"
    "  \"connections\": {}\n"
    "}\n";

static void json_shape_errors_in_one_pass(void **state)
{
    (void)state;
    rz_diags *d = parse_fail(json_shapes, RZ_FORMAT_AUTO, RZ_EINVALID);
    uint32_t l, c;
    where(json_shapes, "0}}", &l, &c);
    expect_diag(d, "/nodes/0/retry/max_attempts", RZ_EINVALID, l, c);
    assert_int_equal(l, 3);
    assert_int_equal(c, 60);
    where(json_shapes, "\"explode\"", &l, &c);
    expect_diag(d, "/nodes/1/on_failure", RZ_EINVALID, l, c);
    where(json_shapes, "-3", &l, &c);
    expect_diag(d, "/nodes/1/timeout_s", RZ_EINVALID, l, c);
    where(json_shapes, "5}", &l, &c);
    expect_diag(d, "/nodes/2/config", RZ_EINVALID, l, c);
    where(json_shapes, "{\"id\": \"c\"", &l, &c);
    expect_diag(d, "/nodes/2", RZ_EINVALID, l, c);      /* no moduleId */
    where(json_shapes, "\"oops\"", &l, &c);
    expect_diag(d, "/nodes/3", RZ_EINVALID, l, c);
    where(json_shapes, "7,", &l, &c);
    expect_diag(d, "/nodes/4/credentials/api/credentialId", RZ_ECREDENTIAL, l, c);
    where(json_shapes, "\"plain\"", &l, &c);
    expect_diag(d, "/nodes/4/credentials/db", RZ_ECREDENTIAL, l, c);
    where(json_shapes, "{}\n}", &l, &c);
    expect_diag(d, "/connections", RZ_EINVALID, l, c);
    assert_int_equal(rz_diags_error_count(d), 9);
    /* The first problem is also the thread's last error. */
    assert_int_equal(rz_error_last()->code, RZ_EINVALID);
    assert_string_equal(rz_error_last()->pointer, "/nodes/0/retry/max_attempts");
    rz_diags_free(d);
}

static const char yaml_shapes[] =
    "flux: 1\n"
    "steps:\n"
    "  a:\n"
    "    module: m@1\n"
    "    retry:\n"
    "      max_attempts: -1\n"
    "      backoff: linear\n"
    "  b:\n"
    "    needs: 5\n"
    "  c: 7\n"
    "  d:\n"
    "    module: x\n"
    "    on_failure: maybe\n"
    "    credentials:\n"
    "      api: {credentialId: 5, type: t}\n"
    "    when: [1]\n";

static void yaml_shape_errors_in_one_pass(void **state)
{
    (void)state;
    rz_diags *d = parse_fail(yaml_shapes, RZ_FORMAT_YAML, RZ_EINVALID);
    expect_diag(d, "/steps/a/retry/max_attempts", RZ_EINVALID, 6, 21);
    expect_diag(d, "/steps/a/retry/backoff", RZ_EINVALID, 7, 16);
    expect_diag(d, "/steps/b/needs", RZ_EINVALID, 9, 12);
    expect_diag(d, "/steps/b", RZ_EINVALID, 8, 3);          /* no module */
    expect_diag(d, "/steps/c", RZ_EINVALID, 10, 6);         /* not a map */
    expect_diag(d, "/steps/d/on_failure", RZ_EINVALID, 13, 17);
    expect_diag(d, "/steps/d/credentials/api/credentialId", RZ_ECREDENTIAL, 15, 27);
    expect_diag(d, "/steps/d/when", RZ_EINVALID, 16, 5);
    assert_int_equal(rz_diags_error_count(d), 8);
    rz_diags_free(d);
}

static void top_level_shapes(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("[1, 2]", RZ_FORMAT_JSON, RZ_EINVALID);
    expect_diag(d, "", RZ_EINVALID, 1, 1);
    rz_diags_free(d);
    d = parse_fail("{\"name\": \"x\"}", RZ_FORMAT_JSON, RZ_EINVALID);   /* no nodes */
    rz_diags_free(d);
    d = parse_fail("flux: 2\nsteps: {}\n", RZ_FORMAT_YAML, RZ_EINVALID);
    expect_diag(d, "/flux", RZ_EINVALID, 1, 7);
    rz_diags_free(d);
    d = parse_fail("{\"nodes\": [], \"steps\": {}}", RZ_FORMAT_JSON, RZ_EINVALID);
    rz_diags_free(d);
    d = parse_fail("inputs:\n  n: {type: string, colour: red}\nsteps: {}\n", RZ_FORMAT_YAML,
                   RZ_EINVALID);
    expect_diag(d, "/inputs/n/colour", RZ_EINVALID, 2, 29);
    rz_diags_free(d);
    d = parse_fail("{\"nodes\": [{\"moduleId\": \"m\"}], \"connections\": [{\"source\": {\"nodeId\": 1, \"port\": \"o\"}}]}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    expect_diag(d, "/nodes/0", RZ_EINVALID, 1, 12);                  /* no id */
    expect_diag(d, "/connections/0/source/nodeId", RZ_EINVALID, 1, 70);
    expect_diag(d, "/connections/0", RZ_EINVALID, 1, 48);            /* no target */
    rz_diags_free(d);
}

/* ---- syntax errors ---- */

static void json_syntax_error_location(void **state)
{
    (void)state;
    const char *doc = "{\n  \"nodes\": [\n    {\"id\": \"a\",, }\n  ]\n}\n";
    rz_diags *d = parse_fail(doc, RZ_FORMAT_JSON, RZ_ESYNTAX);
    assert_int_equal(rz_diags_count(d), 1);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_int_equal(x->code, RZ_ESYNTAX);
    assert_int_equal(x->line, 3);
    assert_int_equal(x->column, 16);
    assert_non_null(strstr(x->message, "','"));
    rz_diags_free(d);

    /* Shape problems before a syntax error are not reported. */
    doc = "{\"nodes\": [{\"id\": 5}, {\"id\": \"b\"} trailing";
    d = parse_fail(doc, RZ_FORMAT_JSON, RZ_ESYNTAX);
    assert_int_equal(rz_diags_count(d), 1);
    assert_int_equal(rz_diags_get(d, 0)->column, 35);
    rz_diags_free(d);

    d = parse_fail("{\"a\": 1} x", RZ_FORMAT_JSON, RZ_ESYNTAX);   /* trailing text */
    assert_int_equal(rz_diags_get(d, 0)->column, 10);
    rz_diags_free(d);
    d = parse_fail("{\"a\": [1, 2", RZ_FORMAT_JSON, RZ_ESYNTAX);   /* truncated */
    assert_int_equal(rz_diags_get(d, 0)->column, 12);
    rz_diags_free(d);
    d = parse_fail("{\"a\": 01}", RZ_FORMAT_JSON, RZ_ESYNTAX);
    rz_diags_free(d);
    d = parse_fail("{\"a\": \"\\q\"}", RZ_FORMAT_JSON, RZ_ESYNTAX);
    rz_diags_free(d);
    d = parse_fail("{\"a\": tru}", RZ_FORMAT_JSON, RZ_ESYNTAX);
    rz_diags_free(d);
    d = parse_fail("", RZ_FORMAT_JSON, RZ_ESYNTAX);
    rz_diags_free(d);
}

static void yaml_syntax_error_location(void **state)
{
    (void)state;
    const char *doc = "steps:\n  a:\n    module: m\n   bad: [1, 2\n";
    rz_diags *d = parse_fail(doc, RZ_FORMAT_YAML, RZ_ESYNTAX);
    assert_int_equal(rz_diags_count(d), 1);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_int_equal(x->line, 4);
    assert_true(x->column >= 1);
    assert_non_null(strstr(x->message, "YAML syntax error"));
    rz_diags_free(d);

    d = parse_fail("steps:\n  a: {module: m\n", RZ_FORMAT_YAML, RZ_ESYNTAX);
    assert_int_equal(rz_diags_get(d, 0)->line, 3);
    rz_diags_free(d);
    d = parse_fail("? [a, b]\n: 1\n", RZ_FORMAT_YAML, RZ_ESYNTAX);   /* non-scalar key */
    assert_int_equal(rz_diags_get(d, 0)->line, 1);
    assert_int_equal(rz_diags_get(d, 0)->column, 3);
    rz_diags_free(d);
    d = parse_fail("steps: *nowhere\n", RZ_FORMAT_YAML, RZ_ESYNTAX);  /* unknown alias */
    rz_diags_free(d);
    d = parse_fail("", RZ_FORMAT_YAML, RZ_EINVALID);   /* empty document */
    rz_diags_free(d);
}

/* ---- limits ---- */

static char *repeat(const char *unit, size_t n, const char *tail)
{
    size_t u = strlen(unit), t = strlen(tail);
    char *s = malloc(u * n + t + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    memcpy(s + u * n, tail, t + 1);
    return s;
}

static void deep_nesting_is_refused(void **state)
{
    (void)state;
    char *s = repeat("[", 100000, "");
    rz_diags *d = parse_fail(s, RZ_FORMAT_JSON, RZ_ETOOBIG);
    assert_int_equal(rz_diags_get(d, 0)->column, RZ_FLOW_MAX_DEPTH + 1);
    rz_diags_free(d);
    s[0] = '{';   /* not even valid, but the depth check comes first */
    d = parse_fail(s, RZ_FORMAT_JSON, RZ_ESYNTAX);
    rz_diags_free(d);
    free(s);

    s = repeat("[", 5000, "");
    char *close = repeat("]", 5000, "");
    char *doc = malloc(strlen(s) * 2 + 32);
    assert_non_null(doc);
    snprintf(doc, strlen(s) * 2 + 32, "steps:\n  a: %s%s\n", s, close);
    d = parse_fail(doc, RZ_FORMAT_YAML, RZ_ETOOBIG);
    assert_int_equal(rz_diags_get(d, 0)->line, 2);
    rz_diags_free(d);
    free(doc);
    free(s);
    free(close);
    s = repeat("[", 100000, "");   /* refused before libyaml sees it */
    d = parse_fail(s, RZ_FORMAT_YAML, RZ_ETOOBIG);
    rz_diags_free(d);
    free(s);

    /* A legitimate nesting just inside the limit loads. */
    s = repeat("[", RZ_FLOW_MAX_DEPTH - 4, "");
    close = repeat("]", RZ_FLOW_MAX_DEPTH - 4, "");
    doc = malloc(strlen(s) * 2 + 128);
    assert_non_null(doc);
    snprintf(doc, strlen(s) * 2 + 128,
             "{\"nodes\": [{\"id\": \"a\", \"moduleId\": \"m\", \"config\": {\"x\": %s%s}}]}",
             s, close);
    rz_flow *f = parse_ok(doc, strlen(doc), RZ_FORMAT_JSON);
    rz_flow_free(f);
    free(doc);
    free(s);
    free(close);
}

static void oversized_input_is_refused(void **state)
{
    (void)state;
    /* The size check happens before a byte is read. */
    const char small[] = "{}";
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f = (rz_flow *)1;
    assert_int_equal(rz_flow_parse(&f, small, (size_t)RZ_FLOW_MAX_BYTES + 1, RZ_FORMAT_JSON,
                                   "big", d), RZ_ETOOBIG);
    assert_null(f);
    assert_int_equal(rz_diags_get(d, 0)->code, RZ_ETOOBIG);
    rz_diags_free(d);
}

static void billion_laughs_is_refused(void **state)
{
    (void)state;
    const char *doc =
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
        "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "steps: {}\n";
    rz_diags *d = parse_fail(doc, RZ_FORMAT_YAML, RZ_ETOOBIG);
    assert_non_null(strstr(rz_diags_get(d, 0)->message, "1000000"));
    rz_diags_free(d);

    /* Small aliases are fine and expand to copies. */
    const char *ok = "x-defaults: &cfg {size: 3}\nsteps:\n  a: {module: m, config: *cfg}\n"
                     "  b: {module: m, config: *cfg}\n";
    rz_flow *f = parse_ok(ok, strlen(ok), RZ_FORMAT_YAML);
    assert_int_equal(cJSON_GetObjectItem(f->steps[1].config, "size")->valuedouble, 3);
    rz_flow_free(f);
}

static void hostile_cbor_fails_cleanly(void **state)
{
    (void)state;
    static const struct { const char *name; unsigned char b[16]; size_t n; int rc; } cases[] = {
        {"huge map", {0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, RZ_ESYNTAX},
        {"huge array", {0xa1, 0x61, 'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 12, RZ_ESYNTAX},
        {"huge string", {0xa1, 0x61, 'a', 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 12, RZ_ESYNTAX},
        {"indefinite map", {0xbf, 0x61, 'a', 0x01, 0xff}, 5, RZ_ESYNTAX},
        {"int key", {0xa1, 0x01, 0x02}, 3, RZ_ESYNTAX},
        {"truncated", {0xa2, 0x61, 'a', 0x01}, 4, RZ_ESYNTAX},
        {"trailing", {0xa0, 0x00}, 2, RZ_ESYNTAX},
        {"bytes", {0xa1, 0x61, 'a', 0x41, 0x00}, 5, RZ_ESYNTAX},
        {"reserved", {0xa1, 0x61, 'a', 0x1c}, 4, RZ_ESYNTAX},
        {"empty map", {0xa0}, 1, RZ_EINVALID},   /* valid CBOR, no steps */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rz_flow *f = (rz_flow *)1;
        rz_diags *d;
        assert_int_equal(rz_diags_new(&d), RZ_OK);
        int rc = rz_flow_parse(&f, cases[i].b, cases[i].n, RZ_FORMAT_CBOR, "doc", d);
        if (rc != cases[i].rc)
            fprintf(stderr, "case %s: rc %d\n", cases[i].name, rc);
        assert_int_equal(rc, cases[i].rc);
        assert_null(f);
        rz_diags_free(d);
    }
    /* Deep nesting: a map holding 100k nested arrays. */
    size_t n = 100000;
    unsigned char *deep = malloc(n + 3);
    assert_non_null(deep);
    deep[0] = 0xa1;
    deep[1] = 0x61;
    deep[2] = 'a';
    memset(deep + 3, 0x81, n - 1);
    deep[n + 2] = 0x00;
    rz_flow *f = (rz_flow *)1;
    assert_int_equal(rz_flow_parse(&f, deep, n + 3, RZ_FORMAT_CBOR, NULL, NULL), RZ_ETOOBIG);
    assert_null(f);
    free(deep);
}

/* ---- strict input (issue 14, finding 6) ---- */

/* A step's max_cost_micros (or max_cost_cents) is checked as the job route
 * checks a job's, not
 * replaced by the reference estimate without a word. */
static void step_budget_is_validated(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "-5", "1.5", "\"12\"", "true", "[1]"};
    for (size_t i = 0; i < RZ_ARRAY_LEN(bad); i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\","
                 "\n\"max_cost_cents\":%s}}}", bad[i]);
        rz_diags *d = parse_fail(text, RZ_FORMAT_JSON, RZ_EINVALID);
        expect_diag(d, "/steps/a/max_cost_cents", RZ_EINVALID, 2, 18);
        rz_diags_free(d);
    }
    /* Builder nodes too, and YAML. */
    rz_diags *d = parse_fail("{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\",\"max_cost_cents\":0}]}",
                             RZ_FORMAT_JSON, RZ_EINVALID);
    expect_diag(d, "/nodes/0/max_cost_cents", RZ_EINVALID, 1, 56);
    rz_diags_free(d);
    d = parse_fail("flux: 1\nsteps:\n  a:\n    module: echo@1\n    max_cost_cents: -1\n",
                   RZ_FORMAT_YAML, RZ_EINVALID);
    expect_diag(d, "/steps/a/max_cost_cents", RZ_EINVALID, 5, 21);
    rz_diags_free(d);
    /* Micro-dollars up to 2^53; the cents spelling up to 2^53 / 10,000. */
    const char *good = "{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"max_cost_micros\":9007199254740992}}}";
    rz_flow_free(parse_ok(good, strlen(good), RZ_FORMAT_JSON));
    good = "{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"max_cost_cents\":900719925474}}}";
    rz_flow_free(parse_ok(good, strlen(good), RZ_FORMAT_JSON));
    d = parse_fail("{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"max_cost_cents\":900719925475}}}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    rz_diags_free(d);
    d = parse_fail("{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"max_cost_micros\":0}}}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    rz_diags_free(d);
}

/* A builder's empty moduleVersion is no version, as null is: it exported as
 * "echo@" and reloaded as "echo", which the flow_json fuzzer caught. */
static void empty_module_version_is_none(void **state)
{
    (void)state;
    const char *a = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\",\"moduleVersion\":\"\"}]}";
    const char *b = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\"}]}";
    const char *c = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo@1\",\"moduleVersion\":\"\"}]}";
    rz_flow *fa = parse_ok(a, strlen(a), RZ_FORMAT_JSON);
    rz_flow *fb = parse_ok(b, strlen(b), RZ_FORMAT_JSON);
    rz_flow *fc = parse_ok(c, strlen(c), RZ_FORMAT_JSON);
    char *ja = NULL, *jb = NULL, *jc = NULL;
    assert_int_equal(rz_flow_to_json(fa, 0, &ja, NULL), RZ_OK);
    assert_int_equal(rz_flow_to_json(fb, 0, &jb, NULL), RZ_OK);
    assert_int_equal(rz_flow_to_json(fc, 0, &jc, NULL), RZ_OK);
    assert_string_equal(ja, jb);
    assert_non_null(strstr(jc, "\"moduleVersion\":\"1\""));
    rz_flow *g = parse_ok(ja, strlen(ja), RZ_FORMAT_JSON);
    char *jg = NULL;
    assert_int_equal(rz_flow_to_json(g, 0, &jg, NULL), RZ_OK);
    assert_string_equal(ja, jg);
    rz_free(ja);
    rz_free(jb);
    rz_free(jc);
    rz_free(jg);
    rz_flow_free(fa);
    rz_flow_free(fb);
    rz_flow_free(fc);
    rz_flow_free(g);
}

/* Text that is not UTF-8 and integers a double would round are refused in
 * JSON and CBOR alike, with where. */
static void not_utf8_and_inexact_integers_refused(void **state)
{
    (void)state;
    static const char *const json_bad[] = {
        "{\"flux\":1,\"name\":\"\xff\",\"steps\":{\"a\":{\"module\":\"echo@1\"}}}",
        "{\"flux\":1,\"name\":\"ok\\n\xc0\xaf\",\"steps\":{\"a\":{\"module\":\"echo@1\"}}}",
        "{\"flux\":1,\"name\":\"\\ud800\",\"steps\":{\"a\":{\"module\":\"echo@1\"}}}",
        "{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"timeout_s\":9007199254740993}}}",
        "{\"flux\":1,\"steps\":{\"a\":{\"module\":\"echo@1\",\"config\":{\"x\":-18446744073709551616}}}}",
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(json_bad); i++)
        rz_diags_free(parse_fail(json_bad[i], RZ_FORMAT_JSON, RZ_ESYNTAX));
    /* {"flux": 1, "name": <bad>} in CBOR */
    static const struct { unsigned char b[24]; size_t n; } cbor_bad[] = {
        {{0xa2, 0x64, 'f', 'l', 'u', 'x', 0x01, 0x64, 'n', 'a', 'm', 'e', 0x61, 0xff}, 14},
        {{0xa2, 0x64, 'f', 'l', 'u', 'x', 0x01, 0x64, 'n', 'a', 'm', 'e', 0x1b,
          0x00, 0x20, 0, 0, 0, 0, 0, 0x01}, 21},
        {{0xa2, 0x64, 'f', 'l', 'u', 'x', 0x01, 0x64, 'n', 'a', 'm', 'e', 0x3b,
          0x00, 0x20, 0, 0, 0, 0, 0, 0x00}, 21},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cbor_bad); i++) {
        rz_flow *f = (rz_flow *)1;
        assert_int_equal(rz_flow_parse(&f, cbor_bad[i].b, cbor_bad[i].n, RZ_FORMAT_CBOR,
                                       NULL, NULL), RZ_ESYNTAX);
        assert_null(f);
    }
    static const char *const yaml_bad[] = {
        "flux: 1\nsteps:\n  a:\n    module: echo@1\n    config: {x: 9007199254740993}\n",
        "flux: 1\nsteps:\n  a:\n    module: echo@1\n    config: {x: -18446744073709551616}\n",
        "flux: 1\nsteps:\n  a:\n    module: echo@1\n    config: {x: 0x20000000000001}\n",
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(yaml_bad); i++)
        rz_diags_free(parse_fail(yaml_bad[i], RZ_FORMAT_YAML, RZ_ESYNTAX));
    const char *yok = "flux: 1\nsteps:\n  a:\n    module: echo@1\n    config: "
                      "{x: 9007199254740992, y: 0x20000000000000, z: 1.5e300, t: '9007199254740993'}\n";
    rz_flow_free(parse_ok(yok, strlen(yok), RZ_FORMAT_YAML));
    const char *ok = "{\"flux\":1,\"name\":\"caf\xc3\xa9 \\ud83d\\ude00\",\"steps\":{\"a\":"
                     "{\"module\":\"echo@1\",\"config\":{\"x\":[9007199254740992,-9007199254740992,1e300]}}}}";
    rz_flow_free(parse_ok(ok, strlen(ok), RZ_FORMAT_JSON));
}

/* ---- export and round trips ---- */

static void json_cbor_json_round_trip(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("builder.json");
    char *j1 = to_json(f);
    unsigned char *cbor;
    size_t n;
    assert_int_equal(rz_flow_to_cbor(f, &cbor, &n), RZ_OK);
    rz_flow *g = parse_ok(cbor, n, RZ_FORMAT_CBOR);
    char *j2 = to_json(g);
    assert_string_equal(j1, j2);
    /* Canonical JSON is a fixed point of parse + export. */
    rz_flow *h = parse_ok(j1, strlen(j1), RZ_FORMAT_JSON);
    char *j3 = to_json(h);
    assert_string_equal(j1, j3);
    /* Integers stay integers, fractions stay fractions, fixed key order. */
    assert_non_null(strstr(j1, "\"retries\":3,"));
    assert_non_null(strstr(j1, "\"ratio\":0.25"));
    assert_non_null(strstr(j1, "{\"id\":\"flow-1\",\"name\":\"Trading pipeline\",\"version\":\"1.0.0\""));
    assert_non_null(strstr(j1, "{\"id\":\"fetch\",\"moduleId\":\"http-fetch\",\"moduleVersion\":\"^1.2\",\"config\""));
    assert_non_null(strstr(j1, "\"label\":\"Fetch prices\""));   /* unknown keys survive */
    /* Through YAML too (FluxGraph shape, compared in builder shape). */
    char *y, *b1, *b2;
    size_t yn;
    assert_int_equal(rz_flow_to_yaml(f, &y, &yn), RZ_OK);
    rz_flow *k = parse_ok(y, yn, RZ_FORMAT_YAML);
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_BUILDER, &b1, NULL), RZ_OK);
    assert_int_equal(rz_flow_to_json(k, RZ_EXPORT_BUILDER, &b2, NULL), RZ_OK);
    assert_string_equal(b1, b2);
    rz_free(b1);
    rz_free(b2);
    rz_free(y);
    rz_flow_free(k);
    rz_free(j1);
    rz_free(j2);
    rz_free(j3);
    rz_free(cbor);
    rz_flow_free(f);
    rz_flow_free(g);
    rz_flow_free(h);
}

static void yaml_round_trips(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("wordcount.yaml");
    char *j = to_json(f);
    char *y;
    size_t yn;
    assert_int_equal(rz_flow_to_yaml(f, &y, &yn), RZ_OK);
    assert_int_equal(strlen(y), yn);
    rz_flow *g = parse_ok(y, yn, RZ_FORMAT_YAML);
    char *jy = to_json(g);
    assert_string_equal(j, jy);
    unsigned char *cbor;
    size_t n;
    assert_int_equal(rz_flow_to_cbor(f, &cbor, &n), RZ_OK);
    rz_flow *h = parse_ok(cbor, n, RZ_FORMAT_AUTO);
    char *jc = to_json(h);
    assert_string_equal(j, jc);
    /* Strings that look like other scalars stay strings through YAML. */
    assert_non_null(strstr(y, "quoted: \"123\""));
    assert_non_null(strstr(y, "flag: \"yes\""));
    assert_non_null(strstr(j, "\"flux\":1,\"name\":\"wordcount\""));
    rz_free(j);
    rz_free(jy);
    rz_free(jc);
    rz_free(y);
    rz_free(cbor);
    rz_flow_free(f);
    rz_flow_free(g);
    rz_flow_free(h);
}

static void tricky_scalars_round_trip(void **state)
{
    (void)state;
    const char *doc =
        "steps:\n"
        "  odd_id-x:\n"
        "    module: m\n"
        "    config:\n"
        "      \"odd/key~x\": 1\n"
        "      empty: \"\"\n"
        "      tilde: \"~\"\n"
        "      null_word: \"null\"\n"
        "      float_word: \"1e3\"\n"
        "      real: 1e3\n"
        "      neg: -0.5\n"
        "      big: 12345678901234\n"
        "      huge_real: 1315051091192184831.5\n"
        "      near_2_53: 15051091192184831.5\n"
        "      e17: 1e17\n"
        "      inf: .inf\n"
        "      multi: \"line one\\nline two\"\n"
        "      colon: \"a: b\"\n"
        "      hash: \"x #y\"\n"
        "      lead: \" spaced \"\n"
        "      unicode: \"caf\\u00e9 \\u2603\"\n"
        "      list: [1, \"2\", [], {}]\n";
    rz_flow *f = parse_ok(doc, strlen(doc), RZ_FORMAT_YAML);
    char *j = to_json(f), *y;
    size_t yn;
    assert_int_equal(rz_flow_to_yaml(f, &y, &yn), RZ_OK);
    rz_flow *g = parse_ok(y, yn, RZ_FORMAT_YAML);
    char *j2 = to_json(g);
    assert_string_equal(j, j2);
    /* An integral float past 2^53 (the fuzzer's find) travels as a CBOR
     * float: as an integer the decoder refuses it as inexact. */
    unsigned char *c;
    size_t cn;
    assert_int_equal(rz_flow_to_cbor(f, &c, &cn), RZ_OK);
    rz_flow *h = parse_ok(c, cn, RZ_FORMAT_CBOR);
    char *j3 = to_json(h);
    assert_string_equal(j, j3);
    rz_free(j3);
    rz_free(c);
    rz_flow_free(h);
    /* Integral doubles past 2^53 print with an exponent, so the JSON
     * loader (which refuses integer literals past 2^53) takes them back. */
    assert_non_null(strstr(j, "\"near_2_53\":1.5051091192184832e+16"));
    /* No infinity in the canonical JSON: .inf loads as null, everywhere. */
    assert_non_null(strstr(j, "\"inf\":null"));
    assert_null(strstr(y, ".inf"));
    assert_non_null(strstr(y, "e17: 1e+17"));
    h = parse_ok(j, strlen(j), RZ_FORMAT_JSON);
    j3 = to_json(h);
    assert_string_equal(j, j3);
    rz_free(j3);
    rz_flow_free(h);
    assert_non_null(strstr(j, "\"big\":12345678901234"));
    assert_non_null(strstr(j, "\"real\":1000"));
    assert_non_null(strstr(j, "\"float_word\":\"1e3\""));
    assert_string_equal(f->steps[0].id, "odd_id-x");
    assert_non_null(strstr(j, "\"odd/key~x\":1"));
    rz_free(j);
    rz_free(j2);
    rz_free(y);
    rz_flow_free(f);
    rz_flow_free(g);
}

/* Kept keys (x-*) and the rest cannot stay interleaved through FluxGraph's
 * `ui:`; every export puts the kept ones first, so a builder document comes
 * back the same through YAML (the flow_json fuzzer's find). */
static void extras_order_round_trips(void **state)
{
    (void)state;
    const char *doc = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"m\"}],"
                      "\"ui\":{\"zoom\":0.5},\"x-k\":2,\"note\":\"n\",\"gone\":null}";
    rz_flow *f = parse_ok(doc, strlen(doc), RZ_FORMAT_JSON);
    char *y, *b1, *b2;
    size_t yn;
    assert_int_equal(rz_flow_to_yaml(f, &y, &yn), RZ_OK);
    rz_flow *g = parse_ok(y, yn, RZ_FORMAT_YAML);
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_BUILDER, &b1, NULL), RZ_OK);
    assert_int_equal(rz_flow_to_json(g, RZ_EXPORT_BUILDER, &b2, NULL), RZ_OK);
    assert_string_equal(b1, b2);
    assert_non_null(strstr(b1, "\"x-k\":2,\"ui\":{\"zoom\":0.5},\"note\":\"n\""));
    /* A null is an absent field (FluxGraph's ui: drops it too). */
    assert_null(strstr(b1, "gone"));
    rz_free(y);
    rz_free(b1);
    rz_free(b2);
    rz_flow_free(f);
    rz_flow_free(g);
}

/* The depth limit counts containers in every format: a scalar inside the
 * 64th loads from YAML as from JSON (the flow_cbor fuzzer's find: YAML
 * counted the scalar and could not read back what it wrote). */
static void depth_limit_same_in_yaml_and_json(void **state)
{
    (void)state;
    for (int lists = 60; lists <= 61; lists++) {
        char y[512], j[512];
        int n = snprintf(y, sizeof y, "steps:\n  a:\n    module: m\n    config:\n      x: ");
        int m = snprintf(j, sizeof j, "{\"steps\":{\"a\":{\"module\":\"m\",\"config\":{\"x\":");
        for (int i = 0; i < lists; i++)
            y[n++] = '[', j[m++] = '[';
        y[n++] = '1', j[m++] = '1';
        for (int i = 0; i < lists; i++)
            y[n++] = ']', j[m++] = ']';
        y[n++] = '\n';
        memcpy(j + m, "}}}}", 5);
        y[n] = '\0';
        rz_flow *fy = NULL, *fj = NULL;
        int ry = rz_flow_parse(&fy, y, strlen(y), RZ_FORMAT_YAML, "y", NULL);
        int rj = rz_flow_parse(&fj, j, strlen(j), RZ_FORMAT_JSON, "j", NULL);
        assert_int_equal(ry == RZ_OK, lists == 60);
        assert_int_equal(rj == RZ_OK, lists == 60);
        rz_flow_free(fy);
        rz_flow_free(fj);
    }
}

static void credentials_are_stripped(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("builder.json");
    char *j = to_json(f), *y;
    unsigned char *c;
    size_t n;
    assert_null(strstr(j, "SECRET"));
    assert_non_null(strstr(j, "\"credentials\":{\"api\":{\"credentialId\":\"cred-123\",\"type\":\"api_key\"}}"));
    assert_int_equal(rz_flow_to_yaml(f, &y, &n), RZ_OK);
    assert_null(strstr(y, "SECRET"));
    assert_int_equal(rz_flow_to_cbor(f, &c, &n), RZ_OK);
    assert_null(memmem(c, n, "SECRET", 6));
    rz_free(j);
    rz_free(y);
    rz_free(c);
    rz_flow_free(f);
    f = load_fixture("wordcount.yaml");
    j = to_json(f);
    assert_null(strstr(j, "hunter2"));
    assert_non_null(strstr(j, "\"store\":{\"credentialId\":\"vault-7\",\"type\":\"s3\"}"));
    rz_free(j);
    rz_flow_free(f);
}

static void export_arguments(void **state)
{
    (void)state;
    char *s = (char *)1;
    unsigned char *c = (unsigned char *)1;
    assert_int_equal(rz_flow_to_json(NULL, 0, &s, NULL), RZ_EINVAL);
    assert_null(s);
    assert_int_equal(rz_flow_to_cbor(NULL, &c, NULL), RZ_EINVAL);
    assert_null(c);
    rz_flow *f = load_fixture("wordcount.yaml");
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_PRETTY | RZ_EXPORT_BUILDER, &s, NULL), RZ_OK);
    assert_non_null(strstr(s, "\"nodes\""));
    assert_non_null(strstr(s, "\n"));
    rz_flow *g = parse_ok(s, strlen(s), RZ_FORMAT_JSON);
    assert_true(g->builder);
    assert_int_equal(rz_flow_step_count(g), 4);
    assert_string_equal(g->steps[1].module_spec, "^1");
    rz_free(s);
    rz_flow_free(f);
    rz_flow_free(g);
}

/* ---- locations ---- */

static void locate_pointers(void **state)
{
    (void)state;
    const char *doc = "{\"a/b\": {\"x~y\": [10, {\"k\\u00e9\": true}]},\n \"n\": 1}";
    rz_flow *f = NULL;
    /* Not a flow (no nodes): use a valid one with the same tricky keys. */
    const char *flow = "{\"nodes\": [], \"a/b\": {\"x~y\": [10, {\"k\\u00e9\": true}]},\n \"n\": 1}";
    f = parse_ok(flow, strlen(flow), RZ_FORMAT_JSON);
    uint32_t l, c;
    rz__flow_locate(f, "/a~1b/x~0y/1/k\xc3\xa9", &l, &c);
    assert_int_equal(l, 1);
    assert_int_equal(c, (uint32_t)(strstr(flow, "true") - flow) + 1);
    rz__flow_locate(f, "/a~1b/x~0y/0", &l, &c);
    assert_int_equal(c, (uint32_t)(strstr(flow, "10") - flow) + 1);
    rz__flow_locate(f, "/n", &l, &c);
    assert_int_equal(l, 2);
    assert_int_equal(c, 7);
    /* Missing members fall back to the nearest ancestor. */
    rz__flow_locate(f, "/a~1b/nope/deeper", &l, &c);
    assert_int_equal(c, (uint32_t)(strstr(flow, "{\"x~y\"") - flow) + 1);
    rz__flow_locate(f, "/a~1b/x~0y/9", &l, &c);
    assert_int_equal(c, (uint32_t)(strstr(flow, "[10") - flow) + 1);
    rz__flow_locate(f, "", &l, &c);
    assert_int_equal(l, 1);
    assert_int_equal(c, 1);
    (void)doc;

    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz__flow_diag(f, d, RZ_EUNKNOWN, "/n", "unknown %s", "thing"), RZ_EUNKNOWN);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_int_equal(x->line, 2);
    assert_string_equal(x->message, "unknown thing");
    assert_string_equal(x->file, "<input>");
    rz_diags_free(d);
    rz_flow_free(f);

    /* CBOR has no positions. */
    f = load_fixture("builder.json");
    unsigned char *cb;
    size_t n;
    assert_int_equal(rz_flow_to_cbor(f, &cb, &n), RZ_OK);
    rz_flow *g = parse_ok(cb, n, RZ_FORMAT_CBOR);
    rz__flow_locate(g, "/nodes/1", &l, &c);
    assert_int_equal(l, 0);
    assert_int_equal(c, 0);
    rz__flow_locate(f, "/nodes/1/when", &l, &c);
    assert_int_equal(l, 25);
    assert_int_equal(c, 15);
    /* The public face: the same places; NULLs are fine. */
    rz_flow_locate(f, "/nodes/1/when", &l, &c);
    assert_int_equal(l, 25);
    assert_int_equal(c, 15);
    rz_flow_locate(g, "/nodes/1", &l, &c);
    assert_int_equal(l + c, 0);
    rz_flow_locate(f, NULL, &l, &c);
    assert_int_equal(l + c, 0);
    rz_flow_locate(NULL, "/nodes", &l, &c);
    assert_int_equal(l + c, 0);
    rz_flow_locate(f, "/nodes", NULL, NULL);
    rz_free(cb);
    rz_flow_free(f);
    rz_flow_free(g);
}

/* ---- linking ---- */

static void assert_deps(const rz_flow *f, const char *id, const size_t *want, size_t n)
{
    size_t i = rz_flow_step_find(f, id);
    assert_true(i != RZ_NPOS);
    assert_int_equal(f->steps[i].n_deps, n);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(f->steps[i].deps[k], want[k]);
}

static void link_computes_sorted_unique_deps(void **state)
{
    (void)state;
    rz_flow *f = load_fixture("builder.json");
    assert_int_equal(rz__flow_link(f), RZ_OK);
    assert_int_equal(rz__flow_link(f), RZ_OK);   /* idempotent */
    assert_deps(f, "fetch", NULL, 0);
    assert_deps(f, "analyze", (size_t[]){0}, 1);    /* connection + when */
    assert_deps(f, "trade", (size_t[]){0, 1}, 2);   /* needs + connection + input ref */
    assert_int_equal(f->conns[0].src, 0);
    assert_int_equal(f->conns[0].dst, 1);
    rz_flow_free(f);

    const char *doc =
        "steps:\n"
        "  z: {module: m}\n"
        "  y: {module: m, needs: [z, ghost, z]}\n"
        "  x:\n"
        "    module: m\n"
        "    inputs:\n"
        "      deep: {list: [\"${{ steps.y.outputs.o }}\", {k: \"pre ${{ steps.z.outputs.p }}\"}]}\n"
        "      broken: \"${{ steps.y. }}\"\n"
        "    when: steps.w.outputs.ok == true && inputs.flag\n"
        "  w: {module: m}\n"
        "  self: {module: m, needs: self}\n";
    f = parse_ok(doc, strlen(doc), RZ_FORMAT_YAML);
    assert_int_equal(rz__flow_link(f), RZ_OK);
    assert_deps(f, "z", NULL, 0);
    assert_deps(f, "y", (size_t[]){0}, 1);
    assert_deps(f, "x", (size_t[]){0, 1, 3}, 3);
    assert_deps(f, "self", (size_t[]){4}, 1);
    rz_flow_free(f);
}

static void duplicate_ids_keep_both_steps(void **state)
{
    (void)state;
    const char *doc = "{\"nodes\": [{\"id\": \"a\", \"moduleId\": \"m1\"}, {\"id\": \"a\", \"moduleId\": \"m2\"}]}";
    rz_flow *f = parse_ok(doc, strlen(doc), RZ_FORMAT_JSON);
    assert_int_equal(rz_flow_step_count(f), 2);
    assert_int_equal(rz_flow_step_find(f, "a"), 0);
    assert_string_equal(rz_flow_step_module(f, 1), "m2");
    rz_flow_free(f);
}

/* ---- reviewer findings ---- */

static bool has_msg(const rz_diags *d, int code, const char *needle, uint32_t line, uint32_t col)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (x->code == code && strstr(x->message, needle) &&
            (!line || (x->line == line && x->column == col)))
            return true;
    }
    return false;
}

static void module_ids_are_checked(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo@@1\",\"moduleVersion\":\"1\"}],"
                             "\"connections\":[]}", RZ_FORMAT_JSON, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "'moduleVersion' gives one too", 1, 32));
    rz_diags_free(d);
    d = parse_fail("steps:\n  a: {module: 'ec ho@1'}\n", RZ_FORMAT_YAML, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "contains ' '", 2, 15));
    rz_diags_free(d);
    const char *ok = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo@^1\"},"
                     "{\"id\":\"b\",\"moduleId\":\"chain://x.y\",\"moduleVersion\":\"2\"}]}";
    rz_flow *f = parse_ok(ok, strlen(ok), RZ_FORMAT_JSON);
    assert_string_equal(f->steps[0].module_id, "echo");
    assert_string_equal(f->steps[0].module_spec, "^1");
    assert_string_equal(f->steps[1].module_id, "chain://x.y");
    char *y = NULL;
    size_t n;
    assert_int_equal(rz_flow_to_yaml(f, &y, &n), RZ_OK);
    rz_flow *g = parse_ok(y, n, RZ_FORMAT_YAML);
    assert_string_equal(g->steps[1].module_id, "chain://x.y");
    assert_string_equal(g->steps[1].module_spec, "2");
    rz_free(y);
    rz_flow_free(g);
    rz_flow_free(f);
}

static void duplicate_keys_are_errors(void **state)
{
    (void)state;
    const char *j = "{\"nodes\":[],\n\"nodes\":[{\"id\":\"a\",\"moduleId\":\"m\",\n"
                    "\"config\":{\"fail\":1,\"fail\":2}}]}";
    rz_diags *d = parse_fail(j, RZ_FORMAT_JSON, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EDUPLICATE, "duplicate key 'nodes' (first at 1:2)", 2, 1));
    assert_true(has_msg(d, RZ_EDUPLICATE, "duplicate key 'fail' (first at 3:11)", 3, 20));
    rz_diags_free(d);
    const char *y = "steps:\n  a: {module: m}\n  a: {module: n}\n";
    d = parse_fail(y, RZ_FORMAT_YAML, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EDUPLICATE, "duplicate key 'a' (first at 2:3)", 3, 3));
    rz_diags_free(d);
    /* A big object: hashed, still every duplicate found. */
    rz__buf b = {0};
    rz__buf_printf(&b, "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"m\",\"config\":{");
    for (int i = 0; i < 5000; i++)
        rz__buf_printf(&b, "\"k%d\":1,", i);
    rz__buf_printf(&b, "\"k4999\":2}}]}");
    d = parse_fail(b.data, RZ_FORMAT_JSON, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EDUPLICATE, "duplicate key 'k4999'", 0, 0));
    rz_diags_free(d);
    rz__buf_free(&b);
    /* CBOR {"steps": {}, "steps": {}} */
    const unsigned char cb[] = {0xa2, 0x65, 's', 't', 'e', 'p', 's', 0xa0,
                                0x65, 's', 't', 'e', 'p', 's', 0xa0};
    rz_flow *f = (rz_flow *)1;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, cb, sizeof cb, RZ_FORMAT_CBOR, "doc", d), RZ_EINVALID);
    assert_null(f);
    assert_true(has_msg(d, RZ_EDUPLICATE, "duplicate map key", 0, 0));
    rz_diags_free(d);
}

/* With no key close to it, the message lists the keys a step may hold
 * (from the same table the loader dispatches on). */
static void unknown_step_key_far_from_all_lists_the_keys(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("steps:\n  a: {module: m, zzzzzzzz: 1}\n", RZ_FORMAT_YAML,
                             RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "unknown key 'zzzzzzzz' in step 'a' (keys: module, flow, "
                        "needs, inputs, config, credentials, when, retry, timeout_s, "
                        "queue_timeout_s, on_failure, verify, join, for_each, max_parallel, "
                        "for_each_depth, position, ui, kind, restart, ready, on)", 0, 0));
    rz_diags_free(d);
}

static void unknown_step_keys_are_errors(void **state)
{
    (void)state;
    const char *y = "steps:\n  a: {module: m, need: [b], timeout: 5}\n  b: {module: m}\nbogus: 1\n";
    rz_diags *d = parse_fail(y, RZ_FORMAT_YAML, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "unknown key 'need' in step 'a'; did you mean 'needs'?", 2, 18));
    assert_true(has_msg(d, RZ_EINVALID, "did you mean 'timeout_s'?", 0, 0));
    assert_true(has_msg(d, RZ_EINVALID, "unknown top-level key 'bogus'", 4, 8));
    rz_diags_free(d);
    /* Builder UI fields survive builder -> YAML -> builder under ui:. */
    rz_flow *f = load_fixture("builder.json");
    char *y2 = NULL, *j1 = NULL, *j2 = NULL;
    size_t n;
    assert_int_equal(rz_flow_to_yaml(f, &y2, &n), RZ_OK);
    rz_flow *g = parse_ok(y2, n, RZ_FORMAT_YAML);
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_BUILDER, &j1, NULL), RZ_OK);
    assert_int_equal(rz_flow_to_json(g, RZ_EXPORT_BUILDER, &j2, NULL), RZ_OK);
    assert_string_equal(j1, j2);
    assert_non_null(strstr(j1, "Fetch prices"));
    rz_free(y2);
    rz_free(j1);
    rz_free(j2);
    rz_flow_free(g);
    rz_flow_free(f);
    /* ui: may not shadow a real key (the builder form would repeat it). */
    d = parse_fail("name: a\nui: {name: b}\nsteps:\n  a: {module: m, ui: {config: 3}}\n",
                   RZ_FORMAT_YAML, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "'ui' cannot hold 'name'", 2, 12));
    assert_true(has_msg(d, RZ_EINVALID, "'ui' cannot hold 'config'", 4, 31));
    rz_diags_free(d);
}

static void credential_values_warn(void **state)
{
    (void)state;
    const char *y = "steps:\n  a:\n    module: m\n    credentials:\n"
                    "      tok: {credentialId: c, type: t, value: SUPERSECRET}\n";
    rz_diags *d;
    rz_flow *f = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, "doc", d), RZ_OK);
    assert_int_equal(rz_diags_count(d), 1);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_int_equal(x->severity, RZ_SEV_WARNING);
    assert_int_equal(x->code, RZ_ECREDENTIAL);
    assert_string_equal(x->message, "credential reference 'tok' of step 'a' carries 'value': "
                        "flows hold only {credentialId, type}; keep the secret in the vault");
    assert_null(strstr(x->message, "SUPERSECRET"));
    assert_true(f->steps[0].creds[0].extra_fields);
    char *j = to_json(f);
    assert_null(strstr(j, "SUPERSECRET"));
    rz_free(j);
    rz_flow_free(f);
    rz_diags_free(d);
}

static void numbers_export_exactly(void **state)
{
    (void)state;
    const char *j = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"m\",\"config\":"
                    "{\"big\":9007199254740992,\"neg\":-0,\"pi\":3.141592653589793,\"tenth\":0.1}}]}";
    rz_flow *f = parse_ok(j, strlen(j), RZ_FORMAT_JSON);
    char *out = to_json(f);
    assert_non_null(strstr(out, "\"big\":9007199254740992"));
    assert_non_null(strstr(out, "\"neg\":-0"));
    assert_non_null(strstr(out, "\"pi\":3.141592653589793"));
    assert_non_null(strstr(out, "\"tenth\":0.1"));
    unsigned char *c;
    size_t n;
    assert_int_equal(rz_flow_to_cbor(f, &c, &n), RZ_OK);
    rz_flow *g = parse_ok(c, n, RZ_FORMAT_CBOR);
    char *out2 = to_json(g);
    assert_string_equal(out, out2);
    rz_free(c);
    rz_free(out);
    rz_free(out2);
    rz_flow_free(g);
    rz_flow_free(f);
}

static void null_and_empty_input(void **state)
{
    (void)state;
    for (rz_format fmt = RZ_FORMAT_JSON; fmt <= RZ_FORMAT_CBOR; fmt++) {
        rz_diags *d;
        rz_flow *f = (rz_flow *)1;
        assert_int_equal(rz_diags_new(&d), RZ_OK);
        int rc = rz_flow_parse(&f, NULL, 0, fmt, "doc", d);
        assert_true(rc < 0);
        assert_null(f);
        assert_true(rz_diags_error_count(d) > 0);
        f = (rz_flow *)1;
        assert_int_equal(rz_flow_parse(&f, NULL, 5, fmt, "doc", d), RZ_EINVAL);
        assert_null(f);
        rz_diags_free(d);
    }
    char path[] = "/tmp/rz_empty_flow_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    rz_flow *f = (rz_flow *)1;
    assert_true(rz_flow_load(&f, path, RZ_FORMAT_YAML, NULL) < 0);
    assert_null(f);
    unlink(path);
}

static void input_types_are_checked(void **state)
{
    (void)state;
    const char *y = "inputs:\n  a: {type: strng}\n  b: {type: integer, default: 1.5}\n"
                    "  c: {type: array, default: [1]}\nsteps:\n  s: {module: m}\n";
    rz_diags *d = parse_fail(y, RZ_FORMAT_YAML, RZ_EINVALID);
    assert_true(has_msg(d, RZ_EINVALID, "unknown type 'strng' (string, number, integer", 2, 13));
    assert_true(has_msg(d, RZ_EINVALID, "default of input 'b' is a number, but its type is integer", 0, 0));
    assert_int_equal(rz_diags_error_count(d), 2);
    rz_diags_free(d);
}

static void yaml_depth_location(void **state)
{
    (void)state;
    rz__buf b = {0};
    rz__buf_printf(&b, "steps:\n  a: ");
    for (int i = 0; i < 1100; i++)
        rz__buf_printf(&b, "[");
    rz_diags *d = parse_fail(b.data, RZ_FORMAT_YAML, RZ_ETOOBIG);
    /* The 65th bracket: column 6 + 64. */
    assert_int_equal(rz_diags_get(d, 0)->line, 2);
    assert_int_equal(rz_diags_get(d, 0)->column, 6 + RZ_FLOW_MAX_DEPTH);
    rz_diags_free(d);
    rz__buf_free(&b);
}

/* ---- Strict contracts (issue 16) ---- */

/* A diagnostic at line:col whose message holds `part`. */
static void expect_msg(const rz_diags *d, uint32_t line, uint32_t col, int code,
                       const char *part)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (x->line == line && x->column == col && x->code == code &&
            strstr(x->message, part))
            return;
    }
    fprintf(stderr, "no diagnostic %u:%u '%s'; got:\n", line, col, part);
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        fprintf(stderr, "  %u:%u %s\n", x->line, x->column, x->message);
    }
    fail();
}

/* A second document was dropped without a word; a "\0" escape cut a string
 * short; `<<` came through as a key named "<<". */
static void yaml_documents_nul_and_merge_keys(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("flux: 1\nsteps:\n  a: {module: echo}\n---\n"
                             "steps:\n  b: {module: echo}\n", RZ_FORMAT_YAML, RZ_ESYNTAX);
    expect_msg(d, 4, 1, RZ_ESYNTAX, "a second YAML document");
    rz_diags_free(d);
    /* An explicit start and an end marker are one document. */
    const char *one = "---\nflux: 1\nsteps:\n  a: {module: echo}\n...\n";
    rz_flow_free(parse_ok(one, strlen(one), RZ_FORMAT_YAML));

    d = parse_fail("flux: 1\nsteps:\n  a:\n    module: echo\n    config: {t: \"ab\\0cd\"}\n",
                   RZ_FORMAT_YAML, RZ_ESYNTAX);
    expect_msg(d, 5, 17, RZ_ESYNTAX, "a NUL character");
    rz_diags_free(d);
    d = parse_fail("flux: 1\nsteps:\n  \"a\\0b\": {module: echo}\n", RZ_FORMAT_YAML,
                   RZ_ESYNTAX);
    expect_msg(d, 3, 3, RZ_ESYNTAX, "a NUL character");
    rz_diags_free(d);

    d = parse_fail("flux: 1\nx-base: &base {module: echo}\nsteps:\n  a:\n    <<: *base\n",
                   RZ_FORMAT_YAML, RZ_ESYNTAX);
    expect_msg(d, 5, 5, RZ_ESYNTAX, "merge keys ('<<') are not supported");
    rz_diags_free(d);
    /* A quoted "<<" is an ordinary key (here an unknown step key). */
    d = parse_fail("flux: 1\nsteps:\n  a:\n    module: echo\n    \"<<\": 1\n",
                   RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 5, 11, RZ_EINVALID, "unknown key '<<'");
    rz_diags_free(d);
    /* ... and a config key "<<" exports quoted, so that it reads back. */
    const char *cfg = "{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\",\"config\":{\"<<\":1}}]}";
    rz_flow *f = parse_ok(cfg, strlen(cfg), RZ_FORMAT_JSON);
    char *y = NULL;
    size_t ylen = 0;
    assert_int_equal(rz_flow_to_yaml(f, &y, &ylen), RZ_OK);
    assert_non_null(strstr(y, "\"<<\": 1"));
    rz_flow_free(parse_ok(y, ylen, RZ_FORMAT_YAML));
    rz_free(y);
    rz_flow_free(f);
}

/* One id rule in both formats: what ${{ steps.<id> }} can name. */
static void step_ids_follow_one_rule(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("flux: 1\nsteps:\n  a.b: {module: echo}\n  9x: {module: echo}\n",
                             RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 3, 3, RZ_EINVALID, "step id 'a.b' is not valid");
    expect_msg(d, 4, 3, RZ_EINVALID, "step id '9x' is not valid");
    rz_diags_free(d);
    d = parse_fail("{\"nodes\":[{\"id\":\"a b\",\"moduleId\":\"echo\"},\n"
                   "{\"id\":\"\",\"moduleId\":\"echo\"}]}", RZ_FORMAT_JSON, RZ_EINVALID);
    expect_diag(d, "/nodes/0/id", RZ_EINVALID, 1, 17);
    expect_diag(d, "/nodes/1/id", RZ_EINVALID, 2, 7);
    rz_diags_free(d);
    char id[80];
    memset(id, 'x', 65);
    id[65] = '\0';
    char text[256];
    snprintf(text, sizeof text, "{\"nodes\":[{\"id\":\"%s\",\"moduleId\":\"echo\"}]}", id);
    d = parse_fail(text, RZ_FORMAT_JSON, RZ_EINVALID);
    expect_msg(d, 1, 17, RZ_EINVALID, "64 characters at most");
    rz_diags_free(d);
    id[64] = '\0';   /* 64 is fine, and so are '_', '-' and capitals */
    snprintf(text, sizeof text, "{\"nodes\":[{\"id\":\"%s\",\"moduleId\":\"echo\"},"
             "{\"id\":\"_A-9\",\"moduleId\":\"echo\"}]}", id);
    rz_flow_free(parse_ok(text, strlen(text), RZ_FORMAT_JSON));
}

/* A number out of range says so, apart from one of the wrong kind. */
static void numbers_out_of_range_say_so(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("flux: 1\nsteps:\n  a:\n    module: echo\n"
                             "    timeout_s: 5000000000\n    retry: {max_attempts: 0}\n"
                             "    queue_timeout_s: 1.5\n", RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 5, 16, RZ_EINVALID, "'timeout_s' is out of range: 5000000000 is not "
               "between 0 and 4294967295");
    expect_msg(d, 6, 27, RZ_EINVALID, "'max_attempts' is out of range: 0 is not between 1");
    expect_msg(d, 7, 22, RZ_EINVALID, "'queue_timeout_s' must be a positive integer, "
               "not a fraction");
    rz_diags_free(d);
    d = parse_fail("{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\",\"timeout_s\":-1,"
                   "\"retry\":{\"initial_ms\":\"5\"}}]}", RZ_FORMAT_JSON, RZ_EINVALID);
    expect_msg(d, 1, 51, RZ_EINVALID, "'timeout_s' is out of range: -1");
    expect_msg(d, 1, 76, RZ_EINVALID, "'initial_ms' must be a non-negative integer, "
               "not a string");
    rz_diags_free(d);
}

/* verify: {replicas: k}, k 1..5, checked with a location in both formats
 * and kept by an export. */
static void verify_replicas_checked(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("flux: 1\nsteps:\n  a:\n    module: echo\n"
                             "    verify: {replicas: 6}\n  b:\n    module: echo\n"
                             "    verify: {replicas: 2.5, k: 1}\n  c:\n"
                             "    module: echo\n    verify: 3\n",
                             RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 5, 24, RZ_EINVALID, "'replicas' is out of range: 6 is not "
               "between 1 and 5");
    expect_msg(d, 8, 24, RZ_EINVALID, "'replicas' must be a positive integer, "
               "not a fraction");
    expect_msg(d, 8, 32, RZ_EINVALID, "unknown verify field 'k' (replicas)");
    expect_msg(d, 11, 13, RZ_EINVALID, "'verify' must be a map {replicas: 2..5}, "
               "not a number");
    rz_diags_free(d);
    d = parse_fail("{\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\","
                   "\"verify\":{\"replicas\":0}}]}", RZ_FORMAT_JSON, RZ_EINVALID);
    expect_msg(d, 1, 60, RZ_EINVALID, "'replicas' is out of range: 0 is not "
               "between 1 and 5");
    rz_diags_free(d);
    const char *ok = "flux: 1\nsteps:\n  a:\n    module: echo\n"
                     "    verify: {replicas: 3}\n";
    rz_flow *f = parse_ok(ok, strlen(ok), RZ_FORMAT_YAML);
    char *json = NULL;
    assert_int_equal(rz_flow_to_json(f, 0, &json, NULL), RZ_OK);
    assert_non_null(strstr(json, "\"verify\":{\"replicas\":3}"));
    rz_free(json);
    rz_flow_free(f);
}

/* A trigger that would never fire is refused, located, in both syntaxes. */
static void triggers_are_checked(void **state)
{
    (void)state;
    rz_diags *d = parse_fail("flux: 1\ntriggers:\n  - manual: {}\n  - webhook: {}\n"
                             "  - cron: \"0 * *\"\n  - {manual: {}, cron: \"* * * * *\"}\n"
                             "  - manual: {x: 1}\n  - poll: {}\nsteps:\n  a: {module: echo}\n",
                             RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 4, 5, RZ_EINVALID, "a webhook trigger needs a 'name'");
    expect_msg(d, 4, 5, RZ_EINVALID, "a webhook trigger needs a 'secret'");
    expect_msg(d, 5, 11, RZ_EINVALID, "cron '0 * *': 3 fields, cron wants 5");
    expect_msg(d, 6, 5, RZ_EINVALID, "exactly one type");
    expect_msg(d, 7, 5, RZ_EINVALID, "a manual trigger takes no settings");
    expect_msg(d, 8, 5, RZ_EINVALID, "unknown trigger type 'poll' (manual, cron, webhook, flow");
    assert_int_equal(rz_diags_error_count(d), 6);
    rz_diags_free(d);
    d = parse_fail("{\"triggers\":{\"cron\":1},\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\"}]}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    expect_diag(d, "/triggers", RZ_EINVALID, 1, 13);
    rz_diags_free(d);
    d = parse_fail("{\"triggers\":[{\"poll\":null}],\"nodes\":[{\"id\":\"a\",\"moduleId\":\"echo\"}]}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    expect_msg(d, 1, 22, RZ_EINVALID, "unknown trigger type 'poll'");
    rz_diags_free(d);

    /* the issue's flat form and the map form, each field located */
    d = parse_fail("flux: 1\ntriggers:\n"
                   "  - type: cron\n    schedule: \"61 * * * *\"\n"
                   "  - type: cron\n    schedule: \"0 9 * * 1-5\"\n    tz: Europe/Atlantis\n"
                   "  - cron: {schedule: \"@daily\", catchup: some, overlap: never}\n"
                   "  - type: webhook\n    name: gh\n    secret: s3cret\n"
                   "  - {type: flow, flow: other, status: maybe}\n"
                   "  - {type: webhook, name: gh, secret: {credentialId: k}}\n"
                   "  - cron: {schedule: \"0 0 31 2 *\", tz: Europe/Lisbon, colour: red}\n"
                   "steps:\n  a: {module: echo}\n", RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 4, 15, RZ_EINVALID, "cron '61 * * * *': the minute field: 61 is out of "
               "range 0-59");
    expect_msg(d, 7, 9, RZ_EINVALID, "unknown time zone 'Europe/Atlantis'");
    expect_msg(d, 8, 41, RZ_EINVALID, "'catchup' must be none, one or all");
    expect_msg(d, 8, 56, RZ_EINVALID, "'overlap' must be skip, queue or allow");
    expect_msg(d, 11, 13, RZ_EINVALID, "a webhook's 'secret' must be {credentialId");
    expect_msg(d, 12, 39, RZ_EINVALID, "'status' must be succeeded, failed or any");
    expect_msg(d, 13, 5, RZ_EDUPLICATE, "two triggers are named 'gh'");
    expect_msg(d, 14, 22, RZ_EINVALID, "never fires");
    expect_msg(d, 14, 63, RZ_EINVALID, "unknown cron trigger field 'colour'");
    rz_diags_free(d);
    d = parse_fail("{\"triggers\": [\n{\"type\": \"cron\", \"schedule\": \"* * * * MON-FOO\"}],\n"
                   "\"nodes\": [{\"id\": \"a\", \"moduleId\": \"echo\"}]}",
                   RZ_FORMAT_JSON, RZ_EINVALID);
    expect_msg(d, 2, 30, RZ_EINVALID, "the day-of-week field wants a number or a name "
               "after '-'");
    rz_diags_free(d);

    /* good ones load, keep their form, and normalise to one shape */
    const char *ok = "flux: 1\ntriggers:\n  - manual: {}\n  - cron: \"*/5 * * * *\"\n"
                     "  - {type: cron, schedule: \"@hourly\", tz: UTC, catchup: all, "
                     "overlap: queue, name: hourly}\n"
                     "  - webhook: {name: gh, secret: {credentialId: gh-hook}, "
                     "max_body_bytes: 1000, enabled: false}\n"
                     "steps:\n  a: {module: echo}\n";
    rz_flow *f = parse_ok(ok, strlen(ok), RZ_FORMAT_YAML);
    char *json = NULL;
    assert_int_equal(rz_flow_triggers(f, &json), RZ_OK);
    assert_string_equal(json,
        "[{\"index\":0,\"type\":\"manual\",\"name\":\"manual-0\",\"enabled\":true},"
        "{\"index\":1,\"type\":\"cron\",\"name\":\"cron-1\",\"enabled\":true,"
        "\"schedule\":\"*/5 * * * *\",\"tz\":\"UTC\",\"catchup\":\"one\",\"overlap\":\"skip\"},"
        "{\"index\":2,\"type\":\"cron\",\"name\":\"hourly\",\"enabled\":true,"
        "\"schedule\":\"@hourly\",\"tz\":\"UTC\",\"catchup\":\"all\",\"overlap\":\"queue\"},"
        "{\"index\":3,\"type\":\"webhook\",\"name\":\"gh\",\"enabled\":false,"
        "\"secret\":\"gh-hook\",\"max_body_bytes\":1000}]");
    rz_free(json);
    rz_flow_free(f);
}

/* flow and event triggers: both forms, normalised; their mistakes located. */
static void flow_and_event_triggers_are_checked(void **state)
{
    (void)state;
    char *json = NULL;
    const char *ok = "flux: 1\ntriggers:\n  - flow: up\n  - {type: flow, flow: up, status: any, name: f}\n"
         "  - event: moved\nsteps:\n  a: {module: echo}\n";
    rz_flow *f = parse_ok(ok, strlen(ok), RZ_FORMAT_YAML);
    assert_int_equal(rz_flow_triggers(f, &json), RZ_OK);
    assert_string_equal(json,
        "[{\"index\":0,\"type\":\"flow\",\"name\":\"flow-0\",\"enabled\":true,"
        "\"flow\":\"up\",\"status\":\"succeeded\"},"
        "{\"index\":1,\"type\":\"flow\",\"name\":\"f\",\"enabled\":true,"
        "\"flow\":\"up\",\"status\":\"any\"},"
        "{\"index\":2,\"type\":\"event\",\"name\":\"event-2\",\"enabled\":true,"
        "\"event\":\"moved\"}]");
    rz_free(json);
    rz_flow_free(f);
    rz_diags *d = parse_fail("flux: 1\ntriggers:\n  - {type: flow}\n  - event: \"a b\"\n"
                   "  - {type: event, event: x, foo: 1}\nsteps:\n  a: {module: echo}\n",
                   RZ_FORMAT_YAML, RZ_EINVALID);
    expect_msg(d, 3, 5, RZ_EINVALID, "a flow trigger needs the 'flow' it follows");
    expect_msg(d, 4, 12, RZ_EINVALID, "an event's name is 1-64 letters");
    expect_msg(d, 5, 34, RZ_EINVALID, "unknown event trigger field 'foo' (event, name, enabled)");
    rz_diags_free(d);
}

/* A flow input with no default is required unless it says otherwise, and
 * an export keeps which. */
static void inputs_without_default_are_required(void **state)
{
    (void)state;
    const char *y = "flux: 1\ninputs:\n  a: {type: string}\n  b: {type: string, required: false}\n"
                    "  c: 3\n  d:\n  e: {default: x}\nsteps:\n  s: {module: echo}\n";
    rz_flow *f = parse_ok(y, strlen(y), RZ_FORMAT_YAML);
    assert_int_equal(f->n_inputs, 5);
    assert_true(f->inputs[0].required);
    assert_false(f->inputs[1].required);
    assert_false(f->inputs[2].required);
    assert_true(f->inputs[3].required);
    assert_false(f->inputs[4].required);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(rz_flow_to_json(f, 0, &out, &len), RZ_OK);
    rz_flow *g = parse_ok(out, len, RZ_FORMAT_JSON);
    for (size_t i = 0; i < f->n_inputs; i++)
        assert_int_equal(g->inputs[i].required, f->inputs[i].required);
    rz_free(out);
    rz_flow_free(g);
    rz_flow_free(f);
}

/* ---- the flow language: joins, on_exit, flow outputs ---- */

/* A flow through every syntax and back gives the same canonical JSON. */
static void expect_round_trips(const char *yaml_src, const char *needle)
{
    rz_flow *f = parse_ok(yaml_src, strlen(yaml_src), RZ_FORMAT_YAML);
    char *j = to_json(f), *y, *b;
    assert_non_null(strstr(j, needle));
    size_t yn, bn, cn;
    unsigned char *cbor;
    assert_int_equal(rz_flow_to_yaml(f, &y, &yn), RZ_OK);
    assert_int_equal(rz_flow_to_cbor(f, &cbor, &cn), RZ_OK);
    assert_int_equal(rz_flow_to_json(f, RZ_EXPORT_BUILDER, &b, &bn), RZ_OK);
    const struct { const void *p; size_t n; rz_format fmt; } back[] = {
        {y, yn, RZ_FORMAT_YAML}, {cbor, cn, RZ_FORMAT_CBOR}, {j, strlen(j), RZ_FORMAT_JSON},
    };
    for (size_t i = 0; i < 3; i++) {
        rz_flow *g = parse_ok(back[i].p, back[i].n, back[i].fmt);
        char *jg = to_json(g);
        assert_string_equal(j, jg);
        rz_free(jg);
        rz_flow_free(g);
    }
    /* The builder shape keeps it too (compared in builder shape). */
    rz_flow *g = parse_ok(b, bn, RZ_FORMAT_JSON);
    char *b2;
    assert_int_equal(rz_flow_to_json(g, RZ_EXPORT_BUILDER, &b2, NULL), RZ_OK);
    assert_string_equal(b, b2);
    rz_free(b2);
    rz_flow_free(g);
    rz_free(b);
    rz_free(cbor);
    rz_free(y);
    rz_free(j);
    rz_flow_free(f);
}

static void join_loads_and_round_trips(void **state)
{
    (void)state;
    expect_round_trips("flux: 1\nname: f\nsteps:\n  a: {module: m}\n"
                       "  b: {module: m, for_each: \"${{ steps.a.outputs.xs }}\", "
                       "max_parallel: 3, inputs: {v: \"${{ item }}\", "
                       "w: \"${{ each.value }}\", k: \"${{ item.k[index] }}\"}}\n"
                       "  c: {module: m, for_each: [1, {k: x}, \"${{ index }}\"]}\n",
                       "\"for_each\":\"${{ steps.a.outputs.xs }}\",\"max_parallel\":3");
    expect_round_trips("flux: 1\nname: n\nsteps:\n"
                       "  b: {module: m, for_each: [[1, 2], []], for_each_depth: 2, "
                       "inputs: {v: \"${{ indices[0] }}\", w: \"${{ each.indices }}\"}}\n",
                       "\"for_each\":[[1,2],[]],\"for_each_depth\":2");
    expect_round_trips("flux: 1\nname: j\nsteps:\n  a: {module: m}\n  b: {module: m}\n"
                       "  c: {module: m, needs: [a, b], join: any_succeeded}\n",
                       "\"join\":\"any_succeeded\"");
    expect_round_trips("flux: 1\nname: e\nsteps:\n  a: {module: m}\n"
                       "on_exit:\n  module: alert@1\n  inputs: {s: \"${{ flow.status }}\"}\n"
                       "  retry: 2\n"
                       "outputs:\n  n: \"${{ steps.a.outputs.n }}\"\n  k: 5\n",
                       "\"on_exit\":{\"module\":\"alert@1\",\"inputs\":{\"s\":");
    rz_diags *d0 = parse_fail("flux: 1\nsteps:\n  a: {module: m}\n"
                              "on_exit: {module: m, needs: [a], join: all_done}\n"
                              "outputs: [1]\n", RZ_FORMAT_YAML, RZ_EINVALID);
    expect_diag(d0, "/on_exit/needs", RZ_EINVALID, 4, 22);
    expect_diag(d0, "/on_exit/join", RZ_EINVALID, 4, 40);
    expect_diag(d0, "/outputs", RZ_EINVALID, 5, 1);   /* a list: at its key */
    rz_diags_free(d0);
    const char *y = "flux: 1\nsteps:\n  a: {module: m}\n"
                    "  b: {module: m, needs: [a], join: some}\n";
    rz_diags *d = parse_fail(y, RZ_FORMAT_YAML, RZ_EINVALID);
    expect_diag(d, "/steps/b/join", RZ_EINVALID, 4, 36);
    assert_true(has_msg(d, RZ_EINVALID, "'join' must be all_succeeded, any_succeeded, "
                        "all_done, none_failed or one_failed", 4, 36));
    rz_diags_free(d);
    const char *js = "{\"nodes\": [{\"id\": \"a\", \"moduleId\": \"m\", \"join\": 3}]}";
    d = parse_fail(js, RZ_FORMAT_JSON, RZ_EINVALID);
    uint32_t l, c;
    where(js, "3}", &l, &c);
    expect_diag(d, "/nodes/0/join", RZ_EINVALID, l, c);
    rz_diags_free(d);
}

/* NAME=VALUE inputs: JSON when it parses, else a string; no NUL gets by. */
static void inputs_from_pairs(void **state)
{
    (void)state;
    const char *ok[] = {"n=3", "text=hello world", "on=true", "obj={\"a\":[1]}", "n=4",
                        "empty="};
    char *out = NULL;
    assert_int_equal(rz_flow_inputs_parse(&out, ok, 6), RZ_OK);
    assert_string_equal(out, "{\"text\":\"hello world\",\"on\":true,\"obj\":{\"a\":[1]},"
                             "\"n\":4,\"empty\":\"\"}");
    rz_free(out);
    assert_int_equal(rz_flow_inputs_parse(&out, NULL, 0), RZ_OK);
    assert_string_equal(out, "{}");
    rz_free(out);
    const char *nul[] = {"a=1", "t=\"x\\u0000y\""};
    out = (char *)1;
    assert_int_equal(rz_flow_inputs_parse(&out, nul, 2), RZ_EINVALID);
    assert_null(out);
    assert_string_equal(rz_error_last()->message,
                        "input t: a NUL character (\\u0000) in the value");
    /* Escaped backslash before u0000 is no NUL: text with a backslash. */
    const char *esc[] = {"t=\"x\\\\u0000y\""};
    assert_int_equal(rz_flow_inputs_parse(&out, esc, 1), RZ_OK);
    assert_string_equal(out, "{\"t\":\"x\\\\u0000y\"}");
    rz_free(out);
    const char *bad[] = {"=3"};
    assert_int_equal(rz_flow_inputs_parse(&out, bad, 1), RZ_EINVALID);
    assert_string_equal(rz_error_last()->message, "input '=3' is not NAME=VALUE");
    assert_int_equal(rz_flow_inputs_parse(NULL, bad, 1), RZ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builder_json_loads),
        cmocka_unit_test(yaml_loads_with_core_schema),
        cmocka_unit_test(format_detection_by_content),
        cmocka_unit_test(missing_file_and_bad_arguments),
        cmocka_unit_test(json_shape_errors_in_one_pass),
        cmocka_unit_test(yaml_shape_errors_in_one_pass),
        cmocka_unit_test(top_level_shapes),
        cmocka_unit_test(json_syntax_error_location),
        cmocka_unit_test(yaml_syntax_error_location),
        cmocka_unit_test(deep_nesting_is_refused),
        cmocka_unit_test(oversized_input_is_refused),
        cmocka_unit_test(billion_laughs_is_refused),
        cmocka_unit_test(hostile_cbor_fails_cleanly),
        cmocka_unit_test(step_budget_is_validated),
        cmocka_unit_test(empty_module_version_is_none),
        cmocka_unit_test(not_utf8_and_inexact_integers_refused),
        cmocka_unit_test(json_cbor_json_round_trip),
        cmocka_unit_test(yaml_round_trips),
        cmocka_unit_test(join_loads_and_round_trips),
        cmocka_unit_test(inputs_from_pairs),
        cmocka_unit_test(tricky_scalars_round_trip),
        cmocka_unit_test(extras_order_round_trips),
        cmocka_unit_test(depth_limit_same_in_yaml_and_json),
        cmocka_unit_test(credentials_are_stripped),
        cmocka_unit_test(export_arguments),
        cmocka_unit_test(locate_pointers),
        cmocka_unit_test(link_computes_sorted_unique_deps),
        cmocka_unit_test(duplicate_ids_keep_both_steps),
        cmocka_unit_test(module_ids_are_checked),
        cmocka_unit_test(duplicate_keys_are_errors),
        cmocka_unit_test(unknown_step_keys_are_errors),
        cmocka_unit_test(unknown_step_key_far_from_all_lists_the_keys),
        cmocka_unit_test(credential_values_warn),
        cmocka_unit_test(numbers_export_exactly),
        cmocka_unit_test(null_and_empty_input),
        cmocka_unit_test(input_types_are_checked),
        cmocka_unit_test(yaml_depth_location),
        cmocka_unit_test(yaml_documents_nul_and_merge_keys),
        cmocka_unit_test(step_ids_follow_one_rule),
        cmocka_unit_test(numbers_out_of_range_say_so),
        cmocka_unit_test(verify_replicas_checked),
        cmocka_unit_test(triggers_are_checked),
        cmocka_unit_test(flow_and_event_triggers_are_checked),
        cmocka_unit_test(inputs_without_default_are_required),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
