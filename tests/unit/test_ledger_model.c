/* Model test: random operation sequences (batches, linked chains, replays,
 * ticks, reopenings) run against the ledger and against a tiny in-memory
 * model; every op's status and every balance must agree after every batch,
 * and rz_ledger_verify must hold throughout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define ID(n) rz_ledger_id_make(0, (n))
enum { NCLIENT = 4, NNODE = 2, PLATFORM = NCLIENT + NNODE, ESCROW, EXTERNAL,
       NACC };
enum { MAXP = 4096, MAXDONE = 4096 };

typedef struct macc { uint64_t dpost, dpend, cpost, cpend; } macc;

typedef struct mpend {
    uint64_t id, amount, timeout;
    uint32_t code;     /* HOLD, DEPOSIT or WITHDRAW */
    int debit, credit;
    int state;         /* rz_ledger_state */
} mpend;

typedef struct model {
    macc acc[NACC];
    mpend p[MAXP];
    size_t np;
} model;

typedef struct done {
    rz_ledger_op op;
    rz_ledger_result res;
} done;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

static rz_ledger_id acc_id(int i)
{
    if (i < NCLIENT)
        return ID(100 + (uint64_t)i);
    if (i < PLATFORM)
        return ID(200 + (uint64_t)(i - NCLIENT));
    return i == PLATFORM ? RZ_LEDGER_PLATFORM_ID
         : i == ESCROW   ? RZ_LEDGER_ESCROW_ID : RZ_LEDGER_EXTERNAL_ID;
}

static int acc_index(rz_ledger_id id)
{
    for (int i = 0; i < NACC; i++) {
        rz_ledger_id a = acc_id(i);
        if (a.hi == id.hi && a.lo == id.lo)
            return i;
    }
    return -1;
}

static mpend *find_p(model *m, uint64_t id)
{
    for (size_t i = 0; i < m->np; i++)
        if (m->p[i].id == id)
            return &m->p[i];
    return NULL;
}

static bool limited(int i) { return i != EXTERNAL; }

static int m_new(model *m, uint64_t id, int dr, int cr, uint64_t amt,
                 uint32_t code, bool pending, uint64_t timeout)
{
    macc *d = &m->acc[dr], *c = &m->acc[cr];
    if (limited(dr) && d->dpost + d->dpend + amt > d->cpost)
        return RZ_EFUNDS;
    if (pending) {
        d->dpend += amt;
        c->cpend += amt;
        m->p[m->np++] = (mpend){ id, amt, timeout, code, dr, cr,
                                 RZ_LEDGER_OPEN };
    } else {
        d->dpost += amt;
        c->cpost += amt;
    }
    return RZ_OK;
}

static int state_err(int s)
{
    return s == RZ_LEDGER_POSTED ? RZ_EPOSTED
         : s == RZ_LEDGER_VOIDED ? RZ_EVOIDED : RZ_EEXPIRED;
}

static int m_resolve(model *m, mpend *p, bool post, uint64_t amt, int state)
{
    if (p->state != RZ_LEDGER_OPEN)
        return state_err(p->state);
    if (post && amt > p->amount)
        return RZ_EAMOUNT;
    macc *d = &m->acc[p->debit], *c = &m->acc[p->credit];
    d->dpend -= p->amount;
    c->cpend -= p->amount;
    if (post) {
        d->dpost += amt;
        c->cpost += amt;
    }
    p->state = post ? RZ_LEDGER_POSTED : state;
    return RZ_OK;
}

/* The model's outcome of one op (a fresh id, not a replay). */
static int m_apply(model *m, const rz_ledger_op *op, rz_ledger_result *r)
{
    int who = acc_index(op->account);
    mpend *p;
    memset(r, 0, sizeof *r);
    switch (op->type) {
    case RZ_LEDGER_OP_TEST_CREDIT:
        return m_new(m, op->id.lo, EXTERNAL, who, op->amount, 0, false, 0);
    case RZ_LEDGER_OP_DEPOSIT_REQUEST:
        return m_new(m, op->id.lo, EXTERNAL, who, op->amount,
                     RZ_LEDGER_CODE_DEPOSIT, true, 0);
    case RZ_LEDGER_OP_HOLD:
        return m_new(m, op->id.lo, who, ESCROW, op->amount,
                     RZ_LEDGER_CODE_HOLD, true, op->timeout);
    case RZ_LEDGER_OP_WITHDRAW_REQUEST:
        return m_new(m, op->id.lo, who, EXTERNAL, op->amount,
                     RZ_LEDGER_CODE_WITHDRAW, true, 0);
    case RZ_LEDGER_OP_DEPOSIT_CONFIRM:
    case RZ_LEDGER_OP_WITHDRAW_COMPLETE:
    case RZ_LEDGER_OP_WITHDRAW_CANCEL: {
        uint32_t want = op->type == RZ_LEDGER_OP_DEPOSIT_CONFIRM
                            ? RZ_LEDGER_CODE_DEPOSIT : RZ_LEDGER_CODE_WITHDRAW;
        if (!(p = find_p(m, op->pending_id.lo)))
            return RZ_ENOENT;
        if (p->code != want)
            return RZ_EINVAL;
        bool post = op->type != RZ_LEDGER_OP_WITHDRAW_CANCEL;
        int rc = m_resolve(m, p, post, p->amount, RZ_LEDGER_VOIDED);
        if (rc == RZ_OK && !post)
            r->amount = p->amount;
        return rc;
    }
    case RZ_LEDGER_OP_SETTLE:
    case RZ_LEDGER_OP_REFUND: {
        if (!(p = find_p(m, op->pending_id.lo)))
            return RZ_ENOENT;
        if (p->code != RZ_LEDGER_CODE_HOLD)
            return RZ_EINVAL;
        bool settle = op->type == RZ_LEDGER_OP_SETTLE;
        int rc = m_resolve(m, p, settle, op->amount, RZ_LEDGER_VOIDED);
        if (rc != RZ_OK)
            return rc;
        if (!settle) {
            r->amount = p->amount;
            return RZ_OK;
        }
        uint64_t fee = rz_ledger_fee(op->amount, 500);
        int node = acc_index(op->counterparty);
        m->acc[ESCROW].dpost += op->amount;
        m->acc[node].cpost += op->amount - fee;
        m->acc[PLATFORM].cpost += fee;
        r->amount = op->amount - fee;
        r->fee = fee;
        return RZ_OK;
    }
    case RZ_LEDGER_OP_TICK:
        for (size_t i = 0; i < m->np; i++)
            if (m->p[i].state == RZ_LEDGER_OPEN && m->p[i].timeout &&
                m->p[i].timeout <= op->amount) {
                m_resolve(m, &m->p[i], false, 0, RZ_LEDGER_EXPIRED);
                r->expired++;
            }
        return RZ_OK;
    }
    return RZ_EINVAL;
}

typedef struct world {
    char dir[64];
    rz_ledger *l;
    model m, scratch;
    done d[MAXDONE];
    size_t nd;
    uint64_t next_id, now;
} world;

static const rz_ledger_opts *opts(void)
{
    static rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 0;
    o.map_size = 256u << 20;
    o.journal_size = 64u << 10;
    o.checkpoint_ops = 500;
    return &o;
}

static uint64_t pick_pending(world *w, uint32_t code)
{
    if (w->m.np == 0 || below(10) == 0)
        return 900000 + below(100);   /* unknown */
    for (int tries = 0; tries < 8; tries++) {
        mpend *p = &w->m.p[below(w->m.np)];
        if (p->code == code || tries == 7)
            return p->id;
    }
    return 0;
}

static rz_ledger_op random_op(world *w)
{
    rz_ledger_op op;
    memset(&op, 0, sizeof op);
    op.id = ID(w->next_id++);
    int client = (int)below(NCLIENT);
    op.account = acc_id(client);
    switch (below(11)) {
    case 0: case 1:
        op.type = RZ_LEDGER_OP_TEST_CREDIT;
        op.amount = 1 + below(1000);
        break;
    case 2:
        op.type = RZ_LEDGER_OP_DEPOSIT_REQUEST;
        op.amount = 1 + below(1000);
        break;
    case 3:
        op.type = RZ_LEDGER_OP_DEPOSIT_CONFIRM;
        op.pending_id = ID(pick_pending(w, RZ_LEDGER_CODE_DEPOSIT));
        break;
    case 4: case 5:
        op.type = RZ_LEDGER_OP_HOLD;
        op.job = ID(1000000 + op.id.lo);
        op.amount = 1 + below(1500);
        op.timeout = below(2) ? w->now + 1 + below(60) : 0;
        break;
    case 6: case 7: {
        uint64_t h = pick_pending(w, RZ_LEDGER_CODE_HOLD);
        model *m = &w->m;
        mpend *p = find_p(m, h);
        op.type = RZ_LEDGER_OP_SETTLE;
        op.pending_id = ID(h);
        op.counterparty = acc_id(NCLIENT + (int)below(NNODE));
        op.amount = below((p ? p->amount : 100) + 3);
        break;
    }
    case 8:
        op.type = RZ_LEDGER_OP_REFUND;
        op.pending_id = ID(pick_pending(w, RZ_LEDGER_CODE_HOLD));
        break;
    case 9:
        op.type = RZ_LEDGER_OP_WITHDRAW_REQUEST;
        op.account = acc_id((int)below(NCLIENT + NNODE));
        op.amount = 1 + below(800);
        break;
    default:
        op.type = below(2) ? RZ_LEDGER_OP_WITHDRAW_COMPLETE
                           : RZ_LEDGER_OP_WITHDRAW_CANCEL;
        op.pending_id = ID(pick_pending(w, RZ_LEDGER_CODE_WITHDRAW));
        break;
    }
    return op;
}

/* A replay of an earlier success: identical, or with one field changed. */
static bool replay_op(world *w, rz_ledger_op *op, rz_ledger_result *want,
                      int *status)
{
    if (w->nd == 0)
        return false;
    const done *d = &w->d[below(w->nd)];
    *op = d->op;
    op->flags &= ~RZ_LEDGER_LINKED;   /* it may have been part of a chain */
    *want = d->res;
    want->replayed = 1;
    *status = RZ_OK;
    bool has_amount = op->type != RZ_LEDGER_OP_DEPOSIT_CONFIRM &&
                      op->type != RZ_LEDGER_OP_WITHDRAW_COMPLETE &&
                      op->type != RZ_LEDGER_OP_WITHDRAW_CANCEL &&
                      op->type != RZ_LEDGER_OP_REFUND;
    if (has_amount && below(2)) {
        op->amount += 1;
        memset(want, 0, sizeof *want);
        *status = RZ_EEXISTS_DIFFERENT;
    }
    return true;
}

static void remember(world *w, const rz_ledger_op *op,
                     const rz_ledger_result *r)
{
    if (op->type == RZ_LEDGER_OP_TICK)
        return;
    if (w->nd < MAXDONE)
        w->d[w->nd++] = (done){ *op, *r };
    else
        w->d[below(MAXDONE)] = (done){ *op, *r };
}

static void check_balances(world *w, size_t step)
{
    for (int i = 0; i < NACC; i++) {
        rz_ledger_account a;
        assert_int_equal(rz_ledger_balance(w->l, acc_id(i), &a), RZ_OK);
        const macc *e = &w->m.acc[i];
        if (a.debits_posted != e->dpost || a.debits_pending != e->dpend ||
            a.credits_posted != e->cpost || a.credits_pending != e->cpend)
            fail_msg("step %zu account %d: ledger %llu/%llu/%llu/%llu, model "
                     "%llu/%llu/%llu/%llu", step, i,
                     (unsigned long long)a.debits_posted,
                     (unsigned long long)a.debits_pending,
                     (unsigned long long)a.credits_posted,
                     (unsigned long long)a.credits_pending,
                     (unsigned long long)e->dpost, (unsigned long long)e->dpend,
                     (unsigned long long)e->cpost, (unsigned long long)e->cpend);
    }
}

static void expect(size_t step, size_t i, const rz_ledger_op *op,
                   const rz_ledger_result *got, int status,
                   const rz_ledger_result *want)
{
    if (got->status != status || (status == RZ_OK &&
        (got->amount != want->amount || got->fee != want->fee ||
         got->expired != want->expired || got->replayed != want->replayed)))
        fail_msg("step %zu op %zu (type %u id %llu): got %s amount=%llu "
                 "fee=%llu expired=%llu replayed=%u, want %s amount=%llu "
                 "fee=%llu expired=%llu replayed=%u", step, i, op->type,
                 (unsigned long long)op->id.lo, rz_status_name(got->status),
                 (unsigned long long)got->amount, (unsigned long long)got->fee,
                 (unsigned long long)got->expired, got->replayed,
                 rz_status_name(status), (unsigned long long)want->amount,
                 (unsigned long long)want->fee,
                 (unsigned long long)want->expired, want->replayed);
}

/* One batch: plain ops, replays, a tick, or a linked chain. */
static void step(world *w, size_t s)
{
    enum { MAXB = 12 };
    rz_ledger_op ops[MAXB];
    rz_ledger_result got[MAXB], want[MAXB];
    int status[MAXB];
    size_t n = 1 + below(MAXB);
    bool chain = below(8) == 0;
    if (chain)
        w->scratch = w->m;
    model *m = chain ? &w->scratch : &w->m;
    size_t fail = n;
    for (size_t i = 0; i < n; i++) {
        if (!chain && below(6) == 0 && replay_op(w, &ops[i], &want[i],
                                                 &status[i]))
            continue;
        if (!chain && below(25) == 0) {
            memset(&ops[i], 0, sizeof ops[i]);
            ops[i].type = RZ_LEDGER_OP_TICK;
            w->now += below(40);
            ops[i].amount = w->now;
        } else {
            ops[i] = random_op(w);
        }
        if (chain && i + 1 < n)
            ops[i].flags = RZ_LEDGER_LINKED;
        status[i] = chain && fail < n ? RZ_ELINKED
                                       : m_apply(m, &ops[i], &want[i]);
        if (status[i] != RZ_OK && fail == n)
            fail = i;
    }
    if (chain) {
        for (size_t i = 0; i < n && fail < n; i++)
            status[i] = i == fail ? status[i] : RZ_ELINKED;
        if (fail == n)
            w->m = w->scratch;
    }
    assert_int_equal(rz_ledger_submit(w->l, ops, n, got), RZ_OK);
    if (getenv("RZ_LEDGER_MODEL_TRACE"))
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "step %zu op %zu type %u id %llu ref %llu amt %llu"
                    " flags %u: got %s want %s\n", s, i, ops[i].type,
                    (unsigned long long)ops[i].id.lo,
                    (unsigned long long)ops[i].pending_id.lo,
                    (unsigned long long)ops[i].amount, ops[i].flags,
                    rz_status_name(got[i].status), rz_status_name(status[i]));
    for (size_t i = 0; i < n; i++) {
        expect(s, i, &ops[i], &got[i], status[i], &want[i]);
        if (got[i].status == RZ_OK && !got[i].replayed)
            remember(w, &ops[i], &got[i]);
    }
    check_balances(w, s);
}

static void run_model(uint64_t seed, size_t steps)
{
    static world w;   /* large: keep it off the stack */
    memset(&w, 0, sizeof w);
    rng_state = seed;
    w.next_id = 1000;
    assert_non_null(tmp_dir_make(w.dir, sizeof w.dir, "ledger-model"));
    assert_int_equal(rz_ledger_open(&w.l, w.dir, opts()), RZ_OK);
    for (int i = 0; i < NCLIENT + NNODE; i++)
        assert_int_equal(rz_ledger_create_account(w.l, acc_id(i),
                         i < NCLIENT ? RZ_LEDGER_CLIENT : RZ_LEDGER_NODE),
                         RZ_OK);
    for (size_t s = 0; s < steps; s++) {
        step(&w, s);
        if (s % 50 == 49) {
            int rc = rz_ledger_verify(w.l);
            if (rc != RZ_OK)
                fail_msg("step %zu: %s", s, rz_error_last()->message);
        }
        if (s % 97 == 96) {   /* reopen: the journal replays or is empty */
            rz_ledger_close(w.l);
            assert_int_equal(rz_ledger_open(&w.l, w.dir, opts()), RZ_OK);
            check_balances(&w, s);
        }
        if (w.m.np > MAXP - 16)
            break;
    }
    assert_int_equal(rz_ledger_verify(w.l), RZ_OK);
    rz_ledger_close(w.l);
    assert_int_equal(tmp_dir_remove(w.dir), 0);
}

static void test_model(void **state)
{
    (void)state;
    const char *env = getenv("RZ_LEDGER_MODEL_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : 0x5eed1234abcdull;
    for (int round = 0; round < 4; round++)
        run_model(seed + (uint64_t)round * 7919, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
