/* Status table, last error, diagnostics lists, buffers and maps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/rhizos.h"

static void status_names_and_text(void **state)
{
    (void)state;
    assert_string_equal(rz_status_name(RZ_OK), "RZ_OK");
    assert_string_equal(rz_status_name(RZ_ECYCLE), "RZ_ECYCLE");
    assert_string_equal(rz_strerror(RZ_ENOMEM), "out of memory");
    assert_string_equal(rz_status_name(-9999), "RZ_EUNKNOWN_STATUS");
    assert_string_equal(rz_strerror(12345), "unknown status");
    /* Every code in the table has a distinct name and a text. */
    for (int c = 0; c >= RZ__STATUS_LAST; c--) {
        assert_string_not_equal(rz_status_name(c), "RZ_EUNKNOWN_STATUS");
        assert_string_not_equal(rz_strerror(c), "unknown status");
        for (int d = c - 1; d >= RZ__STATUS_LAST; d--)
            assert_string_not_equal(rz_status_name(c), rz_status_name(d));
    }
    assert_string_equal(rz_version(), RZ_VERSION_STRING);
}

static void last_error_is_thread_local_detail(void **state)
{
    (void)state;
    rz_error_clear();
    assert_int_equal(rz_error_last()->code, RZ_OK);
    assert_int_equal(rz__error_at(RZ_ESYNTAX, "f.yaml", 3, 7, "/steps/a",
                                  "bad %s", "thing"), RZ_ESYNTAX);
    const rz_error *e = rz_error_last();
    assert_int_equal(e->code, RZ_ESYNTAX);
    assert_string_equal(e->message, "bad thing");
    assert_string_equal(e->file, "f.yaml");
    assert_int_equal(e->line, 3);
    assert_int_equal(e->column, 7);
    assert_string_equal(e->pointer, "/steps/a");
    /* Wrapping the previous message in a new one is safe. */
    rz__error_at(RZ_EINVAL, e->file, 1, 1, e->pointer, "wrapped: %s (%s)",
                 e->message, e->pointer);
    assert_string_equal(rz_error_last()->message, "wrapped: bad thing (/steps/a)");
    assert_string_equal(rz_error_last()->file, "f.yaml");
    /* Overlong messages are cut, never overflow. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rz__error(RZ_EINVAL, "%s", big);
    assert_int_equal(strlen(rz_error_last()->message), sizeof e->message - 1);
}

static void diags_collect_sort_and_print(void **state)
{
    (void)state;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz__diag(d, RZ_SEV_ERROR, RZ_ECYCLE, "b.yaml", 9, 2, "/steps/x", "cycle %s", "a -> a");
    rz__diag(d, RZ_SEV_ERROR, RZ_EDUPLICATE, "b.yaml", 2, 5, "", "dup");
    rz__diag(d, RZ_SEV_WARNING, RZ_EINVAL, "a.json", 1, 1, NULL, "warn");
    assert_int_equal(rz_diags_count(d), 3);
    assert_int_equal(rz_diags_error_count(d), 2);
    /* The first error of the pass is the last error of the thread. */
    assert_int_equal(rz_error_last()->code, RZ_ECYCLE);
    rz_diags_sort(d);
    assert_string_equal(rz_diags_get(d, 0)->file, "a.json");
    assert_int_equal(rz_diags_get(d, 1)->line, 2);
    assert_null(rz_diags_get(d, 3));

    char *text;
    assert_int_equal(rz_diags_to_text(d, &text), RZ_OK);
    assert_string_equal(text, "a.json:1:1: warning: warn\n"
                              "b.yaml:2:5: error: dup\n"
                              "b.yaml:9:2: error: cycle a -> a\n");
    rz_free(text);

    char *json;
    assert_int_equal(rz_diags_to_json(d, &json), RZ_OK);
    cJSON *arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 3);
    cJSON *last = cJSON_GetArrayItem(arr, 2);
    assert_string_equal(cJSON_GetObjectItem(last, "code")->valuestring, "RZ_ECYCLE");
    assert_int_equal(cJSON_GetObjectItem(last, "line")->valueint, 9);
    assert_int_equal(cJSON_GetObjectItem(last, "column")->valueint, 2);
    assert_string_equal(cJSON_GetObjectItem(last, "file")->valuestring, "b.yaml");
    assert_string_equal(cJSON_GetObjectItem(last, "message")->valuestring, "cycle a -> a");
    cJSON_Delete(arr);
    rz_diags_free(d);
    rz_diags_free(NULL);
}

static void diags_are_capped(void **state)
{
    (void)state;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    for (int i = 0; i < 5000; i++)
        rz__diag(d, RZ_SEV_ERROR, RZ_ESYNTAX, "f", (uint32_t)i + 1, 1, NULL, "e%d", i);
    /* Errors are all counted, but storage stops with one closing note. */
    assert_int_equal(rz_diags_error_count(d), 5000);
    assert_true(rz_diags_count(d) <= 1001);
    const rz_diag *note = rz_diags_get(d, rz_diags_count(d) - 1);
    assert_int_equal(note->severity, RZ_SEV_NOTE);
    rz_diags_free(d);
}

static void buffer_and_map(void **state)
{
    (void)state;
    rz__buf b = {0};
    for (int i = 0; i < 1000; i++)
        rz__buf_printf(&b, "%d,", i);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    char *s = rz__buf_take(&b);
    assert_null(b.data);
    free(s);

    rz__map m = {0};
    char keys[3000][8];
    for (int i = 0; i < 3000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(rz__map_put(&m, keys[i], (size_t)i), RZ_OK);
    }
    assert_int_equal(rz__map_put(&m, "k7", 99), RZ_EEXISTS);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(rz__map_get(&m, keys[i]), (size_t)i);
    assert_int_equal(rz__map_get(&m, "nope"), RZ_NPOS);
    rz__map_free(&m);
}

static void read_file_limits(void **state)
{
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(rz__read_file("/nonexistent/x", 10, &data, &len), RZ_ENOENT);
    assert_null(data);
    char path[] = "/tmp/rz-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    assert_int_equal(rz__read_file(path, 9, &data, &len), RZ_ETOOBIG);
    assert_int_equal(rz__read_file(path, 10, &data, &len), RZ_OK);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_names_and_text),
        cmocka_unit_test(last_error_is_thread_local_detail),
        cmocka_unit_test(diags_collect_sort_and_print),
        cmocka_unit_test(diags_are_capped),
        cmocka_unit_test(buffer_and_map),
        cmocka_unit_test(read_file_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
