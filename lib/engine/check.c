/* rz_engine_check: every invariant the engine promises, checked from the
 * outside of its decisions (memory, matcher, ledger), so a simulator can
 * call it after every step. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "flow/model.h"

#define BREACH(...) rz__error(RZ_EINTERNAL, __VA_ARGS__)
#define U(x) ((unsigned long long)(x))

static bool placed_state(rz_job_state s)
{
    return s == RZ_JOB_ASSIGNED || s == RZ_JOB_RUNNING;
}

static int check_node(rz_engine *e, const rz__enode *n)
{
    uint32_t held = 0, due = 0;
    for (size_t i = 0; i < n->n_held; i++) {
        const rz__ejob *j = rz__engine_job(e, n->held[i]);
        bool ok = j && j->node == n->id &&
                  (j->result_due ? !j->placed && j->state == RZ_JOB_RUNNING
                                 : j->placed && placed_state(j->state));
        if (!ok)
            return BREACH("node %llu holds job %llu, which is not placed there",
                          U(n->id), U(n->held[i]));
        held++;
        due += j->result_due;
    }
    if (held != n->jobs)
        return BREACH("node %llu counts %u jobs but holds %u", U(n->id),
                      n->jobs, held);
    if (n->state != RZ_NODE_ACTIVE)
        return held ? BREACH("node %llu is not active but holds jobs", U(n->id))
                    : RZ_OK;
    rz_node_usage u;
    if (rz_matcher_usage(e->matcher, n->mindex, &u) != RZ_OK)
        return BREACH("node %llu is not in the matcher", U(n->id));
    uint32_t max = rz_caps_get(n->caps)->max_concurrent_jobs;
    if (u.cores_used > u.cores_total || u.memory_used_mb > u.memory_total_mb ||
        u.storage_used_gb > u.storage_total_gb || u.gpus_used > u.gpus_total ||
        (max && u.jobs > max))
        return BREACH("node %llu is oversubscribed", U(n->id));
    if (u.jobs != held - due)
        return BREACH("node %llu: the matcher reserves %u jobs, the engine "
                      "placed %u", U(n->id), u.jobs, held - due);
    return RZ_OK;
}

/* An open job's hold is open for its maximum; a finished job's hold was
 * posted at its cost (succeeded) or voided. */
static int check_hold(rz_engine *e, rz__ejob *j)
{
    if (j->iv)
        return rz__bill_check(e, j);   /* billed by time: one interval held */
    bool open = j->state < RZ_JOB_SUCCEEDED;
    if (!open && j->hold_checked)
        return RZ_OK;
    if (!open && !j->max_cost && !j->owed)
        return RZ_OK;   /* a group's hold the ledger refused: none was made */
    if (!open && j->owed != RZ__OWE_NONE)
        return BREACH("job %llu still owes the ledger", U(j->id));
    rz_ledger_transfer t;
    int rc = rz_ledger_transfer_get(e->ledger, rz__engine_hold_id(j->id), &t);
    if (rc != RZ_OK)
        return BREACH("job %llu has no hold", U(j->id));
    if (t.amount != j->max_cost)
        return BREACH("job %llu holds %llu micros, not %llu", U(j->id),
                      U(t.amount), U(j->max_cost));
    if (open)
        return t.state == RZ_LEDGER_OPEN ? RZ_OK
               : BREACH("open job %llu has a closed hold", U(j->id));
    bool paid = j->state == RZ_JOB_SUCCEEDED && j->cost;
    if (paid ? t.state != RZ_LEDGER_POSTED || t.posted_amount != j->cost
             : t.state != RZ_LEDGER_VOIDED)
        return BREACH("job %llu (%s, cost %llu) has a hold in state %u "
                      "posted %llu", U(j->id), rz_job_state_name(j->state),
                      U(j->cost), t.state, U(t.posted_amount));
    j->hold_checked = true;
    return RZ_OK;
}

/* A replicated job's runs (replica.c): a run that voted waits unplaced
 * with its hold open until the verdict, which finishes every run at once;
 * runs of one set never share a node while placed. */
static int check_replica(rz_engine *e, const rz__ejob *j)
{
    /* A decided set's head may have left memory before this run (which
     * still owes the ledger): read back. */
    const rz__ejob *h = rz__engine_job_read(e, j->rep_head);
    if (!h || h->rep_head != h->id || h->replicas < 2 ||
        (j != h && (j->id < h->rep_first ||
                    j->id >= h->rep_first + h->replicas - 1)))
        return BREACH("job %llu: its replica set is broken", U(j->id));
    if ((j->verdict != RZ__VERDICT_NONE) != (j->state >= RZ_JOB_SUCCEEDED) ||
        (j->vote && j->state < RZ_JOB_SUCCEEDED && j->state != RZ_JOB_RUNNING))
        return BREACH("job %llu: verdict %u in state %s", U(j->id), j->verdict,
                      rz_job_state_name(j->state));
    if ((j->verdict != RZ__VERDICT_NONE) != (h->verdict != RZ__VERDICT_NONE))
        return BREACH("job %llu: decided apart from its set", U(j->id));
    for (uint32_t i = 0; j->placed && i < h->replicas; i++) {
        const rz__ejob *m = rz__engine_job(e, i ? h->rep_first + i - 1 : h->id);
        if (m && m != j && m->placed && m->node == j->node)
            return BREACH("jobs %llu and %llu of one replica set share node "
                          "%llu", U(j->id), U(m->id), U(j->node));
    }
    return RZ_OK;
}

static bool node_holds(const rz__enode *n, uint64_t job)
{
    for (size_t i = 0; i < n->n_held; i++)
        if (n->held[i] == job)
            return true;
    return false;
}

static int check_job(rz_engine *e, rz__ejob *j, size_t *queued)
{
    if (j->rep_head) {
        int rc = check_replica(e, j);
        if (rc != RZ_OK)
            return rc;
    }
    if (j->placed != (placed_state(j->state) && !j->vote && !j->result_due))
        return BREACH("job %llu is %s but %splaced", U(j->id),
                      rz_job_state_name(j->state), j->placed ? "" : "not ");
    if (j->placed || j->result_due) {
        const rz__enode *n = rz__engine_node(e, j->node);
        if (!n || n->state != RZ_NODE_ACTIVE)
            return BREACH("job %llu is placed on a node that is not active",
                          U(j->id));
        if (j->result_due && !node_holds(n, j->id))
            return BREACH("job %llu: its result is due from node %llu, "
                          "which does not hold it", U(j->id), U(j->node));
    }
    if (j->state == RZ_JOB_PENDING && !j->deployment && !j->rep_head)
        return BREACH("standalone job %llu is pending", U(j->id));
    if (j->state == RZ_JOB_QUEUED && j->held != rz__engine_job_paused(e, j))
        return BREACH("queued job %llu is %sheld but its deployment is %spaused",
                      U(j->id), j->held ? "" : "not ", j->held ? "not " : "");
    *queued += j->state == RZ_JOB_QUEUED && !j->held;   /* held: in no heap */
    return check_hold(e, j);
}

static int check_gone(rz_engine *e, rz__ejob *j)
{
    if (j->state < RZ_JOB_SUCCEEDED)
        return BREACH("open job %llu is not in memory", U(j->id));
    return check_hold(e, j);
}

/* A job retention removed left no open hold behind (it never takes one).
 * Its record, which named a service's last interval, is gone: every
 * interval's hold is read, not only the job's own (interval 1's, posted
 * at the first roll-over while a later one may be open). */
static int check_removed(rz_engine *e, uint64_t id)
{
    uint32_t k = 0;
    int rc = rz__bill_open_hold(e, id, &k);
    if (rc == RZ_OK && k > 1)
        return BREACH("job %llu was removed by retention with interval %u's "
                      "hold open", U(id), k);
    if (rc == RZ_OK && k)
        return BREACH("job %llu was removed by retention with its hold open",
                      U(id));
    return rc;
}

/* due: a started task's job may wait to be queued (start_due). */
static bool step_agrees(rz_step_state s, rz_job_state j, bool due)
{
    switch (s) {
    case RZ_STEP_PENDING: case RZ_STEP_READY: case RZ_STEP_BACKOFF:
        return j == RZ_JOB_PENDING;
    case RZ_STEP_RUNNING:
        return j == RZ_JOB_QUEUED || placed_state(j) ||
               (due && j == RZ_JOB_PENDING);
    case RZ_STEP_SUCCEEDED:
        return j == RZ_JOB_SUCCEEDED;
    default:
        return j == RZ_JOB_FAILED || j == RZ_JOB_CANCELLED;
    }
}

/* Each for_each element the run made has one job of its own (none only
 * when its map failed for want of holds), in the state the run says. */
static int check_elements(rz_engine *e, const rz__edep *d)
{
    size_t n = rz_run_task_count(d->run);
    /* Elements waiting for their jobs (fan_due) are the last ones. */
    if (n - d->n_steps != d->n_el_jobs &&
        !(d->fan_due && n - d->n_steps > d->n_el_jobs))
        return BREACH("deployment %llu: %zu for_each elements but %zu element jobs",
                      U(d->id), n - d->n_steps, d->n_el_jobs);
    n = d->n_steps + d->n_el_jobs;
    uint64_t prev = 0;
    for (size_t t = d->n_steps; t < n; t++) {
        uint64_t id = d->el_jobs[t - d->n_steps];
        rz_step_state s = rz_run_step_state(d->run, t);
        const rz__ejob *j = id ? rz__engine_job(e, id) : NULL;
        if (!id && s == RZ_STEP_SKIPPED)
            continue;
        if (!j || j->deployment != d->id || j->step != t)
            return BREACH("deployment %llu: element task %zu has no job", U(d->id), t);
        if (id <= prev)   /* made in task order: one job per element */
            return BREACH("deployment %llu: job %llu runs element task %zu after "
                          "job %llu ran an earlier one", U(d->id), U(id), t, U(prev));
        prev = id;
        if (!step_agrees(s, j->state, d->start_due))
            return BREACH("deployment %llu: element task %zu is %s but job %llu is %s",
                          U(d->id), t, rz_step_state_name(s), U(id),
                          rz_job_state_name(j->state));
    }
    return RZ_OK;
}

static int check_dep(rz_engine *e, const rz__edep *d)
{
    if (d->final_lazy)   /* finished: its jobs left memory, each done */
        return RZ_OK;
    for (size_t i = 0; i < d->n_steps; i++) {
        const rz__ejob *j = rz__engine_job(e, d->first_job + i);
        if (!j || j->deployment != d->id || j->step != i)
            return BREACH("deployment %llu: step %zu has no job", U(d->id), i);
        if (!d->run) {
            if (j->state < RZ_JOB_SUCCEEDED)
                return BREACH("finished deployment %llu has open job %llu",
                              U(d->id), U(j->id));
            continue;
        }
        rz_step_state s = rz_run_step_state(d->run, i);
        /* A for_each step runs as its elements, an approval step waits for
         * a decision: either way its own job waits. */
        bool map = s == RZ_STEP_RUNNING && (rz__step_maps(&d->flow->steps[i]) ||
                                            rz__engine_is_approval(d, i));
        if (map ? j->state != RZ_JOB_PENDING : !step_agrees(s, j->state, d->start_due))
            return BREACH("deployment %llu: step %s is %s but job %llu is %s",
                          U(d->id), j->step_id, rz_step_state_name(s),
                          U(j->id), rz_job_state_name(j->state));
    }
    return d->run ? check_elements(e, d) : RZ_OK;
}

/* sample 0: the whole ledger; else rz_ledger_verify_sample's n. */
static int check_all(rz_engine *e, size_t sample)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    if (e->in_group)
        return rz__error(RZ_ESTATE, "a group is open: commit it first");
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < e->n_nodes; i++)
        rc = check_node(e, &e->nodes[i]);
    size_t queued = 0, live = 0;
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_jobs; i++)
        rc = check_job(e, e->jobs[i], &queued);
    /* Finished jobs that left memory: once per open (they do not change;
     * one that leaves later was checked here while in memory, when the
     * checks run between calls as the simulator runs them). */
    if (rc == RZ_OK && !e->gone_checked)
        rc = rz__engine_store_each_gone(e, check_gone);
    if (rc == RZ_OK && !e->gone_checked)
        rc = rz__engine_store_each_removed(e, check_removed);
    if (rc == RZ_OK)
        e->gone_checked = true;
    if (rc == RZ_OK)
        rc = rz__engine_store_index_check(e);
    for (size_t g = 0; rc == RZ_OK && g < e->n_queued_groups; g++) {
        const rz__req_group *q = e->queued_groups[g];
        if (!q->q_len)
            rc = BREACH("an empty requirement group is listed as queued");
        for (size_t i = 0; rc == RZ_OK && i < q->q_len; i++) {
            const rz__heap_ent *h = &q->q[i];
            const rz__ejob *j = rz__engine_job(e, h->job);
            bool on = j && j->state == RZ_JOB_QUEUED && j->queue_gen == h->gen;
            if (on && j->req_group != q)
                rc = BREACH("job %llu is queued in another requirement group",
                            U(j->id));
            live += on;
        }
    }
    if (rc == RZ_OK && live != queued)
        rc = BREACH("%zu jobs are queued but the queue holds %zu", queued, live);
    for (size_t i = 0; rc == RZ_OK && i < e->n_live_deps; i++)
        rc = check_dep(e, e->deps[i]);
    if (rc == RZ_OK && (sample ? rz_ledger_verify_sample(e->ledger, sample)
                               : rz_ledger_verify(e->ledger)) != RZ_OK)
        rc = BREACH("ledger: %s", rz_error_last()->message);
    return rc;
}

int rz_engine_check(rz_engine *e)
{
    return check_all(e, 0);
}

int rz_engine_check_sampled(rz_engine *e, size_t n)
{
    return check_all(e, n ? n : 1);
}
