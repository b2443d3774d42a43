/* Account and payment routes over the engine's ledger. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "orch.h"

#define AMOUNT_MAX ((uint64_t)1 << 53)
#define HISTORY_MAX 100

static bool same_id(rz_ledger_id a, rz_ledger_id b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static void add_hex(cJSON *o, const char *k, rz_ledger_id id)
{
    char buf[33];
    rz_ledger_id_format(id, buf);
    cJSON_AddStringToObject(o, k, buf);
}

/* The account of the path ("me" too) if the caller may see it: its own,
 * or any for the admin. Others answer 404 like missing ones. */
static bool visible_account(req *q, rz_ledger_id *id, rz_ledger_account *a)
{
    if (strcmp(q->params[0], "me") == 0 && q->who.kind != P_ADMIN)
        *id = q->who.account;
    else if (!param_account(q, 0, id))
        return false;
    bool mine = q->who.kind == P_ADMIN || same_id(*id, q->who.account);
    if (!mine || rz_ledger_balance(rz_engine_ledger(q->o->e), *id, a) != RZ_OK ||
        (a->kind != RZ_LEDGER_CLIENT && a->kind != RZ_LEDGER_NODE)) {
        reply_error(q, RZ_ENOENT, "no account %s", q->params[0]);
        return false;
    }
    return true;
}

static cJSON *account_json(const rz_ledger_account *a)
{
    cJSON *o = cJSON_CreateObject();
    add_hex(o, "id", a->id);
    cJSON_AddStringToObject(o, "kind", a->kind == RZ_LEDGER_NODE ? "node" : "client");
    cJSON_AddNumberToObject(o, "balance_cents", (double)rz_ledger_available(a));
    cJSON_AddNumberToObject(o, "pending_cents", (double)a->debits_pending);
    cJSON_AddNumberToObject(o, "credits_cents", (double)a->credits_posted);
    cJSON_AddNumberToObject(o, "debits_cents", (double)a->debits_posted);
    return o;
}

void r_account_create(req *q)
{
    static const char *const fields[] = { "name", "wallet_address", NULL };
    const char *name, *wallet;
    if (!body_fields(q, fields) || !body_str(q, "name", false, &name) ||
        !body_str(q, "wallet_address", false, &wallet))
        return;
    if ((name && strlen(name) > 200) || (wallet && strlen(wallet) > 200)) {
        reply_error(q, RZ_EINVAL, "name and wallet_address hold at most 200 bytes");
        return;
    }
    rz_ledger_id id = auth_random_id();
    principal p = { P_CLIENT, id, 0 };
    char key[80];
    auth_new_key("rzk_", key, sizeof key);
    /* The key first: an account nobody can reach is harmless, a key to no
     * account is refused at use. */
    int rc = auth_put_key(q->o, key, &p);
    if (rc == RZ_OK)
        rc = rz_ledger_create_account(rz_engine_ledger(q->o->e), id, RZ_LEDGER_CLIENT);
    if (rc == RZ_OK)
        rc = auth_put_account(q->o, id, name, wallet);
    if (rc != RZ_OK) {
        sodium_memzero(key, sizeof key);
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    add_hex(doc, "id", id);
    cJSON_AddStringToObject(doc, "api_key", key);
    sodium_memzero(key, sizeof key);
    reply_json(q, 201, doc);
}

void r_account_get(req *q)
{
    rz_ledger_id id;
    rz_ledger_account a;
    if (visible_account(q, &id, &a))
        reply_json(q, 200, account_json(&a));
}

static bool amount(req *q, uint64_t *out)
{
    if (!body_u64(q, "amount_cents", true, AMOUNT_MAX, out, NULL))
        return false;
    if (!*out)
        reply_error(q, RZ_EINVAL, "\"amount_cents\" must be at least 1");
    return *out != 0;
}

/* Below the account's cap of open `code` transfers (deposit requests or
 * withdrawals)? Else answered 429. Requests past their time are expired
 * first, so they never hold a place. */
static bool below_cap(req *q, rz_ledger_id id, uint32_t code, unsigned cap,
                      const char *what)
{
    size_t n = quota_open_count(q->o, id, code);
    if (n >= cap && code == RZ_LEDGER_CODE_DEPOSIT) {
        quota_expire(q->o, true);
        n = quota_open_count(q->o, id, code);
    }
    if (n == SIZE_MAX) {
        reply_rz(q, RZ_ENOMEM);
        return false;
    }
    if (n >= cap) {
        reply_limit(q, "this account has %zu open %s; at most %u", n, what, cap);
        return false;
    }
    return true;
}

void r_account_deposit(req *q)
{
    static const char *const fields[] = { "amount_cents", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t cents;
    const orch_opts *op = &q->o->opts;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) || !amount(q, &cents))
        return;
    if (cents > op->deposit_max_cents) {
        reply_error(q, RZ_EINVAL, "\"amount_cents\": one deposit request is at "
                    "most %llu cents", (unsigned long long)op->deposit_max_cents);
        return;
    }
    if (!below_cap(q, id, RZ_LEDGER_CODE_DEPOSIT, op->open_deposits,
                   "deposit requests (cancel one or let it expire)"))
        return;
    /* Unpaid, it expires: no request holds the shared external account's
     * totals for good. */
    uint64_t expires = orch_now_ms() + op->deposit_ttl_s * 1000u;
    rz_ledger_id dep = auth_random_id();
    rz_ledger_op lop;
    memset(&lop, 0, sizeof lop);
    lop.type = RZ_LEDGER_OP_DEPOSIT_REQUEST;
    lop.id = dep;
    lop.account = id;
    lop.amount = cents;
    lop.timeout = expires;
    rz_ledger_result res;
    int rc = rz_ledger_submit(rz_engine_ledger(q->o->e), &lop, 1, &res);
    if (rc == RZ_OK)
        rc = res.status;
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    char hex[33], addr[64];
    rz_ledger_id_format(dep, hex);
    snprintf(addr, sizeof addr, "rhizos-deposit:%s", hex);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "deposit_id", hex);
    add_hex(doc, "account", id);
    cJSON_AddNumberToObject(doc, "amount_cents", (double)cents);
    cJSON_AddStringToObject(doc, "address", addr);
    cJSON_AddStringToObject(doc, "status", "pending");
    cJSON_AddNumberToObject(doc, "expires_at_ms", (double)expires);
    reply_json(q, 201, doc);
}

void r_account_credit(req *q)
{
    static const char *const fields[] = { "amount_cents", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t cents;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) || !amount(q, &cents))
        return;
    if (a.kind != RZ_LEDGER_CLIENT) {
        reply_error(q, RZ_EINVAL, "test credits go to client accounts");
        return;
    }
    rz_ledger *l = rz_engine_ledger(q->o->e);
    int rc = rz_ledger_test_credit(l, auth_random_id(), id, cents);
    if (rc == RZ_OK)
        rc = rz_ledger_balance(l, id, &a);
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_json(q, 200, account_json(&a));
}

void r_account_withdraw(req *q)
{
    static const char *const fields[] = { "amount_cents", "address", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t cents;
    const char *address;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) ||
        !amount(q, &cents) || !body_str(q, "address", false, &address))
        return;
    /* Jobs submitted earlier in this pass hold their money only at the
     * pass's commit: leave it to them. */
    uint64_t pending = rz_engine_group_pending(q->o->e, id);
    uint64_t avail = rz_ledger_available(&a);
    if (!below_cap(q, id, RZ_LEDGER_CODE_WITHDRAW, q->o->opts.pending_withdrawals,
                   "withdrawals"))
        return;
    if (pending && (avail < pending || cents > avail - pending)) {
        reply_error(q, RZ_EFUNDS, "%llu cents available after the jobs just "
                    "submitted, %llu asked", (unsigned long long)
                    (avail > pending ? avail - pending : 0), (unsigned long long)cents);
        return;
    }
    rz_ledger_id w = auth_random_id();
    int rc = rz_ledger_withdraw_request(rz_engine_ledger(q->o->e), w, id, cents);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    add_hex(doc, "withdrawal_id", w);
    cJSON_AddNumberToObject(doc, "amount_cents", (double)cents);
    cJSON_AddStringToObject(doc, "status", "pending");
    reply_json(q, 201, doc);
}

static const char *kind_name(uint32_t code)
{
    static const char *const names[] = { "transfer", "deposit", "deposit_confirm",
        "test_credit", "hold", "settle", "payout", "fee", "refund", "withdraw",
        "withdraw_complete", "withdraw_cancel", "expire", "deposit_cancel" };
    return code < sizeof names / sizeof names[0] ? names[code] : "transfer";
}

static const char *transfer_status(const rz_ledger_transfer *t)
{
    switch (t->state) {
    case RZ_LEDGER_OPEN: return "pending";
    case RZ_LEDGER_POSTED: return "posted";
    case RZ_LEDGER_VOIDED: return "voided";
    case RZ_LEDGER_EXPIRED: return "expired";
    default: return "done";
    }
}

void r_account_payments(req *q)
{
    rz_ledger_id id;
    rz_ledger_account a;
    if (!visible_account(q, &id, &a))
        return;
    rz_ledger_transfer t[HISTORY_MAX];
    size_t n = 0;
    int rc = rz_ledger_history(rz_engine_ledger(q->o->e), id, 0, t, HISTORY_MAX, &n);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "payments");
    for (size_t i = 0; i < n; i++) {
        cJSON *p = cJSON_CreateObject();
        add_hex(p, "id", t[i].id);
        cJSON_AddNumberToObject(p, "seq", (double)t[i].seq);
        cJSON_AddStringToObject(p, "kind", kind_name(t[i].code));
        cJSON_AddNumberToObject(p, "amount_cents", (double)t[i].amount);
        add_hex(p, "debit", t[i].debit);
        add_hex(p, "credit", t[i].credit);
        if (same_id(t[i].job, rz_engine_job_ledger_id(t[i].job.lo)) && t[i].job.lo)
            cJSON_AddNumberToObject(p, "job", (double)t[i].job.lo);
        cJSON_AddStringToObject(p, "status", transfer_status(&t[i]));
        cJSON_AddItemToArray(arr, p);
    }
    reply_json(q, 200, doc);
}

void r_payments_stats(req *q)
{
    rz_ledger_stats s;
    int rc = rz_ledger_stats_get(rz_engine_ledger(q->o->e), &s);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "fees_cents", (double)s.fees_cents);
    cJSON_AddNumberToObject(doc, "volume_cents", (double)orch_volume_cents(q->o));
    cJSON_AddNumberToObject(doc, "held_cents", (double)s.escrow_held_cents);
    cJSON_AddNumberToObject(doc, "deposits_cents", (double)s.deposited_cents);
    cJSON_AddNumberToObject(doc, "withdrawals_cents", (double)s.withdrawn_cents);
    cJSON_AddNumberToObject(doc, "accounts", (double)s.accounts);
    cJSON_AddNumberToObject(doc, "transfers", (double)s.transfers);
    reply_json(q, 200, doc);
}

void r_deposit_confirm(req *q)
{
    rz_ledger_id dep;
    if (!param_account(q, 0, &dep))
        return;
    rz_ledger *l = rz_engine_ledger(q->o->e);
    rz_ledger_transfer t;
    if (rz_ledger_transfer_get(l, dep, &t) != RZ_OK ||
        t.code != RZ_LEDGER_CODE_DEPOSIT) {
        reply_error(q, RZ_ENOENT, "no deposit %s", q->params[0]);
        return;
    }
    /* One past its time is expired first, never confirmed. */
    if (t.timeout && t.timeout <= orch_now_ms() && t.state == RZ_LEDGER_OPEN)
        quota_expire(q->o, true);
    /* A fixed id for the confirmation makes a repeat a replay. */
    int rc = rz_ledger_deposit_confirm(l, rz_ledger_derive_id(dep, 16), dep);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "deposit_id", q->params[0]);
    cJSON_AddStringToObject(doc, "status", "confirmed");
    cJSON_AddNumberToObject(doc, "amount_cents", (double)t.amount);
    reply_json(q, 200, doc);
}

/* DELETE /api/v1/deposits/{id}: the account's owner (or the admin) takes
 * back a deposit request nobody paid. Others' requests are 404 like
 * missing ones. */
void r_deposit_cancel(req *q)
{
    rz_ledger_id dep;
    if (!param_account(q, 0, &dep))
        return;
    rz_ledger *l = rz_engine_ledger(q->o->e);
    rz_ledger_transfer t;
    if (rz_ledger_transfer_get(l, dep, &t) != RZ_OK ||
        t.code != RZ_LEDGER_CODE_DEPOSIT ||
        (q->who.kind != P_ADMIN && !same_id(t.credit, q->who.account))) {
        reply_error(q, RZ_ENOENT, "no deposit %s", q->params[0]);
        return;
    }
    int rc = rz_ledger_deposit_cancel(l, rz_ledger_derive_id(dep, 17), dep);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "deposit_id", q->params[0]);
    cJSON_AddStringToObject(doc, "status", "cancelled");
    cJSON_AddNumberToObject(doc, "amount_cents", (double)t.amount);
    reply_json(q, 200, doc);
}
