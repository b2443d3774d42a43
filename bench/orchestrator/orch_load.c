/* orch_load: a load generator for rhizos-orchestrator on loopback.
 *
 * Many keep-alive HTTP/1.1 connections (libevent's evhttp client) in one
 * event loop. Modes:
 *
 *   submit    CONNS connections, each submitting POST /api/v1/jobs in a
 *             closed loop for SECONDS (or until COUNT were acknowledged):
 *             acknowledged submissions per second and the reply latency.
 *   latency   NODES fake nodes (from --nodes FILE: "id token key" lines)
 *             long-poll GET /api/v1/nodes/{id}/jobs?wait=25 and report a
 *             result for every assignment at once; submissions are paced at
 *             RATE per second over up to CONNS connections. Per job: the
 *             time from the submit reply (and from sending it) to the node
 *             receiving the assignment.
 *   register  COUNT node registrations over CONNS connections (nodes of 4
 *             cores, 8 GiB, max_concurrent_jobs SLOTS, default 4), each
 *             with a fresh Ed25519 key it signs with (a version 2 proof
 *             naming the orchestrator's key, --orch-key HEX, as GET
 *             /api/v1/identity gives it); prints "id token key" lines
 *             (key: its secret key in hex) to --out FILE.
 *
 * Prints one JSON object with the figures on stdout.
 * usage: orch_load --port P --mode M [--key K] [--conns C] [--seconds S]
 *        [--count N] [--rate R] [--nodes FILE] [--out FILE] [--body JSON]
 *        [--slots N] [--orch-key HEX] */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "rhizos/auth.h"

static const char DEFAULT_BODY[] =
    "{\"module\":\"echo@1\",\"inputs\":{\"message\":\"hi\"},"
    "\"max_cost_micros\":1}";
#define X25519_HEX "1111111111111111111111111111111111111111111111111111111111111111"
static const char NODE_CAPS_FMT[] =
    "{\"capabilities\":{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192,"
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"],"
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":1,"
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":%d},"
    "\"x25519_public_key\":\"" X25519_HEX "\",\"ed25519_public_key\":\"%s\","
    "\"orchestrator_public_key\":\"%s\","
    "\"timestamp_ms\":%llu,\"nonce\":\"%s\",\"signature\":\"%s\"}";

typedef struct samples { double *v; size_t n, cap; } samples;

static void sample_add(samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            fprintf(stderr, "orch_load: out of memory\n");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(samples *s, double p)
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- state ---- */

typedef struct conn conn;
typedef struct node node;

static struct {
    struct event_base *base;
    int port;
    const char *mode, *key, *nodes_file, *out_file, *body, *orch_key;
    int conns, rate, slots;
    double seconds;
    long count;
    bool cbor;
    double t0, t_end;
    bool stopping;
    long sent, acked, failed, results, assigned, polls_204;
    long in_flight;          /* requests but held polls */
    samples submit_lat, assign_from_reply, assign_from_send;
    /* job id -> time its submission was sent and acknowledged */
    double *sent_at, *acked_at, *assigned_at; size_t cap_jobs;
    conn **idle; size_t n_idle;
    double credit;
    FILE *out;
    long status_hist[600];
} g;

struct conn {
    struct evhttp_connection *c;
    double t_sent;
    char sk_hex[129];        /* register: the key of the node in flight */
};

struct node {
    struct evhttp_connection *poll, *report;
    uint64_t id;
    char auth[128];
    unsigned char sk[64];    /* signs its results */
};

static void die(const char *msg)
{
    fprintf(stderr, "orch_load: %s\n", msg);
    exit(1);
}

static struct evhttp_connection *new_conn(void)
{
    struct evhttp_connection *c =
        evhttp_connection_base_new(g.base, NULL, "127.0.0.1", (unsigned short)g.port);
    if (!c)
        die("cannot make a connection");
    evhttp_connection_set_timeout(c, 90);
    return c;
}

static void job_times_grow(uint64_t id)
{
    if (id < g.cap_jobs)
        return;
    size_t cap = g.cap_jobs ? g.cap_jobs : 1 << 16;
    while (cap <= id)
        cap *= 2;
    g.sent_at = realloc(g.sent_at, cap * sizeof *g.sent_at);
    g.acked_at = realloc(g.acked_at, cap * sizeof *g.acked_at);
    g.assigned_at = realloc(g.assigned_at, cap * sizeof *g.assigned_at);
    if (!g.sent_at || !g.acked_at || !g.assigned_at)
        die("out of memory");
    size_t more = (cap - g.cap_jobs) * sizeof(double);
    memset(g.sent_at + g.cap_jobs, 0, more);
    memset(g.acked_at + g.cap_jobs, 0, more);
    memset(g.assigned_at + g.cap_jobs, 0, more);
    g.cap_jobs = cap;
}

static char *body_text(struct evhttp_request *r)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    if (!s)
        die("out of memory");
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    return s;
}

static uint64_t json_u64(const char *text, const char *field)
{
    cJSON *d = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, field);
    uint64_t x = cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : 0;
    cJSON_Delete(d);
    return x;
}

static void add_headers(struct evhttp_request *r, const char *auth, bool body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Host", "127.0.0.1");
    if (auth)
        evhttp_add_header(h, "Authorization", auth);
    if (body)
        evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Accept", "application/json");
}

static bool done(void)
{
    double t = now_s();
    return g.stopping || (g.seconds > 0 && t >= g.t_end) ||
           (g.count > 0 && g.acked + g.failed >= g.count);
}

/* Latency mode ends when every acknowledged job reached a node (or 5 s
 * after the end, when one never does); the nodes' held polls are then
 * dropped, not waited for: so they long-poll up to the end. */
static void maybe_exit(void)
{
    if (!done() || g.in_flight != 0)
        return;
    if (strcmp(g.mode, "latency") == 0 && g.assigned < g.acked &&
        now_s() < g.t_end + 5)
        return;
    g.stopping = true;
    event_base_loopbreak(g.base);
}

/* ---- submissions ---- */

static void submit(conn *k);

static void submit_done(struct evhttp_request *r, void *arg)
{
    conn *k = arg;
    double t = now_s();
    g.in_flight--;
    int code = r ? evhttp_request_get_response_code(r) : 0;
    if (code > 0 && code < 600)
        g.status_hist[code]++;
    if (code == 201 || (code == 200 && strcmp(g.mode, "register") == 0)) {
        g.acked++;
        sample_add(&g.submit_lat, t - k->t_sent);
        char *b = body_text(r);
        uint64_t id = json_u64(b, "id");
        if (strcmp(g.mode, "register") == 0) {
            cJSON *d = cJSON_Parse(b);
            const cJSON *tok = cJSON_GetObjectItemCaseSensitive(d, "token");
            if (g.out && cJSON_IsString(tok))
                fprintf(g.out, "%llu %s %s\n", (unsigned long long)id,
                        tok->valuestring, k->sk_hex);
            cJSON_Delete(d);
        } else if (id) {
            job_times_grow(id);
            g.sent_at[id] = k->t_sent;
            g.acked_at[id] = t;
        }
        free(b);
    } else {
        g.failed++;
        if (g.failed <= 3 && r) {
            char *b = body_text(r);
            fprintf(stderr, "orch_load: HTTP %d: %.300s\n", code, b);
            free(b);
        } else if (!r && g.failed <= 3) {
            fprintf(stderr, "orch_load: a request failed (connection)\n");
        }
    }
    if (done() || (g.count > 0 && g.sent >= g.count)) {
        maybe_exit();
        return;
    }
    if (g.rate > 0)
        g.idle[g.n_idle++] = k;   /* paced: wait for the next credit */
    else
        submit(k);
}

/* A registration signed by a fresh key (docs/api.md "Node identity"). */
static void register_body(conn *k, char *buf, size_t cap)
{
    unsigned char pk[32], sk[64], nb[16];
    char pk_hex[65], nonce[33], sig[RZ_AUTH_SIG_HEX + 1];
    crypto_sign_keypair(pk, sk);
    randombytes_buf(nb, sizeof nb);
    sodium_bin2hex(pk_hex, sizeof pk_hex, pk, sizeof pk);
    sodium_bin2hex(nonce, sizeof nonce, nb, sizeof nb);
    sodium_bin2hex(k->sk_hex, sizeof k->sk_hex, sk, sizeof sk);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rz_auth_node_proof2 p = RZ_AUTH_NODE_PROOF2_INIT;
    p.action = "register";
    p.ed25519_hex = pk_hex;
    p.x25519_hex = X25519_HEX;
    p.timestamp_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    p.nonce_hex = nonce;
    p.orchestrator_hex = g.orch_key;
    if (rz_auth_proof2_sign(&p, sk, sig) != RZ_OK)
        die("cannot sign a registration (--orch-key: 64 lowercase hex digits)");
    snprintf(buf, cap, NODE_CAPS_FMT, g.slots, pk_hex, g.orch_key,
             (unsigned long long)p.timestamp_ms, nonce, sig);
}

static void submit(conn *k)
{
    bool reg = strcmp(g.mode, "register") == 0;
    struct evhttp_request *r = evhttp_request_new(submit_done, k);
    if (!r)
        die("out of memory");
    char auth[256];
    snprintf(auth, sizeof auth, "Bearer %s", g.key ? g.key : "");
    add_headers(r, reg ? NULL : auth, true);
    char caps[sizeof NODE_CAPS_FMT + 512];
    if (reg)
        register_body(k, caps, sizeof caps);
    const char *b = reg ? caps : g.body;
    evbuffer_add(evhttp_request_get_output_buffer(r), b, strlen(b));
    k->t_sent = now_s();
    g.sent++;
    g.in_flight++;
    if (evhttp_make_request(k->c, r, EVHTTP_REQ_POST,
                            reg ? "/api/v1/nodes/register" : "/api/v1/jobs") != 0)
        die("cannot send a request");
}

/* Paced submissions: RATE per second, spent on idle connections. */
static void pace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    static double last;
    double t = now_s();
    if (last > 0)
        g.credit += (t - last) * g.rate;
    last = t;
    while (g.credit >= 1 && g.n_idle && !done()) {
        g.credit -= 1;
        submit(g.idle[--g.n_idle]);
    }
    if (g.credit > g.conns)
        g.credit = g.conns;   /* all connections busy: the rate is not met */
    maybe_exit();
}

/* ---- fake nodes ---- */

static void node_poll(node *n);

static void report_done(struct evhttp_request *r, void *arg)
{
    (void)arg;
    g.in_flight--;
    int code = r ? evhttp_request_get_response_code(r) : 0;
    if (code == 200)
        g.results++;
    else if (g.failed++ < 3)
        fprintf(stderr, "orch_load: result: HTTP %d\n", code);
    maybe_exit();
}

static void node_report(node *n, uint64_t job, uint64_t attempt)
{
    struct evhttp_request *r = evhttp_request_new(report_done, n);
    if (!r)
        die("out of memory");
    add_headers(r, n->auth, true);
    char path[128], body[320], sig[RZ_AUTH_SIG_HEX + 1];
    snprintf(path, sizeof path, "/api/v1/nodes/%llu/jobs/%llu/result",
             (unsigned long long)n->id, (unsigned long long)job);
    rz_auth_result res = { job, (uint32_t)attempt, 0, "{}", 2 };
    if (rz_auth_result_sign(&res, n->sk, sig) != RZ_OK)
        die("cannot sign a result");
    snprintf(body, sizeof body, "{\"attempt\":%llu,\"outputs\":{},\"run_ms\":1,"
             "\"signature\":\"%s\"}", (unsigned long long)attempt, sig);
    evbuffer_add(evhttp_request_get_output_buffer(r), body, strlen(body));
    g.in_flight++;
    if (evhttp_make_request(n->report, r, EVHTTP_REQ_POST, path) != 0)
        die("cannot send a result");
}

static void poll_done(struct evhttp_request *r, void *arg)
{
    node *n = arg;
    double t = now_s();
    if (g.stopping)
        return;   /* a held poll dropped at the end */
    int code = r ? evhttp_request_get_response_code(r) : 0;
    if (code == 200) {
        char *b = body_text(r);
        cJSON *d = cJSON_Parse(b);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(d, "job");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "attempt");
        uint64_t job = cJSON_IsNumber(j) ? (uint64_t)j->valuedouble : 0;
        if (job) {
            g.assigned++;
            job_times_grow(job);
            if (g.assigned_at[job] == 0)   /* the first attempt's */
                g.assigned_at[job] = t;
            node_report(n, job, cJSON_IsNumber(a) ? (uint64_t)a->valuedouble : 1);
        }
        cJSON_Delete(d);
        free(b);
    } else if (code == 204) {
        g.polls_204++;
    } else if (g.failed++ < 3) {
        fprintf(stderr, "orch_load: poll: HTTP %d\n", code);
    }
    node_poll(n);
    maybe_exit();
}

static void node_poll(node *n)
{
    struct evhttp_request *r = evhttp_request_new(poll_done, n);
    if (!r)
        die("out of memory");
    add_headers(r, n->auth, false);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/nodes/%llu/jobs?wait=25",
             (unsigned long long)n->id);
    if (evhttp_make_request(n->poll, r, EVHTTP_REQ_GET, path) != 0)
        die("cannot send a poll");
}

static node *load_nodes(size_t *count)
{
    FILE *f = fopen(g.nodes_file, "r");
    if (!f)
        die("cannot open --nodes");
    node *v = NULL;
    size_t n = 0, cap = 0;
    unsigned long long id;
    char tok[100], sk[129];
    while (fscanf(f, "%llu %99s %128s", &id, tok, sk) == 3) {
        if (n == cap) {
            cap = cap ? cap * 2 : 128;
            if (!(v = realloc(v, cap * sizeof *v)))
                die("out of memory");
        }
        node *x = &v[n++];
        memset(x, 0, sizeof *x);
        x->id = id;
        snprintf(x->auth, sizeof x->auth, "Bearer %s", tok);
        if (sodium_hex2bin(x->sk, sizeof x->sk, sk, strlen(sk), NULL, NULL,
                           NULL) != 0)
            die("--nodes: a key is not 128 hex digits");
        x->poll = new_conn();
        x->report = new_conn();
    }
    fclose(f);
    *count = n;
    return v;
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: orch_load --port P --mode submit|latency|register [--key K]\n"
          "  [--conns C] [--seconds S] [--count N] [--rate R] [--nodes FILE]\n"
          "  [--out FILE] [--body JSON] [--slots N] [--orch-key HEX]\n"
          "register needs --orch-key (GET /api/v1/identity's key)\n", stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port", 1, 0, 'p' }, { "mode", 1, 0, 'm' }, { "key", 1, 0, 'k' },
        { "conns", 1, 0, 'c' }, { "seconds", 1, 0, 's' }, { "count", 1, 0, 'n' },
        { "rate", 1, 0, 'r' }, { "nodes", 1, 0, 'N' }, { "out", 1, 0, 'o' },
        { "body", 1, 0, 'b' }, { "slots", 1, 0, 'S' },
        { "orch-key", 1, 0, 'O' }, { 0, 0, 0, 0 } };
    g.conns = 64;
    g.slots = 4;
    g.body = DEFAULT_BODY;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': g.port = atoi(optarg); break;
        case 'm': g.mode = optarg; break;
        case 'k': g.key = optarg; break;
        case 'c': g.conns = atoi(optarg); break;
        case 's': g.seconds = atof(optarg); break;
        case 'n': g.count = atol(optarg); break;
        case 'r': g.rate = atoi(optarg); break;
        case 'N': g.nodes_file = optarg; break;
        case 'o': g.out_file = optarg; break;
        case 'b': g.body = optarg; break;
        case 'S': g.slots = atoi(optarg); break;
        case 'O': g.orch_key = optarg; break;
        default: usage();
        }
    }
    if (!g.port || !g.mode || g.conns < 1 || (g.seconds <= 0 && g.count <= 0))
        usage();
    if (strcmp(g.mode, "latency") == 0 && (!g.nodes_file || g.seconds <= 0 ||
                                            g.rate <= 0))
        usage();
    if (strcmp(g.mode, "register") == 0 && !g.orch_key)
        usage();
}

static void print_lat(const char *name, samples *s, bool last)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    printf("  \"%s\": {\"n\": %zu, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"max_ms\": %.3f}%s\n", name, s->n,
           pct(s, 50) * 1e3, pct(s, 90) * 1e3, pct(s, 99) * 1e3,
           s->n ? s->v[s->n - 1] * 1e3 : 0.0, last ? "" : ",");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (sodium_init() < 0)
        die("libsodium cannot start");
    g.base = event_base_new();
    if (!g.base)
        die("no event base");
    if (g.out_file && !(g.out = fopen(g.out_file, "w")))
        die("cannot open --out");
    node *nodes = NULL;
    size_t n_nodes = 0;
    bool lat = strcmp(g.mode, "latency") == 0;
    if (lat)
        nodes = load_nodes(&n_nodes);
    conn *ks = calloc((size_t)g.conns, sizeof *ks);
    g.idle = calloc((size_t)g.conns, sizeof *g.idle);
    if (!ks || !g.idle)
        die("out of memory");
    for (int i = 0; i < g.conns; i++)
        ks[i].c = new_conn();
    g.t0 = now_s();
    g.t_end = g.seconds > 0 ? g.t0 + g.seconds : 1e300;
    struct event *pacer = NULL;
    if (lat) {
        for (size_t i = 0; i < n_nodes; i++)
            node_poll(&nodes[i]);
        for (int i = 0; i < g.conns; i++)
            g.idle[g.n_idle++] = &ks[i];
        pacer = event_new(g.base, -1, EV_PERSIST, pace, NULL);
        struct timeval tv = { 0, 1000 };
        event_add(pacer, &tv);
    } else {
        for (int i = 0; i < g.conns; i++)
            submit(&ks[i]);
    }
    event_base_dispatch(g.base);
    double el = now_s() - g.t0;
    printf("{\n  \"mode\": \"%s\", \"seconds\": %.3f, \"conns\": %d,\n"
           "  \"acked\": %ld, \"failed\": %ld, \"per_second\": %.1f,\n",
           g.mode, el, g.conns, g.acked, g.failed, (double)g.acked / el);
    if (lat)
        printf("  \"nodes\": %zu, \"rate\": %d, \"assigned\": %ld, "
               "\"results\": %ld, \"results_per_second\": %.1f, "
               "\"polls_204\": %ld,\n", n_nodes, g.rate, g.assigned, g.results,
               (double)g.results / el, g.polls_204);
    for (size_t id = 0; lat && id < g.cap_jobs; id++)
        if (g.acked_at[id] > 0 && g.assigned_at[id] > 0) {
            /* An assignment can arrive before the submit reply is read. */
            double fr = g.assigned_at[id] - g.acked_at[id];
            sample_add(&g.assign_from_reply, fr > 0 ? fr : 0);
            sample_add(&g.assign_from_send, g.assigned_at[id] - g.sent_at[id]);
        }
    if (lat) {
        print_lat("submit_reply", &g.submit_lat, false);
        print_lat("assigned_after_reply", &g.assign_from_reply, false);
        print_lat("assigned_after_send", &g.assign_from_send, true);
    } else {
        print_lat("reply", &g.submit_lat, true);
    }
    printf("}\n");
    if (g.out)
        fclose(g.out);
    if (pacer)
        event_free(pacer);
    for (int i = 0; i < g.conns; i++)
        evhttp_connection_free(ks[i].c);
    for (size_t i = 0; i < n_nodes; i++) {
        evhttp_connection_free(nodes[i].poll);
        evhttp_connection_free(nodes[i].report);
    }
    free(nodes);
    free(ks);
    free(g.idle);
    free(g.sent_at);
    free(g.acked_at);
    free(g.assigned_at);
    free(g.submit_lat.v);
    free(g.assign_from_reply.v);
    free(g.assign_from_send.v);
    event_base_free(g.base);
    return 0;
}
