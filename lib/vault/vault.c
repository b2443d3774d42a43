/* The vault handle: keys from the password, unlock/lock, entries, saving
 * and password change. The file layout is described in vault_impl.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/array.h"
#include "vault/vault_impl.h"

/* Subkey contexts (8 bytes each, crypto_kdf). */
#define CTX_KEK  "rzvkek__"
#define CTX_DEK  "rzvdek__"
enum { SUB_MAC = 1, SUB_WRAP = 2, SUB_BODY = 1, SUB_VALUE = 2 };

/* The secret a rz_secret holds, length first, in one guarded block. */
struct rz_secret {
    size_t len;
    unsigned char data[];
};

/* ---- Secrets -------------------------------------------------------------- */

static rz_secret *secret_new(size_t len)
{
    /* sodium_malloc places the block against its guard page: round the
     * size up so the start stays aligned for the length field. */
    size_t size = (sizeof(rz_secret) + len + 1 + 15) & ~(size_t)15;
    rz_secret *s = sodium_malloc(size);
    if (!s)
        return NULL;
    s->len = len;
    s->data[len] = '\0';
    return s;
}

int rz__secret_from(rz_secret **out, const void *data, size_t len)
{
    if (!(*out = secret_new(len)))
        return rz__error(RZ_ENOMEM, "out of memory");
    if (len)
        memcpy((*out)->data, data, len);
    return RZ_OK;
}

int rz_secret_alloc(rz_secret **out, size_t len)
{
    *out = NULL;
    int rc = rz__vault_sodium();
    if (rc != RZ_OK)
        return rc;
    if (len > RZ__VAULT_MAX_FILE)
        return rz__error(RZ_ETOOBIG, "secret buffer too large");
    if (!(*out = secret_new(len)))
        return rz__error(RZ_ENOMEM, "out of memory");
    sodium_memzero((*out)->data, len);
    return RZ_OK;
}

unsigned char *rz_secret_bytes(rz_secret *s)
{
    return s ? s->data : NULL;
}

void rz_secret_truncate(rz_secret *s, size_t len)
{
    if (!s || len >= s->len)
        return;
    sodium_memzero(s->data + len, s->len - len);
    s->len = len;
}

const unsigned char *rz_secret_data(const rz_secret *s)
{
    return s ? s->data : NULL;
}

size_t rz_secret_len(const rz_secret *s)
{
    return s ? s->len : 0;
}

void rz_secret_free(rz_secret *s)
{
    sodium_free(s);   /* wipes before unmapping */
}

/* ---- KDF cost ----------------------------------------------------------- */

/* vault.h names each level's cost and the caps in words and numbers. */
_Static_assert(crypto_pwhash_OPSLIMIT_MODERATE == 3 &&
               crypto_pwhash_MEMLIMIT_MODERATE == 256u << 20,
               "RZ_VAULT_KDF_MODERATE: 3 passes, 256 MiB");
_Static_assert(crypto_pwhash_OPSLIMIT_INTERACTIVE == 2 &&
               crypto_pwhash_MEMLIMIT_INTERACTIVE == 64u << 20,
               "RZ_VAULT_KDF_INTERACTIVE: 2 passes, 64 MiB");
_Static_assert(crypto_pwhash_OPSLIMIT_SENSITIVE == 4 &&
               crypto_pwhash_MEMLIMIT_SENSITIVE == 1u << 30,
               "RZ_VAULT_KDF_SENSITIVE: 4 passes, 1 GiB");
_Static_assert(RZ_VAULT_MAX_OPSLIMIT == crypto_pwhash_OPSLIMIT_SENSITIVE &&
               RZ_VAULT_MAX_MEMLIMIT == crypto_pwhash_MEMLIMIT_SENSITIVE,
               "the caps on opening are SENSITIVE's cost");

static int kdf_cost(const rz_vault_opts *o, uint64_t *ops, uint64_t *mem)
{
    rz_vault_kdf k = o ? o->kdf : RZ_VAULT_KDF_MODERATE;
    switch (k) {
    case RZ_VAULT_KDF_MODERATE:
        *ops = crypto_pwhash_OPSLIMIT_MODERATE;
        *mem = crypto_pwhash_MEMLIMIT_MODERATE;
        return RZ_OK;
    case RZ_VAULT_KDF_INTERACTIVE:
        *ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
        return RZ_OK;
    case RZ_VAULT_KDF_SENSITIVE:
        *ops = crypto_pwhash_OPSLIMIT_SENSITIVE;
        *mem = crypto_pwhash_MEMLIMIT_SENSITIVE;
        return RZ_OK;
    case RZ_VAULT_KDF_CUSTOM:
        *ops = o->opslimit;
        *mem = o->memlimit;
        if (*ops < crypto_pwhash_OPSLIMIT_MIN || *mem < crypto_pwhash_MEMLIMIT_MIN)
            return rz__error(RZ_EINVAL, "KDF cost below libsodium's minimum (1 pass, 8 KiB)");
        if (*ops > RZ_VAULT_MAX_OPSLIMIT || *mem > RZ_VAULT_MAX_MEMLIMIT)
            return rz__error(RZ_EINVAL, "KDF cost above what a vault may demand (%u passes, 1 GiB)",
                             RZ_VAULT_MAX_OPSLIMIT);
        return RZ_OK;
    }
    return rz__error(RZ_EINVAL, "unknown KDF level %d", (int)k);
}

static int check_opts(const rz_vault_opts *o)
{
    if (o && o->version != RZ_VAULT_OPTS_VERSION)
        return rz__error(RZ_EINVAL, "rz_vault_opts version %u is not supported", o->version);
    return RZ_OK;
}

/* ---- Keys ------------------------------------------------------------------ */

/* MAC and wrap keys from the password; `out` is 2 * KEY_LEN guarded bytes. */
static int derive_kek(const rz__vault_hdr *h, const char *pw, size_t pwlen,
                      unsigned char *out)
{
    unsigned char *kek = sodium_malloc(RZ__VAULT_KEY_LEN);
    if (!kek)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = RZ_OK;
    if (crypto_pwhash(kek, RZ__VAULT_KEY_LEN, pw, pwlen, h->salt, h->opslimit,
                      (size_t)h->memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        rc = rz__error(RZ_ENOMEM, "not enough memory for the key derivation (%llu MiB)",
                       (unsigned long long)(h->memlimit >> 20));
    else {
        crypto_kdf_derive_from_key(out, RZ__VAULT_KEY_LEN, SUB_MAC, CTX_KEK, kek);
        crypto_kdf_derive_from_key(out + RZ__VAULT_KEY_LEN, RZ__VAULT_KEY_LEN, SUB_WRAP,
                                   CTX_KEK, kek);
    }
    sodium_free(kek);
    return rc;
}

static rz__vkeys *keys_from_dek(const unsigned char *dek)
{
    rz__vkeys *k = sodium_malloc(sizeof *k);
    if (!k)
        return NULL;
    if (dek)
        memcpy(k->dek, dek, RZ__VAULT_KEY_LEN);
    else
        crypto_aead_xchacha20poly1305_ietf_keygen(k->dek);
    crypto_kdf_derive_from_key(k->body, RZ__VAULT_KEY_LEN, SUB_BODY, CTX_DEK, k->dek);
    crypto_kdf_derive_from_key(k->value, RZ__VAULT_KEY_LEN, SUB_VALUE, CTX_DEK, k->dek);
    sodium_mprotect_readonly(k);
    return k;
}

static void keys_free(rz__vkeys *k)
{
    if (k) {
        sodium_mprotect_readwrite(k);
        sodium_free(k);
    }
}

/* Bytes 0..163 of a file: header, MAC, wrapped data key. */
static int build_keyblock(const rz__vault_hdr *h, const char *pw, size_t pwlen,
                          const rz__vkeys *k, unsigned char *kb)
{
    unsigned char *sub = sodium_malloc(2 * RZ__VAULT_KEY_LEN);
    if (!sub)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = derive_kek(h, pw, pwlen, sub);
    if (rc == RZ_OK) {
        rz__vault_encode_header(h, kb);
        crypto_generichash(kb + RZ__VAULT_MAC_OFF, RZ__VAULT_MAC_LEN, kb, RZ__VAULT_HDR_LEN,
                           sub, RZ__VAULT_KEY_LEN);
        unsigned char *nonce = kb + RZ__VAULT_WRAP_OFF;
        randombytes_buf(nonce, RZ__VAULT_NONCE_LEN);
        crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + RZ__VAULT_NONCE_LEN, NULL,
            k->dek, RZ__VAULT_KEY_LEN, kb, RZ__VAULT_WRAP_OFF, NULL, nonce,
            sub + RZ__VAULT_KEY_LEN);
    }
    sodium_free(sub);
    return rc;
}

/* Check the header MAC and unwrap the data key. */
static int open_keyblock(const rz_vault *v, const char *pw, size_t pwlen,
                         rz__vkeys **out)
{
    *out = NULL;
    unsigned char *sub = sodium_malloc(2 * RZ__VAULT_KEY_LEN + RZ__VAULT_KEY_LEN);
    if (!sub)
        return rz__error(RZ_ENOMEM, "out of memory");
    unsigned char *dek = sub + 2 * RZ__VAULT_KEY_LEN;
    int rc = derive_kek(&v->hdr, pw, pwlen, sub);
    if (rc == RZ_OK) {
        const unsigned char *img = v->image;
        unsigned char mac[RZ__VAULT_MAC_LEN];
        crypto_generichash(mac, sizeof mac, img, RZ__VAULT_HDR_LEN, sub, RZ__VAULT_KEY_LEN);
        const unsigned char *nonce = img + RZ__VAULT_WRAP_OFF;
        if (sodium_memcmp(mac, img + RZ__VAULT_MAC_OFF, RZ__VAULT_MAC_LEN) != 0 ||
            crypto_aead_xchacha20poly1305_ietf_decrypt(dek, NULL, NULL,
                nonce + RZ__VAULT_NONCE_LEN, RZ__VAULT_KEY_LEN + RZ__VAULT_TAG_LEN,
                img, RZ__VAULT_WRAP_OFF, nonce, sub + RZ__VAULT_KEY_LEN) != 0)
            rc = rz__error(RZ_EAUTH, "wrong vault password, or the vault file was altered");
        else if (!(*out = keys_from_dek(dek)))
            rc = rz__error(RZ_ENOMEM, "out of memory");
    }
    sodium_free(sub);
    return rc;
}

/* ---- Body --------------------------------------------------------------- */

int rz__vault_decrypt_image(const unsigned char *img, size_t len,
                            const rz__vkeys *k, rz__ventry **e, size_t *n)
{
    size_t ct_len = len - RZ__VAULT_BODY_OFF;
    size_t pt_len = ct_len - RZ__VAULT_TAG_LEN;
    unsigned char *pt = sodium_malloc(pt_len ? pt_len : 1);
    if (!pt)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, img + RZ__VAULT_BODY_OFF,
            ct_len, img, RZ__VAULT_BODY_NONCE_OFF, img + RZ__VAULT_BODY_NONCE_OFF,
            k->body) != 0)
        rc = rz__error(RZ_EAUTH, "wrong vault password, or the vault file was altered");
    else
        rc = rz__vault_body_decode(pt, pt_len, e, n);
    sodium_free(pt);
    return rc;
}

/* A new file image: `keyblock` followed by the entries under `k`. */
static int build_image(const unsigned char *keyblock, const rz__vkeys *k,
                       const rz__ventry *e, size_t n, unsigned char **out,
                       size_t *out_len)
{
    *out = NULL;
    size_t pt_len = rz__vault_body_size(e, n);
    size_t len = RZ__VAULT_BODY_OFF + pt_len + RZ__VAULT_TAG_LEN;
    if (len > RZ__VAULT_MAX_FILE)
        return rz__error(RZ_ETOOBIG, "vault would exceed %u MiB", RZ__VAULT_MAX_FILE >> 20);
    unsigned char *pt = sodium_malloc(pt_len);
    unsigned char *img = rz__malloc(len);
    if (!pt || !img) {
        sodium_free(pt);
        free(img);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    rz__vault_body_encode(e, n, pt);
    memcpy(img, keyblock, RZ__VAULT_BODY_NONCE_OFF);
    randombytes_buf(img + RZ__VAULT_BODY_NONCE_OFF, RZ__VAULT_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(img + RZ__VAULT_BODY_OFF, NULL, pt, pt_len,
        img, RZ__VAULT_BODY_NONCE_OFF, NULL, img + RZ__VAULT_BODY_NONCE_OFF, k->body);
    sodium_free(pt);
    *out = img;
    *out_len = len;
    return RZ_OK;
}

/* ---- Values ------------------------------------------------------------- */

static int encrypt_value(const rz_vault *v, const rz__vkeys *k, rz__ventry *e,
                         const void *value, size_t len)
{
    unsigned char ad[2 * RZ__VAULT_RAWID_LEN + RZ_VAULT_TYPE_MAX];
    size_t adlen = rz__vault_value_ad(v, e, ad, sizeof ad);
    unsigned char *ct = rz__malloc(len + RZ__VAULT_TAG_LEN);
    if (!ct)
        return rz__error(RZ_ENOMEM, "out of memory");
    randombytes_buf(e->nonce, sizeof e->nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, value, len, ad, adlen, NULL,
                                               e->nonce, k->value);
    free(e->ct);
    e->ct = ct;
    e->ct_len = len + RZ__VAULT_TAG_LEN;
    return RZ_OK;
}

static int decrypt_value(const rz_vault *v, const rz__vkeys *k, const rz__ventry *e,
                         rz_secret **out)
{
    *out = NULL;
    unsigned char ad[2 * RZ__VAULT_RAWID_LEN + RZ_VAULT_TYPE_MAX];
    size_t adlen = rz__vault_value_ad(v, e, ad, sizeof ad);
    rz_secret *s = secret_new(e->ct_len - RZ__VAULT_TAG_LEN);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(s->data, NULL, NULL, e->ct, e->ct_len,
            ad, adlen, e->nonce, k->value) != 0) {
        rz_secret_free(s);
        return rz__error(RZ_EAUTH, "value of vault entry '%s' does not verify "
                         "(moved, retyped or altered)", e->name);
    }
    *out = s;
    return RZ_OK;
}

/* ---- Handles ------------------------------------------------------------- */

static void set_caps(rz_vault *v, const rz_vault_opts *o)
{
    v->max_ops = o && o->max_opslimit ? o->max_opslimit : RZ_VAULT_MAX_OPSLIMIT;
    v->max_mem = o && o->max_memlimit ? o->max_memlimit : RZ_VAULT_MAX_MEMLIMIT;
}

static int adopt_image(rz_vault *v, unsigned char *img, size_t len)
{
    rz__vault_hdr h;
    int rc = rz__vault_parse_header(img, len, v->max_ops, v->max_mem, &h);
    if (rc != RZ_OK) {
        free(img);
        return rc;
    }
    v->hdr = h;
    free(v->image);
    v->image = img;
    v->image_len = len;
    return RZ_OK;
}

int rz__vault_read_image(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rz__error(errno == ENOENT ? RZ_ENOENT : RZ_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = RZ_OK;
    unsigned char *buf = NULL;
    size_t got = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = rz__error(RZ_EIO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > RZ__VAULT_MAX_FILE)
        rc = rz__error(RZ_ETOOBIG, "%s: larger than %u MiB", path, RZ__VAULT_MAX_FILE >> 20);
    else if (!(buf = rz__malloc((size_t)st.st_size + 1)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    while (rc == RZ_OK && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = rz__error(RZ_EIO, "%s: read error", path);
        else
            got += (size_t)r;
    }
    close(fd);
    if (rc != RZ_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = got;
    return RZ_OK;
}

static int vault_new(rz_vault **out, const char *path, const rz_vault_opts *opts)
{
    int rc = check_opts(opts);
    if (rc == RZ_OK)
        rc = rz__vault_sodium();
    if (rc != RZ_OK)
        return rc;
    rz_vault *v = rz__calloc(1, sizeof *v);
    if (!v || (path && !(v->path = rz__strdup(path)))) {
        free(v);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    set_caps(v, opts);
    *out = v;
    return RZ_OK;
}

int rz_vault_open(rz_vault **out, const char *path, const rz_vault_opts *opts)
{
    *out = NULL;
    if (!path)
        return rz__error(RZ_EINVAL, "no vault path");
    rz_vault *v;
    int rc = vault_new(&v, path, opts);
    if (rc != RZ_OK)
        return rc;
    unsigned char *img = NULL;
    size_t len = 0;
    if ((rc = rz__vault_read_image(path, &img, &len)) == RZ_OK)
        rc = adopt_image(v, img, len);
    if (rc != RZ_OK) {
        rz_vault_close(v);
        return rc;
    }
    *out = v;
    return RZ_OK;
}

int rz_vault_open_mem(rz_vault **out, const void *data, size_t len,
                      const rz_vault_opts *opts)
{
    *out = NULL;
    if (!data && len)
        return rz__error(RZ_EINVAL, "no vault data");
    if (len > RZ__VAULT_MAX_FILE)
        return rz__error(RZ_ETOOBIG, "vault image larger than %u MiB", RZ__VAULT_MAX_FILE >> 20);
    rz_vault *v;
    int rc = vault_new(&v, NULL, opts);
    if (rc != RZ_OK)
        return rc;
    unsigned char *img = rz__malloc(len ? len : 1);
    if (!img)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else {
        if (len)
            memcpy(img, data, len);
        rc = adopt_image(v, img, len);
    }
    if (rc != RZ_OK) {
        rz_vault_close(v);
        return rc;
    }
    *out = v;
    return RZ_OK;
}

int rz_vault_create(rz_vault **out, const char *path, const char *password,
                    size_t pwlen, const rz_vault_opts *opts)
{
    *out = NULL;
    if (!path || (!password && pwlen))
        return rz__error(RZ_EINVAL, "no vault path or password");
    /* Fail before the key derivation; link() below still guards a race. */
    if (access(path, F_OK) == 0)
        return rz__error(RZ_EEXISTS, "%s: a file by that name exists", path);
    rz_vault *v;
    int rc = vault_new(&v, path, opts);
    if (rc != RZ_OK)
        return rc;
    v->hdr.format = RZ__VAULT_FORMAT;
    v->hdr.kdf = RZ__VAULT_KDF_ID;
    rc = kdf_cost(opts, &v->hdr.opslimit, &v->hdr.memlimit);
    randombytes_buf(v->hdr.salt, sizeof v->hdr.salt);
    randombytes_buf(v->hdr.vault_id, sizeof v->hdr.vault_id);
    unsigned char kb[RZ__VAULT_BODY_NONCE_OFF];
    unsigned char *img = NULL;
    size_t len = 0;
    if (rc == RZ_OK && !(v->keys = keys_from_dek(NULL)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK)
        rc = build_keyblock(&v->hdr, password ? password : "", pwlen, v->keys, kb);
    if (rc == RZ_OK)
        rc = build_image(kb, v->keys, NULL, 0, &img, &len);
    if (rc == RZ_OK)
        rc = rz__vault_write_file(path, img, len, true);
    if (rc != RZ_OK) {
        free(img);
        rz_vault_close(v);
        return rc;
    }
    v->image = img;
    v->image_len = len;
    *out = v;
    return RZ_OK;
}

/* A locked handle reads its file again, so an unlock sees the latest
 * saved state (another process may have written it). */
static int reload(rz_vault *v)
{
    if (!v->path)
        return RZ_OK;
    unsigned char *img = NULL;
    size_t len = 0;
    int rc = rz__vault_read_image(v->path, &img, &len);
    return rc == RZ_OK ? adopt_image(v, img, len) : rc;
}

int rz_vault_unlock(rz_vault *v, const char *password, size_t pwlen)
{
    if (!v || (!password && pwlen))
        return rz__error(RZ_EINVAL, "no vault or password");
    int rc = v->keys ? RZ_OK : reload(v);
    if (rc != RZ_OK)
        return rc;
    rz__vkeys *k;
    if ((rc = open_keyblock(v, password ? password : "", pwlen, &k)) != RZ_OK)
        return rc;
    if (v->keys) {
        /* Already unlocked: the password was right, nothing to re-read. */
        keys_free(k);
        return RZ_OK;
    }
    rz__ventry *e;
    size_t n;
    if ((rc = rz__vault_decrypt_image(v->image, v->image_len, k, &e, &n)) != RZ_OK) {
        keys_free(k);
        return rc;
    }
    v->keys = k;
    v->entries = e;
    v->n = v->cap = n;
    return RZ_OK;
}

void rz_vault_lock(rz_vault *v)
{
    if (!v)
        return;
    keys_free(v->keys);
    v->keys = NULL;
    rz__vault_entries_free(v->entries, v->n);
    v->entries = NULL;
    v->n = v->cap = 0;
}

int rz_vault_is_unlocked(const rz_vault *v)
{
    return v && v->keys != NULL;
}

void rz_vault_close(rz_vault *v)
{
    if (!v)
        return;
    rz_vault_lock(v);
    free(v->image);
    free(v->path);
    free(v);
}

void rz_vault_kdf_cost(const rz_vault *v, uint64_t *opslimit, uint64_t *memlimit)
{
    if (opslimit)
        *opslimit = v ? v->hdr.opslimit : 0;
    if (memlimit)
        *memlimit = v ? v->hdr.memlimit : 0;
}

const char *rz_vault_path(const rz_vault *v)
{
    return v ? v->path : NULL;
}

static int need_unlocked(const rz_vault *v)
{
    if (!v)
        return rz__error(RZ_EINVAL, "no vault");
    if (!v->keys)
        return rz__error(RZ_ESTATE, "the vault is locked");
    return RZ_OK;
}

/* Write a new image and adopt it. */
static int write_image(rz_vault *v, unsigned char *img, size_t len)
{
    int rc = rz__vault_write_file(v->path, img, len, false);
    if (rc != RZ_OK) {
        free(img);
        return rc;
    }
    free(v->image);
    v->image = img;
    v->image_len = len;
    return RZ_OK;
}

int rz_vault_save(rz_vault *v)
{
    int rc = need_unlocked(v);
    if (rc != RZ_OK)
        return rc;
    if (!v->path)
        return rz__error(RZ_ESTATE, "an in-memory vault cannot be saved");
    /* Writers take turns: under the lock, first take in what another
     * writer saved since this handle read the file, then write. */
    int lock_fd;
    if ((rc = rz__vault_writer_lock(v->path, &lock_fd)) != RZ_OK)
        return rc;
    unsigned char *img;
    size_t len;
    rc = rz__vault_catch_up(v);
    if (rc == RZ_OK &&
        (rc = build_image(v->image, v->keys, v->entries, v->n, &img, &len)) == RZ_OK)
        rc = write_image(v, img, len);
    rz__vault_writer_unlock(lock_fd);
    return rc;
}

/* Re-encrypt every value from `old` keys into `nk`, on copies of the
 * ciphertext fields; `copy` receives the new entry array's ciphertexts. */
static int rekey_values(const rz_vault *v, const rz__vkeys *nk, rz__ventry *copy)
{
    for (size_t i = 0; i < v->n; i++) {
        rz_secret *s;
        int rc = decrypt_value(v, v->keys, &v->entries[i], &s);
        if (rc == RZ_OK) {
            rc = encrypt_value(v, nk, &copy[i], s->data, s->len);
            rz_secret_free(s);
        }
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

static int passwd_locked(rz_vault *v, const char *pw, size_t pwlen,
                         const rz_vault_opts *opts)
{
    int rc = need_unlocked(v);
    if (rc == RZ_OK)
        rc = check_opts(opts);
    if (rc != RZ_OK)
        return rc;
    if (!v->path)
        return rz__error(RZ_ESTATE, "an in-memory vault cannot be saved");
    if (!pw && pwlen)
        return rz__error(RZ_EINVAL, "no password");
    rz__vault_hdr h = v->hdr;
    if (opts && (rc = kdf_cost(opts, &h.opslimit, &h.memlimit)) != RZ_OK)
        return rc;
    randombytes_buf(h.salt, sizeof h.salt);
    /* Shallow copies share names with v->entries; only ct/nonce are new. */
    rz__ventry *copy = rz__calloc(v->n ? v->n : 1, sizeof *copy);
    rz__vkeys *nk = keys_from_dek(NULL);
    if (!copy || !nk)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; rc == RZ_OK && i < v->n; i++) {
        copy[i] = v->entries[i];
        copy[i].ct = NULL;
    }
    unsigned char kb[RZ__VAULT_BODY_NONCE_OFF];
    unsigned char *img = NULL;
    size_t len = 0;
    if (rc == RZ_OK)
        rc = rekey_values(v, nk, copy);
    if (rc == RZ_OK)
        rc = build_keyblock(&h, pw ? pw : "", pwlen, nk, kb);
    if (rc == RZ_OK)
        rc = build_image(kb, nk, copy, v->n, &img, &len);
    if (rc == RZ_OK)
        rc = rz__vault_write_file(v->path, img, len, false);
    /* Swap in the new ciphertexts and keys only once the file is written. */
    for (size_t i = 0; copy && i < v->n; i++) {
        if (rc == RZ_OK) {
            free(v->entries[i].ct);
            v->entries[i].ct = copy[i].ct;
            memcpy(v->entries[i].nonce, copy[i].nonce, RZ__VAULT_NONCE_LEN);
        } else
            free(copy[i].ct);
    }
    free(copy);
    if (rc != RZ_OK) {
        free(img);
        keys_free(nk);
        return rc;
    }
    keys_free(v->keys);
    v->keys = nk;
    v->hdr = h;
    free(v->image);
    v->image = img;
    v->image_len = len;
    return RZ_OK;
}

int rz_vault_passwd(rz_vault *v, const char *pw, size_t pwlen,
                    const rz_vault_opts *opts)
{
    int rc = need_unlocked(v);
    if (rc != RZ_OK || !v->path)
        return passwd_locked(v, pw, pwlen, opts);   /* it says why not */
    int lock_fd;
    if ((rc = rz__vault_writer_lock(v->path, &lock_fd)) != RZ_OK)
        return rc;
    rc = rz__vault_catch_up(v);
    if (rc == RZ_OK)
        rc = passwd_locked(v, pw, pwlen, opts);
    rz__vault_writer_unlock(lock_fd);
    return rc;
}

/* ---- Entries ---------------------------------------------------------- */

size_t rz_vault_count(const rz_vault *v)
{
    return v && v->keys ? v->n : 0;
}

int rz_vault_get(const rz_vault *v, size_t i, rz_vault_entry *out)
{
    memset(out, 0, sizeof *out);
    if (!v || !v->keys || i >= v->n)
        return rz__error(RZ_ENOENT, "no vault entry %zu", i);
    const rz__ventry *e = &v->entries[i];
    out->id = e->id;
    out->name = e->name;
    out->type = e->type;
    out->created_ms = e->created_ms;
    out->updated_ms = e->updated_ms;
    out->metadata = e->metadata;
    out->value_len = e->ct_len - RZ__VAULT_TAG_LEN;
    return RZ_OK;
}

size_t rz_vault_find(const rz_vault *v, const char *key)
{
    if (!v || !v->keys || !key)
        return RZ_NPOS;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->entries[i].id, key) == 0)
            return i;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->entries[i].name, key) == 0)
            return i;
    return RZ_NPOS;
}

static int check_value(const void *value, size_t len)
{
    if (!value || len == 0)
        return rz__error(RZ_EINVAL, "a vault entry needs a non-empty value");
    if (len > RZ_VAULT_VALUE_MAX)
        return rz__error(RZ_ETOOBIG, "value larger than %u bytes", RZ_VAULT_VALUE_MAX);
    return RZ_OK;
}

static bool id_taken(const rz_vault *v, const unsigned char *rid)
{
    for (size_t i = 0; i < v->n; i++)
        if (memcmp(v->entries[i].rid, rid, RZ__VAULT_RAWID_LEN) == 0)
            return true;
    return false;
}

static void new_id(const rz_vault *v, rz__ventry *e)
{
    static const char hex[] = "0123456789abcdef";
    do
        randombytes_buf(e->rid, sizeof e->rid);
    while (id_taken(v, e->rid));
    for (size_t i = 0; i < RZ__VAULT_RAWID_LEN; i++) {
        e->id[2 * i] = hex[e->rid[i] >> 4];
        e->id[2 * i + 1] = hex[e->rid[i] & 15];
    }
    e->id[RZ_VAULT_ID_LEN] = '\0';
}

static int grow(rz_vault *v)
{
    if (v->n < v->cap)
        return RZ_OK;
    if (v->n >= RZ__VAULT_MAX_ENTRIES)
        return rz__error(RZ_ETOOBIG, "a vault holds at most %u entries", RZ__VAULT_MAX_ENTRIES);
    rz__ventry *e = rz__grow(v->entries, &v->cap, v->n + 1, sizeof *e, 8);
    if (!e)
        return rz__error(RZ_ENOMEM, "out of memory");
    v->entries = e;
    return RZ_OK;
}

int rz_vault_add(rz_vault *v, const char *name, const char *type,
                 const char *metadata, const void *value, size_t len,
                 char *id_out)
{
    int rc = need_unlocked(v);
    if (rc == RZ_OK)
        rc = rz__vault_check_name(name);
    if (rc == RZ_OK)
        rc = rz__vault_check_type(type);
    if (rc == RZ_OK && metadata)
        rc = rz__vault_check_meta(metadata);
    if (rc == RZ_OK)
        rc = check_value(value, len);
    if (rc != RZ_OK)
        return rc;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->entries[i].name, name) == 0)
            return rz__error(RZ_EEXISTS, "vault entry '%s' exists", name);
    if ((rc = grow(v)) != RZ_OK)
        return rc;
    rz__ventry e = {0};
    new_id(v, &e);
    e.name = rz__strdup(name);
    e.type = rz__strdup(type);
    e.metadata = rz__strdup(metadata ? metadata : "{}");
    e.created_ms = e.updated_ms = rz__wall_ms();
    if (!e.name || !e.type || !e.metadata)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else
        rc = encrypt_value(v, v->keys, &e, value, len);
    if (rc != RZ_OK) {
        rz__vault_entry_clear(&e);
        return rc;
    }
    v->entries[v->n++] = e;
    if (id_out)
        memcpy(id_out, e.id, RZ_VAULT_ID_LEN + 1);
    return RZ_OK;
}

static int find_entry(const rz_vault *v, const char *key, size_t *i)
{
    int rc = need_unlocked(v);
    if (rc != RZ_OK)
        return rc;
    *i = rz_vault_find(v, key);
    if (*i == RZ_NPOS)
        return rz__error(RZ_ENOENT, "no vault entry '%s'", key ? key : "");
    return RZ_OK;
}

int rz_vault_update(rz_vault *v, const char *key, const char *metadata,
                    const void *value, size_t len)
{
    size_t i;
    int rc = find_entry(v, key, &i);
    if (rc == RZ_OK && metadata)
        rc = rz__vault_check_meta(metadata);
    if (rc == RZ_OK)
        rc = check_value(value, len);
    if (rc != RZ_OK)
        return rc;
    rz__ventry *e = &v->entries[i];
    char *meta = metadata ? rz__strdup(metadata) : NULL;
    if (metadata && !meta)
        return rz__error(RZ_ENOMEM, "out of memory");
    if ((rc = encrypt_value(v, v->keys, e, value, len)) != RZ_OK) {
        free(meta);
        return rc;
    }
    if (meta) {
        free(e->metadata);
        e->metadata = meta;
    }
    e->updated_ms = rz__wall_ms();
    return RZ_OK;
}

int rz_vault_remove(rz_vault *v, const char *key)
{
    size_t i;
    int rc = find_entry(v, key, &i);
    if (rc != RZ_OK)
        return rc;
    rz__vault_entry_clear(&v->entries[i]);
    memmove(&v->entries[i], &v->entries[i + 1], (v->n - i - 1) * sizeof *v->entries);
    v->n--;
    return RZ_OK;
}

int rz_vault_reveal(const rz_vault *v, size_t i, rz_secret **out)
{
    *out = NULL;
    int rc = need_unlocked(v);
    if (rc != RZ_OK)
        return rc;
    if (i >= v->n)
        return rz__error(RZ_ENOENT, "no vault entry %zu", i);
    return decrypt_value(v, v->keys, &v->entries[i], out);
}
