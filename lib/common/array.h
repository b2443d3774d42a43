/* Growable arrays: the one doubling rule with an overflow check, and the
 * two owned-string containers several areas keep (feature lists, labels). */
#ifndef RZ_COMMON_ARRAY_H
#define RZ_COMMON_ARRAY_H

#include "common/internal.h"

/* Room for `need` elements of `size` bytes in `arr` (capacity *cap),
 * doubling from `first`. Returns the array to keep (perhaps moved) and
 * updates *cap; NULL when out of memory or when the bytes would overflow
 * size_t, and then `arr` and *cap are unchanged and still owned by the
 * caller. `need` must be at least 1. */
RZ_HIDDEN void *rz__grow(void *arr, size_t *cap, size_t need, size_t size,
                         size_t first);

/* Replace an owned string with a copy of `value` (NULL copies as "");
 * RZ_ENOMEM and *slot unchanged on failure. */
RZ_HIDDEN int rz__set_str(char **slot, const char *value);

/* A growable list of owned strings. */
typedef struct rz__strv {
    char **v;
    size_t n, cap;
} rz__strv;

RZ_HIDDEN int rz__strv_add(rz__strv *s, const char *str);   /* copies */
RZ_HIDDEN bool rz__strv_has(const rz__strv *s, const char *str);
RZ_HIDDEN void rz__strv_sort_unique(rz__strv *s);
RZ_HIDDEN void rz__strv_free(rz__strv *s);

/* Key/value pairs, kept sorted by key. */
typedef struct rz__labels {
    char **keys, **vals;
    size_t n, cap;
} rz__labels;

RZ_HIDDEN int rz__labels_set(rz__labels *l, const char *key, const char *val);
RZ_HIDDEN const char *rz__labels_get(const rz__labels *l, const char *key);
RZ_HIDDEN void rz__labels_free(rz__labels *l);

#endif
