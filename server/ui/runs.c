/* Runs started from the console: each on a thread of its own through
 * rz_runner_run, the same runner as `rhizos flow run`, and recorded in the
 * run store of --data so `rhizos flow runs` lists them.
 *
 * This process holds the store open once and hands it to each runner
 * (rz_runner_opts.store, not data_dir): LMDB must not have one environment
 * open twice in a process, and two runs at once would each open it. The
 * runner writes the records as `rhizos flow run` does, step cache
 * included, so `rhizos flow resume` takes these runs too. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui.h"

/* A step's lines streamed so far: its last RZ_RUN_LOG_MAX bytes are
 * shown, as a record keeps a log. The buffer may hold up to twice that, so
 * the head is dropped by one move now and then, not on every line. */
#define LIVE_KEEP RZ_RUN_LOG_MAX
typedef struct live_log {
    char *buf;                /* NUL-terminated */
    size_t len, cap;
    uint64_t total;           /* bytes ever added: where a watcher is */
} live_log;

typedef struct ui_run {
    char id[64];
    rz_flow *flow;
    char *inputs;
    pthread_t thread;
    volatile int cancel;
    char *status;             /* rz_run_to_json, latest; under rs->mu */
    uint64_t version;         /* bumped when status changes */
    live_log *live;           /* per step of flow */
    size_t n_live;
    bool stored;              /* the final record is written */
    bool finished;            /* its state is final: nothing to cancel */
    bool done;                /* the runner has returned */
    uint64_t started_ms;
    struct ui_runs *rs;
    struct ui_run *next;
} ui_run;

struct ui_runs {
    pthread_mutex_t mu;
    ui_runs_opts opts;
    rz_store *store;
    ui_run *head;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

ui_runs *ui_runs_open(const ui_runs_opts *opts)
{
    ui_runs *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->opts = *opts;
    if (rz_fs_mkdirs(opts->data_dir, 0700) != RZ_OK ||
        rz_store_open(&rs->store, opts->data_dir) != RZ_OK) {
        fprintf(stderr, "rhizos ui: %s: %s\n", opts->data_dir, rz_error_last()->message);
        free(rs);
        return NULL;
    }
    pthread_mutex_init(&rs->mu, NULL);
    return rs;
}

static ui_run *find(ui_runs *rs, const char *id)
{
    for (ui_run *u = rs->head; u; u = u->next)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

/* The shown part of l: its last LIVE_KEEP bytes, from a UTF-8 boundary. */
static const char *live_view(const live_log *l)
{
    if (!l->buf)
        return NULL;
    const char *v = l->buf + (l->len > LIVE_KEEP ? l->len - LIVE_KEEP : 0);
    while (((unsigned char)*v & 0xC0) == 0x80)
        v++;
    return v;
}

/* Append msg and a newline; amortised linear in what is added, and never
 * more than 2 * LIVE_KEEP bytes held. Out of memory: the lines are lost. */
static void live_add(live_log *l, const char *msg)
{
    size_t n = strlen(msg);
    l->total += n + 1;
    if (n + 1 > LIVE_KEEP) {   /* longer than what is shown: only its tail */
        msg += n + 1 - LIVE_KEEP;
        n = LIVE_KEEP - 1;
        l->len = 0;
    } else if (l->len + n + 1 > 2 * LIVE_KEEP) {
        size_t keep = LIVE_KEEP - (n + 1);
        memmove(l->buf, l->buf + l->len - keep, keep);
        l->len = keep;
    }
    if (l->len + n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n + 2)
            cap *= 2;
        if (cap > 2 * LIVE_KEEP + 1)
            cap = 2 * LIVE_KEEP + 1;
        char *b = realloc(l->buf, cap);
        if (!b)
            return;
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, msg, n);
    l->buf[l->len + n] = '\n';
    l->len += n + 1;
    l->buf[l->len] = '\0';
}

/* Called on the runner's thread: the status as it is now, the streamed
 * lines, and the run on record from its first event. */
static void on_event(const rz_event *ev, void *userdata)
{
    ui_run *u = userdata;
    if (ev->kind == RZ_EVENT_PROGRESS)
        return;
    char *json = NULL;
    if (ev->kind != RZ_EVENT_STEP_LOG && rz_run_to_json(ev->run, &json) != RZ_OK)
        json = NULL;
    pthread_mutex_lock(&u->rs->mu);
    if (ev->kind == RZ_EVENT_STEP_LOG && ev->message && ev->step < u->n_live)
        live_add(&u->live[ev->step], ev->message);
    if (json) {
        free(u->status);
        u->status = strdup(json);
        u->version++;
    }
    u->finished |= ev->kind == RZ_EVENT_RUN_FINISHED || rz_run_done(ev->run);
    pthread_mutex_unlock(&u->rs->mu);
    rz_free(json);
}

static void *run_main(void *arg)
{
    ui_run *u = arg;
    const ui_runs_opts *o = &u->rs->opts;
    rz_runner_opts ro = RZ_RUNNER_OPTS_INIT;
    ro.jobs = o->jobs;
    ro.sandbox = o->sandbox;
    ro.container_host = o->container_host;
    ro.prices = o->prices;
    ro.inputs_json = u->inputs;
    ro.run_id = u->id;
    ro.on_event = on_event;
    ro.userdata = u;
    ro.cancel = &u->cancel;
    ro.store = u->rs->store;
    rz_run *run = NULL;
    int rc = rz_runner_run(&run, u->flow, &ro);
    char *json = NULL;
    if (run && rz_run_to_json(run, &json) != RZ_OK)
        json = NULL;
    pthread_mutex_lock(&u->rs->mu);
    if (json) {
        free(u->status);
        u->status = strdup(json);
    } else if (!run) {
        /* Could not be carried out at all: a status that says why. */
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "id", u->id);
        cJSON_AddStringToObject(doc, "flow", rz_flow_name(u->flow));
        cJSON_AddStringToObject(doc, "status", "failed");
        cJSON_AddStringToObject(doc, "error", rz_error_last()->message);
        cJSON_AddObjectToObject(doc, "steps");
        free(u->status);
        u->status = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
    }
    u->stored = run && rc == RZ_OK;   /* the runner wrote its final record */
    if (run && !u->stored)
        fprintf(stderr, "rhizos ui: run %s not recorded: %s\n", u->id,
                rz_error_last()->message);
    u->done = true;
    pthread_mutex_unlock(&u->rs->mu);
    rz_free(json);
    rz_run_free(run);
    return NULL;
}

static void entry_free(ui_run *u)
{
    free(u->status);
    free(u->inputs);
    for (size_t i = 0; i < u->n_live; i++)
        free(u->live[i].buf);
    free(u->live);
    rz_flow_free(u->flow);
    free(u);
}

/* Finished runs whose final record is written are answered from the store
 * from now on: their threads joined (they are returning) and freed, so a
 * long session does not keep every run it started. Under rs->mu. */
static void reap(ui_runs *rs)
{
    for (ui_run **at = &rs->head; *at;) {
        ui_run *u = *at;
        if (!u->done || !u->stored) {
            at = &u->next;
            continue;
        }
        *at = u->next;
        pthread_join(u->thread, NULL);
        entry_free(u);
    }
}

int ui_runs_start(ui_runs *rs, rz_flow *flow, const char *inputs_json, char id[64])
{
    ui_run *u = calloc(1, sizeof *u);
    size_t n = rz_flow_step_count(flow);
    if (!u || !(u->live = calloc(n ? n : 1, sizeof *u->live)) ||
        (inputs_json && !(u->inputs = strdup(inputs_json)))) {
        if (u)
            free(u->live);
        free(u);
        rz_flow_free(flow);
        return RZ_ENOMEM;
    }
    u->n_live = n;
    u->version = 1;   /* a watcher starts at 0: the first tick sends it */
    u->flow = flow;
    u->rs = rs;
    u->started_ms = now_ms();
    pthread_mutex_lock(&rs->mu);
    reap(rs);
    int made;
    do
        made = rz_store_run_id_make(u->id, sizeof u->id);
    while (made == RZ_OK && find(rs, u->id));
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", u->id);
    cJSON_AddStringToObject(doc, "flow", rz_flow_name(flow));
    cJSON_AddStringToObject(doc, "status", "pending");
    cJSON *steps = cJSON_AddObjectToObject(doc, "steps");
    for (size_t i = 0; i < rz_flow_step_count(flow); i++)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(steps, rz_flow_step_id(flow, i)),
                                "status", "pending");
    u->status = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = made == RZ_OK && u->status &&
             pthread_create(&u->thread, NULL, run_main, u) == 0 ? RZ_OK : RZ_ENOMEM;
    if (rc == RZ_OK) {
        u->next = rs->head;
        rs->head = u;
        memcpy(id, u->id, 64);
    }
    pthread_mutex_unlock(&rs->mu);
    if (rc != RZ_OK)
        entry_free(u);
    return rc;
}

size_t ui_runs_active(ui_runs *rs)
{
    size_t n = 0;
    pthread_mutex_lock(&rs->mu);
    for (ui_run *u = rs->head; u; u = u->next)
        n += !u->done;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

cJSON *ui_runs_list(ui_runs *rs, size_t limit)
{
    char *text = NULL;
    pthread_mutex_lock(&rs->mu);
    int rc = rz_store_run_list_newest(rs->store, limit, &text, NULL);
    cJSON *arr = rc == RZ_OK ? cJSON_Parse(text) : NULL;
    rz_free(text);
    /* Started here but not on record yet: first. */
    for (ui_run *u = rs->head; arr && u; u = u->next) {
        const cJSON *r;
        bool listed = false;
        cJSON_ArrayForEach(r, arr) {
            const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id"));
            listed |= rid && strcmp(rid, u->id) == 0;
        }
        if (listed)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", u->id);
        cJSON_AddStringToObject(e, "flow", rz_flow_name(u->flow));
        cJSON_AddStringToObject(e, "status", u->done ? "failed" : "pending");
        cJSON_AddNumberToObject(e, "started_ms", (double)u->started_ms);
        cJSON_AddNumberToObject(e, "steps", (double)rz_flow_step_count(u->flow));
        cJSON_InsertItemInArray(arr, 0, e);
    }
    pthread_mutex_unlock(&rs->mu);
    if (!arr)
        return NULL;
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "flows", arr);
    return doc;
}

/* Each step without a log of its own shows the lines streamed so far. */
static char *with_live(const ui_run *u)
{
    cJSON *doc = cJSON_Parse(u->status);
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
    for (size_t i = 0; steps && i < u->n_live; i++) {
        const char *v = live_view(&u->live[i]);
        cJSON *s = v ? cJSON_GetObjectItemCaseSensitive(steps, rz_flow_step_id(u->flow, i)) : NULL;
        if (s && !cJSON_GetObjectItemCaseSensitive(s, "log"))
            cJSON_AddStringToObject(s, "log", v);
    }
    char *out = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    return out;
}

/* Whether another process's run, as recorded, will change no more: it
 * ended, or its process is gone (killed: the store tells it). */
static bool record_done(const cJSON *doc)
{
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status"));
    return !st || (strcmp(st, "running") != 0 && strcmp(st, "pending") != 0) ||
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "process_gone"));
}

int ui_runs_status(ui_runs *rs, const char *id, char **out, bool *done)
{
    *out = NULL;
    *done = false;
    pthread_mutex_lock(&rs->mu);
    ui_run *u = find(rs, id);
    int rc = RZ_OK;
    if (u) {
        *out = with_live(u);
        *done = u->done;
    } else {
        char *rec = NULL;
        rc = rz_store_run_get(rs->store, id, &rec);
        if (rc == RZ_OK) {
            *out = strdup(rec);
            /* Another process's run still going: it changes there. */
            cJSON *doc = cJSON_Parse(rec);
            *done = record_done(doc);
            cJSON_Delete(doc);
        }
        rz_free(rec);
    }
    pthread_mutex_unlock(&rs->mu);
    if (rc == RZ_OK && !*out)
        rc = RZ_ENOMEM;
    return rc;
}

struct ui_watch {
    uint64_t version;    /* of the live status last sent; 0: none yet */
    char *record;        /* the stored record last seen (a run not live here) */
    size_t n;
    uint64_t *sent;      /* per step: log bytes sent (its total when live) */
};

ui_watch *ui_watch_new(void)
{
    return calloc(1, sizeof(ui_watch));
}

void ui_watch_free(ui_watch *w)
{
    if (w) {
        free(w->record);
        free(w->sent);
        free(w);
    }
}

static bool watch_size(ui_watch *w, size_t n)
{
    if (n <= w->n)
        return true;
    uint64_t *s = realloc(w->sent, n * sizeof *s);
    if (!s)
        return false;
    memset(s + w->n, 0, (n - w->n) * sizeof *s);
    w->sent = s;
    w->n = n;
    return true;
}

/* The status doc without its steps' logs; each log not sent before (a step
 * that streamed nothing, or a record read from the store) into logs. */
static char *strip_logs(ui_watch *w, const char *status, cJSON *logs)
{
    cJSON *doc = cJSON_Parse(status);
    cJSON *step;
    size_t i = 0;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(doc, "steps")) {
        cJSON *log = cJSON_DetachItemFromObjectCaseSensitive(step, "log");
        const char *l = cJSON_GetStringValue(log);
        if (l && watch_size(w, i + 1) && strlen(l) > w->sent[i]) {
            cJSON_AddStringToObject(logs, step->string, l + w->sent[i]);
            w->sent[i] = strlen(l);
        }
        cJSON_Delete(log);
        i++;
    }
    char *out = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    return out;
}

int ui_runs_watch(ui_runs *rs, const char *id, ui_watch *w, char **status,
                  cJSON *logs, bool *done)
{
    *status = NULL;
    *done = false;
    int rc = RZ_OK;
    pthread_mutex_lock(&rs->mu);
    ui_run *u = find(rs, id);
    if (u) {
        *done = u->done;
        if (!watch_size(w, u->n_live)) {
            rc = RZ_ENOMEM;
        } else {
            /* New lines: from the buffer, or its shown tail if more came
             * than it keeps. They start where the last lines sent ended. */
            for (size_t i = 0; i < u->n_live; i++) {
                const live_log *l = &u->live[i];
                if (l->total <= w->sent[i] || !l->buf)
                    continue;
                uint64_t fresh = l->total - w->sent[i];
                const char *v = live_view(l);
                if (fresh < (uint64_t)(l->buf + l->len - v))
                    v = l->buf + l->len - fresh;
                cJSON_AddStringToObject(logs, rz_flow_step_id(u->flow, i), v);
                w->sent[i] = l->total;
            }
            /* The logs a status carries (steps done) were streamed, unless
             * the step streamed nothing: strip_logs sends those. */
            if (u->version != w->version || *done) {
                *status = strip_logs(w, u->status, logs);
                rc = *status ? RZ_OK : RZ_ENOMEM;
                w->version = u->version;
            }
        }
    } else {
        char *rec = NULL;
        rc = rz_store_run_get(rs->store, id, &rec);
        if (rc == RZ_OK) {
            /* Another process's run: parsed only when its record changed. */
            bool changed = !w->record || strcmp(w->record, rec) != 0;
            cJSON *doc = changed ? cJSON_Parse(rec) : NULL;
            *done = changed && record_done(doc);
            cJSON_Delete(doc);
            if (changed || *done) {
                *status = strip_logs(w, rec, logs);
                free(w->record);
                w->record = strdup(rec);
                rc = *status && w->record ? RZ_OK : RZ_ENOMEM;
            }
        }
        rz_free(rec);
    }
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

int ui_runs_cancel(ui_runs *rs, const char *id)
{
    pthread_mutex_lock(&rs->mu);
    ui_run *u = find(rs, id);
    int rc = RZ_OK;
    char *rec = NULL;
    if (u && !u->done && !u->finished)
        u->cancel = 1;
    else if (u)
        rc = RZ_ESTATE;
    else
        rc = rz_store_run_get(rs->store, id, &rec) == RZ_OK ? RZ_ESTATE : RZ_ENOENT;
    rz_free(rec);
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

void ui_runs_close(ui_runs *rs)
{
    if (!rs)
        return;
    pthread_mutex_lock(&rs->mu);
    for (ui_run *u = rs->head; u; u = u->next)
        u->cancel = 1;
    pthread_mutex_unlock(&rs->mu);
    while (rs->head) {
        ui_run *u = rs->head;
        rs->head = u->next;
        pthread_join(u->thread, NULL);
        entry_free(u);
    }
    rz_store_close(rs->store);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}
