/* A caller's own records in the engine's store (rz_engine_extra_put and
 * _del): kept in memory, in call order, until the engine's next commit
 * writes them in the same LMDB transaction as the engine's own changes
 * (store.c, "extra"), so that they are durable together or not at all.
 * A server uses them for a redo copy of what another store of its holds
 * in a transaction it has not made durable yet: one fsync then covers
 * both (docs/engine.md "Extra records"). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"

static int extra_add(rz_engine *e, const void *key, size_t klen,
                     const void *val, size_t vlen, bool put)
{
    if (!e || !key || !klen || klen > RZ_ENGINE_EXTRA_KEY_MAX ||
        (put && vlen && !val))
        return rz__error(RZ_EINVAL, "an extra record needs a key of 1 to %d "
                         "bytes (and its value)", RZ_ENGINE_EXTRA_KEY_MAX);
    if (vlen > RZ_ENGINE_EXTRA_VAL_MAX ||
        klen + vlen > RZ_ENGINE_EXTRA_PENDING_MAX - e->extra_bytes)
        return rz__error(RZ_ETOOBIG, "an extra record's value is at most %d "
                         "bytes, and those waiting for a commit at most %d",
                         RZ_ENGINE_EXTRA_VAL_MAX, RZ_ENGINE_EXTRA_PENDING_MAX);
    if (e->broken)
        return rz__error(RZ_EDB, "an earlier commit failed; reopen the engine");
    if (!rz__engine_grow((void **)&e->extra, &e->cap_extra, e->n_extra + 1,
                         sizeof *e->extra))
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__extra_op op = { rz__malloc(klen), klen, NULL, vlen, put };
    if (put)
        op.val = rz__malloc(vlen ? vlen : 1);
    if (!op.key || (put && !op.val)) {
        free(op.key);
        free(op.val);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    memcpy(op.key, key, klen);
    if (vlen)
        memcpy(op.val, val, vlen);
    e->extra[e->n_extra++] = op;
    e->n_extra_puts += put;
    e->extra_bytes += klen + vlen;
    return RZ_OK;
}

int rz_engine_extra_put(rz_engine *e, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    return extra_add(e, key, klen, val, vlen, true);
}

int rz_engine_extra_del(rz_engine *e, const void *key, size_t klen)
{
    return extra_add(e, key, klen, NULL, 0, false);
}

/* A put is what a caller's reply may wait for; a delete only tidies (the
 * copy of what another store made durable since), so it rides along with
 * the next commit that has a change of its own, or the close's. */
bool rz__engine_extra_due(const rz_engine *e)
{
    return e->n_extra_puts || (e->closing && e->n_extra);
}

void rz__engine_extra_clear(rz_engine *e)
{
    for (size_t i = 0; i < e->n_extra; i++) {
        free(e->extra[i].key);
        free(e->extra[i].val);
    }
    e->n_extra = e->n_extra_puts = e->extra_bytes = 0;
}
