/* for_each elements as jobs made mid-deployment.
 *
 * A deployment's steps are jobs made and held at deploy. A for_each step's
 * elements are known only when it may run, so the run (lib/run) makes them
 * then, as tasks past the steps; here each new task gets a job of its own,
 * with its own hold, like a step's. Durability follows from the engine's
 * commit: the jobs are written, and their holds taken, in the same call as
 * the step event that made the run expand. A crash before that commit
 * leaves holds for job ids past the last committed one, which the next
 * open refunds (refund_orphans); the event is then not in the log, so the
 * elements are made again, once, with new ids and new holds. A crash after
 * it finds the jobs' records: the replay makes the same tasks in the same
 * order and rz__engine_fan_out_rebuild gives each its job back. Either way
 * an element is held and charged once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "flow/model.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

rz__ejob *rz__engine_task_job(const rz_engine *e, const rz__edep *d, size_t task)
{
    if (task < d->n_steps)
        return rz__engine_job(e, d->first_job + task);
    size_t k = task - d->n_steps;
    return k < d->n_el_jobs && d->el_jobs[k] ? rz__engine_job(e, d->el_jobs[k])
                                             : NULL;
}

/* Holds of jobs [first, first + n), linked per ledger batch; the balance is
 * checked first so that batches past the first cannot be refused for
 * funds (the engine is the ledger's only writer). */
static int hold_elements(rz_engine *e, const rz__edep *d, uint64_t first, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t m = rz__engine_job(e, first + i)->max_cost;
        if (m > UINT64_MAX - sum)
            return rz__error(RZ_EOVERFLOW, "the elements' holds overflow 64 bits");
        sum += m;
    }
    /* A group's holds go to the ledger first: hold ids follow job ids, and
     * the jobs submitted before these must not lose their money to them. */
    int rc = e->in_group ? rz__engine_group_flush(e) : RZ_OK;
    if (rc == RZ_OK && e->local.dep == d->id)
        rc = rz__engine_local_credit(e, d, sum, first);
    uint64_t have = 0;
    if (rc == RZ_OK)
        rc = rz__engine_available(e, d->client, 0, &have);
    if (rc == RZ_OK && have < sum)
        return rz__error(RZ_EFUNDS, "%zu for_each elements need %llu micros "
                         "held; %llu available", n, (unsigned long long)sum,
                         (unsigned long long)have);
    size_t cap = n < RZ_LEDGER_BATCH_MAX ? n : RZ_LEDGER_BATCH_MAX;
    rz_ledger_op *ops = rz__calloc(cap, sizeof *ops);
    rz_ledger_result *res = rz__calloc(cap, sizeof *res);
    if (rc == RZ_OK && (!ops || !res))
        rc = no_memory();
    for (size_t from = 0; rc == RZ_OK && from < n; from += cap) {
        size_t k = n - from < cap ? n - from : cap;
        for (size_t i = 0; i < k; i++) {
            const rz__ejob *j = rz__engine_job(e, first + from + i);
            ops[i] = (rz_ledger_op){0};
            ops[i].type = RZ_LEDGER_OP_HOLD;
            ops[i].flags = i + 1 < k ? RZ_LEDGER_LINKED : 0;
            ops[i].id = rz__engine_hold_id(j->id);
            ops[i].job = rz_engine_job_ledger_id(j->id);
            ops[i].account = d->client;
            ops[i].amount = j->max_cost;
        }
        rc = rz_ledger_submit(e->ledger, ops, k, res);
        for (size_t i = 0; rc == RZ_OK && i < k; i++)
            if (res[i].status != RZ_OK && res[i].status != RZ_ELINKED)
                rc = rz__error(res[i].status, "cannot hold %llu micros for a "
                               "for_each element: %s",
                               (unsigned long long)ops[i].amount,
                               rz_strerror(res[i].status));
        if (rc != RZ_OK && from > 0)
            e->broken = true;   /* earlier holds stand: reopen refunds them */
    }
    free(ops);
    free(res);
    return rc;
}

/* The holds were refused: every map that made elements in [from, to) fails
 * (recorded, so a replay fails it too); its tasks keep no job. */
static int fail_maps(rz_engine *e, rz__edep *d, size_t from, size_t to,
                     uint64_t now)
{
    char why[sizeof rz_error_last()->message + 48];
    snprintf(why, sizeof why, "cannot hold its for_each elements: %s",
             rz_error_last()->message);
    int rc = RZ_OK;
    size_t last = RZ_NPOS;
    for (size_t t = from; rc == RZ_OK && t < to; t++) {
        size_t p = rz_run_task_step(d->run, t, NULL);
        if (p == last || rz_run_step_state(d->run, p) != RZ_STEP_RUNNING)
            continue;
        last = p;
        rc = rz_run_fail(d->run, p, why, now);
        if (rc == RZ_OK)
            rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_FAIL, p, now, why);
    }
    return rc;
}

int rz__engine_fan_out(rz_engine *e, rz__edep *d, uint64_t now)
{
    size_t have = d->n_steps + d->n_el_jobs, want = rz_run_task_count(d->run);
    d->fan_due = want > have;   /* until they are made */
    if (want <= have)
        return RZ_OK;
    size_t n = want - have;
    if (!rz__engine_grow((void **)&d->el_jobs, &d->cap_el_jobs, d->n_el_jobs + n,
                         sizeof *d->el_jobs))
        return no_memory();
    size_t before = e->n_jobs;
    uint64_t first = e->n_jobs + 1;
    int rc = RZ_OK;
    for (size_t t = have; rc == RZ_OK && t < want; t++) {
        size_t p = rz_run_task_step(d->run, t, NULL);
        rz__ejob *j = rz__engine_job_new(e);
        rc = j ? rz__engine_step_job_fill(e, j, d, &d->flow->steps[p], t, now)
               : no_memory();
    }
    if (rc == RZ_OK)
        rc = hold_elements(e, d, first, n);
    if (e->broken)
        return rc;
    if (rc == RZ_ENOMEM) {
        /* Nothing held (a refused batch past the first breaks the engine):
         * the new jobs go, their ids stay in sequence, and the next call
         * makes the elements again (n_el_jobs did not move). */
        rz__engine_jobs_truncate(e, before);
        return rc;
    }
    if (rc != RZ_OK) {
        rz__engine_jobs_truncate(e, before);
        memset(d->el_jobs + d->n_el_jobs, 0, n * sizeof *d->el_jobs);
        d->n_el_jobs += n;
        d->fan_due = false;
        return fail_maps(e, d, have, want, now);
    }
    for (size_t k = 0; k < n; k++) {
        d->el_jobs[d->n_el_jobs++] = first + k;
        rz__engine_touch_job(e, rz__engine_job(e, first + k));   /* written now */
    }
    d->fan_due = false;
    return RZ_OK;
}

int rz__engine_fan_out_rebuild(rz_engine *e, rz__edep *d)
{
    size_t n = rz_run_task_count(d->run) - d->n_steps;
    d->n_el_jobs = 0;
    if (!n)
        return RZ_OK;
    if (!rz__engine_grow((void **)&d->el_jobs, &d->cap_el_jobs, n, sizeof *d->el_jobs))
        return no_memory();
    memset(d->el_jobs, 0, n * sizeof *d->el_jobs);
    d->n_el_jobs = n;
    /* Element jobs come after the deployment's steps, in task order. */
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        const rz__ejob *j = e->jobs[i];
        if (j->deployment != d->id || j->step < d->n_steps)
            continue;
        size_t k = j->step - d->n_steps;
        if (k >= n || d->el_jobs[k])
            return rz__error(RZ_EDB, "deployment %llu: job %llu is element task "
                             "%zu, which the run did not make", (unsigned long long)d->id,
                             (unsigned long long)j->id, j->step);
        d->el_jobs[k] = j->id;
    }
    /* The last expansion's jobs may never have been made: memory ran out
     * in the call whose event made it (its commit kept the event), and a
     * crash came before a call made them. Such elements are the last ones,
     * and their map still runs (a refused hold failed its map instead):
     * the next tick makes their jobs. */
    while (d->n_el_jobs && !d->el_jobs[d->n_el_jobs - 1] &&
           rz_run_step_state(d->run, rz_run_task_step(d->run, d->n_steps +
                                                      d->n_el_jobs - 1, NULL))
               == RZ_STEP_RUNNING) {
        d->n_el_jobs--;
        d->fan_due = true;
    }
    return RZ_OK;
}

int rz_engine_job_task(const rz_engine *e, uint64_t job, size_t *task)
{
    if (task)
        *task = (size_t)-1;
    const rz__ejob *j = e && task ? rz__engine_job(e, job) : NULL;
    const rz__edep *d = j && j->deployment ? rz__engine_dep(e, j->deployment) : NULL;
    if (!d || !d->run)
        return rz__error(RZ_ENOENT, "job %llu is no job of a running deployment",
                         (unsigned long long)job);
    *task = j->step;
    return RZ_OK;
}

size_t rz_engine_deployment_element_jobs(const rz_engine *e, uint64_t deployment,
                                         uint64_t *jobs, size_t cap)
{
    const rz__edep *d = e ? rz__engine_dep(e, deployment) : NULL;
    if (!d || !d->run)
        return 0;
    size_t n = 0;
    for (size_t k = 0; k < d->n_el_jobs; k++)
        if (d->el_jobs[k]) {
            if (jobs && n < cap)
                jobs[n] = d->el_jobs[k];
            n++;
        }
    return n;
}
