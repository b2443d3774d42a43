/* Embedded mode: the engine with one in-process node for this machine, the
 * way `rhizos flow run` drives it (lib/exec/runner.c).
 *
 * The deployment's own rz_run lives inside the engine, on the engine's copy
 * of the flow, under the deployment's id. The caller wants a run of its own
 * flow under its own run id, live while the flow runs and kept afterwards,
 * so it hands in a replica: every step event the engine records for the
 * deployment (the same log a reopened engine replays) is applied to the
 * replica as it is recorded. The run is deterministic, so the replica is in
 * the deployment's state after every engine call.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "flow/model.h"
#include "rhizos/hw.h"
#include "run/changes.h"

/* Client accounts of embedded deployments, and their test credit. */
#define LOCAL_CLIENT_HI 0x525a4c4f43414c00ull    /* "RZLOCAL" */
#define LOCAL_CREDIT_HI 0x525a4c4f43524400ull    /* "RZLOCRD" */

/* ---- the replica ---- */

static bool running(const rz_run *r, size_t step)
{
    return rz_run_step_state(r, step) == RZ_STEP_RUNNING;
}

void rz__engine_local_event(rz_engine *e, const rz__edep *d,
                            rz__step_event_kind kind, size_t step, uint64_t now,
                            const char *text)
{
    rz__elocal *l = &e->local;
    if (!l->replica || l->diverged || d->id != l->dep)
        return;
    if (l->shared) {   /* the event is the deployment's own run's already */
        if (l->on_change)
            l->on_change(l->userdata);
        return;
    }
    rz_run *r = l->replica;
    bool was = running(r, step);
    int rc = RZ_OK;
    switch (kind) {
    case RZ__STEP_EVENT_START:
        /* As on replay: the readiness check that promoted the step. */
        rz_run_ready(r, now, NULL, 0);
        rc = rz_run_start(r, step, now);
        break;
    case RZ__STEP_EVENT_SUCCEED:
        rc = rz_run_succeed(r, step, text, now);   /* RZ_EINVALID replays too */
        rc = rc == RZ_ENOMEM ? rc : RZ_OK;
        break;
    case RZ__STEP_EVENT_FAIL:
        rc = rz_run_fail(r, step, text, now);
        break;
    case RZ__STEP_EVENT_TICK: {
        size_t n = rz_run_tick(r, now, NULL, 0);
        l->started -= n < l->started ? n : l->started;
        break;
    }
    case RZ__STEP_EVENT_CANCEL:
        rc = rz_run_cancel(r, now);
        break;
    case RZ__STEP_EVENT_READY:
    case RZ__STEP_EVENT_EMIT:
        rc = rz__engine_service_apply(r, kind, step, now, text);
        break;
    case RZ__STEP_EVENT_STOP:
        rc = rz__bill_stop_apply(r, step, now, text);
        break;
    }
    if (rc != RZ_OK)
        l->diverged = true;
    else if (kind == RZ__STEP_EVENT_START)
        l->started++;
    else if (was && !running(r, step) && l->started > 0)
        l->started--;
    if (l->on_change && !l->diverged)
        l->on_change(l->userdata);
}

size_t rz__engine_local_room(const rz_engine *e, const rz__edep *d)
{
    const rz__elocal *l = &e->local;
    if (!l->max_started || d->id != l->dep)
        return SIZE_MAX;
    size_t started = l->shared ? rz__run_started(l->replica) : l->started;
    return started < l->max_started ? l->max_started - started : 0;
}

int rz_engine_local_check(const rz_engine *e)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    if (e->local.diverged)
        return rz__error(RZ_EINTERNAL, "the run of deployment %llu no longer "
                         "follows it", (unsigned long long)e->local.dep);
    return RZ_OK;
}

/* ---- the local node ---- */

int rz_engine_local_node(rz_engine *e, const char *caps_json, unsigned jobs,
                         uint64_t now_ms, uint64_t *node)
{
    if (node)
        *node = 0;
    if (!e || !node || jobs == 0)
        return rz__error(RZ_EINVAL, "rz_engine_local_node: invalid arguments");
    /* The caller probed the machine: the engine does no I/O of its own. */
    const char *in = caps_json ? caps_json : "{}";
    rz_caps *caps = NULL;
    char *json = NULL;
    int rc = rz_caps_parse(&caps, in, strlen(in));
    if (rc == RZ_OK)
        rc = rz_caps_set_prices(caps, 0, 0, 0);
    if (rc == RZ_OK)
        rc = rz_caps_set_market(caps, 1.0, jobs);
    if (rc == RZ_OK)
        rc = rz_caps_to_json(caps, 0, &json);
    if (rc == RZ_OK)
        rc = rz_engine_node_register(e, json, strlen(json), now_ms, node);
    rz_free(json);
    rz_caps_free(caps);
    return rc;
}

/* ---- the deployment ---- */

/* The document stored for the deployment: the flow's own source text
 * when it was parsed from text, else its JSON export. The deployment runs
 * on the flow itself (rz__engine_deploy_shared), with its jobs made as if
 * from a document without modules or costs (the reference hold, which is
 * what the client is credited); the text is read only by a reopen, and an
 * embedded engine's folder is never reopened (the runner makes a new one
 * per run). The export builds a tree of the whole flow: ~100 MB at the
 * peak of a 100,000-step run, where the source is one copy of 8 MB. */
static int local_document(const rz_flow *flow, char **out)
{
    bool text = flow->src && flow->src_len &&
                (flow->format == RZ_FORMAT_JSON || flow->format == RZ_FORMAT_YAML) &&
                !memchr(flow->src, 0, flow->src_len);
    if (!text) {
        size_t len = 0;
        return rz_flow_to_json(flow, 0, out, &len);
    }
    *out = rz__strndup(flow->src, flow->src_len);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

/* A client account credited with exactly what the deployment will hold. */
static int local_client(rz_engine *e, uint64_t dep, size_t n_steps,
                        rz_ledger_id *client)
{
    *client = rz_ledger_id_make(LOCAL_CLIENT_HI, dep);
    uint64_t each = 0;
    int rc = rz_engine_reference_cost(e, NULL, &each);
    if (rc != RZ_OK)
        return rc;
    if (n_steps && each > UINT64_MAX / n_steps)
        return rz__error(RZ_ETOOBIG, "the holds of %zu steps overflow",
                         n_steps);
    /* Both exist already after a deploy of this id that failed. */
    rc = rz_ledger_create_account(e->ledger, *client, RZ_LEDGER_CLIENT);
    if ((rc == RZ_OK || rc == RZ_EEXISTS) && n_steps)
        rc = rz_ledger_test_credit(e->ledger,
                                   rz_ledger_id_make(LOCAL_CREDIT_HI, dep),
                                   *client, each * n_steps);
    return rc == RZ_EEXISTS ? RZ_OK : rc;
}

int rz_engine_local_deploy(rz_engine *e, const rz_flow *flow,
                           const char *inputs_json,
                           const rz_engine_replica *replica,
                           uint64_t now_ms, uint64_t *deployment)
{
    if (deployment)
        *deployment = 0;
    if (!e || !flow || !deployment ||
        (replica && (replica->version < 1 ||
                     replica->version > RZ_ENGINE_REPLICA_VERSION ||
                     !replica->run)))
        return rz__error(RZ_EINVAL, "rz_engine_local_deploy: invalid "
                         "arguments");
    if (e->opts.registry)
        return rz__error(RZ_EINVAL, "embedded deployments need an engine "
                         "opened without a registry (the flow's modules are "
                         "resolved already)");
    if (replica && rz_run_flow(replica->run) != flow)
        return rz__error(RZ_EINVAL, "the replica is a run of another flow");
    uint64_t dep = e->n_deps + 1;      /* the id rz_engine_deploy gives */
    char *doc = NULL;
    rz_ledger_id client;
    int rc = local_document(flow, &doc);
    if (rc == RZ_OK)
        rc = local_client(e, dep, rz_flow_step_count(flow), &client);
    if (rc == RZ_OK) {
        memset(&e->local, 0, sizeof e->local);
        e->local.dep = dep;
        e->local.flow = flow;
        if (replica) {
            e->local.replica = replica->run;
            e->local.max_started = replica->max_started;
            e->local.on_change = replica->on_change;
            e->local.userdata = replica->userdata;
            e->local.shared = replica->version >= 2 && replica->share;
        }
        rc = rz__engine_deploy_shared(e, doc, flow, client, inputs_json,
                                      e->local_reuse, now_ms, deployment);
        e->local_reuse = NULL;   /* borrowed for this deploy only */
        if (rc == RZ_OK && *deployment != dep)
            rc = rz__error(RZ_EINTERNAL, "deployment %llu, expected %llu",
                           (unsigned long long)*deployment,
                           (unsigned long long)dep);
        if (rc == RZ_OK)
            rc = rz_engine_local_check(e);
        if (rc != RZ_OK)
            memset(&e->local, 0, sizeof e->local);
    }
    free(doc);
    return rc;
}

/* for_each elements are held after the deploy (fanout.c): the local
 * client gets exactly their holds on top. */
int rz__engine_local_credit(rz_engine *e, const rz__edep *d, uint64_t amount,
                            uint64_t tag)
{
    if (!amount)
        return RZ_OK;
    int rc = rz_ledger_test_credit(e->ledger,
                                   rz_ledger_id_make(LOCAL_CREDIT_HI | 0x80, tag),
                                   d->client, amount);
    return rc == RZ_EEXISTS ? RZ_OK : rc;
}
