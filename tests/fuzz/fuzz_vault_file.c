/* libFuzzer target: the vault file parser.
 *
 * The first byte picks what the rest feeds:
 *   even: a whole vault file image -> rz_vault_open_mem, and when the header
 *         passes (with caps small enough to keep each run cheap) an unlock
 *         attempt with a fixed password, which must fail or succeed cleanly;
 *   odd:  a decrypted entry table -> rz__vault_body_decode, the parser that
 *         runs after authentication (a key holder's malformed file must not
 *         crash a reader either).
 * A hit on the even path that unlocks is impossible without the password's
 * key, so the odd path is where the entry parser gets coverage. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rhizos/vault.h"
#include "vault/vault_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_image(const uint8_t *data, size_t size)
{
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.max_opslimit = 2;
    o.max_memlimit = 64 * 1024;
    rz_vault *v;
    if (rz_vault_open_mem(&v, data, size, &o) != RZ_OK)
        return;
    if (rz_vault_unlock(v, "fuzz", 4) == RZ_OK) {
        for (size_t i = 0; i < rz_vault_count(v); i++) {
            rz_secret *s;
            if (rz_vault_reveal(v, i, &s) == RZ_OK)
                rz_secret_free(s);
        }
    }
    rz_vault_close(v);
}

static void fuzz_body(const uint8_t *data, size_t size)
{
    rz__ventry *e;
    size_t n;
    if (rz__vault_body_decode(data, size, &e, &n) != RZ_OK)
        return;
    /* What decodes must encode back to the same bytes. */
    size_t sz = rz__vault_body_size(e, n);
    if (sz != size)
        __builtin_trap();
    unsigned char *buf = sz ? (unsigned char *)__builtin_malloc(sz) : NULL;
    if (buf) {
        rz__vault_body_encode(e, n, buf);
        if (memcmp(buf, data, sz) != 0)
            __builtin_trap();
        __builtin_free(buf);
    }
    rz__vault_entries_free(e, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_body(data + 1, size - 1);
    else
        fuzz_image(data + 1, size - 1);
    return 0;
}
