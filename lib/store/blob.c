/* Content-addressed files (blob.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "rhizos/store.h"
#include "store/blob.h"

#define CHUNK (64u * 1024u)
#define NAME_MAX_BYTES 1024u
#define PART_MAX 255u

bool rz__blob_name_ok(const char *name, char *why, size_t cap)
{
    size_t n = name ? strlen(name) : 0;
    const char *bad = NULL;
    if (n == 0 || n > NAME_MAX_BYTES)
        bad = "a file name is 1 to 1024 bytes";
    else if (name[0] == '/')
        bad = "a file name is relative to the output folder, not absolute";
    else if (name[n - 1] == '/')
        bad = "a file name names a file, not a folder";
    for (size_t i = 0; !bad && i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == '\\')
            bad = "a file name holds no control byte or backslash";
    for (const char *p = name; !bad && p && *p;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || len > PART_MAX)
            bad = "each part of a file name is 1 to 255 bytes";
        else if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            bad = "a file name has no '.' or '..' part";
        p += len + (p[len] == '/');
    }
    if (bad)
        snprintf(why, cap, "%s", bad);
    return !bad;
}

/* `name` under the folder `base_fd`, each component opened without
 * following a symlink: the file's descriptor, or -1 (errno set). */
static int open_beneath(int base_fd, const char *name)
{
    char part[PART_MAX + 1];
    int fd = dup(base_fd);
    for (const char *p = name; fd >= 0;) {
        size_t len = strcspn(p, "/");
        memcpy(part, p, len);
        part[len] = '\0';
        bool last = p[len] == '\0';
        int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY);
        int next = openat(fd, part, flags);
        int e = errno;
        close(fd);
        errno = e;
        fd = next;
        if (last)
            break;
        p += len + 1;
    }
    return fd;
}

static void hex_of(const unsigned char *d, char hex[RZ_BLOB_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[RZ_BLOB_HEX] = '\0';
}

static int mkdirs(const char *dir, const char *hex)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return -1;
    snprintf(p, sizeof p, "%s/sha256", dir);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return -1;
    snprintf(p, sizeof p, "%s/sha256/%.2s", dir, hex);
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Copies src_fd into out_fd (if >= 0), hashing; RZ_ETOOBIG past `max`. */
static int stream(int src_fd, int out_fd, uint64_t max, unsigned char digest[32],
                  uint64_t *size)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return rz__error(RZ_ENOMEM, "out of memory");
    uint64_t total = 0;
    int rc = RZ_OK;
    for (;;) {
        ssize_t n = read(src_fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = rz__error(RZ_EIO, "reading a file: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > max) {
            rc = rz__error(RZ_ETOOBIG, "the file is over its cap of %llu bytes",
                           (unsigned long long)max);
            break;
        }
        crypto_hash_sha256_update(&st, buf, (size_t)n);
        for (ssize_t off = 0; out_fd >= 0 && off < n;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = rz__error(RZ_EIO, "writing a file: %s", strerror(errno));
                break;
            }
            off += w;
        }
        if (rc != RZ_OK)
            break;
    }
    free(buf);
    crypto_hash_sha256_final(&st, digest);
    *size = total;
    return rc;
}

int rz__blob_put(const char *dir, const char *from, const char *name, uint64_t max,
                 char hex[RZ_BLOB_HEX + 1], uint64_t *size)
{
    char why[120];
    if (!rz__blob_name_ok(name, why, sizeof why))
        return rz__error(RZ_EINVAL, "'%.200s': %s", name ? name : "", why);
    if (sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libsodium cannot start");
    int base = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int src = base >= 0 ? open_beneath(base, name) : -1;
    int e = errno;
    if (base >= 0)
        close(base);
    struct stat sb;
    if (src < 0)
        return rz__error(e == ENOENT ? RZ_ENOENT : RZ_EINVAL, "'%.200s': %s", name,
                         e == ELOOP ? "a symbolic link, not a file" : strerror(e));
    if (fstat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(src);
        return rz__error(RZ_EINVAL, "'%.200s' is not a regular file", name);
    }
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof tmp, "%s/tmp.XXXXXX", dir);
    int out = mkdir(dir, 0755) == 0 || errno == EEXIST ? mkstemp(tmp) : -1;
    if (out < 0) {
        close(src);
        return rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(errno));
    }
    unsigned char d[32];
    int rc = stream(src, out, max, d, size);
    close(src);
    if (rc == RZ_OK && (fchmod(out, 0444) != 0 || fsync(out) != 0))
        rc = rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(errno));
    close(out);
    if (rc == RZ_OK) {
        hex_of(d, hex);
        snprintf(final, sizeof final, "%s/sha256/%.2s/%s", dir, hex, hex);
        /* Kept once: an equal blob already there is this one. */
        if (mkdirs(dir, hex) != 0 || rename(tmp, final) != 0)
            rc = rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(errno));
    }
    if (rc != RZ_OK)
        unlink(tmp);
    return rc;
}

int rz__blob_copy_out(const char *dir, const char *hex, const char *dest)
{
    if (!hex || strlen(hex) != RZ_BLOB_HEX || strspn(hex, "0123456789abcdef") != RZ_BLOB_HEX)
        return rz__error(RZ_EINVAL, "not a SHA-256 digest in hex");
    if (sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libsodium cannot start");
    char path[4096];
    snprintf(path, sizeof path, "%s/sha256/%.2s/%s", dir, hex, hex);
    int src = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0)
        return rz__error(errno == ENOENT ? RZ_ENOENT : RZ_EIO, "blob %.12s...: %s", hex,
                         strerror(errno));
    int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (out < 0) {
        int e = errno;
        close(src);
        return rz__error(RZ_EIO, "%s: %s", dest, strerror(e));
    }
    unsigned char d[32];
    uint64_t size;
    int rc = stream(src, out, UINT64_MAX, d, &size);
    char got[RZ_BLOB_HEX + 1];
    hex_of(d, got);
    if (rc == RZ_OK && strcmp(got, hex) != 0)
        rc = rz__error(RZ_EIO, "blob %.12s... no longer matches its digest (%.12s...): "
                       "the store is damaged", hex, got);
    close(src);
    if (close(out) != 0 && rc == RZ_OK)
        rc = rz__error(RZ_EIO, "%s: %s", dest, strerror(errno));
    if (rc != RZ_OK)
        unlink(dest);
    return rc;
}

/* ---- retention ---- */

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool rz__blob_digest_of(const char *hex, unsigned char d[32])
{
    if (!rz_blob_hex_ok(hex))
        return false;
    for (size_t k = 0; k < 32; k++)
        d[k] = (unsigned char)(hexval(hex[2 * k]) << 4 | hexval(hex[2 * k + 1]));
    return true;
}

static int set_room(rz__blob_set *s)
{
    if (s->n < s->cap)
        return RZ_OK;
    size_t cap = s->cap ? 2 * s->cap : 64;
    void *p = realloc(s->d, cap * sizeof *s->d);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    s->d = p;
    s->cap = cap;
    return RZ_OK;
}

int rz__blob_set_scan(rz__blob_set *s, const char *text, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && hexval((unsigned char)text[i]) >= 0) {
            run++;
            continue;
        }
        if (run == RZ_BLOB_HEX) {
            if (set_room(s) != RZ_OK)
                return RZ_ENOMEM;
            const char *h = text + i - RZ_BLOB_HEX;
            for (size_t k = 0; k < 32; k++)
                s->d[s->n][k] = (unsigned char)(hexval(h[2 * k]) << 4 | hexval(h[2 * k + 1]));
            s->n++;
        }
        run = 0;
    }
    return RZ_OK;
}

int rz__blob_set_insert(rz__blob_set *s, const unsigned char d[32])
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {   /* the first not below d */
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(s->d[mid], d, 32) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n && memcmp(s->d[lo], d, 32) == 0)
        return RZ_OK;
    if (set_room(s) != RZ_OK)
        return RZ_ENOMEM;
    memmove(s->d + lo + 1, s->d + lo, (s->n - lo) * sizeof *s->d);
    memcpy(s->d[lo], d, 32);
    s->n++;
    return RZ_OK;
}

static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

void rz__blob_set_seal(rz__blob_set *s)
{
    if (s->n)
        qsort(s->d, s->n, sizeof *s->d, cmp_digest);
}

bool rz__blob_set_has(const rz__blob_set *s, const unsigned char d[32])
{
    return s->n && bsearch(d, s->d, s->n, sizeof *s->d, cmp_digest) != NULL;
}

void rz__blob_set_free(rz__blob_set *s)
{
    free(s->d);
    memset(s, 0, sizeof *s);
}

static bool written_before(int dfd, const char *name, uint64_t before_ms, uint64_t *size)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return false;
    *size = (uint64_t)st.st_size;
    return (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000 <
           before_ms;
}

/* A blob's name in folder `part` (64 lowercase hex digits, the first two
 * the folder's): its digest in `dg`. */
static bool blob_name(const char *n, const char *part, unsigned char dg[32])
{
    return strncmp(n, part, 2) == 0 && rz__blob_digest_of(n, dg);
}

/* What a sweep that died left of a blob it had moved aside (gc.<hex>, below):
 * gone when the blob is there again (the same bytes) or would be removed
 * now, else put back. Those of a sweep still going are left as it would
 * leave them: it removes only what is old and unmarked, and puts back what
 * it finds fresh. */
static void leftovers(DIR *d, const char *part, const rz__blob_set *keep,
                      uint64_t before_ms, size_t *removed, uint64_t *bytes)
{
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        unsigned char dg[32];
        uint64_t size = 0;
        if (strncmp(n, "gc.", 3) != 0 || !blob_name(n + 3, part, dg))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;   /* gone meanwhile, or not a file */
        bool old = written_before(dirfd(d), n, before_ms, &size);
        bool there = fstatat(dirfd(d), n + 3, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!there && old && !rz__blob_set_has(keep, dg)) {
            if (unlinkat(dirfd(d), n, 0) == 0) {
                (*removed)++;
                *bytes += size;
            }
            continue;
        }
        /* Put back, never over a blob a put stored meanwhile (the same
         * bytes, but written now: its time must stay). */
        if (!there && linkat(dirfd(d), n, dirfd(d), n + 3, 0) != 0 && errno != EEXIST)
            continue;
        (void)unlinkat(dirfd(d), n, 0);
    }
    rewinddir(d);
}

/* One DIR/sha256/<xx> folder. */
static void sweep_part(int dfd, const char *part, const rz__blob_set *keep,
                       uint64_t before_ms, size_t *removed, uint64_t *bytes)
{
    int fd = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    leftovers(d, part, keep, before_ms, removed, bytes);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        unsigned char dg[32];
        uint64_t size = 0;
        if (!blob_name(n, part, dg))
            continue;
        if (rz__blob_set_has(keep, dg) || !written_before(dirfd(d), n, before_ms, &size))
            continue;
        /* A put of the same bytes may replace it meanwhile (a fresh file):
         * moved aside first, looked at again, and put back if it is new. */
        char aside[8 + RZ_BLOB_HEX];
        snprintf(aside, sizeof aside, "gc.%.64s", n);
        if (renameat(dirfd(d), n, dirfd(d), aside) != 0)
            continue;
        if (written_before(dirfd(d), aside, before_ms, &size) &&
            unlinkat(dirfd(d), aside, 0) == 0) {
            (*removed)++;
            *bytes += size;
        } else {
            (void)renameat(dirfd(d), aside, dirfd(d), n);
        }
    }
    closedir(d);
}

int rz__blob_sweep(const char *dir, const rz__blob_set *keep, uint64_t before_ms,
                   size_t *removed, uint64_t *bytes)
{
    *removed = 0;
    *bytes = 0;
    int top = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (top < 0)
        return errno == ENOENT ? RZ_OK
                               : rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(errno));
    DIR *d = fdopendir(top);
    if (!d) {
        close(top);
        return rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(errno));
    }
    /* Partial writes of a put that died (tmp.XXXXXX). */
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        uint64_t size = 0;
        if (strncmp(e->d_name, "tmp.", 4) == 0 && strlen(e->d_name) == 10 &&
            written_before(dirfd(d), e->d_name, before_ms, &size) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            *bytes += size;
    }
    int sfd = openat(dirfd(d), "sha256", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    closedir(d);
    DIR *sd = sfd >= 0 ? fdopendir(sfd) : NULL;
    if (!sd) {
        if (sfd >= 0)
            close(sfd);
        return RZ_OK;   /* nothing stored yet */
    }
    for (struct dirent *e; (e = readdir(sd)) != NULL;)
        if (strlen(e->d_name) == 2 && strspn(e->d_name, "0123456789abcdef") == 2)
            sweep_part(dirfd(sd), e->d_name, keep, before_ms, removed, bytes);
    closedir(sd);
    return RZ_OK;
}

/* ---- in parts (rhizos/store.h): the node's and orchestrator's hops ---- */

struct rz_blob_writer {
    char *dir;
    char tmp[4096];
    int fd;                          /* -1 once committed */
    uint64_t size, max;
    crypto_hash_sha256_state st;
};

int rz_blob_hex_ok(const char *hex)
{
    return hex && strlen(hex) == RZ_BLOB_HEX &&
           strspn(hex, "0123456789abcdef") == RZ_BLOB_HEX;
}

int rz_blob_writer_open(rz_blob_writer **out, const char *dir, uint64_t max)
{
    *out = NULL;
    if (!dir || !*dir)
        return rz__error(RZ_EINVAL, "no blob store folder");
    if (sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libsodium cannot start");
    rz_blob_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    snprintf(w->tmp, sizeof w->tmp, "%s/tmp.XXXXXX", dir);
    w->fd = mkdir(dir, 0755) == 0 || errno == EEXIST ? mkstemp(w->tmp) : -1;
    if (w->fd < 0) {
        int e = errno;
        free(w->dir);
        free(w);
        return rz__error(RZ_EIO, "blob store %s: %s", dir, strerror(e));
    }
    w->max = max;
    crypto_hash_sha256_init(&w->st);
    *out = w;
    return RZ_OK;
}

int rz_blob_writer_write(rz_blob_writer *w, const void *data, size_t len)
{
    if (!w || w->fd < 0)
        return rz__error(RZ_ESTATE, "the blob writer is closed");
    if (len > w->max - w->size)
        return rz__error(RZ_ETOOBIG, "the file is over its cap of %llu bytes",
                         (unsigned long long)w->max);
    const unsigned char *p = data;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(w->fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return rz__error(RZ_EIO, "blob store %s: %s", w->dir, strerror(errno));
        off += (size_t)n;
    }
    crypto_hash_sha256_update(&w->st, p, len);
    w->size += len;
    return RZ_OK;
}

uint64_t rz_blob_writer_size(const rz_blob_writer *w)
{
    return w ? w->size : 0;
}

int rz_blob_writer_commit(rz_blob_writer *w, const char *expect_hex, char *hex)
{
    if (!w || w->fd < 0)
        return rz__error(RZ_ESTATE, "the blob writer is closed");
    unsigned char d[32];
    char got[RZ_BLOB_HEX + 1], final[4096];
    crypto_hash_sha256_final(&w->st, d);
    hex_of(d, got);
    int rc = RZ_OK;
    if (expect_hex && strcmp(got, expect_hex) != 0)
        rc = rz__error(RZ_EINVALID, "the bytes' SHA-256 is %.12s..., not %.12s... "
                       "as named", got, expect_hex);
    else if (fchmod(w->fd, 0444) != 0 || fsync(w->fd) != 0)
        rc = rz__error(RZ_EIO, "blob store %s: %s", w->dir, strerror(errno));
    close(w->fd);
    w->fd = -1;
    if (rc == RZ_OK) {
        snprintf(final, sizeof final, "%s/sha256/%.2s/%s", w->dir, got, got);
        /* Linked, not renamed: a blob already there stays the same file
         * (the orchestrator counts its other links: routes_blobs.c). */
        if (mkdirs(w->dir, got) != 0 || (link(w->tmp, final) != 0 && errno != EEXIST))
            rc = rz__error(RZ_EIO, "blob store %s: %s", w->dir, strerror(errno));
    }
    unlink(w->tmp);
    w->tmp[0] = '\0';
    if (rc == RZ_OK && hex)
        memcpy(hex, got, sizeof got);
    return rc;
}

void rz_blob_writer_free(rz_blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    free(w->dir);
    free(w);
}

int rz_blob_open(const char *dir, const char *hex, int *fd, uint64_t *size)
{
    *fd = -1;
    if (!rz_blob_hex_ok(hex))
        return rz__error(RZ_EINVAL, "not a SHA-256 digest in lowercase hex");
    char path[4096];
    snprintf(path, sizeof path, "%s/sha256/%.2s/%s", dir, hex, hex);
    int f = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (f < 0)
        return rz__error(errno == ENOENT ? RZ_ENOENT : RZ_EIO, "blob %.12s...: %s",
                         hex, strerror(errno));
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return rz__error(RZ_EIO, "blob %.12s... is not a regular file", hex);
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return RZ_OK;
}
