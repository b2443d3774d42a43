/* /health, /metrics (Prometheus text 0.0.4), /api/v1/stats, /api/v1/keys.
 *
 * Requests are counted per route of the route table (its path template,
 * never the path asked for: label values stay a fixed, small set however
 * many ids and probes arrive), per method and per status code, with a
 * latency histogram per route. A code outside the fixed list is counted
 * as "other" for the same reason. Everything is plain counters bumped on
 * the event loop: no locks, no allocation after start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "orch.h"
#include "procmetrics.h"

const double orch_lat_bounds[ORCH_LAT_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300
};

/* Reply times: most answers take well under a millisecond; long-polls and
 * event streams (counted when they start) up to their wait. */
#define DUR_BUCKETS 12
static const double dur_bounds[DUR_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30
};

static const int codes[] = {
    200, 201, 202, 204, 400, 401, 402, 403, 404, 405, 409, 413, 415, 422,
    429, 431, 500, 501, 503,
};
#define N_CODES (sizeof codes / sizeof codes[0])

/* Step run times: seconds to hours. */
#define STEP_BUCKETS 10
static const double step_bounds[STEP_BUCKETS] = {
    0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200, 43200
};
/* Modules with a series of their own; later ones count as "other", so a
 * registry of thousands cannot grow /metrics without bound. */
#define MODULE_SERIES_MAX 64

struct module_stats {
    char name[64];
    uint64_t b[STEP_BUCKETS + 1];
    double sum;
    uint64_t n;
};

struct route_stats {
    uint64_t by_code[N_CODES + 1];    /* the last: any other code */
    uint64_t dur[DUR_BUCKETS + 1];
    double dur_sum;
    uint64_t dur_n;
};

int orch_metrics_init(orch *o)
{
    o->started_ms = orch_now_ms();
    o->route_stats = calloc(orch_route_count() + 1, sizeof *o->route_stats);
    return o->route_stats ? 0 : -1;
}

void orch_metrics_free(orch *o)
{
    free(o->route_stats);
    o->route_stats = NULL;
    free(o->module_stats);
    o->module_stats = NULL;
}

static struct module_stats *module_slot(orch *o, const char *module)
{
    char name[64];
    snprintf(name, sizeof name, "%s", module && *module ? module : "other");
    for (char *p = name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '_';
    for (size_t i = 0; i < o->n_module_stats; i++)
        if (strcmp(o->module_stats[i].name, name) == 0)
            return &o->module_stats[i];
    if (!o->module_stats) {
        o->module_stats = calloc(MODULE_SERIES_MAX + 1, sizeof *o->module_stats);
        if (!o->module_stats)
            return NULL;
    }
    if (o->n_module_stats == MODULE_SERIES_MAX)
        snprintf(name, sizeof name, "other");
    for (size_t i = 0; i < o->n_module_stats; i++)
        if (strcmp(o->module_stats[i].name, name) == 0)
            return &o->module_stats[i];
    struct module_stats *m = &o->module_stats[o->n_module_stats++];
    snprintf(m->name, sizeof m->name, "%s", name);
    return m;
}

void orch_observe_step(orch *o, uint64_t job)
{
    rz_engine_job_info ji;
    if (rz_engine_job_get(o->e, job, &ji) != RZ_OK || ji.state != RZ_JOB_SUCCEEDED)
        return;
    struct module_stats *m = module_slot(o, ji.module_id);
    if (!m)
        return;
    double s = (double)ji.run_ms / 1000.0;
    size_t b = 0;
    while (b < STEP_BUCKETS && s > step_bounds[b])
        b++;
    m->b[b]++;
    m->sum += s;
    m->n++;
}

static void print_steps(orch *o, struct evbuffer *b)
{
    evbuffer_add_printf(b, "# HELP rhizos_step_duration_seconds Billed run time of "
                        "succeeded jobs, by module.\n"
                        "# TYPE rhizos_step_duration_seconds histogram\n");
    for (size_t i = 0; i < o->n_module_stats; i++) {
        const struct module_stats *m = &o->module_stats[i];
        uint64_t cum = 0;
        for (size_t k = 0; k <= STEP_BUCKETS; k++) {
            cum += m->b[k];
            char le[16];
            if (k < STEP_BUCKETS)
                snprintf(le, sizeof le, "%g", step_bounds[k]);
            else
                snprintf(le, sizeof le, "+Inf");
            evbuffer_add_printf(b, "rhizos_step_duration_seconds_bucket{module=\"%s\","
                                "le=\"%s\"} %llu\n", m->name, le, (unsigned long long)cum);
        }
        evbuffer_add_printf(b, "rhizos_step_duration_seconds_sum{module=\"%s\"} %.3f\n"
                            "rhizos_step_duration_seconds_count{module=\"%s\"} %llu\n",
                            m->name, m->sum, m->name, (unsigned long long)m->n);
    }
}

void orch_count_reply(orch *o, int route, int code, uint64_t t0_ns)
{
    orch_count_code(o, code);
    if (route < 0 || (size_t)route > orch_route_count() || !o->route_stats)
        return;
    struct route_stats *rs = &o->route_stats[route];
    size_t c = 0;
    while (c < N_CODES && codes[c] != code)
        c++;
    rs->by_code[c]++;
    uint64_t now = orch_mono_ns();
    double s = now > t0_ns && t0_ns ? (double)(now - t0_ns) / 1e9 : 0;
    size_t b = 0;
    while (b < DUR_BUCKETS && s > dur_bounds[b])
        b++;
    rs->dur[b]++;
    rs->dur_sum += s;
    rs->dur_n++;
    if (o->opts.access_log) {
        const char *m, *p;
        orch_route_name((size_t)route, &m, &p);
        orch_log(o, ORCH_LOG_INFO, "request", "method", LOG_STR, *m ? m : "any",
                 "route", LOG_STR, p, "code", LOG_U64, (uint64_t)code,
                 "ms", LOG_F64, s * 1000.0, NULL);
    }
}

/* A job was handed to a node: time since it was (last) queued. */
void orch_observe_dispatch(orch *o, uint64_t job, uint64_t now)
{
    uint64_t queued = 0;
    if (rz_engine_job_times(o->e, job, NULL, &queued) != RZ_OK || !queued ||
        queued > now)
        return;   /* queued before this process opened the engine */
    double s = (double)(now - queued) / 1000.0;
    size_t b = 0;
    while (b < ORCH_LAT_BUCKETS && s > orch_lat_bounds[b])
        b++;
    o->lat_count[b]++;
    o->lat_sum += s;
    o->lat_n++;
}

void r_health(req *q)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "status", "ok");
    cJSON_AddStringToObject(doc, "version", rz_version());
    reply_json(q, 200, doc);
}

void r_keys(req *q)
{
    char hex[65];
    hex_encode(q->o->pk, 32, hex);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "x25519_public_key", hex);
    reply_json(q, 200, doc);
}

/* Open to anyone: what a node names in its signed registration (version
 * 2 proofs), learnt before it has a token. Only the public key. */
void r_identity(req *q)
{
    r_keys(q);
}

void r_stats(req *q)
{
    rz_engine_stats st;
    rz_engine_stats_get(q->o->e, &st);
    cJSON *doc = cJSON_CreateObject();
    cJSON *n = cJSON_AddObjectToObject(doc, "nodes");
    cJSON_AddNumberToObject(n, "active", (double)st.nodes_active);
    cJSON_AddNumberToObject(n, "lost", (double)st.nodes_lost);
    cJSON *j = cJSON_AddObjectToObject(doc, "jobs");
    for (int s = RZ_JOB_PENDING; s <= RZ_JOB_CANCELLED; s++)
        cJSON_AddNumberToObject(j, rz_job_state_name((rz_job_state)s),
                                (double)st.jobs[s]);
    cJSON_AddNumberToObject(doc, "queue_depth", (double)st.jobs[RZ_JOB_QUEUED]);
    cJSON *d = cJSON_AddObjectToObject(doc, "deployments");
    cJSON_AddNumberToObject(d, "running", (double)st.deployments_running);
    cJSON_AddNumberToObject(d, "done", (double)st.deployments_done);
    reply_json(q, 200, doc);
}

/* The sum of what succeeded jobs were charged: the ledger's volume. */
uint64_t orch_volume_micros(orch *o)
{
    return rz_engine_volume_micros(o->e);   /* finished jobs stay on disk */
}

/* Per route: requests by method and code, and the reply-time histogram. */
static void print_routes(orch *o, struct evbuffer *b)
{
    size_t n = orch_route_count();
    evbuffer_add_printf(b, "# HELP rhizos_http_requests_total Requests by route "
                        "(the route table's path), method and reply code.\n"
                        "# TYPE rhizos_http_requests_total counter\n");
    for (size_t i = 0; i <= n; i++) {
        const char *m, *p;
        orch_route_name(i, &m, &p);
        for (size_t c = 0; c <= N_CODES; c++) {
            uint64_t v = o->route_stats[i].by_code[c];
            if (!v)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%s", c < N_CODES ? "" : "other");
            if (c < N_CODES)
                snprintf(code, sizeof code, "%d", codes[c]);
            evbuffer_add_printf(b, "rhizos_http_requests_total{method=\"%s\","
                                "route=\"%s\",code=\"%s\"} %llu\n", *m ? m : "any",
                                p, code, (unsigned long long)v);
        }
    }
    evbuffer_add_printf(b, "# HELP rhizos_http_request_duration_seconds From a "
                        "request's arrival to its reply (a stream's or held "
                        "poll's: to its start or its answer).\n"
                        "# TYPE rhizos_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i <= n; i++) {
        const struct route_stats *rs = &o->route_stats[i];
        if (!rs->dur_n)
            continue;
        const char *m, *p;
        orch_route_name(i, &m, &p);
        uint64_t cum = 0;
        for (size_t k = 0; k <= DUR_BUCKETS; k++) {
            cum += rs->dur[k];
            char le[16];
            if (k < DUR_BUCKETS)
                snprintf(le, sizeof le, "%g", dur_bounds[k]);
            else
                snprintf(le, sizeof le, "+Inf");
            evbuffer_add_printf(b, "rhizos_http_request_duration_seconds_bucket{"
                                "method=\"%s\",route=\"%s\",le=\"%s\"} %llu\n",
                                *m ? m : "any", p, le, (unsigned long long)cum);
        }
        evbuffer_add_printf(b, "rhizos_http_request_duration_seconds_sum{method=\"%s\","
                            "route=\"%s\"} %.6f\n"
                            "rhizos_http_request_duration_seconds_count{method=\"%s\","
                            "route=\"%s\"} %llu\n", *m ? m : "any", p, rs->dur_sum,
                            *m ? m : "any", p, (unsigned long long)rs->dur_n);
    }
}

/* Which build this is, and the standard process_* metrics. */
static void print_process(orch *o, struct evbuffer *b)
{
    evbuffer_add_printf(b,
        "# HELP rhizos_build_info The running orchestrator's version.\n"
        "# TYPE rhizos_build_info gauge\nrhizos_build_info{version=\"%s\"} 1\n",
        rz_version());
    procmetrics_print(b, (double)o->started_ms / 1000.0);
}

void r_metrics(req *q)
{
    orch *o = q->o;
    rz_engine_stats st;
    rz_engine_stats_get(o->e, &st);
    rz_ledger_stats ls;
    memset(&ls, 0, sizeof ls);
    /* On failure the zeroed stats are reported. */
    (void)!rz_ledger_stats_get(rz_engine_ledger(o->e), &ls);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    evbuffer_add_printf(b, "# HELP rhizos_jobs Jobs by state.\n# TYPE rhizos_jobs gauge\n");
    for (int s = RZ_JOB_PENDING; s <= RZ_JOB_CANCELLED; s++)
        evbuffer_add_printf(b, "rhizos_jobs{state=\"%s\"} %llu\n",
                            rz_job_state_name((rz_job_state)s),
                            (unsigned long long)st.jobs[s]);
    /* Finished jobs never leave their final state: counters. */
    evbuffer_add_printf(b, "# HELP rhizos_jobs_finished_total Jobs by outcome.\n"
                        "# TYPE rhizos_jobs_finished_total counter\n");
    for (int s = RZ_JOB_SUCCEEDED; s <= RZ_JOB_CANCELLED; s++)
        evbuffer_add_printf(b, "rhizos_jobs_finished_total{outcome=\"%s\"} %llu\n",
                            rz_job_state_name((rz_job_state)s),
                            (unsigned long long)st.jobs[s]);
    evbuffer_add_printf(b, "# HELP rhizos_nodes Nodes by state.\n# TYPE rhizos_nodes gauge\n"
                        "rhizos_nodes{state=\"active\"} %llu\n"
                        "rhizos_nodes{state=\"lost\"} %llu\n",
                        (unsigned long long)st.nodes_active,
                        (unsigned long long)st.nodes_lost);
    evbuffer_add_printf(b, "# HELP rhizos_queue_depth Jobs waiting for a node.\n"
                        "# TYPE rhizos_queue_depth gauge\nrhizos_queue_depth %llu\n",
                        (unsigned long long)st.jobs[RZ_JOB_QUEUED]);
    evbuffer_add_printf(b, "# HELP rhizos_deployments Flow deployments by state.\n"
                        "# TYPE rhizos_deployments gauge\n"
                        "rhizos_deployments{state=\"running\"} %llu\n"
                        "rhizos_deployments{state=\"done\"} %llu\n",
                        (unsigned long long)st.deployments_running,
                        (unsigned long long)st.deployments_done);
    evbuffer_add_printf(b, "# HELP rhizos_engine_commits_total Commits of the engine's "
                        "store (a pass's calls share one; a pass that changed "
                        "nothing makes none).\n# TYPE rhizos_engine_commits_total counter\n"
                        "rhizos_engine_commits_total %llu\n",
                        (unsigned long long)st.commits);
    evbuffer_add_printf(b, "# HELP rhizos_auth_pass_commits_total A pass's "
                        "commits of the auth store that held writes (a pass "
                        "whose writes all have a redo copy in the engine's "
                        "commit makes none).\n"
                        "# TYPE rhizos_auth_pass_commits_total counter\n"
                        "rhizos_auth_pass_commits_total %llu\n"
                        "# HELP rhizos_auth_lag_commits_total Commits of "
                        "the auth store's writes that passes kept open, 50 ms "
                        "after the first, or before a retention pass, a "
                        "backup or a stop.\n"
                        "# TYPE rhizos_auth_lag_commits_total counter\n"
                        "rhizos_auth_lag_commits_total %llu\n",
                        (unsigned long long)o->auth_pass_commits,
                        (unsigned long long)o->auth_lag_commits);
    evbuffer_add_printf(b, "# HELP rhizos_auth_commit_failures_total Commits "
                        "of the auth store's group that failed, and failed "
                        "rebuilds (the records are put back from the "
                        "engine's redo copies, on a backoff).\n"
                        "# TYPE rhizos_auth_commit_failures_total counter\n"
                        "rhizos_auth_commit_failures_total %llu\n"
                        "# HELP rhizos_auth_redo_rebuilds_total Times the "
                        "records of a failed commit were put back.\n"
                        "# TYPE rhizos_auth_redo_rebuilds_total counter\n"
                        "rhizos_auth_redo_rebuilds_total %llu\n"
                        "# HELP rhizos_auth_redo_failing 1 while the auth "
                        "store's records of results wait for a rebuild from "
                        "the engine's copies (its last commit or rebuild "
                        "failed; one failing for long needs a restart).\n"
                        "# TYPE rhizos_auth_redo_failing gauge\n"
                        "rhizos_auth_redo_failing %d\n",
                        (unsigned long long)o->auth_commit_failures,
                        (unsigned long long)o->auth_redo_rebuilds,
                        o->redo_failing ? 1 : 0);
    evbuffer_add_printf(b, "# HELP rhizos_auth_redo_start_records Redo copies "
                        "the start found: put back, stale (the store had "
                        "them), or of jobs retention removed (deleted).\n"
                        "# TYPE rhizos_auth_redo_start_records gauge\n"
                        "rhizos_auth_redo_start_records{kind=\"put\"} %llu\n"
                        "rhizos_auth_redo_start_records{kind=\"stale\"} %llu\n"
                        "rhizos_auth_redo_start_records{kind=\"removed\"} %llu\n",
                        (unsigned long long)o->redo_start_put,
                        (unsigned long long)o->redo_start_stale,
                        (unsigned long long)o->redo_start_gone);
    evbuffer_add_printf(b, "# HELP rhizos_node_attempts_ended_total Attempts a "
                        "node's poll said ended before their result came: "
                        "their slot was free for its next job at once.\n"
                        "# TYPE rhizos_node_attempts_ended_total counter\n"
                        "rhizos_node_attempts_ended_total %llu\n",
                        (unsigned long long)o->nodes_ended);
    evbuffer_add_printf(b, "# HELP rhizos_dispatch_latency_seconds From queued to "
                        "handed to a node.\n# TYPE rhizos_dispatch_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < ORCH_LAT_BUCKETS; i++) {
        cum += o->lat_count[i];
        evbuffer_add_printf(b, "rhizos_dispatch_latency_seconds_bucket{le=\"%g\"} %llu\n",
                            orch_lat_bounds[i], (unsigned long long)cum);
    }
    evbuffer_add_printf(b, "rhizos_dispatch_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "rhizos_dispatch_latency_seconds_sum %.6f\n"
                        "rhizos_dispatch_latency_seconds_count %llu\n",
                        (unsigned long long)o->lat_n, o->lat_sum,
                        (unsigned long long)o->lat_n);
    evbuffer_add_printf(b, "# HELP rhizos_ledger_fees_micros_total Platform fees posted.\n"
                        "# TYPE rhizos_ledger_fees_micros_total counter\n"
                        "rhizos_ledger_fees_micros_total %llu\n"
                        "# HELP rhizos_ledger_held_micros Money held in escrow now.\n"
                        "# TYPE rhizos_ledger_held_micros gauge\nrhizos_ledger_held_micros %llu\n"
                        "# HELP rhizos_ledger_volume_micros_total What succeeded jobs "
                        "were charged.\n# TYPE rhizos_ledger_volume_micros_total counter\n"
                        "rhizos_ledger_volume_micros_total %llu\n",
                        (unsigned long long)ls.fees_micros,
                        (unsigned long long)ls.escrow_held_micros,
                        (unsigned long long)orch_volume_micros(o));
    evbuffer_add_printf(b, "# HELP rhizos_retention_removed_total Records retention "
                        "removed from the store (as of its last pass).\n"
                        "# TYPE rhizos_retention_removed_total counter\n"
                        "rhizos_retention_removed_total{kind=\"job\"} %llu\n"
                        "rhizos_retention_removed_total{kind=\"deployment\"} %llu\n"
                        "rhizos_retention_removed_total{kind=\"step_event\"} %llu\n",
                        (unsigned long long)o->retained.total_jobs,
                        (unsigned long long)o->retained.total_deployments,
                        (unsigned long long)o->retained.total_events);
    evbuffer_add_printf(b, "# HELP rhizos_audit_records_total Audit records appended "
                        "since start.\n# TYPE rhizos_audit_records_total counter\n"
                        "rhizos_audit_records_total %llu\n"
                        "# HELP rhizos_audit_seconds_total Time spent appending them "
                        "(write, fdatasync, the head's commit), on the event loop.\n"
                        "# TYPE rhizos_audit_seconds_total counter\n"
                        "rhizos_audit_seconds_total %.6f\n"
                        "# HELP rhizos_audit_syncs_total Their fdatasyncs (a pass's end "
                        "records share the next write's).\n# TYPE rhizos_audit_syncs_total counter\n"
                        "rhizos_audit_syncs_total %llu\n"
                        "# HELP rhizos_audit_head_commits_total Moves of the chain's "
                        "head committed on their own (the others go with a pass's "
                        "commit).\n# TYPE rhizos_audit_head_commits_total counter\n"
                        "rhizos_audit_head_commits_total %llu\n",
                        (unsigned long long)o->audit_records, (double)o->audit_ns / 1e9,
                        (unsigned long long)o->audit_syncs,
                        (unsigned long long)o->audit_head_commits);
    o->http_codes[200]++;   /* this reply */
    evbuffer_add_printf(b, "# HELP rhizos_http_responses_total Replies by status, "
                        "routed or not.\n# TYPE rhizos_http_responses_total counter\n");
    for (int c = 100; c < 600; c++)
        if (o->http_codes[c])
            evbuffer_add_printf(b, "rhizos_http_responses_total{code=\"%d\"} %llu\n",
                                c, (unsigned long long)o->http_codes[c]);
    o->http_codes[200]--;
    httpconn_stats cs = httpconn_get_stats(o->conns);
    evbuffer_add_printf(b, "# HELP rhizos_http_connections Connections open now.\n"
                        "# TYPE rhizos_http_connections gauge\n"
                        "rhizos_http_connections %llu\n"
                        "# HELP rhizos_http_connections_accepted_total Connections "
                        "accepted since start.\n"
                        "# TYPE rhizos_http_connections_accepted_total counter\n"
                        "rhizos_http_connections_accepted_total %llu\n"
                        "# HELP rhizos_http_connections_refused_total Closed on "
                        "accept: past --max-connections.\n"
                        "# TYPE rhizos_http_connections_refused_total counter\n"
                        "rhizos_http_connections_refused_total %llu\n"
                        "# HELP rhizos_http_read_deadline_total Closed: a request "
                        "not whole within --read-deadline.\n"
                        "# TYPE rhizos_http_read_deadline_total counter\n"
                        "rhizos_http_read_deadline_total %llu\n",
                        (unsigned long long)cs.open, (unsigned long long)cs.accepted,
                        (unsigned long long)cs.refused,
                        (unsigned long long)cs.expired);
    print_routes(o, b);
    print_steps(o, b);
    print_process(o, b);
    size_t len = evbuffer_get_length(b);
    char *text = malloc(len + 1);
    if (text)
        evbuffer_remove(b, text, len);
    evbuffer_free(b);
    if (!text) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    reply_text(q, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}
