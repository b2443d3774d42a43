/* The failed-key throttle (rhizos/auth.h): a fixed table of records, found
 * by a keyed hash of "c:" + client or "k:" + key within a short probe run.
 * Records are replaced in place, never deleted, so a lookup scans the whole
 * run and needs no tombstones. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/auth_impl.h"
#include "rhizos/auth.h"

#define PROBE 16u   /* records a name may live in; eviction stays among them */

typedef struct record {
    uint64_t id;            /* keyed hash; 0: free */
    uint32_t failures;      /* within the window */
    uint64_t last_ms;       /* the last failure */
    uint64_t until_ms;      /* locked before this */
} record;

struct rz_auth_throttle {
    rz_auth_throttle_opts o;
    unsigned char hkey[crypto_generichash_KEYBYTES];
    record *v;
    size_t n;
};

static uint64_t or_default(uint64_t v, uint64_t def)
{
    return v ? v : def;
}

int rz_auth_throttle_new(rz_auth_throttle **out, const rz_auth_throttle_opts *opts)
{
    *out = NULL;
    rz_auth_throttle_opts o = RZ_AUTH_THROTTLE_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.version != 1)
        return rz__error(RZ_EINVAL, "rz_auth_throttle_opts version %u is unknown",
                         o.version);
    o.max_failures = (uint32_t)or_default(o.max_failures,
                                          RZ_AUTH_THROTTLE_DEFAULT_MAX_FAILURES);
    o.window_ms = or_default(o.window_ms, RZ_AUTH_THROTTLE_DEFAULT_WINDOW_MS);
    o.lock_ms = or_default(o.lock_ms, RZ_AUTH_THROTTLE_DEFAULT_LOCK_MS);
    o.max_lock_ms = or_default(o.max_lock_ms, RZ_AUTH_THROTTLE_DEFAULT_MAX_LOCK_MS);
    o.slots = (uint32_t)or_default(o.slots, RZ_AUTH_THROTTLE_DEFAULT_SLOTS);
    if (o.lock_ms > o.max_lock_ms)
        return rz__error(RZ_EINVAL, "the first lock (%llu ms) is longer than the "
                         "longest (%llu ms)", (unsigned long long)o.lock_ms,
                         (unsigned long long)o.max_lock_ms);
    int rc = rz__auth_sodium();
    if (rc != RZ_OK)
        return rc;
    rz_auth_throttle *t = rz__calloc(1, sizeof *t);
    if (t)
        t->v = rz__calloc(o.slots, sizeof *t->v);
    if (!t || !t->v) {
        rz_auth_throttle_free(t);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    t->o = o;
    randombytes_buf(t->hkey, sizeof t->hkey);
    *out = t;
    return RZ_OK;
}

void rz_auth_throttle_free(rz_auth_throttle *t)
{
    if (!t)
        return;
    free(t->v);
    free(t);
}

static uint64_t name_id(const rz_auth_throttle *t, char tag, const char *name)
{
    unsigned char h[16];
    crypto_generichash_state st;
    unsigned char pre[2] = { (unsigned char)tag, ':' };
    crypto_generichash_init(&st, t->hkey, sizeof t->hkey, sizeof h);
    crypto_generichash_update(&st, pre, sizeof pre);
    crypto_generichash_update(&st, (const unsigned char *)name, strlen(name));
    crypto_generichash_final(&st, h, sizeof h);
    sodium_memzero(&st, sizeof st);   /* it saw a key tried */
    uint64_t id;
    memcpy(&id, h, sizeof id);
    return id ? id : 1;
}

/* The record of `id`, or NULL. */
static record *find(const rz_auth_throttle *t, uint64_t id)
{
    for (size_t i = 0; i < PROBE && i < t->o.slots; i++) {
        record *r = &t->v[(id + i) % t->o.slots];
        if (r->id == id)
            return r;
    }
    return NULL;
}

/* Whether `a` should be replaced before `b`: free first, then the stalest
 * unlocked one, then the lock that ends first. */
static bool worse(const record *a, const record *b, uint64_t now_ms)
{
    if (!a->id || !b->id)
        return !a->id && b->id;
    bool la = a->until_ms > now_ms, lb = b->until_ms > now_ms;
    if (la != lb)
        return !la;
    return la ? a->until_ms < b->until_ms : a->last_ms < b->last_ms;
}

static record *find_or_take(rz_auth_throttle *t, uint64_t id, uint64_t now_ms)
{
    record *r = find(t, id);
    if (r)
        return r;
    record *victim = NULL;
    for (size_t i = 0; i < PROBE && i < t->o.slots; i++) {
        record *c = &t->v[(id + i) % t->o.slots];
        if (!victim || worse(c, victim, now_ms))
            victim = c;
    }
    t->n += !victim->id;
    memset(victim, 0, sizeof *victim);
    victim->id = id;
    return victim;
}

/* lock_ms doubled once per failure past the limit, capped. */
static uint64_t lock_for(const rz_auth_throttle *t, uint32_t failures)
{
    uint64_t d = t->o.lock_ms;
    for (uint32_t i = t->o.max_failures; i < failures && d < t->o.max_lock_ms; i++)
        d *= 2;
    return d < t->o.max_lock_ms ? d : t->o.max_lock_ms;
}

static void fail_one(rz_auth_throttle *t, char tag, const char *name, uint64_t now_ms)
{
    if (!name || !*name)
        return;
    record *r = find_or_take(t, name_id(t, tag, name), now_ms);
    /* The window runs from the last failure or the end of the lock, so a
     * lock longer than the window still doubles on the next failure. */
    uint64_t since = r->last_ms > r->until_ms ? r->last_ms : r->until_ms;
    if (r->failures && now_ms > since && now_ms - since > t->o.window_ms)
        r->failures = 0;
    if (r->failures < UINT32_MAX)
        r->failures++;
    r->last_ms = now_ms;
    if (r->failures >= t->o.max_failures)
        r->until_ms = now_ms + lock_for(t, r->failures);
}

void rz_auth_throttle_fail(rz_auth_throttle *t, const char *client, const char *key,
                           uint64_t now_ms)
{
    fail_one(t, 'c', client, now_ms);
    fail_one(t, 'k', key, now_ms);
}

static uint64_t wait_one(const rz_auth_throttle *t, char tag, const char *name,
                         uint64_t now_ms)
{
    if (!name || !*name)
        return 0;
    const record *r = find(t, name_id(t, tag, name));
    return r && r->until_ms > now_ms ? r->until_ms - now_ms : 0;
}

uint64_t rz_auth_throttle_wait(const rz_auth_throttle *t, const char *client,
                               const char *key, uint64_t now_ms)
{
    uint64_t a = wait_one(t, 'c', client, now_ms), b = wait_one(t, 'k', key, now_ms);
    return a > b ? a : b;
}

size_t rz_auth_throttle_count(const rz_auth_throttle *t)
{
    return t->n;
}
