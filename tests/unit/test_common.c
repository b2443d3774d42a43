/* Status table, last error, diagnostics lists, buffers and maps; the
 * toolkit (arrays, folders, LMDB, text, JSON fields, graphs). */
#include <setjmp.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include <sys/stat.h>

#include "common/array.h"
#include "common/fs.h"
#include "common/graph.h"
#include "common/internal.h"
#include "common/json.h"
#include "common/text.h"
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

/* ---- The toolkit ---- */

static void grow_doubles_from_first(void **state)
{
    (void)state;
    int *v = NULL;
    size_t cap = 0;
    v = rz__grow(v, &cap, 1, sizeof *v, 4);
    assert_non_null(v);
    assert_int_equal(cap, 4);
    int *w = rz__grow(v, &cap, 4, sizeof *v, 4);
    assert_ptr_equal(w, v);   /* room already */
    v = rz__grow(v, &cap, 9, sizeof *v, 4);
    assert_non_null(v);
    assert_int_equal(cap, 16);
    free(v);
}

static void grow_refuses_overflow_and_keeps_the_array(void **state)
{
    (void)state;
    size_t cap = 0;
    char *v = rz__grow(NULL, &cap, 8, 1, 8);
    assert_non_null(v);
    assert_null(rz__grow(v, &cap, SIZE_MAX / 2 + 2, 1, 8));   /* doubling overflows */
    assert_null(rz__grow(v, &cap, SIZE_MAX / 16, 32, 8));     /* bytes overflow */
    assert_int_equal(cap, 8);
    v[7] = 'x';   /* still ours */
    free(v);
}

static void labels_stay_sorted_and_replace(void **state)
{
    (void)state;
    rz__labels l = {0};
    assert_int_equal(rz__labels_set(&l, "zone", "b"), RZ_OK);
    assert_int_equal(rz__labels_set(&l, "gpu", "h100"), RZ_OK);
    assert_int_equal(rz__labels_set(&l, "zone", "c"), RZ_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0], "gpu");
    assert_string_equal(rz__labels_get(&l, "zone"), "c");
    assert_null(rz__labels_get(&l, "nope"));
    rz__labels_free(&l);
}

/* The public mkdir -p: the mode asked for, a file at the path refused with
 * errno kept for the shells' own wording, an empty path refused. */
static void fs_mkdirs_public(void **state)
{
    (void)state;
    char root[] = "/tmp/rz-common-XXXXXX";
    assert_non_null(mkdtemp(root));
    char *deep = rz__asprintf("%s/p/q", root);
    mode_t old = umask(022);
    assert_int_equal(rz_fs_mkdirs(deep, 0750), RZ_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    char *file = rz__asprintf("%s/f", root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(rz_fs_mkdirs(file, 0700), RZ_EIO);
    assert_int_equal(errno, ENOTDIR);
    assert_non_null(strstr(rz_error_last()->message, file));
    assert_int_equal(rz_fs_mkdirs("", 0700), RZ_EINVAL);
    char *rm = rz__asprintf("rm -rf '%s'", root);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(file);
    free(deep);
}

static void mkdirs_creates_parents(void **state)
{
    (void)state;
    char root[] = "/tmp/rz-common-XXXXXX";
    assert_non_null(mkdtemp(root));
    char *deep = rz__asprintf("%s/a/b/c", root);
    assert_int_equal(rz__mkdirs(deep), RZ_OK);
    assert_int_equal(rz__mkdirs(deep), RZ_OK);   /* exists: fine */
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* One level only: a missing parent is an error naming the folder. */
    char *orphan = rz__asprintf("%s/x/y", root);
    assert_int_equal(rz__mkdir(orphan), RZ_EIO);
    assert_non_null(strstr(rz_error_last()->message, orphan));
    /* A file in the way stops mkdir -p, naming the folder it could not make. */
    char *file = rz__asprintf("%s/f", root), *under = rz__asprintf("%s/f/g", root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(rz__mkdirs(under), RZ_EIO);
    assert_non_null(strstr(rz_error_last()->message, under));
    char *rm = rz__asprintf("rm -rf '%s'", root);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(file);
    free(under);
    free(orphan);
    free(deep);
}

static void lmdb_open_makes_the_databases(void **state)
{
    (void)state;
    char root[] = "/tmp/rz-lmdb-XXXXXX";
    assert_non_null(mkdtemp(root));
    static const char *const names[] = {"one", "two"};
    MDB_dbi dbis[2];
    MDB_env *env = NULL;
    assert_int_equal(rz__lmdb_open(&env, root, 1 << 20, MDB_NOSYNC, names, dbis, 2), 0);
    assert_non_null(env);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_val k = {3, "key"}, v = {5, "value"};
    assert_int_equal(mdb_put(txn, dbis[1], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    /* A folder that is not there: the LMDB code, and no environment left. */
    char *gone = rz__asprintf("%s/missing", root);
    env = (MDB_env *)&env;
    assert_int_not_equal(rz__lmdb_open(&env, gone, 1 << 20, 0, names, dbis, 2), 0);
    assert_null(env);
    char *rm = rz__asprintf("rm -rf '%s'", root);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(gone);
}

static void utf8_encodes_every_length(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(rz__utf8_put(0x41, out), 1);
    assert_memory_equal(out, "A", 1);
    assert_int_equal(rz__utf8_put(0xe9, out), 2);
    assert_memory_equal(out, "\xc3\xa9", 2);
    assert_int_equal(rz__utf8_put(0x20ac, out), 3);
    assert_memory_equal(out, "\xe2\x82\xac", 3);
    assert_int_equal(rz__utf8_put(0x1f600, out), 4);
    assert_memory_equal(out, "\xf0\x9f\x98\x80", 4);
}

static void edit_distance_counts_transpositions(void **state)
{
    (void)state;
    assert_int_equal(rz__edit_distance("first", "frist", 3), 1);
    assert_int_equal(rz__edit_distance("needs", "need", 3), 1);
    assert_int_equal(rz__edit_distance("kitten", "sitting", 3), 3);
    assert_int_equal(rz__edit_distance("abc", "xyzxyz", 2), 3);   /* over: limit + 1 */
}

static void suggest_picks_the_closest_within_the_limit(void **state)
{
    (void)state;
    char buf[64];
    rz__suggest s;
    rz__suggest_init(&s, "splti");
    rz__suggest_try(&s, "count");
    rz__suggest_try(&s, "split");
    rz__suggest_try(&s, "splti");   /* the name itself is no hint */
    assert_string_equal(rz__suggest_text(&s, buf, sizeof buf), "; did you mean 'split'?");
    rz__suggest_init(&s, "ab");     /* too short for any hint */
    rz__suggest_try(&s, "ac");
    assert_string_equal(rz__suggest_text(&s, buf, sizeof buf), "");
}

static void text_position_counts_lines(void **state)
{
    (void)state;
    uint32_t line, col;
    rz__text_position("ab\ncd\nef", 8, 4, &line, &col);
    assert_int_equal(line, 2);
    assert_int_equal(col, 2);
    rz__text_position("ab", 2, 99, &line, &col);   /* clamped */
    assert_int_equal(line, 1);
    assert_int_equal(col, 3);
}

static void json_locate_follows_the_pointer(void **state)
{
    (void)state;
    const char *src = "{\n  \"a/b\": [1,\n    {\"x~\": true}]\n}";
    uint32_t line, col;
    rz__json_locate(src, strlen(src), "/a~1b/1/x~0", &line, &col);
    assert_int_equal(line, 3);
    assert_int_equal(col, 12);
    rz__json_locate(src, strlen(src), "/a~1b/7", &line, &col);   /* deepest existing */
    assert_int_equal(line, 2);
    assert_int_equal(col, 10);
}

static void json_fields_name_their_pointer(void **state)
{
    (void)state;
    cJSON *o = cJSON_Parse("{\"n\": -1, \"cc\": \"-1.5\", \"ok\": 8.6, \"s\": 3}");
    assert_non_null(o);
    uint64_t u = 7;
    assert_int_equal(rz__json_u64(o, "n", 100, "/gpu", &u), RZ_EINVALID);
    assert_string_equal(rz_error_last()->pointer, "/gpu/n");
    assert_int_equal(u, 7);
    uint32_t maj = 0, min = 0;
    assert_int_equal(rz__json_major_minor(o, "cc", "", &maj, &min), RZ_EINVALID);
    assert_string_equal(rz_error_last()->message, "/cc: must be \"MAJOR.MINOR\"");
    assert_int_equal(rz__json_major_minor(o, "ok", "", &maj, &min), RZ_OK);
    assert_int_equal(maj, 8);
    assert_int_equal(min, 6);
    const char *str = NULL;
    assert_int_equal(rz__json_str(o, "s", "", &str), RZ_EINVALID);
    assert_int_equal(rz__json_str(o, "absent", "", &str), RZ_OK);
    assert_null(str);
    cJSON_Delete(o);
}

/* 0 <- 1 <- 2 <- 1 (a cycle of 1 and 2), 3 depends on itself, 4 on 0. */
static const size_t g_off[] = {0, 0, 2, 3, 4, 5};
static const size_t g_dep[] = {0, 2, 1, 3, 0};

typedef struct seen_cycles {
    rz__buf text;
    size_t comps;
} seen_cycles;

static const char *digit(const void *ud, size_t i)
{
    static const char *const names[] = {"n0", "n1", "n2", "n3", "n4"};
    (void)ud;
    return names[i];
}

static void note_cycle(void *ud, const size_t *comp, size_t n_comp, const size_t *cycle,
                       size_t n)
{
    seen_cycles *s = ud;
    s->comps += n_comp;
    rz__cycle_text(&s->text, cycle, n, digit, NULL);
    rz__buf_puts(&s->text, "; ");
}

static void graph_orders_and_names_cycles(void **state)
{
    (void)state;
    rz__graph g = {5, g_off, g_dep};
    size_t order[5];
    seen_cycles s = {{0}, 0};
    assert_int_equal(rz__graph_order(&g, order, note_cycle, &s), RZ_OK);
    assert_string_equal(s.text.data, "n1 -> n2 -> n1; n3 -> n3; ");
    assert_int_equal(s.comps, 3);
    assert_int_equal(order[0], 0);   /* what others depend on comes first */
    rz__buf_free(&s.text);
}

static const char *ring_name(const void *ud, size_t i)
{
    static char names[40][8];
    (void)ud;
    snprintf(names[i], sizeof names[i], "s%zu", i);
    return names[i];
}

static void cycle_text_elides_the_middle(void **state)
{
    (void)state;
    size_t ring[40];
    for (size_t i = 0; i < 40; i++)
        ring[i] = i;
    rz__buf b = {0};
    rz__cycle_text(&b, ring, 40, ring_name, NULL);
    assert_non_null(strstr(b.data, "s0 -> s1 -> "));
    assert_non_null(strstr(b.data, " -> s15 -> ... (8 more) -> s24 -> "));
    assert_non_null(strstr(b.data, " -> s39 -> s0"));
    assert_null(strstr(b.data, "s16"));
    rz__buf_free(&b);
}

/* The strict reader's check: text in UTF-8, no \u0000, integers within
 * 2^53; the first bad byte named; linear on a long string. */
/* The whole-number path prints what "%.15g" prints, up to its edge (10^15,
 * where "%.15g" turns to an exponent); past it numbers stay exact; -0
 * keeps its sign. */
static void number_format_whole_numbers(void **state)
{
    (void)state;
    static const double cases[] = {
        0, 1, -1, 7, 10, 99, 100, 4096, -123456789, 1234567890123ll,
        999999999999999.0, -999999999999999.0, 1e15, -1e15, 1e16, 0.5, -2.5,
        9007199254740992.0, 1e300,
    };
    char got[64], want[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rz__number_format(cases[i], got, sizeof got);
        snprintf(want, sizeof want, "%.15g", cases[i]);
        if (fabs(cases[i]) < 1e15)
            assert_string_equal(got, want);
        assert_true(strtod(got, NULL) == cases[i]);   /* exact past it */
    }
    for (long long v = -100000; v <= 100000; v += 7) {
        rz__number_format((double)v, got, sizeof got);
        snprintf(want, sizeof want, "%lld", v);
        assert_string_equal(got, want);
    }
    rz__number_format(-0.0, got, sizeof got);
    assert_string_equal(got, "-0");
}

static void json_text_check_strict(void **state)
{
    (void)state;
    static const struct { const char *text; int rc; const char *where; } cases[] = {
        {"{\"a\":\"caf\xc3\xa9\",\"b\":[9007199254740992,-9007199254740992,1.5e300]}", RZ_OK, NULL},
        {"{\"a\":\"x\\\"\xc3\xa9\\u00e9\"}", RZ_OK, NULL},
        {"{\"a\":\"ok\xc3\xa9\xff\"}", RZ_ESYNTAX, "at byte 10"},
        {"{\"a\":\"\xed\xa0\x80\"}", RZ_ESYNTAX, "at byte 6"},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", RZ_ESYNTAX, "at byte 6"},
        {"{\"a\":\"\xc0\xaf\"}", RZ_ESYNTAX, "at byte 6"},
        {"{\"a\":\"\\u0000\"}", RZ_ESYNTAX, "\\u0000"},
        {"{\"a\":9007199254740993}", RZ_ESYNTAX, "at byte 5 is past 2^53"},
        {"[-18446744073709551616]", RZ_ESYNTAX, "at byte 1 is past 2^53"},
        {"[00000009007199254740992]", RZ_OK, NULL},
        {"[9007199254740993.0, 9007199254740993e0]", RZ_OK, NULL},
        {"[1,\xff]", RZ_ESYNTAX, "outside any string"},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        int rc = rz__json_text_check(cases[i].text, strlen(cases[i].text));
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: %s\n", i, rz_error_last()->message);
        assert_int_equal(rc, cases[i].rc);
        if (cases[i].where)
            assert_non_null(strstr(rz_error_last()->message, cases[i].where));
    }
    /* 8 MiB of text with its one bad byte at the end: one pass. */
    size_t n = 8u << 20;
    char *big = malloc(n + 4);
    assert_non_null(big);
    big[0] = '"';
    memset(big + 1, 'a', n);
    big[n] = '\xff';
    big[n + 1] = '"';
    assert_int_equal(rz__json_text_check(big, n + 2), RZ_ESYNTAX);
    assert_int_equal(rz__utf8_bad_at((unsigned char *)big + 1, n), n - 1);
    free(big);
}

/* The allocation-free syntax check takes nothing cJSON refuses, so an
 * outputs document cJSON could not read for want of memory is told from a
 * malformed one. */
static void json_valid_agrees_with_cjson(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{}", "[]", " {\"a\" : [1, -0.5e+3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"]} ",
        "{", "[1,]", "{\"a\"}", "{\"a\":1,}", "01", "1.", "-", ".5", "1e", "tru",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\x\"", "\"a\nb\"",
        "[1] 2", "", "   ", "\"unterminated",
        "[1234567890123456789012345678901234567890123456789012345678901]",
        "[12345678901234567890123456789012345678901234567890123456789012345]",
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(docs); i++) {
        cJSON *c = cJSON_ParseWithOpts(docs[i], NULL, 1);
        bool ok = rz__json_valid(docs[i], strlen(docs[i]));
        /* What it takes cJSON takes (it may refuse some of cJSON's
         * leniencies, such as "01": then memory is not blamed). */
        if (ok && !c)
            fprintf(stderr, "case %zu: %s: taken here, not by cJSON\n", i, docs[i]);
        assert_true(!ok || c != NULL);
        assert_int_equal(ok, i < 3 || (i == 22));
        cJSON_Delete(c);
    }
    /* Nesting: cJSON's limit is 1000 levels. */
    char deep[2100];
    for (int levels = 999; levels <= 1001; levels++) {
        memset(deep, '[', (size_t)levels);
        memset(deep + levels, ']', (size_t)levels);
        cJSON *c = cJSON_ParseWithLength(deep, (size_t)levels * 2);
        assert_int_equal(rz__json_valid(deep, (size_t)levels * 2), c != NULL);
        cJSON_Delete(c);
    }
}

/* A document cJSON could not hold for memory is RZ_ENOMEM, a malformed one
 * RZ_ESYNTAX, at each allocation in turn. */
static void json_parse_tells_memory_from_syntax(void **state)
{
    (void)state;
    cJSON_Hooks hooks = { rz__malloc, free };
    cJSON_InitHooks(&hooks);
    static const char doc[] = "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":null}";
    long n = 1, failed = 0;
    for (bool past = false; !past; n++) {
        cJSON *out = NULL;
        rz__alloc_fail_at(n, false);
        int rc = rz__json_parse(&out, doc, strlen(doc));
        past = rz__alloc_calls() < n;
        rz__alloc_fail_at(0, false);
        assert_int_equal(rc, past ? RZ_OK : RZ_ENOMEM);
        assert_true((rc == RZ_OK) == (out != NULL));
        failed += rc == RZ_ENOMEM;
        cJSON_Delete(out);
    }
    assert_true(failed >= 5);
    cJSON *out = NULL;
    assert_int_equal(rz__json_parse(&out, "{\"a\":[1,}", 10), RZ_ESYNTAX);
    assert_null(out);
    cJSON_InitHooks(NULL);
}

/* s quoted three ways (appended, measured, put) against cJSON's print. */
static void expect_quoted_as_cjson(const char *s)
{
    cJSON *v = cJSON_CreateString(s);
    char *want = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    assert_non_null(want);
    rz__buf b = {0};
    rz__buf_puts(&b, "x");   /* appended after what is there */
    rz__json_quote(&b, s);
    assert_false(b.failed);
    assert_string_equal(b.data + 1, want);
    assert_int_equal(rz__json_quoted_len(s), strlen(want));
    char *o = malloc(strlen(want) + 1);
    char *end = rz__json_quoted_put(o, s);
    assert_int_equal((size_t)(end - o), strlen(want));
    assert_memory_equal(o, want, strlen(want));
    free(o);
    rz__buf_free(&b);
    free(want);
}

/* Hostile strings: every control character, quotes, backslashes, UTF-8,
 * invalid UTF-8, DEL, empty, long, and random bytes. */
static void json_quote_is_cjsons(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "", "plain", "\"", "\\", "\"\\\"\\", "a\bb\fc\nd\re\tf", "\x01\x1f\x7f",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\xff\xfe\xc3(\xe2\x82",
        "\xed\xa0\x80 \xc0\xaf", "</script>\\u0000", "\x1b[31mred\x1b[0m",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_quoted_as_cjson(cases[i]);
    char one[2] = {0};
    for (int c = 1; c < 256; c++) {
        one[0] = (char)c;
        expect_quoted_as_cjson(one);
    }
    size_t n = 200000;
    char *big = malloc(n + 1);
    unsigned seed = 22;
    for (int round = 0; round < 200; round++) {
        size_t len = round == 199 ? n : (size_t)(seed % 300);
        for (size_t k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            big[k] = (char)((seed >> 16) % 255 + 1);
        }
        big[len] = '\0';
        expect_quoted_as_cjson(big);
    }
    free(big);
    rz__buf b = {0};
    rz__json_quote(&b, NULL);   /* as cJSON prints a NULL valuestring */
    assert_string_equal(b.data, "\"\"");
    rz__buf_free(&b);
}

/* A buffer whose growth fails stays failed: no growth is tried after it,
 * and it gives no text. */
static void buffer_stops_after_a_failed_growth(void **state)
{
    (void)state;
    rz__buf b = {0};
    rz__alloc_fail_at(3, false);
    for (int i = 0; i < 1000; i++)
        rz__json_quote(&b, "a \"quoted\" word");
    long calls = rz__alloc_calls();
    rz__alloc_fail_at(0, false);
    assert_true(b.failed);
    assert_int_equal(calls, 3);   /* none after the failed one */
    assert_null(rz__buf_take(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_names_and_text),
        cmocka_unit_test(json_quote_is_cjsons),
        cmocka_unit_test(buffer_stops_after_a_failed_growth),
        cmocka_unit_test(json_text_check_strict),
        cmocka_unit_test(number_format_whole_numbers),
        cmocka_unit_test(json_valid_agrees_with_cjson),
        cmocka_unit_test(json_parse_tells_memory_from_syntax),
        cmocka_unit_test(last_error_is_thread_local_detail),
        cmocka_unit_test(diags_collect_sort_and_print),
        cmocka_unit_test(diags_are_capped),
        cmocka_unit_test(buffer_and_map),
        cmocka_unit_test(read_file_limits),
        cmocka_unit_test(grow_doubles_from_first),
        cmocka_unit_test(grow_refuses_overflow_and_keeps_the_array),
        cmocka_unit_test(labels_stay_sorted_and_replace),
        cmocka_unit_test(mkdirs_creates_parents),
        cmocka_unit_test(fs_mkdirs_public),
        cmocka_unit_test(lmdb_open_makes_the_databases),
        cmocka_unit_test(utf8_encodes_every_length),
        cmocka_unit_test(edit_distance_counts_transpositions),
        cmocka_unit_test(suggest_picks_the_closest_within_the_limit),
        cmocka_unit_test(text_position_counts_lines),
        cmocka_unit_test(json_locate_follows_the_pointer),
        cmocka_unit_test(json_fields_name_their_pointer),
        cmocka_unit_test(graph_orders_and_names_cycles),
        cmocka_unit_test(cycle_text_elides_the_middle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
