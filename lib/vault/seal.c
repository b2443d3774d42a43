/* Handing a credential to a node: crypto_box_seal to the node's X25519 key.
 *
 * Sealed plaintext: "RZS1", u64 expires_ms, u16 job id length, job id,
 * u16 credential id length, credential id, u32 value length, value. The
 * job id and expiry are inside the box, so only the node sees them and a
 * relay cannot change them; the node refuses a box for another job (a
 * replay to another job it runs) or one past its expiry. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vault/vault_impl.h"

#define SEAL_MAGIC "RZS1"
#define SEAL_ID_MAX 1024u
#define SEAL_FIXED (4u + 8u + 2u + 2u + 4u)

/* vault.h states these sizes without including sodium.h. */
_Static_assert(RZ_VAULT_SEAL_OVERHEAD == crypto_box_SEALBYTES,
               "RZ_VAULT_SEAL_OVERHEAD is crypto_box_seal's overhead");
_Static_assert(RZ_VAULT_NODE_PK_BYTES == crypto_box_PUBLICKEYBYTES,
               "RZ_VAULT_NODE_PK_BYTES is an X25519 public key");
_Static_assert(RZ_VAULT_NODE_SK_BYTES == crypto_box_SECRETKEYBYTES,
               "RZ_VAULT_NODE_SK_BYTES is an X25519 secret key");

int rz_vault_node_keypair(unsigned char pk[RZ_VAULT_NODE_PK_BYTES],
                          unsigned char sk[RZ_VAULT_NODE_SK_BYTES])
{
    int rc = rz__vault_sodium();
    if (rc != RZ_OK)
        return rc;
    if (crypto_box_keypair(pk, sk) != 0)
        return rz__error(RZ_EINTERNAL, "key pair generation failed");
    return RZ_OK;
}

static int check_id(const char *what, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > SEAL_ID_MAX)
        return rz__error(RZ_EINVAL, "%s must have 1 to %u bytes", what, SEAL_ID_MAX);
    return RZ_OK;
}

static unsigned char *put_le(unsigned char *p, uint64_t x, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *p++ = (unsigned char)(x >> (8 * i));
    return p;
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t x = 0;
    for (int i = bytes - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

int rz_vault_seal_value(unsigned char **out, size_t *out_len, const void *value,
                        size_t value_len, const char *job_id,
                        const char *credential_id, uint64_t expires_ms,
                        const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES])
{
    *out = NULL;
    *out_len = 0;
    int rc = rz__vault_sodium();
    if (rc == RZ_OK)
        rc = check_id("job id", job_id);
    if (rc == RZ_OK)
        rc = check_id("credential id", credential_id);
    if (rc != RZ_OK)
        return rc;
    if (!value || value_len == 0 || value_len > RZ_VAULT_VALUE_MAX || !node_pk)
        return rz__error(RZ_EINVAL, "nothing to seal, or a value larger than %u bytes",
                         RZ_VAULT_VALUE_MAX);
    size_t jl = strlen(job_id), cl = strlen(credential_id);
    size_t pt_len = SEAL_FIXED + jl + cl + value_len;
    unsigned char *pt = sodium_malloc(pt_len);
    unsigned char *ct = rz__malloc(pt_len + crypto_box_SEALBYTES);
    if (!pt || !ct) {
        sodium_free(pt);
        free(ct);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    unsigned char *p = pt;
    memcpy(p, SEAL_MAGIC, 4);
    p = put_le(p + 4, expires_ms, 8);
    p = put_le(p, jl, 2);
    memcpy(p, job_id, jl);
    p = put_le(p + jl, cl, 2);
    memcpy(p, credential_id, cl);
    p = put_le(p + cl, value_len, 4);
    memcpy(p, value, value_len);
    if (crypto_box_seal(ct, pt, pt_len, node_pk) != 0)
        rc = rz__error(RZ_EINVAL, "cannot seal to this public key");
    sodium_free(pt);
    if (rc != RZ_OK) {
        free(ct);
        return rc;
    }
    *out = ct;
    *out_len = pt_len + crypto_box_SEALBYTES;
    return RZ_OK;
}

int rz_vault_seal(const rz_vault *v, size_t i, const char *job_id,
                  uint64_t expires_ms,
                  const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES],
                  unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    rz_secret *s;
    int rc = rz_vault_reveal(v, i, &s);
    if (rc != RZ_OK)
        return rc;
    rc = rz_vault_seal_value(out, out_len, rz_secret_data(s), rz_secret_len(s), job_id,
                             v->entries[i].id, expires_ms, node_pk);
    rz_secret_free(s);
    return rc;
}

/* Parse the opened plaintext; *off_* locate the fields inside it. */
static int parse_sealed(const unsigned char *pt, size_t len, uint64_t *expires,
                        size_t *job_off, size_t *jl, size_t *cred_off, size_t *cl,
                        size_t *val_off, size_t *vl)
{
    if (len < SEAL_FIXED || memcmp(pt, SEAL_MAGIC, 4) != 0)
        return rz__error(RZ_ESYNTAX, "sealed credential is malformed");
    *expires = get_le(pt + 4, 8);
    size_t off = 12;
    *jl = (size_t)get_le(pt + off, 2);
    *job_off = off + 2;
    off = *job_off + *jl;
    if (off + 2 > len)
        return rz__error(RZ_ESYNTAX, "sealed credential is malformed");
    *cl = (size_t)get_le(pt + off, 2);
    *cred_off = off + 2;
    off = *cred_off + *cl;
    if (off + 4 > len)
        return rz__error(RZ_ESYNTAX, "sealed credential is malformed");
    *vl = (size_t)get_le(pt + off, 4);
    *val_off = off + 4;
    if (*val_off + *vl != len)
        return rz__error(RZ_ESYNTAX, "sealed credential is malformed");
    return RZ_OK;
}

static int check_sealed(const unsigned char *pt, size_t len, const char *job_id,
                        uint64_t now_ms, size_t *cred_off, size_t *cl,
                        size_t *val_off, size_t *vl)
{
    uint64_t expires = 0;
    size_t job_off = 0, jl = 0;
    int rc = parse_sealed(pt, len, &expires, &job_off, &jl, cred_off, cl, val_off, vl);
    if (rc != RZ_OK)
        return rc;
    if (jl != strlen(job_id) || sodium_memcmp(pt + job_off, job_id, jl) != 0)
        return rz__error(RZ_EAUTH, "credential was sealed for another job");
    if (now_ms >= expires)
        return rz__error(RZ_EEXPIRED, "sealed credential expired");
    return RZ_OK;
}

int rz_vault_unseal(rz_secret **out, char **credential_id, const void *sealed,
                    size_t sealed_len,
                    const unsigned char node_pk[RZ_VAULT_NODE_PK_BYTES],
                    const unsigned char node_sk[RZ_VAULT_NODE_SK_BYTES],
                    const char *job_id, uint64_t now_ms)
{
    *out = NULL;
    if (credential_id)
        *credential_id = NULL;
    int rc = rz__vault_sodium();
    if (rc == RZ_OK)
        rc = check_id("job id", job_id);
    if (rc != RZ_OK)
        return rc;
    if (!sealed || !node_pk || !node_sk)
        return rz__error(RZ_EINVAL, "no sealed credential or key");
    if (sealed_len < crypto_box_SEALBYTES + SEAL_FIXED ||
        sealed_len > crypto_box_SEALBYTES + SEAL_FIXED + 2 * SEAL_ID_MAX + RZ_VAULT_VALUE_MAX)
        return rz__error(RZ_ESYNTAX, "sealed credential has an impossible size");
    size_t pt_len = sealed_len - crypto_box_SEALBYTES;
    unsigned char *pt = sodium_malloc(pt_len);
    if (!pt)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t cred_off = 0, cl = 0, val_off = 0, vl = 0;
    if (crypto_box_seal_open(pt, sealed, sealed_len, node_pk, node_sk) != 0)
        rc = rz__error(RZ_EAUTH, "sealed credential does not open with this node's key");
    else
        rc = check_sealed(pt, pt_len, job_id, now_ms ? now_ms : rz__wall_ms(),
                          &cred_off, &cl, &val_off, &vl);
    if (rc == RZ_OK && credential_id && !(*credential_id = rz__strndup((char *)pt + cred_off, cl)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK && (rc = rz__secret_from(out, pt + val_off, vl)) != RZ_OK && credential_id) {
        free(*credential_id);
        *credential_id = NULL;
    }
    sodium_free(pt);
    return rc;
}
