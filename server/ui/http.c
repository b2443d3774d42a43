/* rhizos-ui's HTTP side: loopback only, a token per start, the console's
 * files and the part of /api/v1 its builder and run views ask, answered
 * from the library (the orchestrator's reply shapes, docs/api.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "builderjson.h"
#include "httpconn.h"
#include "ui_http.h"
#include "webfiles.h"

#define BODY_MAX (1u << 20)
#define QUERY_MAX 200u
#define MODULES_PAGE 100u
#define MODULES_PAGE_MAX 1000u
#define RUNS_PAGE 200u
#define WATCH_MS 250
#define KEEPALIVE_MS 15000
#define CONNS_MAX 64

/* ---- replies ---- */

static void reply(struct evhttp_request *r, int code, const char *type,
                  const char *text, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    struct evbuffer *b = evbuffer_new();
    if (type)
        evhttp_add_header(h, "Content-Type", type);
    if (!evhttp_find_header(h, "Cache-Control"))   /* files set their own */
        evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(r) == EVHTTP_REQ_HEAD) {
        char n[24];
        snprintf(n, sizeof n, "%zu", text ? len : 0);
        evhttp_add_header(h, "Content-Length", n);
    } else if (b && text && len) {
        evbuffer_add(b, text, len);
    }
    evhttp_send_reply(r, code, NULL, b);
    if (b)
        evbuffer_free(b);
}

static void reply_json(struct evhttp_request *r, int code, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"RZ_ENOMEM\",\"message\":\"out of memory\"}}";
        reply(r, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    reply(r, code, "application/json", text, strlen(text));
    free(text);
}

/* The orchestrator's mapping (server/orchestrator/http.c). */
static int status_of(int rc)
{
    switch (rc) {
    case RZ_EINVAL: case RZ_ESYNTAX: case RZ_ETYPE: case RZ_EDUPLICATE: return 400;
    case RZ_EAUTH: return 401;
    case RZ_EDENIED: return 403;
    case RZ_ENOENT: return 404;
    case RZ_ESTATE: case RZ_EEXISTS: return 409;
    case RZ_ETOOBIG: return 413;
    case RZ_EINVALID: case RZ_EMODULE: case RZ_ECONFIG: case RZ_ECREDENTIAL:
    case RZ_EUNSUPPORTED:
        return 422;
    default: return 500;
    }
}

static cJSON *error_doc(int rc, const char *msg)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddStringToObject(e, "code", rz_status_name(rc));
    cJSON_AddStringToObject(e, "message", msg);
    return doc;
}

static void reply_error(struct evhttp_request *r, int rc, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json(r, status_of(rc), error_doc(rc, msg));
}

static void reply_diags(struct evhttp_request *r, int rc, const rz_diags *d)
{
    cJSON *doc = error_doc(rc, rz_diags_count(d) ? rz_diags_get(d, 0)->message
                                                 : rz_strerror(rc));
    cJSON_AddItemToObject(doc, "diagnostics", builder_diags_json(d));
    reply_json(r, status_of(rc), doc);
}

/* ---- who may ask ---- */

/* An IP literal or localhost, with an optional port: anything else is a
 * name a page elsewhere could have pointed at this address (DNS
 * rebinding), as the node's local API checks. */
static bool host_allowed(const char *host)
{
    char h[INET6_ADDRSTRLEN + 8];
    if (!host || strlen(host) >= sizeof h)
        return false;
    strcpy(h, host);
    unsigned char bin[16];
    if (h[0] == '[') {
        char *end = strchr(h, ']');
        if (!end || (end[1] && end[1] != ':'))
            return false;
        *end = '\0';
        return inet_pton(AF_INET6, h + 1, bin) == 1;
    }
    char *colon = strrchr(h, ':');
    if (colon)
        *colon = '\0';
    return strcmp(h, "localhost") == 0 || inet_pton(AF_INET, h, bin) == 1;
}

/* "Bearer TOKEN", compared in constant time. */
static bool token_ok(const ui_server *s, struct evhttp_request *r)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(r),
                                       "Authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    a += 7;
    size_t n = strlen(a), m = strlen(s->token);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(s->token[i] ^ (i < n ? a[i] : 0));
    return diff == 0;
}

/* ---- bodies ---- */

/* The request's JSON object body; NULL: answered. */
static cJSON *body_object(struct evhttp_request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(in);
    if (n > BODY_MAX) {
        reply_error(r, RZ_ETOOBIG, "the body is over %u bytes", BODY_MAX);
        return NULL;
    }
    char *text = malloc(n + 1);
    if (!text) {
        reply_error(r, RZ_ENOMEM, "out of memory");
        return NULL;
    }
    evbuffer_copyout(in, text, n);
    text[n] = '\0';
    cJSON *doc = strlen(text) == n ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        reply_error(r, RZ_EINVAL, "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

/* The body's "flow" (YAML/JSON text or an object) parsed and validated
 * against the registry, diagnostics in d; rc its outcome. false:
 * answered. Fields other than `allowed` are refused, as the
 * orchestrator does. */
static bool parse_flow(ui_server *s, struct evhttp_request *r, const cJSON *body,
                       const char *const *allowed, rz_diags *d, rz_flow **flow, int *rc,
                       char **text_out)
{
    *flow = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, body) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known |= strcmp(it->string, *a) == 0;
        if (!known) {
            reply_error(r, RZ_EINVAL, "unknown field \"%.64s\"", it->string);
            return false;
        }
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "flow");
    char *text = cJSON_IsString(f) ? strdup(f->valuestring)
               : cJSON_IsObject(f) ? cJSON_PrintUnformatted(f) : NULL;
    if (!text) {
        reply_error(r, cJSON_IsString(f) || cJSON_IsObject(f) ? RZ_ENOMEM : RZ_EINVAL,
                    "\"flow\" must be a YAML or JSON text, or an object");
        return false;
    }
    *rc = rz_flow_parse(flow, text, strlen(text), RZ_FORMAT_AUTO, "flow", d);
    if (*rc == RZ_OK)
        *rc = rz_flow_validate(*flow, s->reg, d);
    if (text_out)
        *text_out = text;
    else
        free(text);
    if (*rc == RZ_ENOMEM) {
        reply_error(r, RZ_ENOMEM, "out of memory");
        return false;
    }
    rz_diags_sort(d);
    return true;
}

/* ---- routes ---- */

static void r_stats(ui_server *s, struct evhttp_request *r)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "mode", "local");
    cJSON_AddStringToObject(doc, "version", rz_version());
    cJSON *f = cJSON_AddObjectToObject(doc, "flows");
    cJSON_AddNumberToObject(f, "running", (double)ui_runs_active(s->runs));
    reply_json(r, 200, doc);
}

static void r_validate(ui_server *s, struct evhttp_request *r, const cJSON *body)
{
    static const char *const fields[] = { "flow", NULL };
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    int rc = RZ_OK;
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(r, RZ_ENOMEM, "out of memory");
        return;
    }
    if (parse_flow(s, r, body, fields, d, &flow, &rc, NULL))
        reply_json(r, 200, builder_validate_json(rc, d));
    rz_flow_free(flow);
    rz_diags_free(d);
}

static void r_estimate(ui_server *s, struct evhttp_request *r, const cJSON *body)
{
    static const char *const fields[] = { "flow", NULL };
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    rz_estimate *e = NULL;
    int rc = RZ_OK;
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(r, RZ_ENOMEM, "out of memory");
        return;
    }
    if (!parse_flow(s, r, body, fields, d, &flow, &rc, NULL)) {
        ;
    } else if (rc != RZ_OK) {
        reply_diags(r, RZ_EINVALID, d);
    } else if (!s->prices) {
        reply_error(r, RZ_ENOENT, "no price tables: the shipped data/prices is missing");
    } else if ((rc = rz_estimate_flow(&e, flow, s->prices)) != RZ_OK) {
        reply_error(r, rc, "%s", rz_error_last()->message);
    } else {
        char *json = NULL;
        cJSON *doc = rz_estimate_to_json(e, &json) == RZ_OK ? cJSON_Parse(json) : NULL;
        rz_free(json);
        reply_json(r, 200, doc);
    }
    rz_estimate_free(e);
    rz_flow_free(flow);
    rz_diags_free(d);
}

/* The flow to run, kept as a file in --data (console-flows/) and loaded
 * from there, so that the run's record names it and `rhizos flow resume
 * RUN` reads it back as it reads a CLI run's flow file. The file is only
 * made, never replaced. *flow, its path in `path`; NULL with the reason in
 * `why`. */
static rz_flow *keep_flow(ui_server *s, const char *text, char *path, size_t cap,
                          char *why, size_t wcap)
{
    char made[PATH_MAX], dir[PATH_MAX], id[64];
    int fd = -1;
    /* Absolute: the record is read from wherever `flow resume` runs. */
    bool ok = snprintf(made, sizeof made, "%s/console-flows", s->opts.data_dir) <
              (int)sizeof made && rz_fs_mkdirs(made, 0700) == RZ_OK && realpath(made, dir);
    snprintf(why, wcap, "%s", ok ? "" : "cannot make --data/console-flows");
    const char *ext = text[strspn(text, " \t\r\n")] == '{' ? "json" : "yaml";
    for (int i = 0; ok && fd < 0 && i < 16; i++) {
        ok = rz_store_run_id_make(id, sizeof id) == RZ_OK &&
             snprintf(path, cap, "%s/%s.%s", dir, id + 4, ext) < (int)cap;
        if (ok && (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 &&
            errno != EEXIST)
            ok = false;
    }
    if (ok && fd < 0)
        ok = false;
    size_t n = strlen(text), done = 0;
    while (ok && done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        done += ok ? (size_t)w : 0;
    }
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (!ok && !why[0])
        snprintf(why, wcap, "%s: %s", fd >= 0 ? path : dir, strerror(errno));
    rz_flow *flow = NULL;
    if (ok && (rz_flow_load(&flow, path, RZ_FORMAT_AUTO, NULL) != RZ_OK ||
               rz_flow_validate(flow, s->reg, NULL) != RZ_OK)) {
        snprintf(why, wcap, "%s", rz_error_last()->message);
        rz_flow_free(flow);
        flow = NULL;
    }
    if (!flow && fd >= 0)
        unlink(path);
    return flow;
}

/* Start an embedded run: {"flow", "inputs"?} -> 201 {"id","status"}. */
static void r_deploy(ui_server *s, struct evhttp_request *r, const cJSON *body)
{
    static const char *const fields[] = { "flow", "inputs", "name", "note", NULL };
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    int rc = RZ_OK;
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(body, "inputs");
    if (inputs && !cJSON_IsObject(inputs)) {
        reply_error(r, RZ_EINVAL, "\"inputs\" must be an object");
        return;
    }
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(r, RZ_ENOMEM, "out of memory");
        return;
    }
    rz_runner_opts check = RZ_RUNNER_OPTS_INIT;
    check.container_host = s->opts.container_host;
    char id[64], path[PATH_MAX], why[PATH_MAX + 64];
    char *in = inputs ? cJSON_PrintUnformatted(inputs) : NULL, *text = NULL;
    rz_flow *kept = NULL;
    if (!parse_flow(s, r, body, fields, d, &flow, &rc, &text)) {
        ;
    } else if (rc != RZ_OK) {
        reply_diags(r, RZ_EINVALID, d);
    } else if (rz_vault_flow_references(flow) > 0) {
        reply_error(r, RZ_EUNSUPPORTED, "this flow's steps need credentials: "
                    "rhizos ui runs flows without secrets; run it with "
                    "`rhizos flow run` (it asks for the vault's password)");
    } else if (rz_runner_check(flow, &check) != RZ_OK) {
        reply_error(r, RZ_EUNSUPPORTED, "%s", rz_error_last()->message);
    } else if (!(kept = keep_flow(s, text, path, sizeof path, why, sizeof why))) {
        reply_error(r, RZ_EIO, "the flow could not be kept in --data: %s", why);
    } else if ((rc = ui_runs_start(s->runs, kept, in, id)) != RZ_OK) {
        unlink(path);   /* kept (taken) for a run that never started */
        reply_error(r, rc, "the run could not start: %s", rz_error_last()->message);
    } else {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "id", id);
        cJSON_AddStringToObject(doc, "status", "running");
        reply_json(r, 201, doc);
    }
    free(in);
    free(text);
    rz_flow_free(flow);
    rz_diags_free(d);
}

/* A whole number from the query, default `def`, at most `max`. */
static bool query_num(struct evhttp_request *r, const struct evkeyvalq *qs,
                      const char *name, unsigned def, unsigned max, unsigned *out)
{
    const char *v = qs ? evhttp_find_header(qs, name) : NULL;
    *out = def;
    if (!v)
        return true;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || *v == '-' || n > max) {
        reply_error(r, RZ_EINVAL, "\"%s\" must be a number from 0 to %u", name, max);
        return false;
    }
    *out = (unsigned)n;
    return true;
}

static void r_modules(ui_server *s, struct evhttp_request *r, const struct evkeyvalq *qs)
{
    unsigned limit;
    if (!query_num(r, qs, "limit", MODULES_PAGE, MODULES_PAGE_MAX, &limit))
        return;
    const char *want = qs ? evhttp_find_header(qs, "q") : NULL;
    if (want && strlen(want) > QUERY_MAX) {
        reply_error(r, RZ_EINVAL, "\"q\" is at most %u bytes", QUERY_MAX);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "modules");
    size_t total = 0;
    for (size_t i = 0; i < rz_registry_count(s->reg); i++) {
        const rz_module *m = rz_registry_get(s->reg, i);
        if (!builder_module_matches(m, want))
            continue;
        if (total++ < limit)
            cJSON_AddItemToArray(arr, builder_module_json(m));
    }
    cJSON_AddNumberToObject(doc, "total", (double)total);
    reply_json(r, 200, doc);
}

static void r_runs(ui_server *s, struct evhttp_request *r, const struct evkeyvalq *qs)
{
    unsigned limit;
    if (!query_num(r, qs, "limit", RUNS_PAGE, 10000, &limit))
        return;
    cJSON *doc = ui_runs_list(s->runs, limit);
    if (doc)
        reply_json(r, 200, doc);
    else
        reply_error(r, RZ_EIO, "the run history cannot be read: %s",
                    rz_error_last()->message);
}

static void r_run(ui_server *s, struct evhttp_request *r, const char *id)
{
    char *text = NULL;
    bool done;
    int rc = ui_runs_status(s->runs, id, &text, &done);
    if (rc == RZ_OK)
        reply(r, 200, "application/json", text, strlen(text));
    else if (rc == RZ_ENOENT)
        reply_error(r, rc, "no run %s", id);
    else
        reply_error(r, rc, "%s", rz_error_last()->message);
    free(text);
}

/* {"id","status","steps":[{"step","attempt","status","log"}]}: the
 * orchestrator's FlowLogs without jobs (there are none here). */
static void r_logs(ui_server *s, struct evhttp_request *r, const char *id,
                   const struct evkeyvalq *qs)
{
    char *text = NULL;
    bool done;
    int rc = ui_runs_status(s->runs, id, &text, &done);
    if (rc != RZ_OK) {
        reply_error(r, rc, rc == RZ_ENOENT ? "no run %s" : "%s",
                    rc == RZ_ENOENT ? id : rz_error_last()->message);
        return;
    }
    const char *want = qs ? evhttp_find_header(qs, "step") : NULL;
    cJSON *st = cJSON_Parse(text);
    free(text);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", id);
    cJSON_AddStringToObject(doc, "status",
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "status"))
        ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "status")) : "unknown");
    cJSON *arr = cJSON_AddArrayToObject(doc, "steps");
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(st, "steps")) {
        if (want && strcmp(want, step->string) != 0)
            continue;
        cJSON *e = cJSON_CreateObject();
        const cJSON *att = cJSON_GetObjectItemCaseSensitive(step, "attempts");
        const char *ss = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(step, "status"));
        const char *log = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(step, "log"));
        cJSON_AddStringToObject(e, "step", step->string);
        cJSON_AddNumberToObject(e, "attempt", cJSON_IsNumber(att) ? att->valuedouble : 0);
        cJSON_AddStringToObject(e, "status", ss ? ss : "unknown");
        if (log)
            cJSON_AddStringToObject(e, "log", log);
        else
            cJSON_AddNullToObject(e, "log");
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_Delete(st);
    if (want && !cJSON_GetArraySize(arr)) {
        cJSON_Delete(doc);
        reply_error(r, RZ_ENOENT, "run %s has no step %.64s", id, want);
        return;
    }
    reply_json(r, 200, doc);
}

static void r_cancel(ui_server *s, struct evhttp_request *r, const char *id)
{
    int rc = ui_runs_cancel(s->runs, id);
    if (rc == RZ_ENOENT)
        reply_error(r, rc, "no run %s", id);
    else if (rc == RZ_ESTATE)
        reply_error(r, rc, "run %s is not running here (finished, or started "
                    "by another process)", id);
    else
        r_run(s, r, id);
}

/* ---- the live view: status and log lines as server-sent events ---- */

typedef struct watcher {
    ui_server *s;
    struct evhttp_request *r;
    struct evhttp_connection *conn;
    struct event *timer;
    char id[64];
    unsigned quiet;    /* ticks since something was sent */
    ui_watch *seen;    /* what was sent */
} watcher;

static void watcher_free(watcher *w)
{
    if (w->conn)
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
    event_free(w->timer);
    ui_watch_free(w->seen);
    free(w);
}

static void sse(struct evhttp_request *r, const char *event, const char *data)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, data);
    evhttp_send_reply_chunk(r, b);
    evbuffer_free(b);
}

/* New log lines of each step as "step_log" events (logs travel once, not
 * in the status). */
static void send_logs(watcher *w, const cJSON *logs)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, logs) {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "step", l->string);
        cJSON_AddStringToObject(ev, "lines", l->valuestring);
        char *t = cJSON_PrintUnformatted(ev);
        if (t)
            sse(w->r, "step_log", t);
        free(t);
        cJSON_Delete(ev);
    }
}

static void watch_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    watcher *w = arg;
    char *now = NULL;
    bool done = false;
    cJSON *logs = cJSON_CreateObject();
    int rc = logs ? ui_runs_watch(w->s->runs, w->id, w->seen, &now, logs, &done) : RZ_ENOMEM;
    send_logs(w, logs);
    cJSON_Delete(logs);
    if (now) {
        sse(w->r, done ? "end" : "status", now);
        w->quiet = 0;
    } else if (++w->quiet * WATCH_MS >= KEEPALIVE_MS) {
        /* A comment line: the connection is not idle to either side. */
        struct evbuffer *b = evbuffer_new();
        if (b && evbuffer_add_printf(b, ": still running\n\n") > 0)
            evhttp_send_reply_chunk(w->r, b);
        if (b)
            evbuffer_free(b);
        w->quiet = 0;
    }
    free(now);
    if (done || rc != RZ_OK) {
        /* Ending the reply may free the connection at once (nothing left
         * to send and a close asked for): its close callback must not
         * free w too. */
        struct evhttp_request *r = w->r;
        watcher_free(w);
        evhttp_send_reply_end(r);
        return;
    }
    struct timeval tv = { 0, WATCH_MS * 1000 };
    event_add(w->timer, &tv);
}

static void watcher_closed(struct evhttp_connection *c, void *arg)
{
    (void)c;
    watcher *w = arg;
    w->conn = NULL;
    watcher_free(w);
}

static void r_events(ui_server *s, struct evhttp_request *r, const char *id)
{
    char *text = NULL;
    bool done;
    int rc = ui_runs_status(s->runs, id, &text, &done);
    free(text);
    if (rc != RZ_OK) {
        reply_error(r, rc, "no run %s", id);
        return;
    }
    watcher *w = calloc(1, sizeof *w);
    if (!w || !(w->seen = ui_watch_new()) ||
        !(w->timer = evtimer_new(s->base, watch_tick, w))) {
        if (w)
            ui_watch_free(w->seen);
        free(w);
        reply_error(r, RZ_ENOMEM, "out of memory");
        return;
    }
    w->s = s;
    w->r = r;
    snprintf(w->id, sizeof w->id, "%s", id);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply_start(r, 200, "OK");
    w->conn = evhttp_request_get_connection(r);
    evhttp_connection_set_closecb(w->conn, watcher_closed, w);
    watch_tick(-1, 0, w);
}

/* ---- dispatch ---- */

/* A run id as runs are named: letters, digits, '-', '_', '.'. */
static bool id_ok(const char *s, size_t n)
{
    if (!n || n >= 64 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' ||
              (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static void method_not_allowed(struct evhttp_request *r, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", allow);
    reply_json(r, 405, error_doc(RZ_EINVAL, "method not allowed here"));
}

static void api(ui_server *s, struct evhttp_request *r, const char *path,
                const struct evkeyvalq *qs)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(r);
    bool get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD, post = m == EVHTTP_REQ_POST;
    const char *rest = path + strlen("/api/v1/");
    if (strcmp(rest, "stats") == 0) {
        get ? r_stats(s, r) : method_not_allowed(r, "GET, HEAD");
    } else if (strcmp(rest, "modules") == 0) {
        get ? r_modules(s, r, qs) : method_not_allowed(r, "GET, HEAD");
    } else if (strcmp(rest, "whoami") == 0) {
        /* The one user of this machine: no account, no node, no admin. */
        get ? reply_json(r, 200, cJSON_Parse("{\"role\":\"local\",\"account\":null,"
                                             "\"node\":null}"))
            : method_not_allowed(r, "GET, HEAD");
    } else if (strcmp(rest, "named-flows") == 0) {
        /* No named flows on one machine: an empty list, not an error. */
        get ? reply_json(r, 200, cJSON_Parse("{\"flows\":[]}"))
            : method_not_allowed(r, "GET, HEAD");
    } else if (strcmp(rest, "flows") == 0) {
        get ? r_runs(s, r, qs) : method_not_allowed(r, "GET, HEAD");
    } else if (strcmp(rest, "flows/validate") == 0 || strcmp(rest, "flows/estimate") == 0 ||
               strcmp(rest, "flows/deploy") == 0) {
        if (!post) {
            method_not_allowed(r, "POST");
            return;
        }
        cJSON *body = body_object(r);
        if (!body)
            return;
        if (rest[6] == 'v')
            r_validate(s, r, body);
        else if (rest[6] == 'e')
            r_estimate(s, r, body);
        else
            r_deploy(s, r, body);
        cJSON_Delete(body);
    } else if (strncmp(rest, "flows/", 6) == 0) {
        const char *id = rest + 6, *slash = strchr(id, '/');
        size_t n = slash ? (size_t)(slash - id) : strlen(id);
        char buf[64];
        if (!id_ok(id, n)) {
            reply_error(r, RZ_ENOENT, "no such run");
            return;
        }
        memcpy(buf, id, n);
        buf[n] = '\0';
        const char *sub = slash ? slash + 1 : "";
        if (!*sub && get)
            r_run(s, r, buf);
        else if (!*sub && m == EVHTTP_REQ_DELETE)
            r_cancel(s, r, buf);
        else if (!*sub)
            method_not_allowed(r, "GET, HEAD, DELETE");
        else if (strcmp(sub, "events") == 0)
            get ? r_events(s, r, buf) : method_not_allowed(r, "GET");
        else if (strcmp(sub, "logs") == 0)
            get ? r_logs(s, r, buf, qs) : method_not_allowed(r, "GET, HEAD");
        else
            reply_error(r, RZ_ENOENT, "no such path");
    } else {
        reply_error(r, RZ_ENOENT, "%s is not served by rhizos ui (one machine: "
                    "no nodes, jobs or accounts)", path);
    }
}

static void on_request(struct evhttp_request *r, void *arg)
{
    ui_server *s = arg;
    httpconn_dispatched(s->conns, r);
    web_security_headers(r);
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(r), "Host");
    if (!host_allowed(host)) {
        reply_error(r, RZ_EDENIED, "rhizos ui answers only requests to an IP "
                    "address or localhost");
        return;
    }
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r);
    const char *path = evhttp_uri_get_path(u);
    if (!path || !*path)
        path = "/";
    enum evhttp_cmd_type m = evhttp_request_get_command(r);
    if (strncmp(path, "/api/", 5) != 0) {
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            method_not_allowed(r, "GET, HEAD");
            return;
        }
        if (!s->opts.ui_dir) {
            reply_error(r, RZ_ENOENT, "the web console was not built: build with "
                        "-Dui=enabled, or give --ui-dir DIR");
            return;
        }
        web_file f;
        web_file_get(r, s->opts.ui_dir, path, &f);
        if (f.status)
            reply(r, f.status, f.type, f.body, f.len);
        else
            reply_error(r, f.rz, "%s", f.error);
        free(f.body);
        return;
    }
    if (!token_ok(s, r)) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate",
                          "Bearer");
        reply_error(r, RZ_EAUTH, "a token is needed: open the address `rhizos ui` "
                    "printed (it ends in #token=...)");
        return;
    }
    if (strncmp(path, "/api/v1/", 8) != 0) {
        reply_error(r, RZ_ENOENT, "no such path");
        return;
    }
    struct evkeyvalq qs;
    const char *query = evhttp_uri_get_query(u);
    if (query && evhttp_parse_query_str(query, &qs) != 0) {
        reply_error(r, RZ_EINVAL, "malformed query string");
        return;
    }
    api(s, r, path, query ? &qs : NULL);
    if (query)
        evhttp_clear_headers(&qs);
}

int ui_http_start(ui_server *s)
{
    s->http = evhttp_new(s->base);
    if (!s->http)
        return -1;
    evhttp_set_max_body_size(s->http, BODY_MAX);
    evhttp_set_max_headers_size(s->http, 64 * 1024);
    evhttp_set_timeout(s->http, 60);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                               EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                               EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(s->http, on_request, s);
    /* One person's browser: a few connections, each request whole in 10 s. */
    httpconn_limits lim = { CONNS_MAX, 10, NULL, NULL };
    s->conns = httpconn_attach(s->http, s->base, &lim);
    return s->conns ? 0 : -1;
}
