/* Group commit (rz_engine_group_begin .. rz_engine_group_commit): the
 * calls of one server pass change memory only, and the commit makes them
 * durable at once.
 *
 * Crash story: a submission's hold is checked when it is made (the ledger's
 * balance less what the group holds already) and written at the commit,
 * in batches, before the LMDB transaction that stores its job. A crash
 * before that transaction leaves holds without jobs: rz_engine_open
 * refunds them (refund_orphans in engine.c, which looks
 * RZ__GROUP_HOLDS_MAX ids past a gap). Invariants:
 * - hold ids follow job ids: the group's holds are written before any
 *   other hold of a later job (rz__engine_group_flush first);
 * - a hold the ledger refuses at the commit fails its job with nothing
 *   owed and max_cost 0 (rz_engine_check knows the mark);
 * - a failed write leaves the engine broken: memory is ahead of disk,
 *   and only a reopen brings them together.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine_impl.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

int rz_engine_group_begin(rz_engine *e)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    if (e->in_group)
        return rz__error(RZ_ESTATE, "a group is open already");
    /* What finished by the last commit leaves memory here, as at the start
     * of a call outside a group: a caller whose every call is in a group
     * (the embedded runner) would otherwise keep every finished job. */
    rz__engine_evict(e);
    e->in_group = true;
    return RZ_OK;
}

int rz_engine_in_group(const rz_engine *e)
{
    return e && e->in_group;
}

uint64_t rz_engine_group_pending(const rz_engine *e, rz_ledger_id client)
{
    for (size_t i = 0; e && e->in_group && i < e->n_group_sums; i++)
        if (rz_ledger_id_equal(e->group_sums[i].client, client))
            return e->group_sums[i].micros;
    return 0;
}

static rz__group_sum *group_sum_of(rz_engine *e, rz_ledger_id client)
{
    for (size_t i = 0; i < e->n_group_sums; i++)
        if (rz_ledger_id_equal(e->group_sums[i].client, client))
            return &e->group_sums[i];
    if (!rz__engine_grow((void **)&e->group_sums, &e->cap_group_sums,
                         e->n_group_sums + 1, sizeof *e->group_sums))
        return NULL;
    e->group_sums[e->n_group_sums] = (rz__group_sum){ client, 0 };
    return &e->group_sums[e->n_group_sums++];
}

/* What the ledger would answer to the hold of `amount` more, counting the
 * group's holds not written yet and the roll-overs owed, paid at the
 * commit (the checks of a HOLD op: a client account, what is available). */
static int group_precheck(rz_engine *e, rz_ledger_id client, uint64_t amount,
                          rz__group_sum **sum)
{
    rz_ledger_account a;
    char h[33];
    int rc = rz_ledger_balance(e->ledger, client, &a);
    rz_ledger_id_format(client, h);
    if (rc == RZ_ENOENT)
        return rz__error(RZ_ENOENT, "no account %s", h);
    if (rc != RZ_OK)
        return rc;
    if (a.kind != RZ_LEDGER_CLIENT)
        return rz__error(RZ_EINVAL, "account %s is of the wrong kind (%u)", h,
                         a.kind);
    if (!(*sum = group_sum_of(e, client)))
        return no_memory();
    if ((*sum)->micros > UINT64_MAX - amount)
        return rz__error(RZ_EOVERFLOW, "account %s: the hold overflows", h);
    return (a.flags & RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS)
         ? rz__engine_cover(e, client, amount) : RZ_OK;
}

/* Hold for a job submitted inside a group: checked now, written by
 * rz__engine_group_flush (at the latest at the commit). */
int rz__engine_group_hold(rz_engine *e, rz__ejob *j)
{
    rz__group_sum *sum = NULL;
    int rc = group_precheck(e, j->client, j->max_cost, &sum);
    if (rc != RZ_OK)
        return rc;
    if (!rz__engine_grow((void **)&e->group_holds, &e->cap_group_holds,
                         e->n_group_holds + 1, sizeof *e->group_holds))
        return no_memory();
    e->group_holds[e->n_group_holds++] = j->id;
    sum->micros += j->max_cost;
    return RZ_OK;
}

/* The ledger refused a deferred hold (money left the account outside the
 * engine since the check): the job never held anything, so it fails with
 * nothing owed and a maximum of 0 (rz_engine_check knows the mark). */
static void hold_refused(rz_engine *e, rz__ejob *j, int status)
{
    char why[160];
    snprintf(why, sizeof why, "its hold was refused at the group commit: %s",
             rz_strerror(status));
    rz__engine_unplace(e, j, true);
    free(j->error);
    j->error = rz__strdup(why);
    j->max_cost = 0;
    rz__engine_finish(e, j, RZ_JOB_FAILED, RZ__OWE_NONE);
}

static int flush_chunk(rz_engine *e, const uint64_t *ids, size_t n)
{
    rz_ledger_op *ops = rz__calloc(n, sizeof *ops);
    rz_ledger_result *res = rz__calloc(n, sizeof *res);
    int rc = ops && res ? RZ_OK : no_memory();
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        const rz__ejob *j = rz__engine_job(e, ids[i]);
        ops[i].type = RZ_LEDGER_OP_HOLD;
        ops[i].id = rz__engine_hold_id(j->id);
        ops[i].job = rz_engine_job_ledger_id(j->id);
        ops[i].account = j->client;
        ops[i].amount = j->max_cost;
    }
    if (rc == RZ_OK)
        rc = rz_ledger_submit(e->ledger, ops, n, res);
    for (size_t i = 0; rc == RZ_OK && i < n; i++)
        if (res[i].status != RZ_OK)
            hold_refused(e, rz__engine_job(e, ids[i]), res[i].status);
    free(ops);
    free(res);
    return rc;
}

int rz__engine_group_flush(rz_engine *e)
{
    int rc = RZ_OK;
    for (size_t done = 0; rc == RZ_OK && done < e->n_group_holds;) {
        size_t n = e->n_group_holds - done;
        if (n > RZ__GROUP_HOLDS_MAX)
            n = RZ__GROUP_HOLDS_MAX;
        rc = flush_chunk(e, e->group_holds + done, n);
        done += n;
    }
    if (rc != RZ_OK)
        e->broken = true;   /* jobs in memory without their holds */
    e->n_group_holds = e->n_group_sums = 0;
    return rc;
}

int rz_engine_group_commit(rz_engine *e)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    if (!e->in_group)
        return rz__error(RZ_ESTATE, "no group is open");
    e->in_group = false;
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    int rc = rz__engine_group_flush(e);
    if (rc == RZ_OK)
        rc = rz__engine_commit_call(e, RZ_OK);
    return rc;
}
