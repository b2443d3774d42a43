/* Growable arrays, owned-string lists and sorted labels. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"

void *rz__grow(void *arr, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return arr;
    size_t c = *cap ? *cap : (first ? first : 1);
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return NULL;
        c *= 2;
    }
    if (size && c > SIZE_MAX / size)
        return NULL;
    void *p = rz__realloc(arr, c * size);
    if (!p)
        return NULL;
    *cap = c;
    return p;
}

int rz__set_str(char **slot, const char *value)
{
    char *s = rz__strdup(value ? value : "");
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(*slot);
    *slot = s;
    return RZ_OK;
}

/* ---- String lists ---- */

int rz__strv_add(rz__strv *s, const char *str)
{
    char **v = rz__grow(s->v, &s->cap, s->n + 1, sizeof *v, 4);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    s->v = v;
    if (!(s->v[s->n] = rz__strdup(str)))
        return rz__error(RZ_ENOMEM, "out of memory");
    s->n++;
    return RZ_OK;
}

bool rz__strv_has(const rz__strv *s, const char *str)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], str) == 0)
            return true;
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void rz__strv_sort_unique(rz__strv *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof *s->v, cmp_str);
    size_t w = 1;
    for (size_t r = 1; r < s->n; r++) {
        if (strcmp(s->v[r], s->v[w - 1]) == 0)
            free(s->v[r]);
        else
            s->v[w++] = s->v[r];
    }
    s->n = w;
}

void rz__strv_free(rz__strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- Labels ---- */

static size_t labels_find(const rz__labels *l, const char *key, bool *found)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->keys[mid], key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int rz__labels_set(rz__labels *l, const char *key, const char *val)
{
    bool found;
    size_t at = labels_find(l, key, &found);
    char *v = rz__strdup(val);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (found) {
        free(l->vals[at]);
        l->vals[at] = v;
        return RZ_OK;
    }
    /* Two arrays, one capacity: grow the values against a copy of it. */
    size_t vcap = l->cap;
    char **k2 = rz__grow(l->keys, &vcap, l->n + 1, sizeof *k2, 4);
    if (k2)
        l->keys = k2;
    char **v2 = k2 ? rz__grow(l->vals, &l->cap, l->n + 1, sizeof *v2, 4) : NULL;
    if (!v2) {
        free(v);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    l->vals = v2;
    char *k = rz__strdup(key);
    if (!k) {
        free(v);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    memmove(l->keys + at + 1, l->keys + at, (l->n - at) * sizeof *l->keys);
    memmove(l->vals + at + 1, l->vals + at, (l->n - at) * sizeof *l->vals);
    l->keys[at] = k;
    l->vals[at] = v;
    l->n++;
    return RZ_OK;
}

const char *rz__labels_get(const rz__labels *l, const char *key)
{
    bool found;
    size_t at = labels_find(l, key, &found);
    return found ? l->vals[at] : NULL;
}

void rz__labels_free(rz__labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->keys[i]);
        free(l->vals[i]);
    }
    free(l->keys);
    free(l->vals);
    memset(l, 0, sizeof *l);
}
