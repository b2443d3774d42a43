/* Concurrent writers of one vault file (two `rhizos vault add` at once):
 * each saves under an exclusive lock and first takes in what the others
 * saved since it read the file, so no writer's change is lost. Readers take
 * no lock: the file is only ever replaced whole by rename. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "common/array.h"
#include "vault/vault_impl.h"

int rz__vault_writer_lock(const char *path, int *fd)
{
    *fd = -1;
    char *lock = rz__asprintf("%s.lock", path);
    if (!lock)
        return rz__error(RZ_ENOMEM, "out of memory");
    int f = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = RZ_OK;
    if (f < 0)
        rc = rz__error(RZ_EIO, "%s: %s", lock, strerror(errno));
    while (rc == RZ_OK && flock(f, LOCK_EX) != 0)
        if (errno != EINTR)
            rc = rz__error(RZ_EIO, "%s: cannot lock: %s", lock, strerror(errno));
    free(lock);
    if (rc != RZ_OK) {
        if (f >= 0)
            close(f);
        return rc;
    }
    *fd = f;
    return RZ_OK;
}

void rz__vault_writer_unlock(int fd)
{
    if (fd >= 0)
        close(fd);   /* releases the flock */
}

typedef struct elist {
    rz__ventry *v;
    size_t n, cap;
} elist;

static size_t by_rid(const rz__ventry *e, size_t n, const unsigned char *rid)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(e[i].rid, rid, RZ__VAULT_RAWID_LEN) == 0)
            return i;
    return RZ_NPOS;
}

static int entry_dup(const rz__ventry *e, rz__ventry *out)
{
    *out = *e;
    out->name = rz__strdup(e->name);
    out->type = rz__strdup(e->type);
    out->metadata = rz__strdup(e->metadata);
    out->ct = rz__malloc(e->ct_len);
    if (!out->name || !out->type || !out->metadata || !out->ct) {
        rz__vault_entry_clear(out);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    memcpy(out->ct, e->ct, e->ct_len);
    return RZ_OK;
}

/* Whether this handle changed an entry it read: every update re-encrypts
 * the value under a fresh nonce. */
static bool changed(const rz__ventry *mine, const rz__ventry *base)
{
    return memcmp(mine->nonce, base->nonce, RZ__VAULT_NONCE_LEN) != 0 ||
           strcmp(mine->metadata, base->metadata) != 0;
}

static void drop_at(elist *d, size_t i)
{
    rz__vault_entry_clear(&d->v[i]);
    memmove(&d->v[i], &d->v[i + 1], (d->n - i - 1) * sizeof *d->v);
    d->n--;
}

static int append(elist *d, const rz__ventry *e)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->v[i].name, e->name) == 0)
            return rz__error(RZ_EEXISTS, "vault entry '%s' was added by another "
                             "writer meanwhile", e->name);
    if (d->n >= RZ__VAULT_MAX_ENTRIES)
        return rz__error(RZ_ETOOBIG, "a vault holds at most %u entries",
                         RZ__VAULT_MAX_ENTRIES);
    rz__ventry *g = rz__grow(d->v, &d->cap, d->n + 1, sizeof *g, 8);
    if (!g)
        return rz__error(RZ_ENOMEM, "out of memory");
    d->v = g;
    int rc = entry_dup(e, &d->v[d->n]);
    d->n += rc == RZ_OK;
    return rc;
}

/* Apply mine - base to the disk's entries `d`. */
static int merge(const rz_vault *v, const rz__ventry *base, size_t nb, elist *d)
{
    for (size_t i = 0; i < nb; i++) {
        size_t k = by_rid(d->v, d->n, base[i].rid);
        if (by_rid(v->entries, v->n, base[i].rid) == RZ_NPOS && k != RZ_NPOS)
            drop_at(d, k);   /* removed here */
    }
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < v->n; i++) {
        const rz__ventry *mine = &v->entries[i];
        size_t j = by_rid(base, nb, mine->rid), k = by_rid(d->v, d->n, mine->rid);
        if (j == RZ_NPOS) {
            rc = append(d, mine);   /* added here */
        } else if (k != RZ_NPOS && changed(mine, &base[j])) {
            rz__vault_entry_clear(&d->v[k]);   /* updated here */
            rc = entry_dup(mine, &d->v[k]);
        }   /* else unchanged here, or removed by the other writer */
    }
    return rc;
}

int rz__vault_catch_up(rz_vault *v)
{
    unsigned char *img = NULL;
    size_t len = 0;
    int rc = rz__vault_read_image(v->path, &img, &len);
    if (rc == RZ_ENOENT)
        return RZ_OK;   /* removed meanwhile: this handle's state is all */
    if (rc != RZ_OK || (len == v->image_len && memcmp(img, v->image, len) == 0)) {
        free(img);
        return rc;
    }
    if (len < RZ__VAULT_MIN_FILE ||
        memcmp(img, v->image, RZ__VAULT_BODY_NONCE_OFF) != 0) {
        free(img);
        return rz__error(RZ_ESTATE, "%s: another writer changed the vault's "
                         "password meanwhile; unlock it again", v->path);
    }
    rz__ventry *base = NULL;
    size_t nb = 0;
    elist d = { NULL, 0, 0 };
    rc = rz__vault_decrypt_image(v->image, v->image_len, v->keys, &base, &nb);
    if (rc == RZ_OK)
        rc = rz__vault_decrypt_image(img, len, v->keys, &d.v, &d.n);
    d.cap = d.n;
    if (rc == RZ_OK)
        rc = merge(v, base, nb, &d);
    rz__vault_entries_free(base, nb);
    if (rc != RZ_OK) {
        rz__vault_entries_free(d.v, d.n);
        free(img);
        return rc;
    }
    rz__vault_entries_free(v->entries, v->n);
    v->entries = d.v;
    v->n = d.n;
    v->cap = d.cap;
    free(v->image);
    v->image = img;
    v->image_len = len;
    return RZ_OK;
}
