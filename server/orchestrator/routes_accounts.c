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
    cJSON_AddNumberToObject(o, "balance_micros", (double)rz_ledger_available(a));
    cJSON_AddNumberToObject(o, "pending_micros", (double)a->debits_pending);
    cJSON_AddNumberToObject(o, "credits_micros", (double)a->credits_posted);
    cJSON_AddNumberToObject(o, "debits_micros", (double)a->debits_posted);
    return o;
}

void r_account_create(req *q)
{
    static const char *const fields[] = { "name", "wallet_address", NULL };
    const char *name, *wallet;
    if (!body_fields(q, fields) || !body_str(q, "name", false, &name) ||
        !body_str(q, "wallet_address", false, &wallet))
        return;
    if ((name && strlen(name) > 200) || (wallet && strlen(wallet) > RZ_AUTH_WALLET_MAX)) {
        reply_error(q, RZ_EINVAL, "name and wallet_address hold at most 200 bytes");
        return;
    }
    if (wallet && !*wallet) {
        reply_error(q, RZ_EINVAL, "\"wallet_address\" must not be empty");
        return;
    }
    /* One account per external reference: a repeat answers the account
     * made first (200, no new key: keys are never stored). */
    rz_ledger_id id;
    if (wallet && rz_auth_wallet_account(q->o->auth, wallet, &id) == RZ_OK) {
        cJSON *doc = cJSON_CreateObject();
        add_hex(doc, "id", id);
        cJSON_AddStringToObject(doc, "wallet_address", wallet);
        cJSON_AddBoolToObject(doc, "existing", true);
        reply_json(q, 200, doc);
        return;
    }
    rz_error_clear();
    id = auth_random_id();
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

static bool withdrawal_note(orch *o, rz_ledger_id w, cJSON *rec);

static bool amount(req *q, uint64_t *out)
{
    if (!body_u64(q, "amount_micros", true, AMOUNT_MAX, out, NULL))
        return false;
    if (!*out)
        reply_error(q, RZ_EINVAL, "\"amount_micros\" must be at least 1");
    return *out != 0;
}

/* Below the account's cap of open `code` transfers (deposit requests or
 * withdrawals)? Else answered 429. Requests past their time are expired
 * first, so they never hold a place. */
static bool below_cap(req *q, rz_ledger_id id, uint32_t code, unsigned cap,
                      const char *what)
{
    uint64_t n = 0;
    int rc = quota_open_count(q->o, id, code, &n);
    if (rc == RZ_OK && n >= cap && code == RZ_LEDGER_CODE_DEPOSIT) {
        quota_expire(q->o, true);
        rc = quota_open_count(q->o, id, code, &n);
    }
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return false;
    }
    if (n >= cap) {
        reply_limit(q, 0, "this account has %llu open %s; at most %u",
                    (unsigned long long)n, what, cap);
        return false;
    }
    return true;
}

void r_account_deposit(req *q)
{
    static const char *const fields[] = { "amount_micros", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t micros;
    const orch_opts *op = &q->o->opts;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) || !amount(q, &micros))
        return;
    if (micros > op->deposit_max_micros) {
        reply_error(q, RZ_EINVAL, "\"amount_micros\": one deposit request is at "
                    "most %llu micros", (unsigned long long)op->deposit_max_micros);
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
    lop.amount = micros;
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
    cJSON_AddNumberToObject(doc, "amount_micros", (double)micros);
    cJSON_AddStringToObject(doc, "address", addr);
    cJSON_AddStringToObject(doc, "status", "pending");
    cJSON_AddNumberToObject(doc, "expires_at_ms", (double)expires);
    reply_json(q, 201, doc);
}

void r_account_credit(req *q)
{
    static const char *const fields[] = { "amount_micros", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t micros;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) || !amount(q, &micros))
        return;
    if (a.kind != RZ_LEDGER_CLIENT) {
        reply_error(q, RZ_EINVAL, "test credits go to client accounts");
        return;
    }
    rz_ledger *l = rz_engine_ledger(q->o->e);
    int rc = rz_ledger_test_credit(l, auth_random_id(), id, micros);
    if (rc == RZ_OK)
        rc = rz_ledger_balance(l, id, &a);
    if (rc != RZ_OK)
        reply_rz(q, rc);
    else
        reply_json(q, 200, account_json(&a));
}

void r_account_withdraw(req *q)
{
    static const char *const fields[] = { "amount_micros", "address", NULL };
    rz_ledger_id id;
    rz_ledger_account a;
    uint64_t micros;
    const char *address;
    if (!visible_account(q, &id, &a) || !body_fields(q, fields) ||
        !amount(q, &micros) || !body_str(q, "address", false, &address))
        return;
    if (!below_cap(q, id, RZ_LEDGER_CODE_WITHDRAW, q->o->opts.pending_withdrawals,
                   "withdrawals"))
        return;
    /* Through the engine: what this pass's jobs hold at its commit and what
     * running services owe stay (the engine's one "available"). */
    rz_ledger_id w = auth_random_id();
    int rc = rz_engine_withdraw(q->o->e, w, id, micros);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    /* The address beside the ledger's record; a crash before this put
     * leaves a withdrawal without one, still listed and resolvable. */
    cJSON *rec = cJSON_CreateObject();
    if (address)
        cJSON_AddStringToObject(rec, "address", address);
    cJSON_AddNumberToObject(rec, "requested_ms", (double)orch_now_ms());
    withdrawal_note(q->o, w, rec);
    cJSON *doc = cJSON_CreateObject();
    add_hex(doc, "withdrawal_id", w);
    cJSON_AddNumberToObject(doc, "amount_micros", (double)micros);
    cJSON_AddStringToObject(doc, "status", "pending");
    char wid[33];
    rz_ledger_id_format(w, wid);
    orch_log(q->o, ORCH_LOG_INFO, "withdrawal", "withdrawal", LOG_STR, wid,
             "amount_micros", LOG_U64, (uint64_t)micros, "status", LOG_STR, "pending",
             NULL);
    reply_json(q, 201, doc);
}

/* ---- withdrawals: pending -> completed | cancelled | failed ---- */

/* Ids of the resolving transfers: fixed, so a retry is a replay and the
 * other resolution is refused by the ledger. */
#define W_COMPLETE 17
#define W_FAIL 18
#define W_CANCEL 19

static bool withdrawal_note(orch *o, rz_ledger_id w, cJSON *rec)
{
    char *text = rec ? cJSON_PrintUnformatted(rec) : NULL;
    cJSON_Delete(rec);
    int rc = text ? rz_auth_withdrawal_put(o->auth, w, text) : RZ_ENOMEM;
    free(text);
    return rc == RZ_OK;
}

static cJSON *withdrawal_rec(orch *o, rz_ledger_id w)
{
    char *text = NULL;
    cJSON *rec = rz_auth_withdrawal_get(o->auth, w, &text) == RZ_OK
        ? cJSON_Parse(text) : NULL;
    free(text);
    rz_error_clear();
    return cJSON_IsObject(rec) ? rec : (cJSON_Delete(rec), cJSON_CreateObject());
}

static const char *withdrawal_status(const rz_ledger_transfer *t, const cJSON *rec)
{
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "status"));
    switch (t->state) {
    case RZ_LEDGER_OPEN: return "pending";
    case RZ_LEDGER_POSTED: return "completed";
    case RZ_LEDGER_VOIDED: return st && !strcmp(st, "failed") ? "failed" : "cancelled";
    default: return "expired";
    }
}

static cJSON *withdrawal_json(orch *o, const rz_ledger_transfer *t)
{
    cJSON *rec = withdrawal_rec(o, t->id);
    cJSON *doc = cJSON_CreateObject();
    add_hex(doc, "id", t->id);
    add_hex(doc, "account", t->debit);
    cJSON_AddNumberToObject(doc, "amount_micros", (double)t->amount);
    cJSON_AddStringToObject(doc, "status", withdrawal_status(t, rec));
    cJSON_AddNumberToObject(doc, "seq", (double)t->seq);
    static const char *const keep[] = { "address", "tx", "reason", "requested_ms",
                                        "resolved_ms" };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, keep[i]);
        if (v)
            cJSON_AddItemToObject(doc, keep[i], cJSON_Duplicate(v, 1));
    }
    cJSON_Delete(rec);
    return doc;
}

/* The withdrawal of the path if the caller may see it (its account's
 * owner, or the admin); others get 404 like missing ones. */
static bool visible_withdrawal(req *q, rz_ledger_id *w, rz_ledger_transfer *t)
{
    if (!param_account(q, 0, w))
        return false;
    if (rz_ledger_transfer_get(rz_engine_ledger(q->o->e), *w, t) != RZ_OK ||
        t->code != RZ_LEDGER_CODE_WITHDRAW ||
        (q->who.kind != P_ADMIN && !same_id(t->debit, q->who.account))) {
        rz_error_clear();
        reply_error(q, RZ_ENOENT, "no withdrawal %s", q->params[0]);
        return false;
    }
    return true;
}

/* Withdrawals touching an account, newest first (up to HISTORY_MAX). */
static void withdrawals_reply(req *q, rz_ledger_id account)
{
    rz_ledger *l = rz_engine_ledger(q->o->e);
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "withdrawals");
    rz_ledger_transfer t[HISTORY_MAX];
    uint64_t before = 0;
    int found = 0;
    for (int pages = 0; pages < 100 && found < HISTORY_MAX; pages++) {
        size_t n = 0;
        int rc = rz_ledger_history(l, account, before, t, HISTORY_MAX, &n);
        if (rc != RZ_OK) {
            cJSON_Delete(doc);
            reply_rz(q, rc);
            return;
        }
        for (size_t i = 0; i < n && found < HISTORY_MAX; i++)
            if (t[i].code == RZ_LEDGER_CODE_WITHDRAW) {
                cJSON_AddItemToArray(arr, withdrawal_json(q->o, &t[i]));
                found++;
            }
        if (n < HISTORY_MAX)
            break;
        before = t[n - 1].seq;
    }
    reply_json(q, 200, doc);
}

void r_account_withdrawals(req *q)
{
    rz_ledger_id id;
    rz_ledger_account a;
    if (visible_account(q, &id, &a))
        withdrawals_reply(q, id);
}

void r_withdrawals_list(req *q)
{
    withdrawals_reply(q, RZ_LEDGER_EXTERNAL_ID);
}

void r_withdrawal_get(req *q)
{
    rz_ledger_id w;
    rz_ledger_transfer t;
    if (visible_withdrawal(q, &w, &t))
        reply_json(q, 200, withdrawal_json(q->o, &t));
}

/* Resolve withdrawal w as `status` (completed, failed, cancelled) with
 * the ledger's post or void; the same call again answers the same. */
static void withdrawal_resolve(req *q, const char *status, uint32_t n,
                               const char *tx, const char *reason)
{
    rz_ledger_id w;
    rz_ledger_transfer t;
    if (!visible_withdrawal(q, &w, &t))
        return;
    rz_ledger *l = rz_engine_ledger(q->o->e);
    cJSON *rec = withdrawal_rec(q->o, w);
    const char *had = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "tx"));
    bool done = !strcmp(withdrawal_status(&t, rec), status) && t.state != RZ_LEDGER_OPEN;
    if (done && tx && had && strcmp(had, tx)) {
        cJSON_Delete(rec);
        reply_error(q, RZ_ESTATE, "withdrawal %s is already %s with another "
                    "transaction reference", q->params[0], status);
        return;
    }
    int rc = RZ_OK;
    if (!done) {
        rz_ledger_id rid = rz_ledger_derive_id(w, n);
        rc = n == W_COMPLETE ? rz_ledger_withdraw_complete(l, rid, w)
                             : rz_ledger_withdraw_cancel(l, rid, w);
    }
    if (rc == RZ_EPOSTED || rc == RZ_EVOIDED) {
        reply_error(q, RZ_ESTATE, rc == RZ_EPOSTED
                    ? "withdrawal %s is completed: it can no longer be cancelled or fail"
                    : "withdrawal %s was cancelled or failed: its money is back in "
                      "the account", q->params[0]);
        cJSON_Delete(rec);
        return;
    }
    if (rc != RZ_OK) {
        cJSON_Delete(rec);
        reply_rz(q, rc);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "status");
    cJSON_AddStringToObject(rec, "status", status);
    if (tx && !had)
        cJSON_AddStringToObject(rec, "tx", tx);
    if (reason && !cJSON_GetObjectItemCaseSensitive(rec, "reason"))
        cJSON_AddStringToObject(rec, "reason", reason);
    if (!cJSON_GetObjectItemCaseSensitive(rec, "resolved_ms"))
        cJSON_AddNumberToObject(rec, "resolved_ms", (double)orch_now_ms());
    if (!withdrawal_note(q->o, w, rec)) {
        reply_error(q, RZ_EDB, "withdrawal %s is %s but its record could not "
                    "be written; repeat the call", q->params[0], status);
        return;
    }
    if (rz_ledger_transfer_get(l, w, &t) != RZ_OK) {
        reply_rz(q, RZ_EDB);
        return;
    }
    if (!done)
        orch_log(q->o, ORCH_LOG_INFO, "withdrawal", "withdrawal", LOG_STR, q->params[0],
                 "amount_micros", LOG_U64, (uint64_t)t.amount, "status", LOG_STR, status,
                 NULL);
    reply_json(q, 200, withdrawal_json(q->o, &t));
}

static bool ref_field(req *q, const char *name, bool required, const char **out)
{
    if (!body_str(q, name, required, out))
        return false;
    if (*out && (!**out || strlen(*out) > 200)) {
        reply_error(q, RZ_EINVAL, "\"%s\" holds 1 to 200 bytes", name);
        return false;
    }
    return true;
}

void r_withdrawal_complete(req *q)
{
    static const char *const fields[] = { "tx", NULL };
    const char *tx;
    if (body_fields(q, fields) && ref_field(q, "tx", true, &tx))
        withdrawal_resolve(q, "completed", W_COMPLETE, tx, NULL);
}

void r_withdrawal_fail(req *q)
{
    static const char *const fields[] = { "tx", "reason", NULL };
    const char *tx, *reason;
    if (body_fields(q, fields) && ref_field(q, "tx", false, &tx) &&
        ref_field(q, "reason", false, &reason))
        withdrawal_resolve(q, "failed", W_FAIL, tx, reason);
}

void r_withdrawal_cancel(req *q)
{
    withdrawal_resolve(q, "cancelled", W_CANCEL, NULL, NULL);
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

/* Who an account is, for people: the viewer is "you"; the ledger's own
 * accounts and node payout accounts (a fixed function of the node id) by
 * name; another client only by the start of its id. */
static void account_name(rz_ledger_id id, rz_ledger_id viewer, char *buf, size_t cap)
{
    if (same_id(id, viewer))
        snprintf(buf, cap, "you");
    else if (same_id(id, RZ_LEDGER_ESCROW_ID))
        snprintf(buf, cap, "escrow");
    else if (same_id(id, RZ_LEDGER_PLATFORM_ID))
        snprintf(buf, cap, "platform");
    else if (same_id(id, RZ_LEDGER_EXTERNAL_ID))
        snprintf(buf, cap, "external");
    else if (id.lo && same_id(id, rz_engine_node_account(id.lo)))
        snprintf(buf, cap, "node %llu", (unsigned long long)id.lo);
    else {
        char hex[33];
        rz_ledger_id_format(id, hex);
        snprintf(buf, cap, "account %.8s", hex);
    }
}

static void add_names(cJSON *p, const rz_ledger_transfer *t, rz_ledger_id viewer)
{
    char name[48];
    account_name(t->debit, viewer, name, sizeof name);
    cJSON_AddStringToObject(p, "debit_name", name);
    account_name(t->credit, viewer, name, sizeof name);
    cJSON_AddStringToObject(p, "credit_name", name);
    cJSON_AddStringToObject(p, "direction", same_id(t->credit, viewer) ? "in" : "out");
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
        cJSON_AddNumberToObject(p, "amount_micros", (double)t[i].amount);
        add_hex(p, "debit", t[i].debit);
        add_hex(p, "credit", t[i].credit);
        add_names(p, &t[i], id);
        if (same_id(t[i].job, rz_engine_job_ledger_id(t[i].job.lo)) && t[i].job.lo)
            cJSON_AddNumberToObject(p, "job", (double)t[i].job.lo);
        cJSON_AddStringToObject(p, "status", transfer_status(&t[i]));
        cJSON_AddItemToArray(arr, p);
    }
    reply_json(q, 200, doc);
}

/* Withdrawals by status, from the external account's history (every
 * withdrawal credits it), up to WCOUNT_MAX of its newest transfers. */
#define WCOUNT_MAX 1000000
static void withdrawal_counts(orch *o, cJSON *out)
{
    static rz_ledger_transfer t[1024];
    uint64_t n_pending = 0, n_completed = 0, n_cancelled = 0, n_failed = 0;
    uint64_t before = 0, seen = 0;
    rz_ledger *l = rz_engine_ledger(o->e);
    for (;;) {
        size_t n = 0;
        if (rz_ledger_history(l, RZ_LEDGER_EXTERNAL_ID, before, t, 1024, &n) != RZ_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            if (t[i].code != RZ_LEDGER_CODE_WITHDRAW)
                continue;
            if (t[i].state == RZ_LEDGER_OPEN)
                n_pending++;
            else if (t[i].state == RZ_LEDGER_POSTED)
                n_completed++;
            else {
                cJSON *rec = withdrawal_rec(o, t[i].id);
                if (!strcmp(withdrawal_status(&t[i], rec), "failed"))
                    n_failed++;
                else
                    n_cancelled++;
                cJSON_Delete(rec);
            }
        }
        seen += n;
        if (n < 1024 || seen >= WCOUNT_MAX)
            break;
        before = t[n - 1].seq;
    }
    rz_error_clear();
    cJSON_AddNumberToObject(out, "pending", (double)n_pending);
    cJSON_AddNumberToObject(out, "completed", (double)n_completed);
    cJSON_AddNumberToObject(out, "cancelled", (double)n_cancelled);
    cJSON_AddNumberToObject(out, "failed", (double)n_failed);
    cJSON_AddBoolToObject(out, "complete", seen < WCOUNT_MAX);
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
    cJSON_AddNumberToObject(doc, "fees_micros", (double)s.fees_micros);
    cJSON_AddNumberToObject(doc, "volume_micros", (double)orch_volume_micros(q->o));
    cJSON_AddNumberToObject(doc, "held_micros", (double)s.escrow_held_micros);
    cJSON_AddNumberToObject(doc, "deposits_micros", (double)s.deposited_micros);
    cJSON_AddNumberToObject(doc, "withdrawals_micros", (double)s.withdrawn_micros);
    rz_ledger_account ext;
    if (rz_ledger_balance(rz_engine_ledger(q->o->e), RZ_LEDGER_EXTERNAL_ID, &ext) == RZ_OK)
        cJSON_AddNumberToObject(doc, "withdrawals_pending_micros",
                                (double)ext.credits_pending);
    withdrawal_counts(q->o, cJSON_AddObjectToObject(doc, "withdrawals"));
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
    cJSON_AddNumberToObject(doc, "amount_micros", (double)t.amount);
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
    cJSON_AddNumberToObject(doc, "amount_micros", (double)t.amount);
    reply_json(q, 200, doc);
}

/* Who the key is: its role and its account (a node's payout one) or node,
 * so a console shows what the key may do instead of guessing from 403s.
 * Nothing secret: the key itself is never echoed. */
void r_whoami(req *q)
{
    cJSON *doc = cJSON_CreateObject();
    const principal *w = &q->who;
    cJSON_AddStringToObject(doc, "role", w->kind == P_ADMIN ? "admin"
                                         : w->kind == P_NODE ? "node" : "client");
    if (w->kind == P_ADMIN)
        cJSON_AddNullToObject(doc, "account");
    else
        add_hex(doc, "account", w->account);
    if (w->kind == P_NODE)
        cJSON_AddNumberToObject(doc, "node", (double)w->node);
    else
        cJSON_AddNullToObject(doc, "node");
    reply_json(q, 200, doc);
}
