/* Manifest signatures: Ed25519 (libsodium) over the canonical manifest
 * (rz__manifest_canonical: sorted keys, no whitespace, no "signature"),
 * stored in the manifest as "signature": {"publisher": <hex public key>,
 * "sig": <base64 signature>}.
 *
 * A secret key file holds the 64-byte libsodium secret key as 128 hex digits
 * and must not be readable by group or others, as ssh insists for its keys.
 * Secret keys live only in sodium_malloc'ed memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "module/module_impl.h"

#define SIG_B64_MAX 128

/* module.h and module_impl.h speak of 32-byte publisher keys. */
_Static_assert(crypto_sign_PUBLICKEYBYTES == 32, "an Ed25519 public key");
#define KEYFILE_MAX 1024

static int sodium_ready(void)
{
    return sodium_init() < 0 ? rz__error(RZ_EINTERNAL, "libsodium failed to "
                                         "initialise") : RZ_OK;
}

int rz__pubkey_decode(const char *text, unsigned char pk[32])
{
    size_t n = 0;
    const char *end;
    size_t len = text ? strlen(text) : 0;
    if (len == 64 && sodium_hex2bin(pk, 32, text, len, NULL, &n, &end) == 0 &&
        n == 32 && *end == '\0')
        return RZ_OK;
    if (len > 0 && len <= 64 &&
        sodium_base642bin(pk, 32, text, len, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) == 0 &&
        n == 32 && *end == '\0')
        return RZ_OK;
    return rz__error(RZ_EINVAL, "publisher key '%.80s' is not 32 bytes as 64 "
                     "hex digits or base64", text ? text : "");
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, b, n);
}

/* ---- Verification ---- */

typedef struct sig_fields {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sig[crypto_sign_BYTES];
} sig_fields;

static int read_sig(const cJSON *s, sig_fields *f)
{
    if (!cJSON_IsObject(s))
        return rz__error(RZ_EAUTH, "'signature' must be an object "
                         "{publisher, sig}");
    const cJSON *pub = cJSON_GetObjectItemCaseSensitive(s, "publisher");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(s, "sig");
    if (!cJSON_IsString(pub) || !cJSON_IsString(sig))
        return rz__error(RZ_EAUTH, "'signature' needs string members "
                         "'publisher' and 'sig'");
    if (rz__pubkey_decode(pub->valuestring, f->pk) != RZ_OK)
        return rz__error(RZ_EAUTH, "'signature.publisher' is not a 32-byte "
                         "key in hex or base64");
    size_t n = 0;
    const char *end;
    size_t len = strlen(sig->valuestring);
    if (len > SIG_B64_MAX ||
        sodium_base642bin(f->sig, sizeof f->sig, sig->valuestring, len, NULL,
                          &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        n != sizeof f->sig || *end != '\0')
        return rz__error(RZ_EAUTH, "'signature.sig' is not a base64 Ed25519 "
                         "signature (64 bytes)");
    return RZ_OK;
}

int rz__manifest_check_sig(const cJSON *manifest, char **publisher)
{
    *publisher = NULL;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(manifest, "signature");
    if (!s)
        return RZ_OK;
    int rc = sodium_ready();
    sig_fields f;
    if (rc == RZ_OK)
        rc = read_sig(s, &f);
    char *canon = NULL;
    if (rc == RZ_OK)
        rc = rz__manifest_canonical(manifest, &canon);
    if (rc != RZ_OK)
        return rc;
    int bad = crypto_sign_verify_detached(f.sig, (const unsigned char *)canon,
                                          strlen(canon), f.pk);
    free(canon);
    if (bad)
        return rz__error(RZ_EAUTH, "signature does not verify: the manifest "
                         "was changed after signing, or signed by another key");
    *publisher = rz__malloc(65);
    if (!*publisher)
        return rz__error(RZ_ENOMEM, "out of memory");
    to_hex(f.pk, 32, *publisher);
    return RZ_OK;
}

/* Is `hex` (a verified publisher) one of `trusted` (hex or base64)? */
static bool is_trusted(const char *hex, const char *const *trusted, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char pk[32];
        char h[65];
        if (rz__pubkey_decode(trusted[i], pk) != RZ_OK)
            continue;
        to_hex(pk, 32, h);
        if (strcmp(h, hex) == 0)
            return true;
    }
    return false;
}

static int parse_manifest(const char *json, size_t len, cJSON **out)
{
    *out = NULL;
    if (!json)
        return rz__error(RZ_EINVAL, "manifest is NULL");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rz__error(RZ_ESYNTAX, "the manifest is not a JSON object");
    }
    *out = root;
    return RZ_OK;
}

int rz_manifest_verify(const char *json, size_t len,
                       const char *const *trusted, size_t n_trusted,
                       char **publisher)
{
    if (publisher)
        *publisher = NULL;
    for (size_t i = 0; i < n_trusted; i++) {
        unsigned char pk[32];
        if (rz__pubkey_decode(trusted[i], pk) != RZ_OK)
            return RZ_EINVAL;
    }
    cJSON *root;
    int rc = parse_manifest(json, len, &root);
    if (rc != RZ_OK)
        return rc;
    char *pub = NULL;
    if (!cJSON_GetObjectItemCaseSensitive(root, "signature"))
        rc = rz__error(RZ_EAUTH, "the manifest is not signed");
    else
        rc = rz__manifest_check_sig(root, &pub);
    cJSON_Delete(root);
    if (rc == RZ_OK && n_trusted && !is_trusted(pub, trusted, n_trusted))
        rc = rz__error(RZ_EAUTH, "signed by %s, which is not a trusted "
                       "publisher", pub);
    if (rc == RZ_OK && publisher)
        *publisher = pub;
    else
        free(pub);
    return rc;
}

int rz__registry_trust_check(const rz_module *m, const char *const *trusted,
                             size_t n_trusted)
{
    if (!n_trusted)
        return RZ_OK;
    if (!m->publisher)
        return rz__error(RZ_EAUTH, "not signed, and only modules of trusted "
                         "publishers are accepted");
    if (!is_trusted(m->publisher, trusted, n_trusted))
        return rz__error(RZ_EAUTH, "signed by %s, which is not a trusted "
                         "publisher", m->publisher);
    return RZ_OK;
}

/* ---- Keys ---- */

int rz_sign_keygen(const char *secret_key_file, char public_hex[65])
{
    if (!secret_key_file || !public_hex)
        return rz__error(RZ_EINVAL, "file or output is NULL");
    public_hex[0] = '\0';
    int rc = sodium_ready();
    if (rc != RZ_OK)
        return rc;
    unsigned char pk[32];
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    char *hex = sodium_malloc(crypto_sign_SECRETKEYBYTES * 2 + 2);
    if (!sk || !hex) {
        sodium_free(sk);
        sodium_free(hex);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    crypto_sign_keypair(pk, sk);
    to_hex(sk, crypto_sign_SECRETKEYBYTES, hex);
    size_t hl = strlen(hex);
    hex[hl++] = '\n';
    int fd = open(secret_key_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = rz__error(errno == EEXIST ? RZ_EEXISTS : RZ_EIO, "%s: %s",
                       secret_key_file, strerror(errno));
    } else {
        ssize_t w = write(fd, hex, hl);
        bool ok = w == (ssize_t)hl && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;      /* always close */
        if (!ok) {
            rc = rz__error(RZ_EIO, "%s: write failed", secret_key_file);
            unlink(secret_key_file);
        }
    }
    sodium_free(sk);
    sodium_free(hex);
    if (rc == RZ_OK)
        to_hex(pk, 32, public_hex);
    return rc;
}

/* Read the secret key file into sodium_malloc'ed memory. */
static int read_secret(const char *path, unsigned char **sk_out)
{
    *sk_out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rz__error(RZ_ENOENT, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rz__error(RZ_EINVAL, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return rz__error(RZ_EAUTH, "%s: secret key file is accessible by "
                         "group or others (chmod 600 it)", path);
    }
    char *buf = sodium_malloc(KEYFILE_MAX);
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    ssize_t n = buf && sk ? read(fd, buf, KEYFILE_MAX - 1) : -1;
    close(fd);
    int rc = RZ_OK;
    size_t got = 0;
    const char *end = NULL;
    if (!buf || !sk) {
        rc = rz__error(RZ_ENOMEM, "out of memory");
    } else if (n < 0) {
        rc = rz__error(RZ_EIO, "%s: read failed", path);
    } else {
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (sodium_hex2bin(sk, crypto_sign_SECRETKEYBYTES, buf, (size_t)n,
                           NULL, &got, &end) != 0 ||
            got != crypto_sign_SECRETKEYBYTES || *end != '\0')
            rc = rz__error(RZ_EINVAL, "%s: not an Ed25519 secret key (128 "
                           "hex digits)", path);
    }
    sodium_free(buf);
    if (rc != RZ_OK) {
        sodium_free(sk);
        return rc;
    }
    *sk_out = sk;
    return RZ_OK;
}

static int attach_sig(cJSON *root, const unsigned char *sk)
{
    char *canon = NULL;
    int rc = rz__manifest_canonical(root, &canon);
    if (rc != RZ_OK)
        return rc;
    unsigned char sig[crypto_sign_BYTES], pk[32];
    crypto_sign_detached(sig, NULL, (const unsigned char *)canon,
                         strlen(canon), sk);
    free(canon);
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    char pkhex[65], b64[SIG_B64_MAX];
    to_hex(pk, 32, pkhex);
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig,
                      sodium_base64_VARIANT_ORIGINAL);
    cJSON *s = cJSON_CreateObject();
    if (!s || !cJSON_AddStringToObject(s, "publisher", pkhex) ||
        !cJSON_AddStringToObject(s, "sig", b64)) {
        cJSON_Delete(s);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "signature");
    if (!cJSON_AddItemToObject(root, "signature", s)) {
        cJSON_Delete(s);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}

int rz_manifest_sign(const char *json, size_t len, const char *secret_key_file,
                     char **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!secret_key_file)
        return rz__error(RZ_EINVAL, "secret key file is NULL");
    int rc = sodium_ready();
    cJSON *root = NULL;
    if (rc == RZ_OK)
        rc = parse_manifest(json, len, &root);
    unsigned char *sk = NULL;
    if (rc == RZ_OK)
        rc = read_secret(secret_key_file, &sk);
    if (rc == RZ_OK)
        rc = attach_sig(root, sk);
    sodium_free(sk);
    char *s = rc == RZ_OK ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (rc == RZ_OK && !s)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    *out = s;
    return rc;
}
