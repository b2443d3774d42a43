/* HTTP plumbing: the route table, auth, bodies (JSON or CBOR) and replies. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "orch.h"

/* Who may call a route. */
#define W_ANYONE 0u
#define W_ADMIN  P_ADMIN
#define W_CLIENT P_CLIENT
#define W_NODE   P_NODE
#define W_ANY    (P_ADMIN | P_CLIENT | P_NODE)
#define W_METRICS P_METRICS

typedef struct route {
    const char *method;
    const char *path;        /* segments in braces match any one segment */
    unsigned who;
    bool body;               /* takes a body */
    void (*fn)(req *q);
} route;

static const route routes[] = {
    { "GET",    "/health",                                 W_ANYONE, false, r_health },
    { "GET",    "/metrics",                                W_ADMIN | W_METRICS, false, r_metrics },
    { "GET",    "/api/v1/stats",                           W_ANY,    false, r_stats },
    { "GET",    "/api/v1/keys",                            W_ANY,    false, r_keys },
    { "GET",    "/api/v1/identity",                        W_ANYONE, false, r_identity },
    { "GET",    "/api/v1/nodes",                           W_CLIENT | W_ADMIN, false, r_nodes_list },
    { "POST",   "/api/v1/nodes/register",                  W_ANYONE, true,  r_node_register },
    { "POST",   "/api/v1/nodes/retire",                    W_ANYONE, true,  r_node_retire },
    { "POST",   "/api/v1/nodes/{id}/retire",               W_ADMIN,  false, r_node_retire_admin },
    { "POST",   "/api/v1/nodes/{id}/heartbeat",            W_NODE,   true,  r_node_heartbeat },
    { "GET",    "/api/v1/nodes/{id}/jobs",                 W_NODE,   false, r_node_poll },
    { "POST",   "/api/v1/nodes/{id}/jobs/{job}/result",    W_NODE,   true,  r_node_result },
    { "POST",   "/api/v1/nodes/{id}/jobs/{job}/decline",   W_NODE,   true,  r_node_decline },
    { "POST",   "/api/v1/nodes/{id}/jobs/{job}/log",       W_NODE,   true,  r_node_log },
    { "POST",   "/api/v1/nodes/{id}/jobs/{job}/events",    W_NODE,   true,  r_node_events },
    { "DELETE", "/api/v1/nodes/{id}",                      W_NODE | W_ADMIN, false, r_node_delete },
    { "GET",    "/api/v1/nodes/{id}/challenge",            W_NODE | W_ADMIN, false, r_node_challenge_get },
    { "POST",   "/api/v1/nodes/{id}/challenge",            W_NODE,   true,  r_node_challenge_answer },
    { "POST",   "/api/v1/jobs",                            W_CLIENT, true,  r_job_submit },
    { "GET",    "/api/v1/jobs",                            W_CLIENT | W_ADMIN, false, r_jobs_list },
    { "GET",    "/api/v1/models",                          W_CLIENT | W_ADMIN, false, r_models },
    { "GET",    "/api/v1/jobs/{id}",                       W_CLIENT | W_ADMIN, false, r_job_get },
    { "DELETE", "/api/v1/jobs/{id}",                       W_CLIENT | W_ADMIN, false, r_job_cancel },
    { "POST",   "/api/v1/jobs/{id}/refund",                W_CLIENT | W_ADMIN, false, r_job_refund },
    { "POST",   "/api/v1/accounts",                        W_ADMIN,  true,  r_account_create },
    { "GET",    "/api/v1/accounts/{id}",                   W_ANY,    false, r_account_get },
    { "POST",   "/api/v1/accounts/{id}/deposit",           W_CLIENT | W_NODE, true, r_account_deposit },
    { "POST",   "/api/v1/accounts/{id}/test-credits",      W_ADMIN,  true,  r_account_credit },
    { "POST",   "/api/v1/accounts/{id}/withdraw",          W_CLIENT | W_NODE, true, r_account_withdraw },
    { "GET",    "/api/v1/accounts/{id}/withdrawals",       W_ANY,    false, r_account_withdrawals },
    { "GET",    "/api/v1/accounts/{id}/payments",          W_ANY,    false, r_account_payments },
    { "GET",    "/api/v1/withdrawals",                     W_ADMIN,  false, r_withdrawals_list },
    { "GET",    "/api/v1/withdrawals/{id}",                W_ANY,    false, r_withdrawal_get },
    { "POST",   "/api/v1/withdrawals/{id}/complete",       W_ADMIN,  true,  r_withdrawal_complete },
    { "POST",   "/api/v1/withdrawals/{id}/fail",           W_ADMIN,  true,  r_withdrawal_fail },
    { "POST",   "/api/v1/withdrawals/{id}/cancel",         W_CLIENT | W_NODE, false, r_withdrawal_cancel },
    { "GET",    "/api/v1/payments/stats",                  W_ADMIN,  false, r_payments_stats },
    { "POST",   "/api/v1/deposits/{id}/confirm",           W_ADMIN,  false, r_deposit_confirm },
    { "DELETE", "/api/v1/deposits/{id}",                   W_ANY,    false, r_deposit_cancel },
    { "POST",   "/api/v1/flows/deploy",                    W_CLIENT, true,  r_flow_deploy },
    { "GET",    "/api/v1/flows",                           W_CLIENT | W_ADMIN, false, r_flows_list },
    { "GET",    "/api/v1/flows/{id}/status",               W_CLIENT | W_ADMIN, false, r_flow_status },
    { "GET",    "/api/v1/flows/{id}/events",               W_CLIENT | W_ADMIN, false, r_flow_events },
    { "GET",    "/api/v1/flows/{id}/logs",                 W_CLIENT | W_ADMIN, false, r_flow_logs },
    { "GET",    "/api/v1/named-flows",                     W_CLIENT | W_ADMIN, false, r_named_flows_list },
    { "GET",    "/api/v1/named-flows/{id}",                W_CLIENT | W_ADMIN, false, r_named_flow_get },
    { "POST",   "/api/v1/named-flows/{id}/rollback",       W_CLIENT | W_ADMIN, true,  r_named_flow_rollback },
    { "POST",   "/api/v1/hooks/{flow}/{name}",             W_ANYONE, false, r_hook },
    { "DELETE", "/api/v1/flows/{id}",                      W_CLIENT | W_ADMIN, false, r_flow_cancel },
    { "POST",   "/api/v1/flows/{id}/pause",                W_CLIENT | W_ADMIN, false, r_flow_pause },
    { "POST",   "/api/v1/flows/{id}/resume",               W_CLIENT | W_ADMIN, false, r_flow_resume },
    { "POST",   "/api/v1/flows/{id}/steps/{step}/approve", W_CLIENT | W_ADMIN, true,  r_flow_approve },
    { "POST",   "/api/v1/flows/{id}/steps/{step}/reject",  W_CLIENT | W_ADMIN, true,  r_flow_reject },
    { "POST",   "/api/v1/events",                          W_CLIENT, true,  r_event_publish },
    { "GET",    "/api/v1/named-flows/{id}/diff",           W_CLIENT | W_ADMIN, false, r_named_flow_diff },
    { "POST",   "/api/v1/flows/validate",                  W_CLIENT | W_ADMIN, true,  r_flow_validate },
    { "POST",   "/api/v1/flows/estimate",                  W_CLIENT | W_ADMIN, true,  r_flow_estimate },
    { "GET",    "/api/v1/modules",                         W_CLIENT | W_ADMIN, false, r_modules },
    { "GET",    "/api/v1/whoami",                          W_ANY,    false, r_whoami },
    { "DELETE", "/api/v1/cache",                           W_CLIENT, false, r_cache_clear },
    { "POST",   "/api/v1/named-flows/{id}/triggers/{name}/disable", W_CLIENT | W_ADMIN, false, r_named_flow_trigger_disable },
    { "POST",   "/api/v1/named-flows/{id}/triggers/{name}/enable",  W_CLIENT | W_ADMIN, false, r_named_flow_trigger_enable },
    { "PUT",    "/api/v1/credentials/{id}",                W_CLIENT, true,  r_cred_put },
    { "GET",    "/api/v1/credentials",                     W_CLIENT, false, r_creds_list },
    { "DELETE", "/api/v1/credentials/{id}",                W_CLIENT, false, r_cred_delete },
    { "PUT",    "/api/v1/blobs/{sha256}",                  W_NODE,   false, r_blob_put },
    { "GET",    "/api/v1/blobs/{sha256}",                  W_CLIENT | W_NODE, false, r_blob_get },
};

#define N_ROUTES (sizeof routes / sizeof routes[0])

void orch_print_routes(void)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        printf("%s %s\n", routes[i].method, routes[i].path);
}

size_t orch_route_count(void)
{
    return N_ROUTES;
}

void orch_route_name(size_t i, const char **method, const char **path)
{
    *method = i < N_ROUTES ? routes[i].method : "";
    *path = i < N_ROUTES ? routes[i].path : "unmatched";
}

int orch_route_index(void (*fn)(req *q))
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (routes[i].fn == fn)
            return (int)i;
    return -1;
}

uint64_t orch_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t orch_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- replies ---- */

void orch_count_code(orch *o, int code)
{
    if (code >= 100 && code < 600)
        o->http_codes[code]++;
}

static const char *reason_of(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return code < 500 ? "Error" : "Internal Server Error";
    }
}

void reply_text(req *q, int code, const char *type, const char *text, size_t len)
{
    if (q->answered)
        return;
    q->answered = true;
    /* An audited operation's reply leaves only once its outcome is on
     * record: now, or for a held reply after the group's commit. */
    static const char audit_fail[] = AUDIT_FAIL_JSON;
    uint64_t of = q->audit_of;
    q->audit_of = 0;
    bool hold = orch_hold_room(q->o);
    if (of && !hold && !audit_end(q->o, of, code)) {
        code = 500;
        type = "application/json";
        text = audit_fail;
        len = sizeof audit_fail - 1;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    struct evbuffer *b = evbuffer_new();
    if (type)
        evhttp_add_header(h, "Content-Type", type);
    /* HEAD: GET's headers, its length, no body (libevent would send one). */
    bool head = q->method && strcmp(q->method, "HEAD") == 0;
    if (head && code != 204 && code != 304) {
        char n[24];
        snprintf(n, sizeof n, "%zu", text ? len : 0);
        evhttp_add_header(h, "Content-Length", n);
    }
    if (b && text && len && !head)
        evbuffer_add(b, text, len);
    orch_count_reply(q->o, q->route, code, q->t0_ns);
    quota_rate_refused(q, code);
    struct evbuffer *body = code == 204 || code == 304 ? NULL : b;
    if (!hold || !orch_hold_reply(q->o, q->r, code, reason_of(code), body, of))
        evhttp_send_reply(q->r, code, reason_of(code), body);
    else if (body)
        b = NULL;   /* kept; sent once the pass's commit is durable */
    if (b)
        evbuffer_free(b);
}

void reply_json(req *q, int code, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
        if (!q->answered) {
            static const char oom[] =
                "{\"error\":{\"code\":\"RZ_ENOMEM\",\"message\":\"out of memory\"}}";
            reply_text(q, 500, "application/json", oom, sizeof oom - 1);
        }
        return;
    }
    if (q->cbor) {
        unsigned char *cb = NULL;
        size_t n = 0;
        if (rz_wire_encode(text, strlen(text), &cb, &n) == RZ_OK) {
            reply_text(q, code, "application/cbor", (const char *)cb, n);
            rz_free(cb);
            free(text);
            return;
        }
    }
    reply_text(q, code, "application/json", text, strlen(text));
    free(text);
}

int http_status_of(int rc)
{
    switch (rc) {
    case RZ_OK: return 200;
    case RZ_EINVAL: case RZ_ESYNTAX: case RZ_ETYPE: case RZ_EDUPLICATE:
        return 400;
    case RZ_EAUTH: return 401;
    case RZ_EFUNDS: return 402;
    case RZ_EDENIED: return 403;
    case RZ_ENOENT: return 404;
    case RZ_ESTATE: case RZ_EEXISTS: case RZ_EEXISTS_DIFFERENT:
    case RZ_EPOSTED: case RZ_EVOIDED: case RZ_EEXPIRED:
        return 409;
    case RZ_ETOOBIG: return 413;
    case RZ_EINVALID: case RZ_EMODULE: case RZ_ECONFIG: case RZ_ECREDENTIAL:
    case RZ_EAMOUNT: case RZ_EOVERFLOW:
        return 422;
    default: return 500;
    }
}

static cJSON *error_doc(int rc, const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddStringToObject(err, "code", rz_status_name(rc));
    cJSON_AddStringToObject(err, "message", message);
    return doc;
}

void reply_error(req *q, int rc, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json(q, http_status_of(rc), error_doc(rc, msg));
}

/* 410: a job or deployment retention removed, told apart from one that
 * never was (404). Its owner went with its record, so anyone asking is
 * told: ids are sequential and say nothing more. */
bool reply_if_removed(req *q, bool deployment, uint64_t id)
{
    if (!rz_engine_compacted_id(q->o->e, deployment, id))
        return false;
    char msg[200];
    snprintf(msg, sizeof msg, "%s %llu was removed by retention: it finished "
             "longer ago than the orchestrator keeps work (--retention-days)",
             deployment ? "deployment" : "job", (unsigned long long)id);
    reply_json(q, 410, error_doc(RZ_ENOENT, msg));
    return true;
}

void reply_limit(req *q, unsigned retry_s, const char *fmt, ...)
{
    char msg[300], secs[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (retry_s) {
        snprintf(secs, sizeof secs, "%u", retry_s);
        evhttp_add_header(evhttp_request_get_output_headers(q->r),
                          "Retry-After", secs);
    }
    reply_json(q, 429, error_doc(RZ_EDENIED, msg));
}

const char *orch_peer(req *q)
{
    struct evhttp_connection *c = evhttp_request_get_connection(q->r);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (c)
        evhttp_connection_get_peer(c, &addr, &port);
    return addr ? addr : "";
}

void reply_rz(req *q, int rc)
{
    const rz_error *e = rz_error_last();
    const char *m = e->code == rc && e->message[0] ? e->message : rz_strerror(rc);
    reply_error(q, rc, "%s", m);
}

void reply_diags(req *q, int rc, const rz_diags *d)
{
    char *dj = NULL;
    cJSON *doc = error_doc(rc, rz_diags_count(d)
                           ? rz_diags_get(d, 0)->message : rz_strerror(rc));
    cJSON *list = NULL;
    if (rz_diags_to_json(d, &dj) == RZ_OK)
        list = cJSON_Parse(dj);
    rz_free(dj);
    if (list && !cJSON_IsArray(list)) {
        cJSON *inner = cJSON_DetachItemFromObjectCaseSensitive(list, "diagnostics");
        cJSON_Delete(list);
        list = inner;
    }
    cJSON_AddItemToObject(doc, "diagnostics", list ? list : cJSON_CreateArray());
    reply_json(q, http_status_of(rc), doc);
}

/* ---- bodies and parameters ---- */

cJSON *parse_json_text(const char *text)
{
    return text ? cJSON_Parse(text) : NULL;
}

/* "x_cents" for an allowed "x_micros" (accepted for one release). */
static bool cents_of(const char *field, const char *allowed)
{
    size_t n = strlen(field), a = strlen(allowed);
    return n > 6 && a > 7 && strcmp(field + n - 6, "_cents") == 0 &&
           strcmp(allowed + a - 7, "_micros") == 0 && n - 6 == a - 7 &&
           strncmp(field, allowed, n - 6) == 0;
}

bool body_fields(req *q, const char *const *allowed)
{
    for (const cJSON *c = q->body ? q->body->child : NULL; c; c = c->next) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(c->string, allowed[i]) == 0 || cents_of(c->string, allowed[i]);
        if (!ok) {
            reply_error(q, RZ_EINVAL, "unknown field \"%.64s\"", c->string);
            return false;
        }
    }
    return true;
}

/* A "x_micros" field given as "x_cents": exact, x 10,000, within max. */
static int body_cents(req *q, const char *name, uint64_t max, uint64_t *out)
{
    char old[64];
    size_t n = strlen(name);
    if (n < 7 || n > 50 || strcmp(name + n - 7, "_micros") != 0)
        return 0;
    snprintf(old, sizeof old, "%.*s_cents", (int)(n - 7), name);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q->body, old);
    if (!v)
        return 0;
    if (cJSON_GetObjectItemCaseSensitive(q->body, name)) {
        reply_error(q, RZ_EINVAL, "give \"%s\" or the older \"%s\", not both",
                    name, old);
        return -1;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d < 0 || d > (double)(max / 10000) ||
        d != (double)(uint64_t)d) {
        reply_error(q, RZ_EINVAL, "\"%s\" must be a whole number from 0 to "
                    "%llu (cents; \"%s\" takes micro-dollars)", old,
                    (unsigned long long)(max / 10000), name);
        return -1;
    }
    *out = (uint64_t)d * 10000;
    return 1;
}

bool body_u64(req *q, const char *name, bool required, uint64_t max,
              uint64_t *out, bool *present)
{
    int crc = body_cents(q, name, max, out);
    if (present)
        *present = crc == 1;
    if (crc)
        return crc == 1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q->body, name);
    if (present)
        *present = v != NULL;
    if (!v) {
        if (required)
            reply_error(q, RZ_EINVAL, "\"%s\" is required", name);
        return !required;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d < 0 || d > (double)max || d != (double)(uint64_t)d) {
        reply_error(q, RZ_EINVAL, "\"%s\" must be a whole number from 0 to %llu",
                    name, (unsigned long long)max);
        return false;
    }
    *out = (uint64_t)d;
    return true;
}

bool body_obj(req *q, const char *name, cJSON **out)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(q->body, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsObject(v)) {
        reply_error(q, RZ_EINVAL, "\"%s\" must be an object", name);
        return false;
    }
    *out = v;
    return true;
}

bool body_str(req *q, const char *name, bool required, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q->body, name);
    *out = NULL;
    if (!v && !required)
        return true;
    if (!cJSON_IsString(v)) {
        reply_error(q, RZ_EINVAL, "\"%s\" must be a string", name);
        return false;
    }
    *out = v->valuestring;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

bool param_u64(req *q, int i, uint64_t *out)
{
    if (!parse_u64(q->params[i], out) || *out == 0) {
        reply_error(q, RZ_ENOENT, "no such id \"%.32s\"", q->params[i]);
        return false;
    }
    return true;
}

/* 32 lowercase hex digits only (the API's account ids). */
bool param_account(req *q, int i, rz_ledger_id *out)
{
    const char *s = q->params[i];
    bool ok = strlen(s) == 32;
    for (size_t k = 0; ok && k < 32; k++)
        ok = (s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f');
    if (!ok || rz_ledger_id_parse(s, out) != RZ_OK) {
        reply_error(q, RZ_ENOENT, "no account \"%.40s\"", s);
        return false;
    }
    return true;
}

bool query_get(req *q, const char *name, const char **value)
{
    *value = NULL;
    if (!q->query_parsed) {
        const char *s = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(q->r));
        if (!s)
            return true;
        if (evhttp_parse_query_str(s, &q->query) != 0) {
            reply_error(q, RZ_EINVAL, "malformed query string");
            return false;
        }
        q->query_parsed = true;
    }
    *value = evhttp_find_header(&q->query, name);
    return true;
}

bool query_u64(req *q, const char *name, uint64_t def, uint64_t max,
               uint64_t *out)
{
    const char *v;
    *out = def;
    if (!query_get(q, name, &v))
        return false;
    bool ok = !v || (parse_u64(v, out) && *out <= max);
    if (!ok)
        reply_error(q, RZ_EINVAL, "\"%s\" must be a whole number from 0 to %llu",
                    name, (unsigned long long)max);
    return ok;
}

static bool has_type(const char *header, const char *type)
{
    return header && strcasestr(header, type) != NULL;
}

/* Parse the body into q->body: an object, JSON or CBOR by Content-Type. An
 * empty body is {}. */
static bool read_body(req *q, bool cbor_in)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
    size_t len = evbuffer_get_length(in);
    if (len > q->o->opts.max_body) {
        reply_error(q, RZ_ETOOBIG, "the body has %zu bytes; at most %zu", len,
                    q->o->opts.max_body);
        return false;
    }
    const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "";
    char *json = NULL;
    if (len && cbor_in) {
        int rc = rz_wire_decode((const unsigned char *)data, len, &json);
        if (rc != RZ_OK) {
            reply_error(q, rc == RZ_ETOOBIG ? RZ_ETOOBIG : RZ_ESYNTAX,
                        "malformed CBOR body: %s", rz_error_last()->message);
            return false;
        }
        data = json;
        len = strlen(json);
    }
    /* At the door: text that is not UTF-8 or a number a double would round
     * would be stored and served as it came (a node's label, a result's
     * error), breaking strict clients. */
    if (rz_wire_check_json(data, len) != RZ_OK) {
        reply_error(q, RZ_ESYNTAX, "%s: %s", cbor_in ? "CBOR body (bytes of its JSON form)"
                    : "JSON body", rz_error_last()->message);
        rz_free(json);
        return false;
    }
    const char *end = NULL;
    q->body = len ? cJSON_ParseWithLengthOpts(data, len, &end, 0)
                  : cJSON_CreateObject();
    bool trailing = false;
    for (const char *p = end; q->body && p && p < data + len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
            trailing = true;
    rz_free(json);
    if (!q->body || trailing) {
        reply_error(q, RZ_ESYNTAX, "malformed JSON body");
        return false;
    }
    if (!cJSON_IsObject(q->body)) {
        reply_error(q, RZ_EINVAL, "the body must be an object");
        return false;
    }
    return true;
}

static bool body_over(req *q)
{
    return evbuffer_get_length(evhttp_request_get_input_buffer(q->r)) >
           q->o->opts.max_body;
}

/* ---- routing ---- */

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

/* Does `path` fit route pattern `pat`? Fills params. */
static bool match_path(const char *pat, const char *path, char params[3][80])
{
    int np = 0;
    while (*pat && *path) {
        if (*pat != '/' || *path != '/')
            return false;
        pat++, path++;
        const char *pe = strchr(pat, '/'), *se = strchr(path, '/');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - path) : strlen(path);
        if (pl && pat[0] == '{') {
            if (!sl || sl >= 80 || np == 3)
                return false;
            memcpy(params[np], path, sl);
            params[np++][sl] = '\0';
        } else if (pl != sl || memcmp(pat, path, pl) != 0) {
            return false;
        }
        pat += pl, path += sl;
    }
    return !*pat && !*path;
}

/* "the admin key", "client keys or the admin key", ... */
static const char *who_may(unsigned who)
{
    switch (who) {
    case W_ADMIN: return "the admin key";
    case W_CLIENT: return "client keys";
    case W_NODE: return "node tokens";
    case W_CLIENT | W_ADMIN: return "client keys and the admin key";
    case W_NODE | W_ADMIN: return "node tokens and the admin key";
    case W_CLIENT | W_NODE: return "client keys and node tokens";
    case W_ADMIN | W_METRICS: return "the admin key and the metrics key";
    default: return "other keys";
    }
}

/* Never the key: who asked, for what, and why it was refused. */
static void log_auth(req *q, const char *why)
{
    const char *m, *p;
    orch_route_name((size_t)q->route, &m, &p);
    orch_log(q->o, ORCH_LOG_WARN, "auth_failed", "peer", LOG_STR, orch_peer(q),
             "method", LOG_STR, q->method, "route", LOG_STR, p, "reason", LOG_STR, why,
             NULL);
}

static bool authenticate(req *q, unsigned who)
{
    if (who == W_ANYONE)
        return true;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(q->r),
                                       "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        log_auth(q, "no API key");
        reply_error(q, RZ_EAUTH, "an API key is required (Authorization: Bearer KEY)");
        return false;
    }
    /* A locked address or key is not checked at all: a guesser learns
     * nothing while it waits. */
    const char *peer = orch_peer(q);
    unsigned wait_s = auth_wait_s(q->o, peer, h + 7);
    if (wait_s) {
        log_auth(q, "throttled after wrong keys");
        reply_limit(q, wait_s, "too many wrong API keys from this address or "
                    "of this key; retry in %u s", wait_s);
        return false;
    }
    if ((who & W_METRICS) && auth_is_metrics_key(q->o, h + 7)) {
        q->who.kind = P_METRICS;
        return true;
    }
    if (auth_lookup(q->o, h + 7, &q->who) != RZ_OK) {
        auth_failed(q->o, peer, h + 7);
        log_auth(q, "unknown API key");
        reply_error(q, RZ_EAUTH, "unknown API key");
        return false;
    }
    if (!(q->who.kind & who)) {
        reply_error(q, RZ_EDENIED, "this route is for %s", who_may(who));
        return false;
    }
    return true;
}

/* Answer in CBOR when the caller asks for it, or speaks it and does not ask
 * for JSON. */
static bool wants_cbor(struct evhttp_request *r, bool cbor_in)
{
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r),
                                            "Accept");
    if (has_type(accept, "application/cbor"))
        return true;
    if (has_type(accept, "application/json"))
        return false;
    return cbor_in;
}

/* No HEAD: streams answer on their own (not through reply_text), and a
 * node's GET challenge may start one. */
static bool streams(const route *rt)
{
    return rt->fn == r_flow_events || rt->fn == r_node_poll ||
           rt->fn == r_node_challenge_get;
}

static const char *const methods[] = { "GET", "HEAD", "POST", "DELETE", "OPTIONS" };

/* The route for `method` at `path`, and in *allow the methods the path
 * has (a bit per methods[] entry; 0: an unknown path). A route without
 * {params} wins over one with: POST /flows/validate is not a flow id. */
static const route *find_route(const char *method, const char *path,
                               char params[3][80], unsigned *allow)
{
    bool head = strcmp(method, "HEAD") == 0;
    const route *hit = NULL;
    *allow = 0;
    for (int literal = 1; literal >= 0 && !*allow; literal--)
        for (size_t i = 0; i < N_ROUTES; i++) {
            char p[3][80];
            if ((strchr(routes[i].path, '{') == NULL) != literal ||
                !match_path(routes[i].path, path, p))
                continue;
            for (unsigned m = 0; m < 4; m++)
                if (strcmp(routes[i].method, methods[m]) == 0 ||
                    (m == 1 && !strcmp(routes[i].method, "GET") && !streams(&routes[i])))
                    *allow |= 1u << m | 1u << 4;
            if (!hit && (strcmp(routes[i].method, method) == 0 ||
                         (head && !strcmp(routes[i].method, "GET") && !streams(&routes[i])))) {
                hit = &routes[i];
                memcpy(params, p, sizeof p);
            }
        }
    return hit;
}

static void allow_text(unsigned allow, char *out, size_t cap)
{
    out[0] = '\0';
    for (unsigned m = 0; m < 5; m++)
        if (allow & 1u << m)
            snprintf(out + strlen(out), cap - strlen(out), "%s%s",
                     out[0] ? ", " : "", methods[m]);
}

/* The API's own paths: never the console's. */
static bool api_path(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0 ||
           strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0;
}

/* No route for this method: 405 with Allow, OPTIONS, the console, 404. */
static void unrouted(req *q, const char *path, unsigned allow)
{
    char text[64];
    bool console = !api_path(path);
    if (console && !allow)
        allow = 1u << 0 | 1u << 1 | 1u << 4;   /* GET, HEAD, OPTIONS */
    allow_text(allow, text, sizeof text);
    if (!allow) {
        reply_error(q, RZ_ENOENT, "no route %.200s", path);
    } else if (strcmp(q->method, "OPTIONS") == 0) {
        orch_options(q, text);
    } else if (console && (!strcmp(q->method, "GET") || !strcmp(q->method, "HEAD"))) {
        orch_console_serve(q, path);
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(q->r), "Allow", text);
        reply_json(q, 405, error_doc(RZ_EINVAL, "method not allowed here"));
    }
}

static void result_oversize(req *q)
{
    r_node_result_oversize(q, evbuffer_get_length(
        evhttp_request_get_input_buffer(q->r)));
}

static void dispatch(struct evhttp_request *r, void *arg)
{
    orch *o = arg;
    httpconn_dispatched(o->conns, r);
    orch_group_open(o);
    req q;
    memset(&q, 0, sizeof q);
    q.o = o;
    q.r = r;
    q.t0_ns = orch_mono_ns();
    q.route = (int)N_ROUTES;   /* "unmatched" until a route is found */
    q.method = method_name(evhttp_request_get_command(r));
    const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(r),
                                           "Content-Type");
    bool cbor_in = has_type(ctype, "application/cbor");
    q.cbor = wants_cbor(r, cbor_in);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    if (!path || !*path)
        path = "/";
    orch_http_headers(&q);
    unsigned allow = 0;
    const route *hit = find_route(q.method, path, q.params, &allow);
    if (hit)
        q.route = (int)(hit - routes);
    void (*run)(req *) = NULL;
    bool audited = false;
    if (o->stopping)
        reply_error(&q, RZ_ESTATE, "the server is stopping");
    else if (!hit)
        unrouted(&q, path, allow);
    else if (!authenticate(&q, hit->who) || !quota_rate_take(&q, hit->fn))
        ;
    else if (hit->fn == r_node_result && body_over(&q))
        run = result_oversize, audited = true;
    else if (!hit->body || read_body(&q, cbor_in))
        run = hit->fn, audited = quota_audited(&q, hit->fn);
    /* An audited call runs once its begin record is durable: in a group
     * (the pass's flush), it waits there with the pass's other begin
     * records, which then share one fdatasync. */
    if (run && audited && o->grouped && audit_begin_later(&q, path, run))
        return;
    if (run && (!audited || audit_begin(&q, path)))
        run(&q);
    orch_request_done(&q);
}

void orch_request_done(req *q)
{
    orch *o = q->o;
    if (!q->answered)   /* held requests are marked answered by their holder */
        reply_error(q, RZ_EINTERNAL, "no reply");
    cJSON_Delete(q->body);
    q->body = NULL;
    if (q->query_parsed)
        evhttp_clear_headers(&q->query);
    q->query_parsed = false;
    if (q->route != (int)N_ROUTES && strcmp(q->method, "GET") != 0 &&
        strcmp(q->method, "HEAD") != 0) {
        o->changed = true;
        o->writes++;
    }
    if (!o->grouped)
        orch_after(o);   /* no group (a broken engine): as before */
}

int orch_http_start(orch *o)
{
    o->http = evhttp_new(o->base);
    if (!o->http)
        return -1;
    /* Bodies up to 4x the limit are read so that their 413 is the API's
     * JSON error; beyond that libevent refuses them itself (413). */
    size_t cap = o->opts.max_body > SIZE_MAX / 4 ? SIZE_MAX : o->opts.max_body * 4;
    evhttp_set_max_body_size(o->http, (ev_ssize_t)(cap < 1024 ? 1024 : cap));
    evhttp_set_max_headers_size(o->http, 16384);
    evhttp_set_allowed_methods(o->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                               EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT |
                               EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_OPTIONS);
    evhttp_set_timeout(o->http, ORCH_WAIT_MAX + 30);
    evhttp_set_gencb(o->http, dispatch, o);
    httpconn_limits lim = { o->opts.max_connections, o->opts.read_deadline_s,
                            NULL, NULL };
    orch_tls_maker(o, &lim);
    return (o->conns = httpconn_attach(o->http, o->base, &lim)) ? 0 : -1;
}
