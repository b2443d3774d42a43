/* /health, /metrics (Prometheus text 0.0.4), /api/v1/stats, /api/v1/keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "orch.h"

const double orch_lat_bounds[ORCH_LAT_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300
};

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
    evbuffer_add_printf(b, "# HELP rhizos_ledger_fees_micros Platform fees posted.\n"
                        "# TYPE rhizos_ledger_fees_micros counter\nrhizos_ledger_fees_micros %llu\n"
                        "# HELP rhizos_ledger_held_micros Money held in escrow now.\n"
                        "# TYPE rhizos_ledger_held_micros gauge\nrhizos_ledger_held_micros %llu\n"
                        "# HELP rhizos_ledger_volume_micros What succeeded jobs were charged.\n"
                        "# TYPE rhizos_ledger_volume_micros counter\nrhizos_ledger_volume_micros %llu\n",
                        (unsigned long long)ls.fees_micros,
                        (unsigned long long)ls.escrow_held_micros,
                        (unsigned long long)orch_volume_micros(o));
    evbuffer_add_printf(b, "# HELP rhizos_http_requests_total Replies by status.\n"
                        "# TYPE rhizos_http_requests_total counter\n");
    o->http_codes[200]++;   /* this reply */
    for (int c = 100; c < 600; c++)
        if (o->http_codes[c])
            evbuffer_add_printf(b, "rhizos_http_requests_total{code=\"%d\"} %llu\n",
                                c, (unsigned long long)o->http_codes[c]);
    o->http_codes[200]--;
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
