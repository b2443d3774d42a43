/* rhizos/vault.h — the credential vault: secrets encrypted at rest, handed
 * to a module at run time, or sealed to a node's own key.
 *
 * A vault is one file. Its header (magic, format version, KDF id, Argon2id
 * opslimit and memlimit, 16-byte salt, vault id) is authenticated by a MAC
 * keyed from the master password, so no field can be altered undetected.
 * The password derives a key-encryption key (crypto_pwhash, Argon2id13) that
 * wraps a random data key; the data key encrypts the entry table and, once
 * more, each entry's value (XChaCha20-Poly1305, fresh random nonce, the vault
 * id, entry id and type as associated data: an entry cannot be moved to
 * another id or retyped undetected). docs/security.md has the threat model.
 *
 * Life cycle: rz_vault_create() or rz_vault_open() gives a handle;
 * rz_vault_unlock() derives the keys and reads the entries; changes are kept
 * in memory until rz_vault_save() writes the whole file atomically (temp
 * file, fsync, rename, fsync of the folder: a crash leaves the old or the new
 * vault). rz_vault_lock() wipes the key and forgets the entries;
 * rz_vault_close() does the same and frees the handle.
 *
 * Keys and decrypted values live only in sodium_malloc() memory (guarded,
 * locked against swapping where the system allows) and are wiped on lock,
 * free and close. A handle is not safe for concurrent use from two threads.
 * Error messages never contain a password or a secret value.
 */
#ifndef RHIZOS_VAULT_H
#define RHIZOS_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"
#include "rhizos/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_vault rz_vault;
/* A decrypted value in guarded memory; release with rz_secret_free. */
typedef struct rz_secret rz_secret;

/* Cost of the password hash (libsodium's levels; see docs/benchmarks.md
 * for what each costs here). */
typedef enum rz_vault_kdf {
    RZ_VAULT_KDF_MODERATE = 0,     /* default: 3 passes, 256 MiB */
    RZ_VAULT_KDF_INTERACTIVE = 1,  /* 2 passes, 64 MiB */
    RZ_VAULT_KDF_SENSITIVE = 2,    /* 4 passes, 1 GiB */
    RZ_VAULT_KDF_CUSTOM = 3        /* opslimit and memlimit below */
} rz_vault_kdf;

/* What a vault file may demand when it is opened, unless the options lower
 * it: opslimit up to SENSITIVE's, memlimit up to 1 GiB. A hostile file must
 * not be able to make the reader allocate 64 GiB. */
#define RZ_VAULT_MAX_OPSLIMIT 4u
#define RZ_VAULT_MAX_MEMLIMIT (1024u * 1024u * 1024u)

typedef struct rz_vault_opts {
    unsigned version;          /* RZ_VAULT_OPTS_VERSION */
    rz_vault_kdf kdf;          /* create and passwd: the cost level */
    uint64_t opslimit;         /* with RZ_VAULT_KDF_CUSTOM: >= 1 */
    uint64_t memlimit;         /* with RZ_VAULT_KDF_CUSTOM: bytes, >= 8192 */
    uint64_t max_opslimit;     /* open: cap, 0 = RZ_VAULT_MAX_OPSLIMIT */
    uint64_t max_memlimit;     /* open: cap, 0 = RZ_VAULT_MAX_MEMLIMIT */
} rz_vault_opts;

#define RZ_VAULT_OPTS_VERSION 1
#define RZ_VAULT_OPTS_INIT { RZ_VAULT_OPTS_VERSION, RZ_VAULT_KDF_MODERATE, 0, 0, 0, 0 }

/* Limits on what an entry may hold. */
#define RZ_VAULT_NAME_MAX   128u            /* bytes of a name */
#define RZ_VAULT_TYPE_MAX   64u             /* bytes of a type */
#define RZ_VAULT_META_MAX   (16u * 1024u)   /* bytes of metadata JSON */
#define RZ_VAULT_VALUE_MAX  (1024u * 1024u) /* bytes of a value */
#define RZ_VAULT_ID_LEN     32u             /* hex characters of an entry id */

/* ---- Files and keys ---------------------------------------------------- */

/* Create a new vault at `path` (which must not exist) protected by
 * `password` (`pwlen` bytes, may hold any bytes) and write it. The handle
 * comes back unlocked and empty. `opts` may be NULL (MODERATE).
 * RZ_EEXISTS if the file exists. */
RZ_EXTERN RZ_NODISCARD int rz_vault_create(rz_vault **out, const char *path,
                                           const char *password, size_t pwlen,
                                           const rz_vault_opts *opts);

/* Read the vault at `path` and check its header's shape and KDF cost
 * against the caps; the handle comes back locked. Errors: RZ_ENOENT (no
 * file), RZ_ESYNTAX (not a vault file / truncated header), RZ_EUNSUPPORTED
 * (newer format or unknown KDF), RZ_ETOOBIG (KDF cost above the cap or file
 * too large). `opts` may be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_vault_open(rz_vault **out, const char *path,
                                         const rz_vault_opts *opts);

/* Same as rz_vault_open for a file image held in memory (it is copied);
 * the handle has no path, so rz_vault_save fails with RZ_ESTATE. */
RZ_EXTERN RZ_NODISCARD int rz_vault_open_mem(rz_vault **out, const void *data,
                                             size_t len,
                                             const rz_vault_opts *opts);

/* Derive the keys from `password` and decrypt the entry table. A locked
 * handle with a path reads its file again first (it may have changed since
 * open or lock; the errors of rz_vault_open apply). RZ_EAUTH for a wrong
 * password or a damaged/altered file (the two are indistinguishable by
 * design); the handle stays locked and the file is untouched. Unlocking an
 * unlocked vault re-reads nothing and returns RZ_OK only if the password is
 * right. */
RZ_EXTERN RZ_NODISCARD int rz_vault_unlock(rz_vault *v, const char *password,
                                           size_t pwlen);

/* Wipe the data key and forget the entries; unsaved changes are discarded.
 * The file is read again by the next unlock. NULL is fine. */
RZ_EXTERN void rz_vault_lock(rz_vault *v);
RZ_EXTERN int rz_vault_is_unlocked(const rz_vault *v);

/* Write the vault atomically (temp file in the same folder, fsync, rename,
 * fsync of the folder). Writers of one file take turns under an exclusive
 * lock on "<path>.lock" (made beside it, mode 0600): holding it, save reads
 * the file again and, if another writer saved since this handle read it,
 * applies this handle's changes (entries added, updated, removed) to that
 * version, which the handle then shows: concurrent writers lose nothing.
 * RZ_EEXISTS if another writer added a name this handle added too, and
 * RZ_ESTATE if it changed the password meanwhile (unlock again); nothing
 * is written then. RZ_ESTATE also if locked or without a path.
 * rz_vault_passwd takes the same turn. */
RZ_EXTERN RZ_NODISCARD int rz_vault_save(rz_vault *v);

/* Change the master password: a new salt, KDF cost from `opts` (NULL keeps
 * the current cost), a new data key, every value re-encrypted, and the file
 * written atomically. Entries are kept. Needs an unlocked vault. */
RZ_EXTERN RZ_NODISCARD int rz_vault_passwd(rz_vault *v,
                                           const char *new_password,
                                           size_t new_pwlen,
                                           const rz_vault_opts *opts);

/* Lock and free. NULL is fine. */
RZ_EXTERN void rz_vault_close(rz_vault *v);

/* The KDF cost recorded in the file (readable while locked). */
RZ_EXTERN void rz_vault_kdf_cost(const rz_vault *v, uint64_t *opslimit,
                                 uint64_t *memlimit);
/* Borrowed, valid while the handle lives; NULL for an in-memory vault. */
RZ_EXTERN const char *rz_vault_path(const rz_vault *v);

/* ---- Entries (need an unlocked vault) ------------------------------------ */

/* The fixed list of types; any other string matching [a-z0-9_.-]{1,64} is a
 * custom type. */
#define RZ_VAULT_TYPES                                                       \
    "exchange_api", "llm_api", "twitter_oauth", "discord_bot",               \
    "telegram_bot", "database_url", "wallet_private_key", "registry_auth"

/* 1 if `type` is one of RZ_VAULT_TYPES, 0 otherwise. */
RZ_EXTERN int rz_vault_type_is_known(const char *type);

typedef struct rz_vault_entry {
    const char *id;        /* RZ_VAULT_ID_LEN lowercase hex characters */
    const char *name;      /* unique in the vault; [A-Za-z0-9_.:@-]{1,128} */
    const char *type;
    uint64_t created_ms;   /* ms since the epoch */
    uint64_t updated_ms;
    const char *metadata;  /* a JSON object, "{}" if none; never a secret */
    size_t value_len;      /* bytes of the (encrypted) value */
} rz_vault_entry;

RZ_EXTERN size_t rz_vault_count(const rz_vault *v);  /* 0 while locked */
/* Entry `i` in insertion order. Borrowed strings, valid until the vault is
 * changed, locked or closed. RZ_ENOENT if out of range or locked. */
RZ_EXTERN RZ_NODISCARD int rz_vault_get(const rz_vault *v, size_t i,
                                        rz_vault_entry *out);
/* Index of the entry whose id, or else name, is `id_or_name`; (size_t)-1. */
RZ_EXTERN size_t rz_vault_find(const rz_vault *v, const char *id_or_name);

/* Add an entry. `metadata` is a JSON object text or NULL; `value` holds
 * 1..RZ_VAULT_VALUE_MAX bytes and is encrypted at once (the caller's buffer
 * is not kept). The new id is copied to `id_out` if not NULL
 * (RZ_VAULT_ID_LEN + 1 bytes). RZ_EEXISTS if the name is taken. */
RZ_EXTERN RZ_NODISCARD int rz_vault_add(rz_vault *v, const char *name,
                                        const char *type, const char *metadata,
                                        const void *value, size_t value_len,
                                        char *id_out);
/* Replace an entry's value (and, if `metadata` is not NULL, its metadata);
 * bumps updated_ms. */
RZ_EXTERN RZ_NODISCARD int rz_vault_update(rz_vault *v, const char *id_or_name,
                                           const char *metadata,
                                           const void *value, size_t value_len);
RZ_EXTERN RZ_NODISCARD int rz_vault_remove(rz_vault *v, const char *id_or_name);

/* Decrypt entry `i`'s value into guarded memory. RZ_EAUTH if its ciphertext
 * does not verify (it was moved, retyped or altered). */
RZ_EXTERN RZ_NODISCARD int rz_vault_reveal(const rz_vault *v, size_t i,
                                           rz_secret **out);

/* The bytes (followed by a NUL not counted in the length), borrowed until
 * rz_secret_free, which wipes them. NULL is fine. */
RZ_EXTERN const unsigned char *rz_secret_data(const rz_secret *s);
RZ_EXTERN size_t rz_secret_len(const rz_secret *s);
RZ_EXTERN void rz_secret_free(rz_secret *s);
/* A guarded buffer of `len` zero bytes for the caller to fill (a password
 * read from a terminal), writable through rz_secret_bytes; shorten it with
 * rz_secret_truncate once the real length is known. */
RZ_EXTERN RZ_NODISCARD int rz_secret_alloc(rz_secret **out, size_t len);
RZ_EXTERN unsigned char *rz_secret_bytes(rz_secret *s);
/* Shorten to `len` (no-op if longer than now); wipes the cut bytes. */
RZ_EXTERN void rz_secret_truncate(rz_secret *s, size_t len);

/* ---- Flows ---------------------------------------------------------------- */

/* The environment for step `step` of `flow`: a NULL-terminated list of
 * "RZ_CRED_<FIELD>=value" strings, one per credential reference of the step
 * (FIELD upper-cased, every character other than A-Z and 0-9 becomes '_').
 * A reference's credentialId matches an entry's id, or else its name, and
 * its type must equal the entry's type. Errors name the step and the field,
 * never a value: RZ_ENOENT (no such entry), RZ_ETYPE (type differs),
 * RZ_ECREDENTIAL (malformed reference), RZ_EDUPLICATE (two fields map to
 * one variable), RZ_EINVAL (a value holds a NUL byte, or `step` is out of
 * range). A step without references gives a list holding only NULL.
 * The list lives in guarded memory: release with rz_vault_env_free, which
 * wipes it. On failure *env_out is NULL. */
RZ_EXTERN RZ_NODISCARD int rz_vault_resolve_step(const rz_vault *v,
                                                 const rz_flow *flow,
                                                 size_t step, char ***env_out);
RZ_EXTERN void rz_vault_env_free(char **env);
/* How many credential references the flow's steps carry (0: a run needs no
 * vault, so nothing should ask for its password). */
RZ_EXTERN size_t rz_vault_flow_references(const rz_flow *flow);

/* ---- Sealing to a node ------------------------------------------------- */

#define RZ_VAULT_NODE_PK_BYTES 32u   /* X25519 public key */
#define RZ_VAULT_NODE_SK_BYTES 32u   /* X25519 secret key */
#define RZ_VAULT_SEAL_OVERHEAD 48u   /* crypto_box_seal's added bytes */

/* A fresh X25519 key pair for a node. Keep `sk` in protected memory. */
RZ_EXTERN RZ_NODISCARD int rz_vault_node_keypair(unsigned char pk[RZ_VAULT_NODE_PK_BYTES],
                                                 unsigned char sk[RZ_VAULT_NODE_SK_BYTES]);

/* crypto_box_seal of {value, job id, credential id, expiry} to `node_pk`.
 * Only the holder of the node's secret key can open it. `expires_ms` is
 * absolute (ms since the epoch). *out is released with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_vault_seal_value(unsigned char **out,
                                               size_t *out_len,
                                               const void *value,
                                               size_t value_len,
                                               const char *job_id,
                                               const char *credential_id,
                                               uint64_t expires_ms,
                                               const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES]);
/* Same, for entry `i` of an unlocked vault (credential id = the entry id). */
RZ_EXTERN RZ_NODISCARD int rz_vault_seal(const rz_vault *v, size_t i,
                                         const char *job_id,
                                         uint64_t expires_ms,
                                         const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES],
                                         unsigned char **out, size_t *out_len);

/* The job id of credentials sealed to an orchestrator for a deployment (it
 * unseals them with this id, then reseals each to the node of each job). */
#define RZ_VAULT_ORCHESTRATOR_JOB "orchestrator"
/* How long such a seal stays valid by default: one hour. */
#define RZ_VAULT_SEAL_TTL_MS (60u * 60u * 1000u)

/* Seal every credential the steps of `flow` reference to an orchestrator's
 * key `pk` (GET /api/v1/keys), for job id RZ_VAULT_ORCHESTRATOR_JOB,
 * expiring at `expires_ms` (ms since the epoch; 0: RZ_VAULT_SEAL_TTL_MS
 * from now). *json receives {"<credentialId>":"<base64 sealed>",...}, the
 * "credentials" member of a deployment (docs/api.md): each distinct
 * credentialId once, matched like rz_vault_find (entry id, or else name);
 * "{}" for a flow without references. Release with rz_free. Needs an
 * unlocked vault (RZ_ESTATE). RZ_ENOENT names the first credential the
 * vault lacks; RZ_ETYPE a reference whose entry has another type than it
 * asks for (located: file, line, column and pointer of the reference in
 * rz_error_last()), as rz_vault_resolve_step checks before a local run;
 * then *json is NULL and no seal is kept. References without a
 * credentialId are left to rz_flow_validate. */
RZ_EXTERN RZ_NODISCARD int rz_vault_seal_flow(char **json, const rz_vault *v,
                                              const rz_flow *flow,
                                              const unsigned char pk[RZ_VAULT_NODE_PK_BYTES],
                                              uint64_t expires_ms);

/* Node side: open a sealed credential with the node's key pair, check that
 * it was sealed for `job_id` and has not expired at `now_ms` (0: the system
 * clock). RZ_EAUTH (another key, altered, or another job), RZ_EEXPIRED,
 * RZ_ESYNTAX (malformed inside). `credential_id` (may be NULL) receives the
 * credential id, released with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_vault_unseal(rz_secret **out,
                                           char **credential_id,
                                           const void *sealed,
                                           size_t sealed_len,
                                           const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES],
                                           const unsigned char node_sk[RZ_VAULT_NODE_SK_BYTES],
                                           const char *job_id, uint64_t now_ms);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_VAULT_H */
