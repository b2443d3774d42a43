/* The official JSON-Schema-Test-Suite, draft7, as packaged by Debian
 * (json-schema-test-suite). Every file under tests/draft7/ except optional/
 * and refRemote.json; a case group is skipped only when its schema needs a
 * remote document ($ref to another URI). Override the folder with
 * RZ_JSON_SCHEMA_SUITE=/path/to/tests/draft7. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema/schema_impl.h"

#define DEFAULT_DIR "/usr/share/json-schema-test-suite/tests/draft7"

typedef struct tally {
    size_t passed, failed, skipped_remote;
} tally;

/* Does the schema refer to another document anywhere? */
static bool needs_remote(const cJSON *x)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, x) {
        if (c->string && strcmp(c->string, "$ref") == 0 && cJSON_IsString(c) &&
            c->valuestring[0] != '#')
            return true;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && needs_remote(c))
            return true;
    }
    return false;
}

static int count_errors(void *ud, const rz_schema_error *e)
{
    assert_non_null(e->pointer);
    assert_non_null(e->keyword);
    assert_true(e->message[0] != '\0');
    (*(size_t *)ud)++;
    return 0;
}

static void run_case(tally *t, const char *file, const char *group,
                     const rz_schema *s, const cJSON *test)
{
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(test, "description");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(test, "data");
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(test, "valid");
    assert_non_null(data);
    assert_true(cJSON_IsBool(valid));
    size_t errors = 0;
    int rc = rz__schema_eval(s, data, NULL, count_errors, &errors);
    bool want = cJSON_IsTrue(valid);
    /* Valid cases report nothing; invalid ones at least one error. */
    bool ok = want ? rc == RZ_OK && errors == 0
                   : rc == RZ_EINVALID && errors > 0;
    if (ok) {
        t->passed++;
        return;
    }
    t->failed++;
    char *text = cJSON_PrintUnformatted(data);
    fprintf(stderr, "FAIL %s: %s / %s: data %s: want %s, got %s (%zu errors)\n",
            file, group, cJSON_IsString(desc) ? desc->valuestring : "?",
            text ? text : "?", want ? "valid" : "invalid", rz_status_name(rc),
            errors);
    free(text);
}

static void run_file(tally *t, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text;
    size_t len;
    assert_int_equal(rz__read_file(path, 64u << 20, &text, &len), RZ_OK);
    cJSON *groups = cJSON_ParseWithLength(text, len);
    free(text);
    if (!groups)
        fail_msg("%s: not JSON", path);
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(g, "description");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(g, "schema");
        const cJSON *tests = cJSON_GetObjectItemCaseSensitive(g, "tests");
        const char *gname = cJSON_IsString(desc) ? desc->valuestring : "?";
        if (needs_remote(schema)) {
            t->skipped_remote += (size_t)cJSON_GetArraySize(tests);
            continue;
        }
        rz_schema *s;
        int rc = rz__schema_compile(&s, schema);
        if (rc != RZ_OK) {
            fprintf(stderr, "FAIL %s: %s: schema does not compile: %s\n", name,
                    gname, rz_error_last()->message);
            t->failed += (size_t)cJSON_GetArraySize(tests);
            continue;
        }
        const cJSON *tc;
        cJSON_ArrayForEach(tc, tests)
            run_case(t, name, gname, s, tc);
        rz_schema_free(s);
    }
    cJSON_Delete(groups);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_draft7(void **state)
{
    (void)state;
    const char *dir = getenv("RZ_JSON_SCHEMA_SUITE");
    if (!dir || !*dir)
        dir = DEFAULT_DIR;
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s: install the json-schema-test-suite package "
                 "(scripts/bootstrap does) or set RZ_JSON_SCHEMA_SUITE to the "
                 "suite's tests/draft7 folder", dir);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < RZ_ARRAY_LEN(names)) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0 &&
            strcmp(e->d_name, "refRemote.json") != 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    tally t = {0};
    for (size_t i = 0; i < n; i++) {
        run_file(&t, dir, names[i]);
        free(names[i]);
    }
    printf("draft7: %zu passed, %zu failed, %zu skipped (remote $ref; "
           "refRemote.json and optional/ not run) in %zu files\n",
           t.passed, t.failed, t.skipped_remote, n);
    assert_true(n > 0);
    assert_true(t.passed > 0);
    assert_int_equal(t.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draft7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
