/* Module registry: manifests, version specs, folders and path lists. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module/module_impl.h"

#define MODS RZ_SOURCE_ROOT "/tests/data/modules"

/* ---- semver ---- */

static void test_semver_parse(void **state)
{
    (void)state;
    uint32_t v[3];
    assert_int_equal(rz__semver_parse("1.2.3", v), RZ_OK);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 3);
    assert_int_equal(rz__semver_parse("0.0.0", v), RZ_OK);
    assert_int_equal(rz__semver_parse("4294967295.0.10", v), RZ_OK);
    assert_int_equal(v[0], 4294967295u);
    assert_int_equal(v[2], 10);
    static const char *const bad[] = {
        "", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1..3", "1.2.", ".1.2",
        "a.b.c", "-1.0.0", " 1.0.0", "1.0.0 ", "1.0.0-beta", "4294967296.0.0",
        "99999999999999999999.0.0", "^1.2.3", "v1.2.3",
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(bad); i++)
        assert_int_equal(rz__semver_parse(bad[i], v), RZ_EINVAL);
    assert_int_equal(rz__semver_parse(NULL, v), RZ_EINVAL);

    uint32_t a[3] = {1, 10, 0}, b[3] = {1, 9, 99}, c[3] = {1, 10, 0};
    assert_true(rz__semver_cmp(a, b) > 0);
    assert_true(rz__semver_cmp(b, a) < 0);
    assert_int_equal(rz__semver_cmp(a, c), 0);
}

static bool spec_matches(const char *spec, const char *ver)
{
    rz__verspec s;
    uint32_t v[3];
    assert_int_equal(rz__verspec_parse(spec, &s), RZ_OK);
    assert_int_equal(rz__semver_parse(ver, v), RZ_OK);
    return rz__verspec_match(&s, v);
}

static void test_verspec(void **state)
{
    (void)state;
    assert_true(spec_matches("", "0.0.1"));
    assert_true(spec_matches("*", "7.0.1"));
    assert_true(spec_matches("1.2.3", "1.2.3"));
    assert_false(spec_matches("1.2.3", "1.2.4"));
    assert_true(spec_matches("1", "1.99.0"));
    assert_false(spec_matches("1", "2.0.0"));
    assert_true(spec_matches("1.2", "1.2.9"));
    assert_false(spec_matches("1.2", "1.20.0"));
    assert_true(spec_matches("^1.2", "1.2.0"));
    assert_true(spec_matches("^1.2", "1.10.0"));
    assert_false(spec_matches("^1.2", "1.1.9"));
    assert_false(spec_matches("^1.2", "2.0.0"));
    assert_true(spec_matches("^1.2.3", "1.2.3"));
    assert_false(spec_matches("^1.2.3", "1.2.2"));
    assert_true(spec_matches("~1.2.3", "1.2.9"));
    assert_false(spec_matches("~1.2.3", "1.3.0"));
    assert_false(spec_matches("~1.2.3", "1.2.2"));
    assert_true(spec_matches("~1.2", "1.2.0"));
    assert_true(spec_matches("~1", "1.5.0"));
    assert_false(spec_matches("~1", "2.0.0"));

    rz__verspec s;
    assert_int_equal(rz__verspec_parse(NULL, &s), RZ_OK);
    assert_int_equal(s.op, RZ_SPEC_ANY);
    assert_int_equal(rz__verspec_parse("1.2.3", &s), RZ_OK);
    assert_int_equal(s.op, RZ_SPEC_EXACT);
    static const char *const bad[] = {
        "^", "~", "^^1", "~^1", "1.x", "1.2.3.4", "latest", ">=1.0", "1.", "01",
        "^1.2.3-rc1", "1 ", "=1.0.0",
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(bad); i++) {
        assert_int_equal(rz__verspec_parse(bad[i], &s), RZ_EINVAL);
        assert_int_equal(rz_error_last()->code, RZ_EINVAL);
        assert_non_null(strstr(rz_error_last()->message, bad[i]));
    }
}

/* ---- registry ---- */

static rz_registry *load(const char *dir, rz_diags **diags)
{
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    if (diags)
        assert_int_equal(rz_diags_new(diags), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, diags ? *diags : NULL), RZ_OK);
    return reg;
}

static void test_load_good(void **state)
{
    (void)state;
    rz_diags *d;
    rz_registry *reg = load(MODS "/good", &d);
    /* .hidden is broken but skipped unseen; README has no manifest. */
    assert_int_equal(rz_diags_count(d), 0);
    assert_int_equal(rz_registry_count(reg), 8);
    static const char *const order[][2] = {
        {"count", "1.0.0"}, {"merge", "1.0.0"}, {"split", "1.0.0"},
        {"split", "1.2.0"}, {"split", "1.2.5"}, {"split", "1.10.1"},
        {"split", "2.0.0"}, {"trader", "0.3.0"},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(order); i++) {
        const rz_module *m = rz_registry_get(reg, i);
        assert_string_equal(rz_module_id(m), order[i][0]);
        assert_string_equal(rz_module_version(m), order[i][1]);
        assert_true(rz_module_dir(m)[0] == '/');
    }
    assert_null(rz_registry_get(reg, 8));

    const rz_module *m = rz_registry_get(reg, 7);
    assert_string_equal(rz_module_name(m), "Trader");
    assert_string_equal(rz_module_description(m), "trader test module");
    assert_int_equal(m->n_creds, 2);
    assert_string_equal(m->creds[0].type, "exchange_api");
    assert_true(m->creds[0].required);
    assert_false(m->creds[1].required);
    assert_string_equal(m->adapter, "process");
    assert_string_equal(m->command[0], "sh");
    assert_string_equal(m->command[1], "./trade.sh");
    assert_null(m->command[2]);
    assert_true(m->network);
    assert_int_equal(m->timeout_s, 60);
    assert_int_equal(m->memory_mb, 256);
    assert_non_null(m->config);
    assert_non_null(m->requirements);
    assert_true(m->estimate_seconds == 1.0);

    /* Required defaults: true, unless a default is given or it says false. */
    const rz_module *merge = rz_registry_get(reg, 1);
    assert_true(rz__module_input(merge, "counts")->required);
    assert_false(rz__module_input(merge, "label")->required);
    assert_false(rz__module_input(merge, "weight")->required);
    assert_string_equal(rz__module_input(merge, "counts")->type, "any");
    assert_string_equal(rz__module_output(merge, "total")->type, "number");
    assert_null(rz__module_input(merge, "total"));
    assert_null(rz__module_output(merge, "counts"));
    assert_null(rz__module_input(NULL, "x"));
    assert_null(rz__module_input(merge, NULL));

    size_t n;
    assert_int_equal(rz__registry_find(reg, "split", &n), 2);
    assert_int_equal(n, 5);
    assert_int_equal(rz__registry_find(reg, "nope", &n), RZ_NPOS);
    assert_int_equal(n, 0);

    rz_diags_free(d);
    rz_registry_free(reg);
}

static void expect_resolve(const rz_registry *reg, const char *id,
                           const char *spec, int rc, const char *version)
{
    const rz_module *m = (const rz_module *)1;
    assert_int_equal(rz_registry_resolve(reg, id, spec, &m), rc);
    if (rc == RZ_OK) {
        assert_string_equal(rz_module_id(m), id);
        assert_string_equal(rz_module_version(m), version);
    } else {
        assert_null(m);
        assert_int_equal(rz_error_last()->code, rc);
    }
}

static void test_resolve(void **state)
{
    (void)state;
    rz_registry *reg = load(MODS "/good", NULL);
    expect_resolve(reg, "split", NULL, RZ_OK, "2.0.0");
    expect_resolve(reg, "split", "", RZ_OK, "2.0.0");
    expect_resolve(reg, "split", "1", RZ_OK, "1.10.1");
    expect_resolve(reg, "split", "1.2", RZ_OK, "1.2.5");
    expect_resolve(reg, "split", "1.2.0", RZ_OK, "1.2.0");
    expect_resolve(reg, "split", "^1.2", RZ_OK, "1.10.1");
    expect_resolve(reg, "split", "^1.10.2", RZ_EMODULE, NULL);
    expect_resolve(reg, "split", "~1.2.0", RZ_OK, "1.2.5");
    expect_resolve(reg, "split", "~1.2.6", RZ_EMODULE, NULL);
    expect_resolve(reg, "split", "^3", RZ_EMODULE, NULL);
    expect_resolve(reg, "split", "1.3", RZ_EMODULE, NULL);
    expect_resolve(reg, "split", "1.x", RZ_EINVAL, NULL);
    expect_resolve(reg, "split", "^", RZ_EINVAL, NULL);
    expect_resolve(reg, "nosuch", NULL, RZ_ENOENT, NULL);
    expect_resolve(reg, "", NULL, RZ_ENOENT, NULL);
    expect_resolve(reg, "trader", "0", RZ_OK, "0.3.0");
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(NULL, "split", NULL, &m), RZ_EINVAL);
    assert_int_equal(rz_registry_resolve(reg, NULL, NULL, &m), RZ_EINVAL);
    assert_int_equal(rz_registry_resolve(reg, "split", NULL, NULL), RZ_EINVAL);
    rz_registry_free(reg);
}

static bool has_diag(const rz_diags *d, const char *suffix, uint32_t line,
                     uint32_t col, const char *needle)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        size_t fl = strlen(x->file), sl = strlen(suffix);
        if (x->code == RZ_EMANIFEST && fl >= sl &&
            strcmp(x->file + fl - sl, suffix) == 0 && x->line == line &&
            x->column == col && strstr(x->message, needle))
            return true;
    }
    return false;
}

static void dump(const rz_diags *d)
{
    char *t;
    if (rz_diags_to_text(d, &t) == RZ_OK)
        fputs(t, stderr);
    rz_free(t);
}

static void test_bad_manifests(void **state)
{
    (void)state;
    rz_diags *d;
    rz_registry *reg = load(MODS "/bad", &d);
    if (rz_diags_count(d) != 28)
        dump(d);
    /* Only the one good manifest among them survives. */
    assert_int_equal(rz_registry_count(reg), 1);
    assert_string_equal(rz_module_id(rz_registry_get(reg, 0)), "okay");
    assert_int_equal(rz_diags_count(d), 28);
    assert_int_equal(rz_diags_error_count(d), 28);
    const char *l = "bad/localllm/module.json";
    assert_true(has_diag(d, l, 3, 28, "'provider' must be a JSON pointer into "
                         "the step's config"));
    assert_true(has_diag(d, l, 3, 15, "missing required field 'model'"));
    assert_true(has_diag(d, l, 3, 15, "missing required field 'max_prompt_tokens'"));
    assert_true(has_diag(d, l, 3, 53, "'input' must name one of the module's inputs"));
    assert_true(has_diag(d, l, 3, 71, "'output' must name one of the module's outputs"));
    assert_true(has_diag(d, l, 3, 91, "'max_tokens' must be a whole number from 1 to 1000000"));
    assert_true(has_diag(d, "bad/kind/module.json", 2, 10,
                         "'kind' must be \"job\" (the default: runs and exits) or "
                         "\"service\" (runs until stopped)"));
    assert_true(has_diag(d, "bad/scratch/module.json", 3, 56,
                         "'scratch_mb' must be a whole number of MiB"));

    assert_true(has_diag(d, "bad/syntax/module.json", 4, 29, "JSON syntax error"));
    assert_true(has_diag(d, "bad/notobject/module.json", 1, 1, "must be a JSON object"));
    assert_true(has_diag(d, "bad/empty/module.json", 1, 1, "JSON syntax error"));
    assert_true(has_diag(d, "bad/noexec/module.json", 1, 1, "missing required field 'exec'"));
    assert_true(has_diag(d, "bad/outcheck/module.json", 2, 19,
                         "'outputs_check' must be \"strict\" or \"warn\""));

    const char *f = "bad/fields/module.json";
    assert_true(has_diag(d, f, 2, 9, "module id 'bad id!'"));
    assert_true(has_diag(d, f, 3, 14, "version '1.0' is not MAJOR.MINOR.PATCH"));
    assert_true(has_diag(d, f, 5, 27, "unknown type 'strin'"));
    assert_true(has_diag(d, f, 6, 5, "missing required field 'name'"));
    assert_true(has_diag(d, f, 7, 14, "duplicate input 'a'"));
    assert_true(has_diag(d, f, 9, 14, "'outputs' must be an array"));
    assert_true(has_diag(d, f, 10, 19, "missing required field 'type'"));
    assert_true(has_diag(d, f, 11, 33, "'cpu_cores' must be a non-negative number"));
    assert_true(has_diag(d, f, 11, 54, "'count' must be a non-negative number"));
    assert_true(has_diag(d, f, 12, 11, "the process adapter needs 'command'"));

    const char *c = "bad/container/module.json";
    assert_true(has_diag(d, c, 5, 11, "the docker adapter needs 'image'"));
    assert_true(has_diag(d, c, 5, 41, "'pull' must be \"if-not-present\", "
                         "\"always\" or \"never\""));
    assert_true(has_diag(d, c, 5, 67, "'read_only' must be true or false"));
    const char *w = "bad/wasm/module.json";
    assert_true(has_diag(d, w, 5, 11, "the wasm adapter needs 'module', a "
                         "path inside the module's folder"));
    assert_true(has_diag(d, w, 5, 11, "the wasm adapter needs 'sha256'"));
    rz_diags_free(d);
    rz_registry_free(reg);
}

static void test_path_list(void **state)
{
    (void)state;
    rz_registry *reg;
    rz_diags *d;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    /* Empty components are skipped; a missing folder fails the call but the
     * others are still added. */
    assert_int_equal(rz_registry_add_path_list(reg, ":" MODS "/good::" MODS
                                               "/nonexistent:" MODS "/extra:", d),
                     RZ_ENOENT);
    assert_int_equal(rz_diags_count(d), 0);
    assert_int_equal(rz_registry_count(reg), 9);
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, "split", "1.0.0", &m), RZ_OK);
    /* The earlier folder wins for an identical id@version. */
    assert_string_equal(rz_module_description(m), "split test module");
    assert_non_null(strstr(rz_module_dir(m), "/good/split-1.0.0"));
    assert_int_equal(rz_registry_resolve(reg, "count", NULL, &m), RZ_OK);
    assert_string_equal(rz_module_version(m), "2.1.0");
    assert_int_equal(rz_registry_resolve(reg, "count", "^1", &m), RZ_OK);
    assert_string_equal(rz_module_version(m), "1.0.0");
    /* Adding the same folder again changes nothing. */
    assert_int_equal(rz_registry_add_path_list(reg, MODS "/good", NULL), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 9);
    assert_int_equal(rz_registry_add_path_list(reg, "", NULL), RZ_OK);
    assert_int_equal(rz_registry_add_path_list(reg, NULL, NULL), RZ_EINVAL);
    rz_diags_free(d);
    rz_registry_free(reg);
}

static void test_dirs(void **state)
{
    (void)state;
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, "/nonexistent/rhizos", NULL), RZ_ENOENT);
    assert_int_equal(rz_error_last()->code, RZ_ENOENT);
    /* A file is not a folder. */
    assert_int_equal(rz_registry_add_dir(reg, MODS "/good/count/module.json", NULL),
                     RZ_ENOENT);
    assert_int_equal(rz_registry_add_dir(reg, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_registry_add_dir(NULL, MODS, NULL), RZ_EINVAL);
    /* A relative folder still yields absolute module folders. */
    assert_int_equal(chdir(RZ_SOURCE_ROOT "/tests/data"), 0);
    assert_int_equal(rz_registry_add_dir(reg, "modules/extra", NULL), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 2);
    assert_string_equal(rz_module_dir(rz_registry_get(reg, 0)),
                        RZ_SOURCE_ROOT "/tests/data/modules/extra/count-2");
    rz_registry_free(reg);
    rz_registry_free(NULL);
    assert_int_equal(rz_registry_count(NULL), 0);
    assert_null(rz_registry_get(NULL, 0));
    assert_null(rz_module_id(NULL));
    assert_int_equal(rz_registry_new(NULL), RZ_EINVAL);
}

static void test_manifest_json(void **state)
{
    (void)state;
    rz_registry *reg = load(MODS "/extra", NULL);
    char *s;
    assert_int_equal(rz_module_manifest_json(rz_registry_get(reg, 0), &s), RZ_OK);
    /* Keys sorted at every level. */
    assert_string_equal(s,
        "{\"description\":\"count test module\",\"estimate\":{\"seconds\":1},"
        "\"exec\":{\"adapter\":\"process\",\"command\":[\"python3\",\"./count.py\"],"
        "\"network\":false,\"timeout_s\":30},\"id\":\"count\","
        "\"inputs\":[{\"name\":\"text\",\"type\":\"string\"}],\"name\":\"Count\","
        "\"outputs\":[{\"name\":\"count\",\"type\":\"integer\"}],"
        "\"requirements\":{\"adapter\":\"process\",\"cpu_cores\":1,\"memory_mb\":64},"
        "\"version\":\"2.1.0\"}");
    rz_free(s);
    s = (char *)1;
    assert_int_equal(rz_module_manifest_json(NULL, &s), RZ_EINVAL);
    assert_null(s);
    rz_registry_free(reg);
}

/* Hostile folders: an oversized manifest and one nested past cJSON's limit. */
static void write_file(const char *path, const char *head, size_t fill, char c,
                       const char *tail)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(head, fp);
    for (size_t i = 0; i < fill; i++)
        fputc(c, fp);
    fputs(tail, fp);
    fclose(fp);
}

static void test_hostile(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/rz-module-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char path[512];
    snprintf(path, sizeof path, "%s/huge", root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/huge/module.json", root);
    write_file(path, "{\"description\":\"", 5u * 1024 * 1024, 'x', "\"}");
    snprintf(path, sizeof path, "%s/deep", root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/deep/module.json", root);
    write_file(path, "", 100000, '[', "");

    rz_diags *d;
    rz_registry *reg = load(root, &d);
    assert_int_equal(rz_registry_count(reg), 0);
    assert_int_equal(rz_diags_count(d), 2);
    /* cJSON stops at its nesting limit, somewhere on line 1. */
    assert_true(has_diag(d, "deep/module.json", 1, 1001, "JSON syntax error"));
    assert_true(has_diag(d, "huge/module.json", 0, 0, "manifest larger than the limit of 4194304 bytes"));
    rz_diags_free(d);
    rz_registry_free(reg);

    snprintf(path, sizeof path, "%s/huge/module.json", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/deep/module.json", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/huge", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/deep", root);
    rmdir(path);
    rmdir(root);
}


/* ---- chain:// references, ^0.x, the catalog ---- */

static void test_chain_refs(void **state)
{
    (void)state;
    rz_registry *reg = load(MODS "/good", NULL);
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, "chain://split", NULL, &m), RZ_OK);
    assert_string_equal(rz_module_id(m), "split");
    assert_string_equal(rz_module_version(m), "2.0.0");
    assert_int_equal(rz_registry_resolve(reg, "chain://split", "^1.2", &m), RZ_OK);
    assert_string_equal(rz_module_version(m), "1.10.1");
    assert_int_equal(rz_registry_resolve(reg, "chain://split@~1.2.0", NULL, &m), RZ_OK);
    assert_string_equal(rz_module_version(m), "1.2.5");
    assert_int_equal(rz_registry_resolve(reg, "chain://split@1", "", &m), RZ_OK);
    assert_string_equal(rz_module_version(m), "1.10.1");
    /* A version in the reference and another beside it: ambiguous. */
    assert_int_equal(rz_registry_resolve(reg, "chain://split@1", "2", &m), RZ_EINVAL);
    assert_null(m);
    assert_int_equal(rz_registry_resolve(reg, "chain://split@9", NULL, &m), RZ_EMODULE);
    assert_int_equal(rz_registry_resolve(reg, "chain://split@x", NULL, &m), RZ_EINVAL);
    assert_int_equal(rz_registry_resolve(reg, "chain://", NULL, &m), RZ_ENOENT);
    assert_int_equal(rz_registry_resolve(reg, "chain://nosuch", NULL, &m), RZ_ENOENT);
    /* Only the exact prefix is special. */
    assert_int_equal(rz_registry_resolve(reg, "CHAIN://split", NULL, &m), RZ_ENOENT);
    assert_int_equal(rz_registry_resolve(reg, "chain:/split", NULL, &m), RZ_ENOENT);
    assert_string_equal(rz__module_ref_id("chain://a@1"), "a@1");
    assert_string_equal(rz__module_ref_id("a"), "a");
    assert_null(rz__module_ref_id(NULL));
    rz_registry_free(reg);
}

static void test_caret_zero(void **state)
{
    (void)state;
    /* Below 1.0.0 the first non-zero part is the one that must not change. */
    assert_true(spec_matches("^0.2", "0.2.0"));
    assert_true(spec_matches("^0.2", "0.2.9"));
    assert_false(spec_matches("^0.2", "0.3.0"));
    assert_true(spec_matches("^0.2.3", "0.2.4"));
    assert_false(spec_matches("^0.2.3", "0.2.2"));
    assert_false(spec_matches("^0.2.3", "0.3.0"));
    assert_true(spec_matches("^0.0.3", "0.0.3"));
    assert_false(spec_matches("^0.0.3", "0.0.4"));
    assert_true(spec_matches("^0.0", "0.0.7"));
    assert_false(spec_matches("^0.0", "0.1.0"));
    assert_true(spec_matches("^0", "0.9.9"));
    assert_false(spec_matches("^0", "1.0.0"));
    assert_true(spec_matches("^1.0.0", "1.9.0"));
    /* trader 0.3.0 through a caret */
    rz_registry *reg = load(MODS "/good", NULL);
    expect_resolve(reg, "trader", "^0.3", RZ_OK, "0.3.0");
    expect_resolve(reg, "trader", "^0.2", RZ_EMODULE, NULL);
    expect_resolve(reg, "trader", "^0.3.1", RZ_EMODULE, NULL);
    rz_registry_free(reg);
}

static const cJSON *at(const rz_module *m, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(m->manifest, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

/* Eliza's node-served model: llm.provider "local" runs the llm adapter,
 * any other provider its container; the request the adapter gets. */
static void eliza_local_llm(const rz_module *m)
{
    assert_string_equal(m->local_llm.provider, "/llm/provider");
    assert_string_equal(m->local_llm.model, "/llm/model");
    assert_string_equal(m->local_llm.output, "posts");
    assert_int_equal(m->local_llm.max_tokens, 256);
    assert_string_equal(rz_module_step_adapter(m, "{\"llm\":{\"provider\":\"local\","
                                               "\"model\":\"m\"}}"), "llm");
    assert_string_equal(rz_module_step_adapter(m, "{\"llm\":{\"provider\":\"openai\"}}"),
                        "docker");
    assert_string_equal(rz_module_step_adapter(m, "{\"llm\":\"local\"}"), "docker");
    assert_string_equal(rz_module_step_adapter(m, "not json"), "docker");
    assert_string_equal(rz_module_step_adapter(m, NULL), "docker");
    assert_null(rz_module_step_adapter(NULL, NULL));
    cJSON *cfg = cJSON_Parse("{\"personality\":{\"name\":\"M\"},\"llm\":"
                             "{\"provider\":\"local\",\"model\":\"tiny\"}}");
    char *req = rz__local_llm_request(m, "{\"inputs\":{\"events\":{\"n\":1}},"
                                      "\"config\":{\"personality\":{\"name\":\"M\"},"
                                      "\"llm\":{\"provider\":\"local\",\"model\":\"tiny\"}}}");
    assert_non_null(req);
    cJSON *r = cJSON_Parse(req);
    const cJSON *msgs = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "inputs"), "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 2);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(msgs, 1), "content")), "{\"n\":1}");
    assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(msgs, 0), "content")), "\n\n{\"name\":\"M\"}"));
    const cJSON *rc = cJSON_GetObjectItem(r, "config");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rc, "model")), "tiny");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rc, "output")), "posts");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(rc, "output_list")));
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(rc, "max_prompt_tokens")), 4096);
    cJSON_Delete(r);
    free(req);
    /* No model named: refused with where it should be. */
    assert_null(rz__local_llm_request(m, "{\"config\":{\"llm\":{\"provider\":\"local\"}}}"));
    assert_non_null(strstr(rz_error_last()->message, "config /llm/model must name the model"));
    assert_null(rz__local_llm_request(m, "[1]"));
    assert_true(rz__local_llm_on(m, cfg));
    assert_null(rz__json_at(cfg, "/llm/model/x"));
    assert_string_equal(cJSON_GetStringValue(rz__json_at(cfg, "/personality/name")), "M");
    cJSON_Delete(cfg);
}

static void test_catalog(void **state)
{
    (void)state;
    rz_diags *d;
    rz_registry *reg = load(RZ_SOURCE_ROOT "/examples/modules", &d);
    dump(d);
    assert_int_equal(rz_diags_count(d), 0);
    static const char *const gpu[] = {
        "mod-llama-inference", "mod-stable-diffusion", "mod-whisper",
        "mod-blender-render",
    };
    static const char *const api[] = {
        "mod-llama-inference", "mod-stable-diffusion", "mod-whisper",
    };
    static const char *const all[] = {
        "rhizos-hummingbot", "rhizos-eliza", "mod-ffmpeg", "mod-scrapy-crawler",
    };
    const rz_module *m;
    for (size_t i = 0; i < RZ_ARRAY_LEN(gpu); i++) {
        assert_int_equal(rz_registry_resolve(reg, gpu[i], "^1", &m), RZ_OK);
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(m->requirements, "gpu");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(g, "count")) >= 1);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(g, "vram_mb")) >= 4096);
        assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(g, "min_compute_capability")));
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "vendor")),
                            "nvidia");
        assert_true(m->estimate_seconds > 0);
        assert_string_equal(m->adapter, "docker");
        assert_true(cJSON_IsString(at(m, "exec", "image")));
    }
    for (size_t i = 0; i < RZ_ARRAY_LEN(api); i++) {
        assert_int_equal(rz_registry_resolve(reg, api[i], NULL, &m), RZ_OK);
        assert_true(cJSON_IsString(at(m, "api_alternative", "provider")));
        assert_true(cJSON_IsObject(at(m, "api_alternative", "units")));
    }
    for (size_t i = 0; i < RZ_ARRAY_LEN(all); i++) {
        assert_int_equal(rz_registry_resolve(reg, all[i], NULL, &m), RZ_OK);
        assert_true(m->estimate_seconds > 0);
        assert_non_null(m->config);
    }
    /* The handoff's Hummingbot schema. */
    assert_int_equal(rz_registry_resolve(reg, "chain://rhizos-hummingbot", NULL, &m), RZ_OK);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(m->config, "properties");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(props, "exchange");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ex, "enum")), 5);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(props, "tradingPairs"), "minItems")), 1);
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(props, "parameters"), "properties");
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(pp, "bidSpread"), "maximum")) * 10, 5);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(pp, "orderAmount"), "exclusiveMinimum")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(props, "dryRun"), "default")));
    assert_int_equal(m->n_creds, 2);
    assert_string_equal(m->creds[0].type, "exchange_api");
    assert_string_equal(m->creds[1].type, "exchange_api");
    /* Eliza: llm provider enum, platform credentials of the handoff's types. */
    assert_int_equal(rz_registry_resolve(reg, "rhizos-eliza", NULL, &m), RZ_OK);
    assert_int_equal(m->n_creds, 4);
    static const char *const types[] = {
        "llm_api", "twitter_oauth", "discord_bot", "telegram_bot",
    };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(m->creds[i].type, types[i]);
    eliza_local_llm(m);
    rz_diags_free(d);
    rz_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semver_parse),
        cmocka_unit_test(test_verspec),
        cmocka_unit_test(test_load_good),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_bad_manifests),
        cmocka_unit_test(test_path_list),
        cmocka_unit_test(test_dirs),
        cmocka_unit_test(test_manifest_json),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_chain_refs),
        cmocka_unit_test(test_caret_zero),
        cmocka_unit_test(test_catalog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
