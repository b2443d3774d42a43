/* rhizos/ledger.h — the escrow ledger: double-entry accounts and transfers.
 *
 * Semantics after TigerBeetle (see docs/ledger.md). Money is integer
 * micro-dollars ("micros", 1e-6 USD, USDC's own 6 decimals) in a u64: at
 * most RZ_LEDGER_AMOUNT_MAX (about $18.4 trillion); a sum or product that
 * would pass it fails with RZ_EOVERFLOW and changes nothing. A directory
 * written in cents (ledger format 2 and before) is converted on a
 * writer's open (every amount x 10,000, one transaction); a reader refuses
 * it with RZ_EUNSUPPORTED naming `rhizos-orchestrator migrate`.
 *
 * Every transfer has a caller-chosen 128-bit id; replaying an id with the
 * same fields returns the first result (RZ_OK, `replayed` set), with other
 * fields RZ_EEXISTS_DIFFERENT. A rejected operation leaves no
 * trace, so its ids stay free.
 *
 * A ledger lives in DATA_DIR/ledger/ (an LMDB environment plus a
 * write-ahead journal), so other stores can share DATA_DIR. One process
 * writes; any number read, also while the writer runs (they see the state
 * of the writer's last checkpoint). Time is never read
 * from a clock: pending transfers expire when rz_ledger_tick() is given a
 * `now` at or past their timeout (any unit, as long as the caller is
 * consistent; milliseconds since the epoch is the convention).
 *
 * Not thread-safe: use one rz_ledger per thread or serialise calls.
 */
#ifndef RHIZOS_LEDGER_H
#define RHIZOS_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_ledger rz_ledger;

/* A 128-bit identifier of an account, transfer or job. {0,0} is "none". */
typedef struct rz_ledger_id {
    uint64_t hi, lo;
} rz_ledger_id;

static inline rz_ledger_id rz_ledger_id_make(uint64_t hi, uint64_t lo)
{
    rz_ledger_id id;
    id.hi = hi;
    id.lo = lo;
    return id;
}

/* Nonzero when a and b are the same id. */
static inline int rz_ledger_id_equal(rz_ledger_id a, rz_ledger_id b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

/* The largest amount a u64 of micro-dollars holds:
 * $18,446,744,073,709.551615. */
#define RZ_LEDGER_AMOUNT_MAX UINT64_MAX

/* The ledger's own accounts. Ids {0, 0..15} are reserved. */
#define RZ_LEDGER_PLATFORM_ID rz_ledger_id_make(0, 1)  /* fees */
#define RZ_LEDGER_ESCROW_ID   rz_ledger_id_make(0, 2)  /* held money */
#define RZ_LEDGER_EXTERNAL_ID rz_ledger_id_make(0, 3)  /* in and out */

typedef enum rz_ledger_kind {
    RZ_LEDGER_CLIENT = 1,
    RZ_LEDGER_NODE = 2,
    RZ_LEDGER_PLATFORM = 3,
    RZ_LEDGER_ESCROW = 4,
    RZ_LEDGER_EXTERNAL = 5
} rz_ledger_kind;

/* Account flags. Client, node, platform and escrow accounts carry
 * DEBITS_MUST_NOT_EXCEED_CREDITS: debits posted + debits pending may never
 * exceed credits posted. */
#define RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS 0x1u

typedef struct rz_ledger_account {
    rz_ledger_id id;
    uint32_t kind;             /* rz_ledger_kind */
    uint32_t flags;
    uint64_t debits_posted, debits_pending;
    uint64_t credits_posted, credits_pending;
    uint64_t created_seq;      /* commit order of its creation */
} rz_ledger_account;

/* credits_posted - debits_posted - debits_pending, 0 if that is negative
 * (only the external account goes below zero). */
RZ_EXTERN uint64_t rz_ledger_available(const rz_ledger_account *a);

/* Transfer flags. */
#define RZ_LEDGER_LINKED  0x1u   /* fails and succeeds with the next op */
#define RZ_LEDGER_PENDING 0x2u   /* a hold: reserves, moves nothing yet */
#define RZ_LEDGER_POST    0x4u   /* posts (part of) pending transfer ref */
#define RZ_LEDGER_VOID    0x8u   /* voids pending transfer ref */

/* What a transfer was for (its `code`). Raw transfers carry the caller's
 * code, which must be >= RZ_LEDGER_CODE_USER. */
typedef enum rz_ledger_code {
    RZ_LEDGER_CODE_DEPOSIT = 1,          /* pending external -> client */
    RZ_LEDGER_CODE_DEPOSIT_CONFIRM = 2,  /* its post */
    RZ_LEDGER_CODE_TEST_CREDIT = 3,      /* external -> client, admin */
    RZ_LEDGER_CODE_HOLD = 4,             /* pending client -> escrow */
    RZ_LEDGER_CODE_SETTLE = 5,           /* partial post of the hold */
    RZ_LEDGER_CODE_PAYOUT = 6,           /* escrow -> node */
    RZ_LEDGER_CODE_FEE = 7,              /* escrow -> platform */
    RZ_LEDGER_CODE_REFUND = 8,           /* void of the hold */
    RZ_LEDGER_CODE_WITHDRAW = 9,         /* pending account -> external */
    RZ_LEDGER_CODE_WITHDRAW_COMPLETE = 10,
    RZ_LEDGER_CODE_WITHDRAW_CANCEL = 11,
    RZ_LEDGER_CODE_EXPIRE = 12,          /* void by rz_ledger_tick */
    RZ_LEDGER_CODE_DEPOSIT_CANCEL = 13,  /* void of a deposit request */
    RZ_LEDGER_CODE_USER = 1000
} rz_ledger_code;

/* State of a pending transfer; RZ_LEDGER_NOT_PENDING for the others. */
typedef enum rz_ledger_state {
    RZ_LEDGER_NOT_PENDING = 0,
    RZ_LEDGER_OPEN = 1,
    RZ_LEDGER_POSTED = 2,
    RZ_LEDGER_VOIDED = 3,
    RZ_LEDGER_EXPIRED = 4
} rz_ledger_state;

typedef struct rz_ledger_transfer {
    rz_ledger_id id;
    rz_ledger_id debit, credit;   /* accounts */
    rz_ledger_id pending_id;      /* for POST and VOID: what they resolve */
    rz_ledger_id job;             /* {0,0}: none */
    uint64_t amount;              /* micros; for a VOID the amount released */
    uint64_t timeout;             /* pending only: expires at tick(now >=
                                     timeout); 0: never */
    uint64_t seq;                 /* commit order, assigned by the ledger */
    uint32_t flags;               /* RZ_LEDGER_PENDING / POST / VOID */
    uint32_t code;                /* rz_ledger_code or a user code */
    uint32_t state;               /* rz_ledger_state */
    uint64_t posted_amount;       /* pending: what its post moved */
} rz_ledger_transfer;

/* Operations of a batch. Fields each type reads:
 *   CREATE_ACCOUNT    id (the account), kind (CLIENT or NODE)
 *   TRANSFER          id, account (debit), counterparty (credit), amount,
 *                     flags (PENDING/POST/VOID), pending_id (POST, VOID),
 *                     timeout (PENDING), job, code (>= RZ_LEDGER_CODE_USER).
 *                     A POST with amount 0 posts the whole pending amount.
 *   DEPOSIT_REQUEST   id, account (client), amount, timeout (0: never
 *                     expires)
 *   DEPOSIT_CONFIRM   id, pending_id (the deposit request)
 *   DEPOSIT_CANCEL    id, pending_id (the deposit request)
 *   TEST_CREDIT       id, account (client), amount
 *   HOLD              id, job, account (client), amount, timeout
 *   SETTLE            id, job (or pending_id: the hold), counterparty (the
 *                     node), amount (the actual cost, <= the hold). Ids id,
 *                     then rz_ledger_derive_id(id, 1) (payout) and (id, 2)
 *                     (fee).
 *   REFUND            id, job (or pending_id: the hold)
 *   WITHDRAW_REQUEST  id, account (client or node), amount
 *   WITHDRAW_COMPLETE id, pending_id (the request)
 *   WITHDRAW_CANCEL   id, pending_id (the request)
 *   TICK              amount (now); voids every open pending transfer with
 *                     0 < timeout <= now, ids rz_ledger_derive_id(pending,
 *                     3); the result's expired says how many.
 * RZ_LEDGER_LINKED in flags chains an op to the next: the chain commits
 * whole or not at all (the failing op gets its error, the others
 * RZ_ELINKED). */
typedef enum rz_ledger_op_type {
    RZ_LEDGER_OP_CREATE_ACCOUNT = 1,
    RZ_LEDGER_OP_TRANSFER = 2,
    RZ_LEDGER_OP_DEPOSIT_REQUEST = 3,
    RZ_LEDGER_OP_DEPOSIT_CONFIRM = 4,
    RZ_LEDGER_OP_TEST_CREDIT = 5,
    RZ_LEDGER_OP_HOLD = 6,
    RZ_LEDGER_OP_SETTLE = 7,
    RZ_LEDGER_OP_REFUND = 8,
    RZ_LEDGER_OP_WITHDRAW_REQUEST = 9,
    RZ_LEDGER_OP_WITHDRAW_COMPLETE = 10,
    RZ_LEDGER_OP_WITHDRAW_CANCEL = 11,
    RZ_LEDGER_OP_TICK = 12,
    RZ_LEDGER_OP_DEPOSIT_CANCEL = 13
} rz_ledger_op_type;

typedef struct rz_ledger_op {
    uint32_t type;                /* rz_ledger_op_type */
    uint32_t flags;
    rz_ledger_id id;
    rz_ledger_id account;         /* the account the op is for */
    rz_ledger_id counterparty;    /* TRANSFER: credit; SETTLE: the node */
    rz_ledger_id pending_id;      /* the pending transfer it resolves */
    rz_ledger_id job;
    uint64_t amount;
    uint64_t timeout;
    uint32_t kind;                /* CREATE_ACCOUNT: rz_ledger_kind */
    uint32_t code;                /* TRANSFER: rz_ledger_code (user) */
} rz_ledger_op;

typedef struct rz_ledger_result {
    int status;                   /* RZ_OK or a negative rz_status */
    uint32_t replayed;            /* 1: the id existed with these fields */
    uint64_t amount;              /* SETTLE: the node's payout; a void
                                     (REFUND, WITHDRAW_CANCEL, TRANSFER
                                     with VOID): the amount released */
    uint64_t fee;                 /* SETTLE: the platform's fee */
    uint64_t expired;             /* TICK: pending transfers it voided */
} rz_ledger_result;

/* The most operations one batch takes. */
#define RZ_LEDGER_BATCH_MAX 8190

/* What RZ_LEDGER_OPTS_INIT holds; a 0 in the fields that say so means the
 * same. */
#define RZ_LEDGER_DEFAULT_FEE_BPS 500u                      /* 5% */
#define RZ_LEDGER_DEFAULT_MAP_SIZE (16ull << 30)            /* 16 GiB */
#define RZ_LEDGER_DEFAULT_JOURNAL_SIZE (64ull << 20)        /* 64 MiB */
#define RZ_LEDGER_DEFAULT_CHECKPOINT_OPS 65536u

typedef struct rz_ledger_opts {
    int version;
    uint32_t fee_bps;        /* platform fee in basis points (500 = 5%) */
    int read_only;           /* open for reading (no journal replay) */
    int durable;             /* 1: fdatasync every batch (default) */
    uint64_t map_size;       /* LMDB map size in bytes;
                                0: RZ_LEDGER_DEFAULT_MAP_SIZE */
    uint64_t journal_size;   /* journal bytes; a full journal forces a
                                checkpoint; 0: RZ_LEDGER_DEFAULT_JOURNAL_SIZE */
    uint64_t checkpoint_ops; /* checkpoint after this many ops;
                                0: RZ_LEDGER_DEFAULT_CHECKPOINT_OPS */
} rz_ledger_opts;

#define RZ_LEDGER_OPTS_VERSION 1
#define RZ_LEDGER_OPTS_INIT { RZ_LEDGER_OPTS_VERSION, RZ_LEDGER_DEFAULT_FEE_BPS, \
                              0, 1, 0, 0, 0 }

/* Open (creating if missing) DATA_DIR/ledger. opts may be NULL (defaults).
 * A writer replays the journal left by a crash before returning. Only one
 * writer at a time: a second gets RZ_ESTATE. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_open(rz_ledger **out, const char *data_dir,
                                          const rz_ledger_opts *opts);
/* Checkpoints (a writer) and closes. NULL is fine. */
RZ_EXTERN void rz_ledger_close(rz_ledger *l);

/* Write everything acknowledged so far into LMDB (one durable commit) and
 * start the journal over. Other processes see the ledger as of the last
 * checkpoint; the writing handle always sees its own latest state. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_checkpoint(rz_ledger *l);

/* Apply n (1..RZ_LEDGER_BATCH_MAX) ops in one durable commit; results[i]
 * gets op i's outcome. Returns RZ_OK once the batch is durable (whatever
 * the single ops' outcomes), or a negative status if nothing was applied.
 * RZ_EIO after the journal was written means the outcome is only known
 * after reopening; the handle then refuses further writes. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_submit(rz_ledger *l,
                                            const rz_ledger_op *ops, size_t n,
                                            rz_ledger_result *results);

/* One-op conveniences over rz_ledger_submit; each returns the op's status.
 * `res` may be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_create_account(rz_ledger *l,
                                                    rz_ledger_id id,
                                                    rz_ledger_kind kind);
RZ_EXTERN RZ_NODISCARD int rz_ledger_deposit_request(rz_ledger *l,
                                                     rz_ledger_id id,
                                                     rz_ledger_id client,
                                                     uint64_t micros);
RZ_EXTERN RZ_NODISCARD int rz_ledger_deposit_confirm(rz_ledger *l,
                                                     rz_ledger_id id,
                                                     rz_ledger_id request);
RZ_EXTERN RZ_NODISCARD int rz_ledger_deposit_cancel(rz_ledger *l,
                                                    rz_ledger_id id,
                                                    rz_ledger_id request);
RZ_EXTERN RZ_NODISCARD int rz_ledger_test_credit(rz_ledger *l, rz_ledger_id id,
                                                 rz_ledger_id client,
                                                 uint64_t micros);
RZ_EXTERN RZ_NODISCARD int rz_ledger_hold(rz_ledger *l, rz_ledger_id id,
                                          rz_ledger_id job, rz_ledger_id client,
                                          uint64_t max_micros, uint64_t timeout);
RZ_EXTERN RZ_NODISCARD int rz_ledger_settle(rz_ledger *l, rz_ledger_id id,
                                            rz_ledger_id job, rz_ledger_id node,
                                            uint64_t actual_micros,
                                            rz_ledger_result *res);
RZ_EXTERN RZ_NODISCARD int rz_ledger_refund(rz_ledger *l, rz_ledger_id id,
                                            rz_ledger_id job,
                                            rz_ledger_result *res);
RZ_EXTERN RZ_NODISCARD int rz_ledger_withdraw_request(rz_ledger *l,
                                                      rz_ledger_id id,
                                                      rz_ledger_id account,
                                                      uint64_t micros);
RZ_EXTERN RZ_NODISCARD int rz_ledger_withdraw_complete(rz_ledger *l,
                                                       rz_ledger_id id,
                                                       rz_ledger_id request);
/* Release a pending withdrawal back to the account's available money
 * (WITHDRAW_CANCEL). A completed one answers RZ_EPOSTED, a cancelled one
 * RZ_EVOIDED (the same id again: a replay). */
RZ_EXTERN RZ_NODISCARD int rz_ledger_withdraw_cancel(rz_ledger *l,
                                                     rz_ledger_id id,
                                                     rz_ledger_id request);
RZ_EXTERN RZ_NODISCARD int rz_ledger_tick(rz_ledger *l, uint64_t now,
                                          uint64_t *expired);

/* The id of the n-th transfer an op makes beyond its first (SETTLE: 1
 * payout, 2 fee; TICK: 3 with a pending id). A fixed mixing function. */
RZ_EXTERN rz_ledger_id rz_ledger_derive_id(rz_ledger_id id, uint32_t n);

/* The platform's fee on an actual cost of `micros`:
 *   fee = round(micros x fee_bps / 10000), halves rounded up
 *       = (micros x fee_bps + 5000) / 10000 in integers (no overflow: it is
 *         computed as q x fee_bps + (r x fee_bps + 5000) / 10000 with
 *         micros = 10000 q + r).
 * The node gets micros - fee (the remainder): the client always pays
 * exactly the actual cost and the two parts always add up to it. Rounding
 * to nearest keeps the platform's total within 0.5 micro-dollar per job of
 * fee_bps over any number of jobs (at 5%: 1-9 micros pay no fee, 10-29
 * pay 1). fee_bps above 10000 counts as 10000. */
RZ_EXTERN uint64_t rz_ledger_fee(uint64_t micros, uint32_t fee_bps);

/* Queries read the last committed state. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_balance(const rz_ledger *l,
                                             rz_ledger_id account,
                                             rz_ledger_account *out);
RZ_EXTERN RZ_NODISCARD int rz_ledger_transfer_get(const rz_ledger *l,
                                                  rz_ledger_id id,
                                                  rz_ledger_transfer *out);
/* Transfers touching `account`, newest first: up to `cap` with seq <
 * before_seq (0: from the newest). The next page: before_seq =
 * out[*n - 1].seq. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_history(const rz_ledger *l,
                                             rz_ledger_id account,
                                             uint64_t before_seq,
                                             rz_ledger_transfer *out,
                                             size_t cap, size_t *n);
/* How many open pending transfers with `code` `account` is the debit or
 * credit account of, exactly (an index kept with the transfers; one lookup).
 * RZ_EUNSUPPORTED from a read-only open of a directory no writer of this
 * version has opened yet. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_open_count(const rz_ledger *l,
                                                rz_ledger_id account,
                                                uint32_t code, uint64_t *n);
/* A job's transfers in commit order, up to `cap`; *total is how many. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_job_transfers(const rz_ledger *l,
                                                   rz_ledger_id job,
                                                   rz_ledger_transfer *out,
                                                   size_t cap, size_t *n,
                                                   size_t *total);

typedef struct rz_ledger_stats {
    uint64_t accounts, transfers;
    uint64_t escrow_held_micros;   /* pending holds, not yet settled */
    uint64_t escrow_micros;        /* posted into escrow, not paid out */
    uint64_t fees_micros;          /* platform's posted credits */
    uint64_t deposited_micros;     /* external -> accounts, posted */
    uint64_t withdrawn_micros;     /* accounts -> external, posted */
    uint64_t open_pending;        /* pending transfers still open */
    uint64_t batches;             /* durable commits so far */
} rz_ledger_stats;

RZ_EXTERN RZ_NODISCARD int rz_ledger_stats_get(const rz_ledger *l,
                                               rz_ledger_stats *out);

/* Check every invariant (docs/ledger.md). RZ_OK, or RZ_EINVALID with the
 * first breach described in rz_error_last()->message. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_verify(const rz_ledger *l);
/* What a server can afford at every start: rz_ledger_verify when the ledger
 * holds at most n accounts and transfers together; else the record counts
 * against the counters and about n random records read back (checksums,
 * keys). A full verify reads every record several times (about 8 s per
 * million transfers). RZ_OK, or an error as rz_ledger_verify's. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_verify_sample(const rz_ledger *l,
                                                   size_t n);

/* Every account and transfer: text (one line each) or JSON
 * {"accounts":[...],"transfers":[...]}. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_export(const rz_ledger *l, int json,
                                            char **out);

/* 32 lowercase hex digits and a NUL. */
RZ_EXTERN void rz_ledger_id_format(rz_ledger_id id, char buf[33]);
/* "0x" and 1..32 hex digits, exactly 32 hex digits, or a decimal u64.
 * RZ_EINVAL otherwise. */
RZ_EXTERN RZ_NODISCARD int rz_ledger_id_parse(const char *s, rz_ledger_id *out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_LEDGER_H */
