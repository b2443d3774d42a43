/* The write-ahead journal. The file is preallocated with zeros and written
 * in place, so fdatasync flushes only data, never a size change. After a
 * checkpoint (LMDB synced) writing starts again at offset 0; records left
 * from the previous round carry smaller sequence numbers, and a torn record
 * fails its checksum, so a scan stops exactly where the last round ends.
 * Appends go through a second descriptor opened with O_DSYNC: one write
 * call that returns once the data is on stable storage, as write +
 * fdatasync would, one system call less (bench/ledger/fsync_probe: median
 * latency about 10% lower on the development VM). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger/ledger_impl.h"

static int io_error(const char *what)
{
    return rz__error(RZ_EIO, "ledger journal: %s: %s", what, strerror(errno));
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return io_error("write");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return RZ_OK;
}

static int read_all(int fd, uint8_t *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return io_error("read");
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return RZ_OK;
}

/* Fill [from, to) with zeros and make the new size durable. A ledger that
 * is not durable only needs the size: a sparse extension reads as the same
 * zeros and costs no writes (an embedded run's throwaway ledger). */
static int preallocate(int fd, uint64_t from, uint64_t to, bool durable)
{
    if (!durable)
        return ftruncate(fd, (off_t)to) == 0 ? RZ_OK : io_error("ftruncate");
    static const uint8_t zeros[65536];
    for (uint64_t off = from; off < to; off += sizeof zeros) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        int rc = write_all(fd, zeros, n, off);
        if (rc != RZ_OK)
            return rc;
    }
    return fsync(fd) == 0 ? RZ_OK : io_error("fsync");
}

int rz__journal_open(rz__journal *j, const char *path, uint64_t size,
                     bool durable)
{
    memset(j, 0, sizeof *j);
    j->wfd = -1;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->fd < 0)
        return io_error(path);
    /* One writer: the lock dies with the process, also on SIGKILL. */
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(j->fd);
        j->fd = -1;
        if (e == EWOULDBLOCK)
            return rz__error(RZ_ESTATE, "the ledger is open for writing by "
                             "another process");
        errno = e;
        return io_error("lock");
    }
    struct stat st;
    int rc = fstat(j->fd, &st) == 0 ? RZ_OK : io_error("stat");
    j->size = rc == RZ_OK && (uint64_t)st.st_size > size ? (uint64_t)st.st_size
                                                         : size;
    if (rc == RZ_OK && (uint64_t)st.st_size < j->size)
        rc = preallocate(j->fd, (uint64_t)st.st_size, j->size, durable);
    if (rc == RZ_OK) {
        j->wfd = durable ? open(path, O_WRONLY | O_DSYNC | O_CLOEXEC)
                         : dup(j->fd);
        if (j->wfd < 0)
            rc = io_error(path);
    }
    if (rc != RZ_OK) {
        rz__journal_close(j);
        return rc;
    }
    j->durable = durable;
    return RZ_OK;
}

void rz__journal_close(rz__journal *j)
{
    if (j->wfd >= 0)
        close(j->wfd);
    if (j->fd >= 0)
        close(j->fd);
    j->fd = j->wfd = -1;
    free(j->buf);
    j->buf = NULL;
    j->cap = 0;
}

bool rz__journal_fits(const rz__journal *j, size_t len)
{
    return j->pos + len <= j->size;
}

static int reserve(rz__journal *j, size_t len)
{
    if (len <= j->cap)
        return RZ_OK;
    uint8_t *nb = realloc(j->buf, len);
    if (!nb)
        return rz__error(RZ_ENOMEM, "out of memory");
    j->buf = nb;
    j->cap = len;
    return RZ_OK;
}

int rz__journal_append(rz__journal *j, const rz__ledger_jhdr *h,
                       const rz_ledger_op *ops)
{
    size_t len = rz__ledger_record_size(h->n_ops);
    int rc = reserve(j, len);
    if (rc != RZ_OK)
        return rc;
    rz__ledger_record_encode(h, ops, j->buf);
    /* A record bigger than the whole file (a small journal_size) grows it:
     * O_DSYNC then also makes the new size durable. */
    if ((rc = write_all(j->wfd, j->buf, len, j->pos)) != RZ_OK)
        return rc;
    j->pos += len;
    if (j->pos > j->size)
        j->size = j->pos;
    return RZ_OK;
}

void rz__journal_reset(rz__journal *j)
{
    j->pos = 0;
}

int rz__journal_scan(rz__journal *j, rz__journal_fn fn, void *ctx)
{
    rz_ledger_op *ops = malloc(sizeof *ops * RZ_LEDGER_BATCH_MAX);
    int rc = ops ? reserve(j, rz__ledger_record_size(RZ_LEDGER_BATCH_MAX))
                 : rz__error(RZ_ENOMEM, "out of memory");
    uint64_t off = 0;
    while (rc == RZ_OK) {
        size_t got, plen, used;
        rz__ledger_jhdr h;
        rc = read_all(j->fd, j->buf, RZ__LEDGER_JHDR_SIZE, off, &got);
        if (rc != RZ_OK)
            break;
        if (rz__ledger_record_header(j->buf, got, &h, &plen) != RZ_OK)
            break;   /* the end of the last round */
        rc = read_all(j->fd, j->buf + RZ__LEDGER_JHDR_SIZE, plen,
                      off + RZ__LEDGER_JHDR_SIZE, &got);
        if (rc != RZ_OK)
            break;
        if (rz__ledger_record_decode(j->buf, RZ__LEDGER_JHDR_SIZE + got, &h,
                                     ops, &used) != RZ_OK)
            break;   /* torn or stale */
        rc = fn(ctx, &h, ops);
        off += used;
    }
    free(ops);
    if (rc == RZ_OK)
        rz_error_clear();   /* the records that ended the scan are no error */
    return rc;
}
