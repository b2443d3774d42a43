/* Requirements, cost, policies, reasons, and property tests of the matcher
 * against a naive model over random nodes and jobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/internal.h"
#include "rhizos/rhizos.h"
#include "match_fixture.h"

/* The id of the node `j` lands on, or the reason as "!reason". */
static char last[1024];
static const char *place(rz_matcher *m, const char *j, uint64_t *ticket)
{
    rz_reqs *r = job(j);
    rz_placement p;
    int rc = rz_matcher_place(m, r, &p);
    char *why = NULL;
    if (rc == RZ_OK) {
        snprintf(last, sizeof last, "%s", p.node_id);
    } else {
        assert_int_equal(rc, RZ_ENOENT);
        assert_true(strstr(rz_error_last()->message, "requirements") != NULL);
        assert_int_equal(rz_matcher_explain(m, r, &why), RZ_OK);
        snprintf(last, sizeof last, "!%s", why);
        rz_free(why);
    }
    if (ticket)
        *ticket = rc == RZ_OK ? p.ticket : 0;
    rz_reqs_free(r);
    return last;
}

static void requirement_shapes(void **state)
{
    (void)state;
    rz_reqs *r = job("{\"id\":\"j1\",\"requirements\":{\"adapter\":\"docker\",\"cpu_cores\":4,"
                     "\"cpu_features\":[\"avx2\",\"sse4.2\",\"avx2\"],\"memory_mb\":8192,"
                     "\"gpu\":{\"count\":2,\"vram_mb\":24576,\"vendor\":\"nvidia\","
                     "\"min_compute_capability\":\"8.6\"},\"storage_gb\":20,"
                     "\"labels\":{\"tier\":\"gold\"},\"region\":\"eu\",\"min_reputation\":0.8,"
                     "\"max_cost_micros\":500,\"estimate_seconds\":90.5,\"future\":{\"x\":1}}}");
    const rz_reqs_info *i = rz_reqs_get(r);
    assert_string_equal(i->id, "j1");
    assert_string_equal(i->adapter, "docker");
    assert_int_equal(i->cpu_cores, 4);
    assert_int_equal(i->n_cpu_features, 2);
    assert_int_equal(i->gpu_count, 2);
    assert_int_equal(i->gpu_vram_mb, 24576);
    assert_int_equal(i->gpu_cc_major, 8);
    assert_int_equal(i->gpu_cc_minor, 6);
    assert_string_equal(i->region, "eu");
    assert_int_equal(i->max_cost_micros, 500);
    assert_int_equal(i->estimate_ms, 90500);
    char *json = NULL;
    assert_int_equal(rz_reqs_to_json(r, &json), RZ_OK);
    assert_non_null(strstr(json, "\"future\""));   /* unknown fields kept */
    rz_reqs *back = job(json);
    assert_int_equal(rz_reqs_get(back)->gpu_count, 2);
    assert_int_equal(rz_reqs_get(back)->estimate_ms, 90500);
    rz_free(json);
    rz_reqs_free(back);
    rz_reqs_free(r);

    /* Defaults: one core, any adapter, no cost limit. */
    r = job("{}");
    assert_int_equal(rz_reqs_get(r)->cpu_cores, 1);
    assert_string_equal(rz_reqs_get(r)->adapter, "");
    assert_int_equal(rz_reqs_get(r)->max_cost_micros, UINT64_MAX);
    rz_reqs_free(r);
    /* The handoff's job shape. */
    r = job("{\"requirements\":{\"mcp_adapter\":\"docker\",\"max_cost_micros\":100,"
            "\"currency\":\"USDC\"},\"payload\":{\"type\":\"docker\",\"image\":\"hello-world\"}}");
    assert_string_equal(rz_reqs_get(r)->adapter, "docker");
    assert_int_equal(rz_reqs_get(r)->max_cost_micros, 100);
    rz_reqs_free(r);
    r = job("{\"requirements\":{},\"payload\":{\"type\":\"llm\"}}");
    assert_string_equal(rz_reqs_get(r)->adapter, "llm");
    rz_reqs_free(r);
    /* A module manifest's requirements with its estimate beside them. */
    r = job("{\"requirements\":{\"gpu\":{\"vram_mb\":8000}},\"estimate\":{\"seconds\":30}}");
    assert_int_equal(rz_reqs_get(r)->gpu_count, 1);
    assert_int_equal(rz_reqs_get(r)->estimate_ms, 30000);
    rz_reqs_free(r);
}

static void hostile_requirements(void **state)
{
    (void)state;
    static const struct { const char *json; int rc; const char *ptr; } cases[] = {
        { "{\"cpu_cores\":-1}", RZ_EINVALID, "/cpu_cores" },
        { "{\"cpu_cores\":\"4\"}", RZ_EINVALID, "/cpu_cores" },
        { "{\"requirements\":{\"memory_mb\":1e300}}", RZ_EINVALID, "/requirements/memory_mb" },
        { "{\"requirements\":5}", RZ_EINVALID, "/requirements" },
        { "{\"gpu\":\"one\"}", RZ_EINVALID, "/gpu" },
        { "{\"gpu\":{\"count\":65}}", RZ_EINVALID, "/gpu/count" },
        { "{\"gpu\":{\"min_compute_capability\":[8]}}", RZ_EINVALID,
          "/gpu/min_compute_capability" },
        { "{\"max_cost_micros\":1e300}", RZ_EINVALID, "/max_cost_micros" },
        { "{\"max_cost_micros\":-100}", RZ_EINVALID, "/max_cost_micros" },
        { "{\"estimate_seconds\":\"long\"}", RZ_EINVALID, "/estimate_seconds" },
        { "{\"estimate_seconds\":1e12}", RZ_EINVALID, "/estimate_seconds" },
        { "{\"min_reputation\":2}", RZ_EINVALID, "/min_reputation" },
        { "{\"labels\":{\"a\":{}}}", RZ_EINVALID, "/labels" },
        { "{\"cpu_features\":\"avx2\"}", RZ_EINVALID, "/cpu_features" },
        { "{\"id\":[1]}", RZ_EINVALID, "/id" },
        { "7", RZ_EINVALID, "" },
        { "{", RZ_ESYNTAX, NULL },
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        rz_reqs *r = (rz_reqs *)1;
        int rc = rz_reqs_parse(&r, cases[i].json, strlen(cases[i].json));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): %d %s", i, cases[i].json, rc, rz_error_last()->message);
        assert_null(r);
        if (cases[i].ptr)
            assert_string_equal(rz_error_last()->pointer, cases[i].ptr);
    }
    rz_reqs **list = NULL;
    size_t n = 0;
    const char *bad = "{\"jobs\":[{},{\"requirements\":{\"storage_gb\":true}}]}";
    assert_int_equal(rz_reqs_parse_list(&list, &n, bad, strlen(bad)), RZ_EINVALID);
    assert_string_equal(rz_error_last()->pointer, "/1/requirements/storage_gb");
    assert_int_equal(rz_reqs_parse_list(&list, &n, "{\"x\":1}", 7), RZ_EINVALID);
}

static void cost_formula(void **state)
{
    (void)state;
    rz_caps *c = node("{\"id\":\"n\",\"cpu\":{\"cores\":8},\"memory_mb\":65536,"
                      "\"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":24000}],"
                      "\"prices\":{\"gpu_hour_micros\":100,\"cpu_hour_micros\":3,"
                      "\"memory_gb_hour_micros\":2}}");
    /* 1 h x (1 x 100 + 2 x 3 + 1.5 GB x 2) = 109 micros. */
    rz_reqs *r = job("{\"gpu\":{\"count\":1},\"cpu_cores\":2,\"memory_mb\":1536,"
                     "\"estimate_seconds\":3600}");
    assert_int_equal(rz_match_cost(c, r), 109);
    rz_reqs_free(r);
    /* One second of one core at 3 micros an hour rounds up to a micro. */
    r = job("{\"estimate_seconds\":1}");
    assert_int_equal(rz_match_cost(c, r), 1);
    rz_reqs_free(r);
    r = job("{}");
    assert_int_equal(rz_match_cost(c, r), 0);
    assert_true(rz_match_fits(c, r));
    rz_reqs_free(r);
    /* Absurd but valid prices saturate rather than wrap. */
    rz_caps *rich = node("{\"id\":\"r\",\"cpu\":{\"cores\":1048576},"
                         "\"prices\":{\"cpu_hour_micros\":1099511627776}}");
    r = job("{\"cpu_cores\":1048576,\"estimate_seconds\":999999999}");
    assert_true(rz_match_cost(rich, r) > UINT64_C(1) << 60);
    rz_reqs_free(r);
    rz_caps_free(rich);
    rz_caps_free(c);
}

static const char *const net[] = {
    "{\"id\":\"a100-box\",\"cpu\":{\"cores\":32},\"memory_mb\":262144,"
    "\"storage\":{\"total_gb\":900,\"free_gb\":800},\"gpus\":["
    "{\"vendor\":\"nvidia\",\"vram_mb\":40960,\"compute_capability\":\"8.0\"},"
    "{\"vendor\":\"nvidia\",\"vram_mb\":40960,\"compute_capability\":\"8.0\"}],"
    "\"adapters\":[\"process\",\"docker\"],\"labels\":{\"region\":\"us-east\"},"
    "\"prices\":{\"gpu_hour_micros\":180,\"cpu_hour_micros\":2},\"reputation\":0.95}",
    "{\"id\":\"rtx-4080\",\"cpu\":{\"cores\":16},\"memory_mb\":65536,"
    "\"storage\":{\"total_gb\":900,\"free_gb\":500},\"gpus\":["
    "{\"vendor\":\"nvidia\",\"vram_mb\":16384,\"compute_capability\":\"8.9\"}],"
    "\"labels\":{\"region\":\"eu-west\"},\"benchmark\":{\"cpu_mops\":3000,\"memory_mbps\":1},"
    "\"prices\":{\"gpu_hour_micros\":60,\"cpu_hour_micros\":1},\"reputation\":0.88}",
    "{\"id\":\"cpu-cheap\",\"cpu\":{\"cores\":8,\"features\":[\"avx2\"]},\"memory_mb\":32768,"
    "\"storage\":{\"total_gb\":100,\"free_gb\":50},\"labels\":{\"region\":\"eu-west\"},"
    "\"benchmark\":{\"cpu_mops\":1000,\"memory_mbps\":1},"
    "\"prices\":{\"cpu_hour_micros\":1},\"reputation\":0.7,\"max_concurrent_jobs\":2}",
    "{\"id\":\"cpu-big\",\"cpu\":{\"cores\":64,\"features\":[\"avx2\",\"avx512f\"]},"
    "\"memory_mb\":524288,\"storage\":{\"total_gb\":100,\"free_gb\":90},"
    "\"labels\":{\"region\":\"us-east\",\"tier\":\"gold\"},"
    "\"prices\":{\"cpu_hour_micros\":3},\"reputation\":0.99}",
};

static void policies(void **state)
{
    (void)state;
    const char *cpu = "{\"cpu_cores\":2,\"memory_mb\":1024,\"estimate_seconds\":600}";
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, net, 4);
    /* rtx-4080 and cpu-cheap both charge 1 cent a core: rtx-4080's
     * reputation breaks the tie. */
    assert_string_equal(place(m, cpu, NULL), "rtx-4080");
    rz_matcher_free(m);
    m = matcher_of(RZ_POLICY_REPUTATION, net, 4);
    assert_string_equal(place(m, cpu, NULL), "cpu-big");
    rz_matcher_free(m);
    m = matcher_of(RZ_POLICY_FASTEST, net, 4);
    assert_string_equal(place(m, cpu, NULL), "rtx-4080");   /* best benchmark */
    assert_string_equal(place(m, "{\"gpu\":{\"count\":1}}", NULL), "rtx-4080");   /* cc 8.9 */
    rz_matcher_free(m);
    /* binpack fills the fullest node; spread keeps to the emptiest. */
    m = matcher_of(RZ_POLICY_BINPACK, net, 4);
    assert_string_equal(place(m, "{\"cpu_cores\":4}", NULL), "rtx-4080");
    assert_string_equal(place(m, "{\"cpu_cores\":1}", NULL), "rtx-4080");
    rz_matcher_free(m);
    m = matcher_of(RZ_POLICY_SPREAD, net, 4);
    assert_string_equal(place(m, "{\"cpu_cores\":4}", NULL), "rtx-4080");
    assert_string_equal(place(m, "{\"cpu_cores\":4}", NULL), "cpu-cheap");
    assert_string_equal(place(m, "{\"cpu_cores\":4}", NULL), "a100-box");
    rz_matcher_free(m);
    rz_policy p;
    assert_int_equal(rz_policy_parse("spread", &p), RZ_OK);
    assert_int_equal(p, RZ_POLICY_SPREAD);
    assert_int_equal(rz_policy_parse("random", &p), RZ_EINVAL);
    assert_string_equal(rz_policy_name(RZ_POLICY_BINPACK), "binpack");
    assert_int_equal(rz_matcher_new(&m, (rz_policy)42), RZ_EINVAL);
    assert_null(m);
}

/* A preferred node wins only where the policy's order ties. */
static void preferred_nodes(void **state)
{
    (void)state;
    const char *cpu = "{\"cpu_cores\":2,\"memory_mb\":1024,\"estimate_seconds\":600}";
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, net, 4);
    /* cpu-cheap (index 2) costs what rtx-4080 costs but has a lower
     * reputation: a tie-break that comes before preference. */
    assert_int_equal(rz_matcher_prefer(m, 2, 1), RZ_OK);
    assert_int_equal(rz_matcher_prefer(m, 0, 1), RZ_OK);   /* dearer */
    assert_string_equal(place(m, cpu, NULL), "rtx-4080");
    assert_int_equal(rz_matcher_prefer(m, 4, 1), RZ_ENOENT);
    rz_matcher_free(m);
    static const char *const same[] = {
        "{\"id\":\"s1\",\"cpu\":{\"cores\":4},\"memory_mb\":4096,"
        "\"prices\":{\"cpu_hour_micros\":1},\"max_concurrent_jobs\":2}",
        "{\"id\":\"s2\",\"cpu\":{\"cores\":4},\"memory_mb\":4096,"
        "\"prices\":{\"cpu_hour_micros\":1},\"max_concurrent_jobs\":2}",
        "{\"id\":\"s3\",\"cpu\":{\"cores\":4},\"memory_mb\":4096,"
        "\"prices\":{\"cpu_hour_micros\":1},\"max_concurrent_jobs\":2}",
    };
    const char *one = "{\"cpu_cores\":1}";
    for (rz_policy p = RZ_POLICY_CHEAPEST; p <= RZ_POLICY_SPREAD; p++) {
        m = matcher_of(p, same, 3);
        uint64_t t = 0;
        assert_string_equal(place(m, one, &t), "s1");   /* added first */
        assert_int_equal(rz_matcher_release(m, t), RZ_OK);
        assert_int_equal(rz_matcher_prefer(m, 2, 1), RZ_OK);
        assert_string_equal(place(m, one, &t), "s3");
        assert_int_equal(rz_matcher_release(m, t), RZ_OK);
        assert_int_equal(rz_matcher_prefer(m, 2, 0), RZ_OK);
        assert_string_equal(place(m, one, &t), "s1");
        rz_matcher_free(m);
    }
    /* spread: the emptier node beats a preferred fuller one. */
    m = matcher_of(RZ_POLICY_SPREAD, same, 3);
    assert_string_equal(place(m, one, NULL), "s1");
    assert_int_equal(rz_matcher_prefer(m, 0, 1), RZ_OK);
    assert_string_equal(place(m, one, NULL), "s2");
    /* A preferred node that is full is passed over. */
    m = (rz_matcher_free(m), matcher_of(RZ_POLICY_CHEAPEST, same, 3));
    assert_int_equal(rz_matcher_prefer(m, 1, 1), RZ_OK);
    assert_string_equal(place(m, one, NULL), "s2");
    assert_string_equal(place(m, one, NULL), "s2");
    assert_string_equal(place(m, one, NULL), "s1");
    rz_matcher_free(m);
}

static void constraints_and_reasons(void **state)
{
    (void)state;
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, net, 4);
    assert_string_equal(place(m, "{\"gpu\":{\"vram_mb\":24576}}", NULL), "a100-box");
    assert_string_equal(place(m, "{\"gpu\":{\"vram_mb\":81920}}", NULL),
                        "!needs 81920 MB VRAM; the largest free GPU has 40960 MB");
    assert_string_equal(place(m, "{\"cpu_cores\":128}", NULL),
                        "!needs 128 cores; the most free on one node is 64");
    assert_string_equal(place(m, "{\"memory_mb\":1048576}", NULL),
                        "!needs 1048576 MB memory; the most free on one node is 524288 MB");
    assert_string_equal(place(m, "{\"storage_gb\":900}", NULL),
                        "!needs 900 GB storage; the most free on one node is 800 GB");
    assert_string_equal(place(m, "{\"adapter\":\"llm\"}", NULL),
                        "!no node offers adapter 'llm'");
    assert_string_equal(place(m, "{\"cpu_features\":[\"avx2\",\"sve\"]}", NULL),
                        "!needs CPU feature sve; no node has it");
    assert_string_equal(place(m, "{\"labels\":{\"tier\":\"platinum\"}}", NULL),
                        "!needs label tier=platinum; no node has it");
    assert_string_equal(place(m, "{\"region\":\"ap-south\"}", NULL),
                        "!needs region ap-south; no node is in it");
    assert_string_equal(place(m, "{\"min_reputation\":0.995}", NULL),
                        "!needs reputation 0.99; the best node has 0.99");
    assert_string_equal(place(m, "{\"gpu\":{\"vendor\":\"amd\"}}", NULL),
                        "!needs a GPU from amd; no free GPU is one");
    assert_string_equal(place(m, "{\"gpu\":{\"min_compute_capability\":\"9.0\"}}", NULL),
                        "!needs compute capability 9.0; the highest free GPU has 8.9");
    assert_string_equal(place(m, "{\"gpu\":{\"count\":3}}", NULL),
                        "!needs 3 GPUs meeting its GPU requirements; the most free on one "
                        "node is 1");
    assert_string_equal(place(m, "{\"cpu_cores\":8,\"estimate_seconds\":36000,"
                                 "\"max_cost_micros\":50}", NULL),
                        "!costs at least 80 micros on every node that fits, over the "
                        "maximum of 50");
    /* Each constraint met somewhere, never together. */
    assert_string_equal(place(m, "{\"cpu_features\":[\"avx512f\"],\"region\":\"eu-west\"}", NULL),
                        "!no node meets every requirement at once; the closest, rtx-4080, "
                        "lacks CPU features");
    char *why = NULL;
    rz_reqs *r = job("{\"cpu_cores\":1}");
    assert_int_equal(rz_matcher_explain(m, r, &why), RZ_OK);
    assert_string_equal(why, "");
    rz_free(why);
    rz_reqs_free(r);
    /* Slots: cpu-cheap takes two jobs at most. */
    assert_string_equal(place(m, "{\"labels\":{\"region\":\"eu-west\"},\"cpu_features\":[\"avx2\"]}", NULL), "cpu-cheap");
    assert_string_equal(place(m, "{\"labels\":{\"region\":\"eu-west\"},\"cpu_features\":[\"avx2\"]}", NULL), "cpu-cheap");
    assert_string_equal(place(m, "{\"labels\":{\"region\":\"eu-west\"},\"cpu_features\":[\"avx2\"]}", NULL),
                        "!no node meets every requirement at once; the closest, rtx-4080, "
                        "lacks CPU features");
    rz_matcher_free(m);
    m = matcher_of(RZ_POLICY_CHEAPEST, net, 0);
    assert_string_equal(place(m, "{}", NULL), "!no nodes to place on");
    rz_matcher_free(m);
}

static void reservations(void **state)
{
    (void)state;
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, net, 4);
    uint64_t t1, t2, t3;
    const char *gpu = "{\"gpu\":{\"vram_mb\":20000},\"cpu_cores\":4}";
    assert_string_equal(place(m, gpu, &t1), "a100-box");
    assert_string_equal(place(m, gpu, &t2), "a100-box");
    assert_string_equal(place(m, gpu, &t3),
                        "!needs 20000 MB VRAM; the largest free GPU has 16384 MB");
    assert_string_equal(place(m, "{\"gpu\":{\"count\":1}}", NULL), "rtx-4080");
    assert_string_equal(place(m, gpu, NULL), "!needs 1 GPU; no GPU is free on any node");
    rz_node_usage u;
    assert_int_equal(rz_matcher_usage(m, 0, &u), RZ_OK);
    assert_int_equal(u.gpus_used, 2);
    assert_int_equal(u.cores_used, 8);
    assert_int_equal(u.jobs, 2);
    assert_int_equal(rz_matcher_release(m, t1), RZ_OK);
    assert_int_equal(rz_matcher_release(m, t1), RZ_ENOENT);   /* twice */
    assert_int_equal(rz_matcher_release(m, 0), RZ_ENOENT);
    assert_int_equal(rz_matcher_release(m, UINT64_MAX), RZ_ENOENT);
    assert_string_equal(place(m, gpu, &t3), "a100-box");
    assert_int_equal(rz_matcher_release(m, t1), RZ_ENOENT);   /* stale: slot reused */
    /* A removed node takes nothing new but its jobs still end. */
    assert_int_equal(rz_matcher_remove(m, "a100-box"), RZ_OK);
    assert_int_equal(rz_matcher_remove(m, "nope"), RZ_ENOENT);
    assert_int_equal(rz_matcher_release(m, t2), RZ_OK);
    assert_string_equal(place(m, "{\"gpu\":{\"vram_mb\":1000}}", NULL),
                        "!needs 1 GPU; no GPU is free on any node");
    assert_int_equal(rz_matcher_release(m, t3), RZ_OK);
    assert_int_equal(rz_matcher_usage(m, 0, &u), RZ_OK);
    assert_int_equal(u.jobs, 0);
    /* Ids are unique. */
    rz_caps *dup = node(net[1]);
    assert_int_equal(rz_matcher_add(m, dup, NULL), RZ_EDUPLICATE);
    rz_caps_free(dup);
    assert_int_equal(rz_matcher_count(m), 4);
    assert_string_equal(rz_matcher_node_id(m, 3), "cpu-big");
    assert_null(rz_matcher_node_id(m, 4));
    rz_matcher_free(m);
    rz_matcher_free(NULL);
}

static void like_jobs_are_matched_as_one_group(void **state)
{
    (void)state;
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, net, 4);
    rz_reqs *r = job("{\"cpu_cores\":1,\"memory_mb\":512}");
    for (int i = 0; i < 100; i++) {
        rz_placement p;
        assert_int_equal(rz_matcher_place(m, r, &p), RZ_OK);
    }
    rz_matcher_stats s;
    rz_matcher_stats_get(m, &s);
    assert_int_equal(s.cache_builds, 1);
    assert_int_equal(s.cache_hits, 99);
    assert_int_equal(s.groups, 1);
    assert_int_equal(s.placements, 100);
    /* 16 + 8 (2 slots) + 32 + 64 cores: 100 one-core jobs fill by price. */
    rz_node_usage u;
    assert_int_equal(rz_matcher_usage(m, 1, &u), RZ_OK);
    assert_int_equal(u.cores_used, 16);
    assert_int_equal(rz_matcher_usage(m, 2, &u), RZ_OK);
    assert_int_equal(u.jobs, 2);
    rz_reqs_free(r);
    rz_matcher_free(m);
}

/* ---- Property tests against a naive model ---- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct model {
    uint32_t cores, gpus, jobs, maxj;
    uint64_t mem, disk;
} model;

#define NN 60
#define NJ 1500

static const char *const vendors[] = { "nvidia", "amd" };
static const char *const regions[] = { "eu", "us", "ap" };

/* Nodes have identical GPUs, so the model knows which are free. */
static rz_caps *random_node(int i)
{
    char buf[1024];
    int ng = rnd(4) == 0 ? 0 : (int)rnd(9);
    snprintf(buf, sizeof buf,
             "{\"id\":\"n%d\",\"cpu\":{\"cores\":%u,\"features\":[%s]},\"memory_mb\":%u,"
             "\"storage\":{\"total_gb\":1000,\"free_gb\":%u},\"gpus\":[",
             i, 1 + rnd(64), rnd(2) ? "\"avx2\"" : "\"neon\"", 1024 * (1 + rnd(256)),
             rnd(500));
    size_t len = strlen(buf);
    uint32_t vram = 8192 * (1 + rnd(10)), cc = rnd(4);
    const char *vendor = vendors[rnd(2)];
    for (int g = 0; g < ng; g++)
        len += (size_t)snprintf(buf + len, sizeof buf - len,
                                "%s{\"vendor\":\"%s\",\"vram_mb\":%u,\"compute_capability\":\"%u.%u\"}",
                                g ? "," : "", vendor, vram, 7 + cc, cc * 3 % 10);
    snprintf(buf + len, sizeof buf - len,
             "],\"adapters\":[\"process\"%s],\"labels\":{\"region\":\"%s\"},"
             "\"prices\":{\"gpu_hour_micros\":%u,\"cpu_hour_micros\":%u,\"memory_gb_hour_micros\":%u},"
             "\"reputation\":%.2f,\"max_concurrent_jobs\":%u}",
             rnd(2) ? ",\"docker\"" : "", regions[rnd(3)], rnd(300), rnd(10), rnd(3),
             rnd(101) / 100.0, rnd(3) ? 0 : 1 + rnd(6));
    return node(buf);
}

static rz_reqs *random_job(int i)
{
    char buf[512];
    /* A few shapes recur (groups), the rest vary. */
    uint32_t shape = rnd(8);
    char gpu[160] = "";
    if (shape >= 4)
        snprintf(gpu, sizeof gpu, ",\"gpu\":{\"count\":%u,\"vram_mb\":%u%s%s}", 1 + rnd(3),
                 8192 * rnd(8), rnd(3) ? "" : ",\"vendor\":\"nvidia\"",
                 rnd(3) ? "" : ",\"min_compute_capability\":\"8.0\"");
    snprintf(buf, sizeof buf,
             "{\"id\":\"j%d\",\"requirements\":{\"cpu_cores\":%u,\"memory_mb\":%u,"
             "\"storage_gb\":%u%s%s%s,\"estimate_seconds\":%u%s}}",
             i, 1 + rnd(shape < 2 ? 2 : 16), 512 * rnd(shape < 2 ? 2 : 64), rnd(20), gpu,
             rnd(4) ? "" : ",\"adapter\":\"docker\"",
             rnd(5) ? "" : ",\"cpu_features\":[\"avx2\"]", 60 * rnd(120),
             rnd(6) ? "" : ",\"max_cost_micros\":200");
    return job(buf);
}

/* Could node k take job r now, by the model's bookkeeping? */
static bool model_fits(rz_caps *c, const model *md, rz_reqs *r)
{
    const rz_caps_info *ci = rz_caps_get(c);
    const rz_reqs_info *q = rz_reqs_get(r);
    if (!rz_match_fits(c, r))
        return false;
    uint32_t cores = ci->cores ? ci->cores : ci->threads;
    return md->cores + q->cpu_cores <= cores && md->mem + q->memory_mb <= ci->memory_mb &&
           md->disk + q->storage_gb <= ci->storage_free_gb &&
           md->gpus + q->gpu_count <= ci->n_gpus && (!md->maxj || md->jobs < md->maxj);
}

static void check_usage(rz_matcher *m, rz_caps **nodes, const model *md)
{
    for (size_t k = 0; k < NN; k++) {
        rz_node_usage u;
        assert_int_equal(rz_matcher_usage(m, k, &u), RZ_OK);
        const rz_caps_info *ci = rz_caps_get(nodes[k]);
        assert_int_equal(u.cores_used, md[k].cores);
        assert_int_equal(u.memory_used_mb, md[k].mem);
        assert_int_equal(u.storage_used_gb, md[k].disk);
        assert_int_equal(u.gpus_used, md[k].gpus);
        assert_int_equal(u.jobs, md[k].jobs);
        assert_true(u.cores_used <= u.cores_total && u.memory_used_mb <= ci->memory_mb);
        assert_true(u.gpus_used <= ci->n_gpus && u.storage_used_gb <= ci->storage_free_gb);
        assert_true(!ci->max_concurrent_jobs || u.jobs <= ci->max_concurrent_jobs);
    }
}

static void property_run(rz_policy policy, uint64_t seed)
{
    rng_state = seed;
    rz_caps *nodes[NN];
    model md[NN] = {0};
    rz_matcher *m;
    assert_int_equal(rz_matcher_new(&m, policy), RZ_OK);
    for (int k = 0; k < NN; k++) {
        nodes[k] = random_node(k);
        md[k].maxj = rz_caps_get(nodes[k])->max_concurrent_jobs;
        assert_int_equal(rz_matcher_add(m, nodes[k], NULL), RZ_OK);
    }
    static uint64_t tickets[NJ];
    static rz_reqs *jobs[NJ];
    static uint32_t where[NJ];
    size_t live = 0, placed = 0;
    for (int i = 0; i < NJ; i++) {
        jobs[i] = random_job(i);
        rz_placement p;
        int rc = rz_matcher_place(m, jobs[i], &p);
        bool any = false;
        for (int k = 0; k < NN; k++)
            any |= model_fits(nodes[k], &md[k], jobs[i]);
        assert_int_equal(rc == RZ_OK, any);   /* placed iff some node fits */
        tickets[i] = 0;
        if (rc == RZ_OK) {
            uint32_t k = (uint32_t)p.node;
            assert_true(model_fits(nodes[k], &md[k], jobs[i]));   /* hard constraints */
            assert_int_equal(p.cost_micros, rz_match_cost(nodes[k], jobs[i]));
            if (policy == RZ_POLICY_CHEAPEST)
                for (int o = 0; o < NN; o++)
                    if (model_fits(nodes[o], &md[o], jobs[i]))
                        assert_true(rz_match_cost(nodes[o], jobs[i]) >= p.cost_micros);
            const rz_reqs_info *q = rz_reqs_get(jobs[i]);
            md[k].cores += q->cpu_cores;
            md[k].mem += q->memory_mb;
            md[k].disk += q->storage_gb;
            md[k].gpus += q->gpu_count;
            md[k].jobs++;
            tickets[i] = p.ticket;
            where[i] = k;
            live++;
            placed++;
        } else {
            assert_int_equal(rc, RZ_ENOENT);
            char *why = NULL;
            assert_int_equal(rz_matcher_explain(m, jobs[i], &why), RZ_OK);
            assert_true(strlen(why) > 10);   /* a reason, never "" */
            rz_free(why);
        }
        /* Nodes are preferred at random: placements stay valid (and the
         * cheapest, checked above). */
        if (rnd(4) == 0)
            assert_int_equal(rz_matcher_prefer(m, rnd(NN), (int)rnd(2)), RZ_OK);
        /* Jobs end at random. */
        if (live && rnd(3) == 0) {
            int j = (int)rnd((uint32_t)i + 1);
            if (tickets[j]) {
                const rz_reqs_info *q = rz_reqs_get(jobs[j]);
                assert_int_equal(rz_matcher_release(m, tickets[j]), RZ_OK);
                model *d = &md[where[j]];
                d->cores -= q->cpu_cores;
                d->mem -= q->memory_mb;
                d->disk -= q->storage_gb;
                d->gpus -= q->gpu_count;
                d->jobs--;
                tickets[j] = 0;
                live--;
            }
        }
        if (i % 100 == 0)
            check_usage(m, nodes, md);
    }
    check_usage(m, nodes, md);
    assert_true(placed > NJ / 4);   /* the workload is not trivially empty */
    /* Releasing everything restores the initial state exactly. */
    for (int i = 0; i < NJ; i++)
        if (tickets[i])
            assert_int_equal(rz_matcher_release(m, tickets[i]), RZ_OK);
    memset(md, 0, sizeof md);
    for (int k = 0; k < NN; k++)
        md[k].maxj = rz_caps_get(nodes[k])->max_concurrent_jobs;
    check_usage(m, nodes, md);
    /* ... and, preferring none, a fresh matcher with the same nodes places
     * like it. */
    for (int k = 0; k < NN; k++)
        assert_int_equal(rz_matcher_prefer(m, (size_t)k, 0), RZ_OK);
    rz_matcher *fresh;
    assert_int_equal(rz_matcher_new(&fresh, policy), RZ_OK);
    for (int k = 0; k < NN; k++)
        assert_int_equal(rz_matcher_add(fresh, nodes[k], NULL), RZ_OK);
    for (int i = 0; i < 200; i++) {
        rz_placement a, b;
        int ra = rz_matcher_place(m, jobs[i], &a), rb = rz_matcher_place(fresh, jobs[i], &b);
        assert_int_equal(ra, rb);
        if (ra == RZ_OK)
            assert_int_equal(a.node, b.node);
    }
    rz_matcher_free(fresh);
    for (int i = 0; i < NJ; i++)
        rz_reqs_free(jobs[i]);
    for (int k = 0; k < NN; k++)
        rz_caps_free(nodes[k]);
    rz_matcher_free(m);
}

static void properties(void **state)
{
    (void)state;
    for (rz_policy p = RZ_POLICY_CHEAPEST; p <= RZ_POLICY_SPREAD; p++)
        for (uint64_t seed = 1; seed <= 3; seed++)
            property_run(p, seed * 0x9E3779B97F4A7C15u + p);
}

/* A docker job that needs a GPU goes only where the engine runs GPU
 * containers (runtime "nvidia"); a process job's GPU needs no engine. */
static void gpu_containers(void **state)
{
    (void)state;
    rz_matcher *m = NULL;
    assert_int_equal(rz_matcher_new(&m, RZ_POLICY_CHEAPEST), RZ_OK);
    rz_caps *plain = node("{\"id\":\"plain\",\"cpu\":{\"cores\":8},"
        "\"memory_mb\":16384,\"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":8192}],"
        "\"adapters\":[\"process\",\"docker\"],\"runtimes\":[\"docker\"]}");
    assert_int_equal(rz_matcher_add(m, plain, NULL), RZ_OK);
    const char *gpu_docker = "{\"requirements\":{\"adapter\":\"docker\","
                             "\"gpu\":{\"count\":1}}}";
    assert_string_equal(place(m, gpu_docker, NULL),
                        "!needs GPU containers; no node's container engine reports "
                        "an NVIDIA runtime or CDI devices");
    uint64_t t = 0;
    assert_string_equal(place(m, "{\"requirements\":{\"adapter\":\"process\","
                                 "\"gpu\":{\"count\":1}}}", &t), "plain");
    assert_int_equal(rz_matcher_release(m, t), RZ_OK);
    assert_string_equal(place(m, "{\"requirements\":{\"adapter\":\"docker\"}}", &t),
                        "plain");
    assert_int_equal(rz_matcher_release(m, t), RZ_OK);
    rz_reqs *r = job(gpu_docker);
    assert_false(rz_match_fits(plain, r));
    rz_caps *gpu = node("{\"id\":\"gpu\",\"cpu\":{\"cores\":8},"
        "\"memory_mb\":16384,\"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":8192}],"
        "\"adapters\":[\"process\",\"docker\"],\"runtimes\":[\"docker\",\"nvidia\"]}");
    assert_true(rz_match_fits(gpu, r));
    assert_int_equal(rz_matcher_add(m, gpu, NULL), RZ_OK);
    assert_string_equal(place(m, gpu_docker, NULL), "gpu");
    /* No runtimes listed at all (a hand-written catalog): its word. */
    rz_caps *listed = node("{\"id\":\"catalog\",\"cpu\":{\"cores\":8},"
        "\"memory_mb\":16384,\"gpus\":[{\"vendor\":\"nvidia\",\"vram_mb\":8192}],"
        "\"adapters\":[\"process\",\"docker\"]}");
    assert_true(rz_match_fits(listed, r));
    rz_caps_free(listed);
    rz_reqs_free(r);
    rz_caps_free(plain);
    rz_caps_free(gpu);
    rz_matcher_free(m);
}

/* A model's own price (the node's llm_model_prices) wins over the node's. */
static void llm_own_price(const rz_caps *c)
{
    rz_reqs *r = job("{\"adapter\":\"llm\",\"llm\":{\"model\":\"own:3b\",\"tokens\":1001}}");
    assert_int_equal(rz_match_cost(c, r), 201);
    rz_reqs_free(r);
}

/* llm jobs (docs/llm.md): only nodes serving the model, priced per 1,000
 * tokens (rounded up) on the job's "tokens", cheapest first, the cost
 * limit applied on that price; the caps' "llm" kept and checked. */
static void llm_models(void **state)
{
    (void)state;
    static const char *const nodes[] = {
        ("{\"id\":\"dear\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,"
         "\"adapters\":[\"process\",\"llm\"],\"llm\":{\"models\":[{\"name\":\"tiny:1b\","
         "\"size_bytes\":5},{\"name\":\"big:70b\"},{\"name\":\"own:3b\","
         "\"price_1k_tokens_micros\":200}],\"price_1k_tokens_micros\":9000}}"),
        ("{\"id\":\"cheap\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,"
         "\"adapters\":[\"llm\"],\"llm\":{\"models\":[{\"name\":\"tiny:1b\"}],"
         "\"price_1k_tokens_micros\":1000,\"servers\":[]}}"),
        ("{\"id\":\"none\",\"cpu\":{\"cores\":4},\"memory_mb\":8192,"
         "\"adapters\":[\"process\"]}"),
    };
    rz_matcher *m = matcher_of(RZ_POLICY_CHEAPEST, nodes, 3);
    const char *tiny = "{\"adapter\":\"llm\",\"llm\":{\"model\":\"tiny:1b\",\"tokens\":1001}}";
    assert_string_equal(place(m, tiny, NULL), "cheap");
    assert_string_equal(place(m, "{\"adapter\":\"llm\",\"llm\":{\"model\":\"big:70b\","
                                 "\"tokens\":10}}", NULL), "dear");
    assert_string_equal(place(m, "{\"adapter\":\"llm\",\"llm\":{\"model\":\"huge:405b\","
                                 "\"tokens\":10}}", NULL),
                        "!no node serves model 'huge:405b'");
    /* 1001 tokens at 9000 per 1,000: 9009; at 1000: 1001 (among the
     * nodes that serve it) */
    rz_matcher *m2 = matcher_of(RZ_POLICY_CHEAPEST, nodes, 2);
    assert_string_equal(place(m2, "{\"adapter\":\"llm\",\"max_cost_micros\":1000,"
                                  "\"llm\":{\"model\":\"tiny:1b\",\"tokens\":1001}}", NULL),
                        "!costs at least 1001 micros on every node that fits, over the "
                        "maximum of 1000");
    rz_matcher_free(m2);
    rz_caps *dear = node(nodes[0]), *cheap = node(nodes[1]);
    rz_reqs *r = job(tiny);
    assert_int_equal(rz_match_cost(dear, r), 9009);
    assert_int_equal(rz_match_cost(cheap, r), 1001);
    rz_reqs_free(r);
    r = job("{\"adapter\":\"llm\",\"llm\":{\"model\":\"tiny:1b\",\"tokens\":1}}");
    assert_int_equal(rz_match_cost(cheap, r), 1);   /* rounded up */
    rz_reqs_free(r);
    llm_own_price(dear);
    /* the llm object survives a round trip */
    char *back = NULL;
    assert_int_equal(rz_caps_to_json(dear, 0, &back), RZ_OK);
    assert_non_null(strstr(back, "\"price_1k_tokens_micros\":9000"));
    rz_caps *again = node(back);
    r = job(tiny);
    assert_int_equal(rz_match_cost(again, r), 9009);
    assert_true(rz_match_fits(again, r));
    rz_reqs_free(r);
    llm_own_price(again);   /* kept through JSON */
    rz_free(back);
    rz_caps_free(again);
    rz_caps_free(dear);
    rz_caps_free(cheap);
    rz_matcher_free(m);
}

/* Malformed llm capabilities and requirements are refused. */
static void llm_malformed(void **state)
{
    (void)state;
    static const char *const bad_nodes[] = {
        "{\"llm\":[]}", "{\"llm\":{\"models\":{}}}", "{\"llm\":{\"models\":[\"x\"]}}",
        "{\"llm\":{\"models\":[{\"name\":\"\"}]}}", "{\"llm\":{\"models\":[{}]}}",
        "{\"llm\":{\"price_1k_tokens_micros\":-1}}",
        "{\"llm\":{\"models\":[{\"name\":\"a\",\"price_1k_tokens_micros\":-2}]}}",
    };
    for (size_t i = 0; i < sizeof bad_nodes / sizeof *bad_nodes; i++) {
        rz_caps *c = NULL;
        assert_int_equal(rz_caps_parse(&c, bad_nodes[i], strlen(bad_nodes[i])), RZ_EINVALID);
        assert_null(c);
    }
    static const char *const bad_jobs[] = {
        "{\"llm\":\"tiny\"}", "{\"llm\":{\"model\":\"\"}}", "{\"llm\":{\"tokens\":5}}",
        "{\"llm\":{\"model\":\"m\",\"tokens\":-1}}",
    };
    for (size_t i = 0; i < sizeof bad_jobs / sizeof *bad_jobs; i++) {
        rz_reqs *q = NULL;
        assert_int_equal(rz_reqs_parse(&q, bad_jobs[i], strlen(bad_jobs[i])), RZ_EINVALID);
        assert_null(q);
    }
}

/* A node taken out comes back with new capabilities under its id and
 * index, once it holds nothing. */
static void removed_node_readded(void **state)
{
    (void)state;
    rz_matcher *m = NULL;
    assert_int_equal(rz_matcher_new(&m, RZ_POLICY_CHEAPEST), RZ_OK);
    rz_caps *small = node("{\"id\":\"n1\",\"cpu\":{\"cores\":2},\"memory_mb\":1024,"
                          "\"adapters\":[\"process\"]}");
    rz_caps *big = node("{\"id\":\"n1\",\"cpu\":{\"cores\":16},\"memory_mb\":65536,"
                        "\"adapters\":[\"process\"]}");
    rz_caps *other = node("{\"id\":\"n2\",\"cpu\":{\"cores\":1},\"adapters\":[\"process\"]}");
    size_t idx = 9, again = 9;
    assert_int_equal(rz_matcher_add(m, small, &idx), RZ_OK);
    const char *eight = "{\"cpu_cores\":8}";
    assert_string_equal(place(m, eight, NULL), "!needs 8 cores; the most free on "
                        "one node is 2");
    assert_int_equal(rz_matcher_readd(m, big, NULL), RZ_ESTATE);   /* not removed */
    uint64_t t = 0;
    assert_string_equal(place(m, "{\"cpu_cores\":1}", &t), "n1");
    assert_int_equal(rz_matcher_remove(m, "n1"), RZ_OK);
    assert_int_equal(rz_matcher_readd(m, big, NULL), RZ_ESTATE);   /* holds a job */
    assert_int_equal(rz_matcher_release(m, t), RZ_OK);
    assert_int_equal(rz_matcher_readd(m, other, NULL), RZ_ENOENT);
    assert_int_equal(rz_matcher_readd(m, big, &again), RZ_OK);
    rz_caps_free(big);   /* copied */
    assert_int_equal(again, idx);
    assert_int_equal(rz_matcher_count(m), 1);
    assert_string_equal(place(m, eight, NULL), "n1");
    assert_string_equal(rz_matcher_node_id(m, idx), "n1");
    rz_caps_free(small);
    rz_caps_free(other);
    rz_matcher_free(m);
}

/* A wasm step runs on any CPU (issue 23): an Arm node that advertises
 * wasm takes it whatever cpu_features it names; a process step with the
 * same features stays on the x86 node that has them, and no node without
 * the wasm adapter takes a wasm step. */
static void wasm_runs_on_any_cpu(void **state)
{
    (void)state;
    rz_caps *arm = node("{\"id\":\"arm\",\"cpu\":{\"arch\":\"aarch64\","
        "\"cores\":4,\"features\":[\"neon\"]},\"memory_mb\":8192,"
        "\"adapters\":[\"process\",\"wasm\"]}");
    rz_caps *x86 = node("{\"id\":\"x86\",\"cpu\":{\"arch\":\"x86_64\","
        "\"cores\":4,\"features\":[\"avx2\"]},\"memory_mb\":8192,"
        "\"adapters\":[\"process\"]}");
    rz_reqs *w = job("{\"requirements\":{\"adapter\":\"wasm\","
                     "\"cpu_features\":[\"avx2\"]}}");
    rz_reqs *p = job("{\"requirements\":{\"adapter\":\"process\","
                     "\"cpu_features\":[\"avx2\"]}}");
    assert_true(rz_match_fits(arm, w));
    assert_false(rz_match_fits(x86, w));
    assert_false(rz_match_fits(arm, p));
    assert_true(rz_match_fits(x86, p));
    rz_reqs_free(w);
    rz_reqs_free(p);
    rz_caps_free(arm);
    rz_caps_free(x86);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requirement_shapes),
        cmocka_unit_test(hostile_requirements),
        cmocka_unit_test(cost_formula),
        cmocka_unit_test(policies),
        cmocka_unit_test(preferred_nodes),
        cmocka_unit_test(constraints_and_reasons),
        cmocka_unit_test(reservations),
        cmocka_unit_test(removed_node_readded),
        cmocka_unit_test(like_jobs_are_matched_as_one_group),
        cmocka_unit_test(properties),
        cmocka_unit_test(gpu_containers),
        cmocka_unit_test(wasm_runs_on_any_cpu),
        cmocka_unit_test(llm_models),
        cmocka_unit_test(llm_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
