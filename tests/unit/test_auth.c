/* The auth store (keys, nodes, accounts, credentials, logs), the admin
 * key's strength rule and the failed-key throttle: one behaviour each. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/rhizos.h"
#include "helpers.h"

#define STRONG "rza_0123456789abcdef0123456789abcdef"
#define X25519_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

typedef struct fixture {
    char dir[64];
    rz_auth *a;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !tmp_dir_make(f->dir, sizeof f->dir, "auth"))
        return -1;
    if (rz_auth_open(&f->a, f->dir) != RZ_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rz_auth_close(f->a);
    int rc = tmp_dir_remove(f->dir);
    free(f);
    return rc;
}

static rz_auth_principal client_of(uint64_t lo)
{
    rz_auth_principal p = { RZ_AUTH_CLIENT, rz_ledger_id_make(7, lo), 0 };
    return p;
}

/* ---- the strength rule ---- */

static void test_key_check_accepts_random_hex(void **state)
{
    (void)state;
    char key[80];
    assert_int_equal(rz_auth_key_new("rza_", key, sizeof key), RZ_OK);
    assert_int_equal(rz_auth_key_check(key), RZ_OK);
}

static void test_key_check_refuses_one_character(void **state)
{
    (void)state;
    assert_int_equal(rz_auth_key_check("x"), RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "at least 32"));
    assert_null(strstr(rz_error_last()->message, "x\""));
}

static void test_key_check_refuses_31_characters(void **state)
{
    (void)state;
    assert_int_equal(rz_auth_key_check("0123456789abcdef0123456789abcde"), RZ_EINVAL);
}

static void test_key_check_refuses_a_repeated_pattern(void **state)
{
    (void)state;
    assert_int_equal(rz_auth_key_check("abababababababababababababababababab"),
                     RZ_EINVAL);
    assert_non_null(strstr(rz_error_last()->message, "different characters"));
}

static void test_key_check_refuses_a_space(void **state)
{
    (void)state;
    assert_int_equal(rz_auth_key_check("0123456789abcdef 0123456789abcdef"), RZ_EINVAL);
}

static void test_key_check_refuses_empty_and_null(void **state)
{
    (void)state;
    assert_int_equal(rz_auth_key_check(""), RZ_EINVAL);
    assert_int_equal(rz_auth_key_check(NULL), RZ_EINVAL);
}

static void test_key_check_refuses_an_overlong_key(void **state)
{
    (void)state;
    char key[RZ_AUTH_KEY_MAX_LEN + 2];
    for (size_t i = 0; i < sizeof key - 1; i++)
        key[i] = "0123456789abcdef"[i % 16];
    key[sizeof key - 1] = '\0';
    assert_int_equal(rz_auth_key_check(key), RZ_EINVAL);
}

static void test_key_new_refuses_a_small_buffer(void **state)
{
    (void)state;
    char key[40] = "untouched";
    assert_int_equal(rz_auth_key_new("rza_", key, sizeof key), RZ_EINVAL);
    assert_string_equal(key, "untouched");
}

static void test_key_new_gives_different_keys(void **state)
{
    (void)state;
    char a[80], b[80];
    assert_int_equal(rz_auth_key_new("rzk_", a, sizeof a), RZ_OK);
    assert_int_equal(rz_auth_key_new("rzk_", b, sizeof b), RZ_OK);
    assert_int_equal(strlen(a), 4 + RZ_AUTH_KEY_NEW_HEX);
    assert_string_not_equal(a, b);
}

/* ---- principals ---- */

static void test_admin_key_is_looked_up_as_admin(void **state)
{
    fixture *f = *state;
    rz_auth_principal p;
    assert_int_equal(rz_auth_admin_set(f->a, STRONG), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, STRONG, &p), RZ_OK);
    assert_int_equal(p.kind, RZ_AUTH_ADMIN);
}

static void test_weak_admin_key_keeps_the_previous_one(void **state)
{
    fixture *f = *state;
    rz_auth_principal p;
    assert_int_equal(rz_auth_admin_set(f->a, STRONG), RZ_OK);
    assert_int_equal(rz_auth_admin_set(f->a, "k"), RZ_EINVAL);
    assert_int_equal(rz_auth_key_lookup(f->a, "k", &p), RZ_EAUTH);
    assert_int_equal(rz_auth_key_lookup(f->a, STRONG, &p), RZ_OK);
}

static void test_client_key_names_its_account(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = client_of(42), out;
    assert_int_equal(rz_auth_key_put(f->a, "rzk_client", &in), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzk_client", &out), RZ_OK);
    assert_int_equal(out.kind, RZ_AUTH_CLIENT);
    assert_true(rz_ledger_id_equal(out.account, in.account));
    assert_int_equal(out.node, 0);
}

static void test_node_key_names_its_node(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = { RZ_AUTH_NODE, rz_ledger_id_make(0, 9), 5 }, out;
    assert_int_equal(rz_auth_key_put(f->a, "rzn_node", &in), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzn_node", &out), RZ_OK);
    assert_int_equal(out.kind, RZ_AUTH_NODE);
    assert_int_equal(out.node, 5);
}

static void test_unknown_key_is_eauth_and_zeroed(void **state)
{
    fixture *f = *state;
    rz_auth_principal out;
    memset(&out, 0xff, sizeof out);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzk_nobody", &out), RZ_EAUTH);
    assert_int_equal(out.kind, RZ_AUTH_NONE);
    assert_null(strstr(rz_error_last()->message, "rzk_nobody"));
}

static void test_key_put_refuses_admin_kind(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = { RZ_AUTH_ADMIN, rz_ledger_id_make(0, 1), 0 }, out;
    assert_int_equal(rz_auth_key_put(f->a, "rzk_admin", &in), RZ_EINVAL);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzk_admin", &out), RZ_EAUTH);
}

static void test_key_put_refuses_node_zero(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = { RZ_AUTH_NODE, rz_ledger_id_make(0, 1), 0 }, out;
    assert_int_equal(rz_auth_key_put(f->a, "rzn_zero", &in), RZ_EINVAL);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzn_zero", &out), RZ_EAUTH);
}

static void test_key_put_refuses_an_empty_key(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = client_of(1);
    assert_int_equal(rz_auth_key_put(f->a, "", &in), RZ_EINVAL);
    assert_int_equal(rz_auth_key_put(f->a, NULL, &in), RZ_EINVAL);
}

static void test_key_put_replaces(void **state)
{
    fixture *f = *state;
    rz_auth_principal one = client_of(1), two = client_of(2), out;
    assert_int_equal(rz_auth_key_put(f->a, "rzk_k", &one), RZ_OK);
    assert_int_equal(rz_auth_key_put(f->a, "rzk_k", &two), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzk_k", &out), RZ_OK);
    assert_true(rz_ledger_id_equal(out.account, two.account));
}

static void test_keys_survive_reopen(void **state)
{
    fixture *f = *state;
    rz_auth_principal in = client_of(3), out;
    assert_int_equal(rz_auth_key_put(f->a, "rzk_durable", &in), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, "rzk_durable", &out), RZ_OK);
}

static void test_admin_key_is_not_stored(void **state)
{
    fixture *f = *state;
    rz_auth_principal out;
    assert_int_equal(rz_auth_admin_set(f->a, STRONG), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, STRONG, &out), RZ_EAUTH);
}

static void test_audit_head_round_trips_and_survives_reopen(void **state)
{
    fixture *f = *state;
    uint64_t seq = 99;
    unsigned char h[32], got[32];
    assert_int_equal(rz_auth_audit_head_get(f->a, &seq, got), RZ_ENOENT);
    for (int i = 0; i < 32; i++)
        h[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(rz_auth_audit_head_put(f->a, 1, h), RZ_OK);
    h[0] ^= 0xff;
    assert_int_equal(rz_auth_audit_head_put(f->a, (uint64_t)1 << 40, h), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    assert_int_equal(rz_auth_audit_head_get(f->a, &seq, got), RZ_OK);
    assert_int_equal(seq, (uint64_t)1 << 40);
    assert_memory_equal(got, h, 32);
    assert_int_equal(rz_auth_audit_head_put(f->a, 1, NULL), RZ_EINVAL);
}

/* Whether the chain is keyed, and since when, is the store's word: put
 * keeps what put2 recorded; none recorded reads as 0. */
static void test_audit_head_keeps_keyed_since(void **state)
{
    fixture *f = *state;
    uint64_t seq = 0, since = 99;
    unsigned char h[32] = { 1, 2, 3 }, got[32];
    assert_int_equal(rz_auth_audit_head_get2(f->a, &seq, got, &since), RZ_ENOENT);
    assert_int_equal(rz_auth_audit_head_put(f->a, 3, h), RZ_OK);
    assert_int_equal(rz_auth_audit_head_get2(f->a, &seq, got, &since), RZ_OK);
    assert_int_equal(since, 0);
    assert_int_equal(rz_auth_audit_head_put2(f->a, 4, h, 4), RZ_OK);
    h[1] = 9;
    assert_int_equal(rz_auth_audit_head_put(f->a, 5, h), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    assert_int_equal(rz_auth_audit_head_get2(f->a, &seq, got, &since), RZ_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(since, 4);
    assert_memory_equal(got, h, 32);
    assert_int_equal(rz_auth_audit_head_get(f->a, &seq, got), RZ_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(rz_auth_audit_head_put2(f->a, 6, h, 0), RZ_OK);
    assert_int_equal(rz_auth_audit_head_get2(f->a, &seq, got, &since), RZ_OK);
    assert_int_equal(since, 0);
    assert_int_equal(rz_auth_audit_head_get2(f->a, &seq, got, NULL), RZ_EINVAL);
}

static void test_open_refuses_no_folder(void **state)
{
    (void)state;
    rz_auth *a = (rz_auth *)1;
    assert_int_equal(rz_auth_open(&a, ""), RZ_EINVAL);
    assert_null(a);
}

/* ---- nodes, accounts, credentials, logs ---- */

static void test_node_key_round_trips(void **state)
{
    fixture *f = *state;
    unsigned char pk[32];
    assert_int_equal(rz_auth_node_put(f->a, 4, X25519_HEX, NULL), RZ_OK);
    assert_int_equal(rz_auth_node_key_get(f->a, 4, pk), RZ_OK);
    assert_int_equal(pk[0], 0x00);
    assert_int_equal(pk[1], 0x11);
    assert_int_equal(pk[31], 0xff);
}

static void test_node_put_refuses_bad_hex(void **state)
{
    fixture *f = *state;
    unsigned char pk[32];
    assert_int_equal(rz_auth_node_put(f->a, 4, "zz", NULL), RZ_EINVAL);
    assert_int_equal(rz_auth_node_put(f->a, 4, X25519_HEX, "0011"), RZ_EINVAL);
    assert_int_equal(rz_auth_node_key_get(f->a, 4, pk), RZ_ENOENT);
}

static void test_node_key_get_unknown_is_enoent(void **state)
{
    fixture *f = *state;
    unsigned char pk[32];
    assert_int_equal(rz_auth_node_key_get(f->a, 99, pk), RZ_ENOENT);
}

static void test_account_round_trips(void **state)
{
    fixture *f = *state;
    char *rec = NULL;
    rz_ledger_id id = rz_ledger_id_make(1, 2);
    assert_int_equal(rz_auth_account_put(f->a, id, "acme", "0xabc"), RZ_OK);
    assert_int_equal(rz_auth_account_get(f->a, id, &rec), RZ_OK);
    assert_string_equal(rec, "{\"name\":\"acme\",\"wallet_address\":\"0xabc\"}");
    rz_free(rec);
}

static void test_creds_round_trip(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    assert_int_equal(rz_auth_creds_put(f->a, 8, "{\"sealed\":{}}"), RZ_OK);
    assert_int_equal(rz_auth_creds_get(f->a, 8, &out), RZ_OK);
    assert_string_equal(out, "{\"sealed\":{}}");
    rz_free(out);
}

static void test_creds_put_refuses_empty(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    assert_int_equal(rz_auth_creds_put(f->a, 8, ""), RZ_EINVAL);
    assert_int_equal(rz_auth_creds_get(f->a, 8, &out), RZ_ENOENT);
    assert_null(out);
}

/* An account's stored credentials: its own only, listed in id order,
 * replaced by a put, gone after del; bad ids refused with no change. */
static void test_account_creds_are_per_account(void **state)
{
    fixture *f = *state;
    rz_ledger_id me = rz_ledger_id_make(1, 2), other = rz_ledger_id_make(1, 3);
    char *out = NULL;
    assert_int_equal(rz_auth_account_cred_put(f->a, me, "zeta", "{\"type\":\"t\"}"), RZ_OK);
    assert_int_equal(rz_auth_account_cred_put(f->a, me, "alpha", "{\"type\":\"a\"}"), RZ_OK);
    assert_int_equal(rz_auth_account_cred_put(f->a, me, "alpha", "{\"type\":\"b\"}"), RZ_OK);
    assert_int_equal(rz_auth_account_cred_put(f->a, other, "mine", "{\"type\":\"o\"}"), RZ_OK);
    assert_int_equal(rz_auth_account_cred_list(f->a, me, &out), RZ_OK);
    assert_string_equal(out, "[{\"type\":\"b\",\"id\":\"alpha\"},{\"type\":\"t\",\"id\":\"zeta\"}]");
    rz_free(out);
    assert_int_equal(rz_auth_account_cred_get(f->a, me, "mine", &out), RZ_ENOENT);
    assert_null(out);
    assert_int_equal(rz_auth_account_cred_get(f->a, other, "mine", &out), RZ_OK);
    assert_string_equal(out, "{\"type\":\"o\"}");
    rz_free(out);
    assert_int_equal(rz_auth_account_cred_del(f->a, me, "mine"), RZ_ENOENT);
    assert_int_equal(rz_auth_account_cred_del(f->a, me, "zeta"), RZ_OK);
    assert_int_equal(rz_auth_account_cred_del(f->a, me, "zeta"), RZ_ENOENT);
    char long_id[RZ_AUTH_CRED_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(rz_auth_account_cred_put(f->a, me, long_id, "{}"), RZ_EINVAL);
    assert_int_equal(rz_auth_account_cred_put(f->a, me, "", "{}"), RZ_EINVAL);
    assert_int_equal(rz_auth_account_cred_put(f->a, me, "e", ""), RZ_EINVAL);
    assert_int_equal(rz_auth_account_cred_list(f->a, me, &out), RZ_OK);
    assert_string_equal(out, "[{\"type\":\"b\",\"id\":\"alpha\"}]");
    rz_free(out);
    assert_int_equal(rz_auth_account_cred_list(f->a, rz_ledger_id_make(9, 9), &out), RZ_OK);
    assert_string_equal(out, "[]");
    rz_free(out);
}

static void test_log_keeps_binary_length(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(rz_auth_log_put(f->a, 3, "a\0b", 3), RZ_OK);
    assert_int_equal(rz_auth_log_get(f->a, 3, &out, &len), RZ_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "a\0b", 3);
    rz_free(out);
}

static void test_log_put_refuses_null_text_with_length(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    assert_int_equal(rz_auth_log_put(f->a, 3, NULL, 5), RZ_EINVAL);
    assert_int_equal(rz_auth_log_get(f->a, 3, &out, NULL), RZ_ENOENT);
}

static void expect_log(rz_auth *a, uint64_t job, uint32_t attempt,
                       const char *want, uint32_t want_which)
{
    char *out = NULL;
    uint32_t which = 99;
    assert_int_equal(rz_auth_attempt_log_get(a, job, attempt, &out, NULL, &which), RZ_OK);
    assert_string_equal(out, want);
    assert_int_equal(which, want_which);
    rz_free(out);
}

/* Each attempt's log apart; the last one is the job's log; a neighbour's
 * keys (job 4 after job 3's) are never read as job 3's. */
static void test_logs_are_kept_per_attempt(void **state)
{
    fixture *f = *state;
    assert_int_equal(rz_auth_log_put(f->a, 3, "before", 6), RZ_OK);
    expect_log(f->a, 3, 0, "before", 0);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 3, 1, "one", 3), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 3, 2, "two", 3), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 4, 1, "four", 4), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 3, 2, "two again", 9), RZ_OK);
    expect_log(f->a, 3, 0, "two again", 2);
    expect_log(f->a, 3, 1, "one", 1);
    expect_log(f->a, 4, 0, "four", 1);
    char *out = NULL;
    assert_int_equal(rz_auth_log_get(f->a, 3, &out, NULL), RZ_OK);
    assert_string_equal(out, "two again");
    rz_free(out);
    out = NULL;
    assert_int_equal(rz_auth_attempt_log_get(f->a, 3, 5, &out, NULL, NULL), RZ_ENOENT);
    assert_null(out);
    assert_int_equal(rz_auth_attempt_log_get(f->a, 5, 0, &out, NULL, NULL), RZ_ENOENT);
    assert_int_equal(rz_auth_attempt_log_get(f->a, 2, 0, &out, NULL, NULL), RZ_ENOENT);
    uint32_t at[4];
    size_t n = 9;
    assert_int_equal(rz_auth_log_attempts(f->a, 3, at, 4, &n), RZ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(at[0], 1);
    assert_int_equal(at[1], 2);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 3, 0, "x", 1), RZ_EINVAL);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 3, 1, NULL, 1), RZ_EINVAL);
}

typedef struct other_read {
    rz_auth *a;
    uint64_t job;
    int log_rc, result_rc;
} other_read;

static void *read_job(void *arg)
{
    other_read *r = arg;
    char *out = NULL;
    r->log_rc = rz_auth_attempt_log_get(r->a, r->job, 0, &out, NULL, NULL);
    rz_free(out);
    out = NULL;
    r->result_rc = rz_auth_result_get(r->a, r->job, &out);
    rz_free(out);
    return NULL;
}

/* What another thread reads of job's log and result (its own read
 * transactions: the committed state). */
static other_read read_elsewhere(rz_auth *a, uint64_t job)
{
    other_read r = { a, job, -1, -1 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_job, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    return r;
}

/* Puts inside a group: the group's own reads see them at once, another
 * thread (or process) only after the commit; a put refused inside leaves
 * the rest; a second begin is refused; close commits an open group. */
static void test_group_commits_puts_at_once(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    assert_int_equal(rz_auth_group_commit(f->a), RZ_OK);   /* none open */
    assert_int_equal(rz_auth_group_begin(f->a), RZ_OK);
    assert_int_equal(rz_auth_group_begin(f->a), RZ_ESTATE);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 9, 1, "one", 3), RZ_OK);
    assert_int_equal(rz_auth_result_put(f->a, 9, "{\"sig\":1}"), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 9, 0, "x", 1), RZ_EINVAL);
    expect_log(f->a, 9, 0, "one", 1);
    assert_int_equal(rz_auth_result_get(f->a, 9, &out), RZ_OK);
    rz_free(out);
    out = NULL;
    other_read r = read_elsewhere(f->a, 9);
    assert_int_equal(r.log_rc, RZ_ENOENT);
    assert_int_equal(r.result_rc, RZ_ENOENT);
    assert_int_equal(rz_auth_group_commit(f->a), RZ_OK);
    r = read_elsewhere(f->a, 9);
    assert_int_equal(r.log_rc, RZ_OK);
    assert_int_equal(r.result_rc, RZ_OK);
    assert_int_equal(rz_auth_result_get(f->a, 9, &out), RZ_OK);
    assert_string_equal(out, "{\"sig\":1}");
    rz_free(out);
    /* Close with a group open: its puts are kept. */
    assert_int_equal(rz_auth_group_begin(f->a), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 10, 1, "ten", 3), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    expect_log(f->a, 10, 0, "ten", 1);
    expect_log(f->a, 9, 0, "one", 1);
}

/* An aborted group keeps none of its puts; the redo mark is 0 until put,
 * and a mark put in a group is durable with the group's puts or not at
 * all. */
static void test_group_abort_and_redo_mark(void **state)
{
    fixture *f = *state;
    uint64_t mark = 7;
    assert_int_equal(rz_auth_redo_mark_get(f->a, &mark), RZ_OK);
    assert_int_equal(mark, 0);
    assert_int_equal(rz_auth_group_abort(f->a), RZ_OK);   /* none open */
    assert_int_equal(rz_auth_group_begin(f->a), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 9, 1, "one", 3), RZ_OK);
    assert_int_equal(rz_auth_redo_mark_put(f->a, 5), RZ_OK);
    assert_int_equal(rz_auth_redo_mark_get(f->a, &mark), RZ_OK);
    assert_int_equal(mark, 5);   /* the group's reads see it */
    assert_int_equal(rz_auth_group_abort(f->a), RZ_OK);
    assert_int_equal(rz_auth_group_writes(f->a), 0);
    assert_int_equal(rz_auth_redo_mark_get(f->a, &mark), RZ_OK);
    assert_int_equal(mark, 0);
    assert_int_equal(read_elsewhere(f->a, 9).log_rc, RZ_ENOENT);
    assert_int_equal(rz_auth_group_begin(f->a), RZ_OK);   /* none open now */
    assert_int_equal(rz_auth_attempt_log_put(f->a, 9, 1, "one", 3), RZ_OK);
    assert_int_equal(rz_auth_redo_mark_put(f->a, 6), RZ_OK);
    assert_int_equal(rz_auth_group_commit(f->a), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    assert_int_equal(rz_auth_redo_mark_get(f->a, &mark), RZ_OK);
    assert_int_equal(mark, 6);
    expect_log(f->a, 9, 0, "one", 1);
    assert_int_equal(rz_auth_redo_mark_put(NULL, 1), RZ_EINVAL);
    assert_int_equal(rz_auth_redo_mark_get(f->a, NULL), RZ_EINVAL);
    /* Read only, beside the writer's open group: it reads what is
     * committed and writes nothing. */
    assert_int_equal(rz_auth_group_begin(f->a), RZ_OK);
    assert_int_equal(rz_auth_redo_mark_put(f->a, 8), RZ_OK);
    pid_t pid = fork();   /* another process: LMDB opens a store once in one */
    assert_true(pid >= 0);
    if (pid == 0) {
        rz_auth *ro = NULL;
        uint64_t m = 0;
        bool ok = rz_auth_open_readonly(&ro, f->dir) == RZ_OK &&
                  rz_auth_redo_mark_get(ro, &m) == RZ_OK && m == 6 &&
                  rz_auth_redo_mark_put(ro, 9) == RZ_EDB;
        rz_auth_close(ro);
        _exit(ok ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(rz_auth_group_commit(f->a), RZ_OK);
    rz_auth *ro = NULL;
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/none", f->dir);
    assert_int_not_equal(rz_auth_open_readonly(&ro, missing), RZ_OK);
    assert_null(ro);
}

/* Past RZ_AUTH_LOG_ATTEMPTS the oldest go, in the same commit; forgetting
 * the job takes them all, its first log too, and no neighbour's. */
static void test_attempt_logs_rotate_and_are_forgotten(void **state)
{
    fixture *f = *state;
    char text[16];
    assert_int_equal(rz_auth_log_put(f->a, 7, "legacy", 6), RZ_OK);
    for (uint32_t i = 1; i <= RZ_AUTH_LOG_ATTEMPTS + 3; i++) {
        int n = snprintf(text, sizeof text, "attempt %u", i);
        assert_int_equal(rz_auth_attempt_log_put(f->a, 7, i, text, (size_t)n), RZ_OK);
    }
    assert_int_equal(rz_auth_attempt_log_put(f->a, 8, 1, "eight", 5), RZ_OK);
    assert_int_equal(rz_auth_attempt_log_put(f->a, 6, 1, "six", 3), RZ_OK);
    uint32_t at[16];
    size_t n = 0;
    assert_int_equal(rz_auth_log_attempts(f->a, 7, at, 16, &n), RZ_OK);
    assert_int_equal(n, RZ_AUTH_LOG_ATTEMPTS);
    assert_int_equal(at[0], 4);
    assert_int_equal(at[n - 1], RZ_AUTH_LOG_ATTEMPTS + 3);
    expect_log(f->a, 7, 0, "attempt 11", RZ_AUTH_LOG_ATTEMPTS + 3);
    const uint64_t jobs[] = { 7 };
    assert_int_equal(rz_auth_forget(f->a, jobs, 1, NULL, 0), RZ_OK);
    char *out = NULL;
    assert_int_equal(rz_auth_log_get(f->a, 7, &out, NULL), RZ_ENOENT);
    assert_int_equal(rz_auth_log_attempts(f->a, 7, at, 16, &n), RZ_OK);
    assert_int_equal(n, 0);
    expect_log(f->a, 8, 0, "eight", 1);
    expect_log(f->a, 6, 0, "six", 1);
}

/* ---- the throttle ---- */

static rz_auth_throttle *throttle(uint32_t max, uint32_t slots)
{
    rz_auth_throttle_opts o = RZ_AUTH_THROTTLE_OPTS_INIT;
    o.max_failures = max;
    o.window_ms = 10000;
    o.lock_ms = 1000;
    o.max_lock_ms = 8000;
    o.slots = slots;
    rz_auth_throttle *t = NULL;
    assert_int_equal(rz_auth_throttle_new(&t, &o), RZ_OK);
    return t;
}

static void test_throttle_allows_failures_below_the_limit(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 64);
    rz_auth_throttle_fail(t, "1.2.3.4", "k1", 0);
    rz_auth_throttle_fail(t, "1.2.3.4", "k2", 0);
    assert_int_equal(rz_auth_throttle_wait(t, "1.2.3.4", "k3", 0), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_locks_the_address_at_the_limit(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 64);
    for (int i = 0; i < 3; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        rz_auth_throttle_fail(t, "1.2.3.4", key, 100);
    }
    assert_int_equal(rz_auth_throttle_wait(t, "1.2.3.4", "good", 100), 1000);
    assert_int_equal(rz_auth_throttle_wait(t, "1.2.3.4", "good", 1100), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_leaves_other_addresses_alone(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 64);
    for (int i = 0; i < 3; i++)
        rz_auth_throttle_fail(t, "1.2.3.4", i ? "k" : "j", 0);
    assert_int_equal(rz_auth_throttle_wait(t, "5.6.7.8", "good", 0), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_locks_a_key_tried_from_many_addresses(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 64);
    rz_auth_throttle_fail(t, "10.0.0.1", "stolen", 0);
    rz_auth_throttle_fail(t, "10.0.0.2", "stolen", 0);
    rz_auth_throttle_fail(t, "10.0.0.3", "stolen", 0);
    assert_true(rz_auth_throttle_wait(t, "10.0.0.4", "stolen", 0) > 0);
    assert_int_equal(rz_auth_throttle_wait(t, "10.0.0.4", "other", 0), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_doubles_each_lock(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(2, 64);
    rz_auth_throttle_fail(t, "a", NULL, 0);
    rz_auth_throttle_fail(t, "a", NULL, 0);
    assert_int_equal(rz_auth_throttle_wait(t, "a", NULL, 0), 1000);
    rz_auth_throttle_fail(t, "a", NULL, 1000);
    assert_int_equal(rz_auth_throttle_wait(t, "a", NULL, 1000), 2000);
    rz_auth_throttle_fail(t, "a", NULL, 3000);
    assert_int_equal(rz_auth_throttle_wait(t, "a", NULL, 3000), 4000);
    rz_auth_throttle_free(t);
}

static void test_throttle_caps_the_lock(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(1, 64);
    uint64_t now = 0;
    for (int i = 0; i < 40; i++) {
        rz_auth_throttle_fail(t, "a", NULL, now);
        now += rz_auth_throttle_wait(t, "a", NULL, now);
    }
    rz_auth_throttle_fail(t, "a", NULL, now);
    assert_int_equal(rz_auth_throttle_wait(t, "a", NULL, now), 8000);
    rz_auth_throttle_free(t);
}

static void test_throttle_forgets_failures_after_the_window(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 64);
    rz_auth_throttle_fail(t, "a", NULL, 0);
    rz_auth_throttle_fail(t, "a", NULL, 0);
    rz_auth_throttle_fail(t, "a", NULL, 10001);
    assert_int_equal(rz_auth_throttle_wait(t, "a", NULL, 10001), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_ignores_empty_names(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(1, 64);
    rz_auth_throttle_fail(t, "", NULL, 0);
    assert_int_equal(rz_auth_throttle_wait(t, "", NULL, 0), 0);
    assert_int_equal(rz_auth_throttle_count(t), 0);
    rz_auth_throttle_free(t);
}

static void test_throttle_memory_is_bounded(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 32);
    for (int i = 0; i < 5000; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.%d.%d.1", i / 256, i % 256);
        rz_auth_throttle_fail(t, addr, addr, (uint64_t)i);
    }
    assert_true(rz_auth_throttle_count(t) <= 32);
    rz_auth_throttle_free(t);
}

static void test_throttle_keeps_a_lock_while_others_churn(void **state)
{
    (void)state;
    rz_auth_throttle *t = throttle(3, 16);
    for (int i = 0; i < 3; i++)
        rz_auth_throttle_fail(t, "locked", NULL, 0);
    for (int i = 0; i < 200; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "other-%d", i);
        rz_auth_throttle_fail(t, addr, NULL, 10);   /* one each: unlocked */
    }
    assert_int_equal(rz_auth_throttle_wait(t, "locked", NULL, 10), 990);
    rz_auth_throttle_free(t);
}

static void test_throttle_new_refuses_bad_opts(void **state)
{
    (void)state;
    rz_auth_throttle *t = (rz_auth_throttle *)1;
    rz_auth_throttle_opts o = RZ_AUTH_THROTTLE_OPTS_INIT;
    o.lock_ms = 9000;
    o.max_lock_ms = 1000;
    assert_int_equal(rz_auth_throttle_new(&t, &o), RZ_EINVAL);
    assert_null(t);
    o = (rz_auth_throttle_opts)RZ_AUTH_THROTTLE_OPTS_INIT;
    o.version = 2;
    assert_int_equal(rz_auth_throttle_new(&t, &o), RZ_EINVAL);
}

int main(void)
{
#define T(name) cmocka_unit_test(name)
#define F(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_key_check_accepts_random_hex),
        T(test_key_check_refuses_one_character),
        T(test_key_check_refuses_31_characters),
        T(test_key_check_refuses_a_repeated_pattern),
        T(test_key_check_refuses_a_space),
        T(test_key_check_refuses_empty_and_null),
        T(test_key_check_refuses_an_overlong_key),
        T(test_key_new_refuses_a_small_buffer),
        T(test_key_new_gives_different_keys),
        F(test_admin_key_is_looked_up_as_admin),
        F(test_weak_admin_key_keeps_the_previous_one),
        F(test_client_key_names_its_account),
        F(test_node_key_names_its_node),
        F(test_unknown_key_is_eauth_and_zeroed),
        F(test_key_put_refuses_admin_kind),
        F(test_key_put_refuses_node_zero),
        F(test_key_put_refuses_an_empty_key),
        F(test_key_put_replaces),
        F(test_keys_survive_reopen),
        F(test_admin_key_is_not_stored),
        F(test_audit_head_round_trips_and_survives_reopen),
        F(test_audit_head_keeps_keyed_since),
        T(test_open_refuses_no_folder),
        F(test_node_key_round_trips),
        F(test_node_put_refuses_bad_hex),
        F(test_node_key_get_unknown_is_enoent),
        F(test_account_round_trips),
        F(test_creds_round_trip),
        F(test_creds_put_refuses_empty),
        F(test_account_creds_are_per_account),
        F(test_log_keeps_binary_length),
        F(test_log_put_refuses_null_text_with_length),
        F(test_logs_are_kept_per_attempt),
        F(test_attempt_logs_rotate_and_are_forgotten),
        F(test_group_commits_puts_at_once),
        F(test_group_abort_and_redo_mark),
        T(test_throttle_allows_failures_below_the_limit),
        T(test_throttle_locks_the_address_at_the_limit),
        T(test_throttle_leaves_other_addresses_alone),
        T(test_throttle_locks_a_key_tried_from_many_addresses),
        T(test_throttle_doubles_each_lock),
        T(test_throttle_caps_the_lock),
        T(test_throttle_forgets_failures_after_the_window),
        T(test_throttle_ignores_empty_names),
        T(test_throttle_memory_is_bounded),
        T(test_throttle_keeps_a_lock_while_others_churn),
        T(test_throttle_new_refuses_bad_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
