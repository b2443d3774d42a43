/* DATA/auth through the library's auth store (rhizos/auth.h), the
 * failed-key throttle, and the small codecs of the routes. These wrappers
 * word the store's errors for the operator (stderr); the routes answer the
 * client. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "orch.h"

static int say(int rc, const char *what)
{
    fprintf(stderr, ORCH_NAME ": auth store %s: %s\n", what, rz_error_last()->message);
    return rc;
}

int auth_open(orch *o)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/auth", o->opts.data);
    int rc = rz_auth_open(&o->auth, dir);
    if (rc != RZ_OK)
        return say(rc, "open");
    rz_auth_throttle_opts to = RZ_AUTH_THROTTLE_OPTS_INIT;
    to.max_failures = o->opts.auth_failures;
    if (o->opts.auth_failures && (rc = rz_auth_throttle_new(&o->throttle, &to)) != RZ_OK)
        return say(rc, "throttle");
    return RZ_OK;   /* what a crash left: auth_redo_replay, once the stores agree */
}

void auth_close(orch *o)
{
    keycache_clear(o);
    rz_auth_close(o->auth);
    o->auth = NULL;
    rz_auth_throttle_free(o->throttle);
    o->throttle = NULL;
}

static int refuse_admin(int rc, const char *from, const char *why)
{
    fprintf(stderr, ORCH_NAME ": refusing the admin key from %s: %s%s\n"
            ORCH_NAME ": make one with: openssl rand -hex 32\n",
            from, why, rz_error_last()->message);
    return rc;
}

int auth_check_admin(const char *key, const char *from)
{
    int rc = rz_auth_key_check(key);
    return rc == RZ_OK ? RZ_OK : refuse_admin(rc, from, "the admin key is too weak: ");
}

int auth_set_admin(orch *o, const char *key, const char *from)
{
    int rc = rz_auth_admin_set(o->auth, key);
    return rc == RZ_OK ? RZ_OK : refuse_admin(rc, from, "");
}

int auth_check_metrics_key(const char *key, const char *from)
{
    int rc = rz_auth_key_check(key);
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": refusing the metrics key from %s: the key is "
                "too weak: %s\n" ORCH_NAME ": make one with: openssl rand -hex 32\n",
                from, rz_error_last()->message);
    return rc;
}

int auth_set_metrics_key(orch *o, const char *key)
{
    crypto_generichash(o->metrics_key, sizeof o->metrics_key,
                       (const unsigned char *)key, strlen(key), NULL, 0);
    o->has_metrics_key = true;
    return 0;
}

bool auth_is_metrics_key(orch *o, const char *key)
{
    if (!o->has_metrics_key)
        return false;
    unsigned char h[sizeof o->metrics_key];
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key), NULL, 0);
    return sodium_memcmp(h, o->metrics_key, sizeof h) == 0;
}

int auth_lookup(orch *o, const char *key, principal *out)
{
    return keycache_lookup(o, key, out);
}

/* Whom the throttle counts: an IPv6 client by its /64 (one host is
 * usually given a whole /64, so it could walk its addresses), anyone else
 * by address. */
static const char *throttle_client(const char *peer, char buf[INET6_ADDRSTRLEN])
{
    struct in6_addr a;
    if (!strchr(peer, ':') || inet_pton(AF_INET6, peer, &a) != 1 ||
        IN6_IS_ADDR_V4MAPPED(&a))
        return peer;
    memset(a.s6_addr + 8, 0, 8);
    return inet_ntop(AF_INET6, &a, buf, INET6_ADDRSTRLEN) ? buf : peer;
}

unsigned auth_wait_s(orch *o, const char *client, const char *key)
{
    if (!o->throttle)
        return 0;
    char buf[INET6_ADDRSTRLEN];
    uint64_t ms = rz_auth_throttle_wait(o->throttle, throttle_client(client, buf), key,
                                        orch_now_ms());
    return ms ? (unsigned)((ms + 999) / 1000) : 0;
}

void auth_failed(orch *o, const char *client, const char *key)
{
    char buf[INET6_ADDRSTRLEN];
    if (o->throttle)
        rz_auth_throttle_fail(o->throttle, throttle_client(client, buf), key,
                              orch_now_ms());
}

void auth_new_key(const char *prefix, char *buf, size_t cap)
{
    if (rz_auth_key_new(prefix, buf, cap) != RZ_OK)
        abort();   /* every caller's buffer is sized for it */
}

/* ---- small codecs ---- */

void hex_encode(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, in, n);
}

bool hex_decode(const char *hex, unsigned char *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;
    return hex && strlen(hex) == n * 2 &&
           sodium_hex2bin(out, n, hex, n * 2, NULL, &got, &end) == 0 &&
           got == n && end && *end == '\0';
}

char *b64_encode(const unsigned char *in, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out)
        sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

unsigned char *b64_decode(const char *in, size_t *n)
{
    size_t len = strlen(in), got = 0;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    const char *end = NULL;
    if (!out || sodium_base642bin(out, len / 4 * 3 + 3, in, len, NULL, &got,
                                  &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        !end || *end) {
        free(out);
        return NULL;
    }
    *n = got;
    return out;
}

rz_ledger_id auth_random_id(void)
{
    rz_ledger_id id;
    do
        randombytes_buf(&id, sizeof id);
    while (id.hi == 0);   /* {0, *} holds the ledger's reserved ids */
    return id;
}

/* ---- records ---- */

int auth_put_key(orch *o, const char *key, const principal *p)
{
    auth_settle(o);   /* between passes: durable on its own */
    int rc = rz_auth_key_put(o->auth, key, p);
    keycache_clear(o);   /* a key that named another principal */
    return rc == RZ_OK ? rc : say(rc, "write");
}

int auth_bind_node(orch *o, const unsigned char ed25519[32], uint64_t node,
                   const char *x25519_hex, const char *token, rz_ledger_id account)
{
    keycache_clear(o);   /* the node's last token is refused from now on */
    return rz_auth_identity_bind(o->auth, ed25519, node, x25519_hex, token, account);
}

int auth_node_pk(orch *o, uint64_t node, unsigned char pk[32])
{
    return rz_auth_node_key_get(o->auth, node, pk) == RZ_OK ? RZ_OK : RZ_ENOENT;
}

int auth_put_account(orch *o, rz_ledger_id id, const char *name,
                     const char *wallet)
{
    auth_settle(o);   /* between passes: durable on its own */
    int rc = rz_auth_account_put(o->auth, id, name, wallet);
    return rc == RZ_OK ? rc : say(rc, "write");
}

int auth_put_creds(orch *o, uint64_t dep, const char *json)
{
    auth_settle(o);   /* between passes: durable on its own */
    int rc = rz_auth_creds_put(o->auth, dep, json);
    return rc == RZ_OK ? rc : say(rc, "write");
}

char *auth_get_creds(orch *o, uint64_t dep)
{
    char *out = NULL;
    return rz_auth_creds_get(o->auth, dep, &out) == RZ_OK ? out : NULL;
}

int auth_put_log(orch *o, uint64_t job, uint32_t attempt, const char *log, size_t len,
                 const log_times *times, bool redo)
{
    char *marks = times && times->n ? log_times_json(times) : NULL;
    size_t ml = marks ? strlen(marks) : 0;
    char *all = marks ? malloc(len + 1 + ml) : NULL;
    if (all) {   /* the log as a C string, the marks after its NUL */
        if (len)
            memcpy(all, log, len);
        all[len] = '\0';
        memcpy(all + len + 1, marks, ml);
    }
    int rc = auth_put_log_bytes(o, job, attempt, all ? all : log,
                                all ? len + 1 + ml : len, redo);
    free(all);
    cJSON_free(marks);
    return rc == RZ_OK ? rc : say(rc, "write");
}

char *auth_get_log_times(orch *o, uint64_t job, uint32_t attempt, log_times *times)
{
    char *out = NULL;
    size_t len = 0;
    *times = (log_times){0};
    if (rz_auth_attempt_log_get(o->auth, job, attempt, &out, &len, NULL) != RZ_OK)
        return NULL;
    size_t n = strlen(out);
    if (n < len)
        log_times_parse(out + n + 1, times);
    return out;
}

/* Attempt 0: the job's last log. */
char *auth_get_log(orch *o, uint64_t job, uint32_t attempt)
{
    char *out = NULL;
    return rz_auth_attempt_log_get(o->auth, job, attempt, &out, NULL, NULL) == RZ_OK
           ? out : NULL;
}
