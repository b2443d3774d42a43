/* A node's proofs (rhizos/auth.h, docs/api.md "Node identity"): the exact
 * bytes a node signs to register or retire its key and to vouch for a
 * result, Ed25519 over them, and the bounded cache that refuses a signed
 * request seen before. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/auth_impl.h"
#include "rhizos/auth.h"

/* Exactly `n` lowercase hex digits: one spelling per key, so one message. */
static bool lower_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* An rz_auth_node_proof is a version 1 proof. */
static rz_auth_node_proof2 as_v2(const rz_auth_node_proof *p)
{
    rz_auth_node_proof2 q = { 1, p->action, p->ed25519_hex, p->x25519_hex,
                              p->timestamp_ms, p->nonce_hex, NULL };
    return q;
}

int rz_auth_proof2_message(const rz_auth_node_proof2 *p, char *buf, size_t cap,
                           size_t *len)
{
    if (len)
        *len = 0;
    if (!p || (p->version != 1 && p->version != 2))
        return rz__error(RZ_EINVAL, "a proof's version is 1 or 2");
    bool reg = p->action && strcmp(p->action, "register") == 0;
    bool ret = p->action && strcmp(p->action, "retire") == 0;
    if (!reg && !ret)
        return rz__error(RZ_EINVAL, "a proof's action is \"register\" or "
                         "\"retire\"");
    if (!lower_hex(p->ed25519_hex, 64) ||
        (reg ? !lower_hex(p->x25519_hex, 64) : p->x25519_hex != NULL))
        return rz__error(RZ_EINVAL, "public keys are 64 lowercase hex digits "
                         "(retire: no X25519 key)");
    if (p->version == 2 ? !lower_hex(p->orchestrator_hex, 64)
                        : p->orchestrator_hex != NULL)
        return rz__error(RZ_EINVAL, "a version 2 proof names the orchestrator's "
                         "key in 64 lowercase hex digits; version 1 names none");
    if (!lower_hex(p->nonce_hex, RZ_AUTH_NONCE_HEX))
        return rz__error(RZ_EINVAL, "the nonce is %u lowercase hex digits",
                         RZ_AUTH_NONCE_HEX);
    int n = p->version == 1
        ? snprintf(buf, buf ? cap : 0,
                   "rhizos-node-v1\naction=%s\ned25519=%s\n"
                   "x25519=%s\ntimestamp_ms=%" PRIu64 "\nnonce=%s\n",
                   p->action, p->ed25519_hex,
                   p->x25519_hex ? p->x25519_hex : "", p->timestamp_ms,
                   p->nonce_hex)
        : snprintf(buf, buf ? cap : 0,
                   "rhizos-node-v2\naction=%s\norchestrator=%s\ned25519=%s\n"
                   "x25519=%s\ntimestamp_ms=%" PRIu64 "\nnonce=%s\n",
                   p->action, p->orchestrator_hex, p->ed25519_hex,
                   p->x25519_hex ? p->x25519_hex : "", p->timestamp_ms,
                   p->nonce_hex);
    if (n < 0 || (size_t)n >= cap || !buf)
        return rz__error(RZ_EINVAL, "the proof's message needs %d bytes", n + 1);
    if (len)
        *len = (size_t)n;
    return RZ_OK;
}

int rz_auth_proof_message(const rz_auth_node_proof *p, char *buf, size_t cap,
                          size_t *len)
{
    if (!p) {
        if (len)
            *len = 0;
        return rz__error(RZ_EINVAL, "no proof");
    }
    rz_auth_node_proof2 q = as_v2(p);
    return rz_auth_proof2_message(&q, buf, cap, len);
}

/* `msg` signed by `sk`, as 128 hex digits. */
static int sign_hex(char sig_hex[RZ_AUTH_SIG_HEX + 1], const char *msg,
                    size_t len, const unsigned char sk[64])
{
    int rc = rz__auth_sodium();
    if (rc != RZ_OK)
        return rc;
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, len, sk);
    sodium_bin2hex(sig_hex, RZ_AUTH_SIG_HEX + 1, sig, sizeof sig);
    return RZ_OK;
}

static int verify_hex(const char *sig_hex, const char *msg, size_t len,
                      const unsigned char pk[32], const char *what)
{
    unsigned char sig[crypto_sign_BYTES];
    size_t got = 0;
    int rc = rz__auth_sodium();
    if (rc != RZ_OK)
        return rc;
    if (!lower_hex(sig_hex, RZ_AUTH_SIG_HEX) ||
        sodium_hex2bin(sig, sizeof sig, sig_hex, RZ_AUTH_SIG_HEX, NULL, &got,
                       NULL) != 0 || got != sizeof sig)
        return rz__error(RZ_EINVAL, "a signature is %u lowercase hex digits",
                         RZ_AUTH_SIG_HEX);
    if (crypto_sign_verify_detached(sig, (const unsigned char *)msg, len, pk) != 0)
        return rz__error(RZ_EAUTH, "the %s signature does not verify with the "
                         "node's key", what);
    return RZ_OK;
}

#define PROOF_MSG_MAX 512

int rz_auth_proof2_sign(const rz_auth_node_proof2 *p, const unsigned char sk[64],
                        char sig_hex[RZ_AUTH_SIG_HEX + 1])
{
    char msg[PROOF_MSG_MAX];
    size_t len;
    int rc = rz_auth_proof2_message(p, msg, sizeof msg, &len);
    return rc == RZ_OK ? sign_hex(sig_hex, msg, len, sk) : rc;
}

int rz_auth_proof2_verify(const rz_auth_node_proof2 *p, const char *sig_hex)
{
    char msg[PROOF_MSG_MAX];
    size_t len;
    unsigned char pk[32];
    size_t got = 0;
    int rc = rz_auth_proof2_message(p, msg, sizeof msg, &len);
    if (rc != RZ_OK)
        return rc;
    sodium_hex2bin(pk, sizeof pk, p->ed25519_hex, 64, NULL, &got, NULL);
    return verify_hex(sig_hex, msg, len, pk, p->action);
}

int rz_auth_proof_sign(const rz_auth_node_proof *p, const unsigned char sk[64],
                       char sig_hex[RZ_AUTH_SIG_HEX + 1])
{
    if (!p)
        return rz__error(RZ_EINVAL, "no proof");
    rz_auth_node_proof2 q = as_v2(p);
    return rz_auth_proof2_sign(&q, sk, sig_hex);
}

int rz_auth_proof_verify(const rz_auth_node_proof *p, const char *sig_hex)
{
    if (!p)
        return rz__error(RZ_EINVAL, "no proof");
    rz_auth_node_proof2 q = as_v2(p);
    return rz_auth_proof2_verify(&q, sig_hex);
}

/* ---- results ---- */

void rz_auth_digest_hex(const void *data, size_t len,
                        char hex[RZ_AUTH_DIGEST_HEX + 1])
{
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, data, len);
    sodium_bin2hex(hex, RZ_AUTH_DIGEST_HEX + 1, d, sizeof d);
}

int rz_auth_result_message(const rz_auth_result *r, char *buf, size_t cap,
                           size_t *len)
{
    if (len)
        *len = 0;
    if (!r || !r->job || (r->text_len && !r->text))
        return rz__error(RZ_EINVAL, "a result names its job and its text");
    char hex[RZ_AUTH_DIGEST_HEX + 1];
    rz_auth_digest_hex(r->text_len ? r->text : "", r->text_len, hex);
    int n = snprintf(buf, buf ? cap : 0,
                     "rhizos-result-v1\njob=%" PRIu64 "\nattempt=%" PRIu32
                     "\noutcome=%s\nsha256=%s\n", r->job, r->attempt,
                     r->failed ? "error" : "outputs", hex);
    if (n < 0 || (size_t)n >= cap || !buf)
        return rz__error(RZ_EINVAL, "the result's message needs %d bytes", n + 1);
    if (len)
        *len = (size_t)n;
    return RZ_OK;
}

int rz_auth_result_sign(const rz_auth_result *r, const unsigned char sk[64],
                        char sig_hex[RZ_AUTH_SIG_HEX + 1])
{
    char msg[256];
    size_t len;
    int rc = rz_auth_result_message(r, msg, sizeof msg, &len);
    return rc == RZ_OK ? sign_hex(sig_hex, msg, len, sk) : rc;
}

int rz_auth_result_verify(const rz_auth_result *r, const unsigned char pk[32],
                          const char *sig_hex)
{
    char msg[256];
    size_t len;
    int rc = rz_auth_result_message(r, msg, sizeof msg, &len);
    return rc == RZ_OK ? verify_hex(sig_hex, msg, len, pk, "result") : rc;
}

/* ---- replay cache ----
 * A fixed table of nonces seen, found by a keyed hash within a short probe
 * run. An entry is needed only while its timestamp is inside the window
 * (after that the timestamp alone refuses it), so it is free again then. */

#define PROBE 16u

typedef struct seen {
    uint64_t id;          /* keyed hash of the nonce; 0: free */
    uint64_t until_ms;    /* free from this time */
} seen;

struct rz_auth_replay {
    uint64_t window_ms;
    size_t n;
    unsigned char hkey[crypto_generichash_KEYBYTES];
    seen *v;
};

int rz_auth_replay_new(rz_auth_replay **out, size_t slots, uint64_t window_ms)
{
    *out = NULL;
    if (slots < PROBE || !window_ms)
        return rz__error(RZ_EINVAL, "a replay cache needs at least %u slots and "
                         "a window", PROBE);
    int rc = rz__auth_sodium();
    if (rc != RZ_OK)
        return rc;
    rz_auth_replay *r = rz__calloc(1, sizeof *r);
    if (r)
        r->v = rz__calloc(slots, sizeof *r->v);
    if (!r || !r->v) {
        free(r);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    r->n = slots;
    r->window_ms = window_ms;
    crypto_generichash_keygen(r->hkey);
    *out = r;
    return RZ_OK;
}

void rz_auth_replay_free(rz_auth_replay *r)
{
    if (!r)
        return;
    free(r->v);
    free(r);
}

int rz_auth_replay_check(rz_auth_replay *r, const char *nonce_hex,
                         uint64_t timestamp_ms, uint64_t now_ms)
{
    if (!lower_hex(nonce_hex, RZ_AUTH_NONCE_HEX))
        return rz__error(RZ_EINVAL, "the nonce is %u lowercase hex digits",
                         RZ_AUTH_NONCE_HEX);
    uint64_t skew = timestamp_ms > now_ms ? timestamp_ms - now_ms
                                          : now_ms - timestamp_ms;
    if (skew > r->window_ms)
        return rz__error(RZ_EEXPIRED, "the signed timestamp is %llu ms from the "
                         "server's clock; at most %llu", (unsigned long long)skew,
                         (unsigned long long)r->window_ms);
    uint64_t id = 0;
    crypto_generichash((unsigned char *)&id, sizeof id,
                       (const unsigned char *)nonce_hex, RZ_AUTH_NONCE_HEX,
                       r->hkey, sizeof r->hkey);
    id |= 1;   /* never 0, the free mark */
    size_t start = (size_t)(id >> 1) % r->n;
    seen *slot = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        seen *s = &r->v[(start + i) % r->n];
        bool live = s->id && s->until_ms >= now_ms;
        if (live && s->id == id)
            return rz__error(RZ_EEXISTS, "this signed request was seen before "
                             "(a replay); sign a new one");
        if (!live && !slot)
            slot = s;
    }
    if (!slot)
        return rz__error(RZ_ETOOBIG, "too many signed requests at once; retry "
                         "in a few seconds");
    slot->id = id;
    slot->until_ms = timestamp_ms + r->window_ms;
    return RZ_OK;
}

size_t rz_auth_replay_count(const rz_auth_replay *r, uint64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; r && i < r->n; i++)
        k += r->v[i].id && r->v[i].until_ms >= now_ms;
    return k;
}
