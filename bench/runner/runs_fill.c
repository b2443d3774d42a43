/* Fills a run store for the `flow runs` benchmark (bench/runner/run.py
 * --runs): N finished runs of a flow of S steps (a chain), start times one
 * second apart, written through rz_store_run_put as the runner writes them.
 *
 * usage: runs_fill DIR N [S]   (S defaults to 20) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rhizos/rhizos.h"

static rz_flow *chain(unsigned steps)
{
    size_t cap = 64 + (size_t)steps * 64;
    char *y = malloc(cap);
    if (!y)
        return NULL;
    size_t n = (size_t)snprintf(y, cap, "flux: 1\nname: filled\nsteps:\n");
    for (unsigned i = 0; i < steps; i++)
        n += (size_t)snprintf(y + n, cap - n, i ? "  s%u:\n    module: m\n    needs: [s%u]\n"
                                                : "  s%u:\n    module: m\n", i, i - 1);
    rz_flow *f = NULL;
    if (rz_flow_parse(&f, y, n, RZ_FORMAT_YAML, "filled.yaml", NULL) != RZ_OK)
        f = NULL;
    free(y);
    return f;
}

/* Every step succeeded, one after another. */
static int finish(rz_run *run)
{
    size_t ready[4];
    uint64_t t = 0;
    while (rz_run_ready(run, t, ready, 4) > 0) {
        if (rz_run_start(run, ready[0], t) != RZ_OK ||
            rz_run_succeed(run, ready[0], "{\"ok\":true}", t + 1) != RZ_OK)
            return -1;
        t += 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: runs_fill DIR N [STEPS]\n");
        return 2;
    }
    unsigned long n = strtoul(argv[2], NULL, 10);
    unsigned steps = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 20;
    rz_flow *flow = chain(steps ? steps : 1);
    rz_store *st = NULL;
    if (!flow || rz_store_open(&st, argv[1]) != RZ_OK) {
        fprintf(stderr, "runs_fill: %s\n", rz_error_last()->message);
        return 1;
    }
    uint64_t t0 = 1700000000000ull;
    for (unsigned long i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "run-fill-%06lu", i);
        rz_run *run = NULL;
        if (rz_run_new(&run, flow, NULL, id, 0) != RZ_OK || finish(run) != 0 ||
            rz_store_run_put(st, run, t0 + i * 1000, t0 + i * 1000 + 500) != RZ_OK) {
            fprintf(stderr, "runs_fill: %s\n", rz_error_last()->message);
            return 1;
        }
        rz_run_free(run);
    }
    rz_store_close(st);
    rz_flow_free(flow);
    return 0;
}
