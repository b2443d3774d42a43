/* What test_match.c and test_llm_price.c share: a node's capabilities and
 * a job's requirements from JSON (one that does not parse fails the test,
 * naming it and why) and a matcher over a list of nodes. */
#ifndef RHIZOS_TEST_MATCH_FIXTURE_H
#define RHIZOS_TEST_MATCH_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "rhizos/rhizos.h"

static inline rz_caps *node(const char *json)
{
    rz_caps *c = NULL;
    if (rz_caps_parse(&c, json, strlen(json)) != RZ_OK)
        fail_msg("node %s: %s", json, rz_error_last()->message);
    return c;
}

static inline rz_reqs *job(const char *json)
{
    rz_reqs *r = NULL;
    if (rz_reqs_parse(&r, json, strlen(json)) != RZ_OK)
        fail_msg("job %s: %s", json, rz_error_last()->message);
    return r;
}

/* A matcher of policy `p` with the `n` nodes (capabilities JSON) added. */
static inline rz_matcher *matcher_of(rz_policy p, const char *const *nodes, size_t n)
{
    rz_matcher *m = NULL;
    assert_int_equal(rz_matcher_new(&m, p), RZ_OK);
    for (size_t i = 0; i < n; i++) {
        rz_caps *c = node(nodes[i]);
        assert_int_equal(rz_matcher_add(m, c, NULL), RZ_OK);
        rz_caps_free(c);
    }
    return m;
}

#endif
