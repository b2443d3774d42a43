/* The engine's stored records: each carries a CRC-32C checked on load (a
 * changed byte is refused with RZ_EDB, not misread), and a store written
 * before checksums (bare JSON values) is given them at open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "engine/engine_impl.h"
#include "rhizos/engine.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2}"

typedef struct fx {
    char dir[64];
} fx;

static int open_engine(fx *f, rz_engine **e)
{
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    return rz_engine_open(e, f->dir, &o);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f || !tmp_dir_make(f->dir, sizeof f->dir, "engine-store"))
        return -1;
    rz_engine *e;
    if (open_engine(f, &e) != RZ_OK)
        return -1;
    uint64_t id;
    for (int i = 0; i < 3; i++)
        if (rz_engine_node_register(e, NODE_CAPS, strlen(NODE_CAPS), 10,
                                    &id) != RZ_OK)
            return -1;
    rz_engine_close(e);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = tmp_dir_remove(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

typedef void (*edit_fn)(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v);

/* Run fn on every value of one of the engine's tables, as a foreign
 * program would. */
static void edit_table(fx *f, const char *table, edit_fn fn)
{
    char path[128];
    snprintf(path, sizeof path, "%s/engine", f->dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
    /* Keys first: a put that changes a value's size moves the page. */
    uint64_t ids[16];
    size_t n = 0;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0 && n < 16) {
        assert_int_equal(k.mv_size, 8);
        memcpy(&ids[n++], k.mv_data, 8);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < n; i++) {
        k = (MDB_val){ 8, &ids[i] };
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        fn(txn, dbi, &k, &v);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void edit_nodes(fx *f, edit_fn fn)
{
    edit_table(f, "nodes", fn);
}

static void strip_header(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    assert_true(v->mv_size > 8);
    assert_memory_equal(v->mv_data, "RZc1", 4);
    char *json = malloc(v->mv_size - 8);
    memcpy(json, (char *)v->mv_data + 8, v->mv_size - 8);
    MDB_val nv = { v->mv_size - 8, json };
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
    free(json);
}

static int n_headed;
static void count_headed(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    (void)txn, (void)dbi, (void)k;
    n_headed += v->mv_size > 8 && memcmp(v->mv_data, "RZc1", 4) == 0;
}

static void flip_json(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    char *copy = malloc(v->mv_size);
    memcpy(copy, v->mv_data, v->mv_size);
    char *digit = memchr(copy + 8, '4', v->mv_size - 8);   /* "cores":4 */
    assert_non_null(digit);
    *digit = '5';
    MDB_val nv = { v->mv_size, copy };
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
    free(copy);
}

static void nodes_loaded(fx *f)
{
    rz_engine *e;
    int rc = open_engine(f, &e);
    if (rc != RZ_OK)
        fail_msg("open: %s", rz_error_last()->message);
    rz_engine_stats st;
    rz_engine_stats_get(e, &st);
    assert_int_equal(st.nodes_active + st.nodes_lost, 3);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    rz_engine_close(e);
}

static void test_previous_store_migrates(void **state)
{
    fx *f = *state;
    edit_nodes(f, strip_header);
    n_headed = 0;
    edit_nodes(f, count_headed);
    assert_int_equal(n_headed, 0);
    nodes_loaded(f);
    n_headed = 0;
    edit_nodes(f, count_headed);
    assert_int_equal(n_headed, 3);
    nodes_loaded(f);
}

static void test_changed_record_refused(void **state)
{
    fx *f = *state;
    nodes_loaded(f);
    edit_nodes(f, flip_json);
    rz_engine *e = (rz_engine *)1;
    assert_int_equal(open_engine(f, &e), RZ_EDB);
    assert_null(e);
    assert_non_null(strstr(rz_error_last()->message, "fails its checksum"));
    assert_non_null(strstr(rz_error_last()->message, "Recovery"));
}

/* A node's record cut short, written bare (a store from before checksums
 * takes it as it is): a damaged store, said so, not memory that ran out. */
static void cut_json(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    assert_true(v->mv_size > 16);
    size_t n = (v->mv_size - 8) / 2;
    char *json = malloc(n);
    memcpy(json, (char *)v->mv_data + 8, n);
    MDB_val nv = { n, json };
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
    free(json);
}

static void test_cut_record_said_corrupt(void **state)
{
    fx *f = *state;
    edit_nodes(f, cut_json);
    rz_engine *e = (rz_engine *)1;
    assert_int_equal(open_engine(f, &e), RZ_EDB);
    assert_null(e);
    assert_non_null(strstr(rz_error_last()->message, "engine store: a corrupt record"));
}

/* A replicated job's record whose run count was changed (bare JSON, as a
 * store from before checksums holds, so no checksum stands in the way):
 * queries size their arrays by RZ_ENGINE_REPLICAS_MAX, so the count is
 * refused with RZ_EDB naming the job, never trusted. */
static const char *new_k;
static void set_k(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    assert_memory_equal(v->mv_data, "RZc1", 4);
    const char *json = (const char *)v->mv_data + 8;
    size_t len = v->mv_size - 8;
    const char *at = memmem(json, len, "\"k\":", 4);   /* "k":<digits> */
    char *out = malloc(len + 16);
    size_t n = len;
    memcpy(out, json, len);
    if (at) {
        size_t pre = (size_t)(at - json) + 4, end = pre, klen = strlen(new_k);
        while (end < len && json[end] >= '0' && json[end] <= '9')
            end++;
        memcpy(out + pre, new_k, klen);
        memcpy(out + pre + klen, json + end, len - end);
        n = pre + klen + len - end;
    }
    MDB_val nv = { n, out };
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
    free(out);
}

static void test_replica_count_checked(void **state)
{
    fx *f = *state;
    rz_engine *e;
    assert_int_equal(open_engine(f, &e), RZ_OK);
    rz_ledger_id client = rz_ledger_id_make(7, 1);
    rz_ledger *l = rz_engine_ledger(e);
    assert_int_equal(rz_ledger_create_account(l, client, RZ_LEDGER_CLIENT), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(7, 2), client,
                                           100000), RZ_OK);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = client;
    s.requirements_json = "{\"cpu_cores\":1}";
    s.module_id = "m";
    s.max_cost_micros = 1000;
    s.replicas = 2;
    uint64_t job = 0;
    assert_int_equal(rz_engine_submit(e, &s, 20, &job), RZ_OK);
    assert_int_equal(rz_engine_job_cancel(e, job, 21), RZ_OK);
    rz_engine_close(e);
    new_k = "5";   /* the most there may be: loads */
    edit_table(f, "jobs", set_k);   /* written back bare */
    assert_int_equal(open_engine(f, &e), RZ_OK);
    rz_engine_close(e);
    new_k = "200";
    edit_table(f, "jobs", set_k);   /* written back bare */
    e = (rz_engine *)1;
    assert_int_equal(open_engine(f, &e), RZ_EDB);
    assert_null(e);
    char want[64];
    snprintf(want, sizeof want, "job %llu: a damaged replica set",
             (unsigned long long)job);
    assert_non_null(strstr(rz_error_last()->message, want));
    /* Past 2^64 a double has no uint64_t: refused, not cast. */
    new_k = "1e30";
    edit_table(f, "jobs", set_k);
    e = (rz_engine *)1;
    assert_int_equal(open_engine(f, &e), RZ_EDB);
    assert_null(e);
    assert_non_null(strstr(rz_error_last()->message, want));
    assert_non_null(strstr(rz_error_last()->message, "out of range"));
}

/* A client's listing walks the client index ("bycl"), written with each
 * record; a store from before it (the table dropped here) gets it at open
 * and lists as before. Finished jobs (gone from memory) and live ones
 * come newest first, paged by `before`. */
static void drop_index(fx *f)
{
    char path[128];
    snprintf(path, sizeof path, "%s/engine", f->dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "bycl", 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void listed(rz_engine *e, rz_ledger_id c, uint64_t before,
                   const uint64_t *want, size_t n)
{
    uint64_t ids[16];
    assert_int_equal(rz_engine_job_list(e, &c, before, ids, 16), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
}

static void test_client_index(void **state)
{
    fx *f = *state;
    rz_engine *e;
    assert_int_equal(open_engine(f, &e), RZ_OK);
    rz_ledger_id a = rz_ledger_id_make(7, 1), b = rz_ledger_id_make(7, 3);
    rz_ledger *l = rz_engine_ledger(e);
    for (int i = 0; i < 2; i++) {
        rz_ledger_id c = i ? b : a;
        assert_int_equal(rz_ledger_create_account(l, c, RZ_LEDGER_CLIENT), RZ_OK);
        assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(8, (uint64_t)i),
                                               c, 100000), RZ_OK);
    }
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.requirements_json = "{\"cpu_cores\":1}";
    s.module_id = "m";
    s.max_cost_micros = 100;
    uint64_t id[6];
    for (int i = 0; i < 6; i++) {   /* a b a b a b; the first four finish */
        s.client = i % 2 ? b : a;
        assert_int_equal(rz_engine_submit(e, &s, 20, &id[i]), RZ_OK);
        if (i < 4)
            assert_int_equal(rz_engine_job_cancel(e, id[i], 21), RZ_OK);
    }
    assert_int_equal(rz_engine_tick(e, 22), RZ_OK);
    const uint64_t all_a[] = { id[4], id[2], id[0] }, all_b[] = { id[5], id[3], id[1] };
    listed(e, a, 0, all_a, 3);
    listed(e, b, 0, all_b, 3);
    listed(e, a, id[4], all_a + 1, 2);   /* the page below id[4] */
    listed(e, b, id[1], NULL, 0);
    rz_engine_close(e);
    drop_index(f);
    assert_int_equal(open_engine(f, &e), RZ_OK);
    listed(e, a, 0, all_a, 3);
    listed(e, b, id[3], all_b + 2, 1);
    listed(e, rz_ledger_id_make(7, 9), 0, NULL, 0);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    rz_engine_close(e);
}

/* An older version (before the index) that wrote records after the mark
 * was set left them without entries; the mark is not trusted: at open the
 * entries are counted against the records and the index made again, and
 * rz_engine_check finds such a gap in an open store. */
static void drop_entry(const char *dir, bool first)
{
    char path[128];
    snprintf(path, sizeof path, "%s/engine", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "bycl", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, first ? MDB_FIRST : MDB_LAST), 0);
    if (k.mv_size == 1)   /* the mark "v" sorts after the entries */
        assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_PREV), 0);
    assert_int_equal(k.mv_size, 25);   /* an entry, not the mark "v" */
    assert_int_equal(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_client_index_mark_not_trusted(void **state)
{
    fx *f = *state;
    rz_engine *e;
    assert_int_equal(open_engine(f, &e), RZ_OK);
    rz_ledger_id a = rz_ledger_id_make(7, 1);
    rz_ledger *l = rz_engine_ledger(e);
    assert_int_equal(rz_ledger_create_account(l, a, RZ_LEDGER_CLIENT), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, rz_ledger_id_make(8, 1), a,
                                           100000), RZ_OK);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = a;
    s.requirements_json = "{\"cpu_cores\":1}";
    s.module_id = "m";
    s.max_cost_micros = 100;
    uint64_t id[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rz_engine_submit(e, &s, 20, &id[i]), RZ_OK);
    const uint64_t all[] = { id[2], id[1], id[0] };
    listed(e, a, 0, all, 3);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    rz_engine_close(e);
    drop_entry(f->dir, true);   /* marked, one record without its entry */
    assert_int_equal(open_engine(f, &e), RZ_OK);
    listed(e, a, 0, all, 3);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    /* The same gap made while the engine is open (another process). */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        drop_entry(f->dir, false);
        _exit(0);
    }
    int st = -1;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(rz_engine_check(e), RZ_EINTERNAL);
    assert_non_null(strstr(rz_error_last()->message,
                           "client index holds 2 entries for 3 records"));
    rz_engine_close(e);
    assert_int_equal(open_engine(f, &e), RZ_OK);   /* made again */
    listed(e, a, 0, all, 3);
    assert_int_equal(rz_engine_check(e), RZ_OK);
    rz_engine_close(e);
}

/* An engine that is not durable (the embedded run's, on /dev/shm) sheds
 * its store's map by the page faults of its own commits: faults elsewhere
 * in the process (4,096 of fresh memory) and commits that fault little
 * leave the pages mapped, where counting the process's faults shed them.
 * (Under ASan a commit's allocations may fault enough to shed by the
 * rule.) */
static void test_shed_by_own_faults(void **state)
{
    fx *f = *state;
    rz_engine *e;
    assert_int_equal(open_engine(f, &e), RZ_OK);
    assert_non_null(e->map);
    size_t before = 0;
    rz__engine_store_shed(e);   /* from a shed, its count at zero */
    e->shed_faults = 0;
    uint64_t own = 0, id;   /* the calls' faults since: 128 of them may shed */
    for (int i = 0; i < 20; i++) {   /* a shed would show after its commit */
        uint64_t f0 = faults_now();
        assert_int_equal(rz_engine_node_register(e, NODE_CAPS, strlen(NODE_CAPS),
                                                 10, &id), RZ_OK);
        own += faults_now() - f0;
        if (i == 3) {
            before = pages_present(e->map, 64);
            assert_true(before > 0);
            fault_elsewhere();
        }
        if (i > 3)
            assert_true(pages_present(e->map, 64) >= before || own >= 128);
    }
    rz_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_previous_store_migrates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_changed_record_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cut_record_said_corrupt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replica_count_checked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shed_by_own_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_index_mark_not_trusted,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
