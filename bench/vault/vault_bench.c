/* Vault benchmark: unlock time at each KDF level next to a bare
 * crypto_pwhash with the same parameters (the floor: Argon2id is the whole
 * cost by design), and values decrypted per second after unlock next to a
 * bare XChaCha20-Poly1305 decrypt loop; plus seal/unseal for a node.
 *
 * usage: vault_bench [--sensitive] [--entries N] [--dir DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "rhizos/vault.h"

#define PW "bench password"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

_Noreturn static void die(const char *what, int rc)
{
    fprintf(stderr, "vault_bench: %s: %s\n", what, rz_error_last()->message[0]
            ? rz_error_last()->message : rz_strerror(rc));
    exit(1);
}

static double median(double *x, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
            double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
    return x[n / 2];
}

static void bench_level(const char *dir, const char *label, rz_vault_kdf kdf, int reps)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-%s", dir, label);
    unlink(path);
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.kdf = kdf;
    rz_vault *v;
    int rc = rz_vault_create(&v, path, PW, strlen(PW), &o);
    if (rc != RZ_OK)
        die("create", rc);
    rc = rz_vault_add(v, "k", "llm_api", NULL, "value", 5, NULL);
    if (rc == RZ_OK)
        rc = rz_vault_save(v);
    if (rc != RZ_OK)
        die("save", rc);
    uint64_t ops, mem;
    rz_vault_kdf_cost(v, &ops, &mem);
    rz_vault_close(v);

    double t_v[16], t_raw[16];
    unsigned char salt[crypto_pwhash_SALTBYTES] = {0}, key[32];
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        if ((rc = rz_vault_open(&v, path, NULL)) != RZ_OK ||
            (rc = rz_vault_unlock(v, PW, strlen(PW))) != RZ_OK)
            die("unlock", rc);
        t_v[i] = now_s() - t0;
        rz_vault_close(v);
        t0 = now_s();
        if (crypto_pwhash(key, sizeof key, PW, strlen(PW), salt, ops, (size_t)mem,
                          crypto_pwhash_ALG_ARGON2ID13) != 0)
            die("crypto_pwhash", RZ_ENOMEM);
        t_raw[i] = now_s() - t0;
    }
    printf("unlock %-12s ops=%llu mem=%4llu MiB   rhizos %8.1f ms   bare crypto_pwhash %8.1f ms"
           "   (median of %d)\n", label, (unsigned long long)ops,
           (unsigned long long)(mem >> 20), median(t_v, reps) * 1e3,
           median(t_raw, reps) * 1e3, reps);
    unlink(path);
}

static void bench_reveal(const char *dir, int entries)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-entries", dir);
    unlink(path);
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.kdf = RZ_VAULT_KDF_INTERACTIVE;
    rz_vault *v;
    int rc = rz_vault_create(&v, path, PW, strlen(PW), &o);
    if (rc != RZ_OK)
        die("create", rc);
    unsigned char val[64];
    memset(val, 'k', sizeof val);
    for (int i = 0; i < entries; i++) {
        char name[32];
        snprintf(name, sizeof name, "key-%d", i);
        rc = rz_vault_add(v, name, "exchange_api", "{\"n\":1}", val, sizeof val, NULL);
        if (rc != RZ_OK)
            die("add", rc);
    }
    double t0 = now_s();
    if ((rc = rz_vault_save(v)) != RZ_OK)
        die("save", rc);
    double t_save = now_s() - t0;
    rz_vault_close(v);
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long fsize = ftell(fp);
    fclose(fp);

    t0 = now_s();
    if ((rc = rz_vault_open(&v, path, NULL)) != RZ_OK ||
        (rc = rz_vault_unlock(v, PW, strlen(PW))) != RZ_OK)
        die("unlock", rc);
    double t_unlock = now_s() - t0;

    size_t n = 0;
    t0 = now_s();
    double el;
    do {
        for (int i = 0; i < entries; i++) {
            rz_secret *s;
            if ((rc = rz_vault_reveal(v, (size_t)i, &s)) != RZ_OK)
                die("reveal", rc);
            rz_secret_free(s);
        }
        n += (size_t)entries;
    } while ((el = now_s() - t0) < 1.0);
    double per_s = (double)n / el;

    /* Peer: the same decrypts into a plain stack buffer, no guarded memory. */
    unsigned char k[32], nonce[24], ct[sizeof val + 16], pt[sizeof val], ad[96];
    crypto_aead_xchacha20poly1305_ietf_keygen(k);
    randombytes_buf(nonce, sizeof nonce);
    memset(ad, 1, sizeof ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, val, sizeof val, ad, 44, NULL, nonce, k);
    size_t m = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 10000; i++)
            if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, ct, sizeof ct, ad, 44,
                                                           nonce, k) != 0)
                die("peer decrypt", RZ_EAUTH);
        m += 10000;
    } while ((el = now_s() - t0) < 1.0);
    double raw_s = (double)m / el;

    printf("entries %d x 64-byte values: file %ld bytes, save %.1f ms, unlock (interactive) %.1f ms\n",
           entries, fsize, t_save * 1e3, t_unlock * 1e3);
    printf("reveal  rhizos %10.0f values/s (guarded memory, alloc+wipe each)   bare AEAD decrypt %10.0f/s\n",
           per_s, raw_s);

    /* Seal to a node and open there. */
    unsigned char pk[32], sk[32];
    int krc = rz_vault_node_keypair(pk, sk);
    if (krc != RZ_OK)
        die("node keypair", krc);
    size_t ns = 0;
    t0 = now_s();
    do {
        unsigned char *box;
        size_t len;
        rz_secret *s;
        if ((rc = rz_vault_seal(v, ns % (size_t)entries, "job-1", UINT64_MAX, pk, &box,
                                &len)) != RZ_OK ||
            (rc = rz_vault_unseal(&s, NULL, box, len, pk, sk, "job-1", 0)) != RZ_OK)
            die("seal", rc);
        rz_secret_free(s);
        rz_free(box);
        ns++;
    } while ((el = now_s() - t0) < 1.0);
    printf("seal+unseal rhizos %8.0f credentials/s (X25519 both ways)\n", (double)ns / el);
    rz_vault_close(v);
    unlink(path);
}

int main(int argc, char **argv)
{
    int sensitive = 0, entries = 1000;
    const char *dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sensitive") == 0)
            sensitive = 1;
        else if (strcmp(argv[i], "--entries") == 0 && i + 1 < argc)
            entries = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: vault_bench [--sensitive] [--entries N] [--dir DIR]\n");
            return 2;
        }
    }
    if (entries < 1 || sodium_init() < 0)
        return 2;
    printf("libsodium %s, rhizos %s\n", sodium_version_string(), rz_version());
    bench_level(dir, "interactive", RZ_VAULT_KDF_INTERACTIVE, 7);
    bench_level(dir, "moderate", RZ_VAULT_KDF_MODERATE, 5);
    if (sensitive)
        bench_level(dir, "sensitive", RZ_VAULT_KDF_SENSITIVE, 3);
    else
        printf("unlock sensitive    (skipped: --sensitive; 1 GiB and seconds per unlock)\n");
    bench_reveal(dir, entries);
    return 0;
}
