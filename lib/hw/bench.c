/* A short node benchmark: one thread's integer + float throughput and the
 * memcpy bandwidth of a buffer larger than the caches. Figures to compare
 * nodes with each other, not absolute truths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/hw_impl.h"

#define MEM_BYTES ((size_t)64 << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 8 ops per round: xorshift (3 shifts, 3 xors), one multiply-add in
 * floating point (2). The result feeds a volatile sink, so none of it can
 * be optimised away. */
static uint64_t cpu_rounds(uint64_t rounds, uint64_t *state, double *acc)
{
    uint64_t x = *state;
    double f = *acc;
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f = f * 0.999999 + (double)(x & 0xff);
    }
    *state = x;
    *acc = f;
    return rounds * 8;
}

static double measure_cpu(double budget)
{
    uint64_t state = 0x9e3779b97f4a7c15u, ops = 0;
    double acc = 1.0, start = now_s(), el;
    do {
        ops += cpu_rounds(1u << 20, &state, &acc);
        el = now_s() - start;
    } while (el < budget);
    volatile double sink = acc + (double)state;
    (void)sink;
    return (double)ops / el / 1e6;
}

static double measure_memory(double budget)
{
    char *a = rz__malloc(MEM_BYTES), *b = rz__malloc(MEM_BYTES);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, MEM_BYTES);   /* fault the pages in before timing */
    memset(b, 2, MEM_BYTES);
    size_t bytes = 0;
    double start = now_s(), el;
    do {
        memcpy(b, a, MEM_BYTES);
        a[bytes % MEM_BYTES] ^= 1;   /* each copy differs from the last */
        bytes += MEM_BYTES;
        el = now_s() - start;
    } while (el < budget);
    volatile char sink = b[bytes % MEM_BYTES];
    (void)sink;
    free(a);
    free(b);
    return (double)bytes / el / 1e6;
}

int rz_hw_benchmark(rz_hw_bench *out, double budget_s)
{
    if (!out)
        return rz__error(RZ_EINVAL, "no result to fill");
    if (!(budget_s >= 0.1))
        budget_s = 0.1;
    if (budget_s > 10)
        budget_s = 10;
    double start = now_s();
    out->cpu_mops = measure_cpu(budget_s / 2);
    out->memory_mbps = measure_memory(budget_s / 2);
    out->seconds = now_s() - start;
    if (out->memory_mbps == 0)
        return rz__error(RZ_ENOMEM, "no memory for the bandwidth buffers");
    return RZ_OK;
}

int rz_hw_bench_to_json(const rz_hw_bench *b, char **out)
{
    *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return rz__error(RZ_ENOMEM, "out of memory");
    cJSON_AddNumberToObject(o, "cpu_mops", round(b->cpu_mops * 10) / 10);
    cJSON_AddNumberToObject(o, "memory_mbps", round(b->memory_mbps));
    cJSON_AddNumberToObject(o, "seconds", round(b->seconds * 1000) / 1000);
    *out = cJSON_Print(o);
    cJSON_Delete(o);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_hw_bench_parse(rz_hw_bench *out, const char *json, size_t len)
{
    cJSON *doc;
    memset(out, 0, sizeof *out);
    int rc = rz__json_parse(&doc, json, len);
    if (rc != RZ_OK)
        return rc;
    if (!cJSON_IsObject(doc))
        rc = rz__error_at(RZ_EINVALID, "", 0, 0, "", "a benchmark must be an object");
    if (rc == RZ_OK) rc = rz__json_real(doc, "cpu_mops", 0, 1e12, "", &out->cpu_mops);
    if (rc == RZ_OK) rc = rz__json_real(doc, "memory_mbps", 0, 1e12, "", &out->memory_mbps);
    if (rc == RZ_OK) rc = rz__json_real(doc, "seconds", 0, 1e6, "", &out->seconds);
    cJSON_Delete(doc);
    if (rc != RZ_OK)
        memset(out, 0, sizeof *out);
    return rc;
}
