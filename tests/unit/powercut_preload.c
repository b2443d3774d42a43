/* A power cut for a whole process, LMDB's own writes included (LD_PRELOAD;
 * test_powercut.c). test_ledger_faults.c cuts the power through the
 * ledger's I/O seam, which LMDB, a system library, does not use: here the
 * C library's write calls are interposed instead, so every write to a file
 * under $RZ_POWERCUT_DIR — LMDB's page writes (writev, pwrite), its meta
 * page, the ledger's journal — is seen.
 *
 * Before each write that is not durable at once (a descriptor without
 * O_DSYNC/O_SYNC), the bytes it overwrites are appended to the undo log
 * $RZ_POWERCUT_LOG; a successful fsync or fdatasync of the file, or a
 * durable write to it, appends a "synced" mark. At the $RZ_POWERCUT_AT-th
 * such write or sync the process dies on the spot (exit 42), having written
 * a random part of that write first. The parent then plays the disk: any
 * subset of the writes after each file's last mark is undone (newest
 * first), as a disk that persisted dirty pages out of order would leave
 * it. (Treating a durable write as syncing the whole file is kinder than a
 * disk; it keeps an undo from reaching past a later durable write.) */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "powercut.h"

static char dir[PATH_MAX];
static size_t dir_len;
static int log_fd = -1;
static long cut_at = -1, ops;
static uint64_t rng = 88172645463325252ull;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

__attribute__((constructor)) static void init(void)
{
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    const char *d = getenv("RZ_POWERCUT_DIR"), *l = getenv("RZ_POWERCUT_LOG");
    const char *at = getenv("RZ_POWERCUT_AT"), *seed = getenv("RZ_POWERCUT_SEED");
    if (!d || !l || strlen(d) >= sizeof dir)
        return;
    strcpy(dir, d);
    dir_len = strlen(dir);
    log_fd = open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    cut_at = at ? atol(at) : -1;
    if (seed)
        rng ^= strtoull(seed, NULL, 10) * 0x9e3779b97f4a7c15ull;
}

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(void)
{
    syscall(SYS_exit_group, POWERCUT_EXIT);
}

static void log_bytes(const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = real_write(log_fd, c, n);
        if (w <= 0)
            syscall(SYS_exit_group, 3);
        c += w;
        n -= (size_t)w;
    }
}

/* The file's path when it is one of ours (len 0: not). */
static size_t ours(int fd, char path[PATH_MAX])
{
    if (log_fd < 0 || fd == log_fd)
        return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n <= 0 || (size_t)n <= dir_len || strncmp(path, dir, dir_len) != 0 ||
        path[dir_len] != '/')
        return 0;
    path[n] = 0;
    return (size_t)n;
}

static void mark_synced(const char *path, size_t len)
{
    powercut_rec r = { 'S', (uint32_t)len, 0, 0, 0 };
    log_bytes(&r, sizeof r);
    log_bytes(path, len);
}

/* The op counter: the power goes at the chosen one. */
static bool cut_now(void)
{
    return cut_at > 0 && ++ops == cut_at;
}

/* Before a write of n bytes at off: what it overwrites goes in the log
 * (or, durable at once, a mark). True: the power goes during it. */
static bool before_write(int fd, size_t n, off_t off)
{
    char path[PATH_MAX];
    size_t len = ours(fd, path);
    if (!len)
        return false;
    int fl = fcntl(fd, F_GETFL);
    struct stat st;
    if (fl < 0 || fstat(fd, &st) != 0)
        syscall(SYS_exit_group, 3);
    if (fl & (O_DSYNC | O_SYNC)) {
        bool cut = cut_now();
        if (!cut)
            mark_synced(path, len);
        return cut;
    }
    uint64_t old_len = st.st_size > off ? (uint64_t)(st.st_size - off) : 0;
    if (old_len > n)
        old_len = n;
    powercut_rec r = { 'W', (uint32_t)len, (uint64_t)off, n, old_len };
    char *old = malloc(old_len ? old_len : 1);
    int rfd = (fl & O_ACCMODE) == O_WRONLY ? open(path, O_RDONLY | O_CLOEXEC) : fd;
    if (!old || rfd < 0 || pread(rfd, old, old_len, off) != (ssize_t)old_len)
        syscall(SYS_exit_group, 3);
    if (rfd != fd)
        close(rfd);
    log_bytes(&r, sizeof r);
    log_bytes(path, len);
    log_bytes(old, old_len);
    free(old);
    return cut_now();
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (before_write(fd, n, off)) {
        real_pwrite(fd, p, n ? rnd() % n : 0, off);
        die();
    }
    return real_pwrite(fd, p, n, off);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
    return pwrite(fd, p, n, off);
}

ssize_t write(int fd, const void *p, size_t n)
{
    off_t off = log_fd >= 0 && fd != log_fd ? lseek(fd, 0, SEEK_CUR) : -1;
    if (off >= 0) {   /* a file, not a pipe or socket */
        struct stat st;
        if ((fcntl(fd, F_GETFL) & O_APPEND) && fstat(fd, &st) == 0)
            off = st.st_size;
        if (before_write(fd, n, off)) {
            real_write(fd, p, n ? rnd() % n : 0);
            die();
        }
    }
    return real_write(fd, p, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    off_t off = log_fd >= 0 ? lseek(fd, 0, SEEK_CUR) : -1;
    if (off >= 0 && before_write(fd, n, off)) {
        if (cnt > 0)
            real_write(fd, iov[0].iov_base, iov[0].iov_len ? rnd() % iov[0].iov_len : 0);
        die();
    }
    return real_writev(fd, iov, cnt);
}

static int after_sync(int fd, int rc)
{
    char path[PATH_MAX];
    size_t len;
    if (rc == 0 && (len = ours(fd, path)))
        mark_synced(path, len);
    return rc;
}

static bool sync_cut(int fd)
{
    char path[PATH_MAX];
    return ours(fd, path) && cut_now();
}

int fsync(int fd)
{
    if (sync_cut(fd))
        die();
    return after_sync(fd, real_fsync(fd));
}

int fdatasync(int fd)
{
    if (sync_cut(fd))
        die();
    return after_sync(fd, real_fdatasync(fd));
}
