/* llm prices per 1,000 tokens or per second (docs/llm.md "Money"): the
 * capabilities that set them, the job's bounds ("tokens", "seconds"), the
 * most a job may cost on each node (what matching and the hold compare)
 * and what it is charged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/internal.h"
#include "match/match_impl.h"
#include "rhizos/engine.h"
#include "rhizos/rhizos.h"
#include "helpers.h"
#include "engine_fixture.h"
#include "match_fixture.h"

/* A node priced per 1,000 tokens (one model per second of its own), one
 * per second (one model per 1,000 tokens of its own). */
#define TOKEN_NODE \
    "{\"id\":\"tok\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,\"adapters\":[\"llm\"]," \
    "\"llm\":{\"price_1k_tokens_micros\":2000,\"models\":[{\"name\":\"m\"}," \
    "{\"name\":\"fast\",\"price_second_micros\":3}]}}"
#define SECOND_NODE \
    "{\"id\":\"sec\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,\"adapters\":[\"llm\"]," \
    "\"llm\":{\"price_second_micros\":40,\"models\":[{\"name\":\"m\"}," \
    "{\"name\":\"fast\",\"price_1k_tokens_micros\":500}]}}"

static const char *job_of(const char *model, unsigned tokens, int seconds)
{
    static char buf[256];
    if (seconds < 0)
        snprintf(buf, sizeof buf, "{\"adapter\":\"llm\",\"llm\":{\"model\":\"%s\","
                 "\"tokens\":%u}}", model, tokens);
    else
        snprintf(buf, sizeof buf, "{\"adapter\":\"llm\",\"llm\":{\"model\":\"%s\","
                 "\"tokens\":%u,\"seconds\":%d}}", model, tokens, seconds);
    return buf;
}

/* The most a job may cost: tokens at a price per 1,000 (rounded up), its
 * seconds at a price per second; a model's own price, in either unit,
 * over the node's; no "seconds" is RZ_LLM_DEFAULT_SECONDS. */
static void test_most_per_unit(void **state)
{
    (void)state;
    rz_caps *tok = node(TOKEN_NODE), *sec = node(SECOND_NODE);
    rz_reqs *r = job(job_of("m", 1001, 30));
    assert_int_equal(rz_match_cost(tok, r), 2002);        /* 1001 x 2000 / 1000 */
    assert_int_equal(rz_match_cost(sec, r), 1200);        /* 30 s x 40 */
    rz_reqs_free(r);
    r = job(job_of("fast", 1001, 30));
    assert_int_equal(rz_match_cost(tok, r), 90);          /* its own: 30 s x 3 */
    assert_int_equal(rz_match_cost(sec, r), 501);         /* its own: ceil(500.5) */
    rz_reqs_free(r);
    r = job(job_of("m", 10, -1));
    assert_int_equal(rz_match_cost(sec, r), 40 * RZ_LLM_DEFAULT_SECONDS);
    assert_int_equal(rz_match_cost(tok, r), 20);
    rz_reqs_free(r);
    /* through JSON and back, the units are kept */
    char *back = NULL;
    assert_int_equal(rz_caps_to_json(sec, 0, &back), RZ_OK);
    rz_caps *again = node(back);
    r = job(job_of("fast", 1001, 30));
    assert_int_equal(rz_match_cost(again, r), 501);
    rz_reqs_free(r);
    r = job(job_of("m", 1001, 30));
    assert_int_equal(rz_match_cost(again, r), 1200);
    rz_reqs_free(r);
    rz_free(back);
    rz_caps_free(again);
    rz_caps_free(tok);
    rz_caps_free(sec);
}

/* What a run is charged: per second, its run time (ms, rounded up)
 * bounded by the job's seconds, whatever tokens it counted; per token,
 * its tokens bounded by the job's, whatever its run time. */
static void test_charge(void **state)
{
    (void)state;
    rz_caps *tok = node(TOKEN_NODE), *sec = node(SECOND_NODE);
    rz_reqs *r = job(job_of("m", 100, 30));
    assert_int_equal(rz__match_llm_cost(sec, r, 99, 1234), 50);      /* ceil(49.36) */
    assert_int_equal(rz__match_llm_cost(sec, r, 0, 1000), 40);
    assert_int_equal(rz__match_llm_cost(sec, r, 5, 0), 0);
    assert_int_equal(rz__match_llm_cost(sec, r, 5, 3600000), 1200);  /* 30 s at most */
    assert_int_equal(rz__match_llm_cost(tok, r, 14, 999999), 28);
    assert_int_equal(rz__match_llm_cost(tok, r, 1000, 1), 200);       /* 100 at most */
    /* never more than the most matching saw */
    assert_true(rz__match_llm_cost(sec, r, 0, UINT64_MAX) <= rz_match_cost(sec, r));
    assert_true(rz__match_llm_cost(tok, r, UINT64_MAX, 0) <= rz_match_cost(tok, r));
    rz_reqs_free(r);
    r = job(job_of("fast", 100, 30));
    assert_int_equal(rz__match_llm_cost(tok, r, 100, 2001), 7);       /* 3/s: ceil(6.003) */
    assert_int_equal(rz__match_llm_cost(sec, r, 100, 2001), 50);      /* 500 per 1,000 */
    rz_reqs_free(r);
    rz_caps_free(tok);
    rz_caps_free(sec);
}

/* The cheapest policy compares nodes of both units by the job's most on
 * each: a short bound favours the node priced per second, a long one the
 * node priced per token; a cost limit applies to the same figure. */
static void test_cheapest_across_units(void **state)
{
    (void)state;
    const char *const nodes[] = { TOKEN_NODE, SECOND_NODE };
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, nodes, 2);
    static const struct {
        unsigned tokens;
        int seconds;
        const char *node;
        uint64_t cost;
    } cases[] = {
        { 1000, 10, "sec", 400 },    /* 2000 per token, 400 per second */
        { 1000, 60, "tok", 2000 },   /* 2000 per token, 2400 per second */
        { 100, 5, "tok", 200 },
        { 100, 4, "sec", 160 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rz_reqs *r = job(job_of("m", cases[i].tokens, cases[i].seconds));
        rz_placement p;
        assert_int_equal(rz_matcher_place(m, r, &p), RZ_OK);
        assert_string_equal(p.node_id, cases[i].node);
        assert_int_equal(p.cost_micros, cases[i].cost);
        assert_int_equal(rz_matcher_release(m, p.ticket), RZ_OK);
        rz_reqs_free(r);
    }
    /* a limit under both nodes' most: no node, said so */
    const char *lim = "{\"adapter\":\"llm\",\"max_cost_micros\":399,"
                      "\"llm\":{\"model\":\"m\",\"tokens\":1000,\"seconds\":10}}";
    rz_reqs *r = job(lim);
    rz_placement p;
    assert_int_equal(rz_matcher_place(m, r, &p), RZ_ENOENT);
    char *why = NULL;
    assert_int_equal(rz_matcher_explain(m, r, &why), RZ_OK);
    assert_non_null(strstr(why, "costs at least 400 micros"));
    rz_free(why);
    rz_reqs_free(r);
    rz_matcher_free(m);
}

/* Hostile prices and bounds are refused, with nothing made. */
static void test_hostile(void **state)
{
    (void)state;
    static const char *const bad_nodes[] = {
        "{\"llm\":{\"price_1k_tokens_micros\":1,\"price_second_micros\":1}}",
        "{\"llm\":{\"price_1k_tokens_micros\":0,\"price_second_micros\":0}}",
        "{\"llm\":{\"price_second_micros\":-1}}",
        "{\"llm\":{\"price_second_micros\":1.5}}",
        "{\"llm\":{\"price_second_micros\":\"9\"}}",
        "{\"llm\":{\"price_second_micros\":9007199254740994}}",
        "{\"llm\":{\"price_second_micros\":1e300}}",
        "{\"llm\":{\"models\":[{\"name\":\"a\",\"price_second_micros\":-2}]}}",
        "{\"llm\":{\"models\":[{\"name\":\"a\",\"price_second_micros\":true}]}}",
        ("{\"llm\":{\"models\":[{\"name\":\"a\",\"price_second_micros\":2,"
         "\"price_1k_tokens_micros\":2}]}}"),
        "{\"llm\":{\"price_second_micros\":1,\"price_second_cents\":1}}",
    };
    for (size_t i = 0; i < sizeof bad_nodes / sizeof *bad_nodes; i++) {
        rz_caps *c = NULL;
        assert_int_equal(rz_caps_parse(&c, bad_nodes[i], strlen(bad_nodes[i])), RZ_EINVALID);
        assert_null(c);
    }
    static const char *const bad_jobs[] = {
        "{\"llm\":{\"model\":\"m\",\"tokens\":5,\"seconds\":0}}",
        "{\"llm\":{\"model\":\"m\",\"tokens\":5,\"seconds\":-1}}",
        "{\"llm\":{\"model\":\"m\",\"tokens\":5,\"seconds\":86401}}",
        "{\"llm\":{\"model\":\"m\",\"tokens\":5,\"seconds\":2.5}}",
        "{\"llm\":{\"model\":\"m\",\"tokens\":5,\"seconds\":\"9\"}}",
    };
    for (size_t i = 0; i < sizeof bad_jobs / sizeof *bad_jobs; i++) {
        rz_reqs *q = NULL;
        assert_int_equal(rz_reqs_parse(&q, bad_jobs[i], strlen(bad_jobs[i])), RZ_EINVALID);
        assert_null(q);
    }
    /* the largest of each is taken: no overflow in the most */
    rz_caps *c = node("{\"adapters\":[\"llm\"],\"llm\":{\"price_second_micros\":"
                      "9007199254740992,\"models\":[{\"name\":\"m\"}]}}");
    rz_reqs *r = job(job_of("m", 5, 86400));
    assert_int_equal(rz_match_cost(c, r), UINT64_MAX);
    assert_int_equal(rz__match_llm_cost(c, r, 0, UINT64_MAX), UINT64_MAX);
    rz_reqs_free(r);
    rz_caps_free(c);
}

/* An engine with a node priced per second (40 micros) and one per 1,000
 * tokens (2000), both serving "m"; the client holds 100,000 micros. */
#define ENGINE_SEC "{\"cpu\":{\"cores\":4},\"memory_mb\":8192,\"adapters\":[\"llm\"]," \
    "\"max_concurrent_jobs\":4,\"llm\":{\"price_second_micros\":40,\"models\":[{\"name\":\"m\"}]}}"
#define ENGINE_TOK "{\"cpu\":{\"cores\":4},\"memory_mb\":8192,\"adapters\":[\"llm\"]," \
    "\"max_concurrent_jobs\":4,\"llm\":{\"price_1k_tokens_micros\":2000,\"models\":[{\"name\":\"m\"}]}}"

static uint64_t llm_submit(efx *f, unsigned tokens, unsigned seconds, uint64_t hold,
                           uint64_t now)
{
    char reqs[160];
    snprintf(reqs, sizeof reqs, "{\"adapter\":\"llm\",\"llm\":{\"model\":\"m\","
             "\"tokens\":%u,\"seconds\":%u}}", tokens, seconds);
    rz_engine_job_spec s = RZ_ENGINE_JOB_SPEC_INIT;
    s.client = f->client;
    s.requirements_json = reqs;
    s.request_json = "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":10}";
    s.module_id = "llm";
    s.module_version = "";
    s.exec_json = "{\"adapter\":\"llm\",\"model\":\"m\"}";
    s.max_cost_micros = hold;
    uint64_t id = 0;
    assert_int_equal(rz_engine_submit(f->e, &s, now, &id), RZ_OK);
    return id;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint64_t cost_of(efx *f, uint64_t job)
{
    rz_engine_job_info ji;
    assert_int_equal(rz_engine_job_get(f->e, job, &ji), RZ_OK);
    assert_int_equal(ji.state, RZ_JOB_SUCCEEDED);
    return ji.cost_micros;
}

/* Through the engine: the node priced per second is paid the run time the
 * engine saw (the node's report bounded by its clock), at most the job's
 * seconds and the hold, with the fee; the one priced per token its tokens,
 * whatever the run time; nothing is held after, and the ledger checks. */
static void test_engine_charge(void **state)
{
    (void)state;
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    efx *f = efx_new("llm-price", NULL, 0, &o, 100000);
    uint64_t sec = efx_node_add(f, ENGINE_SEC, 0);
    rz_engine_assignment a;
    /* most: 30 s x 40 = 1200 here, 100 tokens x 2 = 200 there: the per-
     * second node alone first, so it gets it */
    uint64_t j1 = llm_submit(f, 100, 30, 5000, 1);
    assert_int_equal(rz_engine_poll(f->e, sec, 1000, &a), RZ_OK);
    assert_int_equal(a.job, j1);
    /* the node says 9 s and 50 tokens; the engine saw 2.5 s */
    assert_int_equal(node_report(f->e, sec, j1, 1, "{\"tokens_in\":20,\"tokens_out\":30}",
                                 NULL, 9000, 3500), RZ_OK);
    assert_int_equal(cost_of(f, j1), 100);   /* 2500 ms x 40 / 1000 */
    assert_int_equal(efx_available(f, f->client), 100000 - 100);
    assert_int_equal(efx_available(f, rz_engine_node_account(sec)), 95);
    assert_int_equal(efx_available(f, RZ_LEDGER_PLATFORM_ID), 5);
    /* a run past its seconds: 30 s are paid */
    uint64_t j2 = llm_submit(f, 100, 30, 5000, 4000);
    assert_int_equal(rz_engine_poll(f->e, sec, 4000, &a), RZ_OK);
    assert_int_equal(node_report(f->e, sec, j2, 1, "{}", NULL, 100000, 104000), RZ_OK);
    assert_int_equal(cost_of(f, j2), 1200);
    /* a hold under the most is never placed there; one over it, with a
     * node priced per token beside it that costs less at most: there */
    uint64_t j3 = llm_submit(f, 100, 30, 1199, 105000);
    assert_int_equal(rz_engine_poll(f->e, sec, 105001, &a), RZ_ENOENT);
    uint64_t tok = efx_node_add(f, ENGINE_TOK, 105002);
    assert_int_equal(rz_engine_poll(f->e, tok, 105003, &a), RZ_OK);
    assert_int_equal(a.job, j3);
    assert_int_equal(node_report(f->e, tok, j3, 1, "{\"tokens_in\":20,\"tokens_out\":30}",
                                 NULL, 60000, 165003), RZ_OK);
    assert_int_equal(cost_of(f, j3), 100);   /* 50 tokens x 2000 / 1000 */
    uint64_t paid = 100 + 1200 + 100;
    assert_int_equal(efx_available(f, f->client), 100000 - paid);
    assert_int_equal(efx_available(f, rz_engine_node_account(sec)), 95 + 1140);
    assert_int_equal(efx_available(f, rz_engine_node_account(tok)), 95);
    assert_int_equal(efx_available(f, RZ_LEDGER_PLATFORM_ID), 5 + 60 + 5);
    efx_check(f);
    /* the reference cost (a flow step's hold) stays its tokens at the
     * reference price per 1,000, whatever the seconds */
    uint64_t ref = 0;
    assert_int_equal(rz_engine_reference_cost(f->e, "{\"adapter\":\"llm\",\"llm\":"
                                              "{\"model\":\"m\",\"tokens\":240,"
                                              "\"seconds\":7}}", &ref), RZ_OK);
    assert_int_equal(ref, ceil_div(240 * RZ_ENGINE_DEFAULT_REF_LLM_1K_TOKENS_MICROS, 1000));
    efx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_most_per_unit),
        cmocka_unit_test(test_charge),
        cmocka_unit_test(test_cheapest_across_units),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_engine_charge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
