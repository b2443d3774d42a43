/* rhizos flow serve FILE...: the cron triggers (and with --listen the
 * webhooks: serve_hook.c) of flows on one machine, without an
 * orchestrator (docs/triggers.md, "On one machine").
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
 * follow the trigger's catch-up rule, as on an orchestrator (rz_cron_plan).
 *
 * `overlap:` skip drops a fire while the trigger's last run runs; queue
 * keeps up to QUEUE_MAX of them (in the state file, "queue") and runs each
 * when the one before has ended; allow runs it at once. Flow and event
 * triggers: serve_follow.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "serve.h"

#define SERVE_MAX 64            /* cron triggers served at once */
#define FIRES_PER_PASS 100
#define QUEUE_MAX 10            /* fires an `overlap: queue` trigger keeps */
#define KIDS_MAX 1024           /* runs remembered while they run */
#define EXPIRE_EVERY_S 60       /* webhook records swept this often */

typedef struct strig {
    const char *file;
    char flow[128], name[80];
    rz_cron *cron;
    rz_cron_catchup catchup;
    bool allow;                 /* overlap: allow (else a fire while the
                                   last run runs is skipped or queued) */
    bool queue;                 /* overlap: queue */
    int64_t queued[QUEUE_MAX];  /* fires waiting for the last run's end */
    size_t n_queued;
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
"       rhizos flow serve FILE...       [--listen HOST:PORT] [--data DIR]\n"
"                                       [--modules DIR] [--no-sandbox]\n"
"       rhizos flow publish EVENT [DATA_JSON]   [--data DIR]\n");
}

/* The clock: real time, or (tests) RHIZOS_TEST_SERVE_CLOCK=<unix seconds>
 * as the time the server started, going on at the real pace. */
int64_t serve_now(void)
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
int serve_write_synced(const char *path, const char *text)
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
    char text[512], q[300] = "";
    for (size_t i = 0, k = 0; i < t->n_queued; i++)
        k += (size_t)snprintf(q + k, sizeof q - k, "%s%" PRId64, i ? "," : ",\"queue\":[",
                              t->queued[i]);
    if (t->n_queued)
        strcat(q, "]");
    if (fire)
        snprintf(text, sizeof text, "{\"last\":%" PRId64 ",\"fire\":%" PRId64 "%s}\n",
                 t->last, fire, q);
    else
        snprintf(text, sizeof text, "{\"last\":%" PRId64 "%s}\n", t->last, q);
    if (serve_write_synced(t->path, text) != 0) {
        fprintf(stderr, "rhizos: flow serve: cannot write %s: %s\n", t->path,
                strerror(errno));
        return -1;
    }
    return 0;
}

bool serve_run_recorded(const char *data, const char *id)
{
    rz_store *st = NULL;
    char *json = NULL;
    bool there = rz_store_open(&st, data) == RZ_OK && rz_store_run_get(st, id, &json) == RZ_OK;
    rz_free(json);
    rz_store_close(st);
    return there;
}

/* The runs started and not yet reaped: whose end a flow trigger follows. */
static struct kid {
    pid_t pid;
    char flow[128], run[300];
} kids[KIDS_MAX];

bool serve_child_end(pid_t pid, char *flow, size_t fcap, char *run, size_t rcap)
{
    for (size_t i = 0; i < KIDS_MAX; i++)
        if (kids[i].pid == pid) {
            snprintf(flow, fcap, "%s", kids[i].flow);
            snprintf(run, rcap, "%s", kids[i].run);
            kids[i].pid = 0;
            return true;
        }
    return false;
}

pid_t serve_spawn(cli *c, const char *file, const char *flow, const char *id,
                  const char *inputs_json, int *recorded)
{
    /* Close-on-exec: the run's steps never hold the child's end open. A
     * socket, not a pipe: the child's send after serve stopped waiting
     * gets EPIPE (MSG_NOSIGNAL), not a SIGPIPE that would end the run. */
    int pfd[2] = { -1, -1 };
    if (recorded && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pfd) != 0)
        pfd[0] = pfd[1] = -1;
    if (recorded)
        *recorded = pfd[0];
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0 && pfd[1] >= 0)
        close(pfd[1]);   /* the child's alone: its end tells the child ended */
    if (pid < 0) {
        fprintf(stderr, "rhizos: flow serve: %s: cannot start a run: %s\n", id,
                strerror(errno));
        return -1;
    }
    if (pid > 0) {
        size_t i = 0;
        while (i < KIDS_MAX && kids[i].pid)
            i++;
        if (i < KIDS_MAX) {
            kids[i].pid = pid;
            snprintf(kids[i].flow, sizeof kids[i].flow, "%s", flow);
            snprintf(kids[i].run, sizeof kids[i].run, "%s", id);
        } else {
            fprintf(stderr, "rhizos: flow serve: %d runs at once: the end of %s fires no "
                    "flow trigger\n", KIDS_MAX, id);
        }
        return pid;
    }
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);   /* it dies with the server */
    if (getppid() == 1)
        _exit(EXIT_FAILED);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    cli run = *c;
    char *argv[2] = { (char *)file, NULL };
    run.args = argv;
    run.nargs = 1;
    run.n_inputs = 0;
    run.resume_inputs = inputs_json;
    run.run_id = id;
    run.quiet = true;
    if (pfd[0] >= 0)
        close(pfd[0]);
    run.tell_recorded = pfd[1] >= 0;
    run.recorded_fd = pfd[1];
    _exit(cli_flow_run(&run));
}

/* Start the run of fire `fire`: the trigger as its input `trigger` (when
 * the flow declares one), under its fixed id. */
static void fire_run(cli *c, strig *t, int64_t fire)
{
    char id[300], in[512];
    run_id(t, fire, id, sizeof id);
    snprintf(in, sizeof in, "{\"trigger\":{\"type\":\"cron\",\"name\":\"%s\",\"fire\":%" PRId64
             "}}", t->name, fire);
    pid_t pid = serve_spawn(c, t->file, t->flow, id, t->wants_trigger ? in : "{}", NULL);
    if (pid > 0) {
        t->child = pid;
        if (!c->quiet)
            fprintf(stderr, "rhizos: flow serve: %s %s fired: run %s\n", t->flow, t->name, id);
    }
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
    t->last = cJSON_IsNumber(last) ? (int64_t)last->valuedouble : serve_now();
    const cJSON *q;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(st, "queue"))
        if (cJSON_IsNumber(q) && t->n_queued < QUEUE_MAX && t->queue)
            t->queued[t->n_queued++] = (int64_t)q->valuedouble;
    if (cJSON_IsNumber(fire)) {
        char id[300];
        run_id(t, (int64_t)fire->valuedouble, id, sizeof id);
        if (!serve_run_recorded(data, id)) {
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
    size_t n = rz_cron_plan(t->cron, t->last, now, t->catchup, fires, FIRES_PER_PASS, &missed,
                         &new_last);
    if (missed && !c->quiet)
        fprintf(stderr, "rhizos: flow serve: %s %s: %" PRIu64 " fire(s) missed while it "
                "was not served (catchup: %s)\n", t->flow, t->name, missed,
                rz_cron_catchup_name(t->catchup));
    for (size_t i = 0; i < n && !stop_signal; i++) {
        t->last = fires[i];
        if ((t->child || t->n_queued) && t->queue && t->n_queued < QUEUE_MAX) {
            t->queued[t->n_queued++] = fires[i];   /* durable with the state below */
            if (!c->quiet)
                fprintf(stderr, "rhizos: flow serve: %s %s: fire at %" PRId64 " queued: "
                        "the last run still runs (overlap: queue)\n", t->flow, t->name,
                        fires[i]);
            continue;
        }
        if (t->child && !t->allow) {
            if (!c->quiet)
                fprintf(stderr, "rhizos: flow serve: %s %s: fire at %" PRId64 " skipped: "
                        "the last run still runs (overlap: %s)\n", t->flow, t->name,
                        fires[i], t->queue ? "queue, and the queue is full" : "skip");
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

/* An `overlap: queue` trigger whose last run ended: its oldest queued
 * fire is decided (out of the queue, durable) and run. */
static void dequeue(cli *c, strig *t)
{
    if (t->child || !t->n_queued || stop_signal)
        return;
    int64_t fire = t->queued[0];
    memmove(t->queued, t->queued + 1, (t->n_queued - 1) * sizeof *t->queued);
    t->n_queued--;
    if (state_put(t, fire) == 0)
        fire_run(c, t, fire);
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

/* What one server serves. */
typedef struct served {
    strig t[SERVE_MAX];
    size_t n;
    shook h[SERVE_MAX];
    size_t n_h;
    sfollow f[SERVE_MAX];       /* flow and event triggers */
    size_t n_f;
    const char *names[SERVE_MAX];   /* the served flows' names */
    char name_buf[SERVE_MAX][128];
    size_t n_names;
    rz_vault *vault;            /* opened at the first webhook */
    int lfd;                    /* --listen socket; -1 none */
} served;

static int add_cron(const char *file, const char *flow, const char *name, const cJSON *x,
                    const char *sdir, strig *s)
{
    memset(s, 0, sizeof *s);
    rz_cron_opts o = RZ_CRON_OPTS_INIT;
    o.tz = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "tz"));
    const char *sched = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "schedule"));
    if (!sched || rz_cron_parse(&s->cron, sched, &o) != RZ_OK) {
        fprintf(stderr, "rhizos: %s: trigger '%s': %s\n", file, name, rz_error_last()->message);
        return -1;
    }
    const char *cu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "catchup"));
    const char *ov = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "overlap"));
    s->catchup = RZ_CRON_CATCHUP_ONE;
    if (rz_cron_catchup_parse(cu, &s->catchup) != RZ_OK) {
        fprintf(stderr, "rhizos: %s: trigger '%s': %s\n", file, name, rz_error_last()->message);
        return -1;
    }
    s->allow = ov && !strcmp(ov, "allow");
    s->queue = ov && !strcmp(ov, "queue");
    s->file = file;
    snprintf(s->flow, sizeof s->flow, "%s", flow);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, "%s/%s.%s.json", sdir, flow, name);
    return 0;
}

/* A webhook: its key revealed from the vault (unlocked once). */
static int add_hook(cli *c, served *sv, const char *file, const char *flow, const char *name,
                    const cJSON *x, shook *h)
{
    memset(h, 0, sizeof *h);
    const char *cred = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "secret"));
    if (!sv->vault && !(sv->vault = cli_vault_open_unlocked(c)))
        return -1;
    size_t i = cred ? rz_vault_find(sv->vault, cred) : (size_t)-1;
    if (i == (size_t)-1 || rz_vault_reveal(sv->vault, i, &h->key) != RZ_OK) {
        fprintf(stderr, "rhizos: %s: webhook '%s': no credential '%s' in the vault\n", file,
                name, cred ? cred : "");
        return -1;
    }
    h->file = file;
    h->max_body = (size_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x,
                                                                         "max_body_bytes"));
    snprintf(h->flow, sizeof h->flow, "%s", flow);
    snprintf(h->name, sizeof h->name, "%s", name);
    return 0;
}

/* A flow or event trigger. */
static void add_follow(const char *file, const char *flow, const char *name, const cJSON *x,
                       bool event, sfollow *s)
{
    memset(s, 0, sizeof *s);
    s->file = file;
    s->event = event;
    snprintf(s->flow, sizeof s->flow, "%s", flow);
    snprintf(s->name, sizeof s->name, "%s", name);
    const char *src = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, event ? "event"
                                                                                   : "flow"));
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "status"));
    snprintf(s->source, sizeof s->source, "%s", src ? src : "");
    snprintf(s->status, sizeof s->status, "%s", st ? st : "succeeded");
}

/* The enabled cron, flow and event triggers (and with --listen the
 * webhooks) of `f`. */
static int add_triggers(cli *c, served *sv, const char *file, const rz_flow *f,
                        const char *sdir)
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
        bool cron = type && !strcmp(type, "cron"), hook = type && !strcmp(type, "webhook");
        bool follow = type && (!strcmp(type, "flow") || !strcmp(type, "event"));
        if (!name || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "enabled")))
            continue;
        if (follow && sv->n_f < SERVE_MAX && name_ok(flow) && strlen(flow) < 128) {
            add_follow(file, flow, name, x, type[0] == 'e', &sv->f[sv->n_f]);
            sv->f[sv->n_f++].wants_trigger = wants;
            continue;
        }
        if (hook && !c->listen)
            fprintf(stderr, "rhizos: %s: webhook trigger '%s' is not served without "
                    "--listen HOST:PORT\n", file, name);
        if (!cron && !(hook && c->listen))
            continue;
        if (sv->n >= SERVE_MAX || sv->n_h >= SERVE_MAX || !name_ok(flow) ||
            strlen(flow) >= sizeof sv->t[0].flow) {
            fprintf(stderr, "rhizos: %s: cannot serve trigger '%s' (at most %d of a kind, "
                    "flow names of letters, digits, '_' and '-')\n", file, name, SERVE_MAX);
            rc = -1;
            break;
        }
        if (cron ? add_cron(file, flow, name, x, sdir, &sv->t[sv->n]) != 0
                 : add_hook(c, sv, file, flow, name, x, &sv->h[sv->n_h]) != 0) {
            rc = -1;
            break;
        }
        if (cron)
            sv->t[sv->n++].wants_trigger = wants;
        else
            sv->h[sv->n_h++].wants_trigger = wants;
    }
    cJSON_Delete(arr);
    if (rc == 0 && sv->n_names < SERVE_MAX) {
        snprintf(sv->name_buf[sv->n_names], sizeof sv->name_buf[0], "%s", flow);
        sv->names[sv->n_names] = sv->name_buf[sv->n_names];
        sv->n_names++;
    }
    return rc;
}

/* Wait for the next fire of any trigger, a call, a child's end or a
 * signal (at most a second: children are reaped as they end). */
static void wait_next(cli *c, served *sv, const char *data, int64_t now)
{
    int64_t next = now + 1;
    for (size_t i = 0; i < sv->n; i++) {
        int64_t x;
        if (rz_cron_next(sv->t[i].cron, sv->t[i].last, &x) == RZ_OK && x < next)
            next = x;
    }
    struct pollfd p = { sv->lfd, POLLIN, 0 };
    int ms = next > now ? (int)(next - now) * 1000 : 0;
    if (poll(&p, sv->lfd >= 0 ? 1 : 0, ms) > 0 && (p.revents & POLLIN))
        serve_hook_take(c, sv->lfd, sv->h, sv->n_h, data);
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        char flow[128], run[300];
        for (size_t i = 0; i < sv->n; i++)
            if (sv->t[i].child == pid)
                sv->t[i].child = 0;
        if (serve_child_end(pid, flow, sizeof flow, run, sizeof run))
            serve_follow_ended(sv->f, sv->n_f, data, flow, run);
    }
}

static void serve_loop(cli *c, served *sv, const char *data)
{
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    for (size_t i = 0; i < sv->n; i++)
        recover(c, &sv->t[i], data);
    serve_hook_recover(c, sv->h, sv->n_h, data);
    if (!c->quiet)
        fprintf(stderr, "rhizos: flow serve: %zu cron trigger%s, %zu flow or event "
                "trigger%s and %zu webhook%s served%s%s; runs are recorded under %s "
                "(rhizos flow runs)\n", sv->n, sv->n == 1 ? "" : "s", sv->n_f,
                sv->n_f == 1 ? "" : "s", sv->n_h, sv->n_h == 1 ? "" : "s",
                sv->n_h ? " at http://" : "", sv->n_h ? c->listen : "", data);
    int64_t swept = serve_now();
    while (!stop_signal) {
        int64_t now = serve_now();
        for (size_t i = 0; i < sv->n && !stop_signal; i++) {
            dequeue(c, &sv->t[i]);
            tick(c, &sv->t[i], now);
        }
        if (sv->n_f)
            serve_follow_pass(c, sv->f, sv->n_f, data);
        if (now - swept >= EXPIRE_EVERY_S || getenv("RHIZOS_TEST_HOOK_KEEP_S")) {
            serve_hook_expire(sv->h, sv->n_h, data);   /* not only at start */
            swept = now;
        }
        wait_next(c, sv, data, serve_now());
    }
    for (size_t i = 0; i < sv->n; i++)   /* the cron runs it started end with it */
        if (sv->t[i].child)
            kill(sv->t[i].child, SIGTERM);
    while (waitpid(-1, NULL, 0) > 0)
        ;
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
    static served sv;
    sv.lfd = -1;
    int rc = reg ? EXIT_OK : EXIT_FAILED;
    for (int i = 0; rc == EXIT_OK && i < c->nargs; i++) {
        rz_flow *f = cli_flow_load(c, c->args[i], reg);
        if (!f || add_triggers(c, &sv, c->args[i], f, sdir) != 0)
            rc = EXIT_FAILED;
        rz_flow_free(f);
    }
    if (rc == EXIT_OK && !sv.n && !sv.n_h && !sv.n_f) {
        fprintf(stderr, "rhizos: flow serve: no enabled cron, flow or event trigger%s in the "
                "given flows\n", c->listen ? " or webhook" : "");
        rc = EXIT_FAILED;
    }
    if (rc == EXIT_OK && serve_follow_check(sv.f, sv.n_f, sv.names, sv.n_names) != 0)
        rc = EXIT_FAILED;
    if (rc == EXIT_OK && sv.n_h && (sv.lfd = serve_hook_listen(c->listen)) < 0)
        rc = EXIT_FAILED;
    if (rc == EXIT_OK)
        serve_loop(c, &sv, data);
    if (sv.lfd >= 0)
        close(sv.lfd);
    for (size_t i = 0; i < sv.n; i++)
        rz_cron_free(sv.t[i].cron);
    for (size_t i = 0; i < sv.n_h; i++)
        rz_secret_free(sv.h[i].key);
    rz_vault_close(sv.vault);
    rz_registry_free(reg);
    free(data);
    return rc;
}
