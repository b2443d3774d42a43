/* plan_bench: time load + validate + plan of one flow file, best of N.
 *
 *   plan_bench FLOW.json [REPEAT]
 *
 * Validation runs without a registry (structure only), as the benchmark's
 * flows are module-free. The last line is machine-readable for the driver:
 *   RESULT load_ms=.. validate_ms=.. plan_ms=.. total_ms=.. steps=.. stages=.. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rhizos/rhizos.h"

typedef struct timing {
    double load, validate, plan;
    size_t steps, stages;
} timing;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void report(const char *what, rz_diags *d)
{
    char *text = NULL;
    fprintf(stderr, "plan_bench: %s failed: %s\n", what, rz_error_last()->message);
    if (d && rz_diags_to_text(d, &text) == RZ_OK)
        fputs(text, stderr);
    rz_free(text);
}

static int once(const char *path, timing *t)
{
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    rz_plan *plan = NULL;
    int rc = rz_diags_new(&d);
    double t0 = now_ms();
    if (rc == RZ_OK && (rc = rz_flow_load(&flow, path, RZ_FORMAT_JSON, d)) != RZ_OK)
        report("load", d);
    double t1 = now_ms();
    if (rc == RZ_OK && (rc = rz_flow_validate(flow, NULL, d)) != RZ_OK)
        report("validate", d);
    double t2 = now_ms();
    if (rc == RZ_OK && (rc = rz_plan_build(&plan, flow, d)) != RZ_OK)
        report("plan", d);
    double t3 = now_ms();
    if (rc == RZ_OK) {
        t->load = t1 - t0;
        t->validate = t2 - t1;
        t->plan = t3 - t2;
        t->steps = rz_flow_step_count(flow);
        t->stages = rz_plan_stage_count(plan);
    }
    rz_plan_free(plan);
    rz_flow_free(flow);
    rz_diags_free(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: plan_bench FLOW.json [REPEAT]\n");
        return 2;
    }
    int reps = argc == 3 ? atoi(argv[2]) : 3;
    if (reps < 1)
        reps = 1;
    timing best = {0};
    double best_total = -1;
    for (int i = 0; i < reps; i++) {
        timing t;
        if (once(argv[1], &t) != RZ_OK)
            return 1;
        double total = t.load + t.validate + t.plan;
        printf("run %d: load %.1f ms, validate %.1f ms, plan %.1f ms, total %.1f ms\n",
               i + 1, t.load, t.validate, t.plan, total);
        if (best_total < 0 || total < best_total) {
            best_total = total;
            best = t;
        }
    }
    printf("best of %d: %zu steps in %zu stages: load %.1f ms + validate %.1f ms"
           " + plan %.1f ms = %.1f ms\n", reps, best.steps, best.stages,
           best.load, best.validate, best.plan, best_total);
    printf("RESULT load_ms=%.3f validate_ms=%.3f plan_ms=%.3f total_ms=%.3f"
           " steps=%zu stages=%zu\n", best.load, best.validate, best.plan,
           best_total, best.steps, best.stages);
    return 0;
}
