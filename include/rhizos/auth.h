/* rhizos/auth.h — who an API key belongs to, and a brake on guessing keys.
 *
 * The store is an LMDB environment in a folder of its own (the
 * orchestrator's DATA/auth). It holds:
 *   - principals by key: BLAKE2b-256 of the key -> client (an account) or
 *     node (a node id and its payout account). A key is never stored, only
 *     its hash, and never appears in an error message;
 *   - each node's public keys (X25519 for sealing credentials, Ed25519 for
 *     signatures), the sealed credentials of a deployment, a job's log as
 *     its node sent it, an account's name and wallet address (indexed by
 *     the address), and what a withdrawal's ledger record does not hold.
 * The admin key is not stored: rz_auth_admin_set keeps its hash in memory
 * for the handle's life.
 *
 * Transitions: every put is one LMDB write transaction, durable (fsync'd)
 * when it returns RZ_OK (inside a group: at the group's commit, below)
 * and absent when it returns an error; a put of an
 * existing key replaces it. Bad input (an empty key, an unknown principal
 * kind, a node key that is not 64 hex digits) is RZ_EINVAL and changes
 * nothing. Reads never block writers. A handle is for one thread at a time;
 * several processes may open the same folder (LMDB serialises writers).
 *
 * Errors: RZ_EINVAL (bad input), RZ_EAUTH (an unknown key), RZ_ENOENT (no
 * such record), RZ_ETOOBIG (the store is full), RZ_EDB (LMDB failed; the
 * message names it), RZ_EIO (the folder cannot be made), RZ_ENOMEM.
 */
#ifndef RHIZOS_AUTH_H
#define RHIZOS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"
#include "rhizos/ledger.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_auth rz_auth;

/* Bit values, so a route can allow several kinds with one mask. */
typedef enum rz_auth_kind {
    RZ_AUTH_NONE = 0,
    RZ_AUTH_ADMIN = 1,
    RZ_AUTH_CLIENT = 2,
    RZ_AUTH_NODE = 4
} rz_auth_kind;

typedef struct rz_auth_principal {
    rz_auth_kind kind;
    rz_ledger_id account;    /* client: its account; node: its payout one */
    uint64_t node;           /* node: its id (never 0); else 0 */
} rz_auth_principal;

/* The admin key's strength rule: at least RZ_AUTH_KEY_MIN_LEN characters
 * (128 bits as hex, 192 as base64), at most RZ_AUTH_KEY_MAX_LEN, printable
 * ASCII without spaces, and at least RZ_AUTH_KEY_MIN_DISTINCT different
 * characters (no "aaaa..." or a short pattern repeated). */
#define RZ_AUTH_KEY_MIN_LEN 32u
#define RZ_AUTH_KEY_MAX_LEN 256u
#define RZ_AUTH_KEY_MIN_DISTINCT 8u
/* A key rz_auth_key_new makes: the prefix, then 64 hex digits (256 bits). */
#define RZ_AUTH_KEY_NEW_HEX 64u

/* Open (creating the folder and the store if missing) the store in `dir`. */
RZ_EXTERN RZ_NODISCARD int rz_auth_open(rz_auth **out, const char *dir);
/* Open an existing store for reading only (a tool beside a running
 * server): no write transaction, so it never waits for the server's open
 * group; every write is refused (RZ_EDB). */
RZ_EXTERN RZ_NODISCARD int rz_auth_open_readonly(rz_auth **out, const char *dir);
/* NULL is fine. Commits an open group. Forgets the admin key's hash. */
RZ_EXTERN void rz_auth_close(rz_auth *a);

/* Group commit (for servers, as rz_engine_group_begin): between
 * rz_auth_group_begin and rz_auth_group_commit the puts of the thread that
 * began it return as usual but are made durable only by the group's
 * commit, all at once (one fsync for a server's pass, not one a put); its
 * reads see them. A put that fails leaves the group as it was. Another
 * thread's puts wait for the commit, and its reads do not see the group's
 * puts until then. A server answers the requests of a
 * group only after its commit returned RZ_OK, or once a redo copy of each
 * of its puts is durable elsewhere (rz_auth_group_writes; the
 * orchestrator's results: server/orchestrator/auth_pass.c); a failed
 * commit loses the group's puts. Begin inside a group: RZ_ESTATE; commit outside one:
 * RZ_OK, nothing to do. */
RZ_EXTERN RZ_NODISCARD int rz_auth_group_begin(rz_auth *a);
RZ_EXTERN RZ_NODISCARD int rz_auth_group_commit(rz_auth *a);
/* The writes (puts, deletes) the open group holds: a server that keeps a
 * redo copy of some of them elsewhere (rz_engine_extra_put) compares its
 * count with this to tell whether the group holds others. 0 outside a
 * group. */
RZ_EXTERN uint64_t rz_auth_group_writes(const rz_auth *a);
/* Drop the open group's writes (none durable): RZ_OK outside a group. */
RZ_EXTERN RZ_NODISCARD int rz_auth_group_abort(rz_auth *a);
/* A server's own mark, kept with the writes of the same commit: the
 * orchestrator's highest redo copy sequence whose writes this store
 * holds (server/orchestrator/auth_pass.c). put in a group joins it; get
 * gives 0 while none was put. */
RZ_EXTERN RZ_NODISCARD int rz_auth_redo_mark_put(rz_auth *a, uint64_t seq);
RZ_EXTERN RZ_NODISCARD int rz_auth_redo_mark_get(const rz_auth *a, uint64_t *seq);

/* RZ_OK if `key` meets the strength rule above, else RZ_EINVAL with the
 * rule broken in rz_error_last() (never the key itself). */
RZ_EXTERN RZ_NODISCARD int rz_auth_key_check(const char *key);
/* Make `key` the admin key of this handle (its hash, in memory) after
 * rz_auth_key_check; on RZ_EINVAL the previous admin key stays. */
RZ_EXTERN RZ_NODISCARD int rz_auth_admin_set(rz_auth *a, const char *key);
/* Write a fresh random key "<prefix><64 hex>" and its NUL into `buf`.
 * RZ_EINVAL (buf untouched) if `cap` is too small or `prefix` is NULL. */
RZ_EXTERN RZ_NODISCARD int rz_auth_key_new(const char *prefix, char *buf,
                                           size_t cap);

/* Whom `key` names: the admin (if set), a client or a node. RZ_EAUTH if
 * nobody (an empty or NULL key too); *out is zeroed then. */
RZ_EXTERN RZ_NODISCARD int rz_auth_key_lookup(const rz_auth *a, const char *key,
                                              rz_auth_principal *out);
/* Give `key` to a client (kind RZ_AUTH_CLIENT) or a node (RZ_AUTH_NODE,
 * node != 0). Other kinds, a NULL or empty key: RZ_EINVAL. */
RZ_EXTERN RZ_NODISCARD int rz_auth_key_put(rz_auth *a, const char *key,
                                           const rz_auth_principal *p);

/* A node's public keys as 64 hex digits each; `ed25519_hex` may be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_auth_node_put(rz_auth *a, uint64_t node,
                                            const char *x25519_hex,
                                            const char *ed25519_hex);
/* The node's X25519 public key. RZ_ENOENT if the node has none. */
RZ_EXTERN RZ_NODISCARD int rz_auth_node_key_get(const rz_auth *a, uint64_t node,
                                                unsigned char x25519[32]);

/* The longest wallet address (an external reference) an account takes. */
#define RZ_AUTH_WALLET_MAX 200u

/* An account's display name and wallet address (either may be NULL). The
 * address also indexes the account (rz_auth_wallet_account), in the same
 * transaction; an empty or longer address than RZ_AUTH_WALLET_MAX is
 * RZ_EINVAL. */
RZ_EXTERN RZ_NODISCARD int rz_auth_account_put(rz_auth *a, rz_ledger_id id,
                                               const char *name,
                                               const char *wallet);
/* The account's record {"name"?,"wallet_address"?}. RZ_ENOENT if none.
 * Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_auth_account_get(const rz_auth *a, rz_ledger_id id,
                                               char **out);

/* The account whose record holds `wallet` (the last put with it).
 * RZ_ENOENT if none. */
RZ_EXTERN RZ_NODISCARD int rz_auth_wallet_account(const rz_auth *a,
                                                  const char *wallet,
                                                  rz_ledger_id *out);

/* What the ledger does not keep of a withdrawal (its address, the
 * external transaction reference, why it failed): a JSON object, replaced
 * whole by each put. RZ_ENOENT from get if none. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_auth_withdrawal_put(rz_auth *a, rz_ledger_id id,
                                                  const char *json);
RZ_EXTERN RZ_NODISCARD int rz_auth_withdrawal_get(const rz_auth *a,
                                                  rz_ledger_id id, char **out);

/* A deployment's sealed credentials: any non-empty text (the orchestrator
 * keeps a JSON object). RZ_ENOENT from get if none. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_auth_creds_put(rz_auth *a, uint64_t deployment,
                                             const char *text);
RZ_EXTERN RZ_NODISCARD int rz_auth_creds_get(const rz_auth *a,
                                             uint64_t deployment, char **out);

/* The credentials an account keeps for later deploys, by credential id
 * (1 to RZ_AUTH_CRED_ID_MAX bytes, else RZ_EINVAL): any non-empty text (the
 * orchestrator keeps {"type","created_ms","sealed"}, the value sealed to
 * its own key, never plain). put replaces what the id held, in one durable
 * commit; get and del: RZ_ENOENT if none. list: a JSON array of the
 * account's records, in id order, each object with its "id" added (only
 * the account's own; "[]" if none). Release *out with rz_free. */
#define RZ_AUTH_CRED_ID_MAX 128
RZ_EXTERN RZ_NODISCARD int rz_auth_account_cred_put(rz_auth *a, rz_ledger_id account,
                                                    const char *id, const char *text);
RZ_EXTERN RZ_NODISCARD int rz_auth_account_cred_get(const rz_auth *a,
                                                    rz_ledger_id account,
                                                    const char *id, char **out);
RZ_EXTERN RZ_NODISCARD int rz_auth_account_cred_del(rz_auth *a, rz_ledger_id account,
                                                    const char *id);
RZ_EXTERN RZ_NODISCARD int rz_auth_account_cred_list(const rz_auth *a,
                                                     rz_ledger_id account, char **out);

/* A job's log: `len` bytes (0 allowed; `log` may then be NULL). get gives
 * them NUL-terminated and their length in *len (may be NULL). RZ_ENOENT if
 * none. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_auth_log_put(rz_auth *a, uint64_t job,
                                           const char *log, size_t len);
RZ_EXTERN RZ_NODISCARD int rz_auth_log_get(const rz_auth *a, uint64_t job,
                                           char **out, size_t *len);

/* A job's logs one per attempt (from 1), each replacing what the same
 * attempt kept before; putting attempt A drops the job's attempts up to
 * A - RZ_AUTH_LOG_ATTEMPTS in the same commit, so a job keeps its last
 * RZ_AUTH_LOG_ATTEMPTS attempts' logs. get of attempt 0 is the job's last
 * log (its highest attempt; else one kept by rz_auth_log_put), and says in
 * *which (may be NULL) which attempt it was (0: not told). rz_auth_log_get
 * is get of attempt 0. RZ_ENOENT if none. Release *out with rz_free. */
#define RZ_AUTH_LOG_ATTEMPTS 8
RZ_EXTERN RZ_NODISCARD int rz_auth_attempt_log_put(rz_auth *a, uint64_t job,
                                                   uint32_t attempt,
                                                   const char *log, size_t len);
RZ_EXTERN RZ_NODISCARD int rz_auth_attempt_log_get(const rz_auth *a, uint64_t job,
                                                   uint32_t attempt, char **out,
                                                   size_t *len, uint32_t *which);
/* The attempts whose logs are kept, in order: up to `cap` into out, how
 * many in *n. */
RZ_EXTERN RZ_NODISCARD int rz_auth_log_attempts(const rz_auth *a, uint64_t job,
                                                uint32_t *out, size_t cap,
                                                size_t *n);

/* Retention: the logs and results of `jobs` and the credentials of
 * `deployments` removed, in one durable commit (absent ones are fine). */
RZ_EXTERN RZ_NODISCARD int rz_auth_forget(rz_auth *a, const uint64_t *jobs,
                                          size_t n_jobs,
                                          const uint64_t *deployments,
                                          size_t n_deployments);

/* The head of the orchestrator's audit log: its last record's sequence
 * number and 32-byte hash, kept apart from the log so that a log removed,
 * cut short or rewritten while the server is stopped is seen at its next
 * start. put is durable when it returns (one fsync'd commit). get: RZ_ENOENT
 * while none was put. */
RZ_EXTERN RZ_NODISCARD int rz_auth_audit_head_put(rz_auth *a, uint64_t seq,
                                                  const unsigned char hash[32]);
RZ_EXTERN RZ_NODISCARD int rz_auth_audit_head_get(const rz_auth *a,
                                                  uint64_t *seq,
                                                  unsigned char hash[32]);

/* The head with the sequence number of the chain's first keyed record
 * (`keyed_since`; 0: none recorded), so that whether the chain is keyed is
 * not the log's own word: a log rewritten without the key is refused
 * against it. put2 writes all three in one durable commit; put (above)
 * keeps the keyed_since already stored. get2 gives 0 for a head put by a
 * version that did not record it. */
RZ_EXTERN RZ_NODISCARD int rz_auth_audit_head_put2(rz_auth *a, uint64_t seq,
                                                   const unsigned char hash[32],
                                                   uint64_t keyed_since);
RZ_EXTERN RZ_NODISCARD int rz_auth_audit_head_get2(const rz_auth *a,
                                                   uint64_t *seq,
                                                   unsigned char hash[32],
                                                   uint64_t *keyed_since);

/* ---- Failed-key throttle --------------------------------------------------
 *
 * Deterministic and free of I/O (the caller passes the time). It counts
 * failed tries per client (an address, as the caller names it) and per key
 * tried; a failure older than window_ms before the next one starts the
 * count again. The max_failures-th failure within the window locks that
 * client and that key for lock_ms; each further failure once a lock has
 * passed doubles it, up to max_lock_ms. While either is locked the caller
 * answers "retry later" without checking the key, so a locked guesser
 * learns nothing. Successes change nothing (a guesser holding one good key
 * cannot reset its count with it).
 *
 * Memory is bounded: at most `slots` records (clients and keys together),
 * found by a keyed hash (keys tried are not kept). A name may use one of 16
 * neighbouring records; when all 16 are taken, the stalest unlocked one is
 * replaced, else the lock that ends first. */
typedef struct rz_auth_throttle rz_auth_throttle;

#define RZ_AUTH_THROTTLE_DEFAULT_MAX_FAILURES 10u
#define RZ_AUTH_THROTTLE_DEFAULT_WINDOW_MS 60000u
#define RZ_AUTH_THROTTLE_DEFAULT_LOCK_MS 1000u
#define RZ_AUTH_THROTTLE_DEFAULT_MAX_LOCK_MS 300000u
#define RZ_AUTH_THROTTLE_DEFAULT_SLOTS 4096u

typedef struct rz_auth_throttle_opts {
    uint32_t version;         /* 1 */
    uint32_t max_failures;    /* 0: RZ_AUTH_THROTTLE_DEFAULT_MAX_FAILURES */
    uint64_t window_ms;       /* 0: ..._DEFAULT_WINDOW_MS */
    uint64_t lock_ms;         /* 0: ..._DEFAULT_LOCK_MS */
    uint64_t max_lock_ms;     /* 0: ..._DEFAULT_MAX_LOCK_MS */
    uint32_t slots;           /* 0: ..._DEFAULT_SLOTS */
} rz_auth_throttle_opts;
#define RZ_AUTH_THROTTLE_OPTS_INIT { 1, 0, 0, 0, 0, 0 }

/* `opts` may be NULL (all defaults). RZ_EINVAL for an unknown version or
 * lock_ms > max_lock_ms. */
RZ_EXTERN RZ_NODISCARD int rz_auth_throttle_new(rz_auth_throttle **out,
                                                const rz_auth_throttle_opts *opts);
RZ_EXTERN void rz_auth_throttle_free(rz_auth_throttle *t);
/* 0 if `client` and `key` may try at `now_ms`; else the milliseconds until
 * both may. NULL or empty names are not counted (never locked). */
RZ_EXTERN uint64_t rz_auth_throttle_wait(const rz_auth_throttle *t,
                                         const char *client, const char *key,
                                         uint64_t now_ms);
/* Count a failed try of `key` by `client` at `now_ms`. */
RZ_EXTERN void rz_auth_throttle_fail(rz_auth_throttle *t, const char *client,
                                     const char *key, uint64_t now_ms);
/* Records in use (for tests and metrics): never more than `slots`. */
RZ_EXTERN size_t rz_auth_throttle_count(const rz_auth_throttle *t);

/* ---- Node identity --------------------------------------------------------
 *
 * A node is its Ed25519 key (docs/api.md "Node identity"). It proves
 * possession by signing a request: the message below, with the Unix time in
 * milliseconds and a fresh random nonce, checked against the server's clock
 * (bounded skew) and a replay cache. The first registration of a key binds
 * it to a node id for good; later ones get the same id (and so the same
 * payout account). A retired key is refused from then on. */

#define RZ_AUTH_NONCE_HEX 32u      /* 16 random bytes */
#define RZ_AUTH_SIG_HEX 128u       /* an Ed25519 signature */
#define RZ_AUTH_DIGEST_HEX 64u     /* SHA-256 */

typedef struct rz_auth_node_proof {
    const char *action;            /* "register" or "retire" */
    const char *ed25519_hex;       /* 64 lowercase hex digits */
    const char *x25519_hex;        /* register: 64 lowercase hex; retire: NULL */
    uint64_t timestamp_ms;         /* Unix time */
    const char *nonce_hex;         /* RZ_AUTH_NONCE_HEX lowercase hex */
} rz_auth_node_proof;

/* The signed bytes, NUL-terminated in buf, their length in *len:
 *   "rhizos-node-v1\naction=A\ned25519=E\nx25519=X\ntimestamp_ms=T\nnonce=N\n"
 * (X empty for retire). RZ_EINVAL for a field not of its form or a buffer
 * too small. */
RZ_EXTERN RZ_NODISCARD int rz_auth_proof_message(const rz_auth_node_proof *p,
                                                 char *buf, size_t cap,
                                                 size_t *len);
/* Sign with the node's 64-byte libsodium secret key; 128 hex digits and a
 * NUL into sig_hex. */
RZ_EXTERN RZ_NODISCARD int rz_auth_proof_sign(const rz_auth_node_proof *p,
                                              const unsigned char sk[64],
                                              char sig_hex[RZ_AUTH_SIG_HEX + 1]);
/* RZ_OK when sig_hex is ed25519_hex's signature of the message; RZ_EAUTH
 * when it is not, RZ_EINVAL when a field is malformed. Freshness is the
 * replay cache's business. */
RZ_EXTERN RZ_NODISCARD int rz_auth_proof_verify(const rz_auth_node_proof *p,
                                                const char *sig_hex);

/* A proof that also names the orchestrator it is for (version 2), so one
 * signed at one orchestrator is refused at any other. A new struct rather
 * than a member more in rz_auth_node_proof, whose layout callers (ctypes)
 * have built against. `version` chooses the message: 1 the one above
 * (`orchestrator_hex` NULL), 2:
 *   "rhizos-node-v2\naction=A\norchestrator=O\ned25519=E\nx25519=X\n"
 *   "timestamp_ms=T\nnonce=N\n"
 * with O the orchestrator's X25519 public key (GET /api/v1/identity), 64
 * lowercase hex digits. Orchestrators refuse version 1 unless started
 * with --accept-v1-proofs (docs/api.md "Node identity"). */
#define RZ_AUTH_PROOF_VERSION 2u
typedef struct rz_auth_node_proof2 {
    uint32_t version;              /* 1 or 2 (RZ_AUTH_PROOF_VERSION) */
    const char *action;            /* "register" or "retire" */
    const char *ed25519_hex;       /* 64 lowercase hex digits */
    const char *x25519_hex;        /* register: 64 lowercase hex; retire: NULL */
    uint64_t timestamp_ms;         /* Unix time */
    const char *nonce_hex;         /* RZ_AUTH_NONCE_HEX lowercase hex */
    const char *orchestrator_hex;  /* version 2: 64 lowercase hex; 1: NULL */
} rz_auth_node_proof2;
#define RZ_AUTH_NODE_PROOF2_INIT { RZ_AUTH_PROOF_VERSION, NULL, NULL, NULL, \
                                   0, NULL, NULL }

/* As rz_auth_proof_message/_sign/_verify, for either version; RZ_EINVAL
 * for another version or an orchestrator key present in version 1 or
 * absent or malformed in version 2. */
RZ_EXTERN RZ_NODISCARD int rz_auth_proof2_message(const rz_auth_node_proof2 *p,
                                                  char *buf, size_t cap,
                                                  size_t *len);
RZ_EXTERN RZ_NODISCARD int rz_auth_proof2_sign(const rz_auth_node_proof2 *p,
                                               const unsigned char sk[64],
                                               char sig_hex[RZ_AUTH_SIG_HEX + 1]);
RZ_EXTERN RZ_NODISCARD int rz_auth_proof2_verify(const rz_auth_node_proof2 *p,
                                                 const char *sig_hex);

/* A node's result, as signed:
 *   "rhizos-result-v1\njob=J\nattempt=A\noutcome=outputs|error\nsha256=H\n"
 * with H the SHA-256 (lowercase hex) of `text`: the outputs object as
 * compact JSON (what the job's record keeps) or the error text. */
typedef struct rz_auth_result {
    uint64_t job;                  /* not 0 */
    uint32_t attempt;
    int failed;                    /* 1: text is the error */
    const char *text;
    size_t text_len;
} rz_auth_result;

RZ_EXTERN void rz_auth_digest_hex(const void *data, size_t len,
                                  char hex[RZ_AUTH_DIGEST_HEX + 1]);
RZ_EXTERN RZ_NODISCARD int rz_auth_result_message(const rz_auth_result *r,
                                                  char *buf, size_t cap,
                                                  size_t *len);
RZ_EXTERN RZ_NODISCARD int rz_auth_result_sign(const rz_auth_result *r,
                                               const unsigned char sk[64],
                                               char sig_hex[RZ_AUTH_SIG_HEX + 1]);
/* RZ_OK, RZ_EAUTH (does not verify with pk), RZ_EINVAL (malformed). */
RZ_EXTERN RZ_NODISCARD int rz_auth_result_verify(const rz_auth_result *r,
                                                 const unsigned char pk[32],
                                                 const char *sig_hex);

/* The node id a key is bound to, and whether it was retired. RZ_ENOENT
 * when the key was never bound. */
RZ_EXTERN RZ_NODISCARD int rz_auth_identity_find(const rz_auth *a,
                                                 const unsigned char ed25519[32],
                                                 uint64_t *node, int *retired);
/* In one transaction: bind the key to `node` (or confirm the binding),
 * record the node's keys, make `token` the node's key (principal: the node
 * and `account`) and revoke the token of its previous registration. The
 * key bound to another node: RZ_EEXISTS; a retired key: RZ_EDENIED; a node
 * id recorded without a binding (a legacy node): RZ_EEXISTS. Nothing
 * changes on error. */
RZ_EXTERN RZ_NODISCARD int rz_auth_identity_bind(rz_auth *a,
                                                 const unsigned char ed25519[32],
                                                 uint64_t node,
                                                 const char *x25519_hex,
                                                 const char *token,
                                                 rz_ledger_id account);
/* The node's Ed25519 key on record, whether its registration proved it
 * (bound) and whether it was retired. RZ_ENOENT when it has none. */
RZ_EXTERN RZ_NODISCARD int rz_auth_node_identity(const rz_auth *a, uint64_t node,
                                                 unsigned char ed25519[32],
                                                 int *bound, int *retired);
/* Retire the node: its bound key is refused from now on; its token and
 * records stay (its payout account stays reachable). RZ_ENOENT for a node
 * without keys on record. Retiring twice is RZ_OK. */
RZ_EXTERN RZ_NODISCARD int rz_auth_identity_retire(rz_auth *a, uint64_t node);

/* A job's signed-result record (any non-empty text; the orchestrator keeps
 * JSON). RZ_ENOENT from get if none. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_auth_result_put(rz_auth *a, uint64_t job,
                                              const char *text);
RZ_EXTERN RZ_NODISCARD int rz_auth_result_get(const rz_auth *a, uint64_t job,
                                              char **out);

/* ---- Replay cache ----------------------------------------------------------
 *
 * Deterministic (the caller passes the time), memory bounded by `slots`. A
 * signed request is taken once: its timestamp within window_ms of now, its
 * nonce not seen while that timestamp is in the window. */
typedef struct rz_auth_replay rz_auth_replay;

/* slots >= 16, window_ms > 0, else RZ_EINVAL. */
RZ_EXTERN RZ_NODISCARD int rz_auth_replay_new(rz_auth_replay **out, size_t slots,
                                              uint64_t window_ms);
RZ_EXTERN void rz_auth_replay_free(rz_auth_replay *r);
/* RZ_OK (now recorded), RZ_EEXPIRED (timestamp out of the window),
 * RZ_EEXISTS (seen: a replay), RZ_ETOOBIG (no room among the nonce's
 * slots: retry later), RZ_EINVAL (not a nonce). */
RZ_EXTERN RZ_NODISCARD int rz_auth_replay_check(rz_auth_replay *r,
                                                const char *nonce_hex,
                                                uint64_t timestamp_ms,
                                                uint64_t now_ms);
/* Nonces held at now_ms (for tests): never more than `slots`. */
RZ_EXTERN size_t rz_auth_replay_count(const rz_auth_replay *r, uint64_t now_ms);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_AUTH_H */
