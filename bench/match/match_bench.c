/* Matcher benchmark: placements per second and p99 per placement on one
 * core, at 1k, 10k and 100k nodes, with 100k jobs of mixed shapes (CPU-only,
 * single GPU, multi-GPU, rare hardware); and in the same run a naive scan
 * (every job against every node, cheapest fitting node) as the baseline.
 *
 * usage: match_bench [JOBS [NODES...]]   (default 100000 1000 10000 100000) */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rhizos/rhizos.h"

static void bench_fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, rz_error_last()->message);
    exit(1);
}

static uint64_t rs = 0x2545F4914F6CDD1Du;
static uint32_t rnd(uint32_t n)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs % n);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static rz_caps *make_node(int i)
{
    static const char *const kinds[] = { "cpu", "cpu", "cpu", "rtx", "a100", "h100x8",
                                         "amd", "arm" };
    const char *k = kinds[rnd(8)];
    char gpus[2048] = "", feat[128] = "\"sse4.2\",\"avx2\"";
    unsigned cores = 8u << rnd(4), mem = 16384u << rnd(5), gh = 0;
    if (!strcmp(k, "rtx")) {
        snprintf(gpus, sizeof gpus, "{\"vendor\":\"nvidia\",\"vram_mb\":%u,\"compute_capability\":\"8.9\"}",
                 rnd(2) ? 16384 : 24576);
        gh = 40 + rnd(40);
    } else if (!strcmp(k, "a100")) {
        snprintf(gpus, sizeof gpus, "{\"vendor\":\"nvidia\",\"vram_mb\":40960,\"compute_capability\":\"8.0\"},"
                 "{\"vendor\":\"nvidia\",\"vram_mb\":40960,\"compute_capability\":\"8.0\"}");
        gh = 150 + rnd(60);
    } else if (!strcmp(k, "h100x8")) {
        size_t len = 0;
        for (int g = 0; g < 8; g++)
            len += snprintf(gpus + len, sizeof gpus - len, "%s{\"vendor\":\"nvidia\",\"vram_mb\":81559,"
                            "\"compute_capability\":\"9.0\"}", g ? "," : "");
        gh = 220 + rnd(80);
        strcat(feat, ",\"avx512f\"");
    } else if (!strcmp(k, "amd")) {
        snprintf(gpus, sizeof gpus, "{\"vendor\":\"amd\",\"vram_mb\":24560}");
        gh = 50 + rnd(30);
    } else if (!strcmp(k, "arm")) {
        snprintf(feat, sizeof feat, "\"neon\",\"asimd\"");
    }
    static const char *const regions[] = { "us-east", "us-west", "eu-west", "ap-south" };
    char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"id\":\"node-%d\",\"cpu\":{\"cores\":%u,\"features\":[%s]},\"memory_mb\":%u,"
             "\"storage\":{\"total_gb\":2000,\"free_gb\":%u},\"gpus\":[%s],"
             "\"adapters\":[\"process\"%s],\"labels\":{\"region\":\"%s\"},"
             "\"prices\":{\"gpu_hour_micros\":%u,\"cpu_hour_micros\":%u,\"memory_gb_hour_micros\":%u},"
             "\"reputation\":%.2f,\"max_concurrent_jobs\":%u}",
             i, cores, feat, mem, 200 + rnd(1800), gpus, rnd(3) ? ",\"docker\"" : "",
             regions[rnd(4)], gh, 1 + rnd(5), rnd(2), 0.5 + rnd(50) / 100.0, 8 + rnd(24));
    rz_caps *c = NULL;
    if (rz_caps_parse(&c, buf, strlen(buf)) != RZ_OK) {
        fprintf(stderr, "node: %s\n", rz_error_last()->message);
        exit(1);
    }
    return c;
}

/* 60% CPU-only, 25% one GPU, 10% several GPUs, 5% rare hardware. */
static rz_reqs *make_job(int i)
{
    char buf[512];
    uint32_t r = rnd(100), est = 60u * (1 + rnd(4));
    if (r < 60)
        snprintf(buf, sizeof buf, "{\"id\":\"j%d\",\"requirements\":{\"cpu_cores\":%u,"
                 "\"memory_mb\":%u,\"estimate_seconds\":%u%s}}", i, 1u << rnd(3),
                 1024u << rnd(4), est, rnd(4) ? "" : ",\"adapter\":\"docker\"");
    else if (r < 85)
        snprintf(buf, sizeof buf, "{\"id\":\"j%d\",\"requirements\":{\"cpu_cores\":4,"
                 "\"memory_mb\":16384,\"gpu\":{\"count\":1,\"vram_mb\":%u},\"estimate_seconds\":%u}}",
                 i, rnd(2) ? 16000 : 24000, est);
    else if (r < 95)
        snprintf(buf, sizeof buf, "{\"id\":\"j%d\",\"requirements\":{\"cpu_cores\":16,"
                 "\"memory_mb\":65536,\"gpu\":{\"count\":%u,\"vram_mb\":40000,\"vendor\":\"nvidia\","
                 "\"min_compute_capability\":\"8.0\"},\"estimate_seconds\":%u}}", i, 2u << rnd(2), est);
    else
        snprintf(buf, sizeof buf, "{\"id\":\"j%d\",\"requirements\":{\"cpu_cores\":2,"
                 "\"cpu_features\":[\"%s\"],\"labels\":{\"region\":\"%s\"},%s\"min_reputation\":0.9,"
                 "\"max_cost_micros\":500,\"estimate_seconds\":%u}}", i, rnd(2) ? "avx512f" : "neon",
                 rnd(2) ? "eu-west" : "ap-south",
                 rnd(2) ? "\"gpu\":{\"count\":1,\"vendor\":\"amd\"}," : "", est);
    rz_reqs *q = NULL;
    if (rz_reqs_parse(&q, buf, strlen(buf)) != RZ_OK) {
        fprintf(stderr, "job: %s: %s\n", buf, rz_error_last()->message);
        exit(1);
    }
    return q;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The naive scan: every node checked for every job, cheapest fitting one
 * taken; capacity kept in plain arrays. */
typedef struct nfree { uint32_t cores, gpus, jobs; uint64_t mem; } nfree;

static int naive_place(rz_caps **nodes, nfree *fr, size_t nn, const rz_reqs *q)
{
    const rz_reqs_info *r = rz_reqs_get(q);
    int best = -1;
    uint64_t best_cost = UINT64_MAX;
    for (size_t k = 0; k < nn; k++) {
        const rz_caps_info *c = rz_caps_get(nodes[k]);
        if (fr[k].cores < r->cpu_cores || fr[k].mem < r->memory_mb || fr[k].gpus < r->gpu_count ||
            (c->max_concurrent_jobs && fr[k].jobs >= c->max_concurrent_jobs) ||
            !rz_match_fits(nodes[k], q))
            continue;
        uint64_t cost = rz_match_cost(nodes[k], q);
        if (cost < best_cost) {
            best_cost = cost;
            best = (int)k;
        }
    }
    if (best >= 0) {
        fr[best].cores -= r->cpu_cores;
        fr[best].mem -= r->memory_mb;
        fr[best].gpus -= r->gpu_count;
        fr[best].jobs++;
    }
    return best;
}

static void run(size_t nn, size_t nj)
{
    rs = 0x2545F4914F6CDD1Du + nn;
    rz_caps **nodes = malloc(nn * sizeof *nodes);
    rz_reqs **jobs = malloc(nj * sizeof *jobs);
    for (size_t i = 0; i < nn; i++)
        nodes[i] = make_node((int)i);
    for (size_t i = 0; i < nj; i++)
        jobs[i] = make_job((int)i);
    rz_matcher *m;
    if (rz_matcher_new(&m, RZ_POLICY_CHEAPEST) != RZ_OK)
        bench_fail("matcher");
    for (size_t i = 0; i < nn; i++)
        if (rz_matcher_add(m, nodes[i], NULL) != RZ_OK)
            bench_fail("add node");
    /* Jobs end in arrival order once `window` are running, so the cluster
     * stays busy without filling up. */
    size_t window = nn * 2, head = 0, tail = 0, ok = 0;
    uint64_t *ring = calloc(window, sizeof *ring);
    double *lat = malloc(nj * sizeof *lat), total = 0, build = 0, t0 = now();
    uint64_t builds = 0;
    for (size_t i = 0; i < nj; i++) {
        if (tail - head == window)
            (void)!rz_matcher_release(m, ring[head++ % window]);   /* ours */
        rz_placement p;
        double a = now();
        int rc = rz_matcher_place(m, jobs[i], &p);
        double d = now() - a;
        lat[i] = d;
        total += d;
        rz_matcher_stats s1;
        rz_matcher_stats_get(m, &s1);
        if (s1.cache_builds != builds) {   /* first job of a new group */
            builds = s1.cache_builds;
            build += d;
        }
        if (rc == RZ_OK) {
            ring[tail++ % window] = p.ticket;
            ok++;
        }
    }
    double wall = now() - t0;
    rz_matcher_stats st;
    rz_matcher_stats_get(m, &st);
    qsort(lat, nj, sizeof *lat, cmp_d);
    printf("%7zu nodes  %7zu jobs  placed %7zu  %9.0f placements/s  p50 %6.2f us  p99 %7.2f us\n"
           "               %llu groups built in %.3f s (their first jobs); the other %llu jobs: "
           "%.0f placements/s; run with releases %.2f s\n",
           nn, nj, ok, nj / total, lat[nj / 2] * 1e6, lat[nj * 99 / 100] * 1e6,
           (unsigned long long)st.cache_builds, build, (unsigned long long)st.cache_hits,
           st.cache_hits / (total - build), wall);
    /* Naive baseline on the first jobs only: it is O(nodes) per job. */
    size_t nb = nn >= 100000 ? 1000 : nn >= 10000 ? 5000 : 20000;
    if (nb > nj)
        nb = nj;
    nfree *fr = malloc(nn * sizeof *fr);
    for (size_t k = 0; k < nn; k++) {
        const rz_caps_info *c = rz_caps_get(nodes[k]);
        fr[k] = (nfree){ c->cores, (uint32_t)c->n_gpus, 0, c->memory_mb };
    }
    double b0 = now();
    size_t bok = 0;
    for (size_t i = 0; i < nb; i++)
        bok += naive_place(nodes, fr, nn, jobs[i]) >= 0;
    double bt = now() - b0;
    printf("%7zu nodes  naive scan over the first %zu jobs: %9.0f placements/s  -> matcher is %.0fx\n",
           nn, nb, nb / bt, (nj / total) / (nb / bt));
    (void)bok;
    free(fr);
    free(ring);
    free(lat);
    rz_matcher_free(m);
    for (size_t i = 0; i < nn; i++)
        rz_caps_free(nodes[i]);
    for (size_t i = 0; i < nj; i++)
        rz_reqs_free(jobs[i]);
    free(nodes);
    free(jobs);
}

int main(int argc, char **argv)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);   /* one core */
    size_t nj = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t sizes[8] = { 1000, 10000, 100000 }, ns = 3;
    if (argc > 2)
        for (ns = 0; ns < 8 && (int)ns + 2 < argc; ns++)
            sizes[ns] = strtoul(argv[ns + 2], NULL, 10);
    printf("match_bench: policy cheapest, one core, %zu jobs per run\n", nj);
    for (size_t i = 0; i < ns; i++)
        run(sizes[i], nj);
    return 0;
}
