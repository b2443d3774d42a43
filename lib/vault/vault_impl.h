/* Internals of the credential vault, shared by its files and its tests.
 *
 * File layout, all integers little-endian:
 *
 *   off  len  field
 *     0    8  magic "RHZVAULT"
 *     8    2  format version (1)
 *    10    1  KDF id (1 = Argon2id v1.3, crypto_pwhash_ALG_ARGON2ID13)
 *    11    1  flags (0)
 *    12    8  opslimit
 *    20    8  memlimit (bytes)
 *    28   16  salt
 *    44   16  vault id (random, fixed for the vault's life)
 *    60   32  header MAC: BLAKE2b-256 of bytes 0..59, keyed by a subkey of
 *             the password-derived key (KEK)
 *    92   24  wrap nonce
 *   116   48  data key (32) encrypted with XChaCha20-Poly1305 under a
 *             second KEK subkey, AD = bytes 0..91
 *   164   24  body nonce
 *   188  ...  body: the entry table encrypted with XChaCha20-Poly1305 under
 *             a subkey of the data key, AD = bytes 0..163
 *
 * Body plaintext: u32 count, then per entry: 16-byte id, u8 name length,
 * name, u8 type length, type, u64 created_ms, u64 updated_ms, u32 metadata
 * length, metadata, 24-byte nonce, u32 ciphertext length, ciphertext. Each
 * value is encrypted once more under another data-key subkey with AD =
 * vault id || entry id || type. No trailing bytes are allowed. */
#ifndef RZ_VAULT_IMPL_H
#define RZ_VAULT_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/internal.h"
#include "rhizos/vault.h"

#define RZ__VAULT_MAGIC      "RHZVAULT"
#define RZ__VAULT_FORMAT     1u
#define RZ__VAULT_KDF_ID     1u
#define RZ__VAULT_HDR_LEN    60u
#define RZ__VAULT_MAC_OFF    60u
#define RZ__VAULT_MAC_LEN    32u
#define RZ__VAULT_WRAP_OFF   92u
#define RZ__VAULT_NONCE_LEN  24u
#define RZ__VAULT_KEY_LEN    32u
#define RZ__VAULT_TAG_LEN    16u
#define RZ__VAULT_BODY_NONCE_OFF 164u
#define RZ__VAULT_BODY_OFF   188u
#define RZ__VAULT_SALT_LEN   16u
#define RZ__VAULT_RAWID_LEN  16u
#define RZ__VAULT_MIN_FILE   (RZ__VAULT_BODY_OFF + 4u + RZ__VAULT_TAG_LEN)
#define RZ__VAULT_MAX_FILE   (64u * 1024u * 1024u)
#define RZ__VAULT_MAX_ENTRIES 65536u

typedef struct rz__vault_hdr {
    uint16_t format;
    uint8_t kdf;
    uint8_t flags;
    uint64_t opslimit;
    uint64_t memlimit;
    unsigned char salt[RZ__VAULT_SALT_LEN];
    unsigned char vault_id[RZ__VAULT_RAWID_LEN];
} rz__vault_hdr;

typedef struct rz__ventry {
    unsigned char rid[RZ__VAULT_RAWID_LEN];
    char id[RZ_VAULT_ID_LEN + 1];
    char *name, *type, *metadata;
    uint64_t created_ms, updated_ms;
    unsigned char nonce[RZ__VAULT_NONCE_LEN];
    unsigned char *ct;          /* value ciphertext + tag */
    size_t ct_len;
} rz__ventry;

/* The keys held while unlocked, in one sodium_malloc block. */
typedef struct rz__vkeys {
    unsigned char dek[RZ__VAULT_KEY_LEN];
    unsigned char body[RZ__VAULT_KEY_LEN];
    unsigned char value[RZ__VAULT_KEY_LEN];
} rz__vkeys;

struct rz_vault {
    char *path;                 /* NULL for an in-memory image */
    unsigned char *image;       /* the file as last read or written */
    size_t image_len;
    rz__vault_hdr hdr;          /* parsed from image */
    uint64_t max_ops, max_mem;  /* caps from the open options */
    rz__vkeys *keys;            /* NULL while locked */
    rz__ventry *entries;
    size_t n, cap;
};

/* Parse and check the header of a file image (shape, version, KDF id, cost
 * against the caps). Does not check the MAC (that needs the password). */
RZ_HIDDEN int rz__vault_parse_header(const unsigned char *img, size_t len,
                                     uint64_t max_ops, uint64_t max_mem,
                                     rz__vault_hdr *out);
RZ_HIDDEN void rz__vault_encode_header(const rz__vault_hdr *h,
                                       unsigned char out[RZ__VAULT_HDR_LEN]);

/* Decode a decrypted body into entries (replacing none: *out is new).
 * Checks every field, uniqueness of ids and names, and trailing bytes. */
RZ_HIDDEN int rz__vault_body_decode(const unsigned char *p, size_t len,
                                    rz__ventry **out, size_t *n);
/* Size of the encoded body, and the encoding into a buffer of that size. */
RZ_HIDDEN size_t rz__vault_body_size(const rz__ventry *e, size_t n);
RZ_HIDDEN void rz__vault_body_encode(const rz__ventry *e, size_t n,
                                     unsigned char *out);
RZ_HIDDEN void rz__vault_entry_clear(rz__ventry *e);
RZ_HIDDEN void rz__vault_entries_free(rz__ventry *e, size_t n);

/* Validity of names, types and metadata (messages name the field). */
RZ_HIDDEN int rz__vault_check_name(const char *name);
RZ_HIDDEN int rz__vault_check_type(const char *type);
RZ_HIDDEN int rz__vault_check_meta(const char *meta);

/* AD of an entry's value: vault id || entry id || type. */
RZ_HIDDEN size_t rz__vault_value_ad(const rz_vault *v, const rz__ventry *e,
                                    unsigned char *ad, size_t cap);

/* A new guarded secret holding a copy of `len` bytes. */
RZ_HIDDEN int rz__secret_from(rz_secret **out, const void *data, size_t len);

/* sodium_init once; RZ_EINTERNAL if libsodium cannot start. */
RZ_HIDDEN int rz__vault_sodium(void);

/* Write `len` bytes to `path` atomically: temp file in the same folder,
 * fsync, rename (or link when `exclusive`, failing with RZ_EEXISTS),
 * fsync of the folder. */
RZ_HIDDEN int rz__vault_write_file(const char *path, const unsigned char *data,
                                   size_t len, bool exclusive);

/* The whole file at `path` (at most RZ__VAULT_MAX_FILE bytes) into *out. */
RZ_HIDDEN int rz__vault_read_image(const char *path, unsigned char **out,
                                   size_t *len);
/* Decrypt the entry table of a file image with the data keys `k`. */
RZ_HIDDEN int rz__vault_decrypt_image(const unsigned char *img, size_t len,
                                      const rz__vkeys *k, rz__ventry **e,
                                      size_t *n);

/* Writers (writers.c). One writer at a time per vault file: an exclusive
 * flock on "<path>.lock" (created 0600 beside it), held from reading the
 * file again to renaming the new one into place. */
RZ_HIDDEN int rz__vault_writer_lock(const char *path, int *fd);
RZ_HIDDEN void rz__vault_writer_unlock(int fd);
/* Under the lock: if the file is no longer the image this unlocked handle
 * read or wrote (another writer saved), apply this handle's changes since
 * then (entries added, updated, removed: by entry id) to the file's
 * entries and adopt the result and the file's image. RZ_ESTATE if the
 * file's keys changed (a new password), RZ_EEXISTS if another writer added
 * a name this handle added too; the handle is unchanged then. */
RZ_HIDDEN int rz__vault_catch_up(rz_vault *v);

/* Test hook: called between the steps of a write (1: half the bytes
 * written, 2: all written, 3: fsynced, 4: renamed, before the folder
 * fsync). NULL in production. */
RZ_HIDDEN extern void (*rz__vault_write_hook)(int step);

#endif
