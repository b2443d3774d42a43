/* Per-account limits: the request rate of each key (a token bucket), open
 * deposit requests and pending withdrawals, and the expiry of unpaid
 * deposit requests. Memory is bounded: the buckets live in a fixed table;
 * the open counts are exact, from the ledger's index of open transfers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "orch.h"

#define BUCKETS 4096u     /* keys tracked at once */
#define PROBE 8u          /* slots looked at per key */

typedef struct bucket {
    rz_ledger_id id;      /* {0,0}: free */
    uint64_t node;        /* node tokens: their node; 0 for clients */
    double tokens;
    uint64_t at_ms;       /* last refill */
} bucket;

static bucket *table;

bool quota_audited(const req *q, void (*fn)(req *q))
{
    if (q->who.kind == P_ADMIN && strcmp(q->method, "GET") != 0)
        return true;
    return fn == r_account_deposit || fn == r_account_withdraw ||
           fn == r_account_credit || fn == r_deposit_confirm ||
           fn == r_deposit_cancel || fn == r_job_refund ||
           fn == r_job_submit || fn == r_job_cancel || fn == r_node_result;
}

static size_t slot_of(rz_ledger_id id, uint64_t node)
{
    uint64_t h = id.hi * 0x9e3779b97f4a7c15ull ^ id.lo ^ (node * 0xff51afd7ed558ccdull);
    h ^= h >> 29;
    return (size_t)(h % BUCKETS);
}

/* The caller's bucket. A full table gives up the slot refilled longest ago
 * (most likely full again anyway): a key evicted that way starts over with
 * a full burst. */
static bucket *bucket_of(const principal *p, double burst, uint64_t now)
{
    if (!table && !(table = calloc(BUCKETS, sizeof *table)))
        return NULL;
    size_t s = slot_of(p->account, p->node), oldest = s;
    for (size_t i = 0; i < PROBE; i++) {
        bucket *b = &table[(s + i) % BUCKETS];
        if (rz_ledger_id_equal(b->id, p->account) && b->node == p->node)
            return b;
        if (!b->id.hi && !b->id.lo) {
            oldest = (s + i) % BUCKETS;
            break;
        }
        if (b->at_ms < table[oldest].at_ms)
            oldest = (s + i) % BUCKETS;
    }
    bucket *b = &table[oldest];
    b->id = p->account;
    b->node = p->node;
    b->tokens = burst;
    b->at_ms = now;
    return b;
}

/* A node's poll and its reports on the jobs it holds: how many there are
 * is set by the work it is given, so only the refused ones are counted.
 * Counting them all throttled a node of short jobs (two calls a job) to
 * 50 jobs a second once its burst was spent. */
static bool node_work(const req *q, void (*fn)(req *q))
{
    return q->who.kind == P_NODE &&
           (fn == r_node_poll || fn == r_node_result || fn == r_node_decline ||
            fn == r_node_log || fn == r_node_events);
}

/* The caller's bucket, refilled to now; NULL: not limited. */
static bucket *refilled(const req *q)
{
    unsigned rate = q->o->opts.request_rate;
    if (!rate || q->who.kind == P_ADMIN || q->who.kind == P_NONE)
        return NULL;
    double burst = q->o->opts.request_burst ? q->o->opts.request_burst : rate;
    uint64_t now = orch_now_ms();
    bucket *b = bucket_of(&q->who, burst, now);
    if (b && now > b->at_ms) {
        b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->at_ms = now;
    }
    return b;   /* NULL without memory for the table: refuse no one */
}

bool quota_rate_take(req *q, void (*fn)(req *q))
{
    bucket *b = refilled(q);
    if (!b)
        return true;
    unsigned rate = q->o->opts.request_rate;
    if (b->tokens >= 1.0) {
        if (node_work(q, fn))
            q->rate_owed = true;   /* paid by quota_rate_refused */
        else
            b->tokens -= 1.0;
        return true;
    }
    unsigned wait = (unsigned)((1.0 - b->tokens) / rate) + 1;   /* rounded up */
    reply_limit(q, wait, "too many requests from this key: at most %u a second "
                "after a burst of %u; retry after %u s", rate,
                q->o->opts.request_burst ? q->o->opts.request_burst : rate, wait);
    return false;
}

void quota_rate_refused(req *q, int code)
{
    if (!q->rate_owed || code < 400)
        return;
    q->rate_owed = false;
    bucket *b = refilled(q);
    if (b)
        b->tokens -= 1.0;   /* may go below 0: the next ones wait it off */
}

void quota_free(void)
{
    free(table);
    table = NULL;
}

int quota_open_count(orch *o, rz_ledger_id account, uint32_t code,
                     uint64_t *n)
{
    return rz_ledger_open_count(rz_engine_ledger(o->e), account, code, n);
}

void quota_expire(orch *o, bool force)
{
    uint64_t now = orch_now_ms();
    if (!force && now - o->deposit_tick_ms < 30000)
        return;
    o->deposit_tick_ms = now;
    uint64_t n = 0;
    if (rz_ledger_tick(rz_engine_ledger(o->e), now, &n) != RZ_OK)
        fprintf(stderr, ORCH_NAME ": expiring deposit requests: %s\n",
                rz_error_last()->message);
}

bool quota_client_room(req *q, bool deployment)
{
    uint64_t jobs = 0, deps = 0;
    rz_engine_client_open(q->o->e, q->who.account, &jobs, &deps);
    unsigned cap = deployment ? q->o->opts.running_deployments
                              : q->o->opts.queued_jobs;
    uint64_t n = deployment ? deps : jobs;
    if (n < cap)
        return true;
    reply_limit(q, 0, "this account has %llu %s; at most %u (wait for one to "
                "finish or cancel one)", (unsigned long long)n,
                deployment ? "running deployments" : "unfinished jobs", cap);
    return false;
}
