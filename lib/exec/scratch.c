/* Recycled scratch folders for unsandboxed attempts (exec_impl.h).
 *
 * On ext4 making and removing a step's folder (rz-NS-PID-XXXXXX/, in/, out/ and
 * two files) cost about a third of the embedded runner's CPU: allocating
 * and freeing inodes journals and searches the inode bitmap. A folder a
 * finished step leaves behind is instead refilled in place for the next,
 * after checking it holds exactly the protocol's layout; anything else in
 * it and it is removed and a new one made, as before.
 *
 * The folder keeps its name (renaming it per step cost a sixth of the
 * runner's CPU on ext4). That gives nothing away: a step's processes are
 * killed with its process group, and one that escaped it (setsid) runs
 * unsandboxed as the same user, so it could reach any step's folder
 * whatever its name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "exec/adapter.h"

#define POOL_MAX 64              /* folders kept; more are removed */

struct rz_scratch_pool {
    char *parent;                /* real path; folders are its children */
    char *kept[POOL_MAX];        /* left by finished attempts, unchecked */
    size_t n;
};

int rz__scratch_pool_new(rz__scratch_pool **out, const char *parent)
{
    *out = NULL;
    rz__scratch_pool *p = rz__calloc(1, sizeof *p);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = rz__exec_scratch_parent(parent, &p->parent);
    if (rc != RZ_OK) {
        free(p);
        return rc;
    }
    *out = p;
    return RZ_OK;
}

void rz__scratch_pool_free(rz__scratch_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        rz__exec_rm_tree(p->kept[i]);
        free(p->kept[i]);
    }
    free(p->parent);
    free(p);
}

int rz_scratch_pool_new(rz_scratch_pool **out, const char *parent)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_scratch_pool_new: out is NULL");
    return rz__scratch_pool_new(out, parent);
}

void rz_scratch_pool_free(rz_scratch_pool *pool)
{
    rz__scratch_pool_free(pool);
}

const char *rz__scratch_pool_parent(const rz__scratch_pool *p)
{
    return p ? p->parent : NULL;
}

void rz__scratch_give(rz__scratch_pool *p, char *folder)
{
    if (!folder)
        return;
    size_t plen = p ? strlen(p->parent) : 0;
    /* Only the pool's own children come back (a caller's own parent). */
    if (p && p->n < POOL_MAX && strncmp(folder, p->parent, plen) == 0 &&
        folder[plen] == '/' && !strchr(folder + plen + 1, '/')) {
        p->kept[p->n++] = folder;
        return;
    }
    rz__exec_rm_tree(folder);
    free(folder);
}

/* The folder lists exactly `a` and `b` (b may be NULL), of the given
 * types; fd is fresh. Read with getdents64 into a small buffer: opendir's
 * 32 KiB buffer per folder was a tenth of the runner's CPU in malloc. */
static bool lists_exactly(int fd, const char *a, unsigned char ta,
                          const char *b, unsigned char tb)
{
    char buf[1024] __attribute__((aligned(8)));
    int seen = 0, want = b ? 2 : 1;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            return n == 0 && seen == want;
        for (long off = 0; off < n;) {
            const struct dirent64 *e = (const void *)(buf + off);
            off += e->d_reclen;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (strcmp(e->d_name, a) == 0 && e->d_type == ta)
                seen++;
            else if (b && strcmp(e->d_name, b) == 0 && e->d_type == tb)
                seen++;
            else
                return false;
        }
    }
}

/* Ours, the wanted type, the owner's bits set; a file has no other name
 * (a hard link would carry the next request out of the folder). Ours is
 * the runner's uid only: an entry a sandboxed step's uid owns (the helper
 * hands them to it) is never reused (test_scratch_reuse_refuses_step_owned). */
static bool sound(int fd, bool dir, mode_t owner_bits, off_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid())
        return false;
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode) || st.st_nlink != 1)
        return false;
    if (size)
        *size = st.st_size;
    return (st.st_mode & owner_bits) == owner_bits;
}

static int open_dir(int at, const char *name)
{
    return openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* A folder of exactly one entry `file`, sound: its fd, else -1. */
static int checked_dir(int root, const char *name, const char *file)
{
    int fd = open_dir(root, name);
    if (fd < 0)
        return -1;
    if (!sound(fd, true, S_IRWXU, NULL) ||
        !lists_exactly(fd, file, DT_REG, NULL, 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Only what changes is written: a truncate to the same size still
 * journals a time stamp. */
static int write_all_at(int fd, const char *data, size_t len, off_t had)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = pwrite(fd, data + off, len - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return had == (off_t)len ? 0 : ftruncate(fd, (off_t)len);
}

/* Rewrite `file` under dirfd with data (an empty file when len is 0),
 * reusing its inode. */
static bool refill(int dirfd, const char *file, const char *data, size_t len)
{
    int fd = openat(dirfd, file, O_WRONLY | O_NOFOLLOW | O_NONBLOCK |
                    O_CLOEXEC);
    if (fd < 0)
        return false;
    off_t had = 0;
    bool ok = sound(fd, false, S_IRUSR | S_IWUSR, &had) &&
              write_all_at(fd, data, len, had) == 0;
    close(fd);
    return ok;
}

/* A folder in the protocol's layout with `req` in in/request.json and an
 * empty out/outputs.json, or false (the folder is then the caller's to
 * remove). */
static bool reset(const char *folder, const char *req)
{
    int root = open_dir(AT_FDCWD, folder);
    if (root < 0)
        return false;
    bool ok = sound(root, true, S_IRWXU, NULL) &&
              lists_exactly(root, "in", DT_DIR, "out", DT_DIR);
    int in = ok ? checked_dir(root, "in", "request.json") : -1;
    int out = in >= 0 ? checked_dir(root, "out", "outputs.json") : -1;
    ok = out >= 0 && refill(in, "request.json", req, strlen(req)) &&
         refill(out, "outputs.json", "", 0);
    if (out >= 0)
        close(out);
    if (in >= 0)
        close(in);
    close(root);
    return ok;
}

char *rz__scratch_take(rz__scratch_pool *p, const char *req)
{
    while (p && p->n > 0) {
        char *folder = p->kept[--p->n];
        if (reset(folder, req))
            return folder;
        rz__exec_rm_tree(folder);
        free(folder);
    }
    return NULL;
}
