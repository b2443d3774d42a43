/* The local runner: drives an rz_run on this machine with the process
 * adapter. One thread, one poll() over every running process; the state
 * machine decides what runs, this file only starts, watches and reports.
 *
 * Events come from diffing step states after every call that can change
 * them, so skips and cancellations the state machine makes on its own
 * (a `when` that is false, dependants of a failed step) are reported too.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "exec/exec_impl.h"
#include "flow/model.h"
#include "module/module_impl.h"

#define MAX_WAIT_MS 200          /* also bounds the reaction to *cancel */
#define REASON_LOG_LINE 200      /* bytes of the log quoted in a failure */

typedef struct slot {
    size_t step;
    rz_proc *proc;
    uint32_t timeout_s;          /* what the process was given */
    char **secrets;              /* from opts->step_env, kept to scrub */
} slot;

typedef struct runner {
    const rz_flow *flow;
    const rz_runner_opts *opts;
    rz_run *run;
    uint64_t t0;
    unsigned jobs;
    slot *slots;                 /* running processes, n_slots of them */
    size_t n_slots;
    rz_step_state *seen;         /* last reported state of every step */
    size_t *ready;               /* scratch for rz_run_ready / rz_run_tick */
    struct pollfd *pfds;
    bool cancelled;
    uint64_t last_progress;      /* when RZ_EVENT_PROGRESS was last sent */
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

/* ---- failure reasons ---- */

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

static void fail_step(runner *r, size_t step, const char *reason)
{
    rz_run_fail(r->run, step, reason ? reason : "out of memory",
                rz__now_ms());
    report_changes(r);
}

/* ---- starting steps ---- */

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

static int spawn_step(runner *r, size_t step, const rz__step *s,
                      char **secrets, rz_proc **out)
{
    const rz_module *m = s->module;
    char *request = NULL;
    char **env = step_env(r, step, secrets);
    int rc = env ? rz_run_request(r->run, step, &request)
                 : rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK) {
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
        rc = rz_proc_spawn(out, &po);
    }
    rz_free(request);
    free_env(env);
    return rc;
}

/* False if the state machine refused to start it. */
static bool start_step(runner *r, size_t step)
{
    const rz__step *s = &r->flow->steps[step];
    if (rz_run_start(r->run, step, rz__now_ms()) != RZ_OK)
        return false;
    report_changes(r);
    const rz_module *m = s->module;
    char *why = NULL;
    rz_proc *p = NULL;
    char **secrets = NULL;
    if (!m) {
        why = rz__asprintf("module '%s' is not resolved (validate the flow "
                           "against a registry first)", s->module_id);
    } else if (!m->adapter || strcmp(m->adapter, "process") != 0) {
        why = rz__asprintf("adapter '%s' is not available in the embedded "
                           "runner", m->adapter ? m->adapter : "");
    } else if (!m->command || !m->command[0]) {
        why = rz__asprintf("module '%s' has no exec.command", m->id);
    } else if (r->opts->step_env &&
               r->opts->step_env(step, &secrets, r->opts->userdata) != RZ_OK) {
        secrets = NULL;
        why = rz__asprintf("credentials: %s", rz_error_last()->message);
    } else if (spawn_step(r, step, s, secrets, &p) != RZ_OK) {
        why = rz__asprintf("cannot start: %s", rz_error_last()->message);
    }
    if (!p) {
        free_secrets(r, secrets);
        fail_step(r, step, why);
        free(why);
        return true;
    }
    r->slots[r->n_slots++] = (slot){ step, p, step_timeout(s), secrets };
    return true;
}

/* Fill free slots; repeat while that changes something, since a step that
 * fails at once (say, on_failure: continue) can make others ready. */
static void start_ready(runner *r)
{
    size_t n_steps = rz_flow_step_count(r->flow);
    bool progress = true;
    while (progress && !r->cancelled && r->n_slots < r->jobs) {
        size_t n = rz_run_ready(r->run, rz__now_ms(), r->ready, n_steps);
        report_changes(r);
        size_t room = r->jobs - r->n_slots;
        if (n > room)
            n = room;
        if (n > n_steps)
            n = n_steps;
        progress = false;
        for (size_t i = 0; i < n; i++)
            progress |= start_step(r, r->ready[i]);
    }
}

/* ---- finishing steps ---- */

static void drop_slot(runner *r, size_t k)
{
    rz_proc_free(r->slots[k].proc);
    free_secrets(r, r->slots[k].secrets);
    r->slots[k] = r->slots[--r->n_slots];
}

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

static void finish_slot(runner *r, size_t k)
{
    slot *sl = &r->slots[k];
    const rz_proc *p = sl->proc;
    char *outputs = rz__strdup(rz_proc_outputs(p));
    scrub(sl, &outputs, NULL);
    keep_log(r, sl);
    uint64_t now = rz__now_ms();
    if (rz_run_step_state(r->run, sl->step) != RZ_STEP_RUNNING) {
        /* Already failed by the state machine (its timeout). */
    } else if (r->cancelled) {
        /* Reported as failed; cancel again so no retry gets scheduled. */
        fail_step(r, sl->step, "cancelled");
        rz_run_cancel(r->run, now);
        report_changes(r);
    } else if (rz_proc_exit_code(p) == 0 && outputs &&
               !rz_proc_timed_out(p)) {
        if (rz_run_succeed(r->run, sl->step, outputs, now) != RZ_OK &&
            rz_run_step_state(r->run, sl->step) == RZ_STEP_RUNNING) {
            char *why = rz__asprintf("outputs rejected: %s",
                                     rz_error_last()->message);
            fail_step(r, sl->step, why);
            free(why);
        }
        report_changes(r);
    } else {
        char *why = failure_reason(p, sl->timeout_s);
        scrub(sl, NULL, &why);
        fail_step(r, sl->step, why);
        free(why);
    }
    free(outputs);
    drop_slot(r, k);
}

static size_t slot_of(const runner *r, size_t step)
{
    for (size_t k = 0; k < r->n_slots; k++)
        if (r->slots[k].step == step)
            return k;
    return RZ_NPOS;
}

/* Steps the state machine timed out: stop their processes. */
static void expire(runner *r)
{
    size_t n_steps = rz_flow_step_count(r->flow);
    size_t n = rz_run_tick(r->run, rz__now_ms(), r->ready, n_steps);
    report_changes(r);
    for (size_t i = 0; i < n && i < n_steps; i++) {
        size_t k = slot_of(r, r->ready[i]);
        if (k != RZ_NPOS)
            drop_slot(r, k);   /* kills the group, reaps, cleans up */
    }
}

static void check_cancel(runner *r)
{
    if (r->cancelled || !r->opts->cancel || !*r->opts->cancel)
        return;
    r->cancelled = true;
    rz_run_cancel(r->run, rz__now_ms());
    report_changes(r);
    for (size_t k = 0; k < r->n_slots; k++)
        rz_proc_kill(r->slots[k].proc);
}

/* ---- the loop ---- */

static int wait_ms(const runner *r)
{
    uint64_t next = rz_run_next_wakeup(r->run), now = rz__now_ms();
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
    for (size_t k = r->n_slots; k-- > 0;) {
        int done = rz_proc_poll(r->slots[k].proc, 0);
        if (done < 0)
            return done;
        if (done)
            finish_slot(r, k);
    }
    return RZ_OK;
}

static bool stalled(const runner *r)
{
    return r->n_slots == 0 && !rz_run_done(r->run) &&
           rz_run_next_wakeup(r->run) == UINT64_MAX &&
           rz_run_ready(r->run, rz__now_ms(), r->ready, 0) == 0;
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
    while (!rz_run_done(r->run) || r->n_slots > 0) {
        check_cancel(r);
        expire(r);
        start_ready(r);
        if (rz_run_done(r->run) && r->n_slots == 0)
            break;
        if (stalled(r))
            return rz__error(RZ_EINTERNAL, "run %s cannot make progress",
                             rz_run_id(r->run));
        int rc = wait_and_collect(r);
        if (rc != RZ_OK)
            return rc;
        progress_tick(r);
    }
    return RZ_OK;
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
    r->ready = calloc(n ? n : 1, sizeof *r->ready);
    if (!r->slots || !r->pfds || !r->seen || !r->ready)
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
    free(r->slots);
    free(r->pfds);
    free(r->seen);
    free(r->ready);
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
        rc = drive(&r);
    }
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
