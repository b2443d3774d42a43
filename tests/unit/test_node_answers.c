/* Which orchestrator answers end a node's call and which pass
 * (server/node/wire.c node_status_passes, outbox.c outbox_final): a
 * result answered 429 (the key's request rate) was once dropped as
 * refused for good, and its job ran again 18 s later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "agent.h"

static void test_passing_answers_are_tried_again(void **state)
{
    (void)state;
    assert_true(node_status_passes(RZ_ECONNECT, 0));
    assert_true(node_status_passes(RZ_EINTERNAL, 500));
    assert_true(node_status_passes(RZ_EINTERNAL, 503));
    assert_true(node_status_passes(RZ_EDENIED, 429));
    assert_false(outbox_final(RZ_ECONNECT, 0));
    assert_false(outbox_final(RZ_EINTERNAL, 503));
    assert_false(outbox_final(RZ_EDENIED, 429));
}

static void test_final_answers_end_the_call(void **state)
{
    (void)state;
    assert_false(node_status_passes(RZ_OK, 200));
    assert_false(node_status_passes(RZ_ENOENT, 404));
    assert_false(node_status_passes(RZ_ESTATE, 409));
    assert_false(node_status_passes(RZ_EDENIED, 403));
    assert_false(node_status_passes(RZ_ENOMEM, 0));   /* ours, not the server's */
    assert_true(outbox_final(RZ_OK, 200));
    assert_true(outbox_final(RZ_ENOENT, 404));
    assert_true(outbox_final(RZ_ESTATE, 409));
    assert_true(outbox_final(RZ_EINVALID, 422));
    assert_false(outbox_final(RZ_ENOMEM, 0));   /* kept for the next try */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passing_answers_are_tried_again),
        cmocka_unit_test(test_final_answers_end_the_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
