/* Why a queued job waits, and how long it may.
 *
 * The reason is the matcher's (rz_matcher_explain, one wording for the CLI,
 * the estimate and the engine), worked out per requirement group: when a
 * job is queued and when a placement pass finds a group fits nowhere. It is
 * kept until the set of active nodes changes or WHY_TTL_MS pass, so a
 * queue of like jobs costs one O(nodes) explanation, not one per job or
 * per poll. Memory only: it explains, it decides nothing.
 *
 * The queue deadline (queue_timeout_ms from each enqueue) is stored with
 * the job, and e->queue_next bounds the earliest from below (set as jobs
 * are queued, exact after each scan), so neither a tick nor
 * rz_engine_next_wakeup walks the queue unless a deadline may be due. A
 * tick fails the jobs still queued past theirs, through the same
 * paths as any failure: a standalone job is refunded, a step fails through
 * its run (which may retry it). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"

#define WHY_TTL_MS 1000u

static bool any_active(const rz_engine *e)
{
    for (size_t i = 0; i < e->n_nodes; i++)
        if (e->nodes[i].state == RZ_NODE_ACTIVE)
            return true;
    return false;
}

static bool why_fresh(const rz_engine *e, const rz__req_group *g)
{
    return g->why && g->why_epoch == e->nodes_epoch && e->now >= g->why_ms &&
           e->now - g->why_ms < WHY_TTL_MS;
}

int rz__engine_why_refresh(rz_engine *e, rz__req_group *g, bool force)
{
    if (why_fresh(e, g) && !(force && !*g->why))
        return RZ_OK;
    char *why = NULL;
    if (!any_active(e)) {
        why = rz__strdup("no active node");
    } else {
        char *m = NULL;
        if (rz_matcher_explain(e->matcher, g->reqs, &m) == RZ_OK)
            why = rz__strdup(m);
        rz_free(m);
    }
    if (!why)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(g->why);
    g->why = why;
    g->why_ms = e->now;
    g->why_epoch = e->nodes_epoch;
    return RZ_OK;
}

const char *rz__engine_waiting_reason(const rz__ejob *j)
{
    if (j->state == RZ_JOB_QUEUED && j->held)
        return "its deployment is paused";
    if (j->state != RZ_JOB_QUEUED || !j->req_group || !j->req_group->why)
        return NULL;
    if (*j->req_group->why)
        return j->req_group->why;
    return j->n_declined ? "only nodes that declined it have room" : NULL;
}

/* Fail j, queued past its deadline, with its waiting reason. */
static int queue_fail(rz_engine *e, rz__ejob *j)
{
    uint64_t t = j->queue_timeout_ms ? j->queue_timeout_ms
                                     : e->opts.queue_timeout_ms;
    int rc = rz__engine_why_refresh(e, j->req_group, true);
    if (rc != RZ_OK)
        return rc;
    const char *why = rz__engine_waiting_reason(j);
    char *msg = rz__asprintf("no node could run it within %llu s: %s",
                             (unsigned long long)((t + 999) / 1000),
                             why ? why : "no node took it in time");
    if (!msg)
        return rz__error(RZ_ENOMEM, "out of memory");
    j->queue_deadline = 0;
    if (j->deployment) {
        rz__edep *d = rz__engine_dep(e, j->deployment);
        rc = rz__engine_dep_report(e, j, NULL, msg, e->now);
        if (rc == RZ_OK && d)
            rc = rz__engine_dep_advance(e, d, e->now);
    } else {
        free(j->error);
        j->error = msg;
        msg = NULL;
        rz__engine_finish(e, j, RZ_JOB_FAILED, RZ__OWE_REFUND);
    }
    free(msg);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Calls fn(e, j, arg) for every live queued entry. */
static void each_queued(rz_engine *e, void (*fn)(rz__ejob *, void *), void *arg)
{
    for (size_t i = 0; i < e->n_queued_groups; i++) {
        const rz__req_group *g = e->queued_groups[i];
        for (size_t k = 0; k < g->q_len; k++) {
            rz__ejob *j = rz__engine_job(e, g->q[k].job);
            if (j && j->state == RZ_JOB_QUEUED && j->queue_gen == g->q[k].gen)
                fn(j, arg);
        }
    }
}

typedef struct due_list {
    uint64_t now, next, *ids;
    size_t n, cap;
    bool failed;
} due_list;

static void collect_due(rz__ejob *j, void *arg)
{
    due_list *l = arg;
    if (!j->queue_deadline)
        return;
    if (j->queue_deadline > l->now) {
        if (j->queue_deadline < l->next)
            l->next = j->queue_deadline;
        return;
    }
    if (!rz__engine_grow((void **)&l->ids, &l->cap, l->n + 1, sizeof *l->ids))
        l->failed = true;
    else
        l->ids[l->n++] = j->id;
}

int rz__engine_queue_expire(rz_engine *e)
{
    if (e->now < e->queue_next)
        return RZ_OK;
    due_list l = { .now = e->now, .next = UINT64_MAX };
    each_queued(e, collect_due, &l);
    e->queue_next = l.next;   /* failing a step below may lower it again */
    if (l.failed) {
        e->queue_next = e->now;
        free(l.ids);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    /* Failing a step may queue others: collect first, then fail in id
     * order, so the outcome does not depend on heap layout. */
    if (l.n)
        qsort(l.ids, l.n, sizeof *l.ids, cmp_u64);
    int rc = RZ_OK;
    for (size_t i = 0; i < l.n && rc == RZ_OK; i++) {
        rz__ejob *j = rz__engine_job(e, l.ids[i]);
        if (j->state == RZ_JOB_QUEUED)
            rc = queue_fail(e, j);
    }
    free(l.ids);
    return rc;
}

uint64_t rz__engine_queue_next(const rz_engine *e)
{
    return e->queue_next;
}
