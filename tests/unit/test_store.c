/* Run records in LMDB: put, replace, list newest first, get, reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/rhizos.h"
#include "store/run_lock.h"
#include "helpers.h"

static const char *flow_yaml =
    "flux: 1\nname: stored\nsteps:\n"
    "  a:\n    module: m\n"
    "  b:\n    module: m\n    needs: [a]\n";

typedef struct fixture {
    char dir[64];
    rz_flow *flow;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!tmp_dir_make(f->dir, sizeof f->dir, "store"))
        return -1;
    if (rz_flow_parse(&f->flow, flow_yaml, strlen(flow_yaml), RZ_FORMAT_YAML,
                      "stored.yaml", NULL) != RZ_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (tmp_dir_remove(f->dir) != 0)
        return -1;
    rz_flow_free(f->flow);
    free(f);
    return 0;
}

static rz_run *finished_run(const rz_flow *flow, const char *id, bool ok)
{
    rz_run *run;
    size_t steps[4];
    assert_int_equal(rz_run_new(&run, flow, NULL, id, 0), RZ_OK);
    assert_int_equal(rz_run_ready(run, 0, steps, 4), 1);
    assert_int_equal(rz_run_start(run, steps[0], 0), RZ_OK);
    if (!ok) {
        assert_int_equal(rz_run_fail(run, steps[0], "boom", 5), RZ_OK);
        return run;
    }
    assert_int_equal(rz_run_succeed(run, steps[0], "{\"n\":1}", 5), RZ_OK);
    assert_int_equal(rz_run_ready(run, 5, steps, 4), 1);
    assert_int_equal(rz_run_start(run, steps[0], 5), RZ_OK);
    assert_int_equal(rz_run_succeed(run, steps[0], "{\"n\":2}", 9), RZ_OK);
    return run;
}

static void put_list_get(void **state)
{
    fixture *f = *state;
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    rz_run *r1 = finished_run(f->flow, "run-1", true);
    rz_run *r2 = finished_run(f->flow, "run-2", false);
    assert_int_equal(rz_store_run_put(st, r1, 1000, 2000), RZ_OK);
    assert_int_equal(rz_store_run_put(st, r2, 3000, 3500), RZ_OK);

    char *json;
    assert_int_equal(rz_store_run_list(st, &json), RZ_OK);
    cJSON *arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    /* Newest first. */
    cJSON *first = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(cJSON_GetObjectItem(first, "id")->valuestring, "run-2");
    assert_string_equal(cJSON_GetObjectItem(first, "status")->valuestring, "failed");
    assert_string_equal(cJSON_GetObjectItem(first, "file")->valuestring, "stored.yaml");
    assert_int_equal(cJSON_GetObjectItem(first, "steps")->valueint, 2);
    cJSON *second = cJSON_GetArrayItem(arr, 1);
    assert_string_equal(cJSON_GetObjectItem(second, "status")->valuestring, "succeeded");
    cJSON_Delete(arr);

    assert_int_equal(rz_store_run_get(st, "run-1", &json), RZ_OK);
    cJSON *rec = cJSON_Parse(json);
    rz_free(json);
    cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "steps"), "b");
    assert_string_equal(cJSON_GetObjectItem(b, "status")->valuestring, "succeeded");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "outputs"), "n")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(rec, "started_ms")->valueint, 1000);
    cJSON_Delete(rec);

    assert_int_equal(rz_store_run_get(st, "nope", &json), RZ_ENOENT);
    assert_null(json);
    rz_run_free(r1);
    rz_run_free(r2);
    rz_store_close(st);
}

static void replace_keeps_one_record_and_survives_reopen(void **state)
{
    fixture *f = *state;
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    rz_run *r = finished_run(f->flow, "run-x", true);
    assert_int_equal(rz_store_run_put(st, r, 10, 20), RZ_OK);
    assert_int_equal(rz_store_run_put(st, r, 50, 60), RZ_OK);
    rz_store_close(st);
    rz_run_free(r);

    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    char *json;
    assert_int_equal(rz_store_run_list(st, &json), RZ_OK);
    cJSON *arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "started_ms")->valueint, 50);
    cJSON_Delete(arr);
    rz_store_close(st);
}

/* The newest N by start time, whatever the order of writing; the total
 * counts every run. */
static const char *id_at(const cJSON *arr, int i)
{
    return cJSON_GetObjectItem(cJSON_GetArrayItem(arr, i), "id")->valuestring;
}

static void list_newest_reads_only_the_newest(void **state)
{
    fixture *f = *state;
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    static const uint64_t starts[] = { 500, 100, 900, 300, 700 };
    for (size_t i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "run-%llu", (unsigned long long)starts[i]);
        rz_run *r = finished_run(f->flow, id, true);
        assert_int_equal(rz_store_run_put(st, r, starts[i], starts[i] + 1), RZ_OK);
        rz_run_free(r);
    }
    char *json;
    size_t total = 0;
    assert_int_equal(rz_store_run_list_newest(st, 2, &json, &total), RZ_OK);
    assert_int_equal(total, 5);
    cJSON *arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    assert_string_equal(id_at(arr, 0), "run-900");
    assert_string_equal(id_at(arr, 1), "run-700");
    cJSON_Delete(arr);
    /* 0 is every run; a limit past the end is every run too. */
    assert_int_equal(rz_store_run_list_newest(st, 0, &json, NULL), RZ_OK);
    arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 5);
    assert_string_equal(id_at(arr, 4), "run-100");
    cJSON_Delete(arr);
    assert_int_equal(rz_store_run_list_newest(st, 50, &json, &total), RZ_OK);
    arr = cJSON_Parse(json);
    rz_free(json);
    assert_int_equal(cJSON_GetArraySize(arr), 5);
    assert_int_equal(total, 5);
    cJSON_Delete(arr);
    rz_store_close(st);
}

/* ---- the record written in parts is the whole tree printed ----
 *
 * The record as it was built before it was written in parts: the run's
 * JSON parsed, each task's details added, printed whole. */
static void add_details(const rz_run *run, size_t task, cJSON *sj, uint64_t started)
{
    uint64_t t0, t1;
    if (!sj || rz_run_step_times(run, task, &t0, &t1) != RZ_OK)
        return;
    cJSON_AddNumberToObject(sj, "started_ms", (double)(started + t0));
    if (t1)
        cJSON_AddNumberToObject(sj, "finished_ms", (double)(started + t1));
    char *in = NULL;
    if (rz_run_step_inputs(run, task, &in) != RZ_OK)
        return;
    cJSON_AddItemToObject(sj, "inputs", cJSON_Parse(in));
    rz_free(in);
}

static char *whole_record(const rz_run *run, uint64_t started, uint64_t finished)
{
    char *json = NULL;
    assert_int_equal(rz_run_to_json(run, &json), RZ_OK);
    cJSON *rec = cJSON_Parse(json);
    rz_free(json);
    const rz_flow *flow = rz_run_flow(run);
    cJSON_AddStringToObject(rec, "file", rz_flow_file(flow));
    cJSON_AddNumberToObject(rec, "started_ms", (double)started);
    cJSON_AddNumberToObject(rec, "finished_ms", (double)finished);
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(rec, "steps");
    for (size_t i = 0; i < rz_flow_step_count(flow); i++)
        add_details(run, i, cJSON_GetObjectItemCaseSensitive(steps, rz_flow_step_id(flow, i)),
                    started);
    for (size_t t = rz_flow_step_count(flow); t < rz_run_task_count(run); t++) {
        size_t el = 0, i = rz_run_task_step(run, t, &el);
        cJSON *sj = cJSON_GetObjectItemCaseSensitive(steps, rz_flow_step_id(flow, i));
        add_details(run, t, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(sj, "elements"),
                                               (int)el), started);
    }
    char *s = rz__json_print(rec, false);
    cJSON_Delete(rec);
    return s;
}

static void expect_same_record(rz_store *st, const rz_run *run, uint64_t started,
                               uint64_t finished)
{
    char *want = whole_record(run, started, finished), *got = NULL;
    assert_int_equal(rz_store_run_put(st, run, started, finished), RZ_OK);
    assert_int_equal(rz_store_run_get(st, rz_run_id(run), &got), RZ_OK);
    assert_string_equal(got, want);
    rz_free(got);
    free(want);
}

static const char *mixed_yaml =
    "flux: 1\nname: \"mixed \\\"one\\\"\"\n"
    "inputs:\n  xs: {type: array}\n"
    "outputs:\n  big: \"${{ steps.a.outputs.big }}\"\n"
    "steps:\n"
    "  a:\n    module: m\n    inputs: {k: \"tab\\there\", n: 0.1}\n"
    "  b:\n    module: m\n    needs: [a]\n    on_failure: continue\n"
    "  m:\n    module: m\n    needs: [a]\n    for_each: \"${{ inputs.xs }}\"\n"
    "    inputs: {v: \"${{ each.value }}\", i: \"${{ each.index }}\"}\n"
    "  z:\n    module: m\n    needs: [m]\n";

static void record_in_parts_is_the_whole_tree(void **state)
{
    fixture *f = *state;
    rz_flow *flow;
    assert_int_equal(rz_flow_parse(&flow, mixed_yaml, strlen(mixed_yaml), RZ_FORMAT_YAML,
                                   "mixed.yaml", NULL), RZ_OK);
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    rz_run *run;
    assert_int_equal(rz_run_new(&run, flow, "{\"xs\":[\"x\",{\"q\":\"\\u0001\"},-0.0]}",
                                "mixed-1", 100), RZ_OK);
    expect_same_record(st, run, 1000, 0);   /* nothing started */
    size_t t[16];
    assert_int_equal(rz_run_ready(run, 100, t, 16), 1);
    assert_int_equal(rz_run_start(run, t[0], 101), RZ_OK);
    assert_int_equal(rz_run_succeed(run, t[0], "{\"big\":9007199254740992,\"f\":1e300,"
                                    "\"s\":\"caf\\u00e9 \\\"q\\\"\\n\",\"neg\":-0.0}", 107), RZ_OK);
    size_t n = rz_run_ready(run, 107, t, 16);
    assert_true(n >= 2);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(rz_run_start(run, t[k], 108), RZ_OK);
    expect_same_record(st, run, 1000, 0);   /* elements running */
    for (size_t k = 0; k < n; k++) {
        size_t el = 0, i = rz_run_task_step(run, t[k], &el);
        if (strcmp(rz_flow_step_id(flow, i), "m") != 0)
            assert_int_equal(rz_run_fail(run, t[k], "no \"way\"\n", 110), RZ_OK);
        else
            assert_int_equal(rz_run_succeed(run, t[k], "{\"r\":[1,2.5]}", 111 + el), RZ_OK);
    }
    while ((n = rz_run_ready(run, 120, t, 16)) > 0)
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(rz_run_start(run, t[k], 120), RZ_OK);
            assert_int_equal(rz_run_succeed(run, t[k], "{\"r\":[3]}", 125), RZ_OK);
        }
    assert_true(rz_run_done(run));
    expect_same_record(st, run, 1000, 1200);   /* finished, replacing */
    char *got = NULL;   /* what the comparison covered */
    assert_int_equal(rz_store_run_get(st, "mixed-1", &got), RZ_OK);
    assert_non_null(strstr(got, "\"elements\":[{\"status\":\"succeeded\""));
    assert_non_null(strstr(got, "\"f\":1e+300"));
    assert_non_null(strstr(got, "\"error\":\"no \\\"way\\\"\\n\""));
    assert_non_null(strstr(got, "\"finished_ms\":1200}"));
    rz_free(got);
    rz_run_free(run);
    rz_flow_free(flow);
    rz_store_close(st);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A blob no record names, last written `ago_s` seconds ago: its path. */
static void orphan_blob(const char *dir, const char *hex, time_t ago_s, char *path,
                        size_t cap)
{
    char d[512];
    snprintf(d, sizeof d, "%s/blobs", dir);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/blobs/sha256", dir);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/blobs/sha256/%.2s", dir, hex);
    mkdir(d, 0755);
    snprintf(path, cap, "%s/%s", d, hex);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("orphan", fp);
    fclose(fp);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= ago_s;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static size_t lock_files(const char *dir)
{
    char d[512];
    snprintf(d, sizeof d, "%s/running", dir);
    DIR *dd = opendir(d);
    size_t n = 0;
    for (struct dirent *e; dd && (e = readdir(dd));)
        n += e->d_name[0] != '.';
    if (dd)
        closedir(dd);
    return n;
}

/* A run killed with SIGKILL keeps "status":"running" in its record. While
 * its process lives, what was written since it started stays (it is in no
 * record yet) and so does its record; once it is gone, neither is held
 * back: the sweep removes what no record names, the prune its record. */
static void killed_run_holds_nothing_back(void **state)
{
    fixture *f = *state;
    uint64_t now = wall_ms();
    char blob[600];
    orphan_blob(f->dir, "ab00000000000000000000000000000000000000000000000000000000000001",
                10, blob, sizeof blob);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {   /* a runner: its first record, then killed */
        rz_store *st = NULL;
        rz_run *run = NULL;
        if (rz_store_open(&st, f->dir) != RZ_OK ||
            rz_run_new(&run, f->flow, NULL, "killed-1", 0) != RZ_OK ||
            rz_store_run_put(st, run, now - 60000, 0) != RZ_OK ||
            write(ready[1], "k", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    size_t removed = 0;
    uint64_t bytes = 0;
    assert_int_equal(rz_store_blobs_sweep(st, now, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(access(blob, F_OK), 0);
    assert_int_equal(rz_store_run_prune(st, now, 16, &removed), RZ_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(rz_store_run_process_gone(st, "killed-1"), 0);
    char *json = NULL;
    assert_int_equal(rz_store_run_get(st, "killed-1", &json), RZ_OK);
    assert_null(strstr(json, "process_gone"));   /* going */
    rz_free(json);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(rz_store_run_process_gone(st, "killed-1"), 1);
    /* Every reader is told, as the list tells it: the record with
     * "process_gone" as its last member, whole JSON. */
    assert_int_equal(rz_store_run_get(st, "killed-1", &json), RZ_OK);
    assert_non_null(strstr(json, "\"status\":\"running\""));
    size_t len = strlen(json);
    static const char told[] = ",\"process_gone\":true}";
    assert_true(len > sizeof told && strcmp(json + len - (sizeof told - 1), told) == 0);
    cJSON *rec = cJSON_Parse(json);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "process_gone")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(rec, "id")->valuestring, "killed-1");
    cJSON_Delete(rec);
    rz_free(json);
    assert_int_equal(rz_store_run_list(st, &json), RZ_OK);
    assert_non_null(strstr(json, "\"process_gone\":true"));
    rz_free(json);
    assert_int_equal(rz_store_blobs_sweep(st, now, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(bytes, 6);
    assert_int_equal(access(blob, F_OK), -1);
    assert_int_equal(lock_files(f->dir), 1);   /* what the kill left */
    assert_int_equal(rz_store_run_prune(st, now, 16, &removed), RZ_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(rz_store_run_get(st, "killed-1", &json), RZ_ENOENT);
    assert_int_equal(lock_files(f->dir), 0);   /* gone with its record */
    rz_store_close(st);
}

/* This process's own run going holds back the sweep too; its lock goes
 * with its final record (or with the store, closed). */
static void run_going_here_holds_back(void **state)
{
    fixture *f = *state;
    uint64_t now = wall_ms();
    char blob[600];
    orphan_blob(f->dir, "cd00000000000000000000000000000000000000000000000000000000000002",
                10, blob, sizeof blob);
    rz_store *st;
    assert_int_equal(rz_store_open(&st, f->dir), RZ_OK);
    rz_run *going;
    assert_int_equal(rz_run_new(&going, f->flow, NULL, "going-1", 0), RZ_OK);
    assert_int_equal(rz_store_run_put(st, going, now - 60000, 0), RZ_OK);
    assert_int_equal(lock_files(f->dir), 1);
    rz__run_lock_clear(f->dir, "going-1");   /* held: stays */
    assert_int_equal(lock_files(f->dir), 1);
    assert_true(rz__run_lock_held(f->dir, "going-1"));
    assert_false(rz__run_lock_held(f->dir, "going-2"));
    assert_int_equal(rz_store_run_process_gone(st, "going-1"), 0);   /* this process's */
    size_t removed = 0;
    uint64_t bytes = 0;
    assert_int_equal(rz_store_blobs_sweep(st, now, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 0);
    rz_run *done = finished_run(f->flow, "going-1", true);
    assert_int_equal(rz_store_run_put(st, done, now - 60000, now - 30000), RZ_OK);
    assert_int_equal(lock_files(f->dir), 0);
    assert_int_equal(rz_store_blobs_sweep(st, now, &removed, &bytes), RZ_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(rz_store_run_put(st, going, now - 60000, 0), RZ_OK);   /* again */
    assert_int_equal(lock_files(f->dir), 1);
    rz_store_close(st);
    assert_int_equal(lock_files(f->dir), 0);
    rz_run_free(going);
    rz_run_free(done);
}

static void bad_directories(void **state)
{
    (void)state;
    rz_store *st;
    assert_int_equal(rz_store_open(&st, ""), RZ_EINVAL);
    assert_null(st);
    assert_int_equal(rz_store_open(&st, "/proc/no/such/place"), RZ_EIO);
    assert_null(st);
    rz_store_close(NULL);
}

/* The one run-id maker of `rhizos flow run` and `rhizos ui`. */
static void run_ids(void **state)
{
    (void)state;
    char a[RZ_STORE_RUN_ID_LEN + 1], b[64], small[RZ_STORE_RUN_ID_LEN] = "untouched";
    assert_int_equal(rz_store_run_id_make(a, sizeof a), RZ_OK);
    assert_int_equal(strlen(a), RZ_STORE_RUN_ID_LEN);
    assert_memory_equal(a, "run-", 4);
    for (size_t i = 4; i < RZ_STORE_RUN_ID_LEN; i++) {
        bool dash = i == 12 || i == 19;
        bool hex = i > 19;
        assert_true(dash ? a[i] == '-' : hex ? !!strchr("0123456789abcdef", a[i])
                                             : a[i] >= '0' && a[i] <= '9');
    }
    /* The random part varies: 16 draws in the same second are not all one. */
    bool varied = false;
    for (int i = 0; i < 16 && !varied; i++) {
        assert_int_equal(rz_store_run_id_make(b, sizeof b), RZ_OK);
        varied = strcmp(a + 20, b + 20) != 0;
    }
    assert_true(varied);
    assert_int_equal(rz_store_run_id_make(small, sizeof small), RZ_EINVAL);
    assert_string_equal(small, "untouched");
    assert_int_equal(rz_store_run_id_make(NULL, 64), RZ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_list_get, setup, teardown),
        cmocka_unit_test_setup_teardown(replace_keeps_one_record_and_survives_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(list_newest_reads_only_the_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(record_in_parts_is_the_whole_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_run_holds_nothing_back, setup, teardown),
        cmocka_unit_test_setup_teardown(run_going_here_holds_back, setup, teardown),
        cmocka_unit_test(bad_directories),
        cmocka_unit_test(run_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
