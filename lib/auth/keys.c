/* Keys themselves: the strength rule, fresh random keys, their hashes. */
#include <string.h>

#include <sodium.h>

#include "auth/auth_impl.h"
#include "rhizos/auth.h"

int rz__auth_sodium(void)
{
    return sodium_init() < 0 ? rz__error(RZ_EINTERNAL, "libsodium failed to start")
                             : RZ_OK;
}

void rz__auth_key_hash(const char *key, unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)key, strlen(key), NULL, 0);
}

bool rz__auth_hash_equal(const unsigned char a[32], const unsigned char b[32])
{
    return sodium_memcmp(a, b, 32) == 0;
}

/* The messages say which rule failed, never the key. */
int rz_auth_key_check(const char *key)
{
    if (!key || !*key)
        return rz__error(RZ_EINVAL, "the key is empty");
    size_t n = strnlen(key, RZ_AUTH_KEY_MAX_LEN + 1);
    if (n < RZ_AUTH_KEY_MIN_LEN)
        return rz__error(RZ_EINVAL, "the key has %zu characters; it needs at "
                         "least %u (e.g. 32 random bytes as hex)", n,
                         RZ_AUTH_KEY_MIN_LEN);
    if (n > RZ_AUTH_KEY_MAX_LEN)
        return rz__error(RZ_EINVAL, "the key has more than %u characters",
                         RZ_AUTH_KEY_MAX_LEN);
    bool seen[128] = { false };
    unsigned distinct = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= ' ' || c >= 127)
            return rz__error(RZ_EINVAL, "the key has a character at offset %zu "
                             "that is not printable ASCII (or is a space)", i);
        distinct += !seen[c];
        seen[c] = true;
    }
    if (distinct < RZ_AUTH_KEY_MIN_DISTINCT)
        return rz__error(RZ_EINVAL, "the key uses only %u different characters; "
                         "it needs at least %u (a random key, not a pattern)",
                         distinct, RZ_AUTH_KEY_MIN_DISTINCT);
    return RZ_OK;
}

int rz_auth_key_new(const char *prefix, char *buf, size_t cap)
{
    if (!prefix || !buf || cap < strlen(prefix) + RZ_AUTH_KEY_NEW_HEX + 1)
        return rz__error(RZ_EINVAL, "no room for a new key");
    int rc = rz__auth_sodium();
    if (rc != RZ_OK)
        return rc;
    unsigned char raw[RZ_AUTH_KEY_NEW_HEX / 2];
    size_t pl = strlen(prefix);
    randombytes_buf(raw, sizeof raw);
    memmove(buf, prefix, pl);
    sodium_bin2hex(buf + pl, cap - pl, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    return RZ_OK;
}
