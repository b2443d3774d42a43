/* Whom an API key names, kept between its requests
 * (server/orchestrator/keycache.c): the cache answers a key it found, a
 * key given again or a node's rotated token is told at once, another key
 * in the same slot is never taken for it, and the admin's is not kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "orch.h"

typedef struct {
    orch o;
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rz-keycache-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->o.opts.data = f->dir;
    assert_int_equal(auth_open(&f->o), RZ_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    auth_close(&f->o);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static rz_ledger_id account_no(uint64_t n)
{
    return (rz_ledger_id){ 1, n };
}

static void lookup(orch *o, const char *key, int rc, int kind, uint64_t n)
{
    principal p;
    assert_int_equal(auth_lookup(o, key, &p), rc);
    assert_int_equal(p.kind, kind);
    if (rc == RZ_OK && kind == P_CLIENT)
        assert_true(p.account.hi == 1 && p.account.lo == n);
    if (rc == RZ_OK && kind == P_NODE)
        assert_int_equal(p.node, n);
}

static void test_a_found_key_is_kept_until_keys_change(void **state)
{
    orch *o = &((fixture *)*state)->o;
    const char *key = "rzk_keycache-one";
    assert_int_equal(auth_put_key(o, key, &(principal){ P_CLIENT, account_no(1), 0 }), RZ_OK);
    lookup(o, key, RZ_OK, P_CLIENT, 1);
    /* Written behind the orchestrator's back: still the kept answer (what
     * shows that a request reads no store). */
    assert_int_equal(rz_auth_key_put(o->auth, key, &(principal){ P_CLIENT, account_no(2), 0 }),
                     RZ_OK);
    lookup(o, key, RZ_OK, P_CLIENT, 1);
    /* Given again through the orchestrator: told at once. */
    assert_int_equal(auth_put_key(o, key, &(principal){ P_CLIENT, account_no(3), 0 }), RZ_OK);
    lookup(o, key, RZ_OK, P_CLIENT, 3);
    lookup(o, "rzk_keycache-unknown", RZ_EAUTH, 0, 0);
}

static void test_a_rotated_token_is_refused_at_once(void **state)
{
    orch *o = &((fixture *)*state)->o;
    unsigned char ed[32];
    memset(ed, 7, sizeof ed);
    const char *x = "1111111111111111111111111111111111111111111111111111111111111111";
    assert_int_equal(auth_bind_node(o, ed, 5, x, "rzn_first-token", account_no(9)), RZ_OK);
    for (int i = 0; i < 3; i++)
        lookup(o, "rzn_first-token", RZ_OK, P_NODE, 5);
    assert_int_equal(auth_bind_node(o, ed, 5, x, "rzn_second-token", account_no(9)), RZ_OK);
    lookup(o, "rzn_first-token", RZ_EAUTH, 0, 0);
    lookup(o, "rzn_second-token", RZ_OK, P_NODE, 5);
}

/* The slot a key takes, as keycache.c finds it. */
static unsigned slot_of(orch *o, const char *key)
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key),
                       o->keys.salt, sizeof o->keys.salt);
    return h[0] % ORCH_KEY_SLOTS;
}

static void test_keys_sharing_a_slot_are_told_apart(void **state)
{
    orch *o = &((fixture *)*state)->o;
    const char *key = "rzk_keycache-slot";
    assert_int_equal(auth_put_key(o, key, &(principal){ P_CLIENT, account_no(4), 0 }), RZ_OK);
    lookup(o, key, RZ_OK, P_CLIENT, 4);
    char other[64], stranger[64];
    int n = 0, m = 0;
    do
        snprintf(other, sizeof other, "rzk_keycache-other-%d", n++);
    while (slot_of(o, other) != slot_of(o, key));
    do
        snprintf(stranger, sizeof stranger, "rzk_keycache-stranger-%d", m++);
    while (slot_of(o, stranger) != slot_of(o, key));
    /* A wrong key in the slot of a kept one: refused, the kept one kept. */
    lookup(o, stranger, RZ_EAUTH, 0, 0);
    lookup(o, key, RZ_OK, P_CLIENT, 4);
    assert_int_equal(auth_put_key(o, other, &(principal){ P_CLIENT, account_no(6), 0 }), RZ_OK);
    for (int i = 0; i < 2; i++) {
        lookup(o, other, RZ_OK, P_CLIENT, 6);
        lookup(o, key, RZ_OK, P_CLIENT, 4);
    }
}

static void test_the_admin_key_is_not_kept(void **state)
{
    orch *o = &((fixture *)*state)->o;
    const char *admin = "an-admin-key-of-thirty-two-bytes-or-more";
    assert_int_equal(rz_auth_admin_set(o->auth, admin), RZ_OK);
    lookup(o, admin, RZ_OK, P_ADMIN, 0);
    for (size_t i = 0; i < ORCH_KEY_SLOTS; i++)
        assert_false(o->keys.slot[i].used);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_found_key_is_kept_until_keys_change,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_rotated_token_is_refused_at_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_sharing_a_slot_are_told_apart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_admin_key_is_not_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
