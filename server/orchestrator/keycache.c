/* API keys already looked up: every request names its key, and the auth
 * store's answer (an LMDB read and the principal's JSON parsed) is the
 * same until a key is given, rotated or revoked. Those writes all go
 * through auth_put_key and auth_bind_node, which empty the cache first, so
 * a revoked key is refused from its very next request. Only found keys
 * are kept: a guesser's wrong keys fill nothing. */
#include <string.h>

#include <sodium.h>

#include "orch.h"

/* A slot by a keyed hash of the key: its bits are not the caller's to
 * choose, so nobody can aim many keys at one slot; the whole hash is
 * compared before a slot answers. */
static void key_hash(orch *o, const char *key, unsigned char h[32])
{
    if (!o->keys.salted) {
        randombytes_buf(o->keys.salt, sizeof o->keys.salt);
        o->keys.salted = true;
    }
    crypto_generichash(h, 32, (const unsigned char *)key, strlen(key),
                       o->keys.salt, sizeof o->keys.salt);
}

int keycache_lookup(orch *o, const char *key, principal *out)
{
    unsigned char h[32];
    key_hash(o, key, h);
    orch_key_slot *s = &o->keys.slot[h[0] % ORCH_KEY_SLOTS];
    int rc = RZ_OK;
    if (s->used && sodium_memcmp(s->hash, h, sizeof h) == 0) {
        *out = s->who;
    } else if ((rc = rz_auth_key_lookup(o->auth, key, out)) == RZ_OK &&
               out->kind != P_ADMIN) {   /* the admin's is checked in memory */
        memcpy(s->hash, h, sizeof h);
        s->who = *out;
        s->used = true;
    }
    sodium_memzero(h, sizeof h);
    return rc;
}

void keycache_clear(orch *o)
{
    sodium_memzero(o->keys.slot, sizeof o->keys.slot);
}
