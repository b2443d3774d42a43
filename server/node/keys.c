/* A node's files: DATA/keys (Ed25519 identity, X25519 for sealed
 * credentials), DATA/state.json (id, payout account) and DATA/token.
 * Secret keys and the token are files of mode 0600 and live in memory only
 * in sodium_malloc'd buffers. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rhizos/rhizos.h"
#include "node.h"

/* ---- files ---- */

int node_mkdirs(const char *path)
{
    struct stat st;
    if (rz_fs_mkdirs(path, 0700) != RZ_OK || stat(path, &st) != 0)
        return -1;
    /* An existing folder holds keys and results: only its owner may enter
     * it (chmod fails with EPERM where it is someone else's). */
    return (st.st_mode & 077) == 0 || chmod(path, 0700) == 0 ? 0 : -1;
}

char *node_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 2);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > max) {
        free(buf);
        errno = bad ? EIO : EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int node_write_private(const char *path, const void *data, size_t len)
{
    return node_write_file(path, data, len, 1);
}

int node_write_file(const char *path, const void *data, size_t len, int sync)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    int ok = left == 0 && (!sync || fsync(fd) == 0);
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        saved = ok ? errno : saved;
        unlink(tmp);
        errno = saved ? saved : EIO;
        return -1;
    }
    return 0;
}

void node_hex(char *out, const unsigned char *bin, size_t len)
{
    sodium_bin2hex(out, len * 2 + 1, bin, len);
}

/* ---- keys ---- */

typedef struct key_file {
    const char *name;
    size_t len;
} key_file;

static const key_file key_files[] = {
    { "ed25519.key", crypto_sign_SECRETKEYBYTES },
    { "ed25519.pub", crypto_sign_PUBLICKEYBYTES },
    { "x25519.key", RZ_VAULT_NODE_SK_BYTES },
    { "x25519.pub", RZ_VAULT_NODE_PK_BYTES },
};

static int keys_path(char *buf, size_t n, const char *dir, const char *name)
{
    return snprintf(buf, n, "%s/keys/%s", dir, name) < (int)n ? 0 : -1;
}

/* Hex text of `len` bytes, newline-ended, written 0600; the text buffer is
 * wiped since it may hold a secret key. */
static int write_key(const char *path, const unsigned char *bin, size_t len)
{
    char hex[2 * crypto_sign_SECRETKEYBYTES + 2];
    node_hex(hex, bin, len);
    hex[2 * len] = '\n';
    int rc = node_write_private(path, hex, 2 * len + 1);
    sodium_memzero(hex, sizeof hex);
    return rc;
}

int node_keys_create(const char *dir, int force, char *err, size_t errlen)
{
    char kdir[PATH_MAX], path[PATH_MAX];
    snprintf(kdir, sizeof kdir, "%s/keys", dir);
    if (node_mkdirs(kdir) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", kdir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < 4 && !force; i++) {
        keys_path(path, sizeof path, dir, key_files[i].name);
        if (access(path, F_OK) == 0) {
            snprintf(err, errlen, "%s exists: this folder already holds a "
                     "node (use --force to replace its keys)", path);
            return -1;
        }
    }
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    int rc = sk ? 0 : -1;
    if (rc == 0) {
        crypto_sign_keypair(pk, sk);
        rc = keys_path(path, sizeof path, dir, "ed25519.key") ||
             write_key(path, sk, crypto_sign_SECRETKEYBYTES) ||
             keys_path(path, sizeof path, dir, "ed25519.pub") ||
             write_key(path, pk, sizeof pk);
    }
    if (rc == 0 && rz_vault_node_keypair(pk, sk) != RZ_OK)
        rc = -1;
    if (rc == 0)
        rc = keys_path(path, sizeof path, dir, "x25519.key") ||
             write_key(path, sk, RZ_VAULT_NODE_SK_BYTES) ||
             keys_path(path, sizeof path, dir, "x25519.pub") ||
             write_key(path, pk, RZ_VAULT_NODE_PK_BYTES);
    sodium_free(sk);
    if (rc != 0)
        snprintf(err, errlen, "cannot write the keys in %s: %s", kdir,
                 strerror(errno ? errno : EIO));
    return rc ? -1 : 0;
}

static int read_key(const char *dir, const char *name, unsigned char *out,
                    size_t len, char *err, size_t errlen)
{
    char path[PATH_MAX];
    keys_path(path, sizeof path, dir, name);
    size_t n = 0;
    char *text = node_read_file(path, 4 * len + 16, &n);
    if (!text) {
        snprintf(err, errlen, "%s: %s (run `rhizos-node init` first)", path,
                 strerror(errno));
        return -1;
    }
    size_t got = 0;
    int rc = sodium_hex2bin(out, len, text, n, "\r\n", &got, NULL);
    sodium_memzero(text, n);
    free(text);
    if (rc != 0 || got != len) {
        snprintf(err, errlen, "%s: not a key of %zu bytes in hex", path, len);
        return -1;
    }
    return 0;
}

int node_keys_load(node_keys *k, const char *dir, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->ed_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    k->x_sk = sodium_malloc(RZ_VAULT_NODE_SK_BYTES);
    if (!k->ed_sk || !k->x_sk) {
        snprintf(err, errlen, "out of memory");
        node_keys_free(k);
        return -1;
    }
    if (read_key(dir, "ed25519.key", k->ed_sk, crypto_sign_SECRETKEYBYTES, err, errlen) ||
        read_key(dir, "ed25519.pub", k->ed_pk, sizeof k->ed_pk, err, errlen) ||
        read_key(dir, "x25519.key", k->x_sk, RZ_VAULT_NODE_SK_BYTES, err, errlen) ||
        read_key(dir, "x25519.pub", k->x_pk, sizeof k->x_pk, err, errlen)) {
        node_keys_free(k);
        return -1;
    }
    return 0;
}

void node_keys_free(node_keys *k)
{
    if (!k)
        return;
    sodium_free(k->ed_sk);
    sodium_free(k->x_sk);
    k->ed_sk = k->x_sk = NULL;
}

/* ---- state ---- */

#define TOKEN_MAX 512

static int load_token(node_state *s, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/token", dir);
    size_t n = 0;
    char *text = node_read_file(path, TOKEN_MAX, &n);
    if (!text) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    s->token = sodium_malloc(n + 1);
    if (s->token) {
        memcpy(s->token, text, n);
        s->token[n] = '\0';
    }
    sodium_memzero(text, n);
    free(text);
    if (!s->token || n == 0) {
        snprintf(err, errlen, "%s: empty or unreadable", path);
        return -1;
    }
    return 0;
}

int node_state_load(node_state *s, const char *dir, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/state.json", dir);
    char *text = node_read_file(path, 64 * 1024, NULL);
    if (!text)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path,
                                               strerror(errno)), -1);
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *acct = cJSON_GetObjectItemCaseSensitive(j, "account");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(j, "orchestrator");
    int ok = cJSON_IsNumber(id) && id->valuedouble >= 1 &&
             id->valuedouble < 9007199254740992.0 && cJSON_IsString(acct) &&
             strlen(acct->valuestring) < sizeof s->account &&
             cJSON_IsString(url) && strlen(url->valuestring) < sizeof s->url;
    if (ok) {
        s->id = (uint64_t)id->valuedouble;
        strcpy(s->account, acct->valuestring);
        strcpy(s->url, url->valuestring);
    }
    cJSON_Delete(j);
    if (!ok) {
        snprintf(err, errlen, "%s: malformed (remove it to register again)",
                 path);
        return -1;
    }
    if (load_token(s, dir, err, errlen) != 0) {
        node_state_free(s);
        return -1;
    }
    return 0;
}

int node_state_save(const node_state *s, const char *dir, char *err,
                    size_t errlen)
{
    char path[PATH_MAX], tpath[PATH_MAX];
    snprintf(tpath, sizeof tpath, "%s/token", dir);
    snprintf(path, sizeof path, "%s/state.json", dir);
    /* The token first: a state without its token would be unusable. */
    if (node_write_private(tpath, s->token, strlen(s->token)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tpath, strerror(errno));
        return -1;
    }
    char text[1024];
    cJSON *acct = cJSON_CreateString(s->account), *url = cJSON_CreateString(s->url);
    char *a = cJSON_PrintUnformatted(acct), *u = cJSON_PrintUnformatted(url);
    int n = a && u ? snprintf(text, sizeof text,
                              "{\"id\":%llu,\"account\":%s,\"orchestrator\":%s}\n",
                              (unsigned long long)s->id, a, u) : -1;
    cJSON_free(a);
    cJSON_free(u);
    cJSON_Delete(acct);
    cJSON_Delete(url);
    if (n < 0 || n >= (int)sizeof text ||
        node_write_private(path, text, (size_t)n) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void node_state_free(node_state *s)
{
    if (!s)
        return;
    sodium_free(s->token);   /* wipes */
    s->token = NULL;
}
