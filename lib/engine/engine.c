/* The engine: nodes, jobs, placement, settlement (the queue in queue.c). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "common/array.h"
#include "common/json.h"
#include "engine/engine_impl.h"
#include "match/match_impl.h"

#define NODE_LABEL "rhizos.node"

/* ---- small helpers ---- */

bool rz__engine_grow(void **arr, size_t *cap, size_t need, size_t size)
{
    void *p = rz__grow(*arr, cap, need, size, 16);
    if (!p)
        return false;
    *arr = p;
    return true;
}

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

static int gone_job(rz_engine *e, uint64_t job, uint64_t node,
                    uint32_t attempt, const rz_engine_report *report,
                    int *was_repeat);

/* Out of memory a change cannot be listed, and the caller goes on: the
 * next commit refuses (rz__engine_commit) rather than store the call
 * without it. */
static void touch(rz_engine *e, uint64_t **list, size_t *n, size_t *cap,
                  bool *flag, uint64_t id)
{
    if (*flag)
        return;
    if (!rz__engine_grow((void **)list, cap, *n + 1, sizeof **list)) {
        e->dirty_lost = true;
        return;
    }
    (*list)[(*n)++] = id;
    *flag = true;
}

void rz__engine_touch_node(rz_engine *e, rz__enode *n)
{
    touch(e, &e->dirty_nodes, &e->n_dirty_nodes, &e->cap_dirty_nodes, &n->dirty,
          n->id);
}

void rz__engine_touch_job(rz_engine *e, rz__ejob *j)
{
    if (!j->dirty && j->deployment) {   /* once a commit, like the record */
        rz__edep *d = rz__engine_dep(e, j->deployment);
        if (d && d->run)
            rz__engine_dep_log(d, j->step);
    }
    touch(e, &e->dirty_jobs, &e->n_dirty_jobs, &e->cap_dirty_jobs, &j->dirty, j->id);
}

void rz__engine_touch_dep(rz_engine *e, rz__edep *d)
{
    touch(e, &e->dirty_deps, &e->n_dirty_deps, &e->cap_dirty_deps, &d->dirty, d->id);
}

/* The mark that `j` paid tells the store nothing the ledger does not: a
 * crash before it is stored pays again on open, which the ledger answers
 * as a replay of the same ids. So it waits for the next commit with a
 * change of its own (a server's pass that only holds a poll then syncs
 * nothing), unless it already goes with the next commit. Out of memory it
 * is a change like any other. Its deployment's change log is not told:
 * nothing a status shows moved. */
void rz__engine_paid_later(rz_engine *e, rz__ejob *j)
{
    if (j->dirty || j->paid_later)
        return;
    if (!rz__engine_grow((void **)&e->paid, &e->cap_paid, e->n_paid + 1,
                         sizeof *e->paid)) {
        rz__engine_touch_job(e, j);
        return;
    }
    if (!e->n_paid)
        e->paid_at = e->now;
    e->paid[e->n_paid++] = j->id;
    j->paid_later = true;
}

void rz__engine_paid_merge(rz_engine *e)
{
    /* Room first, so that no mark is dropped: out of memory they all wait
     * for a later commit (close commits them). */
    if (!e->n_paid || !rz__engine_grow((void **)&e->dirty_jobs, &e->cap_dirty_jobs,
                                       e->n_dirty_jobs + e->n_paid,
                                       sizeof *e->dirty_jobs))
        return;
    for (size_t i = 0; i < e->n_paid; i++) {
        rz__ejob *j = rz__engine_job(e, e->paid[i]);
        if (!j || !j->paid_later)
            continue;   /* written since (a change of its own) */
        j->paid_later = false;
        touch(e, &e->dirty_jobs, &e->n_dirty_jobs, &e->cap_dirty_jobs, &j->dirty,
              j->id);
    }
    e->n_paid = 0;
}

/* Does the call's commit store anything? Not when all it holds is paid
 * marks younger than RZ__PAID_WRITE_MS (a clock that went back: yes). */
static bool commit_due(const rz_engine *e)
{
    if (e->n_dirty_nodes || e->n_dirty_jobs || e->n_dirty_deps ||
        e->n_step_events || e->dirty_lost || rz__engine_extra_due(e))
        return true;
    return e->n_paid && (e->now < e->paid_at ||
                         e->now - e->paid_at >= RZ__PAID_WRITE_MS);
}

rz__enode *rz__engine_node(rz_engine *e, uint64_t id)
{
    return id >= 1 && id <= e->n_nodes ? &e->nodes[id - 1] : NULL;
}

rz__ejob *rz__engine_job_new(rz_engine *e)
{
    rz__ejob *j = rz__calloc(1, sizeof *j);
    if (!j || !rz__engine_live_add_job(e, j)) {
        free(j);
        return NULL;
    }
    j->id = ++e->n_jobs;
    return j;
}

/* Drop the newest jobs back to `n` (a rejected submission or deployment):
 * they are the last ones in memory, and no commit may look for them. */
void rz__engine_jobs_truncate(rz_engine *e, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < e->n_dirty_jobs; i++)
        if (e->dirty_jobs[i] <= n)
            e->dirty_jobs[k++] = e->dirty_jobs[i];
    e->n_dirty_jobs = k;
    rz__bill_truncate(e, n);
    while (e->n_live_jobs && e->jobs[e->n_live_jobs - 1]->id > n) {
        rz__ejob *j = e->jobs[--e->n_live_jobs];
        rz__engine_job_clear(e, j);
        free(j);
    }
    e->n_jobs = n;
}

static rz_ledger_id eid(int kind, uint64_t n)
{
    return rz_ledger_id_make(RZ__EID(kind), n);
}

rz_ledger_id rz_engine_job_ledger_id(uint64_t job) { return eid(RZ__EID_JOB, job); }
rz_ledger_id rz_engine_node_account(uint64_t node) { return eid(RZ__EID_NODE, node); }
rz_ledger_id rz__engine_hold_id(uint64_t job) { return eid(RZ__EID_HOLD, job); }

const char *rz_job_state_name(rz_job_state s)
{
    static const char *const names[] = { "pending", "queued", "assigned",
        "running", "succeeded", "failed", "cancelled" };
    return (unsigned)s < RZ_ARRAY_LEN(names) ? names[s] : "unknown";
}

/* ---- events ---- */

static void emit_raw(rz_engine *e, const rz_engine_event *ev)
{
    if (!e->events && !(e->events = rz__calloc(RZ__EVENTS_MAX, sizeof *e->events)))
        return;   /* events are advisory; states stay authoritative */
    if (e->ev_len == RZ__EVENTS_MAX) {
        e->ev_head = (e->ev_head + 1) % RZ__EVENTS_MAX;
        e->ev_len--;
    }
    e->events[(e->ev_head + e->ev_len++) % RZ__EVENTS_MAX] = *ev;
}

void rz__engine_emit(rz_engine *e, rz_engine_event_type type,
                     const rz__ejob *j, uint64_t node)
{
    rz_engine_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.node = node;
    if (j) {
        ev.job = j->id;
        ev.deployment = j->deployment;
        ev.attempt = j->attempt;
        ev.state = j->state;
    }
    emit_raw(e, &ev);
}

int rz_engine_next_event(rz_engine *e, rz_engine_event *out)
{
    if (!e || !out || !e->ev_len)
        return 0;
    *out = e->events[e->ev_head];
    e->ev_head = (e->ev_head + 1) % RZ__EVENTS_MAX;
    e->ev_len--;
    return 1;
}

void rz__engine_emit_deployment_finished(rz_engine *e, const rz__edep *d)
{
    rz_engine_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = RZ_EV_DEPLOYMENT_FINISHED;
    ev.deployment = d->id;
    ev.run_state = d->state;
    emit_raw(e, &ev);
}

/* ---- placement ---- */

static bool held_add(rz__enode *n, uint64_t job)
{
    if (!rz__engine_grow((void **)&n->held, &n->cap_held, n->n_held + 1,
                         sizeof *n->held))
        return false;
    n->held[n->n_held++] = job;
    n->jobs++;
    return true;
}

static void held_remove(rz__enode *n, uint64_t job)
{
    for (size_t i = 0; i < n->n_held; i++)
        if (n->held[i] == job) {
            memmove(&n->held[i], &n->held[i + 1],
                    (n->n_held - i - 1) * sizeof *n->held);
            n->n_held--;
            n->jobs--;
            return;
        }
}

static int take_placement(rz_engine *e, rz__ejob *j, const rz_placement *p)
{
    uint64_t node = p->node < e->cap_mindex ? e->node_by_mindex[p->node] : 0;
    rz__enode *n = rz__engine_node(e, node);
    if (!n || !held_add(n, j->id)) {
        (void)!rz_matcher_release(e->matcher, p->ticket);   /* ours */
        return n ? no_memory()
                 : rz__error(RZ_EINTERNAL, "placement on an unknown node");
    }
    j->node = node;
    j->ticket = p->ticket;
    j->placed = true;
    return RZ_OK;
}

/* Reserve `j` on `node` (used to restore placements on open): the job's
 * requirements plus a label only that node carries. */
int rz__engine_place_job(rz_engine *e, rz__ejob *j, uint64_t node)
{
    cJSON *doc = cJSON_Parse(j->reqs_json ? j->reqs_json : "{}");
    cJSON *labels = doc ? cJSON_GetObjectItemCaseSensitive(doc, "labels") : NULL;
    if (doc && !cJSON_IsObject(labels)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "labels");
        labels = cJSON_AddObjectToObject(doc, "labels");
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)node);
    if (labels) {
        cJSON_DeleteItemFromObjectCaseSensitive(labels, NODE_LABEL);
        cJSON_AddStringToObject(labels, NODE_LABEL, id);
    }
    char *text = labels ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return no_memory();
    rz_reqs *r = NULL;
    int rc = rz_reqs_parse(&r, text, strlen(text));
    free(text);
    rz_placement p;
    if (rc == RZ_OK)
        rc = rz_matcher_place(e->matcher, r, &p);
    rz_reqs_free(r);
    if (rc == RZ_OK)
        rc = take_placement(e, j, &p);
    return rc;
}

/* A placed job's reservation on its node given back to the matcher. */
static void release_reservation(rz_engine *e, rz__ejob *j)
{
    (void)!rz_matcher_release(e->matcher, j->ticket);   /* placed: held */
    j->placed = false;
    j->ticket = 0;
    e->assign_dirty = true;
}

void rz__engine_unplace(rz_engine *e, rz__ejob *j, bool stop)
{
    if (!j->placed && !j->result_due)
        return;
    if (j->placed)   /* a result due was released at its mark */
        release_reservation(e, j);
    else
        rz__engine_touch_job(e, j);   /* its record drops "result_due" */
    rz__enode *n = rz__engine_node(e, j->node);
    if (n)
        held_remove(n, j->id);
    j->result_due = false;
    j->iv_running = false;   /* billed by time: the attempt's interval stops */
    if (stop)
        rz__engine_emit(e, RZ_EV_JOB_STOP, j, j->node);
}

bool rz__engine_declined(const rz__ejob *j, uint64_t node)
{
    for (size_t i = 0; i < j->n_declined; i++)
        if (j->declined[i] == node)
            return true;
    return false;
}

static uint64_t placed_node(const rz_engine *e, const rz_placement *p)
{
    return p->node < e->cap_mindex ? e->node_by_mindex[p->node] : 0;
}

/* How many placements on nodes that declined a job are held aside while
 * looking for another; past that the job waits for the next pass. */
#define DECLINE_PROBES 64

/* Place `j` on a node that has not declined it. A placement on one that did
 * is held aside, so the matcher offers its next best, and released after. */
static int place_job(rz_engine *e, rz__ejob *j, rz_placement *p)
{
    int rc = rz_matcher_place(e->matcher, j->reqs, p);
    uint64_t aside[DECLINE_PROBES];
    size_t n = 0;
    while (rc == RZ_OK && (rz__engine_declined(j, placed_node(e, p)) ||
                           rz__replica_excluded(e, j, placed_node(e, p)))) {
        if (n == DECLINE_PROBES) {
            (void)!rz_matcher_release(e->matcher, p->ticket);   /* ours */
            rc = rz__error(RZ_ENOENT, "job %llu: only nodes that declined it "
                           "have room", (unsigned long long)j->id);
            break;
        }
        aside[n++] = p->ticket;
        rc = rz_matcher_place(e->matcher, j->reqs, p);
    }
    for (size_t i = 0; i < n; i++)
        (void)!rz_matcher_release(e->matcher, aside[i]);   /* ours */
    return rc;
}

/* A waiting node's held poll is answered with its first placement: it is
 * no better a choice than its peers for the next job of the pass. */
static void waiting_set(rz_engine *e, rz__enode *n, bool waiting)
{
    if (n->waiting == waiting)
        return;
    n->waiting = waiting;
    if (n->mindex != RZ_NPOS)
        (void)!rz_matcher_prefer(e->matcher, n->mindex,
                                waiting);   /* a hint; index is live */
}

int rz__engine_assign_one(rz_engine *e, rz__ejob *j)
{
    rz_placement p;
    int rc = place_job(e, j, &p);
    if (rc == RZ_OK)
        rc = take_placement(e, j, &p);
    if (rc != RZ_OK)
        return rc;
    waiting_set(e, rz__engine_node(e, j->node), false);
    j->state = RZ_JOB_ASSIGNED;
    rz__engine_touch_job(e, j);
    rz__engine_emit(e, RZ_EV_JOB_ASSIGNED, j, j->node);
    e->stats.assignments++;
    return RZ_OK;
}

/* ---- settlement ---- */

/* `job` owes the ledger: listed for the next payment, or (out of memory)
 * found then by a walk of the live jobs. */
static void owed_add(rz_engine *e, uint64_t job)
{
    if (rz__engine_grow((void **)&e->owed, &e->cap_owed, e->n_owed + 1,
                        sizeof *e->owed))
        e->owed[e->n_owed++] = job;
    else
        e->owed_lost = true;
}

void rz__engine_finish(rz_engine *e, rz__ejob *j, rz_job_state st, int owe)
{
    if (rz__replica_finish(e, j, st))
        return;   /* a run of an undecided replicated job (replica.c) */
    j->state = st;
    j->owed = owe;
    if (j->iv && owe != RZ__OWE_SETTLE)
        j->cost = 0;   /* billed by time: its last interval pays nothing */
    rz__engine_touch_job(e, j);
    if (owe != RZ__OWE_NONE)
        owed_add(e, j->id);
    rz__engine_emit(e, RZ_EV_JOB_FINISHED, j, j->node);
}

static void owed_op(const rz__ejob *j, rz_ledger_op *op)
{
    memset(op, 0, sizeof *op);
    op->job = rz_engine_job_ledger_id(j->id);
    if (j->owed == RZ__OWE_SETTLE) {
        op->type = RZ_LEDGER_OP_SETTLE;
        op->id = eid(RZ__EID_SETTLE, j->id);
        op->counterparty = rz_engine_node_account(j->node);
        op->amount = j->cost;
    } else {
        op->type = RZ_LEDGER_OP_REFUND;
        op->id = eid(RZ__EID_REFUND, j->id);
    }
    if (j->iv)   /* billed by time: its current interval's hold */
        op->pending_id = rz__bill_hold_id(j->id, j->iv);
}

/* Apply the settlements and refunds the last commit recorded as owed. They
 * are durable as owed already; a crash here is finished on open. */
/* Every live job that owes, listed again (one was not listed). */
static int owed_relist(rz_engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_live_jobs; i++)
        n += e->jobs[i]->owed != RZ__OWE_NONE;
    if (!rz__engine_grow((void **)&e->owed, &e->cap_owed, n, sizeof *e->owed))
        return rz__error(RZ_ENOMEM, "out of memory");
    e->n_owed = 0;
    for (size_t i = 0; i < e->n_live_jobs; i++)
        if (e->jobs[i]->owed != RZ__OWE_NONE)
            e->owed[e->n_owed++] = e->jobs[i]->id;
    e->owed_lost = false;
    return RZ_OK;
}

int rz__engine_pay(rz_engine *e)
{
    e->bill_stopped = false;
    int rc = rz__bill_pay(e);   /* first: a final settlement needs its hold */
    /* A refused roll-over stopped its job: the refunds that stop may owe
     * wait until it is stored (the caller commits, then pays again). */
    if (rc != RZ_OK || e->bill_stopped)
        return rc;
    if (e->owed_lost)
        rc = owed_relist(e);
    if (rc != RZ_OK)
        return rc;
    /* A listed job may owe nothing by now (billing.c: a refused roll-over
     * of a job that had ended): no op for it, never a refund of a hold
     * that is its bill. */
    size_t k = 0;
    for (size_t i = 0; i < e->n_owed; i++) {
        const rz__ejob *j = rz__engine_job(e, e->owed[i]);
        if (j && j->owed != RZ__OWE_NONE)
            e->owed[k++] = e->owed[i];
    }
    e->n_owed = k;
    size_t done = 0;
    while (done < e->n_owed && rc == RZ_OK) {
        size_t n = e->n_owed - done;
        if (n > 1024)
            n = 1024;
        rz_ledger_op ops[1024];
        rz_ledger_result res[1024];
        for (size_t i = 0; i < n; i++)
            owed_op(rz__engine_job(e, e->owed[done + i]), &ops[i]);
        rc = rz_ledger_submit(e->ledger, ops, n, res);
        for (size_t i = 0; rc == RZ_OK && i < n; i++) {
            rz__ejob *j = rz__engine_job(e, e->owed[done + i]);
            if (res[i].status == RZ_OK) {
                j->owed = RZ__OWE_NONE;
                rz__engine_paid_later(e, j);
            }
        }
        done += n;
    }
    /* A batch the ledger failed keeps the list: the next pay drops what
     * was paid and tries the rest again (a ledger that works again, or
     * the next open, settles them). */
    if (rc == RZ_OK)
        e->n_owed = 0;
    return rc;
}

/* ---- open / close ---- */

static void opts_normalise(rz_engine_opts *o, const rz_engine_opts *given)
{
    rz_engine_opts def = RZ_ENGINE_OPTS_INIT;
    *o = def;
    if (given)   /* version 1 ends before ref_llm_1k_tokens_micros */
        memcpy(o, given, given->version == 1
                   ? offsetof(rz_engine_opts, ref_llm_1k_tokens_micros)
                   : sizeof *o);
    o->version = RZ_ENGINE_OPTS_VERSION;
    if (!o->ref_llm_1k_tokens_micros)
        o->ref_llm_1k_tokens_micros = RZ_ENGINE_DEFAULT_REF_LLM_1K_TOKENS_MICROS;
    if (!o->node_timeout_ms)
        o->node_timeout_ms = RZ_ENGINE_DEFAULT_NODE_TIMEOUT_MS;
    if (!o->max_attempts)
        o->max_attempts = RZ_ENGINE_DEFAULT_MAX_ATTEMPTS;
    if (!o->estimate_factor_pct)
        o->estimate_factor_pct = RZ_ENGINE_DEFAULT_ESTIMATE_FACTOR_PCT;
    if (!o->default_step_seconds)
        o->default_step_seconds = RZ_ENGINE_DEFAULT_STEP_SECONDS;
}

static int open_ledger(rz_engine *e, const char *data_dir)
{
    rz_ledger_opts lo = RZ_LEDGER_OPTS_INIT;
    lo.fee_bps = e->opts.fee_bps;
    lo.durable = e->opts.durable;
    /* Until a checkpoint the ledger's write transaction holds every page it
     * dirtied (~0.5 KiB a step of an embedded run at the default 65,536
     * operations), and LMDB keeps that many pages for later transactions
     * until it closes: at 8,192 operations ~35 MB of a 100,000-step run
     * (heaptrack; payments land on scattered pages). Without syncs a
     * checkpoint is one cheap commit, so an engine that is not durable
     * (embedded runs, nothing outlives them) makes them 64 times as
     * often. */
    if (!e->opts.durable)
        lo.checkpoint_ops = RZ_LEDGER_DEFAULT_CHECKPOINT_OPS / 64;
    return rz_ledger_open(&e->ledger, data_dir, &lo);
}

static int matcher_add_node(rz_engine *e, rz__enode *n)
{
    size_t idx;
    int rc = rz_matcher_add(e->matcher, n->caps, &idx);
    if (rc != RZ_OK)
        return rc;
    if (!rz__engine_grow((void **)&e->node_by_mindex, &e->cap_mindex, idx + 1,
                         sizeof *e->node_by_mindex))
        return no_memory();
    e->node_by_mindex[idx] = n->id;
    n->mindex = idx;
    e->nodes_epoch++;
    return RZ_OK;
}

/* A job stored with its result due: its node's again, with no
 * reservation. */
static int hold_unreserved(rz_engine *e, rz__ejob *j)
{
    rz__enode *n = rz__engine_node(e, j->node);
    if (!n || n->state != RZ_NODE_ACTIVE || j->state != RZ_JOB_RUNNING)
        return rz__error(RZ_EDB, "job %llu: a result due from node %llu, "
                         "which does not run it", (unsigned long long)j->id,
                         (unsigned long long)j->node);
    return held_add(n, j->id) ? RZ_OK : no_memory();
}

/* Rebuild what is not stored: the matcher with its reservations, the queue,
 * the deployments' runs; then finish what a crash interrupted. */
static int resume(rz_engine *e)
{
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < e->n_nodes; i++)
        if (e->nodes[i].state == RZ_NODE_ACTIVE)
            rc = matcher_add_node(e, &e->nodes[i]);
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_jobs; i++) {
        rz__ejob *j = e->jobs[i];
        if (j->result_due)   /* the node's, unreserved: engine_impl.h */
            rc = hold_unreserved(e, j);
        else if ((j->state == RZ_JOB_ASSIGNED || j->state == RZ_JOB_RUNNING) &&
                 !j->vote)   /* a replica that voted waits unplaced */
            rc = rz__engine_place_job(e, j, j->node);
        else if (j->state == RZ_JOB_QUEUED) {
            j->queue_gen++;
            j->held = rz__engine_job_paused(e, j);
            if (!j->held && !rz__engine_queue_push(e, j))
                rc = no_memory();
        }
        if (j->owed != RZ__OWE_NONE)
            owed_add(e, j->id);
        if (rc == RZ_OK && j->iv && (j->state < RZ_JOB_SUCCEEDED || j->iv_owed))
            rc = rz__bill_track(e, j);
        j->hold_checked = false;
    }
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_deps; i++)
        if (!e->deps[i]->final_status)
            rc = rz__engine_dep_rebuild(e, e->deps[i]);
    if (rc == RZ_OK)
        rc = rz__engine_pay(e);
    if (rc == RZ_OK)
        rc = rz__engine_commit(e);
    while (rc == RZ_OK && e->bill_stopped) {   /* see rz__engine_pay */
        rc = rz__engine_pay(e);
        if (rc == RZ_OK)
            rc = rz__engine_commit(e);
    }
    e->assign_dirty = true;
    return rc;
}

/* Keep id `n_jobs + 1` as a cancelled job that never ran: an orphan hold
 * `t` (refunded by the caller), or none (NULL: a group's hold the ledger
 * refused, which leaves a gap in the hold ids; max 0 marks it). */
static int orphan_job(rz_engine *e, const rz_ledger_transfer *t)
{
    rz__ejob *j = rz__engine_job_new(e);
    if (!j)
        return no_memory();
    j->state = RZ_JOB_CANCELLED;
    if (t) {
        j->client = t->debit;
        j->max_cost = t->amount;
    }
    j->error = rz__strdup(t ? "never acknowledged: the engine stopped first"
                            : "its hold was refused at the group commit");
    j->module_id = rz__strdup("");
    j->module_version = rz__strdup("");
    j->request = rz__strdup("{}");
    int rc = rz__engine_reqs_set(e, j, NULL, UINT64_MAX);
    rz__engine_touch_job(e, j);
    return rc;
}

/* Holds for job ids past the last committed job belong to a submission or
 * deployment that crashed before it was acknowledged: give them back, and
 * keep each id as a cancelled job so that no later job reuses its ledger
 * ids (committed by resume()). A group's holds may have gaps (holds the
 * ledger refused), so the scan looks RZ__GROUP_HOLDS_MAX ids past the last
 * hold it found. */
static int refund_orphans(rz_engine *e)
{
    uint64_t last = e->n_jobs;
    for (uint64_t id = e->n_jobs + 1; id <= last + RZ__GROUP_HOLDS_MAX; id++) {
        rz_ledger_transfer t;
        int rc = rz_ledger_transfer_get(e->ledger, rz__engine_hold_id(id), &t);
        if (rc == RZ_ENOENT)
            continue;
        if (rc != RZ_OK)
            return rc;
        if (t.state == RZ_LEDGER_OPEN) {
            rc = rz_ledger_refund(e->ledger, eid(RZ__EID_REFUND, id),
                                  rz_engine_job_ledger_id(id), NULL);
            if (rc != RZ_OK)
                return rc;
        }
        while (rc == RZ_OK && e->n_jobs + 1 < id)
            rc = orphan_job(e, NULL);
        if (rc == RZ_OK)
            rc = orphan_job(e, &t);
        if (rc != RZ_OK)
            return rc;
        last = id;
    }
    return RZ_OK;
}

int rz_engine_open(rz_engine **out, const char *data_dir,
                   const rz_engine_opts *opts)
{
    if (!out)
        return rz__error(RZ_EINVAL, "no output pointer");
    *out = NULL;
    if (!data_dir || !*data_dir)
        return rz__error(RZ_EINVAL, "no data directory given");
    if (opts && (opts->version < 1 || opts->version > RZ_ENGINE_OPTS_VERSION))
        return rz__error(RZ_EINVAL, "engine options of an unknown version %d",
                         opts->version);
    rz_engine *e = rz__calloc(1, sizeof *e);
    if (!e)
        return no_memory();
    opts_normalise(&e->opts, opts);
    e->queue_next = UINT64_MAX;
    int rc = rz__engine_store_open(e, data_dir);
    if (rc == RZ_OK)
        rc = open_ledger(e, data_dir);
    if (rc == RZ_OK)
        rc = rz_matcher_new(&e->matcher, e->opts.policy);
    if (rc == RZ_OK)
        rc = rz__engine_cache_new(e);
    if (rc == RZ_OK)
        rc = rz__engine_load(e);
    if (rc == RZ_OK)
        rc = refund_orphans(e);
    if (rc == RZ_OK)
        rc = resume(e);
    if (rc == RZ_OK)
        rz__verify_resume(e);
    if (rc != RZ_OK) {
        int keep = rc;
        rz_error err = *rz_error_last();
        rz_engine_close(e);
        rz__error(keep, "%s", err.message);
        return keep;
    }
    *out = e;
    return RZ_OK;
}

void rz_engine_close(rz_engine *e)
{
    if (!e)
        return;
    /* A failed commit marks the engine broken; what it held is refunded at
     * the next open (engine.h), so close has nothing more to do. */
    if (e->in_group)
        (void)!rz_engine_group_commit(e);
    e->closing = true;   /* pending extra deletes are written too */
    if (e->env && !e->broken)
        rz__engine_commit(e);   /* owed flags cleared since the last call */
    for (size_t i = 0; i < e->n_nodes; i++) {
        rz_caps_free(e->nodes[i].caps);
        rz__engine_node_caps_forget(&e->nodes[i]);
        free(e->nodes[i].held);
    }
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        rz__engine_job_clear(e, e->jobs[i]);
        free(e->jobs[i]);
    }
    for (size_t i = 0; i < e->n_live_deps; i++) {
        rz__engine_dep_free(e->deps[i]);
        free(e->deps[i]);
    }
    rz__engine_cache_free(e);
    free(e->evict);
    for (size_t i = 0; i < e->n_step_events; i++)
        free(e->step_events[i].text);
    free(e->nodes);
    free(e->node_by_mindex);
    free(e->jobs);
    free(e->deps);
    free(e->queued_groups);
    free(e->step_events);
    free(e->owed);
    free(e->bill);
    free(e->dirty_nodes);
    free(e->dirty_jobs);
    free(e->dirty_deps);
    free(e->paid);
    free(e->events);
    free(e->group_holds);
    free(e->group_sums);
    rz__engine_extra_clear(e);   /* not written: a broken engine's */
    free(e->extra);
    free(e->req_groups);   /* empty: every job released its entry */
    rz_matcher_free(e->matcher);
    rz_ledger_close(e->ledger);
    rz__engine_store_close(e);
    free(e);
}

rz_ledger *rz_engine_ledger(rz_engine *e)
{
    return e ? e->ledger : NULL;
}

/* Calls that change state start here: a broken handle refuses, and the
 * first `now` after open starts every node's heartbeat grace period. */
static int begin_call(rz_engine *e, uint64_t now)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    if (!e->resumed) {
        for (size_t i = 0; i < e->n_nodes; i++)
            if (e->nodes[i].last_hb < now)
                e->nodes[i].last_hb = now;
        e->resumed = true;
    }
    e->now = now;
    if (!e->in_group)
        rz__engine_evict(e);   /* what finished by the last call's commit */
    return RZ_OK;
}

int rz__engine_begin(rz_engine *e, uint64_t now)
{
    return begin_call(e, now);
}

/* Calls that changed state end here: commit, then move the money owed.
 * Inside a group both wait for rz_engine_group_commit. */
int rz__engine_commit_call(rz_engine *e, int rc)
{
    if (e->in_group)
        return rc;
    int crc = commit_due(e) ? rz__engine_commit(e) : RZ_OK;
    if (crc != RZ_OK)
        return crc;
    int prc = rz__engine_pay(e);
    while (prc == RZ_OK && e->bill_stopped) {   /* see rz__engine_pay */
        prc = rz__engine_commit(e);
        if (prc == RZ_OK)
            prc = rz__engine_pay(e);
    }
    return rc != RZ_OK ? rc : prc;
}

/* ---- nodes ---- */

/* caps parsed from JSON with the engine's id and label set. */
static int node_caps(rz_caps **out, const char *json, size_t len, uint64_t id)
{
    *out = NULL;
    if (!json)
        return rz__error(RZ_EINVAL, "no capabilities given");
    rz_caps *caps = NULL;
    int rc = rz_caps_parse(&caps, json, len);
    char ids[24];
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)id);
    if (rc == RZ_OK)
        rc = rz_caps_set_id(caps, ids);
    if (rc == RZ_OK)
        rc = rz_caps_set_label(caps, NODE_LABEL, ids);
    if (rc != RZ_OK)
        rz_caps_free(caps);
    else
        *out = caps;
    return rc;
}

int rz_engine_node_register(rz_engine *e, const char *caps_json, size_t len,
                            uint64_t now_ms, uint64_t *node_id)
{
    if (node_id)
        *node_id = 0;
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    uint64_t id = e->n_nodes + 1;
    rz_caps *caps = NULL;
    rc = node_caps(&caps, caps_json, len, id);
    if (rc != RZ_OK)
        return rc;
    if (!rz__engine_grow((void **)&e->nodes, &e->cap_nodes, e->n_nodes + 1,
                         sizeof *e->nodes))
        rc = no_memory();
    if (rc == RZ_OK) {
        rc = rz_ledger_create_account(e->ledger, rz_engine_node_account(id),
                                      RZ_LEDGER_NODE);
        if (rc == RZ_EEXISTS)   /* left by a registration that crashed */
            rc = RZ_OK;
    }
    if (rc != RZ_OK) {
        rz_caps_free(caps);
        return rc;
    }
    rz__enode *n = &e->nodes[e->n_nodes++];
    memset(n, 0, sizeof *n);
    *n = (rz__enode){ .id = id, .state = RZ_NODE_ACTIVE, .caps = caps,
                      .mindex = RZ_NPOS, .registered_ms = now_ms,
                      .last_hb = now_ms, .heard = now_ms };
    rc = rz__verify_register(e, n, now_ms);
    if (rc == RZ_OK)
        rc = matcher_add_node(e, n);
    if (rc != RZ_OK) {
        rz_caps_free(caps);
        e->n_nodes--;
        return rc;
    }
    rz__engine_touch_node(e, n);
    e->assign_dirty = true;
    rc = rz__engine_commit_call(e, RZ_OK);
    if (rc == RZ_OK && node_id)
        *node_id = id;
    return rc;
}

static rz__enode *live_node(rz_engine *e, uint64_t id, int *rc)
{
    rz__enode *n = rz__engine_node(e, id);
    if (!n)
        *rc = rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)id);
    else if (n->state != RZ_NODE_ACTIVE)
        *rc = rz__error(RZ_ESTATE, "node %llu is %s; register again",
                        (unsigned long long)id,
                        n->state == RZ_NODE_LOST ? "lost" : "gone");
    return *rc == RZ_OK ? n : NULL;
}

int rz_engine_node_heartbeat(rz_engine *e, uint64_t node, uint64_t now_ms,
                             double load)
{
    int rc = begin_call(e, now_ms);
    rz__enode *n = rc == RZ_OK ? live_node(e, node, &rc) : NULL;
    if (!n)
        return rc;
    if (now_ms > n->last_hb)
        n->last_hb = now_ms;
    if (now_ms > n->heard)
        n->heard = now_ms;
    n->load = load;
    return RZ_OK;
}

/* A job whose node went away: back to the queue, or failed after too many
 * dispatches. Its hold stays, so nothing is charged twice. node_gone: its
 * node was lost or left (else it declined the job, or lost the assignment
 * before it ran). */
static int requeue(rz_engine *e, rz__ejob *j, uint64_t now, bool node_gone)
{
    /* A service that ran on a node now gone is restarted by its own
     * policy: the attempt failed, counted against its max_restarts. */
    bool service = node_gone && j->state == RZ_JOB_RUNNING && !j->rep_head &&
                   rz_engine_job_service(e, j->id);
    rz__engine_unplace(e, j, false);
    if (service)
        return rz__engine_dep_report(e, j, NULL, "its node was lost", now);
    if (j->attempt < e->opts.max_attempts) {
        e->stats.requeues++;
        return rz__engine_enqueue(e, j);
    }
    const char *why = "its node was lost too many times";
    if (j->deployment)
        return rz__engine_dep_report(e, j, NULL, why, now);
    free(j->error);
    j->error = rz__strdup(why);
    rz__engine_finish(e, j, RZ_JOB_FAILED, RZ__OWE_REFUND);
    return RZ_OK;
}

static int node_drop(rz_engine *e, rz__enode *n, rz_node_state st, uint64_t now)
{
    waiting_set(e, n, false);
    n->state = st;
    rz__engine_touch_node(e, n);
    /* ENOENT: the matcher never had it (registered while lost). */
    (void)!rz_matcher_remove(e->matcher, rz_caps_get(n->caps)->id);
    e->nodes_epoch++;
    if (st == RZ_NODE_LOST) {
        rz_engine_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = RZ_EV_NODE_LOST;
        ev.node = n->id;
        emit_raw(e, &ev);
        if (n->n_held)   /* lost while running: the clients waited */
            rz__verify_outcome(e, n->id, RZ__OUT_LOST);
    }
    int rc = RZ_OK;
    while (rc == RZ_OK && n->n_held)
        rc = requeue(e, rz__engine_job(e, n->held[0]), now, true);
    return rc;
}

int rz_engine_node_deregister(rz_engine *e, uint64_t node, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    rz__enode *n = rc == RZ_OK ? live_node(e, node, &rc) : NULL;
    if (!n)
        return rc;
    rc = node_drop(e, n, RZ_NODE_GONE, now_ms);
    return rz__engine_commit_call(e, rc);
}

int rz_engine_node_rejoin(rz_engine *e, uint64_t node, const char *caps_json,
                          size_t len, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__enode *n = rz__engine_node(e, node);
    if (!n)
        return rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)node);
    rz_caps *caps = NULL;
    rc = node_caps(&caps, caps_json, len, node);
    if (rc != RZ_OK)
        return rc;
    bool active = n->state == RZ_NODE_ACTIVE;
    if (active && n->n_held) {   /* a heartbeat; its caps stay for now */
        rz_caps_free(caps);
        if (now_ms > n->last_hb)
            n->last_hb = now_ms;
        if (now_ms > n->heard)
            n->heard = now_ms;
        return RZ_OK;
    }
    if (active) {
        waiting_set(e, n, false);
        (void)!rz_matcher_remove(e->matcher, rz_caps_get(n->caps)->id);
        e->nodes_epoch++;
    }
    /* Its record stays; what it claims now is to be proven again. */
    rz__verify_rejoin(e, n, caps, now_ms);
    /* The matcher keeps a node it took out (its index stays valid); after
     * a reopen it never had a lost one. */
    size_t idx;
    rc = rz_matcher_readd(e->matcher, caps, &idx);
    if (rc == RZ_OK) {
        e->node_by_mindex[idx] = n->id;
        n->mindex = idx;
        e->nodes_epoch++;
        rz_caps_free(n->caps);
        n->caps = caps;
        rz__engine_node_caps_forget(n);
    } else if (rc == RZ_ENOENT) {
        rz_caps *old = n->caps;
        n->caps = caps;
        rz__engine_node_caps_forget(n);
        rc = matcher_add_node(e, n);
        rz_caps_free(rc == RZ_OK ? old : caps);
        if (rc != RZ_OK)
            n->caps = old;
    } else {
        rz_caps_free(caps);
    }
    if (rc != RZ_OK) {
        /* Out of the matcher now: an active node can no longer be placed
         * on, so it is lost (it may register again). */
        if (active)   /* rc says why; the drop's own outcome adds nothing */
            (void)!rz__engine_commit_call(e, node_drop(e, n, RZ_NODE_LOST,
                                                       now_ms));
        return rc;
    }
    n->state = RZ_NODE_ACTIVE;
    n->last_hb = now_ms > n->last_hb ? now_ms : n->last_hb;
    n->heard = now_ms > n->heard ? now_ms : n->heard;
    rz__engine_touch_node(e, n);
    e->assign_dirty = true;
    return rz__engine_commit_call(e, RZ_OK);
}

int rz_engine_decline(rz_engine *e, uint64_t node, uint64_t job,
                      uint32_t attempt, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__ejob *j = rz__engine_job(e, job);
    if (!j)
        return gone_job(e, job, node, attempt, NULL, NULL);
    if ((j->state != RZ_JOB_ASSIGNED && j->state != RZ_JOB_RUNNING) ||
        j->node != node || j->attempt != attempt || j->vote)
        return rz__error(RZ_ESTATE, "node %llu does not hold attempt %u of job "
                         "%llu", (unsigned long long)node, attempt,
                         (unsigned long long)job);
    uint64_t *d = rz__realloc(j->declined, (j->n_declined + 1) * sizeof *d);
    if (!d)
        return no_memory();
    j->declined = d;
    j->declined[j->n_declined++] = node;
    rz__engine_touch_job(e, j);
    rz__verify_outcome(e, node, RZ__OUT_DECLINED);
    return rz__engine_commit_call(e, requeue(e, j, now_ms, false));
}

static bool listed(const uint64_t *ids, size_t n, uint64_t job)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == job)
            return true;
    return false;
}

/* A running job the node does not list, past the grace: its assignment was
 * lost on the way (the node never started it). A grace starts for jobs
 * whose hand-over time is unknown (the engine was reopened). */
static bool assignment_lost(rz__ejob *j, const uint64_t *running, size_t n,
                            uint64_t grace_ms, uint64_t now)
{
    if (j->state != RZ_JOB_RUNNING || listed(running, n, j->id))
        return false;
    if (!j->running_ms || j->running_ms > now) {
        j->running_ms = now;
        return false;
    }
    return now - j->running_ms >= grace_ms;
}

int rz_engine_node_running(rz_engine *e, uint64_t node, const uint64_t *running,
                           size_t n_running, uint64_t grace_ms, uint64_t now_ms,
                           size_t *requeued)
{
    if (requeued)
        *requeued = 0;
    int rc = begin_call(e, now_ms);
    rz__enode *n = rc == RZ_OK ? live_node(e, node, &rc) : NULL;
    if (!n)
        return rc;
    if (n_running && !running)
        return rz__error(RZ_EINVAL, "no list of running jobs");
    size_t k = 0;
    for (size_t i = 0; rc == RZ_OK && i < n->n_held;) {
        rz__ejob *j = rz__engine_job(e, n->held[i]);
        if (!assignment_lost(j, running, n_running, grace_ms, now_ms)) {
            i++;
            continue;
        }
        rz__engine_unplace(e, j, true);   /* leaves n->held; a stop, in case */
        rc = requeue(e, j, now_ms, false);
        k++;
    }
    if (requeued)
        *requeued = k;
    return k ? rz__engine_commit_call(e, rc) : rc;
}

int rz_engine_node_waiting(rz_engine *e, uint64_t node, int waiting)
{
    rz__enode *n = e ? rz__engine_node(e, node) : NULL;
    if (!n)
        return rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)node);
    if (n->state == RZ_NODE_ACTIVE)
        waiting_set(e, n, waiting != 0);
    return RZ_OK;
}

int rz_engine_node_get(const rz_engine *e, uint64_t node, rz_engine_node_info *out)
{
    const rz__enode *n = e ? rz__engine_node_const(e, node) : NULL;
    if (!n || !out)
        return rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)node);
    out->id = n->id;
    out->state = n->state;
    out->registered_ms = n->registered_ms;
    out->last_heartbeat_ms = n->last_hb;
    out->load = n->load;
    out->jobs = n->jobs;
    out->account = rz_engine_node_account(n->id);
    return RZ_OK;
}

/* ---- jobs ---- */

static int job_fill(rz_engine *e, rz__ejob *j, const rz_engine_job_spec *s,
                    uint64_t now)
{
    j->client = s->client;
    j->priority = s->priority;
    j->max_cost = s->max_cost_micros;
    j->queue_timeout_ms = s->queue_timeout_ms;
    j->submitted_ms = now;
    j->module_id = rz__strdup(s->module_id ? s->module_id : "");
    j->module_version = rz__strdup(s->module_version ? s->module_version : "");
    j->request = rz__strdup(s->request_json ? s->request_json : "{}");
    if (!j->module_id || !j->module_version || !j->request)
        return no_memory();
    cJSON *req = cJSON_Parse(j->request);
    bool ok = cJSON_IsObject(req);
    cJSON_Delete(req);
    if (!ok)
        return rz__error(RZ_EINVALID, "the request must be a JSON object");
    if (s->exec_json) {
        /* An image, or an llm job's model (docs/llm.md). */
        cJSON *x = cJSON_Parse(s->exec_json);
        const char *ad = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "adapter"));
        ok = cJSON_IsObject(x) &&
             cJSON_IsString(cJSON_GetObjectItemCaseSensitive(
                 x, ad && strcmp(ad, "llm") == 0 ? "model" : "image"));
        cJSON_Delete(x);
        if (!ok)
            return rz__error(RZ_EINVALID, "an ad-hoc job's exec must be a JSON "
                             "object with an \"image\" (or, adapter llm, a "
                             "\"model\")");
        if (!(j->exec = rz__strdup(s->exec_json)))
            return no_memory();
    }
    return rz__engine_reqs_set(e, j, s->requirements_json, s->max_cost_micros);
}

int rz_engine_submit(rz_engine *e, const rz_engine_job_spec *spec,
                     uint64_t now_ms, uint64_t *job_id)
{
    if (job_id)
        *job_id = 0;
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    if (!spec || spec->version < 1 || spec->version > RZ_ENGINE_JOB_SPEC_VERSION)
        return rz__error(RZ_EINVAL, "no job spec, or one of an unknown version");
    if (!spec->max_cost_micros)
        return rz__error(RZ_EINVAL, "max_cost_micros must be at least 1");
    uint32_t k = spec->version >= 2 ? spec->replicas : 0;
    if (k > RZ_ENGINE_REPLICAS_MAX)
        return rz__error(RZ_EINVAL, "replicas must be 2 to %u (1 or 0: one "
                         "run), not %u", RZ_ENGINE_REPLICAS_MAX, k);
    size_t before = e->n_jobs;
    rz__ejob *j = rz__engine_job_new(e);
    if (!j)
        return no_memory();
    rc = job_fill(e, j, spec, now_ms);
    uint64_t id = j->id;
    /* The hold is the last step that can fail: a job whose hold was taken
     * is queued (reserved before), one that failed before leaves no
     * trace. */
    if (rc == RZ_OK && k >= 2)   /* every run's hold, together */
        rc = rz__replica_submit(e, id, k);
    else if (rc == RZ_OK)
        rc = rz__engine_queue_reserve(e, j->req_group, 1);
    if (rc == RZ_OK && k < 2 && e->in_group)
        rc = rz__engine_group_hold(e, j);
    else if (rc == RZ_OK && k < 2 &&
             (rc = rz__engine_cover(e, spec->client, spec->max_cost_micros)) == RZ_OK)
        rc = rz_ledger_hold(e->ledger, rz__engine_hold_id(j->id),
                            rz_engine_job_ledger_id(j->id), spec->client,
                            spec->max_cost_micros, 0);
    if (rc != RZ_OK) {
        rz__engine_jobs_truncate(e, before);
        return rc;
    }
    rc = rz__engine_enqueue(e, rz__engine_job(e, id));
    if (rc == RZ_OK && e->n_group_holds >= RZ__GROUP_HOLDS_MAX)
        rc = rz__engine_group_flush(e);
    rc = rz__engine_commit_call(e, rc);
    if (rc == RZ_OK && job_id)
        *job_id = id;
    return rc;
}

static void assignment_fill(const rz_engine *e, const rz__ejob *j,
                            rz_engine_assignment *out)
{
    out->job = j->id;
    out->attempt = j->attempt;
    out->deployment = j->deployment;
    (void)e;
    out->step = j->step_id ? j->step_id : "";
    out->module_id = j->module_id ? j->module_id : "";
    out->module_version = j->module_version ? j->module_version : "";
    out->request_json = j->request ? j->request : "{}";
    out->max_cost_micros = j->max_cost;
    out->exec_json = j->exec;
}

int rz_engine_poll(rz_engine *e, uint64_t node, uint64_t now_ms,
                   rz_engine_assignment *out)
{
    int rc = begin_call(e, now_ms);
    rz__enode *n = rc == RZ_OK ? live_node(e, node, &rc) : NULL;
    if (!n)
        return rc;
    if (now_ms > n->last_hb)
        n->last_hb = now_ms;
    if (now_ms > n->heard)
        n->heard = now_ms;
    rc = rz__engine_assign_all(e);
    rz__ejob *got = NULL;
    for (size_t i = 0; rc == RZ_OK && i < n->n_held && !got; i++) {
        rz__ejob *j = rz__engine_job(e, n->held[i]);
        if (j->state == RZ_JOB_ASSIGNED)
            got = j;
    }
    if (got) {
        got->state = RZ_JOB_RUNNING;
        got->running_ms = now_ms;
        got->handed_ms = now_ms;
        if (got->iv) {   /* billed by time: its interval runs from now */
            got->iv_start = now_ms;
            got->iv_running = true;
            got->cost = 0;   /* an earlier attempt's, not paid (restart: always) */
        }
        rz__engine_touch_job(e, got);
    }
    rc = rz__engine_commit_call(e, rc);
    if (rc != RZ_OK)
        return rc;
    if (!got)
        return RZ_ENOENT;
    if (out)
        assignment_fill(e, got, out);
    return RZ_OK;
}

/* The attempt's reservation released, the job still the node's (RUNNING,
 * in n->held) until its result: engine_impl.h says why that is safe. */
static void result_due(rz_engine *e, rz__ejob *j)
{
    release_reservation(e, j);
    j->result_due = true;
    rz__engine_touch_job(e, j);
}

int rz_engine_node_ended(rz_engine *e, uint64_t node, uint64_t job,
                         uint32_t attempt, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    rz__enode *n = rc == RZ_OK ? live_node(e, node, &rc) : NULL;
    if (!n)
        return rc;
    rz__ejob *j = rz__engine_job(e, job);
    if (!j || j->state != RZ_JOB_RUNNING || j->node != node ||
        j->attempt != attempt || !(j->placed || j->result_due))
        return rz__error(RZ_ESTATE, "node %llu does not run attempt %u of job "
                         "%llu", (unsigned long long)node, attempt,
                         (unsigned long long)job);
    if (j->result_due)
        return RZ_OK;   /* said again: a poll sent twice */
    if (j->iv_running)   /* billed by the interval until its result */
        return rz__error(RZ_ESTATE, "job %llu is billed by time: its slot "
                         "frees with its result", (unsigned long long)job);
    /* Each result due frees a reservation: bounded by the reserved ones
     * (this one counted), or a node that never sends results would take
     * a job, say it ended, and take another, the whole queue. */
    uint32_t max = rz_caps_get(n->caps)->max_concurrent_jobs, due = 0, placed = 0;
    for (size_t i = 0; i < n->n_held; i++) {
        const rz__ejob *h = rz__engine_job(e, n->held[i]);
        due += h->result_due;
        placed += h->placed;
    }
    if (due >= (max ? max : RZ__RESULTS_DUE_MAX) || due >= placed)
        return rz__error(RZ_ESTATE, "node %llu has %u results due; its slots "
                         "free as they come", (unsigned long long)node, due);
    result_due(e, j);
    return rz__engine_commit_call(e, RZ_OK);
}

/* The run time a report bills: the engine's own measure, from handing the
 * job over to the report's arrival (plus the stated tolerance, none by
 * default), bounded by what the node says: a node cannot claim hours for a
 * run of a second, and a node that ran less than the engine saw (the
 * network, its queue) bills what it ran. A job stored before the hand-over
 * time was kept counts from its submission; a clock that went back leaves
 * only the tolerance. */
static uint64_t billable_ms(const rz_engine *e, const rz__ejob *j,
                            uint64_t reported, uint64_t now_ms)
{
    uint64_t slack = e->opts.run_tolerance_ms;
    uint64_t from = j->handed_ms ? j->handed_ms : j->submitted_ms;
    uint64_t seen = now_ms > from ? now_ms - from : 0;
    uint64_t cap = seen > UINT64_MAX - slack ? UINT64_MAX : seen + slack;
    return reported < cap ? reported : cap;
}

/* The tokens an llm job's outputs report (tokens_in + tokens_out, whole
 * numbers; none reported is none). rz__match_llm_cost bounds them by the
 * `tokens` its requirements priced: a node that reports more is paid for
 * what the hold covered. */
static uint64_t llm_tokens(const char *outputs)
{
    cJSON *o = outputs ? cJSON_Parse(outputs) : NULL;
    uint64_t sum = 0;
    const char *const keys[] = { "tokens_in", "tokens_out" };
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 &&
            v->valuedouble <= 9007199254740992.0)
            sum += (uint64_t)v->valuedouble;
    }
    cJSON_Delete(o);
    return sum;
}

/* What the job cost on its node: the node's prices for run_ms (for an llm
 * job, its price for the tokens reported or for run_ms, as the node prices
 * the model), capped by the hold. run_ms is billable_ms's: bounded by the
 * engine's clock. */
static uint64_t actual_cost(rz_engine *e, const rz__ejob *j, uint64_t run_ms,
                            const char *outputs)
{
    rz__enode *n = rz__engine_node(e, j->node);
    const rz_reqs *r = j->reqs;
    uint64_t c = r->llm_model
        ? rz__match_llm_cost(n->caps, r, llm_tokens(outputs), run_ms)
        : rz__match_cost(rz__match_rate(rz_caps_get(n->caps), rz_reqs_get(r)),
                         run_ms);
    return c < j->max_cost ? c : j->max_cost;
}

/* RZ_OK for an object (or none), RZ_EINVALID for anything else, RZ_ENOMEM
 * when memory ran out reading it: a job must not fail for that. */
static int outputs_check(const char *outputs)
{
    if (!outputs)
        return RZ_OK;
    cJSON *o = cJSON_Parse(outputs);
    if (!o && rz__json_valid(outputs, strlen(outputs)))
        return rz__error(RZ_ENOMEM, "out of memory reading a job's outputs");
    bool ok = cJSON_IsObject(o);
    cJSON_Delete(o);
    return ok ? RZ_OK : RZ_EINVALID;
}

/* What identifies a report's content: run_ms, then the error or the
 * outputs as given (NULL outputs are "{}"), tagged so neither can pass for
 * the other. */
static void report_digest(const char *outputs_json, const char *error,
                          uint64_t run_ms, unsigned char out[32])
{
    unsigned char ms[8];
    for (int i = 0; i < 8; i++)
        ms[i] = (unsigned char)(run_ms >> (8 * i));
    const char *text = error ? error : outputs_json ? outputs_json : "{}";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, ms, sizeof ms);
    crypto_generichash_update(&st, (const unsigned char *)(error ? "E" : "O"), 1);
    crypto_generichash_update(&st, (const unsigned char *)text, strlen(text));
    crypto_generichash_final(&st, out, 32);
}

/* A report for the attempt already accepted: RZ_OK for the same content
 * (or one of unknown content: a record from before digests were kept),
 * RZ_ESTATE for other content. */
static int result_repeat(rz_engine *e, const rz__ejob *j, const char *outputs_json,
                         const char *error, uint64_t run_ms)
{
    if (!j->done_known)
        return RZ_OK;
    unsigned char d[32];
    report_digest(outputs_json, error, run_ms, d);
    if (sodium_memcmp(d, j->done_digest, sizeof d) == 0)
        return RZ_OK;
    e->stats.results_rejected++;
    return rz__error(RZ_ESTATE, "attempt %u of job %llu was reported already "
                     "with other content", j->done_attempt,
                     (unsigned long long)j->id);
}

/* The accepted report sent again: taken as one (a set still undecided
 * with every vote in is decided now). */
static int report_again(rz_engine *e, rz__ejob *j, const rz_engine_report *r,
                        int *was_repeat)
{
    int rc = result_repeat(e, j, r->outputs_json, r->error, r->run_ms);
    if (rc == RZ_OK && was_repeat)
        *was_repeat = 1;
    int drc = RZ_OK;
    if (rc == RZ_OK && rz__replica_redecide(e, j, &drc))
        return rz__engine_commit_call(e, drc);
    return rc;
}

/* A report or decline for a job that is no longer in memory (finished):
 * an exact repeat of its accepted report is taken as one, else the node
 * does not hold it, as when it was in memory. */
static int gone_job(rz_engine *e, uint64_t job, uint64_t node,
                    uint32_t attempt, const rz_engine_report *report,
                    int *was_repeat)
{
    const rz__ejob *j = rz__engine_job_read(e, job);
    if (!j)
        return rz_error_last()->code;
    if (report && j->done_attempt && j->done_attempt == attempt &&
        j->done_node == node) {
        int rc = result_repeat(e, j, report->outputs_json, report->error,
                               report->run_ms);
        if (rc == RZ_OK && was_repeat)
            *was_repeat = 1;
        return rc;
    }
    if (report)
        e->stats.results_rejected++;
    return rz__error(RZ_ESTATE, "node %llu does not hold attempt %u of job "
                     "%llu", (unsigned long long)node, attempt,
                     (unsigned long long)job);
}

/* A step's outcome, through its run (what it allocates made: t). */
static int report_step(rz_engine *e, rz__ejob *j, const char *outputs,
                       const char *error, uint64_t now, rz__dep_texts *t)
{
    rz__edep *d = rz__engine_dep(e, j->deployment);
    uint32_t n = d ? d->n_events : 0;
    int rc = rz__engine_dep_report_with(e, j, outputs ? outputs : "{}", error,
                                        now, t);
    if (rc != RZ_OK && d && d->n_events == n) {
        /* The run refused it for memory after the job left its node:
         * memory no longer matches the store, whose last commit a reopen
         * restores (the node's report is then taken again). */
        e->broken = true;
        return rc;
    }
    return rz__engine_commit_call(e, rc);
}

int rz_engine_report_result(rz_engine *e, uint64_t node, uint64_t job,
                            const rz_engine_report *report, uint64_t now_ms,
                            int *was_repeat)
{
    if (was_repeat)
        *was_repeat = 0;
    if (!report || report->version != RZ_ENGINE_REPORT_VERSION)
        return rz__error(RZ_EINVAL, "rz_engine_report_result: invalid report");
    uint32_t attempt = report->attempt;
    const char *outputs_json = report->outputs_json;
    const char *error = report->error;
    uint64_t run_ms = report->run_ms;
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__ejob *j = rz__engine_job(e, job);
    if (!j)
        return gone_job(e, job, node, attempt, report, was_repeat);
    if (j->done_attempt && j->done_attempt == attempt && j->done_node == node)
        return report_again(e, j, report, was_repeat);
    if (j->state != RZ_JOB_RUNNING || j->node != node || j->attempt != attempt ||
        j->vote) {
        e->stats.results_rejected++;
        return rz__error(RZ_ESTATE, "node %llu does not hold attempt %u of job "
                         "%llu", (unsigned long long)node, attempt,
                         (unsigned long long)job);
    }
    rc = error ? RZ_OK : outputs_check(outputs_json);
    if (rc == RZ_ENOMEM)
        return rc;
    if (rc != RZ_OK)
        error = "outputs are not a JSON object";
    /* Copied before anything changes: a job must not end without its
     * error or outputs because memory ran out. */
    bool keep = !j->deployment || j->rep_head;
    char *kept = !keep ? NULL
               : rz__strdup(error ? error : outputs_json ? outputs_json : "{}");
    if (keep && !kept)
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__dep_texts texts = {0};
    if (!keep && (rc = rz__engine_dep_report_prep(e, outputs_json, error,
                                                  &texts)) != RZ_OK)
        return rc;
    report_digest(outputs_json, report->error, run_ms, j->done_digest);   /* as sent */
    j->done_known = true;
    uint64_t iv_cost = j->iv && !error ? rz__bill_final_cost(e, j, now_ms) : 0;
    rz__engine_unplace(e, j, false);
    j->node = node;
    j->done_node = node;
    j->done_attempt = attempt;
    j->run_ms = billable_ms(e, j, run_ms, now_ms);
    if (!error)
        j->cost = j->iv ? iv_cost : actual_cost(e, j, j->run_ms, outputs_json);
    if (j->rep_head)   /* a vote: paid, or not, at the verdict */
        return rz__engine_commit_call(e, rz__replica_report(e, j, outputs_json,
                                                            error, kept));
    rz__verify_outcome(e, node, error ? RZ__OUT_FAILED : RZ__OUT_SUCCEEDED);
    if (j->deployment)
        return report_step(e, j, outputs_json, error, now_ms, &texts);
    if (error) {
        free(j->error);
        j->error = kept;
        rz__engine_finish(e, j, RZ_JOB_FAILED, RZ__OWE_REFUND);
    } else {
        free(j->outputs);
        j->outputs = kept;
        rz__engine_finish(e, j, RZ_JOB_SUCCEEDED,
                          j->cost ? RZ__OWE_SETTLE : RZ__OWE_REFUND);
    }
    return rz__engine_commit_call(e, RZ_OK);
}

static bool job_open(const rz__ejob *j)
{
    return j->state < RZ_JOB_SUCCEEDED;
}

int rz_engine_job_cancel(rz_engine *e, uint64_t job, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    if (rc != RZ_OK)
        return rc;
    rz__ejob *j = rz__engine_job(e, job);
    const rz__ejob *r = j ? j : rz__engine_job_read(e, job);
    if (!r)
        return rz__error(RZ_ENOENT, "no job %llu", (unsigned long long)job);
    const rz__ejob *h = r->rep_head && r->rep_head != r->id
                      ? rz__engine_job_read(e, r->rep_head) : NULL;
    uint64_t dep = r->deployment ? r->deployment : h ? h->deployment : 0;
    if (dep)
        return rz__error(RZ_EINVAL, "job %llu is a step (or a run of a step) "
                         "of deployment %llu; cancel the deployment",
                         (unsigned long long)job, (unsigned long long)dep);
    if (!j || !job_open(j))
        return rz__error(RZ_ESTATE, "job %llu has finished (%s)",
                         (unsigned long long)job, rz_job_state_name(r->state));
    rz__engine_unplace(e, j, true);
    rz__engine_finish(e, j, RZ_JOB_CANCELLED, RZ__OWE_REFUND);
    return rz__engine_commit_call(e, RZ_OK);
}

const char *rz_engine_job_requirements(const rz_engine *e, uint64_t job)
{
    const rz__ejob *j = e ? rz__engine_job(e, job) : NULL;
    return j ? j->reqs_json : NULL;
}

const char *rz_engine_job_request(const rz_engine *e, uint64_t job)
{
    const rz__ejob *j = e ? rz__engine_job(e, job) : NULL;
    return j ? (j->request ? j->request : "{}") : NULL;
}

int rz_engine_job_get(const rz_engine *e, uint64_t job, rz_engine_job_info *out)
{
    const rz__ejob *j = e && out ? rz__engine_job_read(e, job) : NULL;
    if (j && j->rep_head == j->id && j->replicas > RZ_ENGINE_REPLICAS_MAX)
        return rz__error(RZ_EDB, "job %llu: a damaged replica set",
                         (unsigned long long)job);
    if (e && out && !j && rz_error_last()->code == RZ_EDB)
        return RZ_EDB;   /* a damaged record: the store's error says which */
    if (!j)
        return rz__error(RZ_ENOENT, "no job %llu", (unsigned long long)job);
    memset(out, 0, sizeof *out);
    out->id = j->id;
    out->state = j->state;
    out->attempt = j->attempt;
    out->node = j->node;
    out->priority = j->priority;
    out->client = j->client;
    out->max_cost_micros = j->max_cost;
    out->cost_micros = j->state == RZ_JOB_SUCCEEDED ? j->cost : 0;
    if (j->iv)   /* billed by time: its intervals so far, the last once paid */
        out->cost_micros = rz__engine_charged(j);
    out->run_ms = j->run_ms;
    out->deployment = j->deployment;
    rz_engine_assignment a;
    assignment_fill(e, j, &a);
    out->step = a.step;
    out->module_id = a.module_id;
    out->module_version = a.module_version;
    out->outputs_json = j->state == RZ_JOB_SUCCEEDED ? j->outputs : NULL;
    out->error = j->state == RZ_JOB_FAILED ? j->error : NULL;
    out->waiting_reason = rz__engine_waiting_reason(j);
    out->exec_json = j->exec;
    out->queue_deadline_ms = j->state == RZ_JOB_QUEUED ? j->queue_deadline : 0;
    /* A replicated job's money is all on the job the client submitted:
     * sums over jobs (volume, refunds) count each micro once. */
    if (j->rep_head && j->rep_head != j->id) {
        out->replica_of = j->rep_head;
        out->max_cost_micros = out->cost_micros = 0;
        const rz__ejob *h = rz__engine_job_read(e, j->rep_head);
        out->deployment = h ? h->deployment : 0;
    }
    if (j->rep_head == j->id) {
        rz_engine_replica_run r[RZ_ENGINE_REPLICAS_MAX];
        size_t n = rz_engine_job_replicas(e, j->id, r, RZ_ENGINE_REPLICAS_MAX);
        if (n > RZ_ENGINE_REPLICAS_MAX)   /* r holds no more */
            n = RZ_ENGINE_REPLICAS_MAX;
        out->replicas = (uint32_t)n;
        out->max_cost_micros = j->max_cost * n;
        out->cost_micros = 0;
        for (size_t i = 0; i < n; i++)
            out->cost_micros += r[i].cost_micros;
    }
    return RZ_OK;
}

/* ---- time ---- */

int rz_engine_tick(rz_engine *e, uint64_t now_ms)
{
    int rc = begin_call(e, now_ms);
    for (size_t i = 0; rc == RZ_OK && i < e->n_nodes; i++) {
        rz__enode *n = &e->nodes[i];
        if (n->state == RZ_NODE_ACTIVE &&
            now_ms - n->last_hb > e->opts.node_timeout_ms && now_ms > n->last_hb)
            rc = node_drop(e, n, RZ_NODE_LOST, now_ms);
    }
    if (rc == RZ_OK)
        rz__verify_tick(e);
    if (rc == RZ_OK)
        rc = rz__engine_queue_expire(e);
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_deps; i++) {
        rz__edep *d = e->deps[i];
        if (d->run && (d->fan_due || d->start_due ||
                       rz_run_next_wakeup(d->run) <= now_ms ||
                       rz__engine_approvals_next(d) <= now_ms))
            rc = rz__engine_dep_advance(e, d, now_ms);
    }
    if (rc == RZ_OK)   /* last: it sees what this tick held already */
        rc = rz__bill_tick(e, now_ms);
    if (rc == RZ_OK)
        rc = rz__engine_assign_all(e);
    if (!e || e->broken)
        return rc;
    return rz__engine_commit_call(e, rc);
}

uint64_t rz_engine_next_wakeup(const rz_engine *e)
{
    uint64_t t = UINT64_MAX;
    if (!e)
        return t;
    for (size_t i = 0; i < e->n_nodes; i++)
        if (e->nodes[i].state == RZ_NODE_ACTIVE) {
            uint64_t d = e->nodes[i].last_hb + e->opts.node_timeout_ms + 1;
            if (d < t)
                t = d;
        }
    for (size_t i = 0; i < e->n_live_deps; i++)
        if (e->deps[i]->run) {
            uint64_t w = e->deps[i]->fan_due || e->deps[i]->start_due ? 0
                       : rz_run_next_wakeup(e->deps[i]->run);
            uint64_t a = rz__engine_approvals_next(e->deps[i]);
            w = a < w ? a : w;
            if (w < t)
                t = w;
        }
    if (e->n_paid && e->paid_at + RZ__PAID_WRITE_MS < t)
        t = e->paid_at + RZ__PAID_WRITE_MS;   /* the marks' commit */
    uint64_t q = rz__engine_queue_next(e);
    uint64_t v = rz__verify_next(e);
    uint64_t b = rz__bill_next(e);
    if (b < t)
        t = b;
    if (v < t)
        t = v;
    return q < t ? q : t;
}

void rz_engine_stats_get(const rz_engine *e, rz_engine_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    *out = e->stats;
    memset(out->jobs, 0, sizeof out->jobs);
    out->nodes_active = out->nodes_lost = 0;
    out->deployments_running = out->deployments_done = 0;
    for (size_t i = 0; i < e->n_nodes; i++) {
        out->nodes_active += e->nodes[i].state == RZ_NODE_ACTIVE;
        out->nodes_lost += e->nodes[i].state == RZ_NODE_LOST;
    }
    memcpy(out->jobs, e->gone_jobs, sizeof out->jobs);   /* left memory */
    out->deployments_done = e->gone_deps;
    for (size_t i = 0; i < e->n_live_jobs; i++)
        if ((unsigned)e->jobs[i]->state <= RZ_JOB_CANCELLED)
            out->jobs[e->jobs[i]->state]++;
    for (size_t i = 0; i < e->n_live_deps; i++) {
        out->deployments_running += !rz__engine_dep_finished(e->deps[i]);
        out->deployments_done += rz__engine_dep_finished(e->deps[i]);
    }
}

uint64_t rz_engine_volume_micros(const rz_engine *e)
{
    if (!e)
        return 0;
    uint64_t sum = e->gone_volume;
    for (size_t i = 0; i < e->n_live_jobs; i++)
        sum += rz__engine_charged(e->jobs[i]);
    return sum;
}

/* ---- listings ---- */

/* The newest first of the records below `before` whose client matches:
 * live ones from memory, the rest from the store. */
static uint64_t list_top(uint64_t before, uint64_t n)
{
    return before && before - 1 < n ? before - 1 : n;
}

size_t rz_engine_job_list(const rz_engine *e, const rz_ledger_id *client,
                          uint64_t before, uint64_t *ids, size_t cap)
{
    if (!e || !ids)
        return 0;
    return rz__engine_store_list(e, false, client, list_top(before, e->n_jobs),
                                 ids, cap);
}

size_t rz_engine_deployment_list(const rz_engine *e, const rz_ledger_id *client,
                                 uint64_t before, uint64_t *ids, size_t cap)
{
    if (!e || !ids)
        return 0;
    return rz__engine_store_list(e, true, client, list_top(before, e->n_deps),
                                 ids, cap);
}

void rz_engine_client_open(const rz_engine *e, rz_ledger_id client,
                           uint64_t *jobs, uint64_t *deployments)
{
    uint64_t nj = 0, nd = 0;
    for (size_t i = 0; e && i < e->n_live_jobs; i++) {
        const rz__ejob *j = e->jobs[i];
        nj += !j->deployment && j->state < RZ_JOB_SUCCEEDED &&
              rz_ledger_id_equal(j->client, client);
    }
    for (size_t i = 0; e && i < e->n_live_deps; i++) {
        const rz__edep *d = e->deps[i];
        rz_run_state s = d->run ? rz_run_state_get(d->run) : d->state;
        nd += s == RZ_RUN_RUNNING && rz_ledger_id_equal(d->client, client);
    }
    if (jobs)
        *jobs = nj;
    if (deployments)
        *deployments = nd;
}

int rz_engine_deployment_get(const rz_engine *e, uint64_t deployment,
                             rz_engine_deployment_info *out)
{
    const rz__edep *d = e ? rz__engine_dep_read(e, deployment) : NULL;
    if (!d || !out)
        return rz__error(RZ_ENOENT, "no deployment %llu",
                         (unsigned long long)deployment);
    memset(out, 0, sizeof *out);
    out->id = d->id;
    out->client = d->client;
    out->state = d->run ? rz_run_state_get(d->run) : d->state;
    out->created_ms = d->created_ms;
    out->first_job = d->first_job;
    out->n_steps = d->n_steps;
    return RZ_OK;
}

uint64_t rz_engine_node_count(const rz_engine *e)
{
    return e ? e->n_nodes : 0;
}

int rz_engine_node_caps(const rz_engine *e, uint64_t node, char **json)
{
    if (json)
        *json = NULL;
    const rz__enode *n = e ? rz__engine_node_const(e, node) : NULL;
    if (!n || !json)
        return rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)node);
    return rz_caps_to_json(n->caps, 0, json);
}

int rz_engine_job_times(const rz_engine *e, uint64_t job, uint64_t *submitted_ms,
                        uint64_t *queued_ms)
{
    const rz__ejob *j = e ? rz__engine_job_read(e, job) : NULL;
    if (!j)
        return rz__error(RZ_ENOENT, "no job %llu", (unsigned long long)job);
    if (submitted_ms)
        *submitted_ms = j->submitted_ms;
    if (queued_ms)
        *queued_ms = j->queued_ms;
    return RZ_OK;
}

int rz_engine_reference_cost(const rz_engine *e, const char *requirements_json,
                             uint64_t *micros)
{
    if (micros)
        *micros = 0;
    if (!e || !micros)
        return rz__error(RZ_EINVAL, "no engine or no output");
    rz_reqs *r = NULL;
    const char *text = requirements_json ? requirements_json : "{}";
    int rc = rz_reqs_parse(&r, text, strlen(text));
    if (rc != RZ_OK)
        return rc;
    *micros = rz__engine_ref_cost(e, r);
    rz_reqs_free(r);
    return RZ_OK;
}
