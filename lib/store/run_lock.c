/* Runs whose process is gone (run_lock.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "store/run_lock.h"

typedef struct held_lock {
    char *id;
    char *path;
    int fd;
} held_lock;

struct rz__run_locks {
    char *dir;                  /* DIR/running */
    pthread_mutex_t mu;         /* runners' threads share a store */
    held_lock *h;
    size_t n, cap;
};

/* DIR/running/<32 hex>.lock: a run id may hold any byte but NUL, and be
 * longer than a file name may. */
static char *lock_path(const char *running, const char *id)
{
    unsigned char d[16];
    char hex[33];
    if (sodium_init() < 0 ||
        crypto_generichash(d, sizeof d, (const unsigned char *)id, strlen(id), NULL, 0) != 0)
        return NULL;
    sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    return rz__asprintf("%s/%s.lock", running, hex);
}

rz__run_locks *rz__run_locks_new(const char *dir)
{
    rz__run_locks *l = calloc(1, sizeof *l);
    if (l && !(l->dir = rz__asprintf("%s/running", dir))) {
        free(l);
        l = NULL;
    }
    if (l)
        pthread_mutex_init(&l->mu, NULL);
    return l;
}

static void drop_at(rz__run_locks *l, size_t i)
{
    /* Removed while still held: a process that opens it after this sees
     * no file, one that opened it before finds it let go below, and a
     * taker checks that what it locked is still the named file. */
    unlink(l->h[i].path);
    close(l->h[i].fd);
    free(l->h[i].id);
    free(l->h[i].path);
    l->h[i] = l->h[--l->n];
}

void rz__run_locks_free(rz__run_locks *l)
{
    if (!l)
        return;
    while (l->n)
        drop_at(l, l->n - 1);
    free(l->h);
    free(l->dir);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static size_t find(const rz__run_locks *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->h[i].id, id) == 0)
            return i;
    return RZ_NPOS;
}

/* fd's OFD lock on the whole file, taken on the file `path` still names
 * (a file removed meanwhile is no lock): 0, else -1 with errno set (ESTALE
 * for a removed file). A prune clearing the file holds it for a moment
 * (rz__run_lock_clear): tried again for a few milliseconds. */
static int lock_named(int fd, const char *path)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int rc;
    for (int i = 0; (rc = fcntl(fd, F_OFD_SETLK, &fl)) != 0 && errno == EAGAIN && i < 20; i++)
        usleep(1000);
    struct stat a, b;
    if (rc == 0 && (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev ||
                    a.st_ino != b.st_ino)) {
        errno = ESTALE;
        return -1;
    }
    return rc;
}

/* An exclusive lock on `path`, the file it names when taken: its fd, or
 * -1 with the error set. */
static int lock_file(const char *path, const char *id)
{
    for (int tries = 0; tries < 8; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 && lock_named(fd, path) == 0)
            return fd;
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (e == ESTALE)
            continue;   /* removed meanwhile (a run that ended, a prune): again */
        if (e == EAGAIN || e == EACCES)
            rz__error(RZ_ESTATE, "run '%.200s' is going in another process (%s is held)",
                      id, path);
        else
            rz__error(RZ_EIO, "run '%.200s': %s: %s", id, path, strerror(e));
        return -1;
    }
    rz__error(RZ_EIO, "run '%.200s': %s keeps being replaced", id, path);
    return -1;
}

static int take_new(rz__run_locks *l, const char *id)
{
    if (mkdir(l->dir, 0700) != 0 && errno != EEXIST)
        return rz__error(RZ_EIO, "%s: %s", l->dir, strerror(errno));
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        held_lock *h = realloc(l->h, cap * sizeof *h);
        if (!h)
            return rz__error(RZ_ENOMEM, "out of memory");
        l->h = h;
        l->cap = cap;
    }
    held_lock *h = &l->h[l->n];
    h->id = strdup(id);
    h->path = lock_path(l->dir, id);
    h->fd = h->id && h->path ? lock_file(h->path, id) : -1;
    if (h->fd < 0) {
        int rc = h->id && h->path ? rz_error_last()->code
                                  : rz__error(RZ_ENOMEM, "out of memory");
        free(h->id);
        free(h->path);
        return rc;
    }
    l->n++;
    return RZ_OK;
}

int rz__run_lock_take(rz__run_locks *l, const char *id)
{
    pthread_mutex_lock(&l->mu);
    int rc = find(l, id) != RZ_NPOS ? RZ_OK : take_new(l, id);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void rz__run_lock_drop(rz__run_locks *l, const char *id)
{
    pthread_mutex_lock(&l->mu);
    size_t i = find(l, id);
    if (i != RZ_NPOS)
        drop_at(l, i);
    pthread_mutex_unlock(&l->mu);
}

bool rz__run_lock_held(const char *dir, const char *id)
{
    char *running = rz__asprintf("%s/running", dir);
    char *path = running ? lock_path(running, id) : NULL;
    int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    int e = errno;
    free(running);
    free(path);
    if (fd < 0)
        return !path || e != ENOENT;   /* no file: no one holds it */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    bool held = fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
    close(fd);
    return held;
}

void rz__run_lock_clear(const char *dir, const char *id)
{
    char *running = rz__asprintf("%s/running", dir);
    char *path = running ? lock_path(running, id) : NULL;
    int fd = path ? open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC) : -1;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    /* Held by us, no run can take it until it is gone; one that opened it
     * before finds it removed (lock_named) and makes another. */
    if (fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0) {
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            unlink(path);
    }
    if (fd >= 0)
        close(fd);
    free(running);
    free(path);
}
