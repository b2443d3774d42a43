/* mkdir and mkdir -p; the LMDB open sequence. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/fs.h"

/* mkdir of one folder; an existing one is fine. Only the last folder of a
 * path is checked to be one: a file in place of a parent fails at the next
 * mkdir, naming the path below it. errno survives the error text for
 * callers that word it themselves. */
static int mkdir_one(const char *path, unsigned mode, bool last)
{
    if (mkdir(path, (mode_t)mode) == 0)
        return RZ_OK;
    int e = errno;
    struct stat st;
    if (e == EEXIST && (!last || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))))
        return RZ_OK;
    if (e == EEXIST)
        e = ENOTDIR;
    int rc = rz__error(RZ_EIO, "cannot create %s: %s", path, strerror(e));
    errno = e;
    return rc;
}

int rz__mkdir(const char *path)
{
    return mkdir_one(path, 0700, true);
}

int rz_fs_mkdirs(const char *path, unsigned mode)
{
    if (!path || !*path)
        return rz__error(RZ_EINVAL, "mkdir: empty path");
    char *p = rz__strdup(path);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = RZ_OK;
    for (char *s = p + 1; rc == RZ_OK && *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        rc = mkdir_one(p, mode, false);
        *s = '/';
    }
    if (rc == RZ_OK)
        rc = mkdir_one(p, mode, true);
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

int rz__mkdirs(const char *path)
{
    return rz_fs_mkdirs(path, 0700);
}

/* Read-only: no write transaction (none waits for a writer holding the
 * store, as a server's open group does), so the tables must be there. */
static int open_dbs(MDB_env *env, const char *const *names, MDB_dbi *dbis, size_t n,
                    bool rdonly)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    for (size_t i = 0; mrc == 0 && i < n; i++)
        mrc = mdb_dbi_open(txn, names[i], rdonly ? 0 : MDB_CREATE, &dbis[i]);
    if (mrc == 0)
        return mdb_txn_commit(txn);
    if (txn)
        mdb_txn_abort(txn);
    return mrc;
}

/* LMDB's meta page (pages 0 and 1; the newer txnid wins), as LMDB 0.9
 * writes it on a 64-bit little- or big-endian host: the page header (16),
 * magic u32, version u32, address, map size, two 48-byte database records
 * (the first one's leading u32 is the page size), last page, txnid. */
enum { META_MAGIC_OFF = 16, META_PSIZE_OFF = 40, META_LASTPG_OFF = 136,
       META_TXNID_OFF = 144, META_END = 152 };
#define LMDB_MAGIC 0xBEEFC0DEu
#define RECOVER "Restore the data directory from a backup: docs/ledger.md, " \
    "\"Recovery\""

typedef struct lmdb_meta {
    uint32_t psize;
    uint64_t last_pg, txnid;
} lmdb_meta;

static bool meta_at(int fd, uint64_t off, lmdb_meta *m)
{
    uint8_t b[META_END];
    if (pread(fd, b, sizeof b, (off_t)off) != (ssize_t)sizeof b)
        return false;
    uint32_t magic;
    memcpy(&magic, b + META_MAGIC_OFF, 4);
    memcpy(&m->psize, b + META_PSIZE_OFF, 4);
    memcpy(&m->last_pg, b + META_LASTPG_OFF, 8);
    memcpy(&m->txnid, b + META_TXNID_OFF, 8);
    return magic == LMDB_MAGIC && m->psize >= 512 && m->psize <= 65536 &&
           (m->psize & (m->psize - 1)) == 0;
}

int rz__lmdb_check_file(const char *dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", dir) >= sizeof path)
        return rz__error(RZ_EINVAL, "path too long: %s", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? RZ_OK
                               : rz__error(RZ_EIO, "%s: %s", path,
                                           strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? RZ_OK
                                 : rz__error(RZ_EIO, "%s: %s", path,
                                             strerror(errno));
    lmdb_meta m0, m1;
    bool ok0 = rc == RZ_OK && st.st_size > 0 && meta_at(fd, 0, &m0);
    bool ok1 = ok0 && meta_at(fd, m0.psize, &m1) && m1.psize == m0.psize;
    close(fd);
    if (rc != RZ_OK || st.st_size == 0)
        return rc;   /* an empty file is a new environment to LMDB */
    if (!ok0)
        return rz__error(RZ_EDB, "%s is not an LMDB database or its first "
                         "page is damaged; refusing to open it. " RECOVER,
                         path);
    const lmdb_meta *m = ok1 && m1.txnid > m0.txnid ? &m1 : &m0;
    /* A damaged page number must not wrap the product into range. */
    bool wraps = ok1 && m->last_pg >= UINT64_MAX / m->psize;
    uint64_t need = wraps ? UINT64_MAX : (m->last_pg + 1) * (uint64_t)m->psize;
    if (!ok1 || m->last_pg + 1 < 2 || (uint64_t)st.st_size < need)
        return rz__error(RZ_EDB, "%s is %llu bytes but its meta page says "
                         "%llu (truncated or damaged); refusing to open it "
                         "(reading it would crash). " RECOVER, path,
                         (unsigned long long)st.st_size,
                         (unsigned long long)need);
    return RZ_OK;
}

int rz__lmdb_open(MDB_env **env, const char *dir, size_t map_size, unsigned flags,
                  const char *const *names, MDB_dbi *dbis, size_t n)
{
    *env = NULL;
    int mrc = mdb_env_create(env);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(*env, 16);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(*env, map_size);
    if (mrc == 0)
        mrc = mdb_env_open(*env, dir, MDB_NOTLS | flags, 0600);
    if (mrc == 0) {
        int dead;
        mdb_reader_check(*env, &dead);
    }
    if (mrc == 0 && n)
        mrc = open_dbs(*env, names, dbis, n, (flags & MDB_RDONLY) != 0);
    if (mrc != 0 && *env) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return mrc;
}

void rz__lmdb_map_find(MDB_env *env, size_t map_size, void **addr, size_t *len)
{
    *addr = NULL;
    *len = 0;
    int fd;
    struct stat st;
    if (mdb_env_get_fd(env, &fd) != 0 || fstat(fd, &st) != 0)
        return;
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino;
        unsigned maj, min;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off,
                   &maj, &min, &ino) == 7 && ino == (unsigned long)st.st_ino &&
            makedev(maj, min) == st.st_dev && off == 0 && perms[3] == 's' &&
            hi - lo >= map_size) {
            *addr = (void *)lo;
            *len = hi - lo;
            break;
        }
    }
    if (f)
        fclose(f);
}

uint64_t rz__lmdb_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

void rz__lmdb_shed(void *addr, size_t len)
{
    if (addr)
        (void)madvise(addr, len, MADV_DONTNEED);
}
