/* The escrow ledger: every rule and every rejection, replay, chains,
 * batches, queries, verify catching tampering, reopen and replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "ledger/ledger_impl.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define ID(n) rz_ledger_id_make(0, (n))
#define CLIENT ID(100)
#define CLIENT2 ID(101)
#define NODE ID(200)
#define JOB ID(7000)

typedef struct fixture {
    char dir[64];
    rz_ledger *l;
} fixture;

static rz_ledger_opts test_opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 0;
    o.map_size = 64u << 20;
    o.journal_size = 1u << 20;
    return o;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!tmp_dir_make(f->dir, sizeof f->dir, "ledger"))
        return -1;
    rz_ledger_opts o = test_opts();
    if (rz_ledger_open(&f->l, f->dir, &o) != RZ_OK)
        return -1;
    if (rz_ledger_create_account(f->l, CLIENT, RZ_LEDGER_CLIENT) ||
        rz_ledger_create_account(f->l, CLIENT2, RZ_LEDGER_CLIENT) ||
        rz_ledger_create_account(f->l, NODE, RZ_LEDGER_NODE))
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

static rz_ledger_account bal(rz_ledger *l, rz_ledger_id id)
{
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(l, id, &a), RZ_OK);
    return a;
}

static uint64_t avail(rz_ledger *l, rz_ledger_id id)
{
    rz_ledger_account a = bal(l, id);
    return rz_ledger_available(&a);
}

static void verify_ok(rz_ledger *l)
{
    int rc = rz_ledger_verify(l);
    if (rc != RZ_OK)
        fail_msg("verify: %s", rz_error_last()->message);
}

static void fund(rz_ledger *l, uint64_t id, rz_ledger_id who, uint64_t cents)
{
    assert_int_equal(rz_ledger_test_credit(l, ID(id), who, cents), RZ_OK);
}

/* ---- accounts ---- */

static void test_accounts(void **state)
{
    fixture *f = *state;
    rz_ledger_account a = bal(f->l, CLIENT);
    assert_int_equal(a.kind, RZ_LEDGER_CLIENT);
    assert_true(a.flags & RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS);
    assert_int_equal(rz_ledger_create_account(f->l, CLIENT, RZ_LEDGER_CLIENT),
                     RZ_OK);
    assert_int_equal(rz_ledger_create_account(f->l, CLIENT, RZ_LEDGER_NODE),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(rz_ledger_create_account(f->l, ID(3), RZ_LEDGER_CLIENT),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_create_account(f->l, ID(300),
                                              RZ_LEDGER_ESCROW), RZ_EINVAL);
    assert_int_equal(bal(f->l, RZ_LEDGER_ESCROW_ID).kind, RZ_LEDGER_ESCROW);
    assert_int_equal(bal(f->l, RZ_LEDGER_PLATFORM_ID).kind,
                     RZ_LEDGER_PLATFORM);
    assert_int_equal(bal(f->l, RZ_LEDGER_EXTERNAL_ID).kind,
                     RZ_LEDGER_EXTERNAL);
    rz_ledger_account none;
    assert_int_equal(rz_ledger_balance(f->l, ID(999), &none), RZ_ENOENT);
    verify_ok(f->l);
}

/* ---- deposits and credits ---- */

static void test_deposit(void **state)
{
    fixture *f = *state;
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1000), CLIENT, 500),
                     RZ_OK);
    rz_ledger_account a = bal(f->l, CLIENT);
    assert_int_equal(a.credits_pending, 500);
    assert_int_equal(rz_ledger_available(&a), 0);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1001), ID(1000)),
                     RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 500);
    /* Replay: the first result again; a second confirm: already posted. */
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1001), ID(1000)),
                     RZ_OK);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1002), ID(1000)),
                     RZ_EPOSTED);
    assert_int_equal(avail(f->l, CLIENT), 500);
    /* Deposits only to clients, only positive, only to known accounts. */
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1003), NODE, 5),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1004), CLIENT, 0),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1005), ID(4242), 5),
                     RZ_ENOENT);
    /* Confirming something that is not a deposit request. */
    fund(f->l, 1006, CLIENT, 10);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1007), ID(1006)),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1008), ID(5555)),
                     RZ_ENOENT);
    assert_int_equal(avail(f->l, CLIENT), 510);
    rz_ledger_account ext = bal(f->l, RZ_LEDGER_EXTERNAL_ID);
    assert_int_equal(ext.debits_posted, 510);
    verify_ok(f->l);
}

/* ---- hold, settle, fee ---- */

static void test_hold_settle_fee(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 1000);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 1001, 0),
                     RZ_EFUNDS);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 1000, 0), RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 0);
    assert_int_equal(bal(f->l, RZ_LEDGER_ESCROW_ID).credits_pending, 1000);
    /* A second open hold for the same job is refused. */
    fund(f->l, 3, CLIENT, 50);
    assert_int_equal(rz_ledger_hold(f->l, ID(4), JOB, CLIENT, 10, 0),
                     RZ_EEXISTS);
    rz_ledger_result r;
    assert_int_equal(rz_ledger_settle(f->l, ID(5), JOB, NODE, 801, &r), RZ_OK);
    /* 5% of 801 = 40.05, rounded down: 40 to the platform, 761 paid. */
    assert_int_equal(r.fee, 40);
    assert_int_equal(r.amount, 761);
    assert_int_equal(r.replayed, 0);
    assert_int_equal(avail(f->l, CLIENT), 1000 - 801 + 50);
    assert_int_equal(avail(f->l, NODE), 761);
    assert_int_equal(bal(f->l, RZ_LEDGER_PLATFORM_ID).credits_posted, 40);
    rz_ledger_account esc = bal(f->l, RZ_LEDGER_ESCROW_ID);
    assert_int_equal(esc.credits_pending, 0);
    assert_int_equal(rz_ledger_available(&esc), 0);
    /* Settling again under the same id replays the first result. */
    memset(&r, 0, sizeof r);
    assert_int_equal(rz_ledger_settle(f->l, ID(5), JOB, NODE, 801, &r), RZ_OK);
    assert_int_equal(r.replayed, 1);
    assert_int_equal(r.amount, 761);
    assert_int_equal(r.fee, 40);
    /* ... with another cost: a distinct error; under a new id: posted. */
    assert_int_equal(rz_ledger_settle(f->l, ID(5), JOB, NODE, 800, NULL),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(rz_ledger_settle(f->l, ID(6), JOB, NODE, 801, NULL),
                     RZ_EPOSTED);
    assert_int_equal(avail(f->l, NODE), 761);
    rz_ledger_stats st;
    assert_int_equal(rz_ledger_stats_get(f->l, &st), RZ_OK);
    assert_int_equal(st.fees_micros, 40);
    assert_int_equal(st.escrow_held_micros, 0);
    assert_int_equal(st.open_pending, 0);
    assert_int_equal(st.deposited_micros, 1050);
    verify_ok(f->l);
}

static void test_fee_rounding(void **state)
{
    (void)state;
    assert_int_equal(rz_ledger_fee(0, 500), 0);
    assert_int_equal(rz_ledger_fee(9, 500), 0);       /* 0.45 -> 0 */
    assert_int_equal(rz_ledger_fee(10, 500), 1);      /* 0.5 -> 1: halves up */
    assert_int_equal(rz_ledger_fee(19, 500), 1);      /* 0.95 -> 1 */
    assert_int_equal(rz_ledger_fee(29, 500), 1);      /* 1.45 -> 1 */
    assert_int_equal(rz_ledger_fee(30, 500), 2);      /* 1.5 -> 2 */
    assert_int_equal(rz_ledger_fee(801, 500), 40);    /* 40.05 -> 40 */
    assert_int_equal(rz_ledger_fee(10000, 10000), 10000);
    /* (2^64 - 1) / 20 = 922337203685477580.75 -> ...581. */
    assert_int_equal(rz_ledger_fee(UINT64_MAX, 500), UINT64_MAX / 20 + 1);
    assert_int_equal(rz_ledger_fee(UINT64_MAX, 10000), UINT64_MAX);
    assert_int_equal(rz_ledger_fee(12345, 0), 0);
}

static void test_settle_rejections(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 1000);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 300, 0), RZ_OK);
    /* Above the hold, to a client, to nobody, for an unknown job. */
    assert_int_equal(rz_ledger_settle(f->l, ID(3), JOB, NODE, 301, NULL),
                     RZ_EAMOUNT);
    assert_int_equal(rz_ledger_settle(f->l, ID(3), JOB, CLIENT2, 10, NULL),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_settle(f->l, ID(3), JOB, ID(999), 10, NULL),
                     RZ_ENOENT);
    assert_int_equal(rz_ledger_settle(f->l, ID(3), ID(1), NODE, 10, NULL),
                     RZ_ENOENT);
    /* Nothing of the failed settles is left behind. */
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(3), &t), RZ_ENOENT);
    assert_int_equal(avail(f->l, CLIENT), 700);
    /* Refund, then a post after the void. */
    rz_ledger_result r;
    assert_int_equal(rz_ledger_refund(f->l, ID(4), JOB, &r), RZ_OK);
    assert_int_equal(r.amount, 300);
    assert_int_equal(avail(f->l, CLIENT), 1000);
    assert_int_equal(rz_ledger_settle(f->l, ID(5), JOB, NODE, 10, NULL),
                     RZ_EVOIDED);
    assert_int_equal(rz_ledger_refund(f->l, ID(6), JOB, NULL), RZ_EVOIDED);
    assert_int_equal(rz_ledger_refund(f->l, ID(4), JOB, NULL), RZ_OK);
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(2), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_VOIDED);
    /* A settle of zero: the whole hold comes back, nothing is paid. */
    assert_int_equal(rz_ledger_hold(f->l, ID(7), ID(7001), CLIENT, 100, 0),
                     RZ_OK);
    assert_int_equal(rz_ledger_settle(f->l, ID(8), ID(7001), NODE, 0, &r),
                     RZ_OK);
    assert_int_equal(r.amount + r.fee, 0);
    assert_int_equal(avail(f->l, CLIENT), 1000);
    /* Holds need a job, a client, an amount. */
    assert_int_equal(rz_ledger_hold(f->l, ID(9), ID(0), CLIENT, 1, 0),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_hold(f->l, ID(9), JOB, NODE, 1, 0), RZ_EINVAL);
    assert_int_equal(rz_ledger_hold(f->l, ID(9), JOB, CLIENT, 0, 0),
                     RZ_EINVAL);
    verify_ok(f->l);
}

static void test_settle_by_hold_id(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 100, 0), RZ_OK);
    rz_ledger_op op = { 0 };
    op.type = RZ_LEDGER_OP_SETTLE;
    op.id = ID(3);
    op.pending_id = ID(2);
    op.counterparty = NODE;
    op.amount = 100;
    rz_ledger_result r;
    assert_int_equal(rz_ledger_submit(f->l, &op, 1, &r), RZ_OK);
    assert_int_equal(r.status, RZ_OK);
    assert_int_equal(r.amount, 95);
    /* A hold id of another job is refused. */
    op.id = ID(4);
    op.job = ID(1234);
    assert_int_equal(rz_ledger_submit(f->l, &op, 1, &r), RZ_OK);
    assert_int_equal(r.status, RZ_EINVAL);
    verify_ok(f->l);
}

/* ---- timeouts ---- */

static void test_expiry(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 1000);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 400, 100), RZ_OK);
    assert_int_equal(rz_ledger_hold(f->l, ID(3), ID(7001), CLIENT, 100, 50),
                     RZ_OK);
    assert_int_equal(rz_ledger_hold(f->l, ID(4), ID(7002), CLIENT, 100, 0),
                     RZ_OK);
    uint64_t n = 99;
    assert_int_equal(rz_ledger_tick(f->l, 49, &n), RZ_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rz_ledger_tick(f->l, 99, &n), RZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(avail(f->l, CLIENT), 500);
    assert_int_equal(rz_ledger_tick(f->l, 100, &n), RZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(avail(f->l, CLIENT), 900);
    assert_int_equal(rz_ledger_settle(f->l, ID(5), JOB, NODE, 10, NULL),
                     RZ_EEXPIRED);
    assert_int_equal(rz_ledger_refund(f->l, ID(6), JOB, NULL), RZ_EEXPIRED);
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(2), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_EXPIRED);
    assert_int_equal(rz_ledger_transfer_get(f->l,
                     rz_ledger_derive_id(ID(2), 3), &t), RZ_OK);
    assert_int_equal(t.code, RZ_LEDGER_CODE_EXPIRE);
    /* A hold without timeout never expires; a settled one no longer can. */
    assert_int_equal(rz_ledger_tick(f->l, UINT64_MAX, &n), RZ_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rz_ledger_settle(f->l, ID(7), ID(7002), NODE, 100, NULL),
                     RZ_OK);
    verify_ok(f->l);
}

/* A deposit request expires at its timeout or is cancelled; either frees
 * the external account's pending total, so unpaid requests cannot pile up
 * there for good. */
static void test_deposit_expiry_cancel(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 1);
    rz_ledger_op op;
    memset(&op, 0, sizeof op);
    op.type = RZ_LEDGER_OP_DEPOSIT_REQUEST;
    op.id = ID(2);
    op.account = CLIENT;
    op.amount = (uint64_t)1 << 62;
    op.timeout = 100;
    rz_ledger_result r;
    assert_int_equal(rz_ledger_submit(f->l, &op, 1, &r), RZ_OK);
    assert_int_equal(r.status, RZ_OK);
    rz_ledger_account ext;
    assert_int_equal(rz_ledger_balance(f->l, RZ_LEDGER_EXTERNAL_ID, &ext), RZ_OK);
    assert_int_equal(ext.debits_pending, (uint64_t)1 << 62);
    uint64_t n = 0;
    assert_int_equal(rz_ledger_tick(f->l, 100, &n), RZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rz_ledger_balance(f->l, RZ_LEDGER_EXTERNAL_ID, &ext), RZ_OK);
    assert_int_equal(ext.debits_pending, 0);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(3), ID(2)), RZ_EEXPIRED);
    /* Cancelled: gone from the totals, and no longer confirmable. */
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(4), CLIENT, 500), RZ_OK);
    assert_int_equal(rz_ledger_deposit_cancel(f->l, ID(5), ID(4)), RZ_OK);
    assert_int_equal(rz_ledger_deposit_cancel(f->l, ID(5), ID(4)), RZ_OK);   /* replay */
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(6), ID(4)), RZ_EVOIDED);
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(4), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_VOIDED);
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(5), &t), RZ_OK);
    assert_int_equal(t.code, RZ_LEDGER_CODE_DEPOSIT_CANCEL);
    assert_int_equal(rz_ledger_balance(f->l, RZ_LEDGER_EXTERNAL_ID, &ext), RZ_OK);
    assert_int_equal(ext.debits_pending, 0);
    assert_int_equal(avail(f->l, CLIENT), 1);
    /* Only a deposit request is cancelled this way. */
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(7), CLIENT, 1), RZ_OK);
    assert_int_not_equal(rz_ledger_deposit_cancel(f->l, ID(8), ID(7)), RZ_OK);
    verify_ok(f->l);
    /* The journal replays the new op. */
    rz_ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(rz_ledger_open(&f->l, f->dir, NULL), RZ_OK);
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(4), &t), RZ_OK);
    assert_int_equal(t.state, RZ_LEDGER_VOIDED);
    verify_ok(f->l);
}

/* ---- withdrawals ---- */

static void test_withdraw(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 300);
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(2), CLIENT, 301),
                     RZ_EFUNDS);
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(2), CLIENT, 200),
                     RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 100);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(3), ID(2)), RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 100);
    assert_int_equal(bal(f->l, CLIENT).debits_posted, 200);
    assert_int_equal(bal(f->l, RZ_LEDGER_EXTERNAL_ID).credits_posted, 200);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(4), ID(2)),
                     RZ_EPOSTED);
    /* Cancel returns the money; completing a cancelled one fails. */
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(5), CLIENT, 100),
                     RZ_OK);
    rz_ledger_op op = { 0 };
    op.type = RZ_LEDGER_OP_WITHDRAW_CANCEL;
    op.id = ID(6);
    op.pending_id = ID(5);
    rz_ledger_result r;
    assert_int_equal(rz_ledger_submit(f->l, &op, 1, &r), RZ_OK);
    assert_int_equal(r.status, RZ_OK);
    assert_int_equal(r.amount, 100);
    assert_int_equal(avail(f->l, CLIENT), 100);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(7), ID(5)),
                     RZ_EVOIDED);
    /* Nodes withdraw earnings too; holds cannot be "completed". */
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(8), NODE, 1),
                     RZ_EFUNDS);
    assert_int_equal(rz_ledger_hold(f->l, ID(9), JOB, CLIENT, 10, 0), RZ_OK);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(10), ID(9)),
                     RZ_EINVAL);
    verify_ok(f->l);
}

/* ---- raw transfers, linked chains, batches ---- */

static rz_ledger_op raw(uint64_t id, rz_ledger_id dr, rz_ledger_id cr,
                        uint64_t amount, uint32_t flags)
{
    rz_ledger_op op = { 0 };
    op.type = RZ_LEDGER_OP_TRANSFER;
    op.id = ID(id);
    op.account = dr;
    op.counterparty = cr;
    op.amount = amount;
    op.flags = flags;
    op.code = RZ_LEDGER_CODE_USER;
    return op;
}

static void test_linked_chain(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    rz_ledger_op ops[4] = {
        raw(10, CLIENT, CLIENT2, 60, RZ_LEDGER_LINKED),
        raw(11, CLIENT, NODE, 30, RZ_LEDGER_LINKED),
        raw(12, CLIENT, NODE, 20, 0),           /* 110 > 100: fails */
        raw(13, CLIENT2, NODE, 1, 0),           /* own chain: CLIENT2 is 0 */
    };
    rz_ledger_result r[4];
    assert_int_equal(rz_ledger_submit(f->l, ops, 4, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_ELINKED);
    assert_int_equal(r[1].status, RZ_ELINKED);
    assert_int_equal(r[2].status, RZ_EFUNDS);
    assert_int_equal(r[3].status, RZ_EFUNDS);
    assert_int_equal(avail(f->l, CLIENT), 100);
    assert_int_equal(avail(f->l, CLIENT2), 0);
    rz_ledger_transfer t;
    assert_int_equal(rz_ledger_transfer_get(f->l, ID(10), &t), RZ_ENOENT);
    /* The same chain within the funds commits whole. */
    ops[2].amount = 10;
    assert_int_equal(rz_ledger_submit(f->l, ops, 4, r), RZ_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].status, RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 0);
    assert_int_equal(avail(f->l, CLIENT2), 59);
    assert_int_equal(avail(f->l, NODE), 41);
    /* A chain left open at the end of the batch fails. */
    rz_ledger_op open[2] = { raw(20, CLIENT2, NODE, 1, RZ_LEDGER_LINKED),
                             raw(21, CLIENT2, NODE, 1, RZ_LEDGER_LINKED) };
    assert_int_equal(rz_ledger_submit(f->l, open, 2, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_ELINKED);
    assert_int_equal(r[1].status, RZ_EINVAL);
    assert_int_equal(avail(f->l, CLIENT2), 59);
    /* Pending and its post within one chain; a second post fails it. */
    rz_ledger_op pp[3] = { raw(30, CLIENT2, NODE, 50, RZ_LEDGER_PENDING |
                                                     RZ_LEDGER_LINKED),
                           raw(31, ID(0), ID(0), 20, RZ_LEDGER_POST |
                                                     RZ_LEDGER_LINKED),
                           raw(32, ID(0), ID(0), 0, RZ_LEDGER_VOID) };
    pp[1].pending_id = ID(30);
    pp[2].pending_id = ID(30);
    assert_int_equal(rz_ledger_submit(f->l, pp, 3, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_ELINKED);
    assert_int_equal(r[1].status, RZ_ELINKED);
    assert_int_equal(r[2].status, RZ_EPOSTED);
    assert_int_equal(rz_ledger_submit(f->l, pp, 2, r), RZ_OK);
    assert_int_equal(r[1].status, RZ_EINVAL);   /* open chain */
    pp[1].flags = RZ_LEDGER_POST;
    assert_int_equal(rz_ledger_submit(f->l, pp, 2, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_OK);
    assert_int_equal(r[1].status, RZ_OK);
    assert_int_equal(avail(f->l, CLIENT2), 39);
    assert_int_equal(avail(f->l, NODE), 61);
    /* A tick cannot be part of a chain. */
    rz_ledger_op tk[2] = { { 0 }, raw(40, CLIENT2, NODE, 1, 0) };
    tk[0].type = RZ_LEDGER_OP_TICK;
    tk[0].flags = RZ_LEDGER_LINKED;
    assert_int_equal(rz_ledger_submit(f->l, tk, 2, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_EINVAL);
    assert_int_equal(r[1].status, RZ_ELINKED);
    verify_ok(f->l);
}

static void test_raw_rejections(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    rz_ledger_op ops[] = {
        raw(10, CLIENT, CLIENT, 1, 0),                      /* same account */
        raw(11, CLIENT, NODE, 0, 0),                        /* zero */
        raw(12, CLIENT, NODE, 1, RZ_LEDGER_POST | RZ_LEDGER_VOID),
        raw(13, CLIENT, NODE, 1, 0),                        /* code < USER */
        raw(14, CLIENT, NODE, 1, 0),                        /* timeout */
        raw(15, CLIENT, ID(4242), 1, 0),                    /* no account */
        raw(16, ID(0), ID(0), 1, RZ_LEDGER_POST),           /* ref missing */
        raw(17, CLIENT, NODE, 1, 0x100),                    /* unknown flag */
        raw(0, CLIENT, NODE, 1, 0),                         /* id 0 */
        raw(18, CLIENT, NODE, 1, 0),                        /* unknown type */
        raw(19, CLIENT, NODE, 1, RZ_LEDGER_PENDING),
        raw(20, CLIENT2, NODE, 5, RZ_LEDGER_POST),          /* wrong accts */
        raw(21, ID(0), ID(0), 2, RZ_LEDGER_POST),           /* above */
        raw(22, ID(0), ID(0), 3, RZ_LEDGER_VOID),           /* partial void */
    };
    ops[3].code = 5;
    ops[4].timeout = 10;
    ops[6].pending_id = ID(777);
    ops[9].type = 99;
    ops[11].pending_id = ops[12].pending_id = ops[13].pending_id = ID(19);
    int want[] = { RZ_EINVAL, RZ_EINVAL, RZ_EINVAL, RZ_EINVAL, RZ_EINVAL,
                   RZ_ENOENT, RZ_ENOENT, RZ_EINVAL, RZ_EINVAL, RZ_EINVAL,
                   RZ_OK, RZ_EINVAL, RZ_EAMOUNT, RZ_EINVAL };
    size_t n = sizeof ops / sizeof ops[0];
    rz_ledger_result r[sizeof ops / sizeof ops[0]];
    assert_int_equal(rz_ledger_submit(f->l, ops, n, r), RZ_OK);
    for (size_t i = 0; i < n; i++)
        if (r[i].status != want[i])
            fail_msg("op %zu: %s, want %s", i, rz_status_name(r[i].status),
                     rz_status_name(want[i]));
    assert_int_equal(avail(f->l, CLIENT), 99);
    /* Malformed batches apply nothing. */
    assert_int_equal(rz_ledger_submit(f->l, ops, 0, r), RZ_EINVAL);
    assert_int_equal(rz_ledger_submit(f->l, ops, RZ_LEDGER_BATCH_MAX + 1, r),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_submit(f->l, NULL, 1, r), RZ_EINVAL);
    assert_int_equal(rz_ledger_submit(NULL, ops, 1, r), RZ_EINVAL);
    verify_ok(f->l);
}

static void test_overflow(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, UINT64_MAX);
    assert_int_equal(rz_ledger_test_credit(f->l, ID(2), CLIENT2, 1),
                     RZ_EOVERFLOW);
    assert_int_equal(avail(f->l, CLIENT2), 0);
    assert_int_equal(avail(f->l, CLIENT), UINT64_MAX);
    /* Holding and settling near the top does not overflow the fee. */
    assert_int_equal(rz_ledger_hold(f->l, ID(3), JOB, CLIENT, UINT64_MAX, 0),
                     RZ_OK);
    rz_ledger_result r;
    assert_int_equal(rz_ledger_settle(f->l, ID(4), JOB, NODE, UINT64_MAX, &r),
                     RZ_OK);
    assert_true(r.amount + r.fee == UINT64_MAX);
    verify_ok(f->l);
}

static void test_replay_fields(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    assert_int_equal(rz_ledger_test_credit(f->l, ID(1), CLIENT, 100), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(f->l, ID(1), CLIENT, 101),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(rz_ledger_test_credit(f->l, ID(1), CLIENT2, 100),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1), CLIENT, 100),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(avail(f->l, CLIENT), 100);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 60, 5), RZ_OK);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 60, 5), RZ_OK);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 60, 6),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), ID(1), CLIENT, 60, 5),
                     RZ_EEXISTS_DIFFERENT);
    assert_int_equal(avail(f->l, CLIENT), 40);
    /* A rejected op leaves its id free. */
    assert_int_equal(rz_ledger_test_credit(f->l, ID(3), ID(999), 1),
                     RZ_ENOENT);
    assert_int_equal(rz_ledger_test_credit(f->l, ID(3), CLIENT2, 1), RZ_OK);
    /* Replays inside one batch: the second is a replay of the first. */
    rz_ledger_op two[2] = { { 0 }, { 0 } };
    two[0].type = two[1].type = RZ_LEDGER_OP_TEST_CREDIT;
    two[0].id = two[1].id = ID(4);
    two[0].account = two[1].account = CLIENT2;
    two[0].amount = two[1].amount = 7;
    rz_ledger_result r[2];
    assert_int_equal(rz_ledger_submit(f->l, two, 2, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_OK);
    assert_int_equal(r[0].replayed, 0);
    assert_int_equal(r[1].status, RZ_OK);
    assert_int_equal(r[1].replayed, 1);
    assert_int_equal(avail(f->l, CLIENT2), 8);
    verify_ok(f->l);
}

static void test_batch_results(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    rz_ledger_op *ops = calloc(N, sizeof *ops);
    rz_ledger_result *r = calloc(N, sizeof *r);
    assert_non_null(ops);
    assert_non_null(r);
    for (int i = 0; i < N; i++) {
        ops[i].type = RZ_LEDGER_OP_TEST_CREDIT;
        ops[i].id = ID(10000 + (uint64_t)i);
        ops[i].account = i % 3 == 2 ? ID(4242) : CLIENT;
        ops[i].amount = 10;
    }
    assert_int_equal(rz_ledger_submit(f->l, ops, N, r), RZ_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].status, i % 3 == 2 ? RZ_ENOENT : RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 10 * (N - N / 3));
    rz_ledger_stats st;
    assert_int_equal(rz_ledger_stats_get(f->l, &st), RZ_OK);
    assert_int_equal(st.transfers, N - N / 3);
    free(ops);
    free(r);
    verify_ok(f->l);
}

/* A job's holds are found by job id also when they were made by an earlier
 * op of the same batch (the job index is written at the batch's end). */
static void test_job_in_one_batch(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 1000);
    const rz_ledger_id job = ID(7100);
    rz_ledger_op ops[7];
    rz_ledger_result r[7];
    memset(ops, 0, sizeof ops);
    ops[0].type = RZ_LEDGER_OP_HOLD;               /* the hold */
    ops[0].id = ID(40);
    ops[0].job = job;
    ops[0].account = CLIENT;
    ops[0].amount = 100;
    ops[1] = ops[0];                               /* a second open hold */
    ops[1].id = ID(41);
    ops[2] = ops[0];                               /* the first, replayed */
    ops[3].type = RZ_LEDGER_OP_SETTLE;             /* by job, no hold id */
    ops[3].id = ID(42);
    ops[3].job = job;
    ops[3].counterparty = NODE;
    ops[3].amount = 30;
    ops[4].type = RZ_LEDGER_OP_REFUND;             /* newest hold: posted */
    ops[4].id = ID(43);
    ops[4].job = job;
    ops[5] = ops[0];                               /* a new hold, allowed */
    ops[5].id = ID(44);
    ops[5].amount = 50;
    ops[6] = ops[4];                               /* refunds that one */
    ops[6].id = ID(45);
    assert_int_equal(rz_ledger_submit(f->l, ops, 7, r), RZ_OK);
    assert_int_equal(r[0].status, RZ_OK);
    assert_int_equal(r[1].status, RZ_EEXISTS);
    assert_int_equal(r[2].status, RZ_OK);
    assert_int_equal(r[2].replayed, 1);
    assert_int_equal(r[3].status, RZ_OK);
    assert_int_equal(r[3].amount + r[3].fee, 30);
    assert_int_equal(r[4].status, RZ_EPOSTED);
    assert_int_equal(r[5].status, RZ_OK);
    assert_int_equal(r[6].status, RZ_OK);
    assert_int_equal(r[6].amount, 50);
    assert_int_equal(avail(f->l, CLIENT), 970);
    rz_ledger_transfer page[10];
    size_t n, total;
    assert_int_equal(rz_ledger_job_transfers(f->l, job, page, 10, &n, &total),
                     RZ_OK);
    assert_int_equal(total, 6);   /* hold, settle, payout, fee, hold, void */
    static const uint32_t codes[] = {
        RZ_LEDGER_CODE_HOLD, RZ_LEDGER_CODE_SETTLE, RZ_LEDGER_CODE_PAYOUT,
        RZ_LEDGER_CODE_FEE, RZ_LEDGER_CODE_HOLD, RZ_LEDGER_CODE_REFUND,
    };
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(page[i].code, codes[i]);
        assert_true(i == 0 || page[i].seq > page[i - 1].seq);
    }
    assert_int_equal(page[4].state, RZ_LEDGER_VOIDED);
    /* The client's history, newest first, across the batch. */
    assert_int_equal(rz_ledger_history(f->l, CLIENT, 0, page, 10, &n), RZ_OK);
    assert_int_equal(n, 5);
    static const uint64_t ids[] = { 45, 44, 42, 40, 1 };
    for (size_t i = 0; i < n; i++)
        assert_true(rz_ledger_id_equal(page[i].id, ID(ids[i])));
    verify_ok(f->l);
    /* After a reopen (journal replay of the same batch) nothing differs. */
    rz_ledger_close(f->l);
    rz_ledger_opts o = test_opts();
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_history(f->l, CLIENT, 0, page, 10, &n), RZ_OK);
    assert_int_equal(n, 5);
    assert_int_equal(avail(f->l, CLIENT), 970);
    verify_ok(f->l);
}

/* ---- queries ---- */

static void test_history_and_job(void **state)
{
    fixture *f = *state;
    for (uint64_t i = 1; i <= 25; i++)
        fund(f->l, i, CLIENT, i);
    assert_int_equal(rz_ledger_hold(f->l, ID(30), JOB, CLIENT, 100, 0), RZ_OK);
    assert_int_equal(rz_ledger_settle(f->l, ID(31), JOB, NODE, 40, NULL),
                     RZ_OK);
    rz_ledger_transfer page[10];
    size_t n, seen = 0;
    uint64_t before = 0, last_seq = UINT64_MAX;
    do {
        assert_int_equal(rz_ledger_history(f->l, CLIENT, before, page, 10, &n),
                         RZ_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].seq < last_seq);   /* newest first */
            last_seq = page[i].seq;
        }
        if (seen == 0) {
            assert_true(rz_ledger_id_equal(page[0].id, ID(31)));
            assert_true(rz_ledger_id_equal(page[1].id, ID(30)));
        }
        seen += n;
        before = n ? page[n - 1].seq : 0;
    } while (n == 10);
    assert_int_equal(seen, 27);
    assert_int_equal(rz_ledger_history(f->l, ID(4242), 0, page, 10, &n),
                     RZ_OK);
    assert_int_equal(n, 0);
    size_t total;
    assert_int_equal(rz_ledger_job_transfers(f->l, JOB, page, 2, &n, &total),
                     RZ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(total, 4);
    assert_int_equal(rz_ledger_job_transfers(f->l, JOB, page, 10, &n, &total),
                     RZ_OK);
    assert_int_equal(n, 4);
    assert_int_equal(page[0].code, RZ_LEDGER_CODE_HOLD);
    assert_int_equal(page[1].code, RZ_LEDGER_CODE_SETTLE);
    assert_int_equal(page[1].amount, 40);
    assert_int_equal(page[2].code, RZ_LEDGER_CODE_PAYOUT);
    assert_int_equal(page[3].code, RZ_LEDGER_CODE_FEE);
    assert_int_equal(page[0].state, RZ_LEDGER_POSTED);
    assert_int_equal(page[0].posted_amount, 40);
    char *out = NULL;
    assert_int_equal(rz_ledger_export(f->l, 1, &out), RZ_OK);
    assert_non_null(strstr(out, "\"transfers\""));
    assert_non_null(strstr(out, "\"kind\":\"escrow\""));
    rz_free(out);
    assert_int_equal(rz_ledger_export(f->l, 0, &out), RZ_OK);
    assert_non_null(strstr(out, "account "));
    rz_free(out);
}

static void test_ids(void **state)
{
    (void)state;
    rz_ledger_id id;
    char buf[33];
    assert_int_equal(rz_ledger_id_parse("42", &id), RZ_OK);
    assert_true(id.hi == 0 && id.lo == 42);
    assert_int_equal(rz_ledger_id_parse("0xff", &id), RZ_OK);
    assert_true(id.lo == 255);
    rz_ledger_id_format(rz_ledger_id_make(0x0123456789abcdefull, 17), buf);
    assert_string_equal(buf, "0123456789abcdef0000000000000011");
    assert_int_equal(rz_ledger_id_parse(buf, &id), RZ_OK);
    assert_true(id.hi == 0x0123456789abcdefull && id.lo == 17);
    assert_int_equal(rz_ledger_id_parse("", &id), RZ_EINVAL);
    assert_int_equal(rz_ledger_id_parse("0x", &id), RZ_EINVAL);
    assert_int_equal(rz_ledger_id_parse("12a", &id), RZ_EINVAL);
    assert_int_equal(rz_ledger_id_parse("18446744073709551616", &id),
                     RZ_EINVAL);
    assert_int_equal(rz_ledger_id_parse("0x123456789012345678901234567890123",
                                        &id), RZ_EINVAL);
    rz_ledger_id a = rz_ledger_derive_id(ID(5), 1);
    rz_ledger_id b = rz_ledger_derive_id(ID(5), 2);
    assert_false(rz_ledger_id_equal(a, b));
    assert_true(rz_ledger_id_equal(a, rz_ledger_derive_id(ID(5), 1)));
}

/* ---- records ---- */

static void test_records(void **state)
{
    (void)state;
    rz_ledger_transfer t = { 0 }, u;
    t.id = ID(1);
    t.debit = CLIENT;
    t.credit = RZ_LEDGER_ESCROW_ID;
    t.amount = 5;
    t.flags = RZ_LEDGER_PENDING;
    t.state = RZ_LEDGER_OPEN;
    t.code = RZ_LEDGER_CODE_HOLD;
    t.timeout = 9;
    t.seq = 3;
    uint8_t rec[RZ__LEDGER_TRANSFER_SIZE];
    rz__ledger_transfer_encode(&t, rec);
    assert_int_equal(rz__ledger_transfer_decode(rec, sizeof rec, &u), RZ_OK);
    assert_memory_equal(&t, &u, sizeof t);
    assert_int_equal(rz__ledger_transfer_decode(rec, sizeof rec - 1, &u),
                     RZ_EINVALID);
    uint8_t bad[RZ__LEDGER_TRANSFER_SIZE];
    size_t flips[] = { 0, 1, 2, 4, 12, 120 };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(bad, rec, sizeof rec);
        bad[flips[i]] ^= 0x40;
        assert_int_not_equal(rz__ledger_transfer_decode(bad, sizeof bad, &u),
                             RZ_OK);
    }
    rz_ledger_account a = { 0 }, b;
    a.id = CLIENT;
    a.kind = RZ_LEDGER_CLIENT;
    a.flags = RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS;
    a.credits_posted = 77;
    uint8_t arec[RZ__LEDGER_ACCOUNT_SIZE];
    rz__ledger_account_encode(&a, arec);
    assert_int_equal(rz__ledger_account_decode(arec, sizeof arec, &b), RZ_OK);
    assert_memory_equal(&a, &b, sizeof a);
    arec[1] = 9;
    assert_int_not_equal(rz__ledger_account_decode(arec, sizeof arec, &b),
                         RZ_OK);
    /* Journal records: round trip, then any flipped byte is caught. */
    rz_ledger_op ops[2] = { raw(1, CLIENT, NODE, 5, 0), raw(2, NODE, CLIENT,
                                                            1, 0) };
    rz__ledger_jhdr h = { 7, 2, 500, 0 }, h2;
    size_t len = rz__ledger_record_size(2), used;
    uint8_t *buf = malloc(len);
    rz_ledger_op *dec = malloc(sizeof *dec * RZ_LEDGER_BATCH_MAX);
    rz__ledger_record_encode(&h, ops, buf);
    assert_int_equal(rz__ledger_record_decode(buf, len, &h2, dec, &used),
                     RZ_OK);
    assert_int_equal(used, len);
    assert_int_equal(h2.seq, 7);
    assert_true(rz_ledger_id_equal(dec[1].id, ops[1].id));
    assert_true(rz_ledger_id_equal(dec[1].account, NODE));
    assert_int_equal(dec[1].amount, 1);
    assert_int_equal(dec[1].code, RZ_LEDGER_CODE_USER);
    assert_int_equal(dec[1].kind, 0);
    /* A transfer's code sits where it did when code and kind were one
     * field: bytes 104..107 of the op, little-endian. */
    const uint8_t *slot = buf + RZ__LEDGER_JHDR_SIZE + RZ__LEDGER_OP_SIZE + 104;
    assert_int_equal(slot[0] | slot[1] << 8 | slot[2] << 16 |
                     (uint32_t)slot[3] << 24, RZ_LEDGER_CODE_USER);
    for (size_t i = 0; i < len; i += 7) {
        buf[i] ^= 1;
        assert_int_not_equal(rz__ledger_record_decode(buf, len, &h2, dec,
                                                      &used), RZ_OK);
        buf[i] ^= 1;
    }
    assert_int_not_equal(rz__ledger_record_decode(buf, len - 1, &h2, dec,
                                                  &used), RZ_OK);
    free(buf);
    free(dec);
}

/* Stored records carry a CRC-32C: a well-formed change is caught, and a
 * version 1 record (before checksums) is migrated, never read as it is. */
static void test_record_checksums(void **state)
{
    (void)state;
    rz_ledger_transfer t = { 0 }, u;
    t.id = ID(77);
    t.debit = CLIENT;
    t.credit = NODE;
    t.amount = 5;
    t.code = RZ_LEDGER_CODE_USER;
    uint8_t rec[RZ__LEDGER_TRANSFER_SIZE], bad[RZ__LEDGER_TRANSFER_SIZE];
    rz__ledger_transfer_encode(&t, rec);
    assert_int_equal(rz__ledger_transfer_decode(rec, sizeof rec, &u), RZ_OK);
    memcpy(bad, rec, sizeof rec);
    bad[96] ^= 1;   /* the amount */
    assert_int_equal(rz__ledger_transfer_decode(bad, sizeof bad, &u), RZ_EDB);
    assert_non_null(strstr(rz_error_last()->message, "fails its checksum"));
    memcpy(bad, rec, sizeof rec);
    bad[0] = 1;
    memset(bad + 12, 0, 4);
    assert_int_equal(rz__ledger_transfer_decode(bad, sizeof bad, &u), RZ_EDB);
    assert_int_equal(rz__ledger_record_upgrade(bad, sizeof bad), 1);
    assert_memory_equal(bad, rec, sizeof rec);
    assert_int_equal(rz__ledger_record_upgrade(bad, sizeof bad), RZ_OK);
    rz_ledger_account a = { 0 }, b;
    a.id = CLIENT;
    a.kind = RZ_LEDGER_CLIENT;
    a.credits_posted = 77;
    uint8_t arec[RZ__LEDGER_ACCOUNT_SIZE];
    rz__ledger_account_encode(&a, arec);
    arec[41] ^= 1;   /* credits_posted */
    assert_int_equal(rz__ledger_account_decode(arec, sizeof arec, &b), RZ_EDB);
    arec[41] ^= 1;
    arec[0] = 1;
    memset(arec + 64, 0, 4);
    assert_int_equal(rz__ledger_record_upgrade(arec, sizeof arec), 1);
    assert_int_equal(rz__ledger_account_decode(arec, sizeof arec, &b), RZ_OK);
    assert_int_equal(b.credits_posted, 77);
}

/* ---- persistence ---- */

static void test_reopen_and_reader(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    rz_ledger_opts o = test_opts();
    rz_ledger *second;
    assert_int_equal(rz_ledger_open(&second, f->dir, &o), RZ_ESTATE);
    assert_null(second);
    /* A reader sees the last checkpoint, never a half-applied batch. */
    assert_int_equal(rz_ledger_checkpoint(f->l), RZ_OK);
    fund(f->l, 2, CLIENT, 50);
    o.read_only = 1;
    rz_ledger *reader;
    assert_int_equal(rz_ledger_open(&reader, f->dir, &o), RZ_OK);
    assert_int_equal(avail(reader, CLIENT), 100);
    assert_int_equal(rz_ledger_verify(reader), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(reader, ID(3), CLIENT, 1),
                     RZ_ESTATE);
    assert_int_equal(rz_ledger_checkpoint(f->l), RZ_OK);
    rz_ledger_close(reader);
    assert_int_equal(rz_ledger_open(&reader, f->dir, &o), RZ_OK);
    assert_int_equal(avail(reader, CLIENT), 150);
    rz_ledger_close(reader);
    rz_ledger_close(f->l);
    o.read_only = 0;
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 150);
    /* No ledger in an empty directory for a reader. */
    o.read_only = 1;
    assert_int_equal(rz_ledger_open(&reader, "/nonexistent-rz", &o),
                     RZ_ENOENT);
    assert_int_equal(rz_ledger_open(&reader, "", &o), RZ_EINVAL);
    o.read_only = 0;
    o.fee_bps = 10001;
    assert_int_equal(rz_ledger_open(&reader, f->dir, &o), RZ_EINVAL);
    verify_ok(f->l);
}

static void test_journal_replay(void **state)
{
    fixture *f = *state;
    rz_ledger_close(f->l);
    f->l = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A writer that dies without closing: only the journal has it. */
        rz_ledger *l;
        rz_ledger_opts o = test_opts();
        o.journal_size = 4096;   /* forces checkpoints on the way */
        if (rz_ledger_open(&l, f->dir, &o) != RZ_OK)
            _exit(1);
        for (uint64_t i = 1; i <= 200; i++)
            if (rz_ledger_test_credit(l, ID(i), CLIENT, i) != RZ_OK)
                _exit(2);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rz_ledger_opts o = test_opts();
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(avail(f->l, CLIENT), 200 * 201 / 2);
    verify_ok(f->l);
}

/* ---- verify catches tampering ---- */

static void tamper(const char *dir, void (*fn)(MDB_txn *, MDB_dbi *))
{
    char path[128];
    snprintf(path, sizeof path, "%s/ledger", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[2];
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "accounts", 0, &dbi[0]), 0);
    assert_int_equal(mdb_dbi_open(txn, "transfers", 0, &dbi[1]), 0);
    fn(txn, dbi);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void bump_credits(MDB_txn *txn, MDB_dbi *dbi)
{
    uint8_t k[16], rec[RZ__LEDGER_ACCOUNT_SIZE];
    rz__ledger_id_key(CLIENT, k);
    MDB_val key = { 16, k }, val;
    assert_int_equal(mdb_get(txn, dbi[0], &key, &val), 0);
    rz_ledger_account a;
    assert_int_equal(rz__ledger_account_decode(val.mv_data, val.mv_size, &a),
                     RZ_OK);
    a.credits_posted += 1;
    rz__ledger_account_encode(&a, rec);
    val.mv_data = rec;
    val.mv_size = sizeof rec;
    assert_int_equal(mdb_put(txn, dbi[0], &key, &val, 0), 0);
}

static void add_second_void(MDB_txn *txn, MDB_dbi *dbi)
{
    rz_ledger_transfer t = { 0 };
    t.id = ID(99);
    t.debit = CLIENT;
    t.credit = RZ_LEDGER_ESCROW_ID;
    t.pending_id = ID(2);
    t.amount = 40;
    t.flags = RZ_LEDGER_VOID;
    t.code = RZ_LEDGER_CODE_REFUND;
    t.seq = 1;
    uint8_t k[16], rec[RZ__LEDGER_TRANSFER_SIZE];
    rz__ledger_id_key(t.id, k);
    rz__ledger_transfer_encode(&t, rec);
    MDB_val key = { 16, k }, val = { sizeof rec, rec };
    assert_int_equal(mdb_put(txn, dbi[1], &key, &val, 0), 0);
}

static void test_verify_breaches(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 40, 0), RZ_OK);
    assert_int_equal(rz_ledger_refund(f->l, ID(3), JOB, NULL), RZ_OK);
    verify_ok(f->l);
    rz_ledger_close(f->l);
    rz_ledger_opts o = test_opts();

    tamper(f->dir, bump_credits);
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_verify(f->l), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "credits_posted is 101"));
    assert_non_null(strstr(rz_error_last()->message,
                           "00000000000000000000000000000064"));
    rz_ledger_close(f->l);

    tamper(f->dir, add_second_void);
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_verify(f->l), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "resolved twice"));
}

/* ---- a reader skips the scan of a settled journal ---- */

static size_t preads;
static const rz__ledger_io *plain;

static ssize_t counting_pread(int fd, void *p, size_t n, off_t off)
{
    preads++;
    return plain->pread(fd, p, n, off);
}

static size_t reader_preads(const char *dir)
{
    rz__ledger_io io = *rz__ledger_io_seam;
    plain = rz__ledger_io_seam;
    io.pread = counting_pread;
    rz__ledger_io_seam = &io;
    preads = 0;
    rz_ledger_opts o = test_opts();
    o.read_only = 1;
    rz_ledger *r = NULL;
    int rc = rz_ledger_open(&r, dir, &o);
    rz__ledger_io_seam = plain;
    if (rc != RZ_OK)
        fail_msg("reader: %s", rz_error_last()->message);
    assert_int_equal(avail(r, CLIENT), 300 * 301 / 2);
    rz_ledger_close(r);
    return preads;
}

/* After a clean close the marker names LMDB's last batch and a record of
 * the round before lies after it: a reader reads those two, not the whole
 * journal. A writer that died with batches only in the journal leaves a
 * record of this round there: the reader scans, as a writer always does. */
static void test_reader_skips_a_settled_journal(void **state)
{
    fixture *f = *state;
    for (uint64_t i = 1; i <= 300; i++)
        fund(f->l, i, CLIENT, i);
    rz_ledger_close(f->l);
    f->l = NULL;
    size_t settled = reader_preads(f->dir);
    assert_true(settled <= 8);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rz_ledger *l;
        rz_ledger_opts o = test_opts();
        if (rz_ledger_open(&l, f->dir, &o) != RZ_OK ||
            rz_ledger_test_credit(l, ID(999), CLIENT2, 1) != RZ_OK)
            _exit(1);
        _exit(0);   /* no close: the batch is in the journal only */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(reader_preads(f->dir) > 8 * settled);
    rz_ledger_opts o = test_opts();
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(avail(f->l, CLIENT2), 1);
}

/* ---- the open-transfer index (per-account caps count from it) ---- */

static uint64_t open_n(rz_ledger *l, rz_ledger_id acct, uint32_t code)
{
    uint64_t n = 99;
    if (rz_ledger_open_count(l, acct, code, &n) != RZ_OK)
        fail_msg("open count: %s", rz_error_last()->message);
    return n;
}

static int deposit_timed(rz_ledger *l, uint64_t id, uint64_t timeout)
{
    rz_ledger_op op = { 0 };
    op.type = RZ_LEDGER_OP_DEPOSIT_REQUEST;
    op.id = ID(id);
    op.account = CLIENT;
    op.amount = 5;
    op.timeout = timeout;
    rz_ledger_result r;
    int rc = rz_ledger_submit(l, &op, 1, &r);
    return rc == RZ_OK ? r.status : rc;
}

static void drop_open_index(MDB_txn *txn, MDB_dbi *dbi)
{
    (void)dbi;
    MDB_dbi open, meta;
    assert_int_equal(mdb_dbi_open(txn, "open", 0, &open), 0);
    assert_int_equal(mdb_drop(txn, open, 1), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val key = { 10, "open_index" };
    assert_int_equal(mdb_del(txn, meta, &key, NULL), 0);
}

static void lose_open_entry(MDB_txn *txn, MDB_dbi *dbi)
{
    (void)dbi;
    MDB_dbi open;
    assert_int_equal(mdb_dbi_open(txn, "open", MDB_DUPSORT | MDB_DUPFIXED,
                                  &open), 0);
    uint8_t k[20], v[16];
    rz__ledger_open_key(CLIENT, RZ_LEDGER_CODE_DEPOSIT, k);
    rz__ledger_id_key(ID(1000), v);
    MDB_val key = { sizeof k, k }, val = { sizeof v, v };
    assert_int_equal(mdb_del(txn, open, &key, &val), 0);
}

/* Exact counts across request, confirm, cancel, expiry, replay and the
 * migration of a directory from before the index; thousands of resolved
 * requests do not hide an open one (the quota bypass of issue 14). */
static void test_open_index(void **state)
{
    fixture *f = *state;
    const uint32_t DEP = RZ_LEDGER_CODE_DEPOSIT, WD = RZ_LEDGER_CODE_WITHDRAW;
    assert_int_equal(deposit_timed(f->l, 1000, 0), RZ_OK);
    assert_int_equal(deposit_timed(f->l, 1001, 0), RZ_OK);
    assert_int_equal(deposit_timed(f->l, 1002, 50), RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, DEP), 3);
    assert_int_equal(open_n(f->l, RZ_LEDGER_EXTERNAL_ID, DEP), 3);
    assert_int_equal(open_n(f->l, CLIENT2, DEP), 0);
    assert_int_equal(open_n(f->l, CLIENT, WD), 0);
    for (uint64_t i = 0; i < 3000; i++) {
        assert_int_equal(deposit_timed(f->l, 2000 + 2 * i, 0), RZ_OK);
        assert_int_equal(rz_ledger_deposit_cancel(f->l, ID(2001 + 2 * i),
                                                  ID(2000 + 2 * i)), RZ_OK);
    }
    assert_int_equal(open_n(f->l, CLIENT, DEP), 3);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1100), ID(1001)),
                     RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, DEP), 2);
    uint64_t n = 0;
    assert_int_equal(rz_ledger_tick(f->l, 50, &n), RZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(open_n(f->l, CLIENT, DEP), 1);
    /* Withdrawals and holds count under their own codes. */
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(1200), CLIENT, 2),
                     RZ_OK);
    assert_int_equal(rz_ledger_withdraw_request(f->l, ID(1201), CLIENT, 2),
                     RZ_OK);
    assert_int_equal(rz_ledger_hold(f->l, ID(1202), JOB, CLIENT, 1, 0), RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, WD), 2);
    assert_int_equal(open_n(f->l, CLIENT, RZ_LEDGER_CODE_HOLD), 1);
    assert_int_equal(rz_ledger_withdraw_complete(f->l, ID(1203), ID(1200)),
                     RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, WD), 1);
    assert_int_equal(rz_ledger_settle(f->l, ID(1204), JOB, NODE, 1, NULL),
                     RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, RZ_LEDGER_CODE_HOLD), 0);
    verify_ok(f->l);
    /* Replayed from the journal (no checkpoint since) and after one. */
    rz_ledger_opts o = test_opts();
    rz_ledger_close(f->l);
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, DEP), 1);
    assert_int_equal(open_n(f->l, CLIENT, WD), 1);
    verify_ok(f->l);
    rz_ledger_close(f->l);
    f->l = NULL;
    /* An older directory: a reader says the index is not there yet, a
     * writer builds it. */
    tamper(f->dir, drop_open_index);
    o.read_only = 1;
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_open_count(f->l, CLIENT, DEP, &n),
                     RZ_EUNSUPPORTED);
    verify_ok(f->l);
    rz_ledger_close(f->l);
    o.read_only = 0;
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(open_n(f->l, CLIENT, DEP), 1);
    assert_int_equal(open_n(f->l, RZ_LEDGER_EXTERNAL_ID, WD), 1);
    verify_ok(f->l);
    rz_ledger_close(f->l);
    /* verify sees an index that lost an entry. */
    tamper(f->dir, lose_open_entry);
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_verify(f->l), RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "open-transfer index"));
    assert_int_equal(rz_ledger_verify_sample(f->l, 1), RZ_EINVALID);
}

/* ---- each index checked by verify's one walk ---- */

static const char *tamper_table;
static uint8_t taken_k[64], taken_v[64];
static size_t taken_kl, taken_vl;

static MDB_dbi table(MDB_txn *txn)
{
    MDB_dbi t;
    unsigned dup = strcmp(tamper_table, "open") == 0 ? MDB_DUPSORT | MDB_DUPFIXED : 0;
    assert_int_equal(mdb_dbi_open(txn, tamper_table, dup, &t), 0);
    return t;
}

/* The table's first entry, kept to be given back. */
static void take_first(MDB_txn *txn, MDB_dbi *dbi)
{
    (void)dbi;
    MDB_dbi t = table(txn);
    MDB_cursor *cur;
    MDB_val key, val;
    assert_int_equal(mdb_cursor_open(txn, t, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_true(key.mv_size <= sizeof taken_k && val.mv_size <= sizeof taken_v);
    memcpy(taken_k, key.mv_data, taken_kl = key.mv_size);
    memcpy(taken_v, val.mv_data, taken_vl = val.mv_size);
    mdb_cursor_close(cur);
    key = (MDB_val){ taken_kl, taken_k };
    val = (MDB_val){ taken_vl, taken_v };
    assert_int_equal(mdb_del(txn, t, &key, &val), 0);
}

static void give_back(MDB_txn *txn, MDB_dbi *dbi)
{
    (void)dbi;
    MDB_val key = { taken_kl, taken_k }, val = { taken_vl, taken_v };
    assert_int_equal(mdb_put(txn, table(txn), &key, &val, 0), 0);
}

/* An entry lost from any of the four indexes is named by verify (the one
 * walk they share), and the ledger verifies again once it is back. */
static void test_verify_each_index(void **state)
{
    fixture *f = *state;
    fund(f->l, 1, CLIENT, 100);
    assert_int_equal(rz_ledger_hold(f->l, ID(2), JOB, CLIENT, 40, 0), RZ_OK);
    assert_int_equal(deposit_timed(f->l, 1000, 50), RZ_OK);
    verify_ok(f->l);
    rz_ledger_close(f->l);
    rz_ledger_opts o = test_opts();
    static const char *const tables[][2] = {
        { "history", "history index has 5 entries, 6 expected (two per transfer)" },
        { "jobs", "job index has 0 entries, 1 expected" },
        { "expiry", "expiry index has 0 entries, 1 expected" },
        { "open", "open-transfer index has 3 entries, 4 expected" },
    };
    for (size_t i = 0; i < 4; i++) {
        tamper_table = tables[i][0];
        tamper(f->dir, take_first);
        assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
        assert_int_equal(rz_ledger_verify(f->l), RZ_EINVALID);
        if (!strstr(rz_error_last()->message, tables[i][1]))
            fail_msg("%s: %s", tables[i][0], rz_error_last()->message);
        rz_ledger_close(f->l);
        tamper(f->dir, give_back);
        assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
        verify_ok(f->l);
        rz_ledger_close(f->l);
    }
    assert_int_equal(rz_ledger_open(&f->l, f->dir, &o), RZ_OK);
}

/* A ledger that is not durable (embedded runs, on /dev/shm) sheds its map
 * by the page faults of its own batches: faults elsewhere in the process
 * (here 4,096 of fresh memory) and a few batches that fault little leave
 * its pages mapped, where shedding every 16 ops, or by the process's
 * faults, unmapped them after one of these batches. (Under ASan a batch's
 * allocations fault enough to shed by the rule.) */
static void test_shed_by_own_faults(void **state)
{
    fixture *f = *state;
    assert_non_null(f->l->map);
    assert_int_equal(rz_ledger_deposit_request(f->l, ID(1000), CLIENT, 1000000),
                     RZ_OK);
    assert_int_equal(rz_ledger_deposit_confirm(f->l, ID(1001), ID(1000)), RZ_OK);
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(rz_ledger_deposit_request(f->l, ID(2000 + i), CLIENT, 1),
                         RZ_OK);
    size_t before = pages_present(f->l->map, 64);
    assert_true(before > 0);
    fault_elsewhere();
    uint64_t own = f->l->shed_faults;   /* its batches' since its last shed */
    for (uint64_t i = 0; i < 24; i++) {   /* a shed would show after its batch */
        uint64_t f0 = faults_now();
        assert_int_equal(rz_ledger_deposit_request(f->l, ID(3000 + i), CLIENT, 1),
                         RZ_OK);
        own += faults_now() - f0;
        assert_true(pages_present(f->l->map, 64) >= before || own >= 128);
    }
}

static void test_id_equal(void **state)
{
    (void)state;
    assert_true(rz_ledger_id_equal(rz_ledger_id_make(1, 2), rz_ledger_id_make(1, 2)));
    assert_false(rz_ledger_id_equal(rz_ledger_id_make(1, 2), rz_ledger_id_make(2, 1)));
    assert_false(rz_ledger_id_equal(rz_ledger_id_make(0, 2), rz_ledger_id_make(1, 2)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_equal),
        cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shed_by_own_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deposit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deposit_expiry_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_settle_fee, setup, teardown),
        cmocka_unit_test(test_fee_rounding),
        cmocka_unit_test_setup_teardown(test_settle_rejections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_settle_by_hold_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_each_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdraw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linked_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_in_one_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_history_and_job, setup, teardown),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_record_checksums),
        cmocka_unit_test_setup_teardown(test_reopen_and_reader, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_journal_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_skips_a_settled_journal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_breaches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
