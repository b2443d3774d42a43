/* The local runner: `rhizos flow run` as a thin driver of the orchestrator
 * engine (docs/engine.md, "Embedded mode"). The flow is deployed to an
 * engine of its own, in a private folder removed afterwards, with one
 * in-process node for this machine; this file is that node: it polls for
 * assignments, runs each with the process adapter (scratch folder, sandbox,
 * rlimits, stdout cap, credentials scrubbed from what comes back, the
 * stderr tail kept as the step's log) and reports the result. The engine's
 * run decides everything flow-shaped (readiness, `when`, retries, timeouts,
 * on_failure, cancel), exactly as for a network deployment.
 *
 * The caller's rz_run is the deployment's replica (rz_engine_replica): the
 * engine applies each step event to it as it records it. Events come from
 * diffing its step states after each of those, so skips and cancellations
 * the run makes on its own are reported too. One thread, one poll() over
 * every running process.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "exec/exec_impl.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "rhizos/engine.h"

#define MAX_WAIT_MS 200          /* also bounds the reaction to *cancel */
#define REASON_LOG_LINE 200      /* bytes of the log quoted in a failure */
#define REAP_WAIT_MS 2000        /* for the log of a process killed on cancel */
/* The local node is never lost: it polls whenever it has room, but a long
 * step (or a suspended laptop) must not make the engine requeue its jobs. */
#define LOCAL_NODE_TIMEOUT_MS (1ull << 60)

typedef struct slot {
    size_t step;
    uint64_t job;
    uint32_t attempt;            /* the engine's, reported back */
    uint64_t started;            /* rz__now_ms() at spawn */
    rz_proc *proc;
    uint32_t timeout_s;          /* what the process was given */
    char **secrets;              /* from opts->step_env, kept to scrub */
} slot;

typedef struct runner {
    const rz_flow *flow;
    const rz_runner_opts *opts;
    rz_run *run;                 /* the deployment's replica */
    uint64_t t0;
    unsigned jobs;
    slot *slots;                 /* running processes, n_slots of them */
    size_t n_slots;
    rz_step_state *seen;         /* last reported state of every step */
    struct pollfd *pfds;
    bool cancelled;
    uint64_t last_progress;      /* when RZ_EVENT_PROGRESS was last sent */
    char *dir;                   /* the engine's private data folder */
    rz_engine *engine;
    uint64_t node, dep;
    bool finished;               /* the deployment finished */
} runner;

/* ---- events ---- */

static void emit(runner *r, rz_event_kind kind, size_t step,
                 const char *message)
{
    if (!r->opts->on_event)
        return;
    rz_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.run = r->run;
    ev.step = step;
    ev.attempt = step == RZ_NPOS ? 0 : rz_run_step_attempts(r->run, step);
    ev.elapsed_ms = rz__now_ms() - r->t0;
    ev.message = message;
    r->opts->on_event(&ev, r->opts->userdata);
}

/* The event a change from `was` to `now` stands for; 0 for none. */
static rz_event_kind change_event(rz_step_state was, rz_step_state now)
{
    switch (now) {
    case RZ_STEP_RUNNING: return RZ_EVENT_STEP_STARTED;
    case RZ_STEP_SUCCEEDED: return RZ_EVENT_STEP_SUCCEEDED;
    case RZ_STEP_FAILED: return RZ_EVENT_STEP_FAILED;
    case RZ_STEP_SKIPPED: return RZ_EVENT_STEP_SKIPPED;
    case RZ_STEP_CANCELLED: return RZ_EVENT_STEP_CANCELLED;
    case RZ_STEP_BACKOFF: return RZ_EVENT_STEP_RETRYING;
    case RZ_STEP_PENDING:
    case RZ_STEP_READY:
        /* A retry that is due at once may skip BACKOFF. */
        return was == RZ_STEP_RUNNING ? RZ_EVENT_STEP_RETRYING : 0;
    }
    return 0;
}

static void report_changes(runner *r)
{
    size_t n = rz_flow_step_count(r->flow);
    for (size_t i = 0; i < n; i++) {
        rz_step_state now = rz_run_step_state(r->run, i);
        rz_step_state was = r->seen[i];
        if (now == was)
            continue;
        r->seen[i] = now;
        rz_event_kind kind = change_event(was, now);
        if (kind)
            emit(r, kind, i, rz_run_step_error(r->run, i));
    }
}

/* rz_engine_replica.on_change: after every step event, as before. */
static void on_change(void *userdata)
{
    report_changes(userdata);
}

/* ---- running a step ---- */

/* "exit status 3: <last non-empty log line>" and the like. */
static char *failure_reason(const rz_proc *p, uint32_t timeout_s)
{
    int code = rz_proc_exit_code(p);
    if (rz_proc_timed_out(p))
        return rz__asprintf("timed out after %u s", timeout_s);
    if (rz__proc_output_over(p)) {
        const char *why = rz__proc_output_error(p);
        return rz__strdup(why ? why : "stdout over the limit");
    }
    if (code < 0)
        return rz__asprintf("killed by signal %d", -code);
    if (code == 0) {
        const char *why = rz__proc_output_error(p);
        return rz__strdup(why ? why : "no JSON object on stdout");
    }
    size_t len = 0;
    const char *log = rz_proc_log(p, &len);
    while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r' ||
                       log[len - 1] == ' '))
        len--;
    size_t start = len;
    while (start > 0 && log[start - 1] != '\n')
        start--;
    size_t n = len - start;
    if (n == 0)
        return rz__asprintf("exit status %d", code);
    if (n > REASON_LOG_LINE)
        start = len - (n = REASON_LOG_LINE);
    return rz__asprintf("exit status %d: %.*s", code, (int)n, log + start);
}

static uint32_t step_timeout(const rz__step *s)
{
    if (s->timeout_s)
        return s->timeout_s;
    return s->module ? s->module->timeout_s : 0;
}

static size_t count_env(const char *const *e)
{
    size_t n = 0;
    while (e && e[n])
        n++;
    return n;
}

/* RZ_RUN_ID, RZ_STEP_ID, RZ_ATTEMPT, the caller's entries, then the step's
 * secrets (borrowed: only the first three are owned here). */
static char **step_env(runner *r, size_t step, char **secrets)
{
    size_t extra = count_env(r->opts->env);
    size_t n_secrets = count_env((const char *const *)secrets);
    char **env = calloc(extra + n_secrets + 4, sizeof *env);
    if (!env)
        return NULL;
    env[0] = rz__asprintf("RZ_RUN_ID=%s", rz_run_id(r->run));
    env[1] = rz__asprintf("RZ_STEP_ID=%s", rz_flow_step_id(r->flow, step));
    env[2] = rz__asprintf("RZ_ATTEMPT=%u",
                          (unsigned)rz_run_step_attempts(r->run, step));
    for (size_t i = 0; i < extra; i++)
        env[3 + i] = (char *)r->opts->env[i];
    for (size_t i = 0; i < n_secrets; i++)
        env[3 + extra + i] = secrets[i];
    if (!env[0] || !env[1] || !env[2]) {
        for (int i = 0; i < 3; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

static void free_env(char **env)
{
    if (env)
        for (int i = 0; i < 3; i++)
            free(env[i]);
    free(env);
}

static void free_secrets(runner *r, char **secrets)
{
    if (secrets && r->opts->step_env_free)
        r->opts->step_env_free(secrets, r->opts->userdata);
}

static void drop_slot(runner *r, size_t k)
{
    rz_proc_free(r->slots[k].proc);
    free_secrets(r, r->slots[k].secrets);
    r->slots[k] = r->slots[--r->n_slots];
}

/* The request is the one the engine built for this attempt (upstream
 * outputs wired in by the deployment's run). */
static int spawn_step(runner *r, size_t step, const rz__step *s,
                      const char *request, char **secrets, rz_proc **out)
{
    const rz_module *m = s->module;
    char **env = step_env(r, step, secrets);
    if (!env)
        return rz__error(RZ_ENOMEM, "out of memory");
    rz_proc_opts po = RZ_PROC_OPTS_INIT;
    po.argv = (const char *const *)m->command;
    po.module_dir = m->dir;
    po.env = (const char *const *)env;
    po.input = request;
    po.input_len = strlen(request);
    po.network = m->network;
    po.sandbox = r->opts->sandbox;
    /* 64-bit product: a timeout of days must not wrap to seconds. */
    uint64_t ms = (uint64_t)step_timeout(s) * 1000u;
    po.timeout_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    po.memory_mb = m->memory_mb;
    int rc = rz_proc_spawn(out, &po);
    free_env(env);
    return rc;
}

/* ---- what a module hands back ---- */

/* Replace every occurrence of `needle` in *text with a marker. */
static void redact(char **text, const char *needle)
{
    size_t nlen = strlen(needle);
    if (!text || !*text || nlen == 0 || !strstr(*text, needle))
        return;
    rz__buf b = {0};
    const char *p = *text, *hit;
    while ((hit = strstr(p, needle))) {
        rz__buf_append(&b, p, (size_t)(hit - p));
        rz__buf_puts(&b, "[redacted]");
        p = hit + nlen;
    }
    rz__buf_puts(&b, p);
    char *out = rz__buf_take(&b);
    if (out) {
        free(*text);
        *text = out;
    }
}

/* A module may echo a secret it was given; it never reaches the run record.
 * Values are matched raw (logs, reasons) and JSON-escaped (outputs). */
static void scrub(const slot *sl, char **outputs, char **reason)
{
    for (char **e = sl->secrets; e && *e; e++) {
        const char *value = strchr(*e, '=');
        if (!value || !value[1])
            continue;
        value++;
        redact(reason, value);
        cJSON *js = cJSON_CreateString(value);
        char *quoted = js ? cJSON_PrintUnformatted(js) : NULL;
        cJSON_Delete(js);
        if (quoted && strlen(quoted) > 2) {
            quoted[strlen(quoted) - 1] = '\0';
            redact(outputs, quoted + 1);
        }
        if (quoted)
            sodium_memzero(quoted, strlen(quoted));
        free(quoted);
    }
}

/* The stderr tail becomes the step's log in the run record, secrets
 * scrubbed like everything else a module hands back. */
static void keep_log(runner *r, const slot *sl)
{
    size_t len = 0;
    const char *raw = rz_proc_log(sl->proc, &len);
    char *log = len ? rz__strndup(raw, len) : NULL;
    scrub(sl, NULL, &log);
    /* Always replace: a quiet retry must not show the last attempt's log. */
    rz_run_set_step_log(r->run, sl->step, log, log ? strlen(log) : 0);
    free(log);
}

/* ---- talking to the engine ---- */

/* The local node stops a job (its step timed out, or the run was
 * cancelled): kill the process. On cancel its log is kept, as the process
 * got to write it; a timed-out attempt's is not. */
static void stop_job(runner *r, uint64_t job)
{
    size_t k = 0;
    while (k < r->n_slots && r->slots[k].job != job)
        k++;
    if (k == r->n_slots)
        return;
    if (r->cancelled) {
        rz_proc *p = r->slots[k].proc;
        rz_proc_kill(p);
        for (int waited = 0; waited < REAP_WAIT_MS && rz_proc_poll(p, 50) == 0;
             waited += 50)
            ;
        keep_log(r, &r->slots[k]);
    }
    drop_slot(r, k);
}

/* After every engine call: act on its decisions, catch the replica up with
 * the readiness pass the engine makes without recording an event (steps
 * skipped by `when` or an upstream failure), report what changed. */
static int settle(runner *r, uint64_t now)
{
    rz_engine_event ev;
    while (rz_engine_next_event(r->engine, &ev)) {
        if (ev.type == RZ_EV_JOB_STOP && ev.node == r->node)
            stop_job(r, ev.job);
        else if (ev.type == RZ_EV_DEPLOYMENT_FINISHED && ev.deployment == r->dep)
            r->finished = true;
    }
    rz_run_ready(r->run, now, NULL, 0);
    report_changes(r);
    return rz_engine_local_check(r->engine);
}

static int report(runner *r, uint64_t job, uint32_t attempt,
                  const char *outputs, const char *error, uint64_t run_ms)
{
    uint64_t now = rz__now_ms();
    int rc = rz_engine_result(r->engine, r->node, job, attempt, outputs,
                              error, run_ms, now);
    /* RZ_ESTATE: the engine settled the attempt first (its timeout). */
    if (rc != RZ_OK && rc != RZ_ESTATE)
        return rc;
    return settle(r, now);
}

/* ---- starting assignments ---- */

/* Why the step cannot run here; NULL if it can (then *secrets is set). */
static char *cannot_run(runner *r, size_t step, const rz__step *s,
                        char ***secrets)
{
    const rz_module *m = s->module;
    *secrets = NULL;
    if (!m)
        return rz__asprintf("module '%s' is not resolved (validate the flow "
                            "against a registry first)", s->module_id);
    if (!m->adapter || strcmp(m->adapter, "process") != 0)
        return rz__asprintf("adapter '%s' is not available in the embedded "
                            "runner", m->adapter ? m->adapter : "");
    if (!m->command || !m->command[0])
        return rz__asprintf("module '%s' has no exec.command", m->id);
    if (r->opts->step_env &&
        r->opts->step_env(step, secrets, r->opts->userdata) != RZ_OK) {
        *secrets = NULL;
        return rz__asprintf("credentials: %s", rz_error_last()->message);
    }
    return NULL;
}

static int start_assignment(runner *r, const rz_engine_assignment *a)
{
    size_t step = rz_flow_step_find(r->flow, a->step);
    if (step == RZ_NPOS || a->deployment != r->dep)
        return rz__error(RZ_EINTERNAL, "job %llu: step '%s' is not in the "
                         "flow", (unsigned long long)a->job, a->step);
    const rz__step *s = &r->flow->steps[step];
    char **secrets = NULL;
    rz_proc *p = NULL;
    char *why = cannot_run(r, step, s, &secrets);
    if (!why && spawn_step(r, step, s, a->request_json, secrets, &p) != RZ_OK)
        why = rz__asprintf("cannot start: %s", rz_error_last()->message);
    if (p) {
        r->slots[r->n_slots++] = (slot){ step, a->job, a->attempt,
                                         rz__now_ms(), p, step_timeout(s),
                                         secrets };
        return RZ_OK;
    }
    free_secrets(r, secrets);
    int rc = report(r, a->job, a->attempt, NULL,
                    why ? why : "out of memory", 0);
    free(why);
    return rc;
}

/* Take assignments while there is room. */
static int take_work(runner *r)
{
    while (!r->cancelled && !r->finished && r->n_slots < r->jobs) {
        rz_engine_assignment a;
        uint64_t now = rz__now_ms();
        int rc = rz_engine_poll(r->engine, r->node, now, &a);
        if (rc == RZ_ENOENT)
            return settle(r, now);
        if (rc == RZ_OK)
            rc = start_assignment(r, &a);
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

/* ---- finishing assignments ---- */

static int finish_slot(runner *r, size_t k)
{
    slot *sl = &r->slots[k];
    const rz_proc *p = sl->proc;
    char *outputs = rz__strdup(rz_proc_outputs(p));
    scrub(sl, &outputs, NULL);
    keep_log(r, sl);
    bool ok = rz_proc_exit_code(p) == 0 && outputs && !rz_proc_timed_out(p);
    char *why = NULL;
    if (!ok) {
        why = failure_reason(p, sl->timeout_s);
        scrub(sl, NULL, &why);
    }
    uint64_t job = sl->job, run_ms = rz__now_ms() - sl->started;
    uint32_t attempt = sl->attempt;
    drop_slot(r, k);   /* before reporting: the report may stop others */
    int rc = report(r, job, attempt, ok ? outputs : NULL,
                    ok ? NULL : why ? why : "out of memory", run_ms);
    free(why);
    free(outputs);
    return rc;
}

static int tick(runner *r)
{
    uint64_t now = rz__now_ms();
    if (rz_engine_next_wakeup(r->engine) > now)
        return RZ_OK;
    int rc = rz_engine_tick(r->engine, now);
    return rc == RZ_OK ? settle(r, now) : rc;
}

static int check_cancel(runner *r)
{
    if (r->cancelled || !r->opts->cancel || !*r->opts->cancel)
        return RZ_OK;
    r->cancelled = true;
    uint64_t now = rz__now_ms();
    int rc = rz_engine_deploy_cancel(r->engine, r->dep, now);
    if (rc == RZ_ESTATE)   /* it finished first */
        rc = RZ_OK;
    return rc == RZ_OK ? settle(r, now) : rc;
}

/* ---- the loop ---- */

static int wait_ms(const runner *r)
{
    uint64_t next = rz_engine_next_wakeup(r->engine), now = rz__now_ms();
    if (next <= now)
        return 0;
    return next - now < MAX_WAIT_MS ? (int)(next - now) : MAX_WAIT_MS;
}

static int wait_and_collect(runner *r)
{
    for (size_t k = 0; k < r->n_slots; k++) {
        r->pfds[k].fd = rz_proc_fd(r->slots[k].proc);
        r->pfds[k].events = POLLIN;
        r->pfds[k].revents = 0;
    }
    if (poll(r->pfds, r->n_slots, wait_ms(r)) < 0 && errno != EINTR)
        return rz__error(RZ_EIO, "poll: %s", strerror(errno));
    /* A report may stop other slots (and reorder them): rescan after one. */
    for (size_t k = 0; k < r->n_slots;) {
        int done = rz_proc_poll(r->slots[k].proc, 0);
        if (done < 0)
            return done;
        if (!done) {
            k++;
            continue;
        }
        int rc = finish_slot(r, k);
        if (rc != RZ_OK)
            return rc;
        k = 0;
    }
    return RZ_OK;
}

/* Nothing runs, nothing is due and the engine had nothing to hand over. */
static bool stalled(const runner *r)
{
    return r->n_slots == 0 && !r->finished &&
           rz_run_next_wakeup(r->run) == UINT64_MAX;
}

#define PROGRESS_EVERY_MS 250

static void progress_tick(runner *r)
{
    uint64_t now = rz__now_ms();
    if (r->n_slots == 0 || now - r->last_progress < PROGRESS_EVERY_MS)
        return;
    r->last_progress = now;
    emit(r, RZ_EVENT_PROGRESS, RZ_NPOS, NULL);
}

static int drive(runner *r)
{
    while (!r->finished || r->n_slots > 0) {
        int rc = check_cancel(r);
        if (rc == RZ_OK)
            rc = tick(r);
        if (rc == RZ_OK)
            rc = take_work(r);
        if (rc != RZ_OK)
            return rc;
        if (r->finished && r->n_slots == 0)
            break;
        if (stalled(r))
            return rz__error(RZ_EINTERNAL, "run %s cannot make progress",
                             rz_run_id(r->run));
        rc = wait_and_collect(r);
        if (rc != RZ_OK)
            return rc;
        progress_tick(r);
    }
    if (!rz_run_done(r->run))
        return rz__error(RZ_EINTERNAL, "run %s: the deployment finished "
                         "before its run", rz_run_id(r->run));
    return RZ_OK;
}

/* ---- the engine ---- */

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_dir(char *dir)
{
    if (dir)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* A run killed with SIGKILL cannot remove its folder. Folders are named
 * after the process that made them, so the next run removes those of
 * processes that are gone (only ours: same owner, a real folder). */
static void remove_stale_dirs(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (!d)
        return;
    const struct dirent *e;
    while ((e = readdir(d))) {
        long pid = 0;
        int end = 0;
        if (sscanf(e->d_name, "rhizos-run-%ld-%n", &pid, &end) != 1 || !end ||
            pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;                   /* alive, or not ours to ask */
        char *path = rz__asprintf("%s/%s", tmp, e->d_name);
        struct stat st;
        if (path && lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
            st.st_uid == geteuid())
            remove_dir(path);
        else
            free(path);
    }
    closedir(d);
}

static int engine_dir(char **out)
{
    const char *env = getenv("TMPDIR");
    const char *tmp = env && *env ? env : "/tmp";
    remove_stale_dirs(tmp);
    char *dir = rz__asprintf("%s/rhizos-run-%ld-XXXXXX", tmp, (long)getpid());
    if (!dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (!mkdtemp(dir)) {
        int rc = rz__error(RZ_EIO, "engine folder %s: %s", dir,
                           strerror(errno));
        free(dir);
        return rc;
    }
    *out = dir;
    return RZ_OK;
}

/* Nothing here outlives the run, so nothing is fsync'd; no registry (the
 * flow's modules are resolved) and nothing costs anything. */
static int engine_start(runner *r)
{
    int rc = engine_dir(&r->dir);
    if (rc != RZ_OK)
        return rc;
    rz_engine_opts eo = RZ_ENGINE_OPTS_INIT;
    eo.durable = 0;
    eo.node_timeout_ms = LOCAL_NODE_TIMEOUT_MS;
    eo.fee_bps = 0;
    eo.ref_gpu_hour_cents = eo.ref_cpu_hour_cents = 0;
    eo.ref_memory_gb_hour_cents = 0;
    rc = rz_engine_open(&r->engine, r->dir, &eo);
    if (rc == RZ_OK)
        rc = rz_engine_local_node(r->engine, r->jobs, r->t0, &r->node);
    if (rc != RZ_OK)
        return rc;
    rz_engine_replica rep = RZ_ENGINE_REPLICA_INIT;
    rep.run = r->run;
    rep.max_started = r->jobs;
    rep.on_change = on_change;
    rep.userdata = r;
    rc = rz_engine_local_deploy(r->engine, r->flow, r->opts->inputs_json,
                                &rep, r->t0, &r->dep);
    return rc == RZ_OK ? settle(r, r->t0) : rc;
}

static int runner_init(runner *r, const rz_flow *flow,
                       const rz_runner_opts *opts)
{
    size_t n = rz_flow_step_count(flow);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    r->flow = flow;
    r->opts = opts;
    r->jobs = opts->jobs ? opts->jobs : (cpus > 0 ? (unsigned)cpus : 1);
    if (r->jobs > n)
        r->jobs = n ? (unsigned)n : 1;
    r->slots = calloc(r->jobs, sizeof *r->slots);
    r->pfds = calloc(r->jobs, sizeof *r->pfds);
    r->seen = calloc(n ? n : 1, sizeof *r->seen);
    if (!r->slots || !r->pfds || !r->seen)
        return rz__error(RZ_ENOMEM, "out of memory");
    r->t0 = rz__now_ms();
    int rc = rz_run_new(&r->run, flow, opts->inputs_json, opts->run_id,
                        r->t0);
    if (rc != RZ_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        r->seen[i] = RZ_STEP_PENDING;
    return RZ_OK;
}

static void runner_free(runner *r)
{
    while (r->n_slots > 0)
        drop_slot(r, r->n_slots - 1);
    rz_engine_close(r->engine);
    remove_dir(r->dir);
    free(r->slots);
    free(r->pfds);
    free(r->seen);
}

int rz_runner_run(rz_run **out, const rz_flow *flow,
                  const rz_runner_opts *opts)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_runner_run: out is NULL");
    *out = NULL;
    rz_runner_opts defaults = RZ_RUNNER_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    if (!flow || opts->version != RZ_RUNNER_OPTS_VERSION)
        return rz__error(RZ_EINVAL, "rz_runner_run: invalid arguments");
    runner r;
    memset(&r, 0, sizeof r);
    int rc = runner_init(&r, flow, opts);
    if (rc == RZ_OK) {
        if (opts->sandbox && !rz_sandbox_available())
            emit(&r, RZ_EVENT_NOTICE, RZ_NPOS, rz__sandbox_installed()
                 ? "bubblewrap cannot create a sandbox here (no user "
                   "namespaces?); steps run without a sandbox"
                 : "bubblewrap not found; steps run without a sandbox");
        report_changes(&r);
        rc = engine_start(&r);
    }
    if (rc == RZ_OK)
        rc = drive(&r);
    runner_free(&r);
    if (rc != RZ_OK) {
        rz_run_free(r.run);
        return rc;
    }
    emit(&r, RZ_EVENT_RUN_FINISHED, RZ_NPOS,
         rz_run_state_name(rz_run_state_get(r.run)));
    *out = r.run;
    return RZ_OK;
}
