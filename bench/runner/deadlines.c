/* What a pass's deadline look-ups cost a run with many steps running
 * (issue 22): N independent steps with a timeout all RUNNING, then P passes
 * of what an engine pass asks its run (rz_run_next_wakeup, rz_run_ready,
 * rz_run_tick) while none is due. Prints ns a pass.
 *
 * `ninja -C build bench/runner/deadlines && build/bench/runner/deadlines [N] [P]` */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rhizos/flow.h"
#include "rhizos/run.h"

static rz_flow *wide(unsigned steps)
{
    size_t cap = 64 + (size_t)steps * 48, n = 0;
    char *y = malloc(cap);
    if (!y)
        return NULL;
    n += (size_t)snprintf(y, cap, "flux: 1\nname: wide\nsteps:\n");
    for (unsigned i = 0; i < steps; i++)
        n += (size_t)snprintf(y + n, cap - n, "  s%u: {module: m, timeout_s: %u}\n",
                              i, 60 + i % 7);
    rz_flow *f = NULL;
    if (rz_flow_parse(&f, y, n, RZ_FORMAT_YAML, "wide.yaml", NULL) != RZ_OK)
        f = NULL;
    free(y);
    return f;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    unsigned steps = argc > 1 ? (unsigned)atoi(argv[1]) : 2000;
    unsigned passes = argc > 2 ? (unsigned)atoi(argv[2]) : 20000;
    rz_flow *f = wide(steps ? steps : 1);
    rz_run *run = NULL;
    size_t *ready = malloc(steps * sizeof *ready);
    if (!f || !ready || rz_run_new(&run, f, NULL, "r", 0) != RZ_OK) {
        fprintf(stderr, "deadlines: cannot make the run\n");
        return 1;
    }
    size_t n = rz_run_ready(run, 0, ready, steps);
    for (size_t i = 0; i < n; i++)
        if (rz_run_start(run, ready[i], 0) != RZ_OK)
            return 1;
    uint64_t sum = 0;
    double t0 = now_ns();
    for (unsigned k = 1; k <= passes; k++) {
        sum += rz_run_next_wakeup(run);
        sum += rz_run_ready(run, k, NULL, 0);
        sum += rz_run_tick(run, k, NULL, 0);
    }
    double t1 = now_ns();
    printf("%u steps running, %u passes: %.0f ns a pass (%llu)\n", steps, passes,
           (t1 - t0) / passes, (unsigned long long)(sum % 10));
    rz_run_free(run);
    rz_flow_free(f);
    free(ready);
    return 0;
}
