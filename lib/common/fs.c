/* mkdir and mkdir -p; the LMDB open sequence. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>

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

static int open_dbs(MDB_env *env, const char *const *names, MDB_dbi *dbis, size_t n)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(env, NULL, 0, &txn);
    for (size_t i = 0; mrc == 0 && i < n; i++)
        mrc = mdb_dbi_open(txn, names[i], MDB_CREATE, &dbis[i]);
    if (mrc == 0)
        return mdb_txn_commit(txn);
    if (txn)
        mdb_txn_abort(txn);
    return mrc;
}

int rz__lmdb_open(MDB_env **env, const char *dir, size_t map_size, unsigned flags,
                  const char *const *names, MDB_dbi *dbis, size_t n)
{
    *env = NULL;
    int mrc = mdb_env_create(env);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(*env, 8);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(*env, map_size);
    if (mrc == 0)
        mrc = mdb_env_open(*env, dir, MDB_NOTLS | flags, 0600);
    if (mrc == 0) {
        int dead;
        mdb_reader_check(*env, &dead);
    }
    if (mrc == 0 && n)
        mrc = open_dbs(*env, names, dbis, n);
    if (mrc != 0 && *env) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return mrc;
}
