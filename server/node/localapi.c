/* The node's local API (docs/node.md, "Local API"): what this node is
 * doing, for the person who runs it — `rhizos-node status`, a browser,
 * Prometheus. It is read-only and holds nothing of its own: each answer
 * copies the agent's state under its lock, so it can never disagree with
 * what the agent does.
 *
 * It runs on a thread with its own event loop, so a slow or stuck reader
 * never holds up a job, a heartbeat or a result. It listens on loopback by
 * default and answers only requests whose Host is an IP literal or
 * localhost: a web page elsewhere cannot reach it by DNS rebinding (its
 * name made to resolve to 127.0.0.1). Nothing it shows is a secret — no
 * token, key or credential, no job input or output. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "httpconn.h"
#include "procmetrics.h"
#include "slurm.h"

/* The local API's readers are a person's `status` and a scraper or two. */
#define NODE_API_MAX_CONNS 64

struct node_api {
    agent *a;
    struct event_base *base;
    struct evhttp *http;
    httpconn *conns;              /* few, and each request whole in 10 s */
    struct event *tick;
    pthread_t thread;
    char *caps;                   /* the capabilities JSON, read at start */
    char addr[80];                /* where it listens, as ADDR:PORT */
};

int node_api_split(const char *s, char *host, size_t hostlen, unsigned *port)
{
    char h[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : 0;
    if (!colon || n == 0 || n >= sizeof h)
        return -1;
    memcpy(h, s, n);
    h[n] = '\0';
    char *hp = h;
    unsigned char bin[16];
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']')
            return -1;
        h[n - 1] = '\0';
        hp = h + 1;
        if (inet_pton(AF_INET6, hp, bin) != 1)
            return -1;
    } else if (inet_pton(AF_INET, hp, bin) != 1) {
        return -1;
    }
    const char *p = colon + 1;
    unsigned long v = 0;
    if (!*p || strlen(p) > 5)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return -1;
    if (host) {
        if (strlen(hp) >= hostlen)
            return -1;
        strcpy(host, hp);
    }
    if (port)
        *port = (unsigned)v;
    return 0;
}

/* ---- answers ---- */

static void reply(struct evhttp_request *r, int code, const char *type,
                  struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(r, code, code == 200 ? "OK" : code == 404 ? "Not Found"
                      : code == 405 ? "Method Not Allowed" : "Forbidden",
                      body);
}

static void reply_error(struct evhttp_request *r, int code, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(r, HTTP_INTERNAL, NULL);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    char *text = cJSON_PrintUnformatted(j);
    evbuffer_add_printf(b, "%s\n", text ? text : "{}");
    cJSON_free(text);
    cJSON_Delete(j);
    reply(r, code, "application/json", b);
    evbuffer_free(b);
}

static void reply_json(struct evhttp_request *r, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    struct evbuffer *b = text ? evbuffer_new() : NULL;
    if (!b) {
        cJSON_free(text);
        reply_error(r, 500, "out of memory");
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evbuffer_add(b, "\n", 1);
    cJSON_free(text);
    reply(r, 200, "application/json", b);
    evbuffer_free(b);
}

static const char *orchestrator_state(const agent *a)
{
    return a->outage ? "unreachable"
         : a->need_register || !a->st.id ? "registering" : "connected";
}

static cJSON *running_json(const agent *a, uint64_t now)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < a->n_slots; i++) {
        const job_slot *s = &a->slots[i];
        if (!s->busy || s->finished || !s->started_ms)
            continue;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "job", (double)s->job);
        cJSON_AddNumberToObject(j, "attempt", s->attempt);
        cJSON_AddStringToObject(j, "module", s->module);
        cJSON_AddNumberToObject(j, "elapsed_ms",
                                (double)(now > s->started_ms ? now - s->started_ms : 0));
        cJSON_AddItemToArray(arr, j);
    }
    return arr;
}

/* Newest first. */
static cJSON *recent_json(const agent *a)
{
    cJSON *arr = cJSON_CreateArray();
    size_t n = a->n_recent < AGENT_RECENT ? a->n_recent : AGENT_RECENT;
    for (size_t k = 0; k < n; k++) {
        const job_record *r = &a->recent[(a->n_recent - 1 - k) % AGENT_RECENT];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "job", (double)r->job);
        cJSON_AddNumberToObject(j, "attempt", r->attempt);
        cJSON_AddStringToObject(j, "module", r->module);
        cJSON_AddStringToObject(j, "outcome", r->outcome);
        if (r->run_ms >= 0)
            cJSON_AddNumberToObject(j, "run_ms", (double)r->run_ms);
        if (r->detail[0])
            cJSON_AddStringToObject(j, "detail", r->detail);
        cJSON_AddNumberToObject(j, "ended_at_ms", (double)r->ended_ms);
        cJSON_AddItemToArray(arr, j);
    }
    return arr;
}

static cJSON *counts_json(const agent *a)
{
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < AGENT_N_OUTCOMES; i++)
        cJSON_AddNumberToObject(j, agent_outcomes[i], (double)a->finished[i]);
    return j;
}

static cJSON *status_json(struct node_api *api)
{
    agent *a = api->a;
    uint64_t now = node_unix_ms();
    cJSON *j = cJSON_CreateObject(), *node = cJSON_CreateObject(),
          *orch = cJSON_CreateObject(), *slots = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", rz_version());
    cJSON_AddItemToObject(j, "node", node);
    cJSON_AddItemToObject(j, "orchestrator", orch);
    pthread_mutex_lock(&a->mu);
    if (a->st.id) {
        cJSON_AddNumberToObject(node, "id", (double)a->st.id);
        cJSON_AddStringToObject(node, "account", a->st.account);
    } else {
        cJSON_AddNullToObject(node, "id");
    }
    cJSON_AddStringToObject(node, "key", a->node_id);
    cJSON_AddNumberToObject(node, "started_at_ms", (double)a->started_ms);
    cJSON_AddStringToObject(node, "sandbox", a->sandbox ? "on" : "off");
    cJSON_AddStringToObject(orch, "url", a->url);
    cJSON_AddStringToObject(orch, "state", orchestrator_state(a));
    if (a->last_contact_ms)
        cJSON_AddNumberToObject(orch, "last_contact_ms", (double)a->last_contact_ms);
    cJSON_AddStringToObject(j, "verification", a->challenge[0] ? a->challenge
                                                               : "not yet challenged");
    size_t busy = agent_running(a);
    cJSON_AddNumberToObject(slots, "total", (double)a->max_running);
    cJSON_AddNumberToObject(slots, "busy", (double)busy);
    cJSON_AddItemToObject(j, "slots", slots);
    cJSON_AddItemToObject(j, "running", running_json(a, now));
    cJSON_AddItemToObject(j, "recent", recent_json(a));
    cJSON_AddItemToObject(j, "jobs", counts_json(a));
    cJSON_AddNumberToObject(j, "results_waiting", (double)a->n_outbox);
    if (a->earn_at_ms) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "balance_micros", (double)a->earn_balance);
        cJSON_AddNumberToObject(e, "pending_micros", (double)a->earn_pending);
        cJSON_AddNumberToObject(e, "as_of_ms", (double)a->earn_at_ms);
        cJSON_AddItemToObject(j, "earnings", e);
    } else {
        cJSON_AddNullToObject(j, "earnings");
    }
    pthread_mutex_unlock(&a->mu);
    if (a->slurm) {
        /* A gateway: whether it asks for work now, and why not. */
        char why[512];
        cJSON *sl = cJSON_AddObjectToObject(j, "slurm");
        cJSON_AddBoolToObject(sl, "taking_work", slurm_gw_can_take(a, why, sizeof why));
        cJSON_AddStringToObject(sl, "why", why);
    }
    cJSON *caps = api->caps ? cJSON_Parse(api->caps) : NULL;
    if (caps)
        cJSON_AddItemToObject(j, "capabilities", caps);
    return j;
}

static void metrics_text(struct node_api *api, struct evbuffer *b)
{
    agent *a = api->a;
    pthread_mutex_lock(&a->mu);
    size_t busy = agent_running(a);
    evbuffer_add_printf(b,
        "# HELP rhizos_node_slots Jobs this node runs at once.\n"
        "# TYPE rhizos_node_slots gauge\nrhizos_node_slots %zu\n"
        "# HELP rhizos_node_jobs_running Jobs running now.\n"
        "# TYPE rhizos_node_jobs_running gauge\nrhizos_node_jobs_running %zu\n"
        "# HELP rhizos_node_results_waiting Results kept until the orchestrator has them.\n"
        "# TYPE rhizos_node_results_waiting gauge\nrhizos_node_results_waiting %zu\n"
        "# HELP rhizos_node_orchestrator_up 1 while the orchestrator answers.\n"
        "# TYPE rhizos_node_orchestrator_up gauge\nrhizos_node_orchestrator_up %d\n"
        "# HELP rhizos_node_jobs_finished_total Jobs ended here, by outcome.\n"
        "# TYPE rhizos_node_jobs_finished_total counter\n",
        a->max_running, busy, a->n_outbox, !a->outage && a->st.id && !a->need_register);
    for (int i = 0; i < AGENT_N_OUTCOMES; i++)
        evbuffer_add_printf(b, "rhizos_node_jobs_finished_total{outcome=\"%s\"} %" PRIu64 "\n",
                            agent_outcomes[i], a->finished[i]);
    if (a->earn_at_ms)
        evbuffer_add_printf(b,
            "# HELP rhizos_node_balance_micros The payout account's available balance (1e-6 USD).\n"
            "# TYPE rhizos_node_balance_micros gauge\nrhizos_node_balance_micros %lld\n",
            (long long)a->earn_balance);
    uint64_t started = a->started_ms;
    pthread_mutex_unlock(&a->mu);
    if (a->slurm)
        evbuffer_add_printf(b,
            "# HELP rhizos_node_slurm_taking_work 1 while the Slurm gateway asks for work "
            "(0: Slurm away, the partition unusable or full, or every job refused; "
            "/status says why).\n"
            "# TYPE rhizos_node_slurm_taking_work gauge\nrhizos_node_slurm_taking_work %d\n",
            slurm_gw_can_take(a, NULL, 0));
    evbuffer_add_printf(b,
        "# HELP rhizos_build_info The running node agent's version.\n"
        "# TYPE rhizos_build_info gauge\nrhizos_build_info{version=\"%s\"} 1\n",
        rz_version());
    procmetrics_print(b, (double)started / 1000.0);
}

/* An IP literal or localhost, with an optional port: anything else is a
 * name a page could have pointed at this address. */
static int host_allowed(const char *host)
{
    if (!host)
        return 0;
    char h[INET6_ADDRSTRLEN + 8];
    snprintf(h, sizeof h, "%s", host);
    char *end = h[0] == '[' ? strchr(h, ']') : strrchr(h, ':');
    if (h[0] == '[') {
        if (!end)
            return 0;
        *end = '\0';
        unsigned char bin[16];
        return inet_pton(AF_INET6, h + 1, bin) == 1;
    }
    if (end)
        *end = '\0';
    unsigned char bin[4];
    return strcmp(h, "localhost") == 0 || inet_pton(AF_INET, h, bin) == 1;
}

static void on_request(struct evhttp_request *r, void *arg)
{
    struct node_api *api = arg;
    httpconn_dispatched(api->conns, r);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(r);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(r), "Host");
    if (!host_allowed(host)) {
        reply_error(r, 403, "the local API answers only requests to an IP "
                    "address or localhost");
        return;
    }
    int known = path && (strcmp(path, "/status") == 0 ||
                         strcmp(path, "/metrics") == 0 ||
                         strcmp(path, "/health") == 0);
    if (!known) {
        reply_error(r, 404, "no such path (the local API serves /status, "
                    "/metrics and /health)");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
        reply_error(r, 405, "the local API is read-only: GET or HEAD");
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        struct evbuffer *b = evbuffer_new();
        if (!b) {
            reply_error(r, 500, "out of memory");
            return;
        }
        metrics_text(api, b);
        reply(r, 200, "text/plain; version=0.0.4", b);
        evbuffer_free(b);
        return;
    }
    cJSON *j = strcmp(path, "/health") == 0 ? cJSON_CreateObject() : status_json(api);
    if (j && strcmp(path, "/health") == 0)
        cJSON_AddTrueToObject(j, "ok");
    reply_json(r, j);
    cJSON_Delete(j);
}

/* The loop has no other way to hear that the agent stops. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct node_api *api = arg;
    if (agent_stopping(api->a))
        event_base_loopbreak(api->base);
}

static void *serve(void *arg)
{
    struct node_api *api = arg;
    event_base_dispatch(api->base);
    return NULL;
}

/* Bind `spec`; 0 with the bound address in api->addr, else -1 with errno. */
static int bind_to(struct node_api *api, const char *spec)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port = 0;
    if (node_api_split(spec, host, sizeof host, &port) != 0) {
        errno = EINVAL;
        return -1;
    }
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(api->http, host, (ev_uint16_t)port);
    if (!bs)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "";
    evutil_socket_t fd = evhttp_bound_socket_get_fd(bs);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
            snprintf(api->addr, sizeof api->addr, "[%s]:%u", ip, ntohs(s6->sin6_port));
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
            snprintf(api->addr, sizeof api->addr, "%s:%u", ip, ntohs(s4->sin_port));
        }
    }
    return 0;
}

static int is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]", 5) == 0;
}

/* DATA/api.addr: where `rhizos-node status` finds the API. */
static void write_addr(struct node_api *api)
{
    char path[PATH_MAX], line[96];
    snprintf(path, sizeof path, "%s/api.addr", api->a->o->data_dir);
    int n = snprintf(line, sizeof line, "%s\n", api->addr);
    if (node_write_private(path, line, (size_t)n) != 0)
        fprintf(stderr, "rhizos-node: warning: %s: %s (`rhizos-node status` "
                "will not find the local API)\n", path, strerror(errno));
}

static void api_free(struct node_api *api)
{
    if (!api)
        return;
    if (api->tick)
        event_free(api->tick);
    if (api->http)
        evhttp_free(api->http);
    httpconn_free(api->conns);
    if (api->base)
        event_base_free(api->base);
    free(api->caps);
    free(api);
}

int node_api_start(agent *a, struct node_api **out)
{
    *out = NULL;
    const char *spec = a->cfg.api_listen;
    if (spec && strcmp(spec, "off") == 0)
        return 0;
    struct node_api *api = calloc(1, sizeof *api);
    if (!api || !(api->base = event_base_new()) ||
        !(api->http = evhttp_new(api->base)) ||
        !(api->tick = event_new(api->base, -1, EV_PERSIST, on_tick, api))) {
        fprintf(stderr, "rhizos-node: the local API cannot start: out of memory\n");
        api_free(api);
        return -1;
    }
    api->a = a;
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                               EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                               EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(api->http, 8192);
    evhttp_set_max_body_size(api->http, 4096);
    evhttp_set_timeout(api->http, 10);
    evhttp_set_gencb(api->http, on_request, api);
    httpconn_limits lim = { NODE_API_MAX_CONNS, 10, NULL, NULL };
    if (!(api->conns = httpconn_attach(api->http, api->base, &lim))) {
        fprintf(stderr, "rhizos-node: the local API cannot start: out of memory\n");
        api_free(api);
        return -1;
    }
    int rc = bind_to(api, spec ? spec : NODE_API_DEFAULT);
    if (rc != 0 && !spec && errno == EADDRINUSE) {
        /* Another node on this machine has the default: any free port. */
        rc = bind_to(api, "127.0.0.1:0");
    }
    if (rc != 0) {
        fprintf(stderr, "rhizos-node: [api] listen %s: %s (set another "
                "address, or \"off\")\n", spec ? spec : NODE_API_DEFAULT,
                strerror(errno));
        api_free(api);
        return -1;
    }
    if (!is_loopback(api->addr))
        fprintf(stderr, "rhizos-node: warning: the local API at %s can be "
                "reached from other machines: it shows this node's jobs and "
                "earnings\n", api->addr);
    char err[256];
    api->caps = node_capabilities(a->o->data_dir, &a->cfg, err, sizeof err);
    struct timeval every = { 0, 200 * 1000 };
    event_add(api->tick, &every);
    write_addr(api);
    if (pthread_create(&api->thread, NULL, serve, api) != 0) {
        fprintf(stderr, "rhizos-node: the local API cannot start a thread\n");
        api_free(api);
        return -1;
    }
    if (!a->o->quiet)
        fprintf(stderr, "rhizos-node: local API on http://%s/status\n", api->addr);
    *out = api;
    return 0;
}

void node_api_forget(struct node_api *api)
{
    if (!api)
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/api.addr", api->a->o->data_dir);
    (void)unlink(path);
}

void node_api_stop(struct node_api *api)
{
    if (!api)
        return;
    pthread_join(api->thread, NULL);
    node_api_forget(api);
    api_free(api);
}
