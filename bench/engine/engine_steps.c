/* Engine cost per deployment step, without processes: one deployment of N
 * steps (a binary tree: step i needs step (i-1)/2), one node that takes
 * `slots` jobs at a time and reports each at once, the way a node or the
 * embedded runner drives the engine (poll, report, tick). Prints CPU per
 * step for each tenth of the run, the whole run's, and peak RSS, so the
 * curve shows whether a step's cost grows with the deployment.
 *
 *   engine_steps N [SLOTS]        e.g. engine_steps 100000 2
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <malloc.h>
#include <sys/resource.h>

#include "rhizos/engine.h"

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "engine_steps: %s: %s\n", what, rz_error_last()->message);
    exit(1);
}

static void rss(const char *when)
{
    FILE *f = fopen("/proc/self/status", "r");   /* Linux only */
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssAnon", 7) || !strncmp(line, "RssFile", 7))
            printf("%s %s", when, line);
    if (f)
        fclose(f);
    struct mallinfo2 mi = mallinfo2();
    printf("%s heap in use %zu kB\n", when, mi.uordblks / 1024);
}

static char *flow_text(size_t n)
{
    size_t cap = 64 + n * 96, len = 0;
    char *s = malloc(cap);
    if (!s)
        exit(2);
    len += (size_t)sprintf(s + len, "flux: 1\nname: tree\nsteps:\n");
    for (size_t i = 0; i < n; i++) {
        if (i)
            len += (size_t)sprintf(s + len, "  s%zu: {module: m, needs: [s%zu],"
                                   " max_cost_micros: 10000}\n", i, (i - 1) / 2);
        else
            len += (size_t)sprintf(s + len, "  s0: {module: m, max_cost_micros: 10000}\n");
    }
    return s;
}

/* Poll, report and tick until the deployment ends, printing CPU per step
 * for each tenth of it; the state it ended in. */
static rz_run_state drive(rz_engine *e, uint64_t node, uint64_t dep, size_t n,
                          unsigned slots, size_t *done_out)
{
    uint64_t *held = calloc(slots, sizeof *held);
    uint32_t *att = calloc(slots, sizeof *att);
    if (!held || !att)
        exit(2);
    size_t n_held = 0, done = 0, mark = 0;
    uint64_t now = 1000;
    double t_mark = cpu_s();
    printf("%10s %14s\n", "steps", "CPU us/step");
    rz_run_state st = RZ_RUN_RUNNING;
    while (st == RZ_RUN_RUNNING) {
        now++;
        rz_engine_assignment a;
        while (n_held < slots && rz_engine_poll(e, node, now, &a) == RZ_OK) {
            held[n_held] = a.job;
            att[n_held++] = a.attempt;
        }
        for (size_t i = 0; i < n_held; i++) {
            rz_engine_report r = RZ_ENGINE_REPORT_INIT;
            r.attempt = att[i];
            r.outputs_json = "{}";
            r.run_ms = 1;
            if (rz_engine_report_result(e, node, held[i], &r, now, NULL) != RZ_OK)
                die("report");
            done++;
        }
        n_held = 0;
        if (rz_engine_tick(e, now) != RZ_OK)
            die("tick");
        rz_engine_event ev;
        while (rz_engine_next_event(e, &ev))
            ;
        if (rz_engine_deployment_state(e, dep, &st) != RZ_OK)
            die("state");
        if (done - mark >= n / 10 || st != RZ_RUN_RUNNING) {
            double t = cpu_s();
            printf("%10zu %14.1f\n", done, (t - t_mark) * 1e6 /
                   (double)(done - mark ? done - mark : 1));
            t_mark = t;
            if (getenv("RZ_STEPS_RSS"))
                rss("");
            mark = done;
        }
    }
    free(held);
    free(att);
    *done_out = done;
    return st;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
    unsigned slots = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    if (!n || !slots)
        return 2;
    char dir[] = "/tmp/rz-steps-XXXXXX";
    if (!mkdtemp(dir))
        return 2;
    rz_engine_opts o = RZ_ENGINE_OPTS_INIT;
    o.durable = 0;
    o.node_timeout_ms = 1ull << 50;
    rz_engine *e;
    if (rz_engine_open(&e, dir, &o) != RZ_OK)
        die("open");
    rz_ledger_id client = rz_ledger_id_make(0x5151, 1);
    rz_ledger *l = rz_engine_ledger(e);
    if (rz_ledger_create_account(l, client, RZ_LEDGER_CLIENT) != RZ_OK ||
        rz_ledger_test_credit(l, rz_ledger_id_make(0x5152, 1), client,
                              10000 * (uint64_t)n) != RZ_OK)
        die("client");
    char caps[400];
    snprintf(caps, sizeof caps,
             "{\"cpu\":{\"cores\":64},\"memory_mb\":65536,"
             "\"storage\":{\"total_gb\":50,\"free_gb\":50},"
             "\"prices\":{\"cpu_hour_micros\":0,\"gpu_hour_micros\":0,"
             "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":%u}", slots);
    uint64_t now = 1000, node, dep;
    if (rz_engine_node_register(e, caps, strlen(caps), now, &node) != RZ_OK)
        die("register");
    char *text = flow_text(n);
    double t0 = cpu_s();
    if (rz_engine_deploy(e, text, strlen(text), client, NULL, now, &dep,
                         NULL) != RZ_OK)
        die("deploy");
    free(text);
    if (getenv("RZ_STEPS_RSS"))
        rss("deployed");
    if (getenv("RZ_STEPS_DEPLOY_ONLY"))
        _exit(0);
    double t_deploy = cpu_s() - t0;
    printf("%zu steps, %u slots: deploy %.1f ms\n", n, slots, t_deploy * 1e3);
    size_t done = 0;
    double t_run = cpu_s();
    rz_run_state st = drive(e, node, dep, n, slots, &done);
    double total = cpu_s() - t_run;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("run: %s, %zu steps, %.1f us CPU per step, peak RSS %.1f MiB\n",
           rz_run_state_name(st), done, total * 1e6 / (double)done,
           (double)ru.ru_maxrss / 1024.0);
    rss("end");
    rz_engine_close(e);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 && st == RZ_RUN_SUCCEEDED ? 0 : 1;
}
