/* rhizos flow serve FILE...: the cron triggers of flows on one machine,
 * without an orchestrator (docs/triggers.md, "On one machine").
 *
 * Each fire runs the flow as `flow run` does (a child process, so the
 * server goes on; it dies with the server), under the run id
 * serve-<flow>-<trigger>-<fire time>, recorded under --data. Exactly once
 * across kill -9: a trigger's state file (DATA/serve/<flow>.<trigger>.json,
 * written whole and synced) says where its fires stand ("last") and which
 * fire was decided ("fire"); it is written before the run starts. At the
 * next start a decided fire whose run is not in the run store is run again
 * (the crash came between the decision and the run's first record); one
 * whose run is there is done. Fires missed while the server was down
 * follow the trigger's catch-up rule, as on an orchestrator (trigplan.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "trigplan.h"

#define SERVE_MAX 64            /* cron triggers served at once */
#define FIRES_PER_PASS 100

typedef struct strig {
    const char *file;
    char flow[128], name[80];
    rz_cron *cron;
    trig_catchup catchup;
    bool allow;                 /* overlap: allow (else a fire while the
                                   last run runs is skipped) */
    bool wants_trigger;         /* the flow declares input `trigger` */
    int64_t last;               /* fires up to here are done */
    pid_t child;                /* its last fire's run, while it runs */
    char path[4400];            /* its state file */
} strig;

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

void cli_serve_usage(void)
{
    printf(
"       rhizos flow serve FILE...       [--data DIR] [--modules DIR]\n"
"                                       [--no-sandbox] [--quiet]\n");
}

/* The clock: real time, or (tests) RHIZOS_TEST_SERVE_CLOCK=<unix seconds>
 * as the time the server started, going on at the real pace. */
static int64_t now_s(void)
{
    static int64_t shift;
    static bool known;
    int64_t real = (int64_t)time(NULL);
    if (!known) {
        const char *t = getenv("RHIZOS_TEST_SERVE_CLOCK");
        shift = t && *t ? strtoll(t, NULL, 10) - real : 0;
        known = true;
    }
    return real + shift;
}

static void run_id(const strig *t, int64_t fire, char *buf, size_t cap)
{
    snprintf(buf, cap, "serve-%s-%s-%" PRId64, t->flow, t->name, fire);
}

/* Write `text` to `path` whole: a temporary file, synced, renamed over it,
 * the folder synced. */
static int write_synced(const char *path, const char *text)
{
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    ok = ok && rename(tmp, path) == 0;
    char dir[4500];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int dfd = ok ? open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    ok = ok && dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0)
        close(dfd);
    return ok ? 0 : -1;
}

static int state_put(strig *t, int64_t fire)
{
    char text[256];
    if (fire)
        snprintf(text, sizeof text, "{\"last\":%" PRId64 ",\"fire\":%" PRId64 "}\n",
                 t->last, fire);
    else
        snprintf(text, sizeof text, "{\"last\":%" PRId64 "}\n", t->last);
    if (write_synced(t->path, text) != 0) {
        fprintf(stderr, "rhizos: flow serve: cannot write %s: %s\n", t->path,
                strerror(errno));
        return -1;
    }
    return 0;
}

static bool run_recorded(const char *data, const char *id)
{
    rz_store *st = NULL;
    char *json = NULL;
    bool there = rz_store_open(&st, data) == RZ_OK && rz_store_run_get(st, id, &json) == RZ_OK;
    rz_free(json);
    rz_store_close(st);
    return there;
}

/* Start the run of fire `fire` in a child: `flow run` with the trigger as
 * its input `trigger` (when the flow declares one) under its fixed id. */
static void fire_run(cli *c, strig *t, int64_t fire)
{
    char id[300];
    run_id(t, fire, id, sizeof id);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rhizos: flow serve: %s: cannot start a run: %s\n", id,
                strerror(errno));
        return;
    }
    if (pid > 0) {
        t->child = pid;
        if (!c->quiet)
            fprintf(stderr, "rhizos: flow serve: %s %s fired: run %s\n", t->flow, t->name, id);
        return;
    }
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);   /* it dies with the server */
    if (getppid() == 1)
        _exit(EXIT_FAILED);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    char in[512];
    snprintf(in, sizeof in, "{\"trigger\":{\"type\":\"cron\",\"name\":\"%s\",\"fire\":%" PRId64
             "}}", t->name, fire);
    cli run = *c;
    char *argv[2] = { (char *)t->file, NULL };
    run.args = argv;
    run.nargs = 1;
    run.n_inputs = 0;
    run.resume_inputs = t->wants_trigger ? in : "{}";
    run.run_id = id;
    run.quiet = true;
    _exit(cli_flow_run(&run));
}

/* Where the last start left a decided fire: run it, unless its run is
 * recorded (done) — the replay of a fire lost to a crash. */
static void recover(cli *c, strig *t, const char *data)
{
    cJSON *st = NULL;
    FILE *f = fopen(t->path, "r");
    char buf[512];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    st = n ? cJSON_Parse(buf) : NULL;
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(st, "last");
    const cJSON *fire = cJSON_GetObjectItemCaseSensitive(st, "fire");
    t->last = cJSON_IsNumber(last) ? (int64_t)last->valuedouble : now_s();
    if (cJSON_IsNumber(fire)) {
        char id[300];
        run_id(t, (int64_t)fire->valuedouble, id, sizeof id);
        if (!run_recorded(data, id)) {
            if (!c->quiet)
                fprintf(stderr, "rhizos: flow serve: %s %s: the fire at %" PRId64 " was "
                        "decided but never ran (a crash): running it now\n", t->flow,
                        t->name, (int64_t)fire->valuedouble);
            fire_run(c, t, (int64_t)fire->valuedouble);
        }
    }
    cJSON_Delete(st);
    if (!n)
        (void)state_put(t, 0);   /* from now on: no history to catch up */
}

/* One trigger's due fires at `now`. */
static void tick(cli *c, strig *t, int64_t now)
{
    int64_t fires[FIRES_PER_PASS], new_last;
    uint64_t missed = 0;
    size_t n = trig_plan(t->cron, t->last, now, t->catchup, fires, FIRES_PER_PASS, &missed,
                         &new_last);
    if (missed && !c->quiet)
        fprintf(stderr, "rhizos: flow serve: %s %s: %" PRIu64 " fire(s) missed while it "
                "was not served (catchup: %s)\n", t->flow, t->name, missed,
                trig_catchup_name(t->catchup));
    for (size_t i = 0; i < n && !stop_signal; i++) {
        t->last = fires[i];
        if (t->child && !t->allow) {
            if (!c->quiet)
                fprintf(stderr, "rhizos: flow serve: %s %s: fire at %" PRId64 " skipped: "
                        "the last run still runs (overlap: skip)\n", t->flow, t->name,
                        fires[i]);
            continue;
        }
        if (state_put(t, fires[i]) != 0)   /* decided: durable before it runs */
            return;
        if (getenv("RHIZOS_TEST_KILL_AFTER_FIRE"))
            raise(SIGKILL);   /* tests only: the window recover() covers */
        fire_run(c, t, fires[i]);
    }
    if (new_last != t->last || n) {
        t->last = new_last;
        (void)state_put(t, 0);
    }
}

static bool flow_wants_trigger(const rz_flow *f)
{
    char *json = NULL;
    size_t len = 0;
    bool wants = false;
    if (rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &len) == RZ_OK) {
        cJSON *doc = cJSON_ParseWithLength(json, len);
        wants = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "inputs"),
                                                 "trigger") != NULL;
        cJSON_Delete(doc);
    }
    rz_free(json);
    return wants;
}

static bool name_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* The enabled cron triggers of `f` (loaded from `file`) into t[]. */
static int add_triggers(const char *file, const rz_flow *f, const char *sdir, strig *t,
                        size_t *n)
{
    char *json = NULL;
    if (rz_flow_triggers(f, &json) != RZ_OK) {
        fprintf(stderr, "rhizos: %s: %s\n", file, rz_error_last()->message);
        return -1;
    }
    cJSON *arr = cJSON_Parse(json);
    rz_free(json);
    const char *flow = rz_flow_name(f);
    bool wants = flow_wants_trigger(f);
    const cJSON *x;
    int rc = 0;
    cJSON_ArrayForEach(x, arr) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "type"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "name"));
        if (!type || !name || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "enabled")))
            continue;
        if (!strcmp(type, "webhook"))
            fprintf(stderr, "rhizos: %s: webhook trigger '%s' is not served here (an "
                    "orchestrator serves webhooks)\n", file, name);
        if (strcmp(type, "cron") != 0)
            continue;
        if (*n >= SERVE_MAX || !name_ok(flow) || strlen(flow) >= sizeof t->flow) {
            fprintf(stderr, "rhizos: %s: cannot serve trigger '%s' (at most %d, flow names "
                    "of letters, digits, '_' and '-')\n", file, name, SERVE_MAX);
            rc = -1;
            break;
        }
        strig *s = &t[*n];
        memset(s, 0, sizeof *s);
        rz_cron_opts o = RZ_CRON_OPTS_INIT;
        o.tz = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "tz"));
        const char *sched = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "schedule"));
        if (!sched || rz_cron_parse(&s->cron, sched, &o) != RZ_OK) {
            fprintf(stderr, "rhizos: %s: trigger '%s': %s\n", file, name,
                    rz_error_last()->message);
            rc = -1;
            break;
        }
        const char *cu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "catchup"));
        const char *ov = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "overlap"));
        s->catchup = cu && !strcmp(cu, "none") ? TRIG_CATCHUP_NONE
                     : cu && !strcmp(cu, "all") ? TRIG_CATCHUP_ALL : TRIG_CATCHUP_ONE;
        s->allow = ov && !strcmp(ov, "allow");
        s->file = file;
        s->wants_trigger = wants;
        snprintf(s->flow, sizeof s->flow, "%s", flow);
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->path, sizeof s->path, "%s/%s.%s.json", sdir, flow, name);
        (*n)++;
    }
    cJSON_Delete(arr);
    return rc;
}

/* Sleep until the next fire of any trigger, a child's end, or a signal
 * (at most a second: children are reaped as they end). */
static void wait_next(strig *t, size_t n, int64_t now)
{
    int64_t next = now + 1;
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (rz_cron_next(t[i].cron, t[i].last, &x) == RZ_OK && x < next)
            next = x;
    }
    if (next > now)
        sleep((unsigned)(next - now));
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
        for (size_t i = 0; i < n; i++)
            if (t[i].child == pid)
                t[i].child = 0;
}

int cli_flow_serve(cli *c)
{
    if (c->nargs < 1) {
        fprintf(stderr, "rhizos: flow serve: wants FILE... Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    char *data = cli_data_dir(c);
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/serve", data ? data : ".");
    if (!data || rz_fs_mkdirs(sdir, 0700) != RZ_OK) {
        fprintf(stderr, "rhizos: flow serve: cannot make %s\n", sdir);
        free(data);
        return EXIT_FAILED;
    }
    rz_registry *reg = cli_registry(c);
    static strig t[SERVE_MAX];
    size_t n = 0;
    int rc = reg ? EXIT_OK : EXIT_FAILED;
    for (int i = 0; rc == EXIT_OK && i < c->nargs; i++) {
        rz_flow *f = cli_flow_load(c, c->args[i], reg);
        if (!f || add_triggers(c->args[i], f, sdir, t, &n) != 0)
            rc = EXIT_FAILED;
        rz_flow_free(f);
    }
    if (rc == EXIT_OK && !n) {
        fprintf(stderr, "rhizos: flow serve: no enabled cron trigger in the given flows\n");
        rc = EXIT_FAILED;
    }
    if (rc == EXIT_OK) {
        signal(SIGINT, on_stop);
        signal(SIGTERM, on_stop);
        for (size_t i = 0; i < n; i++)
            recover(c, &t[i], data);
        if (!c->quiet)
            fprintf(stderr, "rhizos: flow serve: %zu cron trigger%s served; runs are "
                    "recorded under %s (rhizos flow runs)\n", n, n == 1 ? "" : "s", data);
        while (!stop_signal) {
            int64_t now = now_s();
            for (size_t i = 0; i < n && !stop_signal; i++)
                tick(c, &t[i], now);
            wait_next(t, n, now_s());
        }
        for (size_t i = 0; i < n; i++)   /* the runs it started end with it */
            if (t[i].child)
                kill(t[i].child, SIGTERM);
        while (waitpid(-1, NULL, 0) > 0)
            ;
    }
    for (size_t i = 0; i < n; i++)
        rz_cron_free(t[i].cron);
    rz_registry_free(reg);
    free(data);
    return rc;
}
