/* lib/auth internals shared by its files. */
#ifndef RZ_AUTH_IMPL_H
#define RZ_AUTH_IMPL_H

#include <stdbool.h>

#include "common/internal.h"

/* sodium_init once; RZ_EINTERNAL if libsodium cannot start. */
RZ_HIDDEN int rz__auth_sodium(void);
/* BLAKE2b-256 of the key, the store's record key. */
RZ_HIDDEN void rz__auth_key_hash(const char *key, unsigned char out[32]);
/* a == b, in constant time. */
RZ_HIDDEN bool rz__auth_hash_equal(const unsigned char a[32],
                                   const unsigned char b[32]);

#endif
