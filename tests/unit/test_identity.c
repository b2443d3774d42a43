/* A node's identity (rhizos/auth.h): the exact bytes it signs, signatures
 * that verify only for the key's owner, the replay cache, and the store's
 * key bindings (same key, same node; tokens revoked; retirement; legacy
 * nodes): one behaviour each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "rhizos/rhizos.h"
#include "helpers.h"

#define ED_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define X_HEX "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define NONCE "0123456789abcdef0123456789abcdef"
#define NONCE2 "fedcba9876543210fedcba9876543210"
#define TOKEN_A "rzn_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOKEN_B "rzn_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

typedef struct key {
    unsigned char pk[32], sk[64];
    char hex[65];
} key;

static key key_new(void)
{
    key k;
    crypto_sign_keypair(k.pk, k.sk);
    sodium_bin2hex(k.hex, sizeof k.hex, k.pk, sizeof k.pk);
    return k;
}

typedef struct fixture {
    char dir[64];
    rz_auth *a;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || sodium_init() < 0 || !tmp_dir_make(f->dir, sizeof f->dir, "identity"))
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

static int sodium_setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

/* ---- the signed bytes ---- */

static void test_proof_message_is_exact(void **state)
{
    (void)state;
    rz_auth_node_proof p = { "register", ED_HEX, X_HEX, 1700000000123ull, NONCE };
    char buf[512];
    size_t len = 0;
    assert_int_equal(rz_auth_proof_message(&p, buf, sizeof buf, &len), RZ_OK);
    const char *want = "rhizos-node-v1\naction=register\ned25519=" ED_HEX
                       "\nx25519=" X_HEX "\ntimestamp_ms=1700000000123\nnonce="
                       NONCE "\n";
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
    rz_auth_node_proof r = { "retire", ED_HEX, NULL, 5, NONCE };
    assert_int_equal(rz_auth_proof_message(&r, buf, sizeof buf, &len), RZ_OK);
    assert_string_equal(buf, "rhizos-node-v1\naction=retire\ned25519=" ED_HEX
                        "\nx25519=\ntimestamp_ms=5\nnonce=" NONCE "\n");
}

static void test_proof_message_refuses_other_spellings(void **state)
{
    (void)state;
    char buf[512];
    rz_auth_node_proof upper = { "register", "00112233445566778899AABBCCDDEEFF"
                                 "00112233445566778899aabbccddeeff", X_HEX, 1, NONCE };
    rz_auth_node_proof short_nonce = { "register", ED_HEX, X_HEX, 1, "0123" };
    rz_auth_node_proof retire_x = { "retire", ED_HEX, X_HEX, 1, NONCE };
    rz_auth_node_proof other = { "deploy", ED_HEX, X_HEX, 1, NONCE };
    rz_auth_node_proof ok = { "register", ED_HEX, X_HEX, 1, NONCE };
    assert_int_equal(rz_auth_proof_message(&upper, buf, sizeof buf, NULL), RZ_EINVAL);
    assert_int_equal(rz_auth_proof_message(&short_nonce, buf, sizeof buf, NULL), RZ_EINVAL);
    assert_int_equal(rz_auth_proof_message(&retire_x, buf, sizeof buf, NULL), RZ_EINVAL);
    assert_int_equal(rz_auth_proof_message(&other, buf, sizeof buf, NULL), RZ_EINVAL);
    assert_int_equal(rz_auth_proof_message(&ok, buf, 64, NULL), RZ_EINVAL);
}

static void test_proof_verifies_for_its_key_only(void **state)
{
    (void)state;
    key owner = key_new(), thief = key_new();
    char sig[RZ_AUTH_SIG_HEX + 1];
    rz_auth_node_proof p = { "register", owner.hex, X_HEX, 1000, NONCE };
    assert_int_equal(rz_auth_proof_sign(&p, owner.sk, sig), RZ_OK);
    assert_int_equal(strlen(sig), RZ_AUTH_SIG_HEX);
    assert_int_equal(rz_auth_proof_verify(&p, sig), RZ_OK);
    /* The owner's public key, signed by another key. */
    assert_int_equal(rz_auth_proof_sign(&p, thief.sk, sig), RZ_OK);
    assert_int_equal(rz_auth_proof_verify(&p, sig), RZ_EAUTH);
}

static void test_proof_binds_every_field(void **state)
{
    (void)state;
    key k = key_new();
    char sig[RZ_AUTH_SIG_HEX + 1];
    rz_auth_node_proof p = { "register", k.hex, X_HEX, 1000, NONCE };
    assert_int_equal(rz_auth_proof_sign(&p, k.sk, sig), RZ_OK);
    rz_auth_node_proof later = p, other_x = p, other_nonce = p, retire = p;
    later.timestamp_ms = 1001;
    other_x.x25519_hex = ED_HEX;
    other_nonce.nonce_hex = NONCE2;
    retire.action = "retire";
    retire.x25519_hex = NULL;
    assert_int_equal(rz_auth_proof_verify(&later, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_proof_verify(&other_x, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_proof_verify(&other_nonce, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_proof_verify(&retire, sig), RZ_EAUTH);
    sig[0] = 'G';
    assert_int_equal(rz_auth_proof_verify(&p, sig), RZ_EINVAL);
}

/* ---- version 2: the proof names its orchestrator ---- */

#define ORCH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ORCH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_proof2_message_is_exact(void **state)
{
    (void)state;
    rz_auth_node_proof2 p = RZ_AUTH_NODE_PROOF2_INIT;
    p.action = "register";
    p.ed25519_hex = ED_HEX;
    p.x25519_hex = X_HEX;
    p.timestamp_ms = 1700000000123ull;
    p.nonce_hex = NONCE;
    p.orchestrator_hex = ORCH_A;
    char buf[512];
    size_t len = 0;
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, &len), RZ_OK);
    const char *want = "rhizos-node-v2\naction=register\norchestrator=" ORCH_A
                       "\ned25519=" ED_HEX "\nx25519=" X_HEX
                       "\ntimestamp_ms=1700000000123\nnonce=" NONCE "\n";
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
    /* Version 1 through the new struct: the old bytes, the same as the
     * old function's. */
    rz_auth_node_proof old = { "register", ED_HEX, X_HEX, 1700000000123ull, NONCE };
    char old_buf[512];
    assert_int_equal(rz_auth_proof_message(&old, old_buf, sizeof old_buf, NULL), RZ_OK);
    p.version = 1;
    p.orchestrator_hex = NULL;
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, &len), RZ_OK);
    assert_string_equal(buf, old_buf);
}

static void test_proof2_refuses_bad_versions_and_keys(void **state)
{
    (void)state;
    char buf[512];
    rz_auth_node_proof2 p = { 2, "register", ED_HEX, X_HEX, 1, NONCE, NULL };
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.orchestrator_hex = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.orchestrator_hex = "aaaa";
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.orchestrator_hex = ORCH_A;
    p.version = 1;         /* version 1 names no orchestrator */
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.version = 3;
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.version = 0;
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_EINVAL);
    p.version = 2;
    assert_int_equal(rz_auth_proof2_message(&p, buf, sizeof buf, NULL), RZ_OK);
}

/* Signed for orchestrator A, the proof does not verify as one for B, nor
 * as a version 1 proof of the same fields. */
static void test_proof2_binds_the_orchestrator(void **state)
{
    (void)state;
    key k = key_new();
    char sig[RZ_AUTH_SIG_HEX + 1];
    rz_auth_node_proof2 a = { 2, "register", k.hex, X_HEX, 1000, NONCE, ORCH_A };
    assert_int_equal(rz_auth_proof2_sign(&a, k.sk, sig), RZ_OK);
    assert_int_equal(rz_auth_proof2_verify(&a, sig), RZ_OK);
    rz_auth_node_proof2 b = a, v1 = a, retire = a;
    b.orchestrator_hex = ORCH_B;
    v1.version = 1;
    v1.orchestrator_hex = NULL;
    retire.action = "retire";
    retire.x25519_hex = NULL;
    assert_int_equal(rz_auth_proof2_verify(&b, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_proof2_verify(&v1, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_proof2_verify(&retire, sig), RZ_EAUTH);
    rz_auth_node_proof old = { "register", k.hex, X_HEX, 1000, NONCE };
    assert_int_equal(rz_auth_proof_verify(&old, sig), RZ_EAUTH);
    /* A version 1 proof signed with rz_auth_proof_sign verifies through
     * either struct. */
    assert_int_equal(rz_auth_proof_sign(&old, k.sk, sig), RZ_OK);
    assert_int_equal(rz_auth_proof2_verify(&v1, sig), RZ_OK);
    assert_int_equal(rz_auth_proof_verify(&old, sig), RZ_OK);
}

static void test_result_message_is_exact(void **state)
{
    (void)state;
    char buf[256];
    rz_auth_result r = { 7, 2, 0, "{}", 2 };
    assert_int_equal(rz_auth_result_message(&r, buf, sizeof buf, NULL), RZ_OK);
    assert_string_equal(buf, "rhizos-result-v1\njob=7\nattempt=2\noutcome=outputs\n"
                        "sha256=44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\n");
    rz_auth_result e = { 7, 2, 1, "boom", 4 };
    assert_int_equal(rz_auth_result_message(&e, buf, sizeof buf, NULL), RZ_OK);
    assert_string_equal(buf, "rhizos-result-v1\njob=7\nattempt=2\noutcome=error\n"
                        "sha256=81f52337ebb4cb1669bb802c708807dde0519d15cb102a6313d26ad5cd821713\n");
    rz_auth_result none = { 0, 1, 0, "{}", 2 };
    assert_int_equal(rz_auth_result_message(&none, buf, sizeof buf, NULL), RZ_EINVAL);
}

static void test_result_signature_binds_job_attempt_and_outputs(void **state)
{
    (void)state;
    key k = key_new(), other = key_new();
    char sig[RZ_AUTH_SIG_HEX + 1];
    rz_auth_result r = { 7, 2, 0, "{\"a\":1}", 7 };
    assert_int_equal(rz_auth_result_sign(&r, k.sk, sig), RZ_OK);
    assert_int_equal(rz_auth_result_verify(&r, k.pk, sig), RZ_OK);
    assert_int_equal(rz_auth_result_verify(&r, other.pk, sig), RZ_EAUTH);
    rz_auth_result job = r, attempt = r, text = r, failed = r;
    job.job = 8;
    attempt.attempt = 3;
    text.text = "{\"a\":2}";
    failed.failed = 1;
    assert_int_equal(rz_auth_result_verify(&job, k.pk, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_result_verify(&attempt, k.pk, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_result_verify(&text, k.pk, sig), RZ_EAUTH);
    assert_int_equal(rz_auth_result_verify(&failed, k.pk, sig), RZ_EAUTH);
}

/* ---- the replay cache ---- */

static void test_replay_takes_a_nonce_once(void **state)
{
    (void)state;
    rz_auth_replay *r = NULL;
    assert_int_equal(rz_auth_replay_new(&r, 64, 1000), RZ_OK);
    assert_int_equal(rz_auth_replay_check(r, NONCE, 5000, 5000), RZ_OK);
    assert_int_equal(rz_auth_replay_check(r, NONCE, 5000, 5500), RZ_EEXISTS);
    assert_int_equal(rz_auth_replay_check(r, NONCE2, 5000, 5500), RZ_OK);
    assert_int_equal(rz_auth_replay_count(r, 5500), 2);
    rz_auth_replay_free(r);
}

static void test_replay_refuses_a_timestamp_out_of_the_window(void **state)
{
    (void)state;
    rz_auth_replay *r = NULL;
    assert_int_equal(rz_auth_replay_new(&r, 64, 1000), RZ_OK);
    assert_int_equal(rz_auth_replay_check(r, NONCE, 3999, 5000), RZ_EEXPIRED);
    assert_int_equal(rz_auth_replay_check(r, NONCE, 6001, 5000), RZ_EEXPIRED);
    assert_int_equal(rz_auth_replay_check(r, NONCE, 4000, 5000), RZ_OK);
    /* Once its timestamp has left the window the nonce needs no slot:
     * the timestamp alone refuses it. */
    assert_int_equal(rz_auth_replay_check(r, NONCE, 4000, 5001), RZ_EEXPIRED);
    assert_int_equal(rz_auth_replay_count(r, 5001), 0);
    assert_int_equal(rz_auth_replay_check(r, "zz", 5000, 5000), RZ_EINVAL);
    rz_auth_replay_free(r);
}

static void test_replay_memory_is_bounded(void **state)
{
    (void)state;
    rz_auth_replay *r = NULL;
    assert_int_equal(rz_auth_replay_new(&r, 16, 1000), RZ_OK);
    char nonce[RZ_AUTH_NONCE_HEX + 1];
    int taken = 0, full = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(nonce, sizeof nonce, "%032x", i);
        int rc = rz_auth_replay_check(r, nonce, 5000, 5000);
        taken += rc == RZ_OK;
        full += rc == RZ_ETOOBIG;
    }
    assert_int_equal(taken, 16);
    assert_int_equal(full, 24);
    assert_int_equal(rz_auth_replay_count(r, 5000), 16);
    /* The window passed: every slot is free again. */
    assert_int_equal(rz_auth_replay_check(r, nonce, 6100, 6100), RZ_OK);
    rz_auth_replay_free(r);
}

static void test_replay_new_refuses_bad_sizes(void **state)
{
    (void)state;
    rz_auth_replay *r = NULL;
    assert_int_equal(rz_auth_replay_new(&r, 15, 1000), RZ_EINVAL);
    assert_int_equal(rz_auth_replay_new(&r, 64, 0), RZ_EINVAL);
    assert_null(r);
    rz_auth_replay_free(NULL);
}

/* ---- bindings ---- */

static void test_bind_then_find_gives_the_node(void **state)
{
    fixture *f = *state;
    key k = key_new();
    uint64_t node = 0;
    int retired = 1;
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, &retired), RZ_ENOENT);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_A,
                                           rz_ledger_id_make(5, 3)), RZ_OK);
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, &retired), RZ_OK);
    assert_int_equal(node, 3);
    assert_int_equal(retired, 0);
    rz_auth_principal p;
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_A, &p), RZ_OK);
    assert_int_equal(p.kind, RZ_AUTH_NODE);
    assert_int_equal(p.node, 3);
    unsigned char pk[32];
    int bound = 0;
    assert_int_equal(rz_auth_node_identity(f->a, 3, pk, &bound, &retired), RZ_OK);
    assert_memory_equal(pk, k.pk, 32);
    assert_int_equal(bound, 1);
}

static void test_bind_again_revokes_the_old_token(void **state)
{
    fixture *f = *state;
    key k = key_new();
    rz_ledger_id acct = rz_ledger_id_make(5, 3);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_A, acct), RZ_OK);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_B, acct), RZ_OK);
    rz_auth_principal p;
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_A, &p), RZ_EAUTH);
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_B, &p), RZ_OK);
    assert_int_equal(p.node, 3);
    /* The same token again: still valid (nothing to revoke). */
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_B, acct), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_B, &p), RZ_OK);
}

static void test_bind_refuses_a_key_of_another_node(void **state)
{
    fixture *f = *state;
    key k = key_new();
    rz_ledger_id acct = rz_ledger_id_make(5, 3);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_A, acct), RZ_OK);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 4, X_HEX, TOKEN_B, acct),
                     RZ_EEXISTS);
    rz_auth_principal p;
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_B, &p), RZ_EAUTH);
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_A, &p), RZ_OK);
}

static void test_bind_refuses_a_legacy_node_id(void **state)
{
    fixture *f = *state;
    key k = key_new();
    /* Registered by the previous version: keys on record, never proven. */
    assert_int_equal(rz_auth_node_put(f->a, 2, X_HEX, k.hex), RZ_OK);
    int bound = 1;
    unsigned char pk[32];
    assert_int_equal(rz_auth_node_identity(f->a, 2, pk, &bound, NULL), RZ_OK);
    assert_int_equal(bound, 0);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 2, X_HEX, TOKEN_A,
                                           rz_ledger_id_make(5, 2)), RZ_EEXISTS);
    uint64_t node;
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, NULL), RZ_ENOENT);
}

static void test_retired_key_is_refused_its_token_kept(void **state)
{
    fixture *f = *state;
    key k = key_new();
    rz_ledger_id acct = rz_ledger_id_make(5, 3);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_A, acct), RZ_OK);
    assert_int_equal(rz_auth_identity_retire(f->a, 3), RZ_OK);
    assert_int_equal(rz_auth_identity_retire(f->a, 3), RZ_OK);
    uint64_t node = 0;
    int retired = 0;
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, &retired), RZ_OK);
    assert_int_equal(node, 3);
    assert_int_equal(retired, 1);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, TOKEN_B, acct),
                     RZ_EDENIED);
    rz_auth_principal p;
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_A, &p), RZ_OK);
    assert_int_equal(rz_auth_key_lookup(f->a, TOKEN_B, &p), RZ_EAUTH);
    assert_int_equal(rz_auth_identity_retire(f->a, 99), RZ_ENOENT);
}

static void test_bindings_survive_reopen(void **state)
{
    fixture *f = *state;
    key k = key_new();
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 9, X_HEX, TOKEN_A,
                                           rz_ledger_id_make(5, 9)), RZ_OK);
    assert_int_equal(rz_auth_result_put(f->a, 4, "{\"signature\":\"x\"}"), RZ_OK);
    rz_auth_close(f->a);
    assert_int_equal(rz_auth_open(&f->a, f->dir), RZ_OK);
    uint64_t node = 0;
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, NULL), RZ_OK);
    assert_int_equal(node, 9);
    char *rec = NULL;
    assert_int_equal(rz_auth_result_get(f->a, 4, &rec), RZ_OK);
    assert_string_equal(rec, "{\"signature\":\"x\"}");
    rz_free(rec);
    assert_int_equal(rz_auth_result_get(f->a, 5, &rec), RZ_ENOENT);
    assert_int_equal(rz_auth_result_put(f->a, 5, ""), RZ_EINVAL);
}

static void test_bind_refuses_bad_input(void **state)
{
    fixture *f = *state;
    key k = key_new();
    rz_ledger_id acct = rz_ledger_id_make(5, 3);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 0, X_HEX, TOKEN_A, acct), RZ_EINVAL);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, "zz", TOKEN_A, acct), RZ_EINVAL);
    assert_int_equal(rz_auth_identity_bind(f->a, k.pk, 3, X_HEX, "", acct), RZ_EINVAL);
    uint64_t node;
    assert_int_equal(rz_auth_identity_find(f->a, k.pk, &node, NULL), RZ_ENOENT);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup(name, sodium_setup)
#define F(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_proof_message_is_exact),
        T(test_proof_message_refuses_other_spellings),
        T(test_proof_verifies_for_its_key_only),
        T(test_proof_binds_every_field),
        T(test_proof2_message_is_exact),
        T(test_proof2_refuses_bad_versions_and_keys),
        T(test_proof2_binds_the_orchestrator),
        T(test_result_message_is_exact),
        T(test_result_signature_binds_job_attempt_and_outputs),
        T(test_replay_takes_a_nonce_once),
        T(test_replay_refuses_a_timestamp_out_of_the_window),
        T(test_replay_memory_is_bounded),
        T(test_replay_new_refuses_bad_sizes),
        F(test_bind_then_find_gives_the_node),
        F(test_bind_again_revokes_the_old_token),
        F(test_bind_refuses_a_key_of_another_node),
        F(test_bind_refuses_a_legacy_node_id),
        F(test_retired_key_is_refused_its_token_kept),
        F(test_bindings_survive_reopen),
        F(test_bind_refuses_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
