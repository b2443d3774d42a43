/* Money in micro-dollars: the fee rule checked against an independent
 * 128-bit computation over random jobs and fee rates, the ledger summing
 * to zero throughout; many tiny jobs keep the platform's total within
 * 1 micro-dollar per job of 5%; withdrawals' states (pending -> completed
 * or cancelled, never both, never twice), also across a crash between the
 * request and its completion. RZ_LEDGER_MONEY_JOBS overrides the number of
 * random jobs per fee rate (default 400). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define ID(n) rz_ledger_id_make(0, (n))
#define CLIENT ID(100)
#define NODE(i) ID(200 + (i))
enum { NNODES = 3 };

typedef struct fixture {
    char dir[256];
    rz_ledger *l;
} fixture;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static rz_ledger_opts opts(uint32_t fee_bps)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.fee_bps = fee_bps;
    o.durable = 0;
    o.map_size = 256u << 20;
    return o;
}

static void open_at(fixture *f, uint32_t fee_bps)
{
    rz_ledger_opts o = opts(fee_bps);
    if (rz_ledger_open(&f->l, f->dir, &o) != RZ_OK)
        fail_msg("open: %s", rz_error_last()->message);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !tmp_dir_make(f->dir, sizeof f->dir, "money"))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rz_ledger_close(f->l);
    int rc = tmp_dir_remove(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void accounts(rz_ledger *l, uint64_t credit)
{
    assert_int_equal(rz_ledger_create_account(l, CLIENT, RZ_LEDGER_CLIENT), RZ_OK);
    for (uint64_t i = 0; i < NNODES; i++)
        assert_int_equal(rz_ledger_create_account(l, NODE(i), RZ_LEDGER_NODE), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, ID(1000), CLIENT, credit), RZ_OK);
}

static rz_ledger_account bal(rz_ledger *l, rz_ledger_id id)
{
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(l, id, &a), RZ_OK);
    return a;
}

/* Double entry: over every account, credits equal debits, posted and
 * pending alike. */
static void sums_to_zero(rz_ledger *l)
{
    rz_ledger_id ids[3 + 1 + NNODES] = { RZ_LEDGER_PLATFORM_ID, RZ_LEDGER_ESCROW_ID,
                                         RZ_LEDGER_EXTERNAL_ID, CLIENT };
    for (uint64_t i = 0; i < NNODES; i++)
        ids[4 + i] = NODE(i);
    __int128 posted = 0, pending = 0;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        rz_ledger_account a = bal(l, ids[i]);
        posted += (__int128)a.credits_posted - (__int128)a.debits_posted;
        pending += (__int128)a.credits_pending - (__int128)a.debits_pending;
    }
    assert_true(posted == 0);
    assert_true(pending == 0);
}

/* The stated rule, computed another way: round half up of cost x bps / 1e4. */
static uint64_t fee_rule(uint64_t cost, uint32_t bps)
{
    unsigned __int128 p = (unsigned __int128)cost * bps;
    return (uint64_t)((p + 5000) / 10000);
}

static void test_fee_rule_against_128_bits(void **state)
{
    (void)state;
    static const uint32_t bps[] = { 0, 1, 333, 500, 5000, 9999, 10000 };
    for (size_t k = 0; k < sizeof bps / sizeof bps[0]; k++) {
        for (int i = 0; i < 20000; i++) {
            uint64_t c = rnd();
            c >>= rnd() % 64;   /* every magnitude */
            assert_int_equal(rz_ledger_fee(c, bps[k]), fee_rule(c, bps[k]));
        }
        assert_int_equal(rz_ledger_fee(UINT64_MAX, bps[k]), fee_rule(UINT64_MAX, bps[k]));
    }
}

/* Random holds, settles (any cost up to the hold) and refunds at several
 * fee rates: payout + fee is the cost, the fee is the rule's, the ledger
 * sums to zero after every step and verifies at the end. */
static void test_random_jobs_property(void **state)
{
    fixture *f = *state;
    static const uint32_t bps[] = { 0, 1, 500, 777, 10000 };
    const char *env = getenv("RZ_LEDGER_MONEY_JOBS");
    int jobs = env ? atoi(env) : 400;
    uint64_t next = 1;
    for (size_t k = 0; k < sizeof bps / sizeof bps[0]; k++) {
        rz_ledger_close(f->l);
        f->l = NULL;
        assert_int_equal(tmp_dir_remove(f->dir), 0);
        assert_non_null(tmp_dir_make(f->dir, sizeof f->dir, "money"));
        open_at(f, bps[k]);
        accounts(f->l, UINT64_C(1) << 62);
        uint64_t fees = 0, paid[NNODES] = {0};
        for (int j = 0; j < jobs; j++) {
            rz_ledger_id job = rz_ledger_id_make(7, next++);
            uint64_t hold = 1 + rnd() % (rnd() % 2 ? 100 : UINT64_C(1) << 40);
            assert_int_equal(rz_ledger_hold(f->l, ID(10000 + next), job, CLIENT, hold, 0),
                             RZ_OK);
            rz_ledger_result r;
            if (rnd() % 5 == 0) {
                assert_int_equal(rz_ledger_refund(f->l, ID(20000 + next), job, &r), RZ_OK);
                assert_int_equal(r.amount, hold);
            } else {
                uint64_t cost = rnd() % (hold + 1), n = rnd() % NNODES;
                assert_int_equal(rz_ledger_settle(f->l, ID(30000 + next), job, NODE(n),
                                                  cost, &r), RZ_OK);
                assert_int_equal(r.fee, fee_rule(cost, bps[k]));
                assert_int_equal(r.amount + r.fee, cost);
                fees += r.fee;
                paid[n] += r.amount;
            }
            if (j % 50 == 0)
                sums_to_zero(f->l);
        }
        sums_to_zero(f->l);
        assert_int_equal(bal(f->l, RZ_LEDGER_PLATFORM_ID).credits_posted, fees);
        for (uint64_t n = 0; n < NNODES; n++)
            assert_int_equal(bal(f->l, NODE(n)).credits_posted, paid[n]);
        assert_int_equal(rz_ledger_verify(f->l), RZ_OK);
    }
}

/* 10,000 jobs of 1-20 micro-dollars: the platform's fees stay within one
 * micro-dollar per job of 5% of what was charged (rounding half up keeps
 * them within half of one). */
static void test_small_jobs_fee_total(void **state)
{
    fixture *f = *state;
    open_at(f, 500);
    accounts(f->l, 1000000);
    enum { JOBS = 10000, BATCH = 500 };
    uint64_t charged = 0, fees = 0;
    rz_ledger_op ops[BATCH];
    rz_ledger_result res[BATCH];
    for (int b = 0; b < JOBS / BATCH; b++) {
        uint64_t cost[BATCH];
        for (int i = 0; i < BATCH; i++) {
            uint64_t n = (uint64_t)b * BATCH + (uint64_t)i + 1;
            cost[i] = 1 + rnd() % 20;
            ops[i] = (rz_ledger_op){ .type = RZ_LEDGER_OP_HOLD, .id = ID(100000 + n),
                                     .job = rz_ledger_id_make(9, n), .account = CLIENT,
                                     .amount = cost[i] };
        }
        assert_int_equal(rz_ledger_submit(f->l, ops, BATCH, res), RZ_OK);
        for (int i = 0; i < BATCH; i++) {
            assert_int_equal(res[i].status, RZ_OK);
            uint64_t n = (uint64_t)b * BATCH + (uint64_t)i + 1;
            ops[i] = (rz_ledger_op){ .type = RZ_LEDGER_OP_SETTLE, .id = ID(200000 + n),
                                     .job = rz_ledger_id_make(9, n),
                                     .counterparty = NODE(n % NNODES), .amount = cost[i] };
            charged += cost[i];
        }
        assert_int_equal(rz_ledger_submit(f->l, ops, BATCH, res), RZ_OK);
        for (int i = 0; i < BATCH; i++) {
            assert_int_equal(res[i].status, RZ_OK);
            assert_int_equal(res[i].fee, fee_rule(cost[i], 500));
            fees += res[i].fee;
        }
    }
    rz_ledger_stats st;
    assert_int_equal(rz_ledger_stats_get(f->l, &st), RZ_OK);
    assert_int_equal(st.fees_micros, fees);
    /* |fees - charged / 20| <= JOBS / 2, in integers: |20 fees - charged| <= 10 JOBS. */
    int64_t diff = (int64_t)(20 * fees) - (int64_t)charged;
    if (diff < 0)
        diff = -diff;
    assert_true(diff <= 10 * JOBS);
    print_message("10000 jobs, %llu micros charged, %llu in fees (5%%: %.2f)\n",
                  (unsigned long long)charged, (unsigned long long)fees, charged / 20.0);
    sums_to_zero(f->l);
    assert_int_equal(rz_ledger_verify(f->l), RZ_OK);
}

static uint32_t state_of(rz_ledger *l, rz_ledger_id id)
{
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(l, id, &t), RZ_OK);
    return t.state;
}

/* pending -> completed: never twice, never cancelled after; pending ->
 * cancelled: money back, never completed after. */
static void test_withdrawal_states(void **state)
{
    fixture *f = *state;
    open_at(f, 500);
    accounts(f->l, 1000);
    rz_ledger *l = f->l;
    assert_int_equal(rz_ledger_withdraw_request(l, ID(1), CLIENT, 1001), RZ_EFUNDS);
    assert_int_equal(rz_ledger_withdraw_request(l, ID(1), CLIENT, 300), RZ_OK);
    rz_ledger_account a = bal(l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 700);
    assert_int_equal(a.debits_pending, 300);
    /* Complete: the same id again is a replay, another id is refused. */
    assert_int_equal(rz_ledger_withdraw_complete(l, ID(2), ID(1)), RZ_OK);
    assert_int_equal(rz_ledger_withdraw_complete(l, ID(2), ID(1)), RZ_OK);
    assert_int_equal(rz_ledger_withdraw_complete(l, ID(3), ID(1)), RZ_EPOSTED);
    assert_int_equal(rz_ledger_withdraw_cancel(l, ID(4), ID(1)), RZ_EPOSTED);
    assert_int_equal(state_of(l, ID(1)), RZ_LEDGER_POSTED);
    a = bal(l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 700);
    assert_int_equal(a.debits_pending, 0);
    assert_int_equal(a.debits_posted, 300);
    /* Cancel: the money is available again; it never completes after. */
    assert_int_equal(rz_ledger_withdraw_request(l, ID(5), CLIENT, 200), RZ_OK);
    a = bal(l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 500);
    assert_int_equal(rz_ledger_withdraw_cancel(l, ID(6), ID(5)), RZ_OK);
    assert_int_equal(rz_ledger_withdraw_cancel(l, ID(6), ID(5)), RZ_OK);   /* replay */
    assert_int_equal(rz_ledger_withdraw_complete(l, ID(7), ID(5)), RZ_EVOIDED);
    assert_int_equal(rz_ledger_withdraw_cancel(l, ID(8), ID(5)), RZ_EVOIDED);
    assert_int_equal(state_of(l, ID(5)), RZ_LEDGER_VOIDED);
    a = bal(l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 700);
    assert_int_equal(a.debits_pending, 0);
    /* Not a withdrawal: refused, nothing changes. */
    assert_int_equal(rz_ledger_hold(l, ID(9), ID(10), CLIENT, 50, 0), RZ_OK);
    assert_int_not_equal(rz_ledger_withdraw_complete(l, ID(11), ID(9)), RZ_OK);
    assert_int_equal(state_of(l, ID(9)), RZ_LEDGER_OPEN);
    rz_ledger_stats st;
    assert_int_equal(rz_ledger_stats_get(l, &st), RZ_OK);
    assert_int_equal(st.withdrawn_micros, 300);
    sums_to_zero(l);
    assert_int_equal(rz_ledger_verify(l), RZ_OK);
}

/* A child requests (durably) and dies by SIGKILL before completing; the
 * request survives the reopen, still pending, and completes once. Then a
 * child completes and dies: the completion survives and cancel is refused. */
static void crash_after(fixture *f, void (*work)(rz_ledger *l))
{
    rz_ledger_close(f->l);
    f->l = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rz_ledger *l;
        rz_ledger_opts o = opts(500);
        o.durable = 1;
        o.checkpoint_ops = 1000000;   /* only the journal holds it */
        if (rz_ledger_open(&l, f->dir, &o) != RZ_OK)
            _exit(3);
        work(l);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    open_at(f, 500);
}

static void request_work(rz_ledger *l)
{
    if (rz_ledger_withdraw_request(l, ID(1), CLIENT, 250) != RZ_OK)
        _exit(5);
}

static void complete_work(rz_ledger *l)
{
    if (rz_ledger_withdraw_complete(l, ID(2), ID(1)) != RZ_OK)
        _exit(6);
}

static void test_withdrawal_crash(void **state)
{
    fixture *f = *state;
    open_at(f, 500);
    accounts(f->l, 1000);
    crash_after(f, request_work);
    assert_int_equal(state_of(f->l, ID(1)), RZ_LEDGER_OPEN);
    rz_ledger_account a = bal(f->l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 750);
    assert_int_equal(a.debits_pending, 250);
    assert_int_equal(rz_ledger_verify(f->l), RZ_OK);
    crash_after(f, complete_work);
    assert_int_equal(state_of(f->l, ID(1)), RZ_LEDGER_POSTED);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(2), ID(1)), RZ_OK);  /* replay */
    assert_int_equal(rz_ledger_withdraw_cancel(f->l, ID(3), ID(1)), RZ_EPOSTED);
    a = bal(f->l, CLIENT);
    assert_int_equal(rz_ledger_available(&a), 750);
    assert_int_equal(a.debits_pending, 0);
    assert_int_equal(bal(f->l, RZ_LEDGER_EXTERNAL_ID).credits_posted, 250);
    sums_to_zero(f->l);
    assert_int_equal(rz_ledger_verify(f->l), RZ_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fee_rule_against_128_bits),
        cmocka_unit_test_setup_teardown(test_random_jobs_property, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_jobs_fee_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal_crash, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
