/* The engine's decisions turned into replies: long-polls that get their
 * work, stops kept for the next heartbeat, status pushed to SSE watchers;
 * and the one timer that calls rz_engine_tick when the engine wants it. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "orch.h"

/* ---- long-poll waiters ---- */

static waiter *find_waiter(orch *o, uint64_t node)
{
    for (waiter *w = o->waiters; w; w = w->next)
        if (w->node == node)
            return w;
    return NULL;
}

bool orch_node_waiting(orch *o, uint64_t node)
{
    return find_waiter(o, node) != NULL;
}

/* Forget a waiter without answering it (its connection is gone, or the
 * answer was just sent). */
static void waiter_free(waiter *w)
{
    orch *o = w->o;
    (void)!rz_engine_node_waiting(o->e, w->node, 0);   /* a hint */
    if (w->prev)
        w->prev->next = w->next;
    else
        o->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (evhttp_request_get_connection(w->req) == w->conn)
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
    event_free(w->timer);
    free(w);
}

static void waiter_204(waiter *w)
{
    struct evhttp_request *r = w->req;
    orch *o = w->o;
    uint64_t t0 = w->t0_ns;
    waiter_free(w);
    orch_count_reply(o, orch_route_index(r_node_poll), 204, t0);
    evhttp_send_reply(r, 204, "No Content", NULL);
}

static void waiter_timeout(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd, (void)ev;
    waiter_204(arg);
}

/* A request libevent detached from its closed connection is ours to free;
 * one still attached is freed with its connection. */
static void request_release(struct evhttp_request *r)
{
    if (!evhttp_request_get_connection(r))
        evhttp_request_free(r);
}

static void waiter_closed(struct evhttp_connection *c, void *arg)
{
    orch *o = arg;
    for (waiter *w = o->waiters; w; w = w->next)
        if (w->conn == c) {
            struct evhttp_request *r = w->req;
            waiter_free(w);
            request_release(r);
            return;
        }
}

void orch_waiter_drop_node(orch *o, uint64_t node)
{
    waiter *w = find_waiter(o, node);
    if (w)
        waiter_204(w);
}

void orch_hold_poll(req *q, uint64_t node, unsigned wait_s)
{
    orch *o = q->o;
    orch_waiter_drop_node(o, node);   /* one poll per node: the newest */
    waiter *w = calloc(1, sizeof *w);
    struct evhttp_connection *c = evhttp_request_get_connection(q->r);
    if (!w || !c || !(w->timer = evtimer_new(o->base, waiter_timeout, w))) {
        free(w);
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    w->o = o;
    w->req = q->r;
    w->conn = c;
    w->node = node;
    w->cbor = q->cbor;
    w->t0_ns = q->t0_ns;
    w->next = o->waiters;
    if (o->waiters)
        o->waiters->prev = w;
    o->waiters = w;
    struct timeval tv = { (time_t)wait_s, 0 };
    evtimer_add(w->timer, &tv);
    evhttp_connection_set_closecb(c, waiter_closed, o);
    /* Placement prefers it among equals: the work goes out in this pass. */
    (void)!rz_engine_node_waiting(o->e, node, 1);   /* a hint */
    q->answered = true;   /* the waiter owns the request now */
}

/* libevent does not watch a connection whose request is held, so a client
 * that went away is noticed here: EOF waiting on its socket. */
static bool conn_alive(struct evhttp_request *r)
{
    struct evhttp_connection *c = evhttp_request_get_connection(r);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                               errno == EINTR));
}

/* Work was placed on a node that is waiting: hand it over now. */
static void wake_node(orch *o, uint64_t node)
{
    waiter *w = find_waiter(o, node);
    if (!w)
        return;
    if (!conn_alive(w->req)) {
        waiter_204(w);   /* the work stays placed for its next poll */
        return;
    }
    struct evhttp_request *r = w->req;
    bool cbor = w->cbor;
    uint64_t t0 = w->t0_ns;
    /* Detach first: delivering answers the request. */
    waiter_free(w);
    if (!orch_deliver(o, r, node, cbor, t0)) {
        /* Nothing for it after all (another poll took it): wait on. */
        req q;
        memset(&q, 0, sizeof q);
        q.o = o;
        q.r = r;
        q.cbor = cbor;
        q.route = orch_route_index(r_node_poll);
        q.t0_ns = t0;
        orch_hold_poll(&q, node, ORCH_WAIT_DEFAULT);
    }
}

/* ---- stops for the next heartbeat ---- */

void orch_stop_add(orch *o, uint64_t node, uint64_t job, uint32_t attempt)
{
    if (!node)
        return;
    if (node > o->n_stops) {
        stop_list *s = realloc(o->stops, node * sizeof *s);
        if (!s)
            return;
        memset(s + o->n_stops, 0, (node - o->n_stops) * sizeof *s);
        o->stops = s;
        o->n_stops = node;
    }
    stop_list *l = &o->stops[node - 1];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        stop_item *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (stop_item){ job, attempt };
}

cJSON *orch_stops_take(orch *o, uint64_t node)
{
    cJSON *arr = cJSON_CreateArray();
    stop_list *l = node && node <= o->n_stops ? &o->stops[node - 1] : NULL;
    for (size_t i = 0; l && i < l->n; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "job", (double)l->v[i].job);
        cJSON_AddNumberToObject(s, "attempt", l->v[i].attempt);
        cJSON_AddItemToArray(arr, s);
    }
    if (l)
        l->n = 0;
    return arr;
}

/* ---- SSE watchers ---- */

static void watcher_free(watcher *w)
{
    orch *o = w->o;
    free(w->resume);
    if (w->prev)
        w->prev->next = w->next;
    else
        o->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (evhttp_request_get_connection(w->req) == w->conn)
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
    free(w);
}

/* End a stream: unlink its watcher, then end (and so free) the request. */
static void watcher_end(watcher *w)
{
    struct evhttp_request *r = w->req;
    watcher_free(w);
    evhttp_send_reply_end(r);   /* frees a detached request too */
}

static void watcher_closed(struct evhttp_connection *c, void *arg)
{
    orch *o = arg;
    for (watcher *w = o->watchers; w; w = w->next)
        if (w->conn == c) {
            struct evhttp_request *r = w->req;
            watcher_free(w);
            request_release(r);
            return;
        }
}

static size_t watchers_of(orch *o, const principal *p)
{
    size_t n = 0;
    for (const watcher *w = o->watchers; w; w = w->next)
        n += w->who.kind == p->kind && w->who.node == p->node &&
             memcmp(&w->who.account, &p->account, sizeof p->account) == 0;
    return n;
}

static void sse_send_id(struct evhttp_request *r, const char *id,
                        const char *event, const char *data)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    if (id)
        evbuffer_add_printf(b, "id: %s\n", id);
    evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, data);
    evhttp_send_reply_chunk(r, b);
    evbuffer_free(b);
}

static void sse_send(struct evhttp_request *r, const char *event, const char *data)
{
    sse_send_id(r, NULL, event, data);
}

static void event_id(const orch *o, uint64_t pos, char id[48])
{
    snprintf(id, 48, "%llu-%llu", (unsigned long long)o->stream_epoch,
             (unsigned long long)pos);
}

/* The end of the deployment's change log now. */
static uint64_t log_end(orch *o, uint64_t dep)
{
    size_t none;
    uint64_t end = 0;
    (void)rz_engine_deployment_changes(o->e, dep, UINT64_MAX, &none, 0, &end);
    return end;
}

/* Last-Event-ID (or ?since=) "<epoch>-<position>" of this process: the
 * position to resume from; false for none, or an id of another run. */
static bool resume_at(orch *o, const char *v, uint64_t *pos)
{
    unsigned long long ep, at;
    char tail;
    if (!v || sscanf(v, "%llu-%llu%c", &ep, &at, &tail) != 2 ||
        ep != o->stream_epoch)
        return false;
    *pos = at;
    return true;
}

static bool sse_push_changes(orch *o, watcher *w);

/* A stream of changes starts with the whole status, its id the log's end
 * now, unless it resumes from an id of this process (then the steps
 * changed since follow). True when the stream must end. */
static bool start_changes(orch *o, watcher *w)
{
    rz_engine_deployment_info di;
    w->started = true;
    bool resumed = resume_at(o, w->resume, &w->seq);
    free(w->resume);
    w->resume = NULL;
    if (rz_engine_deployment_get(o->e, w->dep, &di) != RZ_OK)
        return true;
    bool done = di.state != RZ_RUN_RUNNING;
    if (resumed && !done)
        return sse_push_changes(o, w);   /* what changed since, now */
    w->seq = log_end(o, w->dep);
    char id[48];
    event_id(o, w->seq, id);
    char *status = flow_status_text(o, w->dep);
    if (status)
        sse_send_id(w->req, id, done ? "end" : "status", status);
    free(status);
    return done || !status;
}

/* A stream of changes: the steps changed since the watcher's position, one
 * "step" event each, the batch's last one carrying the id to resume from;
 * O(changes), not O(steps). At the end, "end" with the whole status, as
 * for every stream. True when the stream must end. */
static bool sse_push_changes(orch *o, watcher *w)
{
    if (!w->started)
        return start_changes(o, w);
    rz_engine_deployment_info di;
    if (rz_engine_deployment_get(o->e, w->dep, &di) != RZ_OK)
        return true;
    char id[48];
    if (di.state != RZ_RUN_RUNNING) {
        char *status = flow_status_text(o, w->dep);
        event_id(o, w->seq, id);
        if (status)
            sse_send_id(w->req, id, "end", status);
        free(status);
        return true;
    }
    size_t steps[256], n;
    uint64_t next;
    while ((n = rz_engine_deployment_changes(o->e, w->dep, w->seq, steps,
                                             sizeof steps / sizeof *steps, &next)) > 0) {
        for (size_t i = 0; i < n; i++) {
            char *json = NULL;
            if (rz_engine_deployment_step_status(o->e, w->dep, steps[i],
                                                 &json) != RZ_OK)
                continue;
            if (i + 1 == n)
                event_id(o, next, id);
            sse_send_id(w->req, i + 1 == n ? id : NULL, "step", json);
            rz_free(json);
        }
        w->seq = next;
    }
    return false;
}

/* Push the status. True when the stream must end: the deployment
 * finished (the "end" event is sent) or its status cannot be had; the
 * caller ends it (watcher_end), so no watcher outlives its request. */
static bool sse_push(orch *o, struct evhttp_request *r, uint64_t dep)
{
    rz_engine_deployment_info di;
    char *status = flow_status_text(o, dep);
    bool done = rz_engine_deployment_get(o->e, dep, &di) != RZ_OK ||
                di.state != RZ_RUN_RUNNING;
    if (status) {
        sse_send(r, "status", status);
        if (done)
            sse_send(r, "end", status);
    }
    free(status);
    return done || !status;
}

void orch_watch(req *q, uint64_t dep)
{
    orch *o = q->o;
    if (watchers_of(o, &q->who) >= o->opts.watch_max) {
        reply_limit(q, 0, "this key holds %u event streams already; close one",
                    o->opts.watch_max);
        return;
    }
    if (!o->stream_epoch)
        o->stream_epoch = (uint64_t)time(NULL);
    /* ?changes=1 or a Last-Event-ID (?since= for clients that cannot set
     * headers) asks for a stream of changes. */
    const char *since, *ch, *lg, *last_id = evhttp_find_header(
        evhttp_request_get_input_headers(q->r), "Last-Event-ID");
    if (!query_get(q, "since", &since) || !query_get(q, "changes", &ch) ||
        !query_get(q, "logs", &lg))
        return;
    if (!last_id)
        last_id = since;
    bool changes = last_id || (ch && strcmp(ch, "0") != 0);
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    orch_count_reply(o, q->route, 200, q->t0_ns);   /* the stream's start */
    evhttp_send_reply_start(q->r, 200, "OK");
    q->answered = true;
    watcher *w = calloc(1, sizeof *w);
    struct evhttp_connection *c = evhttp_request_get_connection(q->r);
    if (!w || !c || (last_id && !(w->resume = strdup(last_id)))) {
        free(w);
        evhttp_send_reply_end(q->r);
        return;
    }
    w->o = o;
    w->req = q->r;
    w->dep = dep;
    w->changes = changes;
    w->logs = lg && strcmp(lg, "0") != 0;
    /* Inside a group the first push follows the pass's commit. */
    if (!o->grouped && (changes ? start_changes(o, w)
                                : sse_push(o, q->r, dep))) {
        free(w->resume);
        free(w);
        evhttp_send_reply_end(q->r);
        return;
    }
    w->conn = c;
    w->who = q->who;
    w->dirty = o->grouped;
    w->next = o->watchers;
    if (o->watchers)
        o->watchers->prev = w;
    o->watchers = w;
    evhttp_connection_set_closecb(c, watcher_closed, o);
}

/* Bytes waiting to go to a stream's reader. */
static size_t backlog(const watcher *w)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(w->conn);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void orch_watch_log(orch *o, uint64_t dep, const char *json)
{
    /* A reader that does not keep up misses log lines (the job's log has
     * them) rather than the server keeping them for it without bound. */
    for (watcher *w = o->watchers; w; w = w->next)
        if (w->dep == dep && (w->changes ? w->started : w->logs) &&
            backlog(w) < ORCH_SSE_LOG_BACKLOG)
            sse_send(w->req, "step_log", json);
}

static void mark_dep(orch *o, uint64_t dep)
{
    for (watcher *w = o->watchers; w; w = w->next)
        if (w->dep == dep)
            w->dirty = true;
}

/* Streams of changes look at the log every pass (a job placed or taken
 * raises no event here), O(changes); the others get the whole status when
 * a job of theirs finished. */
static void flush_watchers(orch *o)
{
    for (watcher *w = o->watchers, *next; w; w = next) {
        next = w->next;
        if (!w->dirty && !w->changes)
            continue;
        w->dirty = false;
        if (w->changes ? sse_push_changes(o, w) : sse_push(o, w->req, w->dep))
            watcher_end(w);
    }
}

/* ---- the engine's events, and time ---- */

/* The engine's decisions as log lines. A failed job's reason is read
 * from its record only when the line will be written. */
static void log_event(orch *o, const rz_engine_event *ev)
{
    switch (ev->type) {
    case RZ_EV_JOB_ASSIGNED:
        orch_log(o, ORCH_LOG_INFO, "job_dispatched", "job", LOG_U64, ev->job,
                 "node", LOG_U64, ev->node, "attempt", LOG_U64, (uint64_t)ev->attempt,
                 NULL);
        break;
    case RZ_EV_JOB_STOP:
        orch_log(o, ORCH_LOG_DEBUG, "job_stop", "job", LOG_U64, ev->job,
                 "node", LOG_U64, ev->node, "attempt", LOG_U64, (uint64_t)ev->attempt,
                 NULL);
        break;
    case RZ_EV_JOB_FINISHED: {
        rz_engine_job_info ji;
        const char *why = NULL;
        if (ev->state == RZ_JOB_FAILED && o->opts.log_level >= ORCH_LOG_WARN &&
            rz_engine_job_get(o->e, ev->job, &ji) == RZ_OK)
            why = ji.error;
        orch_log(o, ev->state == RZ_JOB_FAILED ? ORCH_LOG_WARN : ORCH_LOG_INFO,
                 "job_finished", "job", LOG_U64, ev->job,
                 "state", LOG_STR, rz_job_state_name(ev->state), "node", LOG_U64, ev->node,
                 "deployment", LOG_U64, ev->deployment,
                 why ? "reason" : NULL, LOG_STR, why, NULL);
        break;
    }
    case RZ_EV_DEPLOYMENT_FINISHED:
        orch_log(o, ORCH_LOG_INFO, "deployment_finished", "deployment", LOG_U64,
                 ev->deployment, "state", LOG_STR, rz_run_state_name(ev->run_state), NULL);
        break;
    case RZ_EV_NODE_LOST:
        orch_log(o, ORCH_LOG_WARN, "node_lost", "node", LOG_U64, ev->node, NULL);
        break;
    }
}

void orch_after(orch *o)
{
    if (!o->e)
        return;
    /* Placement runs on polls and ticks; a node already waiting must not
     * wait for its next poll to get what was just queued. */
    if (o->changed && o->waiters && !o->stopping)
        (void)!rz_engine_tick(o->e, orch_now_ms());   /* retried next pass */
    o->changed = false;
    rz_engine_event ev;
    uint64_t *fin = NULL;   /* finished deployments: flow triggers follow */
    size_t n_fin = 0, cap_fin = 0;
    for (int round = 0; round < 1 || (n_fin && round < 17); round++) {
    for (size_t i = 0; i < n_fin; i++)
        flows_on_finished(o, fin[i]);
    n_fin = 0;
    while (rz_engine_next_event(o->e, &ev)) {
        log_event(o, &ev);
        switch (ev.type) {
        case RZ_EV_JOB_ASSIGNED:
            wake_node(o, ev.node);
            break;
        case RZ_EV_JOB_STOP:
            orch_stop_add(o, ev.node, ev.job, ev.attempt);
            break;
        case RZ_EV_JOB_FINISHED:
            if (ev.deployment)
                mark_dep(o, ev.deployment);
            break;
        case RZ_EV_DEPLOYMENT_FINISHED:
            mark_dep(o, ev.deployment);
            if (n_fin == cap_fin) {
                size_t cap = cap_fin ? 2 * cap_fin : 8;
                uint64_t *f = realloc(fin, cap * sizeof *f);
                if (!f)
                    break;   /* out of memory: this one fires nothing (logged) */
                fin = f;
                cap_fin = cap;
            }
            fin[n_fin++] = ev.deployment;
            break;
        case RZ_EV_NODE_LOST:
            orch_waiter_drop_node(o, ev.node);
            break;
        }
    }
    }
    free(fin);
    if (o->grouped)
        return;   /* watchers and the timer follow the commit (on_flush) */
    flush_watchers(o);
    orch_arm_wakeup(o);
}

/* ---- group commit: one durable commit per event-loop pass ---- */

typedef struct held_reply {
    struct evhttp_request *r;
    int code;
    const char *reason;
    struct evbuffer *body;
    uint64_t audit_of;       /* its audit begin record; 0: none */
} held_reply;

bool orch_hold_room(orch *o)
{
    if (!o->grouped)
        return false;
    if (o->n_held == o->cap_held) {
        size_t cap = o->cap_held ? o->cap_held * 2 : 64;
        held_reply *h = realloc(o->held, cap * sizeof *h);
        if (!h)
            return false;   /* sent now: durable only up to the last commit */
        o->held = h;
        o->cap_held = cap;
    }
    return true;
}

bool orch_hold_reply(orch *o, struct evhttp_request *r, int code,
                     const char *reason, struct evbuffer *body,
                     uint64_t audit_of)
{
    if (!orch_hold_room(o))
        return false;
    o->held[o->n_held++] = (held_reply){ r, code, reason, body, audit_of };
    return true;
}

/* Replace a held reply by a JSON error (500). */
static void held_fail(orch *o, held_reply *h, const char *json)
{
    if (!h->body)
        h->body = evbuffer_new();
    else
        evbuffer_drain(h->body, evbuffer_get_length(h->body));
    if (h->body)
        evbuffer_add(h->body, json, strlen(json));
    evhttp_remove_header(evhttp_request_get_output_headers(h->r), "Content-Type");
    evhttp_add_header(evhttp_request_get_output_headers(h->r), "Content-Type",
                      "application/json");
    orch_count_code(o, 500);
    h->code = 500;
    h->reason = "Internal Server Error";
}

/* The end records of the pass's audited replies, made after its commit
 * and before any of them leaves, and kept in memory: the log's next write
 * syncs them (audit.c), so a reply may leave before its end record is
 * durable. If they cannot be made each reply becomes a 500, as a failed
 * end record makes any audited reply. */
static void audit_held(orch *o)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n_held; i++)
        n += o->held[i].audit_of != 0;
    if (!n)
        return;
    uint64_t *of = malloc(n * sizeof *of);
    int *code = malloc(n * sizeof *code);
    bool ok = of && code;
    for (size_t i = 0, j = 0; ok && i < o->n_held; i++)
        if (o->held[i].audit_of) {
            of[j] = o->held[i].audit_of;
            code[j++] = o->held[i].code;
        }
    ok = ok && audit_end_many(o, of, code, n);
    free(of);
    free(code);
    for (size_t i = 0; !ok && i < o->n_held; i++)
        if (o->held[i].audit_of)
            held_fail(o, &o->held[i], AUDIT_FAIL_JSON);
}

/* The pass's requests are in; make what they changed durable, then answer
 * them all (or, if the commit failed, tell each so). */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    audit_begin_flush(o);   /* the pass's audited calls run now */
    orch_after(o);   /* placements and hand-overs join the same commit */
    /* The pass's auth puts first, as when each was durable at once: one
     * fsync for them all. A result's signature and log need none of their
     * own: their redo copies go with the engine's commit (auth_pass.c). */
    int rc = auth_pass_commit(o);
    int erc = rz_engine_group_commit(o->e);
    rc = rc != RZ_OK ? rc : erc;
    o->grouped = false;
    char msg[400] = "";
    if (rc != RZ_OK) {
        orch_log(o, ORCH_LOG_ERROR, "commit_failed", "reason", LOG_STR,
                 rz_error_last()->message, NULL);
        snprintf(msg, sizeof msg, "{\"error\":{\"code\":\"%s\",\"message\":"
                 "\"the change could not be made durable; the server must be "
                 "restarted\"}}", rz_status_name(rc));
    }
    for (size_t i = 0; rc != RZ_OK && i < o->n_held; i++)
        held_fail(o, &o->held[i], msg);
    audit_held(o);
    for (size_t i = 0; i < o->n_held; i++) {
        held_reply *h = &o->held[i];
        evhttp_send_reply(h->r, h->code, h->reason, h->body);
        if (h->body)
            evbuffer_free(h->body);
    }
    o->n_held = 0;
    auth_pass_end(o);
    flush_watchers(o);
    orch_arm_wakeup(o);
}

void orch_group_open(orch *o)
{
    if (o->grouped || !o->e)
        return;
    if (!o->flush && !(o->flush = event_new(o->base, -1, 0, on_flush, o)))
        return;
    if (rz_engine_group_begin(o->e) != RZ_OK) {
        auth_settle(o);   /* writes now durable one by one */
        return;   /* a broken engine: calls fail, replies go out at once */
    }
    if (o->auth && !o->auth_kept && rz_auth_group_begin(o->auth) != RZ_OK) {
        (void)!rz_engine_group_commit(o->e);   /* nothing in it yet */
        return;   /* puts stay durable one by one; replies go out at once */
    }
    o->grouped = true;
    /* Queued behind the callbacks already active in this pass. */
    event_active(o->flush, 0, 0);
}

/* Stopping without running the flush: the held requests are freed by
 * evhttp_free; the engine commits the open group when it closes. */
void orch_group_discard(orch *o)
{
    audit_begin_drop(o);
    auth_stop(o);   /* as the engine does at close */
    o->grouped = false;
    for (size_t i = 0; i < o->n_held; i++)
        if (o->held[i].body)
            evbuffer_free(o->held[i].body);
    free(o->held);
    o->held = NULL;
    o->n_held = o->cap_held = 0;
    if (o->flush)
        event_free(o->flush);
    o->flush = NULL;
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    orch_group_open(o);
    uint64_t now = orch_now_ms();
    /* A held long-poll is a node waiting for work: it is alive, unless its
     * connection closed (a node killed outright): that poll is dropped and
     * counts for nothing, so the node is lost on its own deadline (not at
     * the end of the poll's wait, up to ORCH_WAIT_MAX s later). */
    for (waiter *w = o->waiters, *next; w; w = next) {
        next = w->next;
        if (!conn_alive(w->req)) {
            waiter_204(w);   /* as wake_node does: libevent closes it */
            continue;
        }
        rz_engine_node_info ni;
        if (rz_engine_node_get(o->e, w->node, &ni) == RZ_OK)
            (void)!rz_engine_node_heartbeat(o->e, w->node, now,
                                           ni.load);   /* exists: above */
    }
    if (rz_engine_tick(o->e, now) != RZ_OK)
        orch_log(o, ORCH_LOG_ERROR, "tick_failed", "reason", LOG_STR,
                 rz_error_last()->message, NULL);
    if (!o->grouped)
        orch_after(o);
}

void orch_arm_wakeup(orch *o)
{
    if (!o->wake && !(o->wake = evtimer_new(o->base, on_wakeup, o)))
        return;
    uint64_t at = rz_engine_next_wakeup(o->e);
    /* Held polls must be refreshed before their node's deadline. */
    uint64_t now = orch_now_ms();
    if (o->waiters && at > now + 5000)
        at = now + 5000;
    evtimer_del(o->wake);
    if (at == UINT64_MAX || o->stopping)
        return;
    uint64_t d = at > now ? at - now : 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };
    evtimer_add(o->wake, &tv);
}

/* Stopping: every held poll gets its 204, every stream its end. */
void orch_shutdown_streams(orch *o)
{
    while (o->waiters)
        waiter_204(o->waiters);
    while (o->watchers)
        watcher_end(o->watchers);
}

/* A comment line now and then keeps idle streams from timing out. */
void orch_keepalive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    for (watcher *w = o->watchers, *next; w; w = next) {
        next = w->next;
        if (evhttp_request_get_connection(w->req) != w->conn) {
            watcher_end(w);   /* its connection is gone: free it */
            continue;
        }
        struct evbuffer *b = evbuffer_new();
        if (!b)
            return;
        evbuffer_add_printf(b, ": keepalive\n\n");
        evhttp_send_reply_chunk(w->req, b);
        evbuffer_free(b);
    }
}
