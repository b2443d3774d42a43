/* The queue: queued jobs kept per requirement group (rz__req_group, shared
 * by jobs with equal requirements), each group a binary heap on (priority
 * desc, id asc) with lazy deletion, and the pass that places them.
 *
 * Memory only: on open, resume() in engine.c pushes every QUEUED job again,
 * so a crash loses nothing the job records do not say. Invariants:
 * - a QUEUED job has one live entry, in its group's heap: the entry whose
 *   generation equals the job's queue_gen; every other entry is stale and
 *   dropped when it reaches the top, or when the heap has doubled;
 * - e->queued_groups lists exactly the groups whose heap is not empty
 *   (between passes: a pass may empty a group and drops it at its end);
 * - the order of placement depends only on (priority, id), never on memory
 *   addresses or hash order, so a replay with the same calls places alike.
 */
#include <stdlib.h>

#include "engine/engine_impl.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

static bool heap_before(const rz__heap_ent *a, const rz__heap_ent *b)
{
    return a->priority != b->priority ? a->priority > b->priority : a->job < b->job;
}

static void sift_down(rz__heap_ent *h, size_t n, size_t i)
{
    rz__heap_ent x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&h[c + 1], &h[c]))
            c++;
        if (!heap_before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_up(rz__heap_ent *h, size_t i)
{
    rz__heap_ent x = h[i];
    while (i > 0 && heap_before(&x, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static rz__heap_ent heap_pop(rz__req_group *g)
{
    rz__heap_ent top = g->q[0];
    g->q[0] = g->q[--g->q_len];
    if (g->q_len)
        sift_down(g->q, g->q_len, 0);
    return top;
}

static bool heap_live(rz_engine *e, const rz__heap_ent *h)
{
    const rz__ejob *j = rz__engine_job(e, h->job);
    return j && j->state == RZ_JOB_QUEUED && j->queue_gen == h->gen;
}

/* Drop stale entries: the whole heap when it has doubled since the last
 * time (amortised O(1) a push), else those on top. */
static void group_prune(rz_engine *e, rz__req_group *g, bool all)
{
    if (all) {
        size_t k = 0;
        for (size_t i = 0; i < g->q_len; i++)
            if (heap_live(e, &g->q[i]))
                g->q[k++] = g->q[i];
        g->q_len = k;
        for (size_t i = k / 2; i-- > 0;)
            sift_down(g->q, k, i);
        g->q_prune_at = k * 2 > 1024 ? k * 2 : 1024;
    }
    while (g->q_len && !heap_live(e, &g->q[0]))
        heap_pop(g);
}

void rz__engine_queue_drop(rz_engine *e, const rz__req_group *g)
{
    for (size_t i = 0; i < e->n_queued_groups; i++)
        if (e->queued_groups[i] == g) {
            e->queued_groups[i] = e->queued_groups[--e->n_queued_groups];
            return;
        }
}

bool rz__engine_queue_push(rz_engine *e, const rz__ejob *j)
{
    rz__req_group *g = j->req_group;
    if (!g->q_len &&
        !rz__engine_grow((void **)&e->queued_groups, &e->cap_queued_groups,
                         e->n_queued_groups + 1, sizeof *e->queued_groups))
        return false;
    if (g->q_len + 1 >= g->q_prune_at)
        group_prune(e, g, true);
    if (!rz__engine_grow((void **)&g->q, &g->q_cap, g->q_len + 1, sizeof *g->q))
        return false;
    if (!g->q_len)
        e->queued_groups[e->n_queued_groups++] = g;
    if (j->queue_deadline && j->queue_deadline < e->queue_next)
        e->queue_next = j->queue_deadline;
    g->q[g->q_len] = (rz__heap_ent){ j->priority, j->id, j->queue_gen };
    sift_up(g->q, g->q_len++);
    return true;
}

/* j waits in its group's queue from now: its queue deadline starts. */
static void queue_start(rz_engine *e, rz__ejob *j)
{
    j->queue_gen++;
    j->queued_ms = e->now;
    uint64_t t = j->queue_timeout_ms ? j->queue_timeout_ms
                                     : e->opts.queue_timeout_ms;
    j->queue_deadline = t ? e->now + t : 0;
    rz__engine_touch_job(e, j);
    e->assign_dirty = true;
}

int rz__engine_enqueue(rz_engine *e, rz__ejob *j)
{
    /* Room first: out of memory leaves the job as it was, not queued in
     * its state but in no queue. */
    rz__req_group *g = j->req_group;
    if (!rz__engine_grow((void **)&e->queued_groups, &e->cap_queued_groups,
                         e->n_queued_groups + 1, sizeof *e->queued_groups) ||
        !rz__engine_grow((void **)&g->q, &g->q_cap, g->q_len + 1, sizeof *g->q))
        return no_memory();
    j->state = RZ_JOB_QUEUED;
    j->attempt++;
    j->node = 0;
    j->held = rz__engine_job_paused(e, j);
    if (j->held) {   /* the resume queues it (rz__engine_queue_pause_sync) */
        j->queue_gen++;
        j->queue_deadline = 0;
        rz__engine_touch_job(e, j);
        return RZ_OK;
    }
    queue_start(e, j);
    if (!rz__engine_queue_push(e, j))
        return no_memory();
    /* Only the waiting reason's text: out of memory leaves it stale until
     * the next refresh, and the job queued (failing here would queue it
     * twice, its attempt counted twice). */
    (void)rz__engine_why_refresh(e, j->req_group, false);
    return RZ_OK;
}

int rz__engine_queue_reserve(rz_engine *e, rz__req_group *g, size_t n)
{
    if (!rz__engine_grow((void **)&e->queued_groups, &e->cap_queued_groups,
                         e->n_queued_groups + 1, sizeof *e->queued_groups) ||
        !rz__engine_grow((void **)&g->q, &g->q_cap, g->q_len + n, sizeof *g->q) ||
        !rz__engine_grow((void **)&e->dirty_jobs, &e->cap_dirty_jobs,
                         e->n_dirty_jobs + n, sizeof *e->dirty_jobs))
        return no_memory();
    /* Fresh now, so the enqueues' refresh has nothing to allocate. */
    return rz__engine_why_refresh(e, g, false);
}

/* Hold the queued jobs of paused deployments (out of every heap: the
 * generation moves on, so their entries are stale; their queue deadline
 * stops, and the record says so, so a reopen holds them too) and queue
 * again those whose deployment resumed (in (priority, id) order as the
 * heap always is; their deadline starts again). Room is made first, so
 * nothing fails half way. O(live jobs): pause and resume are rare. */
int rz__engine_queue_pause_sync(rz_engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        rz__ejob *j = e->jobs[i];
        if (j->state == RZ_JOB_QUEUED && j->held && !rz__engine_job_paused(e, j))
            n++;
    }
    if (n && !rz__engine_grow((void **)&e->queued_groups, &e->cap_queued_groups,
                              e->n_queued_groups + n, sizeof *e->queued_groups))
        return no_memory();
    for (size_t i = 0; n && i < e->n_live_jobs; i++) {
        rz__ejob *j = e->jobs[i];
        if (j->state == RZ_JOB_QUEUED && j->held && !rz__engine_job_paused(e, j)) {
            int rc = rz__engine_queue_reserve(e, j->req_group, n);
            if (rc != RZ_OK)
                return rc;
        }
    }
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        rz__ejob *j = e->jobs[i];
        if (j->state != RZ_JOB_QUEUED || j->held == rz__engine_job_paused(e, j))
            continue;
        j->held = !j->held;
        if (j->held) {
            j->queue_gen++;
            j->queue_deadline = 0;
            rz__engine_touch_job(e, j);
        } else {
            queue_start(e, j);
            (void)!rz__engine_queue_push(e, j);   /* room was made above */
        }
    }
    return RZ_OK;
}

/* Groups ordered by their best queued job, for merging them. */
static bool group_before(const rz__req_group *a, const rz__req_group *b)
{
    return heap_before(&a->q[0], &b->q[0]);
}

static void order_push(rz__req_group **h, size_t *n, rz__req_group *g)
{
    size_t i = (*n)++;
    while (i > 0 && group_before(g, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = g;
}

static rz__req_group *order_pop(rz__req_group **h, size_t *n)
{
    rz__req_group *top = h[0], *x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && group_before(h[c + 1], h[c]))
            c++;
        if (!group_before(h[c], x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

/* Place queued jobs in priority order while nodes have room: the groups'
 * heaps merged by their best job. A job that fits nowhere ends its group's
 * turn (its other jobs ask for the same, and capacity only shrinks during
 * a pass), unless it declined nodes of its own: then the next one is
 * offered. So a pass costs O(groups + placements), not O(queue). */
int rz__engine_assign_all(rz_engine *e)
{
    if (!e->assign_dirty || !e->n_queued_groups)
        return RZ_OK;
    rz__req_group **order = rz__malloc(e->n_queued_groups * sizeof *order);
    if (!order)
        return no_memory();
    size_t n = 0;
    for (size_t i = 0; i < e->n_queued_groups;) {
        rz__req_group *g = e->queued_groups[i];
        group_prune(e, g, false);
        if (!g->q_len) {
            e->queued_groups[i] = e->queued_groups[--e->n_queued_groups];
            continue;
        }
        order_push(order, &n, g);
        i++;
    }
    int rc = RZ_OK;
    rz__heap_ent *aside = NULL;   /* declined jobs that did not fit */
    size_t n_aside = 0, cap_aside = 0;
    while (n && rc == RZ_OK) {
        rz__req_group *g = order_pop(order, &n);
        rz__heap_ent h = heap_pop(g);
        rz__ejob *j = rz__engine_job(e, h.job);
        int prc = rz__engine_assign_one(e, j);
        if (prc != RZ_OK) {
            if (prc != RZ_ENOENT)
                rc = prc;
            else
                rc = rz__engine_why_refresh(e, g, true);
            if (j->n_declined && rc == RZ_OK &&
                rz__engine_grow((void **)&aside, &cap_aside, n_aside + 1,
                                sizeof *aside)) {
                aside[n_aside++] = h;
            } else {
                g->q[g->q_len] = h;   /* room was there before the pop */
                sift_up(g->q, g->q_len++);
                continue;             /* this group's turn is over */
            }
        }
        group_prune(e, g, false);
        if (g->q_len)
            order_push(order, &n, g);
    }
    for (size_t i = 0; i < n_aside; i++) {
        rz__req_group *g = rz__engine_job(e, aside[i].job)->req_group;
        g->q[g->q_len] = aside[i];   /* popped from this heap: room is there */
        sift_up(g->q, g->q_len++);
    }
    for (size_t i = 0; i < e->n_queued_groups;) {
        if (!e->queued_groups[i]->q_len)
            e->queued_groups[i] = e->queued_groups[--e->n_queued_groups];
        else
            i++;
    }
    free(aside);
    free(order);
    if (rc == RZ_OK)
        e->assign_dirty = false;
    return rc;
}
