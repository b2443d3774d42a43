/* Redundant execution: a job asking for k replicas runs on k distinct
 * nodes, and the outputs a strict majority agrees on are its outputs.
 *
 * The set is the head (the job the client submitted, which runs too) and
 * k - 1 replica jobs created with it, each an ordinary job with its own
 * hold of the job's maximum (k holds, one linked batch: all or none), its
 * own queue entry and attempts. Placement keeps a set's runs on distinct
 * nodes, so distinct payout accounts (one account per node id).
 *
 * A run's outcome is its vote: outputs (their SHA-256), or a failure (an
 * error report, the queue timeout, its nodes lost too often). A voted run
 * stays RUNNING, unplaced, with its hold open, until every run voted; the
 * verdict then finishes them all in the same call, so in the same commit:
 * - a digest more than k/2 runs share is the majority: those runs are paid
 *   (each its own cost), the others are refunded; a run whose outputs
 *   differ is counted `disagreed` in its node's record; the head succeeds
 *   with the majority's outputs whatever its own run did;
 * - no such digest: every run is refunded, nobody is paid, nobody's record
 *   changes for it (no run can be blamed), the job fails saying so.
 * Cancelling any run cancels the set (all refunded).
 *
 * Crash story: votes and verdicts are job records like any other (store.c
 * keeps them), written in the commit of the call that made them; the
 * verdict's payments are owed in that commit and paid after, like every
 * settlement (engine_impl.h). A reopen restores the undecided sets as
 * they were (voted runs stay unplaced) and waits for the missing votes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/engine_impl.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

static rz__ejob *head_of(rz_engine *e, const rz__ejob *j)
{
    return j->rep_head ? rz__engine_job(e, j->rep_head) : NULL;
}

/* Member i (0: the head) of the set headed by h. */
static rz__ejob *member(rz_engine *e, const rz__ejob *h, uint32_t i)
{
    return rz__engine_job(e, i ? h->rep_first + i - 1 : h->id);
}

/* The same, read-only. An undecided set's runs are all open, so in memory
 * (engine_impl.h); a decided one's are read back (rz_engine_job_replicas). */
static const rz__ejob *member_const(const rz_engine *e, const rz__ejob *h,
                                    uint32_t i)
{
    return rz__engine_job(e, i ? h->rep_first + i - 1 : h->id);
}

static int copy_job(rz_engine *e, rz__ejob *r, const rz__ejob *p)
{
    r->client = p->client;
    r->priority = p->priority;
    r->max_cost = p->max_cost;
    r->queue_timeout_ms = p->queue_timeout_ms;
    r->submitted_ms = p->submitted_ms;
    r->rep_head = p->id;
    r->module_id = rz__strdup(p->module_id ? p->module_id : "");
    r->module_version = rz__strdup(p->module_version ? p->module_version : "");
    r->request = rz__strdup(p->request ? p->request : "{}");
    r->exec = p->exec ? rz__strdup(p->exec) : NULL;
    if (!r->module_id || !r->module_version || !r->request ||
        (p->exec && !r->exec))
        return no_memory();
    return rz__engine_reqs_set(e, r, p->reqs_json, UINT64_MAX);
}

/* Every run's hold in one linked batch: all or none. */
static int hold_set(rz_engine *e, const rz__ejob *h)
{
    rz_ledger_op ops[RZ_ENGINE_REPLICAS_MAX];
    rz_ledger_result res[RZ_ENGINE_REPLICAS_MAX];
    memset(ops, 0, sizeof ops);
    uint32_t k = h->replicas;
    int rc = rz__engine_cover(e, h->client, h->max_cost * k);   /* no overflow: make_set */
    if (rc != RZ_OK)
        return rc;
    for (uint32_t i = 0; i < k; i++) {
        const rz__ejob *m = member_const(e, h, i);
        ops[i].type = RZ_LEDGER_OP_HOLD;
        ops[i].flags = i + 1 < k ? RZ_LEDGER_LINKED : 0;
        ops[i].id = rz__engine_hold_id(m->id);
        ops[i].job = rz_engine_job_ledger_id(m->id);
        ops[i].account = h->client;
        ops[i].amount = h->max_cost;
    }
    rc = rz_ledger_submit(e->ledger, ops, k, res);
    for (uint32_t i = 0; rc == RZ_OK && i < k; i++)
        if (res[i].status != RZ_OK && res[i].status != RZ_ELINKED)
            rc = rz__error(res[i].status, "cannot hold %u x %llu micros for "
                           "%u replicas: %s", k,
                           (unsigned long long)h->max_cost, k,
                           rz_strerror(res[i].status));
    return rc;
}

/* The k - 1 replica jobs of head `id`, made now (ids follow). */
static int make_set(rz_engine *e, uint64_t id, uint32_t k)
{
    rz__ejob *p = rz__engine_job(e, id);
    if (p->max_cost > UINT64_MAX / k)
        return rz__error(RZ_EOVERFLOW, "%u holds of %llu micros overflow", k,
                         (unsigned long long)p->max_cost);
    for (uint32_t i = 1; i < k; i++) {
        rz__ejob *r = rz__engine_job_new(e);   /* may move e->jobs */
        p = rz__engine_job(e, id);
        if (!r)
            return no_memory();
        if (i == 1)
            p->rep_first = r->id;
        int rc = copy_job(e, r, p);
        if (rc == RZ_OK && p->step_id && !(r->step_id = rz__strdup(p->step_id)))
            rc = no_memory();
        if (rc != RZ_OK)
            return rc;
    }
    p->rep_head = id;
    p->replicas = (uint8_t)k;
    return RZ_OK;
}

int rz__replica_step_new(rz_engine *e, uint64_t id, uint32_t k)
{
    return make_set(e, id, k);   /* held with the deployment's steps */
}

int rz__replica_step_start(rz_engine *e, rz__ejob *h)
{
    uint64_t id = h->id;
    for (uint32_t i = 1; i < h->replicas; i++) {
        h = rz__engine_job(e, id);
        rz__ejob *r = member(e, h, i);
        if (r->state != RZ_JOB_PENDING)
            continue;   /* started before a reopen */
        char *req = rz__strdup(h->request ? h->request : "{}");
        if (!req)
            return no_memory();
        free(r->request);
        r->request = req;
        int rc = rz__engine_enqueue(e, r);
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

/* Queue room for every run of the set (they share the head's
 * requirements, so mostly its group). */
static int reserve_set(rz_engine *e, const rz__ejob *h)
{
    int rc = RZ_OK;
    for (uint32_t i = 0; rc == RZ_OK && i < h->replicas; i++) {
        rz__req_group *g = member_const(e, h, i)->req_group;
        size_t n = 0;
        for (uint32_t x = 0; x < h->replicas; x++)
            n += member_const(e, h, x)->req_group == g;
        rc = rz__engine_queue_reserve(e, g, n);
    }
    return rc;
}

int rz__replica_submit(rz_engine *e, uint64_t id, uint32_t k)
{
    int rc = make_set(e, id, k);
    if (rc != RZ_OK)
        return rc;
    rz__ejob *p = rz__engine_job(e, id);
    rc = reserve_set(e, p);
    /* A group's deferred holds go first: hold ids follow job ids. */
    if (rc == RZ_OK && e->in_group)
        rc = rz__engine_group_flush(e);
    if (rc == RZ_OK)
        rc = hold_set(e, p);
    /* Held: the enqueues below were reserved and cannot fail. */
    for (uint32_t i = 1; rc == RZ_OK && i < k; i++)
        rc = rz__engine_enqueue(e, member(e, p, i));
    return rc;
}

bool rz__replica_excluded(const rz_engine *e, const rz__ejob *j, uint64_t node)
{
    const rz__ejob *h = j->rep_head ? rz__engine_job(e, j->rep_head) : NULL;
    for (uint32_t i = 0; h && node && i < h->replicas; i++) {
        const rz__ejob *m = member_const(e, h, i);
        if (m != j && (m->node == node || m->done_node == node))
            return true;
    }
    return false;
}

static void sha256_text(const char *text, unsigned char out[32])
{
    crypto_hash_sha256(out, (const unsigned char *)text, strlen(text));
}

/* Finish member m with the verdict v (the set's verdict is given: its
 * finish is not a vote). */
static void settle(rz_engine *e, rz__ejob *m, uint8_t v, rz_job_state st)
{
    m->verdict = v;
    int owe = st == RZ_JOB_SUCCEEDED && m->cost ? RZ__OWE_SETTLE
                                                 : RZ__OWE_REFUND;
    if (owe == RZ__OWE_REFUND)
        m->cost = 0;
    rz__engine_unplace(e, m, true);
    rz__engine_finish(e, m, st, owe);
}

static int set_text(char **dst, const char *src)
{
    char *c = rz__strdup(src);
    if (!c)
        return no_memory();
    free(*dst);
    *dst = c;
    return RZ_OK;
}

/* The digest more than k/2 runs reported, as the index of a run that
 * reported it; -1 none. */
static int majority(rz_engine *e, const rz__ejob *h)
{
    uint32_t k = h->replicas;
    for (uint32_t i = 0; i < k; i++) {
        const rz__ejob *a = member_const(e, h, i);
        if (a->vote != RZ__VOTE_OK)
            continue;
        uint32_t n = 0;
        for (uint32_t x = 0; x < k; x++) {
            const rz__ejob *b = member_const(e, h, x);
            n += b->vote == RZ__VOTE_OK &&
                 sodium_memcmp(a->out_digest, b->out_digest, 32) == 0;
        }
        if (2 * n > k)
            return (int)i;
    }
    return -1;
}

/* Every text the verdict stores, made before anything changes: the
 * verdict is applied whole or not at all (out of memory leaves the set
 * undecided, as it was). */
typedef struct verdict_texts {
    char *outputs;                          /* the head's */
    char *differ[RZ_ENGINE_REPLICAS_MAX];   /* a disagreeing run's error */
} verdict_texts;

static void texts_free(verdict_texts *t)
{
    free(t->outputs);
    for (size_t i = 0; i < RZ_ENGINE_REPLICAS_MAX; i++)
        free(t->differ[i]);
}

static void take_text(char **dst, char **src)
{
    free(*dst);
    *dst = *src;
    *src = NULL;
}

static bool agrees(const rz__ejob *m, const unsigned char d[32])
{
    return m->vote == RZ__VOTE_OK && sodium_memcmp(m->out_digest, d, 32) == 0;
}

/* A step's head takes the verdict through its run, before any other run
 * is settled: if that changed nothing (out of memory), nothing else
 * changes either and the set stays undecided (a repeated report decides
 * again, rz__replica_redecide); once the step took it, the caller settles
 * every run in the same call. */
static int head_step(rz_engine *e, rz__ejob *h, uint8_t v, bool paid,
                     const char *outputs, const char *error, bool *applied)
{
    rz__edep *d = rz__engine_dep(e, h->deployment);
    uint32_t n = d ? d->n_events : 0;
    uint64_t cost = h->cost;
    h->verdict = v;
    if (!paid)
        h->cost = 0;
    int rc = rz__engine_dep_report(e, h, outputs, error, e->now);
    *applied = rc == RZ_OK || (d && d->n_events != n);
    if (!*applied) {
        h->verdict = RZ__VERDICT_NONE;
        h->cost = cost;
    }
    return rc;
}

static int verdict_majority(rz_engine *e, rz__ejob *h, const rz__ejob *w)
{
    verdict_texts t = { .outputs = rz__strdup(w->outputs ? w->outputs : "{}") };
    unsigned char d[32];
    memcpy(d, w->out_digest, sizeof d);
    bool ok = t.outputs != NULL;
    for (uint32_t i = 1; ok && i < h->replicas && i < RZ_ENGINE_REPLICAS_MAX; i++) {
        const rz__ejob *m = member_const(e, h, i);
        if (m->vote == RZ__VOTE_OK && !agrees(m, d))
            ok = (t.differ[i] = rz__strdup("its outputs differ from the "
                                           "majority's")) != NULL;
    }
    if (!ok) {
        texts_free(&t);
        return no_memory();
    }
    int rc = RZ_OK;
    uint64_t id = h->id;
    if (h->deployment) {
        /* The step succeeds through its run with the majority's outputs;
         * its own run is paid only if it agreed. */
        bool agreed = agrees(h, d), applied;
        rc = head_step(e, h, agreed ? RZ__VERDICT_AGREED : h->vote == RZ__VOTE_OK
                       ? RZ__VERDICT_DISAGREED : RZ__VERDICT_FAILED, agreed,
                       t.outputs, NULL, &applied);
        if (!applied) {
            texts_free(&t);
            return rc;
        }
        h = rz__engine_job(e, id);
    }
    for (uint32_t i = h->replicas; i-- > 0;) {   /* the head last */
        rz__ejob *m = member(e, h, i);
        bool agreed = agrees(m, d);
        if (m->vote == RZ__VOTE_OK)
            rz__verify_outcome(e, m->done_node, agreed ? RZ__OUT_SUCCEEDED
                                                       : RZ__OUT_DISAGREED);
        if (!agreed && m->vote == RZ__VOTE_OK)
            m->cost = 0;
        uint8_t v = agreed ? RZ__VERDICT_AGREED : m->vote == RZ__VOTE_OK
                  ? RZ__VERDICT_DISAGREED : RZ__VERDICT_FAILED;
        if (m == h && h->deployment) {
            continue;   /* its step took the verdict above */
        } else if (m == h) {
            /* The job succeeds with the majority's outputs; its own run is
             * paid only if it agreed. */
            take_text(&h->outputs, &t.outputs);
            if (!agreed)
                h->cost = 0;
            settle(e, h, v, RZ_JOB_SUCCEEDED);
        } else {
            if (t.differ[i])
                take_text(&m->error, &t.differ[i]);
            settle(e, m, v, agreed ? RZ_JOB_SUCCEEDED : RZ_JOB_FAILED);
        }
    }
    texts_free(&t);
    return rc;
}

static int verdict_none(rz_engine *e, rz__ejob *h)
{
    uint32_t ok = 0, k = h->replicas;
    for (uint32_t i = 0; i < k; i++)
        ok += member(e, h, i)->vote == RZ__VOTE_OK;
    char why[160];
    snprintf(why, sizeof why, "no majority among %u replicas (%u reported "
             "outputs, no outputs were reported by more than %u): nobody is "
             "paid", k, ok, k / 2);
    int rc = set_text(&h->error, why);
    uint64_t id = h->id;
    bool step = h->deployment != 0;
    if (rc != RZ_OK)
        return rc;
    if (step) {   /* the step fails through its run */
        bool applied;
        rc = head_step(e, h, h->vote == RZ__VOTE_OK ? RZ__VERDICT_NO_MAJORITY
                       : RZ__VERDICT_FAILED, false, NULL, why, &applied);
        if (!applied)
            return rc;
    }
    for (uint32_t i = k; i-- > 0;) {
        h = rz__engine_job(e, id);
        rz__ejob *m = member(e, h, i);
        if (m == h && step)
            continue;   /* its step took the verdict above */
        m->cost = 0;
        settle(e, m, m->vote == RZ__VOTE_OK ? RZ__VERDICT_NO_MAJORITY
                     : RZ__VERDICT_FAILED, RZ_JOB_FAILED);
    }
    return rc;
}

/* Every run voted: the verdict. */
static int decide(rz_engine *e, rz__ejob *h)
{
    for (uint32_t i = 0; i < h->replicas; i++)
        if (member(e, h, i)->vote == RZ__VOTE_NONE)
            return RZ_OK;
    int w = majority(e, h);
    return w >= 0 ? verdict_majority(e, h, member(e, h, (uint32_t)w))
                  : verdict_none(e, h);
}

int rz__replica_report(rz_engine *e, rz__ejob *j, const char *outputs,
                       const char *error, char *kept)
{
    j->vote = error ? RZ__VOTE_FAILED : RZ__VOTE_OK;
    if (!error)
        sha256_text(outputs ? outputs : "{}", j->out_digest);
    if (error) {
        free(j->error);
        j->error = kept;
        j->cost = 0;
        rz__verify_outcome(e, j->node, RZ__OUT_FAILED);
    } else {
        free(j->outputs);
        j->outputs = kept;
    }
    rz__engine_touch_job(e, j);
    return decide(e, head_of(e, j));
}

bool rz__replica_redecide(rz_engine *e, rz__ejob *j, int *rc)
{
    if (!j->rep_head)
        return false;
    rz__ejob *h = head_of(e, j);
    if (!h || h->verdict != RZ__VERDICT_NONE)
        return false;
    for (uint32_t i = 0; i < h->replicas; i++)
        if (member(e, h, i)->vote == RZ__VOTE_NONE)
            return false;
    *rc = decide(e, h);
    return true;
}

bool rz__replica_step_failed(rz_engine *e, rz__ejob *j)
{
    if (!j->rep_head || j->rep_head != j->id || j->verdict != RZ__VERDICT_NONE)
        return false;
    j->state = RZ_JOB_RUNNING;
    j->vote = RZ__VOTE_FAILED;
    j->cost = 0;
    rz__engine_touch_job(e, j);
    (void)!decide(e, j);
    return true;
}

static void cancel_set(rz_engine *e, rz__ejob *h)
{
    for (uint32_t i = 0; i < h->replicas; i++) {
        rz__ejob *m = member(e, h, i);
        if (m->state < RZ_JOB_SUCCEEDED) {
            m->cost = 0;
            settle(e, m, RZ__VERDICT_CANCELLED, RZ_JOB_CANCELLED);
        }
    }
}

bool rz__replica_finish(rz_engine *e, rz__ejob *j, rz_job_state st)
{
    if (!j->rep_head || j->verdict != RZ__VERDICT_NONE)
        return false;
    rz__ejob *h = head_of(e, j);
    if (st == RZ_JOB_CANCELLED) {
        cancel_set(e, h);
        return true;
    }
    if (j == h && h->deployment) {
        /* Its run failed the step (a timeout): the other runs are
         * cancelled, the step's job ends as its run says. */
        h->verdict = RZ__VERDICT_FAILED;
        h->cost = 0;
        for (uint32_t i = 1; i < h->replicas; i++) {
            rz__ejob *m = member(e, h, i);
            if (m->state < RZ_JOB_SUCCEEDED)
                settle(e, m, RZ__VERDICT_CANCELLED, RZ_JOB_CANCELLED);
        }
        return false;
    }
    /* It ends without outputs: its vote is a failure; it waits, unplaced,
     * for the others (a failure to decide is an error kept in memory
     * only when memory ran out: the next vote decides again). */
    rz__engine_unplace(e, j, false);
    j->state = RZ_JOB_RUNNING;
    j->vote = RZ__VOTE_FAILED;
    j->cost = 0;
    rz__engine_touch_job(e, j);
    (void)!decide(e, h);
    return true;
}

/* ---- records ---- */

bool rz__replica_save(cJSON *rec, const rz__ejob *j)
{
    if (!j->rep_head)
        return true;
    cJSON *r = cJSON_AddObjectToObject(rec, "rep");
    if (!r)
        return false;
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, j->out_digest, sizeof j->out_digest);
    return cJSON_AddNumberToObject(r, "head", (double)j->rep_head) &&
           cJSON_AddNumberToObject(r, "first", (double)j->rep_first) &&
           cJSON_AddNumberToObject(r, "k", j->replicas) &&
           cJSON_AddNumberToObject(r, "vote", j->vote) &&
           cJSON_AddNumberToObject(r, "verdict", j->verdict) &&
           (j->vote != RZ__VOTE_OK || cJSON_AddStringToObject(r, "digest", hex));
}

/* Member k of o as a count or id: absent is 0; anything but a whole
 * number in 0 .. 2^53 is refused (false), never cast (a double past 2^64
 * has no uint64_t). */
static bool num(const cJSON *o, const char *k, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *out = 0;
    if (!v)
        return true;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) ||
        v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

int rz__replica_load(rz__ejob *j, const cJSON *rec)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(rec, "rep");
    if (!cJSON_IsObject(r))
        return RZ_OK;
    uint64_t k = 0, vote = 0, verdict = 0;
    bool ok = num(r, "k", &k) && num(r, "head", &j->rep_head) &&
              num(r, "first", &j->rep_first) && num(r, "vote", &vote) &&
              num(r, "verdict", &verdict);
    /* Queries size arrays by RZ_ENGINE_REPLICAS_MAX: a damaged count is
     * refused, never trusted. */
    if (!ok || !j->rep_head || (j->rep_head == j->id &&
                                (k < 2 || k > RZ_ENGINE_REPLICAS_MAX)) ||
        k > RZ_ENGINE_REPLICAS_MAX || vote > RZ__VOTE_FAILED ||
        verdict > RZ__VERDICT_CANCELLED)
        return rz__error(RZ_EDB, "engine store: job %llu: a damaged replica "
                         "set (head %llu, %llu runs%s)", (unsigned long long)j->id,
                         (unsigned long long)j->rep_head, (unsigned long long)k,
                         ok ? "" : "; a number out of range");
    j->replicas = (uint8_t)k;
    j->vote = (uint8_t)vote;
    j->verdict = (uint8_t)verdict;
    const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "digest"));
    if (d && strlen(d) == 64)
        (void)!sodium_hex2bin(j->out_digest, 32, d, 64, NULL, NULL, NULL);
    return RZ_OK;
}

/* ---- queries ---- */

static const char *verdict_name(uint8_t v)
{
    static const char *const names[] = { "pending", "agreed", "disagreed",
                                         "failed", "no_majority",
                                         "cancelled" };
    return v < RZ_ARRAY_LEN(names) ? names[v] : "pending";
}

size_t rz_engine_job_replicas(const rz_engine *e, uint64_t job,
                              rz_engine_replica_run *out, size_t max)
{
    const rz__ejob *j = e ? rz__engine_job_read(e, job) : NULL;
    const rz__ejob *h = j && j->rep_head
                      ? rz__engine_job_read(e, j->rep_head) : NULL;
    if (!h)
        return 0;
    /* A decided set's runs may be read back one by one from the store: h
     * may not outlive the reads, its members do. */
    uint64_t head = h->id, first = h->rep_first;
    uint32_t k = h->replicas;
    for (uint32_t i = 0; out && i < k && i < max; i++) {
        const rz__ejob *m = rz__engine_job_read(e, i ? first + i - 1 : head);
        rz_engine_replica_run *o = &out[i];
        memset(o, 0, sizeof *o);
        if (!m)
            continue;   /* the store failed (its error is set) */
        o->job = m->id;
        o->node = m->done_node && m->vote ? m->done_node : m->node;
        o->state = m->state;
        o->verdict = verdict_name(m->verdict);
        o->has_digest = m->vote == RZ__VOTE_OK;
        memcpy(o->digest, m->out_digest, sizeof o->digest);
        o->cost_micros = m->verdict == RZ__VERDICT_AGREED ? m->cost : 0;
        o->run_ms = m->run_ms;
    }
    return k;
}
