/* String -> size_t hash map, open addressing with linear probing (FNV-1a). */
#include <stdlib.h>
#include <string.h>

#include "common/internal.h"

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int rz__map_init(rz__map *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->keys = rz__calloc(cap, sizeof *m->keys);
    m->hashes = rz__malloc(cap * sizeof *m->hashes);
    m->vals = rz__malloc(cap * sizeof *m->vals);
    if (!m->keys || !m->hashes || !m->vals) {
        free(m->keys);
        free(m->hashes);
        free(m->vals);
        memset(m, 0, sizeof *m);
        return RZ_ENOMEM;
    }
    m->cap = cap;
    m->len = 0;
    return RZ_OK;
}

void rz__map_free(rz__map *m)
{
    free(m->keys);
    free(m->hashes);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int map_grow(rz__map *m)
{
    rz__map bigger;
    if (rz__map_init(&bigger, m->cap) != RZ_OK)
        return RZ_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            rz__map_put(&bigger, m->keys[i], m->vals[i]);   /* fits: no grow */
    rz__map_free(m);
    *m = bigger;
    return RZ_OK;
}

int rz__map_put(rz__map *m, const char *key, size_t val)
{
    if (!m->cap && rz__map_init(m, 8) != RZ_OK)
        return RZ_ENOMEM;
    if ((m->len + 1) * 2 > m->cap && map_grow(m) != RZ_OK)
        return RZ_ENOMEM;
    size_t mask = m->cap - 1;
    uint64_t h = hash_str(key);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->hashes[i] = h;
            m->vals[i] = val;
            m->len++;
            return RZ_OK;
        }
        if (m->hashes[i] == h && strcmp(m->keys[i], key) == 0)
            return RZ_EEXISTS;
    }
}

size_t rz__map_get(const rz__map *m, const char *key)
{
    if (!m->cap)
        return RZ_NPOS;
    size_t mask = m->cap - 1;
    uint64_t h = hash_str(key);
    for (size_t i = h & mask; m->keys[i]; i = (i + 1) & mask)
        if (m->hashes[i] == h && strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    return RZ_NPOS;
}

int rz__map_rekey(rz__map *m, const char *key)
{
    if (!m->cap)
        return RZ_ENOENT;
    size_t mask = m->cap - 1;
    uint64_t h = hash_str(key);
    for (size_t i = h & mask; m->keys[i]; i = (i + 1) & mask)
        if (m->hashes[i] == h && strcmp(m->keys[i], key) == 0) {
            m->keys[i] = key;
            return RZ_OK;
        }
    return RZ_ENOENT;
}
