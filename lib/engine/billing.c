/* Billing by time: a service step with a `budget` (docs/services.md).
 *
 * Such a step's job holds one interval at a time, never the whole run:
 * max_cost is H = ceil(rate x interval_s / 3600) micros. Interval 1's
 * hold is the job's own (made at deploy like any step's); interval k > 1
 * has a hold of its own, {IV_HOLD, job << 24 | k}. The interval runs on
 * the engine's clock from the moment a node took the attempt (iv_start);
 * when interval_s have passed (rz__bill_tick, from rz_engine_tick) the
 * engine either
 *   - rolls over: interval k is paid in full at the node's price for
 *     interval_s (at most H; rounded up over the run, not per interval:
 *     price) to the node running it, by a SETTLE of k's
 *     hold with id {IV_SETTLE, job << 24 | k}, and interval k + 1 is held
 *     from the client's balance; or
 *   - stops the service, when the budget's hours are spent or the
 *     balance cannot hold interval k + 1: interval k is paid as the job's
 *     final settlement, the node is told to stop it, and the step fails
 *     for good (a STOP step event: no restart) with the reason, which the
 *     flow's status shows.
 * The last interval of a service that ends by itself (it exits 0) is paid
 * pro rata for what ran of it; one that fails, is cancelled or whose node
 * is lost pays nothing for its unfinished interval, as a failed batch job
 * pays nothing: its hold carries over to the next attempt (a restart) or
 * is refunded at the end.
 *
 * Invariants (rz__bill_check, so rz_engine_check):
 *   B1 a job billed by time has exactly one open hold while it is open:
 *      interval iv's, of H micros (interval iv - 1's instead while their
 *      roll-over is owed);
 *   B2 intervals 1 .. iv - 1 are settled, each exactly once: their holds
 *      are posted and their postings add up to iv_paid_micros, each
 *      posting at most H; a finished job's last hold is posted at its cost
 *      (paid) or voided, as any job's;
 *   B3 money only moves by the ledger's SETTLE (payout + 5% fee = the
 *      interval's cost, double entry) and HOLD/REFUND: the ledger's own
 *      verify holds;
 *   B4 a job retention removed has no hold open, of any interval (read
 *      from the ledger alone: rz__bill_open_hold).
 *
 * Crash story (kill -9 of the orchestrator at any point): a roll-over is
 * decided and committed to the engine's store as owed (iv advanced,
 * iv_owed set, with the amount and the node) before the ledger is
 * touched, then paid (rz__bill_pay, first of the call's payments). A
 * crash before that commit leaves the store at interval k: the reopened
 * engine decides the same roll-over again from the stored iv_start. A
 * crash after it pays on open (resume) what is owed, with the same ids
 * and amounts: the ledger takes a replayed id as done, so interval k is
 * settled once and k + 1 held once, whichever side of the ledger's commit
 * the crash fell. Interval numbers run on across attempts, so the key
 * (job, k) names one (attempt, interval) and no two attempts can settle
 * the same k. Nothing a roll-over pays comes from memory-only state: the
 * amount is the node's price for interval k, the node the one the
 * store says held the job. The roll-over is decided only if the client's
 * balance after k's settlement, less what this call's other roll-overs
 * and an open group take, covers k + 1's hold, and every later hold and
 * withdrawal leaves what is owed (rz__engine_available); yet the hold can
 * still be refused when it is paid: a group pays at its commit, after
 * writers outside the engine (the ledger used directly) took the
 * balance. Then k stands as settled (the batch is not linked) and the job
 * stops there, exhausted, as if the balance had been short at the
 * decision (refused): nothing owed, committed before
 * any other payment. A crash before that commit pays again on open: k's
 * settlement replays, and k + 1 is held (the balance came back) or
 * refused and stopped again; either way each interval is paid once.
 *
 * An interval is paid only once its node was heard from (a heartbeat or
 * a poll: `heard`, not the grace a reopen gives every node) at or after
 * its end: a node that went silent during it is lost before it is paid,
 * and the interval runs again on the next attempt.
 *
 * While the orchestrator is down the service runs on: once its node is
 * heard from again, the reopened engine bills the intervals that passed,
 * one per call, each in full (the node ran them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"
#include "flow/model.h"
#include "match/match_impl.h"
#include "run/service.h"

#define IV_BITS 24
#define IV_MAX ((1u << IV_BITS) - 1u)            /* intervals of one job */
_Static_assert(IV_MAX == RZ__BUDGET_INTERVALS_MAX, "budgets are refused at load past it");
#define IV_JOB_MAX (UINT64_MAX >> IV_BITS)       /* job ids it can key */

static rz_ledger_id iv_id(int kind, uint64_t job, uint32_t k)
{
    return rz_ledger_id_make(RZ__EID(kind), job << IV_BITS | k);
}

rz_ledger_id rz__bill_hold_id(uint64_t job, uint32_t k)
{
    return k <= 1 ? rz__engine_hold_id(job) : iv_id(RZ__EID_IV_HOLD, job, k);
}

/* Interval k + 1 is held only with k's settlement (rz__bill_pay), so a
 * job's holds are 1, 2, ... with no gap: the first id missing ends them.
 * Any job may be read so (one billed by time or not: its interval ids
 * are free), but for ids past IV_JOB_MAX, whose interval ids alias. */
int rz__bill_open_hold(const rz_engine *e, uint64_t job, uint32_t *open)
{
    *open = 0;
    uint32_t last = job > IV_JOB_MAX ? 1 : IV_MAX;
    for (uint32_t k = 1; k <= last; k++) {
        rz_ledger_transfer t;
        int rc = rz_ledger_transfer_get(e->ledger, rz__bill_hold_id(job, k), &t);
        if (rc == RZ_ENOENT)
            break;
        if (rc != RZ_OK)
            return rc;
        if (t.state == RZ_LEDGER_OPEN) {
            *open = k;
            break;
        }
    }
    return RZ_OK;
}

/* The budget of j's step, if j is billed by time and its flow is loaded. */
static bool job_budget(const rz_engine *e, const rz__ejob *j, rz__budget *b,
                       rz__edep **dep)
{
    rz__edep *d = j->iv && j->deployment ? rz__engine_dep(e, j->deployment) : NULL;
    if (dep)
        *dep = d;
    return d && d->flow && j->step < d->n_steps &&
           rz__step_budget(&d->flow->steps[j->step], b);
}

int rz__bill_track(rz_engine *e, const rz__ejob *j)
{
    for (size_t i = 0; i < e->n_bill; i++)
        if (e->bill[i] == j->id)
            return RZ_OK;
    if (!rz__engine_grow((void **)&e->bill, &e->cap_bill, e->n_bill + 1,
                         sizeof *e->bill))
        return rz__error(RZ_ENOMEM, "out of memory");
    e->bill[e->n_bill++] = j->id;
    return RZ_OK;
}

void rz__bill_truncate(rz_engine *e, uint64_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < e->n_bill; i++)
        if (e->bill[i] <= n)
            e->bill[k++] = e->bill[i];
    e->n_bill = k;
}

int rz__bill_fill(rz_engine *e, rz__ejob *j, const rz__edep *d,
                  const rz__step *st)
{
    rz__budget b;
    if (d->flow_shared || !st->service || !rz__step_budget(st, &b))
        return RZ_OK;   /* embedded runs are not billed (zero prices) */
    if (j->id > IV_JOB_MAX)
        return rz__error(RZ_EOVERFLOW, "job %llu: too many jobs to bill by time",
                         (unsigned long long)j->id);
    /* Matched on one interval: a node whose price for interval_s is over
     * the interval's hold is over the budget's rate. */
    cJSON *r = cJSON_Parse(j->reqs_json ? j->reqs_json : "{}");
    cJSON *n = cJSON_CreateNumber(b.interval_s);
    char *text = NULL;
    if (cJSON_IsObject(r) && n) {
        cJSON_DeleteItemFromObjectCaseSensitive(r, "estimate_seconds");
        cJSON_DeleteItemFromObjectCaseSensitive(r, "max_cost_micros");   /* the step's */
        if (cJSON_AddItemToObject(r, "estimate_seconds", n))
            n = NULL;
        text = n ? NULL : cJSON_PrintUnformatted(r);
    }
    cJSON_Delete(n);
    cJSON_Delete(r);
    if (!text)
        return rz__error(RZ_ENOMEM, "out of memory");
    j->iv = 1;
    j->max_cost = rz__budget_interval_micros(&b);
    int rc = rz__engine_reqs_set(e, j, text, j->max_cost);
    cJSON_free(text);
    return rc == RZ_OK ? rz__bill_track(e, j) : rc;
}

/* The node's price for the first `ms` of j's interval iv (each `whole`
 * ms long), at most one interval's hold: its price for the time billed
 * through then less that up to the interval's start, so a run is rounded
 * up once, not once an interval (at 10,000 micros an hour, 1 s intervals
 * cost 3, 3, 3, 3, 2, ...: 10,000 an hour, not 10,800). Time billed counts
 * whole intervals, across attempts as their numbers do. */
static uint64_t price(rz_engine *e, const rz__ejob *j, uint64_t node,
                      uint64_t whole, uint64_t ms)
{
    rz__enode *n = rz__engine_node(e, node);
    if (!n || !j->reqs || !j->iv)
        return 0;
    unsigned __int128 rate = rz__match_rate(rz_caps_get(n->caps), rz_reqs_get(j->reqs));
    uint64_t before = (uint64_t)(j->iv - 1) * whole;   /* < 2^24 x 2^22 */
    uint64_t c = rz__match_cost(rate, before + ms) - rz__match_cost(rate, before);
    return c < j->max_cost ? c : j->max_cost;
}

uint64_t rz__bill_final_cost(rz_engine *e, const rz__ejob *j, uint64_t now)
{
    rz__budget b;
    if (!job_budget(e, j, &b, NULL) || !j->iv_running || now <= j->iv_start)
        return 0;
    uint64_t ms = now - j->iv_start, whole = (uint64_t)b.interval_s * 1000u;
    return price(e, j, j->node, whole, ms < whole ? ms : whole);
}

/* What the roll-overs decided in this call (owed, not yet paid) take from
 * `client`: each settles its interval out of its hold and holds the next,
 * so each spends its interval's cost. */
static uint64_t bill_owed(const rz_engine *e, rz_ledger_id client)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < e->n_bill; i++) {
        const rz__ejob *j = rz__engine_job(e, e->bill[i]);
        if (j && j->iv_owed && rz_ledger_id_equal(j->client, client))
            sum += j->iv_owed_micros;
    }
    return sum;
}

/* The one "available" of the engine's money: the ledger's (credits less
 * debits posted and held) plus `back` (a hold's remainder about to come
 * back), less what an open group holds at its commit and what decided
 * roll-overs owe (paid at the commit, after the pass's other requests).
 * Every hold the engine makes and every withdrawal (rz_engine_withdraw)
 * is checked against it, so none of them takes money a running service
 * already owes, and no caller subtracts anything of its own. */
int rz__engine_available(const rz_engine *e, rz_ledger_id client, uint64_t back,
                         uint64_t *out)
{
    *out = 0;
    rz_ledger_account a;
    int rc = rz_ledger_balance(e->ledger, client, &a);
    if (rc == RZ_ENOENT) {
        char h[33];
        rz_ledger_id_format(client, h);
        return rz__error(RZ_ENOENT, "no account %s", h);
    }
    if (rc != RZ_OK)
        return rc;
    uint64_t have = rz_ledger_available(&a);
    have = have > UINT64_MAX - back ? UINT64_MAX : have + back;
    uint64_t owed = bill_owed(e, client), pending = rz_engine_group_pending(e, client);
    uint64_t taken = owed > UINT64_MAX - pending ? UINT64_MAX : owed + pending;
    *out = have > taken ? have - taken : 0;
    return RZ_OK;
}

int rz__engine_cover(const rz_engine *e, rz_ledger_id client, uint64_t amount)
{
    uint64_t have;
    int rc = rz__engine_available(e, client, 0, &have);
    if (rc != RZ_OK || amount <= have)
        return rc;
    char h[33];
    rz_ledger_id_format(client, h);
    return rz__error(RZ_EFUNDS, "insufficient available: account %s has %llu "
                     "micros available (its funds less what is held, what "
                     "running services owe and what this pass holds), %llu needed",
                     h, (unsigned long long)have, (unsigned long long)amount);
}

int rz_engine_available(const rz_engine *e, rz_ledger_id client, uint64_t *micros)
{
    if (micros)
        *micros = 0;
    if (!e || !micros)
        return rz__error(RZ_EINVAL, "no engine or no out-param");
    return rz__engine_available(e, client, 0, micros);
}

int rz_engine_withdraw(rz_engine *e, rz_ledger_id id, rz_ledger_id account,
                       uint64_t micros)
{
    if (!e)
        return rz__error(RZ_EINVAL, "no engine");
    /* Memory is ahead of the disk: what it says is owed may not be (a
     * reopen decides again), so it cannot vouch for the balance. */
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    /* A replayed request is the ledger's to answer (it is held already). */
    rz_ledger_transfer t;
    int rc = rz_ledger_transfer_get(e->ledger, id, &t);
    if (rc == RZ_ENOENT)
        rc = micros ? rz__engine_cover(e, account, micros) : RZ_OK;
    else if (rc == RZ_OK)
        rz_error_clear();
    return rc == RZ_OK ? rz_ledger_withdraw_request(e->ledger, id, account, micros) : rc;
}

/* The client's balance once interval iv is settled at `cost` (its hold's
 * remainder back), as every hold sees it: what the next interval's hold
 * may come from. */
static int balance_after(rz_engine *e, const rz__ejob *j, uint64_t cost,
                         uint64_t *out)
{
    return rz__engine_available(e, j->client, j->max_cost - cost, out);
}

/* Stop j for good after interval iv (worth `cost`): its final settlement
 * (made already when `paid`), the node told to stop, the step failed with
 * `why` (recorded). */
static int stop(rz_engine *e, rz__ejob *j, rz__edep *d, uint64_t cost,
                bool paid, const char *why, uint64_t now)
{
    int rc = rz__engine_step_event_room(e);
    if (rc != RZ_OK)
        return rc;
    char *copy = rz__strdup(why), *event = rz__strdup(why);
    rc = copy && event ? rz__run_service_stop(d->run, j->step, why, now)
                       : rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        free(copy);
        free(event);
        return rc;
    }
    /* The event takes its text. */
    rz__engine_step_event_put(e, d, RZ__STEP_EVENT_STOP, j->step, now, event);
    free(j->error);
    j->error = copy;
    uint64_t node = j->node;
    rz__engine_unplace(e, j, true);
    j->node = node;
    j->run_ms = 0;
    rz__engine_finish(e, j, RZ_JOB_FAILED, paid ? RZ__OWE_NONE
                                          : cost ? RZ__OWE_SETTLE : RZ__OWE_REFUND);
    j->cost = cost;   /* after: finish zeroes a billed job's unsettled cost */
    return rz__engine_dep_advance(e, d, now);
}

static void money(char *buf, size_t cap, uint64_t micros)
{
    snprintf(buf, cap, "$%llu.%06llu", (unsigned long long)(micros / 1000000u),
             (unsigned long long)(micros % 1000000u));
}

static void exhausted(char *why, size_t cap, uint32_t iv, uint64_t paid_micros,
                      uint64_t have, uint64_t next_micros)
{
    char paid[32], bal[32], next[32];
    money(paid, sizeof paid, paid_micros);
    money(bal, sizeof bal, have);
    money(next, sizeof next, next_micros);
    snprintf(why, cap, "budget exhausted: %u intervals paid (%s); the balance "
             "(%s) cannot cover the next (%s)", iv, paid, bal, next);
}

/* Interval iv of j ended at iv_start + interval: roll over or stop. */
static int interval_end(rz_engine *e, rz__ejob *j, rz__edep *d,
                        const rz__budget *b, uint64_t now)
{
    uint64_t whole = (uint64_t)b->interval_s * 1000u;
    uint64_t cost = price(e, j, j->node, whole, whole);
    /* Past IV_MAX only a flow stored before load refused it (lower.c). */
    uint64_t last = b->hours ? (uint64_t)b->hours * 3600u / b->interval_s : IV_MAX;
    bool by_hours = last <= IV_MAX;
    if (!by_hours)
        last = IV_MAX;
    uint64_t have = 0;
    int rc = j->iv < last ? balance_after(e, j, cost, &have) : RZ_OK;
    if (rc != RZ_OK)
        return rc;
    char paid[32];
    money(paid, sizeof paid, j->iv_paid_micros + cost);
    if (j->iv >= last) {
        char why[256];
        if (by_hours && b->hours)
            snprintf(why, sizeof why, "budget spent: its %u hours ran out (%u "
                     "intervals paid, %s)", b->hours, j->iv, paid);
        else
            snprintf(why, sizeof why, "budget spent: a job is billed for at most "
                     "%u intervals (%s paid)", j->iv, paid);
        return stop(e, j, d, cost, false, why, now);
    }
    if (have < j->max_cost) {
        char why[256];
        exhausted(why, sizeof why, j->iv, j->iv_paid_micros + cost, have, j->max_cost);
        return stop(e, j, d, cost, false, why, now);
    }
    j->iv_owed = true;
    j->iv_owed_micros = cost;
    j->iv_owed_node = j->node;
    j->iv_paid_micros += cost;
    j->iv++;
    j->iv_start += whole;
    rz__engine_touch_job(e, j);
    return RZ_OK;
}

/* When j's interval ends; UINT64_MAX if no attempt runs it. */
static uint64_t iv_end(const rz__ejob *j, const rz__budget *b)
{
    return j->state == RZ_JOB_RUNNING && j->iv_running && !j->iv_owed
         ? j->iv_start + (uint64_t)b->interval_s * 1000u : UINT64_MAX;
}

/* Interval iv ended by `now` and its node was heard from since: a node
 * silent at the end of an interval is not paid for it (if it is lost,
 * the interval runs again on the next attempt). */
static bool due(const rz_engine *e, const rz__ejob *j, const rz__budget *b,
                uint64_t now)
{
    uint64_t end = iv_end(j, b);
    const rz__enode *n = rz__engine_node_const(e, j->node);
    return end <= now && n && n->heard >= end;
}

int rz__bill_tick(rz_engine *e, uint64_t now)
{
    int rc = RZ_OK;
    /* A stop advances its deployment, which may list more jobs: the list
     * is read again at each step and tidied after. */
    for (size_t i = 0; rc == RZ_OK && i < e->n_bill; i++) {
        rz__ejob *j = rz__engine_job(e, e->bill[i]);
        rz__edep *d;
        rz__budget b;
        if (j && job_budget(e, j, &b, &d) && due(e, j, &b, now) && d->run)
            rc = interval_end(e, j, d, &b, now);
    }
    /* Kept while open or owing an interval; gone ones leave. */
    size_t k = 0;
    for (size_t i = 0; i < e->n_bill; i++) {
        const rz__ejob *j = rz__engine_job(e, e->bill[i]);
        if (j && j->iv && (j->state < RZ_JOB_SUCCEEDED || j->iv_owed))
            e->bill[k++] = e->bill[i];
    }
    e->n_bill = k;
    return rc;
}

uint64_t rz__bill_next(const rz_engine *e)
{
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; i < e->n_bill; i++) {
        const rz__ejob *j = rz__engine_job(e, e->bill[i]);
        rz__budget b;
        if (!j || !job_budget(e, j, &b, NULL))
            continue;
        if (j->iv_owed)
            return 0;
        /* Past its end it waits for its node's word (a heartbeat is a
         * call; the node's loss has its own wake-up). */
        uint64_t w = iv_end(j, &b);
        const rz__enode *n = rz__engine_node_const(e, j->node);
        if (w != UINT64_MAX && n && (w > e->now || n->heard >= w))
            t = w < t ? w : t;
    }
    return t;
}

/* The ledger refused the hold of interval iv after iv - 1 was settled:
 * back to iv - 1, paid, and stopped there (see the opening comment). */
static int refused(rz_engine *e, rz__ejob *j)
{
    uint64_t cost = j->iv_owed_micros;
    if (j->state >= RZ_JOB_SUCCEEDED) {
        /* Ended since the decision (its deployment may be over, its run
         * gone): interval iv - 1 is its whole bill, settled just now; what
         * it ran of iv was never held. No clock to move back: it runs no
         * more. */
        j->iv--;
        j->iv_paid_micros -= cost;
        j->iv_owed = false;
        j->cost = cost;
        j->owed = RZ__OWE_NONE;
        rz__engine_touch_job(e, j);
        e->bill_stopped = true;
        return RZ_OK;
    }
    rz__edep *d;
    rz__budget b;
    if (!job_budget(e, j, &b, &d) || !d->run)
        return rz__error(RZ_EFUNDS, "job %llu: interval %u: %s", (unsigned long long)j->id,
                         j->iv, rz_strerror(RZ_EFUNDS));
    rz_ledger_account a;
    int rc = rz_ledger_balance(e->ledger, j->client, &a);
    if (rc != RZ_OK)
        return rc;
    j->iv--;
    j->iv_paid_micros -= cost;
    j->iv_owed = false;
    j->iv_start -= (uint64_t)b.interval_s * 1000u;
    char why[256];
    exhausted(why, sizeof why, j->iv, j->iv_paid_micros + cost, rz_ledger_available(&a),
              j->max_cost);
    /* The stop is dated at the paid interval's end at the earliest (open
     * pays before any call sets the clock). */
    uint64_t end = j->iv_start + (uint64_t)b.interval_s * 1000u;
    e->bill_stopped = true;
    return stop(e, j, d, cost, true, why, e->now > end ? e->now : end);
}

int rz__bill_pay(rz_engine *e)
{
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < e->n_bill; i++) {
        rz__ejob *j = rz__engine_job(e, e->bill[i]);
        if (!j || !j->iv_owed)
            continue;
        /* Interval iv - 1 settled, then iv held: one batch, in this order
         * (one open hold per job), not linked (a settled interval stands). */
        rz_ledger_op ops[2];
        rz_ledger_result res[2];
        memset(ops, 0, sizeof ops);
        ops[0].type = RZ_LEDGER_OP_SETTLE;
        ops[0].id = iv_id(RZ__EID_IV_SETTLE, j->id, j->iv - 1);
        ops[0].job = rz_engine_job_ledger_id(j->id);
        ops[0].pending_id = rz__bill_hold_id(j->id, j->iv - 1);
        ops[0].counterparty = rz_engine_node_account(j->iv_owed_node);
        ops[0].amount = j->iv_owed_micros;
        ops[1].type = RZ_LEDGER_OP_HOLD;
        ops[1].id = rz__bill_hold_id(j->id, j->iv);
        ops[1].job = rz_engine_job_ledger_id(j->id);
        ops[1].account = j->client;
        ops[1].amount = j->max_cost;
        /* A settlement of 0 (a free node) voids the hold instead. */
        if (!ops[0].amount) {
            ops[0].type = RZ_LEDGER_OP_REFUND;
            ops[0].counterparty = rz_ledger_id_make(0, 0);
        }
        rc = rz_ledger_submit(e->ledger, ops, 2, res);
        if (rc != RZ_OK)
            break;
        if (res[0].status == RZ_OK && res[1].status == RZ_EFUNDS) {
            rc = refused(e, j);
            continue;
        }
        for (int k = 0; k < 2 && rc == RZ_OK; k++)
            if (res[k].status != RZ_OK)
                rc = rz__error(res[k].status, "job %llu: interval %u: %s",
                               (unsigned long long)j->id, j->iv - (k == 0),
                               rz_strerror(res[k].status));
        if (rc == RZ_OK) {
            j->iv_owed = false;
            rz__engine_touch_job(e, j);
        }
    }
    return rc;
}

int rz__bill_stop_apply(rz_run *run, size_t step, uint64_t now, const char *reason)
{
    return rz__run_service_stop(run, step, reason, now);
}

#define BREACH(...) rz__error(RZ_EINTERNAL, __VA_ARGS__)
#define U(x) ((unsigned long long)(x))

int rz__bill_check(rz_engine *e, rz__ejob *j)
{
    bool open = j->state < RZ_JOB_SUCCEEDED;
    if (!open && j->hold_checked)
        return RZ_OK;
    if (!open && j->owed != RZ__OWE_NONE)
        return BREACH("job %llu still owes the ledger", U(j->id));
    /* B1: the current hold (the one before while a roll-over is owed). */
    uint32_t cur = j->iv_owed ? j->iv - 1 : j->iv;
    rz_ledger_transfer t;
    if (rz_ledger_transfer_get(e->ledger, rz__bill_hold_id(j->id, cur), &t) != RZ_OK)
        return BREACH("job %llu has no hold for interval %u", U(j->id), cur);
    if (t.amount != j->max_cost)
        return BREACH("job %llu: interval %u holds %llu micros, not %llu", U(j->id),
                      cur, U(t.amount), U(j->max_cost));
    if (open && t.state != RZ_LEDGER_OPEN)
        return BREACH("open job %llu: the hold of interval %u is closed", U(j->id), cur);
    bool paid = j->owed == RZ__OWE_NONE && j->cost && j->state != RZ_JOB_CANCELLED &&
                (j->state == RZ_JOB_SUCCEEDED || j->error);
    if (!open && (paid ? t.state != RZ_LEDGER_POSTED || t.posted_amount != j->cost
                       : t.state != RZ_LEDGER_VOIDED &&
                         !(t.state == RZ_LEDGER_POSTED && t.posted_amount == j->cost)))
        return BREACH("job %llu (%s, cost %llu): interval %u's hold in state %u "
                      "posted %llu", U(j->id), rz_job_state_name(j->state), U(j->cost),
                      cur, t.state, U(t.posted_amount));
    /* B2: every earlier interval settled once, adding up. O(intervals):
     * for an open job only the one before (the rest were checked then). */
    uint64_t sum = 0;
    uint32_t from = open && !j->iv_owed && j->iv > 2 ? j->iv - 1 : 1;
    uint32_t upto = j->iv_owed ? j->iv - 1 : j->iv;
    for (uint32_t k = from; k < upto; k++) {
        if (rz_ledger_transfer_get(e->ledger, rz__bill_hold_id(j->id, k), &t) != RZ_OK)
            return BREACH("job %llu has no hold for interval %u", U(j->id), k);
        if (t.state != RZ_LEDGER_POSTED && t.state != RZ_LEDGER_VOIDED)
            return BREACH("job %llu: interval %u is not settled (state %u)",
                          U(j->id), k, t.state);
        if (t.amount != j->max_cost || t.posted_amount > t.amount)
            return BREACH("job %llu: interval %u held %llu, posted %llu", U(j->id), k,
                          U(t.amount), U(t.posted_amount));
        sum += t.state == RZ_LEDGER_POSTED ? t.posted_amount : 0;
    }
    uint64_t want = j->iv_paid_micros - (j->iv_owed ? j->iv_owed_micros : 0);
    if (from == 1 && sum != want)
        return BREACH("job %llu: its intervals paid %llu micros, it counts %llu",
                      U(j->id), U(sum), U(want));
    if (!open)
        j->hold_checked = true;
    return RZ_OK;
}

bool rz__bill_json(const rz_engine *e, const rz__ejob *j, cJSON *view)
{
    rz__budget b;
    if (!j || !j->iv || !job_budget(e, j, &b, NULL))
        return true;
    bool done = j->state >= RZ_JOB_SUCCEEDED;
    uint32_t paid = j->iv - 1 + (done && j->cost ? 1 : 0);   /* its last, if paid */
    uint64_t micros = j->iv_paid_micros + (paid == j->iv ? j->cost : 0);
    cJSON *o = cJSON_AddObjectToObject(view, "billing");
    return o && cJSON_AddNumberToObject(o, "micros_per_hour", (double)b.micros_per_hour) &&
           (!b.hours || cJSON_AddNumberToObject(o, "hours", b.hours)) &&
           cJSON_AddNumberToObject(o, "interval_s", b.interval_s) &&
           cJSON_AddNumberToObject(o, "interval_hold_micros", (double)j->max_cost) &&
           cJSON_AddNumberToObject(o, "intervals_paid", paid) &&
           cJSON_AddNumberToObject(o, "paid_micros", (double)micros) &&
           (done || cJSON_AddNumberToObject(o, "interval", j->iv));
}
