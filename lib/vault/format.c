/* The vault file format: header, entry table, field checks, atomic writes.
 * Nothing here sees a key; the crypto is in vault.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "vault/vault_impl.h"

/* The layout in vault_impl.h, against libsodium's sizes and itself. */
_Static_assert(RZ__VAULT_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES &&
               RZ__VAULT_KEY_LEN == crypto_kdf_KEYBYTES,
               "keys are XChaCha20-Poly1305 and crypto_kdf keys");
_Static_assert(RZ__VAULT_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
               "nonces are XChaCha20-Poly1305 nonces");
_Static_assert(RZ__VAULT_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "tags are XChaCha20-Poly1305 tags");
_Static_assert(RZ__VAULT_SALT_LEN == crypto_pwhash_SALTBYTES, "an Argon2id salt");
_Static_assert(RZ_VAULT_ID_LEN == 2 * RZ__VAULT_RAWID_LEN, "entry ids are hex of raw ids");
_Static_assert(RZ__VAULT_MAC_LEN >= crypto_generichash_BYTES_MIN &&
               RZ__VAULT_MAC_LEN <= crypto_generichash_BYTES_MAX,
               "the header MAC is a BLAKE2b output");
_Static_assert(RZ__VAULT_MAC_OFF == RZ__VAULT_HDR_LEN &&
               RZ__VAULT_WRAP_OFF == RZ__VAULT_MAC_OFF + RZ__VAULT_MAC_LEN &&
               RZ__VAULT_BODY_NONCE_OFF == RZ__VAULT_WRAP_OFF + RZ__VAULT_NONCE_LEN +
                                           RZ__VAULT_KEY_LEN + RZ__VAULT_TAG_LEN &&
               RZ__VAULT_BODY_OFF == RZ__VAULT_BODY_NONCE_OFF + RZ__VAULT_NONCE_LEN,
               "the file layout's offsets follow from its fields");

void (*rz__vault_write_hook)(int step);

int rz__vault_sodium(void)
{
    if (sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libsodium failed to initialise");
    return RZ_OK;
}

/* ---- Little-endian fields ---------------------------------------------- */

static void put_u16(unsigned char *p, uint16_t x)
{
    p[0] = (unsigned char)x;
    p[1] = (unsigned char)(x >> 8);
}

static void put_u32(unsigned char *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t x = 0;
    for (int i = 3; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* ---- Header --------------------------------------------------------------- */

void rz__vault_encode_header(const rz__vault_hdr *h,
                             unsigned char out[RZ__VAULT_HDR_LEN])
{
    memcpy(out, RZ__VAULT_MAGIC, 8);
    put_u16(out + 8, h->format);
    out[10] = h->kdf;
    out[11] = h->flags;
    put_u64(out + 12, h->opslimit);
    put_u64(out + 20, h->memlimit);
    memcpy(out + 28, h->salt, RZ__VAULT_SALT_LEN);
    memcpy(out + 44, h->vault_id, RZ__VAULT_RAWID_LEN);
}

int rz__vault_parse_header(const unsigned char *img, size_t len,
                           uint64_t max_ops, uint64_t max_mem,
                           rz__vault_hdr *h)
{
    if (len < 8 || memcmp(img, RZ__VAULT_MAGIC, 8) != 0)
        return rz__error(RZ_ESYNTAX, "not a RhizOS vault file");
    if (len < RZ__VAULT_MIN_FILE)
        return rz__error(RZ_ESYNTAX, "vault file truncated (%zu bytes)", len);
    h->format = get_u16(img + 8);
    h->kdf = img[10];
    h->flags = img[11];
    h->opslimit = get_u64(img + 12);
    h->memlimit = get_u64(img + 20);
    memcpy(h->salt, img + 28, RZ__VAULT_SALT_LEN);
    memcpy(h->vault_id, img + 44, RZ__VAULT_RAWID_LEN);
    if (h->format != RZ__VAULT_FORMAT)
        return rz__error(RZ_EUNSUPPORTED, "vault format version %u is not supported (this build reads %u)",
                         (unsigned)h->format, RZ__VAULT_FORMAT);
    if (h->kdf != RZ__VAULT_KDF_ID)
        return rz__error(RZ_EUNSUPPORTED, "vault key derivation id %u is not supported", (unsigned)h->kdf);
    if (h->flags != 0)
        return rz__error(RZ_EUNSUPPORTED, "vault flags 0x%02x are not supported",
                         (unsigned)h->flags);
    if (h->opslimit < crypto_pwhash_OPSLIMIT_MIN || h->memlimit < crypto_pwhash_MEMLIMIT_MIN)
        return rz__error(RZ_ESYNTAX, "vault key derivation cost below the minimum");
    if (h->opslimit > max_ops)
        return rz__error(RZ_ETOOBIG, "vault asks for %llu KDF passes, above the cap of %llu",
                         (unsigned long long)h->opslimit, (unsigned long long)max_ops);
    if (h->memlimit > max_mem)
        return rz__error(RZ_ETOOBIG, "vault asks for %llu MiB of KDF memory, above the cap of %llu MiB",
                         (unsigned long long)(h->memlimit >> 20),
                         (unsigned long long)(max_mem >> 20));
    return RZ_OK;
}

/* ---- Field checks ------------------------------------------------------- */

static const char *const known_types[] = { RZ_VAULT_TYPES };

int rz_vault_type_is_known(const char *type)
{
    if (!type)
        return 0;
    for (size_t i = 0; i < RZ_ARRAY_LEN(known_types); i++)
        if (strcmp(type, known_types[i]) == 0)
            return 1;
    return 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || strchr("_.:@-", c) != NULL;
}

static bool type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_.-", c) != NULL;
}

int rz__vault_check_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > RZ_VAULT_NAME_MAX)
        return rz__error(RZ_EINVAL, "entry name must have 1 to %u characters", RZ_VAULT_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i]))
            return rz__error(RZ_EINVAL, "entry name may only hold A-Z a-z 0-9 _ . : @ -");
    return RZ_OK;
}

int rz__vault_check_type(const char *type)
{
    size_t n = type ? strlen(type) : 0;
    if (n == 0 || n > RZ_VAULT_TYPE_MAX)
        return rz__error(RZ_EINVAL, "entry type must have 1 to %u characters", RZ_VAULT_TYPE_MAX);
    for (size_t i = 0; i < n; i++)
        if (!type_char(type[i]))
            return rz__error(RZ_EINVAL, "entry type may only hold a-z 0-9 _ . -");
    return RZ_OK;
}

int rz__vault_check_meta(const char *meta)
{
    size_t n = strlen(meta);
    if (n > RZ_VAULT_META_MAX)
        return rz__error(RZ_ETOOBIG, "entry metadata larger than %u bytes", RZ_VAULT_META_MAX);
    cJSON *j = cJSON_ParseWithLength(meta, n);
    bool ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok)
        return rz__error(RZ_EINVAL, "entry metadata must be a JSON object");
    return RZ_OK;
}

/* ---- Entries ---------------------------------------------------------- */

void rz__vault_entry_clear(rz__ventry *e)
{
    free(e->name);
    free(e->type);
    free(e->metadata);
    free(e->ct);
    memset(e, 0, sizeof *e);
}

void rz__vault_entries_free(rz__ventry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rz__vault_entry_clear(&e[i]);
    free(e);
}

size_t rz__vault_value_ad(const rz_vault *v, const rz__ventry *e,
                          unsigned char *ad, size_t cap)
{
    size_t tl = strlen(e->type);
    size_t n = 2 * RZ__VAULT_RAWID_LEN + tl;
    if (n > cap)
        return 0;
    memcpy(ad, v->hdr.vault_id, RZ__VAULT_RAWID_LEN);
    memcpy(ad + RZ__VAULT_RAWID_LEN, e->rid, RZ__VAULT_RAWID_LEN);
    memcpy(ad + 2 * RZ__VAULT_RAWID_LEN, e->type, tl);
    return n;
}

size_t rz__vault_body_size(const rz__ventry *e, size_t n)
{
    size_t sz = 4;
    for (size_t i = 0; i < n; i++)
        sz += RZ__VAULT_RAWID_LEN + 1 + strlen(e[i].name) + 1 + strlen(e[i].type) +
              16 + 4 + strlen(e[i].metadata) + RZ__VAULT_NONCE_LEN + 4 + e[i].ct_len;
    return sz;
}

static unsigned char *put_bytes(unsigned char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

void rz__vault_body_encode(const rz__ventry *e, size_t n, unsigned char *p)
{
    put_u32(p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(e[i].name), tl = strlen(e[i].type), ml = strlen(e[i].metadata);
        p = put_bytes(p, e[i].rid, RZ__VAULT_RAWID_LEN);
        *p++ = (unsigned char)nl;
        p = put_bytes(p, e[i].name, nl);
        *p++ = (unsigned char)tl;
        p = put_bytes(p, e[i].type, tl);
        put_u64(p, e[i].created_ms);
        put_u64(p + 8, e[i].updated_ms);
        put_u32(p + 16, (uint32_t)ml);
        p = put_bytes(p + 20, e[i].metadata, ml);
        p = put_bytes(p, e[i].nonce, RZ__VAULT_NONCE_LEN);
        put_u32(p, (uint32_t)e[i].ct_len);
        p = put_bytes(p + 4, e[i].ct, e[i].ct_len);
    }
}

/* A bounds-checked reader over the decrypted body. */
typedef struct reader {
    const unsigned char *p;
    size_t left;
} reader;

static const unsigned char *take(reader *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static char *take_str(reader *r, size_t n)
{
    const unsigned char *p = take(r, n);
    if (!p || memchr(p, '\0', n))
        return NULL;
    return rz__strndup((const char *)p, n);
}

static int bad_body(const char *what)
{
    return rz__error(RZ_ESYNTAX, "vault entry table is malformed: %s", what);
}

static void hex_id(const unsigned char *rid, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < RZ__VAULT_RAWID_LEN; i++) {
        out[2 * i] = hex[rid[i] >> 4];
        out[2 * i + 1] = hex[rid[i] & 15];
    }
    out[RZ_VAULT_ID_LEN] = '\0';
}

static int decode_entry(reader *r, rz__ventry *e)
{
    const unsigned char *p;
    if (!(p = take(r, RZ__VAULT_RAWID_LEN)))
        return bad_body("truncated id");
    memcpy(e->rid, p, RZ__VAULT_RAWID_LEN);
    hex_id(e->rid, e->id);
    if (!(p = take(r, 1)) || !(e->name = take_str(r, *p)))
        return bad_body("bad name");
    if (!(p = take(r, 1)) || !(e->type = take_str(r, *p)))
        return bad_body("bad type");
    if (rz__vault_check_name(e->name) != RZ_OK || rz__vault_check_type(e->type) != RZ_OK)
        return bad_body("invalid name or type");
    if (!(p = take(r, 20)))
        return bad_body("truncated times");
    e->created_ms = get_u64(p);
    e->updated_ms = get_u64(p + 8);
    uint32_t ml = get_u32(p + 16);
    if (ml > RZ_VAULT_META_MAX || !(e->metadata = take_str(r, ml)) ||
        rz__vault_check_meta(e->metadata) != RZ_OK)
        return bad_body("bad metadata");
    if (!(p = take(r, RZ__VAULT_NONCE_LEN)))
        return bad_body("truncated nonce");
    memcpy(e->nonce, p, RZ__VAULT_NONCE_LEN);
    if (!(p = take(r, 4)))
        return bad_body("truncated value");
    uint32_t cl = get_u32(p);
    if (cl <= RZ__VAULT_TAG_LEN || cl > RZ_VAULT_VALUE_MAX + RZ__VAULT_TAG_LEN ||
        !(p = take(r, cl)))
        return bad_body("bad value length");
    if (!(e->ct = rz__malloc(cl)))
        return rz__error(RZ_ENOMEM, "out of memory");
    memcpy(e->ct, p, cl);
    e->ct_len = cl;
    return RZ_OK;
}

static int check_unique(const rz__ventry *e, size_t n)
{
    rz__map ids, names;
    int rc = rz__map_init(&ids, n);
    if (rc != RZ_OK)
        return rz__error(RZ_ENOMEM, "out of memory");
    if ((rc = rz__map_init(&names, n)) != RZ_OK) {
        rz__map_free(&ids);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && rc == RZ_OK; i++) {
        rc = rz__map_put(&ids, e[i].id, i);
        if (rc == RZ_OK)
            rc = rz__map_put(&names, e[i].name, i);
    }
    rz__map_free(&ids);
    rz__map_free(&names);
    if (rc == RZ_EEXISTS)
        return bad_body("duplicate id or name");
    return rc == RZ_OK ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz__vault_body_decode(const unsigned char *p, size_t len, rz__ventry **out,
                          size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    reader r = { p, len };
    const unsigned char *c = take(&r, 4);
    if (!c)
        return bad_body("truncated count");
    uint32_t n = get_u32(c);
    /* Every entry takes at least 79 bytes: refuse counts the data can't hold. */
    if (n > RZ__VAULT_MAX_ENTRIES || (size_t)n > r.left / 79)
        return bad_body("entry count out of range");
    rz__ventry *e = rz__calloc(n ? n : 1, sizeof *e);
    if (!e)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = RZ_OK;
    size_t i;
    for (i = 0; i < n && rc == RZ_OK; i++)
        rc = decode_entry(&r, &e[i]);
    if (rc == RZ_OK && r.left != 0)
        rc = bad_body("trailing bytes");
    if (rc == RZ_OK)
        rc = check_unique(e, n);
    if (rc != RZ_OK) {
        rz__vault_entries_free(e, i);
        return rc;
    }
    *out = e;
    *n_out = n;
    return RZ_OK;
}

/* ---- Atomic writes ------------------------------------------------------ */

static void hook(int step)
{
    if (rz__vault_write_hook)
        rz__vault_write_hook(step);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return rz__strdup(".");
    if (slash == path)
        return rz__strdup("/");
    return rz__strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *path)
{
    char *dir = dir_of(path);
    if (!dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = RZ_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = rz__error(RZ_EIO, "%s: cannot sync the folder: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* Fill a temp file next to `path`, fsync it; on success *tmp names it. */
static int write_temp(const char *path, const unsigned char *data, size_t len,
                      char **tmp)
{
    *tmp = rz__asprintf("%s.tmp.XXXXXX", path);
    if (!*tmp)
        return rz__error(RZ_ENOMEM, "out of memory");
    int fd = mkostemp(*tmp, O_CLOEXEC);   /* mode 0600 */
    if (fd < 0) {
        int rc = rz__error(RZ_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    size_t half = len / 2;
    int bad = write_all(fd, data, half);
    hook(1);
    if (!bad)
        bad = write_all(fd, data + half, len - half);
    hook(2);
    if (!bad)
        bad = fsync(fd);
    hook(3);
    int err = errno;
    if (close(fd) != 0 && !bad) {
        bad = -1;
        err = errno;
    }
    if (bad) {
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return rz__error(RZ_EIO, "%s: cannot write: %s", path, strerror(err));
    }
    return RZ_OK;
}

int rz__vault_write_file(const char *path, const unsigned char *data, size_t len,
                         bool exclusive)
{
    char *tmp;
    int rc = write_temp(path, data, len, &tmp);
    if (rc != RZ_OK)
        return rc;
    /* link() fails if the name exists, so creation never clobbers a vault. */
    int r = exclusive ? link(tmp, path) : rename(tmp, path);
    int err = errno;
    if (exclusive || r != 0)
        unlink(tmp);
    free(tmp);
    if (r != 0) {
        if (exclusive && err == EEXIST)
            return rz__error(RZ_EEXISTS, "%s: a file by that name exists", path);
        return rz__error(RZ_EIO, "%s: cannot replace: %s", path, strerror(err));
    }
    hook(4);
    return fsync_dir(path);
}
